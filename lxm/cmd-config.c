/* lxm config show|get|set|unset|edit|device: an instance's own config, or, without an instance
 * name, the server's (GET /1.0, then a PUT guarded by the ETag of the GET, as lxc does). */
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
#include "lxm/remotes.h"
#include "profiles/keys.h"

/* What PUT /1.0/instances/NAME takes back (LXD's InstancePut without "stateful"). */
static const char *const instance_put_fields[] = {
	"architecture", "config", "devices", "ephemeral", "profiles", "description", NULL,
};

const struct lxm_cli_config_kind lxm_cli_instance_kind = {
	.prefix = "/1.0/instances/",
	.kind = "instance",
	.title = "Instance",
	.name_args = "an instance NAME",
	.rename_args = "OLD and NEW instance names",
	.key_args = "an instance NAME and a KEY",
	.put_fields = instance_put_fields,
	.inherits = true,
};

/* Instance names are letters, digits and '-': an argument with a '.' or a '=' is a config key,
 * so that is how "config set/get/unset" tell a server key from an instance, as lxc does. */
static bool is_key_arg(const char *arg)
{
	return strchr(arg, '.') || strchr(arg, '=');
}

/* ---- the server's config ---- */

static int server_get(struct lxm_client *c, json_t **ret, char **ret_etag, struct lxm_error **err)
{
	return lxm_cli_get_object(c, "/1.0", "server", "server description", ret, ret_etag, err);
}

/* PUT /1.0 {"config": config}, guarded by the ETag of the GET it follows. */
static int server_put(struct lxm_client *c, json_t *config, const char *etag,
		      struct lxm_error **err)
{
	_cleanup_json_ json_t *body = json_pack("{s:O}", "config", config);
	int r;

	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "update server config: out of memory");
	r = lxm_cli_put(c, "/1.0", body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "update server config");
	return 0;
}

/* The server's config with the keys of set merged in, or without the key unset; both as
 * lxm_cli_change_config() does for other objects. */
static int server_change(const char *cmd, const json_t *set, const char *unset,
			 struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *server = NULL, *config = NULL;
	_cleanup_free_ char *etag = NULL;
	int r;

	r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = server_get(c, &server, &etag, err);
	if (r >= 0)
		r = lxm_cli_change_config(cmd, "server config", server, set, unset, &config, err);
	if (r >= 0)
		r = server_put(c, config, etag, err);
	return r;
}

/* ---- show, get ---- */

/* The instance as lxc's config show prints it: its writable fields, local or expanded, maps
 * with sorted keys. */
static json_t *instance_view(const json_t *inst, bool expanded)
{
	_cleanup_json_ json_t *config =
		lxm_json_sorted(json_object_get(inst, expanded ? "expanded_config" : "config"));
	_cleanup_json_ json_t *devices =
		lxm_json_sorted(json_object_get(inst, expanded ? "expanded_devices" : "devices"));
	const json_t *profiles = json_object_get(inst, "profiles");

	return json_pack("{s:s, s:o, s:o, s:b, s:o, s:s}", "architecture",
			 json_string_value(json_object_get(inst, "architecture")) ?: "", "config",
			 json_is_object(config) ? json_incref(config) : json_object(), "devices",
			 json_is_object(devices) ? json_incref(devices) : json_object(),
			 "ephemeral", json_is_true(json_object_get(inst, "ephemeral")), "profiles",
			 json_is_array(profiles) ? json_incref((json_t *)profiles) : json_array(),
			 "description",
			 json_string_value(json_object_get(inst, "description")) ?: "");
}

static int config_show(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = { { "expanded", no_argument, NULL, 'e' }, {} };
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *obj = NULL, *view = NULL;
	_cleanup_free_ char *what = NULL;
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
	r = lxm_cli_nargs(cmd, argc - optind, 0, 1, "an instance NAME, or nothing for the server",
			  err);
	if (r >= 0 && optind < argc)
		r = lxm_cli_target_arg(&argv[optind], err);
	if (r >= 0)
		r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	if (optind == argc || !*argv[optind]) {
		/* The server's writable part, as lxc config show prints it. */
		r = server_get(c, &obj, NULL, err);
		if (r < 0)
			return r;
		view = json_pack("{s:o}", "config",
				 lxm_json_sorted(json_object_get(obj, "config")) ?: json_object());
		return lxm_cli_print_yaml(cmd, view, "server config", err);
	}
	r = lxm_cli_kind_get(c, &lxm_cli_instance_kind, argv[optind], &obj, NULL, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "instance '%s'", argv[optind]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	view = instance_view(obj, expanded);
	return lxm_cli_print_yaml(cmd, view, what, err);
}

/* get [NAME] KEY: an unset key prints an empty line, as lxc does. */
static int config_get(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *obj = NULL;
	const char *v;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 1, 2, "an instance NAME and a KEY, or a server KEY",
			  err);
	if (r >= 0 && argc == 3)
		r = lxm_cli_target_arg(&argv[1], err);
	if (r >= 0)
		r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = argc == 2 || !*argv[1]
			    ? server_get(c, &obj, NULL, err)
			    : lxm_cli_kind_get(c, &lxm_cli_instance_kind, argv[1], &obj, NULL, err);
	if (r < 0)
		return r;
	v = json_string_value(json_object_get(json_object_get(obj, "config"), argv[argc - 1]));
	printf("%s\n", v ? v : "");
	return 0;
}

/* ---- set, unset ---- */

/* Changes an instance's config: the keys of set merged in, or the key unset removed. */
static int instance_change(const char *cmd, const char *name, const json_t *set, const char *unset,
			   struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *inst = NULL, *config = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL;
	int r;

	r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &lxm_cli_instance_kind, name, &inst, &etag, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "instance '%s'", name) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_change_config(cmd, what, inst, set, unset, &config, err);
	if (r >= 0)
		r = lxm_config_check(json_object_get(inst, "config"), config, LXM_CONFIG_UPDATE,
				     err);
	if (r < 0)
		return r;
	if (json_object_set(inst, "config", config) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	return lxm_cli_kind_put(c, &lxm_cli_instance_kind, name, inst, etag, err);
}

/* set NAME KEY=VALUE... | set NAME KEY VALUE: the instance's; set KEY=VALUE... | set KEY VALUE
 * (the first argument a key: it has a '.' or a '='): the server's. */
static int config_set(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_json_ json_t *set = NULL;
	const char *cmd = argv[0];
	bool server = false;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, -1,
			  "NAME KEY=VALUE..., NAME KEY VALUE, or a server's KEY=VALUE... or KEY "
			  "VALUE",
			  err);
	if (r >= 0)
		r = lxm_cli_target_arg(&argv[1], err);
	if (r < 0)
		return r;
	if (!*argv[1]) {
		/* REMOTE: KEY=VALUE...: that server's keys. */
		argv++;
		argc--;
		if (argc < 2)
			return lxm_cli_nargs(cmd, 0, 1, -1,
					     "REMOTE: KEY=VALUE... or REMOTE: KEY VALUE", err);
		server = true;
	}
	server = server || is_key_arg(argv[1]);
	if (!server && argc < 3)
		return lxm_cli_nargs(cmd, argc - 1, 2, -1, "NAME KEY=VALUE... or NAME KEY VALUE",
				     err);
	r = lxm_cli_set_args(cmd, argc - (server ? 1 : 2), argv + (server ? 1 : 2), &set, err);
	if (r < 0)
		return r;
	return server ? server_change(cmd, set, NULL, err)
		      : instance_change(cmd, argv[1], set, NULL, err);
}

/* unset NAME KEY: the instance's; unset KEY: the server's. */
static int config_unset(int argc, char **argv, struct lxm_error **err)
{
	int r = lxm_cli_nargs(argv[0], argc - 1, 1, 2,
			      "an instance NAME and a KEY, or a server KEY", err);

	if (r >= 0 && argc == 3)
		r = lxm_cli_target_arg(&argv[1], err);
	if (r < 0)
		return r;
	if (argc == 3 && !*argv[1])
		return server_change(argv[0], NULL, argv[2], err);
	return argc == 2 ? server_change(argv[0], NULL, argv[1], err)
			 : instance_change(argv[0], argv[1], NULL, argv[2], err);
}

/* ---- edit ---- */

static const char edit_header[] =
	"### This is the instance's configuration as YAML. Lines starting with '#' are ignored.\n"
	"###\n"
	"### Its config, devices, profiles, ephemeral and description can be changed, e.g.:\n"
	"###   config:\n"
	"###     limits.memory: 256MiB\n"
	"###   devices:\n"
	"###     data:\n"
	"###       type: disk\n"
	"###       source: /srv/data\n"
	"###       path: /data\n"
	"###   profiles:\n"
	"###   - default\n"
	"###\n"
	"### Keys that lxmd sets (volatile.*, image.*) are kept as they are; the architecture\n"
	"### cannot change.\n";

/* The fields of an edited instance document, as the PUT takes them. */
struct instance_edit {
	json_t *fields; /* config, devices, profiles, ephemeral, description: what to PUT */
};

static void instance_edit_done(struct instance_edit *e)
{
	json_decref(TAKE_PTR(e->fields));
}

static int check_instance_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	static const char *const known[] = {
		"architecture",	    "config",	   "devices",  "ephemeral",
		"profiles",	    "description", "stateful", "expanded_config",
		"expanded_devices", "name",	   NULL,
	};
	struct instance_edit *e = userdata;
	_cleanup_json_ json_t *out = json_object(), *config = NULL, *devices = NULL;
	_cleanup_free_ char *desc = NULL;
	const json_t *v;
	size_t i;
	int r;

	instance_edit_done(e);
	if (!out)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_cli_check_doc_fields(doc, known, "a map of instance fields",
				     "an instance has config, devices, profiles, ephemeral and "
				     "description",
				     err);
	if (r < 0)
		return r;
	r = lxm_cli_string_map(json_object_get(doc, "config"), "config", &config, err);
	if (r >= 0)
		r = lxm_cli_devices_map(json_object_get(doc, "devices"), &devices, err);
	if (r < 0)
		return r;
	v = json_object_get(doc, "profiles");
	if (v && !json_is_null(v)) {
		json_t *p;

		if (!json_is_array(v))
			return lxm_error_set(err, -EINVAL, 400, "profiles must be a list of names");
		json_array_foreach ((json_t *)v, i, p)
			if (!json_is_string(p))
				return lxm_error_set(err, -EINVAL, 400,
						     "profiles must be a list of names");
	}
	if (json_object_set_new(out, "profiles",
				v && !json_is_null(v) ? json_incref((json_t *)v) : json_array()) <
		    0 ||
	    json_object_set(out, "config", config) < 0 ||
	    json_object_set(out, "devices", devices) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	v = json_object_get(doc, "ephemeral");
	if (v && !json_is_boolean(v))
		return lxm_error_set(err, -EINVAL, 400, "ephemeral must be true or false");
	if (v && json_object_set(out, "ephemeral", (json_t *)v) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_cli_doc_description(doc, &desc, err);
	if (r < 0)
		return r;
	if (json_object_set_new(out, "description", json_string(desc)) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	e->fields = TAKE_PTR(out);
	return 0;
}

/* The server's document: only its config can be edited. */
static const char *const server_fields[] = { "config", NULL };

static int check_server_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	struct instance_edit *e = userdata;
	_cleanup_json_ json_t *config = NULL;
	int r;

	instance_edit_done(e);
	r = lxm_cli_check_doc_fields(doc, server_fields, "a map with the field config",
				     "only the server's config can be edited", err);
	if (r < 0)
		return r;
	r = lxm_cli_string_map(json_object_get(doc, "config"), "config", &config, err);
	if (r < 0)
		return r;
	e->fields = json_pack("{s:O}", "config", config);
	return e->fields ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* edit [NAME]: the instance's writable fields (or the server's config) in $EDITOR, or read from
 * stdin when it is not a terminal; PUT back guarded by the ETag of the GET. */
static int config_edit(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(instance_edit_done) struct instance_edit e = {};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *obj = NULL, *view = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL;
	const char *key;
	json_t *v;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 0, 1, "an instance NAME, or nothing for the server",
			  err);
	if (r >= 0 && argc == 2)
		r = lxm_cli_target_arg(&argv[1], err);
	if (r >= 0)
		r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	if (argc == 1 || !*argv[1]) {
		r = server_get(c, &obj, &etag, err);
		if (r < 0)
			return r;
		view = json_pack("{s:o}", "config",
				 lxm_json_sorted(json_object_get(obj, "config")) ?: json_object());
		r = lxm_cli_edit_view(argv[0], "server config", view,
				      "### This is the server's configuration as YAML.\n",
				      check_server_doc, &e, err);
		if (r < 0)
			return r;
		return server_put(c, json_object_get(e.fields, "config"), etag, err);
	}
	r = lxm_cli_kind_get(c, &lxm_cli_instance_kind, argv[1], &obj, &etag, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "instance '%s'", argv[1]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	view = instance_view(obj, false);
	r = lxm_cli_edit_view(argv[0], what, view, edit_header, check_instance_doc, &e, err);
	if (r < 0)
		return r;
	json_object_foreach (e.fields, key, v)
		if (json_object_set(obj, key, v) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_kind_put(c, &lxm_cli_instance_kind, argv[1], obj, etag, err);
}

const struct lxm_command lxm_config_commands[] = {
	{
		.name = "trust",
		.run = lxm_cli_config_trust,
		.summary = "Manage the trusted client certificates",
		.usage = "config trust add|list|remove ...",
	},
	{
		.name = "device",
		.run = lxm_cli_config_device,
		.summary = "Manage an instance's devices",
		.usage = "config device add|get|list|override|remove|set|show|unset NAME ...",
		.help = "  config device add NAME DEVICE TYPE [KEY=VALUE...]\n"
			"  config device remove NAME DEVICE...\n"
			"  config device set NAME DEVICE KEY=VALUE... | set NAME DEVICE KEY VALUE\n"
			"  config device unset NAME DEVICE KEY\n"
			"  config device get NAME DEVICE KEY\n"
			"  config device list NAME | show NAME\n"
			"  config device override NAME DEVICE [KEY=VALUE...]\n"
			"\n"
			"A device that comes from a profile cannot be changed or removed here:\n"
			"'override' copies it into the instance (with changes), and a device of\n"
			"type none with its name masks it:\n"
			"  lxm config device add c1 eth0 none\n",
	},
	{
		.name = "edit",
		.run = config_edit,
		.summary = "Edit an instance's (or the server's) configuration as YAML",
		.usage = "config edit [NAME]",
		.help = "Opens $VISUAL or $EDITOR (default vi) on the configuration, or reads the\n"
			"YAML from standard input when it is not a terminal:\n"
			"  lxm config edit c1 < c1.yaml\n"
			"Without NAME, edits the server's config.\n",
	},
	{
		.name = "get",
		.run = config_get,
		.summary = "Get the value of an instance (or server) config key",
		.usage = "config get NAME KEY | config get KEY",
		.help = "With one argument, KEY is a server config key.\n",
	},
	{
		.name = "set",
		.run = config_set,
		.summary = "Set instance (or server) config keys",
		.usage = "config set NAME KEY=VALUE... | config set NAME KEY VALUE | config set "
			 "KEY=VALUE... | config set KEY VALUE",
		.help = "Limits apply live to a running instance. When the first argument is a\n"
			"config key (it has a '.' or a '=', which instance names never have), the\n"
			"keys are the server's:\n"
			"  lxm config set images.auto_update_interval 12\n",
	},
	{
		.name = "show",
		.run = config_show,
		.summary = "Show an instance's (or the server's) configuration as YAML",
		.usage = "config show [NAME] [--expanded]",
		.help = "Flags:\n"
			"  -e, --expanded   With the config and devices of the instance's "
			"profiles\n",
	},
	{
		.name = "unset",
		.run = config_unset,
		.summary = "Remove an instance (or server) config key",
		.usage = "config unset NAME KEY | config unset KEY",
	},
	{ 0 },
};
