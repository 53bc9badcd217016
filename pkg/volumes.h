/*
 * The volume phase of a backup: quiesce, cut, thaw, move.
 *
 * st_volumes_backup is the st_backup_volumes_cb the controller hands to the
 * backup engine. For the backup's scope it finds the PersistentVolumeClaims
 * (in-scope namespaces; with a label selector, the claims it selects and the
 * claims mounted by the pods it selects) and the running pods that mount them.
 * Then:
 *   1. every pod carrying stasis.io/injected is frozen through its agent, all
 *      in parallel (pkg/quiesce.h); a pod with Velero hook annotations but no
 *      stasis agent is reported as not quiesced (a warning);
 *   2. a CSI VolumeSnapshot is created for each claim whose method is "csi"
 *      (the claim's stasis.io/snapshot-method annotation, else the Backup's
 *      spec.volumeSnapshotMethod, else "csi"; "none" skips the claim's data);
 *   3. as soon as every snapshot has its creation time, every pod is thawed,
 *      and each pod's window goes into status.freezeWindows;
 *   4. once the snapshots are ready, a data mover runs per snapshot (at most
 *      `parallel` at once): a claim restored from the snapshot, a Secret with
 *      the repository key and a data-door session token, and a pod running
 *      `stasis-agent backup` on the read-only mount through the controller's
 *      data door (pkg/dataserver.h), so only chunks the repository lacks
 *      cross the network and the store credentials never leave the
 *      controller;
 *   5. the per-volume manifest backups/<B>/<B>-volumes.json is written, and
 *      the temporary claims, pods, Secrets and (unless kept) VolumeSnapshots
 *      are deleted, also after failures (a VolumeSnapshot is kept when its
 *      claim says stasis.io/keep-snapshot="true" or the Backup's
 *      spec.keepVolumeSnapshots is true).
 * A failure while frozen thaws everything first and fails the backup; a
 * volume whose data could not be moved is an error of the backup (it ends
 * PartiallyFailed), never a Completed one.
 */
#ifndef ST_PKG_VOLUMES_H
#define ST_PKG_VOLUMES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

struct st_backup_hook;
struct st_dataserver;
struct st_kube_client;
struct st_store;

#define ST_VOLUMES_TEMP_LABEL    "stasis.io/temporary"
#define ST_VOLUMES_ROLE_LABEL    "stasis.io/role"
#define ST_VOLUMES_RESTORE_LABEL "stasis.io/restore"
#define ST_VOLUMES_MANIFEST      "volumes.json" /* backups/<B>/<B>-volumes.json */

/* Status updates while the phase runs (merged into the Backup's status). */
typedef void (*st_volumes_status_cb)(struct json_object *status_patch, void *payload);

struct st_volumes_config {
	struct st_kube_client *c;
	/* Reaching the agents (controller client certificate). */
	const char *agent_ca_file;
	const char *agent_cert_file;
	const char *agent_key_file;
	const char *agent_server_name; /* NULL: ST_QUIESCE_SERVER_NAME */
	int64_t freeze_deadline_s;     /* the agents' watchdog deadline */
	int64_t freeze_timeout_ms;     /* freeze and thaw requests */
	int64_t cut_timeout_ms;        /* creation time of every snapshot */
	int64_t ready_timeout_ms;      /* readyToUse */
	/* Data movers. */
	struct st_dataserver *ds;
	const char *data_address; /* "host:port" movers use to reach the data door */
	const char *data_ca_file; /* CA movers verify the data door with */
	const char *mover_image;
	const char *mover_command;   /* stasis-agent inside the image */
	unsigned parallel;           /* movers at once */
	int64_t mover_timeout_ms;    /* one mover */
	const char *repo_key_file;   /* the repository key */
	struct st_store *repo_store; /* the repository's store; set for each backup */
	st_volumes_status_cb status;
	void *status_payload;
};

/* Log lines of a restore's volume phase (level "info", "warning" or "error"). */
typedef void (*st_volumes_log_cb)(const char *level, const char *msg, void *payload);

/* The phase itself; payload is a struct st_volumes_config. */
int st_volumes_backup(struct st_backup_hook *h, void *payload, struct st_err *err) ST_WARN_UNUSED;

/* One restored claim to fill with data. */
struct st_volumes_restore_item {
	char namespace[254]; /* where the claim was created */
	char pvc[254];
	char source_namespace[254]; /* the claim as it was backed up */
	char source_pvc[254];
	bool ok;         /* out: filled, or nothing to fill */
	char error[512]; /* out: why not, or a note */
	uint64_t bytes;  /* out: bytes read through the data door */
};

/*
 * Fills restored claims with their data. The per-volume manifest of backup
 * (backups/<B>/<B>-volumes.json in location) names the repository snapshot of
 * each source claim; a restore mover pod mounts the claim read-write and runs
 * `stasis-agent restore` through a read-only data-door session, verifying every
 * chunk. A claim the backup holds no data for is left as created (ok, with a
 * note in error); one whose data was not stored fails. cfg->repo_store must
 * be set. name names the restore (temporary objects are labelled with it).
 * Returns 0 when the phase ran (see each item), < 0 when it could not start.
 */
int st_volumes_restore(struct st_volumes_restore_item *items, size_t n,
                       const struct st_volumes_config *cfg, struct st_store *location,
                       const char *backup, const char *name, st_volumes_log_cb log,
                       void *log_payload, const atomic_bool *cancel,
                       struct st_err *err) ST_WARN_UNUSED;

/*
 * After backup's objects are deleted: forgets the repository snapshots its
 * volumes were stored in (tag "<backup>/<namespace>/<claim>") and collects
 * the packs no other snapshot references (pkg/repo.h st_repo_gc, which waits
 * for no running backup). A location without a repository is fine.
 * *forgotten_out and *freed_out (may be NULL) count snapshots and bytes.
 */
int st_volumes_forget(struct st_store *repo_store, const char *repo_key_file, const char *backup,
                      unsigned *forgotten_out, uint64_t *freed_out,
                      struct st_err *err) ST_WARN_UNUSED;

/*
 * Deletes the temporary objects (label stasis.io/temporary=true) of backup
 * name in every namespace: mover pods, their claims and Secrets, and the
 * VolumeSnapshots (a backup that did not finish keeps none). Used after a
 * controller restart.
 */
int st_volumes_cleanup(struct st_kube_client *c, const char *backup,
                       struct st_err *err) ST_WARN_UNUSED;

#endif
