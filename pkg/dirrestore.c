#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "pkg/dirbackup.h"
#include "pkg/tree.h"
#include "pkg/util/buf.h"
#include "pkg/util/mem.h"

#define JOB_SLOTS 64
#define DIR_DEPTH 512

/* Metadata applied once an object is complete. */
struct meta {
	enum st_tree_type type;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	struct timespec times[2]; /* atime, mtime */
	char *path;               /* absolute */
	char *rel;
	size_t nxattr;
	char **xnames;
	uint8_t **xvals;
	uint32_t *xlens;
};

struct fileref {
	struct meta m;
	int fd;
	unsigned refs; /* guarded by the restore mutex */
};

struct rjob {
	struct fileref *f;
	struct st_tree_chunk c;
};

struct rs {
	struct st_repo *r;
	const struct st_dirrestore_options *o;
	char *target;
	struct st_tree_decoder dec;
	pthread_mutex_t mu;
	pthread_cond_t cv_job;
	pthread_cond_t cv_space;
	struct rjob q[JOB_SLOTS];
	size_t qhead;
	size_t qn;
	bool closing;
	bool failed;
	struct st_err err;
	pthread_t workers[8];
	unsigned nworkers;
	struct fileref *cur;
	struct meta dirs[DIR_DEPTH];
	size_t ndirs;
	struct st_dir_progress prog;
	struct timespec last_prog;
	bool root;
};

static void fail(struct rs *s, const struct st_err *e)
{
	(void)pthread_mutex_lock(&s->mu);
	if (!s->failed) {
		s->failed = true;
		s->err = *e;
	}
	(void)pthread_cond_broadcast(&s->cv_job);
	(void)pthread_cond_broadcast(&s->cv_space);
	(void)pthread_mutex_unlock(&s->mu);
}

static int failf(struct rs *s, int code, const char *rel, const char *what, int e)
{
	struct st_err err = ST_ERR_INIT;

	(void)st_err_set(&err, code, "restore '%s': %s%s%s", rel, what, what[0] ? ": " : "",
	                 strerror(e));
	fail(s, &err);
	return code;
}

static void meta_dispose(struct meta *m)
{
	for (size_t i = 0; i < m->nxattr; i++) {
		free(m->xnames[i]);
		free(m->xvals[i]);
	}
	free(m->xnames);
	free(m->xvals);
	free(m->xlens);
	free(m->path);
	free(m->rel);
	memset(m, 0, sizeof(*m));
}

static void meta_from(struct meta *m, const struct st_tree_entry *e, const char *path)
{
	memset(m, 0, sizeof(*m));
	m->type = e->type;
	m->mode = e->mode;
	m->uid = e->uid;
	m->gid = e->gid;
	m->times[0].tv_sec = (time_t)e->atime_s;
	m->times[0].tv_nsec = (long)e->atime_ns;
	m->times[1].tv_sec = (time_t)e->mtime_s;
	m->times[1].tv_nsec = (long)e->mtime_ns;
	m->path = st_xstrdup(path);
	m->rel = st_xstrdup(e->path);
	m->nxattr = e->nxattr;
	m->xnames = st_xcalloc(e->nxattr + 1, sizeof(char *));
	m->xvals = st_xcalloc(e->nxattr + 1, sizeof(uint8_t *));
	m->xlens = st_xcalloc(e->nxattr + 1, sizeof(uint32_t));
	for (size_t i = 0; i < e->nxattr; i++) {
		m->xnames[i] = st_xstrdup(e->xattrs[i].name);
		m->xvals[i] = st_xmalloc(e->xattrs[i].len + 1);
		memcpy(m->xvals[i], e->xattrs[i].value, e->xattrs[i].len);
		m->xlens[i] = e->xattrs[i].len;
	}
}

/*
 * Owner first (chown clears set-id bits), then mode, xattrs, times. With an
 * fd for regular files, by path (not following links) otherwise.
 */
static int apply_meta(struct rs *s, const struct meta *m, int fd)
{
	bool lnk = m->type == ST_TREE_SYMLINK;
	int rc;

	if (s->root) {
		rc = fd >= 0 ? fchown(fd, m->uid, m->gid) : lchown(m->path, m->uid, m->gid);
		if (rc != 0)
			return failf(s, ST_EIO, m->rel, "chown", errno);
	}
	if (!lnk) {
		rc = fd >= 0 ? fchmod(fd, m->mode & 07777) : chmod(m->path, m->mode & 07777);
		if (rc != 0)
			return failf(s, ST_EIO, m->rel, "chmod", errno);
	}
	for (size_t i = 0; i < m->nxattr; i++) {
		rc = fd >= 0 ? fsetxattr(fd, m->xnames[i], m->xvals[i], m->xlens[i], 0)
		             : lsetxattr(m->path, m->xnames[i], m->xvals[i], m->xlens[i], 0);
		if (rc != 0 && !(errno == EPERM && !s->root))
			return failf(s, ST_EIO, m->rel, "setxattr", errno);
	}
	rc = fd >= 0 ? futimens(fd, m->times)
	             : utimensat(AT_FDCWD, m->path, m->times, AT_SYMLINK_NOFOLLOW);
	if (rc != 0)
		return failf(s, ST_EIO, m->rel, "set times", errno);
	return 0;
}

/* Drops one reference; the last one finishes the file. */
static void file_put(struct rs *s, struct fileref *f)
{
	bool last;

	(void)pthread_mutex_lock(&s->mu);
	last = --f->refs == 0;
	(void)pthread_mutex_unlock(&s->mu);
	if (!last)
		return;
	if (!s->failed)
		(void)apply_meta(s, &f->m, f->fd);
	if (close(f->fd) != 0 && !s->failed)
		(void)failf(s, ST_EIO, f->m.rel, "close", errno);
	meta_dispose(&f->m);
	free(f);
}

static int write_chunk(struct rs *s, struct st_repo_reader *rd, const struct rjob *j)
{
	uint8_t *data = NULL;
	size_t len = 0;
	struct st_err err = ST_ERR_INIT;
	size_t done = 0;
	int rc;

	if ((rc = st_repo_read_chunk(&data, &len, s->r, rd, j->c.id, &err)) < 0) {
		st_err_prefix(&err, "restore '%s' (bytes %llu..%llu)", j->f->m.rel,
		              (unsigned long long)j->c.off,
		              (unsigned long long)(j->c.off + j->c.len));
		fail(s, &err);
		return rc;
	}
	if (len != j->c.len) {
		free(data);
		(void)st_err_set(&err, ST_EPROTO,
		                 "restore '%s': chunk length differs from manifest", j->f->m.rel);
		fail(s, &err);
		return ST_EPROTO;
	}
	while (done < len) {
		ssize_t n = pwrite(j->f->fd, data + done, len - done, (off_t)(j->c.off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(data);
			return failf(s, ST_EIO, j->f->m.rel, "write", n < 0 ? errno : ENOSPC);
		}
		done += (size_t)n;
	}
	free(data);
	(void)pthread_mutex_lock(&s->mu);
	s->prog.bytes += len;
	(void)pthread_mutex_unlock(&s->mu);
	return 0;
}

static void *worker_main(void *arg)
{
	struct rs *s = arg;
	struct st_repo_reader *rd = st_repo_reader_new();

	for (;;) {
		struct rjob j;

		(void)pthread_mutex_lock(&s->mu);
		while (s->qn == 0 && !s->closing)
			(void)pthread_cond_wait(&s->cv_job, &s->mu);
		if (s->qn == 0) {
			(void)pthread_mutex_unlock(&s->mu);
			break;
		}
		j = s->q[s->qhead];
		s->qhead = (s->qhead + 1) % JOB_SLOTS;
		s->qn--;
		(void)pthread_cond_signal(&s->cv_space);
		(void)pthread_mutex_unlock(&s->mu);
		/* After a failure the queue is drained without work so references drop. */
		if (!s->failed && rd != NULL)
			(void)write_chunk(s, rd, &j);
		file_put(s, j.f);
	}
	st_repo_reader_free(rd);
	return NULL;
}

static void progress(struct rs *s, bool force)
{
	struct timespec now;
	struct st_dir_progress p;

	if (s->o->progress == NULL)
		return;
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	if (!force && (now.tv_sec - s->last_prog.tv_sec) * 1000 +
	                              (now.tv_nsec - s->last_prog.tv_nsec) / 1000000 <
	                      100)
		return;
	s->last_prog = now;
	(void)pthread_mutex_lock(&s->mu);
	p = s->prog;
	(void)pthread_mutex_unlock(&s->mu);
	s->o->progress(&p, s->o->payload);
}

static void release_cur(struct rs *s)
{
	if (s->cur != NULL)
		file_put(s, s->cur);
	s->cur = NULL;
}

static bool is_under(const char *dir, const char *path)
{
	size_t n = strlen(dir);

	if (strcmp(dir, ".") == 0)
		return true;
	return strncmp(dir, path, n) == 0 && path[n] == '/';
}

static void pop_dirs(struct rs *s, const char *path)
{
	while (s->ndirs > 0 && (path == NULL || !is_under(s->dirs[s->ndirs - 1].rel, path))) {
		struct meta *m = &s->dirs[--s->ndirs];

		if (!s->failed)
			(void)apply_meta(s, m, -1);
		meta_dispose(m);
	}
}

/* Removes whatever occupies path so the object can be created afresh. */
static void clear_path(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
		(void)unlink(path);
}

static int make_file(struct rs *s, const struct st_tree_entry *e, const char *path)
{
	struct fileref *f;
	int fd;

	clear_path(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return failf(s, ST_EIO, e->path, "create", errno);
	if (ftruncate(fd, (off_t)e->size) != 0) {
		int en = errno;

		(void)close(fd);
		return failf(s, ST_EIO, e->path, "set size", en);
	}
	f = st_xcalloc(1, sizeof(*f));
	meta_from(&f->m, e, path);
	f->fd = fd;
	f->refs = 1; /* held by the manifest reader until the next entry */
	s->cur = f;
	return 0;
}

static int make_other(struct rs *s, const struct st_tree_entry *e, const char *path)
{
	struct meta m;
	int rc = 0;

	clear_path(path);
	if (e->type == ST_TREE_SYMLINK) {
		if (symlink(e->target, path) != 0)
			return failf(s, ST_EIO, e->path, "symlink", errno);
	} else if (e->type == ST_TREE_HARDLINK) {
		char *t = st_xmalloc(strlen(s->target) + strlen(e->target) + 2);

		(void)snprintf(t, strlen(s->target) + strlen(e->target) + 2, "%s/%s", s->target,
		               e->target);
		rc = link(t, path);
		free(t);
		if (rc != 0)
			return failf(s, ST_EIO, e->path, "link", errno);
		return 0;
	} else if (mknod(path, (mode_t)e->mode, (dev_t)e->rdev) != 0) {
		return failf(s, ST_EIO, e->path, "mknod", errno);
	}
	meta_from(&m, e, path);
	rc = apply_meta(s, &m, -1);
	meta_dispose(&m);
	return rc;
}

static int on_entry(const struct st_tree_entry *e, void *payload)
{
	struct rs *s = payload;
	struct st_buf path = ST_BUF_INIT(2 * ST_TREE_PATH_MAX + 2);
	int rc;

	release_cur(s);
	if (s->failed)
		return ST_EIO;
	pop_dirs(s, e->path);
	if (strcmp(e->path, ".") == 0)
		rc = st_buf_puts(&path, s->target);
	else
		rc = st_buf_printf(&path, "%s/%s", s->target, e->path);
	if (rc < 0) {
		st_buf_dispose(&path);
		return failf(s, ST_ETOOBIG, e->path, "", ENAMETOOLONG);
	}
	if (e->type == ST_TREE_DIR) {
		if (s->ndirs == DIR_DEPTH) {
			rc = failf(s, ST_ETOOBIG, e->path, "", ELOOP);
		} else if (mkdir(path.ptr, 0700) != 0 && errno != EEXIST) {
			rc = failf(s, ST_EIO, e->path, "mkdir", errno);
		} else {
			meta_from(&s->dirs[s->ndirs++], e, path.ptr);
			rc = 0;
		}
	} else if (e->type == ST_TREE_FILE) {
		rc = make_file(s, e, path.ptr);
	} else {
		rc = make_other(s, e, path.ptr);
	}
	if (e->type != ST_TREE_DIR)
		s->prog.files++;
	st_buf_dispose(&path);
	progress(s, false);
	return rc;
}

static int on_chunks(const struct st_tree_chunk *c, size_t n, void *payload)
{
	struct rs *s = payload;

	if (s->cur == NULL)
		return ST_EPROTO;
	for (size_t i = 0; i < n; i++) {
		(void)pthread_mutex_lock(&s->mu);
		while (s->qn == JOB_SLOTS && !s->failed)
			(void)pthread_cond_wait(&s->cv_space, &s->mu);
		if (s->failed) {
			(void)pthread_mutex_unlock(&s->mu);
			return ST_EIO;
		}
		s->cur->refs++;
		s->q[(s->qhead + s->qn) % JOB_SLOTS] = (struct rjob){ s->cur, c[i] };
		s->qn++;
		(void)pthread_cond_signal(&s->cv_job);
		(void)pthread_mutex_unlock(&s->mu);
	}
	progress(s, false);
	return 0;
}

static int feed(const void *data, size_t n, void *payload)
{
	struct rs *s = payload;
	const struct st_tree_visitor v = { on_entry, on_chunks, s };
	int rc = st_tree_decoder_feed(&s->dec, data, n, &v);

	if (rc == ST_EPROTO && !s->failed) {
		struct st_err e = ST_ERR_INIT;

		(void)st_err_set(&e, rc, "snapshot manifest is malformed");
		fail(s, &e);
	}
	return rc;
}

static int mkdirs(const char *path)
{
	char *p = st_xstrdup(path);
	int rc = 0;

	for (char *q = strchr(p + 1, '/'); q != NULL; q = strchr(q + 1, '/')) {
		*q = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			rc = -1;
		*q = '/';
	}
	if (rc == 0 && mkdir(p, 0700) != 0 && errno != EEXIST)
		rc = -1;
	free(p);
	return rc;
}

int st_dirrestore_run(struct st_repo *r, const struct st_repo_snapshot *snap, const char *target,
                      const struct st_dirrestore_options *o, struct st_err *err)
{
	static const struct st_dirrestore_options dflt = ST_DIRRESTORE_OPTIONS_INIT;
	struct rs *s = st_xcalloc(1, sizeof(*s));
	unsigned jobs;
	int rc;

	o = o != NULL ? o : &dflt;
	jobs = o->jobs == 0 ? 2 : o->jobs > 8 ? 8 : o->jobs;
	s->r = r;
	s->o = o;
	s->root = geteuid() == 0;
	s->prog.total_files = snap->files;
	s->prog.total_bytes = snap->bytes;
	s->target = st_xstrdup(target);
	st_tree_decoder_init(&s->dec);
	(void)pthread_mutex_init(&s->mu, NULL);
	(void)pthread_cond_init(&s->cv_job, NULL);
	(void)pthread_cond_init(&s->cv_space, NULL);
	if (mkdirs(target) != 0) {
		rc = st_err_set(err, ST_EIO, "create '%s': %s", target, strerror(errno));
		goto out;
	}
	for (unsigned i = 0; i < jobs; i++)
		if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s) == 0)
			s->nworkers++;
	if (s->nworkers == 0) {
		rc = st_err_set(err, ST_EINTERNAL, "cannot start restore threads");
		goto out;
	}
	rc = st_repo_tree_read(r, snap, feed, s, err);
	if (rc == 0 && st_tree_decoder_finish(&s->dec) < 0)
		rc = st_err_set(err, ST_EPROTO, "snapshot manifest ends mid-record");
	release_cur(s);
	(void)pthread_mutex_lock(&s->mu);
	s->closing = true;
	(void)pthread_cond_broadcast(&s->cv_job);
	(void)pthread_mutex_unlock(&s->mu);
	for (unsigned i = 0; i < s->nworkers; i++)
		(void)pthread_join(s->workers[i], NULL);
	s->nworkers = 0;
	/* Directories last: creating their children changed their times. */
	pop_dirs(s, NULL);
	if (s->failed) {
		st_err_clear(err);
		rc = st_err_set(err, s->err.code, "%s", s->err.msg);
		goto out;
	}
	if (rc < 0)
		goto out;
	s->prog.done = true;
	progress(s, true);
	rc = 0;
out:
	release_cur(s);
	pop_dirs(s, NULL);
	st_tree_decoder_dispose(&s->dec);
	(void)pthread_mutex_destroy(&s->mu);
	(void)pthread_cond_destroy(&s->cv_job);
	(void)pthread_cond_destroy(&s->cv_space);
	free(s->target);
	free(s);
	return rc;
}
