#include "pkg/util/jsonw.h"

#include <stdio.h>
#include <string.h>

void st_jw_init(struct st_jw *w, struct st_buf *b)
{
	memset(w, 0, sizeof(*w));
	w->b = b;
	w->first[0] = true;
}

static void fail(struct st_jw *w, int rc)
{
	if (w->rc == 0)
		w->rc = rc;
}

static void put(struct st_jw *w, const char *s, size_t n)
{
	int rc;

	if (w->rc == 0 && (rc = st_buf_put(w->b, s, n)) < 0)
		fail(w, rc);
}

/* Writes the separator a value needs; false when a key was due instead. */
static bool before_value(struct st_jw *w)
{
	if (w->rc != 0)
		return false;
	if (w->want_key) {
		fail(w, ST_EINVAL);
		return false;
	}
	if (w->depth > 0 && w->is_obj[w->depth]) {
		/* The key wrote the separator; the next thing due is a key. */
		w->want_key = true;
		return true;
	}
	if (!w->first[w->depth]) {
		if (w->depth == 0) {
			fail(w, ST_EINVAL); /* one value at the top */
			return false;
		}
		put(w, ",", 1);
	}
	w->first[w->depth] = false;
	return w->rc == 0;
}

static void open_container(struct st_jw *w, bool obj)
{
	if (!before_value(w))
		return;
	if (w->depth == ST_JW_DEPTH) {
		fail(w, ST_EINVAL);
		return;
	}
	put(w, obj ? "{" : "[", 1);
	w->depth++;
	w->first[w->depth] = true;
	w->is_obj[w->depth] = obj;
	w->want_key = obj;
}

void st_jw_obj(struct st_jw *w)
{
	open_container(w, true);
}

void st_jw_arr(struct st_jw *w)
{
	open_container(w, false);
}

void st_jw_end(struct st_jw *w)
{
	if (w->rc != 0)
		return;
	/* An object may close only where a key would come, never after a bare key. */
	if (w->depth == 0 || (w->is_obj[w->depth] && !w->want_key)) {
		fail(w, ST_EINVAL);
		return;
	}
	put(w, w->is_obj[w->depth] ? "}" : "]", 1);
	w->depth--;
	w->want_key = w->depth > 0 && w->is_obj[w->depth];
}

size_t st_json_escape(char out[6], unsigned char c)
{
	static const char from[] = "\"\\\b\f\n\r\t";
	static const char to[] = "\"\\bfnrt";
	static const char hex[] = "0123456789abcdef";
	const char *k;

	if (c >= 0x20 && c != '"' && c != '\\')
		return 0;
	out[0] = '\\';
	if ((k = memchr(from, c, sizeof(from) - 1)) != NULL) {
		out[1] = to[k - from];
		return 2;
	}
	memcpy(out + 1, "u00", 3);
	out[4] = hex[c >> 4];
	out[5] = hex[c & 15];
	return 6;
}

int st_json_quote(struct st_buf *b, const char *s, size_t n)
{
	size_t run = 0;
	int rc = st_buf_reserve(b, n + 2);

	if (rc == 0)
		rc = st_buf_putc(b, '"');
	for (size_t i = 0; i < n && rc == 0; i++) {
		char esc[6];
		size_t elen = st_json_escape(esc, (unsigned char)s[i]);

		if (elen == 0)
			continue;
		rc = st_buf_put(b, s + run, i - run);
		run = i + 1;
		if (rc == 0)
			rc = st_buf_put(b, esc, elen);
	}
	if (rc == 0)
		rc = st_buf_put(b, s + run, n - run);
	if (rc == 0)
		rc = st_buf_putc(b, '"');
	return rc;
}

void st_jw_key(struct st_jw *w, const char *key)
{
	int rc;

	if (w->rc != 0)
		return;
	if (w->depth == 0 || !w->is_obj[w->depth] || !w->want_key) {
		fail(w, ST_EINVAL);
		return;
	}
	if (!w->first[w->depth])
		put(w, ",", 1);
	w->first[w->depth] = false;
	if (w->rc == 0 && (rc = st_json_quote(w->b, key, strlen(key))) < 0)
		fail(w, rc);
	put(w, ":", 1);
	w->want_key = false;
}

void st_jw_strn(struct st_jw *w, const char *s, size_t n)
{
	int rc;

	if (before_value(w) && (rc = st_json_quote(w->b, s, n)) < 0)
		fail(w, rc);
}

void st_jw_str(struct st_jw *w, const char *s)
{
	st_jw_strn(w, s, strlen(s));
}

void st_jw_kstr(struct st_jw *w, const char *key, const char *s)
{
	st_jw_key(w, key);
	st_jw_str(w, s);
}

void st_jw_int(struct st_jw *w, long long v)
{
	char t[24];
	int n = snprintf(t, sizeof(t), "%lld", v);

	if (before_value(w))
		put(w, t, (size_t)n);
}

void st_jw_bool(struct st_jw *w, bool v)
{
	if (before_value(w))
		put(w, v ? "true" : "false", v ? 4 : 5);
}

void st_jw_raw(struct st_jw *w, const char *json, size_t n)
{
	if (before_value(w))
		put(w, json, n);
}

void st_jw_base64(struct st_jw *w, const void *data, size_t n)
{
	static const char tbl[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *in = data;
	char quad[4 * 64];
	size_t q = 0;

	if (!before_value(w))
		return;
	put(w, "\"", 1);
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;

		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		quad[q++] = tbl[(v >> 18) & 63];
		quad[q++] = tbl[(v >> 12) & 63];
		quad[q++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		quad[q++] = i + 2 < n ? tbl[v & 63] : '=';
		if (q == sizeof(quad)) {
			put(w, quad, q);
			q = 0;
		}
	}
	put(w, quad, q);
	put(w, "\"", 1);
}

int st_jw_finish(struct st_jw *w)
{
	if (w->rc == 0 && w->depth != 0)
		fail(w, ST_EINVAL);
	return w->rc;
}
