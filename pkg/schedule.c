#include "pkg/schedule.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "pkg/backup.h"
#include "pkg/cli_output.h"
#include "pkg/cron.h"
#include "pkg/server.h"
#include "pkg/util/json.h"

#define MSG_MAX 512

void st_schedule_decision_init(struct st_schedule_decision *d)
{
	memset(d, 0, sizeof(*d));
}

void st_schedule_decision_dispose(struct st_schedule_decision *d)
{
	if (d == NULL)
		return;
	json_object_put(d->backup);
	json_object_put(d->errors);
	memset(d, 0, sizeof(*d));
}

static void add_error(struct json_object *errors, const char *fmt, ...) ST_PRINTF(2, 3);

static void add_error(struct json_object *errors, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_array_add(errors, json_object_new_string(msg));
}

/* An RFC 3339 field as Unix seconds; -1 when absent or unreadable. */
static long long time_field(const struct json_object *obj, const char *key)
{
	const char *s = st_json_get_str(obj, key);
	int64_t t = 0;

	if (s == NULL || s[0] == '\0' || st_cli_time_parse(&t, s) < 0)
		return -1;
	return (long long)t;
}

static void check_cron(struct st_cron *cron, struct json_object *errors, const char *text)
{
	struct st_err err = ST_ERR_INIT;

	if (text == NULL || text[0] == '\0') {
		add_error(errors, "spec.schedule is empty: want a cron expression such as "
		                  "\"0 3 * * *\" or \"@every 6h\"");
		return;
	}
	if (st_cron_parse(cron, text, &err) < 0)
		add_error(errors,
		          "spec.schedule \"%.128s\": %s (want five fields: minute hour "
		          "day-of-month month day-of-week, or @hourly, @daily, @every 6h)",
		          text, st_err_text(&err));
}

static void check_template(struct json_object *errors, struct json_object *tmpl)
{
	struct st_err err = ST_ERR_INIT;
	struct json_object *ttl;
	long long secs = 0;

	if (tmpl == NULL)
		return;
	if (!json_object_is_type(tmpl, json_type_object)) {
		add_error(errors, "spec.template must be an object (a Backup spec)");
		return;
	}
	ttl = st_json_get(tmpl, "ttl");
	if (ttl != NULL && (!json_object_is_type(ttl, json_type_string) ||
	                    (json_object_get_string_len(ttl) > 0 &&
	                     st_backup_parse_duration(&secs, json_object_get_string(ttl)) < 0)))
		add_error(errors,
		          "spec.template.ttl \"%.64s\" is not a duration (want a Go duration "
		          "such as 720h0m0s or 24h)",
		          json_object_get_string(ttl));
	if (st_backup_validate_lists(st_json_get_arr(tmpl, "includedNamespaces"),
	                             st_json_get_arr(tmpl, "excludedNamespaces"), "Namespaces",
	                             &err) < 0)
		add_error(errors, "spec.template: %s", st_err_text(&err));
	st_err_clear(&err);
	if (st_backup_validate_lists(st_json_get_arr(tmpl, "includedResources"),
	                             st_json_get_arr(tmpl, "excludedResources"), "Resources",
	                             &err) < 0)
		add_error(errors, "spec.template: %s", st_err_text(&err));
}

/* Fills cron, or returns the validation messages (owned) of an unusable Schedule. */
static struct json_object *validate(struct st_cron *cron, struct json_object *schedule)
{
	struct json_object *spec = st_json_get_obj(schedule, "spec");
	const char *name = st_json_get_str(st_json_get_obj(schedule, "metadata"), "name");
	struct json_object *errors = json_object_new_array();

	if (name == NULL || name[0] == '\0')
		add_error(errors, "metadata.name is missing");
	else if (strlen(name) > ST_SCHEDULE_NAME_MAX)
		add_error(errors,
		          "metadata.name \"%s\" is longer than %d characters, too long for the "
		          "%s label of its backups; use a shorter name",
		          name, ST_SCHEDULE_NAME_MAX, ST_SCHEDULE_LABEL);
	check_cron(cron, errors, st_json_get_str(spec, "schedule"));
	check_template(errors, st_json_get(spec, "template"));
	if (json_object_array_length(errors) == 0) {
		json_object_put(errors);
		return NULL;
	}
	return errors;
}

static void copy_map(struct json_object *dst, struct json_object *src)
{
	if (src == NULL || !json_object_is_type(src, json_type_object))
		return;
	json_object_object_foreach(src, k, v)
	{
		if (json_object_is_type(v, json_type_string))
			st_json_add_str(dst, k, json_object_get_string(v));
	}
}

static struct json_object *owner_refs(const char *name, const char *uid)
{
	struct json_object *refs = json_object_new_array();
	struct json_object *ref = json_object_new_object();

	st_json_add_str(ref, "apiVersion", "stasis.io/v1alpha1");
	st_json_add_str(ref, "kind", "Schedule");
	st_json_add_str(ref, "name", name);
	st_json_add_str(ref, "uid", uid);
	json_object_object_add(ref, "controller", json_object_new_boolean(1));
	json_object_array_add(refs, ref);
	return refs;
}

/*
 * The Backup of one slot: labels of the Schedule and of the template's
 * metadata plus the schedule-name labels (as Velero builds it), the slot in
 * an annotation, the template as spec (without its metadata, which the
 * Backup CRD has no field for) with the default ttl.
 */
static struct json_object *new_backup(struct json_object *schedule, const char *bname, time_t slot)
{
	struct json_object *meta = st_json_get_obj(schedule, "metadata");
	struct json_object *sspec = st_json_get_obj(schedule, "spec");
	struct json_object *tmpl = st_json_get_obj(sspec, "template");
	const char *name = st_json_get_str(meta, "name");
	const char *ns = st_json_get_str(meta, "namespace");
	const char *uid = st_json_get_str(meta, "uid");
	const char *ttl = st_json_get_str(tmpl, "ttl");
	struct json_object *b = json_object_new_object();
	struct json_object *bmeta = json_object_new_object();
	struct json_object *labels = json_object_new_object();
	struct json_object *ann = json_object_new_object();
	struct json_object *spec = NULL;
	char ts[32];

	st_json_add_str(b, "apiVersion", "stasis.io/v1alpha1");
	st_json_add_str(b, "kind", "Backup");
	st_json_add_str(bmeta, "name", bname);
	if (ns != NULL)
		st_json_add_str(bmeta, "namespace", ns);
	copy_map(labels, st_json_get_obj(meta, "labels"));
	copy_map(labels, st_json_get_obj(st_json_get_obj(tmpl, "metadata"), "labels"));
	st_json_add_str(labels, ST_SCHEDULE_VELERO_LABEL, name);
	st_json_add_str(labels, ST_SCHEDULE_LABEL, name);
	json_object_object_add(bmeta, "labels", labels);
	st_backup_format_time(ts, sizeof(ts), (long long)slot);
	st_json_add_str(ann, ST_SCHEDULE_TIME_ANNOTATION, ts);
	json_object_object_add(bmeta, "annotations", ann);
	if (st_json_get_bool(sspec, "useOwnerReferencesInBackup", false) && uid != NULL)
		json_object_object_add(bmeta, "ownerReferences", owner_refs(name, uid));
	json_object_object_add(b, "metadata", bmeta);
	if (tmpl == NULL || json_object_deep_copy(tmpl, &spec, NULL) != 0 || spec == NULL)
		spec = json_object_new_object();
	json_object_object_del(spec, "metadata");
	if (ttl == NULL || ttl[0] == '\0')
		st_json_add_str(spec, "ttl", ST_BACKUP_DEFAULT_TTL);
	json_object_object_add(b, "spec", spec);
	return b;
}

/* The slot the next one counts from: the newest known backup, else the Schedule's creation. */
static long long plan_base(struct json_object *schedule, long long latest_backup_slot,
                           long long now)
{
	long long last = time_field(st_json_get_obj(schedule, "status"), "lastBackup");

	if (latest_backup_slot > last)
		last = latest_backup_slot;
	if (last < 0)
		last = time_field(st_json_get_obj(schedule, "metadata"), "creationTimestamp");
	return last < 0 ? now : last;
}

int st_schedule_decide(struct st_schedule_decision *out, struct json_object *schedule,
                       long long latest_backup_slot, long long now, struct st_err *err)
{
	const char *name = st_json_get_str(st_json_get_obj(schedule, "metadata"), "name");
	struct st_cron_plan plan;
	struct st_cron cron;
	int rc;

	st_schedule_decision_dispose(out);
	memset(&cron, 0, sizeof(cron));
	out->errors = validate(&cron, schedule);
	if (out->errors != NULL) {
		out->action = ST_SCHEDULE_INVALID;
		return 0;
	}
	if (st_json_get_bool(st_json_get_obj(schedule, "spec"), "paused", false)) {
		out->action = ST_SCHEDULE_PAUSED;
		return 0;
	}
	out->last = (time_t)plan_base(schedule, latest_backup_slot, now);
	if ((rc = st_cron_plan(&plan, &cron, out->last, (time_t)now)) < 0)
		return st_err_set(err, rc, "schedule %s: time %lld or %lld is out of range", name,
		                  (long long)out->last, now);
	out->next = plan.next;
	if (!plan.run_now) {
		out->action = ST_SCHEDULE_WAIT;
		return 0;
	}
	if ((rc = st_schedule_backup_name(out->backup_name, sizeof(out->backup_name), name,
	                                  (long long)plan.run_at)) < 0)
		return st_err_set(err, rc, "schedule %s: no backup name for time %lld", name,
		                  (long long)plan.run_at);
	out->action = ST_SCHEDULE_CREATE;
	out->slot = plan.run_at;
	out->skipped = plan.skipped;
	out->backup = new_backup(schedule, out->backup_name, plan.run_at);
	return 0;
}

int st_schedule_backup_name(char *buf, size_t size, const char *schedule, long long slot)
{
	time_t t = (time_t)slot;
	struct tm tm;
	char ts[16];
	int n;

	if (slot < 0 || slot > 253402300799LL || gmtime_r(&t, &tm) == NULL ||
	    strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm) != 14)
		return ST_EINVAL;
	n = snprintf(buf, size, "%s-%s", schedule, ts);
	if (n < 0 || (size_t)n >= size)
		return ST_ETOOBIG;
	return 0;
}

/* The time of a "YYYYMMDDhhmmss" suffix; -1 when it is not one. */
static long long parse_stamp(const char *s)
{
	struct tm tm;
	const char *end;
	size_t i;

	if (strlen(s) != 14)
		return -1;
	for (i = 0; i < 14; i++)
		if (s[i] < '0' || s[i] > '9')
			return -1;
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y%m%d%H%M%S", &tm);
	if (end == NULL || *end != '\0')
		return -1;
	return (long long)timegm(&tm);
}

long long st_schedule_backup_slot(struct json_object *backup, const char *schedule)
{
	struct json_object *meta = st_json_get_obj(backup, "metadata");
	long long t = time_field(st_json_get_obj(meta, "annotations"), ST_SCHEDULE_TIME_ANNOTATION);
	const char *name = st_json_get_str(meta, "name");
	size_t n = schedule != NULL ? strlen(schedule) : 0;

	if (t >= 0 || name == NULL || n == 0)
		return t;
	if (strncmp(name, schedule, n) != 0 || name[n] != '-')
		return -1;
	return parse_stamp(name + n + 1);
}

static bool finished(const char *phase)
{
	static const char *const done[] = { "Completed", "PartiallyFailed", "Failed",
		                            "FailedValidation" };
	size_t i;

	for (i = 0; phase != NULL && i < sizeof(done) / sizeof(done[0]); i++)
		if (strcmp(phase, done[i]) == 0)
			return true;
	return false;
}

bool st_schedule_backup_expired(struct json_object *backup, long long now)
{
	struct json_object *meta = st_json_get_obj(backup, "metadata");
	struct json_object *status = st_json_get_obj(backup, "status");
	const char *asked =
	        st_json_get_str(st_json_get_obj(meta, "annotations"), ST_SERVER_DELETE_ANNOTATION);
	long long exp = time_field(status, "expiration");

	if (!finished(st_json_get_str(status, "phase")) || exp < 0 || exp > now)
		return false;
	if (asked != NULL && strcmp(asked, "true") == 0)
		return false;
	return st_json_get_str(meta, "deletionTimestamp") == NULL;
}
