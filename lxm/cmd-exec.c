/* lxm exec: runs a command in an instance, as `lxc exec` does: POST .../exec with
 * wait-for-websocket, one websocket per stream (LXD's protocol, see lxmd/api/api-exec.c), and the
 * exit status from the finished operation's metadata.return.
 *
 * The websockets are lxm/ws-client.h's connections. One poll() loop moves the bytes: local stdin
 * to "0", "1" and "2" (or, interactive, "0") to stdout and stderr, signals to "control". Nothing in
 * it blocks on a peer: what the server cannot take yet waits in a buffer, and stdin is not read
 * while that buffer is full. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/ws.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"
#include "lxm/ws-client.h"

/* Bytes read from stdin at a time. */
#define IO_CHUNK (64 * 1024)
/* Stdin is not read while more than this waits to go out on "0". */
#define OUT_HIGH (1024 * 1024)

enum {
	WS_STDIN,
	WS_STDOUT,
	WS_STDERR,
	WS_CONTROL,
	_WS_MAX,
};

static const char *const ws_keys[_WS_MAX] = { "0", "1", "2", "control" };

struct exec_cli {
	const char *cmd;	       /* "exec", for messages */
	const char *name;	       /* the instance */
	bool interactive;	       /* a pty on the server side, raw local tty */
	bool stdout_broken;	       /* our stdout is gone: output is dropped */
	bool stdin_open;	       /* local stdin is read and forwarded */
	struct lxm_ws_conn c[_WS_MAX]; /* the websockets */
	int fail;		       /* -errno of a broken local write, 0 */
	struct lxm_client *client;     /* for the operation's status */
	const char *op;		       /* the operation's id */
	bool output_seen;	       /* the command's output began */
	bool status_shown;	       /* the operation's status was shown */
	int status_checks;	       /* times the status was asked */
	uint64_t status_ms;	       /* when it was last asked */
};

/* While a VM's agent has not answered, the operation's metadata has a "status": asked every
 * STATUS_CHECK_MS, at most STATUS_CHECKS times, until the output begins; shown once. */
#define STATUS_CHECK_MS 500
#define STATUS_CHECKS	5

/* Forwarded to the command, as lxc does; SIGWINCH becomes a resize. */
static const int forwarded_signals[] = {
	SIGHUP,	 SIGINT,  SIGQUIT, SIGTERM, SIGUSR1,  SIGUSR2,
	SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH,
};

/* ---- websockets ---- */

static void conn_message(struct lxm_ws_conn *c, enum lxm_ws_opcode op, const uint8_t *data,
			 size_t len)
{
	struct exec_cli *x = c->userdata;
	int index = (int)(c - x->c);
	int fd = index == WS_STDERR ? STDERR_FILENO : STDOUT_FILENO;
	int k;

	if (index == WS_CONTROL || (index == WS_STDIN && !x->interactive))
		return;
	x->output_seen = true;
	/* The barrier: this stream is complete. */
	if (op == LXM_WS_TEXT) {
		c->done = true;
		return;
	}
	if (fd == STDOUT_FILENO && x->stdout_broken)
		return;
	k = lxm_write_all(fd, data, len);
	if (k == -EPIPE && fd == STDOUT_FILENO) {
		/* As for a local command whose reader went away: SIGPIPE, and no more output. */
		x->stdout_broken = true;
		lxm_ws_conn_send_json(&x->c[WS_CONTROL],
				      json_pack("{s:s, s:n, s:i}", "command", "signal", "args",
						"signal", SIGPIPE));
	} else if (k < 0 && !x->fail) {
		x->fail = k;
	}
}

/* ---- the session ---- */

static void on_signal(void *userdata, int sig)
{
	struct exec_cli *x = userdata;

	if (sig == SIGWINCH) {
		unsigned w = 0, h = 0;
		char ws[16], hs[16];

		if (!x->interactive)
			return;
		lxm_terminal_size(&w, &h);
		if (w == 0)
			return;
		snprintf(ws, sizeof(ws), "%u", w);
		snprintf(hs, sizeof(hs), "%u", h);
		lxm_ws_conn_send_json(&x->c[WS_CONTROL],
				      json_pack("{s:s, s:{s:s, s:s}, s:i}", "command",
						"window-resize", "args", "width", ws, "height", hs,
						"signal", 0));
		return;
	}
	lxm_ws_conn_send_json(&x->c[WS_CONTROL], json_pack("{s:s, s:n, s:i}", "command", "signal",
							   "args", "signal", sig));
}

static bool session_done(const struct exec_cli *x)
{
	if (x->interactive)
		return x->c[WS_STDIN].done;
	return x->c[WS_STDOUT].done && x->c[WS_STDERR].done;
}

static void on_stdin(void *userdata, const uint8_t *data, size_t len)
{
	struct exec_cli *x = userdata;
	struct lxm_ws_conn *in = &x->c[WS_STDIN];

	if (len > 0) {
		if (!in->closed)
			(void)lxm_ws_send(in->ws, LXM_WS_BINARY, data, len);
		return;
	}
	x->stdin_open = false;
	/* The barrier ends stdin; a pty has no end of input. */
	if (!x->interactive && !in->closed)
		(void)lxm_ws_send(in->ws, LXM_WS_TEXT, "", 0);
}

static bool status_watched(const struct exec_cli *x)
{
	return !x->output_seen && !x->status_shown && x->status_checks < STATUS_CHECKS;
}

/* Shows the operation's status ("waiting for the VM agent") on stderr. The status only
 * informs: a failed GET leaves it unshown, and the command's result still comes. */
static void check_status(struct exec_cli *x)
{
	_cleanup_error_ struct lxm_error *ignored = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *op = NULL;
	const char *status;

	x->status_checks++;
	x->status_ms = lxm_monotonic_ms();
	if (asprintf(&path, "/1.0/operations/%s", x->op) < 0 ||
	    lxm_client_request(x->client, "GET", path, NULL, &op, NULL, &ignored) < 0)
		return;
	status = json_string_value(json_object_get(json_object_get(op, "metadata"), "status"));
	if (!status || !*status || x->output_seen)
		return;
	fprintf(stderr, "Instance '%s': %s (the guest is still booting)%s", x->name, status,
		x->interactive ? "\r\n" : "\n");
	x->status_shown = true;
}

/* Moves bytes until the output streams have ended. */
static int pump(struct exec_cli *x, struct lxm_error **err)
{
	static const struct lxm_ws_session_ops ops = { on_signal, on_stdin };
	struct lxm_ws_conn *in = &x->c[WS_STDIN];
	uint8_t buf[IO_CHUNK];

	x->status_ms = lxm_monotonic_ms();
	while (!session_done(x)) {
		bool watch = status_watched(x);
		int k = lxm_ws_session_poll(
			x->c, _WS_MAX, x->stdin_open && (in->closed || in->out_len < OUT_HIGH),
			watch ? STATUS_CHECK_MS : -1, buf, sizeof(buf), &ops, x);

		if (k < 0)
			return lxm_error_setx(err, k, 500, "poll");
		if (x->fail)
			return lxm_error_setx(err, x->fail, 500, "write output");
		if (watch && status_watched(x) &&
		    lxm_monotonic_ms() - x->status_ms >= STATUS_CHECK_MS)
			check_status(x);
	}
	return 0;
}

/* lxc closes every stream once the outputs ended; so does lxm, after what is still queued (a
 * signal, the stdin barrier) had its chance to go out. */
static void close_all(struct exec_cli *x)
{
	for (int i = 0; i < _WS_MAX; i++)
		lxm_ws_conn_close(&x->c[i]);
}

struct exec_args {
	bool force_interactive;	   /* -t */
	bool force_noninteractive; /* -T */
	bool no_stdin;		   /* -n */
	json_t *env;		   /* --env */
	const char *cwd;	   /* --cwd */
	long user;		   /* --user, -1 when not given */
	long group;		   /* --group, -1 when not given */
	const char *name;	   /* the instance */
	char **command;		   /* the rest */
	int n_command;		   /* entries in command */
};

static int parse_id_flag(const char *cmd, const char *flag, const char *v, long *ret,
			 struct lxm_error **err)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end || end == v || n < 0 || n > 4294967294L)
		return lxm_error_set(err, -EINVAL, 400, "%s: invalid %s '%s': expected a number",
				     cmd, flag, v);
	*ret = n;
	return 0;
}

/* Flags may come before and after NAME; "--" ends them, and the command follows NAME. */
static int parse_exec(int argc, char **argv, struct exec_args *a, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "force-interactive", no_argument, NULL, 't' },
		{ "force-noninteractive", no_argument, NULL, 'T' },
		{ "disable-stdin", no_argument, NULL, 'n' },
		{ "env", required_argument, NULL, 'e' },
		{ "cwd", required_argument, NULL, 'c' },
		{ "user", required_argument, NULL, 'u' },
		{ "group", required_argument, NULL, 'g' },
		{},
	};
	const char *cmd = argv[0];
	int opt;

	a->user = a->group = -1;
	a->env = json_object();
	if (!a->env)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	optind = 0;
	opterr = 0;
	for (;;) {
		_cleanup_free_ char *key = NULL, *value = NULL;

		opt = getopt_long(argc, argv, "+:tTn", options, NULL);
		if (opt == -1) {
			/* Stopped at NAME: take it and go on with the flags after it. */
			if (!a->name && optind < argc && !streq(argv[optind - 1], "--")) {
				a->name = argv[optind++];
				if (optind < argc && streq(argv[optind], "--")) {
					optind++;
					break;
				}
				continue;
			}
			break;
		}
		switch (opt) {
		case 't':
			a->force_interactive = true;
			break;
		case 'T':
			a->force_noninteractive = true;
			break;
		case 'n':
			a->no_stdin = true;
			break;
		case 'e':
			if (lxm_cli_split_kv(optarg, &key, &value) < 0)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s: invalid --env '%s': expected KEY=VALUE",
						     cmd, optarg);
			if (json_object_set_new(a->env, key, json_string(value)) < 0)
				return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
			break;
		case 'c':
			a->cwd = optarg;
			break;
		case 'u':
			if (parse_id_flag(cmd, "--user", optarg, &a->user, err) < 0)
				return -EINVAL;
			break;
		case 'g':
			if (parse_id_flag(cmd, "--group", optarg, &a->group, err) < 0)
				return -EINVAL;
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	if (!a->name && optind < argc)
		a->name = argv[optind++];
	if (a->force_interactive && a->force_noninteractive)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: -t and -T contradict each other (see 'lxm %s --help')",
				     cmd, cmd);
	if (!a->name || optind >= argc)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: expected NAME -- COMMAND [ARG...] (see 'lxm %s --help')",
				     cmd, cmd);
	a->command = argv + optind;
	a->n_command = argc - optind;
	return 0;
}

static json_t *exec_body(const struct exec_args *a, bool interactive)
{
	json_t *body, *command = json_array();
	unsigned w = 0, h = 0;
	const char *term = getenv("TERM");

	for (int i = 0; command && i < a->n_command; i++)
		json_array_append_new(command, json_string(a->command[i]));
	if (interactive) {
		lxm_terminal_size(&w, &h);
		if (term && *term && !json_object_get(a->env, "TERM"))
			json_object_set_new(a->env, "TERM", json_string(term));
	}
	body = json_pack("{s:o?, s:O, s:b, s:b, s:i, s:i, s:b, s:I, s:I, s:s}", "command", command,
			 "environment", a->env, "wait-for-websocket", 1, "interactive", interactive,
			 "width", (int)w, "height", (int)h, "record-output", 0, "user",
			 (json_int_t)(a->user < 0 ? 0 : a->user), "group",
			 (json_int_t)(a->group < 0 ? 0 : a->group), "cwd", a->cwd ? a->cwd : "");
	return body;
}

/* The final operation: its metadata.return, or its error. */
static int exec_result(struct lxm_client *client, const char *op, const char *name,
		       struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *md = NULL;
	json_t *ret;
	const char *msg;
	int code, r;

	if (asprintf(&path, "/1.0/operations/%s/wait?timeout=-1", op) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "exec in '%s': out of memory", name);
	r = lxm_client_request(client, "GET", path, NULL, &md, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "exec in '%s': wait for the command", name);
	code = (int)json_integer_value(json_object_get(md, "status_code"));
	ret = json_object_get(json_object_get(md, "metadata"), "return");
	msg = json_string_value(json_object_get(md, "err"));
	/* A command that could not be executed already said so on stderr; the status says the
	 * rest, as with a shell. */
	if (json_is_integer(ret) &&
	    (code == 200 || json_integer_value(ret) == 126 || json_integer_value(ret) == 127))
		return (int)(json_integer_value(ret) & 0xff);
	if (code >= 400 || !json_is_integer(ret)) {
		lxm_error_set(err, -EIO, 500, "%s",
			      msg && *msg ? msg : "the command did not report its status");
		return lxm_error_prefix(err, "exec in '%s'", name);
	}
	return (int)(json_integer_value(ret) & 0xff);
}

int lxm_cmd_exec(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *client = NULL;
	_cleanup_json_ json_t *body = NULL, *op = NULL;
	_cleanup_free_ char *path = NULL, *esc = NULL;
	struct exec_args a = { 0 };
	struct exec_cli x = { .cmd = argv[0] };
	struct lxm_tty_state tty = { 0 };
	const char *id, *order[_WS_MAX] = { "control", "0", "1", "2" };
	json_t *fds;
	int r;

	/* Before anything can fail: the end frees them (a zeroed one would close fd 0). */
	for (int i = 0; i < _WS_MAX; i++)
		lxm_ws_conn_init(&x.c[i], conn_message, &x);
	r = parse_exec(argc, argv, &a, err);
	if (r < 0)
		goto out;
	/* REMOTE:NAME runs it on that remote. */
	r = lxm_cli_target(a.name, &a.name, err);
	if (r < 0)
		goto out;
	x.name = a.name;
	x.interactive = a.force_interactive ||
			(!a.force_noninteractive && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO));

	r = lxm_cli_connect(&client, err);
	if (r < 0)
		goto out;
	body = exec_body(&a, x.interactive);
	esc = lxm_url_escape(a.name);
	if (!body || !esc || asprintf(&path, "/1.0/instances/%s/exec", esc) < 0) {
		r = lxm_error_set(err, -ENOMEM, 500, "exec in '%s': out of memory", a.name);
		goto out;
	}
	r = lxm_client_request(client, "POST", path, body, &op, NULL, err);
	if (r < 0) {
		r = lxm_error_prefix(err, "exec in '%s'", a.name);
		goto out;
	}
	id = json_string_value(json_object_get(op, "id"));
	fds = json_object_get(json_object_get(op, "metadata"), "fds");
	if (!id || !json_is_object(fds)) {
		r = lxm_error_set(err, -EPROTO, 500, "exec in '%s': the server sent no websockets",
				  a.name);
		goto out;
	}

	/* lxc's order: control first, then the streams. */
	for (int i = 0; i < _WS_MAX; i++) {
		const char *secret = json_string_value(json_object_get(fds, order[i]));
		int index = i == 0 ? WS_CONTROL : i - 1;

		if (!secret)
			continue;
		r = lxm_ws_conn_open(client, id, secret, &x.c[index], err);
		if (r < 0) {
			r = lxm_error_prefix(err, "exec in '%s': websocket '%s'", a.name,
					     ws_keys[index]);
			goto out;
		}
	}
	if (!x.c[WS_STDIN].ws || (!x.interactive && (!x.c[WS_STDOUT].ws || !x.c[WS_STDERR].ws))) {
		r = lxm_error_set(err, -EPROTO, 500, "exec in '%s': the server sent no websockets",
				  a.name);
		goto out;
	}

	r = lxm_signals_catch(forwarded_signals, ARRAY_SIZE(forwarded_signals));
	if (r < 0) {
		r = lxm_error_setx(err, r, 500, "exec in '%s': catch signals", a.name);
		goto out;
	}
	if (x.interactive && (r = lxm_tty_make_raw(&tty)) < 0) {
		r = lxm_error_setx(err, r, 500, "exec in '%s': raw terminal mode", a.name);
		goto out;
	}
	if (a.no_stdin && !x.interactive)
		(void)lxm_ws_send(x.c[WS_STDIN].ws, LXM_WS_TEXT, "", 0);
	x.stdin_open = !a.no_stdin;
	x.client = client;
	x.op = id;
	r = pump(&x, err);
	lxm_tty_restore(&tty);
	close_all(&x);
	if (r < 0) {
		r = lxm_error_prefix(err, "exec in '%s'", a.name);
		goto out;
	}
	r = exec_result(client, id, a.name, err);
out:
	lxm_tty_restore(&tty);
	lxm_signals_release();
	for (int i = 0; i < _WS_MAX; i++)
		lxm_ws_conn_free(&x.c[i]);
	json_decref(a.env);
	return r;
}
