/* The daemon's storage pools: the table of open pools, start-up mounting, and the create, update,
 * delete and usage flows (driver calls on the thread pool, database rows on the loop thread). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <uv.h>

#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "json.h"
#include "log.h"
#include "pools.h"
#include "storage/storage.h"
#include "util.h"

/* Config keys a driver applies when it creates the pool and that cannot change afterwards: the
 * backing store and its size (lxm does not grow or move a pool). */
static const char *const fixed_keys[] = { "source", "size", "btrfs.mount_options" };

enum pool_state {
	POOL_READY,	  /* mounted, usable */
	POOL_UNAVAILABLE, /* failed to open or mount at start-up: cause says why */
	POOL_CREATING,	  /* the driver is creating it; not in the database yet */
	POOL_DELETING,	  /* the driver is removing it */
};

struct pool_entry {
	struct lxm_pool *pool;	 /* the open pool (name, driver, path, config) */
	enum pool_state state;	 /* see enum pool_state */
	struct lxm_error *cause; /* why it is unavailable, or NULL */
	unsigned holds;		 /* jobs holding it (lxmd_pool_hold()): no delete, no update */
	struct pool_entry *next; /* the next pool of the table */
	char *name;		 /* its name (also when pool could not be opened) */
	char *driver;		 /* its driver's name, as recorded */
};

struct lxmd_pools {
	char *dir;		 /* ROOT/storage-pools */
	json_t *drivers;	 /* GET /1.0's storage_supported_drivers */
	struct pool_entry *list; /* every pool, in no particular order */
};

static void entry_free(struct pool_entry *e)
{
	if (!e)
		return;
	lxm_pool_free(e->pool);
	lxm_error_free(e->cause);
	free(e->name);
	free(e->driver);
	free(e);
}

static struct pool_entry *entry_find(struct lxmd *d, const char *name)
{
	for (struct pool_entry *e = d->pools ? d->pools->list : NULL; e; e = e->next)
		if (streq(e->name, name))
			return e;
	return NULL;
}

static void entry_remove(struct lxmd *d, struct pool_entry *e)
{
	for (struct pool_entry **pe = &d->pools->list; *pe; pe = &(*pe)->next)
		if (*pe == e) {
			*pe = e->next;
			entry_free(e);
			return;
		}
}

static struct pool_entry *entry_add(struct lxmd *d, const char *name, const char *driver)
{
	struct pool_entry *e = calloc(1, sizeof(*e));

	if (!e || !(e->name = strdup(name)) || !(e->driver = strdup(driver))) {
		entry_free(e);
		return NULL;
	}
	e->next = d->pools->list;
	d->pools->list = e;
	return e;
}

const char *lxmd_pool_name_invalid_reason(const char *name)
{
	if (!name || !*name)
		return "the name is empty";
	if (strlen(name) > 63)
		return "the name is longer than 63 characters";
	if (name[0] == '-' || name[0] == '.')
		return "the name must not start with '-' or '.'";
	for (const char *s = name; *s; s++)
		if (!isascii((unsigned char)*s) ||
		    !(isalnum((unsigned char)*s) || *s == '-' || *s == '_' || *s == '.'))
			return "the name may only contain letters, digits, '-', '_' and '.'";
	return NULL;
}

static json_t *supported_drivers(void);

/* ---- start-up ---- */

/* At start-up: what work an earlier lxmd did not finish left in the pool goes (logged: an
 * administrator may wonder where a directory went). */
static void sweep(struct lxm_pool *p)
{
	_cleanup_strv_ char **removed = NULL;
	struct lxm_error *err = NULL;

	if (lxm_pool_sweep(p, &removed, &err) < 0)
		log_warn("%s", err->msg);
	for (char **r = removed; r && *r; r++)
		log_warn("storage pool '%s': removing %s (unfinished work of an earlier lxmd)",
			 p->name, *r);
	lxm_error_free(err);
}

/* Opens and mounts one pool of the database; a failure marks it unavailable with the cause. */
static int pool_load(struct lxmd *d, const char *name)
{
	_cleanup_db_storage_pool_ struct lxm_db_storage_pool *row = NULL;
	struct lxm_error *err = NULL;
	struct pool_entry *e;
	int k;

	k = lxm_db_storage_pool_get(d->db, name, &row, &err);
	if (k < 0) {
		log_error("storage pool '%s': %s", name, err ? err->msg : strerror(-k));
		lxm_error_free(err);
		return k;
	}
	e = entry_add(d, name, row->driver);
	if (!e)
		return -ENOMEM;
	k = lxm_pool_new(d->pools->dir, name, row->driver, row->config, &e->pool, &err);
	if (k >= 0)
		k = lxm_pool_mount(e->pool, &err);
	if (k < 0) {
		if (!err)
			lxm_error_setx(&err, k, 500, "storage pool '%s'", name);
		e->state = POOL_UNAVAILABLE;
		e->cause = err;
		log_error("storage pool '%s' (%s) is unavailable: %s", name, row->driver, err->msg);
		return 0;
	}
	e->state = POOL_READY;
	log_info("storage pool '%s' (%s) mounted at %s", name, row->driver, e->pool->path);
	sweep(e->pool);
	return 0;
}

int lxmd_pools_init(struct lxmd *d, struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	int k;

	d->pools = calloc(1, sizeof(*d->pools));
	if (!d->pools || asprintf(&d->pools->dir, "%s/storage-pools", d->cfg.root) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "storage pools: out of memory");
	d->pools->drivers = supported_drivers();
	if (!d->pools->drivers)
		return lxm_error_set(err, -ENOMEM, 500, "storage pools: out of memory");
	k = lxm_mkdir_p(d->pools->dir, 0711);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "storage pools: create %s", d->pools->dir);
	k = lxm_db_storage_pool_names(d->db, &names, err);
	if (k < 0)
		return lxm_error_prefix(err, "storage pools");
	for (char **n = names; n && *n; n++) {
		k = pool_load(d, *n);
		if (k < 0)
			return lxm_error_setx(err, k, 500, "storage pool '%s': load", *n);
	}
	return 0;
}

void lxmd_pools_fini(struct lxmd *d)
{
	if (!d->pools)
		return;
	while (d->pools->list) {
		struct pool_entry *e = d->pools->list;

		d->pools->list = e->next;
		entry_free(e);
	}
	free(d->pools->dir);
	json_decref(d->pools->drivers);
	free(d->pools);
	d->pools = NULL;
}

/* ---- lookups ---- */

/* The entry of a pool that requests may use, or the error that says why not. */
static int entry_usable(struct lxmd *d, const char *name, struct pool_entry **ret,
			struct lxm_error **err)
{
	struct pool_entry *e = entry_find(d, name);

	if (!e || e->state == POOL_CREATING)
		return lxm_error_set(err, -ENOENT, 404, "storage pool '%s' not found", name);
	if (e->state == POOL_DELETING)
		return lxm_error_set(err, -EBUSY, 409, "storage pool '%s' is being deleted", name);
	if (e->state == POOL_UNAVAILABLE)
		return lxm_error_set(err, -(e->cause->errnum ? e->cause->errnum : EIO), 503,
				     "storage pool '%s' is unavailable: %s", name, e->cause->msg);
	*ret = e;
	return 0;
}

int lxmd_pool_get(struct lxmd *d, const char *name, struct lxm_pool **ret, struct lxm_error **err)
{
	struct pool_entry *e;
	int k = entry_usable(d, name, &e, err);

	if (k < 0)
		return k;
	*ret = e->pool;
	return 0;
}

int lxmd_pool_hold(struct lxmd *d, const char *name, struct lxm_pool **ret, struct lxm_error **err)
{
	struct pool_entry *e;
	int k = entry_usable(d, name, &e, err);

	if (k < 0)
		return k;
	e->holds++;
	*ret = e->pool;
	return 0;
}

void lxmd_pool_release(struct lxmd *d, struct lxm_pool *p)
{
	for (struct pool_entry *e = d->pools ? d->pools->list : NULL; e; e = e->next)
		if (e->pool == p && e->holds > 0) {
			e->holds--;
			return;
		}
}

const char *lxmd_pool_status(struct lxmd *d, const char *name, const struct lxm_error **ret_cause)
{
	struct pool_entry *e = entry_find(d, name);

	if (ret_cause)
		*ret_cause = e ? e->cause : NULL;
	if (!e)
		return NULL;
	switch (e->state) {
	case POOL_READY:
		return "Created";
	case POOL_UNAVAILABLE:
		return "Unavailable";
	default:
		return "Pending";
	}
}

/* ---- jobs on the thread pool ---- */

enum job_kind {
	JOB_CREATE, /* lxm_pool_create */
	JOB_DELETE, /* lxm_pool_unmount + lxm_pool_delete */
	JOB_UNDO,   /* a create whose database row failed: unmount + delete, keep err */
	JOB_USAGE,  /* lxm_pool_usage + inodes */
};

struct pool_job {
	uv_work_t work;		/* the thread pool's request */
	struct lxmd *d;		/* the daemon */
	struct pool_entry *e;	/* the pool worked on */
	enum job_kind kind;	/* what the worker does */
	char *description;	/* create: recorded with the pool */
	bool was_ready;		/* delete: the pool was mounted before (remount on failure) */
	lxmd_pool_done_fn done; /* create, delete: called at the end */
	lxmd_pool_usage_fn usage_done; /* usage: called at the end */
	void *userdata;		       /* for the callback */
	struct lxmd_pool_usage usage;  /* usage: what the worker measured */
	struct lxm_error *err;	       /* the worker's failure, or NULL */
	struct lxm_error *cause;       /* delete: why the pool could not be mounted again */
};

static void job_free(struct pool_job *j)
{
	if (!j)
		return;
	free(j->description);
	lxm_error_free(j->err);
	lxm_error_free(j->cause);
	free(j);
}

static void job_work(uv_work_t *w)
{
	struct pool_job *j = w->data;
	struct lxm_pool *p = j->e->pool;
	struct lxm_error *e2 = NULL;
	struct lxm_storage_usage u;
	struct statvfs st;

	switch (j->kind) {
	case JOB_CREATE:
		lxm_pool_create(p, &j->err);
		break;
	case JOB_UNDO:
		/* j->err holds the failure being reported; the undo's own failures are logged. */
		if (lxm_pool_unmount(p, &e2) < 0 || lxm_pool_delete(p, &e2) < 0)
			log_error("storage pool '%s': undo a failed create: %s", p->name,
				  e2 ? e2->msg : "unknown error");
		lxm_error_free(e2);
		break;
	case JOB_DELETE:
		if (lxm_pool_unmount(p, &j->err) < 0)
			break;
		if (lxm_pool_delete(p, &j->err) < 0 && j->was_ready && lxm_pool_mount(p, &e2) < 0)
			j->cause = e2;
		break;
	case JOB_USAGE:
		if (lxm_pool_usage(p, &u, &j->err) < 0)
			break;
		j->usage.space_used = u.used;
		j->usage.space_total = u.total;
		if (statvfs(p->path, &st) < 0) {
			lxm_error_setx(&j->err, -errno, 500, "pool '%s': statvfs %s", p->name,
				       p->path);
			break;
		}
		j->usage.inodes_total = (uint64_t)st.f_files;
		j->usage.inodes_used = (uint64_t)(st.f_files - st.f_ffree);
		break;
	}
}

static void job_after(uv_work_t *w, int status);

static int job_start(struct pool_job *j, struct lxm_error **err)
{
	int k;

	j->work.data = j;
	k = uv_queue_work(j->d->loop, &j->work, job_work, job_after);
	if (k < 0)
		return lxm_error_set(err, -EIO, 500, "storage pool '%s': queue work: %s",
				     j->e->name, uv_strerror(k));
	return 0;
}

/* A create whose driver part succeeded: the database row makes it exist. */
static void create_record(struct pool_job *j)
{
	struct lxm_db_storage_pool row = {
		.name = j->e->name,
		.driver = j->e->driver,
		.description = j->description,
		.config = j->e->pool->config,
	};

	if (lxm_db_storage_pool_create(j->d->db, &row, &j->err) < 0) {
		/* The files must go again; the callback waits for that. */
		j->kind = JOB_UNDO;
		if (job_start(j, NULL) == 0)
			return;
		log_error("storage pool '%s': cannot undo a failed create; files are left at %s",
			  j->e->name, j->e->pool->path);
	}
	if (!j->err)
		j->e->state = POOL_READY;
	else
		entry_remove(j->d, TAKE_PTR(j->e));
	j->done(j->d, j->userdata, TAKE_PTR(j->err));
	job_free(j);
}

static void job_after(uv_work_t *w, int status)
{
	struct pool_job *j = w->data;
	struct lxmd *d = j->d;

	(void)status;
	switch (j->kind) {
	case JOB_CREATE:
		if (!j->err) {
			create_record(j);
			return;
		}
		entry_remove(d, TAKE_PTR(j->e));
		break;
	case JOB_UNDO:
		entry_remove(d, TAKE_PTR(j->e));
		break;
	case JOB_DELETE:
		if (!j->err && lxm_db_storage_pool_delete(d->db, j->e->name, &j->err) < 0)
			log_error("storage pool '%s': files removed but the database row stays: %s",
				  j->e->name, j->err ? j->err->msg : "unknown error");
		if (j->err && j->cause) {
			log_error("storage pool '%s' is unavailable after a failed delete: %s",
				  j->e->name, j->cause->msg);
			lxm_error_free(j->e->cause);
			j->e->cause = TAKE_PTR(j->cause);
			j->e->state = POOL_UNAVAILABLE;
		} else if (j->err) {
			j->e->state = j->was_ready ? POOL_READY : POOL_UNAVAILABLE;
		} else
			entry_remove(d, TAKE_PTR(j->e));
		break;
	case JOB_USAGE:
		j->e->holds--;
		j->usage_done(d, j->userdata, j->err ? NULL : &j->usage, TAKE_PTR(j->err));
		job_free(j);
		return;
	}
	j->done(d, j->userdata, TAKE_PTR(j->err));
	job_free(j);
}

/* ---- create, update, delete, usage ---- */

/* Checks a config against the driver: strings only, keys it knows, values it accepts. */
static int check_config(const struct lxm_storage_ops *ops, const char *name, json_t *config,
			struct lxm_error **err)
{
	int k = lxm_pool_validate(ops, config, err);

	if (k < 0)
		return lxm_error_prefix(err, "storage pool '%s'", name);
	return 0;
}

int lxmd_pool_create(struct lxmd *d, const char *name, const char *driver, const char *description,
		     json_t *config, lxmd_pool_done_fn done, void *userdata, struct lxm_error **err)
{
	_cleanup_json_ json_t *cfg = config ? json_deep_copy(config) : json_object();
	const struct lxm_storage_ops *ops;
	const char *reason = lxmd_pool_name_invalid_reason(name);
	struct pool_job *j;
	struct pool_entry *e;
	int k;

	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "invalid storage pool name '%s': %s",
				     name ? name : "", reason);
	if (!driver || !*driver)
		return lxm_error_set(err, -EINVAL, 400, "storage pool '%s': no driver given", name);
	ops = lxm_storage_driver(driver);
	if (!ops)
		return lxm_error_set(
			err, -EINVAL, 400,
			"storage pool '%s': unknown driver '%s' (dir, btrfs or overlay)", name,
			driver);
	if (!lxm_storage_driver_available(driver))
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "storage pool '%s': the %s driver is not available on this "
				     "host",
				     name, driver);
	if (!cfg)
		return lxm_error_set(err, -ENOMEM, 500, "storage pool '%s': out of memory", name);
	if (entry_find(d, name))
		return lxm_error_set(err, -EEXIST, 409, "storage pool '%s' already exists", name);
	k = check_config(ops, name, cfg, err);
	if (k < 0)
		return k;

	e = entry_add(d, name, driver);
	j = calloc(1, sizeof(*j));
	if (!e || !j || !(j->description = strdup(description ? description : ""))) {
		if (e)
			entry_remove(d, e);
		job_free(j);
		return lxm_error_set(err, -ENOMEM, 500, "storage pool '%s': out of memory", name);
	}
	e->state = POOL_CREATING;
	k = lxm_pool_new(d->pools->dir, name, driver, cfg, &e->pool, err);
	j->d = d;
	j->e = e;
	j->kind = JOB_CREATE;
	j->done = done;
	j->userdata = userdata;
	if (k >= 0)
		k = job_start(j, err);
	if (k < 0) {
		entry_remove(d, e);
		job_free(j);
		return k;
	}
	return 0;
}

int lxmd_pool_update(struct lxmd *d, const char *name, const char *description, json_t *config,
		     struct lxm_error **err)
{
	_cleanup_json_ json_t *cfg = config ? json_deep_copy(config) : json_object();
	struct lxm_db_storage_pool row = { .name = (char *)name };
	struct pool_entry *e = entry_find(d, name);
	int k;

	if (!e || e->state == POOL_CREATING)
		return lxm_error_set(err, -ENOENT, 404, "storage pool '%s' not found", name);
	if (e->state == POOL_DELETING)
		return lxm_error_set(err, -EBUSY, 409, "storage pool '%s' is being deleted", name);
	if (!e->pool)
		return lxm_error_set(err, -EIO, 503, "storage pool '%s' is unavailable: %s", name,
				     e->cause ? e->cause->msg : "it could not be opened");
	/* Workers read the config of the pools they hold: it is replaced only when none does. */
	if (e->holds > 0)
		return lxm_error_set(err, -EBUSY, 409,
				     "storage pool '%s' is busy (%u tasks are using it); try again "
				     "when they are done",
				     name, e->holds);
	if (!cfg)
		return lxm_error_set(err, -ENOMEM, 500, "storage pool '%s': out of memory", name);
	for (size_t i = 0; i < ARRAY_SIZE(fixed_keys); i++) {
		const char *old =
			json_string_value(json_object_get(e->pool->config, fixed_keys[i]));
		json_t *nv = json_object_get(cfg, fixed_keys[i]);

		if (!nv && old) {
			json_object_set_new(cfg, fixed_keys[i], json_string(old));
			continue;
		}
		if (nv && (!json_is_string(nv) || !old || !streq(old, json_string_value(nv))))
			return lxm_error_set(err, -EINVAL, 400,
					     "storage pool '%s': config key '%s' cannot be changed "
					     "after the pool was created (it is %s%s%s)",
					     name, fixed_keys[i], old ? "'" : "not set",
					     old ? old : "", old ? "'" : "");
	}
	k = check_config(e->pool->ops, name, cfg, err);
	if (k < 0)
		return k;
	row.driver = e->driver;
	row.description = (char *)(description ? description : "");
	row.config = cfg;
	k = lxm_db_storage_pool_update(d->db, name, &row, err);
	if (k < 0)
		return k;
	json_decref(e->pool->config);
	e->pool->config = TAKE_PTR(cfg);
	return 0;
}

int lxmd_pool_delete(struct lxmd *d, const char *name, lxmd_pool_done_fn done, void *userdata,
		     struct lxm_error **err)
{
	_cleanup_json_ json_t *users = NULL;
	struct pool_entry *e = entry_find(d, name);
	struct pool_job *j;
	int k;

	if (!e || e->state == POOL_CREATING)
		return lxm_error_set(err, -ENOENT, 404, "storage pool '%s' not found", name);
	if (e->state == POOL_DELETING)
		return lxm_error_set(err, -EBUSY, 409, "storage pool '%s' is being deleted", name);
	if (e->holds > 0)
		return lxm_error_set(err, -EBUSY, 409,
				     "storage pool '%s' is busy (%u tasks are using it); try again "
				     "when they are done",
				     name, e->holds);
	k = lxmd_pool_used_by(d, name, &users, err);
	if (k < 0)
		return k;
	if (json_array_size(users) > 0) {
		_cleanup_free_ char *list = json_dumps(users, JSON_COMPACT);

		return lxm_error_set(err, -EBUSY, 400,
				     "The storage pool '%s' is currently in use by %s", name,
				     list ? list : "(out of memory)");
	}
	if (!e->pool) {
		/* It could not even be opened (unknown driver): only the row can go. */
		k = lxm_db_storage_pool_delete(d->db, name, err);
		if (k < 0)
			return k;
		entry_remove(d, e);
		return 1;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		return lxm_error_set(err, -ENOMEM, 500, "storage pool '%s': out of memory", name);
	*j = (struct pool_job){ .d = d,
				.e = e,
				.kind = JOB_DELETE,
				.done = done,
				.userdata = userdata,
				.was_ready = e->state == POOL_READY };
	k = job_start(j, err);
	if (k < 0) {
		job_free(j);
		return k;
	}
	e->state = POOL_DELETING;
	return 0;
}

int lxmd_pool_usage(struct lxmd *d, const char *name, lxmd_pool_usage_fn done, void *userdata,
		    struct lxm_error **err)
{
	struct pool_entry *e;
	struct pool_job *j;
	int k;

	k = entry_usable(d, name, &e, err);
	if (k < 0)
		return k;
	j = calloc(1, sizeof(*j));
	if (!j)
		return lxm_error_set(err, -ENOMEM, 500, "storage pool '%s': out of memory", name);
	*j = (struct pool_job){
		.d = d, .e = e, .kind = JOB_USAGE, .usage_done = done, .userdata = userdata
	};
	k = job_start(j, err);
	if (k < 0) {
		job_free(j);
		return k;
	}
	e->holds++;
	return 0;
}

/* ---- used_by ---- */

static int append_url(json_t *list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int append_url(json_t *list, const char *fmt, ...)
{
	_cleanup_free_ char *url = NULL;
	va_list ap;
	size_t i;
	json_t *v;
	int k;

	va_start(ap, fmt);
	k = vasprintf(&url, fmt, ap);
	va_end(ap);
	if (k < 0)
		return -ENOMEM;
	json_array_foreach (list, i, v)
		if (streq(json_string_value(v), url))
			return 0;
	return json_array_append_new(list, json_string(url)) < 0 ? -ENOMEM : 0;
}

static int url_cmp(const void *a, const void *b)
{
	return strcmp(json_string_value(*(json_t *const *)a),
		      json_string_value(*(json_t *const *)b));
}

int lxmd_pool_used_by(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err)
{
	_cleanup_strv_ char **profiles = NULL, **instances = NULL;
	_cleanup_json_ json_t *list = json_array(), *sorted = json_array();
	_cleanup_error_ struct lxm_error *verr = NULL;
	struct lxm_db_storage_volume **vols = NULL;
	_cleanup_free_ json_t **v = NULL;
	size_t n = 0, i;
	json_t *u;
	int k;

	if (!list || !sorted)
		return -ENOMEM;
	k = lxm_db_storage_pool_used_by(d->db, name, &profiles, &instances, err);
	if (k < 0)
		return k;
	k = lxm_db_storage_volume_list(d->db, name, NULL, &vols, &n, &verr);
	/* A pool being created has no row yet, hence no volumes. */
	if (k < 0 && k != -ENOENT) {
		lxm_error_set(err, k, verr ? verr->status : 500, "%s",
			      verr ? verr->msg : "list volumes");
		return k;
	}
	k = 0;
	for (char **p = profiles; p && *p && k >= 0; p++)
		k = append_url(list, "/1.0/profiles/%s", *p);
	for (char **p = instances; p && *p && k >= 0; p++)
		k = append_url(list, "/1.0/instances/%s", *p);
	for (i = 0; i < n && k >= 0; i++) {
		const char *t = vols[i]->type, *vn = vols[i]->name;

		if (streq(t, "container") || streq(t, "virtual-machine"))
			k = append_url(list, "/1.0/instances/%s", vn);
		else if (streq(t, "image"))
			k = append_url(list, "/1.0/images/%s", vn);
		else
			k = append_url(list, "/1.0/storage-pools/%s/volumes/%s/%s", name, t, vn);
	}
	lxm_db_storage_volume_list_free(vols, n);
	if (k < 0)
		return lxm_error_set(err, -ENOMEM, 500, "storage pool '%s': out of memory", name);
	v = calloc(json_array_size(list) + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	json_array_foreach (list, i, u)
		v[i] = u;
	qsort(v, json_array_size(list), sizeof(*v), url_cmp);
	for (i = 0; i < json_array_size(list); i++)
		json_array_append(sorted, v[i]);
	*ret = TAKE_PTR(sorted);
	return 0;
}

/* The drivers this host can run, found once at start-up (it looks for programs and kernel
 * file systems). */
static json_t *supported_drivers(void)
{
	_cleanup_json_ json_t *list = json_array();

	if (!list)
		return NULL;
	for (const char *const *n = lxm_storage_driver_names(); *n; n++) {
		if (!lxm_storage_driver_available(*n))
			continue;
		if (json_array_append_new(list, json_pack("{s:s, s:s, s:b}", "name", *n, "version",
							  "", "remote", false)) < 0)
			return NULL;
	}
	return TAKE_PTR(list);
}

json_t *lxmd_pools_supported_drivers(struct lxmd *d)
{
	return d->pools ? json_incref(d->pools->drivers) : json_array();
}

char *lxmd_pools_drivers_in_use(struct lxmd *d)
{
	const char *const *names = lxm_storage_driver_names();
	char *out = strdup(""), *more;

	/* In the registry's order, each once. */
	for (size_t i = 0; out && names[i]; i++) {
		bool used = false;

		for (struct pool_entry *e = d->pools ? d->pools->list : NULL; e && !used;
		     e = e->next)
			used = e->state != POOL_CREATING && streq(e->driver, names[i]);
		if (!used)
			continue;
		if (asprintf(&more, "%s%s%s", out, *out ? " | " : "", names[i]) < 0)
			more = NULL;
		free(out);
		out = more;
	}
	return out;
}
