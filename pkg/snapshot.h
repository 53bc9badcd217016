/*
 * Storage snapshots of a volume, cut below a frozen filesystem.
 *
 * A frozen filesystem accepts no writes, so a reflink clone or btrfs
 * snapshot inside it would block until thaw. The backends therefore cut
 * below the filesystem:
 *   image  the volume is a filesystem image on a loop device; its backing
 *          file (found from the mount through /sys/block/loopN/loop) is
 *          cloned with FICLONE on the reflink-capable pool under it, while
 *          the volume is frozen;
 *   btrfs  the volume is a btrfs subvolume; a read-only snapshot is atomic
 *          by itself and is taken without a freeze (a freeze would block it);
 *   copy   explicit opt-in: a file-by-file copy made while frozen, so the
 *          freeze lasts the whole copy (warned);
 *   csi    implemented by the controller through struct st_snapshot_ops.
 * Each snapshot is a handle (id) with metadata kept as one JSON file per
 * snapshot under <state_dir>/snapshots. It can be mounted read-only for
 * reading (XFS clones get nouuid; a journal left by the freeze is replayed
 * on the private clone, or skipped with norecovery/noload when that fails),
 * unmounted and deleted. Snapshots whose owner never came back expire after
 * their TTL and are removed by st_snapshot_gc().
 *
 * Thread safety: functions touching the same state_dir must not run
 * concurrently on the same snapshot id.
 */
#ifndef ST_PKG_SNAPSHOT_H
#define ST_PKG_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

#define ST_SNAPSHOT_PATH 4096

/* A snapshot's metadata (the handle is id). */
struct st_snapshot {
	char id[64];
	char method[16];                   /* image | btrfs | copy | csi */
	char volume[ST_SNAPSHOT_PATH];     /* the volume path it was cut from */
	char source[ST_SNAPSHOT_PATH];     /* image: backing file; btrfs: subvolume; copy: volume */
	char path[ST_SNAPSHOT_PATH];       /* the snapshot: clone file, subvolume or directory */
	char fstype[32];                   /* filesystem inside the snapshot */
	char mountpoint[ST_SNAPSHOT_PATH]; /* where it is mounted, "" when not */
	char loopdev[64];                  /* image: loop device of the mount */
	char owner[128];                   /* who asked for it (free text) */
	int64_t created;                   /* unix seconds */
	int64_t expires;                   /* unix seconds; 0: never */
	int64_t freeze_ns;                 /* first FIFREEZE to last FITHAW; 0: no freeze */
	int64_t cut_ns;                    /* duration of the cut itself */
};

struct st_snapshot_options;

/*
 * A backend. prepare() resolves the source and fills snap->source, path and
 * fstype, and may keep per-cut state in *ctx_out (released by finish, which
 * is always called after a successful prepare). cut() makes the snapshot and
 * runs inside the freeze window when needs_freeze is set, so it must do
 * nothing but the cut. remove() deletes the snapshot's data.
 */
struct st_snapshot_ops {
	const char *name;
	bool needs_freeze;
	int (*prepare)(struct st_snapshot *snap, void **ctx_out,
	               const struct st_snapshot_options *opts, struct st_err *err);
	int (*cut)(struct st_snapshot *snap, void *ctx, struct st_err *err);
	void (*finish)(void *ctx);
	int (*mount)(struct st_snapshot *snap, const char *target, struct st_err *err);
	int (*unmount)(struct st_snapshot *snap, struct st_err *err);
	int (*remove)(const struct st_snapshot *snap, struct st_err *err);
};

struct st_snapshot_options {
	const char *volume;                /* directory of the mounted volume */
	const char *method;                /* "image", "btrfs", "copy"; ignored when ops is set */
	const struct st_snapshot_ops *ops; /* a backend implemented elsewhere (csi) */
	const char *state_dir;             /* metadata, journals and default mount points */
	const char *dest_dir;              /* where the data goes; NULL: the backend's default */
	const char *owner;                 /* free text recorded in the metadata */
	int64_t ttl_s;                     /* 0: never expires */
	int64_t timeout_s;                 /* freeze deadline enforced by the watchdog */
	bool mount;                        /* mount read-only after the cut */
	bool caller_froze; /* the caller holds the volume frozen (agent API): cut only */
};
#define ST_SNAPSHOT_OPTIONS_INIT                                                            \
	{                                                                                   \
		NULL, "image", NULL, "/run/stasis", NULL, NULL, 24 * 3600, 30, false, false \
	}

/* The built-in backend called name, or NULL ("csi" is not built in). */
const struct st_snapshot_ops *st_snapshot_ops_find(const char *name);

/*
 * Cuts a snapshot of opts->volume: freeze (with a watchdog and a journal in
 * state_dir) -> cut -> thaw for the backends that need it, then records the
 * metadata and, with opts->mount, mounts it read-only under
 * <state_dir>/mnt/<id>. Nothing stays frozen on any failure. *out is filled
 * on success.
 */
int st_snapshot_create(struct st_snapshot *out, const struct st_snapshot_options *opts,
                       struct st_err *err) ST_WARN_UNUSED;

/* Mounts snapshot id read-only at target (NULL: <state_dir>/mnt/<id>); updates metadata. */
int st_snapshot_mount(struct st_snapshot *out, const char *state_dir, const char *id,
                      const char *target, struct st_err *err) ST_WARN_UNUSED;

/* Unmounts snapshot id if mounted; updates metadata. */
int st_snapshot_unmount(const char *state_dir, const char *id, struct st_err *err) ST_WARN_UNUSED;

/* Unmounts, deletes the data and the metadata of snapshot id. */
int st_snapshot_delete(const char *state_dir, const char *id, struct st_err *err) ST_WARN_UNUSED;

/* Reads the metadata of snapshot id. ST_ENOTFOUND when unknown. */
int st_snapshot_load(struct st_snapshot *out, const char *state_dir, const char *id,
                     struct st_err *err) ST_WARN_UNUSED;

typedef int (*st_snapshot_list_cb)(const struct st_snapshot *snap, void *payload);

/*
 * Calls cb for each snapshot in state_dir, oldest first. A negative return
 * from cb stops the walk and is returned.
 */
int st_snapshot_list(const char *state_dir, st_snapshot_list_cb cb, void *payload,
                     struct st_err *err) ST_WARN_UNUSED;

/* Deletes every snapshot whose expiry is at or before now (unix seconds). */
int st_snapshot_gc(const char *state_dir, int64_t now, unsigned *removed_out,
                   struct st_err *err) ST_WARN_UNUSED;

/* The metadata as a JSON object (caller owns; json_object_put). */
struct json_object *st_snapshot_to_json(const struct st_snapshot *snap);

#endif
