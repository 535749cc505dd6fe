/* Operations: LXD's asynchronous tasks. Each has a UUID, a class, a status that moves from
 * Pending/Running to a final state (Success, Failure, Cancelled), and is kept for a retention time
 * after it ends so that clients can still read its result. Every change is reported to a listener
 * (the events broadcaster) and wakes the requests waiting on it. All of it runs on the loop thread.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "error.h"

/* LXD's status codes, as clients compare them. */
enum lxm_status_code {
	LXM_STATUS_OPERATION_CREATED = 100,
	LXM_STATUS_STARTED = 101,
	LXM_STATUS_STOPPED = 102,
	LXM_STATUS_RUNNING = 103,
	LXM_STATUS_CANCELLING = 104,
	LXM_STATUS_PENDING = 105,
	LXM_STATUS_STARTING = 106,
	LXM_STATUS_STOPPING = 107,
	LXM_STATUS_ABORTING = 108,
	LXM_STATUS_FREEZING = 109,
	LXM_STATUS_FROZEN = 110,
	LXM_STATUS_THAWED = 111,
	LXM_STATUS_ERROR = 112,
	LXM_STATUS_SUCCESS = 200,
	LXM_STATUS_FAILURE = 400,
	LXM_STATUS_CANCELLED = 401,
};

/* "Running", "Success", ...; "Unknown" otherwise. */
const char *lxm_status_name(int code);

enum lxm_op_class {
	LXM_OP_TASK,
	LXM_OP_WEBSOCKET,
	LXM_OP_TOKEN,
	_LXM_OP_CLASS_MAX,
};

struct lxm_operation;
struct lxm_operations;

/* Starts the work; called once on the loop thread by lxm_operation_start(). The work ends,
 * now or later, with lxm_operation_finish(). A negative return finishes it as a Failure with err.
 */
typedef int (*lxm_op_run_fn)(struct lxm_operation *op, void *data, struct lxm_error **err);
/* Asks running work to stop; it still ends with lxm_operation_finish() (Cancelled). NULL: the
 * operation cannot be cancelled. */
typedef int (*lxm_op_cancel_fn)(struct lxm_operation *op, void *data, struct lxm_error **err);

/* Called after every state change of any operation (created, running, metadata, final). */
typedef void (*lxm_op_listener_fn)(struct lxm_operation *op, void *userdata);

/* Called when a wait ends: final reached (timed_out false), timeout (true), or the table is being
 * torn down (op is NULL). */
typedef void (*lxm_op_wait_fn)(struct lxm_operation *op, bool timed_out, void *userdata);

int lxm_operations_new(uv_loop_t *loop, uint64_t retention_ms, lxm_op_listener_fn listener,
		       void *listener_data, struct lxm_operations **ret);
/* Ends every wait (callback with op NULL), frees every operation, and closes timers; frees the
 * table itself once the timers are closed (run the loop to let that happen). Running operations
 * are cancelled first where they can be. */
void lxm_operations_free(struct lxm_operations *ops);

/* Creates an operation in state Pending. resources is stolen (may be NULL); data is owned by the
 * operation when free_data is set. */
int lxm_operation_new(struct lxm_operations *ops, enum lxm_op_class cls, const char *description,
		      json_t *resources, lxm_op_run_fn run, lxm_op_cancel_fn cancel, void *data,
		      void (*free_data)(void *), struct lxm_operation **ret);
/* Moves to Running and calls run. */
void lxm_operation_start(struct lxm_operation *op);
/* Replaces the metadata (stolen) and reports the change. */
void lxm_operation_set_metadata(struct lxm_operation *op, json_t *metadata);
/* Ends the operation: Success when err is NULL, Cancelled when err's errnum is ECANCELED, else
 * Failure with err's message. err is consumed. Wakes waiters and starts the retention timer. */
void lxm_operation_finish(struct lxm_operation *op, struct lxm_error *err);
/* Cancels a running cancelable operation: -EPERM (403) when it cannot be cancelled, -EALREADY
 * (400) when it has ended. */
int lxm_operation_cancel(struct lxm_operation *op, struct lxm_error **err);

struct lxm_operation *lxm_operation_find(struct lxm_operations *ops, const char *id);
/* Operations in creation order; n is set. The array is owned by the caller, not the elements. */
int lxm_operations_list(struct lxm_operations *ops, struct lxm_operation ***ret, size_t *ret_n);

const char *lxm_operation_id(const struct lxm_operation *op);
int lxm_operation_status(const struct lxm_operation *op);
bool lxm_operation_is_final(const struct lxm_operation *op);
struct lxm_operations *lxm_operation_table(const struct lxm_operation *op);
/* The LXD Operation object. */
json_t *lxm_operation_to_json(const struct lxm_operation *op);
/* "/1.0/operations/<id>" */
int lxm_operation_url(const struct lxm_operation *op, char **ret);

/* Waits for op to end: timeout_ms < 0 forever, 0 answers at once. When op has ended already, cb
 * runs before this returns. *ret_wait (optional) identifies the wait for lxm_operation_wait_abort,
 * and is NULL when cb already ran. */
struct lxm_op_wait;
int lxm_operation_wait(struct lxm_operation *op, int64_t timeout_ms, lxm_op_wait_fn cb,
		       void *userdata, struct lxm_op_wait **ret_wait);
/* Drops a pending wait without calling its callback (e.g. its client hung up). */
void lxm_operation_wait_abort(struct lxm_op_wait *w);

/* Operations that have not ended yet (the daemon waits for them before it exits). */
size_t lxm_operations_running(struct lxm_operations *ops);
