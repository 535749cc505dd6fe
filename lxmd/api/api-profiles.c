/* /1.0/profiles: named bundles of config and devices that instances apply in order. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "apply.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "operations.h"
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
	    (k = lxmd_check_config_change(p->config, config, true, err)) < 0 ||
	    (k = lxmd_check_devices(devices, err)) < 0)
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

/* ---- update ---- */

/* One instance using a profile being changed. */
struct profile_user {
	struct lxm_db_instance *inst; /* the instance as recorded, with new nics' volatile keys */
	json_t *config;		    /* its recorded config before the plan, to see what it added */
	struct lxmd_change *change; /* what the profile change does to it */
};

/* A profile change applied to the instances using it: the request is answered when every
 * hot-plug ended. */
struct profile_job {
	struct lxmd *d;		/* the daemon */
	struct lxmd_request *r; /* NULL once the client went away */
	char *name;		/* the profile */
	size_t pending;		/* hot-plug operations still running */
	json_t *failures;	/* instance name -> why it could not be updated */
	json_t *restart;	/* instance name -> what waits for its next start */
};

static void users_free(struct profile_user *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		lxm_db_instance_free(v[i].inst);
		json_decref(v[i].config);
		lxmd_change_free(v[i].change);
	}
	free(v);
}

static void job_free(struct profile_job *j)
{
	if (!j)
		return;
	free(j->name);
	json_decref(j->failures);
	json_decref(j->restart);
	free(j);
}

static void job_abort(struct lxmd_request *r)
{
	struct profile_job *j = r->defer_data;

	j->r = NULL;
}

/* Records (and logs) that instance could not take the change, and why. */
static void job_failed(struct profile_job *j, const char *instance, const char *msg)
{
	log_error("profile '%s': instance '%s' could not be updated: %s", j->name, instance, msg);
	json_object_set_new(j->failures, instance, json_string(msg));
}

/* Answers: LXD records a profile change even when instances could not take it, and says which
 * ones, with why, in its error. */
static void job_finish(struct profile_job *j)
{
	_cleanup_free_ char *url = NULL;
	struct lxm_error *err = NULL;

	if (profile_url(j->name, &url) == 0)
		lxm_events_lifecycle(j->d->events, "profile-updated", url, NULL);
	if (json_object_size(j->failures) > 0) {
		_cleanup_free_ char *msg = strdup("");
		const char *name;
		json_t *v;

		json_object_foreach (j->failures, name, v) {
			char *m = NULL;

			if (!msg || asprintf(&m, "%s%s instance '%s': %s", msg, *msg ? ";" : "",
					     name, json_string_value(v)) < 0)
				break;
			free(msg);
			msg = m;
		}
		lxm_error_set(&err, -EIO, 500,
			      "update profile '%s': the following instances failed to update "
			      "(profile change still saved):%s",
			      j->name, msg ? msg : " out of memory");
	}
	if (j->r && err)
		lxmd_respond_error(j->r, err);
	else if (j->r)
		lxmd_respond_sync(j->r,
				  json_object_size(j->restart) > 0
					  ? json_pack("{s:O}", "restart_required", j->restart)
					  : NULL,
				  NULL);
	else
		lxm_error_free(err);
	job_free(j);
}

/* A hot-plug operation ended. */
static void hotplug_ended(struct lxm_operation *op, bool timed_out, void *userdata)
{
	struct profile_job *j = userdata;

	if (op && lxm_operation_status(op) != LXM_STATUS_SUCCESS) {
		_cleanup_json_ json_t *o = lxm_operation_to_json(op);
		json_t *res = json_object_get(json_object_get(o, "resources"), "instances");
		const char *url = json_string_value(json_array_get(res, 0));
		const char *name = url ? strrchr(url, '/') + 1 : "?";
		const char *msg = json_string_value(json_object_get(o, "err"));

		job_failed(j, name, msg && *msg ? msg : "hot-plug failed");
	}
	if (--j->pending == 0)
		job_finish(j);
}

/* Checks the change against every instance using the profile; nothing is recorded yet. */
static int plan_users(struct lxmd_request *r, const struct lxm_db_profile *p,
		      struct profile_user **ret, size_t *ret_n, struct lxm_error **err)
{
	_cleanup_strv_ char **users = NULL;
	struct profile_user *v = NULL;
	size_t n = 0;
	int k;

	if ((k = lxm_db_profile_used_by(r->d->db, p->name, &users, err)) < 0)
		return k;
	for (char **u = users; u && *u; u++) {
		_cleanup_json_ json_t *oc = NULL, *od = NULL, *nc = NULL, *nd = NULL;
		struct profile_user *nv = realloc(v, (n + 1) * sizeof(*v)), *e;

		if (!nv) {
			k = -ENOMEM;
			goto fail;
		}
		v = nv;
		e = &v[n++];
		memset(e, 0, sizeof(*e));
		if ((k = lxm_db_instance_get(r->d->db, *u, &e->inst, err)) < 0)
			goto fail;
		if (!e->inst->config && !(e->inst->config = json_object())) {
			k = -ENOMEM;
			goto fail;
		}
		if (!(e->config = json_deep_copy(e->inst->config))) {
			k = -ENOMEM;
			goto fail;
		}
		if ((k = lxmd_instance_expand(r->d, e->inst, &oc, &od, err)) < 0 ||
		    (k = lxmd_instance_expand_with(r->d, e->inst, p, &nc, &nd, err)) < 0 ||
		    (k = lxmd_change_plan(r->d, e->inst, oc, od, nc, nd, &e->change, err)) < 0)
			goto fail;
	}
	*ret = v;
	*ret_n = n;
	return 0;
fail:
	users_free(v, n);
	return k;
}

/* Applies the recorded change to each instance using the profile; answers r when done. */
static int apply_users(struct lxmd_request *r, const char *profile, struct profile_user *v,
		       size_t n, struct lxm_error **err)
{
	struct profile_job *j = calloc(1, sizeof(*j));

	if (!j || !(j->name = strdup(profile)) || !(j->failures = json_object()) ||
	    !(j->restart = json_object())) {
		job_free(j);
		return lxm_error_set(err, -ENOMEM, 500, "update profile '%s': out of memory",
				     profile);
	}
	j->d = r->d;
	j->r = r;
	/* One more than the operations, so that none of them answers before all are started. */
	j->pending = 1;
	for (size_t i = 0; i < n; i++) {
		const char *name = v[i].inst->name;
		struct lxm_operation *op = NULL;
		struct lxm_error *e = NULL;
		const json_t *restart;

		/* The volatile keys of nics the change adds to a running instance. */
		if (!json_equal(v[i].config, v[i].inst->config) &&
		    lxm_db_instance_update(r->d->db, name, v[i].inst, &e) < 0) {
			job_failed(j, name, e->msg);
			lxm_error_free(e);
			continue;
		}
		if (lxmd_change_apply(r->d, v[i].change, &e) < 0) {
			job_failed(j, name, e->msg);
			lxm_error_free(e);
			continue;
		}
		restart = lxmd_change_restart(v[i].change);
		if (restart)
			json_object_set(j->restart, name, (json_t *)restart);
		if (!lxmd_change_has_hotplug(v[i].change))
			continue;
		if (lxm_operation_new(r->d->ops, LXM_OP_TASK, "Updating instance",
				      json_pack("{s:[s+]}", "instances", "/1.0/instances/", name),
				      NULL, NULL, NULL, NULL, &op) < 0) {
			job_failed(j, name, "hot-plug: new operation: out of memory");
			continue;
		}
		lxm_operation_start(op);
		lxmd_change_hotplug(r->d, v[i].change, op);
		j->pending++;
		if (lxm_operation_wait(op, -1, hotplug_ended, j, NULL) < 0) {
			j->pending--;
			job_failed(j, name, "hot-plug: wait for its operation: out of memory");
		}
	}
	if (--j->pending == 0) {
		job_finish(j);
		return 0;
	}
	r->deferred = true;
	r->on_abort = job_abort;
	r->defer_data = j;
	return 0;
}

/* PUT replaces description, config and devices; PATCH merges config and devices into them. */
static int profile_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_db_profile_ struct lxm_db_profile *p = NULL;
	struct profile_user *users = NULL;
	size_t n_users = 0;
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
	/* Every instance using the profile must still be valid with it before it is recorded. */
	if ((k = plan_users(r, p, &users, &n_users, err)) < 0)
		return lxm_error_prefix(err, "update profile '%s'", p->name);
	k = lxm_db_profile_update(r->d->db, p->name, p, err);
	if (k >= 0)
		k = apply_users(r, p->name, users, n_users, err);
	users_free(users, n_users);
	return k;
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
