/* Shared inside the container setup: the step functions of setup.c's table (each in the file of
 * its family) and the LSM drivers. Everything here runs in the child created by clone3, before it
 * execs init; none of it logs, every failure fills err with the path and the cause. */
#pragma once

#include "container/setup.h"
#include "container/spec.h"
#include "error.h"

/* The signature every step has (see struct lxm_setup_step). */
#define LXM_SETUP_STEP(fn)                                                                         \
	int fn(const struct lxm_container_spec *s, const struct lxm_setup_fds *fds,                \
	       struct lxm_error **err)

/* setup-mounts.c: file systems, from the private mount namespace to pivot_root. Between
 * lxm_step_mount_rootfs and lxm_step_pivot_root the working directory is the root of the attached
 * rootfs mount: every later mount step resolves its targets beneath it. */
LXM_SETUP_STEP(lxm_step_mount_private);
LXM_SETUP_STEP(lxm_step_mount_rootfs);
LXM_SETUP_STEP(lxm_step_mount_proc);
LXM_SETUP_STEP(lxm_step_mount_sys);
LXM_SETUP_STEP(lxm_step_mount_dev);
LXM_SETUP_STEP(lxm_step_mount_console);
LXM_SETUP_STEP(lxm_step_mount_run);
LXM_SETUP_STEP(lxm_step_mount_cgroup);
LXM_SETUP_STEP(lxm_step_mount_extra);
LXM_SETUP_STEP(lxm_step_pivot_root);

/* setup-security.c: the container's root ids (first of all), then identity, limits and
 * confinement, after pivot_root. */
LXM_SETUP_STEP(lxm_step_idmap);
LXM_SETUP_STEP(lxm_step_hostname);
LXM_SETUP_STEP(lxm_step_loopback);
LXM_SETUP_STEP(lxm_step_rlimits);
LXM_SETUP_STEP(lxm_step_capabilities);
LXM_SETUP_STEP(lxm_step_lsm);
LXM_SETUP_STEP(lxm_step_no_new_privs);
LXM_SETUP_STEP(lxm_step_seccomp);

/* LSM drivers (lsm-apparmor.c, lsm-selinux.c), each with a no-op build without its library.
 * They return 0 when the label is set for the next exec, 1 when the kernel (or the build) lacks
 * that LSM so nothing was done, or -errno with err set. */
int lxm_lsm_apparmor_apply(const char *profile, struct lxm_error **err);
int lxm_lsm_selinux_apply(const char *label, struct lxm_error **err);

/* The mount size of the container's /dev tmpfs: nodes, symlinks and a few directories only. */
#define LXM_DEV_TMPFS_SIZE "1m"
/* The environment of init when the spec has none: a PATH, and container=lxc so that systemd and
 * other inits recognise a container exactly as under LXD. */
#define LXM_INIT_DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
