/* GET /1.0/events: a websocket that receives every event of the requested types. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "events.h"
#include "log.h"
#include "server.h"

struct events_client {
	struct lxmd_conn *conn;	   /* the websocket */
	struct lxm_event_sub *sub; /* NULL once dropped */
};

static int client_send(void *sink, const char *text, size_t len)
{
	struct events_client *c = sink;

	return lxmd_conn_ws_send(c->conn, LXM_WS_TEXT, text, len);
}

static void client_drop(void *sink, int reason)
{
	struct events_client *c = sink;

	c->sub = NULL;
	if (reason == -ENOBUFS)
		log_warn("events: dropping a subscriber that does not read its events");
	lxmd_conn_close(c->conn);
}

static void client_close(void *ud)
{
	struct events_client *c = ud;

	lxm_events_unsubscribe(c->sub);
	free(c);
}

static const struct lxmd_ws_ops events_ws_ops = {
	/* Clients never send anything that matters on this socket. */
	.on_message = NULL,
	.on_close = client_close,
};

int lxmd_api_events_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *types = NULL;
	_cleanup_free_ struct events_client *c = NULL;
	unsigned mask;
	int k;

	k = lxmd_query_project(r, err);
	if (k < 0)
		return k;
	(void)lxm_http_query_get(r->http->query, "type", &types);
	k = lxm_events_parse_types(types, &mask, err);
	if (k < 0)
		return k;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	k = lxm_events_subscribe(r->d->events, mask, client_send, client_drop, c, &c->sub);
	if (k < 0)
		return k;
	k = lxmd_request_upgrade(r, &events_ws_ops, c, &c->conn, err);
	if (k < 0) {
		lxm_events_unsubscribe(c->sub);
		return k;
	}
	TAKE_PTR(c);
	return 0;
}
