/* /1.0/profiles: named bundles of config and devices that instances apply in order. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "json.h"
#include "server.h"
#include "util.h"

static int profile_url(const char *name, char **ret)
{
	return asprintf(ret, "/1.0/profiles/%s", name) < 0 ? -ENOMEM : 0;
}

static void lifecycle(struct lxmd_request *r, const char *action, const char *name)
{
	_cleanup_free_ char *url = NULL;

	if (profile_url(name, &url) == 0)
		lxm_events_lifecycle(r->d->events, action, url, NULL);
}

/* The part of a profile that PUT replaces, hashed for the ETag. */
static int profile_etag(const struct lxm_db_profile *p, char etag[65])
{
	_cleanup_json_ json_t *j =
		json_pack("{s:s, s:O?, s:O?}", "description", p->description ? p->description : "",
			  "config", p->config, "devices", p->devices);

	return j ? lxmd_etag(j, etag) : -ENOMEM;
}

static int profile_json(struct lxmd_request *r, const struct lxm_db_profile *p, json_t **ret,
			struct lxm_error **err)
{
	_cleanup_strv_ char **users = NULL;
	json_t *used_by, *j;
	int k;

	k = lxm_db_profile_used_by(r->d->db, p->name, &users, err);
	if (k < 0)
		return lxm_error_prefix(err, "profile '%s'", p->name);
	used_by = json_array();
	for (char **u = users; u && *u; u++) {
		_cleanup_free_ char *url = NULL;

		if (lxmd_instance_url(r, *u, &url) == 0)
			json_array_append_new(used_by, json_string(url));
	}
	j = json_pack("{s:o, s:s, s:o, s:s, s:o}", "config",
		      p->config ? json_incref(p->config) : json_object(), "description",
		      p->description ? p->description : "", "devices",
		      p->devices ? json_incref(p->devices) : json_object(), "name", p->name,
		      "used_by", used_by);
	if (!j)
		return -ENOMEM;
	*ret = j;
	return 0;
}

static int profile_object(struct lxmd_request *r, const char *name, json_t **ret,
			  struct lxm_error **err)
{
	_cleanup_db_profile_ struct lxm_db_profile *p = NULL;
	int k;

	k = lxm_db_profile_get(r->d->db, name, &p, err);
	return k < 0 ? k : profile_json(r, p, ret, err);
}

int lxmd_api_profiles_get(struct lxmd_request *r, struct lxm_error **err)
{
	return lxmd_list_collection(r, "/1.0/profiles", "profiles", lxm_db_profile_names,
				    profile_object, false, err);
}

static int check_name(const char *what, const char *name, struct lxm_error **err)
{
	const char *reason = lxm_entity_name_invalid_reason(name);

	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "%s '%s': invalid name: %s", what,
				     name ? name : "", reason);
	return 0;
}

/* Reads description/config/devices of a request into p (fields absent stay as they are). */
static int read_fields(struct lxmd_request *r, const char *what, struct lxm_db_profile *p,
		       struct lxm_error **err)
{
	const char *desc = NULL;
	json_t *config = NULL, *devices = NULL;
	int k;

	if ((k = lxm_json_opt_string(r->body, "description", &desc, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "config", &config, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "devices", &devices, err)) < 0 ||
	    (k = lxmd_check_config(config, err)) < 0 || (k = lxmd_check_devices(devices, err)) < 0)
		return lxm_error_prefix(err, "%s '%s'", what, p->name);
	if (desc) {
		free(p->description);
		p->description = strdup(desc);
	}
	if (config) {
		json_decref(p->config);
		p->config = json_incref(config);
	}
	if (devices) {
		json_decref(p->devices);
		p->devices = json_incref(devices);
	}
	return 0;
}

int lxmd_api_profiles_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_profile_ struct lxm_db_profile *p = calloc(1, sizeof(*p));
	const char *name = NULL;
	int k;

	if (!p)
		return -ENOMEM;
	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400, "create profile: request body is empty");
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "name", &name, err)) < 0)
		return lxm_error_prefix(err, "create profile");
	if ((k = check_name("create profile", name, err)) < 0)
		return k;
	p->name = strdup(name);
	if ((k = read_fields(r, "create profile", p, err)) < 0)
		return k;
	k = lxm_db_profile_create(r->d->db, p, err);
	if (k < 0)
		return k;
	lifecycle(r, "profile-created", name);
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_profile_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_profile_ struct lxm_db_profile *p = NULL;
	json_t *j = NULL;
	char etag[65];
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_profile_get(r->d->db, r->args[0], &p, err)) < 0 ||
	    (k = profile_json(r, p, &j, err)) < 0)
		return k;
	if (profile_etag(p, etag) < 0) {
		json_decref(j);
		return -ENOMEM;
	}
	return lxmd_respond_sync(r, j, etag);
}

/* PUT replaces description, config and devices; PATCH merges config and devices into them. */
static int profile_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_db_profile_ struct lxm_db_profile *p = NULL;
	char etag[65];
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "update profile '%s': request body is empty", r->args[0]);
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_profile_get(r->d->db, r->args[0], &p, err)) < 0)
		return k;
	if ((k = profile_etag(p, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0)
		return lxm_error_prefix(err, "update profile '%s'", p->name);
	if (patch) {
		_cleanup_db_profile_ struct lxm_db_profile *in = calloc(1, sizeof(*in));

		if (!in || !(in->name = strdup(p->name)))
			return -ENOMEM;
		if ((k = read_fields(r, "update profile", in, err)) < 0)
			return k;
		if (in->description) {
			free(p->description);
			p->description = TAKE_PTR(in->description);
		}
		if (in->config) {
			if (!p->config)
				p->config = json_object();
			json_object_update(p->config, in->config);
		}
		if (in->devices) {
			if (!p->devices)
				p->devices = json_object();
			json_object_update(p->devices, in->devices);
		}
	} else {
		/* PUT sends the whole writable state: what it leaves out is cleared. */
		free(p->description);
		p->description = strdup("");
		json_decref(p->config);
		p->config = json_object();
		json_decref(p->devices);
		p->devices = json_object();
		if ((k = read_fields(r, "update profile", p, err)) < 0)
			return k;
	}
	k = lxm_db_profile_update(r->d->db, p->name, p, err);
	if (k < 0)
		return k;
	lifecycle(r, "profile-updated", p->name);
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_profile_put(struct lxmd_request *r, struct lxm_error **err)
{
	return profile_update(r, false, err);
}

int lxmd_api_profile_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return profile_update(r, true, err);
}

int lxmd_api_profile_post(struct lxmd_request *r, struct lxm_error **err)
{
	const char *name = NULL;
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "rename profile '%s': request body is empty", r->args[0]);
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "name", &name, err)) < 0)
		return lxm_error_prefix(err, "rename profile '%s'", r->args[0]);
	if ((k = check_name("rename profile to", name, err)) < 0)
		return k;
	k = lxm_db_profile_rename(r->d->db, r->args[0], name, err);
	if (k < 0)
		return k;
	lifecycle(r, "profile-renamed", name);
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_profile_delete(struct lxmd_request *r, struct lxm_error **err)
{
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_profile_delete(r->d->db, r->args[0], err)) < 0)
		return k;
	lifecycle(r, "profile-deleted", r->args[0]);
	return lxmd_respond_sync(r, NULL, NULL);
}
