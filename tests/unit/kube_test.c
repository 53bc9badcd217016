/*
 * Kubernetes client tests.
 *
 * Offline: kubeconfig parsing from files written to a temporary directory
 * (contexts, data vs file, token files, insecure, $KUBECONFIG and ~/.kube,
 * in-cluster, clear errors), base64, path building, query encoding, Status
 * decoding, the token bucket, a refused connection, and retries against a
 * scripted HTTP server on 127.0.0.1 (429 with Retry-After, 503 on GET and POST).
 *
 * Live: when STASIS_KUBECONFIG names a kubeconfig (tests/integration/
 * kube_client.sh starts the API stand-in and sets it), discovery and name
 * resolution, CRUD with 404/409 messages, patches, the status subresource,
 * pagination and label selectors over 300 objects, watches with relist after
 * 410, client-certificate and bearer-token authentication, a wrong CA and
 * concurrent use from several threads. Optional companions:
 * STASIS_KUBECONFIG_CERT (client-certificate-only kubeconfig) and
 * STASIS_KUBE_WRONG_CA (a CA that did not sign the server).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pkg/kube.h"
#include "pkg/kube_int.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

static char tmpdir[256];

/* ---- helpers ---------------------------------------------------------------------------- */

static void write_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	(void)snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int load(struct st_kube_config *cfg, const char *name, const char *ctx, struct st_err *err)
{
	char path[512];

	(void)snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	st_kube_config_init(cfg);
	st_err_clear(err);
	return st_kube_config_load_file(cfg, path, ctx, err);
}

#define PEM_CA   "-----BEGIN CERTIFICATE-----\nQ0EK\n-----END CERTIFICATE-----\n"
#define PEM_CERT "-----BEGIN CERTIFICATE-----\nQ0VSVAo=\n-----END CERTIFICATE-----\n"
#define PEM_KEY  "-----BEGIN PRIVATE KEY-----\nS0VZCg==\n-----END PRIVATE KEY-----\n"

static char *b64(const char *s)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(s), i, o = 0;
	char *r = st_xmalloc(n / 3 * 4 + 8);

	for (i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)s[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)s[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)s[i + 2];
		r[o++] = al[(v >> 18) & 63];
		r[o++] = al[(v >> 12) & 63];
		r[o++] = i + 1 < n ? al[(v >> 6) & 63] : '=';
		r[o++] = i + 2 < n ? al[v & 63] : '=';
	}
	r[o] = '\0';
	return r;
}

static int setup(void **state)
{
	(void)state;
	(void)snprintf(tmpdir, sizeof(tmpdir), "/tmp/st-kube-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	(void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- kubeconfig ------------------------------------------------------------------------- */

static void write_two_contexts(void)
{
	char *ca = b64(PEM_CA), *cert = b64(PEM_CERT), *key = b64(PEM_KEY);
	char text[4096];

	write_file("ca.pem", PEM_CA);
	(void)snprintf(text, sizeof(text),
	               "apiVersion: v1\n"
	               "kind: Config\n"
	               "current-context: alpha\n"
	               "clusters:\n"
	               "- name: c-alpha\n"
	               "  cluster:\n"
	               "    server: https://alpha.example:6443/\n"
	               "    certificate-authority: ca.pem\n"
	               "- name: c-beta\n"
	               "  cluster:\n"
	               "    server: https://10.0.0.1:443\n"
	               "    certificate-authority-data: %s\n"
	               "contexts:\n"
	               "- name: alpha\n"
	               "  context: {cluster: c-alpha, user: u-token}\n"
	               "- name: beta\n"
	               "  context: {cluster: c-beta, user: u-cert, namespace: team}\n"
	               "users:\n"
	               "- name: u-token\n"
	               "  user:\n"
	               "    token: sekret-token\n"
	               "- name: u-cert\n"
	               "  user:\n"
	               "    client-certificate-data: %s\n"
	               "    client-key-data: %s\n",
	               ca, cert, key);
	write_file("two.yaml", text);
	free(ca);
	free(cert);
	free(key);
}

static void test_config_contexts(void **state)
{
	struct st_kube_config cfg;
	struct st_err err = ST_ERR_INIT;
	char path[512];

	(void)state;
	write_two_contexts();
	assert_int_equal(load(&cfg, "two.yaml", NULL, &err), 0);
	assert_string_equal(cfg.context, "alpha");
	assert_string_equal(cfg.cluster, "c-alpha");
	assert_string_equal(cfg.user, "u-token");
	assert_string_equal(cfg.server, "https://alpha.example:6443");
	assert_string_equal(cfg.namespace, "default");
	assert_string_equal(cfg.token, "sekret-token");
	/* A relative certificate-authority is read next to the kubeconfig. */
	assert_int_equal(cfg.ca_len, strlen(PEM_CA));
	assert_memory_equal(cfg.ca, PEM_CA, cfg.ca_len);
	assert_null(cfg.cert);
	assert_null(cfg.key);
	assert_false(cfg.insecure);
	(void)snprintf(path, sizeof(path), "%s/two.yaml", tmpdir);
	assert_string_equal(cfg.source, path);
	st_kube_config_dispose(&cfg);

	assert_int_equal(load(&cfg, "two.yaml", "beta", &err), 0);
	assert_string_equal(cfg.context, "beta");
	assert_string_equal(cfg.server, "https://10.0.0.1:443");
	assert_string_equal(cfg.namespace, "team");
	assert_null(cfg.token);
	assert_int_equal(cfg.ca_len, strlen(PEM_CA));
	assert_memory_equal(cfg.ca, PEM_CA, cfg.ca_len);
	assert_int_equal(cfg.cert_len, strlen(PEM_CERT));
	assert_memory_equal(cfg.cert, PEM_CERT, cfg.cert_len);
	assert_int_equal(cfg.key_len, strlen(PEM_KEY));
	assert_memory_equal(cfg.key, PEM_KEY, cfg.key_len);
	st_kube_config_dispose(&cfg);
	st_kube_config_dispose(&cfg); /* idempotent */
}

static void test_config_files_token_insecure(void **state)
{
	struct st_kube_config cfg;
	struct st_err err = ST_ERR_INIT;
	char text[2048];

	(void)state;
	write_file("client.crt", PEM_CERT);
	write_file("client.key", PEM_KEY);
	write_file("tok", "  file-token-123\n\n");
	(void)snprintf(text, sizeof(text),
	               "{\"current-context\": \"x\","
	               " \"clusters\": [{\"name\": \"k\", \"cluster\": {\"server\": "
	               "\"http://127.0.0.1:8080\", \"insecure-skip-tls-verify\": true}}],"
	               " \"contexts\": [{\"name\": \"x\", \"context\": {\"cluster\": \"k\","
	               " \"user\": \"me\"}}],"
	               " \"users\": [{\"name\": \"me\", \"user\": {\"tokenFile\": \"tok\","
	               " \"client-certificate\": \"%s/client.crt\","
	               " \"client-key\": \"client.key\"}}]}",
	               tmpdir);
	write_file("json.conf", text);
	assert_int_equal(load(&cfg, "json.conf", NULL, &err), 0);
	assert_true(cfg.insecure);
	assert_string_equal(cfg.token, "file-token-123");
	assert_non_null(cfg.token_file);
	assert_non_null(strstr(cfg.token_file, "/tok"));
	assert_memory_equal(cfg.cert, PEM_CERT, cfg.cert_len);
	assert_memory_equal(cfg.key, PEM_KEY, cfg.key_len);
	assert_string_equal(cfg.server, "http://127.0.0.1:8080");
	st_kube_config_dispose(&cfg);

	/* The string "true" counts, anything else does not. */
	write_file("ins.yaml", "current-context: a\n"
	                       "clusters: [{name: k, cluster: {server: 'https://h',"
	                       " insecure-skip-tls-verify: 'true'}}]\n"
	                       "contexts: [{name: a, context: {cluster: k}}]\n");
	assert_int_equal(load(&cfg, "ins.yaml", NULL, &err), 0);
	assert_true(cfg.insecure);
	assert_null(cfg.user);
	st_kube_config_dispose(&cfg);
	write_file("ins2.yaml", "current-context: a\n"
	                        "clusters: [{name: k, cluster: {server: 'https://h',"
	                        " insecure-skip-tls-verify: false}}]\n"
	                        "contexts: [{name: a, context: {cluster: k}}]\n");
	assert_int_equal(load(&cfg, "ins2.yaml", NULL, &err), 0);
	assert_false(cfg.insecure);
	st_kube_config_dispose(&cfg);
}

struct bad_config {
	const char *text;
	const char *ctx;
	int rc;
	const char *msg; /* substring of the message */
};

static void test_config_errors(void **state)
{
	static const struct bad_config cases[] = {
		{ "clusters: []\n", NULL, ST_EINVAL, "no current-context is set" },
		{ "current-context: a\ncontexts: [{name: b, context: {cluster: k}}, {name: c,"
		  " context: {cluster: k}}]\n",
		  NULL, ST_ENOTFOUND, "context \"a\" not found (defined: \"b\", \"c\")" },
		{ "contexts: [{name: b, context: {cluster: k}}]\n", "zz", ST_ENOTFOUND,
		  "context \"zz\" not found" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k}}]\n", NULL,
		  ST_ENOTFOUND, "names cluster \"k\", which is not defined" },
		{ "current-context: a\ncontexts: [{name: a, context: {user: u}}]\n", NULL,
		  ST_EINVAL, "context \"a\" names no cluster" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k}}]\n"
		  "clusters: [{name: k, cluster: {}}]\n",
		  NULL, ST_EINVAL, "cluster \"k\" has no server" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k}}]\n"
		  "clusters: [{name: k, cluster: {server: 'ftp://x'}}]\n",
		  NULL, ST_EINVAL, "is not an http(s) URL" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k, user: u}}]\n"
		  "clusters: [{name: k, cluster: {server: 'https://x'}}]\n",
		  NULL, ST_ENOTFOUND, "names user \"u\", which is not defined" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k, user: u}}]\n"
		  "clusters: [{name: k, cluster: {server: 'https://x'}}]\n"
		  "users: [{name: u, user: {client-certificate-data: 'Q0VSVAo='}}]\n",
		  NULL, ST_EINVAL, "user \"u\" has a client certificate but no client key" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k}}]\n"
		  "clusters: [{name: k, cluster: {server: 'https://x',"
		  " certificate-authority-data: 'not*base64'}}]\n",
		  NULL, ST_EINVAL,
		  "certificate-authority-data of cluster \"k\" is not valid base64" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k}}]\n"
		  "clusters: [{name: k, cluster: {server: 'https://x',"
		  " certificate-authority: /nonexistent/ca.pem}}]\n",
		  NULL, ST_ENOTFOUND,
		  "certificate-authority of cluster \"k\": cannot read "
		  "/nonexistent/ca.pem" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k, user: u}}]\n"
		  "clusters: [{name: k, cluster: {server: 'https://x'}}]\n"
		  "users: [{name: u, user: {exec: {command: aws}}}]\n",
		  NULL, ST_EINVAL, "credential plugin, which is not supported" },
		{ "current-context: a\ncontexts: [{name: a, context: {cluster: k, user: u}}]\n"
		  "clusters: [{name: k, cluster: {server: 'https://x'}}]\n"
		  "users: [{name: u, user: {tokenFile: /nonexistent/tok}}]\n",
		  NULL, ST_ENOTFOUND, "tokenFile of user \"u\"" },
		{ "- a\n- b\n", NULL, ST_EINVAL, "not a kubeconfig" },
		{ "a: [\n", NULL, ST_EINVAL, "bad.yaml" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct st_kube_config cfg;
		struct st_err err = ST_ERR_INIT;
		int rc;

		write_file("bad.yaml", cases[i].text);
		rc = load(&cfg, "bad.yaml", cases[i].ctx, &err);
		if (rc != cases[i].rc || strstr(err.msg, cases[i].msg) == NULL)
			fail_msg("case %zu: rc %d, message \"%s\", want %d and \"%s\"", i, rc,
			         err.msg, cases[i].rc, cases[i].msg);
		/* Errors name the file. */
		assert_non_null(strstr(err.msg, "bad.yaml"));
		assert_null(cfg.server);
	}
}

static void test_config_env(void **state)
{
	struct st_kube_config_options o = ST_KUBE_CONFIG_OPTIONS_INIT;
	struct st_kube_config cfg;
	struct st_err err = ST_ERR_INIT;
	char env[1024], home[512], *old_home = getenv("HOME");
	char *saved_home = old_home ? st_xstrdup(old_home) : NULL;

	(void)state;
	write_two_contexts();
	/* Only the first entry of $KUBECONFIG is used. */
	(void)snprintf(env, sizeof(env), "%s/two.yaml:/nonexistent/other", tmpdir);
	assert_int_equal(setenv("KUBECONFIG", env, 1), 0);
	st_kube_config_init(&cfg);
	o.context = "beta";
	assert_int_equal(st_kube_config_load(&cfg, &o, &err), 0);
	assert_string_equal(cfg.context, "beta");
	st_kube_config_dispose(&cfg);

	/* An explicit path wins over $KUBECONFIG. */
	o.path = "/nonexistent/explicit";
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_load(&cfg, &o, &err), ST_ENOTFOUND);
	assert_non_null(strstr(err.msg, "/nonexistent/explicit"));
	st_err_clear(&err);

	/* Without either, ~/.kube/config. */
	assert_int_equal(unsetenv("KUBECONFIG"), 0);
	(void)snprintf(home, sizeof(home), "%s/home", tmpdir);
	assert_int_equal(mkdir(home, 0700), 0);
	(void)snprintf(env, sizeof(env), "%s/.kube", home);
	assert_int_equal(mkdir(env, 0700), 0);
	write_file("home/.kube/config",
	           "current-context: h\n"
	           "clusters: [{name: k, cluster: {server: 'https://home:1'}}]\n"
	           "contexts: [{name: h, context: {cluster: k}}]\n");
	assert_int_equal(setenv("HOME", home, 1), 0);
	o.path = NULL;
	o.context = NULL;
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_load(&cfg, &o, &err), 0);
	assert_string_equal(cfg.server, "https://home:1");
	st_kube_config_dispose(&cfg);

	/* Nothing anywhere: one message lists every place that was tried. */
	(void)snprintf(env, sizeof(env), "%s/empty-home", tmpdir);
	assert_int_equal(setenv("HOME", env, 1), 0);
	(void)unsetenv("KUBERNETES_SERVICE_HOST");
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_load(&cfg, &o, &err), ST_ENOTFOUND);
	assert_non_null(strstr(err.msg, "no Kubernetes configuration"));
	assert_non_null(strstr(err.msg, "KUBERNETES_SERVICE_HOST"));
	st_err_clear(&err);

	/* ... and in a pod, the service account. */
	(void)snprintf(env, sizeof(env), "%s/sa2", tmpdir);
	assert_int_equal(mkdir(env, 0700), 0);
	write_file("sa2/token", "pod-token");
	write_file("sa2/ca.crt", PEM_CA);
	assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1), 0);
	assert_int_equal(setenv("KUBERNETES_SERVICE_PORT", "6443", 1), 0);
	o.incluster_dir = env;
	assert_int_equal(st_kube_config_load(&cfg, &o, &err), 0);
	assert_string_equal(cfg.server, "https://10.0.0.1:6443");
	assert_string_equal(cfg.token, "pod-token");
	st_kube_config_dispose(&cfg);
	(void)unsetenv("KUBERNETES_SERVICE_HOST");
	(void)unsetenv("KUBERNETES_SERVICE_PORT");
	if (saved_home != NULL)
		assert_int_equal(setenv("HOME", saved_home, 1), 0);
	free(saved_home);
}

static void test_config_incluster(void **state)
{
	struct st_kube_config cfg;
	struct st_err err = ST_ERR_INIT;
	char dir[512];

	(void)state;
	(void)snprintf(dir, sizeof(dir), "%s/sa", tmpdir);
	assert_int_equal(mkdir(dir, 0700), 0);
	write_file("sa/token", "sa-token\n");
	write_file("sa/ca.crt", PEM_CA);
	write_file("sa/namespace", "backup-system\n");

	(void)unsetenv("KUBERNETES_SERVICE_HOST");
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_incluster(&cfg, dir, &err), ST_ENOTFOUND);
	assert_non_null(strstr(err.msg, "KUBERNETES_SERVICE_HOST"));
	st_err_clear(&err);

	assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1), 0);
	assert_int_equal(setenv("KUBERNETES_SERVICE_PORT", "443", 1), 0);
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_incluster(&cfg, dir, &err), 0);
	assert_string_equal(cfg.server, "https://10.96.0.1:443");
	assert_string_equal(cfg.token, "sa-token");
	assert_string_equal(cfg.namespace, "backup-system");
	assert_string_equal(cfg.context, "in-cluster");
	assert_memory_equal(cfg.ca, PEM_CA, cfg.ca_len);
	assert_non_null(cfg.token_file);
	st_kube_config_dispose(&cfg);

	assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1), 0);
	write_file("sa/namespace", "");
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_incluster(&cfg, dir, &err), 0);
	assert_string_equal(cfg.server, "https://[fd00::1]:443");
	assert_string_equal(cfg.namespace, "default");
	st_kube_config_dispose(&cfg);

	write_file("sa/token", "\n");
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_incluster(&cfg, dir, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "is empty"));
	(void)unsetenv("KUBERNETES_SERVICE_HOST");
	(void)unsetenv("KUBERNETES_SERVICE_PORT");
}

static void test_b64(void **state)
{
	static const struct {
		const char *in;
		const char *out; /* NULL: invalid */
	} cases[] = {
		{ "", "" },        { "YQ==", "a" },       { "YWI=", "ab" },
		{ "YWJj", "abc" }, { "YW\nJj\n", "abc" }, { "YQ", "a" },
		{ "Y", NULL },     { "YR==", NULL },      { "YQ==YQ==", NULL },
		{ "Y*Q=", NULL },  { "YQ===", NULL },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = NULL;
		size_t len = 0;
		int rc = st_kube__b64_decode(&out, &len, cases[i].in, strlen(cases[i].in));

		if (cases[i].out == NULL) {
			if (rc != ST_EINVAL)
				fail_msg("\"%s\" decoded", cases[i].in);
			assert_null(out);
			continue;
		}
		if (rc != 0)
			fail_msg("\"%s\" refused", cases[i].in);
		assert_int_equal(len, strlen(cases[i].out));
		assert_string_equal(out, cases[i].out);
		free(out);
	}
}

/* ---- paths, queries, Status ------------------------------------------------------------- */

static void test_paths(void **state)
{
	static const struct {
		const char *group, *version, *resource;
		bool namespaced;
		const char *ns, *name, *sub;
		int rc;
		const char *path;
	} cases[] = {
		{ "", "v1", "pods", true, "test", "web-0", NULL, 0,
		  "/api/v1/namespaces/test/pods/web-0" },
		{ "", "v1", "pods", true, NULL, NULL, NULL, 0, "/api/v1/pods" },
		{ "", "v1", "pods", true, "", NULL, NULL, 0, "/api/v1/pods" },
		{ "apps", "v1", "deployments", true, "test", NULL, NULL, 0,
		  "/apis/apps/v1/namespaces/test/deployments" },
		{ "apps", "v1", "deployments", true, "test", "web", "status", 0,
		  "/apis/apps/v1/namespaces/test/deployments/web/status" },
		{ "", "v1", "namespaces", false, "ignored", "test", NULL, 0,
		  "/api/v1/namespaces/test" },
		{ "rbac.authorization.k8s.io", "v1", "clusterroles", false, NULL,
		  "system:controller:x", NULL, 0,
		  "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Acontroller%3Ax" },
		{ "", "v1", "configmaps", true, "a b", "c?d#e%", NULL, 0,
		  "/api/v1/namespaces/a%20b/configmaps/c%3Fd%23e%25" },
		{ "", "v1", "pods", true, "test", "..", NULL, ST_EINVAL, "" },
		{ "", "v1", "pods", true, "test", "a/b", NULL, ST_EINVAL, "" },
		{ "", "v1", "pods", true, "..", "x", NULL, ST_EINVAL, "" },
		{ "", "v1", "pods", true, "test", "", NULL, ST_EINVAL, "" },
	};
	char buf[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct st_kube_gvr g;
		int rc;

		assert_int_equal(st_kube_gvr_set(&g, cases[i].group, cases[i].version,
		                                 cases[i].resource, NULL, cases[i].namespaced),
		                 0);
		rc = st_kube_path(buf, sizeof(buf), &g, cases[i].ns, cases[i].name, cases[i].sub);
		if (rc != cases[i].rc || strcmp(buf, cases[i].path) != 0)
			fail_msg("case %zu: rc %d path \"%s\"", i, rc, buf);
	}
	{
		struct st_kube_gvr g;

		assert_int_equal(
		        st_kube_gvr_set(&g, "apps", "v1", "deployments", "Deployment", true), 0);
		assert_int_equal(st_kube_path(buf, 20, &g, "test", "web", NULL), ST_ETOOBIG);
		st_kube_gvr_name(buf, sizeof(buf), &g);
		assert_string_equal(buf, "deployments.apps");
		assert_int_equal(st_kube_gvr_set(&g, "", "", "pods", NULL, true), ST_EINVAL);
		memset(buf, 'x', 200);
		buf[200] = '\0';
		assert_int_equal(st_kube_gvr_set(&g, "", "v1", buf, NULL, true), ST_EINVAL);
	}
}

static void test_query(void **state)
{
	struct st_buf q = ST_BUF_INIT(1024);

	(void)state;
	assert_int_equal(st_kube__query_add(&q, "labelSelector", "app=web,tier in (a,b),!x"), 0);
	assert_int_equal(st_kube__query_add(&q, "fieldSelector", "metadata.name!=a b"), 0);
	assert_int_equal(st_kube__query_add(&q, "continue", "eyJ2Ijoi+/="), 0);
	assert_string_equal(st_buf_cstr(&q),
	                    "labelSelector=app%3Dweb%2Ctier%20in%20%28a%2Cb%29%2C%21x"
	                    "&fieldSelector=metadata.name%21%3Da%20b"
	                    "&continue=eyJ2Ijoi%2B%2F%3D");
	st_buf_dispose(&q);
	st_buf_init(&q, 8);
	assert_int_equal(st_kube__query_add(&q, "limit", "500000"), ST_ETOOBIG);
	st_buf_dispose(&q);
}

static void test_status_messages(void **state)
{
	static const struct {
		const char *method, *resname, *ns, *name;
		long http;
		const char *body;
		int rc;
		const char *msg;
	} cases[] = {
		{ "GET", "deployments.apps", "test", "web", 404,
		  "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\","
		  "\"message\":\"deployments.apps \\\"web\\\" not found\",\"code\":404}",
		  ST_ENOTFOUND, "deployments.apps \"web\" not found in namespace \"test\"" },
		{ "GET", "namespaces", NULL, "gone", 404,
		  "{\"kind\":\"Status\",\"reason\":\"NotFound\",\"message\":\"x\"}", ST_ENOTFOUND,
		  "namespaces \"gone\" not found" },
		/* A path the server does not serve at all. */
		{ "GET", "frobs.example.com", "t", "x", 404, "404 page not found", ST_ENOTFOUND,
		  "GET frobs.example.com \"x\" in namespace \"t\": 404 page not found" },
		{ "GET", "frobs", "t", NULL, 404,
		  "{\"kind\":\"Status\",\"reason\":\"NotFound\",\"details\":{},\"message\":"
		  "\"the server could not find the requested resource\"}",
		  ST_ENOTFOUND,
		  "GET frobs in namespace \"t\": the server could not find the requested" },
		/* Creating in a namespace that does not exist names the namespace. */
		{ "POST", "configmaps", "nons", "c1", 404,
		  "{\"kind\":\"Status\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nons\","
		  "\"kind\":\"namespaces\"},\"message\":\"namespaces \\\"nons\\\" not found\"}",
		  ST_ENOTFOUND,
		  "POST configmaps \"c1\" in namespace \"nons\": namespaces \"nons\" not found" },
		{ "POST", "configmaps", "test", "cm", 409,
		  "{\"kind\":\"Status\",\"reason\":\"AlreadyExists\",\"message\":\"x\",\"code\":"
		  "409}",
		  ST_EUPSTREAM, "configmaps \"cm\" already exists in namespace \"test\"" },
		{ "PUT", "configmaps", "test", "cm", 409,
		  "{\"kind\":\"Status\",\"reason\":\"Conflict\",\"message\":\"Operation cannot be "
		  "fulfilled on configmaps \\\"cm\\\": the object has been "
		  "modified\",\"code\":409}",
		  ST_EUPSTREAM,
		  "conflict on configmaps \"cm\" in namespace \"test\": Operation cannot be "
		  "fulfilled on configmaps \"cm\": the object has been modified" },
		{ "GET", "secrets", "kube-system", "k", 403,
		  "{\"kind\":\"Status\",\"reason\":\"Forbidden\",\"message\":\"secrets \\\"k\\\" "
		  "is "
		  "forbidden: User \\\"bob\\\" cannot get resource \\\"secrets\\\"\",\"code\":403}",
		  ST_EUPSTREAM,
		  "forbidden: secrets \"k\" is forbidden: User \"bob\" cannot get resource "
		  "\"secrets\"" },
		{ "GET", "secrets", "kube-system", "k", 403,
		  "{\"kind\":\"Status\",\"message\":\"no\"}", ST_EUPSTREAM,
		  "forbidden: no (as user \"alice\" of context \"prod\")" },
		{ "GET", "pods", "test", NULL, 401, "{\"kind\":\"Status\",\"code\":401}",
		  ST_EUPSTREAM,
		  "unauthorized: the API server at https://k:6443 rejected the credentials of user "
		  "\"alice\" (context \"prod\" in /home/a/.kube/config)" },
		{ "POST", "pods", "test", "p", 422,
		  "{\"kind\":\"Status\",\"reason\":\"Invalid\",\"message\":\"spec.containers: "
		  "Required value\"}",
		  ST_EINVAL,
		  "invalid pods \"p\" in namespace \"test\": spec.containers: Required value" },
		{ "GET", "pods", NULL, NULL, 503, "upstream\nbusy", ST_EUPSTREAM,
		  "GET pods: HTTP 503 from the API server: upstream busy" },
		{ "GET", "pods", NULL, NULL, 410,
		  "{\"kind\":\"Status\",\"reason\":\"Expired\",\"message\":\"too old\"}",
		  ST_EUPSTREAM, "pods: gone (too old)" },
	};
	struct st_kube_config cfg;
	size_t i;

	(void)state;
	st_kube_config_init(&cfg);
	cfg.server = "https://k:6443";
	cfg.context = "prod";
	cfg.user = "alice";
	cfg.source = "/home/a/.kube/config";
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct st_kube__req r = { .method = cases[i].method, .path = "/x" };
		struct st_err err = ST_ERR_INIT;
		int rc;

		r.resname = cases[i].resname;
		r.ns = cases[i].ns;
		r.name = cases[i].name;
		rc = st_kube__status_error(&err, &cfg, &r, cases[i].http, cases[i].body,
		                           strlen(cases[i].body));
		if (rc != cases[i].rc || strstr(err.msg, cases[i].msg) == NULL)
			fail_msg("case %zu: rc %d \"%s\"", i, rc, err.msg);
	}
}

static void test_limiter(void **state)
{
	struct st_kube__limiter l;
	uint64_t t = 1000000, waits = 0;
	int i;

	(void)state;
	st_kube__limiter_init(&l, 5, 10, t);
	/* The burst goes through at once. */
	for (i = 0; i < 10; i++)
		assert_int_equal(st_kube__limiter_reserve(&l, t), 0);
	/* Then one request per 200 ms, queued behind each other. */
	assert_int_equal(st_kube__limiter_reserve(&l, t), 200000);
	assert_int_equal(st_kube__limiter_reserve(&l, t), 400000);
	/* One second later five tokens came back, two of them already promised. */
	t += 1000000;
	for (i = 0; i < 3; i++)
		assert_int_equal(st_kube__limiter_reserve(&l, t), 0);
	assert_int_equal(st_kube__limiter_reserve(&l, t), 200000);
	/* A long idle period refills to the burst, not beyond. */
	t += 3600ull * 1000000ull;
	for (i = 0; i < 12; i++)
		waits += st_kube__limiter_reserve(&l, t) > 0;
	assert_int_equal(waits, 2);
	/* Defaults when unset. */
	st_kube__limiter_init(&l, 0, 0, 0);
	assert_true(l.qps >= 5 && l.burst >= 10);
}

/* ---- a scripted HTTP server --------------------------------------------------------------- */

struct script {
	int fd;
	int port;
	const char *const *responses; /* one full response per connection */
	size_t n;
	char requests[8][256]; /* method at 0, path and query at 16 */
	size_t seen;
	pthread_t th;
};

static void *script_main(void *arg)
{
	struct script *s = arg;
	size_t i;

	for (i = 0; i < s->n; i++) {
		char buf[8192];
		size_t got = 0;
		int c = accept(s->fd, NULL, NULL);

		if (c < 0)
			break;
		while (got < sizeof(buf) - 1) {
			ssize_t k = recv(c, buf + got, sizeof(buf) - 1 - got, 0);

			if (k <= 0)
				break;
			got += (size_t)k;
			buf[got] = '\0';
			if (strstr(buf, "\r\n\r\n") != NULL)
				break;
		}
		buf[got] = '\0';
		if (s->seen < 8) {
			(void)sscanf(buf, "%15s %239s", s->requests[s->seen],
			             s->requests[s->seen] + 16);
			s->seen++;
		}
		(void)!write(c, s->responses[i], strlen(s->responses[i]));
		(void)close(c);
	}
	return NULL;
}

static void script_start(struct script *s, const char *const *responses, size_t n)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);

	memset(s, 0, sizeof(*s));
	s->responses = responses;
	s->n = n;
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->fd, 8), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->th, NULL, script_main, s), 0);
}

static void script_stop(struct script *s)
{
	(void)shutdown(s->fd, SHUT_RDWR);
	(void)close(s->fd);
	(void)pthread_join(s->th, NULL);
}

static struct st_kube_client *client_for(int port, unsigned retries)
{
	struct st_kube_client_options o = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_kube_config cfg;
	struct st_kube_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	char url[64];

	st_kube_config_init(&cfg);
	(void)snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	cfg.server = url;
	cfg.context = "local";
	cfg.source = "test";
	o.max_retries = retries;
	o.backoff_ms = 10;
	o.connect_timeout_ms = 2000;
	o.timeout_ms = 5000;
	assert_int_equal(st_kube_client_new(&c, &cfg, &o, &err), 0);
	return c;
}

#define RESP_OK                                                                       \
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 38\r\n" \
	"Connection: close\r\n\r\n{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}"
#define RESP_429                                                                    \
	"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n" \
	"Connection: close\r\n\r\n"
#define RESP_503                                                    \
	"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n" \
	"Connection: close\r\n\r\nbusy"

static void test_retry_429(void **state)
{
	static const char *const script[] = { RESP_429, RESP_OK };
	struct st_kube_client *c;
	struct st_kube_gvr pods;
	struct st_kube_stats st;
	struct json_object *obj = NULL;
	struct st_err err = ST_ERR_INIT;
	struct script s;
	uint64_t t0;
	long http = 0;

	(void)state;
	script_start(&s, script, 2);
	c = client_for(s.port, 3);
	assert_int_equal(st_kube_gvr_set(&pods, "", "v1", "pods", "Pod", true), 0);
	t0 = st_kube__now_us();
	assert_int_equal(st_kube_get(&obj, c, &pods, "test", "p", &http, &err), 0);
	/* Retry-After: 1 was honoured even though the backoff is 10 ms. */
	assert_true(st_kube__now_us() - t0 >= 1000000);
	assert_int_equal(http, 200);
	assert_string_equal(st_json_get_str(st_json_get_obj(obj, "metadata"), "name"), "p");
	st_kube_client_stats(&st, c);
	assert_int_equal(st.requests[ST_KUBE_VERB_GET], 2);
	assert_int_equal(st.retries, 1);
	script_stop(&s);
	assert_string_equal(s.requests[0], "GET");
	assert_string_equal(s.requests[0] + 16, "/api/v1/namespaces/test/pods/p");
	json_object_put(obj);
	st_kube_client_free(c);
}

static void test_retry_5xx(void **state)
{
	static const char *const get_script[] = { RESP_503, RESP_503, RESP_OK };
	static const char *const post_script[] = { RESP_503 };
	struct st_kube_client *c;
	struct st_kube_gvr pods;
	struct st_kube_stats st;
	struct json_object *obj = NULL, *body = NULL;
	struct st_err err = ST_ERR_INIT;
	struct script s;
	long http = 0;

	(void)state;
	assert_int_equal(st_kube_gvr_set(&pods, "", "v1", "pods", "Pod", true), 0);
	script_start(&s, get_script, 3);
	c = client_for(s.port, 5);
	assert_int_equal(st_kube_get(&obj, c, &pods, "test", "p", &http, &err), 0);
	st_kube_client_stats(&st, c);
	assert_int_equal(st.requests[ST_KUBE_VERB_GET], 3);
	json_object_put(obj);
	script_stop(&s);
	st_kube_client_free(c);

	/* A create is not repeated after a 5xx: the server may have acted on it. */
	script_start(&s, post_script, 1);
	c = client_for(s.port, 5);
	body = json_tokener_parse("{\"metadata\":{\"name\":\"p\"}}");
	assert_int_equal(st_kube_create(&obj, c, &pods, "test", body, &http, &err), ST_EUPSTREAM);
	assert_int_equal(http, 503);
	assert_null(obj);
	assert_non_null(strstr(err.msg, "HTTP 503 from the API server: busy"));
	st_kube_client_stats(&st, c);
	assert_int_equal(st.requests[ST_KUBE_VERB_CREATE], 1);
	assert_int_equal(st.retries, 0);
	json_object_put(body);
	script_stop(&s);
	st_kube_client_free(c);
}

/* The token bucket in front of real requests: qps 20, burst 2, 12 requests take >= 0.5 s. */
static void test_throttle(void **state)
{
	const char *script[12];
	struct st_kube_client_options o = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_kube_config cfg;
	struct st_kube_client *c = NULL;
	struct st_kube_gvr pods;
	struct st_kube_stats st;
	struct st_err err = ST_ERR_INIT;
	struct script s;
	char url[64];
	uint64_t t0, dt;
	int i;

	(void)state;
	for (i = 0; i < 12; i++)
		script[i] = RESP_OK;
	script_start(&s, script, 12);
	st_kube_config_init(&cfg);
	(void)snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
	cfg.server = url;
	o.qps = 20;
	o.burst = 2;
	assert_int_equal(st_kube_client_new(&c, &cfg, &o, &err), 0);
	assert_int_equal(st_kube_gvr_set(&pods, "", "v1", "pods", "Pod", true), 0);
	t0 = st_kube__now_us();
	for (i = 0; i < 12; i++) {
		struct json_object *obj = NULL;

		assert_int_equal(st_kube_get(&obj, c, &pods, "test", "p", NULL, &err), 0);
		json_object_put(obj);
	}
	dt = st_kube__now_us() - t0;
	script_stop(&s);
	/* Two from the burst, then ten at 50 ms each. */
	assert_true(dt >= 480000);
	assert_true(dt < 5000000);
	st_kube_client_stats(&st, c);
	assert_true(st.throttled_ms >= 400);
	assert_int_equal(st.requests[ST_KUBE_VERB_GET], 12);
	st_kube_client_free(c);
}

static void test_connection_refused(void **state)
{
	struct st_kube_client *c;
	struct st_kube_gvr pods;
	struct st_kube_stats st;
	struct json_object *obj = NULL;
	struct st_err err = ST_ERR_INIT;
	struct script s;
	int port;
	long http = -1;

	(void)state;
	/* A port that was just free: bind, note, close. */
	script_start(&s, NULL, 0);
	port = s.port;
	script_stop(&s);
	c = client_for(port, 2);
	assert_int_equal(st_kube_gvr_set(&pods, "", "v1", "pods", "Pod", true), 0);
	assert_int_equal(st_kube_get(&obj, c, &pods, "test", "p", &http, &err), ST_EIO);
	assert_int_equal(http, 0);
	assert_non_null(strstr(err.msg, "cannot connect to the Kubernetes API server at "
	                                "http://127.0.0.1:"));
	assert_non_null(strstr(err.msg, "(context \"local\")"));
	st_kube_client_stats(&st, c);
	assert_int_equal(st.requests[ST_KUBE_VERB_GET], 3);
	st_kube_client_free(c);

	/* No server at all is refused at creation. */
	{
		struct st_kube_config cfg;

		st_kube_config_init(&cfg);
		st_err_clear(&err);
		assert_int_equal(st_kube_client_new(&c, &cfg, NULL, &err), ST_EINVAL);
		assert_null(c);
	}
}

static char *http_response(const char *status, const char *body, bool length)
{
	size_t n = strlen(body) + 256;
	char *r = st_xmalloc(n);

	if (length)
		(void)snprintf(r, n,
		               "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: "
		               "%zu\r\nConnection: close\r\n\r\n%s",
		               status, strlen(body), body);
	else
		(void)snprintf(r, n,
		               "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
		               "Connection: close\r\n\r\n%s",
		               status, body);
	return r;
}

struct offline_events {
	char log[16][64];
	size_t n;
};

static int log_event(enum st_kube_event_type t, struct json_object *obj, void *payload)
{
	struct offline_events *ev = payload;
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	const char *kind = st_json_get_str(obj, "kind");

	if (ev->n < 16)
		(void)snprintf(ev->log[ev->n++], 64, "%s %s %s", st_kube_event_name(t),
		               name ? name : "-", kind ? kind : "-");
	return t == ST_KUBE_EVENT_DELETED ? 1 : 0;
}

/* An HTTP 410 on the watch request itself (not an ERROR event) also relists. */
static void test_watch_http_410(void **state)
{
	char *resp[3];
	struct st_kube_watch_options wo = ST_KUBE_WATCH_OPTIONS_INIT;
	struct offline_events ev;
	struct st_kube_client *c;
	struct st_kube_gvr cm;
	struct st_err err = ST_ERR_INIT;
	struct script s;
	size_t i;

	(void)state;
	resp[0] = http_response("410 Gone",
	                        "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\","
	                        "\"message\":\"too old resource version: 5 (9)\"}",
	                        true);
	resp[1] = http_response("200 OK",
	                        "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
	                        "{\"resourceVersion\":\"20\"},\"items\":[{\"metadata\":{\"name\":"
	                        "\"w-a\",\"resourceVersion\":\"19\"}}]}",
	                        true);
	/* A stream without Content-Length; the second event arrives with the close. */
	resp[2] = http_response("200 OK",
	                        "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"ConfigMap\","
	                        "\"metadata\":{\"name\":\"w-a\",\"resourceVersion\":\"21\"}}}\n"
	                        "\n{\"type\":\"DELETED\",\"object\":{\"kind\":\"ConfigMap\","
	                        "\"metadata\":{\"name\":\"w-a\",\"resourceVersion\":\"22\"}}}\n",
	                        false);
	script_start(&s, (const char *const *)resp, 3);
	c = client_for(s.port, 2);
	assert_int_equal(st_kube_gvr_set(&cm, "", "v1", "configmaps", "ConfigMap", true), 0);
	memset(&ev, 0, sizeof(ev));
	wo.resource_version = "5";
	wo.duration_ms = 10000;
	wo.bookmarks = false;
	if (st_kube_watch(c, &cm, "test", &wo, log_event, &ev, &err) != 0)
		fail_msg("watch: %s", st_err_text(&err));
	script_stop(&s);
	assert_int_equal(ev.n, 5);
	assert_string_equal(ev.log[0], "RELIST - -");
	assert_string_equal(ev.log[1], "ADDED w-a ConfigMap"); /* kind filled in from the list */
	assert_string_equal(ev.log[2], "SYNCED - -");
	assert_string_equal(ev.log[3], "MODIFIED w-a ConfigMap");
	assert_string_equal(ev.log[4], "DELETED w-a ConfigMap");
	assert_string_equal(s.requests[0] + 16, "/api/v1/namespaces/test/configmaps?watch=true"
	                                        "&resourceVersion=5&timeoutSeconds=300");
	assert_string_equal(s.requests[1] + 16, "/api/v1/namespaces/test/configmaps?limit=500");
	assert_string_equal(s.requests[2] + 16, "/api/v1/namespaces/test/configmaps?watch=true"
	                                        "&resourceVersion=20&timeoutSeconds=300");
	for (i = 0; i < 3; i++)
		free(resp[i]);
	st_kube_client_free(c);
}

static int fail_on_added(enum st_kube_event_type t, struct json_object *obj, void *payload)
{
	int *n = payload;

	(void)obj;
	(*n)++;
	return t == ST_KUBE_EVENT_ADDED ? ST_EPROTO : 0;
}

/* A failed watch connection is retried; a callback's error ends the watch with its code. */
static void test_watch_retry_and_cb_error(void **state)
{
	char *resp[3];
	struct st_kube_watch_options wo = ST_KUBE_WATCH_OPTIONS_INIT;
	struct st_kube_client *c;
	struct st_kube_gvr cm;
	struct st_kube_stats st;
	struct st_err err = ST_ERR_INIT;
	struct script s;
	int calls = 0;
	size_t i;

	(void)state;
	resp[0] = http_response("200 OK",
	                        "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
	                        "{\"resourceVersion\":\"10\"},\"items\":[]}",
	                        true);
	resp[1] = http_response("500 Internal Server Error", "{\"kind\":\"Status\",\"code\":500}",
	                        true);
	resp[2] = http_response("200 OK",
	                        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\","
	                        "\"metadata\":{\"name\":\"n\",\"resourceVersion\":\"11\"}}}\n",
	                        false);
	script_start(&s, (const char *const *)resp, 3);
	c = client_for(s.port, 3);
	assert_int_equal(st_kube_gvr_set(&cm, "", "v1", "configmaps", "ConfigMap", true), 0);
	wo.duration_ms = 10000;
	assert_int_equal(st_kube_watch(c, &cm, "test", &wo, fail_on_added, &calls, &err),
	                 ST_EPROTO);
	script_stop(&s);
	assert_int_equal(calls, 2); /* SYNCED, then the ADDED that failed */
	st_kube_client_stats(&st, c);
	assert_int_equal(st.requests[ST_KUBE_VERB_LIST], 1);
	assert_int_equal(st.requests[ST_KUBE_VERB_WATCH], 2);
	assert_non_null(strstr(s.requests[1] + 16, "resourceVersion=10"));
	assert_non_null(strstr(s.requests[2] + 16, "resourceVersion=10"));
	assert_non_null(strstr(s.requests[2] + 16, "allowWatchBookmarks=true"));
	for (i = 0; i < 3; i++)
		free(resp[i]);
	st_kube_client_free(c);
}

/* ---- live tests against an API server ----------------------------------------------------- */

static const char *live_kubeconfig(void)
{
	const char *p = getenv("STASIS_KUBECONFIG");

	return p && p[0] ? p : NULL;
}

#define LIVE_OR_SKIP()                                                                     \
	do {                                                                               \
		if (live_kubeconfig() == NULL) {                                           \
			printf("[  SKIP    ] %s: STASIS_KUBECONFIG is not set (run "       \
			       "tests/integration/kube_client.sh for the API stand-in)\n", \
			       __func__);                                                  \
			skip();                                                            \
		}                                                                          \
	} while (0)

static char live_ns[64];

static struct st_kube_client *live_client_from(const char *path, struct st_err *err)
{
	struct st_kube_client_options o = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_kube_config cfg;
	struct st_kube_client *c = NULL;

	st_kube_config_init(&cfg);
	if (st_kube_config_load_file(&cfg, path, NULL, err) < 0)
		return NULL;
	o.qps = 500;
	o.burst = 500;
	o.max_retries = 2;
	o.backoff_ms = 20;
	if (st_kube_client_new(&c, &cfg, &o, err) < 0)
		c = NULL;
	st_kube_config_dispose(&cfg);
	return c;
}

static struct st_kube_client *live_client(void)
{
	struct st_err err = ST_ERR_INIT;
	struct st_kube_client *c = live_client_from(live_kubeconfig(), &err);

	if (c == NULL)
		fail_msg("client: %s", st_err_text(&err));
	return c;
}

static void resolve_ok(struct st_kube_client *c, struct st_kube_gvr *g, const char *name)
{
	struct st_err err = ST_ERR_INIT;

	if (st_kube_resolve(g, c, name, &err) != 0)
		fail_msg("resolve %s: %s", name, st_err_text(&err));
}

static struct json_object *obj_from(const char *fmt, ...) ST_PRINTF(1, 2);
static struct json_object *obj_from(const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	struct json_object *o;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	o = json_tokener_parse(buf);
	assert_non_null(o);
	return o;
}

static void ensure_namespace(struct st_kube_client *c)
{
	struct st_kube_gvr ns;
	struct json_object *o, *out = NULL;
	struct st_err err = ST_ERR_INIT;
	long http = 0;

	if (live_ns[0] != '\0')
		return;
	(void)snprintf(live_ns, sizeof(live_ns), "kube-test-%d", (int)getpid());
	resolve_ok(c, &ns, "namespaces");
	o = obj_from(
	        "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}",
	        live_ns);
	if (st_kube_create(&out, c, &ns, NULL, o, &http, &err) != 0)
		fail_msg("create namespace: %s", st_err_text(&err));
	assert_int_equal(http, 201);
	json_object_put(o);
	json_object_put(out);
	/* kube_client.sh reads this line to check the objects with kubectl afterwards. */
	printf("[  INFO    ] test namespace %s\n", live_ns);
}

static void test_live_discovery(void **state)
{
	static const struct {
		const char *in, *group, *version, *resource, *kind;
		bool namespaced;
	} cases[] = {
		{ "deployments", "apps", "v1", "deployments", "Deployment", true },
		{ "deploy", "apps", "v1", "deployments", "Deployment", true },
		{ "deployment", "apps", "v1", "deployments", "Deployment", true },
		{ "deployments.apps", "apps", "v1", "deployments", "Deployment", true },
		{ "deployments.v1.apps", "apps", "v1", "deployments", "Deployment", true },
		{ "Deployment", "apps", "v1", "deployments", "Deployment", true },
		{ "pods", "", "v1", "pods", "Pod", true },
		{ "po", "", "v1", "pods", "Pod", true },
		{ "cm", "", "v1", "configmaps", "ConfigMap", true },
		{ "ns", "", "v1", "namespaces", "Namespace", false },
		{ "pv", "", "v1", "persistentvolumes", "PersistentVolume", false },
		{ "crd", "apiextensions.k8s.io", "v1", "customresourcedefinitions",
		  "CustomResourceDefinition", false },
		{ "jobs", "batch", "v1", "jobs", "Job", true },
	};
	struct st_kube_client *c;
	struct st_kube_stats st;
	struct st_kube_gvr g;
	struct st_err err = ST_ERR_INIT;
	uint64_t disc;
	size_t i;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		resolve_ok(c, &g, cases[i].in);
		if (strcmp(g.group, cases[i].group) != 0 || strcmp(g.version, cases[i].version) ||
		    strcmp(g.resource, cases[i].resource) || strcmp(g.kind, cases[i].kind) ||
		    g.namespaced != cases[i].namespaced)
			fail_msg("%s -> %s/%s %s %s %d", cases[i].in, g.group, g.version,
			         g.resource, g.kind, g.namespaced);
		assert_true(g.verbs & ST_KUBE_CAN_LIST);
	}
	/* Cached: the lookups above fetched discovery once. */
	st_kube_client_stats(&st, c);
	disc = st.requests[ST_KUBE_VERB_DISCOVERY];
	assert_true(disc >= 3);
	resolve_ok(c, &g, "svc");
	st_kube_client_stats(&st, c);
	assert_int_equal(st.requests[ST_KUBE_VERB_DISCOVERY], disc);
	/* A miss refreshes once, then says what was not found. */
	assert_int_equal(st_kube_resolve(&g, c, "frobnicators", &err), ST_ENOTFOUND);
	assert_non_null(strstr(err.msg, "does not have a resource type \"frobnicators\""));
	st_kube_client_stats(&st, c);
	assert_int_equal(st.requests[ST_KUBE_VERB_DISCOVERY], 2 * disc);
	st_kube_client_free(c);
}

static int count_resource(const struct st_kube_gvr *g, void *payload)
{
	size_t *n = payload;

	assert_null(strchr(g->resource, '/'));
	(*n)++;
	return 0;
}

static void test_live_discovery_each(void **state)
{
	struct st_kube_client *c;
	struct st_err err = ST_ERR_INIT;
	size_t n = 0;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	assert_int_equal(st_kube_discovery_each(c, count_resource, &n, &err), 0);
	assert_true(n > 10);
	st_kube_client_free(c);
}

static const char *rv_of(struct json_object *o)
{
	return st_json_get_str(st_json_get_obj(o, "metadata"), "resourceVersion");
}

static void test_live_crud(void **state)
{
	struct st_kube_client *c;
	struct st_kube_gvr cm, dep;
	struct json_object *o, *out = NULL, *got = NULL, *stale = NULL;
	struct st_err err = ST_ERR_INIT;
	char msg[256];
	const char *p;
	long http = 0;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	ensure_namespace(c);
	resolve_ok(c, &cm, "configmaps");
	resolve_ok(c, &dep, "deployments.apps");

	/* 404 messages name the object and namespace, with the HTTP code for the caller. */
	assert_int_equal(st_kube_get(&out, c, &dep, live_ns, "web", &http, &err), ST_ENOTFOUND);
	assert_int_equal(http, 404);
	(void)snprintf(msg, sizeof(msg), "deployments.apps \"web\" not found in namespace \"%s\"",
	               live_ns);
	assert_string_equal(err.msg, msg);
	st_err_clear(&err);

	o = obj_from("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c1\","
	             "\"labels\":{\"app\":\"x\"}},\"data\":{\"a\":\"1\"}}");
	/* A namespace that does not exist is named as the thing not found. */
	assert_int_equal(st_kube_create(&out, c, &cm, "no-such-ns", o, &http, &err), ST_ENOTFOUND);
	assert_int_equal(http, 404);
	assert_non_null(strstr(err.msg, "namespaces \"no-such-ns\" not found"));
	st_err_clear(&err);
	/* So is a resource type the server does not serve. */
	{
		struct st_kube_gvr frobs;

		assert_int_equal(st_kube_gvr_set(&frobs, "", "v1", "frobs", NULL, true), 0);
		assert_int_equal(st_kube_get(&out, c, &frobs, live_ns, "x", &http, &err),
		                 ST_ENOTFOUND);
		assert_int_equal(http, 404);
		assert_non_null(strstr(err.msg, "GET frobs \"x\""));
		assert_null(strstr(err.msg, "frobs \"x\" not found"));
		st_err_clear(&err);
	}
	assert_int_equal(st_kube_create(&out, c, &cm, live_ns, o, &http, &err), 0);
	assert_int_equal(http, 201);
	assert_non_null(rv_of(out));
	json_object_put(out);
	/* Creating it again: 409 AlreadyExists. */
	assert_int_equal(st_kube_create(&out, c, &cm, live_ns, o, &http, &err), ST_EUPSTREAM);
	assert_int_equal(http, 409);
	(void)snprintf(msg, sizeof(msg), "configmaps \"c1\" already exists in namespace \"%s\"",
	               live_ns);
	assert_string_equal(err.msg, msg);
	st_err_clear(&err);
	json_object_put(o);

	assert_int_equal(st_kube_get(&got, c, &cm, live_ns, "c1", &http, &err), 0);
	assert_int_equal(http, 200);
	assert_string_equal(st_json_get_str(st_json_get_obj(got, "data"), "a"), "1");
	stale = json_tokener_parse(json_object_to_json_string(got));

	/* Update with the current version succeeds; the stale copy then conflicts. */
	json_object_object_add(st_json_get_obj(got, "data"), "a", json_object_new_string("2"));
	assert_int_equal(st_kube_update(&out, c, &cm, live_ns, got, &http, &err), 0);
	assert_int_equal(http, 200);
	assert_string_not_equal(rv_of(out), rv_of(stale));
	json_object_put(out);
	assert_int_equal(st_kube_update(&out, c, &cm, live_ns, stale, &http, &err), ST_EUPSTREAM);
	assert_int_equal(http, 409);
	assert_null(out);
	assert_non_null(strstr(err.msg, "conflict on configmaps \"c1\""));
	st_err_clear(&err);

	/* The three patch types. */
	p = "{\"data\":{\"b\":\"merge\"}}";
	assert_int_equal(st_kube_patch(&out, c, &cm, live_ns, "c1", NULL, ST_KUBE_PATCH_MERGE, p,
	                               strlen(p), &http, &err),
	                 0);
	assert_string_equal(st_json_get_str(st_json_get_obj(out, "data"), "b"), "merge");
	assert_string_equal(st_json_get_str(st_json_get_obj(out, "data"), "a"), "2");
	json_object_put(out);
	p = "[{\"op\":\"replace\",\"path\":\"/data/a\",\"value\":\"json\"},"
	    "{\"op\":\"remove\",\"path\":\"/data/b\"}]";
	assert_int_equal(st_kube_patch(&out, c, &cm, live_ns, "c1", NULL, ST_KUBE_PATCH_JSON, p,
	                               strlen(p), &http, &err),
	                 0);
	assert_string_equal(st_json_get_str(st_json_get_obj(out, "data"), "a"), "json");
	assert_null(st_json_get(st_json_get_obj(out, "data"), "b"));
	json_object_put(out);
	p = "{\"metadata\":{\"labels\":{\"tier\":\"s\"}}}";
	assert_int_equal(st_kube_patch(&out, c, &cm, live_ns, "c1", NULL, ST_KUBE_PATCH_STRATEGIC,
	                               p, strlen(p), &http, &err),
	                 0);
	assert_string_equal(
	        st_json_get_str(st_json_get_obj(st_json_get_obj(out, "metadata"), "labels"),
	                        "tier"),
	        "s");
	json_object_put(out);
	/* A bad JSON patch is the caller's error. */
	p = "[{\"op\":\"remove\",\"path\":\"/data/nope\"}]";
	assert_int_equal(st_kube_patch(&out, c, &cm, live_ns, "c1", NULL, ST_KUBE_PATCH_JSON, p,
	                               strlen(p), &http, &err),
	                 ST_EINVAL);
	assert_true(http == 400 || http == 422);
	assert_non_null(strstr(err.msg, "invalid configmaps \"c1\""));
	st_err_clear(&err);

	assert_int_equal(st_kube_delete(&out, c, &cm, live_ns, "c1", "Background", &http, &err), 0);
	assert_int_equal(http, 200);
	json_object_put(out);
	assert_int_equal(st_kube_delete(NULL, c, &cm, live_ns, "c1", NULL, &http, &err),
	                 ST_ENOTFOUND);
	assert_int_equal(http, 404);
	st_err_clear(&err);
	assert_int_equal(st_kube_delete(NULL, c, &cm, live_ns, "c1", "Sideways", &http, &err),
	                 ST_EINVAL);
	json_object_put(got);
	json_object_put(stale);
	st_kube_client_free(c);
}

static void test_live_status(void **state)
{
	struct st_kube_client *c;
	struct st_kube_gvr dep;
	struct json_object *o, *out = NULL;
	struct st_err err = ST_ERR_INIT;
	long http = 0;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	ensure_namespace(c);
	resolve_ok(c, &dep, "deploy");
	o = obj_from("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":"
	             "\"web\"},\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":"
	             "\"web\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},"
	             "\"spec\":{\"containers\":[{\"name\":\"nginx\",\"image\":\"nginx\"}]}}}}");
	if (st_kube_create(&out, c, &dep, live_ns, o, &http, &err) != 0)
		fail_msg("create deployment: %s", st_err_text(&err));
	json_object_put(o);
	json_object_object_add(out, "status", obj_from("{\"replicas\":1,\"readyReplicas\":1}"));
	o = out;
	out = NULL;
	if (st_kube_update_status(&out, c, &dep, live_ns, o, &http, &err) != 0)
		fail_msg("update status: %s", st_err_text(&err));
	json_object_put(o);
	json_object_put(out);
	assert_int_equal(st_kube_get(&out, c, &dep, live_ns, "web", &http, &err), 0);
	assert_int_equal(
	        json_object_get_int(st_json_get(st_json_get_obj(out, "status"), "readyReplicas")),
	        1);
	json_object_put(out);
	assert_int_equal(st_kube_delete(NULL, c, &dep, live_ns, "web", "Foreground", &http, &err),
	                 0);
	st_kube_client_free(c);
}

struct page_count {
	size_t pages;
	size_t items;
	size_t typed;
};

static int on_page(struct json_object *list, void *payload)
{
	struct page_count *pc = payload;
	struct json_object *items = st_json_get_arr(list, "items");
	size_t i, n = items ? json_object_array_length(items) : 0;

	pc->pages++;
	pc->items += n;
	for (i = 0; i < n; i++)
		if (st_json_get_str(json_object_array_get_idx(items, i), "kind") != NULL &&
		    st_json_get_str(json_object_array_get_idx(items, i), "apiVersion") != NULL)
			pc->typed++;
	return 0;
}

static int on_item_stop(struct json_object *item, void *payload)
{
	size_t *n = payload;

	(void)item;
	return ++(*n) == 7 ? 42 : 0;
}

static void test_live_pagination(void **state)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct st_kube_client *c;
	struct st_kube_gvr cm;
	struct st_kube_stats st0, st1;
	struct page_count pc = { 0, 0, 0 };
	struct st_err err = ST_ERR_INIT;
	char *rv = NULL;
	size_t n = 0;
	uint64_t t0, t1;
	int i;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	ensure_namespace(c);
	resolve_ok(c, &cm, "configmaps");
	t0 = st_kube__now_us();
	for (i = 0; i < 300; i++) {
		struct json_object *o = obj_from(
		        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
		        "\"page-%03d\",\"labels\":{\"set\":\"pages\",\"tier\":\"%s\"}}}",
		        i, i % 3 == 0 ? "a" : "b");

		if (st_kube_create(NULL, c, &cm, live_ns, o, NULL, &err) != 0)
			fail_msg("create %d: %s", i, st_err_text(&err));
		json_object_put(o);
	}
	t1 = st_kube__now_us();
	st_kube_client_stats(&st0, c);
	lo.limit = 64;
	lo.label_selector = "set=pages";
	assert_int_equal(st_kube_list_pages(&rv, c, &cm, live_ns, &lo, on_page, &pc, &err), 0);
	printf("[  INFO    ] 300 creates in %llu ms, a 5-page list of them in %llu ms\n",
	       (unsigned long long)(t1 - t0) / 1000,
	       (unsigned long long)(st_kube__now_us() - t1) / 1000);
	assert_int_equal(pc.items, 300);
	assert_int_equal(pc.typed, 300);
	assert_int_equal(pc.pages, 5);
	assert_non_null(rv);
	free(rv);
	st_kube_client_stats(&st1, c);
	assert_int_equal(st1.requests[ST_KUBE_VERB_LIST] - st0.requests[ST_KUBE_VERB_LIST], 5);

	/* Label selectors: equality, inequality and set-based. */
	memset(&pc, 0, sizeof(pc));
	lo.label_selector = "set=pages,tier=a";
	assert_int_equal(st_kube_list_pages(NULL, c, &cm, live_ns, &lo, on_page, &pc, &err), 0);
	assert_int_equal(pc.items, 100);
	memset(&pc, 0, sizeof(pc));
	lo.label_selector = "set=pages,tier!=a";
	assert_int_equal(st_kube_list_pages(NULL, c, &cm, live_ns, &lo, on_page, &pc, &err), 0);
	assert_int_equal(pc.items, 200);
	memset(&pc, 0, sizeof(pc));
	lo.label_selector = "tier in (a,b),set";
	lo.limit = 0;
	assert_int_equal(st_kube_list_pages(NULL, c, &cm, live_ns, &lo, on_page, &pc, &err), 0);
	assert_int_equal(pc.items, 300);
	assert_int_equal(pc.pages, 1);
	/* A callback can stop the walk; its value comes back. */
	lo.limit = 5;
	assert_int_equal(st_kube_list_items(NULL, c, &cm, live_ns, &lo, on_item_stop, &n, &err),
	                 42);
	assert_int_equal(n, 7);
	/* Field selector on the name. */
	memset(&pc, 0, sizeof(pc));
	lo.label_selector = NULL;
	lo.field_selector = "metadata.name=page-007";
	assert_int_equal(st_kube_list_pages(NULL, c, &cm, live_ns, &lo, on_page, &pc, &err), 0);
	assert_int_equal(pc.items, 1);
	st_kube_client_free(c);
}

struct events {
	pthread_mutex_t lock;
	char log[64][80];
	size_t n;
	int relists;
	int synced;
	int bookmarks;
	const char *stop_on; /* name whose DELETED ends the watch */
	int stop_after_synced;
};

static int on_event(enum st_kube_event_type t, struct json_object *obj, void *payload)
{
	struct events *ev = payload;
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	int rc = 0;

	(void)pthread_mutex_lock(&ev->lock);
	if (t == ST_KUBE_EVENT_RELIST)
		ev->relists++;
	if (t == ST_KUBE_EVENT_BOOKMARK)
		ev->bookmarks++;
	if (t == ST_KUBE_EVENT_SYNCED && ++ev->synced == ev->stop_after_synced)
		rc = 1;
	if ((t == ST_KUBE_EVENT_ADDED || t == ST_KUBE_EVENT_MODIFIED ||
	     t == ST_KUBE_EVENT_DELETED) &&
	    name != NULL && strncmp(name, "w-", 2) == 0 && ev->n < 64) {
		(void)snprintf(ev->log[ev->n++], 80, "%s %s", st_kube_event_name(t), name);
		if (t == ST_KUBE_EVENT_DELETED && ev->stop_on && strcmp(name, ev->stop_on) == 0)
			rc = 1;
	}
	(void)pthread_mutex_unlock(&ev->lock);
	return rc;
}

struct watcher {
	struct st_kube_client *c;
	struct st_kube_gvr gvr;
	struct st_kube_watch_options wo;
	struct events *ev;
	struct st_err err;
	int rc;
	pthread_t th;
};

static void *watch_main(void *arg)
{
	struct watcher *w = arg;

	w->rc = st_kube_watch(w->c, &w->gvr, live_ns, &w->wo, on_event, w->ev, &w->err);
	return NULL;
}

static size_t events_seen(struct events *ev)
{
	size_t n;

	(void)pthread_mutex_lock(&ev->lock);
	n = ev->n;
	(void)pthread_mutex_unlock(&ev->lock);
	return n;
}

static void test_live_watch(void **state)
{
	struct st_kube_client *c;
	struct st_kube_stats st;
	struct events ev;
	struct watcher w;
	struct json_object *o, *out = NULL;
	struct st_err err = ST_ERR_INIT;
	atomic_bool cancel = false;
	const char *p = "{\"data\":{\"k\":\"v\"}}";
	int i;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	ensure_namespace(c);
	memset(&ev, 0, sizeof(ev));
	(void)pthread_mutex_init(&ev.lock, NULL);
	ev.stop_on = "w-1";
	memset(&w, 0, sizeof(w));
	w.c = c;
	w.ev = &ev;
	resolve_ok(c, &w.gvr, "configmaps");
	w.wo = (struct st_kube_watch_options)ST_KUBE_WATCH_OPTIONS_INIT;
	w.wo.timeout_s = 2; /* forces reconnects during the test */
	w.wo.cancel = &cancel;
	w.wo.duration_ms = 30000;
	assert_int_equal(pthread_create(&w.th, NULL, watch_main, &w), 0);
	/* Wait for the initial list to be delivered. */
	for (i = 0; i < 200; i++) {
		int synced;

		(void)pthread_mutex_lock(&ev.lock);
		synced = ev.synced;
		(void)pthread_mutex_unlock(&ev.lock);
		if (synced)
			break;
		usleep(20000);
	}
	o = obj_from("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
	             "\"w-1\"}}");
	assert_int_equal(st_kube_create(NULL, c, &w.gvr, live_ns, o, NULL, &err), 0);
	json_object_put(o);
	/* Outlast one server-side timeout so the next events come over a new connection. */
	usleep(2500000);
	assert_int_equal(st_kube_patch(&out, c, &w.gvr, live_ns, "w-1", NULL, ST_KUBE_PATCH_MERGE,
	                               p, strlen(p), NULL, &err),
	                 0);
	json_object_put(out);
	assert_int_equal(st_kube_delete(NULL, c, &w.gvr, live_ns, "w-1", NULL, NULL, &err), 0);
	assert_int_equal(pthread_join(w.th, NULL), 0);
	if (w.rc != 0)
		fail_msg("watch: %s", st_err_text(&w.err));
	assert_int_equal(ev.n, 3);
	assert_string_equal(ev.log[0], "ADDED w-1");
	assert_string_equal(ev.log[1], "MODIFIED w-1");
	assert_string_equal(ev.log[2], "DELETED w-1");
	assert_int_equal(ev.synced, 1);
	assert_int_equal(ev.relists, 0);
	/* The server timed the stream out at least once and the watch reconnected. */
	st_kube_client_stats(&st, c);
	assert_true(st.requests[ST_KUBE_VERB_WATCH] >= 2);
	/* kube_client.sh runs the stand-in with one bookmark a second. */
	if (getenv("STASIS_KUBE_BOOKMARKS") != NULL)
		assert_true(ev.bookmarks >= 1);

	/* The cancel flag stops a watch with nothing to report. */
	ev.stop_on = NULL;
	w.wo.timeout_s = 60;
	assert_int_equal(pthread_create(&w.th, NULL, watch_main, &w), 0);
	usleep(300000);
	atomic_store(&cancel, true);
	{
		uint64_t t0 = st_kube__now_us();

		assert_int_equal(pthread_join(w.th, NULL), 0);
		assert_true(st_kube__now_us() - t0 < 3000000);
	}
	assert_int_equal(w.rc, 0);
	assert_int_equal(events_seen(&ev), 3);
	(void)pthread_mutex_destroy(&ev.lock);
	st_kube_client_free(c);
}

static void test_live_watch_relist(void **state)
{
	struct st_kube_client *c;
	struct events ev;
	struct watcher w;
	struct st_kube_stats st;
	int i;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	ensure_namespace(c);
	/* Enough changes to push version 1 out of the server's watch history. */
	{
		struct st_kube_gvr cm;
		struct st_err err = ST_ERR_INIT;

		resolve_ok(c, &cm, "configmaps");
		for (i = 0; i < 60; i++) {
			struct json_object *o = obj_from("{\"apiVersion\":\"v1\",\"kind\":"
			                                 "\"ConfigMap\",\"metadata\":{\"name\":"
			                                 "\"w-churn\"}}");

			/* The first delete finds nothing; that is fine. */
			(void)!st_kube_delete(NULL, c, &cm, live_ns, "w-churn", NULL, NULL, NULL);
			assert_int_equal(st_kube_create(NULL, c, &cm, live_ns, o, NULL, &err), 0);
			json_object_put(o);
		}
	}
	memset(&ev, 0, sizeof(ev));
	(void)pthread_mutex_init(&ev.lock, NULL);
	ev.stop_after_synced = 1;
	memset(&w, 0, sizeof(w));
	w.c = c;
	w.ev = &ev;
	resolve_ok(c, &w.gvr, "configmaps");
	w.wo = (struct st_kube_watch_options)ST_KUBE_WATCH_OPTIONS_INIT;
	w.wo.resource_version = "1";
	w.wo.duration_ms = 20000;
	watch_main(&w);
	if (w.rc != 0)
		fail_msg("watch: %s", st_err_text(&w.err));
	/* 410 Gone -> RELIST, the current objects as ADDED, then SYNCED. */
	assert_int_equal(ev.relists, 1);
	assert_int_equal(ev.synced, 1);
	assert_true(ev.n >= 1);
	assert_string_equal(ev.log[ev.n - 1], "ADDED w-churn");
	st_kube_client_stats(&st, c);
	assert_true(st.requests[ST_KUBE_VERB_WATCH] >= 1);
	(void)pthread_mutex_destroy(&ev.lock);
	st_kube_client_free(c);
}

static void test_live_auth(void **state)
{
	const char *cert_cfg = getenv("STASIS_KUBECONFIG_CERT");
	struct st_kube_client_options o = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_kube_client *c;
	struct st_kube_config cfg;
	struct st_kube_gvr ns;
	struct json_object *out = NULL;
	struct st_err err = ST_ERR_INIT;
	long http = 0;

	(void)state;
	LIVE_OR_SKIP();
	assert_int_equal(st_kube_gvr_set(&ns, "", "v1", "namespaces", "Namespace", false), 0);

	/* The default kubeconfig authenticates with a bearer token. */
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_load_file(&cfg, live_kubeconfig(), NULL, &err), 0);
	if (cfg.token == NULL) {
		printf("[  SKIP    ] %s: the kubeconfig has no token\n", __func__);
		st_kube_config_dispose(&cfg);
		skip();
	}
	assert_int_equal(st_kube_client_new(&c, &cfg, NULL, &err), 0);
	assert_int_equal(st_kube_get(&out, c, &ns, NULL, "default", &http, &err), 0);
	assert_int_equal(http, 200);
	json_object_put(out);
	st_kube_client_free(c);

	/* A wrong token: 401 with a hint about the credentials. */
	free(cfg.token);
	cfg.token = st_xstrdup("wrong-token");
	o.max_retries = 1;
	assert_int_equal(st_kube_client_new(&c, &cfg, &o, &err), 0);
	assert_int_equal(st_kube_get(&out, c, &ns, NULL, "default", &http, &err), ST_EUPSTREAM);
	assert_int_equal(http, 401);
	assert_non_null(strstr(err.msg, "unauthorized"));
	assert_non_null(strstr(err.msg, "token or client certificate"));
	assert_non_null(strstr(err.msg, cfg.context));
	/* The token itself never appears in a message. */
	assert_null(strstr(err.msg, "wrong-token"));
	st_err_clear(&err);
	st_kube_client_free(c);
	st_kube_config_dispose(&cfg);

	/* Client-certificate authentication (key material as -data in the kubeconfig). */
	if (cert_cfg == NULL) {
		printf("[  SKIP    ] %s: STASIS_KUBECONFIG_CERT not set, client certificates "
		       "untested\n",
		       __func__);
		skip();
	}
	c = live_client_from(cert_cfg, &err);
	if (c == NULL)
		fail_msg("cert client: %s", st_err_text(&err));
	assert_null(st_kube_client_config(c)->token);
	assert_non_null(st_kube_client_config(c)->key);
	assert_int_equal(st_kube_get(&out, c, &ns, NULL, "default", &http, &err), 0);
	assert_int_equal(http, 200);
	json_object_put(out);
	st_kube_client_free(c);
}

static void test_live_wrong_ca(void **state)
{
	const char *ca = getenv("STASIS_KUBE_WRONG_CA");
	struct st_kube_client_options o = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_kube_client *c;
	struct st_kube_config cfg;
	struct st_kube_gvr ns;
	struct json_object *out = NULL;
	struct st_err err = ST_ERR_INIT;
	long http = -1;

	(void)state;
	LIVE_OR_SKIP();
	if (ca == NULL) {
		printf("[  SKIP    ] %s: STASIS_KUBE_WRONG_CA is not set\n", __func__);
		skip();
	}
	st_kube_config_init(&cfg);
	assert_int_equal(st_kube_config_load_file(&cfg, live_kubeconfig(), NULL, &err), 0);
	if (strncmp(cfg.server, "https://", 8) != 0) {
		printf("[  SKIP    ] %s: the server is not https\n", __func__);
		st_kube_config_dispose(&cfg);
		skip();
	}
	free(cfg.ca);
	assert_int_equal(st_kube__read_file(&cfg.ca, &cfg.ca_len, ca, 1 << 20, &err), 0);
	o.max_retries = 1;
	assert_int_equal(st_kube_client_new(&c, &cfg, &o, &err), 0);
	assert_int_equal(st_kube_gvr_set(&ns, "", "v1", "namespaces", "Namespace", false), 0);
	assert_int_equal(st_kube_get(&out, c, &ns, NULL, "default", &http, &err), ST_ETLS);
	assert_int_equal(http, 0);
	assert_non_null(strstr(err.msg, "TLS with the API server at https://"));
	assert_non_null(strstr(err.msg, "certificate-authority"));
	st_kube_client_free(c);

	/* insecure-skip-tls-verify in the config (and only then) lets it through. */
	cfg.insecure = true;
	st_err_clear(&err);
	assert_int_equal(st_kube_client_new(&c, &cfg, &o, &err), 0);
	assert_int_equal(st_kube_get(&out, c, &ns, NULL, "default", &http, &err), 0);
	json_object_put(out);
	st_kube_client_free(c);
	st_kube_config_dispose(&cfg);
}

struct hammer {
	struct st_kube_client *c;
	struct st_kube_gvr cm;
	int fails;
	pthread_t th;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	int i;

	for (i = 0; i < 25; i++) {
		struct json_object *out = NULL;
		char name[32];

		(void)snprintf(name, sizeof(name), "page-%03d", i * 7);
		if (st_kube_get(&out, h->c, &h->cm, live_ns, name, NULL, NULL) != 0)
			h->fails++;
		json_object_put(out);
	}
	return NULL;
}

static void test_live_threads(void **state)
{
	struct st_kube_client *c;
	struct st_kube_stats st0, st1;
	struct hammer h[4];
	int i;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	ensure_namespace(c);
	st_kube_client_stats(&st0, c);
	for (i = 0; i < 4; i++) {
		h[i].c = c;
		h[i].fails = 0;
		resolve_ok(c, &h[i].cm, "configmaps");
		assert_int_equal(pthread_create(&h[i].th, NULL, hammer_main, &h[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(h[i].th, NULL), 0);
		assert_int_equal(h[i].fails, 0);
	}
	st_kube_client_stats(&st1, c);
	assert_int_equal(st1.requests[ST_KUBE_VERB_GET] - st0.requests[ST_KUBE_VERB_GET], 100);
	st_kube_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_contexts),
		cmocka_unit_test(test_config_files_token_insecure),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_config_env),
		cmocka_unit_test(test_config_incluster),
		cmocka_unit_test(test_b64),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_status_messages),
		cmocka_unit_test(test_limiter),
		cmocka_unit_test(test_retry_429),
		cmocka_unit_test(test_retry_5xx),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_connection_refused),
		cmocka_unit_test(test_watch_http_410),
		cmocka_unit_test(test_watch_retry_and_cb_error),
		cmocka_unit_test(test_live_discovery),
		cmocka_unit_test(test_live_discovery_each),
		cmocka_unit_test(test_live_crud),
		cmocka_unit_test(test_live_status),
		cmocka_unit_test(test_live_pagination),
		cmocka_unit_test(test_live_watch),
		cmocka_unit_test(test_live_watch_relist),
		cmocka_unit_test(test_live_auth),
		cmocka_unit_test(test_live_wrong_ca),
		cmocka_unit_test(test_live_threads),
	};

	return cmocka_run_group_tests_name("kube", tests, setup, teardown);
}
