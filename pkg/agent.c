#include "pkg/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "pkg/freeze.h"
#include "pkg/httpd.h"
#include "pkg/metrics.h"
#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define HDR_CAP      8192
#define IO_TIMEOUT_S 5
/* The agent's own deadline check trails the watchdog's by this much. */
#define SELF_GRACE_NS 1000000000LL

#define M_WINDOW "stasis_agent_freeze_window_seconds"
#define M_FREEZE "stasis_agent_freezes_total"
#define M_AUTO   "stasis_agent_auto_thaws_total"
#define M_FAIL   "stasis_agent_failures_total"
#define M_FROZEN "stasis_agent_frozen"
#define M_REQ    "stasis_agent_requests_total"

struct st_agent {
	struct st_agent_options opts;
	char state_dir[PATH_MAX];
	char socket_path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
	char journal[PATH_MAX + 32];
	char state_devkey[32];
	char vol_paths[ST_AGENT_MAX_VOLUMES][PATH_MAX];

	pthread_mutex_t mu;
	struct st_freeze_watchdog *wd;
	struct st_freeze_set *set; /* non-NULL while frozen */
	uint64_t gen;
	int64_t deadline_ns;
	int64_t frozen_at_ns;
	char frozen_by[128];
	uint64_t auto_thawed_gen; /* set by an auto-thaw until a thaw call learns of it */
	int64_t last_window_ns;

	struct st_metrics *metrics;
	struct st_httpd *httpd;
	int usock;
	int stop_pipe[2];
	pthread_t usock_thread, expiry_thread;
	bool usock_started, expiry_started;
};

static const double window_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
	                                 0.5,   1,      2.5,   5,    10,    30,   60,  300 };

/* ---- responses --------------------------------------------------------- */

struct reply {
	int status;
	struct json_object *obj;
};

static void reply_error(struct reply *r, int status, const char *fmt, ...) ST_PRINTF(3, 4);
static void reply_error(struct reply *r, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_put(r->obj);
	r->obj = json_object_new_object();
	r->status = status;
	if (r->obj != NULL)
		st_json_add_str(r->obj, "error", msg);
}

static void add_i64(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

/* Milliseconds with microsecond precision, printed as written (no binary noise). */
static void add_ms(struct json_object *o, const char *k, int64_t ns)
{
	char txt[32];
	double v = (double)(ns / 1000) / 1000.0;

	(void)snprintf(txt, sizeof(txt), "%.3f", v);
	json_object_object_add(o, k, json_object_new_double_s(v, txt));
}

static void add_bool(struct json_object *o, const char *k, bool v)
{
	json_object_object_add(o, k, json_object_new_boolean(v));
}

static struct json_object *frozen_mounts(const struct st_freeze_set *s)
{
	struct json_object *arr = json_object_new_array();

	for (size_t i = 0; s != NULL && arr != NULL && i < st_freeze_set_count(s); i++)
		json_object_array_add(arr, json_object_new_string(st_freeze_set_mount(s, i)));
	return arr;
}

/* ---- freeze / thaw (called with a->mu held) ---------------------------- */

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/*
 * Maps a requested volume to a path: a configured volume's name or path, or
 * a directory inside one (after resolving symlinks). With no volumes
 * configured, any absolute path is accepted.
 */
static int resolve_volume(char *out, size_t cap, const struct st_agent *a, const char *v)
{
	char rp[PATH_MAX];

	if (a->opts.nvolumes == 0) {
		if (v[0] != '/')
			return ST_EINVAL;
		return snprintf(out, cap, "%s", v) < (int)cap ? 0 : ST_EINVAL;
	}
	for (size_t i = 0; i < a->opts.nvolumes; i++) {
		const char *p = a->vol_paths[i];
		const char *name = strrchr(p, '/') != NULL ? strrchr(p, '/') + 1 : p;

		if (strcmp(v, p) == 0 || strcmp(v, name) == 0) {
			(void)snprintf(out, cap, "%s", p);
			return 0;
		}
	}
	if (v[0] != '/' || realpath(v, rp) == NULL)
		return ST_ENOTFOUND;
	for (size_t i = 0; i < a->opts.nvolumes; i++)
		if (under(rp, a->vol_paths[i]))
			return snprintf(out, cap, "%s", rp) < (int)cap ? 0 : ST_EINVAL;
	return ST_ENOTFOUND;
}

/* Fills paths from the request's "volumes" (all configured ones when absent). */
static int request_volumes(char (*paths)[PATH_MAX], size_t *n_out, const struct st_agent *a,
                           const struct json_object *req, struct reply *r)
{
	struct json_object *arr = st_json_get_arr(req, "volumes");
	size_t n = arr != NULL ? json_object_array_length(arr) : 0;

	*n_out = 0;
	if (n == 0) {
		if (a->opts.nvolumes == 0) {
			reply_error(r, 400, "no volumes given and none configured");
			return ST_EINVAL;
		}
		for (size_t i = 0; i < a->opts.nvolumes; i++)
			(void)snprintf(paths[i], PATH_MAX, "%s", a->vol_paths[i]);
		*n_out = a->opts.nvolumes;
		return 0;
	}
	if (n > ST_AGENT_MAX_VOLUMES) {
		reply_error(r, 400, "at most %d volumes", ST_AGENT_MAX_VOLUMES);
		return ST_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *v = json_object_get_string(json_object_array_get_idx(arr, i));

		if (v == NULL || resolve_volume(paths[i], PATH_MAX, a, v) < 0) {
			reply_error(r, v == NULL ? 400 : 404, "unknown volume \"%s\"",
			            v != NULL ? v : "");
			return ST_EINVAL;
		}
	}
	*n_out = n;
	return 0;
}

static int64_t request_deadline(const struct st_agent *a, const struct json_object *req,
                                struct reply *r)
{
	struct json_object *d = st_json_get(req, "deadlineSeconds");
	int64_t s = a->opts.default_deadline_s;

	if (d != NULL) {
		if (!json_object_is_type(d, json_type_int) &&
		    !json_object_is_type(d, json_type_double)) {
			reply_error(r, 400, "deadlineSeconds must be a number");
			return -1;
		}
		s = json_object_get_int64(d);
	}
	if (s < 1 || s > a->opts.max_deadline_s) {
		reply_error(r, 400, "deadlineSeconds must be between 1 and %lld",
		            (long long)a->opts.max_deadline_s);
		return -1;
	}
	return s;
}

static int64_t remaining_s(const struct st_agent *a)
{
	int64_t left = a->deadline_ns - st_freeze_now_ns();

	return left > 0 ? (left + 999999999) / 1000000000 : 0;
}

static void do_extend(struct st_agent *a, int64_t secs, struct reply *r)
{
	struct st_err err = ST_ERR_INIT;
	int64_t deadline = st_freeze_now_ns() + secs * 1000000000LL;

	if (st_freeze_watchdog_extend(a->wd, a->gen, deadline, &err) < 0) {
		reply_error(r, 409, "cannot extend: %s", st_err_text(&err));
		return;
	}
	a->deadline_ns = deadline;
	st_log_info("freeze %llu: deadline extended to %llds from now", (unsigned long long)a->gen,
	            (long long)secs);
	r->status = 200;
	add_bool(r->obj, "frozen", true);
	add_bool(r->obj, "extended", true);
	add_i64(r->obj, "generation", (int64_t)a->gen);
	add_i64(r->obj, "deadlineSeconds", secs);
	json_object_object_add(r->obj, "volumes", frozen_mounts(a->set));
}

/* Refuses a set with a volume on the state dir's filesystem: we write there while frozen. */
static int check_state_dir(const struct st_agent *a, const struct st_freeze_set *s, struct reply *r)
{
	for (size_t i = 0; i < st_freeze_set_count(s); i++) {
		struct st_mount_info mi;

		if (st_freeze_mount_info(&mi, st_freeze_set_path(s, i), NULL) == 0 &&
		    strcmp(mi.devkey, a->state_devkey) == 0) {
			reply_error(r, 422, "volume %s shares a filesystem with the state dir %s",
			            st_freeze_set_path(s, i), a->state_dir);
			return ST_EINVAL;
		}
	}
	return 0;
}

static void do_freeze(struct st_agent *a, const struct json_object *req, const char *who,
                      struct reply *r)
{
	char(*paths)[PATH_MAX] = st_xcalloc(ST_AGENT_MAX_VOLUMES, PATH_MAX);
	const char *ptrs[ST_AGENT_MAX_VOLUMES];
	struct st_freeze_set *set = NULL;
	struct st_err err = ST_ERR_INIT;
	int64_t secs, t0 = st_freeze_now_ns();
	size_t n = 0;

	if ((secs = request_deadline(a, req, r)) < 0)
		goto out;
	if (a->set != NULL) {
		if (st_json_get_bool(req, "extend", false))
			do_extend(a, secs, r);
		else
			reply_error(r, 409,
			            "already frozen (generation %llu by %s, %llds left); set "
			            "\"extend\" to move the deadline",
			            (unsigned long long)a->gen, a->frozen_by,
			            (long long)remaining_s(a));
		goto out;
	}
	if (request_volumes(paths, &n, a, req, r) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		ptrs[i] = paths[i];
	if (st_freeze_set_open(&set, ptrs, n, &err) < 0) {
		reply_error(r, 422, "%s", st_err_text(&err));
		goto fail;
	}
	if (check_state_dir(a, set, r) < 0)
		goto fail;
	a->gen++;
	/* The watchdog takes the arm while the filesystems sync; wait for it before freezing. */
	if (st_freeze_watchdog_arm_send(a->wd, set, a->gen, t0 + secs * 1000000000LL, &err) == 0)
		st_freeze_set_sync(set);
	if (err.code != 0 || st_freeze_watchdog_arm_wait(a->wd, a->gen, &err) < 0) {
		(void)st_freeze_watchdog_disarm(a->wd, a->gen, NULL);
		reply_error(r, 503, "watchdog unavailable, refusing to freeze: %s",
		            st_err_text(&err));
		goto fail;
	}
	if (st_freeze_set_freeze(set, a->journal, &err) < 0) {
		(void)st_freeze_watchdog_disarm(a->wd, a->gen, NULL);
		reply_error(r, 422, "%s", st_err_text(&err));
		goto fail;
	}
	a->set = set;
	set = NULL; /* transferred */
	a->deadline_ns = t0 + secs * 1000000000LL;
	a->frozen_at_ns = st_freeze_now_ns();
	a->auto_thawed_gen = 0;
	(void)snprintf(a->frozen_by, sizeof(a->frozen_by), "%s", who);
	st_metrics_add(a->metrics, M_FREEZE, NULL, 1);
	st_metrics_set(a->metrics, M_FROZEN, NULL, 1);
	st_log_info("freeze %llu: %zu filesystem(s) frozen by %s, deadline %llds",
	            (unsigned long long)a->gen, st_freeze_set_count(a->set), who, (long long)secs);
	r->status = 200;
	add_bool(r->obj, "frozen", true);
	add_i64(r->obj, "generation", (int64_t)a->gen);
	add_i64(r->obj, "deadlineSeconds", secs);
	add_ms(r->obj, "requestMs", a->frozen_at_ns - t0);
	json_object_object_add(r->obj, "volumes", frozen_mounts(a->set));
	goto out;
fail:
	st_metrics_add(a->metrics, M_FAIL, "op=\"freeze\"", 1);
	st_log_warn("freeze refused for %s: %s", who,
	            r->obj != NULL ? st_json_get_str(r->obj, "error") : "?");
out:
	st_freeze_set_free(set);
	free(paths);
}

/* Records the end of a freeze cycle (thawed by us or by the watchdog). */
static void end_cycle(struct st_agent *a)
{
	a->last_window_ns = st_freeze_set_window_ns(a->set);
	st_metrics_observe(a->metrics, M_WINDOW, NULL, (double)a->last_window_ns / 1e9);
	st_metrics_set(a->metrics, M_FROZEN, NULL, 0);
	st_freeze_set_free(a->set);
	a->set = NULL;
}

static void check_expiry(struct st_agent *a);

static void do_thaw(struct st_agent *a, const char *who, struct reply *r)
{
	struct st_err err = ST_ERR_INIT;

	/*
	 * A thaw that arrives after the deadline cannot know whether the freeze
	 * held until its cut: the watchdog may have thawed first (its report may
	 * still be in flight). Treat it as the auto-thaw it is.
	 */
	check_expiry(a);
	if (a->set != NULL && st_freeze_now_ns() >= a->deadline_ns) {
		if (st_freeze_set_thaw(a->set, a->journal, &err) < 0) {
			st_metrics_add(a->metrics, M_FAIL, "op=\"thaw\"", 1);
			reply_error(r, 500, "%s", st_err_text(&err));
			return;
		}
		(void)st_freeze_watchdog_disarm(a->wd, a->gen, NULL);
		st_metrics_add(a->metrics, M_AUTO, NULL, 1);
		a->auto_thawed_gen = a->gen;
		end_cycle(a);
	}
	if (a->set == NULL) {
		if (a->auto_thawed_gen != 0) {
			reply_error(r, 409,
			            "freeze %llu outlived its deadline and was thawed by the "
			            "watchdog; a snapshot cut after that is not consistent",
			            (unsigned long long)a->auto_thawed_gen);
			add_bool(r->obj, "autoThawed", true);
			a->auto_thawed_gen = 0;
			return;
		}
		r->status = 200;
		add_bool(r->obj, "thawed", false);
		st_json_add_str(r->obj, "reason", "not frozen");
		return;
	}
	if (st_freeze_set_thaw(a->set, a->journal, &err) < 0) {
		/* The watchdog stays armed and will retry at the deadline. */
		st_metrics_add(a->metrics, M_FAIL, "op=\"thaw\"", 1);
		reply_error(r, 500, "%s", st_err_text(&err));
		return;
	}
	if (st_freeze_watchdog_disarm(a->wd, a->gen, &err) < 0)
		st_log_warn("watchdog disarm: %s", st_err_text(&err));
	end_cycle(a);
	st_log_info("thaw %llu by %s: window %.3f ms", (unsigned long long)a->gen, who,
	            (double)a->last_window_ns / 1e6);
	r->status = 200;
	add_bool(r->obj, "thawed", true);
	add_i64(r->obj, "generation", (int64_t)a->gen);
	add_ms(r->obj, "windowMs", a->last_window_ns);
}

static void do_status(struct st_agent *a, struct reply *r)
{
	struct json_object *vols = json_object_new_array();

	for (size_t i = 0; vols != NULL && i < a->opts.nvolumes; i++)
		json_object_array_add(vols, json_object_new_string(a->vol_paths[i]));
	r->status = 200;
	add_bool(r->obj, "frozen", a->set != NULL);
	add_i64(r->obj, "generation", (int64_t)a->gen);
	json_object_object_add(r->obj, "volumes", vols);
	json_object_object_add(r->obj, "frozenVolumes", frozen_mounts(a->set));
	if (a->set != NULL) {
		st_json_add_str(r->obj, "frozenBy", a->frozen_by);
		add_i64(r->obj, "remainingSeconds", remaining_s(a));
		add_ms(r->obj, "frozenForMs", st_freeze_now_ns() - a->frozen_at_ns);
	}
	add_ms(r->obj, "lastWindowMs", a->last_window_ns);
	add_i64(r->obj, "autoThaws", (int64_t)st_metrics_value(a->metrics, M_AUTO, NULL));
	add_i64(r->obj, "watchdogPid", (int64_t)st_freeze_watchdog_pid(a->wd));
	add_i64(r->obj, "pid", (int64_t)getpid());
}

static bool watchdog_alive(const struct st_agent *a)
{
	return st_freeze_watchdog_alive(a->wd);
}

/* ---- dispatch ----------------------------------------------------------- */

static int render_metrics(char **body_out, struct st_agent *a)
{
	struct st_buf b = ST_BUF_INIT(4u << 20);
	int rc = st_metrics_render(&b, a->metrics);

	*body_out = rc == 0 ? st_buf_detach(&b, NULL) : NULL;
	st_buf_dispose(&b);
	return rc;
}

static void route(struct st_agent *a, const char *method, const char *path,
                  const struct json_object *req, const char *who, struct reply *r)
{
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;

	if (strcmp(path, "/v1/freeze") == 0 && post)
		do_freeze(a, req, who, r);
	else if (strcmp(path, "/v1/thaw") == 0 && post)
		do_thaw(a, who, r);
	else if (strcmp(path, "/v1/status") == 0 && get)
		do_status(a, r);
	else if (strcmp(path, "/healthz") == 0 && get) {
		bool ok = watchdog_alive(a);

		r->status = ok ? 200 : 503;
		add_bool(r->obj, "ok", ok);
		if (!ok)
			st_json_add_str(r->obj, "reason", "watchdog process is gone");
	} else if (strcmp(path, "/v1/freeze") == 0 || strcmp(path, "/v1/thaw") == 0 ||
	           strcmp(path, "/v1/status") == 0 || strcmp(path, "/healthz") == 0)
		reply_error(r, 405, "method %s not allowed on %s", method, path);
	else
		reply_error(r, 404, "no such endpoint %s", path);
}

int st_agent_handle(int *status_out, char **body_out, const char **ctype_out, struct st_agent *a,
                    const char *method, const char *path, const char *body, size_t len,
                    const char *who)
{
	struct reply r = { 500, json_object_new_object() };
	struct json_object *req = NULL;
	struct st_err err = ST_ERR_INIT;
	char labels[96];
	int rc = ST_EINTERNAL;

	*body_out = NULL;
	*ctype_out = "application/json";
	if (r.obj == NULL)
		return ST_ENOMEM;
	if (strcmp(path, "/metrics") == 0 && strcmp(method, "GET") == 0) {
		*ctype_out = "text/plain; version=0.0.4";
		*status_out = 200;
		rc = render_metrics(body_out, a);
		goto out;
	}
	if (strcmp(method, "POST") == 0 && len > 0 &&
	    st_json_parse(&req, body, len, ST_CAP_CONTROL_BODY, "request", &err) < 0) {
		reply_error(&r, 400, "%s", st_err_text(&err));
	} else if (req != NULL && !json_object_is_type(req, json_type_object)) {
		reply_error(&r, 400, "request body must be a JSON object");
	} else {
		pthread_mutex_lock(&a->mu);
		route(a, method, path, req, who, &r);
		pthread_mutex_unlock(&a->mu);
	}
	(void)snprintf(labels, sizeof(labels), "code=\"%d\"", r.status);
	st_metrics_add(a->metrics, M_REQ, labels, 1);
	*status_out = r.status;
	*body_out = st_xstrdup(r.obj != NULL ? st_json_to_string(r.obj, NULL) : "{}");
	rc = 0;
out:
	json_object_put(req);
	json_object_put(r.obj);
	return rc;
}

/* ---- HTTPS -------------------------------------------------------------- */

static int https_handler(struct st_httpd_response *resp, const struct st_httpd_request *req,
                         void *payload)
{
	char who[160];
	const char *ctype = NULL;
	int rc;

	(void)snprintf(who, sizeof(who), "cn=%s", req->client_cn != NULL ? req->client_cn : "-");
	rc = st_agent_handle(&resp->status, &resp->body, &ctype, payload, req->method, req->path,
	                     req->body, req->body_len, who);
	if (rc < 0)
		return rc;
	resp->content_type = ctype;
	resp->body_len = strlen(resp->body);
	return 0;
}

/* ---- Unix socket: one HTTP/1.x request per connection ------------------- */

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 422:
		return "Unprocessable Entity";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void send_reply(int fd, int status, const char *ctype, const char *body)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
	                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n",
	                 status, reason_phrase(status), ctype, strlen(body));

	if (write_all(fd, hdr, (size_t)n) == 0)
		(void)write_all(fd, body, strlen(body));
}

/*
 * Reads an HTTP message: headers (bounded by HDR_CAP) and a Content-Length
 * body (bounded by cap). *hdr_len_out is the header length including the
 * blank line; the body follows it in b.
 */
static int read_message(struct st_buf *b, size_t *hdr_len_out, size_t *body_len_out, int fd,
                        size_t cap)
{
	char chunk[4096];
	const char *end = NULL;
	size_t want = 0;

	for (;;) {
		ssize_t n;

		if (end == NULL && (end = strstr(st_buf_cstr(b), "\r\n\r\n")) != NULL) {
			const char *cl = strcasestr(st_buf_cstr(b), "\r\ncontent-length:");

			*hdr_len_out = (size_t)(end - st_buf_cstr(b)) + 4;
			want = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
			if (want > cap)
				return ST_ETOOBIG;
		}
		if (end != NULL && b->len >= *hdr_len_out + want) {
			*body_len_out = want;
			return 0;
		}
		if (end == NULL && b->len > HDR_CAP)
			return ST_ETOOBIG;
		n = recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* A response without Content-Length ends at EOF. */
			if (end != NULL && n == 0 && want == 0) {
				*body_len_out = b->len - *hdr_len_out;
				return 0;
			}
			return n == 0 ? ST_EPROTO : ST_EIO;
		}
		if (st_buf_put(b, chunk, (size_t)n) < 0)
			return ST_ETOOBIG;
	}
}

static void serve_conn(struct st_agent *a, int fd)
{
	struct st_buf b = ST_BUF_INIT(HDR_CAP + ST_CAP_CONTROL_BODY);
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char method[16], path[256], who[64];
	const char *ctype = NULL;
	char *body = NULL;
	size_t hl = 0, bl = 0;
	int status = 500;

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		send_reply(fd, 403, "application/json", "{\"error\":\"peer not allowed\"}");
		goto out;
	}
	if (read_message(&b, &hl, &bl, fd, ST_CAP_CONTROL_BODY) < 0 ||
	    sscanf(st_buf_cstr(&b), "%15s %255s", method, path) != 2) {
		send_reply(fd, 400, "application/json", "{\"error\":\"malformed request\"}");
		goto out;
	}
	if (strchr(path, '?') != NULL)
		*strchr(path, '?') = '\0';
	(void)snprintf(who, sizeof(who), "uid=%u pid=%d", (unsigned)cred.uid, (int)cred.pid);
	if (st_agent_handle(&status, &body, &ctype, a, method, path, b.ptr + hl, bl, who) < 0) {
		send_reply(fd, 500, "application/json", "{\"error\":\"internal error\"}");
		goto out;
	}
	send_reply(fd, status, ctype, body);
out:
	free(body);
	st_buf_dispose(&b);
}

static void *usock_main(void *arg)
{
	struct st_agent *a = arg;

	for (;;) {
		struct pollfd p[2] = { { a->usock, POLLIN, 0 }, { a->stop_pipe[0], POLLIN, 0 } };
		int fd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents != 0)
			break;
		if ((p[0].revents & POLLIN) == 0)
			continue;
		if ((fd = accept4(a->usock, NULL, NULL, SOCK_CLOEXEC)) < 0)
			continue;
		serve_conn(a, fd);
		(void)close(fd);
	}
	return NULL;
}

static int usock_listen(struct st_agent *a, struct st_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int rc;

	(void)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a->socket_path);
	if ((a->usock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return st_err_set(err, ST_EIO, "socket: %s", strerror(errno));
	(void)unlink(a->socket_path);
	old = umask(0077);
	rc = bind(a->usock, (struct sockaddr *)&sa, sizeof(sa));
	(void)umask(old);
	if (rc < 0 || listen(a->usock, 16) < 0)
		return st_err_set(err, ST_EIO, "listen on %s: %s", a->socket_path, strerror(errno));
	return 0;
}

/* ---- expiry: learns of watchdog thaws, and backs the watchdog up -------- */

static void check_expiry(struct st_agent *a)
{
	uint64_t gen = st_freeze_watchdog_expired(a->wd);

	if (a->set == NULL)
		return;
	if (gen == a->gen) {
		st_log_warn("freeze %llu: deadline passed, thawed by the watchdog",
		            (unsigned long long)gen);
		st_freeze_set_forget(a->set, a->journal);
	} else if (st_freeze_now_ns() > a->deadline_ns + SELF_GRACE_NS) {
		/* The watchdog should have acted by now; thaw ourselves. */
		st_log_err("freeze %llu: deadline passed and the watchdog did not report; "
		           "thawing",
		           (unsigned long long)a->gen);
		if (st_freeze_set_thaw(a->set, a->journal, NULL) < 0)
			return;
	} else {
		return;
	}
	st_metrics_add(a->metrics, M_AUTO, NULL, 1);
	a->auto_thawed_gen = a->gen;
	end_cycle(a);
}

static void *expiry_main(void *arg)
{
	struct st_agent *a = arg;

	for (;;) {
		struct pollfd p[2] = { { st_freeze_watchdog_fd(a->wd), POLLIN, 0 },
			               { a->stop_pipe[0], POLLIN, 0 } };

		(void)poll(p, 2, 200);
		if (p[1].revents != 0)
			break;
		pthread_mutex_lock(&a->mu);
		check_expiry(a);
		pthread_mutex_unlock(&a->mu);
		/* A dead watchdog keeps its socket readable (EOF): do not spin. */
		if (p[0].revents & (POLLHUP | POLLERR))
			(void)usleep(200000);
	}
	return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int copy_options(struct st_agent *a, const struct st_agent_options *o, struct st_err *err)
{
	struct st_mount_info mi;

	a->opts = *o;
	if (o->state_dir == NULL || realpath(o->state_dir, a->state_dir) == NULL)
		return st_err_set(err, ST_EINVAL, "state dir %s: %s",
		                  o->state_dir != NULL ? o->state_dir : "(none)", strerror(errno));
	if (snprintf(a->socket_path, sizeof(a->socket_path), "%s",
	             o->socket_path != NULL ? o->socket_path : "") >= (int)sizeof(a->socket_path) ||
	    (o->socket_path == NULL &&
	     snprintf(a->socket_path, sizeof(a->socket_path), "%s/agent.sock", a->state_dir) >=
	             (int)sizeof(a->socket_path)))
		return st_err_set(err, ST_EINVAL, "socket path too long");
	(void)snprintf(a->journal, sizeof(a->journal), "%s/frozen.json", a->state_dir);
	if (o->nvolumes > ST_AGENT_MAX_VOLUMES)
		return st_err_set(err, ST_EINVAL, "too many volumes");
	for (size_t i = 0; i < o->nvolumes; i++) {
		if (realpath(o->volumes[i], a->vol_paths[i]) == NULL)
			return st_err_set(err, ST_ENOTFOUND, "volume %s: %s", o->volumes[i],
			                  strerror(errno));
		if (st_freeze_mount_info(&mi, a->vol_paths[i], err) < 0)
			return ST_EIO;
	}
	if (st_freeze_mount_info(&mi, a->state_dir, err) < 0)
		return ST_EIO;
	(void)snprintf(a->state_devkey, sizeof(a->state_devkey), "%s", mi.devkey);
	return 0;
}

static void declare_metrics(struct st_metrics *m)
{
	st_metrics_declare(m, M_WINDOW, "Freeze window, first FIFREEZE to last FITHAW.",
	                   ST_METRIC_HISTOGRAM, window_buckets,
	                   sizeof(window_buckets) / sizeof(window_buckets[0]));
	st_metrics_declare(m, M_FREEZE, "Successful freezes.", ST_METRIC_COUNTER, NULL, 0);
	st_metrics_declare(m, M_AUTO, "Freezes thawed at their deadline.", ST_METRIC_COUNTER, NULL,
	                   0);
	st_metrics_declare(m, M_FAIL, "Failed freezes and thaws.", ST_METRIC_COUNTER, NULL, 0);
	st_metrics_declare(m, M_FROZEN, "1 while volumes are frozen.", ST_METRIC_GAUGE, NULL, 0);
	st_metrics_declare(m, M_REQ, "API requests by status code.", ST_METRIC_COUNTER, NULL, 0);
	st_metrics_add(m, M_AUTO, NULL, 0);
	st_metrics_add(m, M_FREEZE, NULL, 0);
	st_metrics_set(m, M_FROZEN, NULL, 0);
}

int st_agent_new(struct st_agent **out, const struct st_agent_options *opts, struct st_err *err)
{
	struct st_agent *a = st_xcalloc(1, sizeof(*a));
	unsigned thawed = 0;
	int rc = ST_EINTERNAL;

	*out = NULL;
	a->usock = -1;
	a->stop_pipe[0] = a->stop_pipe[1] = -1;
	(void)pthread_mutex_init(&a->mu, NULL);
	if (opts->state_dir != NULL)
		(void)mkdir(opts->state_dir, 0700);
	if ((rc = copy_options(a, opts, err)) < 0)
		goto out;
	if ((rc = st_freeze_recover(a->journal, &thawed, err)) < 0)
		goto out;
	if (thawed > 0)
		st_log_warn("start-up: thawed %u filesystem(s) left frozen by a previous run",
		            thawed);
	a->metrics = st_metrics_new();
	declare_metrics(a->metrics);
	st_metrics_add(a->metrics, M_AUTO, NULL, thawed);
	if ((rc = st_freeze_watchdog_start(&a->wd, err)) < 0)
		goto out;
	if (pipe2(a->stop_pipe, O_CLOEXEC) < 0) {
		rc = st_err_set(err, ST_EIO, "pipe: %s", strerror(errno));
		goto out;
	}
	*out = a;
	a = NULL; /* transferred */
	rc = 0;
out:
	st_agent_free(a);
	return rc;
}

int st_agent_start(struct st_agent *a, struct st_err *err)
{
	struct st_httpd_options ho = ST_HTTPD_OPTIONS_INIT;
	int rc;

	if ((rc = usock_listen(a, err)) < 0)
		return rc;
	if (pthread_create(&a->usock_thread, NULL, usock_main, a) != 0)
		return st_err_set(err, ST_EIO, "thread: %s", strerror(errno));
	a->usock_started = true;
	if (pthread_create(&a->expiry_thread, NULL, expiry_main, a) != 0)
		return st_err_set(err, ST_EIO, "thread: %s", strerror(errno));
	a->expiry_started = true;
	if (a->opts.listen_addr == NULL)
		return 0;
	ho.addr = a->opts.listen_addr;
	ho.port = a->opts.port;
	ho.cert_file = a->opts.cert_file;
	ho.key_file = a->opts.key_file;
	ho.client_ca_file = a->opts.client_ca_file;
	ho.threads = 2;
	ho.max_body = ST_CAP_CONTROL_BODY;
	if (a->opts.client_ca_file == NULL)
		st_log_warn("no client CA configured: any client may freeze and thaw");
	return st_httpd_start(&a->httpd, &ho, https_handler, a, err);
}

uint16_t st_agent_port(const struct st_agent *a)
{
	return a->httpd != NULL ? st_httpd_port(a->httpd) : 0;
}

void st_agent_free(struct st_agent *a)
{
	if (a == NULL)
		return;
	st_httpd_stop(a->httpd);
	if (a->stop_pipe[1] >= 0)
		(void)write(a->stop_pipe[1], "x", 1);
	if (a->usock_started)
		(void)pthread_join(a->usock_thread, NULL);
	if (a->expiry_started)
		(void)pthread_join(a->expiry_thread, NULL);
	if (a->set != NULL) {
		struct st_err err = ST_ERR_INIT;

		if (st_freeze_set_thaw(a->set, a->journal, &err) < 0)
			st_log_err("shutdown: %s", st_err_text(&err));
		else
			st_log_warn("shutdown: thawed freeze %llu", (unsigned long long)a->gen);
		(void)st_freeze_watchdog_disarm(a->wd, a->gen, NULL);
		end_cycle(a);
	}
	/* Closing the pipe makes the watchdog exit (it would thaw anything still armed). */
	st_freeze_watchdog_free(a->wd);
	if (a->usock >= 0) {
		(void)close(a->usock);
		(void)unlink(a->socket_path);
	}
	for (int i = 0; i < 2; i++)
		if (a->stop_pipe[i] >= 0)
			(void)close(a->stop_pipe[i]);
	st_metrics_free(a->metrics);
	(void)pthread_mutex_destroy(&a->mu);
	free(a);
}

int st_agent_serve(const struct st_agent_options *opts, struct st_err *err)
{
	struct st_agent *a = NULL;
	sigset_t set;
	int sig = 0, rc = ST_EINTERNAL;

	(void)sigemptyset(&set);
	(void)sigaddset(&set, SIGTERM);
	(void)sigaddset(&set, SIGINT);
	(void)signal(SIGPIPE, SIG_IGN);
	(void)pthread_sigmask(SIG_BLOCK, &set, NULL);
	if ((rc = st_agent_new(&a, opts, err)) < 0 || (rc = st_agent_start(a, err)) < 0)
		goto out;
	st_log_info("stasis-agent serving: socket %s, https %s:%u, watchdog pid %d", a->socket_path,
	            opts->listen_addr != NULL ? opts->listen_addr : "off",
	            (unsigned)st_agent_port(a), (int)st_freeze_watchdog_pid(a->wd));
	while (sigwait(&set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
		;
	st_log_info("signal %d: thawing and stopping", sig);
	rc = 0;
out:
	st_agent_free(a);
	return rc;
}

/* ---- client ------------------------------------------------------------- */

int st_agent_call(int *status_out, char **body_out, const char *socket_path, const char *method,
                  const char *path, const char *body, int timeout_ms, struct st_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	struct st_buf b = ST_BUF_INIT(HDR_CAP + ST_CAP_CONTROL_BODY + (4u << 20));
	char hdr[512];
	size_t blen = body != NULL ? strlen(body) : 0, hl = 0, bl = 0;
	int fd = -1, n, rc = ST_EINTERNAL;

	*body_out = NULL;
	*status_out = 0;
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path) >=
	    (int)sizeof(sa.sun_path))
		return st_err_set(err, ST_EINVAL, "socket path too long");
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = st_err_set(err, ST_EIO, "connect to the agent at %s: %s", socket_path,
		                strerror(errno));
		goto out;
	}
	n = snprintf(hdr, sizeof(hdr),
	             "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
	             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	             method, path, blen);
	if (n >= (int)sizeof(hdr) || write_all(fd, hdr, (size_t)n) < 0 ||
	    write_all(fd, body != NULL ? body : "", blen) < 0) {
		rc = st_err_set(err, ST_EIO, "send to the agent: %s", strerror(errno));
		goto out;
	}
	if ((rc = read_message(&b, &hl, &bl, fd, b.cap)) < 0 ||
	    sscanf(st_buf_cstr(&b), "HTTP/1.%*d %d", status_out) != 1) {
		rc = st_err_set(err, rc < 0 ? rc : ST_EPROTO, "bad answer from the agent");
		goto out;
	}
	*body_out = st_xstrndup(b.ptr + hl, bl);
	rc = 0;
out:
	if (fd >= 0)
		(void)close(fd);
	st_buf_dispose(&b);
	return rc;
}
