/* Unit tests for lib/http.c: request parsing in any split, pipelining, limits, body modes,
 * upgrades, and the small helpers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "http.h"
#include "tap.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_http_parser *, lxm_http_parser_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_http_request *, lxm_http_request_free)
#define _cleanup_parser_  _cleanup_(lxm_http_parser_freep)
#define _cleanup_request_ _cleanup_(lxm_http_request_freep)

/* What feeding a buffer in pieces produced. */
struct fed {
	struct lxm_http_request *req;	  /* the first complete request, or NULL */
	enum lxm_http_feed_result result; /* of the last feed */
	size_t consumed;		  /* bytes the parser took */
	int err;			  /* negative errno of a failed feed, or -1000 for misuse */
};

/* Feeds data in pieces of step bytes until a request is complete or feeding fails. */
static struct fed feed_split(struct lxm_http_parser *p, const char *data, size_t len, size_t step)
{
	struct fed f = { 0 };

	while (f.consumed < len) {
		size_t n = len - f.consumed < step ? len - f.consumed : step;
		ssize_t r = lxm_http_parser_feed(p, data + f.consumed, n, &f.result);

		if (r < 0) {
			f.err = (int)r;
			break;
		}
		f.consumed += (size_t)r;
		if (f.result != LXM_HTTP_FEED_MORE) {
			f.req = lxm_http_parser_take(p);
			break;
		}
		if ((size_t)r != n) {
			f.err = -1000; /* MORE must mean everything was consumed */
			break;
		}
	}
	return f;
}

static struct lxm_http_parser *parser_new(const struct lxm_http_limits *limits,
					  const struct lxm_http_parser_ops *ops, void *userdata)
{
	struct lxm_http_parser *p = NULL;

	if (lxm_http_parser_new(limits, ops, userdata, &p) < 0)
		abort();
	return p;
}

static const char simple_get[] = "GET /1.0/instances?recursion=1&project=default HTTP/1.1\r\n"
				 "Host: lxd\r\n"
				 "User-Agent: LXD 5.0\r\n"
				 "X-Padded:   spaced value  \r\n"
				 "Accept: */*\r\n"
				 "\r\n";

static void test_simple_get(void)
{
	_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
	struct fed f = feed_split(p, simple_get, strlen(simple_get), SIZE_MAX);
	_cleanup_request_ struct lxm_http_request *req = f.req;

	ok(req, "simple GET: complete");
	if (!req)
		return;
	is_int(f.result, LXM_HTTP_FEED_REQUEST, "simple GET: result REQUEST");
	is_int(f.consumed, strlen(simple_get), "simple GET: all bytes consumed");
	is_int(req->method, HTTP_GET, "simple GET: method");
	is_str(req->url, "/1.0/instances?recursion=1&project=default", "simple GET: url");
	is_str(req->path, "/1.0/instances", "simple GET: path");
	is_str(req->query, "recursion=1&project=default", "simple GET: query");
	is_int(req->n_headers, 4, "simple GET: four headers");
	is_str(req->headers[0].name, "Host", "simple GET: first header name as spelled");
	is_str(lxm_http_request_header(req, "x-padded"), "spaced value",
	       "simple GET: value trimmed, name case-insensitive");
	is_str(lxm_http_request_header(req, "USER-AGENT"), "LXD 5.0",
	       "simple GET: upper-case lookup");
	ok(!lxm_http_request_header(req, "Content-Type"), "simple GET: absent header is NULL");
	is_int(req->http_major, 1, "simple GET: major");
	is_int(req->http_minor, 1, "simple GET: minor");
	ok(req->keep_alive, "simple GET: HTTP/1.1 keeps alive");
	ok(!req->upgrade, "simple GET: no upgrade");
	ok(!req->chunked, "simple GET: not chunked");
	is_int(req->content_length, -1, "simple GET: no Content-Length is -1");
	ok(!req->body && req->body_len == 0, "simple GET: no body");
	ok(!lxm_http_parser_current(p), "simple GET: no current request after take");
	ok(!lxm_http_parser_take(p), "simple GET: nothing to take twice");
}

/* Every split into two feeds, and byte by byte, gives the same request. */
static void test_splits(void)
{
	static const char post[] = "POST /1.0/instances/c%C3%A9/exec?project=a%26b HTTP/1.1\r\n"
				   "Host: lxd\r\n"
				   "Content-Type: application/json\r\n"
				   "Content-Length: 27\r\n"
				   "X-Long-Header-Name-For-Splitting: some longer value here\r\n"
				   "\r\n"
				   "{\"command\": [\"/bin/true\"]}\n";
	size_t len = strlen(post);
	int bad = 0;

	for (size_t cut = 0; cut <= len; cut++) {
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
		enum lxm_http_feed_result res;
		ssize_t r1 = lxm_http_parser_feed(p, post, cut, &res), r2;
		_cleanup_request_ struct lxm_http_request *req = NULL;

		if (r1 != (ssize_t)cut || (cut < len && res != LXM_HTTP_FEED_MORE)) {
			bad++;
			continue;
		}
		if (cut < len) {
			r2 = lxm_http_parser_feed(p, post + cut, len - cut, &res);
			if (r2 != (ssize_t)(len - cut)) {
				bad++;
				continue;
			}
		}
		req = lxm_http_parser_take(p);
		if (res != LXM_HTTP_FEED_REQUEST || !req ||
		    strcmp(req->path, "/1.0/instances/c\xc3\xa9/exec") != 0 ||
		    strcmp(req->query, "project=a%26b") != 0 || req->n_headers != 4 ||
		    strcmp(lxm_http_request_header(req, "x-long-header-name-for-splitting"),
			   "some longer value here") != 0 ||
		    req->body_len != 27 || memcmp(req->body, "{\"command\"", 10) != 0 ||
		    req->body[27] != '\0' || req->content_length != 27 || req->body_seen != 27)
			bad++;
	}
	is_int(bad, 0, "POST split at every position parses identically");

	{
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
		struct fed f = feed_split(p, post, len, 1);
		_cleanup_request_ struct lxm_http_request *req = f.req;

		ok(req, "POST byte by byte: complete");
		if (req) {
			is_int(f.consumed, len, "POST byte by byte: all consumed");
			is_str(req->url, "/1.0/instances/c%C3%A9/exec?project=a%26b",
			       "POST byte by byte: raw url");
			is_str(req->body, "{\"command\": [\"/bin/true\"]}\n",
			       "POST byte by byte: body");
			is_str(lxm_http_request_header(req, "content-type"), "application/json",
			       "POST byte by byte: header");
		}
	}
}

static const char chunked_post[] = "POST /1.0/images HTTP/1.1\r\n"
				   "Transfer-Encoding: chunked\r\n"
				   "\r\n"
				   "5\r\nhello\r\n"
				   "1A;ext=1\r\n abcdefghijklmnopqrstuvwxy\r\n"
				   "000\r\n"
				   "\r\n";

static void test_chunked(void)
{
	size_t len = strlen(chunked_post);
	int bad = 0;

	for (size_t step = 1; step <= len; step++) {
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
		struct fed f = feed_split(p, chunked_post, len, step);
		_cleanup_request_ struct lxm_http_request *req = f.req;

		if (!req || f.consumed != len || !req->chunked || req->content_length != -1 ||
		    !streq(req->body, "hello abcdefghijklmnopqrstuvwxy") || req->body_len != 31)
			bad++;
	}
	is_int(bad, 0, "chunked body in pieces of every size (chunk-size lines split too)");

	/* Trailers are read and dropped; they do not show up as headers. */
	{
		static const char trailer[] =
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"3\r\nabc\r\n0\r\nX-Trailer: yes\r\n\r\n";
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
		struct fed f = feed_split(p, trailer, strlen(trailer), 3);
		_cleanup_request_ struct lxm_http_request *req = f.req;

		ok(req && streq(req->body, "abc") && !lxm_http_request_header(req, "X-Trailer"),
		   "chunked trailers are consumed and dropped");
	}
}

static void test_pipelined(void)
{
	static const char two[] = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
				  "GET /b?c=d HTTP/1.1\r\nConnection: close\r\n\r\n"
				  "\r\nGET /c HTTP/1.1\r\n\r\n";
	_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
	size_t len = strlen(two), off = 0;
	enum lxm_http_feed_result res;
	ssize_t r;
	size_t first = strlen("POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz");
	size_t second = strlen("GET /b?c=d HTTP/1.1\r\nConnection: close\r\n\r\n");

	r = lxm_http_parser_feed(p, two, len, &res);
	is_int(r, first, "pipelined: stops after the first request");
	is_int(res, LXM_HTTP_FEED_REQUEST, "pipelined: first is complete");
	r = lxm_http_parser_feed(p, two + first, len - first, &res);
	is_int(r, 0, "pipelined: nothing parsed until the request is taken");
	is_int(res, LXM_HTTP_FEED_REQUEST, "pipelined: still REQUEST before take");
	{
		_cleanup_request_ struct lxm_http_request *req = lxm_http_parser_take(p);

		ok(req && streq(req->path, "/a") && streq(req->body, "xyz") && req->keep_alive,
		   "pipelined: first request and its body");
	}
	off = first;
	r = lxm_http_parser_feed(p, two + off, len - off, &res);
	is_int(r, second, "pipelined: second stops at its end");
	{
		_cleanup_request_ struct lxm_http_request *req = lxm_http_parser_take(p);

		ok(req && streq(req->path, "/b") && streq(req->query, "c=d") && !req->body &&
			   !req->keep_alive,
		   "pipelined: second request, Connection: close");
	}
	off += second;
	r = lxm_http_parser_feed(p, two + off, len - off, &res);
	is_int(r, len - off, "pipelined: third (after a stray CRLF) consumed");
	is_int(res, LXM_HTTP_FEED_REQUEST, "pipelined: third complete");
	{
		_cleanup_request_ struct lxm_http_request *req = lxm_http_parser_take(p);

		ok(req && streq(req->path, "/c"), "pipelined: third request");
	}
	r = lxm_http_parser_feed(p, "", 0, &res);
	ok(r == 0 && res == LXM_HTTP_FEED_MORE, "pipelined: empty feed after take is MORE");
}

static bool keep_alive_of(const char *text)
{
	_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
	struct fed f = feed_split(p, text, strlen(text), SIZE_MAX);
	_cleanup_request_ struct lxm_http_request *req = f.req;

	if (!req)
		abort();
	return req->keep_alive;
}

static void test_keep_alive(void)
{
	ok(keep_alive_of("GET / HTTP/1.1\r\n\r\n"), "keep-alive: HTTP/1.1 default");
	ok(!keep_alive_of("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
	   "keep-alive: HTTP/1.1 Connection: close");
	ok(!keep_alive_of("GET / HTTP/1.0\r\n\r\n"), "keep-alive: HTTP/1.0 default off");
	ok(keep_alive_of("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n"),
	   "keep-alive: HTTP/1.0 with Connection: keep-alive");
}

/* Feeds text to a parser with these limits, byte by byte when step is 1, and checks the failure. */
static void expect_failure(const struct lxm_http_limits *limits, const char *text, size_t len,
			   size_t step, int status, const char *what)
{
	_cleanup_parser_ struct lxm_http_parser *p = parser_new(limits, NULL, NULL);
	struct fed f = feed_split(p, text, len, step);
	enum lxm_http_feed_result res;

	lxm_http_request_free(f.req);
	ok(f.err < 0 && f.err != -1000, "%s: feed fails", what);
	is_int(lxm_http_parser_error_status(p), status, what);
	ok(lxm_http_parser_error_message(p) && strlen(lxm_http_parser_error_message(p)) > 5,
	   "%s: a message says why (%s)", what,
	   lxm_http_parser_error_message(p) ? lxm_http_parser_error_message(p) : "none");
	ok(lxm_http_parser_feed(p, "GET / HTTP/1.1\r\n\r\n", 18, &res) == f.err,
	   "%s: the parser stays failed", what);
}

static void test_limits(void)
{
	struct lxm_http_limits small = {
		.max_url = 32, .max_header_bytes = 256, .max_headers = 4, .max_body = 16
	};
	char buf[1024];
	int n;

	n = snprintf(buf, sizeof(buf), "GET /%s HTTP/1.1\r\n\r\n",
		     "0123456789012345678901234567890123456789");
	expect_failure(&small, buf, (size_t)n, SIZE_MAX, 414, "long URL (one feed)");
	expect_failure(&small, buf, (size_t)n, 1, 414, "long URL (byte by byte)");

	n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX-Big: %0300d\r\n\r\n", 0);
	expect_failure(&small, buf, (size_t)n, SIZE_MAX, 431, "header bytes (one feed)");
	expect_failure(&small, buf, (size_t)n, 7, 431, "header bytes (7-byte pieces)");

	/* An endless header must fail once the limit is reached, not when the headers end. */
	{
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(&small, NULL, NULL);
		enum lxm_http_feed_result res;
		ssize_t r = lxm_http_parser_feed(p, buf, 256, &res);

		ok(r < 0 && lxm_http_parser_error_status(p) == 431,
		   "header bytes: fails at the limit without waiting for the end");
	}

	n = snprintf(buf, sizeof(buf),
		     "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n");
	expect_failure(&small, buf, (size_t)n, SIZE_MAX, 431, "header count");
	{
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(&small, NULL, NULL);
		const char *four = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
		struct fed f = feed_split(p, four, strlen(four), 1);

		ok(f.req && f.req->n_headers == 4, "header count: exactly the limit is accepted");
		lxm_http_request_free(f.req);
	}
	{
		/* A head of exactly max_header_bytes is accepted, one more byte is not. */
		struct lxm_http_limits exact = small;
		const char *head = "GET / HTTP/1.1\r\nA: 1\r\n\r\n";
		_cleanup_parser_ struct lxm_http_parser *p = NULL;
		struct fed f;

		exact.max_header_bytes = strlen(head);
		p = parser_new(&exact, NULL, NULL);
		f = feed_split(p, head, strlen(head), SIZE_MAX);
		ok(f.req, "header bytes: a head of exactly the limit is accepted");
		lxm_http_request_free(f.req);
		exact.max_header_bytes--;
		expect_failure(&exact, head, strlen(head), 1, 431, "header bytes: limit minus one");
	}

	n = snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n");
	expect_failure(&small, buf, (size_t)n, SIZE_MAX, 413, "Content-Length over max_body");
	n = snprintf(buf, sizeof(buf),
		     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n"
		     "9\r\n123456789\r\n0\r\n\r\n");
	expect_failure(&small, buf, (size_t)n, 5, 413, "chunked body over max_body");
	{
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(&small, NULL, NULL);
		const char *sixteen =
			"POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789abcdef";
		struct fed f = feed_split(p, sixteen, strlen(sixteen), 3);

		ok(f.req && f.req->body_len == 16, "max_body: exactly the limit is accepted");
		lxm_http_request_free(f.req);
	}
}

static void test_malformed(void)
{
	static const char *bad[] = {
		"GET\r\n\r\n",
		"GET / HTTP/1.1 extra\r\n\r\n",
		"FROB / HTTP/1.1\r\n\r\n",
		"GET / HTTP/x.1\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
		"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"GET /a%00b HTTP/1.1\r\n\r\n",
		"GET /a%zzb HTTP/1.1\r\n\r\n",
		"GET /a%4 HTTP/1.1\r\n\r\n",
		"\x01GET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char what[64];

		snprintf(what, sizeof(what), "malformed request %zu is 400", i);
		expect_failure(NULL, bad[i], strlen(bad[i]), SIZE_MAX, 400, what);
	}
}

/* Counts and checks what a streamed body delivers. */
struct stream_state {
	enum lxm_http_body_mode mode; /* what on_headers answers */
	uint64_t bytes;		      /* bytes delivered to on_body */
	uint64_t pieces;	      /* on_body calls */
	int bad;		      /* bytes that were not the expected pattern */
	int reject_status;	      /* when non-zero, on_headers fails with it */
};

static int stream_on_headers(struct lxm_http_request *req, void *userdata)
{
	struct stream_state *s = userdata;

	if (s->reject_status == -1)
		return -EPERM;
	return s->mode;
}

static int stream_on_body(struct lxm_http_request *req, const char *data, size_t len,
			  void *userdata)
{
	struct stream_state *s = userdata;

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)data[i] != (unsigned char)((s->bytes + i) * 7 % 251))
			s->bad++;
	s->bytes += len;
	s->pieces++;
	return 0;
}

static void test_stream(void)
{
	const size_t total = 10 * 1024 * 1024, chunk = 8000;
	struct stream_state s = { .mode = LXM_HTTP_BODY_STREAM };
	struct lxm_http_parser_ops ops = { .on_headers = stream_on_headers,
					   .on_body = stream_on_body };
	_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, &ops, &s);
	_cleanup_free_ char *wire = NULL;
	size_t len = 0, off = 0, sent = 0;
	struct fed f;

	/* Builds the whole chunked body; the parser sees it in odd-sized pieces. */
	wire = malloc(total + total / chunk * 16 + 256);
	if (!wire)
		abort();
	len += (size_t)sprintf(wire, "PUT /1.0/instances/c1/files?path=/x HTTP/1.1\r\n"
				     "Transfer-Encoding: chunked\r\n\r\n");
	while (sent < total) {
		size_t n = total - sent < chunk ? total - sent : chunk;

		len += (size_t)sprintf(wire + len, "%zx\r\n", n);
		for (size_t i = 0; i < n; i++)
			wire[len + i] = (char)((sent + i) * 7 % 251);
		len += n;
		sent += n;
		memcpy(wire + len, "\r\n", 2);
		len += 2;
	}
	len += (size_t)sprintf(wire + len, "0\r\n\r\n");

	f = feed_split(p, wire + off, len - off, 65521);
	ok(f.req, "stream: 10 MiB chunked body complete");
	if (f.req) {
		is_int(f.consumed, len, "stream: everything consumed");
		ok(!f.req->body && f.req->body_len == 0, "stream: nothing buffered");
		is_int(f.req->body_seen, total, "stream: body_seen counts all bytes");
	}
	is_int(s.bytes, total, "stream: on_body got every byte");
	is_int(s.bad, 0, "stream: bytes arrive de-chunked and in order");
	ok(s.pieces > total / 65521, "stream: delivered in pieces (%llu)",
	   (unsigned long long)s.pieces);
	lxm_http_request_free(f.req);
}

/* A buffered body larger than what is allocated up front grows as it arrives. */
static void test_big_buffered(void)
{
	const size_t body = 1000 * 1000;
	_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
	_cleanup_free_ char *wire = malloc(body + 128);
	struct fed f;
	size_t bad = 0;
	int n;

	if (!wire)
		abort();
	n = sprintf(wire, "PUT /1.0/images/x HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", body);
	for (size_t i = 0; i < body; i++)
		wire[(size_t)n + i] = (char)('A' + i % 53);
	f = feed_split(p, wire, (size_t)n + body, 4093);
	ok(f.req && f.req->body_len == body && f.req->body[body] == '\0',
	   "buffered 1 MB body: complete and NUL-terminated");
	for (size_t i = 0; f.req && i < body; i++)
		bad += f.req->body[i] != (char)('A' + i % 53);
	is_int(bad, 0, "buffered 1 MB body: intact");
	lxm_http_request_free(f.req);
}

static void test_discard(void)
{
	struct stream_state s = { .mode = LXM_HTTP_BODY_DISCARD };
	struct lxm_http_parser_ops ops = { .on_headers = stream_on_headers,
					   .on_body = stream_on_body };
	struct lxm_http_limits limits = LXM_HTTP_LIMITS_DEFAULT;
	_cleanup_parser_ struct lxm_http_parser *p = NULL;
	_cleanup_free_ char *wire = NULL;
	size_t body = 100000;
	int n;
	struct fed f;

	/* Discarded bodies are not subject to max_body. */
	limits.max_body = 10;
	p = parser_new(&limits, &ops, &s);
	wire = malloc(body + 128);
	if (!wire)
		abort();
	n = sprintf(wire, "POST /refused HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", body);
	memset(wire + n, 'x', body);
	memcpy(wire + (size_t)n + body, "GET /next HTTP/1.1\r\n\r\n", 22);
	f = feed_split(p, wire, (size_t)n + body + 22, 4096);
	ok(f.req && !f.req->body && f.req->body_seen == body &&
		   f.req->content_length == (int64_t)body,
	   "discard: body read and dropped");
	is_int(s.bytes, 0, "discard: on_body not called");
	is_int(f.consumed, (size_t)n + body, "discard: stops at the end of the body");
	lxm_http_request_free(f.req);
	f = feed_split(p, wire + (size_t)n + body, 22, 4096);
	ok(f.req && streq(f.req->path, "/next"), "discard: next request follows");
	lxm_http_request_free(f.req);
}

static int reject_on_headers(struct lxm_http_request *req, void *userdata)
{
	struct lxm_http_parser *p = *(struct lxm_http_parser **)userdata;

	if (streq(req->path, "/forbidden"))
		return lxm_http_parser_fail(p, 403, "not for you");
	if (streq(req->path, "/refuse"))
		return -EPERM;
	ok(lxm_http_parser_current(p) == req, "on_headers: current() is the request");
	return LXM_HTTP_BODY_BUFFER;
}

static void test_reject(void)
{
	struct lxm_http_parser_ops ops = { .on_headers = reject_on_headers };
	struct lxm_http_parser *p = NULL;
	enum lxm_http_feed_result res;
	ssize_t r;

	if (lxm_http_parser_new(NULL, &ops, &p, &p) < 0)
		abort();
	r = lxm_http_parser_feed(p, "GET /forbidden HTTP/1.1\r\n\r\n", 27, &res);
	is_int(r, -EINVAL, "reject: fail() makes feed fail");
	is_int(lxm_http_parser_error_status(p), 403, "reject: status from fail()");
	is_str(lxm_http_parser_error_message(p), "not for you", "reject: message from fail()");
	lxm_http_parser_free(p);

	if (lxm_http_parser_new(NULL, &ops, &p, &p) < 0)
		abort();
	r = lxm_http_parser_feed(p, "GET /refuse HTTP/1.1\r\n\r\n", 24, &res);
	is_int(r, -EPERM, "reject: on_headers errno is returned");
	is_int(lxm_http_parser_error_status(p), 400, "reject: default status 400");
	lxm_http_parser_free(p);

	if (lxm_http_parser_new(NULL, &ops, &p, &p) < 0)
		abort();
	r = lxm_http_parser_feed(p, "GET /fine HTTP/1.1\r\n\r\n", 22, &res);
	is_int(r, 22, "reject: accepted request parses");
	is_int(lxm_http_parser_error_status(p), 0, "reject: no error status");
	ok(!lxm_http_parser_error_message(p), "reject: no error message");
	lxm_http_request_free(lxm_http_parser_take(p));
	lxm_http_parser_free(p);
}

static void test_upgrade(void)
{
	static const char head[] = "GET /1.0/operations/abc/websocket?secret=s3 HTTP/1.1\r\n"
				   "Host: lxd\r\n"
				   "Upgrade: websocket\r\n"
				   "Connection: Upgrade\r\n"
				   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				   "Sec-WebSocket-Version: 13\r\n"
				   "\r\n";
	static const char frame[] = "\x81\x85\x01\x02\x03\x04iGohn";
	char wire[sizeof(head) + sizeof(frame)];
	size_t hlen = strlen(head), len = hlen + sizeof(frame) - 1;

	memcpy(wire, head, hlen);
	memcpy(wire + hlen, frame, sizeof(frame) - 1);
	for (size_t step = 1; step <= len; step += step < 8 ? 1 : 37) {
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
		struct fed f = feed_split(p, wire, len, step);
		_cleanup_request_ struct lxm_http_request *req = f.req;
		char what[64];

		snprintf(what, sizeof(what), "upgrade in %zu-byte pieces", step);
		ok(req && f.result == LXM_HTTP_FEED_UPGRADE && f.consumed == hlen && req->upgrade &&
			   streq(req->path, "/1.0/operations/abc/websocket") &&
			   streq(req->query, "secret=s3"),
		   "%s: stops after the headers, frame bytes left over", what);
	}
}

/* CONNECT is an upgrade whose declared body libhttp-parser skips: no body may be left. */
static void test_connect(void)
{
	static const char head[] = "CONNECT lxd:8443 HTTP/1.1\r\nContent-Length: 2\r\n\r\n";
	_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
	struct fed f = feed_split(p, head, strlen(head), SIZE_MAX);
	_cleanup_request_ struct lxm_http_request *req = f.req;

	ok(req && f.result == LXM_HTTP_FEED_UPGRADE && req->method == HTTP_CONNECT,
	   "CONNECT: an upgrade");
	ok(req && !req->body && req->body_len == 0 && req->content_length == 2,
	   "CONNECT: the declared body is not read and nothing is left allocated");
}

static void test_url_decode(void)
{
	char *s = NULL;

	ok(lxm_http_url_decode("a%20b%2Fc", 9, false, &s) == 0 && streq(s, "a b/c"),
	   "url_decode: escapes");
	free(s);
	ok(lxm_http_url_decode("a+b", 3, false, &s) == 0 && streq(s, "a+b"),
	   "url_decode: + kept in paths");
	free(s);
	ok(lxm_http_url_decode("a+b%2b", 6, true, &s) == 0 && streq(s, "a b+"),
	   "url_decode: + is a space in queries");
	free(s);
	ok(lxm_http_url_decode("%e2%82%AC", 9, false, &s) == 0 && streq(s, "\xe2\x82\xac"),
	   "url_decode: mixed-case hex");
	free(s);
	ok(lxm_http_url_decode("abcdef", 3, false, &s) == 0 && streq(s, "abc"),
	   "url_decode: honours len");
	free(s);
	ok(lxm_http_url_decode("", 0, false, &s) == 0 && streq(s, ""), "url_decode: empty");
	free(s);
	s = NULL;
	is_int(lxm_http_url_decode("%", 1, false, &s), -EINVAL, "url_decode: lone %");
	is_int(lxm_http_url_decode("ab%4", 4, false, &s), -EINVAL, "url_decode: truncated escape");
	is_int(lxm_http_url_decode("%4g", 3, false, &s), -EINVAL, "url_decode: bad hex digit");
	is_int(lxm_http_url_decode("%zz", 3, false, &s), -EINVAL, "url_decode: not hex");
	is_int(lxm_http_url_decode("%41%2", 5, false, &s), -EINVAL,
	       "url_decode: bad escape at end");
	is_int(lxm_http_url_decode("a%00b", 5, false, &s), -EINVAL, "url_decode: %00 refused");
	is_int(lxm_http_url_decode("a\0b", 3, false, &s), -EINVAL, "url_decode: raw NUL refused");
	ok(!s, "url_decode: nothing returned on failure");
}

static void test_query_get(void)
{
	const char *q = "recursion=1&project=my%20proj&flag&empty=&a+b=c+d&&x=%zz&dup=1&dup=2";
	char *v = NULL;

	ok(lxm_http_query_get(q, "recursion", &v) == 0 && streq(v, "1"), "query_get: first key");
	free(v);
	ok(lxm_http_query_get(q, "project", &v) == 0 && streq(v, "my proj"),
	   "query_get: decoded value");
	free(v);
	ok(lxm_http_query_get(q, "flag", &v) == 0 && streq(v, ""), "query_get: bare key is \"\"");
	free(v);
	ok(lxm_http_query_get(q, "empty", &v) == 0 && streq(v, ""), "query_get: empty value");
	free(v);
	ok(lxm_http_query_get(q, "a b", &v) == 0 && streq(v, "c d"),
	   "query_get: + decodes in keys and values");
	free(v);
	ok(lxm_http_query_get(q, "dup", &v) == 0 && streq(v, "1"), "query_get: first of two");
	free(v);
	v = NULL;
	is_int(lxm_http_query_get(q, "x", &v), -EINVAL, "query_get: malformed value");
	is_int(lxm_http_query_get(q, "missing", &v), -ENOENT, "query_get: absent key");
	is_int(lxm_http_query_get(q, "recursio", &v), -ENOENT, "query_get: no prefix match");
	is_int(lxm_http_query_get(NULL, "a", &v), -ENOENT, "query_get: NULL query");
	is_int(lxm_http_query_get("", "a", &v), -ENOENT, "query_get: empty query");
	ok(!v, "query_get: nothing returned on failure");
}

static void test_helpers(void)
{
	static const int known[] = { 100, 101, 200, 201, 202, 204, 400, 401, 403, 404, 405, 406,
				     409, 411, 412, 413, 414, 415, 422, 431, 500, 501, 503 };
	int unknown = 0;

	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (streq(lxm_http_status_text(known[i]), "Unknown"))
			unknown++;
	is_int(unknown, 0, "status_text: every required code is known");
	is_str(lxm_http_status_text(404), "Not Found", "status_text: 404");
	is_str(lxm_http_status_text(431), "Request Header Fields Too Large", "status_text: 431");
	is_str(lxm_http_status_text(299), "Unknown", "status_text: unknown code");

	ok(lxm_http_header_has_token("keep-alive, Upgrade", "upgrade"), "has_token: second token");
	ok(lxm_http_header_has_token("Upgrade", "upgrade"), "has_token: only token");
	ok(lxm_http_header_has_token(" upgrade\t,close", "UPGRADE"), "has_token: whitespace");
	ok(!lxm_http_header_has_token("upgraded", "upgrade"), "has_token: no prefix match");
	ok(!lxm_http_header_has_token("keep-alive", "upgrade"), "has_token: absent");
	ok(!lxm_http_header_has_token("", "upgrade"), "has_token: empty value");
	ok(!lxm_http_header_has_token(NULL, "upgrade"), "has_token: NULL value");
	ok(lxm_http_header_has_token(",,upgrade,", "upgrade"), "has_token: empty elements");
}

static void test_response_head(void)
{
	const char *extra[] = { "Location: /1.0/operations/abc", "X-Test: 1", NULL };
	const char *bad[] = { "X-Evil: a\r\nSet-Cookie: b", NULL };
	const char *nocolon[] = { "garbage", NULL };
	char *s = NULL;
	size_t len = 0;

	ok(lxm_http_response_head(200, "application/json", 42, true, NULL, &s, &len) == 0,
	   "response_head: formats");
	is_str(s,
	       "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42\r\n"
	       "Connection: keep-alive\r\n\r\n",
	       "response_head: 200 with type and length");
	is_int(len, s ? strlen(s) : 0, "response_head: length");
	free(s);
	ok(lxm_http_response_head(202, NULL, -1, false, extra, &s, &len) == 0 &&
		   streq(s, "HTTP/1.1 202 Accepted\r\nConnection: close\r\n"
			    "Location: /1.0/operations/abc\r\nX-Test: 1\r\n\r\n"),
	   "response_head: no type, no length, extra headers, close");
	free(s);
	ok(lxm_http_response_head(101, NULL, -1, true, NULL, &s, NULL) == 0 &&
		   startswith(s, "HTTP/1.1 101 Switching Protocols\r\n"),
	   "response_head: NULL ret_len allowed");
	free(s);
	ok(lxm_http_response_head(204, NULL, 0, true, NULL, &s, &len) == 0 &&
		   strstr(s, "Content-Length: 0\r\n"),
	   "response_head: zero length is sent");
	free(s);
	s = NULL;
	is_int(lxm_http_response_head(200, NULL, -1, true, bad, &s, &len), -EINVAL,
	       "response_head: CRLF in an extra header refused");
	is_int(lxm_http_response_head(200, "text/plain\r\nX: y", -1, true, NULL, &s, &len), -EINVAL,
	       "response_head: CRLF in the content type refused");
	is_int(lxm_http_response_head(200, NULL, -1, true, nocolon, &s, &len), -EINVAL,
	       "response_head: extra header without a colon refused");
	is_int(lxm_http_response_head(42, NULL, -1, true, NULL, &s, &len), -EINVAL,
	       "response_head: bad status refused");
	ok(!s, "response_head: nothing returned on failure");
}

static void test_target_forms(void)
{
	static const struct {
		const char *line, *path, *query;
	} cases[] = {
		{ "GET http://lxd/1.0/instances?x=1 HTTP/1.1", "/1.0/instances", "x=1" },
		{ "GET http://lxd HTTP/1.1", "/", NULL },
		{ "GET http://lxd?a=b HTTP/1.1", "/", "a=b" },
		{ "GET https://user@lxd:8443/x%20y HTTP/1.1", "/x y", NULL },
		{ "OPTIONS * HTTP/1.1", "*", NULL },
		{ "GET /a%2Fb/c? HTTP/1.1", "/a/b/c", "" },
		{ "GET /a#frag HTTP/1.1", "/a", NULL },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_parser_ struct lxm_http_parser *p = parser_new(NULL, NULL, NULL);
		char wire[256];
		int n = snprintf(wire, sizeof(wire), "%s\r\nHost: lxd\r\n\r\n", cases[i].line);
		struct fed f = feed_split(p, wire, (size_t)n, SIZE_MAX);
		_cleanup_request_ struct lxm_http_request *req = f.req;

		ok(req, "target '%s' parses", cases[i].line);
		if (!req)
			continue;
		is_str(req->path, cases[i].path, "target: path");
		is_str(req->query, cases[i].query, "target: query");
	}
}

int main(void)
{
	test_simple_get();
	test_splits();
	test_chunked();
	test_pipelined();
	test_keep_alive();
	test_limits();
	test_malformed();
	test_stream();
	test_big_buffered();
	test_discard();
	test_reject();
	test_upgrade();
	test_connect();
	test_url_decode();
	test_query_get();
	test_helpers();
	test_response_head();
	test_target_forms();
	return tap_done();
}
