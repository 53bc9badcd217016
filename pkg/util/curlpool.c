#include "pkg/util/curlpool.h"

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
