/* POST /1.0/instances/<name>/exec: LXD's exec sessions.
 *
 * An exec creates a websocket operation whose metadata lists one secret per stream ("0", "1",
 * "2" and "control"; interactive sessions have "0" and "control" only). Clients connect one
 * websocket per secret (GET /1.0/operations/<id>/websocket, routed by api-websocket.c). Once the
 * required ones are up (0, 1, 2; or 0 and control) the session starts lxm-monitor's exec helper
 * (see monitor/monitor.h) with pipes as its stdio, or, for an interactive session, lets the
 * helper allocate a pty inside the container and hand back the master over the report socket
 * (fd 3). The helper also hands back a pidfd of the command, which
 * is what signals go to.
 *
 * Data: BINARY messages on "0" are the command's stdin; an empty TEXT message (LXD's barrier) or
 * the socket closing ends it. The command's output goes out as BINARY messages on "1" and "2"
 * (or "0"), each stream ending with the barrier. Reading a pipe stops while its peer has too much
 * queued, and reading a socket stops while the command does not take its stdin.
 *
 * The end, in LXD's order: the command exits; stdin and the control socket close; the output
 * streams drain and send their barriers (a background process that keeps a pipe open gets
 * DRAIN_MS, then the stream is cut: LXD would wait for it forever); then metadata.return is set
 * and the operation finishes, so the final event and /wait carry the exit status; finally every
 * socket closes.
 *
 * Where the command runs is the session's backend (struct exec_backend): a container's goes
 * through lxm-monitor's exec helper as above; a VM's through its guest agent (vm/agent-pool.h),
 * one agent session carrying the streams, the pty, resizes, signals and the exit, with the same
 * websockets and the same order of the end. While the guest's agent has not answered, the
 * operation's metadata has "status": "waiting for the VM agent". */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "api/api-websocket.h"
#include "child.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "monitor/monitor.h"
#include "operations.h"
#include "server.h"
#include "util.h"
#include "vm/agent-pool.h"

/* LXD fails a session whose required websockets are not all up within this. */
#define CONNECT_TIMEOUT_MS 5000
/* How long the output streams may stay open after the command exited. */
#define DRAIN_MS 500
/* Bytes read from an output at a time. */
#define READ_CHUNK (64 * 1024)
/* Bytes an output may still take once the command exited: what it wrote before is at most a
 * pipe's capacity; more comes from background processes (see output_take_rest()). */
#define DRAIN_BUDGET (2u * 1024 * 1024)
/* Stdin bytes queued for the command past which socket "0" is not read... */
#define STDIN_PAUSE_BYTES (4u * 1024 * 1024)
/* ...until the command has taken all but this much. */
#define STDIN_RESUME_BYTES (1u * 1024 * 1024)

enum {
	SOCK_STDIN,
	SOCK_STDOUT,
	SOCK_STDERR,
	SOCK_CONTROL,
	_SOCK_MAX,
};

static const char *const sock_names[_SOCK_MAX] = { "0", "1", "2", "control" };

struct exec_session;

/* One websocket of the session. */
struct exec_socket {
	struct exec_session *s; /* the owner */
	int index;		/* SOCK_* */
	bool exists;		/* listed in the metadata (interactive sessions have no 1 and 2) */
	char secret[LXMD_WS_SECRET_LEN + 1];
	bool used;		/* a client connected (a second one is refused) */
	bool closed;		/* it was connected and has gone */
	struct lxmd_conn *conn; /* while connected */
};

/* One output of the command: stdout or stderr, or the pty master (which also takes stdin). */
struct exec_output {
	struct exec_session *s; /* the owner */
	int sock;		/* the socket it goes out on */
	uv_pipe_t pipe;		/* the read end (the pty master) */
	bool active;		/* the stream exists in this session */
	bool open;		/* pipe is initialised and not closed */
	bool eof;		/* nothing more will be read */
	bool barrier_sent;	/* the empty TEXT message went out (or nobody listens) */
	size_t pending;		/* bytes of buf refused with -ENOBUFS, to send on drain */
	size_t drained;		/* bytes read after the command exited (see DRAIN_BUDGET) */
	char *buf;		/* READ_CHUNK bytes (VM: what waits for the socket, cap bytes) */
	size_t cap;		/* VM: bytes allocated in buf */
};

/* Stdin that arrived before the command runs. */
struct stdin_chunk {
	STAILQ_ENTRY(stdin_chunk) link;
	size_t len;
	char data[];
};

/* A write to the command's stdin. */
struct stdin_write {
	uv_write_t req;		/* libuv's */
	struct exec_session *s; /* the owner */
	size_t len;		/* bytes */
	char data[];		/* the copy being written */
};

/* Where the command runs: a container (lxm-monitor's exec helper) or a VM (its agent). */
struct exec_backend {
	/* Starts the command once the sockets it needs are up; fails with err, or reports a
	 * later failure through session_fail(). */
	int (*start)(struct exec_session *s, struct lxm_error **err);
	/* Whether stdin can go to the command now (else it waits in s->early). */
	bool (*stdin_ready)(struct exec_session *s);
	/* Stdin bytes for the command. */
	void (*stdin_send)(struct exec_session *s, const uint8_t *data, size_t len);
	/* The client ended stdin (s->in_eof): the command sees EOF once it took the rest. */
	void (*stdin_done)(struct exec_session *s);
	/* A signal from the control socket, the operation's cancel or a lost control socket. */
	void (*signal)(struct exec_session *s, int sig);
	/* The terminal size changed (s->width, s->height). */
	void (*resize)(struct exec_session *s);
	/* A socket drained or went away: outputs may take more. */
	void (*output_resume)(struct exec_session *s);
	/* Teardown: closes what the backend holds. */
	void (*end)(struct exec_session *s);
};

struct exec_session {
	struct lxmd_ws_session ws; /* how clients reach socks while the operation exists */
	struct lxmd *d;		   /* the daemon */
	struct lxm_operation *op;  /* NULL once the operation table let go of it */
	unsigned refs;		   /* operation + open handles + connections + pins */
	char *name;		   /* instance */
	json_t *metadata;	   /* the operation's metadata (without "return") */
	json_t *command;	   /* the argv, a JSON list of strings */
	json_t *environment;	   /* the request's environment */
	char *spec_path;	   /* the container's spec.json */
	pid_t init_pid;		   /* its init */
	uint32_t uid, gid;	   /* who runs the command */
	char *cwd;		   /* where, or NULL */
	unsigned width, height;	   /* terminal size (interactive) */
	bool interactive;	   /* a pty instead of pipes */
	bool wait_ws;		   /* wait-for-websocket: false discards the output */

	struct exec_socket socks[_SOCK_MAX];
	uv_timer_t timer; /* connect timeout, then the drain after the exit */
	bool timer_open;  /* timer is initialised and not closed */

	uv_process_t proc;  /* the helper */
	bool proc_open;	    /* proc is initialised and not closed */
	bool spawned;	    /* the helper runs or ran */
	bool exited;	    /* ... and has exited */
	int status;	    /* its exit status (128+N for signal N) */
	uint64_t exited_at; /* monotonic ms */
	int pidfd;	    /* the command's pidfd, from the report */
	int exec_errno;	    /* exec() of the command failed with this */
	char *error;	    /* the helper's own failure */
	bool cancelled;	    /* DELETE on the operation, or lxmd stopping */

	uv_poll_t report; /* the helper's report socket */
	int report_fd;	  /* lxmd's end, -1 when closed */
	bool report_open; /* report is initialised and not closed */

	uv_pipe_t in;			  /* the command's stdin (pipes only) */
	bool in_open;			  /* in is initialised and not closed */
	uv_stream_t *in_stream;		  /* where stdin goes: &in, or the pty, or NULL */
	size_t in_queued;		  /* bytes written and not yet taken */
	bool in_eof;			  /* the client ended stdin */
	bool in_broken;			  /* the command closed its stdin: drop what comes */
	STAILQ_HEAD(, stdin_chunk) early; /* stdin before the command runs */
	size_t early_len;		  /* bytes in early */
	bool in_paused;			  /* socket 0 is paused */

	struct exec_output out[2]; /* stdout and stderr, or the pty as out[0] */

	const struct exec_backend *be;	       /* container or VM */
	bool started;			       /* be->start() was called */
	struct lxmd_vm_agent_wait *agent_wait; /* VM: waiting for the guest's agent */
	struct lxm_agent_session *agent;       /* VM: the command's session while it runs */
	bool agent_eof_sent;		       /* VM: stdin's end went to the agent */

	bool finished; /* the operation has its result */
	bool ended;    /* teardown began */
};

static void session_check_done(struct exec_session *s);
static void session_end(struct exec_session *s);
static void stdin_flush_early(struct exec_session *s);

/* ---- lifetime ---- */

static void session_ref(struct exec_session *s)
{
	s->refs++;
}

static void session_unref(struct exec_session *s)
{
	struct stdin_chunk *c;

	if (--s->refs > 0)
		return;
	lxmd_ws_session_unregister(&s->ws);
	while ((c = STAILQ_FIRST(&s->early))) {
		STAILQ_REMOVE_HEAD(&s->early, link);
		free(c);
	}
	if (s->pidfd >= 0)
		close(s->pidfd);
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++)
		free(s->out[i].buf);
	json_decref(s->metadata);
	json_decref(s->command);
	json_decref(s->environment);
	free(s->name);
	free(s->spec_path);
	free(s->cwd);
	free(s->error);
	free(s);
}

static void handle_closed(uv_handle_t *h)
{
	session_unref(h->data);
}

static void output_closed(uv_handle_t *h)
{
	struct exec_output *o = h->data;

	session_unref(o->s);
}

static void report_closed(uv_handle_t *h)
{
	struct exec_session *s = h->data;

	close(s->report_fd);
	s->report_fd = -1;
	session_unref(s);
}

static void output_close(struct exec_output *o)
{
	if (!o->open)
		return;
	o->open = false;
	if (o->s->in_stream == (uv_stream_t *)&o->pipe)
		o->s->in_stream = NULL;
	uv_close((uv_handle_t *)&o->pipe, output_closed);
}

static void stdin_close(struct exec_session *s)
{
	if (!s->in_open)
		return;
	s->in_open = false;
	if (s->in_stream == (uv_stream_t *)&s->in)
		s->in_stream = NULL;
	uv_close((uv_handle_t *)&s->in, handle_closed);
}

static void report_close(struct exec_session *s)
{
	if (!s->report_open)
		return;
	s->report_open = false;
	uv_close((uv_handle_t *)&s->report, report_closed);
}

/* ---- signals ---- */

/* To the command through its pidfd; before the helper sent it, to the helper, which forwards
 * (and whose death takes the command along, for SIGKILL). */
static void report_drain(struct exec_session *s);

static void container_signal(struct exec_session *s, int sig)
{
	if (!s->spawned || s->exited)
		return;
	/* The pidfd may be waiting in the report socket. */
	report_drain(s);
	if (s->pidfd >= 0 && syscall(SYS_pidfd_send_signal, s->pidfd, sig, NULL, 0) == 0)
		return;
	if (s->pidfd >= 0 && errno == ESRCH && sig != SIGKILL)
		return;
	(void)uv_process_kill(&s->proc, sig);
}

/* ---- output ---- */

static void output_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct exec_output *o = h->data;

	*buf = uv_buf_init(o->buf, READ_CHUNK);
}

static struct lxmd_conn *output_conn(struct exec_output *o)
{
	return o->s->socks[o->sock].conn;
}

/* Sends the barrier once the data before it is out and the command has exited: clients (lxc)
 * close every socket after the last barrier, and losing "control" kills a running command. */
static void output_barrier(struct exec_output *o)
{
	struct lxmd_conn *c = output_conn(o);

	if (o->barrier_sent || o->pending > 0 || !o->eof || !o->s->exited)
		return;
	if (c && lxmd_conn_ws_send(c, LXM_WS_TEXT, "", 0) == -ENOBUFS)
		return; /* on_drain tries again */
	o->barrier_sent = true;
}

static void output_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void output_start(struct exec_output *o)
{
	if (o->open && !o->eof && o->pending == 0 &&
	    uv_read_start((uv_stream_t *)&o->pipe, output_alloc, output_read) < 0) {
		o->eof = true;
		output_barrier(o);
	}
}

/* No more reading: at EOF, or cut after the drain time. */
static void output_end(struct exec_output *o)
{
	if (o->eof)
		return;
	o->eof = true;
	if (o->open)
		uv_read_stop((uv_stream_t *)&o->pipe);
	/* The pty master also carries stdin: it stays open until the session ends. */
	if (!o->s->interactive)
		output_close(o);
	output_barrier(o);
}

/* Passes bytes in buf on; false when the peer is full and reading must pause. */
static bool output_send(struct exec_output *o, size_t len)
{
	struct lxmd_conn *c = output_conn(o);

	if (c && lxmd_conn_ws_send(c, LXM_WS_BINARY, o->buf, len) == -ENOBUFS) {
		o->pending = len;
		return false;
	}
	/* Nobody listens (any more): the output is dropped, as LXD drops it. */
	return true;
}

/* libuv takes POLLHUP after a short read for the end of a stream. A pty master reports POLLHUP
 * as soon as the last slave fd is closed, while the kernel may still be moving the slave's last
 * output over: read() waits for that, and fails with EIO at the real end. */
static void output_pty_hangup(struct exec_output *o)
{
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&o->pipe, &fd) < 0) {
		output_end(o);
		return;
	}
	for (;;) {
		ssize_t n = read(fd, o->buf, READ_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			output_start(o); /* still open after all: libuv reads on */
			return;
		}
		if (n <= 0) {
			output_end(o);
			return;
		}
		if (o->s->exited)
			o->drained += (size_t)n;
		if (!output_send(o, (size_t)n))
			return; /* output_drained() reads on */
	}
}

static void output_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct exec_output *o = stream->data;
	struct exec_session *s = o->s;

	if (nread == 0)
		return;
	if (nread < 0) {
		/* A pty master reads EIO once no slave is left: its EOF. */
		if (nread != UV_EOF && nread != UV_EIO)
			log_debug("exec in '%s': read output: %s", s->name,
				  uv_strerror((int)nread));
		if (nread == UV_EOF && s->interactive)
			output_pty_hangup(o);
		else
			output_end(o);
		session_check_done(s);
		return;
	}
	if (s->exited)
		o->drained += (size_t)nread;
	if (!output_send(o, (size_t)nread))
		uv_read_stop(stream);
}

/* Socket idx can take more: retry what it refused. */
static void output_drained(struct exec_session *s, int idx)
{
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++) {
		struct exec_output *o = &s->out[i];
		size_t n = o->pending;

		if (!o->active || o->sock != idx)
			continue;
		if (n > 0) {
			o->pending = 0;
			if (!output_send(o, n))
				continue;
			output_start(o);
		}
		output_barrier(o);
	}
	s->be->output_resume(s);
	session_check_done(s);
}

/* The socket went away: whatever was waiting for it is dropped. */
static void output_orphaned(struct exec_session *s, int idx)
{
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++) {
		struct exec_output *o = &s->out[i];

		if (!o->active || o->sock != idx)
			continue;
		if (o->pending > 0) {
			o->pending = 0;
			output_start(o);
		}
		output_barrier(o);
	}
	s->be->output_resume(s);
}

static int output_open(struct exec_output *o, int fd)
{
	struct exec_session *s = o->s;
	int k;

	o->buf = malloc(READ_CHUNK);
	if (!o->buf)
		return -ENOMEM;
	k = uv_pipe_init(s->d->loop, &o->pipe, 0);
	if (k < 0)
		return k;
	o->pipe.data = o;
	o->open = true;
	session_ref(s);
	k = uv_pipe_open(&o->pipe, fd);
	if (k < 0) {
		output_close(o);
		return k;
	}
	output_start(o);
	return 0;
}

/* ---- stdin ---- */

static void stdin_pause(struct exec_session *s, bool pause)
{
	struct lxmd_conn *c = s->socks[SOCK_STDIN].conn;

	s->in_paused = pause;
	if (c)
		lxmd_conn_ws_pause(c, pause);
}

static void stdin_maybe_close(struct exec_session *s)
{
	/* The pty stays: closing it would hang up the terminal. */
	if (s->in_eof && s->in_queued == 0 && !s->interactive)
		stdin_close(s);
}

static void stdin_written(uv_write_t *req, int status)
{
	struct stdin_write *w = (struct stdin_write *)req;
	struct exec_session *s = w->s;

	s->in_queued -= w->len;
	free(w);
	if (status < 0 && status != UV_ECANCELED && !s->in_broken) {
		/* The command closed its stdin (EPIPE): the rest is dropped. */
		s->in_broken = true;
		if (!s->interactive)
			stdin_close(s);
	}
	if (s->in_paused && s->in_queued <= STDIN_RESUME_BYTES)
		stdin_pause(s, false);
	stdin_maybe_close(s);
}

/* Writes to the command (its stdin pipe or pty); what it has not taken yet is counted. */
static void stdin_queue(struct exec_session *s, const uint8_t *data, size_t len)
{
	struct stdin_write *w;
	uv_buf_t buf;

	if (len == 0 || s->in_broken || !s->in_stream)
		return;
	w = malloc(sizeof(*w) + len);
	if (!w)
		return;
	w->s = s;
	w->len = len;
	memcpy(w->data, data, len);
	buf = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, s->in_stream, &buf, 1, stdin_written) < 0) {
		free(w);
		return;
	}
	s->in_queued += len;
	if (s->in_queued > STDIN_PAUSE_BYTES && !s->in_paused)
		stdin_pause(s, true);
}

/* Stdin from socket "0". */
static void stdin_write(struct exec_session *s, const uint8_t *data, size_t len)
{
	struct stdin_chunk *c;

	if (len == 0 || s->in_broken || s->in_eof || s->exited)
		return;
	if (s->be->stdin_ready(s)) {
		s->be->stdin_send(s, data, len);
		return;
	}
	/* Before the command runs (or its pty arrives) it is kept for it; afterwards there is no
	 * stdin any more. */
	if (s->spawned && !s->interactive)
		return;
	c = malloc(sizeof(*c) + len);
	if (!c)
		return;
	c->len = len;
	memcpy(c->data, data, len);
	STAILQ_INSERT_TAIL(&s->early, c, link);
	s->early_len += len;
	if (s->early_len > STDIN_PAUSE_BYTES && !s->in_paused)
		stdin_pause(s, true);
}

static void stdin_flush_early(struct exec_session *s)
{
	struct stdin_chunk *c;

	while ((c = STAILQ_FIRST(&s->early))) {
		STAILQ_REMOVE_HEAD(&s->early, link);
		s->early_len -= c->len;
		/* Sent before the barrier, which may have come before the command ran. */
		s->be->stdin_send(s, (const uint8_t *)c->data, c->len);
		free(c);
	}
	if (s->in_paused && s->in_queued <= STDIN_RESUME_BYTES)
		stdin_pause(s, false);
	s->be->stdin_done(s);
}

/* The barrier on "0", or "0" closing. */
static void stdin_end(struct exec_session *s)
{
	if (s->interactive || s->in_eof)
		return;
	s->in_eof = true;
	if (s->be->stdin_ready(s))
		s->be->stdin_done(s);
}

/* ---- the end ---- */

/* The result, in the operation: metadata.return first, then the final state. */
static void session_finish(struct exec_session *s, struct lxm_error *err)
{
	_cleanup_json_ json_t *md = NULL;

	if (s->finished || !s->op) {
		lxm_error_free(err);
		return;
	}
	s->finished = true;
	if (s->spawned) {
		md = json_deep_copy(s->metadata);
		if (md) {
			json_object_set_new(md, "return", json_integer(s->status));
			lxm_operation_set_metadata(s->op, TAKE_PTR(md));
		}
		if (!err && s->cancelled)
			lxm_error_set(&err, -ECANCELED, 400, "exec in '%s': cancelled", s->name);
		else if (!err && s->error)
			lxm_error_set(&err, -EIO, 500, "%s", s->error);
		else if (!err && s->exec_errno == ENOENT)
			lxm_error_set(&err, -ENOENT, 400, "Command not found");
		else if (!err && s->exec_errno)
			lxm_error_set(&err, -s->exec_errno, 400,
				      "Command '%s' cannot be executed: %s",
				      json_string_value(json_array_get(s->command, 0)),
				      strerror(s->exec_errno));
	}
	lxm_operation_finish(s->op, err);
}

/* Closes everything; the session is freed when the last handle and connection are gone. */
static void session_end(struct exec_session *s)
{
	if (s->ended)
		return;
	s->ended = true;
	if (s->timer_open) {
		s->timer_open = false;
		uv_close((uv_handle_t *)&s->timer, handle_closed);
	}
	s->be->end(s);
	for (int i = 0; i < _SOCK_MAX; i++)
		if (s->socks[i].conn)
			lxmd_conn_ws_shutdown(s->socks[i].conn);
}

/* Fails a session whose command never ran. */
static void session_fail(struct exec_session *s, struct lxm_error *err)
{
	session_finish(s, err);
	session_end(s);
}

static void session_check_done(struct exec_session *s)
{
	if (!s->exited || s->ended)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++)
		if (s->out[i].active && !s->out[i].barrier_sent)
			return;
	session_finish(s, NULL);
	session_end(s);
}

/* Reads what o's pipe holds right now. The loop may wake up late (a loaded host) and run the
 * drain timer before the readable event: what the command wrote before it exited is in the pipe
 * and must not be cut off. That is at most a pipe's capacity: past DRAIN_BUDGET bytes the rest
 * comes from background processes. Returns false while o waits for a slow client; o has ended
 * otherwise. */
static bool output_take_rest(struct exec_output *o)
{
	uv_os_fd_t fd;

	if (!o->open || uv_fileno((uv_handle_t *)&o->pipe, &fd) < 0) {
		output_end(o);
		return true;
	}
	while (o->drained < DRAIN_BUDGET) {
		ssize_t n = read(fd, o->buf, READ_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* EOF, a pty's EIO, or nothing more now */
		o->drained += (size_t)n;
		if (!output_send(o, (size_t)n)) {
			uv_read_stop((uv_stream_t *)&o->pipe);
			return false;
		}
	}
	output_end(o);
	return true;
}

/* DRAIN_MS after the exit: streams still open belong to background processes, unless they only
 * wait for a slow client, who gets its data. */
static void drain_timeout(uv_timer_t *t)
{
	struct exec_session *s = t->data;
	bool waiting = false;

	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++) {
		struct exec_output *o = &s->out[i];

		if (!o->active || o->eof)
			continue;
		/* What a background process keeps writing to a slow client is not waited for. */
		if (o->drained >= DRAIN_BUDGET) {
			o->pending = 0;
			output_end(o);
			continue;
		}
		if (o->pending > 0 || !output_take_rest(o))
			waiting = true;
	}
	if (waiting)
		uv_timer_start(&s->timer, drain_timeout, DRAIN_MS, 0);
	session_check_done(s);
}

/* ---- the report socket ---- */

static void report_message(struct exec_session *s, const char *text, size_t len, int *fds,
			   size_t n_fds)
{
	_cleanup_json_ json_t *j = json_loadb(text, len, 0, NULL);
	json_t *v;

	if (!j) {
		log_warn("exec in '%s': unreadable report from the helper", s->name);
		return;
	}
	if ((v = json_object_get(j, "error")) && json_is_string(v)) {
		free(s->error);
		s->error = strdup(json_string_value(v));
	}
	if ((v = json_object_get(j, "exec_error")) && json_is_integer(v))
		s->exec_errno = (int)json_integer_value(v);
	if (json_object_get(j, "pid") && n_fds >= 1 && s->pidfd < 0) {
		s->pidfd = fds[0];
		fds[0] = -1;
		if (s->interactive && n_fds >= 2 && !s->out[0].open && !s->ended) {
			int master = fds[1];

			fds[1] = -1;
			if (output_open(&s->out[0], master) < 0) {
				close(master);
				log_warn("exec in '%s': cannot use the pty", s->name);
				output_end(&s->out[0]);
				return;
			}
			s->in_stream = (uv_stream_t *)&s->out[0].pipe;
			if (s->width > 0 && s->height > 0) {
				struct winsize ws = { .ws_row = (unsigned short)s->height,
						      .ws_col = (unsigned short)s->width };

				(void)ioctl(master, TIOCSWINSZ, &ws);
			}
			stdin_flush_early(s);
		}
	}
}

/* Reads every report that is there (never blocks). */
static void report_drain(struct exec_session *s)
{
	if (s->report_fd < 0 || !s->report_open)
		return;
	for (;;) {
		char text[4096];
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(4 * sizeof(int))];
		} control;
		struct iovec iov = { .iov_base = text, .iov_len = sizeof(text) };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = control.buf,
				     .msg_controllen = sizeof(control.buf) };
		int fds[4] = { -1, -1, -1, -1 };
		size_t n_fds = 0;
		ssize_t n = recvmsg(s->report_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* The helper is done reporting. */
			uv_poll_stop(&s->report);
			return;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			size_t k;

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (n_fds < ARRAY_SIZE(fds))
					fds[n_fds++] = fd;
				else
					close(fd);
			}
		}
		report_message(s, text, (size_t)n, fds, n_fds);
		for (size_t i = 0; i < n_fds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
}

static void report_ready(uv_poll_t *p, int status, int events)
{
	struct exec_session *s = p->data;

	if (status < 0) {
		uv_poll_stop(p);
		return;
	}
	report_drain(s);
}

/* ---- the helper ---- */

static void helper_exited(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct exec_session *s = p->data;

	s->exited = true;
	s->exited_at = uv_now(s->d->loop);
	s->status = term_signal ? 128 + term_signal : (int)exit_status;
	log_debug("exec in '%s': command exited with status %d", s->name, s->status);
	/* What the helper reported before it exited is all there. */
	report_drain(s);
	report_close(s);
	if (s->pidfd >= 0) {
		close(s->pidfd);
		s->pidfd = -1;
	}
	/* LXD's order: stdin and control close now; the outputs drain. */
	if (!s->interactive)
		stdin_close(s);
	if (s->socks[SOCK_CONTROL].conn)
		lxmd_conn_ws_shutdown(s->socks[SOCK_CONTROL].conn);
	/* Streams at their end get their barrier now; a pty whose master never arrived has
	 * nothing to drain. */
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++) {
		if (s->out[i].active && !s->out[i].open && !s->out[i].eof)
			output_end(&s->out[i]);
		output_barrier(&s->out[i]);
	}
	if (s->timer_open)
		uv_timer_start(&s->timer, drain_timeout, DRAIN_MS, 0);
	session_check_done(s);
}

static int strv_push(char ***v, size_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int strv_push(char ***v, size_t *n, const char *fmt, ...)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));
	va_list ap;
	int k;

	if (!nv)
		return -ENOMEM;
	*v = nv;
	va_start(ap, fmt);
	k = vasprintf(&nv[*n], fmt, ap);
	va_end(ap);
	if (k < 0) {
		nv[*n] = NULL;
		return -ENOMEM;
	}
	nv[++*n] = NULL;
	return 0;
}

/* lxm-monitor exec <spec> <pid> [--uid U] [--gid G] [--cwd D] [--env K=V]... [--pty ...] -- CMD */
static int helper_argv(struct exec_session *s, const char *path, char ***ret)
{
	_cleanup_strv_ char **v = NULL;
	size_t n = 0, i;
	const char *key;
	json_t *val;
	int k = 0;

	k |= strv_push(&v, &n, "%s", path);
	k |= strv_push(&v, &n, "exec");
	k |= strv_push(&v, &n, "%s", s->spec_path);
	k |= strv_push(&v, &n, "%d", (int)s->init_pid);
	k |= strv_push(&v, &n, "--uid=%u", s->uid);
	k |= strv_push(&v, &n, "--gid=%u", s->gid);
	if (s->cwd)
		k |= strv_push(&v, &n, "--cwd=%s", s->cwd);
	json_object_foreach (s->environment, key, val)
		k |= strv_push(&v, &n, "--env=%s=%s", key, json_string_value(val));
	if (s->interactive && s->wait_ws) {
		k |= strv_push(&v, &n, "--pty");
		if (s->width > 0 && s->height > 0) {
			k |= strv_push(&v, &n, "--width=%u", s->width);
			k |= strv_push(&v, &n, "--height=%u", s->height);
		}
	}
	k |= strv_push(&v, &n, "--");
	json_array_foreach (s->command, i, val)
		k |= strv_push(&v, &n, "%s", json_string_value(val));
	if (k < 0)
		return -ENOMEM;
	*ret = TAKE_PTR(v);
	return 0;
}

static void close_pair(int fds[2])
{
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* Starts the helper with pipes (or nothing, without websockets) and the report socket on fd 3. */
static int session_spawn(struct exec_session *s, struct lxm_error **err)
{
	const char *path = lxmd_monitor_path(s->d);
	_cleanup_strv_ char **argv = NULL;
	int pipes[3][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } }, report[2] = { -1, -1 };
	uv_stdio_container_t stdio[4];
	uv_process_options_t opts = { 0 };
	bool use_pipes = s->wait_ws && !s->interactive;
	int k;

	if (helper_argv(s, path, &argv) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "exec in '%s': out of memory", s->name);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, report) < 0 ||
	    fcntl(report[0], F_SETFL, O_NONBLOCK) < 0) {
		k = lxm_error_setx(err, -errno, 500, "exec in '%s': report socket", s->name);
		close_pair(report);
		return k;
	}
	for (int i = 0; use_pipes && i < 3; i++) {
		if (pipe2(pipes[i], O_CLOEXEC) < 0) {
			k = lxm_error_setx(err, -errno, 500, "exec in '%s': pipes", s->name);
			goto fail;
		}
	}
	for (int i = 0; i < 3; i++) {
		if (use_pipes) {
			stdio[i].flags = UV_INHERIT_FD;
			stdio[i].data.fd = pipes[i][i == 0 ? 0 : 1];
		} else {
			stdio[i].flags = UV_IGNORE;
		}
	}
	stdio[3].flags = UV_INHERIT_FD;
	stdio[3].data.fd = report[1];
	opts.file = path;
	opts.args = argv;
	opts.exit_cb = helper_exited;
	opts.stdio = stdio;
	opts.stdio_count = 4;

	s->proc.data = s;
	k = uv_spawn(s->d->loop, &s->proc, &opts);
	/* Initialised even when it failed: it is closed like any handle. */
	s->proc_open = true;
	session_ref(s);
	if (k < 0) {
		k = lxm_error_set(err, k, 500, "exec in '%s': start %s: %s", s->name, path,
				  uv_strerror(k));
		goto fail;
	}
	s->spawned = true;
	log_debug("exec in '%s': helper pid %d", s->name, s->proc.pid);
	close(report[1]);
	report[1] = -1;

	/* The report socket first: a pidfd may be needed before anything else happens. Without
	 * it the session still works, only signals go through the helper. */
	if (uv_poll_init(s->d->loop, &s->report, report[0]) == 0) {
		s->report.data = s;
		s->report_fd = TAKE_FD(report[0]);
		s->report_open = true;
		session_ref(s);
		uv_poll_start(&s->report, UV_READABLE | UV_DISCONNECT, report_ready);
	}

	if (use_pipes) {
		for (int i = 0; i < 3; i++) {
			close(pipes[i][i == 0 ? 0 : 1]);
			pipes[i][i == 0 ? 0 : 1] = -1;
		}
		uv_pipe_init(s->d->loop, &s->in, 0);
		s->in.data = s;
		s->in_open = true;
		session_ref(s);
		if (uv_pipe_open(&s->in, pipes[0][1]) == 0) {
			pipes[0][1] = -1;
			s->in_stream = (uv_stream_t *)&s->in;
		} else {
			s->in_broken = true;
		}
		for (int i = 0; i < 2; i++) {
			if (output_open(&s->out[i], pipes[i + 1][0]) == 0) {
				pipes[i + 1][0] = -1;
			} else {
				log_warn("exec in '%s': cannot read the command's output", s->name);
				output_end(&s->out[i]);
			}
		}
		stdin_flush_early(s);
	}
	for (int i = 0; i < 3; i++)
		close_pair(pipes[i]);
	close_pair(report);
	return 0;
fail:
	for (int i = 0; i < 3; i++)
		close_pair(pipes[i]);
	close_pair(report);
	return k;
}

/* ---- the container backend ---- */

static bool container_stdin_ready(struct exec_session *s)
{
	return s->in_stream != NULL;
}

static void container_resize(struct exec_session *s)
{
	struct winsize ws = { .ws_row = (unsigned short)s->height,
			      .ws_col = (unsigned short)s->width };
	uv_os_fd_t fd;

	if (s->out[0].open && uv_fileno((uv_handle_t *)&s->out[0].pipe, &fd) == 0)
		(void)ioctl(fd, TIOCSWINSZ, &ws);
}

static void container_output_resume(struct exec_session *s)
{
	/* output_drained() and output_orphaned() restart reading the pipes themselves. */
	(void)s;
}

static void container_end(struct exec_session *s)
{
	stdin_close(s);
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++)
		output_close(&s->out[i]);
	report_close(s);
	/* An exited helper, or one that never started: no child is left unwatched. */
	if (s->proc_open && (s->exited || !s->spawned)) {
		s->proc_open = false;
		uv_close((uv_handle_t *)&s->proc, handle_closed);
	}
}

static const struct exec_backend container_backend = {
	.start = session_spawn,
	.stdin_ready = container_stdin_ready,
	.stdin_send = stdin_queue,
	.stdin_done = stdin_maybe_close,
	.signal = container_signal,
	.resize = container_resize,
	.output_resume = container_output_resume,
	.end = container_end,
};

/* ---- the VM backend ---- */

/* The command runs in a VM through its agent (vm/agent-pool.h): an agent session carries stdin,
 * stdout and stderr (or the pty), the resizes, the signals and the exit. What a socket refuses
 * waits in its output's buffer while the session holds back the agent's credit, which bounds it
 * by the agent's window. */

/* What a guest command gets besides the request's environment, as for containers. */
#define VM_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static bool vm_stdin_ready(struct exec_session *s)
{
	return s->agent != NULL;
}

static void vm_stdin_send(struct exec_session *s, const uint8_t *data, size_t len)
{
	if (!s->agent || len == 0 || s->in_broken)
		return;
	if (lxm_agent_stdin(s->agent, data, len) < 0) {
		s->in_broken = true;
		return;
	}
	if (lxm_agent_session_pending(s->agent) > STDIN_PAUSE_BYTES && !s->in_paused)
		stdin_pause(s, true);
}

static void vm_stdin_done(struct exec_session *s)
{
	/* A pty keeps its input open, as for containers. */
	if (!s->agent || !s->in_eof || s->interactive || s->agent_eof_sent)
		return;
	s->agent_eof_sent = true;
	(void)lxm_agent_stdin_eof(s->agent);
}

static void vm_signal(struct exec_session *s, int sig)
{
	if (s->agent && lxm_agent_signal(s->agent, sig) < 0)
		log_debug("exec in '%s': signal %d: the VM agent is gone", s->name, sig);
}

static void vm_resize(struct exec_session *s)
{
	if (s->agent)
		(void)lxm_agent_resize(s->agent, (uint16_t)s->height, (uint16_t)s->width);
}

static void vm_output_resume(struct exec_session *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++)
		if (s->out[i].pending > 0)
			return;
	if (s->agent)
		lxm_agent_session_hold(s->agent, false);
}

static void vm_end(struct exec_session *s)
{
	if (s->agent_wait) {
		lxmd_vm_agent_wait_cancel(TAKE_PTR(s->agent_wait));
		session_unref(s);
	}
	if (s->agent) {
		/* The agent kills the command's process group. */
		lxm_agent_session_close(TAKE_PTR(s->agent));
		session_unref(s);
	}
}

static void vm_started(struct lxm_agent_session *as, uint32_t pid, void *ud)
{
	struct exec_session *s = ud;

	log_debug("exec in '%s': command runs as pid %u in the guest", s->name, pid);
}

static bool vm_output_send(struct exec_output *o, const void *buf, size_t len);

/* Output from the guest: to its socket, or kept while the socket is full. */
static void vm_output(struct lxm_agent_session *as, int stream, const void *buf, size_t len,
		      void *ud)
{
	struct exec_session *s = ud;
	struct exec_output *o = NULL;

	/* With a pty everything is stdout, which goes out on "0". */
	if (stream == 1)
		o = &s->out[0];
	else if (stream == 2 && !s->interactive)
		o = &s->out[1];
	if (!o || !o->active || len == 0)
		return;
	if (vm_output_send(o, buf, len))
		/* output_drained() sends it; vm_output_resume() lets the agent send more. */
		lxm_agent_session_hold(as, true);
}

/* Sends buf on o's socket, or keeps it while the socket is full (true then). */
static bool vm_output_send(struct exec_output *o, const void *buf, size_t len)
{
	struct exec_session *s = o->s;
	struct lxmd_conn *c = output_conn(o);

	if (!c)
		return false; /* nobody listens: dropped, as for containers */
	if (o->pending == 0 && lxmd_conn_ws_send(c, LXM_WS_BINARY, buf, len) != -ENOBUFS)
		return false;
	if (o->pending + len > o->cap) {
		size_t cap = o->cap ? o->cap : READ_CHUNK;
		char *nb;

		while (cap < o->pending + len)
			cap *= 2;
		nb = realloc(o->buf, cap);
		if (!nb) {
			log_warn("exec in '%s': out of memory: output dropped", s->name);
			return false;
		}
		o->buf = nb;
		o->cap = cap;
	}
	memcpy(o->buf + o->pending, buf, len);
	o->pending += len;
	return true;
}

static void vm_drained(struct lxm_agent_session *as, void *ud)
{
	struct exec_session *s = ud;

	if (s->in_paused && lxm_agent_session_pending(as) <= STDIN_RESUME_BYTES)
		stdin_pause(s, false);
}

/* The command exited (exit set), or it could not run or the agent went away (err). */
static void vm_done(struct lxm_agent_session *as, const struct lxm_agent_exit *exit,
		    struct lxm_error *err, void *ud)
{
	struct exec_session *s = ud;

	s->agent = NULL;
	s->exited = true;
	s->exited_at = uv_now(s->d->loop);
	if (exit) {
		s->status = exit->signaled ? 128 + exit->value : exit->value;
	} else if (err && err->errnum == ENOENT && err->msg && strstr(err->msg, ": exec: ")) {
		s->status = 127;
		s->exec_errno = ENOENT;
	} else {
		s->status = 127;
		free(s->error);
		s->error = strdup(err && err->msg ? err->msg : "the VM agent ended the session");
	}
	/* A command that could not run says so on its stderr, as the container helper does. */
	if (!exit && err && err->msg && s->out[s->interactive ? 0 : 1].active) {
		_cleanup_free_ char *line = NULL;

		if (asprintf(&line, "lxm-agent: %s%s", err->msg, s->interactive ? "\r\n" : "\n") >=
		    0)
			vm_output_send(&s->out[s->interactive ? 0 : 1], line, strlen(line));
	}
	log_debug("exec in '%s': command exited with status %d", s->name, s->status);
	/* LXD's order: stdin and control close now; the outputs send their barriers once what
	 * waits for a slow client is out (the agent sent all output before EXIT). */
	if (s->socks[SOCK_CONTROL].conn)
		lxmd_conn_ws_shutdown(s->socks[SOCK_CONTROL].conn);
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++) {
		if (s->out[i].active)
			s->out[i].eof = true;
		output_barrier(&s->out[i]);
	}
	session_check_done(s);
	session_unref(s);
}

/* The command's environment in the guest: LXD's defaults under s->environment (the request's
 * and the instance's environment.* keys). */
static int vm_env(struct exec_session *s, char ***ret)
{
	static const char *const defaults[][2] = {
		{ "PATH", VM_DEFAULT_PATH },
		{ "LANG", "C.UTF-8" },
		{ "HOME", "/root" }, /* root only */
		{ "USER", "root" },  /* root only */
	};
	_cleanup_strv_ char **v = NULL;
	size_t n = 0;
	const char *key;
	json_t *val;
	int k = 0;

	for (size_t i = 0; i < ARRAY_SIZE(defaults); i++)
		if ((i < 2 || s->uid == 0) && !json_object_get(s->environment, defaults[i][0]))
			k |= strv_push(&v, &n, "%s=%s", defaults[i][0], defaults[i][1]);
	json_object_foreach (s->environment, key, val)
		k |= strv_push(&v, &n, "%s=%s", key, json_string_value(val));
	if (k < 0 || !v)
		return -ENOMEM;
	*ret = TAKE_PTR(v);
	return 0;
}

/* The agent answered (a) or did not (err): the command starts in the guest. */
static void vm_agent_ready(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	struct exec_session *s = ud;
	_cleanup_strv_ char **argv = NULL, **env = NULL;
	struct lxm_error *e = NULL;
	struct lxm_agent_cbs cbs = { .started = vm_started,
				     .output = vm_output,
				     .drained = vm_drained,
				     .done = vm_done,
				     .ud = s };
	struct lxm_agent_exec_req req = { .uid = s->uid,
					  .gid = s->gid,
					  .cwd = s->cwd ? s->cwd : "" };
	size_t n = 0, i;
	json_t *v;
	int k = 0;

	s->agent_wait = NULL;
	if (s->ended || s->finished)
		goto out;
	if (err) {
		lxm_error_set(&e, err->errnum ? -err->errnum : -EIO, err->status,
			      "exec in '%s': %s", s->name, err->msg);
		session_fail(s, e);
		goto out;
	}
	/* The operation no longer waits for the agent. */
	if (s->op)
		lxm_operation_set_metadata(s->op, json_deep_copy(s->metadata));
	json_array_foreach (s->command, i, v)
		k |= strv_push(&argv, &n, "%s", json_string_value(v));
	if (k < 0 || vm_env(s, &env) < 0) {
		lxm_error_set(&e, -ENOMEM, 500, "exec in '%s': out of memory", s->name);
		session_fail(s, e);
		goto out;
	}
	if (s->wait_ws)
		req.flags = s->interactive ? LXM_AGENT_EXEC_PTY | LXM_AGENT_EXEC_STDIN |
						     LXM_AGENT_EXEC_STDOUT
					   : LXM_AGENT_EXEC_STDIN | LXM_AGENT_EXEC_STDOUT |
						     LXM_AGENT_EXEC_STDERR;
	if (s->interactive && s->wait_ws) {
		req.rows = (uint16_t)s->height;
		req.cols = (uint16_t)s->width;
	}
	req.argv = argv;
	req.env = env;
	if (lxm_agent_exec(a, &req, &cbs, &s->agent, &e) < 0) {
		lxm_error_prefix(&e, "exec in '%s'", s->name);
		session_fail(s, e);
		goto out;
	}
	s->spawned = true;
	session_ref(s); /* for the agent session, dropped in vm_done() or vm_end() */
	stdin_flush_early(s);
out:
	session_unref(s);
}

static int vm_start(struct exec_session *s, struct lxm_error **err)
{
	struct lxmd_vm_agent_wait *w = NULL;
	json_t *md;
	int k;

	session_ref(s); /* for the wait, dropped in vm_agent_ready() or vm_end() */
	k = lxmd_vm_agent_get(s->d, s->name, vm_agent_ready, s, &w, err);
	if (k < 0) {
		session_unref(s);
		return lxm_error_prefix(err, "exec in '%s'", s->name);
	}
	if (!w)
		return 0; /* vm_agent_ready() ran */
	s->agent_wait = w;
	/* Visible in the operation while the guest boots. */
	md = json_deep_copy(s->metadata);
	if (md && s->op) {
		json_object_set_new(md, "status", json_string("waiting for the VM agent"));
		lxm_operation_set_metadata(s->op, md);
	} else {
		json_decref(md);
	}
	return 0;
}

static const struct exec_backend vm_backend = {
	.start = vm_start,
	.stdin_ready = vm_stdin_ready,
	.stdin_send = vm_stdin_send,
	.stdin_done = vm_stdin_done,
	.signal = vm_signal,
	.resize = vm_resize,
	.output_resume = vm_output_resume,
	.end = vm_end,
};

/* Starts the command once every socket it needs is connected. */
static void session_maybe_start(struct exec_session *s)
{
	struct lxm_error *err = NULL;

	if (s->started || s->ended || s->finished)
		return;
	if (s->wait_ws) {
		for (int i = 0; i < _SOCK_MAX; i++) {
			bool required = s->interactive ? i == SOCK_STDIN || i == SOCK_CONTROL
						       : i != SOCK_CONTROL;

			if (required && !s->socks[i].conn)
				return;
		}
	}
	if (s->timer_open)
		uv_timer_stop(&s->timer);
	s->started = true;
	if (s->be->start(s, &err) < 0)
		session_fail(s, err);
}

static void connect_timeout(uv_timer_t *t)
{
	struct exec_session *s = t->data;
	struct lxm_error *err = NULL;

	if (s->spawned)
		return;
	lxm_error_set(&err, -ETIMEDOUT, 400, "Timed out waiting for websockets to connect");
	session_fail(s, err);
}

/* ---- websockets ---- */

static void control_message(struct exec_session *s, const uint8_t *data, size_t len)
{
	_cleanup_json_ json_t *j = json_loadb((const char *)data, len, 0, NULL);
	const char *cmd = j ? json_string_value(json_object_get(j, "command")) : NULL;

	if (streq(cmd, "window-resize")) {
		json_t *args = json_object_get(j, "args");
		json_t *w = json_object_get(args, "width"), *h = json_object_get(args, "height");
		long width = json_is_string(w) ? strtol(json_string_value(w), NULL, 10)
					       : (long)json_integer_value(w);
		long height = json_is_string(h) ? strtol(json_string_value(h), NULL, 10)
						: (long)json_integer_value(h);

		if (width <= 0 || height <= 0 || width > USHRT_MAX || height > USHRT_MAX)
			return;
		s->width = (unsigned)width;
		s->height = (unsigned)height;
		/* LXD resizes interactive sessions only: pipes have no size. */
		if (s->interactive)
			s->be->resize(s);
	} else if (streq(cmd, "signal")) {
		json_int_t sig = json_integer_value(json_object_get(j, "signal"));

		if (sig > 0 && sig < NSIG)
			s->be->signal(s, (int)sig);
	} else {
		log_debug("exec in '%s': ignoring control message %.*s", s->name,
			  (int)(len > 200 ? 200 : len), (const char *)data);
	}
}

static void ws_message(void *ud, enum lxm_ws_opcode op, const uint8_t *data, size_t len)
{
	struct exec_socket *sock = ud;
	struct exec_session *s = sock->s;

	switch (sock->index) {
	case SOCK_STDIN:
		if (op == LXM_WS_TEXT)
			stdin_end(s);
		else
			stdin_write(s, data, len);
		break;
	case SOCK_CONTROL:
		control_message(s, data, len);
		break;
	default:
		/* Clients send nothing on output streams that matters. */
		break;
	}
}

static void ws_close(void *ud)
{
	struct exec_socket *sock = ud;
	struct exec_session *s = sock->s;

	sock->conn = NULL;
	sock->closed = true;
	switch (sock->index) {
	case SOCK_STDIN:
		stdin_end(s);
		break;
	case SOCK_CONTROL:
		/* As in LXD: losing the control socket ends the command. */
		if (s->spawned && !s->exited) {
			log_debug("exec in '%s': control socket closed, killing the command",
				  s->name);
			s->be->signal(s, SIGKILL);
		}
		break;
	default:
		break;
	}
	output_orphaned(s, sock->index);
	/* Nobody is left to talk to when lxmd stops. */
	if (s->d->shutting_down) {
		if (s->spawned)
			s->be->signal(s, SIGKILL);
		else if (!s->ended) {
			struct lxm_error *err = NULL;

			lxm_error_set(&err, -ESHUTDOWN, 503, "lxmd is shutting down");
			session_fail(s, err);
		}
	}
	session_check_done(s);
	session_unref(s);
}

static void ws_drain(void *ud)
{
	struct exec_socket *sock = ud;

	output_drained(sock->s, sock->index);
}

static const struct lxmd_ws_ops exec_ws_ops = {
	.on_message = ws_message,
	.on_close = ws_close,
	.on_drain = ws_drain,
};

/* GET /1.0/operations/<id>/websocket for an exec operation (api-websocket.c routes it here). */
static int exec_ws_connect(void *data, struct lxmd_request *r, const char *secret,
			   struct lxm_error **err)
{
	struct exec_session *s = data;
	struct exec_socket *sock = NULL;
	struct lxmd_conn *conn = NULL;
	int k;

	for (int i = 0; i < _SOCK_MAX; i++)
		if (s->socks[i].exists && lxmd_ws_secret_equal(s->socks[i].secret, secret))
			sock = &s->socks[i];
	k = lxmd_ws_connect_check(r, sock ? sock_names[sock->index] : NULL, sock && sock->used,
				  s->ended || s->finished, err);
	if (k < 0)
		return k;

	sock->used = true;
	/* One reference for the connection (dropped in ws_close), one for this call: messages and
	 * even the close may come before lxmd_request_upgrade() returns. */
	session_ref(s);
	session_ref(s);
	k = lxmd_request_upgrade(r, &exec_ws_ops, sock, &conn, err);
	if (k < 0) {
		sock->used = false;
		session_unref(s);
		session_unref(s);
		return lxm_error_prefix(err, "exec in '%s': websocket '%s'", s->name,
					sock_names[sock->index]);
	}
	if (!sock->closed) {
		sock->conn = conn;
		if (sock->index == SOCK_STDIN && s->in_paused)
			lxmd_conn_ws_pause(conn, true);
		if (s->ended)
			lxmd_conn_ws_shutdown(conn);
		else
			session_maybe_start(s);
	}
	session_unref(s);
	return 0;
}

static const struct lxmd_ws_session_ops exec_ws_session_ops = {
	.connect = exec_ws_connect,
};

/* ---- the operation ---- */

static int exec_run(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct exec_session *s = data;
	struct lxm_error *e = NULL;

	if (s->wait_ws) {
		uv_timer_start(&s->timer, connect_timeout, CONNECT_TIMEOUT_MS, 0);
		return 0;
	}
	s->started = true;
	if (s->be->start(s, &e) < 0)
		session_fail(s, e);
	return 0;
}

static int exec_cancel(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct exec_session *s = data;
	struct lxm_error *e = NULL;

	s->cancelled = true;
	if (s->spawned) {
		s->be->signal(s, SIGKILL);
		return 0;
	}
	lxm_error_set(&e, -ECANCELED, 400, "exec in '%s': cancelled", s->name);
	session_fail(s, e);
	return 0;
}

/* The operation table let go: the session finishes on its own. */
static void exec_op_released(void *data)
{
	struct exec_session *s = data;

	s->op = NULL;
	lxmd_ws_session_unregister(&s->ws);
	if (s->spawned && !s->exited)
		s->be->signal(s, SIGKILL);
	else
		session_end(s);
	session_unref(s);
}

/* ---- the request ---- */

static int parse_id(const json_t *body, const char *field, uint32_t *ret, struct lxm_error **err)
{
	json_t *v = json_object_get(body, field);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)UINT32_MAX - 1)
		return lxm_error_set(err, -EINVAL, 400,
				     "field '%s' must be a number from 0 to 4294967294", field);
	*ret = (uint32_t)json_integer_value(v);
	return 0;
}

static int parse_size(const json_t *body, const char *field, unsigned *ret, struct lxm_error **err)
{
	json_t *v = json_object_get(body, field);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > USHRT_MAX)
		return lxm_error_set(err, -EINVAL, 400, "field '%s' must be a number from 0 to %d",
				     field, USHRT_MAX);
	*ret = (unsigned)json_integer_value(v);
	return 0;
}

static int parse_request(struct exec_session *s, const json_t *body, struct lxm_error **err)
{
	json_t *command = NULL, *env = NULL, *v;
	const char *cwd = NULL, *key;
	bool record = false;
	size_t i;
	int k;

	if (!body)
		return lxm_error_set(err, -EINVAL, 400, "request body is empty");
	if ((k = lxm_json_opt_array(body, "command", &command, err)) < 0 ||
	    (k = lxm_json_opt_object(body, "environment", &env, err)) < 0 ||
	    (k = lxm_json_opt_bool(body, "wait-for-websocket", &s->wait_ws, err)) < 0 ||
	    (k = lxm_json_opt_bool(body, "interactive", &s->interactive, err)) < 0 ||
	    (k = lxm_json_opt_bool(body, "record-output", &record, err)) < 0 ||
	    (k = lxm_json_opt_string(body, "cwd", &cwd, err)) < 0 ||
	    (k = parse_id(body, "user", &s->uid, err)) < 0 ||
	    (k = parse_id(body, "group", &s->gid, err)) < 0 ||
	    (k = parse_size(body, "width", &s->width, err)) < 0 ||
	    (k = parse_size(body, "height", &s->height, err)) < 0)
		return k;
	if (!command || json_array_size(command) == 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "field 'command' must be a non-empty list of strings");
	json_array_foreach (command, i, v)
		if (!json_is_string(v) || (i == 0 && !*json_string_value(v)))
			return lxm_error_set(err, -EINVAL, 400,
					     "field 'command' must be a non-empty list of strings "
					     "(item %zu is not)",
					     i);
	json_object_foreach (env, key, v)
		if (!*key || strchr(key, '=') || !json_is_string(v))
			return lxm_error_set(err, -EINVAL, 400,
					     "field 'environment': '%s' must be a name without '=' "
					     "with a string value",
					     key);
	if (cwd && *cwd && cwd[0] != '/')
		return lxm_error_set(err, -EINVAL, 400,
				     "field 'cwd' must be an absolute path, not '%s'", cwd);
	if (record)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "field 'record-output': recording output is not supported");
	s->command = json_incref(command);
	s->environment = env ? json_copy(env) : json_object();
	if (cwd && *cwd && !(s->cwd = strdup(cwd)))
		return -ENOMEM;
	return s->environment ? 0 : -ENOMEM;
}

static int session_new(struct lxmd *d, const char *name, struct exec_session **ret)
{
	struct exec_session *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->d = d;
	s->be = &container_backend;
	s->refs = 1; /* the caller's, handed to the operation */
	s->pidfd = -1;
	s->report_fd = -1;
	STAILQ_INIT(&s->early);
	for (int i = 0; i < _SOCK_MAX; i++) {
		s->socks[i].s = s;
		s->socks[i].index = i;
	}
	for (size_t i = 0; i < ARRAY_SIZE(s->out); i++)
		s->out[i].s = s;
	s->name = strdup(name);
	if (!s->name) {
		session_unref(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

/* Secrets, the streams and the metadata, once the request is known. */
static int session_setup(struct exec_session *s)
{
	json_t *fds = json_object();

	s->metadata = json_pack("{s:o, s:O, s:O, s:b}", "fds", fds, "command", s->command,
				"environment", s->environment, "interactive", s->interactive);
	if (!s->metadata)
		return -ENOMEM;
	if (!s->wait_ws)
		return 0;
	for (int i = 0; i < _SOCK_MAX; i++) {
		struct exec_socket *sock = &s->socks[i];

		sock->exists = !s->interactive || i == SOCK_STDIN || i == SOCK_CONTROL;
		if (!sock->exists)
			continue;
		if (lxmd_ws_secret_new(sock->secret) < 0 ||
		    json_object_set_new(fds, sock_names[i], json_string(sock->secret)) < 0)
			return -ENOMEM;
	}
	s->out[0].active = true;
	s->out[0].sock = s->interactive ? SOCK_STDIN : SOCK_STDOUT;
	s->out[1].active = !s->interactive;
	s->out[1].sock = SOCK_STDERR;
	uv_timer_init(s->d->loop, &s->timer);
	s->timer.data = s;
	s->timer_open = true;
	session_ref(s);
	return 0;
}

/* The instance's environment.* config keys, under what the request sets itself (as LXD). */
static int instance_environment(struct exec_session *s, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	const char *key;
	json_t *v;
	int k;

	k = lxm_db_instance_get(s->d->db, s->name, &inst, err);
	if (k < 0)
		return k;
	k = lxmd_instance_expand(s->d, inst, &config, &devices, err);
	if (k < 0)
		return k;
	json_object_foreach (config, key, v) {
		const char *var = key + strlen("environment.");

		if (!startswith(key, "environment.") || !*var || !json_is_string(v) ||
		    json_object_get(s->environment, var))
			continue;
		if (json_object_set(s->environment, var, v) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	return 0;
}

static json_t *exec_resources(const char *name)
{
	return json_pack("{s:[s+], s:[s+]}", "instances", "/1.0/instances/", name, "containers",
			 "/1.0/containers/", name);
}

int lxmd_api_instance_exec_post(struct lxmd_request *r, struct lxm_error **err)
{
	const char *name = r->args[0];
	struct exec_session *s = NULL;
	struct lxm_operation *op = NULL;
	_cleanup_error_ struct lxm_error *e = NULL;
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	int k, code = 0;

	k = lxmd_query_project(r, err);
	if (k < 0)
		return k;
	k = session_new(r->d, name, &s);
	if (k < 0)
		return lxm_error_set(err, k, 500, "exec in '%s': out of memory", name);
	k = parse_request(s, r->body, err);
	if (k < 0)
		goto fail_prefix;
	k = lxm_db_instance_get(r->d->db, name, &inst, &e);
	if (k == 0 && streq(inst->type, "virtual-machine")) {
		s->be = &vm_backend;
		k = lxmd_vm_agent_check_running(r->d, name, &e);
	} else if (k == 0) {
		k = lxmd_instance_running(r->d, name, &s->init_pid, &s->spec_path, &e);
	}
	if (k < 0) {
		if (e && e->status == 400)
			k = lxm_error_set(err, k, 400, "exec in '%s': instance is not running",
					  name);
		else if (e && e->status == 404)
			k = lxm_error_set(err, k, 404, "exec in '%s': instance not found", name);
		else
			k = lxm_error_set(err, k, e ? e->status : 500, "exec in '%s': %s", name,
					  e && e->msg ? e->msg : strerror(-k));
		goto fail;
	}
	/* The helper would join a frozen cgroup and freeze with it. */
	if (s->be == &container_backend)
		(void)lxmd_instance_status(r->d, name, &code);
	if (s->be == &container_backend && code == LXM_STATUS_FROZEN) {
		k = lxm_error_set(err, -EBUSY, 400,
				  "exec in '%s': instance is frozen (resume it with 'lxm start')",
				  name);
		goto fail;
	}
	k = instance_environment(s, err);
	if (k < 0)
		goto fail_prefix;
	k = session_setup(s);
	if (k < 0) {
		lxm_error_set(err, k, 500, "exec in '%s': out of memory", name);
		goto fail;
	}
	k = lxm_operation_new(r->d->ops, s->wait_ws ? LXM_OP_WEBSOCKET : LXM_OP_TASK,
			      "Executing command", exec_resources(name), exec_run, exec_cancel, s,
			      exec_op_released, &op);
	if (k < 0) {
		lxm_error_setx(err, k, 500, "exec in '%s': new operation", name);
		goto fail;
	}
	/* From here the operation holds the session. */
	s->op = op;
	lxmd_ws_session_register(&s->ws, op, &exec_ws_session_ops, s);
	lxm_operation_set_metadata(op, json_deep_copy(s->metadata));
	lxm_operation_start(op);
	return lxmd_respond_async(r, op);
fail_prefix:
	lxm_error_prefix(err, "exec in '%s'", name);
fail:
	session_end(s);
	session_unref(s);
	return k;
}
