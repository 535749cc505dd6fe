#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "profiles/policy-internal.h"
#include "profiles/policy.h"
#include "tap.h"

#define GiB (1024LL * 1024 * 1024)

static const struct lxm_policy_host host2 = {
	.memory_bytes = 8 * GiB,
	.ncpus = 2,
	.root = "/var/lib/lxm",
	.hugepages = 1u << LXM_HUGEPAGE_2MB | 1u << LXM_HUGEPAGE_1GB,
};

static bool strv_has(char **v, const char *s)
{
	for (; v && *v; v++)
		if (strcmp(*v, s) == 0)
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

static bool contains(const char *hay, const char *needle)
{
	return hay && needle && strstr(hay, needle);
}

/* A value as a TAP description can show it: one line. */
static const char *one_line(const char *v)
{
	static char buf[128];

	snprintf(buf, sizeof(buf), "%s", v);
	for (char *c = buf; *c; c++)
		if (*c == '\n')
			*c = ' ';
	return buf;
}

/* Compiles a config of key/value pairs (NULL-terminated) for host h. */
static int compile_with(const struct lxm_policy_host *h, struct lxm_policy **p,
			struct lxm_error **err, ...)
{
	_cleanup_json_ json_t *cfg = json_object();
	const char *k, *v;
	va_list ap;

	va_start(ap, err);
	while ((k = va_arg(ap, const char *))) {
		v = va_arg(ap, const char *);
		json_object_set_new(cfg, k, json_string(v));
	}
	va_end(ap);
	return lxm_policy_compile("c1", cfg, h, p, err);
}

/* A key with a bad value must fail with a 400 that names the key, the value and `hint`. */
static void bad_key(const char *key, const char *value, const char *hint)
{
	struct lxm_error *err = NULL;
	struct lxm_policy *p = NULL;
	_cleanup_free_ char *quoted_key = NULL, *quoted_value = NULL;
	int r = compile_with(&host2, &p, &err, key, value, NULL);

	if (asprintf(&quoted_key, "'%s'", key) < 0 || asprintf(&quoted_value, "'%s'", value) < 0)
		abort();
	ok(r == -EINVAL && err && err->status == 400 && contains(err->msg, quoted_key) &&
		   contains(err->msg, quoted_value) && contains(err->msg, hint) && !p,
	   "%s=%s refused: %s", key, one_line(value), err ? err->msg : "(no error)");
	lxm_error_free(err);
	lxm_policy_free(p);
}

/* A key with a good value compiles; the policy is handed back to check. */
static struct lxm_policy *good_key(const char *key, const char *value)
{
	struct lxm_error *err = NULL;
	struct lxm_policy *p = NULL;
	int r = compile_with(&host2, &p, &err, key, value, NULL);

	ok(r == 0 && p && !err, "%s=%s compiles%s%s", key, one_line(value), err ? ": " : "",
	   err ? err->msg : "");
	lxm_error_free(err);
	return p;
}

static void test_size(void)
{
	struct lxm_error *err = NULL;
	int64_t v = 0;

	static const struct {
		const char *in;
		int64_t want;
	} good[] = {
		{ "512MiB", 512LL << 20 }, { "1GiB", GiB },	   { "100MB", 100000000 },
		{ "1024", 1024 },	   { "50%", 4 * GiB },	   { "1.5GiB", 3 * GiB / 2 },
		{ "1gib", GiB },	   { " 2 GiB ", 2 * GiB }, { "12.5%", GiB },
		{ "1kB", 1000 },	   { "1KiB", 1024 },	   { "7B", 7 },
		{ "100%", 8 * GiB },	   { "4EiB", 1LL << 62 },
	};
	for (size_t k = 0; k < ARRAY_SIZE(good); k++) {
		v = -1;
		is_int(lxm_parse_size("limits.memory", good[k].in, 8 * GiB, &v, &err), 0,
		       good[k].in);
		is_int(v, good[k].want, "  ...its value");
	}
	ok(!err, "no error on good sizes");

	static const struct {
		const char *in;
		const char *hint;
	} bad[] = {
		{ "-1", "negative" },
		{ "abc", "512MiB" },
		{ "12XB", "unknown unit 'XB'" },
		{ "512M", "MiB for 2^20" },
		{ "0", "not a limit" },
		{ "0%", "not a limit" },
		{ "0.1B", "not a limit" },
		{ "150%", "more than 100%" },
		{ "99999999999999999999", "too large" },
		{ "20EiB", "8 EiB" },
		{ "", "required" },
		{ "1.5.5", "unknown unit" },
		{ "%", "512MiB" },
		{ "50%x", "512MiB" },
		{ "1.0000000001GiB", "too precise" },
	};
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		v = 42;
		is_int(lxm_parse_size("limits.memory", bad[k].in, 8 * GiB, &v, &err), -EINVAL,
		       bad[k].in);
		ok(err && err->status == 400 && contains(err->msg, "'limits.memory'") &&
			   contains(err->msg, bad[k].hint) && v == 42,
		   "  ...names the key and says '%s': %s", bad[k].hint, err ? err->msg : "-");
		lxm_error_free(err);
		err = NULL;
	}
	is_int(lxm_parse_size("limits.memory", "50%", 0, &v, &err), -EINVAL,
	       "a percentage without the host's memory size");
	ok(err && contains(err->msg, "unknown"), "  ...says why: %s", err ? err->msg : "-");
	lxm_error_free(err);
	is_int(lxm_parse_size("limits.memory", "x", 1, &v, NULL), -EINVAL, "NULL err is fine");
}

static void test_cpu(void)
{
	struct lxm_error *err = NULL;
	char *set = NULL;

	static const struct {
		const char *in;
		unsigned ncpus;
		const char *want;
	} good[] = {
		{ "2", 2, "0-1" },	 { "1", 2, "0" },	  { "0-1,3", 4, "0-1,3" },
		{ "0,1,2", 4, "0-2" },	 { "3-3", 4, "3" },	  { " 0-1 , 3 ", 4, "0-1,3" },
		{ "0,2-3", 4, "0,2-3" }, { "0-1,2-3", 4, "0-3" }, { "5", 0, "0-4" },
		{ "1,3,5", 8, "1,3,5" },
	};
	for (size_t k = 0; k < ARRAY_SIZE(good); k++) {
		is_int(lxm_parse_cpu("limits.cpu", good[k].in, good[k].ncpus, &set, &err), 0,
		       good[k].in);
		is_str(set, good[k].want, "  ...canonical form");
		free(set);
		set = NULL;
	}
	ok(!err, "no error on good CPU values");

	static const struct {
		const char *in;
		unsigned ncpus;
		const char *hint;
	} bad[] = {
		{ "3", 2, "the host has 2" },  { "0-4", 4, "CPU 4 does not exist" },
		{ "3-1", 4, "backwards" },     { "1,0", 4, "ascending" },
		{ "0-1,1", 4, "ascending" },   { "a", 4, "0-1,3" },
		{ "", 4, "required" },	       { "-1", 4, "negative" },
		{ "0", 4, "at least one" },    { "1,", 4, "0-1,3" },
		{ ",1", 4, "0-1,3" },	       { "1.5", 4, "0-1,3" },
		{ "99999999999", 0, "0-1,3" },
	};
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		is_int(lxm_parse_cpu("limits.cpu", bad[k].in, bad[k].ncpus, &set, &err), -EINVAL,
		       bad[k].in);
		ok(err && err->status == 400 && contains(err->msg, "'limits.cpu'") &&
			   contains(err->msg, bad[k].hint) && !set,
		   "  ...says '%s': %s", bad[k].hint, err ? err->msg : "-");
		lxm_error_free(err);
		err = NULL;
	}
}

static void test_allowance(void)
{
	struct lxm_error *err = NULL;
	int64_t q, per;

	static const struct {
		const char *in;
		int64_t quota, period;
	} good[] = {
		{ "50%", 50000, 100000 },	 { "150%", 150000, 100000 },
		{ "25ms/100ms", 25000, 100000 }, { "1s/1s", 1000000, 1000000 },
		{ "2.5ms/10ms", 2500, 10000 },	 { "1000us / 1ms", 1000, 1000 },
		{ "12.5%", 12500, 100000 },	 { "1%", 1000, 100000 },
	};
	for (size_t k = 0; k < ARRAY_SIZE(good); k++) {
		q = per = -1;
		is_int(lxm_parse_allowance("limits.cpu.allowance", good[k].in, &q, &per, &err), 0,
		       good[k].in);
		ok(q == good[k].quota && per == good[k].period, "  ...%lld/%lld", (long long)q,
		   (long long)per);
	}
	ok(!err, "no error on good allowances");

	static const char *const bad[] = { "0%",	"0.5%",	       "abc",	      "25ms",
					   "25ms/",	"25ms/2s",     "-5%",	      "25/100",
					   "500us/1ms", "25ms/100ms/", "25 ms / 100", "",
					   "25xs/100ms" };
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		is_int(lxm_parse_allowance("limits.cpu.allowance", bad[k], &q, &per, &err), -EINVAL,
		       bad[k]);
		ok(err && err->status == 400 && contains(err->msg, "'limits.cpu.allowance'"),
		   "  ...names the key: %s", err ? err->msg : "-");
		lxm_error_free(err);
		err = NULL;
	}
}

static void test_defaults(void)
{
	_cleanup_json_ json_t *empty = json_object();
	struct lxm_error *err = NULL;
	struct lxm_policy *p = NULL;

	is_int(lxm_policy_compile("c1", NULL, &host2, &p, &err), 0, "NULL config compiles");
	lxm_policy_free(p);
	p = NULL;
	is_int(lxm_policy_compile("c1", empty, &host2, &p, &err), 0, "empty config compiles");
	if (!p)
		return;
	ok(!p->privileged && !p->nesting, "unprivileged, no nesting");
	ok(p->limits.memory == -1 && p->limits.memory_swap && !p->limits.memory_soft &&
		   !p->limits.cpuset && p->limits.cpu_quota_us == -1 &&
		   p->limits.cpu_period_us == -1 && p->limits.cpu_weight == -1 &&
		   p->limits.processes == -1,
	   "no limits");
	is_int(p->caps_drop,
	       (1ULL << 16) | (1ULL << 25) | (1ULL << 17) | (1ULL << 33) | (1ULL << 32),
	       "drops sys_module, sys_time, sys_rawio, mac_admin, mac_override");
	ok(!(p->caps_drop & (1ULL << 22)), "keeps sys_boot");
	is_int(strv_len(p->syscalls_deny), 6, "six syscalls denied");
	ok(strv_has(p->syscalls_deny, "kexec_load") &&
		   strv_has(p->syscalls_deny, "kexec_file_load") &&
		   strv_has(p->syscalls_deny, "open_by_handle_at") &&
		   strv_has(p->syscalls_deny, "init_module") &&
		   strv_has(p->syscalls_deny, "finit_module") &&
		   strv_has(p->syscalls_deny, "delete_module"),
	   "the default deny list");
	ok(!p->syscalls_allow, "no allow list");
	ok(p->deny_forced_umount, "forced umount denied");
	ok(!p->apparmor_profile && !p->apparmor_text, "no AppArmor on a host without it");
	ok(!p->selinux_label, "no SELinux label on a host without it");
	is_int(p->halt_signal, SIGPWR, "SIGPWR halts by default");
	ok(p->time_offset_monotonic == 0 && p->time_offset_boottime == 0, "no time offsets");
	ok(!err, "no error");
	lxm_policy_free(p);

	{
		_cleanup_json_ json_t *arr = json_array();
		_cleanup_json_ json_t *num = json_pack("{s:i}", "limits.processes", 5);
		_cleanup_json_ json_t *nul =
			json_pack("{s:n, s:s}", "limits.memory", "limits.cpu", "");

		p = NULL;
		is_int(lxm_policy_compile("c1", arr, &host2, &p, &err), -EINVAL,
		       "a config that is not an object");
		ok(err && err->status == 400 && !p, "  ...is a 400");
		lxm_error_free(err);
		err = NULL;
		is_int(lxm_policy_compile("c1", num, &host2, &p, &err), -EINVAL,
		       "a value that is not a string");
		ok(err && contains(err->msg, "'limits.processes'") && contains(err->msg, "string"),
		   "  ...names the key: %s", err ? err->msg : "-");
		lxm_error_free(err);
		err = NULL;
		is_int(lxm_policy_compile("c1", nul, &host2, &p, &err), 0,
		       "null and \"\" are unset");
		ok(p && p->limits.memory == -1 && !p->limits.cpuset, "  ...no limits");
		lxm_policy_free(p);
		p = NULL;
		is_int(compile_with(&host2, &p, NULL, "limits.memory", "x", NULL), -EINVAL,
		       "a bad value with a NULL err");
		is_int(lxm_policy_compile("c1", NULL, NULL, &p, &err), -EINVAL, "no host");
		lxm_error_free(err);
	}
}

static void test_limits(void)
{
	struct lxm_policy *p;
	static const int64_t weights[] = { 1, 2, 3, 4, 6, 10, 16, 25, 40, 63, 100 };

	p = good_key("limits.memory", "512MiB");
	ok(p && p->limits.memory == 512LL << 20, "limits.memory in bytes");
	lxm_policy_free(p);
	p = good_key("limits.memory", "25%");
	ok(p && p->limits.memory == 2 * GiB, "limits.memory=25%% of 8 GiB");
	lxm_policy_free(p);
	bad_key("limits.memory", "lots", "512MiB");
	bad_key("limits.memory", "-5GiB", "negative");

	p = good_key("limits.memory.swap", "false");
	ok(p && !p->limits.memory_swap, "swap off");
	lxm_policy_free(p);
	bad_key("limits.memory.swap", "no", "true or false");
	p = good_key("limits.memory.enforce", "soft");
	ok(p && p->limits.memory_soft, "soft memory limit");
	lxm_policy_free(p);
	p = good_key("limits.memory.enforce", "hard");
	ok(p && !p->limits.memory_soft, "hard memory limit");
	lxm_policy_free(p);
	bad_key("limits.memory.enforce", "medium", "hard or soft");

	p = good_key("limits.cpu", "2");
	is_str(p ? p->limits.cpuset : NULL, "0-1", "limits.cpu=2 on two CPUs");
	lxm_policy_free(p);
	bad_key("limits.cpu", "3", "the host has 2");
	bad_key("limits.cpu", "0-2", "CPU 2 does not exist");

	p = good_key("limits.cpu.allowance", "200%");
	ok(p && p->limits.cpu_quota_us == 200000 && p->limits.cpu_period_us == 100000,
	   "200%% is two CPUs' time");
	lxm_policy_free(p);
	bad_key("limits.cpu.allowance", "300%", "at most 200%");
	bad_key("limits.cpu.allowance", "half", "25ms/100ms");
	{
		struct lxm_error *err = NULL;

		p = NULL;
		is_int(compile_with(&host2, &p, &err, "limits.cpu", "1", "limits.cpu.allowance",
				    "150%", NULL),
		       -EINVAL, "an allowance beyond limits.cpu");
		ok(err && contains(err->msg, "1 CPU ") && contains(err->msg, "at most 100%"),
		   "  ...says so: %s", err ? err->msg : "-");
		lxm_error_free(err);
		err = NULL;
		is_int(compile_with(&host2, &p, &err, "limits.cpu", "1", "limits.cpu.allowance",
				    "50ms/100ms", NULL),
		       0, "an allowance within limits.cpu");
		lxm_policy_free(p);
	}

	for (int prio = 0; prio <= 10; prio++) {
		char v[12];

		snprintf(v, sizeof(v), "%d", prio);
		p = good_key("limits.cpu.priority", v);
		is_int(p ? p->limits.cpu_weight : -2, weights[prio], "  ...weight");
		lxm_policy_free(p);
	}
	for (size_t k = 1; k < ARRAY_SIZE(weights); k++)
		if (weights[k] <= weights[k - 1])
			ok(0, "weights rise with the priority");
	bad_key("limits.cpu.priority", "11", "0 to 10");
	bad_key("limits.cpu.priority", "-1", "0 to 10");
	bad_key("limits.cpu.priority", "high", "0 to 10");

	p = good_key("limits.processes", "500");
	is_int(p ? p->limits.processes : 0, 500, "limits.processes");
	lxm_policy_free(p);
	bad_key("limits.processes", "0", "at least 1");
	bad_key("limits.processes", "-3", "at least 1");
	bad_key("limits.processes", "many", "at least 1");
	bad_key("limits.processes", "1.5", "at least 1");
}

static void test_capabilities(void)
{
	struct lxm_error *err = NULL;
	struct lxm_policy *p = NULL;

	is_int(lxm_cap_from_name("sys_admin"), 21, "sys_admin is 21");
	is_int(lxm_cap_from_name("cap_sys_admin"), 21, "cap_ prefix");
	is_int(lxm_cap_from_name("CAP_SYS_ADMIN"), 21, "upper case");
	is_int(lxm_cap_from_name("Cap_Net_Raw"), 13, "mixed case");
	is_int(lxm_cap_from_name("chown"), 0, "capability 0");
	is_int(lxm_cap_from_name("checkpoint_restore"), 40, "the newest capability");
	is_int(lxm_cap_from_name("sys_admn"), -EINVAL, "unknown name");
	is_int(lxm_cap_from_name("cap_"), -EINVAL, "prefix only");
	is_str(lxm_cap_name(22), "sys_boot", "name of 22");
	ok(!lxm_cap_name(41) && !lxm_cap_name(-1), "no name out of range");

	p = good_key("security.capabilities.drop", "net_raw, CAP_SYS_ADMIN");
	ok(p && (p->caps_drop & (1ULL << 13)) && (p->caps_drop & (1ULL << 21)) &&
		   (p->caps_drop & (1ULL << 16)),
	   "drop adds to the default set");
	lxm_policy_free(p);
	p = good_key("security.capabilities.add", "sys_time,cap_sys_module");
	ok(p && !(p->caps_drop & (1ULL << 25)) && !(p->caps_drop & (1ULL << 16)) &&
		   (p->caps_drop & (1ULL << 17)),
	   "add takes out of the default set");
	lxm_policy_free(p);
	bad_key("security.capabilities.drop", "sys_admn", "did you mean 'sys_admin'");
	bad_key("security.capabilities.add", "cap_net_rw", "did you mean 'net_raw'");
	bad_key("security.capabilities.add", "NET-ADMIN", "did you mean 'net_admin'");

	p = NULL;
	is_int(compile_with(&host2, &p, &err, "security.capabilities.add", "sys_time",
			    "security.capabilities.drop", "net_raw,sys_time", NULL),
	       -EINVAL, "a capability both added and dropped");
	ok(err && err->status == 400 && contains(err->msg, "'security.capabilities.add'") &&
		   contains(err->msg, "'security.capabilities.drop'") &&
		   contains(err->msg, "sys_time"),
	   "  ...names both keys and the capability: %s", err ? err->msg : "-");
	lxm_error_free(err);

	p = good_key("security.privileged", "true");
	ok(p && p->privileged && p->caps_drop == lxm_caps_default_drop(false),
	   "privileged drops the same default set");
	lxm_policy_free(p);
	bad_key("security.privileged", "yes", "true or false");
	bad_key("security.privileged", "1", "true or false");
	p = good_key("security.nesting", "true");
	ok(p && p->nesting, "nesting");
	lxm_policy_free(p);
	bad_key("security.nesting", "TRUE", "true or false");
}

static void test_syscalls(void)
{
	struct lxm_error *err = NULL;
	struct lxm_policy *p = NULL;

	p = good_key("security.syscalls.deny", "bpf, userfaultfd\nkexec_load bpf");
	ok(p && strv_len(p->syscalls_deny) == 8 && strv_has(p->syscalls_deny, "bpf") &&
		   strv_has(p->syscalls_deny, "userfaultfd") &&
		   strv_has(p->syscalls_deny, "init_module"),
	   "deny adds to the defaults, without duplicates");
	lxm_policy_free(p);
	p = good_key("security.syscalls.deny_default", "false");
	ok(p && p->syscalls_deny && strv_len(p->syscalls_deny) == 0 && !p->deny_forced_umount,
	   "deny_default=false: nothing denied, forced umount allowed");
	lxm_policy_free(p);
	p = NULL;
	is_int(compile_with(&host2, &p, &err, "security.syscalls.deny_default", "false",
			    "security.syscalls.deny", "bpf,_llseek", NULL),
	       0, "deny without the defaults");
	ok(p && strv_len(p->syscalls_deny) == 2 && strv_has(p->syscalls_deny, "_llseek"),
	   "  ...only the named ones");
	lxm_policy_free(p);
	p = good_key("security.syscalls.allow", "read,write,exit_group,umount2");
	ok(p && strv_len(p->syscalls_allow) == 4 && p->syscalls_deny &&
		   strv_len(p->syscalls_deny) == 0 && p->deny_forced_umount,
	   "allow-list mode; forced umount still denied");
	lxm_policy_free(p);
	bad_key("security.syscalls.allow", "read,kexec_load", "default deny list");
	p = NULL;
	is_int(compile_with(&host2, &p, &err, "security.syscalls.deny_default", "false",
			    "security.syscalls.allow", "read,kexec_load", NULL),
	       0, "a default-denied syscall allowed with deny_default=false");
	ok(p && strv_has(p->syscalls_allow, "kexec_load"), "  ...is in the allow list");
	lxm_policy_free(p);
	p = NULL;
	is_int(compile_with(&host2, &p, &err, "security.syscalls.allow", "read",
			    "security.syscalls.deny", "bpf", NULL),
	       -EINVAL, "allow and deny together");
	ok(err && err->status == 400 && contains(err->msg, "'security.syscalls.allow'") &&
		   contains(err->msg, "'security.syscalls.deny'") && contains(err->msg, "conflict"),
	   "  ...a conflict naming both: %s", err ? err->msg : "-");
	lxm_error_free(err);
	bad_key("security.syscalls.deny", "Bpf", "not a syscall name");
	bad_key("security.syscalls.deny", "a-b", "not a syscall name");
	bad_key("security.syscalls.deny", "1abc", "not a syscall name");
	bad_key("security.syscalls.deny", ", ,", "names no syscall");
	bad_key("security.syscalls.allow", "open;rm", "not a syscall name");
	bad_key("security.syscalls.deny_default", "off", "true or false");
}

static const char *apparmor_parser(void)
{
	static const char *const paths[] = { "/usr/sbin/apparmor_parser", "/sbin/apparmor_parser",
					     "/usr/bin/apparmor_parser" };

	for (size_t k = 0; k < ARRAY_SIZE(paths); k++)
		if (access(paths[k], X_OK) == 0)
			return paths[k];
	return NULL;
}

/* Runs apparmor_parser -Q -K (parse and compile, load nothing, no cache) on text; prints the
 * parser's output as TAP comments when it refuses and show_refusal says so. Returns the parser's
 * exit status. */
static int parse_profile(const char *parser, const char *text, bool show_refusal)
{
	char path[] = "/tmp/lxm-test-policy-XXXXXX";
	_cleanup_free_ char *cmd = NULL, *log = NULL;
	FILE *f;
	int fd, status = -1;

	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(path);
		return -1;
	}
	fputs(text, f);
	fclose(f);
	if (asprintf(&log, "%s.log", path) >= 0 &&
	    asprintf(&cmd, "'%s' -Q -K '%s' >'%s' 2>&1", parser, path, log) >= 0)
		status = system(cmd);
	if (status != 0 && show_refusal && log && (f = fopen(log, "r"))) {
		char line[512];

		while (fgets(line, sizeof(line), f))
			printf("# %s", line);
		fclose(f);
	}
	if (log)
		unlink(log);
	unlink(path);
	return status;
}

static void test_apparmor_names(void)
{
	char *name = NULL;

	static const struct {
		const char *root;
		const char *want;
	} cases[] = {
		{ "/var/lib/lxm", "lxm-c1_var-lib-lxm" },
		{ "//var//lib/lxm/", "lxm-c1_var-lib-lxm" },
		{ NULL, "lxm-c1_var-lib-lxm" },
		{ "/srv/lxm.d", "lxm-c1_srv-lxm.d" },
	};
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		is_int(lxm_apparmor_profile_name("c1", cases[k].root, &name), 0, "profile name");
		is_str(name, cases[k].want, "  ...spelled out");
		free(name);
		name = NULL;
	}
	static const char *const hashed[] = { "/tmp/lxm-test.x", "/", "/var/lib/l_x", "/a/b c",
					      ("/very/long/root/path/that/goes/on/and/on/beyond/"
					       "sixty/four/characters") };
	for (size_t k = 0; k < ARRAY_SIZE(hashed); k++) {
		bool shape;

		is_int(lxm_apparmor_profile_name("c1", hashed[k], &name), 0, hashed[k]);
		shape = name && strncmp(name, "lxm-c1__", 8) == 0 && strlen(name) == 8 + 16 &&
			strspn(name + 8, "0123456789abcdef") == 16;
		ok(shape, "  ...hashed: %s", name ? name : "-");
		free(name);
		name = NULL;
	}
	{
		char *a = NULL, *b = NULL;

		lxm_apparmor_profile_name("c1", "/var/lib-x", &a);
		lxm_apparmor_profile_name("c1", "/var-lib/x", &b);
		ok(a && b && strcmp(a, b) != 0, "roots that differ only in '-' vs '/' differ");
		free(a);
		free(b);
	}
	is_int(lxm_apparmor_profile_name("c_1", "/x", &name), -EINVAL, "'_' in an instance name");
	is_int(lxm_apparmor_profile_name("", "/x", &name), -EINVAL, "empty instance name");
	is_int(lxm_apparmor_profile_name("a b", "/x", &name), -EINVAL, "space in an instance name");
	ok(lxm_apparmor_name_valid("lxm-custom") && lxm_apparmor_name_valid("unconfined") &&
		   lxm_apparmor_name_valid("a//b") && !lxm_apparmor_name_valid("a b") &&
		   !lxm_apparmor_name_valid("") && !lxm_apparmor_name_valid("x\"y"),
	   "user profile names");
}

static void test_apparmor_profiles(void)
{
	const char *parser = apparmor_parser();
	static const struct {
		bool privileged, nesting;
		const char *what;
	} kinds[] = {
		{ false, false, "unprivileged" },
		{ true, false, "privileged" },
		{ false, true, "unprivileged nesting" },
		{ true, true, "privileged nesting" },
	};

	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		char *name = NULL, *text = NULL;

		is_int(lxm_apparmor_profile("web-1", &host2, kinds[k].nesting, kinds[k].privileged,
					    &name, &text),
		       0, kinds[k].what);
		is_str(name, "lxm-web-1_var-lib-lxm", "  ...its name");
		ok(contains(text, "profile lxm-web-1_var-lib-lxm flags=") &&
			   contains(text, "deny /proc/sys/kernel/") &&
			   contains(text, "deny /proc/{sysrq-trigger") &&
			   contains(text, "deny mount fstype=debugfs") &&
			   contains(text, "peer=unconfined"),
		   "  ...denies what it should");
		ok(contains(text, "change_profile -> \"lxm-web-1_var-lib-lxm//&:lxm-web-1_var-lib-"
				  "lxm:*\"") == kinds[k].nesting,
		   "  ...change_profile only with nesting");
		ok(contains(text, "\n  mount,\n") == !kinds[k].privileged,
		   "  ...any mount only in a user namespace");
		ok(contains(text, "mount fstype=proc,") ==
			   (kinds[k].privileged && kinds[k].nesting),
		   "  ...proc anywhere only for privileged nesting");
		if (!parser)
			ok(1, "apparmor_parser accepts it # SKIP apparmor_parser not installed");
		else
			ok(parse_profile(parser, text, true) == 0,
			   "apparmor_parser -Q -K accepts it");
		free(name);
		free(text);
	}
	if (!parser)
		ok(1,
		   "apparmor_parser refuses a broken profile # SKIP apparmor_parser not installed");
	else
		ok(parse_profile(parser, "profile broken {\n  bogus rule,\n}\n", false) != 0,
		   "apparmor_parser refuses a broken profile (the check can fail)");
	is_int(lxm_apparmor_profile("bad_name", &host2, false, false, &(char *){ NULL },
				    &(char *){ NULL }),
	       -EINVAL, "an instance name that cannot be in a profile name");
}

static void test_lsm(void)
{
	struct lxm_policy_host h = host2;
	struct lxm_error *err = NULL;
	struct lxm_policy *p = NULL;

	h.apparmor = true;
	h.selinux = true;
	is_int(compile_with(&h, &p, &err, NULL), 0, "compiles on an AppArmor + SELinux host");
	is_str(p ? p->apparmor_profile : NULL, "lxm-c1_var-lib-lxm", "generated profile name");
	ok(p && contains(p->apparmor_text, "profile lxm-c1_var-lib-lxm "), "  ...and its text");
	is_str(p ? p->selinux_label : NULL, "system_u:system_r:container_t:s0",
	       "default SELinux label");
	lxm_policy_free(p);
	p = NULL;
	is_int(compile_with(&h, &p, &err, "security.apparmor.profile", "my-profile",
			    "security.selinux.label", "system_u:system_r:spc_t:s0:c1,c2", NULL),
	       0, "named profile and label");
	is_str(p ? p->apparmor_profile : NULL, "my-profile", "  ...the profile is used as is");
	ok(p && !p->apparmor_text, "  ...with no text");
	is_str(p ? p->selinux_label : NULL, "system_u:system_r:spc_t:s0:c1,c2", "  ...the label");
	lxm_policy_free(p);
	p = NULL;
	is_int(compile_with(&host2, &p, &err, "security.apparmor.profile", "my-profile",
			    "security.selinux.label", "u:r:t", NULL),
	       0, "named profile and label on a host without LSMs");
	ok(p && !p->apparmor_profile && !p->apparmor_text, "  ...no AppArmor");
	is_str(p ? p->selinux_label : NULL, "u:r:t", "  ...the label is kept");
	lxm_policy_free(p);
	p = NULL;
	h.root = "/tmp/x-y";
	is_int(compile_with(&h, &p, &err, "security.nesting", "true", "security.privileged", "true",
			    NULL),
	       0, "privileged nesting on an AppArmor host");
	ok(p && contains(p->apparmor_text, "change_profile") &&
		   strncmp(p->apparmor_profile, "lxm-c1__", 8) == 0,
	   "  ...profile for a root that is hashed");
	lxm_policy_free(p);
	ok(!err, "no errors");
	bad_key("security.apparmor.profile", "two words", "AppArmor profile");
	bad_key("security.selinux.label", "container_t", "user:role:type");
	bad_key("security.selinux.label", "u::t", "user:role:type");
	bad_key("security.selinux.label", "u:r:", "user:role:type");
}

static void test_boot(void)
{
	struct lxm_error *err = NULL;
	struct lxm_policy *p;
	int sig = 0;

	p = good_key("image.init", "systemd");
	is_int(p ? p->halt_signal : 0, 37, "systemd halts on SIGRTMIN+3 (37)");
	lxm_policy_free(p);
	p = good_key("image.init", "busybox");
	is_int(p ? p->halt_signal : 0, SIGUSR2, "busybox on SIGUSR2");
	lxm_policy_free(p);
	p = good_key("image.init", "sysvinit");
	is_int(p ? p->halt_signal : 0, SIGPWR, "sysvinit on SIGPWR");
	lxm_policy_free(p);
	p = good_key("image.os", "Alpine");
	is_int(p ? p->halt_signal : 0, SIGUSR2, "alpine (busybox init) on SIGUSR2");
	lxm_policy_free(p);
	p = good_key("image.os", "Debian");
	is_int(p ? p->halt_signal : 0, 37, "Debian (systemd) on SIGRTMIN+3");
	lxm_policy_free(p);
	p = good_key("image.init", "s6");
	is_int(p ? p->halt_signal : 0, SIGPWR, "an unknown init: SIGPWR, no error");
	lxm_policy_free(p);
	p = NULL;
	is_int(compile_with(&host2, &p, &err, "image.init", "systemd", "boot.stop.signal",
			    "SIGUSR1", NULL),
	       0, "boot.stop.signal overrides image.init");
	is_int(p ? p->halt_signal : 0, SIGUSR1, "  ...SIGUSR1");
	lxm_policy_free(p);

	static const struct {
		const char *in;
		int want;
	} good[] = { { "SIGRTMIN+3", 37 },   { "rtmin+3", 37 },	    { "SIGPWR", SIGPWR },
		     { "sigusr2", SIGUSR2 }, { "30", 30 },	    { "SIGRTMAX-2", 62 },
		     { "RTMIN", 34 },	     { " TERM ", SIGTERM }, { "64", 64 } };
	for (size_t k = 0; k < ARRAY_SIZE(good); k++) {
		sig = 0;
		is_int(lxm_parse_signal("boot.stop.signal", good[k].in, &sig, &err), 0, good[k].in);
		is_int(sig, good[k].want, "  ...number");
	}
	ok(!err, "no error on good signals");
	bad_key("boot.stop.signal", "SIGKILL", "cannot handle");
	bad_key("boot.stop.signal", "9", "cannot handle");
	bad_key("boot.stop.signal", "SIGPWER", "did you mean SIGPWR");
	bad_key("boot.stop.signal", "SIGRTMIN+40", "SIGRTMIN+N");
	bad_key("boot.stop.signal", "SIGRTMIN-1", "SIGRTMIN+N");
	bad_key("boot.stop.signal", "0", "from 1 to 64");
	bad_key("boot.stop.signal", "65", "from 1 to 64");

	p = good_key("linux.time.offset", "3600");
	ok(p && p->time_offset_monotonic == 3600 && p->time_offset_boottime == 3600,
	   "one number sets both clocks");
	lxm_policy_free(p);
	p = good_key("linux.time.offset", "monotonic=3600 boottime=-60");
	ok(p && p->time_offset_monotonic == 3600 && p->time_offset_boottime == -60, "per clock");
	lxm_policy_free(p);
	p = good_key("linux.time.offset", "boottime=5,");
	ok(p && p->time_offset_monotonic == 0 && p->time_offset_boottime == 5, "one clock");
	lxm_policy_free(p);
	p = good_key("linux.time.offset", "-86400");
	ok(p && p->time_offset_monotonic == -86400, "negative");
	lxm_policy_free(p);
	bad_key("linux.time.offset", "realtime=5", "did you mean boottime");
	bad_key("linux.time.offset", "monotonik=5", "did you mean monotonic");
	bad_key("linux.time.offset", "monotonic=1 monotonic=2", "given twice");
	bad_key("linux.time.offset", "monotonic=soon", "whole number of seconds");
	bad_key("linux.time.offset", "1h", "does not name a clock");
	bad_key("linux.time.offset", "99999999999", "offset must be from");
	bad_key("linux.time.offset", ",", "per clock");
}

static void test_helpers(void)
{
	char **w = NULL;

	is_int(lxm_split_words(" a,b\n\tc,, d ", &w), 0, "split words");
	ok(strv_len(w) == 4 && strcmp(w[0], "a") == 0 && strcmp(w[3], "d") == 0, "  ...four words");
	lxm_strv_free(w);
	is_int(lxm_split_words("", &w), 0, "split nothing");
	ok(w && !w[0], "  ...an empty vector");
	lxm_strv_free(w);
	{
		const char *const c[] = { "monotonic", "boottime" };

		is_str(lxm_closest_word("BOOTTIM", c, 2), "boottime", "closest word, any case");
	}
}

static void test_hugepages_disk(void)
{
	struct lxm_policy *p;

	p = good_key("limits.hugepages.2MB", "64MiB");
	if (p) {
		is_int(p->limits.hugepages[LXM_HUGEPAGE_2MB], 64 << 20, "2MB huge pages in bytes");
		is_int(p->limits.hugepages[LXM_HUGEPAGE_1GB], -1, "1GB huge pages unset");
		is_int(p->limits.disk_priority, -1, "disk priority unset");
	}
	lxm_policy_free(p);
	p = good_key("limits.hugepages.1GB", "2GiB");
	if (p)
		is_int(p->limits.hugepages[LXM_HUGEPAGE_1GB], 2 * GiB, "1GB huge pages in bytes");
	lxm_policy_free(p);
	bad_key("limits.hugepages.64KB", "1MiB", "this host cannot limit 64KB huge pages");
	bad_key("limits.hugepages.1MB", "1MiB", "hugepages-1024kB");
	bad_key("limits.hugepages.2MB", "lots", "unit");
	p = good_key("limits.disk.priority", "0");
	if (p)
		is_int(p->limits.disk_priority, 0, "disk priority 0 kept (not unset)");
	lxm_policy_free(p);
	bad_key("limits.disk.priority", "11", "");
	bad_key("limits.disk.priority", "high", "");
}

static void test_idmap(void)
{
	struct lxm_error *err = NULL;
	struct lxm_policy *p = NULL;
	struct lxm_raw_idmap *m = NULL;
	size_t n = 0;

	p = good_key("security.idmap.isolated", "true");
	if (p) {
		ok(p->idmap_isolated, "isolated");
		is_int(p->idmap_base, -1, "no base: lxmd allocates");
		is_int(p->idmap_size, 65536, "size 65536 by default");
		ok(!p->protect_shift && p->n_raw_idmap == 0, "no shift protection, no raw map");
	}
	lxm_policy_free(p);
	p = NULL;
	is_int(compile_with(&host2, &p, &err, "security.idmap.isolated", "true",
			    "security.idmap.base", "2000000", "security.idmap.size", "100000",
			    "security.protection.shift", "true", NULL),
	       0, "isolated with base, size and shift protection");
	if (p) {
		is_int(p->idmap_base, 2000000, "base");
		is_int(p->idmap_size, 100000, "size");
		ok(p->protect_shift, "security.protection.shift");
	}
	lxm_policy_free(p);
	p = NULL;
	is_int(compile_with(&host2, &p, &err, "security.idmap.size", "1000", NULL), -EINVAL,
	       "size without isolated refused");
	ok(err && contains(err->msg, "security.idmap.isolated"), "names isolated: %s",
	   err ? err->msg : "");
	lxm_error_free(err);
	err = NULL;
	is_int(compile_with(&host2, &p, &err, "security.privileged", "true", "raw.idmap",
			    "both 1000 1000", NULL),
	       -EINVAL, "raw.idmap on a privileged container refused");
	ok(err && contains(err->msg, "'raw.idmap'") && contains(err->msg, "privileged"),
	   "names raw.idmap and privileged: %s", err ? err->msg : "");
	lxm_error_free(err);
	err = NULL;
	bad_key("security.idmap.base", "4294967000", "passes the largest id");
	bad_key("raw.idmap", "both 1000", "expected lines");
	bad_key("raw.idmap", "uid 10-20 30-35", "the host range has 11 ids, the container's 6");
	bad_key("raw.idmap", "gid 20-10 20-10", "expected lines");
	bad_key("raw.idmap", "uid 1000 1000\nboth 1000 2000", "overlaps an earlier line");

	is_int(lxm_parse_raw_idmap("raw.idmap", "both 1000 1000\n\nuid 2000-2009 100-109\ngid 5 6",
				   &m, &n, &err),
	       0, "three lines and a blank one parse");
	is_int(n, 3, "three entries");
	if (n == 3) {
		ok(m[0].uid && m[0].gid && m[0].host == 1000 && m[0].ns == 1000 && m[0].count == 1,
		   "both 1000 1000");
		ok(m[1].uid && !m[1].gid && m[1].host == 2000 && m[1].ns == 100 && m[1].count == 10,
		   "uid 2000-2009 100-109");
		ok(!m[2].uid && m[2].gid && m[2].host == 5 && m[2].ns == 6, "gid 5 6");
	}
	free(m);
	m = NULL;
	is_int(lxm_parse_raw_idmap("raw.idmap", "uid 1000 1000\ngid 1000 1000", &m, &n, &err), 0,
	       "a uid and a gid line may use the same ids");
	free(m);
}

int main(void)
{
	test_size();
	test_cpu();
	test_allowance();
	test_defaults();
	test_limits();
	test_capabilities();
	test_syscalls();
	test_apparmor_names();
	test_apparmor_profiles();
	test_lsm();
	test_boot();
	test_helpers();
	test_hugepages_disk();
	test_idmap();
	return tap_done();
}
