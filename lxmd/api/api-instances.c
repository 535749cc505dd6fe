/* /1.0/instances (and /1.0/containers): list, create, show, delete. An instance is created empty
 * (source type "none", like `lxc init --empty`) or from an image of the store (source type
 * "image", by alias or fingerprint prefix; a template alias is built on first use), or from an
 * image server (source.server with mode "pull": pulled into the store as a cached image, never
 * answered from a local image of the same name). */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "api.h"
#include "api/api-migration.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "apply.h"
#include "events.h"
#include "images/images.h"
#include "images/metadata.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "profiles/policy.h"
#include "server.h"
#include "storage/storage.h"
#include "volumes.h"
#include "util.h"
#include "yaml.h"

static json_t *timestamp(int64_t ns)
{
	char buf[LXM_RFC3339_MAX];
	struct timespec ts = { ns / 1000000000LL, ns % 1000000000LL };

	/* Go's zero time: lxc leaves "Last Used" out when it sees it. */
	if (ns == 0)
		return json_string("0001-01-01T00:00:00Z");
	return json_string(lxm_rfc3339(&ts, buf));
}

static json_t *resources_for(struct lxmd_request *r, const char *name)
{
	return json_pack("{s:[s+], s:[s+]}", "instances", "/1.0/instances/", name, "containers",
			 "/1.0/containers/", name);
}

/* A new reference to v, or a new empty object/array when v is NULL. */
static json_t *or_empty(json_t *v, int type)
{
	if (v)
		return json_incref(v);
	return type == JSON_ARRAY ? json_array() : json_object();
}

static int instance_json(struct lxmd *d, const struct lxm_db_instance *inst, bool full,
			 json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *config = NULL, *devices = NULL, *j = NULL;
	const char *status;
	int code, k;

	k = lxmd_instance_expand(d, inst, &config, &devices, err);
	if (k < 0)
		return k;
	status = lxmd_instance_status(d, inst->name, &code);
	/* "o" steals: the instance's own maps are shared with an extra reference. */
	j = json_pack(
		"{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:b, s:b, s:o, s:o, s:o, s:s,"
		" s:i, s:s, s:s}",
		"name", inst->name, "description", inst->description ? inst->description : "",
		"type", inst->type, "architecture", inst->architecture ? inst->architecture : "",
		"config", or_empty(inst->config, JSON_OBJECT), "devices",
		or_empty(inst->devices, JSON_OBJECT), "expanded_config", TAKE_PTR(config),
		"expanded_devices", TAKE_PTR(devices), "ephemeral", inst->ephemeral, "stateful",
		inst->stateful, "profiles", or_empty(inst->profiles, JSON_ARRAY), "created_at",
		timestamp(inst->created_at), "last_used_at", timestamp(inst->last_used_at),
		"status", status, "status_code", code, "location", "none", "project", "default");
	if (!j)
		return -ENOMEM;
	if (full) {
		json_t *list = NULL;

		k = lxmd_snapshots_json(d, inst, &list, err);
		if (k < 0)
			return k;
		json_t *state = NULL;

		k = lxmd_instance_state(d, inst->name, &state, err);
		if (k < 0) {
			json_decref(list);
			return k;
		}
		json_object_set_new(j, "state", state);
		json_object_set_new(j, "snapshots", list);
		json_object_set_new(j, "backups", json_array());
	}
	*ret = TAKE_PTR(j);
	return 0;
}

int lxmd_api_instances_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	_cleanup_json_ json_t *list = json_array();
	int recursion, k;

	k = lxmd_query_recursion(r, &recursion, err);
	if (k < 0)
		return k;
	k = lxmd_query_project(r, err);
	if (k < 0)
		return k;
	k = lxm_db_instance_names(r->d->db, &names, err);
	if (k < 0)
		return lxm_error_prefix(err, "list instances");
	for (char **n = names; n && *n; n++) {
		_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
		json_t *j = NULL;

		k = lxm_db_instance_get(r->d->db, *n, &inst, err);
		if (k < 0)
			return lxm_error_prefix(err, "list instances");
		k = instance_json(r->d, inst, recursion >= 2, &j, err);
		if (k < 0)
			return k;
		json_array_append_new(list, j);
	}
	k = lxmd_apply_filter(r, list, err);
	if (k < 0)
		return k;
	if (recursion == 0) {
		size_t i;
		json_t *j;

		json_array_foreach (list, i, j) {
			_cleanup_free_ char *url = NULL;

			if (lxmd_instance_url(r, json_string_value(json_object_get(j, "name")),
					      &url) < 0)
				return -ENOMEM;
			json_array_set_new(list, i, json_string(url));
		}
	}
	return lxmd_respond_sync(r, TAKE_PTR(list), NULL);
}

static int get_instance(struct lxmd_request *r, struct lxm_db_instance **ret,
			struct lxm_error **err)
{
	int k = lxmd_query_project(r, err);

	if (k < 0)
		return k;
	return lxm_db_instance_get(r->d->db, r->args[0], ret, err);
}

/* The writable part of an instance (what PUT replaces), hashed for ETag/If-Match. */
static int instance_etag(const struct lxm_db_instance *inst, char etag[65])
{
	_cleanup_json_ json_t *j = json_pack(
		"{s:s, s:O?, s:O?, s:b, s:O?, s:s}", "architecture",
		inst->architecture ? inst->architecture : "", "config", inst->config, "devices",
		inst->devices, "ephemeral", inst->ephemeral, "profiles", inst->profiles,
		"description", inst->description ? inst->description : "");

	return j ? lxmd_etag(j, etag) : -ENOMEM;
}

int lxmd_api_instance_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *j = NULL;
	char etag[65];
	int recursion, k;

	k = lxmd_query_recursion(r, &recursion, err);
	if (k < 0)
		return k;
	k = get_instance(r, &inst, err);
	if (k < 0)
		return k;
	k = instance_json(r->d, inst, recursion >= 1, &j, err);
	if (k < 0)
		return k;
	if ((k = instance_etag(inst, etag)) < 0)
		return k;
	return lxmd_respond_sync(r, TAKE_PTR(j), etag);
}

/* A state request waiting for the disk usage of the instance's volume (a tree walk on a dir
 * pool, a qgroup read on btrfs: thread pool work). */
struct state_req {
	uv_work_t work;		/* libuv's */
	struct lxmd_request *r; /* NULL once the client went away */
	struct lxm_pool *pool;	/* the pool holding the volume */
	char *name;		/* the instance */
	json_t *state;		/* what the answer says, but its disk section */
	uint64_t used;		/* worker: bytes the volume uses */
	uint64_t quota;		/* worker: its size limit, 0 for none */
	int result;		/* worker: 0 or -errno */
};

static void state_abort(struct lxmd_request *r)
{
	struct state_req *sr = r->defer_data;

	sr->r = NULL;
}

static void state_usage_work(uv_work_t *w)
{
	struct state_req *sr = w->data;
	struct lxm_error *e = NULL;

	sr->result = lxmd_volume_usage(sr->pool, sr->name, &sr->used, &sr->quota, &e);
	if (sr->result < 0)
		log_debug("%s", e->msg);
	lxm_error_free(e);
}

static void state_usage_done(uv_work_t *w, int status)
{
	struct state_req *sr = w->data;
	json_t *root;

	(void)status;
	/* The usage is information: without it the rest of the state is still the answer. */
	if (sr->result >= 0) {
		root = json_pack("{s:I}", "usage", (json_int_t)sr->used);
		if (root && sr->quota)
			json_object_set_new(root, "total", json_integer((json_int_t)sr->quota));
		if (root)
			json_object_set_new(json_object_get(sr->state, "disk"), "root", root);
	}
	if (sr->r)
		lxmd_respond_sync(sr->r, TAKE_PTR(sr->state), NULL);
	json_decref(sr->state);
	free(sr->name);
	free(sr);
}

int lxmd_api_instance_state_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	struct lxm_error *perr = NULL;
	struct lxm_pool *pool = NULL;
	struct state_req *sr;
	json_t *state = NULL;
	int k = get_instance(r, &inst, err);

	if (k < 0)
		return k;
	k = lxmd_instance_state(r->d, inst->name, &state, err);
	if (k < 0)
		return k;
	/* An instance from before storage pools, or on a pool that is unavailable: no usage. */
	if (lxmd_instance_volume_pool(r->d, inst->name, &pool, &perr) < 0 || !pool) {
		lxm_error_free(perr);
		return lxmd_respond_sync(r, state, NULL);
	}
	sr = calloc(1, sizeof(*sr));
	if (!sr || !(sr->name = strdup(inst->name))) {
		free(sr);
		json_decref(state);
		return lxm_error_set(err, -ENOMEM, 500, "state of '%s': out of memory", inst->name);
	}
	sr->pool = pool;
	sr->state = state;
	sr->work.data = sr;
	k = uv_queue_work(r->d->loop, &sr->work, state_usage_work, state_usage_done);
	if (k < 0) {
		state = TAKE_PTR(sr->state);
		free(sr->name);
		free(sr);
		return lxmd_respond_sync(r, state, NULL);
	}
	sr->r = r;
	r->deferred = true;
	r->on_abort = state_abort;
	r->defer_data = sr;
	return 0;
}

static const char *state_description(const char *action)
{
	if (streq(action, "start"))
		return "Starting instance";
	if (streq(action, "stop"))
		return "Stopping instance";
	if (streq(action, "restart"))
		return "Restarting instance";
	if (streq(action, "freeze"))
		return "Freezing instance";
	return "Unfreezing instance";
}

int lxmd_api_instance_state_put(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	const char *action = NULL;
	json_t *timeout_j;
	struct lxm_operation *op = NULL;
	bool force = false, stateful = false;
	int timeout = -1, k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "change state of '%s': request body is empty", r->args[0]);
	if ((k = get_instance(r, &inst, err)) < 0)
		return k;
	if ((k = lxm_json_opt_string(r->body, "action", &action, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "force", &force, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "stateful", &stateful, err)) < 0)
		return lxm_error_prefix(err, "change state of '%s'", inst->name);
	if (!action)
		return lxm_error_set(err, -EINVAL, 400,
				     "change state of '%s': field 'action' is required (start, "
				     "stop, restart, freeze, unfreeze)",
				     inst->name);
	if (stateful)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "%s '%s': stateful stop/start (CRIU) is not supported", action,
				     inst->name);
	/* A restore swaps the rootfs: init must not start on half of it. */
	if ((streq(action, "start") || streq(action, "restart")) && lxmd_snapshot_busy(inst->name))
		return lxm_error_set(
			err, -EBUSY, 409,
			"%s '%s': a snapshot, restore or migration of its files is under "
			"way",
			action, inst->name);
	timeout_j = json_object_get(r->body, "timeout");
	if (timeout_j && !json_is_null(timeout_j)) {
		if (!json_is_integer(timeout_j))
			return lxm_error_set(err, -EINVAL, 400,
					     "%s '%s': field 'timeout' must be a number of seconds",
					     action, inst->name);
		timeout = (int)json_integer_value(timeout_j);
	}
	/* lxc sends timeout 0 for start and -1 for "as long as it takes": both mean no kill. */
	if (timeout == 0)
		timeout = -1;
	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, state_description(action),
			      resources_for(r, inst->name), NULL, NULL, NULL, NULL, &op);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "%s '%s': new operation", action, inst->name);
	lxm_operation_start(op);
	k = lxmd_instance_change_state(r->d, inst->name, action, timeout, force, op, err);
	if (k < 0) {
		/* A request that cannot even begin is refused outright; the operation records it.
		 */
		struct lxm_error *copy = NULL;

		lxm_error_set(&copy, -(*err)->errnum, (*err)->status, "%s", (*err)->msg);
		lxm_operation_finish(op, copy);
		return k;
	}
	return lxmd_respond_async(r, op);
}

/* ---- create ---- */

/* Work for the thread pool: files are never touched on the loop thread. */
struct instance_job {
	uv_work_t work;		    /* libuv's */
	struct lxmd *d;		    /* the daemon */
	struct lxm_operation *op;   /* reports the result */
	char *name;		    /* the instance */
	char *path;		    /* its directory */
	struct lxm_pool *pool;	    /* the pool holding its volume */
	bool volume_made;	    /* create: its volume exists (filled from an image) */
	char *copy_src;		    /* copy: the source instance, or NULL */
	char *copy_snap;	    /* copy: its snapshot to copy, or NULL for the instance */
	struct lxm_pool *copy_pool; /* copy: the pool holding the source's volume */
	bool copy_freeze;	    /* copy: the source runs: freeze it around the copy */
	bool copy_vm;		    /* copy: the source is a virtual machine */
	json_t *ctx;		    /* copy: what the image's "copy" templates see */
	struct lxm_error *err;	    /* create: why it failed, while the volume goes */
	char *backup_yaml;	    /* what to write to backup.yaml (create), or NULL */
	char *alias;		    /* image to fill the rootfs from (create), or NULL: empty */
	char *server;		    /* the image server to pull alias from, or NULL: the store */
	char *protocol;		    /* its protocol */
	char *certificate;	    /* PEM trusted for it, or NULL */
	char *logdir;		    /* the instance's log directory (delete), or NULL */
	int result;		    /* 0 or -errno, set by the worker */
	const char *step;	    /* what failed */
	struct lxmd_migration *mig; /* migration: receives the rootfs, or NULL */
	bool received;		    /* migration: the rootfs is in */
	bool vm;		    /* create: a virtual machine (a disk, no rootfs/) */
	uint64_t root_size;	    /* create: the root disk's size= in bytes, 0 for none */
};

static void job_free(void *p)
{
	struct instance_job *j = p;

	if (!j)
		return;
	free(j->name);
	free(j->path);
	free(j->backup_yaml);
	free(j->alias);
	free(j->server);
	free(j->protocol);
	free(j->certificate);
	free(j->logdir);
	lxm_error_free(j->err);
	free(j->copy_src);
	free(j->copy_snap);
	json_decref(j->ctx);
	lxmd_migration_release(j->mig);
	free(j);
}

/* backup.yaml: the instance as the API shows it, beside its files, so that the database can be
 * rebuilt from storage. */
static int backup_yaml(struct lxmd *d, const struct lxm_db_instance *inst, char **ret,
		       struct lxm_error **err)
{
	_cleanup_json_ json_t *j = NULL, *backup = NULL;
	int k;

	k = instance_json(d, inst, false, &j, err);
	if (k < 0)
		return k;
	backup = json_pack("{s:O, s:[]}", "container", j, "snapshots");
	if (!backup || lxm_yaml_from_json(backup, ret) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "instance '%s': render backup.yaml",
				     inst->name);
	return 0;
}

/* Creates the instance's directory, its empty rootfs (not for a virtual machine, whose root is
 * its disk) and backup.yaml; safe to repeat. Sets *step to what failed. Runs off the loop thread
 * (or before the loop starts). */
static int write_instance_files(const char *path, const char *yaml, bool vm, const char **step)
{
	_cleanup_free_ char *rootfs = NULL, *backup = NULL;
	int k;

	if (asprintf(&rootfs, "%s/rootfs", path) < 0 ||
	    asprintf(&backup, "%s/backup.yaml", path) < 0)
		return -ENOMEM;
	*step = "create instance directory";
	k = lxm_mkdir_p(path, 0711);
	if (k < 0)
		return k;
	*step = "create rootfs directory";
	if (!vm && mkdir(rootfs, 0755) < 0 && errno != EEXIST)
		return -errno;
	*step = "write backup.yaml";
	return lxm_write_file_atomic(backup, yaml, strlen(yaml), 0600);
}

static void create_failed(struct instance_job *j, struct lxm_error *err);

/* The worker's failure: its own error, or one naming the step it stopped at. */
static struct lxm_error *job_error(struct instance_job *j, const char *what)
{
	struct lxm_error *err = TAKE_PTR(j->err);

	if (!err)
		lxm_error_setx(&err, j->result, 500, "%s instance '%s': %s %s", what, j->name,
			       j->step, j->path);
	return err;
}

/* The image's templates for trigger "copy" (hostname, hosts) rendered again for the copy. */
static int copy_templates(struct instance_job *j)
{
	_cleanup_(lxm_image_metadata_freep) struct lxm_image_metadata *meta = NULL;
	_cleanup_free_ char *yaml = NULL, *text = NULL, *tdir = NULL, *rootfs = NULL;
	size_t len = 0;
	int k;

	if (asprintf(&yaml, "%s/metadata.yaml", j->path) < 0 ||
	    asprintf(&tdir, "%s/templates", j->path) < 0 ||
	    asprintf(&rootfs, "%s/rootfs", j->path) < 0)
		return lxm_error_set(&j->err, -ENOMEM, 500, "out of memory");
	k = lxm_read_file(yaml, &text, &len);
	if (k == -ENOENT)
		return 0; /* not from an image: nothing to render */
	if (k < 0)
		return lxm_error_setx(&j->err, k, 500, "read %s", yaml);
	k = lxm_image_metadata_parse(text, len, &meta, &j->err);
	if (k >= 0)
		k = lxm_image_apply_templates(meta, tdir, rootfs, "copy", j->ctx, &j->err);
	return k;
}

/* Thread pool: the copy's volume from the source's (frozen while it runs, for a consistent
 * copy), and its templates. */
static int copy_volume(struct instance_job *j)
{
	struct lxm_error *terr = NULL;
	bool frozen = false;
	int k = 0;

	if (j->copy_freeze) {
		k = lxmd_instance_freeze_for_copy(j->d, j->copy_src, j->copy_vm, true, &j->err);
		if (k == -ENOENT) { /* it stopped meanwhile */
			lxm_error_free(TAKE_PTR(j->err));
			k = 0;
		} else if (k >= 0) {
			frozen = true;
		}
	}
	if (k >= 0)
		k = lxmd_volume_copy(j->d, j->pool, j->name, j->copy_pool, j->copy_src,
				     j->copy_snap, &j->err);
	if (frozen &&
	    lxmd_instance_freeze_for_copy(j->d, j->copy_src, j->copy_vm, false, &terr) < 0) {
		if (k >= 0) {
			j->err = TAKE_PTR(terr);
			k = lxm_error_prefix(&j->err, "thaw '%s'", j->copy_src);
		}
		lxm_error_free(terr);
	}
	if (k >= 0)
		k = copy_templates(j);
	return k < 0 ? lxm_error_prefix(&j->err, "create instance '%s'", j->name) : 0;
}

static void create_work(uv_work_t *w)
{
	struct instance_job *j = w->data;

	if (!j->volume_made && j->copy_src) {
		j->result = copy_volume(j);
		if (j->result < 0)
			return;
		j->volume_made = true;
	} else if (!j->volume_made) {
		j->step = "create its volume in";
		j->result = lxmd_volume_create(j->d, j->pool, j->name, NULL, NULL, &j->err);
		if (j->result < 0)
			return;
		j->volume_made = true;
	}
	/* A migration's backup.yaml comes once its rootfs is in (see api-migration.c). */
	if (j->mig && !j->received)
		return;
	/* A virtual machine's disk grows to the root disk's size= now (and at each start, where
	 * the size may have changed); a container's size= is a quota set at start. */
	if (j->vm && j->root_size &&
	    (j->result = lxm_volume_set_quota(j->pool, LXM_VOLUME_CONTAINER, j->name, j->root_size,
					      &j->err)) < 0) {
		lxm_error_prefix(&j->err, "create instance '%s': root disk size", j->name);
		return;
	}
	j->result = write_instance_files(j->path, j->backup_yaml, j->vm, &j->step);
}

static int queue_create_work(struct instance_job *j, struct lxm_error **err);

/* A migration's rootfs is in (or the transfer failed): the create goes on. */
static void create_received(void *ud, struct lxm_error *err)
{
	struct instance_job *j = ud;

	if (!err) {
		j->received = true;
		if (queue_create_work(j, &err) >= 0)
			return;
	}
	create_failed(j, err);
}

static void create_done(uv_work_t *w, int status)
{
	struct instance_job *j = w->data;
	_cleanup_free_ char *url = NULL, *rootfs = NULL;

	if (j->result < 0) {
		create_failed(j, job_error(j, "create"));
		return;
	}
	if (j->mig && !j->received) {
		if (asprintf(&rootfs, "%s/rootfs", j->path) < 0) {
			struct lxm_error *e = NULL;

			lxm_error_set(&e, -ENOMEM, 500, "create instance '%s': out of memory",
				      j->name);
			create_failed(j, e);
			return;
		}
		lxmd_migration_receive(j->mig, rootfs, create_received, j);
		return;
	}
	lxmd_migration_target_end(j->mig, NULL);
	if (asprintf(&url, "/1.0/instances/%s", j->name) >= 0)
		lxm_events_lifecycle(j->d->events, "instance-created", url, NULL);
	lxm_operation_finish(j->op, NULL);
}

static int queue_create_work(struct instance_job *j, struct lxm_error **err)
{
	int k;

	j->work.data = j;
	k = uv_queue_work(j->d->loop, &j->work, create_work, create_done);
	if (k < 0)
		return lxm_error_set(err, k, 500, "queue work for instance '%s': %s", j->name,
				     uv_strerror(k));
	return 0;
}

/* LXD records an image's properties on the instance as image.<key> (image.os, image.release...):
 * they tell users what it came from, and the runtime which init it has. volatile.base_image
 * names the image itself. Sets *ret_ctx to what the image's templates see. */
static int record_image_properties(struct instance_job *j, const char *fp, json_t **ret_ctx,
				   struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	json_t *v;
	const char *key;
	int k;

	k = lxm_db_image_get(j->d->db, fp, &img, err);
	if (k < 0)
		return k;
	k = lxm_db_instance_get(j->d->db, j->name, &inst, err);
	if (k < 0)
		return k;
	if (!inst->config)
		inst->config = json_object();
	json_object_foreach (img->properties, key, v) {
		char *ck = NULL;

		if (!json_is_string(v) || asprintf(&ck, "image.%s", key) < 0)
			continue;
		json_object_set(inst->config, ck, v);
		free(ck);
	}
	json_object_set_new(inst->config, "volatile.base_image", json_string(fp));
	k = lxm_db_instance_update(j->d->db, j->name, inst, err);
	if (k < 0)
		return k;
	free(j->backup_yaml);
	j->backup_yaml = NULL;
	k = backup_yaml(j->d, inst, &j->backup_yaml, err);
	if (k < 0)
		return k;
	k = lxmd_instance_expand(j->d, inst, &config, &devices, err);
	if (k < 0)
		return k;
	*ret_ctx = lxmd_instance_template_ctx(inst, config, devices);
	return *ret_ctx ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

static void create_filled(struct lxmd *d, const char *name, int result,
			  const struct lxm_error *ferr, void *ud)
{
	struct instance_job *j = ud;
	struct lxm_error *err = NULL;

	if (result < 0) {
		lxm_error_set(&err, result, ferr ? ferr->status : 500, "create instance '%s': %s",
			      j->name, ferr ? ferr->msg : strerror(-result));
		create_failed(j, err);
		return;
	}
	j->volume_made = true;
	if (queue_create_work(j, &err) < 0)
		create_failed(j, err);
}

static void create_ensured(struct lxmd *d, int result, const char *fp, const struct lxm_error *ierr,
			   void *ud)
{
	struct instance_job *j = ud;
	_cleanup_json_ json_t *ctx = NULL;
	struct lxm_error *err = NULL;

	if (result < 0) {
		lxm_error_set(&err, result, ierr ? ierr->status : 500, "create instance '%s': %s",
			      j->name, ierr ? ierr->msg : strerror(-result));
		create_failed(j, err);
		return;
	}
	if (record_image_properties(j, fp, &ctx, &err) < 0 ||
	    lxmd_image_fill_rootfs(d, fp, j->pool, j->name, ctx, j->op, create_filled, j, &err) <
		    0) {
		lxm_error_prefix(&err, "create instance '%s'", j->name);
		create_failed(j, err);
	}
}

/* Gives the names a create claimed in the database back. */
static void unclaim(struct lxmd *d, const struct lxm_pool *pool, const char *name)
{
	lxm_db_storage_volume_delete(d->db, pool->name, "container", name, NULL);
	lxm_db_instance_delete(d->db, name, NULL);
}

/* Thread pool: removes what a failed create made of the instance's volume. */
static void uncreate_work(uv_work_t *w)
{
	struct instance_job *j = w->data;
	struct lxm_error *e = NULL;

	if (lxmd_volume_delete(j->d, j->pool, j->name, &e) < 0)
		log_warn("instance '%s': remove the volume of the failed create: %s", j->name,
			 e->msg);
	lxm_error_free(e);
}

static void uncreate_done(uv_work_t *w, int status)
{
	struct instance_job *j = w->data;

	(void)status;
	unclaim(j->d, j->pool, j->name);
	lxmd_migration_target_end(j->mig, j->err);
	lxm_operation_finish(j->op, TAKE_PTR(j->err));
}

/* Undoes a create that failed after its rows were written: nothing stays, not the rows, not a
 * partial volume. Consumes err. */
static void create_failed(struct instance_job *j, struct lxm_error *err)
{
	int k;

	/* lxmd is stopping: the job goes with the operations, so no work may be queued for it.
	 * The rows stay and the next start rolls the create back (it has no backup.yaml). */
	if (j->d->shutting_down) {
		lxm_operation_finish(j->op, err);
		return;
	}

	lxm_error_free(j->err);
	j->err = err;
	j->work.data = j;
	k = uv_queue_work(j->d->loop, &j->work, uncreate_work, uncreate_done);
	if (k < 0) {
		log_warn("instance '%s': cannot queue the removal of its volume: %s", j->name,
			 uv_strerror(k));
		uncreate_done(&j->work, 0);
	}
}

static int create_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct instance_job *j = data;

	j->op = op;
	/* An image from a server is that server's, never a local one of the same name. */
	if (j->server)
		return lxmd_image_pull(j->d,
				       &(struct lxmd_image_pull){ .server = j->server,
								  .protocol = j->protocol,
								  .alias = j->alias,
								  .certificate = j->certificate,
								  .cached = true },
				       op, create_ensured, j, err);
	if (j->alias)
		return lxmd_image_ensure(j->d, j->alias, op, create_ensured, j, err);
	return queue_create_work(j, err);
}

static int create_cancel(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct instance_job *j = data;

	(void)op;
	(void)err;
	lxmd_migration_cancel(j->mig);
	return 0;
}

static int parse_profiles(const json_t *body, json_t **ret, struct lxm_error **err)
{
	json_t *profiles = json_object_get(body, "profiles"), *v;
	_cleanup_json_ json_t *out = NULL;
	size_t i;

	/* LXD: null (or absent) means the default profile, [] means none. */
	if (!profiles || json_is_null(profiles)) {
		*ret = json_pack("[s]", "default");
		return *ret ? 0 : -ENOMEM;
	}
	if (!json_is_array(profiles))
		return lxm_error_set(err, -EINVAL, 400, "field 'profiles' must be a list of names");
	out = json_array();
	json_array_foreach (profiles, i, v) {
		size_t j;
		json_t *w;

		if (!json_is_string(v))
			return lxm_error_set(err, -EINVAL, 400,
					     "field 'profiles' must be a list of names");
		json_array_foreach (out, j, w)
			if (json_equal(v, w))
				return lxm_error_set(err, -EINVAL, 400,
						     "profile '%s' is listed twice",
						     json_string_value(v));
		json_array_append(out, v);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* A copy's source, as POST /1.0/instances {"source": {"type": "copy", ...}} names it. */
struct copy {
	char *src;	       /* the source instance */
	char *snap;	       /* its snapshot, or NULL */
	struct lxm_pool *pool; /* the pool holding the source's volume */
	bool running;	       /* the source instance runs (copied frozen) */
	char *type;	       /* the source's type: the copy's */
	json_t *config;	       /* the copy's config: the source's, without its volatile state */
	json_t *devices;       /* the source's devices */
	json_t *profiles;      /* the source's profiles */
};

static void copy_done(struct copy *cp)
{
	free(cp->src);
	free(cp->snap);
	free(cp->type);
	json_decref(cp->config);
	json_decref(cp->devices);
	json_decref(cp->profiles);
}

/* What a copy of spec ("c1" or "c1/snap0") starts from: the source's config (volatile keys
 * dropped, but the base image kept: the copy is of that image too) under the request's own
 * keys, the source's devices and profiles unless the request names its own. *config and
 * *devices (the request's, borrowed) are replaced by the merged ones, owned by cp. */
static int copy_source(struct lxmd_request *r, const char *name, const char *spec,
		       bool instance_only, json_t **config, json_t **devices, struct copy *cp,
		       struct lxm_error **err)
{
	_cleanup_strv_ char **snaps = NULL;
	_cleanup_db_instance_ struct lxm_db_instance *src = NULL;
	_cleanup_db_snapshot_ struct lxm_db_snapshot *snap = NULL;
	const json_t *sconfig, *sdevices, *sprofiles;
	const char *slash, *key;
	json_t *v;
	int code, k;

	if (!spec || !*spec)
		return lxm_error_set(err, -EINVAL, 400,
				     "create instance '%s': a copy needs source.source (an "
				     "instance or instance/snapshot)",
				     name);
	slash = strchr(spec, '/');
	if (!(cp->src = slash ? strndup(spec, (size_t)(slash - spec)) : strdup(spec)) ||
	    (slash && !(cp->snap = strdup(slash + 1))))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	k = lxm_db_instance_get(r->d->db, cp->src, &src, err);
	if (k >= 0 && cp->snap)
		k = lxm_db_snapshot_get(r->d->db, cp->src, cp->snap, &snap, err);
	if (k >= 0)
		k = lxmd_instance_pool(r->d, cp->src, &cp->pool, err);
	if (k >= 0 && !cp->snap && !instance_only)
		k = lxm_db_instance_snapshot_names(r->d->db, cp->src, &snaps, err);
	if (k < 0)
		return lxm_error_prefix(err, "copy '%s' to '%s'", spec, name);
	/* LXD copies the snapshots too unless asked not to; lxm cannot yet, and says so rather
	 * than make a copy without them. */
	if (snaps && snaps[0])
		return lxm_error_set(err, -EOPNOTSUPP, 501,
				     "copy '%s' to '%s': copying its snapshots is not supported "
				     "yet: copy the instance only (lxc copy --instance-only)",
				     spec, name);
	if (lxmd_snapshot_busy(cp->src))
		return lxm_error_set(err, -EBUSY, 409,
				     "copy '%s' to '%s': a snapshot or restore of '%s' is under "
				     "way; retry when it ends",
				     spec, name, cp->src);
	lxmd_instance_status(r->d, cp->src, &code);
	cp->running = !cp->snap && code == LXM_STATUS_RUNNING;
	if (!(cp->type = strdup(src->type && *src->type ? src->type : "container")))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	sconfig = snap ? snap->config : src->config;
	sdevices = snap ? snap->devices : src->devices;
	sprofiles = snap ? snap->profiles : src->profiles;
	cp->config = json_object();
	if (!cp->config)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	json_object_foreach ((json_t *)sconfig, key, v)
		if (!startswith(key, "volatile.") || streq(key, "volatile.base_image"))
			json_object_set(cp->config, key, v);
	if (*config)
		json_object_update(cp->config, *config);
	cp->devices = json_object_size(*devices)
			      ? json_incref(*devices)
			      : json_deep_copy(sdevices ? sdevices : json_object());
	cp->profiles = json_incref((json_t *)sprofiles);
	if (!cp->devices)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*config = cp->config;
	*devices = cp->devices;
	return 0;
}

/* The root disk's size= in bytes (0 for none). */
static int root_disk_size(const json_t *xdevices, uint64_t *ret, struct lxm_error **err)
{
	const char *size =
		json_string_value(json_object_get(lxmd_root_disk(xdevices, NULL), "size"));
	int64_t bytes = 0;
	int k;

	if (size && *size && (k = lxm_parse_size("size", size, 0, &bytes, err)) < 0)
		return lxm_error_prefix(err, "root disk device");
	*ret = bytes > 0 ? (uint64_t)bytes : 0;
	return 0;
}

int lxmd_api_instances_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_json_ json_t *profiles = NULL;
	_cleanup_free_ char *path = NULL, *yaml = NULL;
	const char *name = NULL, *type = "container", *desc = "", *arch = NULL, *stype = NULL;
	const char *alias = NULL, *server = NULL, *protocol = NULL, *certificate = NULL;
	json_t *source = NULL, *config = NULL, *devices = NULL;
	struct lxm_db_instance inst = { 0 };
	struct lxm_operation *op = NULL;
	struct lxm_pool *pool = NULL;
	_cleanup_(copy_done) struct copy cp = { 0 };
	_cleanup_json_ json_t *ctx = NULL, *md = NULL;
	struct instance_job *job;
	bool migration = false;
	uint64_t root_size = 0;
	struct utsname u;
	const char *reason;
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400, "create instance: request body is empty");
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "type", &type, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "description", &desc, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "architecture", &arch, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "source", &source, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "config", &config, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "devices", &devices, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "ephemeral", &inst.ephemeral, err)) < 0)
		return lxm_error_prefix(err, "create instance");
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400,
				     "create instance: field 'name' is required");
	reason = lxm_name_invalid_reason(name);
	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "create instance '%s': invalid name: %s",
				     name, reason);
	if (!*type)
		type = "container";
	if (!streq(type, "container") && !streq(type, "virtual-machine"))
		return lxm_error_set(err, -EINVAL, 400,
				     "create instance '%s': unknown type '%s' (container or "
				     "virtual-machine)",
				     name, type);
	if (source && (k = lxm_json_opt_string(source, "type", &stype, err)) < 0)
		return lxm_error_prefix(err, "create instance '%s': source", name);
	if (!stype || !*stype)
		return lxm_error_set(err, -EINVAL, 400,
				     "create instance '%s': field 'source.type' is required "
				     "('none' for an empty instance)",
				     name);
	if (streq(stype, "image")) {
		const char *fp = NULL, *mode = NULL;

		if ((k = lxm_json_opt_string(source, "alias", &alias, err)) < 0 ||
		    (k = lxm_json_opt_string(source, "fingerprint", &fp, err)) < 0 ||
		    (k = lxm_json_opt_string(source, "mode", &mode, err)) < 0 ||
		    (k = lxm_json_opt_string(source, "server", &server, err)) < 0 ||
		    (k = lxm_json_opt_string(source, "protocol", &protocol, err)) < 0 ||
		    (k = lxm_json_opt_string(source, "certificate", &certificate, err)) < 0)
			return lxm_error_prefix(err, "create instance '%s': source", name);
		if (mode && *mode && !streq(mode, "pull"))
			return lxm_error_set(err, -EOPNOTSUPP, 501,
					     "create instance '%s': source mode '%s' is not "
					     "implemented (pull)",
					     name, mode);
		if (server && !*server)
			server = NULL;
		if (!alias || !*alias)
			alias = fp;
		if (!alias || !*alias)
			return lxm_error_set(err, -EINVAL, 400,
					     "create instance '%s': an image source needs "
					     "source.alias or source.fingerprint",
					     name);
		if (server) {
			struct lxm_error *perr = NULL;

			/* What can be refused before any traffic is refused now. */
			k = lxmd_image_pull_check(&(struct lxmd_image_pull){ .server = server,
									     .protocol = protocol,
									     .alias = alias },
						  &perr);
			if (k < 0) {
				lxm_error_set(err, k, perr->status, "create instance '%s': %s",
					      name, perr->msg);
				lxm_error_free(perr);
				return k;
			}
		} else if (!lxmd_image_known(r->d, alias))
			return lxm_error_set(err, -ENOENT, 404,
					     "create instance '%s': image '%s' not found", name,
					     alias);
	} else if (streq(stype, "copy")) {
		const char *src = NULL;

		bool instance_only = false;

		if ((k = lxm_json_opt_string(source, "source", &src, err)) < 0 ||
		    (k = lxm_json_opt_bool(source, "instance_only", &instance_only, err)) < 0)
			return lxm_error_prefix(err, "create instance '%s': source", name);
		if ((k = copy_source(r, name, src, instance_only, &config, &devices, &cp, err)) < 0)
			return k;
		/* A copy is of the source's type, whatever the request says. */
		type = cp.type;
	} else if (streq(stype, "migration")) {
		const char *mode = NULL;

		if ((k = lxm_json_opt_string(source, "mode", &mode, err)) < 0)
			return lxm_error_prefix(err, "create instance '%s': source", name);
		if (!mode || !streq(mode, "push"))
			return lxm_error_set(err, -EOPNOTSUPP, 501,
					     "create instance '%s': migration mode '%s' is not "
					     "implemented (push: a client relays the source's "
					     "websockets, as lxm copy does)",
					     name, mode && *mode ? mode : "pull");
		if (streq(type, "virtual-machine"))
			return lxm_error_set(err, -EOPNOTSUPP, 501,
					     "create instance '%s': moving a virtual machine "
					     "between hosts is not supported yet",
					     name);
		migration = true;
	} else if (!streq(stype, "none")) {
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "create instance '%s': unknown source type '%s' (image, "
				     "copy, migration or none)",
				     name, stype);
	}
	/* A virtual machine boots from its image's disk and kernel: there is no empty one. */
	if (streq(stype, "none") && streq(type, "virtual-machine"))
		return lxm_error_set(err, -EINVAL, 400,
				     "create instance '%s': a virtual machine needs an image "
				     "source (its disk and kernel come from a virtual-machine "
				     "image)",
				     name);
	if ((k = lxmd_check_config(config, err)) < 0 ||
	    (k = lxmd_check_devices(devices, err)) < 0 ||
	    (k = (cp.profiles && !json_object_get(r->body, "profiles")
			  ? ((profiles = json_incref(cp.profiles)), 0)
			  : parse_profiles(r->body, &profiles, err))) < 0)
		return lxm_error_prefix(err, "create instance '%s'", name);
	uname(&u);

	inst.name = (char *)name;
	inst.type = (char *)type;
	inst.architecture = (char *)(arch && *arch ? arch : u.machine);
	inst.description = (char *)desc;
	inst.created_at = lxm_now_ns();
	inst.config = config;
	inst.devices = devices;
	inst.profiles = profiles;

	/* Values are checked before anything exists (LXD refuses bad config at create too): a
	 * launch with limits.memory=lots leaves no instance behind. */
	{
		_cleanup_json_ json_t *xconfig = NULL, *xdevices = NULL;

		if ((k = lxmd_instance_expand(r->d, &inst, &xconfig, &xdevices, err)) < 0 ||
		    (k = lxmd_instance_apply_config(r->d, name, xconfig, false, err)) < 0 ||
		    (k = lxmd_root_pool(r->d, xdevices, name, &pool, err)) < 0 ||
		    (k = root_disk_size(xdevices, &root_size, err)) < 0)
			return lxm_error_prefix(err, "create instance '%s'", name);
		if (cp.src && !(ctx = lxmd_instance_template_ctx(&inst, xconfig, xdevices)))
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	/* The database row claims the name now, so a concurrent create of the same name fails
	 * here with 409 instead of racing in the thread pool. */
	k = lxm_db_instance_create(r->d->db, &inst, NULL, err);
	if (k < 0)
		return k;
	/* So is the volume's row: an interrupted create is found and finished at start-up. */
	k = lxm_db_storage_volume_create(
		r->d->db,
		&(struct lxm_db_storage_volume){
			.pool = pool->name, .type = (char *)"container", .name = (char *)name },
		err);
	if (k < 0) {
		lxm_db_instance_delete(r->d->db, name, NULL);
		return lxm_error_prefix(err, "create instance '%s'", name);
	}
	k = backup_yaml(r->d, &inst, &yaml, err);
	if (k >= 0)
		k = lxmd_instance_path(r->d, name, &path);
	job = k >= 0 ? calloc(1, sizeof(*job)) : NULL;
	if (!job) {
		unclaim(r->d, pool, name);
		return k < 0 && *err
			       ? k
			       : lxm_error_set(err, -ENOMEM, 500, "create instance '%s'", name);
	}
	job->d = r->d;
	job->pool = pool;
	job->name = strdup(name);
	job->path = TAKE_PTR(path);
	job->backup_yaml = TAKE_PTR(yaml);
	job->copy_src = TAKE_PTR(cp.src);
	job->copy_snap = TAKE_PTR(cp.snap);
	job->copy_pool = cp.pool;
	job->copy_freeze = cp.running;
	job->copy_vm = streq(cp.type, "virtual-machine");
	job->ctx = TAKE_PTR(ctx);
	job->vm = streq(type, "virtual-machine");
	job->root_size = root_size;
	if ((alias && !(job->alias = strdup(alias))) ||
	    (server && !(job->server = strdup(server))) ||
	    (protocol && !(job->protocol = strdup(protocol))) ||
	    (certificate && *certificate && !(job->certificate = strdup(certificate)))) {
		job_free(job);
		unclaim(r->d, pool, name);
		return -ENOMEM;
	}
	if (migration && (k = lxmd_migration_target_new(r->d, name, &job->mig, &md)) < 0) {
		job_free(job);
		unclaim(r->d, pool, name);
		return lxm_error_setx(err, k, 500, "create instance '%s'", name);
	}
	k = lxm_operation_new(r->d->ops, migration ? LXM_OP_WEBSOCKET : LXM_OP_TASK,
			      "Creating instance", resources_for(r, name), create_run,
			      migration ? create_cancel : NULL, job, job_free, &op);
	if (k < 0) {
		job_free(job);
		unclaim(r->d, pool, name);
		return lxm_error_setx(err, k, 500, "create instance '%s': new operation", name);
	}
	if (job->mig) {
		lxmd_migration_target_attach(job->mig, op);
		lxm_operation_set_metadata(op, TAKE_PTR(md));
	}
	lxm_operation_start(op);
	return lxmd_respond_async(r, op);
}

/* ---- delete ---- */

static void delete_work(uv_work_t *w)
{
	struct instance_job *j = w->data;
	_cleanup_free_ char *snaps = NULL;
	int k;

	/* lxm_rm_tree never follows a symlink out of the tree, and a directory already gone (an
	 * interrupted create or delete) is what deleting wants. */
	j->step = "remove log directory";
	k = lxm_rm_tree(j->logdir);
	if (k < 0) {
		j->result = k;
		return;
	}
	j->step = "delete the volume of";
	if (j->pool) {
		j->result = lxmd_volume_delete(j->d, j->pool, j->name, &j->err);
		return;
	}
	/* An instance from before storage pools: its directories are its own. */
	j->step = "remove instance directory";
	j->result = lxm_rm_tree(j->path);
	if (j->result >= 0 &&
	    asprintf(&snaps, "%s/containers-snapshots/%s", j->d->cfg.root, j->name) < 0)
		j->result = -ENOMEM;
	j->step = "remove the snapshots of";
	if (j->result >= 0)
		j->result = lxm_rm_tree(snaps);
}

/* Whether instance name is one from before storage pools: a real directory in ROOT/containers
 * (a pool's instances are links there). */
static bool legacy_instance(struct lxmd *d, const char *name)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;

	return lxmd_instance_path(d, name, &path) >= 0 && lstat(path, &st) == 0 &&
	       S_ISDIR(st.st_mode);
}

/* At start-up, for one instance: temporary files of atomic writes that a kill interrupted go;
 * its volume is mounted (overlay) and linked. A create that a kill interrupted (its rows are
 * written first, backup.yaml last) is rolled back: volume and rows go, as if it had never been
 * asked. Returns 1 when it rolled back, 0 otherwise; problems are logged, so that the other
 * instances start anyway. */
static int recover_one(struct lxmd *d, const char *name)
{
	_cleanup_free_ char *vol = NULL, *backup = NULL, *pattern = NULL;
	struct lxm_pool *pool = NULL;
	struct lxm_error *e = NULL;
	glob_t g = { 0 };
	int k;

	k = lxmd_instance_volume_pool(d, name, &pool, &e);
	if (k >= 0 && !pool) {
		/* From before storage pools, its files are in a directory ROOT/containers/<name>.
		 * Without one, a kill came between the create's instance row and its volume row:
		 * nothing else was made yet. */
		if (legacy_instance(d, name))
			return 0;
		k = lxm_db_instance_delete(d->db, name, &e);
		if (k >= 0) {
			log_warn("instance '%s': its create was interrupted (no volume): removed",
				 name);
			return 1;
		}
		goto out;
	}
	if (k >= 0 && (lxm_pool_volume_path(pool, LXM_VOLUME_CONTAINER, name, NULL, &vol) < 0 ||
		       asprintf(&backup, "%s/backup.yaml", vol) < 0 ||
		       asprintf(&pattern, "%s.tmp??????", backup) < 0))
		k = lxm_error_set(&e, -ENOMEM, 500, "out of memory");
	if (k < 0)
		goto out;
	if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			unlink(g.gl_pathv[i]);
	globfree(&g);
	if (access(backup, F_OK) == 0) {
		k = lxmd_volume_mount(d, pool, name, &e);
		goto out;
	}
	k = lxmd_volume_delete(d, pool, name, &e);
	if (k >= 0)
		k = lxm_db_storage_volume_delete(d->db, pool->name, "container", name, &e);
	if (k >= 0 || k == -ENOENT)
		k = lxm_db_instance_delete(d->db, name, &e);
	if (k >= 0) {
		log_warn("instance '%s': its create was interrupted (no backup.yaml): removed",
			 name);
		return 1;
	}
out:
	if (k < 0)
		log_error("instance '%s': %s", name, e ? e->msg : strerror(-k));
	lxm_error_free(e);
	return 0;
}

int lxmd_instances_recover(struct lxmd *d, struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	int k, removed = 0;

	k = lxm_db_instance_names(d->db, &names, err);
	if (k < 0)
		return lxm_error_prefix(err, "recover instances");
	for (char **n = names; n && *n; n++)
		removed += recover_one(d, *n);
	return removed;
}

static void delete_done(uv_work_t *w, int status)
{
	struct instance_job *j = w->data;
	struct lxm_error *err = NULL;
	_cleanup_free_ char *url = NULL;

	if (j->result < 0) {
		lxm_operation_finish(j->op, job_error(j, "delete"));
		return;
	}
	/* The rows go last: an interrupted delete leaves an instance that can be deleted again. */
	if ((j->pool && lxm_db_storage_volume_delete(j->d->db, j->pool->name, "container", j->name,
						     &err) < 0) ||
	    lxm_db_instance_delete(j->d->db, j->name, &err) < 0) {
		lxm_operation_finish(j->op, err);
		return;
	}
	lxmd_instance_deleted(j->d, j->name);
	if (asprintf(&url, "/1.0/instances/%s", j->name) >= 0)
		lxm_events_lifecycle(j->d->events, "instance-deleted", url, NULL);
	lxm_operation_finish(j->op, NULL);
}

static int delete_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct instance_job *j = data;
	int k;

	j->op = op;
	j->work.data = j;
	k = uv_queue_work(j->d->loop, &j->work, delete_work, delete_done);
	if (k < 0)
		return lxm_error_set(err, k, 500, "queue work for instance '%s': %s", j->name,
				     uv_strerror(k));
	return 0;
}

int lxmd_api_instance_delete(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	struct lxm_operation *op = NULL;
	struct instance_job *job;
	int k;

	int code;

	k = get_instance(r, &inst, err);
	if (k < 0)
		return k;
	lxmd_instance_status(r->d, inst->name, &code);
	if (code != LXM_STATUS_STOPPED ||
	    lxmd_instance_running(r->d, inst->name, NULL, NULL, NULL) == 0)
		return lxm_error_set(err, -EBUSY, 400,
				     "delete instance '%s': it is running: stop it first (or "
				     "delete --force)",
				     inst->name);
	if (lxmd_snapshot_busy(inst->name))
		return lxm_error_set(err, -EBUSY, 409,
				     "delete instance '%s': a snapshot, restore or migration of it "
				     "is under way; retry when it ends",
				     inst->name);
	k = lxmd_instance_expand(r->d, inst, &config, &devices, err);
	if (k < 0)
		return k;
	if (streq(json_string_value(json_object_get(config, "security.protection.delete")), "true"))
		return lxm_error_set(
			err, -EPERM, 403,
			"delete instance '%s': security.protection.delete is set; unset "
			"it first",
			inst->name);
	job = calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	job->d = r->d;
	job->name = strdup(inst->name);
	k = lxmd_instance_path(r->d, inst->name, &job->path);
	if (k >= 0 && asprintf(&job->logdir, "%s/logs/%s", r->d->cfg.root, inst->name) < 0)
		k = -ENOMEM;
	if (k < 0 || !job->name) {
		job_free(job);
		return -ENOMEM;
	}
	/* No pool: an instance from before storage pools, whose directories are its own. */
	k = lxmd_instance_volume_pool(r->d, inst->name, &job->pool, err);
	if (k < 0) {
		job_free(job);
		return lxm_error_prefix(err, "delete instance '%s'", inst->name);
	}
	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, "Deleting instance",
			      resources_for(r, inst->name), delete_run, NULL, job, job_free, &op);
	if (k < 0) {
		job_free(job);
		return lxm_error_setx(err, k, 500, "delete instance '%s': new operation",
				      inst->name);
	}
	lxm_operation_start(op);
	return lxmd_respond_async(r, op);
}

/* ---- update ---- */

/* Keys lxmd writes (image.*, volatile.*): a client sends them back as it read them (lxc, pylxd
 * do), or not at all. */
static bool key_lxmd_owned(const char *key)
{
	return startswith(key, "volatile.") || startswith(key, "image.");
}

/* A PUT that leaves lxmd's keys out keeps them; one that changes them was checked by
 * lxmd_check_config_change() (read-only ones refused, a nic's hwaddr validated). */
static void keep_lxmd_keys(const json_t *old, json_t *config)
{
	const char *key;
	json_t *v;

	json_object_foreach ((json_t *)old, key, v)
		if (key_lxmd_owned(key) && !json_object_get(config, key))
			json_object_set(config, key, v);
}

/* PUT replaces the writable fields; PATCH merges config and devices and replaces what it names. */
static int instance_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL, *profiles = NULL, *xconfig = NULL,
			      *xdevices = NULL, *old_xconfig = NULL, *old_xdevices = NULL;
	_cleanup_(lxmd_change_freep) struct lxmd_change *change = NULL;
	const char *desc = NULL, *arch = NULL, *restore = NULL;
	json_t *in_config = NULL, *in_devices = NULL;
	struct lxm_operation *op = NULL;
	char etag[65];
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "update instance '%s': request body is empty", r->args[0]);
	if ((k = get_instance(r, &inst, err)) < 0)
		return k;
	if ((k = instance_etag(inst, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0)
		return lxm_error_prefix(err, "update instance '%s'", inst->name);
	if ((k = lxm_json_opt_string(r->body, "restore", &restore, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "description", &desc, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "architecture", &arch, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "config", &in_config, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "devices", &in_devices, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "ephemeral", &inst->ephemeral, err)) < 0)
		return lxm_error_prefix(err, "update instance '%s'", inst->name);
	if (restore && *restore)
		return lxmd_snapshot_restore(r, inst, restore, err);
	if ((k = lxmd_instance_expand(r->d, inst, &old_xconfig, &old_xdevices, err)) < 0)
		return lxm_error_prefix(err, "update instance '%s'", inst->name);
	if (arch && *arch && inst->architecture && !streq(arch, inst->architecture))
		return lxm_error_set(err, -EINVAL, 400,
				     "update instance '%s': the architecture cannot change (%s)",
				     inst->name, inst->architecture);

	config = patch && inst->config ? json_deep_copy(inst->config) : json_object();
	devices = patch && inst->devices ? json_deep_copy(inst->devices) : json_object();
	if (!config || !devices)
		return -ENOMEM;
	if (in_config)
		json_object_update(config, in_config);
	if (in_devices)
		json_object_update(devices, in_devices);
	/* A PUT without config keeps it (pylxd sends only what it has). */
	if (!patch && !in_config && inst->config)
		json_object_update(config, inst->config);
	if (!patch && !in_devices && inst->devices)
		json_object_update(devices, inst->devices);
	if ((k = lxmd_check_config_change(inst->config, config, false, err)) < 0 ||
	    (k = lxmd_check_devices(devices, err)) < 0)
		return lxm_error_prefix(err, "update instance '%s'", inst->name);
	keep_lxmd_keys(inst->config, config);
	if (json_object_get(r->body, "profiles") &&
	    !json_is_null(json_object_get(r->body, "profiles"))) {
		if ((k = parse_profiles(r->body, &profiles, err)) < 0)
			return lxm_error_prefix(err, "update instance '%s'", inst->name);
		json_decref(inst->profiles);
		inst->profiles = json_incref(profiles);
	}
	if (desc) {
		free(inst->description);
		inst->description = strdup(desc);
	}
	json_decref(inst->config);
	inst->config = json_incref(config);
	json_decref(inst->devices);
	inst->devices = json_incref(devices);

	/* Everything is checked before anything is saved: a bad value loses nothing (apply.h). */
	if ((k = lxmd_instance_expand(r->d, inst, &xconfig, &xdevices, err)) < 0 ||
	    (k = lxmd_change_plan(r->d, inst, old_xconfig, old_xdevices, xconfig, xdevices, &change,
				  err)) < 0)
		return lxm_error_prefix(err, "update instance '%s'", inst->name);
	/* Limits, unix devices and proxies of a running instance change at once, before the
	 * change is saved: one that fails (a port in use) puts the recorded ones back and saves
	 * nothing. */
	if ((k = lxmd_change_apply(r->d, change, err)) < 0)
		return lxm_error_prefix(err, "update instance '%s'", inst->name);
	if ((k = lxm_db_instance_update(r->d->db, inst->name, inst, err)) < 0)
		return k;
	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, "Updating instance",
			      resources_for(r, inst->name), NULL, NULL, NULL, NULL, &op);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "update instance '%s': new operation",
				      inst->name);
	lxm_operation_start(op);
	/* What waits for the next start is said, not only recorded. */
	if (lxmd_change_restart(change))
		lxm_operation_set_metadata(
			op, json_pack("{s:O}", "restart_required", lxmd_change_restart(change)));
	{
		_cleanup_free_ char *url = NULL;

		if (asprintf(&url, "/1.0/instances/%s", inst->name) >= 0)
			lxm_events_lifecycle(r->d->events, "instance-updated", url, NULL);
	}
	/* Disks and nics of a running instance are hot-plugged: the operation ends with them. */
	if (lxmd_change_hotplug(r->d, change, op))
		return lxmd_respond_async(r, op);
	/* The change is complete when the reply goes out; LXD answers with an operation. */
	lxm_operation_finish(op, NULL);
	return lxmd_respond_async(r, op);
}

int lxmd_api_instance_put(struct lxmd_request *r, struct lxm_error **err)
{
	return instance_update(r, false, err);
}

int lxmd_api_instance_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return instance_update(r, true, err);
}

/* ---- rename ---- */

struct rename_job {
	struct instance_job j; /* the instance, its pool */
	char *new_name;	       /* what it becomes */
};

static void rename_job_free(void *p)
{
	struct rename_job *rj = p;

	if (!rj)
		return;
	free(rj->new_name);
	job_free(&rj->j);
}

/* Thread pool: the volume (with its snapshots) and the log directory take the new name. */
static void rename_work(uv_work_t *w)
{
	struct rename_job *rj = w->data;
	struct instance_job *j = &rj->j;
	_cleanup_free_ char *logs = NULL, *new_logs = NULL;

	if (asprintf(&logs, "%s/logs/%s", j->d->cfg.root, j->name) < 0 ||
	    asprintf(&new_logs, "%s/logs/%s", j->d->cfg.root, rj->new_name) < 0) {
		j->result = lxm_error_set(&j->err, -ENOMEM, 500, "out of memory");
		return;
	}
	j->result = lxmd_volume_rename(j->d, j->pool, j->name, rj->new_name, &j->err);
	if (j->result >= 0 && rename(logs, new_logs) < 0 && errno != ENOENT)
		log_warn("rename instance '%s': move %s to %s: %s", j->name, logs, new_logs,
			 strerror(errno));
}

static void rename_done(uv_work_t *w, int status)
{
	struct rename_job *rj = w->data;
	struct instance_job *j = &rj->j;
	struct lxm_error *err = NULL;
	_cleanup_free_ char *url = NULL;

	(void)status;
	if (j->result < 0) {
		/* The rows were renamed first: they go back, so that rows and files match. */
		if (lxm_db_storage_volume_rename(j->d->db, j->pool->name, "container", rj->new_name,
						 j->name, NULL) < 0 ||
		    lxm_db_instance_rename(j->d->db, rj->new_name, j->name, NULL) < 0)
			log_error("rename instance '%s': could not rename its rows back", j->name);
		err = TAKE_PTR(j->err);
		lxm_operation_finish(j->op, err);
		return;
	}
	lxmd_instance_deleted(j->d, j->name);
	if (asprintf(&url, "/1.0/instances/%s", rj->new_name) >= 0)
		lxm_events_lifecycle(j->d->events, "instance-renamed", url,
				     json_pack("{s:s}", "old_name", j->name));
	lxm_operation_finish(j->op, NULL);
}

static int rename_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct rename_job *rj = data;
	int k;

	rj->j.op = op;
	rj->j.work.data = rj;
	k = uv_queue_work(rj->j.d->loop, &rj->j.work, rename_work, rename_done);
	if (k < 0)
		return lxm_error_set(err, k, 500, "queue work for instance '%s': %s", rj->j.name,
				     uv_strerror(k));
	return 0;
}

/* POST /1.0/instances/<name> {"name": "new"}: a rename (lxm move). The instance must be
 * stopped; its snapshots, logs and volume follow. {"migration": true}: the source of a transfer
 * to another lxmd (api-migration.c). */
int lxmd_api_instance_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL, *other = NULL;
	struct lxm_operation *op = NULL;
	const char *name = NULL, *reason;
	bool migration = false;
	struct rename_job *rj;
	int code, k;

	if ((k = get_instance(r, &inst, err)) < 0)
		return k;
	if (r->body && ((k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
			(k = lxm_json_opt_bool(r->body, "migration", &migration, err)) < 0))
		return lxm_error_prefix(err, "rename instance '%s'", inst->name);
	if (migration)
		return lxmd_migration_source(r, inst->name, NULL, err);
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400,
				     "rename instance '%s': field 'name' (the new name) is "
				     "required",
				     inst->name);
	reason = lxm_name_invalid_reason(name);
	if (reason)
		return lxm_error_set(err, -EINVAL, 400,
				     "rename instance '%s': invalid name '%s': %s", inst->name,
				     name, reason);
	if (lxm_db_instance_get(r->d->db, name, &other, NULL) >= 0)
		return lxm_error_set(err, -EEXIST, 409,
				     "rename instance '%s': an instance named '%s' exists",
				     inst->name, name);
	lxmd_instance_status(r->d, inst->name, &code);
	if (code != LXM_STATUS_STOPPED ||
	    lxmd_instance_running(r->d, inst->name, NULL, NULL, NULL) == 0)
		return lxm_error_set(err, -EBUSY, 400,
				     "rename instance '%s': it is running: stop it first",
				     inst->name);
	if (lxmd_snapshot_busy(inst->name))
		return lxm_error_set(err, -EBUSY, 409,
				     "rename instance '%s': a snapshot, restore or migration of it "
				     "is under way; retry when it ends",
				     inst->name);
	rj = calloc(1, sizeof(*rj));
	if (!rj || !(rj->j.name = strdup(inst->name)) || !(rj->new_name = strdup(name))) {
		rename_job_free(rj);
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	rj->j.d = r->d;
	k = lxmd_instance_pool(r->d, inst->name, &rj->j.pool, err);
	if (k < 0) {
		rename_job_free(rj);
		return lxm_error_prefix(err, "rename instance '%s'", inst->name);
	}
	/* The rows first (they claim the new name), then the files; a failure renames them
	 * back. */
	k = lxm_db_instance_rename(r->d->db, inst->name, name, err);
	if (k >= 0) {
		k = lxm_db_storage_volume_rename(r->d->db, rj->j.pool->name, "container",
						 inst->name, name, err);
		if (k < 0)
			lxm_db_instance_rename(r->d->db, name, inst->name, NULL);
	}
	if (k < 0) {
		rename_job_free(rj);
		return lxm_error_prefix(err, "rename instance '%s'", inst->name);
	}
	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, "Renaming instance",
			      resources_for(r, inst->name), rename_run, NULL, rj, rename_job_free,
			      &op);
	if (k < 0) {
		lxm_db_storage_volume_rename(r->d->db, rj->j.pool->name, "container", name,
					     inst->name, NULL);
		lxm_db_instance_rename(r->d->db, name, inst->name, NULL);
		rename_job_free(rj);
		return lxm_error_setx(err, k, 500, "rename instance '%s': new operation",
				      inst->name);
	}
	lxm_operation_start(op);
	return lxmd_respond_async(r, op);
}
