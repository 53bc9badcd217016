/*
 * Resource backups with Velero's semantics and object-store layout.
 *
 * st_backup_run reads a stasis.io/v1alpha1 Backup's spec, resolves its scope
 * through discovery (preferred versions), lists every resource type once
 * (paginated; a single included namespace is listed in place, anything else
 * across all namespaces and filtered here), applies the namespace globs,
 * resource names (as kubectl resolves them) and label selector, adds the
 * cluster-scoped objects the namespaced ones need (their Namespaces, the
 * PersistentVolumes bound to included claims, the CRDs of included custom
 * resources) or every cluster-scoped object when includeClusterResources
 * says so, and writes to the store:
 *   backups/<B>/<B>.tar.gz               metadata/version, resources/<gr>/...
 *   backups/<B>/<B>-resource-list.json.gz {"apps/v1/Deployment": ["ns/name"]}
 *   backups/<B>/<B>-logs.gz              the backup's log lines
 *   backups/<B>/velero-backup.json       the Backup object with its final status
 * in that order, the metadata last, so a listing never shows a finished
 * backup whose tarball is missing. The tarball holds each object twice, as
 * Velero's format 1.1.0 does: resources/<gr>/namespaces/<ns>/<name>.json
 * (or cluster/<name>.json) and the same below <version>-preferredversion/.
 */
#ifndef ST_PKG_BACKUP_H
#define ST_PKG_BACKUP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

struct st_kube_client;
struct st_store;

#define ST_BACKUP_FORMAT_VERSION "1.1.0"
#define ST_BACKUP_DEFAULT_TTL    "720h0m0s"
/* The log kept for <B>-logs.gz; later lines are counted, not kept. */
#define ST_BACKUP_CAP_LOG (16u * 1024u * 1024u)

/* Called after each listed page with the running counts. */
typedef void (*st_backup_progress_cb)(unsigned total_items, unsigned items_backed_up,
                                      void *payload);

/*
 * The engine as the volume phase sees it (see st_backup_options.volumes): a
 * view of one running backup, valid only during the callback.
 */
struct st_backup_hook;

/*
 * Backs up the volumes of the backup once its resources are collected and
 * before anything is uploaded (so the metadata still comes last). It may add
 * fields to the Backup's status, log lines (st_backup_hook_log, which also
 * counts warnings and errors) and objects under backups/<B>/. A negative
 * return fails the backup with err's text.
 */
typedef int (*st_backup_volumes_cb)(struct st_backup_hook *h, void *payload, struct st_err *err);

struct st_backup_options {
	const atomic_bool *cancel;      /* stop between pages when true; NULL: never */
	st_backup_progress_cb progress; /* NULL: none */
	void *payload;
	long long now;                /* start time (Unix seconds); 0: time(NULL) */
	unsigned page_limit;          /* list page size; 0: 500 */
	st_backup_volumes_cb volumes; /* NULL: resources only */
	void *volumes_payload;
};
#define ST_BACKUP_OPTIONS_INIT                     \
	{                                          \
		NULL, NULL, NULL, 0, 0, NULL, NULL \
	}

/* The Backup object being run (its status may be extended). */
struct json_object *st_backup_hook_backup(struct st_backup_hook *h);
/* Its name and the namespace of the Backup object. */
const char *st_backup_hook_name(const struct st_backup_hook *h);
/* True when namespace ns is in the backup's scope. */
bool st_backup_hook_namespace_in_scope(const struct st_backup_hook *h, const char *ns);
/* The backup's label selector (NULL: none; a LabelSelector object). */
struct json_object *st_backup_hook_selector(const struct st_backup_hook *h);
/* The store the backup is written to. */
struct st_store *st_backup_hook_store(const struct st_backup_hook *h);
/* True once the backup was asked to stop. */
bool st_backup_hook_cancelled(const struct st_backup_hook *h);
/* Adds a line to the backup's log; level "warning" and "error" are also counted. */
void st_backup_hook_log(struct st_backup_hook *h, const char *level, const char *fmt, ...)
        ST_PRINTF(3, 4);

struct st_backup_result {
	const char *phase; /* "Completed", "PartiallyFailed" or "Failed" (static text) */
	unsigned errors;
	unsigned warnings;
	unsigned total_items;
	unsigned items_backed_up;
	char failure_reason[ST_ERR_MSG_SIZE]; /* "" unless Failed */
};

/*
 * Runs the backup described by backup (a Backup object, modified: its
 * status gets phase, timestamps, expiration, counts, progress,
 * formatVersion and version, exactly as uploaded in velero-backup.json).
 * A backup that ran and reached a verdict returns 0 with res->phase set,
 * Failed included (res->failure_reason says why). A negative return means
 * the spec was unusable before anything was written (ST_EINVAL, err says
 * which field); res->phase is then "Failed" too.
 */
int st_backup_run(struct st_backup_result *res, struct st_kube_client *c, struct st_store *s,
                  struct json_object *backup, const struct st_backup_options *opts,
                  struct st_err *err) ST_WARN_UNUSED;

/*
 * Deletes every object under backups/<name>/ in s. Returns the number of
 * objects removed in *count_out (may be NULL).
 */
int st_backup_delete_objects(unsigned *count_out, struct st_store *s, const char *name,
                             struct st_err *err) ST_WARN_UNUSED;

/*
 * Parses a Go duration ("720h0m0s", "1h30m", "90s", "1.5h", "500ms") into
 * seconds, rounded down. ST_EINVAL for anything else or a negative value.
 */
int st_backup_parse_duration(long long *out, const char *text) ST_WARN_UNUSED;

/* Formats Unix seconds as RFC 3339 UTC ("2026-01-02T03:04:05Z") into buf[21+]. */
void st_backup_format_time(char *buf, size_t size, long long t);

/*
 * Renders a LabelSelector object in the query-string form the API server
 * takes ("app=web,tier in (a,b),!legacy"). ST_EINVAL for an unknown
 * operator or a value list that In/NotIn lacks; ST_ETOOBIG past size.
 */
int st_backup_selector_string(char *buf, size_t size, struct json_object *selector,
                              struct st_err *err) ST_WARN_UNUSED;

/*
 * True when namespace ns is in scope: it matches an entry of included
 * (a JSON array of globs; NULL, empty or containing "*" means all) and no
 * entry of excluded. Globs are shell patterns (*, ?, [abc]).
 */
bool st_backup_namespace_in_scope(struct json_object *included, struct json_object *excluded,
                                  const char *ns);

/*
 * Velero's rule for an include/exclude pair (what: "Namespaces" or
 * "Resources", for the message): the excludes may not contain "*", an empty
 * entry, or an entry that is also included. ST_EINVAL naming the entry.
 */
int st_backup_validate_lists(struct json_object *included, struct json_object *excluded,
                             const char *what, struct st_err *err) ST_WARN_UNUSED;

/*
 * True when s can stand as one part of a store key or tar entry name: not
 * NULL or empty, no '/', not "." or "..".
 */
bool st_backup_name_usable(const char *s);

/*
 * The tar entry names of one object: resources/<gr>/namespaces/<ns>/<name>.json
 * and resources/<gr>/<version>-preferredversion/namespaces/<ns>/<name>.json
 * (cluster/<name>.json when ns is NULL or ""). gr is "pods" or
 * "deployments.apps". ST_EINVAL for a name with '/' or "..", ST_ETOOBIG past size.
 */
int st_backup_entry_names(char *plain, char *preferred, size_t size, const char *gr,
                          const char *version, const char *ns, const char *name) ST_WARN_UNUSED;

#endif
