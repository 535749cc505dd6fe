/* HTTP/1.1 request parsing on top of libhttp-parser, for a server that owns its own I/O.
 * The parser is fed whatever the socket delivered; it stops after each complete request (so
 * pipelined requests are handled one at a time) and after the headers of an Upgrade request.
 * Bodies are buffered up to a limit, streamed to a callback, or discarded, as the caller decides
 * once the headers are known. */
#pragma once

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct lxm_http_limits {
	size_t max_url;		 /* bytes of the request target; over it: 414 */
	size_t max_header_bytes; /* bytes of request line plus all headers; over it: 431 */
	size_t max_headers;	 /* number of header lines; over it: 431 */
	size_t max_body; /* bytes of a buffered body; over it: 413 (streamed bodies: no limit) */
};

#define LXM_HTTP_LIMITS_DEFAULT                                                                    \
	((struct lxm_http_limits){ .max_url = 8192,                                                \
				   .max_header_bytes = 32768,                                      \
				   .max_headers = 100,                                             \
				   .max_body = 8 * 1024 * 1024 })

struct lxm_http_header {
	char *name;  /* as the client spelled it */
	char *value; /* leading/trailing whitespace removed */
};

struct lxm_http_request {
	enum http_method method;	 /* HTTP_GET, HTTP_POST, ... */
	char *url;			 /* raw request target, e.g. "/1.0/instances?recursion=1" */
	char *path;			 /* percent-decoded path without the query */
	char *query;			 /* raw query string without '?', or NULL */
	struct lxm_http_header *headers; /* in arrival order */
	size_t n_headers;		 /* number of entries in headers */
	unsigned short http_major;	 /* 1 */
	unsigned short http_minor;	 /* 0 or 1 */
	bool keep_alive;		 /* http_should_keep_alive() after the headers */
	bool upgrade;			 /* an Upgrade request (websocket handshake) */
	bool chunked;			 /* Transfer-Encoding: chunked */
	int64_t content_length;		 /* Content-Length, or -1 when absent */
	char *body;	    /* buffered body plus a NUL, or NULL (none, streamed, discarded) */
	size_t body_len;    /* bytes in body, without the NUL */
	uint64_t body_seen; /* body bytes received so far in any mode */
};

enum lxm_http_body_mode {
	LXM_HTTP_BODY_BUFFER,  /* keep it in req->body, up to limits.max_body */
	LXM_HTTP_BODY_STREAM,  /* hand each piece to ops.on_body, keep nothing */
	LXM_HTTP_BODY_DISCARD, /* read and drop it (e.g. the request is refused already) */
	_LXM_HTTP_BODY_MODE_MAX,
};

struct lxm_http_parser_ops {
	/* Headers are complete: return an lxm_http_body_mode, or a negative errno to reject the
	 * request (feed then fails with status 400 unless the callback set one with
	 * lxm_http_parser_fail()). May be NULL: buffer. */
	int (*on_headers)(struct lxm_http_request *req, void *userdata);
	/* A piece of a streamed body (already de-chunked). Return 0, or -errno to stop parsing. */
	int (*on_body)(struct lxm_http_request *req, const char *data, size_t len, void *userdata);
};

enum lxm_http_feed_result {
	LXM_HTTP_FEED_MORE,    /* all input consumed, the request is not complete yet */
	LXM_HTTP_FEED_REQUEST, /* a request is complete: take it with lxm_http_parser_take() */
	LXM_HTTP_FEED_UPGRADE, /* an Upgrade request's headers are complete; later bytes are not
				  HTTP */
};

struct lxm_http_parser;

int lxm_http_parser_new(const struct lxm_http_limits *limits, const struct lxm_http_parser_ops *ops,
			void *userdata, struct lxm_http_parser **ret);
void lxm_http_parser_free(struct lxm_http_parser *p);

/* Parses up to len bytes. Returns the number consumed (may be < len after a complete request or an
 * upgrade: the rest belongs to the next request or to the websocket) and sets *ret_result.
 * On a malformed request or an exceeded limit returns a negative errno; then
 * lxm_http_parser_error_status() is 400/413/414/431 and lxm_http_parser_error_message() says why,
 * and the parser must not be fed again. */
ssize_t lxm_http_parser_feed(struct lxm_http_parser *p, const char *data, size_t len,
			     enum lxm_http_feed_result *ret_result);

/* After FEED_REQUEST or FEED_UPGRADE: the request, owned by the caller. The parser is reset for
 * the next request on the same connection. */
struct lxm_http_request *lxm_http_parser_take(struct lxm_http_parser *p);

/* The request being parsed (from inside callbacks), or NULL. */
struct lxm_http_request *lxm_http_parser_current(struct lxm_http_parser *p);

/* From on_headers/on_body: reject with this status and message (copied). Returns -EINVAL. */
int lxm_http_parser_fail(struct lxm_http_parser *p, int status, const char *msg);

int lxm_http_parser_error_status(const struct lxm_http_parser *p);
const char *lxm_http_parser_error_message(const struct lxm_http_parser *p);

void lxm_http_request_free(struct lxm_http_request *req);

/* Value of the first header with this name, compared case-insensitively; NULL when absent. */
const char *lxm_http_request_header(const struct lxm_http_request *req, const char *name);

/* Whether a comma-separated header value contains token (case-insensitive), e.g.
 * Connection: "keep-alive, Upgrade" contains "upgrade". */
bool lxm_http_header_has_token(const char *value, const char *token);

/* Percent-decodes len bytes of in; '+' becomes ' ' when plus_as_space. Fails with -EINVAL on a
 * malformed escape or an encoded NUL. */
int lxm_http_url_decode(const char *in, size_t len, bool plus_as_space, char **ret);

/* Decoded value of key in a query string ("a=1&b=x%20y"); "" for a bare key; -ENOENT when absent.
 */
int lxm_http_query_get(const char *query, const char *key, char **ret);

/* "OK", "Not Found", ...; "Unknown" for codes it does not know. */
const char *lxm_http_status_text(int status);

/* Formats a response head: status line, Content-Type (when non-NULL), Content-Length (when >= 0),
 * "Connection: keep-alive" or "close", each of extra ("Name: value", NULL-terminated, may be NULL),
 * and the blank line. */
int lxm_http_response_head(int status, const char *content_type, int64_t content_length,
			   bool keep_alive, const char *const *extra, char **ret, size_t *ret_len);
