#include "pkg/yaml.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "pkg/util/caps.h"
#include "pkg/util/mem.h"

struct parser {
	yaml_parser_t p;
	const char *what;
	struct st_err *err;
	int depth;
};

static int parse_node(struct json_object **out, struct parser *ps, yaml_event_t *first);

static int perr(struct parser *ps, const char *msg, const yaml_mark_t *m)
{
	return st_err_set(ps->err, ST_EINVAL, "%s: %s at line %zu column %zu", ps->what, msg,
	                  m->line + 1, m->column + 1);
}

static int next_event(yaml_event_t *ev, struct parser *ps)
{
	if (!yaml_parser_parse(&ps->p, ev)) {
		return st_err_set(ps->err, ST_EINVAL, "%s: %s at line %zu column %zu", ps->what,
		                  ps->p.problem ? ps->p.problem : "invalid YAML",
		                  ps->p.problem_mark.line + 1, ps->p.problem_mark.column + 1);
	}
	return 0;
}

static bool is_one_of(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/* Types a plain scalar the way Kubernetes' YAML (1.1-ish core schema) does. */
static struct json_object *plain_scalar(const char *s, size_t len)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
	static const char *const trues[] = { "true", "True", "TRUE", NULL };
	static const char *const falses[] = { "false", "False", "FALSE", NULL };
	char *end = NULL;

	if (is_one_of(s, nulls))
		return NULL;
	if (is_one_of(s, trues))
		return json_object_new_boolean(1);
	if (is_one_of(s, falses))
		return json_object_new_boolean(0);
	if (len > 0 && strspn(s, "+-0123456789") == len && strspn(s + 1, "0123456789") == len - 1 &&
	    (len > 1 || (s[0] >= '0' && s[0] <= '9'))) {
		long long v;

		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno == 0 && *end == '\0')
			return json_object_new_int64(v);
	}
	if (len > 0 && strspn(s, "+-0123456789.eE") == len && strpbrk(s, "0123456789") != NULL) {
		double d;

		errno = 0;
		d = strtod(s, &end);
		if (errno == 0 && *end == '\0' && isfinite(d))
			return json_object_new_double(d);
	}
	return json_object_new_string_len(s, (int)len);
}

static int parse_mapping(struct json_object **out, struct parser *ps)
{
	struct json_object *obj = json_object_new_object();
	yaml_event_t ev;
	int rc = ST_EINTERNAL;

	for (;;) {
		struct json_object *val = NULL;
		char *key = NULL;

		if ((rc = next_event(&ev, ps)) < 0)
			goto out;
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			rc = perr(ps, "mapping keys must be scalars", &ev.start_mark);
			yaml_event_delete(&ev);
			goto out;
		}
		key = st_xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
		yaml_event_delete(&ev);
		if ((rc = next_event(&ev, ps)) < 0) {
			free(key);
			goto out;
		}
		rc = parse_node(&val, ps, &ev);
		if (rc < 0) {
			free(key);
			goto out;
		}
		json_object_object_add(obj, key, val);
		free(key);
	}
	*out = obj;
	obj = NULL; /* transferred */
	rc = 0;
out:
	json_object_put(obj);
	return rc;
}

static int parse_sequence(struct json_object **out, struct parser *ps)
{
	struct json_object *arr = json_object_new_array();
	yaml_event_t ev;
	int rc = ST_EINTERNAL;

	for (;;) {
		struct json_object *val = NULL;

		if ((rc = next_event(&ev, ps)) < 0)
			goto out;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if ((rc = parse_node(&val, ps, &ev)) < 0)
			goto out;
		json_object_array_add(arr, val);
	}
	*out = arr;
	arr = NULL; /* transferred */
	rc = 0;
out:
	json_object_put(arr);
	return rc;
}

/* Consumes `first` (already read) and the rest of its node. */
static int parse_node(struct json_object **out, struct parser *ps, yaml_event_t *first)
{
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (++ps->depth > ST_CAP_JSON_DEPTH) {
		rc = perr(ps, "nesting too deep", &first->start_mark);
		goto out;
	}
	switch (first->type) {
	case YAML_SCALAR_EVENT: {
		const char *v = (const char *)first->data.scalar.value;
		size_t n = first->data.scalar.length;

		if (first->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		    first->data.scalar.tag == NULL)
			*out = plain_scalar(v, n);
		else
			*out = json_object_new_string_len(v, (int)n);
		rc = 0;
		break;
	}
	case YAML_MAPPING_START_EVENT:
		rc = parse_mapping(out, ps);
		break;
	case YAML_SEQUENCE_START_EVENT:
		rc = parse_sequence(out, ps);
		break;
	case YAML_ALIAS_EVENT:
		rc = perr(ps, "aliases are not supported", &first->start_mark);
		break;
	default:
		rc = perr(ps, "unexpected YAML event", &first->start_mark);
		break;
	}
out:
	ps->depth--;
	yaml_event_delete(first);
	return rc;
}

int st_yaml_parse_all(struct json_object **out, const char *data, size_t len, const char *what,
                      struct st_err *err)
{
	struct parser ps;
	struct json_object *docs = json_object_new_array();
	yaml_event_t ev;
	bool done = false;
	int rc = ST_EINTERNAL;

	*out = NULL;
	memset(&ps, 0, sizeof(ps));
	ps.what = what;
	ps.err = err;
	if (len > ST_CAP_PATCH * 4u) {
		json_object_put(docs);
		return st_err_set(err, ST_ETOOBIG, "%s is %zu bytes, over the limit", what, len);
	}
	if (!yaml_parser_initialize(&ps.p)) {
		json_object_put(docs);
		return ST_ENOMEM;
	}
	yaml_parser_set_input_string(&ps.p, (const unsigned char *)data, len);
	while (!done) {
		if ((rc = next_event(&ev, &ps)) < 0)
			goto out;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			yaml_event_delete(&ev);
			break;
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT:
		case YAML_SCALAR_EVENT:
		case YAML_ALIAS_EVENT: {
			struct json_object *node = NULL;

			if ((rc = parse_node(&node, &ps, &ev)) < 0)
				goto out;
			if (node != NULL)
				json_object_array_add(docs, node);
			break;
		}
		default:
			yaml_event_delete(&ev);
			break;
		}
	}
	*out = docs;
	docs = NULL; /* transferred */
	rc = 0;
out:
	json_object_put(docs);
	yaml_parser_delete(&ps.p);
	return rc;
}

int st_yaml_parse_one(struct json_object **out, const char *data, size_t len, const char *what,
                      struct st_err *err)
{
	struct json_object *docs = NULL;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if ((rc = st_yaml_parse_all(&docs, data, len, what, err)) < 0)
		return rc;
	if (json_object_array_length(docs) > 1) {
		rc = st_err_set(err, ST_EINVAL, "%s: expected one YAML document, found %zu", what,
		                json_object_array_length(docs));
		goto out;
	}
	if (json_object_array_length(docs) == 0)
		*out = json_object_new_object();
	else
		*out = json_object_get(json_object_array_get_idx(docs, 0));
	rc = 0;
out:
	json_object_put(docs);
	return rc;
}

int st_yaml_load_file(struct json_object **out, const char *path, size_t cap, struct st_err *err)
{
	struct st_buf b = ST_BUF_INIT(cap);
	int rc = ST_EINTERNAL;

	*out = NULL;
	if ((rc = st_buf_read_file(&b, path, err)) < 0)
		goto out;
	rc = st_yaml_parse_one(out, st_buf_cstr(&b), b.len, path, err);
out:
	st_buf_dispose(&b);
	return rc;
}

/* True when a string must be quoted to stay a string in YAML. */
static bool needs_quotes(const char *s)
{
	struct json_object *typed;
	bool quote;

	if (*s == '\0' || strchr("-?:,[]{}#&*!|>'\"%@` ", s[0]) != NULL)
		return true;
	if (s[strlen(s) - 1] == ' ' || strstr(s, ": ") || strstr(s, " #") || strchr(s, '\n') ||
	    strchr(s, '\t') || s[strlen(s) - 1] == ':')
		return true;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return true;
		/* C1 controls (incl. NEL), LS/PS and BOM are not plain-safe. */
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			return true;
		if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
			return true;
		if (p[0] == 0xef && ((p[1] == 0xbb && p[2] == 0xbf) ||
		                     (p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf))))
			return true;
	}
	typed = plain_scalar(s, strlen(s));
	quote = typed == NULL || !json_object_is_type(typed, json_type_string);
	json_object_put(typed);
	return quote || strcmp(s, "yes") == 0 || strcmp(s, "no") == 0 || strcmp(s, "on") == 0 ||
	       strcmp(s, "off") == 0;
}

/*
 * A YAML double-quoted scalar. Beyond the JSON escapes, YAML treats NEL
 * (U+0085), LINE SEPARATOR and PARAGRAPH SEPARATOR as line breaks and folds
 * them, and C1 controls, DEL, U+FFFE and U+FFFF are not printable: all are escaped so
 * the value reads back byte for byte.
 */
static int emit_quoted(struct st_buf *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	int rc = st_buf_putc(out, '"');

	for (size_t i = 0; i < len && rc == 0; i++) {
		unsigned char c = p[i];

		if (c == '"' || c == '\\') {
			rc = st_buf_printf(out, "\\%c", c);
		} else if (c == '\n') {
			rc = st_buf_puts(out, "\\n");
		} else if (c == '\t') {
			rc = st_buf_puts(out, "\\t");
		} else if (c < 0x20 || c == 0x7f) {
			rc = st_buf_printf(out, "\\x%02X", c);
		} else if (c == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
			rc = st_buf_printf(out, "\\u%04X", p[i + 1]);
			i++;
		} else if (c == 0xe2 && i + 2 < len && p[i + 1] == 0x80 &&
		           (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
			rc = st_buf_puts(out, p[i + 2] == 0xa8 ? "\\L" : "\\P");
			i += 2;
		} else if (c == 0xef && i + 2 < len && p[i + 1] == 0xbb && p[i + 2] == 0xbf) {
			rc = st_buf_puts(out, "\\uFEFF");
			i += 2;
		} else if (c == 0xef && i + 2 < len && p[i + 1] == 0xbf &&
		           (p[i + 2] == 0xbe || p[i + 2] == 0xbf)) {
			/* U+FFFE and U+FFFF are outside YAML's printable set. */
			rc = st_buf_puts(out, p[i + 2] == 0xbe ? "\\uFFFE" : "\\uFFFF");
			i += 2;
		} else {
			rc = st_buf_putc(out, (char)c);
		}
	}
	if (rc == 0)
		rc = st_buf_putc(out, '"');
	return rc;
}

static int emit_scalar(struct st_buf *out, struct json_object *o)
{
	const char *s;
	size_t len;

	if (o == NULL)
		return st_buf_puts(out, "null");
	if (!json_object_is_type(o, json_type_string))
		return st_buf_puts(out, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	s = json_object_get_string(o);
	len = (size_t)json_object_get_string_len(o);
	/* An embedded NUL would cut the plain form short: it goes quoted. */
	if (strlen(s) == len && !needs_quotes(s))
		return st_buf_puts(out, s);
	return emit_quoted(out, s, len);
}

static bool is_container(struct json_object *o)
{
	if (o == NULL)
		return false;
	if (json_object_is_type(o, json_type_object))
		return json_object_object_length(o) > 0;
	if (json_object_is_type(o, json_type_array))
		return json_object_array_length(o) > 0;
	return false;
}

static int emit_node(struct st_buf *out, struct json_object *o, int indent);

static int emit_value_after_key(struct st_buf *out, struct json_object *v, int indent)
{
	int rc;

	if (!is_container(v)) {
		if ((rc = st_buf_putc(out, ' ')) < 0)
			return rc;
		if (v != NULL && json_object_is_type(v, json_type_object))
			rc = st_buf_puts(out, "{}");
		else if (v != NULL && json_object_is_type(v, json_type_array))
			rc = st_buf_puts(out, "[]");
		else
			rc = emit_scalar(out, v);
		if (rc < 0)
			return rc;
		return st_buf_putc(out, '\n');
	}
	if ((rc = st_buf_putc(out, '\n')) < 0)
		return rc;
	return emit_node(out, v, json_object_is_type(v, json_type_array) ? indent : indent + 2);
}

static int emit_node(struct st_buf *out, struct json_object *o, int indent)
{
	int rc = 0;

	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, key, val)
		{
			struct json_object *k = json_object_new_string(key);

			rc = st_buf_printf(out, "%*s", indent, "");
			if (rc == 0)
				rc = emit_scalar(out, k);
			json_object_put(k);
			if (rc == 0)
				rc = st_buf_putc(out, ':');
			if (rc == 0)
				rc = emit_value_after_key(out, val, indent);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	for (size_t i = 0; i < json_object_array_length(o); i++) {
		struct json_object *v = json_object_array_get_idx(o, i);

		if ((rc = st_buf_printf(out, "%*s-", indent, "")) < 0)
			return rc;
		if (is_container(v) && json_object_is_type(v, json_type_object)) {
			struct st_buf sub = ST_BUF_INIT(out->cap);
			const char *p;

			/* Emit the map at indent+2, then pull its first line up beside the dash. */
			if ((rc = emit_node(&sub, v, indent + 2)) == 0) {
				p = st_buf_cstr(&sub) + indent + 2;
				rc = st_buf_putc(out, ' ');
				if (rc == 0)
					rc = st_buf_puts(out, p);
			}
			st_buf_dispose(&sub);
			if (rc < 0)
				return rc;
		} else if ((rc = emit_value_after_key(out, v, indent + 2)) < 0) {
			return rc;
		}
	}
	return 0;
}

int st_yaml_emit(struct st_buf *out, struct json_object *obj)
{
	int rc;

	if (!is_container(obj)) {
		if ((rc = emit_scalar(out, obj)) < 0)
			return rc;
		return st_buf_putc(out, '\n');
	}
	return emit_node(out, obj, 0);
}
