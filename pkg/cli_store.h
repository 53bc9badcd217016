/*
 * The command line's access to a backup storage location: `backup logs`
 * reads objects from the store a BackupStorageLocation names.
 *
 * The location is opened by pkg/bsl, as the controller opens it: the
 * credentials come from a file the user names (--credentials-file), else
 * from the Secret key spec.credential names, read through the API. The logs
 * are gzip-compressed text, inflated while they stream in.
 */
#ifndef ST_PKG_CLI_STORE_H
#define ST_PKG_CLI_STORE_H

#include <stdio.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

struct st_cli_ctx;

/*
 * Prints backups/<B>/<B>-logs.gz of backup (a Backup object, borrowed) from
 * its storage location (spec.storageLocation, else the default location),
 * decompressed, to f. credentials_file NULL: the location's Secret. Errors
 * are printed with the context's verb; returns 0 or a negative ST_E*.
 */
int st_cli_store_backup_logs(struct st_cli_ctx *ctx, struct json_object *backup,
                             const char *credentials_file, FILE *f) ST_WARN_UNUSED;

/*
 * Prints the gzip-compressed object key of the storage location of backup
 * (a Backup object, borrowed; spec.storageLocation, else the default
 * location; NULL: the default location), decompressed, to f. what names the
 * object in messages ("logs for backup b1").
 * Errors are printed with the context's verb; returns 0 or a negative ST_E*.
 */
int st_cli_store_get_gz(struct st_cli_ctx *ctx, struct json_object *backup, const char *key,
                        const char *what, const char *credentials_file, FILE *f) ST_WARN_UNUSED;

/*
 * Streams gzip data to f through an inflater: st_cli_gunzip_new, then feed
 * every chunk, then finish (ST_EPROTO when the stream is truncated or corrupt).
 */
struct st_cli_gunzip;
struct st_cli_gunzip *st_cli_gunzip_new(FILE *f);
int st_cli_gunzip_feed(struct st_cli_gunzip *g, const void *data, size_t n) ST_WARN_UNUSED;
int st_cli_gunzip_finish(struct st_cli_gunzip *g) ST_WARN_UNUSED;
void st_cli_gunzip_free(struct st_cli_gunzip *g);

#endif
