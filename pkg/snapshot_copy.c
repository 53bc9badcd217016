/*
 * The copy backend, for volumes with no snapshot-capable storage under them:
 * a file-by-file copy (data, modes, owners, times, symlinks, device nodes
 * and fifos; hard links become separate files) into a directory outside the
 * volume, made while the volume is frozen. The freeze therefore lasts the
 * whole copy, which is why this backend is opt-in and warns.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pkg/freeze.h"
#include "pkg/snapshot_int.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define MAX_DEPTH 256
#define COPY_BUF  (1u << 20)

static int copy_data(int in, int out)
{
	char *buf = NULL;
	ssize_t n;

	for (;;) {
		n = copy_file_range(in, NULL, out, NULL, 1u << 30, 0);
		if (n == 0)
			return 0;
		if (n < 0)
			break;
	}
	if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -1;
	buf = st_xmalloc(COPY_BUF);
	while ((n = read(in, buf, COPY_BUF)) > 0)
		if (write(out, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	free(buf);
	return n < 0 ? -1 : 0;
}

/* Applies owner, mode and times of st to name in dir (symlinks: owner and times). */
static void copy_attrs(int dir, const char *name, const struct stat *st)
{
	struct timespec ts[2] = { st->st_atim, st->st_mtim };

	(void)fchownat(dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
	if (!S_ISLNK(st->st_mode))
		(void)fchmodat(dir, name, st->st_mode & 07777, 0);
	(void)utimensat(dir, name, ts, AT_SYMLINK_NOFOLLOW);
}

static int copy_file(int sdir, int ddir, const char *name)
{
	int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int out = in < 0 ? -1 : openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc = in >= 0 && out >= 0 ? copy_data(in, out) : -1;

	if (in >= 0)
		(void)close(in);
	if (out >= 0)
		(void)close(out);
	return rc;
}

static int copy_dir(int sdir, int ddir, dev_t dev, int depth, struct st_err *err);

static int copy_entry(int sdir, int ddir, const char *name, dev_t dev, int depth,
                      struct st_err *err)
{
	char target[4096];
	struct stat st;
	ssize_t n;
	int rc = 0;

	if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return st_err_set(err, ST_EIO, "stat %s: %s", name, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		int s2 = -1, d2 = -1;

		if (st.st_dev != dev) {
			st_log_warn("copy: %s is another filesystem, not copied", name);
			return 0;
		}
		if (mkdirat(ddir, name, 0700) < 0 ||
		    (s2 = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
		            0 ||
		    (d2 = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			rc = st_err_set(err, ST_EIO, "copy dir %s: %s", name, strerror(errno));
		else
			rc = copy_dir(s2, d2, dev, depth + 1, err);
		if (s2 >= 0)
			(void)close(s2);
		if (d2 >= 0)
			(void)close(d2);
	} else if (S_ISREG(st.st_mode)) {
		if (copy_file(sdir, ddir, name) < 0)
			rc = st_err_set(err, ST_EIO, "copy %s: %s", name, strerror(errno));
	} else if (S_ISLNK(st.st_mode)) {
		n = readlinkat(sdir, name, target, sizeof(target) - 1);
		if (n >= 0)
			target[n] = '\0';
		if (n < 0 || symlinkat(target, ddir, name) < 0)
			rc = st_err_set(err, ST_EIO, "copy link %s: %s", name, strerror(errno));
	} else if (S_ISSOCK(st.st_mode)) {
		return 0;
	} else if (mknodat(ddir, name, st.st_mode, st.st_rdev) < 0) {
		rc = st_err_set(err, ST_EIO, "copy node %s: %s", name, strerror(errno));
	}
	if (rc == 0)
		copy_attrs(ddir, name, &st);
	return rc;
}

static int copy_dir(int sdir, int ddir, dev_t dev, int depth, struct st_err *err)
{
	int fd = dup(sdir);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int rc = 0;

	if (depth > MAX_DEPTH)
		rc = st_err_set(err, ST_ETOOBIG, "directory tree deeper than %d", MAX_DEPTH);
	if (d == NULL) {
		if (fd >= 0)
			(void)close(fd);
		return st_err_set(err, ST_EIO, "opendir: %s", strerror(errno));
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = copy_entry(sdir, ddir, de->d_name, dev, depth, err);
	}
	(void)closedir(d);
	return rc;
}

static int copy_prepare(struct st_snapshot *snap, void **ctx_out,
                        const struct st_snapshot_options *opts, struct st_err *err)
{
	char base[ST_SNAPSHOT_PATH];
	struct st_mount_info *vol = st_xcalloc(1, sizeof(*vol));
	struct st_mount_info *dst = st_xcalloc(1, sizeof(*dst));
	int rc = ST_EINTERNAL;

	*ctx_out = NULL;
	if (opts->dest_dir != NULL)
		(void)snprintf(base, sizeof(base), "%s", opts->dest_dir);
	else
		(void)snprintf(base, sizeof(base), "%s/copies", opts->state_dir);
	if (mkdir(base, 0700) < 0 && errno != EEXIST) {
		rc = st_err_set(err, ST_EIO, "%s: %s", base, strerror(errno));
		goto out;
	}
	if ((rc = st_freeze_mount_info(vol, opts->volume, err)) < 0 ||
	    (rc = st_freeze_mount_info(dst, base, err)) < 0)
		goto out;
	if (strcmp(vol->devkey, dst->devkey) == 0) {
		rc = st_err_set(err, ST_EINVAL, "copy destination %s is on the volume itself",
		                base);
		goto out;
	}
	(void)snprintf(snap->source, sizeof(snap->source), "%s", opts->volume);
	(void)snprintf(snap->fstype, sizeof(snap->fstype), "%s", vol->fstype);
	if (snprintf(snap->path, sizeof(snap->path), "%s/%s", base, snap->id) >=
	            (int)sizeof(snap->path) ||
	    mkdir(snap->path, 0700) < 0) {
		rc = st_err_set(err, ST_EIO, "%s: %s", snap->path, strerror(errno));
		goto out;
	}
	st_log_warn("snapshot method copy: %s stays frozen for the whole copy", opts->volume);
	rc = 0;
out:
	free(vol);
	free(dst);
	return rc;
}

static int copy_cut(struct st_snapshot *snap, void *ctx, struct st_err *err)
{
	int s = open(snap->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int d = open(snap->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	int rc = ST_EIO;

	(void)ctx;
	if (s < 0 || d < 0 || fstat(s, &st) < 0)
		rc = st_err_set(err, ST_EIO, "copy %s: %s", snap->source, strerror(errno));
	else
		rc = copy_dir(s, d, st.st_dev, 0, err);
	if (s >= 0)
		(void)close(s);
	if (d >= 0)
		(void)close(d);
	return rc;
}

static void copy_finish(void *ctx)
{
	(void)ctx;
}

static int copy_mount(struct st_snapshot *snap, const char *target, struct st_err *err)
{
	return st_snapshot__bind_ro(snap->path, target, err);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int copy_remove(const struct st_snapshot *snap, struct st_err *err)
{
	if (access(snap->path, F_OK) < 0)
		return 0;
	if (nftw(snap->path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return st_err_set(err, ST_EIO, "remove %s: %s", snap->path, strerror(errno));
	return 0;
}

const struct st_snapshot_ops st_snapshot__copy_ops = {
	.name = "copy",
	.needs_freeze = true,
	.prepare = copy_prepare,
	.cut = copy_cut,
	.finish = copy_finish,
	.mount = copy_mount,
	.unmount = st_snapshot__umount,
	.remove = copy_remove,
};
