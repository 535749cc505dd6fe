/* The syscall part of the policy: the default deny list and the security.syscalls.* keys. The
 * policy holds names only; the runtime resolves them with libseccomp for the instance's
 * architecture, so a name that is well formed but unknown there fails at start, not here. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "policy-internal.h"
#include "policy.h"
#include "util.h"

/* What LXC and LXD deny (anchors.md), plus kexec_file_load, the newer door to the same thing:
 * replacing the running kernel, loading or removing kernel modules, and open_by_handle_at, which
 * opens any inode of a mounted file system by handle and so walks around a container's root.
 * Forced unmounts are on the list too, as an argument filter: see deny_forced_umount. */
const char *const lxm_seccomp_default_deny[] = {
	"kexec_load",  "kexec_file_load", "open_by_handle_at",
	"init_module", "finit_module",	  "delete_module",
	NULL,
};

/* Longer than any syscall name; a bound keeps pasted garbage out of the policy. */
#define SYSCALL_NAME_MAX 64

/* The shape of a syscall name as libseccomp spells it: lower case, digits and '_' ("_llseek"),
 * not starting with a digit. */
static bool syscall_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SYSCALL_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static bool strv_contains(char *const *v, const char *s)
{
	for (; v && *v; v++)
		if (streq(*v, s))
			return true;
	return false;
}

static bool is_default_denied(const char *s)
{
	for (const char *const *d = lxm_seccomp_default_deny; *d; d++)
		if (streq(*d, s))
			return true;
	return false;
}

/* Splits and checks a list of syscall names; duplicates are dropped (they mean nothing more). */
static int parse_names(const char *key, const char *value, char ***ret, struct lxm_error **err)
{
	_cleanup_strv_ char **words = NULL;
	size_t n = 0;
	int r;

	r = lxm_split_words(value, &words);
	if (r < 0)
		return r;
	if (!words[0])
		return lxm_policy_bad_value(err, key, value,
					    "names no syscall; expected syscall names separated "
					    "by commas, spaces or new lines, e.g. bpf,userfaultfd");
	for (size_t k = 0; words[k]; k++)
		if (!syscall_name_valid(words[k]))
			return lxm_policy_bad_value(err, key, value,
						    "'%s' is not a syscall name (names are lower "
						    "case letters, digits and '_', e.g. "
						    "bpf,userfaultfd)",
						    words[k]);
	/* Compacts in place after the checks, which are the only way out, so that the cleanup
	 * never sees a moved or freed slot: words[0..n) are the distinct names so far. */
	for (size_t k = 0; words[k]; k++) {
		bool dup = false;

		for (size_t j = 0; j < n && !dup; j++)
			dup = streq(words[j], words[k]);
		if (dup)
			free(words[k]);
		else
			words[n++] = words[k];
	}
	words[n] = NULL;
	*ret = TAKE_PTR(words);
	return 0;
}

/* The deny list: the defaults (unless switched off), then the user's names not already there. */
static int build_deny(bool with_defaults, char **user, char ***ret)
{
	_cleanup_strv_ char **v = NULL;
	size_t n = 0, cap = ARRAY_SIZE(lxm_seccomp_default_deny);

	for (char **s = user; s && *s; s++)
		cap++;
	v = calloc(cap, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (const char *const *d = lxm_seccomp_default_deny; with_defaults && *d; d++)
		if (!(v[n++] = strdup(*d)))
			return -ENOMEM;
	for (char **s = user; s && *s; s++) {
		if (strv_contains(v, *s))
			continue;
		if (!(v[n++] = strdup(*s)))
			return -ENOMEM;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

int lxm_seccomp_policy(const char *deny, const char *deny_default, const char *allow,
		       struct lxm_policy *p, struct lxm_error **err)
{
	_cleanup_strv_ char **user_deny = NULL, **user_allow = NULL;
	bool with_defaults = true;
	int r;

	if (deny_default &&
	    (r = lxm_parse_bool(KEY_SYSCALLS_DEFAULT, deny_default, &with_defaults, err)) < 0)
		return r;
	if (deny && (r = parse_names(KEY_SYSCALLS_DENY, deny, &user_deny, err)) < 0)
		return r;
	if (allow && (r = parse_names(KEY_SYSCALLS_ALLOW, allow, &user_allow, err)) < 0)
		return r;
	if (user_allow && user_deny)
		return lxm_error_set(err, -EINVAL, 400,
				     "config keys '%s' and '%s' conflict: an allow list already "
				     "denies every syscall it does not name; set only one of them",
				     KEY_SYSCALLS_ALLOW, KEY_SYSCALLS_DENY);
	/* Allowing a default-denied syscall must be said twice, so that it is never an accident. */
	for (char **s = user_allow; with_defaults && s && *s; s++)
		if (is_default_denied(*s))
			return lxm_policy_bad_value(err, KEY_SYSCALLS_ALLOW, allow,
						    "'%s' is on the default deny list; also set "
						    "%s=false to allow it",
						    *s, KEY_SYSCALLS_DEFAULT);

	/* In allow-list mode everything unnamed fails already, so the deny list stays empty. */
	r = build_deny(with_defaults && !user_allow, user_deny, &p->syscalls_deny);
	if (r < 0)
		return r;
	p->syscalls_allow = TAKE_PTR(user_allow);
	p->deny_forced_umount = with_defaults;
	return 0;
}
