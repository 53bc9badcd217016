/*
 * The log of a backup or restore run: logfmt lines with quoting, the
 * warning and error counts, the summary of lines past the cap, and a gzipped
 * upload to a file:// store read back.
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

#include "pkg/runlog.h"
#include "pkg/store.h"

/* The line after its time="..." field. */
static const char *after_time(const char *line)
{
	const char *p = strstr(line, "\" level=");

	assert_non_null(p);
	assert_int_equal(strncmp(line, "time=\"", 6), 0);
	return p + 2;
}

static void test_lines(void **state)
{
	struct st_runlog l;
	const char *p;

	(void)state;
	st_runlog_init(&l, "restore", 4096);
	l.ns = "velero";
	l.name = "r1";
	st_runlog_add(&l, "info", "read %d objects", 3);
	st_runlog_note(&l, false, "say \"hi\"\\now\nnext");
	st_runlog_note(&l, true, "broken");
	assert_int_equal(l.warnings, 1);
	assert_int_equal(l.errors, 1);
	assert_int_equal(l.dropped, 0);
	p = after_time(st_buf_cstr(&l.buf));
	assert_int_equal(strncmp(p, "level=info msg=\"read 3 objects\" restore=velero/r1\n",
	                         strlen("level=info msg=\"read 3 objects\" restore=velero/r1\n")),
	                 0);
	p = after_time(strchr(p, '\n') + 1);
	assert_int_equal(
	        strncmp(p, "level=warning msg=\"say \\\"hi\\\"\\\\now next\" restore=velero/r1\n",
	                strlen("level=warning msg=\"say \\\"hi\\\"\\\\now next\" "
	                       "restore=velero/r1\n")),
	        0);
	p = after_time(strchr(p, '\n') + 1);
	assert_string_equal(p, "level=error msg=\"broken\" restore=velero/r1\n");
	st_runlog_dispose(&l);
}

static void test_dropped(void **state)
{
	struct st_runlog l;
	size_t kept;

	(void)state;
	st_runlog_init(&l, "backup", 200);
	l.ns = "ns";
	l.name = "b";
	st_runlog_add(&l, "info", "first");
	kept = l.buf.len;
	st_runlog_add(&l, "info", "%0150d", 0);
	st_runlog_add(&l, "info", "%0150d", 1);
	assert_int_equal(l.dropped, 2);
	assert_int_equal(l.buf.len, kept);
	st_runlog_finish(&l);
	assert_non_null(strstr(st_buf_cstr(&l.buf), "\n(2 further log lines dropped)\n"));
	st_runlog_dispose(&l);
}

static void test_put_gz(void **state)
{
	char dir[] = "/tmp/runlog_test.XXXXXX";
	char url[64], cmd[128];
	static const char text[] = "time=\"x\" level=info msg=\"m\" backup=ns/b\n";
	struct st_store *s = NULL;
	struct st_err err = ST_ERR_INIT;
	unsigned char out[256];
	char *gz = NULL;
	size_t gzlen = 0;
	z_stream z;

	(void)state;
	assert_non_null(mkdtemp(dir));
	(void)snprintf(url, sizeof(url), "file://%s", dir);
	assert_int_equal(st_store_open(&s, url, NULL, &err), 0);
	assert_int_equal(st_runlog_put_gz(s, "backups/b/b-logs.gz", text, strlen(text), &err), 0);
	assert_int_equal(st_store_get_mem(&gz, &gzlen, s, "backups/b/b-logs.gz", 4096, &err), 0);
	memset(&z, 0, sizeof(z));
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (unsigned char *)gz;
	z.avail_in = (uInt)gzlen;
	z.next_out = out;
	z.avail_out = sizeof(out);
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	assert_int_equal(sizeof(out) - z.avail_out, strlen(text));
	assert_memory_equal(out, text, strlen(text));
	(void)inflateEnd(&z);
	free(gz);
	st_store_free(s);
	(void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_dropped),
		cmocka_unit_test(test_put_gz),
	};

	return cmocka_run_group_tests_name("runlog", tests, NULL, NULL);
}
