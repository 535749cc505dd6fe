/* The seccomp filter of a container, built with libseccomp from the spec: a deny list (each name
 * fails with EPERM, everything else allowed) or, when the spec has an allow list, the reverse.
 * Forced unmounts (umount2 with MNT_FORCE) always fail, so a container cannot yank a file system
 * the host shares with it. Without libseccomp this is a no-op that says it skipped. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "container/setup-internal.h"
#include "util.h"

#ifdef HAVE_SECCOMP

#include <seccomp.h>
#include <sys/mount.h>

#include "cleanup.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(scmp_filter_ctx, seccomp_release)

#define DENY SCMP_ACT_ERRNO(EPERM)

/* The other ABIs a process of the native one can switch to (int 0x80, x32 syscall numbers, a
 * 32-bit binary): the filter covers them too, or they would bypass it. */
static const struct {
	uint32_t native, other;
} compat_arches[] = {
	{ SCMP_ARCH_X86_64, SCMP_ARCH_X86 },  { SCMP_ARCH_X86_64, SCMP_ARCH_X32 },
	{ SCMP_ARCH_AARCH64, SCMP_ARCH_ARM }, { SCMP_ARCH_PPC64LE, SCMP_ARCH_PPC64 },
	{ SCMP_ARCH_S390X, SCMP_ARCH_S390 },
};

static bool strv_contains(char **v, const char *s, size_t before)
{
	for (size_t i = 0; v && v[i] && i < before; i++)
		if (streq(v[i], s))
			return true;
	return false;
}

static size_t strv_len(char **v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

static int add_arches(scmp_filter_ctx ctx, struct lxm_error **err)
{
	uint32_t native = seccomp_arch_native();

	for (size_t i = 0; i < ARRAY_SIZE(compat_arches); i++) {
		int r;

		if (compat_arches[i].native != native)
			continue;
		r = seccomp_arch_add(ctx, compat_arches[i].other);
		if (r < 0 && r != -EEXIST)
			return lxm_error_setx(err, r, 500,
					      "seccomp: add the compat architecture %#x",
					      compat_arches[i].other);
	}
	return 0;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, const char *list,
		    struct lxm_error **err)
{
	int nr = seccomp_syscall_resolve_name(name), r;

	/* Names that exist only on another architecture resolve to a pseudo number, which
	 * libseccomp maps per architecture; only a name it has never heard of is an error. */
	if (nr == __NR_SCMP_ERROR)
		return lxm_error_set(err, -EINVAL, 400,
				     "seccomp: unknown syscall '%s' in the %s list", name, list);
	r = seccomp_rule_add(ctx, action, nr, 0);
	if (r < 0 && r != -EEXIST)
		return lxm_error_setx(err, r, 500, "seccomp: add a rule for '%s'", name);
	return 0;
}

static int build_deny(scmp_filter_ctx ctx, const struct lxm_container_spec *s,
		      struct lxm_error **err)
{
	size_t n = strv_len(s->syscalls_deny);
	int r;

	for (size_t i = 0; i < n; i++) {
		if (strv_contains(s->syscalls_deny, s->syscalls_deny[i], i))
			continue;
		r = add_rule(ctx, DENY, s->syscalls_deny[i], "deny", err);
		if (r < 0)
			return r;
	}
	/* A plain umount2 (and the 32-bit umount) stays allowed; only MNT_FORCE is refused, unless
	 * the default deny list was turned off (security.syscalls.deny_default=false). */
	if (s->allow_forced_umount || strv_contains(s->syscalls_deny, "umount2", n))
		return 0;
	r = seccomp_rule_add(ctx, DENY, SCMP_SYS(umount2), 1,
			     SCMP_A1(SCMP_CMP_MASKED_EQ, MNT_FORCE, MNT_FORCE));
	if (r < 0)
		return lxm_error_setx(err, r, 500, "seccomp: add the forced umount rule");
	return 0;
}

static int build_allow(scmp_filter_ctx ctx, const struct lxm_container_spec *s,
		       struct lxm_error **err)
{
	size_t n = strv_len(s->syscalls_allow);
	int r;

	for (size_t i = 0; i < n; i++) {
		const char *name = s->syscalls_allow[i];

		/* A name on both lists is denied: the deny list carries the defaults every
		 * container must keep. */
		if (strv_contains(s->syscalls_allow, name, i) ||
		    strv_contains(s->syscalls_deny, name, SIZE_MAX))
			continue;
		if (!streq(name, "umount2")) {
			r = add_rule(ctx, SCMP_ACT_ALLOW, name, "allow", err);
			if (r < 0)
				return r;
			continue;
		}
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(umount2), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, MNT_FORCE, 0));
		if (r < 0)
			return lxm_error_setx(err, r, 500, "seccomp: add the umount2 rule");
	}
	return 0;
}

int lxm_apply_seccomp(const struct lxm_container_spec *s, struct lxm_error **err)
{
	_cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
	bool allow_mode = s->syscalls_allow != NULL;
	int r;

	ctx = seccomp_init(allow_mode ? DENY : SCMP_ACT_ALLOW);
	if (!ctx)
		return lxm_error_set(err, -ENOMEM, 500, "seccomp: create a filter: out of memory");
	/* libseccomp sets no_new_privs on load unless told not to; that is the spec's choice
	 * (the no-new-privs step), and loading without it is fine for root in its namespace. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, s->no_new_privs ? 1 : 0);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "seccomp: set the no_new_privs attribute");
	r = add_arches(ctx, err);
	if (r >= 0)
		r = allow_mode ? build_allow(ctx, s, err) : build_deny(ctx, s, err);
	if (r < 0)
		return r;
	r = seccomp_load(ctx);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "seccomp: load the filter");
	return 0;
}

#else /* !HAVE_SECCOMP */

/* Built without libseccomp: nothing is filtered. Returns 1 when the spec asked for a filter,
 * so the caller can log that the container runs without one. */
int lxm_apply_seccomp(const struct lxm_container_spec *s, struct lxm_error **err)
{
	return s->syscalls_deny || s->syscalls_allow ? 1 : 0;
}

#endif
