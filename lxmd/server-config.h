/* The server's config (GET, PUT and PATCH /1.0): the table of the keys lxmd honours, their checks
 * and defaults, and the two timers that make the images.* keys effective: the auto-update of
 * images with auto_update=true every images.auto_update_interval hours, and the hourly removal of
 * cached images unused for images.remote_cache_expiry days. The selection of what those timers
 * act on is made by pure functions of the images and the time, so tests can run them with fake
 * times. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct lxmd;
struct lxm_db_image;

#define LXM_KEY_AUTO_UPDATE_INTERVAL "images.auto_update_interval"
#define LXM_KEY_REMOTE_CACHE_EXPIRY  "images.remote_cache_expiry"
#define LXM_KEY_AUTO_UPDATE_CACHED   "images.auto_update_cached"
#define LXM_KEY_COMPRESSION	     "images.compression_algorithm"
#define LXM_KEY_HTTPS_ADDRESS	     "core.https_address"
#define LXM_KEY_REMOTE_TOKEN_EXPIRY  "core.remote_token_expiry"

enum lxm_server_key_kind {
	LXM_SERVER_KEY_INT,	/* a whole number from 0 to max */
	LXM_SERVER_KEY_BOOL,	/* true/false (also 1/0, yes/no, on/off) */
	LXM_SERVER_KEY_CHOICE,	/* one of choices */
	LXM_SERVER_KEY_REFUSED, /* known to LXD, not supported yet: refused with reason */
	LXM_SERVER_KEY_ADDRESS, /* [IP]:PORT to listen on */
	LXM_SERVER_KEY_EXPIRY,	/* LXD's expiry: "1d 3H" (see lxm_token_expiry_parse) */
	_LXM_SERVER_KEY_KIND_MAX,
	_LXM_SERVER_KEY_KIND_INVALID = -1,
};

struct lxm_server_key {
	const char *name;	       /* "images.auto_update_interval" */
	enum lxm_server_key_kind kind; /* how a value is checked */
	const char *def;	       /* the value in effect while the key is unset */
	int64_t max;		       /* LXM_SERVER_KEY_INT: the largest value */
	const char *const *choices;    /* LXM_SERVER_KEY_CHOICE: NULL-terminated values */
	const char *reason; /* what a value means (INT), or why it is refused (REFUSED) */
};

/* Every key the server's config may hold, sorted by name. */
extern const struct lxm_server_key lxm_server_keys[];
extern const size_t lxm_server_keys_n;

/* The table entry of name, or NULL. */
const struct lxm_server_key *lxm_server_key_find(const char *name);

/* Checks that key may be set to value ("" always may: it unsets the key). 400 naming the key and
 * the value and what is expected; an unknown key names the nearest known one; a refused key says
 * why. */
int lxm_server_config_check(const char *key, const char *value, struct lxm_error **err);

/* The config a PUT (patch false: in replaces old) or a PATCH (in is merged into old) leaves:
 * in's values are strings (numbers and booleans are taken as their text); "" and, in a PATCH,
 * null remove the key. New and changed values are checked; values a PUT sends back unchanged
 * pass unchecked, so a config written by an older lxmd can still be edited. */
int lxm_server_config_update(const json_t *old, const json_t *in, bool patch, json_t **ret,
			     struct lxm_error **err);

/* The value of key in config, or its default ("" for a key without one). */
const char *lxm_server_config_value(const json_t *config, const char *key);
/* The value of an INT key (its default when unset or unreadable). */
int64_t lxm_server_config_int(const json_t *config, const char *key);
/* The value of a BOOL key (its default when unset or unreadable). */
bool lxm_server_config_bool(const json_t *config, const char *key);

/* Whether the hourly check at now (unix seconds) removes img: a cached image (fetched for an
 * instance) not used for expiry_days days, counted from its last use, or from its upload when
 * it was never used. expiry_days 0 keeps cached images forever. */
bool lxm_image_cache_expired(const struct lxm_db_image *img, int64_t now, int64_t expiry_days);
/* Whether an auto-update run refreshes img: auto_update is set and it has a source to refresh
 * from (an image server or a template). */
bool lxm_image_auto_update_wanted(const struct lxm_db_image *img);
/* Seconds from now until the next auto-update run, the last one (or the daemon's start) having
 * been at last (unix seconds) and the interval being interval_hours: 0 when it is due already,
 * -1 when auto-update is off (interval 0). */
int64_t lxm_auto_update_delay(int64_t last, int64_t now, int64_t interval_hours);

/* The value of key in d's stored config, or its default (also when the database cannot be read:
 * that is logged). The caller frees it; NULL when out of memory. */
char *lxmd_server_config_string(struct lxmd *d, const char *key);
/* The same for a BOOL key. */
bool lxmd_server_config_get_bool(struct lxmd *d, const char *key);

/* Starts the auto-update and expiry timers on d's loop (the first expiry check runs as soon as
 * the loop does). */
int lxmd_server_config_start(struct lxmd *d, struct lxm_error **err);
/* Stops and closes the timers (at shutdown). */
void lxmd_server_config_stop(struct lxmd *d);
/* Makes a new config effective (after PUT or PATCH /1.0 stored it): re-arms the auto-update
 * timer when the interval changed, and checks for expired cached images at once when the
 * expiry changed. Logs what it did. */
void lxmd_server_config_changed(struct lxmd *d, const json_t *old, const json_t *config);
/* Removes the cached images expired at now (unix seconds); images being used (an instance is
 * created from them) stay. Returns how many were removed. */
int lxmd_image_cache_expire(struct lxmd *d, int64_t now);
/* images.auto_update_cached: makes fp, just cached for an instance, auto_update when the key is
 * true (failures are logged: the image stays as it is). */
void lxmd_image_cached_auto_update(struct lxmd *d, const char *fp);
