#include "webhook/review.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/json.h"
#include "pkg/util/mem.h"

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

int st_admission_decode(struct st_admission_request *req, const char *body, size_t len, size_t max,
                        struct st_err *err)
{
	struct json_object *request;
	struct json_object *v;
	const char *kind;
	int rc = ST_EINTERNAL;

	memset(req, 0, sizeof(*req));
	if ((rc = st_json_parse(&req->root, body, len, max, "AdmissionReview", err)) < 0)
		return rc;
	if (!json_object_is_type(req->root, json_type_object)) {
		rc = st_err_set(err, ST_EINVAL, "AdmissionReview must be a JSON object");
		goto out;
	}
	kind = st_json_get_str(req->root, "kind");
	req->api_version = st_json_get_str(req->root, "apiVersion");
	if (kind == NULL || strcmp(kind, "AdmissionReview") != 0) {
		rc = st_err_set(err, ST_EINVAL, "kind is \"%s\", expected AdmissionReview",
		                str_or_empty(kind));
		goto out;
	}
	if (req->api_version == NULL ||
	    (strcmp(req->api_version, "admission.k8s.io/v1") != 0 &&
	     strcmp(req->api_version, "admission.k8s.io/v1beta1") != 0)) {
		rc = st_err_set(err, ST_EINVAL,
		                "apiVersion is \"%s\", expected admission.k8s.io/v1 or v1beta1",
		                str_or_empty(req->api_version));
		goto out;
	}
	request = st_json_get_obj(req->root, "request");
	if (request == NULL) {
		rc = st_err_set(err, ST_EINVAL, "AdmissionReview has no request object");
		goto out;
	}
	req->uid = st_json_get_str(request, "uid");
	if (req->uid == NULL || req->uid[0] == '\0') {
		rc = st_err_set(err, ST_EINVAL, "request.uid is missing");
		goto out;
	}
	req->operation = str_or_empty(st_json_get_str(request, "operation"));
	req->namespace_name = str_or_empty(st_json_get_str(request, "namespace"));
	req->name = str_or_empty(st_json_get_str(request, "name"));
	req->sub_resource = str_or_empty(st_json_get_str(request, "subResource"));
	req->resource =
	        str_or_empty(st_json_get_str(st_json_get_obj(request, "resource"), "resource"));
	req->dry_run = st_json_get_bool(request, "dryRun", false);
	v = st_json_get(request, "object");
	if (v != NULL && !json_object_is_type(v, json_type_object)) {
		rc = st_err_set(err, ST_EINVAL, "request.object must be a JSON object");
		goto out;
	}
	req->object = v;
	rc = 0;
out:
	if (rc < 0)
		st_admission_request_dispose(req);
	return rc;
}

void st_admission_request_dispose(struct st_admission_request *req)
{
	json_object_put(req->root);
	memset(req, 0, sizeof(*req));
}

void st_admission_result_init(struct st_admission_result *res)
{
	memset(res, 0, sizeof(*res));
	res->allowed = true;
}

void st_admission_result_dispose(struct st_admission_result *res)
{
	free(res->patch);
	for (size_t i = 0; i < res->nwarnings; i++)
		free(res->warnings[i]);
	memset(res, 0, sizeof(*res));
}

void st_admission_warn(struct st_admission_result *res, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (res->nwarnings == ST_ADMISSION_MAX_WARNINGS)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	res->warnings[res->nwarnings++] = st_xstrdup(msg);
}

/*
 * Standard base64 with padding. Written out here rather than taken from
 * libcrypto so that the webhook does not load OpenSSL at all: it is the only
 * thing the admission path would need from it.
 */
static struct json_object *base64(const char *data, size_t len)
{
	static const char tbl[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *in = (const unsigned char *)data;
	size_t cap = 4 * ((len + 2) / 3);
	char *b = st_xmalloc(cap + 1);
	size_t o = 0;
	struct json_object *s;

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;

		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		b[o++] = tbl[(v >> 18) & 63];
		b[o++] = tbl[(v >> 12) & 63];
		b[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
		b[o++] = i + 2 < len ? tbl[v & 63] : '=';
	}
	b[o] = '\0';
	s = json_object_new_string_len(b, (int)o);
	free(b);
	return s;
}

int st_admission_encode(char **out, size_t *len_out, const struct st_admission_request *req,
                        const struct st_admission_result *res)
{
	struct json_object *root = json_object_new_object();
	struct json_object *resp = json_object_new_object();
	const char *text;
	size_t len = 0;

	*out = NULL;
	st_json_add_str(root, "apiVersion", req->api_version);
	st_json_add_str(root, "kind", "AdmissionReview");
	st_json_add_str(resp, "uid", req->uid);
	json_object_object_add(resp, "allowed", json_object_new_boolean(res->allowed));
	if (!res->allowed) {
		struct json_object *st = json_object_new_object();

		json_object_object_add(st, "code",
		                       json_object_new_int(res->code ? res->code : 403));
		st_json_add_str(st, "message", res->reason);
		json_object_object_add(resp, "status", st);
	}
	if (res->allowed && res->patch != NULL) {
		st_json_add_str(resp, "patchType", "JSONPatch");
		json_object_object_add(resp, "patch", base64(res->patch, res->patch_len));
	}
	if (res->nwarnings > 0) {
		struct json_object *w = json_object_new_array();

		for (size_t i = 0; i < res->nwarnings; i++)
			json_object_array_add(w, json_object_new_string(res->warnings[i]));
		json_object_object_add(resp, "warnings", w);
	}
	json_object_object_add(root, "response", resp);
	text = st_json_to_string(root, &len);
	*out = st_xstrndup(text, len);
	if (len_out != NULL)
		*len_out = len;
	json_object_put(root);
	return 0;
}
