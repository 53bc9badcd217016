/*
 * Store front end: picks the backend from the URL scheme and wraps the
 * vtable so that callers never touch it. The in-memory helpers bound what
 * they read by a caller-given cap.
 */
#include "pkg/store.h"

#include <string.h>

#include "pkg/util/buf.h"
#include "pkg/util/mem.h"

int st_store_open(struct st_store **out, const char *url, const struct st_store_options *opts,
                  struct st_err *err)
{
	static const struct st_store_options dflt = ST_STORE_OPTIONS_INIT;

	*out = NULL;
	if (url == NULL || url[0] == '\0')
		return st_err_set(err, ST_EINVAL, "empty storage location URL");
	if (opts == NULL)
		opts = &dflt;
	if (strncmp(url, "file://", 7) == 0) {
		const char *path = url + 7;

		if (path[0] != '/')
			return st_err_set(
			        err, ST_EINVAL,
			        "%s: file:// location needs an absolute path (file:///dir)", url);
		return st_store__open_file(out, url, path, err);
	}
	if (strncmp(url, "s3://", 5) == 0)
		return st_store__open_s3(out, url, opts, err);
	if (strncmp(url, "stasis+https://", 15) == 0)
		return st_store__open_remote(out, url, opts, err);
	return st_err_set(err, ST_EINVAL,
	                  "%s: unknown scheme (want s3://, file:// or stasis+https://)", url);
}

void st_store_free(struct st_store *s)
{
	if (s == NULL)
		return;
	s->vt->free(s);
}

int st_store_put(struct st_store *s, const char *key, uint64_t size, st_store_read_cb rd,
                 void *payload, bool if_absent, struct st_err *err)
{
	return s->vt->put(s, key, size, rd, payload, if_absent, err);
}

int st_store_put_mem(struct st_store *s, const char *key, const void *data, size_t len,
                     bool if_absent, struct st_err *err)
{
	struct st_mem_reader m = { data, len };

	/* Backends that copy a streamed body to resend it can send this one as it is. */
	if (s->vt->put_mem != NULL)
		return s->vt->put_mem(s, key, data, len, if_absent, err);
	return s->vt->put(s, key, len, st_mem_read, &m, if_absent, err);
}

int st_store_get(struct st_store *s, const char *key, uint64_t off, uint64_t len,
                 st_store_write_cb wr, void *payload, struct st_err *err)
{
	return s->vt->get(s, key, off, len, wr, payload, err);
}

static int buf_write(const void *data, size_t n, void *payload)
{
	return st_buf_put(payload, data, n);
}

int st_store_get_mem(char **out, size_t *len_out, struct st_store *s, const char *key, size_t cap,
                     struct st_err *err)
{
	struct st_buf b;
	int rc;

	*out = NULL;
	*len_out = 0;
	st_buf_init(&b, cap);
	rc = s->vt->get(s, key, 0, UINT64_MAX, buf_write, &b, err);
	if (rc == ST_ETOOBIG)
		(void)st_err_set(err, rc, "%s: object larger than %zu bytes", key, cap);
	if (rc < 0) {
		st_buf_dispose(&b);
		return rc;
	}
	*out = st_buf_detach(&b, len_out);
	return 0;
}

int st_store_head(struct st_store *s, const char *key, uint64_t *size_out, struct st_err *err)
{
	return s->vt->head(s, key, size_out, err);
}

int st_store_list(struct st_store *s, const char *prefix, st_store_list_cb cb, void *payload,
                  struct st_err *err)
{
	return s->vt->list(s, prefix, cb, payload, err);
}

int st_store_delete(struct st_store *s, const char *key, struct st_err *err)
{
	return s->vt->del(s, key, err);
}

void st_store_set_defer_sync(struct st_store *s, bool on)
{
	s->defer_sync = on;
}

int st_store_sync(struct st_store *s, struct st_err *err)
{
	if (s->vt->sync == NULL || !s->defer_sync)
		return 0;
	return s->vt->sync(s, err);
}

int st_store_create(struct st_store *s, struct st_err *err)
{
	if (s->vt->create == NULL)
		return 1;
	return s->vt->create(s, err);
}
