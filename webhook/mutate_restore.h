/*
 * Restore remapping at admission (/mutate/restore): objects created by a
 * restore, ours or Velero's, get the storage-class and image-registry rules
 * of the webhook's `restore` config applied, answered as an RFC 6902 patch
 * (the difference between the object as sent and as remapped).
 *
 * An object belongs to a restore when it carries the label
 * velero.io/restore-name or stasis.io/restore-name. Anything else, and every
 * operation other than CREATE (an existing claim's class cannot change), is
 * admitted unchanged. Namespaces are never remapped here: by the time an
 * object reaches admission its namespace is already chosen.
 */
#ifndef ST_WEBHOOK_MUTATE_RESTORE_H
#define ST_WEBHOOK_MUTATE_RESTORE_H

#include "pkg/util/err.h"
#include "webhook/config.h"
#include "webhook/review.h"

#define ST_LABEL_VELERO_RESTORE "velero.io/restore-name"

enum st_restore_outcome {
	ST_RESTORE_REMAPPED,       /* a patch was returned */
	ST_RESTORE_UNCHANGED,      /* labelled, but no rule applied */
	ST_RESTORE_NOT_LABELLED,   /* no restore-name label */
	ST_RESTORE_NOT_APPLICABLE, /* not a CREATE of an object */
};

/* Stable lower-case name for metrics and logs. */
const char *st_restore_outcome_name(enum st_restore_outcome o);

/*
 * Fills res (the patch, if any) for the object in req. Always leaves it
 * admitted; returns 0, or ST_ETOOBIG/ST_ENOMEM when the patch cannot be
 * built. *changes_out (may be NULL) counts the fields rewritten.
 */
int st_mutate_restore(struct st_admission_result *res, enum st_restore_outcome *outcome,
                      unsigned *changes_out, const struct st_webhook_config *cfg,
                      const struct st_admission_request *req) ST_WARN_UNUSED;

#endif
