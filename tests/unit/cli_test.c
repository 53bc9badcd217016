/*
 * Unit tests for the command-line modules (pkg/cli_*): table layout,
 * durations and times in Velero's forms, selectors, flag value parsers,
 * templates, the apply order, the Backup and BackupStorageLocation tables
 * and texts, option parsing shared by the verbs, and the gzip reader of
 * `backup logs`. Expected strings are written out by hand from Velero's and
 * kubectl's documented output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "pkg/cli_backup.h"
#include "pkg/cli_bsl.h"
#include "pkg/cli_common.h"
#include "pkg/cli_install.h"
#include "pkg/cli_output.h"
#include "pkg/cli_store.h"
#include "pkg/util/json.h"

static struct json_object *parse(const char *text)
{
	struct json_object *o = json_tokener_parse(text);

	assert_non_null(o);
	return o;
}

static void test_duration_parse(void **state)
{
	static const struct {
		const char *in;
		int64_t secs; /* -1: invalid */
	} cases[] = {
		{ "720h", 720 * 3600 },
		{ "720h0m0s", 720 * 3600 },
		{ "1h30m", 5400 },
		{ "90m", 5400 },
		{ "45s", 45 },
		{ "1.5h", 5400 },
		{ "0", 0 },
		{ "0s", 0 },
		{ "", -1 },
		{ "10", -1 },
		{ "5d", -1 },
		{ "1h-5m", -1 },
		{ "-1h", -1 },
		{ "100ms", -1 },
		{ "h", -1 },
		{ "3000000h", -1 },
		{ "1h 2m", -1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t v = -7;
		int rc = st_cli_duration_parse(&v, cases[i].in);

		if (cases[i].secs < 0) {
			if (rc == 0)
				fail_msg("\"%s\" accepted as %lld", cases[i].in, (long long)v);
			continue;
		}
		if (rc != 0 || v != cases[i].secs)
			fail_msg("\"%s\": rc %d value %lld, want %lld", cases[i].in, rc,
			         (long long)v, (long long)cases[i].secs);
	}
}

static void test_duration_format(void **state)
{
	char buf[32];

	(void)state;
	st_cli_duration_format(buf, sizeof(buf), 720 * 3600);
	assert_string_equal(buf, "720h0m0s");
	st_cli_duration_format(buf, sizeof(buf), 3600 + 61);
	assert_string_equal(buf, "1h1m1s");
	st_cli_duration_format(buf, sizeof(buf), 300);
	assert_string_equal(buf, "5m0s");
	st_cli_duration_format(buf, sizeof(buf), 7);
	assert_string_equal(buf, "7s");
	st_cli_duration_format(buf, sizeof(buf), 0);
	assert_string_equal(buf, "0s");
}

static void test_duration_short(void **state)
{
	static const struct {
		int64_t secs;
		const char *want;
	} cases[] = {
		{ -5, "<invalid>" }, { -1, "0s" },          { 0, "0s" },
		{ 59, "59s" },       { 60, "1m" },          { 3599, "59m" },
		{ 3600, "1h" },      { 86399, "23h" },      { 86400, "1d" },
		{ 2591999, "29d" },  { 86400 * 365, "1y" }, { 86400 * 800, "2y" },
	};
	char buf[32];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		st_cli_duration_short(buf, sizeof(buf), cases[i].secs);
		assert_string_equal(buf, cases[i].want);
	}
	st_cli_time_from_now(buf, sizeof(buf), 0, 1000);
	assert_string_equal(buf, "n/a");
	st_cli_time_from_now(buf, sizeof(buf), 1000 + 30 * 86400 - 1, 1000);
	assert_string_equal(buf, "29d");
	st_cli_time_from_now(buf, sizeof(buf), 1000, 1000 + 3 * 3600 + 5);
	assert_string_equal(buf, "3h ago");
}

static void test_times(void **state)
{
	char buf[64];
	int64_t t = 0;

	(void)state;
	assert_int_equal(st_cli_time_parse(&t, "2026-01-02T03:04:05Z"), 0);
	assert_int_equal(t, 1767323045);
	assert_int_equal(st_cli_time_parse(&t, "2026-01-02T03:04:05.123456Z"), 0);
	assert_int_equal(t, 1767323045);
	assert_int_equal(st_cli_time_parse(&t, "2026-01-02T05:04:05+02:00"), 0);
	assert_int_equal(t, 1767323045);
	assert_int_equal(st_cli_time_parse(&t, "2026-01-02T03:04:05"), ST_EINVAL);
	assert_int_equal(st_cli_time_parse(&t, "2026-01-02T03:04:05+2"), ST_EINVAL);
	assert_int_equal(st_cli_time_parse(&t, "yesterday"), ST_EINVAL);
	st_cli_time_rfc3339(buf, sizeof(buf), 1767323045);
	assert_string_equal(buf, "2026-01-02T03:04:05Z");
	st_cli_time_show(buf, sizeof(buf), "2026-01-02T03:04:05Z");
	assert_string_equal(buf, "2026-01-02 03:04:05 +0000 UTC");
	st_cli_time_show(buf, sizeof(buf), NULL);
	assert_string_equal(buf, "<nil>");
	st_cli_time_show(buf, sizeof(buf), "garbage");
	assert_string_equal(buf, "garbage");
}

static void test_table(void **state)
{
	static const char *const headers[] = { "NAME", "STATUS", "A-LONG-HEADER-HERE" };
	static const char *const row1[] = { "nginx-backup-01", "Completed", "x" };
	static const char *const row2[] = { "b", NULL, "last" };
	struct st_buf out = ST_BUF_INIT(4096);
	struct st_cli_table t;

	(void)state;
	st_cli_table_init(&t, headers, 3);
	st_cli_table_add(&t, row1);
	st_cli_table_add(&t, row2);
	assert_int_equal(st_cli_table_write(&out, &t), 0);
	/* Widest cell + 3, at least 10; the last column is not padded. */
	assert_string_equal(st_buf_cstr(&out), "NAME              STATUS      A-LONG-HEADER-HERE\n"
	                                       "nginx-backup-01   Completed   x\n"
	                                       "b                             last\n");
	st_cli_table_dispose(&t);
	st_buf_dispose(&out);
}

static void test_selector_format(void **state)
{
	static const struct {
		const char *sel;
		const char *want;
	} cases[] = {
		{ "null", "<none>" },
		{ "{}", "<none>" },
		{ "{\"matchLabels\":{}}", "<none>" },
		{ "{\"matchLabels\":{\"tier\":\"db\",\"app\":\"nginx\"}}", "app=nginx,tier=db" },
		{ "{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"a\","
		  "\"b\"]},{\"key\":\"x\",\"operator\":\"NotIn\",\"values\":[\"c\"]},"
		  "{\"key\":\"y\",\"operator\":\"Exists\"},{\"key\":\"z\",\"operator\":"
		  "\"DoesNotExist\"}]}",
		  "env in (a,b),x notin (c),y,!z" },
		{ "{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":[{\"key\":\"y\","
		  "\"operator\":\"Exists\"}]}",
		  "app=web,y" },
	};
	char buf[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *o = json_tokener_parse(cases[i].sel);

		st_cli_selector_format(buf, sizeof(buf), o);
		assert_string_equal(buf, cases[i].want);
		json_object_put(o);
	}
}

static void test_parse_selector(void **state)
{
	struct json_object *sel = NULL;
	char buf[256];

	(void)state;
	assert_int_equal(st_cli_parse_selector(&sel, "app=nginx,tier in (a,b),!legacy", NULL), 0);
	assert_string_equal(st_json_get_str(st_json_get_obj(sel, "matchLabels"), "app"), "nginx");
	assert_int_equal(json_object_array_length(st_json_get_arr(sel, "matchExpressions")), 2);
	st_cli_selector_format(buf, sizeof(buf), sel);
	assert_string_equal(buf, "app=nginx,tier in (a,b),!legacy");
	json_object_put(sel);
	assert_int_equal(st_cli_parse_selector(&sel, "app=nginx", NULL), 0);
	assert_null(st_json_get(sel, "matchExpressions"));
	json_object_put(sel);
	assert_int_equal(st_cli_parse_selector(&sel, "app in (", NULL), ST_EINVAL);
	assert_null(sel);
}

static void test_parsers(void **state)
{
	struct json_object *arr = NULL, *map = NULL;
	bool b = false;

	(void)state;
	assert_int_equal(st_cli_parse_list(&arr, "a,,b"), 0);
	assert_int_equal(st_cli_parse_list(&arr, "c"), 0);
	assert_string_equal(st_json_to_string(arr, NULL), "[\"a\",\"b\",\"c\"]");
	assert_int_equal(st_cli_parse_list(&arr, "d e"), ST_EINVAL);
	json_object_put(arr);
	assert_int_equal(st_cli_parse_map(&map, "region=minio,s3Url=http://h:9000/x?a=b"), 0);
	assert_int_equal(st_cli_parse_map(&map, "region=us"), 0);
	assert_string_equal(st_json_get_str(map, "region"), "us");
	assert_string_equal(st_json_get_str(map, "s3Url"), "http://h:9000/x?a=b");
	assert_int_equal(st_cli_parse_map(&map, "novalue"), ST_EINVAL);
	assert_int_equal(st_cli_parse_map(&map, "=v"), ST_EINVAL);
	json_object_put(map);
	assert_int_equal(st_cli_parse_bool(&b, ""), 0);
	assert_true(b);
	assert_int_equal(st_cli_parse_bool(&b, "false"), 0);
	assert_false(b);
	assert_int_equal(st_cli_parse_bool(&b, "yes"), ST_EINVAL);
	map = json_object_new_object();
	assert_int_equal(st_cli_add_list(map, "ns", "a,b"), 0);
	assert_int_equal(st_cli_add_list(map, "ns", "c"), 0);
	assert_int_equal(st_cli_add_list(map, "bad", "x y"), ST_EINVAL);
	assert_int_equal(st_cli_add_bool(map, "on", ""), 0);
	assert_int_equal(st_cli_add_bool(map, "off", "false"), 0);
	assert_int_equal(st_cli_add_bool(map, "odd", "yes"), ST_EINVAL);
	assert_string_equal(st_json_to_string(map, NULL),
	                    "{\"ns\":[\"a\",\"b\",\"c\"],\"on\":true,\"off\":false}");
	json_object_put(map);
	assert_true(st_cli_valid_name("nginx-backup-01"));
	assert_true(st_cli_valid_name("a.b-c"));
	assert_false(st_cli_valid_name("Nginx"));
	assert_false(st_cli_valid_name("-a"));
	assert_false(st_cli_valid_name("a..b"));
	assert_false(st_cli_valid_name(""));
}

static void test_common_options(void **state)
{
	struct st_cli_ctx ctx;

	(void)state;
	unsetenv("STASIS_NAMESPACE");
	st_cli_ctx_init(&ctx, "backup get");
	assert_string_equal(ctx.ns, "stasis");
	assert_int_equal(st_cli_common_option(&ctx, 'n', "velero"), 1);
	assert_string_equal(ctx.ns, "velero");
	assert_int_equal(st_cli_common_option(&ctx, 'n', "Bad_NS"), -ST_CLI_EXIT_USAGE);
	assert_string_equal(ctx.ns, "velero");
	assert_int_equal(st_cli_common_option(&ctx, 'o', "yaml"), 1);
	assert_int_equal(ctx.output, ST_CLI_OUTPUT_YAML);
	assert_int_equal(st_cli_common_option(&ctx, 'o', "wide"), -ST_CLI_EXIT_USAGE);
	assert_int_equal(st_cli_common_option(&ctx, ST_CLI_OPT_KUBECONFIG, "/k"), 1);
	assert_string_equal(ctx.kubeconfig, "/k");
	assert_int_equal(st_cli_common_option(&ctx, ST_CLI_OPT_CONTEXT, "c1"), 1);
	assert_string_equal(ctx.context, "c1");
	assert_int_equal(st_cli_common_option(&ctx, 'l', "x"), 0);
	st_cli_ctx_dispose(&ctx);
	setenv("STASIS_NAMESPACE", "from-env", 1);
	st_cli_ctx_init(&ctx, "backup get");
	assert_string_equal(ctx.ns, "from-env");
	unsetenv("STASIS_NAMESPACE");
}

/* Usage errors come back as exit status 2 before anything touches the network. */
static void test_verb_usage(void **state)
{
	char *create_bad_ttl[] = { "backup", "create", "b1", "--ttl", "5d", NULL };
	char *create_no_name[] = { "backup", "create", NULL };
	char *create_bad_name[] = { "backup", "create", "B_1", NULL };
	char *get_bad_o[] = { "backup", "get", "-o", "wide", NULL };
	char *unknown[] = { "backup", "frobnicate", NULL };
	char *bsl_no_bucket[] = {
		"backup-location", "create", "x", "--provider", "aws", "-o", "json", NULL
	};
	char *install_o[] = { "install", "-o", "yaml", NULL };
	char *install_policy[] = { "install", "--failure-policy", "Maybe", NULL };

	(void)state;
	assert_int_equal(st_cli_backup_main(5, create_bad_ttl), 2);
	assert_int_equal(st_cli_backup_main(2, create_no_name), 2);
	assert_int_equal(st_cli_backup_main(3, create_bad_name), 2);
	assert_int_equal(st_cli_backup_main(4, get_bad_o), 2);
	assert_int_equal(st_cli_backup_main(2, unknown), 2);
	assert_int_equal(st_cli_bsl_main(7, bsl_no_bucket), 2);
	assert_int_equal(st_cli_install_main(3, install_o), 2);
	assert_int_equal(st_cli_install_main(3, install_policy), 2);
}

static void test_template_fill(void **state)
{
	static const struct st_cli_placeholder ph[] = { { "NAMESPACE", "stasis" },
		                                        { "IMAGE", "r/i:v1&x" } };
	struct st_err err = ST_ERR_INIT;
	const char *tpl = "ns: @@NAMESPACE@@\nimage: \"@@IMAGE@@\"\nmail: a@@b\nx: @@\n";
	char *out = NULL;

	(void)state;
	assert_int_equal(st_cli_template_fill(&out, tpl, strlen(tpl), ph, 2, "t", &err), 0);
	assert_string_equal(out, "ns: stasis\nimage: \"r/i:v1&x\"\nmail: a@@b\nx: @@\n");
	free(out);
	tpl = "a: @@NAMESPACE@@ @@NOPE@@";
	assert_int_equal(st_cli_template_fill(&out, tpl, strlen(tpl), ph, 2, "t.yaml", &err),
	                 ST_EINVAL);
	assert_null(out);
	assert_non_null(strstr(err.msg, "t.yaml"));
	assert_non_null(strstr(err.msg, "@@NOPE@@"));
}

static void test_install_rank(void **state)
{
	(void)state;
	assert_true(st_cli_install_rank("Namespace") <
	            st_cli_install_rank("CustomResourceDefinition"));
	assert_true(st_cli_install_rank("CustomResourceDefinition") <
	            st_cli_install_rank("ServiceAccount"));
	assert_true(st_cli_install_rank("ClusterRole") < st_cli_install_rank("ClusterRoleBinding"));
	assert_true(st_cli_install_rank("Secret") < st_cli_install_rank("Deployment"));
	assert_true(st_cli_install_rank("Deployment") <
	            st_cli_install_rank("MutatingWebhookConfiguration"));
	assert_true(st_cli_install_rank("MutatingWebhookConfiguration") <
	            st_cli_install_rank("BackupStorageLocation"));
}

static void test_backup_status(void **state)
{
	static const struct {
		const char *obj;
		const char *want;
	} cases[] = {
		{ "{}", "New" },
		{ "{\"status\":{\"phase\":\"InProgress\"}}", "InProgress" },
		{ "{\"status\":{\"phase\":\"PartiallyFailed\",\"errors\":1}}",
		  "PartiallyFailed (1 error)" },
		{ "{\"status\":{\"phase\":\"PartiallyFailed\",\"errors\":3}}",
		  "PartiallyFailed (3 errors)" },
		{ "{\"metadata\":{\"annotations\":{\"stasis.io/delete-requested\":\"true\"}},"
		  "\"status\":{\"phase\":\"Completed\"}}",
		  "Deleting" },
		{ "{\"metadata\":{\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"}}", "Deleting" },
	};
	char buf[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *o = parse(cases[i].obj);

		st_cli_backup_status(buf, sizeof(buf), o);
		assert_string_equal(buf, cases[i].want);
		json_object_put(o);
	}
}

static void test_backup_table(void **state)
{
	struct json_object *items = parse(
	        "[{\"metadata\":{\"name\":\"nginx-backup-01\",\"creationTimestamp\":"
	        "\"2026-01-02T03:00:00Z\"},\"spec\":{\"storageLocation\":\"default\","
	        "\"labelSelector\":{\"matchLabels\":{\"app\":\"nginx\"}}},\"status\":{\"phase\":"
	        "\"Completed\",\"errors\":0,\"warnings\":2,\"startTimestamp\":"
	        "\"2026-01-02T03:04:05Z\",\"expiration\":\"2026-02-01T03:04:05Z\"}},"
	        "{\"metadata\":{\"name\":\"b2\",\"creationTimestamp\":\"2026-01-02T03:00:00Z\"},"
	        "\"spec\":{}}]");
	struct st_buf out = ST_BUF_INIT(4096);

	(void)state;
	/* now = start + 1 day: the first expires in 29 days. */
	assert_int_equal(st_cli_backup_table(&out, items, 1767323045LL + 86400), 0);
	assert_string_equal(st_buf_cstr(&out), "NAME              STATUS      ERRORS    WARNINGS   "
	                                       "CREATED                         "
	                                       "EXPIRES   STORAGE LOCATION   SELECTOR\n"
	                                       "nginx-backup-01   Completed   0         2          "
	                                       "2026-01-02 03:04:05 +0000 UTC   "
	                                       "29d       default            app=nginx\n"
	                                       "b2                New         0         0          "
	                                       "2026-01-02 03:00:00 +0000 UTC   "
	                                       "n/a                          <none>\n");
	st_buf_dispose(&out);
	json_object_put(items);
}

static void test_backup_describe(void **state)
{
	struct json_object *b = parse(
	        "{\"metadata\":{\"name\":\"b1\",\"namespace\":\"stasis\",\"labels\":{\"k\":\"v\"}},"
	        "\"spec\":{\"includedNamespaces\":[\"test\",\"db\"],\"excludedResources\":"
	        "[\"events\"],\"includeClusterResources\":false,\"ttl\":\"24h0m0s\"},"
	        "\"status\":{\"phase\":\"Failed\",\"failureReason\":\"store unreachable\","
	        "\"validationErrors\":[\"no location\"],\"progress\":{\"totalItems\":7,"
	        "\"itemsBackedUp\":4},\"freezeWindows\":[{\"namespace\":\"db\",\"pod\":\"pg-0\","
	        "\"frozenAt\":\"t1\",\"thawedAt\":\"t2\",\"durationMs\":12}]}}");
	struct st_buf out = ST_BUF_INIT(1 << 16);
	const char *s;

	(void)state;
	assert_int_equal(st_cli_backup_describe(&out, b, 0), 0);
	s = st_buf_cstr(&out);
	assert_non_null(strstr(s, "Name:         b1\n"));
	assert_non_null(strstr(s, "Labels:       k=v\n"));
	assert_non_null(strstr(s, "Phase:  Failed\n"));
	assert_non_null(strstr(s, "  Included:  test,db\n"));
	assert_non_null(strstr(s, "  Excluded:        events\n"));
	assert_non_null(strstr(s, "  Cluster-scoped:  excluded\n"));
	assert_non_null(strstr(s, "TTL:  24h0m0s\n"));
	assert_non_null(strstr(s, "Failure reason:  store unreachable\n"));
	assert_non_null(strstr(s, "Validation errors:\n  no location\n"));
	assert_non_null(strstr(s, "Items backed up:              4\n"));
	assert_null(strstr(s, "pg-0"));
	st_buf_clear(&out);
	assert_int_equal(st_cli_backup_describe(&out, b, 1), 0);
	assert_non_null(strstr(st_buf_cstr(&out), "  db/pg-0: frozen t1, thawed t2 (12 ms)\n"));
	st_buf_dispose(&out);
	json_object_put(b);
}

static void test_bsl(void **state)
{
	struct st_cli_bsl_spec s = { .name = "default", .ns = "stasis", .provider = "aws" };
	struct json_object *o = NULL, *items;
	struct st_err err = ST_ERR_INIT;
	struct st_buf out = ST_BUF_INIT(4096);

	(void)state;
	assert_int_equal(st_cli_bsl_build(&o, &s, &err), ST_EINVAL); /* no bucket */
	assert_non_null(strstr(err.msg, "--bucket"));
	st_err_clear(&err);
	s.bucket = "b";
	s.prefix = "p";
	s.is_default = true;
	assert_int_equal(st_cli_parse_map(&s.config, "region=minio,s3ForcePathStyle=yes"), 0);
	assert_int_equal(st_cli_bsl_build(&o, &s, &err), ST_EINVAL);
	json_object_put(s.config);
	s.config = NULL;
	assert_int_equal(st_cli_parse_map(&s.config, "region=minio,bogus=1"), 0);
	st_err_clear(&err);
	assert_int_equal(st_cli_bsl_build(&o, &s, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "bogus"));
	json_object_put(s.config);
	s.config = NULL;
	assert_int_equal(st_cli_parse_map(&s.config, "region=minio,s3ForcePathStyle=true"), 0);
	s.secret = "creds";
	s.secret_key = "cloud";
	assert_int_equal(st_cli_bsl_build(&o, &s, NULL), 0);
	assert_string_equal(st_json_get_str(st_json_get_obj(o, "spec"), "provider"), "aws");
	assert_string_equal(
	        st_json_get_str(st_json_get_obj(st_json_get_obj(o, "spec"), "credential"), "key"),
	        "cloud");
	items = json_object_new_array();
	json_object_array_add(items, o);
	json_object_array_add(items, parse("{\"metadata\":{\"name\":\"local\"},\"spec\":{"
	                                   "\"provider\":\"file\",\"config\":{\"path\":\"/d\"}},"
	                                   "\"status\":{\"phase\":\"Available\","
	                                   "\"lastValidationTime\":\"2026-01-02T03:04:05Z\"}}"));
	assert_int_equal(st_cli_bsl_table(&out, items, 1767323045LL + 30), 0);
	assert_string_equal(st_buf_cstr(&out),
	                    "NAME      PROVIDER   BUCKET/PREFIX   PHASE       LAST VALIDATED   "
	                    "DEFAULT\n"
	                    "default   aws        b/p             Unknown     <none>           "
	                    "true\n"
	                    "local     file       /d              Available   30s ago          \n");
	st_buf_dispose(&out);
	json_object_put(items);
	json_object_put(s.config);
}

static void test_output(void **state)
{
	struct json_object *items = parse("[{\"a\":\"x/y\"}]");
	struct st_buf out = ST_BUF_INIT(4096);
	enum st_cli_output fmt = ST_CLI_OUTPUT_JSON;

	(void)state;
	assert_int_equal(st_cli_output_parse(&fmt, ""), 0);
	assert_int_equal(fmt, ST_CLI_OUTPUT_TABLE);
	assert_int_equal(st_cli_output_parse(&fmt, "yaml"), 0);
	assert_int_equal(fmt, ST_CLI_OUTPUT_YAML);
	assert_int_equal(st_cli_output_parse(&fmt, "wide"), ST_EINVAL);
	assert_int_equal(st_cli_output_list(&out, items, ST_CLI_OUTPUT_JSON, 1), 0);
	assert_non_null(strstr(st_buf_cstr(&out), "\"x/y\""));
	assert_null(strstr(st_buf_cstr(&out), "List"));
	st_buf_clear(&out);
	assert_int_equal(st_cli_output_list(&out, items, ST_CLI_OUTPUT_YAML, 0), 0);
	assert_non_null(strstr(st_buf_cstr(&out), "kind: List"));
	assert_non_null(strstr(st_buf_cstr(&out), "a: x/y"));
	st_buf_dispose(&out);
	json_object_put(items);
}

/* Feeds gzip data to the inflater in pieces of `step` bytes; returns the finish code. */
static int gunzip_steps(char *got, size_t got_size, const unsigned char *gz, size_t n, size_t step)
{
	FILE *f = fmemopen(got, got_size, "w");
	struct st_cli_gunzip *g = st_cli_gunzip_new(f);
	size_t off;
	int rc = 0;

	assert_non_null(g);
	for (off = 0; off < n && rc == 0; off += step)
		rc = st_cli_gunzip_feed(g, gz + off, n - off < step ? n - off : step);
	if (rc == 0)
		rc = st_cli_gunzip_finish(g);
	st_cli_gunzip_free(g);
	fclose(f);
	return rc;
}

static size_t gzip(unsigned char *out, size_t cap, const char *text)
{
	z_stream z;

	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
	                 Z_OK);
	z.next_in = (unsigned char *)(uintptr_t)text;
	z.avail_in = (uInt)strlen(text);
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	deflateEnd(&z);
	return cap - z.avail_out;
}

static void test_gunzip(void **state)
{
	unsigned char gz[512];
	char got[256];
	size_t n, m;

	(void)state;
	n = gzip(gz, sizeof(gz), "time=1 level=info msg=\"backup started\"\n");
	memset(got, 0, sizeof(got));
	assert_int_equal(gunzip_steps(got, sizeof(got), gz, n, 1), 0);
	assert_string_equal(got, "time=1 level=info msg=\"backup started\"\n");
	/* Two members, as a log appended in two writes would be. */
	m = gzip(gz + n, sizeof(gz) - n, "second\n");
	memset(got, 0, sizeof(got));
	assert_int_equal(gunzip_steps(got, sizeof(got), gz, n + m, 7), 0);
	assert_string_equal(got, "time=1 level=info msg=\"backup started\"\nsecond\n");
	/* Truncated and corrupt streams are errors, not short output. */
	assert_int_equal(gunzip_steps(got, sizeof(got), gz, n - 4, 64), ST_EPROTO);
	gz[12] ^= 0xff;
	assert_int_equal(gunzip_steps(got, sizeof(got), gz, n, 64), ST_EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_parse),  cmocka_unit_test(test_duration_format),
		cmocka_unit_test(test_duration_short),  cmocka_unit_test(test_times),
		cmocka_unit_test(test_table),           cmocka_unit_test(test_selector_format),
		cmocka_unit_test(test_parse_selector),  cmocka_unit_test(test_parsers),
		cmocka_unit_test(test_common_options),  cmocka_unit_test(test_verb_usage),
		cmocka_unit_test(test_template_fill),   cmocka_unit_test(test_install_rank),
		cmocka_unit_test(test_backup_status),   cmocka_unit_test(test_backup_table),
		cmocka_unit_test(test_backup_describe), cmocka_unit_test(test_bsl),
		cmocka_unit_test(test_output),          cmocka_unit_test(test_gunzip),
	};

	return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
