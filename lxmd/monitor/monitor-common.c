/* lxm-monitor: what the container and VM modes share (monitor-common.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "monitor/monitor-common.h"
#include "monitor/monitor.h"

/* Writes j as one line to fd and releases it. */
int monitor_write_json_line(int fd, json_t *j)
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
void monitor_print_error_line(const char *msg)
{
	if (monitor_write_json_line(STDOUT_FILENO, json_pack("{s:s}", "error", msg)) < 0)
		log_error("cannot report to lxmd: %s", msg);
}

bool monitor_check_args(int argc, char **argv, const char *mode, const char *what, int *ret_status)
{
	bool help = argc == 2 && (streq(argv[1], "--help") || streq(argv[1], "-h"));

	if (help || argc != 2) {
		fprintf(help ? stdout : stderr, "Usage: %s %s <spec.json>\n%s", LXM_MONITOR_NAME,
			mode, what);
		*ret_status = help ? 0 : 2;
		return false;
	}
	/* Nothing of lxmd's but the stdio it gave us may live on in a process that outlives it. */
	close_range(3, ~0U, 0);
	return true;
}

int monitor_load_failed(struct lxm_error **err)
{
	lxm_error_prefix(err, "start");
	monitor_print_error_line((*err)->msg);
	return 1;
}

struct monitor *monitor_new_detached(const struct monitor_ops *ops, int *ret_status)
{
	struct monitor *m;

	if (!monitor_detach(ret_status))
		return NULL;
	m = monitor_new(ops);
	if (!m) {
		monitor_print_error_line("start: out of memory");
		_exit(1);
	}
	return m;
}

void monitor_set_instance(struct monitor *m, const char *name, const char *rundir,
			  const char *control_socket, const char *console_log,
			  uint64_t console_log_max)
{
	m->name = name;
	m->rundir = rundir;
	m->control_socket = control_socket;
	m->console_log = console_log;
	m->console_log_max = console_log_max;
}

int monitor_setup(struct monitor *m, int (*open_console)(struct monitor *m, struct lxm_error **err),
		  struct lxm_error **err)
{
	int r;

	r = monitor_setup_stdio(m->rundir, err);
	if (r < 0)
		return r;
	r = monitor_setup_signals(m, err);
	if (r < 0)
		return r;
	r = open_console(m, err);
	if (r < 0)
		return r;
	return monitor_open_control_socket(m, err);
}

void monitor_start_failed(struct monitor *m, struct lxm_error **err,
			  void (*undo)(struct monitor *m))
{
	lxm_error_prefix(err, "start '%s'", m->name);
	log_error("%s", (*err)->msg);
	undo(m);
	monitor_print_error_line((*err)->msg);
}

void monitor_report_running(struct monitor *m, const char *what)
{
	if (monitor_write_json_line(STDOUT_FILENO, json_pack("{s:s,s:I,s:I}", "status", "Running",
							     "init_pid", (json_int_t)m->init_pid,
							     "monitor_pid", (json_int_t)m->pid)) <
	    0)
		log_warn("cannot write the ready line (lxmd gone?); the %s keeps running", what);
	/* lxmd sees EOF after the line; the instance does not depend on lxmd's pipe. */
	dup2(STDIN_FILENO, STDOUT_FILENO);
}

void monitor_log_exit(struct monitor *m, const char *what)
{
	if (m->init_exit.si_code == CLD_EXITED)
		log_info("%s exited with status %d", what, m->init_exit.si_status);
	else
		log_info("%s was killed by signal %d", what, m->init_exit.si_status);
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
	monitor_print_error_line(msg);
}

bool monitor_detach(int *ret_status)
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
int monitor_setup_stdio(const char *rundir, struct lxm_error **err)
{
	_cleanup_free_ char *log_path = NULL;
	_cleanup_close_ int null_fd = -1, log_fd = -1;
	int r;

	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0)
		return lxm_error_setx(err, -errno, 500, "open /dev/null");
	if (dup2(null_fd, STDIN_FILENO) < 0)
		return lxm_error_setx(err, -errno, 500, "redirect stdin");

	r = lxm_mkdir_p(rundir, 0700);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "create run directory %s", rundir);
	if (asprintf(&log_path, "%s/monitor.log", rundir) < 0)
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

/* The console: a pty on the host's devpts. Not openpty(), which opens both ends without
 * O_CLOEXEC; TIOCGPTPEER opens the slave from the master without a path lookup. */
int monitor_open_console(struct monitor *m, struct lxm_error **err)
{
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

	return 0;
}

/* Binds the control socket (mode 0600). A socket file nobody listens on is a leftover of a
 * monitor that died and is replaced; one that answers means this container already has a
 * monitor. */
int monitor_open_control_socket(struct monitor *m, struct lxm_error **err)
{
	const char *path = m->control_socket;
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
int monitor_setup_signals(struct monitor *m, struct lxm_error **err)
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
void monitor_remove_cgroups(const char *v2, char **v1)
{
	uint64_t deadline = lxm_monotonic_ms() + MONITOR_RMDIR_TIMEOUT_MS;
	bool busy;

	do {
		busy = false;
		if (v2 && rmdir_cgroup_tree(v2, 0) == -EBUSY)
			busy = true;
		for (char **d = v1; d && *d; d++)
			if (rmdir_cgroup_tree(*d, 0) == -EBUSY)
				busy = true;
		if (busy)
			usleep(10 * 1000);
	} while (busy && lxm_monotonic_ms() < deadline);

	if (v2 && access(v2, F_OK) == 0)
		log_warn("cgroup %s is still in use; left for lxmd to remove", v2);
	for (char **d = v1; d && *d; d++)
		if (access(*d, F_OK) == 0)
			log_warn("cgroup %s is still in use; left for lxmd to remove", *d);
}

void monitor_reap_init(struct monitor *m, bool block)
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

/* ---- the console ---- */

void monitor_console_log_open(struct monitor *m)
{
	const char *path = m->console_log;
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
	uint64_t max = m->console_log_max;

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
				 m->console_log, strerror(errno));
			close(m->log_fd);
			m->log_fd = -1;
			return;
		}
	}
	if (pwrite(m->log_fd, data, n, (off_t)m->log_size) != (ssize_t)n) {
		log_warn("console log %s: write: %s; console output is dropped", m->console_log,
			 strerror(errno));
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
void monitor_console_drain(struct monitor *m)
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

json_t *monitor_error_reply(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:s}", "error", msg);
}

/* The connection of c becomes the console stream: the reply goes first, then console output;
 * bytes the client sent after its request line are already console input. Returns NULL once c's
 * connection belongs to the console. */
json_t *monitor_status_reply(struct monitor *m)
{
	return json_pack("{s:s,s:I,s:I,s:I}", "status", "Running", "init_pid",
			 (json_int_t)m->init_pid, "monitor_pid", (json_int_t)m->pid, "started_at",
			 (json_int_t)m->started_at);
}

static json_t *op_console(struct monitor *m, struct monitor_client *c, size_t used)
{
	static const char ok[] = "{\"ok\":true}\n";
	struct monitor_console *con = &m->console;

	if (con->fd >= 0)
		return monitor_error_reply("console already attached");
	if (m->pty_master < 0)
		return monitor_error_reply("console: the pty has hung up");
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
		return monitor_error_reply(
			"console-resize: 'width' and 'height' must be numbers from 1 to "
			"%d",
			USHRT_MAX);
	if (m->pty_master < 0)
		return monitor_error_reply("console-resize: the pty has hung up");
	ws.ws_col = (unsigned short)json_integer_value(jw);
	ws.ws_row = (unsigned short)json_integer_value(jh);
	/* The kernel sends SIGWINCH to the console's foreground process group. */
	if (ioctl(m->pty_master, TIOCSWINSZ, &ws) < 0)
		return monitor_error_reply("console-resize: TIOCSWINSZ: %s", strerror(errno));
	return json_pack("{s:b}", "ok", 1);
}

/* The log is written at our own offset: only we can empty it without leaving a hole. */
static json_t *op_console_log_clear(struct monitor *m)
{
	if (m->log_fd >= 0 && ftruncate(m->log_fd, 0) < 0)
		return monitor_error_reply("console-log-clear: truncate %s: %s", m->console_log,
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
		return monitor_error_reply("invalid request: %s", jerr.text);
	op = json_string_value(json_object_get(req, "op"));
	if (!json_is_object(req) || !op)
		return monitor_error_reply(
			"invalid request: expected an object with a string 'op'");
	if (streq(op, "console"))
		return op_console(m, c, used);
	if (streq(op, "console-resize"))
		return op_console_resize(m, req);
	if (streq(op, "console-log-clear"))
		return op_console_log_clear(m);
	return m->ops->request(m, op, req);
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
		client_reply(c, monitor_error_reply("request longer than %d bytes",
						    LXM_MONITOR_LINE_MAX - 1));
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

			client_reply(&busy,
				     monitor_error_reply("monitor busy: %d requests in progress",
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
			monitor_reap_init(m, false);
		else
			log_info("ignoring signal %d from pid %u: the instance keeps running",
				 (int)si.ssi_signo, si.ssi_pid);
	}
}

enum {
	POLL_INIT,
	POLL_PTY,
	POLL_CTL,
	POLL_SIG,
	POLL_TIMER,
	POLL_CONSOLE,
	POLL_EXTRA,
	POLL_CLIENTS,
	_POLL_MAX
};

/* Serves until init has exited and been reaped. */
void monitor_run_loop(struct monitor *m)
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
		p[POLL_EXTRA] = (struct pollfd){ .fd = m->extra_fd, .events = POLLIN };
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
			monitor_console_drain(m);
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
		if (m->timer_fd >= 0 && p[POLL_TIMER].revents) {
			uint64_t expirations;

			if (read(m->timer_fd, &expirations, sizeof(expirations)) ==
			    sizeof(expirations))
				m->ops->timer(m);
		}
		if (m->extra_fd >= 0 && p[POLL_EXTRA].fd == m->extra_fd && p[POLL_EXTRA].revents)
			m->ops->extra(m, p[POLL_EXTRA].revents);
		for (size_t i = 0; i < MONITOR_MAX_CLIENTS; i++)
			if (m->clients[i].fd >= 0 && p[POLL_CLIENTS + i].revents)
				client_read(m, &m->clients[i]);
		if (p[POLL_CTL].revents)
			accept_clients(m);
		if (p[POLL_INIT].revents)
			monitor_reap_init(m, false);
	}
}

/* <rundir>/exit.json, written atomically so lxmd never reads half of it. */
void monitor_write_exit_status(struct monitor *m)
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
	    asprintf(&path, "%s/exit.json", m->rundir) < 0) {
		log_error("write exit status: out of memory");
		return;
	}
	r = lxm_write_file_atomic(path, s, strlen(s), 0600);
	if (r < 0)
		log_error("write exit status %s: %s", path, strerror(-r));
}

void monitor_free(struct monitor *m)
{
	int *fds[] = { &m->pidfd,  &m->sync_fd,	 &m->pty_master, &m->pty_slave, &m->ctl_fd,
		       &m->sig_fd, &m->timer_fd, &m->cgroup_fd,	 &m->log_fd,	&m->extra_fd };

	if (!m)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (*fds[i] >= 0)
			close(*fds[i]);
	for (size_t i = 0; i < MONITOR_MAX_CLIENTS; i++)
		client_close(&m->clients[i]);
	console_detach(m);
	free(m);
}

struct monitor *monitor_new(const struct monitor_ops *ops)
{
	struct monitor *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->pidfd = m->sync_fd = m->pty_master = m->pty_slave = m->ctl_fd = -1;
	m->sig_fd = m->timer_fd = m->cgroup_fd = m->log_fd = m->extra_fd = -1;
	m->ops = ops;
	for (size_t i = 0; i < MONITOR_MAX_CLIENTS; i++)
		m->clients[i].fd = -1;
	m->console.fd = -1;
	m->pid = getpid();
	return m;
}
