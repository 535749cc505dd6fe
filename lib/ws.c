/* WebSocket framing on top of libwslay's event API.
 *
 * libwslay pulls input through a recv callback: lxm_ws_feed() parks the caller's bytes where that
 * callback finds them and runs wslay_event_recv() until they are used up. What libwslay or the
 * owner's on_message queues meanwhile (pongs, the close echo, replies) is written out when
 * wslay_event_recv() has returned, and on_close is called only after that: a send, close or eof
 * from inside on_message never re-enters libwslay, and on_close is the last thing feed does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "cleanup.h"
#include "http.h"
#include "util.h"
#include "ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Close status codes of RFC 6455 section 7.4.1 that this file reports. */
enum {
	WS_STATUS_PROTOCOL_ERROR = 1002,
	WS_STATUS_NO_STATUS = 1005,
	WS_STATUS_ABNORMAL = 1006,
	WS_STATUS_INTERNAL_ERROR = 1011,
};

/* Longest close reason that fits a control frame next to the status code. */
#define WS_MAX_REASON 123

struct lxm_ws {
	wslay_event_context_ptr ctx; /* libwslay state */
	struct lxm_ws_ops ops;	     /* copied from the owner */
	void *userdata;		     /* passed to ops */
	const uint8_t *in;	     /* bytes of the running lxm_ws_feed(), read by recv_cb */
	size_t in_len;		     /* bytes at in */
	size_t in_off;		     /* bytes of in already handed to libwslay */
	bool in_feed;		     /* inside lxm_ws_feed(): writes wait for its end */
	uint16_t peer_status;	     /* status of the peer's close frame, once received */
	bool local_close;	     /* lxm_ws_close() queued our close frame */
	bool close_notified;	     /* on_close has been called */
	bool proto_error;	     /* the peer broke the protocol: feed answers -EPROTO */
	bool eof;		     /* the transport ended */
	int write_error;	     /* -errno of a failed write; sticky */
};

int lxm_ws_accept_key(const char *client_key, char out[static 29])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	char buf[64 + sizeof(WS_GUID)];
	size_t klen;

	if (!client_key)
		return -EINVAL;
	/* A valid key is 24 characters; anything much longer is not worth hashing. */
	klen = strlen(client_key);
	if (klen > 64)
		return -EINVAL;
	memcpy(buf, client_key, klen);
	memcpy(buf + klen, WS_GUID, sizeof(WS_GUID) - 1);
	if (!EVP_Digest(buf, klen + sizeof(WS_GUID) - 1, digest, &digest_len, EVP_sha1(), NULL))
		return -EIO;
	if (digest_len != 20)
		return -EIO;
	/* 20 bytes encode to 28 characters plus the NUL that EVP_EncodeBlock() adds. */
	if (EVP_EncodeBlock((unsigned char *)out, digest, 20) != 28)
		return -EIO;
	return 0;
}

static bool is_base64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* Whether key is the base64 form of 16 bytes: 22 characters and "==". */
static bool key_is_valid(const char *key)
{
	unsigned char raw[24];

	if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
		return false;
	for (size_t i = 0; i < 22; i++)
		if (!is_base64_char(key[i]))
			return false;
	/* EVP_DecodeBlock() counts the padding as zero bytes: 24 characters give 18. */
	return EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18;
}

int lxm_ws_handshake_reply(const struct lxm_http_request *req, char **ret, size_t *ret_len,
			   const char **ret_reason)
{
	const char *reason = NULL, *key;
	char accept[29];
	char *buf;
	int n;

	key = lxm_http_request_header(req, "Sec-WebSocket-Key");
	if (req->method != HTTP_GET)
		reason = "a websocket upgrade must use GET";
	else if (req->http_major < 1 || (req->http_major == 1 && req->http_minor < 1))
		reason = "a websocket upgrade needs HTTP/1.1";
	else if (!lxm_http_header_has_token(lxm_http_request_header(req, "Upgrade"), "websocket"))
		reason = "missing \"Upgrade: websocket\" header";
	else if (!lxm_http_header_has_token(lxm_http_request_header(req, "Connection"), "upgrade"))
		reason = "missing \"Connection: Upgrade\" header";
	else if (!streq(lxm_http_request_header(req, "Sec-WebSocket-Version"), "13"))
		reason = "unsupported websocket version (only 13 is)";
	else if (!key_is_valid(key))
		reason = "missing or malformed Sec-WebSocket-Key header";
	else if (lxm_ws_accept_key(key, accept) < 0)
		reason = "cannot compute Sec-WebSocket-Accept";
	if (reason) {
		if (ret_reason)
			*ret_reason = reason;
		return -EINVAL;
	}

	n = asprintf(&buf,
		     "HTTP/1.1 101 Switching Protocols\r\n"
		     "Upgrade: websocket\r\n"
		     "Connection: Upgrade\r\n"
		     "Sec-WebSocket-Accept: %s\r\n"
		     "\r\n",
		     accept);
	if (n < 0)
		return -ENOMEM;
	if (ret_len)
		*ret_len = (size_t)n;
	*ret = buf;
	return 0;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
		       void *userdata)
{
	struct lxm_ws *ws = userdata;
	size_t n = ws->in_len - ws->in_off;

	/* Everything fed so far is with libwslay (or the transport has ended): it returns from
	 * wslay_event_recv() on this. */
	if (n == 0 || ws->eof) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (n > len)
		n = len;
	memcpy(buf, ws->in + ws->in_off, n);
	ws->in_off += n;
	return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
		       void *userdata)
{
	struct lxm_ws *ws = userdata;
	int r;

	r = ws->ops.write(ws->userdata, data, len);
	if (r < 0) {
		ws->write_error = r;
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *userdata)
{
	if (lxm_random_bytes(buf, len) < 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return 0;
}

static void on_msg_recv_cb(wslay_event_context_ptr ctx,
			   const struct wslay_event_on_msg_recv_arg *arg, void *userdata)
{
	static const uint8_t empty[1];
	struct lxm_ws *ws = userdata;

	/* The owner declared the transport dead from inside a callback: nothing more for it. */
	if (ws->eof)
		return;
	switch (arg->opcode) {
	case WSLAY_TEXT_FRAME:
	case WSLAY_BINARY_FRAME:
		/* An empty message comes without a buffer; owners get a valid pointer anyway. */
		if (ws->ops.on_message)
			ws->ops.on_message(ws->userdata, (enum lxm_ws_opcode)arg->opcode,
					   arg->msg ? arg->msg : empty, arg->msg_length);
		break;
	case WSLAY_CONNECTION_CLOSE:
		/* libwslay has queued the echo; on_close waits until it is written. */
		ws->peer_status = arg->status_code ? arg->status_code : WS_STATUS_NO_STATUS;
		break;
	default:
		/* Pings are answered by libwslay, pongs need nothing. */
		break;
	}
}

static const struct wslay_event_callbacks callbacks = {
	.recv_callback = recv_cb,
	.send_callback = send_cb,
	.genmask_callback = genmask_cb,
	.on_msg_recv_callback = on_msg_recv_cb,
};

int lxm_ws_new(enum lxm_ws_role role, size_t max_message, const struct lxm_ws_ops *ops,
	       void *userdata, struct lxm_ws **ret)
{
	struct lxm_ws *ws;
	int r;

	if (!ops || !ops->write || (role != LXM_WS_SERVER && role != LXM_WS_CLIENT))
		return -EINVAL;
	ws = calloc(1, sizeof(*ws));
	if (!ws)
		return -ENOMEM;
	ws->ops = *ops;
	ws->userdata = userdata;
	if (role == LXM_WS_SERVER)
		r = wslay_event_context_server_init(&ws->ctx, &callbacks, ws);
	else
		r = wslay_event_context_client_init(&ws->ctx, &callbacks, ws);
	if (r != 0) {
		free(ws);
		return -ENOMEM;
	}
	if (max_message > 0)
		wslay_event_config_set_max_recv_msg_length(ws->ctx, max_message);
	*ret = ws;
	return 0;
}

void lxm_ws_free(struct lxm_ws *ws)
{
	if (!ws)
		return;
	wslay_event_context_free(ws->ctx);
	free(ws);
}

/* Writes out whatever is queued. The owner's write accepts everything, so one pass drains it. */
static int ws_flush(struct lxm_ws *ws)
{
	int r;

	if (ws->write_error < 0)
		return ws->write_error;
	if (!wslay_event_want_write(ws->ctx))
		return 0;
	r = wslay_event_send(ws->ctx);
	if (r < 0) {
		if (ws->write_error == 0)
			ws->write_error = r == WSLAY_ERR_NOMEM ? -ENOMEM : -EIO;
		return ws->write_error;
	}
	return 0;
}

static void notify_close(struct lxm_ws *ws, uint16_t status)
{
	if (ws->close_notified)
		return;
	ws->close_notified = true;
	if (ws->ops.on_close)
		ws->ops.on_close(ws->userdata, status);
}

/* The status of the close frame libwslay sent after a protocol violation: 1002, 1007 (invalid
 * UTF-8) or 1009 (message too big). When it had no status to send, or our own close went out
 * first and hid it, the violation is reported as a plain protocol error. */
static uint16_t violation_status(struct lxm_ws *ws)
{
	uint16_t status = wslay_event_get_status_code_sent(ws->ctx);

	if (ws->local_close || status < 1000 || status == WS_STATUS_NO_STATUS ||
	    status == WS_STATUS_ABNORMAL)
		return WS_STATUS_PROTOCOL_ERROR;
	return status;
}

int lxm_ws_feed(struct lxm_ws *ws, const uint8_t *data, size_t len)
{
	int r, w;

	if (ws->in_feed)
		return -EBUSY;
	if (ws->proto_error)
		return -EPROTO;
	if (ws->write_error < 0)
		return ws->write_error;
	/* After a close frame or the end of the transport nothing more is read. */
	if (ws->eof || !wslay_event_get_read_enabled(ws->ctx))
		return 0;

	ws->in = data;
	ws->in_len = len;
	ws->in_off = 0;
	ws->in_feed = true;
	r = wslay_event_recv(ws->ctx);
	ws->in = NULL;
	ws->in_len = ws->in_off = 0;
	w = ws_flush(ws);
	ws->in_feed = false;

	if (r == WSLAY_ERR_NOMEM) {
		ws->proto_error = true;
		notify_close(ws, WS_STATUS_INTERNAL_ERROR);
		return -ENOMEM;
	}
	/* libwslay returns an error for malformed frame headers and only stops reading (having
	 * queued a close) for the violations it finds in valid frames. */
	if (r < 0) {
		ws->proto_error = true;
		notify_close(ws, WS_STATUS_PROTOCOL_ERROR);
		return -EPROTO;
	}
	/* lxm_ws_eof() from inside a callback: whatever came after it does not count. */
	if (ws->eof) {
		notify_close(ws, WS_STATUS_ABNORMAL);
		return w;
	}
	if (wslay_event_get_close_received(ws->ctx)) {
		notify_close(ws, ws->peer_status ? ws->peer_status : WS_STATUS_NO_STATUS);
		return w;
	}
	if (!wslay_event_get_read_enabled(ws->ctx)) {
		ws->proto_error = true;
		notify_close(ws, violation_status(ws));
		return -EPROTO;
	}
	return w;
}

void lxm_ws_eof(struct lxm_ws *ws)
{
	ws->eof = true;
	/* Inside feed, on_close waits until feed is done with the callbacks. */
	if (!ws->in_feed)
		notify_close(ws, WS_STATUS_ABNORMAL);
}

int lxm_ws_send(struct lxm_ws *ws, enum lxm_ws_opcode op, const void *data, size_t len)
{
	struct wslay_event_msg msg = {
		.opcode = (uint8_t)op,
		.msg = data,
		.msg_length = len,
	};
	int r;

	if ((op != LXM_WS_TEXT && op != LXM_WS_BINARY) || (!data && len > 0))
		return -EINVAL;
	if (lxm_ws_is_closing(ws))
		return -EPIPE;
	r = wslay_event_queue_msg(ws->ctx, &msg);
	if (r == WSLAY_ERR_NO_MORE_MSG)
		return -EPIPE;
	if (r == WSLAY_ERR_NOMEM)
		return -ENOMEM;
	if (r < 0)
		return -EINVAL;
	/* Inside feed the message goes out with everything else when feed returns. */
	if (ws->in_feed)
		return 0;
	return ws_flush(ws);
}

static bool status_sendable(uint16_t status)
{
	/* 1005, 1006 and 1015 are reserved for reporting and never appear in a frame. */
	return status == 0 || (status >= 1000 && status <= 4999 && status != WS_STATUS_NO_STATUS &&
			       status != WS_STATUS_ABNORMAL && status != 1015);
}

int lxm_ws_close(struct lxm_ws *ws, uint16_t status, const char *reason)
{
	size_t rlen = reason ? strlen(reason) : 0;
	int r;

	if (!status_sendable(status))
		return -EINVAL;
	if (ws->local_close || wslay_event_get_close_sent(ws->ctx))
		return 0;
	if (ws->eof || ws->write_error < 0)
		return -EPIPE;
	/* Cut an overlong reason at a UTF-8 character boundary. */
	if (rlen > WS_MAX_REASON) {
		rlen = WS_MAX_REASON;
		while (rlen > 0 && ((unsigned char)reason[rlen] & 0xc0) == 0x80)
			rlen--;
	}
	r = wslay_event_queue_close(ws->ctx, status, (const uint8_t *)reason, status ? rlen : 0);
	/* A close is already on its way (the echo of the peer's, or one after a violation). */
	if (r == WSLAY_ERR_NO_MORE_MSG)
		return 0;
	if (r == WSLAY_ERR_NOMEM)
		return -ENOMEM;
	if (r < 0)
		return -EINVAL;
	ws->local_close = true;
	if (ws->in_feed)
		return 0;
	return ws_flush(ws);
}

bool lxm_ws_is_closing(const struct lxm_ws *ws)
{
	return ws->local_close || ws->eof || ws->proto_error || ws->write_error < 0 ||
	       ws->close_notified || !wslay_event_get_read_enabled(ws->ctx) ||
	       wslay_event_get_close_sent(ws->ctx);
}
