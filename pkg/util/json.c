#include "pkg/util/json.h"

#include <string.h>

#include "pkg/util/caps.h"

int st_json_parse(struct json_object **out, const char *data, size_t len, size_t max_len,
                  const char *what, struct st_err *err)
{
	struct json_tokener *tok = NULL;
	struct json_object *obj = NULL;
	enum json_tokener_error jerr;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (len > max_len) {
		rc = st_err_set(err, ST_ETOOBIG, "%s is %zu bytes, over the limit of %zu", what,
		                len, max_len);
		goto out;
	}
	if (len > (size_t)INT32_MAX) {
		rc = st_err_set(err, ST_ETOOBIG, "%s is too large", what);
		goto out;
	}
	tok = json_tokener_new_ex(ST_CAP_JSON_DEPTH);
	if (tok == NULL) {
		rc = ST_ENOMEM;
		goto out;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, data, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		rc = st_err_set(err, ST_EINVAL, "%s: unexpected end of JSON after %zu bytes", what,
		                len);
		goto out;
	}
	if (jerr != json_tokener_success || obj == NULL) {
		rc = st_err_set(err, ST_EINVAL, "%s: invalid JSON at byte %zu: %s", what,
		                json_tokener_get_parse_end(tok), json_tokener_error_desc(jerr));
		goto out;
	}
	if (json_tokener_get_parse_end(tok) < len) {
		size_t end = json_tokener_get_parse_end(tok);

		while (end < len && data[end] != '\0' && strchr(" \t\r\n", data[end]) != NULL)
			end++;
		if (end < len) {
			rc = st_err_set(err, ST_EINVAL,
			                "%s: unexpected data after JSON at byte %zu", what, end);
			goto out;
		}
	}
	*out = obj;
	obj = NULL; /* transferred */
	rc = 0;
out:
	json_object_put(obj);
	if (tok != NULL)
		json_tokener_free(tok);
	return rc;
}

struct json_object *st_json_get(const struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	if (obj == NULL || !json_object_is_type(obj, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

const char *st_json_get_str(const struct json_object *obj, const char *key)
{
	struct json_object *v = st_json_get(obj, key);

	if (v == NULL || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

struct json_object *st_json_get_obj(const struct json_object *obj, const char *key)
{
	struct json_object *v = st_json_get(obj, key);

	if (v == NULL || !json_object_is_type(v, json_type_object))
		return NULL;
	return v;
}

struct json_object *st_json_get_arr(const struct json_object *obj, const char *key)
{
	struct json_object *v = st_json_get(obj, key);

	if (v == NULL || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

bool st_json_get_bool(const struct json_object *obj, const char *key, bool dflt)
{
	struct json_object *v = st_json_get(obj, key);

	if (v == NULL || !json_object_is_type(v, json_type_boolean))
		return dflt;
	return json_object_get_boolean(v);
}

const char *st_json_to_string(struct json_object *obj, size_t *len_out)
{
	size_t len = 0;
	const char *s = json_object_to_json_string_length(
	        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

	if (len_out != NULL)
		*len_out = len;
	return s;
}

void st_json_add_str(struct json_object *obj, const char *key, const char *val)
{
	json_object_object_add(obj, key, json_object_new_string(val));
}
