/* lxmd's side of the VM agent protocol (agent-proto.h): a connection on a libuv loop to the unix
 * socket of a VM's virtio-serial chardev, with exec and file sessions multiplexed over it. The
 * guest is not trusted: whatever it sends is checked, and a malformed frame ends the connection.
 *
 * Callbacks run on the loop thread. A call that fails at once returns -errno with *err set and
 * never runs its callback. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "error.h"
#include "vm/agent-proto.h"

struct lxm_agent;
struct lxm_agent_session;

struct lxm_agent_conn_opts {
	const char *path;    /* the chardev's unix socket */
	uint64_t timeout_ms; /* how long to wait for the agent's HELLO */
	/* Once: err NULL when the agent answered, else why not (the agent's socket is missing,
	 * it did not answer within timeout_ms: "waiting for the VM agent: ..."). Either way the
	 * caller ends the connection with lxm_agent_close(). */
	void (*ready)(struct lxm_agent *a, struct lxm_error *err, void *ud);
	/* After ready: the connection was lost (optional); its sessions have ended. */
	void (*lost)(struct lxm_agent *a, struct lxm_error *err, void *ud);
	void *ud; /* passed to both */
};

/* Connects, retrying the socket and resending HELLO until the agent answers or the timeout. */
int lxm_agent_connect(uv_loop_t *loop, const struct lxm_agent_conn_opts *o, struct lxm_agent **ret,
		      struct lxm_error **err);
/* Ends every session (their done callbacks run with an error) and frees a once its handles
 * closed. May be called from any callback. */
void lxm_agent_close(struct lxm_agent *a);
/* Whether the agent answered and the connection still stands. */
bool lxm_agent_is_ready(const struct lxm_agent *a);
/* The guest kernel release and agent version from the agent's HELLO ("" before it). */
const char *lxm_agent_kernel(const struct lxm_agent *a);
const char *lxm_agent_version(const struct lxm_agent *a);

/* How an exec session ended. */
struct lxm_agent_exit {
	bool signaled; /* killed by a signal */
	int value;     /* the exit code, or the signal number */
};

/* A session's callbacks; all but done are optional. */
struct lxm_agent_cbs {
	/* exec: the command runs as pid (in the guest). */
	void (*started)(struct lxm_agent_session *s, uint32_t pid, void *ud);
	/* exec output (stream 1: stdout, 2: stderr) or FILE_GET data (stream 0). Credit goes
	 * back to the agent when this returns, unless lxm_agent_session_hold() holds it. */
	void (*output)(struct lxm_agent_session *s, int stream, const void *buf, size_t len,
		       void *ud);
	/* FILE_GET: what the path is, before its data. */
	void (*file)(struct lxm_agent_session *s, const struct lxm_agent_file *fi, void *ud);
	/* All queued input (stdin, put data) went out to the agent. */
	void (*drained)(struct lxm_agent_session *s, void *ud);
	/* The end: err NULL on success (exit set for exec), else the agent's or the connection's
	 * error. s is freed when this returns. */
	void (*done)(struct lxm_agent_session *s, const struct lxm_agent_exit *exit,
		     struct lxm_error *err, void *ud);
	void *ud; /* passed to all */
};

/* Starts req->argv in the guest. */
int lxm_agent_exec(struct lxm_agent *a, const struct lxm_agent_exec_req *req,
		   const struct lxm_agent_cbs *cbs, struct lxm_agent_session **ret,
		   struct lxm_error **err);
/* Queues stdin bytes (sent as the window allows; lxm_agent_session_pending() says how many
 * wait), then EOF. */
int lxm_agent_stdin(struct lxm_agent_session *s, const void *buf, size_t len);
int lxm_agent_stdin_eof(struct lxm_agent_session *s);
int lxm_agent_resize(struct lxm_agent_session *s, uint16_t rows, uint16_t cols);
int lxm_agent_signal(struct lxm_agent_session *s, int sig);

/* Reads a path: cbs->file, then cbs->output (stream 0) with the data (a directory's entry
 * names, each followed by a NUL), then cbs->done. */
int lxm_agent_file_get(struct lxm_agent *a, const char *path, const struct lxm_agent_cbs *cbs,
		       struct lxm_agent_session **ret, struct lxm_error **err);
/* Writes fi->path (fi->type, mode, uid, gid, flags and target as in FILE_PUT); a regular file
 * then takes lxm_agent_put_write() and lxm_agent_put_end(); cbs->done says how it went. */
int lxm_agent_file_put(struct lxm_agent *a, const struct lxm_agent_file *fi,
		       const struct lxm_agent_cbs *cbs, struct lxm_agent_session **ret,
		       struct lxm_error **err);
int lxm_agent_put_write(struct lxm_agent_session *s, const void *buf, size_t len);
int lxm_agent_put_end(struct lxm_agent_session *s);

/* Input bytes queued and not yet sent. */
size_t lxm_agent_session_pending(const struct lxm_agent_session *s);
/* Holds back the credit of output (a consumer that cannot take more now); release returns
 * what was consumed since, so the agent sends again. */
void lxm_agent_session_hold(struct lxm_agent_session *s, bool hold);
/* Ends a session early: the agent kills the command or drops the partial file. done is not
 * called. */
void lxm_agent_session_close(struct lxm_agent_session *s);
