/* Unit tests for pkg/util: err, buf, json, jsonw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/err.h"
#include "pkg/util/json.h"
#include "pkg/util/jsonw.h"
#include "pkg/util/mem.h"

static void test_err_first_wins(void **state)
{
	struct st_err err = ST_ERR_INIT;

	(void)state;
	assert_int_equal(st_err_set(&err, ST_EINVAL, "bad %s", "thing"), ST_EINVAL);
	assert_int_equal(st_err_set(&err, ST_EIO, "later"), ST_EIO);
	assert_int_equal(err.code, ST_EINVAL);
	st_err_prefix(&err, "config %s", "x.yaml");
	assert_string_equal(st_err_text(&err), "config x.yaml: bad thing");
	assert_int_equal(st_err_set(NULL, ST_EIO, "ignored"), ST_EIO);
	assert_string_equal(st_strerror(ST_ETOOBIG), "too big");
	assert_string_equal(st_strerror(-99), "unknown error");
}

static void test_buf_cap(void **state)
{
	struct st_buf b;

	(void)state;
	st_buf_init(&b, 10);
	assert_string_equal(st_buf_cstr(&b), "");
	assert_int_equal(st_buf_puts(&b, "hello"), 0);
	assert_int_equal(st_buf_printf(&b, "%d", 1234), 0);
	assert_string_equal(st_buf_cstr(&b), "hello1234");
	assert_int_equal(st_buf_puts(&b, "xy"), ST_ETOOBIG);
	assert_string_equal(st_buf_cstr(&b), "hello1234");
	assert_int_equal(st_buf_putc(&b, '!'), 0);
	assert_int_equal(b.len, 10);
	assert_int_equal(st_buf_putc(&b, '!'), ST_ETOOBIG);
	st_buf_dispose(&b);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, true);
	assert_int_equal(fclose(f), 0);
}

static void test_read_secret_file(void **state)
{
	char path[] = "/tmp/stasis-secret-XXXXXX";
	struct st_err err = ST_ERR_INIT;
	char *s = NULL;
	size_t n = 99;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(close(fd), 0);
	/* Trailing line ends go, the rest stays as it is. */
	write_file(path, "s3cr\net\r\n\n");
	assert_int_equal(st_read_secret_file(&s, &n, path, 16, &err), 0);
	assert_int_equal(n, 7);
	assert_string_equal(s, "s3cr\net");
	st_freezero(s, n + 1);
	/* Exactly max bytes fit; one more does not. */
	write_file(path, "0123456789abcdef");
	assert_int_equal(st_read_secret_file(&s, &n, path, 16, &err), 0);
	assert_int_equal(n, 16);
	st_freezero(s, n + 1);
	write_file(path, "0123456789abcdefX");
	assert_int_equal(st_read_secret_file(&s, &n, path, 16, &err), ST_ETOOBIG);
	assert_null(s);
	assert_non_null(strstr(err.msg, "larger than 16 bytes"));
	/* An empty file is read; judging it is the caller's business. */
	write_file(path, "\n");
	assert_int_equal(st_read_secret_file(&s, &n, path, 16, &err), 0);
	assert_int_equal(n, 0);
	assert_string_equal(s, "");
	st_freezero(s, n + 1);
	assert_int_equal(unlink(path), 0);
	st_err_clear(&err);
	assert_int_equal(st_read_secret_file(&s, &n, path, 16, &err), ST_ENOTFOUND);
	assert_null(s);
	assert_non_null(strstr(err.msg, path));
}

static void test_json_parse_errors(void **state)
{
	struct json_object *o = NULL;
	struct st_err err = ST_ERR_INIT;
	char deep[400];

	(void)state;
	assert_int_equal(st_json_parse(&o, "{\"a\":1", 6, 100, "review", &err), ST_EINVAL);
	assert_null(o);
	assert_non_null(strstr(err.msg, "review"));
	st_err_clear(&err);
	assert_int_equal(st_json_parse(&o, "{} x", 4, 100, "review", &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "byte 3"));
	st_err_clear(&err);
	assert_int_equal(st_json_parse(&o, "{}", 2, 1, "review", &err), ST_ETOOBIG);
	st_err_clear(&err);
	memset(deep, '[', sizeof(deep));
	assert_int_equal(st_json_parse(&o, deep, sizeof(deep), 1000, "deep", &err), ST_EINVAL);
	st_err_clear(&err);
	/* A NUL after the document is data, not whitespace. */
	assert_int_equal(st_json_parse(&o, "{} \0", 4, 100, "nul", &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "byte 3"));
	st_err_clear(&err);
	assert_int_equal(st_json_parse(&o, "{\"p\":\"/a/b\"} \n", 14, 100, "ok", &err), 0);
	assert_string_equal(st_json_to_string(o, NULL), "{\"p\":\"/a/b\"}");
	assert_string_equal(st_json_get_str(o, "p"), "/a/b");
	assert_null(st_json_get_obj(o, "p"));
	json_object_put(o);
}

/* What the writer escapes reads back as the same bytes; '/' is left alone. */
static void test_jsonw_round_trip(void **state)
{
	static const char odd[] = "q\" b\\ s/ \b\f\n\r\t \x01\x1f caf\xc3\xa9";
	struct st_buf b = ST_BUF_INIT(4096);
	struct st_err err = ST_ERR_INIT;
	struct json_object *o = NULL;
	struct json_object *a;
	struct st_jw w;

	(void)state;
	st_jw_init(&w, &b);
	st_jw_obj(&w);
	st_jw_kstr(&w, odd, odd);
	st_jw_key(&w, "n");
	st_jw_int(&w, -42);
	st_jw_key(&w, "a");
	st_jw_arr(&w);
	st_jw_bool(&w, true);
	st_jw_bool(&w, false);
	st_jw_obj(&w);
	st_jw_end(&w);
	st_jw_raw(&w, "null", 4);
	st_jw_strn(&w, "x\0y", 3);
	st_jw_end(&w);
	st_jw_end(&w);
	assert_int_equal(st_jw_finish(&w), 0);
	assert_non_null(strstr(st_buf_cstr(&b), "s/ \\b\\f\\n\\r\\t \\u0001\\u001f"));
	assert_int_equal(st_json_parse(&o, b.ptr, b.len, b.len, "jw", &err), 0);
	assert_string_equal(st_json_get_str(o, odd), odd);
	assert_int_equal(json_object_get_int(st_json_get(o, "n")), -42);
	a = st_json_get_arr(o, "a");
	assert_int_equal(json_object_array_length(a), 5);
	assert_true(json_object_get_boolean(json_object_array_get_idx(a, 0)));
	assert_false(json_object_get_boolean(json_object_array_get_idx(a, 1)));
	assert_int_equal(json_object_get_string_len(json_object_array_get_idx(a, 4)), 3);
	assert_memory_equal(json_object_get_string(json_object_array_get_idx(a, 4)), "x\0y", 3);
	json_object_put(o);
	st_buf_dispose(&b);
}

static void check_base64(const char *in, size_t n, const char *want)
{
	struct st_buf b = ST_BUF_INIT(4096);
	struct st_jw w;

	st_jw_init(&w, &b);
	st_jw_base64(&w, in, n);
	assert_int_equal(st_jw_finish(&w), 0);
	assert_int_equal(b.len, strlen(want) + 2);
	assert_memory_equal(b.ptr + 1, want, strlen(want));
	st_buf_dispose(&b);
}

/* RFC 4648 section 10, and a long input across the writer's chunks. */
static void test_jsonw_base64(void **state)
{
	char zeros[300] = { 0 };
	char want[401];

	(void)state;
	check_base64("", 0, "");
	check_base64("f", 1, "Zg==");
	check_base64("fo", 2, "Zm8=");
	check_base64("foo", 3, "Zm9v");
	check_base64("foob", 4, "Zm9vYg==");
	check_base64("fooba", 5, "Zm9vYmE=");
	check_base64("foobar", 6, "Zm9vYmFy");
	memset(want, 'A', 400);
	want[400] = '\0';
	check_base64(zeros, sizeof(zeros), want);
	want[398] = '=';
	want[399] = '=';
	check_base64(zeros, 298, want);
}

static int jw_error(void (*build)(struct st_jw *), size_t cap)
{
	struct st_buf b = ST_BUF_INIT(cap);
	struct st_jw w;
	int rc;

	st_jw_init(&w, &b);
	build(&w);
	rc = st_jw_finish(&w);
	st_buf_dispose(&b);
	return rc;
}

static void value_for_key(struct st_jw *w)
{
	st_jw_obj(w);
	st_jw_str(w, "no key");
	st_jw_end(w);
}

static void key_in_array(struct st_jw *w)
{
	st_jw_arr(w);
	st_jw_key(w, "k");
	st_jw_end(w);
}

static void dangling_key(struct st_jw *w)
{
	st_jw_obj(w);
	st_jw_key(w, "k");
	st_jw_end(w);
}

static void left_open(struct st_jw *w)
{
	st_jw_arr(w);
	st_jw_obj(w);
	st_jw_end(w);
}

static void too_deep(struct st_jw *w)
{
	for (int i = 0; i <= ST_JW_DEPTH; i++)
		st_jw_arr(w);
	for (int i = 0; i <= ST_JW_DEPTH; i++)
		st_jw_end(w);
}

static void two_at_top(struct st_jw *w)
{
	st_jw_int(w, 1);
	st_jw_int(w, 2);
}

static void long_string(struct st_jw *w)
{
	st_jw_arr(w);
	st_jw_str(w, "this string does not fit in sixteen bytes");
	st_jw_end(w);
}

/* The first error sticks, and finish reports it. */
static void test_jsonw_errors(void **state)
{
	(void)state;
	assert_int_equal(jw_error(value_for_key, 100), ST_EINVAL);
	assert_int_equal(jw_error(key_in_array, 100), ST_EINVAL);
	assert_int_equal(jw_error(dangling_key, 100), ST_EINVAL);
	assert_int_equal(jw_error(left_open, 100), ST_EINVAL);
	assert_int_equal(jw_error(too_deep, 100), ST_EINVAL);
	assert_int_equal(jw_error(two_at_top, 100), ST_EINVAL);
	assert_int_equal(jw_error(long_string, 16), ST_ETOOBIG);
	assert_int_equal(jw_error(long_string, 100), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err_first_wins),   cmocka_unit_test(test_buf_cap),
		cmocka_unit_test(test_read_secret_file), cmocka_unit_test(test_json_parse_errors),
		cmocka_unit_test(test_jsonw_round_trip), cmocka_unit_test(test_jsonw_base64),
		cmocka_unit_test(test_jsonw_errors),
	};
	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
