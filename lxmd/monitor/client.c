/* lxmd's side of the monitor control socket: one request, one reply line, bounded in time and
 * size (monitor.h has the protocol). Two forms: a blocking one for threads that may wait (the
 * thread pool, start-up, lxm-monitor's tests) and one on a libuv loop for the loop thread. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "cleanup.h"
#include "json.h"
#include "util.h"
#include "monitor/monitor.h"
#include "monitor/monitor-internal.h"

/* Milliseconds left until deadline (0: none), -1 for no deadline. */
static int time_left(uint64_t deadline)
{
	uint64_t now;

	if (deadline == UINT64_MAX)
		return -1;
	now = lxm_monotonic_ms();
	return now >= deadline ? 0 : (int)(deadline - now);
}

/* Waits for events on fd until the deadline: 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	for (;;) {
		r = poll(&p, 1, time_left(deadline));
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return -errno;
	}
}

/* A unix socket connect does not wait for the server; it fails with EAGAIN when the backlog is
 * full, which is worth retrying until the deadline (a monitor busy for a moment). */
static int connect_monitor(const char *path, uint64_t deadline, int *ret, struct lxm_error **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "monitor socket %s: path longer than %zu bytes", path,
				     sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "monitor socket %s: socket", path);
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return lxm_error_setx(err, -errno, 500, "monitor socket %s: connect", path);
		if (time_left(deadline) == 0)
			return lxm_error_set(err, -ETIMEDOUT, 504,
					     "monitor socket %s: connect: the monitor did not "
					     "accept in time",
					     path);
		usleep(5 * 1000);
	}
	*ret = TAKE_FD(fd);
	return 0;
}

static int send_line(int fd, const char *path, const char *line, size_t len, uint64_t deadline,
		     struct lxm_error **err)
{
	while (len > 0) {
		ssize_t n = send(fd, line, len, MSG_NOSIGNAL);
		int r;

		if (n >= 0) {
			line += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return lxm_error_setx(err, -errno, 500, "monitor socket %s: send request",
					      path);
		r = wait_fd(fd, POLLOUT, deadline);
		if (r < 0)
			return lxm_error_setx(err, r, 500, "monitor socket %s: send request", path);
		if (r == 0)
			return lxm_error_set(err, -ETIMEDOUT, 504,
					     "monitor socket %s: send request: timed out", path);
	}
	return 0;
}

/* Reads up to the first newline (or EOF) into buf; returns the length. */
static int recv_line(int fd, const char *path, char *buf, size_t size, uint64_t deadline,
		     struct lxm_error **err)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
		int r;

		if (n > 0) {
			char *nl = memchr(buf + len, '\n', (size_t)n);

			len += (size_t)n;
			if (nl)
				return (int)(nl - buf);
			if (len == size - 1)
				return lxm_error_set(
					err, -EMSGSIZE, 500,
					"monitor socket %s: reply longer than %zu bytes", path,
					size - 1);
			continue;
		}
		if (n == 0) {
			if (len == 0)
				return lxm_error_set(err, -ECONNRESET, 500,
						     "monitor socket %s: the monitor closed the "
						     "connection without replying",
						     path);
			return (int)len;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return lxm_error_setx(err, -errno, 500, "monitor socket %s: read reply",
					      path);
		r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			return lxm_error_setx(err, r, 500, "monitor socket %s: read reply", path);
		if (r == 0)
			return lxm_error_set(err, -ETIMEDOUT, 504,
					     "monitor socket %s: no reply in time", path);
	}
}

/* The request as one line without its newline, checked against the protocol's bound. */
static int encode_request(const json_t *request, char **ret, size_t *ret_len,
			  struct lxm_error **err)
{
	_cleanup_free_ char *line = NULL;
	size_t len;

	line = json_dumps(request, JSON_COMPACT);
	if (!line)
		return lxm_error_set(err, -ENOMEM, 500, "monitor request: encode: out of memory");
	len = strlen(line);
	/* The protocol is line-based: a request with a raw newline cannot be sent. JSON_COMPACT
	 * never emits one (newlines in strings are escaped), so this is only a guard. */
	if (memchr(line, '\n', len) || len + 1 > LXM_MONITOR_LINE_MAX)
		return lxm_error_set(err, -EINVAL, 500, "monitor request: longer than %d bytes",
				     LXM_MONITOR_LINE_MAX - 1);
	*ret = TAKE_PTR(line);
	*ret_len = len;
	return 0;
}

/* A reply line: a JSON object, or {"error":...} which becomes -EIO with that message. */
static int parse_reply(const char *path, const char *buf, size_t len, json_t **ret,
		       struct lxm_error **err)
{
	_cleanup_json_ json_t *reply = NULL;
	json_error_t jerr;
	const char *msg;

	reply = json_loadb(buf, len, 0, &jerr);
	if (!reply || !json_is_object(reply))
		return lxm_error_set(err, -EPROTO, 500, "monitor socket %s: invalid reply: %s",
				     path, reply ? "not a JSON object" : jerr.text);
	msg = json_string_value(json_object_get(reply, "error"));
	if (msg)
		return lxm_error_set(err, -EIO, 500, "%s", msg);
	if (ret)
		*ret = TAKE_PTR(reply);
	return 0;
}

int lxm_monitor_request(const char *socket_path, const json_t *request, int timeout_ms,
			json_t **ret_reply, struct lxm_error **err)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : lxm_monotonic_ms() + (uint64_t)timeout_ms;
	_cleanup_free_ char *line = NULL;
	_cleanup_close_ int fd = -1;
	char buf[LXM_MONITOR_LINE_MAX];
	size_t len;
	int r;

	if (!socket_path || !request)
		return lxm_error_set(err, -EINVAL, 500, "monitor request: no socket or request");
	r = encode_request(request, &line, &len, err);
	if (r < 0)
		return r;
	r = connect_monitor(socket_path, deadline, &fd, err);
	if (r < 0)
		return r;
	memcpy(buf, line, len);
	buf[len] = '\n';
	r = send_line(fd, socket_path, buf, len + 1, deadline, err);
	if (r < 0)
		return r;
	r = recv_line(fd, socket_path, buf, sizeof(buf), deadline, err);
	if (r < 0)
		return r;
	return parse_reply(socket_path, buf, (size_t)r, ret_reply, err);
}

/* ---- on a libuv loop ---- */

/* Pause before connecting again when the monitor's backlog is full. */
#define CONNECT_RETRY_MS 5

enum call_stage {
	CALL_CONNECT, /* connecting (or waiting to retry) */
	CALL_SEND,    /* writing the request */
	CALL_RECV,    /* reading the reply */
};

struct monitor_call {
	uv_pipe_t pipe;			/* the connection, while pipe_open */
	uv_timer_t deadline;		/* ends the call at timeout_ms */
	uv_timer_t retry;		/* the pause before a new connect */
	uv_connect_t connect;		/* the connect request */
	uv_write_t write;		/* the request's write */
	char *path;			/* the socket, for messages */
	char *line;			/* the request, newline included */
	size_t line_len;		/* bytes in line */
	char buf[LXM_MONITOR_LINE_MAX]; /* the reply so far */
	size_t len;			/* bytes in buf */
	enum call_stage stage;		/* for the timeout's message */
	lxm_monitor_reply_fn done;	/* the caller's callback */
	void *ud;			/* for done */
	int handles;			/* handles not yet closed */
	bool pipe_open;			/* pipe is initialised and not closing */
	bool finished;			/* done has run; everything is closing */
};

static int call_connect(struct monitor_call *c);

static void call_closed(uv_handle_t *h)
{
	struct monitor_call *c = h->data;

	if (--c->handles > 0)
		return;
	free(c->path);
	free(c->line);
	free(c);
}

/* Ends the call: done runs once, then every handle closes and the last close frees it. */
static void call_finish(struct monitor_call *c, json_t *reply, struct lxm_error *err)
{
	if (c->finished) {
		json_decref(reply);
		lxm_error_free(err);
		return;
	}
	c->finished = true;
	uv_timer_stop(&c->deadline);
	uv_timer_stop(&c->retry);
	c->done(reply, err, c->ud);
	json_decref(reply);
	uv_close((uv_handle_t *)&c->deadline, call_closed);
	uv_close((uv_handle_t *)&c->retry, call_closed);
	if (c->pipe_open) {
		c->pipe_open = false;
		uv_close((uv_handle_t *)&c->pipe, call_closed);
	}
}

static void call_fail(struct monitor_call *c, int errnum, int status, const char *what,
		      bool with_cause)
{
	struct lxm_error *err = NULL;

	if (with_cause)
		lxm_error_setx(&err, errnum, status, "monitor socket %s: %s", c->path, what);
	else
		lxm_error_set(&err, errnum, status, "monitor socket %s: %s", c->path, what);
	call_finish(c, NULL, err);
}

static void call_timeout(uv_timer_t *t)
{
	struct monitor_call *c = t->data;
	static const char *const what[] = {
		[CALL_CONNECT] = "connect: the monitor did not accept in time",
		[CALL_SEND] = "send request: timed out",
		[CALL_RECV] = "no reply in time",
	};

	call_fail(c, -ETIMEDOUT, 504, what[c->stage], false);
}

static void call_retry(uv_timer_t *t)
{
	struct monitor_call *c = t->data;
	int r = call_connect(c);

	if (r < 0)
		call_fail(c, r, 500, "socket", true);
}

/* The pipe of a connect that found the backlog full is closed; try again after a pause. */
static void call_reconnect_closed(uv_handle_t *h)
{
	struct monitor_call *c = h->data;

	if (c->finished) {
		call_closed(h);
		return;
	}
	c->handles--;
	uv_timer_start(&c->retry, call_retry, CONNECT_RETRY_MS, 0);
}

static void call_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct monitor_call *c = h->data;

	(void)suggested;
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void call_reply(struct monitor_call *c, size_t len)
{
	struct lxm_error *err = NULL;
	json_t *reply = NULL;

	if (parse_reply(c->path, c->buf, len, &reply, &err) < 0)
		call_finish(c, NULL, err);
	else
		call_finish(c, reply, NULL);
}

static void call_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct monitor_call *c = s->data;
	char *nl;

	(void)buf;
	if (c->finished)
		return;
	if (n == UV_EOF) {
		if (c->len == 0)
			call_fail(c, -ECONNRESET, 500,
				  "the monitor closed the connection without replying", false);
		else
			call_reply(c, c->len);
		return;
	}
	if (n < 0) {
		call_fail(c, (int)n, 500, "read reply", true);
		return;
	}
	nl = memchr(c->buf + c->len, '\n', (size_t)n);
	c->len += (size_t)n;
	if (nl)
		call_reply(c, (size_t)(nl - c->buf));
	else if (c->len == sizeof(c->buf) - 1)
		call_fail(c, -EMSGSIZE, 500, "reply longer than the protocol allows", false);
}

static void call_written(uv_write_t *w, int status)
{
	struct monitor_call *c = w->data;

	if (c->finished || status == 0)
		return;
	call_fail(c, status, 500, "send request", true);
}

static void call_connected(uv_connect_t *req, int status)
{
	struct monitor_call *c = req->data;
	uv_buf_t b;
	int r;

	if (c->finished)
		return;
	if (status == UV_EAGAIN) {
		/* A monitor busy for a moment: its backlog is full. */
		c->pipe_open = false;
		uv_close((uv_handle_t *)&c->pipe, call_reconnect_closed);
		return;
	}
	if (status < 0) {
		call_fail(c, status, 500, "connect", true);
		return;
	}
	c->stage = CALL_SEND;
	c->write.data = c;
	b = uv_buf_init(c->line, (unsigned)c->line_len);
	r = uv_write(&c->write, (uv_stream_t *)&c->pipe, &b, 1, call_written);
	if (r < 0) {
		call_fail(c, r, 500, "send request", true);
		return;
	}
	c->stage = CALL_RECV;
	r = uv_read_start((uv_stream_t *)&c->pipe, call_alloc, call_read);
	if (r < 0)
		call_fail(c, r, 500, "read reply", true);
}

static int call_connect(struct monitor_call *c)
{
	int r = uv_pipe_init(c->deadline.loop, &c->pipe, 0);

	if (r < 0)
		return r;
	c->handles++;
	c->pipe_open = true;
	c->pipe.data = c;
	c->connect.data = c;
	c->stage = CALL_CONNECT;
	uv_pipe_connect(&c->connect, &c->pipe, c->path, call_connected);
	return 0;
}

int lxm_monitor_request_async(uv_loop_t *loop, const char *socket_path, const json_t *request,
			      int timeout_ms, lxm_monitor_reply_fn done, void *ud,
			      struct lxm_error **err)
{
	struct monitor_call *c;
	char *line = NULL;
	size_t len;
	int r;

	if (!loop || !socket_path || !request || !done)
		return lxm_error_set(err, -EINVAL, 500, "monitor request: no socket or request");
	/* libuv would cut a longer path and connect elsewhere. */
	if (strlen(socket_path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "monitor socket %s: path longer than %zu bytes", socket_path,
				     sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
	r = encode_request(request, &line, &len, err);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(socket_path))) {
		free(c);
		free(line);
		return lxm_error_set(err, -ENOMEM, 500, "monitor request: out of memory");
	}
	line[len] = '\n'; /* over the NUL: line_len says where it ends */
	c->line = line;
	c->line_len = len + 1;
	c->done = done;
	c->ud = ud;
	uv_timer_init(loop, &c->deadline);
	uv_timer_init(loop, &c->retry);
	c->deadline.data = c->retry.data = c;
	c->handles = 2;
	if (timeout_ms >= 0)
		uv_timer_start(&c->deadline, call_timeout, (uint64_t)timeout_ms, 0);
	r = call_connect(c);
	if (r < 0) {
		/* As libuv does: a call that fails at once never runs its callback. */
		c->finished = true;
		uv_close((uv_handle_t *)&c->deadline, call_closed);
		uv_close((uv_handle_t *)&c->retry, call_closed);
		return lxm_error_setx(err, r, 500, "monitor socket %s: socket", socket_path);
	}
	return 0;
}
