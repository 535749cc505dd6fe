#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cleanup.h"
#include "json.h"
#include "operations.h"
#include "util.h"

struct lxm_op_wait {
	TAILQ_ENTRY(lxm_op_wait) link; /* in op->waits */
	struct lxm_operation *op;      /* the operation waited on */
	struct lxm_operations *table;  /* op's table, which outlives op for the timer's close */
	lxm_op_wait_fn cb;	       /* called once, unless aborted */
	void *userdata;		       /* passed to cb */
	uv_timer_t timer;	       /* the timeout, when one was asked for */
	bool has_timer;		       /* whether timer was initialised (and must be closed) */
};

struct lxm_operation {
	TAILQ_ENTRY(lxm_operation) link; /* in ops->all, creation order */
	struct lxm_operations *table;	 /* the owner */
	char id[37];			 /* UUID */
	enum lxm_op_class cls;		 /* task, websocket, token */
	char *description;		 /* "Creating instance" */
	int64_t created_at;		 /* ns since the epoch */
	int64_t updated_at;		 /* ns since the epoch */
	int status;			 /* enum lxm_status_code */
	json_t *resources;		 /* {"instances":[url...], ...} or NULL */
	json_t *metadata;		 /* free-form, or NULL */
	char *err;			 /* failure message, or NULL */
	lxm_op_run_fn run;		 /* starts the work */
	lxm_op_cancel_fn cancel;	 /* stops it, or NULL */
	void *data;			 /* for run/cancel */
	void (*free_data)(void *);	 /* frees data, or NULL */
	TAILQ_HEAD(, lxm_op_wait) waits; /* requests waiting for the end */
	uv_timer_t expire;		 /* removes the operation after retention */
	bool expire_started;		 /* expire runs (the handle is always initialised) */
};

struct lxm_operations {
	uv_loop_t *loop;		 /* the daemon's loop */
	uint64_t retention_ms;		 /* how long ended operations stay listed */
	lxm_op_listener_fn listener;	 /* told about every change, or NULL */
	void *listener_data;		 /* for listener */
	TAILQ_HEAD(, lxm_operation) all; /* live and retained operations */
	size_t n;			 /* entries in all */
	size_t closing;			 /* handles whose close callback is pending */
	bool freeing;			 /* lxm_operations_free() was called */
};

static const char *const class_names[_LXM_OP_CLASS_MAX] = {
	[LXM_OP_TASK] = "task",
	[LXM_OP_WEBSOCKET] = "websocket",
	[LXM_OP_TOKEN] = "token",
};

const char *lxm_status_name(int code)
{
	switch (code) {
	case LXM_STATUS_OPERATION_CREATED:
		return "Operation created";
	case LXM_STATUS_STARTED:
		return "Started";
	case LXM_STATUS_STOPPED:
		return "Stopped";
	case LXM_STATUS_RUNNING:
		return "Running";
	case LXM_STATUS_CANCELLING:
		return "Cancelling";
	case LXM_STATUS_PENDING:
		return "Pending";
	case LXM_STATUS_STARTING:
		return "Starting";
	case LXM_STATUS_STOPPING:
		return "Stopping";
	case LXM_STATUS_ABORTING:
		return "Aborting";
	case LXM_STATUS_FREEZING:
		return "Freezing";
	case LXM_STATUS_FROZEN:
		return "Frozen";
	case LXM_STATUS_THAWED:
		return "Thawed";
	case LXM_STATUS_ERROR:
		return "Error";
	case LXM_STATUS_SUCCESS:
		return "Success";
	case LXM_STATUS_FAILURE:
		return "Failure";
	case LXM_STATUS_CANCELLED:
		return "Cancelled";
	default:
		return "Unknown";
	}
}

static void table_maybe_free(struct lxm_operations *ops)
{
	if (ops->freeing && ops->closing == 0 && TAILQ_EMPTY(&ops->all))
		free(ops);
}

static void notify(struct lxm_operation *op)
{
	op->updated_at = lxm_now_ns();
	if (op->table->listener && !op->table->freeing)
		op->table->listener(op, op->table->listener_data);
}

int lxm_operations_new(uv_loop_t *loop, uint64_t retention_ms, lxm_op_listener_fn listener,
		       void *listener_data, struct lxm_operations **ret)
{
	struct lxm_operations *ops = calloc(1, sizeof(*ops));

	if (!ops)
		return -ENOMEM;
	ops->loop = loop;
	ops->retention_ms = retention_ms;
	ops->listener = listener;
	ops->listener_data = listener_data;
	TAILQ_INIT(&ops->all);
	*ret = ops;
	return 0;
}

static void wait_closed(uv_handle_t *h)
{
	struct lxm_op_wait *w = h->data;
	struct lxm_operations *ops = w->table;

	free(w);
	ops->closing--;
	table_maybe_free(ops);
}

/* Unlinks w and releases it (its timer is closed first); calling back is the caller's business. */
static void wait_release(struct lxm_op_wait *w)
{
	TAILQ_REMOVE(&w->op->waits, w, link);
	w->op = NULL;
	if (w->has_timer) {
		w->table->closing++;
		uv_close((uv_handle_t *)&w->timer, wait_closed);
		return;
	}
	free(w);
}

static void op_closed(uv_handle_t *h)
{
	struct lxm_operation *op = h->data;
	struct lxm_operations *ops = op->table;

	if (op->free_data)
		op->free_data(op->data);
	json_decref(op->resources);
	json_decref(op->metadata);
	free(op->description);
	free(op->err);
	free(op);
	ops->closing--;
	table_maybe_free(ops);
}

static void op_remove(struct lxm_operation *op)
{
	struct lxm_operations *ops = op->table;

	TAILQ_REMOVE(&ops->all, op, link);
	ops->n--;
	ops->closing++;
	uv_close((uv_handle_t *)&op->expire, op_closed);
}

static void op_expired(uv_timer_t *t)
{
	op_remove(t->data);
}

int lxm_operation_new(struct lxm_operations *ops, enum lxm_op_class cls, const char *description,
		      json_t *resources, lxm_op_run_fn run, lxm_op_cancel_fn cancel, void *data,
		      void (*free_data)(void *), struct lxm_operation **ret)
{
	struct lxm_operation *op;
	int r;

	op = calloc(1, sizeof(*op));
	if (!op) {
		json_decref(resources);
		return -ENOMEM;
	}
	r = lxm_uuid4(op->id);
	op->description = strdup(description ? description : "");
	if (r < 0 || !op->description) {
		free(op->description);
		free(op);
		json_decref(resources);
		return r < 0 ? r : -ENOMEM;
	}
	op->table = ops;
	op->cls = cls;
	op->created_at = op->updated_at = lxm_now_ns();
	op->status = LXM_STATUS_PENDING;
	op->resources = resources;
	op->run = run;
	op->cancel = cancel;
	op->data = data;
	op->free_data = free_data;
	TAILQ_INIT(&op->waits);
	uv_timer_init(ops->loop, &op->expire);
	op->expire.data = op;
	TAILQ_INSERT_TAIL(&ops->all, op, link);
	ops->n++;
	notify(op);
	*ret = op;
	return 0;
}

void lxm_operation_start(struct lxm_operation *op)
{
	struct lxm_error *err = NULL;

	op->status = LXM_STATUS_RUNNING;
	notify(op);
	if (op->run && op->run(op, op->data, &err) < 0) {
		if (!err)
			lxm_error_set(&err, -EIO, 500, "%s: failed", op->description);
		lxm_operation_finish(op, err);
	}
}

void lxm_operation_set_metadata(struct lxm_operation *op, json_t *metadata)
{
	json_decref(op->metadata);
	op->metadata = metadata;
	notify(op);
}

void lxm_operation_finish(struct lxm_operation *op, struct lxm_error *err)
{
	struct lxm_op_wait *w;

	if (lxm_operation_is_final(op)) {
		lxm_error_free(err);
		return;
	}
	if (!err) {
		op->status = LXM_STATUS_SUCCESS;
	} else {
		op->status = err->errnum == ECANCELED ? LXM_STATUS_CANCELLED : LXM_STATUS_FAILURE;
		op->err = strdup(err->msg ? err->msg : "failed");
		lxm_error_free(err);
	}
	notify(op);

	/* Each waiter is released before its callback, so a callback may add a new wait. */
	while ((w = TAILQ_FIRST(&op->waits))) {
		lxm_op_wait_fn cb = w->cb;
		void *ud = w->userdata;

		wait_release(w);
		cb(op, false, ud);
	}
	if (!op->table->freeing) {
		op->expire_started = true;
		uv_timer_start(&op->expire, op_expired, op->table->retention_ms, 0);
	}
}

int lxm_operation_cancel(struct lxm_operation *op, struct lxm_error **err)
{
	int r;

	if (lxm_operation_is_final(op))
		return lxm_error_set(err, -EALREADY, 400, "operation %s has already ended (%s)",
				     op->id, lxm_status_name(op->status));
	if (!op->cancel)
		return lxm_error_set(err, -EPERM, 403, "operation %s (%s) cannot be cancelled",
				     op->id, op->description);
	r = op->cancel(op, op->data, err);
	if (r < 0)
		return r;
	if (!lxm_operation_is_final(op)) {
		op->status = LXM_STATUS_CANCELLING;
		notify(op);
	}
	return 0;
}

struct lxm_operation *lxm_operation_find(struct lxm_operations *ops, const char *id)
{
	struct lxm_operation *op;

	TAILQ_FOREACH(op, &ops->all, link)
	if (streq(op->id, id))
		return op;
	return NULL;
}

int lxm_operations_list(struct lxm_operations *ops, struct lxm_operation ***ret, size_t *ret_n)
{
	struct lxm_operation **v, *op;
	size_t i = 0;

	v = calloc(ops->n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	TAILQ_FOREACH(op, &ops->all, link)
	v[i++] = op;
	*ret = v;
	*ret_n = i;
	return 0;
}

const char *lxm_operation_id(const struct lxm_operation *op)
{
	return op->id;
}

int lxm_operation_status(const struct lxm_operation *op)
{
	return op->status;
}

bool lxm_operation_is_final(const struct lxm_operation *op)
{
	return op->status >= 200;
}

struct lxm_operations *lxm_operation_table(const struct lxm_operation *op)
{
	return op->table;
}

int lxm_operation_url(const struct lxm_operation *op, char **ret)
{
	return asprintf(ret, "/1.0/operations/%s", op->id) < 0 ? -ENOMEM : 0;
}

json_t *lxm_operation_to_json(const struct lxm_operation *op)
{
	char created[LXM_RFC3339_MAX], updated[LXM_RFC3339_MAX];
	struct timespec tc = { op->created_at / 1000000000LL, op->created_at % 1000000000LL };
	struct timespec tu = { op->updated_at / 1000000000LL, op->updated_at % 1000000000LL };

	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:O?, s:O?, s:b, s:s, s:s}", "id",
			 op->id, "class", class_names[op->cls], "description", op->description,
			 "created_at", lxm_rfc3339(&tc, created), "updated_at",
			 lxm_rfc3339(&tu, updated), "status", lxm_status_name(op->status),
			 "status_code", op->status, "resources", op->resources, "metadata",
			 op->metadata, "may_cancel",
			 op->cancel != NULL && !lxm_operation_is_final(op), "err",
			 op->err ? op->err : "", "location", "none");
}

static void wait_timed_out(uv_timer_t *t)
{
	struct lxm_op_wait *w = t->data;
	struct lxm_operation *op = w->op;
	lxm_op_wait_fn cb = w->cb;
	void *ud = w->userdata;

	wait_release(w);
	cb(op, true, ud);
}

int lxm_operation_wait(struct lxm_operation *op, int64_t timeout_ms, lxm_op_wait_fn cb,
		       void *userdata, struct lxm_op_wait **ret_wait)
{
	struct lxm_op_wait *w;

	if (ret_wait)
		*ret_wait = NULL;
	if (lxm_operation_is_final(op) || timeout_ms == 0) {
		cb(op, !lxm_operation_is_final(op), userdata);
		return 0;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->op = op;
	w->table = op->table;
	w->cb = cb;
	w->userdata = userdata;
	w->timer.data = w;
	if (timeout_ms > 0) {
		uv_timer_init(op->table->loop, &w->timer);
		w->has_timer = true;
		uv_timer_start(&w->timer, wait_timed_out, (uint64_t)timeout_ms, 0);
	}
	TAILQ_INSERT_TAIL(&op->waits, w, link);
	if (ret_wait)
		*ret_wait = w;
	return 0;
}

void lxm_operation_wait_abort(struct lxm_op_wait *w)
{
	if (w)
		wait_release(w);
}

void lxm_operations_free(struct lxm_operations *ops)
{
	struct lxm_operation *op;

	if (!ops)
		return;
	ops->freeing = true;
	/* Running work gets the chance to stop; whatever it still holds is released below. */
	TAILQ_FOREACH(op, &ops->all, link)
	if (!lxm_operation_is_final(op) && op->cancel)
		op->cancel(op, op->data, NULL);
	while ((op = TAILQ_FIRST(&ops->all))) {
		struct lxm_op_wait *w;

		while ((w = TAILQ_FIRST(&op->waits))) {
			lxm_op_wait_fn cb = w->cb;
			void *ud = w->userdata;

			wait_release(w);
			cb(NULL, false, ud);
		}
		if (op->expire_started)
			uv_timer_stop(&op->expire);
		op_remove(op);
	}
	table_maybe_free(ops);
}

size_t lxm_operations_running(struct lxm_operations *ops)
{
	struct lxm_operation *op;
	size_t n = 0;

	TAILQ_FOREACH(op, &ops->all, link)
	n += !lxm_operation_is_final(op);
	return n;
}
