/*
 * Internals shared by the snapshot backends (pkg/snapshot_*.c).
 */
#ifndef ST_PKG_SNAPSHOT_INT_H
#define ST_PKG_SNAPSHOT_INT_H

#include "pkg/snapshot.h"

extern const struct st_snapshot_ops st_snapshot__image_ops;
extern const struct st_snapshot_ops st_snapshot__btrfs_ops;
extern const struct st_snapshot_ops st_snapshot__copy_ops;

/* Bind-mounts src at target read-only (nodev, nosuid, noexec). */
int st_snapshot__bind_ro(const char *src, const char *target, struct st_err *err) ST_WARN_UNUSED;

/* Unmounts snap->mountpoint (a missing mount is a success) and clears it. */
int st_snapshot__umount(struct st_snapshot *snap, struct st_err *err) ST_WARN_UNUSED;

/* Copies at most cap-1 bytes of src into dst; ST_ETOOBIG when it does not fit. */
int st_snapshot__copy_str(char *dst, size_t cap, const char *src) ST_WARN_UNUSED;

#endif
