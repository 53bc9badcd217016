/*
 * Table-driven configuration.
 *
 * A component describes its settings once, as an array of st_cfg_entry
 * (dotted YAML key, type, offset into its config struct, bounds, default,
 * help). The same table drives defaults, loading from a YAML/JSON tree
 * (unknown keys are errors that list the known ones), environment overrides
 * (STASIS_ + key upper-cased with '.' -> '_'), command-line overrides
 * (st_config_set), --print-config and the reference in docs. Durations are
 * written "500ms", "30s", "5m", "720h", "1h30m" and stored in milliseconds.
 * Sizes accept "64Ki", "8Mi", "1Gi" or plain bytes.
 */
#ifndef ST_PKG_CONFIG_H
#define ST_PKG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

enum st_cfg_type {
	ST_CFG_STR,      /* char *, heap */
	ST_CFG_BOOL,     /* bool */
	ST_CFG_INT,      /* long long */
	ST_CFG_DURATION, /* long long milliseconds */
	ST_CFG_SIZE,     /* long long bytes */
};

struct st_cfg_entry {
	const char *key;
	enum st_cfg_type type;
	size_t offset;
	long long min; /* numeric bounds, inclusive (min == max == 0: unbounded) */
	long long max;
	const char *dflt; /* textual default, parsed like a user value; NULL: unset */
	const char *help;
};

/* Fills every entry with its default. Fails only on a bad table. */
int st_config_defaults(void *cfg, const struct st_cfg_entry *t, size_t n) ST_WARN_UNUSED;

/*
 * Applies the scalars of a parsed document. Keys listed in `handled` (top
 * level names the caller parses itself, NULL-terminated) are skipped.
 */
int st_config_apply_tree(void *cfg, const struct st_cfg_entry *t, size_t n,
                         struct json_object *root, const char *const *handled, const char *what,
                         struct st_err *err) ST_WARN_UNUSED;

/* Applies STASIS_* environment variables that name a table key. */
int st_config_apply_env(void *cfg, const struct st_cfg_entry *t, size_t n,
                        struct st_err *err) ST_WARN_UNUSED;

/* Sets one key from text (command-line flags); errors name the key. */
int st_config_set(void *cfg, const struct st_cfg_entry *t, size_t n, const char *key,
                  const char *value, struct st_err *err) ST_WARN_UNUSED;

/* Appends "key: value" lines (YAML-compatible) for every entry. */
int st_config_print(struct st_buf *out, const void *cfg, const struct st_cfg_entry *t,
                    size_t n) ST_WARN_UNUSED;

/* Frees the strings the table owns in cfg. */
void st_config_dispose(void *cfg, const struct st_cfg_entry *t, size_t n);

/* "1h30m" / "250ms" / "45s" -> milliseconds. */
int st_duration_parse(long long *ms_out, const char *s) ST_WARN_UNUSED;
/* Milliseconds -> the shortest exact text ("30s", "1m30s", "250ms"). */
void st_duration_format(char *out, size_t cap, long long ms);

#endif
