/* Capability names and the default bounding-set drop list. Names resolve without libcap so that
 * the compiler stays pure and a capability newer than the installed libcap still has a name. */
#include "config.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "policy-internal.h"
#include "policy.h"

/* Older kernel headers lack the newest capabilities; their numbers are fixed ABI. */
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif
#ifndef CAP_CHECKPOINT_RESTORE
#define CAP_CHECKPOINT_RESTORE 40
#endif

_Static_assert(CAP_CHECKPOINT_RESTORE == LXM_CAP_LAST, "LXM_CAP_LAST is the last capability");

/* Indexed by number; the names are capabilities(7)'s without the "CAP_" prefix, in lower case. */
static const char *const cap_names[LXM_CAP_LAST + 1] = {
	[CAP_CHOWN] = "chown",
	[CAP_DAC_OVERRIDE] = "dac_override",
	[CAP_DAC_READ_SEARCH] = "dac_read_search",
	[CAP_FOWNER] = "fowner",
	[CAP_FSETID] = "fsetid",
	[CAP_KILL] = "kill",
	[CAP_SETGID] = "setgid",
	[CAP_SETUID] = "setuid",
	[CAP_SETPCAP] = "setpcap",
	[CAP_LINUX_IMMUTABLE] = "linux_immutable",
	[CAP_NET_BIND_SERVICE] = "net_bind_service",
	[CAP_NET_BROADCAST] = "net_broadcast",
	[CAP_NET_ADMIN] = "net_admin",
	[CAP_NET_RAW] = "net_raw",
	[CAP_IPC_LOCK] = "ipc_lock",
	[CAP_IPC_OWNER] = "ipc_owner",
	[CAP_SYS_MODULE] = "sys_module",
	[CAP_SYS_RAWIO] = "sys_rawio",
	[CAP_SYS_CHROOT] = "sys_chroot",
	[CAP_SYS_PTRACE] = "sys_ptrace",
	[CAP_SYS_PACCT] = "sys_pacct",
	[CAP_SYS_ADMIN] = "sys_admin",
	[CAP_SYS_BOOT] = "sys_boot",
	[CAP_SYS_NICE] = "sys_nice",
	[CAP_SYS_RESOURCE] = "sys_resource",
	[CAP_SYS_TIME] = "sys_time",
	[CAP_SYS_TTY_CONFIG] = "sys_tty_config",
	[CAP_MKNOD] = "mknod",
	[CAP_LEASE] = "lease",
	[CAP_AUDIT_WRITE] = "audit_write",
	[CAP_AUDIT_CONTROL] = "audit_control",
	[CAP_SETFCAP] = "setfcap",
	[CAP_MAC_OVERRIDE] = "mac_override",
	[CAP_MAC_ADMIN] = "mac_admin",
	[CAP_SYSLOG] = "syslog",
	[CAP_WAKE_ALARM] = "wake_alarm",
	[CAP_BLOCK_SUSPEND] = "block_suspend",
	[CAP_AUDIT_READ] = "audit_read",
	[CAP_PERFMON] = "perfmon",
	[CAP_BPF] = "bpf",
	[CAP_CHECKPOINT_RESTORE] = "checkpoint_restore",
};

#define CAP_BIT(c) (UINT64_C(1) << (c))

/* What LXC and LXD drop (anchors.md): loading kernel modules, setting the host clock, raw I/O
 * ports and memory, and changing the host's MAC policy all act on the host kernel, whatever the
 * namespace. CAP_SYS_BOOT stays: in a PID namespace reboot(2) only ends the container's own
 * init, which is how systemd inside finishes "poweroff" and "reboot". Privileged containers drop
 * the same set, as in LXD: their isolation rests on the LSM profile, not on a longer list. */
static const uint64_t default_drop = CAP_BIT(CAP_SYS_MODULE) | CAP_BIT(CAP_SYS_TIME) |
				     CAP_BIT(CAP_SYS_RAWIO) | CAP_BIT(CAP_MAC_ADMIN) |
				     CAP_BIT(CAP_MAC_OVERRIDE);

uint64_t lxm_caps_default_drop(bool privileged)
{
	(void)privileged;
	return default_drop;
}

const char *lxm_cap_name(int cap)
{
	return cap >= 0 && cap <= LXM_CAP_LAST ? cap_names[cap] : NULL;
}

int lxm_cap_from_name(const char *name)
{
	if (!name)
		return -EINVAL;
	if (strncasecmp(name, "cap_", 4) == 0)
		name += 4;
	for (int c = 0; c <= LXM_CAP_LAST; c++)
		if (cap_names[c] && strcasecmp(name, cap_names[c]) == 0)
			return c;
	return -EINVAL;
}

int lxm_caps_parse(const char *key, const char *value, uint64_t *ret_mask, struct lxm_error **err)
{
	_cleanup_strv_ char **words = NULL;
	uint64_t mask = 0;
	int r;

	r = lxm_split_words(value ? value : "", &words);
	if (r < 0)
		return r;
	for (char **w = words; *w; w++) {
		const char *bare = strncasecmp(*w, "cap_", 4) == 0 ? *w + 4 : *w;
		int c = lxm_cap_from_name(*w);

		if (c < 0)
			return lxm_policy_bad_value(
				err, key, value,
				"unknown capability '%s' (did you mean '%s'?); expected "
				"capability names separated by commas, as in capabilities(7) with "
				"or without CAP_, e.g. sys_admin,net_raw",
				*w, lxm_closest_word(bare, cap_names, ARRAY_SIZE(cap_names)));
		mask |= CAP_BIT(c);
	}
	*ret_mask = mask;
	return 0;
}
