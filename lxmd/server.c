#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "cleanup.h"
#include "daemon.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "ratelimit.h"
#include "server.h"
#include "tls.h"
#include "util.h"

/* Bytes read ahead while a request is being answered (pipelining); past it reading pauses. */
#define CONN_MAX_READAHEAD (1024 * 1024)
/* Longest websocket message a client may send us. */
#define CONN_WS_MAX_MESSAGE (1024 * 1024)
/* Response bytes a client may leave unread before its connection stops taking requests (HTTP)
 * or frames (a websocket, on top of LXMD_WS_MAX_QUEUED) until they drain: a client that pipelines
 * requests, or pings, and never reads cannot make the daemon queue without end. */
#define CONN_MAX_UNSENT (1024 * 1024)

/* Limits of the TCP (HTTPS) listener against clients that hold connections without using them. */
#define TCP_MAX_CONNS	      512	   /* connections at once, all clients */
#define TCP_MAX_CONNS_PER_IP  32	   /* connections at once from one address */
#define TCP_HANDSHAKE_TIMEOUT (10 * 1000)  /* ms for the TLS handshake */
#define TCP_HEADER_TIMEOUT    (30 * 1000)  /* ms from a request's first byte to its end */
#define TCP_IDLE_TIMEOUT      (300 * 1000) /* ms a keep-alive connection may sit idle */
#define TCP_SWEEP_INTERVAL    1000	   /* ms between checks of those deadlines */
/* Requests a second one client address may make over HTTPS, and the burst it may make at once.
 * An interactive lxc/lxm session makes a handful of requests per command (lxc launch: about ten,
 * lxc list: one or two), and tools that drive many instances in parallel (pylxd, Terraform,
 * Ansible) send some tens at once: a burst of 200 absorbs that, and 100 a second sustained is far
 * above what any of them keeps up, while it caps what one address can make the daemon do. */
#define TCP_RATE	     100
#define TCP_BURST	     200
#define TCP_RATE_MAX_CLIENTS 4096  /* client addresses whose buckets are kept at once */
#define TLS_READ_BUF	     65536 /* ciphertext read at once */

static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum conn_mode {
	CONN_HTTP,	/* parsing requests */
	CONN_WEBSOCKET, /* upgraded */
};

struct lxmd_conn {
	TAILQ_ENTRY(lxmd_conn) link; /* in server->conns */
	struct lxmd_server *server;  /* the owner */
	union {
		uv_pipe_t pipe; /* the client's socket (unix listener) */
		uv_tcp_t tcp;	/* or (TCP listener); both start with the stream */
	};
	struct lxm_tls *tls;		  /* TCP: the TLS session all bytes go through */
	char *raw;			  /* TCP: buffer for ciphertext being read */
	char ip[64];			  /* TCP: the client's address */
	char peer_fp[65];		  /* TCP: its certificate's fingerprint, "" if none */
	uint64_t accepted_ms;		  /* TCP: monotonic ms of the accept */
	uint64_t active_ms;		  /* TCP: monotonic ms of the last read or write */
	uint64_t partial_ms;		  /* TCP: first byte of a request not dispatched yet, 0 */
	uint64_t write_ms;		  /* TCP: last progress of a non-empty write queue */
	uint64_t retry_ms;		  /* TCP: the request being parsed is over the rate limit:
					     ms until the client may retry; 0 when it is not */
	bool backlogged;		  /* stopped taking input until queued drains */
	enum conn_mode mode;		  /* HTTP or websocket */
	struct lxm_http_parser *parser;	  /* HTTP mode */
	const struct lxmd_route *route;	  /* routed at headers time for the request being parsed */
	char *args[4];			  /* its '*' segments */
	bool containers;		  /* it used /1.0/containers */
	struct lxmd_request *current;	  /* the request being answered, or NULL */
	char *in;			  /* received bytes not parsed yet */
	size_t in_len;			  /* bytes in in */
	size_t in_cap;			  /* allocated size of in */
	size_t queued;			  /* bytes written but not yet confirmed */
	bool reading;			  /* uv_read_start is active */
	bool close_after_write;		  /* close once queued reaches 0 */
	bool closing;			  /* uv_close has been called */
	bool eof;			  /* the peer finished sending */
	bool processing;		  /* inside conn_process(): answers must not recurse */
	bool paused;			  /* the websocket's owner paused reading */
	bool want_drain;		  /* a send got -ENOBUFS: tell ws_ops->on_drain */
	bool expect_continue;		  /* the request being parsed sent Expect: 100-continue */
	bool continue_sent;		  /* and "100 Continue" went out */
	struct lxm_ws *ws;		  /* websocket mode */
	const struct lxmd_ws_ops *ws_ops; /* the websocket's owner */
	void *ws_ud;			  /* for ws_ops */
	uint64_t req_id;		  /* counts dispatched requests: names current in writes */

	/* Streamed request bodies (LXMD_ROUTE_STREAM_BODY). The handler runs when the headers are
	 * in; each feed() gathers the body bytes it parses into chunk, which goes to the handler
	 * once feed() has returned. While the handler holds a piece, nothing more is fed and, past
	 * CONN_MAX_READAHEAD, nothing more is read: the client's sends block. */
	bool stream_msg;	       /* the message being parsed streams its body; the parser owns
					  its head (request->http) until the message is complete */
	bool stream_dispatch;	       /* its headers just came: run the handler after feed() */
	struct lxmd_request *body_req; /* who takes the pieces; NULL once answered or ended */
	char *chunk;		       /* body bytes parsed but not handed over yet */
	size_t chunk_len;	       /* bytes in chunk */
	size_t chunk_cap;	       /* allocated size of chunk */
	bool chunk_busy;	       /* body_req holds a piece until lxmd_request_body_resume() */
	bool body_done;	       /* the message is complete: on_body_end after the last piece */
	bool close_after_body; /* answered early with "Connection: close": close once the
				  rest of the body has been read (and dropped) */

	/* Raw (streamed) responses. */
	int64_t raw_left;    /* bytes announced by Content-Length and not sent yet, -1: unknown */
	bool raw_keep_alive; /* the raw response's head promised keep-alive */
};

struct lxmd_server {
	struct lxmd *d; /* the daemon */
	union {
		uv_pipe_t listener;    /* the bound socket (unix) */
		uv_tcp_t tcp_listener; /* or the bound TCP socket (HTTPS) */
	};
	char *path;		       /* its path, unlinked on close; or the TCP address */
	SSL_CTX *tls_ctx;	       /* TCP: TLS with this context */
	uv_timer_t sweep;	       /* TCP: checks the connections' deadlines */
	TAILQ_HEAD(, lxmd_conn) conns; /* open connections */
	size_t n_conns;		       /* entries in conns */
	size_t handles;		       /* open handles incl. the listener */
	bool closing;		       /* lxmd_server_close() was called */
	struct lxmd_ratelimit *rate;   /* TCP: request rates per client address */
	size_t refused;		       /* TCP: connections refused since the last warning */
	uint64_t refused_log_ms;       /* TCP: when that warning was logged */
};

/* The TCP listener's deadlines and rates: the defaults above, or for tests the LXMD_TEST_HTTPS_*
 * environment variables (see lxmd_server_test_knobs()). */
static struct {
	uint64_t handshake_ms; /* TCP_HANDSHAKE_TIMEOUT */
	uint64_t header_ms;    /* TCP_HEADER_TIMEOUT */
	uint64_t idle_ms;      /* TCP_IDLE_TIMEOUT */
	uint32_t rate;	       /* TCP_RATE */
	uint32_t burst;	       /* TCP_BURST */
} tcp_limits = {
	.handshake_ms = TCP_HANDSHAKE_TIMEOUT,
	.header_ms = TCP_HEADER_TIMEOUT,
	.idle_ms = TCP_IDLE_TIMEOUT,
	.rate = TCP_RATE,
	.burst = TCP_BURST,
};

struct write_req {
	uv_write_t req;		/* libuv's */
	struct lxmd_conn *conn; /* whose queue it counts in */
	size_t len;		/* bytes */
	/* Raw responses: run once written, if the request (by req_id) is still the current one. */
	void (*done)(struct lxmd_request *r);
	uint64_t req_id; /* conn->req_id when queued */
	char data[];	 /* the copy being written */
};

static void conn_process(struct lxmd_conn *c);
static void conn_start_reading(struct lxmd_conn *c);

/* Whether the client leaves so much unread that it must wait for it to drain. */
static bool conn_over_unsent(const struct lxmd_conn *c)
{
	size_t limit =
		c->mode == CONN_WEBSOCKET ? LXMD_WS_MAX_QUEUED + CONN_MAX_UNSENT : CONN_MAX_UNSENT;

	return c->queued > limit;
}

static void server_maybe_free(struct lxmd_server *s)
{
	if (s->closing && s->handles == 0) {
		free(s->path);
		if (s->tls_ctx)
			SSL_CTX_free(s->tls_ctx);
		lxmd_ratelimit_free(s->rate);
		free(s);
	}
}

static void request_free(struct lxmd_request *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(r->args); i++)
		free(r->args[i]);
	if (!r->http_borrowed)
		lxm_http_request_free(r->http);
	json_decref(r->body);
	free(r);
}

static void conn_clear_route(struct lxmd_conn *c)
{
	for (size_t i = 0; i < ARRAY_SIZE(c->args); i++) {
		free(c->args[i]);
		c->args[i] = NULL;
	}
	c->route = NULL;
	c->containers = false;
}

static void conn_closed(uv_handle_t *h)
{
	struct lxmd_conn *c = h->data;
	struct lxmd_server *s = c->server;

	lxm_http_parser_free(c->parser);
	lxm_ws_free(c->ws);
	lxm_tls_free(c->tls);
	free(c->raw);
	conn_clear_route(c);
	free(c->in);
	free(c->chunk);
	free(c);
	s->handles--;
	server_maybe_free(s);
}

/* The request no longer takes body pieces (answered, ended or aborted). */
static void conn_forget_body(struct lxmd_conn *c)
{
	c->body_req = NULL;
	free(c->chunk);
	c->chunk = NULL;
	c->chunk_len = c->chunk_cap = 0;
	c->chunk_busy = false;
	c->body_done = false;
}

/* Drops the current request unanswered; a deferred one hears of it through on_abort. */
static void conn_abort_current(struct lxmd_conn *c)
{
	struct lxmd_request *r = TAKE_PTR(c->current);

	if (!r)
		return;
	if (c->body_req == r)
		conn_forget_body(c);
	if (r->deferred && r->on_abort)
		r->on_abort(r);
	request_free(r);
}

void lxmd_conn_close(struct lxmd_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	TAILQ_REMOVE(&c->server->conns, c, link);
	c->server->n_conns--;

	conn_abort_current(c);
	if (c->ws_ops && c->ws_ops->on_close)
		c->ws_ops->on_close(c->ws_ud);
	c->ws_ops = NULL;
	uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void write_done(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct lxmd_conn *c = w->conn;
	void (*done)(struct lxmd_request * r) = w->done;
	uint64_t req_id = w->req_id;

	c->queued -= w->len;
	free(w);
	if (c->closing)
		return;
	if (c->tls)
		c->active_ms = c->write_ms = lxm_monotonic_ms();
	if (status == 0 && c->want_drain && c->queued <= LXMD_WS_MAX_QUEUED / 2) {
		c->want_drain = false;
		if (c->ws_ops && c->ws_ops->on_drain)
			c->ws_ops->on_drain(c->ws_ud);
		if (c->closing)
			return;
	}
	if (status < 0) {
		log_debug("connection write failed: %s", uv_strerror(status));
		lxmd_conn_close(c);
		return;
	}
	if (done && c->current && req_id == c->req_id) {
		done(c->current);
		if (c->closing)
			return;
	}
	/* The client has read enough of what it was sent: its input is taken again. */
	if (c->backlogged && !conn_over_unsent(c)) {
		c->backlogged = false;
		conn_process(c);
		if (c->closing)
			return;
		conn_start_reading(c);
	}
	/* Closing after the last answer to a peer that finished sending (EOF) and waits for
	 * nothing more. */
	if (c->queued == 0 &&
	    (c->close_after_write || (c->eof && !c->current && c->in_len == 0 && !c->stream_msg)))
		lxmd_conn_close(c);
}

static int conn_write_notify(struct lxmd_conn *c, const void *a, size_t alen, const void *b,
			     size_t blen, void (*done)(struct lxmd_request *r));
/* Writes what the TLS session has for the peer; len is the plaintext it stands for (counted in
 * queued until written). */
static int conn_tls_flush(struct lxmd_conn *c, size_t len, void (*done)(struct lxmd_request *r))
{
	_cleanup_free_ char *out = NULL;
	struct write_req *w;
	size_t out_len;
	uv_buf_t buf;
	int r;

	r = lxm_tls_take_output(c->tls, &out, &out_len);
	if (r < 0)
		return r;
	if (out_len == 0 && len == 0 && !done)
		return 0;
	w = malloc(sizeof(*w) + out_len);
	if (!w)
		return -ENOMEM;
	if (out_len)
		memcpy(w->data, out, out_len);
	w->conn = c;
	w->len = len;
	w->done = done;
	w->req_id = c->req_id;
	buf = uv_buf_init(w->data, (unsigned)out_len);
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_done);
	if (r < 0) {
		free(w);
		return r;
	}
	/* The sweep measures how long a non-empty queue goes without progress from here. */
	if (c->queued == 0 && len > 0)
		c->write_ms = lxm_monotonic_ms();
	c->queued += len;
	return 0;
}

/* conn_write_notify() through TLS: encrypts, then writes the records. */
static int conn_write_tls(struct lxmd_conn *c, const void *a, size_t alen, const void *b,
			  size_t blen, void (*done)(struct lxmd_request *r))
{
	int r;

	if ((alen && (r = lxm_tls_write(c->tls, a, alen)) < 0) ||
	    (blen && (r = lxm_tls_write(c->tls, b, blen)) < 0)) {
		log_debug("TLS connection from %s: write: %s", c->ip, lxm_tls_error(c->tls));
		return -EPIPE;
	}
	return conn_tls_flush(c, alen + blen, done);
}

/* Copies data and queues it; uv_write never blocks the loop. */
static int conn_write(struct lxmd_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
	return conn_write_notify(c, a, alen, b, blen, NULL);
}

/* conn_write() that calls done(current request) once the bytes are written. */
static int conn_write_notify(struct lxmd_conn *c, const void *a, size_t alen, const void *b,
			     size_t blen, void (*done)(struct lxmd_request *r))
{
	struct write_req *w;
	uv_buf_t buf;
	int r;

	if (c->closing)
		return -EPIPE;
	if (c->tls)
		return conn_write_tls(c, a, alen, b, blen, done);
	w = malloc(sizeof(*w) + alen + blen);
	if (!w)
		return -ENOMEM;
	memcpy(w->data, a, alen);
	if (blen)
		memcpy(w->data + alen, b, blen);
	w->conn = c;
	w->len = alen + blen;
	w->done = done;
	w->req_id = c->req_id;
	buf = uv_buf_init(w->data, (unsigned)w->len);
	r = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, write_done);
	if (r < 0) {
		free(w);
		return r;
	}
	c->queued += alen + blen;
	return 0;
}

/* A streamed body that the client will not send: it waits for "100 Continue", and an answer
 * came first. The connection cannot go on after the answer (where would the next request
 * start?), so the answer says "Connection: close". */
static bool conn_body_withheld(const struct lxmd_conn *c)
{
	return c->stream_msg && c->expect_continue && !c->continue_sent;
}

/* A response without keep-alive is out: the connection ends after it. */
static void conn_end_after_response(struct lxmd_conn *c)
{
	/* An answer that comes before the end of a streamed body (a refusal) is read by a client
	 * that may still be sending: go on reading and dropping the body, or the client would
	 * see a reset instead of the answer. */
	if (c->stream_msg && !conn_body_withheld(c)) {
		c->close_after_body = true;
		return;
	}
	c->close_after_write = true;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}
}

/* Sends a complete response and, for keep-alive connections, goes on with the next request. */
static int conn_respond(struct lxmd_conn *c, int status, const char *type, const char *body,
			size_t len, bool keep_alive, const char *const *extra)
{
	_cleanup_free_ char *head = NULL;
	size_t head_len;
	int r;

	r = lxm_http_response_head(status, type, (int64_t)len, keep_alive, extra, &head, &head_len);
	if (r < 0)
		return r;
	r = conn_write(c, head, head_len, body, len);
	if (r < 0)
		return r;
	if (!keep_alive)
		conn_end_after_response(c);
	return 0;
}

/* Answers a request that could not be parsed; the connection closes afterwards. */
static void conn_fail(struct lxmd_conn *c, int status, const char *msg)
{
	_cleanup_json_ json_t *e = lxm_json_error(status, msg);
	_cleanup_free_ char *text = e ? lxm_json_dump(e) : NULL;

	/* The parser is done for: a request still receiving its body is abandoned with it. */
	c->stream_msg = c->stream_dispatch = c->close_after_body = false;
	conn_abort_current(c);
	log_debug("bad request: %d %s", status, msg);
	if (!text ||
	    conn_respond(c, status, "application/json", text, strlen(text), false, NULL) < 0)
		lxmd_conn_close(c);
	c->in_len = 0;
}

/* Ends the current request after its response was queued. */
static void conn_request_done(struct lxmd_conn *c)
{
	struct lxmd_request *r = TAKE_PTR(c->current);

	if (r && c->body_req == r)
		conn_forget_body(c);
	request_free(r);
	if (c->closing || c->close_after_write)
		return;
	/* Pipelined bytes of the next request start its header deadline now. */
	if (c->tls && c->in_len > 0 && !c->partial_ms)
		c->partial_ms = lxm_monotonic_ms();
	/* A request answered from inside conn_process() lets its loop go on to the next pipelined
	 * one; a deferred answer has to restart processing itself. */
	if (!c->processing)
		conn_process(c);
	conn_start_reading(c);
}

int lxmd_respond_json(struct lxmd_request *r, int status, json_t *body, const char *const *extra)
{
	struct lxmd_conn *c = r->conn;
	_cleanup_free_ char *text = NULL;
	bool keep_alive = r->http->keep_alive && !conn_body_withheld(c);
	int ret;

	text = body ? lxm_json_dump(body) : NULL;
	json_decref(body);
	if (!text) {
		static const char oom[] = "{\"type\":\"error\",\"error\":\"out of memory\","
					  "\"error_code\":500,\"metadata\":null}";
		ret = conn_respond(c, 500, "application/json", oom, sizeof(oom) - 1, false, NULL);
	} else {
		size_t len = strlen(text);

		ret = conn_respond(c, status, "application/json", text, len, keep_alive, extra);
	}
	if (ret < 0)
		lxmd_conn_close(c);
	else
		conn_request_done(c);
	return ret;
}

int lxmd_respond_sync(struct lxmd_request *r, json_t *metadata, const char *etag)
{
	char header[128];
	const char *extra[2] = { NULL, NULL };

	if (etag) {
		snprintf(header, sizeof(header), "ETag: \"%s\"", etag);
		extra[0] = header;
	}
	return lxmd_respond_json(r, 200, lxm_json_sync(metadata), extra);
}

int lxmd_respond_async(struct lxmd_request *r, struct lxm_operation *op)
{
	_cleanup_free_ char *url = NULL, *location = NULL;
	const char *extra[2] = { NULL, NULL };

	if (lxm_operation_url(op, &url) < 0 || asprintf(&location, "Location: %s", url) < 0)
		return lxmd_respond_json(r, 500, lxm_json_error(500, "out of memory"), NULL);
	extra[0] = location;
	return lxmd_respond_json(r, 202, lxm_json_async(lxm_operation_to_json(op), url), extra);
}

int lxmd_respond_error(struct lxmd_request *r, struct lxm_error *err)
{
	int status = err && err->status ? err->status : 500;
	const char *msg = err && err->msg ? err->msg : "internal error";
	int ret;

	if (status >= 500)
		log_error("%s %s: %s", http_method_str(r->http->method), r->http->url, msg);
	else
		log_debug("%s %s: %d %s", http_method_str(r->http->method), r->http->url, status,
			  msg);
	ret = lxmd_respond_json(r, status, lxm_json_error(status, msg), NULL);
	lxm_error_free(err);
	return ret;
}

int lxmd_respond_raw_head(struct lxmd_request *r, int status, const char *content_type,
			  int64_t content_length, const char *const *extra)
{
	struct lxmd_conn *c = r->conn;
	_cleanup_free_ char *head = NULL;
	size_t head_len;
	int k;

	/* Without a length, only the end of the connection can end the body. */
	c->raw_keep_alive = r->http->keep_alive && content_length >= 0 && !conn_body_withheld(c);
	c->raw_left = content_length;
	k = lxm_http_response_head(status, content_type, content_length, c->raw_keep_alive, extra,
				   &head, &head_len);
	if (k < 0)
		return k;
	return conn_write(c, head, head_len, NULL, 0);
}

int lxmd_respond_raw_write(struct lxmd_request *r, const void *data, size_t len,
			   void (*done)(struct lxmd_request *r))
{
	struct lxmd_conn *c = r->conn;
	int k;

	if (c->raw_left >= 0 && (uint64_t)len > (uint64_t)c->raw_left)
		return -EMSGSIZE;
	k = conn_write_notify(c, data, len, NULL, 0, done);
	if (k < 0)
		return k;
	if (c->raw_left >= 0)
		c->raw_left -= (int64_t)len;
	return 0;
}

void lxmd_respond_raw_end(struct lxmd_request *r)
{
	struct lxmd_conn *c = r->conn;

	if (!c->raw_keep_alive || c->raw_left > 0)
		conn_end_after_response(c);
	conn_request_done(c);
	/* The last piece may be written already: then no write_done() will close. */
	if (!c->closing && c->close_after_write && c->queued == 0)
		lxmd_conn_close(c);
}

void lxmd_request_body_resume(struct lxmd_request *r)
{
	struct lxmd_conn *c = r->conn;

	if (c->body_req != r || !c->chunk_busy)
		return;
	c->chunk_busy = false;
	/* From inside on_body, the running conn_process() goes on by itself. */
	conn_process(c);
	conn_start_reading(c);
}

/* ---- websockets ---- */

static int ws_write(void *ud, const uint8_t *data, size_t len)
{
	return conn_write(ud, data, len, NULL, 0);
}

static void ws_message(void *ud, enum lxm_ws_opcode op, const uint8_t *data, size_t len)
{
	struct lxmd_conn *c = ud;

	if (c->ws_ops && c->ws_ops->on_message)
		c->ws_ops->on_message(c->ws_ud, op, data, len);
}

static void ws_closed(void *ud, uint16_t status)
{
	struct lxmd_conn *c = ud;

	/* The close reply (if any) is queued already: close once it is written. */
	c->close_after_write = true;
	if (c->queued == 0 && !c->closing)
		lxmd_conn_close(c);
}

static const struct lxm_ws_ops conn_ws_ops = {
	.write = ws_write,
	.on_message = ws_message,
	.on_close = ws_closed,
};

int lxmd_request_upgrade(struct lxmd_request *r, const struct lxmd_ws_ops *ops, void *ud,
			 struct lxmd_conn **ret, struct lxm_error **err)
{
	struct lxmd_conn *c = r->conn;
	_cleanup_free_ char *reply = NULL;
	const char *reason = NULL;
	size_t len;
	int k;

	if (!r->http->upgrade)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s is a websocket: send an Upgrade: websocket request",
				     r->http->path);
	k = lxm_ws_handshake_reply(r->http, &reply, &len, &reason);
	if (k < 0)
		return lxm_error_set(err, k, 400, "websocket handshake: %s",
				     reason ? reason : "invalid request");
	k = lxm_ws_new(LXM_WS_SERVER, CONN_WS_MAX_MESSAGE, &conn_ws_ops, c, &c->ws);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "websocket");
	k = conn_write(c, reply, len, NULL, 0);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "websocket handshake");

	c->mode = CONN_WEBSOCKET;
	c->ws_ops = ops;
	c->ws_ud = ud;
	request_free(TAKE_PTR(c->current));
	lxm_http_parser_free(TAKE_PTR(c->parser));
	*ret = c;
	/* Bytes that came with the handshake are websocket data already. */
	conn_process(c);
	conn_start_reading(c);
	return 0;
}

int lxmd_conn_ws_send(struct lxmd_conn *c, enum lxm_ws_opcode op, const void *data, size_t len)
{
	if (c->closing || !c->ws || lxm_ws_is_closing(c->ws))
		return -EPIPE;
	if (c->queued + len > LXMD_WS_MAX_QUEUED) {
		c->want_drain = true;
		return -ENOBUFS;
	}
	return lxm_ws_send(c->ws, op, data, len);
}

void lxmd_conn_ws_shutdown(struct lxmd_conn *c)
{
	if (c->closing)
		return;
	/* The connection stays until the peer answers the close frame (ws_closed) or hangs up:
	 * closing at once would break the pipe under a client that replies (pylxd's ws4py). */
	if (c->ws && !c->eof && lxm_ws_close(c->ws, 1000, NULL) == 0)
		return;
	c->close_after_write = true;
	if (c->queued == 0)
		lxmd_conn_close(c);
}

void lxmd_conn_ws_pause(struct lxmd_conn *c, bool pause)
{
	if (c->closing || c->paused == pause)
		return;
	c->paused = pause;
	if (pause && c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	} else if (!pause) {
		conn_start_reading(c);
	}
}

/* ---- HTTP parsing ---- */

static int conn_on_headers(struct lxm_http_request *req, void *ud)
{
	struct lxmd_conn *c = ud;
	enum lxmd_method m = lxmd_method_from_http(req->method);
	const char *expect;

	conn_clear_route(c);
	c->retry_ms = 0;
	if (c->tls && c->server->rate)
		c->retry_ms = lxmd_ratelimit_take(c->server->rate, c->ip, lxm_monotonic_ms());
	if (c->retry_ms) {
		/* Over the rate: 429 as soon as the headers are in (streamed: no body is kept, and
		 * the rest of it is read and dropped, so the connection stays usable). An upgrade
		 * request has no body and its connection closes after the answer. */
		expect = lxm_http_request_header(req, "Expect");
		c->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
		c->continue_sent = false;
		if (req->upgrade)
			return LXM_HTTP_BODY_DISCARD;
		c->stream_msg = true;
		c->stream_dispatch = true;
		return LXM_HTTP_BODY_STREAM;
	}
	c->route = lxmd_api_match(req->path, c->args, &c->containers);
	/* Bodies for unknown paths or methods are read and dropped: the answer is an error anyway,
	 * and buffering them would let any client make the daemon hold megabytes. */
	if (!c->route || m < 0 || !c->route->handlers[m])
		return LXM_HTTP_BODY_DISCARD;

	expect = lxm_http_request_header(req, "Expect");
	c->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
	c->continue_sent = false;
	/* A streamed body goes to its handler, which runs once feed() has returned (not from
	 * inside the parser); it says whether it wants the body before "100 Continue" goes out. */
	if ((c->route->flags & LXMD_ROUTE_STREAM_BODY) && !req->upgrade) {
		c->stream_msg = true;
		c->stream_dispatch = true;
		return LXM_HTTP_BODY_STREAM;
	}
	if (c->expect_continue && conn_write(c, CONTINUE, sizeof(CONTINUE) - 1, NULL, 0) < 0)
		return -EIO;
	c->continue_sent = c->expect_continue;
	return LXM_HTTP_BODY_BUFFER;
}

/* A piece of a streamed body: kept until feed() returns, or dropped when nobody wants it. */
static int conn_on_body(struct lxm_http_request *req, const char *data, size_t len, void *ud)
{
	struct lxmd_conn *c = ud;

	if (!c->body_req && !c->stream_dispatch)
		return 0;
	if (c->chunk_cap - c->chunk_len < len) {
		size_t cap = c->chunk_len + len > 2 * c->chunk_cap ? c->chunk_len + len
								   : 2 * c->chunk_cap;
		char *n = realloc(c->chunk, cap);

		if (!n)
			return -ENOMEM;
		c->chunk = n;
		c->chunk_cap = cap;
	}
	memcpy(c->chunk + c->chunk_len, data, len);
	c->chunk_len += len;
	return 0;
}

static const struct lxm_http_parser_ops conn_parser_ops = {
	.on_headers = conn_on_headers,
	.on_body = conn_on_body,
};

static struct lxmd_request *conn_new_request(struct lxmd_conn *c, struct lxm_http_request *http)
{
	struct lxmd_request *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->d = c->server->d;
	r->conn = c;
	r->http = http;
	r->route = c->route;
	r->containers = c->containers;
	memcpy(r->args, c->args, sizeof(r->args));
	memset(c->args, 0, sizeof(c->args));
	c->route = NULL;
	c->current = r;
	c->partial_ms = 0;
	c->req_id++;
	return r;
}

/* Answers a request over its client's rate with 429, the cause and when to retry. */
static void conn_respond_rate_limited(struct lxmd_conn *c, struct lxmd_request *r)
{
	uint64_t secs = (c->retry_ms + 999) / 1000;
	char retry[48], msg[256];
	const char *extra[] = { retry, NULL };

	c->retry_ms = 0;
	snprintf(retry, sizeof(retry), "Retry-After: %" PRIu64, secs);
	snprintf(msg, sizeof(msg),
		 "too many requests from %s: over the limit of %" PRIu32
		 " requests a second (bursts of %" PRIu32 "); retry in %" PRIu64 " s",
		 c->ip, tcp_limits.rate, tcp_limits.burst, secs);
	log_debug("%s %s: 429 %s", http_method_str(r->http->method), r->http->url, msg);
	/* After an upgrade request the rest of the stream is not HTTP. */
	if (r->http->upgrade)
		r->http->keep_alive = false;
	lxmd_respond_json(r, 429, lxm_json_error(429, msg), extra);
}

/* The headers of a streamed request are in: its handler runs now, with the head the parser
 * still owns, and says with on_body/on_body_end whether it wants the body. */
static void conn_dispatch_stream(struct lxmd_conn *c)
{
	struct lxmd_request *r;

	c->stream_dispatch = false;
	r = conn_new_request(c, lxm_http_parser_current(c->parser));
	if (!r) {
		conn_fail(c, 500, "out of memory");
		return;
	}
	r->http_borrowed = true;
	c->body_req = r;
	if (c->retry_ms)
		conn_respond_rate_limited(c, r);
	else
		lxmd_api_handle(r);
	/* Answered already (then body_req was cleared), or it takes no body. */
	if (c->body_req && !c->body_req->on_body && !c->body_req->on_body_end)
		conn_forget_body(c);
	if (c->current && c->expect_continue && !c->closing) {
		if (conn_write(c, CONTINUE, sizeof(CONTINUE) - 1, NULL, 0) < 0)
			lxmd_conn_close(c);
		c->continue_sent = true;
	}
}

/* The streamed message is complete: its head passes to the request, if still there. */
static void conn_stream_complete(struct lxmd_conn *c, struct lxm_http_request *http)
{
	c->stream_msg = false;
	if (c->current && c->current->http == http) {
		c->current->http_borrowed = false;
		if (c->body_req)
			c->body_done = true;
	} else {
		lxm_http_request_free(http);
	}
	if (c->close_after_body) {
		c->close_after_body = false;
		conn_end_after_response(c);
		if (c->queued == 0)
			lxmd_conn_close(c);
	}
}

/* Hands the gathered piece, or the end of the body, to the handler when it is ready for it.
 * Returns whether it handed anything over. */
static bool conn_stream_deliver(struct lxmd_conn *c)
{
	struct lxmd_request *r = c->body_req;
	char *data;
	size_t len;

	if (!r || c->chunk_busy)
		return false;
	if (c->chunk_len > 0) {
		data = TAKE_PTR(c->chunk);
		len = c->chunk_len;
		c->chunk_len = c->chunk_cap = 0;
		if (!r->on_body) {
			free(data);
			return true;
		}
		c->chunk_busy = true;
		r->on_body(r, data, len);
		return true;
	}
	if (!c->body_done)
		return false;
	c->body_req = NULL;
	c->body_done = false;
	if (r->on_body_end)
		r->on_body_end(r);
	return true;
}

static void conn_dispatch(struct lxmd_conn *c, struct lxm_http_request *http)
{
	struct lxmd_request *r = conn_new_request(c, http);

	if (!r) {
		lxm_http_request_free(http);
		conn_fail(c, 500, "out of memory");
		return;
	}
	if (c->retry_ms)
		conn_respond_rate_limited(c, r);
	else
		lxmd_api_handle(r);
}

static void conn_process(struct lxmd_conn *c)
{
	if (c->processing)
		return;
	c->processing = true;
	while (!c->closing && !c->close_after_write) {
		/* What the last feed() gathered of a streamed body goes to its handler first (a
		 * handler that takes a piece at once is ready for the next one right away). */
		if (conn_stream_deliver(c))
			continue;
		if (c->in_len == 0)
			break;
		/* A client that does not read what it is sent gets no more answers (or websocket
		 * replies) until it does; a streamed body goes on to its handler. */
		if (!c->stream_msg && conn_over_unsent(c)) {
			c->backlogged = true;
			break;
		}
		if (c->mode == CONN_WEBSOCKET) {
			size_t n = c->in_len;

			c->in_len = 0;
			if (lxm_ws_feed(c->ws, (const uint8_t *)c->in, n) < 0)
				break;
			continue;
		}
		/* One request at a time, the rest waits in c->in; but a streamed body goes on being
		 * parsed while its request is handled, one piece at a time. */
		if (c->current && !c->stream_msg)
			break;
		if (c->chunk_busy)
			break;

		enum lxm_http_feed_result res;
		ssize_t n = lxm_http_parser_feed(c->parser, c->in, c->in_len, &res);

		if (n < 0) {
			conn_fail(c, lxm_http_parser_error_status(c->parser),
				  lxm_http_parser_error_message(c->parser));
			break;
		}
		memmove(c->in, c->in + n, c->in_len - (size_t)n);
		c->in_len -= (size_t)n;
		if (c->stream_dispatch)
			conn_dispatch_stream(c);
		if (res == LXM_HTTP_FEED_MORE || c->closing)
			continue;
		if (c->stream_msg)
			conn_stream_complete(c, lxm_http_parser_take(c->parser));
		else
			conn_dispatch(c, lxm_http_parser_take(c->parser));
	}
	c->processing = false;
	if (!c->eof || c->closing)
		return;
	/* A streamed body that the peer stopped sending can never complete: a request still
	 * waiting for it is aborted (its handler drops what it wrote). */
	if (c->stream_msg && c->in_len == 0) {
		if (c->current || c->queued == 0)
			lxmd_conn_close(c);
		else
			c->close_after_write = true;
	} else if (!c->current && c->queued == 0) {
		lxmd_conn_close(c);
	}
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct lxmd_conn *c = h->data;

	if (c->tls) {
		if (!c->raw)
			c->raw = malloc(TLS_READ_BUF);
		*buf = uv_buf_init(c->raw, c->raw ? TLS_READ_BUF : 0);
		return;
	}
	if (c->in_cap - c->in_len < 65536) {
		size_t cap = c->in_cap + 65536;
		char *n = realloc(c->in, cap);

		if (!n) {
			*buf = uv_buf_init(NULL, 0);
			return;
		}
		c->in = n;
		c->in_cap = cap;
	}
	*buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

/* Decrypts what the peer sent into c->in and answers the handshake. Returns the plaintext bytes
 * added, or UV_EOF when the peer ended the session, or a negative error (logged). */
static ssize_t conn_tls_input(struct lxmd_conn *c, ssize_t nread)
{
	bool was_established = lxm_tls_established(c->tls);
	ssize_t total = 0, n;
	int k;

	c->active_ms = lxm_monotonic_ms();
	if (lxm_tls_feed(c->tls, c->raw, (size_t)nread) < 0)
		return -ENOMEM;
	for (;;) {
		if (c->in_cap - c->in_len < 16384) {
			size_t cap = c->in_cap + 65536;
			char *p = realloc(c->in, cap);

			if (!p)
				return -ENOMEM;
			c->in = p;
			c->in_cap = cap;
		}
		n = lxm_tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len);
		if (n <= 0)
			break;
		c->in_len += (size_t)n;
		total += n;
	}
	if (!was_established && lxm_tls_established(c->tls)) {
		if (!lxm_tls_peer_fingerprint(c->tls, c->peer_fp))
			c->peer_fp[0] = '\0';
		log_debug("TLS connection from %s: established, client certificate %s", c->ip,
			  c->peer_fp[0] ? c->peer_fp : "none");
	}
	/* Handshake records (and alerts) go out whatever happened. */
	k = conn_tls_flush(c, 0, NULL);
	if (n == -ECONNRESET)
		return total > 0 ? total : UV_EOF;
	if (n < 0) {
		log_info("TLS connection from %s refused: %s", c->ip, lxm_tls_error(c->tls));
		return n;
	}
	if (k < 0)
		return k;
	if (total > 0 && !c->current && !c->partial_ms)
		c->partial_ms = c->active_ms;
	return total;
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct lxmd_conn *c = stream->data;

	if (c->tls && nread > 0) {
		nread = conn_tls_input(c, nread);
		if (nread == 0)
			return;
		if (nread > 0)
			c->in_len -= (size_t)nread; /* counted again below */
		else if (nread != UV_EOF) {
			lxmd_conn_close(c);
			return;
		}
	}

	if (nread == UV_EOF || nread == UV_ECONNRESET) {
		uv_read_stop(stream);
		c->reading = false;
		c->eof = true;
		if (c->mode == CONN_WEBSOCKET) {
			lxm_ws_eof(c->ws);
			if (!c->closing)
				lxmd_conn_close(c);
			return;
		}
		/* A client that hangs up on a request it is waiting for no longer needs the answer.
		 * (A streamed body may still be complete in c->in: conn_process() decides.) */
		if (c->current && c->current->deferred && !c->stream_msg) {
			lxmd_conn_close(c);
			return;
		}
		conn_process(c);
		return;
	}
	if (nread < 0) {
		log_debug("connection read failed: %s", uv_strerror((int)nread));
		lxmd_conn_close(c);
		return;
	}
	c->in_len += (size_t)nread;
	conn_process(c);
	/* Stop reading ahead while a request is answered and too much is already buffered, or
	 * while the client leaves too much unread. */
	if (!c->closing && c->reading &&
	    ((c->current && c->in_len > CONN_MAX_READAHEAD) || c->backlogged)) {
		uv_read_stop(stream);
		c->reading = false;
	}
}

static void conn_start_reading(struct lxmd_conn *c)
{
	if (c->closing || c->reading || c->eof || c->close_after_write || c->paused ||
	    c->backlogged)
		return;
	if (uv_read_start((uv_stream_t *)&c->pipe, conn_alloc, conn_read) == 0)
		c->reading = true;
}

/* Counts the TCP connections from ip. */
static size_t server_conns_from(struct lxmd_server *s, const char *ip)
{
	struct lxmd_conn *c;
	size_t n = 0;

	TAILQ_FOREACH(c, &s->conns, link)
	n += streq(c->ip, ip);
	return n;
}

/* Logs a refused connection, at most once a second with the count since the last line (a flood
 * of connections must not become a flood of log lines). */
static void server_log_refused(struct lxmd_server *s, const char *ip, bool per_ip)
{
	uint64_t now = lxm_monotonic_ms();

	s->refused++;
	if (s->refused_log_ms && now - s->refused_log_ms < 1000)
		return;
	log_warn("HTTPS connection from %s refused: %s%d connections open already (%zu refused "
		 "since the last such line)",
		 ip, per_ip ? "it has " : "", per_ip ? TCP_MAX_CONNS_PER_IP : TCP_MAX_CONNS,
		 s->refused);
	s->refused = 0;
	s->refused_log_ms = now;
}

/* A new TCP connection: its address, the caps, its TLS session. false: refused (c closes). */
static bool conn_setup_tcp(struct lxmd_server *s, struct lxmd_conn *c)
{
	struct sockaddr_storage sa;
	int len = sizeof(sa);

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) < 0 ||
	    uv_ip_name((struct sockaddr *)&sa, c->ip, sizeof(c->ip)) < 0)
		snprintf(c->ip, sizeof(c->ip), "unknown");
	/* Both counts include c itself. */
	if (s->n_conns > TCP_MAX_CONNS) {
		server_log_refused(s, c->ip, false);
		return false;
	}
	if (server_conns_from(s, c->ip) > TCP_MAX_CONNS_PER_IP) {
		server_log_refused(s, c->ip, true);
		return false;
	}
	if (lxm_tls_new(s->tls_ctx, true, &c->tls) < 0)
		return false;
	c->accepted_ms = c->active_ms = lxm_monotonic_ms();
	uv_tcp_nodelay(&c->tcp, 1);
	return true;
}

static void server_on_connection(uv_stream_t *listener, int status)
{
	struct lxmd_server *s = listener->data;
	struct lxm_http_limits limits = LXM_HTTP_LIMITS_DEFAULT;
	struct lxmd_conn *c;

	if (status < 0) {
		log_warn("accept on %s: %s", s->path, uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->server = s;
	if (s->tls_ctx)
		uv_tcp_init(s->d->loop, &c->tcp);
	else
		uv_pipe_init(s->d->loop, &c->pipe, 0);
	c->pipe.data = c;
	s->handles++;
	TAILQ_INSERT_TAIL(&s->conns, c, link);
	s->n_conns++;
	if (uv_accept(listener, (uv_stream_t *)&c->pipe) < 0 ||
	    (s->tls_ctx && !conn_setup_tcp(s, c)) ||
	    lxm_http_parser_new(&limits, &conn_parser_ops, c, &c->parser) < 0) {
		lxmd_conn_close(c);
		return;
	}
	conn_start_reading(c);
}

static void listener_closed(uv_handle_t *h)
{
	struct lxmd_server *s = h->data;

	s->handles--;
	server_maybe_free(s);
}

int lxmd_server_new(struct lxmd *d, const char *path, struct lxmd_server **ret,
		    struct lxm_error **err)
{
	struct lxmd_server *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->d = d;
	s->path = strdup(path);
	TAILQ_INIT(&s->conns);
	uv_pipe_init(d->loop, &s->listener, 0);
	s->listener.data = s;
	s->handles = 1;

	/* The root lock is held, so a socket file left here belongs to a daemon that died. */
	if (unlink(path) < 0 && errno != ENOENT) {
		r = lxm_error_setx(err, -errno, 500, "remove stale socket %s", path);
		goto fail;
	}
	r = uv_pipe_bind(&s->listener, path);
	if (r < 0) {
		r = lxm_error_set(err, r, 500, "bind API socket %s: %s", path, uv_strerror(r));
		goto fail;
	}
	if (chmod(path, 0660) < 0) {
		r = lxm_error_setx(err, -errno, 500, "set mode of API socket %s", path);
		goto fail;
	}
	r = uv_listen((uv_stream_t *)&s->listener, 128, server_on_connection);
	if (r < 0) {
		r = lxm_error_set(err, r, 500, "listen on API socket %s: %s", path, uv_strerror(r));
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	s->closing = true;
	uv_close((uv_handle_t *)&s->listener, listener_closed);
	return r;
}

static void server_close_conns(uv_timer_t *t)
{
	struct lxmd_server *s = t->data;
	struct lxmd_conn *c;

	while ((c = TAILQ_FIRST(&s->conns)))
		lxmd_conn_close(c);
	uv_close((uv_handle_t *)&s->sweep, listener_closed);
}

void lxmd_server_close(struct lxmd_server *s)
{
	struct lxmd_conn *c;

	if (!s || s->closing)
		return;
	s->closing = true;
	uv_close((uv_handle_t *)&s->listener, listener_closed);
	if (s->tls_ctx) {
		/* The request that unset the address may be on one of these connections: they
		 * close once it has been answered, from the loop. */
		uv_timer_start(&s->sweep, server_close_conns, 0, 0);
		return;
	}
	unlink(s->path);
	while ((c = TAILQ_FIRST(&s->conns)))
		lxmd_conn_close(c);
}

size_t lxmd_server_connections(const struct lxmd_server *s)
{
	return s->n_conns;
}

size_t lxmd_server_close_websockets_of(struct lxmd_server *s, const char *fp)
{
	struct lxmd_conn *c, *next;
	size_t n = 0;

	for (c = TAILQ_FIRST(&s->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->closing || c->mode != CONN_WEBSOCKET || !c->tls || !streq(c->peer_fp, fp))
			continue;
		/* A close frame saying why, then the connection ends without waiting for the
		 * client's answer: it is no longer trusted to give one. */
		if (c->ws && !c->eof)
			lxm_ws_close(c->ws, 1008, "client certificate no longer trusted");
		c->close_after_write = true;
		if (c->queued == 0)
			lxmd_conn_close(c);
		n++;
	}
	return n;
}

/* Closes the TCP connections past a deadline: a handshake that takes too long, headers that
 * come too slowly (slowloris), a keep-alive connection left idle. Busy ones (a request being
 * answered, a websocket) have none. */
static void server_sweep(uv_timer_t *t)
{
	struct lxmd_server *s = t->data;
	uint64_t now = lxm_monotonic_ms();
	struct lxmd_conn *c, *next;

	for (c = TAILQ_FIRST(&s->conns); c; c = next) {
		const char *why = NULL;

		next = TAILQ_NEXT(c, link);
		if (!lxm_tls_established(c->tls)) {
			if (now - c->accepted_ms > tcp_limits.handshake_ms)
				why = "TLS handshake timed out";
		} else if (c->queued) {
			if (now - c->write_ms > tcp_limits.idle_ms)
				why = "the client does not read its responses";
		} else if (c->mode == CONN_WEBSOCKET || c->current) {
			continue;
		} else if (c->partial_ms) {
			if (now - c->partial_ms > tcp_limits.header_ms)
				why = "request too slow";
		} else if (now - c->active_ms > tcp_limits.idle_ms) {
			why = "idle";
		}
		if (!why)
			continue;
		log_info("HTTPS connection from %s closed: %s", c->ip, why);
		lxmd_conn_close(c);
	}
	/* Clients whose buckets have refilled are as good as new: their entries go. */
	lxmd_ratelimit_expire(s->rate, now);
}

/* Splits "host:port", "[v6]:port", ":port" or "host" into an address to bind. */
static int parse_address(const char *address, struct sockaddr_storage *sa, char host[128],
			 struct lxm_error **err)
{
	char buf[128];
	const char *port = NULL;
	char *end;
	long p = 8443;

	if (strlen(address) >= sizeof(buf))
		goto bad;
	snprintf(buf, sizeof(buf), "%s", address);
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (!close || (close[1] && close[1] != ':'))
			goto bad;
		*close = '\0';
		snprintf(host, 128, "%s", buf + 1);
		if (close[1] == ':')
			port = close + 2;
	} else {
		char *colon = strrchr(buf, ':');

		/* A bare IPv6 address has several colons and no port. */
		if (colon && strchr(buf, ':') == colon) {
			*colon = '\0';
			port = colon + 1;
		}
		snprintf(host, 128, "%s", buf);
	}
	if (port) {
		p = strtol(port, &end, 10);
		if (!*port || *end || p < 1 || p > 65535)
			goto bad;
	}
	if (!*host)
		snprintf(host, 128, "::");
	if (uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)sa) == 0 ||
	    uv_ip4_addr(host, (int)p, (struct sockaddr_in *)sa) == 0)
		return 0;
bad:
	return lxm_error_set(err, -EINVAL, 400,
			     "HTTPS address '%.64s': expected [IP]:PORT, e.g. ':8443', "
			     "'127.0.0.1:8443' or '[::]:8443'",
			     address);
}

int lxmd_server_new_tcp(struct lxmd *d, const char *address, const char *cert_path,
			const char *key_path, struct lxmd_server **ret, struct lxm_error **err)
{
	struct sockaddr_storage sa = { 0 };
	struct lxmd_server *s;
	char host[128];
	int r;

	if ((r = parse_address(address, &sa, host, err)) < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->d = d;
	s->path = strdup(address);
	TAILQ_INIT(&s->conns);
	r = lxm_tls_server_ctx(cert_path, key_path, &s->tls_ctx, err);
	if (r < 0) {
		free(s->path);
		free(s);
		return lxm_error_prefix(err, "HTTPS listener on %s", address);
	}
	r = lxmd_ratelimit_new(tcp_limits.rate, tcp_limits.burst, TCP_RATE_MAX_CLIENTS, &s->rate);
	if (r < 0) {
		SSL_CTX_free(s->tls_ctx);
		free(s->path);
		free(s);
		return lxm_error_setx(err, r, 500, "HTTPS listener on %s: rate limits", address);
	}
	uv_tcp_init(d->loop, &s->tcp_listener);
	s->tcp_listener.data = s;
	uv_timer_init(d->loop, &s->sweep);
	s->sweep.data = s;
	s->handles = 2;

	r = uv_tcp_bind(&s->tcp_listener, (struct sockaddr *)&sa, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->tcp_listener, 128, server_on_connection);
	if (r < 0) {
		r = lxm_error_set(err, r, 400, "HTTPS listener on '%s': %s", address,
				  uv_strerror(r));
		goto fail;
	}
	uv_timer_start(&s->sweep, server_sweep, TCP_SWEEP_INTERVAL, TCP_SWEEP_INTERVAL);
	log_info("listening for HTTPS on %s", address);
	*ret = s;
	return 0;
fail:
	s->closing = true;
	uv_close((uv_handle_t *)&s->tcp_listener, listener_closed);
	uv_close((uv_handle_t *)&s->sweep, listener_closed);
	return r;
}

const char *lxmd_server_address(const struct lxmd_server *s)
{
	return s->path;
}

const char *lxmd_conn_peer_fingerprint(const struct lxmd_conn *c)
{
	return c->tls ? c->peer_fp : NULL;
}

const char *lxmd_conn_peer_address(const struct lxmd_conn *c)
{
	return c->tls ? c->ip : "unix socket";
}

int lxmd_conn_peer_pem(const struct lxmd_conn *c, char **ret)
{
	return c->tls ? lxm_tls_peer_pem(c->tls, ret) : -ENOENT;
}

/* Reads one LXMD_TEST_HTTPS_* variable into *v when it is set: an integer from min to max. */
static int test_knob(const char *name, uint64_t min, uint64_t max, uint64_t *v,
		     struct lxm_error **err)
{
	const char *env = getenv(name);
	unsigned long long n;
	char *end;

	if (!env || !*env)
		return 0;
	errno = 0;
	n = strtoull(env, &end, 10);
	if (errno || *end || !isdigit((unsigned char)env[0]) || n < min || n > max)
		return lxm_error_set(err, -EINVAL, 500,
				     "environment variable %s='%.32s': expected an integer from "
				     "%" PRIu64 " to %" PRIu64,
				     name, env, min, max);
	log_warn("%s=%llu: an HTTPS limit changed for tests", name, n);
	*v = n;
	return 0;
}

int lxmd_server_test_knobs(struct lxm_error **err)
{
	uint64_t rate = tcp_limits.rate, burst = tcp_limits.burst;
	int r;

	if ((r = test_knob("LXMD_TEST_HTTPS_HANDSHAKE_TIMEOUT_MS", 100, UINT32_MAX,
			   &tcp_limits.handshake_ms, err)) < 0 ||
	    (r = test_knob("LXMD_TEST_HTTPS_HEADER_TIMEOUT_MS", 100, UINT32_MAX,
			   &tcp_limits.header_ms, err)) < 0 ||
	    (r = test_knob("LXMD_TEST_HTTPS_IDLE_TIMEOUT_MS", 100, UINT32_MAX, &tcp_limits.idle_ms,
			   err)) < 0 ||
	    (r = test_knob("LXMD_TEST_HTTPS_RATE", 1, 1000000, &rate, err)) < 0 ||
	    (r = test_knob("LXMD_TEST_HTTPS_BURST", 1, 1000000, &burst, err)) < 0)
		return r;
	tcp_limits.rate = (uint32_t)rate;
	tcp_limits.burst = (uint32_t)burst;
	return 0;
}
