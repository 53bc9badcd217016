#include "webhook/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"
#include "webhook/inject.h"
#include "webhook/mutate_restore.h"
#include "webhook/review.h"

static struct st_log_ratelimit bad_request_rl = ST_LOG_RATELIMIT_INIT(5);

void st_webhook_init(struct st_webhook *wh, const struct st_webhook_config *cfg)
{
	wh->cfg = cfg;
	atomic_init(&wh->ready, false);
	wh->metrics = st_metrics_new();
	st_metrics_declare(wh->metrics, "stasis_webhook_requests_total",
	                   "HTTP requests by path and status code.", ST_METRIC_COUNTER, NULL, 0);
	st_metrics_declare(wh->metrics, "stasis_webhook_request_duration_seconds",
	                   "Time from request headers to response queued.", ST_METRIC_HISTOGRAM,
	                   NULL, 0);
	st_metrics_declare(wh->metrics, "stasis_webhook_injections_total",
	                   "Pod admission decisions by result.", ST_METRIC_COUNTER, NULL, 0);
	st_metrics_declare(wh->metrics, "stasis_webhook_restore_remaps_total",
	                   "Restore admission decisions (/mutate/restore) by result.",
	                   ST_METRIC_COUNTER, NULL, 0);
}

void st_webhook_dispose(struct st_webhook *wh)
{
	st_metrics_free(wh->metrics);
	wh->metrics = NULL;
}

/* Paths we serve keep their name in metrics; anything else is "other" (bounded labels). */
static const char *path_label(const char *path)
{
	static const char *const known[] = { "/mutate/pods", "/mutate/restore", "/healthz",
		                             "/readyz",      "/metrics",        NULL };

	for (size_t i = 0; known[i] != NULL; i++)
		if (strcmp(path, known[i]) == 0)
			return known[i];
	return "other";
}

void st_webhook_observe(const char *path, int status, double seconds, void *payload)
{
	struct st_webhook *wh = payload;
	char labels[128];

	(void)snprintf(labels, sizeof(labels), "path=\"%s\",code=\"%d\"", path_label(path), status);
	st_metrics_add(wh->metrics, "stasis_webhook_requests_total", labels, 1);
	(void)snprintf(labels, sizeof(labels), "path=\"%s\"", path_label(path));
	st_metrics_observe(wh->metrics, "stasis_webhook_request_duration_seconds", labels, seconds);
}

static int reply(struct st_httpd_response *resp, int status, const char *ctype, const char *text)
{
	resp->status = status;
	resp->content_type = ctype;
	resp->body = st_xstrdup(text);
	resp->body_len = strlen(text);
	return 0;
}

static int reply_error(struct st_httpd_response *resp, int status, const char *msg)
{
	struct json_object *o = json_object_new_object();
	size_t len = 0;
	const char *t;

	st_json_add_str(o, "error", msg);
	t = st_json_to_string(o, &len);
	resp->status = status;
	resp->content_type = "application/json";
	resp->body = st_xstrndup(t, len);
	resp->body_len = len;
	json_object_put(o);
	return 0;
}

static bool is_json(const char *ctype)
{
	size_t n = strlen("application/json");

	return ctype != NULL && strncmp(ctype, "application/json", n) == 0 &&
	       (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

/*
 * Checks method and type and decodes the review; returns 0 with ar filled, or
 * 1 when resp already holds the error answer.
 */
static int decode_review(struct st_admission_request *ar, struct st_httpd_response *resp,
                         const struct st_webhook *wh, const struct st_httpd_request *req)
{
	struct st_err err = ST_ERR_INIT;

	if (strcmp(req->method, "POST") != 0) {
		(void)reply_error(resp, 405, "use POST with an AdmissionReview body");
		return 1;
	}
	if (!is_json(req->content_type)) {
		(void)reply_error(resp, 415, "Content-Type must be application/json");
		return 1;
	}
	if (st_admission_decode(ar, req->body, req->body_len, (size_t)wh->cfg->max_body, &err) <
	    0) {
		if (st_log_ratelimited(&bad_request_rl))
			st_log_warn("bad review from %s: %s", req->peer, st_err_text(&err));
		(void)reply_error(resp, 400, st_err_text(&err));
		return 1;
	}
	return 0;
}

/*
 * Counts the decision (outcome, or "error" when building the patch failed:
 * built < 0) under metric, then answers: the review with res, or a 500.
 * Releases the request and result.
 */
static int answer(struct st_httpd_response *resp, struct st_webhook *wh, const char *metric,
                  const char *outcome, int built, struct st_admission_request *ar,
                  struct st_admission_result *res)
{
	char labels[64];
	int rc = 0;

	(void)snprintf(labels, sizeof(labels), "result=\"%s\"", built < 0 ? "error" : outcome);
	st_metrics_add(wh->metrics, metric, labels, 1);
	if (built >= 0)
		rc = st_admission_encode(&resp->body, &resp->body_len, ar, res);
	st_admission_result_dispose(res);
	st_admission_request_dispose(ar);
	if (built < 0)
		return reply_error(resp, 500, "cannot build the patch");
	if (rc < 0)
		return rc;
	resp->status = 200;
	resp->content_type = "application/json";
	return 0;
}

static int mutate_restore(struct st_httpd_response *resp, struct st_webhook *wh,
                          const struct st_httpd_request *req)
{
	struct st_admission_request ar;
	struct st_admission_result res;
	enum st_restore_outcome outcome = ST_RESTORE_NOT_APPLICABLE;
	unsigned changes = 0;
	int rc;

	if (decode_review(&ar, resp, wh, req) != 0)
		return 0;
	st_admission_result_init(&res);
	rc = st_mutate_restore(&res, &outcome, &changes, wh->cfg, &ar);
	if (rc < 0)
		st_log_err_fr(rc, "building the restore patch for %s %s/%s", ar.resource,
		              ar.namespace_name, ar.name);
	else if (outcome == ST_RESTORE_REMAPPED)
		st_log_debug("remapped %u fields of restored %s %s/%s%s", changes, ar.resource,
		             ar.namespace_name, ar.name, ar.dry_run ? " (dry run)" : "");
	return answer(resp, wh, "stasis_webhook_restore_remaps_total",
	              st_restore_outcome_name(outcome), rc, &ar, &res);
}

static int mutate_pods(struct st_httpd_response *resp, struct st_webhook *wh,
                       const struct st_httpd_request *req)
{
	struct st_admission_request ar;
	struct st_admission_result res;
	enum st_inject_outcome outcome = ST_INJECT_NOT_APPLICABLE;
	int rc;

	if (decode_review(&ar, resp, wh, req) != 0)
		return 0;
	st_admission_result_init(&res);
	rc = st_inject_pod(&res, &outcome, wh->cfg, &ar);
	if (rc < 0)
		st_log_err_fr(rc, "building the patch for pod %s/%s", ar.namespace_name, ar.name);
	else if (outcome == ST_INJECT_INJECTED)
		st_log_debug("injected %s into pod %s/%s%s", ST_FREEZER_NAME, ar.namespace_name,
		             ar.name, ar.dry_run ? " (dry run)" : "");
	return answer(resp, wh, "stasis_webhook_injections_total", st_inject_outcome_name(outcome),
	              rc, &ar, &res);
}

int st_webhook_handle(struct st_httpd_response *resp, const struct st_httpd_request *req,
                      void *payload)
{
	struct st_webhook *wh = payload;

	if (strcmp(req->path, "/mutate/pods") == 0)
		return mutate_pods(resp, wh, req);
	if (strcmp(req->path, "/mutate/restore") == 0)
		return mutate_restore(resp, wh, req);
	if (strcmp(req->path, "/healthz") == 0)
		return reply(resp, 200, "text/plain", "ok\n");
	if (strcmp(req->path, "/readyz") == 0)
		return atomic_load(&wh->ready) ? reply(resp, 200, "text/plain", "ready\n")
		                               : reply(resp, 503, "text/plain", "not ready\n");
	if (strcmp(req->path, "/metrics") == 0) {
		struct st_buf b = ST_BUF_INIT(4u << 20);

		if (st_metrics_render(&b, wh->metrics) < 0) {
			st_buf_dispose(&b);
			return ST_ETOOBIG;
		}
		resp->status = 200;
		resp->content_type = "text/plain; version=0.0.4";
		resp->body = st_buf_detach(&b, &resp->body_len);
		return 0;
	}
	return reply_error(resp, 404,
	                   "no such path; this server answers /mutate/pods, /mutate/restore, "
	                   "/healthz, /readyz and /metrics");
}
