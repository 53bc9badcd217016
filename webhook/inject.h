/*
 * Pod injection: decides whether a pod is frozen for backups, which of its
 * volumes, and builds the RFC 6902 patch that adds the stasis-freezer
 * container (or native sidecar) and the Velero-compatible hook annotations.
 *
 * Decision order: a pod already marked stasis.io/injected is left alone
 * (reinvocation is a no-op); stasis.io/freeze "false" opts out, "true" opts
 * in; otherwise the first matching config rule decides. Volumes come from
 * stasis.io/freeze-volumes, the rule's list, or every PVC-backed or generic
 * ephemeral volume that some container mounts read-write. Only such volumes
 * can be frozen: freezing an emptyDir or hostPath would freeze the node's own
 * filesystem, so they are refused with a warning. A pod with nothing to
 * freeze is admitted unchanged. Existing Velero hook annotations are kept.
 */
#ifndef ST_WEBHOOK_INJECT_H
#define ST_WEBHOOK_INJECT_H

#include "pkg/util/err.h"
#include "webhook/config.h"
#include "webhook/review.h"

#define ST_ANN_FREEZE         "stasis.io/freeze"
#define ST_ANN_FREEZE_VOLUMES "stasis.io/freeze-volumes"
#define ST_ANN_INJECTED       "stasis.io/injected"
#define ST_ANN_VOLUMES        "stasis.io/volumes"
#define ST_ANN_AGENT_PORT     "stasis.io/agent-port"
#define ST_FREEZER_NAME       "stasis-freezer"
#define ST_VOLUME_ROOT        "/stasis/volumes/"
#define ST_VOLUME_ROOT_DIR    "/stasis/volumes"
#define ST_AGENT_TLS_DIR      "/etc/stasis/agent-tls"
#define ST_INJECT_VERSION     "v1"

enum st_inject_outcome {
	ST_INJECT_INJECTED,
	ST_INJECT_NOT_APPLICABLE, /* not a pod CREATE */
	ST_INJECT_NOT_SELECTED,   /* no annotation and no rule */
	ST_INJECT_OPTED_OUT,      /* annotation "false" or a rule with freeze: false */
	ST_INJECT_ALREADY,        /* stasis.io/injected present */
	ST_INJECT_NOTHING,        /* selected, but no volume can be frozen */
	ST_INJECT_CONFLICT,       /* a container named stasis-freezer exists */
};

/* Stable lower-case name for metrics and logs. */
const char *st_inject_outcome_name(enum st_inject_outcome o);

/*
 * Fills res (patch and warnings) for the pod in req. Always leaves the pod
 * admitted; returns 0, or ST_ETOOBIG/ST_ENOMEM when the patch cannot be built.
 */
int st_inject_pod(struct st_admission_result *res, enum st_inject_outcome *outcome,
                  const struct st_webhook_config *cfg,
                  const struct st_admission_request *req) ST_WARN_UNUSED;

#endif
