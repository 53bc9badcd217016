#include "pkg/util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pkg/util/jsonw.h"

int st_log_level_current = ST_LOG_INFO;
static enum st_log_format log_format = ST_LOG_TEXT;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void st_log_setup(enum st_log_level level, enum st_log_format format)
{
	st_log_level_current = (int)level;
	log_format = format;
}

int st_log_parse_level(enum st_log_level *out, const char *s)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum st_log_level)i;
			return 0;
		}
	}
	return ST_EINVAL;
}

int st_log_parse_format(enum st_log_format *out, const char *s)
{
	if (strcmp(s, "text") == 0)
		*out = ST_LOG_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = ST_LOG_JSON;
	else
		return ST_EINVAL;
	return 0;
}

/* Escapes a message for a JSON string into a fixed buffer (the logger does not allocate). */
static void json_escape(char *dst, size_t cap, const char *src)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		char esc[6];
		size_t n = st_json_escape(esc, *p);

		if (o + (n ? n : 1) >= cap)
			break;
		if (n == 0)
			dst[o++] = (char)*p;
		else
			memcpy(dst + o, esc, n);
		o += n;
	}
	dst[o] = '\0';
}

void st_log(enum st_log_level level, const char *file, const char *func, int line, int rc,
            const char *fmt, ...)
{
	char msg[1024];
	char stamp[40];
	struct timespec ts;
	struct tm tm;
	size_t n = 0;
	va_list ap;

	if (func != NULL)
		n = (size_t)snprintf(msg, sizeof(msg), "%s: ", func);
	va_start(ap, fmt);
	(void)vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	if (rc != 0) {
		n = strlen(msg);
		(void)snprintf(msg + n, sizeof(msg) - n, ": %s", st_strerror(rc));
	}
	(void)clock_gettime(CLOCK_REALTIME, &ts);
	(void)gmtime_r(&ts.tv_sec, &tm);
	(void)strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

	pthread_mutex_lock(&log_lock);
	if (log_format == ST_LOG_JSON) {
		char esc[2100];

		json_escape(esc, sizeof(esc), msg);
		(void)fprintf(stderr,
		              "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\","
		              "\"src\":\"%s:%d\"}\n",
		              stamp, ts.tv_nsec / 1000000, level_names[level], esc, file, line);
	} else {
		(void)fprintf(stderr, "%s.%03ldZ %-5s %s\n", stamp, ts.tv_nsec / 1000000,
		              level_names[level], msg);
	}
	pthread_mutex_unlock(&log_lock);
}

bool st_log_ratelimited(struct st_log_ratelimit *rl)
{
	struct timespec ts;
	bool ok;
	unsigned dropped = 0;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	pthread_mutex_lock(&log_lock);
	if (rl->window != ts.tv_sec) {
		dropped = rl->dropped;
		rl->window = ts.tv_sec;
		rl->count = 0;
		rl->dropped = 0;
	}
	ok = rl->count < rl->burst;
	if (ok)
		rl->count++;
	else
		rl->dropped++;
	pthread_mutex_unlock(&log_lock);
	if (dropped > 0)
		st_log_warn("log rate limit: %u similar messages dropped", dropped);
	return ok;
}
