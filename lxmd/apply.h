/* A change of an instance's expanded config and devices, as an update of the instance or of one of
 * its profiles makes it: checked as a whole before anything is recorded, then applied to the
 * instance while it runs, where the kernel allows.
 *
 * Live: limits.* (its cgroup), disk, nic, proxy, unix-char and unix-block devices (hot-plug).
 * Keys whose table entry is not live (security.*, raw.*, the idmap, ...) and the root disk's size=
 * are recorded and take effect at the instance's next start, as in LXD: the change reports them
 * (lxmd_change_restart()) and lxmd logs them, so that nothing waits silently. A root disk whose
 * pool= is not the pool holding the instance's volume is refused (the volume does not move). */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

struct lxmd;
struct lxm_db_instance;
struct lxm_db_profile;
struct lxm_operation;

struct lxmd_change;

/* Before the change is recorded (the database still holds what the instance runs with): checks
 * that inst (as it will be recorded), whose expanded config and devices go from old_x* to new_x*,
 * is valid: the policy compiles, every device parses, at most one root disk, on the pool of the
 * instance's volume; when it runs, that its new disks, nics and proxies can be set up. *ret gets
 * the plan; inst->config gets the volatile keys of new nics (record inst afterwards). Errors name
 * the instance, the key or device and the cause. On the loop thread. */
int lxmd_change_plan(struct lxmd *d, struct lxm_db_instance *inst, const json_t *old_xconfig,
		     const json_t *old_xdevices, const json_t *new_xconfig,
		     const json_t *new_xdevices, struct lxmd_change **ret, struct lxm_error **err);

/* The keys and devices whose change takes effect at the next start of the running instance
 * (sorted, "security.nesting", "device root: size"), or NULL when there are none. Owned by c. */
const json_t *lxmd_change_restart(const struct lxmd_change *c);
/* Whether the change hot-plugs disks or nics (lxmd_change_hotplug() takes an operation). */
bool lxmd_change_has_hotplug(const struct lxmd_change *c);

/* Applies at once what the running instance takes at once: its limits, then its unix devices and
 * proxies. A failure of the devices puts back what was there (the proxies as recorded: call it
 * before the change is recorded to restore the old ones); errors name the device. Logs what
 * waits for a restart. Nothing happens for a stopped instance. Blocks on helpers (bounded). */
int lxmd_change_apply(struct lxmd *d, struct lxmd_change *c, struct lxm_error **err);

/* After the change is recorded: hot-plugs the disks or nics of the plan on the thread pool and
 * finishes op (a Failure names the device, after what was done was put back and the instance's
 * record restored). Returns false (op untouched) when there is nothing to hot-plug. */
bool lxmd_change_hotplug(struct lxmd *d, struct lxmd_change *c, struct lxm_operation *op);

void lxmd_change_free(struct lxmd_change *c);
static inline void lxmd_change_freep(struct lxmd_change **c)
{
	lxmd_change_free(*c);
}
