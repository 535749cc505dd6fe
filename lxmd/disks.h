/* Disk devices other than the root disk: a custom storage volume (pool=P, source=VOL) or a host
 * directory (source=/host/path) mounted at path= inside a container when it starts, read-only
 * with readonly=true. This file turns an instance's expanded devices into the extra mounts of
 * its spec (struct lxm_spec_mount); lxm-monitor makes the idmapped clones and the child attaches
 * them (lxmd/monitor/monitor-disks.c, lxmd/container/setup-mounts.c). */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

struct lxmd;
struct lxm_container_spec;

/* A disk device to mount, as its config says (pointers into the device's JSON). */
struct lxmd_disk {
	const char *name;   /* the device's name */
	const char *path;   /* where it is mounted inside the container: absolute, not "/" */
	const char *pool;   /* the pool of a custom volume, or NULL for a host directory */
	const char *source; /* the custom volume's name, or the absolute host path */
	bool readonly;	    /* readonly=true: mounted read-only */
};

/* Classifies device name: 1 with *ret filled for a disk device to mount, 0 for anything else
 * (not a disk, or the root disk, path=/), -EINVAL (400) with the device named and the reason for
 * a disk device that cannot be mounted (no source, a relative path, a bad readonly value). Pure:
 * no I/O. */
int lxmd_disk_parse(const char *name, const json_t *dev, struct lxmd_disk *ret,
		    struct lxm_error **err);

/* Whether the mounted disks (lxmd_disk_parse() = 1) differ between two expanded device sets;
 * *ret_name gets the name of one device that differs. Devices that do not parse count as
 * disks. Pure. */
bool lxmd_disks_changed(const json_t *old_devices, const json_t *new_devices,
			const char **ret_name);

/* Appends to s->mounts a bind mount for each disk device among xdevices (instance's expanded
 * devices), parents before children (sorted by path). A custom volume must exist in its pool and
 * the pool be available; a host directory must exist. Errors name the device and the cause. On
 * the loop thread (stat only). */
int lxmd_disks_to_spec(struct lxmd *d, const char *instance, const json_t *xdevices,
		       struct lxm_container_spec *s, struct lxm_error **err);

/* Hot-plug: a change of the disks of a running (or frozen) instance, applied in its mount
 * namespace by "lxm-monitor disk" helpers. */
struct lxmd_hotplug;
struct lxm_operation;

/* Before a change of instance's devices is recorded: when it runs and new_xdevices (its expanded
 * devices after the change) mount other disks than the recorded instance does, *ret gets the
 * plan: the disks to unmount, those to mount (checked as a start checks them: the volume exists,
 * the host path exists), and the instance as recorded. *ret is NULL when there is nothing to
 * hot-plug. On the loop thread. */
int lxmd_disks_hotplug_plan(struct lxmd *d, const char *instance, const json_t *new_xdevices,
			    struct lxmd_hotplug **ret, struct lxm_error **err);
/* After the change is recorded: unmounts, then mounts, on the thread pool, and finishes op: a
 * Success, or a Failure naming the device after everything was put back (the disks mounted so
 * far unmounted, those unmounted mounted again, the instance's recorded devices restored). Takes
 * plan. */
void lxmd_disks_hotplug_run(struct lxmd *d, struct lxmd_hotplug *plan, struct lxm_operation *op);
void lxmd_disks_hotplug_free(struct lxmd_hotplug *plan);
static inline void lxmd_disks_hotplug_freep(struct lxmd_hotplug **p)
{
	lxmd_disks_hotplug_free(*p);
}
