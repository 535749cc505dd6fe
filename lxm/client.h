/* The CLI's HTTP client for lxmd's REST API (LXD's API 1.0) over its unix socket, with libcurl.
 * It speaks LXD's envelope: sync replies give their metadata, async replies give the operation,
 * error replies become a struct lxm_error carrying the server's message and status. Connection
 * problems become one-line errors that tell the user what to do. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

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

/* Blocks until the operation ("/1.0/operations/<id>" or a bare id) finishes, with
 * GET /1.0/operations/<id>/wait?timeout=-1. A Failure or Cancelled operation fails with the
 * operation's own `err`. *ret_op (when non-NULL) gets the final Operation. */
int lxm_client_wait_operation(struct lxm_client *c, const char *op, json_t **ret_op,
			      struct lxm_error **err);

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
 * an error envelope -> the server's error; otherwise *ret gets the envelope. */
int lxm_client_parse_reply(const char *socket, long http_status, const char *body, size_t len,
			   json_t **ret, struct lxm_error **err);

/* Percent-encodes everything but RFC 3986 unreserved characters, for names in URL paths and
 * query values. Returns NULL on allocation failure. */
char *lxm_url_escape(const char *s);
