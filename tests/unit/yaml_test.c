/* pkg/yaml: typing of plain scalars, errors, and emit -> parse round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pkg/util/json.h"
#include "pkg/yaml.h"

static void test_plain_scalar_types(void **state)
{
	const char *doc = "a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: \"1\"\ng: 0x1F\nh: 1e400\n"
	                  "i: yes\nj: '007'\nk: 007\n";
	struct json_object *o = NULL;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	assert_int_equal(st_yaml_parse_one(&o, doc, strlen(doc), "doc", &err), 0);
	assert_true(json_object_is_type(st_json_get(o, "a"), json_type_int));
	assert_int_equal(json_object_get_int(st_json_get(o, "b")), -2);
	assert_true(json_object_is_type(st_json_get(o, "c"), json_type_double));
	assert_true(json_object_get_boolean(st_json_get(o, "d")));
	assert_null(st_json_get(o, "e"));
	assert_string_equal(st_json_get_str(o, "f"), "1");
	assert_string_equal(st_json_get_str(o, "g"), "0x1F");
	assert_string_equal(st_json_get_str(o, "h"), "1e400");
	assert_string_equal(st_json_get_str(o, "i"), "yes");
	assert_string_equal(st_json_get_str(o, "j"), "007");
	json_object_put(o);
}

static void test_errors(void **state)
{
	static const struct {
		const char *doc;
		const char *msg;
	} bad[] = {
		{ "a: &x 1\nb: *x\n", "aliases are not supported" },
		{ "a: [1\n", "line 2" },
		{ "? [a]\n: 1\n", "mapping keys must be scalars" },
		{ "a: 1\n---\nb: 2\n", "expected one YAML document" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_object *o = NULL;
		struct st_err err = ST_ERR_INIT;

		assert_int_not_equal(
		        st_yaml_parse_one(&o, bad[i].doc, strlen(bad[i].doc), "in", &err), 0);
		assert_null(o);
		if (strstr(err.msg, bad[i].msg) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].msg);
	}
}

/* Each string must come back byte for byte after emit and parse. */
static void test_string_round_trip(void **state)
{
	static const struct {
		const char *s;
		size_t len;
	} cases[] = {
		{ "", 0 },
		{ "plain", 5 },
		{ "yes", 3 },
		{ "true", 4 },
		{ "1.5", 3 },
		{ "1e400", 5 },
		{ "- dash", 6 },
		{ "key: value", 10 },
		{ "a #b", 4 },
		{ " lead", 5 },
		{ "trail ", 6 },
		{ "line\nbreak", 10 },
		{ "nul\0inside", 10 },
		{ "nel\xc2\x85x", 6 },
		{ "ls\xe2\x80\xa8ps\xe2\x80\xa9", 10 },
		{ "\xef\xbb\xbf"
		  "bom",
		  6 },
		{ "non\xef\xbf\xbe", 6 },
		{ "del\x7f", 4 },
		{ "c1\xc2\x9b", 4 },
		{ "quote\"back\\slash", 16 },
		{ "caf\xc3\xa9", 5 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *arr = json_object_new_array();
		struct json_object *back = NULL;
		struct st_buf b = ST_BUF_INIT(4096);
		struct st_err err = ST_ERR_INIT;

		json_object_array_add(arr,
		                      json_object_new_string_len(cases[i].s, (int)cases[i].len));
		assert_int_equal(st_yaml_emit(&b, arr), 0);
		if (st_yaml_parse_one(&back, st_buf_cstr(&b), b.len, "emitted", &err) != 0)
			fail_msg("case %zu: emitted %s does not parse: %s", i, st_buf_cstr(&b),
			         err.msg);
		if (!json_object_equal(arr, back))
			fail_msg("case %zu: %s came back as %s", i, st_buf_cstr(&b),
			         json_object_to_json_string(back));
		json_object_put(arr);
		json_object_put(back);
		st_buf_dispose(&b);
	}
}

static void test_nested_emit(void **state)
{
	const char *doc = "{\"a\":{\"b\":[1,{\"c\":[],\"d\":{}},[2,3]],\"e\":null},\"f\":[]}";
	struct json_object *o = NULL;
	struct json_object *back = NULL;
	struct st_buf b = ST_BUF_INIT(4096);
	struct st_err err = ST_ERR_INIT;

	(void)state;
	assert_int_equal(st_json_parse(&o, doc, strlen(doc), 4096, "doc", &err), 0);
	assert_int_equal(st_yaml_emit(&b, o), 0);
	assert_int_equal(st_yaml_parse_one(&back, st_buf_cstr(&b), b.len, "emitted", &err), 0);
	assert_true(json_object_equal(o, back));
	json_object_put(o);
	json_object_put(back);
	st_buf_dispose(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_scalar_types),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_string_round_trip),
		cmocka_unit_test(test_nested_emit),
	};
	return cmocka_run_group_tests_name("yaml", tests, NULL, NULL);
}
