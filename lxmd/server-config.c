/* The server's config keys and the image timers they drive (see server-config.h). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "certificates.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "images/images.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "profiles/policy-internal.h"
#include "server-config.h"
#include "util.h"

/* How often cached images are checked for expiry. */
#define EXPIRY_CHECK_MS (3600 * 1000)

static const char *const compressions[] = { "gzip", "xz", "zstd", "none", NULL };

const struct lxm_server_key lxm_server_keys[] = {
	{
		.name = LXM_KEY_HTTPS_ADDRESS,
		.kind = LXM_SERVER_KEY_ADDRESS,
	},
	{
		.name = LXM_KEY_REMOTE_TOKEN_EXPIRY,
		.kind = LXM_SERVER_KEY_EXPIRY,
	},
	{
		.name = LXM_KEY_AUTO_UPDATE_CACHED,
		.kind = LXM_SERVER_KEY_BOOL,
		.def = "true",
	},
	{
		.name = LXM_KEY_AUTO_UPDATE_INTERVAL,
		.kind = LXM_SERVER_KEY_INT,
		.def = "6",
		.max = 24 * 366,
		.reason = "hours between auto-updates of images, 0 turns auto-update off",
	},
	{
		.name = LXM_KEY_COMPRESSION,
		.kind = LXM_SERVER_KEY_CHOICE,
		.def = "gzip",
		.choices = compressions,
	},
	{
		.name = LXM_KEY_REMOTE_CACHE_EXPIRY,
		.kind = LXM_SERVER_KEY_INT,
		.def = "10",
		.max = 366 * 100,
		.reason = "days an unused cached image is kept, 0 keeps them forever",
	},
};
const size_t lxm_server_keys_n = ARRAY_SIZE(lxm_server_keys);

const struct lxm_server_key *lxm_server_key_find(const char *name)
{
	for (size_t i = 0; i < lxm_server_keys_n; i++)
		if (streq(lxm_server_keys[i].name, name))
			return &lxm_server_keys[i];
	return NULL;
}

/* A whole number without sign, units or spaces; -1 when value is none (or overflows). */
static int64_t read_count(const char *value)
{
	int64_t n = 0;

	if (!*value)
		return -1;
	for (const char *p = value; *p; p++) {
		if (*p < '0' || *p > '9' || n > (INT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (*p - '0');
	}
	return n;
}

/* 1 for a true word, 0 for a false one, -1 for anything else. */
static int read_bool(const char *value)
{
	static const char *const yes[] = { "true", "1", "yes", "on" }, *const no[] = { "false", "0",
										       "no",
										       "off" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(value, yes[i]) == 0)
			return 1;
		if (strcasecmp(value, no[i]) == 0)
			return 0;
	}
	return -1;
}

static int unknown_key(const char *key, struct lxm_error **err)
{
	const char *names[ARRAY_SIZE(lxm_server_keys)];

	for (size_t i = 0; i < lxm_server_keys_n; i++)
		names[i] = lxm_server_keys[i].name;
	return lxm_error_set(err, -EINVAL, 400,
			     "unknown server config key '%s' (did you mean '%s'?)", key,
			     lxm_closest_word(key, names, lxm_server_keys_n));
}

int lxm_server_config_check(const char *key, const char *value, struct lxm_error **err)
{
	const struct lxm_server_key *k = lxm_server_key_find(key);
	char list[64] = "";
	int64_t n;

	if (!k)
		return unknown_key(key, err);
	if (!value || !*value)
		return 0;
	switch (k->kind) {
	case LXM_SERVER_KEY_INT:
		n = read_count(value);
		if (n < 0 || n > k->max)
			return lxm_error_set(
				err, -EINVAL, 400,
				"server config key '%s': invalid value '%.64s': expected "
				"a whole number from 0 to %" PRId64 " (%s)",
				key, value, k->max, k->reason);
		return 0;
	case LXM_SERVER_KEY_BOOL:
		if (read_bool(value) < 0)
			return lxm_error_set(
				err, -EINVAL, 400,
				"server config key '%s': invalid value '%.64s': expected "
				"true or false",
				key, value);
		return 0;
	case LXM_SERVER_KEY_CHOICE:
		for (size_t i = 0; k->choices[i]; i++) {
			if (streq(value, k->choices[i]))
				return 0;
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 i ? ", " : "", k->choices[i]);
		}
		return lxm_error_set(err, -EINVAL, 400,
				     "server config key '%s': invalid value '%.64s': expected one "
				     "of %s",
				     key, value, list);
	case LXM_SERVER_KEY_ADDRESS:
		/* The syntax; whether it can be bound is found when the listener starts. */
		if (strlen(value) > 100 || strpbrk(value, " \t/") || !strchr(value, ':') ||
		    value[strlen(value) - 1] == ':')
			return lxm_error_set(
				err, -EINVAL, 400,
				"server config key '%s': invalid value '%.64s': expected "
				"[IP]:PORT, e.g. ':8443', '127.0.0.1:8443' or '[::]:8443'",
				key, value);
		return 0;
	case LXM_SERVER_KEY_EXPIRY:
		if (lxm_token_expiry_parse(value, 0, &n, err) < 0)
			return lxm_error_prefix(err, "server config key '%s': invalid value", key);
		return 0;
	case LXM_SERVER_KEY_REFUSED:
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "server config key '%s' cannot be set to '%.64s': %s", key,
				     value, k->reason);
	default:
		return lxm_error_set(err, -EINVAL, 500, "server config key '%s': bad table entry",
				     key);
	}
}

/* in's value for key as text, or NULL for null. */
static int value_text(const char *key, const json_t *v, char **ret, struct lxm_error **err)
{
	if (json_is_null(v)) {
		*ret = NULL;
		return 0;
	}
	if (json_is_string(v))
		*ret = strdup(json_string_value(v));
	else if (json_is_integer(v)) {
		if (asprintf(ret, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
			*ret = NULL;
	} else if (json_is_boolean(v))
		*ret = strdup(json_is_true(v) ? "true" : "false");
	else
		return lxm_error_set(err, -EINVAL, 400,
				     "server config key '%s': the value must be a string", key);
	return *ret ? 0 : -ENOMEM;
}

int lxm_server_config_update(const json_t *old, const json_t *in, bool patch, json_t **ret,
			     struct lxm_error **err)
{
	_cleanup_json_ json_t *out = patch && old ? json_deep_copy(old) : json_object();
	const char *key;
	json_t *v;
	int k;

	if (!out)
		return -ENOMEM;
	if (in && !json_is_object(in))
		return lxm_error_set(err, -EINVAL, 400,
				     "server config: \"config\" must be an object");
	json_object_foreach ((json_t *)in, key, v) {
		_cleanup_free_ char *text = NULL;
		const char *was = json_string_value(json_object_get(old, key));

		if ((k = value_text(key, v, &text, err)) < 0)
			return k;
		if (!text && !patch)
			return lxm_error_set(err, -EINVAL, 400,
					     "server config key '%s': the value must be a string "
					     "(null removes a key only in a PATCH)",
					     key);
		if (!text || !*text) {
			json_object_del(out, key);
			continue;
		}
		if (!(was && streq(was, text)) && (k = lxm_server_config_check(key, text, err)) < 0)
			return k;
		if (json_object_set_new(out, key, json_string(text)) < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "server config key '%s': not valid UTF-8", key);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

const char *lxm_server_config_value(const json_t *config, const char *key)
{
	const char *v = json_string_value(json_object_get(config, key));
	const struct lxm_server_key *k;

	if (v && *v)
		return v;
	k = lxm_server_key_find(key);
	return k && k->def ? k->def : "";
}

int64_t lxm_server_config_int(const json_t *config, const char *key)
{
	const struct lxm_server_key *k = lxm_server_key_find(key);
	int64_t n = read_count(lxm_server_config_value(config, key));

	if (n < 0 || (k && n > k->max))
		n = k && k->def ? read_count(k->def) : 0;
	return n;
}

bool lxm_server_config_bool(const json_t *config, const char *key)
{
	const struct lxm_server_key *k = lxm_server_key_find(key);
	int b = read_bool(lxm_server_config_value(config, key));

	if (b < 0)
		b = k && k->def ? read_bool(k->def) > 0 : 0;
	return b > 0;
}

bool lxm_image_cache_expired(const struct lxm_db_image *img, int64_t now, int64_t expiry_days)
{
	int64_t since = img->last_used_at ? img->last_used_at : img->uploaded_at;

	if (!img->cached || expiry_days <= 0)
		return false;
	return now - since >= expiry_days * 86400;
}

bool lxm_image_auto_update_wanted(const struct lxm_db_image *img)
{
	return img->auto_update && img->source && img->source->protocol &&
	       (streq(img->source->protocol, "simplestreams") ||
		streq(img->source->protocol, "template"));
}

int64_t lxm_auto_update_delay(int64_t last, int64_t now, int64_t interval_hours)
{
	int64_t next;

	if (interval_hours <= 0)
		return -1;
	next = last + interval_hours * 3600;
	return next > now ? next - now : 0;
}

/* ---- in the daemon ---- */

struct lxmd_server_config {
	struct lxmd *d;		 /* the daemon */
	uv_timer_t update_timer; /* fires at the next auto-update run */
	uv_timer_t expiry_timer; /* fires at start and then hourly: the cache expiry check */
	int64_t interval;	 /* images.auto_update_interval the timer is armed for (hours) */
	int64_t last_update;	 /* unix seconds of the last auto-update run (or of the start) */
	int open_handles;	 /* timers not closed yet: the struct goes with the last */
};

static int64_t now_sec(void)
{
	return lxm_now_ns() / 1000000000LL;
}

/* The stored config, or NULL when it cannot be read (logged: the callers fall back to the
 * defaults). */
static json_t *read_config(struct lxmd *d)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	json_t *config = NULL;

	if (lxm_db_config_get_all(d->db, &config, &err) < 0) {
		log_error("server config: %s; using the defaults", err ? err->msg : "read failed");
		return NULL;
	}
	return config;
}

char *lxmd_server_config_string(struct lxmd *d, const char *key)
{
	_cleanup_json_ json_t *config = read_config(d);

	return strdup(lxm_server_config_value(config, key));
}

bool lxmd_server_config_get_bool(struct lxmd *d, const char *key)
{
	_cleanup_json_ json_t *config = read_config(d);

	return lxm_server_config_bool(config, key);
}

void lxmd_image_cached_auto_update(struct lxmd *d, const char *fp)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;

	if (!lxmd_server_config_get_bool(d, LXM_KEY_AUTO_UPDATE_CACHED))
		return;
	if (lxm_db_image_get(d->db, fp, &img, &err) < 0 || img->auto_update)
		goto done;
	img->auto_update = true;
	lxm_db_image_update(d->db, img, &err);
done:
	if (err)
		log_warn("cached image %s: set auto_update (%s): %s", fp,
			 LXM_KEY_AUTO_UPDATE_CACHED, err->msg);
}

struct auto_refresh {
	struct lxm_operation *op; /* reports the result */
	char fp[65];		  /* the image refreshed */
};

static void auto_refresh_done(struct lxmd *d, int result, const char *fp,
			      const struct lxm_error *err, void *ud)
{
	struct auto_refresh *ar = ud;
	struct lxm_error *copy = NULL;

	if (result < 0) {
		log_warn("auto-update of image %s: %s", ar->fp, err ? err->msg : strerror(-result));
		lxm_error_set(&copy, err && err->errnum ? -err->errnum : result,
			      err ? err->status : 500, "%s",
			      err ? err->msg : "auto-update image: failed");
		lxm_operation_finish(ar->op, copy);
		free(ar);
		return;
	}
	if (!fp)
		fp = ar->fp;
	if (!streq(fp, ar->fp)) {
		_cleanup_free_ char *url = NULL;

		log_info("auto-update of image %s: replaced by %s", ar->fp, fp);
		if (asprintf(&url, "/1.0/images/%s", fp) >= 0)
			lxm_events_lifecycle(d->events, "image-refreshed", url, NULL);
	} else {
		log_info("auto-update of image %s: it is up to date", ar->fp);
	}
	lxm_operation_set_metadata(ar->op, json_pack("{s:b, s:s}", "refreshed", !streq(fp, ar->fp),
						     "fingerprint", fp));
	lxm_operation_finish(ar->op, NULL);
	free(ar);
}

/* Refreshes img as POST /1.0/images/<fp>/refresh does: in an operation of its own. */
static void auto_refresh(struct lxmd *d, const char *fp)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_operation *op = NULL;
	struct auto_refresh *ar = calloc(1, sizeof(*ar));
	int k;

	if (!ar) {
		log_error("auto-update of image %s: out of memory", fp);
		return;
	}
	snprintf(ar->fp, sizeof(ar->fp), "%s", fp);
	k = lxm_operation_new(d->ops, LXM_OP_TASK, "Refreshing image",
			      json_pack("{s:[s+]}", "images", "/1.0/images/", fp), NULL, NULL, NULL,
			      NULL, &op);
	if (k < 0) {
		log_error("auto-update of image %s: new operation: %s", fp, strerror(-k));
		free(ar);
		return;
	}
	ar->op = op;
	lxm_operation_start(op);
	k = lxmd_image_refresh(d, fp, op, auto_refresh_done, ar, &err);
	if (k < 0) {
		struct lxm_error *copy = NULL;

		log_warn("auto-update of image %s: %s", fp, err ? err->msg : strerror(-k));
		lxm_error_set(&copy, k, err ? err->status : 500, "%s",
			      err ? err->msg : "auto-update image: failed");
		lxm_operation_finish(op, copy);
		free(ar);
	}
}

/* The images of the store, or -errno (logged). */
static int list_images(struct lxmd *d, const char *what, struct lxm_db_image ***ret, size_t *ret_n)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	int k = lxm_db_image_list(d->db, ret, ret_n, &err);

	if (k < 0)
		log_error("%s: %s", what, err ? err->msg : strerror(-k));
	return k;
}

static void free_images(struct lxm_db_image **imgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		lxm_db_image_free(imgs[i]);
	free(imgs);
}

static void arm_update(struct lxmd_server_config *s);

static void on_update(uv_timer_t *t)
{
	struct lxmd_server_config *s = t->data;
	struct lxm_db_image **imgs = NULL;
	size_t n = 0, started = 0;

	s->last_update = now_sec();
	arm_update(s);
	if (s->d->shutting_down || list_images(s->d, "auto-update of images", &imgs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (lxm_image_auto_update_wanted(imgs[i])) {
			auto_refresh(s->d, imgs[i]->fingerprint);
			started++;
		}
	log_info("auto-update of images: %zu of %zu images to refresh (%s every %" PRId64 " h)",
		 started, n, LXM_KEY_AUTO_UPDATE_INTERVAL, s->interval);
	free_images(imgs, n);
}

/* (Re-)arms the auto-update timer for s->interval, counted from the last run. */
static void arm_update(struct lxmd_server_config *s)
{
	int64_t delay = lxm_auto_update_delay(s->last_update, now_sec(), s->interval);

	uv_timer_stop(&s->update_timer);
	if (delay >= 0)
		uv_timer_start(&s->update_timer, on_update, (uint64_t)delay * 1000, 0);
}

int lxmd_image_cache_expire(struct lxmd *d, int64_t now)
{
	_cleanup_json_ json_t *config = read_config(d);
	int64_t days = lxm_server_config_int(config, LXM_KEY_REMOTE_CACHE_EXPIRY);
	struct lxm_db_image **imgs = NULL;
	size_t n = 0;
	int removed = 0;

	if (days == 0 || list_images(d, "cached image expiry", &imgs, &n) < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		_cleanup_error_ struct lxm_error *err = NULL;
		_cleanup_free_ char *url = NULL;
		const char *fp = imgs[i]->fingerprint;

		if (!lxm_image_cache_expired(imgs[i], now, days))
			continue;
		/* lxmd_image_delete refuses an image an instance is being created from. */
		if (lxmd_image_delete(d, fp, &err) < 0) {
			log_warn("cached image %s: expired, kept for now: %s", fp,
				 err ? err->msg : "delete failed");
			continue;
		}
		log_info("cached image %s: unused for %" PRId64 " days or more (%s), deleted", fp,
			 days, LXM_KEY_REMOTE_CACHE_EXPIRY);
		if (asprintf(&url, "/1.0/images/%s", fp) >= 0)
			lxm_events_lifecycle(d->events, "image-deleted", url, NULL);
		removed++;
	}
	free_images(imgs, n);
	return removed;
}

static void on_expiry(uv_timer_t *t)
{
	struct lxmd_server_config *s = t->data;

	if (!s->d->shutting_down)
		lxmd_image_cache_expire(s->d, now_sec());
}

static void timer_closed(uv_handle_t *h)
{
	struct lxmd_server_config *s = h->data;

	if (--s->open_handles == 0)
		free(s);
}

int lxmd_server_config_start(struct lxmd *d, struct lxm_error **err)
{
	_cleanup_json_ json_t *config = read_config(d);
	struct lxmd_server_config *s = calloc(1, sizeof(*s));
	int k;

	if (!s)
		return lxm_error_set(err, -ENOMEM, 500, "start the image timers: out of memory");
	s->d = d;
	s->interval = lxm_server_config_int(config, LXM_KEY_AUTO_UPDATE_INTERVAL);
	/* The first run comes one interval after the start, as a restart must not refresh every
	 * image at once. */
	s->last_update = now_sec();
	uv_timer_init(d->loop, &s->update_timer);
	uv_timer_init(d->loop, &s->expiry_timer);
	s->update_timer.data = s->expiry_timer.data = s;
	s->open_handles = 2;
	d->server_config = s;
	arm_update(s);
	k = uv_timer_start(&s->expiry_timer, on_expiry, 0, EXPIRY_CHECK_MS);
	if (k < 0) {
		lxmd_server_config_stop(d);
		return lxm_error_set(err, k, 500, "start the image timers: %s", uv_strerror(k));
	}
	if (s->interval)
		log_info("auto-update of images every %" PRId64 " h (%s)", s->interval,
			 LXM_KEY_AUTO_UPDATE_INTERVAL);
	else
		log_info("auto-update of images is off (%s is 0)", LXM_KEY_AUTO_UPDATE_INTERVAL);
	return 0;
}

void lxmd_server_config_stop(struct lxmd *d)
{
	struct lxmd_server_config *s = TAKE_PTR(d->server_config);

	if (!s)
		return;
	uv_timer_stop(&s->update_timer);
	uv_timer_stop(&s->expiry_timer);
	uv_close((uv_handle_t *)&s->update_timer, timer_closed);
	uv_close((uv_handle_t *)&s->expiry_timer, timer_closed);
}

void lxmd_server_config_changed(struct lxmd *d, const json_t *old, const json_t *config)
{
	struct lxmd_server_config *s = d->server_config;
	int64_t interval = lxm_server_config_int(config, LXM_KEY_AUTO_UPDATE_INTERVAL);

	if (!s)
		return;
	if (interval != s->interval) {
		int64_t delay = lxm_auto_update_delay(s->last_update, now_sec(), interval);

		s->interval = interval;
		arm_update(s);
		if (delay < 0)
			log_info("%s set to 0: auto-update of images is off",
				 LXM_KEY_AUTO_UPDATE_INTERVAL);
		else
			log_info("%s set to %" PRId64 ": auto-update timer re-armed, next run in "
				 "%" PRId64 " s",
				 LXM_KEY_AUTO_UPDATE_INTERVAL, interval, delay);
	}
	if (lxm_server_config_int(old, LXM_KEY_REMOTE_CACHE_EXPIRY) !=
	    lxm_server_config_int(config, LXM_KEY_REMOTE_CACHE_EXPIRY)) {
		log_info("%s set to %" PRId64 ": checking cached images now",
			 LXM_KEY_REMOTE_CACHE_EXPIRY,
			 lxm_server_config_int(config, LXM_KEY_REMOTE_CACHE_EXPIRY));
		uv_timer_start(&s->expiry_timer, on_expiry, 0, EXPIRY_CHECK_MS);
	}
}
