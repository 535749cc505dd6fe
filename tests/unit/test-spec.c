/* Container spec (JSON both ways, precise errors), the setup step table, close-fds, the seccomp
 * filter, capabilities, and the whole setup end to end: a busybox rootfs run through every step
 * in fresh namespaces, privileged and (with an idmapped rootfs) unprivileged. Everything that
 * changes process state runs in a forked child; every mount lives in a child's mount namespace
 * and vanishes with it. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "container/setup.h"
#include "container/spec.h"
#include "json.h"
#include "tap.h"
#include "util.h"

#define BUSYBOX "/bin/busybox"
/* The capabilities LXD drops by default: sys_module, sys_rawio, sys_time, mac_override,
 * mac_admin. */
#define DEFAULT_CAPS_DROP                                                                          \
	((UINT64_C(1) << CAP_SYS_MODULE) | (UINT64_C(1) << CAP_SYS_RAWIO) |                        \
	 (UINT64_C(1) << CAP_SYS_TIME) | (UINT64_C(1) << CAP_MAC_OVERRIDE) |                       \
	 (UINT64_C(1) << CAP_MAC_ADMIN))

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_container_spec *, lxm_container_spec_free)
#define _cleanup_spec_ _cleanup_(lxm_container_spec_freep)

static const char full_spec[] =
	"{\"name\":\"c1\",\"hostname\":\"web\",\"rootfs\":\"/var/lib/lxm/c1/rootfs\","
	"\"init\":[\"/sbin/init\",\"--log-level=info\"],\"env\":[\"container=lxc\",\"A=b=c\"],"
	"\"privileged\":false,"
	"\"uidmap\":[{\"nsid\":0,\"hostid\":100000,\"count\":65536}],"
	"\"gidmap\":[{\"nsid\":0,\"hostid\":100000,\"count\":65536},"
	"{\"nsid\":65536,\"hostid\":300000,\"count\":10}],"
	"\"cgroup_v2\":\"/sys/fs/cgroup/lxm.slice/c1\",\"cgroup_v1\":[\"/sys/fs/cgroup/memory/lxm/"
	"c1\"],"
	"\"cgroup_ns_root\":\"/lxm.slice/c1\",\"caps_drop\":12884975616,"
	"\"syscalls_deny\":[\"kexec_load\",\"open_by_handle_at\"],\"nesting\":true,"
	"\"apparmor_profile\":\"lxm-c1\",\"apparmor_text\":\"profile lxm-c1 {}\","
	"\"selinux_label\":\"system_u:system_r:container_t:s0\",\"no_new_privs\":true,"
	"\"mounts\":[{\"source\":\"/srv/data\",\"target\":\"/mnt/data\",\"readonly\":true},"
	"{\"source\":\"tmpfs\",\"target\":\"/tmp\",\"fstype\":\"tmpfs\",\"options\":\"size=1m\","
	"\"optional\":true}],"
	"\"devices\":[{\"path\":\"/dev/net/tun\",\"type\":\"c\",\"major\":10,\"minor\":200,"
	"\"mode\":438,\"uid\":0,\"gid\":0},{\"path\":\"/dev/loop0\",\"type\":\"b\",\"major\":7,"
	"\"minor\":0}],"
	"\"time_offset_monotonic\":-3600,\"time_offset_boottime\":86400,\"run_size\":67108864,"
	"\"halt_signal\":37,\"rundir\":\"/run/lxm/c1\",\"control_socket\":\"/run/lxm/c1/"
	"monitor.sock\","
	"\"console_log\":\"/var/log/lxm/c1/console.log\",\"console_log_max\":1048576}";

static int parse(const char *text, struct lxm_container_spec **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *j = json_loads(text, 0, NULL);

	if (!j)
		return -EINVAL;
	return lxm_container_spec_from_json(j, ret, err);
}

static void test_round_trip(void)
{
	_cleanup_spec_ struct lxm_container_spec *s = NULL, *s2 = NULL, *s3 = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_json_ json_t *j = NULL, *j2 = NULL;
	char dir[] = "/tmp/lxm-test-spec-XXXXXX", path[64];
	struct stat st;
	int r;

	r = parse(full_spec, &s, &err);
	is_int(r, 0, "full spec parses");
	if (r < 0) {
		printf("# %s\n", err ? err->msg : "?");
		return;
	}
	is_str(s->name, "c1", "name");
	is_str(s->hostname, "web", "hostname");
	is_str(s->init[1], "--log-level=info", "init argv");
	ok(s->init[2] == NULL, "init NULL-terminated");
	is_str(s->env[1], "A=b=c", "env");
	ok(!s->privileged && s->nesting && s->no_new_privs, "booleans");
	is_int(s->n_uidmap, 1, "one uid map line");
	is_int(s->uidmap[0].hostid, 100000, "uidmap hostid");
	is_int(s->n_gidmap, 2, "two gid map lines");
	is_int(s->gidmap[1].count, 10, "gidmap count");
	is_str(s->cgroup_v1[0], "/sys/fs/cgroup/memory/lxm/c1", "cgroup_v1");
	ok(s->caps_drop == 12884975616ULL, "caps_drop");
	is_int(s->n_mounts, 2, "mounts");
	is_str(s->mounts[0].fstype, "bind", "fstype defaults to bind");
	ok(s->mounts[0].readonly && !s->mounts[0].optional && s->mounts[1].optional, "mount flags");
	is_str(s->mounts[1].options, "size=1m", "mount options");
	is_int(s->n_devices, 2, "devices");
	ok(s->devices[0].type == 'c' && s->devices[0].major == 10 && s->devices[0].minor == 200,
	   "char device");
	ok(s->devices[1].type == 'b' && s->devices[1].mode == 0660, "block device, default mode");
	is_int(s->time_offset_monotonic, -3600, "monotonic offset");
	is_int(s->halt_signal, 37, "halt signal");
	ok(s->syscalls_allow == NULL, "no allow list");

	j = lxm_container_spec_to_json(s);
	ok(j != NULL, "to_json");
	r = lxm_container_spec_from_json(j, &s2, &err);
	is_int(r, 0, "to_json output parses");
	j2 = s2 ? lxm_container_spec_to_json(s2) : NULL;
	ok(j2 && json_equal(j, j2), "round trip is stable");

	ok(mkdtemp(dir) != NULL, "temp dir");
	snprintf(path, sizeof(path), "%s/spec.json", dir);
	is_int(lxm_container_spec_save(s, path, &err), 0, "save");
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600, "saved with mode 0600");
	is_int(lxm_container_spec_load(path, &s3, &err), 0, "load");
	ok(s3 && streq(s3->apparmor_profile, "lxm-c1") && s3->run_size == 67108864,
	   "loaded spec matches");
	unlink(path);
	rmdir(dir);
}

/* Each bad spec fails with -EINVAL (or -ERANGE) and an error containing want. */
static void check_bad(const char *text, const char *want, const char *name)
{
	_cleanup_spec_ struct lxm_container_spec *s = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	int r = parse(text, &s, &err);

	ok(r < 0 && !s && err && strstr(err->msg, want), "bad spec: %s", name);
	if (err && !strstr(err->msg, want))
		printf("#   message: %s\n", err->msg);
}

#define PRIV "\"privileged\":true,"
#define BASE "\"name\":\"c1\",\"rootfs\":\"/r\",\"init\":[\"/sbin/init\"],"
#define MAPS                                                                                       \
	"\"uidmap\":[{\"nsid\":0,\"hostid\":100000,\"count\":65536}],"                             \
	"\"gidmap\":[{\"nsid\":0,\"hostid\":100000,\"count\":65536}]"

static void test_bad_specs(void)
{
	_cleanup_spec_ struct lxm_container_spec *s = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;

	is_int(parse("{" PRIV BASE "\"x\":1}", &s, &err), 0, "minimal privileged spec parses");
	is_str(s ? s->hostname : NULL, "c1", "hostname defaults to the name");
	ok(s && s->halt_signal == SIGPWR, "halt signal defaults to SIGPWR");

	check_bad("[]", "must be a JSON object", "not an object");
	check_bad("{" PRIV "\"name\":\"c1\",\"init\":[\"/sbin/init\"]}",
		  "spec field 'rootfs': required", "missing rootfs");
	check_bad("{" PRIV "\"name\":\"c1\",\"rootfs\":\"/r\"}", "spec field 'init': required",
		  "missing init");
	check_bad("{" PRIV "\"rootfs\":\"/r\",\"init\":[\"/sbin/init\"]}",
		  "spec field 'name': required", "missing name");
	check_bad("{" PRIV "\"name\":\"c1\",\"rootfs\":\"r\",\"init\":[\"/sbin/init\"]}",
		  "'rootfs': 'r' is not an absolute path", "relative rootfs");
	check_bad("{" PRIV "\"name\":\"c1\",\"rootfs\":5,\"init\":[\"/sbin/init\"]}",
		  "'rootfs': must be a string, not an integer", "rootfs of the wrong type");
	check_bad("{" PRIV "\"name\":\"c1\",\"rootfs\":\"/r\",\"init\":\"/sbin/init\"}",
		  "'init': must be an array of strings, not a string", "init as a string");
	check_bad("{" PRIV "\"name\":\"c1\",\"rootfs\":\"/r\",\"init\":[]}",
		  "'init': must have at least one entry", "empty init");
	check_bad("{" PRIV "\"name\":\"c1\",\"rootfs\":\"/r\",\"init\":[\"/sbin/init\",3]}",
		  "'init[1]': must be a string, not an integer", "init with a number");
	check_bad("{" PRIV "\"name\":\"c1\",\"rootfs\":\"/r\",\"init\":[\"sbin/init\"]}",
		  "'init[0]': 'sbin/init' is not an absolute path", "relative init");
	check_bad("{\"privileged\":\"yes\"," BASE MAPS "}",
		  "'privileged': must be a boolean, not a string", "privileged as a string");
	check_bad("{" PRIV BASE "\"env\":[\"NOEQUALS\"]}", "'env[0]': 'NOEQUALS' is not KEY=VALUE",
		  "env without =");
	check_bad("{" PRIV BASE "\"caps_drop\":-1}", "'caps_drop': -1 is out of range",
		  "negative caps_drop");
	check_bad("{" PRIV BASE "\"halt_signal\":0}", "'halt_signal': 0 is out of range",
		  "halt signal 0");
	check_bad("{" PRIV "\"name\":\"c1\",\"rootfs\":\"/r\",\"init\":[\"/sbin/init\"],"
		  "\"hostname\":"
		  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
		  "'hostname': longer than 64 bytes", "hostname too long");
	check_bad("{" PRIV "\"name\":\"-c1\",\"rootfs\":\"/r\",\"init\":[\"/sbin/init\"]}",
		  "spec field 'name'", "invalid instance name");

	/* id maps */
	check_bad("{" BASE "\"gidmap\":[{\"nsid\":0,\"hostid\":1,\"count\":1}]}",
		  "'uidmap': required for an unprivileged container",
		  "unprivileged without uidmap");
	check_bad("{" BASE "\"uidmap\":{\"nsid\":0}}", "'uidmap': must be an array",
		  "uidmap as an object");
	check_bad("{" BASE "\"uidmap\":[{\"nsid\":0,\"count\":5}]}", "'uidmap[0].hostid': required",
		  "idmap line without hostid");
	check_bad("{" BASE "\"uidmap\":[{\"nsid\":0,\"hostid\":\"1\",\"count\":5}]}",
		  "'uidmap[0].hostid': must be an integer, not a string", "hostid as a string");
	check_bad("{" BASE "\"uidmap\":[{\"nsid\":0,\"hostid\":1,\"count\":0}]}",
		  "'uidmap[0].count': 0 is out of range", "idmap count 0");
	check_bad("{" BASE "\"uidmap\":[{\"nsid\":0,\"hostid\":-5,\"count\":1}]}",
		  "'uidmap[0].hostid': -5 is out of range", "negative hostid");
	check_bad("{" BASE "\"uidmap\":[{\"nsid\":4294967000,\"hostid\":1,\"count\":65536}]}",
		  "'uidmap[0]': ids", "idmap past 32 bits");
	check_bad("{" BASE "\"uidmap\":[{\"nsid\":0,\"hostid\":100000,\"count\":65536},"
		  "{\"nsid\":1000,\"hostid\":500000,\"count\":1}],"
		  "\"gidmap\":[{\"nsid\":0,\"hostid\":100000,\"count\":65536}]}",
		  "'uidmap[1]': overlaps uidmap[0]", "overlapping ns ids");
	check_bad("{" BASE "\"gidmap\":[{\"nsid\":0,\"hostid\":100000,\"count\":65536},"
		  "{\"nsid\":70000,\"hostid\":100005,\"count\":1}],"
		  "\"uidmap\":[{\"nsid\":0,\"hostid\":100000,\"count\":65536}]}",
		  "'gidmap[1]': overlaps gidmap[0]", "overlapping host ids");

	/* mounts and devices */
	check_bad("{" PRIV BASE "\"mounts\":[{\"source\":\"/a\"}]}", "'mounts[0].target': required",
		  "mount without target");
	check_bad("{" PRIV BASE "\"mounts\":[{\"source\":\"a\",\"target\":\"/a\"}]}",
		  "'mounts[0].source': 'a' is not an absolute path", "relative bind source");
	check_bad("{" PRIV BASE
		  "\"mounts\":[{\"source\":\"/a\",\"target\":\"/a\",\"readonly\":1}]}",
		  "'mounts[0].readonly': must be a boolean", "readonly as a number");
	check_bad("{" PRIV BASE "\"devices\":[{\"path\":\"/dev/x\",\"type\":\"p\",\"major\":1,"
		  "\"minor\":1}]}",
		  "'devices[0].type': must be \"c\" or \"b\"", "device type p");
	check_bad("{" PRIV BASE "\"devices\":[{\"path\":\"/dev/../etc/shadow\",\"type\":\"c\","
		  "\"major\":1,\"minor\":3}]}",
		  "is not a path under /dev/", "device path escaping /dev");
	check_bad("{" PRIV BASE "\"devices\":[{\"path\":\"/dev/x\",\"type\":\"c\",\"minor\":3}]}",
		  "'devices[0].major': required", "device without major");
}

static void test_load_errors(void)
{
	_cleanup_spec_ struct lxm_container_spec *s = NULL;
	_cleanup_error_ struct lxm_error *e1 = NULL, *e2 = NULL, *e3 = NULL;
	char dir[] = "/tmp/lxm-test-spec-XXXXXX", path[64];

	ok(lxm_container_spec_load("/nonexistent/spec.json", &s, &e1) == -ENOENT && e1 &&
		   strstr(e1->msg, "read spec /nonexistent/spec.json: No such file"),
	   "load of a missing file says so");
	if (!mkdtemp(dir))
		return;
	snprintf(path, sizeof(path), "%s/spec.json", dir);
	lxm_write_file_atomic(path, "{\"name\":", 8, 0600);
	ok(lxm_container_spec_load(path, &s, &e2) == -EINVAL && e2 &&
		   strstr(e2->msg, "invalid JSON") && strstr(e2->msg, path),
	   "load of broken JSON names the file");
	lxm_write_file_atomic(path, "{\"name\":\"c1\"}", 13, 0600);
	ok(lxm_container_spec_load(path, &s, &e3) == -EINVAL && e3 && strstr(e3->msg, path) &&
		   strstr(e3->msg, "'rootfs': required"),
	   "load of an incomplete spec names the file and the field");
	unlink(path);
	rmdir(dir);
}

static void test_step_table(void)
{
	static const char *const want[] = {
		"idmap",      "mount-private", "mount-rootfs", "mount-proc",   "mount-sys",
		"mount-dev",  "mount-console", "mount-run",    "mount-cgroup", "mount-extra",
		"pivot-root", "hostname",      "loopback",     "rlimits",      "capabilities",
		"lsm",	      "no-new-privs",  "seccomp",      "close-fds",    "exec-init",
	};
	size_t n = 0;
	bool same = true;

	for (; lxm_setup_steps[n].name; n++) {
		if (n >= ARRAY_SIZE(want) || !streq(lxm_setup_steps[n].name, want[n]) ||
		    !lxm_setup_steps[n].run)
			same = false;
	}
	is_int(n, ARRAY_SIZE(want), "step count");
	ok(same, "step names and order");
	ok(lxm_setup_steps[n].run == NULL, "table ends with {NULL, NULL}");
}

/* Runs fn in a forked child; returns its exit code (or 128 + signal). */
static int in_child(int (*fn)(void *), void *arg)
{
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0)
		_exit(fn(arg));
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static int child_close_fds(void *arg)
{
	int a[2], b = open("/dev/null", O_RDONLY), keep;

	if (pipe(a) < 0 || b < 0)
		return 10;
	keep = a[1];
	if (lxm_close_fds_except(&keep, 1) < 0)
		return 11;
	if (fd_open(a[0]) || fd_open(b))
		return 12;
	if (!fd_open(keep) || !fd_open(0) || !fd_open(1) || !fd_open(2))
		return 13;
	return 0;
}

/* The close-fds step: what would survive exec is closed, close-on-exec fds stay until exec. */
static int child_close_step(void *arg)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	int plain = open("/dev/null", O_RDONLY), cloexec = open("/dev/null", O_RDONLY | O_CLOEXEC);
	const struct lxm_setup_step *step = lxm_setup_steps;

	while (step->name && !streq(step->name, "close-fds"))
		step++;
	if (!step->run || plain < 0 || cloexec < 0)
		return 20;
	if (step->run(NULL, NULL, &err) < 0)
		return 21;
	if (fd_open(plain))
		return 22;
	if (!fd_open(cloexec) || !fd_open(1))
		return 23;
	return 0;
}

static void test_close_fds(void)
{
	is_int(in_child(child_close_fds, NULL), 0, "lxm_close_fds_except keeps only what it must");
	is_int(in_child(child_close_step, NULL), 0,
	       "close-fds step closes inheritable fds, keeps close-on-exec ones");
}

static char *default_deny[] = { "getpgid",	     "kexec_load",  "kexec_file_load",
				"open_by_handle_at", "init_module", "finit_module",
				"delete_module",     NULL };

#ifdef HAVE_SECCOMP
#if defined(__x86_64__)
/* A syscall through the i386 entry point (int 0x80), which seccomp sees as AUDIT_ARCH_I386. */
static long syscall_i386(long nr, long a1)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a1) : "memory");
	return ret;
}

static int child_ia32_works(void *arg)
{
	return syscall_i386(20 /* i386 getpid */, 0) > 0 ? 0 : 1;
}
#endif

static int child_seccomp_deny(void *arg)
{
	struct lxm_container_spec s = { .syscalls_deny = default_deny };
	_cleanup_error_ struct lxm_error *err = NULL;
	bool ia32 = arg != NULL;

	if (syscall(SYS_getpgid, 0) < 0)
		return 30;
	if (lxm_apply_seccomp(&s, &err) < 0)
		return 31;
	if (syscall(SYS_getpgid, 0) != -1 || errno != EPERM)
		return 32;
	/* Invalid flags: without the filter the kernel says EINVAL (or EPERM for a non-root). */
	if (syscall(SYS_kexec_load, 0, 0, NULL, 0x7fff0000UL) != -1 || errno != EPERM)
		return 33;
	if (syscall(SYS_getpid) != getpid())
		return 34;
	if (umount2("/nonexistent-lxm", MNT_FORCE) != -1 || errno != EPERM)
		return 35;
	if (umount2("/nonexistent-lxm", 0) != -1 || errno == EPERM)
		return 36;
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0)
		return 37;
#if defined(__x86_64__)
	if (ia32 && syscall_i386(132 /* i386 getpgid */, 0) != -EPERM)
		return 38;
#endif
	return 0;
}

static char *allow_list[] = { "getpid", "exit_group", "exit", "write", "rt_sigreturn", NULL };

/* After the filter, only raw listed syscalls: not even the sanitizers' exit hooks. */
static int allow_checks(void)
{
	if (syscall(SYS_getpid) <= 0)
		return 41;
	if (syscall(SYS_getppid) != -1 || errno != EPERM)
		return 42;
	if (syscall(SYS_getpgid, 0) != -1 || errno != EPERM)
		return 43;
	return 0;
}

static int child_seccomp_allow(void *arg)
{
	struct lxm_container_spec s = { .syscalls_allow = allow_list };
	struct lxm_error *err = NULL;

	if (lxm_apply_seccomp(&s, &err) < 0)
		return 40;
	syscall(SYS_exit_group, allow_checks());
	return 44;
}

#endif /* HAVE_SECCOMP */

static void test_seccomp(void)
{
#ifdef HAVE_SECCOMP
	_cleanup_error_ struct lxm_error *err = NULL;
	char *bogus[] = { "getpid", "no_such_syscall_lxm", NULL };
	struct lxm_container_spec s = { .syscalls_deny = bogus };
	void *ia32 = NULL;

#if defined(__x86_64__)
	/* Only where the kernel runs i386 code at all (CONFIG_IA32_EMULATION). */
	ia32 = in_child(child_ia32_works, NULL) == 0 ? (void *)1 : NULL;
#endif
	is_int(in_child(child_seccomp_deny, ia32), 0,
	       "deny list: getpgid, kexec_load and forced umount fail with EPERM, getpid works");
	if (!ia32)
		ok(1, "# SKIP the kernel does not run i386 code");
	else
		ok(1, "i386 ABI covered (checked in the child)");
	is_int(in_child(child_seccomp_allow, NULL), 0,
	       "allow list: listed syscalls work, others fail with EPERM");
	ok(lxm_apply_seccomp(&s, &err) == -EINVAL && err &&
		   strstr(err->msg, "unknown syscall 'no_such_syscall_lxm' in the deny list"),
	   "an unknown syscall name is an error naming it");
#else
	ok(1, "# SKIP built without libseccomp");
	ok(1, "# SKIP built without libseccomp");
	ok(1, "# SKIP built without libseccomp");
	ok(1, "# SKIP built without libseccomp");
#endif
}

static int child_caps(void *arg)
{
	struct lxm_container_spec s = { .caps_drop = DEFAULT_CAPS_DROP | (UINT64_C(1) << 63) };
	_cleanup_error_ struct lxm_error *err = NULL;
	cap_t caps;
	cap_flag_value_t v = CAP_SET;
	int r;

	if (lxm_apply_capabilities(&s, &err) < 0)
		return 50;
	if (prctl(PR_CAPBSET_READ, CAP_SYS_MODULE) != 0 ||
	    prctl(PR_CAPBSET_READ, CAP_SYS_TIME) != 0 ||
	    prctl(PR_CAPBSET_READ, CAP_MAC_ADMIN) != 0 ||
	    prctl(PR_CAPBSET_READ, CAP_SYS_RAWIO) != 0)
		return 51;
	if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN) != 1 || prctl(PR_CAPBSET_READ, CAP_CHOWN) != 1)
		return 52;
	caps = cap_get_proc();
	if (!caps)
		return 53;
	r = cap_get_flag(caps, CAP_SYS_MODULE, CAP_INHERITABLE, &v);
	cap_free(caps);
	if (r < 0 || v != CAP_CLEAR)
		return 54;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_CHOWN, 0, 0) != 0)
		return 55;
	return 0;
}

static int child_lsm(void *arg)
{
	struct lxm_container_spec none = { 0 }, aa = { .apparmor_profile = "lxm-test-none" };
	_cleanup_error_ struct lxm_error *err = NULL;
	int r;

	if (lxm_apply_lsm(&none, &err) != 0)
		return 60;
	r = lxm_apply_lsm(&aa, &err);
	/* Skipped where the kernel has no AppArmor; refused (no such profile) where it does. */
	if (r == 1)
		return 0;
	return r < 0 && err && strstr(err->msg, "apparmor: exec init under profile 'lxm-test-none'")
		       ? 0
		       : 61;
}

static void test_capabilities_lsm(void)
{
	if (geteuid() != 0)
		ok(1, "# SKIP dropping from the bounding set needs root");
	else
		is_int(in_child(child_caps, NULL), 0,
		       "capabilities: dropped from bounding and inheritable, others kept");
	is_int(in_child(child_lsm, NULL), 0, "lsm: nothing asked is a no-op, a missing LSM skips");
}

/* ---- end to end ---- */

struct e2e {
	char dir[64];	 /* temp dir: rootfs/, extra/, and nothing else */
	char rootfs[96]; /* dir/rootfs */
	char extra[96];	 /* dir/extra, bound read-only at /mnt/extra */
	char out[16384]; /* init's stdout */
	char err[1024];	 /* the setup error, if any */
	int status;	 /* exit code of the setup child (128 + signal) */
};

static int copy_file(const char *from, const char *to, mode_t mode)
{
	_cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	char buf[65536];
	ssize_t n;

	if (in < 0 || out < 0)
		return -errno;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			return -EIO;
	return n < 0 ? -errno : 0;
}

static int e2e_prepare(struct e2e *e)
{
	char path[160];

	snprintf(e->dir, sizeof(e->dir), "/tmp/lxm-test-setup-XXXXXX");
	if (!mkdtemp(e->dir))
		return -errno;
	/* The container's root (a mapped uid when unprivileged) must be able to reach the rootfs
	 * path, as under /var/lib/lxm. */
	chmod(e->dir, 0711);
	snprintf(e->rootfs, sizeof(e->rootfs), "%s/rootfs", e->dir);
	snprintf(e->extra, sizeof(e->extra), "%s/extra", e->dir);
	snprintf(path, sizeof(path), "%s/bin", e->rootfs);
	if (mkdir(e->rootfs, 0755) < 0 || mkdir(path, 0755) < 0 || mkdir(e->extra, 0755) < 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/bin/busybox", e->rootfs);
	if (copy_file(BUSYBOX, path, 0755) < 0)
		return -EIO;
	snprintf(path, sizeof(path), "%s/hello.txt", e->extra);
	return lxm_write_file_atomic(path, "extra-ok\n", 9, 0644);
}

static void e2e_cleanup(struct e2e *e)
{
	char cmd[128];

	if (!e->dir[0] || !startswith(e->dir, "/tmp/lxm-test-setup-"))
		return;
	/* Only files made by this test and by the setup (mount points) are in there; every mount
	 * was in a child's mount namespace. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", e->dir);
}

static int send_fd(int sock, int fd)
{
	char c = 'f', ctl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)
	};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &mh, 0) == 1 ? 0 : -errno;
}

static int recv_fd(int sock)
{
	char c, ctl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)
	};
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static void report(int fd, const char *what, int errnum)
{
	dprintf(fd, "%s: %s", what, strerror(errnum));
}

/* Process B, pid 1 of the new pid namespace: what the monitor's clone3 child does after
 * wait-for-parent. Never returns. */
static void __attribute__((noreturn))
run_setup(const struct lxm_container_spec *s, int tree, int console, int out, int errfd)
{
	struct lxm_setup_fds fds = { .rootfs_tree = tree, .console_slave = console };
	struct lxm_error *err = NULL;
	int null = open("/dev/null", O_RDONLY);

	/* The whole pid namespace dies with us if the test gives up on it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0) {
		report(errfd, "stdio", errno);
		_exit(2);
	}
	close(null);
	close(out);
	lxm_container_setup_and_exec(s, &fds, &err);
	dprintf(errfd, "%s", err ? err->msg : "setup returned without an error");
	_exit(1);
}

static int wait_exit_code(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 255;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static const int e2e_ns =
	CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP;

/* Process A (privileged): new namespaces, then B as their pid 1. */
static void __attribute__((noreturn))
run_privileged(const struct lxm_container_spec *s, int console, int out, int errfd)
{
	pid_t pid;
	int tree;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (unshare(e2e_ns) < 0) {
		report(errfd, "unshare", errno);
		_exit(2);
	}
	pid = fork();
	if (pid < 0)
		_exit(2);
	if (pid == 0) {
		tree = open_tree(AT_FDCWD, s->rootfs,
				 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
		if (tree < 0) {
			report(errfd, "open_tree", errno);
			_exit(2);
		}
		run_setup(s, tree, console, out, errfd);
	}
	close(out);
	_exit(wait_exit_code(pid));
}

/* Process A (unprivileged): a user namespace (owning all the others) whose maps the parent
 * writes, then B as pid 1 with the idmapped rootfs the parent made. */
static void __attribute__((noreturn))
run_unprivileged(const struct lxm_container_spec *s, int sock, int out, int errfd)
{
	pid_t pid;
	int tree;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (unshare(CLONE_NEWUSER | e2e_ns) < 0) {
		report(errfd, "unshare", errno);
		_exit(2);
	}
	if (write(sock, "u", 1) != 1)
		_exit(2);
	tree = recv_fd(sock);
	if (tree < 0) {
		report(errfd, "receive the rootfs tree", errno);
		_exit(2);
	}
	pid = fork();
	if (pid < 0)
		_exit(2);
	if (pid == 0)
		run_setup(s, tree, -1, out, errfd);
	close(out);
	_exit(wait_exit_code(pid));
}

static int write_str(const char *path, const char *s)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -errno;
}

/* The monitor's part for an unprivileged child: id maps, then the idmapped rootfs tree. */
static int parent_map(pid_t pid, int sock, const char *rootfs, char *why, size_t whylen)
{
	_cleanup_close_ int tree = -1, userns = -1;
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP };
	char path[64], c;

	if (read(sock, &c, 1) != 1)
		return snprintf(why, whylen, "child did not get a user namespace"), -EIO;
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	if (write_str(path, "0 100000 65536\n") < 0)
		return snprintf(why, whylen, "write uid_map: %s", strerror(errno)), -EIO;
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	if (write_str(path, "0 100000 65536\n") < 0)
		return snprintf(why, whylen, "write gid_map: %s", strerror(errno)), -EIO;
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	userns = open(path, O_RDONLY | O_CLOEXEC);
	tree = open_tree(AT_FDCWD, rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (userns < 0 || tree < 0)
		return snprintf(why, whylen, "open_tree/userns: %s", strerror(errno)), -EIO;
	attr.userns_fd = (uint64_t)userns;
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		return snprintf(why, whylen, "idmap the rootfs: %s", strerror(errno)), -EOPNOTSUPP;
	if (send_fd(sock, tree) < 0)
		return snprintf(why, whylen, "send the tree: %s", strerror(errno)), -EIO;
	return 0;
}

/* Reads fd to EOF (or EIO: a pty whose slave closed) within the deadline; false on timeout. */
static bool read_all(int fd, char *buf, size_t len, int timeout_ms)
{
	bool done = false;
	size_t n = 0;
	uint64_t end = lxm_monotonic_ms() + (uint64_t)timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = lxm_monotonic_ms();
		ssize_t r;

		if (now >= end || poll(&p, 1, (int)(end - now)) <= 0)
			break;
		r = read(fd, buf + n, len - 1 - n);
		if (r <= 0 || n + (size_t)r == len - 1) {
			done = true;
			break;
		}
		n += (size_t)r;
	}
	buf[n] = '\0';
	return done;
}

/* Runs the spec's init through the whole setup; its stdout (or the pty's) lands in e->out. */
static int e2e_run(const struct lxm_container_spec *s, bool unprivileged, int console_master,
		   int console_slave, struct e2e *e)
{
	int out[2], errp[2], sock[2] = { -1, -1 };
	bool done;
	pid_t pid;

	e->out[0] = e->err[0] = '\0';
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
		return -errno;
	if (unprivileged && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock) < 0)
		return -errno;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(out[0]);
		close(errp[0]);
		if (unprivileged) {
			close(sock[0]);
			run_unprivileged(s, sock[1], out[1], errp[1]);
		}
		run_privileged(s, console_slave, out[1], errp[1]);
	}
	close(out[1]);
	close(errp[1]);
	if (unprivileged) {
		close(sock[1]);
		if (parent_map(pid, sock[0], s->rootfs, e->err, sizeof(e->err)) < 0)
			kill(pid, SIGKILL); /* and so, by PDEATHSIG, everything below it */
		close(sock[0]);
	}
	if (console_master >= 0) {
		/* init writes to the pty; the pipe only closes. */
		close(console_slave);
		done = read_all(console_master, e->out, sizeof(e->out), 30000);
	} else {
		done = read_all(out[0], e->out, sizeof(e->out), 30000);
	}
	if (!e->err[0])
		read_all(errp[0], e->err, sizeof(e->err), 1000);
	close(out[0]);
	close(errp[0]);
	if (!done) {
		snprintf(e->err, sizeof(e->err), "timed out");
		kill(pid, SIGKILL);
	}
	e->status = wait_exit_code(pid);
	return 0;
}

/* The value after "key=" on its own line of out, or "" (copied into buf). */
static const char *line_value(const char *out, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);

	buf[0] = '\0';
	for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, key, kl) == 0 && l[kl] == '=') {
			size_t n = strcspn(l + kl + 1, "\r\n");

			snprintf(buf, len, "%.*s", (int)n, l + kl + 1);
			break;
		}
	}
	return buf;
}

#define SCRIPT                                                                                     \
	"echo host=$(hostname)\n"                                                                  \
	"echo pid=$$\n"                                                                            \
	"echo cmdline=$(tr '\\0' ' ' < /proc/1/cmdline)\n"                                         \
	"echo dev=$(ls /dev)\n"                                                                    \
	"echo root=$(ls /)\n"                                                                      \
	"echo ok > /run/x && echo run=$(cat /run/x)\n"                                             \
	"test -e %s && echo hostroot=visible || echo hostroot=hidden\n"                            \
	"(echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo procsys=rw || echo "           \
	"procsys=ro\n"                                                                             \
	"(echo 1 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo procnet=rw || "              \
	"echo procnet=ro\n"                                                                        \
	"for f in kcore sysrq-trigger timer_list; do if [ -e /proc/$f ]; then "                    \
	"echo mask_$f=$(stat -c %%t:%%T /proc/$f); else echo mask_$f=absent; fi; done\n"           \
	"grep -q '^tmpfs /proc/acpi tmpfs ro,' /proc/mounts && echo acpi=masked || echo acpi=no\n" \
	"grep -q '^sysfs /sys sysfs ro,' /proc/mounts && echo sys=ro || echo sys=rw\n"             \
	"grep -q '^cgroup2 /sys/fs/cgroup cgroup2 rw' /proc/mounts && echo cgroup=yes || "         \
	"echo cgroup=no\n"                                                                         \
	"echo pts=$(ls /dev/pts)\n"                                                                \
	"echo extra=$(cat /mnt/extra/hello.txt)\n"                                                 \
	"(touch /mnt/extra/new) 2>/dev/null && echo extrarw=yes || echo extrarw=no\n"              \
	"echo capbnd=$(grep CapBnd /proc/self/status | cut -f2)\n"                                 \
	"echo seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2)\n"                           \
	"echo nnp=$(grep '^NoNewPrivs:' /proc/self/status | cut -f2)\n"                            \
	"echo uid=$(id -u) null=$(stat -c %%t:%%T /dev/null)\n"                                    \
	"echo tty=$(tty)\n"                                                                        \
	"echo end=yes\n"

static void e2e_spec(struct lxm_container_spec *s, struct e2e *e, char **argv, char *script,
		     size_t len, bool privileged, struct lxm_spec_mount *m)
{
	static char *env[] = { "PATH=/bin", "container=lxc", NULL };
	static struct lxm_idmap map = { .nsid = 0, .hostid = 100000, .count = 65536 };

	snprintf(script, len, SCRIPT, e->dir);
	argv[0] = BUSYBOX;
	argv[1] = "sh";
	argv[2] = "-c";
	argv[3] = script;
	argv[4] = NULL;
	*m = (struct lxm_spec_mount){
		.source = e->extra, .target = "/mnt/extra", .fstype = "bind", .readonly = true
	};
	*s = (struct lxm_container_spec){
		.name = "e2e",
		.hostname = "lxm-e2e-host",
		.rootfs = e->rootfs,
		.init = argv,
		.env = env,
		.privileged = privileged,
		.uidmap = privileged ? NULL : &map,
		.n_uidmap = privileged ? 0 : 1,
		.gidmap = privileged ? NULL : &map,
		.n_gidmap = privileged ? 0 : 1,
		.caps_drop = DEFAULT_CAPS_DROP,
		.syscalls_deny = default_deny,
		.mounts = m,
		.n_mounts = 1,
		.run_size = 1 << 20,
	};
}

static char tname[160];
/* A test name with the mode in it: "e2e unprivileged: /run is writable". */
#define T(what) (snprintf(tname, sizeof(tname), "e2e %s: %s", mode, what), tname)

static void e2e_check(const struct e2e *e, const char *mode)
{
	static const char *const masked[] = { "kcore", "sysrq-trigger", "timer_list" };
	char v[512];
	unsigned long long capbnd;

	if (e->status != 0 || e->err[0])
		printf("# %s: status %d, error: %s\n#   output: %s\n", mode, e->status, e->err,
		       e->out);
	is_str(e->err, "", T("no setup error"));
	is_str(line_value(e->out, "end", v, sizeof(v)), "yes", T("init ran to the end"));
	is_str(line_value(e->out, "host", v, sizeof(v)), "lxm-e2e-host", T("hostname"));
	is_str(line_value(e->out, "pid", v, sizeof(v)), "1", T("init is pid 1"));
	ok(startswith(line_value(e->out, "cmdline", v, sizeof(v)), BUSYBOX " sh -c"), "%s",
	   T("/proc/1/cmdline is init's"));
	is_str(line_value(e->out, "dev", v, sizeof(v)),
	       "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero",
	       T("/dev holds only the allowed nodes"));
	is_str(line_value(e->out, "root", v, sizeof(v)), "bin dev mnt proc run sys",
	       T("/ is the rootfs"));
	is_str(line_value(e->out, "run", v, sizeof(v)), "ok", T("/run is writable"));
	is_str(line_value(e->out, "hostroot", v, sizeof(v)), "hidden",
	       T("the host's root is not visible"));
	is_str(line_value(e->out, "procsys", v, sizeof(v)), "ro", T("/proc/sys is read-only"));
	is_str(line_value(e->out, "procnet", v, sizeof(v)), "rw", T("/proc/sys/net is writable"));
	/* Masks cover what this kernel has (no kcore without CONFIG_PROC_KCORE, ...). */
	for (size_t i = 0; i < ARRAY_SIZE(masked); i++) {
		char host[64], key[64], what[96];

		snprintf(host, sizeof(host), "/proc/%s", masked[i]);
		snprintf(key, sizeof(key), "mask_%s", masked[i]);
		snprintf(what, sizeof(what), "%s is /dev/null (or absent here)", host);
		is_str(line_value(e->out, key, v, sizeof(v)),
		       access(host, F_OK) == 0 ? "1:3" : "absent", T(what));
	}
	is_str(line_value(e->out, "acpi", v, sizeof(v)),
	       access("/proc/acpi", F_OK) == 0 ? "masked" : "no",
	       T("/proc/acpi is an empty read-only tmpfs"));
	is_str(line_value(e->out, "sys", v, sizeof(v)), "ro", T("/sys is read-only"));
	is_str(line_value(e->out, "cgroup", v, sizeof(v)), "yes", T("cgroup2 on /sys/fs/cgroup"));
	is_str(line_value(e->out, "pts", v, sizeof(v)), "ptmx",
	       T("/dev/pts is a new devpts instance"));
	is_str(line_value(e->out, "extra", v, sizeof(v)), "extra-ok", T("extra bind mount"));
	is_str(line_value(e->out, "extrarw", v, sizeof(v)), "no", T("extra mount is read-only"));
	capbnd = strtoull(line_value(e->out, "capbnd", v, sizeof(v)), NULL, 16);
	ok(v[0] && (capbnd & DEFAULT_CAPS_DROP) == 0 && (capbnd & (1ULL << CAP_SYS_ADMIN)),
	   "%s (%s)", T("bounding set without the dropped capabilities"), v);
	/* Mode 2 is a filter; a build without libseccomp runs without one. */
#ifdef HAVE_SECCOMP
	is_str(line_value(e->out, "seccomp", v, sizeof(v)), "2", T("seccomp filter active"));
#else
	is_str(line_value(e->out, "seccomp", v, sizeof(v)), "0",
	       T("no seccomp filter (not built)"));
#endif
	is_str(line_value(e->out, "nnp", v, sizeof(v)), "0", T("no_new_privs not set"));
	is_str(line_value(e->out, "uid", v, sizeof(v)), "0 null=1:3",
	       T("init runs as root, /dev/null is 1:3"));
}

static void test_e2e(void)
{
	static struct e2e e;
	struct lxm_container_spec s;
	struct lxm_spec_mount m;
	char *argv[5], script[4096], *bad_init[] = { "/sbin/init", NULL }, v[64];
	int master, slave;

	if (geteuid() != 0 || access(BUSYBOX, X_OK) < 0) {
		ok(1, "# SKIP end-to-end setup needs root and " BUSYBOX " (busybox-static)");
		return;
	}
	if (e2e_prepare(&e) < 0) {
		ok(0, "e2e: prepare the rootfs in %s", e.dir);
		e2e_cleanup(&e);
		return;
	}

	/* Privileged, init's stdout on a pipe. */
	e2e_spec(&s, &e, argv, script, sizeof(script), true, &m);
	is_int(e2e_run(&s, false, -1, -1, &e), 0, "e2e privileged: run");
	e2e_check(&e, "privileged");
	is_int(e.status, 0, "e2e privileged: init exited 0");

	/* The console: a pty slave bound on /dev/console, init's controlling tty and stdio. */
	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	slave = -1;
	if (master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0)
		slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
	ok(slave >= 0, "e2e console: pty");
	if (slave >= 0) {
		e2e_run(&s, false, master, slave, &e);
		is_str(e.err, "", "e2e console: no setup error");
		is_str(line_value(e.out, "tty", v, sizeof(v)), "/dev/console",
		       "e2e console: init's stdin is /dev/console");
		is_str(line_value(e.out, "host", v, sizeof(v)), "lxm-e2e-host",
		       "e2e console: output arrives on the pty");
	}
	if (master >= 0)
		close(master);

	/* A missing init is reported by name, from the exec-init step. */
	s.init = bad_init;
	e2e_run(&s, false, -1, -1, &e);
	is_str(e.err, "step 'exec-init': init /sbin/init not found in the container's rootfs",
	       "e2e: a missing init names itself and the step");
	ok(e.status == 1, "e2e: the setup child exits 1 after a failed step");

	/* Unprivileged: user namespace 0 -> 100000 (65536), idmapped rootfs. */
	e2e_spec(&s, &e, argv, script, sizeof(script), false, &m);
	e2e_run(&s, true, -1, -1, &e);
	if (strstr(e.err, "idmap the rootfs") || strstr(e.err, "write uid_map")) {
		ok(1, "# SKIP unprivileged e2e: %s", e.err);
	} else {
		e2e_check(&e, "unprivileged");
		is_int(e.status, 0, "e2e unprivileged: init exited 0");
	}
	e2e_cleanup(&e);
}

int main(void)
{
	test_round_trip();
	test_bad_specs();
	test_load_errors();
	test_step_table();
	test_close_fds();
	test_seccomp();
	test_capabilities_lsm();
	test_e2e();
	return tap_done();
}
