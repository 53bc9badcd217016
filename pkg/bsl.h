/*
 * Backup storage locations: a stasis.io/v1alpha1 BackupStorageLocation turned
 * into an open object store.
 *
 * provider "aws" is any S3-compatible service: objectStorage.bucket and
 * prefix, config.s3Url (endpoint), region, s3ForcePathStyle and
 * insecureSkipTLSVerify, objectStorage.caCert (base64 PEM). provider "file"
 * is a directory: config.path, with objectStorage.prefix below it. The
 * credentials come from spec.credential (a Secret key holding an AWS
 * credentials file, read through the API), else from a fallback file (the
 * controller's --credentials-file), else from the environment. They touch
 * the disk only inside a private 0700 directory, as a 0600 file that is
 * removed as soon as the store has read it; the CA bundle stays there until
 * the location is closed because TLS reads it per connection.
 */
#ifndef ST_PKG_BSL_H
#define ST_PKG_BSL_H

#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

struct st_kube_client;
struct st_store;

/* The key of the probe object written and deleted by st_bsl_probe. */
#define ST_BSL_PROBE_KEY ".stasis-probe"
/* Where volume data lives below a location: <prefix>/repository/. */
#define ST_BSL_REPO_PREFIX "repository"

/* An open location; zero it (or st_bsl_init) before st_bsl_open. */
struct st_bsl {
	struct st_store *store; /* borrowed by callers until st_bsl_close */
	struct st_store *repo;  /* the volume repository below it (ST_BSL_REPO_PREFIX) */
	char *url;              /* the store URL, without credentials */
	char *tmpdir;           /* private directory for the CA file; NULL when none */
};

void st_bsl_init(struct st_bsl *b);

/*
 * Checks a BSL spec and builds its store URL into buf (size bytes). ca_file
 * (may be NULL) is the path where the caller put objectStorage.caCert.
 * ST_EINVAL with a sentence naming the field at fault.
 */
int st_bsl_url(char *buf, size_t size, struct json_object *spec, const char *ca_file,
               struct st_err *err) ST_WARN_UNUSED;

/*
 * Opens the store of bsl (a BackupStorageLocation object). c reads the
 * credential Secret from the BSL's namespace (may be NULL when the BSL names
 * no credential). credentials_file is the fallback (NULL: environment).
 * On failure *b is left closed.
 */
int st_bsl_open(struct st_bsl *b, struct st_kube_client *c, struct json_object *bsl,
                const char *credentials_file, struct st_err *err) ST_WARN_UNUSED;

/* Frees the store and removes the private directory. Safe twice and on a zeroed struct. */
void st_bsl_close(struct st_bsl *b);

/*
 * Proves the location reachable and writable: puts a small object at
 * ST_BSL_PROBE_KEY, reads its size back and deletes it. The store's error
 * text (with its hint, e.g. "NoSuchBucket (HTTP 404); ...") is kept in err.
 */
int st_bsl_probe(struct st_store *s, struct st_err *err) ST_WARN_UNUSED;

#endif
