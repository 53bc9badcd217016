/*
 * Object stores: one interface over S3 and local directories.
 *
 * A storage location URL selects the backend:
 *   s3://bucket/prefix?endpoint=https://host:port&region=minio&pathStyle=true&caFile=/ca.pem
 *       &insecureSkipTLSVerify=true
 *   file:///absolute/dir
 *   stasis+https://host:port/v1/sessions/<id>   (a controller data-door session,
 *       pkg/store_remote.c; token and CA from STASIS_DATA_TOKEN[_FILE], STASIS_DATA_CA)
 * Keys are relative to the location's prefix ("backups/b1/b1.tar.gz"). Objects are
 * written whole and atomically (a reader sees the old object, the new one, or
 * none). Writes are streamed from a reader callback and reads are streamed to a
 * writer callback so memory stays constant for any object size.
 *
 * Credentials are taken from an AWS-credentials-format file or the
 * environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and are never logged.
 * A store is safe to use from several threads at once.
 */
#ifndef ST_PKG_STORE_H
#define ST_PKG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

struct st_store;

struct st_store_options {
	const char *credentials_file; /* AWS credentials format; NULL: environment */
	const char *profile;          /* section in credentials_file; NULL: "default" */
	unsigned max_retries;         /* 0: backend default */
};
#define ST_STORE_OPTIONS_INIT \
	{                     \
		NULL, NULL, 0 \
	}

/* Reads up to cap bytes into buf; returns bytes read, 0 at end, < 0 ST_E* on error. */
typedef long (*st_store_read_cb)(void *buf, size_t cap, void *payload);
/* Consumes n bytes; returns 0 or a negative ST_E* to abort the transfer. */
typedef int (*st_store_write_cb)(const void *buf, size_t n, void *payload);
/* Called once per listed key; returns 0 to go on, non-zero to stop (returned as is). */
typedef int (*st_store_list_cb)(const char *key, uint64_t size, void *payload);

struct st_store_vtable {
	int (*put)(struct st_store *s, const char *key, uint64_t size, st_store_read_cb rd,
	           void *payload, bool if_absent, struct st_err *err);
	int (*get)(struct st_store *s, const char *key, uint64_t off, uint64_t len,
	           st_store_write_cb wr, void *payload, struct st_err *err);
	int (*head)(struct st_store *s, const char *key, uint64_t *size_out, struct st_err *err);
	int (*list)(struct st_store *s, const char *prefix, st_store_list_cb cb, void *payload,
	            struct st_err *err);
	int (*del)(struct st_store *s, const char *key, struct st_err *err);
	void (*free)(struct st_store *s);
	/* Optional (NULL: puts are durable when they return): makes deferred puts durable. */
	int (*sync)(struct st_store *s, struct st_err *err);
	/* Optional (NULL: nothing to create): creates the bucket; 1 when it existed already. */
	int (*create)(struct st_store *s, struct st_err *err);
	/* Optional (NULL: put with a reader over data): put of data already in memory. */
	int (*put_mem)(struct st_store *s, const char *key, const void *data, size_t len,
	               bool if_absent, struct st_err *err);
};

/* Backends embed this as their first member. */
struct st_store {
	const struct st_store_vtable *vt;
	char *url;       /* the location URL without credentials, for messages */
	bool defer_sync; /* see st_store_set_defer_sync */
};

/*
 * Opens the location named by url. Returns ST_EINVAL with a message naming the
 * URL part at fault for a malformed URL, ST_ENOTFOUND for a missing directory
 * or bucket (checked lazily by S3 on first use).
 */
int st_store_open(struct st_store **out, const char *url, const struct st_store_options *opts,
                  struct st_err *err) ST_WARN_UNUSED;
void st_store_free(struct st_store *s);

/*
 * put: size is the exact byte count rd will yield (UINT64_MAX: unknown, the
 * backend then buffers or uses multipart). if_absent: fail with a clear
 * ST_EINVAL-free result of 1 when the key already exists (immutable objects);
 * returns 0 when written, 1 when skipped because it existed.
 * get: len == UINT64_MAX reads to the end. ST_ENOTFOUND for a missing key.
 * head: ST_ENOTFOUND for a missing key.
 * list: keys under prefix in lexical order, with pagination handled inside.
 * del: deleting a missing key succeeds.
 */
int st_store_put(struct st_store *s, const char *key, uint64_t size, st_store_read_cb rd,
                 void *payload, bool if_absent, struct st_err *err) ST_WARN_UNUSED;
int st_store_put_mem(struct st_store *s, const char *key, const void *data, size_t len,
                     bool if_absent, struct st_err *err) ST_WARN_UNUSED;
int st_store_get(struct st_store *s, const char *key, uint64_t off, uint64_t len,
                 st_store_write_cb wr, void *payload, struct st_err *err) ST_WARN_UNUSED;
/* Reads a whole object of at most cap bytes into a malloc'd buffer (*out, *len_out). */
int st_store_get_mem(char **out, size_t *len_out, struct st_store *s, const char *key, size_t cap,
                     struct st_err *err) ST_WARN_UNUSED;
int st_store_head(struct st_store *s, const char *key, uint64_t *size_out,
                  struct st_err *err) ST_WARN_UNUSED;
int st_store_list(struct st_store *s, const char *prefix, st_store_list_cb cb, void *payload,
                  struct st_err *err) ST_WARN_UNUSED;
int st_store_delete(struct st_store *s, const char *key, struct st_err *err) ST_WARN_UNUSED;

/*
 * Deferred durability. With defer on, a backend whose puts cost a flush each
 * (file://: fsync of the file and its directory) may skip it; objects still
 * appear atomically (a reader never sees a partial object), but they are only
 * guaranteed to survive a crash after st_store_sync() returns 0. Callers
 * that order writes (the repository: packs, then index, then snapshot) call
 * st_store_sync() between dependent writes. Backends without a sync op (S3)
 * are durable on every put and ignore both. Set defer before sharing the
 * store between threads.
 */
void st_store_set_defer_sync(struct st_store *s, bool on);
int st_store_sync(struct st_store *s, struct st_err *err) ST_WARN_UNUSED;

/*
 * Makes sure the location can hold objects: on S3 the bucket is created when
 * it does not exist (a bucket the caller already owns is fine); file://
 * locations must already exist and nothing is done. Returns 0 when something
 * was created, 1 when the location existed, or a negative ST_E* with err set
 * (e.g. the bucket is owned by someone else, or the credentials may not
 * create buckets).
 */
int st_store_create(struct st_store *s, struct st_err *err) ST_WARN_UNUSED;

/* Backend constructors, called by st_store_open. */
int st_store__open_file(struct st_store **out, const char *url, const char *path,
                        struct st_err *err);
int st_store__open_s3(struct st_store **out, const char *url, const struct st_store_options *opts,
                      struct st_err *err);
int st_store__open_remote(struct st_store **out, const char *url,
                          const struct st_store_options *opts, struct st_err *err);

#endif
