/*
 * AdmissionReview codec (admission.k8s.io/v1 and v1beta1).
 *
 * Decoding checks the envelope (apiVersion, kind, request.uid) and keeps the
 * parsed document so handlers can read request.object without a copy.
 * Encoding answers in the version that was asked, echoes the uid, and
 * base64-encodes the JSON Patch. A denial or a warning is a result, not an
 * error: st_admission_decode fails only when the body is not a review.
 */
#ifndef ST_WEBHOOK_REVIEW_H
#define ST_WEBHOOK_REVIEW_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

#define ST_ADMISSION_MAX_WARNINGS 8

struct st_admission_request {
	struct json_object *root; /* owned: the whole review */
	const char *api_version;  /* borrowed from root */
	const char *uid;
	const char *operation;      /* CREATE, UPDATE, ... ("" when absent) */
	const char *namespace_name; /* request.namespace, or "" */
	const char *name;           /* request.name, or "" (generateName pods) */
	const char *resource;       /* request.resource.resource, or "" */
	const char *sub_resource;   /* request.subResource, or "" */
	bool dry_run;
	struct json_object *object; /* request.object, borrowed; may be NULL */
};

struct st_admission_result {
	bool allowed;
	int code;         /* HTTP-style status for a denial */
	char reason[256]; /* message for a denial */
	char *patch;      /* JSON Patch text (heap) or NULL */
	size_t patch_len;
	char *warnings[ST_ADMISSION_MAX_WARNINGS]; /* heap strings */
	size_t nwarnings;
};

/* Parses body (at most max bytes) into req; err says what is wrong and where. */
int st_admission_decode(struct st_admission_request *req, const char *body, size_t len, size_t max,
                        struct st_err *err) ST_WARN_UNUSED;
void st_admission_request_dispose(struct st_admission_request *req);

/* An allowed, unchanged result. */
void st_admission_result_init(struct st_admission_result *res);
void st_admission_result_dispose(struct st_admission_result *res);
/* Adds a warning (kept to ST_ADMISSION_MAX_WARNINGS, each cut to 256 bytes). */
void st_admission_warn(struct st_admission_result *res, const char *fmt, ...) ST_PRINTF(2, 3);

/* Builds the response review as JSON text (*out heap, NUL-terminated). */
int st_admission_encode(char **out, size_t *len_out, const struct st_admission_request *req,
                        const struct st_admission_result *res) ST_WARN_UNUSED;

#endif
