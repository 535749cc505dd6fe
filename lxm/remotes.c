/* The CLI's remotes (config file, names, connections) and streamed requests; see remotes.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/httpc.h"
#include "lib/json.h"
#include "lib/tls-client.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"

/* A JSON reply (an error, an operation) is small; a bigger one is not an API answer. */
#define JSON_REPLY_MAX (16u << 20)

static const char *const protocol_names[_LXM_REMOTE_PROTOCOL_MAX] = {
	[LXM_REMOTE_LXD] = "lxd",
	[LXM_REMOTE_SIMPLESTREAMS] = "simplestreams",
};

const char *lxm_remote_protocol_to_string(enum lxm_remote_protocol p)
{
	return p >= 0 && p < _LXM_REMOTE_PROTOCOL_MAX ? protocol_names[p] : NULL;
}

enum lxm_remote_protocol lxm_remote_protocol_from_string(const char *s)
{
	for (int i = 0; i < _LXM_REMOTE_PROTOCOL_MAX; i++)
		if (streq(s, protocol_names[i]))
			return (enum lxm_remote_protocol)i;
	return _LXM_REMOTE_PROTOCOL_INVALID;
}

/* ---- the set of remotes ---- */

static void remote_done(struct lxm_remote *r)
{
	free(r->name);
	free(r->addr);
	free(r->ca);
	*r = (struct lxm_remote){};
}

void lxm_remotes_free(struct lxm_remotes *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n; i++)
		remote_done(&rs->v[i]);
	free(rs->v);
	free(rs->path);
	free(rs->dir);
	free(rs->current);
	free(rs);
}

const struct lxm_remote *lxm_remotes_find(const struct lxm_remotes *rs, const char *name)
{
	for (size_t i = 0; i < rs->n; i++)
		if (streq(rs->v[i].name, name))
			return &rs->v[i];
	return NULL;
}

const char *lxm_remote_name_invalid_reason(const char *name)
{
	if (!name || !*name)
		return "a remote name must not be empty";
	if (strlen(name) > 63)
		return "a remote name is at most 63 characters long";
	if (!isalnum((unsigned char)name[0]))
		return "a remote name starts with a letter or a digit";
	for (const char *s = name; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s))
			return "a remote name may only contain letters, digits, '.', '_' and '-'";
	return NULL;
}

/* The address of a remote, checked for its protocol: lxd remotes are unix:///abs/path sockets
 * for now, simplestreams remotes https:// servers. */
static int check_addr(const char *name, const char *addr, enum lxm_remote_protocol protocol,
		      const char *ca, struct lxm_error **err)
{
	const char *path;

	if (protocol == LXM_REMOTE_SIMPLESTREAMS) {
		if (!startswith(addr, "https://") || !addr[strlen("https://")] ||
		    addr[strlen("https://")] == '/')
			return lxm_error_set(err, -EINVAL, 400,
					     "remote '%s': invalid address '%s': a simplestreams "
					     "server is an https://HOST[:PORT][/PATH] URL",
					     name, addr);
		return 0;
	}
	if (startswith(addr, "https://")) {
		_cleanup_free_ char *host = NULL, *port = NULL;

		if (lxm_tlsc_split_url(addr, "8443", &host, &port) < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "remote '%s': invalid address '%s': expected "
					     "https://HOST[:PORT]",
					     name, addr);
		if (ca)
			return lxm_error_set(err, -EINVAL, 400,
					     "remote '%s': an lxd remote is trusted by its pinned "
					     "certificate, not a CA file",
					     name);
		return 0;
	}
	if (startswith(addr, "http://"))
		return lxm_error_set(err, -EINVAL, 400,
				     "remote '%s': %s: plain HTTP is not supported (https:// or "
				     "unix://)",
				     name, addr);
	if (!startswith(addr, "unix://"))
		return lxm_error_set(err, -EINVAL, 400,
				     "remote '%s': invalid address '%s': expected "
				     "unix:///path/to/unix.socket",
				     name, addr);
	path = addr + strlen("unix://");
	if (path[0] != '/')
		return lxm_error_set(err, -EINVAL, 400,
				     "remote '%s': invalid address '%s': the socket path must be "
				     "absolute (unix:///path/to/unix.socket)",
				     name, addr);
	if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return lxm_error_set(err, -ENAMETOOLONG, 400,
				     "remote '%s': socket path %s is too long for a unix socket",
				     name, path);
	if (ca)
		return lxm_error_set(err, -EINVAL, 400,
				     "remote '%s': a CA file is for https servers, not for %s",
				     name, addr);
	return 0;
}

/* Appends a copy; the caller has checked the fields. */
static int append(struct lxm_remotes *rs, const char *name, const char *addr,
		  enum lxm_remote_protocol protocol, bool public, const char *ca, bool builtin)
{
	struct lxm_remote *v = realloc(rs->v, (rs->n + 1) * sizeof(*v)), *r;

	if (!v)
		return -ENOMEM;
	rs->v = v;
	r = &v[rs->n];
	*r = (struct lxm_remote){
		.name = strdup(name),
		.addr = strdup(addr),
		.protocol = protocol,
		.public = public,
		.ca = ca ? strdup(ca) : NULL,
		.builtin = builtin,
		.tls = protocol == LXM_REMOTE_LXD && startswith(addr, "https://"),
	};
	if (!r->name || !r->addr || (ca && !r->ca)) {
		remote_done(r);
		return -ENOMEM;
	}
	rs->n++;
	return 0;
}

static int remote_cmp(const void *a, const void *b)
{
	const struct lxm_remote *x = a, *y = b;

	if (x->builtin != y->builtin)
		return x->builtin ? -1 : 1;
	return lxm_natural_cmp(x->name, y->name);
}

static int config_path(char **ret)
{
	const char *conf = getenv("LXM_CONF"), *home = getenv("HOME");
	struct passwd *pw;

	if (conf && *conf)
		return asprintf(ret, "%s/config.yml", conf) < 0 ? -ENOMEM : 0;
	if (!home || !*home) {
		pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home || !*home)
		return -ENOENT;
	return asprintf(ret, "%s/.config/lxm/config.yml", home) < 0 ? -ENOMEM : 0;
}

/* The directory part of path (path has a '/'). */
static char *parent_dir(const char *path)
{
	const char *slash = strrchr(path, '/');

	return strndup(path, slash && slash != path ? (size_t)(slash - path) : 1);
}

/* One entry of the file's "remotes" map. */
static int load_remote(struct lxm_remotes *rs, const char *name, const json_t *v,
		       struct lxm_error **err)
{
	const char *addr, *proto = "lxd", *ca = NULL, *key, *reason;
	enum lxm_remote_protocol p;
	bool public = false;
	json_t *f;

	reason = lxm_remote_name_invalid_reason(name);
	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "remote '%s': %s", name, reason);
	if (streq(name, "local"))
		return lxm_error_set(err, -EINVAL, 400,
				     "remote 'local' is built in and cannot be redefined");
	if (!json_is_object(v))
		return lxm_error_set(err, -EINVAL, 400, "remote '%s': expected a map of fields",
				     name);
	json_object_foreach ((json_t *)v, key, f) {
		if (streq(key, "addr") && json_is_string(f))
			continue;
		if ((streq(key, "protocol") || streq(key, "ca") || streq(key, "auth_type")) &&
		    json_is_string(f))
			continue;
		if (streq(key, "public") && json_is_boolean(f))
			continue;
		return lxm_error_set(err, -EINVAL, 400,
				     "remote '%s': unknown or mistyped field '%s' (a remote has "
				     "addr, protocol, public and ca)",
				     name, key);
	}
	addr = json_string_value(json_object_get(v, "addr"));
	if (!addr)
		return lxm_error_set(err, -EINVAL, 400, "remote '%s': no addr", name);
	if (json_object_get(v, "protocol"))
		proto = json_string_value(json_object_get(v, "protocol"));
	ca = json_string_value(json_object_get(v, "ca"));
	public = json_is_true(json_object_get(v, "public"));
	p = lxm_remote_protocol_from_string(proto);
	if (p == _LXM_REMOTE_PROTOCOL_INVALID)
		return lxm_error_set(err, -EINVAL, 400,
				     "remote '%s': unknown protocol '%s' (lxd or simplestreams)",
				     name, proto);
	if (check_addr(name, addr, p, ca, err) < 0)
		return -EINVAL;
	if (append(rs, name, addr, p, public, ca, false) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return 0;
}

int lxm_remotes_load(struct lxm_remotes **ret, struct lxm_error **err)
{
	_cleanup_(lxm_remotes_freep) struct lxm_remotes *rs = calloc(1, sizeof(*rs));
	_cleanup_free_ char *text = NULL, *msg = NULL;
	_cleanup_json_ json_t *doc = NULL;
	const char *key;
	json_t *v, *map;
	size_t len;
	int r;

	if (!rs || append(rs, "local", "unix://", LXM_REMOTE_LXD, false, NULL, true) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "load remotes: out of memory");
	r = config_path(&rs->path);
	if (r < 0)
		return lxm_error_set(err, r, 500,
				     r == -ENOENT ? "load remotes: no home directory to keep "
						    "them in (set LXM_CONF)"
						  : "load remotes: out of memory");
	rs->dir = parent_dir(rs->path);
	rs->current = strdup("local");
	if (!rs->dir || !rs->current)
		return lxm_error_set(err, -ENOMEM, 500, "load remotes: out of memory");
	r = lxm_read_file(rs->path, &text, &len);
	if (r == -ENOENT) {
		*ret = TAKE_PTR(rs);
		return 0;
	}
	if (r < 0)
		return lxm_error_setx(err, r, 500, "load remotes: read %s", rs->path);
	r = lxm_yaml_to_json(text, len, &doc, &msg);
	if (r < 0)
		return lxm_error_set(err, r, 400, "load remotes: %s: invalid YAML: %s", rs->path,
				     msg ? msg : "out of memory");
	if (!json_is_null(doc) && !json_is_object(doc))
		return lxm_error_set(err, -EINVAL, 400, "load remotes: %s: expected a map",
				     rs->path);
	json_object_foreach (doc, key, v)
		if (!streq(key, "remotes") && !(streq(key, "default-remote") && json_is_string(v)))
			return lxm_error_set(err, -EINVAL, 400,
					     "load remotes: %s: unknown key '%s'", rs->path, key);
	map = json_object_get(doc, "remotes");
	if (map && !json_is_null(map) && !json_is_object(map))
		return lxm_error_set(err, -EINVAL, 400,
				     "load remotes: %s: 'remotes' must be a map of names",
				     rs->path);
	json_object_foreach (map, key, v) {
		r = load_remote(rs, key, v, err);
		if (r < 0)
			return lxm_error_prefix(err, "load remotes: %s", rs->path);
	}
	qsort(rs->v, rs->n, sizeof(*rs->v), remote_cmp);
	v = json_object_get(doc, "default-remote");
	if (v) {
		if (!lxm_remotes_find(rs, json_string_value(v)))
			return lxm_error_set(err, -EINVAL, 400,
					     "load remotes: %s: the default remote '%s' does not "
					     "exist",
					     rs->path, json_string_value(v));
		free(rs->current);
		rs->current = strdup(json_string_value(v));
		if (!rs->current)
			return lxm_error_set(err, -ENOMEM, 500, "load remotes: out of memory");
	}
	*ret = TAKE_PTR(rs);
	return 0;
}

int lxm_remotes_save(const struct lxm_remotes *rs, struct lxm_error **err)
{
	_cleanup_json_ json_t *doc = json_object(), *remotes = json_object();
	_cleanup_free_ char *text = NULL, *dir = NULL;
	int r;

	if (!doc || !remotes)
		return lxm_error_set(err, -ENOMEM, 500, "save remotes: out of memory");
	for (size_t i = 0; i < rs->n; i++) {
		const struct lxm_remote *x = &rs->v[i];
		json_t *o;

		if (x->builtin)
			continue;
		o = json_pack("{s:s, s:s, s:b}", "addr", x->addr, "protocol",
			      lxm_remote_protocol_to_string(x->protocol), "public", x->public);
		if (!o || (x->ca && json_object_set_new(o, "ca", json_string(x->ca)) < 0) ||
		    (x->tls && json_object_set_new(o, "auth_type", json_string("tls")) < 0) ||
		    json_object_set_new(remotes, x->name, o) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "save remotes: out of memory");
	}
	if (json_object_set(doc, "remotes", remotes) < 0 ||
	    (rs->current && !streq(rs->current, "local") &&
	     json_object_set_new(doc, "default-remote", json_string(rs->current)) < 0) ||
	    lxm_yaml_from_json(doc, &text) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "save remotes: out of memory");
	dir = parent_dir(rs->path);
	if (!dir)
		return lxm_error_set(err, -ENOMEM, 500, "save remotes: out of memory");
	r = lxm_mkdir_p(dir, 0700);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "save remotes: create %s", dir);
	r = lxm_write_file_atomic(rs->path, text, strlen(text), 0600);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "save remotes: write %s", rs->path);
	return 0;
}

int lxm_remotes_add(struct lxm_remotes *rs, const char *name, const char *addr,
		    enum lxm_remote_protocol protocol, bool public, const char *ca,
		    struct lxm_error **err)
{
	_cleanup_free_ char *ca_abs = NULL;
	const char *reason = lxm_remote_name_invalid_reason(name);
	int r;

	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "invalid remote name '%s': %s", name,
				     reason);
	if (lxm_remotes_find(rs, name))
		return lxm_error_set(err, -EEXIST, 409, "remote '%s' already exists", name);
	r = check_addr(name, addr, protocol, ca, err);
	if (r < 0)
		return r;
	if (ca) {
		ca_abs = realpath(ca, NULL);
		if (!ca_abs || access(ca_abs, R_OK) < 0)
			return lxm_error_setx(err, -errno, 400, "remote '%s': CA file %s", name,
					      ca);
	}
	/* An image server serves everyone: nothing to authenticate with. */
	if (protocol == LXM_REMOTE_SIMPLESTREAMS)
	public = true;
	if (append(rs, name, addr, protocol, public, ca_abs, false) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "add remote '%s': out of memory", name);
	qsort(rs->v, rs->n, sizeof(*rs->v), remote_cmp);
	return 0;
}

static struct lxm_remote *find_mutable(struct lxm_remotes *rs, const char *name, const char *what,
				       struct lxm_error **err)
{
	struct lxm_remote *r = (struct lxm_remote *)lxm_remotes_find(rs, name);

	if (!r) {
		lxm_error_set(err, -ENOENT, 404, "%s remote '%s': no such remote", what, name);
		return NULL;
	}
	if (r->builtin) {
		lxm_error_set(err, -EPERM, 400, "%s remote '%s': it is built in", what, name);
		return NULL;
	}
	return r;
}

/* Replaces *p by a copy of s; *p stays as it was when out of memory. */
static int set_string(char **p, const char *s)
{
	char *copy = strdup(s);

	if (!copy)
		return -ENOMEM;
	free(*p);
	*p = copy;
	return 0;
}

int lxm_remotes_remove(struct lxm_remotes *rs, const char *name, struct lxm_error **err)
{
	struct lxm_remote *r = find_mutable(rs, name, "remove", err);
	size_t i;

	if (!r)
		return -(*err)->errnum;
	i = (size_t)(r - rs->v);
	if (r->tls) {
		_cleanup_free_ char *crt = lxm_remotes_server_cert_path(rs, name);

		if (crt && unlink(crt) < 0 && errno != ENOENT)
			return lxm_error_setx(err, -errno, 500, "remove remote '%s': remove %s",
					      name, crt);
	}
	if (streq(rs->current, name) && set_string(&rs->current, "local") < 0)
		return lxm_error_set(err, -ENOMEM, 500, "remove remote '%s': out of memory", name);
	remote_done(r);
	memmove(&rs->v[i], &rs->v[i + 1], (rs->n - i - 1) * sizeof(*rs->v));
	rs->n--;
	return 0;
}

int lxm_remotes_rename(struct lxm_remotes *rs, const char *from, const char *to,
		       struct lxm_error **err)
{
	struct lxm_remote *r = find_mutable(rs, from, "rename", err);
	const char *reason = lxm_remote_name_invalid_reason(to);
	char *name;

	if (!r)
		return -(*err)->errnum;
	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "invalid remote name '%s': %s", to, reason);
	if (lxm_remotes_find(rs, to))
		return lxm_error_set(err, -EEXIST, 409, "rename remote '%s': '%s' already exists",
				     from, to);
	name = strdup(to);
	if (!name)
		return lxm_error_set(err, -ENOMEM, 500, "rename remote '%s': out of memory", from);
	if (r->tls) {
		_cleanup_free_ char *a = lxm_remotes_server_cert_path(rs, from),
				    *b = lxm_remotes_server_cert_path(rs, to);

		if (!a || !b) {
			free(name);
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		}
		if (rename(a, b) < 0 && errno != ENOENT) {
			free(name);
			return lxm_error_setx(err, -errno, 500, "rename remote '%s': rename %s",
					      from, a);
		}
	}
	if (streq(rs->current, from) && set_string(&rs->current, to) < 0) {
		free(name);
		return lxm_error_set(err, -ENOMEM, 500, "rename remote '%s': out of memory", from);
	}
	free(r->name);
	r->name = name;
	qsort(rs->v, rs->n, sizeof(*rs->v), remote_cmp);
	return 0;
}

int lxm_remotes_split(const struct lxm_remotes *rs, const char *arg,
		      const struct lxm_remote **ret_remote, char **ret_name, struct lxm_error **err)
{
	const char *colon = strchr(arg, ':');
	_cleanup_free_ char *rname = NULL;
	const struct lxm_remote *r;
	char *name;

	if (!colon) {
		r = lxm_remotes_find(rs, rs->current ? rs->current : "local");
		name = strdup(arg);
	} else {
		rname = strndup(arg, (size_t)(colon - arg));
		if (!rname)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		r = lxm_remotes_find(rs, rname);
		if (!r)
			return lxm_error_set(err, -ENOENT, 404,
					     "'%s': unknown remote '%s' (see 'lxm remote list')",
					     arg, rname);
		name = strdup(colon + 1);
	}
	if (!name)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*ret_remote = r;
	*ret_name = name;
	return 0;
}

int lxm_remote_connect(const struct lxm_remote *r, struct lxm_client **ret, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	int k;

	if (r->protocol == LXM_REMOTE_SIMPLESTREAMS)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "remote '%s' is a simplestreams image server: it offers "
				     "images to launch or copy, not LXD's API",
				     r->name);
	if (r->builtin) {
		k = lxm_client_new(&c, err);
		if (k >= 0)
			k = lxm_client_server(c, NULL, err);
		if (k < 0)
			return k;
		*ret = TAKE_PTR(c);
		return 0;
	}
	if (r->tls) {
		const struct lxm_remotes *rs = lxm_remotes_get(err);
		_cleanup_free_ char *pin = NULL;

		if (!rs)
			return -(*err)->errnum;
		pin = lxm_remotes_server_cert_path(rs, r->name);
		if (!pin)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		if (access(pin, R_OK) < 0)
			return lxm_error_setx(err, -errno, 400,
					      "remote '%s': its pinned server certificate %s",
					      r->name, pin);
		k = lxm_remote_client_tls(rs, r->addr, pin, &c, err);
	} else {
		k = lxm_client_new_at(r->addr + strlen("unix://"), &c, err);
	}
	if (k >= 0)
		k = lxm_client_server(c, NULL, err);
	if (k < 0)
		return lxm_error_prefix(err, "remote '%s'", r->name);
	*ret = TAKE_PTR(c);
	return 0;
}

int lxm_remotes_set_url(struct lxm_remotes *rs, const char *name, const char *addr,
			struct lxm_error **err)
{
	struct lxm_remote *r = find_mutable(rs, name, "set-url of", err);
	int k;

	if (!r)
		return -(*err)->errnum;
	k = check_addr(name, addr, r->protocol, r->ca, err);
	if (k < 0)
		return k;
	if (r->protocol == LXM_REMOTE_LXD && r->tls != startswith(addr, "https://"))
		return lxm_error_set(err, -EINVAL, 400,
				     "remote '%s': set-url cannot change between unix:// and "
				     "https://; remove and add the remote instead",
				     name);
	if (set_string(&r->addr, addr) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "set-url of remote '%s': out of memory",
				     name);
	return 0;
}

int lxm_remotes_switch(struct lxm_remotes *rs, const char *name, struct lxm_error **err)
{
	const struct lxm_remote *r = lxm_remotes_find(rs, name);

	if (!r)
		return lxm_error_set(err, -ENOENT, 404, "switch to remote '%s': no such remote",
				     name);
	if (r->protocol != LXM_REMOTE_LXD)
		return lxm_error_set(err, -EINVAL, 400,
				     "switch to remote '%s': it is an image server, not an lxd "
				     "remote",
				     name);
	if (set_string(&rs->current, name) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "switch to remote '%s': out of memory",
				     name);
	return 0;
}

char *lxm_remotes_server_cert_path(const struct lxm_remotes *rs, const char *name)
{
	char *p;

	return asprintf(&p, "%s/servercerts/%s.crt", rs->dir, name) < 0 ? NULL : p;
}

int lxm_remotes_client_cert(const struct lxm_remotes *rs, char **ret_cert, char **ret_key,
			    struct lxm_error **err)
{
	const char *step;
	bool created;
	int r;

	r = lxm_tlsc_client_cert_ensure(rs->dir, ret_cert, ret_key, &created, &step);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "client certificate in %s: %s", rs->dir, step);
	/* Said on a terminal only: scripts read stderr for errors. */
	if (created && isatty(STDERR_FILENO))
		fprintf(stderr, "Generated a client certificate: %s/client.crt\n", rs->dir);
	return 0;
}

int lxm_remote_client_tls(const struct lxm_remotes *rs, const char *url, const char *pin_file,
			  struct lxm_client **ret, struct lxm_error **err)
{
	_cleanup_free_ char *cert = NULL, *key = NULL, *host = NULL, *port = NULL;
	_cleanup_(lxm_tlsc_freep) struct lxm_tlsc *tls = NULL;
	int r;

	r = lxm_tlsc_split_url(url, "8443", &host, &port);
	if (r < 0)
		return lxm_error_set(err, r, 400,
				     "invalid address '%s': expected https://HOST[:PORT]", url);
	r = lxm_remotes_client_cert(rs, &cert, &key, err);
	if (r < 0)
		return r;
	r = lxm_tlsc_new(cert, key, pin_file, &tls);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "TLS setup with %s and %s%s%s", cert, key,
				      pin_file ? " and " : "", pin_file ? pin_file : "");
	r = lxm_client_new_tls(url, host, port, tls, ret, err);
	if (r < 0)
		return r;
	TAKE_PTR(tls);
	return 0;
}

static struct lxm_remotes *loaded;

static void free_loaded(void)
{
	lxm_remotes_free(loaded);
}

const struct lxm_remotes *lxm_remotes_get(struct lxm_error **err)
{
	if (!loaded) {
		if (lxm_remotes_load(&loaded, err) < 0)
			return NULL;
		atexit(free_loaded);
	}
	return loaded;
}

/* The remote lxm_cli_target() chose, or NULL for the default one. */
static const struct lxm_remote *target;

int lxm_cli_target(const char *arg, const char **ret_rest, struct lxm_error **err)
{
	const struct lxm_remotes *rs;
	const char *colon = arg ? strchr(arg, ':') : NULL;
	_cleanup_free_ char *rname = NULL;
	const struct lxm_remote *r;

	*ret_rest = arg;
	if (!colon)
		return 0;
	rname = strndup(arg, (size_t)(colon - arg));
	if (!rname)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	/* A ':' after a '/' or a '=' is part of a path, a snapshot or a KEY=VALUE: no remote. */
	if (lxm_remote_name_invalid_reason(rname))
		return 0;
	rs = lxm_remotes_get(err);
	if (!rs)
		return -(*err)->errnum;
	r = lxm_remotes_find(rs, rname);
	if (!r)
		return lxm_error_set(err, -ENOENT, 404,
				     "'%s': unknown remote '%s' (see 'lxm remote list')", arg,
				     rname);
	target = r;
	*ret_rest = colon + 1;
	return 0;
}

/* The default remote into *ret, or NULL for "local" when there is no config to read. */
static int default_remote(const struct lxm_remote **ret, struct lxm_error **err)
{
	const struct lxm_remotes *rs;

	*ret = NULL;
	/* Without a config file (or a home), only "local" exists: no file is looked for, not
	 * even in the passwd entry's home. */
	if (!getenv("LXM_CONF") && !getenv("HOME"))
		return 0;
	rs = lxm_remotes_get(err);
	if (!rs)
		return -(*err)->errnum;
	*ret = lxm_remotes_find(rs, rs->current);
	return 0;
}

/* The name of a target remote (NULL: the default one). */
static const char *target_name(const struct lxm_remote *t)
{
	_cleanup_error_ struct lxm_error *ignored = NULL;

	/* A config that cannot be read gives "local" here; lxm_cli_connect_target() reports it. */
	if (!t)
		(void)default_remote(&t, &ignored);
	return t ? t->name : "local";
}

/* Whether two targets are one remote: "local:" and no prefix are when "local" is the default. */
static bool same_remote(const struct lxm_remote *a, const struct lxm_remote *b)
{
	return a == b || streq(target_name(a), target_name(b));
}

/* The argument that chose the remote for lxm_cli_target_arg(), or NULL before the first. */
static const char *target_arg0;

int lxm_cli_target_arg(char **arg, struct lxm_error **err)
{
	const struct lxm_remote *prev = target;
	const char *rest;
	int r;

	target = NULL;
	r = lxm_cli_target(*arg, &rest, err);
	if (r < 0)
		return r;
	if (target_arg0 && !same_remote(prev, target))
		return lxm_error_set(err, -EINVAL, 400,
				     "'%s' and '%s' are on different remotes: one remote per "
				     "command",
				     target_arg0, *arg);
	if (!target_arg0)
		target_arg0 = *arg;
	*arg = (char *)rest;
	return 0;
}

int lxm_cli_target_all(char **names, int n, struct lxm_error **err)
{
	const struct lxm_remote *first = NULL;
	const char *rest;
	int r;

	for (int i = 0; i < n; i++) {
		target = NULL;
		r = lxm_cli_target(names[i], &rest, err);
		if (r < 0)
			return r;
		if (i > 0 && !same_remote(target, first))
			return lxm_error_set(
				err, -EINVAL, 400,
				"'%s' and '%s' are on different remotes: one remote per "
				"command",
				names[0], names[i]);
		first = target;
		names[i] = (char *)rest;
	}
	return 0;
}

int lxm_cli_connect_target(struct lxm_client **ret, struct lxm_error **err)
{
	const struct lxm_remote *r = target;
	int k;

	if (!r && default_remote(&r, err) < 0)
		return -(*err)->errnum;
	if (!r || r->builtin)
		return 0;
	k = lxm_remote_connect(r, ret, err);
	return k < 0 ? k : 1;
}

/* ---- streamed requests ---- */

struct xfer {
	struct lxm_stream *s;	   /* the caller's request */
	struct lxm_httpc_buf json; /* a JSON (or unexpected) reply, kept */
	int cb_err;		   /* a callback's failure, or 0 */
};

static void xfer_done(struct xfer *x)
{
	lxm_httpc_buf_done(&x->json);
}

static bool is_json(const char *content_type)
{
	return content_type && strncasecmp(content_type, "application/json", 16) == 0;
}

static int on_header(const char *name, const char *value, void *ud)
{
	struct lxm_stream *s = ((struct xfer *)ud)->s;

	if (strcasecmp(name, "Content-Type") == 0)
		return lxm_httpc_keep_header(&s->content_type, value);
	if (strcasecmp(name, "Content-Disposition") == 0)
		return lxm_httpc_keep_header(&s->content_disposition, value);
	if (strcasecmp(name, "Content-Length") == 0)
		s->content_length = strtoll(value, NULL, 10);
	return 0;
}

static int on_headers(int status, void *ud)
{
	struct xfer *x = ud;
	struct lxm_stream *s = x->s;
	int k;

	s->status = status;
	s->raw = s->status == 200 && !is_json(s->content_type) && s->sink;
	if (s->on_headers) {
		k = s->on_headers(s, s->ud);
		if (k < 0) {
			x->cb_err = k;
			return k;
		}
	}
	return 0;
}

static int on_body(const char *data, size_t len, void *ud)
{
	struct xfer *x = ud;
	int k;

	if (x->s->raw)
		k = x->s->sink(data, len, x->s->ud);
	else
		k = lxm_httpc_buf_append(data, len, &x->json);
	if (k < 0)
		x->cb_err = k;
	return k;
}

static ssize_t on_read(char *buf, size_t len, void *ud)
{
	struct xfer *x = ud;
	ssize_t n = x->s->read(buf, len, x->s->ud);

	if (n < 0)
		x->cb_err = (int)n;
	return n;
}

int lxm_stream_request(struct lxm_client *c, const char *method, const char *path,
		       struct lxm_stream *s, struct lxm_error **err)
{
	_cleanup_(lxm_httpc_freep) struct lxm_httpc *h = NULL;
	_cleanup_json_ json_t *env = NULL;
	const char *socket = lxm_client_socket(c), *type, *op;
	_cleanup_(xfer_done) struct xfer x = { .s = s, .json.max = JSON_REPLY_MAX };
	struct lxm_httpc_result res;
	int r;

	s->status = 0;
	s->content_type = s->content_disposition = s->operation = NULL;
	s->content_length = -1;
	s->raw = false;
	s->metadata = NULL;
	/* A connection of its own: a stream may run in a thread beside c's other requests. */
	r = lxm_client_new_httpc(c, &h);
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s %s: %s", method, path,
				     r == -ENAMETOOLONG ? "the socket path is too long"
							: "out of memory");
	r = lxm_httpc_request(h,
			      &(struct lxm_httpc_request){
				      .method = method,
				      .target = path,
				      .headers = s->headers,
				      .read = s->read ? on_read : NULL,
				      .body_size = s->upload_size,
				      .on_header = on_header,
				      .on_headers = on_headers,
				      .on_body = on_body,
				      .ud = &x,
			      },
			      &res);
	if (r < 0) {
		/* A server that refused the request before reading all of its body has said
		 * why, and that reply was read: it beats "send failure". */
		int k = s->status >= 400 && x.json.data
				? lxm_client_parse_reply(socket, s->status, x.json.data, x.json.len,
							 &env, err)
				: 0;

		if (k < 0)
			return k;
		if (x.cb_err)
			return lxm_error_setx(err, x.cb_err, 500, "%s %s", method, path);
		return lxm_error_setx(err, r, 502, "%s %s on %s failed", method, path, socket);
	}
	if (s->raw)
		return 0;
	r = lxm_client_parse_reply(socket, s->status, x.json.data, x.json.len, &env, err);
	if (r < 0)
		return r;
	type = json_string_value(json_object_get(env, "type"));
	op = json_string_value(json_object_get(env, "operation"));
	if (streq(type, "async")) {
		if (!op || !(s->operation = strdup(op)))
			return lxm_error_set(err, -EPROTO, 502,
					     "%s %s: an async reply without an operation", method,
					     path);
	}
	s->metadata = json_incref(json_object_get(env, "metadata"));
	if (!s->metadata)
		s->metadata = json_null();
	return 0;
}

void lxm_stream_done(struct lxm_stream *s)
{
	if (!s)
		return;
	free(s->content_type);
	free(s->content_disposition);
	free(s->operation);
	json_decref(s->metadata);
	s->content_type = s->content_disposition = s->operation = NULL;
	s->metadata = NULL;
}
