/*
 * Kubernetes client: the client object, one HTTP exchange over libcurl, the
 * retry loop and rate limiter around it, Status decoding, paths and the REST
 * verbs. Discovery lives in kube_discovery.c, lists and watches in
 * kube_watch.c, configuration in kube_config.c.
 */
#include "pkg/kube.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pkg/kube_int.h"
#include "pkg/util/caps.h"
#include "pkg/util/curlpool.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

/* Bound service-account tokens rotate; re-read the file this often (client-go: 1 min). */
#define TOKEN_REREAD_US (60ull * 1000000ull)
#define BACKOFF_MAX_MS  5000u
#define RETRY_AFTER_MAX 60u

uint64_t st_kube__now_us(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- rate limiter ----------------------------------------------------------------------- */

void st_kube__limiter_init(struct st_kube__limiter *l, double qps, unsigned burst, uint64_t now_us)
{
	l->qps = qps > 0 ? qps : 50;
	l->burst = burst > 0 ? burst : 100;
	l->tokens = l->burst;
	l->last_us = now_us;
}

uint64_t st_kube__limiter_reserve(struct st_kube__limiter *l, uint64_t now_us)
{
	if (now_us > l->last_us) {
		l->tokens += (double)(now_us - l->last_us) / 1e6 * l->qps;
		if (l->tokens > l->burst)
			l->tokens = l->burst;
		l->last_us = now_us;
	}
	l->tokens -= 1.0;
	if (l->tokens >= 0)
		return 0;
	return (uint64_t)(-l->tokens / l->qps * 1e6);
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void throttle(struct st_kube_client *c)
{
	uint64_t wait;

	(void)pthread_mutex_lock(&c->lock);
	wait = st_kube__limiter_reserve(&c->lim, st_kube__now_us());
	(void)pthread_mutex_unlock(&c->lock);
	if (wait > 0) {
		atomic_fetch_add(&c->throttled_ms, wait / 1000u);
		sleep_us(wait);
	}
}

/* ---- client ----------------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? st_xstrdup(s) : NULL;
}

static char *memdup_or_null(const char *p, size_t n)
{
	char *r;

	if (p == NULL)
		return NULL;
	r = st_xmalloc(n + 1);
	memcpy(r, p, n);
	r[n] = '\0';
	return r;
}

static void config_copy(struct st_kube_config *dst, const struct st_kube_config *src)
{
	st_kube_config_init(dst);
	dst->server = dup_or_null(src->server);
	dst->context = dup_or_null(src->context);
	dst->cluster = dup_or_null(src->cluster);
	dst->user = dup_or_null(src->user);
	dst->namespace = st_xstrdup(src->namespace ? src->namespace : "default");
	dst->source = dup_or_null(src->source);
	dst->ca = memdup_or_null(src->ca, src->ca_len);
	dst->ca_len = src->ca_len;
	dst->cert = memdup_or_null(src->cert, src->cert_len);
	dst->cert_len = src->cert_len;
	dst->key = memdup_or_null(src->key, src->key_len);
	dst->key_len = src->key_len;
	dst->token = dup_or_null(src->token);
	dst->token_file = dup_or_null(src->token_file);
	dst->insecure = src->insecure;
}

int st_kube_client_new(struct st_kube_client **out, const struct st_kube_config *cfg,
                       const struct st_kube_client_options *opts, struct st_err *err)
{
	struct st_kube_client_options dflt = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_kube_client *c = NULL;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (opts == NULL)
		opts = &dflt;
	if (st_curl_global_init() != CURLE_OK) {
		rc = st_err_set(err, ST_EINTERNAL, "kube: libcurl initialisation failed");
		goto out;
	}
	if (cfg->server == NULL ||
	    (strncmp(cfg->server, "https://", 8) != 0 && strncmp(cfg->server, "http://", 7) != 0)) {
		rc = st_err_set(err, ST_EINVAL,
		                "kube: the configuration has no http(s) server URL");
		goto out;
	}
	c = st_xcalloc(1, sizeof(*c));
	(void)pthread_mutex_init(&c->lock, NULL);
	st_curl_pool_init(&c->pool);
	(void)pthread_mutex_init(&c->disc_lock, NULL);
	config_copy(&c->cfg, cfg);
	c->max_retries = opts->max_retries ? opts->max_retries : 5;
	c->backoff_ms = opts->backoff_ms ? opts->backoff_ms : 100;
	c->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : 10000;
	c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 60000;
	st_kube__limiter_init(&c->lim, opts->qps, opts->burst, st_kube__now_us());
	c->token_read_us = st_kube__now_us();
	*out = c;
	c = NULL; /* transferred */
	rc = 0;
out:
	st_kube_client_free(c);
	return rc;
}

void st_kube_client_free(struct st_kube_client *c)
{
	if (c == NULL)
		return;
	/* Handles reference the key blobs (CURL_BLOB_NOCOPY): clean them up first. */
	st_curl_pool_dispose(&c->pool);
	st_kube__disc_free(c->disc);
	st_kube_config_dispose(&c->cfg);
	(void)pthread_mutex_destroy(&c->lock);
	(void)pthread_mutex_destroy(&c->disc_lock);
	free(c);
}

const struct st_kube_config *st_kube_client_config(const struct st_kube_client *c)
{
	return &c->cfg;
}

void st_kube_client_stats(struct st_kube_stats *out, struct st_kube_client *c)
{
	size_t i;

	for (i = 0; i < ST_KUBE_VERB_COUNT; i++)
		out->requests[i] = atomic_load(&c->count[i]);
	out->retries = atomic_load(&c->retries);
	out->throttled_ms = atomic_load(&c->throttled_ms);
}

const char *st_kube_verb_name(enum st_kube_verb v)
{
	static const char *const names[ST_KUBE_VERB_COUNT] = {
		"get", "list", "watch", "create", "update", "patch", "delete", "discovery",
	};

	return (unsigned)v < ST_KUBE_VERB_COUNT ? names[v] : "?";
}

/*
 * "Authorization: Bearer ..." built under the lock, re-reading a token file
 * when the copy is old. Returns a heap string the caller wipes, or NULL.
 */
static char *auth_header(struct st_kube_client *c)
{
	char *hdr = NULL;
	size_t n;

	(void)pthread_mutex_lock(&c->lock);
	if (c->cfg.token_file != NULL && st_kube__now_us() - c->token_read_us > TOKEN_REREAD_US) {
		char *raw = NULL;
		size_t len = 0;

		c->token_read_us = st_kube__now_us();
		if (st_kube__read_file(&raw, &len, c->cfg.token_file, ST_KUBE_CAP_FILE, NULL) ==
		    0) {
			while (len > 0 && (raw[len - 1] == '\n' || raw[len - 1] == '\r'))
				raw[--len] = '\0';
			if (len > 0) {
				if (c->cfg.token != NULL)
					st_freezero(c->cfg.token, strlen(c->cfg.token));
				c->cfg.token = st_xstrdup(raw);
			}
			st_freezero(raw, len + 1);
		}
	}
	if (c->cfg.token != NULL) {
		n = strlen(c->cfg.token) + sizeof("Authorization: Bearer ");
		hdr = st_xmalloc(n);
		(void)snprintf(hdr, n, "Authorization: Bearer %s", c->cfg.token);
	}
	(void)pthread_mutex_unlock(&c->lock);
	return hdr;
}

/* ---- one exchange ----------------------------------------------------------------------- */

struct xfer {
	CURL *h;
	const struct st_kube__req *req;
	struct st_kube__resp *resp;
	bool status_known;
	bool too_big;
};

static bool success(long http)
{
	return http >= 200 && http < 300;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	int rc;

	if (!x->status_known) {
		(void)curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->resp->http);
		x->status_known = true;
	}
	if (success(x->resp->http) && x->req->stream != NULL) {
		if ((rc = x->req->stream(p, n, x->req->stream_payload)) < 0) {
			x->resp->stream_rc = rc;
			return 0;
		}
		return n;
	}
	if (st_buf_put(&x->resp->body, p, n) < 0) {
		x->too_big = true;
		return 0;
	}
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
		char tmp[32];
		size_t k = n - (sizeof(name) - 1);
		char *end = NULL;
		long v;

		if (k >= sizeof(tmp))
			k = sizeof(tmp) - 1;
		memcpy(tmp, p + sizeof(name) - 1, k);
		tmp[k] = '\0';
		errno = 0;
		v = strtol(tmp, &end, 10);
		/* Only delta-seconds; an HTTP-date falls back to our own backoff. */
		if (errno == 0 && end != tmp && v >= 0)
			x->resp->retry_after_s =
			        v > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (unsigned)v;
	}
	return n;
}

static bool stop_requested(const struct st_kube__req *r)
{
	if (r->cancel != NULL && atomic_load(r->cancel))
		return true;
	return r->deadline_us != 0 && st_kube__now_us() >= r->deadline_us;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct xfer *x = ud;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	if (stop_requested(x->req)) {
		x->resp->cancelled = true;
		return 1;
	}
	return 0;
}

static void set_tls(CURL *h, const struct st_kube_client *c)
{
	/* NOCOPY: the blobs stay in c->cfg, which outlives every handle and is wiped on free. */
	struct curl_blob ca = { c->cfg.ca, c->cfg.ca_len, CURL_BLOB_NOCOPY };
	struct curl_blob cert = { c->cfg.cert, c->cfg.cert_len, CURL_BLOB_NOCOPY };
	struct curl_blob key = { c->cfg.key, c->cfg.key_len, CURL_BLOB_NOCOPY };

	(void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->cfg.insecure ? 0L : 1L);
	(void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->cfg.insecure ? 0L : 2L);
	if (c->cfg.ca != NULL)
		(void)curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
	if (c->cfg.cert != NULL && c->cfg.key != NULL) {
		(void)curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
		(void)curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
		(void)curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
		(void)curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	}
}

static void wipe_headers(struct curl_slist *l)
{
	for (; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
}

/* Header list for one request; *oom is set when libcurl could not allocate. */
static struct curl_slist *build_headers(const struct st_kube__req *r, const char *auth, bool *oom)
{
	char ctype[128];
	const char *lines[] = { "Accept: application/json", "Expect:", auth,
		                r->ctype ? ctype : NULL };
	struct curl_slist *hl = NULL, *t;
	size_t i;

	(void)snprintf(ctype, sizeof(ctype), "Content-Type: %s", r->ctype ? r->ctype : "");
	*oom = false;
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (lines[i] == NULL)
			continue;
		t = curl_slist_append(hl, lines[i]);
		*oom |= t == NULL;
		hl = t ? t : hl;
	}
	return hl;
}

static void set_options(struct xfer *x, const struct st_kube_client *c, const char *url,
                        struct curl_slist *hl, char *errbuf)
{
	const struct st_kube__req *r = x->req;
	CURL *h = x->h;

	errbuf[0] = '\0';
	(void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	(void)curl_easy_setopt(h, CURLOPT_URL, url);
	(void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	(void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	(void)curl_easy_setopt(h, CURLOPT_USERAGENT, "stasis");
	(void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	(void)curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
	(void)curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	if (r->timeout_ms != 0)
		(void)curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
	else if (r->stream == NULL)
		(void)curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
	(void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	(void)curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	(void)curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	(void)curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	/* The progress callback is how a cancel flag or deadline ends a transfer. */
	(void)curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	(void)curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	(void)curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	(void)curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	if (r->ctype != NULL) {
		(void)curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		(void)curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? r->body : "");
	}
	set_tls(h, c);
}

static CURLcode perform_once(struct st_kube_client *c, const struct st_kube__req *r,
                             struct st_kube__resp *resp, char *errbuf)
{
	struct xfer x = { NULL, r, resp, false, false };
	struct curl_slist *hl = NULL;
	struct st_buf url = ST_BUF_INIT(64 * 1024);
	char *auth = NULL;
	CURLcode cc = CURLE_OUT_OF_MEMORY;
	bool oom = false;

	resp->http = 0;
	resp->retry_after_s = 0;
	resp->cancelled = false;
	st_buf_clear(&resp->body);
	if (st_buf_printf(&url, "%s%s%s%s", c->cfg.server, r->path, r->query ? "?" : "",
	                  r->query ? r->query : "") < 0) {
		cc = CURLE_URL_MALFORMAT;
		goto out;
	}
	x.h = st_curl_pool_take(&c->pool);
	if (x.h == NULL)
		goto out;
	auth = auth_header(c);
	hl = build_headers(r, auth, &oom);
	if (oom)
		goto out;
	set_options(&x, c, st_buf_cstr(&url), hl, errbuf);
	cc = curl_easy_perform(x.h);
	(void)curl_easy_getinfo(x.h, CURLINFO_RESPONSE_CODE, &resp->http);
	if (x.too_big)
		cc = CURLE_FILESIZE_EXCEEDED;
	/*
	 * A pooled handle must not keep pointers into this frame; reset keeps its
	 * connections and TLS sessions, which is what the pool is for.
	 */
	curl_easy_reset(x.h);
out:
	st_curl_pool_give(&c->pool, x.h);
	wipe_headers(hl);
	curl_slist_free_all(hl);
	if (auth != NULL)
		st_freezero(auth, strlen(auth));
	st_buf_dispose(&url);
	return cc;
}

/* ---- errors ----------------------------------------------------------------------------- */

static const char *ctx_name(const struct st_kube_config *cfg)
{
	return cfg && cfg->context ? cfg->context : "?";
}

/* A transport failure as a sentence with a hint for the usual cause. */
static int curl_error(struct st_err *err, const struct st_kube_config *cfg, CURLcode cc,
                      const char *detail)
{
	const char *server = cfg && cfg->server ? cfg->server : "?";
	const char *src = cfg && cfg->source ? cfg->source : "the kubeconfig";
	const char *d = detail && detail[0] ? detail : curl_easy_strerror(cc);

	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return st_err_set(
		        err, ST_EIO,
		        "cannot connect to the Kubernetes API server at %s (context \"%s\"): "
		        "%s; is the cluster running and is the server URL in %s right?",
		        server, ctx_name(cfg), d, src);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
		return st_err_set(
		        err, ST_ETLS,
		        "TLS with the API server at %s failed (context \"%s\"): %s; check "
		        "certificate-authority and the client certificate in %s",
		        server, ctx_name(cfg), d, src);
	case CURLE_OPERATION_TIMEDOUT:
		return st_err_set(err, ST_ETIMEDOUT,
		                  "the API server at %s did not answer in time: %s", server, d);
	case CURLE_FILESIZE_EXCEEDED:
		return st_err_set(err, ST_ETOOBIG, "response from %s is larger than %u bytes",
		                  server, ST_KUBE_CAP_BODY);
	default:
		return st_err_set(err, ST_EIO, "request to the API server at %s failed: %s", server,
		                  d);
	}
}

/* Printable, single-line excerpt of a non-JSON error body. */
static void excerpt(char *buf, size_t size, const char *body, size_t len)
{
	size_t i, n = 0;

	for (i = 0; i < len && n + 1 < size && n < 160; i++)
		buf[n++] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : ' ';
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
}

/* What a failed response says, with the request's names for the message. */
struct status_text {
	const char *msg;    /* Status.message, or an excerpt of the body */
	const char *reason; /* Status.reason or "" */
	const char *dname;  /* Status.details.name or NULL */
	bool is_status;
	char obj[200];   /* `deployments.apps "web"` */
	char where[160]; /* ` in namespace "test"` or "" */
	char text[200];
};

static void status_text_init(struct status_text *t, struct json_object *st,
                             const struct st_kube__req *req, const char *body, size_t len)
{
	const char *rn = req->resname ? req->resname : req->path;

	t->is_status = st != NULL && json_object_is_type(st, json_type_object) &&
	               st_json_get_str(st, "kind") != NULL &&
	               strcmp(st_json_get_str(st, "kind"), "Status") == 0;
	t->msg = t->is_status ? st_json_get_str(st, "message") : NULL;
	t->reason =
	        t->is_status && st_json_get_str(st, "reason") ? st_json_get_str(st, "reason") : "";
	t->dname = t->is_status ? st_json_get_str(st_json_get_obj(st, "details"), "name") : NULL;
	if (t->msg == NULL || t->msg[0] == '\0') {
		excerpt(t->text, sizeof(t->text), body, len);
		t->msg = t->text[0] ? t->text : "no details";
	}
	if (req->name != NULL && req->name[0] != '\0')
		(void)snprintf(t->obj, sizeof(t->obj), "%s \"%s\"", rn, req->name);
	else
		(void)snprintf(t->obj, sizeof(t->obj), "%s", rn);
	t->where[0] = '\0';
	if (req->ns != NULL && req->ns[0] != '\0')
		(void)snprintf(t->where, sizeof(t->where), " in namespace \"%s\"", req->ns);
}

/*
 * A 404 is about the object asked for only when the Status names it (or names
 * nothing and is not the "no such resource type" answer); a missing namespace
 * or an unserved resource type are said as such.
 */
static int not_found(struct st_err *err, const struct st_kube__req *req,
                     const struct status_text *t)
{
	bool named = req->name != NULL && req->name[0] != '\0';

	if (t->is_status && named &&
	    (t->dname ? strcmp(t->dname, req->name) == 0
	              : strstr(t->msg, "could not find the requested resource") == NULL))
		return st_err_set(err, ST_ENOTFOUND, "%s not found%s", t->obj, t->where);
	return st_err_set(err, ST_ENOTFOUND, "%s %s%s: %s", req->method, t->obj, t->where, t->msg);
}

static int auth_error(struct st_err *err, const struct st_kube_config *cfg, long http,
                      const struct status_text *t)
{
	const char *user = cfg && cfg->user ? cfg->user : "";

	if (http == 401)
		return st_err_set(
		        err, ST_EUPSTREAM,
		        "unauthorized: the API server at %s rejected the credentials of "
		        "user \"%s\" (context \"%s\" in %s); the token or client certificate "
		        "is wrong or has expired",
		        cfg && cfg->server ? cfg->server : "?", user, ctx_name(cfg),
		        cfg && cfg->source ? cfg->source : "the kubeconfig");
	/* The API server's text names the authenticated user; add ours when it does not. */
	if (strstr(t->msg, "User \"") != NULL || strstr(t->msg, "user \"") != NULL)
		return st_err_set(err, ST_EUPSTREAM, "forbidden: %s", t->msg);
	return st_err_set(err, ST_EUPSTREAM, "forbidden: %s (as user \"%s\" of context \"%s\")",
	                  t->msg, user, ctx_name(cfg));
}

int st_kube__status_error(struct st_err *err, const struct st_kube_config *cfg,
                          const struct st_kube__req *req, long http, const char *body, size_t len)
{
	struct json_object *st = NULL;
	struct status_text t;
	int rc;

	if (st_json_parse(&st, body, len, ST_KUBE_CAP_BODY, "Status", NULL) < 0)
		st = NULL;
	status_text_init(&t, st, req, body, len);
	if (http == 404)
		rc = not_found(err, req, &t);
	else if (http == 401 || http == 403)
		rc = auth_error(err, cfg, http, &t);
	else if (http == 409 && strcmp(t.reason, "AlreadyExists") == 0)
		rc = st_err_set(err, ST_EUPSTREAM, "%s already exists%s", t.obj, t.where);
	else if (http == 409)
		rc = st_err_set(err, ST_EUPSTREAM, "conflict on %s%s: %s", t.obj, t.where, t.msg);
	else if (http == 400 || http == 422)
		rc = st_err_set(err, ST_EINVAL, "invalid %s%s: %s", t.obj, t.where, t.msg);
	else if (http == 410)
		rc = st_err_set(err, ST_EUPSTREAM, "%s%s: gone (%s)", t.obj, t.where, t.msg);
	else if (http == 429)
		rc = st_err_set(err, ST_EUPSTREAM, "the API server is throttling requests: %s",
		                t.msg);
	else
		rc = st_err_set(err, ST_EUPSTREAM, "%s %s%s: HTTP %ld from the API server: %s",
		                req->method, t.obj, t.where, http, t.msg);
	json_object_put(st);
	return rc;
}

/* ---- retry loop ------------------------------------------------------------------------- */

/*
 * Whether an attempt may be repeated. A 429 or a refused connection means the
 * server did nothing, so any verb may retry; other failures only for GET.
 */
static bool may_retry(const struct st_kube__req *r, CURLcode cc, long http)
{
	bool idempotent = strcmp(r->method, "GET") == 0;

	if (r->no_retry)
		return false;
	if (cc != CURLE_OK)
		return cc == CURLE_COULDNT_CONNECT || (idempotent && st_curl_retryable(cc));
	if (http == 429)
		return true;
	return idempotent && (http == 500 || http == 502 || http == 503 || http == 504);
}

static uint64_t backoff_us(const struct st_kube_client *c, unsigned attempt, unsigned retry_after)
{
	uint64_t ms = c->backoff_ms;
	unsigned i;

	for (i = 0; i < attempt && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	/*
	 * Half fixed, half jitter, so that clients restarted together spread out.
	 * The clock's low bits are random enough for that and need no shared state.
	 */
	ms = ms / 2 + (st_kube__now_us() * 0x9e3779b97f4a7c15ull >> 40) % (ms / 2 + 1);
	if (retry_after > 0 && (uint64_t)retry_after * 1000u > ms)
		ms = (uint64_t)retry_after * 1000u;
	return ms * 1000u;
}

int st_kube__do(struct st_kube_client *c, const struct st_kube__req *req,
                struct st_kube__resp *resp, struct st_err *err)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode cc = CURLE_OK;
	unsigned attempt;

	for (attempt = 0;; attempt++) {
		throttle(c);
		atomic_fetch_add(&c->count[req->verb], 1);
		if (attempt > 0)
			atomic_fetch_add(&c->retries, 1);
		cc = perform_once(c, req, resp, errbuf);
		if (resp->cancelled)
			return 0;
		if (resp->stream_rc < 0)
			return resp->stream_rc;
		if (cc == CURLE_OK && success(resp->http))
			return 0;
		if (attempt >= c->max_retries || !may_retry(req, cc, resp->http) ||
		    stop_requested(req))
			break;
		st_log_debug("kube: %s %s: %s, retrying", req->method, req->path,
		             cc != CURLE_OK ? curl_easy_strerror(cc) : "server error");
		sleep_us(backoff_us(c, attempt, resp->retry_after_s));
	}
	if (cc != CURLE_OK)
		return curl_error(err, &c->cfg, cc, errbuf);
	return st_kube__status_error(err, &c->cfg, req, resp->http, st_buf_cstr(&resp->body),
	                             resp->body.len);
}

int st_kube__call(struct json_object **out, struct st_kube_client *c,
                  const struct st_kube__req *req, long *http_out, struct st_err *err)
{
	struct st_kube__resp resp = { 0, ST_BUF_INIT(ST_KUBE_CAP_BODY), 0, false, 0 };
	struct json_object *obj = NULL;
	int rc = ST_EINTERNAL;

	if (out != NULL)
		*out = NULL;
	if (http_out != NULL)
		*http_out = 0;
	rc = st_kube__do(c, req, &resp, err);
	if (http_out != NULL)
		*http_out = resp.http;
	if (rc < 0)
		goto out;
	if (out != NULL && resp.body.len > 0) {
		if ((rc = st_json_parse(&obj, resp.body.ptr, resp.body.len, ST_KUBE_CAP_BODY,
		                        "API response", err)) < 0) {
			st_err_prefix(err, "%s %s", req->method, req->path);
			goto out;
		}
		*out = obj;
		obj = NULL; /* transferred */
	}
	rc = 0;
out:
	json_object_put(obj);
	st_buf_dispose(&resp.body);
	return rc;
}

int st_kube_request(struct json_object **out, struct st_kube_client *c, const char *method,
                    const char *path, const char *query, const char *content_type, const char *body,
                    size_t body_len, long *http_out, struct st_err *err)
{
	struct st_kube__req r = { 0 };

	r.verb = strcmp(method, "GET") == 0      ? ST_KUBE_VERB_GET
	         : strcmp(method, "POST") == 0   ? ST_KUBE_VERB_CREATE
	         : strcmp(method, "PUT") == 0    ? ST_KUBE_VERB_UPDATE
	         : strcmp(method, "PATCH") == 0  ? ST_KUBE_VERB_PATCH
	         : strcmp(method, "DELETE") == 0 ? ST_KUBE_VERB_DELETE
	                                         : ST_KUBE_VERB_GET;
	r.method = method;
	r.path = path;
	r.query = query;
	r.ctype = content_type;
	r.body = body;
	r.body_len = body_len;
	return st_kube__call(out, c, &r, http_out, err);
}

/* ---- paths and queries ------------------------------------------------------------------ */

static bool unreserved(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

static int put_escaped(struct st_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	for (; *s != '\0' && rc == 0; s++) {
		unsigned char ch = (unsigned char)*s;

		if (unreserved(ch))
			rc = st_buf_putc(b, (char)ch);
		else if ((rc = st_buf_putc(b, '%')) == 0 &&
		         (rc = st_buf_putc(b, hex[ch >> 4])) == 0)
			rc = st_buf_putc(b, hex[ch & 15]);
	}
	return rc;
}

int st_kube__query_add(struct st_buf *q, const char *key, const char *value)
{
	int rc;

	if (q->len > 0 && (rc = st_buf_putc(q, '&')) < 0)
		return rc;
	if ((rc = put_escaped(q, key)) < 0 || (rc = st_buf_putc(q, '=')) < 0)
		return rc;
	return put_escaped(q, value);
}

static bool bad_segment(const char *s)
{
	return strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strchr(s, '/') != NULL;
}

int st_kube_path(char *buf, size_t size, const struct st_kube_gvr *gvr, const char *ns,
                 const char *name, const char *subresource)
{
	struct st_buf b = ST_BUF_INIT(size > 0 ? size - 1 : 0);
	int rc = ST_EINTERNAL;

	if (size > 0)
		buf[0] = '\0';
	if ((ns && bad_segment(ns)) || (name && bad_segment(name)) ||
	    (subresource && bad_segment(subresource)) || (name && name[0] == '\0') ||
	    gvr->resource[0] == '\0' || gvr->version[0] == '\0') {
		rc = ST_EINVAL;
		goto out;
	}
	if (gvr->group[0] == '\0')
		rc = st_buf_puts(&b, "/api/");
	else if ((rc = st_buf_puts(&b, "/apis/")) == 0 && (rc = put_escaped(&b, gvr->group)) == 0)
		rc = st_buf_putc(&b, '/');
	if (rc == 0)
		rc = put_escaped(&b, gvr->version);
	if (rc == 0 && gvr->namespaced && ns != NULL && ns[0] != '\0' &&
	    (rc = st_buf_puts(&b, "/namespaces/")) == 0)
		rc = put_escaped(&b, ns);
	if (rc == 0 && (rc = st_buf_putc(&b, '/')) == 0)
		rc = put_escaped(&b, gvr->resource);
	if (rc == 0 && name != NULL && (rc = st_buf_putc(&b, '/')) == 0)
		rc = put_escaped(&b, name);
	if (rc == 0 && subresource != NULL && (rc = st_buf_putc(&b, '/')) == 0)
		rc = put_escaped(&b, subresource);
	if (rc < 0)
		goto out;
	memcpy(buf, b.ptr, b.len + 1);
	rc = 0;
out:
	st_buf_dispose(&b);
	return rc;
}

static int copy_part(char *dst, size_t size, const char *src)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= size)
		return ST_EINVAL;
	memcpy(dst, src ? src : "", n + 1);
	return 0;
}

int st_kube_gvr_set(struct st_kube_gvr *gvr, const char *group, const char *version,
                    const char *resource, const char *kind, bool namespaced)
{
	memset(gvr, 0, sizeof(*gvr));
	if (version == NULL || version[0] == '\0' || resource == NULL || resource[0] == '\0')
		return ST_EINVAL;
	if (copy_part(gvr->group, sizeof(gvr->group), group) < 0 ||
	    copy_part(gvr->version, sizeof(gvr->version), version) < 0 ||
	    copy_part(gvr->resource, sizeof(gvr->resource), resource) < 0 ||
	    copy_part(gvr->kind, sizeof(gvr->kind), kind) < 0)
		return ST_EINVAL;
	gvr->namespaced = namespaced;
	return 0;
}

void st_kube_gvr_name(char *buf, size_t size, const struct st_kube_gvr *gvr)
{
	(void)snprintf(buf, size, "%s%s%s", gvr->resource, gvr->group[0] ? "." : "", gvr->group);
}

/* ---- verbs ------------------------------------------------------------------------------ */

/* The namespace a single-object verb acts in. */
static const char *pick_ns(const struct st_kube_client *c, const struct st_kube_gvr *gvr,
                           const char *ns, struct json_object *obj)
{
	const char *ons;

	if (!gvr->namespaced)
		return NULL;
	if (ns != NULL && ns[0] != '\0')
		return ns;
	ons = st_json_get_str(st_json_get_obj(obj, "metadata"), "namespace");
	return ons && ons[0] ? ons : c->cfg.namespace;
}

/* Shared body of the single-object verbs. */
static int object_call(struct json_object **out, struct st_kube_client *c, struct st_kube__req *r,
                       const struct st_kube_gvr *gvr, const char *ns, const char *name,
                       const char *sub, long *http_out, struct st_err *err)
{
	char path[1024], rn[400];
	int rc;

	if (out != NULL)
		*out = NULL;
	if (http_out != NULL)
		*http_out = 0;
	st_kube_gvr_name(rn, sizeof(rn), gvr);
	if ((rc = st_kube_path(path, sizeof(path), gvr, ns, name, sub)) < 0)
		return st_err_set(err, rc, "cannot %s %s \"%s\": invalid name or namespace",
		                  r->method, rn, name ? name : "");
	r->path = path;
	r->resname = rn;
	r->ns = ns;
	if (r->name == NULL)
		r->name = name;
	rc = st_kube__call(out, c, r, http_out, err);
	/* r belongs to the caller; leave no pointers into this frame behind. */
	r->path = NULL;
	r->resname = NULL;
	return rc;
}

int st_kube_get(struct json_object **out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                const char *ns, const char *name, long *http_out, struct st_err *err)
{
	struct st_kube__req r = { .verb = ST_KUBE_VERB_GET, .method = "GET" };

	return object_call(out, c, &r, gvr, pick_ns(c, gvr, ns, NULL), name, NULL, http_out, err);
}

static int body_call(struct json_object **out, struct st_kube_client *c, struct st_kube__req *r,
                     const struct st_kube_gvr *gvr, const char *ns, struct json_object *obj,
                     bool by_name, const char *sub, long *http_out, struct st_err *err)
{
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	size_t len = 0;

	if (out != NULL)
		*out = NULL;
	if (http_out != NULL)
		*http_out = 0;
	if (by_name && (name == NULL || name[0] == '\0'))
		return st_err_set(err, ST_EINVAL, "cannot %s %s: the object has no metadata.name",
		                  r->method, gvr->resource);
	r->body = st_json_to_string(obj, &len);
	r->body_len = len;
	r->ctype = "application/json";
	/* A create names the object only in messages (it may also be generateName'd). */
	r->name = name;
	return object_call(out, c, r, gvr, pick_ns(c, gvr, ns, obj), by_name ? name : NULL, sub,
	                   http_out, err);
}

int st_kube_create(struct json_object **out, struct st_kube_client *c,
                   const struct st_kube_gvr *gvr, const char *ns, struct json_object *obj,
                   long *http_out, struct st_err *err)
{
	struct st_kube__req r = { .verb = ST_KUBE_VERB_CREATE, .method = "POST" };

	return body_call(out, c, &r, gvr, ns, obj, false, NULL, http_out, err);
}

int st_kube_update(struct json_object **out, struct st_kube_client *c,
                   const struct st_kube_gvr *gvr, const char *ns, struct json_object *obj,
                   long *http_out, struct st_err *err)
{
	struct st_kube__req r = { .verb = ST_KUBE_VERB_UPDATE, .method = "PUT" };

	return body_call(out, c, &r, gvr, ns, obj, true, NULL, http_out, err);
}

int st_kube_update_status(struct json_object **out, struct st_kube_client *c,
                          const struct st_kube_gvr *gvr, const char *ns, struct json_object *obj,
                          long *http_out, struct st_err *err)
{
	struct st_kube__req r = { .verb = ST_KUBE_VERB_UPDATE, .method = "PUT" };

	return body_call(out, c, &r, gvr, ns, obj, true, "status", http_out, err);
}

int st_kube_patch(struct json_object **out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                  const char *ns, const char *name, const char *subresource,
                  enum st_kube_patch_type type, const char *patch, size_t patch_len, long *http_out,
                  struct st_err *err)
{
	static const char *const ctypes[] = {
		"application/merge-patch+json",
		"application/json-patch+json",
		"application/strategic-merge-patch+json",
	};
	struct st_kube__req r = { .verb = ST_KUBE_VERB_PATCH, .method = "PATCH" };

	if ((unsigned)type >= sizeof(ctypes) / sizeof(ctypes[0]))
		return st_err_set(err, ST_EINVAL, "unknown patch type %d", (int)type);
	r.ctype = ctypes[type];
	r.body = patch;
	r.body_len = patch_len;
	return object_call(out, c, &r, gvr, pick_ns(c, gvr, ns, NULL), name, subresource, http_out,
	                   err);
}

int st_kube_delete(struct json_object **out, struct st_kube_client *c,
                   const struct st_kube_gvr *gvr, const char *ns, const char *name,
                   const char *propagation, long *http_out, struct st_err *err)
{
	struct st_kube__req r = { .verb = ST_KUBE_VERB_DELETE, .method = "DELETE" };
	char body[160];

	if (propagation != NULL) {
		if (strcmp(propagation, "Foreground") != 0 &&
		    strcmp(propagation, "Background") != 0 && strcmp(propagation, "Orphan") != 0)
			return st_err_set(
			        err, ST_EINVAL,
			        "propagation policy \"%s\" is not Foreground, Background or "
			        "Orphan",
			        propagation);
		(void)snprintf(body, sizeof(body),
		               "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
		               "\"propagationPolicy\":\"%s\"}",
		               propagation);
		r.ctype = "application/json";
		r.body = body;
		r.body_len = strlen(body);
	}
	return object_call(out, c, &r, gvr, pick_ns(c, gvr, ns, NULL), name, NULL, http_out, err);
}
