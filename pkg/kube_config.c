/*
 * kubeconfig and in-cluster configuration.
 *
 * The kubeconfig is read with pkg/yaml into a json-c tree; the selected
 * context names a cluster and a user, whose fields are copied into struct
 * st_kube_config. File references are read at load time (relative ones
 * against the kubeconfig's directory, as kubectl does) so that the client
 * only ever deals with bytes in memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pkg/kube.h"
#include "pkg/kube_int.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"
#include "pkg/yaml.h"

#define INCLUSTER_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

void st_kube_config_init(struct st_kube_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
}

static void free_secret_str(char **p)
{
	if (*p != NULL)
		st_freezero(*p, strlen(*p));
	*p = NULL;
}

void st_kube_config_dispose(struct st_kube_config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->server);
	free(cfg->context);
	free(cfg->cluster);
	free(cfg->user);
	free(cfg->namespace);
	free(cfg->source);
	free(cfg->ca);
	free(cfg->cert);
	st_freezero(cfg->key, cfg->key_len);
	free_secret_str(&cfg->token);
	free(cfg->token_file);
	memset(cfg, 0, sizeof(*cfg));
}

/* The GNU strerror_r (built with _GNU_SOURCE): the token is re-read on request threads. */
static const char *errno_text(int e, char *buf, size_t n)
{
	return strerror_r(e, buf, n);
}

int st_kube__read_file(char **out, size_t *len_out, const char *path, size_t cap,
                       struct st_err *err)
{
	struct stat st;
	char *buf = NULL, ebuf[128];
	size_t got = 0;
	int fd = -1;
	int rc = ST_EINTERNAL;

	*out = NULL;
	*len_out = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = st_err_set(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO, "cannot read %s: %s",
		                path, errno_text(errno, ebuf, sizeof(ebuf)));
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = st_err_set(err, ST_EIO, "%s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > cap) {
		rc = st_err_set(err, ST_ETOOBIG, "%s is larger than %zu bytes", path, cap);
		goto out;
	}
	buf = st_xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = st_err_set(err, ST_EIO, "cannot read %s: %s", path,
			                errno_text(errno, ebuf, sizeof(ebuf)));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	*len_out = got;
	buf = NULL; /* transferred */
	rc = 0;
out:
	/* The file may be a key or a token, so the copy is wiped either way. */
	if (buf != NULL)
		st_freezero(buf, (size_t)st.st_size + 1);
	if (fd >= 0)
		(void)close(fd);
	return rc;
}

static int b64_val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

int st_kube__b64_decode(char **out, size_t *len_out, const char *in, size_t in_len)
{
	char *buf = st_xmalloc(in_len / 4 * 3 + 4);
	uint32_t acc = 0;
	size_t n = 0, i, bits = 0, pad = 0;
	int rc = ST_EINVAL;

	*out = NULL;
	*len_out = 0;
	for (i = 0; i < in_len; i++) {
		unsigned char ch = (unsigned char)in[i];
		int v;

		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad++;
			continue;
		}
		v = b64_val(ch);
		if (v < 0 || pad > 0)
			goto out;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	/* Leftover bits must be zero padding of a 2- or 3-character tail. */
	if (pad > 2 || bits >= 6 || (acc & ((1u << bits) - 1)) != 0)
		goto out;
	buf[n] = '\0';
	*out = buf;
	*len_out = n;
	buf = NULL; /* transferred */
	rc = 0;
out:
	if (buf != NULL)
		st_freezero(buf, in_len / 4 * 3 + 4);
	return rc;
}

/* Finds the entry named `name` in a kubeconfig list ("clusters", ...) and returns its body. */
static struct json_object *named_entry(const struct json_object *root, const char *list,
                                       const char *field, const char *name)
{
	struct json_object *arr = st_json_get_arr(root, list);
	size_t i, n = arr ? json_object_array_length(arr) : 0;

	for (i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *en = st_json_get_str(e, "name");

		if (en != NULL && strcmp(en, name) == 0)
			return st_json_get_obj(e, field);
	}
	return NULL;
}

/* A short list of the defined context names, for "context not found" messages. */
static void context_names(char *buf, size_t size, const struct json_object *root)
{
	struct json_object *arr = st_json_get_arr(root, "contexts");
	size_t i, n = arr ? json_object_array_length(arr) : 0, used = 0;

	buf[0] = '\0';
	for (i = 0; i < n && used + 1 < size; i++) {
		const char *en = st_json_get_str(json_object_array_get_idx(arr, i), "name");
		int w;

		if (en == NULL)
			continue;
		w = snprintf(buf + used, size - used, "%s\"%s\"", used ? ", " : "", en);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	if (n == 0)
		(void)snprintf(buf, size, "none");
}

/* Makes a relative path absolute against base_dir; returns a heap string. */
static char *resolve_path(const char *base_dir, const char *p)
{
	size_t n;
	char *r;

	if (p[0] == '/' || base_dir == NULL || base_dir[0] == '\0')
		return st_xstrdup(p);
	n = strlen(base_dir) + strlen(p) + 2;
	r = st_xmalloc(n);
	(void)snprintf(r, n, "%s/%s", base_dir, p);
	return r;
}

struct loader {
	struct st_kube_config *cfg;
	const char *what;
	const char *base_dir;
	struct st_err *err;
};

/*
 * Reads one credential that may be given as `file_key` (a path) or
 * `file_key`-data (base64). `owner` names the cluster/user in messages; the
 * data form wins, as in kubectl.
 */
static int load_blob(char **out, size_t *len_out, const struct loader *ld,
                     const struct json_object *obj, const char *file_key, const char *owner)
{
	char data_key[64];
	const char *data, *file;
	char *path = NULL;
	int rc = ST_EINTERNAL;

	(void)snprintf(data_key, sizeof(data_key), "%s-data", file_key);
	data = st_json_get_str(obj, data_key);
	file = st_json_get_str(obj, file_key);
	if (data != NULL && data[0] != '\0') {
		if (st_kube__b64_decode(out, len_out, data, strlen(data)) < 0) {
			rc = st_err_set(ld->err, ST_EINVAL, "%s: %s of %s is not valid base64",
			                ld->what, data_key, owner);
			goto out;
		}
	} else if (file != NULL && file[0] != '\0') {
		path = resolve_path(ld->base_dir, file);
		if ((rc = st_kube__read_file(out, len_out, path, ST_KUBE_CAP_FILE, ld->err)) < 0) {
			st_err_prefix(ld->err, "%s: %s of %s", ld->what, file_key, owner);
			goto out;
		}
	}
	rc = 0;
out:
	free(path);
	return rc;
}

static bool truthy(const struct json_object *obj, const char *key)
{
	struct json_object *v = st_json_get(obj, key);

	if (v == NULL)
		return false;
	if (json_object_is_type(v, json_type_boolean))
		return json_object_get_boolean(v);
	return json_object_is_type(v, json_type_string) &&
	       strcmp(json_object_get_string(v), "true") == 0;
}

/* Copies the server URL without trailing slashes, refusing anything but http(s). */
static int set_server(struct st_kube_config *cfg, const char *server, const char *owner,
                      const struct loader *ld)
{
	size_t n;

	if (server == NULL || server[0] == '\0')
		return st_err_set(ld->err, ST_EINVAL, "%s: %s has no server", ld->what, owner);
	if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
		return st_err_set(ld->err, ST_EINVAL,
		                  "%s: server \"%.100s\" of %s is not an http(s) URL", ld->what,
		                  server, owner);
	n = strlen(server);
	while (n > 0 && server[n - 1] == '/')
		n--;
	cfg->server = st_xstrndup(server, n);
	return 0;
}

static int load_cluster(const struct loader *ld, const struct json_object *cl, const char *owner)
{
	struct st_kube_config *cfg = ld->cfg;
	int rc;

	if ((rc = set_server(cfg, st_json_get_str(cl, "server"), owner, ld)) < 0)
		return rc;
	cfg->insecure = truthy(cl, "insecure-skip-tls-verify");
	return load_blob(&cfg->ca, &cfg->ca_len, ld, cl, "certificate-authority", owner);
}

static char *trimmed_dup(const char *s, size_t n)
{
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		n--;
	while (n > 0 && (*s == ' ' || *s == '\n')) {
		s++;
		n--;
	}
	return st_xstrndup(s, n);
}

/* Reads a token file; the result is trimmed and the raw copy wiped. */
static int read_token(char **out, const char *path, struct st_err *err)
{
	char *raw = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if ((rc = st_kube__read_file(&raw, &len, path, ST_KUBE_CAP_FILE, err)) < 0)
		return rc;
	*out = trimmed_dup(raw, len);
	st_freezero(raw, len + 1);
	if ((*out)[0] == '\0') {
		free(*out);
		*out = NULL;
		return st_err_set(err, ST_EINVAL, "token file %s is empty", path);
	}
	return 0;
}

static int load_user(const struct loader *ld, const struct json_object *u, const char *owner)
{
	struct st_kube_config *cfg = ld->cfg;
	const char *token = st_json_get_str(u, "token");
	const char *tfile = st_json_get_str(u, "tokenFile");
	int rc;

	if ((rc = load_blob(&cfg->cert, &cfg->cert_len, ld, u, "client-certificate", owner)) < 0)
		return rc;
	if ((rc = load_blob(&cfg->key, &cfg->key_len, ld, u, "client-key", owner)) < 0)
		return rc;
	if ((cfg->cert == NULL) != (cfg->key == NULL))
		return st_err_set(ld->err, ST_EINVAL, "%s: %s has a client %s but no client %s",
		                  ld->what, owner, cfg->cert ? "certificate" : "key",
		                  cfg->cert ? "key" : "certificate");
	if (token != NULL && token[0] != '\0') {
		cfg->token = st_xstrdup(token);
	} else if (tfile != NULL && tfile[0] != '\0') {
		cfg->token_file = resolve_path(ld->base_dir, tfile);
		if ((rc = read_token(&cfg->token, cfg->token_file, ld->err)) < 0) {
			st_err_prefix(ld->err, "%s: tokenFile of %s", ld->what, owner);
			return rc;
		}
	}
	if (cfg->token == NULL && cfg->cert == NULL &&
	    (st_json_get(u, "exec") != NULL || st_json_get(u, "auth-provider") != NULL))
		return st_err_set(
		        ld->err, ST_EINVAL,
		        "%s: %s uses an exec or auth-provider credential plugin, which is "
		        "not supported; use a token, tokenFile or client certificate",
		        ld->what, owner);
	if (st_json_get_str(u, "username") != NULL && cfg->token == NULL && cfg->cert == NULL)
		return st_err_set(ld->err, ST_EINVAL,
		                  "%s: %s uses basic authentication, which is not supported",
		                  ld->what, owner);
	return 0;
}

static const char *pick_context(const struct json_object *root, const char *context,
                                const struct loader *ld, int *rc)
{
	const char *name = context;

	*rc = 0;
	if (name == NULL || name[0] == '\0')
		name = st_json_get_str(root, "current-context");
	if (name == NULL || name[0] == '\0')
		*rc = st_err_set(ld->err, ST_EINVAL,
		                 "%s: no current-context is set; choose one with --context",
		                 ld->what);
	return name;
}

static int parse_tree(const struct loader *ld, const struct json_object *root, const char *context)
{
	struct st_kube_config *cfg = ld->cfg;
	struct json_object *ctx, *cl, *u = NULL;
	const char *name, *cname, *uname, *ns;
	char owner[320], names[200];
	int rc;

	if (!json_object_is_type(root, json_type_object))
		return st_err_set(ld->err, ST_EINVAL, "%s: not a kubeconfig (not a mapping)",
		                  ld->what);
	name = pick_context(root, context, ld, &rc);
	if (rc < 0)
		return rc;
	ctx = named_entry(root, "contexts", "context", name);
	if (ctx == NULL) {
		context_names(names, sizeof(names), root);
		return st_err_set(ld->err, ST_ENOTFOUND,
		                  "%s: context \"%s\" not found (defined: %s)", ld->what, name,
		                  names);
	}
	cfg->context = st_xstrdup(name);
	cname = st_json_get_str(ctx, "cluster");
	uname = st_json_get_str(ctx, "user");
	ns = st_json_get_str(ctx, "namespace");
	if (cname == NULL || cname[0] == '\0')
		return st_err_set(ld->err, ST_EINVAL, "%s: context \"%s\" names no cluster",
		                  ld->what, name);
	cl = named_entry(root, "clusters", "cluster", cname);
	if (cl == NULL)
		return st_err_set(ld->err, ST_ENOTFOUND,
		                  "%s: context \"%s\" names cluster \"%s\", which is not defined",
		                  ld->what, name, cname);
	cfg->cluster = st_xstrdup(cname);
	cfg->namespace = st_xstrdup(ns && ns[0] ? ns : "default");
	(void)snprintf(owner, sizeof(owner), "cluster \"%s\"", cname);
	if ((rc = load_cluster(ld, cl, owner)) < 0)
		return rc;
	if (uname != NULL && uname[0] != '\0') {
		u = named_entry(root, "users", "user", uname);
		if (u == NULL)
			return st_err_set(
			        ld->err, ST_ENOTFOUND,
			        "%s: context \"%s\" names user \"%s\", which is not defined",
			        ld->what, name, uname);
		cfg->user = st_xstrdup(uname);
		(void)snprintf(owner, sizeof(owner), "user \"%s\"", uname);
		if ((rc = load_user(ld, u, owner)) < 0)
			return rc;
	}
	return 0;
}

int st_kube_config_parse(struct st_kube_config *cfg, const char *text, size_t len,
                         const char *context, const char *base_dir, const char *what,
                         struct st_err *err)
{
	struct loader ld = { cfg, what ? what : "kubeconfig", base_dir, err };
	struct json_object *root = NULL;
	int rc = ST_EINTERNAL;

	if ((rc = st_yaml_parse_one(&root, text, len, ld.what, err)) < 0)
		goto out;
	if ((rc = parse_tree(&ld, root, context)) < 0)
		goto out;
	cfg->source = st_xstrdup(ld.what);
	rc = 0;
out:
	json_object_put(root);
	if (rc < 0)
		st_kube_config_dispose(cfg);
	return rc;
}

int st_kube_config_load_file(struct st_kube_config *cfg, const char *path, const char *context,
                             struct st_err *err)
{
	char *text = NULL, *dir = NULL, *slash;
	size_t len = 0;
	int rc = ST_EINTERNAL;

	/* Tokens may sit in the file itself, so its text is wiped after parsing. */
	if ((rc = st_kube__read_file(&text, &len, path, ST_KUBE_CAP_FILE, err)) < 0) {
		st_err_prefix(err, "kubeconfig");
		goto out;
	}
	dir = st_xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		dir[0] = '\0';
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	rc = st_kube_config_parse(cfg, text, len, context, dir, path, err);
out:
	if (text != NULL)
		st_freezero(text, len + 1);
	free(dir);
	return rc;
}

int st_kube_config_incluster(struct st_kube_config *cfg, const char *dir, struct st_err *err)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char path[4096], url[512];
	char *ns = NULL;
	size_t ns_len = 0;
	int rc = ST_EINTERNAL;

	if (dir == NULL)
		dir = INCLUSTER_DIR;
	if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
		rc = st_err_set(err, ST_ENOTFOUND,
		                "not running in a cluster: KUBERNETES_SERVICE_HOST and "
		                "KUBERNETES_SERVICE_PORT are not set; give a kubeconfig instead");
		goto out;
	}
	/* An IPv6 service address needs brackets in a URL. */
	(void)snprintf(url, sizeof(url), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
	               host, port);
	cfg->server = st_xstrdup(url);
	cfg->context = st_xstrdup("in-cluster");
	cfg->cluster = st_xstrdup("in-cluster");
	cfg->source = st_xstrdup(dir);
	(void)snprintf(path, sizeof(path), "%s/token", dir);
	cfg->token_file = st_xstrdup(path);
	if ((rc = read_token(&cfg->token, path, err)) < 0) {
		st_err_prefix(err, "in-cluster service account");
		goto out;
	}
	(void)snprintf(path, sizeof(path), "%s/ca.crt", dir);
	if ((rc = st_kube__read_file(&cfg->ca, &cfg->ca_len, path, ST_KUBE_CAP_FILE, err)) < 0) {
		st_err_prefix(err, "in-cluster service account");
		goto out;
	}
	(void)snprintf(path, sizeof(path), "%s/namespace", dir);
	if (st_kube__read_file(&ns, &ns_len, path, 4096, NULL) == 0)
		cfg->namespace = trimmed_dup(ns, ns_len);
	if (cfg->namespace == NULL || cfg->namespace[0] == '\0') {
		free(cfg->namespace);
		cfg->namespace = st_xstrdup("default");
	}
	rc = 0;
out:
	free(ns);
	if (rc < 0)
		st_kube_config_dispose(cfg);
	return rc;
}

/* The first entry of a ':'-separated $KUBECONFIG, as a heap string; NULL when empty. */
static char *first_kubeconfig(const char *env)
{
	size_t n;

	if (env == NULL)
		return NULL;
	n = strcspn(env, ":");
	return n > 0 ? st_xstrndup(env, n) : NULL;
}

/* ~/.kube/config when it exists, as a heap string; NULL otherwise. */
static char *home_kubeconfig(void)
{
	const char *home = getenv("HOME");
	size_t n;
	char *path;

	if (home == NULL || home[0] == '\0')
		return NULL;
	n = strlen(home) + sizeof("/.kube/config");
	path = st_xmalloc(n);
	(void)snprintf(path, n, "%s/.kube/config", home);
	if (access(path, F_OK) == 0)
		return path;
	free(path);
	return NULL;
}

int st_kube_config_load(struct st_kube_config *cfg, const struct st_kube_config_options *opts,
                        struct st_err *err)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	char *path = NULL;
	int rc = ST_EINTERNAL;

	if (opts != NULL && opts->path != NULL && opts->path[0] != '\0')
		path = st_xstrdup(opts->path);
	if (path == NULL)
		path = first_kubeconfig(getenv("KUBECONFIG"));
	if (path == NULL)
		path = home_kubeconfig();
	if (path == NULL && (host == NULL || host[0] == '\0')) {
		rc = st_err_set(
		        err, ST_ENOTFOUND,
		        "no Kubernetes configuration: no --kubeconfig, $KUBECONFIG is unset, "
		        "~/.kube/config does not exist and KUBERNETES_SERVICE_HOST is not set");
		goto out;
	}
	if (path == NULL)
		rc = st_kube_config_incluster(cfg, opts ? opts->incluster_dir : NULL, err);
	else
		rc = st_kube_config_load_file(cfg, path, opts ? opts->context : NULL, err);
out:
	free(path);
	return rc;
}
