#include "pkg/util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/log.h"

static const char *const texts[] = {
	"success",        "invalid argument", "out of memory",  "input/output error",
	"timed out",      "protocol error",   "too big",        "not found",
	"upstream error", "TLS error",        "internal error",
};

const char *st_strerror(int rc)
{
	if (rc > 0 || -rc >= (int)(sizeof(texts) / sizeof(texts[0])))
		return "unknown error";
	return texts[-rc];
}

int st_err_set(struct st_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err->code != 0)
		return code;
	err->code = code;
	va_start(ap, fmt);
	(void)vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

void st_err_prefix(struct st_err *err, const char *fmt, ...)
{
	char ctx[ST_ERR_MSG_SIZE];
	char old[ST_ERR_MSG_SIZE];
	size_t n;
	size_t rest;
	va_list ap;

	if (err == NULL || err->code == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	n = strlen(ctx);
	if (n > sizeof(err->msg) - 3)
		n = sizeof(err->msg) - 3;
	memcpy(err->msg, ctx, n);
	memcpy(err->msg + n, ": ", 2);
	n += 2;
	rest = strnlen(old, sizeof(old) - 1);
	if (rest > sizeof(err->msg) - 1 - n)
		rest = sizeof(err->msg) - 1 - n;
	memcpy(err->msg + n, old, rest);
	err->msg[n + rest] = '\0';
}

void st_err_clear(struct st_err *err)
{
	if (err == NULL)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

const char *st_err_text(const struct st_err *err)
{
	if (err == NULL)
		return "no error";
	if (err->msg[0] != '\0')
		return err->msg;
	return st_strerror(err->code);
}

void st_assert_fail(const char *expr, const char *file, int line)
{
	st_log(ST_LOG_ERR, file, "assert", line, ST_EINTERNAL, "assertion failed: %s", expr);
#ifndef NDEBUG
	abort();
#endif
}
