#include "pkg/cli_output.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pkg/util/json.h"
#include "pkg/util/mem.h"
#include "pkg/yaml.h"

/* kubectl's tabwriter: minimum cell width 10, padding 3. */
#define TABLE_MIN_WIDTH 10
#define TABLE_PADDING   3

int st_cli_output_parse(enum st_cli_output *out, const char *s)
{
	if (s[0] == '\0' || strcmp(s, "table") == 0)
		*out = ST_CLI_OUTPUT_TABLE;
	else if (strcmp(s, "json") == 0)
		*out = ST_CLI_OUTPUT_JSON;
	else if (strcmp(s, "yaml") == 0)
		*out = ST_CLI_OUTPUT_YAML;
	else
		return ST_EINVAL;
	return 0;
}

int st_cli_output_object(struct st_buf *out, struct json_object *obj, enum st_cli_output fmt)
{
	const char *s;
	int rc;

	if (fmt == ST_CLI_OUTPUT_YAML)
		return st_yaml_emit(out, obj);
	s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
	                                                JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s == NULL)
		return ST_ENOMEM;
	if ((rc = st_buf_puts(out, s)) < 0)
		return rc;
	return st_buf_putc(out, '\n');
}

int st_cli_output_list(struct st_buf *out, struct json_object *items, enum st_cli_output fmt,
                       int single)
{
	struct json_object *list = NULL;
	int rc;

	if (single && json_object_array_length(items) == 1)
		return st_cli_output_object(out, json_object_array_get_idx(items, 0), fmt);
	list = json_object_new_object();
	st_json_add_str(list, "apiVersion", "v1");
	st_json_add_str(list, "kind", "List");
	json_object_object_add(list, "items", json_object_get(items));
	rc = st_cli_output_object(out, list, fmt);
	json_object_put(list);
	return rc;
}

void st_cli_table_init(struct st_cli_table *t, const char *const *headers, size_t ncols)
{
	size_t i;

	ST_ASSERT(ncols <= ST_CLI_TABLE_MAX_COLS);
	memset(t, 0, sizeof(*t));
	t->ncols = ncols > ST_CLI_TABLE_MAX_COLS ? ST_CLI_TABLE_MAX_COLS : ncols;
	for (i = 0; i < t->ncols; i++)
		t->headers[i] = headers[i];
}

void st_cli_table_dispose(struct st_cli_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->rows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->rows = t->alloc = 0;
}

void st_cli_table_add(struct st_cli_table *t, const char *const *cells)
{
	size_t i;

	if (t->rows == t->alloc) {
		t->alloc = t->alloc == 0 ? 16 : t->alloc * 2;
		t->cells = st_xrealloc(t->cells, t->alloc * t->ncols * sizeof(*t->cells));
	}
	for (i = 0; i < t->ncols; i++)
		t->cells[t->rows * t->ncols + i] = st_xstrdup(cells[i] != NULL ? cells[i] : "");
	t->rows++;
}

static int write_row(struct st_buf *out, const char *const *cells, const size_t *width,
                     size_t ncols)
{
	size_t i;
	int rc;

	for (i = 0; i < ncols; i++) {
		if (i + 1 == ncols)
			rc = st_buf_printf(out, "%s\n", cells[i]);
		else
			rc = st_buf_printf(out, "%-*s", (int)width[i], cells[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int st_cli_table_write(struct st_buf *out, const struct st_cli_table *t)
{
	size_t width[ST_CLI_TABLE_MAX_COLS];
	size_t r, i, w;
	int rc;

	for (i = 0; i < t->ncols; i++)
		width[i] = strlen(t->headers[i]) + TABLE_PADDING;
	for (r = 0; r < t->rows; r++) {
		for (i = 0; i < t->ncols; i++) {
			w = strlen(t->cells[r * t->ncols + i]) + TABLE_PADDING;
			if (w > width[i])
				width[i] = w;
		}
	}
	for (i = 0; i < t->ncols; i++)
		if (width[i] < TABLE_MIN_WIDTH)
			width[i] = TABLE_MIN_WIDTH;
	if ((rc = write_row(out, t->headers, width, t->ncols)) < 0)
		return rc;
	for (r = 0; r < t->rows; r++) {
		if ((rc = write_row(out, (const char *const *)&t->cells[r * t->ncols], width,
		                    t->ncols)) < 0)
			return rc;
	}
	return 0;
}

int st_cli_table_print(struct st_buf *out, const char *const *headers, size_t ncols,
                       struct json_object *items, st_cli_row_fn row_fn, long long now)
{
	struct st_cli_table t;
	size_t i;
	int rc;

	st_cli_table_init(&t, headers, ncols);
	for (i = 0; i < json_object_array_length(items); i++)
		row_fn(&t, json_object_array_get_idx(items, i), now);
	rc = st_cli_table_write(out, &t);
	st_cli_table_dispose(&t);
	return rc;
}

/* One "<number><unit>" term of a Go duration, in seconds (fractions truncated at the end). */
static int duration_term(double *secs, const char **p)
{
	char *end = NULL;
	double v;

	if ((**p < '0' || **p > '9') && **p != '.')
		return ST_EINVAL;
	errno = 0;
	v = strtod(*p, &end);
	if (errno != 0 || end == *p)
		return ST_EINVAL;
	switch (*end) {
	case 'h':
		v *= 3600.0;
		break;
	case 'm':
		if (end[1] == 's')
			return ST_EINVAL; /* milliseconds are not a TTL */
		v *= 60.0;
		break;
	case 's':
		break;
	default:
		return ST_EINVAL;
	}
	*secs += v;
	*p = end + 1;
	return 0;
}

int st_cli_duration_parse(int64_t *secs_out, const char *s)
{
	const char *p = s;
	double secs = 0;
	int rc;

	if (strcmp(s, "0") == 0) {
		*secs_out = 0;
		return 0;
	}
	if (*p == '\0')
		return ST_EINVAL;
	while (*p != '\0')
		if ((rc = duration_term(&secs, &p)) < 0)
			return rc;
	/* Go durations are int64 nanoseconds: about 292 years. */
	if (secs < 0 || secs > 9.2e9)
		return ST_EINVAL;
	*secs_out = (int64_t)secs;
	return 0;
}

void st_cli_duration_format(char *buf, size_t size, int64_t secs)
{
	int64_t h = secs / 3600, m = secs % 3600 / 60, s = secs % 60;

	if (secs <= 0)
		(void)snprintf(buf, size, "0s");
	else if (h > 0)
		(void)snprintf(buf, size, "%lldh%lldm%llds", (long long)h, (long long)m,
		               (long long)s);
	else if (m > 0)
		(void)snprintf(buf, size, "%lldm%llds", (long long)m, (long long)s);
	else
		(void)snprintf(buf, size, "%llds", (long long)s);
}

void st_cli_duration_short(char *buf, size_t size, int64_t secs)
{
	if (secs < -1)
		(void)snprintf(buf, size, "<invalid>");
	else if (secs < 0)
		(void)snprintf(buf, size, "0s");
	else if (secs < 60)
		(void)snprintf(buf, size, "%llds", (long long)secs);
	else if (secs < 3600)
		(void)snprintf(buf, size, "%lldm", (long long)(secs / 60));
	else if (secs < 86400)
		(void)snprintf(buf, size, "%lldh", (long long)(secs / 3600));
	else if (secs < 86400LL * 365)
		(void)snprintf(buf, size, "%lldd", (long long)(secs / 86400));
	else
		(void)snprintf(buf, size, "%lldy", (long long)(secs / (86400LL * 365)));
}

void st_cli_time_from_now(char *buf, size_t size, int64_t when, int64_t now)
{
	char d[32];

	if (when == 0) {
		(void)snprintf(buf, size, "n/a");
		return;
	}
	if (when >= now) {
		st_cli_duration_short(buf, size, when - now);
		return;
	}
	st_cli_duration_short(d, sizeof(d), now - when);
	(void)snprintf(buf, size, "%s ago", d);
}

/* Parses "+hh:mm"/"-hh:mm"/"Z" at p into seconds east of UTC. */
static int parse_offset(long *off, const char *p)
{
	int hh, mm;
	char sign;

	if (strcmp(p, "Z") == 0 || strcmp(p, "z") == 0) {
		*off = 0;
		return 0;
	}
	sign = p[0];
	if ((sign != '+' && sign != '-') || strlen(p) != 6 || p[3] != ':')
		return ST_EINVAL;
	if (p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9' || p[4] < '0' || p[4] > '9' ||
	    p[5] < '0' || p[5] > '9')
		return ST_EINVAL;
	hh = (p[1] - '0') * 10 + (p[2] - '0');
	mm = (p[4] - '0') * 10 + (p[5] - '0');
	if (hh > 23 || mm > 59)
		return ST_EINVAL;
	*off = (sign == '-' ? -1 : 1) * (hh * 3600L + mm * 60L);
	return 0;
}

int st_cli_time_parse(int64_t *out, const char *s)
{
	struct tm tm;
	const char *p;
	long off = 0;

	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		return ST_EINVAL;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return ST_EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (parse_offset(&off, p) < 0)
		return ST_EINVAL;
	*out = (int64_t)timegm(&tm) - off;
	return 0;
}

void st_cli_time_rfc3339(char *buf, size_t size, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		(void)snprintf(buf, size, "@%lld", (long long)t);
}

void st_cli_time_show(char *buf, size_t size, const char *rfc3339)
{
	int64_t t = 0;
	time_t tt;
	struct tm tm;

	if (rfc3339 == NULL || rfc3339[0] == '\0') {
		(void)snprintf(buf, size, "<nil>");
		return;
	}
	if (st_cli_time_parse(&t, rfc3339) < 0) {
		(void)snprintf(buf, size, "%s", rfc3339);
		return;
	}
	tt = (time_t)t;
	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, size, "%Y-%m-%d %H:%M:%S +0000 UTC", &tm) == 0)
		(void)snprintf(buf, size, "%s", rfc3339);
}

/* Appends s to buf at *len, truncating at size (always NUL-terminated). */
static void append(char *buf, size_t size, size_t *len, const char *s)
{
	int n;

	if (*len >= size)
		return;
	n = snprintf(buf + *len, size - *len, "%s", s);
	if (n > 0)
		*len += (size_t)n < size - *len ? (size_t)n : size - *len - 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void format_match_labels(char *buf, size_t size, size_t *len, struct json_object *ml)
{
	const char **keys = NULL;
	size_t n = 0, i;

	if (ml == NULL || json_object_object_length(ml) == 0)
		return;
	keys = st_xcalloc((size_t)json_object_object_length(ml), sizeof(*keys));
	json_object_object_foreach(ml, k, v)
	{
		(void)v;
		keys[n++] = k;
	}
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 0; i < n; i++) {
		if (*len > 0)
			append(buf, size, len, ",");
		append(buf, size, len, keys[i]);
		append(buf, size, len, "=");
		append(buf, size, len,
		       st_json_get_str(ml, keys[i]) != NULL ? st_json_get_str(ml, keys[i]) : "");
	}
	free(keys);
}

static void format_expression(char *buf, size_t size, size_t *len, struct json_object *e)
{
	const char *key = st_json_get_str(e, "key");
	const char *op = st_json_get_str(e, "operator");
	char vals[1024];

	if (key == NULL || op == NULL)
		return;
	if (*len > 0)
		append(buf, size, len, ",");
	if (strcmp(op, "DoesNotExist") == 0)
		append(buf, size, len, "!");
	append(buf, size, len, key);
	if (strcmp(op, "In") != 0 && strcmp(op, "NotIn") != 0)
		return;
	append(buf, size, len, strcmp(op, "In") == 0 ? " in (" : " notin (");
	st_cli_join(vals, sizeof(vals), st_json_get_arr(e, "values"), "");
	append(buf, size, len, vals);
	append(buf, size, len, ")");
}

void st_cli_selector_format(char *buf, size_t size, struct json_object *selector)
{
	struct json_object *exprs = st_json_get_arr(selector, "matchExpressions");
	size_t len = 0, i;

	buf[0] = '\0';
	format_match_labels(buf, size, &len, st_json_get_obj(selector, "matchLabels"));
	for (i = 0; exprs != NULL && i < json_object_array_length(exprs); i++)
		format_expression(buf, size, &len, json_object_array_get_idx(exprs, i));
	if (len == 0)
		(void)snprintf(buf, size, "<none>");
}

void st_cli_join(char *buf, size_t size, struct json_object *arr, const char *dflt)
{
	size_t len = 0, i;
	const char *s;

	buf[0] = '\0';
	for (i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
		s = json_object_get_string(json_object_array_get_idx(arr, i));
		if (i > 0)
			append(buf, size, &len, ",");
		append(buf, size, &len, s != NULL ? s : "");
	}
	if (len == 0)
		(void)snprintf(buf, size, "%s", dflt);
}
