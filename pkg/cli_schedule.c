#include "pkg/cli_schedule.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pkg/backup.h"
#include "pkg/cli_backup.h"
#include "pkg/cli_common.h"
#include "pkg/cron.h"
#include "pkg/schedule.h"
#include "pkg/util/json.h"

#define CELL 512

const char st_cli_schedule_usage[] =
        "Usage: stasis schedule VERB [options]\n"
        "\n"
        "Verbs:\n"
        "  create NAME     create a schedule that makes backups on a cron schedule\n"
        "  get [NAME...]   list schedules (-o table|json|yaml)\n"
        "  describe NAME   show one schedule in detail\n"
        "  delete NAME     delete a schedule (its backups stay until they expire)\n"
        "  pause NAME      stop making backups\n"
        "  unpause NAME    make backups again\n"
        "\n"
        "Options every verb takes:\n"
        "  --kubeconfig FILE    kubeconfig (default $KUBECONFIG, ~/.kube/config, then\n"
        "                       the in-cluster service account)\n"
        "  --context NAME       kubeconfig context (default its current-context)\n"
        "  -n, --namespace NS   namespace stasis is installed in (default $STASIS_NAMESPACE,\n"
        "                       then stasis)\n"
        "  -h, --help           show the help of a verb\n"
        "\n"
        "Run 'stasis schedule VERB --help' for the options of a verb.\n";

static const char create_usage[] =
        "Usage: stasis schedule create NAME --schedule CRON [options]\n"
        "\n"
        "Creates a Schedule. The controller makes a Backup named NAME-YYYYMMDDhhmmss\n"
        "(UTC) at every time the schedule gives; after downtime it makes one backup for\n"
        "the latest missed time, not one per missed time.\n"
        "\n"
        "Options:\n"
        "  --schedule CRON               minute hour day-of-month month day-of-week\n"
        "                                (\"0 3 * * *\"), or @hourly, @daily, @weekly,\n"
        "                                @monthly, @yearly, @every DURATION (\"@every 6h\")\n"
        "  --paused[=true|false]         create it paused\n"
        "  --use-owner-references-in-backup[=true|false]\n"
        "                                make the schedule the owner of its backups\n"
        "  --labels K=V,...              labels of the Schedule (its backups get them too)\n"
        "Backup template:\n" ST_CLI_BACKUP_SPEC_HELP
        "  -o, --output json|yaml        print the Schedule instead of creating it\n"
        "  plus --kubeconfig, --context, -n (see 'stasis schedule --help')\n";

static const char get_usage[] =
        "Usage: stasis schedule get [NAME...] [options]\n"
        "\n"
        "Lists schedules: NAME STATUS CREATED SCHEDULE BACKUP TTL LAST BACKUP SELECTOR PAUSED.\n"
        "\n"
        "Options:\n"
        "  -o, --output FORMAT     table (default), json or yaml\n"
        "  -l, --selector SELECTOR only schedules whose labels match\n"
        "  plus --kubeconfig, --context, -n (see 'stasis schedule --help')\n";

static const char describe_usage[] =
        "Usage: stasis schedule describe NAME...\n"
        "\n"
        "Shows a schedule: phase, validation errors, cron expression, pause, the backup\n"
        "template and the last backup's time.\n";

static const char delete_usage[] =
        "Usage: stasis schedule delete NAME... [--confirm]\n"
        "\n"
        "Deletes the schedules. The backups they made are kept, each until its TTL.\n"
        "Without --confirm it asks first.\n";

static const char pause_usage[] = "Usage: stasis schedule pause|unpause NAME...\n"
                                  "\n"
                                  "Sets spec.paused: a paused schedule makes no backups. Once\n"
                                  "unpaused it makes one backup at once when a run was missed\n"
                                  "meanwhile, then follows its schedule.\n";

/* ---- presentation ------------------------------------------------------------------------ */

static const char *phase_of(struct json_object *schedule)
{
	const char *p = st_json_get_str(st_json_get_obj(schedule, "status"), "phase");

	return p != NULL && p[0] != '\0' ? p : "New";
}

static const char *ttl_of(struct json_object *tmpl)
{
	const char *ttl = st_json_get_str(tmpl, "ttl");

	return ttl != NULL && ttl[0] != '\0' ? ttl : ST_BACKUP_DEFAULT_TTL;
}

static const char *const table_headers[] = { "NAME",       "STATUS",      "CREATED",  "SCHEDULE",
	                                     "BACKUP TTL", "LAST BACKUP", "SELECTOR", "PAUSED" };

static void schedule_row(struct st_cli_table *t, struct json_object *s, long long now)
{
	struct json_object *meta = st_json_get_obj(s, "metadata");
	struct json_object *spec = st_json_get_obj(s, "spec");
	struct json_object *tmpl = st_json_get_obj(spec, "template");
	const char *last = st_json_get_str(st_json_get_obj(s, "status"), "lastBackup");
	char created[64], lastb[32], sel[CELL];
	const char *cells[8];
	int64_t t_last = 0;

	st_cli_time_show(created, sizeof(created), st_json_get_str(meta, "creationTimestamp"));
	if (last == NULL || st_cli_time_parse(&t_last, last) < 0)
		t_last = 0;
	st_cli_time_from_now(lastb, sizeof(lastb), t_last, now);
	st_cli_selector_format(sel, sizeof(sel), st_json_get_obj(tmpl, "labelSelector"));
	cells[0] = st_json_get_str(meta, "name");
	cells[1] = phase_of(s);
	cells[2] = created;
	cells[3] = st_json_get_str(spec, "schedule");
	cells[4] = ttl_of(tmpl);
	cells[5] = lastb;
	cells[6] = sel;
	cells[7] = st_json_get_bool(spec, "paused", false) ? "true" : "false";
	st_cli_table_add(t, cells);
}

int st_cli_schedule_table(struct st_buf *out, struct json_object *items, long long now)
{
	return st_cli_table_print(out, table_headers, 8, items, schedule_row, now);
}

/* The template as `backup describe` shows a spec, indented under its heading. */
static int describe_template(struct st_buf *out, struct json_object *tmpl)
{
	struct st_buf text = ST_BUF_INIT(ST_CLI_CAP_OUTPUT);
	struct json_object *empty = tmpl == NULL ? json_object_new_object() : NULL;
	const char *line, *nl;
	int rc;

	if ((rc = st_cli_backup_describe_spec(&text, tmpl != NULL ? tmpl : empty)) < 0 ||
	    (rc = st_buf_putc(&text, '\0')) < 0)
		goto out;
	for (line = text.ptr; *line != '\0' && rc == 0; line = nl + 1) {
		nl = strchr(line, '\n');
		if (nl == NULL)
			nl = line + strlen(line) - 1;
		if (nl > line)
			rc = st_buf_puts(out, "  ");
		if (rc == 0)
			rc = st_buf_put(out, line, (size_t)(nl - line) + 1);
	}
out:
	json_object_put(empty);
	st_buf_dispose(&text);
	return rc;
}

int st_cli_schedule_describe(struct st_buf *out, struct json_object *schedule)
{
	struct json_object *spec = st_json_get_obj(schedule, "spec");
	struct json_object *status = st_json_get_obj(schedule, "status");
	struct json_object *verrs = st_json_get_arr(status, "validationErrors");
	struct json_object *tmpl = st_json_get_obj(spec, "template");
	const char *cron = st_json_get_str(spec, "schedule");
	char last[64];
	int rc;

	if ((rc = st_cli_backup_describe_meta(out, schedule)) < 0 ||
	    (rc = st_buf_printf(out, "\nPhase:  %s\n\n", phase_of(schedule))) < 0)
		return rc;
	if ((rc = st_cli_backup_describe_list(out, "Validation errors", verrs)) < 0)
		return rc;
	if ((rc = st_buf_printf(out, "Paused:  %s\n\nSchedule:  %s\n\nBackup Template:\n",
	                        st_json_get_bool(spec, "paused", false) ? "true" : "false",
	                        cron != NULL ? cron : "<none>")) < 0)
		return rc;
	if ((rc = describe_template(out, tmpl)) < 0)
		return rc;
	st_cli_time_show(last, sizeof(last), st_json_get_str(status, "lastBackup"));
	return st_buf_printf(out, "Last Backup:  %s\n", last);
}

/* ---- create ------------------------------------------------------------------------------ */

enum {
	OPT_SCHEDULE = ST_CLI_BACKUP_OPT_FIRST_FREE,
	OPT_PAUSED,
	OPT_OWNER,
	OPT_LABELS,
	OPT_CONFIRM,
};

struct create_args {
	struct st_cli_backup_spec s;
	const char *schedule;
	struct json_object *labels;
	bool paused;
	bool owner;
};

static int create_option(void *payload, int c, const char *arg)
{
	struct create_args *a = payload;
	int rc = st_cli_backup_spec_option(&a->s, c, arg);

	if (rc <= 0)
		return rc;
	switch (c) {
	case OPT_SCHEDULE:
		a->schedule = arg;
		return 0;
	case OPT_PAUSED:
		return st_cli_parse_bool(&a->paused, arg);
	case OPT_OWNER:
		return st_cli_parse_bool(&a->owner, arg);
	case OPT_LABELS:
		return st_cli_parse_map(&a->labels, arg);
	default:
		return ST_EINVAL;
	}
}

static struct json_object *new_schedule(const char *name, const char *ns,
                                        const struct create_args *a)
{
	struct json_object *o = st_cli_new_object("Schedule", name, ns, a->labels);
	struct json_object *spec = json_object_new_object();

	st_json_add_str(spec, "schedule", a->schedule);
	json_object_object_add(spec, "template", st_cli_backup_spec_build(&a->s));
	json_object_object_add(spec, "paused", json_object_new_boolean(a->paused));
	if (a->owner)
		json_object_object_add(spec, "useOwnerReferencesInBackup",
		                       json_object_new_boolean(1));
	json_object_object_add(o, "spec", spec);
	return o;
}

/* Checks the name and the cron expression before anything is sent. */
static int create_check(const struct st_cli_ctx *ctx, const struct create_args *a, const char *name)
{
	struct st_err err = ST_ERR_INIT;
	struct st_cron cron;

	if (!st_cli_valid_name(name) || strlen(name) > ST_SCHEDULE_NAME_MAX) {
		st_cli_errorf(ctx,
		              "invalid schedule name '%s' (lower-case letters, digits, '-' and "
		              "'.', at most %d: it is the value of its backups' %s label)",
		              name, ST_SCHEDULE_NAME_MAX, ST_SCHEDULE_LABEL);
		return ST_EINVAL;
	}
	if (a->schedule == NULL) {
		st_cli_errorf(ctx, "--schedule is required, e.g. --schedule \"0 3 * * *\" or "
		                   "--schedule \"@every 6h\"");
		return ST_EINVAL;
	}
	if (st_cron_parse(&cron, a->schedule, &err) < 0) {
		st_cli_errorf(ctx,
		              "invalid --schedule \"%s\": %s (want minute hour day-of-month month "
		              "day-of-week, or @hourly, @daily, @every 6h)",
		              a->schedule, st_err_text(&err));
		return ST_EINVAL;
	}
	return 0;
}

static int create_submit(struct st_cli_ctx *ctx, struct json_object *obj, const char *name)
{
	struct st_kube_gvr gvr;

	st_cli_gvr_schedule(&gvr);
	if (st_cli_create(ctx, &gvr, "schedule", obj, name) != ST_CLI_EXIT_OK)
		return ST_CLI_EXIT_FAIL;
	printf("Schedule \"%s\" created successfully.\n", name);
	return ST_CLI_EXIT_OK;
}

static int schedule_create(struct st_cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		ST_CLI_COMMON_LONGOPTS,
		ST_CLI_BACKUP_SPEC_LONGOPTS,
		{ "schedule", required_argument, NULL, OPT_SCHEDULE },
		{ "paused", optional_argument, NULL, OPT_PAUSED },
		{ "use-owner-references-in-backup", optional_argument, NULL, OPT_OWNER },
		{ "labels", required_argument, NULL, OPT_LABELS },
		{ NULL, 0, NULL, 0 },
	};
	struct create_args a = { .schedule = NULL };
	struct json_object *obj = NULL;
	int rc;

	st_cli_backup_spec_init(&a.s);
	rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:l:", longopts, create_usage,
	                          create_option, &a);
	if (rc >= 0)
		goto out;
	rc = ST_CLI_EXIT_USAGE;
	if (optind + 1 != argc) {
		st_cli_errorf(ctx, "exactly one schedule NAME is needed");
		goto out;
	}
	if (create_check(ctx, &a, argv[optind]) < 0)
		goto out;
	obj = new_schedule(argv[optind], ctx->ns, &a);
	if (ctx->output_set && ctx->output != ST_CLI_OUTPUT_TABLE)
		rc = st_cli_print_object(ctx, obj);
	else
		rc = create_submit(ctx, obj, argv[optind]);
out:
	json_object_put(obj);
	json_object_put(a.labels);
	st_cli_backup_spec_dispose(&a.s);
	return rc;
}

/* ---- get, describe ----------------------------------------------------------------------- */

struct get_args {
	const char *selector;
	bool confirm;
};

static int get_option(void *payload, int c, const char *arg)
{
	struct get_args *a = payload;
	struct json_object *sel = NULL;

	if (c == OPT_CONFIRM) {
		a->confirm = true;
		return 0;
	}
	if (c != 'l' || st_cli_parse_selector(&sel, arg, NULL) < 0)
		return ST_EINVAL;
	json_object_put(sel);
	a->selector = arg;
	return 0;
}

static const struct option get_longopts[] = {
	ST_CLI_COMMON_LONGOPTS,
	{ "selector", required_argument, NULL, 'l' },
	{ "confirm", no_argument, NULL, OPT_CONFIRM },
	{ NULL, 0, NULL, 0 },
};

static int describe_one(struct st_buf *out, struct json_object *schedule, void *payload)
{
	(void)payload;
	return st_cli_schedule_describe(out, schedule);
}

static const struct st_cli_kind schedule_kind = {
	"schedule",
	st_cli_gvr_schedule,
	st_cli_schedule_table,
	describe_one,
};

static int schedule_show(struct st_cli_ctx *ctx, int argc, char **argv, bool describe)
{
	struct get_args a = { 0 };
	int rc;

	rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:l:", get_longopts,
	                          describe ? describe_usage : get_usage, get_option, &a);
	if (rc >= 0)
		return rc;
	return st_cli_show(ctx, &schedule_kind, argv + optind, argc - optind, a.selector, describe,
	                   NULL);
}

static int schedule_get(struct st_cli_ctx *ctx, int argc, char **argv)
{
	return schedule_show(ctx, argc, argv, false);
}

static int schedule_describe(struct st_cli_ctx *ctx, int argc, char **argv)
{
	return schedule_show(ctx, argc, argv, true);
}

/* ---- delete, pause, unpause -------------------------------------------------------------- */

/* Deletes (body NULL) or merge-patches each named schedule; what: "deleted", "paused". */
static int for_each_name(struct st_cli_ctx *ctx, int n, char **names, const char *body,
                         const char *what)
{
	struct st_kube_gvr gvr;
	int i, rc = ST_CLI_EXIT_OK;

	st_cli_gvr_schedule(&gvr);
	if (st_cli_connect(ctx) < 0)
		return ST_CLI_EXIT_FAIL;
	for (i = 0; i < n; i++) {
		struct st_err err = ST_ERR_INIT;
		struct json_object *res = NULL;
		long http = 0;
		int r;

		if (body == NULL)
			r = st_kube_delete(&res, ctx->client, &gvr, ctx->ns, names[i], NULL, &http,
			                   &err);
		else
			r = st_kube_patch(&res, ctx->client, &gvr, ctx->ns, names[i], NULL,
			                  ST_KUBE_PATCH_MERGE, body, strlen(body), &http, &err);
		json_object_put(res);
		if (r == 0) {
			printf("Schedule \"%s\" %s.\n", names[i], what);
			continue;
		}
		rc = ST_CLI_EXIT_FAIL;
		if (http == 404)
			st_cli_errorf(ctx, "schedule %s not found in namespace %s", names[i],
			              ctx->ns);
		else
			st_cli_kube_error(ctx, body == NULL ? "delete schedule" : "patch schedule",
			                  r, &err);
	}
	(void)fflush(stdout);
	return rc;
}

/* Parses the options of delete/pause/unpause; -1 to go on with names at optind. */
static int names_verb(struct st_cli_ctx *ctx, int argc, char **argv, const char *usage,
                      struct get_args *a)
{
	int rc = st_cli_parse_options(ctx, argc, argv, ":hn:", get_longopts, usage, get_option, a);

	if (rc >= 0)
		return rc;
	if (optind >= argc) {
		st_cli_errorf(ctx, "at least one schedule NAME is needed");
		return ST_CLI_EXIT_USAGE;
	}
	return -1;
}

static int schedule_delete(struct st_cli_ctx *ctx, int argc, char **argv)
{
	struct get_args a = { 0 };
	int rc = names_verb(ctx, argc, argv, delete_usage, &a);

	if (rc >= 0)
		return rc;
	if (!a.confirm && !st_cli_confirm("schedule", argc - optind, argv + optind,
	                                  "will be deleted (backups already made are kept)")) {
		printf("Cancelled.\n");
		return ST_CLI_EXIT_OK;
	}
	return for_each_name(ctx, argc - optind, argv + optind, NULL, "deleted");
}

/* pause and unpause: a merge patch of spec.paused. */
static int set_paused(struct st_cli_ctx *ctx, int argc, char **argv, bool paused)
{
	struct get_args a = { 0 };
	int rc = names_verb(ctx, argc, argv, pause_usage, &a);

	if (rc >= 0)
		return rc;
	return for_each_name(ctx, argc - optind, argv + optind,
	                     paused ? "{\"spec\":{\"paused\":true}}"
	                            : "{\"spec\":{\"paused\":false}}",
	                     paused ? "paused" : "unpaused");
}

static int schedule_pause(struct st_cli_ctx *ctx, int argc, char **argv)
{
	return set_paused(ctx, argc, argv, true);
}

static int schedule_unpause(struct st_cli_ctx *ctx, int argc, char **argv)
{
	return set_paused(ctx, argc, argv, false);
}

static const struct st_cli_sub_verb schedule_verbs[] = {
	{ "create", schedule_create, "schedule create" },
	{ "get", schedule_get, "schedule get" },
	{ "describe", schedule_describe, "schedule describe" },
	{ "delete", schedule_delete, "schedule delete" },
	{ "pause", schedule_pause, "schedule pause" },
	{ "unpause", schedule_unpause, "schedule unpause" },
	{ NULL, NULL, NULL },
};

int st_cli_schedule_main(int argc, char **argv)
{
	return st_cli_dispatch("schedule", st_cli_schedule_usage, schedule_verbs, argc, argv);
}
