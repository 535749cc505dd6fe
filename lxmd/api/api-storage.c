/* /1.0/storage-pools: the pools (create, read, update, delete, their space), the lists of the
 * volumes they hold, and custom volumes with their snapshots (create, read, update with live
 * size changes, rename, delete, snapshot, restore). The pools' work is lxmd/pools.c's, the
 * volumes' the storage drivers' (run on the thread pool); this file speaks LXD's objects. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "instance.h"
#include "log.h"
#include "operations.h"
#include "json.h"
#include "pools.h"
#include "server.h"
#include "profiles/policy.h"
#include "storage/storage.h"
#include "util.h"

static int pool_url(const char *name, char **ret)
{
	return asprintf(ret, "/1.0/storage-pools/%s", name) < 0 ? -ENOMEM : 0;
}

static void lifecycle(struct lxmd *d, const char *action, const char *name)
{
	_cleanup_free_ char *url = NULL;

	if (pool_url(name, &url) == 0)
		lxm_events_lifecycle(d->events, action, url, NULL);
}

static int pool_json(struct lxmd *d, const struct lxm_db_storage_pool *p, json_t **ret,
		     struct lxm_error **err)
{
	const char *status = lxmd_pool_status(d, p->name, NULL);
	json_t *used_by = NULL, *j;
	int k;

	k = lxmd_pool_used_by(d, p->name, &used_by, err);
	if (k < 0)
		return lxm_error_prefix(err, "storage pool '%s'", p->name);
	j = json_pack("{s:s, s:s, s:s, s:o, s:s, s:o, s:[s], s:b}", "name", p->name, "driver",
		      p->driver, "description", p->description ? p->description : "", "config",
		      p->config ? json_incref(p->config) : json_object(), "status",
		      status ? status : "Unknown", "used_by", used_by, "locations", "none",
		      "managed", true);
	if (!j)
		return -ENOMEM;
	*ret = j;
	return 0;
}

static int pool_object(struct lxmd_request *r, const char *name, json_t **ret,
		       struct lxm_error **err)
{
	_cleanup_db_storage_pool_ struct lxm_db_storage_pool *p = NULL;
	int k;

	k = lxm_db_storage_pool_get(r->d->db, name, &p, err);
	return k < 0 ? k : pool_json(r->d, p, ret, err);
}

int lxmd_api_storage_pools_get(struct lxmd_request *r, struct lxm_error **err)
{
	return lxmd_list_collection(r, "/1.0/storage-pools", "storage pools",
				    lxm_db_storage_pool_names, pool_object, true, err);
}

/* ---- create, read, update, delete ---- */

int lxmd_api_storage_pools_post(struct lxmd_request *r, struct lxm_error **err)
{
	const char *name = NULL, *driver = NULL, *desc = NULL;
	json_t *config = NULL;
	struct lxmd_deferred *pr;
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "create storage pool: request body is empty");
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "driver", &driver, err)) < 0 ||
	    (k = lxmd_body_desc_config(r->body, &desc, &config, err)) < 0)
		return lxm_error_prefix(err, "create storage pool");
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400, "create storage pool: no name given");
	pr = lxmd_deferred_new("/1.0/storage-pools", name, "storage-pool-created");
	if (!pr)
		return -ENOMEM;
	k = lxmd_pool_create(r->d, name, driver, desc, config, lxmd_deferred_done, pr, err);
	if (k < 0) {
		lxmd_deferred_free(pr);
		return k;
	}
	lxmd_deferred_attach(r, pr);
	return 0;
}

int lxmd_api_storage_pool_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_storage_pool_ struct lxm_db_storage_pool *p = NULL;
	json_t *j = NULL;
	char etag[65];
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_storage_pool_get(r->d->db, r->args[0], &p, err)) < 0 ||
	    (k = pool_json(r->d, p, &j, err)) < 0)
		return k;
	if (lxmd_etag_config(p->description, p->config, etag) < 0) {
		json_decref(j);
		return -ENOMEM;
	}
	return lxmd_respond_sync(r, j, etag);
}

/* PUT replaces description and config (the keys fixed at creation keep their value when left
 * out); PATCH merges config into the pool's and replaces the description when given. */
static int pool_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_db_storage_pool_ struct lxm_db_storage_pool *p = NULL;
	_cleanup_json_ json_t *config = NULL;
	const char *desc = NULL;
	json_t *in = NULL;
	char etag[65];
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "update storage pool '%s': request body is empty", r->args[0]);
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_storage_pool_get(r->d->db, r->args[0], &p, err)) < 0)
		return k;
	if ((k = lxmd_etag_config(p->description, p->config, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0 ||
	    (k = lxmd_body_desc_config(r->body, &desc, &in, err)) < 0)
		return lxm_error_prefix(err, "update storage pool '%s'", p->name);
	if ((k = lxmd_update_config(patch, p->description, p->config, &desc, in, &config)) < 0)
		return k;
	k = lxmd_pool_update(r->d, p->name, desc, config, err);
	if (k < 0)
		return k;
	lifecycle(r->d, "storage-pool-updated", p->name);
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_storage_pool_put(struct lxmd_request *r, struct lxm_error **err)
{
	return pool_update(r, false, err);
}

int lxmd_api_storage_pool_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return pool_update(r, true, err);
}

int lxmd_api_storage_pool_delete(struct lxmd_request *r, struct lxm_error **err)
{
	struct lxmd_deferred *pr;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0)
		return k;
	pr = lxmd_deferred_new("/1.0/storage-pools", r->args[0], "storage-pool-deleted");
	if (!pr)
		return -ENOMEM;
	k = lxmd_pool_delete(r->d, r->args[0], lxmd_deferred_done, pr, err);
	if (k != 0) {
		lxmd_deferred_free(pr);
		if (k < 0)
			return k;
		/* Deleted at once (a pool that could not be opened has no files to remove). */
		lifecycle(r->d, "storage-pool-deleted", r->args[0]);
		return lxmd_respond_sync(r, NULL, NULL);
	}
	lxmd_deferred_attach(r, pr);
	return 0;
}

/* ---- resources ---- */

static void resources_done(struct lxmd *d, void *userdata, const struct lxmd_pool_usage *u,
			   struct lxm_error *err)
{
	struct lxmd_deferred *pr = userdata;
	json_t *j;

	(void)d;
	if (!pr->r) {
		lxm_error_free(err);
	} else if (err) {
		lxmd_respond_error(pr->r, err);
	} else {
		j = json_pack("{s:{s:I, s:I}, s:{s:I, s:I}}", "space", "used",
			      (json_int_t)u->space_used, "total", (json_int_t)u->space_total,
			      "inodes", "used", (json_int_t)u->inodes_used, "total",
			      (json_int_t)u->inodes_total);
		if (j)
			lxmd_respond_sync(pr->r, j, NULL);
		else
			lxmd_respond_error(pr->r, NULL);
	}
	lxmd_deferred_free(pr);
}

int lxmd_api_storage_pool_resources_get(struct lxmd_request *r, struct lxm_error **err)
{
	struct lxmd_deferred *pr;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0)
		return k;
	pr = lxmd_deferred_new("/1.0/storage-pools", r->args[0], NULL);
	if (!pr)
		return -ENOMEM;
	k = lxmd_pool_usage(r->d, r->args[0], resources_done, pr, err);
	if (k < 0) {
		lxmd_deferred_free(pr);
		return k;
	}
	lxmd_deferred_attach(r, pr);
	return 0;
}

/* ---- volumes ---- */

static int volume_url(const char *pool, const struct lxm_db_storage_volume *v, char **ret)
{
	return asprintf(ret, "/1.0/storage-pools/%s/volumes/%s/%s", pool, v->type, v->name) < 0
		       ? -ENOMEM
		       : 0;
}

static int custom_used_by(struct lxmd *d, const char *pool, const char *name, json_t **ret,
			  struct lxm_error **err);

static json_t *volume_json(struct lxmd *d, const struct lxm_db_storage_volume *v)
{
	json_t *used_by = NULL;
	char when[LXM_RFC3339_MAX];
	struct timespec ts = { .tv_sec = v->created_at / 1000000000,
			       .tv_nsec = v->created_at % 1000000000 };

	/* A custom volume is used by the instances whose disk devices name it. */
	if (streq(v->type, "custom") && custom_used_by(d, v->pool, v->name, &used_by, NULL) < 0)
		return NULL;
	if (!used_by && !(used_by = json_array()))
		return NULL;
	/* An instance's volume is used by that instance, as LXD shows it. */
	if (streq(v->type, "container") || streq(v->type, "virtual-machine")) {
		_cleanup_free_ char *url = NULL;

		if (asprintf(&url, "/1.0/instances/%s", v->name) < 0) {
			json_decref(used_by);
			return NULL;
		}
		json_array_append_new(used_by, json_string(url));
	}
	return json_pack("{s:s, s:s, s:o, s:s, s:o, s:s, s:s, s:s}", "name", v->name, "type",
			 v->type, "config", v->config ? json_incref(v->config) : json_object(),
			 "description", v->description ? v->description : "", "used_by", used_by,
			 "content_type", v->content_type ? v->content_type : "filesystem",
			 "location", "none", "created_at", lxm_rfc3339(&ts, when));
}

static int volumes_list(struct lxmd_request *r, const char *type, struct lxm_error **err)
{
	_cleanup_json_ json_t *list = json_array();
	struct lxm_db_storage_volume **vols = NULL;
	size_t n = 0;
	int recursion, k;

	if ((k = lxmd_query_recursion(r, &recursion, err)) < 0 ||
	    (k = lxmd_query_project(r, err)) < 0)
		return k;
	if (type && !lxm_db_storage_volume_type_valid(type))
		return lxm_error_set(err, -ENOENT, 404,
				     "storage pool '%s': unknown volume type '%s' (container, "
				     "virtual-machine, image or custom)",
				     r->args[0], type);
	k = lxm_db_storage_volume_list(r->d->db, r->args[0], type, &vols, &n, err);
	if (k < 0)
		return k;
	for (size_t i = 0; i < n && k >= 0; i++) {
		_cleanup_free_ char *url = NULL;
		json_t *j = NULL;

		if (recursion > 0)
			j = volume_json(r->d, vols[i]);
		else if (volume_url(r->args[0], vols[i], &url) == 0)
			j = json_string(url);
		k = j ? json_array_append_new(list, j) : -ENOMEM;
	}
	lxm_db_storage_volume_list_free(vols, n);
	if (k < 0)
		return -ENOMEM;
	return lxmd_respond_sync(r, TAKE_PTR(list), NULL);
}

int lxmd_api_storage_volumes_get(struct lxmd_request *r, struct lxm_error **err)
{
	return volumes_list(r, NULL, err);
}

int lxmd_api_storage_volumes_type_get(struct lxmd_request *r, struct lxm_error **err)
{
	return volumes_list(r, r->args[1], err);
}

int lxmd_api_storage_volume_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	char etag[65];
	json_t *j;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_storage_volume_get(r->d->db, r->args[0], r->args[1], r->args[2], &v, err)) <
		    0)
		return k;
	j = volume_json(r->d, v);
	if (!j)
		return -ENOMEM;
	if (lxmd_etag_config(v->description, v->config, etag) < 0) {
		json_decref(j);
		return -ENOMEM;
	}
	return lxmd_respond_sync(r, j, etag);
}

/* ---- custom volumes ---- */

static int custom_used_by(struct lxmd *d, const char *pool, const char *name, json_t **ret,
			  struct lxm_error **err)
{
	_cleanup_strv_ char **users = NULL;
	_cleanup_json_ json_t *list = json_array();
	int k;

	if (!list)
		return -ENOMEM;
	k = lxm_db_storage_volume_used_by(d->db, pool, name, &users, err);
	if (k < 0)
		return k;
	for (char **u = users; u && *u; u++) {
		_cleanup_free_ char *url = NULL;

		if (asprintf(&url, "/1.0/instances/%s", *u) < 0 ||
		    json_array_append_new(list, json_string(url)) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(list);
	return 0;
}

static void volume_lifecycle(struct lxmd *d, const char *action, const char *pool, const char *name,
			     const char *snap)
{
	_cleanup_free_ char *url = NULL;
	int k;

	if (snap)
		k = asprintf(&url, "/1.0/storage-pools/%s/volumes/custom/%s/snapshots/%s", pool,
			     name, snap);
	else
		k = asprintf(&url, "/1.0/storage-pools/%s/volumes/custom/%s", pool, name);
	if (k >= 0)
		lxm_events_lifecycle(d->events, action, url, NULL);
}

/* Volumes with driver work under way (keys "pool/volume"): another change to one of them
 * waits (409) until it ends. Loop thread only. */
static json_t *busy_volumes;

static bool volume_busy(const char *pool, const char *name)
{
	_cleanup_free_ char *key = NULL;

	if (asprintf(&key, "%s/%s", pool, name) < 0)
		return true;
	return json_object_get(busy_volumes, key) != NULL;
}

static int volume_busy_set(const char *pool, const char *name, bool busy)
{
	_cleanup_free_ char *key = NULL;

	if (asprintf(&key, "%s/%s", pool, name) < 0)
		return -ENOMEM;
	if (!busy) {
		json_object_del(busy_volumes, key);
		return 0;
	}
	if (!busy_volumes && !(busy_volumes = json_object()))
		return -ENOMEM;
	return json_object_set_new(busy_volumes, key, json_true()) < 0 ? -ENOMEM : 0;
}

enum vol_job_kind {
	VJ_CREATE,	/* lxm_volume_create, then the quota */
	VJ_QUOTA,	/* lxm_volume_set_quota, then the row's description and config */
	VJ_RENAME,	/* lxm_volume_rename, then the row */
	VJ_DELETE,	/* lxm_volume_delete, then the row */
	VJ_RESTORE,	/* lxm_snapshot_restore */
	VJ_SNAP_CREATE, /* lxm_snapshot_create */
	VJ_SNAP_DELETE, /* lxm_snapshot_delete, then the row */
};

/* Driver work on a custom volume, run on the thread pool; the request (sync answers) or the
 * operation (async ones) is answered when it ends. */
struct vol_job {
	uv_work_t work;		  /* the thread pool's request */
	struct lxmd *d;		  /* the daemon */
	struct lxm_pool *pool;	  /* held until the job ends */
	enum vol_job_kind kind;	  /* what the worker does */
	char *name;		  /* the volume */
	char *arg;		  /* the new name (rename) or the snapshot */
	bool quota;		  /* create, quota: set the quota */
	uint64_t bytes;		  /* the quota (0: none) */
	char *description;	  /* quota: the row's new description */
	json_t *config;		  /* quota: the row's new config */
	struct lxmd_request *r;	  /* sync: the request, NULL once its client went away */
	struct lxm_operation *op; /* async: the operation */
	struct lxm_error *err;	  /* the worker's failure, or NULL */
};

static void vol_job_free(struct vol_job *j)
{
	if (!j)
		return;
	free(j->name);
	free(j->arg);
	free(j->description);
	json_decref(j->config);
	lxm_error_free(j->err);
	free(j);
}

static void vol_job_abort(struct lxmd_request *r)
{
	struct vol_job *j = r->defer_data;

	j->r = NULL;
}

static void vol_job_work(uv_work_t *w)
{
	struct vol_job *j = w->data;
	struct lxm_pool *p = j->pool;
	struct lxm_error *e2 = NULL;

	switch (j->kind) {
	case VJ_CREATE:
		if (lxm_volume_create(p, LXM_VOLUME_CUSTOM, j->name, &j->err) < 0)
			break;
		if (j->quota &&
		    lxm_volume_set_quota(p, LXM_VOLUME_CUSTOM, j->name, j->bytes, &j->err) < 0 &&
		    lxm_volume_delete(p, LXM_VOLUME_CUSTOM, j->name, &e2) < 0)
			log_error("storage volume '%s': undo a failed create: %s", j->name,
				  e2 ? e2->msg : "unknown error");
		break;
	case VJ_QUOTA:
		lxm_volume_set_quota(p, LXM_VOLUME_CUSTOM, j->name, j->bytes, &j->err);
		break;
	case VJ_RENAME:
		lxm_volume_rename(p, LXM_VOLUME_CUSTOM, j->name, j->arg, &j->err);
		break;
	case VJ_DELETE:
		lxm_volume_delete(p, LXM_VOLUME_CUSTOM, j->name, &j->err);
		break;
	case VJ_RESTORE:
		lxm_snapshot_restore(p, LXM_VOLUME_CUSTOM, j->name, j->arg, &j->err);
		break;
	case VJ_SNAP_CREATE:
		lxm_snapshot_create(p, LXM_VOLUME_CUSTOM, j->name, j->arg, &j->err);
		break;
	case VJ_SNAP_DELETE:
		lxm_snapshot_delete(p, LXM_VOLUME_CUSTOM, j->name, j->arg, &j->err);
		break;
	}
	lxm_error_free(e2);
}

/* On the loop thread: the database follows what the driver did, then the answer. */
static void vol_job_after(uv_work_t *w, int status)
{
	struct vol_job *j = w->data;
	struct lxmd *d = j->d;
	const char *pool = j->pool->name;
	const char *action = NULL, *snap = NULL, *name = j->name;
	struct lxm_error *e2 = NULL;

	if (status < 0 && !j->err)
		lxm_error_set(&j->err, -ECANCELED, 500, "storage volume '%s': work cancelled",
			      j->name);
	switch (j->kind) {
	case VJ_CREATE:
		/* The row was made first (it holds the name); a failed create drops it. */
		if (j->err && lxm_db_storage_volume_delete(d->db, pool, "custom", j->name, &e2) < 0)
			log_error("storage volume '%s': drop its row: %s", j->name, e2->msg);
		action = "storage-volume-created";
		break;
	case VJ_QUOTA:
		if (!j->err)
			lxm_db_storage_volume_update(d->db, pool, "custom", j->name, j->description,
						     j->config, &j->err);
		action = "storage-volume-updated";
		break;
	case VJ_RENAME:
		if (!j->err && lxm_db_storage_volume_rename(d->db, pool, "custom", j->name, j->arg,
							    &j->err) < 0)
			log_error("storage volume '%s': renamed to '%s' on disk but not in the "
				  "database: %s",
				  j->name, j->arg, j->err->msg);
		action = "storage-volume-renamed";
		name = j->arg;
		break;
	case VJ_DELETE:
		if (!j->err)
			lxm_db_storage_volume_delete(d->db, pool, "custom", j->name, &j->err);
		action = "storage-volume-deleted";
		break;
	case VJ_RESTORE:
		action = "storage-volume-restored";
		break;
	case VJ_SNAP_CREATE:
		if (j->err && lxm_db_volume_snapshot_delete(d->db, pool, j->name, j->arg, &e2) < 0)
			log_error("snapshot '%s/%s': drop its row: %s", j->name, j->arg, e2->msg);
		action = "storage-volume-snapshot-created";
		snap = j->arg;
		break;
	case VJ_SNAP_DELETE:
		if (!j->err)
			lxm_db_volume_snapshot_delete(d->db, pool, j->name, j->arg, &j->err);
		action = "storage-volume-snapshot-deleted";
		snap = j->arg;
		break;
	}
	lxm_error_free(e2);
	if (!j->err)
		volume_lifecycle(d, action, pool, name, snap);
	volume_busy_set(pool, j->name, false);
	if (j->op) {
		lxm_operation_finish(j->op, TAKE_PTR(j->err));
	} else if (j->r) {
		if (j->err)
			lxmd_respond_error(j->r, TAKE_PTR(j->err));
		else
			lxmd_respond_sync(j->r, NULL, NULL);
	}
	lxmd_pool_release(d, j->pool);
	vol_job_free(j);
}

static struct vol_job *vol_job_new(struct lxmd *d, enum vol_job_kind kind, const char *name,
				   const char *arg)
{
	struct vol_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->d = d;
	j->kind = kind;
	if (!(j->name = strdup(name)) || (arg && !(j->arg = strdup(arg)))) {
		vol_job_free(j);
		return NULL;
	}
	return j;
}

/* Holds the pool and queues j, answering r when it ends: in an operation (async) or, without,
 * with a deferred sync answer. On failure j is freed and nothing is answered. */
static int vol_job_start(struct lxmd_request *r, struct vol_job *j, bool async,
			 const char *description, struct lxm_error **err)
{
	const char *pool = r->args[0];
	struct lxm_operation *op = NULL;
	int k;

	k = lxmd_pool_hold(r->d, pool, &j->pool, err);
	if (k < 0) {
		vol_job_free(j);
		return k;
	}
	if (async) {
		_cleanup_free_ char *url = NULL;

		if (asprintf(&url, "/1.0/storage-pools/%s/volumes/custom/%s", pool, j->name) < 0)
			url = NULL;
		k = lxm_operation_new(r->d->ops, LXM_OP_TASK, description,
				      url ? json_pack("{s:[s]}", "storage_volumes", url) : NULL,
				      NULL, NULL, NULL, NULL, &op);
		if (k < 0) {
			lxm_error_setx(err, k, 500, "storage volume '%s': new operation", j->name);
			lxmd_pool_release(r->d, j->pool);
			vol_job_free(j);
			return k;
		}
	}
	j->work.data = j;
	k = volume_busy_set(pool, j->name, true);
	if (k >= 0) {
		k = uv_queue_work(r->d->loop, &j->work, vol_job_work, vol_job_after);
		if (k < 0)
			volume_busy_set(pool, j->name, false);
	}
	if (k < 0) {
		lxm_error_set(err, -EIO, 500, "storage volume '%s': queue work: %s", j->name,
			      uv_strerror(k));
		/* The operation was never answered: it ends at once, unseen. */
		if (op) {
			lxm_operation_start(op);
			lxm_operation_finish(op, NULL);
		}
		lxmd_pool_release(r->d, j->pool);
		vol_job_free(j);
		return -EIO;
	}
	if (op) {
		j->op = op;
		lxm_operation_start(op);
		return lxmd_respond_async(r, op);
	}
	j->r = r;
	r->deferred = true;
	r->on_abort = vol_job_abort;
	r->defer_data = j;
	return 0;
}

/* The type segment of the URL must be "custom" for changes. */
static int check_custom(struct lxmd_request *r, const char *what, struct lxm_error **err)
{
	int k = lxmd_query_project(r, err);

	if (k < 0)
		return k;
	if (!lxm_db_storage_volume_type_valid(r->args[1]))
		return lxm_error_set(err, -ENOENT, 404,
				     "storage pool '%s': unknown volume type '%s' (container, "
				     "virtual-machine, image or custom)",
				     r->args[0], r->args[1]);
	if (!streq(r->args[1], "custom"))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: only custom volumes can be %s through this API (the "
				     "instance and image volumes follow their owners)",
				     r->args[0], what);
	return 0;
}

static int check_volume_name(const char *pool, const char *name, struct lxm_error **err)
{
	const char *reason = lxm_entity_name_invalid_reason(name);

	if (reason)
		return lxm_error_set(err, -EINVAL, 400,
				     "storage volume '%s' in pool '%s': invalid name: %s", name,
				     pool, reason);
	return 0;
}

/* Checks a custom volume's config: only size is known. *ret_quota tells whether the pool's
 * driver can apply it (else a size is refused), *ret_bytes is the size (0: none). */
static int check_volume_config(struct lxm_pool *p, const char *name, json_t *config,
			       uint64_t *ret_bytes, struct lxm_error **err)
{
	const char *key, *size = NULL;
	json_t *v;
	int64_t bytes = 0;
	int k;

	json_object_foreach (config, key, v) {
		if (!streq(key, "size"))
			return lxm_error_set(err, -EINVAL, 400,
					     "storage volume '%s': unknown config key '%s' (custom "
					     "volumes take: size)",
					     name, key);
		size = json_string_value(v);
	}
	if (size && *size) {
		if (!p->ops->volume_set_quota)
			return lxm_error_set(err, -EOPNOTSUPP, 400,
					     "storage volume '%s': size=%s: %s pool '%s' has no "
					     "volume quotas (use a btrfs pool)",
					     name, size, p->driver, p->name);
		k = lxm_parse_size("size", size, 0, &bytes, err);
		if (k < 0)
			return lxm_error_prefix(err, "storage volume '%s'", name);
		if (bytes <= 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "storage volume '%s': size=%s: must be more than 0",
					     name, size);
	}
	*ret_bytes = (uint64_t)bytes;
	return 0;
}

/* The instances using a volume: 400 "in use" naming the first when any (what = the refused
 * action), else 0. */
static int check_unused(struct lxmd *d, const char *pool, const char *name, const char *what,
			struct lxm_error **err)
{
	_cleanup_strv_ char **users = NULL;
	int k;

	k = lxm_db_storage_volume_used_by(d->db, pool, name, &users, err);
	if (k < 0)
		return k;
	if (users && users[0])
		return lxm_error_set(err, -EBUSY, 400,
				     "%s storage volume '%s': storage volume '%s' is in use by "
				     "instance '%s'",
				     what, name, name, users[0]);
	return 0;
}

static int check_not_busy(const char *pool, const char *name, struct lxm_error **err)
{
	if (volume_busy(pool, name))
		return lxm_error_set(err, -EBUSY, 409,
				     "storage volume '%s' in pool '%s': another change to it is "
				     "under way; retry when it ends",
				     name, pool);
	return 0;
}

int lxmd_api_storage_volumes_type_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	const char *name = NULL, *desc = NULL, *ctype = NULL, *stype;
	json_t *config = NULL;
	struct lxm_pool *p;
	struct vol_job *j;
	uint64_t bytes = 0;
	int k;

	if ((k = check_custom(r, "created", err)) < 0)
		return k;
	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "create storage volume: request body is empty");
	if ((k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "description", &desc, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "content_type", &ctype, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "config", &config, err)) < 0 ||
	    (k = lxm_json_check_string_map(config, "config", err)) < 0)
		return lxm_error_prefix(err, "create storage volume");
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400, "create storage volume: no name given");
	/* lxc sends an empty source ({"type": ""}) for a plain create. */
	stype = json_string_value(json_object_get(json_object_get(r->body, "source"), "type"));
	if (stype && *stype)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "create storage volume '%s': source type '%s': copies and "
				     "migrations of volumes are not supported",
				     name, stype);
	if (ctype && *ctype && !streq(ctype, "filesystem"))
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "create storage volume '%s': content type '%s' is not "
				     "supported (filesystem)",
				     name, ctype);
	if ((k = check_volume_name(r->args[0], name, err)) < 0 ||
	    (k = lxmd_pool_get(r->d, r->args[0], &p, err)) < 0 ||
	    (k = check_volume_config(p, name, config, &bytes, err)) < 0 ||
	    (k = check_not_busy(r->args[0], name, err)) < 0)
		return k;
	v = calloc(1, sizeof(*v));
	if (!v || !(v->pool = strdup(r->args[0])) || !(v->type = strdup("custom")) ||
	    !(v->name = strdup(name)) || !(v->description = strdup(desc ? desc : "")) ||
	    !(v->config = config ? json_incref(config) : json_object()))
		return -ENOMEM;
	/* The row first: it holds the name while the driver works. */
	k = lxm_db_storage_volume_create(r->d->db, v, err);
	if (k < 0)
		return k;
	j = vol_job_new(r->d, VJ_CREATE, name, NULL);
	if (j) {
		j->quota = bytes > 0;
		j->bytes = bytes;
		/* Sync, as LXD without its storage_and_profile_operations extension answers
		 * (lxc then does not wait for an operation). */
		k = vol_job_start(r, j, false, NULL, err);
	}
	if (!j || k < 0) {
		lxm_db_storage_volume_delete(r->d->db, r->args[0], "custom", name, NULL);
		return j ? k : -ENOMEM;
	}
	return 0;
}

/* The volume row for a change, checked: a custom volume that exists and is not busy. */
static int get_custom(struct lxmd_request *r, const char *what, struct lxm_db_storage_volume **ret,
		      struct lxm_error **err)
{
	int k;

	if ((k = check_custom(r, what, err)) < 0 ||
	    (k = lxm_db_storage_volume_get(r->d->db, r->args[0], "custom", r->args[2], ret, err)) <
		    0)
		return k;
	return 0;
}

/* PUT replaces description and config, PATCH merges them; a size change is applied at once.
 * PUT {"restore": "snap"} restores the snapshot instead. */
static int volume_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	_cleanup_json_ json_t *config = NULL;
	const char *desc = NULL, *restore = NULL, *old_size, *new_size;
	json_t *in = NULL;
	struct lxm_pool *p;
	struct vol_job *j;
	uint64_t bytes = 0;
	char etag[65];
	int k;

	if ((k = get_custom(r, "updated", &v, err)) < 0)
		return k;
	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "update storage volume '%s': request body is empty", v->name);
	if ((k = lxmd_etag_config(v->description, v->config, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "restore", &restore, err)) < 0 ||
	    (k = lxmd_body_desc_config(r->body, &desc, &in, err)) < 0)
		return lxm_error_prefix(err, "update storage volume '%s'", v->name);
	if ((k = lxmd_pool_get(r->d, r->args[0], &p, err)) < 0 ||
	    (k = check_not_busy(p->name, v->name, err)) < 0)
		return k;
	if (restore && *restore && !patch) {
		_cleanup_db_volume_snapshot_ struct lxm_db_volume_snapshot *s = NULL;
		_cleanup_strv_ char **users = NULL;
		int code;

		if ((k = lxm_db_volume_snapshot_get(r->d->db, p->name, v->name, restore, &s, err)) <
			    0 ||
		    (k = lxm_db_storage_volume_used_by(r->d->db, p->name, v->name, &users, err)) <
			    0)
			return k;
		for (char **u = users; u && *u; u++) {
			lxmd_instance_status(r->d, *u, &code);
			if (code == LXM_STATUS_RUNNING || code == LXM_STATUS_FROZEN)
				return lxm_error_set(err, -EBUSY, 400,
						     "restore storage volume '%s' from '%s': "
						     "instance '%s' is running and uses it: stop "
						     "it first",
						     v->name, restore, *u);
		}
		j = vol_job_new(r->d, VJ_RESTORE, v->name, restore);
		if (!j)
			return -ENOMEM;
		return vol_job_start(r, j, false, NULL, err);
	}
	if ((k = lxmd_update_config(patch, v->description, v->config, &desc, in, &config)) < 0)
		return k;
	if ((k = check_volume_config(p, v->name, config, &bytes, err)) < 0)
		return lxm_error_prefix(err, "update");
	old_size = json_string_value(json_object_get(v->config, "size"));
	new_size = json_string_value(json_object_get(config, "size"));
	if (!streq(old_size ? old_size : "", new_size ? new_size : "") &&
	    p->ops->volume_set_quota) {
		/* The new size is applied first; the row follows when it worked. */
		j = vol_job_new(r->d, VJ_QUOTA, v->name, NULL);
		if (!j || !(j->description = strdup(desc))) {
			vol_job_free(j);
			return -ENOMEM;
		}
		j->config = TAKE_PTR(config);
		j->bytes = bytes;
		j->quota = true;
		return vol_job_start(r, j, false, NULL, err);
	}
	k = lxm_db_storage_volume_update(r->d->db, p->name, "custom", v->name, desc, config, err);
	if (k < 0)
		return k;
	volume_lifecycle(r->d, "storage-volume-updated", p->name, v->name, NULL);
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_storage_volume_put(struct lxmd_request *r, struct lxm_error **err)
{
	return volume_update(r, false, err);
}

int lxmd_api_storage_volume_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return volume_update(r, true, err);
}

/* POST {name}: renames the volume (moves to another pool are not supported). */
int lxmd_api_storage_volume_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL, *other = NULL;
	const char *name = NULL, *pool = NULL;
	struct vol_job *j;
	int k;

	if ((k = get_custom(r, "renamed", &v, err)) < 0)
		return k;
	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "rename storage volume '%s': request body is empty", v->name);
	if ((k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "pool", &pool, err)) < 0)
		return lxm_error_prefix(err, "rename storage volume '%s'", v->name);
	if (pool && *pool && !streq(pool, r->args[0]))
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "move storage volume '%s' to pool '%s': moves between pools "
				     "are not supported",
				     v->name, pool);
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400,
				     "rename storage volume '%s': no new name given", v->name);
	if ((k = check_volume_name(r->args[0], name, err)) < 0 ||
	    (k = check_not_busy(r->args[0], v->name, err)) < 0 ||
	    (k = check_not_busy(r->args[0], name, err)) < 0 ||
	    (k = check_unused(r->d, r->args[0], v->name, "rename", err)) < 0)
		return k;
	if (lxm_db_storage_volume_get(r->d->db, r->args[0], "custom", name, &other, NULL) >= 0)
		return lxm_error_set(err, -EEXIST, 409,
				     "rename storage volume '%s' to '%s': storage volume '%s' "
				     "already exists in pool '%s'",
				     v->name, name, name, r->args[0]);
	j = vol_job_new(r->d, VJ_RENAME, v->name, name);
	if (!j)
		return -ENOMEM;
	return vol_job_start(r, j, false, NULL, err);
}

int lxmd_api_storage_volume_delete(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	struct vol_job *j;
	int k;

	if ((k = get_custom(r, "deleted", &v, err)) < 0 ||
	    (k = check_not_busy(r->args[0], v->name, err)) < 0 ||
	    (k = check_unused(r->d, r->args[0], v->name, "delete", err)) < 0)
		return k;
	j = vol_job_new(r->d, VJ_DELETE, v->name, NULL);
	if (!j)
		return -ENOMEM;
	return vol_job_start(r, j, false, NULL, err);
}

/* ---- custom volume snapshots ---- */

static json_t *volume_snapshot_json(const struct lxm_db_volume_snapshot *s)
{
	char when[LXM_RFC3339_MAX];
	struct timespec ts = { .tv_sec = s->created_at / 1000000000,
			       .tv_nsec = s->created_at % 1000000000 };

	return json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s}", "name", s->name, "description",
			 s->description ? s->description : "", "config", "content_type",
			 "filesystem", "created_at", lxm_rfc3339(&ts, when), "expires_at",
			 "0001-01-01T00:00:00Z");
}

int lxmd_api_storage_volume_snapshots_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	_cleanup_json_ json_t *list = json_array();
	struct lxm_db_volume_snapshot **snaps = NULL;
	size_t n = 0;
	int recursion, k;

	if ((k = lxmd_query_recursion(r, &recursion, err)) < 0 ||
	    (k = get_custom(r, "listed", &v, err)) < 0 ||
	    (k = lxm_db_volume_snapshot_list(r->d->db, r->args[0], v->name, &snaps, &n, err)) < 0)
		return k;
	for (size_t i = 0; i < n && k >= 0; i++) {
		_cleanup_free_ char *url = NULL;
		json_t *j = NULL;

		if (recursion > 0)
			j = volume_snapshot_json(snaps[i]);
		else if (asprintf(&url, "/1.0/storage-pools/%s/volumes/custom/%s/snapshots/%s",
				  r->args[0], v->name, snaps[i]->name) >= 0)
			j = json_string(url);
		k = j ? json_array_append_new(list, j) : -ENOMEM;
	}
	lxm_db_volume_snapshot_list_free(snaps, n);
	if (k < 0)
		return -ENOMEM;
	return lxmd_respond_sync(r, TAKE_PTR(list), NULL);
}

/* LXD's default snapshots.pattern "snap%d": one more than the highest such name. */
static int volume_snapshot_next_name(struct lxmd *d, const char *pool, const char *volume,
				     char **ret, struct lxm_error **err)
{
	struct lxm_db_volume_snapshot **snaps = NULL;
	size_t n = 0;
	long next = 0;
	int k;

	k = lxm_db_volume_snapshot_list(d->db, pool, volume, &snaps, &n, err);
	if (k < 0)
		return k;
	for (size_t i = 0; i < n; i++) {
		const char *s = snaps[i]->name;
		char *end;
		long v;

		if (!startswith(s, "snap") || !s[4] || s[4] == '-' || s[4] == '+')
			continue;
		v = strtol(s + 4, &end, 10);
		if (!*end && v >= next)
			next = v + 1;
	}
	lxm_db_volume_snapshot_list_free(snaps, n);
	return asprintf(ret, "snap%ld", next) < 0 ? -ENOMEM : 0;
}

int lxmd_api_storage_volume_snapshots_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	_cleanup_free_ char *autoname = NULL;
	struct lxm_db_volume_snapshot s = { 0 };
	const char *name = NULL, *reason;
	struct vol_job *j;
	int k;

	if ((k = get_custom(r, "snapshotted", &v, err)) < 0)
		return k;
	if (r->body && ((k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
			(k = lxm_json_opt_string(r->body, "description",
						 (const char **)&s.description, err)) < 0))
		return lxm_error_prefix(err, "snapshot storage volume '%s'", v->name);
	if (!name || !*name) {
		if ((k = volume_snapshot_next_name(r->d, r->args[0], v->name, &autoname, err)) < 0)
			return k;
		name = autoname;
	}
	reason = lxm_entity_name_invalid_reason(name);
	if (reason)
		return lxm_error_set(err, -EINVAL, 400,
				     "snapshot '%s/%s' of storage volume: invalid name: %s",
				     v->name, name, reason);
	if ((k = check_not_busy(r->args[0], v->name, err)) < 0)
		return k;
	s.name = (char *)name;
	k = lxm_db_volume_snapshot_create(r->d->db, r->args[0], v->name, &s, err);
	if (k < 0)
		return k;
	j = vol_job_new(r->d, VJ_SNAP_CREATE, v->name, name);
	if (j)
		k = vol_job_start(r, j, true, "Snapshotting storage volume", err);
	if (!j || k < 0) {
		lxm_db_volume_snapshot_delete(r->d->db, r->args[0], v->name, name, NULL);
		return j ? k : -ENOMEM;
	}
	return 0;
}

int lxmd_api_storage_volume_snapshot_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_volume_snapshot_ struct lxm_db_volume_snapshot *s = NULL;
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	char etag[65];
	json_t *j;
	int k;

	if ((k = get_custom(r, "read", &v, err)) < 0 ||
	    (k = lxm_db_volume_snapshot_get(r->d->db, r->args[0], v->name, r->args[3], &s, err)) <
		    0)
		return k;
	j = volume_snapshot_json(s);
	if (!j)
		return -ENOMEM;
	{
		_cleanup_json_ json_t *e =
			json_pack("{s:s}", "description", s->description ? s->description : "");

		if (!e || lxmd_etag(e, etag) < 0) {
			json_decref(j);
			return -ENOMEM;
		}
	}
	return lxmd_respond_sync(r, j, etag);
}

int lxmd_api_storage_volume_snapshot_delete(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_volume_snapshot_ struct lxm_db_volume_snapshot *s = NULL;
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	struct vol_job *j;
	int k;

	if ((k = get_custom(r, "changed", &v, err)) < 0 ||
	    (k = lxm_db_volume_snapshot_get(r->d->db, r->args[0], v->name, r->args[3], &s, err)) <
		    0 ||
	    (k = check_not_busy(r->args[0], v->name, err)) < 0)
		return k;
	j = vol_job_new(r->d, VJ_SNAP_DELETE, v->name, s->name);
	if (!j)
		return -ENOMEM;
	return vol_job_start(r, j, true, "Deleting storage volume snapshot", err);
}
