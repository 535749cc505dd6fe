/* The unified driver: every controller on the cgroup2 hierarchy, an instance in
 * "<mount>/lxm.payload.<name>". Also the v2 freezer, which the v1 driver borrows on hybrid hosts
 * without a v1 freezer. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#include "cgroup-internal.h"

/* What an instance can be limited by, in the order they are enabled. */
static const char *const cgroup_v2_wanted[] = {
	"cpu", "memory", "pids", "cpuset", "io", "hugetlb"
};

static char *cgroup_v2_dir(const struct lxm_cgroup_layout *l, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s%s", l->v2->mount, l->v2_prefix, name) < 0)
		return NULL;
	return p;
}

/* Controllers reach a child only once its parent lists them in cgroup.subtree_control; enables
 * those the root offers and has not enabled yet, in one write (all or nothing). */
static int cgroup_v2_enable(const struct cgroup_hierarchy *root, struct lxm_error **err)
{
	_cleanup_free_ char *enabled = NULL;
	char want[128] = "";
	int r;

	r = cgroup_read(root->mount, "cgroup.subtree_control", &enabled);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "read %s/cgroup.subtree_control", root->mount);
	for (size_t i = 0; i < ARRAY_SIZE(cgroup_v2_wanted); i++) {
		const char *c = cgroup_v2_wanted[i];
		bool on = false;
		_cleanup_free_ char *copy = strdup(enabled);
		char *tok, *save = NULL;

		if (!copy)
			return lxm_error_setx(err, -ENOMEM, 500, "enable controllers");
		for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
			on |= streq(tok, c);
		if (on || !cgroup_has_controller(root, c))
			continue;
		if (*want)
			strcat(want, " ");
		strcat(want, "+");
		strcat(want, c);
	}
	if (!*want)
		return 0;
	r = cgroup_write(root->mount, "cgroup.subtree_control", want);
	if (r < 0)
		return lxm_error_setx(err, r, 500,
				      "enable controllers %s: %s/cgroup.subtree_control", want,
				      root->mount);
	return 0;
}

static int cgroup_v2_create(struct lxm_cgroup_layout *l, const char *name,
			    struct lxm_cgroup_paths *ret, struct lxm_error **err)
{
	_cleanup_free_ char *dir = cgroup_v2_dir(l, name);
	int r;

	if (!dir)
		return lxm_error_setx(err, -ENOMEM, 500, "create");
	r = cgroup_v2_enable(l->v2, err);
	if (r < 0)
		return r;
	r = cgroup_mkdir(dir, err);
	if (r < 0)
		return r;
	/* v2 has no devices controller: the allow-list is a BPF program (not on fake test trees,
	 * which are plain directories). */
	if (!*l->prefix) {
		r = cgroup_bpf_devices(dir, NULL, 0, err);
		if (r < 0) {
			cgroup_rmdir_quiet(&dir, 1);
			return r;
		}
	}
	/* No v1 dirs on a unified host. */
	ret->v1 = NULL;
	ret->v2 = TAKE_PTR(dir);
	return 0;
}

/* Writes a limit whose "none" is "max". Resetting a controller the cgroup does not have is
 * fine; setting one is not. */
static int cgroup_v2_set_max(const char *dir, const char *file, int64_t value,
			     struct lxm_error **err)
{
	if (value < 0)
		return cgroup_set(dir, file, "max", true, err);
	return cgroup_set_int64(dir, file, value, false, err);
}

static int cgroup_v2_apply_memory(const char *dir, const struct lxm_limits *lim,
				  struct lxm_error **err)
{
	bool set = lim->memory >= 0;
	int r;

	/* A soft limit is a protection: memory.low keeps the instance's memory from reclaim up
	 * to the value, and nothing caps it. */
	r = cgroup_v2_set_max(dir, "memory.max", set && !lim->memory_soft ? lim->memory : -1, err);
	if (r < 0)
		return r;
	if (set && lim->memory_soft)
		r = cgroup_set_int64(dir, "memory.low", lim->memory, false, err);
	else
		r = cgroup_set(dir, "memory.low", "0", true, err);
	if (r < 0)
		return r;
	/* Without swap accounting (swapaccount=0, no swap configured) there is nothing to cap. */
	return cgroup_set(dir, "memory.swap.max", lim->memory_swap ? "max" : "0", true, err);
}

static int cgroup_v2_apply_cpu(const char *dir, const struct lxm_limits *lim,
			       struct lxm_error **err)
{
	int64_t period = lim->cpu_period_us > 0 ? lim->cpu_period_us : CGROUP_CPU_PERIOD_DEFAULT_US;
	char buf[64];
	bool cpuset;
	int r;

	if (lim->cpu_quota_us >= 0) {
		snprintf(buf, sizeof(buf), "%" PRId64 " %" PRId64, lim->cpu_quota_us, period);
		r = cgroup_set(dir, "cpu.max", buf, false, err);
	} else {
		snprintf(buf, sizeof(buf), "max %d", CGROUP_CPU_PERIOD_DEFAULT_US);
		r = cgroup_set(dir, "cpu.max", buf, true, err);
	}
	if (r < 0)
		return r;
	if (lim->cpu_weight > 0)
		r = cgroup_set_int64(dir, "cpu.weight", lim->cpu_weight, false, err);
	else
		r = cgroup_set(dir, "cpu.weight", "100", true, err);
	if (r < 0)
		return r;
	/* An empty cpu list is the parent's: every cpu the host gives us. */
	cpuset = lim->cpuset && *lim->cpuset;
	return cgroup_set(dir, "cpuset.cpus", cpuset ? lim->cpuset : "", !cpuset, err);
}

/* hugetlb.<size>.max per page size; a size the host lacks has no file, fine when unset. */
static int cgroup_v2_apply_hugetlb(const char *dir, const struct lxm_limits *lim,
				   struct lxm_error **err)
{
	for (int n = 0; n < LXM_HUGEPAGE_N; n++) {
		char file[48];
		int r;

		snprintf(file, sizeof(file), "hugetlb.%s.max", lxm_hugepage_names[n]);
		r = cgroup_v2_set_max(dir, file, lim->hugepages[n], err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The io weight: io.bfq.weight where the device's scheduler is BFQ, io.weight where the kernel
 * has the io cost model; at least one of them must take a priority that is set. */
static int cgroup_v2_apply_io(const char *dir, const struct lxm_limits *lim, struct lxm_error **err)
{
	static const char *const files[] = { "io.weight", "io.bfq.weight" };
	bool set = lim->disk_priority >= 0, written = false;
	char value[32];
	int r;

	snprintf(value, sizeof(value), "%" PRId64, cgroup_io_weight(lim->disk_priority));
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		_cleanup_free_ char *path = cgroup_path(dir, files[i]);

		if (!path)
			return lxm_error_setx(err, -ENOMEM, 500, "io weight");
		if (access(path, F_OK) < 0)
			continue;
		r = cgroup_set(dir, files[i], value, false, err);
		if (r < 0)
			return r;
		written = true;
	}
	if (set && !written)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "set limits.disk.priority: %s has neither io.weight nor "
				     "io.bfq.weight: the host's io controller or its disks' io "
				     "scheduler has no weights (use the bfq scheduler)",
				     dir);
	return 0;
}

static int cgroup_v2_apply(struct lxm_cgroup_layout *l, const char *name,
			   const struct lxm_limits *lim, struct lxm_error **err)
{
	_cleanup_free_ char *dir = cgroup_v2_dir(l, name);
	int r;

	if (!dir)
		return lxm_error_setx(err, -ENOMEM, 500, "apply limits");
	r = cgroup_v2_apply_memory(dir, lim, err);
	if (r < 0)
		return r;
	r = cgroup_v2_apply_cpu(dir, lim, err);
	if (r < 0)
		return r;
	r = cgroup_v2_apply_hugetlb(dir, lim, err);
	if (r < 0)
		return r;
	r = cgroup_v2_apply_io(dir, lim, err);
	if (r < 0)
		return r;
	return cgroup_v2_set_max(dir, "pids.max", lim->processes, err);
}

int cgroup_v2_freeze_dir(const char *dir, bool freeze, struct lxm_error **err)
{
	uint64_t deadline;
	int r;

	r = cgroup_write(dir, "cgroup.freeze", freeze ? "1" : "0");
	if (r == -ENOENT && access(dir, F_OK) == 0)
		return lxm_error_set(err, -EOPNOTSUPP, 500,
				     "%s: %s/cgroup.freeze: the kernel has no cgroup v2 freezer",
				     freeze ? "freeze" : "thaw", dir);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "%s: %s/cgroup.freeze",
				      freeze ? "freeze" : "thaw", dir);
	/* Thawing takes effect at once; freezing waits for each task to reach the freezer. */
	if (!freeze)
		return 0;
	deadline = lxm_monotonic_ms() + CGROUP_FREEZE_TIMEOUT_MS;
	for (;;) {
		int64_t frozen = 0;

		r = cgroup_read_key_int64(dir, "cgroup.events", "frozen", &frozen);
		if (r < 0 && r != -ENODATA)
			return lxm_error_setx(err, r, 500, "freeze: read %s/cgroup.events", dir);
		if (frozen == 1)
			return 0;
		if (lxm_monotonic_ms() >= deadline)
			break;
		cgroup_poll_sleep();
	}
	/* Half frozen is worse than running: undo, and say so. */
	(void)cgroup_write(dir, "cgroup.freeze", "0");
	return lxm_error_set(err, -ETIMEDOUT, 500,
			     "freeze: %s/cgroup.events: not frozen after %d ms, thawed again", dir,
			     CGROUP_FREEZE_TIMEOUT_MS);
}

static int cgroup_v2_freeze(struct lxm_cgroup_layout *l, const char *name, bool freeze,
			    struct lxm_error **err)
{
	_cleanup_free_ char *dir = cgroup_v2_dir(l, name);

	if (!dir)
		return lxm_error_setx(err, -ENOMEM, 500, "freeze");
	return cgroup_v2_freeze_dir(dir, freeze, err);
}

/* Reads one figure into *ret; a file the host does not have leaves it at -1. */
static int cgroup_v2_stat(const char *dir, const char *file, const char *key, int64_t *ret,
			  struct lxm_error **err)
{
	int64_t v;
	int r = key ? cgroup_read_key_int64(dir, file, key, &v) : cgroup_read_int64(dir, file, &v);

	if (r == -ENOENT || r == -ENODATA)
		return 0;
	if (r < 0)
		return lxm_error_setx(err, r, 500, "stats: read %s/%s", dir, file);
	*ret = v;
	return 0;
}

static int cgroup_v2_stats(struct lxm_cgroup_layout *l, const char *name,
			   struct lxm_cgroup_stats *ret, struct lxm_error **err)
{
	_cleanup_free_ char *dir = cgroup_v2_dir(l, name);
	int64_t usec = -1;
	int r;

	if (!dir)
		return lxm_error_setx(err, -ENOMEM, 500, "stats");
	if (access(dir, F_OK) < 0)
		return lxm_error_setx(err, -errno, errno == ENOENT ? 404 : 500, "stats: %s", dir);
	if ((r = cgroup_v2_stat(dir, "memory.current", NULL, &ret->memory_usage, err)) < 0 ||
	    (r = cgroup_v2_stat(dir, "memory.peak", NULL, &ret->memory_peak, err)) < 0 ||
	    (r = cgroup_v2_stat(dir, "memory.swap.current", NULL, &ret->swap_usage, err)) < 0 ||
	    (r = cgroup_v2_stat(dir, "cpu.stat", "usage_usec", &usec, err)) < 0 ||
	    (r = cgroup_v2_stat(dir, "pids.current", NULL, &ret->processes, err)) < 0)
		return r;
	if (usec >= 0)
		ret->cpu_usage_ns = usec * 1000;
	/* Without the pids controller, count the processes themselves. */
	if (ret->processes < 0 && cgroup_count_procs(dir, &ret->processes) < 0)
		ret->processes = -1;
	return 0;
}

static int cgroup_v2_destroy(struct lxm_cgroup_layout *l, const char *name, struct lxm_error **err)
{
	_cleanup_free_ char *dir = cgroup_v2_dir(l, name);

	if (!dir)
		return lxm_error_setx(err, -ENOMEM, 500, "destroy");
	(void)cgroup_kill(dir);
	return cgroup_remove(&dir, 1, err);
}

static int cgroup_v2_devices(struct lxm_cgroup_layout *l, const char *name,
			     const struct lxm_cgroup_device *extra, size_t n,
			     struct lxm_error **err)
{
	_cleanup_free_ char *dir = cgroup_v2_dir(l, name);

	if (!dir)
		return lxm_error_setx(err, -ENOMEM, 500, "devices");
	/* Fake test trees have no BPF filter (see create). */
	if (*l->prefix)
		return 0;
	return cgroup_bpf_devices(dir, extra, n, err);
}

const struct cgroup_ops cgroup_v2_ops = {
	/* For messages. */
	.name = "v2",
	/* Enables the controllers in the root, then makes lxm.payload.<name>. */
	.create = cgroup_v2_create,
	/* memory.max / memory.low / memory.swap.max, cpu.max, cpu.weight, cpuset.cpus, pids.max. */
	.apply = cgroup_v2_apply,
	/* cgroup.freeze, then "frozen 1" in cgroup.events. */
	.freeze = cgroup_v2_freeze,
	/* memory.current, memory.peak, memory.swap.current, cpu.stat, pids.current. */
	.stats = cgroup_v2_stats,
	/* The BPF device filter, replaced. */
	.devices = cgroup_v2_devices,
	/* cgroup.kill (or SIGKILL per pid), then rmdir deepest first. */
	.destroy = cgroup_v2_destroy,
};
