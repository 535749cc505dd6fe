/* /1.0/instances/<name>/snapshots (and /1.0/containers/...): list, take, show, edit, rename and
 * delete snapshots, and the restore of PUT /1.0/instances/<name> {"restore": "snap0"}. The
 * files are lxmd/snapshots.c's (copied on the thread pool); the rows lxmd/db/db-snapshots.c's.
 * A snapshot is recorded only once its files are complete, and a failure at any step leaves no
 * directory and no row behind. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "api.h"
#include "api/api-migration.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "server.h"
#include "snapshot-schedule.h"
#include "volumes.h"
#include "util.h"

#define ZERO_TIME "0001-01-01T00:00:00Z"

/* ---- instances with snapshot work under way ---- */

/* An instance whose files a snapshot, a restore or a migration is copying: a second such job, a
 * start, a rename or a delete of the instance waits for it to end (409). */
struct busy {
	LIST_ENTRY(busy) link; /* in busy_list */
	char *instance;	       /* its name */
};

static LIST_HEAD(, busy) busy_list = LIST_HEAD_INITIALIZER(busy_list);

bool lxmd_snapshot_busy(const char *instance)
{
	struct busy *b;

	LIST_FOREACH(b, &busy_list, link)
	if (streq(b->instance, instance))
		return true;
	return false;
}

int lxmd_snapshot_busy_take(const char *instance)
{
	struct busy *b = calloc(1, sizeof(*b));

	if (!b || !(b->instance = strdup(instance))) {
		free(b);
		return -ENOMEM;
	}
	LIST_INSERT_HEAD(&busy_list, b, link);
	return 0;
}

void lxmd_snapshot_busy_release(const char *instance)
{
	struct busy *b;

	LIST_FOREACH(b, &busy_list, link)
	if (streq(b->instance, instance)) {
		LIST_REMOVE(b, link);
		free(b->instance);
		free(b);
		return;
	}
}

/* ---- JSON ---- */

static json_t *timestamp(int64_t ns)
{
	char buf[LXM_RFC3339_MAX];
	struct timespec ts = { ns / 1000000000LL, ns % 1000000000LL };

	/* Go's zero time means "never" to lxc. */
	return json_string(ns == 0 ? ZERO_TIME : lxm_rfc3339(&ts, buf));
}

/* Field expires_at of a body: absent keeps *ret, null or "" mean never. */
static int opt_expires_at(const json_t *body, const char *what, int64_t *ret,
			  struct lxm_error **err)
{
	json_t *v = json_object_get(body, "expires_at");
	int64_t sec, nsec;

	if (!v)
		return 0;
	if (json_is_null(v)) {
		*ret = 0;
		return 0;
	}
	if (!json_is_string(v) || lxmd_parse_rfc3339(json_string_value(v), &sec, &nsec) < 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: field 'expires_at' must be an RFC 3339 time "
				     "(2006-01-02T15:04:05Z)",
				     what);
	*ret = sec * 1000000000LL + nsec;
	return 0;
}

static json_t *or_empty(json_t *v, int type)
{
	if (v)
		return json_incref(v);
	return type == JSON_ARRAY ? json_array() : json_object();
}

/* LXD's InstanceSnapshot. A snapshot has the architecture and ephemeral flag of its instance;
 * its expanded config is its own config over its own profiles. */
static int snapshot_json(struct lxmd *d, const struct lxm_db_instance *inst,
			 const struct lxm_db_snapshot *s, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	struct lxm_db_instance view = *inst;
	json_t *j;
	int k;

	view.config = s->config;
	view.devices = s->devices;
	view.profiles = s->profiles;
	k = lxmd_instance_expand(d, &view, &config, &devices, err);
	if (k < 0)
		return lxm_error_prefix(err, "snapshot '%s/%s'", inst->name, s->name);
	j = json_pack("{s:s, s:s, s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:s, s:b, s:I}",
		      "name", s->name, "description", s->description ? s->description : "",
		      "created_at", timestamp(s->created_at), "expires_at",
		      timestamp(s->expires_at), "last_used_at", timestamp(0), "stateful",
		      s->stateful, "config", or_empty(s->config, JSON_OBJECT), "devices",
		      or_empty(s->devices, JSON_OBJECT), "profiles",
		      or_empty(s->profiles, JSON_ARRAY), "expanded_config", TAKE_PTR(config),
		      "expanded_devices", TAKE_PTR(devices), "architecture",
		      inst->architecture ? inst->architecture : "", "ephemeral", inst->ephemeral,
		      "size", (json_int_t)s->size);
	if (!j)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*ret = j;
	return 0;
}

int lxmd_snapshots_json(struct lxmd *d, const struct lxm_db_instance *inst, json_t **ret,
			struct lxm_error **err)
{
	struct lxm_db_snapshot **list = NULL;
	_cleanup_json_ json_t *out = json_array();
	size_t n = 0;
	int k;

	if (!out)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	k = lxm_db_snapshot_list(d->db, inst->name, &list, &n, err);
	for (size_t i = 0; k >= 0 && i < n; i++) {
		json_t *j = NULL;

		k = snapshot_json(d, inst, list[i], &j, err);
		if (k >= 0)
			json_array_append_new(out, j);
	}
	lxm_db_snapshot_list_free(list, n);
	if (k < 0)
		return k;
	*ret = TAKE_PTR(out);
	return 0;
}

/* "/1.0/instances/c1/snapshots/s0" (or /1.0/containers/...) as the request came in. */
static int snapshot_url(struct lxmd_request *r, const char *instance, const char *snap, char **ret)
{
	_cleanup_free_ char *base = NULL;

	if (lxmd_instance_url(r, instance, &base) < 0 ||
	    asprintf(ret, "%s/snapshots/%s", base, snap) < 0)
		return -ENOMEM;
	return 0;
}

static json_t *resources_for(const char *instance, const char *snap)
{
	json_t *j = json_pack("{s:[s+], s:[s+]}", "instances", "/1.0/instances/", instance,
			      "containers", "/1.0/containers/", instance);

	if (j && snap)
		json_object_set_new(
			j, "instances_snapshots",
			json_pack("[s+++]", "/1.0/instances/", instance, "/snapshots/", snap));
	return j;
}

static void lifecycle(struct lxmd *d, const char *action, const char *instance, const char *snap)
{
	_cleanup_free_ char *url = NULL;

	if (asprintf(&url, "/1.0/instances/%s/snapshots/%s", instance, snap) >= 0)
		lxm_events_lifecycle(d->events, action, url, NULL);
}

/* ---- list, show ---- */

static int get_instance(struct lxmd_request *r, struct lxm_db_instance **ret,
			struct lxm_error **err)
{
	int k = lxmd_query_project(r, err);

	if (k < 0)
		return k;
	return lxm_db_instance_get(r->d->db, r->args[0], ret, err);
}

int lxmd_api_instance_snapshots_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *list = NULL;
	int recursion, k;

	if ((k = lxmd_query_recursion(r, &recursion, err)) < 0 ||
	    (k = get_instance(r, &inst, err)) < 0)
		return k;
	k = lxmd_snapshots_json(r->d, inst, &list, err);
	if (k < 0)
		return k;
	if (recursion == 0) {
		size_t i;
		json_t *j;

		json_array_foreach (list, i, j) {
			_cleanup_free_ char *url = NULL;

			if (snapshot_url(r, inst->name,
					 json_string_value(json_object_get(j, "name")), &url) < 0)
				return -ENOMEM;
			json_array_set_new(list, i, json_string(url));
		}
	}
	return lxmd_respond_sync(r, TAKE_PTR(list), NULL);
}

/* The writable part of a snapshot (what PUT replaces), hashed for ETag/If-Match. */
static int snapshot_etag(const struct lxm_db_snapshot *s, char etag[65])
{
	_cleanup_json_ json_t *j =
		json_pack("{s:s, s:o}", "description", s->description ? s->description : "",
			  "expires_at", timestamp(s->expires_at));

	return j ? lxmd_etag(j, etag) : -ENOMEM;
}

static int get_snapshot(struct lxmd_request *r, struct lxm_db_instance **ret_inst,
			struct lxm_db_snapshot **ret, struct lxm_error **err)
{
	int k = get_instance(r, ret_inst, err);

	if (k < 0)
		return k;
	return lxm_db_snapshot_get(r->d->db, r->args[0], r->args[1], ret, err);
}

int lxmd_api_instance_snapshot_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_db_snapshot_ struct lxm_db_snapshot *s = NULL;
	json_t *j = NULL;
	char etag[65];
	int k;

	if ((k = get_snapshot(r, &inst, &s, err)) < 0 ||
	    (k = snapshot_json(r->d, inst, s, &j, err)) < 0)
		return k;
	if ((k = snapshot_etag(s, etag)) < 0) {
		json_decref(j);
		return k;
	}
	return lxmd_respond_sync(r, j, etag);
}

/* ---- take ---- */

/* A snapshot, rename, delete or restore in progress: the files on the thread pool, the rows on
 * the loop thread. */
struct snap_job {
	uv_work_t work;		      /* libuv's */
	struct lxmd *d;		      /* the daemon */
	struct lxm_operation *op;     /* reports the result */
	struct lxm_pool *pool;	      /* the pool holding the instance's volume */
	struct lxm_db_snapshot *s;    /* the snapshot (create: recorded once its files are in) */
	struct lxm_db_instance *inst; /* restore: the instance as the snapshot makes it */
	struct lxm_db_instance *old;  /* restore: the instance as it was, to put back */
	char *new_name;		      /* rename: the snapshot's new name */
	bool freeze;		      /* create: freeze the running instance around the copy */
	bool vm;		      /* the instance is a virtual machine */
	bool busy;		      /* holds the instance's busy mark */
	bool scheduled;		      /* the scheduler's: expired snapshots are looked for after */
	bool restart;		      /* restore: it ran; stopped first, started again after */
	bool starting;		      /* restore: the start after the files is under way */
	int result;		      /* 0 or -errno, set by the worker */
	struct lxm_error *err;	      /* the worker's error */
};

static void snap_job_free(void *p)
{
	struct snap_job *j = p;

	if (!j)
		return;
	if (j->busy)
		lxmd_snapshot_busy_release(j->s->instance);
	lxm_db_snapshot_free(j->s);
	lxm_db_instance_free(j->inst);
	lxm_db_instance_free(j->old);
	free(j->new_name);
	lxm_error_free(j->err);
	free(j);
}

/* A job for snapshot s of inst, holding the instance's busy mark. */
static int snap_job_new(struct lxmd *d, const struct lxm_db_instance *inst,
			struct lxm_db_snapshot *s, struct snap_job **ret, struct lxm_error **err)
{
	struct snap_job *j = calloc(1, sizeof(*j));
	int k;

	if (!j)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	j->d = d;
	j->s = s;
	k = lxmd_instance_pool(d, inst->name, &j->pool, err);
	if (k >= 0 && lxmd_snapshot_busy_take(inst->name) < 0)
		k = lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (k < 0) {
		j->s = NULL;
		snap_job_free(j);
		return k;
	}
	j->busy = true;
	*ret = j;
	return 0;
}

/* Ends the job's operation; the instance is free for other snapshot work from now on (the
 * operation itself is kept a while for its clients). Consumes err. */
static void job_finish(struct snap_job *j, struct lxm_error *err)
{
	_cleanup_free_ char *instance = NULL;

	if (j->busy) {
		lxmd_snapshot_busy_release(j->s->instance);
		j->busy = false;
	}
	/* The instance is free again: the scheduler's next expired snapshot of it may go (not
	 * after a failure, which would only repeat). */
	if (j->scheduled && !err)
		instance = strdup(j->s->instance);
	lxm_operation_finish(j->op, err);
	if (instance)
		lxmd_snapshot_expire(j->d, instance);
}

/* Ends the job with the worker's error, prefixed with what failed. */
static void job_failed(struct snap_job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void job_failed(struct snap_job *j, const char *fmt, ...)
{
	struct lxm_error *err = NULL;
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	lxm_error_set(&err, j->result, j->err ? j->err->status : 500, "%s: %s", what,
		      j->err ? j->err->msg : strerror(-j->result));
	job_finish(j, err);
}

static void create_work(uv_work_t *w)
{
	struct snap_job *j = w->data;
	struct lxm_error *terr = NULL;
	bool frozen = false;
	int k = 0;

	if (j->freeze) {
		k = lxmd_instance_freeze_for_copy(j->d, j->s->instance, j->vm, true, &j->err);
		/* An instance that stopped meanwhile has no cgroup, and nothing to freeze. */
		if (k == -ENOENT) {
			lxm_error_free(TAKE_PTR(j->err));
			k = 0;
		} else if (k < 0) {
			lxm_error_prefix(&j->err, "freeze");
		} else {
			frozen = true;
		}
	}
	if (k >= 0)
		k = lxmd_volume_snapshot(j->pool, j->s->instance, j->s->name, &j->s->size, &j->err);
	/* Thawed whatever happened: a failed snapshot must not leave the instance frozen. */
	if (frozen &&
	    lxmd_instance_freeze_for_copy(j->d, j->s->instance, j->vm, false, &terr) < 0) {
		if (k >= 0) {
			lxm_error_free(j->err);
			j->err = TAKE_PTR(terr);
			k = lxm_error_prefix(&j->err, "thaw");
			/* Complete, but the operation failed: it does not stay. */
			lxmd_volume_snapshot_delete(j->pool, j->s->instance, j->s->name, NULL);
		}
		lxm_error_free(terr);
	}
	j->result = k;
}

/* Thread pool: removes the files of a snapshot that could not be recorded. */
static void discard_work(uv_work_t *w)
{
	struct snap_job *j = w->data;

	j->result = lxmd_volume_snapshot_delete(j->pool, j->s->instance, j->s->name, &j->err);
}

static void discard_done(uv_work_t *w, int status)
{
	struct snap_job *j = w->data;

	(void)status;
	if (j->result < 0)
		log_error("snapshot '%s/%s': remove the files of the unrecorded snapshot: %s",
			  j->s->instance, j->s->name, j->err ? j->err->msg : strerror(-j->result));
	snap_job_free(j);
}

/* Removes the files of snapshot s in the background (the job's operation has ended). */
static void discard(struct snap_job *j)
{
	struct snap_job *dj = calloc(1, sizeof(*dj));

	if (!dj || !(dj->s = calloc(1, sizeof(*dj->s))) ||
	    !(dj->s->instance = strdup(j->s->instance)) || !(dj->s->name = strdup(j->s->name))) {
		snap_job_free(dj);
		log_error("snapshot '%s/%s': out of memory: its files stay", j->s->instance,
			  j->s->name);
		return;
	}
	dj->d = j->d;
	dj->pool = j->pool;
	dj->work.data = dj;
	if (uv_queue_work(j->d->loop, &dj->work, discard_work, discard_done) < 0) {
		log_error("snapshot '%s/%s': cannot queue the removal of its files", j->s->instance,
			  j->s->name);
		snap_job_free(dj);
	}
}

static void create_done(uv_work_t *w, int status)
{
	struct snap_job *j = w->data;
	struct lxm_error *err = NULL;
	const struct lxm_db_snapshot *s = j->s;

	(void)status;
	if (j->result < 0) {
		job_failed(j, "snapshot '%s/%s'", s->instance, s->name);
		return;
	}
	/* The files are complete: now the snapshot exists. A failure to record it takes them
	 * away again. */
	if (lxm_db_snapshot_create(j->d->db, s, &err) < 0) {
		discard(j);
		job_finish(j, err);
		return;
	}
	lifecycle(j->d, "instance-snapshot-created", s->instance, s->name);
	job_finish(j, NULL);
}

static int queue(struct snap_job *j, struct lxm_operation *op, uv_work_cb work,
		 uv_after_work_cb done, struct lxm_error **err)
{
	int k;

	j->op = op;
	j->work.data = j;
	k = uv_queue_work(j->d->loop, &j->work, work, done);
	if (k < 0) {
		lxmd_snapshot_busy_release(j->s->instance);
		j->busy = false;
		return lxm_error_set(err, k, 500, "queue work: %s", uv_strerror(k));
	}
	return 0;
}

static int create_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	return queue(data, op, create_work, create_done, err);
}

/* The name snapshots.pattern (LXD's default "snap%d") gives the instance's next snapshot. */
static int next_name(struct lxmd *d, const char *instance, const char *pattern, char **ret,
		     struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	int k;

	k = lxm_db_instance_snapshot_names(d->db, instance, &names, err);
	if (k < 0)
		return k;
	k = lxm_snapshot_pattern_name(pattern, names, ret, err);
	if (k < 0)
		return lxm_error_prefix(err, "snapshot '%s'", instance);
	return 0;
}

/* A snapshot name: like an instance's, which also keeps '/' and dot files out. */
static int check_name(const char *instance, const char *name, struct lxm_error **err)
{
	const char *reason = lxm_name_invalid_reason(name);

	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "snapshot '%s/%s': invalid name: %s",
				     instance, name, reason);
	return 0;
}

/* The job's own copy of what the instance is now: its snapshot's config, devices, profiles. */
static int snapshot_of(const struct lxm_db_instance *inst, const char *name,
		       struct lxm_db_snapshot **ret)
{
	_cleanup_db_snapshot_ struct lxm_db_snapshot *s = calloc(1, sizeof(*s));

	if (!s || !(s->instance = strdup(inst->name)) || !(s->name = strdup(name)) ||
	    !(s->description = strdup("")) ||
	    !(s->config = inst->config ? json_deep_copy(inst->config) : json_object()) ||
	    !(s->devices = inst->devices ? json_deep_copy(inst->devices) : json_object()) ||
	    !(s->profiles = inst->profiles ? json_deep_copy(inst->profiles) : json_array()))
		return -ENOMEM;
	s->created_at = lxm_now_ns();
	s->size = -1;
	*ret = TAKE_PTR(s);
	return 0;
}

/* Starts the snapshot of inst named name (NULL or "": by snapshots.pattern) expiring at
 * expires_at (-1: by snapshots.expiry), as an operation; *ret_op is borrowed. */
static int snapshot_start(struct lxmd *d, const struct lxm_db_instance *inst, const char *name,
			  int64_t expires_at, bool scheduled, struct lxm_operation **ret_op,
			  struct lxm_error **err)
{
	_cleanup_db_snapshot_ struct lxm_db_snapshot *s = NULL, *old = NULL;
	_cleanup_json_ json_t *xconfig = NULL, *xdevices = NULL;
	_cleanup_free_ char *autoname = NULL;
	struct lxm_operation *op = NULL;
	const char *expiry;
	struct snap_job *j;
	int code, k;

	if ((k = lxmd_instance_expand(d, inst, &xconfig, &xdevices, err)) < 0)
		return lxm_error_prefix(err, "snapshot '%s'", inst->name);
	if (!name || !*name) {
		k = next_name(d, inst->name,
			      json_string_value(json_object_get(xconfig, "snapshots.pattern")),
			      &autoname, err);
		if (k < 0)
			return k;
		name = autoname;
	}
	if ((k = check_name(inst->name, name, err)) < 0)
		return k;
	k = lxm_db_snapshot_get(d->db, inst->name, name, &old, NULL);
	if (k >= 0)
		return lxm_error_set(err, -EEXIST, 409, "snapshot '%s/%s' already exists",
				     inst->name, name);
	if (lxmd_snapshot_busy(inst->name))
		return lxm_error_set(err, -EBUSY, 409,
				     "snapshot '%s/%s': another snapshot or restore of '%s' is "
				     "under way; retry when it ends",
				     inst->name, name, inst->name);
	if (snapshot_of(inst, name, &s) < 0)
		return -ENOMEM;
	expiry = json_string_value(json_object_get(xconfig, "snapshots.expiry"));
	if (expires_at < 0 && expiry && *expiry) {
		struct lxm_expiry e;

		if (lxm_expiry_parse(expiry, &e, err) < 0)
			return lxm_error_prefix(err, "snapshot '%s/%s': snapshots.expiry",
						inst->name, name);
		expires_at = lxm_expiry_none(&e) ? 0 : lxm_expiry_add(&e, s->created_at);
	}
	s->expires_at = expires_at < 0 ? 0 : expires_at;
	if ((k = snap_job_new(d, inst, s, &j, err)) < 0)
		return lxm_error_prefix(err, "snapshot '%s/%s'", inst->name, name);
	s = NULL;
	j->scheduled = scheduled;
	/* Frozen by its user, it stays frozen; running, it is frozen for the copy only. A VM is
	 * paused: QEMU flushes its disks first, so the copy is what a power cut would leave. */
	lxmd_instance_status(d, inst->name, &code);
	j->freeze = code == LXM_STATUS_RUNNING;
	j->vm = inst->type && streq(inst->type, "virtual-machine");
	k = lxm_operation_new(d->ops, LXM_OP_TASK, "Snapshotting instance",
			      resources_for(inst->name, name), create_run, NULL, j, snap_job_free,
			      &op);
	if (k < 0) {
		snap_job_free(j);
		return lxm_error_setx(err, k, 500, "snapshot '%s/%s': new operation", inst->name,
				      name);
	}
	lxm_operation_start(op);
	*ret_op = op;
	return 0;
}

int lxmd_snapshot_take(struct lxmd *d, const char *instance, const char *name, int64_t expires_at,
		       bool scheduled, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	struct lxm_operation *op;
	int k;

	if ((k = lxm_db_instance_get(d->db, instance, &inst, err)) < 0)
		return k;
	return snapshot_start(d, inst, name, expires_at, scheduled, &op, err);
}

int lxmd_api_instance_snapshots_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	const char *name = NULL;
	struct lxm_operation *op = NULL;
	bool stateful = false;
	/* Absent or null (what lxc sends without --no-expiry): snapshots.expiry decides; a time
	 * (the zero time is never: --no-expiry) wins. */
	int64_t expires_at = -1;
	int k;

	if ((k = get_instance(r, &inst, err)) < 0)
		return k;
	if (r->body && ((k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
			(k = lxm_json_opt_bool(r->body, "stateful", &stateful, err)) < 0 ||
			(!json_is_null(json_object_get(r->body, "expires_at")) &&
			 (k = opt_expires_at(r->body, "snapshot", &expires_at, err)) < 0)))
		return lxm_error_prefix(err, "snapshot '%s'", inst->name);
	if (stateful)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "snapshot '%s': stateful snapshots (CRIU) are not supported",
				     inst->name);
	if ((k = snapshot_start(r->d, inst, name, expires_at, false, &op, err)) < 0)
		return k;
	return lxmd_respond_async(r, op);
}

/* ---- edit, rename, delete ---- */

/* An operation that is complete when the reply goes out (LXD answers these with one). */
static int respond_done(struct lxmd_request *r, const char *description, const char *snap)
{
	struct lxm_operation *op = NULL;
	int k;

	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, description, resources_for(r->args[0], snap),
			      NULL, NULL, NULL, NULL, &op);
	if (k < 0)
		return k;
	lxm_operation_start(op);
	lxm_operation_finish(op, NULL);
	return lxmd_respond_async(r, op);
}

/* PUT replaces description and expires_at; PATCH changes those it names. */
static int snapshot_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_db_snapshot_ struct lxm_db_snapshot *s = NULL;
	const char *desc = NULL;
	char etag[65];
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "update snapshot '%s/%s': request body is empty", r->args[0],
				     r->args[1]);
	if ((k = get_snapshot(r, &inst, &s, err)) < 0 || (k = snapshot_etag(s, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0)
		return lxm_error_prefix(err, "update snapshot '%s/%s'", inst->name, s->name);
	if (!patch)
		s->expires_at = 0;
	if ((k = lxm_json_opt_string(r->body, "description", &desc, err)) < 0 ||
	    (k = opt_expires_at(r->body, "update snapshot", &s->expires_at, err)) < 0)
		return lxm_error_prefix(err, "update snapshot '%s/%s'", inst->name, s->name);
	if (desc || !patch) {
		free(s->description);
		s->description = strdup(desc ? desc : "");
		if (!s->description)
			return -ENOMEM;
	}
	if ((k = lxm_db_snapshot_update(r->d->db, inst->name, s->name, s, err)) < 0)
		return k;
	lifecycle(r->d, "instance-snapshot-updated", inst->name, s->name);
	return respond_done(r, "Updating snapshot", s->name);
}

int lxmd_api_instance_snapshot_put(struct lxmd_request *r, struct lxm_error **err)
{
	return snapshot_update(r, false, err);
}

int lxmd_api_instance_snapshot_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return snapshot_update(r, true, err);
}

static void rename_work(uv_work_t *w)
{
	struct snap_job *j = w->data;

	j->result = lxmd_volume_snapshot_rename(j->pool, j->s->instance, j->s->name, j->new_name,
						&j->err);
}

static void rename_done(uv_work_t *w, int status)
{
	struct snap_job *j = w->data;
	struct lxm_error *uerr = NULL;

	(void)status;
	if (j->result < 0) {
		/* The row was renamed first: it goes back, so that row and files match. */
		if (lxm_db_snapshot_rename(j->d->db, j->s->instance, j->new_name, j->s->name,
					   &uerr) < 0)
			log_error("rename snapshot '%s/%s' back: %s", j->s->instance, j->s->name,
				  uerr->msg);
		lxm_error_free(uerr);
		job_failed(j, "rename snapshot '%s/%s'", j->s->instance, j->s->name);
		return;
	}
	lifecycle(j->d, "instance-snapshot-renamed", j->s->instance, j->new_name);
	job_finish(j, NULL);
}

static int rename_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	return queue(data, op, rename_work, rename_done, err);
}

/* POST {"name": "new"}: a rename; {"migration": true}: the source of a transfer to another lxmd
 * (api-migration.c). */
int lxmd_api_instance_snapshot_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_db_snapshot_ struct lxm_db_snapshot *s = NULL, *other = NULL;
	struct lxm_operation *op = NULL;
	const char *name = NULL;
	bool migration = false;
	struct snap_job *j;
	int k;

	if ((k = get_snapshot(r, &inst, &s, err)) < 0)
		return k;
	if (r->body && ((k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
			(k = lxm_json_opt_bool(r->body, "migration", &migration, err)) < 0))
		return lxm_error_prefix(err, "rename snapshot '%s/%s'", inst->name, s->name);
	if (migration)
		return lxmd_migration_source(r, inst->name, s->name, err);
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400,
				     "rename snapshot '%s/%s': field 'name' (the new name) is "
				     "required",
				     inst->name, s->name);
	if ((k = check_name(inst->name, name, err)) < 0)
		return k;
	if (lxm_db_snapshot_get(r->d->db, inst->name, name, &other, NULL) >= 0)
		return lxm_error_set(err, -EEXIST, 409, "snapshot '%s/%s' already exists",
				     inst->name, name);
	if (lxmd_snapshot_busy(inst->name))
		return lxm_error_set(err, -EBUSY, 409,
				     "rename snapshot '%s/%s': a snapshot or restore of '%s' is "
				     "under way; retry when it ends",
				     inst->name, s->name, inst->name);
	if ((k = snap_job_new(r->d, inst, s, &j, err)) < 0)
		return lxm_error_prefix(err, "rename snapshot '%s/%s'", inst->name, s->name);
	s = NULL;
	if (!(j->new_name = strdup(name))) {
		snap_job_free(j);
		return -ENOMEM;
	}
	/* The row first (it claims the new name), then the files; a failure renames it back. */
	k = lxm_db_snapshot_rename(r->d->db, inst->name, j->s->name, name, err);
	if (k >= 0)
		k = lxm_operation_new(r->d->ops, LXM_OP_TASK, "Renaming snapshot",
				      resources_for(inst->name, name), rename_run, NULL, j,
				      snap_job_free, &op);
	if (k < 0) {
		snap_job_free(j);
		return lxm_error_prefix(err, "rename snapshot '%s/%s'", inst->name, name);
	}
	lxm_operation_start(op);
	return lxmd_respond_async(r, op);
}

static void delete_work(uv_work_t *w)
{
	struct snap_job *j = w->data;

	j->result = lxmd_volume_snapshot_delete(j->pool, j->s->instance, j->s->name, &j->err);
}

static void delete_done(uv_work_t *w, int status)
{
	struct snap_job *j = w->data;
	struct lxm_error *err = NULL;

	(void)status;
	if (j->result < 0) {
		job_failed(j, "delete snapshot '%s/%s'", j->s->instance, j->s->name);
		return;
	}
	/* The row goes last: a delete that failed half-way can be repeated. */
	if (lxm_db_snapshot_delete(j->d->db, j->s->instance, j->s->name, &err) < 0) {
		job_finish(j, err);
		return;
	}
	lifecycle(j->d, "instance-snapshot-deleted", j->s->instance, j->s->name);
	job_finish(j, NULL);
}

static int delete_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	return queue(data, op, delete_work, delete_done, err);
}

/* Starts the deletion of snapshot s (consumed) of instance inst as an operation; *ret_op is
 * borrowed. */
static int delete_start(struct lxmd *d, const struct lxm_db_instance *inst,
			struct lxm_db_snapshot *s, bool scheduled, struct lxm_operation **ret_op,
			struct lxm_error **err)
{
	struct lxm_operation *op = NULL;
	struct snap_job *j;
	int k;

	if (lxmd_snapshot_busy(inst->name)) {
		k = lxm_error_set(err, -EBUSY, 409,
				  "delete snapshot '%s/%s': a snapshot or restore of '%s' is "
				  "under way; retry when it ends",
				  inst->name, s->name, inst->name);
		lxm_db_snapshot_free(s);
		return k;
	}
	if ((k = snap_job_new(d, inst, s, &j, err)) < 0) {
		lxm_error_prefix(err, "delete snapshot '%s/%s'", inst->name, s->name);
		lxm_db_snapshot_free(s);
		return k;
	}
	j->scheduled = scheduled;
	k = lxm_operation_new(d->ops, LXM_OP_TASK, "Deleting snapshot",
			      resources_for(inst->name, j->s->name), delete_run, NULL, j,
			      snap_job_free, &op);
	if (k < 0) {
		lxm_error_setx(err, k, 500, "delete snapshot '%s/%s': new operation", inst->name,
			       j->s->name);
		snap_job_free(j);
		return k;
	}
	lxm_operation_start(op);
	*ret_op = op;
	return 0;
}

int lxmd_snapshot_delete_expired(struct lxmd *d, const char *instance, const char *name,
				 struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	struct lxm_db_snapshot *s = NULL;
	struct lxm_operation *op;
	int k;

	if ((k = lxm_db_instance_get(d->db, instance, &inst, err)) < 0 ||
	    (k = lxm_db_snapshot_get(d->db, instance, name, &s, err)) < 0)
		return k;
	return delete_start(d, inst, s, true, &op, err);
}

int lxmd_api_instance_snapshot_delete(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	struct lxm_db_snapshot *s = NULL;
	struct lxm_operation *op = NULL;
	int k;

	if ((k = get_snapshot(r, &inst, &s, err)) < 0 ||
	    (k = delete_start(r->d, inst, s, false, &op, err)) < 0)
		return k;
	return lxmd_respond_async(r, op);
}

/* ---- restore ---- */

static void restore_work(uv_work_t *w);
static void restore_done(uv_work_t *w, int status);
static void restore_step_done(struct lxm_operation *sub, bool timed_out, void *data);

/* Runs a stop (forced: the files are replaced anyway) or a start of the restored instance in an
 * operation of its own, as a user's would be, and carries on in restore_step_done(). */
static int restore_step(struct snap_job *j, const char *action, struct lxm_error **err)
{
	const char *name = j->s->instance;
	struct lxm_operation *sub = NULL;
	struct lxm_error *copy = NULL;
	int k;

	k = lxm_operation_new(j->d->ops, LXM_OP_TASK,
			      streq(action, "stop") ? "Stopping instance" : "Starting instance",
			      json_pack("{s:[s+]}", "instances", "/1.0/instances/", name), NULL,
			      NULL, NULL, NULL, &sub);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "%s '%s': new operation", action, name);
	lxm_operation_start(sub);
	k = lxmd_instance_change_state(j->d, name, action, -1, streq(action, "stop"), sub, err);
	if (k < 0) {
		lxm_error_set(&copy, -(*err)->errnum, (*err)->status, "%s", (*err)->msg);
		lxm_operation_finish(sub, copy);
		return lxm_error_prefix(err, "%s '%s'", action, name);
	}
	j->starting = streq(action, "start");
	k = lxm_operation_wait(sub, -1, restore_step_done, j, NULL);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "%s '%s': wait for it", action, name);
	return 0;
}

/* With the instance stopped: records the snapshot's config, then restores the files on the
 * thread pool (a failed restore puts the old config back). */
static int restore_files(struct snap_job *j, struct lxm_error **err)
{
	int k;

	k = lxm_db_instance_update(j->d->db, j->s->instance, j->inst, err);
	if (k < 0)
		return lxm_error_prefix(err, "restore '%s' from snapshot '%s'", j->s->instance,
					j->s->name);
	k = queue(j, j->op, restore_work, restore_done, err);
	if (k < 0)
		lxm_db_instance_update(j->d->db, j->s->instance, j->old, NULL);
	return k;
}

static void restore_step_done(struct lxm_operation *sub, bool timed_out, void *data)
{
	struct snap_job *j = data;
	_cleanup_json_ json_t *o = NULL;
	struct lxm_error *err = NULL;

	if (!sub)
		return; /* the operations are being torn down */
	o = lxm_operation_to_json(sub);
	if (lxm_operation_status(sub) != 200) {
		lxm_error_set(&err, -EIO, 500, "restore '%s' from snapshot '%s': %s: %s",
			      j->s->instance, j->s->name,
			      j->starting ? "start it again" : "stop it",
			      json_string_value(json_object_get(o, "err")));
		job_finish(j, err);
	} else if (j->starting) {
		job_finish(j, NULL);
	} else if (restore_files(j, &err) < 0) {
		job_finish(j, err);
	}
	(void)timed_out;
}

static void restore_work(uv_work_t *w)
{
	struct snap_job *j = w->data;

	j->result = lxmd_volume_restore(j->pool, j->s->instance, j->s->name, &j->err);
}

static void restore_done(uv_work_t *w, int status)
{
	struct snap_job *j = w->data;
	const struct lxm_db_snapshot *s = j->s;
	struct lxm_error *uerr = NULL;
	_cleanup_free_ char *url = NULL;

	(void)status;
	if (j->result < 0) {
		/* The config was restored first: the old one goes back, so that files and
		 * config always match. */
		if (lxm_db_instance_update(j->d->db, s->instance, j->old, &uerr) < 0)
			log_error("restore '%s': put the old config back: %s", s->instance,
				  uerr->msg);
		lxm_error_free(uerr);
		/* It ran before: it runs again, on its old files and config. */
		if (j->restart && lxmd_instance_change_state(j->d, s->instance, "start", -1, false,
							     NULL, &uerr) < 0)
			log_error("restore '%s': start it again: %s", s->instance, uerr->msg);
		lxm_error_free(uerr);
		job_failed(j, "restore '%s' from snapshot '%s'", s->instance, s->name);
		return;
	}
	if (asprintf(&url, "/1.0/instances/%s", s->instance) >= 0)
		lxm_events_lifecycle(j->d->events, "instance-restored", url,
				     json_pack("{s:s}", "snapshot", s->name));
	if (j->restart && restore_step(j, "start", &uerr) < 0) {
		job_finish(j, uerr);
		return;
	}
	if (!j->restart)
		job_finish(j, NULL);
}

static int restore_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct snap_job *j = data;

	j->op = op;
	/* A running instance is stopped first and started again after, as LXD does. */
	return j->restart ? restore_step(j, "stop", err) : restore_files(j, err);
}

/* The instance as restoring s makes it: its config, devices and profiles are the snapshot's. */
static int restored_instance(const struct lxm_db_instance *inst, const struct lxm_db_snapshot *s,
			     struct lxm_db_instance **ret)
{
	_cleanup_db_instance_ struct lxm_db_instance *n = calloc(1, sizeof(*n));

	if (!n || !(n->name = strdup(inst->name)) || !(n->type = strdup(inst->type)) ||
	    !(n->architecture = strdup(inst->architecture ? inst->architecture : "")) ||
	    !(n->description = strdup(inst->description ? inst->description : "")))
		return -ENOMEM;
	n->ephemeral = inst->ephemeral;
	n->created_at = inst->created_at;
	n->last_used_at = inst->last_used_at;
	n->config = or_empty(s->config, JSON_OBJECT);
	n->devices = or_empty(s->devices, JSON_OBJECT);
	n->profiles = or_empty(s->profiles, JSON_ARRAY);
	*ret = TAKE_PTR(n);
	return 0;
}

int lxmd_snapshot_restore(struct lxmd_request *r, const struct lxm_db_instance *inst,
			  const char *restore, struct lxm_error **err)
{
	_cleanup_db_snapshot_ struct lxm_db_snapshot *s = NULL;
	_cleanup_json_ json_t *xconfig = NULL, *xdevices = NULL;
	const char *slash = strchr(restore, '/'), *name = slash ? slash + 1 : restore, *status;
	struct lxm_operation *op = NULL;
	struct snap_job *j;
	int code, k;

	/* lxc sends "c1/snap0", pylxd "snap0". */
	if (slash && ((size_t)(slash - restore) != strlen(inst->name) ||
		      strncmp(restore, inst->name, strlen(inst->name)) != 0))
		return lxm_error_set(err, -EINVAL, 400,
				     "restore '%s': snapshot '%s' is not one of its snapshots",
				     inst->name, restore);
	k = lxm_db_snapshot_get(r->d->db, inst->name, name, &s, err);
	if (k < 0)
		return lxm_error_prefix(err, "restore '%s'", inst->name);
	status = lxmd_instance_status(r->d, inst->name, &code);
	if (!streq(status, "Stopped") && !streq(status, "Running"))
		return lxm_error_set(err, -EBUSY, 400,
				     "restore '%s' from snapshot '%s': the instance is %s; stop "
				     "it or wait until it runs",
				     inst->name, name, status);
	if (lxmd_snapshot_busy(inst->name))
		return lxm_error_set(err, -EBUSY, 409,
				     "restore '%s' from snapshot '%s': a snapshot or restore of "
				     "it is under way; retry when it ends",
				     inst->name, name);
	if ((k = snap_job_new(r->d, inst, s, &j, err)) < 0)
		return lxm_error_prefix(err, "restore '%s' from snapshot '%s'", inst->name, name);
	s = NULL;
	j->restart = streq(status, "Running");
	if (restored_instance(inst, j->s, &j->inst) < 0 ||
	    restored_instance(inst,
			      &(struct lxm_db_snapshot){ .config = inst->config,
							 .devices = inst->devices,
							 .profiles = inst->profiles },
			      &j->old) < 0) {
		snap_job_free(j);
		return -ENOMEM;
	}
	/* Checked before any file moves: a config the policy refuses restores nothing. */
	if ((k = lxmd_instance_expand(r->d, j->inst, &xconfig, &xdevices, err)) < 0 ||
	    (k = lxmd_instance_apply_config(r->d, inst->name, xconfig, false, err)) < 0) {
		snap_job_free(j);
		return lxm_error_prefix(err, "restore '%s' from snapshot '%s'", inst->name, name);
	}
	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, "Restoring snapshot",
			      resources_for(inst->name, name), restore_run, NULL, j, snap_job_free,
			      &op);
	if (k < 0) {
		snap_job_free(j);
		return lxm_error_setx(err, k, 500, "restore '%s': new operation", inst->name);
	}
	lxm_operation_start(op);
	return lxmd_respond_async(r, op);
}
