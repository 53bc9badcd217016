/* pkg/config (durations, sizes, table, env), pkg/labels and pkg/metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pkg/config.h"
#include "pkg/labels.h"
#include "pkg/metrics.h"
#include "pkg/util/json.h"

static void test_durations(void **state)
{
	static const struct {
		const char *in;
		long long ms;
		const char *out;
	} ok[] = {
		{ "500ms", 500, "500ms" },   { "30s", 30000, "30s" },
		{ "1m30s", 90000, "1m30s" }, { "720h", 2592000000LL, "720h" },
		{ "1.5s", 1500, "1.500s" },  { "2h0m5s", 7205000, "2h5s" },
	};
	static const char *const bad[] = { "", "30", "s", "-1s", "1x", "1m30", "ms", "1 s" };
	long long v = 0;
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(st_duration_parse(&v, ok[i].in), 0);
		assert_int_equal(v, ok[i].ms);
		st_duration_format(buf, sizeof(buf), v);
		assert_string_equal(buf, ok[i].out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (st_duration_parse(&v, bad[i]) == 0)
			fail_msg("\"%s\" was accepted as a duration", bad[i]);
}

struct sample {
	char *name;
	bool on;
	long long n;
	long long wait_ms;
	long long size;
};

static const struct st_cfg_entry table[] = {
	{ "name", ST_CFG_STR, offsetof(struct sample, name), 0, 0, "x", "a name" },
	{ "feature.on", ST_CFG_BOOL, offsetof(struct sample, on), 0, 0, "false", "a switch" },
	{ "n", ST_CFG_INT, offsetof(struct sample, n), 1, 10, "3", "bounded" },
	{ "wait", ST_CFG_DURATION, offsetof(struct sample, wait_ms), 0, 0, "5s", "a duration" },
	{ "size", ST_CFG_SIZE, offsetof(struct sample, size), 0, 0, "1Ki", "a size" },
};

static void test_table(void **state)
{
	struct sample s;
	struct st_err err = ST_ERR_INIT;
	struct json_object *root = NULL;
	struct st_buf b = ST_BUF_INIT(4096);
	const char *doc = "{\"name\":\"db\",\"feature\":{\"on\":true},\"n\":7,\"size\":\"8Mi\"}";
	const size_t n = sizeof(table) / sizeof(table[0]);

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(st_config_defaults(&s, table, n), 0);
	assert_string_equal(s.name, "x");
	assert_int_equal(s.size, 1024);
	assert_int_equal(st_json_parse(&root, doc, strlen(doc), 4096, "doc", &err), 0);
	assert_int_equal(st_config_apply_tree(&s, table, n, root, NULL, "doc", &err), 0);
	json_object_put(root);
	assert_string_equal(s.name, "db");
	assert_true(s.on);
	assert_int_equal(s.n, 7);
	assert_int_equal(s.size, 8 << 20);
	assert_int_equal(st_config_set(&s, table, n, "n", "11", &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "out of range [1, 10]"));
	st_err_clear(&err);
	assert_int_equal(setenv("STASIS_FEATURE_ON", "false", 1), 0);
	assert_int_equal(setenv("STASIS_WAIT", "1m", 1), 0);
	assert_int_equal(st_config_apply_env(&s, table, n, &err), 0);
	assert_false(s.on);
	assert_int_equal(s.wait_ms, 60000);
	assert_int_equal(setenv("STASIS_WAIT", "soon", 1), 0);
	assert_int_equal(st_config_apply_env(&s, table, n, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "environment STASIS_WAIT"));
	unsetenv("STASIS_WAIT");
	unsetenv("STASIS_FEATURE_ON");
	assert_int_equal(st_config_print(&b, &s, table, n), 0);
	assert_non_null(strstr(st_buf_cstr(&b), "wait: 1m\n"));
	st_buf_dispose(&b);
	st_config_dispose(&s, table, n);
}

static void test_labels(void **state)
{
	static const struct {
		const char *sel;
		bool match;
	} cases[] = {
		{ "app=nginx", true },
		{ "app==nginx,tier=web", true },
		{ "app!=nginx", false },
		{ "app in (a, nginx)", true },
		{ "app notin (nginx)", false },
		{ "tier", true },
		{ "!tier", false },
		{ "missing", false },
		{ "!missing", true },
		{ "missing!=x", true },
		{ "app=nginx,missing in (x)", false },
	};
	struct json_object *labels = json_object_new_object();
	struct st_err err = ST_ERR_INIT;
	struct json_object *sel = NULL;

	(void)state;
	st_json_add_str(labels, "app", "nginx");
	st_json_add_str(labels, "tier", "web");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(st_labels_parse(&sel, cases[i].sel, &err), 0);
		assert_int_equal(st_labels_validate(sel, "sel", &err), 0);
		if (st_labels_match(sel, labels) != cases[i].match)
			fail_msg("\"%s\" should %smatch", cases[i].sel,
			         cases[i].match ? "" : "not ");
		json_object_put(sel);
	}
	assert_int_not_equal(st_labels_parse(&sel, "app in (a", &err), 0);
	assert_non_null(strstr(err.msg, "cannot parse"));
	assert_true(st_labels_match(NULL, labels));
	json_object_put(labels);
}

static void test_metrics(void **state)
{
	struct st_metrics *m = st_metrics_new();
	struct st_buf b = ST_BUF_INIT(1 << 20);
	const double buckets[] = { 0.1, 1 };
	char esc[64];

	(void)state;
	st_metrics_declare(m, "t_total", "Things.", ST_METRIC_COUNTER, NULL, 0);
	st_metrics_declare(m, "t_seconds", "Latency.", ST_METRIC_HISTOGRAM, buckets, 2);
	st_metrics_add(m, "t_total", "code=\"200\"", 1);
	st_metrics_add(m, "t_total", "code=\"200\"", 2);
	st_metrics_observe(m, "t_seconds", NULL, 0.05);
	st_metrics_observe(m, "t_seconds", NULL, 0.5);
	st_metrics_observe(m, "t_seconds", NULL, 5);
	for (int i = 0; i < 200; i++) {
		char l[32];

		snprintf(l, sizeof(l), "code=\"%d\"", i);
		st_metrics_add(m, "t_total", l, 1);
	}
	assert_true(st_metrics_value(m, "t_total", "code=\"200\"") == 3);
	assert_true(st_metrics_value(m, "t_total", "overflow=\"true\"") > 100);
	assert_int_equal(st_metrics_render(&b, m), 0);
	assert_non_null(strstr(st_buf_cstr(&b), "# TYPE t_seconds histogram\n"));
	assert_non_null(strstr(st_buf_cstr(&b), "t_seconds_bucket{le=\"0.1\"} 1\n"));
	assert_non_null(strstr(st_buf_cstr(&b), "t_seconds_bucket{le=\"1\"} 2\n"));
	assert_non_null(strstr(st_buf_cstr(&b), "t_seconds_bucket{le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(st_buf_cstr(&b), "t_seconds_count 3\n"));
	st_metrics_label_escape(esc, sizeof(esc), "a\"b\\c\nd");
	assert_string_equal(esc, "a\\\"b\\\\c\\nd");
	st_buf_dispose(&b);
	st_metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_labels),
		cmocka_unit_test(test_metrics),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
