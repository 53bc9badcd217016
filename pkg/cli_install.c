#include "pkg/cli_install.h"

#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pkg/cli_bsl.h"
#include "pkg/cli_common.h"
#include "pkg/cli_version.h"
#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"
#include "pkg/x509.h"
#include "pkg/yaml.h"

#define PH_MAX            16
#define PH_NAME_MAX       64
#define CRED_SECRET       "stasis-credentials"
#define CRED_KEY          "cloud"
#define DEFAULT_FILE_PATH "/var/lib/stasis/backups"
/* How long to wait for a just-created CRD's type to be served. */
#define RESOLVE_WAIT_SECS 30

const char st_cli_install_usage[] =
        "Usage: stasis install [options]\n"
        "\n"
        "Installs stasis: namespace, CRDs, RBAC, the CA and certificates, the controller and\n"
        "webhook Deployments, the webhook Service and MutatingWebhookConfiguration, the\n"
        "credentials Secret and the default backup storage location. Running it again\n"
        "updates what exists.\n"
        "\n"
        "Options:\n"
        "  -n, --namespace NS             install namespace (default stasis)\n"
        "  --image IMAGE                  controller image (default stasis/stasis:vVERSION)\n"
        "  --webhook-image IMAGE          webhook image (default stasis/stasis-webhook:vVERSION)\n"
        "  --agent-image IMAGE            injected freezer image (default\n"
        "                                 stasis/stasis-agent:vVERSION)\n"
        "  --failure-policy Ignore|Fail   webhook failure policy (default Ignore)\n"
        "  --provider aws|file            provider of the default backup storage location\n"
        "  --bucket BUCKET                its bucket (aws)\n"
        "  --prefix PREFIX                its prefix\n"
        "  --backup-location-config K=V,...  region, s3Url, s3ForcePathStyle,\n"
        "                                 insecureSkipTLSVerify, path (file)\n"
        "  --cacert FILE                  PEM CA of the S3 endpoint\n"
        "  --secret-file FILE             AWS credentials file, stored in the Secret\n"
        "                                 stasis-credentials (key cloud)\n"
        "  --use-default-storage          a file location at " DEFAULT_FILE_PATH " in the\n"
        "                                 controller pod (an emptyDir: for trials only)\n"
        "  --certs-dir DIR                CA and certificates (default ~/.stasis/NS/certs)\n"
        "  --manifests-dir DIR            templates (default: see docs/cli.md)\n"
        "  --dry-run                      print the objects (-o yaml|json), change nothing\n"
        "  -o, --output yaml|json         format of --dry-run (default yaml)\n"
        "  --kubeconfig FILE, --context NAME\n"
        "  -h, --help                     show this help\n";

/* The controller: one replica acts at a time (Lease), so one is enough. */
static const char controller_tpl[] =
        "apiVersion: apps/v1\n"
        "kind: Deployment\n"
        "metadata:\n"
        "  name: stasis-controller\n"
        "  namespace: \"@@NAMESPACE@@\"\n"
        "  labels:\n"
        "    app.kubernetes.io/name: stasis-controller\n"
        "    app.kubernetes.io/part-of: stasis\n"
        "    app.kubernetes.io/version: \"@@VERSION@@\"\n"
        "spec:\n"
        "  replicas: 1\n"
        "  selector:\n"
        "    matchLabels: {app.kubernetes.io/name: stasis-controller}\n"
        "  template:\n"
        "    metadata:\n"
        "      labels: {app.kubernetes.io/name: stasis-controller, "
        "app.kubernetes.io/part-of: stasis}\n"
        "    spec:\n"
        "      serviceAccountName: stasis-controller\n"
        "      securityContext:\n"
        "        runAsNonRoot: true\n"
        "        runAsUser: 65532\n"
        "        runAsGroup: 65532\n"
        "        fsGroup: 65532\n"
        "        seccompProfile: {type: RuntimeDefault}\n"
        "      containers:\n"
        "        - name: controller\n"
        "          image: \"@@CONTROLLER_IMAGE@@\"\n"
        "          imagePullPolicy: IfNotPresent\n"
        "          args: [\"server\", \"--namespace\", \"@@NAMESPACE@@\"]\n"
        "          env:\n"
        "            - name: STASIS_NAMESPACE\n"
        "              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}\n"
        "          resources:\n"
        "            requests: {cpu: 100m, memory: 64Mi}\n"
        "            limits: {memory: 512Mi}\n"
        "          securityContext:\n"
        "            allowPrivilegeEscalation: false\n"
        "            readOnlyRootFilesystem: true\n"
        "            capabilities: {drop: [\"ALL\"]}\n"
        "          volumeMounts:\n"
        "            - {name: tls, mountPath: /etc/stasis/tls, readOnly: true}\n"
        "            - {name: scratch, mountPath: /tmp}\n"
        "            - {name: store, mountPath: /var/lib/stasis}\n"
        "      volumes:\n"
        "        - name: tls\n"
        "          secret: {secretName: stasis-controller-tls, defaultMode: 288}\n"
        "        - name: scratch\n"
        "          emptyDir: {}\n"
        "        - name: store\n"
        "          emptyDir: {}\n";

struct install_args {
	const char *image;
	const char *webhook_image;
	const char *agent_image;
	const char *policy;
	const char *provider;
	const char *bucket;
	const char *prefix;
	struct json_object *config;
	const char *cacert;
	const char *secret_file;
	const char *certs_dir;
	const char *manifests_dir;
	bool default_storage;
	bool dry_run;
};

/* "a/b" into buf; ST_ETOOBIG when it does not fit. */
static int path_join(char *buf, size_t size, const char *a, const char *b)
{
	int n = snprintf(buf, size, "%s/%s", a, b);

	return n < 0 || (size_t)n >= size ? ST_ETOOBIG : 0;
}

/* ---- templates --------------------------------------------------------------------------- */

static const char *placeholder_value(const struct st_cli_placeholder *ph, size_t n,
                                     const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(ph[i].name) == len && memcmp(ph[i].name, name, len) == 0)
			return ph[i].value;
	return NULL;
}

/* True when [s, end) is a placeholder name: 1..PH_NAME_MAX of A-Z, 0-9 and '_'. */
static bool placeholder_name(const char *s, const char *end)
{
	const char *p;

	if (end <= s || end - s > PH_NAME_MAX)
		return false;
	for (p = s; p < end; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

int st_cli_template_fill(char **out, const char *tpl, size_t len,
                         const struct st_cli_placeholder *ph, size_t n, const char *what,
                         struct st_err *err)
{
	struct st_buf b = ST_BUF_INIT(ST_CAP_CONFIG * 4);
	const char *p = tpl, *end = tpl + len, *at, *close, *v;
	int rc = ST_EINTERNAL;

	*out = NULL;
	while (p < end) {
		at = memmem(p, (size_t)(end - p), "@@", 2);
		close = at != NULL ? memmem(at + 2, (size_t)(end - at - 2), "@@", 2) : NULL;
		if (at == NULL || close == NULL || !placeholder_name(at + 2, close)) {
			/* No (complete, plausible) placeholder: copy up to and past the "@@". */
			size_t n_copy = at == NULL || close == NULL ? (size_t)(end - p)
			                                            : (size_t)(at + 2 - p);

			if ((rc = st_buf_put(&b, p, n_copy)) < 0)
				goto out;
			p += n_copy;
			continue;
		}
		if ((rc = st_buf_put(&b, p, (size_t)(at - p))) < 0)
			goto out;
		v = placeholder_value(ph, n, at + 2, (size_t)(close - at - 2));
		if (v == NULL) {
			rc = st_err_set(err, ST_EINVAL, "%s: unknown placeholder @@%.*s@@", what,
			                (int)(close - at - 2), at + 2);
			goto out;
		}
		if ((rc = st_buf_puts(&b, v)) < 0)
			goto out;
		p = close + 2;
	}
	if ((rc = st_buf_putc(&b, '\0')) < 0)
		goto out;
	*out = st_buf_detach(&b, NULL);
	rc = 0;
out:
	if (rc == ST_ETOOBIG)
		(void)st_err_set(err, rc, "%s: too large", what);
	st_buf_dispose(&b);
	return rc;
}

int st_cli_install_rank(const char *kind)
{
	static const char *const order[] = {
		"Namespace",
		"CustomResourceDefinition",
		"ServiceAccount",
		"ClusterRole",
		"ClusterRoleBinding",
		"Role",
		"RoleBinding",
		"Secret",
		"ConfigMap",
		"Service",
		"Deployment",
		"PodDisruptionBudget",
		"MutatingWebhookConfiguration",
		"ValidatingWebhookConfiguration",
		NULL,
	};
	int i;

	for (i = 0; order[i] != NULL; i++)
		if (strcmp(order[i], kind) == 0)
			return i;
	return i; /* custom resources and the rest last */
}

/* Reads a whole file of at most cap bytes (*out NUL-terminated, owned). */
static int read_file(char **out, size_t *len_out, const char *path, size_t cap, struct st_err *err)
{
	char *data = NULL;
	FILE *f = NULL;
	size_t n;
	int rc = ST_EIO;

	*out = NULL;
	if ((f = fopen(path, "rb")) == NULL)
		return st_err_set(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO, "%s: %s", path,
		                  strerror(errno));
	data = st_xmalloc(cap + 1);
	n = fread(data, 1, cap + 1, f);
	if (ferror(f)) {
		rc = st_err_set(err, ST_EIO, "%s: read error", path);
		goto out;
	}
	if (n > cap) {
		rc = st_err_set(err, ST_ETOOBIG, "%s: larger than %zu bytes", path, cap);
		goto out;
	}
	data[n] = '\0';
	*len_out = n;
	*out = data;
	data = NULL;
	rc = 0;
out:
	st_freezero(data, cap + 1);
	fclose(f);
	return rc;
}

/* Fills a template and appends its documents to docs. */
static int add_template(struct json_object *docs, const char *text, size_t len,
                        const struct st_cli_placeholder *ph, size_t n, const char *what,
                        struct st_err *err)
{
	struct json_object *parsed = NULL;
	char *filled = NULL;
	size_t i;
	int rc;

	if ((rc = st_cli_template_fill(&filled, text, len, ph, n, what, err)) < 0)
		goto out;
	if ((rc = st_yaml_parse_all(&parsed, filled, strlen(filled), what, err)) < 0)
		goto out;
	for (i = 0; i < json_object_array_length(parsed); i++) {
		struct json_object *d = json_object_array_get_idx(parsed, i);

		if (st_json_get_str(d, "kind") == NULL ||
		    st_json_get_str(d, "apiVersion") == NULL ||
		    st_json_get_str(st_json_get_obj(d, "metadata"), "name") == NULL) {
			rc = st_err_set(err, ST_EINVAL,
			                "%s: document %zu has no kind, apiVersion "
			                "or metadata.name",
			                what, i + 1);
			goto out;
		}
		json_object_array_add(docs, json_object_get(d));
	}
	rc = 0;
out:
	json_object_put(parsed);
	if (filled != NULL)
		st_freezero(filled, strlen(filled));
	return rc;
}

/* Adds every DIR/PATTERN file, in name order. */
static int add_dir(struct json_object *docs, const char *dir, const char *pattern,
                   const struct st_cli_placeholder *ph, size_t n, struct st_err *err)
{
	char path[PATH_MAX];
	glob_t g;
	char *text = NULL;
	size_t i, len = 0;
	int rc = 0;

	memset(&g, 0, sizeof(g));
	if (path_join(path, sizeof(path), dir, pattern) < 0 || glob(path, 0, NULL, &g) != 0)
		return 0; /* none: the caller checks what it needs */
	for (i = 0; i < g.gl_pathc && rc == 0; i++) {
		if ((rc = read_file(&text, &len, g.gl_pathv[i], ST_CAP_CONFIG, err)) < 0)
			break;
		rc = add_template(docs, text, len, ph, n, g.gl_pathv[i], err);
		free(text);
		text = NULL;
	}
	globfree(&g);
	return rc;
}

static bool has_file(const char *dir, const char *name)
{
	char path[PATH_MAX];

	return path_join(path, sizeof(path), dir, name) == 0 && access(path, R_OK) == 0;
}

/* The manifests directory: flag, $STASIS_MANIFESTS, next to the binary. */
static int find_manifests(char *buf, size_t size, const char *flag, struct st_err *err)
{
	static const char *const rel[] = { "../../../manifests", "../share/stasis/manifests",
		                           NULL };
	char exe[PATH_MAX];
	const char *env = getenv("STASIS_MANIFESTS");
	ssize_t n;
	char *slash;
	size_t i;

	if (flag != NULL || (env != NULL && env[0] != '\0')) {
		(void)snprintf(buf, size, "%s", flag != NULL ? flag : env);
		if (!has_file(buf, "crds"))
			return st_err_set(err, ST_ENOTFOUND, "%s: no crds/ directory in it (%s)",
			                  buf,
			                  flag != NULL ? "--manifests-dir" : "$STASIS_MANIFESTS");
		return 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return st_err_set(err, ST_ENOTFOUND,
		                  "cannot find the binary's directory; pass "
		                  "--manifests-dir");
	exe[n] = '\0';
	if ((slash = strrchr(exe, '/')) != NULL)
		*slash = '\0';
	for (i = 0; rel[i] != NULL; i++) {
		if (path_join(buf, size, exe, rel[i]) == 0 && has_file(buf, "crds"))
			return 0;
	}
	return st_err_set(err, ST_ENOTFOUND,
	                  "no manifests found at %s/../../../manifests or "
	                  "%s/../share/stasis/manifests; pass --manifests-dir DIR",
	                  exe, exe);
}

/* ---- certificates ------------------------------------------------------------------------ */

static char *b64(const char *data, size_t n)
{
	unsigned char *out = st_xmalloc(4 * ((n + 2) / 3) + 1);

	(void)EVP_EncodeBlock(out, (const unsigned char *)data, (int)n);
	return (char *)out;
}

enum { PEM_CA, PEM_TLS_CRT, PEM_TLS_KEY, PEM_CLIENT_CRT, PEM_CLIENT_KEY, PEM_COUNT };

/* Base64 of the bundle's files, in the order above; keys are wiped on free. */
struct pems {
	char *b64[PEM_COUNT];
};

static void pems_dispose(struct pems *p)
{
	size_t i;

	for (i = 0; i < PEM_COUNT; i++)
		if (p->b64[i] != NULL)
			st_freezero(p->b64[i], strlen(p->b64[i]));
}

static int make_certs(struct pems *p, const char *dir, const char *ns, struct st_err *err)
{
	static const char *const files[PEM_COUNT] = { ST_X509_CA_CRT, ST_X509_SERVER_CRT,
		                                      ST_X509_SERVER_KEY, ST_X509_CLIENT_CRT,
		                                      ST_X509_CLIENT_KEY };
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	char path[PATH_MAX];
	char *text = NULL;
	size_t i, len = 0;
	int rc;

	o.out_dir = dir;
	o.ns = ns;
	if ((rc = st_x509_bundle_create(NULL, &o, err)) < 0)
		return rc;
	for (i = 0; i < PEM_COUNT; i++) {
		if ((rc = path_join(path, sizeof(path), dir, files[i])) < 0)
			return st_err_set(err, rc, "%s: path too long", dir);
		if ((rc = read_file(&text, &len, path, ST_CAP_PEM, err)) < 0)
			return rc;
		p->b64[i] = b64(text, len);
		st_freezero(text, len + 1);
		text = NULL;
	}
	return 0;
}

/* ---- objects from flags ------------------------------------------------------------------ */

static int add_credentials(struct json_object *docs, const char *file, const char *ns,
                           struct st_err *err)
{
	struct json_object *o, *meta, *data;
	char *text = NULL, *enc = NULL;
	size_t len = 0;
	int rc;

	if ((rc = read_file(&text, &len, file, ST_CAP_PEM, err)) < 0)
		return rc;
	if (len == 0 || strstr(text, "aws_access_key_id") == NULL) {
		st_freezero(text, len + 1);
		return st_err_set(err, ST_EINVAL,
		                  "--secret-file %s: not an AWS credentials file "
		                  "(no aws_access_key_id)",
		                  file);
	}
	enc = b64(text, len);
	st_freezero(text, len + 1);
	o = json_object_new_object();
	st_json_add_str(o, "apiVersion", "v1");
	st_json_add_str(o, "kind", "Secret");
	meta = json_object_new_object();
	st_json_add_str(meta, "name", CRED_SECRET);
	st_json_add_str(meta, "namespace", ns);
	json_object_object_add(o, "metadata", meta);
	st_json_add_str(o, "type", "Opaque");
	data = json_object_new_object();
	st_json_add_str(data, CRED_KEY, enc);
	json_object_object_add(o, "data", data);
	json_object_array_add(docs, o);
	st_freezero(enc, strlen(enc));
	return 0;
}

static int add_location(struct json_object *docs, struct install_args *a, const char *ns,
                        struct st_err *err)
{
	struct st_cli_bsl_spec s = { .name = "default", .ns = ns, .is_default = true };
	struct json_object *bsl = NULL;
	char *text = NULL, *ca = NULL;
	size_t len = 0;
	int rc;

	if (a->default_storage) {
		a->provider = "file";
		if (st_json_get_str(a->config, "path") == NULL &&
		    (rc = st_cli_parse_map(&a->config, "path=" DEFAULT_FILE_PATH)) < 0)
			return rc;
	}
	if (a->provider == NULL)
		return 0;
	if (a->cacert != NULL) {
		if ((rc = read_file(&text, &len, a->cacert, ST_CAP_PEM, err)) < 0)
			return rc;
		ca = b64(text, len);
		free(text);
	}
	s.provider = a->provider;
	s.bucket = a->bucket;
	s.prefix = a->prefix;
	s.config = a->config;
	s.ca_cert_b64 = ca;
	if (a->secret_file != NULL) {
		s.secret = CRED_SECRET;
		s.secret_key = CRED_KEY;
	}
	rc = st_cli_bsl_build(&bsl, &s, err);
	if (rc == 0)
		json_object_array_add(docs, bsl);
	free(ca);
	return rc;
}

/* ---- gathering and ordering -------------------------------------------------------------- */

struct ranked {
	struct json_object *obj;
	int rank;
	size_t index;
};

static int cmp_ranked(const void *x, const void *y)
{
	const struct ranked *a = x, *b = y;

	if (a->rank != b->rank)
		return a->rank < b->rank ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index ? 1 : 0;
}

/* Reorders docs in place into apply order (stable). */
static void sort_docs(struct json_object *docs)
{
	size_t n = json_object_array_length(docs), i;
	struct ranked *r = st_xcalloc(n > 0 ? n : 1, sizeof(*r));

	for (i = 0; i < n; i++) {
		r[i].obj = json_object_get(json_object_array_get_idx(docs, i));
		r[i].rank = st_cli_install_rank(st_json_get_str(r[i].obj, "kind"));
		r[i].index = i;
	}
	qsort(r, n, sizeof(*r), cmp_ranked);
	for (i = 0; i < n; i++)
		json_object_array_put_idx(docs, i, r[i].obj); /* steals our reference */
	free(r);
}

static int gather(struct json_object *docs, struct install_args *a, const char *ns,
                  const struct pems *p, struct st_err *err)
{
	char dir[PATH_MAX], sub[PATH_MAX], version[80];
	const struct st_cli_placeholder ph[] = {
		{ "NAMESPACE", ns },
		{ "IMAGE", a->webhook_image },
		{ "WEBHOOK_IMAGE", a->webhook_image },
		{ "CONTROLLER_IMAGE", a->image },
		{ "AGENT_IMAGE", a->agent_image },
		{ "FAILURE_POLICY", a->policy },
		{ "VERSION", version },
		{ "CA_BUNDLE", p->b64[PEM_CA] },
		{ "CA_CRT", p->b64[PEM_CA] },
		{ "TLS_CRT", p->b64[PEM_TLS_CRT] },
		{ "TLS_KEY", p->b64[PEM_TLS_KEY] },
		{ "CLIENT_CRT", p->b64[PEM_CLIENT_CRT] },
		{ "CLIENT_KEY", p->b64[PEM_CLIENT_KEY] },
	};
	size_t n = sizeof(ph) / sizeof(ph[0]);
	int rc;

	(void)snprintf(version, sizeof(version), "%s", st_cli_version());
	if ((rc = find_manifests(dir, sizeof(dir), a->manifests_dir, err)) < 0)
		return rc;
	if ((rc = path_join(sub, sizeof(sub), dir, "crds")) < 0 ||
	    (rc = add_dir(docs, sub, "*.yaml", ph, n, err)) < 0)
		return rc;
	if ((rc = path_join(sub, sizeof(sub), dir, "rbac")) < 0 ||
	    (rc = add_dir(docs, sub, "*.yaml", ph, n, err)) < 0 ||
	    (rc = add_dir(docs, dir, "*.yaml", ph, n, err)) < 0 ||
	    (rc = add_template(docs, controller_tpl, sizeof(controller_tpl) - 1, ph, n,
	                       "controller Deployment", err)) < 0)
		return rc;
	if (a->secret_file != NULL && (rc = add_credentials(docs, a->secret_file, ns, err)) < 0)
		return rc;
	if ((rc = add_location(docs, a, ns, err)) < 0)
		return rc;
	sort_docs(docs);
	return 0;
}

/* ---- applying ---------------------------------------------------------------------------- */

struct find_kind {
	char group[254];
	const char *version;
	const char *kind;
	struct st_kube_gvr *out;
};

static int match_kind(const struct st_kube_gvr *gvr, void *payload)
{
	struct find_kind *f = payload;

	if (strcmp(gvr->group, f->group) != 0 || strcmp(gvr->version, f->version) != 0 ||
	    strcmp(gvr->kind, f->kind) != 0)
		return 0;
	*f->out = *gvr;
	return 1;
}

/* Resolves apiVersion + kind through discovery; waits a little for fresh CRDs. */
static int resolve_kind(struct st_kube_gvr *out, struct st_kube_client *c, struct json_object *obj,
                        int wait_secs, struct st_err *err)
{
	const char *api = st_json_get_str(obj, "apiVersion");
	const char *slash = strchr(api, '/');
	struct find_kind f = { .out = out, .kind = st_json_get_str(obj, "kind") };
	long long deadline = st_cli_now() + wait_secs;
	int rc;

	if (slash != NULL) {
		(void)snprintf(f.group, sizeof(f.group), "%.*s", (int)(slash - api), api);
		f.version = slash + 1;
	} else {
		f.version = api;
	}
	for (;;) {
		rc = st_kube_discovery_each(c, match_kind, &f, err);
		if (rc == 1)
			return 0;
		if (rc < 0)
			return rc;
		if (st_cli_now() >= deadline)
			return st_err_set(err, ST_ENOTFOUND,
			                  "%s %s is not served by this API server", api, f.kind);
		usleep(500 * 1000);
		st_kube_discovery_reset(c);
	}
}

/* Kinds a cluster may lack without stasis losing a function. */
static bool optional_kind(const char *kind)
{
	return strcmp(kind, "PodDisruptionBudget") == 0;
}

static int apply_one(struct st_cli_ctx *ctx, struct json_object *obj)
{
	const char *kind = st_json_get_str(obj, "kind");
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	bool custom = st_cli_install_rank(kind) == st_cli_install_rank("");
	struct st_err err = ST_ERR_INIT;
	struct st_kube_gvr gvr;
	bool created = false;
	int rc;

	rc = resolve_kind(&gvr, ctx->client, obj, custom ? RESOLVE_WAIT_SECS : 0, &err);
	if (rc == ST_ENOTFOUND && optional_kind(kind)) {
		printf("%s/%s: skipped (%s)\n", kind, name, st_err_text(&err));
		return 0;
	}
	if (rc < 0) {
		st_cli_kube_error(ctx, "discovery", rc, &err);
		return rc;
	}
	if ((rc = st_cli_apply(&created, ctx->client, &gvr, obj, &err)) < 0) {
		char what[600];

		(void)snprintf(what, sizeof(what), "apply %s/%s", kind, name);
		st_cli_kube_error(ctx, what, rc, &err);
		return rc;
	}
	printf("%s/%s: %s\n", kind, name, created ? "created" : "configured");
	fflush(stdout);
	return 0;
}

static int print_docs(struct json_object *docs, enum st_cli_output fmt)
{
	struct st_buf out = ST_BUF_INIT(ST_CLI_CAP_OUTPUT);
	size_t i;
	int rc = 0;

	if (fmt == ST_CLI_OUTPUT_JSON) {
		rc = st_cli_output_list(&out, docs, fmt, 0);
	} else {
		for (i = 0; i < json_object_array_length(docs) && rc == 0; i++) {
			rc = st_buf_puts(&out, "---\n");
			if (rc == 0)
				rc = st_yaml_emit(&out, json_object_array_get_idx(docs, i));
		}
	}
	if (rc == 0 && out.len > 0 && fwrite(out.ptr, 1, out.len, stdout) != out.len)
		rc = ST_EIO;
	if (out.ptr != NULL)
		st_freezero(out.ptr, out.alloc); /* the stream holds private keys */
	out.ptr = NULL;
	st_buf_dispose(&out);
	return rc;
}

/* ---- options ----------------------------------------------------------------------------- */

enum {
	OPT_IMAGE = ST_CLI_OPT_FIRST_FREE,
	OPT_WEBHOOK_IMAGE,
	OPT_AGENT_IMAGE,
	OPT_POLICY,
	OPT_PROVIDER,
	OPT_BUCKET,
	OPT_PREFIX,
	OPT_CONFIG,
	OPT_CACERT,
	OPT_SECRET_FILE,
	OPT_DEFAULT_STORAGE,
	OPT_CERTS_DIR,
	OPT_MANIFESTS_DIR,
	OPT_DRY_RUN,
};

static bool valid_image(const char *s)
{
	size_t i;

	if (s[0] == '\0' || strlen(s) > 512)
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr("._/:@-", s[i]) != NULL))
			return false;
	return true;
}

static int install_option(void *payload, int c, const char *arg)
{
	struct install_args *a = payload;

	switch (c) {
	case OPT_IMAGE:
	case OPT_WEBHOOK_IMAGE:
	case OPT_AGENT_IMAGE:
		if (!valid_image(arg))
			return ST_EINVAL;
		*(c == OPT_IMAGE           ? &a->image
		  : c == OPT_WEBHOOK_IMAGE ? &a->webhook_image
		                           : &a->agent_image) = arg;
		return 0;
	case OPT_POLICY:
		if (strcmp(arg, "Ignore") != 0 && strcmp(arg, "Fail") != 0)
			return ST_EINVAL;
		a->policy = arg;
		return 0;
	case OPT_PROVIDER:
		if (strcmp(arg, "aws") != 0 && strcmp(arg, "file") != 0)
			return ST_EINVAL;
		a->provider = arg;
		return 0;
	case OPT_BUCKET:
		a->bucket = arg;
		return 0;
	case OPT_PREFIX:
		a->prefix = arg;
		return 0;
	case OPT_CONFIG:
		return st_cli_parse_map(&a->config, arg);
	case OPT_CACERT:
		a->cacert = arg;
		return 0;
	case OPT_SECRET_FILE:
		a->secret_file = arg;
		return 0;
	case OPT_DEFAULT_STORAGE:
		a->default_storage = true;
		return 0;
	case OPT_CERTS_DIR:
		a->certs_dir = arg;
		return 0;
	case OPT_MANIFESTS_DIR:
		a->manifests_dir = arg;
		return 0;
	case OPT_DRY_RUN:
		a->dry_run = true;
		return 0;
	default:
		return ST_EINVAL;
	}
}

static int install_parse(struct st_cli_ctx *ctx, struct install_args *a, int argc, char **argv)
{
	static const struct option longopts[] = {
		ST_CLI_COMMON_LONGOPTS,
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "webhook-image", required_argument, NULL, OPT_WEBHOOK_IMAGE },
		{ "agent-image", required_argument, NULL, OPT_AGENT_IMAGE },
		{ "failure-policy", required_argument, NULL, OPT_POLICY },
		{ "provider", required_argument, NULL, OPT_PROVIDER },
		{ "bucket", required_argument, NULL, OPT_BUCKET },
		{ "prefix", required_argument, NULL, OPT_PREFIX },
		{ "backup-location-config", required_argument, NULL, OPT_CONFIG },
		{ "cacert", required_argument, NULL, OPT_CACERT },
		{ "secret-file", required_argument, NULL, OPT_SECRET_FILE },
		{ "use-default-storage", no_argument, NULL, OPT_DEFAULT_STORAGE },
		{ "certs-dir", required_argument, NULL, OPT_CERTS_DIR },
		{ "manifests-dir", required_argument, NULL, OPT_MANIFESTS_DIR },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ NULL, 0, NULL, 0 },
	};
	int rc;

	rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:", longopts, st_cli_install_usage,
	                          install_option, a);
	if (rc >= 0)
		return rc;
	if (optind < argc) {
		st_cli_errorf(ctx, "unexpected argument '%s'", argv[optind]);
		return ST_CLI_EXIT_USAGE;
	}
	if (ctx->output_set && !a->dry_run) {
		st_cli_errorf(ctx, "-o prints the objects of --dry-run; add --dry-run");
		return ST_CLI_EXIT_USAGE;
	}
	if (a->provider != NULL && strcmp(a->provider, "aws") == 0 && a->bucket == NULL) {
		st_cli_errorf(ctx, "--provider aws needs --bucket");
		return ST_CLI_EXIT_USAGE;
	}
	if (a->provider != NULL && a->default_storage) {
		st_cli_errorf(ctx, "--use-default-storage and --provider exclude each other");
		return ST_CLI_EXIT_USAGE;
	}
	return -1;
}

/* ---- entry ------------------------------------------------------------------------------- */

static int mkdir_p(const char *dir)
{
	char path[PATH_MAX];
	char *p;

	(void)snprintf(path, sizeof(path), "%s", dir);
	for (p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return ST_EIO;
		*p = '/';
	}
	return 0;
}

/* Removes the files of a dry run's temporary certificate directory, then the directory. */
static void remove_certs(const char *dir)
{
	static const char *const files[] = { ST_X509_CA_CRT,
		                             ST_X509_CA_KEY,
		                             ST_X509_SERVER_CRT,
		                             ST_X509_SERVER_KEY,
		                             ST_X509_CLIENT_CRT,
		                             ST_X509_CLIENT_KEY,
		                             NULL };
	char path[PATH_MAX];
	size_t i;

	for (i = 0; files[i] != NULL; i++) {
		if (path_join(path, sizeof(path), dir, files[i]) == 0)
			(void)unlink(path);
	}
	(void)rmdir(dir);
}

static int certs_dir(char *buf, size_t size, const struct install_args *a, const char *ns)
{
	const char *home = getenv("HOME");

	if (a->dry_run) {
		(void)snprintf(buf, size, "/tmp/stasis-install-XXXXXX");
		return mkdtemp(buf) != NULL ? 0 : ST_EIO;
	}
	if (a->certs_dir != NULL) {
		(void)snprintf(buf, size, "%s", a->certs_dir);
		return 0;
	}
	if (home == NULL || home[0] == '\0')
		return ST_EINVAL;
	(void)snprintf(buf, size, "%s/.stasis/%s/certs", home, ns);
	return mkdir_p(buf);
}

/*
 * A CA other than the one already in the cluster cuts off every agent that
 * trusts the old one until its pod restarts: say so before replacing it.
 */
static void warn_ca_change(struct st_cli_ctx *ctx, const char *ca_b64, const char *dir)
{
	struct json_object *secret = NULL;
	struct st_kube_gvr gvr;
	const char *cur;

	if (st_kube_gvr_set(&gvr, "", "v1", "secrets", "Secret", true) < 0 ||
	    st_kube_get(&secret, ctx->client, &gvr, ctx->ns, "stasis-webhook-tls", NULL, NULL) < 0)
		return; /* a first install, or unreadable: nothing to compare */
	cur = st_json_get_str(st_json_get_obj(secret, "data"), "ca.crt");
	if (cur != NULL && strcmp(cur, ca_b64) != 0)
		fprintf(stderr,
		        "stasis install: warning: the cluster's CA (secret %s/stasis-webhook-tls) "
		        "is not the one in %s; it is replaced, and agents that trust the old CA "
		        "refuse the controller until their pods restart. Use --certs-dir with the "
		        "directory of the first install to keep it.\n",
		        ctx->ns, dir);
	json_object_put(secret);
}

static int run_install(struct st_cli_ctx *ctx, struct install_args *a)
{
	struct json_object *docs = json_object_new_array();
	struct st_err err = ST_ERR_INIT;
	struct pems p = { { NULL } };
	char dir[PATH_MAX] = "";
	size_t i;
	int rc = ST_CLI_EXIT_FAIL;

	if (certs_dir(dir, sizeof(dir), a, ctx->ns) < 0) {
		st_cli_errorf(ctx, "cannot prepare the certificate directory %s; pass --certs-dir",
		              dir[0] ? dir : "(no $HOME)");
		dir[0] = '\0';
		goto out;
	}
	if (make_certs(&p, dir, ctx->ns, &err) < 0 || gather(docs, a, ctx->ns, &p, &err) < 0) {
		st_cli_errorf(ctx, "%s", st_err_text(&err));
		goto out;
	}
	if (a->dry_run) {
		rc = print_docs(docs, ctx->output_set ? ctx->output : ST_CLI_OUTPUT_YAML) < 0
		             ? ST_CLI_EXIT_FAIL
		             : ST_CLI_EXIT_OK;
		goto out;
	}
	printf("Certificates in %s\n", dir);
	if (st_cli_connect(ctx) < 0)
		goto out;
	warn_ca_change(ctx, p.b64[PEM_CA], dir);
	for (i = 0; i < json_object_array_length(docs); i++)
		if (apply_one(ctx, json_object_array_get_idx(docs, i)) < 0)
			goto out;
	if (a->provider == NULL)
		printf("No backup storage location was configured; add one with `stasis "
		       "backup-location create NAME --provider aws --bucket B --default`.\n");
	printf("stasis is installed in namespace %s. Use `stasis version -n %s` to check the "
	       "controller.\n",
	       ctx->ns, ctx->ns);
	rc = ST_CLI_EXIT_OK;
out:
	if (a->dry_run && dir[0] != '\0')
		remove_certs(dir);
	pems_dispose(&p);
	json_object_put(docs);
	return rc;
}

int st_cli_install_main(int argc, char **argv)
{
	struct install_args a = { .policy = "Ignore" };
	char image[256], webhook[256], agent[256];
	struct st_cli_ctx ctx;
	int rc;

	st_cli_ctx_init(&ctx, "install");
	(void)snprintf(image, sizeof(image), "stasis/stasis:v%s", st_cli_version());
	(void)snprintf(webhook, sizeof(webhook), "stasis/stasis-webhook:v%s", st_cli_version());
	(void)snprintf(agent, sizeof(agent), "stasis/stasis-agent:v%s", st_cli_version());
	a.image = image;
	a.webhook_image = webhook;
	a.agent_image = agent;
	opterr = 0;
	optind = 0;
	if ((rc = install_parse(&ctx, &a, argc, argv)) < 0)
		rc = run_install(&ctx, &a);
	json_object_put(a.config);
	st_cli_ctx_dispose(&ctx);
	return rc;
}
