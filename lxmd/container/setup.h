/* Container setup: the ordered, named steps that run in the child created by clone3 (inside all
 * the new namespaces, after the monitor wrote its id maps and placed it in its cgroups), ending in
 * the exec of init. Also the pieces that the exec helper reapplies when it joins a container. */
#pragma once

#include "container/spec.h"
#include "error.h"

/* What the monitor hands the child besides the spec. */
struct lxm_setup_fds {
	int rootfs_tree;   /* a detached mount of the rootfs (open_tree + MOUNT_ATTR_IDMAP when
			      unprivileged, done by the monitor, which holds privilege over it) */
	int console_slave; /* the slave side of the monitor's console pty, or -1 */
	int *mount_trees;  /* per extra mount of the spec, the monitor's detached (idmapped) clone
			      of its source, or -1; NULL: the child clones the sources itself */
};

/* One step of the setup. The name is what an error names: "start 'c1': step 'pivot-root': ...". */
struct lxm_setup_step {
	const char *name;
	int (*run)(const struct lxm_container_spec *s, const struct lxm_setup_fds *fds,
		   struct lxm_error **err);
};

/* The steps, in order, NULL-terminated (unit tests check names and order). */
extern const struct lxm_setup_step lxm_setup_steps[];

/* Runs every step and execs init. Returns only on failure, with err saying which step failed and
 * why; the caller sends that message to the monitor over its sync socket. */
int lxm_container_setup_and_exec(const struct lxm_container_spec *s,
				 const struct lxm_setup_fds *fds, struct lxm_error **err);

/* Shared with the exec helper (which joins a running container). Each is a no-op where the spec
 * asks for nothing; an LSM that the kernel lacks is skipped (the caller logs that once). */
int lxm_apply_capabilities(const struct lxm_container_spec *s, struct lxm_error **err);
int lxm_apply_seccomp(const struct lxm_container_spec *s, struct lxm_error **err);
int lxm_apply_lsm(const struct lxm_container_spec *s, struct lxm_error **err);
/* Closes every fd >= 3 except those in keep (n entries): host fds never leak into a container. */
int lxm_close_fds_except(const int *keep, size_t n);
