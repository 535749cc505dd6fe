/* snapshots.schedule (cron), snapshots.expiry and snapshots.pattern parsing and naming. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "snapshot-schedule.h"
#include "tap.h"

static bool same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* The broken-down UTC time of "YYYY-MM-DD HH:MM". */
static struct tm at(int y, int mo, int d, int h, int mi)
{
	struct tm tm = {
		.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi
	};
	time_t t = timegm(&tm);

	gmtime_r(&t, &tm);
	return tm;
}

/* Whether schedule spec fires at the given minute (the spec must parse). */
static bool fires(const char *spec, int y, int mo, int d, int h, int mi)
{
	struct lxm_schedule s;
	struct lxm_error *err = NULL;
	struct tm tm = at(y, mo, d, h, mi);

	if (lxm_schedule_parse(spec, &s, &err) < 0) {
		printf("# parse '%s': %s\n", spec, err->msg);
		lxm_error_free(err);
		return false;
	}
	return lxm_schedule_matches(&s, &tm);
}

/* How many minutes of the 2024 leap year (or of a shorter span) the spec fires in. */
static int count_minutes(const char *spec, int days)
{
	struct lxm_schedule s;
	struct tm start = at(2024, 1, 1, 0, 0);
	time_t t = timegm(&start);
	int n = 0;

	if (lxm_schedule_parse(spec, &s, NULL) < 0)
		return -1;
	for (int i = 0; i < days * 24 * 60; i++, t += 60) {
		struct tm tm;

		gmtime_r(&t, &tm);
		n += lxm_schedule_matches(&s, &tm);
	}
	return n;
}

/* Whether text is refused, with an error message containing want. */
static bool refused(int (*check)(const char *, struct lxm_error **), const char *text,
		    const char *want)
{
	struct lxm_error *err = NULL;
	bool r;

	if (check(text, &err) >= 0)
		return false;
	r = err && err->status == 400 && strstr(err->msg, want);
	if (!r)
		printf("# '%s': %s\n", text, err ? err->msg : "(no error)");
	lxm_error_free(err);
	return r;
}

static int check_schedule(const char *text, struct lxm_error **err)
{
	struct lxm_schedule s;

	return lxm_schedule_parse(text, &s, err);
}

static int check_expiry(const char *text, struct lxm_error **err)
{
	struct lxm_expiry e;

	return lxm_expiry_parse(text, &e, err);
}

static void test_cron_parse(void)
{
	struct lxm_cron c;
	struct lxm_schedule s;

	ok(lxm_cron_parse("* * * * *", &c, NULL) == 0 && c.minutes == (1ULL << 60) - 1 &&
		   c.hours == (1U << 24) - 1 && c.days == 0xfffffffe && c.months == 0x1ffe &&
		   c.weekdays == 0x7f && c.days_any && c.weekdays_any,
	   "'* * * * *' sets every value");
	ok(lxm_cron_parse("0,30 8-10 */10 1-12/3 1-5", &c, NULL) == 0 &&
		   c.minutes == ((1ULL << 0) | (1ULL << 30)) &&
		   c.hours == ((1U << 8) | (1U << 9) | (1U << 10)) &&
		   c.days == ((1U << 1) | (1U << 11) | (1U << 21) | (1U << 31)) &&
		   c.months == ((1U << 1) | (1U << 4) | (1U << 7) | (1U << 10)) &&
		   c.weekdays == 0x3e && c.days_any && !c.weekdays_any,
	   "lists, ranges, */n and a-b/n ('*/10' counts as '*')");
	ok(lxm_cron_parse("5/20 * * * 7", &c, NULL) == 0 &&
		   c.minutes == ((1ULL << 5) | (1ULL << 25) | (1ULL << 45)) && c.weekdays == 1,
	   "a/n runs to the field's end; weekday 7 is Sunday");
	ok(lxm_cron_parse("  1   2 3 4 5 ", &c, NULL) == 0 && c.minutes == 2 && c.hours == 4,
	   "extra whitespace between fields is fine");
	ok(lxm_cron_parse("@hourly", &c, NULL) == 0 && c.minutes == 1 && c.hours == 0xffffff,
	   "@hourly is minute 0 of every hour");
	ok(lxm_cron_parse("@weekly", &c, NULL) == 0 && c.weekdays == 1 && c.minutes == 1 &&
		   c.hours == 1,
	   "@weekly is Sunday midnight");

	ok(refused(check_schedule, "* * * *", "expected 5"), "4 fields refused");
	ok(refused(check_schedule, "* * * * * *", "more than 5"), "6 fields refused");
	ok(refused(check_schedule, "60 * * * *", "minute field '60': values must be within 0-59"),
	   "minute 60 refused");
	ok(refused(check_schedule, "* 24 * * *", "hour field"), "hour 24 refused");
	ok(refused(check_schedule, "* * 0 * *", "day-of-month field '0'"), "day 0 refused");
	ok(refused(check_schedule, "* * 32 * *", "day-of-month"), "day 32 refused");
	ok(refused(check_schedule, "* * * 13 *", "month field"), "month 13 refused");
	ok(refused(check_schedule, "* * * * 8", "day-of-week field"), "weekday 8 refused");
	ok(refused(check_schedule, "10-5 * * * *", "backwards"), "backwards range refused");
	ok(refused(check_schedule, "*/0 * * * *", "step must be at least 1"), "step 0 refused");
	ok(refused(check_schedule, "a * * * *", "expected '*', a number"), "letters refused");
	ok(refused(check_schedule, "1,,2 * * * *", "minute field"), "empty list item refused");
	ok(refused(check_schedule, "1- * * * *", "minute field"), "open range refused");
	ok(refused(check_schedule, "-1 * * * *", "minute field"), "negative refused");
	ok(refused(check_schedule, "@often", "unknown alias '@often'"), "unknown alias refused");
	ok(refused(check_schedule, "@daily, ", "") ||
		   refused(check_schedule, "@daily,, @hourly", "alias"),
	   "an empty or broken list entry refused");
	ok(lxm_schedule_parse("", &s, NULL) == 0 && s.n == 0, "'' is no schedule");
	ok(lxm_schedule_parse("@daily, 30 12 * * *", &s, NULL) == 0 && s.n == 2,
	   "a ', ' list of entries");
	ok(lxm_schedule_parse("0,30 * * * *", &s, NULL) == 0 && s.n == 1,
	   "a comma without space stays in the field");
}

static void test_matching(void)
{
	/* 2024-01-01 is a Monday. */
	ok(fires("* * * * *", 2024, 1, 1, 0, 0) && fires("* * * * *", 2024, 7, 19, 13, 37),
	   "'* * * * *' fires every minute");
	ok(count_minutes("* * * * *", 2) == 2 * 1440, "'* * * * *' fires 2880 times in 2 days");
	ok(fires("30 12 * * *", 2024, 3, 5, 12, 30) && !fires("30 12 * * *", 2024, 3, 5, 12, 31) &&
		   !fires("30 12 * * *", 2024, 3, 5, 13, 30),
	   "30 12 * * * at 12:30 only");
	ok(count_minutes("*/15 * * * *", 1) == 96, "*/15 fires 96 times a day");
	ok(count_minutes("0 9-17/2 * * 1-5", 7) == 25, "0 9-17/2 * * 1-5: 5 a day, 5 days a week");
	ok(count_minutes("@hourly", 366) == 366 * 24, "@hourly: 8784 times in 2024");
	ok(count_minutes("@daily", 366) == 366 && count_minutes("@midnight", 366) == 366,
	   "@daily and @midnight: 366 times in 2024");
	ok(count_minutes("@weekly", 366) == 52, "@weekly: 52 Sundays in 2024");
	ok(count_minutes("@monthly", 366) == 12, "@monthly: 12 times a year");
	ok(count_minutes("@yearly", 366) == 1 && count_minutes("@annually", 366) == 1,
	   "@yearly and @annually: once");
	ok(fires("@yearly", 2024, 1, 1, 0, 0) && !fires("@yearly", 2024, 1, 1, 0, 1),
	   "@yearly at Jan 1 00:00");
	ok(fires("0 0 29 2 *", 2024, 2, 29, 0, 0), "Feb 29 exists in 2024");
	ok(count_minutes("0 0 31 * *", 366) == 7, "the 31st: 7 months of 2024");

	/* dom and dow both restricted: either; one of them '*': both. */
	ok(fires("0 0 13 * 5", 2024, 9, 13, 0, 0), "13th that is a Friday fires");
	ok(fires("0 0 13 * 5", 2024, 9, 6, 0, 0), "a Friday not the 13th fires (either)");
	ok(fires("0 0 13 * 5", 2024, 8, 13, 0, 0), "a 13th not a Friday fires (either)");
	ok(!fires("0 0 13 * 5", 2024, 8, 14, 0, 0), "neither: does not fire");
	ok(count_minutes("0 0 1 * 1", 366) == 12 + 53 - 3,
	   "'0 0 1 * 1': the 1sts plus the 53 Mondays of 2024, Jan 1, Apr 1, Jul 1 once");
	ok(fires("0 0 * * 1", 2024, 1, 1, 0, 0) && !fires("0 0 * * 1", 2024, 1, 2, 0, 0),
	   "dom '*', dow 1: Mondays only");
	ok(fires("0 0 1 * *", 2024, 5, 1, 0, 0) && !fires("0 0 1 * *", 2024, 5, 2, 0, 0),
	   "dom 1, dow '*': the 1st only");
	ok(fires("0 0 */2 * 1", 2024, 1, 1, 0, 0) && fires("0 0 */2 * 1", 2024, 1, 15, 0, 0) &&
		   !fires("0 0 */2 * 1", 2024, 1, 8, 0, 0) &&
		   !fires("0 0 */2 * 1", 2024, 1, 3, 0, 0),
	   "dom '*/2' counts as '*' (cron): odd days and Monday both needed");
	ok(fires("0 0 * * 0", 2024, 1, 7, 0, 0) && fires("0 0 * * 7", 2024, 1, 7, 0, 0),
	   "0 and 7 are both Sunday");
	ok(fires("@daily, 30 12 * * *", 2024, 6, 1, 12, 30) &&
		   fires("@daily, 30 12 * * *", 2024, 6, 1, 0, 0) &&
		   !fires("@daily, 30 12 * * *", 2024, 6, 1, 12, 31),
	   "a list fires when any entry does");
	ok(fires("* * * jan *", 2024, 1, 1, 0, 0) == false, "month names are not supported");
}

static void test_expiry(void)
{
	struct lxm_expiry e;
	int64_t base;
	struct tm tm = at(2024, 1, 31, 10, 0);

	base = (int64_t)timegm(&tm) * 1000000000LL + 123;
	ok(lxm_expiry_parse("", &e, NULL) == 0 && lxm_expiry_none(&e), "'' is no expiry");
	ok(lxm_expiry_parse("2w", &e, NULL) == 0 && e.weeks == 2 && !lxm_expiry_none(&e),
	   "2w is two weeks");
	ok(lxm_expiry_parse("1d 3H", &e, NULL) == 0 && e.days == 1 && e.hours == 3,
	   "'1d 3H' is a day and three hours");
	ok(lxm_expiry_parse(" 1M 2H 3d 4w 5m 6y ", &e, NULL) == 0 && e.minutes == 1 &&
		   e.hours == 2 && e.days == 3 && e.weeks == 4 && e.months == 5 && e.years == 6,
	   "every unit: M H d w m y");
	ok(lxm_expiry_add(&(struct lxm_expiry){ .minutes = 90 }, base) ==
		   base + 90LL * 60 * 1000000000LL,
	   "90M adds 90 minutes");
	ok(lxm_expiry_add(&(struct lxm_expiry){ .days = 1, .hours = 3 }, base) ==
		   base + 27LL * 3600 * 1000000000LL,
	   "1d 3H adds 27 hours");
	ok(lxm_expiry_add(&(struct lxm_expiry){ .weeks = 2 }, base) ==
		   base + 14LL * 86400 * 1000000000LL,
	   "2w adds 14 days");
	{
		struct tm want = at(2024, 3, 2, 10, 0);

		ok(lxm_expiry_add(&(struct lxm_expiry){ .months = 1 }, base) ==
			   (int64_t)timegm(&want) * 1000000000LL + 123,
		   "Jan 31 2024 plus 1m is Mar 2 (calendar months, normalised)");
	}
	{
		struct tm want = at(2025, 1, 31, 10, 0);

		ok(lxm_expiry_add(&(struct lxm_expiry){ .years = 1 }, base) ==
			   (int64_t)timegm(&want) * 1000000000LL + 123,
		   "plus 1y is the same day next year");
	}
	ok(refused(check_expiry, "2", "unknown unit"), "a count without unit refused");
	ok(refused(check_expiry, "2x", "unknown unit 'x'"), "unit x refused");
	ok(refused(check_expiry, "2h", "unknown unit 'h'"), "lowercase h refused (hours are H)");
	ok(refused(check_expiry, "2S", "unknown unit 'S'"), "seconds refused (join tokens only)");
	ok(refused(check_expiry, "d", "expected a count"), "a unit without count refused");
	ok(refused(check_expiry, "1d3H", "separate the parts"), "parts must be separated");
	ok(refused(check_expiry, "-1d", "expected a count"), "negative refused");
	ok(refused(check_expiry, "99999999999999999999d", "above"), "huge count refused");
}

static void test_pattern(void)
{
	char *taken[] = { "snap0",     "snap1",	  "snap7",  "snapx",   "snap-3", "other",
			  "nightly-2", "nightly", "day5-x", "day12-x", NULL };
	char *name = NULL;
	struct lxm_error *err = NULL;

	ok(lxm_snapshot_pattern_name(NULL, NULL, &name, NULL) == 0 && same(name, "snap0"),
	   "default pattern, no snapshots: snap0");
	free(name);
	ok(lxm_snapshot_pattern_name("snap%d", taken, &name, NULL) == 0 && same(name, "snap8"),
	   "snap%%d: one more than the highest snapN");
	free(name);
	ok(lxm_snapshot_pattern_name("day%d-x", taken, &name, NULL) == 0 && same(name, "day13-x"),
	   "a suffix after %%d");
	free(name);
	ok(lxm_snapshot_pattern_name("weekly", taken, &name, NULL) == 0 && same(name, "weekly"),
	   "no %%d, name free: the pattern itself");
	free(name);
	ok(lxm_snapshot_pattern_name("nightly", taken, &name, NULL) == 0 && same(name, "nightly-3"),
	   "no %%d, name taken: pattern-N");
	free(name);
	ok(lxm_snapshot_pattern_name("bad/name%d", taken, &name, &err) < 0 && err &&
		   strstr(err->msg, "snapshots.pattern"),
	   "an invalid pattern fails naming the key");
	lxm_error_free(err);
	err = NULL;
	ok(refused(lxm_snapshot_pattern_check, "a%d%d", "once"), "two %%d refused");
	ok(refused(lxm_snapshot_pattern_check, "a%s", "once, as %d"), "%%s refused");
	ok(refused(lxm_snapshot_pattern_check, "{{ creation_date|date:\"2006-01-02\" }}",
		   "templates"),
	   "pongo2 templates refused, saying so");
	ok(refused(lxm_snapshot_pattern_check, "a/b%d", "invalid name 'a/b0'"),
	   "a '/' in the name refused");
	ok(lxm_snapshot_pattern_check("auto-%d", NULL) == 0, "auto-%%d accepted");
}

static void test_config_keys(void)
{
	struct lxm_error *err = NULL;

	ok(lxm_snapshot_config_check("limits.memory", "1GiB", NULL) == 0, "other keys ignored");
	ok(lxm_snapshot_config_check("snapshots.schedule", "", NULL) == 0, "'' unsets");
	ok(lxm_snapshot_config_check("snapshots.schedule", "@daily", NULL) == 0 &&
		   lxm_snapshot_config_check("snapshots.expiry", "1d", NULL) == 0 &&
		   lxm_snapshot_config_check("snapshots.pattern", "s%d", NULL) == 0 &&
		   lxm_snapshot_config_check("snapshots.schedule.stopped", "true", NULL) == 0,
	   "good values accepted");
	ok(lxm_snapshot_config_check("snapshots.schedule", "61 * * * *", &err) < 0 && err &&
		   strstr(err->msg, "invalid value for snapshots.schedule") &&
		   strstr(err->msg, "minute"),
	   "a bad schedule names the key and the field");
	lxm_error_free(err);
	err = NULL;
	ok(lxm_snapshot_config_check("snapshots.schedule.stopped", "maybe", &err) < 0 && err &&
		   strstr(err->msg, "snapshots.schedule.stopped") && strstr(err->msg, "boolean"),
	   "a bad boolean refused");
	lxm_error_free(err);
	err = NULL;
	ok(lxm_snapshot_config_check("snapshots.expiry", "2 weeks", &err) < 0 && err &&
		   strstr(err->msg, "snapshots.expiry"),
	   "a bad expiry names the key");
	lxm_error_free(err);
	err = NULL;
	ok(lxm_snapshot_config_check("snapshots.frequency", "1", &err) < 0 && err &&
		   strstr(err->msg, "unknown config key 'snapshots.frequency'"),
	   "an unknown snapshots. key refused");
	lxm_error_free(err);
	err = NULL;
}

int main(void)
{
	test_cron_parse();
	test_matching();
	test_expiry();
	test_pattern();
	test_config_keys();
	return tap_done();
}
