/* The generated AppArmor profile of an instance. A system container runs a whole distribution,
 * so the profile allows the broad classes (files, network, capabilities, signals inside) and then
 * denies the specific ways to reach the host: kernel-wide sysctls and sysfs knobs, kernel debug
 * and security file systems, binds that would carry a denied file to a path no rule names, and
 * tracing or signalling anything outside the instance. Everything else is left to the namespaces,
 * the bounding set and seccomp; the profile is one layer, not the whole wall. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "policy-internal.h"
#include "policy.h"

/* Where lxmd keeps its state when the host says nothing (DESIGN.md). */
#define DEFAULT_ROOT "/var/lib/lxm"

/* Longest root that is spelled out in the profile name; longer ones are hashed. */
#define ROOT_PART_MAX 64

/* Instance names are hostname labels (lib/util.h). */
#define INSTANCE_NAME_MAX 63

/* The kernel's bound on a label it accepts from user space is larger; this is plenty. */
#define PROFILE_NAME_MAX 255

/* ---- the profile name ---- */

static bool instance_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > INSTANCE_NAME_MAX)
		return false;
	for (; *name; name++)
		if (!((*name >= 'a' && *name <= 'z') || (*name >= 'A' && *name <= 'Z') ||
		      (*name >= '0' && *name <= '9') || *name == '-'))
			return false;
	return true;
}

/* FNV-1a: a short, stable digest of a root path; not a security boundary, only a name. */
static uint64_t fnv1a(const char *s)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* The name is "lxm-<instance>_<root>", so that two lxmd with different roots on one host never
 * load over each other's profiles. <root> is the root path with repeated and outer slashes
 * dropped and the inner ones turned into '-' ("/var/lib/lxm" -> "var-lib-lxm"), when the path
 * has only letters, digits, '.' and '/' and is at most ROOT_PART_MAX long. Any other root
 * (one with '-', '_', spaces, ...) becomes "_" and 16 hex digits of its hash. The two forms
 * cannot meet: the spelled-out one never holds '_', and since '-' only stands for '/', it maps
 * back to exactly one path. The result uses [A-Za-z0-9._-] only, so it needs no quoting
 * anywhere AppArmor takes a profile name; the instance name ends at the first '_', which
 * instance names cannot contain. */
int lxm_apparmor_profile_name(const char *name, const char *root, char **ret)
{
	_cleanup_free_ char *norm = NULL;
	size_t n = 0;
	bool clean = true;

	if (!instance_name_valid(name))
		return -EINVAL;
	if (!root || !*root)
		root = DEFAULT_ROOT;
	norm = malloc(strlen(root) + 2);
	if (!norm)
		return -ENOMEM;
	for (const char *s = root; *s; s++) {
		if (*s == '/') {
			if (n > 0 && norm[n - 1] != '/')
				norm[n++] = '/';
			continue;
		}
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.'))
			clean = false;
		norm[n++] = *s;
	}
	if (n > 0 && norm[n - 1] == '/')
		n--;
	norm[n] = '\0';
	if (clean && n > 0 && n <= ROOT_PART_MAX) {
		for (char *s = norm; *s; s++)
			if (*s == '/')
				*s = '-';
		return asprintf(ret, "lxm-%s_%s", name, norm) < 0 ? -ENOMEM : 0;
	}
	return asprintf(ret, "lxm-%s__%016llx", name, (unsigned long long)fnv1a(norm)) < 0 ? -ENOMEM
											   : 0;
}

/* A name from security.apparmor.profile goes to the kernel as written ("exec <name>"), and may be
 * a child ("a//b"), a stack or namespaced; only what cannot be a label is refused. */
bool lxm_apparmor_name_valid(const char *profile)
{
	size_t n = profile ? strlen(profile) : 0;

	if (n == 0 || n > PROFILE_NAME_MAX)
		return false;
	for (; *profile; profile++)
		if (*profile <= ' ' || *profile > '~' || *profile == '"' || *profile == '\\')
			return false;
	return true;
}

/* ---- "every name but these" as AppArmor globs ---- */

#define GLOB_WORD_MAX 32

struct except_ctx {
	struct lxm_buf *b;
	const char *rule;	 /* text before the path, e.g. "deny " */
	const char *dir;	 /* directory the names are in, with a trailing '/' */
	const char *perms;	 /* text after the path, e.g. " wklx" */
	const char *const *keep; /* names to leave out, NULL-terminated */
};

static void except_emit(const struct except_ctx *c, const char *glob)
{
	lxm_buf_printf(c->b, "  %s%s%s{,/**}%s,\n", c->rule, c->dir, glob, c->perms);
}

/* Walks the trie of the kept names. At a node with prefix p (depth characters), a component
 * that is p itself is matched unless p is a kept name, and one that continues with a character
 * no kept name continues with is matched by p[^...]*; the rest is the children's business. */
static void except_node(const struct except_ctx *c, const char *prefix, size_t depth)
{
	char next[GLOB_WORD_MAX] = "", glob[2 * GLOB_WORD_MAX + 16];
	size_t nnext = 0;
	bool is_word = false;

	for (const char *const *w = c->keep; *w; w++) {
		if (strncmp(*w, prefix, depth) != 0)
			continue;
		if ((*w)[depth] == '\0') {
			is_word = true;
		} else if (!memchr(next, (*w)[depth], nnext) && nnext + 1 < sizeof(next)) {
			size_t k = nnext++;

			/* Insertion keeps the class sorted, so the text is stable. */
			while (k > 0 && next[k - 1] > (*w)[depth]) {
				next[k] = next[k - 1];
				k--;
			}
			next[k] = (*w)[depth];
		}
	}
	if (nnext == 0)
		snprintf(glob, sizeof(glob), "%.*s?*", (int)depth, prefix);
	else if (!is_word && depth > 0)
		snprintf(glob, sizeof(glob), "%.*s{,[^%.*s]*}", (int)depth, prefix, (int)nnext,
			 next);
	else
		snprintf(glob, sizeof(glob), "%.*s[^%.*s]*", (int)depth, prefix, (int)nnext, next);
	except_emit(c, glob);

	for (size_t k = 0; k < nnext && depth + 1 < GLOB_WORD_MAX; k++) {
		char child[GLOB_WORD_MAX];

		memcpy(child, prefix, depth);
		child[depth] = next[k];
		child[depth + 1] = '\0';
		except_node(c, child, depth + 1);
	}
}

/* Emits rules that together match every entry of dir and everything below it, except the kept
 * names and what is below them. keep holds [a-z0-9_] words shorter than GLOB_WORD_MAX. */
static void rules_except(struct lxm_buf *b, const char *rule, const char *dir,
			 const char *const *keep, const char *perms)
{
	struct except_ctx c = { b, rule, dir, perms, keep };

	except_node(&c, "", 0);
}

/* ---- the profile text ---- */

/* Sysctls a container's own namespaces own (IPC, UTS, PID): writing them touches only itself. */
static const char *const sysctl_kernel_keep[] = {
	"domainname", "hostname", "msgmax", "msgmnb", "msgmni",		 "ns_last_pid",
	"sem",	      "shmall",	  "shmmax", "shmmni", "shm_rmid_forced", NULL,
};
static const char *const sysctl_keep[] = { "fs", "kernel", "net", "user", NULL };
static const char *const sysctl_fs_keep[] = { "mqueue", NULL };
static const char *const sys_keep[] = { "class", "devices", "fs", NULL };
static const char *const sys_keep_nesting[] = { "class", "devices", "fs", "kernel", NULL };
static const char *const sys_fs_keep[] = { "cgroup", "fuse", NULL };
static const char *const sys_fuse_keep[] = { "connections", NULL };
static const char *const sys_class_keep[] = { "net", NULL };
static const char *const sys_devices_keep[] = { "virtual", NULL };
static const char *const sys_virtual_keep[] = { "net", NULL };
static const char *const sys_kernel_keep_nesting[] = { "security", NULL };
static const char *const securityfs_keep_nesting[] = { "apparmor", NULL };
/* Bind sources: everything but /proc and /sys, whose files the deny rules name by path. */
static const char *const bind_keep[] = { "proc", "sys", NULL };

static void emit_base(struct lxm_buf *b, const char *pname)
{
	lxm_buf_printf(b, "  network,\n"
			  "  capability,\n"
			  "  file,\n"
			  "  dbus,\n"
			  "  unix,\n"
			  "  umount,\n"
			  "  pivot_root,\n\n");
	lxm_buf_printf(
		b,
		"  # Signals and tracing stay inside the instance; the host's unconfined tools\n"
		"  # (lxmd stopping init, ps reading /proc) may reach in, never the reverse.\n"
		"  signal (send, receive) peer=%s,\n"
		"  signal (receive) peer=unconfined,\n"
		"  ptrace (read, trace, readby, tracedby) peer=%s,\n"
		"  ptrace (readby, tracedby) peer=unconfined,\n"
		"  deny ptrace (read, trace) peer=unconfined,\n\n",
		pname, pname);
}

static void emit_file_denies(struct lxm_buf *b, bool nesting)
{
	lxm_buf_printf(
		b, "  # Kernel-wide sysctls. What the instance's namespaces own stays writable:\n"
		   "  # net/, user/, fs/mqueue/ and the IPC, UTS and PID entries of kernel/.\n");
	rules_except(b, "deny ", "/proc/sys/", sysctl_keep, " wklx");
	rules_except(b, "deny ", "/proc/sys/kernel/", sysctl_kernel_keep, " wklx");
	rules_except(b, "deny ", "/proc/sys/fs/", sysctl_fs_keep, " wklx");
	lxm_buf_printf(b, "  deny /proc/{sysrq-trigger,kcore,kmsg} rwklx,\n"
			  "  deny /proc/{acpi,bus,driver,fs,irq,scsi,tty}/{,**} wklx,\n"
			  "  deny /dev/{mem,kmem,port} rwklx,\n\n");

	lxm_buf_printf(b,
		       "  # sysfs is the host's: only the instance's cgroup, its network devices\n"
		       "  # and fuse connections are written by a container.\n");
	rules_except(b, "deny ", "/sys/", nesting ? sys_keep_nesting : sys_keep, " wklx");
	rules_except(b, "deny ", "/sys/fs/", sys_fs_keep, " wklx");
	rules_except(b, "deny ", "/sys/fs/fuse/", sys_fuse_keep, " wklx");
	rules_except(b, "deny ", "/sys/class/", sys_class_keep, " wklx");
	rules_except(b, "deny ", "/sys/devices/", sys_devices_keep, " wklx");
	rules_except(b, "deny ", "/sys/devices/virtual/", sys_virtual_keep, " wklx");
	/* A cgroup v1 release_agent runs a program on the host as root (CVE-2022-0492). */
	lxm_buf_printf(b, "  deny /sys/fs/cgroup/{,**/}release_agent wklx,\n");
	if (nesting) {
		/* Nested instances load their own AppArmor policy, in a namespace of ours. */
		rules_except(b, "deny ", "/sys/kernel/", sys_kernel_keep_nesting, " wklx");
		rules_except(b, "deny ", "/sys/kernel/security/", securityfs_keep_nesting,
			     " rwklx");
	} else {
		lxm_buf_printf(b, "  deny /sys/kernel/security/{,**} rwklx,\n");
	}
	lxm_buf_printf(b, "  deny /sys/firmware/efi/efivars/{,**} rwklx,\n\n");
}

/* The flag sets a read-only bind remount may carry: systemd keeps a mount's nosuid, nodev,
 * noexec and relatime when it makes a path read-only (ProtectSystem=, ReadOnlyPaths=). */
static void emit_ro_remounts(struct lxm_buf *b)
{
	static const char *const flags[] = { "nosuid", "nodev", "noexec", "relatime" };

	for (unsigned set = 0; set < 1u << ARRAY_SIZE(flags); set++) {
		lxm_buf_printf(b, "  mount options=(ro, remount, bind");
		for (size_t k = 0; k < ARRAY_SIZE(flags); k++)
			if (set & (1u << k))
				lxm_buf_printf(b, ", %s", flags[k]);
		lxm_buf_printf(b, ") -> **,\n");
	}
}

/* Privileged root is host root, so the kernel's user-namespace checks do not hold mounts back;
 * allow what a distribution's init mounts, by type and place, and nothing else. */
static void emit_privileged_mounts(struct lxm_buf *b)
{
	static const char *const propagation[] = {
		"slave",  "rslave",  "private",	   "rprivate",
		"shared", "rshared", "unbindable", "runbindable"
	};
	static const char *const binds[] = { "bind", "rbind", "move" };

	lxm_buf_printf(b, "  mount fstype=proc -> /proc/,\n"
			  "  mount fstype=sysfs -> /sys/,\n"
			  "  mount fstype=tmpfs,\n"
			  "  mount fstype=ramfs,\n"
			  "  mount fstype=mqueue,\n"
			  "  mount fstype=hugetlbfs,\n"
			  "  mount fstype=fuse,\n"
			  "  mount fstype=fuse.*,\n"
			  "  mount fstype=fusectl -> /sys/fs/fuse/connections/,\n"
			  "  mount fstype=cgroup -> /sys/fs/cgroup/{,**},\n"
			  "  mount fstype=cgroup2 -> /sys/fs/cgroup/{,**},\n");
	for (size_t k = 0; k < ARRAY_SIZE(propagation); k++)
		lxm_buf_printf(b, "  mount options=(rw, make-%s) -> **,\n", propagation[k]);
	emit_ro_remounts(b);
	lxm_buf_printf(
		b, "  # Binds and moves of anything but /proc and /sys: carrying a denied file\n"
		   "  # to another path would take it out of reach of the rules above.\n");
	for (size_t k = 0; k < ARRAY_SIZE(binds); k++) {
		char rule[32];

		snprintf(rule, sizeof(rule), "mount options=(rw, %s) ", binds[k]);
		rules_except(b, rule, "/", bind_keep, " -> **");
	}
}

static void emit_mounts(struct lxm_buf *b, bool privileged, bool nesting)
{
	lxm_buf_printf(
		b, "  # Kernel debug and security file systems expose the host's kernel.\n"
		   "  deny mount fstype=debugfs,\n"
		   "  deny mount fstype=tracefs,\n"
		   "  deny mount fstype=securityfs,\n"
		   "  deny mount fstype=efivarfs,\n"
		   "  deny mount fstype=binfmt_misc,\n"
		   "  # Remounting / read-only (not a bind remount) would change the flags of a\n"
		   "  # file system the host may share.\n"
		   "  deny mount options=(ro, remount) -> /,\n"
		   "  deny mount options=(ro, remount, silent) -> /,\n\n");
	if (!privileged) {
		lxm_buf_printf(
			b,
			"  # In a user namespace the kernel refuses what path rules would guard\n"
			"  # against: proc and sysfs mount only where fully visible, inherited\n"
			"  # mount flags are locked, host-owned files stay unwritable.\n"
			"  mount,\n\n");
		return;
	}
	emit_privileged_mounts(b);
	if (nesting)
		lxm_buf_printf(b,
			       "  # Nested containers mount their own proc, sysfs and devpts in\n"
			       "  # their root file systems.\n"
			       "  mount fstype=proc,\n"
			       "  mount fstype=sysfs,\n"
			       "  mount fstype=devpts,\n"
			       "  mount fstype=cgroup,\n"
			       "  mount fstype=cgroup2,\n"
			       "  mount fstype=overlay,\n"
			       "  mount options=(rw, bind),\n"
			       "  mount options=(rw, rbind),\n");
	lxm_buf_printf(b, "\n");
}

/* Nested instances run under a profile of their own, stacked on ours inside an AppArmor policy
 * namespace named after ours, so they can never have more than this profile allows. */
static void emit_nesting(struct lxm_buf *b, const char *pname)
{
	lxm_buf_printf(b,
		       "  # Nesting: the instance's own runtime confines its nested instances.\n"
		       "  change_profile -> \"%s//&:%s:*\",\n"
		       "  signal (send, receive) peer=\"%s//&:%s:*\",\n"
		       "  ptrace (read, trace) peer=\"%s//&:%s:*\",\n",
		       pname, pname, pname, pname, pname, pname);
}

int lxm_apparmor_profile(const char *name, const struct lxm_policy_host *host, bool nesting,
			 bool privileged, char **ret_name, char **ret_text)
{
	_cleanup_free_ char *pname = NULL;
	struct lxm_buf b = { 0 };
	char *text;
	int r;

	r = lxm_apparmor_profile_name(name, host ? host->root : NULL, &pname);
	if (r < 0)
		return r;
	lxm_buf_printf(
		&b,
		"# AppArmor profile of lxm instance '%s' (%s, nesting %s), generated by lxmd\n"
		"# at each start: edits are lost. Use security.apparmor.profile for your own.\n"
		"profile %s flags=(attach_disconnected,mediate_deleted) {\n",
		name, privileged ? "privileged" : "unprivileged", nesting ? "on" : "off", pname);
	emit_base(&b, pname);
	emit_file_denies(&b, nesting);
	emit_mounts(&b, privileged, nesting);
	if (nesting)
		emit_nesting(&b, pname);
	lxm_buf_printf(&b, "}\n");
	text = lxm_buf_steal(&b);
	if (!text)
		return -ENOMEM;
	*ret_name = TAKE_PTR(pname);
	*ret_text = text;
	return 0;
}
