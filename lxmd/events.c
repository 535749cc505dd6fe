#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cleanup.h"
#include "events.h"
#include "json.h"
#include "util.h"

struct lxm_event_sub {
	TAILQ_ENTRY(lxm_event_sub) link; /* in ev->subs */
	struct lxm_events *ev;		 /* the owner */
	unsigned mask;			 /* 1 << enum lxm_event_type for each wanted type */
	lxm_event_send_fn send;		 /* delivers one event */
	lxm_event_drop_fn drop;		 /* told when the subscriber is dropped */
	void *sink;			 /* for send and drop */
};

struct lxm_events {
	TAILQ_HEAD(, lxm_event_sub) subs; /* current subscribers */
	size_t n;			  /* entries in subs */
};

static const char *const type_names[_LXM_EVENT_TYPE_MAX] = {
	[LXM_EVENT_OPERATION] = "operation",
	[LXM_EVENT_LOGGING] = "logging",
	[LXM_EVENT_LIFECYCLE] = "lifecycle",
};

int lxm_events_new(struct lxm_events **ret)
{
	struct lxm_events *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return -ENOMEM;
	TAILQ_INIT(&ev->subs);
	*ret = ev;
	return 0;
}

void lxm_events_free(struct lxm_events *ev)
{
	struct lxm_event_sub *s;

	if (!ev)
		return;
	while ((s = TAILQ_FIRST(&ev->subs)))
		lxm_events_unsubscribe(s);
	free(ev);
}

int lxm_events_parse_types(const char *csv, unsigned *ret_mask, struct lxm_error **err)
{
	_cleanup_free_ char *copy = NULL;
	unsigned mask = 0;
	char *save = NULL;

	if (!csv || !*csv) {
		*ret_mask = (1u << _LXM_EVENT_TYPE_MAX) - 1;
		return 0;
	}
	copy = strdup(csv);
	if (!copy)
		return -ENOMEM;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int found = -1;

		for (int i = 0; i < _LXM_EVENT_TYPE_MAX; i++)
			if (streq(t, type_names[i]))
				found = i;
		if (found < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "unknown event type '%s' (valid: operation, logging, "
					     "lifecycle)",
					     t);
		mask |= 1u << found;
	}
	*ret_mask = mask;
	return 0;
}

int lxm_events_subscribe(struct lxm_events *ev, unsigned mask, lxm_event_send_fn send,
			 lxm_event_drop_fn drop, void *sink, struct lxm_event_sub **ret)
{
	struct lxm_event_sub *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->ev = ev;
	s->mask = mask;
	s->send = send;
	s->drop = drop;
	s->sink = sink;
	TAILQ_INSERT_TAIL(&ev->subs, s, link);
	ev->n++;
	*ret = s;
	return 0;
}

void lxm_events_unsubscribe(struct lxm_event_sub *s)
{
	if (!s)
		return;
	TAILQ_REMOVE(&s->ev->subs, s, link);
	s->ev->n--;
	free(s);
}

size_t lxm_events_subscribers(const struct lxm_events *ev)
{
	return ev->n;
}

void lxm_events_emit(struct lxm_events *ev, enum lxm_event_type type, json_t *metadata)
{
	_cleanup_json_ json_t *e = NULL;
	_cleanup_free_ char *text = NULL;
	char ts[LXM_RFC3339_MAX];
	struct lxm_event_sub *s, *next;
	size_t len;

	if (TAILQ_EMPTY(&ev->subs)) {
		json_decref(metadata);
		return;
	}
	e = json_pack("{s:s, s:s, s:o, s:s, s:s}", "type", type_names[type], "timestamp",
		      lxm_rfc3339_now(ts), "metadata", metadata ? metadata : json_null(),
		      "location", "none", "project", "default");
	if (!e)
		return;
	text = lxm_json_dump(e);
	if (!text)
		return;
	len = strlen(text);

	/* A send may fail and drop its subscriber: walk with a saved successor. */
	for (s = TAILQ_FIRST(&ev->subs); s; s = next) {
		next = TAILQ_NEXT(s, link);
		if (!(s->mask & (1u << type)))
			continue;
		int r = s->send(s->sink, text, len);

		if (r < 0) {
			lxm_event_drop_fn drop = s->drop;
			void *sink = s->sink;

			lxm_events_unsubscribe(s);
			if (drop)
				drop(sink, r);
		}
	}
}

void lxm_events_lifecycle(struct lxm_events *ev, const char *action, const char *source,
			  json_t *context)
{
	json_t *m = json_pack("{s:s, s:s, s:o, s:n}", "action", action, "source", source, "context",
			      context ? context : json_object(), "requestor");

	if (m)
		lxm_events_emit(ev, LXM_EVENT_LIFECYCLE, m);
}
