/* lxm console: attaches to an instance's console, as `lxc console` does: POST .../console with
 * the terminal's size, then the websockets "control" and "0" of the operation (LXD's protocol,
 * see lxmd/api/api-console.c). Keys go to the console and its output to stdout until the user
 * presses Ctrl+a q, stdin ends, or the instance stops. --show-log prints the console log instead.
 *
 * Ctrl+a is held back until the next key: "q" detaches, a second Ctrl+a sends one, anything else
 * sends both. SIGWINCH becomes LXD's window-resize. */
#include "config.h"

#include <errno.h>
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
#include "lxm/ws-client.h"

/* Bytes read from stdin at a time. */
#define IO_CHUNK 4096
/* Stdin is not read while more than this waits to go out. */
#define OUT_HIGH (1024 * 1024)
/* The detach key: Ctrl+a, then q. */
#define ESCAPE_KEY 0x01
#define DETACH_KEY 'q'

enum {
	WS_DATA,
	WS_CONTROL,
	_WS_MAX,
};

static const char *const ws_keys[_WS_MAX] = { "0", "control" };

/* Caught while attached: SIGWINCH is a resize; the others end the session cleanly, so that the
 * terminal is restored. */
static const int caught_signals[] = { SIGWINCH, SIGHUP, SIGINT, SIGTERM };

struct console_cli {
	struct lxm_ws_conn c[_WS_MAX]; /* the websockets */
	bool escape;		       /* Ctrl+a was pressed and is held back */
	bool detach;		       /* the user asked to detach (or stdin ended) */
	int signal;		       /* a signal that ended the session, 0 */
	int fail;		       /* -errno of a broken stdout, 0 */
};

/* Console output. The server sends nothing else worth showing on either socket. */
static void conn_message(struct lxm_ws_conn *c, enum lxm_ws_opcode op, const uint8_t *data,
			 size_t len)
{
	struct console_cli *x = c->userdata;
	int k;

	if (c != &x->c[WS_DATA] || op != LXM_WS_BINARY || x->fail)
		return;
	k = lxm_write_all(STDOUT_FILENO, data, len);
	if (k < 0)
		x->fail = k;
}

static void send_resize(struct console_cli *x)
{
	unsigned w = 0, h = 0;
	char ws[16], hs[16];

	lxm_terminal_size(&w, &h);
	if (w == 0)
		return;
	snprintf(ws, sizeof(ws), "%u", w);
	snprintf(hs, sizeof(hs), "%u", h);
	lxm_ws_conn_send_json(&x->c[WS_CONTROL],
			      json_pack("{s:s, s:{s:s, s:s}}", "command", "window-resize", "args",
					"width", ws, "height", hs));
}

/* Passes keys on, watching for the detach sequence. */
static void handle_input(struct console_cli *x, const uint8_t *buf, size_t len)
{
	struct lxm_ws_conn *c = &x->c[WS_DATA];
	uint8_t out[IO_CHUNK + 1];
	size_t n = 0;

	for (size_t i = 0; i < len && !x->detach; i++) {
		if (x->escape) {
			x->escape = false;
			if (buf[i] == DETACH_KEY) {
				x->detach = true;
				break;
			}
			out[n++] = ESCAPE_KEY;
			if (buf[i] == ESCAPE_KEY)
				continue;
		} else if (buf[i] == ESCAPE_KEY) {
			x->escape = true;
			continue;
		}
		out[n++] = buf[i];
	}
	if (n > 0 && !c->closed)
		(void)lxm_ws_send(c->ws, LXM_WS_BINARY, out, n);
}

static void on_signal(void *userdata, int sig)
{
	struct console_cli *x = userdata;

	if (sig == SIGWINCH)
		send_resize(x);
	else
		x->signal = sig;
}

static void on_stdin(void *userdata, const uint8_t *data, size_t len)
{
	struct console_cli *x = userdata;

	if (len > 0)
		handle_input(x, data, len);
	else
		/* Nothing more to type: as lxc does, that detaches. */
		x->detach = true;
}

/* Moves bytes until the user detaches or the server ends the session. */
static int pump(struct console_cli *x, struct lxm_error **err)
{
	static const struct lxm_ws_session_ops ops = { on_signal, on_stdin };
	struct lxm_ws_conn *data = &x->c[WS_DATA];
	uint8_t buf[IO_CHUNK];

	while (!x->detach && !x->signal && !data->done) {
		int k = lxm_ws_session_poll(x->c, _WS_MAX, data->out_len < OUT_HIGH, -1, buf,
					    sizeof(buf), &ops, x);

		if (k < 0)
			return lxm_error_setx(err, k, 500, "poll");
		if (x->fail)
			return lxm_error_setx(err, x->fail, 500, "write output");
	}
	return 0;
}

static int show_log(struct lxm_client *client, const char *name, const char *esc,
		    struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	size_t len = 0;
	int r;

	if (asprintf(&path, "/1.0/instances/%s/console", esc) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "console of '%s': out of memory", name);
	r = lxm_client_get_raw(client, path, &text, &len, err);
	if (r < 0)
		return lxm_error_prefix(err, "console log of '%s'", name);
	r = lxm_write_all(STDOUT_FILENO, (const uint8_t *)text, len);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "console log of '%s': write", name);
	return 0;
}

static int parse_console(int argc, char **argv, bool *ret_show_log, const char **ret_name,
			 struct lxm_error **err)
{
	static const struct option options[] = {
		{ "show-log", no_argument, NULL, 'l' },
		{},
	};
	const char *cmd = argv[0];
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		if (opt != 'l')
			return lxm_cli_flag_error(cmd, argv, opt, err);
		*ret_show_log = true;
	}
	if (lxm_cli_nargs(cmd, argc - optind, 1, 1, "NAME", err) < 0)
		return -EINVAL;
	/* [REMOTE:]NAME */
	r = lxm_cli_target_name(cmd, &argv[optind], err);
	if (r < 0)
		return r;
	*ret_name = argv[optind];
	return 0;
}

/* Opens the session's websockets, control first as lxc does. */
static int attach(struct lxm_client *client, const json_t *op, struct console_cli *x,
		  const char *name, struct lxm_error **err)
{
	const char *id = json_string_value(json_object_get(op, "id"));
	json_t *fds = json_object_get(json_object_get(op, "metadata"), "fds");
	const int order[_WS_MAX] = { WS_CONTROL, WS_DATA };
	int r;

	if (!id || !json_is_object(fds) || !json_is_string(json_object_get(fds, "0")))
		return lxm_error_set(err, -EPROTO, 500,
				     "console of '%s': the server sent no websockets", name);
	for (int i = 0; i < _WS_MAX; i++) {
		const char *secret = json_string_value(json_object_get(fds, ws_keys[order[i]]));

		if (!secret)
			continue;
		r = lxm_ws_conn_open(client, id, secret, &x->c[order[i]], err);
		if (r < 0)
			return lxm_error_prefix(err, "console of '%s': websocket '%s'", name,
						ws_keys[order[i]]);
	}
	return 0;
}

int lxm_cmd_console(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *client = NULL;
	_cleanup_json_ json_t *body = NULL, *op = NULL;
	_cleanup_free_ char *path = NULL, *esc = NULL;
	struct console_cli x = { 0 };
	struct lxm_tty_state tty = { 0 };
	const char *name = NULL;
	bool show = false;
	unsigned w = 0, h = 0;
	int r;

	for (int i = 0; i < _WS_MAX; i++)
		lxm_ws_conn_init(&x.c[i], conn_message, &x);
	r = parse_console(argc, argv, &show, &name, err);
	if (r < 0)
		return r;
	r = lxm_cli_connect(&client, err);
	if (r < 0)
		return r;
	esc = lxm_url_escape(name);
	if (!esc)
		return lxm_error_set(err, -ENOMEM, 500, "console of '%s': out of memory", name);
	if (show)
		return show_log(client, name, esc, err);

	lxm_terminal_size(&w, &h);
	body = json_pack("{s:i, s:i, s:s}", "width", (int)w, "height", (int)h, "type", "console");
	if (!body || asprintf(&path, "/1.0/instances/%s/console", esc) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "console of '%s': out of memory", name);
	r = lxm_client_request(client, "POST", path, body, &op, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "console of '%s'", name);

	r = lxm_signals_catch(caught_signals, ARRAY_SIZE(caught_signals));
	if (r < 0) {
		r = lxm_error_setx(err, r, 500, "console of '%s': catch signals", name);
		goto out;
	}
	/* Raw before the hint: switching flushes what was typed, and keys typed once the hint is
	 * shown must reach the console. The hint also comes before any console output. */
	r = lxm_tty_make_raw(&tty);
	if (r < 0) {
		r = lxm_error_setx(err, r, 500, "console of '%s': raw terminal mode", name);
		goto out;
	}
	printf("To detach from the console, press: <ctrl>+a %c\r\n", DETACH_KEY);
	fflush(stdout);
	r = attach(client, op, &x, name, err);
	if (r < 0)
		goto out;
	r = pump(&x, err);
	lxm_tty_restore(&tty);
	/* A clean goodbye on both sockets; lxmd ends the session when either goes. */
	for (int i = 0; i < _WS_MAX; i++) {
		if (x.c[i].ws && !x.c[i].closed)
			(void)lxm_ws_close(x.c[i].ws, 1000, NULL);
		lxm_ws_conn_close(&x.c[i]);
	}
	if (r < 0) {
		r = lxm_error_prefix(err, "console of '%s'", name);
		goto out;
	}
	/* Once the operation is over the console is free again for the next attach. */
	r = lxm_client_wait_operation(client, json_string_value(json_object_get(op, "id")), NULL,
				      err);
	if (r < 0) {
		r = lxm_error_prefix(err, "console of '%s'", name);
		goto out;
	}
	r = x.signal ? 128 + x.signal : 0;
out:
	lxm_tty_restore(&tty);
	lxm_signals_release();
	for (int i = 0; i < _WS_MAX; i++)
		lxm_ws_conn_free(&x.c[i]);
	return r;
}
