/* lxm copy (a new instance from an instance or one of its snapshots) and lxm move (a rename of a
 * stopped instance, or of a snapshot). Both run on the server; the copy is made in the pool
 * that the new instance's root disk device names, in the driver's fastest way. */
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

int lxm_cmd_copy(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "profile", required_argument, NULL, 'p' },
		{ "no-profiles", no_argument, NULL, 'n' },
		{ "instance-only", no_argument, NULL, 'i' },
		{},
	};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *config = json_object(), *profiles = NULL;
	const char *cmd = argv[0], *src, *dst;
	int opt, r;

	if (!config)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":c:p:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': {
			_cleanup_free_ char *k = NULL, *v = NULL;

			if (lxm_cli_split_kv(optarg, &k, &v) < 0)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s: --config wants KEY=VALUE, not '%s'", cmd,
						     optarg);
			json_object_set_new(config, k, json_string(v));
			break;
		}
		case 'p':
			if (!profiles)
				profiles = json_array();
			json_array_append_new(profiles, json_string(optarg));
			break;
		case 'n':
			json_decref(profiles);
			profiles = json_array();
			break;
		case 'i':
			/* Snapshots are not copied: every copy is of the instance only. */
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	r = lxm_cli_nargs(cmd, argc - optind, 2, 2, "SOURCE[/SNAPSHOT] DESTINATION", err);
	if (r < 0)
		return r;
	src = argv[optind];
	dst = argv[optind + 1];
	if (strchr(dst, '/'))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: the DESTINATION '%s' must be an instance name", cmd, dst);
	body = json_pack("{s:s, s:{s:s, s:s, s:b}, s:O}", "name", dst, "source", "type", "copy",
			 "source", src, "instance_only", true, "config", config);
	if (!body || (profiles && json_object_set(body, "profiles", profiles) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	r = lxm_client_do(c, "POST", "/1.0/instances", body, NULL, err);
	return r < 0 ? lxm_error_prefix(err, "copy '%s' to '%s'", src, dst) : 0;
}

int lxm_cmd_move(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_free_ char *path = NULL, *inst = NULL, *esnap = NULL;
	_cleanup_json_ json_t *body = NULL;
	const char *cmd = argv[0], *from, *to, *slash_from, *slash_to;
	int r;

	r = lxm_cli_open(argc, argv, 2, 2, "OLD NEW", &c, err);
	if (r < 0)
		return r;
	from = argv[1];
	to = argv[2];
	slash_from = strchr(from, '/');
	slash_to = strchr(to, '/');
	if (!slash_from != !slash_to ||
	    (slash_from && (slash_from - from != slash_to - to ||
			    strncmp(from, to, (size_t)(slash_from - from)) != 0)))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: '%s' to '%s': rename an instance (OLD NEW) or a snapshot "
				     "of one instance (INSTANCE/OLD INSTANCE/NEW)",
				     cmd, from, to);
	if (slash_from) {
		inst = strndup(from, (size_t)(slash_from - from));
		esnap = lxm_url_escape(slash_from + 1);
		path = inst && esnap ? lxm_cli_path("/1.0/instances/", inst) : NULL;
		if (path) {
			char *full = NULL;

			if (asprintf(&full, "%s/snapshots/%s", path, esnap) < 0)
				full = NULL;
			free(path);
			path = full;
		}
		body = json_pack("{s:s}", "name", slash_to + 1);
	} else {
		path = lxm_cli_path("/1.0/instances/", from);
		body = json_pack("{s:s}", "name", to);
	}
	if (!path || !body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_do(c, "POST", path, body, NULL, err);
	return r < 0 ? lxm_error_prefix(err, "move '%s' to '%s'", from, to) : 0;
}
