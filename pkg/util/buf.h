/*
 * st_buf: a growable byte buffer with a hard cap.
 *
 * The buffer is always NUL-terminated (the NUL is not counted in len), so it
 * can be handed to string APIs. Appending past the cap fails with ST_ETOOBIG
 * and leaves the contents unchanged. Not thread-safe. Allocation failure
 * aborts (see mem.h).
 */
#ifndef ST_PKG_UTIL_BUF_H
#define ST_PKG_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "pkg/util/err.h"

struct st_buf {
	char *ptr;
	size_t len;
	size_t alloc;
	size_t cap;
};

#define ST_BUF_INIT(c)          \
	{                       \
		NULL, 0, 0, (c) \
	}

void st_buf_init(struct st_buf *b, size_t cap);
/* Releases the memory; the buffer may be reused after st_buf_init. */
void st_buf_dispose(struct st_buf *b);
/* Empties the buffer, keeping its memory. */
void st_buf_clear(struct st_buf *b);
/* Makes room for n more bytes, contents unchanged; ST_ETOOBIG past the cap. */
int st_buf_reserve(struct st_buf *b, size_t n) ST_WARN_UNUSED;
int st_buf_put(struct st_buf *b, const void *data, size_t n) ST_WARN_UNUSED;
int st_buf_puts(struct st_buf *b, const char *s) ST_WARN_UNUSED;
int st_buf_putc(struct st_buf *b, char c) ST_WARN_UNUSED;
int st_buf_printf(struct st_buf *b, const char *fmt, ...) ST_PRINTF(2, 3) ST_WARN_UNUSED;
int st_buf_vprintf(struct st_buf *b, const char *fmt, va_list ap) ST_WARN_UNUSED;
/* Hands the heap string to the caller (never NULL) and empties b. */
char *st_buf_detach(struct st_buf *b, size_t *len_out);
/*
 * Appends the whole file at path. ST_ENOTFOUND when it cannot be opened,
 * ST_ETOOBIG past the buffer's cap, ST_EIO on a read error; err names the file.
 */
int st_buf_read_file(struct st_buf *b, const char *path, struct st_err *err) ST_WARN_UNUSED;
/*
 * Reads a secret of at most max bytes (a key, a token) from the file at
 * path into *out, a NUL-terminated heap string of *len_out bytes without
 * the trailing CR and LF bytes. It never moves, so no copy is left behind;
 * release it with st_freezero(*out, *len_out + 1). ST_ENOTFOUND when the
 * file cannot be opened, ST_ETOOBIG past max, ST_EIO on a read error; err
 * names the file. An empty file gives 0 with *len_out 0.
 */
int st_read_secret_file(char **out, size_t *len_out, const char *path, size_t max,
                        struct st_err *err) ST_WARN_UNUSED;
/* Text pointer, "" for an empty buffer; borrowed. */
const char *st_buf_cstr(const struct st_buf *b);

/*
 * A body read from memory by the streamed-put callbacks of pkg/store.h and
 * pkg/s3.h: copies up to cap bytes and advances; 0 at the end.
 */
struct st_mem_reader {
	const char *p;
	size_t left;
};
long st_mem_read(void *buf, size_t cap, void *payload);

#endif
