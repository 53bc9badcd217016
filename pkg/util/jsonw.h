/*
 * st_jw: writes compact JSON text straight into an st_buf.
 *
 * For answers built on a hot path (the admission webhook), where building a
 * json-c tree only to print it costs an allocation per member. The writer
 * puts the commas and colons; strings are escaped as RFC 8259 requires and
 * '/' is left alone, as st_json_to_string() does. Errors are sticky: the
 * first one (the buffer's cap, nesting past ST_JW_DEPTH, a value where a key
 * belongs) is kept and returned by st_jw_finish(), and the calls after it do
 * nothing, so callers check once at the end.
 */
#ifndef ST_PKG_UTIL_JSONW_H
#define ST_PKG_UTIL_JSONW_H

#include <stdbool.h>
#include <stddef.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

#define ST_JW_DEPTH 16

struct st_jw {
	struct st_buf *b;
	int rc;
	unsigned depth;
	bool want_key;               /* inside an object, before a key */
	bool first[ST_JW_DEPTH + 1]; /* no member written yet at this depth */
	bool is_obj[ST_JW_DEPTH + 1];
};

/* Appends to b (which keeps its contents). */
void st_jw_init(struct st_jw *w, struct st_buf *b);
void st_jw_obj(struct st_jw *w);
void st_jw_arr(struct st_jw *w);
/* Closes the innermost object or array. */
void st_jw_end(struct st_jw *w);
void st_jw_key(struct st_jw *w, const char *key);
void st_jw_str(struct st_jw *w, const char *s);
void st_jw_strn(struct st_jw *w, const char *s, size_t n);
void st_jw_int(struct st_jw *w, long long v);
void st_jw_bool(struct st_jw *w, bool v);
/* A value that is already JSON text (not checked). */
void st_jw_raw(struct st_jw *w, const char *json, size_t n);
/* The value as a base64 string (standard alphabet, padded). */
void st_jw_base64(struct st_jw *w, const void *data, size_t n);
/* key: "value", a member in one call. */
void st_jw_kstr(struct st_jw *w, const char *key, const char *s);
/* 0, or the first error; ST_EINVAL when an object or array is still open. */
int st_jw_finish(struct st_jw *w) ST_WARN_UNUSED;

/*
 * The escape RFC 8259 requires for byte c (quote, backslash, control bytes;
 * the short forms where there is one), written to out: its length, 2 or 6,
 * or 0 when c stands as it is.
 */
size_t st_json_escape(char out[6], unsigned char c);
/* Appends s as a quoted JSON string to b. */
int st_json_quote(struct st_buf *b, const char *s, size_t n) ST_WARN_UNUSED;

#endif
