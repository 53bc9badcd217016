#include "pkg/bsl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pkg/kube.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

/* A store URL, and a decoded credentials file or CA bundle. */
#define URL_CAP    4096u
#define SECRET_CAP (256u * 1024u)

void st_bsl_init(struct st_bsl *b)
{
	memset(b, 0, sizeof(*b));
}

/* Appends "&name=value" with value percent-encoded (the store decodes it). */
static int put_param(struct st_buf *u, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	int rc;

	if ((rc = st_buf_printf(u, "%c%s=", strchr(st_buf_cstr(u), '?') ? '&' : '?', name)) < 0)
		return rc;
	for (p = (const unsigned char *)value; *p != '\0'; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		             (*p >= '0' && *p <= '9') || strchr("-._~/:", *p) != NULL;

		if (plain)
			rc = st_buf_putc(u, (char)*p);
		else
			rc = st_buf_printf(u, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static bool is_bool_text(const char *s)
{
	return s == NULL || strcmp(s, "true") == 0 || strcmp(s, "false") == 0;
}

static int s3_url(struct st_buf *u, struct json_object *os, struct json_object *cfg,
                  const char *ca_file, struct st_err *err)
{
	const char *bucket = st_json_get_str(os, "bucket");
	const char *prefix = st_json_get_str(os, "prefix");
	const char *endpoint = st_json_get_str(cfg, "s3Url");
	const char *region = st_json_get_str(cfg, "region");
	const char *path_style = st_json_get_str(cfg, "s3ForcePathStyle");
	const char *insecure = st_json_get_str(cfg, "insecureSkipTLSVerify");
	int rc;

	if (bucket == NULL || bucket[0] == '\0' || strchr(bucket, '/') != NULL)
		return st_err_set(err, ST_EINVAL,
		                  "spec.objectStorage.bucket: want a bucket name (no '/')");
	if (!is_bool_text(path_style))
		return st_err_set(err, ST_EINVAL,
		                  "spec.config.s3ForcePathStyle: want \"true\" or "
		                  "\"false\"");
	if (!is_bool_text(insecure))
		return st_err_set(err, ST_EINVAL,
		                  "spec.config.insecureSkipTLSVerify: want "
		                  "\"true\" or \"false\"");
	if (endpoint != NULL && strncmp(endpoint, "http://", 7) != 0 &&
	    strncmp(endpoint, "https://", 8) != 0)
		return st_err_set(err, ST_EINVAL, "spec.config.s3Url: want http:// or https://");
	rc = st_buf_printf(u, "s3://%s", bucket);
	while (rc == 0 && prefix != NULL && *prefix == '/')
		prefix++;
	if (rc == 0 && prefix != NULL && prefix[0] != '\0')
		rc = st_buf_printf(u, "/%s", prefix);
	if (rc == 0 && endpoint != NULL)
		rc = put_param(u, "endpoint", endpoint);
	if (rc == 0 && region != NULL)
		rc = put_param(u, "region", region);
	if (rc == 0 && path_style != NULL)
		rc = put_param(u, "pathStyle", path_style);
	if (rc == 0 && insecure != NULL)
		rc = put_param(u, "insecureSkipTLSVerify", insecure);
	if (rc == 0 && ca_file != NULL)
		rc = put_param(u, "caFile", ca_file);
	if (rc < 0)
		return st_err_set(err, rc, "storage location URL longer than %u bytes", URL_CAP);
	return 0;
}

static int file_url(struct st_buf *u, struct json_object *os, struct json_object *cfg,
                    struct st_err *err)
{
	const char *path = st_json_get_str(cfg, "path");
	const char *prefix = st_json_get_str(os, "prefix");
	int rc;

	if (path == NULL || path[0] != '/' || strstr(path, "/../") != NULL)
		return st_err_set(
		        err, ST_EINVAL,
		        "spec.config.path: the file provider needs an absolute directory");
	rc = st_buf_printf(u, "file://%s", path);
	while (rc == 0 && prefix != NULL && *prefix == '/')
		prefix++;
	if (rc == 0 && prefix != NULL && prefix[0] != '\0') {
		if (strstr(prefix, "..") != NULL)
			return st_err_set(err, ST_EINVAL, "spec.objectStorage.prefix: no '..'");
		rc = st_buf_printf(u, "%s%s", path[strlen(path) - 1] == '/' ? "" : "/", prefix);
	}
	if (rc < 0)
		return st_err_set(err, rc, "storage location URL longer than %u bytes", URL_CAP);
	return 0;
}

int st_bsl_url(char *buf, size_t size, struct json_object *spec, const char *ca_file,
               struct st_err *err)
{
	struct json_object *os = st_json_get_obj(spec, "objectStorage");
	struct json_object *cfg = st_json_get_obj(spec, "config");
	const char *provider = st_json_get_str(spec, "provider");
	struct st_buf u;
	int rc = ST_EINTERNAL;

	st_buf_init(&u, URL_CAP);
	if (provider == NULL) {
		rc = st_err_set(err, ST_EINVAL, "spec.provider: missing (want aws or file)");
		goto out;
	}
	if (strcmp(provider, "aws") == 0)
		rc = s3_url(&u, os, cfg, ca_file, err);
	else if (strcmp(provider, "file") == 0)
		rc = file_url(&u, os, cfg, err);
	else
		rc = st_err_set(err, ST_EINVAL,
		                "spec.provider: unknown provider \"%s\" (want aws "
		                "or file)",
		                provider);
	if (rc < 0)
		goto out;
	if (u.len + 1 > size) {
		rc = st_err_set(err, ST_ETOOBIG, "storage location URL longer than %zu bytes",
		                size);
		goto out;
	}
	memcpy(buf, u.ptr, u.len + 1);
	rc = 0;
out:
	st_buf_dispose(&u);
	return rc;
}

/* Decodes base64 text (whitespace allowed) into a malloc'd buffer of *len_out bytes. */
static int b64_decode(unsigned char **out, size_t *len_out, const char *text, const char *what,
                      struct st_err *err)
{
	size_t n = strlen(text);
	char *clean = NULL;
	unsigned char *bin = NULL;
	size_t i, m = 0;
	int got;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (n > SECRET_CAP * 2) {
		rc = st_err_set(err, ST_ETOOBIG, "%s: larger than %u bytes", what, SECRET_CAP);
		goto out;
	}
	clean = st_xmalloc(n + 1);
	for (i = 0; i < n; i++)
		if (text[i] != '\n' && text[i] != '\r' && text[i] != ' ' && text[i] != '\t')
			clean[m++] = text[i];
	clean[m] = '\0';
	if (m % 4 != 0) {
		rc = st_err_set(err, ST_EINVAL, "%s: not base64", what);
		goto out;
	}
	bin = st_xmalloc(m / 4 * 3 + 1);
	got = m ? EVP_DecodeBlock(bin, (const unsigned char *)clean, (int)m) : 0;
	if (got < 0) {
		rc = st_err_set(err, ST_EINVAL, "%s: not base64", what);
		goto out;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes; drop them. */
	for (i = m; i > 0 && clean[i - 1] == '=' && got > 0; i--)
		got--;
	*len_out = (size_t)got;
	*out = bin;
	bin = NULL; /* transferred */
	rc = 0;
out:
	if (bin != NULL)
		st_freezero(bin, m / 4 * 3 + 1);
	if (clean != NULL)
		st_freezero(clean, n + 1);
	return rc;
}

static int write_private(const char *path, const void *data, size_t len, struct st_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ssize_t w;

	if (fd < 0)
		return st_err_set(err, ST_EIO, "create %s: %s", path, strerror(errno));
	w = write(fd, data, len);
	if (close(fd) != 0 || w < 0 || (size_t)w != len) {
		(void)unlink(path);
		return st_err_set(err, ST_EIO, "write %s failed", path);
	}
	return 0;
}

/* Reads data[key] of Secret name and decodes it. */
static int read_secret(unsigned char **out, size_t *len_out, struct st_kube_client *c,
                       const char *ns, const char *name, const char *key, struct st_err *err)
{
	struct st_kube_gvr gvr;
	struct json_object *secret = NULL;
	const char *b64;
	char what[384];
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (c == NULL) {
		rc = st_err_set(err, ST_EINVAL, "spec.credential: no Kubernetes client to read it");
		goto out;
	}
	if ((rc = st_kube_gvr_set(&gvr, "", "v1", "secrets", "Secret", true)) < 0)
		goto out;
	if ((rc = st_kube_get(&secret, c, &gvr, ns, name, NULL, err)) < 0) {
		st_err_prefix(err, "spec.credential");
		goto out;
	}
	b64 = st_json_get_str(st_json_get_obj(secret, "data"), key);
	if (b64 == NULL) {
		rc = st_err_set(err, ST_ENOTFOUND,
		                "spec.credential: secret %s/%s has no key \"%s\"", ns, name, key);
		goto out;
	}
	(void)snprintf(what, sizeof(what), "secret %s/%s key %s", ns, name, key);
	rc = b64_decode(out, len_out, b64, what, err);
out:
	json_object_put(secret);
	return rc;
}

/* Writes the CA bundle (when the spec has one) into the private directory. */
static int put_ca(char *ca_path, size_t size, struct st_bsl *b, struct json_object *os,
                  struct st_err *err)
{
	const char *ca_b64 = st_json_get_str(os, "caCert");
	unsigned char *ca = NULL;
	size_t ca_len = 0;
	int rc = ST_EINTERNAL;

	ca_path[0] = '\0';
	if (ca_b64 == NULL || ca_b64[0] == '\0')
		return 0;
	if ((rc = b64_decode(&ca, &ca_len, ca_b64, "spec.objectStorage.caCert", err)) < 0)
		goto out;
	(void)snprintf(ca_path, size, "%s/ca.pem", b->tmpdir);
	rc = write_private(ca_path, ca, ca_len, err);
out:
	free(ca);
	return rc;
}

static int make_tmpdir(struct st_bsl *b, struct st_err *err)
{
	const char *tmp = getenv("TMPDIR");
	char path[512];

	(void)snprintf(path, sizeof(path), "%s/stasis-bsl.XXXXXX",
	               tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
	if (mkdtemp(path) == NULL)
		return st_err_set(err, ST_EIO, "mkdtemp %s: %s", path, strerror(errno));
	b->tmpdir = st_xstrdup(path);
	return 0;
}

/*
 * URL of the location one level down: "s3://b/p?x=1" + "repository" ->
 * "s3://b/p/repository?x=1". ST_ETOOBIG past size.
 */
static int sub_url(char *buf, size_t size, const char *url, const char *sub)
{
	const char *q = strchr(url, '?');
	size_t base = q != NULL ? (size_t)(q - url) : strlen(url);
	int n;

	while (base > 0 && url[base - 1] == '/')
		base--;
	n = snprintf(buf, size, "%.*s/%s%s", (int)base, url, sub, q != NULL ? q : "");
	return n < 0 || (size_t)n >= size ? ST_ETOOBIG : 0;
}

static int open_store(struct st_bsl *b, struct st_kube_client *c, struct json_object *bsl,
                      const char *credentials_file, struct st_err *err)
{
	struct json_object *spec = st_json_get_obj(bsl, "spec");
	struct json_object *cred = st_json_get_obj(spec, "credential");
	const char *ns = st_json_get_str(st_json_get_obj(bsl, "metadata"), "namespace");
	const char *sname = st_json_get_str(cred, "name");
	const char *skey = st_json_get_str(cred, "key");
	struct st_store_options so = ST_STORE_OPTIONS_INIT;
	unsigned char *secret = NULL;
	size_t secret_len = 0;
	char ca_path[600];
	char cred_path[600];
	char url[URL_CAP];
	char repo_url[URL_CAP + 16];
	int rc = ST_EINTERNAL;

	cred_path[0] = '\0';
	if ((rc = make_tmpdir(b, err)) < 0)
		goto out;
	if ((rc = put_ca(ca_path, sizeof(ca_path), b, st_json_get_obj(spec, "objectStorage"),
	                 err)) < 0)
		goto out;
	if ((rc = st_bsl_url(url, sizeof(url), spec, ca_path[0] ? ca_path : NULL, err)) < 0)
		goto out;
	so.credentials_file = credentials_file;
	if (sname != NULL && sname[0] != '\0') {
		if ((rc = read_secret(&secret, &secret_len, c, ns, sname, skey ? skey : "cloud",
		                      err)) < 0)
			goto out;
		(void)snprintf(cred_path, sizeof(cred_path), "%s/credentials", b->tmpdir);
		if ((rc = write_private(cred_path, secret, secret_len, err)) < 0)
			goto out;
		so.credentials_file = cred_path;
	}
	if ((rc = st_store_open(&b->store, url, &so, err)) < 0)
		goto out;
	if ((rc = sub_url(repo_url, sizeof(repo_url), url, ST_BSL_REPO_PREFIX)) < 0) {
		rc = st_err_set(err, rc, "the repository URL below %s is too long", url);
		goto out;
	}
	/* A directory location gets its repository directory on first use. */
	if (strncmp(repo_url, "file://", 7) == 0 && strchr(repo_url, '?') == NULL &&
	    mkdir(repo_url + 7, 0700) != 0 && errno != EEXIST) {
		rc = st_err_set(err, ST_EIO, "%s: %s", repo_url, strerror(errno));
		goto out;
	}
	if ((rc = st_store_open(&b->repo, repo_url, &so, err)) < 0)
		goto out;
	b->url = st_xstrdup(url);
	rc = 0;
out:
	if (cred_path[0] != '\0')
		(void)unlink(cred_path);
	if (secret != NULL)
		st_freezero(secret, secret_len);
	return rc;
}

int st_bsl_open(struct st_bsl *b, struct st_kube_client *c, struct json_object *bsl,
                const char *credentials_file, struct st_err *err)
{
	int rc;

	st_bsl_init(b);
	if ((rc = open_store(b, c, bsl, credentials_file, err)) < 0)
		st_bsl_close(b);
	return rc;
}

void st_bsl_close(struct st_bsl *b)
{
	char path[600];

	if (b == NULL)
		return;
	st_store_free(b->repo);
	b->repo = NULL;
	st_store_free(b->store);
	b->store = NULL;
	free(b->url);
	b->url = NULL;
	if (b->tmpdir != NULL) {
		(void)snprintf(path, sizeof(path), "%s/ca.pem", b->tmpdir);
		(void)unlink(path);
		(void)snprintf(path, sizeof(path), "%s/credentials", b->tmpdir);
		(void)unlink(path);
		if (rmdir(b->tmpdir) != 0)
			st_log_warn("remove %s: %s", b->tmpdir, strerror(errno));
		free(b->tmpdir);
		b->tmpdir = NULL;
	}
}

int st_bsl_probe(struct st_store *s, struct st_err *err)
{
	static const char probe[] = "stasis storage location probe\n";
	uint64_t size = 0;
	int rc;

	if ((rc = st_store_put_mem(s, ST_BSL_PROBE_KEY, probe, sizeof(probe) - 1, false, err)) < 0)
		return rc;
	if ((rc = st_store_head(s, ST_BSL_PROBE_KEY, &size, err)) < 0)
		return rc;
	if (size != sizeof(probe) - 1)
		return st_err_set(err, ST_EPROTO, "probe object reads back as %llu bytes, not %zu",
		                  (unsigned long long)size, sizeof(probe) - 1);
	return st_store_delete(s, ST_BSL_PROBE_KEY, err);
}
