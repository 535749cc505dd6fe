/* lxm config show|get|set|unset: an instance's own config (GET, then PUT guarded by its ETag). */
#include "config.h"

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

static int get_instance(struct lxm_client *c, const char *name, json_t **ret, char **ret_etag,
			struct lxm_error **err)
{
	struct lxm_client_response resp = { 0 };
	_cleanup_free_ char *path = NULL;
	int r;

	if (asprintf(&path, "/1.0/instances/%s", name) < 0)
		return -ENOMEM;
	r = lxm_client_request(c, "GET", path, NULL, ret, &resp, err);
	if (r >= 0 && ret_etag)
		*ret_etag = TAKE_PTR(resp.etag);
	lxm_client_response_done(&resp);
	return r;
}

/* PUT of the writable fields with the new config, If-Match the ETag read before: a concurrent
 * change makes this fail instead of being overwritten. */
static int put_config(struct lxm_client *c, const char *name, const json_t *inst, json_t *config,
		      const char *etag, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;

	body = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "architecture",
			 json_object_get(inst, "architecture"), "config", config, "devices",
			 json_object_get(inst, "devices"), "ephemeral",
			 json_object_get(inst, "ephemeral"), "profiles",
			 json_object_get(inst, "profiles"), "description",
			 json_object_get(inst, "description"));
	if (!body || asprintf(&path, "/1.0/instances/%s", name) < 0)
		return -ENOMEM;
	return lxm_cli_put(c, path, body, etag, err);
}

static int config_show(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = { { "expanded", no_argument, NULL, 'e' }, {} };
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *inst = NULL, *view = NULL;
	_cleanup_free_ char *yaml = NULL;
	const char *cmd = argv[0];
	bool expanded = false;
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":e", options, NULL)) != -1) {
		if (opt != 'e')
			return lxm_cli_flag_error(cmd, argv, opt, err);
		expanded = true;
	}
	r = lxm_cli_nargs(cmd, argc - optind, 1, 1, "an instance NAME", err);
	if (r < 0)
		return r;
	if ((r = lxm_cli_connect(&c, err)) < 0)
		return r;
	if ((r = get_instance(c, argv[optind], &inst, NULL, err)) < 0)
		return lxm_error_prefix(err, "config show '%s'", argv[optind]);
	/* What lxc config show prints: the writable fields, expanded on request. */
	view = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "architecture",
			 json_object_get(inst, "architecture"), "config",
			 json_object_get(inst, expanded ? "expanded_config" : "config"), "devices",
			 json_object_get(inst, expanded ? "expanded_devices" : "devices"),
			 "ephemeral", json_object_get(inst, "ephemeral"), "profiles",
			 json_object_get(inst, "profiles"), "description",
			 json_object_get(inst, "description"));
	if (!view || lxm_yaml_from_json(view, &yaml) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	return lxm_cli_print(cmd, yaml, err);
}

static int config_get(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *inst = NULL;
	const char *v;
	int r;

	if ((r = lxm_cli_open(argc, argv, 2, 2, "an instance NAME and a KEY", &c, err)) < 0)
		return r;
	if ((r = get_instance(c, argv[1], &inst, NULL, err)) < 0)
		return lxm_error_prefix(err, "config get '%s'", argv[1]);
	v = json_string_value(json_object_get(json_object_get(inst, "config"), argv[2]));
	printf("%s\n", v ? v : "");
	return 0;
}

/* set NAME K=V [K=V...] or set NAME K V; unset NAME K. */
static int config_change(int argc, char **argv, bool unset, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *inst = NULL, *config = NULL;
	_cleanup_free_ char *etag = NULL;
	const char *cmd = argv[0], *name;
	int r;

	r = lxm_cli_nargs(
		cmd, argc - 1, 2, unset ? 2 : -1,
		unset ? "an instance NAME and a KEY" : "NAME KEY=VALUE... or NAME KEY VALUE", err);
	if (r < 0)
		return r;
	name = argv[1];
	if ((r = lxm_cli_connect(&c, err)) < 0)
		return r;
	if ((r = get_instance(c, name, &inst, &etag, err)) < 0)
		return lxm_error_prefix(err, "config %s '%s'", unset ? "unset" : "set", name);
	config = json_deep_copy(json_object_get(inst, "config"));
	if (!config)
		config = json_object();
	if (unset) {
		if (json_object_del(config, argv[2]) < 0)
			return lxm_error_set(err, -ENOENT, 404,
					     "config unset '%s': key '%s' is not set", name,
					     argv[2]);
	} else if (argc == 4 && !strchr(argv[2], '=')) {
		json_object_set_new(config, argv[2], json_string(argv[3]));
	} else {
		for (int i = 2; i < argc; i++) {
			_cleanup_free_ char *k = NULL, *v = NULL;

			if (lxm_cli_split_kv(argv[i], &k, &v) < 0)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s: invalid '%s': expected KEY=VALUE", cmd,
						     argv[i]);
			json_object_set_new(config, k, json_string(v));
		}
	}
	r = put_config(c, name, inst, config, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "config %s '%s'", unset ? "unset" : "set", name);
	return 0;
}

static int config_set(int argc, char **argv, struct lxm_error **err)
{
	return config_change(argc, argv, false, err);
}

static int config_unset(int argc, char **argv, struct lxm_error **err)
{
	return config_change(argc, argv, true, err);
}

const struct lxm_command lxm_config_commands[] = {
	LXM_CMD("get", config_get, "Get the value of an instance config key",
		"config get NAME KEY"),
	LXM_CMD("set", config_set,
		"Set instance config keys (limits apply live to a running instance)",
		"config set NAME KEY=VALUE... | config set NAME KEY VALUE"),
	LXM_CMD("show", config_show, "Show an instance's configuration as YAML",
		"config show NAME [--expanded]"),
	LXM_CMD("unset", config_unset, "Remove an instance config key", "config unset NAME KEY"),
	{ 0 },
};
