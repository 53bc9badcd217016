#include "pkg/sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "pkg/util/mem.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
/* A request with more headers or query parameters than this is refused. */
#define MAX_ITEMS 256

static const char hexdig[] = "0123456789ABCDEF";

static void hex_lower(char *out, const unsigned char *p, size_t n)
{
	static const char lx[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = lx[p[i] >> 4];
		out[2 * i + 1] = lx[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

void st_sigv4_sha256_hex(char out[65], const void *data, size_t len)
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	hex_lower(out, md, sizeof(md));
}

void st_sigv4_amz_date(char out[17], time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) == 0)
		out[0] = '\0';
}

static int put_escaped(struct st_buf *out, unsigned char c)
{
	char e[3] = { '%', hexdig[c >> 4], hexdig[c & 15] };

	return st_buf_put(out, e, 3);
}

int st_sigv4_uri_encode(struct st_buf *out, const char *s, size_t n, bool keep_slash)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		unsigned char c = (unsigned char)s[i];

		if (unreserved(c) || (keep_slash && c == '/'))
			rc = st_buf_putc(out, (char)c);
		else
			rc = put_escaped(out, c);
	}
	return rc;
}

int st_sigv4_uri_decode(struct st_buf *out, const char *s, size_t n, bool strict)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
		    hexval((unsigned char)s[i + 2]) >= 0) {
			char c = (char)(hexval((unsigned char)s[i + 1]) * 16 +
			                hexval((unsigned char)s[i + 2]));

			if (strict && c == '\0')
				return ST_EINVAL;
			rc = st_buf_putc(out, c);
			i += 2;
		} else if (strict && s[i] == '%') {
			return ST_EINVAL;
		} else {
			rc = st_buf_putc(out, s[i]);
		}
	}
	return rc;
}

/* S3: each escape is decoded and the result encoded once, so nothing is encoded twice. */
static int canonical_uri_s3(struct st_buf *out, const char *path)
{
	struct st_buf dec = ST_BUF_INIT(ST_SIGV4_CAP);
	int rc;

	if ((rc = st_sigv4_uri_decode(&dec, path, strlen(path), false)) < 0)
		goto out;
	rc = st_sigv4_uri_encode(out, st_buf_cstr(&dec), dec.len, true);
out:
	st_buf_dispose(&dec);
	return rc;
}

/* Other services: remove "." and ".." segments and empty segments, then encode each byte. */
static int canonical_uri_normalized(struct st_buf *out, const char *path)
{
	const char *seg[MAX_ITEMS];
	size_t seglen[MAX_ITEMS];
	size_t nseg = 0;
	size_t plen = strlen(path);
	const char *p = path;
	size_t i;
	int rc = 0;

	while (*p != '\0') {
		const char *e = strchr(p, '/');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == 2 && p[0] == '.' && p[1] == '.') {
			if (nseg > 0)
				nseg--;
		} else if (l > 0 && !(l == 1 && p[0] == '.')) {
			if (nseg == MAX_ITEMS)
				return ST_ETOOBIG;
			seg[nseg] = p;
			seglen[nseg++] = l;
		}
		p += l;
		if (*p == '/')
			p++;
	}
	for (i = 0; i < nseg && rc == 0; i++) {
		if ((rc = st_buf_putc(out, '/')) == 0)
			rc = st_sigv4_uri_encode(out, seg[i], seglen[i], false);
	}
	if (rc == 0 && (nseg == 0 || (plen > 0 && path[plen - 1] == '/')))
		rc = st_buf_putc(out, '/');
	return rc;
}

int st_sigv4_canonical_uri(struct st_buf *out, const char *path, bool normalize)
{
	if (path == NULL || path[0] == '\0')
		return st_buf_putc(out, '/');
	return normalize ? canonical_uri_normalized(out, path) : canonical_uri_s3(out, path);
}

struct qparam {
	char *key;
	char *val;
};

static int cmp_qparam(const void *a, const void *b)
{
	const struct qparam *x = a;
	const struct qparam *y = b;
	int c = strcmp(x->key, y->key);

	return c != 0 ? c : strcmp(x->val, y->val);
}

/* Decodes then encodes s[0..n) into a new heap string. */
static int reencode(char **out, const char *s, size_t n)
{
	struct st_buf dec = ST_BUF_INIT(ST_SIGV4_CAP);
	struct st_buf enc = ST_BUF_INIT(ST_SIGV4_CAP);
	int rc;

	*out = NULL;
	if ((rc = st_sigv4_uri_decode(&dec, s, n, false)) < 0)
		goto out;
	if ((rc = st_sigv4_uri_encode(&enc, st_buf_cstr(&dec), dec.len, false)) < 0)
		goto out;
	*out = st_buf_detach(&enc, NULL);
out:
	st_buf_dispose(&dec);
	st_buf_dispose(&enc);
	return rc;
}

static void free_params(struct qparam *q, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(q[i].key);
		free(q[i].val);
	}
	free(q);
}

int st_sigv4_canonical_query(struct st_buf *out, const char *query)
{
	struct qparam *q = NULL;
	size_t n = 0;
	size_t i;
	const char *p = query;
	int rc = 0;

	if (query == NULL || query[0] == '\0')
		return 0;
	q = st_xcalloc(MAX_ITEMS, sizeof(*q));
	while (*p != '\0') {
		const char *amp = strchr(p, '&');
		size_t l = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', l);
		size_t kl = eq ? (size_t)(eq - p) : l;

		if (l > 0) {
			if (n == MAX_ITEMS) {
				rc = ST_ETOOBIG;
				goto out;
			}
			if ((rc = reencode(&q[n].key, p, kl)) < 0 ||
			    (rc = reencode(&q[n].val, eq ? eq + 1 : p + l, eq ? l - kl - 1 : 0)) <
			            0) {
				n++;
				goto out;
			}
			n++;
		}
		p += l;
		if (*p == '&')
			p++;
	}
	qsort(q, n, sizeof(*q), cmp_qparam);
	for (i = 0; i < n && rc == 0; i++)
		rc = st_buf_printf(out, "%s%s=%s", i ? "&" : "", q[i].key, q[i].val);
out:
	free_params(q, n);
	return rc;
}

struct hdr {
	char *name; /* lowercase */
	char *value;
	size_t order;
};

static int cmp_hdr(const void *a, const void *b)
{
	const struct hdr *x = a;
	const struct hdr *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Trims and collapses runs of blanks (including folded line breaks) to one space. */
static char *canonical_value(const char *v)
{
	size_t n = strlen(v);
	char *o = st_xmalloc(n + 1);
	size_t j = 0;
	bool blank = false;

	for (; *v != '\0'; v++) {
		bool b = *v == ' ' || *v == '\t' || *v == '\r' || *v == '\n';

		if (b) {
			blank = j > 0;
			continue;
		}
		if (blank)
			o[j++] = ' ';
		blank = false;
		o[j++] = *v;
	}
	o[j] = '\0';
	return o;
}

static char *lower_dup(const char *s)
{
	char *d = st_xstrdup(s);
	char *p;

	for (p = d; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return d;
}

static bool has_header(const struct st_sigv4_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->n_headers; i++) {
		if (strcasecmp(req->headers[i].name, name) == 0)
			return true;
	}
	return false;
}

/*
 * Appends the canonical headers block and fills out->signed_headers from the
 * request headers plus extra[0..n_extra).
 */
static int canonical_headers(struct st_buf *cr, struct st_sigv4_signed *out,
                             const struct st_sigv4_request *req,
                             const struct st_sigv4_header *extra, size_t n_extra)
{
	size_t total = req->n_headers + n_extra;
	struct hdr *h = NULL;
	size_t i;
	int rc = 0;

	if (total > MAX_ITEMS)
		return ST_ETOOBIG;
	h = st_xcalloc(total ? total : 1, sizeof(*h));
	for (i = 0; i < total; i++) {
		const struct st_sigv4_header *s =
		        i < req->n_headers ? &req->headers[i] : &extra[i - req->n_headers];

		h[i].name = lower_dup(s->name);
		h[i].value = canonical_value(s->value);
		h[i].order = i;
	}
	qsort(h, total, sizeof(*h), cmp_hdr);
	for (i = 0; i < total && rc == 0; i++) {
		bool same = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
		bool last = i + 1 == total || strcmp(h[i].name, h[i + 1].name) != 0;

		if (same)
			rc = st_buf_printf(cr, ",%s", h[i].value);
		else
			rc = st_buf_printf(cr, "%s:%s", h[i].name, h[i].value);
		if (rc == 0 && last)
			rc = st_buf_putc(cr, '\n');
		if (rc == 0 && !same)
			rc = st_buf_printf(&out->signed_headers, "%s%s", i ? ";" : "", h[i].name);
	}
	for (i = 0; i < total; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	free(h);
	return rc;
}

/* Builds the canonical request into out->canonical_request. */
static int canonical_request(struct st_sigv4_signed *out, const struct st_sigv4_request *req,
                             const char *query, const struct st_sigv4_header *extra, size_t n_extra,
                             bool normalize)
{
	struct st_buf *cr = &out->canonical_request;
	int rc;

	if ((rc = st_buf_printf(cr, "%s\n", req->method)) < 0 ||
	    (rc = st_sigv4_canonical_uri(cr, req->path, normalize)) < 0 ||
	    (rc = st_buf_putc(cr, '\n')) < 0 || (rc = st_sigv4_canonical_query(cr, query)) < 0 ||
	    (rc = st_buf_putc(cr, '\n')) < 0 ||
	    (rc = canonical_headers(cr, out, req, extra, n_extra)) < 0)
		return rc;
	return st_buf_printf(cr, "\n%s\n%s", st_buf_cstr(&out->signed_headers),
	                     req->payload_hash ? req->payload_hash : ST_SIGV4_EMPTY_SHA256);
}

static int hmac(unsigned char out[32], const void *key, size_t klen, const void *msg, size_t mlen)
{
	unsigned int olen = 32;

	if (HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen) == NULL || olen != 32)
		return ST_EINTERNAL;
	return 0;
}

/* Derives the signing key into out->key; intermediate keys are wiped. */
static int derive_key(struct st_sigv4_signed *out, const struct st_sigv4_options *o)
{
	size_t slen = strlen(o->secret_key) + 4;
	char *k0 = st_xmalloc(slen + 1);
	unsigned char a[32];
	unsigned char b[32];
	int rc;

	(void)snprintf(k0, slen + 1, "AWS4%s", o->secret_key);
	if ((rc = hmac(a, k0, slen, out->amz_date, 8)) < 0 ||
	    (rc = hmac(b, a, 32, o->region, strlen(o->region))) < 0 ||
	    (rc = hmac(a, b, 32, o->service, strlen(o->service))) < 0 ||
	    (rc = hmac(out->key, a, 32, "aws4_request", 12)) < 0)
		goto out;
out:
	st_freezero(k0, slen + 1);
	explicit_bzero(a, sizeof(a));
	explicit_bzero(b, sizeof(b));
	return rc;
}

/* String to sign and signature, from the canonical request already built. */
static int sign(struct st_sigv4_signed *out, const struct st_sigv4_options *o)
{
	char crh[65];
	unsigned char sig[32];
	int rc;

	st_sigv4_sha256_hex(crh, out->canonical_request.ptr, out->canonical_request.len);
	if ((rc = st_buf_printf(&out->string_to_sign, ALGORITHM "\n%s\n%s\n%s", out->amz_date,
	                        out->scope, crh)) < 0)
		return rc;
	if ((rc = derive_key(out, o)) < 0)
		return rc;
	if ((rc = hmac(sig, out->key, 32, out->string_to_sign.ptr, out->string_to_sign.len)) < 0)
		return rc;
	hex_lower(out->signature, sig, sizeof(sig));
	return 0;
}

static int prepare(struct st_sigv4_signed *out, const struct st_sigv4_request *req,
                   const struct st_sigv4_options *o, struct st_err *err)
{
	int n;

	if (req->method == NULL || req->path == NULL || o->access_key == NULL ||
	    o->secret_key == NULL || o->region == NULL || o->service == NULL)
		return st_err_set(err, ST_EINVAL, "sigv4: incomplete request or credentials");
	if (o->access_key[0] == '\0' || o->secret_key[0] == '\0')
		return st_err_set(err, ST_EINVAL, "sigv4: empty access key or secret key");
	st_sigv4_amz_date(out->amz_date, o->when);
	n = snprintf(out->scope, sizeof(out->scope), "%.8s/%s/%s/aws4_request", out->amz_date,
	             o->region, o->service);
	if (n < 0 || (size_t)n >= sizeof(out->scope))
		return st_err_set(err, ST_EINVAL, "sigv4: region or service name too long");
	return 0;
}

static void add_header(struct st_sigv4_signed *out, const char *name, char *value)
{
	ST_ASSERT(out->n_add < ST_SIGV4_MAX_ADD);
	out->owned[out->n_add] = value;
	out->add[out->n_add].name = name;
	out->add[out->n_add].value = value;
	out->n_add++;
}

int st_sigv4_sign_headers(struct st_sigv4_signed *out, const struct st_sigv4_request *req,
                          const struct st_sigv4_options *o, struct st_err *err)
{
	struct st_sigv4_header extra[3];
	size_t n_extra = 0;
	bool token = o->session_token != NULL && !has_header(req, "x-amz-security-token");
	bool date = !has_header(req, "x-amz-date");
	bool sha = o->content_sha256 && !has_header(req, "x-amz-content-sha256");
	const char *ph = req->payload_hash ? req->payload_hash : ST_SIGV4_EMPTY_SHA256;
	int rc;

	if ((rc = prepare(out, req, o, err)) < 0)
		return rc;
	if (token)
		add_header(out, "X-Amz-Security-Token", st_xstrdup(o->session_token));
	if (token && !o->omit_session_token)
		extra[n_extra++] =
		        (struct st_sigv4_header){ "x-amz-security-token", o->session_token };
	if (date) {
		add_header(out, "X-Amz-Date", st_xstrdup(out->amz_date));
		extra[n_extra++] = (struct st_sigv4_header){ "x-amz-date", out->amz_date };
	}
	if (sha) {
		add_header(out, "x-amz-content-sha256", st_xstrdup(ph));
		extra[n_extra++] = (struct st_sigv4_header){ "x-amz-content-sha256", ph };
	}
	if ((rc = canonical_request(out, req, req->query, extra, n_extra, o->normalize)) < 0 ||
	    (rc = sign(out, o)) < 0)
		goto out;
	if ((rc = st_buf_printf(&out->authorization,
	                        ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
	                        o->access_key, out->scope, st_buf_cstr(&out->signed_headers),
	                        out->signature)) < 0)
		goto out;
	add_header(out, "Authorization", st_xstrdup(st_buf_cstr(&out->authorization)));
out:
	if (rc < 0)
		return st_err_set(err, rc, "sigv4: cannot sign %s %s", req->method, req->path);
	return 0;
}

/* Appends "&name=encoded(value)" (no '&' when b is empty). */
static int put_param(struct st_buf *b, const char *name, const char *value)
{
	int rc;

	if (b->len > 0 && (rc = st_buf_putc(b, '&')) < 0)
		return rc;
	if ((rc = st_buf_printf(b, "%s=", name)) < 0)
		return rc;
	return st_sigv4_uri_encode(b, value, strlen(value), false);
}

int st_sigv4_presign(struct st_sigv4_signed *out, const struct st_sigv4_request *req,
                     const struct st_sigv4_options *o, struct st_err *err)
{
	struct st_buf q = ST_BUF_INIT(ST_SIGV4_CAP);
	char cred[256];
	char exp[16];
	const char *sh;
	bool token = o->session_token != NULL;
	int rc;

	if ((rc = prepare(out, req, o, err)) < 0)
		return rc;
	(void)snprintf(cred, sizeof(cred), "%s/%s", o->access_key, out->scope);
	(void)snprintf(exp, sizeof(exp), "%u", o->expires);
	/* The signed headers are known before the canonical request is built. */
	if ((rc = canonical_headers(&q, out, req, NULL, 0)) < 0)
		goto out;
	sh = st_buf_cstr(&out->signed_headers);
	st_buf_clear(&q);
	if (req->query != NULL && (rc = st_buf_puts(&q, req->query)) < 0)
		goto out;
	if ((rc = put_param(&q, "X-Amz-Algorithm", ALGORITHM)) < 0 ||
	    (rc = put_param(&q, "X-Amz-Credential", cred)) < 0 ||
	    (rc = put_param(&q, "X-Amz-Date", out->amz_date)) < 0 ||
	    (rc = put_param(&q, "X-Amz-Expires", exp)) < 0 ||
	    (token && !o->omit_session_token &&
	     (rc = put_param(&q, "X-Amz-Security-Token", o->session_token)) < 0) ||
	    (rc = put_param(&q, "X-Amz-SignedHeaders", sh)) < 0)
		goto out;
	st_buf_clear(&out->signed_headers);
	if ((rc = canonical_request(out, req, st_buf_cstr(&q), NULL, 0, o->normalize)) < 0 ||
	    (rc = sign(out, o)) < 0)
		goto out;
	/* The wire form keeps the caller's query first, then the parameters in signing order. */
	if ((req->query != NULL && (rc = st_buf_puts(&out->query, req->query)) < 0) ||
	    (rc = put_param(&out->query, "X-Amz-Algorithm", ALGORITHM)) < 0 ||
	    (rc = put_param(&out->query, "X-Amz-Credential", cred)) < 0 ||
	    (rc = put_param(&out->query, "X-Amz-Date", out->amz_date)) < 0 ||
	    (rc = put_param(&out->query, "X-Amz-SignedHeaders", sh)) < 0 ||
	    (rc = put_param(&out->query, "X-Amz-Expires", exp)) < 0 ||
	    (token &&
	     (rc = put_param(&out->query, "X-Amz-Security-Token", o->session_token)) < 0) ||
	    (rc = put_param(&out->query, "X-Amz-Signature", out->signature)) < 0)
		goto out;
	if ((rc = st_sigv4_canonical_query(&out->url_query, st_buf_cstr(&q))) < 0 ||
	    (rc = put_param(&out->url_query, "X-Amz-Signature", out->signature)) < 0)
		goto out;
out:
	st_buf_dispose(&q);
	if (rc < 0)
		return st_err_set(err, rc, "sigv4: cannot presign %s %s", req->method, req->path);
	return 0;
}

void st_sigv4_chunk_signature(char sig_out[65], const struct st_sigv4_signed *s,
                              const char *prev_signature, const void *data, size_t len)
{
	char sts[512];
	char dh[65];
	unsigned char sig[32];
	int n;

	st_sigv4_sha256_hex(dh, data, len);
	n = snprintf(sts, sizeof(sts), ALGORITHM "-PAYLOAD\n%s\n%s\n%s\n%s\n%s", s->amz_date,
	             s->scope, prev_signature, ST_SIGV4_EMPTY_SHA256, dh);
	if (n < 0 || (size_t)n >= sizeof(sts) || hmac(sig, s->key, 32, sts, (size_t)n) < 0) {
		sig_out[0] = '\0';
		return;
	}
	hex_lower(sig_out, sig, sizeof(sig));
}

void st_sigv4_signed_init(struct st_sigv4_signed *s)
{
	memset(s, 0, sizeof(*s));
	st_buf_init(&s->canonical_request, ST_SIGV4_CAP);
	st_buf_init(&s->string_to_sign, ST_SIGV4_CAP);
	st_buf_init(&s->authorization, ST_SIGV4_CAP);
	st_buf_init(&s->signed_headers, ST_SIGV4_CAP);
	st_buf_init(&s->query, ST_SIGV4_CAP);
	st_buf_init(&s->url_query, ST_SIGV4_CAP);
}

void st_sigv4_signed_dispose(struct st_sigv4_signed *s)
{
	size_t i;

	st_buf_dispose(&s->canonical_request);
	st_buf_dispose(&s->string_to_sign);
	st_buf_dispose(&s->authorization);
	st_buf_dispose(&s->signed_headers);
	st_buf_dispose(&s->query);
	st_buf_dispose(&s->url_query);
	for (i = 0; i < s->n_add; i++) {
		free(s->owned[i]);
		s->owned[i] = NULL;
	}
	s->n_add = 0;
	explicit_bzero(s->key, sizeof(s->key));
}
