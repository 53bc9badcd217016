/*
 * The quiescer daemon behind `stasis-agent serve`.
 *
 * It freezes and thaws a pod's (or host's) volumes on request, over two
 * doors that speak the same JSON: an HTTPS API (client certificates required
 * when a CA is configured; see pkg/httpd.h) for the controller, and a Unix
 * socket (owner-only, peer uid checked) for the `stasis-agent freeze|thaw|
 * status` commands that Velero's exec hooks run.
 *
 *   POST /v1/freeze  {"volumes":[..],"deadlineSeconds":N,"extend":bool}
 *   POST /v1/thaw    {}
 *   GET  /v1/status, GET /healthz, GET /metrics (Prometheus text)
 *
 * A freeze can never outlive its deadline: a forked watchdog (pkg/freeze.h)
 * holds its own descriptors and thaws at the deadline even if this process
 * is stopped or stuck, and when this process dies; a journal in the state
 * dir (never on a volume) lets the next start thaw what a crash of both left
 * frozen; SIGTERM/SIGINT thaw before exit (st_agent_serve). A second freeze
 * while frozen is refused with 409 unless it sets "extend", which moves the
 * deadline of the current freeze; it never freezes twice.
 *
 * Thread safety: request handling is serialised by the agent's lock.
 */
#ifndef ST_PKG_AGENT_H
#define ST_PKG_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

#define ST_AGENT_MAX_VOLUMES 64

struct st_agent;

struct st_agent_options {
	const char *state_dir;   /* journal and default socket; outside every volume */
	const char *socket_path; /* NULL: <state_dir>/agent.sock */
	const char *listen_addr; /* HTTPS address; NULL: no HTTPS */
	uint16_t port;           /* 0: any free port (see st_agent_port) */
	const char *cert_file;
	const char *key_file;
	const char *client_ca_file; /* NULL: no client certificates asked (tests only) */
	/* Volumes this agent may freeze (name = last path component). None: any path. */
	const char *volumes[ST_AGENT_MAX_VOLUMES];
	size_t nvolumes;
	int64_t default_deadline_s; /* when a request names none */
	int64_t max_deadline_s;     /* longest deadline accepted */
};
#define ST_AGENT_OPTIONS_INIT                                                           \
	{                                                                               \
		"/run/stasis", NULL, NULL, 8443, NULL, NULL, NULL, { NULL }, 0, 30, 600 \
	}

/*
 * Creates the agent: thaws whatever the journal says a previous run left
 * frozen, then forks the watchdog. Call before any thread is started.
 */
int st_agent_new(struct st_agent **out, const struct st_agent_options *opts,
                 struct st_err *err) ST_WARN_UNUSED;

/* Starts the Unix socket, the HTTPS server (if configured) and the expiry thread. */
int st_agent_start(struct st_agent *a, struct st_err *err) ST_WARN_UNUSED;

/* The HTTPS port actually bound (0 without HTTPS). */
uint16_t st_agent_port(const struct st_agent *a);

/*
 * Handles one API request (method, path, body) from `who` and fills
 * *status_out and *body_out (malloc'd, caller frees) and *ctype_out (static).
 */
int st_agent_handle(int *status_out, char **body_out, const char **ctype_out, struct st_agent *a,
                    const char *method, const char *path, const char *body, size_t len,
                    const char *who) ST_WARN_UNUSED;

/* Stops the servers, thaws anything still frozen, stops the watchdog, frees; NULL ok. */
void st_agent_free(struct st_agent *a);

/*
 * Runs the daemon until SIGTERM or SIGINT, then thaws and exits cleanly.
 * Blocks those signals in every thread so only the main thread takes them.
 */
int st_agent_serve(const struct st_agent_options *opts, struct st_err *err) ST_WARN_UNUSED;

/*
 * Client side of the Unix socket: sends one request and reads the answer.
 * *body_out is malloc'd (caller frees). timeout_ms bounds the whole call.
 */
int st_agent_call(int *status_out, char **body_out, const char *socket_path, const char *method,
                  const char *path, const char *body, int timeout_ms,
                  struct st_err *err) ST_WARN_UNUSED;

#endif
