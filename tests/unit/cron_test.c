/*
 * Unit tests for pkg/cron. Expected times come from outside the module:
 * dates derived by hand (and built with the C library's timegm), and a
 * brute-force walk over every minute checked against a predicate written
 * per expression, so the module's bit sets and calendar code are never
 * their own oracle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "pkg/cron.h"

static time_t utc(int y, int mo, int d, int h, int mi)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	return timegm(&tm);
}

static struct st_cron parse_ok(const char *expr)
{
	struct st_cron c;
	struct st_err err = ST_ERR_INIT;
	int rc = st_cron_parse(&c, expr, &err);

	if (rc != 0)
		fail_msg("parse \"%s\": %s", expr, st_err_text(&err));
	return c;
}

static time_t next_of(const char *expr, time_t after)
{
	struct st_cron c = parse_ok(expr);
	time_t t = 0;

	assert_int_equal(st_cron_next(&t, &c, after), 0);
	return t;
}

struct hand_case {
	const char *expr;
	int after[5];
	int want[5];
};

/* Each expected time below was worked out on a calendar. */
static const struct hand_case hand_cases[] = {
	/* Leap days: 2028 is the next leap year; 2100 is not one, so 2096 -> 2104. */
	{ "0 0 29 2 *", { 2025, 1, 1, 0, 0 }, { 2028, 2, 29, 0, 0 } },
	{ "0 0 29 2 *", { 2096, 3, 1, 0, 0 }, { 2104, 2, 29, 0, 0 } },
	{ "0 0 29 2 *", { 2000, 1, 1, 0, 0 }, { 2000, 2, 29, 0, 0 } },
	/* Month ends: the 31st skips 30-day months and February. */
	{ "30 12 31 * *", { 2025, 4, 1, 0, 0 }, { 2025, 5, 31, 12, 30 } },
	{ "30 12 31 * *", { 2025, 5, 31, 12, 30 }, { 2025, 7, 31, 12, 30 } },
	{ "0 0 30 * *", { 2025, 1, 30, 0, 0 }, { 2025, 3, 30, 0, 0 } },
	/* Year rollover. */
	{ "59 23 31 12 *", { 2025, 12, 31, 23, 59 }, { 2026, 12, 31, 23, 59 } },
	{ "0 0 1 1 *", { 2025, 12, 31, 23, 59 }, { 2026, 1, 1, 0, 0 } },
	/* DOM and DOW both restricted: either matches (Fridays of Feb 2026: 6, 13, 20). */
	{ "0 0 13 * FRI", { 2026, 2, 1, 0, 0 }, { 2026, 2, 6, 0, 0 } },
	{ "0 0 13 * FRI", { 2026, 2, 6, 0, 0 }, { 2026, 2, 13, 0, 0 } },
	{ "0 0 13 * FRI", { 2026, 2, 13, 0, 0 }, { 2026, 2, 20, 0, 0 } },
	{ "0 0 1,15 * 3", { 2025, 12, 31, 12, 0 }, { 2026, 1, 1, 0, 0 } },
	{ "0 0 1,15 * 3", { 2026, 1, 1, 0, 0 }, { 2026, 1, 7, 0, 0 } },
	/* DOW only (DOM `*`): weekdays decide; 2026-01-03 is a Saturday. */
	{ "0 9 * * MON-FRI", { 2026, 1, 2, 9, 0 }, { 2026, 1, 5, 9, 0 } },
	/* DOM only (DOW `*`). */
	{ "0 9 15 * *", { 2026, 1, 2, 9, 0 }, { 2026, 1, 15, 9, 0 } },
	/* Sunday as 0 and as 7; 2026-01-04 is a Sunday. */
	{ "0 0 * * 0", { 2026, 1, 1, 0, 0 }, { 2026, 1, 4, 0, 0 } },
	{ "0 0 * * 7", { 2026, 1, 1, 0, 0 }, { 2026, 1, 4, 0, 0 } },
	{ "0 0 * * SUN", { 2026, 1, 1, 0, 0 }, { 2026, 1, 4, 0, 0 } },
	{ "0 0 * * 6-7", { 2026, 1, 1, 0, 0 }, { 2026, 1, 3, 0, 0 } },
	{ "0 0 * * FRI-SUN", { 2026, 1, 1, 0, 0 }, { 2026, 1, 2, 0, 0 } },
	{ "0 0 * * FRI-SUN", { 2026, 1, 3, 0, 0 }, { 2026, 1, 4, 0, 0 } },
	{ "0 0 * * FRI-SUN", { 2026, 1, 4, 0, 0 }, { 2026, 1, 9, 0, 0 } },
	{ "0 0 * * 6-0", { 2026, 1, 4, 0, 0 }, { 2026, 1, 10, 0, 0 } },
	/* Names and steps. */
	{ "0 0 1 jun-aug/2 *", { 2026, 1, 1, 0, 0 }, { 2026, 6, 1, 0, 0 } },
	{ "0 0 1 jun-aug/2 *", { 2026, 6, 1, 0, 0 }, { 2026, 8, 1, 0, 0 } },
	{ "0 0 1 jun-aug/2 *", { 2026, 8, 1, 0, 0 }, { 2027, 6, 1, 0, 0 } },
	{ "*/15 * * * *", { 2026, 1, 1, 10, 44 }, { 2026, 1, 1, 10, 45 } },
	{ "*/15 * * * *", { 2026, 1, 1, 23, 45 }, { 2026, 1, 2, 0, 0 } },
	{ "10/20 * * * *", { 2026, 1, 1, 10, 50 }, { 2026, 1, 1, 11, 10 } },
	{ "1-5/2 * * * *", { 2026, 1, 1, 10, 3 }, { 2026, 1, 1, 10, 5 } },
	{ "1-5/2 * * * *", { 2026, 1, 1, 10, 5 }, { 2026, 1, 1, 11, 1 } },
	/* Descriptors. 2026-01-01 is a Thursday. */
	{ "@yearly", { 2026, 1, 1, 0, 0 }, { 2027, 1, 1, 0, 0 } },
	{ "@annually", { 2026, 3, 1, 0, 0 }, { 2027, 1, 1, 0, 0 } },
	{ "@monthly", { 2026, 1, 31, 0, 0 }, { 2026, 2, 1, 0, 0 } },
	{ "@weekly", { 2026, 1, 1, 0, 0 }, { 2026, 1, 4, 0, 0 } },
	{ "@daily", { 2026, 2, 28, 0, 0 }, { 2026, 3, 1, 0, 0 } },
	{ "@midnight", { 2028, 2, 28, 0, 0 }, { 2028, 2, 29, 0, 0 } },
	{ "@hourly", { 2026, 1, 1, 23, 0 }, { 2026, 1, 2, 0, 0 } },
	{ "  @HOURLY  ", { 2026, 1, 1, 5, 30 }, { 2026, 1, 1, 6, 0 } },
};

static void test_hand_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(hand_cases) / sizeof(hand_cases[0]); i++) {
		const struct hand_case *k = &hand_cases[i];
		time_t after = utc(k->after[0], k->after[1], k->after[2], k->after[3], k->after[4]);
		time_t want = utc(k->want[0], k->want[1], k->want[2], k->want[3], k->want[4]);
		time_t got = next_of(k->expr, after);

		if (got != want)
			fail_msg("\"%s\" case %zu: got %lld want %lld", k->expr, i, (long long)got,
			         (long long)want);
		/* Seconds inside the minute do not matter. */
		assert_int_equal(next_of(k->expr, after + 59), want);
	}
}

typedef bool (*pred_fn)(const struct tm *tm);

static bool p_quarter_workhours(const struct tm *t)
{
	return t->tm_min % 15 == 0 && t->tm_hour >= 9 && t->tm_hour <= 17 && t->tm_wday >= 1 &&
	       t->tm_wday <= 5;
}

static bool p_fri13_or_first(const struct tm *t)
{
	return t->tm_min == 30 && t->tm_hour == 4 &&
	       (t->tm_mday == 13 || t->tm_mday == 1 || t->tm_wday == 5);
}

static bool p_odd_hours_weekend(const struct tm *t)
{
	return t->tm_min == 7 && t->tm_hour % 2 == 1 && (t->tm_wday == 0 || t->tm_wday == 6);
}

static bool p_quarterly_last_days(const struct tm *t)
{
	return t->tm_min == 0 && t->tm_hour == 0 && t->tm_mday >= 28 &&
	       (t->tm_mon == 0 || t->tm_mon == 3 || t->tm_mon == 6 || t->tm_mon == 9);
}

static bool p_lists(const struct tm *t)
{
	return (t->tm_min == 0 || t->tm_min == 20 || t->tm_min == 45) &&
	       (t->tm_hour == 2 || (t->tm_hour >= 10 && t->tm_hour <= 12)) && t->tm_mon == 1;
}

static bool p_dom_step(const struct tm *t)
{
	return t->tm_min == 0 && t->tm_hour == 6 && (t->tm_mday - 1) % 10 == 0;
}

static void test_brute_force(void **state)
{
	static const struct {
		const char *expr;
		pred_fn pred;
	} cases[] = {
		{ "*/15 9-17 * * mon-fri", p_quarter_workhours },
		{ "30 4 1,13 * 5", p_fri13_or_first },
		{ "7 1-23/2 * * SAT,SUN", p_odd_hours_weekend },
		{ "0 0 28-31 1/3 *", p_quarterly_last_days },
		{ "0,20,45 2,10-12 * FEB ?", p_lists },
		{ "0 6 */10 * *", p_dom_step },
	};
	/* Starts around a leap day, a year end and ordinary dates. */
	const time_t starts[] = { utc(2028, 2, 27, 23, 50), utc(2025, 12, 30, 17, 3),
		                  utc(2026, 7, 13, 4, 29) + 31, utc(2100, 2, 27, 0, 0) };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct st_cron c = parse_ok(cases[i].expr);

		for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++) {
			time_t after = starts[s];

			/* Follow 40 consecutive runs; each must be the first matching minute. */
			for (int run = 0; run < 40; run++) {
				time_t got = 0;
				time_t want = after - after % 60 + 60;
				struct tm tm;

				for (;; want += 60) {
					assert_non_null(gmtime_r(&want, &tm));
					if (cases[i].pred(&tm))
						break;
					assert_true(want - after < 400LL * 86400);
				}
				assert_int_equal(st_cron_next(&got, &c, after), 0);
				if (got != want)
					fail_msg("\"%s\" after %lld: got %lld want %lld",
					         cases[i].expr, (long long)after, (long long)got,
					         (long long)want);
				after = got;
			}
		}
	}
}

static void test_every(void **state)
{
	struct st_cron c;
	time_t t = 0;

	(void)state;
	c = parse_ok("@every 1h30m");
	assert_int_equal(c.every, 5400);
	assert_int_equal(st_cron_next(&t, &c, 1000), 0);
	assert_int_equal(t, 1000 + 5400);
	c = parse_ok("@every   5m");
	assert_int_equal(st_cron_next(&t, &c, 7), 0);
	assert_int_equal(t, 307);
	c = parse_ok("@every 90s");
	assert_int_equal(c.every, 90);
	c = parse_ok("@EVERY 24h");
	assert_int_equal(c.every, 86400);
}

static void expect_invalid(const char *expr, const char *needle)
{
	struct st_cron c;
	struct st_err err = ST_ERR_INIT;

	c.minutes = 1;
	assert_int_equal(st_cron_parse(&c, expr, &err), ST_EINVAL);
	assert_int_equal(c.minutes, 0);
	if (strstr(st_err_text(&err), needle) == NULL)
		fail_msg("\"%s\": message \"%s\" lacks \"%s\"", expr, st_err_text(&err), needle);
}

static void test_invalid(void **state)
{
	(void)state;
	expect_invalid("", "empty");
	expect_invalid("   ", "empty");
	expect_invalid("* * * *", "4 fields");
	expect_invalid("* * * * * *", "more than 5");
	expect_invalid("60 * * * *", "minute: \"60\" is out of range 0-59");
	expect_invalid("* 24 * * *", "hour: \"24\"");
	expect_invalid("* * 0 * *", "day-of-month: \"0\"");
	expect_invalid("* * 32 * *", "day-of-month: \"32\"");
	expect_invalid("* * * 13 *", "month: \"13\"");
	expect_invalid("* * * * 8", "day-of-week: \"8\"");
	expect_invalid("* * * FOO *", "month: \"FOO\" is not a value");
	expect_invalid("* * * * MON-FOO", "day-of-week: \"MON-FOO\"");
	expect_invalid("* * * JANUARY *", "month: \"JANUARY\"");
	expect_invalid("* * * * JAN", "day-of-week: \"JAN\"");
	expect_invalid("5-1 * * * *", "minute: \"5-1\" is a backwards range");
	expect_invalid("* * * * SAT-MON", "day-of-week: \"SAT-MON\" is a backwards range");
	expect_invalid("*/0 * * * *", "minute: \"*/0\" has a bad step");
	expect_invalid("*/ * * * *", "bad step");
	expect_invalid("*/x * * * *", "bad step");
	expect_invalid("*/61 * * * *", "steps past");
	expect_invalid("1,,2 * * * *", "minute: \"1,,2\" has an empty list element");
	expect_invalid("1, * * * *", "empty list element");
	expect_invalid("-1 * * * *", "minute: \"-1\"");
	expect_invalid("? * * * *", "minute: \"?\"");
	expect_invalid("* * * * 1-", "day-of-week");
	expect_invalid("99999999999 * * * *", "minute");
	expect_invalid("0 0 30 2 *", "never run");
	expect_invalid("0 0 31 4,6,9,11 *", "never run");
	expect_invalid("@often", "not a descriptor");
	expect_invalid("@daily 5", "not a descriptor");
	expect_invalid("@every", "@every: \"\"");
	expect_invalid("@every 5x", "@every: \"5x\" is not a duration");
	expect_invalid("@every 0s", "whole seconds");
	expect_invalid("@every 1500ms", "whole seconds");
	expect_invalid("@every 1000000h", "whole seconds");
	{
		char longexpr[ST_CRON_MAX_LEN + 10];

		memset(longexpr, '1', sizeof(longexpr) - 1);
		longexpr[sizeof(longexpr) - 1] = '\0';
		expect_invalid(longexpr, "longer than");
	}
	/* The same schedules that can run are accepted. */
	(void)parse_ok("0 0 30 2 MON");
	(void)parse_ok("0 0 31 4,5 *");
	(void)parse_ok("0 0 29 2 *");
	(void)parse_ok("\t0\t0 * * *\n");
}

static void test_range_limits(void **state)
{
	struct st_cron c = parse_ok("* * * * *");
	time_t t = 0;

	(void)state;
	assert_int_equal(st_cron_next(&t, &c, -1), ST_EINVAL);
	assert_int_equal(st_cron_next(&t, &c, (time_t)253402300800LL), ST_EINVAL);
	assert_int_equal(st_cron_next(&t, &c, 0), 0);
	assert_int_equal(t, 60);
	/* The last minute of 9999 has no successor. */
	assert_int_equal(st_cron_next(&t, &c, utc(9999, 12, 31, 23, 59)), ST_ENOTFOUND);
}

static void test_plan(void **state)
{
	struct st_cron c = parse_ok("0 2 * * *");
	struct st_cron_plan p;

	(void)state;
	/* Not due yet: next is the first time after the last run. */
	assert_int_equal(st_cron_plan(&p, &c, utc(2026, 1, 1, 2, 0), utc(2026, 1, 1, 20, 0)), 0);
	assert_false(p.run_now);
	assert_int_equal(p.next, utc(2026, 1, 2, 2, 0));
	/* Due exactly now: a regular run, nothing skipped. */
	assert_int_equal(st_cron_plan(&p, &c, utc(2026, 1, 1, 2, 0), utc(2026, 1, 2, 2, 0)), 0);
	assert_true(p.run_now);
	assert_false(p.skipped);
	assert_int_equal(p.run_at, utc(2026, 1, 2, 2, 0));
	assert_int_equal(p.next, utc(2026, 1, 3, 2, 0));
	/* Down for ten days: one catch-up for the latest missed time, not ten runs. */
	assert_int_equal(st_cron_plan(&p, &c, utc(2026, 1, 1, 2, 0), utc(2026, 1, 11, 9, 17)), 0);
	assert_true(p.run_now);
	assert_true(p.skipped);
	assert_int_equal(p.run_at, utc(2026, 1, 11, 2, 0));
	assert_int_equal(p.next, utc(2026, 1, 12, 2, 0));
	/* Down for a year on a dense schedule: still one run, found quickly. */
	c = parse_ok("*/5 * * * *");
	assert_int_equal(st_cron_plan(&p, &c, utc(2025, 1, 1, 0, 0), utc(2026, 3, 4, 5, 33)), 0);
	assert_true(p.run_now);
	assert_int_equal(p.run_at, utc(2026, 3, 4, 5, 30));
	assert_int_equal(p.next, utc(2026, 3, 4, 5, 35));
	/* Clock stepped back: the last run is in the future, treated as now. */
	assert_int_equal(st_cron_plan(&p, &c, utc(2026, 3, 5, 0, 0), utc(2026, 3, 4, 5, 33)), 0);
	assert_false(p.run_now);
	assert_int_equal(p.next, utc(2026, 3, 4, 5, 35));
	/* @every keeps its phase: slots are last + k * interval. */
	c = parse_ok("@every 1h");
	assert_int_equal(st_cron_plan(&p, &c, 3600, 3600 * 5 + 100), 0);
	assert_true(p.run_now);
	assert_true(p.skipped);
	assert_int_equal(p.run_at, 3600 * 5);
	assert_int_equal(p.next, 3600 * 6);
	assert_int_equal(st_cron_plan(&p, &c, 3600, 3600 + 100), 0);
	assert_false(p.run_now);
	assert_int_equal(p.next, 7200);
	assert_int_equal(st_cron_plan(&p, &c, 3600, -5), ST_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_table),   cmocka_unit_test(test_brute_force),
		cmocka_unit_test(test_every),        cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_range_limits), cmocka_unit_test(test_plan),
	};

	return cmocka_run_group_tests_name("cron", tests, NULL, NULL);
}
