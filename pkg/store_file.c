/*
 * file:// store backend: a directory holds one file per key.
 *
 * A put writes a temporary file next to the target, fsyncs it, then renames
 * it into place (or, for if_absent, hard-links it, which fails atomically
 * when the key exists) and fsyncs the directory, so a reader sees the old
 * object, the new one or none, and a crash never leaves a torn object under
 * a key. Temporary names start with ".tmp." and are never listed. Keys are
 * relative paths without "." or ".." components. With deferred sync the
 * fsyncs are left out and fs_sync() flushes the whole filesystem once
 * (syncfs), which is far cheaper than a flush per object on most disks.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/mem.h"

#define IO_BLOCK     (1u << 20)
#define KEY_MAX      1024
#define LIST_KEY_CAP (64u * 1024u * 1024u)

struct file_store {
	struct st_store base;
	char *root;
};

static int errno_code(int e)
{
	if (e == ENOENT || e == ENOTDIR)
		return ST_ENOTFOUND;
	if (e == ENOMEM)
		return ST_ENOMEM;
	return ST_EIO;
}

static int check_key(const char *key, struct st_err *err)
{
	size_t n = strlen(key);
	const char *p = key;

	if (n == 0 || n > KEY_MAX || key[0] == '/' || key[n - 1] == '/')
		return st_err_set(err, ST_EINVAL, "invalid object key '%s'", key);
	while (*p != '\0') {
		size_t c = strcspn(p, "/");

		if (c == 0 || (c == 1 && p[0] == '.') || (c == 2 && p[0] == '.' && p[1] == '.') ||
		    (c >= 5 && strncmp(p, ".tmp.", 5) == 0))
			return st_err_set(err, ST_EINVAL, "invalid object key '%s'", key);
		p += c;
		if (*p == '/')
			p++;
	}
	return 0;
}

static char *full_path(const struct file_store *fs, const char *key)
{
	size_t n = strlen(fs->root) + strlen(key) + 2;
	char *p = st_xmalloc(n);

	(void)snprintf(p, n, "%s/%s", fs->root, key);
	return p;
}

/* Creates every missing directory above path (which names a file). */
static int make_parents(char *path)
{
	for (char *s = strchr(path + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST) {
			*s = '/';
			return -1;
		}
		*s = '/';
	}
	return 0;
}

static int fsync_parent(const char *path)
{
	char *dir = st_xstrdup(path);
	char *slash = strrchr(dir, '/');
	int fd;
	int rc = 0;

	if (slash != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -1;
	if (fd >= 0)
		(void)close(fd);
	free(dir);
	return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copies the reader into fd; checks the promised size when known. */
static int fill_temp(int fd, uint64_t size, st_store_read_cb rd, void *payload, const char *key,
                     bool flush, struct st_err *err)
{
	char *buf = st_xmalloc(IO_BLOCK);
	uint64_t total = 0;
	int rc = ST_EINTERNAL;

	for (;;) {
		long n = rd(buf, IO_BLOCK, payload);

		if (n < 0) {
			rc = st_err_set(err, (int)n, "put %s: reading the source failed", key);
			goto out;
		}
		if (n == 0)
			break;
		if (write_all(fd, buf, (size_t)n) != 0) {
			rc = st_err_set(err, ST_EIO, "put %s: write: %s", key, strerror(errno));
			goto out;
		}
		total += (uint64_t)n;
	}
	if (size != UINT64_MAX && total != size) {
		rc = st_err_set(err, ST_EINVAL, "put %s: source gave %llu bytes, %llu announced",
		                key, (unsigned long long)total, (unsigned long long)size);
		goto out;
	}
	if (flush && fsync(fd) != 0) {
		rc = st_err_set(err, ST_EIO, "put %s: fsync: %s", key, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

static int fs_put(struct st_store *s, const char *key, uint64_t size, st_store_read_cb rd,
                  void *payload, bool if_absent, struct st_err *err)
{
	struct file_store *fs = (struct file_store *)s;
	char *path = NULL;
	char *tmp = NULL;
	unsigned char rnd[8];
	size_t tn;
	char *slash;
	int fd = -1;
	int rc = ST_EINTERNAL;

	if ((rc = check_key(key, err)) < 0)
		return rc;
	path = full_path(fs, key);
	tn = strlen(path) + 32;
	tmp = st_xmalloc(tn);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		rc = st_err_set(err, ST_EINTERNAL, "put %s: no random bytes", key);
		goto out;
	}
	slash = strrchr(path, '/');
	(void)snprintf(tmp, tn, "%.*s/.tmp.%02x%02x%02x%02x%02x%02x%02x%02x", (int)(slash - path),
	               path, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	if (make_parents(path) != 0) {
		rc = st_err_set(err, errno_code(errno), "put %s: mkdir: %s", key, strerror(errno));
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = st_err_set(err, errno_code(errno), "put %s: %s", key, strerror(errno));
		goto out;
	}
	if ((rc = fill_temp(fd, size, rd, payload, key, !s->defer_sync, err)) < 0)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		rc = st_err_set(err, ST_EIO, "put %s: close: %s", key, strerror(errno));
		goto out;
	}
	fd = -1;
	if (if_absent) {
		/* link() fails with EEXIST when the key exists: that is the atomic test. */
		if (link(tmp, path) != 0) {
			rc = errno == EEXIST ? 1
			                     : st_err_set(err, ST_EIO, "put %s: link: %s", key,
			                                  strerror(errno));
			goto out;
		}
	} else if (rename(tmp, path) != 0) {
		rc = st_err_set(err, ST_EIO, "put %s: rename: %s", key, strerror(errno));
		goto out;
	}
	if (!s->defer_sync && fsync_parent(path) != 0) {
		rc = st_err_set(err, ST_EIO, "put %s: fsync directory: %s", key, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		(void)close(fd);
	if (tmp != NULL)
		(void)unlink(tmp);
	free(tmp);
	free(path);
	return rc;
}

static int fs_get(struct st_store *s, const char *key, uint64_t off, uint64_t len,
                  st_store_write_cb wr, void *payload, struct st_err *err)
{
	struct file_store *fs = (struct file_store *)s;
	char *path = NULL;
	char *buf = NULL;
	int fd = -1;
	int rc = ST_EINTERNAL;

	if ((rc = check_key(key, err)) < 0)
		return rc;
	path = full_path(fs, key);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = st_err_set(err, errno_code(errno), "get %s: %s", key, strerror(errno));
		goto out;
	}
	buf = st_xmalloc(len < IO_BLOCK ? (size_t)len : IO_BLOCK);
	while (len > 0) {
		size_t want = len < IO_BLOCK ? (size_t)len : IO_BLOCK;
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = st_err_set(err, ST_EIO, "get %s: read: %s", key, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if ((rc = wr(buf, (size_t)n, payload)) != 0)
			goto out;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	rc = 0;
out:
	free(buf);
	if (fd >= 0)
		(void)close(fd);
	free(path);
	return rc;
}

static int fs_head(struct st_store *s, const char *key, uint64_t *size_out, struct st_err *err)
{
	struct file_store *fs = (struct file_store *)s;
	struct stat st;
	char *path;
	int rc;

	*size_out = 0;
	if ((rc = check_key(key, err)) < 0)
		return rc;
	path = full_path(fs, key);
	if (stat(path, &st) != 0) {
		rc = st_err_set(err, errno_code(errno), "head %s: %s", key, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = st_err_set(err, ST_ENOTFOUND, "head %s: not an object", key);
	} else {
		*size_out = (uint64_t)st.st_size;
		rc = 0;
	}
	free(path);
	return rc;
}

struct key_list {
	char **keys;
	uint64_t *sizes;
	size_t n;
	size_t alloc;
	size_t bytes;
};

static int list_add(struct key_list *l, const char *key, uint64_t size)
{
	if (l->bytes > LIST_KEY_CAP)
		return ST_ETOOBIG;
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? l->alloc * 2 : 256;
		l->keys = st_xrealloc(l->keys, l->alloc * sizeof(*l->keys));
		l->sizes = st_xrealloc(l->sizes, l->alloc * sizeof(*l->sizes));
	}
	l->keys[l->n] = st_xstrdup(key);
	l->sizes[l->n] = size;
	l->n++;
	l->bytes += strlen(key) + 1;
	return 0;
}

/* Walks dir (the key rel, "" at the root) collecting keys that start with prefix. */
static int walk(struct key_list *l, const char *root, const char *rel, const char *prefix)
{
	size_t plen = strlen(prefix);
	size_t rlen = strlen(rel);
	struct st_buf path = ST_BUF_INIT(8192);
	DIR *d = NULL;
	struct dirent *e;
	int rc = ST_EINTERNAL;

	if ((rc = st_buf_printf(&path, "%s/%s", root, rel)) < 0)
		goto out;
	d = opendir(st_buf_cstr(&path));
	if (d == NULL) {
		rc = (errno == ENOENT || errno == ENOTDIR) ? 0 : ST_EIO;
		goto out;
	}
	while ((errno = 0, e = readdir(d)) != NULL) {
		char key[KEY_MAX + 256 + 2];
		struct stat st;
		size_t cmp;

		if (e->d_name[0] == '.')
			continue;
		(void)snprintf(key, sizeof(key), "%s%s%s", rel, rlen ? "/" : "", e->d_name);
		cmp = strlen(key) < plen ? strlen(key) : plen;
		if (strncmp(key, prefix, cmp) != 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue; /* deleted while listing */
		if (S_ISDIR(st.st_mode)) {
			if ((rc = walk(l, root, key, prefix)) < 0)
				goto out;
		} else if (S_ISREG(st.st_mode) && strlen(key) >= plen) {
			if ((rc = list_add(l, key, (uint64_t)st.st_size)) < 0)
				goto out;
		}
	}
	rc = errno != 0 ? ST_EIO : 0;
out:
	if (d != NULL)
		(void)closedir(d);
	st_buf_dispose(&path);
	return rc;
}

static int cmp_idx(const void *a, const void *b, void *arg)
{
	char *const *keys = arg;

	return strcmp(keys[*(const size_t *)a], keys[*(const size_t *)b]);
}

static int fs_list(struct st_store *s, const char *prefix, st_store_list_cb cb, void *payload,
                   struct st_err *err)
{
	struct file_store *fs = (struct file_store *)s;
	struct key_list l = { 0 };
	size_t *order = NULL;
	int rc = ST_EINTERNAL;

	if ((rc = walk(&l, fs->root, "", prefix != NULL ? prefix : "")) < 0) {
		rc = st_err_set(err, rc, "list %s: %s", prefix, st_strerror(rc));
		goto out;
	}
	order = st_xcalloc(l.n + 1, sizeof(*order));
	for (size_t i = 0; i < l.n; i++)
		order[i] = i;
	qsort_r(order, l.n, sizeof(*order), cmp_idx, l.keys);
	for (size_t i = 0; i < l.n; i++) {
		if ((rc = cb(l.keys[order[i]], l.sizes[order[i]], payload)) != 0)
			goto out;
	}
	rc = 0;
out:
	for (size_t i = 0; i < l.n; i++)
		free(l.keys[i]);
	free(l.keys);
	free(l.sizes);
	free(order);
	return rc;
}

static int fs_del(struct st_store *s, const char *key, struct st_err *err)
{
	struct file_store *fs = (struct file_store *)s;
	char *path;
	int rc = 0;

	if ((rc = check_key(key, err)) < 0)
		return rc;
	path = full_path(fs, key);
	if (unlink(path) != 0 && errno != ENOENT)
		rc = st_err_set(err, ST_EIO, "delete %s: %s", key, strerror(errno));
	free(path);
	return rc;
}

static int fs_sync(struct st_store *s, struct st_err *err)
{
	struct file_store *fs = (struct file_store *)s;
	int fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0 || syncfs(fd) != 0)
		rc = st_err_set(err, ST_EIO, "%s: sync: %s", s->url, strerror(errno));
	if (fd >= 0)
		(void)close(fd);
	return rc;
}

static void fs_free(struct st_store *s)
{
	struct file_store *fs = (struct file_store *)s;

	free(fs->root);
	free(fs->base.url);
	free(fs);
}

static const struct st_store_vtable file_vtable = {
	.put = fs_put,
	.get = fs_get,
	.head = fs_head,
	.list = fs_list,
	.del = fs_del,
	.free = fs_free,
	.sync = fs_sync,
};

int st_store__open_file(struct st_store **out, const char *url, const char *path,
                        struct st_err *err)
{
	struct file_store *fs;
	struct stat st;
	size_t n;

	*out = NULL;
	if (stat(path, &st) != 0)
		return st_err_set(err, errno_code(errno), "%s: %s", url, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return st_err_set(err, ST_EINVAL, "%s: not a directory", url);
	fs = st_xcalloc(1, sizeof(*fs));
	fs->base.vt = &file_vtable;
	fs->base.url = st_xstrdup(url);
	fs->root = st_xstrdup(path);
	n = strlen(fs->root);
	while (n > 1 && fs->root[n - 1] == '/')
		fs->root[--n] = '\0';
	*out = &fs->base;
	return 0;
}
