/* A blocking HTTP/1.1 client over a unix socket or TLS; see httpc.h. The request line and headers
 * are written here; every byte of a reply goes through libhttp-parser (HTTP_RESPONSE mode). */
#include "config.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cleanup.h"
#include "httpc.h"
#include "tls-client.h"

/* A live lxmd accepts at once: a longer wait means a server that stopped accepting. */
#define CONNECT_TIMEOUT_MS 10000u

/* Bytes read from the socket at a time, and the largest piece of a streamed upload. */
#define IO_SIZE 65536

/* Room before a streamed piece for its chunk-size line ("ffffffff\r\n"). */
#define CHUNK_HEAD 18

/* A buffered body up to this size goes out in one write with the request's head. */
#define INLINE_BODY_MAX 65536

struct lxm_httpc {
	char *path;		     /* the server's unix socket, or NULL for TLS */
	char *host;		     /* the HTTPS server's host, or NULL for a unix socket */
	char *port;		     /* the HTTPS server's port */
	struct lxm_tlsc *tls;	     /* the TLS context (borrowed), or NULL */
	SSL *ssl;		     /* the kept connection's TLS, or NULL */
	int fd;			     /* the kept connection, -1 when there is none */
	unsigned connect_timeout_ms; /* how long connect() may wait for the server to accept */
	char rbuf[IO_SIZE];	     /* bytes received, before the parser sees them */
	char wbuf[CHUNK_HEAD + IO_SIZE + 2]; /* one piece of a streamed upload, with its framing */
};

/* One request and its reply, on one connection. */
struct exchange {
	struct lxm_httpc *h;		     /* whose connection */
	const struct lxm_httpc_request *req; /* what is sent, and the reply's callbacks */
	struct lxm_httpc_result *res;	     /* what happened */
	http_parser hp;			     /* the reply's parser; hp.data points here */
	int err;			     /* the first failure's -errno, or 0 */
	int cb_err;			     /* a reply callback's failure, or 0 */
	int send_err;	   /* -EPIPE/-ECONNRESET when the server stopped reading */
	bool got_bytes;	   /* a byte of a reply arrived */
	bool headers_done; /* the final reply's headers were delivered */
	bool complete;	   /* the final reply is complete */
	bool leftover;	   /* bytes came after the final reply */
	bool stop_upload;  /* the server answered or left: send no more */
	bool sent_all;	   /* the whole request went out */
	bool read_called;  /* req->read ran: the request cannot be sent again */
	char *field;	   /* the header name being received */
	size_t field_len;  /* bytes in field */
	char *value;	   /* the header value being received */
	size_t value_len;  /* bytes in value */
	bool in_value;	   /* the last header piece was a value */
};

int lxm_httpc_new(const char *path, struct lxm_httpc **ret)
{
	struct lxm_httpc *h;

	if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return -ENAMETOOLONG;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->path = strdup(path);
	if (!h->path) {
		free(h);
		return -ENOMEM;
	}
	h->fd = -1;
	h->connect_timeout_ms = CONNECT_TIMEOUT_MS;
	*ret = h;
	return 0;
}

int lxm_httpc_new_tls(const char *host, const char *port, struct lxm_tlsc *tls,
		      struct lxm_httpc **ret)
{
	struct lxm_httpc *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->host = strdup(host);
	h->port = strdup(port);
	if (!h->host || !h->port) {
		free(h->host);
		free(h->port);
		free(h);
		return -ENOMEM;
	}
	h->tls = tls;
	h->fd = -1;
	h->connect_timeout_ms = CONNECT_TIMEOUT_MS;
	*ret = h;
	return 0;
}

static void drop_connection(struct lxm_httpc *h)
{
	if (h->ssl)
		lxm_tlsc_close(h->ssl, h->fd);
	else if (h->fd >= 0)
		close(h->fd);
	h->ssl = NULL;
	h->fd = -1;
}

void lxm_httpc_free(struct lxm_httpc *h)
{
	if (!h)
		return;
	drop_connection(h);
	free(h->path);
	free(h->host);
	free(h->port);
	free(h);
}

void lxm_httpc_set_connect_timeout(struct lxm_httpc *h, unsigned timeout_ms)
{
	h->connect_timeout_ms = timeout_ms;
}

/* Records the first failure of x and returns its -errno. */
static int fail(struct exchange *x, enum lxm_httpc_fail what, int r, const char *detail)
{
	if (x->err == 0) {
		x->err = r < 0 ? r : -EIO;
		x->res->fail = what;
		x->res->detail = detail;
	}
	return x->err;
}

/* A unix socket's connect() never goes "in progress", so a non-blocking connect() cannot be
 * polled: it succeeds, fails, or, when the server's backlog is full (a server that stopped
 * accepting), fails at once with EAGAIN. A blocking connect() waits for room in the backlog for
 * at most the socket's send timeout, then fails with EAGAIN: that is the connect timeout. */
static int connect_unix(struct lxm_httpc *h, struct lxm_httpc_result *res)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = h->connect_timeout_ms / 1000,
			      .tv_usec = (h->connect_timeout_ms % 1000) * 1000 };
	_cleanup_close_ int fd = -1;
	int r;

	memcpy(sa.sun_path, h->path, strlen(h->path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		res->fail = LXM_HTTPC_FAIL_CONNECT;
		return -errno;
	}
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		res->fail =
			errno == EAGAIN ? LXM_HTTPC_FAIL_CONNECT_TIMEOUT : LXM_HTTPC_FAIL_CONNECT;
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	}
	/* Sends never time out: they wait on poll() for the server to read. */
	tv = (struct timeval){};
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		res->fail = LXM_HTTPC_FAIL_CONNECT;
		return -errno;
	}
	h->fd = TAKE_FD(fd);
	return 0;
}

static int connect_tls(struct lxm_httpc *h, struct lxm_httpc_result *res)
{
	enum lxm_tlsc_fail why;
	int r = lxm_tlsc_connect(h->tls, h->host, h->port, h->connect_timeout_ms, &h->fd, &h->ssl,
				 &why);

	if (r >= 0)
		return 0;
	switch (why) {
	case LXM_TLSC_FAIL_CONNECT_TIMEOUT:
		res->fail = LXM_HTTPC_FAIL_CONNECT_TIMEOUT;
		break;
	case LXM_TLSC_FAIL_HANDSHAKE:
		res->fail = LXM_HTTPC_FAIL_TLS;
		res->detail = h->tls->detail;
		break;
	case LXM_TLSC_FAIL_PIN:
		res->fail = LXM_HTTPC_FAIL_PIN;
		res->detail = h->tls->detail;
		break;
	default:
		res->fail = LXM_HTTPC_FAIL_CONNECT;
		break;
	}
	return r;
}

/* ---- I/O, plain or through TLS ---- */

/* Like recv(): bytes, 0 at the end, or -1 with errno (EAGAIN when dontwait and nothing came). */
static ssize_t io_recv(struct lxm_httpc *h, void *buf, size_t len, bool dontwait)
{
	if (!h->ssl)
		return recv(h->fd, buf, len, dontwait ? MSG_DONTWAIT : 0);
	for (;;) {
		struct pollfd p = { .fd = h->fd };
		int n, e;

		ERR_clear_error();
		n = SSL_read(h->ssl, buf, (int)(len > INT_MAX ? INT_MAX : len));
		if (n > 0)
			return n;
		e = SSL_get_error(h->ssl, n);
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (dontwait) {
				errno = EAGAIN;
				return -1;
			}
			p.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				return -1;
			continue;
		}
		/* A peer that closed without close_notify: the end, as for a plain socket. */
		if (e == SSL_ERROR_SYSCALL && (errno == 0 || errno == ECONNRESET)) {
			ERR_clear_error();
			return 0;
		}
		ERR_clear_error();
		errno = e == SSL_ERROR_SYSCALL ? errno : EPROTO;
		return -1;
	}
}

/* Like send() with MSG_DONTWAIT | MSG_NOSIGNAL. */
static ssize_t io_send(struct lxm_httpc *h, const void *data, size_t len)
{
	int n, e;

	if (!h->ssl)
		return send(h->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	ERR_clear_error();
	n = SSL_write(h->ssl, data, (int)(len > INT_MAX ? INT_MAX : len));
	if (n > 0)
		return n;
	e = SSL_get_error(h->ssl, n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	if (e != SSL_ERROR_SYSCALL || errno == 0)
		errno = e == SSL_ERROR_SYSCALL ? EPIPE : EPROTO;
	ERR_clear_error();
	return -1;
}

/* Whether the server closed the kept connection while it was idle (or sent something nobody
 * asked for): either way the connection cannot carry a request. */
static bool idle_connection_gone(struct lxm_httpc *h)
{
	struct pollfd p = { .fd = h->fd, .events = POLLIN };
	char c;
	int n;

	if (poll(&p, 1, 0) == 0)
		return false;
	if (!h->ssl)
		return true;
	/* TLS 1.3 servers send session tickets after the handshake: records that carry no
	 * data. Only data or the end of the connection mean it is gone. */
	ERR_clear_error();
	n = SSL_peek(h->ssl, &c, 1);
	if (n <= 0 && SSL_get_error(h->ssl, n) == SSL_ERROR_WANT_READ) {
		ERR_clear_error();
		return false;
	}
	ERR_clear_error();
	return true;
}

/* ---- the reply, through http_parser ---- */

static int append(char **s, size_t *len, const char *at, size_t n)
{
	char *grown = realloc(*s, *len + n + 1);

	if (!grown)
		return -ENOMEM;
	memcpy(grown + *len, at, n);
	*len += n;
	grown[*len] = '\0';
	*s = grown;
	return 0;
}

static struct exchange *from_hp(http_parser *hp)
{
	return hp->data;
}

/* A header is complete: hands it on when it belongs to the final reply. */
static int commit_header(struct exchange *x)
{
	const char *v = x->value ? x->value : "";
	int r = 0;

	if (!x->field_len)
		return 0;
	while (*v == ' ' || *v == '\t')
		v++;
	while (x->value_len &&
	       (x->value[x->value_len - 1] == ' ' || x->value[x->value_len - 1] == '\t'))
		x->value[--x->value_len] = '\0';
	if (x->hp.status_code >= 200 && x->req->on_header)
		r = x->req->on_header(x->field, v, x->req->ud);
	x->field_len = x->value_len = 0;
	if (x->field)
		x->field[0] = '\0';
	if (x->value)
		x->value[0] = '\0';
	x->in_value = false;
	if (r < 0) {
		x->cb_err = r;
		return -1;
	}
	return 0;
}

static int on_message_begin(http_parser *hp)
{
	struct exchange *x = from_hp(hp);

	x->field_len = x->value_len = 0;
	x->in_value = false;
	return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	struct exchange *x = from_hp(hp);

	if (x->in_value && commit_header(x) < 0)
		return -1;
	if (append(&x->field, &x->field_len, at, len) < 0) {
		x->cb_err = -ENOMEM;
		return -1;
	}
	return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	struct exchange *x = from_hp(hp);

	x->in_value = true;
	if (append(&x->value, &x->value_len, at, len) < 0) {
		x->cb_err = -ENOMEM;
		return -1;
	}
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	struct exchange *x = from_hp(hp);
	int r;

	if (commit_header(x) < 0)
		return -1;
	/* An interim reply ("100 Continue"): the final one follows. */
	if (hp->status_code < 200)
		return 0;
	x->headers_done = true;
	x->res->status = hp->status_code;
	if (x->req->on_headers) {
		r = x->req->on_headers(hp->status_code, x->req->ud);
		if (r < 0) {
			x->cb_err = r;
			return -1;
		}
	}
	/* The reply to HEAD announces a body that does not follow. */
	return strcmp(x->req->method, "HEAD") == 0 ? 1 : 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct exchange *x = from_hp(hp);
	int r;

	if (hp->status_code < 200 || !x->req->on_body)
		return 0;
	r = x->req->on_body(at, len, x->req->ud);
	if (r < 0) {
		x->cb_err = r;
		return -1;
	}
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	struct exchange *x = from_hp(hp);

	if (hp->status_code < 200)
		return 0;
	x->complete = true;
	/* Whatever follows is not part of this exchange. */
	http_parser_pause(hp, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* Hands len bytes of the reply to the parser; len 0 says the server closed its side. */
static int feed(struct exchange *x, const char *data, size_t len)
{
	size_t done;
	enum http_errno e;

	if (x->complete) {
		x->leftover |= len > 0;
		return 0;
	}
	x->got_bytes |= len > 0;
	done = http_parser_execute(&x->hp, &settings, data, len);
	if (x->complete) {
		x->leftover |= done < len;
		return 0;
	}
	e = HTTP_PARSER_ERRNO(&x->hp);
	if (x->cb_err)
		return fail(x, LXM_HTTPC_FAIL_CALLBACK, x->cb_err, NULL);
	if (e == HPE_INVALID_EOF_STATE || (len == 0 && e == HPE_OK && x->headers_done))
		return fail(x, LXM_HTTPC_FAIL_TRUNCATED, -EPROTO,
			    "the connection closed in the middle of the reply");
	if (e != HPE_OK)
		return fail(x, LXM_HTTPC_FAIL_NOT_HTTP, -EPROTO,
			    x->hp.status_code ? http_errno_description(e) : "not HTTP");
	if (len == 0)
		return fail(x, LXM_HTTPC_FAIL_NO_REPLY, -ECONNRESET,
			    "the connection closed without a reply");
	return 0;
}

/* Reads what the server sent (waiting for it unless dontwait) and parses it. */
static int receive(struct exchange *x, bool dontwait)
{
	ssize_t n;

	do
		n = io_recv(x->h, x->h->rbuf, sizeof(x->h->rbuf), dontwait);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return 0;
	/* A unix socket reports ECONNRESET, after the data that did arrive, when the server
	 * closed without reading all we sent: for the reply, that is its end. */
	if (n < 0 && errno != ECONNRESET)
		return fail(x, LXM_HTTPC_FAIL_RECV, -errno, NULL);
	return feed(x, x->h->rbuf, n < 0 ? 0 : (size_t)n);
}

/* While the request goes out: an error reply means the server wants no more of it. */
static void check_early_reply(struct exchange *x)
{
	if (x->complete || x->err || (x->headers_done && x->res->status >= 300))
		x->stop_upload = true;
}

/* ---- the request ---- */

/* Sends len bytes, reading any reply that comes meanwhile. A server that stopped reading
 * (EPIPE, ECONNRESET) ends the upload without failing: its reply says why. */
static int send_all(struct exchange *x, const char *data, size_t len)
{
	struct pollfd p = { .fd = x->h->fd, .events = POLLIN | POLLOUT };
	ssize_t n;

	while (len > 0 && !x->stop_upload) {
		n = io_send(x->h, data, len);
		if (n >= 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET) {
			x->send_err = -errno;
			x->stop_upload = true;
			break;
		}
		if (errno != EAGAIN)
			return fail(x, LXM_HTTPC_FAIL_SEND, -errno, NULL);
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return fail(x, LXM_HTTPC_FAIL_SEND, -errno, NULL);
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			receive(x, true);
			check_early_reply(x);
		}
	}
	return x->err;
}

/* Streams the body from req->read(), chunked when its size is unknown. */
static int send_streamed(struct exchange *x)
{
	const struct lxm_httpc_request *req = x->req;
	bool chunked = req->body_size < 0;
	int64_t left = req->body_size;
	char *piece = x->h->wbuf + CHUNK_HEAD, head[CHUNK_HEAD + 1];
	struct pollfd p = { .fd = x->h->fd, .events = POLLIN };
	size_t want, hlen;
	ssize_t n;
	int r;

	while (!x->stop_upload && (chunked || left > 0)) {
		want = chunked || left > IO_SIZE ? IO_SIZE : (size_t)left;
		x->read_called = true;
		n = req->read(piece, want, req->ud);
		if (n < 0)
			return fail(x, LXM_HTTPC_FAIL_READ, (int)n, NULL);
		if ((size_t)n > want)
			return fail(x, LXM_HTTPC_FAIL_READ, -EINVAL, "the body's reader overran");
		if (n == 0 && !chunked)
			return fail(x, LXM_HTTPC_FAIL_READ, -EIO,
				    "the body ended before its announced length");
		if (n == 0)
			break;
		if (chunked) {
			hlen = (size_t)snprintf(head, sizeof(head), "%zx\r\n", (size_t)n);
			memcpy(piece - hlen, head, hlen);
			memcpy(piece + n, "\r\n", 2);
			r = send_all(x, piece - hlen, hlen + (size_t)n + 2);
		} else {
			left -= n;
			r = send_all(x, piece, (size_t)n);
		}
		if (r < 0)
			return r;
		/* A server that refuses the upload answers before it ends: look, without
		 * waiting, so that a refused upload stops early. */
		if (!x->stop_upload && poll(&p, 1, 0) > 0) {
			receive(x, true);
			check_early_reply(x);
		}
	}
	if (chunked && !x->stop_upload)
		return send_all(x, "0\r\n\r\n", 5);
	return x->err;
}

/* The request line and headers, and a small buffered body with them. */
static int format_head(const struct lxm_httpc_request *req, bool inline_body, char **ret,
		       size_t *ret_len)
{
	_cleanup_free_ char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	if (!f)
		return -ENOMEM;
	fprintf(f, "%s %s HTTP/1.1\r\nHost: lxm\r\nUser-Agent: lxm/" PACKAGE_VERSION "\r\n",
		req->method, req->target);
	for (size_t i = 0; req->headers && req->headers[i]; i++)
		fprintf(f, "%s\r\n", req->headers[i]);
	if (req->read && req->body_size < 0)
		fputs("Transfer-Encoding: chunked\r\n", f);
	else if (req->read)
		fprintf(f, "Content-Length: %" PRId64 "\r\n", req->body_size);
	else if (req->body)
		fprintf(f, "Content-Length: %zu\r\n", req->body_len);
	fputs("\r\n", f);
	if (inline_body)
		fwrite(req->body, 1, req->body_len, f);
	if (fclose(f) != 0 || !s)
		return -ENOMEM;
	*ret = TAKE_PTR(s);
	*ret_len = len;
	return 0;
}

static int exchange_run(struct exchange *x, const char *head, size_t head_len, bool inline_body)
{
	const struct lxm_httpc_request *req = x->req;
	int r;

	r = send_all(x, head, head_len);
	if (r >= 0 && !x->stop_upload && req->read)
		r = send_streamed(x);
	else if (r >= 0 && !x->stop_upload && req->body && !inline_body)
		r = send_all(x, req->body, req->body_len);
	if (r < 0)
		return r;
	x->sent_all = !x->stop_upload;
	while (!x->complete) {
		r = receive(x, false);
		if (r < 0) {
			/* The server stopped reading and left without a word: the send failed. */
			if (x->send_err && x->res->fail == LXM_HTTPC_FAIL_NO_REPLY) {
				x->res->fail = LXM_HTTPC_FAIL_SEND;
				x->res->detail = NULL;
				x->err = x->send_err;
			}
			return x->err;
		}
	}
	return 0;
}

int lxm_httpc_request(struct lxm_httpc *h, const struct lxm_httpc_request *req,
		      struct lxm_httpc_result *res)
{
	bool inline_body = !req->read && req->body && req->body_len <= INLINE_BODY_MAX;
	_cleanup_free_ char *head = NULL;
	size_t head_len;
	int r;

	*res = (struct lxm_httpc_result){};
	r = format_head(req, inline_body, &head, &head_len);
	if (r < 0) {
		res->fail = LXM_HTTPC_FAIL_SEND;
		return r;
	}
	for (int attempt = 0;; attempt++) {
		struct exchange x = { .h = h, .req = req, .res = res };
		bool reused = h->fd >= 0, keep;

		if (reused && idle_connection_gone(h)) {
			drop_connection(h);
			reused = false;
		}
		if (h->fd < 0) {
			r = h->tls ? connect_tls(h, res) : connect_unix(h, res);
			if (r < 0)
				return r;
		}
		http_parser_init(&x.hp, HTTP_RESPONSE);
		x.hp.data = &x;
		r = exchange_run(&x, head, head_len, inline_body);
		keep = r >= 0 && x.sent_all && !x.leftover && http_should_keep_alive(&x.hp);
		free(x.field);
		free(x.value);
		if (!keep)
			drop_connection(h);
		/* A kept connection that the server closed as the request went out: once more on
		 * a new one, when nothing of the request's body was consumed and no reply came. */
		if (r < 0 && reused && attempt == 0 && !x.got_bytes && !x.read_called &&
		    (res->fail == LXM_HTTPC_FAIL_SEND || res->fail == LXM_HTTPC_FAIL_NO_REPLY)) {
			*res = (struct lxm_httpc_result){};
			continue;
		}
		return r;
	}
}

/* ---- bodies kept in memory ---- */

int lxm_httpc_buf_append(const char *data, size_t len, void *ud)
{
	struct lxm_httpc_buf *b = ud;
	char *grown;

	if (len > b->max - b->len)
		return -EFBIG;
	grown = realloc(b->data, b->len + len + 1);
	if (!grown)
		return -ENOMEM;
	memcpy(grown + b->len, data, len);
	b->len += len;
	grown[b->len] = '\0';
	b->data = grown;
	return 0;
}

void lxm_httpc_buf_done(struct lxm_httpc_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

int lxm_httpc_keep_header(char **field, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}
