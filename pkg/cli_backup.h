/*
 * `stasis backup create|get|describe|logs|delete`: the Backup custom
 * resource from the command line, with Velero's flags and output.
 *
 * create builds a stasis.io/v1alpha1 Backup in the install namespace and,
 * with --wait, follows it with a watch until a terminal phase, printing each
 * change of phase and progress. get prints the table NAME STATUS ERRORS
 * WARNINGS CREATED EXPIRES STORAGE LOCATION SELECTOR or the objects as JSON
 * or YAML. describe prints one backup for people. logs reads
 * backups/<B>/<B>-logs.gz from the backup's storage location (credentials
 * from the location's Secret, or --credentials-file) and prints it
 * decompressed. delete asks the controller to delete a backup by setting the
 * stasis.io/delete-requested annotation, and with --wait waits for the
 * object to disappear.
 */
#ifndef ST_PKG_CLI_BACKUP_H
#define ST_PKG_CLI_BACKUP_H

#include <stdint.h>

#include <json-c/json.h>

#include "pkg/cli_common.h"
#include "pkg/cli_output.h"
#include "pkg/util/buf.h"

/*
 * The flags that describe a Backup spec, shared by `backup create` and
 * `schedule create` (whose template is a Backup spec): getopt values (a
 * verb numbers its own from ST_CLI_BACKUP_OPT_FIRST_FREE), longopts
 * entries, help lines and the parser. -l/--selector is one of them.
 */
enum {
	ST_CLI_BACKUP_OPT_INC_NS = ST_CLI_OPT_FIRST_FREE,
	ST_CLI_BACKUP_OPT_EXC_NS,
	ST_CLI_BACKUP_OPT_INC_RES,
	ST_CLI_BACKUP_OPT_EXC_RES,
	ST_CLI_BACKUP_OPT_CLUSTER,
	ST_CLI_BACKUP_OPT_TTL,
	ST_CLI_BACKUP_OPT_LOCATION,
	ST_CLI_BACKUP_OPT_SNAPSHOT,
	ST_CLI_BACKUP_OPT_METHOD,
	ST_CLI_BACKUP_OPT_KEEP,
	ST_CLI_BACKUP_OPT_FIRST_FREE,
};

#define ST_CLI_BACKUP_SPEC_LONGOPTS                                                              \
	{ "include-namespaces", required_argument, NULL, ST_CLI_BACKUP_OPT_INC_NS },             \
	        { "exclude-namespaces", required_argument, NULL, ST_CLI_BACKUP_OPT_EXC_NS },     \
	        { "include-resources", required_argument, NULL, ST_CLI_BACKUP_OPT_INC_RES },     \
	        { "exclude-resources", required_argument, NULL, ST_CLI_BACKUP_OPT_EXC_RES },     \
	        { "selector", required_argument, NULL, 'l' },                                    \
	        { "include-cluster-resources", optional_argument, NULL,                          \
		  ST_CLI_BACKUP_OPT_CLUSTER },                                                   \
	        { "ttl", required_argument, NULL, ST_CLI_BACKUP_OPT_TTL },                       \
	        { "storage-location", required_argument, NULL, ST_CLI_BACKUP_OPT_LOCATION },     \
	        { "snapshot-volumes", optional_argument, NULL, ST_CLI_BACKUP_OPT_SNAPSHOT },     \
	        { "volume-snapshot-method", required_argument, NULL, ST_CLI_BACKUP_OPT_METHOD }, \
	{                                                                                        \
		"keep-volume-snapshots", optional_argument, NULL, ST_CLI_BACKUP_OPT_KEEP         \
	}

#define ST_CLI_BACKUP_SPEC_HELP                                                                  \
	"  --include-namespaces LIST     namespaces to back up (comma-separated, '*' for all)\n" \
	"  --exclude-namespaces LIST     namespaces to leave out\n"                              \
	"  --include-resources LIST      resources to back up (e.g. deployments,pvc)\n"          \
	"  --exclude-resources LIST      resources to leave out\n"                               \
	"  -l, --selector SELECTOR       only objects whose labels match (app=nginx,tier!=db)\n" \
	"  --include-cluster-resources[=true|false]\n"                                           \
	"                                cluster-scoped resources (default: those the\n"         \
	"                                namespaced ones need)\n"                                \
	"  --ttl DURATION                how long to keep the backup (default 720h0m0s)\n"       \
	"  --storage-location NAME       backup storage location (default: the default one)\n"   \
	"  --snapshot-volumes[=true|false]  take volume snapshots\n"                             \
	"  --volume-snapshot-method csi|none\n"                                                  \
	"                                how claims are cut (a claim's "                         \
	"stasis.io/snapshot-method\n"                                                            \
	"                                annotation wins); none backs up no volume data\n"       \
	"  --keep-volume-snapshots[=true|false]\n"                                               \
	"                                keep the CSI VolumeSnapshots after the data is moved\n"

/* A Backup spec being assembled from flags; st_cli_backup_spec_dispose releases it. */
struct st_cli_backup_spec {
	struct json_object *spec; /* owned */
	int64_t ttl;              /* seconds; 720h unless --ttl */
};

void st_cli_backup_spec_init(struct st_cli_backup_spec *s);
void st_cli_backup_spec_dispose(struct st_cli_backup_spec *s);

/*
 * Applies option c (a ST_CLI_BACKUP_OPT_* value or 'l') with argument arg.
 * Returns 0 when taken, 1 when c is not a spec flag, negative when arg is
 * not a valid value for it.
 */
int st_cli_backup_spec_option(struct st_cli_backup_spec *s, int c, const char *arg);

/* The spec with its ttl written in Go's form; a new reference the caller puts. */
struct json_object *st_cli_backup_spec_build(const struct st_cli_backup_spec *s);

/* Appends the first lines of `describe`: Name, Namespace, Labels, Annotations of obj. */
int st_cli_backup_describe_meta(struct st_buf *out, struct json_object *obj) ST_WARN_UNUSED;

/*
 * Appends "title:", then each string of arr on a line of its own, indented,
 * and an empty line; nothing when arr is NULL or empty.
 */
int st_cli_backup_describe_list(struct st_buf *out, const char *title,
                                struct json_object *arr) ST_WARN_UNUSED;

/*
 * Appends the `describe` text of a Backup spec: scope, selector, storage
 * location, snapshot settings and TTL.
 */
int st_cli_backup_describe_spec(struct st_buf *out, struct json_object *spec) ST_WARN_UNUSED;

/*
 * argv[0] is "backup", argv[1] the sub-verb. Returns the process exit status
 * (0 success, 1 failure or a backup that did not complete, 2 usage).
 */
int st_cli_backup_main(int argc, char **argv);

/* Usage text of `stasis backup`. */
extern const char st_cli_backup_usage[];

/*
 * Appends the `backup get` table for items (an array of Backup objects,
 * borrowed), with EXPIRES relative to now (Unix seconds).
 */
int st_cli_backup_table(struct st_buf *out, struct json_object *items,
                        long long now) ST_WARN_UNUSED;

/* Appends the `backup describe` text of one Backup (details: freeze windows and all status). */
int st_cli_backup_describe(struct st_buf *out, struct json_object *backup,
                           int details) ST_WARN_UNUSED;

/* The STATUS cell of a Backup: phase, "New" when unset, "Deleting" when asked, error count. */
void st_cli_backup_status(char *buf, size_t size, struct json_object *backup);

/*
 * Appends ", volumes D/T, N MiB <verb> at R MiB/s" to line (a --wait line)
 * when status.volumeProgress (vp) counts volumes.
 */
void st_cli_volume_progress(char *line, size_t size, struct json_object *vp, const char *verb);

/* How `create --wait` follows one kind of object to its final phase. */
struct st_cli_wait {
	const char *kind;        /* "Backup": the start of each line */
	const char *verb;        /* "backup": in messages and the commands suggested */
	const char *items_key;   /* status.progress member counting items done */
	const char *items_text;  /* "items backed up" */
	const char *volume_verb; /* "sent" or "read" (volume progress) */
};

/*
 * Watches object name of gvr in ctx->ns until its phase is final (or the
 * timeout, in seconds, passes; 0: none), printing a line at each change of
 * progress. Returns the exit status: ST_CLI_EXIT_OK only for Completed.
 */
int st_cli_wait_finished(struct st_cli_ctx *ctx, const struct st_kube_gvr *gvr, const char *name,
                         int64_t timeout, const struct st_cli_wait *how) ST_WARN_UNUSED;

#endif
