/* The instance config key table and the checks built on it. Each validator reuses the policy
 * compiler's parser for its key, so a value the table accepts is one the compiler reads the same
 * way, with the same message when it does not. Checks that need the host (CPU ids, a percentage
 * of its memory) or several keys together (an allow list against the default deny list) stay
 * with the compiler, which sees the expanded config. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "json.h"
#include "keys.h"
#include "policy-internal.h"
#include "policy.h"
#include "util.h"

/* Percentages of the host's memory are checked against this here (any size would do: only the
 * compiler knows the host's); the compiler checks them again with the real size. */
#define NOMINAL_HOST_MEMORY (UINT64_C(1) << 40)

static int check_bool(const struct lxm_config_key *k, const char *key, const char *value,
		      struct lxm_error **err)
{
	bool b;

	(void)k;
	return lxm_parse_bool(key, value, &b, err);
}

static int check_int(const struct lxm_config_key *k, const char *key, const char *value,
		     struct lxm_error **err)
{
	int64_t v;

	return lxm_parse_int(key, value, k->min, k->max, &v, err);
}

static int check_size(const struct lxm_config_key *k, const char *key, const char *value,
		      struct lxm_error **err)
{
	int64_t v;

	(void)k;
	return lxm_parse_size(key, value, NOMINAL_HOST_MEMORY, &v, err);
}

static int check_cpu(const struct lxm_config_key *k, const char *key, const char *value,
		     struct lxm_error **err)
{
	_cleanup_free_ char *set = NULL;

	(void)k;
	return lxm_parse_cpu(key, value, 0, &set, err);
}

static int check_allowance(const struct lxm_config_key *k, const char *key, const char *value,
			   struct lxm_error **err)
{
	int64_t quota, period;

	(void)k;
	return lxm_parse_allowance(key, value, &quota, &period, err);
}

static int check_signal(const struct lxm_config_key *k, const char *key, const char *value,
			struct lxm_error **err)
{
	int sig;

	(void)k;
	return lxm_parse_signal(key, value, &sig, err);
}

static int check_time_offset(const struct lxm_config_key *k, const char *key, const char *value,
			     struct lxm_error **err)
{
	int64_t mono, boot;

	(void)k;
	return lxm_parse_time_offset(key, value, &mono, &boot, err);
}

static int check_caps(const struct lxm_config_key *k, const char *key, const char *value,
		      struct lxm_error **err)
{
	uint64_t mask;

	(void)k;
	return lxm_caps_parse(key, value, &mask, err);
}

/* One list on its own: deny_default=false keeps the check to the names themselves (whether an
 * allow list may name a default-denied syscall depends on the expanded config). */
static int check_syscalls(const struct lxm_config_key *k, const char *key, const char *value,
			  struct lxm_error **err)
{
	struct lxm_policy p = { 0 };
	bool allow = streq(key, KEY_SYSCALLS_ALLOW);
	int r;

	(void)k;
	r = lxm_seccomp_policy(allow ? NULL : value, "false", allow ? value : NULL, &p, err);
	lxm_strv_free(p.syscalls_deny);
	lxm_strv_free(p.syscalls_allow);
	return r;
}

/* Keys whose only check lives in the compiler: it compiles a config of this one key on a host
 * that has nothing (no AppArmor, no SELinux, no CPU or memory size), so that only the value's
 * form is judged, with the compiler's own message. */
static int check_compile(const struct lxm_config_key *k, const char *key, const char *value,
			 struct lxm_error **err)
{
	_cleanup_json_ json_t *cfg = json_pack("{s:s}", key, value);
	struct lxm_policy_host host = { .root = "/" };
	struct lxm_policy *p = NULL;
	int r;

	(void)k;
	if (!cfg)
		return lxm_error_set(err, -ENOMEM, 500, "config key '%s': out of memory", key);
	r = lxm_policy_compile("config-check", cfg, &host, &p, err);
	lxm_policy_free(p);
	return r;
}

static int check_raw_idmap(const struct lxm_config_key *k, const char *key, const char *value,
			   struct lxm_error **err)
{
	_cleanup_free_ struct lxm_raw_idmap *map = NULL;
	size_t n;

	(void)k;
	return lxm_parse_raw_idmap(key, value, &map, &n, err);
}

/* A unicast MAC address, xx:xx:xx:xx:xx:xx in hex digits. */
static int check_hwaddr(const struct lxm_config_key *k, const char *key, const char *value,
			struct lxm_error **err)
{
	bool ok = strlen(value) == 17;

	(void)k;
	for (size_t i = 0; ok && i < 17; i++)
		ok = i % 3 == 2 ? value[i] == ':' : isxdigit((unsigned char)value[i]);
	/* The low bit of the first byte marks a multicast address, which no interface can have. */
	if (ok && (strtoul((char[]){ value[0], value[1], '\0' }, NULL, 16) & 1))
		return lxm_policy_bad_value(err, key, value,
					    "a multicast address cannot be an interface's MAC; "
					    "use a unicast one such as 00:16:3e:12:34:56");
	if (!ok)
		return lxm_policy_bad_value(err, key, value,
					    "expected a MAC address xx:xx:xx:xx:xx:xx in hex, e.g. "
					    "00:16:3e:12:34:56");
	return 0;
}

/* security.vm.accel: the accelerator a VM runs under, overriding the KVM probe. */
static int check_vm_accel(const struct lxm_config_key *k, const char *key, const char *value,
			  struct lxm_error **err)
{
	(void)k;
	if (streq(value, "kvm") || streq(value, "tcg"))
		return 0;
	return lxm_policy_bad_value(err, key, value, "expected kvm or tcg");
}

/* Shorthands for the table. */
#define USER(...)                                                                                  \
	{                                                                                          \
		.access = LXM_KEY_USER, __VA_ARGS__                                                \
	}
#define READONLY(...)                                                                              \
	{                                                                                          \
		.access = LXM_KEY_READONLY, .instance_only = true, __VA_ARGS__                     \
	}
#define UNSUPPORTED(...)                                                                           \
	{                                                                                          \
		.access = LXM_KEY_UNSUPPORTED, __VA_ARGS__                                         \
	}

const struct lxm_config_key lxm_config_keys[] = {
	/* limits.*: cgroup limits, written to a running instance's cgroup at once. */
	USER(.name = KEY_MEMORY, .type = "size or percentage", .check = check_size, .live = true,
	     .description = "memory limit (512MiB, 1GB, or 50% of the host's memory)"),
	USER(.name = KEY_MEMORY_SWAP, .type = "boolean", .check = check_bool, .live = true,
	     .description = "whether the instance may swap (default true)"),
	USER(.name = KEY_MEMORY_ENFORCE, .type = "hard|soft", .check = check_compile, .live = true,
	     .description = "hard: limits.memory is a cap; soft: a reservation kept from reclaim"),
	USER(.name = KEY_CPU, .type = "CPU count or list", .check = check_cpu, .live = true,
	     .description = "CPUs the instance runs on: a count (2) or ids and ranges (0-1,3)"),
	USER(.name = KEY_CPU_ALLOWANCE, .type = "percentage or time/period",
	     .check = check_allowance, .live = true,
	     .description = "CPU time: 50% of one CPU, or 25ms/100ms"),
	USER(.name = KEY_CPU_PRIORITY, .type = "integer 0-10", .check = check_int, .min = 0,
	     .max = 10, .live = true,
	     .description = "CPU weight against other instances (10, the default, is highest)"),
	USER(.name = KEY_PROCESSES, .type = "integer", .check = check_int, .min = 1,
	     .max = INT64_MAX, .live = true, .description = "most processes the instance may run"),
	USER(.name = KEY_DISK_PRIORITY, .type = "integer 0-10", .check = check_int, .min = 0,
	     .max = 10, .live = true,
	     .description = "I/O weight against other instances (5 is the kernel's default)"),
	USER(.name = KEY_HUGEPAGES "64KB", .type = "size", .check = check_size, .live = true,
	     .description = "bytes of 64 KB huge pages the instance may use"),
	USER(.name = KEY_HUGEPAGES "1MB", .type = "size", .check = check_size, .live = true,
	     .description = "bytes of 1 MB huge pages the instance may use"),
	USER(.name = KEY_HUGEPAGES "2MB", .type = "size", .check = check_size, .live = true,
	     .description = "bytes of 2 MB huge pages the instance may use"),
	USER(.name = KEY_HUGEPAGES "1GB", .type = "size", .check = check_size, .live = true,
	     .description = "bytes of 1 GB huge pages the instance may use"),
	UNSUPPORTED(.name = "limits.memory.hugepages", .type = "boolean", .check = check_bool,
		    .description = "back the instance's memory with huge pages"),
	UNSUPPORTED(.name = "limits.memory.swap.priority", .type = "integer 0-10",
		    .check = check_int, .min = 0, .max = 10,
		    .description = "how early the instance's memory is swapped out"),
	UNSUPPORTED(.name = "limits.network.priority", .type = "integer 0-10", .check = check_int,
		    .min = 0, .max = 10, .description = "network weight against other instances"),
	UNSUPPORTED(.name = "limits.cpu.nodes", .type = "NUMA node list",
		    .description = "NUMA nodes the instance's CPUs come from"),
	UNSUPPORTED(.name = "limits.kernel.*", .type = "resource limit",
		    .description = "process resource limits (setrlimit) for the instance's init"),

	/* security.*: the container's privileges; all but protection.* at next start. A running
	   instance's id map cannot change: lxmd refuses such a change until it is stopped. */
	USER(.name = KEY_PRIVILEGED, .type = "boolean", .check = check_bool,
	     .description = "run without a user namespace: container root is host root"),
	USER(.name = KEY_NESTING, .type = "boolean", .check = check_bool,
	     .description = "allow containers inside the instance"),
	USER(.name = KEY_SYSCALLS_DENY, .type = "syscall list", .check = check_syscalls,
	     .description = "syscalls that fail with EPERM, on top of the default list"),
	USER(.name = KEY_SYSCALLS_ALLOW, .type = "syscall list", .check = check_syscalls,
	     .description = "the only syscalls allowed (an allow list; excludes .deny)"),
	USER(.name = KEY_SYSCALLS_DEFAULT, .type = "boolean", .check = check_bool,
	     .description = "deny the default list (kexec, module loading, open_by_handle_at)"),
	USER(.name = "security.protection.delete", .type = "boolean", .check = check_bool,
	     .live = true, .description = "refuse to delete the instance"),
	USER(.name = KEY_CAPS_DROP, .type = "capability list", .check = check_caps,
	     .description = "capabilities dropped from the bounding set, beyond the default"),
	USER(.name = KEY_CAPS_ADD, .type = "capability list", .check = check_caps,
	     .description = "capabilities kept that are dropped by default"),
	USER(.name = KEY_APPARMOR_PROFILE, .type = "profile name", .check = check_compile,
	     .description = "a loaded AppArmor profile to run under instead of the generated one"),
	USER(.name = KEY_SELINUX_LABEL, .type = "SELinux context", .check = check_compile,
	     .description = "the SELinux context init runs under (user:role:type[:level])"),
	USER(.name = KEY_IDMAP_ISOLATED, .type = "boolean", .check = check_bool,
	     .description = "a host id range of its own, shared with no other instance"),
	USER(.name = KEY_IDMAP_BASE, .type = "integer", .check = check_int, .min = 0,
	     .max = UINT32_MAX - 1, .description = "first host id of an isolated id map"),
	USER(.name = KEY_IDMAP_SIZE, .type = "integer", .check = check_int, .min = 1,
	     .max = UINT32_MAX - 1, .description = "ids in an isolated id map (default 65536)"),
	USER(.name = KEY_PROTECT_SHIFT, .type = "boolean", .check = check_bool, .live = true,
	     .description = "refuse any change of the id map the instance's files were used "
			    "with"),
	UNSUPPORTED(.name = "security.devlxd", .type = "boolean", .check = check_bool,
		    .description = "the /dev/lxd guest API"),
	UNSUPPORTED(.name = "security.devlxd.images", .type = "boolean", .check = check_bool,
		    .description = "image sharing through /dev/lxd"),
	UNSUPPORTED(.name = "security.syscalls.deny_compat", .type = "boolean", .check = check_bool,
		    .description = "deny 32-bit syscalls on 64-bit hosts"),
	UNSUPPORTED(.name = "security.syscalls.intercept.*", .type = "boolean",
		    .description = "syscalls handled by the daemon for the container"),
	USER(.name = "security.vm.accel", .type = "kvm|tcg", .check = check_vm_accel,
	     .description = "a VM's accelerator, overriding the KVM probe (virtual machines)"),
	UNSUPPORTED(.name = "security.secureboot", .type = "boolean", .check = check_bool,
		    .description = "UEFI secure boot (virtual machines)"),

	/* boot.*, linux.*: how the instance starts and stops. */
	USER(.name = KEY_STOP_SIGNAL, .type = "signal", .check = check_signal,
	     .description = "the signal init shuts down cleanly on (default from image.init)"),
	USER(.name = KEY_TIME_OFFSET, .type = "seconds", .check = check_time_offset,
	     .description = "time namespace offsets: 3600, or monotonic=3600 boottime=-60"),
	USER(.name = "boot.autostart", .live = true, .type = "boolean", .check = check_bool,
	     .description = "start the instance when the daemon starts"),
	USER(.name = "boot.autostart.delay", .live = true, .type = "integer", .check = check_int,
	     .min = 0, .max = INT32_MAX,
	     .description = "seconds to wait after starting the instance"),
	USER(.name = "boot.autostart.priority", .live = true, .type = "integer", .check = check_int,
	     .min = -INT32_MAX, .max = INT32_MAX,
	     .description = "order of the instances started with the daemon"),
	USER(.name = "boot.stop.priority", .live = true, .type = "integer", .check = check_int,
	     .min = -INT32_MAX, .max = INT32_MAX,
	     .description = "order of the instances stopped with the daemon"),
	USER(.name = "boot.host_shutdown_timeout", .live = true, .type = "integer",
	     .check = check_int, .min = 0, .max = INT32_MAX,
	     .description = "seconds to wait for a clean stop when the daemon stops"),
	UNSUPPORTED(.name = "linux.kernel_modules", .type = "module list",
		    .description = "kernel modules loaded before the instance starts"),
	UNSUPPORTED(.name = "linux.sysctl.*", .type = "string",
		    .description = "sysctls set in the instance's namespaces"),

	/* snapshots.*: read by lxmd's scheduler every minute; lxmd checks the values. */
	USER(.name = "snapshots.schedule", .type = "cron expression", .live = true,
	     .description = "when to take snapshots (\"0 */6 * * *\", @daily)"),
	USER(.name = "snapshots.schedule.stopped", .type = "boolean", .live = true,
	     .description = "also take scheduled snapshots while the instance is stopped"),
	USER(.name = "snapshots.pattern", .type = "name pattern", .live = true,
	     .description = "name of scheduled snapshots; %d is their number"),
	USER(.name = "snapshots.expiry", .type = "duration", .live = true,
	     .description = "how long snapshots are kept (2w 3d)"),

	/* Free-form keys. */
	USER(.name = "environment.*", .type = "string", .live = true,
	     .description = "an environment variable for commands run in the instance"),
	USER(.name = "user.*", .type = "string", .live = true,
	     .description = "free-form data for users and tools"),

	/* raw.idmap, at next start (refused while the instance runs), then the keys lxm does not
	   implement. */
	USER(.name = KEY_RAW_IDMAP, .type = "id map", .check = check_raw_idmap,
	     .description = "host ids mapped into the instance: 'both 1000 1000', "
			    "'uid 2000-2009 1000-1009'"),
	UNSUPPORTED(.name = "raw.lxc", .type = "LXC config", .description = "raw LXC config"),
	UNSUPPORTED(.name = "raw.apparmor", .type = "AppArmor rules",
		    .description = "rules appended to the generated AppArmor profile"),
	UNSUPPORTED(.name = "raw.seccomp", .type = "seccomp policy",
		    .description = "a raw seccomp policy"),
	UNSUPPORTED(.name = "raw.qemu", .type = "string",
		    .description = "extra QEMU arguments (virtual machines)"),
	UNSUPPORTED(.name = "cloud-init.*", .type = "string",
		    .description = "cloud-init data served through /dev/lxd"),
	UNSUPPORTED(.name = "nvidia.*", .type = "string", .description = "NVIDIA GPU passthrough"),
	UNSUPPORTED(.name = "migration.*", .type = "string", .description = "live migration"),

	/* Keys lxmd writes: image.* from the image's properties at create, volatile.* as it
	   runs. A user may pin a nic's MAC through its volatile key, as in LXD. */
	USER(.name = "volatile.<dev>.hwaddr", .type = "MAC address", .check = check_hwaddr,
	     .instance_only = true,
	     .description = "MAC of nic <dev> when the device has no hwaddr (kept across starts)"),
	READONLY(.name = "volatile.<dev>.host_name", .type = "interface name",
		 .description = "host-side name of nic <dev>'s veth"),
	READONLY(.name = "volatile.base_image", .type = "fingerprint",
		 .description = "the image the instance was created from"),
	READONLY(.name = "volatile.*", .type = "string",
		 .description = "state lxmd keeps about the instance"),
	READONLY(.name = "image.*", .type = "string",
		 .description = "the image's properties at create (image.os, image.release, ...)"),
};

const size_t lxm_config_keys_n = ARRAY_SIZE(lxm_config_keys);

/* Whether key is an instance of pattern name (see struct lxm_config_key). */
static bool key_matches(const char *name, const char *key)
{
	while (*name) {
		if (name[0] == '*' && name[1] == '\0')
			return *key != '\0';
		if (*name == '<') {
			size_t n = strcspn(key, ".");
			const char *end = strchr(name, '>');

			if (n == 0 || !end)
				return false;
			key += n;
			name = end + 1;
			continue;
		}
		if (*name != *key)
			return false;
		name++;
		key++;
	}
	return *key == '\0';
}

const struct lxm_config_key *lxm_config_key_find(const char *key)
{
	for (size_t i = 0; key && i < lxm_config_keys_n; i++)
		if (key_matches(lxm_config_keys[i].name, key))
			return &lxm_config_keys[i];
	return NULL;
}

bool lxm_config_key_readonly(const char *key)
{
	const struct lxm_config_key *k = lxm_config_key_find(key);

	return k && k->access == LXM_KEY_READONLY;
}

/* Pattern name made concrete with key's segments where it has a placeholder: "environment.*"
 * for "enviroment.PATH" is "environment.PATH", so that the suggestion is the key meant. */
static char *candidate(const char *name, const char *key)
{
	struct lxm_buf b = { 0 };
	const char *k = key;

	while (*name) {
		size_t n = strcspn(name, ".");
		size_t kn = k ? strcspn(k, ".") : 0;

		if (name[0] == '*' && n == 1 && k && *k)
			lxm_buf_printf(&b, "%s", k);
		else if (name[0] == '<' && k && kn > 0)
			lxm_buf_printf(&b, "%.*s", (int)kn, k);
		else
			lxm_buf_printf(&b, "%.*s", (int)n, name);
		name += n;
		k = k && k[kn] ? k + kn + 1 : NULL;
		if (*name) {
			lxm_buf_printf(&b, ".");
			name++;
		}
	}
	if (!b.s)
		lxm_buf_printf(&b, "%s", "");
	return lxm_buf_steal(&b);
}

static int unknown_key(const char *key, struct lxm_error **err)
{
	_cleanup_strv_ char **names = calloc(lxm_config_keys_n + 1, sizeof(char *));

	if (!names)
		return lxm_error_set(err, -ENOMEM, 500, "config key '%s': out of memory", key);
	size_t n = 0;

	/* Keys users cannot set are no suggestion: "legacy.key" is more likely "user.key" than
	 * "image.key". */
	for (size_t i = 0; i < lxm_config_keys_n; i++) {
		if (lxm_config_keys[i].access == LXM_KEY_READONLY)
			continue;
		if (!(names[n++] = candidate(lxm_config_keys[i].name, key)))
			return lxm_error_set(err, -ENOMEM, 500, "config key '%s': out of memory",
					     key);
	}
	return lxm_error_set(err, -EINVAL, 400, "unknown config key '%s' (did you mean '%s'?)", key,
			     lxm_closest_word(key, (const char *const *)names, n));
}

int lxm_config_key_check(const char *key, const char *value, enum lxm_config_target target,
			 struct lxm_error **err)
{
	const struct lxm_config_key *k = lxm_config_key_find(key);

	if (!k)
		return unknown_key(key ? key : "", err);
	if (k->access == LXM_KEY_UNSUPPORTED) {
		/* Unsetting such a key (left by an older lxm) is always fine. */
		if (value && !*value)
			return 0;
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "config key '%s': lxm does not support it (in LXD: %s)", key,
				     k->description);
	}
	if (target == LXM_CONFIG_PROFILE && k->instance_only)
		return lxm_error_set(err, -EINVAL, 400,
				     "config key '%s' can only be set on an instance, not in a "
				     "profile",
				     key);
	if (k->access == LXM_KEY_READONLY)
		return lxm_error_set(err, -EPERM, 400,
				     "config key '%s' is read-only: it is set by lxmd and cannot "
				     "be changed",
				     key);
	if (!value || !*value || !k->check)
		return 0;
	return k->check(k, key, value, err);
}

int lxm_config_check(const json_t *old, const json_t *config, enum lxm_config_target target,
		     struct lxm_error **err)
{
	const char *key;
	json_t *v;
	int r;

	r = lxm_json_check_string_map(config, "config", err);
	if (r < 0 || !config || json_is_null(config))
		return r;
	json_object_foreach ((json_t *)config, key, v) {
		json_t *was = old ? json_object_get(old, key) : NULL;

		if (was && json_equal(was, v))
			continue;
		/* A new instance takes what lxmd or the instance it copies gave it. */
		if (target == LXM_CONFIG_CREATE && lxm_config_key_readonly(key))
			continue;
		r = lxm_config_key_check(key, json_string_value(v), target, err);
		if (r < 0)
			return r;
	}
	return 0;
}
