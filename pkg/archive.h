/*
 * Streaming tar.gz archives (the layout of Velero backup tarballs).
 *
 * The writer emits POSIX ustar entries into one gzip member. Names longer
 * than 100 bytes, sizes of 8 GiB and more, and times or ids outside the
 * octal fields go into a pax extended header ('x') before the entry, as
 * GNU tar --format=posix does. The output depends only on the calls made:
 * the gzip header carries no time or OS, pax headers have a fixed name,
 * and mtimes, modes and owners are what the caller passes. Memory is
 * fixed whatever the archive size (about 400 KiB for a writer, mostly
 * zlib's, 170 KiB for a reader); bytes reach the write callback in 64 KiB
 * chunks as they are compressed.
 *
 * The reader pulls compressed bytes from a callback and hands out one entry
 * at a time; content is streamed. It understands ustar, pax ('x', 'g') and
 * GNU long names ('L', 'K'), base-256 sizes and multi-member gzip. It is
 * built for untrusted input: absolute names, `..` components, NULs in
 * names, links and device files (unless allowed), entries over a size cap,
 * expansion past a total cap (gzip bombs), bad checksums and truncation
 * are all errors whose text names the entry and its offset in the
 * uncompressed stream. Names are reported without a leading "./" and
 * without the trailing "/" of directories. The end is the first zero
 * block (an archive without one is truncated); reaching it verifies the
 * gzip CRC and length of the member that holds it.
 *
 * Writers and readers are single-threaded objects; distinct ones are
 * independent.
 */
#ifndef ST_PKG_ARCHIVE_H
#define ST_PKG_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

/* The longest entry name either side accepts (bytes). */
#define ST_ARCHIVE_NAME_MAX 4096

/*
 * Read callback: fills up to cap bytes of buf; returns the count, 0 at the
 * end of the input, or a negative ST_E* (passed back unchanged). The shape
 * is that of st_store_read_cb.
 */
typedef long (*st_archive_read_cb)(void *buf, size_t cap, void *payload);
/* Write callback: consumes n bytes; 0 or a negative ST_E* that aborts the writer. */
typedef int (*st_archive_write_cb)(const void *buf, size_t n, void *payload);

enum st_archive_type {
	ST_ARCHIVE_FILE,
	ST_ARCHIVE_DIR,
	ST_ARCHIVE_SYMLINK,
	ST_ARCHIVE_HARDLINK,
	ST_ARCHIVE_OTHER, /* character or block device, FIFO */
};

/* What the writer records for an entry. */
struct st_archive_meta {
	unsigned mode;     /* permission bits (07777); 0: 0644 for files, 0755 for dirs */
	long long mtime;   /* seconds since the epoch, any value */
	uint64_t uid;      /* numeric owner */
	uint64_t gid;      /* numeric group */
	const char *uname; /* NULL or up to 31 bytes */
	const char *gname; /* NULL or up to 31 bytes */
};
#define ST_ARCHIVE_META_INIT           \
	{                              \
		0, 0, 0, 0, NULL, NULL \
	}

struct st_archive_writer;

/*
 * Creates a writer that sends the gzip stream to cb(payload). Nothing is
 * written until the first entry. Free with st_archive_writer_free.
 */
int st_archive_writer_new(struct st_archive_writer **out, st_archive_write_cb cb,
                          void *payload) ST_WARN_UNUSED;

/*
 * Adds an entry. name must be relative, without `..` components, at most
 * ST_ARCHIVE_NAME_MAX bytes; a directory name may end in "/" (one is added
 * if missing). meta NULL means ST_ARCHIVE_META_INIT. add_stream pulls
 * exactly size bytes from cb(payload); fewer is ST_EIO. Returns ST_EINVAL
 * for a bad name or meta, the callbacks' codes, or ST_EINVAL after an
 * earlier failure or after finish: a writer that failed once stays failed,
 * and what it wrote so far is not a valid archive.
 */
int st_archive_writer_add_dir(struct st_archive_writer *w, const char *name,
                              const struct st_archive_meta *meta,
                              struct st_err *err) ST_WARN_UNUSED;
int st_archive_writer_add_file(struct st_archive_writer *w, const char *name,
                               const struct st_archive_meta *meta, const void *data, size_t len,
                               struct st_err *err) ST_WARN_UNUSED;
int st_archive_writer_add_stream(struct st_archive_writer *w, const char *name,
                                 const struct st_archive_meta *meta, uint64_t size,
                                 st_archive_read_cb cb, void *payload,
                                 struct st_err *err) ST_WARN_UNUSED;

/*
 * Writes the two end blocks, flushes the compressor and writes the gzip
 * trailer. An archive with no entries is valid (just the end blocks).
 */
int st_archive_writer_finish(struct st_archive_writer *w, struct st_err *err) ST_WARN_UNUSED;

/* Uncompressed and compressed byte counts so far. */
uint64_t st_archive_writer_tar_bytes(const struct st_archive_writer *w);
uint64_t st_archive_writer_gz_bytes(const struct st_archive_writer *w);

/* Releases w (NULL is a no-op). Freeing before finish abandons the output. */
void st_archive_writer_free(struct st_archive_writer *w);

/* Caps and policy of a reader. */
struct st_archive_limits {
	uint64_t max_entry_size; /* largest content of one entry */
	uint64_t max_total;      /* uncompressed bytes of the whole tar stream */
	uint64_t max_entries;    /* entries, extended headers not counted */
	bool allow_special;      /* report links and devices instead of refusing them */
};
#define ST_ARCHIVE_LIMITS_INIT                          \
	{                                               \
		1ULL << 30, 16ULL << 30, 1000000, false \
	}

/* One entry; borrowed from the reader until the next call to _next or _free. */
struct st_archive_entry {
	const char *name;     /* normalised as in the overview; "." for the top dir */
	const char *linkname; /* link target, "" for other types */
	enum st_archive_type type;
	uint64_t size;   /* content bytes (0 for everything but files) */
	unsigned mode;   /* permission bits */
	long long mtime; /* seconds since the epoch (pax fractions dropped) */
	uint64_t uid;
	uint64_t gid;
	uint64_t offset; /* of its first header in the uncompressed stream */
};

struct st_archive_reader;

/* Creates a reader over cb(payload); lim NULL means ST_ARCHIVE_LIMITS_INIT. */
int st_archive_reader_new(struct st_archive_reader **out, const struct st_archive_limits *lim,
                          st_archive_read_cb cb, void *payload) ST_WARN_UNUSED;

/*
 * Moves to the next entry, skipping what is left of the current one's
 * content. *entry_out is the entry, or NULL at the end of the archive (the
 * gzip trailer then checked). Errors: ST_EPROTO for corrupt, truncated or
 * unsafe input, ST_ETOOBIG for a cap, or the callback's code; err says
 * which entry and offset. A reader that failed stays failed.
 */
int st_archive_reader_next(const struct st_archive_entry **entry_out, struct st_archive_reader *r,
                           struct st_err *err) ST_WARN_UNUSED;

/*
 * Reads up to cap bytes of the current entry's content into buf. *got_out
 * is 0 only at the end of the content. Truncation is ST_EPROTO.
 */
int st_archive_reader_read(size_t *got_out, struct st_archive_reader *r, void *buf, size_t cap,
                           struct st_err *err) ST_WARN_UNUSED;

/* Releases r (NULL is a no-op). */
void st_archive_reader_free(struct st_archive_reader *r);

/*
 * Finds the first regular file called name (compared after the same
 * normalisation as entry names) and returns its content in a malloc'd
 * buffer with a NUL after the last byte (*data_out, *len_out; free()).
 * ST_ENOTFOUND if the archive has no such file, ST_ETOOBIG if it is larger
 * than cap, else the reader's errors for anything up to and including it.
 * The rest of the archive is not read.
 */
int st_archive_extract(char **data_out, size_t *len_out, const char *name, size_t cap,
                       const struct st_archive_limits *lim, st_archive_read_cb cb, void *payload,
                       struct st_err *err) ST_WARN_UNUSED;

/* A read callback over memory: payload is a struct st_archive_mem. */
struct st_archive_mem {
	const void *data;
	size_t len;
	size_t off; /* start at 0 */
};
long st_archive_mem_read(void *buf, size_t cap, void *payload);
/* A write callback appending to a capped buffer: payload is a struct st_buf. */
int st_archive_buf_write(const void *buf, size_t n, void *payload);

#endif
