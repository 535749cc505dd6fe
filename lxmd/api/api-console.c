/* /1.0/instances/<name>/console: LXD's console sessions and the console log.
 *
 * POST attaches to the console that the instance's lxm-monitor holds (monitor.h, op "console")
 * and answers with a websocket operation whose metadata lists two secrets, "0" and "control".
 * The attach comes first, so that a console that is taken or gone is an error of the POST and
 * not of an operation nobody watches yet. Then the connection to the monitor is a byte stream:
 * BINARY messages on "0" go to the console, console output comes back as BINARY messages on
 * "0". "control" takes LXD's window-resize, which goes to the monitor as a console-resize request
 * on a connection of its own, from the thread pool (lxm_monitor_request blocks).
 *
 * Nothing on the loop blocks on the monitor: the console connection is a uv_pipe_t, and output is
 * read only while the websocket takes it (the monitor drops a console client that falls 1 MiB
 * behind, which ends the session). The session ends when the client closes "0" or "control", when
 * the monitor hangs up (the container stopped), or when the operation is cancelled; the
 * operation then succeeds (Cancelled for a cancel). A session whose "0" is not connected within
 * CONNECT_TIMEOUT_MS fails and gives the console back. Input still queued for the monitor when the
 * client leaves may be dropped: a detached client has nobody to show the effect to.
 *
 * GET returns the console log (<root>/logs/<name>/console.log, the monitor's copy of the
 * output, kept after a stop) as plain text; DELETE empties it, through the monitor while the
 * instance runs, because the monitor keeps writing at its own offset. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "api/api-websocket.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "json.h"
#include "log.h"
#include "monitor/monitor.h"
#include "monitor/monitor-internal.h"
#include "operations.h"
#include "server.h"
#include "util.h"

/* LXD fails a session whose websocket "0" is not up within this. */
#define CONNECT_TIMEOUT_MS 5000
/* How long the monitor may take to answer a request. */
#define MONITOR_TIMEOUT_MS 2000
/* Console output read at a time. */
#define READ_CHUNK (64 * 1024)
/* Input queued for the monitor past which socket "0" is not read... */
#define INPUT_PAUSE_BYTES (1024u * 1024)
/* ...until the monitor has taken all but this much. */
#define INPUT_RESUME_BYTES (256u * 1024)

enum {
	SOCK_DATA,
	SOCK_CONTROL,
	_SOCK_MAX,
};

static const char *const sock_names[_SOCK_MAX] = { "0", "control" };

struct console_session;

/* One websocket of the session. */
struct console_socket {
	struct console_session *s;	     /* the owner */
	int index;			     /* SOCK_* */
	char secret[LXMD_WS_SECRET_LEN + 1]; /* listed in metadata.fds */
	bool used;			     /* a client connected (a second one is refused) */
	bool closed;			     /* it was connected and has gone */
	struct lxmd_conn *conn;		     /* while connected */
};

/* A write of console input to the monitor. */
struct console_write {
	uv_write_t req;		   /* libuv's */
	struct console_session *s; /* the owner */
	size_t len;		   /* bytes */
	char data[];		   /* the copy being written */
};

struct console_session {
	struct lxmd_ws_session ws; /* how clients reach socks while the operation exists */
	struct lxmd *d;		   /* the daemon */
	struct lxm_operation *op;  /* NULL before the attach and once the table let go */
	struct lxmd_request *req;  /* the POST, until it is answered or its client hangs up */
	unsigned refs;		   /* request + operation + open handles + connections + jobs */
	char *name;		   /* instance */
	char *socket_path;	   /* its monitor's control socket */
	struct console_socket socks[_SOCK_MAX];

	uv_pipe_t pipe;		  /* the console connection to the monitor */
	bool pipe_open;		  /* pipe is initialised and not closed */
	uv_connect_t connect_req; /* libuv's, for the connect */
	bool attached;		  /* the monitor answered {"ok":true} */
	bool reading;		  /* uv_read_start is active on pipe */
	char *buf;		  /* READ_CHUNK bytes: the reply line, then output */
	size_t buf_len;		  /* bytes in buf: of the reply line; then output held back */
	size_t in_queued;	  /* input written to the monitor and not yet taken */
	bool in_paused;		  /* socket "0" is paused */
	uv_timer_t timer;	  /* the monitor's reply, then the websocket connect */
	bool timer_open;	  /* timer is initialised and not closed */
	unsigned width, height;	  /* the size to set next (0: none) */
	bool resizing;		  /* a console-resize request is in the thread pool */
	bool finished;		  /* the operation has its result */
	bool ended;		  /* teardown began */
};

static void session_end(struct console_session *s);
static void output_start(struct console_session *s);

/* ---- lifetime ---- */

static void session_ref(struct console_session *s)
{
	s->refs++;
}

static void session_unref(struct console_session *s)
{
	if (--s->refs > 0)
		return;
	lxmd_ws_session_unregister(&s->ws);
	free(s->buf);
	free(s->name);
	free(s->socket_path);
	free(s);
}

static void handle_closed(uv_handle_t *h)
{
	session_unref(h->data);
}

/* The result, once: Success when err is NULL. */
static void session_finish(struct console_session *s, struct lxm_error *err)
{
	if (s->finished || !s->op) {
		lxm_error_free(err);
		return;
	}
	s->finished = true;
	lxm_operation_finish(s->op, err);
}

/* Answers the POST with err (consumed), if it still waits. */
static void request_fail(struct console_session *s, struct lxm_error *err)
{
	struct lxmd_request *r = TAKE_PTR(s->req);

	if (!r) {
		lxm_error_free(err);
		return;
	}
	/* Answering may close the connection, which must not call back into the session. */
	r->on_abort = NULL;
	r->deferred = false;
	lxmd_respond_error(r, err);
	session_unref(s);
}

/* Closes everything; the session is freed when the last handle and connection are gone. */
static void session_end(struct console_session *s)
{
	if (s->ended)
		return;
	s->ended = true;
	if (s->timer_open) {
		s->timer_open = false;
		uv_close((uv_handle_t *)&s->timer, handle_closed);
	}
	if (s->pipe_open) {
		s->pipe_open = false;
		s->reading = false;
		uv_close((uv_handle_t *)&s->pipe, handle_closed);
	}
	for (int i = 0; i < _SOCK_MAX; i++)
		if (s->socks[i].conn)
			lxmd_conn_ws_shutdown(s->socks[i].conn);
}

/* Fails the POST (before the operation exists) or the operation. */
static void session_fail(struct console_session *s, struct lxm_error *err)
{
	/* Answering the POST drops its reference: keep s until the end is under way. */
	session_ref(s);
	if (s->req)
		request_fail(s, err);
	else
		session_finish(s, err);
	session_end(s);
	session_unref(s);
}

/* ---- monitor requests from the thread pool ---- */

struct monitor_job {
	uv_work_t work;			     /* libuv's */
	char *socket_path;		     /* the monitor's control socket */
	json_t *request;		     /* sent as one line */
	int result;			     /* lxm_monitor_request's */
	struct lxm_error *err;		     /* and its error */
	void (*done)(struct monitor_job *j); /* on the loop thread; the job is freed after it */
	void *data;			     /* for done */
};

static void monitor_job_work(uv_work_t *w)
{
	struct monitor_job *j = w->data;

	j->result =
		lxm_monitor_request(j->socket_path, j->request, MONITOR_TIMEOUT_MS, NULL, &j->err);
}

static void monitor_job_after(uv_work_t *w, int status)
{
	struct monitor_job *j = w->data;

	if (status < 0 && j->result >= 0)
		j->result = lxm_error_set(&j->err, status, 500, "monitor request: %s",
					  uv_strerror(status));
	j->done(j);
	lxm_error_free(j->err);
	json_decref(j->request);
	free(j->socket_path);
	free(j);
}

/* request is stolen. done is not called when this fails. *ret (optional) is the job, valid until
 * done returns. */
static int monitor_job_start(struct lxmd *d, const char *socket_path, json_t *request,
			     void (*done)(struct monitor_job *j), void *data,
			     struct monitor_job **ret)
{
	struct monitor_job *j = calloc(1, sizeof(*j));
	int k;

	if (!j || !request || !(j->socket_path = strdup(socket_path))) {
		json_decref(request);
		if (j)
			free(j->socket_path);
		free(j);
		return -ENOMEM;
	}
	j->request = request;
	j->done = done;
	j->data = data;
	j->work.data = j;
	k = uv_queue_work(d->loop, &j->work, monitor_job_work, monitor_job_after);
	if (k < 0) {
		json_decref(j->request);
		free(j->socket_path);
		free(j);
		return k;
	}
	if (ret)
		*ret = j;
	return 0;
}

static int monitor_socket_path(struct lxmd *d, const char *name, char **ret)
{
	return asprintf(ret, "%s/%s/monitor.sock", d->cfg.rundir, name) < 0 ? -ENOMEM : 0;
}

/* ---- window size ---- */

static void resize_start(struct console_session *s);

static void resize_done(struct monitor_job *j)
{
	struct console_session *s = j->data;

	s->resizing = false;
	/* Not worth failing the session for: the size only looks wrong. */
	if (j->result < 0)
		log_debug("console of '%s': resize: %s", s->name, j->err ? j->err->msg : "failed");
	resize_start(s);
	session_unref(s);
}

/* Sends the newest size; one request at a time, so a burst of resizes ends with the last. */
static void resize_start(struct console_session *s)
{
	json_t *req;

	if (s->resizing || s->ended || !s->attached || s->width == 0 || s->height == 0)
		return;
	req = json_pack("{s:s, s:i, s:i}", "op", "console-resize", "width", (int)s->width, "height",
			(int)s->height);
	if (monitor_job_start(s->d, s->socket_path, req, resize_done, s, NULL) < 0)
		return;
	s->width = s->height = 0;
	s->resizing = true;
	session_ref(s);
}

/* ---- console output: monitor -> "0" ---- */

static void output_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct console_session *s = h->data;

	/* Before the reply the line is collected in place; after it, reading happens only while
	 * nothing is held back. */
	if (!s->attached)
		*buf = uv_buf_init(s->buf + s->buf_len,
				   (unsigned)(LXM_MONITOR_LINE_MAX - s->buf_len));
	else
		*buf = uv_buf_init(s->buf, READ_CHUNK);
}

static void output_stop(struct console_session *s)
{
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->pipe);
		s->reading = false;
	}
}

/* Passes held-back output on; false while "0" cannot take it (or is not connected yet). */
static bool output_flush(struct console_session *s)
{
	struct lxmd_conn *c = s->socks[SOCK_DATA].conn;
	int k;

	if (s->buf_len == 0)
		return true;
	if (!c)
		return false;
	k = lxmd_conn_ws_send(c, LXM_WS_BINARY, s->buf, s->buf_len);
	if (k == -ENOBUFS)
		return false;
	/* Sent, or the socket is closing (and the session with it): either way it is done. */
	s->buf_len = 0;
	return true;
}

static struct lxm_error *monitor_error(struct console_session *s, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static struct lxm_error *monitor_error(struct console_session *s, int status, const char *fmt, ...)
{
	struct lxm_error *err = NULL;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	lxm_error_set(&err, -EIO, status, "console of '%s': %s", s->name, msg);
	return err;
}

static void attached(struct console_session *s, size_t line_len);

/* Collects the reply line and acts on it once it is complete. */
static void reply_read(struct console_session *s, ssize_t nread)
{
	char *nl;

	if (nread < 0) {
		/* A monitor that hangs up without a word is going away with its container. */
		session_fail(s, monitor_error(s, nread == UV_EOF ? 400 : 500,
					      "the monitor closed the connection (%s)",
					      nread == UV_EOF ? "instance stopping?"
							      : uv_strerror((int)nread)));
		return;
	}
	s->buf_len += (size_t)nread;
	nl = memchr(s->buf, '\n', s->buf_len);
	if (nl) {
		attached(s, (size_t)(nl - s->buf));
		return;
	}
	if (s->buf_len >= LXM_MONITOR_LINE_MAX)
		session_fail(s, monitor_error(s, 500, "reply of the monitor longer than %d bytes",
					      LXM_MONITOR_LINE_MAX));
}

static void output_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct console_session *s = stream->data;

	if (nread == 0 || s->ended)
		return;
	if (!s->attached) {
		reply_read(s, nread);
		return;
	}
	if (nread < 0) {
		/* The container stopped (or the monitor dropped a client that fell behind). */
		if (nread != UV_EOF)
			log_debug("console of '%s': read: %s", s->name, uv_strerror((int)nread));
		session_finish(s, NULL);
		session_end(s);
		return;
	}
	s->buf_len = (size_t)nread;
	if (!output_flush(s))
		output_stop(s);
}

/* Reads output again when nothing is held back and "0" is there to take it. */
static void output_start(struct console_session *s)
{
	int k;

	if (s->ended || !s->pipe_open || s->reading || !s->socks[SOCK_DATA].conn ||
	    !output_flush(s))
		return;
	k = uv_read_start((uv_stream_t *)&s->pipe, output_alloc, output_read);
	if (k < 0) {
		session_fail(s, monitor_error(s, 500, "read: %s", uv_strerror(k)));
		return;
	}
	s->reading = true;
}

/* ---- console input: "0" -> monitor ---- */

static void input_pause(struct console_session *s, bool pause)
{
	struct lxmd_conn *c = s->socks[SOCK_DATA].conn;

	s->in_paused = pause;
	if (c)
		lxmd_conn_ws_pause(c, pause);
}

static void input_written(uv_write_t *req, int status)
{
	struct console_write *w = (struct console_write *)req;
	struct console_session *s = w->s;

	s->in_queued -= w->len;
	free(w);
	if (status < 0 && status != UV_ECANCELED && !s->ended) {
		log_debug("console of '%s': write: %s", s->name, uv_strerror(status));
		session_finish(s, NULL);
		session_end(s);
		return;
	}
	if (s->in_paused && s->in_queued <= INPUT_RESUME_BYTES)
		input_pause(s, false);
}

/* Bytes for the console; also the request line, before the attach. */
static int input_write(struct console_session *s, const void *data, size_t len)
{
	struct console_write *w;
	uv_buf_t buf;
	int k;

	if (len == 0 || s->ended || !s->pipe_open)
		return 0;
	w = malloc(sizeof(*w) + len);
	if (!w)
		return -ENOMEM;
	w->s = s;
	w->len = len;
	memcpy(w->data, data, len);
	buf = uv_buf_init(w->data, (unsigned)len);
	k = uv_write(&w->req, (uv_stream_t *)&s->pipe, &buf, 1, input_written);
	if (k < 0) {
		free(w);
		return k;
	}
	s->in_queued += len;
	if (s->in_queued > INPUT_PAUSE_BYTES && !s->in_paused)
		input_pause(s, true);
	return 0;
}

/* ---- websockets ---- */

static void control_message(struct console_session *s, const uint8_t *data, size_t len)
{
	_cleanup_json_ json_t *j = json_loadb((const char *)data, len, 0, NULL);
	const char *cmd = j ? json_string_value(json_object_get(j, "command")) : NULL;
	json_t *args = json_object_get(j, "args");
	json_t *w = json_object_get(args, "width"), *h = json_object_get(args, "height");
	long width, height;

	if (!streq(cmd, "window-resize")) {
		log_debug("console of '%s': ignoring control message %.*s", s->name,
			  (int)(len > 200 ? 200 : len), (const char *)data);
		return;
	}
	/* LXD's clients send the numbers as strings. */
	width = json_is_string(w) ? strtol(json_string_value(w), NULL, 10)
				  : (long)json_integer_value(w);
	height = json_is_string(h) ? strtol(json_string_value(h), NULL, 10)
				   : (long)json_integer_value(h);
	if (width <= 0 || height <= 0 || width > USHRT_MAX || height > USHRT_MAX)
		return;
	s->width = (unsigned)width;
	s->height = (unsigned)height;
	resize_start(s);
}

static void ws_message(void *ud, enum lxm_ws_opcode op, const uint8_t *data, size_t len)
{
	struct console_socket *sock = ud;
	struct console_session *s = sock->s;

	if (sock->index == SOCK_CONTROL) {
		control_message(s, data, len);
		return;
	}
	/* A console has no end of input: LXD's barrier (an empty TEXT message) means nothing. */
	if (op == LXM_WS_BINARY && input_write(s, data, len) < 0) {
		session_finish(s, monitor_error(s, 500, "write: out of memory"));
		session_end(s);
	}
}

static void ws_close(void *ud)
{
	struct console_socket *sock = ud;
	struct console_session *s = sock->s;

	sock->conn = NULL;
	sock->closed = true;
	/* The client detached. */
	session_finish(s, NULL);
	session_end(s);
	session_unref(s);
}

static void ws_drain(void *ud)
{
	struct console_socket *sock = ud;

	if (sock->index == SOCK_DATA)
		output_start(sock->s);
}

static const struct lxmd_ws_ops console_ws_ops = {
	.on_message = ws_message,
	.on_close = ws_close,
	.on_drain = ws_drain,
};

/* GET /1.0/operations/<id>/websocket for a console operation (routed by api-websocket.c). */
static int console_ws_connect(void *data, struct lxmd_request *r, const char *secret,
			      struct lxm_error **err)
{
	struct console_session *s = data;
	struct console_socket *sock = NULL;
	struct lxmd_conn *conn = NULL;
	int k;

	for (int i = 0; i < _SOCK_MAX; i++)
		if (lxmd_ws_secret_equal(s->socks[i].secret, secret))
			sock = &s->socks[i];
	k = lxmd_ws_connect_check(r, sock ? sock_names[sock->index] : NULL, sock && sock->used,
				  s->ended || s->finished, err);
	if (k < 0)
		return k;

	sock->used = true;
	/* One reference for the connection (dropped in ws_close), one for this call: messages and
	 * even the close may come before lxmd_request_upgrade() returns. */
	session_ref(s);
	session_ref(s);
	k = lxmd_request_upgrade(r, &console_ws_ops, sock, &conn, err);
	if (k < 0) {
		sock->used = false;
		/* The connection's reference never was the last: this call holds one more. */
		s->refs--;
		session_unref(s);
		return lxm_error_prefix(err, "console of '%s': websocket '%s'", s->name,
					sock_names[sock->index]);
	}
	if (!sock->closed) {
		sock->conn = conn;
		if (s->ended) {
			lxmd_conn_ws_shutdown(conn);
		} else if (sock->index == SOCK_DATA) {
			if (s->timer_open)
				uv_timer_stop(&s->timer);
			if (s->in_paused)
				lxmd_conn_ws_pause(conn, true);
			output_start(s);
		}
	}
	session_unref(s);
	return 0;
}

static const struct lxmd_ws_session_ops console_ws_session_ops = {
	.connect = console_ws_connect,
};

/* ---- the operation ---- */

static void connect_timeout(uv_timer_t *t)
{
	struct console_session *s = t->data;
	struct lxm_error *err = NULL;

	if (s->socks[SOCK_DATA].used)
		return;
	lxm_error_set(&err, -ETIMEDOUT, 400, "Timed out waiting for websockets to connect");
	session_finish(s, err);
	session_end(s);
}

static int console_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct console_session *s = data;

	if (s->timer_open && !s->socks[SOCK_DATA].used)
		uv_timer_start(&s->timer, connect_timeout, CONNECT_TIMEOUT_MS, 0);
	return 0;
}

static int console_cancel(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct console_session *s = data;
	struct lxm_error *e = NULL;

	lxm_error_set(&e, -ECANCELED, 400, "console of '%s': cancelled", s->name);
	session_finish(s, e);
	session_end(s);
	return 0;
}

/* The operation table let go. */
static void console_op_released(void *data)
{
	struct console_session *s = data;

	s->op = NULL;
	lxmd_ws_session_unregister(&s->ws);
	session_end(s);
	session_unref(s);
}

static json_t *console_resources(const char *name)
{
	return json_pack("{s:[s+], s:[s+]}", "instances", "/1.0/instances/", name, "containers",
			 "/1.0/containers/", name);
}

/* The monitor answered: on {"ok":true} the console is ours and the POST gets its operation. */
static void attached(struct console_session *s, size_t line_len)
{
	_cleanup_json_ json_t *reply = json_loadb(s->buf, line_len, 0, NULL);
	const char *msg = json_string_value(json_object_get(reply, "error"));
	struct lxmd_request *r;
	struct lxm_operation *op = NULL;
	struct lxm_error *err = NULL;
	json_t *md;
	int k;

	if (!json_is_object(reply) || (!msg && !json_is_true(json_object_get(reply, "ok")))) {
		session_fail(s, monitor_error(s, 500, "invalid reply from the monitor: %.*s",
					      (int)(line_len > 200 ? 200 : line_len), s->buf));
		return;
	}
	if (msg) {
		session_fail(s, monitor_error(s, 400, "%s", msg));
		return;
	}
	/* Whatever came after the line is console output already: held back for "0". */
	s->attached = true;
	s->buf_len -= line_len + 1;
	memmove(s->buf, s->buf + line_len + 1, s->buf_len);
	output_stop(s);
	if (s->timer_open)
		uv_timer_stop(&s->timer);
	resize_start(s);

	md = json_pack("{s:{s:s, s:s}}", "fds", sock_names[SOCK_DATA], s->socks[SOCK_DATA].secret,
		       sock_names[SOCK_CONTROL], s->socks[SOCK_CONTROL].secret);
	k = lxm_operation_new(s->d->ops, LXM_OP_WEBSOCKET, "Showing console",
			      console_resources(s->name), console_run, console_cancel, s,
			      console_op_released, &op);
	if (k < 0 || !md) {
		json_decref(md);
		lxm_error_setx(&err, k < 0 ? k : -ENOMEM, 500, "console of '%s': new operation",
			       s->name);
		session_fail(s, err);
		return;
	}
	/* From here the operation holds a reference too. */
	session_ref(s);
	s->op = op;
	lxmd_ws_session_register(&s->ws, op, &console_ws_session_ops, s);
	lxm_operation_set_metadata(op, md);
	lxm_operation_start(op);

	r = TAKE_PTR(s->req);
	if (!r)
		return; /* cannot happen: an aborted POST ends the session */
	r->on_abort = NULL;
	r->deferred = false;
	lxmd_respond_async(r, op);
	session_unref(s);
}

static void reply_timeout(uv_timer_t *t)
{
	struct console_session *s = t->data;

	session_fail(s, monitor_error(s, 504, "the monitor did not answer in %d ms",
				      MONITOR_TIMEOUT_MS));
}

static void monitor_connected(uv_connect_t *req, int status)
{
	static const char line[] = "{\"op\":\"console\"}\n";
	struct console_session *s = req->data;
	int k;

	if (s->ended)
		return;
	if (status == UV_ENOENT || status == UV_ECONNREFUSED) {
		struct lxm_error *err = NULL;

		/* The instance stopped since the POST looked. */
		lxm_error_set(&err, -EINVAL, 400, "console of '%s': instance is not running",
			      s->name);
		session_fail(s, err);
		return;
	}
	if (status < 0) {
		session_fail(s, monitor_error(s, 500, "connect to %s: %s", s->socket_path,
					      uv_strerror(status)));
		return;
	}
	k = input_write(s, line, sizeof(line) - 1);
	if (k == 0) {
		k = uv_read_start((uv_stream_t *)&s->pipe, output_alloc, output_read);
		s->reading = k == 0;
	}
	if (k < 0) {
		session_fail(s,
			     monitor_error(s, 500, "send the attach request: %s", uv_strerror(k)));
		return;
	}
	uv_timer_start(&s->timer, reply_timeout, MONITOR_TIMEOUT_MS, 0);
}

/* ---- the requests ---- */

/* The POST's client hung up before the attach was answered. */
static void post_abort(struct lxmd_request *r)
{
	struct console_session *s = r->defer_data;

	s->req = NULL;
	session_end(s);
	session_unref(s);
}

static int parse_size(const json_t *body, const char *field, unsigned *ret, struct lxm_error **err)
{
	json_t *v = json_object_get(body, field);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > USHRT_MAX)
		return lxm_error_set(err, -EINVAL, 400, "field '%s' must be a number from 0 to %d",
				     field, USHRT_MAX);
	*ret = (unsigned)json_integer_value(v);
	return 0;
}

static int parse_request(const json_t *body, unsigned *ret_w, unsigned *ret_h,
			 struct lxm_error **err)
{
	const char *type = NULL;
	int k;

	if ((k = lxm_json_opt_string(body, "type", &type, err)) < 0 ||
	    (k = parse_size(body, "width", ret_w, err)) < 0 ||
	    (k = parse_size(body, "height", ret_h, err)) < 0)
		return k;
	if (type && *type && !streq(type, "console"))
		return lxm_error_set(err, -EINVAL, 400,
				     "field 'type': '%s' is not supported (containers have only "
				     "'console')",
				     type);
	return 0;
}

/* Maps lxmd_instance_running()'s error for the console's messages. */
static int running_error(const char *name, int k, struct lxm_error *e, struct lxm_error **err)
{
	if (e && e->status == 400)
		return lxm_error_set(err, k, 400, "console of '%s': instance is not running", name);
	if (e && e->status == 404)
		return lxm_error_set(err, k, 404, "console of '%s': instance not found", name);
	return lxm_error_set(err, k, e ? e->status : 500, "console of '%s': %s", name,
			     e && e->msg ? e->msg : strerror(-k));
}

static int session_new(struct lxmd *d, const char *name, struct console_session **ret)
{
	struct console_session *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->d = d;
	s->refs = 1; /* the caller's, then the POST's */
	for (int i = 0; i < _SOCK_MAX; i++) {
		s->socks[i].s = s;
		s->socks[i].index = i;
		if (lxmd_ws_secret_new(s->socks[i].secret) < 0) {
			session_unref(s);
			return -EIO;
		}
	}
	s->name = strdup(name);
	s->buf = malloc(READ_CHUNK);
	if (!s->name || !s->buf || monitor_socket_path(d, name, &s->socket_path) < 0) {
		session_unref(s);
		return -ENOMEM;
	}
	uv_timer_init(d->loop, &s->timer);
	s->timer.data = s;
	s->timer_open = true;
	session_ref(s);
	uv_pipe_init(d->loop, &s->pipe, 0);
	s->pipe.data = s;
	s->pipe_open = true;
	session_ref(s);
	*ret = s;
	return 0;
}

int lxmd_api_instance_console_post(struct lxmd_request *r, struct lxm_error **err)
{
	const char *name = r->args[0];
	_cleanup_error_ struct lxm_error *e = NULL;
	struct console_session *s = NULL;
	unsigned width = 0, height = 0;
	int k;

	k = lxmd_query_project(r, err);
	if (k < 0)
		return k;
	k = parse_request(r->body, &width, &height, err);
	if (k < 0)
		return lxm_error_prefix(err, "console of '%s'", name);
	k = lxmd_instance_running(r->d, name, NULL, NULL, &e);
	if (k < 0)
		return running_error(name, k, e, err);
	k = session_new(r->d, name, &s);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "console of '%s'", name);
	s->width = width;
	s->height = height;

	/* Answered once the monitor did (attached() or session_fail()). */
	s->req = r;
	r->deferred = true;
	r->on_abort = post_abort;
	r->defer_data = s;
	s->connect_req.data = s;
	uv_pipe_connect(&s->connect_req, &s->pipe, s->socket_path, monitor_connected);
	return 0;
}

static int log_path(struct lxmd *d, const char *name, char **ret)
{
	return asprintf(ret, "%s/logs/%s/console.log", d->cfg.root, name) < 0 ? -ENOMEM : 0;
}

int lxmd_api_instance_console_get(struct lxmd_request *r, struct lxm_error **err)
{
	const char *name = r->args[0];
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_free_ char *path = NULL, *text = NULL;
	size_t len = 0;
	int k;

	k = lxmd_query_project(r, err);
	if (k < 0)
		return k;
	k = lxm_db_instance_get(r->d->db, name, &inst, err);
	if (k < 0)
		return lxm_error_prefix(err, "console log of '%s'", name);
	if (log_path(r->d, name, &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "console log of '%s': out of memory", name);
	/* At most the monitor's cap (1 MiB): read at once. No log yet is an empty one. */
	k = lxm_read_file(path, &text, &len);
	if (k == -ENOENT)
		len = 0;
	else if (k < 0)
		return lxm_error_setx(err, k, 500, "console log of '%s': read %s", name, path);
	k = lxmd_respond_raw_head(r, 200, "text/plain; charset=utf-8", (int64_t)len, NULL);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "console log of '%s': answer", name);
	/* Past the head there is no error envelope any more: a failed write cuts the body short,
	 * and the connection closes, which the client sees. */
	if (len > 0)
		(void)lxmd_respond_raw_write(r, text, len, NULL);
	lxmd_respond_raw_end(r);
	return 0;
}

/* Empties the log of a stopped instance; nobody else writes it then. */
static int log_truncate(struct lxmd *d, const char *name, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;

	if (log_path(d, name, &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "console log of '%s': out of memory", name);
	if (truncate(path, 0) < 0 && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "console log of '%s': truncate %s", name,
				      path);
	return 0;
}

/* DELETE while the instance runs: the monitor empties the log it writes. */
static void clear_done(struct monitor_job *j)
{
	struct lxmd_request *r = j->data;

	if (!r)
		return; /* the client hung up */
	r->defer_data = NULL;
	r->on_abort = NULL;
	r->deferred = false;
	/* The instance stopped meanwhile: its log is lxmd's to empty now. */
	if (j->result == -ENOENT || j->result == -ECONNREFUSED) {
		lxm_error_free(TAKE_PTR(j->err));
		j->result = log_truncate(r->d, r->args[0], &j->err);
	}
	if (j->result < 0) {
		lxm_error_prefix(&j->err, "console log of '%s': clear", r->args[0]);
		lxmd_respond_error(r, TAKE_PTR(j->err));
		return;
	}
	lxmd_respond_sync(r, json_object(), NULL);
}

static void clear_abort(struct lxmd_request *r)
{
	struct monitor_job *j = r->defer_data;

	j->data = NULL;
}

int lxmd_api_instance_console_delete(struct lxmd_request *r, struct lxm_error **err)
{
	const char *name = r->args[0];
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_error_ struct lxm_error *e = NULL;
	_cleanup_free_ char *sock = NULL;
	int k;

	k = lxmd_query_project(r, err);
	if (k < 0)
		return k;
	k = lxm_db_instance_get(r->d->db, name, &inst, err);
	if (k < 0)
		return lxm_error_prefix(err, "console log of '%s'", name);
	if (lxmd_instance_running(r->d, name, NULL, NULL, &e) == 0) {
		struct monitor_job *j = NULL;

		if (monitor_socket_path(r->d, name, &sock) < 0)
			return lxm_error_set(err, -ENOMEM, 500,
					     "console log of '%s': out of memory", name);
		k = monitor_job_start(r->d, sock, json_pack("{s:s}", "op", "console-log-clear"),
				      clear_done, r, &j);
		if (k < 0)
			return lxm_error_setx(err, k, 500, "console log of '%s': clear", name);
		/* Answered by clear_done(), which runs on a later loop iteration. */
		r->deferred = true;
		r->on_abort = clear_abort;
		r->defer_data = j;
		return 0;
	}
	k = log_truncate(r->d, name, err);
	if (k < 0)
		return k;
	return lxmd_respond_sync(r, json_object(), NULL);
}
