/* lxm image list|info|show|edit|delete|alias|import|export|copy|build and lxm publish. IMAGE is
 * [REMOTE:]ALIAS or [REMOTE:]FINGERPRINT-PREFIX; aliases win, as in lxc. Image files are
 * streamed both ways (never whole in memory); progress is shown when stdout is a terminal. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"
#include "lxm/image-transfer.h"
#include "lxm/remotes.h"

#define LXM_FP_LEN 64

/* ---- small helpers ---- */

static const char *alias_invalid_reason(const char *name)
{
	if (!*name)
		return "an alias must not be empty";
	if (strlen(name) > 255)
		return "an alias is at most 255 characters long";
	if (strchr(name, ':'))
		return "an alias must not contain ':' (it separates a remote from the name)";
	if (name[0] == '/' || name[strlen(name) - 1] == '/')
		return "an alias must not start or end with '/'";
	if (streq(name, ".") || streq(name, ".."))
		return "an alias must not be '.' or '..'";
	for (const char *s = name; *s; s++)
		if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
			return "an alias must not contain whitespace or control characters";
	return NULL;
}

static int check_alias(const char *cmd, const char *name, struct lxm_error **err)
{
	const char *reason = alias_invalid_reason(name);

	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "%s: invalid alias '%s': %s", cmd, name,
				     reason);
	return 0;
}

static void size_mib(json_int_t size, char buf[static 32])
{
	snprintf(buf, 32, "%.2fMiB", (double)size / 1024.0 / 1024.0);
}

/* lxc's UPLOAD DATE: "May 1, 2024 at 10:00am (UTC)". Empty for no or Go's zero time. */
static void upload_date(const char *rfc3339, char buf[static 64])
{
	struct tm tm = {};
	const char *rest;
	time_t t;

	buf[0] = '\0';
	if (!rfc3339 || !(rest = strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm)) ||
	    tm.tm_year + 1900 <= 1)
		return;
	t = timegm(&tm);
	if (*rest == '.')
		for (rest++; isdigit((unsigned char)*rest); rest++)
			;
	if (*rest == '+' || *rest == '-') {
		int h = 0, m = 0;

		if (sscanf(rest + 1, "%2d:%2d", &h, &m) == 2)
			t -= (*rest == '-' ? -1 : 1) * (h * 3600 + m * 60);
	}
	gmtime_r(&t, &tm);
	strftime(buf, 64, "%b %-d, %Y at %-I:%M%P (UTC)", &tm);
}

/* ---- remotes and images ---- */

/* An argument [REMOTE:]NAME with its remote's client. */
struct target {
	struct lxm_remotes *rs;		 /* the remotes, loaded */
	const struct lxm_remote *remote; /* the argument's remote, in rs */
	char *name;			 /* what follows the ':' */
	struct lxm_client *c;		 /* connected (lxd remotes) */
};

static void target_done(struct target *t)
{
	lxm_client_free(t->c);
	free(t->name);
	lxm_remotes_free(t->rs);
	*t = (struct target){};
}

/* Splits arg and connects to its remote (an lxd one: the commands that accept a simplestreams
 * remote look at t->remote before connecting). */
static int target_open(const char *arg, bool connect, struct target *t, struct lxm_error **err)
{
	int r;

	if (!t->rs) {
		r = lxm_remotes_load(&t->rs, err);
		if (r < 0)
			return r;
	}
	free(t->name);
	t->name = NULL;
	r = lxm_remotes_split(t->rs, arg, &t->remote, &t->name, err);
	if (r < 0 || !connect)
		return r;
	return lxm_remote_connect(t->remote, &t->c, err);
}

/* The full fingerprint IMAGE names on a remote: an alias, else a unique fingerprint prefix. */
static int resolve_image(struct lxm_client *c, const char *remote, const char *name, char **ret_fp,
			 struct lxm_error **err)
{
	_cleanup_error_ struct lxm_error *e = NULL;
	_cleanup_json_ json_t *alias = NULL, *list = NULL;
	_cleanup_free_ char *path = NULL, *found = NULL;
	const char *target;
	json_t *v;
	size_t i;
	int r;

	if (!*name)
		return lxm_error_set(err, -EINVAL, 400, "no image named after '%s:'", remote);
	path = lxm_cli_path("/1.0/images/aliases/", name);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "GET", path, NULL, &alias, NULL, &e);
	if (r >= 0) {
		target = json_string_value(json_object_get(alias, "target"));
		if (!target || !*target)
			return lxm_error_set(err, -EPROTO, 502,
					     "image '%s' on remote '%s': the alias has no target",
					     name, remote);
		*ret_fp = strdup(target);
		return *ret_fp ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	if (r != -ENOENT) {
		*err = TAKE_PTR(e);
		return lxm_error_prefix(err, "image '%s' on remote '%s'", name, remote);
	}
	if (lxm_is_fingerprint_prefix(name)) {
		r = lxm_client_request(c, "GET", "/1.0/images", NULL, &list, NULL, err);
		if (r < 0)
			return lxm_error_prefix(err, "image '%s' on remote '%s'", name, remote);
		json_array_foreach (list, i, v) {
			const char *url = json_string_value(v), *fp;

			if (!url)
				url = json_string_value(json_object_get(v, "fingerprint"));
			fp = url && strrchr(url, '/') ? strrchr(url, '/') + 1 : url;
			if (!fp || !startswith(fp, name))
				continue;
			if (found)
				return lxm_error_set(err, -EINVAL, 400,
						     "image '%s' on remote '%s': the fingerprint "
						     "prefix is ambiguous (%.12s, %.12s, ...)",
						     name, remote, found, fp);
			found = strdup(fp);
			if (!found)
				return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		}
		if (found) {
			*ret_fp = TAKE_PTR(found);
			return 0;
		}
	}
	return lxm_error_set(err, -ENOENT, 404, "image '%s': not found on remote '%s'", name,
			     remote);
}

/* GET /1.0/images/<fp>, with the ETag for a following PUT. */
static int get_image(struct lxm_client *c, const char *remote, const char *fp, json_t **ret,
		     char **ret_etag, struct lxm_error **err)
{
	_cleanup_free_ char *path = lxm_cli_path("/1.0/images/", fp), *what = NULL;
	int r;

	if (!path || asprintf(&what, "image '%.12s' on remote '%s'", fp, remote) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_cli_get_object(c, path, what, "image", ret, ret_etag, err);
	if (r == -ENOENT) {
		lxm_error_free(*err);
		*err = NULL;
		return lxm_error_set(err, r, 404, "image '%.12s': not found on remote '%s'", fp,
				     remote);
	}
	return r;
}

/* Opens IMAGE: its remote's client, its fingerprint and (when ret_img) the Image object. */
static int open_image(const char *arg, struct target *t, char **ret_fp, json_t **ret_img,
		      char **ret_etag, struct lxm_error **err)
{
	_cleanup_free_ char *fp = NULL;
	int r;

	r = target_open(arg, true, t, err);
	if (r < 0)
		return r;
	r = resolve_image(t->c, t->remote->name, t->name, &fp, err);
	if (r < 0)
		return r;
	if (ret_img) {
		r = get_image(t->c, t->remote->name, fp, ret_img, ret_etag, err);
		if (r < 0)
			return r;
	}
	*ret_fp = TAKE_PTR(fp);
	return 0;
}

/* Creates alias name -> fp on c, or moves it there when it exists (as lxc does on import). */
static int set_alias(struct lxm_client *c, const char *name, const char *description,
		     const char *fp, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	body = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "description",
			 description ? description : "", "target", fp, "type", "");
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "POST", "/1.0/images/aliases", body, NULL, NULL, err);
	if (r != -EEXIST)
		return r < 0 ? lxm_error_prefix(err, "alias '%s'", name) : 0;
	lxm_error_free(*err);
	*err = NULL;
	json_object_del(body, "name");
	path = lxm_cli_path("/1.0/images/aliases/", name);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "PUT", path, body, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "alias '%s'", name);
	return 0;
}

/* ---- list ---- */

static const char *shortest_alias(const json_t *img, char buf[static 320])
{
	const json_t *aliases = json_object_get(img, "aliases"), *a;
	const char *best = NULL;
	size_t i;

	json_array_foreach (aliases, i, a) {
		const char *n = json_string_value(json_object_get(a, "name"));

		if (n && (!best || strlen(n) < strlen(best)))
			best = n;
	}
	if (!best)
		return "";
	if (json_array_size(aliases) > 1)
		snprintf(buf, 320, "%.255s (%zu more)", best, json_array_size(aliases) - 1);
	else
		snprintf(buf, 320, "%s", best);
	return buf;
}

/* A FILTER: KEY=VALUE on the image's properties, else a fingerprint prefix or a part of an
 * alias. */
static bool image_matches(const json_t *img, char **filters, int n)
{
	for (int i = 0; i < n; i++) {
		const char *f = filters[i], *eq = strchr(f, '='), *fp;
		const json_t *a;
		bool hit = false;
		size_t k;

		if (eq) {
			_cleanup_free_ char *key = strndup(f, (size_t)(eq - f));
			const char *v = json_string_value(json_object_get(
				json_object_get(img, "properties"), key ? key : ""));

			if (!v || !streq(v, eq + 1))
				return false;
			continue;
		}
		fp = json_string_value(json_object_get(img, "fingerprint"));
		hit = fp && startswith(fp, f);
		json_array_foreach (json_object_get(img, "aliases"), k, a) {
			const char *name = json_string_value(json_object_get(a, "name"));

			hit |= name && strstr(name, f);
		}
		if (!hit)
			return false;
	}
	return true;
}

/* GET /1.0/images?recursion=1; a server that sends URLs gets them fetched one by one. */
static int fetch_images(struct lxm_client *c, const char *remote, json_t **ret,
			struct lxm_error **err)
{
	_cleanup_json_ json_t *all = NULL;
	json_t *v;
	size_t i;
	int r;

	r = lxm_client_request(c, "GET", "/1.0/images?recursion=1", NULL, &all, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "list images on remote '%s'", remote);
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502,
				     "list images on remote '%s': the server sent no list", remote);
	json_array_foreach (all, i, v) {
		if (json_is_string(v)) {
			const char *slash = strrchr(json_string_value(v), '/');
			json_t *img = NULL;

			r = get_image(c, remote, slash ? slash + 1 : json_string_value(v), &img,
				      NULL, err);
			if (r < 0)
				return r;
			json_array_set_new(all, i, img);
		}
	}
	*ret = TAKE_PTR(all);
	return 0;
}

/* ---- simplestreams remotes ---- */

/* The catalogue is fetched and parsed by lxm-imagetool (libcurl and the parsing of a server's
 * answers stay out of lxm, as out of lxmd); it prints the image(s) as one JSON line. */

/* Where lxm-imagetool is: $LXM_IMAGETOOL, else the build tree's when this lxm runs from that
 * build tree, else the installed one. */
static int imagetool_path(const struct lxm_remote *remote, char **ret, struct lxm_error **err)
{
	const char *env = getenv("LXM_IMAGETOOL");
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	const char *dir = LXM_LIBEXECDIR;

	if (n > 0) {
		self[n] = '\0';
		if (startswith(self, LXM_BUILDDIR "/"))
			dir = LXM_BUILDDIR "/lxmd";
	}
	if (env && *env ? asprintf(ret, "%s", env) < 0 : asprintf(ret, "%s/lxm-imagetool", dir) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (access(*ret, X_OK) < 0) {
		lxm_error_set(
			err, -ENOENT, 500,
			"simplestreams remote '%s': lxm-imagetool not found at %s: reinstall lxm",
			remote->name, *ret);
		free(TAKE_PTR(*ret));
		return -ENOENT;
	}
	return 0;
}

/* Largest answer of lxm-imagetool accepted (the catalogue's own limit). */
#define IMAGETOOL_OUT_MAX (64u << 20)
/* How much of its stderr is kept: the end, where it says why it failed. */
#define IMAGETOOL_ERR_MAX 16384

/* Reads fd's data into *buf (growing it, up to max; beyond that the rest is dropped and
 * *overflow set); false at EOF or on an error. */
static bool imagetool_read(int fd, char **buf, size_t *len, size_t max, bool *overflow)
{
	char chunk[16384];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	char *nb;

	if (n < 0 && errno == EINTR)
		return true;
	if (n <= 0)
		return false;
	if (*len + (size_t)n > max) {
		*overflow = true;
		return true;
	}
	nb = realloc(*buf, *len + (size_t)n + 1);
	if (!nb) {
		*overflow = true;
		return true;
	}
	*buf = nb;
	memcpy(*buf + *len, chunk, (size_t)n);
	*len += (size_t)n;
	(*buf)[*len] = '\0';
	return true;
}

/* Runs lxm-imagetool with args (subcommand first, NULL-terminated): *ret is its stdout, parsed as
 * JSON. On failure err is the tool's own error (its message unchanged), with the exit status
 * in *ret_status (3: the server's URL was refused, before any transfer; -1: the tool is not
 * there, and err says so in full). */
static int imagetool_json(const struct lxm_remote *remote, const char *const args[], json_t **ret,
			  int *ret_status, struct lxm_error **err)
{
	_cleanup_free_ char *tool = NULL, *out = NULL, *errout = NULL, **argv = NULL;
	_cleanup_close_ int ofd = -1, efd = -1;
	posix_spawn_file_actions_t fa;
	size_t olen = 0, elen = 0, n = 0;
	bool overflow = false, eoverflow = false;
	int op[2], ep[2], k, status, st = 0, en = 0, skip = 0;
	const char *last;
	json_error_t jerr;
	pid_t pid;

	*ret_status = -1;
	k = imagetool_path(remote, &tool, err);
	if (k < 0)
		return k;
	while (args[n])
		n++;
	argv = calloc(n + 2, sizeof(*argv));
	if (!argv)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	argv[0] = tool;
	memcpy(argv + 1, args, n * sizeof(*argv));
	if (pipe2(op, O_CLOEXEC) < 0)
		return lxm_error_setx(err, -errno, 500, "run %s: pipe", tool);
	ofd = op[0];
	if (pipe2(ep, O_CLOEXEC) < 0) {
		close(op[1]);
		return lxm_error_setx(err, -errno, 500, "run %s: pipe", tool);
	}
	efd = ep[0];
	k = posix_spawn_file_actions_init(&fa);
	if (k == 0)
		k = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (k == 0)
		k = posix_spawn_file_actions_adddup2(&fa, op[1], 1);
	if (k == 0)
		k = posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
	if (k == 0)
		k = posix_spawn(&pid, tool, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(op[1]);
	close(ep[1]);
	if (k != 0)
		return lxm_error_setx(err, -k, 500, "run %s", tool);
	while (ofd >= 0 || efd >= 0) {
		struct pollfd p[2] = { { .fd = ofd, .events = POLLIN },
				       { .fd = efd, .events = POLLIN } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents && !imagetool_read(ofd, &out, &olen, IMAGETOOL_OUT_MAX, &overflow))
			close(TAKE_FD(ofd));
		if (p[1].revents &&
		    !imagetool_read(efd, &errout, &elen, IMAGETOOL_ERR_MAX, &eoverflow))
			close(TAKE_FD(efd));
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return lxm_error_setx(err, -errno, 500, "wait for %s", tool);
	*ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (*ret_status != 0) {
		/* The tool's last line: "error STATUS ERRNO MESSAGE". */
		last = errout ? errout : "";
		for (const char *p = last; (p = strstr(p, "\nerror ")); p++)
			last = p + 1;
		if (sscanf(last, "error %d %d %n", &st, &en, &skip) == 2 && skip > 0) {
			last += skip;
			return lxm_error_set(err, en > 0 ? -en : -EIO, st, "%.*s",
					     (int)strcspn(last, "\n"), last);
		}
		return lxm_error_set(err, -EIO, 500, "%s %s: exited with status %d: %s", tool,
				     args[0], *ret_status, errout ? errout : "no message");
	}
	if (overflow)
		return lxm_error_set(err, -EFBIG, 500, "%s %s: answer too large", tool, args[0]);
	*ret = json_loads(out ? out : "", 0, &jerr);
	if (!*ret)
		return lxm_error_set(err, -EIO, 500, "%s %s: unexpected output: %s", tool, args[0],
				     jerr.text);
	return 0;
}

/* An image of a simplestreams catalogue (lxm-imagetool's JSON of it) as an API Image object, so
 * that list and info show it as they show an lxmd's: its aliases, the catalogue's properties,
 * the version's date. */
static json_t *sstreams_image_json(const json_t *si)
{
	_cleanup_json_ json_t *aliases = json_array(), *empty = json_object();
	char date[32] = "0001-01-01T00:00:00Z";
	const json_t *a, *props = json_object_get(si, "properties");
	const char *arch = json_string_value(json_object_get(si, "architecture"));
	const char *type = json_string_value(json_object_get(si, "type"));
	json_int_t created = json_integer_value(json_object_get(si, "created_at"));
	json_int_t size = json_integer_value(json_object_get(si, "meta_size")) +
			  json_integer_value(json_object_get(si, "rootfs_size"));
	struct tm tm;
	time_t t = (time_t)created;
	size_t i;

	if (!aliases || !empty || !json_is_string(json_object_get(si, "fingerprint")))
		return NULL;
	json_array_foreach (json_object_get(si, "aliases"), i, a)
		if (json_is_string(a) &&
		    json_array_append_new(aliases,
					  json_pack("{s:s, s:s}", "name", json_string_value(a),
						    "description", "")) < 0)
			return NULL;
	if (created > 0 && gmtime_r(&t, &tm))
		strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_pack("{s:O, s:O, s:b, s:O, s:s, s:s, s:I, s:s, s:s, s:b, s:b, s:O?, s:O?}",
			 "fingerprint", json_object_get(si, "fingerprint"), "aliases", aliases,
			 "public", true, "properties", json_is_object(props) ? props : empty,
			 "architecture", arch ? arch : "", "type", type ? type : "container",
			 "size", size, "uploaded_at", date, "created_at", date, "cached", false,
			 "auto_update", false, "product", json_object_get(si, "product"), "version",
			 json_object_get(si, "version"));
}

/* lxm-imagetool's exit status when the remote's URL itself was refused. */
#define IMAGETOOL_BAD_SERVER 3

/* Every image of a simplestreams remote, as Image objects. */
static int fetch_sstreams_images(const struct lxm_remote *remote, json_t **ret,
				 struct lxm_error **err)
{
	_cleanup_json_ json_t *all = json_array(), *imgs = NULL;
	const char *args[] = { "ss-list", remote->addr, remote->ca ? remote->ca : "-", NULL };
	const json_t *si;
	size_t i;
	int r, status = 0;

	r = imagetool_json(remote, args, &imgs, &status, err);
	if (r < 0 && status == -1)
		return r;
	if (r < 0 && status == IMAGETOOL_BAD_SERVER)
		return lxm_error_prefix(err, "simplestreams remote '%s'", remote->name);
	if (r < 0)
		return lxm_error_prefix(err, "list images on simplestreams remote '%s'",
					remote->name);
	if (!json_is_array(imgs))
		return lxm_error_set(err, -EIO, 500,
				     "list images on simplestreams remote '%s': lxm-imagetool "
				     "answered no list",
				     remote->name);
	json_array_foreach (imgs, i, si)
		if (r >= 0)
			r = all ? json_array_append_new(all, sstreams_image_json(si)) : -ENOMEM;
	if (r < 0)
		return lxm_error_set(err, -ENOMEM, 500, "list images on remote '%s': out of memory",
				     remote->name);
	*ret = TAKE_PTR(all);
	return 0;
}

/* The image NAME (an alias or a fingerprint prefix) of a simplestreams remote, for this host's
 * architecture, as an Image object. */
static int sstreams_get_image(const struct lxm_remote *remote, const char *name, json_t **ret,
			      struct lxm_error **err)
{
	_cleanup_json_ json_t *si = NULL;
	struct utsname u;
	const char *args[] = { "ss-find",
			       remote->addr,
			       remote->ca ? remote->ca : "-",
			       name,
			       uname(&u) == 0 ? u.machine : "-",
			       NULL };
	int r, status = 0;

	if (!*name)
		return lxm_error_set(err, -EINVAL, 400, "no image named after '%s:'", remote->name);
	r = imagetool_json(remote, args, &si, &status, err);
	if (r < 0 && status == -1)
		return r;
	if (r < 0 && status == IMAGETOOL_BAD_SERVER)
		return lxm_error_prefix(err, "simplestreams remote '%s'", remote->name);
	if (r < 0)
		return lxm_error_prefix(err, "image '%s' on simplestreams remote '%s'", name,
					remote->name);
	*ret = sstreams_image_json(si);
	return *ret ? 0
		    : lxm_error_set(err, -EIO, 500,
				    "image '%s' on simplestreams remote '%s': lxm-imagetool "
				    "answered no image",
				    name, remote->name);
}

static int image_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "ALIAS",	     "FINGERPRINT",  "PUBLIC",
					      "DESCRIPTION", "ARCHITECTURE", "TYPE",
					      "SIZE",	     "UPLOAD DATE" };
	_cleanup_(target_done) struct target t = {};
	_cleanup_table_ struct lxm_table *tab = NULL;
	_cleanup_json_ json_t *images = NULL, *shown = json_array();
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	char **filters;
	int r, nf;
	json_t *img;
	size_t i;

	r = lxm_cli_list_args(argc, argv, 0, -1, "", &fmt, err);
	if (r < 0)
		return r;
	filters = argv + optind;
	nf = argc - optind;
	/* "lxm image list other:" lists another remote's images. */
	if (nf > 0 && strchr(filters[0], ':')) {
		r = target_open(filters[0], false, &t, err);
		if (r < 0)
			return lxm_error_prefix(err, "%s", cmd);
		filters++;
		nf--;
		if (*t.name) {
			filters--;
			nf++;
			filters[0] = t.name;
		}
	} else {
		r = target_open("local:", false, &t, err);
		if (r < 0)
			return r;
	}
	if (t.remote->protocol == LXM_REMOTE_SIMPLESTREAMS) {
		r = fetch_sstreams_images(t.remote, &images, err);
	} else {
		r = lxm_remote_connect(t.remote, &t.c, err);
		if (r >= 0)
			r = fetch_images(t.c, t.remote->name, &images, err);
	}
	if (r < 0)
		return r;
	r = shown ? lxm_table_new(&tab, ARRAY_SIZE(header), header) : -ENOMEM;
	json_array_foreach (images, i, img) {
		char alias[320], size[32], date[64], fp[13];
		_cleanup_free_ char *type = NULL;
		const char *row[8];

		if (r < 0 || !image_matches(img, filters, nf))
			continue;
		snprintf(fp, sizeof(fp), "%s",
			 json_string_value(json_object_get(img, "fingerprint")) ?: "");
		size_mib(json_integer_value(json_object_get(img, "size")), size);
		upload_date(json_string_value(json_object_get(img, "uploaded_at")), date);
		type = lxm_cli_upper(json_string_value(json_object_get(img, "type"))
					     ?: "container");
		row[0] = shortest_alias(img, alias);
		row[1] = fp;
		row[2] = json_is_true(json_object_get(img, "public")) ? "yes" : "no";
		row[3] = json_string_value(
			json_object_get(json_object_get(img, "properties"), "description"));
		row[4] = json_string_value(json_object_get(img, "architecture"));
		row[5] = type;
		row[6] = size;
		row[7] = date;
		r = type ? lxm_table_add_row(tab, row) : -ENOMEM;
		if (r >= 0)
			r = json_array_append(shown, img);
	}
	if (r < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	lxm_table_sort(tab);
	return lxm_cli_print_list(cmd, shown, tab, fmt, err);
}

/* ---- info, show, edit, delete ---- */

static void print_time(const char *label, const json_t *img, const char *key)
{
	char buf[64];

	if (lxm_format_time(json_string_value(json_object_get(img, key)), false, buf) < 0)
		snprintf(buf, sizeof(buf), "never");
	printf("    %s: %s\n", label, buf);
}

static int image_info(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *img = NULL, *props = NULL;
	_cleanup_free_ char *fp = NULL;
	const char *cmd = argv[0], *k;
	const json_t *a, *v;
	char size[32];
	size_t i;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 1, "an IMAGE", err);
	if (r >= 0)
		r = target_open(argv[1], false, &t, err);
	if (r < 0)
		return r;
	if (t.remote->protocol == LXM_REMOTE_SIMPLESTREAMS)
		r = sstreams_get_image(t.remote, t.name, &img, err);
	else
		r = open_image(argv[1], &t, &fp, &img, NULL, err);
	if (r < 0)
		return r;
	size_mib(json_integer_value(json_object_get(img, "size")), size);
	printf("Fingerprint: %s\n",
	       json_string_value(json_object_get(img, "fingerprint")) ?: fp ?: "");
	printf("Size: %s\n", size);
	printf("Architecture: %s\n", json_string_value(json_object_get(img, "architecture")) ?: "");
	printf("Type: %s\n", json_string_value(json_object_get(img, "type")) ?: "container");
	printf("Public: %s\n", json_is_true(json_object_get(img, "public")) ? "yes" : "no");
	printf("Timestamps:\n");
	print_time("Created", img, "created_at");
	print_time("Uploaded", img, "uploaded_at");
	print_time("Expires", img, "expires_at");
	print_time("Last used", img, "last_used_at");
	printf("Properties:\n");
	props = lxm_json_sorted(json_object_get(img, "properties") ?: json_object());
	json_object_foreach (props, k, v)
		printf("    %s: %s\n", k, json_string_value(v) ?: "");
	printf("Aliases:\n");
	json_array_foreach (json_object_get(img, "aliases"), i, a) {
		const char *d = json_string_value(json_object_get(a, "description"));

		printf("    - %s%s%s%s\n", json_string_value(json_object_get(a, "name")) ?: "",
		       d && *d ? " (" : "", d && *d ? d : "", d && *d ? ")" : "");
	}
	printf("Cached: %s\n", json_is_true(json_object_get(img, "cached")) ? "yes" : "no");
	printf("Auto update: %s\n",
	       json_is_true(json_object_get(img, "auto_update")) ? "enabled" : "disabled");
	if (json_array_size(json_object_get(img, "profiles"))) {
		printf("Profiles:\n");
		json_array_foreach (json_object_get(img, "profiles"), i, a)
			printf("    - %s\n", json_string_value(a) ?: "");
	}
	return 0;
}

/* The editable fields (LXD's ImagePut), in its order. */
static const char *const editable_keys[] = {
	"auto_update", "properties", "public", "expires_at", "profiles", NULL,
};

/* Read-only fields of an Image: accepted in an edited document (a full `GET` fed back) and
 * ignored. */
static const char *const readonly_keys[] = {
	"aliases",     "architecture", "cached",      "created_at", "filename",
	"fingerprint", "last_used_at", "size",	      "type",	    "update_source",
	"uploaded_at", "project",      "description", NULL,
};

static bool in_list(const char *const *list, const char *key)
{
	for (; *list; list++)
		if (streq(*list, key))
			return true;
	return false;
}

static json_t *editable_view(const json_t *img)
{
	_cleanup_json_ json_t *view = json_object();

	if (!view)
		return NULL;
	for (const char *const *k = editable_keys; *k; k++) {
		json_t *v = json_object_get(img, *k);

		if (!v)
			continue;
		v = streq(*k, "properties") ? lxm_json_sorted(v) : json_incref(v);
		if (!v || json_object_set_new(view, *k, v) < 0)
			return NULL;
	}
	return TAKE_PTR(view);
}

static int image_show(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *img = NULL, *view = NULL;
	_cleanup_free_ char *fp = NULL, *what = NULL;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 1, 1, "an IMAGE", err);
	if (r < 0)
		return r;
	r = open_image(argv[1], &t, &fp, &img, NULL, err);
	if (r < 0)
		return r;
	view = editable_view(img);
	if (asprintf(&what, "image '%s'", argv[1]) < 0)
		what = NULL;
	return lxm_cli_print_yaml(argv[0], what ? view : NULL, what, err);
}

static const char edit_header[] =
	"### This is the image's editable part as YAML. Lines starting with '#' are ignored.\n"
	"###\n"
	"### For example:\n"
	"###   auto_update: false\n"
	"###   properties:\n"
	"###     description: Debian 12 with nginx\n"
	"###     os: debian\n"
	"###   public: false\n"
	"###\n"
	"### Aliases are changed with 'lxm image alias'.\n";

static int check_image_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	json_t **put = userdata, *v;
	const char *key;
	size_t i;

	json_decref(*put);
	*put = NULL;
	if (!json_is_object(doc))
		return lxm_error_set(err, -EINVAL, 400,
				     json_is_null(doc)
					     ? "the document is empty; nothing was changed"
					     : "the document must be a map of image fields");
	json_object_foreach ((json_t *)doc, key, v) {
		if (in_list(readonly_keys, key))
			continue;
		if (!in_list(editable_keys, key))
			return lxm_error_set(err, -EINVAL, 400,
					     "unknown field '%s' (an image has auto_update, "
					     "properties, public, expires_at and profiles)",
					     key);
		if ((streq(key, "auto_update") || streq(key, "public")) && !json_is_boolean(v))
			return lxm_error_set(err, -EINVAL, 400, "%s must be true or false", key);
		if (streq(key, "expires_at") && !json_is_string(v) && !json_is_null(v))
			return lxm_error_set(err, -EINVAL, 400, "expires_at must be a timestamp");
		if (streq(key, "profiles")) {
			json_t *p;

			if (!json_is_array(v) && !json_is_null(v))
				return lxm_error_set(err, -EINVAL, 400,
						     "profiles must be a list of names");
			json_array_foreach (v, i, p)
				if (!json_is_string(p))
					return lxm_error_set(err, -EINVAL, 400,
							     "profiles must be a list of names");
		}
	}
	*put = json_object();
	if (!*put)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (const char *const *k = editable_keys; *k; k++) {
		json_t *val = json_object_get(doc, *k);
		int r = 0;

		if (streq(*k, "properties"))
			r = lxm_cli_string_map(val, "properties", &val, err);
		else if (val)
			json_incref(val);
		if (r < 0)
			return r;
		if (val && json_object_set_new(*put, *k, val) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	return 0;
}

static int image_edit(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *img = NULL, *view = NULL, *put = NULL;
	_cleanup_free_ char *fp = NULL, *etag = NULL, *path = NULL, *what = NULL;
	const char *cmd = argv[0];
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 1, "an IMAGE", err);
	if (r < 0)
		return r;
	r = open_image(argv[1], &t, &fp, &img, &etag, err);
	if (r < 0)
		return r;
	view = editable_view(img);
	path = lxm_cli_path("/1.0/images/", fp);
	if (!path || asprintf(&what, "image '%s'", argv[1]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_edit_view(cmd, what, view, edit_header, check_image_doc, &put, err);
	if (r < 0)
		return r;
	r = lxm_cli_put(t.c, path, put, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "edit %s", what);
	return 0;
}

/* An action on one opened image: arg as the user typed it, fp its fingerprint. */
typedef int (*image_action_fn)(struct target *t, const char *arg, const char *fp,
			       struct lxm_error **err);

/* Opens each IMAGE argument on its remote and runs action on it, stopping at the first failure;
 * errors name the verb and the image ("delete image 'x': ..."). */
static int each_image(int argc, char **argv, const char *verb, image_action_fn action,
		      struct lxm_error **err)
{
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 1, -1, "at least one IMAGE", err);
	if (r < 0)
		return r;
	for (int i = 1; i < argc; i++) {
		_cleanup_(target_done) struct target t = {};
		_cleanup_free_ char *fp = NULL;

		r = open_image(argv[i], &t, &fp, NULL, NULL, err);
		if (r >= 0)
			r = action(&t, argv[i], fp, err);
		if (r < 0)
			return lxm_error_prefix(err, "%s image '%s'", verb, argv[i]);
	}
	return 0;
}

static int delete_one(struct target *t, const char *arg, const char *fp, struct lxm_error **err)
{
	_cleanup_free_ char *path = lxm_cli_path("/1.0/images/", fp);

	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return lxm_client_do(t->c, "DELETE", path, NULL, NULL, err);
}

static int image_delete(int argc, char **argv, struct lxm_error **err)
{
	return each_image(argc, argv, "delete", delete_one, err);
}

/* Asks the server to look for a newer version of the image (its simplestreams source, or its
 * template) and reports what it found, as lxc image refresh does. */
static int refresh_one(struct target *t, const char *arg, const char *fp, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *op = NULL;
	const json_t *meta;
	int r;

	if (asprintf(&path, "/1.0/images/%s/refresh", fp) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_do(t->c, "POST", path, NULL, &op, err);
	if (r < 0)
		return r;
	meta = json_object_get(op, "metadata");
	if (json_is_true(json_object_get(meta, "refreshed"))) {
		const char *nfp = json_string_value(json_object_get(meta, "fingerprint"));

		printf("Image '%s' refreshed%s%.12s\n", arg, nfp ? ": now " : "", nfp ? nfp : "");
	} else {
		printf("Image '%s' is already up to date\n", arg);
	}
	return 0;
}

static int image_refresh(int argc, char **argv, struct lxm_error **err)
{
	return each_image(argc, argv, "refresh", refresh_one, err);
}

/* ---- aliases ---- */

static int alias_create(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "description", required_argument, NULL, 'd' },
		{},
	};
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *fp = NULL, *tname = NULL;
	const char *cmd = argv[0], *desc = "";
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		if (opt != 'd')
			return lxm_cli_flag_error(cmd, argv, opt, err);
		desc = optarg;
	}
	r = lxm_cli_nargs(cmd, argc - optind, 2, 2, "[REMOTE:]ALIAS and a FINGERPRINT", err);
	if (r < 0)
		return r;
	r = target_open(argv[optind], true, &t, err);
	if (r < 0)
		return r;
	r = check_alias(cmd, t.name, err);
	if (r < 0)
		return r;
	r = resolve_image(t.c, t.remote->name, argv[optind + 1], &fp, err);
	if (r < 0)
		return lxm_error_prefix(err, "create alias '%s'", t.name);
	body = json_pack("{s:s, s:s, s:s, s:s}", "name", t.name, "description", desc, "target", fp,
			 "type", "");
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_request(t.c, "POST", "/1.0/images/aliases", body, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "create alias '%s'", t.name);
	return 0;
}

/* DELETE or POST (a rename to "to") on alias t->name, naming a missing alias as such. */
static int alias_request(const char *cmd, struct target *t, const char *method, const json_t *body,
			 const char *verb, const char *to, struct lxm_error **err)
{
	_cleanup_free_ char *path = lxm_cli_path("/1.0/images/aliases/", t->name);
	int r;

	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_do(t->c, method, path, body, NULL, err);
	if (r == -ENOENT) {
		lxm_error_free(*err);
		*err = NULL;
		return lxm_error_set(err, r, 404, "%s alias '%s': not found on remote '%s'", verb,
				     t->name, t->remote->name);
	}
	if (r < 0 && to)
		return lxm_error_prefix(err, "%s alias '%s' to '%s'", verb, t->name, to);
	if (r < 0)
		return lxm_error_prefix(err, "%s alias '%s'", verb, t->name);
	return 0;
}

static int alias_delete(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 1, 1, "an ALIAS", err);
	if (r >= 0)
		r = target_open(argv[1], true, &t, err);
	if (r < 0)
		return r;
	return alias_request(argv[0], &t, "DELETE", NULL, "delete", NULL, err);
}

static int alias_rename(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *body = NULL;
	const char *cmd = argv[0], *to;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 2, 2, "OLD and NEW alias names", err);
	if (r >= 0)
		r = target_open(argv[1], true, &t, err);
	if (r < 0)
		return r;
	/* NEW may repeat the remote ("other:a other:b"), but not name another one. */
	to = argv[2];
	if (strchr(to, ':') && startswith(to, t.remote->name) && to[strlen(t.remote->name)] == ':')
		to += strlen(t.remote->name) + 1;
	r = check_alias(cmd, to, err);
	if (r < 0)
		return r;
	body = json_pack("{s:s}", "name", to);
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	return alias_request(cmd, &t, "POST", body, "rename", to, err);
}

static int alias_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION" };
	_cleanup_(target_done) struct target t = {};
	_cleanup_table_ struct lxm_table *tab = NULL;
	_cleanup_json_ json_t *all = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	json_t *a;
	int r;
	size_t i;

	r = lxm_cli_list_args(argc, argv, 0, 1, "at most a REMOTE:", &fmt, err);
	if (r < 0)
		return r;
	r = target_open(argc > optind ? argv[optind] : "local:", true, &t, err);
	if (r < 0)
		return r;
	r = lxm_client_request(t.c, "GET", "/1.0/images/aliases?recursion=1", NULL, &all, NULL,
			       err);
	if (r < 0)
		return lxm_error_prefix(err, "list aliases on remote '%s'", t.remote->name);
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502, "list aliases: the server sent no list");
	r = lxm_table_new(&tab, ARRAY_SIZE(header), header);
	json_array_foreach (all, i, a) {
		_cleanup_free_ char *type = NULL;
		const char *row[4];
		char fp[13];

		snprintf(fp, sizeof(fp), "%s",
			 json_string_value(json_object_get(a, "target")) ?: "");
		type = lxm_cli_upper(json_string_value(json_object_get(a, "type")) ?: "");
		row[0] = json_string_value(json_object_get(a, "name")) ?: json_string_value(a);
		row[1] = fp;
		row[2] = type;
		row[3] = json_string_value(json_object_get(a, "description"));
		if (r >= 0)
			r = type ? lxm_table_add_row(tab, row) : -ENOMEM;
	}
	if (r < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	lxm_table_sort(tab);
	return lxm_cli_print_list(cmd, all, tab, fmt, err);
}

const struct lxm_command lxm_image_alias_commands[] = {
	{
		.name = "create",
		.alias = "add",
		.run = alias_create,
		.summary = "Create an alias of an image",
		.usage = "image alias create [REMOTE:]ALIAS FINGERPRINT [flags]",
		.help = "Flags:\n"
			"      --description D   Description of the alias\n",
	},
	LXM_CMD_DELETE(alias_delete, "Delete an alias", "image alias delete [REMOTE:]ALIAS"),
	LXM_CMD_LIST(alias_list, "List aliases", "image alias list [REMOTE:] [flags]"),
	LXM_CMD_RENAME(alias_rename, "Rename an alias", "image alias rename [REMOTE:]OLD NEW"),
	{},
};

/* "lxm image alias ...": a group inside a group, dispatched here (main knows two levels). */
static int image_alias(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_dispatch(lxm_image_alias_commands, "create, delete, list or rename", argc,
				argv, err);
}

static int add_aliases(struct lxm_client *c, const char *fp, const json_t *aliases,
		       struct lxm_error **err)
{
	json_t *a;
	size_t i;

	json_array_foreach ((json_t *)aliases, i, a) {
		int r = set_alias(c, json_string_value(json_object_get(a, "name")),
				  json_string_value(json_object_get(a, "description")), fp, err);

		if (r < 0)
			return lxm_error_prefix(err, "image %.12s", fp);
	}
	return 0;
}

/* Flags shared by import, copy, publish and build. */
struct image_flags {
	json_t *aliases;	 /* [{"name", "description"}] from --alias */
	json_t *properties;	 /* from --property or KEY=VALUE */
	bool public;		 /* --public */
	bool copy_aliases;	 /* --copy-aliases */
	const char *release;	 /* --release, or NULL */
	const char *compression; /* --compression, or NULL */
};

/* Which of the flags a verb takes. */
enum {
	FLAG_ALIAS = 1 << 0,
	FLAG_PUBLIC = 1 << 1,
	FLAG_PROPERTY = 1 << 2,
	FLAG_COPY_ALIASES = 1 << 3,
	FLAG_RELEASE = 1 << 4,
	FLAG_COMPRESSION = 1 << 5,
};

static void image_flags_done(struct image_flags *f)
{
	json_decref(f->aliases);
	json_decref(f->properties);
}

static int flag_alias(const char *cmd, struct image_flags *f, const char *name,
		      struct lxm_error **err)
{
	int r = check_alias(cmd, name, err);

	if (r < 0)
		return r;
	if ((!f->aliases && !(f->aliases = json_array())) ||
	    json_array_append_new(f->aliases,
				  json_pack("{s:s, s:s}", "name", name, "description", "")) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	return 0;
}

static int flag_property(const char *cmd, struct image_flags *f, const char *kv,
			 struct lxm_error **err)
{
	_cleanup_free_ char *k = NULL, *v = NULL;

	if (lxm_cli_split_kv(kv, &k, &v) < 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: invalid property '%s': expected KEY=VALUE", cmd, kv);
	if ((!f->properties && !(f->properties = json_object())) ||
	    json_object_set_new(f->properties, k, json_string(v)) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	return 0;
}

static int flag_compression(const char *cmd, struct image_flags *f, const char *value,
			    struct lxm_error **err)
{
	static const char *const compressions[] = { "gzip", "xz", "zstd", "none" };

	for (size_t i = 0; i < ARRAY_SIZE(compressions); i++)
		if (streq(value, compressions[i])) {
			f->compression = value;
			return 0;
		}
	return lxm_error_set(err, -EINVAL, 400,
			     "%s: unknown compression '%s' (gzip, xz, zstd or none)", cmd, value);
}

/* Parses the flags of import, copy, build and publish (those in accepted); the arguments start
 * at optind. */
static int parse_image_flags(int argc, char **argv, unsigned accepted, struct image_flags *f,
			     struct lxm_error **err)
{
	static const struct option all[] = {
		{ "alias", required_argument, NULL, FLAG_ALIAS },
		{ "public", no_argument, NULL, FLAG_PUBLIC },
		{ "property", required_argument, NULL, FLAG_PROPERTY },
		{ "copy-aliases", no_argument, NULL, FLAG_COPY_ALIASES },
		{ "release", required_argument, NULL, FLAG_RELEASE },
		{ "compression", required_argument, NULL, FLAG_COMPRESSION },
	};
	struct option options[ARRAY_SIZE(all) + 1] = {};
	const char *cmd = argv[0];
	size_t n = 0;
	int opt, r;

	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		if (accepted & (unsigned)all[i].val)
			options[n++] = all[i];
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		r = 0;
		switch (opt) {
		case FLAG_ALIAS:
			r = flag_alias(cmd, f, optarg, err);
			break;
		case FLAG_PUBLIC:
			f->public = true;
			break;
		case FLAG_PROPERTY:
			r = flag_property(cmd, f, optarg, err);
			break;
		case FLAG_COPY_ALIASES:
			f->copy_aliases = true;
			break;
		case FLAG_RELEASE:
			f->release = optarg;
			break;
		case FLAG_COMPRESSION:
			r = flag_compression(cmd, f, optarg, err);
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static int image_import(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(image_flags_done) struct image_flags f = {};
	_cleanup_(target_done) struct target t = {};
	_cleanup_free_ char *fp = NULL;
	const char *cmd = argv[0], *remote_arg = "local:";
	int r, nargs;

	r = parse_image_flags(argc, argv, FLAG_ALIAS | FLAG_PUBLIC | FLAG_PROPERTY, &f, err);
	if (r < 0)
		return r;
	nargs = argc - optind;
	/* A last argument "REMOTE:" names where to import. */
	if (nargs >= 2 && argv[argc - 1][strlen(argv[argc - 1]) - 1] == ':' &&
	    !strchr(argv[argc - 1], '/')) {
		remote_arg = argv[argc - 1];
		nargs--;
	}
	r = lxm_cli_nargs(cmd, nargs, 1, 2, "an image FILE, or a METADATA and a ROOTFS file", err);
	if (r < 0)
		return r;
	r = target_open(remote_arg, true, &t, err);
	if (r < 0)
		return r;
	r = lxm_image_import_files(
		t.c, cmd, argv[optind], nargs == 2 ? argv[optind + 1] : NULL,
		&(struct lxm_image_upload){ .public = f.public, .properties = f.properties }, &fp,
		err);
	if (r < 0)
		return r;
	r = add_aliases(t.c, fp, f.aliases, err);
	if (r < 0)
		return r;
	printf("Image imported with fingerprint: %s\n", fp);
	return 0;
}

static int image_export(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(lxm_export_result_done) struct lxm_export_result res = {};
	_cleanup_(target_done) struct target t = {};
	_cleanup_free_ char *fp = NULL, *dir = NULL;
	const char *cmd = argv[0], *target_file = NULL;
	struct stat st;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 2, "an IMAGE and at most a DIRECTORY or FILE", err);
	if (r < 0)
		return r;
	if (argc == 3 && !(stat(argv[2], &st) == 0 && S_ISDIR(st.st_mode))) {
		/* A file name: its directory must exist. */
		const char *slash = strrchr(argv[2], '/');

		target_file = argv[2];
		dir = slash ? strndup(argv[2], slash == argv[2] ? 1 : (size_t)(slash - argv[2]))
			    : strdup(".");
		if (dir && (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)))
			return lxm_error_setx(err, -errno ?: -ENOTDIR, 400, "%s: %s", cmd, dir);
	} else {
		dir = strdup(argc == 3 ? argv[2] : ".");
	}
	if (!dir)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = open_image(argv[1], &t, &fp, NULL, NULL, err);
	if (r >= 0)
		r = lxm_image_export_files(t.c, cmd, fp, dir, target_file, &res, err);
	if (r < 0)
		return lxm_error_prefix(err, "export image '%s'", argv[1]);
	printf("Image exported to %s%s%s\n", res.files[0], res.files[1] ? " and " : "",
	       res.files[1] ? res.files[1] : "");
	return 0;
}

static int has_image(struct lxm_client *c, const char *fp, struct lxm_error **err)
{
	_cleanup_free_ char *path = lxm_cli_path("/1.0/images/", fp);
	_cleanup_error_ struct lxm_error *e = NULL;
	int r;

	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "GET", path, NULL, NULL, NULL, &e);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		*err = TAKE_PTR(e);
		return r;
	}
	return 1;
}

/* The "source" of a pull from a simplestreams server, for POST /1.0/images or
 * /1.0/instances. */
static int pull_source(const struct lxm_remote *remote, const char *name, json_t **ret,
		       struct lxm_error **err)
{
	_cleanup_json_ json_t *src = NULL;
	_cleanup_free_ char *pem = NULL;
	int r;

	src = json_pack("{s:s, s:s, s:s, s:s}", "type", "image", "mode", "pull", "server",
			remote->addr, "protocol", "simplestreams");
	if (!src ||
	    json_object_set_new(src, lxm_is_fingerprint_prefix(name) ? "fingerprint" : "alias",
				json_string(name)) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (remote->ca) {
		r = lxm_read_file(remote->ca, &pem, NULL);
		if (r < 0)
			return lxm_error_setx(err, r, 400, "remote '%s': read CA file %s",
					      remote->name, remote->ca);
		if (json_object_set_new(src, "certificate", json_string(pem)) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	*ret = TAKE_PTR(src);
	return 0;
}

/* POST /1.0/images with a JSON body (publish, build, pull), waited for: the new fingerprint. */
static int post_image_json(struct lxm_client *c, const json_t *body, const char *label,
			   char **ret_fp, struct lxm_error **err)
{
	_cleanup_json_ json_t *op = NULL;
	struct lxm_op_progress progress;
	const char *fp;
	int r;

	lxm_show_op_progress(c, &progress, label);
	r = lxm_client_do(c, "POST", "/1.0/images", body, &op, err);
	lxm_client_set_progress(c, NULL, NULL);
	if (r < 0)
		return r;
	fp = json_string_value(json_object_get(json_object_get(op, "metadata"), "fingerprint"));
	if (!fp || !lxm_is_fingerprint_prefix(fp))
		return lxm_error_set(err, -EPROTO, 502,
				     "the server did not say which image it made (no fingerprint "
				     "in the operation's metadata)");
	*ret_fp = strdup(fp);
	return *ret_fp ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

static int image_copy(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(image_flags_done) struct image_flags f = {};
	_cleanup_(target_done) struct target src = {}, dst = {};
	_cleanup_json_ json_t *img = NULL, *body = NULL;
	_cleanup_free_ char *fp = NULL, *made = NULL;
	const char *cmd = argv[0];
	json_t *a;
	size_t i;
	int r;

	r = parse_image_flags(argc, argv, FLAG_ALIAS | FLAG_COPY_ALIASES | FLAG_PUBLIC, &f, err);
	if (r < 0)
		return r;
	r = lxm_cli_nargs(cmd, argc - optind, 2, 2, "[REMOTE:]IMAGE and a target REMOTE:", err);
	if (r < 0)
		return r;
	r = target_open(argv[optind], false, &src, err);
	if (r >= 0)
		r = target_open(argv[optind + 1], true, &dst, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", cmd);
	if (*dst.name)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: the target is a remote ('%s:'), not '%s' (use --alias "
				     "to name the copy)",
				     cmd, dst.remote->name, argv[optind + 1]);
	if (src.remote == lxm_remotes_find(dst.rs, src.remote->name) &&
	    streq(src.remote->name, dst.remote->name))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: source and target are both remote '%s'", cmd,
				     src.remote->name);

	if (src.remote->protocol == LXM_REMOTE_SIMPLESTREAMS) {
		/* The target server pulls the image itself, as LXD does. */
		json_t *source = NULL;

		if (f.copy_aliases && flag_alias(cmd, &f, src.name, err) < 0)
			return -EINVAL;
		r = pull_source(src.remote, src.name, &source, err);
		if (r < 0)
			return r;
		body = json_pack("{s:o, s:b, s:o}", "source", source, "public", f.public, "aliases",
				 f.aliases ? json_incref(f.aliases) : json_array());
		if (!body)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
		r = post_image_json(dst.c, body, "Copying image", &made, err);
		if (r < 0)
			return lxm_error_prefix(err, "copy image '%s' from remote '%s'", src.name,
						src.remote->name);
		printf("Image copied with fingerprint: %s\n", made);
		return 0;
	}

	r = lxm_remote_connect(src.remote, &src.c, err);
	if (r >= 0)
		r = resolve_image(src.c, src.remote->name, src.name, &fp, err);
	if (r >= 0)
		r = get_image(src.c, src.remote->name, fp, &img, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", cmd);
	if (f.copy_aliases)
		json_array_foreach (json_object_get(img, "aliases"), i, a) {
			r = flag_alias(cmd, &f, json_string_value(json_object_get(a, "name")) ?: "",
				       err);
			if (r < 0)
				return r;
		}
	r = has_image(dst.c, fp, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s: remote '%s'", cmd, dst.remote->name);
	if (r == 0) {
		r = lxm_image_copy_stream(src.c, src.remote->name, fp, img, dst.c, f.public, err);
		if (r < 0)
			return lxm_error_prefix(err, "copy image '%s' from remote '%s' to '%s'",
						src.name, src.remote->name, dst.remote->name);
	}
	r = add_aliases(dst.c, fp, f.aliases, err);
	if (r < 0)
		return r;
	printf("Image copied with fingerprint: %s\n", fp);
	return 0;
}

int lxm_image_source(struct lxm_client *local, const char *image, json_t **ret,
		     struct lxm_error **err)
{
	_cleanup_(target_done) struct target src = {};
	_cleanup_json_ json_t *img = NULL;
	_cleanup_free_ char *fp = NULL;
	int r;

	r = target_open(image, false, &src, err);
	if (r < 0)
		return r;
	if (src.remote->builtin) {
		/* The server resolves local aliases itself, and builds template images on
		 * their first use. */
		*ret = json_pack("{s:s, s:s}", "type", "image", "alias", src.name);
		return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	if (!*src.name)
		return lxm_error_set(err, -EINVAL, 400, "'%s': no image named after the remote",
				     image);
	if (src.remote->protocol == LXM_REMOTE_SIMPLESTREAMS)
		return pull_source(src.remote, src.name, ret, err);

	/* Another lxmd: its image is copied here first, then used by fingerprint. */
	r = lxm_remote_connect(src.remote, &src.c, err);
	if (r >= 0)
		r = resolve_image(src.c, src.remote->name, src.name, &fp, err);
	if (r >= 0)
		r = get_image(src.c, src.remote->name, fp, &img, NULL, err);
	if (r >= 0)
		r = has_image(local, fp, err);
	if (r == 0) {
		printf("Copying image '%s' from remote '%s'\n", src.name, src.remote->name);
		fflush(stdout);
		r = lxm_image_copy_stream(src.c, src.remote->name, fp, img, local, false, err);
	}
	if (r < 0)
		return lxm_error_prefix(err, "image '%s'", image);
	*ret = json_pack("{s:s, s:s}", "type", "image", "fingerprint", fp);
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* ---- build, publish ---- */

static int image_build(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(image_flags_done) struct image_flags f = {};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *fp = NULL;
	const char *cmd = argv[0], *release;
	int r;

	r = parse_image_flags(argc, argv, FLAG_RELEASE | FLAG_ALIAS | FLAG_PUBLIC, &f, err);
	if (r < 0)
		return r;
	release = f.release;
	r = lxm_cli_nargs(cmd, argc - optind, 1, 1, "a TEMPLATE (busybox, debian)", err);
	if (r < 0)
		return r;
	body = json_pack("{s:{s:s, s:s}, s:b, s:o}", "source", "type", "template", "name",
			 argv[optind], "public", f.public, "aliases",
			 f.aliases ? json_incref(f.aliases) : json_array());
	if (!body || (release && json_object_set_new(json_object_get(body, "source"), "release",
						     json_string(release)) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	printf("Building image from template '%s'%s%s\n", argv[optind], release ? ", release " : "",
	       release ? release : "");
	fflush(stdout);
	r = post_image_json(c, body, "Building image", &fp, err);
	if (r < 0)
		return lxm_error_prefix(err, "build image '%s'", argv[optind]);
	printf("Image built with fingerprint: %s\n", fp);
	return 0;
}

int lxm_cmd_publish(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(image_flags_done) struct image_flags f = {};
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *fp = NULL;
	const char *cmd = argv[0], *compression;
	int r;

	r = parse_image_flags(argc, argv, FLAG_ALIAS | FLAG_PUBLIC | FLAG_COMPRESSION, &f, err);
	if (r < 0)
		return r;
	compression = f.compression;
	r = lxm_cli_nargs(cmd, argc - optind, 1, -1, "an INSTANCE and KEY=VALUE properties", err);
	if (r < 0)
		return r;
	for (int i = optind + 1; i < argc; i++) {
		r = flag_property(cmd, &f, argv[i], err);
		if (r < 0)
			return r;
	}
	r = target_open(argv[optind], true, &t, err);
	if (r < 0)
		return r;
	body = json_pack("{s:{s:s, s:s}, s:b, s:o, s:o}", "source", "type",
			 strchr(t.name, '/') ? "snapshot" : "instance", "name", t.name, "public",
			 f.public, "properties",
			 f.properties ? json_incref(f.properties) : json_object(), "aliases",
			 f.aliases ? json_incref(f.aliases) : json_array());
	if (!body || (compression && json_object_set_new(body, "compression_algorithm",
							 json_string(compression)) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = post_image_json(t.c, body, "Publishing instance", &fp, err);
	if (r < 0)
		return lxm_error_prefix(err, "publish '%s'", t.name);
	printf("Instance published with fingerprint: %s\n", fp);
	return 0;
}

const struct lxm_command lxm_image_commands[] = {
	{
		.name = "alias",
		.run = image_alias,
		.summary = "Manage image aliases",
		.usage = "image alias <command>",
		.subcommands = lxm_image_alias_commands,
	},
	{
		.name = "build",
		.run = image_build,
		.summary = "Build an image from a template",
		.usage = "image build TEMPLATE [flags]",
		.help = "Flags:\n"
			"      --release R   Release of the distribution (debian: trixie, "
			"bookworm)\n"
			"      --alias A     Alias of the new image (repeatable)\n"
			"      --public      Serve the image to other hosts\n",
	},
	{
		.name = "copy",
		.alias = "cp",
		.run = image_copy,
		.summary = "Copy an image between remotes",
		.usage = "image copy [REMOTE:]IMAGE REMOTE: [flags]",
		.help = "From another lxmd (a unix:// remote) the image is streamed from its "
			"export\n"
			"into an import; a simplestreams remote's image is pulled by the target.\n"
			"\n"
			"Flags:\n"
			"      --alias A        Alias of the copy (repeatable)\n"
			"      --copy-aliases   Give the copy the aliases of the source\n"
			"      --public         Serve the copy to other hosts\n",
	},
	LXM_CMD_DELETE(image_delete, "Delete images", "image delete [REMOTE:]IMAGE..."),
	{
		.name = "edit",
		.run = image_edit,
		.summary = "Edit an image's properties as YAML",
		.usage = "image edit [REMOTE:]IMAGE",
		.help = "Opens $VISUAL or $EDITOR (default vi) on the image's editable fields, or\n"
			"reads the YAML from standard input when it is not a terminal.\n",
	},
	{
		.name = "export",
		.run = image_export,
		.summary = "Export an image's files",
		.usage = "image export [REMOTE:]IMAGE [DIRECTORY|FILE]",
		.help = "Into DIRECTORY (default: the current one) under the image's file names;\n"
			"to FILE (and FILE.root for the rootfs of a split image). The files are\n"
			"checked against the image's fingerprint and removed if they differ.\n",
	},
	{
		.name = "import",
		.run = image_import,
		.summary = "Import an image from its files",
		.usage = "image import FILE [ROOTFS] [REMOTE:] [flags]",
		.help = "FILE is a unified image (metadata.yaml and rootfs/ in one tarball), or "
			"the\n"
			"metadata tarball of a split image whose ROOTFS follows.\n"
			"\n"
			"Flags:\n"
			"      --alias A          Alias of the image (repeatable)\n"
			"      --public           Serve the image to other hosts\n"
			"      --property K=V     Image property (repeatable)\n",
	},
	LXM_CMD("info", image_info, "Show useful information about an image",
		"image info [REMOTE:]IMAGE"),
	{
		.name = "list",
		.alias = "ls",
		.run = image_list,
		.summary = "List images",
		.usage = "image list [REMOTE:] [FILTER...] [flags]",
		.help = "A FILTER is KEY=VALUE on the image's properties, or part of an alias or\n"
			"the start of a fingerprint. All filters must match.\n"
			"\n"
			"Flags:\n"
			"  -f, --format FMT   table (default), csv, json or yaml\n",
	},
	{
		.name = "refresh",
		.run = image_refresh,
		.summary = "Refresh images",
		.usage = "image refresh [REMOTE:]IMAGE...",
		.help = "An image pulled from a simplestreams server is replaced by the newest "
			"version\n"
			"of its alias there; an image built by a template is built again. Its "
			"aliases\n"
			"move to the new image.\n",
	},
	LXM_CMD("show", image_show, "Show an image's editable fields as YAML",
		"image show [REMOTE:]IMAGE"),
	{},
};
