/*
 * The image backend: the volume is a filesystem image attached to a loop
 * device; the snapshot is a FICLONE of the image file on the pool
 * filesystem underneath, taken while the volume is frozen. Cloning on the
 * pool does not touch the frozen filesystem, so it does not block.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include "pkg/freeze.h"
#include "pkg/snapshot_int.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

struct image_ctx {
	int src;
	int dst;
};

/* Reads /sys/block/loopN/loop/backing_file for a /dev/loopN source. */
static int backing_file(char *out, size_t cap, const char *source, struct st_err *err)
{
	char sys[128];
	const char *base = strrchr(source, '/');
	FILE *f = NULL;
	size_t n;

	base = base != NULL ? base + 1 : source;
	if (strncmp(base, "loop", 4) != 0 || base[4] < '0' || base[4] > '9')
		return st_err_set(err, ST_EINVAL,
		                  "mounted from %s, not a loop-backed image (use --method copy, "
		                  "or a storage snapshot)",
		                  source);
	(void)snprintf(sys, sizeof(sys), "/sys/block/%.32s/loop/backing_file", base);
	if ((f = fopen(sys, "re")) == NULL)
		return st_err_set(err, ST_EIO, "%s: %s", sys, strerror(errno));
	n = fread(out, 1, cap - 1, f);
	(void)fclose(f);
	while (n > 0 && out[n - 1] == '\n')
		n--;
	out[n] = '\0';
	if (n == 0 || out[0] != '/')
		return st_err_set(err, ST_EIO, "%s: no backing file", sys);
	if (n > 10 && strcmp(out + n - 10, " (deleted)") == 0)
		return st_err_set(err, ST_EIO, "backing file of %s was deleted", source);
	return 0;
}

static int image_prepare(struct st_snapshot *snap, void **ctx_out,
                         const struct st_snapshot_options *opts, struct st_err *err)
{
	struct st_mount_info *mi = st_xcalloc(1, sizeof(*mi));
	struct image_ctx *c = NULL;
	char dir[ST_SNAPSHOT_PATH];
	const char *base = NULL;
	int rc = ST_EINTERNAL;

	*ctx_out = NULL;
	if ((rc = st_freeze_mount_info(mi, opts->volume, err)) < 0 ||
	    (rc = backing_file(snap->source, sizeof(snap->source), mi->source, err)) < 0)
		goto out;
	(void)snprintf(snap->fstype, sizeof(snap->fstype), "%s", mi->fstype);
	(void)snprintf(dir, sizeof(dir), "%s", snap->source);
	*strrchr(dir, '/') = '\0';
	base = strrchr(snap->source, '/') + 1;
	if (snprintf(snap->path, sizeof(snap->path), "%s/%s.%s",
	             opts->dest_dir != NULL ? opts->dest_dir : dir, base,
	             snap->id) >= (int)sizeof(snap->path)) {
		rc = st_err_set(err, ST_EINVAL, "clone path too long");
		goto out;
	}
	c = st_xcalloc(1, sizeof(*c));
	c->dst = -1;
	if ((c->src = open(snap->source, O_RDONLY | O_CLOEXEC)) < 0 ||
	    (c->dst = open(snap->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		rc = st_err_set(err, ST_EIO, "%s: %s", c->src < 0 ? snap->source : snap->path,
		                strerror(errno));
		goto out;
	}
	*ctx_out = c;
	c = NULL; /* transferred */
	rc = 0;
out:
	if (c != NULL) {
		if (c->src >= 0)
			(void)close(c->src);
		free(c);
	}
	free(mi);
	return rc;
}

static int image_cut(struct st_snapshot *snap, void *ctx, struct st_err *err)
{
	const struct image_ctx *c = ctx;
	int e;

	if (ioctl(c->dst, FICLONE, c->src) == 0)
		return 0;
	e = errno;
	if (e == EOPNOTSUPP || e == EINVAL || e == ENOTTY)
		return st_err_set(
		        err, ST_EINVAL,
		        "the filesystem under %s does not support reflink clones (FICLONE)",
		        snap->source);
	if (e == EXDEV)
		return st_err_set(err, ST_EINVAL, "clone %s is not on the filesystem of %s",
		                  snap->path, snap->source);
	return st_err_set(err, ST_EIO, "clone %s: %s", snap->source, strerror(e));
}

static void image_finish(void *ctx)
{
	struct image_ctx *c = ctx;

	if (c == NULL)
		return;
	(void)close(c->src);
	(void)close(c->dst);
	free(c);
}

/*
 * Attaches file to a free loop device with autoclear, so unmounting the
 * filesystem detaches it. Writable on purpose: the clone is private, and a
 * read-only mount on a writable device lets XFS and ext4 replay the journal.
 */
static int loop_attach(int *lfd_out, char *dev, size_t cap, const char *file, struct st_err *err)
{
	struct loop_config cfg;
	int ctl = -1, ffd = -1, lfd = -1, rc = ST_EINTERNAL;

	*lfd_out = -1;
	if ((ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC)) < 0 ||
	    (ffd = open(file, O_RDWR | O_CLOEXEC)) < 0) {
		rc = st_err_set(err, ST_EIO, "%s: %s", ctl < 0 ? "/dev/loop-control" : file,
		                strerror(errno));
		goto out;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (unsigned)ffd;
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	(void)snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%.63s", file);
	for (int attempt = 0; attempt < 16; attempt++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (n < 0)
			break;
		(void)snprintf(dev, cap, "/dev/loop%d", n);
		if ((lfd = open(dev, O_RDWR | O_CLOEXEC)) < 0)
			break;
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
			*lfd_out = lfd;
			lfd = -1;
			rc = 0;
			goto out;
		}
		(void)close(lfd);
		lfd = -1;
		if (errno != EBUSY)
			break;
	}
	rc = st_err_set(err, ST_EIO, "attach %s to a loop device: %s", file, strerror(errno));
out:
	if (ctl >= 0)
		(void)close(ctl);
	if (ffd >= 0)
		(void)close(ffd);
	return rc;
}

static int image_mount(struct st_snapshot *snap, const char *target, struct st_err *err)
{
	const unsigned long flags = MS_RDONLY | MS_NODEV | MS_NOSUID | MS_NOEXEC;
	bool xfs = strcmp(snap->fstype, "xfs") == 0;
	bool ext = strncmp(snap->fstype, "ext", 3) == 0;
	/* XFS refuses a second filesystem with the same UUID unless told nouuid. */
	const char *first = xfs ? "nouuid" : "";
	const char *second = xfs ? "nouuid,norecovery" : ext ? "noload" : NULL;
	char dev[64];
	int lfd = -1, rc;

	if ((rc = loop_attach(&lfd, dev, sizeof(dev), snap->path, err)) < 0)
		return rc;
	if (mount(dev, target, snap->fstype, flags, first) < 0) {
		int e = errno;

		if (second == NULL || mount(dev, target, snap->fstype, flags, second) < 0) {
			rc = st_err_set(err, ST_EIO, "mount %s (%s) on %s: %s", snap->path,
			                snap->fstype, target, strerror(e));
			goto out;
		}
		st_log_warn("snapshot %s mounted with %s: its journal was not replayed", snap->id,
		            second);
	}
	(void)snprintf(snap->loopdev, sizeof(snap->loopdev), "%s", dev);
	rc = 0;
out:
	/* The mount holds the device now; on failure this close detaches it. */
	(void)close(lfd);
	return rc;
}

static int image_unmount(struct st_snapshot *snap, struct st_err *err)
{
	int rc = st_snapshot__umount(snap, err);

	if (rc == 0)
		snap->loopdev[0] = '\0';
	return rc;
}

static int image_remove(const struct st_snapshot *snap, struct st_err *err)
{
	if (unlink(snap->path) < 0 && errno != ENOENT)
		return st_err_set(err, ST_EIO, "remove %s: %s", snap->path, strerror(errno));
	return 0;
}

const struct st_snapshot_ops st_snapshot__image_ops = {
	.name = "image",
	.needs_freeze = true,
	.prepare = image_prepare,
	.cut = image_cut,
	.finish = image_finish,
	.mount = image_mount,
	.unmount = image_unmount,
	.remove = image_remove,
};
