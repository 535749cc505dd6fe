/* Instance transfers between lxmd hosts: stop-copy migration in the shape of LXD's API 1.0.
 *
 * The source: POST /1.0/instances/<name> (or .../snapshots/<snap>) {"migration": true, "live":
 * false} answers with a websocket operation whose metadata is {"control": S1, "fs": S2}. The
 * target, push mode: POST /1.0/instances {"name", "config", "devices", "profiles", ..., "source":
 * {"type": "migration", "mode": "push"}} claims the name (409 when it exists, before any data
 * moves) and answers with its own websocket operation, metadata {"control": T1, "fs": T2}. A
 * client ("lxm copy local:c1 r2:c1") connects both pairs with GET /1.0/operations/<id>/websocket
 * ?secret=S and relays every message between control and control, fs and fs, as LXD's relay mode.
 *
 * The wire format is lxm's own (LXD's protobuf and rsync are not spoken):
 *   control, source -> target: first a TEXT message {"type": "header", "version": 1, "name",
 *     "snapshot" (or null), "architecture", "description", "config", "devices", "profiles"}:
 *     what the source sends (the target takes its config from its create request, as LXD does);
 *     on a failure of the source, {"success": false, "message": M}.
 *   fs, source -> target: the rootfs as an uncompressed POSIX tar stream (GNU tar --xattrs
 *     --acls --numeric-owner: owners, modes, xattrs, ACLs, hardlinks, device nodes, symlinks as
 *     stored, i.e. unshifted) in BINARY messages, then one TEXT message {"type": "end", "bytes": N}
 *     with the count of tar bytes sent, then the close. A close without it, or a count that
 *     differs, is a truncated transfer.
 *   control, target -> source: at the end {"success": true} (the instance exists) or {"success":
 *     false, "message": M}; then both sides close.
 * The target writes the tar into the new volume's rootfs with a tar child reading a pipe; the
 * source reads a tar child's stdout. Both pipes are pumped in the loop with backpressure: a pipe
 * is not read while its websocket has too much queued, a websocket is not read while the child
 * has too much to take. The target's instance gets its backup.yaml only once everything is in,
 * so a transfer that ends early (a websocket closed, a truncated stream, the source's failure, a
 * cancel) leaves nothing behind: the create rolls back; and when lxmd is killed meanwhile, its
 * next start rolls the create back (no backup.yaml). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <uv.h>

#include "api.h"
#include "api/api-migration.h"
#include "api/api-websocket.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "server.h"
#include "util.h"
#include "volumes.h"

/* Both websockets must be up within this after the operation starts. */
#define CONNECT_TIMEOUT_MS 10000
/* Bytes read from the tar child at a time (the source). */
#define READ_CHUNK (64 * 1024)
/* Bytes queued for the tar child past which "fs" is not read... */
#define WRITE_PAUSE_BYTES (4u * 1024 * 1024)
/* ...until it has taken all but this much. */
#define WRITE_RESUME_BYTES (1u * 1024 * 1024)
/* The end of the tar child's stderr kept for the error message. */
#define STDERR_KEEP 2048
/* The version of the wire format in the header. */
#define WIRE_VERSION 1

enum {
	SOCK_CONTROL,
	SOCK_FS,
	_SOCK_MAX,
};

static const char *const sock_names[_SOCK_MAX] = { "control", "fs" };

struct lxmd_migration;

/* One websocket of the transfer. */
struct mig_socket {
	struct lxmd_migration *m; /* the owner */
	int index;		  /* SOCK_* */
	char secret[LXMD_WS_SECRET_LEN + 1];
	bool used;		/* a client connected (a second one is refused) */
	bool closed;		/* it was connected and has gone */
	struct lxmd_conn *conn; /* while connected */
};

/* Tar bytes for the target's child: held in early until it runs (bounded: "fs" is paused
 * meanwhile), then written. */
struct child_write {
	uv_write_t req;			/* libuv's */
	STAILQ_ENTRY(child_write) link; /* in early, before the child runs */
	struct lxmd_migration *m;	/* the owner */
	size_t len;			/* bytes */
	char data[];			/* the copy being written */
};

struct lxmd_migration {
	struct lxmd_ws_session ws; /* how clients reach socks while the operation exists */
	struct lxmd *d;		   /* the daemon */
	struct lxm_operation *op;  /* NULL once the operation (source) or job (target) let go */
	unsigned refs;		   /* owner + open handles + connections + pins */
	bool target;		   /* the receiving side */
	char *name;		   /* the instance (source or new) */
	bool busy;		   /* holds name's busy mark (lxmd_snapshot_busy_take()) */
	char *snap;		   /* the source's snapshot, or NULL */
	char *what;		   /* "migrate 'c1'" or "receive 'c1'": errors start with it */
	char *rootfs;		   /* the tree tar reads or writes */
	json_t *header;		   /* the source's header */
	struct mig_socket socks[_SOCK_MAX];

	uv_timer_t timer; /* the connect timeout */
	bool timer_open;  /* timer is initialised and not closed */

	uv_process_t proc;	  /* the tar child */
	bool proc_open;		  /* proc is initialised and not closed */
	bool spawned;		  /* the child was started */
	bool exited;		  /* ... and has exited */
	int status;		  /* its exit status (128 + signal) */
	uv_pipe_t data;		  /* its stdout (source) or stdin (target) */
	bool data_open;		  /* data is initialised and not closed */
	uv_pipe_t errp;		  /* its stderr */
	bool errp_open;		  /* errp is initialised and not closed */
	char errbuf[STDERR_KEEP]; /* the end of its stderr */
	size_t errlen;		  /* bytes in errbuf */
	char errchunk[1024];	  /* read buffer for stderr */

	char *buf;	/* source: READ_CHUNK bytes read from the child */
	size_t pending; /* source: bytes of buf refused by "fs", sent on drain */
	bool data_eof;	/* source: the child's stdout ended */
	bool end_sent;	/* source: the end message went out on "fs" */
	uint64_t bytes; /* tar bytes sent (source) or received (target) */

	size_t queued;			  /* target: bytes written to the child not yet taken */
	bool paused;			  /* target: "fs" is not read */
	bool broken;			  /* target: the child closed its stdin */
	STAILQ_HEAD(, child_write) early; /* target: bytes that came before the child ran */
	bool header_seen;		  /* target: the header arrived */
	bool end_seen;			  /* target: the end message arrived */
	uint64_t end_bytes;		  /* target: the count it gave */
	bool result_sent;		  /* target: the result went to the source */
	struct lxm_error *failure;	  /* target: why it failed, until done reports it */
	lxmd_migration_done_fn done;	  /* target: the receive's callback, until it ran */
	void *done_ud;			  /* for done */
	bool reported;			  /* target: done ran */

	bool started;  /* the transfer began (the child is being prepared or runs) */
	bool finished; /* source: the operation got its result */
	bool ended;    /* everything is closing */
};

static void mig_end(struct lxmd_migration *m);
static void target_fail(struct lxmd_migration *m, struct lxm_error *err);
static void source_fail(struct lxmd_migration *m, struct lxm_error *err);
static void source_check_end(struct lxmd_migration *m);
static void target_check_done(struct lxmd_migration *m);

/* ---- lifetime ---- */

static void mig_ref(struct lxmd_migration *m)
{
	m->refs++;
}

/* Gives the instance's busy mark back: once the transfer's result is known and nothing writes
 * into the instance any more. */
static void busy_drop(struct lxmd_migration *m)
{
	if (!m->busy)
		return;
	m->busy = false;
	lxmd_snapshot_busy_release(m->name);
}

static void mig_unref(struct lxmd_migration *m)
{
	struct child_write *c;

	if (--m->refs > 0)
		return;
	lxmd_ws_session_unregister(&m->ws);
	while ((c = STAILQ_FIRST(&m->early))) {
		STAILQ_REMOVE_HEAD(&m->early, link);
		free(c);
	}
	busy_drop(m);
	lxm_error_free(m->failure);
	json_decref(m->header);
	free(m->buf);
	free(m->name);
	free(m->snap);
	free(m->what);
	free(m->rootfs);
	free(m);
}

static void handle_closed(uv_handle_t *h)
{
	mig_unref(h->data);
}

/* Closes h when *open says it is open; m is unreferenced when it is closed. */
static void handle_close(uv_handle_t *h, bool *open)
{
	if (!*open)
		return;
	*open = false;
	uv_close(h, handle_closed);
}

static void data_close(struct lxmd_migration *m)
{
	handle_close((uv_handle_t *)&m->data, &m->data_open);
}

static void errp_close(struct lxmd_migration *m)
{
	handle_close((uv_handle_t *)&m->errp, &m->errp_open);
}

static void timer_close(struct lxmd_migration *m)
{
	handle_close((uv_handle_t *)&m->timer, &m->timer_open);
}

/* Closes everything; m is freed when the last handle and connection are gone. A child that
 * still runs is killed, and its handle closes when it has exited. */
static void mig_end(struct lxmd_migration *m)
{
	if (m->ended)
		return;
	m->ended = true;
	lxmd_ws_session_unregister(&m->ws);
	timer_close(m);
	data_close(m);
	errp_close(m);
	if (m->proc_open && !m->exited) {
		uv_process_kill(&m->proc, SIGKILL);
	} else {
		busy_drop(m);
		handle_close((uv_handle_t *)&m->proc, &m->proc_open);
	}
	for (int i = 0; i < _SOCK_MAX; i++)
		if (m->socks[i].conn)
			lxmd_conn_ws_shutdown(m->socks[i].conn);
}

static int mig_new(struct lxmd *d, bool target, const char *name, const char *snap,
		   struct lxmd_migration **ret)
{
	struct lxmd_migration *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->d = d;
	m->refs = 1; /* the owner's */
	m->target = target;
	STAILQ_INIT(&m->early);
	for (int i = 0; i < _SOCK_MAX; i++) {
		m->socks[i].m = m;
		m->socks[i].index = i;
	}
	m->name = strdup(name);
	/* Until the last handle is closed, neither side's instance may be started, renamed,
	 * deleted, snapshotted or restored: the source's files are read, the target's written. */
	if (m->name && lxmd_snapshot_busy_take(m->name) >= 0)
		m->busy = true;
	if (!m->busy || (snap && !(m->snap = strdup(snap))) ||
	    asprintf(&m->what, "%s '%s%s%s'", target ? "receive instance" : "migrate", name,
		     snap ? "/" : "", snap ? snap : "") < 0) {
		m->what = NULL;
		mig_unref(m);
		return -ENOMEM;
	}
	*ret = m;
	return 0;
}

/* The secrets and the metadata that lists them. */
static int mig_secrets(struct lxmd_migration *m, json_t **ret)
{
	_cleanup_json_ json_t *md = json_object();

	if (!md)
		return -ENOMEM;
	for (int i = 0; i < _SOCK_MAX; i++)
		if (lxmd_ws_secret_new(m->socks[i].secret) < 0 ||
		    json_object_set_new(md, sock_names[i], json_string(m->socks[i].secret)) < 0)
			return -ENOMEM;
	*ret = TAKE_PTR(md);
	return 0;
}

/* Sends a JSON text message on socket idx (dropped when it is not connected). */
static void send_json(struct lxmd_migration *m, int idx, json_t *msg)
{
	_cleanup_free_ char *text = msg ? lxm_json_dump(msg) : NULL;
	struct lxmd_conn *c = m->socks[idx].conn;

	json_decref(msg);
	if (text && c && lxmd_conn_ws_send(c, LXM_WS_TEXT, text, strlen(text)) < 0)
		log_debug("%s: the %s websocket did not take a message", m->what, sock_names[idx]);
}

/* ---- the tar child ---- */

static void child_closed(uv_handle_t *h)
{
	mig_unref(h->data);
}

static void errp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct lxmd_migration *m = h->data;

	(void)suggested;
	*buf = uv_buf_init(m->errchunk, sizeof(m->errchunk));
}

/* Keeps the end of what the child says. */
static void errp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct lxmd_migration *m = s->data;
	size_t n = nread > 0 ? (size_t)nread : 0;

	if (nread < 0) {
		/* The child's stderr is complete: its failure can be told now. */
		errp_close(m);
		mig_ref(m);
		if (m->target)
			target_check_done(m);
		else
			source_check_end(m);
		mig_unref(m);
		return;
	}
	if (n >= sizeof(m->errbuf)) {
		memcpy(m->errbuf, buf->base + n - sizeof(m->errbuf), sizeof(m->errbuf));
		m->errlen = sizeof(m->errbuf);
		return;
	}
	if (m->errlen + n > sizeof(m->errbuf)) {
		size_t drop = m->errlen + n - sizeof(m->errbuf);

		memmove(m->errbuf, m->errbuf + drop, m->errlen - drop);
		m->errlen -= drop;
	}
	memcpy(m->errbuf + m->errlen, buf->base, n);
	m->errlen += n;
}

/* The child's failure, with the last line of its stderr. */
static struct lxm_error *child_error(struct lxmd_migration *m, const char *step)
{
	struct lxm_error *err = NULL;
	char line[STDERR_KEEP + 1];
	size_t len = m->errlen;
	char *start;

	memcpy(line, m->errbuf, len);
	line[len] = '\0';
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	start = strrchr(line, '\n');
	start = start ? start + 1 : line;
	if (m->status > 128 && !*start)
		lxm_error_set(&err, -EIO, 500, "%s: %s: tar was killed by signal %d", m->what, step,
			      m->status - 128);
	else
		lxm_error_set(&err, -EIO, 500, "%s: %s: tar failed (status %d): %s", m->what, step,
			      m->status, *start ? start : "no message");
	return err;
}

static void child_exited(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct lxmd_migration *m = p->data;

	m->exited = true;
	m->status = term_signal ? 128 + term_signal : (int)exit_status;
	if (m->ended)
		busy_drop(m);
	log_debug("%s: tar exited with status %d", m->what, m->status);
	m->proc_open = false;
	uv_close((uv_handle_t *)p, child_closed);
	/* Pinned: the checks below may end m. */
	mig_ref(m);
	if (m->target)
		target_check_done(m);
	else
		source_check_end(m);
	mig_unref(m);
}

/* Starts tar: creating from rootfs onto stdout (source) or extracting stdin into it (target). */
static int child_spawn(struct lxmd_migration *m, struct lxm_error **err)
{
	char *create[] = { "tar",
			   "--create",
			   "--file=-",
			   "--directory",
			   m->rootfs,
			   "--numeric-owner",
			   "--format=posix",
			   "--xattrs",
			   "--xattrs-include=*",
			   "--acls",
			   "--sparse",
			   ".",
			   NULL };
	char *extract[] = {
		"tar",	    "--extract",	  "--file=-",	  "--directory",
		m->rootfs,  "--numeric-owner",	  "--same-owner", "--preserve-permissions",
		"--xattrs", "--xattrs-include=*", "--acls",	  NULL
	};
	char *env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
	uv_stdio_container_t stdio[3];
	uv_process_options_t o = { 0 };
	int k;

	k = uv_pipe_init(m->d->loop, &m->data, 0);
	if (k < 0)
		return lxm_error_set(err, k, 500, "%s: pipe: %s", m->what, uv_strerror(k));
	m->data.data = m;
	m->data_open = true;
	mig_ref(m);
	k = uv_pipe_init(m->d->loop, &m->errp, 0);
	if (k < 0)
		return lxm_error_set(err, k, 500, "%s: pipe: %s", m->what, uv_strerror(k));
	m->errp.data = m;
	m->errp_open = true;
	mig_ref(m);
	if (m->target) {
		stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
		stdio[0].data.stream = (uv_stream_t *)&m->data;
		stdio[1].flags = UV_IGNORE;
	} else {
		stdio[0].flags = UV_IGNORE;
		stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		stdio[1].data.stream = (uv_stream_t *)&m->data;
	}
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&m->errp;
	o.file = "tar";
	o.args = m->target ? extract : create;
	o.env = env;
	o.stdio = stdio;
	o.stdio_count = 3;
	o.exit_cb = child_exited;
	m->proc.data = m;
	k = uv_spawn(m->d->loop, &m->proc, &o);
	if (k < 0) {
		/* libuv wants a failed spawn's handle closed too. */
		mig_ref(m);
		uv_close((uv_handle_t *)&m->proc, child_closed);
		return lxm_error_set(err, k, 500, "%s: run tar: %s", m->what, uv_strerror(k));
	}
	m->proc_open = true;
	m->spawned = true;
	mig_ref(m);
	uv_read_start((uv_stream_t *)&m->errp, errp_alloc, errp_read);
	return 0;
}

/* ---- the source ---- */

/* The operation's result: the transfer ended (err NULL: the target has the instance). */
static void source_finish(struct lxmd_migration *m, struct lxm_error *err)
{
	if (m->finished || !m->op) {
		lxm_error_free(err);
		mig_end(m);
		return;
	}
	m->finished = true;
	if (err)
		send_json(m, SOCK_CONTROL,
			  json_pack("{s:b, s:s}", "success", false, "message", err->msg));
	/* Before the result is seen: its tar child only reads, and mig_end() kills it. */
	busy_drop(m);
	lxm_operation_finish(m->op, err);
	mig_end(m);
}

static void source_fail(struct lxmd_migration *m, struct lxm_error *err)
{
	source_finish(m, err);
}

static void source_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void source_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct lxmd_migration *m = h->data;

	(void)suggested;
	*buf = uv_buf_init(m->buf, READ_CHUNK);
}

/* Passes len bytes of buf on; false when "fs" is full and reading must pause. */
static bool source_send(struct lxmd_migration *m, size_t len)
{
	struct lxmd_conn *c = m->socks[SOCK_FS].conn;
	int k;

	if (!c)
		return true; /* gone: its close fails the transfer */
	k = lxmd_conn_ws_send(c, LXM_WS_BINARY, m->buf, len);
	if (k == -ENOBUFS) {
		m->pending = len;
		return false;
	}
	return true;
}

static void source_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct lxmd_migration *m = s->data;

	(void)buf;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug("%s: read tar: %s", m->what, uv_strerror((int)nread));
		m->data_eof = true;
		data_close(m);
		source_check_end(m);
		return;
	}
	m->bytes += (uint64_t)nread;
	if (!source_send(m, (size_t)nread))
		uv_read_stop(s);
}

/* The tar stream is all out and the child is done: the end message, then "fs" closes. */
static void source_check_end(struct lxmd_migration *m)
{
	struct lxmd_conn *c = m->socks[SOCK_FS].conn;
	_cleanup_free_ char *text = NULL;

	if (m->ended || m->end_sent || !m->exited || m->errp_open || !m->data_eof || m->pending > 0)
		return;
	if (m->status != 0) {
		source_fail(m, child_error(m, "pack the rootfs"));
		return;
	}
	if (!c)
		return;
	if (asprintf(&text, "{\"type\": \"end\", \"bytes\": %" PRIu64 "}", m->bytes) < 0) {
		struct lxm_error *err = NULL;

		lxm_error_set(&err, -ENOMEM, 500, "%s: out of memory", m->what);
		source_fail(m, err);
		return;
	}
	if (lxmd_conn_ws_send(c, LXM_WS_TEXT, text, strlen(text)) == -ENOBUFS)
		return; /* on_drain tries again */
	m->end_sent = true;
	log_debug("%s: %" PRIu64 " bytes sent", m->what, m->bytes);
	lxmd_conn_ws_shutdown(c);
}

/* "fs" can take more: what it refused goes now, and reading goes on. */
static void source_drained(struct lxmd_migration *m)
{
	size_t n = m->pending;

	if (n > 0) {
		m->pending = 0;
		if (!source_send(m, n))
			return;
		if (m->data_open && !m->data_eof)
			uv_read_start((uv_stream_t *)&m->data, source_alloc, source_read);
	}
	source_check_end(m);
}

/* Thread pool: the files to read are visible (a snapshot of an overlay pool is mounted). */
struct source_prep {
	uv_work_t work;		  /* libuv's */
	struct lxmd_migration *m; /* pinned */
	struct lxm_error *err;	  /* why it failed */
	int result;		  /* 0 or -errno */
};

static void prep_work(uv_work_t *w)
{
	struct source_prep *p = w->data;
	struct lxmd_migration *m = p->m;
	struct lxm_pool *pool = NULL;

	p->result = lxmd_instance_pool(m->d, m->name, &pool, &p->err);
	if (p->result < 0)
		return;
	p->result = m->snap ? lxmd_volume_snapshot_mount(pool, m->name, m->snap, &p->err)
			    : lxmd_volume_mount(m->d, pool, m->name, &p->err);
}

static void prep_done(uv_work_t *w, int status)
{
	struct source_prep *p = w->data;
	struct lxmd_migration *m = p->m;
	struct lxm_error *err = TAKE_PTR(p->err);
	json_t *hdr;

	(void)status;
	if (p->result < 0 && !err)
		lxm_error_setx(&err, p->result, 500, "%s: mount its volume", m->what);
	free(p);
	if (m->ended) {
		lxm_error_free(err);
	} else if (err) {
		lxm_error_prefix(&err, "%s", m->what);
		source_fail(m, err);
	} else if (child_spawn(m, &err) < 0) {
		source_fail(m, err);
	} else {
		hdr = TAKE_PTR(m->header);
		send_json(m, SOCK_CONTROL, hdr);
		uv_read_start((uv_stream_t *)&m->data, source_alloc, source_read);
	}
	mig_unref(m);
}

/* Both websockets are up: the transfer begins. */
static void source_start(struct lxmd_migration *m)
{
	struct source_prep *p;
	struct lxm_error *err = NULL;
	int k;

	if (m->started || m->ended || !m->socks[SOCK_CONTROL].conn || !m->socks[SOCK_FS].conn)
		return;
	m->started = true;
	if (m->timer_open)
		uv_timer_stop(&m->timer);
	p = calloc(1, sizeof(*p));
	if (!p) {
		lxm_error_set(&err, -ENOMEM, 500, "%s: out of memory", m->what);
		source_fail(m, err);
		return;
	}
	p->m = m;
	p->work.data = p;
	mig_ref(m);
	k = uv_queue_work(m->d->loop, &p->work, prep_work, prep_done);
	if (k < 0) {
		free(p);
		mig_unref(m);
		lxm_error_set(&err, k, 500, "%s: queue work: %s", m->what, uv_strerror(k));
		source_fail(m, err);
	}
}

/* A message from the target on "control": its result. */
static void source_control(struct lxmd_migration *m, const uint8_t *data, size_t len)
{
	_cleanup_json_ json_t *j = json_loadb((const char *)data, len, 0, NULL);
	json_t *ok = json_object_get(j, "success");
	const char *msg = json_string_value(json_object_get(j, "message"));
	struct lxm_error *err = NULL;

	if (!json_is_boolean(ok)) {
		log_debug("%s: ignoring control message %.*s", m->what,
			  (int)(len > 200 ? 200 : len), (const char *)data);
		return;
	}
	if (!json_is_true(ok))
		lxm_error_set(&err, -EIO, 500, "%s: the target failed: %s", m->what,
			      msg ? msg : "no message");
	else if (!m->end_sent)
		lxm_error_set(&err, -EPROTO, 500,
			      "%s: the target reported success before all data went out", m->what);
	source_finish(m, err);
}

/* ---- the target ---- */

/* Reports the outcome to the create once the child no longer writes. */
static void target_report(struct lxmd_migration *m, struct lxm_error *success_err)
{
	lxmd_migration_done_fn done = m->done;
	struct lxm_error *err;

	if (!done || m->reported)
		return;
	if (m->failure && m->spawned && !m->exited)
		return; /* killed: reported once it has exited */
	m->reported = true;
	err = m->failure ? TAKE_PTR(m->failure) : success_err;
	m->done = NULL;
	done(m->done_ud, err);
}

static void target_fail(struct lxmd_migration *m, struct lxm_error *err)
{
	if (m->failure || m->reported) {
		lxm_error_free(err);
		return;
	}
	m->failure = err;
	log_debug("%s", err->msg);
	if (m->spawned && !m->exited && m->proc_open)
		uv_process_kill(&m->proc, SIGKILL);
	data_close(m);
	if (m->socks[SOCK_FS].conn)
		lxmd_conn_ws_pause(m->socks[SOCK_FS].conn, false);
	target_report(m, NULL);
}

static void target_pause(struct lxmd_migration *m, bool pause)
{
	struct lxmd_conn *c = m->socks[SOCK_FS].conn;

	m->paused = pause;
	if (c)
		lxmd_conn_ws_pause(c, pause);
}

/* The child has everything: its stdin closes once it took what is queued. */
static void target_maybe_close(struct lxmd_migration *m)
{
	if (m->end_seen && m->queued == 0 && m->data_open && STAILQ_EMPTY(&m->early))
		data_close(m);
}

static void target_written(uv_write_t *req, int status)
{
	struct child_write *w = (struct child_write *)req;
	struct lxmd_migration *m = w->m;

	m->queued -= w->len;
	free(w);
	if (status < 0 && status != UV_ECANCELED && !m->broken) {
		/* tar stopped reading: its exit says why. */
		m->broken = true;
		data_close(m);
	}
	if (m->paused && m->queued <= WRITE_RESUME_BYTES && !m->failure)
		target_pause(m, false);
	target_maybe_close(m);
	mig_unref(m);
}

/* Writes w to the child, which takes it over. */
static void target_write(struct lxmd_migration *m, struct child_write *w)
{
	uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);

	if (m->broken || !m->data_open) {
		free(w);
		return;
	}
	if (uv_write(&w->req, (uv_stream_t *)&m->data, &buf, 1, target_written) < 0) {
		free(w);
		m->broken = true;
		return;
	}
	mig_ref(m);
	m->queued += w->len;
	if (m->queued > WRITE_PAUSE_BYTES && !m->paused)
		target_pause(m, true);
}

/* Tar bytes from "fs": copied, then written, or held until the child runs. */
static void target_data(struct lxmd_migration *m, const uint8_t *data, size_t len)
{
	struct child_write *w;
	struct lxm_error *err = NULL;

	if (m->failure || m->end_seen)
		return;
	m->bytes += len;
	if (len == 0)
		return;
	w = malloc(sizeof(*w) + len);
	if (!w) {
		lxm_error_set(&err, -ENOMEM, 500, "%s: out of memory", m->what);
		target_fail(m, err);
		return;
	}
	w->m = m;
	w->len = len;
	memcpy(w->data, data, len);
	if (m->spawned) {
		target_write(m, w);
		return;
	}
	STAILQ_INSERT_TAIL(&m->early, w, link);
}

/* The end message on "fs". */
static void target_end_message(struct lxmd_migration *m, const uint8_t *data, size_t len)
{
	_cleanup_json_ json_t *j = json_loadb((const char *)data, len, 0, NULL);
	json_t *bytes = json_object_get(j, "bytes");
	struct lxm_error *err = NULL;

	if (!streq(json_string_value(json_object_get(j, "type")), "end") ||
	    !json_is_integer(bytes) || json_integer_value(bytes) < 0) {
		lxm_error_set(&err, -EPROTO, 400, "%s: the fs websocket sent a bad end message",
			      m->what);
		target_fail(m, err);
		return;
	}
	m->end_seen = true;
	m->end_bytes = (uint64_t)json_integer_value(bytes);
	if (m->end_bytes != m->bytes) {
		lxm_error_set(&err, -EPROTO, 400,
			      "%s: the data is truncated: %" PRIu64 " of %" PRIu64 " bytes arrived",
			      m->what, m->bytes, m->end_bytes);
		target_fail(m, err);
		return;
	}
	target_maybe_close(m);
	target_check_done(m);
}

/* A message from the source on "control": its header, or its failure. */
static void target_control(struct lxmd_migration *m, const uint8_t *data, size_t len)
{
	_cleanup_json_ json_t *j = json_loadb((const char *)data, len, 0, NULL);
	const char *type = json_string_value(json_object_get(j, "type"));
	json_t *ok = json_object_get(j, "success");
	struct lxm_error *err = NULL;

	if (json_is_boolean(ok) && !json_is_true(ok)) {
		const char *msg = json_string_value(json_object_get(j, "message"));

		lxm_error_set(&err, -EIO, 500, "%s: the source failed: %s", m->what,
			      msg ? msg : "no message");
		target_fail(m, err);
		return;
	}
	if (streq(type, "header")) {
		if (json_integer_value(json_object_get(j, "version")) != WIRE_VERSION) {
			lxm_error_set(&err, -EPROTO, 400,
				      "%s: the source speaks another version of the transfer "
				      "(%" JSON_INTEGER_FORMAT ", this lxmd %d)",
				      m->what, json_integer_value(json_object_get(j, "version")),
				      WIRE_VERSION);
			target_fail(m, err);
			return;
		}
		m->header_seen = true;
		json_decref(m->header);
		m->header = TAKE_PTR(j);
		return;
	}
	log_debug("%s: ignoring control message %.*s", m->what, (int)(len > 200 ? 200 : len),
		  (const char *)data);
}

/* Everything is in when the end message came, its count matched and tar succeeded. */
static void target_check_done(struct lxmd_migration *m)
{
	if (m->failure) {
		target_report(m, NULL);
		return;
	}
	if (!m->exited || m->errp_open)
		return;
	if (m->status != 0) {
		target_fail(m, child_error(m, "unpack the rootfs"));
		return;
	}
	if (!m->end_seen)
		return; /* the end message or the close of "fs" decides */
	if (!m->header_seen) {
		struct lxm_error *err = NULL;

		lxm_error_set(&err, -EPROTO, 400, "%s: the source sent no header", m->what);
		target_fail(m, err);
		return;
	}
	log_debug("%s: %" PRIu64 " bytes received", m->what, m->bytes);
	target_report(m, NULL);
}

void lxmd_migration_receive(struct lxmd_migration *m, const char *rootfs,
			    lxmd_migration_done_fn done, void *ud)
{
	struct lxm_error *err = NULL;
	struct child_write *w;

	m->done = done;
	m->done_ud = ud;
	m->started = true;
	if (m->failure) {
		target_report(m, NULL);
		return;
	}
	if (!(m->rootfs = strdup(rootfs))) {
		lxm_error_set(&err, -ENOMEM, 500, "%s: out of memory", m->what);
		target_fail(m, err);
		return;
	}
	if (child_spawn(m, &err) < 0) {
		target_fail(m, err);
		return;
	}
	while ((w = STAILQ_FIRST(&m->early))) {
		STAILQ_REMOVE_HEAD(&m->early, link);
		target_write(m, w);
	}
	/* "fs" was paused until the child ran. */
	if (m->queued <= WRITE_PAUSE_BYTES)
		target_pause(m, false);
	target_maybe_close(m);
}

void lxmd_migration_target_end(struct lxmd_migration *m, const struct lxm_error *err)
{
	if (!m || m->result_sent)
		return;
	m->result_sent = true;
	/* The create is over (the instance is whole, or rolled back): its name is free to use. */
	busy_drop(m);
	send_json(m, SOCK_CONTROL,
		  err ? json_pack("{s:b, s:s}", "success", false, "message", err->msg)
		      : json_pack("{s:b}", "success", true));
	mig_end(m);
}

void lxmd_migration_cancel(struct lxmd_migration *m)
{
	struct lxm_error *err = NULL;

	lxm_error_set(&err, -ECANCELED, 400, "%s: cancelled", m->what);
	target_fail(m, err);
}

void lxmd_migration_release(struct lxmd_migration *m)
{
	if (!m)
		return;
	m->op = NULL;
	m->done = NULL;
	mig_end(m);
	mig_unref(m);
}

/* ---- websockets ---- */

static void ws_message(void *ud, enum lxm_ws_opcode op, const uint8_t *data, size_t len)
{
	struct mig_socket *sock = ud;
	struct lxmd_migration *m = sock->m;

	if (m->ended)
		return;
	if (sock->index == SOCK_CONTROL) {
		if (op != LXM_WS_TEXT)
			return;
		if (m->target)
			target_control(m, data, len);
		else
			source_control(m, data, len);
	} else if (m->target) {
		if (op == LXM_WS_BINARY)
			target_data(m, data, len);
		else
			target_end_message(m, data, len);
	}
}

static void ws_close(void *ud)
{
	struct mig_socket *sock = ud;
	struct lxmd_migration *m = sock->m;
	struct lxm_error *err = NULL;

	sock->conn = NULL;
	sock->closed = true;
	if (!m->ended) {
		if (m->target && (sock->index == SOCK_CONTROL || !m->end_seen) && !m->reported)
			lxm_error_set(&err, -ECONNRESET, 500,
				      "%s: the %s websocket closed before the transfer ended",
				      m->what, sock_names[sock->index]);
		else if (!m->target && (sock->index == SOCK_CONTROL || !m->end_sent))
			lxm_error_set(&err, -ECONNRESET, 500,
				      "%s: the %s websocket closed before the transfer ended",
				      m->what, sock_names[sock->index]);
		if (err && m->target)
			target_fail(m, err);
		else if (err)
			source_fail(m, err);
	}
	mig_unref(m);
}

static void ws_drain(void *ud)
{
	struct mig_socket *sock = ud;

	if (!sock->m->target && sock->index == SOCK_FS && !sock->m->ended)
		source_drained(sock->m);
}

static const struct lxmd_ws_ops mig_ws_ops = {
	.on_message = ws_message,
	.on_close = ws_close,
	.on_drain = ws_drain,
};

static int mig_ws_connect(void *data, struct lxmd_request *r, const char *secret,
			  struct lxm_error **err)
{
	struct lxmd_migration *m = data;
	struct mig_socket *sock = NULL;
	struct lxmd_conn *conn = NULL;
	int k;

	for (int i = 0; i < _SOCK_MAX; i++)
		if (lxmd_ws_secret_equal(m->socks[i].secret, secret))
			sock = &m->socks[i];
	k = lxmd_ws_connect_check(r, sock ? sock_names[sock->index] : NULL, sock && sock->used,
				  m->ended, err);
	if (k < 0)
		return k;
	sock->used = true;
	/* One reference for the connection (dropped in ws_close), one for this call. */
	mig_ref(m);
	mig_ref(m);
	k = lxmd_request_upgrade(r, &mig_ws_ops, sock, &conn, err);
	if (k < 0) {
		sock->used = false;
		mig_unref(m);
		mig_unref(m);
		return lxm_error_prefix(err, "%s: websocket '%s'", m->what,
					sock_names[sock->index]);
	}
	if (!sock->closed) {
		sock->conn = conn;
		if (m->ended) {
			lxmd_conn_ws_shutdown(conn);
		} else if (m->target && sock->index == SOCK_FS && (!m->spawned || m->paused)) {
			/* Nothing takes the data before the volume exists. */
			m->paused = true;
			lxmd_conn_ws_pause(conn, true);
		}
		if (!m->target)
			source_start(m);
		else if (m->socks[SOCK_CONTROL].conn && m->socks[SOCK_FS].conn && m->timer_open)
			uv_timer_stop(&m->timer);
	}
	mig_unref(m);
	return 0;
}

static const struct lxmd_ws_session_ops mig_ws_session_ops = {
	.connect = mig_ws_connect,
};

static void connect_timeout(uv_timer_t *t)
{
	struct lxmd_migration *m = t->data;
	struct lxm_error *err = NULL;

	if (m->socks[SOCK_CONTROL].conn && m->socks[SOCK_FS].conn)
		return;
	lxm_error_set(&err, -ETIMEDOUT, 400, "%s: timed out waiting for websockets to connect",
		      m->what);
	if (m->target)
		target_fail(m, err);
	else
		source_fail(m, err);
}

static void timer_start(struct lxmd_migration *m)
{
	if (uv_timer_init(m->d->loop, &m->timer) < 0)
		return;
	m->timer.data = m;
	m->timer_open = true;
	mig_ref(m);
	uv_timer_start(&m->timer, connect_timeout, CONNECT_TIMEOUT_MS, 0);
}

/* ---- the source's operation ---- */

static int source_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	(void)op;
	(void)err;
	timer_start(data);
	return 0;
}

static int source_cancel(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct lxmd_migration *m = data;
	struct lxm_error *e = NULL;

	(void)op;
	(void)err;
	lxm_error_set(&e, -ECANCELED, 400, "%s: cancelled", m->what);
	source_fail(m, e);
	return 0;
}

/* The operation table let go. */
static void source_released(void *data)
{
	struct lxmd_migration *m = data;

	m->op = NULL;
	mig_end(m);
	mig_unref(m);
}

/* What the source says about itself in its header. */
static json_t *source_header(const struct lxm_db_instance *inst, const struct lxm_db_snapshot *s)
{
	return json_pack("{s:s, s:i, s:s, s:s?, s:s, s:s, s:O?, s:O?, s:O?}", "type", "header",
			 "version", WIRE_VERSION, "name", inst->name, "snapshot",
			 s ? s->name : NULL, "architecture",
			 inst->architecture ? inst->architecture : "", "description",
			 s ? "" : (inst->description ? inst->description : ""), "config",
			 s ? s->config : inst->config, "devices", s ? s->devices : inst->devices,
			 "profiles", s ? s->profiles : inst->profiles);
}

/* The tree the source's tar reads: the instance's rootfs or the snapshot's; NULL without
 * memory. */
static char *source_rootfs(const struct lxmd *d, const char *name, const char *snap)
{
	_cleanup_free_ char *dir = NULL;
	char *rootfs;
	int k;

	k = snap ? lxmd_snapshot_path(d, name, snap, &dir) : lxmd_instance_path(d, name, &dir);
	if (k < 0 || asprintf(&rootfs, "%s/rootfs", dir) < 0)
		return NULL;
	return rootfs;
}

int lxmd_migration_source(struct lxmd_request *r, const char *name, const char *snap,
			  struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_db_snapshot_ struct lxm_db_snapshot *s = NULL;
	_cleanup_strv_ char **snaps = NULL;
	_cleanup_json_ json_t *md = NULL;
	struct lxmd_migration *m = NULL;
	struct lxm_operation *op = NULL;
	bool live = false, instance_only = false;
	const char *what = snap ? "migrate snapshot" : "migrate instance";
	int k, code;

	if ((k = lxm_json_opt_bool(r->body, "live", &live, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "instance_only", &instance_only, err)) < 0)
		return lxm_error_prefix(err, "%s '%s'", what, name);
	if ((k = lxm_db_instance_get(r->d->db, name, &inst, err)) < 0 ||
	    (snap && (k = lxm_db_snapshot_get(r->d->db, name, snap, &s, err)) < 0))
		return lxm_error_prefix(err, "%s '%s'", what, name);
	if (inst->type && streq(inst->type, "virtual-machine"))
		return lxm_error_set(err, -EOPNOTSUPP, 501,
				     "%s '%s': moving or copying a virtual machine to another "
				     "host is not supported yet: publish it as an image (lxm "
				     "publish %s --alias NAME) and copy that image to the other "
				     "host (lxm image copy)",
				     what, name, name);
	if (live)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "%s '%s': live migration is not supported: stop it and copy "
				     "it (stop-copy), or copy one of its snapshots",
				     what, name);
	if (!snap) {
		(void)lxmd_instance_status(r->d, name, &code);
		if (code == LXM_STATUS_RUNNING || code == LXM_STATUS_FROZEN)
			return lxm_error_set(err, -EBUSY, 400,
					     "migrate instance '%s': it is running: stop it first "
					     "(lxm stop %s), or copy one of its snapshots "
					     "(lxm snapshot %s; lxm copy %s/SNAPSHOT ...)",
					     name, name, name, name);
		if (!instance_only &&
		    (k = lxm_db_instance_snapshot_names(r->d->db, name, &snaps, err)) < 0)
			return lxm_error_prefix(err, "%s '%s'", what, name);
		if (snaps && snaps[0])
			return lxm_error_set(err, -EOPNOTSUPP, 501,
					     "migrate instance '%s': copying its snapshots is not "
					     "supported yet: copy the instance only "
					     "(instance_only, lxm copy --instance-only)",
					     name);
	}
	if (lxmd_snapshot_busy(name))
		return lxm_error_set(err, -EBUSY, 409,
				     "%s '%s': a snapshot, restore or migration of it is under "
				     "way; retry when it ends",
				     what, name);
	k = mig_new(r->d, false, name, snap, &m);
	if (k < 0)
		return lxm_error_set(err, k, 500, "%s '%s': out of memory", what, name);
	m->header = source_header(inst, s);
	m->buf = malloc(READ_CHUNK);
	m->rootfs = source_rootfs(r->d, name, snap);
	if (!m->header || !m->buf || !m->rootfs || mig_secrets(m, &md) < 0) {
		mig_unref(m);
		return lxm_error_set(err, -ENOMEM, 500, "%s '%s': out of memory", what, name);
	}
	k = lxm_operation_new(r->d->ops, LXM_OP_WEBSOCKET, "Migrating instance",
			      json_pack("{s:[s+], s:[s+]}", "instances", "/1.0/instances/", name,
					"containers", "/1.0/containers/", name),
			      source_run, source_cancel, m, source_released, &op);
	if (k < 0) {
		mig_unref(m);
		return lxm_error_setx(err, k, 500, "%s '%s': new operation", what, name);
	}
	m->op = op;
	lxmd_ws_session_register(&m->ws, op, &mig_ws_session_ops, m);
	lxm_operation_set_metadata(op, TAKE_PTR(md));
	lxm_operation_start(op);
	return lxmd_respond_async(r, op);
}

/* ---- the target's session ---- */

int lxmd_migration_target_new(struct lxmd *d, const char *name, struct lxmd_migration **ret,
			      json_t **ret_metadata)
{
	struct lxmd_migration *m = NULL;
	int k;

	k = mig_new(d, true, name, NULL, &m);
	if (k < 0)
		return k;
	k = mig_secrets(m, ret_metadata);
	if (k < 0) {
		mig_unref(m);
		return k;
	}
	*ret = m;
	return 0;
}

void lxmd_migration_target_attach(struct lxmd_migration *m, struct lxm_operation *op)
{
	m->op = op;
	lxmd_ws_session_register(&m->ws, op, &mig_ws_session_ops, m);
	timer_start(m);
}
