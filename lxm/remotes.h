/* The CLI's remotes: the built-in "local" (lxmd's unix socket, found as LXM_SOCKET or LXM_DIR
 * say) and those added with `lxm remote add`, kept in $LXM_CONF/config.yml (LXM_CONF is a
 * directory, like LXD's LXD_CONF; default ~/.config/lxm). A remote speaks LXD's API ("lxd": for
 * now only another lxmd's unix socket, unix:///path/unix.socket) or is a read-only image server
 * ("simplestreams", https://...). Commands name things on a remote as REMOTE:NAME.
 *
 * Also here: lxm_stream_request(), a request whose bodies are streamed both ways (image
 * uploads, exports), for any lxd remote's client. */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/error.h"
#include "lxm/client.h"

enum lxm_remote_protocol {
	LXM_REMOTE_LXD,		  /* LXD's REST API (lxmd, LXD, Incus) */
	LXM_REMOTE_SIMPLESTREAMS, /* a simplestreams image server, read-only */
	_LXM_REMOTE_PROTOCOL_MAX,
	_LXM_REMOTE_PROTOCOL_INVALID = -EINVAL,
};

const char *lxm_remote_protocol_to_string(enum lxm_remote_protocol p);
enum lxm_remote_protocol lxm_remote_protocol_from_string(const char *s);

struct lxm_remote {
	char *name; /* as typed before the ':' */
	char *addr; /* "unix://" (local), "unix:///path" or "https://host[:port]" */
	enum lxm_remote_protocol protocol; /* how to talk to it */
	bool public;			   /* reachable without credentials (image servers) */
	char *ca;			   /* a PEM file to trust for an https server, or NULL */
	bool builtin;			   /* "local": neither removed nor renamed */
	bool tls;			   /* an https lxd remote: client certificate auth */
};

struct lxm_remotes {
	char *path;	      /* the config file, $LXM_CONF/config.yml */
	char *dir;	      /* its directory (client.crt, servercerts/) */
	char *current;	      /* the default remote for names without "REMOTE:" */
	struct lxm_remote *v; /* "local" first, then the file's remotes sorted by name */
	size_t n;	      /* entries in v */
};

/* Reads the config file (a missing file means only "local"). Errors name the file and the
 * remote that is wrong. */
int lxm_remotes_load(struct lxm_remotes **ret, struct lxm_error **err);
void lxm_remotes_free(struct lxm_remotes *rs);
/* Writes the remotes but "local" back, atomically, mode 0600, creating the directory. */
int lxm_remotes_save(const struct lxm_remotes *rs, struct lxm_error **err);

static inline void lxm_remotes_freep(struct lxm_remotes **rs)
{
	lxm_remotes_free(*rs);
}
#define _cleanup_remotes_ __attribute__((cleanup(lxm_remotes_freep)))

const struct lxm_remote *lxm_remotes_find(const struct lxm_remotes *rs, const char *name);

/* Remote names: 1-63 characters of letters, digits, '.', '_' and '-', starting with a letter or
 * a digit (so no ':' and no '/'). NULL when valid, else a static reason. */
const char *lxm_remote_name_invalid_reason(const char *name);

/* Checks name and address (unix:///abs/path for lxd, https://host for simplestreams; https lxd
 * remotes are refused for now) and adds the remote. ca may be NULL. 409 when the name exists. */
int lxm_remotes_add(struct lxm_remotes *rs, const char *name, const char *addr,
		    enum lxm_remote_protocol protocol, bool public, const char *ca,
		    struct lxm_error **err);
int lxm_remotes_remove(struct lxm_remotes *rs, const char *name, struct lxm_error **err);
int lxm_remotes_rename(struct lxm_remotes *rs, const char *from, const char *to,
		       struct lxm_error **err);

/* Changes the address of a remote (checked as for lxm_remotes_add()). */
int lxm_remotes_set_url(struct lxm_remotes *rs, const char *name, const char *addr,
			struct lxm_error **err);
/* Makes name the default remote ("switch"). */
int lxm_remotes_switch(struct lxm_remotes *rs, const char *name, struct lxm_error **err);
/* DIR/servercerts/NAME.crt: the pinned certificate of an https remote. */
char *lxm_remotes_server_cert_path(const struct lxm_remotes *rs, const char *name);
/* The client's certificate and key (made on first use, saying so on stderr). */
int lxm_remotes_client_cert(const struct lxm_remotes *rs, char **ret_cert, char **ret_key,
			    struct lxm_error **err);

/* Splits "REMOTE:NAME" (or "REMOTE:") into the remote and a malloc'ed NAME (maybe ""); an
 * argument without ':' is NAME on the default remote. An unknown REMOTE is an error naming it. */
int lxm_remotes_split(const struct lxm_remotes *rs, const char *arg,
		      const struct lxm_remote **ret_remote, char **ret_name,
		      struct lxm_error **err);

/* A client on an lxd remote that has answered GET /1.0: "local", a unix:// remote, or an
 * https:// one whose certificate is the pinned one (see lxm_remote_connect_tls()). A
 * simplestreams remote is -EOPNOTSUPP with a message saying what can be done with it. */
int lxm_remote_connect(const struct lxm_remote *r, struct lxm_client **ret, struct lxm_error **err);
/* A client for an https lxd server: presents the client certificate, checks the server's
 * against pin_file (NULL: accepts any; lxm_client_tls(c)->peer_fp/peer_pem say what it was).
 * Nothing is sent yet. */
int lxm_remote_client_tls(const struct lxm_remotes *rs, const char *url, const char *pin_file,
			  struct lxm_client **ret, struct lxm_error **err);
/* The remotes' file, loaded once per command: for lxm_cli_connect(). */
const struct lxm_remotes *lxm_remotes_get(struct lxm_error **err);

/* A request whose bodies are streamed: the request body comes piece by piece from read(), a 200
 * reply that is not JSON goes piece by piece to sink(); JSON replies are decoded as LXD's
 * envelope (errors become err, as in lxm_client_request()). Nothing is held whole in memory. */
struct lxm_stream {
	const char *const *headers; /* in: extra "Name: value" request headers, NULL-terminated */
	/* in: fills buf with the next piece of the request body and returns its length, 0 at the
	 * end, or -errno to fail the request; NULL for a request without a body */
	ssize_t (*read)(char *buf, size_t len, void *ud);
	int64_t upload_size; /* in: the body's length, -1 to send it chunked */
	/* in: called when the reply's headers are complete (status and headers below are set);
	 * -errno aborts the request. May be NULL. */
	int (*on_headers)(struct lxm_stream *s, void *ud);
	/* in: receives the body of a 200 reply that is not JSON; -errno aborts. May be NULL
	 * (such a body is then an error). */
	int (*sink)(const char *data, size_t len, void *ud);
	void *ud; /* in: for the callbacks */

	long status;		   /* out: HTTP status */
	char *content_type;	   /* out: the reply's Content-Type, or NULL */
	char *content_disposition; /* out: the reply's Content-Disposition, or NULL */
	int64_t content_length;	   /* out: the reply's Content-Length, -1 when absent */
	bool raw;		   /* out: the reply's body went to sink */
	json_t *metadata;	   /* out: a JSON reply's metadata (JSON null when none) */
	char *operation;	   /* out: "/1.0/operations/<id>" of an async reply, or NULL */
};

int lxm_stream_request(struct lxm_client *c, const char *method, const char *path,
		       struct lxm_stream *s, struct lxm_error **err);
/* Frees the outputs. */
void lxm_stream_done(struct lxm_stream *s);

/* For commands on instances and servers: when arg is "REMOTE:REST", makes REMOTE the remote that
 * lxm_cli_connect() connects to and sets *ret_rest to REST (inside arg); otherwise *ret_rest is
 * arg. An unknown REMOTE is an error naming it. */
int lxm_cli_target(const char *arg, const char **ret_rest, struct lxm_error **err);
/* The same for a command's NAME arguments: each "REMOTE:NAME" becomes NAME (the pointer in
 * names is moved past the colon); they must all be on one remote. */
int lxm_cli_target_all(char **names, int n, struct lxm_error **err);
/* The same for one of a command's arguments, in place: *arg moves past "REMOTE:". An argument on
 * another remote than an earlier one of the same command is refused ("... are on different
 * remotes"); one without a prefix is on the default remote. */
int lxm_cli_target_arg(char **arg, struct lxm_error **err);
/* lxm_cli_connect()'s remote part: 0 when the target (lxm_cli_target(), else the default
 * remote) is "local", 1 with *ret connected to it otherwise, or -errno. */
int lxm_cli_connect_target(struct lxm_client **ret, struct lxm_error **err);
