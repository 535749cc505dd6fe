/* lxm copy (a new instance from an instance or one of its snapshots) and lxm move (a rename of a
 * stopped instance, or of a snapshot). On one server both run there; the copy is made in the
 * pool that the new instance's root disk device names, in the driver's fastest way.
 *
 * Between two servers (lxm copy local:c1 r2:c1) the CLI runs LXD's "relay" mode: it asks the
 * source for a migration operation (POST /1.0/instances/c1 {"migration": true}), the target for
 * a push-mode create (POST /1.0/instances {"source": {"type": "migration", "mode": "push"}}),
 * connects the "control" and "fs" websockets of both and passes every message from one side to
 * the other as it is (lxmd/api/api-migration.c has the format), then waits for both operations.
 * Nothing is held without bound: a side is not read while its peer has too much to write. lxm
 * move between servers is that copy, then the source's delete once the target has the
 * instance. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"
#include "lxm/ws-client.h"

/* Bytes waiting for one side past which its peer is not read. */
#define RELAY_MAX_QUEUED (4u * 1024 * 1024)

/* What a copy asks for besides its source and destination. */
struct copy_opts {
	json_t *config;	  /* -c KEY=VALUE: over the source's */
	json_t *profiles; /* -p/--no-profiles: instead of the source's, or NULL */
	bool move;	  /* lxm move: the source goes once the target has it */
};

/* Whether arg names a remote ("r2:c1", "r2:c1/snap0"; a ':' after a '/' is a snapshot's). */
static bool has_remote(const char *arg)
{
	const char *colon = strchr(arg, ':'), *slash = strchr(arg, '/');

	return colon && (!slash || colon < slash);
}

/* A copy on one server: the server copies. */
static int copy_same(struct lxm_client *c, const char *src, const char *dst,
		     const struct copy_opts *o, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;

	body = json_pack("{s:s, s:{s:s, s:s, s:b}, s:O}", "name", dst, "source", "type", "copy",
			 "source", src, "instance_only", true, "config", o->config);
	if (!body || (o->profiles && json_object_set(body, "profiles", o->profiles) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return lxm_client_do(c, "POST", "/1.0/instances", body, NULL, err);
}

/* ---- relay between two servers ---- */

/* One websocket and the one on the other server that its messages go to. */
struct relay_end {
	struct lxm_ws_conn c;	/* the connection */
	struct relay_end *peer; /* where its messages go */
	bool close_passed;	/* its close went on to peer */
	uint64_t *bytes;	/* counts binary bytes it received, or NULL */
};

static void relay_message(struct lxm_ws_conn *c, enum lxm_ws_opcode op, const uint8_t *data,
			  size_t len)
{
	struct relay_end *e = c->userdata;
	struct lxm_ws_conn *p = &e->peer->c;

	if (e->bytes && op == LXM_WS_BINARY)
		*e->bytes += len;
	if (p->ws && !p->closed)
		(void)lxm_ws_send(p->ws, op, data, len);
}

/* Shows how much went over "fs" on a terminal, at most once a second. */
static void relay_progress(uint64_t bytes, bool last)
{
	static uint64_t shown_at;
	uint64_t now = lxm_monotonic_ms();

	if (!isatty(STDERR_FILENO) || (!last && now - shown_at < 1000))
		return;
	shown_at = now;
	fprintf(stderr, "\rTransferring instance: %.1f MB%s", (double)bytes / 1e6,
		last ? "\n" : "");
}

/* Passes messages both ways until every websocket has closed. A side that closes has its close
 * passed on to its peer once what it sent has gone out. */
static int relay(struct relay_end *ends, int n, uint64_t *bytes, struct lxm_error **err)
{
	for (;;) {
		struct pollfd p[8];
		int k, open = 0;

		for (int i = 0; i < n; i++) {
			struct relay_end *e = &ends[i];
			struct lxm_ws_conn *peer = &e->peer->c;

			if (e->c.closed && !e->close_passed && peer->out_len == 0) {
				e->close_passed = true;
				if (peer->ws && !peer->closed) {
					(void)lxm_ws_close(peer->ws, 1000, "");
					lxm_ws_conn_flush(peer);
				}
			}
		}
		for (int i = 0; i < n; i++) {
			struct relay_end *e = &ends[i];
			bool want_in = !e->c.closed && e->peer->c.out_len < RELAY_MAX_QUEUED;

			p[i] = (struct pollfd){ .fd = e->c.closed ? -1 : e->c.fd,
						.events = (short)((want_in ? POLLIN : 0) |
								  (e->c.out_len ? POLLOUT : 0)) };
			if (!e->c.closed)
				open++;
		}
		if (open == 0)
			return 0;
		k = poll(p, (nfds_t)n, 1000);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return lxm_error_setx(err, -errno, 500, "relay: poll");
		for (int i = 0; i < n; i++) {
			struct relay_end *e = &ends[i];

			if (e->c.closed)
				continue;
			if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
				lxm_ws_conn_read(&e->c);
			if (!e->c.closed && e->c.out_len)
				lxm_ws_conn_flush(&e->c);
		}
		/* What a read queued for a peer goes out now. */
		for (int i = 0; i < n; i++)
			if (!ends[i].c.closed && ends[i].c.out_len)
				lxm_ws_conn_flush(&ends[i].c);
		relay_progress(*bytes, false);
	}
}

/* The API path of instance inst, or of its snapshot snap; NULL without memory. */
static char *object_path(const char *inst, const char *snap)
{
	_cleanup_free_ char *path = lxm_cli_path("/1.0/instances/", inst), *esnap = NULL;
	char *full;

	if (!path || !snap)
		return TAKE_PTR(path);
	esnap = lxm_url_escape(snap);
	if (!esnap || asprintf(&full, "%s/snapshots/%s", path, esnap) < 0)
		return NULL;
	return full;
}

/* The target's create request: the source's config (without its volatile state, but with its
 * base image), devices, profiles and architecture, under what the command line says. */
static json_t *target_body(const json_t *src, bool snap, const char *dst, const struct copy_opts *o)
{
	_cleanup_json_ json_t *config = json_object(), *body = NULL;
	json_t *v, *sconfig = json_object_get(src, "config");
	json_t *devices = json_object_get(src, "devices"), *profiles = o->profiles;
	const char *key, *arch = json_string_value(json_object_get(src, "architecture"));

	if (!profiles)
		profiles = json_object_get(src, "profiles");
	if (!config)
		return NULL;
	json_object_foreach (sconfig, key, v)
		if (!startswith(key, "volatile.") || streq(key, "volatile.base_image"))
			json_object_set(config, key, v);
	json_object_update(config, o->config);
	body = json_pack("{s:s, s:O, s:s, s:{s:s, s:s, s:b, s:b}}", "name", dst, "config", config,
			 "architecture", arch ? arch : "", "source", "type", "migration", "mode",
			 "push", "live", false, "instance_only", true);
	if (body && json_is_object(devices))
		json_object_set(body, "devices", devices);
	if (body && json_is_array(profiles))
		json_object_set(body, "profiles", profiles);
	/* A snapshot's description is the snapshot's, not the instance's. */
	if (body && !snap && json_is_string(json_object_get(src, "description")))
		json_object_set(body, "description", json_object_get(src, "description"));
	return TAKE_PTR(body);
}

/* Cancels an operation that will not be connected (best effort: it also times out). */
static void cancel_op(struct lxm_client *c, const char *id)
{
	_cleanup_free_ char *path = NULL;
	struct lxm_error *e = NULL;

	if (id && asprintf(&path, "/1.0/operations/%s", id) >= 0)
		(void)lxm_client_request(c, "DELETE", path, NULL, NULL, NULL, &e);
	lxm_error_free(e);
}

/* Connects an operation's control and fs websockets. */
static int open_pair(struct lxm_client *c, const json_t *op, const char *side,
		     struct relay_end *control, struct relay_end *fs, struct lxm_error **err)
{
	const char *id = json_string_value(json_object_get(op, "id"));
	json_t *md = json_object_get(op, "metadata");
	const char *sc = json_string_value(json_object_get(md, "control"));
	const char *sf = json_string_value(json_object_get(md, "fs"));
	int k;

	if (!id || !sc || !sf)
		return lxm_error_set(err, -EPROTO, 500,
				     "the %s sent no migration websockets (control, fs)", side);
	k = lxm_ws_conn_open(c, id, sc, &control->c, err);
	if (k >= 0)
		k = lxm_ws_conn_open(c, id, sf, &fs->c, err);
	return k < 0 ? lxm_error_prefix(err, "connect to the %s", side) : 0;
}

/* The copy between two servers. src_name is "c1" or "c1/snap0" on cs, dst a name on cd; what
 * names the copy in errors ("copy 'local:c1' to 'r2:c1'"). */
static int copy_relay(struct lxm_client *cs, struct lxm_client *cd, const char *src_name,
		      const char *dst, const char *dst_remote, const struct copy_opts *o,
		      struct lxm_error **err)
{
	_cleanup_free_ char *inst = NULL, *spath = NULL;
	_cleanup_json_ json_t *src = NULL, *tbody = NULL, *sbody = NULL, *sop = NULL, *top = NULL;
	struct relay_end ends[4] = { 0 };
	const char *slash = strchr(src_name, '/'), *sid, *tid;
	uint64_t bytes = 0;
	int k, ks;

	inst = slash ? strndup(src_name, (size_t)(slash - src_name)) : strdup(src_name);
	spath = inst ? object_path(inst, slash ? slash + 1 : NULL) : NULL;
	if (!spath)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	k = lxm_client_request(cs, "GET", spath, NULL, &src, NULL, err);
	if (k < 0)
		return lxm_error_prefix(err, "read the source");
	tbody = target_body(src, slash != NULL, dst, o);
	/* A move must not leave snapshots behind: the source refuses what it cannot carry. */
	sbody = json_pack("{s:b, s:b, s:b}", "migration", true, "live", false, "instance_only",
			  !o->move);
	if (!tbody || !sbody)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");

	k = lxm_client_request(cs, "POST", spath, sbody, &sop, NULL, err);
	if (k < 0)
		return lxm_error_prefix(err, "prepare the source");
	sid = json_string_value(json_object_get(sop, "id"));
	k = lxm_client_request(cd, "POST", "/1.0/instances", tbody, &top, NULL, err);
	if (k < 0) {
		cancel_op(cs, sid);
		return lxm_error_prefix(err, "create '%s' on '%s'", dst, dst_remote);
	}
	tid = json_string_value(json_object_get(top, "id"));

	for (int i = 0; i < 4; i++) {
		lxm_ws_conn_init(&ends[i].c, relay_message, &ends[i]);
		ends[i].peer = &ends[i ^ 2]; /* 0 <-> 2 (control), 1 <-> 3 (fs) */
	}
	ends[1].bytes = &bytes; /* the tar stream, as it comes from the source */
	k = open_pair(cs, sop, "source", &ends[0], &ends[1], err);
	if (k >= 0)
		k = open_pair(cd, top, "target", &ends[2], &ends[3], err);
	if (k >= 0)
		k = relay(ends, 4, &bytes, err);
	for (int i = 0; i < 4; i++)
		lxm_ws_conn_close(&ends[i].c);
	relay_progress(bytes, true);
	if (k < 0) {
		cancel_op(cs, sid);
		cancel_op(cd, tid);
		return k;
	}
	/* The target's result is the one that tells what happened; the source's follows it. */
	k = lxm_client_wait_operation(cd, tid, NULL, err);
	if (k < 0) {
		struct lxm_error *e = NULL;

		(void)lxm_client_wait_operation(cs, sid, NULL, &e);
		lxm_error_free(e);
		return lxm_error_prefix(err, "create '%s' on '%s'", dst, dst_remote);
	}
	ks = lxm_client_wait_operation(cs, sid, NULL, err);
	return ks < 0 ? lxm_error_prefix(err, "the source") : 0;
}

/* Deletes the source of a move once the target has it. */
static int delete_source(struct lxm_client *c, const char *name, struct lxm_error **err)
{
	_cleanup_free_ char *path = lxm_cli_path("/1.0/instances/", name);

	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return lxm_client_do(c, "DELETE", path, NULL, NULL, err);
}

static int move_same(struct lxm_client *c, const char *from, const char *to,
		     struct lxm_error **err);

/* src and dst with "REMOTE:" on at least one of them. */
static int copy_remotes(const char *src, const char *dst, const struct copy_opts *o,
			struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *cs = NULL, *cd = NULL;
	_cleanup_free_ char *sname = NULL, *dname = NULL;
	const struct lxm_remote *rs_src, *rs_dst;
	const struct lxm_remotes *rs;
	int k;

	rs = lxm_remotes_get(err);
	if (!rs)
		return -(*err)->errnum;
	if ((k = lxm_remotes_split(rs, src, &rs_src, &sname, err)) < 0 ||
	    (k = lxm_remotes_split(rs, dst, &rs_dst, &dname, err)) < 0)
		return k;
	if (!*sname)
		return lxm_error_set(err, -EINVAL, 400, "the SOURCE '%s' names no instance", src);
	if (!*dname) /* "r2:": the source's name */
		dname = strndup(sname, strcspn(sname, "/"));
	if (!dname)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (strchr(dname, '/'))
		return lxm_error_set(err, -EINVAL, 400,
				     "the DESTINATION '%s' must be an instance name", dst);
	if ((k = lxm_remote_connect(rs_src, &cs, err)) < 0)
		return k;
	if (rs_src == rs_dst)
		return o->move ? move_same(cs, sname, dname, err)
			       : copy_same(cs, sname, dname, o, err);
	if (o->move && strchr(sname, '/'))
		return lxm_error_set(err, -EINVAL, 400,
				     "a snapshot cannot be moved to another server: copy it");
	if ((k = lxm_remote_connect(rs_dst, &cd, err)) < 0)
		return k;
	k = copy_relay(cs, cd, sname, dname, rs_dst->name, o, err);
	if (k < 0 || !o->move)
		return k;
	k = delete_source(cs, sname, err);
	return k < 0 ? lxm_error_prefix(err, "the copy on '%s' is made; delete the source '%s'",
					rs_dst->name, sname)
		     : 0;
}

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
	_cleanup_json_ json_t *config = json_object(), *profiles = NULL;
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
	r = lxm_cli_nargs(cmd, argc - optind, 2, 2,
			  "[REMOTE:]SOURCE[/SNAPSHOT] [REMOTE:]DESTINATION", err);
	if (r < 0)
		return r;
	src = argv[optind];
	dst = argv[optind + 1];
	if (has_remote(src) || has_remote(dst)) {
		r = copy_remotes(src, dst,
				 &(struct copy_opts){ .config = config, .profiles = profiles },
				 err);
		return r < 0 ? lxm_error_prefix(err, "copy '%s' to '%s'", src, dst) : 0;
	}
	if (strchr(dst, '/'))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: the DESTINATION '%s' must be an instance name", cmd, dst);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	r = copy_same(c, src, dst, &(struct copy_opts){ .config = config, .profiles = profiles },
		      err);
	return r < 0 ? lxm_error_prefix(err, "copy '%s' to '%s'", src, dst) : 0;
}

/* A rename on one server: of an instance, or of a snapshot within its instance. */
static int move_same(struct lxm_client *c, const char *from, const char *to, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *inst = NULL;
	_cleanup_json_ json_t *body = NULL;
	const char *slash_from = strchr(from, '/'), *slash_to = strchr(to, '/');

	if (!slash_from != !slash_to ||
	    (slash_from && (slash_from - from != slash_to - to ||
			    strncmp(from, to, (size_t)(slash_from - from)) != 0)))
		return lxm_error_set(err, -EINVAL, 400,
				     "rename an instance (OLD NEW) or a snapshot of one instance "
				     "(INSTANCE/OLD INSTANCE/NEW)");
	if (slash_from) {
		inst = strndup(from, (size_t)(slash_from - from));
		path = inst ? object_path(inst, slash_from + 1) : NULL;
		body = json_pack("{s:s}", "name", slash_to + 1);
	} else {
		path = lxm_cli_path("/1.0/instances/", from);
		body = json_pack("{s:s}", "name", to);
	}
	if (!path || !body)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return lxm_client_do(c, "POST", path, body, NULL, err);
}

int lxm_cmd_move(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *config = NULL;
	const char *cmd = argv[0], *from, *to;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 2, 2, "[REMOTE:]OLD [REMOTE:]NEW", err);
	if (r < 0)
		return r;
	from = argv[1];
	to = argv[2];
	if (has_remote(from) || has_remote(to)) {
		config = json_object();
		if (!config)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
		r = copy_remotes(from, to, &(struct copy_opts){ .config = config, .move = true },
				 err);
	} else {
		r = lxm_cli_connect(&c, err);
		if (r >= 0)
			r = move_same(c, from, to, err);
	}
	return r < 0 ? lxm_error_prefix(err, "move '%s' to '%s'", from, to) : 0;
}
