#include "pkg/cron.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/config.h"

/* 9999-12-31T23:59:59Z: past it, four-digit years and our search stop. */
#define MAX_TIME 253402300799LL
/* @every is bounded so that after + interval never overflows. */
#define MAX_EVERY (100LL * 366 * 86400)

struct field {
	const char *name;
	unsigned min;
	unsigned max;
	const char *const *names; /* names[i] is value min + i, or NULL */
	bool day;                 /* accepts `?` */
};

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul",
	                                   "aug", "sep", "oct", "nov", "dec", NULL };
static const char *const wday_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL };

enum { F_MINUTE, F_HOUR, F_MDAY, F_MONTH, F_WDAY, F_COUNT };

static const struct field fields[F_COUNT] = {
	{ "minute", 0, 59, NULL, false },          { "hour", 0, 23, NULL, false },
	{ "day-of-month", 1, 31, NULL, true },     { "month", 1, 12, month_names, false },
	{ "day-of-week", 0, 7, wday_names, true },
};

static const struct {
	const char *name;
	const char *expr;
} descriptors[] = {
	{ "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
	{ "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
	{ "@hourly", "0 * * * *" },
};

/* Parses one number or name of f from s[0..n); ST_EINVAL if it is neither. */
static int parse_value(unsigned *out, const struct field *f, const char *s, size_t n)
{
	unsigned v = 0;

	if (n == 0)
		return ST_EINVAL;
	if (isdigit((unsigned char)s[0])) {
		for (size_t i = 0; i < n; i++) {
			if (!isdigit((unsigned char)s[i]) || v > 1000)
				return ST_EINVAL;
			v = v * 10 + (unsigned)(s[i] - '0');
		}
		*out = v;
		return 0;
	}
	for (size_t i = 0; f->names != NULL && f->names[i] != NULL; i++) {
		if (n == 3 && strncasecmp(s, f->names[i], 3) == 0) {
			*out = f->min + (unsigned)i;
			return 0;
		}
	}
	return ST_EINVAL;
}

/* Sets bits lo..hi (stepping) of f into *bits; day-of-week 7 lands on 0. */
static void set_range(uint64_t *bits, const struct field *f, unsigned lo, unsigned hi,
                      unsigned step)
{
	for (unsigned v = lo; v <= hi; v += step)
		*bits |= 1ULL << (f == &fields[F_WDAY] && v == 7 ? 0 : v);
}

/* One comma-separated element: `*`, `?`, `a`, `a-b`, each optionally `/step`. */
static int parse_element(uint64_t *bits, const struct field *f, const char *s, size_t n,
                         struct st_err *err)
{
	const char *slash = memchr(s, '/', n);
	const char *dash = NULL;
	size_t base_n = slash != NULL ? (size_t)(slash - s) : n;
	unsigned lo = f->min;
	unsigned hi = f->max;
	unsigned step = 1;

	if (slash != NULL &&
	    (parse_value(&step, &fields[F_MINUTE], slash + 1, n - base_n - 1) < 0 || step == 0))
		return st_err_set(err, ST_EINVAL, "%s: \"%.*s\" has a bad step", f->name, (int)n,
		                  s);
	if (base_n == 1 && (s[0] == '*' || (s[0] == '?' && f->day))) {
		/* The whole range. */
	} else {
		dash = memchr(s, '-', base_n);
		if (parse_value(&lo, f, s, dash != NULL ? (size_t)(dash - s) : base_n) < 0 ||
		    (dash != NULL &&
		     parse_value(&hi, f, dash + 1, base_n - (size_t)(dash - s) - 1) < 0))
			return st_err_set(err, ST_EINVAL, "%s: \"%.*s\" is not a value or range",
			                  f->name, (int)n, s);
		if (dash == NULL && slash == NULL)
			hi = lo;
		/* "FRI-SUN" (5-0) means Friday to Sunday: Sunday closes a week too. */
		if (f == &fields[F_WDAY] && dash != NULL && hi == 0 && lo > 0)
			hi = 7;
		if (lo < f->min || hi > f->max || lo > f->max)
			return st_err_set(err, ST_EINVAL, "%s: \"%.*s\" is out of range %u-%u",
			                  f->name, (int)n, s, f->min, f->max);
		if (lo > hi)
			return st_err_set(err, ST_EINVAL, "%s: \"%.*s\" is a backwards range",
			                  f->name, (int)n, s);
	}
	if (step > f->max - f->min + 1)
		return st_err_set(err, ST_EINVAL, "%s: \"%.*s\" steps past the whole range",
		                  f->name, (int)n, s);
	set_range(bits, f, lo, hi, step);
	return 0;
}

static int parse_field(uint64_t *bits, bool *star, const struct field *f, const char *s, size_t n,
                       struct st_err *err)
{
	size_t i = 0;

	*bits = 0;
	*star = n == 1 && (s[0] == '*' || (s[0] == '?' && f->day));
	while (i <= n) {
		const char *comma = memchr(s + i, ',', n - i);
		size_t len = comma != NULL ? (size_t)(comma - (s + i)) : n - i;

		if (len == 0)
			return st_err_set(err, ST_EINVAL, "%s: \"%.*s\" has an empty list element",
			                  f->name, (int)n, s);
		if (parse_element(bits, f, s + i, len, err) < 0)
			return ST_EINVAL;
		i += len + 1;
	}
	return 0;
}

static bool is_leap(long long y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(long long y, unsigned m)
{
	static const unsigned dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of a date in the proleptic Gregorian calendar, y >= 1970. */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
	long long yy = m <= 2 ? y - 1 : y;
	unsigned mp = m > 2 ? m - 3 : m + 9; /* months since March */
	long long doy = (153 * (long long)mp + 2) / 5 + d - 1;

	/* Days before 0000-03-01 + yy years, counted from 1970-01-01 (719468 days later). */
	return yy * 365 + yy / 4 - yy / 100 + yy / 400 + doy - 719468;
}

/* The day rule of the overview; a `*` field has every bit set. */
static bool day_matches(const struct st_cron *c, long long y, unsigned m, unsigned d)
{
	unsigned wday = (unsigned)((days_from_civil(y, m, d) + 4) % 7); /* 1970-01-01: Thu */
	bool md = (c->mdays >> d) & 1;
	bool wd = (c->wdays >> wday) & 1;

	if (c->mday_star || c->wday_star)
		return md && wd;
	return md || wd;
}

/*
 * Rejects expressions whose day-of-month list never meets their months. Only
 * a `*` day-of-week leaves the days to day-of-month alone; otherwise some
 * listed weekday occurs in every month.
 */
static int check_reachable(const struct st_cron *c, struct st_err *err)
{
	if (!c->wday_star)
		return 0;
	for (unsigned m = 1; m <= 12; m++) {
		uint32_t days = (uint32_t)((1ULL << (days_in_month(2000, m) + 1)) - 2);

		if (((c->months >> m) & 1) && (c->mdays & days) != 0)
			return 0;
	}
	return st_err_set(err, ST_EINVAL,
	                  "day-of-month: no listed day exists in the listed months, the schedule "
	                  "would never run");
}

static int parse_every(struct st_cron *out, const char *arg, size_t n, struct st_err *err)
{
	char text[ST_CRON_MAX_LEN + 1];
	long long ms = 0;

	memcpy(text, arg, n);
	text[n] = '\0';
	if (n == 0 || st_duration_parse(&ms, text) < 0)
		return st_err_set(err, ST_EINVAL,
		                  "@every: \"%s\" is not a duration (examples: 5m, 1h30m, 90s)",
		                  text);
	if (ms < 1000 || ms % 1000 != 0 || ms / 1000 > MAX_EVERY)
		return st_err_set(err, ST_EINVAL,
		                  "@every: \"%s\" must be whole seconds, from 1s to 100 years",
		                  text);
	out->every = ms / 1000;
	return 0;
}

static int parse_descriptor(struct st_cron *out, const char *s, size_t n, struct st_err *err)
{
	size_t word = 0;

	while (word < n && !isspace((unsigned char)s[word]))
		word++;
	if (word == 6 && strncasecmp(s, "@every", 6) == 0) {
		size_t a = word;

		while (a < n && isspace((unsigned char)s[a]))
			a++;
		return parse_every(out, s + a, n - a, err);
	}
	for (size_t i = 0; i < sizeof(descriptors) / sizeof(descriptors[0]); i++) {
		if (word == n && strlen(descriptors[i].name) == n &&
		    strncasecmp(s, descriptors[i].name, n) == 0)
			return st_cron_parse(out, descriptors[i].expr, err);
	}
	return st_err_set(err, ST_EINVAL,
	                  "\"%.*s\" is not a descriptor (@yearly, @annually, @monthly, @weekly, "
	                  "@daily, @midnight, @hourly, @every <duration>)",
	                  (int)n, s);
}

static int parse_fields(struct st_cron *out, const char *s, size_t n, struct st_err *err)
{
	uint64_t bits[F_COUNT] = { 0 };
	bool star[F_COUNT] = { false };
	size_t i = 0;
	int k = 0;

	while (i < n) {
		size_t len = 0;

		while (i < n && isspace((unsigned char)s[i]))
			i++;
		while (i + len < n && !isspace((unsigned char)s[i + len]))
			len++;
		if (len == 0)
			break;
		if (k == F_COUNT)
			return st_err_set(err, ST_EINVAL,
			                  "\"%.*s\": more than 5 fields (minute hour day-of-month "
			                  "month day-of-week)",
			                  (int)n, s);
		if (parse_field(&bits[k], &star[k], &fields[k], s + i, len, err) < 0)
			return ST_EINVAL;
		k++;
		i += len;
	}
	if (k != F_COUNT)
		return st_err_set(err, ST_EINVAL,
		                  "\"%.*s\": %d fields, expected 5 (minute hour day-of-month month "
		                  "day-of-week) or a descriptor such as @daily",
		                  (int)n, s, k);
	out->minutes = bits[F_MINUTE];
	out->hours = (uint32_t)bits[F_HOUR];
	out->mdays = (uint32_t)bits[F_MDAY];
	out->months = (uint16_t)bits[F_MONTH];
	out->wdays = (uint8_t)bits[F_WDAY];
	out->mday_star = star[F_MDAY];
	out->wday_star = star[F_WDAY];
	return check_reachable(out, err);
}

int st_cron_parse(struct st_cron *out, const char *expr, struct st_err *err)
{
	struct st_cron c;
	size_t n;
	int rc = ST_EINVAL;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	if (expr == NULL)
		return st_err_set(err, ST_EINVAL, "empty schedule");
	while (isspace((unsigned char)*expr))
		expr++;
	n = strnlen(expr, ST_CRON_MAX_LEN + 1);
	if (n > ST_CRON_MAX_LEN)
		return st_err_set(err, ST_EINVAL, "schedule longer than %d bytes", ST_CRON_MAX_LEN);
	while (n > 0 && isspace((unsigned char)expr[n - 1]))
		n--;
	if (n == 0)
		return st_err_set(err, ST_EINVAL, "empty schedule");
	if (expr[0] == '@')
		rc = parse_descriptor(&c, expr, n, err);
	else
		rc = parse_fields(&c, expr, n, err);
	if (rc < 0)
		goto out;
	*out = c;
	rc = 0;
out:
	return rc;
}

int st_cron_next(time_t *next_out, const struct st_cron *c, time_t after)
{
	time_t t;
	struct tm tm;
	long long y;
	unsigned mo, d, h, mi;

	if (after < 0 || (long long)after > MAX_TIME)
		return ST_EINVAL;
	if (c->every > 0) {
		*next_out = after + (time_t)c->every;
		return 0;
	}
	t = after - after % 60 + 60;
	if (gmtime_r(&t, &tm) == NULL)
		return ST_EINVAL;
	y = tm.tm_year + 1900LL;
	mo = (unsigned)tm.tm_mon + 1;
	d = (unsigned)tm.tm_mday;
	h = (unsigned)tm.tm_hour;
	mi = (unsigned)tm.tm_min;
	/*
	 * Walk forward from the coarsest unit that does not match, resetting the
	 * finer ones, carrying overflow upwards first. Each step skips a whole
	 * month, day, hour or a minute, so the walk is a few thousand steps at worst.
	 */
	for (;;) {
		if (mi > 59) {
			mi = 0;
			h++;
		}
		if (h > 23) {
			h = 0;
			d++;
		}
		if (mo <= 12 && d > days_in_month(y, mo)) {
			d = 1;
			mo++;
		}
		if (mo > 12) {
			mo = 1;
			y++;
		}
		if (y > 9999)
			return ST_ENOTFOUND;
		if (!((c->months >> mo) & 1)) {
			mo++;
			d = 1;
			h = mi = 0;
		} else if (!day_matches(c, y, mo, d)) {
			d++;
			h = mi = 0;
		} else if (!((c->hours >> h) & 1)) {
			h++;
			mi = 0;
		} else if (!((c->minutes >> mi) & 1)) {
			mi++;
		} else {
			break;
		}
	}
	*next_out = (time_t)(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60);
	return 0;
}

/* The most recent scheduled time <= now, knowing that next(last) <= now < next(now). */
static int latest_due(time_t *out, const struct st_cron *c, time_t last, time_t now)
{
	time_t lo = last;
	time_t hi = now;
	int rc;

	if (c->every > 0) {
		*out = last + (now - last) / c->every * c->every;
		return 0;
	}
	/* next() is monotonic: find the largest lo whose next is still <= now. */
	while (hi - lo > 1) {
		time_t mid = lo + (hi - lo) / 2;
		time_t t = 0;

		if ((rc = st_cron_next(&t, c, mid)) < 0)
			return rc;
		if (t <= now)
			lo = mid;
		else
			hi = mid;
	}
	return st_cron_next(out, c, lo);
}

int st_cron_plan(struct st_cron_plan *out, const struct st_cron *c, time_t last, time_t now)
{
	struct st_cron_plan p;
	time_t first = 0;
	int rc = ST_EINTERNAL;

	memset(out, 0, sizeof(*out));
	memset(&p, 0, sizeof(p));
	if (now < 0 || (long long)now > MAX_TIME) {
		rc = ST_EINVAL;
		goto out;
	}
	if (last > now)
		last = now;
	if ((rc = st_cron_next(&first, c, last)) < 0)
		goto out;
	if (first > now) {
		p.next = first;
	} else {
		if ((rc = latest_due(&p.run_at, c, last, now)) < 0)
			goto out;
		p.run_now = true;
		p.skipped = p.run_at != first;
		if ((rc = st_cron_next(&p.next, c, p.run_at)) < 0)
			goto out;
	}
	*out = p;
	rc = 0;
out:
	return rc;
}
