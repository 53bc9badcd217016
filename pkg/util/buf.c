#include "pkg/util/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/mem.h"

void st_buf_init(struct st_buf *b, size_t cap)
{
	b->ptr = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
}

void st_buf_dispose(struct st_buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = 0;
	b->alloc = 0;
}

void st_buf_clear(struct st_buf *b)
{
	b->len = 0;
	if (b->ptr != NULL)
		b->ptr[0] = '\0';
}

static int grow(struct st_buf *b, size_t extra)
{
	size_t need;
	size_t na;

	if (extra > b->cap || b->len > b->cap - extra)
		return ST_ETOOBIG;
	need = b->len + extra + 1;
	if (need <= b->alloc)
		return 0;
	na = b->alloc ? b->alloc : 64;
	while (na < need)
		na = na > SIZE_MAX / 2 ? need : na * 2;
	if (na > b->cap + 1)
		na = b->cap + 1;
	b->ptr = st_xrealloc(b->ptr, na);
	b->alloc = na;
	return 0;
}

int st_buf_reserve(struct st_buf *b, size_t n)
{
	return grow(b, n);
}

int st_buf_put(struct st_buf *b, const void *data, size_t n)
{
	int rc;

	if ((rc = grow(b, n)) < 0)
		return rc;
	if (n > 0)
		memcpy(b->ptr + b->len, data, n);
	b->len += n;
	b->ptr[b->len] = '\0';
	return 0;
}

int st_buf_puts(struct st_buf *b, const char *s)
{
	return st_buf_put(b, s, strlen(s));
}

int st_buf_putc(struct st_buf *b, char c)
{
	return st_buf_put(b, &c, 1);
}

int st_buf_vprintf(struct st_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	int rc;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return ST_EINVAL;
	if ((rc = grow(b, (size_t)n)) < 0)
		return rc;
	(void)vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int st_buf_printf(struct st_buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = st_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

char *st_buf_detach(struct st_buf *b, size_t *len_out)
{
	char *p = b->ptr;

	if (p == NULL)
		p = st_xstrdup("");
	if (len_out != NULL)
		*len_out = b->len;
	b->ptr = NULL;
	b->len = 0;
	b->alloc = 0;
	return p;
}

const char *st_buf_cstr(const struct st_buf *b)
{
	return b->ptr ? b->ptr : "";
}

int st_buf_read_file(struct st_buf *b, const char *path, struct st_err *err)
{
	FILE *f = fopen(path, "rb");
	char chunk[8192];
	size_t n;
	int rc = ST_EINTERNAL;

	if (f == NULL)
		return st_err_set(err, ST_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (st_buf_put(b, chunk, n) < 0) {
			rc = st_err_set(err, ST_ETOOBIG, "%s is larger than %zu bytes", path,
			                b->cap);
			goto out;
		}
	}
	if (ferror(f)) {
		rc = st_err_set(err, ST_EIO, "cannot read %s", path);
		goto out;
	}
	rc = 0;
out:
	(void)fclose(f);
	return rc;
}

int st_read_secret_file(char **out, size_t *len_out, const char *path, size_t max,
                        struct st_err *err)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n;
	int rc = ST_EINTERNAL;

	*out = NULL;
	*len_out = 0;
	if (f == NULL)
		return st_err_set(err, ST_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
	buf = st_xmalloc(max + 1);
	n = fread(buf, 1, max + 1, f);
	if (ferror(f)) {
		rc = st_err_set(err, ST_EIO, "cannot read %s", path);
		goto out;
	}
	if (n > max) {
		rc = st_err_set(err, ST_ETOOBIG, "%s is larger than %zu bytes", path, max);
		goto out;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	*out = buf;
	*len_out = n;
	buf = NULL; /* transferred */
	rc = 0;
out:
	if (buf != NULL)
		st_freezero(buf, max + 1);
	(void)fclose(f);
	return rc;
}

long st_mem_read(void *buf, size_t cap, void *payload)
{
	struct st_mem_reader *m = payload;
	size_t n = m->left < cap ? m->left : cap;

	memcpy(buf, m->p, n);
	m->p += n;
	m->left -= n;
	return (long)n;
}
