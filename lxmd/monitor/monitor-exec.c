/* lxm-monitor exec: runs one command inside a running container.
 *
 *     lxm-monitor exec <spec.json> <init_pid> [--uid U] [--gid G] [--cwd DIR] [--env K=V]...
 *                      [--pty [--width W] [--height H]] -- CMD [ARG...]
 *
 * The helper is started by lxmd with the command's stdio (pipes, or /dev/null with --pty) and a
 * SOCK_SEQPACKET socket on fd 3, its report channel. It enters the container's cgroups while it
 * still sees the host's cgroup tree, then joins every namespace of init at once with
 * setns(pidfd), and forks: only a child enters the pid namespace. With --pty the pty pair comes
 * from the container's own /dev/ptmx (its devpts instance), so that the terminal belongs to the
 * container and window-size changes reach the command.
 *
 * The child takes the pty or the pipes as stdio, drops every other fd, takes the spec's LSM label,
 * capability bounding set and seccomp filter, switches to the requested user and group and execs
 * CMD, searched in the container's PATH inside the container's mount namespace: no host binary is
 * ever executed there. A failure before or at exec reaches the helper through a close-on-exec pipe.
 * A command that cannot be executed also says so on its own stderr, as a shell would.
 *
 * Report channel (fd 3), one JSON message per packet:
 *   {"pid":N}                 the command runs; SCM_RIGHTS carries its pidfd, and with --pty
 *                             the pty master after it
 *   {"exec_error":E,"command":"sh"}  exec failed with errno E (the exit status is 127 or 126)
 *   {"error":"exec in 'c1': ..."}    the helper could not start the command (exit status 1)
 * Without fd 3 (run by hand) errors go to stderr only.
 *
 * The helper forwards the signals it receives to the command, waits for it and exits with its
 * status: the exit code, or 128+N after signal N. The command dies with the helper (its parent
 * death signal is SIGKILL), so killing the helper never leaves it behind. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>

#include "cleanup.h"
#include "container/setup.h"
#include "container/spec.h"
#include "error.h"
#include "json.h"
#include "monitor/monitor.h"
#include "util.h"

/* The fd on which lxmd listens for the helper's report. */
#define REPORT_FD 3
/* Exit status when the helper itself fails (the report says why). */
#define EXIT_HELPER_FAILED 1
/* Exit statuses of a command that could not be executed, as shells use them. */
#define EXIT_NOT_FOUND	    127
#define EXIT_NOT_EXECUTABLE 126

/* LXD's default PATH for exec. */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

extern char **environ;

struct exec_args {
	const char *spec_path; /* the container's spec.json */
	pid_t init_pid;	       /* its init, in our pid namespace */
	uid_t uid;	       /* user inside the container */
	gid_t gid;	       /* group inside the container */
	const char *cwd;       /* working directory, NULL for the user's home or / */
	char **env;	       /* "K=V" from --env (pointers into argv), n_env entries */
	size_t n_env;	       /* entries in env */
	bool pty;	       /* allocate a pty in the container */
	unsigned short width;  /* initial pty columns (0: leave the default) */
	unsigned short height; /* initial pty rows */
	char **cmd;	       /* the command, NULL-terminated (points into argv) */
};

/* What the child sends through its close-on-exec pipe when it fails before or at exec. */
struct child_failure {
	int errnum;	/* positive errno */
	bool at_exec;	/* execvp() itself failed */
	bool full;	/* step is a whole message that names its cause */
	char step[400]; /* "change directory to /x", or the command at exec */
};

/* What the child needs besides the spec and the arguments. */
struct child_ctx {
	int slave;	      /* the pty slave, or -1 */
	int pipe_w;	      /* where a failure is reported (close-on-exec) */
	pid_t parent;	      /* what getppid() says while the helper lives */
	bool loud;	      /* no report channel: print failures on stderr too */
	const sigset_t *mask; /* the signal mask to restore */
};

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_container_spec *, lxm_container_spec_free)

/* The helper is in the container's user namespace (see helper_exit()). */
static bool joined_user_ns;

/* Signals the helper passes on to the command instead of acting on them. */
static const int forwarded_signals[] = {
	SIGHUP,	 SIGINT,  SIGQUIT, SIGABRT, SIGUSR1,  SIGUSR2, SIGALRM, SIGTERM,
	SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH, SIGURG,  SIGPWR,
};

/* ---- arguments ---- */

static int parse_uint(const char *s, unsigned long max, unsigned long *ret)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* Options take their value as the next argument or after '='. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);

	if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (!streq(argv[*i], name) || *i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

static bool is_option(const char *arg, const char *name)
{
	size_t n = strlen(name);

	return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static int parse_args(int argc, char **argv, struct exec_args *a, struct lxm_error **err)
{
	const char *pos[2] = { NULL, NULL };
	size_t n_pos = 0;
	unsigned long v;
	int i = 1;

	*a = (struct exec_args){ .init_pid = -1 };
	/* Called with argv[0] = "exec" by monitor.c; tolerate the program name before it too. */
	if (argc > 1 && streq(argv[1], "exec"))
		i = 2;
	a->env = calloc((size_t)argc, sizeof(char *));
	if (!a->env)
		return lxm_error_set(err, -ENOMEM, 500, "exec: out of memory");
	for (; i < argc; i++) {
		const char *arg = argv[i], *val;

		if (streq(arg, "--")) {
			a->cmd = argv + i + 1;
			break;
		}
		if (streq(arg, "--pty")) {
			a->pty = true;
			continue;
		}
		if (is_option(arg, "--uid") || is_option(arg, "--gid") || is_option(arg, "--cwd") ||
		    is_option(arg, "--env") || is_option(arg, "--width") ||
		    is_option(arg, "--height")) {
			char name[16];

			snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg, "="), arg);
			val = option_value(argc, argv, &i, name);
			if (!val)
				return lxm_error_set(err, -EINVAL, 400, "exec: %s needs a value",
						     name);
			if (streq(name, "--cwd")) {
				a->cwd = val;
			} else if (streq(name, "--env")) {
				if (!strchr(val, '=') || val[0] == '=')
					return lxm_error_set(err, -EINVAL, 400,
							     "exec: --env '%s': expected K=V", val);
				a->env[a->n_env++] = (char *)val;
			} else if (parse_uint(val,
					      streq(name, "--uid") || streq(name, "--gid")
						      ? 0xfffffffeUL
						      : 0xffffUL,
					      &v) < 0) {
				return lxm_error_set(err, -EINVAL, 400,
						     "exec: %s '%s': not a number", name, val);
			} else if (streq(name, "--uid")) {
				a->uid = (uid_t)v;
			} else if (streq(name, "--gid")) {
				a->gid = (gid_t)v;
			} else if (streq(name, "--width")) {
				a->width = (unsigned short)v;
			} else {
				a->height = (unsigned short)v;
			}
			continue;
		}
		if (arg[0] == '-' && arg[1])
			return lxm_error_set(err, -EINVAL, 400, "exec: unknown option '%s'", arg);
		if (n_pos >= ARRAY_SIZE(pos))
			return lxm_error_set(err, -EINVAL, 400,
					     "exec: unexpected argument '%s' (the command goes "
					     "after '--')",
					     arg);
		pos[n_pos++] = arg;
	}
	if (n_pos < 2)
		return lxm_error_set(
			err, -EINVAL, 400,
			"usage: lxm-monitor exec <spec.json> <init_pid> [--uid U] "
			"[--gid G] [--cwd DIR] [--env K=V]... [--pty] -- CMD [ARG...]");
	if (!a->cmd || !a->cmd[0])
		return lxm_error_set(err, -EINVAL, 400, "exec: no command after '--'");
	if (parse_uint(pos[1], 0x3fffffffUL, &v) < 0 || v == 0)
		return lxm_error_set(err, -EINVAL, 400, "exec: invalid init pid '%s'", pos[1]);
	a->spec_path = pos[0];
	a->init_pid = (pid_t)v;
	return 0;
}

/* ---- the report channel ---- */

/* Sends one JSON message (stolen) with up to two fds; fds < 0 are left out. */
static int report_send(int sock, json_t *msg, int fd1, int fd2)
{
	_cleanup_free_ char *text = NULL;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} control;
	struct iovec iov;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[2], n = 0;

	text = msg ? lxm_json_dump(msg) : NULL;
	json_decref(msg);
	if (sock < 0)
		return 0;
	if (!text)
		return -ENOMEM;
	iov = (struct iovec){ .iov_base = text, .iov_len = strlen(text) };
	if (fd1 >= 0)
		fds[n++] = fd1;
	if (fd2 >= 0)
		fds[n++] = fd2;
	if (n > 0) {
		struct cmsghdr *c;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)n * sizeof(int));
	}
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* fd 3 when lxmd passed a socket there, else -1. */
static int report_fd(void)
{
	struct stat st;

	if (fstat(REPORT_FD, &st) < 0 || !S_ISSOCK(st.st_mode))
		return -1;
	/* Never inherited by the command, whatever happens to the close-all below. */
	(void)fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);
	return REPORT_FD;
}

/* ---- joining ---- */

static int pidfd_open_(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : fd;
}

/* Puts the helper into one cgroup dir: its cgroup.procs, or, on the unified hierarchy where the
 * container's own cgroup has enabled controllers for its children (no process may live there
 * then), a leaf ".lxm-exec" below it. */
static int join_cgroup_dir(const char *dir, bool unified, const char **ret_where)
{
	_cleanup_free_ char *path = NULL, *leaf = NULL;
	_cleanup_close_ int fd = -1;
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d", (int)getpid());

	if (asprintf(&path, "%s/cgroup.procs", dir) < 0)
		return -ENOMEM;
	*ret_where = dir;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, pid, (size_t)n) == n)
		return 0;
	if (errno != EBUSY || !unified)
		return -errno;
	if (asprintf(&leaf, "%s/.lxm-exec", dir) < 0)
		return -ENOMEM;
	if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
		return -errno;
	free(path);
	path = NULL;
	if (asprintf(&path, "%s/cgroup.procs", leaf) < 0)
		return -ENOMEM;
	lxm_closep(&fd);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, pid, (size_t)n) != n)
		return -errno;
	return 0;
}

/* Before setns: afterwards the host's cgroup tree is out of sight (and out of reach). */
static int join_cgroups(const struct lxm_container_spec *s, struct lxm_error **err)
{
	const char *where = NULL;
	int k;

	if (s->cgroup_v2) {
		k = join_cgroup_dir(s->cgroup_v2, true, &where);
		if (k < 0)
			return lxm_error_setx(err, k, 500, "join cgroup %s", where);
	}
	for (char **d = s->cgroup_v1; d && *d; d++) {
		k = join_cgroup_dir(*d, false, &where);
		if (k < 0)
			return lxm_error_setx(err, k, 500, "join cgroup %s", where);
	}
	return 0;
}

static const struct {
	int flag;	  /* CLONE_NEW* */
	const char *name; /* under /proc/<pid>/ns */
} namespaces[] = {
	{ CLONE_NEWUSER, "user" },     { CLONE_NEWNS, "mnt" },	  { CLONE_NEWPID, "pid" },
	{ CLONE_NEWUTS, "uts" },       { CLONE_NEWIPC, "ipc" },	  { CLONE_NEWNET, "net" },
	{ CLONE_NEWCGROUP, "cgroup" }, { CLONE_NEWTIME, "time" },
};

/* The namespaces of init that differ from ours: setns() refuses to join our own user namespace,
 * and a kernel without time namespaces has no "time" entry. */
static int namespace_flags(pid_t pid, int pidfd, const struct lxm_container_spec *s, int *ret,
			   struct lxm_error **err)
{
	int flags = 0;

	for (size_t i = 0; i < ARRAY_SIZE(namespaces); i++) {
		char theirs[64], ours[64];
		struct stat a, b;

		snprintf(theirs, sizeof(theirs), "/proc/%d/ns/%s", (int)pid, namespaces[i].name);
		snprintf(ours, sizeof(ours), "/proc/self/ns/%s", namespaces[i].name);
		if (stat(ours, &b) < 0)
			continue;
		if (stat(theirs, &a) < 0)
			return lxm_error_setx(err, -errno, 500, "inspect namespaces of pid %d",
					      (int)pid);
		if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
			flags |= namespaces[i].flag;
	}
	/* The pid read through /proc still is the pidfd's process: it has not been reused. */
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
		return lxm_error_set(err, -ESRCH, 400, "init (pid %d) has exited", (int)pid);
	if (!s->privileged && !(flags & CLONE_NEWUSER))
		return lxm_error_set(err, -EPERM, 500,
				     "pid %d shares the host's user namespace but the instance is "
				     "unprivileged: refusing to run the command as host root",
				     (int)pid);
	*ret = flags;
	return 0;
}

/* Takes the container's root ids (so that what the helper creates, the pty, belongs to the
 * container), when the user namespace maps them. */
static void become_container_root(void)
{
	if (setresgid(0, 0, 0) == 0)
		(void)setresuid(0, 0, 0);
	/* A change of credentials resets the dumpable flag to fs.suid_dumpable. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* A pty pair from the container's /dev/ptmx (the mount namespace is the container's now). */
static int open_pty(const struct exec_args *a, int *ret_master, int *ret_slave)
{
	_cleanup_close_ int master = -1, slave = -1;
	int unlock = 0, ptn;

	/* O_NONBLOCK: should /dev/ptmx not be a pty multiplexer, the open must not hang. */
	master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (master < 0)
		return -errno;
	if (ioctl(master, TIOCGPTN, &ptn) < 0)
		return -ENOTTY;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		return -errno;
	/* By the fd, not by a path that the container could replace. */
	slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		return -errno;
	if ((a->uid != 0 || a->gid != 0) && fchown(slave, a->uid, a->gid) < 0)
		return -errno;
	if (a->width > 0 && a->height > 0) {
		struct winsize ws = { .ws_row = a->height, .ws_col = a->width };

		if (ioctl(master, TIOCSWINSZ, &ws) < 0)
			return -errno;
	}
	*ret_master = TAKE_FD(master);
	*ret_slave = TAKE_FD(slave);
	return 0;
}

/* ---- the child ---- */

/* "K=V" entries: LXD's defaults, then --env (a later key replaces an earlier one). */
static char **build_env(const struct exec_args *a)
{
	char **env = calloc(a->n_env + 5, sizeof(char *));
	size_t n = 0;
	struct stat st;

	if (!env)
		return NULL;
	env[n++] = stat("/snap/bin", &st) == 0 ? "PATH=" DEFAULT_PATH ":/snap/bin"
					       : "PATH=" DEFAULT_PATH;
	env[n++] = "LANG=C.UTF-8";
	if (a->uid == 0) {
		env[n++] = "HOME=/root";
		env[n++] = "USER=root";
	}
	for (size_t i = 0; i < a->n_env; i++) {
		size_t klen = strcspn(a->env[i], "=") + 1;
		size_t j;

		for (j = 0; j < n; j++)
			if (strncmp(env[j], a->env[i], klen) == 0)
				break;
		env[j] = a->env[i];
		if (j == n)
			n++;
	}
	env[n] = NULL;
	return env;
}

static const char *env_get(char **env, const char *key)
{
	size_t klen = strlen(key);

	for (; env && *env; env++)
		if (strncmp(*env, key, klen) == 0 && (*env)[klen] == '=')
			return *env + klen + 1;
	return NULL;
}

static __attribute__((noreturn)) void child_fail(const struct child_ctx *c, bool at_exec,
						 int errnum, const char *step)
{
	struct child_failure f = { .errnum = errnum, .at_exec = at_exec };

	snprintf(f.step, sizeof(f.step), "%s", step);
	if (write(c->pipe_w, &f, sizeof(f)) < 0) {
	}
	/* A command that cannot be executed is reported on its stderr, as a shell does; other
	 * failures reach the user as the operation's error. */
	if (c->loud || at_exec)
		dprintf(STDERR_FILENO, "lxm-monitor: exec: %s: %s\n", step, strerror(errnum));
	if (!at_exec)
		_exit(EXIT_HELPER_FAILED);
	_exit(errnum == ENOENT || errnum == ENOTDIR ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE);
}

/* A failure of one of the shared setup functions, whose message says it all. */
static __attribute__((noreturn)) void child_fail_err(const struct child_ctx *c,
						     const struct lxm_error *err, const char *what)
{
	struct child_failure f = { .errnum = err && err->errnum ? err->errnum : EPERM,
				   .full = err && err->msg };

	snprintf(f.step, sizeof(f.step), "%s", err && err->msg ? err->msg : what);
	if (write(c->pipe_w, &f, sizeof(f)) < 0) {
	}
	if (c->loud)
		dprintf(STDERR_FILENO, "lxm-monitor: exec: %s\n", f.step);
	_exit(EXIT_HELPER_FAILED);
}

static int child_stdio(int slave)
{
	if (slave < 0)
		return setsid() < 0 ? -errno : 0;
	if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0)
		return -errno;
	for (int fd = 0; fd <= 2; fd++)
		if (dup2(slave, fd) < 0)
			return -errno;
	return 0;
}

static __attribute__((noreturn)) void
child_run(const struct lxm_container_spec *s, const struct exec_args *a, const struct child_ctx *c)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	const int keep[] = { STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, c->pipe_w };
	const char *cwd = a->cwd;
	char step[256];
	char **env;

	if (sigprocmask(SIG_SETMASK, c->mask, NULL) < 0)
		child_fail(c, false, errno, "restore the signal mask");
	if (child_stdio(c->slave) < 0)
		child_fail(c, false, errno, "set up the terminal");
	if (lxm_close_fds_except(keep, ARRAY_SIZE(keep)) < 0)
		child_fail(c, false, errno, "close inherited fds");
	env = build_env(a);
	if (!env)
		child_fail(c, false, ENOMEM, "build the environment");

	if (!cwd)
		cwd = a->uid == 0 ? "/root" : env_get(env, "HOME");
	if (!cwd || chdir(cwd) < 0) {
		if (a->cwd) {
			snprintf(step, sizeof(step), "change directory to %s", a->cwd);
			child_fail(c, false, errno, step);
		}
		if (chdir("/") < 0)
			child_fail(c, false, errno, "change directory to /");
	}

	/* The LSM label applies at exec; the bounding set and the filter must be set while still
	 * root (the filter needs CAP_SYS_ADMIN unless no_new_privs is on). */
	if (lxm_apply_lsm(s, &err) < 0)
		child_fail_err(c, err, "apply the LSM label");
	if (lxm_apply_capabilities(s, &err) < 0)
		child_fail_err(c, err, "drop capabilities");
	if (lxm_apply_seccomp(s, &err) < 0)
		child_fail_err(c, err, "load the seccomp filter");

	/* setgroups() fails when the user namespace denies it; then there are none to drop. */
	if (setgroups(0, NULL) < 0 && (errno != EPERM || getgroups(0, NULL) != 0))
		child_fail(c, false, errno, "drop supplementary groups");
	if (setresgid(a->gid, a->gid, a->gid) < 0) {
		snprintf(step, sizeof(step), "switch to group %u", (unsigned)a->gid);
		child_fail(c, false, errno, step);
	}
	if (setresuid(a->uid, a->uid, a->uid) < 0) {
		snprintf(step, sizeof(step), "switch to user %u", (unsigned)a->uid);
		child_fail(c, false, errno, step);
	}
	/* The helper's death (lxmd killing it) takes the command along. Set after the credential
	 * change, which clears it; then check that the helper did not die before. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != c->parent)
		_exit(128 + SIGKILL);

	/* execvp() searches the PATH of environ: the container's, never lxmd's. */
	environ = env;
	execvp(a->cmd[0], a->cmd);
	child_fail(c, true, errno, a->cmd[0]);
}

/* ---- the helper ---- */

/* Waits for the command, passing on forwarded signals; returns its wait status. */
static int wait_child(pid_t pid, const sigset_t *set)
{
	for (;;) {
		siginfo_t si;
		int status, sig = sigwaitinfo(set, &si);

		if (sig < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (sig != SIGCHLD) {
			(void)kill(pid, sig);
			continue;
		}
		/* SIGCHLD also reports stops and continues: only an exit ends the wait. */
		for (;;) {
			pid_t r = waitpid(pid, &status, WNOHANG);

			if (r == pid)
				return status;
			if (r == 0 || errno != EINTR)
				break;
		}
	}
}

/* After the fork: hands lxmd the command's pidfd (and the pty master), lets go of the stdio, waits
 * and turns the child's failure report into the helper's answer. Returns the exit status. */
static int supervise(const struct lxm_container_spec *s, const struct exec_args *a, pid_t pid,
		     int report, int pipe_r, int *master, int devnull, const sigset_t *set,
		     struct lxm_error **err)
{
	_cleanup_close_ int child_pidfd = -1;
	struct child_failure f;
	int k, status;
	ssize_t n;

	/* lxmd signals the command through its pidfd: no pid reuse can misdirect a signal. */
	child_pidfd = pidfd_open_(pid);
	k = report_send(report, json_pack("{s:i}", "pid", (int)pid), child_pidfd, *master);
	lxm_closep(master);
	*master = -1;
	/* The command alone holds its stdio now: its end is the end of the streams. */
	for (int fd = 0; fd <= 2; fd++)
		(void)dup2(devnull, fd);
	if (k < 0)
		(void)kill(pid, SIGKILL);

	status = wait_child(pid, set);
	n = read(pipe_r, &f, sizeof(f));
	if (n == (ssize_t)sizeof(f)) {
		f.step[sizeof(f.step) - 1] = '\0';
		if (f.full)
			return lxm_error_set(err, -f.errnum, 500, "exec in '%s': %s", s->name,
					     f.step);
		if (!f.at_exec)
			return lxm_error_set(err, -f.errnum, 500, "exec in '%s': %s: %s", s->name,
					     f.step, strerror(f.errnum));
		(void)report_send(
			report,
			json_pack("{s:i, s:s}", "exec_error", f.errnum, "command", a->cmd[0]), -1,
			-1);
	}
	if (status < 0)
		return lxm_error_setx(err, status, 500, "exec in '%s': wait for the command",
				      s->name);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static int run(const struct exec_args *a, int report, struct lxm_error **err)
{
	_cleanup_(lxm_container_spec_freep) struct lxm_container_spec *s = NULL;
	_cleanup_close_ int pidfd = -1, master = -1, slave = -1, pipe_r = -1, devnull = -1;
	int pipefd[2] = { -1, -1 };
	struct child_ctx c = { .slave = -1, .loud = report < 0 };
	sigset_t set, old;
	pid_t pid;
	int k, flags = 0;

	k = lxm_container_spec_load(a->spec_path, &s, err);
	if (k < 0)
		return lxm_error_prefix(err, "exec");
	/* The host's, opened before the container's /dev is all there is to see. */
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		return lxm_error_setx(err, -errno, 500, "exec in '%s': open /dev/null", s->name);
	pidfd = pidfd_open_(a->init_pid);
	if (pidfd < 0)
		return lxm_error_setx(err, pidfd, pidfd == -ESRCH ? 400 : 500,
				      "exec in '%s': open init (pid %d)", s->name,
				      (int)a->init_pid);

	k = join_cgroups(s, err);
	if (k < 0)
		return lxm_error_prefix(err, "exec in '%s'", s->name);
	k = namespace_flags(a->init_pid, pidfd, s, &flags, err);
	if (k < 0)
		return lxm_error_prefix(err, "exec in '%s'", s->name);
	if (setns(pidfd, flags) < 0)
		return lxm_error_setx(err, -errno, 500, "exec in '%s': join namespaces of pid %d",
				      s->name, (int)a->init_pid);
	if (flags & CLONE_NEWUSER) {
		joined_user_ns = true;
		become_container_root();
	}
	if (a->pty) {
		k = open_pty(a, &master, &slave);
		if (k < 0)
			return lxm_error_setx(err, k, 500,
					      "exec in '%s': allocate a pty from the container's "
					      "/dev/ptmx",
					      s->name);
	}

	/* Forwarded signals and SIGCHLD are taken with sigwaitinfo(); the child restores old. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded_signals); i++)
		sigaddset(&set, forwarded_signals[i]);
	if (sigprocmask(SIG_BLOCK, &set, &old) < 0 || pipe2(pipefd, O_CLOEXEC) < 0)
		return lxm_error_setx(err, -errno, 500, "exec in '%s': prepare the command",
				      s->name);
	pipe_r = pipefd[0];
	c.slave = slave;
	c.pipe_w = pipefd[1];
	c.mask = &old;
	/* Outside the container's pid namespace the helper is invisible: getppid() gives 0. */
	c.parent = (flags & CLONE_NEWPID) ? 0 : getpid();
	pid = fork();
	if (pid < 0) {
		k = -errno;
		close(pipefd[1]);
		return lxm_error_setx(err, k, 500, "exec in '%s': fork", s->name);
	}
	if (pid == 0)
		child_run(s, a, &c);
	close(pipefd[1]);
	lxm_closep(&slave);
	slave = -1;
	return supervise(s, a, pid, report, pipe_r, &master, devnull, &set, err);
}

/* Ends the helper. Once it joined a user namespace, nothing may run at exit: a leak checker
 * (LSan, in sanitizer builds) would try to ptrace the process from there and spin forever. */
static __attribute__((noreturn)) void helper_exit(int status)
{
	fflush(stdout);
	fflush(stderr);
	_exit(status);
}

int lxm_monitor_exec_main(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct exec_args a;
	int report, r;

	/* Nothing in the container may ptrace the helper or read its memory. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	report = report_fd();
	r = parse_args(argc, argv, &a, &err);
	if (r == 0)
		r = run(&a, report, &err);
	free(a.env);
	if (r >= 0 && joined_user_ns)
		helper_exit(r);
	if (r >= 0)
		return r;
	/* lxmd makes the operation fail with this message; by hand, stderr says it. */
	if (report >= 0)
		(void)report_send(
			report, json_pack("{s:s}", "error", err && err->msg ? err->msg : "failed"),
			-1, -1);
	else
		fprintf(stderr, "lxm-monitor: %s\n", err && err->msg ? err->msg : strerror(-r));
	if (joined_user_ns)
		helper_exit(EXIT_HELPER_FAILED);
	return EXIT_HELPER_FAILED;
}
