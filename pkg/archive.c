#include "pkg/archive.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pkg/util/buf.h"
#include "pkg/util/mem.h"

#define BLOCK   512u
#define IO_SIZE (64u * 1024u)
/* The largest value of an 11-digit octal field (size, mtime) and of a 7-digit one (ids). */
#define OCTAL11 077777777777ULL
#define OCTAL7  07777777ULL
/* Extended headers ('x', 'g', 'L', 'K') are small; more is an attack or garbage. */
#define EXT_MAX (1u << 20)
/* zlib takes at most UINT_MAX bytes per call; feed it in slices well below. */
#define ZSLICE   (1u << 30)
#define PAX_NAME "././@PaxHeader"

/* Header field offsets and sizes (POSIX ustar). */
enum {
	H_NAME = 0,
	H_MODE = 100,
	H_UID = 108,
	H_GID = 116,
	H_SIZE = 124,
	H_MTIME = 136,
	H_CHKSUM = 148,
	H_TYPE = 156,
	H_LINK = 157,
	H_MAGIC = 257,
	H_VERSION = 263,
	H_UNAME = 265,
	H_GNAME = 297,
	H_DEVMAJOR = 329,
	H_DEVMINOR = 337,
	H_PREFIX = 345,
};

/* A read callback's negative return as an ST_E* code; anything outside the enum is EIO. */
static int cb_code(long got)
{
	return got < 0 && got >= ST_EINTERNAL ? (int)got : ST_EIO;
}

/* ---- names ---------------------------------------------------------------------------- */

/*
 * The one safety rule for names on both sides: relative, no `..`
 * component, no NUL (len covers the whole name), bounded.
 */
static const char *name_problem(const char *name, size_t len)
{
	size_t i = 0;

	if (len == 0)
		return "empty name";
	if (len > ST_ARCHIVE_NAME_MAX)
		return "name too long";
	if (memchr(name, '\0', len) != NULL)
		return "name contains a NUL byte";
	if (name[0] == '/')
		return "absolute name";
	while (i < len) {
		const char *slash = memchr(name + i, '/', len - i);
		size_t n = slash != NULL ? (size_t)(slash - (name + i)) : len - i;

		if (n == 2 && name[i] == '.' && name[i + 1] == '.')
			return "name has a '..' component";
		i += n + 1;
	}
	return NULL;
}

/* Drops leading "./" and trailing "/" in place; the bare top directory becomes ".". */
static void normalise(char *name)
{
	size_t skip = 0;
	size_t len;

	while (name[skip] == '.' && name[skip + 1] == '/') {
		skip += 2;
		while (name[skip] == '/')
			skip++;
	}
	len = strlen(name + skip);
	memmove(name, name + skip, len + 1);
	while (len > 0 && name[len - 1] == '/')
		name[--len] = '\0';
	if (len == 0 || strcmp(name, ".") == 0)
		memcpy(name, ".", 2);
}

/* ---- writer --------------------------------------------------------------------------- */

struct st_archive_writer {
	z_stream z;
	bool z_ready;
	bool header_done;
	bool finished;
	int failed;
	uint32_t crc;
	uint64_t tar_bytes;
	uint64_t gz_bytes;
	st_archive_write_cb cb;
	void *payload;
	uint8_t out[IO_SIZE];
	uint8_t stage[IO_SIZE];
};

static int emit(struct st_archive_writer *w, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	if ((rc = w->cb(p, n, w->payload)) < 0)
		return rc;
	w->gz_bytes += n;
	return 0;
}

/* Compresses p[0..n) (or finishes the stream when finish is set) and emits full buffers. */
static int deflate_some(struct st_archive_writer *w, const uint8_t *p, size_t n, bool finish)
{
	int rc;

	/* crc32() with a NULL buffer returns the initial value, so skip empty input. */
	if (n > 0)
		w->crc = (uint32_t)crc32(w->crc, p, (uInt)n);
	w->tar_bytes += n;
	w->z.next_in = (Bytef *)(uintptr_t)p;
	w->z.avail_in = (uInt)n;
	for (;;) {
		int zr = deflate(&w->z, finish ? Z_FINISH : Z_NO_FLUSH);

		if (zr == Z_STREAM_ERROR)
			return ST_EINTERNAL;
		if (w->z.avail_out == 0 || zr == Z_STREAM_END) {
			if ((rc = emit(w, w->out, IO_SIZE - w->z.avail_out)) < 0)
				return rc;
			w->z.next_out = w->out;
			w->z.avail_out = IO_SIZE;
		}
		if (zr == Z_STREAM_END || (!finish && w->z.avail_in == 0))
			return 0;
	}
}

static int put(struct st_archive_writer *w, const void *data, size_t n)
{
	/* A fixed gzip header: no name, no time, OS "unknown", so output is reproducible. */
	static const uint8_t gz_header[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff };
	const uint8_t *p = data;
	int rc;

	if (!w->header_done) {
		if ((rc = emit(w, gz_header, sizeof(gz_header))) < 0)
			return rc;
		w->header_done = true;
	}
	while (n > 0) {
		size_t k = n < ZSLICE ? n : ZSLICE;

		if ((rc = deflate_some(w, p, k, false)) < 0)
			return rc;
		p += k;
		n -= k;
	}
	return 0;
}

static int put_zeros(struct st_archive_writer *w, size_t n)
{
	static const uint8_t zeros[BLOCK];

	return put(w, zeros, n);
}

int st_archive_writer_new(struct st_archive_writer **out, st_archive_write_cb cb, void *payload)
{
	struct st_archive_writer *w = NULL;
	int rc = ST_EINTERNAL;

	*out = NULL;
	ST_ASSERT(cb != NULL);
	w = st_xcalloc(1, sizeof(*w));
	w->cb = cb;
	w->payload = payload;
	w->crc = (uint32_t)crc32(0, Z_NULL, 0);
	/* Raw deflate: the gzip header and trailer are ours, to keep them fixed. */
	if (deflateInit2(&w->z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		rc = ST_ENOMEM;
		goto out;
	}
	w->z_ready = true;
	w->z.next_out = w->out;
	w->z.avail_out = IO_SIZE;
	*out = w;
	w = NULL; /* transferred */
	rc = 0;
out:
	st_archive_writer_free(w);
	return rc;
}

void st_archive_writer_free(struct st_archive_writer *w)
{
	if (w == NULL)
		return;
	if (w->z_ready)
		(void)deflateEnd(&w->z);
	free(w);
}

uint64_t st_archive_writer_tar_bytes(const struct st_archive_writer *w)
{
	return w->tar_bytes;
}

uint64_t st_archive_writer_gz_bytes(const struct st_archive_writer *w)
{
	return w->gz_bytes;
}

/* Writes v as zero-padded octal into f[0..n-1) with a NUL in f[n-1]. */
static void put_octal(uint8_t *f, size_t n, uint64_t v)
{
	f[n - 1] = '\0';
	for (size_t i = n - 1; i-- > 0;) {
		f[i] = (uint8_t)('0' + (v & 7));
		v >>= 3;
	}
}

/* Appends one "len key=value\n" record, len counting its own digits. */
static int pax_record(struct st_buf *b, const char *key, const char *value)
{
	size_t base = strlen(key) + strlen(value) + 3;
	size_t len = base + 1;
	char digits[24];

	/* The length includes its own decimal digits: grow until it is a fixed point. */
	while ((size_t)snprintf(digits, sizeof(digits), "%zu", len) + base != len)
		len = (size_t)snprintf(digits, sizeof(digits), "%zu", len) + base;
	return st_buf_printf(b, "%zu %s=%s\n", len, key, value);
}

static int pax_number(struct st_buf *b, const char *key, long long signed_v, uint64_t v,
                      bool is_signed)
{
	char text[32];

	if (is_signed)
		(void)snprintf(text, sizeof(text), "%lld", signed_v);
	else
		(void)snprintf(text, sizeof(text), "%" PRIu64, v);
	return pax_record(b, key, text);
}

struct wentry {
	const char *name;
	size_t name_len;
	char type;
	uint64_t size;
	struct st_archive_meta m;
};

static void fill_header(uint8_t h[BLOCK], const struct wentry *e, const char *name, size_t name_len)
{
	unsigned sum = 0;

	memset(h, 0, BLOCK);
	memcpy(h + H_NAME, name, name_len < 100 ? name_len : 100);
	put_octal(h + H_MODE, 8, e->m.mode & 07777);
	put_octal(h + H_UID, 8, e->m.uid <= OCTAL7 ? e->m.uid : 0);
	put_octal(h + H_GID, 8, e->m.gid <= OCTAL7 ? e->m.gid : 0);
	put_octal(h + H_SIZE, 12, e->size <= OCTAL11 ? e->size : 0);
	put_octal(h + H_MTIME, 12,
	          e->m.mtime >= 0 && (uint64_t)e->m.mtime <= OCTAL11 ? (uint64_t)e->m.mtime : 0);
	h[H_TYPE] = (uint8_t)e->type;
	memcpy(h + H_MAGIC, "ustar", 6);
	memcpy(h + H_VERSION, "00", 2);
	if (e->m.uname != NULL)
		memcpy(h + H_UNAME, e->m.uname, strlen(e->m.uname));
	if (e->m.gname != NULL)
		memcpy(h + H_GNAME, e->m.gname, strlen(e->m.gname));
	put_octal(h + H_DEVMAJOR, 8, 0);
	put_octal(h + H_DEVMINOR, 8, 0);
	memset(h + H_CHKSUM, ' ', 8);
	for (size_t i = 0; i < BLOCK; i++)
		sum += h[i];
	put_octal(h + H_CHKSUM, 7, sum);
	h[H_CHKSUM + 7] = ' ';
}

/* The pax records an entry needs, if any, into b. */
static int pax_records(struct st_buf *b, const struct wentry *e)
{
	int rc = 0;

	if (e->name_len > 100) {
		char *copy = st_xstrndup(e->name, e->name_len);

		rc = pax_record(b, "path", copy);
		free(copy);
	}
	if (rc == 0 && e->size > OCTAL11)
		rc = pax_number(b, "size", 0, e->size, false);
	if (rc == 0 && (e->m.mtime < 0 || (uint64_t)e->m.mtime > OCTAL11))
		rc = pax_number(b, "mtime", e->m.mtime, 0, true);
	if (rc == 0 && e->m.uid > OCTAL7)
		rc = pax_number(b, "uid", 0, e->m.uid, false);
	if (rc == 0 && e->m.gid > OCTAL7)
		rc = pax_number(b, "gid", 0, e->m.gid, false);
	return rc;
}

static int write_header(struct st_archive_writer *w, const struct wentry *e)
{
	struct st_buf pax = ST_BUF_INIT(2 * ST_ARCHIVE_NAME_MAX);
	uint8_t h[BLOCK];
	int rc = ST_EINTERNAL;

	if ((rc = pax_records(&pax, e)) < 0)
		goto out;
	if (pax.len > 0) {
		struct wentry x = *e;

		x.type = 'x';
		x.size = pax.len;
		x.m.uid = x.m.gid = 0;
		x.m.mode = 0644;
		fill_header(h, &x, PAX_NAME, strlen(PAX_NAME));
		if ((rc = put(w, h, BLOCK)) < 0 || (rc = put(w, pax.ptr, pax.len)) < 0 ||
		    (rc = put_zeros(w, (BLOCK - pax.len % BLOCK) % BLOCK)) < 0)
			goto out;
	}
	fill_header(h, e, e->name, e->name_len);
	if ((rc = put(w, h, BLOCK)) < 0)
		goto out;
	rc = 0;
out:
	st_buf_dispose(&pax);
	return rc;
}

/* Fills e, then checks the writer's state, the name and meta. */
static int begin_entry(struct wentry *e, struct st_archive_writer *w, const char *name, char type,
                       uint64_t size, const struct st_archive_meta *meta, struct st_err *err)
{
	static const struct st_archive_meta defaults = ST_ARCHIVE_META_INIT;
	const char *why = NULL;

	e->name = name != NULL ? name : "";
	e->name_len = strnlen(e->name, ST_ARCHIVE_NAME_MAX + 1);
	e->type = type;
	e->size = size;
	e->m = meta != NULL ? *meta : defaults;
	if (e->m.mode == 0)
		e->m.mode = type == '5' ? 0755 : 0644;
	if (w->failed != 0 || w->finished)
		why = w->finished ? "writer already finished" : "writer failed earlier";
	else if (type == '0' && e->name_len > 0 && e->name[e->name_len - 1] == '/')
		why = "file name ends in '/'";
	else if ((e->m.uname != NULL && strlen(e->m.uname) > 31) ||
	         (e->m.gname != NULL && strlen(e->m.gname) > 31) || e->m.mode > 07777)
		why = "bad mode, user or group name";
	else
		why = name_problem(e->name, e->name_len);
	if (why == NULL)
		return 0;
	(void)st_err_set(err, ST_EINVAL, "archive: %s: \"%.200s\"", why, e->name);
	return ST_EINVAL;
}

int st_archive_writer_add_dir(struct st_archive_writer *w, const char *name,
                              const struct st_archive_meta *meta, struct st_err *err)
{
	struct wentry e;
	char *slashed = NULL;
	int rc = ST_EINTERNAL;

	if ((rc = begin_entry(&e, w, name, '5', 0, meta, err)) < 0)
		return rc;
	if (name[e.name_len - 1] != '/') {
		slashed = st_xmalloc(e.name_len + 2);
		memcpy(slashed, name, e.name_len);
		memcpy(slashed + e.name_len, "/", 2);
		e.name = slashed;
		e.name_len++;
	}
	if ((rc = write_header(w, &e)) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		w->failed = rc;
	free(slashed);
	return rc;
}

/* Pads the content of size bytes to the next block. */
static int pad_content(struct st_archive_writer *w, uint64_t size)
{
	return put_zeros(w, (size_t)((BLOCK - size % BLOCK) % BLOCK));
}

int st_archive_writer_add_file(struct st_archive_writer *w, const char *name,
                               const struct st_archive_meta *meta, const void *data, size_t len,
                               struct st_err *err)
{
	struct wentry e;
	int rc = ST_EINTERNAL;

	if ((rc = begin_entry(&e, w, name, '0', len, meta, err)) < 0)
		return rc;
	if ((rc = write_header(w, &e)) < 0 || (rc = put(w, data, len)) < 0 ||
	    (rc = pad_content(w, len)) < 0) {
		w->failed = rc;
		return st_err_set(err, rc, "archive: writing \"%.200s\": %s", name,
		                  st_strerror(rc));
	}
	return 0;
}

int st_archive_writer_add_stream(struct st_archive_writer *w, const char *name,
                                 const struct st_archive_meta *meta, uint64_t size,
                                 st_archive_read_cb cb, void *payload, struct st_err *err)
{
	struct wentry e;
	uint64_t left = size;
	int rc = ST_EINTERNAL;

	if ((rc = begin_entry(&e, w, name, '0', size, meta, err)) < 0)
		return rc;
	if ((rc = write_header(w, &e)) < 0)
		goto out;
	while (left > 0) {
		size_t ask = left < IO_SIZE ? (size_t)left : IO_SIZE;
		long got = cb(w->stage, ask, payload);

		if (got < 0 || (size_t)got > ask) {
			rc = got < 0 ? cb_code(got) : ST_EINTERNAL;
			goto out;
		}
		if (got == 0) {
			rc = st_err_set(err, ST_EIO,
			                "archive: \"%.200s\": source ended %" PRIu64
			                " bytes short of %" PRIu64,
			                name, left, size);
			goto out;
		}
		if ((rc = put(w, w->stage, (size_t)got)) < 0)
			goto out;
		left -= (uint64_t)got;
	}
	if ((rc = pad_content(w, size)) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		w->failed = rc;
		(void)st_err_set(err, rc, "archive: writing \"%.200s\": %s", name, st_strerror(rc));
	}
	return rc;
}

int st_archive_writer_finish(struct st_archive_writer *w, struct st_err *err)
{
	uint8_t trailer[8];
	int rc = ST_EINTERNAL;

	if (w->failed != 0 || w->finished)
		return st_err_set(err, ST_EINVAL, "archive writer: %s",
		                  w->finished ? "already finished" : "failed earlier");
	if ((rc = put_zeros(w, BLOCK)) < 0 || (rc = put_zeros(w, BLOCK)) < 0 ||
	    (rc = deflate_some(w, NULL, 0, true)) < 0)
		goto out;
	/* The gzip trailer: CRC-32 and length mod 2^32, little-endian. */
	for (int i = 0; i < 4; i++) {
		trailer[i] = (uint8_t)(w->crc >> (8 * i));
		trailer[4 + i] = (uint8_t)(w->tar_bytes >> (8 * i));
	}
	if ((rc = emit(w, trailer, sizeof(trailer))) < 0)
		goto out;
	w->finished = true;
	rc = 0;
out:
	if (rc < 0) {
		w->failed = rc;
		(void)st_err_set(err, rc, "archive: finishing: %s", st_strerror(rc));
	}
	return rc;
}

/* ---- reader --------------------------------------------------------------------------- */

struct st_archive_reader {
	z_stream z;
	bool z_ready;
	bool member_end; /* the current gzip member is complete */
	bool in_eof;
	bool done;
	int failed;
	struct st_archive_limits lim;
	st_archive_read_cb cb;
	void *payload;
	uint64_t pos;    /* uncompressed bytes consumed */
	uint64_t remain; /* content left in the current entry */
	uint64_t pad;    /* padding after it */
	uint64_t count;
	struct st_archive_entry ent;
	char *name;
	char *link;
	/* Overrides from pax and GNU headers, for the next entry only. */
	char *x_path;
	char *x_link;
	bool x_has_size, x_has_mtime, x_has_uid, x_has_gid;
	uint64_t x_size, x_uid, x_gid;
	long long x_mtime;
	uint8_t hdr[BLOCK];
	uint8_t in[IO_SIZE];
	uint8_t scratch[IO_SIZE];
};

static int fail(struct st_archive_reader *r, struct st_err *err, int code, const char *fmt, ...)
        ST_PRINTF(4, 5);

static int fail(struct st_archive_reader *r, struct st_err *err, int code, const char *fmt, ...)
{
	char msg[ST_ERR_MSG_SIZE];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->failed = code;
	(void)st_err_set(err, code, "archive: %s", msg);
	return code;
}

/* Refills the compressed input; sets in_eof at the end of the source. */
static int refill(struct st_archive_reader *r, struct st_err *err)
{
	long got = r->cb(r->in, sizeof(r->in), r->payload);

	if (got < 0)
		return fail(r, err, cb_code(got), "reading the source at offset %" PRIu64 ": %s",
		            r->pos, st_strerror(cb_code(got)));
	if ((size_t)got > sizeof(r->in))
		return fail(r, err, ST_EINTERNAL, "source returned more than asked");
	r->z.next_in = r->in;
	r->z.avail_in = (uInt)got;
	r->in_eof = got == 0;
	return 0;
}

/*
 * Inflates up to n bytes into dst; *got_out 0 means the stream ended
 * cleanly at a member boundary. Crossing into a next gzip member is allowed
 * unless stay is set (used to drain after the end blocks).
 */
static int inflate_some(size_t *got_out, struct st_archive_reader *r, uint8_t *dst, size_t n,
                        bool stay, struct st_err *err)
{
	int rc;

	*got_out = 0;
	if (stay && r->member_end)
		return 0;
	if (r->lim.max_total - r->pos < n)
		n = (size_t)(r->lim.max_total - r->pos);
	if (n == 0)
		return fail(r, err, ST_ETOOBIG,
		            "expands beyond %" PRIu64 " bytes (the total cap; a gzip bomb?)",
		            r->lim.max_total);
	if (n > ZSLICE)
		n = ZSLICE;
	r->z.next_out = dst;
	r->z.avail_out = (uInt)n;
	/* zlib may hold decoded bytes with no input left, so EOF is judged by its answer. */
	while (r->z.avail_out == n) {
		int zr;

		if (r->z.avail_in == 0 && !r->in_eof && (rc = refill(r, err)) < 0)
			return rc;
		if (r->member_end) {
			if (stay || (r->z.avail_in == 0 && r->in_eof))
				return 0;
			if (inflateReset(&r->z) != Z_OK)
				return fail(r, err, ST_EINTERNAL, "inflateReset");
			r->member_end = false;
		}
		zr = inflate(&r->z, Z_NO_FLUSH);
		if (zr == Z_STREAM_END)
			r->member_end = true;
		else if (zr == Z_BUF_ERROR && r->z.avail_in == 0 && r->in_eof)
			return fail(r, err, ST_EPROTO,
			            "truncated: the compressed stream ends at offset %" PRIu64,
			            r->pos);
		else if (zr != Z_OK && zr != Z_BUF_ERROR)
			return fail(r, err, ST_EPROTO,
			            "corrupt gzip data near offset %" PRIu64 ": %s", r->pos,
			            r->z.msg != NULL ? r->z.msg : "inflate failed");
	}
	*got_out = n - r->z.avail_out;
	r->pos += *got_out;
	return 0;
}

/* Reads exactly n bytes; *eof_out (if not NULL) is set when none at all were left. */
static int pull(struct st_archive_reader *r, uint8_t *dst, size_t n, bool *eof_out,
                struct st_err *err)
{
	size_t have = 0;
	int rc;

	while (have < n) {
		size_t got = 0;

		if ((rc = inflate_some(&got, r, dst + have, n - have, false, err)) < 0)
			return rc;
		if (got == 0) {
			if (have == 0 && eof_out != NULL) {
				*eof_out = true;
				return 0;
			}
			return fail(r, err, ST_EPROTO,
			            "truncated: the archive ends inside %s at offset %" PRIu64,
			            r->ent.name != NULL ? r->ent.name : "a header", r->pos);
		}
		have += got;
	}
	return 0;
}

static int skip(struct st_archive_reader *r, uint64_t n, struct st_err *err)
{
	int rc;

	while (n > 0) {
		size_t k = n < sizeof(r->scratch) ? (size_t)n : sizeof(r->scratch);

		if ((rc = pull(r, r->scratch, k, NULL, err)) < 0)
			return rc;
		n -= k;
	}
	return 0;
}

/* Numeric header field: octal (spaces/NUL around it) or GNU base-256. */
static int parse_number(uint64_t *out, const uint8_t *f, size_t n)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) {
		if (f[0] != 0x80)
			return ST_EPROTO; /* negative or too large */
		for (i = 1; i < n; i++) {
			if (v >> 55)
				return ST_EPROTO;
			v = (v << 8) | f[i];
		}
		*out = v;
		return 0;
	}
	while (i < n && f[i] == ' ')
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return ST_EPROTO;
		v = (v << 3) | (uint64_t)(f[i] - '0');
	}
	for (; i < n; i++) {
		if (f[i] != ' ' && f[i] != '\0')
			return ST_EPROTO;
	}
	*out = v;
	return 0;
}

static bool checksum_ok(const uint8_t *h)
{
	uint64_t want = 0;
	unsigned usum = 0;
	int ssum = 0;

	if (parse_number(&want, h + H_CHKSUM, 8) < 0)
		return false;
	for (size_t i = 0; i < BLOCK; i++) {
		uint8_t c = i >= H_CHKSUM && i < H_CHKSUM + 8 ? ' ' : h[i];

		usum += c;
		ssum += (signed char)c;
	}
	/* Some old writers summed signed chars; accept either. */
	return want == usum || (long long)want == (long long)ssum;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != 0)
			return false;
	}
	return true;
}

static void clear_overrides(struct st_archive_reader *r)
{
	free(r->x_path);
	free(r->x_link);
	r->x_path = r->x_link = NULL;
	r->x_has_size = r->x_has_mtime = r->x_has_uid = r->x_has_gid = false;
}

/* Parses a decimal value (pax); fractions of mtime are dropped. */
static int pax_decimal(uint64_t *out, bool *neg_out, const char *v, size_t n, bool allow_frac)
{
	uint64_t x = 0;
	size_t i = 0;

	*neg_out = false;
	if (n > 0 && v[0] == '-' && allow_frac) {
		*neg_out = true;
		i = 1;
	}
	if (i == n)
		return ST_EPROTO;
	for (; i < n && v[i] != '.'; i++) {
		if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX >> 1) / 10)
			return ST_EPROTO;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	if (i < n && !allow_frac)
		return ST_EPROTO;
	*out = x;
	return 0;
}

/* Applies one pax record key=value to the overrides. */
static int pax_apply(struct st_archive_reader *r, const char *key, size_t klen, const char *v,
                     size_t vlen)
{
	bool neg = false;
	uint64_t x = 0;

#define KEY_IS(s) (klen == sizeof(s) - 1 && memcmp(key, s, klen) == 0)
	if (KEY_IS("path") || KEY_IS("linkpath")) {
		char **slot = KEY_IS("path") ? &r->x_path : &r->x_link;

		if (vlen > ST_ARCHIVE_NAME_MAX || memchr(v, '\0', vlen) != NULL)
			return ST_EPROTO;
		free(*slot);
		*slot = st_xstrndup(v, vlen);
	} else if (KEY_IS("size") || KEY_IS("uid") || KEY_IS("gid")) {
		if (pax_decimal(&x, &neg, v, vlen, false) < 0)
			return ST_EPROTO;
		if (KEY_IS("size")) {
			r->x_size = x;
			r->x_has_size = true;
		} else if (KEY_IS("uid")) {
			r->x_uid = x;
			r->x_has_uid = true;
		} else {
			r->x_gid = x;
			r->x_has_gid = true;
		}
	} else if (KEY_IS("mtime")) {
		if (pax_decimal(&x, &neg, v, vlen, true) < 0)
			return ST_EPROTO;
		r->x_mtime = neg ? -(long long)x : (long long)x;
		r->x_has_mtime = true;
	}
#undef KEY_IS
	/* Other keys (atime, ctime, comment, charset, vendor keys) carry nothing we use. */
	return 0;
}

/* Parses the records of a pax extended header in p[0..n). */
static int pax_parse(struct st_archive_reader *r, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t len = 0;
		size_t j = i;
		const char *rec;
		const char *eq;

		while (j < n && p[j] >= '0' && p[j] <= '9' && len < EXT_MAX)
			len = len * 10 + (size_t)(p[j++] - '0');
		if (j == i || j >= n || p[j] != ' ' || len > n - i || j + 1 >= i + len ||
		    p[i + len - 1] != '\n')
			return ST_EPROTO;
		rec = p + j + 1;
		eq = memchr(rec, '=', (size_t)(p + i + len - 1 - rec));
		if (eq == NULL || eq == rec)
			return ST_EPROTO;
		if (pax_apply(r, rec, (size_t)(eq - rec), eq + 1,
		              (size_t)(p + i + len - 1 - (eq + 1))) < 0)
			return ST_EPROTO;
		i += len;
	}
	return 0;
}

/* Reads the data of an extended header ('x', 'g', 'L', 'K') into a NUL-terminated copy. */
static int read_ext(char **out, struct st_archive_reader *r, uint64_t size, uint64_t off,
                    struct st_err *err)
{
	char *p = NULL;
	int rc;

	*out = NULL;
	if (size > EXT_MAX)
		return fail(r, err, ST_ETOOBIG,
		            "extended header at offset %" PRIu64 " is %" PRIu64 " bytes", off,
		            size);
	p = st_xmalloc((size_t)size + 1);
	if ((rc = pull(r, (uint8_t *)p, (size_t)size, NULL, err)) < 0 ||
	    (rc = skip(r, (BLOCK - size % BLOCK) % BLOCK, err)) < 0) {
		free(p);
		return rc;
	}
	p[size] = '\0';
	*out = p;
	return 0;
}

/* Handles an extended header block; the next real header follows. */
static int handle_ext(struct st_archive_reader *r, char type, uint64_t size, uint64_t off,
                      struct st_err *err)
{
	char *data = NULL;
	int rc;

	if ((rc = read_ext(&data, r, size, off, err)) < 0)
		return rc;
	if (type == 'x' && pax_parse(r, data, (size_t)size) < 0) {
		rc = fail(r, err, ST_EPROTO, "corrupt pax header at offset %" PRIu64, off);
	} else if (type == 'L' || type == 'K') {
		/* GNU long names: the name, NUL-terminated, padded. */
		size_t len = strnlen(data, (size_t)size);
		char **slot = type == 'L' ? &r->x_path : &r->x_link;

		if (len > ST_ARCHIVE_NAME_MAX || !all_zero((uint8_t *)data + len, size - len)) {
			rc = fail(r, err, ST_EPROTO, "corrupt GNU long name at offset %" PRIu64,
			          off);
		} else {
			free(*slot);
			*slot = st_xstrndup(data, len);
		}
	}
	/* 'g' (global pax) carries nothing we use. */
	free(data);
	return rc;
}

static enum st_archive_type type_of(char t, bool *known)
{
	*known = true;
	switch (t) {
	case '0':
	case '\0':
	case '7':
		return ST_ARCHIVE_FILE;
	case '5':
		return ST_ARCHIVE_DIR;
	case '2':
		return ST_ARCHIVE_SYMLINK;
	case '1':
		return ST_ARCHIVE_HARDLINK;
	case '3':
	case '4':
	case '6':
		return ST_ARCHIVE_OTHER;
	default:
		*known = false;
		return ST_ARCHIVE_OTHER;
	}
}

/* A header field that may lack its NUL: copy at most n bytes. */
static size_t field_len(const uint8_t *f, size_t n)
{
	const void *nul = memchr(f, '\0', n);

	return nul != NULL ? (size_t)((const uint8_t *)nul - f) : n;
}

/* The entry's name from the overrides or the header (ustar prefix joined). */
static void header_name(struct st_archive_reader *r, const uint8_t *h)
{
	size_t nlen = field_len(h + H_NAME, 100);
	size_t plen = 0;

	free(r->name);
	if (r->x_path != NULL) {
		r->name = r->x_path;
		r->x_path = NULL;
		return;
	}
	/* Only POSIX ustar has a prefix; GNU keeps times in those bytes. */
	if (memcmp(h + H_MAGIC, "ustar\0", 6) == 0)
		plen = field_len(h + H_PREFIX, 155);
	r->name = st_xmalloc(plen + nlen + 2);
	memcpy(r->name, h + H_PREFIX, plen);
	if (plen > 0)
		r->name[plen++] = '/';
	memcpy(r->name + plen, h + H_NAME, nlen);
	r->name[plen + nlen] = '\0';
}

static void header_link(struct st_archive_reader *r, const uint8_t *h)
{
	size_t llen = field_len(h + H_LINK, 100);

	free(r->link);
	if (r->x_link != NULL) {
		r->link = r->x_link;
		r->x_link = NULL;
		return;
	}
	r->link = st_xstrndup((const char *)h + H_LINK, llen);
}

/* Fills r->ent from the header in r->hdr at offset off and the overrides. */
static int decode_header(struct st_archive_reader *r, uint64_t off, uint64_t size, bool known,
                         struct st_err *err)
{
	const uint8_t *h = r->hdr;
	uint64_t mode = 0, uid = 0, gid = 0, mtime = 0;
	const char *why;

	header_name(r, h);
	header_link(r, h);
	r->ent.name = r->name;
	why = name_problem(r->name, strlen(r->name));
	if (why != NULL)
		return fail(r, err, ST_EPROTO, "unsafe entry at offset %" PRIu64 ": %s: \"%.120s\"",
		            off, why, r->name);
	normalise(r->name);
	if (!known)
		return fail(r, err, ST_EPROTO,
		            "\"%.120s\" at offset %" PRIu64 ": unsupported type '%c'", r->name, off,
		            h[H_TYPE]);
	if (parse_number(&mode, h + H_MODE, 8) < 0 || parse_number(&uid, h + H_UID, 8) < 0 ||
	    parse_number(&gid, h + H_GID, 8) < 0 || parse_number(&mtime, h + H_MTIME, 12) < 0)
		return fail(r, err, ST_EPROTO,
		            "\"%.120s\" at offset %" PRIu64 ": corrupt header field", r->name, off);
	r->ent.linkname = r->link;
	r->ent.size = size;
	r->ent.mode = (unsigned)(mode & 07777);
	r->ent.mtime = r->x_has_mtime ? r->x_mtime : (long long)mtime;
	r->ent.uid = r->x_has_uid ? r->x_uid : uid;
	r->ent.gid = r->x_has_gid ? r->x_gid : gid;
	r->ent.offset = off;
	if (r->ent.type != ST_ARCHIVE_FILE && size != 0)
		return fail(r, err, ST_EPROTO,
		            "\"%.120s\" at offset %" PRIu64 ": %" PRIu64
		            " bytes of data on a non-file entry",
		            r->name, off, size);
	if (r->ent.type != ST_ARCHIVE_FILE && r->ent.type != ST_ARCHIVE_DIR &&
	    !r->lim.allow_special)
		return fail(r, err, ST_EPROTO,
		            "\"%.120s\" at offset %" PRIu64 ": links and special files are refused",
		            r->name, off);
	if (size > r->lim.max_entry_size)
		return fail(r, err, ST_ETOOBIG,
		            "\"%.120s\" at offset %" PRIu64 ": %" PRIu64
		            " bytes, over the cap of %" PRIu64,
		            r->name, off, size, r->lim.max_entry_size);
	if (++r->count > r->lim.max_entries)
		return fail(r, err, ST_ETOOBIG, "more than %" PRIu64 " entries",
		            r->lim.max_entries);
	return 0;
}

/* After the end blocks: inflate the rest of this gzip member so its CRC is checked. */
static int drain(struct st_archive_reader *r, struct st_err *err)
{
	size_t got = 1;
	int rc;

	while (got > 0) {
		if ((rc = inflate_some(&got, r, r->scratch, sizeof(r->scratch), true, err)) < 0)
			return rc;
	}
	r->done = true;
	return 0;
}

int st_archive_reader_next(const struct st_archive_entry **entry_out, struct st_archive_reader *r,
                           struct st_err *err)
{
	uint64_t start, off = 0, size = 0;
	bool eof = false, known = false;
	int rc;

	*entry_out = NULL;
	if (r->failed != 0)
		return st_err_set(err, r->failed, "archive: reader failed earlier");
	if (r->done)
		return 0;
	if ((rc = skip(r, r->remain + r->pad, err)) < 0)
		return rc;
	r->remain = r->pad = 0;
	r->ent.name = NULL;
	start = r->pos;
	for (;;) {
		off = r->pos;
		if ((rc = pull(r, r->hdr, BLOCK, &eof, err)) < 0)
			return rc;
		/* Writers that finish write zero blocks; a bare end means a lost tail. */
		if (eof)
			return fail(r, err, ST_EPROTO,
			            "truncated: the archive ends at offset %" PRIu64
			            " without its end-of-archive blocks",
			            off);
		if (all_zero(r->hdr, BLOCK)) {
			if (r->x_path != NULL || r->x_has_size)
				return fail(
				        r, err, ST_EPROTO,
				        "truncated: an extended header at the end has no entry");
			return drain(r, err);
		}
		if (memcmp(r->hdr + H_MAGIC, "ustar", 5) != 0 || !checksum_ok(r->hdr))
			return fail(r, err, ST_EPROTO, "corrupt header at offset %" PRIu64 "%s",
			            off, off == 0 ? " (not a tar archive?)" : "");
		if (parse_number(&size, r->hdr + H_SIZE, 12) < 0)
			return fail(r, err, ST_EPROTO, "corrupt size field at offset %" PRIu64,
			            off);
		if (strchr("xgLK", (char)r->hdr[H_TYPE]) == NULL || r->hdr[H_TYPE] == 0)
			break;
		if ((rc = handle_ext(r, (char)r->hdr[H_TYPE], size, off, err)) < 0)
			return rc;
	}
	if (r->x_has_size)
		size = r->x_size;
	r->ent.type = type_of((char)r->hdr[H_TYPE], &known);
	rc = decode_header(r, start, size, known, err);
	clear_overrides(r);
	if (rc < 0)
		return rc;
	r->remain = size;
	r->pad = (BLOCK - size % BLOCK) % BLOCK;
	*entry_out = &r->ent;
	return 0;
}

int st_archive_reader_read(size_t *got_out, struct st_archive_reader *r, void *buf, size_t cap,
                           struct st_err *err)
{
	size_t n = r->remain < cap ? (size_t)r->remain : cap;
	int rc;

	*got_out = 0;
	if (r->failed != 0)
		return st_err_set(err, r->failed, "archive: reader failed earlier");
	if (n == 0)
		return 0;
	if ((rc = pull(r, buf, n, NULL, err)) < 0)
		return rc;
	r->remain -= n;
	*got_out = n;
	return 0;
}

int st_archive_reader_new(struct st_archive_reader **out, const struct st_archive_limits *lim,
                          st_archive_read_cb cb, void *payload)
{
	static const struct st_archive_limits defaults = ST_ARCHIVE_LIMITS_INIT;
	struct st_archive_reader *r = NULL;
	int rc = ST_EINTERNAL;

	*out = NULL;
	ST_ASSERT(cb != NULL);
	r = st_xcalloc(1, sizeof(*r));
	r->lim = lim != NULL ? *lim : defaults;
	r->cb = cb;
	r->payload = payload;
	/* 16 + 15: gzip framing only, with the largest window. */
	if (inflateInit2(&r->z, 16 + 15) != Z_OK) {
		rc = ST_ENOMEM;
		goto out;
	}
	r->z_ready = true;
	*out = r;
	r = NULL; /* transferred */
	rc = 0;
out:
	st_archive_reader_free(r);
	return rc;
}

void st_archive_reader_free(struct st_archive_reader *r)
{
	if (r == NULL)
		return;
	if (r->z_ready)
		(void)inflateEnd(&r->z);
	clear_overrides(r);
	free(r->name);
	free(r->link);
	free(r);
}

int st_archive_extract(char **data_out, size_t *len_out, const char *name, size_t cap,
                       const struct st_archive_limits *lim, st_archive_read_cb cb, void *payload,
                       struct st_err *err)
{
	struct st_archive_reader *r = NULL;
	const struct st_archive_entry *e = NULL;
	char *want = NULL;
	char *data = NULL;
	size_t got = 0;
	int rc = ST_EINTERNAL;

	*data_out = NULL;
	*len_out = 0;
	want = st_xstrdup(name);
	normalise(want);
	if ((rc = st_archive_reader_new(&r, lim, cb, payload)) < 0)
		goto out;
	for (;;) {
		if ((rc = st_archive_reader_next(&e, r, err)) < 0)
			goto out;
		if (e == NULL) {
			rc = st_err_set(err, ST_ENOTFOUND, "archive: no file \"%.200s\"", want);
			goto out;
		}
		if (e->type == ST_ARCHIVE_FILE && strcmp(e->name, want) == 0)
			break;
	}
	if (e->size > cap || e->size >= SIZE_MAX) {
		rc = st_err_set(err, ST_ETOOBIG,
		                "archive: \"%.200s\" is %" PRIu64 " bytes, cap %zu", want, e->size,
		                cap);
		goto out;
	}
	data = st_xmalloc((size_t)e->size + 1);
	if ((rc = st_archive_reader_read(&got, r, data, (size_t)e->size, err)) < 0)
		goto out;
	data[got] = '\0';
	*len_out = got;
	*data_out = data;
	data = NULL; /* transferred */
	rc = 0;
out:
	free(data);
	free(want);
	st_archive_reader_free(r);
	return rc;
}

long st_archive_mem_read(void *buf, size_t cap, void *payload)
{
	struct st_archive_mem *m = payload;
	size_t n = m->len - m->off < cap ? m->len - m->off : cap;

	if (n > LONG_MAX)
		n = LONG_MAX;
	memcpy(buf, (const uint8_t *)m->data + m->off, n);
	m->off += n;
	return (long)n;
}

int st_archive_buf_write(const void *buf, size_t n, void *payload)
{
	return st_buf_put(payload, buf, n);
}
