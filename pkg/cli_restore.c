#include "pkg/cli_restore.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pkg/cli_backup.h"
#include "pkg/cli_common.h"
#include "pkg/cli_store.h"
#include "pkg/remap.h"
#include "pkg/restore.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

#define CELL 512
/* The results file read for `describe --details`. */
#define RESULTS_CAP (16u << 20)

const char st_cli_restore_usage[] =
        "Usage: stasis restore VERB [options]\n"
        "\n"
        "Verbs:\n"
        "  create [NAME]   restore a backup (--from-backup B or --from-schedule S)\n"
        "  get [NAME...]   list restores (-o table|json|yaml)\n"
        "  describe NAME   show one restore in detail\n"
        "  logs NAME       print the restore's log from its backup's storage location\n"
        "\n"
        "Options every verb takes:\n"
        "  --kubeconfig FILE    kubeconfig (default $KUBECONFIG, ~/.kube/config, then\n"
        "                       the in-cluster service account)\n"
        "  --context NAME       kubeconfig context (default its current-context)\n"
        "  -n, --namespace NS   namespace stasis is installed in (default $STASIS_NAMESPACE,\n"
        "                       then stasis)\n"
        "  -h, --help           show the help of a verb\n"
        "\n"
        "Run 'stasis restore VERB --help' for the options of a verb.\n";

static const char create_usage[] =
        "Usage: stasis restore create [NAME] --from-backup B | --from-schedule S [options]\n"
        "\n"
        "Creates a Restore. NAME defaults to <backup or schedule>-<YYYYMMDDhhmmss>.\n"
        "Without filters everything in the backup is restored.\n"
        "\n"
        "Options:\n"
        "  --from-backup NAME              the backup to restore (Completed or PartiallyFailed)\n"
        "  --from-schedule NAME            the newest Completed backup of this schedule\n"
        "  --include-namespaces LIST       namespaces to restore (comma-separated, globs)\n"
        "  --exclude-namespaces LIST       namespaces to leave out\n"
        "  --include-resources LIST        resources to restore (e.g. deployments,pvc)\n"
        "  --exclude-resources LIST        resources to leave out\n"
        "  -l, --selector SELECTOR         only objects whose labels match\n"
        "  --include-cluster-resources[=true|false]\n"
        "                                  cluster-scoped resources (default: those the\n"
        "                                  namespaced ones need)\n"
        "  --namespace-mappings MAP        old:new,old2:new2 restores into other namespaces\n"
        "  --storage-class-mappings MAP    old:new storage classes of claims and volumes\n"
        "  --image-registry-mappings MAP   old:new registries of container images (use\n"
        "                                  old=new when a registry has a port)\n"
        "  --mapping-config-maps LIST      Velero-format mapping ConfigMaps in the install\n"
        "                                  namespace\n"
        "  --existing-resource-policy none|update\n"
        "                                  objects that exist: left alone (default) or\n"
        "                                  replaced by the backed-up version\n"
        "  --preserve-nodeports[=true|false]  keep the Services' node ports\n"
        "  --wait                          wait for the restore to finish, showing progress;\n"
        "                                  exit status 0 only when it Completed\n"
        "  --timeout DURATION              bound of --wait (default: none)\n"
        "  -o, --output json|yaml          print the Restore instead of creating it\n"
        "  plus --kubeconfig, --context, -n (see 'stasis restore --help')\n";

static const char get_usage[] =
        "Usage: stasis restore get [NAME...] [options]\n"
        "\n"
        "Lists restores: NAME BACKUP STATUS STARTED COMPLETED ERRORS WARNINGS CREATED SELECTOR.\n"
        "\n"
        "Options:\n"
        "  -o, --output FORMAT     table (default), json or yaml\n"
        "  -l, --selector SELECTOR only restores whose labels match\n"
        "  plus --kubeconfig, --context, -n (see 'stasis restore --help')\n";

static const char describe_usage[] =
        "Usage: stasis restore describe NAME... [--details] [--credentials-file FILE]\n"
        "\n"
        "Shows a restore: phase, backup, scope, mappings, policy, times, progress, errors\n"
        "and warnings. --details adds each warning and error, read from\n"
        "restores/NAME/restore-NAME-results.gz in the backup's storage location.\n";

static const char logs_usage[] =
        "Usage: stasis restore logs NAME [--credentials-file FILE]\n"
        "\n"
        "Prints the restore's log, read from restores/NAME/restore-NAME-logs.gz in the\n"
        "storage location of its backup. The store's credentials come from the Secret the\n"
        "location names, or from --credentials-file (AWS credentials format).\n";

/* ---- mappings ---------------------------------------------------------------------------- */

static bool valid_registry(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 255)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == ':' || c == '/'))
			return false;
	}
	return true;
}

static int parse_pair(struct json_object *map, const char *item, const char *what, int registry,
                      struct st_err *err)
{
	char from[300], to[300];
	const char *sep = strchr(item, '=');
	size_t n;

	if (sep == NULL) {
		sep = strchr(item, ':');
		if (sep != NULL && registry && strchr(sep + 1, ':') != NULL)
			return st_err_set(
			        err, ST_EINVAL,
			        "%s: '%s' is ambiguous (more than one ':'); write old=new", what,
			        item);
	}
	if (sep == NULL)
		return st_err_set(err, ST_EINVAL, "%s: '%s' is not old:new", what, item);
	n = (size_t)(sep - item);
	if (n >= sizeof(from) || strlen(sep + 1) >= sizeof(to))
		return st_err_set(err, ST_EINVAL, "%s: '%s' is too long", what, item);
	memcpy(from, item, n);
	from[n] = '\0';
	(void)snprintf(to, sizeof(to), "%s", sep + 1);
	if (registry ? !valid_registry(from) || !valid_registry(to)
	             : !st_cli_valid_name(from) || !st_cli_valid_name(to))
		return st_err_set(err, ST_EINVAL, "%s: '%s' does not map one %s to another", what,
		                  item, registry ? "registry" : "valid name");
	if (st_json_get(map, from) != NULL)
		return st_err_set(err, ST_EINVAL, "%s: '%s' is mapped twice", what, from);
	st_json_add_str(map, from, to);
	return 0;
}

int st_cli_restore_parse_mappings(struct json_object **map, const char *text, const char *what,
                                  int registry, struct st_err *err)
{
	char *copy = st_xstrdup(text);
	char *save = NULL, *tok;
	int rc = 0, n = 0;

	if (*map == NULL)
		*map = json_object_new_object();
	for (tok = strtok_r(copy, ",", &save); tok != NULL && rc == 0;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (*tok == '\0')
			continue;
		rc = parse_pair(*map, tok, what, registry, err);
		n++;
	}
	if (rc == 0 && n == 0)
		rc = st_err_set(err, ST_EINVAL, "%s: no old:new pair in '%s'", what, text);
	free(copy);
	return rc;
}

/* ---- presentation ------------------------------------------------------------------------ */

static const char *str_or(const char *s, const char *dflt)
{
	return s != NULL ? s : dflt;
}

static void restore_status(char *buf, size_t size, struct json_object *r)
{
	struct json_object *status = st_json_get_obj(r, "status");
	const char *phase = st_json_get_str(status, "phase");
	int errors = json_object_get_int(st_json_get(status, "errors"));

	if (phase == NULL || phase[0] == '\0')
		phase = "New";
	if (strcmp(phase, "PartiallyFailed") == 0)
		(void)snprintf(buf, size, "%s (%d error%s)", phase, errors, errors == 1 ? "" : "s");
	else
		(void)snprintf(buf, size, "%s", phase);
}

static const char *const table_headers[] = { "NAME",     "BACKUP",    "STATUS",
	                                     "STARTED",  "COMPLETED", "ERRORS",
	                                     "WARNINGS", "CREATED",   "SELECTOR" };

static void restore_row(struct st_cli_table *t, struct json_object *r, long long now)
{
	struct json_object *spec = st_json_get_obj(r, "spec");
	struct json_object *status = st_json_get_obj(r, "status");
	struct json_object *meta = st_json_get_obj(r, "metadata");
	char phase[64], errs[16], warns[16], started[64], done[64], created[64], sel[CELL];
	const char *cells[9];

	(void)now;
	restore_status(phase, sizeof(phase), r);
	(void)snprintf(errs, sizeof(errs), "%d",
	               json_object_get_int(st_json_get(status, "errors")));
	(void)snprintf(warns, sizeof(warns), "%d",
	               json_object_get_int(st_json_get(status, "warnings")));
	st_cli_time_show(started, sizeof(started), st_json_get_str(status, "startTimestamp"));
	st_cli_time_show(done, sizeof(done), st_json_get_str(status, "completionTimestamp"));
	st_cli_time_show(created, sizeof(created), st_json_get_str(meta, "creationTimestamp"));
	st_cli_selector_format(sel, sizeof(sel), st_json_get_obj(spec, "labelSelector"));
	cells[0] = st_json_get_str(meta, "name");
	cells[1] = str_or(st_json_get_str(spec, "backupName"), "");
	cells[2] = phase;
	cells[3] = started;
	cells[4] = done;
	cells[5] = errs;
	cells[6] = warns;
	cells[7] = created;
	cells[8] = sel;
	st_cli_table_add(t, cells);
}

int st_cli_restore_table(struct st_buf *out, struct json_object *items, long long now)
{
	return st_cli_table_print(out, table_headers, 9, items, restore_row, now);
}

/* "Title:  old=new, old2=new2" as Velero shows mappings, or "<none>". */
static int describe_mapping(struct st_buf *out, const char *title, struct json_object *map)
{
	bool first = true;
	int rc;

	if ((rc = st_buf_printf(out, "%s:  ", title)) < 0)
		return rc;
	if (map == NULL || !json_object_is_type(map, json_type_object) ||
	    json_object_object_length(map) == 0)
		return st_buf_puts(out, "<none>\n\n");
	json_object_object_foreach(map, k, v)
	{
		if ((rc = st_buf_printf(out, "%s%s=%s", first ? "" : ", ", k,
		                        json_object_get_string(v))) < 0)
			return rc;
		first = false;
	}
	return st_buf_puts(out, "\n\n");
}

static int describe_spec(struct st_buf *out, struct json_object *spec)
{
	struct json_object *icr = st_json_get(spec, "includeClusterResources");
	const char *pol = st_json_get_str(spec, "existingResourcePolicy");
	char inc[CELL], exc[CELL], sel[CELL], rinc[CELL], rexc[CELL], cms[CELL];
	int rc;

	st_cli_join(inc, sizeof(inc), st_json_get_arr(spec, "includedNamespaces"),
	            "all namespaces found in the backup");
	st_cli_join(exc, sizeof(exc), st_json_get_arr(spec, "excludedNamespaces"), "<none>");
	st_cli_join(rinc, sizeof(rinc), st_json_get_arr(spec, "includedResources"), "*");
	st_cli_join(rexc, sizeof(rexc), st_json_get_arr(spec, "excludedResources"), "<none>");
	st_cli_join(cms, sizeof(cms), st_json_get_arr(spec, "mappingConfigMaps"), "<none>");
	st_cli_selector_format(sel, sizeof(sel), st_json_get_obj(spec, "labelSelector"));
	rc = st_buf_printf(out,
	                   "Backup:  %s\n\n"
	                   "Namespaces:\n  Included:  %s\n  Excluded:  %s\n\n"
	                   "Resources:\n  Included:        %s\n  Excluded:        %s\n"
	                   "  Cluster-scoped:  %s\n\n",
	                   str_or(st_json_get_str(spec, "backupName"), "<none>"), inc, exc, rinc,
	                   rexc,
	                   icr == NULL || json_object_get_type(icr) != json_type_boolean ? "auto"
	                   : json_object_get_boolean(icr) ? "included"
	                                                  : "excluded");
	if (rc == 0)
		rc = describe_mapping(out, "Namespace mappings",
		                      st_json_get(spec, "namespaceMapping"));
	if (rc == 0)
		rc = describe_mapping(out, "Storage class mappings",
		                      st_json_get(spec, "storageClassMappings"));
	if (rc == 0)
		rc = describe_mapping(out, "Image registry mappings",
		                      st_json_get(spec, "imageRegistryMappings"));
	if (rc < 0)
		return rc;
	return st_buf_printf(out,
	                     "Mapping ConfigMaps:  %s\n\nLabel selector:  %s\n\n"
	                     "Existing Resource Policy:  %s\n\nPreserve Service NodePorts:  %s\n\n",
	                     cms, sel, str_or(pol, "none"),
	                     st_json_get_bool(spec, "preserveNodePorts", false) ? "true" : "auto");
}

/* One part of the results file ("Warnings:" or "Errors:"), as Velero describes it. */
static int describe_results(struct st_buf *out, const char *title, struct json_object *part)
{
	static const char *const where[] = { "velero", "cluster" };
	struct json_object *nss = st_json_get_obj(part, "namespaces");
	size_t i, j;
	int rc;

	if ((rc = st_buf_printf(out, "\n%s:\n", title)) < 0)
		return rc;
	for (i = 0; i < 2; i++) {
		struct json_object *arr = st_json_get_arr(part, where[i]);

		if ((rc = st_buf_printf(out, "  %s:%s\n", i == 0 ? "Stasis" : "Cluster",
		                        arr == NULL ? "  <none>" : "")) < 0)
			return rc;
		for (j = 0; arr != NULL && j < json_object_array_length(arr); j++)
			if ((rc = st_buf_printf(out, "    %s\n",
			                        json_object_get_string(
			                                json_object_array_get_idx(arr, j)))) < 0)
				return rc;
	}
	if ((rc = st_buf_printf(out, "  Namespaces:%s\n", nss == NULL ? "  <none>" : "")) < 0)
		return rc;
	if (nss == NULL)
		return 0;
	json_object_object_foreach(nss, ns, arr)
	{
		if ((rc = st_buf_printf(out, "    %s:\n", ns)) < 0)
			return rc;
		for (j = 0;
		     json_object_is_type(arr, json_type_array) && j < json_object_array_length(arr);
		     j++)
			if ((rc = st_buf_printf(out, "      %s\n",
			                        json_object_get_string(
			                                json_object_array_get_idx(arr, j)))) < 0)
				return rc;
	}
	return 0;
}

int st_cli_restore_describe(struct st_buf *out, struct json_object *restore,
                            struct json_object *results)
{
	struct json_object *meta = st_json_get_obj(restore, "metadata");
	struct json_object *status = st_json_get_obj(restore, "status");
	struct json_object *progress = st_json_get_obj(status, "progress");
	const char *reason = st_json_get_str(status, "failureReason");
	char phase[64], started[64], completed[64];
	int rc;

	restore_status(phase, sizeof(phase), restore);
	st_cli_time_show(started, sizeof(started), st_json_get_str(status, "startTimestamp"));
	st_cli_time_show(completed, sizeof(completed),
	                 st_json_get_str(status, "completionTimestamp"));
	if ((rc = st_buf_printf(out,
	                        "Name:         %s\nNamespace:    %s\n\nPhase:  %s\n\n"
	                        "Started:    %s\nCompleted:  %s\n\n",
	                        str_or(st_json_get_str(meta, "name"), ""),
	                        str_or(st_json_get_str(meta, "namespace"), ""), phase, started,
	                        completed)) < 0)
		return rc;
	if (reason != NULL && reason[0] != '\0' &&
	    (rc = st_buf_printf(out, "Failure reason:  %s\n\n", reason)) < 0)
		return rc;
	if ((rc = st_buf_printf(out, "Errors:    %d\nWarnings:  %d\n\n",
	                        json_object_get_int(st_json_get(status, "errors")),
	                        json_object_get_int(st_json_get(status, "warnings")))) < 0)
		return rc;
	if ((rc = describe_spec(out, st_json_get_obj(restore, "spec"))) < 0)
		return rc;
	if (progress != NULL &&
	    (rc = st_buf_printf(
	             out, "Total items to be restored:  %d\nItems restored:              %d\n",
	             json_object_get_int(st_json_get(progress, "totalItems")),
	             json_object_get_int(st_json_get(progress, "itemsRestored")))) < 0)
		return rc;
	if (results == NULL)
		return 0;
	if ((rc = describe_results(out, "Warnings", st_json_get_obj(results, "warnings"))) < 0)
		return rc;
	return describe_results(out, "Errors", st_json_get_obj(results, "errors"));
}

/* ---- verbs ------------------------------------------------------------------------------- */

static void gvr_restore(struct st_kube_gvr *gvr)
{
	int rc = st_kube_gvr_set(gvr, ST_CLI_GROUP, ST_CLI_VERSION, "restores", "Restore", true);

	ST_ASSERT(rc == 0);
}

enum {
	OPT_FROM_BACKUP = ST_CLI_OPT_FIRST_FREE,
	OPT_FROM_SCHEDULE,
	OPT_INC_NS,
	OPT_EXC_NS,
	OPT_INC_RES,
	OPT_EXC_RES,
	OPT_CLUSTER,
	OPT_NS_MAP,
	OPT_SC_MAP,
	OPT_IMG_MAP,
	OPT_CM,
	OPT_POLICY,
	OPT_NODEPORTS,
	OPT_WAIT,
	OPT_TIMEOUT,
	OPT_DETAILS,
	OPT_CREDS,
};

struct create_args {
	const struct st_cli_ctx *ctx;
	struct json_object *spec;
	const char *backup;
	const char *schedule;
	bool wait;
	int64_t timeout;
};

/* The rules the engine will build from the map, checked now so that errors come early. */
static int check_mapping(struct json_object *map, enum st_remap_kind kind, const char *flag,
                         struct st_err *err)
{
	struct st_remap *m = NULL;
	int rc;

	if ((rc = st_remap_new(&m, err)) < 0)
		return rc;
	if ((rc = st_remap_add_map(m, kind, map, err)) < 0)
		st_err_prefix(err, "%s", flag);
	st_remap_free(m);
	return rc;
}

static int add_mapping(struct create_args *a, const char *key, const char *flag, const char *arg,
                       int registry)
{
	struct json_object *map = NULL;
	struct st_err err = ST_ERR_INIT;
	bool had = json_object_object_get_ex(a->spec, key, &map);

	if (st_cli_restore_parse_mappings(&map, arg, flag, registry, &err) < 0 ||
	    check_mapping(map,
	                  registry                               ? ST_REMAP_IMAGE_REGISTRY
	                  : strcmp(key, "namespaceMapping") == 0 ? ST_REMAP_NAMESPACE
	                                                         : ST_REMAP_STORAGE_CLASS,
	                  flag, &err) < 0) {
		st_cli_errorf(a->ctx, "%s", st_err_text(&err));
		if (!had)
			json_object_put(map);
		return ST_EINVAL;
	}
	if (!had)
		json_object_object_add(a->spec, key, map);
	return 0;
}

static int create_option(void *payload, int c, const char *arg)
{
	struct create_args *a = payload;
	struct json_object *sel = NULL;

	switch (c) {
	case OPT_FROM_BACKUP:
		a->backup = arg;
		return st_cli_valid_name(arg) ? 0 : ST_EINVAL;
	case OPT_FROM_SCHEDULE:
		a->schedule = arg;
		return st_cli_valid_name(arg) ? 0 : ST_EINVAL;
	case OPT_INC_NS:
		return st_cli_add_list(a->spec, "includedNamespaces", arg);
	case OPT_EXC_NS:
		return st_cli_add_list(a->spec, "excludedNamespaces", arg);
	case OPT_INC_RES:
		return st_cli_add_list(a->spec, "includedResources", arg);
	case OPT_EXC_RES:
		return st_cli_add_list(a->spec, "excludedResources", arg);
	case OPT_CM:
		return st_cli_add_list(a->spec, "mappingConfigMaps", arg);
	case 'l':
		if (st_cli_parse_selector(&sel, arg, NULL) < 0)
			return ST_EINVAL;
		json_object_object_add(a->spec, "labelSelector", sel);
		return 0;
	case OPT_CLUSTER:
		return st_cli_add_bool(a->spec, "includeClusterResources", arg);
	case OPT_NODEPORTS:
		return st_cli_add_bool(a->spec, "preserveNodePorts", arg);
	case OPT_NS_MAP:
		return add_mapping(a, "namespaceMapping", "--namespace-mappings", arg, 0);
	case OPT_SC_MAP:
		return add_mapping(a, "storageClassMappings", "--storage-class-mappings", arg, 0);
	case OPT_IMG_MAP:
		return add_mapping(a, "imageRegistryMappings", "--image-registry-mappings", arg, 1);
	case OPT_POLICY:
		if (strcmp(arg, "none") != 0 && strcmp(arg, "update") != 0)
			return ST_EINVAL;
		st_json_add_str(a->spec, "existingResourcePolicy", arg);
		return 0;
	case OPT_WAIT:
		a->wait = true;
		return 0;
	case OPT_TIMEOUT:
		return st_cli_duration_parse(&a->timeout, arg);
	default:
		return ST_EINVAL;
	}
}

static struct json_object *new_restore(const char *name, const char *ns,
                                       const struct create_args *a)
{
	struct json_object *o = st_cli_new_object("Restore", name, ns, NULL);

	json_object_object_add(o, "spec", json_object_get(a->spec));
	return o;
}

/* The backup must exist and have finished with its objects written. */
static int check_backup(struct st_cli_ctx *ctx, const char *name)
{
	struct json_object *b = NULL;
	struct st_err err = ST_ERR_INIT;
	struct st_kube_gvr gvr;
	const char *phase;
	long http = 0;
	int rc;

	st_cli_gvr_backup(&gvr);
	rc = st_kube_get(&b, ctx->client, &gvr, ctx->ns, name, &http, &err);
	if (rc < 0) {
		if (http == 404)
			st_cli_errorf(ctx,
			              "backup %s not found in namespace %s ('stasis backup get' "
			              "lists the backups)",
			              name, ctx->ns);
		else
			st_cli_kube_error(ctx, "get backup", rc, &err);
		return rc;
	}
	phase = st_json_get_str(st_json_get_obj(b, "status"), "phase");
	if (phase == NULL ||
	    (strcmp(phase, "Completed") != 0 && strcmp(phase, "PartiallyFailed") != 0)) {
		st_cli_errorf(ctx,
		              "backup %s is %s; only a Completed or PartiallyFailed backup can "
		              "be restored",
		              name, phase != NULL && phase[0] != '\0' ? phase : "New");
		rc = ST_EINVAL;
	}
	json_object_put(b);
	return rc;
}

/* Fills spec.backupName (or checks spec.scheduleName has a backup). */
static int resolve_source(struct st_cli_ctx *ctx, struct create_args *a)
{
	struct st_err err = ST_ERR_INIT;
	char name[256];

	if (a->backup != NULL) {
		st_json_add_str(a->spec, "backupName", a->backup);
		return check_backup(ctx, a->backup);
	}
	st_json_add_str(a->spec, "scheduleName", a->schedule);
	if (st_restore_schedule_backup(name, sizeof(name), ctx->client, ctx->ns, a->schedule,
	                               &err) < 0) {
		st_cli_errorf(ctx, "%s", st_err_text(&err));
		return ST_ENOTFOUND;
	}
	st_json_add_str(a->spec, "backupName", name);
	return 0;
}

static int wait_restore(struct st_cli_ctx *ctx, const char *name, int64_t timeout)
{
	static const struct st_cli_wait how = { "Restore", "restore", "itemsRestored",
		                                "items restored", "read" };
	struct st_kube_gvr gvr;

	gvr_restore(&gvr);
	return st_cli_wait_finished(ctx, &gvr, name, timeout, &how);
}

static int create_submit(struct st_cli_ctx *ctx, struct json_object *obj, const char *name)
{
	struct st_kube_gvr gvr;

	gvr_restore(&gvr);
	if (st_cli_create(ctx, &gvr, "restore", obj, name) != ST_CLI_EXIT_OK)
		return ST_CLI_EXIT_FAIL;
	printf("Restore request \"%s\" submitted successfully.\n", name);
	(void)fflush(stdout);
	return ST_CLI_EXIT_OK;
}

/* The default name: <backup or schedule>-<YYYYMMDDhhmmss> (UTC), as Velero names it. */
static void default_name(char *buf, size_t size, const char *base)
{
	time_t now = (time_t)st_cli_now();
	struct tm tm;
	char ts[32] = "";

	if (gmtime_r(&now, &tm) != NULL)
		(void)strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm);
	(void)snprintf(buf, size, "%.200s-%s", base, ts);
}

static int create_check(struct st_cli_ctx *ctx, const struct create_args *a, int argc, char **argv,
                        char *name, size_t size)
{
	if ((a->backup == NULL) == (a->schedule == NULL)) {
		st_cli_errorf(ctx, "exactly one of --from-backup and --from-schedule is needed");
		return ST_CLI_EXIT_USAGE;
	}
	if (argc - optind > 1) {
		st_cli_errorf(ctx, "at most one restore NAME");
		return ST_CLI_EXIT_USAGE;
	}
	if (argc - optind == 1)
		(void)snprintf(name, size, "%s", argv[optind]);
	else
		default_name(name, size, a->backup != NULL ? a->backup : a->schedule);
	if (!st_cli_valid_name(name)) {
		st_cli_errorf(ctx,
		              "invalid restore name '%s' (lower-case letters, digits, '-' and "
		              "'.', at most 253)",
		              name);
		return ST_CLI_EXIT_USAGE;
	}
	return -1;
}

static int restore_create(struct st_cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		ST_CLI_COMMON_LONGOPTS,
		{ "from-backup", required_argument, NULL, OPT_FROM_BACKUP },
		{ "from-schedule", required_argument, NULL, OPT_FROM_SCHEDULE },
		{ "include-namespaces", required_argument, NULL, OPT_INC_NS },
		{ "exclude-namespaces", required_argument, NULL, OPT_EXC_NS },
		{ "include-resources", required_argument, NULL, OPT_INC_RES },
		{ "exclude-resources", required_argument, NULL, OPT_EXC_RES },
		{ "selector", required_argument, NULL, 'l' },
		{ "include-cluster-resources", optional_argument, NULL, OPT_CLUSTER },
		{ "namespace-mappings", required_argument, NULL, OPT_NS_MAP },
		{ "storage-class-mappings", required_argument, NULL, OPT_SC_MAP },
		{ "image-registry-mappings", required_argument, NULL, OPT_IMG_MAP },
		{ "mapping-config-maps", required_argument, NULL, OPT_CM },
		{ "existing-resource-policy", required_argument, NULL, OPT_POLICY },
		{ "preserve-nodeports", optional_argument, NULL, OPT_NODEPORTS },
		{ "wait", no_argument, NULL, OPT_WAIT },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ NULL, 0, NULL, 0 },
	};
	struct create_args a = { .ctx = ctx, .spec = json_object_new_object() };
	struct json_object *obj = NULL;
	char name[300];
	int rc;

	rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:l:", longopts, create_usage,
	                          create_option, &a);
	if (rc >= 0 || (rc = create_check(ctx, &a, argc, argv, name, sizeof(name))) >= 0)
		goto out;
	rc = ST_CLI_EXIT_FAIL;
	if (ctx->output_set && ctx->output != ST_CLI_OUTPUT_TABLE) {
		if (a.backup != NULL)
			st_json_add_str(a.spec, "backupName", a.backup);
		else
			st_json_add_str(a.spec, "scheduleName", a.schedule);
		obj = new_restore(name, ctx->ns, &a);
		rc = st_cli_print_object(ctx, obj);
		goto out;
	}
	if (st_cli_connect(ctx) < 0 || resolve_source(ctx, &a) < 0)
		goto out;
	obj = new_restore(name, ctx->ns, &a);
	if ((rc = create_submit(ctx, obj, name)) != ST_CLI_EXIT_OK)
		goto out;
	if (!a.wait) {
		printf("Run `stasis restore describe %s` or `stasis restore logs %s` for more "
		       "details.\n",
		       name, name);
		goto out;
	}
	rc = wait_restore(ctx, name, a.timeout);
out:
	json_object_put(obj);
	json_object_put(a.spec);
	return rc;
}

struct get_args {
	struct st_cli_ctx *ctx; /* for the results files of describe --details */
	const char *selector;
	bool details;
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
	{ "credentials-file", required_argument, NULL, OPT_CREDS },
	{ NULL, 0, NULL, 0 },
};

static int fetch_restores(struct st_cli_ctx *ctx, struct json_object *items, char **names, int n,
                          const char *selector)
{
	struct st_kube_gvr gvr;

	gvr_restore(&gvr);
	return st_cli_fetch(ctx, &gvr, "restore", items, names, n, selector);
}

/*
 * Prints restores/<R>/restore-<R>-<suffix>.gz from the location of the
 * restore's backup; a backup that is gone leaves the default location.
 */
static int print_stored(struct st_cli_ctx *ctx, struct json_object *restore, const char *suffix,
                        const char *what, const char *creds, FILE *f)
{
	const char *name = st_json_get_str(st_json_get_obj(restore, "metadata"), "name");
	const char *bname = st_json_get_str(st_json_get_obj(restore, "spec"), "backupName");
	struct json_object *backup = NULL;
	struct st_err err = ST_ERR_INIT;
	struct st_kube_gvr gvr;
	char key[1024], label[320];
	long http = 0;
	int rc;

	st_cli_gvr_backup(&gvr);
	if (name == NULL)
		return ST_EINVAL;
	if (bname != NULL &&
	    st_kube_get(&backup, ctx->client, &gvr, ctx->ns, bname, &http, &err) < 0 &&
	    http != 404) {
		st_cli_kube_error(ctx, "get backup", ST_EUPSTREAM, &err);
		return ST_EUPSTREAM;
	}
	(void)snprintf(key, sizeof(key), "restores/%s/restore-%s-%s.gz", name, name, suffix);
	(void)snprintf(label, sizeof(label), "%s for restore %s", what, name);
	rc = st_cli_store_get_gz(ctx, backup, key, label, creds, f);
	json_object_put(backup);
	return rc;
}

/* The results file of one restore, parsed; NULL (after a message) when unreadable. */
static struct json_object *read_results(struct st_cli_ctx *ctx, struct json_object *restore,
                                        const char *creds)
{
	struct json_object *res = NULL;
	struct st_err err = ST_ERR_INIT;
	char *data = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&data, &len);

	if (f == NULL)
		return NULL;
	if (print_stored(ctx, restore, "results", "results", creds, f) < 0) {
		(void)fclose(f);
		free(data);
		return NULL;
	}
	(void)fclose(f);
	if (st_json_parse(&res, data, len, RESULTS_CAP, "the results file", &err) < 0)
		st_cli_errorf(ctx, "%s", st_err_text(&err));
	free(data);
	return res;
}

/* One restore for `describe`; --details adds its results file. */
static int describe_one(struct st_buf *out, struct json_object *restore, void *payload)
{
	const struct get_args *a = payload;
	struct json_object *results = a->details ? read_results(a->ctx, restore, a->creds) : NULL;
	int rc = st_cli_restore_describe(out, restore, results);

	json_object_put(results);
	return rc;
}

static const struct st_cli_kind restore_kind = {
	"restore",
	gvr_restore,
	st_cli_restore_table,
	describe_one,
};

/* `restore get` and `restore describe`: the same fetch, two presentations. */
static int restore_show(struct st_cli_ctx *ctx, int argc, char **argv, bool describe)
{
	struct get_args a = { .ctx = ctx };
	int rc;

	rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:l:", get_longopts,
	                          describe ? describe_usage : get_usage, get_option, &a);
	if (rc >= 0)
		return rc;
	if (describe && argc - optind < 1) {
		st_cli_errorf(ctx, "at least one restore NAME is needed");
		return ST_CLI_EXIT_USAGE;
	}
	return st_cli_show(ctx, &restore_kind, argv + optind, argc - optind, a.selector, describe,
	                   &a);
}

static int restore_get(struct st_cli_ctx *ctx, int argc, char **argv)
{
	return restore_show(ctx, argc, argv, false);
}

static int restore_describe(struct st_cli_ctx *ctx, int argc, char **argv)
{
	return restore_show(ctx, argc, argv, true);
}

static int restore_logs(struct st_cli_ctx *ctx, int argc, char **argv)
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
		st_cli_errorf(ctx, "exactly one restore NAME is needed");
		goto out;
	}
	rc = ST_CLI_EXIT_FAIL;
	if (st_cli_connect(ctx) < 0 || fetch_restores(ctx, items, argv + optind, 1, NULL) < 0)
		goto out;
	rc = print_stored(ctx, json_object_array_get_idx(items, 0), "logs", "logs", a.creds,
	                  stdout) < 0
	             ? ST_CLI_EXIT_FAIL
	             : ST_CLI_EXIT_OK;
out:
	json_object_put(items);
	return rc;
}

static const struct st_cli_sub_verb restore_verbs[] = {
	{ "create", restore_create, "restore create" },
	{ "get", restore_get, "restore get" },
	{ "describe", restore_describe, "restore describe" },
	{ "logs", restore_logs, "restore logs" },
	{ NULL, NULL, NULL },
};

int st_cli_restore_main(int argc, char **argv)
{
	return st_cli_dispatch("restore", st_cli_restore_usage, restore_verbs, argc, argv);
}
