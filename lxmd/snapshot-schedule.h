/* Scheduled and expiring snapshots: the instance keys snapshots.schedule,
 * snapshots.schedule.stopped, snapshots.expiry and snapshots.pattern, parsed by pure functions, and
 * one timer on lxmd's loop that fires at each wall-clock minute, takes the snapshots the schedules
 * ask for and deletes the snapshots whose expires_at has passed. Schedules are evaluated in the
 * daemon's local time, as cron and LXD do (TZ; UTC when unset). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "error.h"

struct lxmd;

/* One cron entry: which minutes, hours, days, months and weekdays it fires at. */
struct lxm_cron {
	uint64_t minutes;  /* bit m: minute m (0-59) */
	uint32_t hours;	   /* bit h: hour h (0-23) */
	uint32_t days;	   /* bit d: day of the month d (1-31) */
	uint16_t months;   /* bit m: month m (1-12) */
	uint8_t weekdays;  /* bit d: weekday d (0 Sunday - 6 Saturday; 7 is read as 0) */
	bool days_any;	   /* the day-of-month field starts with '*' */
	bool weekdays_any; /* the day-of-week field starts with '*' */
};

/* The most entries a snapshots.schedule may list. */
#define LXM_SCHEDULE_MAX 32

/* A parsed snapshots.schedule: it fires when any of its entries does. */
struct lxm_schedule {
	size_t n;				/* entries in use; 0: never fires */
	struct lxm_cron cron[LXM_SCHEDULE_MAX]; /* the entries */
};

/* Parses one cron entry: 5 fields (minute hour day-of-month month day-of-week), each a comma
 * list of '*', a number or a range a-b, each optionally followed by a step /n; or an alias
 * @hourly, @daily, @midnight, @weekly, @monthly, @annually, @yearly. 400 naming the field and
 * what is wrong. */
int lxm_cron_parse(const char *text, struct lxm_cron *ret, struct lxm_error **err);

/* Parses snapshots.schedule: "" (never), or entries separated by ", " (a comma followed by
 * whitespace; a comma without space belongs to a field's list, as in "0,30 * * * *"). */
int lxm_schedule_parse(const char *text, struct lxm_schedule *ret, struct lxm_error **err);

/* Whether the entry fires in the minute tm (a broken-down time). When both the day-of-month and
 * the day-of-week fields are restricted (neither starts with '*') either may match, as in cron;
 * otherwise both must. */
bool lxm_cron_matches(const struct lxm_cron *c, const struct tm *tm);
bool lxm_schedule_matches(const struct lxm_schedule *s, const struct tm *tm);

/* A parsed snapshots.expiry: "1M 2H 3d 4w 5m 6y" (minutes, hours, days, weeks, months, years),
 * space-separated, each a positive count and a unit. */
struct lxm_expiry {
	int64_t seconds; /* S (join tokens only) */
	int64_t minutes; /* M */
	int64_t hours;	 /* H */
	int64_t days;	 /* d */
	int64_t weeks;	 /* w */
	int64_t months;	 /* m */
	int64_t years;	 /* y */
};

/* Parses snapshots.expiry; "" gives all zero (no expiry). 400 naming the bad part. */
int lxm_expiry_parse(const char *text, struct lxm_expiry *ret, struct lxm_error **err);
/* The same, with S (seconds) accepted too when seconds is true (core.remote_token_expiry). */
int lxm_expiry_parse_units(const char *text, bool seconds, struct lxm_expiry *ret,
			   struct lxm_error **err);
/* Whether e is all zero. */
bool lxm_expiry_none(const struct lxm_expiry *e);
/* from_ns (unix nanoseconds) plus e, in calendar arithmetic for days, months and years (UTC):
 * Jan 31 plus 1m is Mar 3 (or 2), as Go's AddDate makes it. */
int64_t lxm_expiry_add(const struct lxm_expiry *e, int64_t from_ns);

/* Checks snapshots.pattern: at most one "%d" (the snapshot's number), no other '%' and no pongo2
 * template; with %d as 0 it must be a valid snapshot name. 400 naming what is wrong. */
int lxm_snapshot_pattern_check(const char *pattern, struct lxm_error **err);

/* The name for a new snapshot from pattern (NULL or "": "snap%d") given the names taken (a
 * NULL-terminated array, may be NULL): with %d, one more than the highest number among the names
 * the pattern gives (0 when none); without, the pattern itself while free, else pattern-%d
 * numbered the same way (as LXD does). */
int lxm_snapshot_pattern_name(const char *pattern, char *const *taken, char **ret,
			      struct lxm_error **err);

/* Checks one instance or profile config key of the snapshots. namespace: the four keys above
 * with their value rules, other snapshots.* keys are unknown. 0 for keys outside the
 * namespace. */
int lxm_snapshot_config_check(const char *key, const char *value, struct lxm_error **err);

/* Starts the minute timer on d's loop (after instances are recovered). */
int lxmd_snapshot_schedule_start(struct lxmd *d, struct lxm_error **err);
/* Stops and closes the timer (at shutdown); no new scheduled work starts after it. */
void lxmd_snapshot_schedule_stop(struct lxmd *d);
/* Takes a snapshot of instance as POST /1.0/instances/<name>/snapshots does (an operation,
 * lifecycle events, the files copied on the thread pool). name NULL: named by the instance's
 * snapshots.pattern; expires_at -1: now plus its snapshots.expiry (0: never). scheduled: the
 * scheduler's (expired snapshots are looked for when it ends). Implemented in api-snapshots.c. */
int lxmd_snapshot_take(struct lxmd *d, const char *instance, const char *name, int64_t expires_at,
		       bool scheduled, struct lxm_error **err);
/* Deletes snapshot instance/name as DELETE does (an operation, lifecycle events), as the
 * scheduler's: the next expired snapshot of instance is looked for when it ends. */
int lxmd_snapshot_delete_expired(struct lxmd *d, const char *instance, const char *name,
				 struct lxm_error **err);
/* Deletes the expired snapshots of instance, one after the other, through the snapshot delete
 * job (the snapshot code calls it again when one of these jobs ends). */
void lxmd_snapshot_expire(struct lxmd *d, const char *instance);
