#include "pkg/jsonpatch.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

/*
 * json-c 0.16 declares a few read-only functions (json_object_get_string,
 * json_object_deep_copy) with non-const parameters. This is the one place
 * where a const document is passed to them; nothing here writes through it.
 */
static struct json_object *unconst(const struct json_object *o)
{
	return (struct json_object *)(uintptr_t)o;
}

/* ---- JSON Pointer ---------------------------------------------------- */

void st_jsonpatch_pointer_dispose(struct st_jsonpatch_pointer *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->tokens[i]);
	free(p->tokens);
	p->tokens = NULL;
	p->n = 0;
}

/* Unescapes one token of len bytes into a new string; NULL for a bad '~'. */
static char *unescape_token(const char *s, size_t len)
{
	char *t = st_xmalloc(len + 1);
	size_t j = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] != '~') {
			t[j++] = s[i];
			continue;
		}
		if (i + 1 >= len || (s[i + 1] != '0' && s[i + 1] != '1')) {
			free(t);
			return NULL;
		}
		t[j++] = s[i + 1] == '0' ? '~' : '/';
		i++;
	}
	t[j] = '\0';
	return t;
}

int st_jsonpatch_pointer_parse(struct st_jsonpatch_pointer *out, const char *ptr, size_t len,
                               struct st_err *err)
{
	size_t count = 0;
	size_t pos = 0;

	out->tokens = NULL;
	out->n = 0;
	if (len == 0)
		return 0;
	if (ptr[0] != '/')
		return st_err_set(err, ST_EINVAL, "JSON pointer must be empty or start with '/'");
	if (memchr(ptr, '\0', len) != NULL)
		return st_err_set(err, ST_EINVAL, "JSON pointer holds a NUL byte");
	for (size_t i = 0; i < len; i++)
		count += ptr[i] == '/';
	if (count > ST_CAP_JSON_DEPTH)
		return st_err_set(err, ST_ETOOBIG,
		                  "JSON pointer has %zu tokens, over the limit of %d", count,
		                  ST_CAP_JSON_DEPTH);
	out->tokens = st_xcalloc(count, sizeof(*out->tokens));
	while (pos < len) {
		const char *start = ptr + pos + 1;
		const char *end = memchr(start, '/', len - pos - 1);
		size_t tlen = end != NULL ? (size_t)(end - start) : len - pos - 1;
		char *tok = unescape_token(start, tlen);

		if (tok == NULL)
			return st_err_set(err, ST_EINVAL,
			                  "JSON pointer has '~' not followed by '0' or '1'");
		out->tokens[out->n++] = tok;
		pos += tlen + 1;
	}
	return 0;
}

/* Cuts b back to len bytes; b's text stays NUL-terminated. */
static void buf_truncate(struct st_buf *b, size_t len)
{
	b->len = len;
	if (b->ptr != NULL)
		b->ptr[len] = '\0';
}

int st_jsonpatch_escape_token(struct st_buf *out, const char *key)
{
	size_t keep = out->len;
	int rc = 0;

	for (const char *p = key; *p != '\0' && rc == 0; p++) {
		if (*p == '~')
			rc = st_buf_put(out, "~0", 2);
		else if (*p == '/')
			rc = st_buf_put(out, "~1", 2);
		else
			rc = st_buf_putc(out, *p);
	}
	if (rc < 0)
		buf_truncate(out, keep);
	return rc;
}

int st_jsonpatch_path_append(struct st_buf *out, const char *key)
{
	size_t keep = out->len;
	int rc;

	if ((rc = st_buf_putc(out, '/')) < 0)
		return rc;
	if ((rc = st_jsonpatch_escape_token(out, key)) < 0)
		buf_truncate(out, keep);
	return rc;
}

/*
 * An array index: "0" or a decimal without leading zeros that fits a size_t.
 * "-" and anything else (signs, exponents, spaces) are refused here.
 */
static bool parse_index(size_t *out, const char *tok)
{
	size_t v = 0;

	if (tok[0] == '\0' || (tok[0] == '0' && tok[1] != '\0'))
		return false;
	for (const char *p = tok; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || v > (SIZE_MAX - 9) / 10)
			return false;
		v = v * 10 + (size_t)(*p - '0');
	}
	*out = v;
	return true;
}

/*
 * Follows the first n tokens of p from root. On success *out is the value
 * there (borrowed; NULL for JSON null). *why gets a static reason otherwise.
 */
static int lookup(struct json_object **out, struct json_object *root,
                  const struct st_jsonpatch_pointer *p, size_t n, const char **why)
{
	struct json_object *cur = root;
	size_t idx;

	*out = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *tok = p->tokens[i];

		if (json_object_is_type(cur, json_type_object)) {
			if (!json_object_object_get_ex(cur, tok, &cur)) {
				*why = "path not found";
				return ST_ENOTFOUND;
			}
		} else if (json_object_is_type(cur, json_type_array)) {
			if (!parse_index(&idx, tok)) {
				*why = "array index must be a decimal number without leading zeros";
				return ST_EINVAL;
			}
			if (idx >= json_object_array_length(cur)) {
				*why = "array index out of range";
				return ST_ENOTFOUND;
			}
			cur = json_object_array_get_idx(cur, idx);
		} else {
			*why = "path not found";
			return ST_ENOTFOUND;
		}
	}
	*out = cur;
	return 0;
}

int st_jsonpatch_pointer_get(struct json_object **out, const struct json_object *doc,
                             const char *ptr, struct st_err *err)
{
	struct st_jsonpatch_pointer p = ST_JSONPATCH_POINTER_INIT;
	const char *why = NULL;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if ((rc = st_jsonpatch_pointer_parse(&p, ptr, strlen(ptr), err)) < 0)
		goto out;
	if ((rc = lookup(out, unconst(doc), &p, p.n, &why)) < 0) {
		(void)st_err_set(err, rc, "%.100s: %s", ptr, why);
		goto out;
	}
	rc = 0;
out:
	st_jsonpatch_pointer_dispose(&p);
	return rc;
}

/* ---- values: measure, copy, compare ----------------------------------- */

static size_t sat_add(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/*
 * Adds to *units the size of v (one per node plus string and key bytes) and
 * fails when v, placed `level` containers deep, would nest deeper than
 * ST_CAP_JSON_DEPTH. Recursion is bounded by that same cap.
 */
static int measure(const struct json_object *v, size_t level, size_t *units)
{
	*units = sat_add(*units, 1);
	switch (json_object_get_type(v)) {
	case json_type_string:
		*units = sat_add(*units, (size_t)json_object_get_string_len(v));
		return 0;
	case json_type_array:
		if (level >= ST_CAP_JSON_DEPTH)
			return ST_ETOOBIG;
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (measure(json_object_array_get_idx(v, i), level + 1, units) < 0)
				return ST_ETOOBIG;
		return 0;
	case json_type_object: {
		if (level >= ST_CAP_JSON_DEPTH)
			return ST_ETOOBIG;
		json_object_object_foreach(v, key, val)
		{
			*units = sat_add(*units, strlen(key));
			if (measure(val, level + 1, units) < 0)
				return ST_ETOOBIG;
		}
		return 0;
	}
	default:
		return 0;
	}
}

/* A deep copy of v into *out (NULL stays NULL). */
static int copy_value(struct json_object **out, const struct json_object *v)
{
	*out = NULL;
	if (v == NULL)
		return 0;
	if (json_object_deep_copy(unconst(v), out, NULL) < 0 || *out == NULL) {
		*out = NULL;
		return ST_ENOMEM;
	}
	return 0;
}

static bool is_number(const struct json_object *v)
{
	return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}

/*
 * Numbers compare by value, so 1 equals 1.0. long double holds every int64
 * and uint64 exactly on the platforms we build for; json-c stores large
 * positive integers as uint64, which json_object_get_int64 would clamp.
 */
static long double number_value(const struct json_object *v)
{
	int64_t i;

	if (json_object_is_type(v, json_type_double))
		return (long double)json_object_get_double(v);
	i = json_object_get_int64(v);
	if (i == INT64_MAX)
		return (long double)json_object_get_uint64(v);
	return (long double)i;
}

static bool values_equal(const struct json_object *a, const struct json_object *b, size_t level);

static bool objects_equal(const struct json_object *a, const struct json_object *b, size_t level)
{
	if (json_object_object_length(a) != json_object_object_length(b))
		return false;
	json_object_object_foreach(a, key, val)
	{
		struct json_object *other = NULL;

		if (!json_object_object_get_ex(b, key, &other) ||
		    !values_equal(val, other, level + 1))
			return false;
	}
	return true;
}

static bool arrays_equal(const struct json_object *a, const struct json_object *b, size_t level)
{
	size_t n = json_object_array_length(a);

	if (n != json_object_array_length(b))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!values_equal(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i),
		                  level + 1))
			return false;
	return true;
}

/* Deep equality per RFC 6902 "test"; past the depth cap values count as different. */
static bool values_equal(const struct json_object *a, const struct json_object *b, size_t level)
{
	enum json_type ta = json_object_get_type(a);
	enum json_type tb = json_object_get_type(b);

	if (level > ST_CAP_JSON_DEPTH)
		return false;
	if (is_number(a) && is_number(b))
		return number_value(a) == number_value(b);
	if (ta != tb)
		return false;
	switch (ta) {
	case json_type_null:
		return true;
	case json_type_boolean:
		return !json_object_get_boolean(a) == !json_object_get_boolean(b);
	case json_type_string: {
		int la = json_object_get_string_len(a);

		return la == json_object_get_string_len(b) &&
		       memcmp(json_object_get_string(unconst(a)),
		              json_object_get_string(unconst(b)), (size_t)la) == 0;
	}
	case json_type_object:
		return objects_equal(a, b, level);
	case json_type_array:
		return arrays_equal(a, b, level);
	default:
		return false;
	}
}

/* ---- apply ------------------------------------------------------------ */

struct op {
	size_t index;
	const char *name;
	const char *path_text;
	const char *from_text;
	struct json_object *value; /* borrowed from the patch */
	struct st_jsonpatch_pointer path;
	struct st_jsonpatch_pointer from;
};

struct apply_ctx {
	struct json_object *root; /* the working copy */
	size_t budget;            /* units the document may still grow by */
	struct st_err *err;
};

static int op_fail(const struct op *o, struct st_err *err, int code, const char *why)
{
	if (o->name == NULL)
		return st_err_set(err, code, "patch op %zu: %s", o->index, why);
	if (o->path_text == NULL)
		return st_err_set(err, code, "patch op %zu (%.40s): %s", o->index, o->name, why);
	if (o->from_text != NULL)
		return st_err_set(err, code, "patch op %zu (%s %.80s to %.80s): %s", o->index,
		                  o->name, o->from_text, o->path_text, why);
	return st_err_set(err, code, "patch op %zu (%.40s %.100s): %s", o->index, o->name,
	                  o->path_text, why);
}

/* Charges an insertion of v at a location with `level` enclosing containers. */
static int charge(struct apply_ctx *c, const struct op *o, const struct json_object *v,
                  size_t level, bool grows)
{
	size_t units = 0;

	if (measure(v, level, &units) < 0)
		return op_fail(o, c->err, ST_ETOOBIG, "result would nest too deep");
	if (!grows)
		return 0;
	if (units > c->budget)
		return op_fail(o, c->err, ST_ETOOBIG, "document would grow over the limit");
	c->budget -= units;
	return 0;
}

/* Resolves the container holding the last token of p. */
static int parent_of(struct json_object **out, struct apply_ctx *c, const struct op *o,
                     const struct st_jsonpatch_pointer *p)
{
	const char *why = NULL;
	int rc;

	if ((rc = lookup(out, c->root, p, p->n - 1, &why)) < 0)
		return op_fail(o, c->err, rc, why);
	if (!json_object_is_type(*out, json_type_object) &&
	    !json_object_is_type(*out, json_type_array))
		return op_fail(o, c->err, ST_ENOTFOUND, "parent is not an object or array");
	return 0;
}

/* Index of an existing element (insert: also the one-past-the-end slot). */
static int array_slot(size_t *idx, struct apply_ctx *c, const struct op *o,
                      const struct json_object *arr, const char *tok, bool insert)
{
	size_t len = json_object_array_length(arr);

	if (insert && strcmp(tok, "-") == 0) {
		*idx = len;
		return 0;
	}
	if (!parse_index(idx, tok))
		return op_fail(o, c->err, ST_EINVAL,
		               "array index must be a decimal number without leading zeros");
	if (*idx > len || (*idx == len && !insert))
		return op_fail(o, c->err, ST_ENOTFOUND, "array index out of range");
	return 0;
}

/*
 * json-c 0.16 has no insert: keep references to the tail, cut it, append the
 * new value, and put the tail back. The references taken are handed back to
 * the array by json_object_array_add.
 */
static int array_insert(struct json_object *arr, size_t idx, struct json_object *val)
{
	size_t tail = json_object_array_length(arr) - idx;
	struct json_object **saved = st_xcalloc(tail + 1, sizeof(*saved));
	int rc = ST_ENOMEM;
	size_t i;

	for (i = 0; i < tail; i++)
		saved[i] = json_object_get(json_object_array_get_idx(arr, idx + i));
	if (tail > 0 && json_object_array_del_idx(arr, idx, tail) != 0) {
		i = 0;
		goto out;
	}
	if (json_object_array_add(arr, val) != 0) {
		i = 0;
		goto out;
	}
	val = NULL; /* transferred */
	for (i = 0; i < tail; i++) {
		if (json_object_array_add(arr, saved[i]) != 0)
			goto out;
	}
	rc = 0;
out:
	for (; i < tail; i++)
		json_object_put(saved[i]);
	json_object_put(val);
	free(saved);
	return rc;
}

/* Puts val (taken) at p: the "add" semantics, also used by move and copy. */
static int insert_at(struct apply_ctx *c, const struct op *o, const struct st_jsonpatch_pointer *p,
                     struct json_object *val)
{
	struct json_object *parent = NULL;
	const char *key;
	size_t idx = 0;
	int rc = ST_EINTERNAL;

	if (p->n == 0) {
		json_object_put(c->root);
		c->root = val;
		return 0;
	}
	if ((rc = parent_of(&parent, c, o, p)) < 0)
		goto out;
	key = p->tokens[p->n - 1];
	if (json_object_is_type(parent, json_type_object)) {
		/* On failure json-c keeps val unowned; a leak beats a double free. */
		rc = json_object_object_add(parent, key, val) == 0 ? 0 : ST_ENOMEM;
		val = NULL; /* transferred */
		goto out;
	}
	if ((rc = array_slot(&idx, c, o, parent, key, true)) < 0)
		goto out;
	rc = array_insert(parent, idx, val);
	val = NULL; /* transferred */
out:
	json_object_put(val);
	return rc;
}

static int remove_at(struct apply_ctx *c, const struct op *o, const struct st_jsonpatch_pointer *p)
{
	struct json_object *parent = NULL;
	const char *key;
	size_t idx = 0;
	int rc;

	if (p->n == 0)
		return op_fail(o, c->err, ST_EINVAL, "cannot remove the whole document");
	if ((rc = parent_of(&parent, c, o, p)) < 0)
		return rc;
	key = p->tokens[p->n - 1];
	if (json_object_is_type(parent, json_type_object)) {
		if (!json_object_object_get_ex(parent, key, NULL))
			return op_fail(o, c->err, ST_ENOTFOUND, "path not found");
		json_object_object_del(parent, key);
		return 0;
	}
	if ((rc = array_slot(&idx, c, o, parent, key, false)) < 0)
		return rc;
	return json_object_array_del_idx(parent, idx, 1) == 0 ? 0 : ST_EINTERNAL;
}

static int get_at(struct json_object **out, struct apply_ctx *c, const struct op *o,
                  const struct st_jsonpatch_pointer *p, const char *what)
{
	const char *why = NULL;
	int rc;

	if ((rc = lookup(out, c->root, p, p->n, &why)) < 0) {
		if (rc == ST_ENOTFOUND && what != NULL)
			why = what;
		return op_fail(o, c->err, rc, why);
	}
	return 0;
}

/* Charges the growth of putting src at the op's path, then deep-copies it. */
static int charged_copy(struct json_object **out, struct apply_ctx *c, const struct op *o,
                        const struct json_object *src)
{
	int rc;

	*out = NULL;
	if ((rc = charge(c, o, src, o->path.n, true)) < 0)
		return rc;
	return copy_value(out, src);
}

static int do_add(struct apply_ctx *c, const struct op *o)
{
	struct json_object *v = NULL;
	int rc;

	if ((rc = charged_copy(&v, c, o, o->value)) < 0)
		return rc;
	return insert_at(c, o, &o->path, v);
}

static int do_remove(struct apply_ctx *c, const struct op *o)
{
	return remove_at(c, o, &o->path);
}

/* Swaps the existing value at p for val (taken), keeping its place. */
static int replace_at(struct apply_ctx *c, const struct op *o, const struct st_jsonpatch_pointer *p,
                      struct json_object *val)
{
	struct json_object *parent = NULL;
	const char *key;
	size_t idx = 0;
	int rc = ST_EINTERNAL;

	if (p->n == 0)
		return insert_at(c, o, p, val);
	if ((rc = parent_of(&parent, c, o, p)) < 0)
		goto out;
	key = p->tokens[p->n - 1];
	if (json_object_is_type(parent, json_type_object)) {
		if (!json_object_object_get_ex(parent, key, NULL)) {
			rc = op_fail(o, c->err, ST_ENOTFOUND, "path not found");
			goto out;
		}
		/* An existing key keeps its position in json-c's ordered table. */
		rc = json_object_object_add(parent, key, val) == 0 ? 0 : ST_ENOMEM;
		val = NULL; /* transferred */
		goto out;
	}
	if ((rc = array_slot(&idx, c, o, parent, key, false)) < 0)
		goto out;
	rc = json_object_array_put_idx(parent, idx, val) == 0 ? 0 : ST_ENOMEM;
	val = NULL; /* transferred; json-c released the old element */
out:
	json_object_put(val);
	return rc;
}

static int do_replace(struct apply_ctx *c, const struct op *o)
{
	struct json_object *v = NULL;
	int rc;

	if ((rc = charged_copy(&v, c, o, o->value)) < 0)
		return rc;
	return replace_at(c, o, &o->path, v);
}

static int do_test(struct apply_ctx *c, const struct op *o)
{
	struct json_object *cur = NULL;
	int rc;

	if ((rc = get_at(&cur, c, o, &o->path, NULL)) < 0)
		return rc;
	if (!values_equal(cur, o->value, 0))
		return op_fail(o, c->err, ST_EINVAL, "test failed: value differs");
	return 0;
}

/* True when a's tokens are a proper prefix of b's: b lies inside a. */
static bool is_proper_prefix(const struct st_jsonpatch_pointer *a,
                             const struct st_jsonpatch_pointer *b)
{
	if (a->n >= b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->tokens[i], b->tokens[i]) != 0)
			return false;
	return true;
}

static bool same_pointer(const struct st_jsonpatch_pointer *a, const struct st_jsonpatch_pointer *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->tokens[i], b->tokens[i]) != 0)
			return false;
	return true;
}

static int do_move(struct apply_ctx *c, const struct op *o)
{
	struct json_object *v = NULL;
	int rc;

	if ((rc = get_at(&v, c, o, &o->from, "from location not found")) < 0)
		return rc;
	if (same_pointer(&o->from, &o->path))
		return 0;
	if (is_proper_prefix(&o->from, &o->path))
		return op_fail(o, c->err, ST_EINVAL, "cannot move a value into its own child");
	if ((rc = charge(c, o, v, o->path.n, false)) < 0)
		return rc;
	v = json_object_get(v);
	if ((rc = remove_at(c, o, &o->from)) < 0) {
		json_object_put(v);
		return rc;
	}
	return insert_at(c, o, &o->path, v);
}

static int do_copy(struct apply_ctx *c, const struct op *o)
{
	struct json_object *src = NULL;
	struct json_object *v = NULL;
	int rc;

	if ((rc = get_at(&src, c, o, &o->from, "from location not found")) < 0)
		return rc;
	if ((rc = charged_copy(&v, c, o, src)) < 0)
		return rc;
	return insert_at(c, o, &o->path, v);
}

struct op_kind {
	const char *name;
	bool needs_value;
	bool needs_from;
	int (*run)(struct apply_ctx *c, const struct op *o);
};

static const struct op_kind op_kinds[] = {
	{ "add", true, false, do_add },         { "remove", false, false, do_remove },
	{ "replace", true, false, do_replace }, { "move", false, true, do_move },
	{ "copy", false, true, do_copy },       { "test", true, false, do_test },
};

static const struct op_kind *find_kind(const char *name)
{
	for (size_t i = 0; i < sizeof(op_kinds) / sizeof(op_kinds[0]); i++)
		if (strcmp(op_kinds[i].name, name) == 0)
			return &op_kinds[i];
	return NULL;
}

/* A string member as text; rejects other types and embedded NUL bytes. */
static int string_member(const char **out, const struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	*out = NULL;
	if (!json_object_object_get_ex(obj, key, &v))
		return ST_ENOTFOUND;
	if (!json_object_is_type(v, json_type_string))
		return ST_EINVAL;
	*out = json_object_get_string(v);
	if (strlen(*out) != (size_t)json_object_get_string_len(v))
		return ST_EINVAL;
	return 0;
}

/* Checks one operation object and parses its pointers into o. */
static int decode_op(struct op *o, const struct op_kind **kind, const struct json_object *jo,
                     struct st_err *err)
{
	int rc;

	if (!json_object_is_type(jo, json_type_object))
		return op_fail(o, err, ST_EINVAL, "operation is not an object");
	if ((rc = string_member(&o->name, jo, "op")) < 0)
		return op_fail(o, err, ST_EINVAL,
		               rc == ST_ENOTFOUND ? "missing 'op'" : "'op' is not a string");
	if ((rc = string_member(&o->path_text, jo, "path")) < 0)
		return op_fail(o, err, ST_EINVAL,
		               rc == ST_ENOTFOUND ? "missing 'path'" : "'path' is not a string");
	*kind = find_kind(o->name);
	if (*kind == NULL)
		return op_fail(o, err, ST_EINVAL, "unknown op");
	if ((*kind)->needs_value && !json_object_object_get_ex(jo, "value", &o->value))
		return op_fail(o, err, ST_EINVAL, "missing 'value'");
	if ((*kind)->needs_from && (rc = string_member(&o->from_text, jo, "from")) < 0)
		return op_fail(o, err, ST_EINVAL,
		               rc == ST_ENOTFOUND ? "missing 'from'" : "'from' is not a string");
	if ((rc = st_jsonpatch_pointer_parse(&o->path, o->path_text, strlen(o->path_text), NULL)) <
	    0)
		return op_fail(o, err, rc, "malformed 'path' pointer");
	if (o->from_text != NULL &&
	    (rc = st_jsonpatch_pointer_parse(&o->from, o->from_text, strlen(o->from_text), NULL)) <
	            0)
		return op_fail(o, err, rc, "malformed 'from' pointer");
	return 0;
}

static int apply_one(struct apply_ctx *c, const struct json_object *jo, size_t index)
{
	struct op o = { .index = index,
		        .path = ST_JSONPATCH_POINTER_INIT,
		        .from = ST_JSONPATCH_POINTER_INIT };
	const struct op_kind *kind = NULL;
	int rc;

	if ((rc = decode_op(&o, &kind, jo, c->err)) == 0)
		rc = kind != NULL ? kind->run(c, &o) : ST_EINTERNAL;
	if (rc < 0)
		(void)op_fail(&o, c->err, rc, st_strerror(rc));
	st_jsonpatch_pointer_dispose(&o.path);
	st_jsonpatch_pointer_dispose(&o.from);
	return rc;
}

/*
 * Applies patch to *doc_inout within budget. With in_place false the
 * caller's document is deep-copied first so that a failure leaves it as it
 * was; a document the caller will discard on failure (in_place true) is
 * patched in place, saving the copy.
 */
static int apply_budget(struct json_object **doc_inout, const struct json_object *patch,
                        size_t budget, bool in_place, struct st_err *err)
{
	struct apply_ctx c = { .root = NULL, .budget = budget, .err = err };
	size_t units = 0;
	size_t n;
	int rc = ST_EINTERNAL;

	if (!json_object_is_type(patch, json_type_array)) {
		rc = st_err_set(err, ST_EINVAL, "patch is not a JSON array");
		goto out;
	}
	n = json_object_array_length(patch);
	if (n > ST_JSONPATCH_MAX_OPS) {
		rc = st_err_set(err, ST_ETOOBIG, "patch has %zu operations, over the limit of %u",
		                n, ST_JSONPATCH_MAX_OPS);
		goto out;
	}
	if (measure(*doc_inout, 0, &units) < 0) {
		rc = st_err_set(err, ST_ETOOBIG, "document nests deeper than %d",
		                ST_CAP_JSON_DEPTH);
		goto out;
	}
	if (in_place) {
		c.root = *doc_inout;
		*doc_inout = NULL; /* transferred to c.root until the end */
	} else if ((rc = copy_value(&c.root, *doc_inout)) < 0) {
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if ((rc = apply_one(&c, json_object_array_get_idx(patch, i), i)) < 0)
			goto out;
	}
	json_object_put(*doc_inout);
	*doc_inout = c.root;
	c.root = NULL; /* transferred */
	rc = 0;
out:
	json_object_put(c.root);
	return rc;
}

int st_jsonpatch_apply(struct json_object **doc_inout, const struct json_object *patch,
                       struct st_err *err)
{
	return apply_budget(doc_inout, patch, ST_CAP_PATCH, false, err);
}

/*
 * st_json_parse() wants an object, array or scalar other than null at the
 * top; a document that is just "null" is valid JSON and patchable here.
 */
static bool is_null_text(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && strchr(" \t\r\n", s[i]) != NULL && s[i] != '\0')
		i++;
	if (len - i < 4 || memcmp(s + i, "null", 4) != 0)
		return false;
	for (i += 4; i < len; i++)
		if (s[i] == '\0' || strchr(" \t\r\n", s[i]) == NULL)
			return false;
	return true;
}

int st_jsonpatch_apply_text(char **out, size_t *out_len, const char *doc, size_t doc_len,
                            const char *patch, size_t patch_len, size_t cap, struct st_err *err)
{
	struct json_object *d = NULL;
	struct json_object *p = NULL;
	const char *text;
	size_t len = 0;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (doc_len > cap) {
		rc = st_err_set(err, ST_ETOOBIG, "document is %zu bytes, over the limit of %zu",
		                doc_len, cap);
		goto out;
	}
	if (!is_null_text(doc, doc_len) &&
	    (rc = st_json_parse(&d, doc, doc_len, cap, "document", err)) < 0)
		goto out;
	if ((rc = st_json_parse(&p, patch, patch_len, ST_CAP_PATCH, "patch", err)) < 0)
		goto out;
	if ((rc = apply_budget(&d, p, cap, true, err)) < 0)
		goto out;
	text = d != NULL ? st_json_to_string(d, &len) : "null";
	if (d == NULL)
		len = 4;
	if (len > cap) {
		rc = st_err_set(err, ST_ETOOBIG, "patched document is %zu bytes, over %zu", len,
		                cap);
		goto out;
	}
	*out = st_xstrndup(text, len);
	if (out_len != NULL)
		*out_len = len;
	rc = 0;
out:
	json_object_put(d);
	json_object_put(p);
	return rc;
}

/* ---- builders --------------------------------------------------------- */

static int new_op(struct json_object **out, const char *op, const char *path)
{
	struct st_jsonpatch_pointer p = ST_JSONPATCH_POINTER_INIT;
	struct json_object *o = NULL;
	int rc;

	*out = NULL;
	rc = st_jsonpatch_pointer_parse(&p, path, strlen(path), NULL);
	st_jsonpatch_pointer_dispose(&p);
	if (rc < 0)
		return ST_EINVAL;
	o = json_object_new_object();
	if (o == NULL)
		return ST_ENOMEM;
	st_json_add_str(o, "op", op);
	st_json_add_str(o, "path", path);
	*out = o;
	return 0;
}

static int push_op(struct json_object *patch_array, struct json_object *o)
{
	if (json_object_array_add(patch_array, o) != 0) {
		json_object_put(o);
		return ST_ENOMEM;
	}
	return 0;
}

int st_jsonpatch_add_op(struct json_object *patch_array, const char *op, const char *path,
                        struct json_object *value)
{
	const struct op_kind *kind = find_kind(op);
	struct json_object *o = NULL;
	int rc = ST_EINVAL;

	if (kind == NULL || kind->needs_from || !json_object_is_type(patch_array, json_type_array))
		goto out;
	if (!kind->needs_value && value != NULL)
		goto out;
	if ((rc = new_op(&o, op, path)) < 0)
		goto out;
	if (kind->needs_value) {
		json_object_object_add(o, "value", value);
		value = NULL; /* transferred */
	}
	rc = push_op(patch_array, o);
out:
	json_object_put(value);
	return rc;
}

int st_jsonpatch_add_from_op(struct json_object *patch_array, const char *op, const char *from,
                             const char *path)
{
	const struct op_kind *kind = find_kind(op);
	struct st_jsonpatch_pointer p = ST_JSONPATCH_POINTER_INIT;
	struct json_object *o = NULL;
	int rc;

	if (kind == NULL || !kind->needs_from || !json_object_is_type(patch_array, json_type_array))
		return ST_EINVAL;
	rc = st_jsonpatch_pointer_parse(&p, from, strlen(from), NULL);
	st_jsonpatch_pointer_dispose(&p);
	if (rc < 0)
		return ST_EINVAL;
	if ((rc = new_op(&o, op, path)) < 0)
		return rc;
	st_json_add_str(o, "from", from);
	return push_op(patch_array, o);
}

/* ---- diff ------------------------------------------------------------- */

/* Appends {op, path, value: deep copy of v}. */
static int emit(struct json_object *patch, const char *op, const struct st_buf *path,
                const struct json_object *v)
{
	struct json_object *copy = NULL;
	int rc;

	if (v != NULL && (rc = copy_value(&copy, v)) < 0)
		return rc;
	return st_jsonpatch_add_op(patch, op, st_buf_cstr(path), copy);
}

static int diff_value(struct json_object *patch, struct st_buf *path, const struct json_object *a,
                      const struct json_object *b, size_t level);

static int diff_object(struct json_object *patch, struct st_buf *path, const struct json_object *a,
                       const struct json_object *b, size_t level)
{
	size_t keep = path->len;
	int rc = 0;

	json_object_object_foreach(a, ka, va)
	{
		(void)va;
		if (json_object_object_get_ex(b, ka, NULL))
			continue;
		if ((rc = st_jsonpatch_path_append(path, ka)) < 0 ||
		    (rc = emit(patch, "remove", path, NULL)) < 0)
			goto out;
		buf_truncate(path, keep);
	}
	json_object_object_foreach(b, kb, vb)
	{
		struct json_object *old = NULL;
		bool had = json_object_object_get_ex(a, kb, &old);

		if ((rc = st_jsonpatch_path_append(path, kb)) < 0)
			goto out;
		rc = had ? diff_value(patch, path, old, vb, level + 1)
		         : emit(patch, "add", path, vb);
		if (rc < 0)
			goto out;
		buf_truncate(path, keep);
	}
out:
	buf_truncate(path, keep);
	return rc;
}

static int append_index(struct st_buf *path, size_t i)
{
	return st_buf_printf(path, "/%zu", i);
}

static int diff_array(struct json_object *patch, struct st_buf *path, const struct json_object *a,
                      const struct json_object *b, size_t level)
{
	size_t la = json_object_array_length(a);
	size_t lb = json_object_array_length(b);
	size_t keep = path->len;
	int rc = 0;

	for (size_t i = 0; i < la && i < lb; i++) {
		if ((rc = append_index(path, i)) < 0 ||
		    (rc = diff_value(patch, path, json_object_array_get_idx(a, i),
		                     json_object_array_get_idx(b, i), level + 1)) < 0)
			goto out;
		buf_truncate(path, keep);
	}
	/* Remove from the end so that earlier indices stay valid. */
	for (size_t i = la; i > lb; i--) {
		if ((rc = append_index(path, i - 1)) < 0 ||
		    (rc = emit(patch, "remove", path, NULL)) < 0)
			goto out;
		buf_truncate(path, keep);
	}
	for (size_t i = la; i < lb; i++) {
		if ((rc = append_index(path, i)) < 0 ||
		    (rc = emit(patch, "add", path, json_object_array_get_idx(b, i))) < 0)
			goto out;
		buf_truncate(path, keep);
	}
out:
	buf_truncate(path, keep);
	return rc;
}

static int diff_value(struct json_object *patch, struct st_buf *path, const struct json_object *a,
                      const struct json_object *b, size_t level)
{
	bool deep = level >= ST_CAP_JSON_DEPTH;

	if (!deep && json_object_is_type(a, json_type_object) &&
	    json_object_is_type(b, json_type_object))
		return diff_object(patch, path, a, b, level);
	if (!deep && json_object_is_type(a, json_type_array) &&
	    json_object_is_type(b, json_type_array))
		return diff_array(patch, path, a, b, level);
	/* Same type too, so that 1 -> 1.0 is kept as written rather than dropped. */
	if (!deep && json_object_get_type(a) == json_object_get_type(b) &&
	    values_equal(a, b, level))
		return 0;
	return emit(patch, "replace", path, b);
}

int st_jsonpatch_diff(struct json_object **patch_out, const struct json_object *from,
                      const struct json_object *to)
{
	struct st_buf path = ST_BUF_INIT(ST_CAP_PATCH);
	struct json_object *patch = NULL;
	int rc = ST_EINTERNAL;

	*patch_out = NULL;
	patch = json_object_new_array();
	if (patch == NULL) {
		rc = ST_ENOMEM;
		goto out;
	}
	if ((rc = diff_value(patch, &path, from, to, 0)) < 0)
		goto out;
	*patch_out = patch;
	patch = NULL; /* transferred */
	rc = 0;
out:
	json_object_put(patch);
	st_buf_dispose(&path);
	return rc;
}
