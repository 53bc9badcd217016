/* Unit tests for pkg/store over the file:// backend (a real temporary directory). */
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

#include "pkg/store.h"
#include "pkg/util/buf.h"

struct fixture {
	char dir[64];
	char url[96];
	struct st_store *s;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct st_err err = ST_ERR_INIT;

	if (f == NULL)
		return -1;
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/st-store-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	(void)snprintf(f->url, sizeof(f->url), "file://%s", f->dir);
	if (st_store_open(&f->s, f->url, NULL, &err) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	st_store_free(f->s);
	(void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void test_open_errors(void **state)
{
	struct st_store *s = NULL;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	assert_int_equal(st_store_open(&s, "ftp://x", NULL, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "unknown scheme"));
	st_err_clear(&err);
	assert_int_equal(st_store_open(&s, "file://relative", NULL, &err), ST_EINVAL);
	st_err_clear(&err);
	assert_int_equal(st_store_open(&s, "file:///nonexistent/st-dir", NULL, &err), ST_ENOTFOUND);
	assert_null(s);
}

static void test_put_get_head(void **state)
{
	struct fixture *f = *state;
	struct st_err err = ST_ERR_INIT;
	char *data = NULL;
	size_t len = 0;
	uint64_t size = 0;

	assert_int_equal(st_store_put_mem(f->s, "a/b/c.txt", "hello world", 11, false, &err), 0);
	assert_int_equal(st_store_head(f->s, "a/b/c.txt", &size, &err), 0);
	assert_int_equal(size, 11);
	assert_int_equal(st_store_get_mem(&data, &len, f->s, "a/b/c.txt", 100, &err), 0);
	assert_int_equal(len, 11);
	assert_memory_equal(data, "hello world", 11);
	free(data);
	/* Overwrite replaces; if_absent refuses with 1 and keeps the old object. */
	assert_int_equal(st_store_put_mem(f->s, "a/b/c.txt", "bye", 3, false, &err), 0);
	assert_int_equal(st_store_put_mem(f->s, "a/b/c.txt", "xxxx", 4, true, &err), 1);
	assert_int_equal(st_store_get_mem(&data, &len, f->s, "a/b/c.txt", 100, &err), 0);
	assert_int_equal(len, 3);
	free(data);
	assert_int_equal(st_store_get_mem(&data, &len, f->s, "a/b/c.txt", 2, &err), ST_ETOOBIG);
	assert_null(data);
	st_err_clear(&err);
	assert_int_equal(st_store_head(f->s, "missing", &size, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	assert_int_equal(st_store_get_mem(&data, &len, f->s, "missing", 10, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	assert_int_equal(st_store_put_mem(f->s, "../escape", "x", 1, false, &err), ST_EINVAL);
	st_err_clear(&err);
	assert_int_equal(st_store_put_mem(f->s, "a//b", "x", 1, false, &err), ST_EINVAL);
	st_err_clear(&err);
	assert_int_equal(st_store_delete(f->s, "a/b/c.txt", &err), 0);
	assert_int_equal(st_store_delete(f->s, "a/b/c.txt", &err), 0);
	assert_int_equal(st_store_head(f->s, "a/b/c.txt", &size, &err), ST_ENOTFOUND);
}

static int collect(const void *buf, size_t n, void *payload)
{
	return st_buf_put(payload, buf, n);
}

static void test_ranged_get(void **state)
{
	struct fixture *f = *state;
	struct st_err err = ST_ERR_INIT;
	struct st_buf b = ST_BUF_INIT(1024);

	assert_int_equal(st_store_put_mem(f->s, "r", "0123456789", 10, false, &err), 0);
	assert_int_equal(st_store_get(f->s, "r", 3, 4, collect, &b, &err), 0);
	assert_string_equal(st_buf_cstr(&b), "3456");
	st_buf_clear(&b);
	assert_int_equal(st_store_get(f->s, "r", 8, UINT64_MAX, collect, &b, &err), 0);
	assert_string_equal(st_buf_cstr(&b), "89");
	st_buf_dispose(&b);
}

static long short_reader(void *buf, size_t cap, void *payload)
{
	int *calls = payload;

	if ((*calls)++ > 0 || cap < 2)
		return 0;
	memcpy(buf, "ab", 2);
	return 2;
}

static void test_put_size_mismatch_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	struct st_err err = ST_ERR_INIT;
	uint64_t size;
	int calls = 0;

	assert_int_equal(st_store_put(f->s, "short", 5, short_reader, &calls, false, &err),
	                 ST_EINVAL);
	st_err_clear(&err);
	assert_int_equal(st_store_head(f->s, "short", &size, &err), ST_ENOTFOUND);
}

struct listed {
	char keys[16][64];
	int n;
};

static int on_key(const char *key, uint64_t size, void *payload)
{
	struct listed *l = payload;

	(void)size;
	if (l->n < 16)
		(void)snprintf(l->keys[l->n++], 64, "%s", key);
	return 0;
}

static void test_list_lexical(void **state)
{
	struct fixture *f = *state;
	struct st_err err = ST_ERR_INIT;
	struct listed l = { .n = 0 };
	static const char *const keys[] = { "data/ab/2", "data/ab/1", "data/a-c",
		                            "data/b",    "index/x",   "data.txt" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_int_equal(st_store_put_mem(f->s, keys[i], "x", 1, false, &err), 0);
	assert_int_equal(st_store_list(f->s, "data/", on_key, &l, &err), 0);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.keys[0], "data/a-c");
	assert_string_equal(l.keys[1], "data/ab/1");
	assert_string_equal(l.keys[2], "data/ab/2");
	assert_string_equal(l.keys[3], "data/b");
	l.n = 0;
	assert_int_equal(st_store_list(f->s, "data/ab", on_key, &l, &err), 0);
	assert_int_equal(l.n, 2);
	l.n = 0;
	assert_int_equal(st_store_list(f->s, "", on_key, &l, &err), 0);
	assert_int_equal(l.n, 6);
	assert_string_equal(l.keys[0], "data.txt");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test_setup_teardown(test_put_get_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ranged_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_size_mismatch_leaves_nothing, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_list_lexical, setup, teardown),
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
