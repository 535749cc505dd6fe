/* A blocking QMP client with deadlines (qmp.h). */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "cleanup.h"
#include "json.h"
#include "util.h"
#include "vm/qmp.h"

/* Bytes read at a time. */
#define QMP_READ_CHUNK 16384

struct lxm_qmp {
	int fd;		  /* the connected socket (non-blocking), -1 once it broke */
	char *path;	  /* the socket's path, for messages */
	char *buf;	  /* bytes read and not yet taken as lines */
	size_t len;	  /* bytes in buf */
	size_t cap;	  /* room in buf */
	json_t *events;	  /* queued events, oldest first */
	size_t dropped;	  /* events dropped because the queue was full */
	uint64_t next_id; /* the id of the next command ("lxm-N") */
	char version[32]; /* QEMU's version from the greeting */
};

static const char *const status_names[_LXM_QMP_STATUS_MAX] = {
	[LXM_QMP_STATUS_PRELAUNCH] = "prelaunch",
	[LXM_QMP_STATUS_RUNNING] = "running",
	[LXM_QMP_STATUS_PAUSED] = "paused",
	[LXM_QMP_STATUS_SHUTDOWN] = "shutdown",
	[LXM_QMP_STATUS_SUSPENDED] = "suspended",
	[LXM_QMP_STATUS_GUEST_PANICKED] = "guest-panicked",
	[LXM_QMP_STATUS_INTERNAL_ERROR] = "internal-error",
	[LXM_QMP_STATUS_IO_ERROR] = "io-error",
	[LXM_QMP_STATUS_OTHER] = "other",
};

static const char *const event_names[_LXM_QMP_EVENT_MAX] = {
	[LXM_QMP_EVENT_SHUTDOWN] = "SHUTDOWN", [LXM_QMP_EVENT_POWERDOWN] = "POWERDOWN",
	[LXM_QMP_EVENT_STOP] = "STOP",	       [LXM_QMP_EVENT_RESUME] = "RESUME",
	[LXM_QMP_EVENT_RESET] = "RESET",       [LXM_QMP_EVENT_OTHER] = NULL,
};

const char *lxm_qmp_status_to_string(enum lxm_qmp_status s)
{
	return s >= 0 && s < _LXM_QMP_STATUS_MAX ? status_names[s] : NULL;
}

enum lxm_qmp_status lxm_qmp_status_from_string(const char *s)
{
	if (!s)
		return _LXM_QMP_STATUS_INVALID;
	for (int i = 0; i < LXM_QMP_STATUS_OTHER; i++)
		if (streq(s, status_names[i]))
			return i;
	return LXM_QMP_STATUS_OTHER;
}

enum lxm_qmp_event lxm_qmp_event_kind(const json_t *event)
{
	const char *name = json_string_value(json_object_get(event, "event"));

	if (!name)
		return _LXM_QMP_EVENT_INVALID;
	for (int i = 0; i < LXM_QMP_EVENT_OTHER; i++)
		if (streq(name, event_names[i]))
			return i;
	return LXM_QMP_EVENT_OTHER;
}

int lxm_qmp_fd(const struct lxm_qmp *q)
{
	return q->fd;
}

const char *lxm_qmp_version(const struct lxm_qmp *q)
{
	return q->version;
}

size_t lxm_qmp_events_dropped(const struct lxm_qmp *q)
{
	return q->dropped;
}

void lxm_qmp_close(struct lxm_qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	free(q->path);
	free(q->buf);
	json_decref(q->events);
	free(q);
}

/* The connection is of no more use: later calls fail at once. */
static void qmp_break(struct lxm_qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	q->len = 0;
}

/* Milliseconds left until deadline (a lxm_monotonic_ms() time), at least 0. */
static int remaining(uint64_t deadline)
{
	uint64_t now = lxm_monotonic_ms();

	return now >= deadline ? 0 : (int)(deadline - now > 3600000 ? 3600000 : deadline - now);
}

/* Waits until fd has events (or deadline). 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, remaining(deadline));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		return n > 0;
	}
}

/* Reads what is there (after waiting up to deadline for something). >0 bytes read, -ETIMEDOUT,
 * -ECONNRESET at EOF, -EPROTO when a line outgrows LXM_QMP_LINE_MAX, or -errno. */
static int read_some(struct lxm_qmp *q, uint64_t deadline)
{
	ssize_t n;
	int r;

	if (q->len > LXM_QMP_LINE_MAX)
		return -EPROTO;
	if (q->cap - q->len < QMP_READ_CHUNK) {
		size_t cap = q->len + QMP_READ_CHUNK;
		char *b = realloc(q->buf, cap);

		if (!b)
			return -ENOMEM;
		q->buf = b;
		q->cap = cap;
	}
	for (;;) {
		n = read(q->fd, q->buf + q->len, q->cap - q->len);
		if (n > 0) {
			q->len += (size_t)n;
			return (int)n;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		r = wait_fd(q->fd, POLLIN, deadline);
		if (r < 0)
			return r;
		if (r == 0)
			return -ETIMEDOUT;
	}
}

/* Takes one complete line from the buffer as a JSON object: 1 with *ret, 0 when no complete
 * line is there, -EPROTO for what is not a JSON object (err says what came). */
static int take_line(struct lxm_qmp *q, json_t **ret, struct lxm_error **err)
{
	char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
	size_t n;
	json_error_t jerr;
	json_t *j;

	if (!nl) {
		if (q->len > LXM_QMP_LINE_MAX)
			return lxm_error_set(err, -EPROTO, 500,
					     "QEMU sent a line longer than %d bytes",
					     LXM_QMP_LINE_MAX);
		return 0;
	}
	n = (size_t)(nl - q->buf);
	j = json_loadb(q->buf, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!j || !json_is_object(j)) {
		char shown[64];
		size_t k, line = n > 0 && q->buf[n - 1] == '\r' ? n - 1 : n;

		/* The start of the line, printable, for the message. */
		for (k = 0; k < line && k < 60; k++)
			shown[k] = q->buf[k] >= 0x20 && q->buf[k] < 0x7f ? q->buf[k] : '?';
		if (k < line) {
			memcpy(shown + k, "...", 3);
			k += 3;
		}
		shown[k] = '\0';
		json_decref(j);
		return lxm_error_set(err, -EPROTO, 500,
				     "QEMU sent what is not a QMP message: '%s' (%s)", shown,
				     j ? "not an object" : jerr.text);
	}
	memmove(q->buf, nl + 1, q->len - n - 1);
	q->len -= n + 1;
	*ret = j;
	return 1;
}

/* Reads the next message, waiting up to deadline. 1 with *ret, -ETIMEDOUT, or -errno with err
 * set (the connection is then broken). */
static int next_message(struct lxm_qmp *q, uint64_t deadline, json_t **ret, struct lxm_error **err)
{
	for (;;) {
		int r = take_line(q, ret, err);

		if (r != 0) {
			if (r < 0)
				qmp_break(q);
			return r;
		}
		r = read_some(q, deadline);
		if (r == -ETIMEDOUT)
			return r;
		if (r == -ECONNRESET) {
			qmp_break(q);
			return lxm_error_set(err, r, 500, "QEMU closed the connection");
		}
		if (r == -EPROTO) {
			qmp_break(q);
			return lxm_error_set(err, r, 500, "QEMU sent a line longer than %d bytes",
					     LXM_QMP_LINE_MAX);
		}
		if (r < 0) {
			qmp_break(q);
			return lxm_error_setx(err, r, 500, "read from QEMU");
		}
	}
}

/* Keeps an event for the caller (takes the reference). */
static void queue_event(struct lxm_qmp *q, json_t *event)
{
	if (json_array_size(q->events) >= LXM_QMP_EVENTS_MAX) {
		json_array_remove(q->events, 0);
		q->dropped++;
	}
	if (json_array_append_new(q->events, event) < 0)
		q->dropped++;
}

static int send_all(struct lxm_qmp *q, const char *data, size_t len, uint64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(q->fd, data, len, MSG_NOSIGNAL);
		int r;

		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		r = wait_fd(q->fd, POLLOUT, deadline);
		if (r < 0)
			return r;
		if (r == 0)
			return -ETIMEDOUT;
	}
	return 0;
}

/* Sends cmd and waits for its answer. On QEMU's error, class_buf (optional) gets its class. */
static int execute(struct lxm_qmp *q, const char *cmd, json_t *args, int timeout_ms,
		   json_t **ret_return, char *class_buf, size_t class_len, struct lxm_error **err)
{
	uint64_t deadline = lxm_monotonic_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	_cleanup_json_ json_t *req = NULL;
	_cleanup_free_ char *line = NULL;
	char id[32];
	int r;

	if (q->fd < 0)
		return lxm_error_set(err, -ENOTCONN, 500,
				     "qmp '%s': the connection to QEMU is closed", cmd);
	snprintf(id, sizeof(id), "lxm-%llu", (unsigned long long)q->next_id++);
	req = json_pack("{s:s, s:s}", "execute", cmd, "id", id);
	if (!req || (args && json_object_set(req, "arguments", args) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "qmp '%s': out of memory", cmd);
	line = json_dumps(req, JSON_COMPACT);
	if (!line)
		return lxm_error_set(err, -ENOMEM, 500, "qmp '%s': out of memory", cmd);
	r = send_all(q, line, strlen(line), deadline);
	if (r == 0)
		r = send_all(q, "\n", 1, deadline);
	if (r == -ETIMEDOUT)
		return lxm_error_set(err, r, 504, "qmp '%s': QEMU took no command within %d ms",
				     cmd, timeout_ms);
	if (r < 0) {
		int e = r;

		qmp_break(q);
		return lxm_error_setx(err, e, 500, "qmp '%s': send to QEMU", cmd);
	}

	for (;;) {
		_cleanup_json_ json_t *msg = NULL;
		const char *msg_id;
		json_t *error;

		r = next_message(q, deadline, &msg, err);
		if (r == -ETIMEDOUT)
			return lxm_error_set(err, r, 504,
					     "qmp '%s': no answer from QEMU within %d ms", cmd,
					     timeout_ms);
		if (r < 0) {
			lxm_error_prefix(err, "qmp '%s'", cmd);
			return r;
		}
		if (json_object_get(msg, "event")) {
			queue_event(q, TAKE_PTR(msg));
			continue;
		}
		/* An answer to an earlier command that timed out, or one without an id. */
		msg_id = json_string_value(json_object_get(msg, "id"));
		if (!msg_id || !streq(msg_id, id))
			continue;
		error = json_object_get(msg, "error");
		if (error) {
			const char *cls = json_string_value(json_object_get(error, "class"));
			const char *desc = json_string_value(json_object_get(error, "desc"));

			if (class_buf)
				snprintf(class_buf, class_len, "%s", cls ? cls : "");
			return lxm_error_set(err, -EIO, 500, "qmp '%s': %s: %s", cmd,
					     cls ? cls : "Error", desc ? desc : "(no description)");
		}
		if (!json_object_get(msg, "return")) {
			qmp_break(q);
			return lxm_error_set(err, -EPROTO, 500,
					     "qmp '%s': QEMU's answer has neither return nor error",
					     cmd);
		}
		if (ret_return)
			*ret_return = json_incref(json_object_get(msg, "return"));
		return 0;
	}
}

int lxm_qmp_execute(struct lxm_qmp *q, const char *cmd, json_t *args, int timeout_ms,
		    json_t **ret_return, struct lxm_error **err)
{
	return execute(q, cmd, args, timeout_ms, ret_return, NULL, 0, err);
}

/* Connects the socket, retrying while QEMU has not made it yet. */
static int connect_socket(const char *path, uint64_t deadline, int timeout_ms,
			  struct lxm_error **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int last = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "qmp: socket path '%s' is too long for a unix socket", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (;;) {
		_cleanup_close_ int fd =
			socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		struct timespec pause = { 0, 10 * 1000 * 1000 };

		if (fd < 0)
			return lxm_error_setx(err, -errno, 500, "qmp: connect to '%s': socket",
					      path);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return TAKE_FD(fd);
		last = -errno;
		if (last != -ENOENT && last != -ECONNREFUSED && last != -EAGAIN && last != -EINTR)
			return lxm_error_setx(err, last, 500, "qmp: connect to '%s'", path);
		if (lxm_monotonic_ms() >= deadline)
			return lxm_error_setx(err, -ETIMEDOUT, 504,
					      "qmp: connect to '%s': QEMU did not listen within %d "
					      "ms (last: %s)",
					      path, timeout_ms, strerror(-last));
		nanosleep(&pause, NULL);
	}
}

static int read_greeting(struct lxm_qmp *q, uint64_t deadline, int timeout_ms,
			 struct lxm_error **err)
{
	_cleanup_json_ json_t *msg = NULL;
	json_t *v;
	int r;

	r = next_message(q, deadline, &msg, err);
	if (r == -ETIMEDOUT)
		return lxm_error_set(err, r, 504, "qmp: '%s': no greeting from QEMU within %d ms",
				     q->path, timeout_ms);
	if (r < 0) {
		lxm_error_prefix(err, "qmp: '%s': greeting", q->path);
		return r;
	}
	v = json_object_get(json_object_get(json_object_get(msg, "QMP"), "version"), "qemu");
	if (!json_is_object(v)) {
		qmp_break(q);
		return lxm_error_set(err, -EPROTO, 500,
				     "qmp: '%s': the first message is not a QMP greeting", q->path);
	}
	snprintf(q->version, sizeof(q->version), "%lld.%lld.%lld",
		 (long long)json_integer_value(json_object_get(v, "major")),
		 (long long)json_integer_value(json_object_get(v, "minor")),
		 (long long)json_integer_value(json_object_get(v, "micro")));
	return 0;
}

int lxm_qmp_connect(const char *path, int timeout_ms, struct lxm_qmp **ret, struct lxm_error **err)
{
	uint64_t deadline = lxm_monotonic_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	struct lxm_qmp *q;
	int r, left;

	q = calloc(1, sizeof(*q));
	if (!q || !(q->path = strdup(path)) || !(q->events = json_array())) {
		lxm_qmp_close(q);
		return lxm_error_set(err, -ENOMEM, 500, "qmp: connect to '%s': out of memory",
				     path);
	}
	q->fd = connect_socket(path, deadline, timeout_ms, err);
	if (q->fd < 0) {
		r = q->fd;
		lxm_qmp_close(q);
		return r;
	}
	r = read_greeting(q, deadline, timeout_ms, err);
	if (r < 0) {
		lxm_qmp_close(q);
		return r;
	}
	left = remaining(deadline);
	r = lxm_qmp_execute(q, "qmp_capabilities", NULL, left > 0 ? left : 1, NULL, err);
	if (r < 0) {
		lxm_qmp_close(q);
		lxm_error_prefix(err, "qmp: '%s'", path);
		return r;
	}
	*ret = q;
	return 0;
}

/* Reads one message, waiting up to deadline, and keeps it when it is an event (only events arrive
 * between commands; a stray answer is dropped). 1 read, 0 timed out, -errno with err set. */
static int read_event(struct lxm_qmp *q, uint64_t deadline, struct lxm_error **err)
{
	_cleanup_json_ json_t *msg = NULL;
	int r;

	if (q->fd < 0)
		return lxm_error_set(err, -ENOTCONN, 500,
				     "qmp: '%s': the connection to QEMU is closed", q->path);
	r = next_message(q, deadline, &msg, err);
	if (r == -ETIMEDOUT)
		return 0;
	if (r < 0) {
		lxm_error_prefix(err, "qmp: '%s': events", q->path);
		return r;
	}
	if (json_object_get(msg, "event"))
		queue_event(q, TAKE_PTR(msg));
	return 1;
}

int lxm_qmp_read_events(struct lxm_qmp *q, struct lxm_error **err)
{
	int r;

	while ((r = read_event(q, 0, err)) > 0)
		;
	return r;
}

int lxm_qmp_next_event(struct lxm_qmp *q, int timeout_ms, json_t **ret_event,
		       struct lxm_error **err)
{
	uint64_t deadline = lxm_monotonic_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	int r;

	do {
		if (json_array_size(q->events) > 0) {
			*ret_event = json_incref(json_array_get(q->events, 0));
			json_array_remove(q->events, 0);
			return 1;
		}
	} while ((r = read_event(q, deadline, err)) > 0);
	return r;
}

int lxm_qmp_status(struct lxm_qmp *q, int timeout_ms, enum lxm_qmp_status *ret,
		   struct lxm_error **err)
{
	_cleanup_json_ json_t *res = NULL;
	const char *s;
	int r;

	r = lxm_qmp_execute(q, "query-status", NULL, timeout_ms, &res, err);
	if (r < 0)
		return r;
	s = json_string_value(json_object_get(res, "status"));
	if (!s)
		return lxm_error_set(err, -EPROTO, 500,
				     "qmp 'query-status': no status in the answer");
	*ret = lxm_qmp_status_from_string(s);
	return 0;
}

int lxm_qmp_stop(struct lxm_qmp *q, int timeout_ms, struct lxm_error **err)
{
	return lxm_qmp_execute(q, "stop", NULL, timeout_ms, NULL, err);
}

int lxm_qmp_cont(struct lxm_qmp *q, int timeout_ms, struct lxm_error **err)
{
	return lxm_qmp_execute(q, "cont", NULL, timeout_ms, NULL, err);
}

int lxm_qmp_powerdown(struct lxm_qmp *q, int timeout_ms, struct lxm_error **err)
{
	return lxm_qmp_execute(q, "system_powerdown", NULL, timeout_ms, NULL, err);
}

int lxm_qmp_quit(struct lxm_qmp *q, int timeout_ms, struct lxm_error **err)
{
	_cleanup_error_ struct lxm_error *e = NULL;
	int r = lxm_qmp_execute(q, "quit", NULL, timeout_ms, NULL, &e);

	/* QEMU ends its side of the socket as it exits, possibly before the answer went out. */
	if (r == -ECONNRESET || r == -EPIPE)
		return 0;
	if (r < 0 && err && !*err)
		*err = TAKE_PTR(e);
	return r;
}

int lxm_qmp_cpus(struct lxm_qmp *q, int timeout_ms, struct lxm_qmp_cpu **ret, size_t *ret_n,
		 struct lxm_error **err)
{
	_cleanup_json_ json_t *res = NULL;
	_cleanup_free_ struct lxm_qmp_cpu *cpus = NULL;
	size_t i, n;
	json_t *c;
	int r;

	r = lxm_qmp_execute(q, "query-cpus-fast", NULL, timeout_ms, &res, err);
	if (r < 0)
		return r;
	if (!json_is_array(res))
		return lxm_error_set(err, -EPROTO, 500,
				     "qmp 'query-cpus-fast': the answer is not a list");
	n = json_array_size(res);
	cpus = calloc(n ? n : 1, sizeof(*cpus));
	if (!cpus)
		return lxm_error_set(err, -ENOMEM, 500, "qmp 'query-cpus-fast': out of memory");
	json_array_foreach (res, i, c) {
		json_t *idx = json_object_get(c, "cpu-index");
		json_t *tid = json_object_get(c, "thread-id");

		if (!json_is_integer(idx) || !json_is_integer(tid))
			return lxm_error_set(err, -EPROTO, 500,
					     "qmp 'query-cpus-fast': vCPU %zu has no cpu-index or "
					     "thread-id",
					     i);
		cpus[i].index = (int)json_integer_value(idx);
		cpus[i].thread_id = (int)json_integer_value(tid);
	}
	*ret = TAKE_PTR(cpus);
	*ret_n = n;
	return 0;
}

int lxm_qmp_memory(struct lxm_qmp *q, int timeout_ms, struct lxm_qmp_memory *ret,
		   struct lxm_error **err)
{
	_cleanup_json_ json_t *res = NULL, *balloon = NULL;
	_cleanup_error_ struct lxm_error *berr = NULL;
	struct lxm_qmp_memory m = { 0 };
	char cls[64] = "";
	json_t *base;
	int r;

	r = lxm_qmp_execute(q, "query-memory-size-summary", NULL, timeout_ms, &res, err);
	if (r < 0)
		return r;
	base = json_object_get(res, "base-memory");
	if (!json_is_integer(base))
		return lxm_error_set(
			err, -EPROTO, 500,
			"qmp 'query-memory-size-summary': no base-memory in the answer");
	m.base = (uint64_t)json_integer_value(base);
	m.plugged = (uint64_t)json_integer_value(json_object_get(res, "plugged-memory"));

	/* Without a balloon device QEMU answers DeviceNotActive: not an error here. */
	r = execute(q, "query-balloon", NULL, timeout_ms, &balloon, cls, sizeof(cls), &berr);
	if (r == 0 && json_is_integer(json_object_get(balloon, "actual"))) {
		m.balloon = true;
		m.balloon_actual = (uint64_t)json_integer_value(json_object_get(balloon, "actual"));
	} else if (r < 0 && !(r == -EIO && streq(cls, "DeviceNotActive"))) {
		if (err && !*err)
			*err = TAKE_PTR(berr);
		return r;
	}
	*ret = m;
	return 0;
}
