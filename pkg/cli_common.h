/*
 * What the stasis command-line verbs share: the flags every verb that talks
 * to the cluster accepts (--kubeconfig, --context, -n/--namespace for the
 * install namespace, -o), the connection to the API server with errors that
 * name the problem and its fix, the stasis.io resource types, create-or-patch
 * ("apply"), and small parsers for comma lists and key=value lists.
 *
 * The install namespace defaults to $STASIS_NAMESPACE, then "stasis".
 * Messages go to stderr prefixed with "stasis <verb>: ". Exit statuses:
 * ST_CLI_EXIT_OK (0), ST_CLI_EXIT_FAIL (1), ST_CLI_EXIT_USAGE (2).
 */
#ifndef ST_PKG_CLI_COMMON_H
#define ST_PKG_CLI_COMMON_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "pkg/cli_output.h"
#include "pkg/kube.h"
#include "pkg/util/err.h"

#define ST_CLI_EXIT_OK    0
#define ST_CLI_EXIT_FAIL  1
#define ST_CLI_EXIT_USAGE 2

#define ST_CLI_DEFAULT_NAMESPACE "stasis"
#define ST_CLI_GROUP             "stasis.io"
#define ST_CLI_VERSION           "v1alpha1"
#define ST_CLI_API_VERSION       "stasis.io/v1alpha1"
/* Annotation that asks the controller to delete a backup and its stored objects. */
#define ST_CLI_DELETE_ANNOTATION "stasis.io/delete-requested"

/* getopt_long values of the shared long options (above the ASCII range). */
enum {
	ST_CLI_OPT_KUBECONFIG = 0x100,
	ST_CLI_OPT_CONTEXT,
	ST_CLI_OPT_FIRST_FREE, /* verbs number their own long-only options from here */
};

/* The shared options, for a verb's longopts table (followed by its own). */
#define ST_CLI_COMMON_LONGOPTS                                              \
	{ "kubeconfig", required_argument, NULL, ST_CLI_OPT_KUBECONFIG },   \
	        { "context", required_argument, NULL, ST_CLI_OPT_CONTEXT }, \
	        { "namespace", required_argument, NULL, 'n' },              \
	        { "output", required_argument, NULL, 'o' },                 \
	{                                                                   \
		"help", no_argument, NULL, 'h'                              \
	}

/* Per-invocation state of one verb; st_cli_ctx_dispose releases the client. */
struct st_cli_ctx {
	const char *verb;       /* "backup get", for messages */
	const char *kubeconfig; /* borrowed from argv */
	const char *context;
	const char *ns; /* install namespace */
	enum st_cli_output output;
	bool output_set; /* -o was given */
	bool quiet;      /* st_cli_connect only records its failure in why */
	char why[ST_ERR_MSG_SIZE];
	struct st_kube_client *client;
};

/* A verb's own option: 0 when taken, negative when arg is not a valid value. */
typedef int (*st_cli_option_cb)(void *payload, int c, const char *arg);

/* Fills defaults: namespace from $STASIS_NAMESPACE or "stasis", table output. */
void st_cli_ctx_init(struct st_cli_ctx *ctx, const char *verb);
void st_cli_ctx_dispose(struct st_cli_ctx *ctx);

/*
 * Applies a shared option c with argument arg. Returns 1 when c was one of
 * them, 0 when it is the verb's own, or ST_CLI_EXIT_USAGE negated (-2) after
 * printing why the value is bad (a bad -o or namespace).
 */
int st_cli_common_option(struct st_cli_ctx *ctx, int c, const char *arg);

/*
 * Runs getopt_long over argv: shared options go to st_cli_common_option, -h
 * prints usage, every other option to own (which may be NULL). Returns -1
 * when the caller should go on (operands start at optind), else the exit
 * status to return (0 after --help, 2 for a usage error, already reported).
 */
int st_cli_parse_options(struct st_cli_ctx *ctx, int argc, char **argv, const char *shortopts,
                         const struct option *longopts, const char *usage, st_cli_option_cb own,
                         void *payload) ST_WARN_UNUSED;

/*
 * Appends to items (a JSON array) the named objects of gvr in the install
 * namespace, or, with n == 0, every object matching selector (NULL: all).
 * `what` names the type in messages ("backup"). Missing names are reported
 * and skipped (ST_ENOTFOUND is returned after the others were fetched);
 * other failures are reported and returned at once.
 */
int st_cli_fetch(struct st_cli_ctx *ctx, const struct st_kube_gvr *gvr, const char *what,
                 struct json_object *items, char *const *names, int n,
                 const char *selector) ST_WARN_UNUSED;

/*
 * Prints the getopt failure for ch ('?' or ':') at argv[optind - 1] and
 * returns ST_CLI_EXIT_USAGE.
 */
int st_cli_bad_option(const struct st_cli_ctx *ctx, int ch, char *const *argv);

/*
 * Prints "invalid value 'arg' for --name" for option c of longopts and returns
 * ST_CLI_EXIT_USAGE.
 */
int st_cli_bad_value(const struct st_cli_ctx *ctx, const struct option *longopts, int c,
                     const char *arg);

/* Prints "stasis <verb>: <message>\n" to stderr. */
void st_cli_errorf(const struct st_cli_ctx *ctx, const char *fmt, ...) ST_PRINTF(2, 3);

/*
 * Loads the kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster)
 * and creates ctx->client; a context that has a client keeps it (returns 0).
 * On failure prints where it looked and how to fix it, and returns the code.
 */
int st_cli_connect(struct st_cli_ctx *ctx) ST_WARN_UNUSED;

/*
 * Prints a failed API call: for connection and TLS failures the server URL,
 * context and kubeconfig with a hint; otherwise the decoded message. `what`
 * says what was attempted ("get backup x").
 */
void st_cli_kube_error(const struct st_cli_ctx *ctx, const char *what, int rc,
                       const struct st_err *err);

/* The stasis.io types, without discovery. */
void st_cli_gvr_backup(struct st_kube_gvr *gvr);
void st_cli_gvr_bsl(struct st_kube_gvr *gvr);
void st_cli_gvr_schedule(struct st_kube_gvr *gvr);

/*
 * Creates obj, or replaces the existing object by it when it exists (409):
 * a PUT with the current resourceVersion that keeps the status and the
 * Service's assigned cluster IPs, so that running the same apply twice
 * succeeds and leaves exactly obj. *created_out (may be NULL) tells which
 * happened.
 */
int st_cli_apply(bool *created_out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                 struct json_object *obj, struct st_err *err) ST_WARN_UNUSED;

/*
 * Splits "a,b,,c" into a new JSON string array (empty items dropped) and
 * appends to *arr, creating it when NULL. ST_EINVAL when an item has spaces.
 */
int st_cli_parse_list(struct json_object **arr, const char *s) ST_WARN_UNUSED;

/*
 * Appends the items of the list s (as st_cli_parse_list) to the array
 * obj[key], which is created when missing. ST_EINVAL for an item with spaces.
 */
int st_cli_add_list(struct json_object *obj, const char *key, const char *s) ST_WARN_UNUSED;

/* Sets obj[key] to the boolean s (as st_cli_parse_bool); ST_EINVAL for another word. */
int st_cli_add_bool(struct json_object *obj, const char *key, const char *s) ST_WARN_UNUSED;

/*
 * Parses "k=v,k2=v2" into the object *map (created when NULL); later keys
 * override. Values "true"/"false" stay strings. ST_EINVAL for an item without
 * '=' or an empty key.
 */
int st_cli_parse_map(struct json_object **map, const char *s) ST_WARN_UNUSED;

/*
 * Parses a label selector in the command-line form into a LabelSelector
 * object (*out, owned) with pkg/labels.
 */
int st_cli_parse_selector(struct json_object **out, const char *text,
                          struct st_err *err) ST_WARN_UNUSED;

/* Parses "true"/"false" (also empty: true, for --flag without =value). */
int st_cli_parse_bool(bool *out, const char *s) ST_WARN_UNUSED;

/* True when s is a DNS-1123 subdomain (object names), at most 253 characters. */
bool st_cli_valid_name(const char *s);

/* Current time in Unix seconds (wall clock). */
long long st_cli_now(void);

/* One sub-verb of a verb group: "create" of `stasis backup`. */
struct st_cli_sub_verb {
	const char *name;
	int (*run)(struct st_cli_ctx *ctx, int argc, char **argv);
	const char *verb; /* for messages: "backup create" */
};

/*
 * Runs the sub-verb argv[1] of group (e.g. "backup") from verbs (ended by a
 * NULL name) with a fresh context, argv shifted by one. Without a sub-verb
 * prints usage to stderr (exit 2), with -h/--help to stdout (exit 0); an
 * unknown one is reported with the usage (exit 2).
 */
int st_cli_dispatch(const char *group, const char *usage, const struct st_cli_sub_verb *verbs,
                    int argc, char **argv);

/*
 * Asks "Are you sure you want to continue (Y/N)? The <what>[s] <names> <rest>: "
 * on stdout and reads the answer from stdin: true for y/yes.
 */
bool st_cli_confirm(const char *what, int n, char *const *names, const char *rest);

/*
 * A new stasis.io/v1alpha1 object of kind: apiVersion, kind and metadata
 * (name, namespace, and labels, a new reference to `labels`, when not NULL).
 */
struct json_object *st_cli_new_object(const char *kind, const char *name, const char *ns,
                                      struct json_object *labels);

/* Prints obj to stdout as JSON or YAML (ctx->output); returns the exit status. */
int st_cli_print_object(const struct st_cli_ctx *ctx, struct json_object *obj);

/* Writes b to stdout and flushes it; ST_EIO when that fails. */
int st_cli_flush(const struct st_buf *b) ST_WARN_UNUSED;

/*
 * Creates obj (a `what` named name, e.g. "backup") in the install namespace.
 * On failure prints why (an existing name, stasis not installed, or the API
 * error) and returns ST_CLI_EXIT_FAIL; else ST_CLI_EXIT_OK, printing nothing.
 */
int st_cli_create(struct st_cli_ctx *ctx, const struct st_kube_gvr *gvr, const char *what,
                  struct json_object *obj, const char *name) ST_WARN_UNUSED;

/* How `get` and `describe` present one kind of object. */
struct st_cli_kind {
	const char *what;                     /* "backup", for messages */
	void (*gvr)(struct st_kube_gvr *gvr); /* its type */
	int (*table)(struct st_buf *out, struct json_object *items, long long now);
	/* payload: the verb's options, as passed to st_cli_show */
	int (*describe)(struct st_buf *out, struct json_object *obj, void *payload);
};

/*
 * `get` (describe false: table, or JSON/YAML with -o) or `describe` of the
 * named objects (n > 0) or of all matching selector (NULL: all), printed
 * to stdout; payload goes to k->describe. Returns the exit status: 1 when
 * any name was missing or the API failed (reported), else 0.
 */
int st_cli_show(struct st_cli_ctx *ctx, const struct st_cli_kind *k, char *const *names, int n,
                const char *selector, bool describe, void *payload) ST_WARN_UNUSED;

#endif
