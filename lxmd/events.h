/* The /1.0/events broadcaster: each event is serialised once and offered to every subscriber whose
 * type filter matches. A subscriber that cannot keep up is dropped rather than slowing the loop. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "error.h"

enum lxm_event_type {
	LXM_EVENT_OPERATION,
	LXM_EVENT_LOGGING,
	LXM_EVENT_LIFECYCLE,
	_LXM_EVENT_TYPE_MAX,
};

struct lxm_events;
struct lxm_event_sub;

/* Sends one serialised event to a subscriber. A negative return (e.g. -ENOBUFS: the peer's queue is
 * over its limit) drops the subscriber: it is unsubscribed and then told through drop. */
typedef int (*lxm_event_send_fn)(void *sink, const char *text, size_t len);
typedef void (*lxm_event_drop_fn)(void *sink, int reason);

int lxm_events_new(struct lxm_events **ret);
/* Unsubscribes everyone (without calling drop) and frees. */
void lxm_events_free(struct lxm_events *ev);

/* Parses "operation,lifecycle" into a bit mask (1 << type). NULL or "" means every type. Unknown
 * names are a 400 error naming the type and listing the valid ones. */
int lxm_events_parse_types(const char *csv, unsigned *ret_mask, struct lxm_error **err);

int lxm_events_subscribe(struct lxm_events *ev, unsigned mask, lxm_event_send_fn send,
			 lxm_event_drop_fn drop, void *sink, struct lxm_event_sub **ret);
void lxm_events_unsubscribe(struct lxm_event_sub *sub);
size_t lxm_events_subscribers(const struct lxm_events *ev);

/* {"type":..., "timestamp":RFC3339, "metadata":metadata, "location":"none", "project":"default"}
 * to every matching subscriber. Steals metadata. */
void lxm_events_emit(struct lxm_events *ev, enum lxm_event_type type, json_t *metadata);

/* A lifecycle event: {"action":action, "source":source, "context":context or {}, "requestor":
 * null}. Steals context. */
void lxm_events_lifecycle(struct lxm_events *ev, const char *action, const char *source,
			  json_t *context);
