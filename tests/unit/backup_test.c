/*
 * The backup engine's pure parts (durations, label selectors, namespace
 * globs, tar entry names, object deletion on a file:// store) and the
 * storage-location spec -> store URL rules of pkg/bsl. The engine itself
 * runs against the API stand-in in tests/integration/controller_backup.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "pkg/backup.h"
#include "pkg/bsl.h"
#include "pkg/store.h"

static struct json_object *parse(const char *text)
{
	struct json_object *o = json_tokener_parse(text);

	assert_non_null(o);
	return o;
}

static void test_duration(void **state)
{
	static const struct {
		const char *in;
		int rc;
		long long secs;
	} cases[] = {
		{ "720h0m0s", 0, 720LL * 3600 },
		{ "24h", 0, 86400 },
		{ "1h30m", 0, 5400 },
		{ "90s", 0, 90 },
		{ "1.5h", 0, 5400 },
		{ "1500ms", 0, 1 },
		{ "2m", 0, 120 },
		{ "0", 0, 0 },
		{ "", ST_EINVAL, 0 },
		{ "forever", ST_EINVAL, 0 },
		{ "-1h", ST_EINVAL, 0 },
		{ "10", ST_EINVAL, 0 },
		{ "5d", ST_EINVAL, 0 },
		{ "1h x", ST_EINVAL, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long v = -1;
		int rc = st_backup_parse_duration(&v, cases[i].in);

		if (rc != cases[i].rc || (rc == 0 && v != cases[i].secs))
			fail_msg("duration \"%s\": rc %d value %lld", cases[i].in, rc, v);
	}
}

static void test_format_time(void **state)
{
	char buf[32];

	(void)state;
	st_backup_format_time(buf, sizeof(buf), 0);
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	st_backup_format_time(buf, sizeof(buf), 1700000000LL + 720LL * 3600);
	assert_string_equal(buf, "2023-12-14T22:13:20Z");
}

static void test_selector(void **state)
{
	static const struct {
		const char *sel;
		int rc;
		const char *want;
	} cases[] = {
		{ "{}", 0, "" },
		{ "{\"matchLabels\":{\"app\":\"nginx\",\"tier\":\"web\"}}", 0,
		  "app=nginx,tier=web" },
		{ "{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"a\","
		  "\"b\"]},"
		  "{\"key\":\"x\",\"operator\":\"NotIn\",\"values\":[\"c\"]},"
		  "{\"key\":\"y\",\"operator\":\"Exists\"},{\"key\":\"z\",\"operator\":"
		  "\"DoesNotExist\"}]}",
		  0, "env in (a,b),x notin (c),y,!z" },
		{ "{\"matchLabels\":{\"a\":\"1\"},\"matchExpressions\":[{\"key\":\"b\","
		  "\"operator\":"
		  "\"Exists\"}]}",
		  0, "a=1,b" },
		{ "{\"matchExpressions\":[{\"key\":\"b\",\"operator\":\"Near\"}]}", ST_EINVAL,
		  NULL },
		{ "{\"matchExpressions\":[{\"key\":\"b\",\"operator\":\"In\",\"values\":[]}]}",
		  ST_EINVAL, NULL },
		{ "{\"matchExpressions\":[{\"operator\":\"Exists\"}]}", ST_EINVAL, NULL },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *o = parse(cases[i].sel);
		struct st_err err = { 0 };
		char buf[256];
		int rc = st_backup_selector_string(buf, sizeof(buf), o, &err);

		if (rc != cases[i].rc)
			fail_msg("selector %s: rc %d (%s)", cases[i].sel, rc, st_err_text(&err));
		if (rc == 0 && strcmp(buf, cases[i].want) != 0)
			fail_msg("selector %s: \"%s\", want \"%s\"", cases[i].sel, buf,
			         cases[i].want);
		if (rc < 0 && err.msg[0] == '\0')
			fail_msg("selector %s: no message", cases[i].sel);
		json_object_put(o);
	}
}

static void test_selector_too_long(void **state)
{
	struct json_object *o =
	        parse("{\"matchLabels\":{\"application\":\"a-rather-long-value\"}}");
	struct st_err err = { 0 };
	char buf[16];

	(void)state;
	assert_int_equal(st_backup_selector_string(buf, sizeof(buf), o, &err), ST_ETOOBIG);
	json_object_put(o);
}

static void test_namespace_scope(void **state)
{
	struct json_object *all = parse("[\"*\"]");
	struct json_object *some = parse("[\"test\",\"app-?\",\"db[12]\"]");
	struct json_object *excl = parse("[\"kube-*\",\"app-x\"]");

	(void)state;
	assert_true(st_backup_namespace_in_scope(NULL, NULL, "anything"));
	assert_true(st_backup_namespace_in_scope(all, NULL, "test"));
	assert_false(st_backup_namespace_in_scope(all, excl, "kube-system"));
	assert_true(st_backup_namespace_in_scope(some, NULL, "test"));
	assert_false(st_backup_namespace_in_scope(some, NULL, "test2"));
	assert_true(st_backup_namespace_in_scope(some, NULL, "app-a"));
	assert_false(st_backup_namespace_in_scope(some, excl, "app-x"));
	assert_true(st_backup_namespace_in_scope(some, NULL, "db2"));
	assert_false(st_backup_namespace_in_scope(some, NULL, "db3"));
	assert_false(st_backup_namespace_in_scope(NULL, excl, "kube-public"));
	json_object_put(all);
	json_object_put(some);
	json_object_put(excl);
}

static void test_validate_lists(void **state)
{
	struct json_object *inc = parse("[\"test\",\"app-*\"]");
	struct json_object *ok = parse("[\"kube-system\"]");
	struct json_object *both = parse("[\"app-*\"]");
	struct json_object *star = parse("[\"*\"]");
	struct st_err err = { 0 };

	(void)state;
	assert_int_equal(st_backup_validate_lists(NULL, NULL, "Namespaces", &err), 0);
	assert_int_equal(st_backup_validate_lists(inc, ok, "Namespaces", &err), 0);
	assert_int_equal(st_backup_validate_lists(inc, both, "Namespaces", &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "both name \"app-*\""));
	st_err_clear(&err);
	assert_int_equal(st_backup_validate_lists(NULL, star, "Resources", &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "spec.excludedResources"));
	json_object_put(inc);
	json_object_put(ok);
	json_object_put(both);
	json_object_put(star);
}

static void test_entry_names(void **state)
{
	char a[128], b[160];

	(void)state;
	assert_int_equal(
	        st_backup_entry_names(a, b, sizeof(a), "deployments.apps", "v1", "test", "nginx"),
	        0);
	assert_string_equal(a, "resources/deployments.apps/namespaces/test/nginx.json");
	assert_string_equal(b, "resources/deployments.apps/v1-preferredversion/namespaces/test/"
	                       "nginx.json");
	assert_int_equal(
	        st_backup_entry_names(a, b, sizeof(a), "persistentvolumes", "v1", NULL, "pv-1"), 0);
	assert_string_equal(a, "resources/persistentvolumes/cluster/pv-1.json");
	assert_string_equal(b, "resources/persistentvolumes/v1-preferredversion/cluster/pv-1.json");
	assert_int_equal(st_backup_entry_names(a, b, sizeof(a), "pods", "v1", "ns", "a/b"),
	                 ST_EINVAL);
	assert_int_equal(st_backup_entry_names(a, b, sizeof(a), "pods", "v1", "..", "x"),
	                 ST_EINVAL);
	assert_int_equal(st_backup_entry_names(a, b, sizeof(a), "pods", "v1", "ns", ""), ST_EINVAL);
	assert_int_equal(st_backup_entry_names(a, b, 40, "pods", "v1", "ns", "a-long-enough-name"),
	                 ST_ETOOBIG);
}

static void test_bsl_url(void **state)
{
	static const struct {
		const char *spec;
		const char *ca;
		int rc;
		const char *want; /* URL, or a fragment of the message */
	} cases[] = {
		{ "{\"provider\":\"aws\",\"objectStorage\":{\"bucket\":\"velero\",\"prefix\":\"/a/"
		  "b\"},"
		  "\"config\":{\"region\":\"minio\",\"s3Url\":\"http://127.0.0.1:9000\","
		  "\"s3ForcePathStyle\":\"true\"}}",
		  NULL, 0,
		  "s3://velero/a/b?endpoint=http://127.0.0.1:9000&region=minio&pathStyle=true" },
		{ "{\"provider\":\"aws\",\"objectStorage\":{\"bucket\":\"b1\"},\"config\":{"
		  "\"insecureSkipTLSVerify\":\"true\",\"region\":\"eu west\"}}",
		  "/tmp/x/ca.pem", 0,
		  "s3://b1?region=eu%20west&insecureSkipTLSVerify=true&caFile=/tmp/x/ca.pem" },
		{ "{\"provider\":\"file\",\"config\":{\"path\":\"/srv/"
		  "backups\"},\"objectStorage\":{"
		  "\"prefix\":\"cluster-a\"}}",
		  NULL, 0, "file:///srv/backups/cluster-a" },
		{ "{\"provider\":\"file\",\"config\":{\"path\":\"/srv/backups/\"}}", NULL, 0,
		  "file:///srv/backups/" },
		{ "{\"provider\":\"file\",\"config\":{\"path\":\"relative\"}}", NULL, ST_EINVAL,
		  "spec.config.path" },
		{ "{\"provider\":\"gcp\"}", NULL, ST_EINVAL, "unknown provider \"gcp\"" },
		{ "{}", NULL, ST_EINVAL, "spec.provider" },
		{ "{\"provider\":\"aws\",\"objectStorage\":{}}", NULL, ST_EINVAL, "bucket" },
		{ "{\"provider\":\"aws\",\"objectStorage\":{\"bucket\":\"a/b\"}}", NULL, ST_EINVAL,
		  "bucket" },
		{ "{\"provider\":\"aws\",\"objectStorage\":{\"bucket\":\"b\"},\"config\":{"
		  "\"s3ForcePathStyle\":\"yes\"}}",
		  NULL, ST_EINVAL, "s3ForcePathStyle" },
		{ "{\"provider\":\"aws\",\"objectStorage\":{\"bucket\":\"b\"},\"config\":{"
		  "\"s3Url\":\"ftp://x\"}}",
		  NULL, ST_EINVAL, "s3Url" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *o = parse(cases[i].spec);
		struct st_err err = { 0 };
		char url[512];
		int rc = st_bsl_url(url, sizeof(url), o, cases[i].ca, &err);

		if (rc != cases[i].rc)
			fail_msg("bsl %s: rc %d (%s)", cases[i].spec, rc, st_err_text(&err));
		if (rc == 0 && strcmp(url, cases[i].want) != 0)
			fail_msg("bsl %s: \"%s\", want \"%s\"", cases[i].spec, url, cases[i].want);
		if (rc < 0 && strstr(err.msg, cases[i].want) == NULL)
			fail_msg("bsl %s: message \"%s\" lacks \"%s\"", cases[i].spec, err.msg,
			         cases[i].want);
		json_object_put(o);
	}
}

/* A file:// location opened from a BSL object, probed, and a backup's objects deleted. */
static void test_bsl_file_probe_and_delete(void **state)
{
	char dir[] = "/tmp/backup_test.XXXXXX";
	char spec[512], path[600];
	struct json_object *bsl;
	struct st_bsl b;
	struct st_err err = { 0 };
	unsigned n = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	(void)snprintf(spec, sizeof(spec),
	               "{\"metadata\":{\"name\":\"f\",\"namespace\":\"stasis\"},\"spec\":{"
	               "\"provider\":\"file\",\"config\":{\"path\":\"%s\"}}}",
	               dir);
	bsl = parse(spec);
	assert_int_equal(st_bsl_open(&b, NULL, bsl, NULL, &err), 0);
	assert_int_equal(st_bsl_probe(b.store, &err), 0);
	(void)snprintf(path, sizeof(path), "%s/%s", dir, ST_BSL_PROBE_KEY);
	assert_int_not_equal(access(path, F_OK), 0); /* the probe cleans up after itself */
	assert_int_equal(st_store_put_mem(b.store, "backups/b1/b1.tar.gz", "x", 1, false, &err), 0);
	assert_int_equal(
	        st_store_put_mem(b.store, "backups/b1/velero-backup.json", "{}", 2, false, &err),
	        0);
	assert_int_equal(st_store_put_mem(b.store, "backups/b10/b10.tar.gz", "y", 1, false, &err),
	                 0);
	assert_int_equal(st_backup_delete_objects(&n, b.store, "b1", &err), 0);
	assert_int_equal(n, 2);
	(void)snprintf(path, sizeof(path), "%s/backups/b10/b10.tar.gz", dir);
	assert_int_equal(access(path, F_OK), 0); /* a name that shares the prefix stays */
	(void)snprintf(path, sizeof(path), "%s/backups/b1/b1.tar.gz", dir);
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_equal(st_backup_delete_objects(&n, b.store, "../x", &err), ST_EINVAL);
	st_bsl_close(&b);
	st_bsl_close(&b);
	json_object_put(bsl);
	(void)snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_format_time),
		cmocka_unit_test(test_selector),
		cmocka_unit_test(test_selector_too_long),
		cmocka_unit_test(test_namespace_scope),
		cmocka_unit_test(test_validate_lists),
		cmocka_unit_test(test_entry_names),
		cmocka_unit_test(test_bsl_url),
		cmocka_unit_test(test_bsl_file_probe_and_delete),
	};

	return cmocka_run_group_tests_name("backup", tests, NULL, NULL);
}
