#include "pkg/labels.h"

#include <ctype.h>
#include <string.h>

#include "pkg/util/json.h"
#include "pkg/util/mem.h"

static const char *label(struct json_object *labels, const char *key)
{
	return st_json_get_str(labels, key);
}

static bool in_values(struct json_object *values, const char *v)
{
	for (size_t i = 0; v != NULL && i < json_object_array_length(values); i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(values, i));

		if (s != NULL && strcmp(s, v) == 0)
			return true;
	}
	return false;
}

static bool match_expr(struct json_object *ex, struct json_object *labels)
{
	const char *key = st_json_get_str(ex, "key");
	const char *op = st_json_get_str(ex, "operator");
	struct json_object *values = st_json_get_arr(ex, "values");
	const char *v;

	if (key == NULL || op == NULL)
		return false;
	v = label(labels, key);
	if (strcmp(op, "In") == 0)
		return v != NULL && values != NULL && in_values(values, v);
	if (strcmp(op, "NotIn") == 0)
		return v == NULL || values == NULL || !in_values(values, v);
	if (strcmp(op, "Exists") == 0)
		return v != NULL;
	if (strcmp(op, "DoesNotExist") == 0)
		return v == NULL;
	return false;
}

bool st_labels_match(struct json_object *selector, struct json_object *labels)
{
	struct json_object *ml;
	struct json_object *me;

	if (selector == NULL)
		return true;
	ml = st_json_get_obj(selector, "matchLabels");
	if (ml != NULL) {
		json_object_object_foreach(ml, k, want)
		{
			const char *have = label(labels, k);

			if (have == NULL || want == NULL ||
			    strcmp(have, json_object_get_string(want)) != 0)
				return false;
		}
	}
	me = st_json_get_arr(selector, "matchExpressions");
	for (size_t i = 0; me != NULL && i < json_object_array_length(me); i++)
		if (!match_expr(json_object_array_get_idx(me, i), labels))
			return false;
	return true;
}

int st_labels_validate(struct json_object *selector, const char *what, struct st_err *err)
{
	struct json_object *me;

	if (selector == NULL)
		return 0;
	if (!json_object_is_type(selector, json_type_object))
		return st_err_set(err, ST_EINVAL, "%s: a selector must be a mapping", what);
	json_object_object_foreach(selector, k, v)
	{
		if (strcmp(k, "matchLabels") == 0) {
			if (v == NULL || !json_object_is_type(v, json_type_object))
				return st_err_set(err, ST_EINVAL,
				                  "%s: matchLabels must be a mapping", what);
			json_object_object_foreach(v, lk, lv)
			{
				if (lv == NULL || json_object_is_type(lv, json_type_object) ||
				    json_object_is_type(lv, json_type_array))
					return st_err_set(err, ST_EINVAL,
					                  "%s: matchLabels.%s must be a string",
					                  what, lk);
			}
		} else if (strcmp(k, "matchExpressions") != 0) {
			return st_err_set(err, ST_EINVAL,
			                  "%s: unknown selector key \"%s\" (use matchLabels or "
			                  "matchExpressions)",
			                  what, k);
		}
	}
	me = st_json_get(selector, "matchExpressions");
	if (me != NULL && !json_object_is_type(me, json_type_array))
		return st_err_set(err, ST_EINVAL, "%s: matchExpressions must be a list", what);
	for (size_t i = 0; me != NULL && i < json_object_array_length(me); i++) {
		struct json_object *ex = json_object_array_get_idx(me, i);
		const char *op = st_json_get_str(ex, "operator");
		bool needs_values;

		if (st_json_get_str(ex, "key") == NULL || op == NULL)
			return st_err_set(err, ST_EINVAL,
			                  "%s: matchExpressions[%zu] needs key and operator", what,
			                  i);
		if (strcmp(op, "In") != 0 && strcmp(op, "NotIn") != 0 &&
		    strcmp(op, "Exists") != 0 && strcmp(op, "DoesNotExist") != 0)
			return st_err_set(err, ST_EINVAL,
			                  "%s: matchExpressions[%zu]: unknown operator \"%s\" (In, "
			                  "NotIn, Exists, DoesNotExist)",
			                  what, i, op);
		needs_values = strcmp(op, "In") == 0 || strcmp(op, "NotIn") == 0;
		if (needs_values && st_json_get_arr(ex, "values") == NULL)
			return st_err_set(err, ST_EINVAL,
			                  "%s: matchExpressions[%zu]: %s needs a values list", what,
			                  i, op);
	}
	return 0;
}

static void skip_ws(const char **p)
{
	while (isspace((unsigned char)**p))
		(*p)++;
}

/* Reads a label key or value: letters, digits, '-', '_', '.', '/'. */
static char *read_word(const char **p)
{
	const char *s = *p;

	while (isalnum((unsigned char)**p) || (**p != '\0' && strchr("-_./", **p) != NULL))
		(*p)++;
	if (*p == s)
		return NULL;
	return st_xstrndup(s, (size_t)(*p - s));
}

static struct json_object *expr(const char *key, const char *op, struct json_object *values)
{
	struct json_object *e = json_object_new_object();

	st_json_add_str(e, "key", key);
	st_json_add_str(e, "operator", op);
	if (values != NULL)
		json_object_object_add(e, "values", values);
	return e;
}

static int parse_set(struct json_object **out, const char **p)
{
	struct json_object *vals = json_object_new_array();

	skip_ws(p);
	if (**p != '(')
		goto bad;
	(*p)++;
	for (;;) {
		char *w;

		skip_ws(p);
		w = read_word(p);
		if (w == NULL)
			goto bad;
		json_object_array_add(vals, json_object_new_string(w));
		free(w);
		skip_ws(p);
		if (**p == ',') {
			(*p)++;
			continue;
		}
		if (**p == ')') {
			(*p)++;
			break;
		}
		goto bad;
	}
	*out = vals;
	return 0;
bad:
	json_object_put(vals);
	return ST_EINVAL;
}

static int parse_term(struct json_object *sel, const char **p)
{
	char *key = NULL;
	struct json_object *vals = NULL;
	bool neg = false;
	int rc = ST_EINVAL;

	skip_ws(p);
	if (**p == '!') {
		neg = true;
		(*p)++;
		skip_ws(p);
	}
	if ((key = read_word(p)) == NULL)
		goto out;
	skip_ws(p);
	if (neg || **p == ',' || **p == '\0') {
		json_object_array_add(json_object_object_get(sel, "matchExpressions"),
		                      expr(key, neg ? "DoesNotExist" : "Exists", NULL));
	} else if (strncmp(*p, "!=", 2) == 0 || **p == '=') {
		bool ne = **p == '!';
		char *v;

		*p += ne ? 2 : (strncmp(*p, "==", 2) == 0 ? 2 : 1);
		skip_ws(p);
		v = read_word(p);
		if (v == NULL)
			v = st_xstrdup("");
		vals = json_object_new_array();
		json_object_array_add(vals, json_object_new_string(v));
		free(v);
		json_object_array_add(json_object_object_get(sel, "matchExpressions"),
		                      expr(key, ne ? "NotIn" : "In", vals));
	} else if (strncmp(*p, "in", 2) == 0 || strncmp(*p, "notin", 5) == 0) {
		bool notin = **p == 'n';

		*p += notin ? 5 : 2;
		if (parse_set(&vals, p) < 0)
			goto out;
		json_object_array_add(json_object_object_get(sel, "matchExpressions"),
		                      expr(key, notin ? "NotIn" : "In", vals));
	} else {
		goto out;
	}
	rc = 0;
out:
	free(key);
	return rc;
}

int st_labels_parse(struct json_object **out, const char *text, struct st_err *err)
{
	struct json_object *sel = json_object_new_object();
	const char *p = text;

	*out = NULL;
	json_object_object_add(sel, "matchExpressions", json_object_new_array());
	skip_ws(&p);
	while (*p) {
		if (parse_term(sel, &p) < 0) {
			json_object_put(sel);
			return st_err_set(
			        err, ST_EINVAL,
			        "selector \"%s\": cannot parse at offset %zu (forms: k=v, "
			        "k!=v, k in (a,b), k notin (a), k, !k)",
			        text, (size_t)(p - text));
		}
		skip_ws(&p);
		if (*p == ',')
			p++;
		else if (*p != '\0') {
			json_object_put(sel);
			return st_err_set(err, ST_EINVAL,
			                  "selector \"%s\": expected ',' at offset %zu", text,
			                  (size_t)(p - text));
		}
	}
	*out = sel;
	return 0;
}
