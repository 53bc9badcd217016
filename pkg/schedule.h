/*
 * Schedules and retention: the decisions behind the controller's Schedule
 * and TTL handling, free of I/O so that they can be tested with any clock.
 *
 * A Schedule (stasis.io/v1alpha1, Velero's fields) has spec.schedule (a
 * pkg/cron expression), spec.template (a Backup spec), spec.paused and
 * spec.useOwnerReferencesInBackup; its status has phase (New, Enabled,
 * FailedValidation), lastBackup and validationErrors.
 *
 * Scheduled times ("slots") follow pkg/cron from the last slot that got a
 * Backup: status.lastBackup, or the newest slot among the Backups that
 * carry the schedule's label when that is later (a Backup created just
 * before a crash that left lastBackup behind), else the Schedule's
 * creation time. When slots were missed (the controller was down, or the
 * schedule paused), exactly one Backup is made, for the most recent missed
 * slot; the earlier ones are dropped, never run in a burst. A Backup is
 * named <schedule>-<YYYYMMDDhhmmss> after its slot (UTC), so creating it
 * twice for one slot fails with a conflict instead of making a second one.
 *
 * Retention: a finished Backup whose status.expiration has passed must be
 * deleted (the controller asks for it with the stasis.io/delete-requested
 * annotation, as `stasis backup delete` does).
 *
 * Every function is thread-safe; objects passed in are only read.
 */
#ifndef ST_PKG_SCHEDULE_H
#define ST_PKG_SCHEDULE_H

#include <stdbool.h>
#include <time.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

/* Labels every scheduled Backup carries (values: the Schedule's name). */
#define ST_SCHEDULE_LABEL        "stasis.io/schedule-name"
#define ST_SCHEDULE_VELERO_LABEL "velero.io/schedule-name"
/* Annotation of a scheduled Backup: its slot, RFC 3339 UTC. */
#define ST_SCHEDULE_TIME_ANNOTATION "stasis.io/scheduled-time"
/* A label value's limit, hence a Schedule name's. */
#define ST_SCHEDULE_NAME_MAX 63
/* <schedule>-<YYYYMMDDhhmmss> */
#define ST_SCHEDULE_BACKUP_NAME_MAX (ST_SCHEDULE_NAME_MAX + 15)

enum st_schedule_action {
	ST_SCHEDULE_WAIT = 0, /* valid, nothing due before `next` */
	ST_SCHEDULE_PAUSED,   /* valid but paused: nothing to do */
	ST_SCHEDULE_INVALID,  /* the spec is unusable: see errors */
	ST_SCHEDULE_CREATE,   /* create `backup` now */
};

struct st_schedule_decision {
	enum st_schedule_action action;
	time_t last;  /* the slot the plan counted from (WAIT, CREATE) */
	time_t slot;  /* CREATE: the scheduled time the Backup stands for */
	bool skipped; /* CREATE: earlier missed slots were dropped */
	time_t next;  /* WAIT, CREATE: the next slot after `slot` (or after `last`) */
	char backup_name[ST_SCHEDULE_BACKUP_NAME_MAX + 1]; /* CREATE */
	struct json_object *backup; /* CREATE: the Backup to create (owned) */
	struct json_object *errors; /* INVALID: array of messages (owned) */
};

/* Zeroes d. */
void st_schedule_decision_init(struct st_schedule_decision *d);
/* Releases the objects d owns and zeroes it; NULL is a no-op. */
void st_schedule_decision_dispose(struct st_schedule_decision *d);

/*
 * Decides what the Schedule object `schedule` needs at `now` (Unix
 * seconds). latest_backup_slot is the newest slot of an existing Backup
 * with the schedule's label (st_schedule_backup_slot), or -1 when unknown
 * or none. Validation comes first (every problem is listed: a missing or
 * unparsable spec.schedule, a template that is not an object, a bad
 * template ttl, Velero's include/exclude rules, a name too long for a
 * label), then pause, then the plan. *out must have been initialised; it is
 * disposed of first. Returns 0, or ST_EINVAL when `now` or the times lie
 * outside what pkg/cron handles (err says which); a bad spec is not an
 * error but action INVALID.
 */
int st_schedule_decide(struct st_schedule_decision *out, struct json_object *schedule,
                       long long latest_backup_slot, long long now,
                       struct st_err *err) ST_WARN_UNUSED;

/*
 * Writes "<schedule>-<YYYYMMDDhhmmss>" (slot in UTC) into buf. ST_ETOOBIG
 * when it does not fit, ST_EINVAL for a slot outside years 1970-9999.
 */
int st_schedule_backup_name(char *buf, size_t size, const char *schedule,
                            long long slot) ST_WARN_UNUSED;

/*
 * The slot a Backup was made for: its stasis.io/scheduled-time annotation,
 * else the timestamp suffix of its name when it is "<schedule>-<14
 * digits>"; -1 when neither says.
 */
long long st_schedule_backup_slot(struct json_object *backup, const char *schedule);

/*
 * True when backup must be deleted for its TTL: its phase is finished
 * (Completed, PartiallyFailed, Failed, FailedValidation), its
 * status.expiration is at or before now, and its deletion has not been
 * asked for yet (no stasis.io/delete-requested="true", no
 * deletionTimestamp). A Backup without an expiration never expires.
 */
bool st_schedule_backup_expired(struct json_object *backup, long long now);

#endif
