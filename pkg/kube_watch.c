/*
 * Paginated lists and watch streams.
 *
 * A watch response is a stream of JSON objects, one per line, each
 * {"type": ..., "object": ...}. The stream callback cuts lines (each capped
 * at ST_KUBE_CAP_EVENT), parses them with the bounded parser and hands the
 * event on. The watch loop reconnects from the last resourceVersion it saw
 * when the server ends the stream (its timeoutSeconds) or the connection
 * drops, and lists again when the version has been compacted away (410 Gone,
 * as an HTTP status or as an ERROR event), which is how client-go's
 * reflector behaves.
 */
#include <stdlib.h>
#include <string.h>

#include "pkg/kube.h"
#include "pkg/kube_int.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define DEFAULT_LIMIT     500u
#define DEFAULT_WATCH_S   300u
#define WATCH_SLACK_MS    30000u
#define WATCH_MAX_BACKOFF 8000u

static int list_query(struct st_buf *q, const struct st_kube_list_options *o, const char *cont)
{
	char lim[24];
	int rc = 0;

	(void)snprintf(lim, sizeof(lim), "%u", o && o->limit ? o->limit : DEFAULT_LIMIT);
	if (o && o->label_selector && o->label_selector[0])
		rc = st_kube__query_add(q, "labelSelector", o->label_selector);
	if (rc == 0 && o && o->field_selector && o->field_selector[0])
		rc = st_kube__query_add(q, "fieldSelector", o->field_selector);
	if (rc == 0)
		rc = st_kube__query_add(q, "limit", lim);
	if (rc == 0 && cont && cont[0])
		rc = st_kube__query_add(q, "continue", cont);
	if (rc == 0 && o && o->resource_version && o->resource_version[0] && !(cont && cont[0]))
		rc = st_kube__query_add(q, "resourceVersion", o->resource_version);
	return rc;
}

static int list_page(struct json_object **out, struct st_kube_client *c,
                     const struct st_kube_gvr *gvr, const char *ns,
                     const struct st_kube_list_options *o, const char *cont, long *http_out,
                     struct st_err *err)
{
	struct st_kube__req r = { .verb = ST_KUBE_VERB_LIST, .method = "GET" };
	struct st_buf q = ST_BUF_INIT(64 * 1024);
	char path[1024], rn[400];
	int rc = ST_EINTERNAL;

	*out = NULL;
	if (http_out != NULL)
		*http_out = 0;
	st_kube_gvr_name(rn, sizeof(rn), gvr);
	if ((rc = st_kube_path(path, sizeof(path), gvr, ns, NULL, NULL)) < 0) {
		rc = st_err_set(err, rc, "cannot list %s: invalid namespace", rn);
		goto out;
	}
	if ((rc = list_query(&q, o, cont)) < 0) {
		rc = st_err_set(err, rc, "cannot list %s: selector too long", rn);
		goto out;
	}
	r.path = path;
	r.query = st_buf_cstr(&q);
	r.resname = rn;
	r.ns = gvr->namespaced ? ns : NULL;
	rc = st_kube__call(out, c, &r, http_out, err);
	if (rc == 0 && !json_object_is_type(*out, json_type_object)) {
		json_object_put(*out);
		*out = NULL;
		rc = st_err_set(err, ST_EPROTO, "list of %s: the response is not an object", rn);
	}
out:
	st_buf_dispose(&q);
	return rc;
}

int st_kube_list(struct json_object **out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                 const char *ns, const struct st_kube_list_options *opts, long *http_out,
                 struct st_err *err)
{
	return list_page(out, c, gvr, ns, opts, opts ? opts->continue_token : NULL, http_out, err);
}

/* Items of a list come without kind and apiVersion; give them back. */
static void fill_type(struct json_object *list, const struct st_kube_gvr *gvr)
{
	struct json_object *items = st_json_get_arr(list, "items");
	const char *av = st_json_get_str(list, "apiVersion");
	size_t i, n = items ? json_object_array_length(items) : 0;

	for (i = 0; i < n; i++) {
		struct json_object *it = json_object_array_get_idx(items, i);

		if (!json_object_is_type(it, json_type_object))
			continue;
		if (st_json_get(it, "kind") == NULL && gvr->kind[0] != '\0')
			st_json_add_str(it, "kind", gvr->kind);
		if (st_json_get(it, "apiVersion") == NULL && av != NULL)
			st_json_add_str(it, "apiVersion", av);
	}
}

int st_kube_list_pages(char **rv_out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                       const char *ns, const struct st_kube_list_options *opts, st_kube_page_cb cb,
                       void *payload, struct st_err *err)
{
	struct json_object *page = NULL;
	char *cont = NULL, *rv = NULL;
	int rc = ST_EINTERNAL;

	if (rv_out != NULL)
		*rv_out = NULL;
	do {
		const struct json_object *md;
		const char *next, *prv;

		if ((rc = list_page(&page, c, gvr, ns, opts, cont, NULL, err)) < 0)
			goto out;
		fill_type(page, gvr);
		md = st_json_get_obj(page, "metadata");
		next = st_json_get_str(md, "continue");
		prv = st_json_get_str(md, "resourceVersion");
		/* The version of the first page is the snapshot the whole list reflects. */
		if (rv == NULL && prv != NULL)
			rv = st_xstrdup(prv);
		free(cont);
		cont = next && next[0] ? st_xstrdup(next) : NULL;
		if ((rc = cb(page, payload)) != 0)
			goto out;
		json_object_put(page);
		page = NULL;
	} while (cont != NULL);
	if (rv_out != NULL) {
		*rv_out = rv;
		rv = NULL; /* transferred */
	}
	rc = 0;
out:
	json_object_put(page);
	free(cont);
	free(rv);
	return rc;
}

struct items_ctx {
	st_kube_item_cb cb;
	void *payload;
};

static int each_item(struct json_object *list, void *payload)
{
	struct items_ctx *ic = payload;
	struct json_object *items = st_json_get_arr(list, "items");
	size_t i, n = items ? json_object_array_length(items) : 0;
	int rc;

	for (i = 0; i < n; i++)
		if ((rc = ic->cb(json_object_array_get_idx(items, i), ic->payload)) != 0)
			return rc;
	return 0;
}

int st_kube_list_items(char **rv_out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                       const char *ns, const struct st_kube_list_options *opts, st_kube_item_cb cb,
                       void *payload, struct st_err *err)
{
	struct items_ctx ic = { cb, payload };

	return st_kube_list_pages(rv_out, c, gvr, ns, opts, each_item, &ic, err);
}

/* ---- watch ------------------------------------------------------------------------------ */

const char *st_kube_event_name(enum st_kube_event_type t)
{
	static const char *const names[] = { "ADDED",    "MODIFIED", "DELETED",
		                             "BOOKMARK", "RELIST",   "SYNCED" };

	return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

struct watch {
	struct st_kube_client *c;
	const struct st_kube_gvr *gvr;
	const char *ns;
	const struct st_kube_watch_options *o;
	st_kube_event_cb cb;
	void *payload;
	struct st_buf line;
	char *rv;
	bool gone;     /* 410: list again */
	bool listed;   /* a list has been started before */
	bool stop;     /* cb asked to stop */
	bool progress; /* an event arrived on this connection */
	int cb_rc;
	struct st_err server_err; /* an ERROR event other than 410 */
};

static void set_rv(struct watch *w, const struct json_object *obj)
{
	const char *rv = st_json_get_str(st_json_get_obj(obj, "metadata"), "resourceVersion");

	if (rv == NULL || rv[0] == '\0')
		return;
	free(w->rv);
	w->rv = st_xstrdup(rv);
}

static bool parse_type(enum st_kube_event_type *t, const char *s)
{
	static const enum st_kube_event_type wire[] = { ST_KUBE_EVENT_ADDED, ST_KUBE_EVENT_MODIFIED,
		                                        ST_KUBE_EVENT_DELETED,
		                                        ST_KUBE_EVENT_BOOKMARK };
	size_t i;

	for (i = 0; s != NULL && i < sizeof(wire) / sizeof(wire[0]); i++)
		if (strcmp(s, st_kube_event_name(wire[i])) == 0) {
			*t = wire[i];
			return true;
		}
	return false;
}

static int deliver(struct watch *w, enum st_kube_event_type t, struct json_object *obj)
{
	int rc = w->cb(t, obj, w->payload);

	if (rc > 0)
		w->stop = true;
	if (rc < 0)
		w->cb_rc = rc;
	return rc;
}

/* One event line; a negative return ends the connection. */
static int on_event(struct watch *w, const char *line, size_t len)
{
	struct json_object *ev = NULL, *obj;
	enum st_kube_event_type t;
	const char *type;
	int rc = 0;

	if (len == 0)
		return 0;
	if (st_json_parse(&ev, line, len, ST_KUBE_CAP_EVENT, "watch event", &w->server_err) < 0) {
		rc = ST_EPROTO;
		goto out;
	}
	type = st_json_get_str(ev, "type");
	obj = st_json_get_obj(ev, "object");
	if (type != NULL && strcmp(type, "ERROR") == 0) {
		struct json_object *code = st_json_get(obj, "code");

		if (code != NULL && json_object_get_int(code) == 410) {
			w->gone = true;
		} else {
			(void)st_err_set(
			        &w->server_err, ST_EUPSTREAM, "watch error from the server: %s",
			        st_json_get_str(obj, "message") ? st_json_get_str(obj, "message")
			                                        : "no message");
		}
		rc = ST_EUPSTREAM;
		goto out;
	}
	if (!parse_type(&t, type) || obj == NULL) {
		st_log_debug("kube: watch event of unknown type %s ignored",
		             type ? type : "(none)");
		goto out;
	}
	set_rv(w, obj);
	w->progress = true;
	if (t == ST_KUBE_EVENT_BOOKMARK && !w->o->bookmarks)
		goto out;
	if (deliver(w, t, obj) != 0)
		rc = ST_EINTERNAL; /* just ends the transfer; w->stop or w->cb_rc says why */
out:
	json_object_put(ev);
	return rc;
}

static int too_big(struct watch *w, int rc)
{
	return st_err_set(&w->server_err, rc, "a watch event on %s is larger than %u bytes",
	                  w->gvr->resource, ST_KUBE_CAP_EVENT);
}

static int on_stream(const char *data, size_t n, void *payload)
{
	struct watch *w = payload;
	size_t i, start = 0;
	int rc;

	for (i = 0; i < n; i++) {
		if (data[i] != '\n')
			continue;
		if ((rc = st_buf_put(&w->line, data + start, i - start)) < 0)
			return too_big(w, rc);
		rc = on_event(w, w->line.ptr ? w->line.ptr : "", w->line.len);
		st_buf_clear(&w->line);
		if (rc < 0)
			return rc;
		start = i + 1;
	}
	rc = st_buf_put(&w->line, data + start, n - start);
	return rc < 0 ? too_big(w, rc) : rc;
}

static int relist_item(struct json_object *item, void *payload)
{
	struct watch *w = payload;

	return deliver(w, ST_KUBE_EVENT_ADDED, item);
}

static int relist(struct watch *w, struct st_err *err)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	char *rv = NULL;
	int rc;

	lo.label_selector = w->o->label_selector;
	lo.field_selector = w->o->field_selector;
	/* Any list after the first (410, or a retry after a partial list) is announced. */
	if (w->listed && deliver(w, ST_KUBE_EVENT_RELIST, NULL) != 0)
		return w->cb_rc;
	w->listed = true;
	rc = st_kube_list_items(&rv, w->c, w->gvr, w->ns, &lo, relist_item, w, err);
	if (rc > 0 || w->stop)
		return 0;
	if (rc < 0)
		return rc;
	if (rv == NULL)
		return st_err_set(err, ST_EPROTO,
		                  "the list of %s has no resourceVersion to watch from",
		                  w->gvr->resource);
	free(w->rv);
	w->rv = rv;
	w->gone = false;
	if (deliver(w, ST_KUBE_EVENT_SYNCED, NULL) < 0)
		return w->cb_rc;
	return 0;
}

static int watch_query(struct st_buf *q, const struct watch *w)
{
	const struct st_kube_watch_options *o = w->o;
	char to[24];
	int rc;

	(void)snprintf(to, sizeof(to), "%u", o->timeout_s ? o->timeout_s : DEFAULT_WATCH_S);
	rc = st_kube__query_add(q, "watch", "true");
	if (rc == 0 && o->label_selector && o->label_selector[0])
		rc = st_kube__query_add(q, "labelSelector", o->label_selector);
	if (rc == 0 && o->field_selector && o->field_selector[0])
		rc = st_kube__query_add(q, "fieldSelector", o->field_selector);
	if (rc == 0 && w->rv != NULL)
		rc = st_kube__query_add(q, "resourceVersion", w->rv);
	if (rc == 0)
		rc = st_kube__query_add(q, "timeoutSeconds", to);
	if (rc == 0 && o->bookmarks)
		rc = st_kube__query_add(q, "allowWatchBookmarks", "true");
	return rc;
}

/* One watch connection; sets w->gone/stop/cb_rc, returns < 0 on a transport or HTTP error. */
static int connect_once(struct watch *w, const char *path, uint64_t deadline_us, long *http,
                        struct st_err *err)
{
	struct st_kube__req r = { .verb = ST_KUBE_VERB_WATCH, .method = "GET" };
	struct st_kube__resp resp = { 0, ST_BUF_INIT(1024 * 1024), 0, false, 0 };
	struct st_buf q = ST_BUF_INIT(64 * 1024);
	char rn[400];
	int rc;

	st_kube_gvr_name(rn, sizeof(rn), w->gvr);
	if ((rc = watch_query(&q, w)) < 0) {
		rc = st_err_set(err, rc, "cannot watch %s: selector too long", rn);
		goto out;
	}
	r.path = path;
	r.query = st_buf_cstr(&q);
	r.resname = rn;
	r.ns = w->gvr->namespaced ? w->ns : NULL;
	r.stream = on_stream;
	r.stream_payload = w;
	r.cancel = w->o->cancel;
	r.deadline_us = deadline_us;
	r.no_retry = true;
	/* A connection that outlives the server's own timeout is dead. */
	r.timeout_ms =
	        (w->o->timeout_s ? w->o->timeout_s : DEFAULT_WATCH_S) * 1000u + WATCH_SLACK_MS;
	st_buf_clear(&w->line);
	w->progress = false;
	rc = st_kube__do(w->c, &r, &resp, err);
	*http = resp.http;
	if (resp.http == 410)
		w->gone = true;
	/* The stream callback ends a transfer on purpose for 410, stop and callback errors. */
	if (w->gone || w->stop || w->cb_rc < 0)
		rc = 0;
out:
	st_buf_dispose(&resp.body);
	st_buf_dispose(&q);
	return rc;
}

static bool watch_over(const struct watch *w, uint64_t deadline_us)
{
	if (w->stop || w->cb_rc < 0)
		return true;
	if (w->o->cancel != NULL && atomic_load(w->o->cancel))
		return true;
	return deadline_us != 0 && st_kube__now_us() >= deadline_us;
}

/* Sleeps up to ms, waking early when the watch is cancelled. */
static void pause_ms(const struct watch *w, unsigned ms, uint64_t deadline_us)
{
	uint64_t until = st_kube__now_us() + (uint64_t)ms * 1000u;

	while (!watch_over(w, deadline_us) && st_kube__now_us() < until) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		(void)nanosleep(&ts, NULL);
	}
}

/* Whether a failed list or connection is worth another try. */
static bool retryable(int rc, long http)
{
	if (rc == ST_ENOTFOUND || rc == ST_EINVAL)
		return false;
	/* Permanent refusals (401, 403, 404, 400) are not going to heal by retrying. */
	return !(http >= 400 && http < 500 && http != 429 && http != 410);
}

/* One list or connection; leaves rc < 0 with the reason in *e when it failed. */
static int watch_step(struct watch *w, const char *path, uint64_t deadline_us, long *http,
                      struct st_err *e)
{
	int rc;

	*http = 0;
	if (w->rv == NULL || w->gone) {
		rc = relist(w, e);
		w->progress = rc == 0;
		return rc;
	}
	rc = connect_once(w, path, deadline_us, http, e);
	if (w->server_err.code != 0 && !w->gone) {
		/* An ERROR event other than 410: treated like a failed connection. */
		*e = w->server_err;
		rc = e->code;
		st_err_clear(&w->server_err);
	}
	return rc;
}

static int watch_loop(struct watch *w, const char *path, uint64_t deadline_us, struct st_err *err)
{
	unsigned failures = 0, delay = 0;
	int rc = 0;

	while (!watch_over(w, deadline_us)) {
		struct st_err e = ST_ERR_INIT;
		long http = 0;

		rc = watch_step(w, path, deadline_us, &http, &e);
		if (w->cb_rc < 0)
			break;
		if (w->progress || w->gone) {
			failures = 0;
			delay = 0;
		}
		if (rc == 0) {
			/* A stream that ended without events (server timeout) gets a short pause.
			 */
			if (!w->progress && !w->gone)
				pause_ms(w, 100, deadline_us);
			continue;
		}
		if (!retryable(rc, http) || ++failures > w->c->max_retries)
			return st_err_set(err, rc, "%s", st_err_text(&e));
		delay = delay ? delay * 2 : w->c->backoff_ms;
		if (delay > WATCH_MAX_BACKOFF)
			delay = WATCH_MAX_BACKOFF;
		st_log_debug("kube: watch %s: %s; retrying in %u ms", path, st_err_text(&e), delay);
		pause_ms(w, delay, deadline_us);
	}
	return w->cb_rc < 0 ? w->cb_rc : 0;
}

int st_kube_watch(struct st_kube_client *c, const struct st_kube_gvr *gvr, const char *ns,
                  const struct st_kube_watch_options *opts, st_kube_event_cb cb, void *payload,
                  struct st_err *err)
{
	struct st_kube_watch_options dflt = ST_KUBE_WATCH_OPTIONS_INIT;
	struct watch w;
	char path[1024];
	uint64_t deadline_us = 0;
	int rc = ST_EINTERNAL;

	if (opts == NULL)
		opts = &dflt;
	memset(&w, 0, sizeof(w));
	w.c = c;
	w.gvr = gvr;
	w.ns = ns;
	w.o = opts;
	w.cb = cb;
	w.payload = payload;
	st_buf_init(&w.line, ST_KUBE_CAP_EVENT);
	if (opts->resource_version != NULL && opts->resource_version[0] != '\0') {
		/* The caller holds state from an earlier list, so a relist must say so. */
		w.rv = st_xstrdup(opts->resource_version);
		w.listed = true;
	}
	if (opts->duration_ms > 0)
		deadline_us = st_kube__now_us() + opts->duration_ms * 1000u;
	if ((rc = st_kube_path(path, sizeof(path), gvr, ns, NULL, NULL)) < 0) {
		rc = st_err_set(err, rc, "cannot watch %s: invalid namespace", gvr->resource);
		goto out;
	}
	rc = watch_loop(&w, path, deadline_us, err);
out:
	free(w.rv);
	st_buf_dispose(&w.line);
	return rc;
}
