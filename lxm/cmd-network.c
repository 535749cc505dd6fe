/* lxm network create|delete|edit|forward|get|info|list|list-leases|rename|set|show|unset: managed
 * bridge networks and their forwards. */
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

	r = lxm_cli_list_args(argc, argv, 0, 1, "at most a REMOTE:", &fmt, err);
	if (r >= 0)
		r = lxm_cli_list_remote(argc, argv, r, err);
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

	r = lxm_cli_open_target(argc, argv, 1, 1, "a network NAME", &c, err);
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
	if (r >= 0)
		r = lxm_cli_target_name(cmd, &argv[optind], err);
	if (r < 0)
		return r;
	if (network_path(argv[optind], "/leases", &path) < 0)
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

	r = lxm_cli_open_target(argc, argv, 1, 1, "a network NAME", &c, err);
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

/* ---- forwards ---- */

/* lxc shows a forward in the order of Go's api.NetworkForward fields. */
static const char *const forward_keys[] = {
	"listen_address", "description", "config", "ports", "location", NULL,
};
/* And a port in the order of api.NetworkForwardPort's. */
static const char *const port_keys[] = {
	"description", "protocol", "listen_port", "target_port", "target_address", NULL,
};

/* /1.0/networks/NET/forwards[/LISTEN], percent-encoded. */
static int forward_path(const char *net, const char *listen, char **ret)
{
	_cleanup_free_ char *n = lxm_cli_path("/1.0/networks/", net);
	_cleanup_free_ char *l = listen ? lxm_url_escape(listen) : NULL;

	if (!n || (listen && !l) ||
	    asprintf(ret, "%s/forwards%s%s", n, listen ? "/" : "", listen ? l : "") < 0)
		return -ENOMEM;
	return 0;
}

/* GET the forward LISTEN of NET with its ETag. */
static int forward_get(struct lxm_client *c, const char *net, const char *listen, json_t **ret,
		       char **ret_etag, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *what = NULL;

	/* The server's messages name the forward after the network. */
	if (forward_path(net, listen, &path) < 0 || asprintf(&what, "network '%s'", net) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return lxm_cli_get_object(c, path, what, "forward", ret, ret_etag, err);
}

/* PUT fw's description, config and ports back, guarded by etag. */
static int forward_put(struct lxm_client *c, const char *net, const char *listen, const json_t *fw,
		       const char *etag, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;
	json_t *config = json_object_get(fw, "config"), *ports = json_object_get(fw, "ports");
	const char *desc = json_string_value(json_object_get(fw, "description"));
	int r;

	body = json_pack("{s:s, s:O, s:O}", "description", desc ? desc : "", "config",
			 config ? config : json_object(), "ports", ports ? ports : json_array());
	if (!body || forward_path(net, listen, &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_cli_put(c, path, body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "network '%s': forward %s", net, listen);
	return 0;
}

/* The forward as lxc shows it: fields and port fields in lxc's order, config sorted. */
static json_t *forward_view(const json_t *fw)
{
	_cleanup_json_ json_t *view = lxm_json_reorder(fw, forward_keys), *ports = json_array();
	json_t *config, *p;
	size_t i;

	if (!view || !ports)
		return NULL;
	config = json_object_get(view, "config");
	config = json_is_object(config) ? lxm_json_sorted(config) : json_object();
	if (!config || json_object_set_new(view, "config", config) < 0)
		return NULL;
	json_array_foreach (json_object_get(fw, "ports"), i, p)
		if (json_array_append_new(ports, lxm_json_reorder(p, port_keys)) < 0)
			return NULL;
	if (json_object_set(view, "ports", ports) < 0)
		return NULL;
	return TAKE_PTR(view);
}

static int forward_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "LISTEN ADDRESS", "DESCRIPTION",
					      "DEFAULT TARGET ADDRESS", "PORTS" };
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *all = NULL;
	_cleanup_free_ char *path = NULL, *query = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	json_t *fw;
	size_t i;
	int r;

	r = lxm_cli_list_args(argc, argv, 1, 1, "a network NAME", &fmt, err);
	if (r >= 0)
		r = lxm_cli_target_name(cmd, &argv[optind], err);
	if (r < 0)
		return r;
	if (forward_path(argv[optind], NULL, &path) < 0 ||
	    asprintf(&query, "%s?recursion=1", path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = lxm_client_request(c, "GET", query, NULL, &all, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "list forwards of network '%s'", argv[optind]);
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502, "%s: the server sent no list", cmd);
	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (all, i, fw) {
		const char *dflt = json_string_value(
			json_object_get(json_object_get(fw, "config"), "target_address"));
		char ports[32];
		const char *row[4];

		snprintf(ports, sizeof(ports), "%zu",
			 json_array_size(json_object_get(fw, "ports")));
		row[0] = json_string_value(json_object_get(fw, "listen_address"));
		row[1] = json_string_value(json_object_get(fw, "description"));
		row[2] = dflt ? dflt : "";
		row[3] = ports;
		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	lxm_table_sort(t);
	return lxm_cli_print_list(cmd, all, t, fmt, err);
}

static int forward_show(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *fw = NULL, *view = NULL;
	_cleanup_free_ char *what = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 2, "a network NAME and a LISTEN_ADDRESS", &c, err);
	if (r >= 0)
		r = forward_get(c, argv[1], argv[2], &fw, NULL, err);
	if (r < 0)
		return r;
	view = forward_view(fw);
	if (asprintf(&what, "network '%s': forward %s", argv[1], argv[2]) < 0)
		what = NULL;
	return lxm_cli_print_yaml(argv[0], what ? view : NULL, what, err);
}

static int forward_create(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *config = NULL, *reply = NULL;
	_cleanup_free_ char *path = NULL, *msg = NULL;
	const char *desc;
	int i, r;

	i = lxm_cli_create_args(argc, argv, 2, "NETWORK LISTEN_ADDRESS [KEY=VALUE...]", &desc, NULL,
				&config, &c, err);
	if (i < 0)
		return i;
	body = json_pack("{s:s, s:s, s:O, s:[]}", "listen_address", argv[i + 1], "description",
			 desc, "config", config, "ports");
	if (!body || forward_path(argv[i], NULL, &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_do(c, "POST", path, body, &reply, err);
	if (r < 0)
		return lxm_error_prefix(err, "network '%s'", argv[i]);
	if (asprintf(&msg, "Network forward %s created\n", argv[i + 1]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_print(argv[0], msg, err);
}

static int forward_delete(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *reply = NULL;
	_cleanup_free_ char *path = NULL, *msg = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 2, "a network NAME and a LISTEN_ADDRESS", &c, err);
	if (r < 0)
		return r;
	if (forward_path(argv[1], argv[2], &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_do(c, "DELETE", path, NULL, &reply, err);
	if (r < 0)
		return lxm_error_prefix(err, "network '%s': forward %s", argv[1], argv[2]);
	if (asprintf(&msg, "Network forward %s deleted\n", argv[2]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_print(argv[0], msg, err);
}

static int forward_get_key(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *fw = NULL;
	_cleanup_free_ char *line = NULL;
	const char *v;
	int r;

	r = lxm_cli_open_target(argc, argv, 3, 3, "a network NAME, a LISTEN_ADDRESS and a KEY", &c,
				err);
	if (r >= 0)
		r = forward_get(c, argv[1], argv[2], &fw, NULL, err);
	if (r < 0)
		return r;
	v = json_string_value(json_object_get(json_object_get(fw, "config"), argv[3]));
	if (!v && streq(argv[3], "description"))
		v = json_string_value(json_object_get(fw, "description"));
	if (asprintf(&line, "%s\n", v ? v : "") < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_print(argv[0], line, err);
}

/* set and unset: a GET, the config changed, a PUT guarded by the ETag. */
static int forward_change(int argc, char **argv, bool unset, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *fw = NULL, *set = NULL, *config = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL;
	int r;

	r = unset ? lxm_cli_open_target(argc, argv, 3, 3,
					"a network NAME, a LISTEN_ADDRESS and a KEY", &c, err)
		  : lxm_cli_open_target(argc, argv, 3, -1,
					"a network NAME, a LISTEN_ADDRESS and KEY=VALUE...", &c,
					err);
	if (r < 0)
		return r;
	if (!unset && (r = lxm_cli_set_args(argv[0], argc - 3, argv + 3, &set, err)) < 0)
		return r;
	if (asprintf(&what, "network '%s': forward %s", argv[1], argv[2]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = forward_get(c, argv[1], argv[2], &fw, &etag, err);
	if (r >= 0)
		r = lxm_cli_change_config(argv[0], what, fw, set, unset ? argv[3] : NULL, &config,
					  err);
	if (r < 0)
		return r;
	if (json_object_set(fw, "config", config) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return forward_put(c, argv[1], argv[2], fw, etag, err);
}

static int forward_set(int argc, char **argv, struct lxm_error **err)
{
	return forward_change(argc, argv, false, err);
}

static int forward_unset(int argc, char **argv, struct lxm_error **err)
{
	return forward_change(argc, argv, true, err);
}

/* The edited forward: description, config and ports. */
struct forward_edit {
	json_t *doc; /* {"description", "config", "ports"} as checked */
};

/* An lxm_cli_edit_check_fn: a map of forward fields; config and each port a string map. */
static int check_forward_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	struct forward_edit *e = userdata;
	_cleanup_json_ json_t *config = NULL, *ports = json_array();
	_cleanup_free_ char *desc = NULL;
	const json_t *in;
	json_t *v;
	size_t i;
	int r;

	json_decref(TAKE_PTR(e->doc));
	r = lxm_cli_check_doc_fields(doc, forward_keys, "a map of forward fields",
				     "a forward has description, config and ports", err);
	if (r >= 0)
		r = lxm_cli_doc_description(doc, &desc, err);
	if (r < 0)
		return r;
	r = lxm_cli_string_map(json_object_get(doc, "config"), "config", &config, err);
	if (r < 0)
		return r;
	in = json_object_get(doc, "ports");
	if (in && !json_is_null(in) && !json_is_array(in))
		return lxm_error_set(err, -EINVAL, 400, "ports must be a list");
	json_array_foreach (in, i, v) {
		json_t *p = NULL;
		char what[32];

		snprintf(what, sizeof(what), "port %zu", i + 1);
		if (!json_is_object(v))
			return lxm_error_set(err, -EINVAL, 400, "%s must be a map", what);
		r = lxm_cli_string_map(v, what, &p, err);
		if (r < 0)
			return r;
		if (json_array_append_new(ports, p) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	e->doc =
		json_pack("{s:s, s:O, s:O}", "description", desc, "config", config, "ports", ports);
	return e->doc ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

static const char forward_edit_header[] =
	"### This is a network forward as YAML. Lines starting with '#' are ignored.\n"
	"###\n"
	"### Its description, config and ports can be changed, for example:\n"
	"###   description: web\n"
	"###   config:\n"
	"###     target_address: 10.10.10.2   # everything else goes here (optional)\n"
	"###   ports:\n"
	"###   - description: http\n"
	"###     protocol: tcp\n"
	"###     listen_port: 80,8080-8081\n"
	"###     target_address: 10.10.10.3\n"
	"###     target_port: 80,8080-8081    # optional: one port, or as many as listen_port\n"
	"###\n"
	"### The listen address and location are shown for reference; they cannot be changed.\n";

static int forward_edit(int argc, char **argv, struct lxm_error **err)
{
	struct forward_edit e = { 0 };
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *fw = NULL, *view = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 2, "a network NAME and a LISTEN_ADDRESS", &c, err);
	if (r >= 0)
		r = forward_get(c, argv[1], argv[2], &fw, &etag, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "network '%s': forward %s", argv[1], argv[2]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	view = forward_view(fw);
	r = lxm_cli_edit_view(argv[0], what, view, forward_edit_header, check_forward_doc, &e, err);
	if (r >= 0)
		r = forward_put(c, argv[1], argv[2], e.doc, etag, err);
	json_decref(e.doc);
	return r;
}

static int port_add(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *fw = NULL, *p = NULL;
	_cleanup_free_ char *etag = NULL;
	json_t *ports;
	int r;

	r = lxm_cli_open_target(argc, argv, 5, 6,
				"NETWORK LISTEN_ADDRESS PROTOCOL LISTEN_PORTS TARGET_ADDRESS "
				"[TARGET_PORTS]",
				&c, err);
	if (r >= 0)
		r = forward_get(c, argv[1], argv[2], &fw, &etag, err);
	if (r < 0)
		return r;
	p = json_pack("{s:s, s:s, s:s, s:s}", "protocol", argv[3], "listen_port", argv[4],
		      "target_address", argv[5], "target_port", argc > 6 ? argv[6] : "");
	ports = json_object_get(fw, "ports");
	if (!json_is_array(ports)) {
		ports = json_array();
		if (!ports || json_object_set_new(fw, "ports", ports) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	}
	if (!p || json_array_append(ports, p) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return forward_put(c, argv[1], argv[2], fw, etag, err);
}

static int port_remove(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *fw = NULL, *keep = json_array();
	_cleanup_free_ char *etag = NULL;
	const char *proto = argc > 3 ? argv[3] : NULL, *lport = argc > 4 ? argv[4] : NULL;
	size_t i, removed = 0;
	json_t *p;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 4,
				"NETWORK LISTEN_ADDRESS [PROTOCOL] [LISTEN_PORTS]", &c, err);
	if (r >= 0)
		r = forward_get(c, argv[1], argv[2], &fw, &etag, err);
	if (r < 0)
		return r;
	if (!keep)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	json_array_foreach (json_object_get(fw, "ports"), i, p) {
		const char *pp = json_string_value(json_object_get(p, "protocol"));
		const char *pl = json_string_value(json_object_get(p, "listen_port"));

		if ((!proto || streq(proto, pp ? pp : "")) &&
		    (!lport || streq(lport, pl ? pl : ""))) {
			removed++;
			continue;
		}
		if (json_array_append(keep, p) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	}
	if (!removed)
		return lxm_error_set(err, -ENOENT, 404,
				     "network '%s' forward %s: no port%s%s%s%s matches", argv[1],
				     argv[2], proto ? " " : "", proto ? proto : "",
				     lport ? " " : "", lport ? lport : "");
	if (json_object_set(fw, "ports", keep) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return forward_put(c, argv[1], argv[2], fw, etag, err);
}

static const struct lxm_command forward_port_commands[] = {
	LXM_CMD("add", port_add, "Add ports to a forward",
		"network forward port add NETWORK LISTEN_ADDRESS PROTOCOL LISTEN_PORTS "
		"TARGET_ADDRESS [TARGET_PORTS]"),
	LXM_CMD("remove", port_remove, "Remove ports from a forward",
		"network forward port remove NETWORK LISTEN_ADDRESS [PROTOCOL] [LISTEN_PORTS]"),
	{},
};

static int forward_port(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_dispatch(forward_port_commands, "add or remove", argc, argv, err);
}

static const struct lxm_command forward_commands[] = {
	{
		.name = "create",
		.run = forward_create,
		.summary = "Create a network forward",
		.usage = "network forward create NETWORK LISTEN_ADDRESS [KEY=VALUE...] [flags]",
		.help = "Keys: target_address (where traffic not matched by a port goes; in the\n"
			"network's subnet), user.*. Ports are added with 'network forward port "
			"add'.\n"
			"\n"
			"Flags:\n"
			"      --description D   Description of the forward\n",
	},
	LXM_CMD_DELETE(forward_delete, "Delete a network forward",
		       "network forward delete NETWORK LISTEN_ADDRESS"),
	{
		.name = "edit",
		.run = forward_edit,
		.summary = "Edit a network forward as YAML",
		.usage = "network forward edit NETWORK LISTEN_ADDRESS",
		.help = "Opens $VISUAL or $EDITOR (default vi) on the forward, or reads the YAML\n"
			"from standard input when it is not a terminal.\n",
	},
	LXM_CMD("get", forward_get_key, "Get the value of a network forward config key",
		"network forward get NETWORK LISTEN_ADDRESS KEY"),
	LXM_CMD_LIST(forward_list, "List the forwards of a network",
		     "network forward list NETWORK [flags]"),
	{
		.name = "port",
		.run = forward_port,
		.summary = "Manage the ports of a network forward",
		.usage = "network forward port <command>",
		.subcommands = forward_port_commands,
	},
	LXM_CMD("set", forward_set, "Set network forward config keys",
		"network forward set NETWORK LISTEN_ADDRESS KEY=VALUE..."),
	LXM_CMD("show", forward_show, "Show a network forward as YAML",
		"network forward show NETWORK LISTEN_ADDRESS"),
	LXM_CMD("unset", forward_unset, "Unset a network forward config key",
		"network forward unset NETWORK LISTEN_ADDRESS KEY"),
	{},
};

/* "lxm network forward ...": a group inside a group, dispatched here. */
static int network_forward(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_dispatch(forward_commands,
				"create, delete, edit, get, list, port, set, show or unset", argc,
				argv, err);
}

/* ---- info ---- */

static int network_info(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *st = NULL;
	_cleanup_free_ char *path = NULL, *text = NULL;
	size_t len = 0, i;
	json_t *a;
	FILE *f;
	int r;

	r = lxm_cli_open_target(argc, argv, 1, 1, "a network NAME", &c, err);
	if (r < 0)
		return r;
	if (network_path(argv[1], "/state", &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_request(c, "GET", path, NULL, &st, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "network '%s': state", argv[1]);
	f = open_memstream(&text, &len);
	if (!f)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	fprintf(f, "Name: %s\nMAC address: %s\nMTU: %lld\nState: %s\nType: %s\n", argv[1],
		json_string_value(json_object_get(st, "hwaddr")) ?: "",
		(long long)json_integer_value(json_object_get(st, "mtu")),
		json_string_value(json_object_get(st, "state")) ?: "",
		json_string_value(json_object_get(st, "type")) ?: "");
	fprintf(f, "\nIP addresses:\n");
	json_array_foreach (json_object_get(st, "addresses"), i, a)
		fprintf(f, "  %s\t%s/%s (%s)\n", json_string_value(json_object_get(a, "family")),
			json_string_value(json_object_get(a, "address")),
			json_string_value(json_object_get(a, "netmask")),
			json_string_value(json_object_get(a, "scope")));
	fprintf(f,
		"\nNetwork usage:\n  Bytes received: %lld\n  Bytes sent: %lld\n"
		"  Packets received: %lld\n  Packets sent: %lld\n",
		(long long)json_integer_value(
			json_object_get(json_object_get(st, "counters"), "bytes_received")),
		(long long)json_integer_value(
			json_object_get(json_object_get(st, "counters"), "bytes_sent")),
		(long long)json_integer_value(
			json_object_get(json_object_get(st, "counters"), "packets_received")),
		(long long)json_integer_value(
			json_object_get(json_object_get(st, "counters"), "packets_sent")));
	if (json_string_value(json_object_get(st, "forward_drop")))
		fprintf(f,
			"\nWarning: %s: a forward hook with policy drop in another nftables "
			"table;\n"
			"  routed traffic of this network may be dropped there (lxm's own rules\n"
			"  cannot override it)\n",
			json_string_value(json_object_get(st, "forward_drop")));
	if (fclose(f) != 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_print(argv[0], text, err);
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
	{
		.name = "forward",
		.run = network_forward,
		.summary = "Manage network forwards",
		.usage = "network forward <command>",
		.subcommands = forward_commands,
	},
	LXM_CMD("get", network_get, "Get the value of a network config key",
		"network get NAME KEY"),
	LXM_CMD("info", network_info, "Show a network's state", "network info NAME"),
	LXM_CMD_LIST(network_list, "List networks", "network list [flags] [REMOTE:]"),
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
