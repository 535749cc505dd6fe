/* The API server: a unix socket listener, HTTP/1.1 connections (keep-alive, pipelining, chunked
 * bodies), one request in flight per connection, and upgrades to websockets. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "http.h"
#include "ws.h"

struct lxmd;
struct lxmd_conn;
struct lxmd_server;
struct lxmd_route;
struct lxm_operation;

/* One request being handled. Handlers answer it with one lxmd_respond_*() call, now or later. */
struct lxmd_request {
	struct lxmd *d;			/* the daemon */
	struct lxmd_conn *conn;		/* where it came from */
	struct lxm_http_request *http;	/* method, path, headers, body */
	const struct lxmd_route *route; /* the matched route */
	char *args[4];			/* path segments matched by '*' in the route, decoded */
	bool containers;		/* came through /1.0/containers: answer with its URLs */
	bool untrusted; /* a TLS client whose certificate is not in the trust store */
	json_t *body;	/* decoded JSON body (routes that take one), or NULL */
	bool deferred;	/* the handler answers later (must set on_abort) */
	/* Called if the connection goes away before a deferred request is answered: the handler
	 * drops its reference; the request is freed right after. */
	void (*on_abort)(struct lxmd_request *r);
	void *defer_data; /* for the deferring handler */

	/* Streamed bodies (routes with LXMD_ROUTE_STREAM_BODY). The handler runs as soon as the
	 * headers are in, before the body, and sets these to receive it; with neither set the body
	 * is read and dropped. It answers whenever it likes: an answer before the end of the body
	 * stops the pieces (the rest is read and dropped) and, as for any deferred request,
	 * on_abort runs if the client goes away first (a body cut short ends that way). */
	/* A piece of the body, de-chunked. The handler takes data (free() it). No further piece
	 * comes, and the socket is not read further, until it calls lxmd_request_body_resume():
	 * that is the backpressure on a client that sends faster than the disk takes it. */
	void (*on_body)(struct lxmd_request *r, char *data, size_t len);
	/* The body is complete and every piece was taken (resumed). */
	void (*on_body_end)(struct lxmd_request *r);
	/* Server-private: http still belongs to the parser, which is inside the body. */
	bool http_borrowed;
};

int lxmd_server_new(struct lxmd *d, const char *path, struct lxmd_server **ret,
		    struct lxm_error **err);
/* Stops listening, closes every connection (aborting deferred requests); the server frees itself
 * once every handle is closed. */
void lxmd_server_close(struct lxmd_server *s);
size_t lxmd_server_connections(const struct lxmd_server *s);
/* Closes the websockets (events, exec, console) of TLS clients whose certificate has the
 * fingerprint fp, e.g. once it has left the trust store: a close frame (1008), then the
 * connection. Returns how many. */
size_t lxmd_server_close_websockets_of(struct lxmd_server *s, const char *fp);

/* The HTTPS listener: TCP on address (":8443", "127.0.0.1:8443", "[::]:8443"), TLS with the
 * certificate and key, client certificates requested. 400 naming the address and the cause when
 * it cannot bind. Closed with lxmd_server_close() (which closes its connections too). */
int lxmd_server_new_tcp(struct lxmd *d, const char *address, const char *cert_path,
			const char *key_path, struct lxmd_server **ret, struct lxm_error **err);
/* For tests, the HTTPS listener's limits from the environment, read once at start (before any
 * listener exists): LXMD_TEST_HTTPS_HANDSHAKE_TIMEOUT_MS, _HEADER_TIMEOUT_MS (a request's first
 * byte to its end), _IDLE_TIMEOUT_MS (also: a response the client leaves unread), _RATE
 * (requests a second per client address) and _BURST. 500 naming the variable when one is not a
 * number in range. */
int lxmd_server_test_knobs(struct lxm_error **err);
/* The address a TCP server listens on (the unix socket's path for the other). */
const char *lxmd_server_address(const struct lxmd_server *s);
/* NULL for a unix socket connection; for a TLS one, the client certificate's sha256
 * fingerprint, "" when it sent none. */
const char *lxmd_conn_peer_fingerprint(const struct lxmd_conn *c);
/* The TLS client's certificate as PEM (-ENOENT when it sent none or on the unix socket). */
int lxmd_conn_peer_pem(const struct lxmd_conn *c, char **ret);
/* The client's IP address, or "unix socket". */
const char *lxmd_conn_peer_address(const struct lxmd_conn *c);

/* Answers with a JSON body (stolen). extra: NULL-terminated "Name: value" headers, or NULL. */
int lxmd_respond_json(struct lxmd_request *r, int status, json_t *body, const char *const *extra);
/* LXD sync envelope around metadata (stolen), with an ETag header when etag is non-NULL. */
int lxmd_respond_sync(struct lxmd_request *r, json_t *metadata, const char *etag);
/* 202, Location header and the async envelope for op. */
int lxmd_respond_async(struct lxmd_request *r, struct lxm_operation *op);
/* LXD error envelope; status from err (500 if none). Consumes err. */
int lxmd_respond_error(struct lxmd_request *r, struct lxm_error *err);

/* After on_body: the handler is done with the piece; the next one (or on_body_end) may come. */
void lxmd_request_body_resume(struct lxmd_request *r);

/* Raw responses streamed in pieces (a file's content): the head, then raw_write() as often as
 * needed, then raw_end(). content_length < 0 means unknown: the connection then closes after the
 * body. Nothing else may answer the request in between. */
int lxmd_respond_raw_head(struct lxmd_request *r, int status, const char *content_type,
			  int64_t content_length, const char *const *extra);
/* Queues a piece (copied). done, when non-NULL, runs once it has been written to the socket, so
 * that the handler produces the next piece only then; it does not run if the connection goes
 * away first (on_abort does). More than announced by content_length is refused (-EMSGSIZE). */
int lxmd_respond_raw_write(struct lxmd_request *r, const void *data, size_t len,
			   void (*done)(struct lxmd_request *r));
/* Ends the response. If fewer bytes were sent than announced the connection closes, so that the
 * client sees the truncation instead of waiting. */
void lxmd_respond_raw_end(struct lxmd_request *r);

/* Websocket peers of the server (events, later exec). */
struct lxmd_ws_ops {
	void (*on_message)(void *ud, enum lxm_ws_opcode op, const uint8_t *data, size_t len);
	/* The connection is closing; ud must not be used by the connection afterwards. */
	void (*on_close)(void *ud);
	/* Optional: after lxmd_conn_ws_send() refused a message with -ENOBUFS, the peer's queue
	 * has drained to half the limit; called once per refusal episode. */
	void (*on_drain)(void *ud);
};

/* Answers an Upgrade request with 101 and turns the connection into a websocket. The request is
 * consumed. Returns the connection for lxmd_conn_ws_send(). */
int lxmd_request_upgrade(struct lxmd_request *r, const struct lxmd_ws_ops *ops, void *ud,
			 struct lxmd_conn **ret, struct lxm_error **err);
/* Sends a message; -ENOBUFS when the peer has more than its limit queued (a slow reader), -EPIPE
 * when closing. Never blocks. */
int lxmd_conn_ws_send(struct lxmd_conn *c, enum lxm_ws_opcode op, const void *data, size_t len);
/* Closes a connection (after pending writes where possible). */
void lxmd_conn_close(struct lxmd_conn *c);
/* Ends a websocket cleanly: a close frame goes out after everything queued, and the connection
 * closes once the peer answers it (or goes away). on_close follows as usual. */
void lxmd_conn_ws_shutdown(struct lxmd_conn *c);
/* Stops (true) or resumes (false) reading from a websocket peer, e.g. while what it sent cannot
 * be passed on; messages already received are still delivered. */
void lxmd_conn_ws_pause(struct lxmd_conn *c, bool pause);

/* Bytes a websocket peer may have queued before it counts as too slow. */
#define LXMD_WS_MAX_QUEUED (4u * 1024 * 1024)
