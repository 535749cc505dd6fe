/* Fuzz target for lib/http.c. The first input byte picks how the rest is split into feeds, which
 * body mode the requests get and whether the limits are tiny; the rest is what a client sent on
 * one connection. Every request is taken, checked for the invariants the API promises, run
 * through the URL helpers and freed; an upgrade ends the HTTP part as it would on a socket. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"

/* What the callbacks see, checked against what the request says at the end. */
struct fuzz_state {
	uint8_t sel;			/* the first input byte */
	int mode;			/* body mode of the current request */
	uint64_t streamed;		/* bytes given to on_body for it */
	unsigned int sum;		/* of those bytes, so that every one is read */
	unsigned int n_reqs;		/* requests seen by on_headers */
	struct lxm_http_parser *parser; /* for lxm_http_parser_fail() */
};

/* Invariant violations crash on purpose, so that the fuzzer reports them. */
#define check(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

static int fuzz_on_headers(struct lxm_http_request *req, void *userdata)
{
	struct fuzz_state *s = userdata;

	s->n_reqs++;
	s->streamed = 0;
	check(req->url && req->path);
	/* Exercise the rejection paths now and then. */
	if (lxm_http_request_header(req, "X-Fuzz-Reject"))
		return -EPERM;
	if (lxm_http_request_header(req, "X-Fuzz-Fail"))
		return lxm_http_parser_fail(s->parser, 403, "refused by the fuzzer");
	switch ((s->sel >> 3) % 4) {
	case 0:
		s->mode = LXM_HTTP_BODY_BUFFER;
		break;
	case 1:
		s->mode = LXM_HTTP_BODY_STREAM;
		break;
	case 2:
		s->mode = LXM_HTTP_BODY_DISCARD;
		break;
	default:
		s->mode = (int)(s->n_reqs % _LXM_HTTP_BODY_MODE_MAX);
		break;
	}
	return s->mode;
}

static int fuzz_on_body(struct lxm_http_request *req, const char *data, size_t len, void *userdata)
{
	struct fuzz_state *s = userdata;

	check(len > 0 && data);
	check(s->mode == LXM_HTTP_BODY_STREAM);
	check(lxm_http_parser_current(s->parser) == req);
	/* Read every byte so that ASan sees a bad pointer or length. */
	for (size_t i = 0; i < len; i++)
		s->sum += (unsigned char)data[i];
	s->streamed += len;
	return 0;
}

static void check_request(const struct lxm_http_request *req, const struct lxm_http_limits *limits,
			  const struct fuzz_state *s)
{
	char *v = NULL;

	check(req->url && req->path);
	check(strlen(req->url) <= limits->max_url);
	check(req->n_headers <= limits->max_headers);
	for (size_t i = 0; i < req->n_headers; i++) {
		check(req->headers[i].name && req->headers[i].value);
		check(!strpbrk(req->headers[i].value, "\r\n"));
	}
	check(!req->body ||
	      (req->body_len <= limits->max_body && req->body[req->body_len] == '\0'));
	check(req->body || req->body_len == 0);
	check(req->body_len <= req->body_seen);
	check(req->content_length < 0 || req->body_seen == (uint64_t)req->content_length ||
	      req->upgrade);
	switch (s->mode) {
	case LXM_HTTP_BODY_BUFFER:
		check(req->body_len == req->body_seen);
		break;
	case LXM_HTTP_BODY_STREAM:
		check(!req->body && s->streamed == req->body_seen);
		break;
	default:
		check(!req->body);
		break;
	}

	if (lxm_http_query_get(req->query, "project", &v) == 0)
		free(v);
	if (lxm_http_query_get(req->query, "", &v) == 0)
		free(v);
	if (lxm_http_url_decode(req->url, strlen(req->url), true, &v) == 0)
		free(v);
	(void)lxm_http_header_has_token(lxm_http_request_header(req, "connection"), "upgrade");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t steps[] = { 1, 2, 3, 7, 16, 61, 512, SIZE_MAX };
	struct fuzz_state s = { 0 };
	struct lxm_http_limits limits = LXM_HTTP_LIMITS_DEFAULT;
	const struct lxm_http_parser_ops ops = { .on_headers = fuzz_on_headers,
						 .on_body = fuzz_on_body };
	struct lxm_http_parser *p = NULL;
	const char *in;
	size_t len, step, off = 0;
	bool done = false;

	if (size == 0)
		return 0;
	s.sel = data[0];
	in = (const char *)data + 1;
	len = size - 1;
	step = steps[s.sel % 8];
	if (s.sel & 0x80)
		limits = (struct lxm_http_limits){
			.max_url = 40, .max_header_bytes = 200, .max_headers = 5, .max_body = 64
		};
	if (lxm_http_parser_new(&limits, &ops, &s, &p) < 0)
		return 0;
	s.parser = p;

	while (off < len && !done) {
		size_t piece = len - off < step ? len - off : step;
		size_t poff = 0;

		/* A piece may hold the end of one request and the start of the next. */
		while (poff < piece && !done) {
			enum lxm_http_feed_result res;
			ssize_t r = lxm_http_parser_feed(p, in + off + poff, piece - poff, &res);
			struct lxm_http_request *req;
			int status;

			if (r < 0) {
				status = lxm_http_parser_error_status(p);
				check(status >= 400 && status <= 599);
				check(lxm_http_parser_error_message(p) != NULL);
				done = true;
				break;
			}
			check((size_t)r <= piece - poff);
			poff += (size_t)r;
			if (res == LXM_HTTP_FEED_MORE) {
				check(poff == piece);
				break;
			}
			req = lxm_http_parser_take(p);
			check(req != NULL);
			check(res != LXM_HTTP_FEED_UPGRADE || req->upgrade);
			check_request(req, &limits, &s);
			/* What follows an upgrade is websocket data, not HTTP. */
			if (res == LXM_HTTP_FEED_UPGRADE)
				done = true;
			lxm_http_request_free(req);
		}
		off += poff;
		if (poff < piece)
			break;
	}
	lxm_http_parser_free(p);
	return 0;
}

const char *lxm_fuzz_corpus_name(void)
{
	return "http";
}
