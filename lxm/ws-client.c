/* Websocket connections, the raw terminal and the signal pipe of the CLI's interactive commands
 * (see ws-client.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/tls-client.h"
#include "lib/util.h"
#include "lxm/ws-client.h"

/* Bytes read from a socket at a time. */
#define IO_CHUNK (64 * 1024)
/* Longest upgrade reply head. */
#define HANDSHAKE_MAX 8192
/* How long the server may take to answer an upgrade. */
#define HANDSHAKE_TIMEOUT_MS 10000

/* ---- websockets ---- */

/* Queues bytes for the socket (lib/ws.h's write: it must take everything). */
static int conn_queue(void *ud, const uint8_t *data, size_t len)
{
	struct lxm_ws_conn *c = ud;

	if (c->out_len + len > c->out_cap) {
		size_t cap = (c->out_len + len) * 2;
		char *n = realloc(c->out, cap);

		if (!n)
			return -ENOMEM;
		c->out = n;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

static void conn_message(void *ud, enum lxm_ws_opcode op, const uint8_t *data, size_t len)
{
	struct lxm_ws_conn *c = ud;

	if (c->on_message)
		c->on_message(c, op, data, len);
}

static void conn_closed(void *ud, uint16_t status)
{
	struct lxm_ws_conn *c = ud;

	c->closed = true;
	c->done = true;
}

static const struct lxm_ws_ops conn_ops = {
	.write = conn_queue,
	.on_message = conn_message,
	.on_close = conn_closed,
};

void lxm_ws_conn_init(struct lxm_ws_conn *c, lxm_ws_conn_message_fn on_message, void *userdata)
{
	*c = (struct lxm_ws_conn){ .fd = -1, .on_message = on_message, .userdata = userdata };
}

/* read() and write() of the connection, through TLS when it has it: -1 with errno EAGAIN when
 * TLS needs the socket to be ready first. */
static ssize_t conn_io(struct lxm_ws_conn *c, bool wr, void *buf, size_t len)
{
	int n, e;

	if (!c->ssl)
		return wr ? write(c->fd, buf, len) : read(c->fd, buf, len);
	ERR_clear_error();
	n = wr ? SSL_write(c->ssl, buf, (int)len) : SSL_read(c->ssl, buf, (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(c->ssl, n);
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
		return 0;
	if (e != SSL_ERROR_SYSCALL)
		errno = EPROTO;
	return -1;
}

void lxm_ws_conn_free(struct lxm_ws_conn *c)
{
	lxm_ws_free(c->ws);
	c->ws = NULL;
	if (c->ssl)
		lxm_tlsc_close(c->ssl, c->fd);
	else if (c->fd >= 0)
		close(c->fd);
	c->ssl = NULL;
	c->fd = -1;
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_cap = 0;
}

void lxm_ws_conn_close(struct lxm_ws_conn *c)
{
	if (c->fd >= 0 && c->out_len > 0 && !c->closed) {
		int fl = fcntl(c->fd, F_GETFL);

		if (fl >= 0 && fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK) == 0) {
			if (c->ssl)
				lxm_ws_conn_flush(c);
			else
				(void)lxm_write_all(c->fd, c->out, c->out_len);
		}
	}
	lxm_ws_conn_free(c);
}

void lxm_ws_conn_read(struct lxm_ws_conn *c)
{
	uint8_t buf[IO_CHUNK];

	/* TLS may hold more decrypted bytes than one read takes, and poll() does not see them:
	 * read until it wants more from the socket. */
	do {
		ssize_t n = conn_io(c, false, buf, sizeof(buf));

		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		if (n <= 0) {
			lxm_ws_eof(c->ws);
			c->closed = c->done = true;
			return;
		}
		if (lxm_ws_feed(c->ws, buf, (size_t)n) < 0) {
			c->closed = c->done = true;
			return;
		}
	} while (c->ssl && !c->closed);
}

void lxm_ws_conn_flush(struct lxm_ws_conn *c)
{
	while (c->out_len > 0) {
		ssize_t n = conn_io(c, true, c->out, c->out_len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			/* The server went away: nothing more goes to it. */
			c->out_len = 0;
			c->closed = c->done = true;
			return;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
}

void lxm_ws_conn_send_json(struct lxm_ws_conn *c, json_t *msg)
{
	_cleanup_free_ char *text = msg ? lxm_json_dump(msg) : NULL;
	_cleanup_free_ char *line = NULL;

	json_decref(msg);
	if (!text || !c->ws || c->closed)
		return;
	/* Go's WriteJSON ends messages with a newline; LXD's clients all send it. */
	if (asprintf(&line, "%s\n", text) < 0)
		return;
	(void)lxm_ws_send(c->ws, LXM_WS_TEXT, line, strlen(line));
}

/* Reads the upgrade reply head (and whatever websocket bytes came along with it). */
static int read_head(struct lxm_ws_conn *c, char *buf, size_t cap, size_t *ret_len,
		     size_t *ret_head)
{
	size_t len = 0;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		char *end;
		ssize_t n;
		int k = c->ssl && SSL_pending(c->ssl) > 0 ? 1 : poll(&p, 1, HANDSHAKE_TIMEOUT_MS);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -ETIMEDOUT;
		n = conn_io(c, false, buf + len, cap - 1 - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		len += (size_t)n;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end) {
			*ret_len = len;
			*ret_head = (size_t)(end - buf) + 4;
			return 0;
		}
		if (len >= cap - 1)
			return -E2BIG;
	}
}

/* The value of header name in a reply head, copied into out (empty when absent). */
static void head_header(const char *head, size_t head_len, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);

	out[0] = '\0';
	for (const char *l = strstr(head, "\r\n"); l && (size_t)(l - head) < head_len;
	     l = strstr(l + 2, "\r\n")) {
		const char *v = l + 2;

		if (strncasecmp(v, name, nlen) != 0 || v[nlen] != ':')
			continue;
		v += nlen + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		snprintf(out, cap, "%.*s", (int)strcspn(v, "\r\n"), v);
		return;
	}
}

/* A refused upgrade: the server's error envelope says why. */
static int upgrade_refused(struct lxm_client *client, int status, const char *buf, size_t len,
			   size_t head, struct lxm_error **err)
{
	_cleanup_json_ json_t *env = NULL;
	char clen[32];
	int k;

	head_header(buf, head, "Content-Length", clen, sizeof(clen));
	if (*clen && (size_t)atol(clen) <= len - head)
		len = head + (size_t)atol(clen);
	k = lxm_client_parse_reply(lxm_client_socket(client), status, buf + head, len - head, &env,
				   err);
	if (k < 0)
		return k;
	return lxm_error_set(err, -EPROTO, 500, "the server refused the upgrade (HTTP %d)", status);
}

int lxm_ws_conn_open(struct lxm_client *client, const char *op, const char *secret,
		     struct lxm_ws_conn *c, struct lxm_error **err)
{
	_cleanup_free_ char *req = NULL;
	unsigned char raw[16];
	char key[32], accept[29], got[64], buf[HANDSHAKE_MAX];
	size_t len = 0, head = 0;
	int status = 0, k;

	k = lxm_client_open_stream(client, &c->fd, &c->ssl, err);
	if (k < 0)
		return k;
	/* From here on, a failure leaves the connection for lxm_ws_conn_free(). */
	if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
		return lxm_error_setx(err, -errno, 500, "websocket");
	k = lxm_random_bytes(raw, sizeof(raw));
	if (k < 0)
		return lxm_error_setx(err, k, 500, "websocket key");
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	if (lxm_ws_accept_key(key, accept) < 0)
		return lxm_error_set(err, -EIO, 500, "websocket key");
	if (asprintf(&req,
		     "GET /1.0/operations/%s/websocket?secret=%s HTTP/1.1\r\n"
		     "Host: lxd\r\n"
		     "Upgrade: websocket\r\n"
		     "Connection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\n"
		     "\r\n",
		     op, secret, key) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	k = conn_queue(c, (const uint8_t *)req, strlen(req));
	if (k < 0)
		return lxm_error_setx(err, k, 500, "send the upgrade request");
	while (c->out_len > 0 && !c->closed) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT | POLLIN };

		lxm_ws_conn_flush(c);
		if (c->out_len > 0 && poll(&p, 1, HANDSHAKE_TIMEOUT_MS) <= 0)
			return lxm_error_set(err, -ETIMEDOUT, 500,
					     "send the upgrade request: timed out");
	}
	if (c->closed)
		return lxm_error_set(err, -EPIPE, 500,
				     "send the upgrade request: the server closed the connection");
	k = read_head(c, buf, sizeof(buf), &len, &head);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "read the upgrade reply");
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return lxm_error_set(err, -EPROTO, 500, "malformed upgrade reply");
	if (status != 101)
		return upgrade_refused(client, status, buf, len, head, err);
	head_header(buf, head, "Sec-WebSocket-Accept", got, sizeof(got));
	if (!streq(got, accept))
		return lxm_error_set(err, -EPROTO, 500,
				     "wrong Sec-WebSocket-Accept in the upgrade reply");
	k = lxm_ws_new(LXM_WS_CLIENT, 0, &conn_ops, c, &c->ws);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "websocket");
	/* Bytes after the head are websocket frames already. */
	if (len > head && lxm_ws_feed(c->ws, (const uint8_t *)buf + head, len - head) < 0)
		c->closed = c->done = true;
	return 0;
}

/* ---- the terminal ---- */

void lxm_tty_restore(struct lxm_tty_state *t)
{
	if (t->raw) {
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &t->saved);
		t->raw = false;
	}
}

int lxm_tty_make_raw(struct lxm_tty_state *t)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO))
		return 0;
	if (tcgetattr(STDIN_FILENO, &t->saved) < 0)
		return -errno;
	raw = t->saved;
	cfmakeraw(&raw);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
		return -errno;
	t->raw = true;
	return 0;
}

void lxm_terminal_size(unsigned *ret_w, unsigned *ret_h)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
		*ret_w = ws.ws_col;
		*ret_h = ws.ws_row;
	}
}

/* ---- signals ---- */

/* The handler only writes the signal's number here; the loop reads it. */
static int signal_pipe[2] = { -1, -1 };
/* What lxm_signals_catch() changed, for lxm_signals_release(). */
static int caught[32];
static size_t n_caught;

static void on_signal(int sig)
{
	unsigned char b = (unsigned char)sig;
	int saved = errno;

	if (write(signal_pipe[1], &b, 1) < 0) {
		/* A full pipe already wakes the loop. */
	}
	errno = saved;
}

int lxm_signals_catch(const int *sigs, size_t n)
{
	struct sigaction sa = { .sa_handler = on_signal };

	if (n > ARRAY_SIZE(caught))
		return -E2BIG;
	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < n; i++) {
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
		caught[n_caught++] = sigs[i];
	}
	/* A closed stdout or socket is handled where it is written. */
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

void lxm_signals_release(void)
{
	for (size_t i = 0; i < n_caught; i++)
		signal(caught[i], SIG_DFL);
	n_caught = 0;
	signal(SIGPIPE, SIG_DFL);
	for (int i = 0; i < 2; i++)
		if (signal_pipe[i] >= 0) {
			close(signal_pipe[i]);
			signal_pipe[i] = -1;
		}
}

int lxm_ws_session_poll(struct lxm_ws_conn *c, int n, bool want_stdin, int timeout_ms, uint8_t *buf,
			size_t buf_size, const struct lxm_ws_session_ops *ops, void *userdata)
{
	struct pollfd p[2 + LXM_WS_SESSION_MAX];
	int idx[2 + LXM_WS_SESSION_MAX];
	size_t np = 0;

	if (n > LXM_WS_SESSION_MAX)
		return -E2BIG;
	p[np] = (struct pollfd){ .fd = signal_pipe[0], .events = POLLIN };
	idx[np++] = -2;
	if (want_stdin) {
		p[np] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
		idx[np++] = -1;
	}
	for (int i = 0; i < n; i++) {
		if (c[i].fd < 0 || (c[i].closed && c[i].out_len == 0))
			continue;
		p[np] = (struct pollfd){ .fd = c[i].fd,
					 .events = (short)((c[i].closed ? 0 : POLLIN) |
							   (c[i].out_len ? POLLOUT : 0)) };
		idx[np++] = i;
	}
	if (poll(p, (nfds_t)np, timeout_ms) < 0)
		return errno == EINTR ? 0 : -errno;
	for (size_t i = 0; i < np; i++) {
		if (!p[i].revents)
			continue;
		if (idx[i] == -2) {
			unsigned char sigs[64];
			ssize_t m = read(signal_pipe[0], sigs, sizeof(sigs));

			for (ssize_t j = 0; j < m; j++)
				ops->on_signal(userdata, sigs[j]);
		} else if (idx[i] == -1) {
			ssize_t m = read(STDIN_FILENO, buf, buf_size);

			if (m < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			/* A read error ends stdin as its end does. */
			ops->on_stdin(userdata, buf, m > 0 ? (size_t)m : 0);
		} else {
			struct lxm_ws_conn *conn = &c[idx[i]];

			if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
				lxm_ws_conn_read(conn);
			if (conn->out_len && !(conn->closed && conn->fd < 0))
				lxm_ws_conn_flush(conn);
		}
	}
	return 0;
}
