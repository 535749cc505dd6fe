/* The runtime side of instances: which are running (one lxm-monitor each), starting and stopping
 * them, their live state, and re-attaching to the monitors that survived an lxmd restart. The
 * container itself is the monitor's business; lxmd prepares its cgroups and spec. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

struct lxmd;
struct lxm_operation;
struct lxm_db_instance;
struct lxm_db_profile;
struct lxm_cgroup_layout;

/* Sets up the runtime: cgroup layout, id range, policy host facts; re-attaches to live monitors. */
int lxmd_runtime_init(struct lxmd *d, struct lxm_error **err);
/* Stops watching monitors (they keep running) and frees the runtime. */
void lxmd_runtime_fini(struct lxmd *d);
/* The lxm-monitor binary found at start-up ($LXM_MONITOR, next to lxmd, or the libexec dir); it
 * also runs exec sessions. */
const char *lxmd_monitor_path(struct lxmd *d);

/* The cgroup layout instances run in (unix devices change a running one's allow-list). */
struct lxm_cgroup_layout *lxmd_instance_cgroups(struct lxmd *d);

/* "Running", "Stopped", "Frozen" and LXD's matching status code for an instance. */
const char *lxmd_instance_status(struct lxmd *d, const char *name, int *ret_code);
/* The live state object of GET .../state. */
int lxmd_instance_state(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err);

/* Changes an instance's state for PUT .../state: action start|stop|restart|freeze|unfreeze.
 * timeout in seconds (-1: wait for a clean stop as long as it takes), force kills at once. The
 * operation ends when the change is complete. */
int lxmd_instance_change_state(struct lxmd *d, const char *name, const char *action, int timeout,
			       bool force, struct lxm_operation *op, struct lxm_error **err);

/* Freezes (or thaws) a running instance without changing the state users see, for a consistent
 * copy of its files (a snapshot); the caller thaws what it froze. A container: its cgroup, which
 * waits for the kernel to stop every task. A VM (vm): QMP stop through its monitor, which also
 * drains and flushes QEMU's disk I/O. Blocks: call it off the loop thread. -ENOENT when the
 * instance no longer runs. */
int lxmd_instance_freeze_for_copy(struct lxmd *d, const char *name, bool vm, bool freeze,
				  struct lxm_error **err);

/* Profiles in order, then the instance's own keys: LXD's expanded config and devices. */
int lxmd_instance_expand(struct lxmd *d, const struct lxm_db_instance *inst, json_t **ret_config,
			 json_t **ret_devices, struct lxm_error **err);
/* The same with profile (when non-NULL) in place of the recorded profile of its name: what the
 * instance becomes once profile is recorded. */
int lxmd_instance_expand_with(struct lxmd *d, const struct lxm_db_instance *inst,
			      const struct lxm_db_profile *profile, json_t **ret_config,
			      json_t **ret_devices, struct lxm_error **err);

/* What an image's file templates see of an instance (lxm_template_render's context): its name,
 * type, architecture and expanded config and devices. NULL when out of memory. */
json_t *lxmd_instance_template_ctx(const struct lxm_db_instance *inst, const json_t *config,
				   const json_t *devices);

/* Checks that an instance's expanded config compiles into a policy (every value it reads is
 * valid) and, with apply, when the instance runs, applies what can change live: its limits.
 * Security settings take effect at the next start, as in LXD. */
int lxmd_instance_apply_config(struct lxmd *d, const char *name, const json_t *expanded_config,
			       bool apply, struct lxm_error **err);

/* After an instance's deletion: unloads its generated AppArmor profile where the kernel has
 * AppArmor (apparmor_parser -R, as a child) and removes the profile's files. Runs in the
 * background; failures are logged. */
void lxmd_instance_deleted(struct lxmd *d, const char *name);
