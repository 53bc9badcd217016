/*
 * Cron schedules for Schedule resources.
 *
 * An expression is either five fields (minute hour day-of-month month
 * day-of-week) or a descriptor: @yearly/@annually, @monthly, @weekly,
 * @daily/@midnight, @hourly, or `@every <duration>` ("@every 1h30m").
 * Fields take `*`, lists `1,5,9`, ranges `1-5`, steps on a star, a range
 * or a start (`1-30/2`, `5/15` = 5-max/15, and a star then `/15`), month
 * names JAN-DEC and day names SUN-SAT in any case; day-of-week 0 and 7
 * are both Sunday (so FRI-SUN works) and `?` means `*` in the two day
 * fields. Parsing
 * compiles the fields into bit sets and rejects expressions that can never
 * fire ("0 0 30 2 *"). @every takes whole seconds, at least one.
 *
 * Days follow the rule of Vixie cron and of robfig/cron (which Velero and
 * Kubernetes CronJobs use): when both day fields are restricted (neither is
 * exactly `*` or `?`), a day matches if either field matches; otherwise
 * both must match, so the restricted one decides.
 *
 * All times are UTC seconds since the epoch. A parsed struct st_cron is a
 * plain value: copy it freely, it owns no memory and is read-only after
 * parsing, so any number of threads may use one at once.
 */
#ifndef ST_PKG_CRON_H
#define ST_PKG_CRON_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "pkg/util/err.h"

/* The longest expression accepted (bytes, without the terminating NUL). */
#define ST_CRON_MAX_LEN 256

/*
 * A compiled expression. Callers keep it on the stack or in their own
 * structs; the fields are read by this module only.
 */
struct st_cron {
	uint64_t minutes; /* bit m: minute m (0-59) */
	uint32_t hours;   /* bit h: hour h (0-23) */
	uint32_t mdays;   /* bit d: day of month d (1-31) */
	uint16_t months;  /* bit m: month m (1-12) */
	uint8_t wdays;    /* bit w: weekday w (0 = Sunday .. 6) */
	bool mday_star;   /* day-of-month field was `*` or `?` */
	bool wday_star;   /* day-of-week field was `*` or `?` */
	long long every;  /* @every interval in seconds; 0 for calendar schedules */
};

/*
 * Compiles expr into *out. Leading and trailing blanks are ignored, fields
 * are separated by blanks. On failure returns ST_EINVAL and err names the
 * field and the offending token, e.g. `hour: "25" is out of range 0-23`;
 * *out is then left zeroed.
 */
int st_cron_parse(struct st_cron *out, const char *expr, struct st_err *err) ST_WARN_UNUSED;

/*
 * The first time strictly after `after` at which c fires: a whole minute
 * for calendar schedules, after + interval for @every. `after` must lie in
 * years 1970-9999, else ST_EINVAL. ST_ENOTFOUND only if no time exists
 * before the year 10000 (a parsed expression always fires within 8 years).
 */
int st_cron_next(time_t *next_out, const struct st_cron *c, time_t after) ST_WARN_UNUSED;

/*
 * What a scheduler should do at `now`, given its last run.
 *   run_now  a scheduled time in (last, now] has come: run once, now.
 *   run_at   that time: the most recent scheduled time <= now. Earlier
 *            missed times are dropped, never run in a burst.
 *   skipped  true when run_at is not the first time after last, i.e. at
 *            least one scheduled time was missed and is not run.
 *   next     the next regular time after the run (or after last when
 *            run_now is false); always > now.
 * For @every, scheduled times are last + k * interval. A last run in the
 * future (the clock stepped back) is treated as `now`. Callers that never
 * ran pass the schedule's creation time as last.
 */
struct st_cron_plan {
	bool run_now;
	bool skipped;
	time_t run_at;
	time_t next;
};

/* Fills *out as described above; ST_EINVAL for times outside st_cron_next's range. */
int st_cron_plan(struct st_cron_plan *out, const struct st_cron *c, time_t last,
                 time_t now) ST_WARN_UNUSED;

#endif
