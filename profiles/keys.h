/* The table of instance config keys: every key lxm knows, with its validator, whether a change
 * applies to a running instance, and who may set it. lxmd checks every config write with it and
 * the CLI checks the same way before sending, so that both give the same error. Pure: no files,
 * no syscalls; values that depend on the host (CPU ids, percentages of its memory) are checked
 * again by the policy compiler on the expanded config. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Who may write a key. */
enum lxm_key_access {
	LXM_KEY_USER,	     /* users set and unset it */
	LXM_KEY_READONLY,    /* lxmd sets it; a client may only send it back unchanged */
	LXM_KEY_UNSUPPORTED, /* an LXD key lxm does not implement: refused, never ignored */
};

/* What a config write is part of. */
enum lxm_config_target {
	LXM_CONFIG_CREATE,  /* a new instance: read-only keys may come along (a copy's image.*) */
	LXM_CONFIG_UPDATE,  /* an instance's PUT or PATCH: read-only keys only unchanged */
	LXM_CONFIG_PROFILE, /* a profile: instance-only keys (image.*, volatile.*) are refused */
};

struct lxm_config_key;

/* Checks value (never NULL or "") for key, an instance of k; -EINVAL with a 400 in err that names
 * key, the value and what a valid value looks like. */
typedef int (*lxm_config_key_check_fn)(const struct lxm_config_key *k, const char *key,
				       const char *value, struct lxm_error **err);

struct lxm_config_key {
	/* The key, or a pattern: "environment.*" (any non-empty rest), "volatile.<dev>.hwaddr"
	   (<dev>: one non-empty segment without '.'). */
	const char *name;
	const char *type;	       /* what the value is, for people: "size", "boolean", ... */
	lxm_config_key_check_fn check; /* the validator; NULL: any string */
	int64_t min;		       /* smallest value of an integer key */
	int64_t max;		       /* largest value of an integer key */
	enum lxm_key_access access;    /* who may write it */
	bool live;		       /* a change applies to a running instance at once */
	bool instance_only;	       /* refused in profiles (image.*, volatile.*) */
	const char *description;       /* one line for people */
};

/* The table, most specific patterns first; lxm_config_keys_n entries. */
extern const struct lxm_config_key lxm_config_keys[];
extern const size_t lxm_config_keys_n;

/* The table entry key matches, or NULL. */
const struct lxm_config_key *lxm_config_key_find(const char *key);

/* Whether key is one that lxmd writes and users may not change (image.*, most volatile.*). */
bool lxm_config_key_readonly(const char *key);

/* Checks that a user may set key to value in target: the key exists (else a 400 with the closest
 * valid key), lxm supports it, it may be written there, and the value is valid. "" unsets a key
 * and needs no valid value. Read-only keys are refused here; lxm_config_check() lets them
 * through unchanged. */
int lxm_config_key_check(const char *key, const char *value, enum lxm_config_target target,
			 struct lxm_error **err);

/* Checks a whole config write: config (an object of strings, NULL for none) replacing old (the
 * instance's or profile's config before, NULL when there is none). Keys whose value does not
 * change are not checked again, so a client may send back what it read (image.*, volatile.*,
 * and keys of an older lxm); every other key goes through lxm_config_key_check(). */
int lxm_config_check(const json_t *old, const json_t *config, enum lxm_config_target target,
		     struct lxm_error **err);
