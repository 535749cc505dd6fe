/* A small blocking HTTP/1.1 client over a unix socket (or TCP with TLS, for remotes), for the CLI's
 * talk with lxmd. Replies are parsed by libhttp-parser and handed to callbacks as they arrive: the
 * final reply's status, headers and (de-chunked) body; interim "1xx" replies are skipped. The
 * connection is kept between requests when the server allows it, and a kept connection that the
 * server closed while it was idle is replaced once, transparently. Request bodies come from memory
 * or, piece by piece, from a read callback; a reply that comes while the body is still being sent
 * (a server refusing an upload early) is read and reported. One client is used by one thread at a
 * time. Helpers here never log: the caller turns the failure below into its message. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Why a request failed, beyond its errno. */
enum lxm_httpc_fail {
	LXM_HTTPC_FAIL_NONE,		/* the request succeeded */
	LXM_HTTPC_FAIL_CONNECT,		/* connect() failed; the errno is connect()'s */
	LXM_HTTPC_FAIL_CONNECT_TIMEOUT, /* the server did not accept within the connect timeout */
	LXM_HTTPC_FAIL_SEND,		/* sending the request failed and no reply came */
	LXM_HTTPC_FAIL_RECV,		/* reading the reply failed */
	LXM_HTTPC_FAIL_NO_REPLY,	/* the server closed the connection without a reply */
	LXM_HTTPC_FAIL_TRUNCATED,	/* the server closed the connection within the reply */
	LXM_HTTPC_FAIL_NOT_HTTP,	/* the reply is not HTTP/1.x; detail says what is wrong */
	LXM_HTTPC_FAIL_READ,		/* the request body's read callback failed, or ran short */
	LXM_HTTPC_FAIL_CALLBACK,	/* a reply callback failed; the errno is what it returned */
	LXM_HTTPC_FAIL_TLS,		/* the TLS handshake failed; detail says why */
	LXM_HTTPC_FAIL_PIN,		/* the server's certificate is not the pinned one */
	_LXM_HTTPC_FAIL_MAX,
};

struct lxm_httpc_request {
	const char *method;	    /* "GET", "POST", ... */
	const char *target;	    /* the request target, "/1.0/instances?recursion=1" */
	const char *const *headers; /* extra "Name: value" lines, NULL-terminated, or NULL */
	const char *body;	    /* a body in memory (sent with Content-Length), or NULL */
	size_t body_len;	    /* bytes in body */
	/* A body streamed piece by piece instead (body is then ignored): fills buf and returns
	 * its length, 0 at the end, or -errno to fail the request. NULL: no streamed body. */
	ssize_t (*read)(char *buf, size_t len, void *ud);
	int64_t body_size; /* what read() gives in all (Content-Length), -1: sent chunked */
	/* Each header of the final reply, NUL-terminated, value without surrounding blanks;
	 * returns 0, or -errno to fail the request. May be NULL. */
	int (*on_header)(const char *name, const char *value, void *ud);
	/* The final reply's status line and headers are complete; 0 or -errno. May be NULL. */
	int (*on_headers)(int status, void *ud);
	/* A piece of the final reply's body; 0 or -errno. May be NULL (the body is dropped). */
	int (*on_body)(const char *data, size_t len, void *ud);
	void *ud; /* for the callbacks */
};

/* What happened to a request, whether it failed or not. */
struct lxm_httpc_result {
	int status;		  /* the final reply's HTTP status, 0 when none came */
	enum lxm_httpc_fail fail; /* LXM_HTTPC_FAIL_NONE on success */
	const char *detail; /* a static description of a NOT_HTTP or TRUNCATED reply, or NULL */
};

struct lxm_httpc;

/* A client for the unix socket at path; nothing is connected yet. The connect timeout is 10 s.
 * Returns 0, -ENAMETOOLONG (the path does not fit a sockaddr_un) or -ENOMEM. */
int lxm_httpc_new(const char *path, struct lxm_httpc **ret);
/* A client for an HTTPS server at host:port, over TCP and TLS with tls (borrowed: it must
 * outlive the client), which presents the client certificate and checks the server's. */
struct lxm_tlsc;
int lxm_httpc_new_tls(const char *host, const char *port, struct lxm_tlsc *tls,
		      struct lxm_httpc **ret);
void lxm_httpc_free(struct lxm_httpc *h);
static inline void lxm_httpc_freep(struct lxm_httpc **h)
{
	lxm_httpc_free(*h);
}

/* How long connect() may wait for the server to accept (the backlog of a stuck server is full). */
void lxm_httpc_set_connect_timeout(struct lxm_httpc *h, unsigned timeout_ms);

/* Sends one request and reads its final reply, calling req's callbacks as it arrives. Returns 0
 * with res->status set when a complete reply came (whatever its status), else -errno with
 * res->fail saying which step failed. A callback's -errno fails the request with that errno.
 * There is no receive timeout: a server may take as long as it needs to answer. */
int lxm_httpc_request(struct lxm_httpc *h, const struct lxm_httpc_request *req,
		      struct lxm_httpc_result *res);

/* A reply body kept in memory, with a cap the caller chooses. */
struct lxm_httpc_buf {
	char *data; /* the bytes so far plus a NUL, or NULL when none came */
	size_t len; /* bytes in data, without the NUL */
	size_t max; /* the most that may be kept; more fails with -EFBIG */
};

/* Appends to b: 0, -EFBIG past b->max, or -ENOMEM. Usable as on_body with b as ud. */
int lxm_httpc_buf_append(const char *data, size_t len, void *b);
void lxm_httpc_buf_done(struct lxm_httpc_buf *b);

/* Keeps a reply header's value, for an on_header callback: replaces *field with a copy of value
 * (a header that comes twice keeps its last value). Returns 0 or -ENOMEM. */
int lxm_httpc_keep_header(char **field, const char *value);
