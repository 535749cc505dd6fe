#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <sched.h>

#include "boot.h"
#include "cgroup/cgroup.h"
#include "child.h"
#include "cleanup.h"
#include "container/spec.h"
#include "disks.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "images/metadata.h"
#include "idmap.h"
#include "instance.h"
#include "unixdev.h"
#include "nic.h"
#include "proxy.h"
#include "json.h"
#include "log.h"
#include "monitor/monitor.h"
#include "network/network.h"
#include "networks.h"
#include "operations.h"
#include "pools.h"
#include "profiles/policy.h"
#include "storage/storage.h"
#include "util.h"
#include "volumes.h"
#include "vm/agent-pool.h"
#include "vm/accel.h"
#include "vm/vm-config.h"
#include "vm/vm-spec.h"
#include "yaml.h"

/* Ids each unprivileged container gets (LXD's default): root's subordinate range starts there. */
#define IDMAP_SIZE 65536
/* What lxmd adds to /etc/subuid and /etc/subgid for root when they have no entry (as LXD advises).
 */
#define SUBID_DEFAULT_BASE  1000000
#define SUBID_DEFAULT_COUNT 1000000000
/* Console output kept per container. */
#define CONSOLE_LOG_MAX (1024 * 1024)
/* /run inside a container. */
#define RUN_SIZE (64ull * 1024 * 1024)
/* How long lxmd waits for a monitor's control socket to answer. */
#define MONITOR_TIMEOUT_MS 2000

struct rt_instance;

/* What differs between instance types behind the same runtime: the monitor's control protocol
 * (stop, kill, console, status) is the same for containers and VMs, so stopping, restarting and
 * re-attaching are shared; starting, freezing and the live state are each type's own. */
struct lxmd_instance_driver {
	const char *type; /* the instance type it runs ("container", "virtual-machine") */
	/* Prepares the start of i (inst and its expanded config and devices) and runs its monitor;
	 * monitor_ready() ends i->op. */
	int (*start)(struct lxmd *d, struct rt_instance *i, struct lxm_db_instance *inst,
		     json_t *config, json_t *devices, struct lxm_error **err);
	/* Freezes or thaws a running i; ends i->op (set by the caller). */
	int (*freeze)(struct lxmd *d, struct rt_instance *i, bool freeze, struct lxm_error **err);
	/* Adds the running instance's pid, processes, network (and for VMs, the status QEMU
	 * reports) to the state object st. */
	void (*state)(struct lxmd *d, struct rt_instance *i, json_t *st);
	/* A change of limits.* reaches the running instance's cgroup at once (a VM's RAM and
	 * vCPUs are fixed while QEMU runs, and its cgroup is sized for them: next start). */
	bool live_limits;
};

static const struct lxmd_instance_driver container_driver, vm_driver;

struct rt_instance {
	TAILQ_ENTRY(rt_instance) link;		/* in rt->running */
	const struct lxmd_instance_driver *drv; /* its type's driver */
	struct lxmd *d;				/* the daemon */
	char *name;				/* instance name */
	pid_t init_pid;		       /* PID 1 of the container, in lxmd's pid namespace */
	pid_t monitor_pid;	       /* its lxm-monitor */
	int pidfd;		       /* the monitor's pidfd: readable once it exited */
	uv_poll_t poll;		       /* watches pidfd */
	bool frozen;		       /* cgroup freezer engaged (a VM: its vCPUs paused) */
	bool freezing;		       /* a VM's pending freeze (or thaw) request freezes */
	bool starting;		       /* the monitor has not reported yet */
	struct lxm_operation *op;      /* start/stop/restart waiting for this instance */
	struct lxm_operation *kill_op; /* a stop --force that overtook a pending stop */
	bool restart;		       /* start again once stopped (restart) */
	bool restart_asked;	       /* the pending change is a restart (for messages) */
	int restart_timeout;	       /* for the start after a restart */
	int jobs;		       /* thread-pool jobs that still use this record */
	int requests;		       /* monitor requests in flight that still use it */
	bool released;		       /* removed and closed: free once jobs and requests end */
	struct lxm_error *fail;	       /* a start that failed after the clone (a proxy): its
					* operation ends with this once the container is gone */
};

struct lxmd_runtime {
	TAILQ_HEAD(, rt_instance) running; /* instances with a monitor (or starting one) */
	struct lxm_cgroup_layout *cgroups; /* the host's hierarchies */
	struct lxm_policy_host host;	   /* what the policy compiler needs to know */
	uint32_t uid_base;		   /* root's subordinate uid range start */
	uint32_t gid_base;		   /* root's subordinate gid range start */
	struct lxmd_subids subids;	   /* root's subordinate ids, for isolated id maps */
	char *monitor;			   /* path of lxm-monitor */
};

static struct rt_instance *rt_find(struct lxmd *d, const char *name)
{
	struct rt_instance *i;

	if (!d->rt)
		return NULL;
	TAILQ_FOREACH(i, &d->rt->running, link)
	if (streq(i->name, name))
		return i;
	return NULL;
}

static void rt_closed(uv_handle_t *h)
{
	struct rt_instance *i = h->data;

	if (i->jobs > 0 || i->requests > 0) {
		/* A freeze job or a monitor request still holds it: the last to end frees it. */
		i->released = true;
		return;
	}
	if (i->pidfd >= 0)
		close(i->pidfd);
	lxm_error_free(i->fail);
	free(i->name);
	free(i);
}

/* Forgets a running instance; its monitor (if any) is not touched. */
static void rt_remove(struct rt_instance *i)
{
	TAILQ_REMOVE(&i->d->rt->running, i, link);
	if (i->pidfd >= 0) {
		uv_poll_stop(&i->poll);
		uv_close((uv_handle_t *)&i->poll, rt_closed);
		return;
	}
	rt_closed((uv_handle_t *)&i->poll);
}

static int rundir_of(struct lxmd *d, const char *name, char **ret)
{
	return asprintf(ret, "%s/%s", d->cfg.rundir, name) < 0 ? -ENOMEM : 0;
}

/* ---- id ranges ---- */

/* Finds root's range in /etc/subuid-style file, adding the default one when there is none. */
static int subid_base(const char *path, uint32_t *ret, uint32_t *ret_count, struct lxm_error **err)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_close_ int fd = -1;
	char *line, *save = NULL, entry[64];
	int k, n;

	k = lxm_read_file(path, &text, NULL);
	if (k < 0 && k != -ENOENT)
		return lxm_error_setx(err, k, 500, "read %s", path);
	for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		unsigned long base, count;
		char who[64];

		if (sscanf(line, "%63[^:]:%lu:%lu", who, &base, &count) == 3 &&
		    (streq(who, "root") || streq(who, "0")) && count >= IDMAP_SIZE) {
			*ret = (uint32_t)base;
			*ret_count = count > UINT32_MAX - base ? UINT32_MAX - (uint32_t)base
							       : (uint32_t)count;
			return 0;
		}
	}
	n = snprintf(entry, sizeof(entry), "root:%d:%d\n", SUBID_DEFAULT_BASE, SUBID_DEFAULT_COUNT);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	k = fd < 0 ? -errno : lxm_write_all(fd, entry, (size_t)n);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "add root's range to %s", path);
	log_info("added root:%d:%d to %s (subordinate ids for unprivileged containers)",
		 SUBID_DEFAULT_BASE, SUBID_DEFAULT_COUNT, path);
	*ret = SUBID_DEFAULT_BASE;
	*ret_count = SUBID_DEFAULT_COUNT;
	return 0;
}

/* The huge page sizes limits.hugepages.<size> can limit: those the kernel has, when a hugetlb
 * controller is there to limit them. */
static void host_hugepages(struct lxmd_runtime *rt)
{
	bool controller = lxm_cgroup_controller_available(rt->cgroups, "hugetlb");

	for (int n = 0; n < LXM_HUGEPAGE_N; n++) {
		char path[96];

		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%llukB",
			 (unsigned long long)lxm_hugepage_kb[n]);
		if (access(path, F_OK) < 0)
			continue;
		if (controller)
			rt->host.hugepages |= 1u << n;
		else
			log_info("%s huge pages cannot be limited: no hugetlb cgroup controller is "
				 "mounted (limits.hugepages.%s is refused)",
				 lxm_hugepage_names[n], lxm_hugepage_names[n]);
	}
}

/* ---- monitors ---- */

static void monitor_exited(uv_poll_t *p, int status, int events);

static int watch_monitor(struct rt_instance *i)
{
	int fd = (int)syscall(SYS_pidfd_open, i->monitor_pid, 0);

	if (fd < 0)
		return -errno;
	i->pidfd = fd;
	uv_poll_init(i->d->loop, &i->poll, fd);
	i->poll.data = i;
	uv_poll_start(&i->poll, UV_READABLE, monitor_exited);
	return 0;
}

static struct rt_instance *rt_add(struct lxmd *d, const char *name)
{
	struct rt_instance *i = calloc(1, sizeof(*i));

	if (!i || !(i->name = strdup(name))) {
		free(i);
		return NULL;
	}
	i->d = d;
	i->drv = &container_driver;
	i->pidfd = -1;
	i->poll.data = i;
	TAILQ_INSERT_TAIL(&d->rt->running, i, link);
	return i;
}

static void lifecycle(struct lxmd *d, const char *action, const char *name)
{
	_cleanup_free_ char *url = NULL;

	if (asprintf(&url, "/1.0/instances/%s", name) >= 0)
		lxm_events_lifecycle(d->events, action, url, NULL);
}

static int do_start(struct lxmd *d, struct rt_instance *i, struct lxm_error **err);

/* A stopped container keeps nothing under the runtime dir; the monitor's log moves beside the
 * console log so that `lxm info --show-log` can still tell what happened. */
static void clear_rundir(struct lxmd *d, const char *name, const char *rundir)
{
	static const char *const files[] = { "spec.json", "exit.json", "monitor.sock", "qmp.sock",
					     "agent.sock" };
	_cleanup_free_ char *from = NULL, *to = NULL;

	if (asprintf(&from, "%s/monitor.log", rundir) >= 0 &&
	    asprintf(&to, "%s/logs/%s/monitor.log", d->cfg.root, name) >= 0 &&
	    rename(from, to) < 0 && errno != ENOENT)
		unlink(from);
	for (size_t k = 0; k < ARRAY_SIZE(files); k++) {
		_cleanup_free_ char *p = NULL;

		if (asprintf(&p, "%s/%s", rundir, files[k]) >= 0)
			unlink(p);
	}
	lxmd_unixdevs_clear(rundir);
	if (rmdir(rundir) < 0 && errno != ENOENT)
		log_warn("instance '%s': %s not empty after stop", name, rundir);
}

/* The monitor is gone: the container stopped. Collect what it left and finish what waited. */
static void monitor_exited(uv_poll_t *p, int status, int events)
{
	struct rt_instance *i = p->data;
	struct lxmd *d = i->d;
	_cleanup_free_ char *rundir = NULL, *exitfile = NULL, *text = NULL, *name = strdup(i->name);
	/* A freeze job in flight owns the pending operation and finishes it itself. */
	struct lxm_operation *op = i->jobs ? NULL : TAKE_PTR(i->op);
	struct lxm_operation *kill_op = TAKE_PTR(i->kill_op);
	struct lxm_error *fail = TAKE_PTR(i->fail);
	bool restart = i->restart;
	int timeout = i->restart_timeout;
	struct lxm_error *err = NULL;

	if (rundir_of(d, i->name, &rundir) == 0 &&
	    asprintf(&exitfile, "%s/exit.json", rundir) >= 0 &&
	    lxm_read_file(exitfile, &text, NULL) == 0)
		log_info("instance '%s' stopped: %s", i->name, text);
	else
		log_warn("instance '%s': its monitor (pid %d) exited without an exit record",
			 i->name, (int)i->monitor_pid);
	/* The monitor removes the cgroups; make sure (it may have been killed). */
	if (lxm_cgroup_destroy(d->rt->cgroups, i->name, &err) < 0) {
		log_warn("instance '%s': %s", i->name, err->msg);
		lxm_error_free(TAKE_PTR(err));
	}
	if (rundir)
		clear_rundir(d, i->name, rundir);
	rt_remove(i);
	if (name) {
		lxmd_proxies_stop(d, name);
		/* A VM's agent connection ends with its QEMU (no-op for containers). */
		lxmd_vm_agent_forget(d, name);
		lifecycle(d, "instance-stopped", name);
		lxmd_boot_record_power(d, name, false);
	}

	if (kill_op)
		lxm_operation_finish(kill_op, NULL);
	if (!op || !name) {
		lxm_error_free(fail);
		return;
	}
	if (!restart || fail) {
		lxm_operation_finish(op, fail);
		return;
	}
	/* Restart: the same operation goes on with a start. */
	i = rt_add(d, name);
	if (!i) {
		lxm_error_set(&err, -ENOMEM, 500, "restart '%s': out of memory", name);
		lxm_operation_finish(op, err);
		return;
	}
	i->op = op;
	i->restart_timeout = timeout;
	if (do_start(d, i, &err) < 0) {
		rt_remove(i);
		lxm_operation_finish(op, err);
	}
}

struct start_ctx {
	struct lxmd *d; /* the daemon */
	char *name;	/* the instance */
};

static int send_stop(struct lxmd *d, struct rt_instance *i, int timeout, bool force,
		     struct lxm_error **err);

/* A start that failed after the container was cloned (one of its proxies): the container is
 * killed, and its monitor's exit ends the start's operation (i->op) with err. */
static void start_abort(struct rt_instance *i, struct lxm_error *err)
{
	struct lxm_error *e2 = NULL;

	log_warn("%s: stopping it", err->msg);
	lxm_error_free(i->fail);
	i->fail = err;
	i->restart = false;
	if (send_stop(i->d, i, 0, true, &e2) < 0) {
		log_error("instance '%s': kill after a failed start: %s", i->name, e2->msg);
		lxm_error_free(e2);
	}
}

static void monitor_ready(int status, const char *out, const char *errout, void *ud)
{
	struct start_ctx *ctx = ud;
	struct lxmd *d = ctx->d;
	struct rt_instance *i = rt_find(d, ctx->name);
	_cleanup_json_ json_t *line = NULL;
	struct lxm_operation *op = i ? TAKE_PTR(i->op) : NULL;
	struct lxm_error *err = NULL;
	const char *msg;

	line = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
	msg = json_string_value(json_object_get(line, "error"));
	if (!i) {
		/* Deleted or forgotten meanwhile: nothing to report to. */
	} else if (json_integer_value(json_object_get(line, "init_pid")) > 0) {
		i->starting = false;
		i->init_pid = (pid_t)json_integer_value(json_object_get(line, "init_pid"));
		i->monitor_pid = (pid_t)json_integer_value(json_object_get(line, "monitor_pid"));
		if (watch_monitor(i) < 0)
			log_warn("instance '%s': cannot watch monitor %d", ctx->name,
				 (int)i->monitor_pid);
		log_info("instance '%s' started: init pid %d, monitor pid %d", ctx->name,
			 (int)i->init_pid, (int)i->monitor_pid);
		lifecycle(d, "instance-started", ctx->name);
		lxmd_boot_record_power(d, ctx->name, true);
		/* The monitor created its nics before init ran: its proxy devices go in now. */
		if (lxmd_proxies_start(d, ctx->name, &err) < 0) {
			i->op = TAKE_PTR(op);
			start_abort(i, TAKE_PTR(err));
		}
	} else {
		if (msg)
			lxm_error_set(&err, -EIO, 500, "%s", msg);
		else
			lxm_error_set(&err, -EIO, 500,
				      "start '%s': lxm-monitor exited with status %d without "
				      "reporting: %s",
				      ctx->name, status, *errout ? errout : "(no output)");
		if (lxm_cgroup_destroy(d->rt->cgroups, ctx->name, NULL) < 0)
			log_warn("instance '%s': could not remove its cgroups", ctx->name);
		rt_remove(i);
	}
	if (op)
		lxm_operation_finish(op, err);
	else
		lxm_error_free(err);
	free(ctx->name);
	free(ctx);
}

/* The device nodes every container gets (anchors.md: deny by default, allow these). */
static const struct lxm_spec_device default_devices[] = {
	{ "/dev/null", 'c', 1, 3, 0666, 0, 0 },	   { "/dev/zero", 'c', 1, 5, 0666, 0, 0 },
	{ "/dev/full", 'c', 1, 7, 0666, 0, 0 },	   { "/dev/random", 'c', 1, 8, 0666, 0, 0 },
	{ "/dev/urandom", 'c', 1, 9, 0666, 0, 0 }, { "/dev/tty", 'c', 5, 0, 0666, 0, 0 },
};

static int build_spec(struct lxmd *d, const char *name, const struct lxm_policy *pol,
		      const struct lxm_cgroup_paths *cg, const char *rundir,
		      struct lxm_container_spec **ret, struct lxm_error **err)
{
	struct lxm_container_spec *s = calloc(1, sizeof(*s));
	_cleanup_free_ char *path = NULL;
	size_t nv1 = 0;

	if (!s)
		return -ENOMEM;
	*ret = s;
	if (lxmd_instance_path(d, name, &path) < 0 || asprintf(&s->rootfs, "%s/rootfs", path) < 0 ||
	    !(s->name = strdup(name)) || !(s->hostname = strdup(name)) ||
	    !(s->rundir = strdup(rundir)) ||
	    asprintf(&s->control_socket, "%s/monitor.sock", rundir) < 0 ||
	    asprintf(&s->console_log, "%s/logs/%s/console.log", d->cfg.root, name) < 0)
		return -ENOMEM;
	s->init = calloc(2, sizeof(char *));
	s->env = calloc(4, sizeof(char *));
	if (!s->init || !s->env || !(s->init[0] = strdup("/sbin/init")) ||
	    !(s->env[0] = strdup("container=lxc")) ||
	    !(s->env[1] = strdup(
		      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")) ||
	    !(s->env[2] = strdup("TERM=linux")))
		return -ENOMEM;
	s->privileged = pol->privileged;
	if (!s->privileged) {
		s->uidmap = calloc(1, sizeof(*s->uidmap));
		s->gidmap = calloc(1, sizeof(*s->gidmap));
		if (!s->uidmap || !s->gidmap)
			return -ENOMEM;
		*s->uidmap = (struct lxm_idmap){ 0, d->rt->uid_base, IDMAP_SIZE };
		*s->gidmap = (struct lxm_idmap){ 0, d->rt->gid_base, IDMAP_SIZE };
		s->n_uidmap = s->n_gidmap = 1;
	}
	if (cg->v2 && !(s->cgroup_v2 = strdup(cg->v2)))
		return -ENOMEM;
	if (cg->v2 && !(s->cgroup_ns_root = strdup(cg->v2)))
		return -ENOMEM;
	for (char **p = cg->v1; p && *p; p++)
		nv1++;
	if (nv1) {
		s->cgroup_v1 = calloc(nv1 + 1, sizeof(char *));
		if (!s->cgroup_v1)
			return -ENOMEM;
		for (size_t k = 0; k < nv1; k++)
			if (!(s->cgroup_v1[k] = strdup(cg->v1[k])))
				return -ENOMEM;
	}
	s->caps_drop = pol->caps_drop;
	s->allow_forced_umount = !pol->deny_forced_umount;
	s->nesting = pol->nesting;
	if (pol->syscalls_deny) {
		size_t n = 0;

		while (pol->syscalls_deny[n])
			n++;
		s->syscalls_deny = calloc(n + 1, sizeof(char *));
		if (!s->syscalls_deny)
			return -ENOMEM;
		for (size_t k = 0; k < n; k++)
			if (!(s->syscalls_deny[k] = strdup(pol->syscalls_deny[k])))
				return -ENOMEM;
	}
	if (pol->syscalls_allow) {
		size_t n = 0;

		while (pol->syscalls_allow[n])
			n++;
		s->syscalls_allow = calloc(n + 1, sizeof(char *));
		if (!s->syscalls_allow)
			return -ENOMEM;
		for (size_t k = 0; k < n; k++)
			if (!(s->syscalls_allow[k] = strdup(pol->syscalls_allow[k])))
				return -ENOMEM;
	}
	if (pol->apparmor_profile && !(s->apparmor_profile = strdup(pol->apparmor_profile)))
		return -ENOMEM;
	if (pol->selinux_label && !(s->selinux_label = strdup(pol->selinux_label)))
		return -ENOMEM;
	s->devices = calloc(ARRAY_SIZE(default_devices), sizeof(*s->devices));
	if (!s->devices)
		return -ENOMEM;
	for (size_t k = 0; k < ARRAY_SIZE(default_devices); k++) {
		s->devices[k] = default_devices[k];
		if (!(s->devices[k].path = strdup(default_devices[k].path)))
			return -ENOMEM;
		s->n_devices++;
	}
	s->time_offset_monotonic = pol->time_offset_monotonic;
	s->time_offset_boottime = pol->time_offset_boottime;
	s->run_size = RUN_SIZE;
	s->halt_signal = pol->halt_signal;
	s->console_log_max = CONSOLE_LOG_MAX;
	return 0;
}

/* cgroup v2 delegation: the container's root owns its cgroup dir and the files that manage
 * sub-cgroups, so that an init like systemd can organise its services (the kernel's delegation
 * model; the limits stay in files it does not own). */
static void delegate_cgroup(const char *dir, uid_t uid, gid_t gid)
{
	static const char *const files[] = { "", "/cgroup.procs", "/cgroup.threads",
					     "/cgroup.subtree_control" };

	for (size_t k = 0; k < ARRAY_SIZE(files); k++) {
		_cleanup_free_ char *p = NULL;

		if (asprintf(&p, "%s%s", dir, files[k]) >= 0 && chown(p, uid, gid) < 0 &&
		    errno != ENOENT)
			log_warn("delegate %s to the container's root: %s", p, strerror(errno));
	}
}

/* Starts the monitor for a prepared spec; monitor_ready() ends the start. */
static int spawn_monitor(struct lxmd *d, struct rt_instance *i, const char *mode,
			 const char *specpath, struct lxm_error **err)
{
	struct start_ctx *ctx = calloc(1, sizeof(*ctx));
	char *argv[4];
	int k;

	if (!ctx || !(ctx->name = strdup(i->name))) {
		free(ctx);
		return lxm_error_set(err, -ENOMEM, 500, "start '%s': out of memory", i->name);
	}
	ctx->d = d;
	argv[0] = d->rt->monitor;
	argv[1] = (char *)mode;
	argv[2] = (char *)specpath;
	argv[3] = NULL;
	i->starting = true;
	k = lxmd_child_run(d->loop, argv, monitor_ready, ctx);
	if (k < 0) {
		free(ctx->name);
		free(ctx);
		return lxm_error_set(err, k, 500, "start '%s': run %s: %s", i->name, d->rt->monitor,
				     uv_strerror(k));
	}
	return 0;
}

struct aa_ctx {
	struct lxmd *d; /* the daemon */
	char *name;	/* the instance */
	char *spec;	/* its spec, for the monitor once the profile is loaded */
};

/* A start that failed after its cgroups were made: report it and leave nothing. */
static void start_failed(struct lxmd *d, struct rt_instance *i, struct lxm_error *err)
{
	struct lxm_operation *op = TAKE_PTR(i->op);

	if (lxm_cgroup_destroy(d->rt->cgroups, i->name, NULL) < 0)
		log_warn("instance '%s': could not remove its cgroups", i->name);
	rt_remove(i);
	if (op)
		lxm_operation_finish(op, err);
	else
		lxm_error_free(err);
}

static void apparmor_loaded(int status, const char *out, const char *errout, void *ud)
{
	struct aa_ctx *ctx = ud;
	struct rt_instance *i = rt_find(ctx->d, ctx->name);
	struct lxm_error *err = NULL;

	if (i && status != 0) {
		lxm_error_set(&err, -EIO, 500,
			      "start '%s': load its AppArmor profile: apparmor_parser exited with "
			      "status %d: %s",
			      ctx->name, status, *errout ? errout : "(no output)");
		start_failed(ctx->d, i, err);
	} else if (i && spawn_monitor(ctx->d, i, "start", ctx->spec, &err) < 0) {
		start_failed(ctx->d, i, err);
	}
	free(ctx->name);
	free(ctx->spec);
	free(ctx);
}

/* Where apparmor_parser is installed: /sbin, else /usr/sbin. */
static const char *apparmor_parser(void)
{
	return access("/sbin/apparmor_parser", X_OK) == 0 ? "/sbin/apparmor_parser"
							  : "/usr/sbin/apparmor_parser";
}

/* The generated profile must be in the kernel before init execs under it (aa_change_onexec):
 * start_files_work() wrote it under <root>/security/apparmor, and apparmor_parser loads it, run
 * as a child so the loop does not wait for the compiler. */
static int load_apparmor(struct lxmd *d, struct rt_instance *i, char *file, char *cache,
			 const char *specpath, struct lxm_error **err)
{
	struct aa_ctx *ctx;
	const char *parser = apparmor_parser();
	char *argv[7];
	int k;

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx || !(ctx->name = strdup(i->name)) || !(ctx->spec = strdup(specpath))) {
		if (ctx)
			free(ctx->name);
		free(ctx);
		return lxm_error_set(err, -ENOMEM, 500, "start '%s': out of memory", i->name);
	}
	ctx->d = d;
	argv[0] = (char *)parser;
	argv[1] = (char *)"-r"; /* replace a loaded version (restart after a change) */
	argv[2] = (char *)"-W"; /* keep the compiled form for the next start */
	argv[3] = (char *)"-L";
	argv[4] = cache;
	argv[5] = file;
	argv[6] = NULL;
	i->starting = true;
	k = lxmd_child_run(d->loop, argv, apparmor_loaded, ctx);
	if (k < 0) {
		free(ctx->name);
		free(ctx->spec);
		free(ctx);
		return lxm_error_set(err, k, 500, "start '%s': run %s: %s", i->name, parser,
				     uv_strerror(k));
	}
	return 0;
}

/* What a start writes to disk before its monitor runs: on the thread pool, since the loop
 * thread never waits for the disk (spec.json is fsynced). */
struct start_files {
	uv_work_t work;			 /* libuv's */
	struct lxmd *d;			 /* the daemon */
	char *name;			 /* the instance */
	struct lxm_container_spec *spec; /* what the monitor will read */
	char *specpath;			 /* where */
	char *rundir;			 /* the instance's runtime directory */
	char *logdir;			 /* its log directory */
	char *aa_text;			 /* its AppArmor profile, or NULL for none */
	char *aa_file;			 /* where the profile goes (with aa_text) */
	char *aa_cache;			 /* apparmor_parser's cache directory (with aa_text) */
	char *instdir;			 /* the instance's directory: rootfs/, metadata.yaml */
	json_t *tpl_ctx;		 /* what the image's "start" templates see */
	struct lxm_pool *pool;		 /* the pool holding its volume, or NULL (none) */
	uint64_t root_size;		 /* the root disk's size= in bytes, 0 for no limit */
	struct lxm_error *err;		 /* the worker's result */
};

static void start_files_free(struct start_files *j)
{
	lxm_container_spec_free(j->spec);
	free(j->name);
	free(j->specpath);
	free(j->rundir);
	free(j->logdir);
	free(j->aa_text);
	free(j->aa_file);
	free(j->aa_cache);
	free(j->instdir);
	json_decref(j->tpl_ctx);
	lxm_error_free(j->err);
	free(j);
}

/* LXD renders an image's "start" templates at every start, so a file can follow the instance's
 * config. The image's metadata.yaml and templates/ were kept beside the rootfs at create; an
 * instance without them (created empty) has nothing to render. */
static int apply_start_templates(struct start_files *j)
{
	_cleanup_free_ char *meta_path = NULL, *tpl_dir = NULL, *rootfs = NULL, *text = NULL;
	struct lxm_image_metadata *meta = NULL;
	size_t len = 0;
	int k;

	if (asprintf(&meta_path, "%s/metadata.yaml", j->instdir) < 0 ||
	    asprintf(&tpl_dir, "%s/templates", j->instdir) < 0 ||
	    asprintf(&rootfs, "%s/rootfs", j->instdir) < 0)
		return lxm_error_set(&j->err, -ENOMEM, 500, "start '%s': out of memory", j->name);
	k = lxm_read_file(meta_path, &text, &len);
	if (k == -ENOENT)
		return 0;
	if (k < 0)
		return lxm_error_setx(&j->err, k, 500, "start '%s': read %s", j->name, meta_path);
	k = lxm_image_metadata_parse(text, len, &meta, &j->err);
	if (k >= 0)
		k = lxm_image_apply_templates(meta, tpl_dir, rootfs, "start", j->tpl_ctx, &j->err);
	lxm_image_metadata_free(meta);
	return k < 0 ? lxm_error_prefix(&j->err, "start '%s': the image's start templates", j->name)
		     : 0;
}

static void start_files_work(uv_work_t *w)
{
	struct start_files *j = w->data;
	int k;

	if ((k = lxm_mkdir_p(j->rundir, 0700)) < 0) {
		lxm_error_setx(&j->err, k, 500, "start '%s': create %s", j->name, j->rundir);
		return;
	}
	if ((k = lxm_mkdir_p(j->logdir, 0700)) < 0) {
		lxm_error_setx(&j->err, k, 500, "start '%s': create %s", j->name, j->logdir);
		return;
	}
	/* The root disk's size= (set, changed or unset since the last start) as the volume's
	 * quota; a driver without quotas refuses a size with the reason. */
	if (j->pool && lxm_volume_set_quota(j->pool, LXM_VOLUME_CONTAINER, j->name, j->root_size,
					    &j->err) < 0) {
		lxm_error_prefix(&j->err, "start '%s': root disk size", j->name);
		return;
	}
	if (apply_start_templates(j) < 0 ||
	    lxm_container_spec_save(j->spec, j->specpath, &j->err) < 0)
		return;
	if (j->aa_text &&
	    ((k = lxm_mkdir_p(j->aa_cache, 0700)) < 0 ||
	     (k = lxm_write_file_atomic(j->aa_file, j->aa_text, strlen(j->aa_text), 0600)) < 0))
		lxm_error_setx(&j->err, k, 500, "start '%s': write AppArmor profile %s", j->name,
			       j->aa_file);
}

static void start_files_done(uv_work_t *w, int status)
{
	struct start_files *j = w->data;
	struct rt_instance *i = rt_find(j->d, j->name);
	struct lxm_error *err = TAKE_PTR(j->err);
	int k;

	if (!i) {
		/* lxmd is going away: nothing waits for this start any more. */
		lxm_error_free(err);
		start_files_free(j);
		return;
	}
	if (!err && status < 0)
		lxm_error_set(&err, status, 500, "start '%s': write its files: %s", j->name,
			      uv_strerror(status));
	if (!err) {
		k = j->aa_text ? load_apparmor(j->d, i, j->aa_file, j->aa_cache, j->specpath, &err)
			       : spawn_monitor(j->d, i, "start", j->specpath, &err);
		(void)k;
	}
	if (err)
		start_failed(j->d, i, err);
	start_files_free(j);
}

/* The pool of the instance's volume (NULL for an instance from before storage pools) and the
 * size= of its root disk device (0 when it has none). */
static int root_volume(struct lxmd *d, const char *name, const json_t *devices,
		       struct lxm_pool **ret_pool, uint64_t *ret_size, struct lxm_error **err)
{
	const char *size;
	int64_t bytes = 0;
	int k;

	k = lxmd_instance_volume_pool(d, name, ret_pool, err);
	if (k < 0 || !*ret_pool)
		return k;
	size = json_string_value(json_object_get(lxmd_root_disk(devices, NULL), "size"));
	if (size && *size && (k = lxm_parse_size("size", size, 0, &bytes, err)) < 0)
		return lxm_error_prefix(err, "root disk device");
	*ret_size = bytes > 0 ? (uint64_t)bytes : 0;
	return 0;
}

/* The unix devices of a start: their nodes and mounts in the spec, their nodes in the device
 * cgroup's allow-list. */
static int start_unixdevs(struct lxmd *d, const char *name, const json_t *devices,
			  struct start_files *j, struct lxm_error **err)
{
	_cleanup_free_ struct lxm_cgroup_device *nodes = NULL;
	size_t n = 0;
	int k;

	k = lxmd_unixdevs_to_spec(name, devices, j->rundir, j->spec, &nodes, &n, err);
	if (k >= 0 && n > 0 &&
	    (k = lxm_cgroup_set_devices(d->rt->cgroups, name, nodes, n, err)) < 0)
		lxm_error_prefix(err, "start '%s'", name);
	return k;
}

struct lxm_cgroup_layout *lxmd_instance_cgroups(struct lxmd *d)
{
	return d->rt->cgroups;
}

static int container_start(struct lxmd *d, struct rt_instance *i, struct lxm_db_instance *inst,
			   json_t *config, json_t *devices, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *init = NULL;
	struct lxm_policy *pol = NULL;
	struct lxm_cgroup_paths cg = { 0 };
	struct start_files *j;
	struct stat st;
	int k;

	j = calloc(1, sizeof(*j));
	if (!j || (k = lxmd_instance_path(d, i->name, &path)) < 0 || !(j->name = strdup(i->name)) ||
	    asprintf(&j->logdir, "%s/logs/%s", d->cfg.root, i->name) < 0 ||
	    (k = rundir_of(d, i->name, &j->rundir)) < 0 ||
	    asprintf(&j->specpath, "%s/spec.json", j->rundir) < 0) {
		if (j)
			start_files_free(j);
		return lxm_error_set(err, -ENOMEM, 500, "start '%s': out of memory", i->name);
	}
	j->d = d;
	j->work.data = j;
	j->instdir = TAKE_PTR(path);
	j->tpl_ctx = lxmd_instance_template_ctx(inst, config, devices);
	if (!j->instdir || !j->tpl_ctx || asprintf(&init, "%s/rootfs/sbin/init", j->instdir) < 0) {
		start_files_free(j);
		return lxm_error_set(err, -ENOMEM, 500, "start '%s': out of memory", i->name);
	}
	/* fstatat without following: a dangling or relative symlink is fine inside the rootfs. */
	if (fstatat(AT_FDCWD, init, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		start_files_free(j);
		return lxm_error_set(err, -ENOENT, 400,
				     "start '%s': its root file system has no /sbin/init (an empty "
				     "instance cannot start: create it from an image)",
				     i->name);
	}
	k = root_volume(d, i->name, devices, &j->pool, &j->root_size, err);
	if (k >= 0)
		k = lxm_policy_compile(i->name, config, &d->rt->host, &pol, err);
	if (k < 0) {
		start_files_free(j);
		return lxm_error_prefix(err, "start '%s'", i->name);
	}
	k = lxm_cgroup_create(d->rt->cgroups, i->name, &pol->limits, &cg, err);
	if (k < 0) {
		lxm_policy_free(pol);
		start_files_free(j);
		return lxm_error_prefix(err, "start '%s'", i->name);
	}
	k = build_spec(d, i->name, pol, &cg, j->rundir, &j->spec, err);
	/* The id map (idmap.h) is recorded in inst's volatile keys, saved below. */
	if (k >= 0)
		k = lxmd_idmap_for_start(d, &d->rt->subids, inst, config, pol, j->spec, err);
	if (k >= 0 && !pol->privileged && cg.v2)
		delegate_cgroup(cg.v2, j->spec->uidmap[0].nsid == 0 ? j->spec->uidmap[0].hostid : 0,
				j->spec->gidmap[0].nsid == 0 ? j->spec->gidmap[0].hostid : 0);
	if (k >= 0)
		k = lxmd_disks_to_spec(d, i->name, devices, j->spec, err);
	if (k >= 0)
		k = lxmd_nics_to_spec(d, inst, devices, j->spec, err);
	if (k >= 0)
		k = start_unixdevs(d, i->name, devices, j, err);
	if (k >= 0 && pol->apparmor_text &&
	    (!(j->aa_text = strdup(pol->apparmor_text)) ||
	     asprintf(&j->aa_cache, "%s/security/apparmor/cache", d->cfg.root) < 0 ||
	     asprintf(&j->aa_file, "%s/security/apparmor/%s", d->cfg.root, pol->apparmor_profile) <
		     0))
		k = lxm_error_set(err, -ENOMEM, 500, "start '%s': out of memory", i->name);
	lxm_policy_free(pol);
	lxm_cgroup_paths_free(&cg);
	if (k >= 0) {
		k = uv_queue_work(d->loop, &j->work, start_files_work, start_files_done);
		if (k < 0)
			lxm_error_set(err, k, 500, "start '%s': queue its files: %s", i->name,
				      uv_strerror(k));
	}
	if (k < 0) {
		lxmd_unixdevs_clear(j->rundir);
		start_files_free(j);
		lxm_cgroup_destroy(d->rt->cgroups, i->name, NULL);
		return k;
	}
	/* From here the start is under way: start_files_done() carries it on. */
	i->starting = true;
	inst->last_used_at = lxm_now_ns();
	if (lxm_db_instance_update(d->db, i->name, inst, NULL) < 0)
		log_warn("instance '%s': could not record last_used_at and its id map", i->name);
	return 0;
}

static const struct lxmd_instance_driver *driver_of(const char *type)
{
	return type && streq(type, vm_driver.type) ? &vm_driver : &container_driver;
}

static int do_start(struct lxmd *d, struct rt_instance *i, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	int k;

	k = lxm_db_instance_get(d->db, i->name, &inst, err);
	if (k < 0)
		return k;
	k = lxmd_instance_expand(d, inst, &config, &devices, err);
	if (k < 0)
		return lxm_error_prefix(err, "start '%s'", i->name);
	i->drv = driver_of(inst->type);
	return i->drv->start(d, i, inst, config, devices, err);
}

/* ---- state changes ---- */

static int monitor_socket(struct lxmd *d, const char *name, char **ret)
{
	return asprintf(ret, "%s/%s/monitor.sock", d->cfg.rundir, name) < 0 ? -ENOMEM : 0;
}

/* The monitor's answer to a stop or kill. Success changes nothing: the monitor's exit ends the
 * operation. A failure ends it here, unless the container went away meanwhile. */
static void answered(struct rt_instance *i, bool overtaking, struct lxm_error *err)
{
	struct lxm_operation *op;

	i->requests--;
	if (i->released) {
		/* The monitor exited (and its exit finished the operation) or lxmd is stopping. */
		lxm_error_free(err);
		rt_closed((uv_handle_t *)&i->poll);
		return;
	}
	if (!err)
		return;
	/* A failed kill that overtook a stop ends only its own operation: the stop goes on. */
	op = overtaking ? TAKE_PTR(i->kill_op) : TAKE_PTR(i->op);
	if (!overtaking)
		i->restart = false;
	lxm_error_prefix(&err, "%s '%s': ask its monitor",
			 !overtaking && i->restart_asked ? "restart" : "stop", i->name);
	if (op)
		lxm_operation_finish(op, err);
	else
		lxm_error_free(err);
}

static void stop_answered(json_t *reply, struct lxm_error *err, void *ud)
{
	(void)reply;
	answered(ud, false, err);
}

/* The answer to a kill sent while a stop was pending (i->kill_op). */
static void kill_answered(json_t *reply, struct lxm_error *err, void *ud)
{
	(void)reply;
	answered(ud, true, err);
}

/* Asks the monitor to stop (or kill) the container, without waiting on the loop thread; the
 * caller has set i->op, which stop_answered() or the monitor's exit finishes. */
static int send_stop(struct lxmd *d, struct rt_instance *i, int timeout, bool force,
		     struct lxm_error **err)
{
	_cleanup_free_ char *sock = NULL;
	_cleanup_json_ json_t *req = NULL;
	int k;

	if (monitor_socket(d, i->name, &sock) < 0)
		return -ENOMEM;
	/* The halt signal (image.init, boot.stop.signal) was compiled into the spec at start: the
	 * monitor uses it when the request names none. */
	if (force)
		req = json_pack("{s:s}", "op", "kill");
	else
		req = json_pack("{s:s, s:i}", "op", "stop", "timeout", timeout);
	if (!req)
		return -ENOMEM;
	k = lxm_monitor_request_async(d->loop, sock, req, MONITOR_TIMEOUT_MS,
				      force && i->kill_op ? kill_answered : stop_answered, i, err);
	if (k < 0)
		return lxm_error_prefix(err, "stop '%s': ask its monitor", i->name);
	i->requests++;
	return 0;
}

/* The freezer waits for the kernel to stop every task: not on the loop thread. */
struct freeze_job {
	uv_work_t work;	       /* libuv's */
	struct rt_instance *i; /* the instance (kept alive: its op is pending) */
	bool freeze;	       /* freeze or thaw */
	struct lxm_error *err; /* the worker's result */
};

static void freeze_work(uv_work_t *w)
{
	struct freeze_job *j = w->data;

	if (lxm_cgroup_freeze(j->i->d->rt->cgroups, j->i->name, j->freeze, &j->err) < 0)
		lxm_error_prefix(&j->err, "%s '%s'", j->freeze ? "freeze" : "unfreeze", j->i->name);
}

static void freeze_done(uv_work_t *w, int status);

/* Containers: the cgroup freezer, which waits for the kernel off the loop thread. */
static int container_freeze(struct lxmd *d, struct rt_instance *i, bool freeze,
			    struct lxm_error **err)
{
	struct freeze_job *j = calloc(1, sizeof(*j));
	int k;

	if (!j)
		return -ENOMEM;
	j->i = i;
	j->freeze = freeze;
	j->work.data = j;
	i->jobs++;
	k = uv_queue_work(d->loop, &j->work, freeze_work, freeze_done);
	if (k < 0) {
		i->jobs--;
		free(j);
		return lxm_error_set(err, k, 500, "%s '%s': %s", freeze ? "freeze" : "unfreeze",
				     i->name, uv_strerror(k));
	}
	return 0;
}

static void freeze_done(uv_work_t *w, int status)
{
	struct freeze_job *j = w->data;
	struct rt_instance *i = j->i;
	struct lxm_operation *op = TAKE_PTR(i->op);

	i->jobs--;
	if (i->released) {
		/* The container went away meanwhile (its monitor exited). */
		if (!j->err)
			lxm_error_set(&j->err, -ESRCH, 400,
				      "%s '%s': the instance stopped meanwhile",
				      j->freeze ? "freeze" : "unfreeze", i->name);
		lxm_operation_finish(op, TAKE_PTR(j->err));
		free(j);
		rt_closed((uv_handle_t *)&i->poll);
		return;
	}
	if (!j->err) {
		i->frozen = j->freeze;
		lifecycle(i->d, j->freeze ? "instance-paused" : "instance-resumed", i->name);
	}
	lxm_operation_finish(op, TAKE_PTR(j->err));
	free(j);
}

int lxmd_instance_change_state(struct lxmd *d, const char *name, const char *action, int timeout,
			       bool force, struct lxm_operation *op, struct lxm_error **err)
{
	struct rt_instance *i = rt_find(d, name);
	int k;

	if (streq(action, "start")) {
		if (i)
			return lxm_error_set(err, -EALREADY, 400, "start '%s': it is already %s",
					     name, i->starting ? "starting" : "running");
		i = rt_add(d, name);
		if (!i)
			return -ENOMEM;
		i->op = op;
		k = do_start(d, i, err);
		if (k < 0)
			rt_remove(i);
		return k;
	}
	if (!i || i->starting)
		return lxm_error_set(err, -EINVAL, 400, "%s '%s': it is not running", action, name);
	if (i->op && force && streq(action, "stop") && !i->jobs && !i->kill_op) {
		/* A clean stop or a restart is waiting for an init that may never halt: a forced
		 * stop kills it now, and a restart does not start it again. */
		i->kill_op = op;
		i->restart = false;
		k = send_stop(d, i, 0, true, err);
		if (k < 0)
			i->kill_op = NULL;
		return k;
	}
	if (i->op)
		return lxm_error_set(err, -EBUSY, 409, "%s '%s': another state change is under way",
				     action, name);
	if (streq(action, "stop") || streq(action, "restart")) {
		if (i->frozen)
			lxm_cgroup_freeze(d->rt->cgroups, name, false, NULL);
		i->frozen = false;
		i->op = op;
		i->restart = i->restart_asked = streq(action, "restart");
		i->restart_timeout = timeout;
		k = send_stop(d, i, timeout, force, err);
		if (k < 0) {
			i->op = NULL;
			i->restart = false;
		}
		return k;
	}
	if (streq(action, "freeze") || streq(action, "unfreeze")) {
		i->op = op;
		k = i->drv->freeze(d, i, streq(action, "freeze"), err);
		if (k < 0)
			i->op = NULL;
		return k;
	}
	return lxm_error_set(err, -EINVAL, 400,
			     "unknown action '%s' (start, stop, restart, freeze, unfreeze)",
			     action);
}

int lxmd_instance_freeze_for_copy(struct lxmd *d, const char *name, bool vm, bool freeze,
				  struct lxm_error **err)
{
	_cleanup_free_ char *sock = NULL;
	_cleanup_json_ json_t *req = NULL, *reply = NULL;
	int k;

	/* The layout does not change after lxmd_runtime_init(): safe from the thread pool. */
	if (!vm)
		return lxm_cgroup_freeze(d->rt->cgroups, name, freeze, err);
	/* d->cfg does not change either; nothing of the loop's is touched. */
	req = json_pack("{s:s}", "op", freeze ? "freeze" : "unfreeze");
	if (!req || monitor_socket(d, name, &sock) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	k = lxm_monitor_request(sock, req, MONITOR_TIMEOUT_MS, &reply, err);
	if (k == -ECONNREFUSED)
		k = -ENOENT;
	return k < 0 ? lxm_error_prefix(err, "%s virtual machine '%s'", freeze ? "pause" : "resume",
					name)
		     : 0;
}

const char *lxmd_instance_status(struct lxmd *d, const char *name, int *ret_code)
{
	struct rt_instance *i = rt_find(d, name);

	if (i && i->frozen) {
		*ret_code = LXM_STATUS_FROZEN;
		return "Frozen";
	}
	if (i && !i->starting) {
		*ret_code = LXM_STATUS_RUNNING;
		return "Running";
	}
	*ret_code = LXM_STATUS_STOPPED;
	return "Stopped";
}

int lxmd_instance_running(struct lxmd *d, const char *name, pid_t *ret_init_pid,
			  char **ret_spec_path, struct lxm_error **err)
{
	struct rt_instance *i = rt_find(d, name);
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	int k;

	if (!i || i->starting) {
		k = lxm_db_instance_get(d->db, name, &inst, err);
		if (k < 0)
			return k;
		return lxm_error_set(err, -EINVAL, 400, "instance '%s' is not running", name);
	}
	if (ret_spec_path && asprintf(ret_spec_path, "%s/%s/spec.json", d->cfg.rundir, name) < 0)
		return -ENOMEM;
	if (ret_init_pid)
		*ret_init_pid = i->init_pid;
	return 0;
}

/* ---- network state ---- */

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_sock *, nl_socket_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_cache *, nl_cache_free)

/* libnl's negative NLE_ codes as -errno, for the callers' messages. */
static int nl_errno(int nle)
{
	switch (-nle) {
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOACCESS:
		return -EACCES;
	default:
		return -EIO;
	}
}

/* LXD's names for an address scope. */
static const char *addr_scope(int scope)
{
	switch (scope) {
	case RT_SCOPE_UNIVERSE:
		return "global";
	case RT_SCOPE_LINK:
		return "link";
	case RT_SCOPE_HOST:
		return "local";
	default:
		return "global";
	}
}

/* The addresses of interface ifindex, as LXD lists them. */
static json_t *link_addresses(struct nl_cache *addrs, int ifindex)
{
	json_t *list = json_array();

	for (struct nl_object *o = nl_cache_get_first(addrs); o && list; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct nl_addr *local = rtnl_addr_get_local(a);
		int family = rtnl_addr_get_family(a);
		char text[INET6_ADDRSTRLEN], mask[8];

		if (rtnl_addr_get_ifindex(a) != ifindex || !local ||
		    (family != AF_INET && family != AF_INET6) ||
		    !inet_ntop(family, nl_addr_get_binary_addr(local), text, sizeof(text)))
			continue;
		snprintf(mask, sizeof(mask), "%d", rtnl_addr_get_prefixlen(a));
		json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s}", "family",
						      family == AF_INET ? "inet" : "inet6",
						      "address", text, "netmask", mask, "scope",
						      addr_scope(rtnl_addr_get_scope(a))));
	}
	return list;
}

/* The MAC address as LXD shows it: "" when the link has none (all zeroes, as lo). */
static void link_hwaddr(struct rtnl_link *l, char *buf, size_t size)
{
	struct nl_addr *a = rtnl_link_get_addr(l);
	const unsigned char *b = a ? nl_addr_get_binary_addr(a) : NULL;
	unsigned len = a ? nl_addr_get_len(a) : 0;
	bool zero = true;

	*buf = '\0';
	for (unsigned k = 0; k < len; k++)
		zero &= b[k] == 0;
	if (!zero)
		nl_addr2str(a, buf, size);
}

static const char *link_type(unsigned flags)
{
	if (flags & IFF_LOOPBACK)
		return "loopback";
	if (flags & IFF_POINTOPOINT)
		return "point-to-point";
	return "broadcast";
}

static json_t *link_state(struct rtnl_link *l, struct nl_cache *addrs)
{
	unsigned flags = rtnl_link_get_flags(l);
	char hw[64];

	link_hwaddr(l, hw, sizeof(hw));
	return json_pack(
		"{s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:s, s:s, s:i, s:s, s:s}",
		"addresses", link_addresses(addrs, rtnl_link_get_ifindex(l)), "counters",
		"bytes_received", (json_int_t)rtnl_link_get_stat(l, RTNL_LINK_RX_BYTES),
		"bytes_sent", (json_int_t)rtnl_link_get_stat(l, RTNL_LINK_TX_BYTES),
		"packets_received", (json_int_t)rtnl_link_get_stat(l, RTNL_LINK_RX_PACKETS),
		"packets_sent", (json_int_t)rtnl_link_get_stat(l, RTNL_LINK_TX_PACKETS),
		"errors_received", (json_int_t)rtnl_link_get_stat(l, RTNL_LINK_RX_ERRORS),
		"errors_sent", (json_int_t)rtnl_link_get_stat(l, RTNL_LINK_TX_ERRORS),
		"packets_dropped_outbound", (json_int_t)rtnl_link_get_stat(l, RTNL_LINK_TX_DROPPED),
		"packets_dropped_inbound", (json_int_t)rtnl_link_get_stat(l, RTNL_LINK_RX_DROPPED),
		"hwaddr", hw, "host_name", "", "mtu", (int)rtnl_link_get_mtu(l), "state",
		(flags & IFF_UP) ? "up" : "down", "type", link_type(flags));
}

/* Every interface of the container's network namespace with its addresses and counters, read
 * over route netlink from inside that namespace. */
static int network_state(pid_t pid, json_t **ret)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(nl_cache_freep) struct nl_cache *links = NULL, *addrs = NULL;
	_cleanup_json_ json_t *net = json_object();
	int k;

	if (!net)
		return -ENOMEM;
	k = network_route_socket(pid, &sk);
	if (k < 0)
		return k;
	if ((k = rtnl_link_alloc_cache(sk, AF_UNSPEC, &links)) < 0 ||
	    (k = rtnl_addr_alloc_cache(sk, &addrs)) < 0)
		return nl_errno(k);
	for (struct nl_object *o = nl_cache_get_first(links); o; o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;
		const char *name = rtnl_link_get_name(l);
		json_t *one;

		if (!name)
			continue;
		one = link_state(l, addrs);
		if (!one || json_object_set_new(net, name, one) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(net);
	return 0;
}

int lxmd_instance_state(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err)
{
	struct rt_instance *i = rt_find(d, name);
	struct lxm_cgroup_stats st = { -1, -1, -1, -1, -1 };
	const char *status;
	int code;

	status = lxmd_instance_status(d, name, &code);
	if (code != LXM_STATUS_STOPPED && lxm_cgroup_stats(d->rt->cgroups, name, &st, NULL) < 0)
		log_debug("instance '%s': no cgroup statistics", name);
	*ret = json_pack("{s:s, s:i, s:{}, s:{s:I}, s:{s:I, s:I, s:I, s:I}, s:o, s:i, s:I}",
			 "status", status, "status_code", code, "disk", "cpu", "usage",
			 (json_int_t)(st.cpu_usage_ns > 0 ? st.cpu_usage_ns : 0), "memory", "usage",
			 (json_int_t)(st.memory_usage > 0 ? st.memory_usage : 0), "usage_peak",
			 (json_int_t)(st.memory_peak > 0 ? st.memory_peak : 0), "swap_usage",
			 (json_int_t)(st.swap_usage > 0 ? st.swap_usage : 0), "swap_usage_peak",
			 (json_int_t)0, "network", json_null(), "pid", 0, "processes",
			 (json_int_t)(st.processes > 0 ? st.processes : 0));
	if (!*ret)
		return lxm_error_set(err, -ENOMEM, 500, "state of '%s': out of memory", name);
	if (i && code != LXM_STATUS_STOPPED)
		i->drv->state(d, i, *ret);
	return 0;
}

static void container_state(struct lxmd *d, struct rt_instance *i, json_t *st)
{
	json_t *net = NULL;
	int k;

	(void)d;
	k = network_state(i->init_pid, &net);
	if (k < 0) {
		/* The container may be stopping: its state is still worth answering. */
		log_debug("instance '%s': network state of init pid %d: %s", i->name,
			  (int)i->init_pid, strerror(-k));
		net = json_object();
	}
	json_object_set_new(st, "network", net ? net : json_null());
	json_object_set_new(st, "pid", json_integer(i->init_pid));
}

static const struct lxmd_instance_driver container_driver = {
	.type = "container",
	.start = container_start,
	.freeze = container_freeze,
	.state = container_state,
	.live_limits = true,
};

/* ---- virtual machines ---- */

/* The kernel command line the image asks for (metadata.yaml's lxm.cmdline), or NULL. */
static int vm_image_cmdline(const char *instdir, char **ret, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *text = NULL, *msg = NULL;
	_cleanup_json_ json_t *meta = NULL;
	const char *cmdline;
	size_t len = 0;
	int k;

	*ret = NULL;
	if (asprintf(&path, "%s/metadata.yaml", instdir) < 0)
		return -ENOMEM;
	k = lxm_read_file(path, &text, &len);
	if (k == -ENOENT)
		return 0;
	if (k < 0)
		return lxm_error_setx(err, k, 500, "read %s", path);
	k = lxm_yaml_to_json(text, len, &meta, &msg);
	if (k < 0)
		return lxm_error_set(err, k, 500, "%s: %s", path, msg ? msg : "invalid YAML");
	cmdline = json_string_value(json_object_get(json_object_get(meta, "lxm"), "cmdline"));
	if (cmdline && !(*ret = strdup(cmdline)))
		return -ENOMEM;
	return 0;
}

/* The VM's UUID (the guest's SMBIOS UUID, stable across starts as in LXD): volatile.uuid, made
 * at the first start and recorded in inst (which the start saves). */
static int vm_uuid(struct lxm_db_instance *inst, char buf[static 37])
{
	const char *have = json_string_value(json_object_get(inst->config, "volatile.uuid"));
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int k;

	if (have && strlen(have) == 36) {
		memcpy(buf, have, 37);
		return 0;
	}
	k = lxm_read_file("/proc/sys/kernel/random/uuid", &text, &len);
	if (k < 0)
		return k;
	if (len < 36)
		return -EIO;
	memcpy(buf, text, 36);
	buf[36] = '\0';
	if (!inst->config && !(inst->config = json_object()))
		return -ENOMEM;
	return json_object_set_new(inst->config, "volatile.uuid", json_string(buf)) < 0 ? -ENOMEM
											: 0;
}

/* The nics of a VM: the same devices, names and volatile keys as a container's (nic.c), each a
 * tap where a container has a veth. */
static int vm_nics(struct lxmd *d, struct lxm_db_instance *inst, json_t *devices, json_t **ret,
		   struct lxm_error **err)
{
	struct lxm_container_spec *tmp = calloc(1, sizeof(*tmp));
	_cleanup_json_ json_t *nics = json_array();
	int k;

	if (!tmp || !nics || !(tmp->name = strdup(inst->name))) {
		lxm_container_spec_free(tmp);
		return -ENOMEM;
	}
	k = lxmd_nics_to_spec(d, inst, devices, tmp, err);
	for (size_t n = 0; k >= 0 && n < tmp->n_nics; n++) {
		const struct lxm_spec_nic *s = &tmp->nics[n];

		if (json_array_append_new(nics,
					  json_pack("{s:s,s:s?,s:s,s:s,s:i}", "device", s->device,
						    "bridge", s->bridge, "host_name", s->host_name,
						    "mac", s->hwaddr, "mtu", (int)s->mtu)) < 0)
			k = -ENOMEM;
	}
	lxm_container_spec_free(tmp);
	if (k < 0)
		return k;
	*ret = TAKE_PTR(nics);
	return 0;
}

/* The VM's cgroup limits: the policy's CPU allowance, priority and process limit; memory is the
 * guest's RAM plus what QEMU needs itself (LXM_VM_QEMU_OVERHEAD_MIB); limits.cpu is the vCPU
 * count (vm-config.c), pinning only when it is a list of CPUs. */
static int vm_cgroup(struct lxmd *d, const char *name, const json_t *config, uint64_t memory_mib,
		     struct lxm_cgroup_paths *cg, struct lxm_error **err)
{
	struct lxm_policy *pol = NULL;
	const char *cpu = json_string_value(json_object_get(config, "limits.cpu"));
	int k;

	k = lxm_policy_compile(name, config, &d->rt->host, &pol, err);
	if (k < 0)
		return k;
	pol->limits.memory = (int64_t)((memory_mib + LXM_VM_QEMU_OVERHEAD_MIB) * 1024 * 1024);
	pol->limits.memory_soft = false;
	if (!cpu || !strpbrk(cpu, ",-")) {
		free(pol->limits.cpuset);
		pol->limits.cpuset = NULL;
	}
	k = lxm_cgroup_create(d->rt->cgroups, name, &pol->limits, cg, err);
	lxm_policy_free(pol);
	return k;
}

static int vm_spec(struct lxmd *d, struct rt_instance *i, struct lxm_db_instance *inst,
		   json_t *config, json_t *devices, const char *rundir, json_t **ret,
		   struct lxm_error **err)
{
	_cleanup_free_ char *instdir = NULL, *kernel = NULL, *initrd = NULL, *raw = NULL,
			    *qcow2 = NULL, *cmdline = NULL;
	_cleanup_json_ json_t *nics = NULL, *s = NULL;
	struct lxm_qemu_vm q = { 0 };
	struct lxm_vm_host host = { .memory_bytes = d->rt->host.memory_bytes,
				    .ncpus = d->rt->host.ncpus,
				    .accel = lxmd_vm_accel(d, NULL) };
	const char *root, *format;
	char uuid[37];
	int k;

	if (lxmd_instance_path(d, i->name, &instdir) < 0 ||
	    asprintf(&kernel, "%s/boot/vmlinuz", instdir) < 0 ||
	    asprintf(&initrd, "%s/boot/initrd.img", instdir) < 0 ||
	    asprintf(&raw, "%s/rootfs.img", instdir) < 0 ||
	    asprintf(&qcow2, "%s/root.qcow2", instdir) < 0)
		return -ENOMEM;
	if (access(kernel, R_OK) < 0)
		return lxm_error_setx(err, -errno, 400,
				      "its kernel %s (the VM image's boot/vmlinuz) cannot be read",
				      kernel);
	if (access(qcow2, F_OK) == 0) {
		root = qcow2;
		format = "qcow2";
	} else if (access(raw, F_OK) == 0) {
		root = raw;
		format = "raw";
	} else {
		return lxm_error_set(err, -ENOENT, 400, "it has no root disk (%s or %s)", raw,
				     qcow2);
	}
	k = lxm_vm_config(i->name, config, devices, &host, &q, NULL, err);
	if (k < 0)
		return k;
	if ((k = vm_image_cmdline(instdir, &cmdline, err)) < 0 ||
	    (k = vm_nics(d, inst, devices, &nics, err)) < 0)
		return k;
	if ((k = vm_uuid(inst, uuid)) < 0)
		return lxm_error_setx(err, k, 500, "make its UUID");
	s = json_pack("{s:s,s:s,s:s,s:s+,s:s+,s:s+,s:s+++,s:I,s:i,s:I,s:s,s:s,s:s?,s:s?,"
		      "s:{s:s,s:s},s:O,s:i}",
		      "name", i->name, "uuid", uuid, "rundir", rundir, "control_socket", rundir,
		      "/monitor.sock", "qmp_socket", rundir, "/qmp.sock", "agent_socket", rundir,
		      "/agent.sock", "console_log", d->cfg.root, "/logs/", i->name, "/console.log",
		      "console_log_max", (json_int_t)CONSOLE_LOG_MAX, "vcpus", (int)q.vcpus,
		      "memory_mib", (json_int_t)q.memory_mib, "accel",
		      lxm_qemu_accel_to_string(q.accel), "kernel", kernel, "initrd",
		      access(initrd, R_OK) == 0 ? initrd : NULL, "cmdline", cmdline, "root", "path",
		      root, "format", format, "nics", nics, "stop_timeout", -1);
	if (!s)
		return -ENOMEM;
	*ret = TAKE_PTR(s);
	return 0;
}

/* The device nodes QEMU needs: /dev/net/tun, /dev/kvm, /dev/vhost-net. */
static const struct lxm_cgroup_device vm_devices[] = {
	{ 'c', 10, 200 },
	{ 'c', 10, 232 },
	{ 'c', 10, 238 },
};

static int vm_start(struct lxmd *d, struct rt_instance *i, struct lxm_db_instance *inst,
		    json_t *config, json_t *devices, struct lxm_error **err)
{
	_cleanup_free_ char *rundir = NULL, *logdir = NULL, *specpath = NULL, *text = NULL;
	_cleanup_json_ json_t *spec = NULL;
	struct lxm_cgroup_paths cg = { 0 };
	int k;

	if (rundir_of(d, i->name, &rundir) < 0 ||
	    asprintf(&logdir, "%s/logs/%s", d->cfg.root, i->name) < 0 ||
	    asprintf(&specpath, "%s/spec.json", rundir) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "start '%s': out of memory", i->name);
	/* Two small directories and a file: not worth the thread pool. */
	if ((k = lxm_mkdir_p(rundir, 0700)) < 0)
		return lxm_error_setx(err, k, 500, "start '%s': create %s", i->name, rundir);
	if ((k = lxm_mkdir_p(logdir, 0700)) < 0)
		return lxm_error_setx(err, k, 500, "start '%s': create %s", i->name, logdir);
	k = vm_spec(d, i, inst, config, devices, rundir, &spec, err);
	if (k < 0)
		goto fail;
	k = vm_cgroup(d, i->name, config,
		      (uint64_t)json_integer_value(json_object_get(spec, "memory_mib")), &cg, err);
	if (k < 0)
		goto fail;
	/* QEMU opens the taps by name through /dev/net/tun, and /dev/kvm and /dev/vhost-net
	 * when it uses them: beyond the default allow-list. */
	k = lxm_cgroup_set_devices(d->rt->cgroups, i->name, vm_devices, ARRAY_SIZE(vm_devices),
				   err);
	if (k < 0)
		goto fail;
	if (cg.v2)
		json_object_set_new(spec, "cgroup_v2", json_string(cg.v2));
	if (cg.v1) {
		json_t *v1 = json_array();

		for (char **p = cg.v1; v1 && *p; p++)
			json_array_append_new(v1, json_string(*p));
		json_object_set_new(spec, "cgroup_v1", v1);
	}
	lxm_cgroup_paths_free(&cg);
	text = json_dumps(spec, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!text) {
		k = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		goto fail;
	}
	k = lxm_write_file_atomic(specpath, text, strlen(text), 0600);
	if (k < 0) {
		lxm_error_setx(err, k, 500, "save VM spec %s", specpath);
		goto fail;
	}
	k = spawn_monitor(d, i, "vm", specpath, err);
	if (k < 0)
		goto fail;
	inst->last_used_at = lxm_now_ns();
	if (lxm_db_instance_update(d->db, i->name, inst, NULL) < 0)
		log_warn("instance '%s': could not record last_used_at and volatile.uuid", i->name);
	return 0;
fail:
	lxm_cgroup_paths_free(&cg);
	lxm_cgroup_destroy(d->rt->cgroups, i->name, NULL);
	return lxm_error_prefix(err, "start '%s'", i->name);
}

/* VMs: the monitor pauses the vCPUs (QMP stop / cont). */
static void vm_freeze_answered(json_t *reply, struct lxm_error *err, void *ud)
{
	struct rt_instance *i = ud;
	struct lxm_operation *op;

	(void)reply;
	i->requests--;
	if (i->released) {
		/* The monitor exited (and its exit finished the operation) or lxmd is stopping. */
		lxm_error_free(err);
		rt_closed((uv_handle_t *)&i->poll);
		return;
	}
	op = TAKE_PTR(i->op);
	if (err) {
		lxm_error_prefix(&err, "%s '%s'", i->freezing ? "freeze" : "unfreeze", i->name);
	} else {
		i->frozen = i->freezing;
		lifecycle(i->d, i->frozen ? "instance-paused" : "instance-resumed", i->name);
	}
	if (op)
		lxm_operation_finish(op, err);
	else
		lxm_error_free(err);
}

static int vm_freeze(struct lxmd *d, struct rt_instance *i, bool freeze, struct lxm_error **err)
{
	_cleanup_free_ char *sock = NULL;
	_cleanup_json_ json_t *req = json_pack("{s:s}", "op", freeze ? "freeze" : "unfreeze");
	int k;

	if (!req || monitor_socket(d, i->name, &sock) < 0)
		return -ENOMEM;
	i->freezing = freeze;
	k = lxm_monitor_request_async(d->loop, sock, req, MONITOR_TIMEOUT_MS, vm_freeze_answered, i,
				      err);
	if (k < 0)
		return lxm_error_prefix(err, "%s '%s': ask its monitor",
					freeze ? "freeze" : "unfreeze", i->name);
	i->requests++;
	return 0;
}

/* One counter of a tap, from sysfs; -1 when unknown. */
static json_int_t tap_counter(const char *tap, const char *name)
{
	_cleanup_free_ char *path = NULL, *text = NULL;

	if (asprintf(&path, "/sys/class/net/%s/statistics/%s", tap, name) < 0 ||
	    lxm_read_file(path, &text, NULL) < 0)
		return -1;
	return strtoll(text, NULL, 10);
}

/* The VM's nics as the host sees their taps: the guest's MAC, the tap's MTU and state, and its
 * counters turned round (what the tap sends goes to the guest). The guest's addresses are those
 * its managed network leased to its MAC (as LXD shows them without its agent). */
static json_t *vm_network(struct lxmd *d, const json_t *spec)
{
	json_t *net = json_object(), *n;
	size_t idx;

	json_array_foreach (json_object_get(spec, "nics"), idx, n) {
		const char *tap = json_string_value(json_object_get(n, "host_name"));
		const char *mac = json_string_value(json_object_get(n, "mac"));
		_cleanup_free_ char *path = NULL, *mtu = NULL, *oper = NULL;

		if (!tap || !net || asprintf(&path, "/sys/class/net/%s/mtu", tap) < 0)
			continue;
		(void)lxm_read_file(path, &mtu, NULL);
		free(path);
		path = NULL;
		if (asprintf(&path, "/sys/class/net/%s/operstate", tap) >= 0)
			(void)lxm_read_file(path, &oper, NULL);
		json_object_set_new(
			net, json_string_value(json_object_get(n, "device")),
			json_pack("{s:o,s:{s:I,s:I,s:I,s:I},s:s,s:s?,s:i,s:s,s:s}", "addresses",
				  lxmd_network_leased_addresses(
					  d, json_string_value(json_object_get(n, "bridge")), mac),
				  "counters", "bytes_received", tap_counter(tap, "tx_bytes"),
				  "bytes_sent", tap_counter(tap, "rx_bytes"), "packets_received",
				  tap_counter(tap, "tx_packets"), "packets_sent",
				  tap_counter(tap, "rx_packets"), "host_name", tap, "hwaddr", mac,
				  "mtu", mtu ? atoi(mtu) : 0, "state",
				  oper && strncmp(oper, "up", 2) == 0 ? "up" : "down", "type",
				  "broadcast"));
	}
	return net;
}

/* QEMU's pid and its view of the VM from the monitor (the pid changes when the guest reboots:
 * the monitor starts a new QEMU), with the guest's RAM as memory.total; memory and CPU usage come
 * from the VM's cgroup as for containers;
 * the guest's process count is unknown without the agent: -1, as LXD shows it then. */
static void vm_state(struct lxmd *d, struct rt_instance *i, json_t *st)
{
	_cleanup_free_ char *sock = NULL, *specpath = NULL, *rundir = NULL;
	_cleanup_json_ json_t *req = json_pack("{s:s}", "op", "state"), *reply = NULL, *spec = NULL;
	struct lxm_error *err = NULL;

	json_object_set_new(st, "processes", json_integer(-1));
	json_object_set_new(st, "pid", json_integer(i->init_pid));
	if (req && monitor_socket(d, i->name, &sock) >= 0 &&
	    lxm_monitor_request(sock, req, MONITOR_TIMEOUT_MS, &reply, &err) >= 0) {
		json_t *mem = json_object_get(reply, "memory"),
		       *base = json_object_get(mem, "base");

		json_object_set(st, "pid", json_object_get(reply, "qemu_pid"));
		/* The guest's RAM as QEMU has it (QMP query-memory-size-summary), beside what the
		 * QEMU process uses of the host's. */
		if (json_is_integer(base))
			json_object_set_new(
				json_object_get(st, "memory"), "total",
				json_integer(json_integer_value(base) +
					     json_integer_value(json_object_get(mem, "plugged"))));
	} else if (err) {
		log_debug("instance '%s': state from its monitor: %s", i->name, err->msg);
		lxm_error_free(err);
	}
	if (rundir_of(d, i->name, &rundir) >= 0 && asprintf(&specpath, "%s/spec.json", rundir) >= 0)
		spec = json_load_file(specpath, 0, NULL);
	json_object_set_new(st, "network", spec ? vm_network(d, spec) : json_object());
}

static const struct lxmd_instance_driver vm_driver = {
	.type = "virtual-machine",
	.start = vm_start,
	.freeze = vm_freeze,
	.state = vm_state,
	.live_limits = false,
};

/* ---- delete ---- */

/* What a deleted instance's AppArmor profile left on disk, removed on the thread pool. */
struct aa_forget {
	uv_work_t work; /* libuv's */
	char *profile;	/* the profile's name */
	char *dir;	/* <root>/security/apparmor */
	int removed;	/* files removed (the worker's result) */
};

static void aa_forget_work(uv_work_t *w)
{
	struct aa_forget *f = w->data;
	_cleanup_free_ char *file = NULL, *cached = NULL;
	glob_t g = { 0 };

	/* The source, and its compiled form: in cache/ or, with apparmor_parser 3, in a
	 * subdirectory of it named after the kernel's features. */
	if (asprintf(&file, "%s/%s", f->dir, f->profile) >= 0 && unlink(file) == 0)
		f->removed++;
	if (asprintf(&cached, "%s/cache/*/%s", f->dir, f->profile) >= 0 &&
	    glob(cached, GLOB_NOSORT, NULL, &g) == 0)
		for (size_t k = 0; k < g.gl_pathc; k++)
			f->removed += unlink(g.gl_pathv[k]) == 0;
	globfree(&g);
	free(TAKE_PTR(cached));
	if (asprintf(&cached, "%s/cache/%s", f->dir, f->profile) < 0) {
		cached = NULL; /* asprintf leaves it undefined */
		return;
	}
	if (unlink(cached) == 0)
		f->removed++;
}

static void aa_forget_free(struct aa_forget *f)
{
	free(f->profile);
	free(f->dir);
	free(f);
}

static void aa_forget_done(uv_work_t *w, int status)
{
	struct aa_forget *f = w->data;

	(void)status;
	if (f->removed)
		log_info("apparmor: removed profile %s (%d files)", f->profile, f->removed);
	aa_forget_free(f);
}

static void aa_forget_files(struct lxmd *d, struct aa_forget *f)
{
	int k;

	f->work.data = f;
	k = uv_queue_work(d->loop, &f->work, aa_forget_work, aa_forget_done);
	if (k < 0) {
		log_warn("apparmor: cannot remove profile %s: %s", f->profile, uv_strerror(k));
		aa_forget_free(f);
	}
}

struct aa_unload {
	struct lxmd *d;	     /* the daemon */
	struct aa_forget *f; /* what to remove once unloaded */
};

static void apparmor_unloaded(int status, const char *out, const char *errout, void *ud)
{
	struct aa_unload *u = ud;

	(void)out;
	if (status != 0)
		log_warn(
			"apparmor: unload profile %s: apparmor_parser -R exited with status %d: %s",
			u->f->profile, status, *errout ? errout : "(no output)");
	aa_forget_files(u->d, u->f);
	free(u);
}

void lxmd_instance_deleted(struct lxmd *d, const char *name)
{
	_cleanup_free_ char *text = NULL, *file = NULL;
	struct aa_forget *f = calloc(1, sizeof(*f));
	struct aa_unload *u;
	const char *parser;
	char *argv[4];
	int k;

	if (!f || asprintf(&f->dir, "%s/security/apparmor", d->cfg.root) < 0 ||
	    lxm_apparmor_profile(name, &d->rt->host, false, false, &f->profile, &text) < 0 ||
	    asprintf(&file, "%s/%s", f->dir, f->profile) < 0) {
		log_warn("instance '%s': cannot name its AppArmor profile to remove it", name);
		if (f)
			aa_forget_free(f);
		return;
	}
	if (!d->rt->host.apparmor) {
		log_info("apparmor: kernel has no AppArmor, not unloading profile %s", f->profile);
		aa_forget_files(d, f);
		return;
	}
	/* Only what lxmd loaded: the file is written before every load. */
	if (access(file, F_OK) < 0) {
		aa_forget_files(d, f);
		return;
	}
	parser = apparmor_parser();
	u = calloc(1, sizeof(*u));
	if (!u) {
		aa_forget_free(f);
		return;
	}
	u->d = d;
	u->f = f;
	argv[0] = (char *)parser;
	argv[1] = (char *)"-R";
	argv[2] = file;
	argv[3] = NULL;
	k = lxmd_child_run(d->loop, argv, apparmor_unloaded, u);
	if (k < 0) {
		log_warn("apparmor: unload profile %s: run %s: %s", f->profile, parser,
			 uv_strerror(k));
		aa_forget_files(d, f);
		free(u);
	}
}

/* ---- start-up ---- */

static int find_monitor(char **ret)
{
	return lxmd_find_helper(LXM_MONITOR_NAME, "LXM_MONITOR", ret);
}

/* Monitors outlive lxmd: find the ones still serving and watch them again. */
static void reattach(struct lxmd *d)
{
	_cleanup_strv_ char **names = NULL;

	if (lxm_db_instance_names(d->db, &names, NULL) < 0)
		return;
	for (char **n = names; n && *n; n++) {
		_cleanup_free_ char *sock = NULL;
		_cleanup_json_ json_t *req = json_pack("{s:s}", "op", "status"), *reply = NULL;
		_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
		struct lxm_error *err = NULL;
		struct rt_instance *i;

		if (monitor_socket(d, *n, &sock) < 0)
			return;
		if (lxm_monitor_request(sock, req, MONITOR_TIMEOUT_MS, &reply, &err) < 0) {
			lxm_error_free(err);
			continue;
		}
		i = rt_add(d, *n);
		if (!i)
			return;
		if (lxm_db_instance_get(d->db, *n, &inst, NULL) >= 0)
			i->drv = driver_of(inst->type);
		i->init_pid = (pid_t)json_integer_value(json_object_get(reply, "init_pid"));
		i->monitor_pid = (pid_t)json_integer_value(json_object_get(reply, "monitor_pid"));
		if (watch_monitor(i) < 0) {
			/* It went away between the answer and now. */
			rt_remove(i);
			continue;
		}
		log_info("instance '%s' is running (init pid %d): re-attached to its monitor", *n,
			 (int)i->init_pid);
		/* lxmd's nftables table was written anew: its proxy devices go in again. */
		if (lxmd_proxies_start(d, *n, &err) < 0) {
			log_error("%s", err->msg);
			lxm_error_free(TAKE_PTR(err));
		}
	}
}

int lxmd_runtime_init(struct lxmd *d, struct lxm_error **err)
{
	struct lxmd_runtime *rt = calloc(1, sizeof(*rt));
	struct sysinfo si;
	int k;

	if (!rt)
		return -ENOMEM;
	TAILQ_INIT(&rt->running);
	d->rt = rt;
	k = lxm_cgroup_detect(NULL, NULL, &rt->cgroups, err);
	if (k < 0)
		return lxm_error_prefix(err, "detect cgroups");
	k = lxm_cgroup_set_owner(rt->cgroups, d->cfg.root, err);
	if (k < 0)
		return k;
	if ((k = subid_base("/etc/subuid", &rt->uid_base, &rt->subids.uid_count, err)) < 0 ||
	    (k = subid_base("/etc/subgid", &rt->gid_base, &rt->subids.gid_count, err)) < 0)
		return k;
	rt->subids.uid_base = rt->uid_base;
	rt->subids.gid_base = rt->gid_base;
	if (find_monitor(&rt->monitor) < 0)
		return -ENOMEM;
	sysinfo(&si);
	rt->host.memory_bytes = (uint64_t)si.totalram * si.mem_unit;
	rt->host.ncpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	rt->host.apparmor = access("/sys/kernel/security/apparmor", F_OK) == 0;
	rt->host.selinux = access("/sys/fs/selinux/enforce", F_OK) == 0;
	host_hugepages(rt);
	rt->host.root = d->cfg.root;
	if (!rt->host.apparmor)
		log_info("AppArmor is not enabled in this kernel: containers run without an "
			 "AppArmor profile");
	if (!rt->host.selinux)
		log_info("SELinux is not enabled in this kernel: containers run without an "
			 "SELinux label");
	reattach(d);
	return 0;
}

const char *lxmd_monitor_path(struct lxmd *d)
{
	return d->rt->monitor;
}

void lxmd_runtime_fini(struct lxmd *d)
{
	struct lxmd_runtime *rt = TAKE_PTR(d->rt);
	struct rt_instance *i;

	if (!rt)
		return;
	d->rt = rt;
	while ((i = TAILQ_FIRST(&rt->running)))
		rt_remove(i);
	d->rt = NULL;
	lxm_cgroup_layout_free(rt->cgroups);
	free(rt->monitor);
	free(rt);
}

json_t *lxmd_instance_template_ctx(const struct lxm_db_instance *inst, const json_t *config,
				   const json_t *devices)
{
	return json_pack("{s:{s:s, s:s, s:s, s:b, s:s}, s:O, s:O}", "instance", "name", inst->name,
			 "type", inst->type, "architecture",
			 inst->architecture ? inst->architecture : "", "ephemeral", inst->ephemeral,
			 "description", inst->description ? inst->description : "", "config",
			 config, "devices", devices);
}

int lxmd_instance_expand(struct lxmd *d, const struct lxm_db_instance *inst, json_t **ret_config,
			 json_t **ret_devices, struct lxm_error **err)
{
	return lxmd_instance_expand_with(d, inst, NULL, ret_config, ret_devices, err);
}

int lxmd_instance_expand_with(struct lxmd *d, const struct lxm_db_instance *inst,
			      const struct lxm_db_profile *profile, json_t **ret_config,
			      json_t **ret_devices, struct lxm_error **err)
{
	_cleanup_json_ json_t *config = json_object(), *devices = json_object();
	size_t n;
	json_t *name;
	int k;

	if (!config || !devices)
		return lxm_error_set(err, -ENOMEM, 500, "expand instance '%s': out of memory",
				     inst->name);
	json_array_foreach (inst->profiles, n, name) {
		_cleanup_db_profile_ struct lxm_db_profile *p = NULL;
		const struct lxm_db_profile *use = profile;

		if (!profile || !streq(json_string_value(name), profile->name)) {
			k = lxm_db_profile_get(d->db, json_string_value(name), &p, err);
			if (k < 0)
				return lxm_error_prefix(err, "expand instance '%s'", inst->name);
			use = p;
		}
		if (use->config)
			json_object_update(config, use->config);
		if (use->devices)
			json_object_update(devices, use->devices);
	}
	if (inst->config)
		json_object_update(config, inst->config);
	if (inst->devices)
		json_object_update(devices, inst->devices);
	*ret_config = TAKE_PTR(config);
	*ret_devices = TAKE_PTR(devices);
	return 0;
}

int lxmd_instance_apply_config(struct lxmd *d, const char *name, const json_t *expanded_config,
			       bool apply, struct lxm_error **err)
{
	struct rt_instance *i = rt_find(d, name);
	struct lxm_policy *pol = NULL;
	int k;

	k = lxm_policy_compile(name, expanded_config, &d->rt->host, &pol, err);
	if (k < 0)
		return k;
	/* A running instance keeps the id map it started with (idmap.h). */
	if (!apply)
		k = lxmd_idmap_check_change(&d->rt->subids, name, expanded_config, pol, i != NULL,
					    err);
	if (k >= 0 && apply && i && !i->starting && i->drv->live_limits) {
		/* Writes to cgroup files are immediate kernel operations, not disk I/O. */
		k = lxm_cgroup_apply(d->rt->cgroups, name, &pol->limits, err);
		if (k < 0)
			lxm_error_prefix(err, "apply limits to running '%s'", name);
	}
	lxm_policy_free(pol);
	return k;
}
