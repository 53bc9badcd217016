/*
 * Logging: one line per event on stderr, as text or JSON.
 *
 * st_log() is the single sink. The st_log_err/warn/info/debug macros test the
 * level before evaluating their arguments; the _f variants prefix the calling
 * function, the _fr variants append st_strerror(rc). Per-request noise goes
 * through st_log_ratelimited(), which lets a burst through and then counts
 * what it drops. Secrets and request bodies are never passed here.
 * The level and format are process-wide (the only globals in pkg/).
 */
#ifndef ST_PKG_UTIL_LOG_H
#define ST_PKG_UTIL_LOG_H

#include <stdbool.h>

#include "pkg/util/err.h"

enum st_log_level {
	ST_LOG_ERR = 0,
	ST_LOG_WARN = 1,
	ST_LOG_INFO = 2,
	ST_LOG_DEBUG = 3,
};

enum st_log_format {
	ST_LOG_TEXT = 0,
	ST_LOG_JSON = 1,
};

extern int st_log_level_current;

/* Sets the threshold and output format; thread-safe enough for start-up. */
void st_log_setup(enum st_log_level level, enum st_log_format format);

/* Parses "error|warn|info|debug" and "text|json"; returns ST_EINVAL if unknown. */
int st_log_parse_level(enum st_log_level *out, const char *s) ST_WARN_UNUSED;
int st_log_parse_format(enum st_log_format *out, const char *s) ST_WARN_UNUSED;

/* Writes one event. rc != 0 appends ": <st_strerror(rc)>". Thread-safe. */
void st_log(enum st_log_level level, const char *file, const char *func, int line, int rc,
            const char *fmt, ...) ST_PRINTF(6, 7);

/*
 * Rate limit for a class of messages: returns true when the caller may log.
 * Allows `burst` messages per second per limiter; thread-safe.
 */
struct st_log_ratelimit {
	long window;
	unsigned count;
	unsigned dropped;
	unsigned burst;
};
#define ST_LOG_RATELIMIT_INIT(b) \
	{                        \
		0, 0, 0, (b)     \
	}
bool st_log_ratelimited(struct st_log_ratelimit *rl);

#define ST_LOG_(lvl, fn, rc, ...)                                                   \
	do {                                                                        \
		if ((int)(lvl) <= st_log_level_current)                             \
			st_log((lvl), __FILE__, (fn), __LINE__, (rc), __VA_ARGS__); \
	} while (0)

#define st_log_err(...)         ST_LOG_(ST_LOG_ERR, NULL, 0, __VA_ARGS__)
#define st_log_warn(...)        ST_LOG_(ST_LOG_WARN, NULL, 0, __VA_ARGS__)
#define st_log_info(...)        ST_LOG_(ST_LOG_INFO, NULL, 0, __VA_ARGS__)
#define st_log_debug(...)       ST_LOG_(ST_LOG_DEBUG, NULL, 0, __VA_ARGS__)
#define st_log_err_f(...)       ST_LOG_(ST_LOG_ERR, __func__, 0, __VA_ARGS__)
#define st_log_warn_f(...)      ST_LOG_(ST_LOG_WARN, __func__, 0, __VA_ARGS__)
#define st_log_debug_f(...)     ST_LOG_(ST_LOG_DEBUG, __func__, 0, __VA_ARGS__)
#define st_log_err_fr(rc, ...)  ST_LOG_(ST_LOG_ERR, __func__, (rc), __VA_ARGS__)
#define st_log_warn_fr(rc, ...) ST_LOG_(ST_LOG_WARN, __func__, (rc), __VA_ARGS__)

#endif
