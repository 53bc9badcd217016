/*
 * Coordinated quiesce: the controller's side of freezing many pods at once.
 *
 * st_quiesce_freeze sends POST /v1/freeze to every target's agent at the same
 * moment (one libcurl multi handle, connections opened and TLS handshakes done
 * first, so the freeze requests leave together), with the controller's client
 * certificate. It is all-or-nothing: when any agent fails to freeze (refusal,
 * HTTP error, connection error, timeout), every agent that did freeze is thawed
 * before it returns, and the error names each failed pod and its reason.
 * st_quiesce_thaw thaws every frozen target in parallel over the connections
 * kept open since the freeze (no handshake inside the window) and records each
 * pod's window as the agent measured it (thaw response "windowMs"), falling
 * back to the controller's own measure.
 *
 * Agents are reached by IP, and their serving certificates are verified against
 * the CA for the name in tls.server_name (the DNS SAN all agent certificates
 * carry), the address being pinned with CURLOPT_RESOLVE; hostname
 * verification is never turned off. A frozen pod is always thawed: a failed
 * thaw request is retried until the timeout, and the agent's own watchdog
 * thaws at the deadline whatever the controller does.
 */
#ifndef ST_PKG_QUIESCE_H
#define ST_PKG_QUIESCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

#define ST_QUIESCE_MAX_TARGETS 1024
#define ST_QUIESCE_SERVER_NAME "stasis-agent"

struct st_quiesce_tls {
	const char *ca_file;     /* CA that signed the agents' serving certificates */
	const char *cert_file;   /* controller client certificate */
	const char *key_file;    /* its key */
	const char *server_name; /* name verified in the agent certificates; NULL: "stasis-agent" */
};

struct st_quiesce_target {
	char namespace[254];
	char pod[254];
	char addr[64];  /* pod IP, v4 or v6 */
	uint16_t port;  /* agent HTTPS port (the stasis.io/agent-port annotation) */
	char *volumes;  /* JSON array text of volume names to freeze; NULL: all of the agent's */
	/* filled in by st_quiesce_freeze / st_quiesce_thaw: */
	bool frozen;               /* the agent answered 200 to the freeze */
	int64_t frozen_at_ms;      /* Unix ms when the freeze was acknowledged */
	int64_t thawed_at_ms;      /* Unix ms when the thaw was acknowledged; 0: not yet */
	double window_ms;          /* agent-measured frozen duration; < 0 unknown */
	char error[512];           /* "" or why freeze/thaw failed for this pod */
};

struct st_quiesce;

struct st_quiesce_options {
	struct st_quiesce_tls tls;
	int64_t deadline_s;   /* deadlineSeconds sent to the agents (their watchdog) */
	int64_t timeout_ms;   /* bound for each phase (connect+freeze, thaw); 0: 10000 */
};

/* Creates a session over targets (the array stays owned by the caller and must outlive q). */
int st_quiesce_new(struct st_quiesce **out, struct st_quiesce_target *targets, size_t n,
                   const struct st_quiesce_options *opts, struct st_err *err) ST_WARN_UNUSED;

/* Freezes all in parallel; all-or-nothing as described above. */
int st_quiesce_freeze(struct st_quiesce *q, struct st_err *err) ST_WARN_UNUSED;

/* Thaws every frozen target in parallel; ST_EIO naming the pods whose thaw failed. */
int st_quiesce_thaw(struct st_quiesce *q, struct st_err *err) ST_WARN_UNUSED;

/* Thaws whatever is still frozen (best effort), closes connections, frees; NULL ok. */
void st_quiesce_free(struct st_quiesce *q);

#endif
