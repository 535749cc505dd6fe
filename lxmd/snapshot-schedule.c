/* snapshots.schedule, snapshots.expiry and snapshots.pattern: their parsers (pure functions) and
 * the minute timer that runs them on lxmd's loop. The snapshots themselves are taken and deleted
 * by api-snapshots.c's jobs (an operation each, on the thread pool): the timer only decides. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "api/api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "snapshot-schedule.h"
#include "util.h"

/* ---- cron ---- */

struct cron_field {
	const char *name; /* as errors name it */
	int min, max;	  /* the values it takes */
};

static const struct cron_field cron_fields[5] = {
	{ "minute", 0, 59 }, { "hour", 0, 23 },	      { "day-of-month", 1, 31 },
	{ "month", 1, 12 },  { "day-of-week", 0, 7 },
};

/* A decimal number of at most 4 digits at *p, which moves past it. */
static int cron_number(const char **p, int *ret)
{
	int v = 0, n = 0;

	while (isdigit((unsigned char)**p) && n < 5) {
		v = v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	if (n == 0 || n > 4)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* One field ("*", "1-5/2", "0,30") into bits; *any when it starts with '*'. */
static int cron_field_parse(const char *text, const struct cron_field *f, uint64_t *ret, bool *any,
			    struct lxm_error **err)
{
	uint64_t bits = 0;
	const char *p = text;

	*any = *text == '*';
	for (;;) {
		int lo, hi, step = 1;

		if (*p == '*') {
			lo = f->min;
			hi = f->max;
			p++;
		} else {
			if (cron_number(&p, &lo) < 0)
				goto syntax;
			hi = lo;
			if (*p == '-') {
				p++;
				if (cron_number(&p, &hi) < 0)
					goto syntax;
			}
			if (lo < f->min || hi > f->max)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s field '%s': values must be within %d-%d",
						     f->name, text, f->min, f->max);
			if (lo > hi)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s field '%s': range %d-%d is backwards",
						     f->name, text, lo, hi);
		}
		if (*p == '/') {
			p++;
			if (cron_number(&p, &step) < 0)
				goto syntax;
			if (step == 0)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s field '%s': a step must be at least 1",
						     f->name, text);
			/* "5/15" is "5-max/15". */
			if (hi == lo)
				hi = f->max;
		}
		for (int v = lo; v <= hi; v += step)
			bits |= 1ULL << v;
		if (*p == '\0')
			break;
		if (*p != ',')
			goto syntax;
		p++;
	}
	*ret = bits;
	return 0;
syntax:
	return lxm_error_set(err, -EINVAL, 400,
			     "%s field '%s': expected '*', a number, a range a-b, a step */n or "
			     "a-b/n, or a comma list of those",
			     f->name, text);
}

static const struct {
	const char *alias;    /* as written */
	const char *expanded; /* the cron entry it stands for */
} cron_aliases[] = {
	{ "@hourly", "0 * * * *" }, { "@daily", "0 0 * * *" },	 { "@midnight", "0 0 * * *" },
	{ "@weekly", "0 0 * * 0" }, { "@monthly", "0 0 1 * *" }, { "@annually", "0 0 1 1 *" },
	{ "@yearly", "0 0 1 1 *" },
};

int lxm_cron_parse(const char *text, struct lxm_cron *ret, struct lxm_error **err)
{
	_cleanup_free_ char *copy = NULL;
	char *fields[6], *save = NULL;
	uint64_t bits[5];
	bool any[5];
	size_t n = 0;
	int k;

	if (*text == '@') {
		for (size_t i = 0; i < ARRAY_SIZE(cron_aliases); i++)
			if (streq(text, cron_aliases[i].alias))
				return lxm_cron_parse(cron_aliases[i].expanded, ret, err);
		return lxm_error_set(err, -EINVAL, 400,
				     "unknown alias '%s': expected @hourly, @daily, @midnight, "
				     "@weekly, @monthly, @annually or @yearly",
				     text);
	}
	copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (n == ARRAY_SIZE(fields))
			break;
		fields[n++] = w;
	}
	if (n != 5)
		return lxm_error_set(err, -EINVAL, 400,
				     "'%s' has %s%zu fields: expected 5 (minute hour day-of-month "
				     "month day-of-week) or an alias such as @daily",
				     text, n > 5 ? "more than " : "", n > 5 ? (size_t)5 : n);
	for (size_t i = 0; i < 5; i++) {
		k = cron_field_parse(fields[i], &cron_fields[i], &bits[i], &any[i], err);
		if (k < 0)
			return k;
	}
	*ret = (struct lxm_cron){
		.minutes = bits[0],
		.hours = (uint32_t)bits[1],
		.days = (uint32_t)bits[2],
		.months = (uint16_t)bits[3],
		/* 7 is Sunday too. */
		.weekdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f),
		.days_any = any[2],
		.weekdays_any = any[4],
	};
	return 0;
}

int lxm_schedule_parse(const char *text, struct lxm_schedule *ret, struct lxm_error **err)
{
	const char *p = text;
	int k;

	ret->n = 0;
	while (isspace((unsigned char)*p))
		p++;
	while (*p) {
		const char *sep = p;
		_cleanup_free_ char *entry = NULL;
		size_t len;

		/* An entry ends at a comma followed by whitespace. */
		while (*sep && !(sep[0] == ',' && isspace((unsigned char)sep[1])))
			sep++;
		len = (size_t)(sep - p);
		while (len > 0 && isspace((unsigned char)p[len - 1]))
			len--;
		if (len == 0)
			return lxm_error_set(err, -EINVAL, 400, "'%s' has an empty entry", text);
		if (ret->n == LXM_SCHEDULE_MAX)
			return lxm_error_set(err, -EINVAL, 400, "'%s' has more than %d entries",
					     text, LXM_SCHEDULE_MAX);
		entry = strndup(p, len);
		if (!entry)
			return -ENOMEM;
		k = lxm_cron_parse(entry, &ret->cron[ret->n], err);
		if (k < 0)
			return k;
		ret->n++;
		p = *sep ? sep + 1 : sep;
		while (isspace((unsigned char)*p))
			p++;
	}
	return 0;
}

bool lxm_cron_matches(const struct lxm_cron *c, const struct tm *tm)
{
	bool dom = c->days & (1U << tm->tm_mday), dow = c->weekdays & (1U << tm->tm_wday);

	if (!(c->minutes & (1ULL << tm->tm_min)) || !(c->hours & (1U << tm->tm_hour)) ||
	    !(c->months & (1U << (tm->tm_mon + 1))))
		return false;
	if (!c->days_any && !c->weekdays_any)
		return dom || dow;
	return dom && dow;
}

bool lxm_schedule_matches(const struct lxm_schedule *s, const struct tm *tm)
{
	for (size_t i = 0; i < s->n; i++)
		if (lxm_cron_matches(&s->cron[i], tm))
			return true;
	return false;
}

/* ---- expiry ---- */

/* The largest count a unit takes: enough for any sane expiry, far from overflows. */
#define EXPIRY_MAX 1000000

int lxm_expiry_parse_units(const char *text, bool seconds, struct lxm_expiry *ret,
			   struct lxm_error **err)
{
	const char *units = seconds ? "S seconds, M minutes" : "M minutes";
	const char *p = text;

	*ret = (struct lxm_expiry){ 0 };
	for (;;) {
		const char *start;
		int64_t v = 0, *unit;

		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			return 0;
		start = p;
		while (isdigit((unsigned char)*p) && v <= EXPIRY_MAX)
			v = v * 10 + (*p++ - '0');
		if (p == start)
			return lxm_error_set(
				err, -EINVAL, 400,
				"'%s': expected a count and a unit (%s, H hours, d days, "
				"w weeks, m months, y years) such as '2w' or '1d 3H'",
				text, units);
		if (v > EXPIRY_MAX)
			return lxm_error_set(err, -EINVAL, 400, "'%s': a count above %d", text,
					     EXPIRY_MAX);
		switch (*p) {
		case 'S':
			unit = seconds ? &ret->seconds : NULL;
			break;
		case 'M':
			unit = &ret->minutes;
			break;
		case 'H':
			unit = &ret->hours;
			break;
		case 'd':
			unit = &ret->days;
			break;
		case 'w':
			unit = &ret->weeks;
			break;
		case 'm':
			unit = &ret->months;
			break;
		case 'y':
			unit = &ret->years;
			break;
		default:
			unit = NULL;
			break;
		}
		if (!unit)
			return lxm_error_set(err, -EINVAL, 400,
					     "'%s': unknown unit '%.*s' after %lld: expected %s, "
					     "H hours, d days, w weeks, m months or y years",
					     text, *p ? 1 : 0, p, (long long)v, units);
		p++;
		if (*p && !isspace((unsigned char)*p))
			return lxm_error_set(err, -EINVAL, 400,
					     "'%s': '%c' after '%.*s': separate the parts with "
					     "spaces",
					     text, *p, (int)(p - start), start);
		*unit += v;
		if (*unit > EXPIRY_MAX)
			return lxm_error_set(err, -EINVAL, 400, "'%s': a count above %d", text,
					     EXPIRY_MAX);
	}
}

int lxm_expiry_parse(const char *text, struct lxm_expiry *ret, struct lxm_error **err)
{
	return lxm_expiry_parse_units(text, false, ret, err);
}

bool lxm_expiry_none(const struct lxm_expiry *e)
{
	return !e->seconds && !e->minutes && !e->hours && !e->days && !e->weeks && !e->months &&
	       !e->years;
}

int64_t lxm_expiry_add(const struct lxm_expiry *e, int64_t from_ns)
{
	time_t sec = (time_t)(from_ns / 1000000000LL);
	int64_t nsec = from_ns % 1000000000LL;
	struct tm tm;

	gmtime_r(&sec, &tm);
	tm.tm_year += (int)e->years;
	tm.tm_mon += (int)e->months;
	tm.tm_mday += (int)(e->days + 7 * e->weeks);
	tm.tm_hour += (int)e->hours;
	tm.tm_min += (int)e->minutes;
	tm.tm_sec += (int)e->seconds;
	return (int64_t)timegm(&tm) * 1000000000LL + nsec;
}

/* ---- pattern ---- */

#define DEFAULT_PATTERN "snap%d"

int lxm_snapshot_pattern_check(const char *pattern, struct lxm_error **err)
{
	_cleanup_free_ char *name = NULL;
	const char *pct = strchr(pattern, '%'), *reason;

	if (strstr(pattern, "{{") || strstr(pattern, "{%"))
		return lxm_error_set(err, -EINVAL, 400,
				     "'%s': templates ({{ ... }}) are not supported; use %%d for "
				     "the snapshot's number",
				     pattern);
	if (pct && (pct[1] != 'd' || strchr(pct + 2, '%')))
		return lxm_error_set(err, -EINVAL, 400,
				     "'%s': '%%' may appear once, as %%d (the snapshot's number)",
				     pattern);
	if (pct) {
		if (asprintf(&name, "%.*s0%s", (int)(pct - pattern), pattern, pct + 2) < 0)
			return -ENOMEM;
	} else if (!(name = strdup(pattern))) {
		return -ENOMEM;
	}
	reason = lxm_name_invalid_reason(name);
	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "'%s' gives the invalid name '%s': %s",
				     pattern, name, reason);
	return 0;
}

/* One more than the highest number n of the taken names prefix<n>suffix; 0 when none. */
static long next_number(const char *prefix, size_t plen, const char *suffix, char *const *taken)
{
	size_t slen = strlen(suffix);
	long next = 0;

	for (char *const *t = taken; t && *t; t++) {
		size_t len = strlen(*t), digits;
		long v = 0;

		if (len <= plen + slen || strncmp(*t, prefix, plen) != 0 ||
		    strcmp(*t + len - slen, suffix) != 0)
			continue;
		digits = len - plen - slen;
		if (digits > 15)
			continue;
		for (size_t i = 0; i < digits && v >= 0; i++) {
			char c = (*t)[plen + i];

			v = isdigit((unsigned char)c) ? v * 10 + (c - '0') : -1;
		}
		if (v >= next)
			next = v + 1;
	}
	return next;
}

int lxm_snapshot_pattern_name(const char *pattern, char *const *taken, char **ret,
			      struct lxm_error **err)
{
	const char *pct;
	int k;

	if (!pattern || !*pattern)
		pattern = DEFAULT_PATTERN;
	k = lxm_snapshot_pattern_check(pattern, err);
	if (k < 0)
		return lxm_error_prefix(err, "snapshots.pattern");
	pct = strstr(pattern, "%d");
	if (!pct) {
		_cleanup_free_ char *prefix = NULL;
		bool used = false;

		for (char *const *t = taken; t && *t && !used; t++)
			used = streq(*t, pattern);
		if (!used)
			return (*ret = strdup(pattern)) ? 0 : -ENOMEM;
		/* Taken: pattern-0, pattern-1, ... */
		if (asprintf(&prefix, "%s-", pattern) < 0)
			return -ENOMEM;
		return asprintf(ret, "%s%ld", prefix,
				next_number(prefix, strlen(prefix), "", taken)) < 0
			       ? -ENOMEM
			       : 0;
	}
	return asprintf(ret, "%.*s%ld%s", (int)(pct - pattern), pattern,
			next_number(pattern, (size_t)(pct - pattern), pct + 2, taken), pct + 2) < 0
		       ? -ENOMEM
		       : 0;
}

/* ---- config keys ---- */

/* The booleans LXD accepts. */
static int parse_bool(const char *v, bool *ret)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int lxm_snapshot_config_check(const char *key, const char *value, struct lxm_error **err)
{
	int k = 0;

	if (!startswith(key, "snapshots."))
		return 0;
	if (!value || !*value)
		return 0;
	if (streq(key, "snapshots.schedule")) {
		struct lxm_schedule s;

		k = lxm_schedule_parse(value, &s, err);
	} else if (streq(key, "snapshots.schedule.stopped")) {
		bool b;

		if (parse_bool(value, &b) < 0)
			k = lxm_error_set(err, -EINVAL, 400,
					  "'%s' is not a boolean (true or false)", value);
	} else if (streq(key, "snapshots.expiry")) {
		struct lxm_expiry e;

		k = lxm_expiry_parse(value, &e, err);
	} else if (streq(key, "snapshots.pattern")) {
		k = lxm_snapshot_pattern_check(value, err);
	} else {
		return lxm_error_set(err, -EINVAL, 400,
				     "unknown config key '%s': the snapshots. keys are "
				     "snapshots.schedule, snapshots.schedule.stopped, "
				     "snapshots.expiry and snapshots.pattern",
				     key);
	}
	if (k < 0)
		return lxm_error_prefix(err, "invalid value for %s", key);
	return 0;
}

/* ---- the timer ---- */

struct lxmd_snapshot_scheduler {
	uv_timer_t timer;    /* fires just after each wall-clock minute begins */
	struct lxmd *d;	     /* the daemon */
	int64_t last_minute; /* the last minute (unix seconds / 60) whose schedules ran */
};

static void scheduler_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Just past the next minute boundary, in ms. */
static uint64_t until_next_minute(void)
{
	int64_t now_ms = lxm_now_ns() / 1000000;

	return (uint64_t)(60000 - now_ms % 60000) + 20;
}

void lxmd_snapshot_expire(struct lxmd *d, const char *instance)
{
	struct lxm_db_snapshot **list = NULL;
	struct lxm_error *err = NULL;
	int64_t now = lxm_now_ns();
	size_t n = 0;

	if (d->shutting_down || lxmd_snapshot_busy(instance))
		return;
	if (lxm_db_snapshot_list(d->db, instance, &list, &n, &err) < 0) {
		log_error("expire snapshots of '%s': %s", instance, err->msg);
		lxm_error_free(err);
		return;
	}
	/* One at a time: the job holds the instance, and looks again when it ends. */
	for (size_t i = 0; i < n; i++) {
		if (list[i]->expires_at <= 0 || list[i]->expires_at > now)
			continue;
		log_info("snapshot '%s/%s' expired: deleting it", instance, list[i]->name);
		if (lxmd_snapshot_delete_expired(d, instance, list[i]->name, &err) < 0) {
			log_error("delete expired snapshot '%s/%s': %s", instance, list[i]->name,
				  err->msg);
			lxm_error_free(TAKE_PTR(err));
		}
		break;
	}
	lxm_db_snapshot_list_free(list, n);
}

/* Whether instance's schedule fires in minute tm, and takes the snapshot when it does. */
static void schedule_one(struct lxmd *d, const char *name, const struct tm *tm)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	struct lxm_error *err = NULL;
	struct lxm_schedule s;
	const char *spec, *stopped;
	bool when_stopped = false;
	int code;

	if (lxm_db_instance_get(d->db, name, &inst, &err) < 0 ||
	    lxmd_instance_expand(d, inst, &config, &devices, &err) < 0)
		goto fail;
	spec = json_string_value(json_object_get(config, "snapshots.schedule"));
	if (!spec || !*spec)
		return;
	if (lxm_schedule_parse(spec, &s, &err) < 0) {
		lxm_error_prefix(&err, "snapshots.schedule");
		goto fail;
	}
	if (!lxm_schedule_matches(&s, tm))
		return;
	stopped = json_string_value(json_object_get(config, "snapshots.schedule.stopped"));
	if (stopped && *stopped && parse_bool(stopped, &when_stopped) < 0)
		when_stopped = false;
	if (!when_stopped && streq(lxmd_instance_status(d, name, &code), "Stopped")) {
		log_debug("scheduled snapshot of '%s': skipped, the instance is stopped "
			  "(snapshots.schedule.stopped is false)",
			  name);
		return;
	}
	if (lxmd_snapshot_busy(name)) {
		log_warn("scheduled snapshot of '%s': skipped, a snapshot or restore of it is "
			 "under way",
			 name);
		return;
	}
	if (lxmd_snapshot_take(d, name, NULL, -1, true, &err) < 0)
		goto fail;
	return;
fail:
	log_error("scheduled snapshot of '%s': %s", name, err ? err->msg : "out of memory");
	lxm_error_free(err);
}

static void on_tick(uv_timer_t *t)
{
	struct lxmd_snapshot_scheduler *s = t->data;
	struct lxmd *d = s->d;
	_cleanup_strv_ char **names = NULL;
	struct lxm_error *err = NULL;
	int64_t minute = lxm_now_ns() / 1000000000LL / 60;
	bool run = minute > s->last_minute;

	uv_timer_start(&s->timer, on_tick, until_next_minute(), 0);
	if (d->shutting_down)
		return;
	if (lxm_db_instance_names(d->db, &names, &err) < 0) {
		log_error("snapshot schedules: %s", err->msg);
		lxm_error_free(err);
		return;
	}
	if (run) {
		time_t when = (time_t)(minute * 60);
		struct tm tm;

		/* Each minute once, even when the clock is stepped back. */
		s->last_minute = minute;
		localtime_r(&when, &tm);
		for (char **n = names; *n; n++)
			schedule_one(d, *n, &tm);
	}
	for (char **n = names; *n; n++)
		lxmd_snapshot_expire(d, *n);
}

int lxmd_snapshot_schedule_start(struct lxmd *d, struct lxm_error **err)
{
	struct lxmd_snapshot_scheduler *s = calloc(1, sizeof(*s));
	int k;

	if (!s)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	s->d = d;
	/* The minute under way when the daemon starts is not run: a restart must not take a
	 * second snapshot in it. Expired snapshots go at once. */
	s->last_minute = lxm_now_ns() / 1000000000LL / 60;
	uv_timer_init(d->loop, &s->timer);
	s->timer.data = s;
	k = uv_timer_start(&s->timer, on_tick, 0, 0);
	if (k < 0) {
		uv_close((uv_handle_t *)&s->timer, scheduler_closed);
		return lxm_error_set(err, k, 500, "start the snapshot scheduler: %s",
				     uv_strerror(k));
	}
	d->scheduler = s;
	return 0;
}

void lxmd_snapshot_schedule_stop(struct lxmd *d)
{
	struct lxmd_snapshot_scheduler *s = TAKE_PTR(d->scheduler);

	if (!s)
		return;
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, scheduler_closed);
}
