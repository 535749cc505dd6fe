/* WebSocket (RFC 6455) framing on top of libwslay, transport-agnostic: the owner feeds received
 * bytes in and gets bytes to write out through a callback. Messages arrive reassembled from
 * continuation frames; pings are answered; a close is echoed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lxm_http_request;

enum lxm_ws_role {
	LXM_WS_SERVER, /* receives masked frames, sends unmasked */
	LXM_WS_CLIENT, /* sends masked frames */
};

enum lxm_ws_opcode {
	LXM_WS_TEXT = 1,
	LXM_WS_BINARY = 2,
};

struct lxm_ws_ops {
	/* Writes bytes to the transport. Must accept all of them (copy or queue). 0 or -errno. */
	int (*write)(void *userdata, const uint8_t *data, size_t len);
	/* A whole message. data is only valid during the call. */
	void (*on_message)(void *userdata, enum lxm_ws_opcode op, const uint8_t *data, size_t len);
	/* The peer closed (status from its close frame, 1005 when it sent none) or broke the
	 * protocol (1002) or sent an oversized message (1009). Called once. The owner closes the
	 * transport once pending writes are done; it must not free the ws from inside a callback.
	 */
	void (*on_close)(void *userdata, uint16_t status);
};

struct lxm_ws;

/* The Sec-WebSocket-Accept value for a client key: base64(SHA1(key + GUID)). out: 29 bytes. */
int lxm_ws_accept_key(const char *client_key, char out[static 29]);

/* Checks an upgrade request (GET, "Upgrade: websocket", Connection has "upgrade",
 * Sec-WebSocket-Version 13, a key that is 16 bytes base64) and formats the "101 Switching
 * Protocols" reply. On a bad request returns -EINVAL and a static reason in *ret_reason. */
int lxm_ws_handshake_reply(const struct lxm_http_request *req, char **ret, size_t *ret_len,
			   const char **ret_reason);

/* max_message: longest reassembled message accepted; longer ones close with 1009. */
int lxm_ws_new(enum lxm_ws_role role, size_t max_message, const struct lxm_ws_ops *ops,
	       void *userdata, struct lxm_ws **ret);
void lxm_ws_free(struct lxm_ws *ws);

/* Processes received bytes (any split). Returns 0, or -EPROTO after a protocol error (on_close
 * has been called). */
int lxm_ws_feed(struct lxm_ws *ws, const uint8_t *data, size_t len);

/* Tells the ws that the transport reached EOF without a close frame: on_close(1006) once. */
void lxm_ws_eof(struct lxm_ws *ws);

/* Queues a message and writes it out through ops->write. An empty TEXT message is LXD's
 * end-of-stream barrier. -EPIPE once closing. */
int lxm_ws_send(struct lxm_ws *ws, enum lxm_ws_opcode op, const void *data, size_t len);

/* Sends a close frame (once). */
int lxm_ws_close(struct lxm_ws *ws, uint16_t status, const char *reason);

/* True once a close frame was sent or received, or the transport ended. */
bool lxm_ws_is_closing(const struct lxm_ws *ws);
