/* lxmd's client of the VM agent (agent-client.h): one uv_pipe_t to the chardev socket, frames
 * parsed as they arrive, sessions in a list. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cleanup.h"
#include "error.h"
#include "vm/agent-client.h"

#define IN_MAX (LXM_AGENT_HDR_SIZE + LXM_AGENT_MAX_PAYLOAD)
/* How often to retry a socket that is not there yet, and to repeat HELLO. */
#define RETRY_MS 200
#define HELLO_MS 1000

enum kind { KIND_EXEC, KIND_GET, KIND_PUT };

struct lxm_agent_session {
	struct lxm_agent *a;		/* the connection */
	struct lxm_agent_session *next; /* the connection's list */
	uint32_t id;			/* session id */
	enum kind kind;			/* what it does */
	struct lxm_agent_cbs cb;	/* the caller's callbacks */
	struct lxm_agent_window win;	/* flow control */
	uint8_t *q;			/* queued input */
	size_t qoff, qlen, qcap;	/* its start, length and allocation */
	bool eof;			/* STDIN_EOF or END follows the queue */
	bool eof_sent;			/* ... and was sent */
	bool hold;			/* output credit held back */
	size_t held;			/* output consumed while held */
};

struct lxm_agent {
	uv_loop_t *loop;		    /* the loop */
	struct lxm_agent_conn_opts o;	    /* callbacks; path is copied */
	char *path;			    /* the chardev socket */
	uv_pipe_t *pipe;		    /* the connection, NULL between attempts */
	bool connected;			    /* pipe is connected */
	uv_connect_t connect;		    /* the pending connect */
	uv_timer_t timer;		    /* retries, HELLO repeats and the deadline */
	uint64_t deadline;		    /* uv_now() when to give up waiting for HELLO */
	int handles;			    /* handles not yet closed */
	bool ready;			    /* HELLO came */
	bool closing;			    /* lxm_agent_close() was called */
	bool failed;			    /* ready was called with an error, or lost */
	int last_errno;			    /* why the last attempt failed (negative) */
	struct lxm_agent_hello hello;	    /* the agent's HELLO */
	uint8_t in[IN_MAX];		    /* input not yet parsed */
	size_t inlen;			    /* bytes in in */
	struct lxm_agent_session *sessions; /* open sessions */
	uint32_t next_id;		    /* the last session id given */
	uint32_t nonce;			    /* of the last HELLO sent */
	uint64_t hello_at;		    /* uv_now() of the last HELLO sent */
};

/* One write: the request and the frames it carries. */
struct agent_write {
	uv_write_t req; /* libuv's */
	uint8_t *data;	/* the frames, freed when written */
};

static void handle_closed(uv_handle_t *h)
{
	struct lxm_agent *a = h->data;

	if ((uv_handle_t *)a->pipe == h) {
		free(a->pipe);
		a->pipe = NULL;
	}
	if (--a->handles > 0 || !a->closing)
		return;
	lxm_agent_hello_clear(&a->hello);
	free(a->path);
	free(a);
}

static void write_done(uv_write_t *req, int status)
{
	struct agent_write *w = (struct agent_write *)req;

	(void)status; /* a failed write shows as a read error too */
	free(w->data);
	free(w);
}

/* Sends the frames in e (taking its buffer); -errno when the connection is gone. */
static int send_enc(struct lxm_agent *a, struct lxm_agent_enc *e)
{
	struct agent_write *w;
	uv_buf_t b;
	int r;

	if (!a->pipe || !a->connected) {
		lxm_agent_enc_free(e);
		return -ENOTCONN;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		lxm_agent_enc_free(e);
		return -ENOMEM;
	}
	w->data = e->data;
	b = uv_buf_init((char *)e->data, (unsigned)e->len);
	*e = (struct lxm_agent_enc){ 0 };
	r = uv_write(&w->req, (uv_stream_t *)a->pipe, &b, 1, write_done);
	if (r < 0) {
		free(w->data);
		free(w);
	}
	return r;
}

static int send_u32(struct lxm_agent *a, uint8_t type, uint32_t id, uint32_t v)
{
	struct lxm_agent_enc e = { 0 };
	int r = lxm_agent_u32_encode(&e, type, id, v);

	return r < 0 ? (lxm_agent_enc_free(&e), r) : send_enc(a, &e);
}

static int send_empty(struct lxm_agent *a, uint8_t type, uint32_t id)
{
	struct lxm_agent_enc e = { 0 };
	int r = lxm_agent_empty_encode(&e, type, id);

	return r < 0 ? (lxm_agent_enc_free(&e), r) : send_enc(a, &e);
}

/* ---- sessions ---- */

static void session_unlink(struct lxm_agent_session *s)
{
	for (struct lxm_agent_session **p = &s->a->sessions; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			return;
		}
}

static void session_free(struct lxm_agent_session *s)
{
	free(s->q);
	free(s);
}

/* The end of a session: done, then freed. */
static void session_finish(struct lxm_agent_session *s, const struct lxm_agent_exit *exit,
			   struct lxm_error *err)
{
	session_unlink(s);
	s->cb.done(s, exit, err, s->cb.ud);
	session_free(s);
}

static void session_fail(struct lxm_agent_session *s, int errnum, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void session_fail(struct lxm_agent_session *s, int errnum, int status, const char *fmt, ...)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	lxm_error_set(&err, errnum, status, "%s", r < 0 ? "out of memory" : msg);
	session_finish(s, NULL, err);
}

static void sessions_fail_all(struct lxm_agent *a, int errnum, const char *why)
{
	while (a->sessions)
		session_fail(a->sessions, errnum, 500, "VM agent: %s", why);
}

/* Sends queued input as far as the window allows, then EOF/END. */
static void session_flush(struct lxm_agent_session *s)
{
	uint8_t type = s->kind == KIND_EXEC ? LXM_AGENT_STDIN : LXM_AGENT_DATA;
	struct lxm_agent_enc e = { 0 };
	bool had = s->qlen > 0;
	size_t n;

	while (s->qlen && (n = lxm_agent_window_sendable(&s->win, s->qlen)) > 0) {
		if (lxm_agent_data_encode(&e, type, s->id, s->q + s->qoff, n) < 0)
			break;
		lxm_agent_window_sent(&s->win, n);
		s->qoff += n;
		s->qlen -= n;
	}
	if (s->qlen == 0) {
		s->qoff = 0;
		if (s->eof && !s->eof_sent) {
			lxm_agent_empty_encode(
				&e, s->kind == KIND_EXEC ? LXM_AGENT_STDIN_EOF : LXM_AGENT_END,
				s->id);
			s->eof_sent = true;
		}
	}
	if (e.len)
		send_enc(s->a, &e);
	else
		lxm_agent_enc_free(&e);
	if (had && s->qlen == 0 && s->cb.drained)
		s->cb.drained(s, s->cb.ud);
}

static int session_queue(struct lxm_agent_session *s, const void *buf, size_t len)
{
	if (s->eof)
		return -EPIPE;
	if (!s->a->connected)
		return -ENOTCONN;
	if (s->qoff + s->qlen + len > s->qcap) {
		size_t cap = s->qcap ? s->qcap : 64 * 1024;
		uint8_t *q;

		if (s->qoff) {
			memmove(s->q, s->q + s->qoff, s->qlen);
			s->qoff = 0;
		}
		while (cap < s->qlen + len)
			cap *= 2;
		if (cap > s->qcap) {
			q = realloc(s->q, cap);
			if (!q)
				return -ENOMEM;
			s->q = q;
			s->qcap = cap;
		}
	}
	memcpy(s->q + s->qoff + s->qlen, buf, len);
	s->qlen += len;
	session_flush(s);
	return 0;
}

static int session_new(struct lxm_agent *a, enum kind kind, const struct lxm_agent_cbs *cbs,
		       struct lxm_agent_session **ret, struct lxm_error **err)
{
	struct lxm_agent_session *s;

	if (!cbs || !cbs->done)
		return lxm_error_set(err, -EINVAL, 500,
				     "VM agent: a session needs a done callback");
	if (!lxm_agent_is_ready(a))
		return lxm_error_set(err, -ENOTCONN, 503, "VM agent: not connected");
	s = calloc(1, sizeof(*s));
	if (!s)
		return lxm_error_set(err, -ENOMEM, 500, "VM agent: out of memory");
	s->a = a;
	s->kind = kind;
	s->cb = *cbs;
	lxm_agent_window_init(&s->win);
	do
		s->id = ++a->next_id;
	while (s->id == 0);
	s->next = a->sessions;
	a->sessions = s;
	*ret = s;
	return 0;
}

/* Sends a session's opening frame; on failure the session is gone and err says why. */
static int session_open(struct lxm_agent_session *s, struct lxm_agent_enc *e, int r,
			const char *what, struct lxm_error **err)
{
	if (r == 0)
		r = send_enc(s->a, e);
	else
		lxm_agent_enc_free(e);
	if (r < 0) {
		session_unlink(s);
		session_free(s);
		return lxm_error_setx(err, r, r == -EMSGSIZE || r == -E2BIG ? 400 : 500,
				      "VM agent: send %s", what);
	}
	return 0;
}

int lxm_agent_exec(struct lxm_agent *a, const struct lxm_agent_exec_req *req,
		   const struct lxm_agent_cbs *cbs, struct lxm_agent_session **ret,
		   struct lxm_error **err)
{
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_session *s;
	int r;

	if (!req || !req->argv || !req->argv[0])
		return lxm_error_set(err, -EINVAL, 400, "VM agent: exec: no command");
	r = session_new(a, KIND_EXEC, cbs, &s, err);
	if (r < 0)
		return r;
	r = lxm_agent_exec_encode(&e, s->id, req);
	r = session_open(s, &e, r, "exec request", err);
	if (r < 0)
		return lxm_error_prefix(err, "exec %s", req->argv[0]);
	*ret = s;
	return 0;
}

int lxm_agent_stdin(struct lxm_agent_session *s, const void *buf, size_t len)
{
	return s->kind == KIND_EXEC ? session_queue(s, buf, len) : -EINVAL;
}

int lxm_agent_stdin_eof(struct lxm_agent_session *s)
{
	if (s->kind != KIND_EXEC)
		return -EINVAL;
	s->eof = true;
	session_flush(s);
	return 0;
}

int lxm_agent_resize(struct lxm_agent_session *s, uint16_t rows, uint16_t cols)
{
	struct lxm_agent_enc e = { 0 };
	int r = lxm_agent_resize_encode(&e, s->id, rows, cols);

	return r < 0 ? (lxm_agent_enc_free(&e), r) : send_enc(s->a, &e);
}

int lxm_agent_signal(struct lxm_agent_session *s, int sig)
{
	if (sig <= 0 || sig >= 65)
		return -EINVAL;
	return send_u32(s->a, LXM_AGENT_SIGNAL, s->id, (uint32_t)sig);
}

int lxm_agent_file_get(struct lxm_agent *a, const char *path, const struct lxm_agent_cbs *cbs,
		       struct lxm_agent_session **ret, struct lxm_error **err)
{
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_session *s;
	int r;

	r = session_new(a, KIND_GET, cbs, &s, err);
	if (r < 0)
		return r;
	r = lxm_agent_str_encode(&e, LXM_AGENT_FILE_GET, s->id, path);
	r = session_open(s, &e, r, "file request", err);
	if (r < 0)
		return lxm_error_prefix(err, "read %s", path);
	*ret = s;
	return 0;
}

int lxm_agent_file_put(struct lxm_agent *a, const struct lxm_agent_file *fi,
		       const struct lxm_agent_cbs *cbs, struct lxm_agent_session **ret,
		       struct lxm_error **err)
{
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_session *s;
	int r;

	if (!fi || !fi->path || !fi->path[0])
		return lxm_error_set(err, -EINVAL, 400, "VM agent: write: no path");
	r = session_new(a, KIND_PUT, cbs, &s, err);
	if (r < 0)
		return r;
	r = lxm_agent_file_encode(&e, LXM_AGENT_FILE_PUT, s->id, fi);
	r = session_open(s, &e, r, "file", err);
	if (r < 0)
		return lxm_error_prefix(err, "write %s", fi->path);
	/* Only a regular file has data; the others are done when the agent answers. */
	s->eof = s->eof_sent = fi->type != LXM_AGENT_FILE_REGULAR;
	*ret = s;
	return 0;
}

int lxm_agent_put_write(struct lxm_agent_session *s, const void *buf, size_t len)
{
	return s->kind == KIND_PUT ? session_queue(s, buf, len) : -EINVAL;
}

int lxm_agent_put_end(struct lxm_agent_session *s)
{
	if (s->kind != KIND_PUT)
		return -EINVAL;
	s->eof = true;
	session_flush(s);
	return 0;
}

size_t lxm_agent_session_pending(const struct lxm_agent_session *s)
{
	return s->qlen;
}

static void session_consumed(struct lxm_agent_session *s, size_t n)
{
	uint32_t grant;

	if (s->hold) {
		s->held += n;
		return;
	}
	grant = lxm_agent_window_consumed(&s->win, n);
	if (grant)
		send_u32(s->a, LXM_AGENT_WINDOW_MSG, s->id, grant);
}

void lxm_agent_session_hold(struct lxm_agent_session *s, bool hold)
{
	size_t n = s->held;

	s->hold = hold;
	if (hold)
		return;
	s->held = 0;
	session_consumed(s, n);
}

void lxm_agent_session_close(struct lxm_agent_session *s)
{
	send_empty(s->a, LXM_AGENT_CLOSE, s->id);
	session_unlink(s);
	session_free(s);
}

/* ---- frames from the agent ---- */

static int error_status(int errnum)
{
	switch (errnum) {
	case ENOENT:
		return 404;
	case EINVAL:
	case EISDIR:
	case ENOTDIR:
	case ELOOP:
	case EEXIST:
	case ENAMETOOLONG:
		return 400;
	case EACCES:
	case EPERM:
		return 403;
	default:
		return 500;
	}
}

static void session_output(struct lxm_agent_session *s, int stream, const struct lxm_agent_frame *f)
{
	if (lxm_agent_window_received(&s->win, f->len) < 0) {
		session_fail(s, -EPROTO, 500, "VM agent: session %u: data past the window", s->id);
		return;
	}
	if (s->cb.output)
		s->cb.output(s, stream, f->payload, f->len, s->cb.ud);
	session_consumed(s, f->len);
}

static void session_frame(struct lxm_agent_session *s, const struct lxm_agent_frame *f)
{
	struct lxm_agent_file fi;
	struct lxm_agent_exit ex;
	_cleanup_free_ char *msg = NULL;
	uint32_t kind, value;
	int errnum;

	switch (f->type) {
	case LXM_AGENT_STARTED:
		if (s->kind == KIND_EXEC && lxm_agent_u32_decode(f, &value) == 0) {
			if (s->cb.started)
				s->cb.started(s, value, s->cb.ud);
			return;
		}
		break;
	case LXM_AGENT_STDOUT:
	case LXM_AGENT_STDERR:
		if (s->kind == KIND_EXEC) {
			session_output(s, f->type == LXM_AGENT_STDOUT ? 1 : 2, f);
			return;
		}
		break;
	case LXM_AGENT_DATA:
		if (s->kind == KIND_GET) {
			session_output(s, 0, f);
			return;
		}
		break;
	case LXM_AGENT_EXIT:
		if (s->kind == KIND_EXEC && lxm_agent_exit_decode(f, &kind, &value) == 0) {
			ex = (struct lxm_agent_exit){ .signaled = kind == LXM_AGENT_EXIT_SIGNAL,
						      .value = (int)value };
			session_finish(s, &ex, NULL);
			return;
		}
		break;
	case LXM_AGENT_FILE:
		if (s->kind == KIND_GET && lxm_agent_file_decode(f, &fi) == 0) {
			if (s->cb.file)
				s->cb.file(s, &fi, s->cb.ud);
			lxm_agent_file_clear(&fi);
			return;
		}
		break;
	case LXM_AGENT_END:
	case LXM_AGENT_RESULT:
		if ((s->kind == KIND_GET && f->type == LXM_AGENT_END) ||
		    (s->kind == KIND_PUT && f->type == LXM_AGENT_RESULT)) {
			session_finish(s, NULL, NULL);
			return;
		}
		break;
	case LXM_AGENT_ERROR:
		if (lxm_agent_error_decode(f, &errnum, &msg) == 0) {
			/* The agent's message names the step and the path. */
			session_fail(s, -errnum, error_status(errnum), "%s", msg);
			return;
		}
		break;
	case LXM_AGENT_WINDOW_MSG:
		if (lxm_agent_u32_decode(f, &value) == 0 &&
		    lxm_agent_window_granted(&s->win, value) == 0) {
			session_flush(s);
			return;
		}
		break;
	default:
		break;
	}
	session_fail(s, -EPROTO, 500, "VM agent: session %u: unexpected or malformed %s", s->id,
		     lxm_agent_type_name(f->type));
}

static void conn_drop(struct lxm_agent *a);
static int send_hello(struct lxm_agent *a);
static void conn_lost(struct lxm_agent *a, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void hello_frame(struct lxm_agent *a, const struct lxm_agent_frame *f)
{
	struct lxm_agent_hello h;

	if (lxm_agent_hello_decode(f, &h) < 0) {
		conn_lost(a, EPROTO, "malformed HELLO");
		return;
	}
	if (h.proto_min > LXM_AGENT_PROTO_VERSION || h.proto_max < LXM_AGENT_PROTO_VERSION) {
		conn_lost(a, EPROTONOSUPPORT,
			  "the agent speaks protocol versions %u-%u, lxmd speaks %u", h.proto_min,
			  h.proto_max, LXM_AGENT_PROTO_VERSION);
		lxm_agent_hello_clear(&h);
		return;
	}
	if (a->ready) {
		/* The agent's own HELLO: it restarted and its sessions are gone. */
		if (h.nonce == 0)
			sessions_fail_all(a, -ECONNRESET, "the agent restarted");
		lxm_agent_hello_clear(&h);
		return;
	}
	if (h.nonce != a->nonce) {
		/* An agent that just opened its port (nonce 0: ask once more), or the answer to
		 * an older HELLO, which the answer to the last follows. */
		bool fresh = h.nonce == 0;

		lxm_agent_hello_clear(&h);
		if (fresh)
			send_hello(a);
		return;
	}
	a->hello = h;
	a->ready = true;
	uv_timer_stop(&a->timer);
	a->o.ready(a, NULL, a->o.ud);
}

static void conn_frame(struct lxm_agent *a, const struct lxm_agent_frame *f)
{
	_cleanup_free_ char *msg = NULL;
	struct lxm_agent_session *s;
	int errnum;

	if (f->type == LXM_AGENT_HELLO) {
		hello_frame(a, f);
		return;
	}
	if (!a->ready)
		return; /* an answer to a previous host's request */
	if (f->session == 0) {
		if (f->type == LXM_AGENT_ERROR && lxm_agent_error_decode(f, &errnum, &msg) == 0)
			/* The agent found our stream malformed and ended all sessions. */
			sessions_fail_all(a, -errnum, msg);
		else
			conn_lost(a, EPROTO, "unexpected %s on session 0",
				  lxm_agent_type_name(f->type));
		return;
	}
	for (s = a->sessions; s; s = s->next)
		if (s->id == f->session)
			break;
	if (s)
		session_frame(s, f);
}

/* ---- the connection ---- */

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct lxm_agent *a = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)a->in + a->inlen, (unsigned)(sizeof(a->in) - a->inlen));
}

static void conn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct lxm_agent *a = st->data;
	struct lxm_agent_frame f;
	size_t off = 0, used;
	int r;

	(void)buf;
	if (n == 0)
		return;
	if (n < 0) {
		conn_lost(a, n == UV_EOF ? ECONNRESET : (int)-n, "%s",
			  n == UV_EOF ? "the connection closed" : uv_strerror((int)n));
		return;
	}
	a->inlen += (size_t)n;
	while (a->connected && !a->closing &&
	       (r = lxm_agent_frame_parse(a->in + off, a->inlen - off, &f, &used)) != 0) {
		if (r < 0) {
			conn_lost(a, EPROTO, "malformed frame: %s", strerror(-r));
			return;
		}
		conn_frame(a, &f);
		off += used;
	}
	if (!a->connected)
		return;
	memmove(a->in, a->in + off, a->inlen - off);
	a->inlen -= off;
}

static int send_hello(struct lxm_agent *a)
{
	struct lxm_agent_hello h = { .proto_min = LXM_AGENT_PROTO_VERSION,
				     .proto_max = LXM_AGENT_PROTO_VERSION };
	struct lxm_agent_enc e = { 0 };
	int r;

	do
		h.nonce = ++a->nonce;
	while (h.nonce == 0);
	a->hello_at = uv_now(a->loop);
	r = lxm_agent_hello_encode(&e, &h);

	return r < 0 ? (lxm_agent_enc_free(&e), r) : send_enc(a, &e);
}

/* Closes the pipe (a new attempt or the end). */
static void conn_drop(struct lxm_agent *a)
{
	if (!a->pipe)
		return;
	if (!uv_is_closing((uv_handle_t *)a->pipe))
		uv_close((uv_handle_t *)a->pipe, handle_closed);
	a->connected = false;
	a->inlen = 0;
}

static void fail_ready(struct lxm_agent *a)
{
	_cleanup_error_ struct lxm_error *err = NULL;

	a->failed = true;
	uv_timer_stop(&a->timer);
	conn_drop(a);
	if (a->last_errno && a->last_errno != -ECONNREFUSED && a->last_errno != -ENOENT)
		lxm_error_setx(&err, a->last_errno, 503,
			       "waiting for the VM agent on %s: no answer within %.1f s", a->path,
			       (double)a->o.timeout_ms / 1000);
	else
		lxm_error_set(&err, -ETIMEDOUT, 503,
			      "waiting for the VM agent on %s: no answer within %.1f s%s", a->path,
			      (double)a->o.timeout_ms / 1000,
			      a->last_errno ? " (its socket is not there yet)" : "");
	a->o.ready(a, err, a->o.ud);
}

static void conn_lost(struct lxm_agent *a, int errnum, const char *fmt, ...)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	conn_drop(a);
	if (!a->ready) {
		/* Before HELLO: the next attempt may find the agent. */
		a->last_errno = -errnum;
		return;
	}
	a->ready = false;
	a->failed = true;
	uv_timer_stop(&a->timer);
	sessions_fail_all(a, -errnum, r < 0 ? "connection lost" : msg);
	lxm_error_set(&err, -errnum, 503, "VM agent on %s: %s", a->path,
		      r < 0 ? "connection lost" : msg);
	if (a->o.lost)
		a->o.lost(a, err, a->o.ud);
}

static void conn_attempt(struct lxm_agent *a);

static void conn_connected(uv_connect_t *req, int status)
{
	struct lxm_agent *a = req->data;
	int r;

	if (a->closing || a->failed)
		return;
	if (status < 0) {
		a->last_errno = status;
		conn_drop(a);
		return;
	}
	a->connected = true;
	r = uv_read_start((uv_stream_t *)a->pipe, conn_alloc, conn_read);
	if (r == 0)
		r = send_hello(a);
	if (r < 0) {
		a->last_errno = r;
		conn_drop(a);
	}
}

static void conn_attempt(struct lxm_agent *a)
{
	int r;

	a->pipe = calloc(1, sizeof(*a->pipe));
	if (!a->pipe) {
		a->last_errno = -ENOMEM;
		return;
	}
	r = uv_pipe_init(a->loop, a->pipe, 0);
	if (r < 0) {
		free(a->pipe);
		a->pipe = NULL;
		a->last_errno = r;
		return;
	}
	a->handles++;
	a->pipe->data = a;
	a->connect.data = a;
	uv_pipe_connect(&a->connect, a->pipe, a->path, conn_connected);
}

/* Every RETRY_MS until HELLO: a new connection if there is none, HELLO again every HELLO_MS. */
static void conn_tick(uv_timer_t *t)
{
	struct lxm_agent *a = t->data;
	uint64_t now = uv_now(a->loop);

	if (a->ready || a->closing || a->failed)
		return;
	if (now >= a->deadline) {
		fail_ready(a);
		return;
	}
	if (!a->pipe) {
		conn_attempt(a);
		return;
	}
	if (a->connected && now - a->hello_at >= HELLO_MS)
		send_hello(a);
}

int lxm_agent_connect(uv_loop_t *loop, const struct lxm_agent_conn_opts *o, struct lxm_agent **ret,
		      struct lxm_error **err)
{
	struct lxm_agent *a;

	if (!o || !o->path || !o->ready)
		return lxm_error_set(err, -EINVAL, 500, "VM agent: no socket or callback");
	/* libuv would cut a longer path and connect elsewhere. */
	if (strlen(o->path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "VM agent socket %s: path longer than %zu bytes", o->path,
				     sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
	a = calloc(1, sizeof(*a));
	if (!a || !(a->path = strdup(o->path))) {
		free(a);
		return lxm_error_set(err, -ENOMEM, 500, "VM agent: out of memory");
	}
	a->loop = loop;
	a->o = *o;
	a->o.path = a->path;
	uv_timer_init(loop, &a->timer);
	a->timer.data = a;
	a->handles = 1;
	a->deadline = uv_now(loop) + o->timeout_ms;
	uv_timer_start(&a->timer, conn_tick, RETRY_MS, RETRY_MS);
	conn_attempt(a);
	*ret = a;
	return 0;
}

void lxm_agent_close(struct lxm_agent *a)
{
	if (!a || a->closing)
		return;
	a->closing = true;
	sessions_fail_all(a, -ECANCELED, "connection closed");
	uv_timer_stop(&a->timer);
	conn_drop(a);
	uv_close((uv_handle_t *)&a->timer, handle_closed);
}

bool lxm_agent_is_ready(const struct lxm_agent *a)
{
	return a && a->ready && a->connected && !a->closing;
}

const char *lxm_agent_kernel(const struct lxm_agent *a)
{
	return a->hello.kernel ? a->hello.kernel : "";
}

const char *lxm_agent_version(const struct lxm_agent *a)
{
	return a->hello.version ? a->hello.version : "";
}
