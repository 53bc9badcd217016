/* Unit tests for pkg/repo and pkg/tree over a real file:// store in a temporary directory. */
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

#include "pkg/chunker.h"
#include "pkg/dirbackup.h"
#include "pkg/repo.h"
#include "pkg/store.h"
#include "pkg/tree.h"
#include "pkg/util/buf.h"

struct fixture {
	char dir[64];
	struct st_store *s;
	struct st_repo *r;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct st_err err = ST_ERR_INIT;
	char url[96];

	if (f == NULL)
		return -1;
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/st-repo-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	(void)snprintf(url, sizeof(url), "file://%s", f->dir);
	if (st_store_open(&f->s, url, NULL, &err) != 0 || st_repo_init(f->s, "pw", 2, &err) != 0 ||
	    st_repo_open(&f->r, f->s, "pw", 2, &err) != 0 || st_repo_load_index(f->r, &err) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	st_repo_free(f->r);
	st_store_free(f->s);
	(void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void fill(uint8_t *p, size_t n, uint32_t seed, bool text)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = text ? (uint8_t)("abcdefgh "[(seed >> 16) % 9]) : (uint8_t)(seed >> 16);
	}
}

static void test_wrong_key_and_reinit(void **state)
{
	struct fixture *f = *state;
	struct st_repo *r = NULL;
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_repo_open(&r, f->s, "nope", 4, &err), ST_EINVAL);
	assert_null(r);
	assert_non_null(strstr(err.msg, "wrong repository key"));
	st_err_clear(&err);
	assert_int_equal(st_repo_init(f->s, "pw", 2, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "already exists"));
}

/* Writes chunks, reopens the repository, reads them back through the index. */
static void test_write_read_dedup(void **state)
{
	struct fixture *f = *state;
	struct st_repo_writer *w = NULL;
	struct st_repo_writer_stats ws;
	struct st_err err = ST_ERR_INIT;
	struct st_repo *r2 = NULL;
	struct st_repo_reader *rd = st_repo_reader_new();
	enum { N = 24 };
	uint8_t ids[N][ST_REPO_ID_LEN];
	size_t lens[N];
	uint8_t *buf = malloc(ST_CHUNK_MAX);

	assert_non_null(buf);
	assert_int_equal(st_repo_writer_new(&w, f->r, 2, &err), 0);
	for (int i = 0; i < N; i++) {
		lens[i] = i % 3 == 0 ? (size_t)ST_CHUNK_MAX : (size_t)(1000 + i * 100003);
		fill(buf, lens[i], (uint32_t)i, i % 2 == 0);
		st_repo_chunk_id(ids[i], f->r, buf, lens[i]);
		assert_int_equal(st_repo_writer_add(w, ids[i], buf, lens[i], &err), 0);
		/* The same data again costs nothing. */
		assert_int_equal(st_repo_writer_add(w, ids[i], buf, lens[i], &err), 0);
	}
	assert_int_equal(st_repo_writer_finish(w, &err), 0);
	st_repo_writer_get_stats(&ws, w);
	st_repo_writer_free(w);
	assert_int_equal(ws.chunks_new, N);
	assert_int_equal(ws.chunks_known, N);
	assert_true(ws.packs >= 2);                  /* more than 16 MiB went in */
	assert_true(ws.bytes_stored < ws.bytes_new); /* text compressed */

	assert_int_equal(st_repo_open(&r2, f->s, "pw", 2, &err), 0);
	assert_int_equal(st_repo_load_index(r2, &err), 0);
	for (int i = 0; i < N; i++) {
		uint8_t *data = NULL;
		size_t len = 0;

		assert_true(st_repo_has_chunk(r2, ids[i]));
		assert_int_equal(st_repo_read_chunk(&data, &len, r2, rd, ids[i], &err), 0);
		assert_int_equal(len, lens[i]);
		fill(buf, lens[i], (uint32_t)i, i % 2 == 0);
		assert_memory_equal(data, buf, len);
		free(data);
	}
	st_repo_reader_free(rd);
	st_repo_free(r2);
	free(buf);
}

/* Flips one byte inside a stored blob: the read fails and names chunk and pack. */
static void test_flipped_byte(void **state)
{
	struct fixture *f = *state;
	struct st_repo_writer *w = NULL;
	struct st_err err = ST_ERR_INIT;
	struct st_repo_reader *rd = st_repo_reader_new();
	struct st_repo_loc loc;
	uint8_t id[ST_REPO_ID_LEN];
	char key[96];
	char path[256];
	char hex[2 * ST_REPO_ID_LEN + 1];
	char pfx[25];
	uint8_t data[5000];
	uint8_t *out = NULL;
	size_t len = 0;
	FILE *fp;
	int c;

	fill(data, sizeof(data), 5, false);
	st_repo_chunk_id(id, f->r, data, sizeof(data));
	assert_int_equal(st_repo_writer_new(&w, f->r, 1, &err), 0);
	assert_int_equal(st_repo_writer_add(w, id, data, sizeof(data), &err), 0);
	assert_int_equal(st_repo_writer_finish(w, &err), 0);
	st_repo_writer_free(w);
	assert_int_equal(st_repo_locate(&loc, f->r, id), 0);
	st_repo_pack_key(key, loc.pack);
	(void)snprintf(path, sizeof(path), "%s/%s", f->dir, key);
	fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, (long)loc.off + 100, SEEK_SET), 0);
	c = fgetc(fp);
	assert_int_equal(fseek(fp, (long)loc.off + 100, SEEK_SET), 0);
	assert_int_equal(fputc(c ^ 1, fp), c ^ 1);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(st_repo_read_chunk(&out, &len, f->r, rd, id, &err), ST_EPROTO);
	assert_null(out);
	st_repo_hex(hex, id, ST_REPO_ID_LEN);
	assert_non_null(strstr(err.msg, hex));
	/* The pack is named by the start of its id (key is "data/xx/<id>"). */
	(void)snprintf(pfx, sizeof(pfx), "%.24s", key + 8);
	assert_non_null(strstr(err.msg, pfx));
	assert_non_null(strstr(err.msg, "authentication failed"));
	st_repo_reader_free(rd);
}

static void test_snapshot_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct st_repo_snapshot s;
	struct st_repo_snapshot back;
	struct st_err err = ST_ERR_INIT;
	uint8_t tree[2][ST_REPO_ID_LEN];

	memset(&s, 0, sizeof(s));
	memset(tree, 7, sizeof(tree));
	s.time = 1700000000;
	(void)snprintf(s.tag, sizeof(s.tag), "nightly");
	s.files = 3;
	s.ntree = 2;
	s.tree = tree;
	assert_int_equal(st_repo_snapshot_save(f->r, &s, &err), 0);
	assert_int_equal(st_repo_snapshot_load(&back, f->r, "latest", &err), 0);
	assert_string_equal(back.id, s.id);
	assert_string_equal(back.tag, "nightly");
	assert_int_equal(back.ntree, 2);
	assert_memory_equal(back.tree, tree, sizeof(tree));
	st_repo_snapshot_dispose(&back);
	assert_int_equal(st_repo_snapshot_load(&back, f->r, "zzzz", &err), ST_ENOTFOUND);
	/* Snapshots of the same second: "latest" is the one saved last, not a random id. */
	for (int i = 1; i <= 8; i++) {
		s.time_ns = i * 1000;
		assert_int_equal(st_repo_snapshot_save(f->r, &s, &err), 0);
		assert_int_equal(st_repo_snapshot_load(&back, f->r, "latest", &err), 0);
		assert_string_equal(back.id, s.id);
		assert_int_equal(back.time_ns, i * 1000);
		st_repo_snapshot_dispose(&back);
	}
}

struct seen {
	int entries;
	int chunks;
	char last[64];
};

static int on_entry(const struct st_tree_entry *e, void *payload)
{
	struct seen *s = payload;

	s->entries++;
	(void)snprintf(s->last, sizeof(s->last), "%s|%s|%zu", e->path, e->target, e->nxattr);
	return 0;
}

static int on_chunks(const struct st_tree_chunk *c, size_t n, void *payload)
{
	struct seen *s = payload;

	(void)c;
	s->chunks += (int)n;
	return 0;
}

static void test_tree_codec(void **state)
{
	struct st_buf b = ST_BUF_INIT(1u << 20);
	struct st_tree_entry e;
	struct st_tree_chunk c[3];
	struct st_tree_decoder d;
	struct seen seen = { 0, 0, "" };
	const struct st_tree_visitor v = { on_entry, on_chunks, &seen };

	(void)state;
	memset(&e, 0, sizeof(e));
	memset(c, 1, sizeof(c));
	e.type = ST_TREE_FILE;
	e.path = "dir/odd\nname \xc3\xa9";
	e.target = "";
	e.size = 300;
	e.nxattr = 1;
	e.xattrs[0] = (struct st_tree_xattr){ "user.a", (const uint8_t *)"v", 1 };
	for (int i = 0; i < 3; i++) {
		c[i].off = (uint64_t)i * 100;
		c[i].len = 100;
	}
	assert_int_equal(st_tree_put_entry(&b, &e), 0);
	assert_int_equal(st_tree_put_chunks(&b, c, 3), 0);
	e.type = ST_TREE_SYMLINK;
	e.path = "l";
	e.target = "dir";
	e.nxattr = 0;
	assert_int_equal(st_tree_put_entry(&b, &e), 0);
	/* Fed one byte at a time, the decoder sees the same records. */
	st_tree_decoder_init(&d);
	for (size_t i = 0; i < b.len; i++)
		assert_int_equal(st_tree_decoder_feed(&d, b.ptr + i, 1, &v), 0);
	assert_int_equal(st_tree_decoder_finish(&d), 0);
	st_tree_decoder_dispose(&d);
	assert_int_equal(seen.entries, 2);
	assert_int_equal(seen.chunks, 3);
	assert_string_equal(seen.last, "l|dir|0");
	/* A chunk past the file's size and a truncated stream are rejected. */
	st_tree_decoder_init(&d);
	assert_int_equal(st_tree_decoder_feed(&d, b.ptr, b.len - 1, &v), 0);
	assert_int_equal(st_tree_decoder_finish(&d), ST_EPROTO);
	st_tree_decoder_dispose(&d);
	st_buf_clear(&b);
	e.type = ST_TREE_FILE;
	e.size = 250;
	assert_int_equal(st_tree_put_entry(&b, &e), 0);
	assert_int_equal(st_tree_put_chunks(&b, c, 3), 0);
	st_tree_decoder_init(&d);
	assert_int_equal(st_tree_decoder_feed(&d, b.ptr, b.len, &v), ST_EPROTO);
	st_tree_decoder_dispose(&d);
	/* Paths that would escape the target are rejected. */
	st_buf_clear(&b);
	e.path = "../x";
	assert_int_equal(st_tree_put_entry(&b, &e), 0);
	st_tree_decoder_init(&d);
	assert_int_equal(st_tree_decoder_feed(&d, b.ptr, b.len, &v), ST_EPROTO);
	st_tree_decoder_dispose(&d);
	st_buf_dispose(&b);
	assert_true(st_tree_path_cmp("a/b", "a.c") < 0);
	assert_true(st_tree_path_cmp("a", "a/b") < 0);
	assert_int_equal(st_tree_path_cmp("x", "x"), 0);
}

static int count_entry(const uint8_t *pack, const uint8_t *id, uint32_t off, uint32_t len,
                       uint32_t rawlen, void *payload)
{
	(void)pack;
	(void)id;
	(void)off;
	(void)len;
	(void)rawlen;
	(*(int *)payload)++;
	return 0;
}

static void test_index_decode_rejects(void **state)
{
	uint8_t buf[9 + 36 + 44];
	int n = 0;

	(void)state;
	memset(buf, 0, sizeof(buf));
	memcpy(buf, "STIX\x01\x01\x00\x00\x00", 9);
	buf[9 + 32] = 1;        /* one entry */
	buf[9 + 36 + 32] = 8;   /* off */
	buf[9 + 36 + 36] = 100; /* len */
	buf[9 + 36 + 40] = 50;  /* rawlen */
	assert_int_equal(st_repo_index_decode(buf, sizeof(buf), NULL, count_entry, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st_repo_index_decode(buf, sizeof(buf) - 1, NULL, count_entry, &n),
	                 ST_EPROTO);
	buf[9 + 36 + 36] = 3; /* shorter than any sealed blob */
	assert_int_equal(st_repo_index_decode(buf, sizeof(buf), NULL, count_entry, &n), ST_EPROTO);
	buf[0] = 'X';
	assert_int_equal(st_repo_index_decode(buf, sizeof(buf), NULL, count_entry, &n), ST_EPROTO);
}

/* ---- chunk boundaries through st_dirbackup_run ---- */

#define BOUNDARY_FILES 4

static const struct {
	const char *name;
	size_t size;
	bool text;
} boundary_files[BOUNDARY_FILES] = {
	{ "a", 21u << 20, false },
	{ "b", (5u << 20) + 17, true },
	{ "c", 300, false },
	{ "d", (9u << 20) + 4096, false },
};

struct cuts {
	int file; /* index into boundary_files, -1 before the first */
	size_t n[BOUNDARY_FILES];
	uint64_t off[BOUNDARY_FILES][64];
	uint32_t len[BOUNDARY_FILES][64];
};

static int cut_entry(const struct st_tree_entry *e, void *payload)
{
	struct cuts *c = payload;

	c->file = -1;
	for (int i = 0; i < BOUNDARY_FILES; i++)
		if (strcmp(e->path, boundary_files[i].name) == 0)
			c->file = i;
	return 0;
}

static int cut_chunks(const struct st_tree_chunk *ch, size_t n, void *payload)
{
	struct cuts *c = payload;

	if (c->file < 0)
		return 0;
	for (size_t i = 0; i < n && c->n[c->file] < 64; i++) {
		c->off[c->file][c->n[c->file]] = ch[i].off;
		c->len[c->file][c->n[c->file]] = ch[i].len;
		c->n[c->file]++;
	}
	return 0;
}

struct tree_feed {
	struct st_tree_decoder dec;
	struct cuts *cuts;
};

static int feed_tree(const void *data, size_t n, void *payload)
{
	struct tree_feed *t = payload;
	const struct st_tree_visitor v = { cut_entry, cut_chunks, t->cuts };

	return st_tree_decoder_feed(&t->dec, data, n, &v);
}

/*
 * Files pass through the backup in segments shared between files, cut early
 * where a cut can already be told: the chunks must still be exactly the ones
 * the chunker gives over each whole file.
 */
static void test_dirbackup_boundaries(void **state)
{
	struct fixture *f = *state;
	struct st_dirbackup_options o = ST_DIRBACKUP_OPTIONS_INIT;
	struct st_repo_snapshot snap;
	struct st_err err = ST_ERR_INIT;
	struct tree_feed t;
	struct cuts *got = calloc(1, sizeof(*got));
	char dir[sizeof(f->dir) + 8];
	char path[sizeof(dir) + 8];

	assert_non_null(got);
	(void)snprintf(dir, sizeof(dir), "%s/data", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	for (int i = 0; i < BOUNDARY_FILES; i++) {
		uint8_t *p = malloc(boundary_files[i].size);
		FILE *fp;

		assert_non_null(p);
		fill(p, boundary_files[i].size, 1000u + (uint32_t)i, boundary_files[i].text);
		(void)snprintf(path, sizeof(path), "%s/%s", dir, boundary_files[i].name);
		assert_non_null(fp = fopen(path, "wb"));
		assert_int_equal(fwrite(p, 1, boundary_files[i].size, fp), boundary_files[i].size);
		assert_int_equal(fclose(fp), 0);
		free(p);
	}
	assert_int_equal(st_dirbackup_run(&snap, f->r, dir, &o, &err), 0);
	t.cuts = got;
	got->file = -1;
	st_tree_decoder_init(&t.dec);
	assert_int_equal(st_repo_tree_read(f->r, &snap, feed_tree, &t, &err), 0);
	st_tree_decoder_dispose(&t.dec);
	for (int i = 0; i < BOUNDARY_FILES; i++) {
		size_t size = boundary_files[i].size, off = 0, k = 0;
		uint8_t *p = malloc(size);

		assert_non_null(p);
		fill(p, size, 1000u + (uint32_t)i, boundary_files[i].text);
		while (off < size) {
			size_t n = st_chunker_cut(st_repo_chunker(f->r), p + off, size - off);

			assert_true(k < got->n[i]);
			assert_int_equal(got->off[i][k], off);
			assert_int_equal(got->len[i][k], n);
			off += n;
			k++;
		}
		assert_int_equal(k, got->n[i]);
		free(p);
	}
	st_repo_snapshot_dispose(&snap);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_wrong_key_and_reinit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_dedup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flipped_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirbackup_boundaries, setup, teardown),
		cmocka_unit_test(test_tree_codec),
		cmocka_unit_test(test_index_decode_rejects),
	};

	return cmocka_run_group_tests_name("repo", tests, NULL, NULL);
}
