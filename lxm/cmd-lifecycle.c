/* lxm start, stop, restart, pause: PUT /1.0/instances/NAME/state, one instance after the other. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"

struct state_args {
	bool force;  /* -f */
	int timeout; /* --timeout, -1 when not given */
};

static int parse_state_args(int argc, char **argv, bool with_stop_flags, struct state_args *a,
			    struct lxm_error **err)
{
	static const struct option options[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' },
		{},
	};
	const char *cmd = argv[0];
	int opt;

	a->force = false;
	a->timeout = -1;
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, with_stop_flags ? ":f" : ":", options, NULL)) != -1) {
		char *end;
		long v;

		if (!with_stop_flags)
			return lxm_cli_flag_error(cmd, argv, opt, err);
		switch (opt) {
		case 'f':
			a->force = true;
			break;
		case 't':
			v = strtol(optarg, &end, 10);
			if (*end || v < -1 || v > 86400)
				return lxm_error_set(
					err, -EINVAL, 400,
					"%s: invalid --timeout '%s': seconds (0-86400, "
					"-1 to wait as long as it takes)",
					cmd, optarg);
			a->timeout = (int)v;
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	return lxm_cli_nargs(cmd, argc - optind, 1, -1, "one or more instance NAMEs", err);
}

/* start on a frozen instance means unfreeze, as in lxc. */
static int change(struct lxm_client *c, const char *name, const char *action,
		  const struct state_args *a, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *state_path = NULL;
	_cleanup_json_ json_t *inst = NULL, *body = NULL;
	const char *verb = action;
	int r;

	if (asprintf(&path, "/1.0/instances/%s", name) < 0 ||
	    asprintf(&state_path, "%s/state", path) < 0)
		return -ENOMEM;
	if (streq(action, "start")) {
		r = lxm_client_request(c, "GET", path, NULL, &inst, NULL, err);
		if (r < 0)
			return lxm_error_prefix(err, "start '%s'", name);
		if (json_integer_value(json_object_get(inst, "status_code")) == 110)
			action = "unfreeze";
	}
	body = json_pack("{s:s, s:i, s:b, s:b}", "action", action, "timeout", a->timeout, "force",
			 a->force, "stateful", false);
	if (!body)
		return -ENOMEM;
	r = lxm_client_do(c, "PUT", state_path, body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s '%s'", verb, name);
	return 0;
}

static int run_action(int argc, char **argv, const char *action, bool stop_flags,
		      struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	struct state_args a;
	int r;

	r = parse_state_args(argc, argv, stop_flags, &a, err);
	if (r >= 0)
		r = lxm_cli_target_all(argv + optind, argc - optind, err);
	if (r < 0)
		return r;
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	for (int i = optind; i < argc; i++) {
		r = change(c, argv[i], action, &a, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int lxm_cmd_start(int argc, char **argv, struct lxm_error **err)
{
	return run_action(argc, argv, "start", false, err);
}

int lxm_cmd_stop(int argc, char **argv, struct lxm_error **err)
{
	return run_action(argc, argv, "stop", true, err);
}

int lxm_cmd_restart(int argc, char **argv, struct lxm_error **err)
{
	return run_action(argc, argv, "restart", true, err);
}

int lxm_cmd_pause(int argc, char **argv, struct lxm_error **err)
{
	return run_action(argc, argv, "freeze", false, err);
}
