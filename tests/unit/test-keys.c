/* The config key table: every key has an example of a valid and an invalid value that its
 * validator accepts and refuses; unknown keys get the closest valid one; read-only keys pass only
 * unchanged; patterns match what they should and nothing else. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "profiles/keys.h"
#include "tap.h"

/* An example key for each table entry (a concrete one for patterns), a value it takes, and one it
 * refuses (NULL: any string is valid, as for user.*). */
static const struct example {
	const char *entry; /* the table entry's name */
	const char *key;   /* a key that entry covers */
	const char *good;  /* a valid value */
	const char *bad;   /* an invalid value, or NULL */
} examples[] = {
	{ "limits.memory", "limits.memory", "512MiB", "lots" },
	{ "limits.memory.swap", "limits.memory.swap", "false", "maybe" },
	{ "limits.memory.enforce", "limits.memory.enforce", "soft", "firm" },
	{ "limits.cpu", "limits.cpu", "0-1,3", "3-1" },
	{ "limits.cpu.allowance", "limits.cpu.allowance", "25ms/100ms", "half" },
	{ "limits.cpu.priority", "limits.cpu.priority", "10", "11" },
	{ "limits.processes", "limits.processes", "100", "0" },
	{ "limits.disk.priority", "limits.disk.priority", "5", "11" },
	{ "limits.hugepages.64KB", "limits.hugepages.64KB", "1GiB", "lots" },
	{ "limits.hugepages.1MB", "limits.hugepages.1MB", "1GiB", "lots" },
	{ "limits.hugepages.2MB", "limits.hugepages.2MB", "1GiB", "lots" },
	{ "limits.hugepages.1GB", "limits.hugepages.1GB", "2GiB", "lots" },
	{ "limits.memory.hugepages", "limits.memory.hugepages", "true", "yes" },
	{ "limits.memory.swap.priority", "limits.memory.swap.priority", "3", "x" },
	{ "limits.network.priority", "limits.network.priority", "3", "x" },
	{ "limits.cpu.nodes", "limits.cpu.nodes", "0", NULL },
	{ "limits.kernel.*", "limits.kernel.nofile", "1024", NULL },
	{ "security.privileged", "security.privileged", "true", "yes" },
	{ "security.nesting", "security.nesting", "false", "1" },
	{ "security.syscalls.deny", "security.syscalls.deny", "bpf,userfaultfd", "Bad-Name" },
	{ "security.syscalls.allow", "security.syscalls.allow", "read write", "9p" },
	{ "security.syscalls.deny_default", "security.syscalls.deny_default", "false", "no" },
	{ "security.protection.delete", "security.protection.delete", "true", "on" },
	{ "security.capabilities.drop", "security.capabilities.drop", "net_raw,CAP_SYS_ADMIN",
	  "sys_admn" },
	{ "security.capabilities.add", "security.capabilities.add", "sys_time", "time" },
	{ "security.apparmor.profile", "security.apparmor.profile", "lxm-custom", "two words" },
	{ "security.selinux.label", "security.selinux.label", "system_u:system_r:container_t:s0",
	  "container_t" },
	{ "security.idmap.isolated", "security.idmap.isolated", "true", "x" },
	{ "security.idmap.base", "security.idmap.base", "1000000", "-1" },
	{ "security.idmap.size", "security.idmap.size", "65536", "0" },
	{ "security.protection.shift", "security.protection.shift", "true", "x" },
	{ "security.devlxd", "security.devlxd", "false", "x" },
	{ "security.devlxd.images", "security.devlxd.images", "false", "x" },
	{ "security.syscalls.deny_compat", "security.syscalls.deny_compat", "true", "x" },
	{ "security.syscalls.intercept.*", "security.syscalls.intercept.mknod", "true", NULL },
	{ "security.secureboot", "security.secureboot", "false", "x" },
	{ "security.vm.accel", "security.vm.accel", "tcg", "xen" },
	{ "boot.stop.signal", "boot.stop.signal", "SIGRTMIN+3", "SIGKILL" },
	{ "linux.time.offset", "linux.time.offset", "monotonic=3600 boottime=-60", "soon" },
	{ "boot.autostart", "boot.autostart", "true", "x" },
	{ "boot.autostart.delay", "boot.autostart.delay", "5", "-1" },
	{ "boot.autostart.priority", "boot.autostart.priority", "5", "x" },
	{ "boot.stop.priority", "boot.stop.priority", "5", "x" },
	{ "boot.host_shutdown_timeout", "boot.host_shutdown_timeout", "30", "-1" },
	{ "linux.kernel_modules", "linux.kernel_modules", "overlay", NULL },
	{ "linux.sysctl.*", "linux.sysctl.net.ipv4.ip_forward", "1", NULL },
	/* The snapshots.* values are checked by lxmd's scheduler, not by the table. */
	{ "snapshots.schedule", "snapshots.schedule", "@daily", NULL },
	{ "snapshots.schedule.stopped", "snapshots.schedule.stopped", "true", NULL },
	{ "snapshots.pattern", "snapshots.pattern", "auto-%d", NULL },
	{ "snapshots.expiry", "snapshots.expiry", "2w 3d", NULL },
	{ "environment.*", "environment.HTTP_PROXY", "http://proxy:3128", NULL },
	{ "user.*", "user.note", "anything at all", NULL },
	{ "raw.idmap", "raw.idmap", "both 1000 1000\nuid 2000-2009 3000-3009", "uid 1-5 1-3" },
	{ "raw.lxc", "raw.lxc", "lxc.apparmor.profile=unconfined", NULL },
	{ "raw.apparmor", "raw.apparmor", "mount,", NULL },
	{ "raw.seccomp", "raw.seccomp", "2\ndenylist\n", NULL },
	{ "raw.qemu", "raw.qemu", "-m 1G", NULL },
	{ "cloud-init.*", "cloud-init.user-data", "#cloud-config", NULL },
	{ "nvidia.*", "nvidia.runtime", "true", NULL },
	{ "migration.*", "migration.stateful", "true", NULL },
	{ "volatile.<dev>.hwaddr", "volatile.eth0.hwaddr", "00:16:3e:12:34:56",
	  "01:16:3e:12:34:56" },
	{ "volatile.<dev>.host_name", "volatile.eth0.host_name", "veth1234", NULL },
	{ "volatile.base_image", "volatile.base_image", "abcd", NULL },
	{ "volatile.*", "volatile.last_state.power", "RUNNING", NULL },
	{ "image.*", "image.os", "debian", NULL },
};

static const struct example *example_for(const char *entry)
{
	for (size_t i = 0; i < ARRAY_SIZE(examples); i++)
		if (strcmp(examples[i].entry, entry) == 0)
			return &examples[i];
	return NULL;
}

/* The message of checking key=value in target, or NULL when it is accepted. */
static char *check_msg(const char *key, const char *value, enum lxm_config_target target)
{
	struct lxm_error *e = NULL;
	char *m = NULL;

	if (lxm_config_key_check(key, value, target, &e) < 0)
		m = strdup(e && e->msg ? e->msg : "(no message)");
	lxm_error_free(e);
	return m;
}

static void test_every_key(void)
{
	for (size_t i = 0; i < lxm_config_keys_n; i++) {
		const struct lxm_config_key *k = &lxm_config_keys[i];
		const struct example *x = example_for(k->name);
		_cleanup_free_ char *good = NULL, *bad = NULL;

		if (!ok(x, "key %s has examples", k->name))
			continue;
		ok(lxm_config_key_find(x->key) == k, "%s is found as entry %s", x->key, k->name);
		ok(k->description && *k->description && k->type && *k->type,
		   "%s has a type and a description", k->name);
		good = check_msg(x->key, x->good, LXM_CONFIG_UPDATE);
		if (k->access == LXM_KEY_UNSUPPORTED) {
			ok(good && strstr(good, "lxm does not support") && strstr(good, x->key),
			   "unsupported %s refused: %s", x->key, good ? good : "(accepted)");
			continue;
		}
		if (k->access == LXM_KEY_READONLY) {
			ok(good && strstr(good, "is read-only") && strstr(good, x->key),
			   "read-only %s refused on change: %s", x->key,
			   good ? good : "(accepted)");
			continue;
		}
		ok(!good, "%s=%s accepted%s%s", x->key, x->good, good ? ": " : "",
		   good ? good : "");
		if (x->bad) {
			bad = check_msg(x->key, x->bad, LXM_CONFIG_UPDATE);
			ok(bad && strstr(bad, x->key) && strstr(bad, x->bad) &&
				   strstr(bad, "invalid value"),
			   "%s=%s refused naming key and value: %s", x->key, x->bad,
			   bad ? bad : "(accepted)");
		} else {
			ok(k->check == NULL, "%s takes any value: it has no validator", k->name);
		}
		/* "" unsets a key: no value to check. */
		free(good);
		good = check_msg(x->key, "", LXM_CONFIG_UPDATE);
		ok(!good, "%s= (unset) accepted", x->key);
	}
	/* Every example belongs to an entry: a removed key leaves no stale example. */
	for (size_t i = 0; i < ARRAY_SIZE(examples); i++) {
		bool found = false;

		for (size_t j = 0; j < lxm_config_keys_n && !found; j++)
			found = strcmp(lxm_config_keys[j].name, examples[i].entry) == 0;
		ok(found, "example %s names a table entry", examples[i].entry);
	}
}

static void test_suggestions(void)
{
	static const struct {
		const char *key, *want;
	} cases[] = {
		{ "limits.memroy", "'limits.memory'" },
		{ "limitz.cpu", "'limits.cpu'" },
		{ "security.priviledged", "'security.privileged'" },
		{ "enviroment.PATH", "'environment.PATH'" },
		{ "boot.stop.signl", "'boot.stop.signal'" },
		{ "limits.hugepages.2mb", "'limits.hugepages.2MB'" },
		{ "volatil.eth0.hwaddr", "'volatile.eth0.hwaddr'" },
		{ "snapshot.schedule", "'snapshots.schedule'" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *m = check_msg(cases[i].key, "1", LXM_CONFIG_UPDATE);
		char want[128];

		snprintf(want, sizeof(want), "unknown config key '%s' (did you mean %s?)",
			 cases[i].key, cases[i].want);
		ok(m && strcmp(m, want) == 0, "%s: %s", cases[i].key, m ? m : "(accepted)");
	}
}

static void test_patterns(void)
{
	static const char *const unknown[] = {
		"environment.", "user.", "image.",	   "limits.hugepages.4MB", "limits",
		"limits.",	"",	 "security.idmap", "limits.memory.x",
	};

	for (size_t i = 0; i < ARRAY_SIZE(unknown); i++)
		ok(!lxm_config_key_find(unknown[i]), "'%s' matches no entry", unknown[i]);
	ok(lxm_config_key_find("volatile.eth0.hwaddr") ==
		   lxm_config_key_find("volatile.my-nic.hwaddr"),
	   "<dev> matches any device name");
	ok(strcmp(lxm_config_key_find("volatile.a.b.hwaddr")->name, "volatile.*") == 0,
	   "<dev> is one segment: volatile.a.b.hwaddr is another volatile key");
	ok(strcmp(lxm_config_key_find("volatile..hwaddr")->name, "volatile.*") == 0,
	   "<dev> is not empty: volatile..hwaddr is another volatile key");
	ok(lxm_config_key_readonly("image.os") && lxm_config_key_readonly("volatile.base_image") &&
		   lxm_config_key_readonly("volatile.eth0.host_name") &&
		   !lxm_config_key_readonly("volatile.eth0.hwaddr") &&
		   !lxm_config_key_readonly("limits.memory") && !lxm_config_key_readonly("nope"),
	   "read-only keys: image.*, volatile.* but a nic's hwaddr");
}

static int check_json(const char *old, const char *new, enum lxm_config_target target,
		      char **ret_msg)
{
	_cleanup_json_ json_t *o = old ? json_loads(old, 0, NULL) : NULL;
	_cleanup_json_ json_t *n = json_loads(new, 0, NULL);
	struct lxm_error *e = NULL;
	int r;

	r = lxm_config_check(o, n, target, &e);
	*ret_msg = r < 0 ? strdup(e && e->msg ? e->msg : "") : NULL;
	lxm_error_free(e);
	return r;
}

/* One whole-config case: the check's result must be want (0 or an errno) and, when it fails,
 * its message must hold each of the NULL-terminated words. */
static void whole(const char *old, const char *new, enum lxm_config_target target, int want,
		  const char *what, ...)
{
	_cleanup_free_ char *m = NULL;
	bool good;
	va_list ap;
	int r;

	r = check_json(old, new, target, &m);
	good = want == 0 ? r == 0 : r == want && m;
	va_start(ap, what);
	for (const char *w = va_arg(ap, const char *); good && w; w = va_arg(ap, const char *))
		good = strstr(m, w) != NULL;
	va_end(ap);
	ok(good, "%s: %s", what, m ? m : "(accepted)");
}

static void test_whole_config(void)
{
	const char *old = "{\"image.os\": \"busybox\", \"volatile.base_image\": \"ab\","
			  " \"limits.memory\": \"1GiB\", \"security.devlxd\": \"true\","
			  " \"legacy.key\": \"x\"}";

	/* What lxc config edit sends back: everything it read, one key changed. */
	whole(old,
	      "{\"image.os\": \"busybox\", \"volatile.base_image\": \"ab\","
	      " \"limits.memory\": \"2GiB\", \"security.devlxd\": \"true\","
	      " \"legacy.key\": \"x\"}",
	      LXM_CONFIG_UPDATE, 0,
	      "an echo of read-only, unsupported and unknown keys is accepted", NULL);
	whole(old, "{\"image.os\": \"debian\"}", LXM_CONFIG_UPDATE, -EPERM,
	      "a changed image.os is refused", "config key 'image.os' is read-only", "set by lxmd",
	      NULL);
	whole(old, "{\"image.release\": \"12\"}", LXM_CONFIG_UPDATE, -EPERM,
	      "a new image key is refused", "read-only", NULL);
	whole(old, "{\"image.os\": \"\"}", LXM_CONFIG_UPDATE, -EPERM,
	      "emptying image.os is a change: refused", "read-only", NULL);
	whole(NULL, "{\"image.os\": \"busybox\", \"volatile.base_image\": \"ab\"}",
	      LXM_CONFIG_CREATE, 0, "a new instance may carry image.* and volatile.* (a copy's)",
	      NULL);
	whole(NULL, "{\"image.os\": \"busybox\"}", LXM_CONFIG_PROFILE, -EINVAL,
	      "image.* in a profile refused", "only be set on an instance", NULL);
	whole(NULL, "{\"volatile.eth0.hwaddr\": \"00:16:3e:00:00:01\"}", LXM_CONFIG_PROFILE,
	      -EINVAL, "volatile.* in a profile refused", "only be set on an instance", NULL);
	whole(old, "{\"volatile.eth0.hwaddr\": \"00:16:3e:00:00:01\"}", LXM_CONFIG_UPDATE, 0,
	      "a nic's MAC may be pinned by the user", NULL);
	whole(old, "{\"legacy.key\": \"y\"}", LXM_CONFIG_UPDATE, -EINVAL,
	      "a changed unknown key is refused",
	      "unknown config key 'legacy.key' (did you mean 'user.key'?)", NULL);
	whole(old, "{\"security.devlxd\": \"false\"}", LXM_CONFIG_UPDATE, -EOPNOTSUPP,
	      "a changed unsupported key is refused", "lxm does not support", NULL);
	whole(old, "{\"security.devlxd\": \"\"}", LXM_CONFIG_UPDATE, 0,
	      "an unsupported key may be unset", NULL);
	whole(old, "{\"limits.memory\": \"lots\"}", LXM_CONFIG_UPDATE, -EINVAL,
	      "an invalid value names key and value",
	      "config key 'limits.memory': invalid value 'lots'", NULL);
	whole(NULL, "{\"limits.memory\": 5}", LXM_CONFIG_UPDATE, -EINVAL,
	      "a non-string value is refused", "must be a string", NULL);
	whole(NULL, "{\"limits.memory\": \"50%\", \"user.x\": \"1\"}", LXM_CONFIG_PROFILE, 0,
	      "a profile takes limits and user keys", NULL);
	whole(NULL, "{\"raw.idmap\": \"both 1000 1000\\nuid 1000 2000\"}", LXM_CONFIG_UPDATE,
	      -EINVAL, "raw.idmap lines mapping one id twice are refused",
	      "config key 'raw.idmap': invalid value", "overlaps an earlier line", NULL);
	whole(NULL, "{\"raw.idmap\": \"user 1000 1000\"}", LXM_CONFIG_UPDATE, -EINVAL,
	      "a raw.idmap kind other than both, uid and gid is refused",
	      "'user' is not both, uid or gid", NULL);
	whole(NULL, "{\"limits.disk.priority\": \"11\"}", LXM_CONFIG_UPDATE, -EINVAL,
	      "limits.disk.priority above 10 is refused", "'limits.disk.priority'", "'11'", NULL);
	whole(NULL, "{\"security.idmap.size\": \"65536\", \"limits.hugepages.2MB\": \"4MiB\"}",
	      LXM_CONFIG_PROFILE, 0, "a profile takes the idmap and hugepages keys", NULL);
	ok(lxm_config_check(NULL, NULL, LXM_CONFIG_UPDATE, NULL) == 0, "no config is no error");
}

int main(void)
{
	test_every_key();
	test_suggestions();
	test_patterns();
	test_whole_config();
	return tap_done();
}
