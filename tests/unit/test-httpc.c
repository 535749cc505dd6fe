/* Unit tests for lib/httpc.c against a real peer: a forked child serving a unix socket in a
 * temporary directory, answering with canned replies (and parsing the client's requests with
 * lxmd's own request parser, lib/http.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "http.h"
#include "httpc.h"
#include "tap.h"

/* ---- the peer: a child that accepts connections one after the other ---- */

struct peer;
typedef void (*conn_fn)(struct peer *p, int fd, int index);

struct peer {
	char dir[64];	/* the temporary directory */
	char path[128]; /* the socket in it */
	int lfd;	/* the listening socket */
	pid_t pid;	/* the child serving it */
	int notify[2];	/* child -> parent: one byte when a handler says so */
	int go[2];	/* parent -> child: one byte to let a handler go on */
};

static void peer_start(struct peer *p, int n_conns, conn_fn fn)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	strcpy(p->dir, "/tmp/lxm-test-httpc-XXXXXX");
	if (!mkdtemp(p->dir))
		abort();
	snprintf(p->path, sizeof(p->path), "%s/s", p->dir);
	strcpy(sa.sun_path, p->path);
	p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(p->lfd, 16) < 0 || pipe2(p->notify, O_CLOEXEC) < 0 ||
	    pipe2(p->go, O_CLOEXEC) < 0)
		abort();
	p->pid = fork();
	if (p->pid < 0)
		abort();
	if (p->pid == 0) {
		/* A stuck test ends instead of hanging the suite. */
		alarm(20);
		close(p->notify[0]);
		close(p->go[1]);
		for (int i = 0; i < n_conns; i++) {
			int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd < 0)
				_exit(90);
			fn(p, fd, i);
			close(fd);
		}
		_exit(0);
	}
	/* Only the child holds the listener: a connection that it will never accept is reset
	 * when it exits, instead of waiting in the backlog forever. */
	close(p->lfd);
	close(p->notify[1]);
	close(p->go[0]);
}

/* Waits for the child; returns its exit status (0: the peer saw what it expected). */
static int peer_wait(struct peer *p)
{
	int status = -1;

	close(p->notify[0]);
	close(p->go[1]);
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	unlink(p->path);
	rmdir(p->dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

static void child_notify(struct peer *p)
{
	if (write(p->notify[1], "x", 1) != 1)
		_exit(91);
}

static void parent_wait_notify(struct peer *p)
{
	char c;

	if (read(p->notify[0], &c, 1) != 1)
		abort();
}

static void child_wait_go(struct peer *p)
{
	char c;

	if (read(p->go[0], &c, 1) != 1)
		_exit(92);
}

/* A child that is gone already (killed by its alarm) shows in peer_wait(). */
static void parent_go(struct peer *p)
{
	ssize_t n = write(p->go[1], "x", 1);

	(void)n;
}

static void put(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(93);
		s += n;
		len -= (size_t)n;
	}
}

/* One served connection: requests are parsed by lxmd's parser, with what was read after one
 * request kept for the next. */
struct sconn {
	int fd;			    /* the connection */
	struct lxm_http_parser *hp; /* its request parser */
	char buf[65536];	    /* bytes read */
	size_t off, len;	    /* the unparsed part of buf */
	bool new_conn;		    /* a new connection came while waiting for a request */
};

static void sconn_init(struct sconn *c, int fd)
{
	struct lxm_http_limits limits = LXM_HTTP_LIMITS_DEFAULT;

	memset(c, 0, sizeof(*c));
	c->fd = fd;
	if (lxm_http_parser_new(&limits, NULL, NULL, &c->hp) < 0)
		_exit(94);
}

/* The next complete request, or NULL at EOF, on a malformed request, after 5 s, or when a new
 * connection arrives on lfd (when lfd >= 0) first. */
static struct lxm_http_request *next_request(struct sconn *c, int lfd)
{
	enum lxm_http_feed_result res;
	struct pollfd p[2] = { { .fd = c->fd, .events = POLLIN }, { .fd = lfd, .events = POLLIN } };
	ssize_t n;

	for (;;) {
		if (c->off < c->len) {
			n = lxm_http_parser_feed(c->hp, c->buf + c->off, c->len - c->off, &res);
			if (n < 0)
				return NULL;
			c->off += (size_t)n;
			if (res == LXM_HTTP_FEED_REQUEST)
				return lxm_http_parser_take(c->hp);
			continue;
		}
		if (poll(p, lfd >= 0 ? 2 : 1, 5000) <= 0)
			return NULL;
		if (lfd >= 0 && (p[1].revents & POLLIN)) {
			c->new_conn = true;
			return NULL;
		}
		n = read(c->fd, c->buf, sizeof(c->buf));
		if (n <= 0)
			return NULL;
		c->off = 0;
		c->len = (size_t)n;
	}
}

static void sconn_done(struct sconn *c)
{
	lxm_http_parser_free(c->hp);
}

/* ---- the client side ---- */

/* What a request received. */
struct got {
	int headers_calls;	   /* on_headers calls */
	int status_at_headers;	   /* the status on_headers saw */
	char headers[1024];	   /* "name=value;" for each header */
	struct lxm_httpc_buf body; /* the body */
};

static int got_header(const char *name, const char *value, void *ud)
{
	struct got *g = ud;
	size_t n = strlen(g->headers);

	snprintf(g->headers + n, sizeof(g->headers) - n, "%s=%s;", name, value);
	return 0;
}

static int got_headers(int status, void *ud)
{
	struct got *g = ud;

	g->headers_calls++;
	g->status_at_headers = status;
	return 0;
}

static int got_body(const char *data, size_t len, void *ud)
{
	return lxm_httpc_buf_append(data, len, &((struct got *)ud)->body);
}

static struct lxm_httpc_request get_req(const char *target, struct got *g)
{
	g->body.max = 1 << 20;
	return (struct lxm_httpc_request){
		.method = "GET",
		.target = target,
		.on_header = got_header,
		.on_headers = got_headers,
		.on_body = got_body,
		.ud = g,
	};
}

static void got_done(struct got *g)
{
	lxm_httpc_buf_done(&g->body);
}

/* A request body made up as it is read: byte i is (i * 7 + 3) & 0xff. */
struct source {
	uint64_t total; /* bytes to give */
	uint64_t given; /* bytes given so far */
};

static ssize_t source_read(char *buf, size_t len, void *ud)
{
	struct source *s = ud;
	size_t n = s->total - s->given < len ? (size_t)(s->total - s->given) : len;

	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(((s->given + i) * 7 + 3) & 0xff);
	s->given += n;
	return (ssize_t)n;
}

static uint64_t source_sum(uint64_t total)
{
	uint64_t sum = 0;

	for (uint64_t i = 0; i < total; i++)
		sum += (i * 7 + 3) & 0xff;
	return sum;
}

/* ---- handlers ---- */

/* ---- canned exchanges: one request, one reply ---- */

/* What the peer does with the one request of a canned exchange. */
struct canned {
	/* Checks the request: 0, or the peer's exit status for a mismatch. NULL: any request. */
	int (*check)(const struct lxm_http_request *req);
	/* The reply's pieces, sent 20 ms apart to cross the client's reads; NULL-terminated. An
	 * empty list closes the connection without a reply. */
	const char *reply[3];
};

/* The exchange conn_canned() serves: set before peer_start(), so the child has it too. */
static const struct canned *canned;

static void conn_canned(struct peer *p, int fd, int index)
{
	struct sconn c;
	struct lxm_http_request *req;
	int k;

	sconn_init(&c, fd);
	req = next_request(&c, -1);
	if (!req)
		_exit(1);
	k = canned->check ? canned->check(req) : 0;
	if (k)
		_exit(k);
	for (size_t i = 0; canned->reply[i]; i++) {
		if (i > 0)
			usleep(20000);
		put(fd, canned->reply[i]);
	}
	lxm_http_request_free(req);
	sconn_done(&c);
}

static struct lxm_httpc *client_new(const struct peer *p)
{
	struct lxm_httpc *h;

	if (lxm_httpc_new(p->path, &h) < 0)
		abort();
	return h;
}

/* Sends req once, on a new client, to a peer serving x. Returns the request's result, with the
 * peer's exit status (0: it saw what it expected) in *peer_status. */
static int run_canned(const struct canned *x, const struct lxm_httpc_request *req,
		      struct lxm_httpc_result *res, int *peer_status)
{
	struct lxm_httpc *h;
	struct peer p;
	int r;

	canned = x;
	peer_start(&p, 1, conn_canned);
	h = client_new(&p);
	r = lxm_httpc_request(h, req, res);
	lxm_httpc_free(h);
	*peer_status = peer_wait(&p);
	return r;
}

/* Checks the request line and headers of test_content_length(). */
static int check_content_length(const struct lxm_http_request *req)
{
	const char *ua = lxm_http_request_header(req, "User-Agent"),
		   *x = lxm_http_request_header(req, "X-Extra");

	if (req->method != HTTP_GET || strcmp(req->url, "/1.0?recursion=1") != 0)
		return 1;
	if (!lxm_http_request_header(req, "Host") || !ua || strncmp(ua, "lxm/", 4) != 0 || !x ||
	    strcmp(x, "yes") != 0 || req->content_length != -1 || req->chunked)
		return 2;
	return 0;
}

/* Answers with Content-Length and keep-alive. */
static void test_content_length(void)
{
	static const char *const extra[] = { "X-Extra: yes", NULL };
	static const struct canned x = {
		.check = check_content_length,
		.reply = { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test:  a b  \r\nX-Empty:\r\n"
			   "\r\nhello" },
	};
	struct got g = {};
	struct lxm_httpc_request req = get_req("/1.0?recursion=1", &g);
	struct lxm_httpc_result res;
	int peer, r;

	req.headers = extra;
	r = run_canned(&x, &req, &res, &peer);
	is_int(r, 0, "content-length: succeeds");
	is_int(res.status, 200, "content-length: status 200");
	is_int(res.fail, LXM_HTTPC_FAIL_NONE, "content-length: no failure");
	is_int(g.headers_calls, 1, "content-length: on_headers once");
	is_int(g.status_at_headers, 200, "content-length: on_headers sees 200");
	is_str(g.headers, "Content-Length=5;X-Test=a b;X-Empty=;", "content-length: headers");
	is_int(g.body.len, 5, "content-length: 5 bytes");
	is_str(g.body.data, "hello", "content-length: body");
	is_int(peer, 0, "content-length: the server saw the expected request");
	got_done(&g);
}

static void test_chunked(void)
{
	static const struct canned x = {
		.reply = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
			   "lo\r\n6\r\n world\r\n0\r\n\r\n" },
	};
	struct got g = {};
	struct lxm_httpc_request req = get_req("/x", &g);
	struct lxm_httpc_result res;
	int peer, r = run_canned(&x, &req, &res, &peer);

	is_int(r, 0, "chunked: succeeds");
	is_int(res.status, 200, "chunked: status 200");
	is_str(g.body.data, "hello world", "chunked: de-chunked body");
	is_int(peer, 0, "chunked: server done");
	got_done(&g);
}

static void test_close_delimited(void)
{
	static const struct canned x = {
		.reply = { "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nbye-", "bye" },
	};
	struct got g = {};
	struct lxm_httpc_request req = get_req("/x", &g);
	struct lxm_httpc_result res;
	int peer, r = run_canned(&x, &req, &res, &peer);

	is_int(r, 0, "close-delimited: succeeds");
	is_int(res.status, 404, "close-delimited: status 404");
	is_str(g.body.data, "bye-bye", "close-delimited: the body up to the close");
	is_int(peer, 0, "close-delimited: server done");
	got_done(&g);
}

static int check_ping(const struct lxm_http_request *req)
{
	return req->method != HTTP_POST || req->body_len != 4 || memcmp(req->body, "ping", 4) != 0;
}

static void test_continue(void)
{
	static const struct canned x = {
		.check = check_ping,
		.reply = { "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
			   "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok" },
	};
	struct got g = {};
	struct lxm_httpc_request req = get_req("/x", &g);
	struct lxm_httpc_result res;
	int peer, r;

	req.method = "POST";
	req.body = "ping";
	req.body_len = 4;
	r = run_canned(&x, &req, &res, &peer);
	is_int(r, 0, "100-continue: succeeds");
	is_int(res.status, 201, "100-continue: the final status");
	is_int(g.headers_calls, 1, "100-continue: on_headers for the final reply only");
	is_str(g.headers, "Content-Length=2;", "100-continue: no interim headers");
	is_str(g.body.data, "ok", "100-continue: body");
	is_int(peer, 0, "100-continue: the server got the body");
	got_done(&g);
}

static void test_not_http(void)
{
	static const struct canned x = { .reply = { "SSH-2.0-OpenSSH_9.2\r\n" } };
	struct got g = {};
	struct lxm_httpc_request req = get_req("/x", &g);
	struct lxm_httpc_result res;
	int peer, r = run_canned(&x, &req, &res, &peer);

	is_int(r, -EPROTO, "not HTTP: -EPROTO");
	is_int(res.fail, LXM_HTTPC_FAIL_NOT_HTTP, "not HTTP: reported as such");
	is_str(res.detail, "not HTTP", "not HTTP: detail");
	is_int(g.headers_calls, 0, "not HTTP: no headers");
	is_int(peer, 0, "not HTTP: server done");
	got_done(&g);
}

static void test_no_reply(void)
{
	static const struct canned x = {};
	struct got g = {};
	struct lxm_httpc_request req = get_req("/x", &g);
	struct lxm_httpc_result res;
	int peer, r = run_canned(&x, &req, &res, &peer);

	ok(r < 0, "no reply: fails");
	is_int(res.fail, LXM_HTTPC_FAIL_NO_REPLY, "no reply: reported as such");
	is_int(res.status, 0, "no reply: no status");
	is_int(peer, 0, "no reply: server done");
	got_done(&g);
}

static void test_truncated(void)
{
	static const struct canned x = {
		.reply = { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc" },
	};
	struct got g = {};
	struct lxm_httpc_request req = get_req("/x", &g);
	struct lxm_httpc_result res;
	int peer, r = run_canned(&x, &req, &res, &peer);

	ok(r < 0, "truncated: fails");
	is_int(res.fail, LXM_HTTPC_FAIL_TRUNCATED, "truncated: reported as such");
	is_str(g.body.data, "abc", "truncated: what came was delivered");
	is_int(peer, 0, "truncated: server done");
	got_done(&g);
}

static void test_cap(void)
{
	static const struct canned x = {
		.reply = { "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789" },
	};
	struct got g = {};
	struct lxm_httpc_request req = get_req("/x", &g);
	struct lxm_httpc_result res;
	int peer, r;

	g.body.max = 8;
	r = run_canned(&x, &req, &res, &peer);
	is_int(r, -EFBIG, "cap: a body over the cap fails with -EFBIG");
	is_int(res.fail, LXM_HTTPC_FAIL_CALLBACK, "cap: as a callback failure");
	ok(g.body.len <= 8, "cap: no more than the cap kept");
	is_int(peer, 0, "cap: server done");
	got_done(&g);
}

/* ---- requests on a kept connection ---- */

#define REPLY_FIRST  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
#define REPLY_SECOND "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"
/* Two requests on one connection; a second connection fails the test. */
static void conn_keep_alive(struct peer *p, int fd, int index)
{
	struct sconn c;
	struct lxm_http_request *req;

	sconn_init(&c, fd);
	for (int i = 0; i < 2; i++) {
		req = next_request(&c, p->lfd);
		if (!req)
			_exit(c.new_conn ? 2 : 1);
		put(fd, i == 0 ? REPLY_FIRST : REPLY_SECOND);
		lxm_http_request_free(req);
	}
	/* The client closes when it is freed. */
	if (next_request(&c, -1))
		_exit(3);
	sconn_done(&c);
}

static void test_keep_alive(void)
{
	struct peer p;
	struct got g1 = {}, g2 = {};
	struct lxm_httpc_request r1 = get_req("/one", &g1), r2 = get_req("/two", &g2);
	struct lxm_httpc_result res;
	struct lxm_httpc *h;

	peer_start(&p, 1, conn_keep_alive);
	h = client_new(&p);
	is_int(lxm_httpc_request(h, &r1, &res), 0, "keep-alive: first request");
	is_str(g1.body.data, "first", "keep-alive: first body");
	is_int(lxm_httpc_request(h, &r2, &res), 0, "keep-alive: second request");
	is_str(g2.body.data, "second", "keep-alive: second body");
	lxm_httpc_free(h);
	is_int(peer_wait(&p), 0, "keep-alive: both requests came on one connection");
	got_done(&g1);
	got_done(&g2);
}

/* Connection 0 answers once, then closes while idle; connection 1 answers the second request. */
static void conn_idle_close(struct peer *p, int fd, int index)
{
	struct sconn c;
	struct lxm_http_request *req;

	sconn_init(&c, fd);
	req = next_request(&c, -1);
	if (!req)
		_exit(1);
	put(fd, index == 0 ? REPLY_FIRST : REPLY_SECOND);
	lxm_http_request_free(req);
	sconn_done(&c);
	if (index == 0) {
		shutdown(fd, SHUT_RDWR);
		child_notify(p);
	}
}

static void test_idle_close(void)
{
	struct peer p;
	struct got g1 = {}, g2 = {};
	struct lxm_httpc_request r1 = get_req("/one", &g1), r2 = get_req("/two", &g2);
	struct lxm_httpc_result res;
	struct lxm_httpc *h;

	peer_start(&p, 2, conn_idle_close);
	h = client_new(&p);
	is_int(lxm_httpc_request(h, &r1, &res), 0, "idle close: first request");
	parent_wait_notify(&p);
	is_int(lxm_httpc_request(h, &r2, &res), 0,
	       "idle close: the second request goes on a new connection");
	is_int(res.status, 200, "idle close: second status");
	is_str(g2.body.data, "second", "idle close: second body");
	lxm_httpc_free(h);
	is_int(peer_wait(&p), 0, "idle close: server done");
	got_done(&g1);
	got_done(&g2);
}

/* Connection 0 answers once, then takes the second request and closes without a word: the
 * race of a server closing a kept connection as the request goes out. */
static void conn_close_on_second(struct peer *p, int fd, int index)
{
	struct sconn c;
	struct lxm_http_request *req;

	sconn_init(&c, fd);
	req = next_request(&c, -1);
	if (!req)
		_exit(1);
	if (index == 0) {
		put(fd, REPLY_FIRST);
		lxm_http_request_free(req);
		req = next_request(&c, -1);
		if (!req || strcmp(req->url, "/two") != 0)
			_exit(2);
	} else {
		if (strcmp(req->url, "/two") != 0)
			_exit(3);
		put(fd, REPLY_SECOND);
	}
	lxm_http_request_free(req);
	sconn_done(&c);
}

static void test_close_on_second(void)
{
	struct peer p;
	struct got g1 = {}, g2 = {};
	struct lxm_httpc_request r1 = get_req("/one", &g1), r2 = get_req("/two", &g2);
	struct lxm_httpc_result res;
	struct lxm_httpc *h;

	peer_start(&p, 2, conn_close_on_second);
	h = client_new(&p);
	is_int(lxm_httpc_request(h, &r1, &res), 0, "reconnect: first request");
	is_int(lxm_httpc_request(h, &r2, &res), 0,
	       "reconnect: a kept connection closed without a reply is retried once");
	is_str(g2.body.data, "second", "reconnect: second body from the new connection");
	lxm_httpc_free(h);
	is_int(peer_wait(&p), 0, "reconnect: the server saw the request twice");
	got_done(&g1);
	got_done(&g2);
}

/* Reads a whole streamed body and answers with its length and byte sum. */
static void conn_upload(struct peer *p, int fd, int index)
{
	struct sconn c;
	struct lxm_http_request *req;
	uint64_t sum = 0;
	char reply[256], body[64];

	sconn_init(&c, fd);
	req = next_request(&c, -1);
	if (!req || req->method != HTTP_PUT)
		_exit(1);
	for (size_t i = 0; i < req->body_len; i++)
		sum += (unsigned char)req->body[i];
	snprintf(body, sizeof(body), "%zu %" PRIu64 " %s", req->body_len, sum,
		 req->chunked		    ? "chunked"
		 : req->content_length >= 0 ? "length"
					    : "none");
	snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(body), body);
	put(fd, reply);
	lxm_http_request_free(req);
	sconn_done(&c);
}

/* A request that uploads from a source and keeps its reply. */
struct upload {
	struct source src; /* the body */
	struct got got;	   /* the reply */
};

static ssize_t upload_read(char *buf, size_t len, void *ud)
{
	return source_read(buf, len, &((struct upload *)ud)->src);
}

static int upload_body(const char *data, size_t len, void *ud)
{
	return got_body(data, len, &((struct upload *)ud)->got);
}

static struct lxm_httpc_request upload_req(struct upload *u, uint64_t total, bool chunked)
{
	u->src.total = total;
	u->got.body.max = 1 << 20;
	return (struct lxm_httpc_request){
		.method = "PUT",
		.target = "/up",
		.read = upload_read,
		.body_size = chunked ? -1 : (int64_t)total,
		.on_body = upload_body,
		.ud = u,
	};
}

static void test_upload(bool chunked)
{
	const uint64_t total = 1000003;
	const char *what = chunked ? "chunked upload" : "sized upload";
	struct upload u = {};
	struct lxm_httpc_request req = upload_req(&u, total, chunked);
	struct lxm_httpc_result res;
	struct lxm_httpc *h;
	struct peer p;
	char want[64];

	peer_start(&p, 1, conn_upload);
	h = client_new(&p);
	is_int(lxm_httpc_request(h, &req, &res), 0, what);
	is_int(res.status, 200, what);
	snprintf(want, sizeof(want), "%" PRIu64 " %" PRIu64 " %s", total, source_sum(total),
		 chunked ? "chunked" : "length");
	is_str(u.got.body.data, want, what);
	lxm_httpc_free(h);
	is_int(peer_wait(&p), 0, what);
	got_done(&u.got);
}

#define REFUSAL                                                                                    \
	"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"  \
	"too big!"

/* Refuses an upload after its head and stays, reading nothing more, until the parent says. */
static void conn_refuse_and_stay(struct peer *p, int fd, int index)
{
	char buf[512];

	if (read(fd, buf, sizeof(buf)) <= 0)
		_exit(1);
	put(fd, REFUSAL);
	child_wait_go(p);
}

/* Refuses an upload after its head and closes with the rest unread. */
static void conn_refuse_and_close(struct peer *p, int fd, int index)
{
	char buf[512];

	if (read(fd, buf, sizeof(buf)) <= 0)
		_exit(1);
	put(fd, REFUSAL);
}

static void test_early_refusal(bool close_at_once, bool chunked)
{
	const uint64_t total = 256ull << 20;
	char what[64];
	struct upload u = {};
	struct lxm_httpc_request req = upload_req(&u, total, chunked);
	struct lxm_httpc_result res;
	struct lxm_httpc *h;
	struct peer p;
	int r;

	snprintf(what, sizeof(what), "early refusal (%s, %s)", close_at_once ? "close" : "stay",
		 chunked ? "chunked" : "sized");
	peer_start(&p, 1, close_at_once ? conn_refuse_and_close : conn_refuse_and_stay);
	h = client_new(&p);
	r = lxm_httpc_request(h, &req, &res);
	if (!close_at_once)
		parent_go(&p);
	ok(r == 0, "%s: the reply is read (r=%d, fail=%d)", what, r, res.fail);
	ok(res.status == 413, "%s: status 413 (got %d)", what, res.status);
	ok(u.got.body.data && strcmp(u.got.body.data, "too big!") == 0, "%s: the reply's body",
	   what);
	ok(u.src.given < total / 4, "%s: the upload stopped early (%" PRIu64 " bytes read)", what,
	   u.src.given);
	lxm_httpc_free(h);
	ok(peer_wait(&p) == 0, "%s: server done", what);
	got_done(&u.got);
}

static void test_connect_errors(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/lxm-test-httpc-XXXXXX", path[128];
	struct got g = {};
	struct lxm_httpc_request req = get_req("/x", &g);
	struct lxm_httpc_result res;
	struct lxm_httpc *h;
	struct timespec t0, t1;
	int lfd, cfd, r;
	long ms;
	char longpath[200];

	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	is_int(lxm_httpc_new(longpath, &h), -ENAMETOOLONG, "connect: a path too long for sun_path");

	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/s", dir);
	if (lxm_httpc_new(path, &h) < 0)
		abort();
	r = lxm_httpc_request(h, &req, &res);
	is_int(r, -ENOENT, "connect: no socket: connect()'s ENOENT");
	is_int(res.fail, LXM_HTTPC_FAIL_CONNECT, "connect: no socket: a connect failure");

	/* Bound, not listening: refused. */
	strcpy(sa.sun_path, path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	r = lxm_httpc_request(h, &req, &res);
	is_int(r, -ECONNREFUSED, "connect: nobody listening: ECONNREFUSED");

	/* Listening with a full backlog and never accepting: a stuck server. */
	if (listen(lfd, 0) < 0)
		abort();
	cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	lxm_httpc_set_connect_timeout(h, 300);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = lxm_httpc_request(h, &req, &res);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	is_int(r, -ETIMEDOUT, "connect: stuck server: ETIMEDOUT");
	is_int(res.fail, LXM_HTTPC_FAIL_CONNECT_TIMEOUT, "connect: stuck server: a timeout");
	ok(ms >= 250 && ms < 5000, "connect: stuck server: waited the timeout (%ld ms)", ms);
	lxm_httpc_free(h);
	close(cfd);
	close(lfd);
	unlink(path);
	rmdir(dir);
	got_done(&g);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_content_length();
	test_chunked();
	test_close_delimited();
	test_continue();
	test_not_http();
	test_no_reply();
	test_truncated();
	test_cap();
	test_keep_alive();
	test_idle_close();
	test_close_on_second();
	test_upload(false);
	test_upload(true);
	test_early_refusal(false, false);
	test_early_refusal(false, true);
	test_early_refusal(true, false);
	test_early_refusal(true, true);
	test_connect_errors();
	return tap_done();
}
