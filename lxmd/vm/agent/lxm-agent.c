/* lxm-agent: runs inside a VM guest and serves lxmd's exec and file requests over the
 * virtio-serial port (lxmd/vm/agent-proto.h has the protocol). A static binary on libc alone,
 * one poll() loop, no threads.
 *
 *	lxm-agent [PORT]	  a character device (default /dev/virtio-ports/org.lxm.agent.0)
 *				  or a unix socket to connect to; reopened when the host goes
 *	lxm-agent --listen SOCKET serve one connection at a time on a new unix socket (tests)
 *	lxm-agent --fd N	  an inherited connected fd; exits when it closes (tests)
 *
 * The host may go away and come back at any time: sessions end with the connection and a new
 * HELLO from the host starts afresh. A malformed frame is answered with ERROR and the input is
 * skipped up to the next HELLO; nothing the host sends makes the agent exit. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

#include "vm/agent-proto.h"

#define MAX_SESSIONS 64
#define IN_MAX	     (LXM_AGENT_HDR_SIZE + LXM_AGENT_MAX_PAYLOAD)
/* Output not yet written to the host past which the agent stops reading commands' output: the
 * windows bound it anyway, this bounds the frames that are not windowed. */
#define OUT_HIGH (4 * 1024 * 1024)
/* After a command exits, how long its output pipes may stay open without data (a daemon it
 * started holds them) before EXIT is sent anyway. */
#define DRAIN_MS  1000
#define REOPEN_MS 500

enum kind { KIND_EXEC, KIND_GET, KIND_PUT };

struct session {
	uint32_t id;		     /* the host's session id */
	enum kind kind;		     /* what it does */
	struct lxm_agent_window win; /* flow control */
	/* exec */
	pid_t pid;	      /* the command (its process group), 0 once reaped */
	int status;	      /* its wait status once reaped */
	bool pty;	      /* runs on a pty: in_fd and out_fd are its master */
	int in_fd;	      /* where stdin goes, -1 when closed */
	int out_fd;	      /* stdout (or the pty master), -1 at EOF */
	int err_fd;	      /* stderr, -1 at EOF */
	uint8_t *inbuf;	      /* stdin bytes not yet written */
	size_t inlen;	      /* bytes in inbuf */
	bool in_eof;	      /* close stdin once inbuf is written */
	uint64_t drain_until; /* after exit: when to stop waiting for output EOF */
	/* files */
	int fd;			   /* the file read or written, -1 when none */
	char *list;		   /* GET of a directory: the NUL-separated names */
	size_t list_len, list_off; /* their length, and how much was sent */
	char *path;		   /* PUT: the final path */
	char *tmp;		   /* PUT: the temporary file renamed onto path at END */
	struct lxm_agent_file put; /* PUT: the request */
	bool fresh;		   /* PUT: the file is new (owner and mode all applied) */
};

struct agent {
	const char *port;	  /* the device or socket to (re)open, NULL with --fd/--listen */
	int listen_fd;		  /* --listen: the listening socket, else -1 */
	bool once;		  /* --fd: exit when the connection ends */
	int fd;			  /* the connection, -1 while there is none */
	uint64_t reopen_at;	  /* when to try port again */
	int sig_fd;		  /* signalfd for SIGCHLD */
	uint8_t in[IN_MAX];	  /* input not yet parsed */
	size_t inlen;		  /* bytes in in */
	bool resync;		  /* skipping input up to the next HELLO */
	size_t skipped;		  /* bytes skipped by this resync */
	bool heard;		  /* the host sent something on this connection */
	struct lxm_agent_enc out; /* frames not yet written */
	struct session *s[MAX_SESSIONS]; /* sessions, NULL slots free */
};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	va_list ap;

	fputs("lxm-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void send_error(struct agent *a, uint32_t id, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void send_error(struct agent *a, uint32_t id, int errnum, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (lxm_agent_error_encode(&a->out, id, errnum, msg) < 0)
		logf_("cannot queue error: %s", msg);
}

static void send_hello(struct agent *a, uint32_t nonce)
{
	struct utsname u;
	struct lxm_agent_hello h = {
		.proto_min = LXM_AGENT_PROTO_VERSION,
		.proto_max = LXM_AGENT_PROTO_VERSION,
		.nonce = nonce,
		.version = (char *)PACKAGE_VERSION,
	};

	h.kernel = uname(&u) == 0 ? u.release : (char *)"";
	if (lxm_agent_hello_encode(&a->out, &h) < 0)
		logf_("cannot queue HELLO");
}

/* ---- sessions ---- */

static struct session *session_find(struct agent *a, uint32_t id)
{
	for (int i = 0; i < MAX_SESSIONS; i++)
		if (a->s[i] && a->s[i]->id == id)
			return a->s[i];
	return NULL;
}

/* Ends a session without a word to the host: its command is killed, a partial file removed. */
static void session_free(struct agent *a, struct session *s)
{
	if (s->pid > 0)
		kill(-s->pid, SIGKILL);
	closep(&s->in_fd);
	closep(&s->out_fd);
	closep(&s->err_fd);
	closep(&s->fd);
	if (s->tmp)
		unlink(s->tmp);
	free(s->inbuf);
	free(s->list);
	free(s->path);
	free(s->tmp);
	lxm_agent_file_clear(&s->put);
	for (int i = 0; i < MAX_SESSIONS; i++)
		if (a->s[i] == s)
			a->s[i] = NULL;
	free(s);
}

static void sessions_end_all(struct agent *a)
{
	for (int i = 0; i < MAX_SESSIONS; i++)
		if (a->s[i])
			session_free(a, a->s[i]);
}

/* A session failed: ERROR to the host, and the session ends. */
static void session_fail(struct agent *a, struct session *s, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void session_fail(struct agent *a, struct session *s, int errnum, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_error(a, s->id, errnum, "%s", msg);
	session_free(a, s);
}

static struct session *session_new(struct agent *a, uint32_t id, enum kind kind)
{
	struct session *s;
	int slot = -1;

	if (id == 0 || session_find(a, id)) {
		send_error(a, id, EEXIST, "session %u: id 0 or already in use", id);
		return NULL;
	}
	for (int i = 0; i < MAX_SESSIONS && slot < 0; i++)
		if (!a->s[i])
			slot = i;
	if (slot < 0) {
		send_error(a, id, EBUSY, "session %u: too many sessions (%d)", id, MAX_SESSIONS);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		send_error(a, id, ENOMEM, "session %u: out of memory", id);
		return NULL;
	}
	s->id = id;
	s->kind = kind;
	s->in_fd = s->out_fd = s->err_fd = s->fd = -1;
	lxm_agent_window_init(&s->win);
	a->s[slot] = s;
	return s;
}

/* Returns credit for n consumed bytes when enough has gathered. */
static void session_consumed(struct agent *a, struct session *s, size_t n)
{
	uint32_t grant = lxm_agent_window_consumed(&s->win, n);

	if (grant)
		lxm_agent_u32_encode(&a->out, LXM_AGENT_WINDOW_MSG, s->id, grant);
}

/* ---- exec ---- */

/* In the child: stdio, session, credentials, then the command. Reports errno on errfd. */
static void __attribute__((noreturn))
exec_child(const struct lxm_agent_exec_req *x, int fds[3], const char *pts, int errfd)
{
	extern char **environ;
	sigset_t none;
	const char *step = "setsid";
	int e;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	if (setsid() < 0)
		goto fail;
	if (pts) {
		step = "open pty";
		fds[0] = open(pts, O_RDWR);
		if (fds[0] < 0)
			goto fail;
		step = "set controlling terminal";
		if (ioctl(fds[0], TIOCSCTTY, 0) < 0)
			goto fail;
		fds[1] = fds[2] = fds[0];
	}
	step = "set up stdio";
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			goto fail;
	if (pts && fds[0] > 2)
		close(fds[0]);
	step = "set groups";
	if (setgroups(0, NULL) < 0 && errno != EPERM)
		goto fail;
	step = "set gid";
	if (setgid(x->gid) < 0)
		goto fail;
	step = "set uid";
	if (setuid(x->uid) < 0)
		goto fail;
	step = "change directory";
	if (chdir(x->cwd[0] ? x->cwd : "/") < 0)
		goto fail;
	step = "exec";
	environ = x->env;
	execvp(x->argv[0], x->argv);
fail:
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0 || write(errfd, step, strlen(step)) < 0)
		_exit(127);
	_exit(127);
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

/* Opens a pty master sized rows x cols; *ret_pts names the slave. */
static int open_pty(const struct lxm_agent_exec_req *x, char *pts, size_t n, int *ret)
{
	struct winsize ws = { .ws_row = x->rows, .ws_col = x->cols };
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (m < 0)
		return -errno;
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, pts, n) != 0) {
		int e = errno;

		close(m);
		return -e;
	}
	if (x->rows && x->cols)
		ioctl(m, TIOCSWINSZ, &ws);
	*ret = m;
	return 0;
}

/* Pipes for the streams the host wants, /dev/null for the others: child[i] is the child's end,
 * mine[i] ours. */
static int open_stdio(uint32_t flags, int child[3], int mine[3])
{
	static const uint32_t want[3] = { LXM_AGENT_EXEC_STDIN, LXM_AGENT_EXEC_STDOUT,
					  LXM_AGENT_EXEC_STDERR };

	for (int i = 0; i < 3; i++) {
		int p[2];

		if (!(flags & want[i])) {
			child[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
			if (child[i] < 0)
				return -errno;
			continue;
		}
		if (pipe2(p, O_CLOEXEC) < 0)
			return -errno;
		child[i] = i == 0 ? p[0] : p[1];
		mine[i] = i == 0 ? p[1] : p[0];
		if (nonblock(mine[i]) < 0)
			return -errno;
	}
	return 0;
}

static void exec_start(struct agent *a, const struct lxm_agent_frame *f)
{
	struct lxm_agent_exec_req x;
	struct session *s;
	int child[3] = { -1, -1, -1 }, mine[3] = { -1, -1, -1 }, ep[2] = { -1, -1 };
	char pts[128], step[128] = "";
	const char *what = "set up stdio";
	int master = -1, e = 0, r;
	ssize_t n;

	r = lxm_agent_exec_decode(f, &x);
	if (r < 0) {
		send_error(a, f->session, -r, "session %u: malformed EXEC", f->session);
		return;
	}
	s = session_new(a, f->session, KIND_EXEC);
	if (!s)
		goto out;
	s->pty = x.flags & LXM_AGENT_EXEC_PTY;
	if (s->pty) {
		what = "open a pty";
		r = open_pty(&x, pts, sizeof(pts), &master);
	} else {
		r = open_stdio(x.flags, child, mine);
	}
	if (r == 0 && pipe2(ep, O_CLOEXEC) < 0)
		r = -errno;
	if (r < 0) {
		session_fail(a, s, -r, "exec %s: %s: %s", x.argv[0], what, strerror(-r));
		goto out;
	}
	s->pid = fork();
	if (s->pid < 0) {
		s->pid = 0;
		session_fail(a, s, errno, "exec %s: fork: %s", x.argv[0], strerror(errno));
		goto out;
	}
	if (s->pid == 0)
		exec_child(&x, child, s->pty ? pts : NULL, ep[1]);
	closep(&ep[1]);
	/* The child's error pipe closes at exec; an errno and a step come before when it failed. */
	while ((n = read(ep[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(e)) {
		n = read(ep[0], step, sizeof(step) - 1);
		step[n > 0 ? n : 0] = 0;
		session_fail(a, s, e, "exec %s: %s: %s", x.argv[0], step, strerror(e));
		goto out;
	}
	if (s->pty) {
		nonblock(master);
		s->out_fd = master;
		s->in_fd = dup(master);
		master = -1;
	} else {
		s->in_fd = mine[0];
		s->out_fd = mine[1];
		s->err_fd = mine[2];
		mine[0] = mine[1] = mine[2] = -1;
	}
	lxm_agent_u32_encode(&a->out, LXM_AGENT_STARTED, s->id, (uint32_t)s->pid);
out:
	for (int i = 0; i < 3; i++) {
		closep(&child[i]);
		closep(&mine[i]);
	}
	closep(&ep[0]);
	closep(&ep[1]);
	closep(&master);
	lxm_agent_exec_clear(&x);
}

/* Output EOF, the process reaped and the drain time over: EXIT ends the session. */
static void exec_maybe_done(struct agent *a, struct session *s)
{
	uint32_t kind, value;

	if (s->pid > 0 || s->drain_until == 0)
		return;
	if ((s->out_fd >= 0 || s->err_fd >= 0) && now_ms() < s->drain_until)
		return;
	if (WIFSIGNALED(s->status)) {
		kind = LXM_AGENT_EXIT_SIGNAL;
		value = (uint32_t)WTERMSIG(s->status);
	} else {
		kind = LXM_AGENT_EXIT_CODE;
		value = (uint32_t)WEXITSTATUS(s->status);
	}
	lxm_agent_exit_encode(&a->out, s->id, kind, value);
	session_free(a, s);
}

static void reap(struct agent *a)
{
	struct signalfd_siginfo si;
	int status;
	pid_t pid;

	while (read(a->sig_fd, &si, sizeof(si)) > 0)
		;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < MAX_SESSIONS; i++) {
			struct session *s = a->s[i];

			if (!s || s->kind != KIND_EXEC || s->pid != pid)
				continue;
			s->pid = 0;
			s->status = status;
			s->drain_until = now_ms() + DRAIN_MS;
			exec_maybe_done(a, s);
		}
	}
}

/* Reads a command's output into STDOUT/STDERR frames while the window allows. */
static void exec_read(struct agent *a, struct session *s, int *fd, uint8_t type)
{
	uint8_t buf[LXM_AGENT_MAX_PAYLOAD];
	size_t want = lxm_agent_window_sendable(&s->win, sizeof(buf));
	ssize_t n;

	if (want == 0)
		return;
	n = read(*fd, buf, want);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* EOF, or EIO from a pty master whose slave is closed everywhere. */
		closep(fd);
		if (s->pty)
			closep(&s->in_fd);
		return;
	}
	if (s->drain_until)
		s->drain_until = now_ms() + DRAIN_MS;
	lxm_agent_window_sent(&s->win, (size_t)n);
	lxm_agent_data_encode(&a->out, type, s->id, buf, (size_t)n);
}

static void exec_write(struct agent *a, struct session *s)
{
	ssize_t n = s->inlen ? write(s->in_fd, s->inbuf, s->inlen) : 0;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		/* The command closed its stdin: what the host sends is dropped, as with a pipe. */
		session_consumed(a, s, s->inlen);
		s->inlen = 0;
		closep(&s->in_fd);
		return;
	}
	memmove(s->inbuf, s->inbuf + n, s->inlen - (size_t)n);
	s->inlen -= (size_t)n;
	session_consumed(a, s, (size_t)n);
	if (s->inlen == 0 && s->in_eof) {
		if (s->pty) {
			/* A terminal has no EOF of its own: the line discipline's EOF character. */
			char eof = 4;

			if (write(s->in_fd, &eof, 1) < 0)
				logf_("session %u: pty EOF: %s", s->id, strerror(errno));
			s->in_eof = false;
		} else {
			closep(&s->in_fd);
		}
	}
}

static void exec_stdin(struct agent *a, struct session *s, const struct lxm_agent_frame *f)
{
	if (lxm_agent_window_received(&s->win, f->len) < 0) {
		session_fail(a, s, EPROTO, "session %u: stdin past the window", s->id);
		return;
	}
	if (s->in_fd < 0 || s->in_eof) {
		session_consumed(a, s, f->len);
		return;
	}
	if (!s->inbuf) {
		s->inbuf = malloc(LXM_AGENT_WINDOW);
		if (!s->inbuf) {
			session_fail(a, s, ENOMEM, "session %u: stdin: out of memory", s->id);
			return;
		}
	}
	/* The window bounds what is held: inlen + len <= LXM_AGENT_WINDOW. */
	memcpy(s->inbuf + s->inlen, f->payload, f->len);
	s->inlen += f->len;
	exec_write(a, s);
}

static void exec_frame(struct agent *a, struct session *s, const struct lxm_agent_frame *f)
{
	uint16_t rows, cols;
	uint32_t v;

	switch (f->type) {
	case LXM_AGENT_STDIN:
		exec_stdin(a, s, f);
		return;
	case LXM_AGENT_STDIN_EOF:
		s->in_eof = true;
		exec_write(a, s);
		return;
	case LXM_AGENT_RESIZE:
		if (lxm_agent_resize_decode(f, &rows, &cols) == 0 && s->pty && s->out_fd >= 0) {
			struct winsize ws = { .ws_row = rows, .ws_col = cols };

			if (ioctl(s->out_fd, TIOCSWINSZ, &ws) < 0)
				logf_("session %u: resize: %s", s->id, strerror(errno));
		}
		return;
	case LXM_AGENT_SIGNAL:
		if (lxm_agent_u32_decode(f, &v) < 0 || v == 0 || v >= 65) {
			send_error(a, s->id, EINVAL, "session %u: invalid SIGNAL", s->id);
			return;
		}
		if (s->pid > 0 && kill(-s->pid, (int)v) < 0 && errno != ESRCH)
			send_error(a, s->id, errno, "signal %u to process group %d: %s", v,
				   (int)s->pid, strerror(errno));
		return;
	default:
		send_error(a, s->id, EPROTO, "session %u: unexpected %s in an exec session", s->id,
			   lxm_agent_type_name(f->type));
	}
}

/* ---- files ---- */

static uint32_t file_type(mode_t m)
{
	return S_ISDIR(m)   ? LXM_AGENT_FILE_DIRECTORY
	       : S_ISLNK(m) ? LXM_AGENT_FILE_SYMLINK
			    : LXM_AGENT_FILE_REGULAR;
}

static int list_dir(struct session *s, const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	size_t cap = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name) + 1;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (s->list_len + n > cap) {
			char *l;

			cap = (cap + n) * 2;
			l = realloc(s->list, cap);
			if (!l) {
				closedir(d);
				return -ENOMEM;
			}
			s->list = l;
		}
		memcpy(s->list + s->list_len, de->d_name, n);
		s->list_len += n;
	}
	closedir(d);
	return 0;
}

static void file_get(struct agent *a, const struct lxm_agent_frame *f)
{
	struct lxm_agent_file fi = { 0 };
	char target[4096];
	struct session *s;
	struct stat st;
	char *path = NULL;
	ssize_t n;
	int r;

	if (lxm_agent_str_decode(f, &path) < 0) {
		send_error(a, f->session, EBADMSG, "session %u: malformed FILE_GET", f->session);
		return;
	}
	s = session_new(a, f->session, KIND_GET);
	if (!s)
		goto out;
	if (lstat(path, &st) < 0) {
		session_fail(a, s, errno, "stat %s: %s", path, strerror(errno));
		goto out;
	}
	fi.type = file_type(st.st_mode);
	fi.mode = st.st_mode & 07777;
	fi.uid = st.st_uid;
	fi.gid = st.st_gid;
	fi.target = (char *)"";
	if (S_ISLNK(st.st_mode)) {
		n = readlink(path, target, sizeof(target) - 1);
		if (n < 0) {
			session_fail(a, s, errno, "read link %s: %s", path, strerror(errno));
			goto out;
		}
		target[n] = 0;
		fi.target = target;
	} else if (S_ISDIR(st.st_mode)) {
		r = list_dir(s, path);
		if (r < 0) {
			session_fail(a, s, -r, "list %s: %s", path, strerror(-r));
			goto out;
		}
		fi.size = s->list_len;
	} else if (S_ISREG(st.st_mode)) {
		s->fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (s->fd < 0 || fstat(s->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			session_fail(a, s, errno ? errno : EAGAIN, "open %s: %s", path,
				     strerror(errno));
			goto out;
		}
		fi.size = (uint64_t)st.st_size;
	} else {
		session_fail(a, s, EINVAL, "read %s: not a regular file, directory or symlink",
			     path);
		goto out;
	}
	lxm_agent_file_encode(&a->out, LXM_AGENT_FILE, s->id, &fi);
	if (S_ISLNK(st.st_mode) || (S_ISDIR(st.st_mode) && !s->list)) {
		lxm_agent_empty_encode(&a->out, LXM_AGENT_END, s->id);
		session_free(a, s);
	}
	s = NULL;
out:
	free(path);
}

/* Sends what the window allows of a GET's data; END at the end. */
static void file_get_send(struct agent *a, struct session *s)
{
	uint8_t buf[LXM_AGENT_MAX_PAYLOAD];
	size_t want = lxm_agent_window_sendable(&s->win, sizeof(buf));
	ssize_t n;

	if (want == 0)
		return;
	if (s->list) {
		n = (ssize_t)(s->list_len - s->list_off < want ? s->list_len - s->list_off : want);
		memcpy(buf, s->list + s->list_off, (size_t)n);
		s->list_off += (size_t)n;
	} else if (s->fd >= 0) {
		n = read(s->fd, buf, want);
		if (n < 0 && errno == EINTR)
			return;
		if (n < 0) {
			session_fail(a, s, errno, "read: %s", strerror(errno));
			return;
		}
	} else {
		n = 0;
	}
	if (n == 0) {
		lxm_agent_empty_encode(&a->out, LXM_AGENT_END, s->id);
		session_free(a, s);
		return;
	}
	lxm_agent_window_sent(&s->win, (size_t)n);
	lxm_agent_data_encode(&a->out, LXM_AGENT_DATA, s->id, buf, (size_t)n);
}

/* Owner and mode: all of them on something new, only what the host gave on something old. */
static int apply_owner_mode(struct session *s, const char *path, int fd)
{
	const struct lxm_agent_file *p = &s->put;
	uid_t uid = s->fresh || (p->flags & LXM_AGENT_PUT_UID) ? p->uid : (uid_t)-1;
	gid_t gid = s->fresh || (p->flags & LXM_AGENT_PUT_GID) ? p->gid : (gid_t)-1;

	if (p->type == LXM_AGENT_FILE_SYMLINK)
		return fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    (fd >= 0 ? fchown(fd, uid, gid) : chown(path, uid, gid)) < 0)
		return -errno;
	if ((s->fresh || (p->flags & LXM_AGENT_PUT_MODE)) &&
	    (fd >= 0 ? fchmod(fd, p->mode) : chmod(path, p->mode)) < 0)
		return -errno;
	return 0;
}

/* A temporary name beside path for what is renamed onto it. */
static char *tmp_name(const char *path)
{
	static unsigned counter;
	char *t;

	if (asprintf(&t, "%s.lxm-agent-%d-%u", path, (int)getpid(), ++counter) < 0)
		return NULL;
	return t;
}

static int put_directory(struct session *s, const char **step)
{
	struct stat st;

	*step = "create directory";
	if (mkdir(s->path, s->put.mode) == 0) {
		s->fresh = true;
	} else if (errno != EEXIST) {
		return -errno;
	} else {
		*step = "stat";
		if (lstat(s->path, &st) < 0)
			return -errno;
		*step = "create directory";
		if (!S_ISDIR(st.st_mode))
			return -EEXIST;
	}
	*step = "set owner and mode";
	return apply_owner_mode(s, s->path, -1);
}

static int put_symlink(struct session *s, const char **step)
{
	struct stat st;

	*step = "create symlink";
	if (lstat(s->path, &st) == 0 && S_ISDIR(st.st_mode))
		return -EISDIR;
	s->tmp = tmp_name(s->path);
	if (!s->tmp)
		return -ENOMEM;
	if (symlink(s->put.target, s->tmp) < 0)
		return -errno;
	s->fresh = true;
	*step = "set owner";
	if (apply_owner_mode(s, s->tmp, -1) < 0)
		return -errno;
	*step = "rename";
	if (rename(s->tmp, s->path) < 0)
		return -errno;
	free(s->tmp);
	s->tmp = NULL;
	return 0;
}

static int put_file_open(struct session *s, const char **step)
{
	struct lxm_agent_file *p = &s->put;
	bool append = p->flags & LXM_AGENT_PUT_APPEND;
	struct stat st;

	*step = "stat";
	if (lstat(s->path, &st) == 0) {
		/* Never through a symlink: replacing one takes type symlink. */
		if (S_ISLNK(st.st_mode))
			return -ELOOP;
		if (S_ISDIR(st.st_mode))
			return -EISDIR;
		if (!append && S_ISREG(st.st_mode)) {
			if (!(p->flags & LXM_AGENT_PUT_MODE))
				p->mode = st.st_mode & 07777;
			if (!(p->flags & LXM_AGENT_PUT_UID))
				p->uid = st.st_uid;
			if (!(p->flags & LXM_AGENT_PUT_GID))
				p->gid = st.st_gid;
		}
	} else if (errno != ENOENT) {
		return -errno;
	} else {
		s->fresh = true;
	}
	*step = "open";
	if (append) {
		s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
			     p->mode);
		return s->fd < 0 ? -errno : 0;
	}
	/* A new file is written beside the old one and renamed onto it at END. */
	s->fresh = true;
	s->tmp = tmp_name(s->path);
	if (!s->tmp)
		return -ENOMEM;
	s->fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return s->fd < 0 ? -errno : 0;
}

static void file_put(struct agent *a, const struct lxm_agent_frame *f)
{
	struct session *s;
	const char *step = "";
	int r;

	s = session_new(a, f->session, KIND_PUT);
	if (!s)
		return;
	r = lxm_agent_file_decode(f, &s->put);
	if (r < 0) {
		session_fail(a, s, EBADMSG, "session %u: malformed FILE_PUT", f->session);
		return;
	}
	if (!(s->put.flags & LXM_AGENT_PUT_MODE))
		s->put.mode = s->put.type == LXM_AGENT_FILE_DIRECTORY ? 0755 : 0644;
	s->path = strdup(s->put.path);
	if (!s->path) {
		session_fail(a, s, ENOMEM, "write %s: out of memory", s->put.path);
		return;
	}
	if (s->put.type == LXM_AGENT_FILE_DIRECTORY)
		r = put_directory(s, &step);
	else if (s->put.type == LXM_AGENT_FILE_SYMLINK)
		r = put_symlink(s, &step);
	else
		r = put_file_open(s, &step);
	if (r < 0) {
		session_fail(a, s, -r, "%s %s: %s", step, s->path, strerror(-r));
		return;
	}
	if (s->put.type != LXM_AGENT_FILE_REGULAR) {
		lxm_agent_empty_encode(&a->out, LXM_AGENT_RESULT, s->id);
		session_free(a, s);
	}
}

static void file_put_frame(struct agent *a, struct session *s, const struct lxm_agent_frame *f)
{
	const uint8_t *p = f->payload;
	size_t left = f->len;
	int r;

	if (f->type == LXM_AGENT_DATA) {
		if (lxm_agent_window_received(&s->win, f->len) < 0) {
			session_fail(a, s, EPROTO, "write %s: data past the window", s->path);
			return;
		}
		while (left) {
			ssize_t n = write(s->fd, p, left);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				session_fail(a, s, errno, "write %s: %s", s->path, strerror(errno));
				return;
			}
			p += n;
			left -= (size_t)n;
		}
		session_consumed(a, s, f->len);
		return;
	}
	if (f->type != LXM_AGENT_END) {
		session_fail(a, s, EPROTO, "write %s: unexpected %s", s->path,
			     lxm_agent_type_name(f->type));
		return;
	}
	r = apply_owner_mode(s, s->path, s->fd);
	if (r < 0) {
		session_fail(a, s, -r, "set owner and mode of %s: %s", s->path, strerror(-r));
		return;
	}
	if (s->tmp && rename(s->tmp, s->path) < 0) {
		session_fail(a, s, errno, "rename onto %s: %s", s->path, strerror(errno));
		return;
	}
	free(s->tmp);
	s->tmp = NULL;
	lxm_agent_empty_encode(&a->out, LXM_AGENT_RESULT, s->id);
	session_free(a, s);
}

/* ---- frames ---- */

static void handle_frame(struct agent *a, const struct lxm_agent_frame *f)
{
	struct lxm_agent_hello h;
	struct session *s;
	uint32_t v;

	switch (f->type) {
	case LXM_AGENT_HELLO:
		if (lxm_agent_hello_decode(f, &h) < 0) {
			send_error(a, 0, EBADMSG, "malformed HELLO");
			return;
		}
		if (h.proto_min > LXM_AGENT_PROTO_VERSION || h.proto_max < LXM_AGENT_PROTO_VERSION)
			send_error(a, 0, EPROTONOSUPPORT,
				   "protocol versions %u-%u not spoken (this agent: %u)",
				   h.proto_min, h.proto_max, LXM_AGENT_PROTO_VERSION);
		/* A HELLO is a new host: what the previous one started ends. */
		sessions_end_all(a);
		send_hello(a, h.nonce);
		lxm_agent_hello_clear(&h);
		return;
	case LXM_AGENT_EXEC:
		exec_start(a, f);
		return;
	case LXM_AGENT_FILE_GET:
		file_get(a, f);
		return;
	case LXM_AGENT_FILE_PUT:
		file_put(a, f);
		return;
	default:
		break;
	}
	s = f->session ? session_find(a, f->session) : NULL;
	/* Frames for a session that just ended cross its end on the wire: dropped. */
	if (!s)
		return;
	if (f->type == LXM_AGENT_CLOSE) {
		session_free(a, s);
		return;
	}
	if (f->type == LXM_AGENT_WINDOW_MSG) {
		if (lxm_agent_u32_decode(f, &v) < 0 || lxm_agent_window_granted(&s->win, v) < 0)
			session_fail(a, s, EPROTO, "session %u: invalid WINDOW", s->id);
		return;
	}
	if (s->kind == KIND_EXEC)
		exec_frame(a, s, f);
	else if (s->kind == KIND_PUT)
		file_put_frame(a, s, f);
	else
		session_fail(a, s, EPROTO, "session %u: unexpected %s in a FILE_GET session", s->id,
			     lxm_agent_type_name(f->type));
}

/* Parses what arrived; a malformed frame starts a resync. */
static void handle_input(struct agent *a)
{
	struct lxm_agent_frame f;
	size_t off = 0, used, skip;
	int r;

	while (off < a->inlen) {
		if (a->resync) {
			skip = lxm_agent_resync(a->in + off, a->inlen - off);
			off += skip;
			a->skipped += skip;
			if (off == a->inlen)
				break;
			r = lxm_agent_frame_parse(a->in + off, a->inlen - off, &f, &used);
			if (r == 0)
				break;
			if (r < 0 || f.type != LXM_AGENT_HELLO) {
				off++;
				a->skipped++;
				continue;
			}
			logf_("resynchronised on a HELLO after %zu skipped bytes", a->skipped);
			a->resync = false;
		}
		r = lxm_agent_frame_parse(a->in + off, a->inlen - off, &f, &used);
		if (r == 0)
			break;
		if (r < 0) {
			logf_("malformed frame (%s): ending all sessions, skipping to the next "
			      "HELLO",
			      strerror(-r));
			send_error(a, 0, -r, "malformed frame: %s", strerror(-r));
			sessions_end_all(a);
			a->resync = true;
			a->skipped = 0;
			continue;
		}
		handle_frame(a, &f);
		off += used;
	}
	memmove(a->in, a->in + off, a->inlen - off);
	a->inlen -= off;
}

/* ---- the connection ---- */

static void conn_lost(struct agent *a, const char *why)
{
	if (a->fd < 0)
		return;
	/* A virtio port without a host reads EOF at once after each reopen: not worth a line. */
	if (why && a->heard)
		logf_("host connection: %s", why);
	a->heard = false;
	closep(&a->fd);
	sessions_end_all(a);
	a->inlen = 0;
	a->resync = false;
	lxm_agent_enc_consume(&a->out, a->out.len);
	a->reopen_at = now_ms() + REOPEN_MS;
	if (a->once)
		exit(0);
}

static int open_port(struct agent *a)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (stat(a->port, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode)) {
		fd = open(a->port, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		a->fd = fd;
		return 0;
	}
	if (strlen(a->port) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, a->port);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || nonblock(fd) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	a->fd = fd;
	return 0;
}

static void conn_opened(struct agent *a)
{
	a->inlen = 0;
	a->resync = false;
	send_hello(a, 0);
}

static void conn_read(struct agent *a)
{
	ssize_t n = read(a->fd, a->in + a->inlen, sizeof(a->in) - a->inlen);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_lost(a, n == 0 ? "closed by the host" : strerror(errno));
		return;
	}
	a->inlen += (size_t)n;
	a->heard = true;
	handle_input(a);
}

static void conn_write(struct agent *a)
{
	ssize_t n = write(a->fd, a->out.data, a->out.len);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		conn_lost(a, strerror(errno));
		return;
	}
	lxm_agent_enc_consume(&a->out, (size_t)n);
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* ---- the loop ---- */

enum { P_CONN, P_SIG, P_LISTEN, P_FIXED };

static int add_poll(struct pollfd *p, int *n, int fd, short events)
{
	p[*n] = (struct pollfd){ .fd = events ? fd : -1, .events = events };
	return (*n)++;
}

static int loop_timeout(struct agent *a)
{
	uint64_t now = now_ms(), next = UINT64_MAX;

	if (a->fd < 0 && a->port)
		next = a->reopen_at;
	for (int i = 0; i < MAX_SESSIONS; i++)
		if (a->s[i] && a->s[i]->drain_until && a->s[i]->drain_until < next)
			next = a->s[i]->drain_until;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

static void loop_once(struct agent *a)
{
	struct pollfd p[P_FIXED + 4 * MAX_SESSIONS];
	int idx[MAX_SESSIONS][4];
	bool room = a->fd >= 0 && a->out.len < OUT_HIGH;
	int n = P_FIXED, r;

	p[P_CONN] = (struct pollfd){ .fd = a->fd, .events = POLLIN | (a->out.len ? POLLOUT : 0) };
	p[P_SIG] = (struct pollfd){ .fd = a->sig_fd, .events = POLLIN };
	p[P_LISTEN] = (struct pollfd){ .fd = a->listen_fd, .events = POLLIN };
	for (int i = 0; i < MAX_SESSIONS; i++) {
		struct session *s = a->s[i];
		bool credit = s && room && s->win.send_credit > 0;

		if (!s)
			continue;
		idx[i][0] = add_poll(p, &n, s->out_fd, credit && s->out_fd >= 0 ? POLLIN : 0);
		idx[i][1] = add_poll(p, &n, s->err_fd, credit && s->err_fd >= 0 ? POLLIN : 0);
		idx[i][2] = add_poll(p, &n, s->in_fd, s->in_fd >= 0 && s->inlen ? POLLOUT : 0);
		idx[i][3] = add_poll(p, &n, s->fd, s->kind == KIND_GET && credit ? POLLIN : 0);
		/* A directory's listing is in memory: sent now, as far as the window allows. */
		while (a->s[i] == s && s->kind == KIND_GET && s->list && s->win.send_credit > 0 &&
		       room)
			file_get_send(a, s);
	}
	r = poll(p, (nfds_t)n, loop_timeout(a));
	if (r < 0) {
		if (errno != EINTR)
			logf_("poll: %s", strerror(errno));
		return;
	}
	if (p[P_SIG].revents)
		reap(a);
	if (p[P_LISTEN].revents) {
		int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd >= 0) {
			/* One host at a time, as a chardev: a new one replaces the old. */
			conn_lost(a, a->fd >= 0 ? "replaced by a new connection" : NULL);
			a->fd = fd;
			conn_opened(a);
			return;
		}
	}
	for (int i = 0; i < MAX_SESSIONS; i++) {
		struct session *s = a->s[i];

		if (!s)
			continue;
		if (p[idx[i][2]].revents && s->in_fd >= 0)
			exec_write(a, s);
		if (a->s[i] == s && p[idx[i][0]].revents && s->out_fd >= 0)
			exec_read(a, s, &s->out_fd, LXM_AGENT_STDOUT);
		if (a->s[i] == s && p[idx[i][1]].revents && s->err_fd >= 0)
			exec_read(a, s, &s->err_fd, LXM_AGENT_STDERR);
		if (a->s[i] == s && p[idx[i][3]].revents)
			file_get_send(a, s);
		if (a->s[i] == s && s->kind == KIND_EXEC)
			exec_maybe_done(a, s);
	}
	if (a->fd >= 0 && (p[P_CONN].revents & POLLOUT))
		conn_write(a);
	if (a->fd >= 0 && (p[P_CONN].revents & (POLLIN | POLLHUP | POLLERR)))
		conn_read(a);
	if (a->fd < 0 && a->port && now_ms() >= a->reopen_at) {
		r = open_port(a);
		if (r == 0)
			conn_opened(a);
		else
			a->reopen_at = now_ms() + REOPEN_MS;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: lxm-agent [PORT | --listen SOCKET | --fd N]\n"
			"  PORT defaults to " LXM_AGENT_PORT_PATH "\n");
}

int main(int argc, char **argv)
{
	static struct agent a = { .fd = -1, .listen_fd = -1 };
	sigset_t chld;
	int r;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage();
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "--listen")) {
		a.listen_fd = listen_on(argv[2]);
		if (a.listen_fd < 0) {
			logf_("listen on %s: %s", argv[2], strerror(-a.listen_fd));
			return 1;
		}
	} else if (argc == 3 && !strcmp(argv[1], "--fd")) {
		a.fd = atoi(argv[2]);
		a.once = true;
		if (a.fd < 0 || fcntl(a.fd, F_SETFD, FD_CLOEXEC) < 0 || nonblock(a.fd) < 0) {
			logf_("fd %s: not an open file descriptor", argv[2]);
			return 1;
		}
	} else if (argc <= 2) {
		a.port = argc == 2 ? argv[1] : LXM_AGENT_PORT_PATH;
	} else {
		usage();
		return 2;
	}
	/* Relative paths in requests are relative to /, and the agent holds no directory. */
	if (chdir("/") < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	a.sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a.sig_fd < 0) {
		logf_("signalfd: %s", strerror(errno));
		return 1;
	}
	if (a.fd >= 0) {
		conn_opened(&a);
	} else if (a.port) {
		r = open_port(&a);
		if (r == 0)
			conn_opened(&a);
		else
			logf_("open %s: %s (retrying)", a.port, strerror(-r));
	}
	for (;;)
		loop_once(&a);
}
