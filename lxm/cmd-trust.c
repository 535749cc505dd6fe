/* lxm config trust add|list|remove|list-tokens|revoke-token: the server's trust store of client
 * certificates (/1.0/certificates), as `lxc config trust` manages it. `add` without a file makes
 * a join token for a client to redeem with `lxm remote add NAME TOKEN`; pending tokens are
 * running operations of class "token", listed and cancelled through /1.0/operations. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/tls-client.h"
#include "lib/util.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"

/* A certificate's name when none is given: the file's name without ".crt" or ".pem". */
static char *name_from_file(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	char *base, *dot;

	if (!copy)
		return NULL;
	base = basename(copy);
	dot = strrchr(base, '.');
	if (dot && (streq(dot, ".crt") || streq(dot, ".pem")))
		*dot = '\0';
	return strdup(base);
}

/* The encoded token of a "token" operation's metadata: its "token" (lxmd), else encoded from
 * LXD's parts (request.name, fingerprint, addresses, secret, expiresAt) as lxc does; *ret NULL
 * when there is neither. *built owns what was encoded. */
static int token_of(const json_t *md, const char *name, const char **ret, char **built)
{
	const json_t *addrs = json_object_get(md, "addresses"), *a;
	const char *expires = json_string_value(json_object_get(md, "expiresAt"));
	struct lxm_tlsc_token tk = {
		.client_name = (char *)name,
		.fingerprint = (char *)json_string_value(json_object_get(md, "fingerprint")),
		.secret = (char *)json_string_value(json_object_get(md, "secret")),
		.expires_at =
			(char *)(expires ? expires
					 : json_string_value(json_object_get(md, "expires_at"))),
	};
	_cleanup_free_ char **v = NULL;
	size_t i;
	int r;

	*ret = json_string_value(json_object_get(md, "token"));
	if ((*ret && **ret) || !tk.secret || !tk.fingerprint || !name)
		return 0;
	v = calloc(json_array_size(addrs) + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	json_array_foreach (addrs, i, a)
		if (json_is_string(a))
			v[tk.n_addresses++] = (char *)json_string_value(a);
	tk.addresses = v;
	if (!tk.n_addresses)
		return 0;
	r = lxm_tlsc_token_encode(&tk, built);
	if (r < 0)
		return r;
	*ret = *built;
	return 0;
}

static int trust_add(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "readonly", no_argument, NULL, 'r' },
		{ "quiet", no_argument, NULL, 'q' },
		{},
	};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *op = NULL;
	_cleanup_free_ char *pem = NULL, *der = NULL, *fname = NULL, *built = NULL;
	json_t *md;
	const char *cmd = argv[0], *name = NULL, *token, *target = NULL;
	bool readonly = false, quiet = false;
	size_t len;
	char fp[65];
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":q", options, NULL)) != -1) {
		switch (opt) {
		case 'n':
			name = optarg;
			break;
		case 'r':
			readonly = true;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	r = lxm_cli_nargs(cmd, argc - optind, 0, 2, "[REMOTE:] [CERTFILE]", err);
	if (r < 0)
		return r;
	/* An optional REMOTE: first, as for lxc. */
	if (optind < argc && strchr(argv[optind], ':') && !strchr(argv[optind], '/')) {
		r = lxm_cli_target(argv[optind], &target, err);
		if (r < 0)
			return r;
		optind++;
	}
	if (argc - optind > 1)
		return lxm_error_set(err, -EINVAL, 400, "%s: expected at most one CERTFILE", cmd);
	if (optind == argc) {
		/* A token: the client brings its own certificate. */
		if (!name)
			return lxm_error_set(err, -EINVAL, 400,
					     "%s: without a CERTFILE, --name NAME names the client "
					     "the token is for",
					     cmd);
		body = json_pack("{s:s, s:s, s:b}", "name", name, "type", "client", "token", 1);
	} else {
		const char *file = argv[optind];

		r = lxm_read_file(file, &pem, &len);
		if (r < 0)
			return lxm_error_setx(err, r, 400, "%s: read %s", cmd, file);
		r = lxm_tlsc_fingerprint_pem(pem, len, fp);
		if (r >= 0)
			r = lxm_tlsc_pem_to_base64_der(pem, len, &der);
		if (r < 0)
			return lxm_error_set(err, r, 400, "%s: %s is not a PEM certificate", cmd,
					     file);
		if (!name) {
			fname = name_from_file(file);
			if (!fname)
				return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
			name = fname;
		}
		body = json_pack("{s:s, s:s, s:s}", "name", name, "type", "client", "certificate",
				 der);
	}
	if (!body || (readonly && json_object_set_new(body, "read_only", json_true()) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	if (!pem) {
		/* The token is in the metadata of the operation the server made for it. */
		struct lxm_client_response resp = {};

		r = lxm_client_request(c, "POST", "/1.0/certificates", body, &op, &resp, err);
		lxm_client_response_done(&resp);
		if (r < 0)
			return lxm_error_prefix(err, "%s: make a token for '%s'", cmd, name);
		md = json_object_get(op, "metadata");
		r = token_of(md, name, &token, &built);
		if (r < 0)
			return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
		if (!token || !*token)
			return lxm_error_set(err, -EPROTO, 502,
					     "%s: the server made no token for '%s' (its reply has "
					     "no metadata.token nor its parts)",
					     cmd, name);
		if (quiet)
			printf("%s\n", token);
		else
			printf("Client %s certificate add token:\n%s\n", name, token);
		return 0;
	}
	r = lxm_client_do(c, "POST", "/1.0/certificates", body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s: add certificate %.12s ('%s')", cmd, fp, name);
	return 0;
}

/* A list's arguments ([REMOTE:] and --format) and the connection to the remote. */
static int open_list(int argc, char **argv, enum lxm_format *fmt, struct lxm_client **ret,
		     struct lxm_error **err)
{
	int r = lxm_cli_list_args(argc, argv, 0, 1, "[REMOTE:]", fmt, err);

	if (r >= 0)
		r = lxm_cli_list_remote(argc, argv, r, err);
	if (r < 0)
		return r;
	r = lxm_cli_connect(ret, err);
	return r < 0 ? lxm_error_prefix(err, "%s", argv[0]) : r;
}

static int trust_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "NAME", "TYPE", "FINGERPRINT", "READONLY" };
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_json_ json_t *all = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	json_t *v;
	size_t i;
	int r;

	r = open_list(argc, argv, &fmt, &c, err);
	if (r < 0)
		return r;
	r = lxm_client_request(c, "GET", "/1.0/certificates?recursion=1", NULL, &all, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", cmd);
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502, "%s: the server's list is not an array",
				     cmd);
	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (all, i, v) {
		const char *fp = json_string_value(json_object_get(v, "fingerprint"));
		char prefix[13];
		const char *row[4];

		snprintf(prefix, sizeof(prefix), "%s", fp ? fp : "");
		row[0] = json_string_value(json_object_get(v, "name"));
		row[1] = json_string_value(json_object_get(v, "type"));
		row[2] = prefix;
		row[3] = json_is_true(json_object_get(v, "read_only")) ? "YES" : "NO";
		if (!row[0])
			row[0] = "";
		if (!row[1])
			row[1] = "";
		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	return lxm_cli_print_list(cmd, all, t, fmt, err);
}

static int trust_remove(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	const char *cmd = argv[0], *fp;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 1, "a certificate FINGERPRINT (or [REMOTE:]FP)", err);
	if (r >= 0)
		r = lxm_cli_target(argv[1], &fp, err);
	if (r < 0)
		return r;
	if (!*fp)
		return lxm_error_set(err, -EINVAL, 400, "%s: expected a FINGERPRINT", cmd);
	path = lxm_cli_path("/1.0/certificates/", fp);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = lxm_client_do(c, "DELETE", path, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s: certificate %s", cmd, fp);
	return 0;
}

/* The running operations of class "token" (pending join tokens), from GET /1.0/operations, as
 * an array of {name, token, expires_at, operation}. */
static int pending_tokens(struct lxm_client *c, const char *cmd, json_t **ret,
			  struct lxm_error **err)
{
	_cleanup_json_ json_t *ops = NULL, *out = json_array();
	json_t *running, *op;
	size_t i;
	int r;

	if (!out)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_request(c, "GET", "/1.0/operations?recursion=1", NULL, &ops, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s: list operations", cmd);
	running = json_object_get(ops, "running");
	json_array_foreach (running, i, op) {
		_cleanup_free_ char *built = NULL;
		json_t *md = json_object_get(op, "metadata");
		const char *name =
			json_string_value(json_object_get(json_object_get(md, "request"), "name"));
		const char *expires = json_string_value(json_object_get(md, "expiresAt"));
		const char *token = NULL;

		if (!streq(json_string_value(json_object_get(op, "class")) ?: "", "token"))
			continue;
		if (!name)
			name = json_string_value(json_object_get(md, "client_name"));
		r = token_of(md, name, &token, &built);
		if (r < 0 ||
		    json_array_append_new(
			    out, json_pack("{s:s, s:s, s:s, s:s}", "name", name ? name : "",
					   "token", token ? token : "", "expires_at",
					   expires ? expires : "", "operation",
					   json_string_value(json_object_get(op, "id")) ?: "")) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* LXD shows Go's zero time for a token that never expires. */
static bool never(const char *when)
{
	return !*when || startswith(when, "0001-01-01");
}

static int trust_list_tokens(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "NAME", "TOKEN", "EXPIRES AT" };
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_json_ json_t *all = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	json_t *v;
	size_t i;
	int r;

	r = open_list(argc, argv, &fmt, &c, err);
	if (r < 0)
		return r;
	r = pending_tokens(c, cmd, &all, err);
	if (r < 0)
		return r;
	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (all, i, v) {
		const char *when = json_string_value(json_object_get(v, "expires_at"));
		const char *row[3] = {
			json_string_value(json_object_get(v, "name")),
			json_string_value(json_object_get(v, "token")),
			never(when) ? "never" : when,
		};

		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	return lxm_cli_print_list(cmd, all, t, fmt, err);
}

static int trust_revoke_token(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *all = NULL;
	const char *cmd = argv[0], *name;
	size_t i, n = 0;
	json_t *v;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 1, "the client NAME of a token (or [REMOTE:]NAME)",
			  err);
	if (r >= 0)
		r = lxm_cli_target(argv[1], &name, err);
	if (r < 0)
		return r;
	if (!*name)
		return lxm_error_set(err, -EINVAL, 400, "%s: expected a client NAME", cmd);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", cmd);
	r = pending_tokens(c, cmd, &all, err);
	if (r < 0)
		return r;
	/* Every pending token for that name goes, as with lxc. */
	json_array_foreach (all, i, v) {
		_cleanup_free_ char *path = NULL;

		if (!streq(json_string_value(json_object_get(v, "name")), name))
			continue;
		path = lxm_cli_path("/1.0/operations/",
				    json_string_value(json_object_get(v, "operation")));
		if (!path)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
		r = lxm_client_do(c, "DELETE", path, NULL, NULL, err);
		if (r < 0)
			return lxm_error_prefix(err, "%s: revoke the token for '%s'", cmd, name);
		n++;
	}
	if (!n)
		return lxm_error_set(err, -ENOENT, 404, "%s: no pending token for '%s'", cmd, name);
	return 0;
}

static const struct lxm_command trust_commands[] = {
	{
		.name = "add",
		.run = trust_add,
		.summary = "Trust a client certificate, or make a join token",
		.usage = "config trust add [REMOTE:] [CERTFILE] [--name NAME] [--readonly]",
		.help = "With CERTFILE (PEM), the certificate is trusted at once (named after the\n"
			"file unless --name says otherwise). Without one, --name NAME makes a\n"
			"single-use token that the client redeems with 'lxm remote add NAME "
			"TOKEN'\n"
			"(or 'lxc remote add').\n"
			"\n"
			"Flags:\n"
			"      --name NAME   The certificate's name\n"
			"      --readonly    The client may only read\n"
			"  -q, --quiet       Print the token alone\n",
	},
	LXM_CMD_LIST(trust_list, "List the trusted certificates", "config trust list [REMOTE:]"),
	{
		.name = "remove",
		.alias = "rm",
		.run = trust_remove,
		.summary = "Stop trusting a certificate",
		.usage = "config trust remove FINGERPRINT",
	},
	{
		.name = "list-tokens",
		.run = trust_list_tokens,
		.summary = "List the pending join tokens",
		.usage = "config trust list-tokens [REMOTE:]",
		.help = "The tokens made by 'config trust add --name NAME' that have not been\n"
			"redeemed, revoked or expired (core.remote_token_expiry) yet.\n"
			"\n" LXM_FORMAT_FLAG_HELP,
	},
	{
		.name = "revoke-token",
		.run = trust_revoke_token,
		.summary = "Revoke the pending join token of a client",
		.usage = "config trust revoke-token [REMOTE:]NAME",
	},
	{},
};

int lxm_cli_config_trust(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_dispatch(trust_commands, "add, list, remove, list-tokens or revoke-token",
				argc, argv, err);
}
