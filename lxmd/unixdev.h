/* unix-char and unix-block devices: a device node at path= inside a container (default: the same
 * path as source=), of the host node source= (its major and minor) or of major= and minor=, owned
 * by uid= and gid= (the container's ids) with mode= (default 0660).
 *
 * lxmd makes the node itself, in the instance's runtime dir (<rundir>/devices/<device>), where it
 * may (a container in a user namespace may not mknod), and the node reaches the container as a
 * bind mount like a host-path disk: idmapped through the container's user namespace when it is
 * unprivileged, so the node's owner as recorded (the container's uid and gid) is what the
 * container sees. The container's device cgroup (the v1 devices controller, the v2 BPF filter)
 * allows opening the node on top of the default list.
 *
 * A source= that is missing fails the start, unless required=false: then the device is skipped
 * with a log line. A running (or frozen) container's unix devices are added and removed live:
 * "lxm-monitor disk attach|detach" as for disks, and the cgroup allow-list replaced. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct lxmd;
struct lxm_container_spec;
struct lxm_cgroup_device;

/* A unix-char or unix-block device as its config says. */
struct lxmd_unixdev {
	const char *name;   /* the device's name */
	char type;	    /* 'c' (unix-char) or 'b' (unix-block) */
	const char *source; /* source=: the host node, or NULL */
	const char *path;   /* where the node appears inside the container (path=, else source=) */
	bool has_major;	    /* major= given (it wins over source='s) */
	bool has_minor;	    /* minor= given */
	uint32_t major;	    /* major= */
	uint32_t minor;	    /* minor= */
	uint32_t uid;	    /* uid=: the owner inside the container (default 0) */
	uint32_t gid;	    /* gid=: the group inside the container (default 0) */
	uint32_t mode;	    /* mode=: permission bits (default 0660) */
	bool required;	    /* required= (default true): a missing source fails the start */
};

/* Classifies device name: 1 with *ret filled for a unix-char or unix-block device, 0 for another
 * type, -EINVAL (400) naming the device, the key and the value for one that cannot work (an
 * unknown key, neither source= nor path= with major= and minor=, a relative path, a bad number,
 * mode or boolean). Pure: no I/O. */
int lxmd_unixdev_parse(const char *name, const json_t *dev, struct lxmd_unixdev *ret,
		       struct lxm_error **err);

/* The node of u: *ret gets its type, major and minor (from source='s node unless major= and
 * minor= say). 1 when it is known; 0 when source= is missing and not required (nothing to make);
 * -errno with err naming the device when source= is missing and required or is not a node of
 * the device's type. stat only. */
int lxmd_unixdev_resolve(const struct lxmd_unixdev *u, struct lxm_cgroup_device *ret,
			 struct lxm_error **err);

/* At start: for each unix device among instance's expanded devices xdevices, makes its node in
 * rundir/devices/ and appends its bind mount to s->mounts; *ret_devs (n_ret entries, to free)
 * gets the nodes the device cgroup must allow. Devices skipped (required=false, no source) are
 * logged. On the loop thread (stat, mknod). */
int lxmd_unixdevs_to_spec(const char *instance, const json_t *xdevices, const char *rundir,
			  struct lxm_container_spec *s, struct lxm_cgroup_device **ret_devs,
			  size_t *n_ret, struct lxm_error **err);

/* Removes the nodes of a stopped instance (rundir/devices/). Missing is fine. */
void lxmd_unixdevs_clear(const char *rundir);

/* Before a change of a running (or frozen) instance's devices is recorded: when its unix
 * devices among new_xdevices (its expanded devices after the change) differ from those it runs
 * with, removes the ones that went or changed (unmounted inside, then denied in its device
 * cgroup) and adds the new ones (allowed, then mounted), at once. A failure puts back what was
 * there and names the device; a change that cannot be made live is refused with "requires
 * restart". Nothing happens for a stopped instance. Blocks on lxm-monitor (bounded). */
int lxmd_unixdevs_hotplug(struct lxmd *d, const char *instance, const json_t *new_xdevices,
			  struct lxm_error **err);
