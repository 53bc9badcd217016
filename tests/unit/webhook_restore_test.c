/*
 * /mutate/restore: the restore section of the webhook config (maps, Velero
 * ConfigMap files, errors) and the handler, through st_webhook_handle as the
 * HTTPS server calls it. Patches are applied with pkg/jsonpatch and the
 * result compared with the object expected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pkg/jsonpatch.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"
#include "webhook/config.h"
#include "webhook/mutate_restore.h"
#include "webhook/server.h"

static char tmpdir[] = "/tmp/st-wr-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[64];

	(void)state;
	(void)snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text, char *path, size_t cap)
{
	FILE *f;

	(void)snprintf(path, cap, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static const char velero_cms[] =
        "apiVersion: v1\n"
        "kind: List\n"
        "items:\n"
        "- apiVersion: v1\n"
        "  kind: ConfigMap\n"
        "  metadata:\n"
        "    name: change-storage-class-config\n"
        "    namespace: velero\n"
        "    labels: {velero.io/plugin-config: \"\", velero.io/change-storage-class: "
        "RestoreItemAction}\n"
        "  data: {ocs-storagecluster-ceph-rbd: rbd}\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: change-image-name-config\n"
        "  namespace: velero\n"
        "  labels: {velero.io/plugin-config: \"\", velero.io/change-image-name: "
        "RestoreItemAction}\n"
        "data:\n"
        "  case1: \"quay.io,quay.local\"\n";

/* A config with maps and a ConfigMap file; cfg must be disposed. */
static void load_config(struct st_webhook_config *cfg)
{
	char cm[512];
	char path[512];
	char text[2048];
	struct st_err err = ST_ERR_INIT;

	write_file("velero.yaml", velero_cms, cm, sizeof(cm));
	(void)snprintf(text, sizeof(text),
	               "restore:\n"
	               "  storageClassMappings: {fast: standard, gp2: gp3}\n"
	               "  imageRegistryMappings: {docker.io: mirror.local:5000}\n"
	               "  configMaps: [%s]\n",
	               cm);
	write_file("config.yaml", text, path, sizeof(path));
	st_webhook_config_init(cfg);
	if (st_webhook_config_load(cfg, path, &err) != 0)
		fail_msg("%s", st_err_text(&err));
}

static void test_config(void **state)
{
	struct st_webhook_config cfg;

	(void)state;
	load_config(&cfg);
	assert_int_equal(st_remap_count(cfg.remap, ST_REMAP_STORAGE_CLASS), 3);
	assert_int_equal(st_remap_count(cfg.remap, ST_REMAP_IMAGE_REGISTRY), 2);
	assert_int_equal(st_remap_count(cfg.remap, ST_REMAP_NAMESPACE), 0);
	assert_string_equal(
	        st_remap_lookup(cfg.remap, ST_REMAP_STORAGE_CLASS, "ocs-storagecluster-ceph-rbd"),
	        "rbd");
	assert_string_equal(st_remap_lookup(cfg.remap, ST_REMAP_IMAGE_REGISTRY, "quay.io"),
	                    "quay.local");
	st_webhook_config_dispose(&cfg);
	/* No restore section: no rules at all. */
	st_webhook_config_init(&cfg);
	assert_null(cfg.remap);
	st_webhook_config_dispose(&cfg);
}

static void test_config_errors(void **state)
{
	static const struct {
		const char *yaml;
		const char *msg;
	} bad[] = {
		{ "restore: [a]\n", "restore must be a mapping" },
		{ "restore:\n  storageClasses: {a: b}\n",
		  "unknown key \"restore.storageClasses\"" },
		{ "restore:\n  storageClassMappings: \"a:b\"\n", "must be a map of old name" },
		{ "restore:\n  storageClassMappings: {Fast: b}\n", "\"Fast\" must be lower-case" },
		{ "restore:\n  storageClassMappings: {a: \"\"}\n", "a name is empty" },
		{ "restore:\n  imageRegistryMappings: {docker.io: [x]}\n",
		  "the new name must be a string" },
		{ "restore:\n  imageRegistryMappings: {\"reg io\": x}\n",
		  "must be an image reference" },
		{ "restore:\n  configMaps: /nonexistent/velero.yaml\n",
		  "/nonexistent/velero.yaml" },
		{ "restore:\n  configMaps: {a: b}\n",
		  "restore.configMaps must be a list of strings" },
		{ "restore:\n  configMaps: [@NOTCM@]\n", "holds no ConfigMap labelled" },
		{ "restore:\n  storageClassMappings: {ocs-storagecluster-ceph-rbd: x}\n"
		  "  configMaps: [@CM@]\n",
		  "change-storage-class-config: storage class \"ocs-storagecluster-ceph-rbd\" is "
		  "mapped twice" },
	};
	char cm[512];
	char notcm[512];

	(void)state;
	write_file("velero.yaml", velero_cms, cm, sizeof(cm));
	write_file("notcm.yaml", "kind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n", notcm,
	           sizeof(notcm));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct st_webhook_config cfg;
		struct st_err err = ST_ERR_INIT;
		struct st_buf b = ST_BUF_INIT(1 << 16);
		char path[512];
		const char *p;

		/* Substitute the file names. */
		for (p = bad[i].yaml; *p != '\0';) {
			if (strncmp(p, "@CM@", 4) == 0) {
				assert_int_equal(st_buf_printf(&b, "%s", cm), 0);
				p += 4;
			} else if (strncmp(p, "@NOTCM@", 7) == 0) {
				assert_int_equal(st_buf_printf(&b, "%s", notcm), 0);
				p += 7;
			} else {
				assert_int_equal(st_buf_printf(&b, "%c", *p), 0);
				p++;
			}
		}
		write_file("bad.yaml", st_buf_cstr(&b), path, sizeof(path));
		st_buf_dispose(&b);
		st_webhook_config_init(&cfg);
		assert_int_not_equal(st_webhook_config_load(&cfg, path, &err), 0);
		if (strstr(err.msg, bad[i].msg) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].msg);
		if (strstr(err.msg, "bad.yaml") == NULL)
			fail_msg("case %zu: \"%s\" does not name the config file", i, err.msg);
		st_webhook_config_dispose(&cfg);
	}
}

/* ---- the handler through st_webhook_handle ----------------------------- */

struct answer {
	int status;
	struct json_object *response; /* the review's response (owned by root) */
	struct json_object *root;
	struct json_object *patch; /* decoded, or NULL */
};

static unsigned char b64val(char c)
{
	const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = strchr(tbl, c);

	assert_non_null(p);
	return (unsigned char)(p - tbl);
}

/* Independent base64 decoder for the test. */
static char *unbase64(const char *s, size_t *len_out)
{
	size_t n = strlen(s);
	char *out = st_xmalloc(n + 1);
	size_t o = 0;

	assert_int_equal(n % 4, 0);
	for (size_t i = 0; i < n; i += 4) {
		unsigned v = (unsigned)b64val(s[i]) << 18 | (unsigned)b64val(s[i + 1]) << 12;

		out[o++] = (char)(v >> 16);
		if (s[i + 2] != '=') {
			v |= (unsigned)b64val(s[i + 2]) << 6;
			out[o++] = (char)((v >> 8) & 0xff);
		}
		if (s[i + 3] != '=') {
			v |= b64val(s[i + 3]);
			out[o++] = (char)(v & 0xff);
		}
	}
	out[o] = '\0';
	*len_out = o;
	return out;
}

static void call(struct answer *a, struct st_webhook *wh, const char *version,
                 const char *operation, const char *object)
{
	struct st_httpd_request req = { 0 };
	struct st_httpd_response resp = { 0 };
	struct st_buf body = ST_BUF_INIT(1 << 20);
	const char *p64;

	assert_int_equal(st_buf_printf(&body,
	                               "{\"apiVersion\":\"admission.k8s.io/%s\",\"kind\":"
	                               "\"AdmissionReview\",\"request\":{\"uid\":\"u-1\","
	                               "\"operation\":\"%s\",\"namespace\":\"db\",\"object\":%s}}",
	                               version, operation, object),
	                 0);
	req.method = "POST";
	req.path = "/mutate/restore";
	req.content_type = "application/json";
	req.body = st_buf_cstr(&body);
	req.body_len = body.len;
	req.peer = "127.0.0.1:1";
	assert_int_equal(st_webhook_handle(&resp, &req, wh), 0);
	st_buf_dispose(&body);
	memset(a, 0, sizeof(*a));
	a->status = resp.status;
	assert_int_equal(st_json_parse(&a->root, resp.body, resp.body_len, 1 << 20, "answer", NULL),
	                 0);
	free(resp.body);
	a->response = st_json_get_obj(a->root, "response");
	if (a->status != 200)
		return;
	assert_string_equal(st_json_get_str(a->root, "apiVersion"),
	                    strcmp(version, "v1") == 0 ? "admission.k8s.io/v1"
	                                               : "admission.k8s.io/v1beta1");
	assert_string_equal(st_json_get_str(a->response, "uid"), "u-1");
	assert_true(st_json_get_bool(a->response, "allowed", false));
	p64 = st_json_get_str(a->response, "patch");
	if (p64 != NULL) {
		size_t len = 0;
		char *text = unbase64(p64, &len);

		assert_string_equal(st_json_get_str(a->response, "patchType"), "JSONPatch");
		assert_int_equal(st_json_parse(&a->patch, text, len, 1 << 20, "patch", NULL), 0);
		free(text);
	}
}

static void answer_dispose(struct answer *a)
{
	json_object_put(a->root);
	json_object_put(a->patch);
}

/* Applies the answer's patch to object and compares with expected. */
static void expect_result(const struct answer *a, const char *object, const char *expected)
{
	struct json_object *doc = NULL;
	struct json_object *want = NULL;
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_json_parse(&doc, object, strlen(object), 1 << 20, "obj", NULL), 0);
	assert_int_equal(st_json_parse(&want, expected, strlen(expected), 1 << 20, "want", NULL),
	                 0);
	assert_non_null(a->patch);
	if (st_jsonpatch_apply(&doc, a->patch, &err) != 0)
		fail_msg("patch does not apply: %s", st_err_text(&err));
	if (!json_object_equal(doc, want))
		fail_msg("patched:\n%s\nexpected:\n%s", json_object_to_json_string(doc),
		         json_object_to_json_string(want));
	json_object_put(doc);
	json_object_put(want);
}

#define PVC(labels, cls)                                                                       \
	"{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"metadata\":{\"name\":"    \
	"\"data\",\"namespace\":\"db\",\"labels\":" labels ",\"annotations\":{"                \
	"\"volume.beta.kubernetes.io/storage-class\":\"" cls "\"}},\"spec\":{\"accessModes\":" \
	"[\"ReadWriteOnce\"],\"storageClassName\":\"" cls "\",\"resources\":{\"requests\":{"   \
	"\"storage\":\"1Gi\"}}}}"

#define DEPLOY(labels, img1, img2)                                                            \
	"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\"," \
	"\"namespace\":\"db\",\"labels\":" labels "},\"spec\":{\"template\":{\"metadata\":{"  \
	"\"labels\":{\"app\":\"web\"}},\"spec\":{\"initContainers\":[{\"name\":\"i\","        \
	"\"image\":\"" img1 "\"}],\"containers\":[{\"name\":\"c\",\"image\":\"" img2          \
	"\"},{\"name\":\"s\",\"image\":\"registry.k8s.io/pause:3.9\"}]}}}}"

#define VELERO_LABELS "{\"velero.io/restore-name\":\"r1\",\"velero.io/backup-name\":\"b1\"}"
#define STASIS_LABELS "{\"stasis.io/restore-name\":\"r2\"}"
#define NO_LABELS     "{\"app\":\"web\"}"

static void test_handler(void **state)
{
	struct st_webhook_config cfg;
	struct st_webhook wh;
	struct answer a;
	struct st_buf m = ST_BUF_INIT(1 << 20);

	(void)state;
	load_config(&cfg);
	st_webhook_init(&wh, &cfg);

	/* A PVC restored by Velero: class and beta annotation, v1 and v1beta1. */
	call(&a, &wh, "v1", "CREATE", PVC(VELERO_LABELS, "fast"));
	assert_int_equal(a.status, 200);
	expect_result(&a, PVC(VELERO_LABELS, "fast"), PVC(VELERO_LABELS, "standard"));
	assert_int_equal(json_object_array_length(a.patch), 2);
	answer_dispose(&a);
	call(&a, &wh, "v1beta1", "CREATE", PVC(STASIS_LABELS, "ocs-storagecluster-ceph-rbd"));
	expect_result(&a, PVC(STASIS_LABELS, "ocs-storagecluster-ceph-rbd"),
	              PVC(STASIS_LABELS, "rbd"));
	answer_dispose(&a);

	/* A Deployment: Docker Hub and quay.io rewritten, registry.k8s.io kept. */
	call(&a, &wh, "v1", "CREATE", DEPLOY(VELERO_LABELS, "busybox:1.36", "quay.io/team/web:2"));
	expect_result(&a, DEPLOY(VELERO_LABELS, "busybox:1.36", "quay.io/team/web:2"),
	              DEPLOY(VELERO_LABELS, "mirror.local:5000/library/busybox:1.36",
	                     "quay.local/team/web:2"));
	assert_int_equal(json_object_array_length(a.patch), 2);
	answer_dispose(&a);

	/* Unlabelled, labelled without a matching rule, and not a CREATE: no patch. */
	call(&a, &wh, "v1", "CREATE", PVC(NO_LABELS, "fast"));
	assert_null(a.patch);
	assert_null(st_json_get(a.response, "patchType"));
	answer_dispose(&a);
	call(&a, &wh, "v1", "CREATE", DEPLOY(NO_LABELS, "busybox", "nginx"));
	assert_null(a.patch);
	answer_dispose(&a);
	call(&a, &wh, "v1", "CREATE", PVC(VELERO_LABELS, "slow"));
	assert_null(a.patch);
	answer_dispose(&a);
	call(&a, &wh, "v1", "UPDATE", PVC(VELERO_LABELS, "fast"));
	assert_null(a.patch);
	answer_dispose(&a);
	/* Namespaces are never remapped here, whatever the object. */
	call(&a, &wh, "v1", "CREATE",
	     "{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"fast\",\"labels\":" VELERO_LABELS
	     "}}");
	assert_null(a.patch);
	answer_dispose(&a);

	/* Bad reviews are 400s with the reason. */
	call(&a, &wh, "v2", "CREATE", "{}");
	assert_int_equal(a.status, 400);
	assert_non_null(strstr(st_json_get_str(a.root, "error"), "admission.k8s.io/v1 or v1beta1"));
	answer_dispose(&a);

	/* The decisions are counted by result. */
	assert_int_equal(st_metrics_render(&m, wh.metrics), 0);
	assert_non_null(strstr(st_buf_cstr(&m),
	                       "stasis_webhook_restore_remaps_total{result=\"remapped\"} 3"));
	assert_non_null(strstr(st_buf_cstr(&m),
	                       "stasis_webhook_restore_remaps_total{result=\"not_labelled\"} 2"));
	assert_non_null(strstr(st_buf_cstr(&m),
	                       "stasis_webhook_restore_remaps_total{result=\"unchanged\"} 2"));
	assert_non_null(strstr(st_buf_cstr(&m),
	                       "stasis_webhook_restore_remaps_total{result=\"not_applicable\"} 1"));
	st_buf_dispose(&m);
	st_webhook_dispose(&wh);
	st_webhook_config_dispose(&cfg);
}

/* Without any restore config, labelled objects pass unchanged. */
static void test_handler_no_rules(void **state)
{
	struct st_webhook_config cfg;
	struct st_admission_request req;
	struct st_admission_result res;
	enum st_restore_outcome outcome;
	unsigned changes = 7;
	const char *review = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
	                     "\"request\":{\"uid\":\"u\",\"operation\":\"CREATE\",\"object\":" PVC(
	                             VELERO_LABELS, "fast") "}}";

	(void)state;
	st_webhook_config_init(&cfg);
	assert_int_equal(st_admission_decode(&req, review, strlen(review), 1 << 20, NULL), 0);
	st_admission_result_init(&res);
	assert_int_equal(st_mutate_restore(&res, &outcome, &changes, &cfg, &req), 0);
	assert_int_equal(outcome, ST_RESTORE_UNCHANGED);
	assert_int_equal(changes, 0);
	assert_null(res.patch);
	assert_string_equal(st_restore_outcome_name(outcome), "unchanged");
	st_admission_result_dispose(&res);
	st_admission_request_dispose(&req);
	st_webhook_config_dispose(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_handler),
		cmocka_unit_test(test_handler_no_rules),
	};

	return cmocka_run_group_tests_name("webhook_restore", tests, setup, teardown);
}
