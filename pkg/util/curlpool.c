#include "pkg/util/curlpool.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void st_curl_pool_init(struct st_curl_pool *p)
{
	(void)pthread_mutex_init(&p->lock, NULL);
	p->n_idle = 0;
}

void st_curl_pool_dispose(struct st_curl_pool *p)
{
	for (size_t i = 0; i < p->n_idle; i++)
		curl_easy_cleanup(p->idle[i]);
	p->n_idle = 0;
	(void)pthread_mutex_destroy(&p->lock);
}

CURL *st_curl_pool_take(struct st_curl_pool *p)
{
	CURL *h = NULL;

	(void)pthread_mutex_lock(&p->lock);
	if (p->n_idle > 0)
		h = p->idle[--p->n_idle];
	(void)pthread_mutex_unlock(&p->lock);
	return h ? h : curl_easy_init();
}

void st_curl_pool_give(struct st_curl_pool *p, CURL *h)
{
	if (h == NULL)
		return;
	(void)pthread_mutex_lock(&p->lock);
	if (p->n_idle < ST_CURL_POOL_MAX) {
		p->idle[p->n_idle++] = h;
		h = NULL;
	}
	(void)pthread_mutex_unlock(&p->lock);
	if (h != NULL)
		curl_easy_cleanup(h);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

CURLcode st_curl_global_init(void)
{
	if (pthread_once(&global_once, global_init) != 0)
		return CURLE_FAILED_INIT;
	return global_rc;
}

bool st_curl_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

int st_curl_code(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return ST_ETIMEDOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_SHUTDOWN_FAILED:
		return ST_ETLS;
	default:
		return ST_EIO;
	}
}

void st_curl_backoff(unsigned base_ms, unsigned cap_ms, unsigned attempt)
{
	unsigned d = base_ms;
	struct timespec ts;

	while (attempt-- > 0 && d < cap_ms)
		d *= 2;
	if (d > cap_ms)
		d = cap_ms;
	d = d / 2 + arc4random_uniform(d / 2 + 1);
	ts.tv_sec = d / 1000;
	ts.tv_nsec = (long)(d % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static size_t body_read(char *p, size_t size, size_t nmemb, void *payload)
{
	struct st_curl_body *b = payload;
	size_t n = size * nmemb;

	if (n > b->len - b->off)
		n = b->len - b->off;
	memcpy(p, b->ptr + b->off, n);
	b->off += n;
	return n;
}

static int body_seek(void *payload, curl_off_t off, int origin)
{
	struct st_curl_body *b = payload;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > b->len)
		return CURL_SEEKFUNC_CANTSEEK;
	b->off = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

void st_curl_set_body(CURL *h, struct st_curl_body *b)
{
	b->off = 0;
	(void)curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	(void)curl_easy_setopt(h, CURLOPT_READFUNCTION, body_read);
	(void)curl_easy_setopt(h, CURLOPT_READDATA, b);
	(void)curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, body_seek);
	(void)curl_easy_setopt(h, CURLOPT_SEEKDATA, b);
	(void)curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)b->len);
}
