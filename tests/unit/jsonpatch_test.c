/*
 * Unit tests for pkg/jsonpatch: the json-patch conformance suites read in
 * place (every enabled case, plus a diff round trip for each expected
 * document), and our own cases for pointers, escaping, array indices, caps,
 * atomicity, the builders and the diff generator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pkg/jsonpatch.h"
#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/err.h"
#include "pkg/util/json.h"

/* ---- helpers ---------------------------------------------------------- */

static struct json_object *parse(const char *text)
{
	struct json_object *o = NULL;
	struct st_err err = ST_ERR_INIT;

	if (strcmp(text, "null") == 0)
		return NULL;
	if (st_json_parse(&o, text, strlen(text), ST_CAP_PATCH, "test input", &err) < 0)
		fail_msg("cannot parse %s: %s", text, st_err_text(&err));
	return o;
}

/* Serialises a copy of the text of o, so it survives changes to o. */
static char *text_of(struct json_object *o)
{
	const char *s = o != NULL ? st_json_to_string(o, NULL) : "null";
	char *copy = strdup(s);

	assert_non_null(copy);
	return copy;
}

/* Applies patch text to doc text; returns rc and fills result text / error. */
static int apply_str(char **result, const char *doc, const char *patch, struct st_err *err)
{
	size_t len = 0;

	return st_jsonpatch_apply_text(result, &len, doc, strlen(doc), patch, strlen(patch),
	                               ST_CAP_PATCH, err);
}

static void expect_result(const char *doc, const char *patch, const char *want)
{
	struct st_err err = ST_ERR_INIT;
	char *out = NULL;
	int rc = apply_str(&out, doc, patch, &err);

	if (rc != 0)
		fail_msg("patch %s on %s failed: %s", patch, doc, st_err_text(&err));
	assert_string_equal(out, want);
	free(out);
}

static void expect_error(const char *doc, const char *patch, int code, const char *msg)
{
	struct st_err err = ST_ERR_INIT;
	char *out = NULL;
	int rc = apply_str(&out, doc, patch, &err);

	if (rc != code)
		fail_msg("patch %s on %s: rc %d, want %d (%s)", patch, doc, rc, code,
		         st_err_text(&err));
	assert_null(out);
	if (msg != NULL && strstr(err.msg, msg) == NULL)
		fail_msg("error '%s' does not contain '%s'", err.msg, msg);
}

/* ---- conformance suites ----------------------------------------------- */

static char *read_file(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len_out = (size_t)n;
	}
	(void)fclose(f);
	return buf;
}

static struct json_object *load_suite(const char *name)
{
	const char *shared = getenv("STASIS_SHARED");
	char path[4096];
	struct json_object *o = NULL;
	struct st_err err = ST_ERR_INIT;
	size_t len = 0;
	char *text;

	(void)snprintf(path, sizeof(path), "%s/conformance/json-patch/%s",
	               shared != NULL && shared[0] != '\0' ? shared : "../shared", name);
	text = read_file(path, &len);
	if (text == NULL)
		fail_msg("cannot read %s (set STASIS_SHARED or run from the repo root)", path);
	if (st_json_parse(&o, text, len, ST_CAP_PATCH, path, &err) < 0)
		fail_msg("%s", st_err_text(&err));
	free(text);
	return o;
}

/* A case with "expected": exact result, and diff(doc, expected) round trip. */
static int check_case_expected(struct json_object *doc, const struct json_object *patch,
                               struct json_object *want, const char *label)
{
	struct json_object *d = NULL;
	struct json_object *diff = NULL;
	struct json_object *d2 = NULL;
	struct st_err err = ST_ERR_INIT;
	int bad = 0;

	if (doc != NULL)
		assert_int_equal(json_object_deep_copy(doc, &d, NULL), 0);
	if (st_jsonpatch_apply(&d, patch, &err) != 0) {
		print_message("FAIL %s: %s\n", label, st_err_text(&err));
		bad = 1;
	} else if (!json_object_equal(d, want)) {
		print_message("FAIL %s: got %s\n", label, d ? st_json_to_string(d, NULL) : "null");
		bad = 1;
	}
	if (doc != NULL)
		assert_int_equal(json_object_deep_copy(doc, &d2, NULL), 0);
	st_err_clear(&err);
	if (st_jsonpatch_diff(&diff, doc, want) != 0 || st_jsonpatch_apply(&d2, diff, &err) != 0 ||
	    !json_object_equal(d2, want)) {
		print_message("FAIL %s: diff round trip: %s\n", label, st_err_text(&err));
		bad = 1;
	}
	json_object_put(d);
	json_object_put(d2);
	json_object_put(diff);
	return bad;
}

/* A case with "error": apply fails and the document is left as it was. */
static int check_case_error(struct json_object *doc, const struct json_object *patch,
                            const char *label)
{
	struct json_object *d = doc;
	struct st_err err = ST_ERR_INIT;
	char *before = text_of(doc);
	char *after = NULL;
	int bad = 0;

	if (st_jsonpatch_apply(&d, patch, &err) == 0) {
		print_message("FAIL %s: applied, expected an error\n", label);
		bad = 1;
	} else if (err.msg[0] == '\0') {
		print_message("FAIL %s: no error message\n", label);
		bad = 1;
	}
	after = text_of(d);
	if (d != doc || strcmp(before, after) != 0) {
		print_message("FAIL %s: document changed: %s\n", label, after);
		bad = 1;
	}
	free(before);
	free(after);
	return bad;
}

static void run_suite(const char *name, size_t min_cases)
{
	struct json_object *suite = load_suite(name);
	size_t ran = 0;
	int bad = 0;

	for (size_t i = 0; i < json_object_array_length(suite); i++) {
		struct json_object *c = json_object_array_get_idx(suite, i);
		struct json_object *doc = NULL;
		struct json_object *patch = NULL;
		struct json_object *want = NULL;
		const char *comment = st_json_get_str(c, "comment");
		char label[200];

		if (st_json_get_bool(c, "disabled", false) ||
		    !json_object_object_get_ex(c, "patch", &patch))
			continue;
		(void)json_object_object_get_ex(c, "doc", &doc);
		(void)snprintf(label, sizeof(label), "%s #%zu (%s)", name, i,
		               comment != NULL ? comment : "");
		if (json_object_object_get_ex(c, "expected", &want))
			bad += check_case_expected(doc, patch, want, label);
		else if (json_object_object_get_ex(c, "error", NULL))
			bad += check_case_error(doc, patch, label);
		else
			continue;
		ran++;
	}
	print_message("%s: %zu cases, %d failed\n", name, ran, bad);
	json_object_put(suite);
	assert_int_equal(bad, 0);
	assert_true(ran >= min_cases);
}

static void test_conformance_tests(void **state)
{
	(void)state;
	run_suite("tests.json", 90);
}

static void test_conformance_spec(void **state)
{
	(void)state;
	run_suite("spec_tests.json", 15);
}

/* ---- pointers --------------------------------------------------------- */

static void test_pointer_parse(void **state)
{
	struct st_jsonpatch_pointer p = ST_JSONPATCH_POINTER_INIT;
	struct st_err err = ST_ERR_INIT;
	char deep[3 * (ST_CAP_JSON_DEPTH + 1) + 1];
	const char *s;

	(void)state;
	assert_int_equal(st_jsonpatch_pointer_parse(&p, "", 0, NULL), 0);
	assert_int_equal(p.n, 0);
	st_jsonpatch_pointer_dispose(&p);

	s = "/a~1b/~0c/~01//";
	assert_int_equal(st_jsonpatch_pointer_parse(&p, s, strlen(s), NULL), 0);
	assert_int_equal(p.n, 5);
	assert_string_equal(p.tokens[0], "a/b");
	assert_string_equal(p.tokens[1], "~c");
	assert_string_equal(p.tokens[2], "~1");
	assert_string_equal(p.tokens[3], "");
	assert_string_equal(p.tokens[4], "");
	st_jsonpatch_pointer_dispose(&p);

	assert_int_equal(st_jsonpatch_pointer_parse(&p, "a/b", 3, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "start with '/'"));
	st_jsonpatch_pointer_dispose(&p);
	assert_int_equal(st_jsonpatch_pointer_parse(&p, "/a~", 3, NULL), ST_EINVAL);
	st_jsonpatch_pointer_dispose(&p);
	assert_int_equal(st_jsonpatch_pointer_parse(&p, "/a~2", 4, NULL), ST_EINVAL);
	st_jsonpatch_pointer_dispose(&p);
	assert_int_equal(st_jsonpatch_pointer_parse(&p, "/a\0b", 4, NULL), ST_EINVAL);
	st_jsonpatch_pointer_dispose(&p);

	for (size_t i = 0; i <= ST_CAP_JSON_DEPTH; i++)
		memcpy(deep + 3 * i, "/ab", 3);
	deep[sizeof(deep) - 1] = '\0';
	assert_int_equal(st_jsonpatch_pointer_parse(&p, deep, strlen(deep), NULL), ST_ETOOBIG);
	st_jsonpatch_pointer_dispose(&p);
	assert_int_equal(st_jsonpatch_pointer_parse(&p, deep, strlen(deep) - 3, NULL), 0);
	assert_int_equal(p.n, ST_CAP_JSON_DEPTH);
	st_jsonpatch_pointer_dispose(&p);
	st_jsonpatch_pointer_dispose(NULL);
}

static void test_pointer_get(void **state)
{
	struct json_object *doc = parse("{\"a/b\":{\"~\":[10,20,null]},\"\":1,\"n\":null}");
	struct json_object *v = NULL;

	(void)state;
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/a~1b/~0/1", NULL), 0);
	assert_int_equal(json_object_get_int(v), 20);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/a~1b/~0/2", NULL), 0);
	assert_null(v);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/", NULL), 0);
	assert_int_equal(json_object_get_int(v), 1);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "", NULL), 0);
	assert_ptr_equal(v, doc);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/n", NULL), 0);
	assert_null(v);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/a~1b/~0/3", NULL), ST_ENOTFOUND);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/a~1b/~0/01", NULL), ST_EINVAL);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/a~1b/~0/-", NULL), ST_EINVAL);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/a~1b/~0/+1", NULL), ST_EINVAL);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/a/b", NULL), ST_ENOTFOUND);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/n/x", NULL), ST_ENOTFOUND);
	assert_int_equal(st_jsonpatch_pointer_get(&v, doc, "/a~3", NULL), ST_EINVAL);
	json_object_put(doc);
}

static void test_escape_token(void **state)
{
	struct st_buf b;

	(void)state;
	st_buf_init(&b, 64);
	assert_int_equal(st_jsonpatch_escape_token(&b, "a/b~c~1"), 0);
	assert_string_equal(st_buf_cstr(&b), "a~1b~0c~01");
	st_buf_clear(&b);
	assert_int_equal(st_buf_puts(&b, "/metadata/annotations"), 0);
	assert_int_equal(st_jsonpatch_path_append(&b, "pre.hook.backup.velero.io/command"), 0);
	assert_string_equal(st_buf_cstr(&b),
	                    "/metadata/annotations/pre.hook.backup.velero.io~1command");
	assert_int_equal(st_jsonpatch_path_append(&b, ""), 0);
	assert_string_equal(st_buf_cstr(&b) + b.len - 1, "/");
	st_buf_dispose(&b);

	/* Over the cap: error, and path_append leaves the buffer as it was. */
	st_buf_init(&b, 8);
	assert_int_equal(st_buf_puts(&b, "/ab"), 0);
	assert_int_equal(st_jsonpatch_path_append(&b, "c/d/e"), ST_ETOOBIG);
	assert_string_equal(st_buf_cstr(&b), "/ab");
	assert_int_equal(st_jsonpatch_escape_token(&b, "~~/"), ST_ETOOBIG);
	assert_string_equal(st_buf_cstr(&b), "/ab");
	assert_int_equal(st_jsonpatch_escape_token(&b, "~"), 0);
	assert_string_equal(st_buf_cstr(&b), "/ab~0");
	st_buf_dispose(&b);
}

/* ---- apply: our own cases --------------------------------------------- */

static void test_escaped_paths(void **state)
{
	(void)state;
	expect_result("{\"a/b\":1,\"m~n\":2}",
	              "[{\"op\":\"replace\",\"path\":\"/a~1b\",\"value\":3},"
	              "{\"op\":\"remove\",\"path\":\"/m~0n\"},"
	              "{\"op\":\"add\",\"path\":\"/~01\",\"value\":\"x/y\"}]",
	              "{\"a/b\":3,\"~1\":\"x/y\"}");
	expect_error("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/~2\",\"value\":1}]", ST_EINVAL,
	             "patch op 0 (add /~2): malformed 'path' pointer");
}

static void test_array_indices(void **state)
{
	(void)state;
	expect_result("[1,2]", "[{\"op\":\"add\",\"path\":\"/-\",\"value\":3}]", "[1,2,3]");
	expect_result("[1,2]", "[{\"op\":\"add\",\"path\":\"/0\",\"value\":0}]", "[0,1,2]");
	expect_result("[1,2]", "[{\"op\":\"add\",\"path\":\"/2\",\"value\":3}]", "[1,2,3]");
	expect_result("[1,2,3]", "[{\"op\":\"add\",\"path\":\"/1\",\"value\":9}]", "[1,9,2,3]");
	expect_result("{\"a\":[1,2],\"b\":[]}",
	              "[{\"op\":\"move\",\"from\":\"/a/0\",\"path\":\"/b/-\"},"
	              "{\"op\":\"copy\",\"from\":\"/a/0\",\"path\":\"/b/-\"}]",
	              "{\"a\":[2],\"b\":[1,2]}");
	expect_result("{\"-\":1}", "[{\"op\":\"replace\",\"path\":\"/-\",\"value\":2}]",
	              "{\"-\":2}");
	expect_error("[1,2]", "[{\"op\":\"add\",\"path\":\"/01\",\"value\":3}]", ST_EINVAL,
	             "leading zeros");
	expect_error("[1,2]", "[{\"op\":\"test\",\"path\":\"/00\",\"value\":1}]", ST_EINVAL, NULL);
	expect_error("[1,2]", "[{\"op\":\"add\",\"path\":\"/3\",\"value\":3}]", ST_ENOTFOUND,
	             "out of range");
	expect_error("[1,2]", "[{\"op\":\"remove\",\"path\":\"/-\"}]", ST_EINVAL, NULL);
	expect_error("[1,2]", "[{\"op\":\"replace\",\"path\":\"/-\",\"value\":1}]", ST_EINVAL,
	             NULL);
	expect_error("[1,2]", "[{\"op\":\"test\",\"path\":\"/-\",\"value\":2}]", ST_EINVAL, NULL);
	expect_error("[1,2]", "[{\"op\":\"copy\",\"from\":\"/-\",\"path\":\"/0\"}]", ST_EINVAL,
	             NULL);
	expect_error("[1,2]", "[{\"op\":\"remove\",\"path\":\"/2\"}]", ST_ENOTFOUND, NULL);
	expect_error("[1,2]", "[{\"op\":\"remove\",\"path\":\"/99999999999999999999999999\"}]",
	             ST_EINVAL, NULL);
}

static void test_number_equality(void **state)
{
	(void)state;
	expect_result("{\"a\":1}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":1.0}]",
	              "{\"a\":1}");
	expect_result("{\"a\":1e2}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":100}]",
	              "{\"a\":1e2}");
	expect_result("{\"a\":18446744073709551615}",
	              "[{\"op\":\"test\",\"path\":\"/a\",\"value\":18446744073709551615}]",
	              "{\"a\":18446744073709551615}");
	expect_error("{\"a\":9223372036854775807}",
	             "[{\"op\":\"test\",\"path\":\"/a\",\"value\":18446744073709551615}]",
	             ST_EINVAL, "test failed");
	expect_error("{\"a\":10}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":\"10\"}]",
	             ST_EINVAL, "test failed");
	expect_error("{\"a\":[1,{\"b\":true}]}",
	             "[{\"op\":\"test\",\"path\":\"/a\",\"value\":[1,{\"b\":false}]}]", ST_EINVAL,
	             "patch op 0 (test /a): test failed");
	expect_result("{\"a\":{\"x\":1,\"y\":[null]}}",
	              "[{\"op\":\"test\",\"path\":\"/a\",\"value\":{\"y\":[null],\"x\":1.0}}]",
	              "{\"a\":{\"x\":1,\"y\":[null]}}");
}

static void test_atomic(void **state)
{
	const char *patch = "[{\"op\":\"add\",\"path\":\"/x\",\"value\":1},"
	                    "{\"op\":\"replace\",\"path\":\"/a/c\",\"value\":[]},"
	                    "{\"op\":\"remove\",\"path\":\"/a/c/0\"},"
	                    "{\"op\":\"remove\",\"path\":\"/a/b\"}]";
	struct json_object *doc = parse("{\"a\":{\"c\":[5]}}");
	struct json_object *p = parse(patch);
	struct json_object *before = doc;
	struct st_err err = ST_ERR_INIT;
	char *text = text_of(doc);
	char *after;

	(void)state;
	assert_int_equal(st_jsonpatch_apply(&doc, p, &err), ST_ENOTFOUND);
	assert_string_equal(err.msg, "patch op 2 (remove /a/c/0): array index out of range");
	assert_ptr_equal(doc, before);
	after = text_of(doc);
	assert_string_equal(after, text);
	free(after);
	json_object_put(p);

	st_err_clear(&err);
	p = parse("[{\"op\":\"remove\",\"path\":\"/a/b\"}]");
	assert_int_equal(st_jsonpatch_apply(&doc, p, &err), ST_ENOTFOUND);
	assert_string_equal(err.msg, "patch op 0 (remove /a/b): path not found");
	json_object_put(p);
	json_object_put(doc);
	free(text);
}

struct error_case {
	const char *doc;
	const char *patch;
	int code;
	const char *msg;
};

static const struct error_case malformed_cases[] = {
	{ "{}", "{\"op\":\"add\"}", ST_EINVAL, "patch is not a JSON array" },
	{ "{}", "[1]", ST_EINVAL, "patch op 0: operation is not an object" },
	{ "{}", "[{\"path\":\"/a\"}]", ST_EINVAL, "patch op 0: missing 'op'" },
	{ "{}", "[{\"op\":7,\"path\":\"/a\"}]", ST_EINVAL, "'op' is not a string" },
	{ "{}", "[{\"op\":\"spam\",\"path\":\"/a\"}]", ST_EINVAL,
	  "patch op 0 (spam /a): unknown op" },
	{ "{}", "[{\"op\":\"add\",\"value\":1}]", ST_EINVAL, "patch op 0 (add): missing 'path'" },
	{ "{}", "[{\"op\":\"add\",\"path\":null,\"value\":1}]", ST_EINVAL,
	  "'path' is not a string" },
	{ "{}", "[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", ST_EINVAL, "malformed 'path'" },
	{ "{}", "[{\"op\":\"add\",\"path\":\"/a\\u0000b\",\"value\":1}]", ST_EINVAL,
	  "'path' is not a string" },
	{ "{}", "[{\"op\":\"replace\",\"path\":\"/a\"}]", ST_EINVAL, "missing 'value'" },
	{ "{\"a\":1}", "[{\"op\":\"copy\",\"path\":\"/b\"}]", ST_EINVAL, "missing 'from'" },
	{ "{\"a\":1}", "[{\"op\":\"copy\",\"from\":\"x\",\"path\":\"/b\"}]", ST_EINVAL,
	  "malformed 'from'" },
	{ "{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/x\",\"path\":\"/b\"}]", ST_ENOTFOUND,
	  "patch op 0 (move /x to /b): from location not found" },
	{ "{\"a\":{\"b\":{}}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b/c\"}]",
	  ST_EINVAL, "patch op 0 (move /a to /a/b/c): cannot move a value into its own child" },
	{ "{\"a\":1}", "[{\"op\":\"move\",\"from\":\"\",\"path\":\"/b\"}]", ST_EINVAL,
	  "own child" },
	{ "{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"\"}]", ST_EINVAL, "whole document" },
	{ "{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a/b\",\"value\":1}]", ST_ENOTFOUND,
	  "parent is not an object or array" },
	{ "{\"a\":1}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":1},{\"op\":\"test\"}]",
	  ST_EINVAL, "patch op 1 (test): missing 'path'" },
};

static void test_malformed_ops(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(malformed_cases) / sizeof(malformed_cases[0]); i++) {
		const struct error_case *c = &malformed_cases[i];

		expect_error(c->doc, c->patch, c->code, c->msg);
	}
	/* Moving onto itself, or next to itself, is fine. */
	expect_result("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a\"}]",
	              "{\"a\":{\"b\":1}}");
	expect_result("{\"a\":{\"b\":1},\"ab\":{}}",
	              "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/ab/x\"}]",
	              "{\"ab\":{\"x\":{\"b\":1}}}");
}

static void test_root_ops(void **state)
{
	(void)state;
	expect_result("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"\",\"value\":[1]}]", "[1]");
	expect_result("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"\",\"value\":null}]", "null");
	expect_result("null", "[{\"op\":\"add\",\"path\":\"\",\"value\":{\"a\":\"/\"}}]",
	              "{\"a\":\"/\"}");
	expect_result(" null ", "[{\"op\":\"test\",\"path\":\"\",\"value\":null}]", "null");
	expect_result("{\"a\":{\"b\":2}}", "[{\"op\":\"move\",\"from\":\"/a/b\",\"path\":\"\"}]",
	              "2");
	expect_result("{\"a\":1,\"b\":2,\"c\":3}",
	              "[{\"op\":\"replace\",\"path\":\"/a\",\"value\":9}]",
	              "{\"a\":9,\"b\":2,\"c\":3}");
}

static char *nested(size_t depth, const char *leaf)
{
	size_t n = depth * 6 + strlen(leaf) + depth + 1;
	char *s = malloc(n);
	size_t pos = 0;

	assert_non_null(s);
	for (size_t i = 0; i < depth; i++) {
		memcpy(s + pos, "{\"a\":", 5);
		pos += 5;
	}
	memcpy(s + pos, leaf, strlen(leaf));
	pos += strlen(leaf);
	memset(s + pos, '}', depth);
	pos += depth;
	s[pos] = '\0';
	return s;
}

static void test_depth_limit(void **state)
{
	char *doc = nested(ST_CAP_JSON_DEPTH - 2, "1");
	char path[3 * ST_CAP_JSON_DEPTH + 64];
	char patch[sizeof(path) + 128];
	struct json_object *deep = NULL;
	struct json_object *p = NULL;
	struct st_err err = ST_ERR_INIT;
	size_t pos = 0;

	(void)state;
	for (size_t i = 0; i < ST_CAP_JSON_DEPTH - 2; i++)
		pos += (size_t)snprintf(path + pos, sizeof(path) - pos, "/a");
	/* Replacing the innermost value with one more level still fits... */
	(void)snprintf(patch, sizeof(patch),
	               "[{\"op\":\"replace\",\"path\":\"%s\",\"value\":{\"b\":[]}}]", path);
	{
		char *out = NULL;
		size_t len = 0;

		assert_int_equal(st_jsonpatch_apply_text(&out, &len, doc, strlen(doc), patch,
		                                         strlen(patch), ST_CAP_PATCH, &err),
		                 0);
		free(out);
	}
	/* ...but two more levels go past the cap. */
	(void)snprintf(patch, sizeof(patch),
	               "[{\"op\":\"replace\",\"path\":\"%s\",\"value\":{\"b\":[[]]}}]", path);
	expect_error(doc, patch, ST_ETOOBIG, "nest too deep");
	/* Copying a subtree into itself grows depth: refused. */
	expect_result("{\"a\":{\"a\":{}}}", "[{\"op\":\"copy\",\"from\":\"\",\"path\":\"/a/a/b\"}]",
	              "{\"a\":{\"a\":{\"b\":{\"a\":{\"a\":{}}}}}}");
	expect_error(doc, "[{\"op\":\"copy\",\"from\":\"\",\"path\":\"/a/a/b\"}]", ST_ETOOBIG,
	             "nest too deep");
	free(doc);

	/* A document built in memory deeper than the cap is refused up front. */
	deep = json_object_new_int(1);
	for (size_t i = 0; i < ST_CAP_JSON_DEPTH + 1; i++) {
		struct json_object *o = json_object_new_array();

		json_object_array_add(o, deep);
		deep = o;
	}
	p = parse("[]");
	st_err_clear(&err);
	assert_int_equal(st_jsonpatch_apply(&deep, p, &err), ST_ETOOBIG);
	assert_non_null(strstr(err.msg, "deeper"));
	json_object_put(p);
	json_object_put(deep);
}

static void test_growth_limit(void **state)
{
	struct st_buf patch;
	struct st_err err = ST_ERR_INIT;
	char *out = NULL;
	size_t len = 0;
	const char *doc = "{\"a\":[\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]}";

	(void)state;
	/* Each copy doubles the array: 40 doublings would need terabytes. */
	st_buf_init(&patch, 1u << 20);
	assert_int_equal(st_buf_puts(&patch, "["), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(st_buf_printf(&patch,
		                               "%s{\"op\":\"copy\",\"from\":\"/a\","
		                               "\"path\":\"/a/-\"}",
		                               i ? "," : ""),
		                 0);
	assert_int_equal(st_buf_puts(&patch, "]"), 0);
	assert_int_equal(st_jsonpatch_apply_text(&out, &len, doc, strlen(doc), patch.ptr, patch.len,
	                                         1u << 16, &err),
	                 ST_ETOOBIG);
	assert_non_null(strstr(err.msg, "grow over the limit"));
	assert_null(out);
	/* The output cap holds for the text form even without copies. */
	st_err_clear(&err);
	assert_int_equal(st_jsonpatch_apply_text(&out, &len, doc, strlen(doc),
	                                         "[{\"op\":\"add\",\"path\":\"/b\",\"value\":1}]",
	                                         40, 20, &err),
	                 ST_ETOOBIG);
	assert_null(out);
	st_buf_dispose(&patch);
}

static void test_text_api(void **state)
{
	struct st_err err = ST_ERR_INIT;
	char *out = NULL;
	size_t len = 0;
	const char *doc = "{\"metadata\":{\"name\":\"x\"}}";
	const char *patch = "[{\"op\":\"add\",\"path\":\"/metadata/annotations\",\"value\":"
	                    "{\"a/b\":\"c/d\"}}]";

	(void)state;
	assert_int_equal(st_jsonpatch_apply_text(&out, &len, doc, strlen(doc), patch, strlen(patch),
	                                         4096, &err),
	                 0);
	assert_string_equal(out,
	                    "{\"metadata\":{\"name\":\"x\",\"annotations\":{\"a/b\":\"c/d\"}}}");
	assert_int_equal(len, strlen(out));
	free(out);
	out = NULL;
	expect_error("{\"a\":", "[]", ST_EINVAL, "document");
	expect_error("{}", "[", ST_EINVAL, "patch");
	assert_int_equal(st_jsonpatch_apply_text(&out, &len, doc, strlen(doc), patch, strlen(patch),
	                                         10, &err),
	                 ST_ETOOBIG);
	assert_null(out);
}

/* ---- builders --------------------------------------------------------- */

static void test_builders(void **state)
{
	struct json_object *patch = json_object_new_array();
	struct json_object *doc =
	        parse("{\"metadata\":{\"name\":\"p\"},\"spec\":{\"containers\":[]}}");
	struct json_object *want = parse("{\"metadata\":{\"name\":\"p\",\"annotations\":"
	                                 "{\"stasis.io/injected\":\"true\"}},"
	                                 "\"spec\":{\"containers\":[{\"name\":\"c\"}]},"
	                                 "\"copy\":\"p\"}");
	struct st_buf path;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	st_buf_init(&path, 256);
	assert_int_equal(st_jsonpatch_add_op(patch, "add", "/metadata/annotations",
	                                     json_object_new_object()),
	                 0);
	assert_int_equal(st_buf_puts(&path, "/metadata/annotations"), 0);
	assert_int_equal(st_jsonpatch_path_append(&path, "stasis.io/injected"), 0);
	assert_int_equal(st_jsonpatch_add_op(patch, "add", st_buf_cstr(&path),
	                                     json_object_new_string("true")),
	                 0);
	assert_int_equal(
	        st_jsonpatch_add_op(patch, "add", "/spec/containers/-", parse("{\"name\":\"c\"}")),
	        0);
	assert_int_equal(
	        st_jsonpatch_add_op(patch, "test", "/metadata/name", json_object_new_string("p")),
	        0);
	assert_int_equal(st_jsonpatch_add_from_op(patch, "copy", "/metadata/name", "/copy"), 0);
	assert_int_equal(st_jsonpatch_add_op(patch, "add", "/tmp", NULL), 0);
	assert_int_equal(st_jsonpatch_add_op(patch, "remove", "/tmp", NULL), 0);

	/* Refusals take the value all the same (ASan's leak check would tell). */
	assert_int_equal(st_jsonpatch_add_op(patch, "remove", "/x", json_object_new_int(1)),
	                 ST_EINVAL);
	assert_int_equal(st_jsonpatch_add_op(patch, "frob", "/x", json_object_new_int(1)),
	                 ST_EINVAL);
	assert_int_equal(st_jsonpatch_add_op(patch, "add", "x", json_object_new_int(1)), ST_EINVAL);
	assert_int_equal(st_jsonpatch_add_op(patch, "move", "/x", json_object_new_int(1)),
	                 ST_EINVAL);
	assert_int_equal(st_jsonpatch_add_from_op(patch, "add", "/a", "/b"), ST_EINVAL);
	assert_int_equal(st_jsonpatch_add_from_op(patch, "move", "a", "/b"), ST_EINVAL);
	assert_int_equal(st_jsonpatch_add_from_op(patch, "move", "/a", "b"), ST_EINVAL);
	assert_int_equal(json_object_array_length(patch), 7);
	assert_string_equal(
	        st_json_to_string(json_object_array_get_idx(patch, 1), NULL),
	        "{\"op\":\"add\",\"path\":\"/metadata/annotations/stasis.io~1injected\","
	        "\"value\":\"true\"}");

	if (st_jsonpatch_apply(&doc, patch, &err) != 0)
		fail_msg("%s", st_err_text(&err));
	assert_true(json_object_equal(doc, want));
	st_buf_dispose(&path);
	json_object_put(patch);
	json_object_put(doc);
	json_object_put(want);
}

/* ---- diff ------------------------------------------------------------- */

static void expect_diff_round_trip(const char *from_text, const char *to_text, size_t max_ops)
{
	struct json_object *from = parse(from_text);
	struct json_object *to = parse(to_text);
	struct json_object *patch = NULL;
	struct json_object *doc = NULL;
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_jsonpatch_diff(&patch, from, to), 0);
	if (json_object_array_length(patch) > max_ops)
		fail_msg("diff %s -> %s: %s", from_text, to_text, st_json_to_string(patch, NULL));
	if (from != NULL)
		assert_int_equal(json_object_deep_copy(from, &doc, NULL), 0);
	if (st_jsonpatch_apply(&doc, patch, &err) != 0)
		fail_msg("diff %s -> %s: %s", from_text, to_text, st_err_text(&err));
	assert_true(json_object_equal(doc, to));
	json_object_put(from);
	json_object_put(to);
	json_object_put(patch);
	json_object_put(doc);
}

static void test_diff(void **state)
{
	struct json_object *a = parse("{\"a\":[1,2]}");
	struct json_object *patch = NULL;
	char *deep_a = nested(ST_CAP_JSON_DEPTH - 1, "1");
	char *deep_b = nested(ST_CAP_JSON_DEPTH - 1, "2");

	(void)state;
	assert_int_equal(st_jsonpatch_diff(&patch, a, a), 0);
	assert_int_equal(json_object_array_length(patch), 0);
	json_object_put(patch);
	json_object_put(a);

	expect_diff_round_trip("{\"a\":1,\"b\":{\"c\":[1,2,3]}}",
	                       "{\"b\":{\"c\":[1,5]},\"d\":null}", 4);
	expect_diff_round_trip("[1,2]", "[1,2,{\"x\":[]},4]", 2);
	expect_diff_round_trip("{\"a/b\":{\"~\":1}}", "{\"a/b\":{\"~\":2,\"~1\":3}}", 2);
	expect_diff_round_trip("{\"a\":1}", "[1]", 1);
	expect_diff_round_trip("null", "{\"a\":1}", 1);
	expect_diff_round_trip("{\"a\":1}", "null", 1);
	expect_diff_round_trip("{\"a\":1}", "{\"a\":1.0}", 1);
	expect_diff_round_trip("{\"a\":1.0}", "{\"a\":1.0}", 0);
	expect_diff_round_trip("{\"a\":\"1\"}", "{\"a\":1}", 1);
	expect_diff_round_trip("{\"\":{\"\":[null]}}", "{\"\":{\"\":[false]}}", 1);
	expect_diff_round_trip(deep_a, deep_b, 1);
	free(deep_a);
	free(deep_b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conformance_tests),
		cmocka_unit_test(test_conformance_spec),
		cmocka_unit_test(test_pointer_parse),
		cmocka_unit_test(test_pointer_get),
		cmocka_unit_test(test_escape_token),
		cmocka_unit_test(test_escaped_paths),
		cmocka_unit_test(test_array_indices),
		cmocka_unit_test(test_number_equality),
		cmocka_unit_test(test_atomic),
		cmocka_unit_test(test_malformed_ops),
		cmocka_unit_test(test_root_ops),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_growth_limit),
		cmocka_unit_test(test_text_api),
		cmocka_unit_test(test_builders),
		cmocka_unit_test(test_diff),
	};

	return cmocka_run_group_tests_name("jsonpatch", tests, NULL, NULL);
}
