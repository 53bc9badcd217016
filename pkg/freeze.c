#include "pkg/freeze.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

struct fs_entry {
	char path[PATH_MAX]; /* first volume path given for this filesystem */
	struct st_mount_info mi;
	int fd;
	bool frozen;
};

struct st_freeze_set {
	struct fs_entry *fs; /* n used of the capacity given to open */
	size_t n;
	bool synced;
	int64_t t_freeze;
	int64_t t_thaw;
};

int64_t st_freeze_now_ns(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Splits one mountinfo line in place: the device (3rd field), the mount
 * point (5th) and, after the " - " separator, the fstype and source.
 */
static bool mountinfo_fields(char *line, char **dev, char **mnt, char **fstype, char **src)
{
	char *sep = strstr(line, " - ");
	char *save = NULL, *tok;

	if (sep == NULL)
		return false;
	*sep = '\0';
	tok = strtok_r(sep + 3, " \n", &save);
	*fstype = tok;
	*src = tok != NULL ? strtok_r(NULL, " \n", &save) : NULL;
	if (*src == NULL)
		return false;
	save = NULL;
	tok = strtok_r(line, " ", &save);
	for (int i = 1; tok != NULL && i <= 5; i++) {
		if (i == 3)
			*dev = tok;
		if (i == 5) {
			*mnt = tok;
			return true;
		}
		tok = strtok_r(NULL, " ", &save);
	}
	return false;
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_octal(char *s)
{
	char *w = s;

	for (const char *r = s; *r != '\0'; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

static bool path_under(const char *path, const char *mnt)
{
	size_t n = strlen(mnt);

	if (strcmp(mnt, "/") == 0)
		return true;
	return strncmp(path, mnt, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/*
 * Finds the mount holding real path rp: the longest mount point that is a
 * prefix of it. Keyed by the mount's device rather than st_dev because btrfs
 * gives every subvolume its own st_dev while they share one superblock.
 */
static int find_mount(struct st_mount_info *mi, const char *rp, struct st_err *err)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4 * PATH_MAX];
	size_t best = 0;
	bool found = false;

	if (f == NULL)
		return st_err_set(err, ST_EIO, "open /proc/self/mountinfo: %s", strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		char *dev = NULL, *mnt = NULL, *fstype = NULL, *src = NULL;

		if (!mountinfo_fields(line, &dev, &mnt, &fstype, &src))
			continue;
		unescape_octal(mnt);
		unescape_octal(src);
		/* Later lines over-mount earlier ones, so ">=" keeps the visible one. */
		if (path_under(rp, mnt) && strlen(mnt) >= best) {
			best = strlen(mnt);
			(void)snprintf(mi->mount, sizeof(mi->mount), "%s", mnt);
			(void)snprintf(mi->devkey, sizeof(mi->devkey), "%s", dev);
			(void)snprintf(mi->fstype, sizeof(mi->fstype), "%s", fstype);
			(void)snprintf(mi->source, sizeof(mi->source), "%s", src);
			found = true;
		}
	}
	(void)fclose(f);
	if (!found)
		return st_err_set(err, ST_ENOTFOUND, "%s: no mount found", rp);
	return 0;
}

int st_freeze_mount_info(struct st_mount_info *out, const char *path, struct st_err *err)
{
	char rp[PATH_MAX];

	memset(out, 0, sizeof(*out));
	if (realpath(path, rp) == NULL)
		return st_err_set(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO, "%s: %s", path,
		                  strerror(errno));
	return find_mount(out, rp, err);
}

static int open_entry(struct fs_entry *e, const char *path, struct st_err *err)
{
	int rc = ST_EINTERNAL;

	e->fd = -1;
	if (strlen(path) >= sizeof(e->path))
		return st_err_set(err, ST_EINVAL, "volume path too long");
	(void)snprintf(e->path, sizeof(e->path), "%s", path);
	e->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (e->fd < 0) {
		rc = st_err_set(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO, "volume %s: open: %s",
		                path, strerror(errno));
		goto out;
	}
	if ((rc = st_freeze_mount_info(&e->mi, path, err)) < 0) {
		st_err_prefix(err, "volume %s", path);
		goto out;
	}
	rc = 0;
out:
	if (rc < 0 && e->fd >= 0) {
		(void)close(e->fd);
		e->fd = -1;
	}
	return rc;
}

int st_freeze_set_open(struct st_freeze_set **out, const char *const *paths, size_t n,
                       struct st_err *err)
{
	struct st_freeze_set *s = NULL;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (n == 0)
		return st_err_set(err, ST_EINVAL, "no volumes given");
	if (n > ST_FREEZE_MAX)
		return st_err_set(err, ST_EINVAL, "at most %d volumes per freeze", ST_FREEZE_MAX);
	s = st_xcalloc(1, sizeof(*s));
	s->fs = st_xcalloc(n, sizeof(*s->fs));
	for (size_t i = 0; i < n; i++) {
		struct fs_entry *e = &s->fs[s->n];
		bool dup = false;

		if ((rc = open_entry(e, paths[i], err)) < 0)
			goto out;
		for (size_t j = 0; j < s->n && !dup; j++)
			dup = strcmp(s->fs[j].mi.devkey, e->mi.devkey) == 0;
		if (dup) {
			(void)close(e->fd);
			memset(e, 0, sizeof(*e));
			continue;
		}
		s->n++;
	}
	*out = s;
	s = NULL; /* transferred */
	rc = 0;
out:
	st_freeze_set_free(s);
	return rc;
}

size_t st_freeze_set_count(const struct st_freeze_set *s)
{
	return s->n;
}

const char *st_freeze_set_mount(const struct st_freeze_set *s, size_t i)
{
	ST_ASSERT(i < s->n);
	return s->fs[i].mi.mount;
}

const char *st_freeze_set_path(const struct st_freeze_set *s, size_t i)
{
	ST_ASSERT(i < s->n);
	return s->fs[i].path;
}

bool st_freeze_set_frozen(const struct st_freeze_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->fs[i].frozen)
			return true;
	return false;
}

int64_t st_freeze_set_window_ns(const struct st_freeze_set *s)
{
	return s->t_thaw > s->t_freeze ? s->t_thaw - s->t_freeze : 0;
}

int st_freeze_json_save(const char *path, struct json_object *obj, struct st_err *err)
{
	char tmp[PATH_MAX + 8];
	size_t len = 0;
	const char *text = st_json_to_string(obj, &len);
	int fd = -1, rc = ST_EINTERNAL;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return st_err_set(err, ST_EINVAL, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 ||
	    rename(tmp, path) < 0) {
		rc = st_err_set(err, ST_EIO, "write %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		(void)close(fd);
	if (rc < 0)
		(void)unlink(tmp);
	return rc;
}

/* The journal names the mount points about to be frozen. */
static int journal_write(const char *journal, const struct st_freeze_set *s, struct st_err *err)
{
	struct json_object *o = json_object_new_object();
	struct json_object *arr = json_object_new_array();
	int rc = ST_EINTERNAL;

	if (o == NULL || arr == NULL) {
		json_object_put(arr);
		json_object_put(o);
		return ST_ENOMEM;
	}
	for (size_t i = 0; i < s->n; i++)
		json_object_array_add(arr, json_object_new_string(s->fs[i].mi.mount));
	json_object_object_add(o, "frozen", arr);
	json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
	rc = st_freeze_json_save(journal, o, err);
	json_object_put(o);
	return rc;
}

static void journal_remove(const char *journal)
{
	if (journal != NULL && unlink(journal) < 0 && errno != ENOENT)
		st_log_warn("freeze journal %s: unlink: %s", journal, strerror(errno));
}

static int freeze_errno(int e)
{
	return e == EPERM || e == EACCES || e == EBUSY ? ST_EINVAL : ST_EIO;
}

static const char *freeze_reason(int e)
{
	switch (e) {
	case EBUSY:
		return "already frozen by someone else";
	case EOPNOTSUPP:
	case EINVAL:
	case ENOTTY:
		return "filesystem does not support freezing";
	case EPERM:
	case EACCES:
		return "not permitted (needs CAP_SYS_ADMIN)";
	default:
		return strerror(e);
	}
}

/* Thaws every frozen entry; returns the first failure (errno) or 0. */
static int thaw_all(struct st_freeze_set *s, struct st_err *err)
{
	int first = 0;

	for (size_t i = s->n; i-- > 0;) {
		struct fs_entry *e = &s->fs[i];

		if (!e->frozen)
			continue;
		if (ioctl(e->fd, FITHAW, 0) < 0 && errno != EINVAL) {
			st_log_err("thaw %s: %s", e->mi.mount, strerror(errno));
			if (first == 0)
				first = st_err_set(err, ST_EIO, "thaw %s: %s", e->mi.mount,
				                   strerror(errno));
			continue;
		}
		e->frozen = false;
	}
	s->t_thaw = st_freeze_now_ns();
	return first;
}

void st_freeze_set_sync(struct st_freeze_set *s)
{
	/* Flush while writable so the frozen window holds no writeback. */
	for (size_t i = 0; i < s->n; i++)
		if (syncfs(s->fs[i].fd) < 0)
			st_log_warn("syncfs %s: %s", s->fs[i].mi.mount, strerror(errno));
	s->synced = true;
}

int st_freeze_set_freeze(struct st_freeze_set *s, const char *journal, struct st_err *err)
{
	int rc = ST_EINTERNAL;

	if (st_freeze_set_frozen(s))
		return st_err_set(err, ST_EINVAL, "already frozen by this set");
	if (!s->synced)
		st_freeze_set_sync(s);
	s->synced = false;
	if (journal != NULL && (rc = journal_write(journal, s, err)) < 0)
		return rc;
	s->t_freeze = st_freeze_now_ns();
	s->t_thaw = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct fs_entry *e = &s->fs[i];

		if (ioctl(e->fd, FIFREEZE, 0) < 0) {
			int e2 = errno;

			rc = st_err_set(err, freeze_errno(e2), "freeze %s (%s): %s", e->path,
			                e->mi.mount, freeze_reason(e2));
			(void)thaw_all(s, NULL);
			journal_remove(journal);
			return rc;
		}
		e->frozen = true;
	}
	return 0;
}

int st_freeze_set_thaw(struct st_freeze_set *s, const char *journal, struct st_err *err)
{
	int rc = thaw_all(s, err);

	if (rc == 0)
		journal_remove(journal);
	return rc;
}

void st_freeze_set_forget(struct st_freeze_set *s, const char *journal)
{
	for (size_t i = 0; i < s->n; i++)
		s->fs[i].frozen = false;
	s->t_thaw = st_freeze_now_ns();
	journal_remove(journal);
}

void st_freeze_set_free(struct st_freeze_set *s)
{
	if (s == NULL)
		return;
	(void)thaw_all(s, NULL);
	for (size_t i = 0; i < s->n; i++)
		if (s->fs[i].fd >= 0)
			(void)close(s->fs[i].fd);
	free(s->fs);
	free(s);
}

int st_freeze_thaw_path(const char *path, bool *was_frozen_out, struct st_err *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = ST_EINTERNAL;

	if (was_frozen_out != NULL)
		*was_frozen_out = false;
	if (fd < 0)
		return st_err_set(err, ST_EIO, "thaw %s: open: %s", path, strerror(errno));
	if (ioctl(fd, FITHAW, 0) < 0) {
		if (errno != EINVAL) {
			rc = st_err_set(err, ST_EIO, "thaw %s: %s", path, strerror(errno));
			goto out;
		}
	} else if (was_frozen_out != NULL) {
		*was_frozen_out = true;
	}
	rc = 0;
out:
	(void)close(fd);
	return rc;
}

static int read_small_file(char **out, size_t *len_out, const char *path, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	ssize_t n;

	*out = NULL;
	if (fd < 0)
		return errno == ENOENT ? ST_ENOTFOUND : ST_EIO;
	buf = st_xmalloc(cap + 1);
	n = read(fd, buf, cap + 1);
	(void)close(fd);
	if (n < 0 || (size_t)n > cap) {
		free(buf);
		return n < 0 ? ST_EIO : ST_ETOOBIG;
	}
	buf[n] = '\0';
	*len_out = (size_t)n;
	*out = buf;
	return 0;
}

int st_freeze_recover(const char *journal, unsigned *thawed_out, struct st_err *err)
{
	struct json_object *o = NULL, *arr = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc = ST_EINTERNAL;

	*thawed_out = 0;
	rc = read_small_file(&text, &len, journal, ST_CAP_CONTROL_BODY);
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc < 0)
		return st_err_set(err, rc, "freeze journal %s: unreadable", journal);
	if ((rc = st_json_parse(&o, text, len, ST_CAP_CONTROL_BODY, "freeze journal", err)) < 0)
		goto out;
	arr = st_json_get_arr(o, "frozen");
	for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
		const char *m = json_object_get_string(json_object_array_get_idx(arr, i));
		bool was = false;

		if (m == NULL)
			continue;
		if (st_freeze_thaw_path(m, &was, err) < 0) {
			rc = ST_EIO;
			continue;
		}
		if (was) {
			st_log_warn("thawed %s, left frozen by a previous run", m);
			(*thawed_out)++;
		}
	}
	if (rc < 0)
		goto out;
	rc = 0;
out:
	/* A journal we cannot parse names nothing we could thaw; do not replay it forever. */
	if (rc == 0 || rc == ST_EPROTO || rc == ST_EINVAL)
		journal_remove(journal);
	json_object_put(o);
	free(text);
	return rc;
}

/* ---- watchdog ---------------------------------------------------------- */

enum wd_op {
	WD_ARM = 1,
	WD_EXTEND = 2,
	WD_DISARM = 3,
	WD_ACK = 4,
	WD_NACK = 5,
	WD_EXPIRED = 6,
};

struct wd_msg {
	uint32_t op;
	uint32_t nfd;
	uint64_t gen;
	int64_t deadline;
};

struct st_freeze_watchdog {
	int sock;
	pid_t pid;
	uint64_t expired; /* an expiry read while waiting for an acknowledgement */
	bool reaped;
};

struct wd_state {
	int sock;
	bool armed;
	uint64_t gen;
	int64_t deadline;
	int fds[ST_FREEZE_MAX];
	size_t nfd;
};

static int wd_send(int sock, const struct wd_msg *m, const int *fds, size_t nfd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * ST_FREEZE_MAX)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)m, .iov_len = sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfd > 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfd);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfd);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfd);
	}
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

/* Receives one message; fds (up to ST_FREEZE_MAX) land in fds_out. 0 on EOF. */
static ssize_t wd_recv(int sock, struct wd_msg *m, int *fds_out, size_t *nfd_out, int flags)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * ST_FREEZE_MAX)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = m, .iov_len = sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	*nfd_out = 0;
	do {
		n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (size_t i = 0; i < k && *nfd_out < ST_FREEZE_MAX; i++)
			memcpy(&fds_out[(*nfd_out)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	return n == (ssize_t)sizeof(*m) ? n : -1;
}

static void wd_release(struct wd_state *st, bool thaw)
{
	for (size_t i = 0; i < st->nfd; i++) {
		if (thaw && ioctl(st->fds[i], FITHAW, 0) == 0)
			st_log_warn("watchdog: thawed a filesystem (generation %llu)",
			            (unsigned long long)st->gen);
		(void)close(st->fds[i]);
	}
	st->nfd = 0;
	st->armed = false;
}

static void wd_handle(struct wd_state *st, const struct wd_msg *m, const int *fds, size_t nfd)
{
	struct wd_msg r = { .op = WD_ACK, .gen = m->gen };

	switch (m->op) {
	case WD_ARM:
		wd_release(st, false);
		memcpy(st->fds, fds, nfd * sizeof(int));
		st->nfd = nfd;
		st->gen = m->gen;
		st->deadline = m->deadline;
		st->armed = true;
		break;
	case WD_EXTEND:
		if (st->armed && st->gen == m->gen)
			st->deadline = m->deadline;
		else
			r.op = WD_NACK;
		break;
	case WD_DISARM:
		if (st->armed && st->gen == m->gen)
			wd_release(st, false);
		break;
	default:
		r.op = WD_NACK;
		break;
	}
	(void)wd_send(st->sock, &r, NULL, 0);
}

/* The watchdog process body; never returns. */
static void wd_main(int sock)
{
	struct wd_state st = { .sock = sock };

	/* Hold nothing of the parent's (listening sockets, files) but stderr. */
	if (sock > 3)
		(void)close_range(3, (unsigned)sock - 1, 0);
	(void)close_range((unsigned)sock + 1, ~0U, 0);
	(void)signal(SIGINT, SIG_IGN);
	(void)signal(SIGTERM, SIG_IGN);
	(void)signal(SIGHUP, SIG_IGN);
	(void)signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		int timeout = -1, n;
		struct wd_msg m;
		int fds[ST_FREEZE_MAX];
		size_t nfd = 0;

		if (st.armed) {
			int64_t left = st.deadline - st_freeze_now_ns();

			timeout = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
		}
		n = poll(&p, 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && st.armed && st_freeze_now_ns() >= st.deadline) {
			struct wd_msg e = { .op = WD_EXPIRED, .gen = st.gen };

			st_log_warn("watchdog: deadline passed, thawing");
			wd_release(&st, true);
			(void)wd_send(sock, &e, NULL, 0);
			continue;
		}
		if (n == 0)
			continue;
		if (wd_recv(sock, &m, fds, &nfd, 0) <= 0) {
			/* The parent is gone: nothing may stay frozen behind it. */
			if (st.armed)
				st_log_warn("watchdog: owner exited while frozen, thawing");
			wd_release(&st, true);
			_exit(0);
		}
		wd_handle(&st, &m, fds, nfd);
	}
}

int st_freeze_watchdog_start(struct st_freeze_watchdog **out, struct st_err *err)
{
	struct st_freeze_watchdog *w = NULL;
	int sv[2];
	pid_t pid;

	*out = NULL;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return st_err_set(err, ST_EIO, "watchdog socketpair: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		(void)close(sv[0]);
		(void)close(sv[1]);
		return st_err_set(err, ST_EIO, "watchdog fork: %s", strerror(errno));
	}
	if (pid == 0) {
		(void)close(sv[0]);
		wd_main(sv[1]);
	}
	(void)close(sv[1]);
	w = st_xcalloc(1, sizeof(*w));
	w->sock = sv[0];
	w->pid = pid;
	*out = w;
	return 0;
}

/* Waits (bounded) for the acknowledgement of generation gen. */
static int wd_wait(struct st_freeze_watchdog *w, uint64_t gen, struct st_err *err)
{
	int64_t limit = st_freeze_now_ns() + 5 * 1000000000LL;

	for (;;) {
		struct pollfd p = { .fd = w->sock, .events = POLLIN };
		int64_t left = limit - st_freeze_now_ns();
		struct wd_msg r;
		int rfds[ST_FREEZE_MAX];
		size_t rn = 0;

		if (left <= 0)
			return st_err_set(err, ST_ETIMEDOUT, "watchdog did not answer");
		if (poll(&p, 1, (int)(left / 1000000) + 1) <= 0)
			continue;
		if (wd_recv(w->sock, &r, rfds, &rn, 0) <= 0)
			return st_err_set(err, ST_EIO, "watchdog is gone");
		if (r.op == WD_EXPIRED) {
			w->expired = r.gen;
			continue;
		}
		if (r.gen != gen)
			continue;
		if (r.op == WD_NACK)
			return st_err_set(err, ST_EINVAL, "watchdog refused (generation %llu)",
			                  (unsigned long long)gen);
		return 0;
	}
}

/* Sends a command and waits for its acknowledgement. */
static int wd_call(struct st_freeze_watchdog *w, const struct wd_msg *m, const int *fds, size_t nfd,
                   struct st_err *err)
{
	if (wd_send(w->sock, m, fds, nfd) < 0)
		return st_err_set(err, ST_EIO, "watchdog is gone: %s", strerror(errno));
	return wd_wait(w, m->gen, err);
}

int st_freeze_watchdog_arm_send(struct st_freeze_watchdog *w, const struct st_freeze_set *s,
                                uint64_t gen, int64_t deadline_ns, struct st_err *err)
{
	struct wd_msg m = { .op = WD_ARM, .gen = gen, .deadline = deadline_ns };
	int fds[ST_FREEZE_MAX];

	for (size_t i = 0; i < s->n; i++)
		fds[i] = s->fs[i].fd;
	m.nfd = (uint32_t)s->n;
	if (wd_send(w->sock, &m, fds, s->n) < 0)
		return st_err_set(err, ST_EIO, "watchdog is gone: %s", strerror(errno));
	return 0;
}

int st_freeze_watchdog_arm_wait(struct st_freeze_watchdog *w, uint64_t gen, struct st_err *err)
{
	return wd_wait(w, gen, err);
}

int st_freeze_watchdog_arm(struct st_freeze_watchdog *w, const struct st_freeze_set *s,
                           uint64_t gen, int64_t deadline_ns, struct st_err *err)
{
	int rc = st_freeze_watchdog_arm_send(w, s, gen, deadline_ns, err);

	return rc < 0 ? rc : st_freeze_watchdog_arm_wait(w, gen, err);
}

int st_freeze_watchdog_extend(struct st_freeze_watchdog *w, uint64_t gen, int64_t deadline_ns,
                              struct st_err *err)
{
	struct wd_msg m = { .op = WD_EXTEND, .gen = gen, .deadline = deadline_ns };

	return wd_call(w, &m, NULL, 0, err);
}

int st_freeze_watchdog_disarm(struct st_freeze_watchdog *w, uint64_t gen, struct st_err *err)
{
	struct wd_msg m = { .op = WD_DISARM, .gen = gen };

	/*
	 * Not waited for: the caller already thawed, and the watchdog handles
	 * messages in order, so the next arm (which is waited for) is seen after
	 * this disarm. Saves a round trip to another process on the thaw path.
	 */
	if (wd_send(w->sock, &m, NULL, 0) < 0)
		return st_err_set(err, ST_EIO, "watchdog is gone: %s", strerror(errno));
	return 0;
}

int st_freeze_watchdog_fd(const struct st_freeze_watchdog *w)
{
	return w->sock;
}

uint64_t st_freeze_watchdog_expired(struct st_freeze_watchdog *w)
{
	uint64_t gen = w->expired;
	struct wd_msg r;
	int fds[ST_FREEZE_MAX];
	size_t nfd = 0;

	w->expired = 0;
	while (wd_recv(w->sock, &r, fds, &nfd, MSG_DONTWAIT) > 0)
		if (r.op == WD_EXPIRED)
			gen = r.gen;
	return gen;
}

pid_t st_freeze_watchdog_pid(const struct st_freeze_watchdog *w)
{
	return w->pid;
}

bool st_freeze_watchdog_alive(struct st_freeze_watchdog *w)
{
	if (!w->reaped && waitpid(w->pid, NULL, WNOHANG) == w->pid)
		w->reaped = true;
	return !w->reaped;
}

void st_freeze_watchdog_free(struct st_freeze_watchdog *w)
{
	if (w == NULL)
		return;
	(void)close(w->sock);
	while (!w->reaped && waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(w);
}
