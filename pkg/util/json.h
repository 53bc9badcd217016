/*
 * json-c helpers with the project's ownership rules written once.
 *
 * json-c: json_object_object_get_ex() borrows, json_object_object_add()
 * steals the value, json_object_put() releases. st_json_parse() bounds the
 * input size and nesting depth and reports the byte offset of a syntax error.
 * st_json_to_string() never escapes '/', as Kubernetes expects paths such as
 * "/metadata/annotations" to read naturally.
 */
#ifndef ST_PKG_UTIL_JSON_H
#define ST_PKG_UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

/*
 * Parses len bytes (no NUL needed) into *out (owned by the caller). Rejects
 * input over max_len, nesting deeper than ST_CAP_JSON_DEPTH, trailing bytes
 * and invalid UTF-8 with a message naming `what` and the offset.
 */
int st_json_parse(struct json_object **out, const char *data, size_t len, size_t max_len,
                  const char *what, struct st_err *err) ST_WARN_UNUSED;

/* Borrowed member lookups; NULL/false when absent or of another type. */
struct json_object *st_json_get(const struct json_object *obj, const char *key);
const char *st_json_get_str(const struct json_object *obj, const char *key);
struct json_object *st_json_get_obj(const struct json_object *obj, const char *key);
struct json_object *st_json_get_arr(const struct json_object *obj, const char *key);
bool st_json_get_bool(const struct json_object *obj, const char *key, bool dflt);

/* Compact text without '/' escaping; borrowed from obj (valid until it changes). */
const char *st_json_to_string(struct json_object *obj, size_t *len_out);

/* Adds key -> new string (steals nothing from the caller). */
void st_json_add_str(struct json_object *obj, const char *key, const char *val);

#endif
