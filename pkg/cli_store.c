#include "pkg/cli_store.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pkg/bsl.h"
#include "pkg/cli_common.h"
#include "pkg/store.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

#define GUNZIP_CHUNK 65536

struct st_cli_gunzip {
	z_stream z;
	FILE *f;
	bool ended; /* Z_STREAM_END seen */
	unsigned char out[GUNZIP_CHUNK];
};

struct st_cli_gunzip *st_cli_gunzip_new(FILE *f)
{
	struct st_cli_gunzip *g = st_xcalloc(1, sizeof(*g));

	g->f = f;
	/* 16 + MAX_WBITS: a gzip header and trailer, not a raw zlib stream. */
	if (inflateInit2(&g->z, 16 + MAX_WBITS) != Z_OK) {
		free(g);
		return NULL;
	}
	return g;
}

void st_cli_gunzip_free(struct st_cli_gunzip *g)
{
	if (g == NULL)
		return;
	inflateEnd(&g->z);
	free(g);
}

int st_cli_gunzip_feed(struct st_cli_gunzip *g, const void *data, size_t n)
{
	size_t have;
	int zr;

	g->z.next_in = (unsigned char *)(uintptr_t)data;
	g->z.avail_in = (uInt)n;
	while (g->z.avail_in > 0 && !g->ended) {
		g->z.next_out = g->out;
		g->z.avail_out = sizeof(g->out);
		zr = inflate(&g->z, Z_NO_FLUSH);
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
			return ST_EPROTO;
		have = sizeof(g->out) - g->z.avail_out;
		if (have > 0 && fwrite(g->out, 1, have, g->f) != have)
			return ST_EIO;
		if (zr == Z_STREAM_END) {
			/* Concatenated gzip members are valid gzip: go on with the next. */
			if (g->z.avail_in == 0) {
				g->ended = true;
				break;
			}
			if (inflateReset(&g->z) != Z_OK)
				return ST_EPROTO;
		}
		if (zr == Z_BUF_ERROR && have == 0)
			break;
	}
	return 0;
}

int st_cli_gunzip_finish(struct st_cli_gunzip *g)
{
	if (!g->ended)
		return ST_EPROTO;
	return fflush(g->f) == 0 ? 0 : ST_EIO;
}

static int write_gz(const void *buf, size_t n, void *payload)
{
	return st_cli_gunzip_feed(payload, buf, n);
}

static int default_location(struct json_object *item, void *payload)
{
	struct json_object **found = payload;

	if (!st_json_get_bool(st_json_get_obj(item, "spec"), "default", false))
		return 0;
	*found = json_object_get(item);
	return 1;
}

/* The Backup's location (*out, owned), or the one marked default. */
static int find_location(struct json_object **out, struct st_cli_ctx *ctx, const char *name)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	struct st_kube_gvr gvr;
	long http = 0;
	int rc;

	*out = NULL;
	st_cli_gvr_bsl(&gvr);
	if (name != NULL) {
		rc = st_kube_get(out, ctx->client, &gvr, ctx->ns, name, &http, &err);
		if (rc < 0 && http == 404)
			st_cli_errorf(ctx, "backup storage location %s not found in namespace %s",
			              name, ctx->ns);
		else if (rc < 0)
			st_cli_kube_error(ctx, "get backup storage location", rc, &err);
		return rc;
	}
	rc = st_kube_list_items(NULL, ctx->client, &gvr, ctx->ns, &lo, default_location, out, &err);
	if (rc < 0) {
		st_cli_kube_error(ctx, "list backup storage locations", rc, &err);
		return rc;
	}
	if (*out == NULL) {
		st_cli_errorf(ctx, "the backup names no storage location and none is the default");
		return ST_ENOTFOUND;
	}
	return 0;
}

int st_cli_store_get_gz(struct st_cli_ctx *ctx, struct json_object *backup, const char *key,
                        const char *what, const char *credentials_file, FILE *f)
{
	const char *loc = st_json_get_str(st_json_get_obj(backup, "spec"), "storageLocation");
	struct json_object *bsl = NULL;
	struct st_cli_gunzip *g = NULL;
	struct st_err err = ST_ERR_INIT;
	struct st_bsl b;
	int rc;

	st_bsl_init(&b);
	if ((rc = find_location(&bsl, ctx, loc)) < 0)
		goto out;
	if ((rc = st_bsl_open(&b, ctx->client, bsl, credentials_file, &err)) < 0) {
		st_cli_errorf(ctx, "open the storage location: %s", st_err_text(&err));
		goto out;
	}
	if ((g = st_cli_gunzip_new(f)) == NULL) {
		rc = ST_ENOMEM;
		goto out;
	}
	rc = st_store_get(b.store, key, 0, UINT64_MAX, write_gz, g, &err);
	if (rc == ST_ENOTFOUND) {
		st_cli_errorf(ctx, "no %s in %s (%s): not written yet", what, b.url, key);
		goto out;
	}
	if (rc < 0) {
		st_cli_errorf(ctx, "read %s from %s: %s", key, b.url,
		              err.code != 0 ? st_err_text(&err) : st_strerror(rc));
		goto out;
	}
	if ((rc = st_cli_gunzip_finish(g)) < 0) {
		st_cli_errorf(ctx, "%s: truncated or corrupt gzip data", key);
		goto out;
	}
	rc = 0;
out:
	st_cli_gunzip_free(g);
	st_bsl_close(&b);
	json_object_put(bsl);
	return rc;
}

int st_cli_store_backup_logs(struct st_cli_ctx *ctx, struct json_object *backup,
                             const char *credentials_file, FILE *f)
{
	const char *name = st_json_get_str(st_json_get_obj(backup, "metadata"), "name");
	char key[1024], what[300];

	if (name == NULL)
		return ST_EINVAL;
	(void)snprintf(key, sizeof(key), "backups/%s/%s-logs.gz", name, name);
	(void)snprintf(what, sizeof(what), "logs for backup %s", name);
	return st_cli_store_get_gz(ctx, backup, key, what, credentials_file, f);
}
