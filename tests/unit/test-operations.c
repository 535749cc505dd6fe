/* Operations (wait, timeout, cancel, retention, teardown) and the events broadcaster, on a real
 * libuv loop that every test closes cleanly. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "events.h"
#include "json.h"
#include "operations.h"
#include "tap.h"

struct ctx {
	int changes;	   /* listener calls */
	int last_status;   /* status seen by the listener last */
	int waits_done;	   /* wait callbacks */
	int waits_timeout; /* of which timed out */
	int waits_null;	   /* of which came from teardown */
	uv_timer_t timer;  /* finishes the slow operation */
	struct lxm_operation *slow;
};

static void listener(struct lxm_operation *op, void *ud)
{
	struct ctx *c = ud;

	c->changes++;
	c->last_status = lxm_operation_status(op);
}

static void waited(struct lxm_operation *op, bool timed_out, void *ud)
{
	struct ctx *c = ud;

	c->waits_done++;
	c->waits_timeout += timed_out;
	c->waits_null += op == NULL;
}

static void finish_slow(uv_timer_t *t)
{
	struct ctx *c = t->data;

	lxm_operation_finish(c->slow, NULL);
	uv_close((uv_handle_t *)t, NULL);
}

static int run_slow(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct ctx *c = data;

	c->slow = op;
	uv_timer_start(&c->timer, finish_slow, 50, 0);
	return 0;
}

static int run_fail(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	return lxm_error_set(err, -ENOENT, 404, "thing 'x' not found");
}

static int run_nothing(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	return 0;
}

static int cancel_now(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct lxm_error *e = NULL;

	lxm_error_set(&e, -ECANCELED, 400, "cancelled by request");
	lxm_operation_finish(op, e);
	return 0;
}

static void test_wait_and_timeout(void)
{
	uv_loop_t loop;
	struct lxm_operations *ops;
	struct lxm_operation *op;
	struct ctx c = { 0 };
	json_t *j;

	uv_loop_init(&loop);
	uv_timer_init(&loop, &c.timer);
	c.timer.data = &c;
	ok(lxm_operations_new(&loop, 100, listener, &c, &ops) == 0, "table created");
	ok(lxm_operation_new(ops, LXM_OP_TASK, "Slow thing",
			     json_pack("{s:[s]}", "instances", "/1.0/instances/c1"), run_slow, NULL,
			     &c, NULL, &op) == 0,
	   "operation created");
	is_int(lxm_operation_status(op), LXM_STATUS_PENDING, "new operation is pending");
	lxm_operation_start(op);
	is_int(lxm_operation_status(op), LXM_STATUS_RUNNING, "started operation is running");
	ok(lxm_operation_wait(op, 10, waited, &c, NULL) == 0, "wait with 10 ms timeout");
	ok(lxm_operation_wait(op, -1, waited, &c, NULL) == 0, "wait forever");
	j = lxm_operation_to_json(op);
	is_str(json_string_value(json_object_get(j, "status")), "Running", "json status Running");
	is_str(json_string_value(json_object_get(j, "class")), "task", "json class task");
	ok(json_is_false(json_object_get(j, "may_cancel")), "no cancel function: may_cancel false");
	ok(strchr(json_string_value(json_object_get(j, "created_at")), 'Z') != NULL,
	   "created_at has a zone");
	json_decref(j);

	uv_run(&loop, UV_RUN_DEFAULT);
	is_int(c.waits_done, 2, "both waits answered");
	is_int(c.waits_timeout, 1, "the short one timed out");
	is_int(c.last_status, LXM_STATUS_SUCCESS, "listener saw Success last");
	ok(c.changes >= 3, "listener saw create, running and final (%d)", c.changes);
	ok(lxm_operation_find(ops, "no-such-id") == NULL, "unknown id not found");

	/* Retention (100 ms) has passed once the loop ran dry: the operation is gone. */
	ok(lxm_operations_running(ops) == 0, "nothing running");
	{
		struct lxm_operation **v;
		size_t n;

		lxm_operations_list(ops, &v, &n);
		is_int(n, 0, "ended operation removed after retention");
		free(v);
	}
	lxm_operations_free(ops);
	uv_run(&loop, UV_RUN_DEFAULT);
	is_int(uv_loop_close(&loop), 0, "loop closes cleanly");
}

static void test_fail_cancel_teardown(void)
{
	uv_loop_t loop;
	struct lxm_operations *ops;
	struct lxm_operation *failing, *cancelable, *fixed, *stuck;
	struct lxm_error *err = NULL;
	struct ctx c = { 0 };
	json_t *j;

	uv_loop_init(&loop);
	lxm_operations_new(&loop, 60000, listener, &c, &ops);

	lxm_operation_new(ops, LXM_OP_TASK, "Failing", NULL, run_fail, NULL, NULL, NULL, &failing);
	lxm_operation_start(failing);
	is_int(lxm_operation_status(failing), LXM_STATUS_FAILURE, "failed run ends as Failure");
	j = lxm_operation_to_json(failing);
	is_str(json_string_value(json_object_get(j, "err")), "thing 'x' not found",
	       "err carries the message");
	json_decref(j);
	ok(lxm_operation_wait(failing, -1, waited, &c, NULL) == 0 && c.waits_done == 1,
	   "wait on an ended operation answers at once");

	lxm_operation_new(ops, LXM_OP_TASK, "Cancelable", NULL, run_nothing, cancel_now, NULL, NULL,
			  &cancelable);
	lxm_operation_start(cancelable);
	j = lxm_operation_to_json(cancelable);
	ok(json_is_true(json_object_get(j, "may_cancel")), "may_cancel true while running");
	json_decref(j);
	ok(lxm_operation_cancel(cancelable, &err) == 0, "cancel accepted");
	is_int(lxm_operation_status(cancelable), LXM_STATUS_CANCELLED, "status Cancelled");
	ok(lxm_operation_cancel(cancelable, &err) == -EALREADY && err && err->status == 400,
	   "cancel of an ended operation: 400");
	lxm_error_free(TAKE_PTR(err));

	lxm_operation_new(ops, LXM_OP_TASK, "Fixed", NULL, run_nothing, NULL, NULL, NULL, &fixed);
	lxm_operation_start(fixed);
	ok(lxm_operation_cancel(fixed, &err) == -EPERM && err && err->status == 403,
	   "cancel of a non-cancelable operation: 403");
	lxm_error_free(TAKE_PTR(err));

	/* Teardown with a pending wait: the waiter hears about it (op NULL). */
	lxm_operation_new(ops, LXM_OP_TASK, "Stuck", NULL, run_nothing, NULL, NULL, NULL, &stuck);
	lxm_operation_start(stuck);
	c.waits_done = 0;
	lxm_operation_wait(stuck, 5000, waited, &c, NULL);
	{
		struct lxm_op_wait *w = NULL;

		lxm_operation_wait(stuck, -1, waited, &c, &w);
		ok(w != NULL, "pending wait has a handle");
		lxm_operation_wait_abort(w);
	}
	is_int(lxm_operations_running(ops), 2, "two operations still running");
	lxm_operations_free(ops);
	is_int(c.waits_null, 1, "teardown ended the pending wait (aborted one silent)");
	uv_run(&loop, UV_RUN_DEFAULT);
	is_int(uv_loop_close(&loop), 0, "loop closes cleanly after teardown with timers");
}

struct sink {
	int got;	/* events received */
	int dropped;	/* drop callbacks */
	int fail;	/* make send fail with this */
	char last[512]; /* last event text */
};

static int sink_send(void *s, const char *text, size_t len)
{
	struct sink *k = s;

	if (k->fail)
		return k->fail;
	k->got++;
	snprintf(k->last, sizeof(k->last), "%.*s", (int)len, text);
	return 0;
}

static void sink_drop(void *s, int reason)
{
	((struct sink *)s)->dropped++;
}

static void test_events(void)
{
	struct lxm_events *ev;
	struct lxm_event_sub *a, *b, *slow;
	struct sink sa = { 0 }, sb = { 0 }, ss = { .fail = -ENOBUFS };
	struct lxm_error *err = NULL;
	unsigned mask = 0;
	json_t *j;

	ok(lxm_events_new(&ev) == 0, "events created");
	ok(lxm_events_parse_types("operation,lifecycle", &mask, NULL) == 0 &&
		   mask == ((1u << LXM_EVENT_OPERATION) | (1u << LXM_EVENT_LIFECYCLE)),
	   "types parsed");
	ok(lxm_events_parse_types("operation,bogus", &mask, &err) == -EINVAL && err &&
		   strstr(err->msg, "bogus"),
	   "unknown type refused, named");
	lxm_error_free(TAKE_PTR(err));
	lxm_events_parse_types(NULL, &mask, NULL);
	lxm_events_subscribe(ev, mask, sink_send, sink_drop, &sa, &a);
	lxm_events_subscribe(ev, 1u << LXM_EVENT_LIFECYCLE, sink_send, sink_drop, &sb, &b);
	lxm_events_subscribe(ev, mask, sink_send, sink_drop, &ss, &slow);
	is_int(lxm_events_subscribers(ev), 3, "three subscribers");

	lxm_events_emit(ev, LXM_EVENT_OPERATION, json_pack("{s:s}", "id", "x"));
	is_int(sa.got, 1, "all-types subscriber got the operation event");
	is_int(sb.got, 0, "lifecycle-only subscriber did not");
	is_int(ss.dropped, 1, "failing subscriber dropped");
	is_int(lxm_events_subscribers(ev), 2, "two subscribers left");
	j = json_loads(sa.last, 0, NULL);
	is_str(json_string_value(json_object_get(j, "type")), "operation", "event type");
	is_str(json_string_value(json_object_get(j, "project")), "default", "event project");
	ok(strchr(json_string_value(json_object_get(j, "timestamp")), 'Z') != NULL,
	   "event timestamp RFC 3339 UTC");
	json_decref(j);

	lxm_events_lifecycle(ev, "instance-created", "/1.0/instances/c1", NULL);
	is_int(sb.got, 1, "lifecycle subscriber got the lifecycle event");
	j = json_loads(sb.last, 0, NULL);
	is_str(json_string_value(json_object_get(json_object_get(j, "metadata"), "action")),
	       "instance-created", "lifecycle action");
	json_decref(j);
	lxm_events_unsubscribe(b);
	is_int(lxm_events_subscribers(ev), 1, "unsubscribe");
	lxm_events_free(ev);
}

int main(void)
{
	test_wait_and_timeout();
	test_fail_cancel_teardown();
	test_events();
	return tap_done();
}
