/*
 * Kubernetes API client over libcurl and json-c.
 *
 * Configuration comes from a kubeconfig file (explicit path, the first entry
 * of $KUBECONFIG, then ~/.kube/config) or from the in-cluster service account
 * (KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/...).
 * Key material is handed to libcurl as memory blobs, never as temporary
 * files, and is wiped when the config or client is released; tokens and keys
 * are never logged.
 *
 * A client offers the REST verbs (get, list, create, update, status update,
 * patch, delete), discovery with preferred versions and a resolver for the
 * names kubectl accepts ("deploy", "deployments.apps", "Deployment"),
 * paginated lists, and watches that reconnect, relist on 410 Gone and stop on
 * a cancel flag or deadline. Requests pass a token-bucket rate limiter and
 * are retried with backoff on 429 (honouring Retry-After), and on 5xx and
 * connection errors when the verb is idempotent. Failures are decoded from
 * the API's Status objects into struct st_err sentences; the HTTP status is
 * returned to the caller through `long *http_out` so 404 and 409 can be told
 * apart. One client may be used from several threads at once.
 */
#ifndef ST_PKG_KUBE_H
#define ST_PKG_KUBE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

/* A response body (one object or one list page). */
#define ST_KUBE_CAP_BODY (64u * 1024u * 1024u)
/* One watch event line. */
#define ST_KUBE_CAP_EVENT (16u * 1024u * 1024u)
/* A kubeconfig, token or certificate file. */
#define ST_KUBE_CAP_FILE (4u * 1024u * 1024u)

/* ---- configuration ---------------------------------------------------------------------- */

/* Everything needed to reach and authenticate to one API server. */
struct st_kube_config {
	char *server;     /* "https://host:port", no trailing slash */
	char *context;    /* context used; "in-cluster" for the service account */
	char *cluster;    /* cluster name from the context */
	char *user;       /* user name from the context (not the authenticated identity) */
	char *namespace;  /* the context's namespace, "default" when unset */
	char *source;     /* the kubeconfig path, or the service-account directory */
	char *ca;         /* PEM bytes of the CA bundle; NULL: system store */
	size_t ca_len;    /* */
	char *cert;       /* PEM client certificate; NULL: none */
	size_t cert_len;  /* */
	char *key;        /* PEM client key (secret); NULL: none */
	size_t key_len;   /* */
	char *token;      /* bearer token (secret); NULL: none */
	char *token_file; /* re-read periodically when set (projected tokens rotate) */
	bool insecure;    /* insecure-skip-tls-verify: true in the kubeconfig */
};

/* Where st_kube_config_load looks; zeroed means "the usual places". */
struct st_kube_config_options {
	const char *path;          /* --kubeconfig; NULL: $KUBECONFIG, then ~/.kube/config */
	const char *context;       /* --context; NULL: current-context */
	const char *incluster_dir; /* NULL: /var/run/secrets/kubernetes.io/serviceaccount */
};
#define ST_KUBE_CONFIG_OPTIONS_INIT \
	{                           \
		NULL, NULL, NULL    \
	}

/* Sets every field to "unset" (zero). */
void st_kube_config_init(struct st_kube_config *cfg);
/* Releases the strings; secrets are wiped first. NULL-safe; cfg may be re-initialised. */
void st_kube_config_dispose(struct st_kube_config *cfg);

/*
 * Loads the configuration: opts->path if given; otherwise the first file named
 * by $KUBECONFIG (further entries are ignored); otherwise ~/.kube/config when it
 * exists; otherwise the in-cluster service account when KUBERNETES_SERVICE_HOST
 * is set. ST_EINVAL/ST_ENOTFOUND/ST_EIO with a message naming the file and field.
 */
int st_kube_config_load(struct st_kube_config *cfg, const struct st_kube_config_options *opts,
                        struct st_err *err) ST_WARN_UNUSED;

/* Loads one kubeconfig file; context NULL means current-context. */
int st_kube_config_load_file(struct st_kube_config *cfg, const char *path, const char *context,
                             struct st_err *err) ST_WARN_UNUSED;

/*
 * Parses kubeconfig text (YAML or JSON). Relative file references resolve
 * against base_dir (NULL: the current directory); `what` names the input in
 * messages. cfg must be freshly initialised; on failure it is left disposed.
 */
int st_kube_config_parse(struct st_kube_config *cfg, const char *text, size_t len,
                         const char *context, const char *base_dir, const char *what,
                         struct st_err *err) ST_WARN_UNUSED;

/*
 * In-cluster configuration from KUBERNETES_SERVICE_HOST/PORT and dir (NULL:
 * /var/run/secrets/kubernetes.io/serviceaccount) holding token, ca.crt and
 * namespace.
 */
int st_kube_config_incluster(struct st_kube_config *cfg, const char *dir,
                             struct st_err *err) ST_WARN_UNUSED;

/* ---- client ----------------------------------------------------------------------------- */

struct st_kube_client;

struct st_kube_client_options {
	double qps;                  /* sustained requests per second; 0: 50 */
	unsigned burst;              /* bucket size; 0: 100 */
	unsigned max_retries;        /* 0: 5; retries after the first attempt */
	unsigned backoff_ms;         /* first retry delay; 0: 100 (doubles, capped at 5 s) */
	unsigned connect_timeout_ms; /* 0: 10000 */
	unsigned timeout_ms;         /* whole request, watches excluded; 0: 60000 */
};
#define ST_KUBE_CLIENT_OPTIONS_INIT \
	{                           \
		0, 0, 0, 0, 0, 0    \
	}

/* Verbs as counted by the client (each HTTP request once, retries included). */
enum st_kube_verb {
	ST_KUBE_VERB_GET = 0,
	ST_KUBE_VERB_LIST,
	ST_KUBE_VERB_WATCH,
	ST_KUBE_VERB_CREATE,
	ST_KUBE_VERB_UPDATE,
	ST_KUBE_VERB_PATCH,
	ST_KUBE_VERB_DELETE,
	ST_KUBE_VERB_DISCOVERY,
	ST_KUBE_VERB_COUNT,
};

struct st_kube_stats {
	uint64_t requests[ST_KUBE_VERB_COUNT]; /* indexed by enum st_kube_verb */
	uint64_t retries;                      /* requests that were repeats */
	uint64_t throttled_ms;                 /* time spent waiting for the rate limiter */
};

/*
 * Creates a client for cfg (copied; the caller keeps cfg). opts may be NULL.
 * ST_EINVAL when the server URL is missing or not http(s). Free with
 * st_kube_client_free (NULL-safe), after every thread has stopped using it.
 */
int st_kube_client_new(struct st_kube_client **out, const struct st_kube_config *cfg,
                       const struct st_kube_client_options *opts,
                       struct st_err *err) ST_WARN_UNUSED;
void st_kube_client_free(struct st_kube_client *c);

/*
 * The client's copy of the configuration (borrowed, valid until the client is
 * freed). Its token is replaced when it comes from a token file, so read the
 * token only while no request is in flight.
 */
const struct st_kube_config *st_kube_client_config(const struct st_kube_client *c);
/* Snapshot of the request counters; thread-safe. */
void st_kube_client_stats(struct st_kube_stats *out, struct st_kube_client *c);
/* Short lowercase name of a verb ("get", "list", ...). */
const char *st_kube_verb_name(enum st_kube_verb v);

/* ---- resources -------------------------------------------------------------------------- */

/* A resource type; "" group is the core API. Fits on the stack. */
struct st_kube_gvr {
	char group[254];
	char version[64];
	char resource[128]; /* plural, lowercase: "deployments" */
	char kind[128];     /* "Deployment" */
	bool namespaced;
	unsigned verbs; /* ST_KUBE_CAN_* bits from discovery; 0 when not discovered */
};

#define ST_KUBE_CAN_GET    (1u << 0)
#define ST_KUBE_CAN_LIST   (1u << 1)
#define ST_KUBE_CAN_WATCH  (1u << 2)
#define ST_KUBE_CAN_CREATE (1u << 3)
#define ST_KUBE_CAN_UPDATE (1u << 4)
#define ST_KUBE_CAN_PATCH  (1u << 5)
#define ST_KUBE_CAN_DELETE (1u << 6)

/*
 * Fills gvr from explicit parts (no discovery). ST_EINVAL when a part is too
 * long or resource/version is empty; kind may be NULL.
 */
int st_kube_gvr_set(struct st_kube_gvr *gvr, const char *group, const char *version,
                    const char *resource, const char *kind, bool namespaced) ST_WARN_UNUSED;

/* "deployments.apps" or "pods" (the group-qualified name used in messages). */
void st_kube_gvr_name(char *buf, size_t size, const struct st_kube_gvr *gvr);

/*
 * Builds the request path for gvr, namespace ns (ignored for cluster-scoped
 * resources; NULL/"" means all namespaces), name (NULL for the collection) and
 * subresource (NULL for none), each percent-escaped. Returns ST_EINVAL for a
 * name that is "." or ".." or contains '/', ST_ETOOBIG past size.
 */
int st_kube_path(char *buf, size_t size, const struct st_kube_gvr *gvr, const char *ns,
                 const char *name, const char *subresource) ST_WARN_UNUSED;

/* ---- discovery -------------------------------------------------------------------------- */

/*
 * Resolves a name as kubectl does: plural ("deployments"), singular
 * ("deployment"), short name ("deploy"), kind ("Deployment", any case), or
 * qualified with a group ("deployments.apps") or version and group
 * ("deployments.v1.apps"). The preferred version of each group is used; the
 * core group wins a tie. Discovery is fetched on first use and cached per
 * client; a miss refreshes the cache once (new CRDs). ST_ENOTFOUND names the
 * input. Thread-safe.
 */
int st_kube_resolve(struct st_kube_gvr *out, struct st_kube_client *c, const char *name,
                    struct st_err *err) ST_WARN_UNUSED;

/* Drops the discovery cache so the next resolve fetches it again. */
void st_kube_discovery_reset(struct st_kube_client *c);

typedef int (*st_kube_resource_cb)(const struct st_kube_gvr *gvr, void *payload);

/*
 * Calls cb for every top-level resource (no subresources) of every group's
 * preferred version, core first. A non-zero return from cb stops the walk and
 * is returned.
 */
int st_kube_discovery_each(struct st_kube_client *c, st_kube_resource_cb cb, void *payload,
                           struct st_err *err) ST_WARN_UNUSED;

/* ---- REST verbs ------------------------------------------------------------------------- */
/*
 * Common contract: *out (when the verb has one) is set to NULL at entry and to
 * the decoded response object (owned by the caller) on success. ns is ignored
 * for cluster-scoped resources; NULL or "" for a namespaced one means the
 * object's metadata.namespace (create, update) or else the config's namespace. http_out, when not
 * NULL, receives the HTTP status of the last attempt (0 when no response arrived). Errors:
 * ST_ENOTFOUND (404), ST_EINVAL (400, 422, bad arguments), ST_EUPSTREAM (401, 403, 409, 410, 429,
 * 5xx), ST_EIO (connection), ST_ETLS (certificate), ST_ETIMEDOUT, ST_EPROTO (unreadable response),
 * ST_ETOOBIG; err holds the decoded sentence.
 */

int st_kube_get(struct json_object **out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                const char *ns, const char *name, long *http_out,
                struct st_err *err) ST_WARN_UNUSED;

/* POST; obj is not modified. ns NULL: obj's metadata.namespace. */
int st_kube_create(struct json_object **out, struct st_kube_client *c,
                   const struct st_kube_gvr *gvr, const char *ns, struct json_object *obj,
                   long *http_out, struct st_err *err) ST_WARN_UNUSED;

/* PUT of obj (name from metadata.name); 409 when its resourceVersion is stale. */
int st_kube_update(struct json_object **out, struct st_kube_client *c,
                   const struct st_kube_gvr *gvr, const char *ns, struct json_object *obj,
                   long *http_out, struct st_err *err) ST_WARN_UNUSED;

/* PUT to the status subresource. */
int st_kube_update_status(struct json_object **out, struct st_kube_client *c,
                          const struct st_kube_gvr *gvr, const char *ns, struct json_object *obj,
                          long *http_out, struct st_err *err) ST_WARN_UNUSED;

enum st_kube_patch_type {
	ST_KUBE_PATCH_MERGE = 0, /* application/merge-patch+json (RFC 7386) */
	ST_KUBE_PATCH_JSON,      /* application/json-patch+json (RFC 6902) */
	ST_KUBE_PATCH_STRATEGIC, /* application/strategic-merge-patch+json */
};

/* PATCH with a JSON text body; subresource NULL or e.g. "status". */
int st_kube_patch(struct json_object **out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                  const char *ns, const char *name, const char *subresource,
                  enum st_kube_patch_type type, const char *patch, size_t patch_len, long *http_out,
                  struct st_err *err) ST_WARN_UNUSED;

/*
 * DELETE; propagation is NULL (server default), "Foreground", "Background" or
 * "Orphan". out may be NULL (the response is an object or a Status).
 */
int st_kube_delete(struct json_object **out, struct st_kube_client *c,
                   const struct st_kube_gvr *gvr, const char *ns, const char *name,
                   const char *propagation, long *http_out, struct st_err *err) ST_WARN_UNUSED;

/* ---- lists and watches ------------------------------------------------------------------ */

struct st_kube_list_options {
	const char *label_selector;   /* NULL: none */
	const char *field_selector;   /* NULL: none */
	unsigned limit;               /* page size; 0: 500 */
	const char *continue_token;   /* st_kube_list only */
	const char *resource_version; /* NULL: most recent */
};
#define ST_KUBE_LIST_OPTIONS_INIT         \
	{                                 \
		NULL, NULL, 0, NULL, NULL \
	}

/* One page: the List object, whose metadata.continue names the next one. */
int st_kube_list(struct json_object **out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                 const char *ns, const struct st_kube_list_options *opts, long *http_out,
                 struct st_err *err) ST_WARN_UNUSED;

/* Borrowed page (the List) or item; a non-zero return stops and is returned. */
typedef int (*st_kube_page_cb)(struct json_object *list, void *payload);
typedef int (*st_kube_item_cb)(struct json_object *item, void *payload);

/*
 * Walks every page (limit/continue). Items of a list lack kind/apiVersion on
 * the wire; they are filled in before cb sees them. On success *rv_out (when
 * not NULL) receives the list's resourceVersion (caller frees).
 */
int st_kube_list_pages(char **rv_out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                       const char *ns, const struct st_kube_list_options *opts, st_kube_page_cb cb,
                       void *payload, struct st_err *err) ST_WARN_UNUSED;
int st_kube_list_items(char **rv_out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                       const char *ns, const struct st_kube_list_options *opts, st_kube_item_cb cb,
                       void *payload, struct st_err *err) ST_WARN_UNUSED;

enum st_kube_event_type {
	ST_KUBE_EVENT_ADDED = 0,
	ST_KUBE_EVENT_MODIFIED,
	ST_KUBE_EVENT_DELETED,
	ST_KUBE_EVENT_BOOKMARK,
	ST_KUBE_EVENT_RELIST, /* obj NULL: the state is being listed again; ADDED follow */
	ST_KUBE_EVENT_SYNCED, /* obj NULL: a list has been delivered completely */
};

/* Borrowed obj; return 0 to go on, > 0 to stop cleanly, < 0 to fail with that code. */
typedef int (*st_kube_event_cb)(enum st_kube_event_type type, struct json_object *obj,
                                void *payload);

struct st_kube_watch_options {
	const char *label_selector;
	const char *field_selector;
	/*
	 * NULL: list first (each item delivered as ADDED, then SYNCED) and watch
	 * from the list's version. Otherwise watch from this version.
	 */
	const char *resource_version;
	unsigned timeout_s;        /* server-side timeout per connection; 0: 300 */
	const atomic_bool *cancel; /* stop when it becomes true; NULL: never */
	uint64_t duration_ms;      /* stop after this long; 0: never */
	bool bookmarks;            /* ask for BOOKMARK events */
};
#define ST_KUBE_WATCH_OPTIONS_INIT                 \
	{                                          \
		NULL, NULL, NULL, 0, NULL, 0, true \
	}

/* Names used on the wire ("ADDED", ...). */
const char *st_kube_event_name(enum st_kube_event_type t);

/*
 * Watches gvr in ns (NULL/"": all namespaces), reconnecting after EOF,
 * timeouts and transient errors from the last resourceVersion seen, and
 * relisting (RELIST, ADDED..., SYNCED) when the server answers 410 Gone.
 * Returns 0 when cb returned > 0, the cancel flag was set or the duration
 * elapsed; a negative code when cb failed or the server keeps refusing (e.g.
 * 403, 404). Blocks the calling thread.
 */
int st_kube_watch(struct st_kube_client *c, const struct st_kube_gvr *gvr, const char *ns,
                  const struct st_kube_watch_options *opts, st_kube_event_cb cb, void *payload,
                  struct st_err *err) ST_WARN_UNUSED;

/* ---- raw requests ----------------------------------------------------------------------- */

/*
 * Any request: method, path (already escaped, starting with '/'), query
 * (already encoded, without '?'; NULL for none), body with content type (NULL
 * for none). *out receives the decoded JSON response (NULL for an empty body).
 */
int st_kube_request(struct json_object **out, struct st_kube_client *c, const char *method,
                    const char *path, const char *query, const char *content_type, const char *body,
                    size_t body_len, long *http_out, struct st_err *err) ST_WARN_UNUSED;

#endif
