/*
 * CSI snapshots through the Kubernetes API (snapshot.storage.k8s.io/v1).
 *
 * For each PersistentVolumeClaim the caller wants cut, st_csi_create makes a
 * VolumeSnapshot of the claim with the class chosen for its CSI driver:
 * the driver comes from the bound PersistentVolume (spec.csi.driver), else from
 * the claim's StorageClass provisioner; the class is the driver's
 * VolumeSnapshotClass labelled stasis.io/csi-volumesnapshot-class="true", else
 * the one annotated snapshot.storage.kubernetes.io/is-default-class="true",
 * else the only class of that driver; anything else is an error naming the
 * driver and what to label.
 *
 * st_csi_wait_cut returns as soon as every snapshot has status.creationTime
 * (the moment the storage cut it: the caller thaws then) or status.error, or
 * the timeout passes; st_csi_wait_ready then waits for readyToUse. Both watch
 * (no polling delay). VolumeSnapshot times are RFC 3339; a bound
 * VolumeSnapshotContent's status.creationTime is int64 nanoseconds and is
 * preferred when present. Driver errors are reported exactly as written in
 * status.error.message.
 */
#ifndef ST_PKG_CSI_H
#define ST_PKG_CSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

struct st_kube_client;

#define ST_CSI_CLASS_LABEL     "stasis.io/csi-volumesnapshot-class"
#define ST_CSI_DEFAULT_ANN     "snapshot.storage.kubernetes.io/is-default-class"
#define ST_CSI_METHOD_ANN      "stasis.io/snapshot-method" /* on a PVC: "csi" or "none" */
#define ST_CSI_KEEP_ANN        "stasis.io/keep-snapshot"   /* on a PVC: "true" */
#define ST_CSI_BACKUP_LABEL    "stasis.io/backup-name"

struct st_csi_snap {
	char namespace[254];
	char pvc[254];
	char name[254];    /* VolumeSnapshot name */
	char cls[254];     /* VolumeSnapshotClass used */
	char driver[254];
	char content[254]; /* bound VolumeSnapshotContent; "" until bound */
	int64_t created_ns; /* creation time (Unix ns); 0: not cut yet */
	bool ready;
	int64_t restore_size; /* bytes (status.restoreSize); -1 unknown */
	char error[1024];     /* "" or status.error.message, or why creation failed */
};

/* Driver of a claim (namespace ns, name pvc), as described above. */
int st_csi_driver_of(char *out, size_t size, struct st_kube_client *c, const char *ns,
                     const char *pvc, struct st_err *err) ST_WARN_UNUSED;

/* VolumeSnapshotClass for a driver, as described above. */
int st_csi_pick_class(char *out, size_t size, struct st_kube_client *c, const char *driver,
                      struct st_err *err) ST_WARN_UNUSED;

/*
 * Creates the VolumeSnapshot s->name in s->namespace for s->pvc with class
 * s->cls (picked when empty; s->driver filled), labelled
 * stasis.io/backup-name=backup. 409 (exists) is an error.
 */
int st_csi_create(struct st_csi_snap *s, struct st_kube_client *c, const char *backup,
                  struct st_err *err) ST_WARN_UNUSED;

/* Waits until every snapshot is cut or failed (see above). ST_ETIMEDOUT names the ones not cut. */
int st_csi_wait_cut(struct st_csi_snap *snaps, size_t n, struct st_kube_client *c,
                    int64_t timeout_ms, struct st_err *err) ST_WARN_UNUSED;

/* Waits until every cut snapshot is readyToUse or failed. ST_ETIMEDOUT names the rest. */
int st_csi_wait_ready(struct st_csi_snap *snaps, size_t n, struct st_kube_client *c,
                      int64_t timeout_ms, struct st_err *err) ST_WARN_UNUSED;

/* Deletes the VolumeSnapshot; a missing one is fine. */
int st_csi_delete(const struct st_csi_snap *s, struct st_kube_client *c,
                  struct st_err *err) ST_WARN_UNUSED;

/* Parses RFC 3339 ("2026-11-24T06:00:00Z", fractions and offsets allowed) into Unix ns. */
int st_csi_parse_time(int64_t *out, const char *text) ST_WARN_UNUSED;

#endif
