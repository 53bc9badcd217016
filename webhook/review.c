#include "webhook/review.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/jsonw.h"
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

int st_admission_encode(char **out, size_t *len_out, const struct st_admission_request *req,
                        const struct st_admission_result *res)
{
	struct st_buf b = ST_BUF_INIT(2 * ST_CAP_PATCH + 64 * 1024);
	struct st_jw w;
	int rc;

	*out = NULL;
	/* One allocation: the base64 patch and room for the envelope and warnings. */
	if ((rc = st_buf_reserve(&b, res->patch_len / 3 * 4 + 4096)) < 0)
		return rc;
	st_jw_init(&w, &b);
	st_jw_obj(&w);
	st_jw_kstr(&w, "apiVersion", req->api_version);
	st_jw_kstr(&w, "kind", "AdmissionReview");
	st_jw_key(&w, "response");
	st_jw_obj(&w);
	st_jw_kstr(&w, "uid", req->uid);
	st_jw_key(&w, "allowed");
	st_jw_bool(&w, res->allowed);
	if (!res->allowed) {
		st_jw_key(&w, "status");
		st_jw_obj(&w);
		st_jw_key(&w, "code");
		st_jw_int(&w, res->code ? res->code : 403);
		st_jw_kstr(&w, "message", res->reason);
		st_jw_end(&w);
	}
	if (res->allowed && res->patch != NULL) {
		st_jw_kstr(&w, "patchType", "JSONPatch");
		st_jw_key(&w, "patch");
		st_jw_base64(&w, res->patch, res->patch_len);
	}
	if (res->nwarnings > 0) {
		st_jw_key(&w, "warnings");
		st_jw_arr(&w);
		for (size_t i = 0; i < res->nwarnings; i++)
			st_jw_str(&w, res->warnings[i]);
		st_jw_end(&w);
	}
	st_jw_end(&w);
	st_jw_end(&w);
	if ((rc = st_jw_finish(&w)) < 0) {
		st_buf_dispose(&b);
		return rc;
	}
	*out = st_buf_detach(&b, len_out);
	return 0;
}
