#include "config.h"

#include <errno.h>
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
#include "server.h"
#include "util.h"

/* Bytes read ahead while a request is being answered (pipelining); past it reading pauses. */
#define CONN_MAX_READAHEAD (1024 * 1024)
/* Longest websocket message a client may send us. */
#define CONN_WS_MAX_MESSAGE (1024 * 1024)

enum conn_mode {
	CONN_HTTP,	/* parsing requests */
	CONN_WEBSOCKET, /* upgraded */
};

struct lxmd_conn {
	TAILQ_ENTRY(lxmd_conn) link;	  /* in server->conns */
	struct lxmd_server *server;	  /* the owner */
	uv_pipe_t pipe;			  /* the client's socket */
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
	struct lxm_ws *ws;		  /* websocket mode */
	const struct lxmd_ws_ops *ws_ops; /* the websocket's owner */
	void *ws_ud;			  /* for ws_ops */
};

struct lxmd_server {
	struct lxmd *d;		       /* the daemon */
	uv_pipe_t listener;	       /* the bound socket */
	char *path;		       /* its path, unlinked on close */
	TAILQ_HEAD(, lxmd_conn) conns; /* open connections */
	size_t n_conns;		       /* entries in conns */
	size_t handles;		       /* open handles incl. the listener */
	bool closing;		       /* lxmd_server_close() was called */
};

struct write_req {
	uv_write_t req;		/* libuv's */
	struct lxmd_conn *conn; /* whose queue it counts in */
	size_t len;		/* bytes */
	char data[];		/* the copy being written */
};

static void conn_process(struct lxmd_conn *c);
static void conn_start_reading(struct lxmd_conn *c);

static void server_maybe_free(struct lxmd_server *s)
{
	if (s->closing && s->handles == 0) {
		free(s->path);
		free(s);
	}
}

static void request_free(struct lxmd_request *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(r->args); i++)
		free(r->args[i]);
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
	conn_clear_route(c);
	free(c->in);
	free(c);
	s->handles--;
	server_maybe_free(s);
}

void lxmd_conn_close(struct lxmd_conn *c)
{
	struct lxmd_request *r;

	if (c->closing)
		return;
	c->closing = true;
	TAILQ_REMOVE(&c->server->conns, c, link);
	c->server->n_conns--;

	r = TAKE_PTR(c->current);
	if (r) {
		if (r->deferred && r->on_abort)
			r->on_abort(r);
		request_free(r);
	}
	if (c->ws_ops && c->ws_ops->on_close)
		c->ws_ops->on_close(c->ws_ud);
	c->ws_ops = NULL;
	uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void write_done(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct lxmd_conn *c = w->conn;

	c->queued -= w->len;
	free(w);
	if (c->closing)
		return;
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
	if (c->queued == 0 && c->close_after_write)
		lxmd_conn_close(c);
}

/* Copies data and queues it; uv_write never blocks the loop. */
static int conn_write(struct lxmd_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
	struct write_req *w;
	uv_buf_t buf;
	int r;

	if (c->closing)
		return -EPIPE;
	w = malloc(sizeof(*w) + alen + blen);
	if (!w)
		return -ENOMEM;
	memcpy(w->data, a, alen);
	if (blen)
		memcpy(w->data + alen, b, blen);
	w->conn = c;
	w->len = alen + blen;
	buf = uv_buf_init(w->data, (unsigned)w->len);
	r = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, write_done);
	if (r < 0) {
		free(w);
		return r;
	}
	c->queued += alen + blen;
	return 0;
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
	if (!keep_alive) {
		c->close_after_write = true;
		if (c->reading) {
			uv_read_stop((uv_stream_t *)&c->pipe);
			c->reading = false;
		}
	}
	return 0;
}

/* Answers a request that could not be parsed; the connection closes afterwards. */
static void conn_fail(struct lxmd_conn *c, int status, const char *msg)
{
	_cleanup_json_ json_t *e = lxm_json_error(status, msg);
	_cleanup_free_ char *text = e ? lxm_json_dump(e) : NULL;

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

	request_free(r);
	if (c->closing || c->close_after_write)
		return;
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
	bool keep_alive = r->http->keep_alive;
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
	if (c->ws)
		(void)lxm_ws_close(c->ws, 1000, NULL);
	c->close_after_write = true;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}
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
	c->route = lxmd_api_match(req->path, c->args, &c->containers);
	/* Bodies for unknown paths or methods are read and dropped: the answer is an error anyway,
	 * and buffering them would let any client make the daemon hold megabytes. */
	if (!c->route || m < 0 || !c->route->handlers[m])
		return LXM_HTTP_BODY_DISCARD;

	expect = lxm_http_request_header(req, "Expect");
	if (expect && strcasecmp(expect, "100-continue") == 0) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		if (conn_write(c, cont, sizeof(cont) - 1, NULL, 0) < 0)
			return -EIO;
	}
	return LXM_HTTP_BODY_BUFFER;
}

static const struct lxm_http_parser_ops conn_parser_ops = {
	.on_headers = conn_on_headers,
};

static void conn_dispatch(struct lxmd_conn *c, struct lxm_http_request *http)
{
	struct lxmd_request *r = calloc(1, sizeof(*r));

	if (!r) {
		lxm_http_request_free(http);
		conn_fail(c, 500, "out of memory");
		return;
	}
	r->d = c->server->d;
	r->conn = c;
	r->http = http;
	r->route = c->route;
	r->containers = c->containers;
	memcpy(r->args, c->args, sizeof(r->args));
	memset(c->args, 0, sizeof(c->args));
	c->route = NULL;
	c->current = r;
	lxmd_api_handle(r);
}

static void conn_process(struct lxmd_conn *c)
{
	if (c->processing)
		return;
	c->processing = true;
	while (!c->closing && !c->close_after_write && c->in_len > 0) {
		if (c->mode == CONN_WEBSOCKET) {
			size_t n = c->in_len;

			c->in_len = 0;
			if (lxm_ws_feed(c->ws, (const uint8_t *)c->in, n) < 0)
				break;
			continue;
		}
		if (c->current)
			break; /* one request at a time; the rest waits in c->in */

		enum lxm_http_feed_result res;
		ssize_t n = lxm_http_parser_feed(c->parser, c->in, c->in_len, &res);

		if (n < 0) {
			conn_fail(c, lxm_http_parser_error_status(c->parser),
				  lxm_http_parser_error_message(c->parser));
			break;
		}
		memmove(c->in, c->in + n, c->in_len - (size_t)n);
		c->in_len -= (size_t)n;
		if (res == LXM_HTTP_FEED_MORE)
			continue;
		conn_dispatch(c, lxm_http_parser_take(c->parser));
	}
	c->processing = false;
	if (c->eof && !c->closing && !c->current && c->queued == 0)
		lxmd_conn_close(c);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct lxmd_conn *c = h->data;

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

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct lxmd_conn *c = stream->data;

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
		 */
		if (c->current && c->current->deferred) {
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
	/* Stop reading ahead while a request is answered and too much is already buffered. */
	if (!c->closing && c->reading && c->current && c->in_len > CONN_MAX_READAHEAD) {
		uv_read_stop(stream);
		c->reading = false;
	}
}

static void conn_start_reading(struct lxmd_conn *c)
{
	if (c->closing || c->reading || c->eof || c->close_after_write || c->paused)
		return;
	if (uv_read_start((uv_stream_t *)&c->pipe, conn_alloc, conn_read) == 0)
		c->reading = true;
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
	uv_pipe_init(s->d->loop, &c->pipe, 0);
	c->pipe.data = c;
	s->handles++;
	TAILQ_INSERT_TAIL(&s->conns, c, link);
	s->n_conns++;
	if (uv_accept(listener, (uv_stream_t *)&c->pipe) < 0 ||
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

void lxmd_server_close(struct lxmd_server *s)
{
	struct lxmd_conn *c;

	if (!s || s->closing)
		return;
	s->closing = true;
	uv_close((uv_handle_t *)&s->listener, listener_closed);
	unlink(s->path);
	while ((c = TAILQ_FIRST(&s->conns)))
		lxmd_conn_close(c);
}

size_t lxmd_server_connections(const struct lxmd_server *s)
{
	return s->n_conns;
}
