/* Changes of a running instance's expanded config and devices: see apply.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "apply.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "devices.h"
#include "disks.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "nic.h"
#include "profiles/keys.h"
#include "proxy.h"
#include "unixdev.h"
#include "util.h"
#include "volumes.h"

struct lxmd_change {
	char *instance;		       /* the instance */
	bool running;		       /* it runs (or is frozen): the plan applies live */
	json_t *xconfig;	       /* its expanded config after the change */
	json_t *xdevices;	       /* its expanded devices after the change */
	json_t *proxies;	       /* lxmd_proxies_plan() of xdevices (running only) */
	struct lxmd_hotplug *disks;    /* disks to hot-plug, or NULL */
	struct lxmd_nic_hotplug *nics; /* nics to hot-plug, or NULL */
	json_t *restart;	       /* what takes effect at the next start, or NULL */
};

void lxmd_change_free(struct lxmd_change *c)
{
	if (!c)
		return;
	free(c->instance);
	json_decref(c->xconfig);
	json_decref(c->xdevices);
	json_decref(c->proxies);
	lxmd_disks_hotplug_free(c->disks);
	lxmd_nics_hotplug_free(c->nics);
	json_decref(c->restart);
	free(c);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds what to the list of changes that wait for a restart. */
static int restart_add(json_t **list, const char *what)
{
	if (!*list && !(*list = json_array()))
		return -ENOMEM;
	return json_array_append_new(*list, json_string(what)) < 0 ? -ENOMEM : 0;
}

/* Sorts the list (an array of strings) in place. */
static int restart_sort(json_t *list)
{
	size_t n = json_array_size(list), i;
	_cleanup_free_ const char **v = NULL;
	_cleanup_json_ json_t *sorted = NULL;

	if (n < 2)
		return 0;
	v = calloc(n, sizeof(*v));
	if (!v || !(sorted = json_array()))
		return -ENOMEM;
	for (i = 0; i < n; i++)
		v[i] = json_string_value(json_array_get(list, i));
	qsort(v, n, sizeof(*v), cmp_str);
	for (i = 0; i < n; i++)
		if (json_array_append_new(sorted, json_string(v[i])) < 0)
			return -ENOMEM;
	return json_array_clear(list) < 0 || json_array_extend(list, sorted) < 0 ? -ENOMEM : 0;
}

/* Whether key's value differs between a and b (absent counts as a value). */
static bool key_changed(const json_t *a, const json_t *b, const char *key)
{
	json_t *va = json_object_get(a, key), *vb = json_object_get(b, key);

	if (!va || !vb)
		return va != vb;
	return !json_equal(va, vb);
}

/* The config keys users set whose change a running instance only takes at its next start: for a
 * VM (vm) the limits too, which set QEMU's vCPUs and RAM. */
static int restart_keys(const json_t *old, const json_t *new, bool vm, json_t **list)
{
	const json_t *sides[] = { old, new };
	const char *key;
	json_t *v;
	int k;

	for (size_t s = 0; s < ARRAY_SIZE(sides); s++)
		json_object_foreach ((json_t *)sides[s], key, v) {
			const struct lxm_config_key *e = lxm_config_key_find(key);

			/* Each key once: from the old side, or new on the new side. */
			if (s == 1 && json_object_get(old, key))
				continue;
			if (!e || (e->live && !(vm && startswith(key, "limits."))) ||
			    e->access != LXM_KEY_USER || !key_changed(old, new, key))
				continue;
			if ((k = restart_add(list, key)) < 0)
				return k;
		}
	return 0;
}

/* A running VM's devices other than its root disk (whose size check_root() reports) are QEMU's,
 * set when it starts: each one added, removed or changed is listed as "device NAME". */
static int restart_devices(const json_t *old, const json_t *new, json_t **list)
{
	const json_t *sides[] = { old, new };
	const char *root = NULL, *name;
	json_t *v;
	int k;

	(void)lxmd_root_disk(new, &root);
	for (size_t s = 0; s < ARRAY_SIZE(sides); s++)
		json_object_foreach ((json_t *)sides[s], name, v) {
			_cleanup_free_ char *what = NULL;

			if ((s == 1 && json_object_get(old, name)) || (root && streq(name, root)) ||
			    !key_changed(old, new, name))
				continue;
			if (asprintf(&what, "device %s", name) < 0)
				return -ENOMEM;
			if ((k = restart_add(list, what)) < 0)
				return k;
		}
	return 0;
}

/* The root disk after the change: on the pool of the instance's volume (a volume does not move
 * with its device); a size= change waits for the next start of a running instance. */
static int check_root(struct lxmd *d, const char *instance, bool running, const json_t *old,
		      const json_t *new, json_t **list, struct lxm_error **err)
{
	_cleanup_free_ char *vpool = NULL;
	const char *name = NULL, *pool;
	const json_t *oroot = lxmd_root_disk(old, NULL), *nroot = lxmd_root_disk(new, &name);
	int k;

	if (!nroot)
		return 0;
	pool = json_string_value(json_object_get(nroot, "pool"));
	k = lxm_db_storage_volume_pool(d->db, "container", instance, &vpool, NULL);
	if (k < 0 && k != -ENOENT)
		return lxm_error_setx(err, k, 500, "find its storage volume");
	if (k >= 0 && pool && !streq(pool, vpool))
		return lxm_error_set(
			err, -EINVAL, 400,
			"root disk device '%s': pool '%s': the instance's volume is on "
			"pool '%s' and does not move with its root disk (copy the "
			"instance to the other pool instead)",
			name, pool, vpool);
	if (running && oroot && key_changed(oroot, nroot, "size")) {
		_cleanup_free_ char *what = NULL;

		if (asprintf(&what, "device %s: size", name) < 0)
			return -ENOMEM;
		return restart_add(list, what);
	}
	return 0;
}

int lxmd_change_plan(struct lxmd *d, struct lxm_db_instance *inst, const json_t *old_xconfig,
		     const json_t *old_xdevices, const json_t *new_xconfig,
		     const json_t *new_xdevices, struct lxmd_change **ret, struct lxm_error **err)
{
	_cleanup_(lxmd_change_freep) struct lxmd_change *c = calloc(1, sizeof(*c));
	bool vm = inst->type && streq(inst->type, "virtual-machine");
	pid_t pid;
	int k;

	if (!c || !(c->instance = strdup(inst->name)))
		return -ENOMEM;
	c->xconfig = json_deep_copy(new_xconfig);
	c->xdevices = json_deep_copy(new_xdevices);
	if (!c->xconfig || !c->xdevices)
		return -ENOMEM;
	c->running = lxmd_instance_running(d, inst->name, &pid, NULL, NULL) == 0;
	/* The policy compiler reads every key the way a start does, and each device is checked by
	 * its type, in the expanded set (two profiles may each bring a root disk). */
	if ((k = lxmd_instance_apply_config(d, inst->name, c->xconfig, false, err)) < 0 ||
	    (k = lxmd_devices_validate(c->xdevices, err)) < 0 ||
	    (k = check_root(d, inst->name, c->running, old_xdevices, c->xdevices, &c->restart,
			    err)) < 0)
		return lxm_error_prefix(err, "instance '%s'", inst->name);
	if (c->running && vm) {
		/* Nothing is hot-plugged into QEMU: the changes wait for the next start. */
		if ((k = restart_keys(old_xconfig, c->xconfig, true, &c->restart)) < 0 ||
		    (k = restart_devices(old_xdevices, c->xdevices, &c->restart)) < 0 ||
		    (k = restart_sort(c->restart)) < 0)
			return k;
	} else if (c->running) {
		if ((k = restart_keys(old_xconfig, c->xconfig, false, &c->restart)) < 0 ||
		    (k = restart_sort(c->restart)) < 0)
			return k;
		/* What a start would check of the devices: volumes and host paths exist, nics'
		 * networks, proxies' addresses. */
		if ((k = lxmd_disks_hotplug_plan(d, inst->name, c->xdevices, &c->disks, err)) < 0 ||
		    (k = lxmd_nics_hotplug_plan(d, inst, c->xdevices, &c->nics, err)) < 0 ||
		    (k = lxmd_proxies_plan(d, inst->name, c->xdevices, &c->proxies, err)) < 0)
			return lxm_error_prefix(err, "instance '%s'", inst->name);
		/* Each hot-plug ends an operation and puts the record back on failure: one kind at
		 * a time keeps that exact. */
		if (c->disks && c->nics)
			return lxm_error_set(err, -EINVAL, 400,
					     "instance '%s': change its disks and its nics in "
					     "separate updates while it runs",
					     inst->name);
	}
	*ret = TAKE_PTR(c);
	return 0;
}

const json_t *lxmd_change_restart(const struct lxmd_change *c)
{
	return c->restart;
}

bool lxmd_change_has_hotplug(const struct lxmd_change *c)
{
	return c->disks || c->nics;
}

int lxmd_change_apply(struct lxmd *d, struct lxmd_change *c, struct lxm_error **err)
{
	size_t i;
	json_t *v;
	int k;

	if (!c->running)
		return 0;
	/* Limits are kernel writes to its cgroup: first, before any device changes. */
	if ((k = lxmd_instance_apply_config(d, c->instance, c->xconfig, true, err)) < 0)
		return k;
	/* Unix devices put themselves back on failure (unixdev.h). */
	if ((k = lxmd_unixdevs_hotplug(d, c->instance, c->xdevices, err)) < 0)
		return k;
	/* Proxies started by a failing call are stopped again; the recorded ones come back. */
	if ((k = lxmd_proxies_apply(d, c->instance, c->proxies, err)) < 0) {
		struct lxm_error *e2 = NULL;

		if (lxmd_proxies_start(d, c->instance, &e2) < 0) {
			log_error("instance '%s': put back its proxies: %s", c->instance, e2->msg);
			lxm_error_free(e2);
		}
		return k;
	}
	json_array_foreach (c->restart, i, v)
		log_info("instance '%s': %s changed: takes effect at its next start", c->instance,
			 json_string_value(v));
	return 0;
}

bool lxmd_change_hotplug(struct lxmd *d, struct lxmd_change *c, struct lxm_operation *op)
{
	if (c->disks) {
		lxmd_disks_hotplug_run(d, TAKE_PTR(c->disks), op);
		return true;
	}
	if (c->nics) {
		lxmd_nics_hotplug_run(d, TAKE_PTR(c->nics), op);
		return true;
	}
	return false;
}
