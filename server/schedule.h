/*
 * Cron schedule of the top site's upstream sync ([schedule] cron): parse a
 * classic 5-field expression and find the next run, or the run that was
 * missed while the daemon was down.
 *
 * Fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or
 * JAN-DEC) day-of-week (0-7 or SUN-SAT, 0 and 7 are Sunday). Each field is a
 * comma list of items; an item is `*`, a value, or a range `a-b`, and `*`
 * or a range may carry a step (`*\/15`, `1-30/2`). Names are
 * case-insensitive. `a/n` without a range is refused: classic cron reads it
 * as just `a`, other crons as `a-max/n`, so it would surprise someone.
 *
 * Day rule (as in Vixie cron): when both day-of-month and day-of-week are
 * restricted (neither field starts with `*`), a day matches when EITHER
 * matches; otherwise both must match.
 *
 * Local time and daylight saving time:
 *  - a wall-clock time that does not exist (the spring-forward gap, e.g.
 *    02:30 in Europe/Amsterdam on the last Sunday of March) runs at the
 *    first instant after the gap (03:00 local); several runs falling into
 *    the gap become one;
 *  - a wall-clock time that occurs twice (the fall-back hour) runs once, at
 *    its first occurrence (still on summer time).
 * Zone rules come from TZ / /etc/localtime; tzset() is called on each
 * local-time computation so a changed TZ is honoured.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct {
	uint64_t minutes;  /* bit m set: minute m (0-59) */
	uint32_t hours;    /* bit h: hour h (0-23) */
	uint32_t mdays;    /* bit d: day-of-month d (1-31) */
	uint16_t months;   /* bit m: month m (1-12) */
	uint8_t wdays;     /* bit w: weekday w (0 = Sunday .. 6) */
	bool mday_star;    /* day-of-month field started with '*' */
	bool wday_star;    /* day-of-week field started with '*' */
} schedule_t;

/*!
 * \brief Parse a 5-field cron expression.
 *
 * \param expr    Expression such as "0 2 * * 6"; surrounding blanks allowed.
 * \param out     Output: the parsed schedule (untouched on error).
 * \param err     Output: on error, a message naming the bad field
 *                (e.g. "hour: value 24 out of range 0-23"). May be NULL.
 * \param errlen  Size of err.
 *
 * \return SS_EOK, or SS_EINVAL for a malformed expression or one that can
 *         never fire (e.g. "0 0 30 2 *").
 */
int schedule_parse(const char *expr, schedule_t *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Next scheduled run strictly after a given instant.
 *
 * \param s      Parsed schedule.
 * \param after  Unix seconds; the result is > after.
 * \param utc    Evaluate the fields in UTC when true, else in the local zone.
 *
 * \return Unix seconds of the run (always on a whole minute, except after
 *         a DST gap in a zone whose transition is not on a minute), or
 *         (time_t)-1 if none within 5 years.
 */
time_t schedule_next(const schedule_t *s, time_t after, bool utc);

/*!
 * \brief A run missed while the daemon was down.
 *
 * \param s         Parsed schedule.
 * \param last_run  Unix seconds of the last run that happened.
 * \param now       Current unix seconds.
 * \param utc       As for schedule_next().
 *
 * \return The latest scheduled time in (last_run, now], or 0 if none.
 */
time_t schedule_missed(const schedule_t *s, time_t last_run, time_t now, bool utc);
