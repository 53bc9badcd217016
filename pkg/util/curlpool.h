/*
 * What the libcurl clients (S3, the data door, the freeze agents) share.
 *
 * A small pool of libcurl easy handles, so that clients reuse connections
 * (and TLS sessions) across requests and threads. A handle is taken for one
 * request and given back afterwards; the pool keeps at most
 * ST_CURL_POOL_MAX idle handles and cleans up the rest. The caller resets
 * a handle's options before use (curl_easy_reset keeps the connection cache).
 * Thread-safe.
 *
 * Beside it: the once-per-process libcurl initialisation, one judgement of
 * which transfer failures are worth a retry and which ST_E* code they map
 * to, the retry backoff, and an in-memory request body libcurl can rewind.
 */
#ifndef ST_PKG_UTIL_CURLPOOL_H
#define ST_PKG_UTIL_CURLPOOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "pkg/util/err.h"

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

/*
 * Runs curl_global_init once per process. Returns its result (CURLE_OK, or
 * the code of the first and only attempt) on every call. Thread-safe.
 */
CURLcode st_curl_global_init(void) ST_WARN_UNUSED;

/* True for a failure another attempt may not see: connect, timeout, a broken transfer. */
bool st_curl_retryable(CURLcode cc);

/* ST_ETLS for a TLS failure, ST_ETIMEDOUT for a timeout, else ST_EIO. */
int st_curl_code(CURLcode cc);

/*
 * Sleeps before the retry after attempt `attempt` (0 for the first):
 * base_ms doubled per attempt up to cap_ms, of which half is fixed and half
 * random, so that many clients spread their retries without starving one.
 */
void st_curl_backoff(unsigned base_ms, unsigned cap_ms, unsigned attempt);

/* A request body in memory; borrowed, it must outlive the transfer. */
struct st_curl_body {
	const char *ptr;
	size_t len;
	size_t off; /* what libcurl has read so far */
};

/*
 * Sets h up to upload b (CURLOPT_UPLOAD, its size, and read and seek
 * callbacks) and starts b over. The seek callback lets libcurl resend the
 * body by itself when a reused connection turns out to be dead; without it
 * libcurl fails with "rewinding of the data stream failed".
 */
void st_curl_set_body(CURL *h, struct st_curl_body *b);

#endif
