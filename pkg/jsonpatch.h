/*
 * JSON Pointer (RFC 6901) and JSON Patch (RFC 6902) on json-c documents.
 *
 * A pointer is "" (the whole document) or a sequence of "/token" reference
 * tokens in which "~1" stands for '/' and "~0" for '~'. Array indices are
 * decimal without leading zeros; "-" names the slot after the last element
 * and is accepted only where RFC 6902 allows it (the target of add, move and
 * copy).
 *
 * st_jsonpatch_apply() is atomic: it works on a deep copy and swaps it in only
 * when every operation succeeded, so a failed patch leaves the caller's
 * document untouched. Pointers are bounded to ST_CAP_JSON_DEPTH tokens, the
 * document may not nest deeper than ST_CAP_JSON_DEPTH, and the growth a patch
 * may cause (nodes plus string and key bytes inserted) is bounded by
 * ST_CAP_PATCH, so copy operations cannot blow up memory.
 *
 * st_jsonpatch_diff() generates a patch turning one document into another;
 * st_jsonpatch_add_op() and friends build patches for the admission webhook.
 * Error messages name the operation by its 0-based index in the patch and its
 * path: "patch op 3 (remove /a/b): path not found".
 *
 * Nothing here keeps global state; every function is thread-safe as long as
 * callers do not share the json objects they pass across threads.
 */
#ifndef ST_PKG_JSONPATCH_H
#define ST_PKG_JSONPATCH_H

#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

/* The most operations one patch may hold. */
#define ST_JSONPATCH_MAX_OPS 65536u

/* A parsed JSON Pointer: n unescaped, NUL-terminated reference tokens. */
struct st_jsonpatch_pointer {
	char **tokens;
	size_t n;
};

#define ST_JSONPATCH_POINTER_INIT \
	{                         \
		NULL, 0           \
	}

/*
 * Parses len bytes of ptr (no NUL needed) into out, which the caller releases
 * with st_jsonpatch_pointer_dispose() (also after a failure). Returns
 * ST_EINVAL when ptr is neither "" nor starts with '/', holds a '~' not
 * followed by '0' or '1', or holds a NUL byte; ST_ETOOBIG over
 * ST_CAP_JSON_DEPTH tokens.
 */
int st_jsonpatch_pointer_parse(struct st_jsonpatch_pointer *out, const char *ptr, size_t len,
                               struct st_err *err) ST_WARN_UNUSED;

/* Frees the tokens; p may be reused after. NULL-safe. */
void st_jsonpatch_pointer_dispose(struct st_jsonpatch_pointer *p);

/*
 * Resolves the NUL-terminated pointer ptr in doc and stores the value in *out,
 * borrowed from doc (NULL for a JSON null). Returns ST_ENOTFOUND when the
 * location does not exist, ST_EINVAL for a malformed pointer.
 */
int st_jsonpatch_pointer_get(struct json_object **out, const struct json_object *doc,
                             const char *ptr, struct st_err *err) ST_WARN_UNUSED;

/*
 * Appends key to out as one reference token, '~' escaped as "~0" and '/' as
 * "~1" (no leading '/'). Returns ST_ETOOBIG past the buffer's cap, leaving
 * out as it was.
 */
int st_jsonpatch_escape_token(struct st_buf *out, const char *key) ST_WARN_UNUSED;

/* Appends '/' and the escaped key: builds "/metadata/annotations/a~1b". */
int st_jsonpatch_path_append(struct st_buf *out, const char *key) ST_WARN_UNUSED;

/*
 * Applies patch (a JSON array of operations; borrowed, never modified) to
 * *doc_inout, a reference the caller owns (take one with json_object_get()
 * when the document is a member of a larger object). On success that
 * reference is released and *doc_inout points to the patched document (NULL
 * for a JSON null). On failure *doc_inout is untouched and err says which
 * operation failed and why.
 * Returns ST_EINVAL for a malformed patch or a failed "test", ST_ENOTFOUND
 * when a location does not exist, ST_ETOOBIG when a cap is hit, ST_ENOMEM.
 */
int st_jsonpatch_apply(struct json_object **doc_inout, const struct json_object *patch,
                       struct st_err *err) ST_WARN_UNUSED;

/*
 * Text form: parses doc (at most cap bytes) and patch (at most ST_CAP_PATCH
 * bytes), applies, and stores the compact result ('/' not escaped) in *out
 * (heap, NUL-terminated, freed by the caller with free()) and its length in
 * *out_len. The result and the patch's growth are bounded by cap. *out is
 * NULL unless it returns 0. Codes as st_jsonpatch_apply().
 */
int st_jsonpatch_apply_text(char **out, size_t *out_len, const char *doc, size_t doc_len,
                            const char *patch, size_t patch_len, size_t cap,
                            struct st_err *err) ST_WARN_UNUSED;

/*
 * Generates in *patch_out (a new array, owned by the caller) a patch that
 * turns from into to. Objects are compared key by key, arrays element by
 * element (trailing elements removed or appended); anything else that differs
 * is replaced. Values deeper than ST_CAP_JSON_DEPTH are replaced whole.
 * Neither input is modified. Returns ST_ETOOBIG when a path exceeds
 * ST_CAP_PATCH, ST_ENOMEM.
 */
int st_jsonpatch_diff(struct json_object **patch_out, const struct json_object *from,
                      const struct json_object *to) ST_WARN_UNUSED;

/*
 * Appends {"op": op, "path": path, "value": value} to patch_array. op is
 * "add", "replace", "test" (value required; NULL is a JSON null) or "remove"
 * (value must be NULL). value is taken in every case, also on failure.
 * Returns ST_EINVAL for another op, a malformed path or a value for remove.
 */
int st_jsonpatch_add_op(struct json_object *patch_array, const char *op, const char *path,
                        struct json_object *value) ST_WARN_UNUSED;

/* Appends {"op": op, "from": from, "path": path}; op is "move" or "copy". */
int st_jsonpatch_add_from_op(struct json_object *patch_array, const char *op, const char *from,
                             const char *path) ST_WARN_UNUSED;

#endif
