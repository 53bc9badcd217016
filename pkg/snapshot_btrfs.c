/*
 * The btrfs backend: the volume is a btrfs subvolume and the snapshot a
 * read-only subvolume snapshot next to it, in <parent>/.stasis-snapshots.
 * A btrfs snapshot is atomic by itself and would block on a frozen
 * filesystem, so this backend never freezes.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "pkg/snapshot_int.h"

/* The inode number of every btrfs subvolume's root directory. */
#define SUBVOL_ROOT_INO 256

static int split_path(char *dir, size_t cap, const char **name, const char *path)
{
	char *slash;

	if (st_snapshot__copy_str(dir, cap, path) < 0 || (slash = strrchr(dir, '/')) == NULL)
		return ST_EINVAL;
	*slash = '\0';
	*name = path + (slash - dir) + 1;
	return 0;
}

static int btrfs_prepare(struct st_snapshot *snap, void **ctx_out,
                         const struct st_snapshot_options *opts, struct st_err *err)
{
	char parent[ST_SNAPSHOT_PATH], dest[ST_SNAPSHOT_PATH + 32];
	const char *base = NULL;
	struct statfs sfs;
	struct stat st;

	*ctx_out = NULL;
	if (realpath(opts->volume, snap->source) == NULL)
		return st_err_set(err, ST_ENOTFOUND, "%s: %s", opts->volume, strerror(errno));
	if (statfs(snap->source, &sfs) < 0 || stat(snap->source, &st) < 0)
		return st_err_set(err, ST_EIO, "%s: %s", snap->source, strerror(errno));
	if (sfs.f_type != BTRFS_SUPER_MAGIC || st.st_ino != SUBVOL_ROOT_INO)
		return st_err_set(err, ST_EINVAL, "%s is not a btrfs subvolume", snap->source);
	(void)snprintf(snap->fstype, sizeof(snap->fstype), "btrfs");
	if (split_path(parent, sizeof(parent), &base, snap->source) < 0 || parent[0] == '\0')
		return st_err_set(err, ST_EINVAL, "%s: cannot snapshot the root", snap->source);
	if (opts->dest_dir != NULL)
		(void)snprintf(dest, sizeof(dest), "%s", opts->dest_dir);
	else
		(void)snprintf(dest, sizeof(dest), "%s/.stasis-snapshots", parent);
	if (mkdir(dest, 0700) < 0 && errno != EEXIST)
		return st_err_set(err, ST_EIO, "%s: %s", dest, strerror(errno));
	if (snprintf(snap->path, sizeof(snap->path), "%s/%s@%s", dest, base, snap->id) >=
	    (int)sizeof(snap->path))
		return st_err_set(err, ST_EINVAL, "snapshot path too long");
	return 0;
}

static int btrfs_cut(struct st_snapshot *snap, void *ctx, struct st_err *err)
{
	struct btrfs_ioctl_vol_args_v2 args;
	char dir[ST_SNAPSHOT_PATH];
	const char *name = NULL;
	int src = -1, dst = -1, rc = ST_EINTERNAL;

	(void)ctx;
	if (split_path(dir, sizeof(dir), &name, snap->path) < 0 ||
	    strlen(name) >= sizeof(args.name))
		return st_err_set(err, ST_EINVAL, "bad snapshot path %s", snap->path);
	if ((src = open(snap->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (dst = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = st_err_set(err, ST_EIO, "%s: %s", src < 0 ? snap->source : dir,
		                strerror(errno));
		goto out;
	}
	memset(&args, 0, sizeof(args));
	args.fd = src;
	args.flags = BTRFS_SUBVOL_RDONLY;
	memcpy(args.name, name, strlen(name) + 1);
	if (ioctl(dst, BTRFS_IOC_SNAP_CREATE_V2, &args) < 0) {
		rc = st_err_set(err, ST_EIO, "btrfs snapshot %s: %s", snap->path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (src >= 0)
		(void)close(src);
	if (dst >= 0)
		(void)close(dst);
	return rc;
}

static void btrfs_finish(void *ctx)
{
	(void)ctx;
}

static int btrfs_mount(struct st_snapshot *snap, const char *target, struct st_err *err)
{
	return st_snapshot__bind_ro(snap->path, target, err);
}

static int btrfs_remove(const struct st_snapshot *snap, struct st_err *err)
{
	struct btrfs_ioctl_vol_args args;
	char dir[ST_SNAPSHOT_PATH];
	const char *name = NULL;
	int fd = -1, rc = ST_EINTERNAL;

	if (split_path(dir, sizeof(dir), &name, snap->path) < 0 ||
	    strlen(name) >= sizeof(args.name))
		return st_err_set(err, ST_EINVAL, "bad snapshot path %s", snap->path);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 0
		                       : st_err_set(err, ST_EIO, "%s: %s", dir, strerror(errno));
	memset(&args, 0, sizeof(args));
	memcpy(args.name, name, strlen(name) + 1);
	if (ioctl(fd, BTRFS_IOC_SNAP_DESTROY, &args) < 0 && errno != ENOENT) {
		rc = st_err_set(err, ST_EIO, "delete btrfs snapshot %s: %s", snap->path,
		                strerror(errno));
		goto out;
	}
	rc = 0;
out:
	(void)close(fd);
	return rc;
}

const struct st_snapshot_ops st_snapshot__btrfs_ops = {
	.name = "btrfs",
	.needs_freeze = false,
	.prepare = btrfs_prepare,
	.cut = btrfs_cut,
	.finish = btrfs_finish,
	.mount = btrfs_mount,
	.unmount = st_snapshot__umount,
	.remove = btrfs_remove,
};
