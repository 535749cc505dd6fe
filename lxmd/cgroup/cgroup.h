/* cgroups for instances, on cgroup v2 and on hybrid hosts (controllers on v1 hierarchies, an empty
 * v2 beside them). Drivers are an ops table chosen at detection; everything takes a root prefix so
 * that unit tests run against a fake cgroupfs tree. Each instance gets "lxm.payload.<name>" under
 * the hierarchy's root (v2) or "lxm.payload/<name>" (v1). Those names are shared by every lxmd on
 * the host, so a daemon with another root (a test, a second lxmd) names its cgroups with a tag of
 * its root: "lxm.payload.<tag>.<name>" (v2), "lxm.payload.<tag>/<name>" (v1), where <tag> is the
 * first 8 hex digits of sha256(root). Instance names have no '.', so the two forms never meet. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
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

/* Room for a root's tag and its NUL. */
#define LXM_CGROUP_TAG_SIZE 9
/* The tag of a root's cgroup names: "" for the default root (LXM_DEFAULT_DIR), else 8 hex digits
 * of sha256 of the path without trailing slashes. */
int lxm_cgroup_owner_tag(const char *root, char ret[static LXM_CGROUP_TAG_SIZE]);
/* Names the layout's instance cgroups for the lxmd whose state is in root (see above). Call once,
 * right after detection; a daemon restarted on the same root finds the same names. */
int lxm_cgroup_set_owner(struct lxm_cgroup_layout *l, const char *root, struct lxm_error **err);
enum lxm_cgroup_mode lxm_cgroup_mode(const struct lxm_cgroup_layout *l);
/* Whether the driver that applies limits has controller ("hugetlb"): on v2 for a unified host,
 * on a v1 hierarchy otherwise (and hugetlb on the v2 hierarchy of a hybrid host). */
bool lxm_cgroup_controller_available(const struct lxm_cgroup_layout *l, const char *controller);

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
/* A device node an instance may open beyond the default allow-list (unix-char, unix-block). */
struct lxm_cgroup_device {
	char type;	/* 'c' or 'b' */
	uint32_t major; /* device major */
	uint32_t minor; /* device minor */
};
/* Makes the instance's device allow-list the default one plus the n nodes of extra (all of the
 * instance's unix devices; n 0: the default alone): on v2 the BPF filter is replaced, on v1 the
 * nodes are allowed and the extra ones allowed before but not any more are denied. */
int lxm_cgroup_set_devices(struct lxm_cgroup_layout *l, const char *name,
			   const struct lxm_cgroup_device *extra, size_t n, struct lxm_error **err);
/* Kills every process left (cgroup.kill on v2, else SIGKILL to each pid) and removes the dirs,
 * retrying while the kernel still empties them. Missing dirs are fine. */
int lxm_cgroup_destroy(struct lxm_cgroup_layout *l, const char *name, struct lxm_error **err);
