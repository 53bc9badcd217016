/*
 * Resource restores with Velero's semantics, from the backups pkg/backup writes.
 *
 * st_restore_run reads a stasis.io/v1alpha1 Restore, downloads
 * backups/<B>/<B>.tar.gz from the store, takes the preferred-version entry
 * of every object, keeps those in scope (namespace globs, resource names as
 * kubectl resolves them, label selector, cluster-scoped policy), drops the
 * children a restored controller recreates (a Pod whose controlling owner is
 * a ReplicaSet in the backup, a ReplicaSet owned by a Deployment, a Job
 * owned by a CronJob, ...) and the PersistentVolumes the cluster
 * provisioned (reclaim policy Delete: their claims are provisioned and
 * filled afresh), strips what the cluster assigns (uid,
 * resourceVersion, timestamps, managedFields, status, a Service's cluster
 * IPs and node ports, a Pod's nodeName, a PersistentVolume's claimRef uid),
 * applies the mappings (pkg/remap: namespaces, storage classes, image
 * registries, from the spec and from Velero-format ConfigMaps) and creates
 * the objects in Velero's order: CustomResourceDefinitions, Namespaces,
 * StorageClasses, ..., PersistentVolumes, PersistentVolumeClaims, then the
 * volumes are filled (the fill_volumes callback) before anything that could
 * mount them, then ServiceAccounts, Secrets, ConfigMaps, ..., Pods,
 * ReplicaSets, ..., every other type alphabetically, and the low-priority
 * Cluster API types last. An object that exists already is left alone
 * (existingResourcePolicy none) or replaced by the backed-up version
 * (update); a difference is a warning either way.
 *
 * The restore's log and results are written to the store in Velero's layout:
 *   restores/<R>/restore-<R>-logs.gz      time="..." level=... msg="..." restore=<ns>/<R>
 *   restores/<R>/restore-<R>-results.gz   {"errors":{...},"warnings":{...}}
 * where each of errors and warnings is {"velero":[...],"cluster":[...],
 * "namespaces":{"<ns>":[...]}} (empty parts omitted).
 */
#ifndef ST_PKG_RESTORE_H
#define ST_PKG_RESTORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

struct st_kube_client;
struct st_store;
struct st_remap;

/* The log kept for restore-<R>-logs.gz; later lines are counted, not kept. */
#define ST_RESTORE_CAP_LOG (16u << 20)
/* Labels put on every restored object (Velero puts velero.io/... ones). */
#define ST_RESTORE_LABEL_BACKUP  "stasis.io/backup-name"
#define ST_RESTORE_LABEL_RESTORE "stasis.io/restore-name"

/* One restored PersistentVolumeClaim, as handed to the fill_volumes callback. */
struct st_restore_volume {
	const char *namespace;        /* where the claim was created (after namespace mapping) */
	const char *name;             /* its name (names are not mapped) */
	const char *orig_namespace;   /* the claim's namespace in the backup */
	const char *orig_name;        /* its name in the backup */
	struct json_object *pvc;      /* the claim as the API returned it on create (borrowed) */
	bool failed;                  /* set by the callback when the volume could not be filled */
	char reason[ST_ERR_MSG_SIZE]; /* why, set with failed */
};

/*
 * Fills the restored volumes (n >= 1) before any workload is created.
 * restore is the Restore object (borrowed). The callback marks each volume
 * it could not fill (failed, reason); the workloads that mount such a claim
 * are then not created and count as failed items with that reason. A
 * negative return marks every volume not already marked as failed with the
 * code's text. Called at most once per run, from the thread running
 * st_restore_run.
 */
typedef int (*st_restore_volumes_cb)(struct st_restore_volume *vols, size_t n,
                                     struct json_object *restore, void *payload);

/* Called after each item with the running counts. */
typedef void (*st_restore_progress_cb)(unsigned total_items, unsigned items_restored,
                                       void *payload);

struct st_restore_options {
	const atomic_bool *cancel;          /* stop between items when true; NULL: never */
	st_restore_progress_cb progress;    /* NULL: none */
	st_restore_volumes_cb fill_volumes; /* NULL: claims are created empty */
	void *payload;                      /* for both callbacks */
	long long now;                      /* start time (Unix seconds); 0: time(NULL) */
	/* Namespace of spec.mappingConfigMaps; NULL: the Restore's own namespace. */
	const char *config_namespace;
	unsigned crd_wait_s; /* bound of the wait for a restored CRD to be served; 0: 60 */
};
#define ST_RESTORE_OPTIONS_INIT                    \
	{                                          \
		NULL, NULL, NULL, NULL, 0, NULL, 0 \
	}

struct st_restore_result {
	const char *phase; /* "Completed", "PartiallyFailed" or "Failed" (static text) */
	unsigned errors;
	unsigned warnings;
	unsigned total_items;
	unsigned items_restored;
	char failure_reason[ST_ERR_MSG_SIZE]; /* "" unless Failed */
};

/*
 * Runs the restore described by restore (a Restore object, modified: its
 * status gets phase, startTimestamp, completionTimestamp, errors, warnings,
 * progress {totalItems, itemsRestored} and failureReason; spec.backupName
 * is filled in when only spec.scheduleName was given). s is the store of
 * the backup's location; c the cluster restored into. A restore that ran
 * and reached a verdict returns 0 with res->phase set, Failed included
 * (res->failure_reason says why: an unreadable backup, a bad mapping, a
 * ConfigMap that is missing). A negative return means the Restore itself
 * was unusable (ST_EINVAL: no name, err says which field); res->phase is
 * then "Failed" too and nothing was written.
 */
int st_restore_run(struct st_restore_result *res, struct st_kube_client *c, struct st_store *s,
                   struct json_object *restore, const struct st_restore_options *opts,
                   struct st_err *err) ST_WARN_UNUSED;

/*
 * The newest Completed Backup of schedule `schedule` in namespace ns (label
 * velero.io/schedule-name or stasis.io/schedule-name; newest by
 * status.startTimestamp, then creationTimestamp), its name into buf.
 * ST_ENOTFOUND with a sentence when there is none.
 */
int st_restore_schedule_backup(char *buf, size_t size, struct st_kube_client *c, const char *ns,
                               const char *schedule, struct st_err *err) ST_WARN_UNUSED;

/* ---- the pieces, exposed for tests and for the webhook's restore path -------------------- */

/*
 * Restore priority of a group-qualified resource name ("pods",
 * "replicasets.apps"): its index in Velero's high-priority list, a middle
 * rank for every other type, and a rank after that for the low-priority
 * Cluster API types. Lower restores first; equal ranks go alphabetically.
 */
int st_restore_priority(const char *gr);

/* strcmp-like order of two group-qualified names by priority, then name. */
int st_restore_compare(const char *gr_a, const char *gr_b);

/*
 * Strips what the cluster assigns from obj (in place) for resource gr:
 * metadata uid, resourceVersion, creationTimestamp, managedFields,
 * generation, selfLink, deletionTimestamp, deletionGracePeriodSeconds,
 * ownerReferences; status; for services spec.clusterIP/clusterIPs (unless
 * "None") and, unless preserve_node_ports, spec.ports[].nodePort and
 * spec.healthCheckNodePort; for pods spec.nodeName, spec.priority and the
 * projected token volume "kube-api-access-*" with its mounts; for jobs.batch
 * (without spec.manualSelector) spec.selector and the template's
 * controller-uid labels; for serviceaccounts the generated "<name>-token-*"
 * secrets; for persistentvolumes spec.claimRef uid and resourceVersion; for
 * persistentvolumeclaims the volume.kubernetes.io/selected-node annotation.
 */
void st_restore_strip(struct json_object *obj, const char *gr, bool preserve_node_ports);

/*
 * False for the types a restore never creates, as Velero: nodes, events,
 * CSI node and attachment records, and the backup tools' own Backups and
 * Restores (velero.io, stasis.io).
 */
bool st_restore_restorable(const char *gr);

/*
 * A claim whose volume is not restored is bound afresh: spec.volumeName and
 * the pv.kubernetes.io/bind-completed and bound-by-controller annotations go.
 */
void st_restore_unbind_claim(struct json_object *pvc);

/*
 * The controlling owner of obj (the ownerReferences entry with controller:
 * true) as kind and name into the buffers; false when it has none.
 */
bool st_restore_controller_owner(char *kind, size_t kind_size, char *name, size_t name_size,
                                 struct json_object *obj);

/*
 * Applies m to obj (pkg/remap: metadata.namespace, a Namespace's name, a
 * PersistentVolume's spec.claimRef.namespace, storage classes, images).
 * m may be NULL.
 */
int st_restore_map_object(struct json_object *obj, const struct st_remap *m,
                          struct st_err *err) ST_WARN_UNUSED;

/* What to do with an object that exists already. */
enum st_restore_existing {
	ST_RESTORE_EXISTING_SAME = 0, /* identical to the backup: nothing to do, no warning */
	ST_RESTORE_EXISTING_KEEP,     /* differs, policy none: left alone, a warning */
	ST_RESTORE_EXISTING_UPDATE,   /* differs, policy update: replaced, a warning */
};

/*
 * Decides for desired (the stripped, mapped object) against existing (as
 * read from the cluster): the fields compared are labels (the restore's own
 * labels aside), annotations and every top-level field but apiVersion,
 * kind, metadata and status. update is existingResourcePolicy == "update".
 */
enum st_restore_existing st_restore_existing_decide(struct json_object *existing,
                                                    struct json_object *desired, bool update);

/*
 * The body of the update: a copy of existing (its resourceVersion kept)
 * whose labels, annotations and top-level fields (spec, data, ...) are
 * desired's; a Service keeps the cluster IPs and, where desired has none,
 * the node ports the cluster assigned. Returns a new object.
 */
struct json_object *st_restore_merge_existing(struct json_object *existing,
                                              struct json_object *desired);

/*
 * Claim names a workload mounts: the persistentVolumeClaim volumes of obj's
 * pod spec (Pod spec, spec.template.spec, spec.jobTemplate.spec.template.spec),
 * appended to arr (a JSON string array). StatefulSet volumeClaimTemplates
 * add "<template>-<name>-" prefixes ending in '-'.
 */
void st_restore_claims_of(struct json_object *arr, struct json_object *obj);

#endif
