/*
 * Output of the stasis command-line verbs: tables, JSON, YAML and the time
 * formats they show.
 *
 * Tables are laid out as kubectl and Velero lay them out: upper-case
 * headers, columns padded to the widest cell plus three spaces with a
 * minimum width of ten, the last column unpadded. Durations follow Go's
 * time.Duration ("720h0m0s"), the short "age" form follows Kubernetes
 * ("29d", "5h", "3m"), and timestamps are RFC 3339 on the wire and
 * "2006-01-02 15:04:05 +0000 UTC" on screen, like Velero. Label selectors are
 * printed in the command-line form ("app=nginx,tier in (db,web)"), "<none>"
 * when empty. Nothing here talks to the network; every function is
 * thread-safe apart from the table's own state.
 */
#ifndef ST_PKG_CLI_OUTPUT_H
#define ST_PKG_CLI_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

/* Cap of one printed document or table. */
#define ST_CLI_CAP_OUTPUT (64u * 1024u * 1024u)
/* Columns a table may have. */
#define ST_CLI_TABLE_MAX_COLS 12

enum st_cli_output {
	ST_CLI_OUTPUT_TABLE = 0,
	ST_CLI_OUTPUT_JSON,
	ST_CLI_OUTPUT_YAML,
};

/* "table", "json" or "yaml" (also "" for table); ST_EINVAL for anything else. */
int st_cli_output_parse(enum st_cli_output *out, const char *s) ST_WARN_UNUSED;

/*
 * Appends obj as pretty JSON (two-space indent, '/' not escaped, newline at
 * the end) or as one YAML document. ST_ETOOBIG past the buffer's cap.
 */
int st_cli_output_object(struct st_buf *out, struct json_object *obj,
                         enum st_cli_output fmt) ST_WARN_UNUSED;

/*
 * Appends a list of objects: a "v1 List" for JSON and YAML, unless `single`
 * is set and there is exactly one item, which is then printed alone (as
 * Velero does for `get NAME`). items is borrowed.
 */
int st_cli_output_list(struct st_buf *out, struct json_object *items, enum st_cli_output fmt,
                       int single) ST_WARN_UNUSED;

/* A table being filled; caller-owned, st_cli_table_dispose releases the cells. */
struct st_cli_table {
	size_t ncols;
	const char *headers[ST_CLI_TABLE_MAX_COLS];
	char **cells; /* rows * ncols strings */
	size_t rows;
	size_t alloc;
};

/* Sets the headers (borrowed; they must outlive the table); ncols <= ST_CLI_TABLE_MAX_COLS. */
void st_cli_table_init(struct st_cli_table *t, const char *const *headers, size_t ncols);
void st_cli_table_dispose(struct st_cli_table *t);
/* Adds one row of ncols cells (copied; NULL prints as ""). */
void st_cli_table_add(struct st_cli_table *t, const char *const *cells);
/* Appends the laid-out table, headers first. */
int st_cli_table_write(struct st_buf *out, const struct st_cli_table *t) ST_WARN_UNUSED;

/* Adds the row(s) of one item (borrowed) to t; now is the time EXPIRES-like cells count from. */
typedef void (*st_cli_row_fn)(struct st_cli_table *t, struct json_object *item, long long now);

/* Lays out a table of every item of an array (borrowed), one row_fn call each. */
int st_cli_table_print(struct st_buf *out, const char *const *headers, size_t ncols,
                       struct json_object *items, st_cli_row_fn row_fn,
                       long long now) ST_WARN_UNUSED;

/*
 * Go duration text ("720h", "1h30m", "90s", "720h0m0s", "1.5h") to whole
 * seconds. Units h, m, s; ST_EINVAL for anything else, negative or overflow.
 */
int st_cli_duration_parse(int64_t *secs_out, const char *s) ST_WARN_UNUSED;
/* Seconds to Go's canonical form: "720h0m0s", "5m0s", "0s". */
void st_cli_duration_format(char *buf, size_t size, int64_t secs);
/* Kubernetes' short human duration: "0s", "45s", "3m", "5h", "29d", "2y"; "<invalid>" below -1. */
void st_cli_duration_short(char *buf, size_t size, int64_t secs);
/* Relative to now: "n/a" for when == 0, "29d" in the future, "3h ago" in the past. */
void st_cli_time_from_now(char *buf, size_t size, int64_t when, int64_t now);

/* RFC 3339 ("2026-01-02T03:04:05Z", fractions and offsets accepted) to Unix seconds. */
int st_cli_time_parse(int64_t *out, const char *s) ST_WARN_UNUSED;
/* "2026-01-02T03:04:05Z". */
void st_cli_time_rfc3339(char *buf, size_t size, int64_t t);
/* Velero's screen form "2026-01-02 03:04:05 +0000 UTC"; "<nil>" for an absent (NULL) text. */
void st_cli_time_show(char *buf, size_t size, const char *rfc3339);

/*
 * A LabelSelector object in the command-line form, matchLabels first (sorted
 * by key), then matchExpressions in order; "<none>" for NULL or empty.
 */
void st_cli_selector_format(char *buf, size_t size, struct json_object *selector);

/* Joins a string array with ","; `dflt` when it is NULL or empty. */
void st_cli_join(char *buf, size_t size, struct json_object *arr, const char *dflt);

#endif
