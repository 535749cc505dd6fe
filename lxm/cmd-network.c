/* lxm network create|delete|edit|get|list|list-leases|rename|set|show|unset: managed bridge
 * networks. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/commands.h"

/* lxc shows a network in the order of Go's api.Network fields. */
static const char *const network_keys[] = {
	"config", "description", "name", "type", "used_by", "managed", "status", "locations", NULL,
};

static int network_path(const char *name, const char *suffix, char **ret)
{
	_cleanup_free_ char *p = lxm_cli_path("/1.0/networks/", name);

	if (!p || asprintf(ret, "%s%s", p, suffix ? suffix : "") < 0)
		return -ENOMEM;
	return 0;
}

static const struct lxm_cli_config_kind network_kind = {
	.prefix = "/1.0/networks/",
	.kind = "network",
	.title = "Network",
	.name_args = "a network NAME",
	.rename_args = "a network's OLD and NEW names",
	.key_args = "a network NAME and a KEY",
};

/* PUT /1.0/networks/NAME {"config","description"}, guarded by the ETag of the GET it follows. */
static int put_network(struct lxm_client *c, const char *name, json_t *config,
		       const char *description, const char *etag, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	body = json_pack("{s:O, s:s}", "config", config, "description",
			 description ? description : "");
	if (!body || network_path(name, NULL, &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "network '%s': out of memory", name);
	r = lxm_cli_put(c, path, body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "update network '%s'", name);
	return 0;
}

/* The network as lxc shows it: its fields in lxc's order, config with sorted keys. */
static json_t *network_view(const json_t *n)
{
	_cleanup_json_ json_t *view = lxm_json_reorder(n, network_keys);
	json_t *config;

	if (!view)
		return NULL;
	config = json_object_get(view, "config");
	config = json_is_object(config) ? lxm_json_sorted(config) : json_object();
	if (!config || json_object_set_new(view, "config", config) < 0)
		return NULL;
	return TAKE_PTR(view);
}

/* ---- list, show ---- */

static int name_cmp(const void *a, const void *b)
{
	const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
	const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));

	return lxm_natural_cmp(x ? x : "", y ? y : "");
}

static int network_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "NAME", "TYPE",	     "MANAGED", "IPV4",
					      "IPV6", "DESCRIPTION", "USED BY", "STATE" };
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *all = NULL, *sorted = json_array();
	_cleanup_free_ json_t **v = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	size_t i, n = 0;
	json_t *p;
	int r;

	r = lxm_cli_list_args(argc, argv, 0, 0, "no arguments", &fmt, err);
	if (r >= 0)
		r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = lxm_client_request(c, "GET", "/1.0/networks?recursion=1", NULL, &all, NULL,
				       err);
	if (r < 0)
		return lxm_error_prefix(err, "list networks");
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502, "list networks: the server sent no list");
	v = calloc(json_array_size(all) + 1, sizeof(*v));
	if (!v || !sorted)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	json_array_foreach (all, i, p)
		if (json_is_object(p))
			v[n++] = p;
	qsort(v, n, sizeof(*v), name_cmp);
	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	for (i = 0; i < n && r >= 0; i++) {
		const json_t *config = json_object_get(v[i], "config");
		_cleanup_free_ char *state =
			lxm_cli_upper(json_string_value(json_object_get(v[i], "status")));
		const char *row[8], *v4, *v6;
		char used[32];

		v4 = json_string_value(json_object_get(config, "ipv4.address"));
		v6 = json_string_value(json_object_get(config, "ipv6.address"));
		snprintf(used, sizeof(used), "%zu",
			 json_array_size(json_object_get(v[i], "used_by")));
		row[0] = json_string_value(json_object_get(v[i], "name"));
		row[1] = json_string_value(json_object_get(v[i], "type"));
		row[2] = json_is_true(json_object_get(v[i], "managed")) ? "YES" : "NO";
		row[3] = v4 && !streq(v4, "none") ? v4 : "";
		row[4] = v6 && !streq(v6, "none") ? v6 : "";
		row[5] = json_string_value(json_object_get(v[i], "description"));
		row[6] = used;
		row[7] = state;
		r = json_array_append(sorted, v[i]);
		if (r >= 0)
			r = state ? lxm_table_add_row(t, row) : -ENOMEM;
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	return lxm_cli_print_list(cmd, sorted, t, fmt, err);
}

static int network_show(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *n = NULL, *view = NULL;
	_cleanup_free_ char *what = NULL;
	int r;

	r = lxm_cli_open(argc, argv, 1, 1, "a network NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &network_kind, argv[1], &n, NULL, err);
	if (r < 0)
		return r;
	view = network_view(n);
	if (asprintf(&what, "network '%s'", argv[1]) < 0)
		what = NULL;
	return lxm_cli_print_yaml(argv[0], what ? view : NULL, what, err);
}

static int network_list_leases(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE" };
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *leases = NULL;
	_cleanup_free_ char *path = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	const json_t *l;
	size_t i;
	int r;

	r = lxm_cli_list_args(argc, argv, 1, 1, "a network NAME", &fmt, err);
	if (r < 0)
		return r;
	if (network_path(argv[r], "/leases", &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = lxm_client_request(c, "GET", path, NULL, &leases, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "list leases of network '%s'", argv[optind]);
	if (!json_is_array(leases))
		return lxm_error_set(err, -EPROTO, 502, "%s: the server sent no list", cmd);
	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (leases, i, l) {
		_cleanup_free_ char *type =
			lxm_cli_upper(json_string_value(json_object_get(l, "type")));
		const char *row[4] = {
			json_string_value(json_object_get(l, "hostname")),
			json_string_value(json_object_get(l, "hwaddr")),
			json_string_value(json_object_get(l, "address")),
			type,
		};

		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	lxm_table_sort(t);
	return lxm_cli_print_list(cmd, leases, t, fmt, err);
}

/* ---- create, delete, rename ---- */

static int network_create(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *config = NULL;
	const char *desc, *type = "bridge";
	int i;

	i = lxm_cli_create_args(argc, argv, 1, "NAME [KEY=VALUE...]", &desc, &type, &config, &c,
				err);
	if (i < 0)
		return i;
	body = json_pack("{s:s, s:s, s:s, s:O}", "name", argv[i], "type", type, "description", desc,
			 "config", config);
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_kind_create(c, &network_kind, argv[i], body, err);
}

static int network_delete(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_kind_delete(&network_kind, argc, argv, err);
}

static int network_rename(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_kind_rename(&network_kind, argc, argv, err);
}

/* ---- set, unset, get ---- */

static int network_set(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_set(&network_kind, argc, argv, err);
}

static int network_unset(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_unset(&network_kind, argc, argv, err);
}

static int network_get(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_get(&network_kind, argc, argv, err);
}

/* ---- edit ---- */

static const char edit_header[] =
	"### This is the network as YAML. Lines starting with '#' are ignored.\n"
	"###\n"
	"### Its description and config can be changed, for example:\n"
	"###   config:\n"
	"###     ipv4.address: 10.10.10.1/24\n"
	"###     ipv4.nat: \"true\"\n"
	"###     ipv6.address: none\n"
	"###     dns.domain: lxm\n"
	"###   description: My network\n"
	"###\n"
	"### The name, type, status and used_by are shown for reference; they cannot be changed\n"
	"### here.\n";

static int network_edit(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(lxm_cli_config_edit_done) struct lxm_cli_config_edit e = {
		.kind = "network", .fields = network_keys, /* the fields shown */
	};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *n = NULL, *view = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL;
	int r;

	r = lxm_cli_open(argc, argv, 1, 1, "a network NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &network_kind, argv[1], &n, &etag, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "network '%s'", argv[1]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	view = network_view(n);
	r = lxm_cli_edit_view(argv[0], what, view, edit_header, lxm_cli_check_config_doc, &e, err);
	if (r < 0)
		return r;
	return put_network(c, argv[1], e.config, e.description, etag, err);
}

const struct lxm_command lxm_network_commands[] = {
	{
		.name = "create",
		.run = network_create,
		.summary = "Create a managed bridge network",
		.usage = "network create NAME [KEY=VALUE...] [flags]",
		.help = "Keys: ipv4.address (CIDR, auto or none; default auto), ipv4.nat (default\n"
			"true), ipv6.address (CIDR, auto or none; default none), ipv6.nat,\n"
			"dns.domain (default lxm), bridge.mtu. The name (at most 15 characters)\n"
			"is also the bridge's interface name.\n"
			"\n"
			"Flags:\n"
			"      --description D   Description of the network\n"
			"  -t, --type T          bridge (the only type)\n",
	},
	LXM_CMD_DELETE(network_delete, "Delete a network", "network delete NAME"),
	{
		.name = "edit",
		.run = network_edit,
		.summary = "Edit a network as YAML",
		.usage = "network edit NAME",
		.help = "Opens $VISUAL or $EDITOR (default vi) on the network, or reads the YAML\n"
			"from standard input when it is not a terminal:\n"
			"  lxm network edit lxmbr0 < network.yaml\n",
	},
	LXM_CMD("get", network_get, "Get the value of a network config key",
		"network get NAME KEY"),
	LXM_CMD_LIST(network_list, "List networks", "network list [flags]"),
	{
		.name = "list-leases",
		.run = network_list_leases,
		.summary = "List the DHCP leases of a network",
		.usage = "network list-leases NAME [flags]",
		.help = LXM_FORMAT_FLAG_HELP,
	},
	LXM_CMD_RENAME(network_rename, "Rename a network", "network rename OLD NEW"),
	LXM_CMD("set", network_set, "Set network config keys",
		"network set NAME KEY=VALUE... | network set NAME KEY VALUE"),
	LXM_CMD("show", network_show, "Show a network as YAML", "network show NAME"),
	LXM_CMD("unset", network_unset, "Unset a network config key", "network unset NAME KEY"),
	{},
};
