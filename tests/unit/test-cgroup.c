/* cgroups: detection from mountinfo and the v2 and v1 drivers against fake cgroupfs trees (plain
 * dirs and files under a temporary prefix, checking exactly what each call writes), then both
 * drivers against this host's real hierarchies when run as root.
 *
 * A fake tree is not cgroupfs: nothing makes control files when a dir is made, so the test lays
 * out the files a call will write, and rmdir refuses a dir that still holds files, so before a
 * destroy that should succeed the test deletes the files itself (a first destroy with the files
 * there shows what destroy writes on its way, and that it reports the dir it could not remove).
 * Fake cgroup.procs files stay empty: destroy sends SIGKILL to the pids it finds there. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "util.h"
#include "lxmd/cgroup/cgroup.h"
#include "tests/unit/tap.h"

#define MiB (1024 * 1024)

static char tmpdir[] = "/tmp/lxm-test-cgroup-XXXXXX";

/* A path inside the temporary directory; static, valid until the call after next. */
static const char *tpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tpath(const char *fmt, ...)
{
	static char buf[2][PATH_MAX];
	static int which;
	char rel[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	which = !which;
	snprintf(buf[which], sizeof(buf[which]), "%s/%s", tmpdir, rel);
	return buf[which];
}

/* Writes a file (making its parents) with exact content. */
static void put(const char *path, const char *content)
{
	_cleanup_free_ char *dir = strdup(path);
	FILE *f;

	*strrchr(dir, '/') = '\0';
	lxm_mkdir_p(dir, 0755);
	f = fopen(path, "we");
	if (!f) {
		printf("# cannot write %s: %s\n", path, strerror(errno));
		return;
	}
	fputs(content, f);
	fclose(f);
}

/* A file's content without trailing whitespace (static), or NULL when it cannot be read. */
static const char *get(const char *path)
{
	static char buf[4096];
	_cleanup_free_ char *s = NULL;
	size_t len;

	if (lxm_read_file(path, &s, &len) < 0)
		return NULL;
	while (len > 0 && strchr(" \t\n", s[len - 1]))
		s[--len] = '\0';
	snprintf(buf, sizeof(buf), "%s", s);
	return buf;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static int unlink_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_F)
		unlink(path);
	return 0;
}

/* Deletes the regular files below dir, keeping the dirs: a fake cgroup's control files. */
static void rm_files(const char *dir)
{
	nftw(dir, unlink_file, 16, FTW_PHYS);
}

static int remove_any(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *dir)
{
	nftw(dir, remove_any, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t strv_len(char **v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

static struct lxm_limits limits_none(void)
{
	return (struct lxm_limits){ .memory = -1,
				    .memory_swap = true,
				    .cpu_quota_us = -1,
				    .cpu_period_us = -1,
				    .cpu_weight = -1,
				    .processes = -1,
				    .hugepages = { -1, -1, -1, -1 },
				    .disk_priority = -1 };
}

/* 512 MiB hard without swap, cpus 0-1, half a cpu, weight 200, 100 processes. */
static struct lxm_limits limits_full(void)
{
	struct lxm_limits lim = limits_none();

	lim.memory = 512 * MiB;
	lim.memory_swap = false;
	lim.cpuset = (char *)"0-1";
	lim.cpu_quota_us = 50000;
	lim.cpu_period_us = 100000;
	lim.cpu_weight = 200;
	lim.processes = 100;
	return lim;
}

static struct lxm_cgroup_layout *detect_text(const char *name, const char *mountinfo,
					     const char *prefix, struct lxm_error **err)
{
	struct lxm_cgroup_layout *l = NULL;
	_cleanup_free_ char *pfx = strdup(prefix), *path = strdup(tpath("%s", name));

	put(path, mountinfo);
	if (lxm_cgroup_detect(path, pfx, &l, err) < 0)
		return NULL;
	return l;
}

/* ---- detection ---- */

static void test_detect_errors(void)
{
	_cleanup_error_ struct lxm_error *err = NULL, *err2 = NULL;
	struct lxm_cgroup_layout *l = NULL;
	int r;

	put(tpath("mi-none"), "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n");
	r = lxm_cgroup_detect(tpath("mi-none"), tpath("x"), &l, &err);
	is_int(r, -ENOENT, "detect: no cgroup mount is ENOENT");
	ok(err && strstr(err->msg, "no cgroup or cgroup2 mount in") &&
		   strstr(err->msg, tpath("mi-none")),
	   "detect: the message names the mountinfo file: %s", err ? err->msg : "");
	ok(!l, "detect: no layout on failure");

	r = lxm_cgroup_detect(tpath("mi-missing"), NULL, &l, &err2);
	is_int(r, -ENOENT, "detect: missing mountinfo");
	ok(err2 && strstr(err2->msg, "detect cgroups: read ") &&
		   strstr(err2->msg, "No such file or directory"),
	   "detect: missing mountinfo message: %s", err2 ? err2->msg : "");
}

static void test_detect_named_only(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_layout *l;

	/* systemd's hybrid with every controller moved to v2 (cgroup_no_v1=all). */
	put(tpath("named/sys/fs/cgroup/unified/cgroup.controllers"), "cpu memory pids\n");
	l = detect_text("mi-named",
			"31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
			"40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup "
			"rw,xattr,name=systemd\n"
			"41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
			tpath("named"), &err);
	ok(l != NULL, "detect: named hierarchy + v2");
	if (l)
		is_int(lxm_cgroup_mode(l), LXM_CGROUP_UNIFIED,
		       "detect: only a named v1 hierarchy beside v2 is unified");
	lxm_cgroup_layout_free(l);
}

/* ---- a fake unified host ---- */

#define U_ROOT "u/sys/fs/cgroup"
#define U_C1   U_ROOT "/lxm.payload.c1"

static const char unified_mountinfo[] =
	"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
	"25 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
	"30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
	"rw,nsdelegate,memory_recursiveprot\n";

static void fake_unified_instance(void)
{
	static const char *const files[][2] = {
		{ "memory.max", "max\n" },
		{ "memory.low", "0\n" },
		{ "memory.swap.max", "max\n" },
		{ "cpu.max", "max 100000\n" },
		{ "cpu.weight", "100\n" },
		{ "cpuset.cpus", "\n" },
		{ "pids.max", "max\n" },
		{ "cgroup.freeze", "0\n" },
		/* Seeded so that waiting for the freeze ends at once. */
		{ "cgroup.events", "populated 0\nfrozen 1\n" },
		{ "cgroup.procs", "" },
		{ "cgroup.kill", "" },
		{ "memory.current", "1000\n" },
		{ "memory.peak", "2000\n" },
		{ "memory.swap.current", "30\n" },
		{ "cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n" },
		{ "pids.current", "3\n" },
		/* A host with 2 MB and 1 GB pages, and weights for its disks. */
		{ "hugetlb.2MB.max", "max\n" },
		{ "hugetlb.1GB.max", "max\n" },
		{ "io.weight", "default 100\n" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(files); i++)
		put(tpath(U_C1 "/%s", files[i][0]), files[i][1]);
}

static void test_unified_limits(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_limits lim = limits_full();
	struct lxm_cgroup_paths paths = { 0 };
	int r;

	r = lxm_cgroup_create(l, "c1", &lim, &paths, &err);
	is_int(r, 0, "unified: create c1");
	if (err)
		printf("# %s\n", err->msg);
	is_str(paths.v2, tpath(U_C1), "unified: paths.v2 is lxm.payload.c1 under the root");
	ok(paths.v1 == NULL, "unified: no v1 paths");
	is_str(get(tpath(U_ROOT "/cgroup.subtree_control")), "+pids +cpuset +io +hugetlb",
	       "unified: enables the missing controllers the root offers, in one write");
	is_str(get(tpath(U_C1 "/memory.max")), "536870912", "unified: memory.max");
	is_str(get(tpath(U_C1 "/memory.low")), "0", "unified: memory.low none");
	is_str(get(tpath(U_C1 "/memory.swap.max")), "0", "unified: memory.swap.max 0 without swap");
	is_str(get(tpath(U_C1 "/cpu.max")), "50000 100000", "unified: cpu.max");
	is_str(get(tpath(U_C1 "/cpu.weight")), "200", "unified: cpu.weight");
	is_str(get(tpath(U_C1 "/cpuset.cpus")), "0-1", "unified: cpuset.cpus");
	is_str(get(tpath(U_C1 "/pids.max")), "100", "unified: pids.max");
	lxm_cgroup_paths_free(&paths);
	ok(!paths.v2 && !paths.v1, "paths_free clears the struct");

	r = lxm_cgroup_apply(l, "c1", NULL, &err);
	is_int(r, 0, "unified: apply with nothing set");
	is_str(get(tpath(U_C1 "/memory.max")), "max", "unified: unset memory.max is max");
	is_str(get(tpath(U_C1 "/memory.swap.max")), "max", "unified: swap allowed again");
	is_str(get(tpath(U_C1 "/cpu.max")), "max 100000", "unified: unset cpu.max");
	is_str(get(tpath(U_C1 "/cpu.weight")), "100", "unified: unset cpu.weight");
	is_str(get(tpath(U_C1 "/cpuset.cpus")), "", "unified: unset cpuset is empty (parent's)");
	is_str(get(tpath(U_C1 "/pids.max")), "max", "unified: unset pids.max is max");

	lim = limits_none();
	lim.memory = 256 * MiB;
	lim.memory_soft = true;
	lim.cpu_quota_us = 25000;
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "unified: apply a soft limit");
	is_str(get(tpath(U_C1 "/memory.max")), "max", "unified: soft: no memory.max");
	is_str(get(tpath(U_C1 "/memory.low")), "268435456", "unified: soft: memory.low");
	is_str(get(tpath(U_C1 "/cpu.max")), "25000 100000", "unified: quota without period");

	lim = limits_none();
	lim.hugepages[LXM_HUGEPAGE_2MB] = 4 * MiB;
	lim.disk_priority = 0;
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "unified: apply huge pages and a disk priority");
	is_str(get(tpath(U_C1 "/hugetlb.2MB.max")), "4194304", "unified: hugetlb.2MB.max");
	is_str(get(tpath(U_C1 "/hugetlb.1GB.max")), "max", "unified: unset hugetlb.1GB.max");
	ok(!exists(tpath(U_C1 "/hugetlb.64KB.max")), "unified: no file made for a size the host "
						     "lacks");
	is_str(get(tpath(U_C1 "/io.weight")), "10", "unified: disk priority 0 is io.weight 10");
	lim.disk_priority = 10;
	lim.hugepages[LXM_HUGEPAGE_2MB] = -1;
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "unified: apply disk priority 10");
	is_str(get(tpath(U_C1 "/io.weight")), "1000", "unified: disk priority 10 is 1000");
	is_str(get(tpath(U_C1 "/hugetlb.2MB.max")), "max", "unified: hugetlb.2MB.max reset");
	r = lxm_cgroup_apply(l, "c1", NULL, &err);
	is_int(r, 0, "unified: apply nothing");
	is_str(get(tpath(U_C1 "/io.weight")), "100", "unified: unset disk priority is 100");
}

static void test_unified_stats_freeze(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL, *err2 = NULL;
	struct lxm_cgroup_stats st;
	int r;

	r = lxm_cgroup_stats(l, "c1", &st, &err);
	is_int(r, 0, "unified: stats");
	is_int(st.memory_usage, 1000, "unified: memory.current");
	is_int(st.memory_peak, 2000, "unified: memory.peak");
	is_int(st.swap_usage, 30, "unified: memory.swap.current");
	is_int(st.cpu_usage_ns, 1500000, "unified: cpu.stat usage_usec in ns");
	is_int(st.processes, 3, "unified: pids.current");

	unlink(tpath(U_C1 "/memory.peak"));
	unlink(tpath(U_C1 "/pids.current"));
	r = lxm_cgroup_stats(l, "c1", &st, &err);
	is_int(r, 0, "unified: stats without memory.peak and pids");
	is_int(st.memory_peak, -1, "unified: no memory.peak is -1");
	is_int(st.processes, 0, "unified: no pids controller: counts cgroup.procs");

	r = lxm_cgroup_stats(l, "nope", &st, &err2);
	is_int(r, -ENOENT, "unified: stats of a missing cgroup");
	is_int(err2 ? err2->status : 0, 404, "unified: missing cgroup is 404");

	r = lxm_cgroup_freeze(l, "c1", true, &err);
	is_int(r, 0, "unified: freeze");
	is_str(get(tpath(U_C1 "/cgroup.freeze")), "1", "unified: cgroup.freeze 1");
	r = lxm_cgroup_freeze(l, "c1", false, &err);
	is_int(r, 0, "unified: thaw");
	is_str(get(tpath(U_C1 "/cgroup.freeze")), "0", "unified: cgroup.freeze 0");
}

static void test_unified_errors(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
	struct lxm_limits lim = limits_none();
	struct lxm_cgroup_paths paths = { 0 };
	int r;

	/* Controllers already on: nothing to write (the fake file would show it). */
	put(tpath(U_ROOT "/cgroup.subtree_control"), "cpuset cpu io memory pids hugetlb\n");
	r = lxm_cgroup_create(l, "c2", NULL, &paths, &e1);
	is_int(r, 0, "unified: create c2 without limits on a bare dir");
	ok(exists(tpath(U_ROOT "/lxm.payload.c2")), "unified: c2 made");
	is_str(get(tpath(U_ROOT "/cgroup.subtree_control")), "cpuset cpu io memory pids hugetlb",
	       "unified: no write when the controllers are on");
	lxm_cgroup_paths_free(&paths);

	lim.memory = 512 * MiB;
	r = lxm_cgroup_create(l, "c3", &lim, &paths, &e2);
	is_int(r, -EOPNOTSUPP, "unified: a limit on a missing controller fails");
	is_int(e2 ? e2->status : 0, 400, "unified: missing controller is 400");
	ok(e2 && startswith(e2->msg, "cgroup 'c3': set memory.max to 536870912: ") &&
		   strstr(e2->msg, "the memory controller is not available"),
	   "unified: message names object, step, controller: %s", e2 ? e2->msg : "");
	ok(!exists(tpath(U_ROOT "/lxm.payload.c3")), "unified: failed create leaves no dir");
	ok(!paths.v2, "unified: failed create fills no paths");

	r = lxm_cgroup_apply(l, "nope", &lim, &e3);
	is_int(r, -ENOENT, "unified: apply to a missing cgroup");
	ok(e3 && startswith(e3->msg, "cgroup 'nope': set memory.max: ") &&
		   strstr(e3->msg, "lxm.payload.nope: No such file or directory"),
	   "unified: message names the missing dir: %s", e3 ? e3->msg : "");

	r = lxm_cgroup_apply(l, "../x", &lim, &e4);
	is_int(r, -EINVAL, "unified: a name with / is refused");
	is_int(e4 ? e4->status : 0, 400, "unified: bad name is 400");
	is_int(lxm_cgroup_destroy(l, ".", NULL), -EINVAL, "unified: '.' is refused");
	is_int(lxm_cgroup_destroy(l, "", NULL), -EINVAL, "unified: '' is refused");
}

static void test_unified_destroy(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL, *err2 = NULL;
	int r;

	r = lxm_cgroup_destroy(l, "c1", &err);
	is_int(r, -ENOTEMPTY, "unified: destroy of a fake dir with files fails");
	is_str(get(tpath(U_C1 "/cgroup.kill")), "1", "unified: destroy wrote cgroup.kill");
	ok(err && startswith(err->msg, "cgroup 'c1': remove ") && strstr(err->msg, U_C1) &&
		   strstr(err->msg, "Directory not empty"),
	   "unified: destroy names the dir: %s", err ? err->msg : "");

	rm_files(tpath(U_C1));
	lxm_mkdir_p(tpath(U_C1 "/init.scope/sub"), 0755);
	lxm_mkdir_p(tpath(U_C1 "/system.slice"), 0755);
	r = lxm_cgroup_destroy(l, "c1", &err2);
	is_int(r, 0, "unified: destroy");
	ok(!exists(tpath(U_C1)), "unified: c1 and the cgroups below it are gone");
	is_int(lxm_cgroup_destroy(l, "c1", NULL), 0,
	       "unified: destroy of a missing cgroup is fine");
	is_int(lxm_cgroup_destroy(l, "c2", NULL), 0, "unified: destroy c2");
	ok(!exists(tpath(U_ROOT "/lxm.payload.c2")), "unified: c2 gone");
}

static void test_unified(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_layout *l;

	put(tpath(U_ROOT "/cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n");
	put(tpath(U_ROOT "/cgroup.subtree_control"), "cpu memory\n");
	fake_unified_instance();
	l = detect_text("mi-unified", unified_mountinfo, tpath("u/"), &err);
	ok(l != NULL, "unified: detect");
	if (!l) {
		printf("# %s\n", err ? err->msg : "");
		return;
	}
	is_int(lxm_cgroup_mode(l), LXM_CGROUP_UNIFIED, "unified: mode");
	test_unified_limits(l);
	test_unified_stats_freeze(l);
	test_unified_errors(l);
	test_unified_destroy(l);
	lxm_cgroup_layout_free(l);
}

/* ---- names per root ---- */

static void test_owner_tag(void)
{
	char tag[LXM_CGROUP_TAG_SIZE], tag2[LXM_CGROUP_TAG_SIZE];

	is_int(lxm_cgroup_owner_tag("/var/lib/lxm", tag), 0, "owner: default root");
	is_str(tag, "", "owner: the default root keeps the plain names");
	lxm_cgroup_owner_tag("/var/lib/lxm//", tag);
	is_str(tag, "", "owner: trailing slashes do not make another root");
	is_int(lxm_cgroup_owner_tag("/tmp/r", tag), 0, "owner: other root");
	/* sha256("/tmp/r") = 42cb1082... */
	is_str(tag, "42cb1082", "owner: 8 hex digits of sha256(root)");
	lxm_cgroup_owner_tag("/tmp/r/", tag2);
	is_str(tag2, "42cb1082", "owner: trailing slash ignored");
	lxm_cgroup_owner_tag("/srv/lxm-b", tag2);
	is_str(tag2, "0b921a43", "owner: another root, another tag");
	is_int(lxm_cgroup_owner_tag("", tag), -EINVAL, "owner: empty root refused");
}

/* Two instances of a private root on v1 hierarchies: tagged parent, removed with the last one. */
static void test_owner_v1(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_paths paths = { 0 };
	struct lxm_cgroup_layout *l;
	int r;

	l = detect_text("mi-owner",
			"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
			"39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
			tpath("o"), &err);
	ok(l != NULL, "owner v1: detect");
	if (!l)
		return;
	lxm_mkdir_p(tpath("o/sys/fs/cgroup/memory"), 0755);
	lxm_mkdir_p(tpath("o/sys/fs/cgroup/pids"), 0755);
	is_int(lxm_cgroup_set_owner(l, "/tmp/r", &err), 0, "owner v1: set owner");
	r = lxm_cgroup_create(l, "x", NULL, &paths, &err);
	is_int(r, 0, "owner v1: create x");
	is_str(paths.v1 ? paths.v1[0] : NULL,
	       tpath("o/sys/fs/cgroup/memory/lxm.payload.42cb1082/x"),
	       "owner v1: x is under lxm.payload.<tag>");
	lxm_cgroup_paths_free(&paths);
	ok(!exists(tpath("o/sys/fs/cgroup/memory/lxm.payload")),
	   "owner v1: the default root's parent is not touched");
	is_int(lxm_cgroup_create(l, "y", NULL, &paths, &err), 0, "owner v1: create y");
	lxm_cgroup_paths_free(&paths);
	is_int(lxm_cgroup_destroy(l, "x", NULL), 0, "owner v1: destroy x");
	ok(!exists(tpath("o/sys/fs/cgroup/memory/lxm.payload.42cb1082/x")) &&
		   exists(tpath("o/sys/fs/cgroup/memory/lxm.payload.42cb1082/y")),
	   "owner v1: x gone, y and the parent kept");
	is_int(lxm_cgroup_destroy(l, "y", NULL), 0, "owner v1: destroy y");
	ok(!exists(tpath("o/sys/fs/cgroup/memory/lxm.payload.42cb1082")) &&
		   !exists(tpath("o/sys/fs/cgroup/pids/lxm.payload.42cb1082")),
	   "owner v1: the root's parents go with its last instance");
	lxm_cgroup_layout_free(l);
}

/* On v2 the tag goes into the instance dir's name. */
static void test_owner_v2(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_paths paths = { 0 };
	struct lxm_cgroup_layout *l;
	int r;

	put(tpath("o2/sys/fs/cgroup/cgroup.controllers"), "\n");
	put(tpath("o2/sys/fs/cgroup/cgroup.subtree_control"), "\n");
	l = detect_text("mi-owner2", unified_mountinfo, tpath("o2/"), &err);
	ok(l != NULL, "owner v2: detect");
	if (!l)
		return;
	is_int(lxm_cgroup_set_owner(l, "/srv/lxm-b", &err), 0, "owner v2: set owner");
	r = lxm_cgroup_create(l, "c1", NULL, &paths, &err);
	is_int(r, 0, "owner v2: create c1");
	if (err)
		printf("# %s\n", err->msg);
	is_str(paths.v2, tpath("o2/sys/fs/cgroup/lxm.payload.0b921a43.c1"),
	       "owner v2: lxm.payload.<tag>.c1");
	lxm_cgroup_paths_free(&paths);
	is_int(lxm_cgroup_destroy(l, "c1", NULL), 0, "owner v2: destroy");
	ok(!exists(tpath("o2/sys/fs/cgroup/lxm.payload.0b921a43.c1")), "owner v2: gone");
	lxm_cgroup_layout_free(l);
}

/* ---- a fake hybrid host, laid out as the build machines ---- */

#define H_ROOT "h/sys/fs/cgroup"

static const char hybrid_mountinfo[] =
	"22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
	"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
	"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
	"33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
	"34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
	"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	"36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
	"37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
	"38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
	"39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
	"40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
	"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	/* The memory hierarchy once more (a bind mount): not a hierarchy of its own. */
	"50 22 0:32 / /mnt/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n";

static const char *const hybrid_dirs[] = { "cpu",     "cpuacct", "cpuset", "memory", "devices",
					   "freezer", "blkio",	 "pids",   "systemd" };

static void fake_hybrid(void)
{
	static const char *const files[][2] = {
		{ "cpuset/cpuset.cpus", "0-3\n" },
		{ "cpuset/cpuset.mems", "0\n" },
		{ "cpuset/lxm.payload/cpuset.cpus", "\n" },
		{ "cpuset/lxm.payload/cpuset.mems", "\n" },
		{ "cpuset/lxm.payload/c1/cpuset.cpus", "\n" },
		{ "cpuset/lxm.payload/c1/cpuset.mems", "\n" },
		{ "memory/lxm.payload/c1/memory.limit_in_bytes", "9223372036854771712\n" },
		{ "memory/lxm.payload/c1/memory.memsw.limit_in_bytes", "9223372036854771712\n" },
		{ "memory/lxm.payload/c1/memory.soft_limit_in_bytes", "9223372036854771712\n" },
		{ "memory/lxm.payload/c1/memory.usage_in_bytes", "1000\n" },
		{ "memory/lxm.payload/c1/memory.max_usage_in_bytes", "2000\n" },
		{ "memory/lxm.payload/c1/memory.memsw.usage_in_bytes", "1500\n" },
		{ "memory/lxm.payload/c1/cgroup.procs", "" },
		{ "cpu/lxm.payload/c1/cpu.cfs_quota_us", "-1\n" },
		{ "cpu/lxm.payload/c1/cpu.cfs_period_us", "100000\n" },
		{ "cpu/lxm.payload/c1/cpu.shares", "1024\n" },
		{ "cpuacct/lxm.payload/c1/cpuacct.usage", "123456789\n" },
		{ "pids/lxm.payload/c1/pids.max", "max\n" },
		{ "pids/lxm.payload/c1/pids.current", "2\n" },
		{ "freezer/lxm.payload/c1/freezer.state", "THAWED\n" },
		{ "devices/lxm.payload/c1/devices.deny", "" },
		{ "devices/lxm.payload/c1/devices.allow", "" },
		{ "blkio/lxm.payload/c1/blkio.bfq.weight", "100\n" },
		{ "unified/cgroup.controllers", "" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(files); i++)
		put(tpath(H_ROOT "/%s", files[i][0]), files[i][1]);
	/* The mount points with nothing to lay out in them. */
	for (size_t i = 0; i < ARRAY_SIZE(hybrid_dirs); i++)
		lxm_mkdir_p(tpath(H_ROOT "/%s", hybrid_dirs[i]), 0755);
}

static const char *h_file(const char *hier, const char *file)
{
	return get(tpath(H_ROOT "/%s/lxm.payload/c1/%s", hier, file));
}

static void test_hybrid_create(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_limits lim = limits_full();
	struct lxm_cgroup_paths paths = { 0 };
	bool all = true;
	int r;

	r = lxm_cgroup_create(l, "c1", &lim, &paths, &err);
	is_int(r, 0, "hybrid: create c1");
	if (err)
		printf("# %s\n", err->msg);
	is_int(strv_len(paths.v1), ARRAY_SIZE(hybrid_dirs),
	       "hybrid: one v1 dir per hierarchy, the bind mount not counted");
	for (size_t i = 0; i < strv_len(paths.v1) && i < ARRAY_SIZE(hybrid_dirs); i++)
		all &= streq(paths.v1[i], tpath(H_ROOT "/%s/lxm.payload/c1", hybrid_dirs[i])) &&
		       exists(paths.v1[i]);
	ok(all, "hybrid: v1 dirs are <mount>/lxm.payload/c1 in mountinfo order, named too");
	is_str(paths.v2, tpath(H_ROOT "/unified/lxm.payload.c1"), "hybrid: the v2 dir");
	ok(paths.v2 && exists(paths.v2), "hybrid: the v2 dir exists");
	lxm_cgroup_paths_free(&paths);

	is_str(get(tpath(H_ROOT "/cpuset/lxm.payload/cpuset.cpus")), "0-3",
	       "hybrid: lxm.payload gets the root's cpus");
	is_str(get(tpath(H_ROOT "/cpuset/lxm.payload/cpuset.mems")), "0",
	       "hybrid: lxm.payload gets the root's mems");
	is_str(h_file("cpuset", "cpuset.mems"), "0", "hybrid: the instance gets the mems");
	/* Deny-all then the allow-list; a regular file keeps only the last write. */
	is_str(h_file("devices", "devices.deny"), "a", "hybrid: devices denied by default");
	is_str(h_file("devices", "devices.allow"), "c 10:229 rwm",
	       "hybrid: the allow-list written (fuse last)");
	is_str(h_file("cpuset", "cpuset.cpus"), "0-1", "hybrid: cpuset.cpus limit");
	is_str(h_file("memory", "memory.limit_in_bytes"), "536870912", "hybrid: limit_in_bytes");
	is_str(h_file("memory", "memory.memsw.limit_in_bytes"), "536870912",
	       "hybrid: memsw = limit without swap");
	is_str(h_file("memory", "memory.soft_limit_in_bytes"), "-1", "hybrid: no soft limit");
	is_str(h_file("cpu", "cpu.cfs_quota_us"), "50000", "hybrid: cfs_quota_us");
	is_str(h_file("cpu", "cpu.cfs_period_us"), "100000", "hybrid: cfs_period_us");
	is_str(h_file("cpu", "cpu.shares"), "2048", "hybrid: weight 200 is 2048 shares");
	is_str(h_file("pids", "pids.max"), "100", "hybrid: pids.max");
}

static void test_hybrid_apply(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_limits lim = limits_none();
	int r;

	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "hybrid: apply with nothing set");
	is_str(h_file("memory", "memory.limit_in_bytes"), "-1", "hybrid: unset limit is -1");
	is_str(h_file("memory", "memory.memsw.limit_in_bytes"), "-1", "hybrid: unset memsw");
	is_str(h_file("cpu", "cpu.cfs_quota_us"), "-1", "hybrid: unset quota");
	is_str(h_file("cpu", "cpu.cfs_period_us"), "100000", "hybrid: default period");
	is_str(h_file("cpu", "cpu.shares"), "1024", "hybrid: default shares");
	is_str(h_file("cpuset", "cpuset.cpus"), "0-3", "hybrid: unset cpuset is the parent's");
	is_str(h_file("pids", "pids.max"), "max", "hybrid: unset pids.max");

	lim.memory = 256 * MiB;
	lim.memory_soft = true;
	lim.memory_swap = false;
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "hybrid: apply a soft limit");
	is_str(h_file("memory", "memory.soft_limit_in_bytes"), "268435456", "hybrid: soft limit");
	is_str(h_file("memory", "memory.limit_in_bytes"), "-1", "hybrid: soft: no hard limit");

	/* No swap accounting: the memsw files are not there. */
	unlink(tpath(H_ROOT "/memory/lxm.payload/c1/memory.memsw.limit_in_bytes"));
	lim = limits_full();
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "hybrid: no swap accounting is fine");
	is_str(h_file("memory", "memory.limit_in_bytes"), "536870912", "hybrid: limit still set");
	ok(!exists(tpath(H_ROOT "/memory/lxm.payload/c1/memory.memsw.limit_in_bytes")),
	   "hybrid: no memsw file made");

	/* BFQ's weight only (no CFQ on current kernels): priority 8 is 400, unset is 100. */
	lim = limits_none();
	lim.disk_priority = 8;
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "hybrid: apply a disk priority");
	is_str(h_file("blkio", "blkio.bfq.weight"), "400", "hybrid: priority 8 is bfq weight 400");
	ok(!exists(tpath(H_ROOT "/blkio/lxm.payload/c1/blkio.weight")),
	   "hybrid: no blkio.weight made without CFQ");
	put(tpath(H_ROOT "/blkio/lxm.payload/c1/blkio.weight"), "500\n");
	lim.disk_priority = 10;
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "hybrid: apply a disk priority with CFQ too");
	is_str(h_file("blkio", "blkio.weight"), "1000", "hybrid: priority 10 is CFQ weight 1000");
	is_str(h_file("blkio", "blkio.bfq.weight"), "1000", "hybrid: and bfq weight 1000");
	lim.disk_priority = -1;
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "hybrid: unset disk priority");
	is_str(h_file("blkio", "blkio.weight"), "500", "hybrid: CFQ default 500");
	is_str(h_file("blkio", "blkio.bfq.weight"), "100", "hybrid: bfq default 100");
	unlink(tpath(H_ROOT "/blkio/lxm.payload/c1/blkio.weight"));
	unlink(tpath(H_ROOT "/blkio/lxm.payload/c1/blkio.bfq.weight"));
	{
		_cleanup_error_ struct lxm_error *e1 = NULL, *e2 = NULL;

		lim.disk_priority = 3;
		r = lxm_cgroup_apply(l, "c1", &lim, &e1);
		is_int(r, -EOPNOTSUPP, "hybrid: a priority without weight files is refused");
		ok(e1 && strstr(e1->msg, "limits.disk.priority") &&
			   strstr(e1->msg, "neither blkio.weight nor blkio.bfq.weight"),
		   "hybrid: the message names the key and the files: %s", e1 ? e1->msg : "");
		lim.disk_priority = -1;
		lim.hugepages[LXM_HUGEPAGE_2MB] = 4 * MiB;
		r = lxm_cgroup_apply(l, "c1", &lim, &e2);
		is_int(r, -EOPNOTSUPP, "hybrid: huge pages without the hugetlb hierarchy refused");
		ok(e2 && strstr(e2->msg, "the hugetlb controller is not mounted"),
		   "hybrid: the message names hugetlb: %s", e2 ? e2->msg : "");
	}
	put(tpath(H_ROOT "/blkio/lxm.payload/c1/blkio.bfq.weight"), "100\n");
}

static void test_hybrid_stats_freeze(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_stats st;
	int r;

	r = lxm_cgroup_stats(l, "c1", &st, &err);
	is_int(r, 0, "hybrid: stats");
	is_int(st.memory_usage, 1000, "hybrid: usage_in_bytes");
	is_int(st.memory_peak, 2000, "hybrid: max_usage_in_bytes");
	is_int(st.swap_usage, 500, "hybrid: swap is memsw - usage");
	is_int(st.cpu_usage_ns, 123456789, "hybrid: cpuacct.usage");
	is_int(st.processes, 2, "hybrid: pids.current");

	r = lxm_cgroup_freeze(l, "c1", true, &err);
	is_int(r, 0, "hybrid: freeze");
	is_str(h_file("freezer", "freezer.state"), "FROZEN", "hybrid: freezer.state FROZEN");
	r = lxm_cgroup_freeze(l, "c1", false, &err);
	is_int(r, 0, "hybrid: thaw");
	is_str(h_file("freezer", "freezer.state"), "THAWED", "hybrid: freezer.state THAWED");
}

static void test_hybrid_failures(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_paths paths = { 0 };
	int r;

	/* The fake has no cpuset files for c2: the copy fails after cpu and cpuacct got theirs. */
	r = lxm_cgroup_create(l, "c2", NULL, &paths, &err);
	is_int(r, -ENOENT, "hybrid: create c2 fails on the cpuset copy");
	ok(err && startswith(err->msg, "cgroup 'c2': read ") &&
		   strstr(err->msg, "cpuset/lxm.payload/c2/cpuset.cpus: No such file"),
	   "hybrid: message names the file: %s", err ? err->msg : "");
	ok(!exists(tpath(H_ROOT "/cpu/lxm.payload/c2")) &&
		   !exists(tpath(H_ROOT "/cpuacct/lxm.payload/c2")),
	   "hybrid: failed create removed the dirs it made");
}

static void test_hybrid_destroy(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL, *err2 = NULL;
	bool gone = true;
	int r;

	r = lxm_cgroup_destroy(l, "c1", &err);
	is_int(r, -ENOTEMPTY, "hybrid: destroy with fake files fails");
	ok(err && strstr(err->msg, "lxm.payload/c1") && strstr(err->msg, "Directory not empty"),
	   "hybrid: destroy names the dir: %s", err ? err->msg : "");
	is_str(h_file("freezer", "freezer.state"), "THAWED", "hybrid: destroy thaws first");

	for (size_t i = 0; i < ARRAY_SIZE(hybrid_dirs); i++)
		rm_files(tpath(H_ROOT "/%s/lxm.payload/c1", hybrid_dirs[i]));
	r = lxm_cgroup_destroy(l, "c1", &err2);
	is_int(r, 0, "hybrid: destroy");
	if (err2)
		printf("# %s\n", err2->msg);
	for (size_t i = 0; i < ARRAY_SIZE(hybrid_dirs); i++)
		gone &= !exists(tpath(H_ROOT "/%s/lxm.payload/c1", hybrid_dirs[i])) &&
			exists(tpath(H_ROOT "/%s/lxm.payload", hybrid_dirs[i]));
	ok(gone, "hybrid: every v1 instance dir gone, lxm.payload kept");
	ok(!exists(tpath(H_ROOT "/unified/lxm.payload.c1")), "hybrid: the v2 dir gone");
}

/* A hybrid host whose kernel has hugetlb on the v2 hierarchy (no v1 one mounted for it): the
 * limits go to the instance's v2 dir, and its root passes hugetlb down. */
static void test_hybrid_hugetlb_v2(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_paths paths = { 0 };
	struct lxm_limits lim = limits_none();
	struct lxm_cgroup_layout *l;
	int r;

	put(tpath(H_ROOT "/unified/cgroup.controllers"), "hugetlb\n");
	put(tpath(H_ROOT "/unified/cgroup.subtree_control"), "");
	put(tpath(H_ROOT "/unified/lxm.payload.c1/hugetlb.2MB.max"), "max\n");
	l = detect_text("mi-hybrid-hugetlb", hybrid_mountinfo, tpath("h"), &err);
	ok(l && lxm_cgroup_controller_available(l, "hugetlb"),
	   "hybrid: hugetlb on v2 can limit huge pages");
	ok(l && !lxm_cgroup_controller_available(l, "io"), "hybrid: io on v2 is not used");
	if (!l)
		return;
	r = lxm_cgroup_create(l, "c1", NULL, &paths, &err);
	is_int(r, 0, "hybrid: create with hugetlb on v2");
	if (err)
		printf("# %s\n", err->msg);
	is_str(get(tpath(H_ROOT "/unified/cgroup.subtree_control")), "+hugetlb",
	       "hybrid: the v2 root passes hugetlb down");
	lim.hugepages[LXM_HUGEPAGE_2MB] = 8 * MiB;
	r = lxm_cgroup_apply(l, "c1", &lim, &err);
	is_int(r, 0, "hybrid: apply a 2MB huge page limit");
	is_str(get(tpath(H_ROOT "/unified/lxm.payload.c1/hugetlb.2MB.max")), "8388608",
	       "hybrid: hugetlb.2MB.max in the v2 dir");
	r = lxm_cgroup_apply(l, "c1", NULL, &err);
	is_int(r, 0, "hybrid: unset");
	is_str(get(tpath(H_ROOT "/unified/lxm.payload.c1/hugetlb.2MB.max")), "max",
	       "hybrid: unset is max");
	lxm_cgroup_paths_free(&paths);
	lxm_cgroup_layout_free(l);
	unlink(tpath(H_ROOT "/unified/lxm.payload.c1/hugetlb.2MB.max"));
	unlink(tpath(H_ROOT "/unified/cgroup.subtree_control"));
	put(tpath(H_ROOT "/unified/cgroup.controllers"), "");
}

static void test_hybrid(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_layout *l;

	fake_hybrid();
	l = detect_text("mi-hybrid", hybrid_mountinfo, tpath("h"), &err);
	ok(l != NULL, "hybrid: detect");
	if (!l) {
		printf("# %s\n", err ? err->msg : "");
		return;
	}
	is_int(lxm_cgroup_mode(l), LXM_CGROUP_HYBRID, "hybrid: mode");
	test_hybrid_create(l);
	test_hybrid_apply(l);
	test_hybrid_hugetlb_v2();
	test_hybrid_stats_freeze(l);
	test_hybrid_failures(l);
	test_hybrid_destroy(l);
	lxm_cgroup_layout_free(l);
}

static void test_legacy(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_paths paths = { 0 };
	struct lxm_cgroup_layout *l;
	int r;

	/* A mount point with a space, as mountinfo escapes it. */
	l = detect_text("mi-legacy",
			"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
			"39 31 0:36 / /sys/fs/cgroup/my\\040pids rw - cgroup cgroup "
			"rw,nosuid,release_agent=/x,pids\n",
			tpath("l"), &err);
	ok(l != NULL, "legacy: detect");
	if (!l)
		return;
	is_int(lxm_cgroup_mode(l), LXM_CGROUP_LEGACY, "legacy: mode");
	lxm_mkdir_p(tpath("l/sys/fs/cgroup/memory"), 0755);
	lxm_mkdir_p(tpath("l/sys/fs/cgroup/my pids"), 0755);
	r = lxm_cgroup_create(l, "x", NULL, &paths, &err);
	is_int(r, 0, "legacy: create without limits on bare dirs");
	ok(paths.v2 == NULL, "legacy: no v2 dir");
	is_int(strv_len(paths.v1), 2, "legacy: two v1 dirs");
	is_str(paths.v1 ? paths.v1[1] : NULL, tpath("l/sys/fs/cgroup/my pids/lxm.payload/x"),
	       "legacy: the escaped mount point is decoded");
	lxm_cgroup_paths_free(&paths);
	r = lxm_cgroup_freeze(l, "x", true, &err);
	is_int(r, -EOPNOTSUPP, "legacy: no freezer at all");
	ok(err && strstr(err->msg, "cgroup 'x': the freezer controller is not mounted"),
	   "legacy: message: %s", err ? err->msg : "");
	is_int(lxm_cgroup_destroy(l, "x", NULL), 0, "legacy: destroy");
	ok(!exists(tpath("l/sys/fs/cgroup/my pids/lxm.payload/x")), "legacy: gone");
	lxm_cgroup_layout_free(l);
}

/* ---- this host's real hierarchies ---- */

/* dir/file in a static buffer. */
static const char *at(const char *dir, const char *file)
{
	static char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s/%s", dir, file);
	return buf;
}

/* A child that waits to be killed, and dies with the test if the test dies first. */
static pid_t spawn_sleeper(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return pid;
}

static void reap(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGKILL);
		waitpid(*pid, NULL, 0);
	}
	*pid = -1;
}

/* Whether the child died of SIGKILL (destroy's doing); reaps it. */
static bool killed(pid_t *pid)
{
	int status = 0;
	pid_t r = *pid > 0 ? waitpid(*pid, &status, 0) : -1;

	*pid = -1;
	return r > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static bool in_cgroup(const char *dir, pid_t pid)
{
	_cleanup_free_ char *s = NULL;
	char want[32], path[PATH_MAX], *save = NULL;

	snprintf(want, sizeof(want), "%d", (int)pid);
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	if (lxm_read_file(path, &s, NULL) < 0)
		return false;
	for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (streq(line, want))
			return true;
	return false;
}

/* Places pid in every dir of p, as the runtime does. */
static bool move_all(const struct lxm_cgroup_paths *p, pid_t pid)
{
	char buf[32];
	bool all = pid > 0;

	snprintf(buf, sizeof(buf), "%d", (int)pid);
	for (char **d = p->v1; all && d && *d; d++) {
		put(at(*d, "cgroup.procs"), buf);
		all &= in_cgroup(*d, pid);
	}
	if (all && p->v2) {
		put(at(p->v2, "cgroup.procs"), buf);
		all &= in_cgroup(p->v2, pid);
	}
	return all;
}

static bool all_gone(const struct lxm_cgroup_paths *p)
{
	bool gone = !p->v2 || !exists(p->v2);

	for (char **d = p->v1; d && *d; d++)
		gone &= !exists(*d);
	return gone;
}

/* The dir in p on the hierarchy mounted at ".../<mount>/lxm.payload/<name>", or NULL. */
static const char *v1_dir(const struct lxm_cgroup_paths *p, const char *hierarchy)
{
	char needle[64];

	snprintf(needle, sizeof(needle), "/%s/lxm.payload/", hierarchy);
	for (char **d = p->v1; d && *d; d++)
		if (strstr(*d, needle))
			return *d;
	return NULL;
}

/* Runs whatever happened before: kills the children, destroys, removes every dir the test may
 * have made (lxm.payload only where the test made it), so that a failed check leaves nothing. */
static void real_cleanup(struct lxm_cgroup_layout *l, const char *name, struct lxm_cgroup_paths *p,
			 pid_t *a, pid_t *b, char **made_payloads)
{
	reap(a);
	reap(b);
	(void)lxm_cgroup_destroy(l, name, NULL);
	for (char **d = p->v1; d && *d; d++)
		rmdir(*d);
	if (p->v2)
		rmdir(p->v2);
	for (char **d = made_payloads; d && *d; d++)
		rmdir(*d);
	lxm_cgroup_paths_free(p);
}

/* The lxm.payload dirs on this host's v1 hierarchies that do not exist yet. */
static char **missing_payloads(void)
{
	_cleanup_free_ char *s = NULL;
	char **v = calloc(65, sizeof(char *)), *line, *save = NULL;
	size_t n = 0;

	if (!v || lxm_read_file("/proc/self/mountinfo", &s, NULL) < 0)
		return v;
	for (line = strtok_r(s, "\n", &save); line && n < 64; line = strtok_r(NULL, "\n", &save)) {
		char mount[PATH_MAX], fstype[64], payload[PATH_MAX + 16];
		const char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mount) != 1 ||
		    sscanf(dash, " - %63s", fstype) != 1 || !streq(fstype, "cgroup"))
			continue;
		snprintf(payload, sizeof(payload), "%s/lxm.payload", mount);
		if (!exists(payload))
			v[n++] = strdup(payload);
	}
	return v;
}

static void real_v1_checks(struct lxm_cgroup_layout *l, const char *name,
			   struct lxm_cgroup_paths *p, pid_t *a, pid_t *b)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	const char *memory = v1_dir(p, "memory"), *pids = v1_dir(p, "pids");
	const char *freezer = v1_dir(p, "freezer");
	struct lxm_cgroup_stats st = { 0 };
	int r;

	if (memory)
		is_str(get(at(memory, "memory.limit_in_bytes")), "67108864",
		       "real v1: memory.limit_in_bytes reads back");
	if (pids)
		is_str(get(at(pids, "pids.max")), "50", "real v1: pids.max reads back");
	ok(p->v2 == NULL || exists(p->v2), "real v1: the v2 dir exists on a hybrid host");

	*a = spawn_sleeper();
	ok(move_all(p, *a), "real v1: a child joins every dir");
	r = lxm_cgroup_stats(l, name, &st, &err);
	is_int(r, 0, "real v1: stats");
	is_int(st.processes, 1, "real v1: one process");
	ok(st.memory_usage >= 0 && st.cpu_usage_ns >= 0, "real v1: memory and cpu usage known");

	r = lxm_cgroup_freeze(l, name, true, &err);
	is_int(r, 0, "real v1: freeze");
	if (freezer)
		is_str(get(at(freezer, "freezer.state")), "FROZEN", "real v1: FROZEN reads back");
	r = lxm_cgroup_freeze(l, name, false, &err);
	is_int(r, 0, "real v1: thaw");
	if (freezer)
		is_str(get(at(freezer, "freezer.state")), "THAWED", "real v1: THAWED reads back");
	reap(a);

	/* Another one left inside, frozen: destroy must thaw and kill it. */
	*b = spawn_sleeper();
	ok(move_all(p, *b), "real v1: a second child joins");
	is_int(lxm_cgroup_freeze(l, name, true, NULL), 0, "real v1: freeze with the child in");
	r = lxm_cgroup_destroy(l, name, &err);
	is_int(r, 0, "real v1: destroy with a frozen child inside");
	if (err)
		printf("# %s\n", err->msg);
	ok(killed(b), "real v1: destroy killed the child");
	ok(all_gone(p), "real v1: every dir is gone");
}

static void test_real_v1(struct lxm_cgroup_layout *l)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_strv_ char **payloads = NULL;
	struct lxm_cgroup_paths p = { 0 };
	struct lxm_limits lim = limits_none();
	char name[64];
	pid_t a = -1, b = -1;
	bool all;
	int r;

	snprintf(name, sizeof(name), "lxm-unit-%d", (int)getpid());
	payloads = missing_payloads();
	lim.memory = 64 * MiB;
	lim.processes = 50;
	r = lxm_cgroup_create(l, name, &lim, &p, &err);
	is_int(r, 0, "real v1: create with memory and pids limits");
	if (r == 0)
		real_v1_checks(l, name, &p, &a, &b);
	else
		printf("# %s\n", err ? err->msg : "");
	real_cleanup(l, name, &p, &a, &b, payloads);
	all = true;
	for (char **d = payloads; d && *d; d++)
		all &= !exists(*d);
	ok(all, "real v1: the lxm.payload dirs the test made are gone");
}

/* The v2 driver on this host's cgroup2 mount alone: the whole host on a unified machine, the
 * empty v2 beside the v1 controllers on a hybrid one (then without limits). */
static void real_v2_checks(struct lxm_cgroup_layout *l, const char *name,
			   struct lxm_cgroup_paths *p, bool limited, pid_t *a, pid_t *b)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_stats st = { 0 };
	const char *events;
	int r;

	if (limited) {
		is_str(get(at(p->v2, "memory.max")), "67108864", "real v2: memory.max reads back");
		is_str(get(at(p->v2, "pids.max")), "50", "real v2: pids.max reads back");
	}
	*a = spawn_sleeper();
	ok(move_all(p, *a), "real v2: a child joins");
	r = lxm_cgroup_stats(l, name, &st, &err);
	is_int(r, 0, "real v2: stats");
	is_int(st.processes, 1, "real v2: one process");
	ok(st.cpu_usage_ns >= 0, "real v2: cpu usage known");

	r = lxm_cgroup_freeze(l, name, true, &err);
	is_int(r, 0, "real v2: freeze");
	if (err)
		printf("# %s\n", err->msg);
	events = get(at(p->v2, "cgroup.events"));
	ok(events && strstr(events, "frozen 1"), "real v2: cgroup.events says frozen");
	r = lxm_cgroup_freeze(l, name, false, &err);
	is_int(r, 0, "real v2: thaw");
	is_str(get(at(p->v2, "cgroup.freeze")), "0", "real v2: cgroup.freeze 0");

	/* Left inside, frozen: destroy kills it all the same. */
	is_int(lxm_cgroup_freeze(l, name, true, NULL), 0, "real v2: freeze with the child in");
	lxm_mkdir_p(at(p->v2, "init.scope"), 0755);
	*b = spawn_sleeper();
	if (*b > 0) {
		char buf[32];

		snprintf(buf, sizeof(buf), "%d", (int)*b);
		put(at(p->v2, "init.scope/cgroup.procs"), buf);
	}
	ok(*b > 0 && in_cgroup(at(p->v2, "init.scope"), *b), "real v2: a second child, below");
	r = lxm_cgroup_destroy(l, name, &err);
	is_int(r, 0, "real v2: destroy with children inside, one in a sub-cgroup");
	if (err)
		printf("# %s\n", err->msg);
	ok(killed(a) && killed(b), "real v2: destroy killed both");
	ok(all_gone(p), "real v2: the dir is gone");
}

static void test_real_v2(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *text = NULL, *controllers = NULL;
	struct lxm_cgroup_paths p = { 0 };
	struct lxm_limits lim = limits_none();
	struct lxm_cgroup_layout *l = NULL;
	char name[64], *line, *save = NULL, mount[PATH_MAX] = "";
	pid_t a = -1, b = -1;
	bool limited;
	int r;

	if (lxm_read_file("/proc/self/mountinfo", &text, NULL) < 0)
		return;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, " - cgroup2 ")) {
			put(tpath("mi-real-v2"), line);
			sscanf(line, "%*s %*s %*s %*s %4095s", mount);
			break;
		}
	}
	if (!*mount) {
		ok(1, "# SKIP no cgroup2 mount on this host");
		return;
	}
	r = lxm_cgroup_detect(tpath("mi-real-v2"), NULL, &l, &err);
	is_int(r, 0, "real v2: detect the cgroup2 mount alone");
	if (r < 0)
		return;
	is_int(lxm_cgroup_mode(l), LXM_CGROUP_UNIFIED, "real v2: unified");
	controllers = strdup(get(at(mount, "cgroup.controllers")) ?: "");
	limited = strstr(controllers, "memory") && strstr(controllers, "pids");
	if (limited) {
		lim.memory = 64 * MiB;
		lim.processes = 50;
	}
	snprintf(name, sizeof(name), "lxm-unit-v2-%d", (int)getpid());
	r = lxm_cgroup_create(l, name, &lim, &p, &err);
	is_int(r, 0, "real v2: create");
	if (r == 0)
		real_v2_checks(l, name, &p, limited, &a, &b);
	else
		printf("# %s\n", err ? err->msg : "");
	if (p.v2) {
		char sub[PATH_MAX];

		snprintf(sub, sizeof(sub), "%s/init.scope", p.v2);
		reap(&a);
		reap(&b);
		rmdir(sub);
	}
	real_cleanup(l, name, &p, &a, &b, NULL);
	lxm_cgroup_layout_free(l);
}

static void test_real(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_cgroup_layout *l = NULL;

	if (geteuid() != 0) {
		ok(1, "# SKIP real cgroups: not root");
		return;
	}
	if (lxm_cgroup_detect(NULL, NULL, &l, &err) < 0) {
		ok(1, "# SKIP real cgroups: %s", err ? err->msg : "none");
		return;
	}
	if (lxm_cgroup_mode(l) != LXM_CGROUP_UNIFIED)
		test_real_v1(l);
	lxm_cgroup_layout_free(l);
	test_real_v2();
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_detect_errors();
	test_detect_named_only();
	test_unified();
	test_hybrid();
	test_legacy();
	test_owner_tag();
	test_owner_v1();
	test_owner_v2();
	test_real();
	rm_rf(tmpdir);
	return tap_done();
}
