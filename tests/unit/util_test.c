/* Unit tests for pkg/util: err, buf, json. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err_first_wins),
		cmocka_unit_test(test_buf_cap),
		cmocka_unit_test(test_read_secret_file),
		cmocka_unit_test(test_json_parse_errors),
	};
	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
