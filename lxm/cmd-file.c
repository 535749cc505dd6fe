/* lxm file push, pull and delete: files inside instances, with lxc's syntax (NAME/PATH names the
 * instance side). Content is streamed both ways: neither side holds a whole file in memory. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/commands.h"

/* Symlinks followed for a path named on the command line, as many as the kernel follows. */
#define MAX_LINK_HOPS 40

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

/* ---- paths ---- */

/* NAME/PATH: "c1/etc/hosts" is /etc/hosts in c1. */
struct remote {
	char *name; /* the instance */
	char *path; /* absolute path inside it */
};

static void remote_done(struct remote *r)
{
	free(r->name);
	free(r->path);
}

static int parse_remote(const char *cmd, const char *arg, struct remote *ret,
			struct lxm_error **err)
{
	const char *slash = strchr(arg, '/');

	if (!slash || slash == arg)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: '%s' is not NAME/PATH (an instance and a path in it, "
				     "e.g. c1/etc/hosts)",
				     cmd, arg);
	ret->name = strndup(arg, (size_t)(slash - arg));
	ret->path = strdup(slash);
	if (!ret->name || !ret->path) {
		remote_done(ret);
		return -ENOMEM;
	}
	return 0;
}

static char *path_join(const char *dir, const char *name)
{
	char *p;
	size_t len = strlen(dir);

	if (asprintf(&p, "%s%s%s", dir, len && dir[len - 1] == '/' ? "" : "/", name) < 0)
		return NULL;
	return p;
}

/* The last component, trailing slashes ignored ("" for "/"). */
static char *base_name(const char *path)
{
	size_t len = strlen(path);
	const char *start;

	while (len > 1 && path[len - 1] == '/')
		len--;
	start = path + len;
	while (start > path && start[-1] != '/')
		start--;
	return strndup(start, (size_t)(path + len - start));
}

/* Everything before the last component: "/a/b" -> "/a", "b" -> ".", "/b" -> "/". */
static char *dir_name(const char *path)
{
	size_t len = strlen(path);

	while (len > 1 && path[len - 1] == '/')
		len--;
	while (len > 0 && path[len - 1] != '/')
		len--;
	while (len > 1 && path[len - 1] == '/')
		len--;
	if (len == 0)
		return strdup(".");
	return strndup(path, len);
}

static bool ends_with_slash(const char *s)
{
	size_t len = strlen(s);

	return len > 0 && s[len - 1] == '/';
}

static char *files_url(const char *name, const char *path)
{
	_cleanup_free_ char *n = lxm_url_escape(name), *p = lxm_url_escape(path);
	char *url;

	if (!n || !p || asprintf(&url, "/1.0/instances/%s/files?path=%s", n, p) < 0)
		return NULL;
	return url;
}

/* ---- push ---- */

struct push_opts {
	const char *cmd;      /* "file push", for messages */
	struct lxm_client *c; /* the connection */
	const char *name;     /* the instance */
	bool recursive;	      /* -r */
	bool parents;	      /* -p */
	long mode, uid, gid;  /* --mode, --uid, --gid; -1: from the local file */
};

/* One POST .../files. mode/uid/gid < 0 are not sent (the server keeps or defaults them). The
 * body comes from fd (size bytes, -1: unknown) or is data. */
static int post(struct push_opts *o, const char *path, const char *type, long mode, long uid,
		long gid, int fd, int64_t size, const char *data, size_t len,
		struct lxm_error **err)
{
	_cleanup_free_ char *url = files_url(o->name, path);
	char h_type[48], h_mode[48], h_uid[48], h_gid[48];
	const char *headers[6];
	struct lxm_client_file f = {
		.headers = headers,
		.upload_fd = fd,
		.upload_size = size,
		.upload_data = data,
		.upload_len = len,
	};
	size_t n = 0;
	int k;

	if (!url)
		return -ENOMEM;
	snprintf(h_type, sizeof(h_type), "X-LXD-type: %s", type);
	headers[n++] = h_type;
	if (mode >= 0) {
		snprintf(h_mode, sizeof(h_mode), "X-LXD-mode: %04lo", (unsigned long)mode);
		headers[n++] = h_mode;
	}
	if (uid >= 0) {
		snprintf(h_uid, sizeof(h_uid), "X-LXD-uid: %ld", uid);
		headers[n++] = h_uid;
	}
	if (gid >= 0) {
		snprintf(h_gid, sizeof(h_gid), "X-LXD-gid: %ld", gid);
		headers[n++] = h_gid;
	}
	if (streq(type, "file"))
		headers[n++] = "X-LXD-write: overwrite";
	headers[n] = NULL;
	k = lxm_client_file_request(o->c, "POST", url, &f, err);
	lxm_client_file_done(&f);
	return k;
}

/* -p: the directories above path, created where missing. They are sent without mode or owner,
 * so existing ones stay as they are and new ones are 0755 root:root, as lxc makes them. */
static int push_parents(struct push_opts *o, const char *path, struct lxm_error **err)
{
	_cleanup_free_ char *dir = dir_name(path);
	int k;

	if (!dir)
		return -ENOMEM;
	for (char *s = dir + 1;; s++) {
		if (*s && *s != '/')
			continue;
		char end = *s;

		*s = '\0';
		if (strlen(dir) > 1 &&
		    (k = post(o, dir, "directory", -1, -1, -1, -1, -1, NULL, 0, err)) < 0)
			return k;
		if (!end)
			return 0;
		*s = '/';
	}
}

static int push_file(struct push_opts *o, const char *local, const char *path,
		     struct lxm_error **err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (streq(local, "-"))
		return post(o, path, "file", o->mode >= 0 ? o->mode : 0644, o->uid, o->gid,
			    STDIN_FILENO, -1, NULL, 0, err);
	fd = open(local, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 400, "%s: %s: open", o->cmd, local);
	if (fstat(fd, &st) < 0)
		return lxm_error_setx(err, -errno, 400, "%s: %s: stat", o->cmd, local);
	if (S_ISDIR(st.st_mode))
		return lxm_error_set(err, -EISDIR, 400, "%s: %s: is a directory (use -r)", o->cmd,
				     local);
	/* Like lxc: mode and owner of the local file unless the flags say otherwise. */
	return post(o, path, "file", o->mode >= 0 ? o->mode : (long)(st.st_mode & 07777),
		    o->uid >= 0 ? o->uid : (long)st.st_uid, o->gid >= 0 ? o->gid : (long)st.st_gid,
		    fd, S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1, NULL, 0, err);
}

static int push_tree(struct push_opts *o, const char *local, const char *path,
		     struct lxm_error **err)
{
	_cleanup_(closedirp) DIR *dir = NULL;
	long uid, gid;
	struct stat st;
	struct dirent *de;
	int k;

	if (lstat(local, &st) < 0)
		return lxm_error_setx(err, -errno, 400, "%s: %s: stat", o->cmd, local);
	uid = o->uid >= 0 ? o->uid : (long)st.st_uid;
	gid = o->gid >= 0 ? o->gid : (long)st.st_gid;
	if (S_ISREG(st.st_mode))
		return push_file(o, local, path, err);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(local, target, sizeof(target));

		if (n < 0 || n >= (ssize_t)sizeof(target))
			return lxm_error_setx(err, n < 0 ? -errno : -ENAMETOOLONG, 400,
					      "%s: %s: read symlink", o->cmd, local);
		return post(o, path, "symlink", -1, uid, gid, -1, -1, target, (size_t)n, err);
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "Warning: %s: skipped (not a file, directory or symlink)\n", local);
		return 0;
	}
	/* --mode is for files; a directory keeps its own. */
	k = post(o, path, "directory", (long)(st.st_mode & 07777), uid, gid, -1, -1, NULL, 0, err);
	if (k < 0)
		return k;
	dir = opendir(local);
	if (!dir)
		return lxm_error_setx(err, -errno, 400, "%s: %s: open directory", o->cmd, local);
	for (;;) {
		_cleanup_free_ char *l = NULL, *p = NULL;

		errno = 0;
		de = readdir(dir);
		if (!de) {
			if (errno)
				return lxm_error_setx(err, -errno, 400, "%s: %s: read directory",
						      o->cmd, local);
			return 0;
		}
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		l = path_join(local, de->d_name);
		p = path_join(path, de->d_name);
		if (!l || !p)
			return -ENOMEM;
		k = push_tree(o, l, p, err);
		if (k < 0)
			return k;
	}
}

/* A mode, uid or gid flag: a number in base (8 or 10) that fits max. */
static int parse_number_flag(const char *cmd, const char *flag, const char *v, int base, long max,
			     long *ret, struct lxm_error **err)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, base);
	if (errno || !*v || *end || n < 0 || n > max)
		return lxm_error_set(err, -EINVAL, 400, "%s: invalid %s '%s'%s", cmd, flag, v,
				     base == 8 ? " (octal, e.g. 0644)" : "");
	*ret = n;
	return 0;
}

static int file_push(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "recursive", no_argument, NULL, 'r' },  { "create-dirs", no_argument, NULL, 'p' },
		{ "mode", required_argument, NULL, 'm' }, { "uid", required_argument, NULL, 'u' },
		{ "gid", required_argument, NULL, 'g' },  {},
	};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_(remote_done) struct remote target = {};
	struct push_opts o = { .cmd = argv[0], .mode = -1, .uid = -1, .gid = -1 };
	bool into_dir;
	int opt, nsrc, k;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":rp", options, NULL)) != -1) {
		switch (opt) {
		case 'r':
			o.recursive = true;
			break;
		case 'p':
			o.parents = true;
			break;
		case 'm':
			k = parse_number_flag(o.cmd, "--mode", optarg, 8, 07777, &o.mode, err);
			break;
		case 'u':
			k = parse_number_flag(o.cmd, "--uid", optarg, 10, 0xfffffffe, &o.uid, err);
			break;
		case 'g':
			k = parse_number_flag(o.cmd, "--gid", optarg, 10, 0xfffffffe, &o.gid, err);
			break;
		default:
			return lxm_cli_flag_error(o.cmd, argv, opt, err);
		}
		if (opt != 'r' && opt != 'p' && k < 0)
			return k;
	}
	k = lxm_cli_nargs(o.cmd, argc - optind, 2, -1, "SOURCE... NAME/PATH", err);
	if (k < 0)
		return k;
	nsrc = argc - optind - 1;
	k = lxm_cli_target_name(o.cmd, &argv[argc - 1], err);
	if (k < 0)
		return k;
	k = parse_remote(o.cmd, argv[argc - 1], &target, err);
	if (k < 0)
		return k;
	/* Like lxc: several sources, -r or a trailing slash put each source in that directory. */
	into_dir = o.recursive || nsrc > 1 || ends_with_slash(target.path);
	k = lxm_cli_connect(&c, err);
	if (k < 0)
		return k;
	o.c = c;
	o.name = target.name;
	for (int i = optind; i < argc - 1; i++) {
		const char *src = argv[i];
		_cleanup_free_ char *base = NULL, *dst = NULL;

		if (streq(src, "-") && into_dir)
			return lxm_error_set(err, -EINVAL, 400,
					     "%s: standard input ('-') needs a file NAME/PATH as "
					     "the target",
					     o.cmd);
		base = base_name(src);
		dst = into_dir ? path_join(target.path, base ? base : "") : strdup(target.path);
		if (!base || !dst)
			return -ENOMEM;
		if (o.parents && (k = push_parents(&o, dst, err)) < 0)
			return k;
		k = o.recursive ? push_tree(&o, src, dst, err) : push_file(&o, src, dst, err);
		if (k < 0)
			return k;
	}
	return 0;
}

/* ---- pull ---- */

struct pull_opts {
	const char *cmd;      /* "file pull", for messages */
	struct lxm_client *c; /* the connection */
	const char *name;     /* the instance */
	bool recursive;	      /* -r */
};

/* Where a pulled file's content goes: a temporary file beside the destination, made on the
 * first byte and renamed into place at the end, or standard output. */
struct download {
	const char *local; /* the destination, "-" for standard output */
	char *tmp;	   /* the temporary file, or NULL */
	int fd;		   /* open on tmp (or stdout), or -1 */
};

static int download_open(struct download *d)
{
	_cleanup_free_ char *dir = NULL, *base = NULL;

	if (d->fd >= 0)
		return 0;
	if (streq(d->local, "-")) {
		d->fd = STDOUT_FILENO;
		return 0;
	}
	dir = dir_name(d->local);
	base = base_name(d->local);
	if (!dir || !base || asprintf(&d->tmp, "%s/.%s.lxm-pull.XXXXXX", dir, base) < 0)
		return -ENOMEM;
	d->fd = mkostemp(d->tmp, O_CLOEXEC);
	if (d->fd < 0) {
		int k = -errno;

		free(d->tmp);
		d->tmp = NULL;
		return k;
	}
	return 0;
}

static int download_write(const char *data, size_t len, void *ud)
{
	struct download *d = ud;
	int k = download_open(d);

	return k < 0 ? k : lxm_write_all(d->fd, data, len);
}

/* Drops a temporary file that will not be used. */
static void download_abort(struct download *d)
{
	if (d->tmp) {
		unlink(d->tmp);
		free(d->tmp);
		d->tmp = NULL;
	}
	if (d->fd > STDERR_FILENO)
		close(d->fd);
	d->fd = -1;
}

static int download_finish(struct pull_opts *o, struct download *d, long mode,
			   struct lxm_error **err)
{
	int k = download_open(d);

	if (k < 0)
		return lxm_error_setx(err, k, 500, "%s: %s: create", o->cmd, d->local);
	if (!d->tmp)
		return 0; /* standard output */
	if (fchmod(d->fd, mode >= 0 ? (mode_t)(mode & 07777) : 0644) < 0 || close(d->fd) < 0) {
		d->fd = -1;
		return lxm_error_setx(err, -errno, 500, "%s: %s: write", o->cmd, d->local);
	}
	d->fd = -1;
	if (rename(d->tmp, d->local) < 0)
		return lxm_error_setx(err, -errno, 500, "%s: %s: rename into place", o->cmd,
				      d->local);
	free(d->tmp);
	d->tmp = NULL;
	return 0;
}

static int pull_one(struct pull_opts *o, const char *path, const char *local, bool top, int hops,
		    struct lxm_error **err);

static int pull_directory(struct pull_opts *o, const char *path, const char *local,
			  const struct lxm_client_file *f, struct lxm_error **err)
{
	struct stat st;
	json_t *e;
	size_t i;
	int k;

	if (!o->recursive)
		return lxm_error_set(err, -EISDIR, 400, "%s: %s/%s: is a directory (use -r)",
				     o->cmd, o->name, path + 1);
	if (streq(local, "-"))
		return lxm_error_set(err, -EISDIR, 400,
				     "%s: %s/%s: a directory cannot go to standard output", o->cmd,
				     o->name, path + 1);
	if (mkdir(local, 0700) < 0 &&
	    (errno != EEXIST || stat(local, &st) < 0 || !S_ISDIR(st.st_mode)))
		return lxm_error_setx(err, errno == EEXIST ? -ENOTDIR : -errno, 400,
				      "%s: %s: create directory", o->cmd, local);
	json_array_foreach (f->metadata, i, e) {
		const char *entry = json_string_value(e);
		_cleanup_free_ char *p = NULL, *l = NULL;

		/* The server's names; none may climb out of the destination. */
		if (!entry || !*entry || strchr(entry, '/') || streq(entry, ".") ||
		    streq(entry, ".."))
			continue;
		p = path_join(path, entry);
		l = path_join(local, entry);
		if (!p || !l)
			return -ENOMEM;
		k = pull_one(o, p, l, false, 0, err);
		if (k < 0)
			return k;
	}
	/* The mode last: a read-only directory must first be filled. */
	if (f->mode >= 0 && chmod(local, (mode_t)(f->mode & 07777)) < 0)
		return lxm_error_setx(err, -errno, 500, "%s: %s: set mode", o->cmd, local);
	return 0;
}

/* A symlink inside a tree is made again as a symlink; one named on the command line is
 * followed (inside the instance) to what it points at. */
static int pull_symlink(struct pull_opts *o, const char *path, const char *local, bool top,
			int hops, const struct lxm_client_file *f, struct lxm_error **err)
{
	_cleanup_free_ char *target = strndup(f->body, f->body_len), *dir = NULL, *next = NULL;
	struct stat st;

	if (!target)
		return -ENOMEM;
	if (!top) {
		if (lstat(local, &st) == 0 && !S_ISDIR(st.st_mode))
			unlink(local);
		if (symlink(target, local) < 0)
			return lxm_error_setx(err, -errno, 500, "%s: %s: create symlink", o->cmd,
					      local);
		return 0;
	}
	if (hops >= MAX_LINK_HOPS)
		return lxm_error_set(err, -ELOOP, 400,
				     "%s: %s/%s: too many levels of symbolic links", o->cmd,
				     o->name, path + 1);
	if (target[0] == '/') {
		next = TAKE_PTR(target);
	} else {
		dir = dir_name(path);
		next = dir ? path_join(dir, target) : NULL;
	}
	if (!next)
		return -ENOMEM;
	return pull_one(o, next, local, true, hops + 1, err);
}

static int pull_one(struct pull_opts *o, const char *path, const char *local, bool top, int hops,
		    struct lxm_error **err)
{
	_cleanup_free_ char *url = files_url(o->name, path);
	struct download d = { .local = local, .fd = -1 };
	struct lxm_client_file f = {
		.upload_fd = -1,
		.sink = download_write,
		.sink_ud = &d,
	};
	int k;

	if (!url)
		return -ENOMEM;
	k = lxm_client_file_request(o->c, "GET", url, &f, err);
	if (k >= 0) {
		if (streq(f.type, "directory"))
			k = pull_directory(o, path, local, &f, err);
		else if (streq(f.type, "symlink"))
			k = pull_symlink(o, path, local, top, hops, &f, err);
		else
			k = download_finish(o, &d, f.mode, err);
	}
	download_abort(&d);
	lxm_client_file_done(&f);
	return k;
}

static int file_pull(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "recursive", no_argument, NULL, 'r' },
		{ "create-dirs", no_argument, NULL, 'p' },
		{},
	};
	_cleanup_client_ struct lxm_client *c = NULL;
	struct pull_opts o = { .cmd = argv[0] };
	bool parents = false, dest_dir;
	const char *dest;
	struct stat st;
	int opt, nsrc, k;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":rp", options, NULL)) != -1) {
		switch (opt) {
		case 'r':
			o.recursive = true;
			break;
		case 'p':
			parents = true;
			break;
		default:
			return lxm_cli_flag_error(o.cmd, argv, opt, err);
		}
	}
	k = lxm_cli_nargs(o.cmd, argc - optind, 2, -1, "NAME/PATH... DEST", err);
	if (k < 0)
		return k;
	nsrc = argc - optind - 1;
	dest = argv[argc - 1];
	/* The sources name a remote (REMOTE:NAME/PATH), DEST is always local. */
	for (int i = optind; i < argc - 1; i++)
		if ((k = lxm_cli_target_name(o.cmd, &argv[i], err)) < 0)
			return k;
	dest_dir = stat(dest, &st) == 0 && S_ISDIR(st.st_mode);
	if (streq(dest, "-")) {
		if (nsrc > 1)
			return lxm_error_set(err, -EINVAL, 400,
					     "%s: only one file can go to standard output", o.cmd);
	} else if (!dest_dir && (nsrc > 1 || ends_with_slash(dest))) {
		if (!parents)
			return lxm_error_set(err, -ENOTDIR, 400,
					     "%s: %s is not a directory (-p creates it)", o.cmd,
					     dest);
		if ((k = lxm_mkdir_p(dest, 0755)) < 0)
			return lxm_error_setx(err, k, 400, "%s: %s: create directory", o.cmd, dest);
		dest_dir = true;
	} else if (!dest_dir && parents) {
		_cleanup_free_ char *dir = dir_name(dest);

		if (!dir)
			return -ENOMEM;
		if ((k = lxm_mkdir_p(dir, 0755)) < 0)
			return lxm_error_setx(err, k, 400, "%s: %s: create directory", o.cmd, dir);
	}
	k = lxm_cli_connect(&c, err);
	if (k < 0)
		return k;
	o.c = c;
	for (int i = optind; i < argc - 1; i++) {
		_cleanup_(remote_done) struct remote src = {};
		_cleanup_free_ char *base = NULL, *local = NULL;

		k = parse_remote(o.cmd, argv[i], &src, err);
		if (k < 0)
			return k;
		o.name = src.name;
		base = base_name(src.path);
		if (!base)
			return -ENOMEM;
		/* Pulling "/" into a directory: the copy is named after the instance. */
		local = dest_dir ? path_join(dest, *base ? base : src.name) : strdup(dest);
		if (!local)
			return -ENOMEM;
		k = pull_one(&o, src.path, local, true, 0, err);
		if (k < 0)
			return k;
	}
	return 0;
}

/* ---- delete ---- */

static int file_delete(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	const char *cmd = argv[0];
	int opt, k;

	optind = 0;
	opterr = 0;
	while ((opt = getopt(argc, argv, ":")) != -1)
		return lxm_cli_flag_error(cmd, argv, opt, err);
	k = lxm_cli_nargs(cmd, argc - optind, 1, -1, "NAME/PATH...", err);
	for (int i = optind; k >= 0 && i < argc; i++)
		k = lxm_cli_target_name(cmd, &argv[i], err);
	if (k < 0)
		return k;
	k = lxm_cli_connect(&c, err);
	if (k < 0)
		return k;
	for (int i = optind; i < argc; i++) {
		_cleanup_(remote_done) struct remote r = {};
		_cleanup_free_ char *url = NULL;

		k = parse_remote(cmd, argv[i], &r, err);
		if (k < 0)
			return k;
		url = files_url(r.name, r.path);
		if (!url)
			return -ENOMEM;
		k = lxm_client_request(c, "DELETE", url, NULL, NULL, NULL, err);
		if (k < 0)
			return k;
	}
	return 0;
}

const struct lxm_command lxm_file_commands[] = {
	LXM_CMD_DELETE(file_delete, "Delete files (or empty directories) in instances",
		       "file delete NAME/PATH..."),
	{
		.name = "pull",
		.run = file_pull,
		.summary = "Pull files from instances",
		.usage = "file pull [flags] [REMOTE:]NAME/PATH... DEST",
		.help = "DEST is a file, or an existing directory that receives each source by "
			"its\n"
			"name ('-' writes a single file to standard output). A symlink given as\n"
			"NAME/PATH is followed inside the instance; -r copies symlinks as they "
			"are.\n"
			"Files get the instance file's mode; they belong to the local user.\n"
			"\n"
			"Flags:\n"
			"  -r, --recursive     Pull directories with their content\n"
			"  -p, --create-dirs   Create DEST (or its parent) when missing\n",
	},
	{
		.name = "push",
		.run = file_push,
		.summary = "Push files into instances",
		.usage = "file push [flags] SOURCE... [REMOTE:]NAME/PATH",
		.help = "With several sources, -r, or a PATH ending in '/', each source goes into\n"
			"the directory PATH by its name. SOURCE '-' is standard input. Mode and\n"
			"owner come from the local file unless given; ids are the instance's.\n"
			"\n"
			"Flags:\n"
			"  -r, --recursive     Push directories with their content (and symlinks)\n"
			"  -p, --create-dirs   Create missing parent directories (0755, root)\n"
			"      --mode MODE     File mode, octal (e.g. 0644)\n"
			"      --uid UID       Owner id in the instance\n"
			"      --gid GID       Group id in the instance\n",
	},
	{},
};
