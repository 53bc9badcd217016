/*
 * Error codes and error detail.
 *
 * Every fallible function in stasis returns an int: 0 on success or one
 * negative ST_E* code from the closed enum below. Functions at a boundary
 * (config load, admission decode, S3 and Kubernetes calls) also fill a
 * caller-owned struct st_err with a human sentence; the first error set wins
 * so that the root cause is what the user reads, and st_err_prefix() adds
 * context on the way up.
 */
#ifndef ST_PKG_UTIL_ERR_H
#define ST_PKG_UTIL_ERR_H

#include <stddef.h>

#define ST_WARN_UNUSED  __attribute__((warn_unused_result))
#define ST_PRINTF(n, m) __attribute__((format(printf, n, m)))
#define ST_ERR_MSG_SIZE 256

enum st_errcode {
	ST_OK = 0,
	ST_EINVAL = -1,
	ST_ENOMEM = -2,
	ST_EIO = -3,
	ST_ETIMEDOUT = -4,
	ST_EPROTO = -5,
	ST_ETOOBIG = -6,
	ST_ENOTFOUND = -7,
	ST_EUPSTREAM = -8,
	ST_ETLS = -9,
	ST_EINTERNAL = -10,
};

struct st_err {
	int code;
	char msg[ST_ERR_MSG_SIZE];
};

#define ST_ERR_INIT       \
	{                 \
		0,        \
		{         \
			0 \
		}         \
	}

/* Short static text for a code; never NULL. */
const char *st_strerror(int rc);

/*
 * Records the first error in err (NULL is accepted and ignored) and returns
 * code, so an error site reads `return st_err_set(err, ST_EINVAL, "...")`.
 * A later call on an err that already holds an error changes nothing.
 */
int st_err_set(struct st_err *err, int code, const char *fmt, ...) ST_PRINTF(3, 4);

/* Prepends "<context>: " to the message already in err, if any. */
void st_err_prefix(struct st_err *err, const char *fmt, ...) ST_PRINTF(2, 3);

/* Resets err to "no error". */
void st_err_clear(struct st_err *err);

/* The message, or st_strerror(code) when none was recorded. */
const char *st_err_text(const struct st_err *err);

/* Programmer errors: abort in debug builds, log + ST_EINTERNAL otherwise. */
void st_assert_fail(const char *expr, const char *file, int line);
#define ST_ASSERT(expr) ((expr) ? (void)0 : st_assert_fail(#expr, __FILE__, __LINE__))

#endif
