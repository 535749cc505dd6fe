/* lxm remote add|list|remove|rename|set-url|switch|get-default: the servers the CLI knows (see
 * remotes.h). Adding an https remote pins its certificate and, with a token, gets the client's
 * certificate trusted, as lxc does. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/tls-client.h"
#include "lib/util.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"

/* Asks the user to accept the server's certificate, unless accept says so already. */
static int confirm_certificate(const char *cmd, const char *name, const char *fp, bool accept,
			       struct lxm_error **err)
{
	char line[64];

	if (accept)
		return 0;
	if (!isatty(STDIN_FILENO))
		return lxm_error_set(err, -EPERM, 400,
				     "%s: remote '%s': the server's certificate fingerprint is %s; "
				     "pass --accept-certificate to trust it (stdin is not a "
				     "terminal to ask)",
				     cmd, name, fp);
	printf("Certificate fingerprint: %s\nok (y/n)? ", fp);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin) || (line[0] != 'y' && line[0] != 'Y'))
		return lxm_error_set(err, -ECANCELED, 400,
				     "%s: remote '%s': the server's certificate was not accepted",
				     cmd, name);
	return 0;
}

/* Has the server trust the client's certificate, with the token's secret (LXD 5.0's way: the
 * encoded token as "password"; the server takes the certificate from the TLS connection). */
static int redeem_token(struct lxm_client *c, const struct lxm_remotes *rs, const char *token,
			const char *client_name, struct lxm_error **err)
{
	_cleanup_free_ char *cert = NULL, *key = NULL, *pem = NULL, *der = NULL;
	_cleanup_json_ json_t *body = NULL;
	size_t len;
	int r;

	r = lxm_remotes_client_cert(rs, &cert, &key, err);
	if (r < 0)
		return r;
	r = lxm_read_file(cert, &pem, &len);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "read %s", cert);
	r = lxm_tlsc_pem_to_base64_der(pem, len, &der);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "read %s", cert);
	body = json_pack("{s:s, s:s, s:s}", "type", "client", "password", token, "certificate",
			 der);
	if (!body || (client_name && *client_name &&
		      json_object_set_new(body, "name", json_string(client_name)) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "POST", "/1.0/certificates", body, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "redeem the token");
	return 0;
}

/* An https lxd remote: pins the server's certificate once the user accepted it, then makes sure
 * the server trusts the client (redeeming token when it does not yet). A public remote (an image
 * server: its public images need no trust) may stay untrusted. */
static int add_https(struct lxm_remotes *rs, const char *cmd, const char *name, const char *url,
		     const char *token, const char *token_fp, const char *token_name, bool accept,
		     bool public, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL, *again = NULL;
	_cleanup_free_ char *pin = NULL, *dir = NULL;
	const json_t *server;
	struct lxm_tlsc *tls;
	const char *auth;
	int r;

	r = lxm_remote_client_tls(rs, url, NULL, &c, err);
	if (r >= 0)
		r = lxm_client_server(c, &server, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s: remote '%s'", cmd, name);
	tls = lxm_client_tls(c);
	/* A token names the certificate it was made beside: that match is the user's consent. */
	if (token_fp && !streq(token_fp, tls->peer_fp))
		return lxm_error_set(err, -EKEYREJECTED, 400,
				     "%s: remote '%s': %s presented certificate %s, but the token "
				     "is for %s",
				     cmd, name, url, tls->peer_fp, token_fp);
	if (!token_fp) {
		r = confirm_certificate(cmd, name, tls->peer_fp, accept, err);
		if (r < 0)
			return r;
	}
	pin = lxm_remotes_server_cert_path(rs, name);
	if (asprintf(&dir, "%s/servercerts", rs->dir) < 0 || !pin)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_mkdir_p(dir, 0700);
	if (r >= 0)
		r = lxm_write_file_atomic(pin, tls->peer_pem, strlen(tls->peer_pem), 0644);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "%s: remote '%s': write %s", cmd, name, pin);
	auth = json_string_value(json_object_get(server, "auth"));
	if (!streq(auth, "trusted") && (token || !public)) {
		if (!token) {
			(void)unlink(pin);
			return lxm_error_set(err, -EACCES, 403,
					     "%s: remote '%s': the server does not trust this "
					     "client; pass --token TOKEN (made on the server with "
					     "'lxm config trust add --name NAME')",
					     cmd, name);
		}
		r = redeem_token(c, rs, token, token_name, err);
		/* A new connection: the trust is checked when one is made. */
		if (r >= 0)
			r = lxm_remote_client_tls(rs, url, pin, &again, err);
		if (r >= 0)
			r = lxm_client_server(again, &server, err);
		if (r < 0) {
			(void)unlink(pin);
			return lxm_error_prefix(err, "%s: remote '%s'", cmd, name);
		}
		auth = json_string_value(json_object_get(server, "auth"));
		if (!streq(auth, "trusted")) {
			(void)unlink(pin);
			return lxm_error_set(err, -EACCES, 403,
					     "%s: remote '%s': the server accepted the token but "
					     "still does not trust this client (auth: %s)",
					     cmd, name, auth ? auth : "none");
		}
	}
	return 0;
}

static int remote_add(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "protocol", required_argument, NULL, 'P' },
		{ "public", no_argument, NULL, 'p' },
		{ "ca", required_argument, NULL, 'C' },
		{ "accept-certificate", no_argument, NULL, 'a' },
		{ "token", required_argument, NULL, 't' },
		{},
	};
	_cleanup_(lxm_tlsc_token_done) struct lxm_tlsc_token tok = {};
	_cleanup_free_ char *url = NULL;
	const char *token = NULL;
	bool accept = false;
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
		case 'a':
			accept = true;
			break;
		case 't':
			token = optarg;
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
	/* "remote add NAME TOKEN": the token says where the server is. */
	if (!token && protocol == LXM_REMOTE_LXD && !strstr(addr, "://")) {
		if (lxm_tlsc_token_decode(addr, &tok) < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "%s: '%s' is neither a URL (https://HOST[:PORT], "
					     "unix:///path) nor a token",
					     cmd, addr);
		token = addr;
		/* The first of the server's addresses that answers (lxc tries them in turn); when
		 * none does, the first one's error says why. */
		for (size_t i = 0; i <= tok.n_addresses; i++) {
			_cleanup_free_ char *host = NULL, *port = NULL;

			free(url);
			if (asprintf(&url, "https://%s",
				     tok.addresses[i < tok.n_addresses ? i : 0]) < 0) {
				url = NULL;
				break;
			}
			if (i == tok.n_addresses ||
			    (lxm_tlsc_split_url(url, "8443", &host, &port) >= 0 &&
			     lxm_tlsc_probe(host, port, 3000) >= 0))
				break;
		}
	} else {
		if (token && lxm_tlsc_token_decode(token, &tok) < 0)
			return lxm_error_set(err, -EINVAL, 400, "%s: --token: not a valid token",
					     cmd);
		url = strdup(addr);
	}
	if (!url)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	/* A bare host is an https server on LXD's port, as for lxc. */
	if (protocol == LXM_REMOTE_LXD && !strstr(url, "://")) {
		char *u;

		if (asprintf(&u, "https://%s", url) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
		free(url);
		url = u;
	}
	addr = url;
	r = lxm_remotes_load(&rs, err);
	if (r >= 0)
		r = lxm_remotes_add(rs, name, addr, protocol, public, ca, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", cmd);
	if (protocol == LXM_REMOTE_LXD && startswith(addr, "https://")) {
		r = add_https(rs, cmd, name, addr, token, tok.fingerprint, tok.client_name, accept,
			      public, err);
		if (r < 0)
			return r;
		return lxm_remotes_save(rs, err);
	}
	if (token)
		return lxm_error_set(err, -EINVAL, 400, "%s: --token is for https:// remotes", cmd);
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
	static const char *const header[] = { "NAME",	   "URL",    "PROTOCOL",
					      "AUTH TYPE", "PUBLIC", "STATIC" };
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
		bool current = streq(rs->current, x->name);
		_cleanup_free_ char *label = NULL;
		const char *auth = x->tls			   ? "tls"
				   : x->protocol == LXM_REMOTE_LXD ? "file access"
								   : "none";
		const char *row[6] = { x->name,
				       x->addr,
				       proto,
				       auth,
				       x->public ? "YES" : "NO",
				       x->builtin ? "YES" : "NO" };
		json_t *o = json_pack("{s:s, s:s, s:b, s:b}", "addr", x->addr, "protocol", proto,
				      "public", x->public, "static", x->builtin);

		if (current && asprintf(&label, "%s (current)", x->name) >= 0)
			row[0] = label;
		/* Only what sets a remote apart, so that plain entries stay as they were. */
		if (!o || (x->ca && json_object_set_new(o, "ca", json_string(x->ca)) < 0) ||
		    (x->tls && json_object_set_new(o, "auth_type", json_string("tls")) < 0) ||
		    (current && json_object_set_new(o, "current", json_true()) < 0) ||
		    json_object_set_new(all, x->name, o) < 0)
			r = -ENOMEM;
		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	return lxm_cli_print_list(cmd, all, t, fmt, err);
}

/* The commands that change the remotes file. */
enum remotes_change {
	CHANGE_REMOVE,
	CHANGE_RENAME,
	CHANGE_SET_URL,
	CHANGE_SWITCH,
};

/* remove NAME, rename OLD NEW, set-url NAME URL and switch NAME: a change of the remotes file. */
static int change_remotes(int argc, char **argv, enum remotes_change change, struct lxm_error **err)
{
	static const char *const wanted[] = {
		[CHANGE_REMOVE] = "a remote NAME",
		[CHANGE_RENAME] = "OLD and NEW remote names",
		[CHANGE_SET_URL] = "a remote NAME and its new URL",
		[CHANGE_SWITCH] = "a remote NAME",
	};
	_cleanup_remotes_ struct lxm_remotes *rs = NULL;
	int n = change == CHANGE_RENAME || change == CHANGE_SET_URL ? 2 : 1;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, n, n, wanted[change], err);
	if (r >= 0)
		r = lxm_remotes_load(&rs, err);
	if (r < 0)
		return r;
	switch (change) {
	case CHANGE_REMOVE:
		r = lxm_remotes_remove(rs, argv[1], err);
		break;
	case CHANGE_RENAME:
		r = lxm_remotes_rename(rs, argv[1], argv[2], err);
		break;
	case CHANGE_SET_URL:
		r = lxm_remotes_set_url(rs, argv[1], argv[2], err);
		break;
	case CHANGE_SWITCH:
		r = lxm_remotes_switch(rs, argv[1], err);
		break;
	}
	if (r < 0)
		return r;
	return lxm_remotes_save(rs, err);
}

static int remote_remove(int argc, char **argv, struct lxm_error **err)
{
	return change_remotes(argc, argv, CHANGE_REMOVE, err);
}

static int remote_rename(int argc, char **argv, struct lxm_error **err)
{
	return change_remotes(argc, argv, CHANGE_RENAME, err);
}

static int remote_set_url(int argc, char **argv, struct lxm_error **err)
{
	return change_remotes(argc, argv, CHANGE_SET_URL, err);
}

static int remote_switch(int argc, char **argv, struct lxm_error **err)
{
	return change_remotes(argc, argv, CHANGE_SWITCH, err);
}

static int remote_get_default(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_remotes_ struct lxm_remotes *rs = NULL;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 0, 0, "no arguments", err);
	if (r >= 0)
		r = lxm_remotes_load(&rs, err);
	if (r < 0)
		return r;
	printf("%s\n", rs->current);
	return 0;
}

const struct lxm_command lxm_remote_commands[] = {
	{
		.name = "add",
		.run = remote_add,
		.summary = "Add a remote",
		.usage = "remote add NAME URL|TOKEN [flags]",
		.help = "URL is another lxmd or LXD over HTTPS (https://HOST[:PORT], port 8443 by\n"
			"default), another lxmd's socket (unix:///path/to/unix.socket) or, with\n"
			"--protocol simplestreams, an image server (https://HOST[:PORT][/PATH]).\n"
			"An https server's certificate is shown and, once accepted, pinned in\n"
			"servercerts/NAME.crt; a server that does not trust this client's\n"
			"certificate (client.crt, made on first use) is given --token TOKEN, made\n"
			"there with 'lxm config trust add --name NAME'. A token alone as the URL\n"
			"says where the server is.\n"
			"Remotes are kept in $LXM_CONF/config.yml (default "
			"~/.config/lxm/config.yml).\n"
			"\n"
			"Flags:\n"
			"      --protocol P   lxd (default) or simplestreams\n"
			"      --public       The remote needs no credentials\n"
			"      --ca FILE      PEM certificate(s) to trust for an image server\n"
			"      --accept-certificate  Trust the server's certificate without "
			"asking\n"
			"      --token TOKEN  A join token to have the client's certificate "
			"trusted\n",
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
	{
		.name = "set-url",
		.run = remote_set_url,
		.summary = "Change a remote's URL",
		.usage = "remote set-url NAME URL",
	},
	{
		.name = "switch",
		.run = remote_switch,
		.summary = "Make a remote the default one",
		.usage = "remote switch NAME",
	},
	{
		.name = "get-default",
		.run = remote_get_default,
		.summary = "Show the default remote",
		.usage = "remote get-default",
	},
	{},
};
