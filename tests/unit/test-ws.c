/* Unit tests for lib/ws.c: the accept key, the handshake checks, and a server and a client wired
 * back to back, plus hand-built frames for what a well-behaved client never sends. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "http.h"
#include "tap.h"
#include "util.h"
#include "ws.h"

/* One end of a back-to-back pair: what it wrote, what it received. */
struct end {
	struct lxm_ws *ws;     /* this end */
	const char *name;      /* "server" or "client", for messages */
	uint8_t *out;	       /* bytes written and not yet delivered to the other end */
	size_t out_len;	       /* bytes in out */
	int messages;	       /* on_message calls */
	enum lxm_ws_opcode op; /* opcode of the last message */
	uint8_t *last;	       /* copy of the last message */
	size_t last_len;       /* its length */
	int closes;	       /* on_close calls */
	uint16_t close_status; /* status of the last on_close */
	bool echo;	       /* answer each message with the same from on_message */
	int fail_writes;       /* when non-zero, write fails with it */
	bool eof_on_message;   /* call lxm_ws_eof() from on_message */
};

static int end_write(void *userdata, const uint8_t *data, size_t len)
{
	struct end *e = userdata;
	uint8_t *n;

	if (e->fail_writes)
		return e->fail_writes;
	n = realloc(e->out, e->out_len + len + 1);
	if (!n)
		abort();
	memcpy(n + e->out_len, data, len);
	e->out = n;
	e->out_len += len;
	return 0;
}

static void end_on_message(void *userdata, enum lxm_ws_opcode op, const uint8_t *data, size_t len)
{
	struct end *e = userdata;

	e->messages++;
	e->op = op;
	free(e->last);
	e->last = malloc(len + 1);
	if (!e->last || !data)
		abort();
	memcpy(e->last, data, len);
	e->last[len] = '\0';
	e->last_len = len;
	if (e->echo && lxm_ws_send(e->ws, op, data, len) < 0)
		abort();
	if (e->eof_on_message) {
		lxm_ws_eof(e->ws);
		ok(e->closes == 0, "eof inside on_message: on_close waits for feed to return");
	}
}

static void end_on_close(void *userdata, uint16_t status)
{
	struct end *e = userdata;

	e->closes++;
	e->close_status = status;
}

static const struct lxm_ws_ops end_ops = {
	.write = end_write,
	.on_message = end_on_message,
	.on_close = end_on_close,
};

static void end_init(struct end *e, enum lxm_ws_role role, size_t max_message)
{
	*e = (struct end){ .name = role == LXM_WS_SERVER ? "server" : "client" };
	if (lxm_ws_new(role, max_message, &end_ops, e, &e->ws) < 0)
		abort();
}

static void end_fini(struct end *e)
{
	lxm_ws_free(e->ws);
	free(e->out);
	free(e->last);
}

/* Takes what from wrote; the caller frees it. */
static uint8_t *end_take_out(struct end *from, size_t *ret_len)
{
	uint8_t *out = from->out;

	*ret_len = from->out_len;
	from->out = NULL;
	from->out_len = 0;
	return out;
}

/* Delivers what from wrote to to, in pieces of step bytes. Returns the last feed's result. */
static int deliver(struct end *from, struct end *to, size_t step)
{
	size_t len = 0;
	_cleanup_free_ uint8_t *data = end_take_out(from, &len);
	int r = 0;

	for (size_t off = 0; off < len && r == 0; off += step)
		r = lxm_ws_feed(to->ws, data + off, len - off < step ? len - off : step);
	return r;
}

/* Shuttles bytes both ways until both ends are quiet. */
static void pump(struct end *a, struct end *b)
{
	while (a->out_len || b->out_len) {
		deliver(a, b, SIZE_MAX);
		deliver(b, a, SIZE_MAX);
	}
}

/* A frame as a client would send it (masked with a fixed key) or a server (unmasked). */
static size_t build_frame(uint8_t *buf, bool fin, uint8_t opcode, const void *payload, size_t len,
			  bool masked)
{
	static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
	const uint8_t *p = payload;
	size_t n = 0;

	buf[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
	if (len < 126) {
		buf[n++] = (uint8_t)((masked ? 0x80 : 0) | len);
	} else if (len < 65536) {
		buf[n++] = (uint8_t)((masked ? 0x80 : 0) | 126);
		buf[n++] = (uint8_t)(len >> 8);
		buf[n++] = (uint8_t)len;
	} else {
		buf[n++] = (uint8_t)((masked ? 0x80 : 0) | 127);
		for (int i = 7; i >= 0; i--)
			buf[n++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	if (masked) {
		memcpy(buf + n, key, 4);
		n += 4;
	}
	for (size_t i = 0; i < len; i++)
		buf[n + i] = masked ? p[i] ^ key[i % 4] : p[i];
	return n + len;
}

static void test_accept_key(void)
{
	char out[29];

	ok(lxm_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out) == 0, "accept key: computes");
	is_str(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "accept key: RFC 6455 section 1.3 example");
	is_int(lxm_ws_accept_key(NULL, out), -EINVAL, "accept key: NULL refused");
}

/* Parses an HTTP request from text with lib/http.c. */
static struct lxm_http_request *request_from(const char *text)
{
	struct lxm_http_parser *p = NULL;
	struct lxm_http_request *req = NULL;
	enum lxm_http_feed_result res;

	if (lxm_http_parser_new(NULL, NULL, NULL, &p) < 0)
		abort();
	if (lxm_http_parser_feed(p, text, strlen(text), &res) >= 0 && res != LXM_HTTP_FEED_MORE)
		req = lxm_http_parser_take(p);
	lxm_http_parser_free(p);
	if (!req)
		abort();
	return req;
}

static void test_handshake(void)
{
	static const char *good[] = {
		"GET /1.0/events HTTP/1.1\r\nHost: lxd\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 13\r\n\r\n",
		/* What browsers and Go send: other tokens, other case. */
		"GET /x HTTP/1.1\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
		"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
	};
	static const char *bad[] = {
		"POST /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET /x HTTP/1.1\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET /x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
		"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Version: 13\r\n\r\n",
		"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET /x HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	};

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		struct lxm_http_request *req = request_from(good[i]);
		char *reply = NULL;
		size_t len = 0;
		const char *reason = NULL;

		ok(lxm_ws_handshake_reply(req, &reply, &len, &reason) == 0,
		   "handshake %zu: accepted", i);
		is_str(reply,
		       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		       "Connection: Upgrade\r\nSec-WebSocket-Accept: "
		       "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
		       "handshake: the 101 reply");
		is_int(len, reply ? strlen(reply) : 0, "handshake: reply length");
		free(reply);
		lxm_http_request_free(req);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct lxm_http_request *req = request_from(bad[i]);
		char *reply = NULL;
		size_t len = 0;
		const char *reason = NULL;
		int r = lxm_ws_handshake_reply(req, &reply, &len, &reason);

		ok(r == -EINVAL && !reply && reason && *reason, "handshake %zu refused: %s", i,
		   reason ? reason : "(no reason)");
		lxm_http_request_free(req);
	}
}

static void test_exchange(void)
{
	struct end s, c;
	_cleanup_free_ uint8_t *big = malloc(100 * 1000);
	static const uint8_t bin[] = { 0, 1, 2, 0xff, 0, 0x80 };

	if (!big)
		abort();
	for (size_t i = 0; i < 100 * 1000; i++)
		big[i] = (uint8_t)(i * 31 + 7);
	end_init(&s, LXM_WS_SERVER, 1 << 20);
	end_init(&c, LXM_WS_CLIENT, 1 << 20);

	ok(lxm_ws_send(c.ws, LXM_WS_TEXT, "hello server", 12) == 0, "client sends text");
	ok(c.out_len == 2 + 4 + 12 && (c.out[1] & 0x80), "client frames are masked");
	pump(&c, &s);
	ok(s.messages == 1 && s.op == LXM_WS_TEXT && streq((char *)s.last, "hello server"),
	   "server receives text");

	ok(lxm_ws_send(s.ws, LXM_WS_BINARY, bin, sizeof(bin)) == 0, "server sends binary");
	ok(s.out_len == 2 + sizeof(bin) && !(s.out[1] & 0x80), "server frames are not masked");
	pump(&s, &c);
	ok(c.messages == 1 && c.op == LXM_WS_BINARY && c.last_len == sizeof(bin) &&
		   memcmp(c.last, bin, sizeof(bin)) == 0,
	   "client receives binary with NULs");

	ok(lxm_ws_send(c.ws, LXM_WS_BINARY, big, 100 * 1000) == 0, "client sends 100 kB");
	pump(&c, &s);
	ok(s.messages == 2 && s.last_len == 100 * 1000 && memcmp(s.last, big, 100 * 1000) == 0,
	   "server receives 100 kB intact");
	ok(lxm_ws_send(s.ws, LXM_WS_BINARY, big, 100 * 1000) == 0, "server sends 100 kB");
	pump(&s, &c);
	ok(c.messages == 2 && c.last_len == 100 * 1000 && memcmp(c.last, big, 100 * 1000) == 0,
	   "client receives 100 kB intact");

	ok(lxm_ws_send(c.ws, LXM_WS_TEXT, "one byte at a time", 18) == 0, "client sends text");
	is_int(deliver(&c, &s, 1), 0, "feeding 1-byte pieces succeeds");
	ok(s.messages == 3 && streq((char *)s.last, "one byte at a time"),
	   "server reassembles a message fed byte by byte");

	/* The empty TEXT message is LXD's end-of-stream barrier. */
	ok(lxm_ws_send(s.ws, LXM_WS_TEXT, "", 0) == 0, "server sends an empty text message");
	ok(lxm_ws_send(s.ws, LXM_WS_TEXT, NULL, 0) == 0, "server sends an empty text from NULL");
	is_int(s.out_len, 4, "empty messages are bare frame headers");
	pump(&s, &c);
	ok(c.messages == 4 && c.op == LXM_WS_TEXT && c.last_len == 0 && c.last,
	   "client receives the empty barrier");
	ok(lxm_ws_send(c.ws, LXM_WS_TEXT, "", 0) == 0, "client sends an empty text message");
	pump(&c, &s);
	ok(s.messages == 4 && s.op == LXM_WS_TEXT && s.last_len == 0, "server receives it");

	/* Replies sent from inside on_message go out when feed returns. */
	s.echo = true;
	ok(lxm_ws_send(c.ws, LXM_WS_TEXT, "echo me", 7) == 0, "client sends for an echo");
	deliver(&c, &s, SIZE_MAX);
	ok(s.out_len == 9, "server's echo from on_message is written once feed returns");
	pump(&s, &c);
	ok(c.messages == 5 && streq((char *)c.last, "echo me"), "client receives the echo");

	is_int(lxm_ws_send(c.ws, (enum lxm_ws_opcode)9, "x", 1), -EINVAL,
	       "send: bad opcode refused");
	ok(!lxm_ws_is_closing(c.ws) && !lxm_ws_is_closing(s.ws), "neither end is closing");
	ok(s.closes == 0 && c.closes == 0, "no on_close yet");
	end_fini(&s);
	end_fini(&c);
}

static void test_fragments(void)
{
	struct end s;
	uint8_t wire[16384];
	size_t n = 0;
	_cleanup_free_ char *msg = malloc(10000);

	if (!msg)
		abort();
	end_init(&s, LXM_WS_SERVER, 1 << 20);
	n += build_frame(wire + n, false, 1, "Hel", 3, true);
	n += build_frame(wire + n, false, 0, "lo, ", 4, true);
	n += build_frame(wire + n, true, 9, "mid", 3, true); /* a ping between fragments */
	n += build_frame(wire + n, true, 0, "world", 5, true);
	is_int(lxm_ws_feed(s.ws, wire, n), 0, "fragments: feed succeeds");
	ok(s.messages == 1 && s.op == LXM_WS_TEXT && streq((char *)s.last, "Hello, world"),
	   "fragments: continuation frames reassembled around a ping");
	ok(s.out_len == 5 && memcmp(s.out, "\x8a\x03mid", 5) == 0,
	   "fragments: the interleaved ping is answered with a pong");
	free(end_take_out(&s, &n));

	/* gorilla/websocket splits messages into 4096-byte frames; feed it in odd pieces. */
	for (size_t i = 0; i < 10000; i++)
		msg[i] = (char)('a' + i % 26);
	n = 0;
	n += build_frame(wire + n, false, 2, msg, 4096, true);
	n += build_frame(wire + n, false, 0, msg + 4096, 4096, true);
	n += build_frame(wire + n, true, 0, msg + 8192, 10000 - 8192, true);
	for (size_t off = 0; off < n; off += 1000)
		if (lxm_ws_feed(s.ws, wire + off, n - off < 1000 ? n - off : 1000) != 0)
			break;
	ok(s.messages == 2 && s.op == LXM_WS_BINARY && s.last_len == 10000 &&
		   memcmp(s.last, msg, 10000) == 0,
	   "fragments: 10000 bytes in 4096-byte frames reassembled");
	is_int(s.closes, 0, "fragments: no close");
	end_fini(&s);
}

static void test_ping(void)
{
	struct end s, c;
	uint8_t wire[64];
	size_t n;

	end_init(&s, LXM_WS_SERVER, 0);
	n = build_frame(wire, true, 9, "abc", 3, true);
	is_int(lxm_ws_feed(s.ws, wire, n), 0, "ping: server feed succeeds");
	ok(s.out_len == 5 && memcmp(s.out,
				    "\x8a\x03"
				    "abc",
				    5) == 0,
	   "ping: answered with an unmasked pong carrying the payload");
	is_int(s.messages, 0, "ping: not a message");
	end_fini(&s);

	end_init(&c, LXM_WS_CLIENT, 0);
	n = build_frame(wire, true, 9, "xy", 2, false);
	is_int(lxm_ws_feed(c.ws, wire, n), 0, "ping: client feed succeeds");
	ok(c.out_len == 2 + 4 + 2 && c.out[0] == 0x8a && c.out[1] == 0x82,
	   "ping: client answers with a masked pong");
	n = build_frame(wire, true, 10, "unsolicited", 11, false);
	is_int(lxm_ws_feed(c.ws, wire, n), 0, "pong: an unsolicited pong is ignored");
	is_int(c.messages + c.closes, 0, "pong: no callback");
	end_fini(&c);
}

static void test_close(void)
{
	struct end s, c;
	uint8_t wire[64];
	size_t n;

	end_init(&s, LXM_WS_SERVER, 0);
	end_init(&c, LXM_WS_CLIENT, 0);
	ok(lxm_ws_close(c.ws, 1000, "bye") == 0, "close: client sends close");
	ok(lxm_ws_is_closing(c.ws), "close: client is closing");
	is_int(lxm_ws_send(c.ws, LXM_WS_TEXT, "late", 4), -EPIPE,
	       "close: send after close is EPIPE");
	ok(lxm_ws_close(c.ws, 1001, NULL) == 0 && c.out_len == 2 + 4 + 5,
	   "close: a second close sends nothing");
	deliver(&c, &s, SIZE_MAX);
	ok(s.closes == 1 && s.close_status == 1000, "close: server on_close(1000)");
	ok(s.out_len == 7 && s.out[0] == 0x88 && s.out[2] == 0x03 && s.out[3] == 0xe8,
	   "close: server echoes the status");
	ok(lxm_ws_is_closing(s.ws), "close: server is closing");
	is_int(lxm_ws_send(s.ws, LXM_WS_TEXT, "x", 1), -EPIPE, "close: server send is EPIPE");
	is_int(c.closes, 0, "close: client not closed before the echo");
	deliver(&s, &c, SIZE_MAX);
	ok(c.closes == 1 && c.close_status == 1000, "close: client on_close(1000) on the echo");
	is_int(c.out_len, 0, "close: client does not echo the echo");
	n = build_frame(wire, true, 1, "after", 5, true);
	is_int(lxm_ws_feed(s.ws, wire, n), 0, "close: bytes after close are ignored");
	lxm_ws_eof(s.ws);
	lxm_ws_eof(c.ws);
	ok(s.closes == 1 && c.closes == 1 && s.messages == 0, "close: on_close exactly once");
	end_fini(&s);
	end_fini(&c);

	end_init(&s, LXM_WS_SERVER, 0);
	n = build_frame(wire, true, 8, NULL, 0, true);
	is_int(lxm_ws_feed(s.ws, wire, n), 0, "close without status: feed succeeds");
	ok(s.closes == 1 && s.close_status == 1005, "close without status: on_close(1005)");
	ok(s.out_len == 2 && s.out[0] == 0x88 && s.out[1] == 0,
	   "close without status: echoed empty");
	end_fini(&s);

	end_init(&s, LXM_WS_SERVER, 0);
	s.eof_on_message = true;
	n = build_frame(wire, true, 1, "a", 1, true);
	n += build_frame(wire + n, true, 1, "b", 1, true);
	is_int(lxm_ws_feed(s.ws, wire, n), 0, "eof inside on_message: feed succeeds");
	ok(s.closes == 1 && s.close_status == 1006 && s.messages == 1,
	   "eof inside on_message: on_close(1006) after it, nothing read after the eof");
	end_fini(&s);

	end_init(&s, LXM_WS_SERVER, 0);
	is_int(lxm_ws_close(s.ws, 1006, NULL), -EINVAL, "close: 1006 cannot be sent");
	lxm_ws_eof(s.ws);
	lxm_ws_eof(s.ws);
	ok(s.closes == 1 && s.close_status == 1006, "eof: on_close(1006) once");
	ok(lxm_ws_is_closing(s.ws), "eof: closing");
	is_int(lxm_ws_send(s.ws, LXM_WS_BINARY, "x", 1), -EPIPE, "eof: send is EPIPE");
	is_int(lxm_ws_close(s.ws, 1000, NULL), -EPIPE, "eof: close is EPIPE");
	end_fini(&s);
}

static void test_violations(void)
{
	struct end s, c;
	uint8_t wire[4096];
	size_t n;
	_cleanup_free_ uint8_t *big = calloc(1, 2000);

	if (!big)
		abort();
	end_init(&s, LXM_WS_SERVER, 1000);
	end_init(&c, LXM_WS_CLIENT, 0);
	ok(lxm_ws_send(c.ws, LXM_WS_BINARY, big, 1000) == 0, "oversize: a message at the limit");
	pump(&c, &s);
	ok(s.messages == 1 && s.closes == 0, "oversize: at the limit is delivered");
	ok(lxm_ws_send(c.ws, LXM_WS_BINARY, big, 1001) == 0, "oversize: a message over the limit");
	is_int(deliver(&c, &s, SIZE_MAX), -EPROTO, "oversize: feed fails with EPROTO");
	ok(s.closes == 1 && s.close_status == 1009, "oversize: on_close(1009)");
	ok(s.out_len == 4 && s.out[0] == 0x88 && s.out[2] == 0x03 && s.out[3] == 0xf1,
	   "oversize: server sends close 1009");
	is_int(lxm_ws_feed(s.ws, big, 10), -EPROTO, "oversize: later feeds fail too");
	is_int(s.closes, 1, "oversize: on_close once");
	end_fini(&s);
	end_fini(&c);

	/* Fragments add up: three 400-byte frames exceed 1000. */
	end_init(&s, LXM_WS_SERVER, 1000);
	n = 0;
	n += build_frame(wire + n, false, 2, big, 400, true);
	n += build_frame(wire + n, false, 0, big, 400, true);
	n += build_frame(wire + n, true, 0, big, 400, true);
	is_int(lxm_ws_feed(s.ws, wire, n), -EPROTO, "oversize in fragments: EPROTO");
	ok(s.closes == 1 && s.close_status == 1009 && s.messages == 0,
	   "oversize in fragments: on_close(1009)");
	end_fini(&s);

	end_init(&s, LXM_WS_SERVER, 0);
	n = build_frame(wire, true, 1, "plain", 5, false);
	is_int(lxm_ws_feed(s.ws, wire, n), -EPROTO, "unmasked client frame: EPROTO");
	ok(s.closes == 1 && s.close_status == 1002 && s.messages == 0,
	   "unmasked client frame: on_close(1002)");
	ok(s.out_len >= 2 && s.out[0] == 0x88, "unmasked client frame: a close is sent");
	lxm_ws_eof(s.ws);
	is_int(s.closes, 1, "unmasked client frame: eof adds no on_close");
	end_fini(&s);

	end_init(&s, LXM_WS_SERVER, 0);
	n = build_frame(wire, false, 9, "x", 1, true);
	is_int(lxm_ws_feed(s.ws, wire, n), -EPROTO, "fragmented ping: EPROTO");
	ok(s.closes == 1 && s.close_status == 1002, "fragmented ping: on_close(1002)");
	end_fini(&s);

	end_init(&s, LXM_WS_SERVER, 0);
	n = build_frame(wire, true, 0, "orphan", 6, true);
	is_int(lxm_ws_feed(s.ws, wire, n), -EPROTO, "continuation without a start: EPROTO");
	ok(s.closes == 1 && s.close_status == 1002, "continuation without a start: on_close(1002)");
	end_fini(&s);

	end_init(&s, LXM_WS_SERVER, 0);
	n = build_frame(wire, true, 3, "x", 1, true);
	is_int(lxm_ws_feed(s.ws, wire, n), -EPROTO, "reserved opcode: EPROTO");
	ok(s.closes == 1 && s.close_status == 1002, "reserved opcode: on_close(1002)");
	end_fini(&s);

	end_init(&c, LXM_WS_CLIENT, 0);
	n = build_frame(wire, true, 2, "masked", 6, true);
	is_int(lxm_ws_feed(c.ws, wire, n), -EPROTO, "masked server frame: EPROTO at the client");
	ok(c.closes == 1 && c.close_status == 1002, "masked server frame: on_close(1002)");
	end_fini(&c);

	end_init(&s, LXM_WS_SERVER, 0);
	n = build_frame(wire, true, 1, "\xff\xfe", 2, true);
	is_int(lxm_ws_feed(s.ws, wire, n), -EPROTO, "invalid UTF-8 text: EPROTO");
	ok(s.closes == 1 && s.close_status == 1007, "invalid UTF-8 text: on_close(1007)");
	end_fini(&s);

	/* A write failure is reported and nothing is written after it. */
	end_init(&s, LXM_WS_SERVER, 0);
	s.fail_writes = -ECONNRESET;
	is_int(lxm_ws_send(s.ws, LXM_WS_TEXT, "x", 1), -ECONNRESET,
	       "write failure: send returns it");
	ok(lxm_ws_is_closing(s.ws), "write failure: closing");
	is_int(lxm_ws_send(s.ws, LXM_WS_TEXT, "x", 1), -EPIPE, "write failure: later sends EPIPE");
	end_fini(&s);
}

int main(void)
{
	test_accept_key();
	test_handshake();
	test_exchange();
	test_fragments();
	test_ping();
	test_close();
	test_violations();
	return tap_done();
}
