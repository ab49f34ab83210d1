/* Cron schedule: parsing, next run across month ends, leap days and DST. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/errcode.h"
#include "server/schedule.h"
#include "check_run.h"

#define ZONEINFO_PROBE "/usr/share/zoneinfo/Europe/Amsterdam"

/* "2026-03-29T01:00" (UTC) to unix seconds. */
static time_t utc(const char *iso)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	ck_assert_msg(strptime(iso, "%Y-%m-%dT%H:%M", &tm) != NULL, "bad time %s", iso);
	return timegm(&tm);
}

/* Unix seconds to "2026-03-29T01:00:00Z" for readable assertions. */
static const char *iso(time_t t)
{
	static char buf[8][32];
	static int next;
	char *b = buf[next++ % 8];
	struct tm tm;

	if (t == (time_t)-1)
		return "none";
	gmtime_r(&t, &tm);
	strftime(b, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return b;
}

static void use_zone(const char *zone)
{
	if (access(ZONEINFO_PROBE, R_OK) != 0)
		ck_abort_msg("time zone data missing (" ZONEINFO_PROBE "): "
		             "install the Debian package tzdata");
	setenv("TZ", zone, 1);
	tzset();
}

static schedule_t parse_ok(const char *expr)
{
	schedule_t s;
	char err[256] = "";

	ck_assert_msg(schedule_parse(expr, &s, err, sizeof(err)) == SS_EOK,
	              "'%s': %s", expr, err);
	return s;
}

/* Asserts the consecutive runs of expr after `from`. */
static void expect_runs(const char *expr, bool in_utc, const char *from,
                        const char *const *runs)
{
	schedule_t s = parse_ok(expr);
	time_t t = utc(from);

	for (int i = 0; runs[i] != NULL; i++) {
		t = schedule_next(&s, t, in_utc);
		ck_assert_msg(strcmp(iso(t), runs[i]) == 0, "'%s' run %d: got %s, want %s",
		              expr, i, iso(t), runs[i]);
	}
}

START_TEST(month_ends)
{
	static const char *const runs[] = {
		"2027-03-31T00:00:00Z", "2027-05-31T00:00:00Z", "2027-07-31T00:00:00Z",
		"2027-08-31T00:00:00Z", "2027-10-31T00:00:00Z", "2027-12-31T00:00:00Z",
		"2028-01-31T00:00:00Z", NULL,
	};
	static const char *const thirtieth[] = {
		"2027-01-30T06:00:00Z", "2027-03-30T06:00:00Z", "2027-04-30T06:00:00Z", NULL,
	};

	expect_runs("0 0 31 * *", true, "2027-01-31T00:00", runs);
	expect_runs("0 6 30 * *", true, "2027-01-01T00:00", thirtieth);
}
END_TEST

START_TEST(leap_day)
{
	static const char *const runs[] = {
		"2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z", NULL,
	};
	static const char *const feb_end[] = {
		"2027-02-28T00:00:00Z", "2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z",
		"2029-02-28T00:00:00Z", NULL,
	};
	schedule_t s = parse_ok("0 12 29 2 *");

	/* None in 2027: the first one is in 2028. */
	expect_runs("0 12 29 2 *", true, "2027-01-01T00:00", runs);
	expect_runs("0 0 28,29 2 *", true, "2027-01-01T00:00", feb_end);
	/* 2100 is not a leap year: 2096 to 2104 is beyond the 5-year horizon. */
	ck_assert_int_eq(schedule_next(&s, utc("2096-03-01T00:00"), true), (time_t)-1);
}
END_TEST

START_TEST(saturday_two_am)
{
	static const char *const runs[] = {
		"2026-11-28T02:00:00Z", "2026-12-05T02:00:00Z", "2026-12-12T02:00:00Z", NULL,
	};
	schedule_t s = parse_ok("0 2 * * 6");
	time_t t = schedule_next(&s, utc("2026-11-25T03:30"), true);
	struct tm tm;

	expect_runs("0 2 * * 6", true, "2026-11-25T03:30", runs);
	gmtime_r(&t, &tm);
	ck_assert_int_eq(tm.tm_wday, 6);
	/* Exactly at a run: the next one is a week later. */
	ck_assert_str_eq(iso(schedule_next(&s, utc("2026-11-28T02:00"), true)),
	                 "2026-12-05T02:00:00Z");
	/* Local time: 02:00 in Amsterdam (CET, UTC+1) is 01:00Z. */
	use_zone("Europe/Amsterdam");
	ck_assert_str_eq(iso(schedule_next(&s, utc("2026-11-25T03:30"), false)),
	                 "2026-11-28T01:00:00Z");
}
END_TEST

START_TEST(steps)
{
	static const char *const quarter[] = {
		"2026-11-25T12:15:00Z", "2026-11-25T12:30:00Z", "2026-11-25T12:45:00Z",
		"2026-11-25T13:00:00Z", NULL,
	};
	static const char *const odd_days[] = {
		"2026-11-29T00:00:00Z", "2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z", NULL,
	};
	schedule_t s = parse_ok("*/15 * * * *");

	expect_runs("*/15 * * * *", true, "2026-11-25T12:07", quarter);
	/* Seconds within a minute: strictly after, still on the grid. */
	ck_assert_str_eq(iso(schedule_next(&s, utc("2026-11-25T12:15") + 1, true)),
	                 "2026-11-25T12:30:00Z");
	ck_assert_str_eq(iso(schedule_next(&s, utc("2026-11-25T12:15") - 1, true)),
	                 "2026-11-25T12:15:00Z");
	expect_runs("0 0 1-30/2 * *", true, "2026-11-27T12:00", odd_days);
	s = parse_ok("10-50/20 * * * *");
	ck_assert(s.minutes == ((1ULL << 10) | (1ULL << 30) | (1ULL << 50)));
}
END_TEST

START_TEST(day_or_rule)
{
	/* Both restricted: the 13th OR any Friday. */
	static const char *const either[] = {
		"2026-11-06T00:00:00Z", "2026-11-13T00:00:00Z", "2026-11-20T00:00:00Z",
		"2026-11-27T00:00:00Z", "2026-12-04T00:00:00Z", "2026-12-11T00:00:00Z",
		"2026-12-13T00:00:00Z", "2026-12-18T00:00:00Z", NULL,
	};
	/* Day-of-month '*': only the weekday counts. */
	static const char *const fridays[] = {
		"2026-11-06T00:00:00Z", "2026-11-13T00:00:00Z", "2026-11-20T00:00:00Z", NULL,
	};
	/* Day-of-week '*': only the day of month counts. */
	static const char *const thirteenth[] = {
		"2026-11-13T00:00:00Z", "2026-12-13T00:00:00Z", NULL,
	};
	/* A '*' with a step still counts as unrestricted: both must match. */
	static const char *const odd_fridays[] = {
		"2026-11-13T00:00:00Z", "2026-11-27T00:00:00Z", "2026-12-11T00:00:00Z", NULL,
	};

	expect_runs("0 0 13 * FRI", true, "2026-11-01T00:00", either);
	expect_runs("0 0 * * 5", true, "2026-11-01T00:00", fridays);
	expect_runs("0 0 13 * *", true, "2026-11-01T00:00", thirteenth);
	expect_runs("0 0 */2 * 5", true, "2026-11-01T00:00", odd_fridays);
}
END_TEST

START_TEST(names)
{
	schedule_t a = parse_ok("0 9 * JAN-MAR mon-fri");
	schedule_t b = parse_ok("0 9 * 1-3 1-5");
	schedule_t sun0 = parse_ok("0 0 * * 0");
	schedule_t sun7 = parse_ok("0 0 * * 7");
	schedule_t sun = parse_ok("0 0 * * Sun");
	schedule_t wkend = parse_ok("0 0 * * 6-7");
	schedule_t list = parse_ok("0 0 * jan,Jul,DEC sat,SUN");

	ck_assert(a.months == b.months && a.wdays == b.wdays);
	ck_assert_int_eq(a.months, 0xe);
	ck_assert_int_eq(a.wdays, 0x3e);
	ck_assert_int_eq(sun0.wdays, 1);
	ck_assert_int_eq(sun7.wdays, 1);
	ck_assert_int_eq(sun.wdays, 1);
	ck_assert_int_eq(wkend.wdays, 0x41);
	ck_assert_int_eq(list.months, (1 << 1) | (1 << 7) | (1 << 12));
	ck_assert_int_eq(list.wdays, 0x41);
	ck_assert(!a.wday_star && a.mday_star);
}
END_TEST

START_TEST(invalid)
{
	static const struct {
		const char *expr;
		const char *msg;
	} cases[] = {
		{ "", "expected 5 fields" },
		{ "* * * *", "got 4" },
		{ "* * * * * *", "more than 5" },
		{ "60 * * * *", "minute: value 60 out of range 0-59" },
		{ "* 24 * * *", "hour: value 24 out of range 0-23" },
		{ "* * 0 * *", "day-of-month: value 0 out of range 1-31" },
		{ "* * 32 * *", "day-of-month: value 32" },
		{ "* * * 13 *", "month: value 13 out of range 1-12" },
		{ "* * * 0 *", "month: value 0" },
		{ "* * * * 8", "day-of-week: value 8 out of range 0-7" },
		{ "* * * FOO *", "month: unexpected 'FOO'" },
		{ "* * * * MONDAY", "day-of-week: unexpected 'MONDAY'" },
		{ "* * * * JAN", "day-of-week: unexpected 'JAN'" },
		{ "*/0 * * * *", "minute: step 0 out of range" },
		{ "* */25 * * *", "hour: step 25 out of range 1-24" },
		{ "* * * */ *", "month: missing step" },
		{ "5-1 * * * *", "minute: range 5-1 is reversed" },
		{ "5/10 * * * *", "minute: step needs '*' or a range" },
		{ "1,,2 * * * *", "minute: missing value" },
		{ "1- * * * *", "minute: missing value" },
		{ "* 1x * * *", "hour: unexpected 'x'" },
		{ "99999999999999 * * * *", "minute: value" },
		{ "0 0 30 2 *", "day-of-month: '30' never occurs in month '2'" },
		{ "0 0 31 APR,jun *", "never occurs" },
	};
	schedule_t s;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";

		ck_assert_msg(schedule_parse(cases[i].expr, &s, err, sizeof(err)) == SS_EINVAL,
		              "'%s' accepted", cases[i].expr);
		ck_assert_msg(strstr(err, cases[i].msg) != NULL, "'%s': message '%s' lacks '%s'",
		              cases[i].expr, err, cases[i].msg);
	}
	/* NULL err is allowed; day 31 with a weekday can still fire (OR rule). */
	ck_assert_int_eq(schedule_parse("bad", &s, NULL, 0), SS_EINVAL);
	parse_ok("0 0 31 4 MON");
	parse_ok("  0   2 * *   6  ");
}
END_TEST

START_TEST(dst_amsterdam)
{
	/* 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z). */
	static const char *const spring[] = {
		"2026-03-29T01:00:00Z",  /* 02:30 does not exist: 03:00 CEST */
		"2026-03-30T00:30:00Z",  /* next day 02:30 CEST */
		NULL,
	};
	/* Every 15 minutes across the gap: 02:00-02:45 collapse into 03:00. */
	static const char *const quarter[] = {
		"2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z", NULL,
	};
	/* 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00Z). */
	static const char *const fall[] = {
		"2026-10-25T00:30:00Z",  /* 02:30 CEST, the first occurrence */
		"2026-10-26T01:30:00Z",  /* not 02:30 CET on the 25th again */
		NULL,
	};
	static const char *const half[] = {
		"2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z",
		"2026-10-25T02:00:00Z",  /* 03:00 CET: 02:00/02:30 CET were skipped */
		NULL,
	};
	static const char *const three[] = {
		"2026-03-29T01:00:00Z", "2026-03-30T01:00:00Z", NULL,
	};

	use_zone("Europe/Amsterdam");
	expect_runs("30 2 * * *", false, "2026-03-28T12:00", spring);
	expect_runs("*/15 * * * *", false, "2026-03-29T00:35", quarter);
	expect_runs("0 3 * * *", false, "2026-03-28T12:00", three);
	expect_runs("30 2 * * *", false, "2026-10-24T12:00", fall);
	expect_runs("*/30 * * * *", false, "2026-10-24T23:45", half);
}
END_TEST

START_TEST(dst_new_york)
{
	/* 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z). */
	static const char *const spring[] = {
		"2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z", NULL,
	};
	/* 2026-11-01: 02:00 EDT falls back to 01:00 EST (06:00Z). */
	static const char *const fall[] = {
		"2026-11-01T05:30:00Z",  /* 01:30 EDT */
		"2026-11-02T06:30:00Z",  /* 01:30 EST next day */
		NULL,
	};
	schedule_t s = parse_ok("30 1 * * *");

	use_zone("America/New_York");
	expect_runs("30 2 * * *", false, "2026-03-07T12:00", spring);
	expect_runs("30 1 * * *", false, "2026-10-31T12:00", fall);
	/* Already in the repeated hour (01:10 EST): 01:30 ran an hour ago. */
	ck_assert_str_eq(iso(schedule_next(&s, utc("2026-11-01T06:10"), false)),
	                 "2026-11-02T06:30:00Z");
	/* In the first pass (01:10 EDT): 01:30 EDT is still to come. */
	ck_assert_str_eq(iso(schedule_next(&s, utc("2026-11-01T05:10"), false)),
	                 "2026-11-01T05:30:00Z");
	/* Daily at 02:00 never runs twice and never skips a day. */
	s = parse_ok("0 2 * * *");
	ck_assert_str_eq(iso(schedule_next(&s, utc("2026-10-31T12:00"), false)),
	                 "2026-11-01T07:00:00Z");
	ck_assert_str_eq(iso(schedule_next(&s, utc("2026-03-07T12:00"), false)),
	                 "2026-03-08T07:00:00Z");
}
END_TEST

START_TEST(missed)
{
	schedule_t s = parse_ok("0 2 * * 6");
	schedule_t every = parse_ok("* * * * *");
	schedule_t yearly = parse_ok("0 0 1 1 *");
	clock_t c0;

	/* Down over Saturday 21st: that run is due. */
	ck_assert_str_eq(iso(schedule_missed(&s, utc("2026-11-14T02:00"),
	                                     utc("2026-11-25T03:30"), true)),
	                 "2026-11-21T02:00:00Z");
	/* Two runs missed: only the latest is reported. */
	ck_assert_str_eq(iso(schedule_missed(&s, utc("2026-11-01T00:00"),
	                                     utc("2026-11-25T03:30"), true)),
	                 "2026-11-21T02:00:00Z");
	/* The last run was the latest scheduled one: nothing missed. */
	ck_assert_int_eq(schedule_missed(&s, utc("2026-11-21T02:00"),
	                                 utc("2026-11-25T03:30"), true), 0);
	/* now is inclusive, last_run exclusive. */
	ck_assert_str_eq(iso(schedule_missed(&s, utc("2026-11-21T02:00") - 1,
	                                     utc("2026-11-21T02:00"), true)),
	                 "2026-11-21T02:00:00Z");
	ck_assert_int_eq(schedule_missed(&s, utc("2026-11-21T02:00"),
	                                 utc("2026-11-21T02:00"), true), 0);
	/* A long outage with a dense or a sparse schedule stays cheap. */
	c0 = clock();
	ck_assert_str_eq(iso(schedule_missed(&every, utc("2020-01-01T00:00"),
	                                     utc("2026-11-25T03:30") + 20, true)),
	                 "2026-11-25T03:30:00Z");
	ck_assert_str_eq(iso(schedule_missed(&yearly, utc("2024-06-01T00:00"),
	                                     utc("2026-11-25T03:30"), true)),
	                 "2026-01-01T00:00:00Z");
	ck_assert_int_eq(schedule_missed(&yearly, utc("2026-01-01T00:00"),
	                                 utc("2026-11-25T03:30"), true), 0);
	ck_assert_msg(clock() - c0 < CLOCKS_PER_SEC, "schedule_missed too slow");
	/* Local zone. */
	use_zone("America/New_York");
	ck_assert_str_eq(iso(schedule_missed(&s, utc("2026-11-14T12:00"),
	                                     utc("2026-11-25T03:30"), false)),
	                 "2026-11-21T07:00:00Z");
}
END_TEST

START_TEST(fast)
{
	/* Sparse schedules must skip by month and day, not by minute. */
	schedule_t s = parse_ok("59 23 29 2 *");
	time_t t = utc("2027-03-01T00:00");
	clock_t c0 = clock();

	for (int i = 0; i < 200; i++)
		ck_assert_str_eq(iso(schedule_next(&s, t, true)), "2028-02-29T23:59:00Z");
	use_zone("Europe/Amsterdam");
	for (int i = 0; i < 200; i++)
		ck_assert_str_eq(iso(schedule_next(&s, t, false)), "2028-02-29T22:59:00Z");
	ck_assert_msg(clock() - c0 < 2 * CLOCKS_PER_SEC, "schedule_next too slow");
}
END_TEST

int main(void)
{
	return check_tests("schedule", "core", 0,
		month_ends, leap_day, saturday_two_am, steps, day_or_rule,
		names, invalid, dst_amsterdam, dst_new_york, missed, fast);
}
