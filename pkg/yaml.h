/*
 * YAML <-> json-c.
 *
 * Configuration files and Kubernetes manifests are YAML, but the rest of
 * stasis works on json-c trees, so YAML is converted on the way in and out.
 * Plain scalars are typed the way Kubernetes' YAML reader does it (null,
 * true/false, integers, floats; anything else is a string); quoted scalars
 * are always strings. Anchors and aliases are refused (no expansion bombs),
 * input size and depth are capped, and errors carry line and column.
 */
#ifndef ST_PKG_YAML_H
#define ST_PKG_YAML_H

#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

/*
 * Parses every document of a YAML stream into a json-c array (*out, owned by
 * the caller); empty documents are skipped. `what` names the input in errors.
 */
int st_yaml_parse_all(struct json_object **out, const char *data, size_t len, const char *what,
                      struct st_err *err) ST_WARN_UNUSED;

/* Parses a stream that must hold exactly one document (an empty one gives {}). */
int st_yaml_parse_one(struct json_object **out, const char *data, size_t len, const char *what,
                      struct st_err *err) ST_WARN_UNUSED;

/* Reads and parses a file of at most cap bytes as one document. */
int st_yaml_load_file(struct json_object **out, const char *path, size_t cap,
                      struct st_err *err) ST_WARN_UNUSED;

/* Appends obj as block-style YAML (keys in object order, strings quoted when needed). */
int st_yaml_emit(struct st_buf *out, struct json_object *obj) ST_WARN_UNUSED;

#endif
