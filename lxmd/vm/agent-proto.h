/* The protocol between lxmd and lxm-agent, the agent inside a VM guest, over one byte stream (the
 * virtio-serial port org.lxm.agent.0: /dev/virtio-ports/org.lxm.agent.0 in the guest, a unix
 * socket chardev on the host). This file is linked into lxmd and into the static agent, so it
 * uses libc only.
 *
 * Frames. Every message is one frame: a 12-byte header and a payload.
 *
 *	offset 0  u8[2]  magic 'L' 'A'
 *	offset 2  u8     type (enum lxm_agent_type)
 *	offset 3  u8     flags, 0 (a frame with other flags is malformed)
 *	offset 4  u32    session id (0: the connection itself)
 *	offset 8  u32    payload length, at most LXM_AGENT_MAX_PAYLOAD
 *
 * Integers are big-endian. In payloads a string is a u32 length and its bytes (no NUL inside, at
 * most LXM_AGENT_MAX_PAYLOAD); a string list is a u32 count (at most LXM_AGENT_MAX_STRV) and the
 * strings. A payload must be consumed exactly: trailing bytes make the frame malformed.
 *
 * Connection. The host sends HELLO (session 0) with a fresh nonce when it connects and again
 * until it hears the answer with that nonce; the agent answers every HELLO with its own, which
 * echoes the nonce, after ending all sessions of the previous host (a virtio-serial port does not
 * tell the guest that the host went away and came back). The agent also sends a HELLO with nonce
 * 0 when it opens the port: after the host's HELLO was answered, that means it restarted. A
 * malformed frame is answered with ERROR on session 0; the agent then ends all sessions and
 * skips input until the next HELLO header (lxm_agent_resync()).
 *
 * Sessions. The host picks a fresh non-zero session id and opens it with EXEC, FILE_GET or
 * FILE_PUT. ERROR ends a session from either side's point of view; CLOSE from the host ends it
 * early (the agent kills the command's process group, a partial FILE_PUT is removed).
 *
 *	HELLO	 u32 proto_min, u32 proto_max, u32 nonce, str agent version, str kernel
 *		 release (the host sends empty strings)
 *	EXEC	 u32 flags (LXM_AGENT_EXEC_*), u32 uid, u32 gid, u16 rows, u16 cols, str cwd
 *		 (empty: /), strv argv (at least one), strv env ("K=V")
 *	STARTED	 u32 pid: the command runs (agent to host)
 *	STDIN	 bytes for the command's stdin (host to agent, counts against the window)
 *	STDIN_EOF (empty): close the command's stdin
 *	STDOUT, STDERR bytes the command wrote (agent to host, windowed); with a pty all output is
 *		 STDOUT
 *	RESIZE	 u16 rows, u16 cols of the pty
 *	SIGNAL	 u32 signal number, sent to the command's process group
 *	EXIT	 u32 kind (LXM_AGENT_EXIT_CODE or _SIGNAL), u32 value; sent after all output;
 *		 ends the session
 *	FILE_GET str path
 *	FILE	 the answer to FILE_GET: u32 type (LXM_AGENT_FILE_*), u32 mode (permission bits),
 *		 u32 uid, u32 gid, u64 size, str symlink target; then DATA frames (a directory's
 *		 entry names, each followed by a NUL byte) and END, which ends the session
 *	FILE_PUT u32 type, u32 mode, u32 uid, u32 gid, u32 flags (LXM_AGENT_PUT_*), str path,
 *		 str symlink target; for a file the host then sends DATA and END; the agent answers
 *		 RESULT or ERROR, which ends the session
 *	DATA	 file bytes (windowed), END (empty): the end of them
 *	RESULT	 (empty): FILE_PUT done
 *	ERROR	 u32 errno (positive), str message naming the step ("open /etc/x: ...")
 *	WINDOW	 u32 bytes: the receiver consumed this much of the sender's windowed data
 *	CLOSE	 (empty): host to agent, end the session now
 *
 * Flow control. Each session has a window of LXM_AGENT_WINDOW bytes per direction for the
 * windowed messages (STDIN, STDOUT, STDERR, DATA). A sender subtracts what it sends and stops at
 * zero; the receiver grants bytes back with WINDOW once it consumed them (wrote them to the pipe
 * or file, or handed them on). Sending past the window is a protocol error. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LXM_AGENT_PROTO_VERSION 1
#define LXM_AGENT_PORT_NAME	"org.lxm.agent.0"
#define LXM_AGENT_PORT_PATH	"/dev/virtio-ports/" LXM_AGENT_PORT_NAME
#define LXM_AGENT_HDR_SIZE	12
#define LXM_AGENT_MAX_PAYLOAD	(64 * 1024)
#define LXM_AGENT_MAX_STRV	4096
#define LXM_AGENT_WINDOW	(256 * 1024)

enum lxm_agent_type {
	LXM_AGENT_HELLO = 1,
	LXM_AGENT_EXEC,
	LXM_AGENT_STARTED,
	LXM_AGENT_STDIN,
	LXM_AGENT_STDIN_EOF,
	LXM_AGENT_STDOUT,
	LXM_AGENT_STDERR,
	LXM_AGENT_RESIZE,
	LXM_AGENT_SIGNAL,
	LXM_AGENT_EXIT,
	LXM_AGENT_FILE_GET,
	LXM_AGENT_FILE,
	LXM_AGENT_FILE_PUT,
	LXM_AGENT_DATA,
	LXM_AGENT_END,
	LXM_AGENT_RESULT,
	LXM_AGENT_ERROR,
	LXM_AGENT_WINDOW_MSG,
	LXM_AGENT_CLOSE,
	_LXM_AGENT_TYPE_MAX,
};

enum {
	LXM_AGENT_EXEC_PTY = 1 << 0,	/* run on a new pty (stdin/stdout/stderr all on it) */
	LXM_AGENT_EXEC_STDIN = 1 << 1,	/* the host sends stdin; else it is /dev/null */
	LXM_AGENT_EXEC_STDOUT = 1 << 2, /* forward stdout; else /dev/null */
	LXM_AGENT_EXEC_STDERR = 1 << 3, /* forward stderr; else /dev/null */
	_LXM_AGENT_EXEC_ALL = (1 << 4) - 1,
};

enum {
	LXM_AGENT_EXIT_CODE = 0,   /* value is the exit code */
	LXM_AGENT_EXIT_SIGNAL = 1, /* value is the signal that killed it */
};

enum lxm_agent_file_type {
	LXM_AGENT_FILE_REGULAR = 0,
	LXM_AGENT_FILE_DIRECTORY = 1,
	LXM_AGENT_FILE_SYMLINK = 2,
	_LXM_AGENT_FILE_TYPE_MAX,
};

enum {
	LXM_AGENT_PUT_MODE = 1 << 0,   /* mode was given; else the old file's, else 0644/0755 */
	LXM_AGENT_PUT_UID = 1 << 1,    /* uid was given; else the old file's, else 0 */
	LXM_AGENT_PUT_GID = 1 << 2,    /* gid was given; else the old file's, else 0 */
	LXM_AGENT_PUT_APPEND = 1 << 3, /* append to a regular file in place */
	_LXM_AGENT_PUT_ALL = (1 << 4) - 1,
};

/* One parsed frame; payload points into the parsed buffer. */
struct lxm_agent_frame {
	uint8_t type;		/* enum lxm_agent_type */
	uint32_t session;	/* session id, 0 for the connection */
	uint32_t len;		/* payload length */
	const uint8_t *payload; /* len bytes */
};

/* Parses the frame at the start of buf. Returns 1 with *f and *used (header + payload) on a whole
 * frame, 0 when more bytes are needed, -EBADMSG on a bad magic or flags, -EMSGSIZE on a length
 * over the cap, -EPROTO on an unknown type. Never reads past len. */
int lxm_agent_frame_parse(const void *buf, size_t len, struct lxm_agent_frame *f, size_t *used);
/* Writes a frame header. */
void lxm_agent_frame_header(uint8_t hdr[LXM_AGENT_HDR_SIZE], uint8_t type, uint32_t session,
			    uint32_t len);
/* The offset of the first place in buf where a HELLO frame may start (len: none yet; a partial
 * header at the end is kept, so the offset is where to keep from). */
size_t lxm_agent_resync(const void *buf, size_t len);
/* The name of a message type, "unknown" otherwise (for logs and errors). */
const char *lxm_agent_type_name(unsigned type);
/* Whether a type's payload counts against the window. */
bool lxm_agent_type_windowed(unsigned type);

/* An encoder: a growing buffer of whole frames. Errors stick in err until lxm_agent_enc_end(). */
struct lxm_agent_enc {
	uint8_t *data; /* the encoded frames */
	size_t len;    /* bytes used */
	size_t cap;    /* bytes allocated */
	size_t start;  /* offset of the frame being encoded */
	int err;       /* the first error (-ENOMEM, -EMSGSIZE), sticky */
};

void lxm_agent_enc_begin(struct lxm_agent_enc *e, uint8_t type, uint32_t session);
void lxm_agent_enc_u16(struct lxm_agent_enc *e, uint16_t v);
void lxm_agent_enc_u32(struct lxm_agent_enc *e, uint32_t v);
void lxm_agent_enc_u64(struct lxm_agent_enc *e, uint64_t v);
void lxm_agent_enc_bytes(struct lxm_agent_enc *e, const void *p, size_t n);
void lxm_agent_enc_str(struct lxm_agent_enc *e, const char *s);
void lxm_agent_enc_strv(struct lxm_agent_enc *e, char *const *v);
/* Finishes the frame (its length); 0 or the first error, after which the frame is dropped. */
int lxm_agent_enc_end(struct lxm_agent_enc *e);
/* Drops the first n bytes (sent). */
void lxm_agent_enc_consume(struct lxm_agent_enc *e, size_t n);
void lxm_agent_enc_free(struct lxm_agent_enc *e);

/* A decoder over one payload. Errors stick in err (-EBADMSG: too short, bad string, ...). */
struct lxm_agent_dec {
	const uint8_t *p; /* next byte */
	size_t left;	  /* bytes left */
	int err;	  /* the first error, sticky */
};

void lxm_agent_dec_init(struct lxm_agent_dec *d, const struct lxm_agent_frame *f);
uint16_t lxm_agent_dec_u16(struct lxm_agent_dec *d);
uint32_t lxm_agent_dec_u32(struct lxm_agent_dec *d);
uint64_t lxm_agent_dec_u64(struct lxm_agent_dec *d);
/* A malloc'ed NUL-terminated copy, NULL on error. */
char *lxm_agent_dec_str(struct lxm_agent_dec *d);
/* A malloc'ed NULL-terminated list, NULL on error. */
char **lxm_agent_dec_strv(struct lxm_agent_dec *d);
/* 0 when the payload was read exactly and without error, else -EBADMSG or the error. */
int lxm_agent_dec_end(struct lxm_agent_dec *d);
void lxm_agent_strv_free(char **v);

/* HELLO. */
struct lxm_agent_hello {
	uint32_t proto_min; /* oldest protocol version spoken */
	uint32_t proto_max; /* newest protocol version spoken */
	uint32_t nonce;	    /* the host's, echoed by the agent (0: unsolicited) */
	char *version;	    /* agent version ("" from the host) */
	char *kernel;	    /* uname -r of the guest ("" from the host) */
};
int lxm_agent_hello_encode(struct lxm_agent_enc *e, const struct lxm_agent_hello *h);
int lxm_agent_hello_decode(const struct lxm_agent_frame *f, struct lxm_agent_hello *h);
void lxm_agent_hello_clear(struct lxm_agent_hello *h);

/* EXEC. */
struct lxm_agent_exec_req {
	uint32_t flags; /* LXM_AGENT_EXEC_* */
	uint32_t uid;	/* user to run as */
	uint32_t gid;	/* group to run as */
	uint16_t rows;	/* pty size (0: leave it) */
	uint16_t cols;	/* pty size */
	char *cwd;	/* working directory, "" for / */
	char **argv;	/* the command, at least one element */
	char **env;	/* its whole environment, "K=V" */
};
int lxm_agent_exec_encode(struct lxm_agent_enc *e, uint32_t session,
			  const struct lxm_agent_exec_req *x);
int lxm_agent_exec_decode(const struct lxm_agent_frame *f, struct lxm_agent_exec_req *x);
void lxm_agent_exec_clear(struct lxm_agent_exec_req *x);

/* FILE (the answer to FILE_GET) and FILE_PUT. */
struct lxm_agent_file {
	uint32_t type;	/* enum lxm_agent_file_type */
	uint32_t mode;	/* permission bits (07777) */
	uint32_t uid;	/* owner */
	uint32_t gid;	/* group */
	uint32_t flags; /* FILE_PUT: LXM_AGENT_PUT_* */
	uint64_t size;	/* FILE: size in bytes of a regular file */
	char *path;	/* FILE_PUT: the path in the guest */
	char *target;	/* symlink target, "" otherwise */
};
int lxm_agent_file_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session,
			  const struct lxm_agent_file *fi);
int lxm_agent_file_decode(const struct lxm_agent_frame *f, struct lxm_agent_file *fi);
void lxm_agent_file_clear(struct lxm_agent_file *fi);

/* ERROR. */
int lxm_agent_error_encode(struct lxm_agent_enc *e, uint32_t session, int errnum, const char *msg);
int lxm_agent_error_decode(const struct lxm_agent_frame *f, int *ret_errnum, char **ret_msg);

/* Messages of fixed u32/u16 fields: STARTED, SIGNAL, WINDOW (a), EXIT (a, b), RESIZE (u16 a, b),
 * FILE_GET (a string), and empty ones. */
int lxm_agent_u32_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session, uint32_t v);
int lxm_agent_u32_decode(const struct lxm_agent_frame *f, uint32_t *v);
int lxm_agent_exit_encode(struct lxm_agent_enc *e, uint32_t session, uint32_t kind, uint32_t value);
int lxm_agent_exit_decode(const struct lxm_agent_frame *f, uint32_t *kind, uint32_t *value);
int lxm_agent_resize_encode(struct lxm_agent_enc *e, uint32_t session, uint16_t rows,
			    uint16_t cols);
int lxm_agent_resize_decode(const struct lxm_agent_frame *f, uint16_t *rows, uint16_t *cols);
int lxm_agent_str_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session, const char *s);
int lxm_agent_str_decode(const struct lxm_agent_frame *f, char **ret);
int lxm_agent_data_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session, const void *p,
			  size_t n);
int lxm_agent_empty_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session);

/* One direction pair of a session's flow control. */
struct lxm_agent_window {
	uint32_t send_credit; /* bytes this side may still send */
	uint32_t recv_held;   /* bytes received from the peer and not yet granted back */
	uint32_t recv_done;   /* of those, bytes consumed (to be granted back) */
};

void lxm_agent_window_init(struct lxm_agent_window *w);
/* How much of want may be sent now (also capped at one frame). */
size_t lxm_agent_window_sendable(const struct lxm_agent_window *w, size_t want);
/* Accounts n bytes sent (n <= sendable). */
void lxm_agent_window_sent(struct lxm_agent_window *w, size_t n);
/* A WINDOW from the peer: -EPROTO when it grants more than was sent. */
int lxm_agent_window_granted(struct lxm_agent_window *w, uint32_t n);
/* n windowed bytes arrived: -EPROTO when the peer overran its window. */
int lxm_agent_window_received(struct lxm_agent_window *w, size_t n);
/* n received bytes were consumed; returns how many to grant back now (0: wait for more, so
 * that small writes do not each cost a WINDOW frame). */
uint32_t lxm_agent_window_consumed(struct lxm_agent_window *w, size_t n);
