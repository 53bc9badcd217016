/*
 * The controller's data door: an HTTPS server through which data-mover pods
 * reach the backup storage location without ever holding its credentials.
 *
 * The controller opens a session per mover over one st_store (the location
 * with the repository's prefix) and gives the mover the session URL and its
 * bearer token (through a Secret). The mover uses the URL as an ordinary
 * store location (stasis+https://host:port/v1/sessions/<id>, pkg/store_remote.c),
 * so the repository code runs unchanged on it: only chunks the repository
 * lacks are sent, and every chunk read back is verified by the mover.
 *
 *   GET    /v1/sessions/<id>/objects/<key>       (Range: bytes=a-b honoured)
 *   HEAD   /v1/sessions/<id>/objects/<key>
 *   PUT    /v1/sessions/<id>/objects/<key>       (If-None-Match: * -> 412 when it exists)
 *   DELETE /v1/sessions/<id>/objects/<key>       (only under locks/)
 *   GET    /v1/sessions/<id>/objects?prefix=P    (JSON lines {"key":..,"size":..})
 *
 * Read-only sessions (restores) refuse PUT and DELETE with 403. Keys are
 * checked (no "..", no leading '/', printable, bounded). The token is compared
 * in constant time and never logged. Bodies are capped at
 * ST_DATASERVER_CAP_BODY (413). Each session counts bytes in and out for
 * progress.
 */
#ifndef ST_PKG_DATASERVER_H
#define ST_PKG_DATASERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "pkg/util/err.h"

struct st_store;
struct st_dataserver;

#define ST_DATASERVER_CAP_BODY  (80u << 20) /* 80 MiB */
#define ST_DATASERVER_TOKEN_LEN 64          /* hex characters */

struct st_dataserver_options {
	const char *listen_addr; /* "127.0.0.1", "0.0.0.0" */
	uint16_t port;           /* 0: a free port */
	const char *cert_file;   /* serving certificate and key */
	const char *key_file;
};

int st_dataserver_new(struct st_dataserver **out, const struct st_dataserver_options *opts,
                      struct st_err *err) ST_WARN_UNUSED;
uint16_t st_dataserver_port(const struct st_dataserver *ds);
void st_dataserver_free(struct st_dataserver *ds);

/*
 * Opens a session on store s (not owned; must outlive the session). id_out
 * gets a random id (33 bytes), token_out the bearer token (65 bytes).
 */
int st_dataserver_open(struct st_dataserver *ds, struct st_store *s, bool read_only, char *id_out,
                       char *token_out, struct st_err *err) ST_WARN_UNUSED;

struct st_dataserver_stats {
	uint64_t bytes_in;  /* PUT bodies accepted */
	uint64_t bytes_out; /* object GET bodies sent (listings not counted) */
	uint64_t requests;
};
/* ST_ENOTFOUND for an unknown session. */
int st_dataserver_stats(struct st_dataserver_stats *out, struct st_dataserver *ds,
                        const char *id) ST_WARN_UNUSED;

/* Closes a session: later requests with its token get 401. */
void st_dataserver_close(struct st_dataserver *ds, const char *id);

#endif
