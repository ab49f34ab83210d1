/*
 * Cron schedule: parsing of 5-field expressions and the search for the
 * next (or missed) run. The search walks civil (wall-clock) time and skips
 * whole months, days and hours that cannot match, then maps the civil
 * time to an instant, resolving DST gaps and repeats as schedule.h says.
 */
#include "server/schedule.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/errcode.h"

/* How far schedule_next() looks before giving up. */
#define SCHEDULE_HORIZON_YEARS 5

typedef struct {
	const char *name;  /* as shown in error messages */
	int min;
	int max;
	const char *const *names;  /* 3-letter names for min.., or NULL */
} field_def_t;

/* Civil (wall-clock) time; the zone is applied only when converting. */
typedef struct {
	int year;
	int mon;   /* 1-12 */
	int mday;  /* 1-31 */
	int hour;
	int min;
} civil_t;

static const char *const month_names[] = {
	"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
	"JUL", "AUG", "SEP", "OCT", "NOV", "DEC", NULL,
};

/* 7 is Sunday too, so the table wraps around. */
static const char *const wday_names[] = {
	"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN", NULL,
};

static const field_def_t fields[5] = {
	{ "minute", 0, 59, NULL },
	{ "hour", 0, 23, NULL },
	{ "day-of-month", 1, 31, NULL },
	{ "month", 1, 12, month_names },
	{ "day-of-week", 0, 7, wday_names },
};

static int parse_value(const field_def_t *f, const char **p, int *out,
                       char *err, size_t errlen);
static int parse_field(const field_def_t *f, const char *text, uint64_t *bits,
                       char *err, size_t errlen);
static bool is_leap(int year);
static long days_from_civil(int y, int m, int d);
static bool local_is(time_t t, const civil_t *c);
static long gmtoff_at(time_t t);
static int days_in_month(int year, int mon);
static int weekday(int year, int mon, int mday);
static bool day_matches(const schedule_t *s, int year, int mon, int mday);
static time_t civil_to_utc_seconds(const civil_t *c);
static time_t civil_to_time(const civil_t *c, bool utc);
static void civil_next_day(civil_t *c);
static int next_bit(uint64_t bits, int from, int max);

/* One number or name; advances *p past it. */
static int parse_value(const field_def_t *f, const char **p, int *out,
                       char *err, size_t errlen)
{
	const char *s = *p;

	if (isdigit((unsigned char)*s)) {
		const char *start = s;
		long v = 0;

		for (; isdigit((unsigned char)*s); s++)
			if (v <= 1000)  /* far out of range already; no overflow */
				v = v * 10 + (*s - '0');
		if (v < f->min || v > f->max) {
			ss_errf(err, errlen, "%s: value %.*s out of range %d-%d",
			        f->name, (int)(s - start), start, f->min, f->max);
			return SS_EINVAL;
		}
		*out = (int)v;
		*p = s;
		return SS_EOK;
	}
	if (f->names != NULL && isalpha((unsigned char)s[0]) &&
	    isalpha((unsigned char)s[1]) && isalpha((unsigned char)s[2]) &&
	    !isalpha((unsigned char)s[3])) {
		for (int i = 0; f->names[i] != NULL; i++) {
			if (strncasecmp(s, f->names[i], 3) == 0) {
				*out = f->min + i;
				*p = s + 3;
				return SS_EOK;
			}
		}
	}
	if (*s == '\0' || *s == ',' || *s == '-' || *s == '/')
		ss_errf(err, errlen, "%s: missing value", f->name);
	else
		ss_errf(err, errlen, "%s: unexpected '%.*s'", f->name,
		        (int)strcspn(s, ",-/"), s);
	return SS_EINVAL;
}

/* A whole field ("1-5,10,*\/15") into a bitset indexed by value. */
static int parse_field(const field_def_t *f, const char *text, uint64_t *bits,
                       char *err, size_t errlen)
{
	const char *p = text;
	uint64_t set = 0;
	int ret;

	for (;;) {
		int lo, hi, step = 1;
		bool ranged = true;

		if (*p == '*') {
			lo = f->min;
			hi = f->max;
			p++;
		} else {
			ret = parse_value(f, &p, &lo, err, errlen);
			if (ret != SS_EOK)
				return ret;
			hi = lo;
			ranged = false;
			if (*p == '-') {
				p++;
				ret = parse_value(f, &p, &hi, err, errlen);
				if (ret != SS_EOK)
					return ret;
				ranged = true;
				if (hi < lo) {
					ss_errf(err, errlen, "%s: range %d-%d is reversed",
					        f->name, lo, hi);
					return SS_EINVAL;
				}
			}
		}
		if (*p == '/') {
			long v = 0;

			if (!ranged) {
				ss_errf(err, errlen,
				        "%s: step needs '*' or a range before '/' (write %d-%d/N)",
				        f->name, lo, f->max);
				return SS_EINVAL;
			}
			p++;
			if (!isdigit((unsigned char)*p)) {
				ss_errf(err, errlen, "%s: missing step after '/'", f->name);
				return SS_EINVAL;
			}
			while (isdigit((unsigned char)*p) && v <= 1000)
				v = v * 10 + (*p++ - '0');
			if (v < 1 || v > f->max - f->min + 1 || isdigit((unsigned char)*p)) {
				ss_errf(err, errlen, "%s: step %ld out of range 1-%d",
				        f->name, v, f->max - f->min + 1);
				return SS_EINVAL;
			}
			step = (int)v;
		}
		for (int v = lo; v <= hi; v += step)
			set |= UINT64_C(1) << v;
		if (*p == '\0')
			break;
		if (*p != ',') {
			ss_errf(err, errlen, "%s: unexpected '%c'", f->name, *p);
			return SS_EINVAL;
		}
		p++;
	}
	*bits = set;
	return SS_EOK;
}

int schedule_parse(const char *expr, schedule_t *out, char *err, size_t errlen)
{
	char *copy = NULL, *save = NULL, *tok;
	char *parts[5];
	uint64_t bits[5];
	schedule_t s;
	int n = 0, ret = SS_EINVAL;

	if (expr == NULL) {
		ss_errf(err, errlen, "empty cron expression");
		return SS_EINVAL;
	}
	copy = strdup(expr);
	if (copy == NULL)
		return SS_ENOMEM;
	for (tok = strtok_r(copy, " \t\r\n", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (n == 5) {
			n++;
			break;
		}
		parts[n++] = tok;
	}
	if (n != 5) {
		ss_errf(err, errlen, "expected 5 fields (minute hour day-of-month month day-of-week), got %s%d",
		        n > 5 ? "more than " : "", n > 5 ? 5 : n);
		goto fail;
	}
	for (int i = 0; i < 5; i++) {
		ret = parse_field(&fields[i], parts[i], &bits[i], err, errlen);
		if (ret != SS_EOK)
			goto fail;
	}

	memset(&s, 0, sizeof(s));
	s.minutes = bits[0];
	s.hours = (uint32_t)bits[1];
	s.mdays = (uint32_t)bits[2];
	s.months = (uint16_t)bits[3];
	/* Fold 7 onto 0: both are Sunday. */
	s.wdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f);
	s.mday_star = parts[2][0] == '*';
	s.wday_star = parts[4][0] == '*';

	/*
	 * Refuse what can never fire, such as "0 0 31 4 *", here rather than
	 * letting the daemon wait forever. It only matters when day-of-week
	 * does not also allow the day (the OR rule, or a '*' day-of-week).
	 */
	if (s.wday_star || s.mday_star) {
		bool possible = false;

		for (int m = 1; m <= 12 && !possible; m++) {
			if (!(s.months & (1u << m)))
				continue;
			for (int d = 1; d <= days_in_month(2028, m); d++) {
				if (s.mdays & (1u << d)) {
					possible = true;
					break;
				}
			}
		}
		if (!possible) {
			ss_errf(err, errlen, "day-of-month: '%s' never occurs in month '%s'",
			        parts[2], parts[3]);
			ret = SS_EINVAL;
			goto fail;
		}
	}
	*out = s;
	ret = SS_EOK;
fail:
	free(copy);
	return ret;
}

static bool is_leap(int year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int days_in_month(int year, int mon)
{
	static const int days[13] = { 0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return mon == 2 && is_leap(year) ? 29 : days[mon];
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static long days_from_civil(int y, int m, int d)
{
	long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int weekday(int year, int mon, int mday)
{
	long days = days_from_civil(year, mon, mday);

	/* 1970-01-01 was a Thursday (4). */
	return (int)(((days % 7) + 11) % 7);
}

static bool day_matches(const schedule_t *s, int year, int mon, int mday)
{
	bool dom = (s->mdays >> mday) & 1;
	bool dow = (s->wdays >> weekday(year, mon, mday)) & 1;

	if (!((s->months >> mon) & 1))
		return false;
	if (s->mday_star || s->wday_star)
		return dom && dow;
	return dom || dow;
}

/* The civil time read as if it were UTC. */
static time_t civil_to_utc_seconds(const civil_t *c)
{
	return (time_t)days_from_civil(c->year, c->mon, c->mday) * 86400 +
	       c->hour * 3600 + c->min * 60;
}

static bool local_is(time_t t, const civil_t *c)
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL)
		return false;
	return tm.tm_year + 1900 == c->year && tm.tm_mon + 1 == c->mon &&
	       tm.tm_mday == c->mday && tm.tm_hour == c->hour && tm.tm_min == c->min &&
	       tm.tm_sec == 0;
}

static long gmtoff_at(time_t t)
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL)
		return 0;
	return tm.tm_gmtoff;
}

/*
 * Instant of a civil time. In local time we try the UTC offsets in force a
 * day before and a day after: one that maps back is the answer (the earlier
 * if both do, i.e. the first occurrence of a repeated hour); if none does,
 * the time falls into a gap and we return the transition instant, which is
 * the first wall-clock time after the gap. A zone with two transitions
 * within two days does not exist in the tz database.
 */
static time_t civil_to_time(const civil_t *c, bool utc)
{
	time_t naive = civil_to_utc_seconds(c);
	long off_before, off_after;
	time_t t1, t2, lo, hi;
	bool ok1, ok2;

	if (utc)
		return naive;
	off_before = gmtoff_at(naive - 86400);
	off_after = gmtoff_at(naive + 86400);
	t1 = naive - off_before;
	t2 = naive - off_after;
	ok1 = local_is(t1, c);
	ok2 = off_after != off_before && local_is(t2, c);
	if (ok1 && ok2)
		return t1 < t2 ? t1 : t2;
	if (ok1)
		return t1;
	if (ok2)
		return t2;
	/* Gap: find the first second with the new offset. */
	lo = naive - 86400;
	hi = naive + 86400;
	while (hi - lo > 1) {
		time_t mid = lo + (hi - lo) / 2;

		if (gmtoff_at(mid) == off_before)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

static void civil_next_day(civil_t *c)
{
	c->hour = 0;
	c->min = 0;
	if (++c->mday > days_in_month(c->year, c->mon)) {
		c->mday = 1;
		if (++c->mon > 12) {
			c->mon = 1;
			c->year++;
		}
	}
}

/* Lowest set bit >= from and <= max, or -1. */
static int next_bit(uint64_t bits, int from, int max)
{
	for (int i = from; i <= max; i++)
		if ((bits >> i) & 1)
			return i;
	return -1;
}

time_t schedule_next(const schedule_t *s, time_t after, bool utc)
{
	time_t start = after + 60 - (((after % 60) + 60) % 60);
	struct tm tm;
	civil_t c;
	int end_year;

	if (!utc)
		tzset();
	/* Start at the first whole minute after `after`, as wall-clock time. */
	if ((utc ? gmtime_r(&start, &tm) : localtime_r(&start, &tm)) == NULL)
		return (time_t)-1;
	c.year = tm.tm_year + 1900;
	c.mon = tm.tm_mon + 1;
	c.mday = tm.tm_mday;
	c.hour = tm.tm_hour;
	c.min = tm.tm_min;
	end_year = c.year + SCHEDULE_HORIZON_YEARS;

	while (c.year <= end_year) {
		int h, m;

		if (!((s->months >> c.mon) & 1)) {
			/* Skip the month: land on the 1st of the next one. */
			c.mday = days_in_month(c.year, c.mon);
			civil_next_day(&c);
			continue;
		}
		if (!day_matches(s, c.year, c.mon, c.mday)) {
			civil_next_day(&c);
			continue;
		}
		h = next_bit(s->hours, c.hour, 23);
		if (h < 0) {
			civil_next_day(&c);
			continue;
		}
		if (h != c.hour) {
			c.hour = h;
			c.min = 0;
		}
		m = next_bit(s->minutes, c.min, 59);
		if (m < 0) {
			if (c.hour == 23) {
				civil_next_day(&c);
			} else {
				c.hour++;
				c.min = 0;
			}
			continue;
		}
		c.min = m;

		time_t t = civil_to_time(&c, utc);
		/*
		 * t <= after happens for the second pass through a repeated
		 * hour (its first occurrence already ran) and for wall times
		 * in a gap that map to an instant already passed.
		 */
		if (t > after)
			return t;
		if (++c.min > 59) {
			c.min = 0;
			if (++c.hour > 23)
				civil_next_day(&c);
		}
	}
	return (time_t)-1;
}

time_t schedule_missed(const schedule_t *s, time_t last_run, time_t now, bool utc)
{
	/*
	 * Look back from now over a growing window so that a dense schedule
	 * (every minute) after a long outage costs a few steps, not one per
	 * minute since last_run.
	 */
	time_t window = 3600;

	if (now <= last_run)
		return 0;
	for (;;) {
		time_t from = now - last_run > window ? now - window : last_run;
		time_t latest = 0;
		time_t t = schedule_next(s, from, utc);

		while (t != (time_t)-1 && t <= now) {
			latest = t;
			t = schedule_next(s, t, utc);
		}
		if (latest != 0 || from == last_run)
			return latest;
		window *= 8;
	}
}
