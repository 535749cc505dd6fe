/* The v1 driver, for hybrid and legacy hosts: limits go to the controllers' v1 hierarchies, an
 * instance is "<mount>/lxm.payload/<name>" on every v1 hierarchy (named ones such as systemd's
 * too, so that the container sees itself there) and, on a hybrid host, "lxm.payload.<name>" on
 * the v2 hierarchy that the runtime uses for CLONE_INTO_CGROUP and the cgroup namespace. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#include "cgroup-internal.h"

/* v1 cpu.shares around its default 1024, as v2's cpu.weight is around 100. */
#define CGROUP_V1_SHARES_DEFAULT 1024
#define CGROUP_V1_SHARES_MIN	 2
#define CGROUP_V1_SHARES_MAX	 262144

static char *cgroup_v1_dir(const struct lxm_cgroup_layout *l, const struct cgroup_hierarchy *h,
			   const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s/%s", h->mount, l->v1_payload, name) < 0)
		return NULL;
	return p;
}

static char *cgroup_v1_unified_dir(const struct lxm_cgroup_layout *l, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s%s", l->v2->mount, l->v2_prefix, name) < 0)
		return NULL;
	return p;
}

static const struct cgroup_hierarchy *cgroup_v1_find(const struct lxm_cgroup_layout *l,
						     const char *controller)
{
	for (size_t i = 0; i < l->n_v1; i++)
		if (cgroup_has_controller(&l->v1[i], controller))
			return &l->v1[i];
	return NULL;
}

/* Whether hugetlb is on the hybrid host's v2 hierarchy rather than on a v1 one: a kernel binds
 * to v2 the controllers no v1 hierarchy is mounted for. */
static bool cgroup_v1_hugetlb_on_v2(const struct lxm_cgroup_layout *l)
{
	return !cgroup_v1_find(l, "hugetlb") && l->v2 && cgroup_has_controller(l->v2, "hugetlb");
}

/* The instance's dir for controller in *ret, or NULL there when no hierarchy has it: an error
 * only when a limit needs it (needed). */
static int cgroup_v1_controller_dir(const struct lxm_cgroup_layout *l, const char *name,
				    const char *controller, bool needed, char **ret,
				    struct lxm_error **err)
{
	const struct cgroup_hierarchy *h = cgroup_v1_find(l, controller);

	*ret = NULL;
	if (!h && needed)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "the %s controller is not mounted on this host", controller);
	if (!h)
		return 0;
	*ret = cgroup_v1_dir(l, h, name);
	return *ret ? 0 : lxm_error_setx(err, -ENOMEM, 500, "%s", controller);
}

/* A v1 cpuset starts empty and refuses tasks until it has cpus and memory nodes: copies the
 * parent's into dir where dir has none yet. */
static int cgroup_v1_cpuset_copy(const char *parent, const char *dir, struct lxm_error **err)
{
	static const char *const files[] = { "cpuset.cpus", "cpuset.mems" };

	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		_cleanup_free_ char *have = NULL, *value = NULL;
		int r = cgroup_read(dir, files[i], &have);

		if (r < 0)
			return lxm_error_setx(err, r, 500, "read %s/%s", dir, files[i]);
		if (*have)
			continue;
		r = cgroup_read(parent, files[i], &value);
		if (r < 0)
			return lxm_error_setx(err, r, 500, "read %s/%s", parent, files[i]);
		r = cgroup_set(dir, files[i], value, false, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Makes lxm.payload and lxm.payload/<name> on one hierarchy; *ret is the instance dir. */
/* Devices are denied by default (anchors.md): creating any node is allowed (mknod), opening only
 * these. The console and exec ptys are host devpts nodes (136:*); ptmx and the container's own
 * devpts go through 5:2 and 136:*. */
static const char *const device_allow[] = {
	"c *:* m",	"b *:* m",
	"c 1:3 rwm",				  /* null */
	"c 1:5 rwm",	/* zero */ "c 1:7 rwm",	  /* full */
	"c 1:8 rwm",	/* random */ "c 1:9 rwm", /* urandom */
	"c 5:0 rwm",	/* tty */ "c 5:1 rwm",	  /* console */
	"c 5:2 rwm",	/* ptmx */ "c 136:* rwm", /* pts */
	"c 10:229 rwm",				  /* fuse */
};

static int cgroup_v1_devices(const char *dir, struct lxm_error **err)
{
	int r = cgroup_set(dir, "devices.deny", "a", false, err);

	for (size_t i = 0; i < ARRAY_SIZE(device_allow) && r >= 0; i++)
		r = cgroup_set(dir, "devices.allow", device_allow[i], false, err);
	return r;
}

/* The devices.allow line of a node. */
static void device_line(const struct lxm_cgroup_device *e, char *buf, size_t len)
{
	snprintf(buf, len, "%c %u:%u rwm", e->type == 'b' ? 'b' : 'c', e->major, e->minor);
}

/* Whether line is one of the lines of list. */
static bool line_in(const char *list, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = list; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

/* Whether cgroup dir has sub-cgroups. */
static bool has_children(const char *dir)
{
	_cleanup_closedir_ DIR *dh = opendir(dir);
	struct dirent *e;

	while (dh && (e = readdir(dh)))
		if (e->d_type == DT_DIR && !streq(e->d_name, ".") && !streq(e->d_name, ".."))
			return true;
	return false;
}

/* Allows extra in dir's devices controller, then denies each node that devices.list allows
 * beyond the default list and extra (one of the instance's unix devices that went). */
static int cgroup_v1_devices_extra(const char *dir, const struct lxm_cgroup_device *extra, size_t n,
				   struct lxm_error **err)
{
	_cleanup_free_ char *list = NULL;
	char line[64];
	int r;

	r = cgroup_read(dir, "devices.list", &list);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "read %s/devices.list", dir);
	for (size_t i = 0; i < n && r >= 0; i++) {
		device_line(&extra[i], line, sizeof(line));
		if (line_in(list, line))
			continue;
		/* An allow reaches no cgroup made below (the container's own): those keep the list
		 * they were made with. */
		if (has_children(dir))
			return lxm_error_set(err, -EBUSY, 400,
					     "allow %s: the container made cgroups below %s, which "
					     "would not get it: the change requires restart",
					     line, dir);
		r = cgroup_set(dir, "devices.allow", line, false, err);
	}
	if (r < 0)
		return r;
	for (char *save = NULL, *l = strtok_r(list, "\n", &save); l && r >= 0;
	     l = strtok_r(NULL, "\n", &save)) {
		bool keep = false;

		for (size_t i = 0; i < ARRAY_SIZE(device_allow) && !keep; i++)
			keep = streq(l, device_allow[i]);
		for (size_t i = 0; i < n && !keep; i++) {
			device_line(&extra[i], line, sizeof(line));
			keep = streq(l, line);
		}
		/* "a *:* rwm": the controller allows everything (not ours to narrow). */
		if (!keep && l[0] != 'a')
			r = cgroup_set(dir, "devices.deny", l, false, err);
	}
	return r;
}

static int cgroup_v1_devices_set(struct lxm_cgroup_layout *l, const char *name,
				 const struct lxm_cgroup_device *extra, size_t n,
				 struct lxm_error **err)
{
	_cleanup_free_ char *unified = NULL;
	int r = 0;

	for (size_t i = 0; i < l->n_v1 && r >= 0; i++) {
		_cleanup_free_ char *dir = NULL;

		if (!cgroup_has_controller(&l->v1[i], "devices"))
			continue;
		dir = cgroup_v1_dir(l, &l->v1[i], name);
		r = dir ? cgroup_v1_devices_extra(dir, extra, n, err)
			: lxm_error_setx(err, -ENOMEM, 500, "devices");
	}
	if (r < 0 || !l->v2 || *l->prefix)
		return r;
	/* The second fence on the v2 dir (see create) must let the same nodes through. A host
	 * that could not load it at create cannot now either. */
	unified = cgroup_v1_unified_dir(l, name);
	if (!unified)
		return lxm_error_setx(err, -ENOMEM, 500, "devices");
	(void)cgroup_bpf_devices(unified, extra, n, NULL);
	return 0;
}

static int cgroup_v1_create_one(const struct lxm_cgroup_layout *l, const struct cgroup_hierarchy *h,
				const char *name, char **ret, struct lxm_error **err)
{
	_cleanup_free_ char *payload = cgroup_path(h->mount, l->v1_payload);
	_cleanup_free_ char *dir = cgroup_v1_dir(l, h, name);
	bool cpuset = cgroup_has_controller(h, "cpuset");
	int r;

	if (!payload || !dir)
		return lxm_error_setx(err, -ENOMEM, 500, "create");
	r = cgroup_mkdir(payload, err);
	if (r >= 0 && cpuset)
		r = cgroup_v1_cpuset_copy(h->mount, payload, err);
	if (r < 0)
		return r;
	r = cgroup_mkdir(dir, err);
	if (r < 0)
		return r;
	if (cgroup_has_controller(h, "devices")) {
		r = cgroup_v1_devices(dir, err);
		if (r < 0) {
			cgroup_rmdir_quiet(&dir, 1);
			return r;
		}
	}
	*ret = TAKE_PTR(dir);
	if (cpuset)
		return cgroup_v1_cpuset_copy(payload, *ret, err);
	return 0;
}

static int cgroup_v1_create(struct lxm_cgroup_layout *l, const char *name,
			    struct lxm_cgroup_paths *ret, struct lxm_error **err)
{
	_cleanup_strv_ char **dirs = calloc(l->n_v1 + 1, sizeof(char *));
	_cleanup_free_ char *unified = NULL;
	int r = 0;

	if (!dirs)
		return lxm_error_setx(err, -ENOMEM, 500, "create");
	for (size_t i = 0; i < l->n_v1 && r >= 0; i++)
		r = cgroup_v1_create_one(l, &l->v1[i], name, &dirs[i], err);
	if (r >= 0 && l->v2) {
		unified = cgroup_v1_unified_dir(l, name);
		r = unified ? cgroup_mkdir(unified, err)
			    : lxm_error_setx(err, -ENOMEM, 500, "create");
		/* The v1 devices controller enforces the allow-list already; the same program on
		 * the v2 dir is a second fence where the kernel supports it, so a failure is not
		 * fatal. */
		if (r >= 0 && !*l->prefix)
			(void)cgroup_bpf_devices(unified, NULL, 0, NULL);
		/* hugetlb on v2 reaches the instance's dir once the root passes it down; a failure
		   shows when a limit is set (the files are missing). */
		if (r >= 0 && cgroup_v1_hugetlb_on_v2(l))
			(void)cgroup_write(l->v2->mount, "cgroup.subtree_control", "+hugetlb");
	}
	if (r < 0) {
		for (size_t i = 0; i < l->n_v1; i++)
			cgroup_rmdir_quiet(&dirs[i], 1);
		cgroup_rmdir_quiet(&unified, 1);
		return r;
	}
	ret->v1 = TAKE_PTR(dirs);
	ret->v2 = TAKE_PTR(unified);
	return 0;
}

static int cgroup_v1_apply_memory(const struct lxm_cgroup_layout *l, const char *name,
				  const struct lxm_limits *lim, struct lxm_error **err)
{
	int64_t hard = lim->memory >= 0 && !lim->memory_soft ? lim->memory : -1;
	int64_t soft = lim->memory >= 0 && lim->memory_soft ? lim->memory : -1;
	_cleanup_free_ char *dir = NULL;
	int r;

	r = cgroup_v1_controller_dir(l, name, "memory", lim->memory >= 0, &dir, err);
	if (r < 0 || !dir)
		return r;
	/* The kernel keeps memsw >= limit at every step: lift memsw first so the limit may rise
	 * past its old value, then bring it down to the limit when swap is not allowed. The memsw
	 * files exist only with swap accounting. */
	r = cgroup_set(dir, "memory.memsw.limit_in_bytes", "-1", true, err);
	if (r < 0)
		return r;
	r = cgroup_set_int64(dir, "memory.limit_in_bytes", hard, hard < 0, err);
	if (r < 0)
		return r;
	r = cgroup_set_int64(dir, "memory.soft_limit_in_bytes", soft, soft < 0, err);
	if (r < 0)
		return r;
	if (hard >= 0 && !lim->memory_swap)
		return cgroup_set_int64(dir, "memory.memsw.limit_in_bytes", hard, true, err);
	return 0;
}

/* cpu.weight (1-10000, default 100) to cpu.shares (2-262144, default 1024). */
static int64_t cgroup_v1_shares(int64_t weight)
{
	int64_t shares = weight * CGROUP_V1_SHARES_DEFAULT / 100;

	if (shares < CGROUP_V1_SHARES_MIN)
		return CGROUP_V1_SHARES_MIN;
	return shares > CGROUP_V1_SHARES_MAX ? CGROUP_V1_SHARES_MAX : shares;
}

static int cgroup_v1_apply_cpu(const struct lxm_cgroup_layout *l, const char *name,
			       const struct lxm_limits *lim, struct lxm_error **err)
{
	bool quota = lim->cpu_quota_us >= 0, weight = lim->cpu_weight > 0;
	int64_t period =
		quota && lim->cpu_period_us > 0 ? lim->cpu_period_us : CGROUP_CPU_PERIOD_DEFAULT_US;
	_cleanup_free_ char *dir = NULL;
	int r;

	r = cgroup_v1_controller_dir(l, name, "cpu", quota || weight, &dir, err);
	if (r < 0 || !dir)
		return r;
	/* The period first: the kernel checks the quota against the period in place. */
	r = cgroup_set_int64(dir, "cpu.cfs_period_us", period, !quota, err);
	if (r < 0)
		return r;
	r = cgroup_set_int64(dir, "cpu.cfs_quota_us", quota ? lim->cpu_quota_us : -1, !quota, err);
	if (r < 0)
		return r;
	return cgroup_set_int64(dir, "cpu.shares",
				weight ? cgroup_v1_shares(lim->cpu_weight)
				       : CGROUP_V1_SHARES_DEFAULT,
				!weight, err);
}

static int cgroup_v1_apply_cpuset(const struct lxm_cgroup_layout *l, const char *name,
				  const struct lxm_limits *lim, struct lxm_error **err)
{
	const struct cgroup_hierarchy *h = cgroup_v1_find(l, "cpuset");
	_cleanup_free_ char *dir = NULL, *parent = NULL, *cpus = NULL;
	bool set = lim->cpuset && *lim->cpuset;
	int r;

	if (!h)
		return cgroup_v1_controller_dir(l, name, "cpuset", set, &dir, err);
	dir = cgroup_v1_dir(l, h, name);
	parent = cgroup_path(h->mount, l->v1_payload);
	if (!dir || !parent)
		return lxm_error_setx(err, -ENOMEM, 500, "cpuset");
	if (set)
		return cgroup_set(dir, "cpuset.cpus", lim->cpuset, false, err);
	/* v1 has no "empty means the parent's": copy the parent's list. */
	r = cgroup_read(parent, "cpuset.cpus", &cpus);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "read %s/cpuset.cpus", parent);
	return cgroup_set(dir, "cpuset.cpus", cpus, false, err);
}

/* hugetlb.<size>.limit_in_bytes per page size (hugetlb.<size>.max when the controller is on the
 * v2 hierarchy); a size the host lacks has no file, fine when unset, as is a host without the
 * hugetlb controller. */
static int cgroup_v1_apply_hugetlb(const struct lxm_cgroup_layout *l, const char *name,
				   const struct lxm_limits *lim, struct lxm_error **err)
{
	_cleanup_free_ char *dir = NULL;
	bool any = false, v2 = cgroup_v1_hugetlb_on_v2(l);
	int r;

	for (int n = 0; n < LXM_HUGEPAGE_N; n++)
		any |= lim->hugepages[n] >= 0;
	if (v2 && !(dir = cgroup_v1_unified_dir(l, name)))
		return lxm_error_setx(err, -ENOMEM, 500, "hugetlb");
	r = v2 ? 0 : cgroup_v1_controller_dir(l, name, "hugetlb", any, &dir, err);
	if (r < 0 || !dir)
		return r;
	for (int n = 0; n < LXM_HUGEPAGE_N; n++) {
		char file[48];
		bool set = lim->hugepages[n] >= 0;

		snprintf(file, sizeof(file), "hugetlb.%s.%s", lxm_hugepage_names[n],
			 v2 ? "max" : "limit_in_bytes");
		if (v2 && !set)
			r = cgroup_set(dir, file, "max", true, err);
		else
			r = cgroup_set_int64(dir, file, set ? lim->hugepages[n] : -1, !set, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* limits.disk.priority 0-10 as blkio.weight (CFQ: 10-1000, default 500, so 10 + 99 per step)
 * and blkio.bfq.weight (BFQ: default 100, cgroup_io_weight()); the kernel has the files of its
 * schedulers only, and at least one must take a priority that is set. */
static int cgroup_v1_apply_blkio(const struct lxm_cgroup_layout *l, const char *name,
				 const struct lxm_limits *lim, struct lxm_error **err)
{
	bool set = lim->disk_priority >= 0, written = false;
	_cleanup_free_ char *dir = NULL, *cfq = NULL, *bfq = NULL;
	int r;

	r = cgroup_v1_controller_dir(l, name, "blkio", set, &dir, err);
	if (r < 0 || !dir)
		return r;
	cfq = cgroup_path(dir, "blkio.weight");
	bfq = cgroup_path(dir, "blkio.bfq.weight");
	if (!cfq || !bfq)
		return lxm_error_setx(err, -ENOMEM, 500, "blkio weight");
	if (access(cfq, F_OK) == 0) {
		r = cgroup_set_int64(dir, "blkio.weight", set ? 10 + 99 * lim->disk_priority : 500,
				     false, err);
		if (r < 0)
			return r;
		written = true;
	}
	if (access(bfq, F_OK) == 0) {
		r = cgroup_set_int64(dir, "blkio.bfq.weight", cgroup_io_weight(lim->disk_priority),
				     false, err);
		if (r < 0)
			return r;
		written = true;
	}
	if (set && !written)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "set limits.disk.priority: %s has neither blkio.weight nor "
				     "blkio.bfq.weight: the host's disks' io schedulers have no "
				     "weights (use the bfq scheduler)",
				     dir);
	return 0;
}

static int cgroup_v1_apply(struct lxm_cgroup_layout *l, const char *name,
			   const struct lxm_limits *lim, struct lxm_error **err)
{
	_cleanup_free_ char *pids = NULL;
	int r;

	r = cgroup_v1_apply_memory(l, name, lim, err);
	if (r < 0)
		return r;
	r = cgroup_v1_apply_cpu(l, name, lim, err);
	if (r < 0)
		return r;
	r = cgroup_v1_apply_cpuset(l, name, lim, err);
	if (r < 0)
		return r;
	r = cgroup_v1_apply_hugetlb(l, name, lim, err);
	if (r < 0)
		return r;
	r = cgroup_v1_apply_blkio(l, name, lim, err);
	if (r < 0)
		return r;
	r = cgroup_v1_controller_dir(l, name, "pids", lim->processes >= 0, &pids, err);
	if (r < 0 || !pids)
		return r;
	if (lim->processes >= 0)
		return cgroup_set_int64(pids, "pids.max", lim->processes, false, err);
	return cgroup_set(pids, "pids.max", "max", true, err);
}

static int cgroup_v1_freeze(struct lxm_cgroup_layout *l, const char *name, bool freeze,
			    struct lxm_error **err)
{
	const char *want = freeze ? "FROZEN" : "THAWED";
	_cleanup_free_ char *dir = NULL;
	uint64_t deadline;
	int r;

	r = cgroup_v1_controller_dir(l, name, "freezer", !l->v2, &dir, err);
	if (r < 0)
		return r;
	if (!dir) {
		/* A hybrid host without the v1 freezer: v2's works on the tasks placed there. */
		_cleanup_free_ char *unified = cgroup_v1_unified_dir(l, name);

		return unified ? cgroup_v2_freeze_dir(unified, freeze, err)
			       : lxm_error_setx(err, -ENOMEM, 500, "freeze");
	}
	r = cgroup_set(dir, "freezer.state", want, false, err);
	if (r < 0 || !freeze)
		return r;
	deadline = lxm_monotonic_ms() + CGROUP_FREEZE_TIMEOUT_MS;
	for (;;) {
		_cleanup_free_ char *state = NULL;

		r = cgroup_read(dir, "freezer.state", &state);
		if (r < 0)
			return lxm_error_setx(err, r, 500, "freeze: read %s/freezer.state", dir);
		if (streq(state, "FROZEN"))
			return 0;
		if (lxm_monotonic_ms() >= deadline)
			break;
		cgroup_poll_sleep();
		/* A task busy in the kernel stays FREEZING; writing again retries it. */
		(void)cgroup_write(dir, "freezer.state", "FROZEN");
	}
	/* Half frozen is worse than running: undo, and say so. */
	(void)cgroup_write(dir, "freezer.state", "THAWED");
	return lxm_error_set(err, -ETIMEDOUT, 500,
			     "freeze: %s/freezer.state: not FROZEN after %d ms, thawed again", dir,
			     CGROUP_FREEZE_TIMEOUT_MS);
}

/* Reads one figure into *ret; a file the host does not have leaves it at -1. */
static int cgroup_v1_stat(const char *dir, const char *file, int64_t *ret, struct lxm_error **err)
{
	int64_t v;
	int r;

	if (!dir)
		return 0;
	r = cgroup_read_int64(dir, file, &v);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return lxm_error_setx(err, r, 500, "stats: read %s/%s", dir, file);
	*ret = v;
	return 0;
}

static int cgroup_v1_stats(struct lxm_cgroup_layout *l, const char *name,
			   struct lxm_cgroup_stats *ret, struct lxm_error **err)
{
	_cleanup_free_ char *first = NULL, *memory = NULL, *cpuacct = NULL, *pids = NULL;
	int64_t memsw = -1;
	int r;

	/* Every v1 mode has at least one hierarchy: the one create made first says whether the
	 * instance has cgroups at all. */
	first = cgroup_v1_dir(l, &l->v1[0], name);
	if (!first)
		return lxm_error_setx(err, -ENOMEM, 500, "stats");
	if (access(first, F_OK) < 0)
		return lxm_error_setx(err, -errno, errno == ENOENT ? 404 : 500, "stats: %s", first);
	if ((r = cgroup_v1_controller_dir(l, name, "memory", false, &memory, err)) < 0 ||
	    (r = cgroup_v1_controller_dir(l, name, "cpuacct", false, &cpuacct, err)) < 0 ||
	    (r = cgroup_v1_controller_dir(l, name, "pids", false, &pids, err)) < 0)
		return r;
	if ((r = cgroup_v1_stat(memory, "memory.usage_in_bytes", &ret->memory_usage, err)) < 0 ||
	    (r = cgroup_v1_stat(memory, "memory.max_usage_in_bytes", &ret->memory_peak, err)) < 0 ||
	    (r = cgroup_v1_stat(memory, "memory.memsw.usage_in_bytes", &memsw, err)) < 0 ||
	    (r = cgroup_v1_stat(cpuacct, "cpuacct.usage", &ret->cpu_usage_ns, err)) < 0 ||
	    (r = cgroup_v1_stat(pids, "pids.current", &ret->processes, err)) < 0)
		return r;
	/* memsw counts memory and swap together. */
	if (memsw >= 0 && ret->memory_usage >= 0)
		ret->swap_usage = memsw > ret->memory_usage ? memsw - ret->memory_usage : 0;
	/* Without the pids controller, count the processes themselves. */
	if (ret->processes < 0 && cgroup_count_procs(first, &ret->processes) < 0)
		ret->processes = -1;
	return 0;
}

/* A root's own parent dirs go once its last instance went: a private lxmd (a test, a second
 * daemon) leaves nothing on the host. rmdir fails while another instance is there: fine. */
static void cgroup_v1_remove_parents(const struct lxm_cgroup_layout *l)
{
	for (size_t i = 0; i < l->n_v1; i++) {
		_cleanup_free_ char *payload = cgroup_path(l->v1[i].mount, l->v1_payload);

		if (payload)
			(void)rmdir(payload);
	}
}

static int cgroup_v1_destroy(struct lxm_cgroup_layout *l, const char *name, struct lxm_error **err)
{
	_cleanup_strv_ char **dirs = calloc(l->n_v1 + 2, sizeof(char *));
	_cleanup_free_ char *freezer = NULL;
	size_t n = 0;
	int r;

	if (!dirs)
		return lxm_error_setx(err, -ENOMEM, 500, "destroy");
	for (size_t i = 0; i < l->n_v1; i++) {
		dirs[n] = cgroup_v1_dir(l, &l->v1[i], name);
		if (!dirs[n++])
			return lxm_error_setx(err, -ENOMEM, 500, "destroy");
	}
	if (l->v2) {
		dirs[n] = cgroup_v1_unified_dir(l, name);
		if (!dirs[n++])
			return lxm_error_setx(err, -ENOMEM, 500, "destroy");
	}
	for (size_t i = 0; i < n; i++)
		(void)cgroup_kill(dirs[i]);
	/* A task frozen by the v1 freezer does not act on SIGKILL until thawed. */
	r = cgroup_v1_controller_dir(l, name, "freezer", false, &freezer, err);
	if (r < 0)
		return r;
	if (freezer)
		(void)cgroup_set_tree(freezer, "freezer.state", "THAWED");
	r = cgroup_remove(dirs, n, err);
	if (r >= 0 && l->owned)
		cgroup_v1_remove_parents(l);
	return r;
}

const struct cgroup_ops cgroup_v1_ops = {
	/* For messages. */
	.name = "v1",
	/* lxm.payload/<name> on each v1 hierarchy (cpuset filled from the parent), plus
	 * lxm.payload.<name> on the v2 hierarchy of a hybrid host. */
	.create = cgroup_v1_create,
	/* memory.{limit,memsw.limit,soft_limit}_in_bytes, cpu.cfs_{period,quota}_us, cpu.shares,
	 * cpuset.cpus, pids.max. */
	.apply = cgroup_v1_apply,
	/* freezer.state, waiting for FROZEN; v2's cgroup.freeze when there is no v1 freezer. */
	.freeze = cgroup_v1_freeze,
	/* memory.{usage,max_usage,memsw.usage}_in_bytes, cpuacct.usage, pids.current. */
	.stats = cgroup_v1_stats,
	/* devices.allow and devices.deny, and the v2 dir's BPF filter on a hybrid host. */
	.devices = cgroup_v1_devices_set,
	/* SIGKILL per pid (cgroup.kill in the v2 dir), thaw, rmdir deepest first. */
	.destroy = cgroup_v1_destroy,
};
