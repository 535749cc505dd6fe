/* cgroups for instances, on cgroup v2 and on hybrid hosts (controllers on v1 hierarchies, an empty
 * v2 beside them). Drivers are an ops table chosen at detection; everything takes a root prefix so
 * that unit tests run against a fake cgroupfs tree. Each instance gets "lxm.payload.<name>" under
 * the hierarchy's root (v2) or "lxm.payload/<name>" (v1). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "profiles/policy.h"

enum lxm_cgroup_mode {
	LXM_CGROUP_UNIFIED, /* all controllers on v2 */
	LXM_CGROUP_HYBRID,  /* controllers on v1; a v2 hierarchy (maybe empty) for tracking */
	LXM_CGROUP_LEGACY,  /* v1 only */
	_LXM_CGROUP_MODE_MAX,
};

struct lxm_cgroup_layout;

/* Reads mountinfo (NULL: /proc/self/mountinfo) to find the hierarchies. prefix is prepended to
 * every path (NULL or "" for the real system; a temp dir for tests). */
int lxm_cgroup_detect(const char *mountinfo, const char *prefix, struct lxm_cgroup_layout **ret,
		      struct lxm_error **err);
void lxm_cgroup_layout_free(struct lxm_cgroup_layout *l);
enum lxm_cgroup_mode lxm_cgroup_mode(const struct lxm_cgroup_layout *l);

/* Where an instance's cgroups are (for the container spec). */
struct lxm_cgroup_paths {
	char *v2;  /* dir on the v2 hierarchy (CLONE_INTO_CGROUP, cgroup namespace root), or NULL */
	char **v1; /* dirs on the v1 hierarchies (one per mounted hierarchy), NULL-terminated */
};
void lxm_cgroup_paths_free(struct lxm_cgroup_paths *p);

/* Creates the instance's cgroups (and the lxm.payload parents) and applies limits. Existing dirs
 * are reused (a restart after a crash). */
int lxm_cgroup_create(struct lxm_cgroup_layout *l, const char *name,
		      const struct lxm_limits *limits, struct lxm_cgroup_paths *ret,
		      struct lxm_error **err);
/* Applies limits to an existing instance cgroup (live update). Unset limits are reset to none. */
int lxm_cgroup_apply(struct lxm_cgroup_layout *l, const char *name, const struct lxm_limits *limits,
		     struct lxm_error **err);
int lxm_cgroup_freeze(struct lxm_cgroup_layout *l, const char *name, bool freeze,
		      struct lxm_error **err);

struct lxm_cgroup_stats {
	int64_t memory_usage; /* bytes, -1 unknown */
	int64_t memory_peak;  /* bytes, -1 unknown */
	int64_t swap_usage;   /* bytes, -1 unknown */
	int64_t cpu_usage_ns; /* nanoseconds, -1 unknown */
	int64_t processes;    /* tasks, -1 unknown */
};
int lxm_cgroup_stats(struct lxm_cgroup_layout *l, const char *name, struct lxm_cgroup_stats *ret,
		     struct lxm_error **err);
/* Kills every process left (cgroup.kill on v2, else SIGKILL to each pid) and removes the dirs,
 * retrying while the kernel still empties them. Missing dirs are fine. */
int lxm_cgroup_destroy(struct lxm_cgroup_layout *l, const char *name, struct lxm_error **err);
