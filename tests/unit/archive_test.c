/*
 * Unit tests for pkg/archive. GNU tar is the independent oracle: it must
 * list and extract what the writer produces byte for byte, and the reader
 * must see in GNU tar's own archives (gnu and posix formats, long names)
 * exactly the files on disk. Hostile inputs are built by hand here (raw
 * headers gzipped with zlib directly) so that they do not depend on the
 * writer's refusal to produce them.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "pkg/archive.h"
#include "pkg/util/buf.h"

#define OUT_CAP (256u * 1024u * 1024u)

struct tfile {
	char name[4200];
	size_t len;
	uint8_t *data;
	bool dir;
	unsigned mode;
	long long mtime;
};

static uint64_t rng = 88172645463325252ULL;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

/* A name of exactly len bytes under dir, made of path segments. */
static void long_name(char *out, size_t len, const char *prefix)
{
	size_t o = (size_t)snprintf(out, len + 1, "%s", prefix);

	while (o < len) {
		out[o] = (o % 40 == 39 && o + 1 < len) ? '/' : (char)('a' + o % 26);
		o++;
	}
	out[len] = '\0';
}

/* A set of entries: dirs, empty files, block-edge sizes, random data, long names. */
static size_t make_files(struct tfile *f, size_t cap)
{
	static const size_t sizes[] = { 0, 1, 511, 512, 513, 1024, 10000, 200000 };
	size_t n = 0;

	snprintf(f[n].name, sizeof(f[n].name), "metadata");
	f[n].dir = true;
	f[n].mode = 0755;
	n++;
	for (size_t i = 0; i < 200 && n < cap; i++, n++) {
		struct tfile *t = &f[n];

		if (i % 50 == 7)
			long_name(t->name, 100 + i, "resources/");
		else if (i % 50 == 8)
			long_name(t->name, 150 + 19 * i, "resources/");
		else
			snprintf(t->name, sizeof(t->name),
			         "resources/pods/namespaces/ns%zu/pod-%zu.json", i % 7, i);
		t->len = i < 8 ? sizes[i] : rnd() % 3000;
		t->data = malloc(t->len + 1);
		for (size_t k = 0; k < t->len; k++)
			t->data[k] = (uint8_t)(i % 3 == 0 ? 'x' : rnd());
		t->mode = i % 2 ? 0600 : 0644;
		t->mtime = 1700000000 + (long long)i;
	}
	long_name(f[n].name, 4000, "deep/");
	f[n].dir = true;
	f[n].mode = 0700;
	f[n].mtime = 1600000000;
	n++;
	return n;
}

static void free_files(struct tfile *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(f[i].data);
}

struct slice {
	const uint8_t *p;
	size_t left;
};

/* A read callback that hands out its data in odd-sized pieces. */
static long slice_read(void *buf, size_t cap, void *payload)
{
	struct slice *s = payload;
	size_t n = cap < 777 ? cap : 777;

	if (n > s->left)
		n = s->left;
	memcpy(buf, s->p, n);
	s->p += n;
	s->left -= n;
	return (long)n;
}

static void write_archive(struct st_buf *out, const struct tfile *f, size_t n)
{
	struct st_archive_writer *w = NULL;
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_archive_writer_new(&w, st_archive_buf_write, out), 0);
	for (size_t i = 0; i < n; i++) {
		struct st_archive_meta m = ST_ARCHIVE_META_INIT;
		int rc;

		m.mode = f[i].mode;
		m.mtime = f[i].mtime;
		if (f[i].dir) {
			rc = st_archive_writer_add_dir(w, f[i].name, &m, &err);
		} else if (i % 5 == 0) {
			struct slice s = { f[i].data, f[i].len };

			rc = st_archive_writer_add_stream(w, f[i].name, &m, f[i].len, slice_read,
			                                  &s, &err);
		} else {
			rc = st_archive_writer_add_file(w, f[i].name, &m, f[i].data, f[i].len,
			                                &err);
		}
		if (rc != 0)
			fail_msg("add %s: %s", f[i].name, st_err_text(&err));
	}
	assert_int_equal(st_archive_writer_finish(w, &err), 0);
	assert_int_equal(st_archive_writer_gz_bytes(w), out->len);
	st_archive_writer_free(w);
}

/* Reads every entry of gz and checks them against f in order. */
static void check_read(const struct st_buf *gz, const struct tfile *f, size_t n)
{
	struct st_archive_reader *r = NULL;
	struct slice s = { (const uint8_t *)gz->ptr, gz->len };
	struct st_err err = ST_ERR_INIT;
	const struct st_archive_entry *e = NULL;
	uint8_t *buf = malloc(300000);

	assert_int_equal(st_archive_reader_new(&r, NULL, slice_read, &s), 0);
	for (size_t i = 0; i < n; i++) {
		size_t have = 0, got = 0;

		if (st_archive_reader_next(&e, r, &err) != 0)
			fail_msg("entry %zu: %s", i, st_err_text(&err));
		assert_non_null(e);
		assert_string_equal(e->name, f[i].name);
		assert_int_equal(e->type, f[i].dir ? ST_ARCHIVE_DIR : ST_ARCHIVE_FILE);
		assert_int_equal(e->mode, f[i].mode);
		assert_int_equal(e->mtime, f[i].mtime);
		assert_int_equal(e->size, f[i].len);
		/* Every other file is only partly read: next() must skip the rest. */
		do {
			assert_int_equal(st_archive_reader_read(&got, r, buf + have, 1000, &err),
			                 0);
			have += got;
		} while (got > 0 && !(i % 2 == 1 && have > 1500));
		if (have > 0)
			assert_memory_equal(buf, f[i].data, have);
	}
	assert_int_equal(st_archive_reader_next(&e, r, &err), 0);
	assert_null(e);
	/* The end is sticky. */
	assert_int_equal(st_archive_reader_next(&e, r, &err), 0);
	assert_null(e);
	st_archive_reader_free(r);
	free(buf);
}

static void test_round_trip(void **state)
{
	static struct tfile f[210];
	size_t n = make_files(f, 205);
	struct st_buf a = ST_BUF_INIT(OUT_CAP);
	struct st_buf b = ST_BUF_INIT(OUT_CAP);

	(void)state;
	write_archive(&a, f, n);
	check_read(&a, f, n);
	/* The same calls give the same bytes. */
	write_archive(&b, f, n);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.ptr, b.ptr, a.len);
	st_buf_dispose(&a);
	st_buf_dispose(&b);
	free_files(f, n);
}

static void test_empty_archive(void **state)
{
	struct st_buf a = ST_BUF_INIT(OUT_CAP);
	struct st_archive_writer *w = NULL;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	assert_int_equal(st_archive_writer_new(&w, st_archive_buf_write, &a), 0);
	assert_int_equal(st_archive_writer_finish(w, &err), 0);
	assert_int_equal(st_archive_writer_tar_bytes(w), 1024);
	/* Finished is final. */
	assert_int_equal(st_archive_writer_finish(w, &err), ST_EINVAL);
	assert_int_equal(st_archive_writer_add_file(w, "x", NULL, "", 0, NULL), ST_EINVAL);
	st_archive_writer_free(w);
	check_read(&a, NULL, 0);
	st_buf_dispose(&a);
}

/* ---- GNU tar as the oracle --------------------------------------------------------------- */

/* Skips the calling test, saying why, when GNU tar is not there to act as the oracle. */
static void require_tar(const char *role)
{
	if (system("tar --version 2>/dev/null | grep -q 'GNU tar'") != 0) {
		printf("skip: GNU tar is not installed; it is %s\n", role);
		skip();
	}
}

static void run(const char *fmt, ...) ST_PRINTF(1, 2);

static void run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

static uint8_t *slurp(const char *path, size_t *len_out)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *p = NULL;
	long n;

	if (fp == NULL)
		return NULL;
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n >= 0);
	assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
	p = malloc((size_t)n + 1);
	assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
	(void)fclose(fp);
	*len_out = (size_t)n;
	return p;
}

static void spit(const char *path, const void *p, size_t n)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(p, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

static void test_gnu_tar_reads_ours(void **state)
{
	static struct tfile f[210];
	char dir[] = "/tmp/st-archive-XXXXXX";
	char path[8400];
	struct st_buf a = ST_BUF_INIT(OUT_CAP);
	size_t n, list_len = 0;
	uint8_t *list = NULL;
	char *line;
	size_t i = 0;

	(void)state;
	require_tar("the writer's oracle");
	n = make_files(f, 205);
	write_archive(&a, f, n);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.tar.gz", dir);
	spit(path, a.ptr, a.len);
	/* Listing: every name, in order, directories with their slash. */
	run("tar -tzf %s/a.tar.gz > %s/list", dir, dir);
	snprintf(path, sizeof(path), "%s/list", dir);
	list = slurp(path, &list_len);
	assert_non_null(list);
	list[list_len] = '\0';
	for (line = strtok((char *)list, "\n"); line != NULL; line = strtok(NULL, "\n"), i++) {
		char want[4300];

		assert_true(i < n);
		assert_true(snprintf(want, sizeof(want), "%s%s", f[i].name, f[i].dir ? "/" : "") <
		            (int)sizeof(want));
		assert_string_equal(line, want);
	}
	assert_int_equal(i, n);
	/* Extraction: contents byte for byte, modes and mtimes. */
	run("mkdir %s/x && tar -xzpf %s/a.tar.gz -C %s/x", dir, dir, dir);
	for (i = 0; i < n; i++) {
		struct stat st;

		assert_true(snprintf(path, sizeof(path), "%s/x/%s", dir, f[i].name) <
		            (int)sizeof(path));
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 07777, f[i].mode);
		if (!f[i].dir) {
			size_t len = 0;
			uint8_t *p = slurp(path, &len);

			assert_int_equal(st.st_mtime, f[i].mtime);
			assert_int_equal(len, f[i].len);
			assert_memory_equal(p, f[i].data, len);
			free(p);
		}
	}
	run("rm -rf %s", dir);
	free(list);
	st_buf_dispose(&a);
	free_files(f, n);
}

static void test_gnu_tar_pax_fields(void **state)
{
	char dir[] = "/tmp/st-archive-XXXXXX";
	char path[256];
	struct st_buf a = ST_BUF_INIT(OUT_CAP);
	struct st_archive_writer *w = NULL;
	struct st_archive_meta m = ST_ARCHIVE_META_INIT;
	size_t len = 0;
	uint8_t *out = NULL;

	(void)state;
	require_tar("the writer's oracle");
	/* Owner ids and a time beyond the octal fields go through pax records. */
	m.uid = 123456789;
	m.gid = 987654321;
	m.mtime = 99999999999LL;
	m.uname = "backup";
	assert_int_equal(st_archive_writer_new(&w, st_archive_buf_write, &a), 0);
	assert_int_equal(st_archive_writer_add_file(w, "big-ids", &m, "hi\n", 3, NULL), 0);
	m.mtime = -86400;
	assert_int_equal(st_archive_writer_add_file(w, "before-1970", &m, "", 0, NULL), 0);
	assert_int_equal(st_archive_writer_finish(w, NULL), 0);
	st_archive_writer_free(w);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.tar.gz", dir);
	spit(path, a.ptr, a.len);
	run("tar --numeric-owner --full-time --utc -tvzf %s/a.tar.gz > %s/list", dir, dir);
	snprintf(path, sizeof(path), "%s/list", dir);
	out = slurp(path, &len);
	out[len] = '\0';
	assert_non_null(strstr((char *)out, "123456789/987654321"));
	assert_non_null(strstr((char *)out, "5138-11-16 09:46:39 big-ids"));
	assert_non_null(strstr((char *)out, "1969-12-31 00:00:00 before-1970"));
	free(out);
	run("rm -rf %s", dir);
	st_buf_dispose(&a);
}

struct walk {
	const char *root;
	size_t files;
	size_t dirs;
	size_t bytes;
};

/* Reads a GNU tar archive of root and checks every entry against the file on disk. */
static void check_against_disk(const char *tgz, struct walk *wk)
{
	size_t gzlen = 0;
	uint8_t *gz = slurp(tgz, &gzlen);
	struct st_archive_mem mem = { gz, gzlen, 0 };
	struct st_archive_reader *r = NULL;
	const struct st_archive_entry *e = NULL;
	struct st_err err = ST_ERR_INIT;
	uint8_t buf[4096];

	assert_non_null(gz);
	assert_int_equal(st_archive_reader_new(&r, NULL, st_archive_mem_read, &mem), 0);
	for (;;) {
		char path[8400];
		size_t len = 0, have = 0, got = 0;
		uint8_t *disk;
		struct stat st;

		if (st_archive_reader_next(&e, r, &err) != 0)
			fail_msg("%s: %s", tgz, st_err_text(&err));
		if (e == NULL)
			break;
		assert_true(snprintf(path, sizeof(path), "%s/%s", wk->root, e->name) <
		            (int)sizeof(path));
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(e->mode, st.st_mode & 07777);
		assert_int_equal(e->mtime, st.st_mtime);
		if (e->type == ST_ARCHIVE_DIR) {
			assert_true(S_ISDIR(st.st_mode));
			wk->dirs++;
			continue;
		}
		assert_int_equal(e->type, ST_ARCHIVE_FILE);
		disk = slurp(path, &len);
		assert_int_equal(e->size, len);
		do {
			assert_int_equal(st_archive_reader_read(&got, r, buf, sizeof(buf), &err),
			                 0);
			assert_true(have + got <= len);
			assert_memory_equal(buf, disk + have, got);
			have += got;
		} while (got > 0);
		assert_int_equal(have, len);
		wk->files++;
		wk->bytes += len;
		free(disk);
	}
	st_archive_reader_free(r);
	free(gz);
}

static void test_we_read_gnu_tar(void **state)
{
	static const char *const formats[] = { "gnu", "posix", "ustar" };
	char dir[] = "/tmp/st-archive-XXXXXX";
	char path[8400];
	char ddir[61];
	char fname[95];

	(void)state;
	require_tar("the source of foreign archives");
	assert_non_null(mkdtemp(dir));
	run("mkdir -p %s/t/a/b %s/t/empty-dir", dir, dir);
	for (int i = 0; i < 30; i++) {
		uint8_t data[5000];
		size_t len = (size_t)(i * 331 % 5000);

		for (size_t k = 0; k < len; k++)
			data[k] = (uint8_t)rnd();
		snprintf(path, sizeof(path), "%s/t/a/%s%d.bin", dir, i % 2 ? "b/" : "", i);
		spit(path, data, len);
	}
	/* A path past 100 bytes: GNU long name, pax path, or ustar prefix + name. */
	memset(ddir, 'd', 60);
	ddir[60] = '\0';
	memset(fname, 'f', 90);
	memcpy(fname + 90, ".txt", 5);
	run("mkdir -p %s/t/%s", dir, ddir);
	snprintf(path, sizeof(path), "%s/t/%s/%s", dir, ddir, fname);
	spit(path, "long\n", 5);
	run("chmod 0600 %s/t/a/0.bin && touch -d @1234567890 %s/t/a/2.bin", dir, dir);
	for (size_t k = 0; k < sizeof(formats) / sizeof(formats[0]); k++) {
		struct walk wk = { NULL, 0, 0, 0 };
		char tgz[300];

		snprintf(path, sizeof(path), "%s/t", dir);
		wk.root = path;
		snprintf(tgz, sizeof(tgz), "%s/%s.tgz", dir, formats[k]);
		if (k == 2) {
			/* ustar splits the long path into its prefix and name fields. */
			run("cd %s/t && tar --format=ustar -czf %s a empty-dir %s", dir, tgz, ddir);
		} else {
			run("tar --format=%s -czf %s -C %s/t .", formats[k], tgz, dir);
		}
		check_against_disk(tgz, &wk);
		assert_int_equal(wk.files, 31);
		assert_int_equal(wk.dirs, k == 2 ? 4 : 5);
	}
	run("rm -rf %s", dir);
}

/* ---- hostile input ---------------------------------------------------------------------- */

static void fix_checksum(uint8_t *h)
{
	unsigned sum = 0;

	memset(h + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

/* A raw ustar header built without the module. */
static void raw_header(uint8_t *h, const char *name, char type, size_t size)
{
	memset(h, 0, 512);
	memcpy(h, name, strnlen(name, 100));
	snprintf((char *)h + 100, 8, "%07o", 0644);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	snprintf((char *)h + 124, 12, "%011zo", size);
	snprintf((char *)h + 136, 12, "%011o", 0);
	h[156] = (uint8_t)type;
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	fix_checksum(h);
}

struct raw {
	uint8_t p[16384];
	size_t len;
};

static void raw_entry(struct raw *t, const char *name, char type, const void *data, size_t n)
{
	raw_header(t->p + t->len, name, type, n);
	t->len += 512;
	memcpy(t->p + t->len, data, n);
	t->len += (n + 511) / 512 * 512;
}

/* gzip of p[0..n) by zlib directly. */
static uint8_t *gzip(const void *p, size_t n, size_t *len_out)
{
	z_stream z;
	size_t cap = compressBound((uLong)n) + 64;
	uint8_t *out = malloc(cap);

	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (Bytef *)(uintptr_t)p;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	*len_out = cap - z.avail_out;
	(void)deflateEnd(&z);
	return out;
}

/* Reads a whole archive; returns the first error (0 if it read to the end) and its text. */
static int read_all(const void *gz, size_t len, const struct st_archive_limits *lim, char *msg)
{
	struct st_archive_mem mem = { gz, len, 0 };
	struct st_archive_reader *r = NULL;
	const struct st_archive_entry *e = NULL;
	struct st_err err = ST_ERR_INIT;
	uint8_t buf[4096];
	int rc;

	assert_int_equal(st_archive_reader_new(&r, lim, st_archive_mem_read, &mem), 0);
	do {
		size_t got = 0;

		rc = st_archive_reader_next(&e, r, &err);
		while (rc == 0 && e != NULL &&
		       (rc = st_archive_reader_read(&got, r, buf, sizeof(buf), &err)) == 0 &&
		       got > 0)
			;
	} while (rc == 0 && e != NULL);
	snprintf(msg, ST_ERR_MSG_SIZE, "%s", err.msg);
	/* A failed reader stays failed. */
	if (rc != 0)
		assert_int_equal(st_archive_reader_next(&e, r, NULL), rc);
	st_archive_reader_free(r);
	return rc;
}

static int read_raw(const struct raw *t, const struct st_archive_limits *lim, char *msg)
{
	size_t len = 0;
	uint8_t *gz = gzip(t->p, t->len + 1024, &len);
	int rc = read_all(gz, len, lim, msg);

	free(gz);
	return rc;
}

static void expect_refused(const char *name, char type, const char *needle)
{
	static struct raw t;
	char msg[ST_ERR_MSG_SIZE];

	memset(&t, 0, sizeof(t));
	raw_entry(&t, "ok.txt", '0', "fine", 4);
	raw_entry(&t, name, type, "evil", type == '0' ? 4 : 0);
	assert_int_equal(read_raw(&t, NULL, msg), ST_EPROTO);
	if (strstr(msg, needle) == NULL || strstr(msg, "offset 1024") == NULL)
		fail_msg("%s: message \"%s\" lacks \"%s\" or the offset", name, msg, needle);
}

static void test_unsafe_names(void **state)
{
	(void)state;
	expect_refused("../etc/passwd", '0', "'..' component");
	expect_refused("a/../../b", '0', "'..' component");
	expect_refused("a/..", '5', "'..' component");
	expect_refused("/etc/passwd", '0', "absolute name");
	expect_refused("link", '2', "links and special files are refused");
	expect_refused("hard", '1', "links and special files are refused");
	expect_refused("fifo", '6', "links and special files are refused");
	expect_refused("sparse", 'S', "unsupported type 'S'");
}

static void test_unsafe_extended_names(void **state)
{
	static struct raw t;
	static const char nul_path[] = "16 path=a\0/../x\n";
	char msg[ST_ERR_MSG_SIZE];

	(void)state;
	/* A pax path and a GNU long name can smuggle what the 100-byte field cannot. */
	memset(&t, 0, sizeof(t));
	raw_entry(&t, "PaxHeader", 'x', "21 path=../../escape\n", 21);
	raw_entry(&t, "innocent", '0', "x", 1);
	assert_int_equal(read_raw(&t, NULL, msg), ST_EPROTO);
	/* The entry's offset is where its first (extended) header starts. */
	assert_non_null(strstr(msg, "unsafe entry at offset 0: name has a '..' component"));
	memset(&t, 0, sizeof(t));
	raw_entry(&t, "././@LongLink", 'L', "/abs/path", 10);
	raw_entry(&t, "innocent", '0', "x", 1);
	assert_int_equal(read_raw(&t, NULL, msg), ST_EPROTO);
	assert_non_null(strstr(msg, "absolute name"));
	memset(&t, 0, sizeof(t));
	raw_entry(&t, "PaxHeader", 'x', nul_path, sizeof(nul_path) - 1);
	raw_entry(&t, "innocent", '0', "x", 1);
	assert_int_equal(read_raw(&t, NULL, msg), ST_EPROTO);
	assert_non_null(strstr(msg, "corrupt pax header at offset 0"));
	/* An extended header with nothing after it. */
	memset(&t, 0, sizeof(t));
	raw_entry(&t, "PaxHeader", 'x', "12 path=abc\n", 12);
	assert_int_equal(read_raw(&t, NULL, msg), ST_EPROTO);
	/* pax size overrides the header's; the content read follows it. */
	memset(&t, 0, sizeof(t));
	raw_entry(&t, "PaxHeader", 'x', "10 size=5\n", 10);
	raw_header(t.p + t.len, "five", '0', 0);
	t.len += 512;
	memcpy(t.p + t.len, "12345", 5);
	t.len += 512;
	assert_int_equal(read_raw(&t, NULL, msg), 0);
}

static void test_multi_member_and_links(void **state)
{
	static struct raw t;
	struct st_archive_limits lim = ST_ARCHIVE_LIMITS_INIT;
	struct st_archive_reader *r = NULL;
	const struct st_archive_entry *e = NULL;
	size_t l1 = 0, l2 = 0;
	uint8_t *g1, *g2, *cat;
	struct st_archive_mem mem;
	char got[8];
	size_t n = 0;

	(void)state;
	/* Two gzip members (as `cat a.gz b.gz` or parallel compressors make) read as one stream. */
	memset(&t, 0, sizeof(t));
	raw_entry(&t, "first", '0', "one", 3);
	raw_entry(&t, "link", '2', "", 0);
	memcpy(t.p + 1024 + 157, "first", 5);
	fix_checksum(t.p + 1024);
	raw_entry(&t, "second", '0', "two", 3);
	g1 = gzip(t.p, 1536, &l1);
	g2 = gzip(t.p + 1536, t.len - 1536 + 1024, &l2);
	cat = malloc(l1 + l2);
	memcpy(cat, g1, l1);
	memcpy(cat + l1, g2, l2);
	mem = (struct st_archive_mem){ cat, l1 + l2, 0 };
	lim.allow_special = true;
	assert_int_equal(st_archive_reader_new(&r, &lim, st_archive_mem_read, &mem), 0);
	assert_int_equal(st_archive_reader_next(&e, r, NULL), 0);
	assert_string_equal(e->name, "first");
	assert_int_equal(st_archive_reader_next(&e, r, NULL), 0);
	assert_int_equal(e->type, ST_ARCHIVE_SYMLINK);
	assert_string_equal(e->linkname, "first");
	assert_int_equal(st_archive_reader_next(&e, r, NULL), 0);
	assert_string_equal(e->name, "second");
	assert_int_equal(e->offset, 1536);
	assert_int_equal(st_archive_reader_read(&n, r, got, sizeof(got), NULL), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(got, "two", 3);
	assert_int_equal(st_archive_reader_next(&e, r, NULL), 0);
	assert_null(e);
	st_archive_reader_free(r);
	free(cat);
	free(g1);
	free(g2);
}

static void test_corrupt_and_truncated(void **state)
{
	static struct tfile f[210];
	size_t n = make_files(f, 40);
	struct st_buf a = ST_BUF_INIT(OUT_CAP);
	static struct raw t;
	char msg[ST_ERR_MSG_SIZE];
	uint8_t *copy;

	(void)state;
	write_archive(&a, f, n);
	assert_int_equal(read_all(a.ptr, a.len, NULL, msg), 0);
	/* Every truncation is an error, never a quiet short archive. */
	for (size_t cut = 0; cut < a.len; cut += 1 + cut / 7) {
		int rc = read_all(a.ptr, cut, NULL, msg);

		if (rc != ST_EPROTO)
			fail_msg("cut at %zu of %zu: rc %d (%s)", cut, a.len, rc, msg);
	}
	/* Flipped bits in the compressed data: corrupt deflate data or a CRC mismatch. */
	copy = malloc(a.len);
	for (size_t pos = 10; pos < a.len - 8; pos += a.len / 23) {
		memcpy(copy, a.ptr, a.len);
		copy[pos] ^= 0x10;
		assert_int_not_equal(read_all(copy, a.len, NULL, msg), 0);
	}
	/* A trailer with a wrong length. */
	memcpy(copy, a.ptr, a.len);
	copy[a.len - 1] ^= 1;
	assert_int_equal(read_all(copy, a.len, NULL, msg), ST_EPROTO);
	free(copy);
	/* A header with a bad checksum names its offset. */
	memset(&t, 0, sizeof(t));
	raw_entry(&t, "a", '0', "1", 1);
	raw_entry(&t, "b", '0', "2", 1);
	t.p[1024] = 'c';
	assert_int_equal(read_raw(&t, NULL, msg), ST_EPROTO);
	assert_non_null(strstr(msg, "corrupt header at offset 1024"));
	/* A complete gzip stream whose tar lacks the end blocks lost its tail. */
	{
		size_t len = 0;
		uint8_t *gz = gzip(t.p, 1024, &len);

		assert_int_equal(read_all(gz, len, NULL, msg), ST_EPROTO);
		assert_non_null(strstr(msg, "offset 1024 without its end-of-archive blocks"));
		free(gz);
	}
	/* Not gzip at all. */
	assert_int_equal(read_all("hello world, not gzip", 21, NULL, msg), ST_EPROTO);
	/* gzip, but not tar. */
	{
		size_t len = 0;
		uint8_t *gz = gzip("plain text, definitely not a tar header", 39, &len);

		assert_int_equal(read_all(gz, len, NULL, msg), ST_EPROTO);
		free(gz);
	}
	st_buf_dispose(&a);
	free_files(f, n);
}

static void test_caps(void **state)
{
	struct st_archive_limits lim = ST_ARCHIVE_LIMITS_INIT;
	struct st_archive_writer *w = NULL;
	struct st_buf a = ST_BUF_INIT(OUT_CAP);
	uint8_t *zeros = calloc(1, 64u << 20);
	char msg[ST_ERR_MSG_SIZE];

	(void)state;
	/* 64 MiB of zeros compress to ~64 KiB: a small bomb. */
	assert_int_equal(st_archive_writer_new(&w, st_archive_buf_write, &a), 0);
	assert_int_equal(st_archive_writer_add_file(w, "a", NULL, "x", 1, NULL), 0);
	assert_int_equal(st_archive_writer_add_file(w, "zeros", NULL, zeros, 64u << 20, NULL), 0);
	assert_int_equal(st_archive_writer_finish(w, NULL), 0);
	st_archive_writer_free(w);
	assert_true(a.len < 200000);
	assert_int_equal(read_all(a.ptr, a.len, NULL, msg), 0);
	lim.max_total = 8u << 20;
	assert_int_equal(read_all(a.ptr, a.len, &lim, msg), ST_ETOOBIG);
	assert_non_null(strstr(msg, "gzip bomb"));
	lim = (struct st_archive_limits)ST_ARCHIVE_LIMITS_INIT;
	lim.max_entry_size = 1u << 20;
	assert_int_equal(read_all(a.ptr, a.len, &lim, msg), ST_ETOOBIG);
	assert_non_null(strstr(msg, "\"zeros\" at offset 1024: 67108864 bytes, over the cap"));
	lim = (struct st_archive_limits)ST_ARCHIVE_LIMITS_INIT;
	lim.max_entries = 1;
	assert_int_equal(read_all(a.ptr, a.len, &lim, msg), ST_ETOOBIG);
	st_buf_dispose(&a);
	free(zeros);
}

/* A sink that inflates what it gets and stops the writer once it holds two blocks. */
struct peek {
	z_stream z;
	uint8_t tar[BUFSIZ * 4];
	size_t len;
};

static int peek_write(const void *buf, size_t n, void *payload)
{
	struct peek *pk = payload;

	pk->z.next_in = (Bytef *)(uintptr_t)buf;
	pk->z.avail_in = (uInt)n;
	pk->z.next_out = pk->tar + pk->len;
	pk->z.avail_out = (uInt)(sizeof(pk->tar) - pk->len);
	(void)inflate(&pk->z, Z_NO_FLUSH);
	pk->len = sizeof(pk->tar) - pk->z.avail_out;
	return pk->len >= 1024 ? ST_EUPSTREAM : 0;
}

static long zero_source(void *buf, size_t cap, void *payload)
{
	(void)payload;
	memset(buf, 0, cap);
	return (long)cap;
}

static void test_huge_sizes(void **state)
{
	static struct peek pk;
	static struct raw t;
	struct st_archive_limits lim = ST_ARCHIVE_LIMITS_INIT;
	struct st_archive_writer *w = NULL;
	uint64_t nine_gib = 9ULL << 30;
	char msg[ST_ERR_MSG_SIZE];

	(void)state;
	/* The writer puts a 9 GiB size in a pax record; the ustar field cannot hold it. */
	memset(&pk.z, 0, sizeof(pk.z));
	assert_int_equal(inflateInit2(&pk.z, 31), Z_OK);
	assert_int_equal(st_archive_writer_new(&w, peek_write, &pk), 0);
	assert_int_equal(
	        st_archive_writer_add_stream(w, "huge", NULL, nine_gib, zero_source, NULL, NULL),
	        ST_EUPSTREAM);
	st_archive_writer_free(w);
	(void)inflateEnd(&pk.z);
	assert_int_equal(pk.tar[156], 'x');
	assert_memory_equal(pk.tar + 512, "19 size=9663676416\n", 19);
	assert_int_equal(pk.tar[1024 + 156], '0');
	/* The reader takes GNU base-256 sizes, and its cap applies to them. */
	memset(&t, 0, sizeof(t));
	raw_entry(&t, "small", '0', "12345", 5);
	memset(t.p + 124, 0, 12);
	t.p[124] = 0x80;
	t.p[135] = 5;
	fix_checksum(t.p);
	assert_int_equal(read_raw(&t, NULL, msg), 0);
	t.p[131] = 2; /* 2 * 2^32 + 5 bytes */
	fix_checksum(t.p);
	lim.max_entry_size = 1u << 20;
	assert_int_equal(read_raw(&t, &lim, msg), ST_ETOOBIG);
	assert_non_null(strstr(msg, "\"small\" at offset 0: 8589934597 bytes"));
}

static void test_extract(void **state)
{
	struct st_archive_writer *w = NULL;
	struct st_buf a = ST_BUF_INIT(OUT_CAP);
	struct st_archive_mem mem = { NULL, 0, 0 };
	struct st_err err = ST_ERR_INIT;
	char *data = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(st_archive_writer_new(&w, st_archive_buf_write, &a), 0);
	assert_int_equal(st_archive_writer_add_dir(w, "metadata/", NULL, NULL), 0);
	assert_int_equal(
	        st_archive_writer_add_file(w, "metadata/version", NULL, "1.1.0\n", 6, NULL), 0);
	assert_int_equal(st_archive_writer_add_file(w, "./resources/x.json", NULL, "{}", 2, NULL),
	                 0);
	assert_int_equal(st_archive_writer_finish(w, NULL), 0);
	st_archive_writer_free(w);
	mem = (struct st_archive_mem){ a.ptr, a.len, 0 };
	assert_int_equal(st_archive_extract(&data, &len, "metadata/version", 100, NULL,
	                                    st_archive_mem_read, &mem, &err),
	                 0);
	assert_int_equal(len, 6);
	assert_string_equal(data, "1.1.0\n");
	free(data);
	mem.off = 0;
	assert_int_equal(st_archive_extract(&data, &len, "resources/x.json", 100, NULL,
	                                    st_archive_mem_read, &mem, &err),
	                 0);
	assert_string_equal(data, "{}");
	free(data);
	mem.off = 0;
	assert_int_equal(st_archive_extract(&data, &len, "./metadata/version", 5, NULL,
	                                    st_archive_mem_read, &mem, &err),
	                 ST_ETOOBIG);
	assert_null(data);
	mem.off = 0;
	st_err_clear(&err);
	assert_int_equal(st_archive_extract(&data, &len, "metadata", 100, NULL, st_archive_mem_read,
	                                    &mem, &err),
	                 ST_ENOTFOUND);
	assert_non_null(strstr(st_err_text(&err), "no file \"metadata\""));
	st_buf_dispose(&a);
}

static long short_read(void *buf, size_t cap, void *payload)
{
	(void)payload;
	memset(buf, 'z', cap < 10 ? cap : 10);
	return cap < 10 ? (long)cap : 10;
}

static long fail_once(void *buf, size_t cap, void *payload)
{
	int *calls = payload;

	(void)buf;
	(void)cap;
	(*calls)++;
	return *calls == 1 ? 0 : ST_EIO;
}

static void test_writer_refuses(void **state)
{
	struct st_archive_writer *w = NULL;
	struct st_buf a = ST_BUF_INIT(OUT_CAP);
	struct st_archive_meta m = ST_ARCHIVE_META_INIT;
	struct st_err err = ST_ERR_INIT;
	char huge[ST_ARCHIVE_NAME_MAX + 2];
	int calls = 0;

	(void)state;
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	assert_int_equal(st_archive_writer_new(&w, st_archive_buf_write, &a), 0);
	assert_int_equal(st_archive_writer_add_file(w, "/abs", NULL, "", 0, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "absolute name"));
	assert_int_equal(st_archive_writer_add_file(w, "a/../b", NULL, "", 0, NULL), ST_EINVAL);
	assert_int_equal(st_archive_writer_add_file(w, "..", NULL, "", 0, NULL), ST_EINVAL);
	assert_int_equal(st_archive_writer_add_file(w, "", NULL, "", 0, NULL), ST_EINVAL);
	assert_int_equal(st_archive_writer_add_file(w, "dir/", NULL, "", 0, NULL), ST_EINVAL);
	assert_int_equal(st_archive_writer_add_file(w, huge, NULL, "", 0, NULL), ST_EINVAL);
	m.uname = "a-user-name-that-is-far-too-long-for-ustar";
	assert_int_equal(st_archive_writer_add_file(w, "x", &m, "", 0, NULL), ST_EINVAL);
	m.uname = NULL;
	m.mode = 010000;
	assert_int_equal(st_archive_writer_add_file(w, "x", &m, "", 0, NULL), ST_EINVAL);
	/* Refused names leave the writer usable... */
	assert_int_equal(st_archive_writer_add_stream(w, "ok", NULL, 25, short_read, NULL, NULL),
	                 0);
	/* ...a source that runs dry does not. */
	st_err_clear(&err);
	assert_int_equal(
	        st_archive_writer_add_stream(w, "short", NULL, 100, fail_once, &calls, &err),
	        ST_EIO);
	assert_non_null(strstr(err.msg, "source ended 100 bytes short"));
	assert_int_equal(st_archive_writer_add_file(w, "after", NULL, "", 0, NULL), ST_EINVAL);
	assert_int_equal(st_archive_writer_finish(w, NULL), ST_EINVAL);
	st_archive_writer_free(w);
	st_archive_writer_free(NULL);
	st_archive_reader_free(NULL);
	st_buf_dispose(&a);
}

static int failing_sink(const void *buf, size_t n, void *payload)
{
	(void)buf;
	(void)n;
	(void)payload;
	return ST_EUPSTREAM;
}

static void test_sink_error(void **state)
{
	struct st_archive_writer *w = NULL;

	(void)state;
	assert_int_equal(st_archive_writer_new(&w, failing_sink, NULL), 0);
	assert_int_equal(st_archive_writer_add_file(w, "x", NULL, "", 0, NULL), ST_EUPSTREAM);
	assert_int_equal(st_archive_writer_finish(w, NULL), ST_EINVAL);
	st_archive_writer_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_empty_archive),
		cmocka_unit_test(test_gnu_tar_reads_ours),
		cmocka_unit_test(test_gnu_tar_pax_fields),
		cmocka_unit_test(test_we_read_gnu_tar),
		cmocka_unit_test(test_unsafe_names),
		cmocka_unit_test(test_unsafe_extended_names),
		cmocka_unit_test(test_multi_member_and_links),
		cmocka_unit_test(test_corrupt_and_truncated),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_huge_sizes),
		cmocka_unit_test(test_extract),
		cmocka_unit_test(test_writer_refuses),
		cmocka_unit_test(test_sink_error),
	};

	return cmocka_run_group_tests_name("archive", tests, NULL, NULL);
}
