/* lxm snapshot and lxm restore. `lxm delete INSTANCE/SNAPSHOT` (cmd-instance.c), `lxm info` (the
 * snapshot list) and `lxm publish INSTANCE/SNAPSHOT` (cmd-image.c) cover the rest. */
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

/* An INSTANCE argument: a name, never INSTANCE/SNAPSHOT. */
static int check_instance(const char *cmd, const char *name, struct lxm_error **err)
{
	if (strchr(name, '/'))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: '%s' names a snapshot; give the INSTANCE name (and the "
				     "snapshot as the next argument)",
				     cmd, name);
	return 0;
}

int lxm_cmd_snapshot(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "reuse", no_argument, NULL, 'r' },
		{ "no-expiry", no_argument, NULL, 'n' },
		{ "stateful", no_argument, NULL, 's' },
		{},
	};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_free_ char *base = NULL, *path = NULL, *snap_path = NULL;
	_cleanup_json_ json_t *body = NULL, *existing = NULL;
	const char *cmd = argv[0], *inst, *snap;
	bool reuse = false;
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'r':
			reuse = true;
			break;
		case 'n':
			/* Snapshots never expire unless asked: nothing to turn off. */
			break;
		case 's':
			return lxm_error_set(err, -EOPNOTSUPP, 400,
					     "%s: stateful snapshots (CRIU) are not supported",
					     cmd);
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	r = lxm_cli_nargs(cmd, argc - optind, 1, 2, "INSTANCE [SNAPSHOT]", err);
	if (r < 0)
		return r;
	r = lxm_cli_target_name(cmd, &argv[optind], err);
	if (r < 0)
		return r;
	inst = argv[optind];
	snap = optind + 1 < argc ? argv[optind + 1] : "";
	if ((r = check_instance(cmd, inst, err)) < 0)
		return r;
	if (reuse && !*snap)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: --reuse needs the SNAPSHOT name to replace", cmd);
	base = lxm_cli_path("/1.0/instances/", inst);
	if (!base || asprintf(&path, "%s/snapshots", base) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	if (reuse) {
		_cleanup_free_ char *esnap = lxm_url_escape(snap);

		if (!esnap || asprintf(&snap_path, "%s/%s", path, esnap) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
		r = lxm_client_request(c, "GET", snap_path, NULL, &existing, NULL, err);
		if (r == -ENOENT) {
			lxm_error_free(TAKE_PTR(*err));
		} else if (r < 0) {
			return lxm_error_prefix(err, "snapshot '%s/%s'", inst, snap);
		} else {
			r = lxm_client_do(c, "DELETE", snap_path, NULL, NULL, err);
			if (r < 0)
				return lxm_error_prefix(err, "snapshot '%s/%s': replace", inst,
							snap);
		}
	}
	body = json_pack("{s:s, s:b}", "name", snap, "stateful", false);
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_do(c, "POST", path, body, NULL, err);
	if (r < 0)
		return *snap ? lxm_error_prefix(err, "snapshot '%s/%s'", inst, snap)
			     : lxm_error_prefix(err, "snapshot '%s'", inst);
	return 0;
}

int lxm_cmd_restore(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_free_ char *path = NULL, *full = NULL;
	_cleanup_json_ json_t *body = NULL;
	const char *cmd = argv[0];
	int r;

	if (argc > 1 && argv[1][0] == '-')
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: unknown flag '%s' (see 'lxm %s --help')", cmd, argv[1],
				     cmd);
	r = lxm_cli_nargs(cmd, argc - 1, 2, 2, "INSTANCE SNAPSHOT", err);
	if (r >= 0)
		r = lxm_cli_target_name(cmd, &argv[1], err);
	if (r < 0)
		return r;
	if ((r = check_instance(cmd, argv[1], err)) < 0)
		return r;
	/* As lxc sends it: INSTANCE/SNAPSHOT. */
	path = lxm_cli_path("/1.0/instances/", argv[1]);
	if (!path || asprintf(&full, "%s/%s", argv[1], argv[2]) < 0 ||
	    !(body = json_pack("{s:s}", "restore", full)))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	r = lxm_client_do(c, "PUT", path, body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "restore '%s' from snapshot '%s'", argv[1], argv[2]);
	return 0;
}
