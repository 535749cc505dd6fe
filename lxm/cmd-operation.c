/* lxm operation list|show|delete: the server's background tasks. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"

/* lxc prints an Operation in the order of Go's api.Operation fields. */
static const char *const operation_keys[] = {
	"id",	     "class",	 "description", "created_at", "updated_at", "status", "status_code",
	"resources", "metadata", "may_cancel",	"err",	      "location",   NULL,
};

/* "/1.0/operations/<id>" for a bare id or the URL an async reply gave. */
static int operation_path(const char *arg, char **ret)
{
	const char *slash = strrchr(arg, '/');

	*ret = lxm_cli_path("/1.0/operations/", slash ? slash + 1 : arg);
	return *ret ? 0 : -ENOMEM;
}

/* GET /1.0/operations?recursion=1 answers {"running": [...], "success": [...], ...}; a server that
 * ignores recursion sends URLs, which are fetched one by one. */
static int collect(struct lxm_client *c, const json_t *groups, json_t *out, struct lxm_error **err)
{
	const char *status;
	json_t *list;

	json_object_foreach ((json_t *)groups, status, list) {
		json_t *op;
		size_t i;

		json_array_foreach (list, i, op) {
			_cleanup_json_ json_t *full = NULL;
			_cleanup_free_ char *path = NULL;
			int r;

			if (json_is_object(op)) {
				full = json_incref(op);
			} else if (json_is_string(op)) {
				if (operation_path(json_string_value(op), &path) < 0)
					return -ENOMEM;
				r = lxm_client_request(c, "GET", path, NULL, &full, NULL, err);
				if (r == -ENOENT) {
					/* Finished and purged between the two requests. */
					lxm_error_free(*err);
					*err = NULL;
					continue;
				}
				if (r < 0)
					return r;
			} else {
				continue;
			}
			if (json_array_append(out, full) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static int add_row(struct lxm_table *t, const json_t *op)
{
	_cleanup_free_ char *class = lxm_cli_upper(json_string_value(json_object_get(op, "class")));
	_cleanup_free_ char *status =
		lxm_cli_upper(json_string_value(json_object_get(op, "status")));
	const char *id = json_string_value(json_object_get(op, "id"));
	const char *desc = json_string_value(json_object_get(op, "description"));
	char created[64] = "";
	const char *row[6];

	if (!class || !status)
		return -ENOMEM;
	lxm_format_time(json_string_value(json_object_get(op, "created_at")), false, created);
	row[0] = id;
	row[1] = class;
	row[2] = desc;
	row[3] = status;
	row[4] = json_is_true(json_object_get(op, "may_cancel")) ? "YES" : "NO";
	row[5] = created;
	return lxm_table_add_row(t, row);
}

static int op_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "ID",	"TYPE",	      "DESCRIPTION",
					      "STATUS", "CANCELABLE", "CREATED" };
	_cleanup_json_ json_t *groups = NULL, *ops = json_array();
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	const json_t *op;
	size_t i;
	int r;

	r = lxm_cli_list_args(argc, argv, 0, 1, "at most a REMOTE:", &fmt, err);
	if (r >= 0)
		r = lxm_cli_list_remote(argc, argv, r, err);
	if (r < 0)
		return r;
	if (!ops)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	r = lxm_client_request(c, "GET", "/1.0/operations?recursion=1", NULL, &groups, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "list operations");
	if (json_is_array(groups)) {
		json_t *wrap = json_pack("{s:O}", "all", groups);

		json_decref(groups);
		groups = wrap;
	}
	r = collect(c, groups, ops, err);
	if (r < 0)
		return *err ? lxm_error_prefix(err, "list operations")
			    : lxm_error_set(err, r, 500, "list operations: out of memory");

	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (ops, i, op)
		if (r >= 0)
			r = add_row(t, op);
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	lxm_table_sort(t);
	return lxm_cli_print_list(cmd, ops, t, fmt, err);
}

/* The opening of show and delete: one ID, its path, a client. */
static int open_operation(int argc, char **argv, struct lxm_client **c, char **path,
			  struct lxm_error **err)
{
	int r = lxm_cli_nargs(argv[0], argc - 1, 1, 1, "an operation ID", err);

	if (r >= 0)
		r = lxm_cli_target_name(argv[0], &argv[1], err);
	if (r < 0)
		return r;
	if (operation_path(argv[1], path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_connect(c, err);
}

static int op_show(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_json_ json_t *op = NULL, *ordered = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	r = open_operation(argc, argv, &c, &path, err);
	if (r < 0)
		return r;
	r = lxm_client_request(c, "GET", path, NULL, &op, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "operation '%s'", argv[1]);
	ordered = json_is_object(op) ? lxm_json_reorder(op, operation_keys) : json_incref(op);
	return lxm_cli_print_yaml(argv[0], ordered, "operation", err);
}

static int op_delete(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	r = open_operation(argc, argv, &c, &path, err);
	if (r < 0)
		return r;
	r = lxm_client_request(c, "DELETE", path, NULL, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "cancel operation '%s'", argv[1]);
	printf("Operation %s deleted\n", argv[1]);
	return 0;
}

const struct lxm_command lxm_operation_commands[] = {
	LXM_CMD_DELETE(op_delete, "Cancel a background operation", "operation delete [REMOTE:]ID"),
	LXM_CMD_LIST(op_list, "List background operations", "operation list [flags] [REMOTE:]"),
	LXM_CMD("show", op_show, "Show details of a background operation",
		"operation show [REMOTE:]ID"),
	{},
};
