/*
 * The s3:// store backend: a location URL parsed into pkg/s3 client options,
 * store keys mapped under the location's prefix.
 *
 *   s3://bucket[/prefix][?endpoint=URL&region=R&pathStyle=true&caFile=PATH
 *                        &insecureSkipTLSVerify=true]
 *
 * Without endpoint= the AWS endpoint of the region is used. Parameter values
 * may be percent-encoded. Errors name the part of the URL at fault.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/s3.h"
#include "pkg/sigv4.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/mem.h"

#define URL_CAP 4096

struct s3_store {
	struct st_store base; /* first member, see pkg/store.h */
	struct st_s3_client *c;
	char *prefix; /* "" or ending in '/' */
};

struct s3_url {
	char *bucket;
	char *prefix;
	char *endpoint;
	char *region;
	char *ca_file;
	bool path_style;
	bool insecure;
};

static void s3_url_dispose(struct s3_url *u)
{
	free(u->bucket);
	free(u->prefix);
	free(u->endpoint);
	free(u->region);
	free(u->ca_file);
	memset(u, 0, sizeof(*u));
}

/* Percent-decodes s[0..n) into a new string; NULL for a bad escape or an embedded NUL. */
static char *pct_decode(const char *s, size_t n)
{
	struct st_buf b = ST_BUF_INIT(URL_CAP);

	if (st_sigv4_uri_decode(&b, s, n, true) < 0) {
		st_buf_dispose(&b);
		return NULL;
	}
	return st_buf_detach(&b, NULL);
}

static int parse_bool(bool *out, const char *url, const char *name, const char *v,
                      struct st_err *err)
{
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
		*out = true;
		return 0;
	}
	if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
		*out = false;
		return 0;
	}
	return st_err_set(err, ST_EINVAL, "%s: %s=%s: want true or false", url, name, v);
}

static int set_param(struct s3_url *u, const char *url, const char *name, char *v,
                     struct st_err *err)
{
	char **slot = NULL;
	int rc = 0;

	if (strcmp(name, "endpoint") == 0)
		slot = &u->endpoint;
	else if (strcmp(name, "region") == 0)
		slot = &u->region;
	else if (strcmp(name, "caFile") == 0)
		slot = &u->ca_file;
	if (slot != NULL) {
		free(*slot);
		*slot = v;
		return 0;
	}
	if (strcmp(name, "pathStyle") == 0)
		rc = parse_bool(&u->path_style, url, name, v, err);
	else if (strcmp(name, "insecureSkipTLSVerify") == 0)
		rc = parse_bool(&u->insecure, url, name, v, err);
	else
		rc = st_err_set(err, ST_EINVAL,
		                "%s: unknown parameter \"%s\" (known: endpoint, region, pathStyle, "
		                "caFile, insecureSkipTLSVerify)",
		                url, name);
	free(v);
	return rc;
}

static int parse_query(struct s3_url *u, const char *url, const char *q, struct st_err *err)
{
	while (*q != '\0') {
		const char *amp = strchr(q, '&');
		size_t l = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', l);
		char name[64];
		char *v;
		int rc;

		if (l > 0) {
			if (eq == NULL || (size_t)(eq - q) >= sizeof(name) || eq == q)
				return st_err_set(err, ST_EINVAL,
				                  "%s: query parameter \"%.*s\" is not name=value",
				                  url, (int)(l > 64 ? 64 : l), q);
			(void)snprintf(name, sizeof(name), "%.*s", (int)(eq - q), q);
			if ((v = pct_decode(eq + 1, l - (size_t)(eq - q) - 1)) == NULL)
				return st_err_set(err, ST_EINVAL, "%s: %s: bad %%-escape", url,
				                  name);
			if ((rc = set_param(u, url, name, v, err)) < 0)
				return rc;
		}
		q += l;
		if (*q == '&')
			q++;
	}
	return 0;
}

static int parse_url(struct s3_url *u, const char *url, struct st_err *err)
{
	const char *p = url + 5; /* after "s3://" */
	size_t bl = strcspn(p, "/?");
	const char *q;
	char *pre;
	size_t pl;

	if (strlen(url) > URL_CAP)
		return st_err_set(err, ST_EINVAL, "s3 location URL longer than %u bytes", URL_CAP);
	if (bl == 0)
		return st_err_set(err, ST_EINVAL, "%s: no bucket after s3://", url);
	u->bucket = st_xstrndup(p, bl);
	p += bl;
	q = strchr(p, '?');
	pl = q ? (size_t)(q - p) : strlen(p);
	while (pl > 0 && *p == '/') {
		p++;
		pl--;
	}
	if ((pre = pct_decode(p, pl)) == NULL)
		return st_err_set(err, ST_EINVAL, "%s: prefix: bad %%-escape", url);
	pl = strlen(pre);
	if (pl > 0 && pre[pl - 1] != '/') {
		u->prefix = st_xmalloc(pl + 2);
		(void)snprintf(u->prefix, pl + 2, "%s/", pre);
		free(pre);
	} else {
		u->prefix = pre;
	}
	if (q != NULL)
		return parse_query(u, url, q + 1, err);
	return 0;
}

static char *full_key(const struct s3_store *s, const char *key)
{
	size_t n = strlen(s->prefix) + strlen(key) + 1;
	char *k = st_xmalloc(n);

	(void)snprintf(k, n, "%s%s", s->prefix, key);
	return k;
}

static int s3_put(struct st_store *st, const char *key, uint64_t size, st_store_read_cb rd,
                  void *payload, bool if_absent, struct st_err *err)
{
	struct s3_store *s = (struct s3_store *)st;
	char *k = full_key(s, key);
	int rc = st_s3_put(s->c, k, size, rd, payload, if_absent, err);

	free(k);
	return rc;
}

static int s3_put_mem(struct st_store *st, const char *key, const void *data, size_t len,
                      bool if_absent, struct st_err *err)
{
	struct s3_store *s = (struct s3_store *)st;
	char *k = full_key(s, key);
	int rc = st_s3_put_mem(s->c, k, data, len, if_absent, err);

	free(k);
	return rc;
}

static int s3_get(struct st_store *st, const char *key, uint64_t off, uint64_t len,
                  st_store_write_cb wr, void *payload, struct st_err *err)
{
	struct s3_store *s = (struct s3_store *)st;
	char *k = full_key(s, key);
	int rc = st_s3_get(s->c, k, off, len, wr, payload, err);

	free(k);
	return rc;
}

static int s3_head(struct st_store *st, const char *key, uint64_t *size_out, struct st_err *err)
{
	struct s3_store *s = (struct s3_store *)st;
	char *k = full_key(s, key);
	int rc = st_s3_head(s->c, k, size_out, err);

	free(k);
	return rc;
}

struct strip {
	size_t n;
	st_store_list_cb cb;
	void *payload;
};

static int strip_cb(const char *key, uint64_t size, void *payload)
{
	const struct strip *sp = payload;

	return sp->cb(key + sp->n, size, sp->payload);
}

static int s3_list(struct st_store *st, const char *prefix, st_store_list_cb cb, void *payload,
                   struct st_err *err)
{
	struct s3_store *s = (struct s3_store *)st;
	char *k = full_key(s, prefix ? prefix : "");
	struct strip sp = { strlen(s->prefix), cb, payload };
	int rc = st_s3_list(s->c, k, strip_cb, &sp, err);

	free(k);
	return rc;
}

static int s3_del(struct st_store *st, const char *key, struct st_err *err)
{
	struct s3_store *s = (struct s3_store *)st;
	char *k = full_key(s, key);
	int rc = st_s3_delete(s->c, k, err);

	free(k);
	return rc;
}

static void s3_free(struct st_store *st)
{
	struct s3_store *s = (struct s3_store *)st;

	st_s3_client_free(s->c);
	free(s->prefix);
	free(s->base.url);
	free(s);
}

static int stop_cb(const char *key, uint64_t size, void *payload)
{
	(void)key;
	(void)size;
	(void)payload;
	return 1;
}

/*
 * Lists one key first: a listing answers NoSuchBucket (404) for a missing
 * bucket, which tells "created" from "was there" on servers (RGW, MinIO)
 * that answer 200 to creating a bucket one already owns.
 */
static int s3_create(struct st_store *st, struct st_err *err)
{
	struct s3_store *s = (struct s3_store *)st;
	struct st_err probe = ST_ERR_INIT;
	char *k = full_key(s, "config");
	int rc = st_s3_list(s->c, k, stop_cb, NULL, &probe);

	free(k);
	if (rc >= 0)
		return 1;
	if (rc != ST_ENOTFOUND)
		return st_err_set(err, probe.code, "%s", probe.msg);
	if ((rc = st_s3_create_bucket(s->c, err)) < 0) {
		st_err_prefix(err, "create bucket");
		return rc;
	}
	return 0;
}

/* S3 makes a PUT durable when it answers, so there is no sync operation. */
static const struct st_store_vtable s3_vtable = {
	.put = s3_put,
	.get = s3_get,
	.head = s3_head,
	.list = s3_list,
	.del = s3_del,
	.free = s3_free,
	.sync = NULL,
	.create = s3_create,
	.put_mem = s3_put_mem,
};

int st_store__open_s3(struct st_store **out, const char *url, const struct st_store_options *opts,
                      struct st_err *err)
{
	struct st_s3_options o = ST_S3_OPTIONS_INIT;
	struct st_s3_credentials cred = ST_S3_CREDENTIALS_INIT;
	struct s3_url u;
	struct s3_store *s = NULL;
	char ep[512];
	int rc = ST_EINTERNAL;

	*out = NULL;
	memset(&u, 0, sizeof(u));
	if ((rc = parse_url(&u, url, err)) < 0)
		goto out;
	if (u.endpoint == NULL) {
		(void)snprintf(ep, sizeof(ep), "https://s3.%s.amazonaws.com",
		               u.region ? u.region : "us-east-1");
		u.endpoint = st_xstrdup(ep);
	}
	if ((rc = st_s3_credentials_load(&cred, opts ? opts->credentials_file : NULL,
	                                 opts ? opts->profile : NULL, err)) < 0)
		goto out;
	o.endpoint = u.endpoint;
	o.region = u.region;
	o.bucket = u.bucket;
	o.path_style = u.path_style;
	o.ca_file = u.ca_file;
	o.insecure_skip_verify = u.insecure;
	o.max_retries = opts ? opts->max_retries : 0;
	s = st_xcalloc(1, sizeof(*s));
	if ((rc = st_s3_client_new(&s->c, &o, &cred, err)) < 0) {
		st_err_prefix(err, "%s", url);
		goto out;
	}
	s->base.vt = &s3_vtable;
	s->base.url = st_xstrdup(url);
	s->prefix = u.prefix;
	u.prefix = NULL;
	*out = &s->base;
	s = NULL; /* transferred */
	rc = 0;
out:
	if (s != NULL) {
		st_s3_client_free(s->c);
		free(s);
	}
	st_s3_credentials_dispose(&cred);
	s3_url_dispose(&u);
	return rc;
}
