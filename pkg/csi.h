/*
 * CSI snapshots through the Kubernetes API (snapshot.storage.k8s.io/v1).
 *
 * For each PersistentVolumeClaim the caller wants cut, st_csi_create makes a
 * VolumeSnapshot of the claim with the class chosen for its CSI driver:
 * the driver comes from the bound PersistentVolume (spec.csi.driver), else from
 * the claim's StorageClass provisioner (spec.storageClassName, or the default
 * StorageClass when the claim names none); the class is the driver's
 * VolumeSnapshotClass labelled stasis.io/csi-volumesnapshot-class="true", else
 * the one annotated snapshot.storage.kubernetes.io/is-default-class="true",
 * else the only class of that driver; anything else is an error naming the
 * driver and what to label.
 *
 * st_csi_wait_cut returns as soon as every snapshot has status.creationTime
 * (the moment the storage cut it: the caller thaws then) or status.error, or
 * the timeout passes; st_csi_wait_ready then waits for readyToUse. Both list
 * the snapshots of each namespace involved and watch from the list's
 * resourceVersion (one thread per namespace), so there is no polling delay.
 * VolumeSnapshot times are RFC 3339; a bound VolumeSnapshotContent's
 * status.creationTime is int64 nanoseconds and replaces it once the snapshot
 * is ready (st_csi_wait_ready reads it, so that the cut itself is reported
 * without an extra request). Driver errors are reported exactly as written in
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

#define ST_CSI_CLASS_LABEL  "stasis.io/csi-volumesnapshot-class"
#define ST_CSI_DEFAULT_ANN  "snapshot.storage.kubernetes.io/is-default-class"
#define ST_CSI_METHOD_ANN   "stasis.io/snapshot-method" /* on a PVC: "csi" or "none" */
#define ST_CSI_KEEP_ANN     "stasis.io/keep-snapshot"   /* on a PVC: "true" */
#define ST_CSI_BACKUP_LABEL "stasis.io/backup-name"
/* The annotation that marks the default StorageClass. */
#define ST_CSI_DEFAULT_SC_ANN "storageclass.kubernetes.io/is-default-class"

/*
 * One VolumeSnapshot. The caller fills namespace, pvc and name (and cls to
 * skip the class choice); the functions below fill the rest. A snapshot is
 * "cut" when created_ns != 0 or ready, "failed" when error is not empty.
 */
struct st_csi_snap {
	char namespace[254];
	char pvc[254];
	char name[254];     /* VolumeSnapshot name */
	char cls[254];      /* VolumeSnapshotClass used */
	char driver[254];   /* CSI driver; "" when cls was given by the caller */
	char backup[64];    /* value of the stasis.io/backup-name label; "" for none */
	char content[254];  /* bound VolumeSnapshotContent; "" until bound */
	int64_t created_ns; /* creation time (Unix ns); 0: not cut yet */
	bool ready;
	int64_t restore_size; /* bytes (status.restoreSize); -1 unknown */
	char error[1024];     /* "" or status.error.message, or why creation failed */
};

/*
 * Driver of a claim (namespace ns, name pvc), as described above. ST_EINVAL
 * when the bound volume is not a CSI volume, or the claim is unbound and has
 * no class (and there is no default one); ST_ENOTFOUND when the claim or its
 * StorageClass does not exist; ST_ETOOBIG when the name does not fit size.
 */
int st_csi_driver_of(char *out, size_t size, struct st_kube_client *c, const char *ns,
                     const char *pvc, struct st_err *err) ST_WARN_UNUSED;
/*
 * The same, and *volume_out receives the claim's PersistentVolume when the
 * driver came from it (the caller puts it), else NULL: one read of the volume
 * for its driver and whatever else the caller needs of it.
 */
int st_csi_driver_and_volume(char *out, size_t size, struct json_object **volume_out,
                             struct st_kube_client *c, const char *ns, const char *pvc,
                             struct st_err *err) ST_WARN_UNUSED;

/*
 * VolumeSnapshotClass for a driver, as described above (one list of
 * volumesnapshotclasses). ST_ENOTFOUND when the driver has none, ST_EINVAL
 * when the choice is ambiguous; the message names the classes and the label.
 */
int st_csi_pick_class(char *out, size_t size, struct st_kube_client *c, const char *driver,
                      struct st_err *err) ST_WARN_UNUSED;

/* The choice of st_csi_pick_class among `classes` (a JSON array of VolumeSnapshotClass objects). */
int st_csi_choose_class(char *out, size_t size, const struct json_object *classes,
                        const char *driver, struct st_err *err) ST_WARN_UNUSED;

/*
 * Creates the VolumeSnapshot s->name in s->namespace for s->pvc with class
 * s->cls (picked when empty; s->driver filled), labelled
 * stasis.io/backup-name=backup (backup NULL or "": no label; it must be a valid
 * label value, at most 63 characters). Resets the status fields; on failure
 * s->error holds the same sentence as err. 409 (exists) is an error.
 */
int st_csi_create(struct st_csi_snap *s, struct st_kube_client *c, const char *backup,
                  struct st_err *err) ST_WARN_UNUSED;

/*
 * Waits until every snapshot is cut or failed (see above), at most timeout_ms
 * (> 0). Returns 0 then, even when some failed: the caller reads s->error of
 * each. ST_ETIMEDOUT names the ones not cut (they keep error ""); another
 * negative code when the API refuses the list or watch (e.g. the
 * VolumeSnapshot type is not installed). A snapshot deleted or missing while
 * waiting is failed with a message saying so. Snapshots already cut or failed
 * are not waited for. The timeout is kept to within about a second (the
 * client notices a deadline on an idle watch about once a second). Thread-safe
 * for disjoint arrays.
 */
int st_csi_wait_cut(struct st_csi_snap *snaps, size_t n, struct st_kube_client *c,
                    int64_t timeout_ms, struct st_err *err) ST_WARN_UNUSED;

/*
 * The same for readyToUse: waits for every snapshot not failed. Afterwards
 * created_ns and restore_size come from the bound VolumeSnapshotContent when
 * it can be read. ST_ETIMEDOUT names the snapshots not ready.
 */
int st_csi_wait_ready(struct st_csi_snap *snaps, size_t n, struct st_kube_client *c,
                      int64_t timeout_ms, struct st_err *err) ST_WARN_UNUSED;

/*
 * Updates s from obj: a VolumeSnapshot (status.boundVolumeSnapshotContentName,
 * RFC 3339 creationTime, readyToUse, restoreSize as a quantity, error) or a
 * VolumeSnapshotContent (int64 ns creationTime and bytes restoreSize, which
 * replace the snapshot's). An error, once set, stays. No API calls.
 */
void st_csi_read_status(struct st_csi_snap *s, const struct json_object *obj);

/* Deletes the VolumeSnapshot; a missing one is fine. */
int st_csi_delete(const struct st_csi_snap *s, struct st_kube_client *c,
                  struct st_err *err) ST_WARN_UNUSED;

/*
 * Parses RFC 3339 ("2026-11-24T06:00:00Z"; 't' or ' ' for 'T', 'z', fractions
 * of any length (nanoseconds kept), "+hh:mm"/"-hh:mm" offsets) into Unix ns.
 * ST_EINVAL for anything else or outside the int64 range (1678..2262).
 */
int st_csi_parse_time(int64_t *out, const char *text) ST_WARN_UNUSED;

#endif
