/*
 * Private to pkg/kube*.c (and the unit tests): the client structure, the
 * request descriptor shared by the verbs, discovery, lists and watches, the
 * token bucket, query encoding and Status decoding.
 */
#ifndef ST_PKG_KUBE_INT_H
#define ST_PKG_KUBE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <curl/curl.h>

#include "pkg/kube.h"
#include "pkg/util/buf.h"
#include "pkg/util/curlpool.h"

/*
 * Token bucket in the reservation style: a caller takes a token even when the
 * bucket is empty and is told how long to sleep, so waiters queue fairly
 * without holding the lock while they sleep.
 */
struct st_kube__limiter {
	double qps;
	double burst;
	double tokens;
	uint64_t last_us;
};

void st_kube__limiter_init(struct st_kube__limiter *l, double qps, unsigned burst, uint64_t now_us);
/* Takes one token at now_us; returns the microseconds to wait before sending. */
uint64_t st_kube__limiter_reserve(struct st_kube__limiter *l, uint64_t now_us);

/* Monotonic clock in microseconds. */
uint64_t st_kube__now_us(void);

/* One resource of the discovery cache. */
struct st_kube__res {
	struct st_kube_gvr gvr;
	char singular[128];
	char short_names[256]; /* ",deploy,dp," */
};

struct st_kube__disc {
	struct st_kube__res *res;
	size_t n;
	size_t alloc;
};

struct st_kube_client {
	struct st_kube_config cfg;
	unsigned max_retries;
	unsigned backoff_ms;
	unsigned connect_timeout_ms;
	unsigned timeout_ms;

	pthread_mutex_t lock;     /* pool, limiter, token */
	struct st_curl_pool pool; /* connections reused across requests and threads */
	struct st_kube__limiter lim;
	uint64_t token_read_us; /* when cfg.token was last read from cfg.token_file */

	pthread_mutex_t disc_lock;
	struct st_kube__disc *disc;

	_Atomic uint64_t count[ST_KUBE_VERB_COUNT];
	_Atomic uint64_t retries;
	_Atomic uint64_t throttled_ms;
};

/* Returns the number of bytes consumed; anything else aborts the transfer. */
typedef int (*st_kube__stream_cb)(const char *data, size_t n, void *payload);

struct st_kube__req {
	enum st_kube_verb verb;
	const char *method;
	const char *path;  /* escaped, starts with '/' */
	const char *query; /* encoded, no '?'; NULL: none */
	const char *ctype; /* body content type; NULL: no body */
	const char *body;
	size_t body_len;
	/* What the request is about, for messages: "deployments.apps", ns, name. */
	const char *resname;
	const char *ns;
	const char *name;
	/* Streaming (watch): successful bodies go to stream instead of resp->body. */
	st_kube__stream_cb stream;
	void *stream_payload;
	const atomic_bool *cancel;
	uint64_t deadline_us; /* monotonic; 0: none */
	unsigned timeout_ms;  /* whole transfer; 0: the client's (none for streams) */
	bool no_retry;
};

struct st_kube__resp {
	long http;
	struct st_buf body; /* error bodies always; success bodies unless streamed */
	unsigned retry_after_s;
	bool cancelled; /* the cancel flag or deadline ended the transfer */
	int stream_rc;  /* < 0 when the stream callback failed */
};

/* Sends req with rate limiting and retries; resp->body must be initialised by the caller. */
int st_kube__do(struct st_kube_client *c, const struct st_kube__req *req,
                struct st_kube__resp *resp, struct st_err *err) ST_WARN_UNUSED;

/* st_kube__do, then decodes a 2xx body into *out (NULL for an empty body). */
int st_kube__call(struct json_object **out, struct st_kube_client *c,
                  const struct st_kube__req *req, long *http_out,
                  struct st_err *err) ST_WARN_UNUSED;

/*
 * Turns a non-2xx response into an error code and sentence. cfg (may be NULL)
 * supplies the context, user and server for hints.
 */
int st_kube__status_error(struct st_err *err, const struct st_kube_config *cfg,
                          const struct st_kube__req *req, long http, const char *body, size_t len);

/* Appends "&key=value" (no '&' when q is empty) with value percent-encoded. */
int st_kube__query_add(struct st_buf *q, const char *key, const char *value) ST_WARN_UNUSED;

/* Reads a whole file of at most cap bytes into a NUL-terminated heap string. */
int st_kube__read_file(char **out, size_t *len_out, const char *path, size_t cap,
                       struct st_err *err) ST_WARN_UNUSED;

/* Base64 (standard alphabet, whitespace ignored) into a heap buffer. */
int st_kube__b64_decode(char **out, size_t *len_out, const char *in, size_t in_len) ST_WARN_UNUSED;

/* Frees the discovery cache (NULL-safe). */
void st_kube__disc_free(struct st_kube__disc *d);

#endif
