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
#include "monitor/monitor-internal.h"
#include "monitor/monitor-overlay.h"
#include "network/network.h"
#include "nic.h"

/* Connections served at once; more wait in the listen backlog. */
#define MONITOR_MAX_CLIENTS 8
/* A client that sends no complete request in this time is dropped. */
#define MONITOR_CLIENT_TIMEOUT_MS 5000
/* A container whose setup has not exec'd init by then is killed and reported as failed. */
#define MONITOR_SETUP_TIMEOUT_MS (120 * 1000)
/* How long the kernel gets to empty a cgroup after init died before rmdir gives up. */
#define MONITOR_RMDIR_TIMEOUT_MS 2000
/* Read size for the console; also the copy unit when the log is trimmed. */
#define MONITOR_CONSOLE_CHUNK 4096
/* Console output queued for an attached client past which the client is dropped: one that does
 * not read must neither block the loop nor make the monitor buffer without limit. */
#define MONITOR_CONSOLE_QUEUE_MAX (1024 * 1024)

struct monitor_client {
	int fd;				/* accepted connection, -1 when the slot is free */
	uint64_t deadline;		/* monotonic ms after which the connection is dropped */
	size_t len;			/* bytes of the request in buf */
	char buf[LXM_MONITOR_LINE_MAX]; /* the request line being read */
};

/* The client attached to the console (op "console"): its connection has become a byte stream. */
struct monitor_console {
	int fd;			       /* the connection, -1 when nobody is attached */
	char *out;		       /* console output (and the reply) not yet sent to it */
	size_t out_off;		       /* where the unsent part of out starts */
	size_t out_len;		       /* end of the unsent part */
	size_t out_cap;		       /* allocated size of out */
	char in[LXM_MONITOR_LINE_MAX]; /* its input that the pty has not taken yet */
	size_t in_len;		       /* bytes in in; the client is not read while there are any */
};

struct monitor {
	struct lxm_container_spec *spec; /* what we run */
	pid_t pid;			 /* our own pid, the "monitor_pid" lxmd sees */
	pid_t init_pid;			 /* init as seen from our pid namespace */
	int pidfd;	/* init's pidfd (CLONE_PIDFD): exit notification, signals */
	int sync_fd;	/* our end of the sync socketpair with the child */
	int pty_master; /* console master; its output goes to the console log */
	int pty_slave;	/* kept open here too, so the master never sees a hangup (and poll never
			   spins on POLLHUP) while nobody in the container has the console open */
	int ctl_fd;	/* listening control socket */
	int sig_fd;    /* signalfd: the signals the monitor survives (TERM, INT, HUP) and SIGCHLD */
	int timer_fd;  /* SIGKILL deadline after a stop request; -1 until the first one */
	int cgroup_fd; /* O_PATH fd of spec->cgroup_v2 for CLONE_INTO_CGROUP, or -1 */
	int log_fd;    /* console log (not O_APPEND: trimming rewrites it), or -1 */
	uint64_t log_size;   /* bytes in the console log */
	bool ctl_created;    /* we bound the control socket, so we unlink it at the end */
	bool init_reaped;    /* init's exit status was collected */
	int64_t started_at;  /* CLOCK_REALTIME ns at which init was exec'd */
	siginfo_t init_exit; /* how init ended, once init_reaped */
	struct monitor_client clients[MONITOR_MAX_CLIENTS];
	struct monitor_console console; /* the attached console client, if any */
	size_t nics_up; /* spec->nics[0..nics_up-1] have their veth (removed if the start fails) */
};

/* Writes j as one line to fd and releases it. */
static int write_json_line(int fd, json_t *j)
{
	_cleanup_json_ json_t *owned = j;
	_cleanup_free_ char *s = NULL;
	size_t len;

	if (!j)
		return -ENOMEM;
	s = json_dumps(j, JSON_COMPACT);
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	/* json_dumps leaves room for nothing; one more byte for the newline. */
	char *line = realloc(s, len + 2);
	if (!line)
		return -ENOMEM;
	s = line;
	s[len++] = '\n';
	s[len] = '\0';
	return lxm_write_all(fd, s, len);
}

/* The failure line lxmd reads instead of the ready line. */
static void print_error_line(const char *msg)
{
	if (write_json_line(STDOUT_FILENO, json_pack("{s:s}", "error", msg)) < 0)
		log_error("cannot report to lxmd: %s", msg);
}

/* ---- detaching ---- */

/* fork, setsid, fork: the monitor ends up in its own session, re-parented away from lxmd, so a
 * stop or crash of lxmd (or a signal to lxmd's process group) leaves it running. Returns true in
 * the monitor; in the original process it returns false with the status to exit with. The
 * original exits as soon as the intermediate has, without waiting for the container: lxmd reads
 * the ready line from the pipe that the monitor holds as its stdout. */
static void print_errno_line(const char *what)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "start: %s: %s", what, strerror(errno));
	print_error_line(msg);
}

static bool detach(int *ret_status)
{
	int status;
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		print_errno_line("fork the monitor");
		*ret_status = 1;
		return false;
	}
	if (pid > 0) {
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		*ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
		return false;
	}

	/* The intermediate: a new session without a controlling terminal, then the monitor as its
	 * child, which is not a session leader and so can never acquire a controlling terminal by
	 * opening one (the console pty). */
	if (setsid() < 0) {
		print_errno_line("setsid");
		_exit(1);
	}
	pid = fork();
	if (pid < 0) {
		print_errno_line("fork the monitor");
		_exit(1);
	}
	if (pid > 0)
		_exit(0);
	return true;
}

/* stdin from /dev/null, stderr appended to <rundir>/monitor.log, cwd "/" (so the monitor pins no
 * directory of lxmd's). stdout stays: it is lxmd's pipe until the ready line is written. */
static int setup_stdio(const struct lxm_container_spec *s, struct lxm_error **err)
{
	_cleanup_free_ char *log_path = NULL;
	_cleanup_close_ int null_fd = -1, log_fd = -1;
	int r;

	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0)
		return lxm_error_setx(err, -errno, 500, "open /dev/null");
	if (dup2(null_fd, STDIN_FILENO) < 0)
		return lxm_error_setx(err, -errno, 500, "redirect stdin");

	r = lxm_mkdir_p(s->rundir, 0700);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "create run directory %s", s->rundir);
	if (asprintf(&log_path, "%s/monitor.log", s->rundir) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (log_fd < 0)
		return lxm_error_setx(err, -errno, 500, "open monitor log %s", log_path);
	if (dup2(log_fd, STDERR_FILENO) < 0)
		return lxm_error_setx(err, -errno, 500, "redirect stderr to %s", log_path);
	if (chdir("/") < 0)
		return lxm_error_setx(err, -errno, 500, "chdir /");
	return 0;
}

/* ---- preparing what the child gets ---- */

/* The console: a pty on the host's devpts. Not openpty(), which opens both ends without
 * O_CLOEXEC; TIOCGPTPEER opens the slave from the master without a path lookup. */
static int open_console(struct monitor *m, struct lxm_error **err)
{
	const struct lxm_container_spec *s = m->spec;
	struct winsize ws = { .ws_row = 24, .ws_col = 80 };
	int flags;

	m->pty_master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m->pty_master < 0)
		return lxm_error_setx(err, -errno, 500, "console: open /dev/ptmx");
	if (unlockpt(m->pty_master) < 0)
		return lxm_error_setx(err, -errno, 500, "console: unlock pty");
	m->pty_slave = ioctl(m->pty_master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m->pty_slave < 0)
		return lxm_error_setx(err, -errno, 500, "console: open pty slave");
	/* A 0x0 terminal confuses full-screen programs on the console. */
	(void)ioctl(m->pty_master, TIOCSWINSZ, &ws);
	flags = fcntl(m->pty_master, F_GETFL);
	if (flags < 0 || fcntl(m->pty_master, F_SETFL, flags | O_NONBLOCK) < 0)
		return lxm_error_setx(err, -errno, 500, "console: make pty master non-blocking");

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

/* Binds the control socket (mode 0600). A socket file nobody listens on is a leftover of a
 * monitor that died and is replaced; one that answers means this container already has a
 * monitor. */
static int open_control_socket(struct monitor *m, struct lxm_error **err)
{
	const char *path = m->spec->control_socket;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int probe = -1;
	mode_t old_umask;
	int r;

	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "control socket path '%s' is empty or longer than %zu bytes",
				     path ? path : "", sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);

	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return lxm_error_setx(err, -errno, 500, "control socket: socket");
	if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return lxm_error_set(err, -EADDRINUSE, 409,
				     "control socket %s: another monitor is listening there", path);
	if (errno == ECONNREFUSED && unlink(path) < 0 && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "remove stale control socket %s", path);

	m->ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (m->ctl_fd < 0)
		return lxm_error_setx(err, -errno, 500, "control socket: socket");
	/* The umask decides the socket file's mode at bind; there is no race with a chmod. */
	old_umask = umask(0177);
	r = bind(m->ctl_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_umask);
	if (r < 0)
		return lxm_error_setx(err, -errno, 500, "bind control socket %s", path);
	m->ctl_created = true;
	if (listen(m->ctl_fd, 16) < 0)
		return lxm_error_setx(err, -errno, 500, "listen on control socket %s", path);
	return 0;
}

/* TERM/INT/HUP are survived (lxmd going down, or its process group being signalled, must not
 * take the container along); SIGCHLD is read only to wake the loop. SIGPIPE is ignored so that a
 * vanished reader (lxmd, a control client) is an EPIPE, not our death. The child undoes both. */
static int setup_signals(struct monitor *m, struct lxm_error **err)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return lxm_error_setx(err, -errno, 500, "block signals");
	m->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (m->sig_fd < 0)
		return lxm_error_setx(err, -errno, 500, "signalfd");
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

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

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

/* Removes a cgroup directory and the ones below it (a container's own init creates some),
 * deepest first. cgroupfs lets rmdir remove a directory with its interface files in it. */
static int rmdir_cgroup_tree(const char *path, int depth)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *e;

	if (rmdir(path) == 0 || errno == ENOENT)
		return 0;
	if (errno != EBUSY || depth > 32)
		return -errno;
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		_cleanup_free_ char *sub = NULL;

		if (e->d_type != DT_DIR || streq(e->d_name, ".") || streq(e->d_name, ".."))
			continue;
		if (asprintf(&sub, "%s/%s", path, e->d_name) < 0)
			return -ENOMEM;
		(void)rmdir_cgroup_tree(sub, depth + 1);
	}
	return rmdir(path) == 0 || errno == ENOENT ? 0 : -errno;
}

/* When init has died the kernel still needs a moment to let the cgroups go: retry while busy. */
static void remove_cgroups(const struct lxm_container_spec *s)
{
	uint64_t deadline = lxm_monotonic_ms() + MONITOR_RMDIR_TIMEOUT_MS;
	bool busy;

	do {
		busy = false;
		if (s->cgroup_v2 && rmdir_cgroup_tree(s->cgroup_v2, 0) == -EBUSY)
			busy = true;
		for (char **d = s->cgroup_v1; d && *d; d++)
			if (rmdir_cgroup_tree(*d, 0) == -EBUSY)
				busy = true;
		if (busy)
			usleep(10 * 1000);
	} while (busy && lxm_monotonic_ms() < deadline);

	if (s->cgroup_v2 && access(s->cgroup_v2, F_OK) == 0)
		log_warn("cgroup %s is still in use; left for lxmd to remove", s->cgroup_v2);
	for (char **d = s->cgroup_v1; d && *d; d++)
		if (access(*d, F_OK) == 0)
			log_warn("cgroup %s is still in use; left for lxmd to remove", *d);
}

static void reap_init(struct monitor *m, bool block)
{
	siginfo_t si = { 0 };

	if (m->init_reaped || m->pidfd < 0)
		return;
	if (waitid(P_PIDFD, (id_t)m->pidfd, &si, WEXITED | (block ? 0 : WNOHANG)) < 0) {
		if (errno == ECHILD) {
			/* Not ours to wait for any more: nothing better to record. */
			m->init_reaped = true;
			m->init_exit.si_code = CLD_KILLED;
			m->init_exit.si_status = SIGKILL;
		}
		return;
	}
	if (si.si_pid == 0)
		return;
	m->init_exit = si;
	m->init_reaped = true;
}

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
		reap_init(m, true);
	}
	if (m->init_pid > 0)
		remove_cgroups(m->spec);
	if (m->ctl_created)
		unlink(m->spec->control_socket);
}

/* ---- the console ---- */

static void console_log_open(struct monitor *m)
{
	const char *path = m->spec->console_log;
	off_t end;

	if (!path)
		return;
	m->log_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (m->log_fd < 0) {
		log_warn("console log %s: open: %s; console output is dropped", path,
			 strerror(errno));
		return;
	}
	end = lseek(m->log_fd, 0, SEEK_END);
	m->log_size = end > 0 ? (uint64_t)end : 0;
}

/* Keeps only the last `keep` bytes of the log, starting at a line boundary when one is near,
 * by moving them to the front in place (no second file, bounded memory). */
static int console_log_trim(struct monitor *m, uint64_t keep)
{
	char buf[MONITOR_CONSOLE_CHUNK];
	uint64_t src = m->log_size - keep, dst = 0;
	bool first = true;

	while (src < m->log_size) {
		ssize_t n = pread(m->log_fd, buf, sizeof(buf), (off_t)src);
		char *p = buf;

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		src += (uint64_t)n;
		if (first) {
			char *nl = memchr(buf, '\n', (size_t)n);

			first = false;
			if (nl) {
				p = nl + 1;
				n -= p - buf;
			}
		}
		if (n > 0 && pwrite(m->log_fd, p, (size_t)n, (off_t)dst) != n)
			return -errno;
		dst += (uint64_t)n;
	}
	if (ftruncate(m->log_fd, (off_t)dst) < 0)
		return -errno;
	m->log_size = dst;
	return 0;
}

/* Appends console output. The cap: when the log would grow past console_log_max (0: no cap),
 * the older part is dropped so that about the newer half remains, then the data is added. A
 * reader therefore always finds the most recent output in the one file. */
static void console_log_write(struct monitor *m, const char *data, size_t n)
{
	uint64_t max = m->spec->console_log_max;

	if (m->log_fd < 0)
		return;
	if (max > 0 && m->log_size + n > max) {
		uint64_t keep = max / 2;

		if (n >= max) {
			data += n - max;
			n = (size_t)max;
		}
		if (keep + n > max)
			keep = max - n;
		if (keep > m->log_size)
			keep = m->log_size;
		if (console_log_trim(m, keep) < 0) {
			log_warn("console log %s: trim: %s; console output is dropped",
				 m->spec->console_log, strerror(errno));
			close(m->log_fd);
			m->log_fd = -1;
			return;
		}
	}
	if (pwrite(m->log_fd, data, n, (off_t)m->log_size) != (ssize_t)n) {
		log_warn("console log %s: write: %s; console output is dropped",
			 m->spec->console_log, strerror(errno));
		close(m->log_fd);
		m->log_fd = -1;
		return;
	}
	m->log_size += n;
}

/* ---- the attached console client ---- */

static void console_detach(struct monitor *m)
{
	struct monitor_console *con = &m->console;

	if (con->fd < 0)
		return;
	log_info("console detached");
	close(con->fd);
	free(con->out);
	*con = (struct monitor_console){ .fd = -1 };
}

/* Sends what is queued, as far as the client takes it now. */
static void console_flush_out(struct monitor *m)
{
	struct monitor_console *con = &m->console;

	while (con->fd >= 0 && con->out_off < con->out_len) {
		ssize_t n = send(con->fd, con->out + con->out_off, con->out_len - con->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			console_detach(m);
			return;
		}
		con->out_off += (size_t)n;
	}
	con->out_off = con->out_len = 0;
}

static void console_queue_out(struct monitor *m, const char *data, size_t n)
{
	struct monitor_console *con = &m->console;
	size_t pending = con->out_len - con->out_off;

	if (con->fd < 0 || n == 0)
		return;
	if (pending + n > MONITOR_CONSOLE_QUEUE_MAX) {
		log_warn("console client reads too slowly (%zu bytes queued): detached",
			 pending + n);
		console_detach(m);
		return;
	}
	if (con->out_off > 0) {
		memmove(con->out, con->out + con->out_off, pending);
		con->out_off = 0;
		con->out_len = pending;
	}
	if (con->out_len + n > con->out_cap) {
		size_t cap = (con->out_len + n) * 2;
		char *p = realloc(con->out, cap);

		if (!p) {
			console_detach(m);
			return;
		}
		con->out = p;
		con->out_cap = cap;
	}
	memcpy(con->out + con->out_len, data, n);
	con->out_len += n;
	console_flush_out(m);
}

/* Passes the client's input to the pty, as far as it takes it now. Without a pty (it hung up)
 * the input has nowhere to go and is dropped. */
static void console_flush_in(struct monitor *m)
{
	struct monitor_console *con = &m->console;
	size_t done = 0;

	while (done < con->in_len && m->pty_master >= 0) {
		ssize_t n = write(m->pty_master, con->in + done, con->in_len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			done = con->in_len;
			break;
		}
		done += (size_t)n;
	}
	if (m->pty_master < 0)
		done = con->in_len;
	memmove(con->in, con->in + done, con->in_len - done);
	con->in_len -= done;
}

/* revents: what poll() said about the client's connection. */
static void console_read_client(struct monitor *m, short revents)
{
	struct monitor_console *con = &m->console;
	ssize_t n;

	/* Input waits for the pty: a client that hung up meanwhile is gone for good, otherwise it
	 * is read again once the pty took some. */
	if (con->in_len == sizeof(con->in)) {
		if (revents & (POLLHUP | POLLERR))
			console_detach(m);
		return;
	}
	n = read(con->fd, con->in + con->in_len, sizeof(con->in) - con->in_len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* The client went away: the console is free again. */
		console_detach(m);
		return;
	}
	con->in_len += (size_t)n;
	console_flush_in(m);
}

/* Reads what the container wrote to its console until the pty is empty. */
static void console_drain(struct monitor *m)
{
	char buf[MONITOR_CONSOLE_CHUNK];

	for (;;) {
		ssize_t n = read(m->pty_master, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		console_log_write(m, buf, (size_t)n);
		console_queue_out(m, buf, (size_t)n);
	}
}

/* ---- control requests ---- */

static void client_close(struct monitor_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static json_t *error_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *error_reply(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:s}", "error", msg);
}

static json_t *op_stop(struct monitor *m, const json_t *req)
{
	json_t *jsig = json_object_get(req, "signal"), *jtimeout = json_object_get(req, "timeout");
	json_int_t sig = m->spec->halt_signal > 0 ? m->spec->halt_signal : SIGTERM;
	json_int_t timeout = -1;

	if (jsig && !json_is_null(jsig)) {
		if (!json_is_integer(jsig) || json_integer_value(jsig) < 1 ||
		    json_integer_value(jsig) > SIGRTMAX)
			return error_reply("stop: 'signal' must be a signal number from 1 to %d",
					   SIGRTMAX);
		sig = json_integer_value(jsig);
	}
	if (jtimeout && !json_is_null(jtimeout)) {
		if (!json_is_integer(jtimeout))
			return error_reply(
				"stop: 'timeout' must be an integer (seconds, < 0: never)");
		timeout = json_integer_value(jtimeout);
	}
	if (syscall(SYS_pidfd_send_signal, m->pidfd, (int)sig, NULL, 0) < 0 && errno != ESRCH)
		return error_reply("stop: signal %d to init %d: %s", (int)sig, (int)m->init_pid,
				   strerror(errno));
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
			return error_reply("stop: arm the SIGKILL timer: %s", strerror(errno));
	}
	return json_pack("{s:b}", "ok", 1);
}

/* The connection of c becomes the console stream: the reply goes first, then console output;
 * bytes the client sent after its request line are already console input. Returns NULL once c's
 * connection belongs to the console. */
static json_t *op_console(struct monitor *m, struct monitor_client *c, size_t used)
{
	static const char ok[] = "{\"ok\":true}\n";
	struct monitor_console *con = &m->console;

	if (con->fd >= 0)
		return error_reply("console already attached");
	if (m->pty_master < 0)
		return error_reply("console: the pty has hung up");
	*con = (struct monitor_console){ .fd = TAKE_FD(c->fd) };
	memcpy(con->in, c->buf + used, c->len - used);
	con->in_len = c->len - used;
	c->len = 0;
	console_queue_out(m, ok, sizeof(ok) - 1);
	console_flush_in(m);
	log_info("console attached");
	return NULL;
}

static json_t *op_console_resize(struct monitor *m, const json_t *req)
{
	json_t *jw = json_object_get(req, "width"), *jh = json_object_get(req, "height");
	struct winsize ws = { 0 };

	if (!json_is_integer(jw) || !json_is_integer(jh) || json_integer_value(jw) < 1 ||
	    json_integer_value(jw) > USHRT_MAX || json_integer_value(jh) < 1 ||
	    json_integer_value(jh) > USHRT_MAX)
		return error_reply("console-resize: 'width' and 'height' must be numbers from 1 to "
				   "%d",
				   USHRT_MAX);
	if (m->pty_master < 0)
		return error_reply("console-resize: the pty has hung up");
	ws.ws_col = (unsigned short)json_integer_value(jw);
	ws.ws_row = (unsigned short)json_integer_value(jh);
	/* The kernel sends SIGWINCH to the console's foreground process group. */
	if (ioctl(m->pty_master, TIOCSWINSZ, &ws) < 0)
		return error_reply("console-resize: TIOCSWINSZ: %s", strerror(errno));
	return json_pack("{s:b}", "ok", 1);
}

/* The log is written at our own offset: only we can empty it without leaving a hole. */
static json_t *op_console_log_clear(struct monitor *m)
{
	if (m->log_fd >= 0 && ftruncate(m->log_fd, 0) < 0)
		return error_reply("console-log-clear: truncate %s: %s", m->spec->console_log,
				   strerror(errno));
	m->log_size = 0;
	return json_pack("{s:b}", "ok", 1);
}

/* The request is c->buf[0..len); used is where the bytes after its line start. */
static json_t *handle_request(struct monitor *m, struct monitor_client *c, size_t len, size_t used)
{
	const char *line = c->buf;
	_cleanup_json_ json_t *req = NULL;
	json_error_t jerr;
	const char *op;

	req = json_loadb(line, len, 0, &jerr);
	if (!req)
		return error_reply("invalid request: %s", jerr.text);
	op = json_string_value(json_object_get(req, "op"));
	if (!json_is_object(req) || !op)
		return error_reply("invalid request: expected an object with a string 'op'");
	if (streq(op, "status"))
		return json_pack("{s:s,s:I,s:I,s:I}", "status", "Running", "init_pid",
				 (json_int_t)m->init_pid, "monitor_pid", (json_int_t)m->pid,
				 "started_at", (json_int_t)m->started_at);
	if (streq(op, "stop"))
		return op_stop(m, req);
	if (streq(op, "console"))
		return op_console(m, c, used);
	if (streq(op, "console-resize"))
		return op_console_resize(m, req);
	if (streq(op, "console-log-clear"))
		return op_console_log_clear(m);
	if (streq(op, "kill")) {
		if (syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0) < 0 &&
		    errno != ESRCH)
			return error_reply("kill: SIGKILL to init %d: %s", (int)m->init_pid,
					   strerror(errno));
		log_info("kill: SIGKILL to init %d", (int)m->init_pid);
		return json_pack("{s:b}", "ok", 1);
	}
	return error_reply("unknown op '%s' (expected status, stop, kill, console, "
			   "console-resize or console-log-clear)",
			   op);
}

/* Answers once and hangs up: one request per connection. The reply is small and the socket
 * fresh, so a non-blocking send fits; a client that reads nothing loses only its own reply. A
 * connection that became the console (fd taken) gets no reply here. */
static void client_reply(struct monitor_client *c, json_t *reply)
{
	_cleanup_json_ json_t *owned = reply;
	_cleanup_free_ char *s = NULL;

	if (c->fd < 0)
		return;
	s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	if (s) {
		struct iovec iov[2] = { { s, strlen(s) }, { (char *)"\n", 1 } };
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };

		(void)sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	client_close(c);
}

static void client_read(struct monitor *m, struct monitor_client *c)
{
	char *nl;
	ssize_t n;

	n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			client_close(c);
		return;
	}
	c->len += (size_t)n;
	nl = memchr(c->buf, '\n', c->len);
	if (nl) {
		client_reply(
			c, handle_request(m, c, (size_t)(nl - c->buf), (size_t)(nl - c->buf) + 1));
		return;
	}
	if (n == 0) {
		/* A client that shut down its side without a newline still gets its answer. */
		if (c->len > 0)
			client_reply(c, handle_request(m, c, c->len, c->len));
		else
			client_close(c);
		return;
	}
	if (c->len == sizeof(c->buf))
		client_reply(c,
			     error_reply("request longer than %d bytes", LXM_MONITOR_LINE_MAX - 1));
}

static void accept_clients(struct monitor *m)
{
	for (;;) {
		int fd = accept4(m->ctl_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct monitor_client *slot = NULL;

		if (fd < 0)
			return;
		for (size_t i = 0; i < MONITOR_MAX_CLIENTS; i++)
			if (m->clients[i].fd < 0) {
				slot = &m->clients[i];
				break;
			}
		if (!slot) {
			struct monitor_client busy = { .fd = fd };

			client_reply(&busy, error_reply("monitor busy: %d requests in progress",
							MONITOR_MAX_CLIENTS));
			continue;
		}
		slot->fd = fd;
		slot->len = 0;
		slot->deadline = lxm_monotonic_ms() + MONITOR_CLIENT_TIMEOUT_MS;
	}
}

/* ---- the loop ---- */

static void handle_signals(struct monitor *m)
{
	struct signalfd_siginfo si;

	while (read(m->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			reap_init(m, false);
		else
			log_info("ignoring signal %d from pid %u: the container keeps running",
				 (int)si.ssi_signo, si.ssi_pid);
	}
}

static void handle_kill_timer(struct monitor *m)
{
	uint64_t expirations;

	if (read(m->timer_fd, &expirations, sizeof(expirations)) != sizeof(expirations))
		return;
	log_info("stop: timeout reached, SIGKILL to init %d", (int)m->init_pid);
	(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
}

enum { POLL_INIT, POLL_PTY, POLL_CTL, POLL_SIG, POLL_TIMER, POLL_CONSOLE, POLL_CLIENTS, _POLL_MAX };

/* Serves until init has exited and been reaped. */
static void run_loop(struct monitor *m)
{
	struct pollfd p[POLL_CLIENTS + MONITOR_MAX_CLIENTS];

	while (!m->init_reaped) {
		uint64_t now = lxm_monotonic_ms();
		int timeout = -1;
		bool pty_open = m->pty_master >= 0;

		p[POLL_INIT] = (struct pollfd){ .fd = m->pidfd, .events = POLLIN };
		/* Console input waits for the pty to take it; the client is not read meanwhile. */
		p[POLL_PTY] = (struct pollfd){
			.fd = m->pty_master,
			.events = (short)(POLLIN | (m->console.in_len ? POLLOUT : 0)),
		};
		p[POLL_CONSOLE] = (struct pollfd){
			.fd = m->console.fd,
			.events = (short)((m->console.in_len ? 0 : POLLIN) |
					  (m->console.out_len ? POLLOUT : 0)),
		};
		p[POLL_CTL] = (struct pollfd){ .fd = m->ctl_fd, .events = POLLIN };
		p[POLL_SIG] = (struct pollfd){ .fd = m->sig_fd, .events = POLLIN };
		p[POLL_TIMER] = (struct pollfd){ .fd = m->timer_fd, .events = POLLIN };
		for (size_t i = 0; i < MONITOR_MAX_CLIENTS; i++) {
			struct monitor_client *c = &m->clients[i];

			p[POLL_CLIENTS + i] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
			if (c->fd < 0)
				continue;
			if (c->deadline <= now) {
				client_close(c);
				p[POLL_CLIENTS + i].fd = -1;
				continue;
			}
			if (timeout < 0 || (int)(c->deadline - now) < timeout)
				timeout = (int)(c->deadline - now);
		}

		if (poll(p, ARRAY_SIZE(p), timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			usleep(100 * 1000);
			continue;
		}
		if (pty_open && p[POLL_PTY].revents) {
			console_drain(m);
			if (p[POLL_PTY].revents & POLLOUT)
				console_flush_in(m);
			/* Cannot happen while we hold the slave, but a hung-up pty must not spin.
			 */
			if (p[POLL_PTY].revents & (POLLHUP | POLLERR | POLLNVAL)) {
				close(m->pty_master);
				m->pty_master = -1;
			}
		}
		/* The pty step may have detached the client that was polled. */
		if (m->console.fd >= 0 && p[POLL_CONSOLE].fd == m->console.fd) {
			short rev = p[POLL_CONSOLE].revents;

			if (rev & POLLOUT)
				console_flush_out(m);
			if (m->console.fd >= 0 && (rev & (POLLIN | POLLHUP | POLLERR)))
				console_read_client(m, rev);
		}
		if (p[POLL_SIG].revents)
			handle_signals(m);
		if (m->timer_fd >= 0 && p[POLL_TIMER].revents)
			handle_kill_timer(m);
		for (size_t i = 0; i < MONITOR_MAX_CLIENTS; i++)
			if (m->clients[i].fd >= 0 && p[POLL_CLIENTS + i].revents)
				client_read(m, &m->clients[i]);
		if (p[POLL_CTL].revents)
			accept_clients(m);
		if (p[POLL_INIT].revents)
			reap_init(m, false);
	}
}

/* <rundir>/exit.json, written atomically so lxmd never reads half of it. */
static void write_exit_status(struct monitor *m)
{
	_cleanup_json_ json_t *j = NULL;
	_cleanup_free_ char *path = NULL, *s = NULL;
	int r;

	if (m->init_exit.si_code == CLD_EXITED)
		j = json_pack("{s:i,s:I}", "exit_code", m->init_exit.si_status, "stopped_at",
			      (json_int_t)lxm_now_ns());
	else
		j = json_pack("{s:i,s:I}", "signal", m->init_exit.si_status, "stopped_at",
			      (json_int_t)lxm_now_ns());
	if (!j || !(s = json_dumps(j, JSON_COMPACT)) ||
	    asprintf(&path, "%s/exit.json", m->spec->rundir) < 0) {
		log_error("write exit status: out of memory");
		return;
	}
	r = lxm_write_file_atomic(path, s, strlen(s), 0600);
	if (r < 0)
		log_error("write exit status %s: %s", path, strerror(-r));
}

static void monitor_free(struct monitor *m)
{
	int *fds[] = { &m->pidfd,  &m->sync_fd,	 &m->pty_master, &m->pty_slave, &m->ctl_fd,
		       &m->sig_fd, &m->timer_fd, &m->cgroup_fd,	 &m->log_fd };

	if (!m)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (*fds[i] >= 0)
			close(*fds[i]);
	for (size_t i = 0; i < MONITOR_MAX_CLIENTS; i++)
		client_close(&m->clients[i]);
	console_detach(m);
	lxm_container_spec_free(m->spec);
	free(m);
}

static struct monitor *monitor_new(void)
{
	struct monitor *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->pidfd = m->sync_fd = m->pty_master = m->pty_slave = m->ctl_fd = -1;
	m->sig_fd = m->timer_fd = m->cgroup_fd = m->log_fd = -1;
	for (size_t i = 0; i < MONITOR_MAX_CLIENTS; i++)
		m->clients[i].fd = -1;
	m->console.fd = -1;
	m->pid = getpid();
	return m;
}

/* From the fork to the ready line. On failure err says what failed, without the "start" context. */
static int start_container(struct monitor *m, struct lxm_error **err)
{
	int r;

	r = setup_stdio(m->spec, err);
	if (r < 0)
		return r;
	r = setup_signals(m, err);
	if (r < 0)
		return r;
	r = open_console(m, err);
	if (r < 0)
		return r;
	r = open_control_socket(m, err);
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

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s start <spec.json>\n"
		"Creates the container described by spec.json, prints one JSON line on stdout\n"
		"and supervises its init in the background (see lxmd/monitor/monitor.h).\n",
		LXM_MONITOR_NAME);
}

int lxm_monitor_start_main(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_container_spec *spec = NULL;
	struct monitor *m;
	int r, status;

	if (argc == 2 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc != 2) {
		usage(stderr);
		return 2;
	}

	/* Nothing of lxmd's but the stdio it gave us may live on in a process that outlives it. */
	close_range(3, ~0U, 0);

	r = lxm_container_spec_load(argv[1], &spec, &err);
	if (r < 0) {
		lxm_error_prefix(&err, "start");
		print_error_line(err->msg);
		return 1;
	}
	/* Optional in a spec (lxmd fills them in), required to run a monitor. */
	if (!spec->rundir || !spec->control_socket) {
		lxm_error_set(&err, -EINVAL, 400, "start '%s': spec %s: field '%s' is required",
			      spec->name, argv[1], spec->rundir ? "control_socket" : "rundir");
		print_error_line(err->msg);
		lxm_container_spec_free(spec);
		return 1;
	}
	if (!detach(&status)) {
		lxm_container_spec_free(spec);
		return status;
	}

	m = monitor_new();
	if (!m) {
		print_error_line("start: out of memory");
		lxm_container_spec_free(spec);
		_exit(1);
	}
	m->spec = spec;
	r = start_container(m, &err);
	if (r < 0) {
		lxm_error_prefix(&err, "start '%s'", spec->name);
		log_error("%s", err->msg);
		undo_start(m);
		print_error_line(err->msg);
		monitor_free(m);
		return 1;
	}

	m->started_at = lxm_now_ns();
	close(m->sync_fd);
	m->sync_fd = -1;
	console_log_open(m);
	log_info("container '%s' running: init pid %d, monitor pid %d", spec->name,
		 (int)m->init_pid, (int)m->pid);
	if (write_json_line(STDOUT_FILENO, json_pack("{s:s,s:I,s:I}", "status", "Running",
						     "init_pid", (json_int_t)m->init_pid,
						     "monitor_pid", (json_int_t)m->pid)) < 0)
		log_warn("cannot write the ready line (lxmd gone?); the container keeps running");
	/* lxmd sees EOF after the line; the container does not depend on lxmd's pipe. */
	dup2(STDIN_FILENO, STDOUT_FILENO);

	run_loop(m);

	console_drain(m);
	if (m->init_exit.si_code == CLD_EXITED)
		log_info("init exited with status %d", m->init_exit.si_status);
	else
		log_info("init was killed by signal %d", m->init_exit.si_status);
	write_exit_status(m);
	remove_cgroups(spec);
	if (m->ctl_created)
		unlink(spec->control_socket);
	monitor_free(m);
	return 0;
}
