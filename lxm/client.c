#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/httpc.h"
#include "lib/json.h"
#include "lib/tls-client.h"
#include "lib/util.h"
#include "lxm/client.h"

/* Replies bigger than this are not an API answer (a listing of thousands of instances is a few
 * MiB); the cap keeps a misbehaving peer from filling memory. */
#define REPLY_MAX (256u << 20)

/* How long to wait for the daemon to accept: a live lxmd accepts at once, so a long wait means a
 * wedged peer, and the user is better served by an error than by a hang. */
#define CONNECT_TIMEOUT_S 10

struct lxm_client {
	char *socket;			 /* unix socket path, or the https:// URL of a remote */
	struct lxm_tlsc *tls;		 /* TLS for an https remote (owned), or NULL */
	char *host;			 /* the https remote's host, or NULL */
	char *port;			 /* the https remote's port, or NULL */
	struct lxm_httpc *http;		 /* the connection, kept between requests; NULL until the
					    first request */
	json_t *server;			 /* GET /1.0, once fetched */
	lxm_client_progress_fn progress; /* told about running operations, or NULL */
	void *progress_ud;		 /* for progress */
};

void lxm_client_set_progress(struct lxm_client *c, lxm_client_progress_fn fn, void *ud)
{
	c->progress = fn;
	c->progress_ud = ud;
}

/* A reply kept in memory, with the header the client looks at. */
struct reply {
	struct lxm_httpc_buf body; /* the body, up to REPLY_MAX */
	char *etag;		   /* the ETag header, or NULL */
};

static void reply_done(struct reply *r)
{
	lxm_httpc_buf_done(&r->body);
	free(r->etag);
}

void lxm_client_response_done(struct lxm_client_response *r)
{
	if (!r)
		return;
	free(r->etag);
	free(r->operation);
	r->etag = r->operation = NULL;
}

int lxm_client_socket_path(char **ret)
{
	const char *s = getenv("LXM_SOCKET"), *dir = getenv("LXM_DIR");
	char *p;

	if (s && *s)
		p = strdup(s);
	else if (asprintf(&p, "%s/unix.socket", dir && *dir ? dir : LXM_DEFAULT_DIR) < 0)
		p = NULL;
	if (!p)
		return -ENOMEM;
	*ret = p;
	return 0;
}

int lxm_client_new(struct lxm_client **ret, struct lxm_error **err)
{
	struct lxm_client *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return lxm_error_set(err, -ENOMEM, 500, "create API client: out of memory");
	r = lxm_client_socket_path(&c->socket);
	if (r < 0) {
		free(c);
		return lxm_error_set(err, r, 500, "create API client: out of memory");
	}
	*ret = c;
	return 0;
}

int lxm_client_new_at(const char *socket, struct lxm_client **ret, struct lxm_error **err)
{
	struct lxm_client *c;
	char *path = strdup(socket);
	int r;

	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "create API client: out of memory");
	r = lxm_client_new(&c, err);
	if (r < 0) {
		free(path);
		return r;
	}
	free(c->socket);
	c->socket = path;
	*ret = c;
	return 0;
}

int lxm_client_new_tls(const char *url, const char *host, const char *port, struct lxm_tlsc *tls,
		       struct lxm_client **ret, struct lxm_error **err)
{
	struct lxm_client *c;
	int r;

	r = lxm_client_new_at(url, &c, err);
	if (r < 0)
		return r;
	c->host = strdup(host);
	c->port = strdup(port);
	if (!c->host || !c->port) {
		lxm_client_free(c);
		return lxm_error_set(err, -ENOMEM, 500, "create API client: out of memory");
	}
	c->tls = tls;
	*ret = c;
	return 0;
}

struct lxm_tlsc *lxm_client_tls(const struct lxm_client *c)
{
	return c->tls;
}

int lxm_client_new_httpc(struct lxm_client *c, struct lxm_httpc **ret)
{
	if (c->tls)
		return lxm_httpc_new_tls(c->host, c->port, c->tls, ret);
	return lxm_httpc_new(c->socket, ret);
}

int lxm_client_open_stream(struct lxm_client *c, int *ret_fd, SSL **ret_ssl, struct lxm_error **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	enum lxm_tlsc_fail why;
	int r;

	*ret_ssl = NULL;
	if (c->tls) {
		r = lxm_tlsc_connect(c->tls, c->host, c->port, CONNECT_TIMEOUT_S * 1000, ret_fd,
				     ret_ssl, &why);
		if (r < 0)
			return lxm_error_setx(err, r, 502, "connect to %s%s%s", c->socket,
					      c->tls->detail ? ": " : "",
					      c->tls->detail ? c->tls->detail : "");
		return 0;
	}
	if (strlen(c->socket) >= sizeof(sa.sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 400, "socket path %s is too long",
				     c->socket);
	strcpy(sa.sun_path, c->socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return lxm_error_setx(err, -errno, 500, "connect to %s", c->socket);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

void lxm_client_free(struct lxm_client *c)
{
	if (!c)
		return;
	lxm_httpc_free(c->http);
	lxm_tlsc_free(c->tls);
	free(c->host);
	free(c->port);
	json_decref(c->server);
	free(c->socket);
	free(c);
}

const char *lxm_client_socket(const struct lxm_client *c)
{
	return c->socket;
}

char *lxm_url_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || strchr("-._~", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

/* ---- error messages for a socket that does not answer like lxmd ---- */

static int err_not_running(const char *socket, struct lxm_error **err)
{
	return lxm_error_set(err, -ECONNREFUSED, 503,
			     "lxmd is not running: cannot connect to %s (start it with 'lxmd', or "
			     "set LXM_DIR)",
			     socket);
}

static int err_permission(const char *socket, struct lxm_error **err)
{
	return lxm_error_set(
		err, -EACCES, 403,
		"permission denied on %s: run lxm as root (or as a user allowed on the "
		"socket)",
		socket);
}

/* A short, printable excerpt of what the peer sent, for the "not an endpoint" message. */
static void snippet(const char *data, size_t len, char out[static 80])
{
	size_t n = 0;

	for (size_t i = 0; i < len && n < 60; i++)
		out[n++] = isprint((unsigned char)data[i]) ? data[i] : '.';
	out[n] = '\0';
	if (len > 60)
		strcat(out, "...");
}

static int err_not_endpoint(const char *socket, struct lxm_error **err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int err_not_endpoint(const char *socket, struct lxm_error **err, const char *fmt, ...)
{
	_cleanup_free_ char *what = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&what, fmt, ap);
	va_end(ap);
	if (r < 0)
		what = NULL;
	return lxm_error_set(err, -EPROTO, 502,
			     "%s is not an lxmd/LXD API endpoint (unexpected reply: %s)", socket,
			     what ? what : "?");
}

/* Connecting failed with connect()'s os_errno: say why in the user's terms. stat() separates a
 * missing socket from a path that is no socket at all, and catches a parent directory the user
 * may not search. */
static int err_connect(struct lxm_client *c, int os_errno, struct lxm_error **err)
{
	struct stat st;

	if (stat(c->socket, &st) < 0) {
		if (errno == EACCES)
			return err_permission(c->socket, err);
		if (errno == ENOENT || errno == ENOTDIR)
			return err_not_running(c->socket, err);
		return lxm_error_setx(err, -errno, 503, "cannot connect to %s", c->socket);
	}
	if (!S_ISSOCK(st.st_mode))
		return lxm_error_set(
			err, -ENOTSOCK, 503,
			"lxmd is not running: %s is not a socket (start it with 'lxmd', "
			"or set LXM_DIR)",
			c->socket);
	switch (os_errno) {
	case EACCES:
	case EPERM:
		return err_permission(c->socket, err);
	case ECONNREFUSED:
	case ENOENT:
		return err_not_running(c->socket, err);
	default:
		return lxm_error_setx(err, -os_errno, 503, "cannot connect to %s", c->socket);
	}
}

/* A request failed on its way (r is its -errno): the user's version of what went wrong. */
static int err_transfer(struct lxm_client *c, int r, const struct lxm_httpc_result *res,
			struct lxm_error **err)
{
	switch (res->fail) {
	case LXM_HTTPC_FAIL_CONNECT:
		if (c->tls)
			return lxm_error_setx(err, r, 503, "cannot connect to %s", c->socket);
		return err_connect(c, -r, err);
	case LXM_HTTPC_FAIL_TLS:
		return lxm_error_set(err, -EPROTO, 502, "TLS with %s failed: %s", c->socket,
				     res->detail ? res->detail : "handshake failed");
	case LXM_HTTPC_FAIL_PIN:
		return lxm_error_set(err, -EKEYREJECTED, 502,
				     "%s presented certificate %s, not the pinned one (%.12s...): "
				     "refusing to talk to it (if the server's certificate changed, "
				     "remove and add the remote again)",
				     c->socket, c->tls->peer_fp ? c->tls->peer_fp : "?",
				     c->tls->pin_fp ? c->tls->pin_fp : "?");
	case LXM_HTTPC_FAIL_CONNECT_TIMEOUT:
		return lxm_error_set(err, -ETIMEDOUT, 504,
				     "%s did not accept the connection in %ds (is lxmd stuck?)",
				     c->socket, CONNECT_TIMEOUT_S);
	case LXM_HTTPC_FAIL_NOT_HTTP:
		return err_not_endpoint(c->socket, err, "%s", res->detail ? res->detail : "?");
	case LXM_HTTPC_FAIL_NO_REPLY:
		return err_not_endpoint(c->socket, err, "connection closed without a reply");
	case LXM_HTTPC_FAIL_TRUNCATED:
		return lxm_error_set(err, -EIO, 502, "request to %s failed: %s", c->socket,
				     res->detail ? res->detail : "the reply was cut short");
	case LXM_HTTPC_FAIL_CALLBACK:
		if (r == -EFBIG)
			return err_not_endpoint(c->socket, err, "more than %u MiB of data",
						REPLY_MAX >> 20);
		return lxm_error_setx(err, r, 500, "request to %s failed", c->socket);
	case LXM_HTTPC_FAIL_SEND:
		return lxm_error_setx(err, r, 502, "request to %s failed: send", c->socket);
	case LXM_HTTPC_FAIL_RECV:
		return lxm_error_setx(err, r, 502, "request to %s failed: receive", c->socket);
	default:
		return lxm_error_setx(err, r, 502, "request to %s failed", c->socket);
	}
}

/* ---- reply decoding ---- */

static int errno_for_status(long status)
{
	switch (status) {
	case 400:
		return EINVAL;
	case 403:
		return EACCES;
	case 404:
		return ENOENT;
	case 409:
		return EEXIST;
	case 501:
		return EOPNOTSUPP;
	case 503:
		return EAGAIN;
	default:
		return EIO;
	}
}

int lxm_client_parse_reply(const char *socket, long http_status, const char *body, size_t len,
			   json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *env = NULL;
	const char *type, *msg;
	char excerpt[80];
	json_int_t code;

	snippet(body, len, excerpt);
	if (len == 0)
		return err_not_endpoint(socket, err, "HTTP %ld with an empty body", http_status);
	env = json_loadb(body, len, 0, NULL);
	if (!env)
		return err_not_endpoint(socket, err, "HTTP %ld, \"%s\"", http_status, excerpt);
	type = json_string_value(json_object_get(env, "type"));
	if (!type || !(streq(type, "sync") || streq(type, "async") || streq(type, "error")))
		return err_not_endpoint(socket, err, "HTTP %ld, \"%s\"", http_status, excerpt);

	if (streq(type, "error")) {
		msg = json_string_value(json_object_get(env, "error"));
		code = json_integer_value(json_object_get(env, "error_code"));
		if (code < 100 || code > 599)
			code = http_status >= 400 ? http_status : 500;
		if (!msg || !*msg)
			return lxm_error_set(err, -errno_for_status((long)code), (int)code,
					     "the server failed with HTTP %d and no message",
					     (int)code);
		return lxm_error_set(err, -errno_for_status((long)code), (int)code, "%s", msg);
	}
	*ret = TAKE_PTR(env);
	return 0;
}

/* ---- transport ---- */

static int reply_on_header(const char *name, const char *value, void *ud)
{
	struct reply *r = ud;

	return strcasecmp(name, "ETag") == 0 ? lxm_httpc_keep_header(&r->etag, value) : 0;
}

static int reply_on_body(const char *data, size_t len, void *ud)
{
	return lxm_httpc_buf_append(data, len, &((struct reply *)ud)->body);
}

/* Sends req on c's connection (made at the first request). On failure res->fail says which
 * step failed; err_transfer() words it. */
static int perform(struct lxm_client *c, const struct lxm_httpc_request *req,
		   struct lxm_httpc_result *res)
{
	int r;

	*res = (struct lxm_httpc_result){};
	if (!c->http) {
		r = lxm_client_new_httpc(c, &c->http);
		if (r < 0) {
			res->fail = LXM_HTTPC_FAIL_CONNECT;
			return r;
		}
		lxm_httpc_set_connect_timeout(c->http, CONNECT_TIMEOUT_S * 1000);
	}
	return lxm_httpc_request(c->http, req, res);
}

int lxm_client_request(struct lxm_client *c, const char *method, const char *path,
		       const json_t *body, json_t **ret_metadata, struct lxm_client_response *opt,
		       struct lxm_error **err)
{
	_cleanup_free_ char *payload = NULL, *if_match = NULL;
	_cleanup_(reply_done) struct reply reply = { .body.max = REPLY_MAX };
	_cleanup_json_ json_t *env = NULL;
	struct lxm_httpc_result res;
	const char *headers[3], *type, *op;
	size_t n = 0;
	int r;

	if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "socket path %s is too long for a unix socket (at most %zu "
				     "bytes; set LXM_SOCKET to a shorter path)",
				     c->socket, sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
	if (body) {
		payload = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!payload)
			return lxm_error_set(err, -ENOMEM, 500, "%s %s: cannot encode the body",
					     method, path);
		headers[n++] = "Content-Type: application/json";
	}
	if (opt && opt->if_match) {
		if (asprintf(&if_match, "If-Match: %s", opt->if_match) < 0) {
			if_match = NULL;
			return lxm_error_set(err, -ENOMEM, 500, "%s %s: out of memory", method,
					     path);
		}
		headers[n++] = if_match;
	}
	headers[n] = NULL;

	r = perform(c,
		    &(struct lxm_httpc_request){
			    .method = method,
			    .target = path,
			    .headers = headers,
			    .body = payload,
			    .body_len = payload ? strlen(payload) : 0,
			    .on_header = reply_on_header,
			    .on_body = reply_on_body,
			    .ud = &reply,
		    },
		    &res);
	if (r < 0)
		return err_transfer(c, r, &res, err);

	r = lxm_client_parse_reply(c->socket, res.status, reply.body.data, reply.body.len, &env,
				   err);
	if (r < 0)
		return r;

	type = json_string_value(json_object_get(env, "type"));
	op = json_string_value(json_object_get(env, "operation"));
	if (streq(type, "async") && (!op || !*op))
		return err_not_endpoint(c->socket, err, "an async reply without an operation");
	if (opt) {
		opt->http_status = res.status;
		opt->etag = TAKE_PTR(reply.etag);
		opt->operation = streq(type, "async") ? strdup(op) : NULL;
	}
	if (ret_metadata) {
		json_t *md = json_object_get(env, "metadata");

		*ret_metadata = json_incref(md ? md : json_null());
	}
	return 0;
}

int lxm_client_get_raw(struct lxm_client *c, const char *path, char **ret, size_t *ret_len,
		       struct lxm_error **err)
{
	_cleanup_(reply_done) struct reply reply = { .body.max = REPLY_MAX };
	_cleanup_json_ json_t *env = NULL;
	struct lxm_httpc_result res;
	int r;

	if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "socket path %s is too long for a unix socket", c->socket);
	r = perform(c,
		    &(struct lxm_httpc_request){
			    .method = "GET",
			    .target = path,
			    .on_body = reply_on_body,
			    .ud = &reply,
		    },
		    &res);
	if (r < 0)
		return err_transfer(c, r, &res, err);
	if (res.status != 200) {
		r = lxm_client_parse_reply(c->socket, res.status, reply.body.data, reply.body.len,
					   &env, err);
		if (r < 0)
			return r;
		return err_not_endpoint(c->socket, err, "HTTP %d without an error", res.status);
	}
	*ret = reply.body.data ? TAKE_PTR(reply.body.data) : strdup("");
	if (!*ret)
		return lxm_error_set(err, -ENOMEM, 500, "GET %s: out of memory", path);
	if (ret_len)
		*ret_len = reply.body.len;
	return 0;
}

int lxm_client_wait_operation(struct lxm_client *c, const char *op, json_t **ret_op,
			      struct lxm_error **err)
{
	_cleanup_free_ char *id = NULL, *path = NULL;
	_cleanup_json_ json_t *md = NULL;
	const char *slash, *status, *msg;
	json_int_t code;
	int r;

	/* Accept "/1.0/operations/<id>" (the async reply's URL) as well as the bare id. */
	slash = strrchr(op, '/');
	id = lxm_url_escape(slash ? slash + 1 : op);
	/* With a progress callback, waits of a quarter second show the operation as it goes. */
	if (!id || asprintf(&path, "/1.0/operations/%s/wait?timeout=%s", id,
			    c->progress ? "0.25" : "-1") < 0)
		return lxm_error_set(err, -ENOMEM, 500, "wait for operation %s: out of memory", op);
	for (;;) {
		r = lxm_client_request(c, "GET", path, NULL, &md, NULL, err);
		if (r < 0 || !c->progress)
			break;
		code = json_integer_value(json_object_get(md, "status_code"));
		if (code == 0 || code >= 200)
			break;
		c->progress(md, c->progress_ud);
		json_decref(TAKE_PTR(md));
	}
	if (c->progress)
		c->progress(NULL, c->progress_ud);
	if (r < 0)
		return lxm_error_prefix(err, "wait for operation %s", slash ? slash + 1 : op);

	status = json_string_value(json_object_get(md, "status"));
	code = json_integer_value(json_object_get(md, "status_code"));
	msg = json_string_value(json_object_get(md, "err"));
	if (code >= 400 || streq(status, "Failure") || streq(status, "Cancelled")) {
		if (msg && *msg)
			return lxm_error_set(err, code == 401 ? -ECANCELED : -EIO, 500, "%s", msg);
		return lxm_error_set(err, code == 401 ? -ECANCELED : -EIO, 500, "operation %s: %s",
				     slash ? slash + 1 : op, status ? status : "failed");
	}
	if (code != 0 && code < 200)
		return lxm_error_set(err, -ETIMEDOUT, 504,
				     "operation %s is still %s after waiting for it",
				     slash ? slash + 1 : op, status ? status : "running");
	if (ret_op)
		*ret_op = TAKE_PTR(md);
	return 0;
}

int lxm_client_do(struct lxm_client *c, const char *method, const char *path, const json_t *body,
		  json_t **ret, struct lxm_error **err)
{
	struct lxm_client_response resp = {};
	_cleanup_json_ json_t *md = NULL;
	int r;

	r = lxm_client_request(c, method, path, body, &md, &resp, err);
	if (r >= 0 && resp.operation) {
		json_decref(TAKE_PTR(md));
		r = lxm_client_wait_operation(c, resp.operation, &md, err);
	}
	lxm_client_response_done(&resp);
	if (r < 0)
		return r;
	if (ret)
		*ret = TAKE_PTR(md);
	return 0;
}

int lxm_client_server(struct lxm_client *c, const json_t **ret, struct lxm_error **err)
{
	json_t *md = NULL;
	int r;

	if (!c->server) {
		r = lxm_client_request(c, "GET", "/1.0", NULL, &md, NULL, err);
		if (r < 0)
			return r;
		if (!json_is_object(md)) {
			json_decref(md);
			return err_not_endpoint(c->socket, err, "GET /1.0 gave no server object");
		}
		c->server = md;
	}
	if (ret)
		*ret = c->server;
	return 0;
}

bool lxm_client_has_extension(struct lxm_client *c, const char *name)
{
	json_t *exts = json_object_get(c->server, "api_extensions"), *e;
	size_t i;

	json_array_foreach (exts, i, e)
		if (streq(json_string_value(e), name))
			return true;
	return false;
}

/* ---- files: streamed bodies ---- */

struct file_xfer {
	struct lxm_client_file *f; /* the caller's request */
	int status;		   /* the reply's HTTP status, once its headers are in */
	struct lxm_httpc_buf kept; /* a reply body that does not go to the sink */
	int sink_err;		   /* the sink's failure, or 0 */
	int read_err;		   /* the upload's read failure, or 0 */
};

void lxm_client_file_done(struct lxm_client_file *f)
{
	if (!f)
		return;
	free(f->type);
	json_decref(f->metadata);
	free(f->body);
	f->type = f->body = NULL;
	f->metadata = NULL;
}

static int file_on_header(const char *name, const char *value, void *ud)
{
	struct lxm_client_file *f = ((struct file_xfer *)ud)->f;

	if (strcasecmp(name, "X-LXD-type") == 0)
		return lxm_httpc_keep_header(&f->type, value);
	if (strcasecmp(name, "X-LXD-mode") == 0) {
		f->mode = strtol(value, NULL, 8);
	} else if (strcasecmp(name, "X-LXD-uid") == 0) {
		f->uid = strtol(value, NULL, 10);
	} else if (strcasecmp(name, "X-LXD-gid") == 0) {
		f->gid = strtol(value, NULL, 10);
	}
	return 0;
}

static int file_on_headers(int status, void *ud)
{
	((struct file_xfer *)ud)->status = status;
	return 0;
}

static int file_on_body(const char *data, size_t len, void *ud)
{
	struct file_xfer *x = ud;
	int k;

	if (x->status == 200 && x->f->sink && streq(x->f->type, "file")) {
		k = x->f->sink(data, len, x->f->sink_ud);
		if (k < 0)
			x->sink_err = k;
		return k < 0 ? k : 0;
	}
	return lxm_httpc_buf_append(data, len, &x->kept);
}

static ssize_t file_on_read(char *buf, size_t len, void *ud)
{
	struct file_xfer *x = ud;
	ssize_t n;

	do
		n = read(x->f->upload_fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		x->read_err = -errno;
	return n < 0 ? -errno : n;
}

int lxm_client_file_request(struct lxm_client *c, const char *method, const char *path,
			    struct lxm_client_file *f, struct lxm_error **err)
{
	_cleanup_free_ const char **headers = NULL;
	_cleanup_json_ json_t *env = NULL;
	struct file_xfer x = { .f = f, .kept.max = REPLY_MAX };
	struct lxm_httpc_request req = {
		.method = method,
		.target = path,
		.on_header = file_on_header,
		.on_headers = file_on_headers,
		.on_body = file_on_body,
		.ud = &x,
	};
	struct lxm_httpc_result res;
	size_t n = 0;
	int r;

	f->type = f->body = NULL;
	f->metadata = NULL;
	f->mode = f->uid = f->gid = -1;
	if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "socket path %s is too long for a unix socket", c->socket);
	while (f->headers && f->headers[n])
		n++;
	headers = calloc(n + 2, sizeof(*headers));
	if (!headers)
		return lxm_error_set(err, -ENOMEM, 500, "%s %s: out of memory", method, path);
	if (n)
		memcpy(headers, f->headers, n * sizeof(*headers));
	if (streq(method, "POST")) {
		headers[n] = "Content-Type: application/octet-stream";
		if (f->upload_fd >= 0) {
			/* An upload read piece by piece: never the whole file in memory. */
			req.read = file_on_read;
			req.body_size = f->upload_size;
		} else {
			req.body = f->upload_data ? f->upload_data : "";
			req.body_len = f->upload_data ? f->upload_len : 0;
		}
	}
	req.headers = headers;
	r = perform(c, &req, &res);
	if (r < 0) {
		lxm_httpc_buf_done(&x.kept);
		if (x.sink_err)
			return lxm_error_setx(err, x.sink_err, 500, "write");
		if (x.read_err)
			return lxm_error_setx(err, x.read_err, 500, "read");
		return err_transfer(c, r, &res, err);
	}
	if (res.status == 200 && f->type && !streq(f->type, "directory")) {
		f->body = x.kept.data ? x.kept.data : strdup("");
		f->body_len = x.kept.len;
		return f->body ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	r = lxm_client_parse_reply(c->socket, res.status, x.kept.data, x.kept.len, &env, err);
	lxm_httpc_buf_done(&x.kept);
	if (r < 0)
		return r;
	f->metadata = json_incref(json_object_get(env, "metadata"));
	return 0;
}
