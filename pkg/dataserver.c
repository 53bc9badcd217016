/*
 * The data door (see pkg/dataserver.h): sessions over st_store objects behind
 * pkg/httpd. A request names its session in the path and proves it with the
 * session's bearer token; the session decides which store it reaches and
 * whether it may write. Sessions are reference-counted so that a close that
 * races with a request in flight frees the session only when that request is
 * done.
 */
#include "pkg/dataserver.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "pkg/httpd.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define ID_BYTES      16 /* 32 hex characters */
#define TOKEN_BYTES   (ST_DATASERVER_TOKEN_LEN / 2)
#define KEY_MAX       1024
#define PATH_PREFIX   "/v1/sessions/"
#define LOCKS_PREFIX  "locks/"
#define CONN_TIMEOUT  120 /* seconds a connection may stay idle mid-request */
#define WORKERS       8   /* a handler blocks on the store: more than one per core */
#define BEARER_PREFIX "Bearer "

struct session {
	char id[ID_BYTES * 2 + 1];
	char token[ST_DATASERVER_TOKEN_LEN + 1];
	struct st_store *store;
	bool read_only;
	bool closed;
	unsigned refs; /* the table's reference plus one per request in flight */
	struct st_dataserver_stats stats;
	struct session *next;
};

struct st_dataserver {
	struct st_httpd *httpd;
	pthread_mutex_t lock; /* guards sessions, refs, closed and stats */
	struct session *sessions;
	struct st_log_ratelimit rl;
};

/* ---- sessions ---- */

static void hex_of(char *out, const unsigned char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static void session_free(struct session *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s->token, sizeof(s->token));
	free(s);
}

/* Called with ds->lock held. */
static struct session *find_locked(struct st_dataserver *ds, const char *id, size_t id_len)
{
	struct session *s;

	for (s = ds->sessions; s != NULL; s = s->next) {
		if (strlen(s->id) == id_len && memcmp(s->id, id, id_len) == 0)
			return s;
	}
	return NULL;
}

/*
 * The session named by id when token is its token, with a reference taken;
 * NULL otherwise. The token is compared in constant time.
 */
static struct session *session_acquire(struct st_dataserver *ds, const char *id, size_t id_len,
                                       const char *token)
{
	struct session *s;

	pthread_mutex_lock(&ds->lock);
	s = find_locked(ds, id, id_len);
	if (s != NULL && (s->closed || strlen(token) != ST_DATASERVER_TOKEN_LEN ||
	                  CRYPTO_memcmp(s->token, token, ST_DATASERVER_TOKEN_LEN) != 0))
		s = NULL;
	if (s != NULL) {
		s->refs++;
		s->stats.requests++;
	}
	pthread_mutex_unlock(&ds->lock);
	return s;
}

static void session_release(struct st_dataserver *ds, struct session *s, uint64_t in, uint64_t out)
{
	bool last;

	pthread_mutex_lock(&ds->lock);
	s->stats.bytes_in += in;
	s->stats.bytes_out += out;
	last = --s->refs == 0;
	pthread_mutex_unlock(&ds->lock);
	if (last)
		session_free(s);
}

/* ---- responses ---- */

static int reply_error(struct st_httpd_response *resp, int status, const char *fmt, ...)
        ST_PRINTF(3, 4);

static int reply_error(struct st_httpd_response *resp, int status, const char *fmt, ...)
{
	struct json_object *o = json_object_new_object();
	char msg[512];
	size_t len = 0;
	va_list ap;

	if (o == NULL)
		return ST_ENOMEM;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st_json_add_str(o, "error", msg);
	resp->status = status;
	resp->body = st_xstrdup(st_json_to_string(o, &len));
	resp->body_len = len;
	resp->content_type = "application/json";
	json_object_put(o);
	return 0;
}

/* A store failure: missing keys are 404, oversized objects 413, the rest 502. */
static int reply_store_error(struct st_httpd_response *resp, int rc, const struct st_err *err)
{
	int status = rc == ST_ENOTFOUND ? 404 : rc == ST_ETOOBIG ? 413 : 502;

	return reply_error(resp, status, "%s", err->code != 0 ? st_err_text(err) : st_strerror(rc));
}

static void add_header(struct st_httpd_response *resp, const char *name, const char *fmt, ...)
        ST_PRINTF(3, 4);

static void add_header(struct st_httpd_response *resp, const char *name, const char *fmt, ...)
{
	va_list ap;
	size_t i;

	for (i = 0; i < ST_HTTPD_RESP_HEADERS_MAX; i++) {
		if (resp->headers[i].name == NULL)
			break;
	}
	ST_ASSERT(i < ST_HTTPD_RESP_HEADERS_MAX);
	if (i >= ST_HTTPD_RESP_HEADERS_MAX)
		return;
	resp->headers[i].name = name;
	va_start(ap, fmt);
	(void)vsnprintf(resp->headers[i].value, sizeof(resp->headers[i].value), fmt, ap);
	va_end(ap);
}

/* ---- request checks ---- */

/*
 * A key (or, with prefix, a list prefix that may be empty or end in '/'):
 * printable ASCII without spaces or backslashes, bounded, no leading '/', no
 * empty, "." or ".." segment. Returns NULL when acceptable, else the reason.
 */
static const char *check_key(const char *k, bool prefix)
{
	size_t n = strlen(k);
	const char *seg = k;
	const char *p;

	if (n == 0)
		return prefix ? NULL : "empty key";
	if (n > KEY_MAX)
		return "key longer than 1024 bytes";
	if (k[0] == '/')
		return "key starts with '/'";
	for (p = k; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch <= 0x20 || ch >= 0x7f || ch == '\\')
			return "key has a space, control, non-ASCII or '\\' character";
	}
	for (;;) {
		size_t l = strcspn(seg, "/");

		if (l == 0 && !(prefix && seg[0] == '\0'))
			return "key has an empty path segment";
		if ((l == 1 && seg[0] == '.') || (l == 2 && seg[0] == '.' && seg[1] == '.'))
			return "key has a '.' or '..' path segment";
		if (seg[l] == '\0')
			break;
		seg += l + 1;
		if (*seg == '\0' && !prefix)
			return "key ends with '/'";
		if (*seg == '\0')
			break;
	}
	return NULL;
}

/*
 * Parses "bytes=a-b" or "bytes=a-" into off/len (len UINT64_MAX: to the end).
 * Returns false for anything else (suffix and multiple ranges included).
 */
static bool parse_range(uint64_t *off, uint64_t *len, const char *v)
{
	char *end = NULL;
	unsigned long long a;
	unsigned long long b;

	if (strncmp(v, "bytes=", 6) != 0 || v[6] < '0' || v[6] > '9')
		return false;
	a = strtoull(v + 6, &end, 10);
	if (*end != '-')
		return false;
	v = end + 1;
	if (*v == '\0') {
		*off = a;
		*len = UINT64_MAX;
		return true;
	}
	if (*v < '0' || *v > '9')
		return false;
	b = strtoull(v, &end, 10);
	if (*end != '\0' || b < a || b == ULLONG_MAX)
		return false;
	*off = a;
	*len = b - a + 1;
	return true;
}

/* ---- object operations ---- */

static int buf_sink(const void *data, size_t n, void *payload)
{
	return st_buf_put(payload, data, n);
}

static int do_get(struct st_httpd_response *resp, uint64_t *out_bytes, struct session *s,
                  const struct st_httpd_request *req, const char *key)
{
	struct st_buf b = ST_BUF_INIT(ST_DATASERVER_CAP_BODY);
	struct st_err err = ST_ERR_INIT;
	const char *range = st_httpd_request_header(req, "Range");
	uint64_t off = 0;
	uint64_t len = UINT64_MAX;
	int rc;

	if (range != NULL && !parse_range(&off, &len, range))
		return reply_error(resp, 400,
		                   "unsupported Range \"%.64s\" (want bytes=A-B or bytes=A-)",
		                   range);
	rc = st_store_get(s->store, key, off, len, buf_sink, &b, &err);
	if (rc == ST_ETOOBIG) {
		st_buf_dispose(&b);
		return reply_error(resp, 413, "%s: object larger than %u bytes; read it in ranges",
		                   key, ST_DATASERVER_CAP_BODY);
	}
	if (rc < 0) {
		st_buf_dispose(&b);
		return reply_store_error(resp, rc, &err);
	}
	if (range != NULL) {
		resp->status = 206;
		if (b.len > 0)
			add_header(resp, "Content-Range", "bytes %llu-%llu/*",
			           (unsigned long long)off, (unsigned long long)(off + b.len - 1));
	} else {
		resp->status = 200;
	}
	resp->content_type = "application/octet-stream";
	*out_bytes = b.len;
	resp->body = st_buf_detach(&b, &resp->body_len);
	return 0;
}

static int do_head(struct st_httpd_response *resp, struct session *s, const char *key)
{
	struct st_err err = ST_ERR_INIT;
	uint64_t size = 0;
	int rc = st_store_head(s->store, key, &size, &err);

	if (rc < 0) {
		/* A HEAD response has no body: the status says it all. */
		resp->status = rc == ST_ENOTFOUND ? 404 : 502;
		return 0;
	}
	resp->status = 200;
	resp->content_type = "application/octet-stream";
	resp->head_length = size;
	return 0;
}

static int do_put(struct st_httpd_response *resp, uint64_t *in_bytes, struct session *s,
                  const struct st_httpd_request *req, const char *key)
{
	struct st_err err = ST_ERR_INIT;
	const char *inm = st_httpd_request_header(req, "If-None-Match");
	bool if_absent = false;
	int rc;

	if (s->read_only)
		return reply_error(resp, 403, "this data session is read-only");
	if (inm != NULL && strcmp(inm, "*") != 0)
		return reply_error(resp, 400, "If-None-Match: only \"*\" is supported");
	if_absent = inm != NULL;
	rc = st_store_put_mem(s->store, key, req->body, req->body_len, if_absent, &err);
	if (rc < 0)
		return reply_store_error(resp, rc, &err);
	if (rc == 1)
		return reply_error(resp, 412, "%s: object exists", key);
	*in_bytes = req->body_len;
	resp->status = 201;
	resp->body = st_xstrdup("{}");
	resp->body_len = 2;
	return 0;
}

static int do_delete(struct st_httpd_response *resp, struct session *s, const char *key)
{
	struct st_err err = ST_ERR_INIT;
	int rc;

	if (s->read_only)
		return reply_error(resp, 403, "this data session is read-only");
	if (strncmp(key, LOCKS_PREFIX, strlen(LOCKS_PREFIX)) != 0)
		return reply_error(resp, 403, "%s: only objects under %s may be deleted", key,
		                   LOCKS_PREFIX);
	rc = st_store_delete(s->store, key, &err);
	if (rc < 0)
		return reply_store_error(resp, rc, &err);
	resp->status = 204;
	return 0;
}

/* Appends s as a JSON string body (quotes, escapes) to b. */
static int put_json_str(struct st_buf *b, const char *str)
{
	int rc = st_buf_putc(b, '"');

	for (; rc == 0 && *str != '\0'; str++) {
		unsigned char ch = (unsigned char)*str;

		if (ch == '"' || ch == '\\')
			rc = st_buf_printf(b, "\\%c", ch);
		else if (ch < 0x20)
			rc = st_buf_printf(b, "\\u%04x", ch);
		else
			rc = st_buf_putc(b, (char)ch);
	}
	return rc == 0 ? st_buf_putc(b, '"') : rc;
}

static int list_line(const char *key, uint64_t size, void *payload)
{
	struct st_buf *b = payload;
	int rc;

	if ((rc = st_buf_puts(b, "{\"key\":")) < 0 || (rc = put_json_str(b, key)) < 0 ||
	    (rc = st_buf_printf(b, ",\"size\":%llu}\n", (unsigned long long)size)) < 0)
		return rc;
	return 0;
}

/* Listings are not counted in bytes_out: the counters measure object data. */
static int do_list(struct st_httpd_response *resp, struct session *s,
                   const struct st_httpd_request *req)
{
	struct st_buf b = ST_BUF_INIT(ST_DATASERVER_CAP_BODY);
	struct st_err err = ST_ERR_INIT;
	const char *prefix = st_httpd_request_arg(req, "prefix");
	const char *why;
	int rc;

	if (prefix == NULL)
		prefix = "";
	if ((why = check_key(prefix, true)) != NULL)
		return reply_error(resp, 400, "bad prefix: %s", why);
	rc = st_store_list(s->store, prefix, list_line, &b, &err);
	if (rc == ST_ETOOBIG) {
		st_buf_dispose(&b);
		return reply_error(resp, 413, "listing of \"%s\" larger than %u bytes", prefix,
		                   ST_DATASERVER_CAP_BODY);
	}
	if (rc < 0) {
		st_buf_dispose(&b);
		return reply_store_error(resp, rc, &err);
	}
	resp->status = 200;
	resp->content_type = "application/x-ndjson";
	resp->body = st_buf_detach(&b, &resp->body_len);
	return 0;
}

/* ---- dispatch ---- */

/* Splits "/v1/sessions/<id>/objects[/<key>]"; false when the path has another shape. */
static bool split_path(const char **id, size_t *id_len, const char **key, const char *path)
{
	const char *p;
	size_t n;

	if (strncmp(path, PATH_PREFIX, strlen(PATH_PREFIX)) != 0)
		return false;
	p = path + strlen(PATH_PREFIX);
	n = strcspn(p, "/");
	if (n == 0 || n > (size_t)ID_BYTES * 2)
		return false;
	*id = p;
	*id_len = n;
	p += n;
	if (strcmp(p, "/objects") == 0) {
		*key = NULL;
		return true;
	}
	if (strncmp(p, "/objects/", 9) != 0)
		return false;
	*key = p + 9;
	return true;
}

static int serve(struct st_httpd_response *resp, struct session *s,
                 const struct st_httpd_request *req, const char *key, uint64_t *in, uint64_t *out)
{
	const char *why;

	if (key == NULL) {
		if (strcmp(req->method, "GET") != 0)
			return reply_error(resp, 405, "%s: only GET lists objects", req->method);
		return do_list(resp, s, req);
	}
	if ((why = check_key(key, false)) != NULL)
		return reply_error(resp, 400, "bad key: %s", why);
	if (strcmp(req->method, "GET") == 0)
		return do_get(resp, out, s, req, key);
	if (strcmp(req->method, "HEAD") == 0)
		return do_head(resp, s, key);
	if (strcmp(req->method, "PUT") == 0)
		return do_put(resp, in, s, req, key);
	if (strcmp(req->method, "DELETE") == 0)
		return do_delete(resp, s, key);
	return reply_error(resp, 405, "%s: method not allowed (GET, HEAD, PUT, DELETE)",
	                   req->method);
}

static int handle(struct st_httpd_response *resp, const struct st_httpd_request *req, void *payload)
{
	struct st_dataserver *ds = payload;
	const char *auth = st_httpd_request_header(req, "Authorization");
	const char *id = NULL;
	const char *key = NULL;
	size_t id_len = 0;
	struct session *s;
	uint64_t in = 0;
	uint64_t out = 0;
	int rc;

	if (!split_path(&id, &id_len, &key, req->path))
		return reply_error(resp, 404,
		                   "no such endpoint (want /v1/sessions/<id>/objects[/<key>])");
	if (auth == NULL || strncmp(auth, BEARER_PREFIX, strlen(BEARER_PREFIX)) != 0)
		return reply_error(resp, 401, "missing bearer token (Authorization: Bearer ...)");
	s = session_acquire(ds, id, id_len, auth + strlen(BEARER_PREFIX));
	if (s == NULL) {
		if (st_log_ratelimited(&ds->rl))
			st_log_warn("data door: refused %s %s from %s: unknown or closed session, "
			            "or wrong token",
			            req->method, req->path, req->peer);
		return reply_error(resp, 401,
		                   "the data session token was refused (unknown or closed "
		                   "session, or wrong token)");
	}
	rc = serve(resp, s, req, key, &in, &out);
	st_log_debug("data door: %s %s -> %d", req->method, req->path, resp->status);
	session_release(ds, s, in, out);
	return rc;
}

/* ---- public API ---- */

int st_dataserver_new(struct st_dataserver **out, const struct st_dataserver_options *opts,
                      struct st_err *err)
{
	struct st_httpd_options ho = ST_HTTPD_OPTIONS_INIT;
	struct st_dataserver *ds = st_xcalloc(1, sizeof(*ds));
	int rc = ST_EINTERNAL;

	*out = NULL;
	pthread_mutex_init(&ds->lock, NULL);
	ds->rl.burst = 5;
	ho.addr = opts->listen_addr ? opts->listen_addr : "127.0.0.1";
	ho.port = opts->port;
	ho.cert_file = opts->cert_file;
	ho.key_file = opts->key_file;
	ho.max_body = ST_DATASERVER_CAP_BODY;
	ho.conn_timeout_s = CONN_TIMEOUT;
	ho.threads = WORKERS;
	if (opts->cert_file == NULL || opts->key_file == NULL) {
		rc = st_err_set(err, ST_EINVAL,
		                "data door: a serving certificate and key are "
		                "required");
		goto out;
	}
	if ((rc = st_httpd_start(&ds->httpd, &ho, handle, ds, err)) < 0) {
		st_err_prefix(err, "data door");
		goto out;
	}
	*out = ds;
	ds = NULL; /* transferred */
	rc = 0;
out:
	st_dataserver_free(ds);
	return rc;
}

uint16_t st_dataserver_port(const struct st_dataserver *ds)
{
	return st_httpd_port(ds->httpd);
}

void st_dataserver_free(struct st_dataserver *ds)
{
	struct session *s;

	if (ds == NULL)
		return;
	/* Stopping the server first: no request holds a session afterwards. */
	st_httpd_stop(ds->httpd);
	while ((s = ds->sessions) != NULL) {
		ds->sessions = s->next;
		session_free(s);
	}
	pthread_mutex_destroy(&ds->lock);
	free(ds);
}

int st_dataserver_open(struct st_dataserver *ds, struct st_store *s, bool read_only, char *id_out,
                       char *token_out, struct st_err *err)
{
	struct session *ss = st_xcalloc(1, sizeof(*ss));
	unsigned char id[ID_BYTES];
	unsigned char tok[TOKEN_BYTES];
	int rc = ST_EINTERNAL;

	if (RAND_bytes(id, sizeof(id)) != 1 || RAND_bytes(tok, sizeof(tok)) != 1) {
		rc = st_err_set(err, ST_EINTERNAL, "data door: no random bytes for a session");
		goto out;
	}
	hex_of(ss->id, id, sizeof(id));
	hex_of(ss->token, tok, sizeof(tok));
	ss->store = s;
	ss->read_only = read_only;
	ss->refs = 1;
	memcpy(id_out, ss->id, sizeof(ss->id));
	memcpy(token_out, ss->token, sizeof(ss->token));
	pthread_mutex_lock(&ds->lock);
	ss->next = ds->sessions;
	ds->sessions = ss;
	pthread_mutex_unlock(&ds->lock);
	st_log_info("data door: opened %s session %s on %s", read_only ? "read-only" : "read-write",
	            ss->id, s->url ? s->url : "a store");
	ss = NULL; /* transferred */
	rc = 0;
out:
	explicit_bzero(tok, sizeof(tok));
	session_free(ss);
	return rc;
}

int st_dataserver_stats(struct st_dataserver_stats *out, struct st_dataserver *ds, const char *id)
{
	struct session *s;
	int rc = ST_ENOTFOUND;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&ds->lock);
	s = find_locked(ds, id, strlen(id));
	if (s != NULL && !s->closed) {
		*out = s->stats;
		rc = 0;
	}
	pthread_mutex_unlock(&ds->lock);
	return rc;
}

void st_dataserver_close(struct st_dataserver *ds, const char *id)
{
	struct session **pp;
	struct session *s = NULL;
	bool last = false;

	pthread_mutex_lock(&ds->lock);
	for (pp = &ds->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->id, id) == 0) {
			s = *pp;
			*pp = s->next;
			s->closed = true;
			last = --s->refs == 0;
			break;
		}
	}
	pthread_mutex_unlock(&ds->lock);
	if (s != NULL)
		st_log_info("data door: closed session %s", id);
	if (last)
		session_free(s);
}
