/*
 * HTTPS server wrapper over libmicrohttpd (GnuTLS underneath).
 *
 * One handler callback receives each complete request (body already read,
 * bounded by max_body: a larger body is answered 413 without calling the
 * handler). TLS 1.2+ only; plain HTTP on the port fails the handshake. The
 * certificate and key are served through a GnuTLS retrieve callback and
 * re-read when either file's mtime/size changes (checked at most once per
 * second), so rotation needs no restart; a broken new pair is logged and the
 * old one kept. With client_ca_file set, clients must present a certificate
 * chaining to that CA: otherwise the request is refused with 403 and a reason
 * before the handler runs, and req->client_cn carries the verified subject CN.
 * Idle and slow connections are closed after conn_timeout_s.
 *
 * Handlers read request headers and decoded query arguments with
 * st_httpd_request_header()/st_httpd_request_arg(), and may add a few
 * response headers (Content-Range, ETag, ...). A HEAD response can announce
 * the Content-Length of the body a GET would send without sending it.
 *
 * Thread safety: the handler runs on the server's worker threads,
 * concurrently; it must be reentrant.
 */
#ifndef ST_PKG_HTTPD_H
#define ST_PKG_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

struct st_httpd;

struct st_httpd_request {
	const char *method;       /* "GET", "POST", ... */
	const char *path;         /* URL path without query */
	const char *query;        /* raw query string or NULL */
	const char *content_type; /* Content-Type header or NULL */
	const char *body;         /* NUL-terminated copy of the body ("" when none) */
	size_t body_len;
	const char *client_cn; /* verified client certificate CN, or NULL */
	const char *peer;      /* "ip:port" of the client */
	void *conn;            /* internal: the connection, for the lookups below */
};

#define ST_HTTPD_RESP_HEADERS_MAX 4

struct st_httpd_header {
	const char *name; /* static string; NULL: unused slot */
	char value[128];
};

struct st_httpd_response {
	int status;               /* HTTP status; 0 means 500 */
	const char *content_type; /* static string; NULL: application/json */
	char *body;               /* malloc'd; taken by the server; may be NULL */
	size_t body_len;
	struct st_httpd_header headers[ST_HTTPD_RESP_HEADERS_MAX]; /* extra response headers */
	uint64_t head_length; /* HEAD with no body: the Content-Length to announce */
};

/*
 * Fills resp and returns 0; a negative return is answered 500 with a
 * generic message (the handler logs the detail once).
 */
typedef int (*st_httpd_handler)(struct st_httpd_response *resp, const struct st_httpd_request *req,
                                void *payload);

/*
 * A request header's value (case-insensitive name), or NULL. Borrowed: valid
 * while the handler runs. Only for the req passed to the handler.
 */
const char *st_httpd_request_header(const struct st_httpd_request *req, const char *name);
/* A query argument's percent-decoded value, or NULL; as above. */
const char *st_httpd_request_arg(const struct st_httpd_request *req, const char *name);

/* Called after each response with path, status and seconds taken (metrics). */
typedef void (*st_httpd_observe_cb)(const char *path, int status, double seconds, void *payload);

struct st_httpd_options {
	const char *addr; /* listen address, e.g. "127.0.0.1" or "0.0.0.0" */
	uint16_t port;    /* 0: pick a free port (see st_httpd_port) */
	const char *cert_file;
	const char *key_file;
	const char *client_ca_file; /* NULL: no client certificates requested */
	unsigned threads;           /* worker threads; 0: number of CPUs */
	size_t max_body;            /* request body cap in bytes */
	unsigned conn_timeout_s;    /* idle/slow connection timeout */
	st_httpd_observe_cb observe;
	void *observe_payload;
};
#define ST_HTTPD_OPTIONS_INIT                                                 \
	{                                                                     \
		"127.0.0.1", 0, NULL, NULL, NULL, 0, 1u << 20, 10, NULL, NULL \
	}

/* Loads the certificate pair (errors name the file) and starts listening. */
int st_httpd_start(struct st_httpd **out, const struct st_httpd_options *opts,
                   st_httpd_handler handler, void *payload, struct st_err *err) ST_WARN_UNUSED;
/* The bound port. */
uint16_t st_httpd_port(const struct st_httpd *h);
/* Stops accepting, finishes in-flight requests (bounded), frees; NULL is a no-op. */
void st_httpd_stop(struct st_httpd *h);
/* Number of successful certificate reloads so far (tests, metrics). */
unsigned st_httpd_reloads(const struct st_httpd *h);

#endif
