/* Disk devices mounted into containers: see disks.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cleanup.h"
#include "container/spec.h"
#include "daemon.h"
#include "db/db.h"
#include "devices.h"
#include "disks.h"
#include "child.h"
#include "instance.h"
#include "log.h"
#include "operations.h"
#include "json.h"
#include "pools.h"
#include "storage/storage.h"
#include "util.h"

static const char *str(const json_t *dev, const char *key)
{
	return json_string_value(json_object_get(dev, key));
}

int lxmd_disk_parse(const char *name, const json_t *dev, struct lxmd_disk *ret,
		    struct lxm_error **err)
{
	const char *type = str(dev, "type"), *path = str(dev, "path"), *ro = str(dev, "readonly");
	struct lxmd_disk k = { .name = name };
	int b;

	if (!type || !streq(type, "disk"))
		return 0;
	if (path && streq(path, "/"))
		return 0;
	if (!path || !*path)
		return lxm_error_set(err, -EINVAL, 400, "disk device '%s': no path= given", name);
	if (!lxm_path_is_clean(path))
		return lxm_error_set(err, -EINVAL, 400,
				     "disk device '%s': path=%s must be absolute, without '.' or "
				     "'..'",
				     name, path);
	k.path = path;
	k.pool = str(dev, "pool");
	if (k.pool && !*k.pool)
		k.pool = NULL;
	k.source = str(dev, "source");
	if (!k.source || !*k.source)
		return lxm_error_set(err, -EINVAL, 400,
				     "disk device '%s': no source= given (a custom volume with "
				     "pool=, or a host path)",
				     name);
	if (k.pool && strchr(k.source, '/'))
		return lxm_error_set(err, -EINVAL, 400,
				     "disk device '%s': source=%s: a custom volume name has no "
				     "'/' (snapshots cannot be attached)",
				     name, k.source);
	if (!k.pool && !lxm_path_is_clean(k.source))
		return lxm_error_set(err, -EINVAL, 400,
				     "disk device '%s': source=%s must be an absolute host path "
				     "without '.' or '..' (or a custom volume with pool=)",
				     name, k.source);
	if (ro) {
		/* An empty readonly= counts as false. */
		b = *ro ? lxmd_device_bool(ro) : 0;
		if (b < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "disk device '%s': readonly=%s: expected true or "
					     "false",
					     name, ro);
		k.readonly = b;
	}
	*ret = k;
	return 1;
}

static bool same(const char *a, const char *b)
{
	return streq(a ? a : "", b ? b : "");
}

/* Whether device name of a has a mounted-disk counterpart in b that mounts the same. */
static bool disk_in(const char *name, const json_t *dev, const json_t *other)
{
	const json_t *o = json_object_get(other, name);
	struct lxmd_disk x, y;
	int kx = lxmd_disk_parse(name, dev, &x, NULL);
	int ky = o ? lxmd_disk_parse(name, o, &y, NULL) : 0;

	if (kx == 0)
		return ky == 0;
	if (kx < 0 || ky < 0)
		return json_equal(dev, o);
	return ky == 1 && same(x.path, y.path) && same(x.pool, y.pool) &&
	       same(x.source, y.source) && x.readonly == y.readonly;
}

bool lxmd_disks_changed(const json_t *old_devices, const json_t *new_devices, const char **ret_name)
{
	const char *name;
	json_t *dev;

	json_object_foreach ((json_t *)old_devices, name, dev)
		if (!disk_in(name, dev, new_devices)) {
			if (ret_name)
				*ret_name = name;
			return true;
		}
	json_object_foreach ((json_t *)new_devices, name, dev)
		if (!disk_in(name, dev, old_devices)) {
			if (ret_name)
				*ret_name = name;
			return true;
		}
	return false;
}

static int disk_cmp(const void *a, const void *b)
{
	const struct lxmd_disk *x = a, *y = b;
	int c = strcmp(x->path, y->path);

	return c ? c : strcmp(x->name, y->name);
}

/* The host path of disk k. */
static int disk_source(struct lxmd *d, const char *instance, const struct lxmd_disk *k, char **ret,
		       struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = NULL;
	struct lxm_pool *p;
	struct stat st;
	int r;

	if (!k->pool) {
		if (stat(k->source, &st) < 0)
			return lxm_error_setx(err, -errno, 400,
					      "start '%s': disk device '%s': source %s", instance,
					      k->name, k->source);
		*ret = strdup(k->source);
		return *ret ? 0 : -ENOMEM;
	}
	if ((r = lxm_db_storage_volume_get(d->db, k->pool, "custom", k->source, &v, err)) < 0 ||
	    (r = lxmd_pool_get(d, k->pool, &p, err)) < 0)
		return lxm_error_prefix(err, "start '%s': disk device '%s'", instance, k->name);
	r = lxm_pool_volume_path(p, LXM_VOLUME_CUSTOM, k->source, NULL, ret);
	return r < 0 ? lxm_error_setx(err, r, 500, "start '%s': disk device '%s': volume path",
				      instance, k->name)
		     : 0;
}

int lxmd_disks_to_spec(struct lxmd *d, const char *instance, const json_t *xdevices,
		       struct lxm_container_spec *s, struct lxm_error **err)
{
	_cleanup_free_ struct lxmd_disk *disks = NULL;
	struct lxm_spec_mount *m;
	size_t n = 0;
	const char *name;
	json_t *dev;
	int r;

	disks = calloc(json_object_size(xdevices) + 1, sizeof(*disks));
	if (!disks)
		return -ENOMEM;
	json_object_foreach ((json_t *)xdevices, name, dev) {
		r = lxmd_disk_parse(name, dev, &disks[n], err);
		if (r < 0)
			return lxm_error_prefix(err, "start '%s'", instance);
		n += r;
	}
	if (n == 0)
		return 0;
	qsort(disks, n, sizeof(*disks), disk_cmp);
	m = realloc(s->mounts, (s->n_mounts + n) * sizeof(*m));
	if (!m)
		return -ENOMEM;
	s->mounts = m;
	for (size_t i = 0; i < n; i++) {
		struct lxm_spec_mount *e = &s->mounts[s->n_mounts];

		memset(e, 0, sizeof(*e));
		r = disk_source(d, instance, &disks[i], &e->source, err);
		if (r < 0)
			return r;
		s->n_mounts++;
		if (!(e->target = strdup(disks[i].path)) || !(e->fstype = strdup("bind")))
			return -ENOMEM;
		e->readonly = disks[i].readonly;
	}
	return 0;
}

/* ---- hot-plug ---- */

/* One disk to mount or unmount in a running container. */
struct hp_disk {
	char *name;    /* the device */
	char *source;  /* the host path (mount; for unmounts, to mount it again on failure) */
	char *target;  /* inside the container */
	bool readonly; /* mounted read-only */
	bool done;     /* the worker did it */
};

struct lxmd_hotplug {
	uv_work_t work;		     /* the thread pool's request */
	struct lxmd *d;		     /* the daemon */
	char *instance;		     /* the instance */
	pid_t pid;		     /* its init */
	bool idmap;		     /* unprivileged: idmapped clones, join its user namespace */
	char *monitor;		     /* path of lxm-monitor */
	struct hp_disk *del, *add;   /* disks to unmount, then to mount */
	size_t n_del, n_add;	     /* entries */
	struct lxm_db_instance *old; /* the instance as recorded before the change */
	struct lxm_operation *op;    /* finished when the work ends */
	struct lxm_error *err;	     /* the worker's failure */
};

static void hp_disks_free(struct hp_disk *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].source);
		free(v[i].target);
	}
	free(v);
}

void lxmd_disks_hotplug_free(struct lxmd_hotplug *h)
{
	if (!h)
		return;
	free(h->instance);
	free(h->monitor);
	hp_disks_free(h->del, h->n_del);
	hp_disks_free(h->add, h->n_add);
	lxm_db_instance_free(h->old);
	lxm_error_free(h->err);
	free(h);
}

/* Adds the disks of devs that other does not mount the same to *v. */
static int hp_collect(struct lxmd *d, const char *instance, const json_t *devs, const json_t *other,
		      bool resolve, struct hp_disk **v, size_t *n, struct lxm_error **err)
{
	const char *name;
	json_t *dev;
	int r;

	json_object_foreach ((json_t *)devs, name, dev) {
		struct lxmd_disk k;
		struct hp_disk *nv, *e;

		r = lxmd_disk_parse(name, dev, &k, err);
		if (r < 0)
			return lxm_error_prefix(err, "instance '%s'", instance);
		if (r == 0 || disk_in(name, dev, other))
			continue;
		nv = realloc(*v, (*n + 1) * sizeof(**v));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		e = &nv[*n];
		memset(e, 0, sizeof(*e));
		(*n)++;
		if (!(e->name = strdup(name)) || !(e->target = strdup(k.path)))
			return -ENOMEM;
		e->readonly = k.readonly;
		/* What is mounted now need not exist any more: it is only mounted again on a
		 * failure, when it can be. */
		r = disk_source(d, instance, &k, &e->source, resolve ? err : NULL);
		if (r < 0 && resolve)
			return lxm_error_prefix(err, "hot-plug");
	}
	return 0;
}

int lxmd_disks_hotplug_plan(struct lxmd *d, const char *instance, const json_t *new_xdevices,
			    struct lxmd_hotplug **ret, struct lxm_error **err)
{
	_cleanup_(lxmd_disks_hotplug_freep) struct lxmd_hotplug *h = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	char path[64], ours[64], theirs[64];
	pid_t pid;
	int k;

	*ret = NULL;
	if (lxmd_instance_running(d, instance, &pid, NULL, NULL) != 0)
		return 0;
	h = calloc(1, sizeof(*h));
	if (!h || !(h->instance = strdup(instance)) || !(h->monitor = strdup(lxmd_monitor_path(d))))
		return -ENOMEM;
	h->d = d;
	h->pid = pid;
	if ((k = lxm_db_instance_get(d->db, instance, &h->old, err)) < 0 ||
	    (k = lxmd_instance_expand(d, h->old, &config, &devices, err)) < 0)
		return k;
	if (!lxmd_disks_changed(devices, new_xdevices, NULL))
		return 0;
	if ((k = hp_collect(d, instance, devices, new_xdevices, false, &h->del, &h->n_del, err)) <
		    0 ||
	    (k = hp_collect(d, instance, new_xdevices, devices, true, &h->add, &h->n_add, err)) < 0)
		return k;
	if (h->n_del + h->n_add == 0)
		return 0;
	/* Unprivileged: init's user namespace is not ours. */
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	memset(ours, 0, sizeof(ours));
	memset(theirs, 0, sizeof(theirs));
	if (readlink(path, theirs, sizeof(theirs) - 1) < 0 ||
	    readlink("/proc/self/ns/user", ours, sizeof(ours) - 1) < 0)
		return lxm_error_setx(err, -errno, 500, "instance '%s': hot-plug: read %s",
				      instance, path);
	h->idmap = !streq(ours, theirs);
	*ret = TAKE_PTR(h);
	return 0;
}

/* Runs lxm-monitor disk attach|detach for e; the failure names the device. */
static int hp_run(struct lxmd_hotplug *h, const struct hp_disk *e, bool attach,
		  struct lxm_error **err)
{
	char pid[16], errbuf[1024];
	char *argv[9];
	int n = 0, status;

	snprintf(pid, sizeof(pid), "%d", (int)h->pid);
	argv[n++] = h->monitor;
	argv[n++] = (char *)"disk";
	argv[n++] = (char *)(attach ? "attach" : "detach");
	argv[n++] = pid;
	if (attach)
		argv[n++] = e->source;
	argv[n++] = e->target;
	if (attach && e->readonly)
		argv[n++] = (char *)"--readonly";
	if (h->idmap)
		argv[n++] = (char *)"--idmap";
	argv[n] = NULL;
	errbuf[0] = '\0';
	status = lxmd_run_sync_lines(argv, NULL, NULL, NULL, errbuf, sizeof(errbuf));
	if (status == 0)
		return 0;
	errbuf[strcspn(errbuf, "\n")] = '\0';
	if (status < 0)
		return lxm_error_setx(err, status, 500, "disk device '%s': run %s", e->name,
				      h->monitor);
	return lxm_error_set(err, -EIO, 500, "disk device '%s': %s %s: %s", e->name,
			     attach ? "mount on" : "unmount", e->target,
			     errbuf[0] ? errbuf : "failed");
}

static void hotplug_work(uv_work_t *w)
{
	struct lxmd_hotplug *h = w->data;
	struct lxm_error *e2 = NULL;

	for (size_t i = 0; i < h->n_del && !h->err; i++)
		h->del[i].done = hp_run(h, &h->del[i], false, &h->err) >= 0;
	for (size_t i = 0; i < h->n_add && !h->err; i++)
		h->add[i].done = hp_run(h, &h->add[i], true, &h->err) >= 0;
	if (!h->err)
		return;
	/* Put back what was there. */
	for (size_t i = 0; i < h->n_add; i++)
		if (h->add[i].done && hp_run(h, &h->add[i], false, &e2) < 0)
			lxm_error_free(TAKE_PTR(e2));
	for (size_t i = 0; i < h->n_del; i++)
		if (h->del[i].done && h->del[i].source && hp_run(h, &h->del[i], true, &e2) < 0)
			lxm_error_free(TAKE_PTR(e2));
}

static void hotplug_done(uv_work_t *w, int status)
{
	struct lxmd_hotplug *h = w->data;
	struct lxm_error *e2 = NULL;

	if (status < 0 && !h->err)
		lxm_error_set(&h->err, -ECANCELED, 500, "hot-plug cancelled");
	if (h->err) {
		lxm_error_prefix(&h->err, "update instance '%s': hot-plug", h->instance);
		if (lxm_db_instance_update(h->d->db, h->instance, h->old, &e2) < 0) {
			log_error("instance '%s': put back its devices after a failed hot-plug: %s",
				  h->instance, e2->msg);
			lxm_error_free(e2);
		}
	}
	lxm_operation_finish(h->op, TAKE_PTR(h->err));
	lxmd_disks_hotplug_free(h);
}

void lxmd_disks_hotplug_run(struct lxmd *d, struct lxmd_hotplug *h, struct lxm_operation *op)
{
	int k;

	h->op = op;
	h->work.data = h;
	k = uv_queue_work(d->loop, &h->work, hotplug_work, hotplug_done);
	if (k < 0) {
		struct lxm_error *err = NULL;

		lxm_error_set(&err, -EIO, 500, "update instance '%s': hot-plug: queue work: %s",
			      h->instance, uv_strerror(k));
		lxm_db_instance_update(d->db, h->instance, h->old, NULL);
		lxm_operation_finish(op, err);
		lxmd_disks_hotplug_free(h);
	}
}
