/* lxm remote add|list|remove|rename: the servers the CLI knows (see remotes.h). */
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

static int remote_add(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "protocol", required_argument, NULL, 'P' },
		{ "public", no_argument, NULL, 'p' },
		{ "ca", required_argument, NULL, 'C' },
		{},
	};
	_cleanup_remotes_ struct lxm_remotes *rs = NULL;
	enum lxm_remote_protocol protocol = LXM_REMOTE_LXD;
	const char *cmd = argv[0], *ca = NULL, *name, *addr;
	bool public = false;
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'P':
			protocol = lxm_remote_protocol_from_string(optarg);
			if (protocol == _LXM_REMOTE_PROTOCOL_INVALID)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s: unknown protocol '%s' (use lxd or "
						     "simplestreams)",
						     cmd, optarg);
			break;
		case 'p':
			public
			= true;
			break;
		case 'C':
			ca = optarg;
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	r = lxm_cli_nargs(cmd, argc - optind, 2, 2, "a remote NAME and its URL", err);
	if (r < 0)
		return r;
	name = argv[optind];
	addr = argv[optind + 1];
	r = lxm_remotes_load(&rs, err);
	if (r < 0)
		return r;
	r = lxm_remotes_add(rs, name, addr, protocol, public, ca, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", cmd);
	/* Like lxc: a server that does not answer is not added. Image servers are reached over
	 * the network only when used. */
	if (protocol == LXM_REMOTE_LXD) {
		_cleanup_client_ struct lxm_client *c = NULL;

		r = lxm_remote_connect(lxm_remotes_find(rs, name), &c, err);
		if (r < 0)
			return lxm_error_prefix(err, "%s", cmd);
	}
	return lxm_remotes_save(rs, err);
}

static int remote_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "NAME", "URL", "PROTOCOL", "PUBLIC", "STATIC" };
	_cleanup_remotes_ struct lxm_remotes *rs = NULL;
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_json_ json_t *all = json_object();
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	int r;

	r = lxm_cli_list_args(argc, argv, 0, 0, "no arguments", &fmt, err);
	if (r >= 0)
		r = lxm_remotes_load(&rs, err);
	if (r < 0)
		return r;
	r = all ? lxm_table_new(&t, ARRAY_SIZE(header), header) : -ENOMEM;
	for (size_t i = 0; r >= 0 && i < rs->n; i++) {
		const struct lxm_remote *x = &rs->v[i];
		const char *proto = lxm_remote_protocol_to_string(x->protocol);
		const char *row[] = { x->name, x->addr, proto, x->public ? "YES" : "NO",
				      x->builtin ? "YES" : "NO" };
		json_t *o = json_pack("{s:s, s:s, s:b, s:b}", "addr", x->addr, "protocol", proto,
				      "public", x->public, "static", x->builtin);

		if (!o || (x->ca && json_object_set_new(o, "ca", json_string(x->ca)) < 0) ||
		    json_object_set_new(all, x->name, o) < 0)
			r = -ENOMEM;
		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	return lxm_cli_print_list(cmd, all, t, fmt, err);
}

/* remove NAME and rename OLD NEW: a change of the remotes file. */
static int change_remotes(int argc, char **argv, bool rename, struct lxm_error **err)
{
	_cleanup_remotes_ struct lxm_remotes *rs = NULL;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, rename ? 2 : 1, rename ? 2 : 1,
			  rename ? "OLD and NEW remote names" : "a remote NAME", err);
	if (r >= 0)
		r = lxm_remotes_load(&rs, err);
	if (r >= 0)
		r = rename ? lxm_remotes_rename(rs, argv[1], argv[2], err)
			   : lxm_remotes_remove(rs, argv[1], err);
	if (r < 0)
		return r;
	return lxm_remotes_save(rs, err);
}

static int remote_remove(int argc, char **argv, struct lxm_error **err)
{
	return change_remotes(argc, argv, false, err);
}

static int remote_rename(int argc, char **argv, struct lxm_error **err)
{
	return change_remotes(argc, argv, true, err);
}

const struct lxm_command lxm_remote_commands[] = {
	{
		.name = "add",
		.run = remote_add,
		.summary = "Add a remote",
		.usage = "remote add NAME URL [flags]",
		.help = "URL is another lxmd's socket (unix:///path/to/unix.socket) or, with\n"
			"--protocol simplestreams, an image server (https://HOST[:PORT][/PATH]).\n"
			"LXD-protocol remotes over HTTPS are not supported yet.\n"
			"Remotes are kept in $LXM_CONF/config.yml (default "
			"~/.config/lxm/config.yml).\n"
			"\n"
			"Flags:\n"
			"      --protocol P   lxd (default) or simplestreams\n"
			"      --public       The remote needs no credentials\n"
			"      --ca FILE      PEM certificate(s) to trust for an https server\n",
	},
	LXM_CMD_LIST(remote_list, "List the remotes", "remote list [flags]"),
	{
		.name = "remove",
		.alias = "rm",
		.run = remote_remove,
		.summary = "Remove a remote",
		.usage = "remote remove NAME",
	},
	LXM_CMD_RENAME(remote_rename, "Rename a remote", "remote rename OLD NEW"),
	{},
};
