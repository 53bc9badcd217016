/*
 * Snapshot manifest records: the file tree of one snapshot as a byte stream.
 *
 * The stream is a sequence of length-prefixed little-endian records in
 * depth-first order with the children of a directory sorted by name (the
 * root directory is the path "."). An ENTRY record describes one filesystem
 * object (type, mode, owner, times, size, device number, path, symlink or
 * hard-link target, extended attributes); the CHUNKS records that follow a
 * regular file list its data as (file offset, length, chunk id) triples, at
 * most ST_TREE_CHUNKS_PER_RECORD each, so a record stays small for any file
 * size. Ranges of a file no chunk covers are holes. The stream itself is
 * stored as chunks in the repository, so it needs no size limit either.
 *
 * Decoding is incremental and bounded: a record over ST_TREE_RECORD_MAX or
 * any field that runs past its record is rejected with ST_EPROTO.
 */
#ifndef ST_PKG_TREE_H
#define ST_PKG_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

#define ST_TREE_ID_LEN            32
#define ST_TREE_PATH_MAX          4096
#define ST_TREE_XATTRS_MAX        128
#define ST_TREE_CHUNKS_PER_RECORD 1024
#define ST_TREE_RECORD_MAX        (2u * 1024u * 1024u)

enum st_tree_type {
	ST_TREE_FILE = 1,
	ST_TREE_DIR = 2,
	ST_TREE_SYMLINK = 3,
	ST_TREE_HARDLINK = 4, /* target: path of the first link, stored earlier */
	ST_TREE_CHR = 5,
	ST_TREE_BLK = 6,
	ST_TREE_FIFO = 7,
	ST_TREE_SOCK = 8,
};

struct st_tree_xattr {
	const char *name; /* NUL-terminated */
	const uint8_t *value;
	uint32_t len;
};

/* Strings and xattrs are borrowed: valid until the next record is decoded. */
struct st_tree_entry {
	enum st_tree_type type;
	uint32_t mode; /* full st_mode */
	uint32_t uid;
	uint32_t gid;
	int64_t mtime_s;
	uint32_t mtime_ns;
	int64_t atime_s;
	uint32_t atime_ns;
	uint64_t size;
	uint64_t rdev;
	const char *path;   /* relative, "." for the root */
	const char *target; /* symlink / hard-link target, "" otherwise */
	size_t nxattr;
	struct st_tree_xattr xattrs[ST_TREE_XATTRS_MAX];
};

struct st_tree_chunk {
	uint64_t off;
	uint32_t len;
	uint8_t id[ST_TREE_ID_LEN];
};

/* Appends an ENTRY record to out. ST_EINVAL for over-long fields. */
int st_tree_put_entry(struct st_buf *out, const struct st_tree_entry *e) ST_WARN_UNUSED;
/* Appends a CHUNKS record of n (1..ST_TREE_CHUNKS_PER_RECORD) chunks. */
int st_tree_put_chunks(struct st_buf *out, const struct st_tree_chunk *c, size_t n) ST_WARN_UNUSED;

/* Receives decoded records; a non-zero return stops decoding and is passed back. */
struct st_tree_visitor {
	int (*entry)(const struct st_tree_entry *e, void *payload);
	int (*chunks)(const struct st_tree_chunk *c, size_t n, void *payload);
	void *payload;
};

struct st_tree_decoder {
	struct st_buf pending; /* bytes of an incomplete record */
	struct st_tree_entry cur;
	bool have_file; /* CHUNKS are only valid after a FILE entry */
	uint64_t records;
};

void st_tree_decoder_init(struct st_tree_decoder *d);
void st_tree_decoder_dispose(struct st_tree_decoder *d);
/*
 * Feeds n more bytes of the stream; calls the visitor for every complete
 * record. Returns 0, ST_EPROTO for malformed input, or the visitor's value.
 */
int st_tree_decoder_feed(struct st_tree_decoder *d, const void *data, size_t n,
                         const struct st_tree_visitor *v) ST_WARN_UNUSED;
/* Checks that the stream ended on a record boundary (ST_EPROTO otherwise). */
int st_tree_decoder_finish(const struct st_tree_decoder *d) ST_WARN_UNUSED;

/*
 * Orders paths as the depth-first walk with sorted children visits them:
 * byte order where '/' sorts before every other byte.
 */
int st_tree_path_cmp(const char *a, const char *b);

/* Little-endian field helpers (n bytes, 1..8), shared with the repository formats. */
void st_tree_le_put(uint8_t *p, uint64_t v, int n);
uint64_t st_tree_le_get(const uint8_t *p, int n);

#endif
