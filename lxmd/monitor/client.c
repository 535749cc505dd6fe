/* lxmd's side of the monitor control socket: one request, one reply line, bounded in time and
 * size (monitor.h has the protocol). Blocking by design: callers run it off the loop thread. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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

int lxm_monitor_request(const char *socket_path, const json_t *request, int timeout_ms,
			json_t **ret_reply, struct lxm_error **err)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : lxm_monotonic_ms() + (uint64_t)timeout_ms;
	_cleanup_free_ char *line = NULL;
	_cleanup_json_ json_t *reply = NULL;
	_cleanup_close_ int fd = -1;
	char buf[LXM_MONITOR_LINE_MAX];
	json_error_t jerr;
	const char *msg;
	size_t len;
	int r;

	if (!socket_path || !request)
		return lxm_error_set(err, -EINVAL, 500, "monitor request: no socket or request");
	line = json_dumps(request, JSON_COMPACT);
	if (!line)
		return lxm_error_set(err, -ENOMEM, 500, "monitor request: encode: out of memory");
	len = strlen(line);
	/* The protocol is line-based: a request with a raw newline cannot be sent. JSON_COMPACT
	 * never emits one (newlines in strings are escaped), so this is only a guard. */
	if (memchr(line, '\n', len) || len + 1 > LXM_MONITOR_LINE_MAX)
		return lxm_error_set(err, -EINVAL, 500, "monitor request: longer than %d bytes",
				     LXM_MONITOR_LINE_MAX - 1);

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

	reply = json_loadb(buf, (size_t)r, 0, &jerr);
	if (!reply || !json_is_object(reply))
		return lxm_error_set(err, -EPROTO, 500, "monitor socket %s: invalid reply: %s",
				     socket_path, reply ? "not a JSON object" : jerr.text);
	msg = json_string_value(json_object_get(reply, "error"));
	if (msg)
		return lxm_error_set(err, -EIO, 500, "%s", msg);
	if (ret_reply)
		*ret_reply = TAKE_PTR(reply);
	return 0;
}
