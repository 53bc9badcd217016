/*
 * `stasis backup-location create|get`: BackupStorageLocation objects from
 * the command line, with Velero's flags and table.
 *
 * create builds the location from --provider (aws for any S3-compatible
 * store, file for a directory), --bucket, --prefix, --config k=v,...,
 * --credential SECRET=KEY, --cacert FILE and --default. get prints NAME
 * PROVIDER BUCKET/PREFIX PHASE LAST VALIDATED DEFAULT, or JSON/YAML.
 */
#ifndef ST_PKG_CLI_BSL_H
#define ST_PKG_CLI_BSL_H

#include <stdbool.h>

#include <json-c/json.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

/* argv[0] is "backup-location", argv[1] the sub-verb; returns the exit status. */
int st_cli_bsl_main(int argc, char **argv);

/* Usage text of `stasis backup-location`. */
extern const char st_cli_bsl_usage[];

/* Appends the `backup-location get` table for items (borrowed array), times relative to now. */
int st_cli_bsl_table(struct st_buf *out, struct json_object *items, long long now) ST_WARN_UNUSED;

/*
 * Options of a new location (borrowed strings); config is a string map or NULL.
 * Used by `backup-location create` and `install`.
 */
struct st_cli_bsl_spec {
	const char *name;
	const char *ns;
	const char *provider; /* "aws" or "file" */
	const char *bucket;
	const char *prefix;
	const char *ca_cert_b64; /* base64 PEM; NULL: none */
	struct json_object *config;
	const char *secret; /* credential Secret name; NULL: none */
	const char *secret_key;
	bool is_default;
};

/*
 * Builds the BackupStorageLocation object (*out, owned by the caller).
 * ST_EINVAL with a sentence in err when the provider is unknown, aws lacks a
 * bucket, file lacks config.path, or a config key is not one of region,
 * s3Url, s3ForcePathStyle, insecureSkipTLSVerify, path.
 */
int st_cli_bsl_build(struct json_object **out, const struct st_cli_bsl_spec *s,
                     struct st_err *err) ST_WARN_UNUSED;

#endif
