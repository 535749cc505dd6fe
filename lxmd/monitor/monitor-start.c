/* lxm-monitor start: detaches from lxmd, creates the container with clone3 and supervises its
 * init (console log, control socket, exit status). monitor.h has the protocol with lxmd;
 * monitor-internal.h the one with the child.
 *
 * Order of events, and why:
 *   monitor                                   child (clone3: user, mnt, pid, uts, ipc, net ns)
 *   clone3 (CLONE_INTO_CGROUP v2 dir)  ---->  waits for GO
 *   writes uid_map / gid_map
 *   joins the v1 cgroups
 *   creates the nics' veths (peers into the
 *     child's network namespace)
 *   open_tree + MOUNT_ATTR_IDMAP (needs the
 *     child's user namespace)
 *   GO + {rootfs tree, console slave}  ---->  unshare(cgroup ns): its root is now the container's
 *                                               cgroup on every hierarchy, v1 included
 *                                             unshare(time ns), write the offsets, setns into it
 *                                             lxm_container_setup_and_exec()
 *   EOF (sync end is close-on-exec)    <----  exec init         (or ERROR + text, _exit(1))
 *   prints the ready line, serves the control socket, copies the console, reaps init.
 *
 * The cgroup and time namespaces are not clone3 flags on purpose. A cgroup namespace's root on a
 * v1 hierarchy is fixed when it is created, which would be lxmd's cgroup there (the child only
 * joins its v1 cgroups after clone3). And a time namespace's offsets can only be written before
 * any process is in it: clone3(CLONE_NEWTIME) puts the child in at once, with the offsets frozen
 * at zero (writing /proc/<pid>/timens_offsets then fails with EACCES). unshare(CLONE_NEWTIME)
 * only sets the namespace for children, so the child writes the offsets into
 * /proc/self/timens_offsets and then joins /proc/self/ns/time_for_children, which freezes them;
 * that works on every kernel with time namespaces (5.6+), not only those that switch on exec. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/magic.h>
#include <linux/sched.h>

#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "container/setup.h"
#include "monitor/monitor-disks.h"
#include "container/spec.h"
#include "monitor/monitor.h"
#include "monitor/monitor-common.h"
#include "monitor/monitor-internal.h"
#include "monitor/monitor-overlay.h"
#include "network/network.h"
#include "nic.h"

/* A container whose setup has not exec'd init by then is killed and reported as failed. */
#define MONITOR_SETUP_TIMEOUT_MS (120 * 1000)

/* ---- preparing what the child gets ---- */

/* ---- the child ---- */

static void send_sync_error(int fd, const char *msg)
{
	char buf[LXM_MONITOR_SYNC_MAX];
	size_t len = strlen(msg);

	if (len > sizeof(buf) - 1)
		len = sizeof(buf) - 1;
	buf[0] = LXM_MONITOR_SYNC_ERROR;
	memcpy(buf + 1, msg, len);
	/* If the monitor is gone there is nobody to tell; the exit status is all that is left. */
	(void)send(fd, buf, len + 1, MSG_NOSIGNAL);
}

/* Waits for GO and takes the fds that come with it (close-on-exec, by MSG_CMSG_CLOEXEC). */
static int recv_go(int fd, struct lxm_setup_fds *fds, struct lxm_error **err)
{
	int got[2] = { -1, -1 };
	char type = 0;
	size_t n;
	int r;

	r = monitor_sync_recv_fds(fd, &type, got, ARRAY_SIZE(got), &n);
	if (r == -EPIPE)
		return lxm_error_set(err, r, 500, "the monitor went away before setup");
	if (r < 0 && r != -EPROTO)
		return lxm_error_setx(err, r, 500, "wait for the monitor");
	if (r < 0 || type != LXM_MONITOR_SYNC_GO || got[0] < 0)
		return lxm_error_set(err, -EPROTO, 500, "unexpected message from the monitor");
	fds->rootfs_tree = got[0];
	fds->console_slave = got[1];
	return 0;
}

/* The namespaces that must be created after GO (see the top of this file). */
static int child_late_namespaces(const struct lxm_container_spec *s, struct lxm_error **err)
{
	_cleanup_close_ int ns_fd = -1, off_fd = -1;

	if (unshare(CLONE_NEWCGROUP) < 0)
		return lxm_error_setx(err, -errno, 500, "step 'cgroup-namespace': unshare");
	if (unshare(CLONE_NEWTIME) < 0)
		return lxm_error_setx(err, -errno, 500, "step 'time-namespace': unshare");
	if (s->time_offset_monotonic != 0 || s->time_offset_boottime != 0) {
		char buf[128];
		int len;

		/* Clock ids, not names: older kernels parse only numbers. */
		len = snprintf(buf, sizeof(buf), "%d %lld 0\n%d %lld 0\n", CLOCK_MONOTONIC,
			       (long long)s->time_offset_monotonic, CLOCK_BOOTTIME,
			       (long long)s->time_offset_boottime);
		off_fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
		if (off_fd < 0)
			return lxm_error_setx(
				err, -errno, 500,
				"step 'time-namespace': open /proc/self/timens_offsets");
		if (write(off_fd, buf, (size_t)len) != len)
			return lxm_error_setx(
				err, -errno, 500,
				"step 'time-namespace': write offsets monotonic %lld s, "
				"boottime %lld s",
				(long long)s->time_offset_monotonic,
				(long long)s->time_offset_boottime);
	}
	ns_fd = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
	if (ns_fd < 0)
		return lxm_error_setx(
			err, -errno, 500,
			"step 'time-namespace': open /proc/self/ns/time_for_children");
	if (setns(ns_fd, CLONE_NEWTIME) < 0)
		return lxm_error_setx(err, -errno, 500, "step 'time-namespace': setns");
	return 0;
}

/* Runs in the child of clone3, in the new namespaces; never returns. */
static _Noreturn void child_main(struct monitor *m, int sync_fd)
{
	struct lxm_setup_fds fds = { .rootfs_tree = -1, .console_slave = -1 };
	struct lxm_error *err = NULL;
	sigset_t none;

	/* What the monitor set up for itself is not init's: signal mask and SIGPIPE disposition
	 * survive exec, and the monitor's fds (and lxmd's pipe on stdout, and the monitor log on
	 * stderr) must not reach the container. Errors travel over sync_fd from here on. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	dup2(STDIN_FILENO, STDOUT_FILENO);
	dup2(STDIN_FILENO, STDERR_FILENO);
	close(m->sync_fd);
	close(m->pty_master);
	close(m->pty_slave);
	close(m->ctl_fd);
	close(m->sig_fd);
	if (m->cgroup_fd >= 0)
		close(m->cgroup_fd);

	if (recv_go(sync_fd, &fds, &err) < 0 ||
	    monitor_disks_recv(m->spec, sync_fd, &fds.mount_trees, &err) < 0) {
		send_sync_error(sync_fd, err->msg);
		_exit(1);
	}
	if (child_late_namespaces(m->spec, &err) < 0) {
		send_sync_error(sync_fd, err->msg);
		_exit(1);
	}
	lxm_container_setup_and_exec(m->spec, &fds, &err);
	send_sync_error(sync_fd, err ? err->msg : "container setup returned without an error");
	_exit(1);
}

/* ---- creating and configuring the child ---- */

static int spawn_child(struct monitor *m, struct lxm_error **err)
{
	const struct lxm_container_spec *s = m->spec;
	int sv[2];
	struct clone_args args = {
		.flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
			 CLONE_PIDFD,
		.pidfd = (uint64_t)(uintptr_t)&m->pidfd,
		.exit_signal = SIGCHLD,
	};
	long pid;

	if (!s->privileged)
		args.flags |= CLONE_NEWUSER;
	if (s->cgroup_v2) {
		m->cgroup_fd = open(s->cgroup_v2, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (m->cgroup_fd < 0)
			return lxm_error_setx(err, -errno, 500, "open cgroup %s", s->cgroup_v2);
		args.flags |= CLONE_INTO_CGROUP;
		args.cgroup = (uint64_t)m->cgroup_fd;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return lxm_error_setx(err, -errno, 500, "sync socketpair");
	m->sync_fd = sv[0];

	pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		int r = -errno;

		close(sv[1]);
		if (s->cgroup_v2 && (r == -EBUSY || r == -EOPNOTSUPP || r == -EINVAL))
			return lxm_error_setx(err, r, 500, "clone3 into cgroup %s", s->cgroup_v2);
		return lxm_error_setx(err, r, 500, "clone3");
	}
	if (pid == 0)
		child_main(m, sv[1]);
	close(sv[1]);
	m->init_pid = (pid_t)pid;
	close(m->cgroup_fd);
	m->cgroup_fd = -1;
	return 0;
}

/* One write, as the kernel wants it: "nsid hostid count" per line. */
static int write_idmap(pid_t pid, const char *file, const struct lxm_idmap *map, size_t n,
		       struct lxm_error **err)
{
	_cleanup_free_ char *buf = NULL;
	_cleanup_close_ int fd = -1;
	char path[64];
	size_t len = 0;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	if (n == 0)
		return lxm_error_set(err, -EINVAL, 500, "write %s %s: the spec has no %s entries",
				     file, path, file);
	buf = malloc(n * 36 + 1);
	if (!buf)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(buf + len, "%u %u %u\n", map[i].nsid, map[i].hostid,
				       map[i].count);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "write %s %s", file, path);
	if (write(fd, buf, len) != (ssize_t)len)
		return lxm_error_setx(err, -errno, 500, "write %s %s", file, path);
	return 0;
}

static int join_v1_cgroups(pid_t pid, char **dirs, struct lxm_error **err)
{
	char line[32];
	int len = snprintf(line, sizeof(line), "%d\n", (int)pid);

	for (char **d = dirs; d && *d; d++) {
		_cleanup_free_ char *path = NULL;
		_cleanup_close_ int fd = -1;

		if (asprintf(&path, "%s/cgroup.procs", *d) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, line, (size_t)len) != len)
			return lxm_error_setx(err, -errno, 500, "join cgroup: write %s", path);
	}
	return 0;
}

/* The host id that a map gives to id 0 in the container. */
static int host_root(const struct lxm_idmap *map, size_t n, uint32_t *ret)
{
	for (size_t i = 0; i < n; i++)
		if (map[i].nsid == 0 && map[i].count > 0) {
			*ret = map[i].hostid;
			return 0;
		}
	return -ENOENT;
}

/* A detached copy of the rootfs mount tree; unprivileged, idmapped through the child's user
 * namespace so that host ids hostid.. show as 0.. inside without a chown of the rootfs. An
 * overlayfs rootfs cannot be idmapped: it is rebuilt on idmapped layers instead. */
static int open_rootfs_tree(struct monitor *m, int *ret, struct lxm_error **err)
{
	const struct lxm_container_spec *s = m->spec;
	_cleanup_close_ int userns = -1;
	struct statfs sfs;
	uint32_t uid, gid;
	int r;

	if (s->privileged)
		return monitor_clone_mount("rootfs", s->rootfs, -1, true, false, ret, err);
	if ((r = monitor_open_userns(m->init_pid, &userns, err)) < 0)
		return r;
	if (statfs(s->rootfs, &sfs) < 0)
		return lxm_error_setx(err, -errno, 500, "statfs rootfs %s", s->rootfs);
	if (sfs.f_type != OVERLAYFS_SUPER_MAGIC)
		return monitor_clone_mount("rootfs", s->rootfs, userns, true, false, ret, err);
	if ((r = host_root(s->uidmap, s->n_uidmap, &uid)) < 0 ||
	    (r = host_root(s->gidmap, s->n_gidmap, &gid)) < 0)
		return lxm_error_set(err, r, 500,
				     "idmap rootfs %s: the id maps give no host id for the "
				     "container's root",
				     s->rootfs);
	return monitor_overlay_idmapped_tree(s->rootfs, userns, (uid_t)uid, (gid_t)gid, ret, err);
}

static int send_go(struct monitor *m, int tree, struct lxm_error **err)
{
	int fds[2] = { tree, m->pty_slave };
	int r = monitor_sync_send_fds(m->sync_fd, LXM_MONITOR_SYNC_GO, fds, ARRAY_SIZE(fds));

	return r < 0 ? lxm_error_setx(err, r, 500, "send the rootfs and console to the child") : 0;
}

/* Everything the child must find done before it runs any of its setup. */
static int configure_child(struct monitor *m, struct lxm_error **err)
{
	const struct lxm_container_spec *s = m->spec;
	_cleanup_close_ int tree = -1;
	int r;

	if (!s->privileged) {
		r = write_idmap(m->init_pid, "uid_map", s->uidmap, s->n_uidmap, err);
		if (r < 0)
			return r;
		r = write_idmap(m->init_pid, "gid_map", s->gidmap, s->n_gidmap, err);
		if (r < 0)
			return r;
	}
	r = join_v1_cgroups(m->init_pid, s->cgroup_v1, err);
	if (r < 0)
		return r;
	/* The child's network namespace exists: its nics go in before init can look for them. */
	for (; m->nics_up < s->n_nics; m->nics_up++) {
		r = lxmd_nic_veth_create(&s->nics[m->nics_up], m->init_pid, err);
		if (r < 0)
			return r;
	}
	r = open_rootfs_tree(m, &tree, err);
	if (r < 0)
		return r;
	r = send_go(m, tree, err);
	if (r < 0)
		return r;
	return monitor_disks_send(s, m->init_pid, m->sync_fd, err);
}

/* Waits for EOF (init exec'd) or an error from the child's setup. */
static int wait_child_ready(struct monitor *m, struct lxm_error **err)
{
	char buf[LXM_MONITOR_SYNC_MAX + 1];
	struct pollfd p = { .fd = m->sync_fd, .events = POLLIN };
	ssize_t n;
	int r;

	do
		r = poll(&p, 1, MONITOR_SETUP_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return lxm_error_setx(err, -errno, 500, "wait for container setup");
	if (r == 0)
		return lxm_error_set(err, -ETIMEDOUT, 500, "container setup did not finish in %d s",
				     MONITOR_SETUP_TIMEOUT_MS / 1000);
	do
		n = recv(m->sync_fd, buf, sizeof(buf) - 1, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return lxm_error_setx(err, -errno, 500, "wait for container setup");
	if (n == 0)
		return 0;
	buf[n] = '\0';
	if (buf[0] != LXM_MONITOR_SYNC_ERROR)
		return lxm_error_set(err, -EPROTO, 500, "unexpected message from the container");
	return lxm_error_set(err, -EIO, 500, "%s", buf + 1);
}

/* ---- cleaning up ---- */

/* The start failed after the control socket or the child existed: undo what we made. */
static void undo_start(struct monitor *m)
{
	struct lxm_error *e2 = NULL;

	/* The peers would go with the network namespace, but in the background: remove the pairs
	 * now, so that a failed start leaves nothing. */
	for (size_t i = 0; i < m->nics_up; i++)
		if (lxm_link_delete(m->spec->nics[i].host_name, &e2) < 0) {
			log_warn("nic device '%s': remove veth %s: %s", m->spec->nics[i].device,
				 m->spec->nics[i].host_name, e2->msg);
			lxm_error_free(TAKE_PTR(e2));
		}
	if (m->pidfd >= 0 && !m->init_reaped) {
		(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
		monitor_reap_init(m, true);
	}
	if (m->init_pid > 0)
		monitor_remove_cgroups(m->spec->cgroup_v2, m->spec->cgroup_v1);
	if (m->ctl_created)
		unlink(m->control_socket);
}

static json_t *op_stop(struct monitor *m, const json_t *req)
{
	json_t *jsig = json_object_get(req, "signal"), *jtimeout = json_object_get(req, "timeout");
	json_int_t sig = m->spec->halt_signal > 0 ? m->spec->halt_signal : SIGTERM;
	json_int_t timeout = -1;

	if (jsig && !json_is_null(jsig)) {
		if (!json_is_integer(jsig) || json_integer_value(jsig) < 1 ||
		    json_integer_value(jsig) > SIGRTMAX)
			return monitor_error_reply(
				"stop: 'signal' must be a signal number from 1 to %d", SIGRTMAX);
		sig = json_integer_value(jsig);
	}
	if (jtimeout && !json_is_null(jtimeout)) {
		if (!json_is_integer(jtimeout))
			return monitor_error_reply(
				"stop: 'timeout' must be an integer (seconds, < 0: never)");
		timeout = json_integer_value(jtimeout);
	}
	if (syscall(SYS_pidfd_send_signal, m->pidfd, (int)sig, NULL, 0) < 0 && errno != ESRCH)
		return monitor_error_reply("stop: signal %d to init %d: %s", (int)sig,
					   (int)m->init_pid, strerror(errno));
	if (timeout < 0)
		log_info("stop: signal %d to init %d, no SIGKILL timeout", (int)sig,
			 (int)m->init_pid);
	else
		log_info("stop: signal %d to init %d, SIGKILL in %lld s", (int)sig,
			 (int)m->init_pid, (long long)timeout);

	if (timeout == 0) {
		(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
	} else if (timeout > 0) {
		struct itimerspec its = { .it_value.tv_sec = (time_t)timeout };

		if (m->timer_fd < 0)
			m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (m->timer_fd < 0 || timerfd_settime(m->timer_fd, 0, &its, NULL) < 0)
			return monitor_error_reply("stop: arm the SIGKILL timer: %s",
						   strerror(errno));
	}
	return json_pack("{s:b}", "ok", 1);
}

/* The console pty, its slave owned by the container's root. */
static int open_console(struct monitor *m, struct lxm_error **err)
{
	const struct lxm_container_spec *s = m->spec;
	int r;

	r = monitor_open_console(m, err);
	if (r < 0)
		return r;
	/* Owned by the container's root, so that init (or a getty) can reopen /dev/console. */
	if (!s->privileged && s->n_uidmap > 0 && s->n_gidmap > 0) {
		uid_t uid = (uid_t)-1;
		gid_t gid = (gid_t)-1;

		for (size_t i = 0; i < s->n_uidmap; i++)
			if (s->uidmap[i].nsid == 0)
				uid = s->uidmap[i].hostid;
		for (size_t i = 0; i < s->n_gidmap; i++)
			if (s->gidmap[i].nsid == 0)
				gid = s->gidmap[i].hostid;
		if (fchown(m->pty_slave, uid, gid) < 0)
			return lxm_error_setx(err, -errno, 500, "console: chown pty slave to %d:%d",
					      (int)uid, (int)gid);
	}
	return 0;
}

static json_t *op_kill(struct monitor *m)
{
	if (syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
		return monitor_error_reply("kill: SIGKILL to init %d: %s", (int)m->init_pid,
					   strerror(errno));
	log_info("kill: SIGKILL to init %d", (int)m->init_pid);
	return json_pack("{s:b}", "ok", 1);
}

static json_t *container_request(struct monitor *m, const char *op, const json_t *req)
{
	if (streq(op, "status"))
		return monitor_status_reply(m);
	if (streq(op, "stop"))
		return op_stop(m, req);
	if (streq(op, "kill"))
		return op_kill(m);
	return monitor_error_reply("unknown op '%s' (expected status, stop, kill, console, "
				   "console-resize or console-log-clear)",
				   op);
}

static void container_timer(struct monitor *m)
{
	log_info("stop: timeout reached, SIGKILL to init %d", (int)m->init_pid);
	(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
}

static const struct monitor_ops container_ops = {
	.request = container_request,
	.timer = container_timer,
};

/* From the fork to the ready line. On failure err says what failed, without the "start" context. */
static int start_container(struct monitor *m, struct lxm_error **err)
{
	int r;

	r = monitor_setup(m, open_console, err);
	if (r < 0)
		return r;
	r = spawn_child(m, err);
	if (r < 0)
		return r;
	r = configure_child(m, err);
	if (r < 0)
		return r;
	return wait_child_ready(m, err);
}

/* What --help says the mode does. */
static const char usage_what[] =
	"Creates the container described by spec.json, prints one JSON line on stdout\n"
	"and supervises its init in the background (see lxmd/monitor/monitor.h).\n";

int lxm_monitor_start_main(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_container_spec *spec = NULL;
	struct monitor *m;
	int r, status;

	if (!monitor_check_args(argc, argv, "start", usage_what, &status))
		return status;

	r = lxm_container_spec_load(argv[1], &spec, &err);
	if (r < 0)
		return monitor_load_failed(&err);
	/* Optional in a spec (lxmd fills them in), required to run a monitor. */
	if (!spec->rundir || !spec->control_socket) {
		lxm_error_set(&err, -EINVAL, 400, "start '%s': spec %s: field '%s' is required",
			      spec->name, argv[1], spec->rundir ? "control_socket" : "rundir");
		monitor_print_error_line(err->msg);
		lxm_container_spec_free(spec);
		return 1;
	}
	m = monitor_new_detached(&container_ops, &status);
	if (!m) {
		lxm_container_spec_free(spec);
		return status;
	}
	m->spec = spec;
	monitor_set_instance(m, spec->name, spec->rundir, spec->control_socket, spec->console_log,
			     spec->console_log_max);
	r = start_container(m, &err);
	if (r < 0) {
		monitor_start_failed(m, &err, undo_start);
		lxm_container_spec_free(m->spec);
		monitor_free(m);
		return 1;
	}

	m->started_at = lxm_now_ns();
	close(m->sync_fd);
	m->sync_fd = -1;
	monitor_console_log_open(m);
	log_info("container '%s' running: init pid %d, monitor pid %d", spec->name,
		 (int)m->init_pid, (int)m->pid);
	monitor_report_running(m, "container");

	monitor_run_loop(m);

	monitor_console_drain(m);
	monitor_log_exit(m, "init");
	monitor_write_exit_status(m);
	monitor_remove_cgroups(spec->cgroup_v2, spec->cgroup_v1);
	if (m->ctl_created)
		unlink(spec->control_socket);
	lxm_container_spec_free(spec);
	monitor_free(m);
	return 0;
}
