/* HTTP/1.1 request parsing on top of libhttp-parser.
 *
 * libhttp-parser hands out the URL and header names and values in as many pieces as the socket
 * delivered, so they are accumulated here. The parser is paused twice per request: once when the
 * headers are complete, so the owner's on_headers callback runs outside libhttp-parser and the
 * exact number of header bytes is known, and once when the message is complete, so pipelined
 * requests are returned one at a time. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "http.h"

/* Most a buffered body gets allocated before its bytes arrive. */
#define BODY_PREALLOC_MAX (64 * 1024)

/* A growing byte string, always NUL-terminated once it holds anything. */
struct strbuf {
	char *data; /* the bytes plus a NUL, or NULL while empty */
	size_t len; /* bytes in data, without the NUL */
	size_t cap; /* bytes allocated */
};

/* Where the accumulation of the current header line stands. */
enum header_state {
	HEADER_NONE,  /* no header started since the last one was committed */
	HEADER_FIELD, /* receiving the name */
	HEADER_VALUE, /* receiving the value */
};

struct lxm_http_parser {
	http_parser hp;			/* libhttp-parser state; hp.data points back here */
	struct lxm_http_limits limits;	/* copied from the caller */
	struct lxm_http_parser_ops ops; /* copied; NULL slots are allowed */
	void *userdata;			/* passed to ops */
	struct lxm_http_request *req;	/* request being parsed, NULL before its first byte */
	struct strbuf url;		/* request target so far */
	struct strbuf field;		/* name of the header being received */
	struct strbuf value;		/* value of the header being received */
	enum header_state header_state; /* which of field/value receives the next piece */
	size_t headers_cap;		/* entries allocated in req->headers */
	size_t head_bytes;		/* bytes of request line and headers fed so far */
	size_t body_cap;		/* bytes allocated in req->body */
	enum lxm_http_body_mode mode;	/* what to do with the body, from on_headers */
	bool headers_done;		/* headers complete; later header pieces are trailers */
	bool complete;			/* the message is complete and waits for take() */
	int error;			/* negative errno once parsing failed, else 0 */
	int status;			/* HTTP status of the failure, 0 while none */
	char message[256];		/* sentence saying why, valid when status != 0 */
};

static int strbuf_append(struct strbuf *b, const char *data, size_t len)
{
	if (b->cap - b->len <= len) {
		size_t cap = b->cap ? b->cap : 64;
		char *n;

		while (cap - b->len <= len)
			cap *= 2;
		n = realloc(b->data, cap);
		if (!n)
			return -ENOMEM;
		b->data = n;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

/* Hands the string on (an empty one becomes "") and leaves the buffer empty. */
static char *strbuf_steal(struct strbuf *b)
{
	char *s = b->data ? b->data : strdup("");

	*b = (struct strbuf){ 0 };
	return s;
}

static void strbuf_clear(struct strbuf *b)
{
	free(b->data);
	*b = (struct strbuf){ 0 };
}

/* Records the first failure only: later ones are consequences of it. */
static __attribute__((format(printf, 4, 5))) int set_error(struct lxm_http_parser *p, int err,
							   int status, const char *fmt, ...)
{
	va_list ap;

	if (p->status != 0)
		return p->error ? p->error : err;
	p->error = err;
	p->status = status;
	va_start(ap, fmt);
	vsnprintf(p->message, sizeof(p->message), fmt, ap);
	va_end(ap);
	return err;
}

static struct lxm_http_parser *from_hp(http_parser *hp)
{
	return hp->data;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 9110 token characters. libhttp-parser lets spaces into header names, and a name like
 * "Transfer-Encoding " would then slip past the checks that look for the real one. */
static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	return true;
}

/* Moves the accumulated name and value into req->headers. */
static int commit_header(struct lxm_http_parser *p)
{
	struct lxm_http_request *req = p->req;
	_cleanup_free_ char *name = NULL, *value = NULL;
	char *start, *end;

	if (p->header_state == HEADER_NONE)
		return 0;
	p->header_state = HEADER_NONE;
	if (req->n_headers == p->headers_cap) {
		size_t cap = p->headers_cap ? p->headers_cap * 2 : 8;
		struct lxm_http_header *h = reallocarray(req->headers, cap, sizeof(*h));

		if (!h)
			return set_error(p, -ENOMEM, 500, "out of memory");
		req->headers = h;
		p->headers_cap = cap;
	}
	name = strbuf_steal(&p->field);
	value = strbuf_steal(&p->value);
	if (!name || !value)
		return set_error(p, -ENOMEM, 500, "out of memory");
	if (!is_token(name))
		return set_error(p, -EBADMSG, 400, "malformed header name");

	/* A folded (obs-fold) line can leave line breaks inside; a value must never carry them on
	 * to a place where it could end a header early. */
	for (char *c = value; *c; c++)
		if (*c == '\r' || *c == '\n')
			*c = ' ';
	for (start = value; is_ows(*start); start++)
		;
	for (end = start + strlen(start); end > start && is_ows(end[-1]); end--)
		;
	*end = '\0';
	memmove(value, start, (size_t)(end - start) + 1);

	req->headers[req->n_headers++] = (struct lxm_http_header){
		.name = TAKE_PTR(name),
		.value = TAKE_PTR(value),
	};
	return 0;
}

static int on_message_begin(http_parser *hp)
{
	struct lxm_http_parser *p = from_hp(hp);

	p->req = calloc(1, sizeof(*p->req));
	if (!p->req) {
		set_error(p, -ENOMEM, 500, "out of memory");
		return -1;
	}
	p->req->content_length = -1;
	return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	struct lxm_http_parser *p = from_hp(hp);

	if (p->url.len + len > p->limits.max_url) {
		set_error(p, -EMSGSIZE, 414, "request target is longer than %zu bytes",
			  p->limits.max_url);
		return -1;
	}
	if (strbuf_append(&p->url, at, len) < 0) {
		set_error(p, -ENOMEM, 500, "out of memory");
		return -1;
	}
	return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	struct lxm_http_parser *p = from_hp(hp);

	/* Trailers of a chunked body are read and dropped: the owner already has the headers. */
	if (p->headers_done)
		return 0;
	if (p->header_state == HEADER_VALUE && commit_header(p) < 0)
		return -1;
	if (p->header_state == HEADER_NONE) {
		if (p->req->n_headers >= p->limits.max_headers) {
			set_error(p, -EMSGSIZE, 431, "request has more than %zu header lines",
				  p->limits.max_headers);
			return -1;
		}
		p->header_state = HEADER_FIELD;
	}
	if (strbuf_append(&p->field, at, len) < 0) {
		set_error(p, -ENOMEM, 500, "out of memory");
		return -1;
	}
	return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	struct lxm_http_parser *p = from_hp(hp);

	if (p->headers_done)
		return 0;
	p->header_state = HEADER_VALUE;
	if (strbuf_append(&p->value, at, len) < 0) {
		set_error(p, -ENOMEM, 500, "out of memory");
		return -1;
	}
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	struct lxm_http_parser *p = from_hp(hp);

	if (commit_header(p) < 0)
		return -1;
	p->headers_done = true;
	/* finish_headers() runs from feed() once libhttp-parser has returned, which leaves the
	 * final LF unconsumed: it is parsed again on resumption. */
	http_parser_pause(hp, 1);
	return 0;
}

static int buffer_body(struct lxm_http_parser *p, const char *at, size_t len)
{
	struct lxm_http_request *req = p->req;

	if (len > p->limits.max_body - req->body_len) {
		return set_error(p, -EMSGSIZE, 413, "request body is larger than %zu bytes",
				 p->limits.max_body);
	}
	if (p->body_cap - req->body_len <= len) {
		size_t cap = p->body_cap ? p->body_cap : 4096;
		char *n;

		while (cap - req->body_len <= len)
			cap *= 2;
		n = realloc(req->body, cap);
		if (!n)
			return set_error(p, -ENOMEM, 500, "out of memory");
		req->body = n;
		p->body_cap = cap;
	}
	memcpy(req->body + req->body_len, at, len);
	req->body_len += len;
	req->body[req->body_len] = '\0';
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct lxm_http_parser *p = from_hp(hp);
	int r = 0;

	p->req->body_seen += len;
	switch (p->mode) {
	case LXM_HTTP_BODY_BUFFER:
		r = buffer_body(p, at, len);
		break;
	case LXM_HTTP_BODY_STREAM:
		if (p->ops.on_body)
			r = p->ops.on_body(p->req, at, len, p->userdata);
		if (r >= 0 && p->status != 0)
			r = -EINVAL;
		if (r < 0)
			set_error(p, r, 400, "request body rejected: %s", strerror(-r));
		break;
	case LXM_HTTP_BODY_DISCARD:
	case _LXM_HTTP_BODY_MODE_MAX:
		break;
	}
	return r < 0 ? -1 : 0;
}

static int on_message_complete(http_parser *hp)
{
	struct lxm_http_parser *p = from_hp(hp);

	/* CONNECT and upgrades skip a declared body: drop what was allocated for it. */
	if (p->req->body_len == 0) {
		free(p->req->body);
		p->req->body = NULL;
	}
	p->complete = true;
	/* Stop here so that the bytes after this message stay with the caller: they are the next
	 * request, or websocket frames after an upgrade. */
	http_parser_pause(hp, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* Splits the request target into path and query. The absolute form ("http://host/path?q") that
 * proxies send is reduced to its path, "/" when it has none. */
static int split_target(struct lxm_http_request *req)
{
	const char *target = req->url, *end, *scheme_end;
	bool absolute = false;
	int r;

	scheme_end = strstr(target, "://");
	if (target[0] != '/' && scheme_end && !memchr(target, '/', (size_t)(scheme_end - target))) {
		target = scheme_end + 3;
		target += strcspn(target, "/?#");
		absolute = true;
	}
	end = target + strcspn(target, "?#");
	if (absolute && end == target)
		r = lxm_http_url_decode("/", 1, false, &req->path);
	else
		r = lxm_http_url_decode(target, (size_t)(end - target), false, &req->path);
	if (r < 0)
		return r;
	if (*end == '?') {
		req->query = strndup(end + 1, strcspn(end + 1, "#"));
		if (!req->query)
			return -ENOMEM;
	}
	return 0;
}

/* The headers are complete: fills in what the owner looks at and asks it about the body. */
static int finish_headers(struct lxm_http_parser *p)
{
	struct lxm_http_request *req = p->req;
	int r;

	req->url = strbuf_steal(&p->url);
	if (!req->url)
		return set_error(p, -ENOMEM, 500, "out of memory");
	r = split_target(req);
	if (r == -ENOMEM)
		return set_error(p, r, 500, "out of memory");
	if (r < 0)
		return set_error(p, -EBADMSG, 400,
				 "request path has a malformed or NUL percent-escape");

	req->method = (enum http_method)p->hp.method;
	req->http_major = p->hp.http_major;
	req->http_minor = p->hp.http_minor;
	req->keep_alive = http_should_keep_alive(&p->hp);
	req->upgrade = p->hp.upgrade;
	req->chunked = p->hp.flags & F_CHUNKED;
	if (p->hp.content_length != ULLONG_MAX) {
		if (p->hp.content_length > INT64_MAX)
			return set_error(p, -EBADMSG, 400, "Content-Length is out of range");
		req->content_length = (int64_t)p->hp.content_length;
	}

	r = LXM_HTTP_BODY_BUFFER;
	if (p->ops.on_headers)
		r = p->ops.on_headers(req, p->userdata);
	if (r >= 0 && p->status != 0)
		r = -EINVAL; /* lxm_http_parser_fail() was called: that is a rejection */
	if (r >= _LXM_HTTP_BODY_MODE_MAX)
		r = -EINVAL;
	if (r < 0)
		return set_error(p, r, 400, "request rejected: %s", strerror(-r));
	p->mode = (enum lxm_http_body_mode)r;

	if (p->mode == LXM_HTTP_BODY_BUFFER && req->content_length > 0) {
		if ((uint64_t)req->content_length > p->limits.max_body) {
			return set_error(p, -EMSGSIZE, 413, "request body is larger than %zu bytes",
					 p->limits.max_body);
		}
		/* Allocate for the announced length, but not more than a little up front: the
		 * announcement costs the client nothing, the bytes do. */
		p->body_cap = (size_t)req->content_length + 1;
		if (p->body_cap > BODY_PREALLOC_MAX)
			p->body_cap = BODY_PREALLOC_MAX;
		req->body = malloc(p->body_cap);
		if (!req->body)
			return set_error(p, -ENOMEM, 500, "out of memory");
		req->body[0] = '\0';
	}
	return 0;
}

/* Turns a libhttp-parser failure into a status and a sentence, unless a callback already did. */
static int parse_error(struct lxm_http_parser *p)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);

	if (p->status != 0)
		return p->error;
	if (e == HPE_HEADER_OVERFLOW)
		return set_error(p, -EMSGSIZE, 431, "request header section is too large");
	return set_error(p, -EBADMSG, 400, "malformed HTTP request: %s", http_errno_description(e));
}

int lxm_http_parser_new(const struct lxm_http_limits *limits, const struct lxm_http_parser_ops *ops,
			void *userdata, struct lxm_http_parser **ret)
{
	struct lxm_http_parser *p;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->limits = limits ? *limits : LXM_HTTP_LIMITS_DEFAULT;
	if (ops)
		p->ops = *ops;
	p->userdata = userdata;
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
	*ret = p;
	return 0;
}

/* Forgets the request in progress and readies the parser for the next one. */
static void parser_reset(struct lxm_http_parser *p)
{
	lxm_http_request_free(p->req);
	p->req = NULL;
	strbuf_clear(&p->url);
	strbuf_clear(&p->field);
	strbuf_clear(&p->value);
	p->header_state = HEADER_NONE;
	p->headers_cap = 0;
	p->head_bytes = 0;
	p->body_cap = 0;
	p->mode = LXM_HTTP_BODY_BUFFER;
	p->headers_done = false;
	p->complete = false;
	/* A fresh init also lifts the pause of on_message_complete() and leaves the dead state
	 * that libhttp-parser enters after a "Connection: close" message. */
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
}

void lxm_http_parser_free(struct lxm_http_parser *p)
{
	if (!p)
		return;
	parser_reset(p);
	free(p);
}

ssize_t lxm_http_parser_feed(struct lxm_http_parser *p, const char *data, size_t len,
			     enum lxm_http_feed_result *ret_result)
{
	size_t off = 0;

	*ret_result = LXM_HTTP_FEED_MORE;
	if (p->error < 0)
		return p->error;
	if (p->complete) {
		/* Not taken yet: nothing more is parsed until it is. */
		*ret_result = p->hp.upgrade ? LXM_HTTP_FEED_UPGRADE : LXM_HTTP_FEED_REQUEST;
		return 0;
	}

	while (off < len) {
		bool in_head = !p->headers_done;
		size_t n = len - off, got;
		enum http_errno e;

		/* Feed at most what the header limit allows, so that the head is measured exactly
		 * and never grows past it. */
		if (in_head) {
			if (p->head_bytes >= p->limits.max_header_bytes) {
				return set_error(p, -EMSGSIZE, 431,
						 "request header section is larger than %zu bytes",
						 p->limits.max_header_bytes);
			}
			if (n > p->limits.max_header_bytes - p->head_bytes)
				n = p->limits.max_header_bytes - p->head_bytes;
		}

		got = http_parser_execute(&p->hp, &settings, data + off, n);
		off += got;
		if (in_head)
			p->head_bytes += got;

		e = HTTP_PARSER_ERRNO(&p->hp);
		if (e == HPE_PAUSED && p->complete) {
			*ret_result = p->hp.upgrade ? LXM_HTTP_FEED_UPGRADE : LXM_HTTP_FEED_REQUEST;
			return (ssize_t)off;
		}
		if (e == HPE_PAUSED && in_head && p->headers_done) {
			int r;

			http_parser_pause(&p->hp, 0);
			r = finish_headers(p);
			if (r < 0)
				return r;
			continue;
		}
		if (e != HPE_OK)
			return parse_error(p);
		if (got != n) /* cannot happen without an error or a pause; never spin */
			return set_error(p, -EBADMSG, 400, "malformed HTTP request");
	}
	if (!p->headers_done && p->head_bytes >= p->limits.max_header_bytes) {
		return set_error(p, -EMSGSIZE, 431,
				 "request header section is larger than %zu bytes",
				 p->limits.max_header_bytes);
	}
	return (ssize_t)off;
}

struct lxm_http_request *lxm_http_parser_take(struct lxm_http_parser *p)
{
	struct lxm_http_request *req;

	if (!p->complete)
		return NULL;
	req = TAKE_PTR(p->req);
	parser_reset(p);
	return req;
}

struct lxm_http_request *lxm_http_parser_current(struct lxm_http_parser *p)
{
	return p->req;
}

int lxm_http_parser_fail(struct lxm_http_parser *p, int status, const char *msg)
{
	return set_error(p, -EINVAL, status, "%s", msg ? msg : lxm_http_status_text(status));
}

int lxm_http_parser_error_status(const struct lxm_http_parser *p)
{
	return p->status;
}

const char *lxm_http_parser_error_message(const struct lxm_http_parser *p)
{
	return p->status ? p->message : NULL;
}

void lxm_http_request_free(struct lxm_http_request *req)
{
	if (!req)
		return;
	free(req->url);
	free(req->path);
	free(req->query);
	for (size_t i = 0; i < req->n_headers; i++) {
		free(req->headers[i].name);
		free(req->headers[i].value);
	}
	free(req->headers);
	free(req->body);
	free(req);
}

const char *lxm_http_request_header(const struct lxm_http_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

bool lxm_http_header_has_token(const char *value, const char *token)
{
	size_t tlen = strlen(token);

	if (!value)
		return false;
	while (*value) {
		const char *end = value + strcspn(value, ",");
		const char *last = end;

		while (value < end && is_ows(*value))
			value++;
		while (last > value && is_ows(last[-1]))
			last--;
		if ((size_t)(last - value) == tlen && strncasecmp(value, token, tlen) == 0)
			return true;
		value = *end ? end + 1 : end;
	}
	return false;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int lxm_http_url_decode(const char *in, size_t len, bool plus_as_space, char **ret)
{
	_cleanup_free_ char *out = NULL;
	size_t n = 0;

	if (!in && len > 0)
		return -EINVAL;
	out = malloc(len + 1);
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (c == '%') {
			int hi, lo;

			if (len - i < 3)
				return -EINVAL;
			hi = unhex(in[i + 1]);
			lo = unhex(in[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus_as_space) {
			c = ' ';
		}
		/* A NUL would silently cut the string short wherever it is used as one. */
		if (c == '\0')
			return -EINVAL;
		out[n++] = c;
	}
	out[n] = '\0';
	*ret = TAKE_PTR(out);
	return 0;
}

int lxm_http_query_get(const char *query, const char *key, char **ret)
{
	const char *s = query;

	if (!query)
		return -ENOENT;
	while (*s) {
		size_t plen = strcspn(s, "&");
		const char *eq = memchr(s, '=', plen);
		size_t klen = eq ? (size_t)(eq - s) : plen;
		_cleanup_free_ char *k = NULL;

		/* A key that does not decode cannot be the one asked for: skip it. */
		if (plen > 0 && lxm_http_url_decode(s, klen, true, &k) == 0 &&
		    strcmp(k, key) == 0) {
			if (!eq) {
				char *v = strdup("");

				if (!v)
					return -ENOMEM;
				*ret = v;
				return 0;
			}
			return lxm_http_url_decode(eq + 1, plen - klen - 1, true, ret);
		}
		s += plen;
		if (*s == '&')
			s++;
	}
	return -ENOENT;
}

static const struct {
	int status;
	const char *text;
} status_texts[] = {
	{ 100, "Continue" },
	{ 101, "Switching Protocols" },
	{ 200, "OK" },
	{ 201, "Created" },
	{ 202, "Accepted" },
	{ 204, "No Content" },
	{ 206, "Partial Content" },
	{ 301, "Moved Permanently" },
	{ 302, "Found" },
	{ 304, "Not Modified" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 406, "Not Acceptable" },
	{ 408, "Request Timeout" },
	{ 409, "Conflict" },
	{ 410, "Gone" },
	{ 411, "Length Required" },
	{ 412, "Precondition Failed" },
	{ 413, "Payload Too Large" },
	{ 414, "URI Too Long" },
	{ 415, "Unsupported Media Type" },
	{ 416, "Range Not Satisfiable" },
	{ 422, "Unprocessable Entity" },
	{ 426, "Upgrade Required" },
	{ 429, "Too Many Requests" },
	{ 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" },
	{ 501, "Not Implemented" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
	{ 505, "HTTP Version Not Supported" },
};

const char *lxm_http_status_text(int status)
{
	for (size_t i = 0; i < ARRAY_SIZE(status_texts); i++)
		if (status_texts[i].status == status)
			return status_texts[i].text;
	return "Unknown";
}

static bool has_line_break(const char *s)
{
	return s && strpbrk(s, "\r\n");
}

int lxm_http_response_head(int status, const char *content_type, int64_t content_length,
			   bool keep_alive, const char *const *extra, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	/* A line break in any part would let it end the head early and inject headers. */
	if (status < 100 || status > 999 || has_line_break(content_type))
		return -EINVAL;
	for (size_t i = 0; extra && extra[i]; i++)
		if (has_line_break(extra[i]) || !strchr(extra[i], ':'))
			return -EINVAL;

	f = open_memstream(&buf, &len);
	if (!f)
		return -errno;
	fprintf(f, "HTTP/1.1 %d %s\r\n", status, lxm_http_status_text(status));
	if (content_type)
		fprintf(f, "Content-Type: %s\r\n", content_type);
	if (content_length >= 0)
		fprintf(f, "Content-Length: %" PRId64 "\r\n", content_length);
	fprintf(f, "Connection: %s\r\n", keep_alive ? "keep-alive" : "close");
	for (size_t i = 0; extra && extra[i]; i++)
		fprintf(f, "%s\r\n", extra[i]);
	fputs("\r\n", f);
	r = ferror(f) ? -ENOMEM : 0;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r < 0)
		return r;
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}
