/* GET /1.0/operations/<id>/websocket?secret=S: the websockets of LXD's "websocket" operations
 * (exec, console). The session behind such an operation registers itself here while clients may
 * connect; the route finds it by operation and lets it take the upgrade request, which it matches
 * against the secrets it listed in the operation's metadata.fds. */
#pragma once

#include <stdbool.h>
#include <sys/queue.h>

#include "error.h"

struct lxmd_request;
struct lxm_operation;

/* Characters of a websocket secret (hex of 32 random bytes), without the NUL. */
#define LXMD_WS_SECRET_LEN 64

struct lxmd_ws_session_ops {
	/* Takes r, the upgrade request for the websocket that secret (non-empty) opens, with
	 * lxmd_request_upgrade(); or fails with err set (403 for a secret it does not know). */
	int (*connect)(void *data, struct lxmd_request *r, const char *secret,
		       struct lxm_error **err);
};

/* A registration, embedded in the session. */
struct lxmd_ws_session {
	LIST_ENTRY(lxmd_ws_session) link; /* in the registry while registered */
	struct lxm_operation *op;	  /* the operation clients name; NULL when unregistered */
	const struct lxmd_ws_session_ops *ops; /* what connects */
	void *data;			       /* for ops */
};

/* Makes op's websockets reachable through ws until lxmd_ws_session_unregister(). */
void lxmd_ws_session_register(struct lxmd_ws_session *ws, struct lxm_operation *op,
			      const struct lxmd_ws_session_ops *ops, void *data);
/* Idempotent; also fine on a registration that was never made (zero-initialised). */
void lxmd_ws_session_unregister(struct lxmd_ws_session *ws);

/* A new random secret: LXMD_WS_SECRET_LEN hex characters and a NUL. */
int lxmd_ws_secret_new(char out[static LXMD_WS_SECRET_LEN + 1]);
/* Compares secrets in constant time (for equal lengths). */
bool lxmd_ws_secret_equal(const char *a, const char *b);

/* For a session's connect(): checks that the websocket the request's secret picked may be
 * connected. name is the one it picked (NULL when the secret opens none: 403), used tells
 * whether a client has already connected it, ended whether the session is over. */
int lxmd_ws_connect_check(struct lxmd_request *r, const char *name, bool used, bool ended,
			  struct lxm_error **err);
