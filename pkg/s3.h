/*
 * S3 client over libcurl: requests are signed by pkg/sigv4 (libcurl only
 * transports them; CURLOPT_AWS_SIGV4 of Debian's 7.88 signs S3 wrongly).
 *
 * Operations: put (single PUT up to the part size, multipart above it, with
 * abort on failure), ranged streamed get, head, ListObjectsV2 with
 * continuation, delete, multi-delete. Bodies are streamed through caller
 * callbacks; an upload buffers at most one part (part_size bytes) so that a
 * retried request can be replayed, which keeps memory constant for any
 * object size. A get that fails mid-body resumes with a Range request.
 *
 * Every request is retried with exponential backoff and full jitter on 5xx,
 * 429, timeouts and connection failures, re-signed on each attempt. Failures
 * are reported in struct st_err with the method, bucket/key, the S3 error
 * code and message, and a hint for the usual causes (wrong credentials,
 * clock skew, missing bucket, unreachable endpoint).
 *
 * Credentials come from an AWS-credentials-format file or the environment,
 * are never logged, and are wiped with st_freezero when released.
 * A client may be used from several threads at once.
 */
#ifndef ST_PKG_S3_H
#define ST_PKG_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

struct st_s3_client;

struct st_s3_credentials {
	char *access_key;
	char *secret_key;
	char *session_token; /* NULL: none */
};
#define ST_S3_CREDENTIALS_INIT   \
	{                        \
		NULL, NULL, NULL \
	}

struct st_s3_options {
	const char *endpoint; /* http(s)://host[:port], no path */
	const char *region;   /* NULL: "us-east-1" */
	const char *bucket;
	bool path_style;             /* host/bucket/key instead of bucket.host/key */
	const char *ca_file;         /* PEM bundle; NULL: system store */
	bool insecure_skip_verify;   /* disables TLS verification; explicit opt-in only */
	unsigned max_retries;        /* 0: 5 */
	unsigned connect_timeout_ms; /* 0: 10000 */
	unsigned backoff_ms;         /* first retry delay; 0: 200 */
	uint64_t part_size;          /* multipart part size and single-PUT limit; 0: 16 MiB */
};
#define ST_S3_OPTIONS_INIT                                       \
	{                                                        \
		NULL, NULL, NULL, false, NULL, false, 0, 0, 0, 0 \
	}

#define ST_S3_DEFAULT_PART_SIZE (16u * 1024u * 1024u)
/* S3's bounds: at most 10000 parts, each at least 5 MiB except the last. */
#define ST_S3_MAX_PARTS     10000u
#define ST_S3_MIN_PART_SIZE (5u * 1024u * 1024u)

/* Same shapes as the pkg/store.h callbacks. */
typedef long (*st_s3_read_cb)(void *buf, size_t cap, void *payload);
typedef int (*st_s3_write_cb)(const void *buf, size_t n, void *payload);
typedef int (*st_s3_list_cb)(const char *key, uint64_t size, void *payload);

/*
 * Loads credentials. file != NULL: the AWS credentials file (INI,
 * aws_access_key_id / aws_secret_access_key / aws_session_token) section
 * profile (NULL: "default"); file == NULL: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN. ST_EINVAL with a message naming
 * what is missing (never the secret). Release with st_s3_credentials_dispose.
 */
int st_s3_credentials_load(struct st_s3_credentials *out, const char *file, const char *profile,
                           struct st_err *err) ST_WARN_UNUSED;
/* Same, from a credentials text already in memory (what the file holds). */
int st_s3_credentials_parse(struct st_s3_credentials *out, const char *text, size_t len,
                            const char *profile, struct st_err *err) ST_WARN_UNUSED;
/* Wipes and frees the strings; safe on a zeroed struct and twice. */
void st_s3_credentials_dispose(struct st_s3_credentials *c);

/*
 * Creates a client for one bucket. Takes ownership of *creds (its fields are
 * moved out and zeroed) on success and on failure. Validates the options;
 * does not contact the server.
 */
int st_s3_client_new(struct st_s3_client **out, const struct st_s3_options *o,
                     struct st_s3_credentials *creds, struct st_err *err) ST_WARN_UNUSED;
void st_s3_client_free(struct st_s3_client *c);

/*
 * Uploads size bytes read from rd (size UINT64_MAX: until rd returns 0).
 * if_none_match: the object is immutable; sends If-None-Match: * and returns
 * 1 without writing when the key exists (a server answering 501 to the
 * condition gets a HEAD then PUT instead). Returns 0 when written.
 */
int st_s3_put(struct st_s3_client *c, const char *key, uint64_t size, st_s3_read_cb rd,
              void *payload, bool if_none_match, struct st_err *err) ST_WARN_UNUSED;
/*
 * st_s3_put for len bytes already in memory (borrowed for the call). An
 * object of up to part_size bytes goes out in one PUT straight from data,
 * without the copy st_s3_put keeps to resend the body on a retry.
 */
int st_s3_put_mem(struct st_s3_client *c, const char *key, const void *data, size_t len,
                  bool if_none_match, struct st_err *err) ST_WARN_UNUSED;
/* Streams bytes [off, off+len) (len UINT64_MAX: to the end) to wr. ST_ENOTFOUND if missing. */
int st_s3_get(struct st_s3_client *c, const char *key, uint64_t off, uint64_t len,
              st_s3_write_cb wr, void *payload, struct st_err *err) ST_WARN_UNUSED;
/* Size of an object; ST_ENOTFOUND if missing. */
int st_s3_head(struct st_s3_client *c, const char *key, uint64_t *size_out,
               struct st_err *err) ST_WARN_UNUSED;
/* Calls cb for each key under prefix in lexical order; cb's non-zero return stops and is returned.
 */
int st_s3_list(struct st_s3_client *c, const char *prefix, st_s3_list_cb cb, void *payload,
               struct st_err *err) ST_WARN_UNUSED;
/* Deletes one key; a missing key is not an error. */
int st_s3_delete(struct st_s3_client *c, const char *key, struct st_err *err) ST_WARN_UNUSED;
/* Deletes n keys with POST ?delete, 1000 per request; the first per-key error is reported. */
int st_s3_delete_many(struct st_s3_client *c, const char *const *keys, size_t n,
                      struct st_err *err) ST_WARN_UNUSED;
/*
 * Counts the multipart uploads in progress under prefix (first 1000), e.g. to
 * check that failed uploads were aborted.
 */
int st_s3_count_uploads(struct st_s3_client *c, const char *prefix, unsigned *n_out,
                        struct st_err *err) ST_WARN_UNUSED;
/* Creates the bucket (for tests and first-time setup); an existing own bucket is fine. */
int st_s3_create_bucket(struct st_s3_client *c, struct st_err *err) ST_WARN_UNUSED;

/*
 * XML decoding, exposed for tests and fuzzing. Every input is bounded by
 * ST_CAP_S3_XML and every extracted string by its output size.
 *
 * st_s3_xml_error: Code and Message of an <Error> document ("" when absent).
 * st_s3_xml_list: calls cb per <Contents> (Key, Size) of a ListObjectsV2
 * page; *truncated and token (NextContinuationToken) describe the next page.
 * st_s3_xml_text: the decoded text of the first <name> element, ST_ENOTFOUND
 * if none, ST_ETOOBIG if it does not fit in cap bytes with its NUL, ST_EPROTO
 * for a NUL byte in the text.
 */
struct st_s3_xml_error {
	char code[64];
	char message[160];
	char key[256];
};
int st_s3_xml_error(struct st_s3_xml_error *out, const char *xml, size_t len) ST_WARN_UNUSED;
int st_s3_xml_list(bool *truncated, char *token, size_t token_cap, const char *xml, size_t len,
                   st_s3_list_cb cb, void *payload) ST_WARN_UNUSED;
int st_s3_xml_text(char *out, size_t cap, const char *xml, size_t len,
                   const char *name) ST_WARN_UNUSED;

#endif
