#include "config.h"

#include <errno.h>
#include <sys/wait.h>
#include <spawn.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"

/* Output beyond this is dropped: helpers say what matters in their first lines. */
#define CHILD_OUTPUT_MAX (64 * 1024)

/* Longer stdout lines are cut to this for the line callback (the rest of the line is dropped). */
#define CHILD_LINE_MAX 4096

struct capture {
	uv_pipe_t pipe; /* our end */
	char *buf;	/* what was read, NUL-terminated */
	size_t len;	/* bytes in buf */
	bool open;	/* not yet at EOF (or closed) */
	bool tail;	/* keep the last CHILD_OUTPUT_MAX bytes instead of the first */
};

struct lxmd_child {
	uv_process_t proc;	 /* the process */
	struct capture out;	 /* its stdout */
	struct capture err;	 /* its stderr */
	int status;		 /* exit code or 128+signal, once exited */
	bool exited;		 /* exit_cb ran */
	bool closing;		 /* the handles are being closed */
	int handles;		 /* handles not yet closed */
	lxmd_child_done_fn done; /* the callback */
	lxmd_child_line_fn line; /* called per stdout line instead of capturing it, or NULL */
	char *linebuf;		 /* the stdout line being read (line mode), CHILD_LINE_MAX + 1 */
	size_t linelen;		 /* bytes in linebuf */
	bool overlong;		 /* the current line was cut: drop the rest up to its newline */
	void *ud;		 /* for done and line */
};

static void child_free(struct lxmd_child *c)
{
	free(c->out.buf);
	free(c->err.buf);
	free(c->linebuf);
	free(c);
}

static void handle_closed(uv_handle_t *h)
{
	struct lxmd_child *c = h->data;

	if (--c->handles == 0)
		child_free(c);
}

static void maybe_done(struct lxmd_child *c)
{
	if (!c->exited || c->out.open || c->err.open || c->closing)
		return;
	c->closing = true;
	if (c->done)
		c->done(c->status, c->out.buf ? c->out.buf : "", c->err.buf ? c->err.buf : "",
			c->ud);
	uv_close((uv_handle_t *)&c->proc, handle_closed);
	uv_close((uv_handle_t *)&c->out.pipe, handle_closed);
	uv_close((uv_handle_t *)&c->err.pipe, handle_closed);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	struct lxmd_child *c = p->data;

	c->exited = true;
	c->status = sig ? 128 + sig : (int)status;
	maybe_done(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char scratch[16384];

	*buf = uv_buf_init(scratch, sizeof(scratch));
}

static void line_end(struct lxmd_child *c)
{
	c->linebuf[c->linelen] = '\0';
	c->line(c->linebuf, c->ud);
	c->linelen = 0;
}

/* Line mode: hands every complete stdout line (without its newline) to the callback. */
static void feed_lines(struct lxmd_child *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			if (!c->overlong)
				line_end(c);
			c->overlong = false;
			c->linelen = 0;
		} else if (c->overlong) {
			continue;
		} else if (c->linelen == CHILD_LINE_MAX) {
			line_end(c);
			c->overlong = true;
		} else {
			c->linebuf[c->linelen++] = p[i];
		}
	}
}

/* Tail mode: keeps the end of the output, where a failing helper says why. */
static void keep_tail(struct capture *cap, const char *p, size_t n)
{
	char *nb;

	if (n >= CHILD_OUTPUT_MAX) {
		p += n - CHILD_OUTPUT_MAX;
		n = CHILD_OUTPUT_MAX;
	}
	if (cap->len + n > CHILD_OUTPUT_MAX) {
		size_t drop = cap->len + n - CHILD_OUTPUT_MAX;

		memmove(cap->buf, cap->buf + drop, cap->len - drop);
		cap->len -= drop;
	}
	nb = realloc(cap->buf, cap->len + n + 1);
	if (!nb)
		return;
	cap->buf = nb;
	memcpy(cap->buf + cap->len, p, n);
	cap->len += n;
	cap->buf[cap->len] = '\0';
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct lxmd_child *c = s->data;
	struct capture *cap = (uv_pipe_t *)s == &c->out.pipe ? &c->out : &c->err;

	if (n < 0) {
		uv_read_stop(s);
		cap->open = false;
		if (cap == &c->out && c->line && c->linelen > 0 && !c->overlong)
			line_end(c);
		maybe_done(c);
		return;
	}
	if (cap == &c->out && c->line) {
		feed_lines(c, buf->base, (size_t)n);
		return;
	}
	if (cap->tail) {
		keep_tail(cap, buf->base, (size_t)n);
		return;
	}
	if (n > 0 && cap->len < CHILD_OUTPUT_MAX) {
		size_t take = (size_t)n;
		char *nb;

		if (take > CHILD_OUTPUT_MAX - cap->len)
			take = CHILD_OUTPUT_MAX - cap->len;
		nb = realloc(cap->buf, cap->len + take + 1);
		if (!nb)
			return;
		cap->buf = nb;
		memcpy(cap->buf + cap->len, buf->base, take);
		cap->len += take;
		cap->buf[cap->len] = '\0';
	}
}

int lxmd_child_run(uv_loop_t *loop, char *const argv[], lxmd_child_done_fn done, void *ud)
{
	return lxmd_child_run_lines(loop, argv, NULL, done, ud, NULL);
}

int lxmd_child_run_lines(uv_loop_t *loop, char *const argv[], lxmd_child_line_fn line,
			 lxmd_child_done_fn done, void *ud, struct lxmd_child **ret)
{
	struct lxmd_child *c = calloc(1, sizeof(*c));
	uv_stdio_container_t stdio[3];
	uv_process_options_t opts = { 0 };
	int r;

	if (!c)
		return -ENOMEM;
	c->done = done;
	c->line = line;
	c->ud = ud;
	if (line) {
		c->linebuf = malloc(CHILD_LINE_MAX + 1);
		if (!c->linebuf) {
			free(c);
			return -ENOMEM;
		}
		c->err.tail = true;
	}
	uv_pipe_init(loop, &c->out.pipe, 0);
	uv_pipe_init(loop, &c->err.pipe, 0);
	c->out.pipe.data = c->err.pipe.data = c->proc.data = c;
	c->handles = 3;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&c->out.pipe;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&c->err.pipe;
	opts.file = argv[0];
	opts.args = (char **)argv;
	opts.exit_cb = on_exit_cb;
	opts.stdio = stdio;
	opts.stdio_count = 3;

	r = uv_spawn(loop, &c->proc, &opts);
	if (r < 0) {
		/* uv_spawn leaves the process handle initialised: close everything. */
		c->closing = true;
		uv_close((uv_handle_t *)&c->proc, handle_closed);
		uv_close((uv_handle_t *)&c->out.pipe, handle_closed);
		uv_close((uv_handle_t *)&c->err.pipe, handle_closed);
		return r;
	}
	c->out.open = c->err.open = true;
	uv_read_start((uv_stream_t *)&c->out.pipe, alloc_cb, read_cb);
	uv_read_start((uv_stream_t *)&c->err.pipe, alloc_cb, read_cb);
	if (ret)
		*ret = c;
	return 0;
}

int lxmd_child_kill(struct lxmd_child *c, int signum)
{
	if (c->exited)
		return 0;
	return uv_process_kill(&c->proc, signum);
}

int lxmd_self_dir(char **ret)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	char *slash;

	if (n < 0)
		return -errno;
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	*ret = strdup(path);
	return *ret ? 0 : -ENOMEM;
}

int lxmd_find_helper(const char *name, const char *env_var, char **ret)
{
	const char *env = env_var ? getenv(env_var) : NULL;
	_cleanup_free_ char *dir = NULL;

	if (env && *env) {
		*ret = strdup(env);
		return *ret ? 0 : -ENOMEM;
	}
	if (lxmd_self_dir(&dir) == 0 && asprintf(ret, "%s/%s", dir, name) >= 0) {
		if (access(*ret, X_OK) == 0)
			return 0;
		free(*ret);
	}
	return asprintf(ret, "%s/%s", LXM_LIBEXECDIR, name) < 0 ? -ENOMEM : 0;
}

/* Keeps the end of stderr in errbuf, where a failing program says why. */
static void sync_keep_err(char *errbuf, size_t errsize, size_t *used, const char *p, size_t n)
{
	if (n >= errsize - 1) {
		p += n - (errsize - 1);
		n = errsize - 1;
	}
	if (*used + n > errsize - 1) {
		size_t drop = *used + n - (errsize - 1);

		memmove(errbuf, errbuf + drop, *used - drop);
		*used -= drop;
	}
	memcpy(errbuf + *used, p, n);
	*used += n;
	errbuf[*used] = '\0';
}

/* Waits for pid (only it: never a child that lxmd's loop waits for); its exit status, 128 +
 * signal when killed, or -errno. */
static int sync_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int lxmd_run_sync(char *const argv[], char *errbuf, size_t errsize)
{
	static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
	posix_spawn_file_actions_t fa;
	_cleanup_close_ int rd = -1;
	int pipefd[2], k;
	size_t used = 0;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	rd = pipefd[0];
	k = posix_spawn_file_actions_init(&fa);
	if (k == 0)
		k = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (k == 0)
		k = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (k == 0)
		k = posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	if (k == 0)
		k = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (k != 0)
		return -k;

	errbuf[0] = '\0';
	for (;;) {
		char buf[4096];
		ssize_t n = read(rd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		sync_keep_err(errbuf, errsize, &used, buf, (size_t)n);
	}
	return sync_wait(pid);
}

/* Longest stdout line lxmd_run_sync_lines accepts (a whole image catalogue as one JSON line). */
#define SYNC_LINE_MAX (64u << 20)

/* The stdout side of lxmd_run_sync_lines: bytes up to the next newline. */
struct sync_lines {
	char *buf;  /* the line being read */
	size_t len; /* bytes in buf */
	size_t cap; /* allocated size of buf */
};

/* Appends n bytes of stdout and hands on every complete line; non-zero: kill the child. */
static int sync_feed(struct sync_lines *l, const char *p, size_t n, lxmd_sync_line_fn line,
		     void *ud)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			l->buf[l->len] = '\0';
			l->len = 0;
			if (line(l->buf, ud) != 0)
				return 1;
			continue;
		}
		if (l->len + 1 >= l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 4096;
			char *nb;

			if (cap > SYNC_LINE_MAX)
				return 1;
			nb = realloc(l->buf, cap);
			if (!nb)
				return 1;
			l->buf = nb;
			l->cap = cap;
		}
		l->buf[l->len++] = p[i];
	}
	return 0;
}

int lxmd_run_sync_lines(char *const argv[], const char *input, lxmd_sync_line_fn line, void *ud,
			char *errbuf, size_t errsize)
{
	_cleanup_close_ int out = -1, errfd = -1, in = -1;
	struct sync_lines l = { 0 };
	posix_spawn_file_actions_t fa;
	int outp[2], errp[2], inp[2] = { -1, -1 }, k;
	size_t used = 0, input_len = input ? strlen(input) : 0, written = 0;
	bool killed = false;
	pid_t pid;

	errbuf[0] = '\0';
	if (pipe2(outp, O_CLOEXEC) < 0)
		return -errno;
	out = outp[0];
	if (pipe2(errp, O_CLOEXEC) < 0) {
		close(outp[1]);
		return -errno;
	}
	errfd = errp[0];
	if (input && pipe2(inp, O_CLOEXEC) < 0) {
		close(outp[1]);
		close(errp[1]);
		return -errno;
	}
	in = inp[1];
	k = posix_spawn_file_actions_init(&fa);
	if (k == 0)
		k = input ? posix_spawn_file_actions_adddup2(&fa, inp[0], 0)
			  : posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (k == 0)
		k = posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	if (k == 0)
		k = posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	if (k == 0)
		k = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(outp[1]);
	close(errp[1]);
	if (inp[0] >= 0)
		close(inp[0]);
	if (k != 0)
		return -k;
	if (in >= 0 && input_len == 0)
		close(TAKE_FD(in));
	else if (in >= 0)
		fcntl(in, F_SETFL, O_NONBLOCK);

	while (out >= 0 || errfd >= 0) {
		struct pollfd p[3] = { { .fd = out, .events = POLLIN },
				       { .fd = errfd, .events = POLLIN },
				       { .fd = in, .events = POLLOUT } };
		char buf[16384];
		ssize_t n;
		int r = poll(p, 3, 200);

		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0) {
			if (!killed && line(NULL, ud) != 0) {
				kill(pid, SIGKILL);
				killed = true;
			}
			continue;
		}
		if (p[2].revents) {
			n = write(in, input + written, input_len - written);
			if (n > 0)
				written += (size_t)n;
			/* All written, or the child stopped reading: it sees EOF. */
			if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input_len)
				close(TAKE_FD(in));
		}
		if (p[1].revents) {
			n = read(errfd, buf, sizeof(buf));
			if (n > 0)
				sync_keep_err(errbuf, errsize, &used, buf, (size_t)n);
			else if (n == 0 || (errno != EINTR && errno != EAGAIN))
				close(TAKE_FD(errfd));
		}
		if (p[0].revents) {
			n = read(out, buf, sizeof(buf));
			if (n > 0) {
				if (!killed && sync_feed(&l, buf, (size_t)n, line, ud) != 0) {
					kill(pid, SIGKILL);
					killed = true;
				}
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(TAKE_FD(out));
			}
		}
	}
	/* A last line without its newline still counts. */
	if (!killed && l.len > 0) {
		l.buf[l.len] = '\0';
		line(l.buf, ud);
	}
	free(l.buf);
	return sync_wait(pid);
}
