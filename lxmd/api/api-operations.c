/* /1.0/operations: list, show, cancel and wait for asynchronous operations. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "json.h"
#include "operations.h"
#include "server.h"
#include "util.h"

/* LXD groups operations by status name in lower case: {"running":[...],"success":[...]}. */
static const char *status_group(int status)
{
	switch (status) {
	case LXM_STATUS_SUCCESS:
		return "success";
	case LXM_STATUS_FAILURE:
		return "failure";
	case LXM_STATUS_CANCELLED:
		return "cancelled";
	case LXM_STATUS_PENDING:
		return "pending";
	case LXM_STATUS_CANCELLING:
		return "cancelling";
	default:
		return "running";
	}
}

int lxmd_api_operations_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ struct lxm_operation **v = NULL;
	_cleanup_json_ json_t *groups = json_object();
	size_t n = 0;
	int recursion, k;

	k = lxmd_query_recursion(r, &recursion, err);
	if (k < 0)
		return k;
	k = lxmd_query_project(r, err);
	if (k < 0)
		return k;
	k = lxm_operations_list(r->d->ops, &v, &n);
	if (k < 0)
		return k;
	for (size_t i = 0; i < n; i++) {
		const char *g = status_group(lxm_operation_status(v[i]));
		json_t *arr = json_object_get(groups, g);
		char *url = NULL;

		if (!arr) {
			arr = json_array();
			json_object_set_new(groups, g, arr);
		}
		if (recursion > 0) {
			json_array_append_new(arr, lxm_operation_to_json(v[i]));
		} else if (lxm_operation_url(v[i], &url) == 0) {
			json_array_append_new(arr, json_string(url));
			free(url);
		}
	}
	return lxmd_respond_sync(r, TAKE_PTR(groups), NULL);
}

static int find_op(struct lxmd_request *r, struct lxm_operation **ret, struct lxm_error **err)
{
	*ret = lxm_operation_find(r->d->ops, r->args[0]);
	if (!*ret)
		return lxm_error_set(err, -ENOENT, 404, "operation '%s' not found", r->args[0]);
	return 0;
}

int lxmd_api_operation_get(struct lxmd_request *r, struct lxm_error **err)
{
	struct lxm_operation *op;
	int k = find_op(r, &op, err);

	if (k < 0)
		return k;
	return lxmd_respond_sync(r, lxm_operation_to_json(op), NULL);
}

int lxmd_api_operation_delete(struct lxmd_request *r, struct lxm_error **err)
{
	struct lxm_operation *op;
	int k = find_op(r, &op, err);

	if (k < 0)
		return k;
	k = lxm_operation_cancel(op, err);
	if (k < 0)
		return k;
	return lxmd_respond_sync(r, NULL, NULL);
}

static void wait_done(struct lxm_operation *op, bool timed_out, void *ud)
{
	struct lxmd_request *r = ud;

	r->defer_data = NULL;
	if (!op) {
		struct lxm_error *err = NULL;

		lxm_error_set(&err, -ESHUTDOWN, 503, "lxmd is shutting down");
		lxmd_respond_error(r, err);
		return;
	}
	/* A timed-out wait answers with the operation as it is, as LXD does. */
	lxmd_respond_sync(r, lxm_operation_to_json(op), NULL);
}

static void wait_abort(struct lxmd_request *r)
{
	lxm_operation_wait_abort(r->defer_data);
	r->defer_data = NULL;
}

int lxmd_api_operation_wait(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *t = NULL;
	struct lxm_operation *op;
	struct lxm_op_wait *w = NULL;
	double timeout = -1;
	int k;

	k = find_op(r, &op, err);
	if (k < 0)
		return k;
	if (lxm_http_query_get(r->http->query, "timeout", &t) == 0 && *t) {
		char *end;

		timeout = strtod(t, &end);
		if (*end || timeout != timeout)
			return lxm_error_set(err, -EINVAL, 400,
					     "invalid timeout '%s': seconds, or -1 to wait forever",
					     t);
	}
	/* The callback may answer right away; mark the request deferred before waiting. */
	r->deferred = true;
	r->on_abort = wait_abort;
	k = lxm_operation_wait(op, timeout < 0 ? -1 : (int64_t)(timeout * 1000), wait_done, r, &w);
	if (k < 0) {
		r->deferred = false;
		return lxm_error_setx(err, k, 500, "wait for operation %s", r->args[0]);
	}
	if (w)
		r->defer_data = w;
	return 0;
}
