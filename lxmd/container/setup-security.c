/* Identity, limits and confinement of init, applied after pivot_root: hostname, rlimits, the
 * capability bounding set, the LSM exec label, no_new_privs and (last) seccomp. The lxm_apply_*
 * functions are also what the exec helper reapplies when it joins a running container. */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "container/setup-internal.h"

/* Below this many open files, ordinary daemons fail; the host's defaults are normally higher. */
#define NOFILE_FLOOR 1024

DEFINE_TRIVIAL_CLEANUP_FUNC(cap_t, cap_free)

LXM_SETUP_STEP(lxm_step_idmap)
{
	/* Until now the child has the monitor's ids, host root, which has no id inside the user
	 * namespace (it shows as nobody): files it created would belong to no one there. The
	 * monitor wrote the maps, so the container's root can be taken now. Without a user
	 * namespace this is a no-op apart from dropping the monitor's supplementary groups. */
	if (setresgid(0, 0, 0) < 0)
		return lxm_error_setx(err, -errno, 500,
				      "setresgid to the container's gid 0 (is it in gid_map?)");
	/* EPERM: setgroups is denied in this user namespace, so there are none to drop. */
	if (setgroups(0, NULL) < 0 && errno != EPERM)
		return lxm_error_setx(err, -errno, 500, "drop supplementary groups");
	if (setresuid(0, 0, 0) < 0)
		return lxm_error_setx(err, -errno, 500,
				      "setresuid to the container's uid 0 (is it in uid_map?)");
	return 0;
}

LXM_SETUP_STEP(lxm_step_hostname)
{
	const char *h = s->hostname ? s->hostname : s->name;

	if (sethostname(h, strlen(h)) < 0)
		return lxm_error_setx(err, -errno, 500, "sethostname '%s'", h);
	return 0;
}

LXM_SETUP_STEP(lxm_step_loopback)
{
	/* Every container gets a working lo whatever its init does (the nic devices come with
	 * managed networks). The socket lives in the container's new network namespace. */
	_cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };

	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "socket for lo");
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return lxm_error_setx(err, -errno, 500, "read the flags of lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return lxm_error_setx(err, -errno, 500, "bring lo up");
	return 0;
}

LXM_SETUP_STEP(lxm_step_rlimits)
{
	struct rlimit rl;

	/* The monitor's limits are inherited as they are (limits.kernel.* will set more here);
	 * only a soft open-files limit below what daemons need is raised, as far as the hard
	 * limit allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return lxm_error_setx(err, -errno, 500, "getrlimit RLIMIT_NOFILE");
	if (rl.rlim_cur >= NOFILE_FLOOR || rl.rlim_cur == rl.rlim_max)
		return 0;
	rl.rlim_cur = rl.rlim_max < NOFILE_FLOOR ? rl.rlim_max : NOFILE_FLOOR;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return lxm_error_setx(err, -errno, 500, "raise RLIMIT_NOFILE to %llu",
				      (unsigned long long)rl.rlim_cur);
	return 0;
}

static int cap_error(struct lxm_error **err, int errnum, const char *what, cap_value_t v)
{
	char *name = cap_to_name(v);
	int r = lxm_error_setx(err, errnum, 500, "%s %s", what, name ? name : "?");

	cap_free(name);
	return r;
}

int lxm_apply_capabilities(const struct lxm_container_spec *s, struct lxm_error **err)
{
	_cleanup_(cap_freep) cap_t caps = NULL;
	/* Capabilities the running kernel does not know cannot be held anyway. */
	cap_value_t last = cap_max_bits();

	if (s->caps_drop) {
		caps = cap_get_proc();
		if (!caps)
			return lxm_error_setx(err, -errno, 500, "read the capability sets");
		for (cap_value_t v = 0; v < last && v < 64; v++) {
			if (!(s->caps_drop & (UINT64_C(1) << v)))
				continue;
			if (cap_drop_bound(v) < 0)
				return cap_error(err, -errno, "drop from the bounding set:", v);
			/* exec gives root permitted = bounding | inheritable: a dropped capability
			 * left inheritable would come back. */
			if (cap_set_flag(caps, CAP_INHERITABLE, 1, &v, CAP_CLEAR) < 0)
				return cap_error(err, -errno, "clear from the inheritable set:", v);
		}
		/* Permitted and effective stay full until exec, which recomputes them from the
		 * bounding set: the remaining steps (seccomp without no_new_privs) need them. */
		if (cap_set_proc(caps) < 0)
			return lxm_error_setx(err, -errno, 500, "set the inheritable capabilities");
	}
	/* Ambient capabilities would survive exec of a non-root program; init gets none. */
	if (cap_reset_ambient() < 0 && errno != EINVAL)
		return lxm_error_setx(err, -errno, 500, "clear the ambient capabilities");
	return 0;
}

LXM_SETUP_STEP(lxm_step_capabilities)
{
	return lxm_apply_capabilities(s, err);
}

/* Returns how many of the requested labels were skipped because the kernel (or this build) lacks
 * that LSM, so the caller can log it once; 0 when everything asked for is set. */
int lxm_apply_lsm(const struct lxm_container_spec *s, struct lxm_error **err)
{
	int skipped = 0, r;

	if (s->apparmor_profile) {
		r = lxm_lsm_apparmor_apply(s->apparmor_profile, err);
		if (r < 0)
			return r;
		skipped += r;
	}
	if (s->selinux_label) {
		r = lxm_lsm_selinux_apply(s->selinux_label, err);
		if (r < 0)
			return r;
		skipped += r;
	}
	return skipped;
}

LXM_SETUP_STEP(lxm_step_lsm)
{
	int r = lxm_apply_lsm(s, err);

	return r < 0 ? r : 0;
}

LXM_SETUP_STEP(lxm_step_no_new_privs)
{
	/* Off by default: with it, setuid programs (su, sudo, ping on old images) stop working in
	 * a system container. */
	if (!s->no_new_privs)
		return 0;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return lxm_error_setx(err, -errno, 500, "set no_new_privs");
	return 0;
}

LXM_SETUP_STEP(lxm_step_seccomp)
{
	int r = lxm_apply_seccomp(s, err);

	return r < 0 ? r : 0;
}
