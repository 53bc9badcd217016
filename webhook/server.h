/*
 * The admission server's request handling: routes /mutate/pods,
 * /mutate/restore, /healthz, /readyz and /metrics, counts requests,
 * injections and restore remaps, and turns decode
 * failures into 400 answers with the reason. Handlers never fail the pod
 * because of the webhook's own trouble: an internal error is a 500, which the
 * API server treats according to the webhook's failurePolicy.
 */
#ifndef ST_WEBHOOK_SERVER_H
#define ST_WEBHOOK_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>

#include "pkg/httpd.h"
#include "pkg/metrics.h"
#include "webhook/config.h"

struct st_webhook {
	const struct st_webhook_config *cfg; /* borrowed, immutable */
	struct st_metrics *metrics;          /* owned */
	atomic_bool ready;                   /* false while starting and draining */
};

/* Declares the metric families; cfg is borrowed for the server's lifetime. */
void st_webhook_init(struct st_webhook *wh, const struct st_webhook_config *cfg);
void st_webhook_dispose(struct st_webhook *wh);

/* st_httpd_handler for the whole server; payload is the struct st_webhook. */
int st_webhook_handle(struct st_httpd_response *resp, const struct st_httpd_request *req,
                      void *payload);

/* st_httpd_observe_cb recording requests by path and code, and latency. */
void st_webhook_observe(const char *path, int status, double seconds, void *payload);

#endif
