/*
 * The stasis+https:// store backend: a data-door session of the controller
 * (pkg/dataserver.h) used as an ordinary store.
 *
 *   stasis+https://HOST:PORT/v1/sessions/<id>
 *
 * The bearer token comes from the file named by STASIS_DATA_TOKEN_FILE
 * (trailing newline trimmed) or from STASIS_DATA_TOKEN; the CA that signed
 * the controller's certificate from the file named by STASIS_DATA_CA (else
 * the system store). TLS verification is always on. A put body is read into
 * memory first (it is bounded by ST_DATASERVER_CAP_BODY), so every request
 * can be retried after a connection error; a GET that broke mid-body resumes
 * where it stopped. The token is never logged or put in a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "pkg/dataserver.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/curlpool.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define SCHEME          "stasis+https://"
#define URL_MAX         2048
#define URL_BUF_CAP     8192u /* URL_MAX, percent-encoded */
#define TOKEN_FILE_MAX  4096
#define ERR_BODY_CAP    (64u << 10)
#define DEFAULT_RETRIES 4
#define BACKOFF_MS      200u
#define BACKOFF_CAP_MS  5000u

struct remote_store {
	struct st_store base; /* first member, see pkg/store.h */
	char *base_url;       /* https://HOST:PORT/v1/sessions/<id> */
	char *token;
	size_t token_len;
	char *ca_file; /* NULL: the system store */
	unsigned max_retries;
	struct st_curl_pool pool;
};

/* One request: what to send and where the answer goes. */
struct rq {
	const char *method;
	const char *key;        /* NULL: the objects listing */
	const char *list_query; /* "prefix=..." (encoded) for the listing */
	const char *body;       /* PUT body */
	size_t body_len;
	bool if_absent;
	bool ranged;
	uint64_t off;
	uint64_t len; /* UINT64_MAX: to the end */
	st_store_write_cb wr;
	void *wr_payload;
	struct st_buf *collect; /* the listing: gathered whole, cleared on each attempt */
	uint64_t *size_out;     /* HEAD: the announced Content-Length */
};

/* One attempt's answer. delivered counts body bytes handed to wr over all attempts. */
struct rs {
	CURL *h;
	long status;
	struct st_buf err_body;
	uint64_t delivered;
	uint64_t attempt_bytes;
	int cb_rc;
	const struct rq *r;
	struct st_curl_body body; /* the PUT body */
};

/* ---- opening ---- */

/* Checks stasis+https://HOST[:PORT]/v1/sessions/<id> and returns the https URL. */
static int parse_url(char **out, const char *url, struct st_err *err)
{
	const char *auth = url + strlen(SCHEME);
	size_t alen = strcspn(auth, "/?#@");
	const char *path = auth + alen;
	const char *id;
	size_t n;

	*out = NULL;
	if (strlen(url) > URL_MAX)
		return st_err_set(err, ST_EINVAL, "data session URL longer than %u bytes", URL_MAX);
	if (alen == 0 || auth[alen] == '@')
		return st_err_set(
		        err, ST_EINVAL,
		        "%s: want stasis+https://HOST:PORT/v1/sessions/<id> (no user part)", url);
	if (strncmp(path, "/v1/sessions/", 13) != 0)
		return st_err_set(err, ST_EINVAL,
		                  "%s: path must be /v1/sessions/<id> (as given by the controller)",
		                  url);
	id = path + 13;
	n = strspn(id, "0123456789abcdefABCDEF");
	if (n == 0 || id[n] != '\0')
		return st_err_set(
		        err, ST_EINVAL,
		        "%s: the session id after /v1/sessions/ must be hex, with nothing "
		        "after it",
		        url);
	n = strlen(url) - strlen("stasis+");
	*out = st_xmalloc(n + 1);
	memcpy(*out, url + strlen("stasis+"), n + 1);
	return 0;
}

/* Reads the token from STASIS_DATA_TOKEN_FILE or STASIS_DATA_TOKEN. */
static int load_token(struct remote_store *s, const char *url, struct st_err *err)
{
	const char *file = getenv("STASIS_DATA_TOKEN_FILE");
	const char *env = getenv("STASIS_DATA_TOKEN");
	char *buf = NULL;
	size_t n = 0;
	struct st_err e = ST_ERR_INIT;

	if (file != NULL && file[0] != '\0') {
		if (st_read_secret_file(&buf, &n, file, TOKEN_FILE_MAX, &e) < 0)
			return st_err_set(err, ST_EINVAL,
			                  "%s: token file (STASIS_DATA_TOKEN_FILE): %s", url,
			                  st_err_text(&e));
	} else if (env != NULL) {
		n = strlen(env);
		buf = st_xstrdup(env);
	}
	if (buf == NULL || n == 0 || strcspn(buf, "\r\n") != n) {
		if (buf != NULL)
			st_freezero(buf, n + 1);
		return st_err_set(err, ST_EINVAL,
		                  "%s: no usable data session token (set STASIS_DATA_TOKEN_FILE to "
		                  "the token file, or STASIS_DATA_TOKEN; one line)",
		                  url);
	}
	s->token = buf;
	s->token_len = n;
	return 0;
}

/* ---- requests ---- */

/* Percent-encodes key (keeping unreserved characters and, with keep_slash, '/'). */
static int put_encoded(struct st_buf *b, const char *key, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	for (; rc == 0 && *key != '\0'; key++) {
		unsigned char ch = (unsigned char)*key;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
		    (keep_slash && ch == '/'))
			rc = st_buf_putc(b, (char)ch);
		else
			rc = st_buf_printf(b, "%%%c%c", hex[ch >> 4], hex[ch & 15]);
	}
	return rc;
}

static int build_url(struct st_buf *u, const struct remote_store *s, const struct rq *r)
{
	int rc;

	if ((rc = st_buf_printf(u, "%s/objects", s->base_url)) < 0)
		return rc;
	if (r->key != NULL) {
		if ((rc = st_buf_putc(u, '/')) < 0 || (rc = put_encoded(u, r->key, true)) < 0)
			return rc;
	} else if (r->list_query != NULL) {
		rc = st_buf_printf(u, "?%s", r->list_query);
	}
	return rc;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *payload)
{
	struct rs *x = payload;
	size_t n = size * nmemb;
	long status = 0;

	(void)curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status >= 300) {
		/* An error message; what is over the cap is dropped. */
		if (st_buf_put(&x->err_body, data, n) < 0)
			st_log_debug("data door error body over %u bytes, truncated", ERR_BODY_CAP);
		return n;
	}
	if (x->r->collect != NULL) {
		if ((x->cb_rc = st_buf_put(x->r->collect, data, n)) != 0)
			return 0;
		return n;
	}
	if (x->r->wr == NULL)
		return n;
	if (x->r->ranged && status != 206) {
		x->cb_rc = ST_EPROTO;
		return 0;
	}
	if ((x->cb_rc = x->r->wr(data, n, x->r->wr_payload)) != 0)
		return 0;
	x->attempt_bytes += n;
	return n;
}

/* Wipes the header lines (one holds the token) before freeing them. */
static void free_headers(struct curl_slist *l)
{
	struct curl_slist *p;

	for (p = l; p != NULL; p = p->next)
		explicit_bzero(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

static struct curl_slist *make_headers(const struct remote_store *s, const struct rq *r,
                                       uint64_t off)
{
	struct curl_slist *l = NULL;
	struct curl_slist *n;
	size_t cap = s->token_len + 32;
	char *line = st_xmalloc(cap);
	char range[80];
	bool ok;

	(void)snprintf(line, cap, "Authorization: Bearer %s", s->token);
	ok = (n = curl_slist_append(l, line)) != NULL;
	st_freezero(line, cap);
	l = ok ? n : l;
	/* No 100-continue round trip: errors come after a body, which is bounded. */
	ok = ok && (l = curl_slist_append(l, "Expect:")) != NULL;
	if (ok && r->if_absent)
		ok = (n = curl_slist_append(l, "If-None-Match: *")) != NULL && (l = n) != NULL;
	if (ok && r->ranged) {
		if (r->len == UINT64_MAX)
			(void)snprintf(range, sizeof(range), "Range: bytes=%llu-",
			               (unsigned long long)off);
		else
			(void)snprintf(range, sizeof(range), "Range: bytes=%llu-%llu",
			               (unsigned long long)off,
			               (unsigned long long)(r->off + r->len - 1));
		ok = (n = curl_slist_append(l, range)) != NULL && (l = n) != NULL;
	}
	if (!ok) {
		free_headers(l);
		return NULL;
	}
	return l;
}

/* Sends r once. Returns the libcurl code; status and error body land in x. */
static CURLcode perform(const struct remote_store *s, const struct rq *r, struct rs *x,
                        struct st_err *err)
{
	struct st_buf u = ST_BUF_INIT(URL_BUF_CAP);
	struct curl_slist *hl = NULL;
	uint64_t off = r->off + x->delivered;
	CURLcode cc = CURLE_FAILED_INIT;

	if (build_url(&u, s, r) < 0) {
		(void)st_err_set(err, ST_ETOOBIG, "%s: key too long", s->base.url);
		goto out;
	}
	if ((hl = make_headers(s, r, off)) == NULL) {
		(void)st_err_set(err, ST_ENOMEM, "%s: out of memory building headers", s->base.url);
		goto out;
	}
	curl_easy_reset(x->h);
	(void)curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
	(void)curl_easy_setopt(x->h, CURLOPT_URL, st_buf_cstr(&u));
	/* Keys go to the server as they are: it, not libcurl, judges "." and "..". */
	(void)curl_easy_setopt(x->h, CURLOPT_PATH_AS_IS, 1L);
	(void)curl_easy_setopt(x->h, CURLOPT_PROTOCOLS_STR, "https");
	(void)curl_easy_setopt(x->h, CURLOPT_SSL_VERIFYPEER, 1L);
	(void)curl_easy_setopt(x->h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (s->ca_file != NULL)
		(void)curl_easy_setopt(x->h, CURLOPT_CAINFO, s->ca_file);
	(void)curl_easy_setopt(x->h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	/* A transfer that moves nothing for 60 s is dead; large objects take as long as needed. */
	(void)curl_easy_setopt(x->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	(void)curl_easy_setopt(x->h, CURLOPT_LOW_SPEED_TIME, 60L);
	(void)curl_easy_setopt(x->h, CURLOPT_TCP_KEEPALIVE, 1L);
	(void)curl_easy_setopt(x->h, CURLOPT_USERAGENT, "stasis");
	(void)curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, hl);
	(void)curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body);
	(void)curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
	if (strcmp(r->method, "HEAD") == 0) {
		(void)curl_easy_setopt(x->h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0) {
		st_curl_set_body(x->h, &x->body);
	} else if (strcmp(r->method, "GET") != 0) {
		(void)curl_easy_setopt(x->h, CURLOPT_CUSTOMREQUEST, r->method);
	}
	cc = curl_easy_perform(x->h);
	(void)curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
out:
	free_headers(hl);
	st_buf_dispose(&u);
	return cc;
}

static const char *what_of(const struct rq *r)
{
	return r->key != NULL ? r->key : "(listing)";
}

static int transport_error(const struct remote_store *s, const struct rq *r, CURLcode cc,
                           unsigned attempts, struct st_err *err)
{
	int code = st_curl_code(cc);
	bool tls = code == ST_ETLS;

	return st_err_set(err, code, "%s: %s %s: %s after %u attempt%s; %s", s->base.url, r->method,
	                  what_of(r), curl_easy_strerror(cc), attempts, attempts == 1 ? "" : "s",
	                  tls ? "TLS verification failed: set STASIS_DATA_CA to the file of the "
	                        "CA that signed the controller's certificate"
	                      : "cannot reach the controller's data door");
}

/* The server's {"error": "..."} text, or "" when the body has none. */
static void server_message(char *out, size_t cap, const struct st_buf *body)
{
	struct json_object *o = NULL;
	const char *m;

	out[0] = '\0';
	if (body->len == 0 ||
	    st_json_parse(&o, body->ptr, body->len, ERR_BODY_CAP, "error", NULL) < 0)
		return;
	if ((m = st_json_get_str(o, "error")) != NULL)
		(void)snprintf(out, cap, "%s", m);
	json_object_put(o);
}

static int http_error(const struct remote_store *s, const struct rq *r, const struct rs *x,
                      struct st_err *err)
{
	char msg[256];
	int rc;

	server_message(msg, sizeof(msg), &x->err_body);
	if (x->status == 401)
		return st_err_set(err, ST_EUPSTREAM,
		                  "%s: %s %s: the data session token was refused (HTTP 401%s%s); "
		                  "check STASIS_DATA_TOKEN_FILE/STASIS_DATA_TOKEN and that the "
		                  "session is still open",
		                  s->base.url, r->method, what_of(r), msg[0] ? ": " : "", msg);
	rc = x->status == 404   ? ST_ENOTFOUND
	     : x->status == 413 ? ST_ETOOBIG
	     : x->status == 400 ? ST_EINVAL
	                        : ST_EUPSTREAM;
	return st_err_set(err, rc, "%s: %s %s: HTTP %ld%s%s", s->base.url, r->method, what_of(r),
	                  x->status, msg[0] ? ": " : "", msg[0] ? msg : "");
}

static int head_size(uint64_t *out, const struct remote_store *s, const struct rq *r, CURL *h,
                     struct st_err *err)
{
	curl_off_t cl = -1;

	if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK || cl < 0)
		return st_err_set(err, ST_EPROTO, "%s: HEAD %s: no Content-Length in the answer",
		                  s->base.url, what_of(r));
	*out = (uint64_t)cl;
	return 200;
}

/*
 * Sends r with retries of connection errors and 502/503/504. Returns the
 * final HTTP status (2xx, or 412 for a conditional put), else a negative
 * ST_E* with err set.
 */
static int request(struct remote_store *s, const struct rq *r, struct st_err *err)
{
	struct rs x;
	unsigned attempt;
	int rc = ST_EINTERNAL;

	memset(&x, 0, sizeof(x));
	x.r = r;
	x.body = (struct st_curl_body){ r->body, r->body_len, 0 };
	st_buf_init(&x.err_body, ERR_BODY_CAP);
	if ((x.h = st_curl_pool_take(&s->pool)) == NULL)
		return st_err_set(err, ST_ENOMEM, "%s: cannot create a libcurl handle",
		                  s->base.url);
	for (attempt = 0;; attempt++) {
		CURLcode cc;

		x.status = 0;
		x.attempt_bytes = 0;
		st_buf_clear(&x.err_body);
		if (r->collect != NULL)
			st_buf_clear(r->collect);
		cc = perform(s, r, &x, err);
		x.delivered += x.attempt_bytes;
		if (x.cb_rc != 0) {
			rc = st_err_set(err, x.cb_rc, "%s: GET %s: %s", s->base.url, what_of(r),
			                x.cb_rc == ST_EPROTO ? "server ignored the requested Range"
			                : x.cb_rc == ST_ETOOBIG ? "response larger than the limit"
			                                        : "aborted by the consumer");
			goto out;
		}
		if (cc == CURLE_FAILED_INIT && err != NULL && err->code != 0) {
			rc = err->code;
			goto out;
		}
		if (cc != CURLE_OK && !st_curl_retryable(cc)) {
			rc = transport_error(s, r, cc, attempt + 1, err);
			goto out;
		}
		if (cc == CURLE_OK && x.status != 502 && x.status != 503 && x.status != 504) {
			if ((x.status >= 200 && x.status < 300) ||
			    (x.status == 412 && r->if_absent))
				rc = (int)x.status;
			else
				rc = http_error(s, r, &x, err);
			if (rc >= 200 && rc < 300 && r->size_out != NULL)
				rc = head_size(r->size_out, s, r, x.h, err);
			goto out;
		}
		if (attempt >= s->max_retries) {
			rc = cc != CURLE_OK ? transport_error(s, r, cc, attempt + 1, err)
			                    : http_error(s, r, &x, err);
			goto out;
		}
		st_log_warn("%s: %s %s: %s, retrying (attempt %u of %u)", s->base.url, r->method,
		            what_of(r), cc != CURLE_OK ? curl_easy_strerror(cc) : "server busy",
		            attempt + 2, s->max_retries + 1);
		st_curl_backoff(BACKOFF_MS, BACKOFF_CAP_MS, attempt);
	}
out:
	st_curl_pool_give(&s->pool, x.h);
	st_buf_dispose(&x.err_body);
	return rc;
}

static void rq_init(struct rq *r, const char *method, const char *key)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->key = key;
	r->len = UINT64_MAX;
}

/* ---- the store operations ---- */

/* Sends the whole body from memory, so that every attempt can send it again. */
static int remote_put_mem(struct st_store *st, const char *key, const void *data, size_t len,
                          bool if_absent, struct st_err *err)
{
	struct remote_store *s = (struct remote_store *)st;
	struct rq r;
	int rc;

	if (len > ST_DATASERVER_CAP_BODY)
		return st_err_set(err, ST_ETOOBIG,
		                  "%s: PUT %s: %zu bytes is over the data door's limit of %u bytes",
		                  st->url, key, len, ST_DATASERVER_CAP_BODY);
	rq_init(&r, "PUT", key);
	r.body = data != NULL ? data : "";
	r.body_len = len;
	r.if_absent = if_absent;
	if ((rc = request(s, &r, err)) < 0)
		return rc;
	return rc == 412 ? 1 : 0;
}

static int remote_put(struct st_store *st, const char *key, uint64_t size, st_store_read_cb rd,
                      void *payload, bool if_absent, struct st_err *err)
{
	struct st_buf b = ST_BUF_INIT(ST_DATASERVER_CAP_BODY);
	char tmp[64u << 10];
	int rc = ST_EINTERNAL;

	if (size != UINT64_MAX && size > ST_DATASERVER_CAP_BODY) {
		rc = st_err_set(err, ST_ETOOBIG,
		                "%s: PUT %s: %llu bytes is over the data door's limit of %u bytes",
		                st->url, key, (unsigned long long)size, ST_DATASERVER_CAP_BODY);
		goto out;
	}
	for (;;) {
		long n = rd(tmp, sizeof(tmp), payload);

		if (n < 0) {
			rc = st_err_set(err, (int)n, "%s: PUT %s: reading the body failed", st->url,
			                key);
			goto out;
		}
		if (n == 0)
			break;
		if (st_buf_put(&b, tmp, (size_t)n) < 0) {
			rc = st_err_set(err, ST_ETOOBIG,
			                "%s: PUT %s: body over the data door's limit of %u bytes",
			                st->url, key, ST_DATASERVER_CAP_BODY);
			goto out;
		}
	}
	if (size != UINT64_MAX && b.len != size) {
		rc = st_err_set(err, ST_EINTERNAL, "%s: PUT %s: body is %zu bytes, announced %llu",
		                st->url, key, b.len, (unsigned long long)size);
		goto out;
	}
	rc = remote_put_mem(st, key, b.ptr, b.len, if_absent, err);
out:
	st_buf_dispose(&b);
	return rc;
}

static int remote_get(struct st_store *st, const char *key, uint64_t off, uint64_t len,
                      st_store_write_cb wr, void *payload, struct st_err *err)
{
	struct remote_store *s = (struct remote_store *)st;
	struct rq r;
	int rc;

	if (len == 0)
		return 0;
	rq_init(&r, "GET", key);
	r.wr = wr;
	r.wr_payload = payload;
	/* Always ranged, so that a resumed transfer is the same request (see perform()). */
	r.ranged = true;
	r.off = off;
	r.len = len;
	rc = request(s, &r, err);
	return rc < 0 ? rc : 0;
}

static int remote_head(struct st_store *st, const char *key, uint64_t *size_out, struct st_err *err)
{
	struct remote_store *s = (struct remote_store *)st;
	struct rq r;
	int rc;

	*size_out = 0;
	rq_init(&r, "HEAD", key);
	r.size_out = size_out;
	rc = request(s, &r, err);
	return rc < 0 ? rc : 0;
}

static int remote_del(struct st_store *st, const char *key, struct st_err *err)
{
	struct remote_store *s = (struct remote_store *)st;
	struct rq r;
	int rc;

	rq_init(&r, "DELETE", key);
	rc = request(s, &r, err);
	return rc < 0 ? rc : 0;
}

/* Parses the listing's JSON lines and calls cb for each. */
static int parse_listing(const struct remote_store *s, const struct st_buf *b, st_store_list_cb cb,
                         void *payload, struct st_err *err)
{
	const char *p = b->ptr ? b->ptr : "";
	const char *end = p + b->len;
	int rc = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct json_object *o = NULL;
		struct json_object *sz;
		const char *k;

		if (l > 0) {
			if (st_json_parse(&o, p, l, l, "listing line", NULL) < 0 ||
			    (k = st_json_get_str(o, "key")) == NULL ||
			    (sz = st_json_get(o, "size")) == NULL ||
			    !json_object_is_type(sz, json_type_int)) {
				json_object_put(o);
				return st_err_set(err, ST_EPROTO,
				                  "%s: listing: malformed line \"%.80s\"",
				                  s->base.url, p);
			}
			rc = cb(k, (uint64_t)json_object_get_int64(sz), payload);
			json_object_put(o);
			if (rc != 0)
				return rc;
		}
		p += l + 1;
	}
	return 0;
}

static int remote_list(struct st_store *st, const char *prefix, st_store_list_cb cb, void *payload,
                       struct st_err *err)
{
	struct remote_store *s = (struct remote_store *)st;
	struct st_buf q = ST_BUF_INIT(URL_BUF_CAP);
	struct st_buf b = ST_BUF_INIT(ST_DATASERVER_CAP_BODY);
	struct rq r;
	int rc = ST_EINTERNAL;

	rq_init(&r, "GET", NULL);
	if ((rc = st_buf_puts(&q, "prefix=")) < 0 ||
	    (rc = put_encoded(&q, prefix ? prefix : "", false)) < 0) {
		rc = st_err_set(err, rc, "%s: list prefix too long", st->url);
		goto out;
	}
	r.list_query = st_buf_cstr(&q);
	/* The listing is collected whole, so a retried request never repeats a key. */
	r.collect = &b;
	if ((rc = request(s, &r, err)) < 0)
		goto out;
	rc = parse_listing(s, &b, cb, payload, err);
out:
	st_buf_dispose(&q);
	st_buf_dispose(&b);
	return rc;
}

static void remote_free(struct st_store *st)
{
	struct remote_store *s = (struct remote_store *)st;

	if (s == NULL)
		return;
	st_curl_pool_dispose(&s->pool);
	if (s->token != NULL)
		st_freezero(s->token, s->token_len + 1);
	free(s->base_url);
	free(s->ca_file);
	free(s->base.url);
	free(s);
}

/* The controller stores each object durably before it answers. */
static const struct st_store_vtable remote_vtable = {
	.put = remote_put,
	.get = remote_get,
	.head = remote_head,
	.list = remote_list,
	.del = remote_del,
	.free = remote_free,
	.sync = NULL,
	.put_mem = remote_put_mem,
};

int st_store__open_remote(struct st_store **out, const char *url,
                          const struct st_store_options *opts, struct st_err *err)
{
	struct remote_store *s = st_xcalloc(1, sizeof(*s));
	const char *ca = getenv("STASIS_DATA_CA");
	int rc = ST_EINTERNAL;

	*out = NULL;
	s->base.vt = &remote_vtable;
	s->base.url = st_xstrdup(url);
	st_curl_pool_init(&s->pool);
	if (st_curl_global_init() != CURLE_OK) {
		rc = st_err_set(err, ST_EINTERNAL, "%s: libcurl initialisation failed", url);
		goto out;
	}
	if ((rc = parse_url(&s->base_url, url, err)) < 0 || (rc = load_token(s, url, err)) < 0)
		goto out;
	if (ca != NULL && ca[0] != '\0')
		s->ca_file = st_xstrdup(ca);
	s->max_retries = opts != NULL && opts->max_retries ? opts->max_retries : DEFAULT_RETRIES;
	*out = &s->base;
	s = NULL; /* transferred */
	rc = 0;
out:
	remote_free(s ? &s->base : NULL);
	return rc;
}
