#include "pkg/quiesce.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/curlpool.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS     3600000
#define MAX_DEADLINE_S     86400
/* Thaw retries back off from RETRY_MIN_MS, doubling up to RETRY_MAX_MS. */
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 1000
/* How long past the phase deadline a transfer may linger before it is cut off. */
#define GRACE_MS 500

enum op { OP_WARM, OP_FREEZE, OP_THAW };

static const char *const op_path[] = { "/healthz", "/v1/freeze", "/v1/thaw" };
static const char thaw_body[] = "{}";

/* One target's connection and its state in the current phase. */
struct conn {
	struct st_quiesce_target *t;
	CURL *h;
	struct curl_slist *connect_to;
	char *freeze_body;
	struct st_buf answer;
	char errbuf[CURL_ERROR_SIZE];
	char last[384];    /* why the latest attempt failed */
	int rc;            /* outcome of this phase: 0 or ST_E* */
	bool busy;         /* added to the multi handle */
	bool want;         /* to be sent (again) in this phase */
	bool unsure;       /* a freeze was sent and its outcome is unknown */
	bool was_frozen;   /* frozen when this thaw phase started */
	bool overflow;     /* the answer went over its cap */
	unsigned tries;    /* attempts in this phase */
	int64_t next_ns;   /* earliest retry (monotonic) */
	int64_t frozen_ns; /* monotonic time of the freeze acknowledgement */
};

struct st_quiesce {
	CURLM *multi;
	struct conn *c;
	size_t n;
	char *ca_file;
	char *cert_file;
	char *key_file;
	char *server_name;
	int64_t timeout_ms;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t unix_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static const char *op_name(enum op op)
{
	return op == OP_WARM ? "connect" : op == OP_FREEZE ? "freeze" : "thaw";
}

/* ---- checks ------------------------------------------------------------------------------ */

static int check_file(const char *what, const char *path, struct st_err *err)
{
	if (path == NULL || path[0] == '\0')
		return st_err_set(err, ST_EINVAL, "quiesce: tls.%s is required", what);
	if (access(path, R_OK) != 0)
		return st_err_set(err, ST_ENOTFOUND, "quiesce: tls.%s %s: %s", what, path,
		                  errno == ENOENT   ? "no such file"
		                  : errno == EACCES ? "permission denied"
		                                    : "cannot be read");
	return 0;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

static bool terminated(const char *field, size_t size)
{
	return memchr(field, '\0', size) != NULL && field[0] != '\0';
}

/* Builds the freeze request of one target into *out (malloc'd). */
static int freeze_body(char **out, const struct st_quiesce_target *t, int64_t deadline_s,
                       struct st_err *err)
{
	struct json_object *req = json_object_new_object(), *vols = NULL;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (req == NULL)
		return st_err_set(err, ST_ENOMEM, "quiesce: out of memory");
	if (t->volumes != NULL) {
		if ((rc = st_json_parse(&vols, t->volumes, strlen(t->volumes),
		                        (size_t)ST_CAP_CONTROL_BODY, "volumes", err)) < 0)
			goto out;
		if (!json_object_is_type(vols, json_type_array)) {
			rc = st_err_set(err, ST_EINVAL, "not a JSON array of volume names");
			goto out;
		}
		for (size_t i = 0; i < json_object_array_length(vols); i++) {
			struct json_object *v = json_object_array_get_idx(vols, i);

			if (!json_object_is_type(v, json_type_string) ||
			    json_object_get_string_len(v) == 0) {
				rc = st_err_set(err, ST_EINVAL, "volume %zu is not a name", i);
				goto out;
			}
		}
		json_object_object_add(req, "volumes", vols);
		vols = NULL; /* transferred */
	}
	if (deadline_s > 0)
		json_object_object_add(req, "deadlineSeconds", json_object_new_int64(deadline_s));
	*out = st_xstrdup(st_json_to_string(req, NULL));
	rc = 0;
out:
	json_object_put(vols);
	json_object_put(req);
	return rc;
}

static int check_target(const struct st_quiesce_target *t, size_t i, struct st_err *err)
{
	unsigned char a[16];

	if (!terminated(t->namespace, sizeof(t->namespace)) || !terminated(t->pod, sizeof(t->pod)))
		return st_err_set(err, ST_EINVAL,
		                  "quiesce: target %zu: namespace and pod are required", i);
	if (!terminated(t->addr, sizeof(t->addr)) ||
	    (inet_pton(AF_INET, t->addr, a) != 1 && inet_pton(AF_INET6, t->addr, a) != 1))
		return st_err_set(err, ST_EINVAL, "quiesce: %s/%s: \"%.64s\" is not an IP address",
		                  t->namespace, t->pod, t->addr);
	if (t->port == 0)
		return st_err_set(err, ST_EINVAL, "quiesce: %s/%s: the agent port is 0",
		                  t->namespace, t->pod);
	return 0;
}

static int check_options(const struct st_quiesce_options *o, size_t n, struct st_err *err)
{
	int rc;

	if (n > ST_QUIESCE_MAX_TARGETS)
		return st_err_set(err, ST_EINVAL, "quiesce: %zu pods, at most %d at once", n,
		                  ST_QUIESCE_MAX_TARGETS);
	if (o->timeout_ms < 0 || o->timeout_ms > MAX_TIMEOUT_MS)
		return st_err_set(err, ST_EINVAL, "quiesce: timeout %lld ms is not within 0..%d",
		                  (long long)o->timeout_ms, MAX_TIMEOUT_MS);
	if (o->deadline_s < 0 || o->deadline_s > MAX_DEADLINE_S)
		return st_err_set(err, ST_EINVAL, "quiesce: deadline %llds is not within 0..%d",
		                  (long long)o->deadline_s, MAX_DEADLINE_S);
	if (o->tls.server_name != NULL && !valid_name(o->tls.server_name))
		return st_err_set(err, ST_EINVAL,
		                  "quiesce: tls.server_name \"%.64s\" is not a DNS name",
		                  o->tls.server_name);
	if ((rc = check_file("ca_file", o->tls.ca_file, err)) < 0 ||
	    (rc = check_file("cert_file", o->tls.cert_file, err)) < 0 ||
	    (rc = check_file("key_file", o->tls.key_file, err)) < 0)
		return rc;
	return 0;
}

/* ---- connections ------------------------------------------------------------------------- */

static size_t on_answer(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct conn *c = userdata;
	size_t n = size * nmemb;

	if (st_buf_put(&c->answer, data, n) < 0) {
		c->overflow = true;
		return 0; /* libcurl fails the transfer with CURLE_WRITE_ERROR */
	}
	return n;
}

/* The options that stay for the session: where to connect, whom to trust, who we are. */
static int conn_setup(struct conn *c, const struct st_quiesce *q)
{
	const struct st_quiesce_target *t = c->t;
	bool v6 = strchr(t->addr, ':') != NULL;
	char pin[400];
	CURL *h;

	if ((c->h = h = curl_easy_init()) == NULL)
		return ST_ENOMEM;
	(void)snprintf(pin, sizeof(pin), "%s:%u:%s%s%s:%u", q->server_name, t->port, v6 ? "[" : "",
	               t->addr, v6 ? "]" : "", t->port);
	if ((c->connect_to = curl_slist_append(NULL, pin)) == NULL)
		return ST_ENOMEM;
	(void)curl_easy_setopt(h, CURLOPT_PRIVATE, c);
	(void)curl_easy_setopt(h, CURLOPT_CONNECT_TO, c->connect_to);
	(void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	(void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	(void)curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	(void)curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	(void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	(void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	(void)curl_easy_setopt(h, CURLOPT_CAINFO, q->ca_file);
	(void)curl_easy_setopt(h, CURLOPT_SSLCERT, q->cert_file);
	(void)curl_easy_setopt(h, CURLOPT_SSLKEY, q->key_file);
	(void)curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	(void)curl_easy_setopt(h, CURLOPT_USERAGENT, "stasis-controller");
	(void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_answer);
	(void)curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	(void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	return 0;
}

/* Starts op on c with what is left until deadline_ns. */
static int conn_start(struct st_quiesce *q, struct conn *c, enum op op, int64_t deadline_ns)
{
	int64_t left_ms = (deadline_ns - mono_ns()) / 1000000;
	char url[320];

	(void)snprintf(url, sizeof(url), "https://%s:%u%s", q->server_name, c->t->port,
	               op_path[op]);
	st_buf_clear(&c->answer);
	c->errbuf[0] = '\0';
	c->overflow = false;
	(void)curl_easy_setopt(c->h, CURLOPT_URL, url);
	if (op == OP_WARM) {
		(void)curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
	} else {
		const char *body = op == OP_FREEZE ? c->freeze_body : thaw_body;

		/* POSTFIELDS is not copied: both bodies live as long as the session. */
		(void)curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
		(void)curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	left_ms = left_ms < 1 ? 1 : left_ms;
	(void)curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, (long)left_ms);
	(void)curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS, (long)left_ms);
	if (curl_multi_add_handle(q->multi, c->h) != CURLM_OK)
		return ST_ENOMEM;
	c->busy = true;
	c->want = false;
	c->tries++;
	return 0;
}

static void conn_stop(struct st_quiesce *q, struct conn *c)
{
	if (c->busy)
		(void)curl_multi_remove_handle(q->multi, c->h);
	c->busy = false;
}

/* ---- outcomes ---------------------------------------------------------------------------- */

/* Records why the latest attempt failed; returns code. */
static int attempt_failed(struct conn *c, int code, const char *fmt, ...) ST_PRINTF(3, 4);
static int attempt_failed(struct conn *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(c->last, sizeof(c->last), fmt, ap);
	va_end(ap);
	c->rc = code;
	return code;
}

/* A transport failure (no HTTP answer) in words, naming the timeout or the cap. */
static int transport_failed(struct conn *c, CURLcode cc, int64_t timeout_ms)
{
	int code = c->overflow ? ST_ETOOBIG : st_curl_code(cc);
	const char *why = c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(cc);

	if (c->overflow)
		return attempt_failed(c, code, "the answer is larger than %u bytes",
		                      ST_CAP_CONTROL_BODY);
	if (cc == CURLE_OPERATION_TIMEDOUT)
		return attempt_failed(c, code, "no answer within %lld ms (%s)",
		                      (long long)timeout_ms, why);
	return attempt_failed(c, code, "%s", why);
}

/* Copies the printable start of s into out; control bytes become '?'. */
static void printable(char *out, size_t size, const char *s)
{
	size_t i;

	for (i = 0; i + 1 < size && s[i] != '\0'; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f)
			out[i] = s[i];
		else
			out[i] = '?';
	}
	out[i] = '\0';
}

/* An HTTP refusal: the status and the agent's "error" (or "reason") text. */
static int http_failed(struct conn *c, long status, const struct json_object *ans)
{
	const char *why = st_json_get_str(ans, "error");
	char text[256];

	if (why == NULL)
		why = st_json_get_str(ans, "reason");
	printable(text, sizeof(text), why != NULL ? why : st_buf_cstr(&c->answer));
	return attempt_failed(c, ST_EUPSTREAM, "HTTP %ld: %s", status,
	                      text[0] != '\0' ? text : "(no reason given)");
}

static void parse_answer(struct json_object **out, const struct conn *c)
{
	*out = NULL;
	if (c->answer.len > 0)
		(void)!st_json_parse(out, c->answer.ptr, c->answer.len, (size_t)ST_CAP_CONTROL_BODY,
		                     "agent answer", NULL);
}

static double json_ms(const struct json_object *o, const char *key)
{
	struct json_object *v = st_json_get(o, key);

	if (v == NULL ||
	    (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)))
		return -1;
	return json_object_get_double(v);
}

static void warm_done(struct conn *c, CURLcode cc, long status, const struct json_object *ans,
                      int64_t timeout_ms)
{
	if (cc != CURLE_OK)
		(void)transport_failed(c, cc, timeout_ms);
	else if (status != 200)
		(void)http_failed(c, status, ans);
}

static void freeze_done(struct conn *c, CURLcode cc, long status, const struct json_object *ans,
                        int64_t timeout_ms)
{
	long sent = 0;

	if (cc != CURLE_OK) {
		/* Once the request left, the agent may have frozen without our hearing it. */
		(void)curl_easy_getinfo(c->h, CURLINFO_REQUEST_SIZE, &sent);
		c->unsure = sent > 0;
		(void)transport_failed(c, cc, timeout_ms);
	} else if (status != 200) {
		(void)http_failed(c, status, ans);
	} else if (!st_json_get_bool(ans, "frozen", false)) {
		c->unsure = true;
		(void)attempt_failed(c, ST_EPROTO, "HTTP 200 without \"frozen\": true");
	} else {
		c->t->frozen = true;
		c->t->frozen_at_ms = unix_ms();
		c->frozen_ns = mono_ns();
		c->unsure = false;
	}
}

/* A thaw answer; returns true when it is final (no retry). */
static bool thaw_done(struct conn *c, CURLcode cc, long status, const struct json_object *ans,
                      int64_t timeout_ms)
{
	struct st_quiesce_target *t = c->t;

	if (cc != CURLE_OK) {
		(void)transport_failed(c, cc, timeout_ms);
		return false;
	}
	if (status != 200 && status != 409) {
		(void)http_failed(c, status, ans);
		return false;
	}
	t->frozen = false;
	c->unsure = false;
	t->thawed_at_ms = unix_ms();
	if (status == 409) {
		/* The watchdog thawed at the deadline: thawed, but the freeze did not hold. */
		(void)http_failed(c, status, ans);
	} else if (st_json_get_bool(ans, "thawed", false)) {
		t->window_ms = json_ms(ans, "windowMs");
		if (t->window_ms < 0 && c->frozen_ns > 0)
			t->window_ms = (double)(mono_ns() - c->frozen_ns) / 1e6;
		c->rc = 0;
	} else if (c->was_frozen) {
		(void)attempt_failed(c, ST_EUPSTREAM,
		                     "no longer frozen when thawed (thawed by someone else); the "
		                     "freeze may not have held");
	} else {
		c->rc = 0; /* a freeze that never took: nothing to undo */
	}
	return true;
}

/* Backoff before retry number `tries` of a thaw. */
static int64_t retry_delay_ns(unsigned tries)
{
	int64_t ms = RETRY_MIN_MS;

	while (tries-- > 1 && ms < RETRY_MAX_MS)
		ms *= 2;
	return (ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS) * 1000000LL;
}

static void conn_done(struct conn *c, enum op op, CURLcode cc, int64_t timeout_ms)
{
	struct json_object *ans = NULL;
	long status = 0;

	(void)curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
	if (cc == CURLE_OK)
		parse_answer(&ans, c);
	c->rc = 0;
	if (op == OP_WARM)
		warm_done(c, cc, status, ans, timeout_ms);
	else if (op == OP_FREEZE)
		freeze_done(c, cc, status, ans, timeout_ms);
	else if (!thaw_done(c, cc, status, ans, timeout_ms)) {
		c->want = true;
		c->next_ns = mono_ns() + retry_delay_ns(c->tries);
	}
	json_object_put(ans);
}

/* ---- phases ------------------------------------------------------------------------------ */

static void collect(struct st_quiesce *q, enum op op, int64_t timeout_ms)
{
	CURLMsg *m;
	int left = 0;

	while ((m = curl_multi_info_read(q->multi, &left)) != NULL) {
		struct conn *c;
		char *priv = NULL;
		CURLcode cc;

		if (m->msg != CURLMSG_DONE)
			continue;
		/* Read the result before the handle leaves the multi: m is invalid after. */
		cc = m->data.result;
		(void)curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		if ((c = (struct conn *)priv) == NULL)
			continue;
		conn_stop(q, c);
		conn_done(c, op, cc, timeout_ms);
	}
}

/* Gives up on a target whose phase ran out of time. */
static void give_up(struct conn *c, enum op op, int64_t timeout_ms)
{
	char last[sizeof(c->last)];

	c->want = false;
	if (c->rc == 0 || c->last[0] == '\0') {
		(void)attempt_failed(c, ST_ETIMEDOUT, "no answer within %lld ms",
		                     (long long)timeout_ms);
		return;
	}
	if (op == OP_THAW && c->tries > 1) {
		memcpy(last, c->last, sizeof(last));
		(void)attempt_failed(c, c->rc, "not confirmed within %lld ms after %u attempts: %s",
		                     (long long)timeout_ms, c->tries, last);
	}
}

/*
 * Starts what is due, and tells whether anything is still under way; *wake_ns
 * is when the next retry is due.
 */
static bool schedule(struct st_quiesce *q, enum op op, int64_t deadline_ns, int64_t timeout_ms,
                     int64_t *wake_ns)
{
	int64_t now = mono_ns();
	bool pending = false;

	*wake_ns = deadline_ns;
	for (size_t i = 0; i < q->n; i++) {
		struct conn *c = &q->c[i];

		if (c->busy) {
			pending = true;
			continue;
		}
		if (!c->want)
			continue;
		if (now >= deadline_ns) {
			give_up(c, op, timeout_ms);
		} else if (c->next_ns <= now) {
			if (conn_start(q, c, op, deadline_ns) < 0) {
				c->want = false;
				(void)attempt_failed(c, ST_ENOMEM, "out of memory");
			} else {
				pending = true;
			}
		} else {
			pending = true;
			*wake_ns = c->next_ns < *wake_ns ? c->next_ns : *wake_ns;
		}
	}
	return pending;
}

/*
 * Runs op on every connection marked `want`, all at once, until each has a
 * final outcome (c->rc) or the deadline passes. Requests that are due start
 * before the first curl_multi_perform, so they leave together.
 */
static void run_phase(struct st_quiesce *q, enum op op, int64_t timeout_ms)
{
	int64_t deadline_ns = mono_ns() + timeout_ms * 1000000LL, wake_ns;
	int running = 0;

	for (size_t i = 0; i < q->n; i++) {
		q->c[i].tries = 0;
		q->c[i].next_ns = 0;
		q->c[i].last[0] = '\0';
		q->c[i].rc = 0;
	}
	while (schedule(q, op, deadline_ns, timeout_ms, &wake_ns)) {
		int64_t now, wait_ms;

		(void)curl_multi_perform(q->multi, &running);
		collect(q, op, timeout_ms);
		now = mono_ns();
		if (now > deadline_ns + GRACE_MS * 1000000LL) {
			/* libcurl's own timeout should have ended these: never wait longer. */
			for (size_t i = 0; i < q->n; i++) {
				if (q->c[i].busy) {
					conn_stop(q, &q->c[i]);
					q->c[i].unsure = q->c[i].unsure || op == OP_FREEZE;
					(void)attempt_failed(&q->c[i], ST_ETIMEDOUT,
					                     "no answer within %lld ms",
					                     (long long)timeout_ms);
				}
				q->c[i].want = false;
			}
			break;
		}
		if (!schedule(q, op, deadline_ns, timeout_ms, &wake_ns))
			break;
		wait_ms = (wake_ns - now) / 1000000;
		wait_ms = wait_ms < 1 ? 1 : wait_ms > 1000 ? 1000 : wait_ms;
		(void)curl_multi_poll(q->multi, NULL, 0, (int)wait_ms, NULL);
	}
}

/*
 * err := "<what> failed for K of N pods[, tail]: ns/pod: reason; ...", the
 * conclusion first as the message is short. The code is `code`, or the first
 * failed pod's when code is 0.
 */
static int report(const struct st_quiesce *q, int code, const char *what, const char *tail,
                  struct st_err *err)
{
	struct st_buf b = ST_BUF_INIT((size_t)ST_ERR_MSG_SIZE * 4);
	size_t failed = 0;
	const char *sep = ": ";

	for (size_t i = 0; i < q->n; i++)
		failed += q->c[i].rc != 0;
	(void)!st_buf_printf(&b, "%s failed for %zu of %zu pods%s%s", what, failed, q->n,
	                     tail != NULL ? ", " : "", tail != NULL ? tail : "");
	for (size_t i = 0; i < q->n; i++) {
		const struct conn *c = &q->c[i];

		if (c->rc == 0)
			continue;
		if (code == 0)
			code = c->rc;
		(void)!st_buf_printf(&b, "%s%s/%s: %s", sep, c->t->namespace, c->t->pod,
		                     c->t->error);
		sep = "; ";
	}
	code = st_err_set(err, code != 0 ? code : ST_EINTERNAL, "%s", st_buf_cstr(&b));
	st_buf_dispose(&b);
	return code;
}

/* Copies each failed attempt's reason into its target's error, prefixed by the phase. */
static size_t record_errors(struct st_quiesce *q, enum op op)
{
	size_t failed = 0;

	for (size_t i = 0; i < q->n; i++) {
		struct conn *c = &q->c[i];

		if (c->rc == 0)
			continue;
		bool v6 = strchr(c->t->addr, ':') != NULL;

		failed++;
		(void)snprintf(c->t->error, sizeof(c->t->error), "%s %s%s%s:%u: %s", op_name(op),
		               v6 ? "[" : "", c->t->addr, v6 ? "]" : "", c->t->port, c->last);
	}
	return failed;
}

/* ---- public API -------------------------------------------------------------------------- */

static int session_setup(struct st_quiesce *q, struct st_quiesce_target *targets,
                         const struct st_quiesce_options *o, struct st_err *err)
{
	int rc;

	q->ca_file = st_xstrdup(o->tls.ca_file);
	q->cert_file = st_xstrdup(o->tls.cert_file);
	q->key_file = st_xstrdup(o->tls.key_file);
	q->server_name = st_xstrdup(o->tls.server_name != NULL ? o->tls.server_name
	                                                       : ST_QUIESCE_SERVER_NAME);
	q->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	if ((q->multi = curl_multi_init()) == NULL)
		return st_err_set(err, ST_ENOMEM, "quiesce: curl_multi_init failed");
	/* Keep every pod's connection from the freeze to the thaw (the default scales
	 * with the handles added at the moment, which would close some in between). */
	(void)curl_multi_setopt(q->multi, CURLMOPT_MAXCONNECTS, (long)(q->n > 0 ? q->n : 1));
	q->c = st_xcalloc(q->n > 0 ? q->n : 1, sizeof(*q->c));
	for (size_t i = 0; i < q->n; i++) {
		struct conn *c = &q->c[i];

		c->t = &targets[i];
		st_buf_init(&c->answer, (size_t)ST_CAP_CONTROL_BODY);
		if ((rc = check_target(c->t, i, err)) < 0)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (targets[j].port == c->t->port &&
			    strcmp(targets[j].addr, c->t->addr) == 0)
				return st_err_set(
				        err, ST_EINVAL,
				        "quiesce: %s/%s and %s/%s name the same agent %s:%u",
				        targets[j].namespace, targets[j].pod, c->t->namespace,
				        c->t->pod, c->t->addr, c->t->port);
		if ((rc = freeze_body(&c->freeze_body, c->t, o->deadline_s, err)) < 0) {
			st_err_prefix(err, "quiesce: %s/%s: volumes", c->t->namespace, c->t->pod);
			return rc;
		}
		if (conn_setup(c, q) < 0)
			return st_err_set(err, ST_ENOMEM, "quiesce: out of memory for %s/%s",
			                  c->t->namespace, c->t->pod);
		c->t->frozen = false;
		c->t->window_ms = -1;
	}
	return 0;
}

int st_quiesce_new(struct st_quiesce **out, struct st_quiesce_target *targets, size_t n,
                   const struct st_quiesce_options *opts, struct st_err *err)
{
	struct st_quiesce *q = NULL;
	CURLcode cc;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (opts == NULL || (n > 0 && targets == NULL))
		return st_err_set(err, ST_EINVAL, "quiesce: options and targets are required");
	if ((rc = check_options(opts, n, err)) < 0)
		return rc;
	if ((cc = st_curl_global_init()) != CURLE_OK)
		return st_err_set(err, ST_EINTERNAL, "quiesce: curl_global_init: %s",
		                  curl_easy_strerror(cc));
	q = st_xcalloc(1, sizeof(*q));
	q->n = n;
	if ((rc = session_setup(q, targets, opts, err)) < 0)
		goto out;
	*out = q;
	q = NULL; /* transferred */
	rc = 0;
out:
	st_quiesce_free(q);
	return rc;
}

/* Thaws what this session froze or may have frozen; returns how many did not confirm. */
static size_t thaw_all(struct st_quiesce *q)
{
	size_t n = 0;

	for (size_t i = 0; i < q->n; i++) {
		struct conn *c = &q->c[i];

		c->was_frozen = c->t->frozen;
		c->want = c->t->frozen || c->unsure;
		n += c->want;
	}
	if (n == 0)
		return 0;
	run_phase(q, OP_THAW, q->timeout_ms);
	n = 0;
	for (size_t i = 0; i < q->n; i++)
		n += q->c[i].rc != 0 && (q->c[i].was_frozen || q->c[i].unsure);
	return n;
}

/*
 * After a failed freeze: thaws the others, keeping the freeze errors in front.
 * Returns how many pods could not be thawed.
 */
static size_t roll_back(struct st_quiesce *q)
{
	int *freeze_rc = st_xcalloc(q->n, sizeof(int));
	size_t stuck = 0;

	for (size_t i = 0; i < q->n; i++)
		freeze_rc[i] = q->c[i].rc;
	(void)thaw_all(q);
	for (size_t i = 0; i < q->n; i++) {
		struct conn *c = &q->c[i];

		if (c->rc != 0 && (c->was_frozen || c->unsure)) {
			stuck += c->was_frozen;
			st_log_err("quiesce: %s/%s: thaw after the failed freeze: %s; its watchdog "
			           "thaws it at the deadline",
			           c->t->namespace, c->t->pod, c->last);
			if (freeze_rc[i] == 0)
				(void)snprintf(c->t->error, sizeof(c->t->error),
				               "thaw after the failed freeze of others: %s",
				               c->last);
		}
		c->rc = freeze_rc[i];
	}
	free(freeze_rc);
	return stuck;
}

int st_quiesce_freeze(struct st_quiesce *q, struct st_err *err)
{
	int64_t t0 = mono_ns(), left_ms;
	size_t stuck;
	char tail[96];

	for (size_t i = 0; i < q->n; i++)
		if (q->c[i].t->frozen || q->c[i].unsure)
			return st_err_set(err, ST_EINVAL,
			                  "quiesce: %s/%s is still frozen; thaw first",
			                  q->c[i].t->namespace, q->c[i].t->pod);
	for (size_t i = 0; i < q->n; i++) {
		struct st_quiesce_target *t = q->c[i].t;

		t->frozen_at_ms = t->thawed_at_ms = 0;
		t->window_ms = -1;
		t->error[0] = '\0';
		q->c[i].want = true;
	}
	/* Handshakes first: nothing is frozen unless every agent answers the controller. */
	run_phase(q, OP_WARM, q->timeout_ms);
	if (record_errors(q, OP_WARM) > 0)
		return report(q, 0, "quiesce: connect", "nothing was frozen", err);
	for (size_t i = 0; i < q->n; i++)
		q->c[i].want = true;
	left_ms = q->timeout_ms - (mono_ns() - t0) / 1000000;
	run_phase(q, OP_FREEZE, left_ms > 0 ? left_ms : 1);
	if (record_errors(q, OP_FREEZE) == 0) {
		st_log_debug("quiesce: %zu pods frozen in %.3f ms", q->n,
		             (double)(mono_ns() - t0) / 1e6);
		return 0;
	}
	if ((stuck = roll_back(q)) == 0)
		return report(q, 0, "quiesce: freeze", "the pods it froze were thawed", err);
	(void)snprintf(tail, sizeof(tail),
	               "%zu frozen pods did not confirm the thaw (their watchdogs thaw them)",
	               stuck);
	return report(q, 0, "quiesce: freeze", tail, err);
}

int st_quiesce_thaw(struct st_quiesce *q, struct st_err *err)
{
	if (thaw_all(q) == 0)
		return 0;
	(void)record_errors(q, OP_THAW);
	return report(q, ST_EIO, "quiesce: thaw", NULL, err);
}

void st_quiesce_free(struct st_quiesce *q)
{
	if (q == NULL)
		return;
	if (q->multi != NULL && q->c != NULL) {
		bool any = false;

		for (size_t i = 0; i < q->n; i++)
			any = any || (q->c[i].h != NULL && (q->c[i].t->frozen || q->c[i].unsure));
		if (any && thaw_all(q) > 0) {
			for (size_t i = 0; i < q->n; i++)
				if (q->c[i].rc != 0)
					st_log_err(
					        "quiesce: %s/%s: thaw on close: %s; its watchdog "
					        "thaws it at the deadline",
					        q->c[i].t->namespace, q->c[i].t->pod, q->c[i].last);
		}
	}
	for (size_t i = 0; q->c != NULL && i < q->n; i++) {
		struct conn *c = &q->c[i];

		if (c->h != NULL) {
			conn_stop(q, c);
			curl_easy_cleanup(c->h);
		}
		curl_slist_free_all(c->connect_to);
		free(c->freeze_body);
		st_buf_dispose(&c->answer);
	}
	if (q->multi != NULL)
		(void)curl_multi_cleanup(q->multi);
	free(q->c);
	free(q->ca_file);
	free(q->cert_file);
	free(q->key_file);
	free(q->server_name);
	free(q);
}
