#include "pkg/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/mem.h"

#define FIELD(cfg, e, T)  ((T *)(void *)((char *)(cfg) + (e)->offset))
#define CFIELD(cfg, e, T) ((T const *)(const void *)((const char *)(cfg) + (e)->offset))

int st_duration_parse(long long *ms_out, const char *s)
{
	static const struct {
		const char *unit;
		long long ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 } };
	long long total = 0;
	const char *p = s;

	if (s == NULL || *s == '\0')
		return ST_EINVAL;
	while (*p) {
		char *end = NULL;
		double v;
		size_t i;
		bool found = false;

		if (!isdigit((unsigned char)*p) && *p != '.')
			return ST_EINVAL;
		errno = 0;
		v = strtod(p, &end);
		if (errno != 0 || end == p || v < 0)
			return ST_EINVAL;
		p = end;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t ul = strlen(units[i].unit);

			if (strncmp(p, units[i].unit, ul) == 0 && !isalpha((unsigned char)p[ul]) &&
			    !(units[i].unit[0] == 'm' && ul == 1 && p[1] == 's')) {
				if (v * (double)units[i].ms > (double)(LLONG_MAX / 2))
					return ST_EINVAL;
				total += (long long)(v * (double)units[i].ms + 0.5);
				p += ul;
				found = true;
				break;
			}
		}
		if (!found)
			return ST_EINVAL;
	}
	*ms_out = total;
	return 0;
}

void st_duration_format(char *out, size_t cap, long long ms)
{
	size_t o = 0;

	if (ms == 0) {
		(void)snprintf(out, cap, "0s");
		return;
	}
	if (ms % 1000 != 0 && ms < 1000) {
		(void)snprintf(out, cap, "%lldms", ms);
		return;
	}
	out[0] = '\0';
	if (ms >= 3600000 && o < cap)
		o += (size_t)snprintf(out + o, cap - o, "%lldh", ms / 3600000);
	ms %= 3600000;
	if (ms >= 60000 && o < cap)
		o += (size_t)snprintf(out + o, cap - o, "%lldm", ms / 60000);
	ms %= 60000;
	if (ms % 1000 != 0 && o < cap)
		(void)snprintf(out + o, cap - o, "%lld.%03llds", ms / 1000, ms % 1000);
	else if (ms > 0 && o < cap)
		(void)snprintf(out + o, cap - o, "%llds", ms / 1000);
}

static int parse_size(long long *out, const char *s)
{
	static const struct {
		const char *sfx;
		long long mul;
	} sfx[] = { { "Ki", 1LL << 10 }, { "Mi", 1LL << 20 }, { "Gi", 1LL << 30 },
		    { "k", 1000 },       { "M", 1000000 },    { "G", 1000000000 } };
	char *end = NULL;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || v < 0)
		return ST_EINVAL;
	if (*end == '\0') {
		*out = v;
		return 0;
	}
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		if (strcmp(end, sfx[i].sfx) == 0) {
			if (v > LLONG_MAX / sfx[i].mul)
				return ST_EINVAL;
			*out = v * sfx[i].mul;
			return 0;
		}
	}
	return ST_EINVAL;
}

static int check_bounds(const struct st_cfg_entry *e, long long v, const char *text,
                        struct st_err *err)
{
	if ((e->min != 0 || e->max != 0) && (v < e->min || v > e->max))
		return st_err_set(err, ST_EINVAL, "%s: %s is out of range [%lld, %lld]", e->key,
		                  text, e->min, e->max);
	return 0;
}

static int set_entry(void *cfg, const struct st_cfg_entry *e, const char *text, struct st_err *err)
{
	long long v = 0;
	char *end = NULL;

	switch (e->type) {
	case ST_CFG_STR:
		free(*FIELD(cfg, e, char *));
		*FIELD(cfg, e, char *) = text ? st_xstrdup(text) : NULL;
		return 0;
	case ST_CFG_BOOL:
		if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0)
			*FIELD(cfg, e, bool) = true;
		else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
			*FIELD(cfg, e, bool) = false;
		else
			return st_err_set(err, ST_EINVAL, "%s: \"%s\" is not true or false", e->key,
			                  text);
		return 0;
	case ST_CFG_INT:
		errno = 0;
		v = strtoll(text, &end, 10);
		if (errno != 0 || end == text || *end != '\0')
			return st_err_set(err, ST_EINVAL, "%s: \"%s\" is not an integer", e->key,
			                  text);
		break;
	case ST_CFG_DURATION:
		if (st_duration_parse(&v, text) < 0)
			return st_err_set(err, ST_EINVAL,
			                  "%s: \"%s\" is not a duration (examples: 500ms, 30s, 5m, "
			                  "1h30m)",
			                  e->key, text);
		break;
	case ST_CFG_SIZE:
		if (parse_size(&v, text) < 0)
			return st_err_set(err, ST_EINVAL,
			                  "%s: \"%s\" is not a size (examples: 65536, 64Ki, 8Mi)",
			                  e->key, text);
		break;
	}
	if (check_bounds(e, v, text, err) < 0)
		return ST_EINVAL;
	*FIELD(cfg, e, long long) = v;
	return 0;
}

int st_config_defaults(void *cfg, const struct st_cfg_entry *t, size_t n)
{
	struct st_err err = ST_ERR_INIT;

	for (size_t i = 0; i < n; i++) {
		if (t[i].dflt == NULL)
			continue;
		if (set_entry(cfg, &t[i], t[i].dflt, &err) < 0)
			return ST_EINTERNAL;
	}
	return 0;
}

int st_config_set(void *cfg, const struct st_cfg_entry *t, size_t n, const char *key,
                  const char *value, struct st_err *err)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].key, key) == 0)
			return set_entry(cfg, &t[i], value, err);
	return st_err_set(err, ST_EINVAL, "unknown setting %s", key);
}

static bool is_handled(const char *key, const char *const *handled)
{
	for (; handled != NULL && *handled != NULL; handled++)
		if (strcmp(key, *handled) == 0)
			return true;
	return false;
}

static int known_list(char *out, size_t cap, const struct st_cfg_entry *t, size_t n,
                      const char *prefix)
{
	size_t o = 0;
	size_t pl = strlen(prefix);

	out[0] = '\0';
	for (size_t i = 0; i < n && o < cap; i++)
		if (strncmp(t[i].key, prefix, pl) == 0)
			o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? ", " : "", t[i].key);
	return 0;
}

static int apply_obj(void *cfg, const struct st_cfg_entry *t, size_t n, struct json_object *obj,
                     const char *prefix, const char *const *handled, const char *what,
                     struct st_err *err)
{
	json_object_object_foreach(obj, key, val)
	{
		char path[256];
		const struct st_cfg_entry *e = NULL;
		int rc;

		(void)snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
		if (*prefix == '\0' && is_handled(key, handled))
			continue;
		for (size_t i = 0; i < n; i++)
			if (strcmp(t[i].key, path) == 0)
				e = &t[i];
		if (e == NULL && val != NULL && json_object_is_type(val, json_type_object)) {
			if ((rc = apply_obj(cfg, t, n, val, path, handled, what, err)) < 0)
				return rc;
			continue;
		}
		if (e == NULL) {
			char known[1024];

			(void)known_list(known, sizeof(known), t, n, prefix);
			return st_err_set(err, ST_EINVAL, "%s: unknown key \"%s\" (known: %s)",
			                  what, path, known);
		}
		if (val == NULL || json_object_is_type(val, json_type_object) ||
		    json_object_is_type(val, json_type_array))
			return st_err_set(err, ST_EINVAL, "%s: %s must be a single value", what,
			                  path);
		if ((rc = set_entry(cfg, e, json_object_get_string(val), err)) < 0) {
			st_err_prefix(err, "%s", what);
			return rc;
		}
	}
	return 0;
}

int st_config_apply_tree(void *cfg, const struct st_cfg_entry *t, size_t n,
                         struct json_object *root, const char *const *handled, const char *what,
                         struct st_err *err)
{
	if (root == NULL)
		return 0;
	if (!json_object_is_type(root, json_type_object))
		return st_err_set(err, ST_EINVAL, "%s: the top level must be a mapping", what);
	return apply_obj(cfg, t, n, root, "", handled, what, err);
}

int st_config_apply_env(void *cfg, const struct st_cfg_entry *t, size_t n, struct st_err *err)
{
	for (size_t i = 0; i < n; i++) {
		char name[128] = "STASIS_";
		size_t o = strlen(name);
		const char *v;
		int rc;

		for (const char *k = t[i].key; *k && o + 1 < sizeof(name); k++)
			name[o++] = *k == '.' ? '_' : (char)toupper((unsigned char)*k);
		name[o] = '\0';
		v = getenv(name); /* NOLINT(concurrency-mt-unsafe): start-up, single thread */
		if (v == NULL)
			continue;
		if ((rc = set_entry(cfg, &t[i], v, err)) < 0) {
			st_err_prefix(err, "environment %s", name);
			return rc;
		}
	}
	return 0;
}

int st_config_print(struct st_buf *out, const void *cfg, const struct st_cfg_entry *t, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct st_cfg_entry *e = &t[i];
		char d[64];

		switch (e->type) {
		case ST_CFG_STR: {
			const char *s = *CFIELD(cfg, e, char *);

			rc = st_buf_printf(out, "%s: %s%s%s\n", e->key, s ? "\"" : "",
			                   s ? s : "null", s ? "\"" : "");
			break;
		}
		case ST_CFG_BOOL:
			rc = st_buf_printf(out, "%s: %s\n", e->key,
			                   *CFIELD(cfg, e, bool) ? "true" : "false");
			break;
		case ST_CFG_DURATION:
			st_duration_format(d, sizeof(d), *CFIELD(cfg, e, long long));
			rc = st_buf_printf(out, "%s: %s\n", e->key, d);
			break;
		case ST_CFG_INT:
		case ST_CFG_SIZE:
			rc = st_buf_printf(out, "%s: %lld\n", e->key, *CFIELD(cfg, e, long long));
			break;
		}
	}
	return rc;
}

void st_config_dispose(void *cfg, const struct st_cfg_entry *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (t[i].type == ST_CFG_STR) {
			free(*FIELD(cfg, &t[i], char *));
			*FIELD(cfg, &t[i], char *) = NULL;
		}
	}
}
