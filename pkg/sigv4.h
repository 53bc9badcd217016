/*
 * AWS Signature Version 4, computed with OpenSSL.
 *
 * The signer takes a request description (method, path and query as they go
 * on the wire, headers, payload hash) and produces the canonical request, the
 * string to sign, the signature and what must be added to the request: the
 * headers X-Amz-Security-Token, X-Amz-Date, x-amz-content-sha256 and
 * Authorization (header signing), or the X-Amz-* query parameters (presigned
 * URLs). It never performs I/O; libcurl only transports what is signed here.
 *
 * Path rules: for S3 (normalize == false) the path is URI-encoded once, an
 * existing %XX escape is kept rather than encoded again, and dot segments and
 * repeated slashes are significant. For other services (normalize == true)
 * dot segments and empty segments are removed and every byte outside the
 * unreserved set (including '%') is encoded.
 *
 * The derived signing key lives only inside struct st_sigv4_signed and is
 * wiped by st_sigv4_signed_dispose(). Nothing here logs. Thread-safe: no
 * shared state.
 */
#ifndef ST_PKG_SIGV4_H
#define ST_PKG_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

#define ST_SIGV4_UNSIGNED_PAYLOAD  "UNSIGNED-PAYLOAD"
#define ST_SIGV4_STREAMING_PAYLOAD "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
/* sha256("") in hex, the payload hash of an empty body. */
#define ST_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* Upper bound on the text the signer builds (canonical request, query). */
#define ST_SIGV4_CAP     (64u * 1024u)
#define ST_SIGV4_MAX_ADD 4

struct st_sigv4_header {
	const char *name;
	const char *value; /* may span lines (obsolete folding); canonicalised */
};

/* The request as it will be sent. Borrowed for the duration of the call. */
struct st_sigv4_request {
	const char *method;
	const char *path;  /* request-target path, before any '?' */
	const char *query; /* after '?', NULL or "" for none */
	const struct st_sigv4_header *headers;
	size_t n_headers;
	/* Hex sha256 of the body, ST_SIGV4_UNSIGNED_PAYLOAD or ST_SIGV4_STREAMING_PAYLOAD. */
	const char *payload_hash;
};

struct st_sigv4_options {
	const char *access_key;
	const char *secret_key;
	const char *session_token; /* NULL: none */
	const char *region;
	const char *service;
	time_t when;
	bool normalize;          /* false for S3, see the overview */
	bool omit_session_token; /* send the token without signing it */
	bool content_sha256;     /* header signing: add and sign x-amz-content-sha256 */
	unsigned expires;        /* presigning: validity in seconds */
};
#define ST_SIGV4_OPTIONS_INIT                                                    \
	{                                                                        \
		NULL, NULL, NULL, "us-east-1", "s3", 0, false, false, true, 3600 \
	}

/*
 * Result of a signing. add[] holds the headers to append to the request in
 * that order (header signing). query holds the full query string for the wire
 * (the original query followed by the X-Amz-* parameters) and url_query the
 * same parameters in canonical order followed by X-Amz-Signature, as AWS
 * prints presigned URLs (presigning). Owned; release with
 * st_sigv4_signed_dispose().
 */
struct st_sigv4_signed {
	char amz_date[17]; /* YYYYMMDDTHHMMSSZ */
	char scope[128];   /* date/region/service/aws4_request */
	char signature[65];
	struct st_sigv4_header add[ST_SIGV4_MAX_ADD];
	size_t n_add;
	struct st_buf canonical_request;
	struct st_buf string_to_sign;
	struct st_buf authorization; /* header signing: the Authorization value */
	struct st_buf signed_headers;
	struct st_buf query;
	struct st_buf url_query;
	unsigned char key[32]; /* derived signing key, for chunk signatures */
	char *owned[ST_SIGV4_MAX_ADD];
};

void st_sigv4_signed_init(struct st_sigv4_signed *s);
/* Frees the buffers and wipes the derived key; safe to call twice. */
void st_sigv4_signed_dispose(struct st_sigv4_signed *s);

/*
 * Signs req with an Authorization header. X-Amz-Date, X-Amz-Security-Token and
 * x-amz-content-sha256 are added (and signed) unless req already carries them.
 * Returns 0, ST_EINVAL for a malformed request or ST_ETOOBIG past
 * ST_SIGV4_CAP. out must have been initialised.
 */
int st_sigv4_sign_headers(struct st_sigv4_signed *out, const struct st_sigv4_request *req,
                          const struct st_sigv4_options *o, struct st_err *err) ST_WARN_UNUSED;

/* Presigns req (query-string authentication) valid for o->expires seconds. */
int st_sigv4_presign(struct st_sigv4_signed *out, const struct st_sigv4_request *req,
                     const struct st_sigv4_options *o, struct st_err *err) ST_WARN_UNUSED;

/*
 * Signature of one aws-chunked body chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)
 * given the signature of the previous chunk (the seed signature for the first).
 * sig_out receives 64 hex digits and a NUL.
 */
void st_sigv4_chunk_signature(char sig_out[65], const struct st_sigv4_signed *s,
                              const char *prev_signature, const void *data, size_t len);

/* Canonical URI of path (see the overview for the two rules). */
int st_sigv4_canonical_uri(struct st_buf *out, const char *path, bool normalize) ST_WARN_UNUSED;
/* Canonical query: parameters decoded, re-encoded, sorted by key then value. */
int st_sigv4_canonical_query(struct st_buf *out, const char *query) ST_WARN_UNUSED;
/* Appends s[0..n) encoded per RFC 3986 unreserved; '/' is kept when keep_slash. */
int st_sigv4_uri_encode(struct st_buf *out, const char *s, size_t n,
                        bool keep_slash) ST_WARN_UNUSED;
/*
 * Appends s[0..n) with %XX escapes decoded. Lenient (strict false): a '%' not
 * followed by two hex digits is kept. Strict: that, or an escaped NUL, is
 * ST_EINVAL.
 */
int st_sigv4_uri_decode(struct st_buf *out, const char *s, size_t n, bool strict) ST_WARN_UNUSED;
/* Writes sha256(data) as 64 hex digits and a NUL. */
void st_sigv4_sha256_hex(char out[65], const void *data, size_t len);
/* Formats t as YYYYMMDDTHHMMSSZ (UTC). */
void st_sigv4_amz_date(char out[17], time_t t);

#endif
