#include "pkg/tree.h"

#include <string.h>

enum { REC_ENTRY = 1, REC_CHUNKS = 2 };

#define ENTRY_FIXED (1 + 4 * 3 + 8 + 4 + 8 + 4 + 8 + 8)
#define CHUNK_SIZE  (8 + 4 + ST_TREE_ID_LEN)
#define le_put      st_tree_le_put
#define le_get      st_tree_le_get

void st_tree_le_put(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t st_tree_le_get(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int put_le(struct st_buf *b, uint64_t v, int n)
{
	uint8_t tmp[8];

	le_put(tmp, v, n);
	return st_buf_put(b, tmp, (size_t)n);
}

static int put_str16(struct st_buf *b, const char *s)
{
	size_t n = strlen(s);
	int rc;

	if (n > ST_TREE_PATH_MAX)
		return ST_EINVAL;
	if ((rc = put_le(b, n, 2)) < 0)
		return rc;
	return st_buf_put(b, s, n);
}

/* Patches the record length placed at `at` once the record is complete. */
static int close_record(struct st_buf *out, size_t at)
{
	size_t len = out->len - at - 4;

	if (len > ST_TREE_RECORD_MAX)
		return ST_EINVAL;
	le_put((uint8_t *)out->ptr + at, len, 4);
	return 0;
}

int st_tree_put_entry(struct st_buf *out, const struct st_tree_entry *e)
{
	size_t at = out->len;
	uint8_t f[ENTRY_FIXED];
	uint8_t *p = f;
	int rc;

	if (e->nxattr > ST_TREE_XATTRS_MAX)
		return ST_EINVAL;
	*p++ = (uint8_t)e->type;
	le_put(p, e->mode, 4), p += 4;
	le_put(p, e->uid, 4), p += 4;
	le_put(p, e->gid, 4), p += 4;
	le_put(p, (uint64_t)e->mtime_s, 8), p += 8;
	le_put(p, e->mtime_ns, 4), p += 4;
	le_put(p, (uint64_t)e->atime_s, 8), p += 8;
	le_put(p, e->atime_ns, 4), p += 4;
	le_put(p, e->size, 8), p += 8;
	le_put(p, e->rdev, 8);
	if ((rc = put_le(out, 0, 4)) < 0 || (rc = put_le(out, REC_ENTRY, 1)) < 0 ||
	    (rc = st_buf_put(out, f, sizeof(f))) < 0 || (rc = put_str16(out, e->path)) < 0 ||
	    (rc = put_str16(out, e->target)) < 0 || (rc = put_le(out, e->nxattr, 2)) < 0)
		goto out;
	for (size_t i = 0; i < e->nxattr; i++) {
		const struct st_tree_xattr *x = &e->xattrs[i];

		if ((rc = put_str16(out, x->name)) < 0 || (rc = put_le(out, x->len, 4)) < 0 ||
		    (rc = st_buf_put(out, x->value, x->len)) < 0)
			goto out;
	}
	rc = close_record(out, at);
out:
	if (rc < 0) {
		out->len = at; /* never leave half a record behind */
		if (out->ptr != NULL)
			out->ptr[at] = '\0';
	}
	return rc;
}

int st_tree_put_chunks(struct st_buf *out, const struct st_tree_chunk *c, size_t n)
{
	size_t at = out->len;
	int rc;

	if (n == 0 || n > ST_TREE_CHUNKS_PER_RECORD)
		return ST_EINVAL;
	if ((rc = put_le(out, 0, 4)) < 0 || (rc = put_le(out, REC_CHUNKS, 1)) < 0 ||
	    (rc = put_le(out, n, 4)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if ((rc = put_le(out, c[i].off, 8)) < 0 || (rc = put_le(out, c[i].len, 4)) < 0 ||
		    (rc = st_buf_put(out, c[i].id, ST_TREE_ID_LEN)) < 0)
			goto out;
	}
	rc = close_record(out, at);
out:
	if (rc < 0)
		out->len = at;
	return rc;
}

void st_tree_decoder_init(struct st_tree_decoder *d)
{
	memset(d, 0, sizeof(*d));
	st_buf_init(&d->pending, ST_TREE_RECORD_MAX + 4);
}

void st_tree_decoder_dispose(struct st_tree_decoder *d)
{
	st_buf_dispose(&d->pending);
}

/* A bounded cursor over one record. */
struct cur {
	uint8_t *p;
	size_t left;
	bool bad;
};

static uint64_t take(struct cur *c, int n)
{
	uint64_t v;

	if (c->bad || c->left < (size_t)n) {
		c->bad = true;
		return 0;
	}
	v = le_get(c->p, n);
	c->p += n;
	c->left -= (size_t)n;
	return v;
}

/*
 * Reads a 16-bit-length string and NUL-terminates it in place by moving it
 * one byte back over its length field, so the record buffer holds C strings.
 */
static const char *take_str(struct cur *c)
{
	size_t n = (size_t)take(c, 2);
	char *s;

	if (c->bad || n > c->left || n > ST_TREE_PATH_MAX) {
		c->bad = true;
		return "";
	}
	s = (char *)c->p - 1;
	memmove(s, c->p, n);
	if (memchr(s, '\0', n) != NULL) {
		c->bad = true;
		return "";
	}
	s[n] = '\0';
	c->p += n;
	c->left -= n;
	return s;
}

static bool valid_path(const char *p)
{
	if (strcmp(p, ".") == 0)
		return true;
	if (p[0] == '\0' || p[0] == '/')
		return false;
	while (*p != '\0') {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/' && *++p == '\0')
			return false;
	}
	return true;
}

static int decode_entry(struct st_tree_decoder *d, struct cur *c, const struct st_tree_visitor *v)
{
	struct st_tree_entry *e = &d->cur;

	e->type = (enum st_tree_type)take(c, 1);
	e->mode = (uint32_t)take(c, 4);
	e->uid = (uint32_t)take(c, 4);
	e->gid = (uint32_t)take(c, 4);
	e->mtime_s = (int64_t)take(c, 8);
	e->mtime_ns = (uint32_t)take(c, 4);
	e->atime_s = (int64_t)take(c, 8);
	e->atime_ns = (uint32_t)take(c, 4);
	e->size = take(c, 8);
	e->rdev = take(c, 8);
	e->path = take_str(c);
	e->target = take_str(c);
	e->nxattr = (size_t)take(c, 2);
	if (c->bad || e->type < ST_TREE_FILE || e->type > ST_TREE_SOCK ||
	    e->nxattr > ST_TREE_XATTRS_MAX || e->mtime_ns >= 1000000000u ||
	    e->atime_ns >= 1000000000u || !valid_path(e->path))
		return ST_EPROTO;
	if ((e->type == ST_TREE_HARDLINK && !valid_path(e->target)) ||
	    (e->type == ST_TREE_SYMLINK && e->target[0] == '\0'))
		return ST_EPROTO;
	for (size_t i = 0; i < e->nxattr; i++) {
		struct st_tree_xattr *x = &e->xattrs[i];

		x->name = take_str(c);
		x->len = (uint32_t)take(c, 4);
		if (c->bad || x->name[0] == '\0' || x->len > c->left)
			return ST_EPROTO;
		x->value = c->p;
		c->p += x->len;
		c->left -= x->len;
	}
	if (c->left != 0)
		return ST_EPROTO;
	d->have_file = e->type == ST_TREE_FILE;
	return v->entry != NULL ? v->entry(e, v->payload) : 0;
}

static int decode_chunks(struct st_tree_decoder *d, struct cur *c, const struct st_tree_visitor *v)
{
	struct st_tree_chunk ch[64];
	size_t n = (size_t)take(c, 4);
	size_t k = 0;
	int rc;

	if (c->bad || !d->have_file || n == 0 || n > ST_TREE_CHUNKS_PER_RECORD ||
	    c->left != n * CHUNK_SIZE)
		return ST_EPROTO;
	for (size_t i = 0; i < n; i++) {
		ch[k].off = take(c, 8);
		ch[k].len = (uint32_t)take(c, 4);
		memcpy(ch[k].id, c->p, ST_TREE_ID_LEN);
		c->p += ST_TREE_ID_LEN;
		c->left -= ST_TREE_ID_LEN;
		if (ch[k].len == 0 || ch[k].off + ch[k].len < ch[k].off ||
		    ch[k].off + ch[k].len > d->cur.size)
			return ST_EPROTO;
		if (++k == sizeof(ch) / sizeof(ch[0]) || i + 1 == n) {
			if (v->chunks != NULL && (rc = v->chunks(ch, k, v->payload)) != 0)
				return rc;
			k = 0;
		}
	}
	return 0;
}

static int decode_record(struct st_tree_decoder *d, uint8_t *p, size_t len,
                         const struct st_tree_visitor *v)
{
	struct cur c = { p, len, false };
	int kind = (int)take(&c, 1);

	d->records++;
	if (kind == REC_ENTRY)
		return decode_entry(d, &c, v);
	if (kind == REC_CHUNKS)
		return decode_chunks(d, &c, v);
	return ST_EPROTO;
}

int st_tree_decoder_feed(struct st_tree_decoder *d, const void *data, size_t n,
                         const struct st_tree_visitor *v)
{
	const uint8_t *in = data;
	int rc;

	while (n > 0) {
		struct st_buf *b = &d->pending;
		size_t need = 4;
		size_t take_n;

		if (b->len >= 4) {
			uint64_t rl = le_get((const uint8_t *)b->ptr, 4);

			if (rl == 0 || rl > ST_TREE_RECORD_MAX)
				return ST_EPROTO;
			need = 4 + (size_t)rl;
		}
		take_n = need - b->len < n ? need - b->len : n;
		if ((rc = st_buf_put(b, in, take_n)) < 0)
			return ST_EPROTO;
		in += take_n;
		n -= take_n;
		if (b->len == need && need > 4) {
			rc = decode_record(d, (uint8_t *)b->ptr + 4, need - 4, v);
			st_buf_clear(b);
			if (rc != 0)
				return rc;
		} else if (b->len == 4) {
			uint64_t rl = le_get((const uint8_t *)b->ptr, 4);

			if (rl == 0 || rl > ST_TREE_RECORD_MAX)
				return ST_EPROTO;
		}
	}
	return 0;
}

int st_tree_decoder_finish(const struct st_tree_decoder *d)
{
	return d->pending.len == 0 ? 0 : ST_EPROTO;
}

int st_tree_path_cmp(const char *a, const char *b)
{
	const unsigned char *x = (const unsigned char *)a;
	const unsigned char *y = (const unsigned char *)b;

	for (;; x++, y++) {
		unsigned cx = *x == '/' ? 1u : *x == 0 ? 0u : (unsigned)*x + 1u;
		unsigned cy = *y == '/' ? 1u : *y == 0 ? 0u : (unsigned)*y + 1u;

		if (cx != cy)
			return cx < cy ? -1 : 1;
		if (cx == 0)
			return 0;
	}
}
