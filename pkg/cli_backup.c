#include "pkg/cli_backup.h"

#include <getopt.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pkg/cli_common.h"
#include "pkg/cli_store.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

#define DEFAULT_TTL_SECS (720LL * 3600)
/* Default bound of --wait for `backup delete`. */
#define DELETE_WAIT_SECS 600
#define CELL             512

const char st_cli_backup_usage[] =
        "Usage: stasis backup VERB [options]\n"
        "\n"
        "Verbs:\n"
        "  create NAME     create a backup\n"
        "  get [NAME...]   list backups (-o table|json|yaml)\n"
        "  describe NAME   show one backup in detail\n"
        "  logs NAME       print the backup's log from its storage location\n"
        "  delete NAME     delete a backup and its stored data\n"
        "\n"
        "Options every verb takes:\n"
        "  --kubeconfig FILE    kubeconfig (default $KUBECONFIG, ~/.kube/config, then\n"
        "                       the in-cluster service account)\n"
        "  --context NAME       kubeconfig context (default its current-context)\n"
        "  -n, --namespace NS   namespace stasis is installed in (default $STASIS_NAMESPACE,\n"
        "                       then stasis)\n"
        "  -h, --help           show the help of a verb\n"
        "\n"
        "Run 'stasis backup VERB --help' for the options of a verb.\n";

static const char create_usage[] =
        "Usage: stasis backup create NAME [options]\n"
        "\n"
        "Creates a Backup. Without filters every namespace and resource is included.\n"
        "\n"
        "Options:\n" ST_CLI_BACKUP_SPEC_HELP
        "  --labels K=V,...              labels of the Backup object itself\n"
        "  --wait                        wait for the backup to finish, showing progress;\n"
        "                                exit status 0 only when it Completed\n"
        "  --timeout DURATION            bound of --wait (default: none)\n"
        "  -o, --output json|yaml        print the Backup instead of creating it\n"
        "  plus --kubeconfig, --context, -n (see 'stasis backup --help')\n";

static const char get_usage[] =
        "Usage: stasis backup get [NAME...] [options]\n"
        "\n"
        "Lists backups: NAME STATUS ERRORS WARNINGS CREATED EXPIRES STORAGE LOCATION SELECTOR.\n"
        "\n"
        "Options:\n"
        "  -o, --output FORMAT     table (default), json or yaml\n"
        "  -l, --selector SELECTOR only backups whose labels match\n"
        "  plus --kubeconfig, --context, -n (see 'stasis backup --help')\n";

static const char describe_usage[] =
        "Usage: stasis backup describe NAME... [--details]\n"
        "\n"
        "Shows a backup: phase, scope, selector, TTL, storage location, times, errors,\n"
        "warnings and progress. --details adds the per-pod freeze windows and the whole\n"
        "status.\n";

static const char logs_usage[] =
        "Usage: stasis backup logs NAME [--credentials-file FILE]\n"
        "\n"
        "Prints the backup's log, read from backups/NAME/NAME-logs.gz in its storage\n"
        "location. The store's credentials come from the Secret the location names (read\n"
        "through the API), or from --credentials-file (AWS credentials format).\n";

static const char delete_usage[] =
        "Usage: stasis backup delete NAME... [--confirm] [--wait]\n"
        "\n"
        "Asks the controller to delete the backups: their objects in the storage location,\n"
        "then the Backup objects. Without --confirm it asks first.\n"
        "\n"
        "Options:\n"
        "  --confirm           do not ask\n"
        "  --wait              wait until the Backup objects are gone\n"
        "  --timeout DURATION  bound of --wait (default 10m)\n";

/* ---- presentation ------------------------------------------------------------------------ */

static const char *str_or(const char *s, const char *dflt)
{
	return s != NULL ? s : dflt;
}

void st_cli_backup_status(char *buf, size_t size, struct json_object *backup)
{
	struct json_object *status = st_json_get_obj(backup, "status");
	struct json_object *meta = st_json_get_obj(backup, "metadata");
	const char *phase = st_json_get_str(status, "phase");
	const char *ann =
	        st_json_get_str(st_json_get_obj(meta, "annotations"), ST_CLI_DELETE_ANNOTATION);
	int errors = json_object_get_int(st_json_get(status, "errors"));

	if (phase == NULL || phase[0] == '\0')
		phase = "New";
	if (st_json_get_str(meta, "deletionTimestamp") != NULL ||
	    (ann != NULL && strcmp(ann, "true") == 0))
		phase = "Deleting";
	if (strcmp(phase, "PartiallyFailed") == 0)
		(void)snprintf(buf, size, "%s (%d error%s)", phase, errors, errors == 1 ? "" : "s");
	else
		(void)snprintf(buf, size, "%s", phase);
}

static const char *const table_headers[] = { "NAME",    "STATUS",  "ERRORS",           "WARNINGS",
	                                     "CREATED", "EXPIRES", "STORAGE LOCATION", "SELECTOR" };

static void backup_row(struct st_cli_table *t, struct json_object *b, long long now)
{
	struct json_object *spec = st_json_get_obj(b, "spec");
	struct json_object *status = st_json_get_obj(b, "status");
	struct json_object *meta = st_json_get_obj(b, "metadata");
	const char *started = st_json_get_str(status, "startTimestamp");
	const char *expiration = st_json_get_str(status, "expiration");
	char phase[64], errs[16], warns[16], created[64], expires[32], sel[CELL];
	const char *cells[8];
	int64_t exp = 0;

	st_cli_backup_status(phase, sizeof(phase), b);
	(void)snprintf(errs, sizeof(errs), "%d",
	               json_object_get_int(st_json_get(status, "errors")));
	(void)snprintf(warns, sizeof(warns), "%d",
	               json_object_get_int(st_json_get(status, "warnings")));
	/* Velero shows the start time; a backup not started yet shows its creation. */
	st_cli_time_show(created, sizeof(created),
	                 started != NULL ? started : st_json_get_str(meta, "creationTimestamp"));
	if (expiration == NULL || st_cli_time_parse(&exp, expiration) < 0)
		exp = 0;
	st_cli_time_from_now(expires, sizeof(expires), exp, now);
	st_cli_selector_format(sel, sizeof(sel), st_json_get_obj(spec, "labelSelector"));
	cells[0] = st_json_get_str(meta, "name");
	cells[1] = phase;
	cells[2] = errs;
	cells[3] = warns;
	cells[4] = created;
	cells[5] = expires;
	cells[6] = st_json_get_str(spec, "storageLocation");
	cells[7] = sel;
	st_cli_table_add(t, cells);
}

int st_cli_backup_table(struct st_buf *out, struct json_object *items, long long now)
{
	return st_cli_table_print(out, table_headers, 8, items, backup_row, now);
}

/* "key=value" lines of a string map, indented, or "<none>". */
static int describe_map(struct st_buf *out, const char *title, struct json_object *map)
{
	bool first = true;
	int rc;

	if ((rc = st_buf_printf(out, "%-14s", title)) < 0)
		return rc;
	if (map == NULL || json_object_object_length(map) == 0)
		return st_buf_puts(out, "<none>\n");
	json_object_object_foreach(map, k, v)
	{
		rc = st_buf_printf(out, "%s%s=%s\n", first ? "" : "              ", k,
		                   json_object_get_string(v));
		if (rc < 0)
			return rc;
		first = false;
	}
	return 0;
}

static int describe_scope(struct st_buf *out, struct json_object *spec)
{
	struct json_object *icr = st_json_get(spec, "includeClusterResources");
	char inc[CELL], exc[CELL], sel[CELL], rinc[CELL], rexc[CELL];

	st_cli_join(inc, sizeof(inc), st_json_get_arr(spec, "includedNamespaces"), "*");
	st_cli_join(exc, sizeof(exc), st_json_get_arr(spec, "excludedNamespaces"), "<none>");
	st_cli_join(rinc, sizeof(rinc), st_json_get_arr(spec, "includedResources"), "*");
	st_cli_join(rexc, sizeof(rexc), st_json_get_arr(spec, "excludedResources"), "<none>");
	st_cli_selector_format(sel, sizeof(sel), st_json_get_obj(spec, "labelSelector"));
	return st_buf_printf(out,
	                     "Namespaces:\n  Included:  %s\n  Excluded:  %s\n\n"
	                     "Resources:\n  Included:        %s\n  Excluded:        %s\n"
	                     "  Cluster-scoped:  %s\n\n"
	                     "Label selector:  %s\n\n",
	                     inc, exc, rinc, rexc,
	                     icr == NULL || json_object_get_type(icr) != json_type_boolean ? "auto"
	                     : json_object_get_boolean(icr) ? "included"
	                                                    : "excluded",
	                     sel);
}

int st_cli_backup_describe_spec(struct st_buf *out, struct json_object *spec)
{
	struct json_object *snap = st_json_get(spec, "snapshotVolumes");
	const char *loc = st_json_get_str(spec, "storageLocation");
	const char *ttl = st_json_get_str(spec, "ttl");
	const char *method = st_json_get_str(spec, "volumeSnapshotMethod");
	int rc;

	if ((rc = describe_scope(out, spec)) < 0)
		return rc;
	return st_buf_printf(out,
	                     "Storage Location:  %s\n\n"
	                     "Snapshot Volumes:  %s (method %s)\n\n"
	                     "TTL:  %s\n\n",
	                     loc != NULL ? loc : "<default>",
	                     snap == NULL                    ? "auto"
	                     : json_object_get_boolean(snap) ? "true"
	                                                     : "false",
	                     method != NULL ? method : "csi", ttl != NULL ? ttl : "720h0m0s");
}

int st_cli_backup_describe_list(struct st_buf *out, const char *title, struct json_object *arr)
{
	size_t i;
	int rc;

	if (arr == NULL || json_object_array_length(arr) == 0)
		return 0;
	if ((rc = st_buf_printf(out, "%s:\n", title)) < 0)
		return rc;
	for (i = 0; i < json_object_array_length(arr); i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(arr, i));

		if ((rc = st_buf_printf(out, "  %s\n", s != NULL ? s : "")) < 0)
			return rc;
	}
	return st_buf_putc(out, '\n');
}

static int describe_status(struct st_buf *out, struct json_object *status)
{
	struct json_object *progress = st_json_get_obj(status, "progress");
	const char *reason = st_json_get_str(status, "failureReason");
	char started[64], completed[64], expiration[64];
	int rc;

	st_cli_time_show(started, sizeof(started), st_json_get_str(status, "startTimestamp"));
	st_cli_time_show(completed, sizeof(completed),
	                 st_json_get_str(status, "completionTimestamp"));
	st_cli_time_show(expiration, sizeof(expiration), st_json_get_str(status, "expiration"));
	if (reason != NULL && reason[0] != '\0' &&
	    (rc = st_buf_printf(out, "Failure reason:  %s\n\n", reason)) < 0)
		return rc;
	if ((rc = st_cli_backup_describe_list(out, "Validation errors",
	                                      st_json_get_arr(status, "validationErrors"))) < 0)
		return rc;
	if ((rc = st_buf_printf(out, "Started:    %s\nCompleted:  %s\n\nExpiration:  %s\n\n",
	                        started, completed, expiration)) < 0)
		return rc;
	if (progress == NULL)
		return 0;
	return st_buf_printf(out,
	                     "Total items to be backed up:  %d\nItems backed up:              %d\n",
	                     json_object_get_int(st_json_get(progress, "totalItems")),
	                     json_object_get_int(st_json_get(progress, "itemsBackedUp")));
}

/* Per-pod freeze windows (status.freezeWindows), when the controller records them. */
static int describe_freezes(struct st_buf *out, struct json_object *status)
{
	struct json_object *w = st_json_get_arr(status, "freezeWindows");
	size_t i;
	int rc;

	if (w == NULL || json_object_array_length(w) == 0)
		return st_buf_puts(out, "\nFreeze windows:  <none>\n");
	if ((rc = st_buf_puts(out, "\nFreeze windows:\n")) < 0)
		return rc;
	for (i = 0; i < json_object_array_length(w); i++) {
		struct json_object *e = json_object_array_get_idx(w, i);
		const char *ns = st_json_get_str(e, "namespace");
		const char *pod = st_json_get_str(e, "pod");
		struct json_object *ms = st_json_get(e, "durationMs");

		rc = st_buf_printf(out, "  %s/%s: frozen %s, thawed %s", ns ? ns : "?",
		                   pod ? pod : "?", str_or(st_json_get_str(e, "frozenAt"), "?"),
		                   str_or(st_json_get_str(e, "thawedAt"), "?"));
		if (rc == 0 && ms != NULL)
			rc = st_buf_printf(out, " (%lld ms)", (long long)json_object_get_int64(ms));
		if (rc < 0 || (rc = st_buf_putc(out, '\n')) < 0)
			return rc;
	}
	return 0;
}

/* Per-claim volume data (status.volumes). */
static int describe_volumes(struct st_buf *out, struct json_object *status)
{
	struct json_object *v = st_json_get_arr(status, "volumes");
	size_t i;
	int rc;

	if (v == NULL || json_object_array_length(v) == 0)
		return 0;
	if ((rc = st_buf_puts(out, "\nVolumes:\n")) < 0)
		return rc;
	for (i = 0; i < json_object_array_length(v); i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		const char *msg = st_json_get_str(e, "message");
		const char *snap = st_json_get_str(e, "repositorySnapshot");

		rc = st_buf_printf(out, "  %s/%s: %s, method %s",
		                   str_or(st_json_get_str(e, "namespace"), "?"),
		                   str_or(st_json_get_str(e, "persistentVolumeClaim"), "?"),
		                   str_or(st_json_get_str(e, "phase"), "?"),
		                   str_or(st_json_get_str(e, "method"), "?"));
		if (rc == 0 && snap != NULL)
			rc = st_buf_printf(
			        out, ", %lld bytes (%lld new), snapshot %.12s",
			        (long long)json_object_get_int64(st_json_get(e, "bytes")),
			        (long long)json_object_get_int64(st_json_get(e, "bytesNew")), snap);
		if (rc == 0 && st_json_get_str(e, "volumeSnapshot") != NULL)
			rc = st_buf_printf(out, ", VolumeSnapshot %s kept",
			                   st_json_get_str(e, "volumeSnapshot"));
		if (rc == 0 && msg != NULL)
			rc = st_buf_printf(out, ": %s", msg);
		if (rc < 0 || (rc = st_buf_putc(out, '\n')) < 0)
			return rc;
	}
	return 0;
}

int st_cli_backup_describe_meta(struct st_buf *out, struct json_object *obj)
{
	struct json_object *meta = st_json_get_obj(obj, "metadata");
	int rc;

	if ((rc = st_buf_printf(out, "Name:         %s\nNamespace:    %s\n",
	                        str_or(st_json_get_str(meta, "name"), ""),
	                        str_or(st_json_get_str(meta, "namespace"), ""))) < 0 ||
	    (rc = describe_map(out, "Labels:", st_json_get_obj(meta, "labels"))) < 0)
		return rc;
	return describe_map(out, "Annotations:", st_json_get_obj(meta, "annotations"));
}

int st_cli_backup_describe(struct st_buf *out, struct json_object *backup, int details)
{
	struct json_object *status = st_json_get_obj(backup, "status");
	char phase[64];
	int rc;

	st_cli_backup_status(phase, sizeof(phase), backup);
	if ((rc = st_cli_backup_describe_meta(out, backup)) < 0)
		return rc;
	if ((rc = st_buf_printf(out, "\nPhase:  %s\n\nErrors:    %d\nWarnings:  %d\n\n", phase,
	                        json_object_get_int(st_json_get(status, "errors")),
	                        json_object_get_int(st_json_get(status, "warnings")))) < 0)
		return rc;
	if ((rc = st_cli_backup_describe_spec(out, st_json_get_obj(backup, "spec"))) < 0 ||
	    (rc = describe_status(out, status)) < 0)
		return rc;
	if (!details)
		return 0;
	if ((rc = describe_freezes(out, status)) < 0 || (rc = describe_volumes(out, status)) < 0)
		return rc;
	if (status == NULL)
		return 0;
	if ((rc = st_buf_puts(out, "\nStatus:\n")) < 0)
		return rc;
	return st_cli_output_object(out, status, ST_CLI_OUTPUT_YAML);
}

/* ---- verbs ------------------------------------------------------------------------------- */

/* Options of `backup create`, gathered before the object is built. */
struct create_args {
	struct st_cli_backup_spec s;
	struct json_object *labels; /* --labels, NULL when none */
	bool wait;
	int64_t timeout;
};

enum {
	OPT_WAIT = ST_CLI_BACKUP_OPT_FIRST_FREE,
	OPT_TIMEOUT,
	OPT_DETAILS,
	OPT_CREDS,
	OPT_CONFIRM,
	OPT_LABELS,
};

void st_cli_backup_spec_init(struct st_cli_backup_spec *s)
{
	s->spec = json_object_new_object();
	s->ttl = DEFAULT_TTL_SECS;
}

void st_cli_backup_spec_dispose(struct st_cli_backup_spec *s)
{
	if (s == NULL)
		return;
	json_object_put(s->spec);
	s->spec = NULL;
}

int st_cli_backup_spec_option(struct st_cli_backup_spec *s, int c, const char *arg)
{
	struct json_object *sel = NULL;

	switch (c) {
	case ST_CLI_BACKUP_OPT_INC_NS:
		return st_cli_add_list(s->spec, "includedNamespaces", arg);
	case ST_CLI_BACKUP_OPT_EXC_NS:
		return st_cli_add_list(s->spec, "excludedNamespaces", arg);
	case ST_CLI_BACKUP_OPT_INC_RES:
		return st_cli_add_list(s->spec, "includedResources", arg);
	case ST_CLI_BACKUP_OPT_EXC_RES:
		return st_cli_add_list(s->spec, "excludedResources", arg);
	case 'l':
		if (st_cli_parse_selector(&sel, arg, NULL) < 0)
			return ST_EINVAL;
		json_object_object_add(s->spec, "labelSelector", sel);
		return 0;
	case ST_CLI_BACKUP_OPT_CLUSTER:
		return st_cli_add_bool(s->spec, "includeClusterResources", arg);
	case ST_CLI_BACKUP_OPT_TTL:
		return st_cli_duration_parse(&s->ttl, arg);
	case ST_CLI_BACKUP_OPT_LOCATION:
		if (!st_cli_valid_name(arg))
			return ST_EINVAL;
		st_json_add_str(s->spec, "storageLocation", arg);
		return 0;
	case ST_CLI_BACKUP_OPT_SNAPSHOT:
		return st_cli_add_bool(s->spec, "snapshotVolumes", arg);
	case ST_CLI_BACKUP_OPT_METHOD:
		if (strcmp(arg, "csi") != 0 && strcmp(arg, "none") != 0)
			return ST_EINVAL;
		st_json_add_str(s->spec, "volumeSnapshotMethod", arg);
		return 0;
	case ST_CLI_BACKUP_OPT_KEEP:
		return st_cli_add_bool(s->spec, "keepVolumeSnapshots", arg);
	default:
		return 1;
	}
}

struct json_object *st_cli_backup_spec_build(const struct st_cli_backup_spec *s)
{
	char buf[64];

	st_cli_duration_format(buf, sizeof(buf), s->ttl);
	st_json_add_str(s->spec, "ttl", buf);
	return json_object_get(s->spec);
}

static int create_option(void *payload, int c, const char *arg)
{
	struct create_args *a = payload;
	int rc = st_cli_backup_spec_option(&a->s, c, arg);

	if (rc <= 0)
		return rc;
	switch (c) {
	case OPT_WAIT:
		a->wait = true;
		return 0;
	case OPT_TIMEOUT:
		return st_cli_duration_parse(&a->timeout, arg);
	case OPT_LABELS:
		return st_cli_parse_map(&a->labels, arg);
	default:
		return ST_EINVAL;
	}
}

static struct json_object *new_backup(const char *name, const char *ns, const struct create_args *a)
{
	struct json_object *o = st_cli_new_object("Backup", name, ns, a->labels);

	json_object_object_add(o, "spec", st_cli_backup_spec_build(&a->s));
	return o;
}

void st_cli_volume_progress(char *line, size_t size, struct json_object *vp, const char *verb)
{
	size_t n = strlen(line);
	double mib = (double)json_object_get_int64(st_json_get(vp, "bytesTransferred")) / 1048576.0;
	double rate = (double)json_object_get_int64(st_json_get(vp, "bytesPerSecond")) / 1048576.0;

	if (vp == NULL || json_object_get_int(st_json_get(vp, "totalVolumes")) == 0 || n >= size)
		return;
	(void)snprintf(line + n, size - n, ", volumes %d/%d, %.1f MiB %s at %.1f MiB/s",
	               json_object_get_int(st_json_get(vp, "volumesDone")),
	               json_object_get_int(st_json_get(vp, "totalVolumes")), mib, verb, rate);
}

/* State of `create --wait` across watch events. */
struct wait_state {
	const struct st_cli_wait *how;
	const char *name;
	char last[256];
	char phase[32];
	char reason[CELL];
	int errors;
	int warnings;
};

static bool terminal_phase(const char *p)
{
	return strcmp(p, "Completed") == 0 || strcmp(p, "PartiallyFailed") == 0 ||
	       strcmp(p, "Failed") == 0 || strcmp(p, "FailedValidation") == 0;
}

static int wait_event(enum st_kube_event_type type, struct json_object *obj, void *payload)
{
	struct wait_state *w = payload;
	struct json_object *status = st_json_get_obj(obj, "status");
	struct json_object *progress = st_json_get_obj(status, "progress");
	const char *phase = st_json_get_str(status, "phase");
	const char *reason = st_json_get_str(status, "failureReason");
	struct json_object *verrs = st_json_get_arr(status, "validationErrors");
	char line[256];

	if (type == ST_KUBE_EVENT_DELETED) {
		(void)snprintf(w->phase, sizeof(w->phase), "Deleted");
		return 1;
	}
	if (type != ST_KUBE_EVENT_ADDED && type != ST_KUBE_EVENT_MODIFIED)
		return 0;
	if (phase == NULL || phase[0] == '\0')
		phase = "New";
	(void)snprintf(line, sizeof(line), "%s: %d/%d %s", phase,
	               json_object_get_int(st_json_get(progress, w->how->items_key)),
	               json_object_get_int(st_json_get(progress, "totalItems")),
	               w->how->items_text);
	st_cli_volume_progress(line, sizeof(line), st_json_get_obj(status, "volumeProgress"),
	                       w->how->volume_verb);
	if (strcmp(line, w->last) != 0) {
		printf("%s %s %s\n", w->how->kind, w->name, line);
		(void)fflush(stdout);
		(void)snprintf(w->last, sizeof(w->last), "%s", line);
	}
	(void)snprintf(w->phase, sizeof(w->phase), "%s", phase);
	w->errors = json_object_get_int(st_json_get(status, "errors"));
	w->warnings = json_object_get_int(st_json_get(status, "warnings"));
	if (reason != NULL)
		(void)snprintf(w->reason, sizeof(w->reason), "%s", reason);
	else if (verrs != NULL && json_object_array_length(verrs) > 0)
		st_cli_join(w->reason, sizeof(w->reason), verrs, "");
	return terminal_phase(phase) ? 1 : 0;
}

int st_cli_wait_finished(struct st_cli_ctx *ctx, const struct st_kube_gvr *gvr, const char *name,
                         int64_t timeout, const struct st_cli_wait *how)
{
	struct st_kube_watch_options o = ST_KUBE_WATCH_OPTIONS_INIT;
	struct wait_state w;
	struct st_err err = ST_ERR_INIT;
	char field[320];
	char what[64];
	int rc;

	memset(&w, 0, sizeof(w));
	w.how = how;
	w.name = name;
	(void)snprintf(field, sizeof(field), "metadata.name=%s", name);
	o.field_selector = field;
	o.duration_ms = (uint64_t)timeout * 1000u;
	printf("Waiting for %s to complete. You may safely press ctrl-c to stop waiting - "
	       "your %s will continue in the background.\n",
	       how->verb, how->verb);
	(void)fflush(stdout);
	if ((rc = st_kube_watch(ctx->client, gvr, ctx->ns, &o, wait_event, &w, &err)) < 0) {
		(void)snprintf(what, sizeof(what), "watch %s", how->verb);
		st_cli_kube_error(ctx, what, rc, &err);
		return ST_CLI_EXIT_FAIL;
	}
	if (!terminal_phase(w.phase)) {
		st_cli_errorf(ctx, "%s %s is still %s after the --timeout", how->verb, name,
		              w.phase[0] ? w.phase : "New");
		return ST_CLI_EXIT_FAIL;
	}
	printf("%s completed with status: %s. You may check for more information using the "
	       "commands `stasis %s describe %s` and `stasis %s logs %s`.\n",
	       how->kind, w.phase, how->verb, name, how->verb, name);
	if (strcmp(w.phase, "Completed") == 0)
		return ST_CLI_EXIT_OK;
	(void)fprintf(stderr, "%s %s: %s (%d errors, %d warnings)%s%s\n", how->kind, name, w.phase,
	              w.errors, w.warnings, w.reason[0] ? ": " : "", w.reason);
	return ST_CLI_EXIT_FAIL;
}

static int wait_backup(struct st_cli_ctx *ctx, const char *name, int64_t timeout)
{
	static const struct st_cli_wait how = { "Backup", "backup", "itemsBackedUp",
		                                "items backed up", "sent" };
	struct st_kube_gvr gvr;

	st_cli_gvr_backup(&gvr);
	return st_cli_wait_finished(ctx, &gvr, name, timeout, &how);
}

static int create_submit(struct st_cli_ctx *ctx, struct json_object *obj, const char *name)
{
	struct st_kube_gvr gvr;

	st_cli_gvr_backup(&gvr);
	if (st_cli_create(ctx, &gvr, "backup", obj, name) != ST_CLI_EXIT_OK)
		return ST_CLI_EXIT_FAIL;
	printf("Backup request \"%s\" submitted successfully.\n", name);
	fflush(stdout);
	return ST_CLI_EXIT_OK;
}

static int backup_create(struct st_cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		ST_CLI_COMMON_LONGOPTS,
		ST_CLI_BACKUP_SPEC_LONGOPTS,
		{ "wait", no_argument, NULL, OPT_WAIT },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "labels", required_argument, NULL, OPT_LABELS },
		{ NULL, 0, NULL, 0 },
	};
	struct create_args a = { .labels = NULL };
	struct json_object *obj = NULL;
	const char *name;
	int rc;

	st_cli_backup_spec_init(&a.s);
	rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:l:", longopts, create_usage,
	                          create_option, &a);
	if (rc >= 0)
		goto out;
	rc = ST_CLI_EXIT_USAGE;
	if (optind + 1 != argc) {
		st_cli_errorf(ctx, "exactly one backup NAME is needed");
		goto out;
	}
	name = argv[optind];
	if (!st_cli_valid_name(name)) {
		st_cli_errorf(ctx,
		              "invalid backup name '%s' (lower-case letters, digits, '-' "
		              "and '.', at most 253)",
		              name);
		goto out;
	}
	obj = new_backup(name, ctx->ns, &a);
	if (ctx->output_set && ctx->output != ST_CLI_OUTPUT_TABLE) {
		rc = st_cli_print_object(ctx, obj);
		goto out;
	}
	if ((rc = create_submit(ctx, obj, name)) != ST_CLI_EXIT_OK)
		goto out;
	if (!a.wait) {
		printf("Run `stasis backup describe %s` or `stasis backup logs %s` for more "
		       "details.\n",
		       name, name);
		goto out;
	}
	rc = wait_backup(ctx, name, a.timeout);
out:
	json_object_put(obj);
	st_cli_backup_spec_dispose(&a.s);
	json_object_put(a.labels);
	return rc;
}

static int fetch_backups(struct st_cli_ctx *ctx, struct json_object *items, char **names, int n,
                         const char *selector)
{
	struct st_kube_gvr gvr;

	st_cli_gvr_backup(&gvr);
	return st_cli_fetch(ctx, &gvr, "backup", items, names, n, selector);
}

struct get_args {
	const char *selector;
	bool details;
	bool confirm;
	bool wait;
	int64_t timeout;
	const char *creds;
};

static int get_option(void *payload, int c, const char *arg)
{
	struct get_args *a = payload;
	struct json_object *sel = NULL;

	switch (c) {
	case 'l':
		if (st_cli_parse_selector(&sel, arg, NULL) < 0)
			return ST_EINVAL;
		json_object_put(sel);
		a->selector = arg;
		return 0;
	case OPT_DETAILS:
		a->details = true;
		return 0;
	case OPT_CONFIRM:
		a->confirm = true;
		return 0;
	case OPT_WAIT:
		a->wait = true;
		return 0;
	case OPT_TIMEOUT:
		return st_cli_duration_parse(&a->timeout, arg);
	case OPT_CREDS:
		a->creds = arg;
		return 0;
	default:
		return ST_EINVAL;
	}
}

static const struct option get_longopts[] = {
	ST_CLI_COMMON_LONGOPTS,
	{ "selector", required_argument, NULL, 'l' },
	{ "details", no_argument, NULL, OPT_DETAILS },
	{ "confirm", no_argument, NULL, OPT_CONFIRM },
	{ "wait", no_argument, NULL, OPT_WAIT },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "credentials-file", required_argument, NULL, OPT_CREDS },
	{ NULL, 0, NULL, 0 },
};

static int describe_one(struct st_buf *out, struct json_object *backup, void *payload)
{
	const struct get_args *a = payload;

	return st_cli_backup_describe(out, backup, a->details);
}

static const struct st_cli_kind backup_kind = {
	"backup",
	st_cli_gvr_backup,
	st_cli_backup_table,
	describe_one,
};

/* `backup get` and `backup describe`: the same fetch, two presentations. */
static int backup_show(struct st_cli_ctx *ctx, int argc, char **argv, bool describe)
{
	struct get_args a = { 0 };
	int rc;

	rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:l:", get_longopts,
	                          describe ? describe_usage : get_usage, get_option, &a);
	if (rc >= 0)
		return rc;
	return st_cli_show(ctx, &backup_kind, argv + optind, argc - optind, a.selector, describe,
	                   &a);
}

static int backup_get(struct st_cli_ctx *ctx, int argc, char **argv)
{
	return backup_show(ctx, argc, argv, false);
}

static int backup_describe(struct st_cli_ctx *ctx, int argc, char **argv)
{
	return backup_show(ctx, argc, argv, true);
}

static int backup_logs(struct st_cli_ctx *ctx, int argc, char **argv)
{
	struct get_args a = { 0 };
	struct json_object *items = json_object_new_array();
	int rc;

	rc = st_cli_parse_options(ctx, argc, argv, ":hn:", get_longopts, logs_usage, get_option,
	                          &a);
	if (rc >= 0)
		goto out;
	rc = ST_CLI_EXIT_USAGE;
	if (optind + 1 != argc) {
		st_cli_errorf(ctx, "exactly one backup NAME is needed");
		goto out;
	}
	rc = ST_CLI_EXIT_FAIL;
	if (st_cli_connect(ctx) < 0 || fetch_backups(ctx, items, argv + optind, 1, NULL) < 0)
		goto out;
	rc = st_cli_store_backup_logs(ctx, json_object_array_get_idx(items, 0), a.creds, stdout) < 0
	             ? ST_CLI_EXIT_FAIL
	             : ST_CLI_EXIT_OK;
out:
	json_object_put(items);
	return rc;
}

/* Polls until every named backup is gone or the deadline passes. */
static int wait_gone(struct st_cli_ctx *ctx, int n, char **names, int64_t timeout)
{
	long long deadline = st_cli_now() + (timeout > 0 ? timeout : DELETE_WAIT_SECS);
	struct st_err err = ST_ERR_INIT;
	struct json_object *b = NULL;
	struct st_kube_gvr gvr;
	int i, rc;
	long http;

	st_cli_gvr_backup(&gvr);
	for (i = 0; i < n;) {
		http = 0;
		rc = st_kube_get(&b, ctx->client, &gvr, ctx->ns, names[i], &http, &err);
		json_object_put(b);
		b = NULL;
		if (rc < 0 && http != 404) {
			st_cli_kube_error(ctx, "get backup", rc, &err);
			return ST_CLI_EXIT_FAIL;
		}
		if (rc < 0) {
			printf("Backup %s deleted.\n", names[i]);
			i++;
			continue;
		}
		if (st_cli_now() >= deadline) {
			st_cli_errorf(ctx, "backup %s still exists after the --timeout", names[i]);
			return ST_CLI_EXIT_FAIL;
		}
		usleep(500 * 1000);
	}
	return ST_CLI_EXIT_OK;
}

static int request_delete(struct st_cli_ctx *ctx, const char *name)
{
	static const char patch[] =
	        "{\"metadata\":{\"annotations\":{\"" ST_CLI_DELETE_ANNOTATION "\":\"true\"}}}";
	struct st_err err = ST_ERR_INIT;
	struct json_object *res = NULL;
	struct st_kube_gvr gvr;
	long http = 0;
	int rc;

	st_cli_gvr_backup(&gvr);
	rc = st_kube_patch(&res, ctx->client, &gvr, ctx->ns, name, NULL, ST_KUBE_PATCH_MERGE, patch,
	                   sizeof(patch) - 1, &http, &err);
	json_object_put(res);
	if (rc == 0) {
		printf("Request to delete backup \"%s\" submitted successfully.\n"
		       "The backup will be fully deleted after all associated data (objects in the "
		       "storage location) are removed.\n",
		       name);
		return 0;
	}
	if (http == 404)
		st_cli_errorf(ctx, "backup %s not found in namespace %s", name, ctx->ns);
	else
		st_cli_kube_error(ctx, "request deletion", rc, &err);
	return rc;
}

static int backup_delete(struct st_cli_ctx *ctx, int argc, char **argv)
{
	struct get_args a = { 0 };
	int rc, i, n;

	rc = st_cli_parse_options(ctx, argc, argv, ":hn:", get_longopts, delete_usage, get_option,
	                          &a);
	if (rc >= 0)
		return rc;
	n = argc - optind;
	if (n < 1) {
		st_cli_errorf(ctx, "at least one backup NAME is needed");
		return ST_CLI_EXIT_USAGE;
	}
	if (!a.confirm && !st_cli_confirm("backup", n, argv + optind,
	                                  n == 1 ? "and its stored data will be deleted"
	                                         : "and their stored data will be deleted")) {
		printf("Cancelled.\n");
		return ST_CLI_EXIT_OK;
	}
	if (st_cli_connect(ctx) < 0)
		return ST_CLI_EXIT_FAIL;
	rc = ST_CLI_EXIT_OK;
	for (i = 0; i < n; i++)
		if (request_delete(ctx, argv[optind + i]) < 0)
			rc = ST_CLI_EXIT_FAIL;
	fflush(stdout);
	if (rc != ST_CLI_EXIT_OK || !a.wait)
		return rc;
	return wait_gone(ctx, n, argv + optind, a.timeout);
}

static const struct st_cli_sub_verb backup_verbs[] = {
	{ "create", backup_create, "backup create" },       { "get", backup_get, "backup get" },
	{ "describe", backup_describe, "backup describe" }, { "logs", backup_logs, "backup logs" },
	{ "delete", backup_delete, "backup delete" },       { NULL, NULL, NULL },
};

int st_cli_backup_main(int argc, char **argv)
{
	return st_cli_dispatch("backup", st_cli_backup_usage, backup_verbs, argc, argv);
}
