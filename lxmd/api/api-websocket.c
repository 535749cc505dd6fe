/* GET /1.0/operations/<id>/websocket: finds the session that registered for the operation and
 * lets it take the connection (see api-websocket.h). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "api.h"
#include "api/api-websocket.h"
#include "cleanup.h"
#include "daemon.h"
#include "operations.h"
#include "server.h"
#include "util.h"

/* Sessions whose operation may still be connected to. */
static LIST_HEAD(, lxmd_ws_session) registry = LIST_HEAD_INITIALIZER(registry);

void lxmd_ws_session_register(struct lxmd_ws_session *ws, struct lxm_operation *op,
			      const struct lxmd_ws_session_ops *ops, void *data)
{
	lxmd_ws_session_unregister(ws);
	ws->op = op;
	ws->ops = ops;
	ws->data = data;
	LIST_INSERT_HEAD(&registry, ws, link);
}

void lxmd_ws_session_unregister(struct lxmd_ws_session *ws)
{
	if (!ws->op)
		return;
	LIST_REMOVE(ws, link);
	ws->op = NULL;
}

int lxmd_ws_secret_new(char out[static LXMD_WS_SECRET_LEN + 1])
{
	return lxm_random_hex(out, LXMD_WS_SECRET_LEN / 2);
}

bool lxmd_ws_secret_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = la != lb;

	for (size_t i = 0; i < la && i < lb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

int lxmd_ws_connect_check(struct lxmd_request *r, const char *name, bool used, bool ended,
			  struct lxm_error **err)
{
	if (!name)
		return lxm_error_set(err, -EACCES, 403, "operation '%s': wrong websocket secret",
				     r->args[0]);
	if (used)
		return lxm_error_set(err, -EBUSY, 400,
				     "operation '%s': websocket '%s' is already connected",
				     r->args[0], name);
	if (ended)
		return lxm_error_set(err, -EINVAL, 400, "operation '%s' has ended", r->args[0]);
	return 0;
}

static struct lxmd_ws_session *session_find(const struct lxm_operation *op)
{
	struct lxmd_ws_session *ws;

	LIST_FOREACH(ws, &registry, link)
	if (ws->op == op)
		return ws;
	return NULL;
}

int lxmd_api_operation_websocket_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *secret = NULL;
	struct lxm_operation *op;
	struct lxmd_ws_session *ws;

	op = lxm_operation_find(r->d->ops, r->args[0]);
	if (!op)
		return lxm_error_set(err, -ENOENT, 404, "operation '%s' not found", r->args[0]);
	if (lxm_http_query_get(r->http->query, "secret", &secret) < 0 || !*secret)
		return lxm_error_set(err, -EINVAL, 400,
				     "operation '%s': missing ?secret= for its websocket",
				     r->args[0]);
	ws = session_find(op);
	if (!ws)
		return lxm_error_set(err, -EINVAL, 400, "operation '%s' has no websockets",
				     r->args[0]);
	return ws->ops->connect(ws->data, r, secret, err);
}
