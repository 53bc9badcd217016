/*
 * Allocation that cannot fail, and release of secrets.
 *
 * st_xmalloc() and friends log the requested size and abort() on exhaustion:
 * in a container the right recovery from OOM is a restart. NULL from a
 * third-party library (json-c, OpenSSL, libcurl) is still checked by the
 * caller and mapped to ST_ENOMEM. st_freezero() wipes before freeing and is
 * used for keys, passwords and derived signing keys.
 */
#ifndef ST_PKG_UTIL_MEM_H
#define ST_PKG_UTIL_MEM_H

#include <stddef.h>

void *st_xmalloc(size_t n);
void *st_xcalloc(size_t nmemb, size_t size);
void *st_xrealloc(void *p, size_t n);
char *st_xstrdup(const char *s);
char *st_xstrndup(const char *s, size_t n);
/* Wipes n bytes at p, then frees it; NULL is a no-op. */
void st_freezero(void *p, size_t n);

#endif
