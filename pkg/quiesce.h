/*
 * Coordinated quiesce: the controller's side of freezing many pods at once.
 *
 * st_quiesce_freeze first opens one connection per agent (GET /healthz over
 * HTTPS with the controller's client certificate, all in parallel on one
 * libcurl multi handle), so that every TCP and TLS handshake is done before
 * anything is frozen. If any agent cannot be reached or refuses the
 * controller, nothing is frozen at all. Then POST /v1/freeze goes to every
 * agent at the same moment over those connections. It is all-or-nothing:
 * when any agent fails to freeze (refusal such as 409 "already frozen", HTTP
 * error, connection error, timeout), every agent that did freeze (or may
 * have: a request sent without an answer) is thawed before it returns, and
 * the error names each failed pod (namespace/pod) and its reason. A pod
 * frozen by someone else (409) is never thawed by this session.
 * st_quiesce_thaw thaws every frozen target in parallel over the same
 * connections (no handshake inside the window), retries a failed thaw until
 * the timeout, and records each pod's window as the agent measured it (thaw
 * answer "windowMs"), falling back to the controller's own measure.
 *
 * Agents are reached by IP, and their serving certificates are verified
 * against the CA for the name in tls.server_name (a DNS SAN that every agent
 * certificate carries). The URL names server_name and CURLOPT_CONNECT_TO pins
 * each target's connection to its pod IP: unlike CURLOPT_RESOLVE, whose
 * entries land in the DNS cache the multi handle shares, CONNECT_TO keeps the
 * connections of pods that share a name and port apart. Hostname and peer
 * verification are never turned off. A frozen pod is always thawed: a failed
 * thaw request is retried until the timeout, and the agent's own watchdog
 * thaws at the deadline whatever the controller does. Key material is read
 * by libcurl from the files named here and never logged.
 *
 * Thread safety: a session is used by one thread at a time.
 */
#ifndef ST_PKG_QUIESCE_H
#define ST_PKG_QUIESCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

#define ST_QUIESCE_MAX_TARGETS 1024
/*
 * The name verified in agent certificates by default: `stasis certs` (and
 * `stasis install`) issue one serving certificate whose first DNS SAN is the
 * service name, "stasis-webhook" unless --service says otherwise, and that
 * certificate is what the agents serve (injection.agentTLSSecret).
 */
#define ST_QUIESCE_SERVER_NAME "stasis-webhook"

struct st_quiesce_tls {
	const char *ca_file;     /* CA that signed the agents' serving certificates */
	const char *cert_file;   /* controller client certificate */
	const char *key_file;    /* its key */
	const char *server_name; /* name verified in the agent certificates; NULL: default above */
};

struct st_quiesce_target {
	char namespace[254];
	char pod[254];
	char addr[64]; /* pod IP, v4 or v6 */
	uint16_t port; /* agent HTTPS port (the stasis.io/agent-port annotation) */
	char *volumes; /* JSON array text of volume names to freeze; NULL: all of the agent's */
	/* filled in by st_quiesce_freeze / st_quiesce_thaw: */
	bool frozen;          /* the agent answered 200 to the freeze and is not thawed yet */
	int64_t frozen_at_ms; /* Unix ms when the freeze was acknowledged */
	int64_t thawed_at_ms; /* Unix ms when the thaw was acknowledged; 0: not yet */
	double window_ms;     /* agent-measured frozen duration; < 0 unknown */
	char error[512];      /* "" or why freeze/thaw failed for this pod */
};

struct st_quiesce;

struct st_quiesce_options {
	struct st_quiesce_tls tls;
	int64_t deadline_s; /* deadlineSeconds sent to the agents (their watchdog); 0: theirs */
	int64_t timeout_ms; /* bound for each phase (connect+freeze, thaw); 0: 10000 */
};
#define ST_QUIESCE_OPTIONS_INIT                   \
	{                                         \
		{ NULL, NULL, NULL, NULL }, 30, 0 \
	}

/*
 * Creates a session over targets (the array stays owned by the caller and
 * must outlive q; the option strings are copied). Checks the options and
 * every target (address, port, volumes JSON, no agent twice) without any
 * network traffic: ST_EINVAL or ST_ENOTFOUND (a TLS file cannot be read)
 * with the field or pod named in err.
 */
int st_quiesce_new(struct st_quiesce **out, struct st_quiesce_target *targets, size_t n,
                   const struct st_quiesce_options *opts, struct st_err *err) ST_WARN_UNUSED;

/*
 * Freezes all targets in parallel, all-or-nothing as described above, within
 * timeout_ms for connecting and freezing. 0: every target is frozen. Failure:
 * nothing stays frozen by this session (save a pod whose rollback thaw also
 * failed, which its watchdog thaws at the deadline; it keeps frozen = true),
 * each failed pod's error is filled, and err names them; the code is the
 * first failed pod's: ST_ETIMEDOUT, ST_ETLS (handshake or verification),
 * ST_EUPSTREAM (the agent answered an error), ST_EPROTO, ST_ETOOBIG or
 * ST_EIO (connection). ST_EINVAL when the session is already frozen.
 */
int st_quiesce_freeze(struct st_quiesce *q, struct st_err *err) ST_WARN_UNUSED;

/*
 * Thaws every frozen target in parallel (retrying until timeout_ms) and
 * records thawed_at_ms and window_ms. ST_EIO naming the pods whose thaw
 * failed or whose freeze did not hold to the end (the watchdog thawed it at
 * the deadline, or someone else thawed it first). Nothing frozen: 0.
 */
int st_quiesce_thaw(struct st_quiesce *q, struct st_err *err) ST_WARN_UNUSED;

/* Thaws whatever is still frozen (best effort, logged), closes connections, frees; NULL ok. */
void st_quiesce_free(struct st_quiesce *q);

#endif
