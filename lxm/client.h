/* The CLI's HTTP client for lxmd's REST API (LXD's API 1.0) over its unix socket, on lib/httpc.
 * It speaks LXD's envelope: sync replies give their metadata, async replies give the operation,
 * error replies become a struct lxm_error carrying the server's message and status. Connection
 * problems become one-line errors that tell the user what to do. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/error.h"

struct lxm_client;

/* Per-request extras, optional in lxm_client_request(). Free the outputs with
 * lxm_client_response_done(). */
struct lxm_client_response {
	const char
		*if_match; /* in: sent as If-Match when non-NULL (read-modify-write with ETags) */
	long http_status;  /* out: HTTP status of the reply */
	char *etag;	   /* out: the reply's ETag header, NULL when absent */
	char *operation;   /* out: "/1.0/operations/<id>" of an async reply, else NULL */
};

void lxm_client_response_done(struct lxm_client_response *r);

/* The socket the CLI talks to: $LXM_SOCKET if set, else $LXM_DIR/unix.socket, else
 * LXM_DEFAULT_DIR/unix.socket. Returns 0 or -ENOMEM. */
int lxm_client_socket_path(char **ret);

/* Creates a client for the socket above. Nothing is sent yet. */
int lxm_client_new(struct lxm_client **ret, struct lxm_error **err);
/* The same for another socket (a remote lxmd on this host), whatever the environment says. */
int lxm_client_new_at(const char *socket, struct lxm_client **ret, struct lxm_error **err);
/* A client for an https remote: url names it in messages; tls (stolen on success) presents the
 * client certificate and checks the pinned server one. */
struct lxm_tlsc;
struct lxm_httpc;
int lxm_client_new_tls(const char *url, const char *host, const char *port, struct lxm_tlsc *tls,
		       struct lxm_client **ret, struct lxm_error **err);
/* The TLS context of an https client, NULL for a unix socket. */
struct lxm_tlsc *lxm_client_tls(const struct lxm_client *c);
/* A new HTTP connection to c's server (unix socket or TLS), for a request beside c's own. */
int lxm_client_new_httpc(struct lxm_client *c, struct lxm_httpc **ret);
/* A raw connection to c's server, for a websocket upgrade: *ret_ssl is NULL on a unix socket. */
typedef struct ssl_st SSL;
int lxm_client_open_stream(struct lxm_client *c, int *ret_fd, SSL **ret_ssl,
			   struct lxm_error **err);
void lxm_client_free(struct lxm_client *c);
const char *lxm_client_socket(const struct lxm_client *c);

/* Sends one request and decodes LXD's envelope. path starts with "/1.0". body (may be NULL) is sent
 * as JSON. On success *ret_metadata (when non-NULL) holds a new reference to the reply's metadata
 * (the Operation for an async reply; JSON null when there is none). An error envelope fails with
 * the server's message, its error_code in err->status and a matching errno (404 -> ENOENT, 409 ->
 * EEXIST, 400 -> EINVAL, 403 -> EACCES, else EIO). */
int lxm_client_request(struct lxm_client *c, const char *method, const char *path,
		       const json_t *body, json_t **ret_metadata, struct lxm_client_response *opt,
		       struct lxm_error **err);

/* GET of a resource that is not JSON (a console log): on HTTP 200 *ret gets the body (NUL added,
 * not counted in *ret_len); any other status is decoded as LXD's error envelope. */
int lxm_client_get_raw(struct lxm_client *c, const char *path, char **ret, size_t *ret_len,
		       struct lxm_error **err);

/* A request on /1.0/instances/NAME/files, whose bodies are raw bytes, not JSON, on success. */
struct lxm_client_file {
	const char *const *headers; /* in: extra "Name: value" request headers, NULL-terminated */
	int upload_fd;		    /* in: POST body streamed from this fd, or -1 */
	int64_t upload_size;	    /* in: its length, -1 when unknown (sent chunked) */
	const char *upload_data;    /* in: POST body when upload_fd is -1 (NULL: empty) */
	size_t upload_len;	    /* in: bytes in upload_data */
	/* in: receives the content of a successful X-LXD-type: file reply as it arrives (other
	 * replies are kept in memory); returns 0, or -errno to stop and fail the request. */
	int (*sink)(const char *data, size_t len, void *ud);
	void *sink_ud; /* in: for sink */
	char *type;    /* out: the reply's X-LXD-type ("file", "directory", "symlink"), or NULL */
	long mode;     /* out: X-LXD-mode, -1 when absent */
	long uid;      /* out: X-LXD-uid, -1 when absent */
	long gid;      /* out: X-LXD-gid, -1 when absent */
	json_t *metadata; /* out: a JSON reply's metadata (a directory's entries), or NULL */
	char *body;	  /* out: a raw reply kept in memory (a symlink's target), or NULL */
	size_t body_len;  /* out: bytes in body */
};

/* Sends a files request: nothing is held in memory for an upload from upload_fd or a download
 * to sink. Errors as for lxm_client_request(); a failing sink or upload read fails with its
 * errno. Free the outputs with lxm_client_file_done(). */
int lxm_client_file_request(struct lxm_client *c, const char *method, const char *path,
			    struct lxm_client_file *f, struct lxm_error **err);
void lxm_client_file_done(struct lxm_client_file *f);

/* Blocks until the operation ("/1.0/operations/<id>" or a bare id) finishes, with
 * GET /1.0/operations/<id>/wait?timeout=-1. A Failure or Cancelled operation fails with the
 * operation's own `err`. *ret_op (when non-NULL) gets the final Operation. */
int lxm_client_wait_operation(struct lxm_client *c, const char *op, json_t **ret_op,
			      struct lxm_error **err);

/* Called while lxm_client_wait_operation() waits: with the Operation as it is, about four times a
 * second while it runs, and once with NULL when the wait is over. */
typedef void (*lxm_client_progress_fn)(const json_t *op, void *ud);
/* Makes the operation waits of c poll and report to fn (NULL: wait in one request). */
void lxm_client_set_progress(struct lxm_client *c, lxm_client_progress_fn fn, void *ud);

/* lxm_client_request() and, when the reply is async, lxm_client_wait_operation(): what commands
 * that change things want. *ret gets the sync metadata or the finished Operation. */
int lxm_client_do(struct lxm_client *c, const char *method, const char *path, const json_t *body,
		  json_t **ret, struct lxm_error **err);

/* GET /1.0, fetched once per client. The reference stays owned by the client. */
int lxm_client_server(struct lxm_client *c, const json_t **ret, struct lxm_error **err);

/* Whether GET /1.0 listed the API extension; false when /1.0 was not fetched. */
bool lxm_client_has_extension(struct lxm_client *c, const char *name);

/* Turns a raw HTTP reply into LXD's envelope checks (exposed for tests): not JSON, not an object
 * or without "type" -> -EPROTO "<socket> is not an lxmd/LXD API endpoint (unexpected reply: ...)";
 * an error envelope -> the server's error; otherwise *ret gets the envelope. body may be NULL
 * when len is 0 (no body came). */
int lxm_client_parse_reply(const char *socket, long http_status, const char *body, size_t len,
			   json_t **ret, struct lxm_error **err);

/* Percent-encodes everything but RFC 3986 unreserved characters, for names in URL paths and
 * query values. Returns NULL on allocation failure. */
char *lxm_url_escape(const char *s);
