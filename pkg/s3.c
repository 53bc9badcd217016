#include "pkg/s3.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "pkg/s3_int.h"
#include "pkg/sigv4.h"
#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/curlpool.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define MAX_REQ_HEADERS 6
/* Error bodies are short; anything past this is dropped, not an error. */
#define ERR_BODY_CAP    (64u * 1024u)
#define BACKOFF_CAP_MS  8000u
#define CRED_FILE_CAP   (64u * 1024u)
#define DELETE_BATCH    1000u
#define ETAG_SIZE       128
#define UPLOAD_BUFFER   (1024L * 1024L)
#define DOWNLOAD_BUFFER (512L * 1024L)

struct st_s3_client {
	char *base;        /* scheme://authority, the bucket folded in for virtual hosts */
	char *host;        /* Host header, as signed */
	char *path_prefix; /* "/bucket" (path style) or "" */
	char *bucket;
	char *region;
	char *ca_file;
	bool insecure;
	bool https;
	unsigned max_retries;
	unsigned connect_timeout_ms;
	unsigned backoff_ms;
	uint64_t part_size;
	struct st_s3_credentials cred;
	pthread_mutex_t lock;
	struct st_curl_pool pool; /* connections reused across requests and threads */
	bool inm_unsupported;     /* the server answered 501 to If-None-Match */
};

/* One logical request; replayed as is on every attempt. */
struct req {
	const char *method;
	const char *key;   /* NULL: the bucket itself */
	const char *query; /* encoded; NULL: none */
	struct st_sigv4_header h[MAX_REQ_HEADERS];
	size_t nh;
	const char *body; /* in-memory body, NULL: none */
	size_t body_len;
	char payload_hash[65];
	st_s3_write_cb wr; /* streams a 2xx body; NULL: collected in resp->body */
	void *wr_payload;
	long accept[3]; /* non-2xx statuses the caller handles itself */
};

struct resp {
	long status;
	struct st_buf body;
	char etag[ETAG_SIZE];
	uint64_t content_length;
	bool has_length;
	int cb_rc;          /* the writer's error, or ST_ETOOBIG for an oversize body */
	uint64_t delivered; /* bytes handed to req->wr over all attempts */
};

/* Per-attempt transfer state seen by the libcurl callbacks. */
struct xfer {
	const struct req *r;
	struct resp *resp;
	CURL *h;
	struct st_curl_body body;
	bool status_known;
	bool whole_for_range; /* a 200 where a 206 was asked for with off > 0 */
	uint64_t range_off;
	uint64_t left; /* bytes the range still asks for; more from the server is an error */
};

/* ---- credentials ---- */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static void set_secret(char **dst, const char *v)
{
	if (*dst != NULL)
		st_freezero(*dst, strlen(*dst));
	*dst = st_xstrdup(v);
}

int st_s3_credentials_parse(struct st_s3_credentials *out, const char *text, size_t len,
                            const char *profile, struct st_err *err)
{
	char *copy = st_xstrndup(text, len);
	char *save = NULL;
	char *line;
	bool in = false;
	bool seen = false;
	int rc = ST_EINVAL;

	if (profile == NULL)
		profile = "default";
	for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *l = trim(line);
		char *eq;

		if (l[0] == '#' || l[0] == ';' || l[0] == '\0')
			continue;
		if (l[0] == '[') {
			char *e = strchr(l, ']');

			if (e != NULL)
				*e = '\0';
			l = trim(l + 1);
			if (strncmp(l, "profile ", 8) == 0)
				l = trim(l + 8);
			in = strcmp(l, profile) == 0;
			seen = seen || in;
			continue;
		}
		if (!in || (eq = strchr(l, '=')) == NULL)
			continue;
		*eq = '\0';
		if (strcmp(trim(l), "aws_access_key_id") == 0)
			set_secret(&out->access_key, trim(eq + 1));
		else if (strcmp(trim(l), "aws_secret_access_key") == 0)
			set_secret(&out->secret_key, trim(eq + 1));
		else if (strcmp(trim(l), "aws_session_token") == 0)
			set_secret(&out->session_token, trim(eq + 1));
	}
	if (!seen) {
		st_err_set(err, ST_EINVAL, "credentials: no [%s] profile", profile);
		goto out;
	}
	if (out->access_key == NULL || out->access_key[0] == '\0' || out->secret_key == NULL ||
	    out->secret_key[0] == '\0') {
		st_err_set(err, ST_EINVAL,
		           "credentials: profile [%s] lacks aws_access_key_id or "
		           "aws_secret_access_key",
		           profile);
		goto out;
	}
	rc = 0;
out:
	st_freezero(copy, len);
	if (rc < 0)
		st_s3_credentials_dispose(out);
	return rc;
}

static int load_env(struct st_s3_credentials *out, struct st_err *err)
{
	const char *ak = getenv("AWS_ACCESS_KEY_ID");
	const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
	const char *tok = getenv("AWS_SESSION_TOKEN");

	if (ak == NULL || ak[0] == '\0' || sk == NULL || sk[0] == '\0')
		return st_err_set(err, ST_EINVAL,
		                  "credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are "
		                  "not both set and no credentials file was given");
	set_secret(&out->access_key, ak);
	set_secret(&out->secret_key, sk);
	if (tok != NULL && tok[0] != '\0')
		set_secret(&out->session_token, tok);
	return 0;
}

int st_s3_credentials_load(struct st_s3_credentials *out, const char *file, const char *profile,
                           struct st_err *err)
{
	FILE *f = NULL;
	char *text = NULL;
	size_t n = 0;
	int rc = ST_EINTERNAL;

	if (file == NULL)
		return load_env(out, err);
	if ((f = fopen(file, "r")) == NULL) {
		rc = st_err_set(err, ST_EINVAL, "credentials file %s: %s", file, strerror(errno));
		goto out;
	}
	text = st_xmalloc(CRED_FILE_CAP + 1);
	n = fread(text, 1, CRED_FILE_CAP + 1, f);
	if (ferror(f) || n > CRED_FILE_CAP) {
		rc = st_err_set(err, n > CRED_FILE_CAP ? ST_ETOOBIG : ST_EIO,
		                "credentials file %s: unreadable or larger than %u bytes", file,
		                CRED_FILE_CAP);
		goto out;
	}
	if ((rc = st_s3_credentials_parse(out, text, n, profile, err)) < 0) {
		st_err_prefix(err, "%s", file);
		goto out;
	}
	rc = 0;
out:
	if (f != NULL)
		(void)fclose(f);
	if (text != NULL)
		st_freezero(text, CRED_FILE_CAP + 1);
	return rc;
}

void st_s3_credentials_dispose(struct st_s3_credentials *c)
{
	if (c->access_key != NULL)
		st_freezero(c->access_key, strlen(c->access_key));
	if (c->secret_key != NULL)
		st_freezero(c->secret_key, strlen(c->secret_key));
	if (c->session_token != NULL)
		st_freezero(c->session_token, strlen(c->session_token));
	c->access_key = c->secret_key = c->session_token = NULL;
}

/* ---- client ---- */

static bool valid_bucket(const char *b)
{
	size_t n = strlen(b);
	size_t i;

	if (n < 3 || n > 63)
		return false;
	for (i = 0; i < n; i++) {
		char ch = b[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '.' || ch == '_'))
			return false;
	}
	return true;
}

/* Splits endpoint into scheme and authority; the authority has no path. */
static int parse_endpoint(struct st_s3_client *c, const char *ep, bool path_style,
                          struct st_err *err)
{
	const char *auth;
	size_t alen;

	if (strncmp(ep, "https://", 8) == 0) {
		c->https = true;
		auth = ep + 8;
	} else if (strncmp(ep, "http://", 7) == 0) {
		auth = ep + 7;
	} else {
		return st_err_set(err, ST_EINVAL, "endpoint %s: want http:// or https://", ep);
	}
	alen = strlen(auth);
	while (alen > 0 && auth[alen - 1] == '/')
		alen--;
	if (alen == 0 || memchr(auth, '/', alen) != NULL || memchr(auth, '?', alen) != NULL ||
	    memchr(auth, '@', alen) != NULL)
		return st_err_set(err, ST_EINVAL,
		                  "endpoint %s: want scheme://host[:port] with no path or user",
		                  ep);
	if (path_style) {
		c->host = st_xstrndup(auth, alen);
		c->path_prefix = st_xmalloc(strlen(c->bucket) + 2);
		(void)snprintf(c->path_prefix, strlen(c->bucket) + 2, "/%s", c->bucket);
	} else {
		size_t hl = strlen(c->bucket) + 1 + alen + 1;

		c->host = st_xmalloc(hl);
		(void)snprintf(c->host, hl, "%s.%.*s", c->bucket, (int)alen, auth);
		c->path_prefix = st_xstrdup("");
	}
	c->base = st_xmalloc(strlen(c->host) + 9);
	(void)snprintf(c->base, strlen(c->host) + 9, "%s://%s", c->https ? "https" : "http",
	               c->host);
	return 0;
}

int st_s3_client_new(struct st_s3_client **out, const struct st_s3_options *o,
                     struct st_s3_credentials *creds, struct st_err *err)
{
	struct st_s3_client *c = NULL;
	int rc = ST_EINTERNAL;

	*out = NULL;
	c = st_xcalloc(1, sizeof(*c));
	c->cred = *creds;
	memset(creds, 0, sizeof(*creds));
	(void)pthread_mutex_init(&c->lock, NULL);
	st_curl_pool_init(&c->pool);
	if (st_curl_global_init() != CURLE_OK) {
		rc = st_err_set(err, ST_EINTERNAL, "s3: libcurl initialisation failed");
		goto out;
	}
	if (c->cred.access_key == NULL || c->cred.secret_key == NULL) {
		rc = st_err_set(err, ST_EINVAL, "s3: no credentials");
		goto out;
	}
	if (o->bucket == NULL || !valid_bucket(o->bucket)) {
		rc = st_err_set(err, ST_EINVAL,
		                "s3: bucket name \"%s\" is invalid (3-63 of a-z 0-9 . - _)",
		                o->bucket ? o->bucket : "");
		goto out;
	}
	if (o->endpoint == NULL) {
		rc = st_err_set(err, ST_EINVAL, "s3: no endpoint");
		goto out;
	}
	c->bucket = st_xstrdup(o->bucket);
	if ((rc = parse_endpoint(c, o->endpoint, o->path_style, err)) < 0)
		goto out;
	c->region = st_xstrdup(o->region && o->region[0] ? o->region : "us-east-1");
	c->ca_file = o->ca_file ? st_xstrdup(o->ca_file) : NULL;
	c->insecure = o->insecure_skip_verify;
	c->max_retries = o->max_retries ? o->max_retries : 5;
	c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 10000;
	c->backoff_ms = o->backoff_ms ? o->backoff_ms : 200;
	c->part_size = o->part_size ? o->part_size : ST_S3_DEFAULT_PART_SIZE;
	if (c->part_size < ST_S3_MIN_PART_SIZE && o->part_size != 0)
		st_log_debug("s3: part size %llu below S3's 5 MiB minimum; servers may refuse it",
		             (unsigned long long)c->part_size);
	*out = c;
	c = NULL; /* transferred */
	rc = 0;
out:
	st_s3_client_free(c);
	return rc;
}

void st_s3_client_free(struct st_s3_client *c)
{
	if (c == NULL)
		return;
	st_curl_pool_dispose(&c->pool);
	(void)pthread_mutex_destroy(&c->lock);
	st_s3_credentials_dispose(&c->cred);
	free(c->base);
	free(c->host);
	free(c->path_prefix);
	free(c->bucket);
	free(c->region);
	free(c->ca_file);
	free(c);
}

/* ---- one HTTP exchange ---- */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	int rc;

	if (!x->status_known) {
		(void)curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->resp->status);
		x->status_known = true;
		x->whole_for_range = x->resp->status == 200 && x->range_off > 0;
	}
	if (x->resp->status >= 200 && x->resp->status < 300) {
		if (x->whole_for_range) {
			x->resp->cb_rc = ST_EPROTO;
			return 0;
		}
		if (x->r->wr != NULL) {
			if (n > x->left) {
				x->resp->cb_rc = ST_EPROTO;
				return 0;
			}
			x->left -= n;
			if ((rc = x->r->wr(p, n, x->r->wr_payload)) < 0) {
				x->resp->cb_rc = rc;
				return 0;
			}
			x->resp->delivered += n;
			return n;
		}
		if (st_buf_put(&x->resp->body, p, n) < 0) {
			x->resp->cb_rc = ST_ETOOBIG;
			return 0;
		}
		return n;
	}
	if (x->resp->body.len < ERR_BODY_CAP) {
		size_t keep =
		        n < ERR_BODY_CAP - x->resp->body.len ? n : ERR_BODY_CAP - x->resp->body.len;

		/* Below ERR_BODY_CAP this cannot fail; the tail of a long error body is dropped. */
		if (st_buf_put(&x->resp->body, p, keep) < 0)
			return n;
	}
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;

	if (n > 5 && strncasecmp(p, "ETag:", 5) == 0) {
		size_t l = n - 5;
		const char *v = p + 5;

		while (l > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			l--;
		}
		while (l > 0 && (v[l - 1] == '\r' || v[l - 1] == '\n' || v[l - 1] == ' '))
			l--;
		if (l < ETAG_SIZE) {
			memcpy(x->resp->etag, v, l);
			x->resp->etag[l] = '\0';
		}
	}
	if (n > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
		char tmp[32];
		char *end = NULL;
		size_t l = n - 15 < sizeof(tmp) - 1 ? n - 15 : sizeof(tmp) - 1;

		memcpy(tmp, p + 15, l);
		tmp[l] = '\0';
		errno = 0;
		x->resp->content_length = strtoull(tmp, &end, 10);
		x->resp->has_length = errno == 0 && end != tmp;
	}
	return n;
}

/* The request path: prefix, then the key encoded once (S3 canonical form). */
static int build_path(struct st_buf *path, const struct st_s3_client *c, const char *key)
{
	int rc;

	if ((rc = st_buf_puts(path, c->path_prefix)) < 0 || (rc = st_buf_putc(path, '/')) < 0)
		return rc;
	if (key != NULL)
		rc = st_sigv4_uri_encode(path, key, strlen(key), true);
	return rc;
}

static int sign(struct st_sigv4_signed *s, const struct st_s3_client *c, const struct req *r,
                const char *path, struct st_err *err)
{
	struct st_sigv4_header h[MAX_REQ_HEADERS + 1];
	struct st_sigv4_options o = ST_SIGV4_OPTIONS_INIT;
	struct st_sigv4_request rq;

	h[0] = (struct st_sigv4_header){ "host", c->host };
	memcpy(h + 1, r->h, r->nh * sizeof(r->h[0]));
	rq = (struct st_sigv4_request){ r->method, path, r->query, h, r->nh + 1, r->payload_hash };
	o.access_key = c->cred.access_key;
	o.secret_key = c->cred.secret_key;
	o.session_token = c->cred.session_token;
	o.region = c->region;
	o.service = "s3";
	o.when = time(NULL);
	o.normalize = false;
	o.content_sha256 = true;
	return st_sigv4_sign_headers(s, &rq, &o, err);
}

static struct curl_slist *add_hdr(struct curl_slist *l, bool *oom, const char *name,
                                  const char *value)
{
	char line[1024];
	struct curl_slist *n;

	(void)snprintf(line, sizeof(line), "%s: %s", name, value);
	n = curl_slist_append(l, line);
	explicit_bzero(line, sizeof(line));
	if (n == NULL)
		*oom = true;
	return n ? n : l;
}

static void set_transport(CURL *h, const struct st_s3_client *c)
{
	(void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	(void)curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
	/* A transfer that moves nothing for 60 s is dead; large objects take as long as needed. */
	(void)curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	(void)curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
	(void)curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	(void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
	(void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
	if (c->ca_file != NULL)
		(void)curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	(void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	(void)curl_easy_setopt(h, CURLOPT_USERAGENT, "stasis");
	/* Larger transfer buffers: fewer callbacks and syscalls per part. */
	(void)curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER);
	(void)curl_easy_setopt(h, CURLOPT_BUFFERSIZE, DOWNLOAD_BUFFER);
}

/* Sends r once. Returns the libcurl code; the status and body land in resp. */
static CURLcode perform(CURL *h, const struct st_s3_client *c, const struct req *r,
                        struct resp *resp, uint64_t range_off, uint64_t left, struct st_err *err)
{
	struct st_buf path = ST_BUF_INIT(ST_SIGV4_CAP);
	struct st_buf url = ST_BUF_INIT(ST_SIGV4_CAP);
	struct st_sigv4_signed s;
	struct curl_slist *hl = NULL;
	struct xfer x = { r, resp, h, { r->body, r->body_len, 0 }, false, false, range_off, left };
	bool oom = false;
	size_t i;
	CURLcode cc = CURLE_FAILED_INIT;

	st_sigv4_signed_init(&s);
	if (build_path(&path, c, r->key) < 0 ||
	    st_buf_printf(&url, "%s%s%s%s", c->base, st_buf_cstr(&path), r->query ? "?" : "",
	                  r->query ? r->query : "") < 0) {
		(void)st_err_set(err, ST_ETOOBIG, "s3: key too long");
		goto out;
	}
	if (sign(&s, c, r, st_buf_cstr(&path), err) < 0)
		goto out;
	hl = add_hdr(hl, &oom, "Host", c->host);
	for (i = 0; i < r->nh; i++)
		hl = add_hdr(hl, &oom, r->h[i].name, r->h[i].value);
	for (i = 0; i < s.n_add; i++)
		hl = add_hdr(hl, &oom, s.add[i].name, s.add[i].value);
	/* No 100-continue round trip: errors come back after the body, which is bounded. */
	hl = curl_slist_append(hl, "Expect:");
	if (oom || hl == NULL) {
		(void)st_err_set(err, ST_ENOMEM, "s3: out of memory building request headers");
		goto out;
	}
	curl_easy_reset(h);
	set_transport(h, c);
	(void)curl_easy_setopt(h, CURLOPT_URL, st_buf_cstr(&url));
	(void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	(void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	(void)curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	(void)curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	(void)curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	if (strcmp(r->method, "HEAD") == 0) {
		(void)curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (r->body != NULL) {
		st_curl_set_body(h, &x.body);
		(void)curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	} else if (strcmp(r->method, "GET") != 0) {
		(void)curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
	cc = curl_easy_perform(h);
	(void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
out:
	curl_slist_free_all(hl);
	st_sigv4_signed_dispose(&s);
	st_buf_dispose(&path);
	st_buf_dispose(&url);
	return cc;
}

/* ---- errors ---- */

static const char *hint_for(const char *code, long status)
{
	static const struct {
		const char *code;
		const char *hint;
	} hints[] = {
		{ "SignatureDoesNotMatch",
		  "wrong credentials: check the secret key (and the region)" },
		{ "InvalidAccessKeyId", "wrong credentials: the access key id is unknown" },
		{ "AccessDenied", "the credentials are not allowed to do this (or are wrong)" },
		{ "RequestTimeTooSkewed", "clock skew: sync this host's clock (NTP)" },
		{ "NoSuchBucket", "missing bucket: create it or fix the bucket in the URL" },
		{ "AuthorizationHeaderMalformed", "wrong region: set region= in the URL" },
		{ "PermanentRedirect", "wrong endpoint or region for this bucket" },
		{ "InvalidBucketName", "fix the bucket name in the URL" },
	};
	size_t i;

	for (i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
		if (strcmp(code, hints[i].code) == 0)
			return hints[i].hint;
	}
	if (status == 403)
		return "access denied: wrong credentials or missing permission";
	if (status == 301 || status == 307)
		return "wrong endpoint or region for this bucket";
	return NULL;
}

static const char *status_code(long status)
{
	switch (status) {
	case 400:
		return "BadRequest";
	case 403:
		return "Forbidden";
	case 404:
		return "NotFound";
	case 412:
		return "PreconditionFailed";
	case 501:
		return "NotImplemented";
	case 503:
		return "ServiceUnavailable";
	default:
		return status >= 500 ? "ServerError" : "HTTPError";
	}
}

static int http_error(const struct st_s3_client *c, const struct req *r, const struct resp *resp,
                      struct st_err *err)
{
	struct st_s3_xml_error x;
	const char *code;
	const char *hint;
	int rc = resp->status == 404 ? ST_ENOTFOUND : ST_EUPSTREAM;

	if (resp->body.len == 0 || st_s3_xml_error(&x, resp->body.ptr, resp->body.len) < 0)
		memset(&x, 0, sizeof(x));
	code = x.code[0] ? x.code : status_code(resp->status);
	hint = hint_for(code, resp->status);
	if (resp->status == 400 && strcmp(code, "RequestTimeTooSkewed") != 0)
		rc = ST_EINVAL;
	return st_err_set(err, rc, "s3 %s %s/%s: %s (HTTP %ld)%s%s%s%s", r->method, c->bucket,
	                  r->key ? r->key : "", code, resp->status, hint ? "; " : "",
	                  hint ? hint : "", x.message[0] ? ": " : "", x.message);
}

static bool retryable_status(const struct resp *resp)
{
	if (resp->status >= 500 && resp->status != 501)
		return true;
	if (resp->status == 429 || resp->status == 408)
		return true;
	/* S3 asks for a retry of an idle upload with 400 RequestTimeout. */
	return resp->status == 400 && resp->body.len > 0 &&
	       memmem(resp->body.ptr, resp->body.len, "<Code>RequestTimeout</Code>", 27) != NULL;
}

static bool accepted(const struct req *r, long status)
{
	size_t i;

	if (status >= 200 && status < 300)
		return true;
	for (i = 0; i < sizeof(r->accept) / sizeof(r->accept[0]); i++) {
		if (r->accept[i] != 0 && r->accept[i] == status)
			return true;
	}
	return false;
}

static int transport_error(const struct st_s3_client *c, const struct req *r, CURLcode cc,
                           unsigned attempts, struct st_err *err)
{
	int code = st_curl_code(cc);
	bool tls = code == ST_ETLS;

	return st_err_set(
	        err, code, "s3 %s %s/%s: %s after %u attempt%s; %s %s%s", r->method, c->bucket,
	        r->key ? r->key : "", curl_easy_strerror(cc), attempts, attempts == 1 ? "" : "s",
	        tls ? "TLS verification failed for" : "cannot reach the endpoint", c->base,
	        tls ? ": set caFile= to the server's CA "
	              "(insecureSkipTLSVerify=true only for tests)"
	            : ": check endpoint= and that the server is running");
}

/*
 * Sends r with retries. Returns 0 when the final status is 2xx or in
 * r->accept (resp->status tells which), else a negative ST_E* with err set.
 * A streamed GET that broke mid-body resumes where it stopped.
 */
static int request(struct st_s3_client *c, struct req *r, struct resp *resp, uint64_t off,
                   uint64_t len, struct st_err *err)
{
	CURL *h = st_curl_pool_take(&c->pool);
	char range[64];
	unsigned attempt;
	int rc = ST_EINTERNAL;

	if (h == NULL)
		return st_err_set(err, ST_ENOMEM, "s3: cannot create a libcurl handle");
	for (attempt = 0;; attempt++) {
		uint64_t o = off + resp->delivered;
		size_t nh = r->nh;
		CURLcode cc;

		resp->status = 0;
		resp->etag[0] = '\0';
		resp->has_length = false;
		st_buf_clear(&resp->body);
		if (r->wr != NULL && (o > 0 || len != UINT64_MAX)) {
			if (len != UINT64_MAX)
				(void)snprintf(range, sizeof(range), "bytes=%llu-%llu",
				               (unsigned long long)o,
				               (unsigned long long)(off + len - 1));
			else
				(void)snprintf(range, sizeof(range), "bytes=%llu-",
				               (unsigned long long)o);
			r->h[r->nh++] = (struct st_sigv4_header){ "Range", range };
		}
		cc = perform(h, c, r, resp, o, len == UINT64_MAX ? UINT64_MAX : off + len - o, err);
		r->nh = nh;
		st_log_debug("s3 %s %s/%s: attempt %u, curl %d, HTTP %ld", r->method, c->bucket,
		             r->key ? r->key : "", attempt + 1, (int)cc, resp->status);
		if (resp->cb_rc != 0) {
			rc = st_err_set(err, resp->cb_rc, "s3 %s %s/%s: %s", r->method, c->bucket,
			                r->key ? r->key : "",
			                resp->cb_rc == ST_EPROTO
			                        ? "server ignored the requested Range"
			                : resp->cb_rc == ST_ETOOBIG ? "response body too large"
			                                            : "aborted by the consumer");
			goto out;
		}
		if (cc == CURLE_FAILED_INIT && err != NULL && err->code != 0) {
			rc = err->code;
			goto out;
		}
		if (cc != CURLE_OK && !st_curl_retryable(cc)) {
			rc = transport_error(c, r, cc, attempt + 1, err);
			goto out;
		}
		if (cc == CURLE_OK && !retryable_status(resp)) {
			rc = accepted(r, resp->status) ? 0 : http_error(c, r, resp, err);
			goto out;
		}
		if (attempt >= c->max_retries) {
			rc = cc != CURLE_OK ? transport_error(c, r, cc, attempt + 1, err)
			                    : http_error(c, r, resp, err);
			goto out;
		}
		st_log_warn("s3 %s %s/%s: %s, retrying (attempt %u of %u)", r->method, c->bucket,
		            r->key ? r->key : "",
		            cc != CURLE_OK ? curl_easy_strerror(cc) : status_code(resp->status),
		            attempt + 2, c->max_retries + 1);
		st_curl_backoff(c->backoff_ms, BACKOFF_CAP_MS, attempt);
	}
out:
	st_curl_pool_give(&c->pool, h);
	return rc;
}

static void resp_init(struct resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	st_buf_init(&resp->body, ST_CAP_S3_XML);
}

/* Sets the payload hash: sha256 over http, UNSIGNED-PAYLOAD where TLS protects the body. */
static void set_body(struct req *r, const struct st_s3_client *c, const char *body, size_t len)
{
	r->body = body;
	r->body_len = len;
	if (c->https)
		(void)snprintf(r->payload_hash, sizeof(r->payload_hash), "%s",
		               ST_SIGV4_UNSIGNED_PAYLOAD);
	else
		st_sigv4_sha256_hex(r->payload_hash, body, len);
}

static void req_init(struct req *r, const char *method, const char *key, const char *query)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->key = key;
	r->query = query;
	(void)snprintf(r->payload_hash, sizeof(r->payload_hash), "%s", ST_SIGV4_EMPTY_SHA256);
}

/* ---- operations ---- */

int st_s3_head(struct st_s3_client *c, const char *key, uint64_t *size_out, struct st_err *err)
{
	struct req r;
	struct resp resp;
	int rc;

	req_init(&r, "HEAD", key, NULL);
	resp_init(&resp);
	if ((rc = request(c, &r, &resp, 0, 0, err)) < 0)
		goto out;
	if (!resp.has_length) {
		rc = st_err_set(err, ST_EPROTO, "s3 HEAD %s/%s: no Content-Length", c->bucket, key);
		goto out;
	}
	if (size_out != NULL)
		*size_out = resp.content_length;
	rc = 0;
out:
	st_buf_dispose(&resp.body);
	return rc;
}

int st_s3_get(struct st_s3_client *c, const char *key, uint64_t off, uint64_t len,
              st_s3_write_cb wr, void *payload, struct st_err *err)
{
	struct req r;
	struct resp resp;
	int rc;

	if (len == 0)
		return 0;
	if (len != UINT64_MAX && off + len < off)
		return st_err_set(err, ST_EINVAL, "s3 GET %s/%s: range overflows", c->bucket, key);
	req_init(&r, "GET", key, NULL);
	r.wr = wr;
	r.wr_payload = payload;
	resp_init(&resp);
	rc = request(c, &r, &resp, off, len, err);
	st_buf_dispose(&resp.body);
	return rc;
}

int st_s3_delete(struct st_s3_client *c, const char *key, struct st_err *err)
{
	struct req r;
	struct resp resp;
	int rc;

	req_init(&r, "DELETE", key, NULL);
	r.accept[0] = 404;
	resp_init(&resp);
	rc = request(c, &r, &resp, 0, 0, err);
	st_buf_dispose(&resp.body);
	return rc;
}

int st_s3_create_bucket(struct st_s3_client *c, struct st_err *err)
{
	struct req r;
	struct resp resp;
	struct st_s3_xml_error x;
	int rc;

	req_init(&r, "PUT", NULL, NULL);
	r.accept[0] = 409;
	resp_init(&resp);
	if ((rc = request(c, &r, &resp, 0, 0, err)) < 0)
		goto out;
	if (resp.status == 409 &&
	    (st_s3_xml_error(&x, resp.body.ptr ? resp.body.ptr : "", resp.body.len) < 0 ||
	     strcmp(x.code, "BucketAlreadyOwnedByYou") != 0)) {
		r.accept[0] = 0;
		rc = http_error(c, &r, &resp, err);
		goto out;
	}
	rc = 0;
out:
	st_buf_dispose(&resp.body);
	return rc;
}

struct list_state {
	st_s3_list_cb cb;
	void *payload;
	int cb_rc;
};

static int list_page_cb(const char *key, uint64_t size, void *payload)
{
	struct list_state *ls = payload;

	ls->cb_rc = ls->cb(key, size, ls->payload);
	return ls->cb_rc;
}

static int list_query(struct st_buf *q, const char *prefix, const char *token)
{
	int rc;

	st_buf_clear(q);
	if (token[0] != '\0') {
		if ((rc = st_buf_puts(q, "continuation-token=")) < 0 ||
		    (rc = st_sigv4_uri_encode(q, token, strlen(token), false)) < 0 ||
		    (rc = st_buf_putc(q, '&')) < 0)
			return rc;
	}
	if ((rc = st_buf_puts(q, "list-type=2&max-keys=1000&prefix=")) < 0)
		return rc;
	return st_sigv4_uri_encode(q, prefix, strlen(prefix), false);
}

int st_s3_list(struct st_s3_client *c, const char *prefix, st_s3_list_cb cb, void *payload,
               struct st_err *err)
{
	struct st_buf q = ST_BUF_INIT(ST_SIGV4_CAP);
	struct list_state ls = { cb, payload, 0 };
	char token[1024] = "";
	struct resp resp;
	bool more = true;
	int rc = 0;

	resp_init(&resp);
	while (more) {
		struct req r;

		if ((rc = list_query(&q, prefix ? prefix : "", token)) < 0) {
			rc = st_err_set(err, rc, "s3 list %s: prefix too long", c->bucket);
			break;
		}
		req_init(&r, "GET", NULL, st_buf_cstr(&q));
		if ((rc = request(c, &r, &resp, 0, 0, err)) < 0)
			break;
		rc = st_s3_xml_list(&more, token, sizeof(token), resp.body.ptr ? resp.body.ptr : "",
		                    resp.body.len, list_page_cb, &ls);
		if (ls.cb_rc != 0) {
			rc = ls.cb_rc;
			break;
		}
		if (rc < 0) {
			rc = st_err_set(err, rc, "s3 list %s/%s: malformed ListObjectsV2 response",
			                c->bucket, prefix ? prefix : "");
			break;
		}
	}
	st_buf_dispose(&resp.body);
	st_buf_dispose(&q);
	return rc;
}

static int xml_escape(struct st_buf *b, const char *s)
{
	static const char special[] = "&<>\"'";
	static const char *const entity[] = { "&amp;", "&lt;", "&gt;", "&quot;", "&apos;" };
	int rc = 0;

	for (; *s != '\0' && rc == 0; s++) {
		const char *e = strchr(special, *s);

		rc = e != NULL ? st_buf_puts(b, entity[e - special]) : st_buf_putc(b, *s);
	}
	return rc;
}

static void content_md5(char out[32], const void *data, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	out[0] = '\0';
	if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) == 1 && n == 16)
		(void)EVP_EncodeBlock((unsigned char *)out, md, 16);
}

static int delete_batch(struct st_s3_client *c, const char *const *keys, size_t n,
                        struct st_err *err)
{
	struct st_buf body = ST_BUF_INIT(ST_CAP_S3_XML);
	struct st_s3_xml_error x;
	struct resp resp;
	struct req r;
	char md5[32];
	size_t i;
	int rc;

	resp_init(&resp);
	rc = st_buf_puts(&body, "<Delete><Quiet>true</Quiet>");
	for (i = 0; i < n && rc == 0; i++) {
		if ((rc = st_buf_puts(&body, "<Object><Key>")) == 0 &&
		    (rc = xml_escape(&body, keys[i])) == 0)
			rc = st_buf_puts(&body, "</Key></Object>");
	}
	if (rc == 0)
		rc = st_buf_puts(&body, "</Delete>");
	if (rc < 0) {
		rc = st_err_set(err, rc, "s3 delete %s: request too large", c->bucket);
		goto out;
	}
	content_md5(md5, body.ptr, body.len);
	req_init(&r, "POST", NULL, "delete");
	r.h[r.nh++] = (struct st_sigv4_header){ "Content-MD5", md5 };
	r.h[r.nh++] = (struct st_sigv4_header){ "Content-Type", "application/xml" };
	set_body(&r, c, body.ptr, body.len);
	if ((rc = request(c, &r, &resp, 0, 0, err)) < 0)
		goto out;
	/* Quiet mode lists only the keys that failed. */
	if (resp.body.len > 0 && st_s3_xml_error(&x, resp.body.ptr, resp.body.len) == 0) {
		rc = st_err_set(err, ST_EUPSTREAM, "s3 delete %s/%s: %s%s%s", c->bucket, x.key,
		                x.code, x.message[0] ? ": " : "", x.message);
		goto out;
	}
	rc = 0;
out:
	st_buf_dispose(&body);
	st_buf_dispose(&resp.body);
	return rc;
}

int st_s3_delete_many(struct st_s3_client *c, const char *const *keys, size_t n, struct st_err *err)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i += DELETE_BATCH) {
		if ((rc = delete_batch(c, keys + i, n - i < DELETE_BATCH ? n - i : DELETE_BATCH,
		                       err)) < 0)
			return rc;
	}
	return 0;
}

/* ---- uploads ---- */

/* Reads from rd until cap bytes or the end; *got says how many. */
static int fill(size_t *got, char *buf, size_t cap, st_s3_read_cb rd, void *payload)
{
	long n;

	*got = 0;
	while (*got < cap) {
		n = rd(buf + *got, cap - *got, payload);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		if ((size_t)n > cap - *got)
			return ST_EINTERNAL;
		*got += (size_t)n;
	}
	return 0;
}

static bool inm_unsupported(struct st_s3_client *c)
{
	bool v;

	(void)pthread_mutex_lock(&c->lock);
	v = c->inm_unsupported;
	(void)pthread_mutex_unlock(&c->lock);
	return v;
}

/* HEAD-then-PUT for servers without conditional writes: 1 if key exists, 0 if not. */
static int exists(struct st_s3_client *c, const char *key, struct st_err *err)
{
	struct st_err e2 = ST_ERR_INIT;
	int rc = st_s3_head(c, key, NULL, &e2);

	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc < 0)
		return st_err_set(err, rc, "%s", st_err_text(&e2));
	return 1;
}

static int put_single(struct st_s3_client *c, const char *key, const char *data, size_t len,
                      bool if_none_match, struct st_err *err)
{
	struct req r;
	struct resp resp;
	bool cond = if_none_match && !inm_unsupported(c);
	int rc;

	resp_init(&resp);
	if (if_none_match && !cond && (rc = exists(c, key, err)) != 0)
		goto out;
	req_init(&r, "PUT", key, NULL);
	set_body(&r, c, data, len);
	if (cond) {
		r.h[r.nh++] = (struct st_sigv4_header){ "If-None-Match", "*" };
		r.accept[0] = 412;
		r.accept[1] = 501;
	}
	if ((rc = request(c, &r, &resp, 0, 0, err)) < 0)
		goto out;
	if (resp.status == 412) {
		rc = 1;
		goto out;
	}
	if (resp.status == 501) {
		st_log_info("s3 %s: server does not support If-None-Match on PUT; using HEAD first",
		            c->bucket);
		(void)pthread_mutex_lock(&c->lock);
		c->inm_unsupported = true;
		(void)pthread_mutex_unlock(&c->lock);
		st_buf_dispose(&resp.body);
		return put_single(c, key, data, len, if_none_match, err);
	}
	rc = 0;
out:
	st_buf_dispose(&resp.body);
	return rc;
}

struct upload {
	struct st_s3_client *c;
	const char *key;
	char id[512];
	char id_enc[1600];
	struct st_buf parts; /* <Part> elements of the completion request */
	unsigned n;
};

static int mpu_create(struct upload *u, struct st_err *err)
{
	struct st_buf e = ST_BUF_INIT(sizeof(u->id_enc) - 1);
	struct resp resp;
	struct req r;
	int rc;

	resp_init(&resp);
	req_init(&r, "POST", u->key, "uploads");
	if ((rc = request(u->c, &r, &resp, 0, 0, err)) < 0)
		goto out;
	if (st_s3_xml_text(u->id, sizeof(u->id), resp.body.ptr ? resp.body.ptr : "", resp.body.len,
	                   "UploadId") < 0 ||
	    u->id[0] == '\0' || st_sigv4_uri_encode(&e, u->id, strlen(u->id), false) < 0) {
		rc = st_err_set(err, ST_EPROTO, "s3 multipart %s/%s: no usable UploadId",
		                u->c->bucket, u->key);
		goto out;
	}
	(void)snprintf(u->id_enc, sizeof(u->id_enc), "%s", st_buf_cstr(&e));
	rc = 0;
out:
	st_buf_dispose(&e);
	st_buf_dispose(&resp.body);
	return rc;
}

static int mpu_part(struct upload *u, const char *data, size_t len, struct st_err *err)
{
	char q[1700];
	struct resp resp;
	struct req r;
	int rc;

	if (u->n == ST_S3_MAX_PARTS)
		return st_err_set(err, ST_ETOOBIG, "s3 multipart %s/%s: more than %u parts",
		                  u->c->bucket, u->key, ST_S3_MAX_PARTS);
	u->n++;
	(void)snprintf(q, sizeof(q), "partNumber=%u&uploadId=%s", u->n, u->id_enc);
	resp_init(&resp);
	req_init(&r, "PUT", u->key, q);
	set_body(&r, u->c, data, len);
	if ((rc = request(u->c, &r, &resp, 0, 0, err)) < 0)
		goto out;
	if (resp.etag[0] == '\0') {
		rc = st_err_set(err, ST_EPROTO, "s3 multipart %s/%s: part %u without ETag",
		                u->c->bucket, u->key, u->n);
		goto out;
	}
	if ((rc = st_buf_printf(&u->parts, "<Part><PartNumber>%u</PartNumber><ETag>", u->n)) < 0 ||
	    (rc = xml_escape(&u->parts, resp.etag)) < 0 ||
	    (rc = st_buf_puts(&u->parts, "</ETag></Part>")) < 0)
		rc = st_err_set(err, rc, "s3 multipart %s/%s: too many parts", u->c->bucket,
		                u->key);
out:
	st_buf_dispose(&resp.body);
	return rc;
}

static int mpu_complete(struct upload *u, struct st_err *err)
{
	struct st_buf body = ST_BUF_INIT(ST_CAP_S3_XML);
	char q[1700];
	struct resp resp;
	struct req r;
	int rc;

	resp_init(&resp);
	if ((rc = st_buf_printf(&body, "<CompleteMultipartUpload>%s</CompleteMultipartUpload>",
	                        st_buf_cstr(&u->parts))) < 0) {
		rc = st_err_set(err, rc, "s3 multipart %s/%s: too many parts", u->c->bucket,
		                u->key);
		goto out;
	}
	(void)snprintf(q, sizeof(q), "uploadId=%s", u->id_enc);
	req_init(&r, "POST", u->key, q);
	r.h[r.nh++] = (struct st_sigv4_header){ "Content-Type", "application/xml" };
	set_body(&r, u->c, body.ptr, body.len);
	if ((rc = request(u->c, &r, &resp, 0, 0, err)) < 0)
		goto out;
	/* S3 may report a failed completion inside a 200 response. */
	if (resp.body.len > 0 && memmem(resp.body.ptr, resp.body.len, "<Error>", 7) != NULL) {
		resp.status = 500;
		rc = http_error(u->c, &r, &resp, err);
		goto out;
	}
	rc = 0;
out:
	st_buf_dispose(&body);
	st_buf_dispose(&resp.body);
	return rc;
}

static void mpu_abort(struct upload *u)
{
	struct st_err e = ST_ERR_INIT;
	char q[1700];
	struct resp resp;
	struct req r;

	(void)snprintf(q, sizeof(q), "uploadId=%s", u->id_enc);
	resp_init(&resp);
	req_init(&r, "DELETE", u->key, q);
	r.accept[0] = 404;
	if (request(u->c, &r, &resp, 0, 0, &e) < 0)
		st_log_warn("s3 multipart %s/%s: abort failed, the parts stay until a lifecycle "
		            "rule removes them: %s",
		            u->c->bucket, u->key, st_err_text(&e));
	st_buf_dispose(&resp.body);
}

/*
 * Multipart upload of an object whose first part_size bytes are in buf (with
 * carry further bytes already read past them); reads the rest from rd.
 */
static int put_multipart(struct st_s3_client *c, const char *key, char *buf, size_t have,
                         uint64_t size, st_s3_read_cb rd, void *payload, struct st_err *err)
{
	struct upload u;
	size_t part = (size_t)c->part_size;
	uint64_t sent = 0;
	int rc;

	memset(&u, 0, sizeof(u));
	u.c = c;
	u.key = key;
	st_buf_init(&u.parts, ST_CAP_S3_XML);
	if ((rc = mpu_create(&u, err)) < 0)
		goto out;
	for (;;) {
		size_t n = have < part ? have : part;
		size_t got = 0;

		if ((rc = mpu_part(&u, buf, n, err)) < 0)
			break;
		sent += n;
		/* Bytes read past the part (the end-of-data probe) move to the front. */
		memmove(buf, buf + n, have - n);
		have -= n;
		if (size != UINT64_MAX && sent + have >= size && have == 0)
			break;
		if ((rc = fill(&got, buf + have, part + 1 - have, rd, payload)) < 0) {
			rc = st_err_set(err, rc, "s3 PUT %s/%s: reading the data failed", c->bucket,
			                key);
			break;
		}
		have += got;
		if (have == 0)
			break;
	}
	if (rc == 0 && size != UINT64_MAX && sent != size)
		rc = st_err_set(err, ST_EIO, "s3 PUT %s/%s: got %llu bytes, expected %llu",
		                c->bucket, key, (unsigned long long)sent, (unsigned long long)size);
	if (rc == 0)
		rc = mpu_complete(&u, err);
	if (rc < 0)
		mpu_abort(&u);
out:
	st_buf_dispose(&u.parts);
	return rc;
}

int st_s3_put(struct st_s3_client *c, const char *key, uint64_t size, st_s3_read_cb rd,
              void *payload, bool if_none_match, struct st_err *err)
{
	size_t part = (size_t)c->part_size;
	size_t cap = size != UINT64_MAX && size < part ? (size_t)size : part + 1;
	char *buf = st_xmalloc(cap + 1);
	size_t have = 0;
	int rc;

	if (size != UINT64_MAX && size > (uint64_t)part * ST_S3_MAX_PARTS) {
		rc = st_err_set(err, ST_ETOOBIG, "s3 PUT %s/%s: %llu bytes need more than %u parts",
		                c->bucket, key, (unsigned long long)size, ST_S3_MAX_PARTS);
		goto out;
	}
	if ((rc = fill(&have, buf, cap, rd, payload)) < 0) {
		rc = st_err_set(err, rc, "s3 PUT %s/%s: reading the data failed", c->bucket, key);
		goto out;
	}
	if (size != UINT64_MAX && size <= part && have != size) {
		rc = st_err_set(err, ST_EIO, "s3 PUT %s/%s: got %zu bytes, expected %llu",
		                c->bucket, key, have, (unsigned long long)size);
		goto out;
	}
	if (have <= part) {
		rc = put_single(c, key, buf, have, if_none_match, err);
		goto out;
	}
	/* Multipart: the condition is checked up front (S3 applies it only at completion). */
	if (if_none_match && (rc = exists(c, key, err)) != 0)
		goto out;
	rc = put_multipart(c, key, buf, have, size, rd, payload, err);
out:
	free(buf);
	return rc;
}

int st_s3_put_mem(struct st_s3_client *c, const char *key, const void *data, size_t len,
                  bool if_none_match, struct st_err *err)
{
	struct st_mem_reader m = { data, len };

	/* A NULL body would make the PUT go out without one. */
	if (len <= c->part_size)
		return put_single(c, key, data != NULL ? data : "", len, if_none_match, err);
	return st_s3_put(c, key, len, st_mem_read, &m, if_none_match, err);
}

int st_s3_count_uploads(struct st_s3_client *c, const char *prefix, unsigned *n_out,
                        struct st_err *err)
{
	struct st_buf q = ST_BUF_INIT(ST_SIGV4_CAP);
	struct st_s3__span sp;
	struct resp resp;
	struct req r;
	const char *p;
	int rc;

	*n_out = 0;
	resp_init(&resp);
	if ((rc = st_buf_puts(&q, "prefix=")) < 0 ||
	    (rc = st_sigv4_uri_encode(&q, prefix, strlen(prefix), false)) < 0 ||
	    (rc = st_buf_puts(&q, "&uploads=")) < 0) {
		rc = st_err_set(err, rc, "s3 list uploads %s: prefix too long", c->bucket);
		goto out;
	}
	req_init(&r, "GET", NULL, st_buf_cstr(&q));
	if ((rc = request(c, &r, &resp, 0, 0, err)) < 0)
		goto out;
	p = resp.body.ptr;
	while (p != NULL && st_s3__xml_find(&sp, &p, p, resp.body.ptr + resp.body.len, "Upload"))
		(*n_out)++;
	rc = 0;
out:
	st_buf_dispose(&q);
	st_buf_dispose(&resp.body);
	return rc;
}
