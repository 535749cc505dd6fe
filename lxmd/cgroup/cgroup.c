/* The cgroup front-end: finds the hierarchies in mountinfo, picks the driver for the host's mode,
 * checks arguments and names the instance in every error. Also the file and tree helpers both
 * drivers share. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "util.h"

#include "cgroup-internal.h"

/* The driver for each mode: on hybrid and legacy hosts the controllers are on v1 hierarchies, so
 * the v1 driver also makes the (controller-less) v2 dir a hybrid host has. */
static const struct cgroup_ops *const cgroup_drivers[_LXM_CGROUP_MODE_MAX] = {
	[LXM_CGROUP_UNIFIED] = &cgroup_v2_ops,
	[LXM_CGROUP_HYBRID] = &cgroup_v1_ops,
	[LXM_CGROUP_LEGACY] = &cgroup_v1_ops,
};

/* Deeper than any cgroup tree a container makes; stops a walk that would never end. */
#define CGROUP_WALK_MAX_DEPTH 32

/* ---- file helpers ---- */

char *cgroup_path(const char *dir, const char *file)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, file) < 0)
		return NULL;
	return p;
}

bool cgroup_has_controller(const struct cgroup_hierarchy *h, const char *controller)
{
	for (char **c = h->controllers; *c; c++)
		if (streq(*c, controller))
			return true;
	return false;
}

int cgroup_mkdir(const char *path, struct lxm_error **err)
{
	if (mkdir(path, 0755) == 0)
		return 1;
	if (errno == EEXIST)
		return 0;
	return lxm_error_setx(err, -errno, 500, "mkdir %s", path);
}

int cgroup_write(const char *dir, const char *file, const char *value)
{
	_cleanup_free_ char *path = cgroup_path(dir, file);
	_cleanup_close_ int fd = -1;
	size_t len;
	ssize_t n;

	if (!path)
		return -ENOMEM;
	/* cgroupfs strips whitespace, so a newline is the empty value; a zero-length write() is
	 * not guaranteed to reach the file's handler at all. */
	if (!*value)
		value = "\n";
	len = strlen(value);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do
		n = write(fd, value, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

int64_t cgroup_io_weight(int64_t priority)
{
	static const int64_t weight[] = { 10, 16, 25, 40, 63, 100, 160, 250, 400, 630, 1000 };

	if (priority < 0)
		return 100;
	return weight[priority > 10 ? 10 : priority];
}

int cgroup_set(const char *dir, const char *file, const char *value, bool optional,
	       struct lxm_error **err)
{
	int r = cgroup_write(dir, file, value);

	if (r == 0)
		return 0;
	if (r == -ENOENT && access(dir, F_OK) < 0)
		return lxm_error_setx(err, -ENOENT, 404, "set %s: %s", file, dir);
	if (r == -ENOENT) {
		if (optional)
			return 0;
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "set %s to %s: %s/%s: the %.*s controller is not available",
				     file, *value ? value : "\"\"", dir, file,
				     (int)strcspn(file, "."), file);
	}
	/* The kernel answers EINVAL or ERANGE to a value it will not take (a cpu list beyond the
	 * host's, a quota under 1 ms): the request is wrong, not the host. */
	return lxm_error_setx(err, r, r == -EINVAL || r == -ERANGE ? 400 : 500,
			      "set %s to %s: %s/%s", file, *value ? value : "\"\"", dir, file);
}

int cgroup_set_int64(const char *dir, const char *file, int64_t value, bool optional,
		     struct lxm_error **err)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, value);
	return cgroup_set(dir, file, buf, optional, err);
}

int cgroup_read(const char *dir, const char *file, char **ret)
{
	_cleanup_free_ char *path = cgroup_path(dir, file);
	char *buf;
	size_t len;
	int r;

	if (!path)
		return -ENOMEM;
	r = lxm_read_file(path, &buf, &len);
	if (r < 0)
		return r;
	while (len > 0 && strchr(" \t\n", buf[len - 1]))
		buf[--len] = '\0';
	*ret = buf;
	return 0;
}

static int parse_int64(const char *s, int64_t *ret)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || (*end && !strchr(" \t\n", *end)))
		return -EBADMSG;
	*ret = v;
	return 0;
}

int cgroup_read_int64(const char *dir, const char *file, int64_t *ret)
{
	_cleanup_free_ char *s = NULL;
	int r = cgroup_read(dir, file, &s);

	if (r < 0)
		return r;
	return parse_int64(s, ret);
}

int cgroup_read_key_int64(const char *dir, const char *file, const char *key, int64_t *ret)
{
	_cleanup_free_ char *s = NULL;
	size_t klen = strlen(key);
	int r = cgroup_read(dir, file, &s);

	if (r < 0)
		return r;
	for (char *line = s; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
			return parse_int64(line + klen + 1, ret);
	return -ENODATA;
}

int cgroup_count_procs(const char *dir, int64_t *ret)
{
	_cleanup_free_ char *s = NULL;
	int64_t n = 0;
	int r = cgroup_read(dir, "cgroup.procs", &s);

	if (r < 0)
		return r;
	for (char *p = s; *p; p++)
		if (*p != '\n' && (p == s || p[-1] == '\n'))
			n++;
	*ret = n;
	return 0;
}

void cgroup_poll_sleep(void)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = CGROUP_POLL_MS * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- trees ---- */

typedef int (*cgroup_walk_fn)(const char *dir, void *userdata);

/* Calls fn on dir and on every cgroup below it: parents first, or children first when post (the
 * order rmdir needs). A dir that vanished meanwhile is skipped; the first failure stops the
 * walk. */
static int cgroup_walk(const char *dir, bool post, cgroup_walk_fn fn, void *userdata,
		       unsigned depth)
{
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (depth > CGROUP_WALK_MAX_DEPTH)
		return -ELOOP;
	if (!post) {
		r = fn(dir, userdata);
		if (r < 0)
			return r;
	}
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (r >= 0 && (de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;
		struct stat st;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (de->d_type == DT_UNKNOWN &&
		    (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		     !S_ISDIR(st.st_mode)))
			continue;
		sub = cgroup_path(dir, de->d_name);
		r = sub ? cgroup_walk(sub, post, fn, userdata, depth + 1) : -ENOMEM;
	}
	closedir(d);
	if (r < 0)
		return r;
	return post ? fn(dir, userdata) : 0;
}

struct cgroup_set_ctx {
	const char *file;  /* control file to write in each cgroup */
	const char *value; /* what to write */
};

static int cgroup_set_one(const char *dir, void *userdata)
{
	const struct cgroup_set_ctx *c = userdata;
	int r = cgroup_write(dir, c->file, c->value);

	return r == -ENOENT ? 0 : r;
}

int cgroup_set_tree(const char *dir, const char *file, const char *value)
{
	struct cgroup_set_ctx c = { .file = file, .value = value };

	return cgroup_walk(dir, false, cgroup_set_one, &c, 0);
}

static int cgroup_kill_procs(const char *dir, void *userdata)
{
	_cleanup_free_ char *s = NULL;
	char *line, *save = NULL;
	int r = cgroup_read(dir, "cgroup.procs", &s);

	(void)userdata;
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int64_t pid;

		/* A pid that exited since the read is ESRCH: what we wanted anyway. */
		if (parse_int64(line, &pid) == 0 && pid > 0 && pid <= INT32_MAX)
			(void)kill((pid_t)pid, SIGKILL);
	}
	return 0;
}

int cgroup_kill(const char *dir)
{
	/* cgroup.kill takes the whole subtree at once and, unlike a pid walk, cannot miss a task
	 * that forks meanwhile nor hit a pid that was reused. */
	if (cgroup_write(dir, "cgroup.kill", "1") == 0)
		return 0;
	return cgroup_walk(dir, false, cgroup_kill_procs, NULL, 0);
}

struct cgroup_rmdir_ctx {
	char *failed; /* the dir rmdir refused, for the message */
};

static int cgroup_rmdir_one(const char *dir, void *userdata)
{
	struct cgroup_rmdir_ctx *c = userdata;

	if (rmdir(dir) == 0 || errno == ENOENT)
		return 0;
	free(c->failed);
	c->failed = strdup(dir);
	return -errno;
}

int cgroup_remove(char *const *dirs, size_t n, struct lxm_error **err)
{
	uint64_t deadline = lxm_monotonic_ms() + CGROUP_REMOVE_TIMEOUT_MS;

	for (;;) {
		_cleanup_free_ char *busy = NULL;

		for (size_t i = 0; i < n; i++) {
			struct cgroup_rmdir_ctx c = { .failed = NULL };
			int r = cgroup_walk(dirs[i], true, cgroup_rmdir_one, &c, 0);

			if (r == -EBUSY) {
				/* Tasks are still exiting, or new ones came in: kill again. */
				(void)cgroup_kill(dirs[i]);
				free(busy);
				busy = c.failed ? c.failed : strdup(dirs[i]);
				continue;
			}
			if (r < 0) {
				r = lxm_error_setx(err, r, 500, "remove %s",
						   c.failed ? c.failed : dirs[i]);
				free(c.failed);
				return r;
			}
		}
		if (!busy)
			return 0;
		if (lxm_monotonic_ms() >= deadline)
			return lxm_error_set(err, -EBUSY, 500,
					     "remove %s: still busy %d ms after killing its tasks",
					     busy, CGROUP_REMOVE_TIMEOUT_MS);
		cgroup_poll_sleep();
	}
}

void cgroup_rmdir_quiet(char *const *dirs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (dirs[i])
			(void)rmdir(dirs[i]);
}

/* ---- detection ---- */

static void cgroup_hierarchy_clear(struct cgroup_hierarchy *h)
{
	free(h->mount);
	lxm_strv_free(h->controllers);
	free(h->name);
}

void lxm_cgroup_layout_free(struct lxm_cgroup_layout *l)
{
	if (!l)
		return;
	if (l->v2)
		cgroup_hierarchy_clear(l->v2);
	free(l->v2);
	for (size_t i = 0; i < l->n_v1; i++)
		cgroup_hierarchy_clear(&l->v1[i]);
	free(l->v1);
	free(l->prefix);
	free(l->v1_payload);
	free(l->v2_prefix);
	free(l);
}

static void lxm_cgroup_layout_freep(struct lxm_cgroup_layout **l)
{
	lxm_cgroup_layout_free(*l);
}

enum lxm_cgroup_mode lxm_cgroup_mode(const struct lxm_cgroup_layout *l)
{
	return l->mode;
}

bool lxm_cgroup_controller_available(const struct lxm_cgroup_layout *l, const char *controller)
{
	if (l->mode == LXM_CGROUP_UNIFIED)
		return l->v2 && cgroup_has_controller(l->v2, controller);
	for (size_t i = 0; i < l->n_v1; i++)
		if (cgroup_has_controller(&l->v1[i], controller))
			return true;
	/* The v1 driver limits huge pages on the v2 hierarchy when no v1 one has hugetlb. */
	return streq(controller, "hugetlb") && l->v2 && cgroup_has_controller(l->v2, controller);
}

static int strv_push(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strdup(s);
	if (!nv[*n])
		return -ENOMEM;
	nv[++*n] = NULL;
	return 0;
}

static bool strv_equal(char **a, char **b)
{
	for (; *a && *b; a++, b++)
		if (!streq(*a, *b))
			return false;
	return !*a && !*b;
}

/* Splits a v1 super options field ("rw,cpu,cpuacct", "rw,xattr,name=systemd") into the
 * controllers and the name. Everything else there is a mount flag. */
static int parse_v1_options(const char *options, struct cgroup_hierarchy *h)
{
	static const char *const flags[] = { "rw",	 "ro",
					     "noprefix", "clone_children",
					     "xattr",	 "cpuset_v2_mode",
					     "none",	 "favordynmods" };
	_cleanup_free_ char *copy = strdup(options);
	char *opt, *save = NULL;
	size_t n = 0;

	if (!copy)
		return -ENOMEM;
	h->controllers = calloc(1, sizeof(char *));
	if (!h->controllers)
		return -ENOMEM;
	for (opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		bool flag = false;

		if (startswith(opt, "name=")) {
			free(h->name);
			h->name = strdup(opt + strlen("name="));
			if (!h->name)
				return -ENOMEM;
			continue;
		}
		for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
			flag |= streq(opt, flags[i]);
		/* release_agent=... and any other valued option. */
		if (flag || strchr(opt, '='))
			continue;
		if (strv_push(&h->controllers, &n, opt) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Reads the controllers the v2 root offers. A missing file (no v2 controllers compiled in) is an
 * empty list. */
static int read_v2_controllers(struct cgroup_hierarchy *h, struct lxm_error **err)
{
	_cleanup_free_ char *s = NULL;
	char *tok, *save = NULL;
	size_t n = 0;
	int r;

	h->controllers = calloc(1, sizeof(char *));
	if (!h->controllers)
		return -ENOMEM;
	r = cgroup_read(h->mount, "cgroup.controllers", &s);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return lxm_error_setx(err, r, 500, "read %s/cgroup.controllers", h->mount);
	for (tok = strtok_r(s, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
		if (strv_push(&h->controllers, &n, tok) < 0)
			return -ENOMEM;
	return 0;
}

/* Adds one mountinfo line's cgroup or cgroup2 mount to the layout; other lines are ignored. */
static int detect_line(struct lxm_cgroup_layout *l, char *line)
{
	char *field[64], *save = NULL, *fstype, *options;
	size_t n = 0, sep;
	struct cgroup_hierarchy h = { 0 };
	int r;

	for (char *f = strtok_r(line, " ", &save); f && n < ARRAY_SIZE(field);
	     f = strtok_r(NULL, " ", &save))
		field[n++] = f;
	/* id parent major:minor root mount-point options [optional...] - fstype source super */
	for (sep = 6; sep < n && !streq(field[sep], "-"); sep++)
		;
	if (sep + 1 >= n)
		return 0;
	fstype = field[sep + 1];
	options = sep + 3 < n ? field[sep + 3] : "";
	if (!streq(fstype, "cgroup") && !streq(fstype, "cgroup2"))
		return 0;
	if (streq(fstype, "cgroup2") && l->v2)
		return 0; /* a second mount of the one v2 hierarchy */

	lxm_unescape_octal(field[4]);
	if (asprintf(&h.mount, "%s%s", l->prefix, streq(field[4], "/") ? "" : field[4]) < 0) {
		h.mount = NULL;
		return -ENOMEM;
	}
	if (streq(fstype, "cgroup2")) {
		l->v2 = malloc(sizeof(*l->v2));
		if (!l->v2) {
			cgroup_hierarchy_clear(&h);
			return -ENOMEM;
		}
		*l->v2 = h;
		return 0;
	}

	r = parse_v1_options(options, &h);
	if (r < 0)
		goto fail;
	/* The same hierarchy mounted twice has the same controllers (or name): keep the first. */
	for (size_t i = 0; i < l->n_v1; i++) {
		if (strv_equal(l->v1[i].controllers, h.controllers) &&
		    ((!l->v1[i].name && !h.name) || streq(l->v1[i].name, h.name))) {
			cgroup_hierarchy_clear(&h);
			return 0;
		}
	}
	{
		struct cgroup_hierarchy *nv = realloc(l->v1, (l->n_v1 + 1) * sizeof(*nv));

		if (!nv) {
			r = -ENOMEM;
			goto fail;
		}
		l->v1 = nv;
		l->v1[l->n_v1++] = h;
	}
	return 0;
fail:
	cgroup_hierarchy_clear(&h);
	return r;
}

int lxm_cgroup_detect(const char *mountinfo, const char *prefix, struct lxm_cgroup_layout **ret,
		      struct lxm_error **err)
{
	_cleanup_(lxm_cgroup_layout_freep) struct lxm_cgroup_layout *l = NULL;
	_cleanup_free_ char *text = NULL;
	char *line, *save = NULL;
	bool v1_controllers = false;
	size_t plen;
	int r;

	if (!mountinfo)
		mountinfo = "/proc/self/mountinfo";
	l = calloc(1, sizeof(*l));
	if (!l)
		return lxm_error_setx(err, -ENOMEM, 500, "detect cgroups");
	l->prefix = strdup(prefix ? prefix : "");
	l->v1_payload = strdup(CGROUP_V1_PAYLOAD);
	l->v2_prefix = strdup(CGROUP_V2_PREFIX);
	if (!l->prefix || !l->v1_payload || !l->v2_prefix)
		return lxm_error_setx(err, -ENOMEM, 500, "detect cgroups");
	plen = strlen(l->prefix);
	while (plen > 0 && l->prefix[plen - 1] == '/')
		l->prefix[--plen] = '\0';

	r = lxm_read_file(mountinfo, &text, NULL);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "detect cgroups: read %s", mountinfo);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		r = detect_line(l, line);
		if (r < 0)
			return lxm_error_setx(err, r, 500, "detect cgroups: %s", mountinfo);
	}
	if (l->v2) {
		r = read_v2_controllers(l->v2, err);
		if (r < 0) {
			lxm_error_prefix(err, "detect cgroups");
			return r;
		}
	}

	for (size_t i = 0; i < l->n_v1; i++)
		v1_controllers |= l->v1[i].controllers[0] != NULL;
	/* Controllers on v1 decide it: that is where limits go, whatever the v2 mount offers. A v2
	 * hierarchy alone is unified even with no controllers delegated to it (a nested host):
	 * instances still get a cgroup, and a limit then fails naming the missing controller. */
	if (v1_controllers)
		l->mode = l->v2 ? LXM_CGROUP_HYBRID : LXM_CGROUP_LEGACY;
	else if (l->v2)
		l->mode = LXM_CGROUP_UNIFIED;
	else
		return lxm_error_set(err, -ENOENT, 500,
				     "detect cgroups: no cgroup or cgroup2 mount in %s", mountinfo);
	l->ops = cgroup_drivers[l->mode];
	*ret = TAKE_PTR(l);
	return 0;
}

/* ---- the front-end ---- */

int lxm_cgroup_owner_tag(const char *root, char ret[static LXM_CGROUP_TAG_SIZE])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t len;

	if (!root || !*root)
		return -EINVAL;
	/* "/a/b/" and "/a/b" are one root. */
	len = strlen(root);
	while (len > 1 && root[len - 1] == '/')
		len--;
	if (len == strlen(LXM_DEFAULT_DIR) && strncmp(root, LXM_DEFAULT_DIR, len) == 0) {
		ret[0] = '\0';
		return 0;
	}
	if (!EVP_Digest(root, len, md, &mdlen, EVP_sha256(), NULL) ||
	    mdlen * 2 < CGROUP_OWNER_TAG_LEN)
		return -EIO;
	for (size_t i = 0; i < CGROUP_OWNER_TAG_LEN / 2; i++)
		snprintf(ret + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int lxm_cgroup_set_owner(struct lxm_cgroup_layout *l, const char *root, struct lxm_error **err)
{
	char tag[LXM_CGROUP_TAG_SIZE];
	char *v1 = NULL, *v2 = NULL;
	int r;

	r = lxm_cgroup_owner_tag(root, tag);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "cgroup names for root '%s'", root ? root : "");
	if (!*tag)
		return 0; /* the default root keeps the plain names */
	if (asprintf(&v1, CGROUP_V1_PAYLOAD ".%s", tag) < 0 ||
	    asprintf(&v2, CGROUP_V2_PREFIX "%s.", tag) < 0) {
		free(v1);
		return lxm_error_setx(err, -ENOMEM, 500, "cgroup names for root '%s'", root);
	}
	free(l->v1_payload);
	free(l->v2_prefix);
	l->v1_payload = v1;
	l->v2_prefix = v2;
	l->owned = true;
	return 0;
}

void lxm_cgroup_paths_free(struct lxm_cgroup_paths *p)
{
	if (!p)
		return;
	free(p->v2);
	lxm_strv_free(p->v1);
	p->v2 = NULL;
	p->v1 = NULL;
}

/* The name becomes one path component under every hierarchy. */
static int cgroup_check(const struct lxm_cgroup_layout *l, const char *name, struct lxm_error **err)
{
	if (!l)
		return lxm_error_set(err, -EINVAL, 500,
				     "cgroup: no layout (detection did not run)");
	if (!name || !*name || strchr(name, '/') || name[0] == '.' || strlen(name) > 200)
		return lxm_error_set(err, -EINVAL, 400, "cgroup '%s': invalid name for a cgroup",
				     name ? name : "");
	return 0;
}

/* Every limit unset: what apply writes as "no limit". */
static const struct lxm_limits cgroup_no_limits = {
	.memory = -1,
	.memory_swap = true,
	.memory_soft = false,
	.cpuset = NULL,
	.cpu_quota_us = -1,
	.cpu_period_us = -1,
	.cpu_weight = -1,
	.processes = -1,
	.hugepages = { -1, -1, -1, -1 },
	.disk_priority = -1,
};

static int cgroup_unsupported(const struct lxm_cgroup_layout *l, const char *name, const char *what,
			      struct lxm_error **err)
{
	return lxm_error_set(err, -EOPNOTSUPP, 500,
			     "cgroup '%s': %s: not supported by the %s driver", name, what,
			     l->ops->name);
}

/* Adds "cgroup '<name>'" to a driver's error, keeping r even when the caller passed no err. */
static int cgroup_fail(struct lxm_error **err, int r, const char *name)
{
	lxm_error_prefix(err, "cgroup '%s'", name);
	return r;
}

int lxm_cgroup_create(struct lxm_cgroup_layout *l, const char *name,
		      const struct lxm_limits *limits, struct lxm_cgroup_paths *ret,
		      struct lxm_error **err)
{
	struct lxm_cgroup_paths p = { 0 };
	int r = cgroup_check(l, name, err);

	if (r < 0)
		return r;
	if (!l->ops->create || !l->ops->apply)
		return cgroup_unsupported(l, name, "create", err);
	r = l->ops->create(l, name, &p, err);
	if (r < 0)
		return cgroup_fail(err, r, name);
	r = l->ops->apply(l, name, limits ? limits : &cgroup_no_limits, err);
	if (r < 0) {
		/* Leave no dirs behind for an instance that will not start; one still holding
		 * tasks (reused after a crash) refuses rmdir and stays. */
		for (char **d = p.v1; d && *d; d++)
			cgroup_rmdir_quiet(d, 1);
		cgroup_rmdir_quiet(&p.v2, 1);
		lxm_cgroup_paths_free(&p);
		return cgroup_fail(err, r, name);
	}
	if (ret)
		*ret = p;
	else
		lxm_cgroup_paths_free(&p);
	return 0;
}

int lxm_cgroup_apply(struct lxm_cgroup_layout *l, const char *name, const struct lxm_limits *limits,
		     struct lxm_error **err)
{
	int r = cgroup_check(l, name, err);

	if (r < 0)
		return r;
	if (!l->ops->apply)
		return cgroup_unsupported(l, name, "apply", err);
	r = l->ops->apply(l, name, limits ? limits : &cgroup_no_limits, err);
	return r < 0 ? cgroup_fail(err, r, name) : 0;
}

int lxm_cgroup_freeze(struct lxm_cgroup_layout *l, const char *name, bool freeze,
		      struct lxm_error **err)
{
	int r = cgroup_check(l, name, err);

	if (r < 0)
		return r;
	if (!l->ops->freeze)
		return cgroup_unsupported(l, name, "freeze", err);
	r = l->ops->freeze(l, name, freeze, err);
	return r < 0 ? cgroup_fail(err, r, name) : 0;
}

int lxm_cgroup_set_devices(struct lxm_cgroup_layout *l, const char *name,
			   const struct lxm_cgroup_device *extra, size_t n, struct lxm_error **err)
{
	int r = cgroup_check(l, name, err);

	if (r < 0)
		return r;
	if (!l->ops->devices)
		return cgroup_unsupported(l, name, "set the device allow-list", err);
	r = l->ops->devices(l, name, extra, n, err);
	return r < 0 ? cgroup_fail(err, r, name) : 0;
}

int lxm_cgroup_stats(struct lxm_cgroup_layout *l, const char *name, struct lxm_cgroup_stats *ret,
		     struct lxm_error **err)
{
	struct lxm_cgroup_stats s = {
		.memory_usage = -1,
		.memory_peak = -1,
		.swap_usage = -1,
		.cpu_usage_ns = -1,
		.processes = -1,
	};
	int r = cgroup_check(l, name, err);

	if (r < 0)
		return r;
	if (!l->ops->stats)
		return cgroup_unsupported(l, name, "stats", err);
	r = l->ops->stats(l, name, &s, err);
	if (r < 0)
		return cgroup_fail(err, r, name);
	*ret = s;
	return 0;
}

int lxm_cgroup_destroy(struct lxm_cgroup_layout *l, const char *name, struct lxm_error **err)
{
	int r = cgroup_check(l, name, err);

	if (r < 0)
		return r;
	if (!l->ops->destroy)
		return cgroup_unsupported(l, name, "destroy", err);
	r = l->ops->destroy(l, name, err);
	return r < 0 ? cgroup_fail(err, r, name) : 0;
}
