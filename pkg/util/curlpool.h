/*
 * A small pool of libcurl easy handles, so that clients reuse connections
 * (and TLS sessions) across requests and threads. A handle is taken for one
 * request and given back afterwards; the pool keeps at most
 * ST_CURL_POOL_MAX idle handles and cleans up the rest. The caller resets
 * a handle's options before use (curl_easy_reset keeps the connection cache).
 * Thread-safe.
 */
#ifndef ST_PKG_UTIL_CURLPOOL_H
#define ST_PKG_UTIL_CURLPOOL_H

#include <pthread.h>
#include <stddef.h>

#include <curl/curl.h>

#define ST_CURL_POOL_MAX 16

struct st_curl_pool {
	pthread_mutex_t lock;
	CURL *idle[ST_CURL_POOL_MAX];
	size_t n_idle;
};

void st_curl_pool_init(struct st_curl_pool *p);
/* Cleans up every idle handle; no handle may be out. */
void st_curl_pool_dispose(struct st_curl_pool *p);
/* An idle handle, or a new one; NULL only when libcurl cannot allocate. */
CURL *st_curl_pool_take(struct st_curl_pool *p);
/* Returns h to the pool (NULL is a no-op); cleaned up when the pool is full. */
void st_curl_pool_give(struct st_curl_pool *p, CURL *h);

#endif
