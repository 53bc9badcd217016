#include "pkg/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "pkg/freeze.h"
#include "pkg/snapshot_int.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define JOURNAL_PREFIX "snapshot-freeze-"

const struct st_snapshot_ops *st_snapshot_ops_find(const char *name)
{
	static const struct st_snapshot_ops *const all[] = {
		&st_snapshot__image_ops,
		&st_snapshot__btrfs_ops,
		&st_snapshot__copy_ops,
	};

	for (size_t i = 0; name != NULL && i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(all[i]->name, name) == 0)
			return all[i];
	return NULL;
}

int st_snapshot__copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap)
		return ST_ETOOBIG;
	memcpy(dst, src, n + 1);
	return 0;
}

int st_snapshot__bind_ro(const char *src, const char *target, struct st_err *err)
{
	unsigned long ro = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NODEV | MS_NOSUID | MS_NOEXEC;

	if (mount(src, target, NULL, MS_BIND, NULL) < 0)
		return st_err_set(err, ST_EIO, "bind %s on %s: %s", src, target, strerror(errno));
	if (mount(NULL, target, NULL, ro, NULL) < 0) {
		int e = errno;

		(void)umount2(target, MNT_DETACH);
		return st_err_set(err, ST_EIO, "remount %s read-only: %s", target, strerror(e));
	}
	return 0;
}

int st_snapshot__umount(struct st_snapshot *snap, struct st_err *err)
{
	if (snap->mountpoint[0] == '\0')
		return 0;
	if (umount2(snap->mountpoint, 0) < 0 && errno != EINVAL && errno != ENOENT)
		return st_err_set(err, ST_EIO, "unmount %s: %s", snap->mountpoint, strerror(errno));
	snap->mountpoint[0] = '\0';
	return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[ST_SNAPSHOT_PATH];

	if (st_snapshot__copy_str(tmp, sizeof(tmp), path) < 0)
		return ST_ETOOBIG;
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return ST_EIO;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return ST_EIO;
	return 0;
}

static void make_id(char *out, size_t cap, const char *method)
{
	time_t now = time(NULL);
	struct tm tm;
	unsigned char rnd[3] = { 0 };

	(void)gmtime_r(&now, &tm);
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd[0] = (unsigned char)getpid();
	(void)snprintf(out, cap, "%s-%04d%02d%02dT%02d%02d%02d-%02x%02x%02x", method,
	               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	               tm.tm_sec, rnd[0], rnd[1], rnd[2]);
}

static bool id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n >= sizeof(((struct st_snapshot *)NULL)->id) || id[0] == '.')
		return false;
	return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

static void meta_path(char *out, size_t cap, const char *state_dir, const char *id)
{
	(void)snprintf(out, cap, "%s/snapshots/%s.json", state_dir, id);
}

static void add_ms(struct json_object *o, const char *k, int64_t ns)
{
	char txt[32];
	double v = (double)(ns / 1000) / 1000.0;

	(void)snprintf(txt, sizeof(txt), "%.3f", v);
	json_object_object_add(o, k, json_object_new_double_s(v, txt));
}

struct json_object *st_snapshot_to_json(const struct st_snapshot *s)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	st_json_add_str(o, "id", s->id);
	st_json_add_str(o, "method", s->method);
	st_json_add_str(o, "volume", s->volume);
	st_json_add_str(o, "source", s->source);
	st_json_add_str(o, "path", s->path);
	st_json_add_str(o, "fstype", s->fstype);
	st_json_add_str(o, "mountpoint", s->mountpoint);
	st_json_add_str(o, "loopDevice", s->loopdev);
	st_json_add_str(o, "owner", s->owner);
	json_object_object_add(o, "created", json_object_new_int64(s->created));
	json_object_object_add(o, "expires", json_object_new_int64(s->expires));
	add_ms(o, "freezeWindowMs", s->freeze_ns);
	add_ms(o, "cutMs", s->cut_ns);
	return o;
}

static void get_str(char *dst, size_t cap, const struct json_object *o, const char *key)
{
	const char *v = st_json_get_str(o, key);

	(void)snprintf(dst, cap, "%s", v != NULL ? v : "");
}

static int64_t get_i64(const struct json_object *o, const char *key)
{
	struct json_object *v = st_json_get(o, key);

	return v != NULL ? json_object_get_int64(v) : 0;
}

static void from_json(struct st_snapshot *s, const struct json_object *o)
{
	struct json_object *v = NULL;

	memset(s, 0, sizeof(*s));
	get_str(s->id, sizeof(s->id), o, "id");
	get_str(s->method, sizeof(s->method), o, "method");
	get_str(s->volume, sizeof(s->volume), o, "volume");
	get_str(s->source, sizeof(s->source), o, "source");
	get_str(s->path, sizeof(s->path), o, "path");
	get_str(s->fstype, sizeof(s->fstype), o, "fstype");
	get_str(s->mountpoint, sizeof(s->mountpoint), o, "mountpoint");
	get_str(s->loopdev, sizeof(s->loopdev), o, "loopDevice");
	get_str(s->owner, sizeof(s->owner), o, "owner");
	s->created = get_i64(o, "created");
	s->expires = get_i64(o, "expires");
	if ((v = st_json_get(o, "freezeWindowMs")) != NULL)
		s->freeze_ns = (int64_t)(json_object_get_double(v) * 1e6);
	if ((v = st_json_get(o, "cutMs")) != NULL)
		s->cut_ns = (int64_t)(json_object_get_double(v) * 1e6);
}

static int save(const char *state_dir, const struct st_snapshot *s, struct st_err *err)
{
	char path[ST_SNAPSHOT_PATH + 128];
	struct json_object *o = st_snapshot_to_json(s);
	int rc;

	if (o == NULL)
		return ST_ENOMEM;
	meta_path(path, sizeof(path), state_dir, s->id);
	rc = st_freeze_json_save(path, o, err);
	json_object_put(o);
	return rc;
}

int st_snapshot_load(struct st_snapshot *out, const char *state_dir, const char *id,
                     struct st_err *err)
{
	char path[ST_SNAPSHOT_PATH + 128];
	char *text = NULL;
	struct json_object *o = NULL;
	FILE *f = NULL;
	size_t len = 0;
	int rc = ST_EINTERNAL;

	memset(out, 0, sizeof(*out));
	if (!id_valid(id))
		return st_err_set(err, ST_EINVAL, "invalid snapshot id \"%s\"", id);
	meta_path(path, sizeof(path), state_dir, id);
	if ((f = fopen(path, "re")) == NULL) {
		rc = st_err_set(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO, "snapshot %s: %s", id,
		                errno == ENOENT ? "no such snapshot" : strerror(errno));
		goto out;
	}
	text = st_xmalloc(ST_CAP_CONTROL_BODY + 1);
	len = fread(text, 1, ST_CAP_CONTROL_BODY + 1, f);
	if ((rc = st_json_parse(&o, text, len, ST_CAP_CONTROL_BODY, path, err)) < 0)
		goto out;
	from_json(out, o);
	rc = 0;
out:
	if (f != NULL)
		(void)fclose(f);
	json_object_put(o);
	free(text);
	return rc;
}

/* Thaws what a snapshot command that died mid-window left in its journal. */
static void recover_stale(const char *state_dir)
{
	DIR *d = opendir(state_dir);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char path[ST_SNAPSHOT_PATH + 300];
		struct st_err err = ST_ERR_INIT;
		unsigned thawed = 0;
		long pid;

		if (strncmp(de->d_name, JOURNAL_PREFIX, strlen(JOURNAL_PREFIX)) != 0)
			continue;
		pid = strtol(de->d_name + strlen(JOURNAL_PREFIX), NULL, 10);
		if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
			continue;
		(void)snprintf(path, sizeof(path), "%s/%s", state_dir, de->d_name);
		if (st_freeze_recover(path, &thawed, &err) < 0)
			st_log_warn("%s", st_err_text(&err));
	}
	(void)closedir(d);
}

static int check_state_outside(const struct st_freeze_set *set, const char *state_dir,
                               struct st_err *err)
{
	struct st_mount_info vol, st;

	if (st_freeze_mount_info(&st, state_dir, err) < 0 ||
	    st_freeze_mount_info(&vol, st_freeze_set_path(set, 0), err) < 0)
		return ST_EIO;
	if (strcmp(st.devkey, vol.devkey) == 0)
		return st_err_set(
		        err, ST_EINVAL,
		        "state dir %s is on the volume's filesystem, which will be frozen",
		        state_dir);
	return 0;
}

/* freeze -> cut -> thaw under a watchdog; nothing stays frozen on any path. */
static int cut_frozen(struct st_snapshot *snap, const struct st_snapshot_ops *ops, void *ctx,
                      const struct st_snapshot_options *opts, struct st_err *err)
{
	char journal[ST_SNAPSHOT_PATH + 64];
	const char *paths[1] = { opts->volume };
	struct st_freeze_set *set = NULL;
	struct st_freeze_watchdog *w = NULL;
	int64_t t0;
	int rc = ST_EINTERNAL, trc;

	(void)snprintf(journal, sizeof(journal), "%s/" JOURNAL_PREFIX "%ld.json", opts->state_dir,
	               (long)getpid());
	if ((rc = st_freeze_set_open(&set, paths, 1, err)) < 0 ||
	    (rc = check_state_outside(set, opts->state_dir, err)) < 0 ||
	    (rc = st_freeze_watchdog_start(&w, err)) < 0 ||
	    (rc = st_freeze_watchdog_arm_send(
	             w, set, 1, st_freeze_now_ns() + opts->timeout_s * 1000000000LL, err)) < 0)
		goto out;
	/* The new watchdog starts up and takes the arm while the volume syncs. */
	st_freeze_set_sync(set);
	if ((rc = st_freeze_watchdog_arm_wait(w, 1, err)) < 0 ||
	    (rc = st_freeze_set_freeze(set, journal, err)) < 0)
		goto out;
	t0 = st_freeze_now_ns();
	rc = ops->cut(snap, ctx, err);
	snap->cut_ns = st_freeze_now_ns() - t0;
	trc = st_freeze_set_thaw(set, journal, err);
	snap->freeze_ns = st_freeze_set_window_ns(set);
	if (rc == 0 && trc < 0)
		rc = trc;
	if (rc == 0 && st_freeze_watchdog_expired(w) != 0)
		rc = st_err_set(err, ST_ETIMEDOUT,
		                "the freeze deadline (%llds) passed during the cut; the "
		                "watchdog thawed the volume, so the snapshot is not consistent",
		                (long long)opts->timeout_s);
	/* Thawed by us (or by the watchdog): nothing is left for the watchdog to do. */
	if (trc == 0 && st_freeze_watchdog_disarm(w, 1, err) < 0 && rc == 0)
		rc = ST_EIO;
out:
	/*
	 * Nothing of ours is frozen on a failure before the freeze: disarm, or the
	 * watchdog would "thaw" on exit a freeze that belongs to someone else.
	 */
	if (w != NULL && set != NULL && !st_freeze_set_frozen(set))
		(void)st_freeze_watchdog_disarm(w, 1, NULL);
	st_freeze_set_free(set);
	st_freeze_watchdog_free(w);
	return rc;
}

static int resolve_ops(const struct st_snapshot_ops **out, const struct st_snapshot_options *opts,
                       struct st_err *err)
{
	*out = opts->ops != NULL ? opts->ops : st_snapshot_ops_find(opts->method);
	if (*out != NULL)
		return 0;
	if (opts->method != NULL && strcmp(opts->method, "csi") == 0)
		return st_err_set(err, ST_EINVAL, "csi snapshots are cut by the controller");
	return st_err_set(err, ST_EINVAL, "unknown snapshot method \"%s\" (image, btrfs, copy)",
	                  opts->method != NULL ? opts->method : "");
}

static int init_snap(struct st_snapshot *s, const struct st_snapshot_ops *ops,
                     const struct st_snapshot_options *opts, struct st_err *err)
{
	char dir[ST_SNAPSHOT_PATH + 16];

	memset(s, 0, sizeof(*s));
	if (opts->volume == NULL || opts->state_dir == NULL)
		return st_err_set(err, ST_EINVAL, "a volume and a state dir are required");
	make_id(s->id, sizeof(s->id), ops->name);
	(void)snprintf(s->method, sizeof(s->method), "%s", ops->name);
	if (st_snapshot__copy_str(s->volume, sizeof(s->volume), opts->volume) < 0)
		return st_err_set(err, ST_EINVAL, "volume path too long");
	(void)snprintf(s->owner, sizeof(s->owner), "%s", opts->owner != NULL ? opts->owner : "");
	s->created = (int64_t)time(NULL);
	s->expires = opts->ttl_s > 0 ? s->created + opts->ttl_s : 0;
	(void)snprintf(dir, sizeof(dir), "%s/snapshots", opts->state_dir);
	if (mkdir_p(dir, 0700) < 0)
		return st_err_set(err, ST_EIO, "state dir %s: %s", dir, strerror(errno));
	return 0;
}

int st_snapshot_create(struct st_snapshot *out, const struct st_snapshot_options *opts,
                       struct st_err *err)
{
	const struct st_snapshot_ops *ops = NULL;
	struct st_snapshot *s = st_xcalloc(1, sizeof(*s));
	void *ctx = NULL;
	bool prepared = false;
	int rc = ST_EINTERNAL;

	if ((rc = resolve_ops(&ops, opts, err)) < 0 || (rc = init_snap(s, ops, opts, err)) < 0)
		goto out;
	recover_stale(opts->state_dir);
	if ((rc = ops->prepare(s, &ctx, opts, err)) < 0)
		goto out;
	/* From here a failure removes whatever the backend created. */
	prepared = true;
	if (ops->needs_freeze && !opts->caller_froze) {
		rc = cut_frozen(s, ops, ctx, opts, err);
	} else {
		int64_t t0 = st_freeze_now_ns();

		rc = ops->cut(s, ctx, err);
		s->cut_ns = st_freeze_now_ns() - t0;
	}
	ops->finish(ctx);
	if (rc < 0 || (rc = save(opts->state_dir, s, err)) < 0)
		goto out;
	if (opts->mount) {
		char id[sizeof(s->id)];

		/* st_snapshot_mount reloads into s, so pass a copy of the id. */
		memcpy(id, s->id, sizeof(id));
		if ((rc = st_snapshot_mount(s, opts->state_dir, id, NULL, err)) < 0)
			goto out;
	}
	*out = *s;
	rc = 0;
out:
	if (rc < 0 && prepared) {
		char path[ST_SNAPSHOT_PATH + 128];

		(void)ops->remove(s, NULL);
		meta_path(path, sizeof(path), opts->state_dir, s->id);
		(void)unlink(path);
	}
	if (rc < 0)
		st_err_prefix(err, "snapshot of %s", opts->volume != NULL ? opts->volume : "?");
	free(s);
	return rc;
}

int st_snapshot_mount(struct st_snapshot *out, const char *state_dir, const char *id,
                      const char *target, struct st_err *err)
{
	char def[ST_SNAPSHOT_PATH];
	const struct st_snapshot_ops *ops = NULL;
	int rc = ST_EINTERNAL;

	if ((rc = st_snapshot_load(out, state_dir, id, err)) < 0)
		return rc;
	if (out->mountpoint[0] != '\0')
		return 0;
	if ((ops = st_snapshot_ops_find(out->method)) == NULL)
		return st_err_set(err, ST_EINVAL, "snapshot %s: method %s cannot be mounted here",
		                  id, out->method);
	if (target == NULL) {
		if (snprintf(def, sizeof(def), "%s/mnt/%s", state_dir, id) >= (int)sizeof(def))
			return st_err_set(err, ST_EINVAL, "state dir path too long");
		target = def;
	}
	if (st_snapshot__copy_str(out->mountpoint, sizeof(out->mountpoint), target) < 0)
		return st_err_set(err, ST_EINVAL, "mount point path too long");
	out->mountpoint[0] = '\0';
	if (mkdir_p(target, 0700) < 0)
		return st_err_set(err, ST_EIO, "mount point %s: %s", target, strerror(errno));
	if ((rc = ops->mount(out, target, err)) < 0)
		return rc;
	if ((rc = st_snapshot__copy_str(out->mountpoint, sizeof(out->mountpoint), target)) < 0 ||
	    (rc = save(state_dir, out, err)) < 0) {
		(void)ops->unmount(out, NULL);
		return rc;
	}
	return 0;
}

static int unmount_loaded(struct st_snapshot *s, const char *state_dir, struct st_err *err)
{
	const struct st_snapshot_ops *ops = st_snapshot_ops_find(s->method);
	char def[ST_SNAPSHOT_PATH + 80];
	int rc;

	if (s->mountpoint[0] == '\0')
		return 0;
	(void)snprintf(def, sizeof(def), "%s/mnt/%s", state_dir, s->id);
	rc = ops != NULL ? ops->unmount(s, err) : st_snapshot__umount(s, err);
	if (rc < 0)
		return rc;
	(void)rmdir(def);
	return save(state_dir, s, err);
}

int st_snapshot_unmount(const char *state_dir, const char *id, struct st_err *err)
{
	struct st_snapshot *s = st_xcalloc(1, sizeof(*s));
	int rc = st_snapshot_load(s, state_dir, id, err);

	if (rc == 0)
		rc = unmount_loaded(s, state_dir, err);
	free(s);
	return rc;
}

int st_snapshot_delete(const char *state_dir, const char *id, struct st_err *err)
{
	struct st_snapshot *s = st_xcalloc(1, sizeof(*s));
	const struct st_snapshot_ops *ops = NULL;
	char path[ST_SNAPSHOT_PATH + 128];
	int rc = ST_EINTERNAL;

	if ((rc = st_snapshot_load(s, state_dir, id, err)) < 0 ||
	    (rc = unmount_loaded(s, state_dir, err)) < 0)
		goto out;
	if ((ops = st_snapshot_ops_find(s->method)) == NULL) {
		rc = st_err_set(err, ST_EINVAL, "snapshot %s: method %s is deleted by its owner",
		                id, s->method);
		goto out;
	}
	if ((rc = ops->remove(s, err)) < 0)
		goto out;
	meta_path(path, sizeof(path), state_dir, id);
	if (unlink(path) < 0) {
		rc = st_err_set(err, ST_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(s);
	return rc;
}

static int cmp_snap(const void *a, const void *b)
{
	const struct st_snapshot *x = a, *y = b;

	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->id, y->id);
}

/* Loads every snapshot's metadata, oldest first. *out is malloc'd. */
static int load_all(struct st_snapshot **out, size_t *n_out, const char *state_dir,
                    struct st_err *err)
{
	char dir[ST_SNAPSHOT_PATH + 16];
	struct st_snapshot *all = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	*n_out = 0;
	(void)snprintf(dir, sizeof(dir), "%s/snapshots", state_dir);
	if ((d = opendir(dir)) == NULL)
		return errno == ENOENT ? 0
		                       : st_err_set(err, ST_EIO, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		char id[128];
		size_t len = strlen(de->d_name);

		if (len <= 5 || len - 5 >= sizeof(id) || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		memcpy(id, de->d_name, len - 5);
		id[len - 5] = '\0';
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			all = st_xrealloc(all, cap * sizeof(*all));
		}
		if (st_snapshot_load(&all[n], state_dir, id, NULL) == 0)
			n++;
	}
	(void)closedir(d);
	if (n > 0)
		qsort(all, n, sizeof(*all), cmp_snap);
	*out = all;
	*n_out = n;
	return 0;
}

int st_snapshot_list(const char *state_dir, st_snapshot_list_cb cb, void *payload,
                     struct st_err *err)
{
	struct st_snapshot *all = NULL;
	size_t n = 0;
	int rc = load_all(&all, &n, state_dir, err);

	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = cb(&all[i], payload);
	free(all);
	return rc;
}

int st_snapshot_gc(const char *state_dir, int64_t now, unsigned *removed_out, struct st_err *err)
{
	struct st_snapshot *all = NULL;
	size_t n = 0;
	int rc = load_all(&all, &n, state_dir, err);

	*removed_out = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (all[i].expires == 0 || all[i].expires > now)
			continue;
		if (st_snapshot_delete(state_dir, all[i].id, err) < 0) {
			st_log_warn("expire snapshot %s: %s", all[i].id, st_err_text(err));
			continue;
		}
		st_log_info("expired snapshot %s (owner %s never came back)", all[i].id,
		            all[i].owner[0] ? all[i].owner : "unknown");
		(*removed_out)++;
	}
	free(all);
	return rc;
}
