/*
 * Unit tests for pkg/schedule: when a Schedule is due, the Backup it makes
 * (name, labels, annotation, spec), catch-up after downtime (one Backup,
 * not a burst) over a simulated timeline, no second Backup for a slot that
 * already has one, pause, validation messages and the TTL decision.
 * Expected times were worked out on a calendar and built with timegm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "pkg/backup.h"
#include "pkg/schedule.h"
#include "pkg/util/json.h"

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	return timegm(&tm);
}

static struct json_object *parse(const char *text)
{
	struct json_object *o = json_tokener_parse(text);

	if (o == NULL)
		fail_msg("bad fixture: %s", text);
	return o;
}

/* A Schedule named nightly created 2026-01-01T10:00:00Z with spec (JSON text). */
static struct json_object *schedule(const char *spec, const char *status)
{
	char buf[2048];

	(void)snprintf(buf, sizeof(buf),
	               "{\"apiVersion\":\"stasis.io/v1alpha1\",\"kind\":\"Schedule\","
	               "\"metadata\":{\"name\":\"nightly\",\"namespace\":\"stasis\","
	               "\"uid\":\"u-1\",\"creationTimestamp\":\"2026-01-01T10:00:00Z\","
	               "\"labels\":{\"team\":\"db\"}},"
	               "\"spec\":%s,\"status\":%s}",
	               spec, status != NULL ? status : "{}");
	return parse(buf);
}

static void decide(struct st_schedule_decision *d, struct json_object *s, long long latest,
                   time_t now)
{
	struct st_err err = ST_ERR_INIT;

	if (st_schedule_decide(d, s, latest, (long long)now, &err) != 0)
		fail_msg("decide: %s", st_err_text(&err));
}

static void set_last_backup(struct json_object *s, time_t t)
{
	struct json_object *st = st_json_get_obj(s, "status");
	char ts[32];

	st_backup_format_time(ts, sizeof(ts), (long long)t);
	st_json_add_str(st, "lastBackup", ts);
}

static void test_names(void **state)
{
	char buf[80];

	(void)state;
	assert_int_equal(
	        st_schedule_backup_name(buf, sizeof(buf), "nightly", utc(2026, 1, 2, 3, 4, 5)), 0);
	assert_string_equal(buf, "nightly-20260102030405");
	assert_int_equal(st_schedule_backup_name(buf, sizeof(buf), "s", 0), 0);
	assert_string_equal(buf, "s-19700101000000");
	assert_int_equal(st_schedule_backup_name(buf, 22, "nightly", 0), ST_ETOOBIG);
	assert_int_equal(st_schedule_backup_name(buf, sizeof(buf), "nightly", -5), ST_EINVAL);
}

static void test_first_run_and_backup(void **state)
{
	struct st_schedule_decision d;
	struct json_object *s =
	        schedule("{\"schedule\":\"0 3 * * *\",\"template\":{\"includedNamespaces\":"
	                 "[\"test\"],\"storageLocation\":\"default\",\"metadata\":{\"labels\":"
	                 "{\"tier\":\"gold\"}}}}",
	                 NULL);
	struct json_object *b, *meta, *labels, *spec;

	(void)state;
	st_schedule_decision_init(&d);
	/* Counted from the creation time (10:00 on the 1st): the first slot is 03:00 the 2nd. */
	decide(&d, s, -1, utc(2026, 1, 2, 2, 59, 59));
	assert_int_equal(d.action, ST_SCHEDULE_WAIT);
	assert_int_equal((long long)d.next, (long long)utc(2026, 1, 2, 3, 0, 0));
	assert_null(d.backup);
	decide(&d, s, -1, utc(2026, 1, 2, 3, 0, 7));
	assert_int_equal(d.action, ST_SCHEDULE_CREATE);
	assert_false(d.skipped);
	assert_int_equal((long long)d.slot, (long long)utc(2026, 1, 2, 3, 0, 0));
	assert_int_equal((long long)d.next, (long long)utc(2026, 1, 3, 3, 0, 0));
	assert_string_equal(d.backup_name, "nightly-20260102030000");
	b = d.backup;
	meta = st_json_get_obj(b, "metadata");
	labels = st_json_get_obj(meta, "labels");
	spec = st_json_get_obj(b, "spec");
	assert_string_equal(st_json_get_str(b, "kind"), "Backup");
	assert_string_equal(st_json_get_str(meta, "name"), "nightly-20260102030000");
	assert_string_equal(st_json_get_str(meta, "namespace"), "stasis");
	assert_string_equal(st_json_get_str(labels, "stasis.io/schedule-name"), "nightly");
	assert_string_equal(st_json_get_str(labels, "velero.io/schedule-name"), "nightly");
	assert_string_equal(st_json_get_str(labels, "team"), "db");
	assert_string_equal(st_json_get_str(labels, "tier"), "gold");
	assert_string_equal(
	        st_json_get_str(st_json_get_obj(meta, "annotations"), "stasis.io/scheduled-time"),
	        "2026-01-02T03:00:00Z");
	assert_null(st_json_get(meta, "ownerReferences"));
	assert_string_equal(st_json_get_str(spec, "ttl"), "720h0m0s");
	assert_string_equal(st_json_get_str(spec, "storageLocation"), "default");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(
	                            st_json_get_arr(spec, "includedNamespaces"), 0)),
	                    "test");
	assert_null(st_json_get(spec, "metadata"));
	/* The template itself is untouched. */
	assert_null(st_json_get(st_json_get_obj(st_json_get_obj(s, "spec"), "template"), "ttl"));
	assert_int_equal(st_schedule_backup_slot(b, "nightly"), (long long)d.slot);
	st_schedule_decision_dispose(&d);
	json_object_put(s);
}

/*
 * Walks a simulated clock from `from` to `to` in steps of `step` seconds,
 * skipping [down_from, down_to) (the controller is down), and applies each
 * decision as the controller does (lastBackup = slot). Returns the number
 * of Backups made; slots[] receives their slots.
 */
static int simulate(struct json_object *s, time_t from, time_t to, int step, time_t down_from,
                    time_t down_to, time_t *slots, int max)
{
	struct st_schedule_decision d;
	int n = 0;
	time_t now;

	st_schedule_decision_init(&d);
	for (now = from; now < to; now += step) {
		if (now >= down_from && now < down_to)
			continue;
		decide(&d, s, -1, now);
		assert_int_not_equal(d.action, ST_SCHEDULE_INVALID);
		if (d.action != ST_SCHEDULE_CREATE)
			continue;
		assert_true(d.next > now);
		if (n < max)
			slots[n] = d.slot;
		n++;
		set_last_backup(s, d.slot);
	}
	st_schedule_decision_dispose(&d);
	return n;
}

static void test_catch_up_daily(void **state)
{
	struct json_object *s = schedule("{\"schedule\":\"0 3 * * *\"}", NULL);
	time_t slots[16];
	int n;

	(void)state;
	/*
	 * Running from Jan 1 10:00 to Jan 8 12:00, checked every minute, down from
	 * Jan 2 04:00 to Jan 5 10:00: the slots of Jan 3, 4 and 5 are missed and
	 * only Jan 5 03:00 is made up for, at 10:00.
	 */
	n = simulate(s, utc(2026, 1, 1, 10, 0, 0), utc(2026, 1, 8, 12, 0, 0), 60,
	             utc(2026, 1, 2, 4, 0, 0), utc(2026, 1, 5, 10, 0, 0), slots, 16);
	assert_int_equal(n, 5);
	assert_int_equal((long long)slots[0], (long long)utc(2026, 1, 2, 3, 0, 0));
	assert_int_equal((long long)slots[1], (long long)utc(2026, 1, 5, 3, 0, 0));
	assert_int_equal((long long)slots[2], (long long)utc(2026, 1, 6, 3, 0, 0));
	assert_int_equal((long long)slots[3], (long long)utc(2026, 1, 7, 3, 0, 0));
	assert_int_equal((long long)slots[4], (long long)utc(2026, 1, 8, 3, 0, 0));
	json_object_put(s);
}

static void test_catch_up_every(void **state)
{
	struct st_schedule_decision d;
	struct json_object *s = schedule("{\"schedule\":\"@every 2s\"}", NULL);
	time_t t0 = utc(2026, 1, 1, 10, 0, 0);
	time_t slots[64];
	int n;

	(void)state;
	/* Up for 11 s (5 backups), down for 60 s, up again for 9 s. */
	n = simulate(s, t0, t0 + 80, 1, t0 + 11, t0 + 71, slots, 64);
	/* t0+2..t0+10: 5; catch-up at t0+71 for slot t0+70; then t0+72..t0+78: 4. */
	assert_int_equal(n, 10);
	assert_int_equal((long long)(slots[4] - t0), 10);
	assert_int_equal((long long)(slots[5] - t0), 70);
	assert_int_equal((long long)(slots[6] - t0), 72);
	assert_int_equal((long long)(slots[9] - t0), 78);
	/* The catch-up decision reports the dropped slots. */
	set_last_backup(s, t0 + 10);
	st_schedule_decision_init(&d);
	decide(&d, s, -1, t0 + 71);
	assert_int_equal(d.action, ST_SCHEDULE_CREATE);
	assert_true(d.skipped);
	assert_int_equal((long long)(d.slot - t0), 70);
	assert_int_equal((long long)(d.next - t0), 72);
	st_schedule_decision_dispose(&d);
	json_object_put(s);
}

static void test_existing_backup_blocks_slot(void **state)
{
	struct st_schedule_decision d;
	struct json_object *s = schedule("{\"schedule\":\"0 3 * * *\"}", NULL);
	time_t slot = utc(2026, 1, 2, 3, 0, 0);
	struct json_object *b;

	(void)state;
	st_schedule_decision_init(&d);
	/*
	 * A Backup for 03:00 exists but lastBackup was never written (a crash in
	 * between): no second Backup for that slot.
	 */
	decide(&d, s, (long long)slot, utc(2026, 1, 2, 3, 5, 0));
	assert_int_equal(d.action, ST_SCHEDULE_WAIT);
	assert_int_equal((long long)d.next, (long long)utc(2026, 1, 3, 3, 0, 0));
	/* An older lastBackup loses to the newer labelled Backup. */
	set_last_backup(s, utc(2026, 1, 1, 3, 0, 0));
	decide(&d, s, (long long)slot, utc(2026, 1, 2, 3, 5, 0));
	assert_int_equal(d.action, ST_SCHEDULE_WAIT);
	/* Without that knowledge the same slot would be due. */
	decide(&d, s, -1, utc(2026, 1, 2, 3, 5, 0));
	assert_int_equal(d.action, ST_SCHEDULE_CREATE);
	assert_int_equal((long long)d.slot, (long long)slot);
	st_schedule_decision_dispose(&d);
	/* The slot of an existing Backup: annotation first, else the name's suffix. */
	b = parse("{\"metadata\":{\"name\":\"nightly-20260102030000\"}}");
	assert_int_equal(st_schedule_backup_slot(b, "nightly"), (long long)slot);
	assert_int_equal(st_schedule_backup_slot(b, "night"), -1);
	assert_int_equal(st_schedule_backup_slot(b, "nightly-2026"), -1);
	json_object_put(b);
	b = parse("{\"metadata\":{\"name\":\"manual\",\"annotations\":{\"stasis.io/"
	          "scheduled-time\":\"2026-01-02T03:00:00Z\"}}}");
	assert_int_equal(st_schedule_backup_slot(b, "nightly"), (long long)slot);
	json_object_put(b);
	b = parse("{\"metadata\":{\"name\":\"nightly-2026010203000x\"}}");
	assert_int_equal(st_schedule_backup_slot(b, "nightly"), -1);
	json_object_put(b);
	json_object_put(s);
}

static void test_paused(void **state)
{
	struct st_schedule_decision d;
	struct json_object *s =
	        schedule("{\"schedule\":\"@every 1h\",\"paused\":true}", "{\"phase\":\"Enabled\"}");

	(void)state;
	st_schedule_decision_init(&d);
	set_last_backup(s, utc(2026, 1, 1, 12, 0, 0));
	decide(&d, s, -1, utc(2026, 1, 3, 12, 0, 0));
	assert_int_equal(d.action, ST_SCHEDULE_PAUSED);
	assert_null(d.backup);
	assert_null(d.errors);
	/* Unpaused two days later: one Backup, for the most recent slot. */
	json_object_object_add(st_json_get_obj(s, "spec"), "paused", json_object_new_boolean(0));
	decide(&d, s, -1, utc(2026, 1, 3, 12, 30, 0));
	assert_int_equal(d.action, ST_SCHEDULE_CREATE);
	assert_true(d.skipped);
	assert_int_equal((long long)d.slot, (long long)utc(2026, 1, 3, 12, 0, 0));
	st_schedule_decision_dispose(&d);
	json_object_put(s);
}

static const char *error_at(const struct st_schedule_decision *d, size_t i)
{
	assert_non_null(d->errors);
	assert_true(i < json_object_array_length(d->errors));
	return json_object_get_string(json_object_array_get_idx(d->errors, i));
}

static void test_validation(void **state)
{
	struct st_schedule_decision d;
	struct json_object *s;

	(void)state;
	st_schedule_decision_init(&d);
	s = schedule("{\"schedule\":\"0 25 * * *\",\"paused\":true}", NULL);
	decide(&d, s, -1, utc(2026, 1, 3, 0, 0, 0));
	/* Validation comes before pause. */
	assert_int_equal(d.action, ST_SCHEDULE_INVALID);
	assert_int_equal(json_object_array_length(d.errors), 1);
	assert_non_null(strstr(error_at(&d, 0), "spec.schedule \"0 25 * * *\""));
	assert_non_null(strstr(error_at(&d, 0), "hour"));
	assert_null(d.backup);
	json_object_put(s);

	s = schedule("{\"schedule\":\"every day\",\"template\":{\"ttl\":\"forever\"}}", NULL);
	decide(&d, s, -1, utc(2026, 1, 3, 0, 0, 0));
	assert_int_equal(d.action, ST_SCHEDULE_INVALID);
	assert_int_equal(json_object_array_length(d.errors), 2);
	assert_non_null(strstr(error_at(&d, 0), "spec.schedule \"every day\""));
	assert_non_null(strstr(error_at(&d, 1), "spec.template.ttl \"forever\""));
	json_object_put(s);

	s = schedule("{\"template\":[]}", NULL);
	decide(&d, s, -1, utc(2026, 1, 3, 0, 0, 0));
	assert_int_equal(json_object_array_length(d.errors), 2);
	assert_non_null(strstr(error_at(&d, 0), "spec.schedule is empty"));
	assert_non_null(strstr(error_at(&d, 1), "spec.template must be an object"));
	json_object_put(s);

	s = schedule("{\"schedule\":\"@daily\",\"template\":{\"excludedNamespaces\":[\"*\"]}}",
	             NULL);
	decide(&d, s, -1, utc(2026, 1, 3, 0, 0, 0));
	assert_int_equal(d.action, ST_SCHEDULE_INVALID);
	assert_non_null(strstr(error_at(&d, 0), "spec.template: "));
	json_object_put(s);

	/* A good ttl and an empty one are fine. */
	s = schedule("{\"schedule\":\"@every 30s\",\"template\":{\"ttl\":\"1h30m\"}}", NULL);
	decide(&d, s, -1, utc(2026, 1, 1, 10, 0, 0));
	assert_int_equal(d.action, ST_SCHEDULE_WAIT);
	assert_int_equal((long long)d.next, (long long)utc(2026, 1, 1, 10, 0, 30));
	decide(&d, s, -1, utc(2026, 1, 1, 10, 0, 30));
	assert_int_equal(d.action, ST_SCHEDULE_CREATE);
	assert_string_equal(st_json_get_str(st_json_get_obj(d.backup, "spec"), "ttl"), "1h30m");
	json_object_put(s);
	st_schedule_decision_dispose(&d);
}

static void test_owner_references(void **state)
{
	struct st_schedule_decision d;
	struct json_object *s = schedule("{\"schedule\":\"@hourly\","
	                                 "\"useOwnerReferencesInBackup\":true}",
	                                 NULL);
	struct json_object *ref;

	(void)state;
	st_schedule_decision_init(&d);
	decide(&d, s, -1, utc(2026, 1, 1, 11, 0, 1));
	assert_int_equal(d.action, ST_SCHEDULE_CREATE);
	assert_string_equal(d.backup_name, "nightly-20260101110000");
	ref = json_object_array_get_idx(
	        st_json_get_arr(st_json_get_obj(d.backup, "metadata"), "ownerReferences"), 0);
	assert_non_null(ref);
	assert_string_equal(st_json_get_str(ref, "kind"), "Schedule");
	assert_string_equal(st_json_get_str(ref, "name"), "nightly");
	assert_string_equal(st_json_get_str(ref, "uid"), "u-1");
	st_schedule_decision_dispose(&d);
	json_object_put(s);
}

struct ttl_case {
	const char *phase;
	const char *expiration;
	const char *annotation;
	bool deleting;
	bool want;
};

static void test_ttl(void **state)
{
	/* now = 2026-01-10T00:00:00Z */
	static const struct ttl_case cases[] = {
		{ "Completed", "2026-01-09T23:59:59Z", NULL, false, true },
		{ "Completed", "2026-01-10T00:00:00Z", NULL, false, true },
		{ "Completed", "2026-01-10T00:00:01Z", NULL, false, false },
		{ "PartiallyFailed", "2026-01-01T00:00:00Z", NULL, false, true },
		{ "Failed", "2026-01-01T00:00:00.5Z", NULL, false, true },
		{ "FailedValidation", "2026-01-01T00:00:00Z", NULL, false, true },
		{ "InProgress", "2026-01-01T00:00:00Z", NULL, false, false },
		{ "New", "2026-01-01T00:00:00Z", NULL, false, false },
		{ NULL, "2026-01-01T00:00:00Z", NULL, false, false },
		{ "Deleting", "2026-01-01T00:00:00Z", NULL, false, false },
		{ "Completed", NULL, NULL, false, false },
		{ "Completed", "2026-01-01T00:00:00Z", "true", false, false },
		{ "Completed", "2026-01-01T00:00:00Z", "false", false, true },
		{ "Completed", "2026-01-01T00:00:00Z", NULL, true, false },
	};
	long long now = (long long)utc(2026, 1, 10, 0, 0, 0);
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ttl_case *c = &cases[i];
		struct json_object *b = json_object_new_object();
		struct json_object *meta = json_object_new_object();
		struct json_object *st = json_object_new_object();

		st_json_add_str(meta, "name", "b");
		if (c->annotation != NULL) {
			struct json_object *ann = json_object_new_object();

			st_json_add_str(ann, "stasis.io/delete-requested", c->annotation);
			json_object_object_add(meta, "annotations", ann);
		}
		if (c->deleting)
			st_json_add_str(meta, "deletionTimestamp", "2026-01-09T00:00:00Z");
		if (c->phase != NULL)
			st_json_add_str(st, "phase", c->phase);
		if (c->expiration != NULL)
			st_json_add_str(st, "expiration", c->expiration);
		json_object_object_add(b, "metadata", meta);
		json_object_object_add(b, "status", st);
		if (st_schedule_backup_expired(b, now) != c->want)
			fail_msg("case %zu (%s, %s): want %d", i, c->phase ? c->phase : "-",
			         c->expiration ? c->expiration : "-", c->want);
		json_object_put(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_first_run_and_backup),
		cmocka_unit_test(test_catch_up_daily),
		cmocka_unit_test(test_catch_up_every),
		cmocka_unit_test(test_existing_backup_blocks_slot),
		cmocka_unit_test(test_paused),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_owner_references),
		cmocka_unit_test(test_ttl),
	};

	return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
