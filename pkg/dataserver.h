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
 *   GET    /v1/sessions/<id>/objects/<key>       200; with Range: bytes=A-B or A-, 206
 *   HEAD   /v1/sessions/<id>/objects/<key>       Content-Length is the object's size
 *   PUT    /v1/sessions/<id>/objects/<key>       201; If-None-Match: * -> 412 when it exists
 *   DELETE /v1/sessions/<id>/objects/<key>       204; only under locks/
 *   GET    /v1/sessions/<id>/objects?prefix=P    JSON lines {"key":..,"size":..}, lexical order
 *
 * Every request carries Authorization: Bearer <token>. Errors are JSON
 * {"error": "..."}: 400 bad key or Range, 401 missing or refused token
 * (unknown, closed or other session), 403 a write on a read-only session
 * (restores) or a delete outside locks/, 404 missing object or endpoint, 412
 * an If-None-Match conflict, 413 a body over ST_DATASERVER_CAP_BODY (also an
 * object or listing too large to answer whole), 502 the store failed. Keys
 * are printable ASCII without spaces or '\', at most 1024 bytes, with no
 * leading '/' and no empty, "." or ".." segment. The token is compared in
 * constant time and never logged. Each session counts object bytes in and
 * out and requests, for progress. Bodies are held in memory (bounded by the
 * cap), one per request in flight.
 *
 * Thread safety: all functions may be called from any thread while the
 * server runs; st_dataserver_free must be the last call.
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

/*
 * Starts serving (pkg/httpd, TLS 1.2+). Errors name the certificate files or
 * the address; ST_EINVAL without a certificate pair.
 */
int st_dataserver_new(struct st_dataserver **out, const struct st_dataserver_options *opts,
                      struct st_err *err) ST_WARN_UNUSED;
/* The bound port. */
uint16_t st_dataserver_port(const struct st_dataserver *ds);
/* Stops serving (in-flight requests finish first) and drops every session; NULL is a no-op. */
void st_dataserver_free(struct st_dataserver *ds);

/*
 * Opens a session on store s (not owned; must outlive the session). id_out
 * gets a random id (33 bytes: 32 hex characters and a NUL), token_out the
 * bearer token (65 bytes), both from RAND_bytes.
 */
int st_dataserver_open(struct st_dataserver *ds, struct st_store *s, bool read_only, char *id_out,
                       char *token_out, struct st_err *err) ST_WARN_UNUSED;

struct st_dataserver_stats {
	uint64_t bytes_in;  /* PUT bodies accepted */
	uint64_t bytes_out; /* object GET bodies sent (listings not counted) */
	uint64_t requests;
};
/* The session's counters so far; ST_ENOTFOUND for an unknown or closed session. */
int st_dataserver_stats(struct st_dataserver_stats *out, struct st_dataserver *ds,
                        const char *id) ST_WARN_UNUSED;

/*
 * Closes a session: later requests with its token get 401; requests in
 * flight finish. Unknown ids are ignored.
 */
void st_dataserver_close(struct st_dataserver *ds, const char *id);

#endif
