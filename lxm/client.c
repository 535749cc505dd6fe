#include "config.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/client.h"

/* Replies bigger than this are not an API answer (a listing of thousands of instances is a few
 * MiB); the cap keeps a misbehaving peer from filling memory. */
#define REPLY_MAX (256u << 20)

/* How long to wait for the daemon to accept: a live lxmd accepts at once, so a long wait means a
 * wedged peer, and the user is better served by an error than by a hang. */
#define CONNECT_TIMEOUT_S 10L

struct lxm_client {
	CURL *curl;	/* one easy handle, so its connection is reused between requests */
	char *socket;	/* unix socket path */
	json_t *server; /* GET /1.0, once fetched */
	char errbuf[CURL_ERROR_SIZE];	 /* curl's detail for the last failure */
	lxm_client_progress_fn progress; /* told about running operations, or NULL */
	void *progress_ud;		 /* for progress */
};

void lxm_client_set_progress(struct lxm_client *c, lxm_client_progress_fn fn, void *ud)
{
	c->progress = fn;
	c->progress_ud = ud;
}

struct buf {
	char *data;
	size_t len;
	bool overflow; /* the peer sent more than REPLY_MAX */
};

static void buf_done(struct buf *b)
{
	free(b->data);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct curl_slist *, curl_slist_free_all)

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

	/* Once per process; the CLI is single-threaded, as curl_global_init() requires. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return lxm_error_set(err, -ENOMEM, 500, "initialise libcurl: out of memory");
	c = calloc(1, sizeof(*c));
	if (!c)
		return lxm_error_set(err, -ENOMEM, 500, "create API client: out of memory");
	r = lxm_client_socket_path(&c->socket);
	if (r < 0) {
		free(c);
		return lxm_error_set(err, r, 500, "create API client: out of memory");
	}
	c->curl = curl_easy_init();
	if (!c->curl) {
		lxm_client_free(c);
		return lxm_error_set(err, -ENOMEM, 500, "create API client: curl_easy_init failed");
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

void lxm_client_free(struct lxm_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
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

/* Connecting failed: say why in the user's terms. curl's OS errno is the connect() error; stat()
 * separates a missing socket from a path that is no socket at all, and catches a parent
 * directory the user may not search. */
static int err_connect(struct lxm_client *c, struct lxm_error **err)
{
	long os_errno = 0;
	struct stat st;

	curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
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
	case 0:
		return lxm_error_set(err, -ECONNREFUSED, 503, "cannot connect to %s: %s", c->socket,
				     c->errbuf[0] ? c->errbuf : "connection failed");
	default:
		return lxm_error_setx(err, -(int)os_errno, 503, "cannot connect to %s", c->socket);
	}
}

static int err_transfer(struct lxm_client *c, CURLcode code, struct lxm_error **err)
{
	const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(code);

	switch (code) {
	case CURLE_COULDNT_CONNECT:
		return err_connect(c, err);
	case CURLE_OPERATION_TIMEDOUT:
		return lxm_error_set(err, -ETIMEDOUT, 504,
				     "%s did not accept the connection in %lds (is lxmd stuck?)",
				     c->socket, CONNECT_TIMEOUT_S);
	case CURLE_UNSUPPORTED_PROTOCOL:
		/* curl calls a reply without a status line HTTP/0.9: the peer speaks no HTTP. */
		return err_not_endpoint(c->socket, err, "not HTTP");
	case CURLE_WEIRD_SERVER_REPLY:
		return err_not_endpoint(c->socket, err, "%s", detail);
	case CURLE_GOT_NOTHING:
		return err_not_endpoint(c->socket, err, "connection closed without a reply");
	case CURLE_WRITE_ERROR:
		return err_not_endpoint(c->socket, err, "more than %u MiB of data",
					REPLY_MAX >> 20);
	default:
		return lxm_error_set(err, -EIO, 502, "request to %s failed: %s", c->socket, detail);
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

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;
	size_t n = size * nmemb;
	char *grown;

	if (b->len + n > REPLY_MAX) {
		b->overflow = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	grown = realloc(b->data, b->len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + b->len, data, n);
	b->data = grown;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	char **etag = userdata;
	size_t n = size * nmemb, vlen;
	const char *v;

	if (n < 5 || strncasecmp(data, "ETag:", 5) != 0)
		return n;
	v = data + 5;
	vlen = n - 5;
	while (vlen && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	free(*etag);
	*etag = strndup(v, vlen);
	return n;
}

static int add_header(struct curl_slist **list, const char *header)
{
	struct curl_slist *l = curl_slist_append(*list, header);

	if (!l)
		return -ENOMEM;
	*list = l;
	return 0;
}

static int setup_request(struct lxm_client *c, const char *method, const char *url,
			 const char *payload, struct curl_slist *headers, struct buf *reply,
			 char **etag)
{
	CURL *h = c->curl;
	bool ok = true;

	curl_easy_reset(h);
	c->errbuf[0] = '\0';
	ok &= curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_USERAGENT, "lxm/" PACKAGE_VERSION) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_WRITEDATA, reply) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_HEADERDATA, etag) == CURLE_OK;
	if (payload) {
		ok &= curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload) == CURLE_OK;
		ok &= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload)) == CURLE_OK;
	}
	if (!streq(method, payload ? "POST" : "GET"))
		ok &= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
	return ok ? 0 : -ENOMEM;
}

int lxm_client_request(struct lxm_client *c, const char *method, const char *path,
		       const json_t *body, json_t **ret_metadata, struct lxm_client_response *opt,
		       struct lxm_error **err)
{
	_cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
	_cleanup_free_ char *url = NULL, *payload = NULL, *if_match = NULL, *etag = NULL;
	_cleanup_(buf_done) struct buf reply = {};
	_cleanup_json_ json_t *env = NULL;
	const char *type, *op;
	long http_status = 0;
	CURLcode code;
	int r;

	if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "socket path %s is too long for a unix socket (at most %zu "
				     "bytes; set LXM_SOCKET to a shorter path)",
				     c->socket, sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
	if (asprintf(&url, "http://lxm%s", path) < 0) {
		url = NULL;
		return lxm_error_set(err, -ENOMEM, 500, "%s %s: out of memory", method, path);
	}
	if (body) {
		payload = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!payload)
			return lxm_error_set(err, -ENOMEM, 500, "%s %s: cannot encode the body",
					     method, path);
	}

	/* No "Expect: 100-continue" round trip: bodies are small and lxmd answers at once. */
	r = add_header(&headers, "Expect:");
	if (r >= 0 && payload)
		r = add_header(&headers, "Content-Type: application/json");
	if (r >= 0 && opt && opt->if_match) {
		if (asprintf(&if_match, "If-Match: %s", opt->if_match) < 0) {
			if_match = NULL;
			r = -ENOMEM;
		} else {
			r = add_header(&headers, if_match);
		}
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s %s: out of memory", method, path);

	r = setup_request(c, method, url, payload, headers, &reply, &etag);
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s %s: cannot set up the request", method, path);
	code = curl_easy_perform(c->curl);
	if (code != CURLE_OK)
		return err_transfer(c, reply.overflow ? CURLE_WRITE_ERROR : code, err);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http_status);

	r = lxm_client_parse_reply(c->socket, http_status, reply.data ? reply.data : "", reply.len,
				   &env, err);
	if (r < 0)
		return r;

	type = json_string_value(json_object_get(env, "type"));
	op = json_string_value(json_object_get(env, "operation"));
	if (streq(type, "async") && (!op || !*op))
		return err_not_endpoint(c->socket, err, "an async reply without an operation");
	if (opt) {
		opt->http_status = http_status;
		opt->etag = TAKE_PTR(etag);
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
	_cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
	_cleanup_free_ char *url = NULL, *etag = NULL;
	_cleanup_(buf_done) struct buf reply = {};
	_cleanup_json_ json_t *env = NULL;
	long http_status = 0;
	CURLcode code;
	int r;

	if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "socket path %s is too long for a unix socket", c->socket);
	if (asprintf(&url, "http://lxm%s", path) < 0) {
		url = NULL;
		return lxm_error_set(err, -ENOMEM, 500, "GET %s: out of memory", path);
	}
	r = add_header(&headers, "Expect:");
	if (r >= 0)
		r = setup_request(c, "GET", url, NULL, headers, &reply, &etag);
	if (r < 0)
		return lxm_error_set(err, r, 500, "GET %s: cannot set up the request", path);
	code = curl_easy_perform(c->curl);
	if (code != CURLE_OK)
		return err_transfer(c, reply.overflow ? CURLE_WRITE_ERROR : code, err);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http_status);
	if (http_status != 200) {
		r = lxm_client_parse_reply(c->socket, http_status, reply.data ? reply.data : "",
					   reply.len, &env, err);
		if (r < 0)
			return r;
		return err_not_endpoint(c->socket, err, "HTTP %ld without an error", http_status);
	}
	*ret = reply.data ? TAKE_PTR(reply.data) : strdup("");
	if (!*ret)
		return lxm_error_set(err, -ENOMEM, 500, "GET %s: out of memory", path);
	if (ret_len)
		*ret_len = reply.len;
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
	CURL *curl;		   /* for the status inside callbacks */
	struct buf kept;	   /* a reply body that does not go to the sink */
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

static size_t file_on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct lxm_client_file *f = ((struct file_xfer *)userdata)->f;
	size_t n = size * nmemb, nlen;
	_cleanup_free_ char *line = strndup(data, n);
	char *colon, *v;

	if (!line)
		return 0;
	line[strcspn(line, "\r\n")] = '\0';
	/* A new status line (after "100 Continue"): what came before was not the reply. */
	if (startswith(line, "HTTP/")) {
		free(f->type);
		f->type = NULL;
		f->mode = f->uid = f->gid = -1;
		return n;
	}
	colon = strchr(line, ':');
	if (!colon)
		return n;
	nlen = (size_t)(colon - line);
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	if (nlen == 10 && strncasecmp(line, "X-LXD-type", nlen) == 0) {
		free(f->type);
		f->type = strdup(v);
	} else if (nlen == 10 && strncasecmp(line, "X-LXD-mode", nlen) == 0) {
		f->mode = strtol(v, NULL, 8);
	} else if (nlen == 9 && strncasecmp(line, "X-LXD-uid", nlen) == 0) {
		f->uid = strtol(v, NULL, 10);
	} else if (nlen == 9 && strncasecmp(line, "X-LXD-gid", nlen) == 0) {
		f->gid = strtol(v, NULL, 10);
	}
	return n;
}

static size_t file_on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct file_xfer *x = userdata;
	size_t n = size * nmemb;
	long status = 0;
	int k;

	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status == 200 && x->f->sink && streq(x->f->type, "file")) {
		k = x->f->sink(data, n, x->f->sink_ud);
		if (k < 0) {
			x->sink_err = k;
			return 0;
		}
		return n;
	}
	return on_body(data, size, nmemb, &x->kept);
}

static size_t file_on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct file_xfer *x = userdata;
	ssize_t n;

	do
		n = read(x->f->upload_fd, buf, size * nitems);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		x->read_err = -errno;
		return CURL_READFUNC_ABORT;
	}
	return (size_t)n;
}

int lxm_client_file_request(struct lxm_client *c, const char *method, const char *path,
			    struct lxm_client_file *f, struct lxm_error **err)
{
	_cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
	_cleanup_free_ char *url = NULL, *etag = NULL;
	_cleanup_json_ json_t *env = NULL;
	struct file_xfer x = { .f = f, .curl = c->curl };
	CURL *h = c->curl;
	long http_status = 0;
	bool ok = true;
	CURLcode code;
	int r;

	f->type = f->body = NULL;
	f->metadata = NULL;
	f->mode = f->uid = f->gid = -1;
	if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 500,
				     "socket path %s is too long for a unix socket", c->socket);
	if (asprintf(&url, "http://lxm%s", path) < 0) {
		url = NULL;
		return lxm_error_set(err, -ENOMEM, 500, "%s %s: out of memory", method, path);
	}
	/* No "Expect: 100-continue" round trip: lxmd refuses early on its own. */
	r = add_header(&headers, "Expect:");
	for (size_t i = 0; r >= 0 && f->headers && f->headers[i]; i++)
		r = add_header(&headers, f->headers[i]);
	if (r >= 0 && streq(method, "POST"))
		r = add_header(&headers, "Content-Type: application/octet-stream");
	if (r >= 0 && streq(method, "POST") && f->upload_fd >= 0 && f->upload_size < 0)
		r = add_header(&headers, "Transfer-Encoding: chunked");
	if (r >= 0)
		r = setup_request(c, method, url, NULL, headers, &x.kept, &etag);
	if (r < 0) {
		buf_done(&x.kept);
		return lxm_error_set(err, r, 500, "%s %s: cannot set up the request", method, path);
	}
	ok &= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, file_on_body) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_WRITEDATA, &x) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, file_on_header) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_HEADERDATA, &x) == CURLE_OK;
	if (streq(method, "POST") && f->upload_fd >= 0) {
		/* An upload read piece by piece: never the whole file in memory. */
		ok &= curl_easy_setopt(h, CURLOPT_UPLOAD, 1L) == CURLE_OK;
		ok &= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST") == CURLE_OK;
		ok &= curl_easy_setopt(h, CURLOPT_READFUNCTION, file_on_read) == CURLE_OK;
		ok &= curl_easy_setopt(h, CURLOPT_READDATA, &x) == CURLE_OK;
		ok &= curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)f->upload_size) ==
		      CURLE_OK;
	} else if (streq(method, "POST")) {
		ok &= curl_easy_setopt(h, CURLOPT_POSTFIELDS,
				       f->upload_data ? f->upload_data : "") == CURLE_OK;
		ok &= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				       (curl_off_t)(f->upload_data ? f->upload_len : 0)) ==
		      CURLE_OK;
	}
	if (!ok) {
		buf_done(&x.kept);
		return lxm_error_set(err, -ENOMEM, 500, "%s %s: cannot set up the request", method,
				     path);
	}
	/* The handle keeps pointers into this frame until the next request resets it. */
	code = curl_easy_perform(h);
	if (code != CURLE_OK) {
		buf_done(&x.kept);
		if (x.sink_err)
			return lxm_error_setx(err, x.sink_err, 500, "write");
		if (x.read_err)
			return lxm_error_setx(err, x.read_err, 500, "read");
		return err_transfer(c, x.kept.overflow ? CURLE_WRITE_ERROR : code, err);
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http_status);
	if (http_status == 200 && f->type && !streq(f->type, "directory")) {
		f->body = x.kept.data ? x.kept.data : strdup("");
		f->body_len = x.kept.len;
		return f->body ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	r = lxm_client_parse_reply(c->socket, http_status, x.kept.data ? x.kept.data : "",
				   x.kept.len, &env, err);
	buf_done(&x.kept);
	if (r < 0)
		return r;
	f->metadata = json_incref(json_object_get(env, "metadata"));
	return 0;
}
