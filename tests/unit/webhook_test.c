/*
 * Admission decoding/encoding, policy, volume selection and patch building.
 * Patches are applied with pkg/jsonpatch and the resulting pod is inspected.
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
#include "pkg/util/json.h"
#include "pkg/util/mem.h"
#include "pkg/yaml.h"
#include "webhook/config.h"
#include "webhook/inject.h"
#include "webhook/review.h"

static const char *const base_pod =
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"db-0\",\"labels\":{"
        "\"app\":\"pg\"}%s},\"spec\":{\"volumes\":[{\"name\":\"data\",\"persistentVolumeClaim\":"
        "{\"claimName\":\"data-db-0\"}},{\"name\":\"ro\",\"persistentVolumeClaim\":{\"claimName\":"
        "\"x\"}},{\"name\":\"scratch\",\"emptyDir\":{}},{\"name\":\"eph\",\"ephemeral\":{}}],"
        "\"containers\":[{\"name\":\"pg\",\"image\":\"postgres\",\"volumeMounts\":[{\"name\":"
        "\"data\",\"mountPath\":\"/var/lib/postgresql\"},{\"name\":\"ro\",\"mountPath\":\"/ro\","
        "\"readOnly\":true},{\"name\":\"scratch\",\"mountPath\":\"/tmp\"}]}]}}";

struct run {
	struct st_admission_result res;
	enum st_inject_outcome outcome;
	struct json_object *pod; /* patched pod */
};

static void review_of(char *out, size_t cap, const char *annotations, const char *ns)
{
	char pod[4096];

	(void)snprintf(pod, sizeof(pod), base_pod, annotations);
	(void)snprintf(out, cap,
	               "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
	               "\"request\":{\"uid\":\"abc\",\"operation\":\"CREATE\",\"namespace\":\"%s\","
	               "\"resource\":{\"resource\":\"pods\"},\"object\":%s}}",
	               ns, pod);
}

static void run_review(struct run *r, const struct st_webhook_config *cfg, const char *review)
{
	struct st_admission_request req;
	struct st_err err = ST_ERR_INIT;
	struct json_object *patch = NULL;

	assert_int_equal(st_admission_decode(&req, review, strlen(review), 1 << 20, &err), 0);
	st_admission_result_init(&r->res);
	assert_int_equal(st_inject_pod(&r->res, &r->outcome, cfg, &req), 0);
	r->pod = json_object_get(req.object);
	if (r->res.patch != NULL) {
		assert_int_equal(st_json_parse(&patch, r->res.patch, r->res.patch_len, 1 << 20,
		                               "patch", &err),
		                 0);
		if (st_jsonpatch_apply(&r->pod, patch, &err) != 0)
			fail_msg("patch does not apply: %s\n%s", st_err_text(&err), r->res.patch);
		json_object_put(patch);
	}
	st_admission_request_dispose(&req);
}

static void run_dispose(struct run *r)
{
	st_admission_result_dispose(&r->res);
	json_object_put(r->pod);
}

static struct json_object *container(struct json_object *pod, const char *list, const char *name)
{
	struct json_object *arr = st_json_get_arr(st_json_get_obj(pod, "spec"), list);

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *c = json_object_array_get_idx(arr, i);

		if (strcmp(st_json_get_str(c, "name"), name) == 0)
			return c;
	}
	return NULL;
}

static const char *ann(struct json_object *pod, const char *key)
{
	return st_json_get_str(st_json_get_obj(st_json_get_obj(pod, "metadata"), "annotations"),
	                       key);
}

static void test_opt_in_annotation(void **state)
{
	struct st_webhook_config cfg;
	struct run r;
	char review[8192];
	struct json_object *c;

	(void)state;
	st_webhook_config_init(&cfg);
	review_of(review, sizeof(review), ",\"annotations\":{\"stasis.io/freeze\":\"true\"}", "db");
	run_review(&r, &cfg, review);
	assert_int_equal(r.outcome, ST_INJECT_INJECTED);
	c = container(r.pod, "containers", "stasis-freezer");
	assert_non_null(c);
	/* Only the writable PVC and the ephemeral volume (not mounted) -> just data. */
	assert_string_equal(ann(r.pod, "stasis.io/volumes"), "data");
	assert_string_equal(ann(r.pod, "stasis.io/injected"), "v1");
	assert_string_equal(ann(r.pod, "pre.hook.backup.velero.io/container"), "stasis-freezer");
	assert_string_equal(ann(r.pod, "pre.hook.backup.velero.io/command"),
	                    "[\"/stasis-agent\",\"freeze\",\"--timeout\",\"30s\"]");
	assert_string_equal(ann(r.pod, "pre.hook.backup.velero.io/on-error"), "Fail");
	assert_string_equal(ann(r.pod, "post.hook.backup.velero.io/command"),
	                    "[\"/stasis-agent\",\"thaw\"]");
	assert_string_equal(ann(r.pod, "stasis.io/freeze"), "true");
	assert_true(st_json_get_bool(st_json_get_obj(c, "securityContext"), "privileged", false));
	assert_string_equal(
	        st_json_get_str(json_object_array_get_idx(st_json_get_arr(c, "volumeMounts"), 0),
	                        "mountPath"),
	        "/stasis/volumes/data");
	assert_string_equal(st_json_to_string(st_json_get(c, "command"), NULL),
	                    "[\"/stasis-agent\",\"serve\",\"--volumes-dir\",\"/stasis/volumes\","
	                    "\"--default-deadline\",\"30s\"]");
	assert_int_equal(r.res.nwarnings, 0);
	run_dispose(&r);
	/* With the agent's TLS Secret: HTTPS flags, the Secret volume and its mount. */
	cfg.agent_tls_secret = st_xstrdup("agent-tls");
	run_review(&r, &cfg, review);
	c = container(r.pod, "containers", "stasis-freezer");
	assert_non_null(strstr(st_json_to_string(st_json_get(c, "command"), NULL),
	                       "\"--port\",\"9443\",\"--cert\",\"/etc/stasis/agent-tls/tls.crt\","
	                       "\"--key\",\"/etc/stasis/agent-tls/tls.key\",\"--client-ca\","
	                       "\"/etc/stasis/agent-tls/ca.crt\""));
	assert_non_null(strstr(
	        st_json_to_string(st_json_get(st_json_get_obj(r.pod, "spec"), "volumes"), NULL),
	        "{\"name\":\"stasis-agent-tls\",\"secret\":{\"secretName\":"
	        "\"agent-tls\"}}"));
	run_dispose(&r);
	st_webhook_config_dispose(&cfg);
}

static void test_absent_annotations_and_reinvocation(void **state)
{
	struct st_webhook_config cfg;
	struct st_err err = ST_ERR_INIT;
	struct json_object *rules = NULL;
	struct run r;
	struct run again;
	char review[8192];
	char second[16384];
	const char *yaml =
	        "- name: pg\n  namespaces: [db]\n  selector:\n    matchLabels: {app: pg}\n";

	(void)state;
	st_webhook_config_init(&cfg);
	assert_int_equal(st_yaml_parse_one(&rules, yaml, strlen(yaml), "rules", &err), 0);
	assert_int_equal(st_webhook_config_rules(&cfg, rules, "test", &err), 0);
	json_object_put(rules);
	review_of(review, sizeof(review), "", "db");
	run_review(&r, &cfg, review);
	assert_int_equal(r.outcome, ST_INJECT_INJECTED);
	/* The pod had no annotations: the patch must create the map. */
	assert_non_null(strstr(r.res.patch, "\"path\":\"/metadata/annotations\""));
	assert_string_equal(ann(r.pod, "stasis.io/injected"), "v1");
	/* Second pass over the patched pod changes nothing. */
	(void)snprintf(
	        second, sizeof(second),
	        "{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\","
	        "\"request\":{\"uid\":\"abc2\",\"operation\":\"CREATE\",\"namespace\":\"db\","
	        "\"object\":%s}}",
	        st_json_to_string(r.pod, NULL));
	run_review(&again, &cfg, second);
	assert_int_equal(again.outcome, ST_INJECT_ALREADY);
	assert_null(again.res.patch);
	run_dispose(&again);
	run_dispose(&r);
	/* Other namespace: no rule matches. */
	review_of(review, sizeof(review), "", "web");
	run_review(&r, &cfg, review);
	assert_int_equal(r.outcome, ST_INJECT_NOT_SELECTED);
	assert_null(r.res.patch);
	run_dispose(&r);
	/* Opt-out beats the rule. */
	review_of(review, sizeof(review), ",\"annotations\":{\"stasis.io/freeze\":\"false\"}",
	          "db");
	run_review(&r, &cfg, review);
	assert_int_equal(r.outcome, ST_INJECT_OPTED_OUT);
	run_dispose(&r);
	st_webhook_config_dispose(&cfg);
}

static void test_explicit_volumes_and_warnings(void **state)
{
	struct st_webhook_config cfg;
	struct run r;
	char review[8192];

	(void)state;
	st_webhook_config_init(&cfg);
	review_of(review, sizeof(review),
	          ",\"annotations\":{\"stasis.io/freeze\":\"true\",\"stasis.io/freeze-volumes\":"
	          "\" eph , scratch,missing\"}",
	          "db");
	run_review(&r, &cfg, review);
	assert_int_equal(r.outcome, ST_INJECT_INJECTED);
	assert_string_equal(ann(r.pod, "stasis.io/volumes"), "eph");
	assert_int_equal(r.res.nwarnings, 2);
	assert_non_null(strstr(r.res.warnings[0], "\"scratch\""));
	assert_non_null(strstr(r.res.warnings[1], "\"missing\""));
	run_dispose(&r);
	/* Nothing freezable: unchanged, with a warning because it asked. */
	review_of(review, sizeof(review),
	          ",\"annotations\":{\"stasis.io/freeze\":\"true\",\"stasis.io/freeze-volumes\":"
	          "\"scratch\"}",
	          "db");
	run_review(&r, &cfg, review);
	assert_int_equal(r.outcome, ST_INJECT_NOTHING);
	assert_null(r.res.patch);
	assert_non_null(strstr(r.res.warnings[r.res.nwarnings - 1], "mounts no writable"));
	run_dispose(&r);
	st_webhook_config_dispose(&cfg);
}

static void test_user_hooks_kept_and_native(void **state)
{
	struct st_webhook_config cfg;
	struct run r;
	char review[8192];
	struct json_object *c;

	(void)state;
	st_webhook_config_init(&cfg);
	cfg.native_sidecar = true;
	review_of(review, sizeof(review),
	          ",\"annotations\":{\"stasis.io/freeze\":\"true\",\"pre.hook.backup.velero.io/"
	          "command\":\"[\\\"/sbin/fsfreeze\\\",\\\"--freeze\\\"]\",\"a/b~c\":\"x\"}",
	          "db");
	run_review(&r, &cfg, review);
	assert_int_equal(r.outcome, ST_INJECT_INJECTED);
	assert_string_equal(ann(r.pod, "pre.hook.backup.velero.io/command"),
	                    "[\"/sbin/fsfreeze\",\"--freeze\"]");
	assert_null(ann(r.pod, "post.hook.backup.velero.io/command"));
	assert_string_equal(ann(r.pod, "a/b~c"), "x");
	assert_int_equal(r.res.nwarnings, 1);
	assert_non_null(strstr(r.res.warnings[0], "Velero hook annotations"));
	/* Native sidecar: initContainers was absent and is created. */
	c = container(r.pod, "initContainers", "stasis-freezer");
	assert_non_null(c);
	assert_string_equal(st_json_get_str(c, "restartPolicy"), "Always");
	assert_null(container(r.pod, "containers", "stasis-freezer"));
	run_dispose(&r);
	st_webhook_config_dispose(&cfg);
}

static void test_decode_errors_and_encode(void **state)
{
	static const struct {
		const char *body;
		const char *msg;
	} bad[] = {
		{ "{\"kind\":\"AdmissionReview\"", "unexpected end" },
		{ "[]", "must be a JSON object" },
		{ "{\"kind\":\"Pod\",\"apiVersion\":\"v1\"}", "expected AdmissionReview" },
		{ "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v2\"}",
		  "expected admission.k8s.io/v1" },
		{ "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\"}",
		  "no request" },
		{ "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\","
		  "\"request\":{}}",
		  "uid is missing" },
		{ "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\","
		  "\"request\":{\"uid\":\"u\",\"object\":7}}",
		  "must be a JSON object" },
	};
	struct st_admission_request req;
	struct st_admission_result res;
	struct json_object *out = NULL;
	struct st_err err = ST_ERR_INIT;
	const char *ok =
	        "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1beta1\","
	        "\"request\":{\"uid\":\"u-7\"}}";
	char *text = NULL;
	size_t len = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st_err_clear(&err);
		assert_int_not_equal(
		        st_admission_decode(&req, bad[i].body, strlen(bad[i].body), 1000, &err), 0);
		if (strstr(err.msg, bad[i].msg) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].msg);
	}
	assert_int_equal(st_admission_decode(&req, ok, strlen(ok), 1000, &err), 0);
	st_admission_result_init(&res);
	res.patch = st_xstrdup("[]");
	res.patch_len = 2;
	st_admission_warn(&res, "careful %d", 1);
	assert_int_equal(st_admission_encode(&text, &len, &req, &res), 0);
	assert_int_equal(st_json_parse(&out, text, len, 10000, "resp", &err), 0);
	assert_string_equal(st_json_get_str(out, "apiVersion"), "admission.k8s.io/v1beta1");
	assert_string_equal(st_json_get_str(st_json_get_obj(out, "response"), "uid"), "u-7");
	assert_string_equal(st_json_get_str(st_json_get_obj(out, "response"), "patch"), "W10=");
	assert_string_equal(st_json_get_str(st_json_get_obj(out, "response"), "patchType"),
	                    "JSONPatch");
	json_object_put(out);
	free(text);
	st_admission_result_dispose(&res);
	st_admission_request_dispose(&req);
}

static void test_config_errors(void **state)
{
	static const struct {
		const char *yaml;
		const char *msg;
	} bad[] = {
		{ "listn: x\n", "unknown key \"listn\"" },
		{ "injection:\n  freezeTimeout: forever\n", "not a duration" },
		{ "injection:\n  freezeTimeout: 2h\n", "out of range" },
		{ "server:\n  maxBodyBytes: 1Ti\n", "not a size" },
		{ "rules:\n  - namespaces: 7\n", "must be a list of strings" },
		{ "rules:\n  - selector: {matchLabel: {a: b}}\n", "unknown selector key" },
		{ "rules:\n  - selector:\n      matchExpressions: [{key: a, operator: Maybe}]\n",
		  "unknown operator" },
		{ "rules:\n  - frezee: true\n", "unknown key \"frezee\"" },
		{ "a: &x 1\nb: *x\n", "aliases are not supported" },
		{ "a: [1\n", "line" },
	};
	char path[] = "/tmp/st-cfg-XXXXXX";

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct st_webhook_config cfg;
		struct st_err err = ST_ERR_INIT;
		int fd = mkstemp(path);
		FILE *f = fdopen(fd, "w");

		fputs(bad[i].yaml, f);
		fclose(f);
		st_webhook_config_init(&cfg);
		assert_int_not_equal(st_webhook_config_load(&cfg, path, &err), 0);
		if (strstr(err.msg, bad[i].msg) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].msg);
		st_webhook_config_dispose(&cfg);
		unlink(path);
		memcpy(path + strlen(path) - 6, "XXXXXX", 6);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opt_in_annotation),
		cmocka_unit_test(test_absent_annotations_and_reinvocation),
		cmocka_unit_test(test_explicit_volumes_and_warnings),
		cmocka_unit_test(test_user_hooks_kept_and_native),
		cmocka_unit_test(test_decode_errors_and_encode),
		cmocka_unit_test(test_config_errors),
	};
	return cmocka_run_group_tests_name("webhook", tests, NULL, NULL);
}
