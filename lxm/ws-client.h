/* The CLI's side of LXD's operation websockets (exec, console): AF_UNIX connections to the
 * API socket (or TLS ones to an https remote) with a hand-written upgrade request and lib/ws.h
 * framing, driven by the command's own poll() loop; and what an interactive session needs around
 * them: a raw local terminal, its size, and signals turned into readable bytes. */
#pragma once

#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#include "lib/error.h"
#include "lib/ws.h"
#include "lxm/client.h"

struct lxm_ws_conn;

/* A whole message from the server. */
typedef void (*lxm_ws_conn_message_fn)(struct lxm_ws_conn *c, enum lxm_ws_opcode op,
				       const uint8_t *data, size_t len);

/* One websocket. Nothing in it blocks on the server: what the server cannot take yet waits in
 * out, and the owner polls fd for POLLOUT while out_len > 0. */
struct lxm_ws_conn {
	int fd;				   /* the socket, -1 when not connected */
	struct ssl_st *ssl;		   /* TLS on fd (an https remote), or NULL */
	struct lxm_ws *ws;		   /* framing */
	char *out;			   /* bytes waiting to be written to fd */
	size_t out_len;			   /* bytes in out */
	size_t out_cap;			   /* allocated */
	bool closed;			   /* the peer closed or the socket failed */
	bool done;			   /* the stream it carries has ended (barrier, close) */
	lxm_ws_conn_message_fn on_message; /* the owner's, or NULL */
	void *userdata;			   /* for the owner */
};

/* A connection that is not connected yet. */
void lxm_ws_conn_init(struct lxm_ws_conn *c, lxm_ws_conn_message_fn on_message, void *userdata);
/* Connects the websocket of operation op (its id) that secret opens. A refused upgrade fails
 * with the server's error. */
int lxm_ws_conn_open(struct lxm_client *client, const char *op, const char *secret,
		     struct lxm_ws_conn *c, struct lxm_error **err);
/* Reads what the server sent and delivers its messages; EOF or a broken frame closes. */
void lxm_ws_conn_read(struct lxm_ws_conn *c);
/* Writes what is queued, as far as the socket takes it now. */
void lxm_ws_conn_flush(struct lxm_ws_conn *c);
/* Sends msg (stolen) as one TEXT message ending in a newline, as LXD's clients send control
 * messages. Dropped when the connection is gone. */
void lxm_ws_conn_send_json(struct lxm_ws_conn *c, json_t *msg);
/* Writes what is still queued (blocking: the session is over) and frees the connection. */
void lxm_ws_conn_close(struct lxm_ws_conn *c);
/* Frees the connection without writing anything. */
void lxm_ws_conn_free(struct lxm_ws_conn *c);

/* The most websockets one session polls. */
#define LXM_WS_SESSION_MAX 8

/* What one round of a session's loop found, for its owner. */
struct lxm_ws_session_ops {
	/* A caught signal (see lxm_signals_catch()). */
	void (*on_signal)(void *userdata, int sig);
	/* len bytes read from stdin; len 0 when stdin ended (or failed). */
	void (*on_stdin)(void *userdata, const uint8_t *data, size_t len);
};

/* One round of an exec or console session: polls the signal pipe, stdin when want_stdin (read
 * into buf, of buf_size bytes) and the connections among c[0..n) that still have something to do
 * (reading, or output to flush), then hands signals and stdin to ops and reads and flushes the
 * connections. An interrupted poll() is a round with nothing done, and so is one that waited
 * timeout_ms (-1: no limit) for nothing. Returns 0 or the -errno of poll(). */
int lxm_ws_session_poll(struct lxm_ws_conn *c, int n, bool want_stdin, int timeout_ms, uint8_t *buf,
			size_t buf_size, const struct lxm_ws_session_ops *ops, void *userdata);

/* The local terminal, in raw mode for an interactive session. */
struct lxm_tty_state {
	bool raw;	      /* the terminal was put in raw mode */
	struct termios saved; /* its settings before */
};

/* Puts stdin in raw mode when it is a terminal (a no-op otherwise). */
int lxm_tty_make_raw(struct lxm_tty_state *t);
void lxm_tty_restore(struct lxm_tty_state *t);
/* The size of the terminal on stdout; leaves w and h alone when there is none. */
void lxm_terminal_size(unsigned *ret_w, unsigned *ret_h);

/* Catches the given signals: each one arrives as a byte (its number) on a pipe that
 * lxm_ws_session_poll() polls. SIGPIPE is ignored meanwhile. */
int lxm_signals_catch(const int *sigs, size_t n);
/* Restores the default actions of the caught signals and SIGPIPE. */
void lxm_signals_release(void);
