/* unix-char and unix-block devices: see unixdev.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "child.h"
#include "cleanup.h"
#include "container/spec.h"
#include "daemon.h"
#include "db/db.h"
#include "devices.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "unixdev.h"
#include "util.h"

/* The keys a unix device may have. */
static const char *const unix_keys[] = {
	"type", "source", "path", "major", "minor", "uid", "gid", "mode", "required",
};

/* The directory of an instance's nodes under its runtime dir. */
#define NODE_DIR "devices"

static const char *str(const json_t *dev, const char *key)
{
	const char *v = json_string_value(json_object_get(dev, key));

	return v && *v ? v : NULL;
}

/* A number in base (10, or 8 for modes) up to max. */
static int parse_num(const char *v, int base, uint32_t max, uint32_t *ret)
{
	unsigned long long n;
	char *end;

	if (!v || !*v || v[0] == '-' || v[0] == '+' || v[0] == ' ')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, base);
	if (errno || *end || n > max)
		return -EINVAL;
	*ret = (uint32_t)n;
	return 0;
}

static int bad(struct lxm_error **err, const char *name, const char *key, const char *value,
	       const char *why)
{
	return lxm_error_set(err, -EINVAL, 400, "unix device '%s': %s=%s: %s", name, key, value,
			     why);
}

int lxmd_unixdev_parse(const char *name, const json_t *dev, struct lxmd_unixdev *ret,
		       struct lxm_error **err)
{
	const char *type = json_string_value(json_object_get(dev, "type")), *key, *v;
	struct lxmd_unixdev u = { .name = name, .mode = 0660, .required = true };
	json_t *jv;
	int b;

	if (streq(type, "unix-char"))
		u.type = 'c';
	else if (streq(type, "unix-block"))
		u.type = 'b';
	else
		return 0;
	json_object_foreach ((json_t *)dev, key, jv) {
		bool known = false;

		for (size_t i = 0; i < ARRAY_SIZE(unix_keys) && !known; i++)
			known = streq(key, unix_keys[i]);
		if (!known)
			return lxm_error_set(
				err, -EINVAL, 400,
				"unix device '%s': unknown key '%s' (value '%s'; known: "
				"source, path, major, minor, uid, gid, mode, required)",
				name, key, json_string_value(jv) ?: "");
	}
	u.source = str(dev, "source");
	if (u.source && (!lxm_path_is_clean(u.source) || !u.source[strspn(u.source, "/")]))
		return bad(err, name, "source", u.source,
			   "must be an absolute host path without '.' or '..'");
	u.path = str(dev, "path");
	if (u.path && (!lxm_path_is_clean(u.path) || !u.path[strspn(u.path, "/")]))
		return bad(err, name, "path", u.path,
			   "must be an absolute path without '.' or '..', not '/'");
	if (!u.path)
		u.path = u.source;
	if ((v = str(dev, "major"))) {
		if (parse_num(v, 10, 0xfff, &u.major) < 0)
			return bad(err, name, "major", v, "expected a number from 0 to 4095");
		u.has_major = true;
	}
	if ((v = str(dev, "minor"))) {
		if (parse_num(v, 10, 0xfffff, &u.minor) < 0)
			return bad(err, name, "minor", v, "expected a number from 0 to 1048575");
		u.has_minor = true;
	}
	if (!u.source && (!u.path || !u.has_major || !u.has_minor))
		return lxm_error_set(err, -EINVAL, 400,
				     "unix device '%s': no source= given: a host node as source=, "
				     "or path= with major= and minor=",
				     name);
	if ((v = str(dev, "uid")) && parse_num(v, 10, UINT32_MAX - 1, &u.uid) < 0)
		return bad(err, name, "uid", v, "expected a user id inside the container");
	if ((v = str(dev, "gid")) && parse_num(v, 10, UINT32_MAX - 1, &u.gid) < 0)
		return bad(err, name, "gid", v, "expected a group id inside the container");
	if ((v = str(dev, "mode")) && parse_num(v, 8, 07777, &u.mode) < 0)
		return bad(err, name, "mode", v, "expected octal permission bits such as 0660");
	if ((v = str(dev, "required"))) {
		if ((b = lxmd_device_bool(v)) < 0)
			return bad(err, name, "required", v, "expected true or false");
		u.required = b;
	}
	*ret = u;
	return 1;
}

int lxmd_unixdev_resolve(const struct lxmd_unixdev *u, struct lxm_cgroup_device *ret,
			 struct lxm_error **err)
{
	mode_t want = u->type == 'b' ? S_IFBLK : S_IFCHR;
	struct stat st;

	*ret = (struct lxm_cgroup_device){ .type = u->type, .major = u->major, .minor = u->minor };
	if (!u->source)
		return 1;
	if (stat(u->source, &st) < 0) {
		if (errno == ENOENT && !u->required)
			return 0;
		return lxm_error_setx(
			err, -errno, 400, "unix device '%s': source=%s%s", u->name, u->source,
			errno == ENOENT ? " (set required=false to start without it)" : "");
	}
	if ((st.st_mode & S_IFMT) != want)
		return lxm_error_set(err, -ENODEV, 400,
				     "unix device '%s': source=%s is not a %s device node", u->name,
				     u->source, u->type == 'b' ? "block" : "character");
	if (!u->has_major)
		ret->major = major(st.st_rdev);
	if (!u->has_minor)
		ret->minor = minor(st.st_rdev);
	return 1;
}

/* Makes u's node (of type, major, minor) at rundir/devices/<name>, owned by its uid and gid
 * (the container's: the mount is idmapped for an unprivileged one) with its mode; *ret gets its
 * path. */
static int make_node(const char *rundir, const struct lxmd_unixdev *u,
		     const struct lxm_cgroup_device *n, char **ret, struct lxm_error **err)
{
	_cleanup_free_ char *dir = NULL, *path = NULL;
	mode_t type = n->type == 'b' ? S_IFBLK : S_IFCHR;
	int r;

	if (asprintf(&dir, "%s/" NODE_DIR, rundir) < 0 ||
	    asprintf(&path, "%s/%s", dir, u->name) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if ((r = lxm_mkdir_p(dir, 0700)) < 0)
		return lxm_error_setx(err, r, 500, "unix device '%s': create %s", u->name, dir);
	if (unlink(path) < 0 && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "unix device '%s': remove the old %s",
				      u->name, path);
	if (mknod(path, type | 0600, makedev(n->major, n->minor)) < 0)
		return lxm_error_setx(err, -errno, 500, "unix device '%s': mknod %s %c %u:%u",
				      u->name, path, n->type, n->major, n->minor);
	/* mknod applied the umask; the device's mode is what the container gets. */
	if (chown(path, u->uid, u->gid) < 0 || chmod(path, u->mode) < 0) {
		r = -errno;
		unlink(path);
		return lxm_error_setx(err, r, 500, "unix device '%s': set owner and mode of %s",
				      u->name, path);
	}
	*ret = TAKE_PTR(path);
	return 0;
}

static void remove_node(const char *rundir, const char *name)
{
	_cleanup_free_ char *path = NULL;

	if (asprintf(&path, "%s/" NODE_DIR "/%s", rundir, name) >= 0)
		(void)unlink(path);
}

void lxmd_unixdevs_clear(const char *rundir)
{
	_cleanup_free_ char *dir = NULL;
	_cleanup_closedir_ DIR *dh = NULL;
	struct dirent *e;

	if (asprintf(&dir, "%s/" NODE_DIR, rundir) < 0)
		return;
	dh = opendir(dir);
	if (!dh)
		return;
	while ((e = readdir(dh)))
		if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
			(void)unlinkat(dirfd(dh), e->d_name, 0);
	(void)rmdir(dir);
}

static int append_mount(struct lxm_container_spec *s, char *source, const char *target)
{
	struct lxm_spec_mount *m = realloc(s->mounts, (s->n_mounts + 1) * sizeof(*m));

	if (!m) {
		free(source);
		return -ENOMEM;
	}
	s->mounts = m;
	m = &s->mounts[s->n_mounts++];
	memset(m, 0, sizeof(*m));
	m->source = source;
	if (!(m->target = strdup(target)) || !(m->fstype = strdup("bind")))
		return -ENOMEM;
	return 0;
}

static int append_dev(struct lxm_cgroup_device **v, size_t *n, const struct lxm_cgroup_device *e)
{
	struct lxm_cgroup_device *nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (!nv)
		return -ENOMEM;
	nv[(*n)++] = *e;
	*v = nv;
	return 0;
}

int lxmd_unixdevs_to_spec(const char *instance, const json_t *xdevices, const char *rundir,
			  struct lxm_container_spec *s, struct lxm_cgroup_device **ret_devs,
			  size_t *n_ret, struct lxm_error **err)
{
	_cleanup_free_ struct lxm_cgroup_device *devs = NULL;
	size_t n = 0;
	const char *name;
	json_t *dev;
	int r;

	json_object_foreach ((json_t *)xdevices, name, dev) {
		struct lxmd_unixdev u;
		struct lxm_cgroup_device node;
		char *path = NULL;

		r = lxmd_unixdev_parse(name, dev, &u, err);
		if (r == 0)
			continue;
		if (r > 0)
			r = lxmd_unixdev_resolve(&u, &node, err);
		if (r == 0) {
			log_info("instance '%s': unix device '%s': source %s is missing: skipped "
				 "(required=false)",
				 instance, name, u.source);
			continue;
		}
		if (r < 0 || (r = make_node(rundir, &u, &node, &path, err)) < 0)
			return lxm_error_prefix(err, "start '%s'", instance);
		if ((r = append_mount(s, path, u.path)) < 0 ||
		    (r = append_dev(&devs, &n, &node)) < 0)
			return lxm_error_set(err, r, 500, "start '%s': out of memory", instance);
	}
	*ret_devs = TAKE_PTR(devs);
	*n_ret = n;
	return 0;
}

/* ---- hot-plug ---- */

/* One unix device of a running container. */
struct hp_unix {
	struct lxmd_unixdev u;	       /* its config (pointers into the expanded devices) */
	struct lxm_cgroup_device node; /* its node */
	bool present;		       /* it has a node (not a required=false device skipped) */
	bool done;		       /* attached or detached by this hot-plug */
};

/* The unix devices of devices, resolved; those whose source is missing (and not required) are
 * there without present. With err NULL, devices that do not resolve are left out (what runs
 * now need not resolve any more). */
static int collect(const char *instance, const json_t *devices, struct hp_unix **ret, size_t *n,
		   struct lxm_error **err)
{
	const char *name;
	json_t *dev;
	int r;

	*ret = NULL;
	*n = 0;
	json_object_foreach ((json_t *)devices, name, dev) {
		struct hp_unix e = { 0 }, *nv;

		r = lxmd_unixdev_parse(name, dev, &e.u, err);
		if (r == 0 || (r < 0 && !err))
			continue;
		if (r > 0)
			r = lxmd_unixdev_resolve(&e.u, &e.node, err);
		if (r < 0 && !err)
			continue;
		if (r < 0)
			return lxm_error_prefix(err, "instance '%s'", instance);
		e.present = r > 0;
		nv = realloc(*ret, (*n + 1) * sizeof(**ret));
		if (!nv)
			return -ENOMEM;
		nv[(*n)++] = e;
		*ret = nv;
	}
	return 0;
}

/* Whether old device e runs unchanged in the new devices (the same config). */
static bool unchanged(const json_t *a, const json_t *b, const char *name)
{
	const json_t *x = json_object_get(a, name), *y = json_object_get(b, name);

	return x && y && json_equal(x, y);
}

/* What a hot-plug runs against. */
struct hp_ctx {
	const char *instance; /* the instance */
	char *monitor;	      /* lxm-monitor */
	char pid[16];	      /* its init's pid */
	bool idmap;	      /* unprivileged: idmapped clones, join its user namespace */
	char *rundir;	      /* its runtime dir */
};

/* lxm-monitor disk attach|detach for e; the failure names the device. */
static int hp_run(const struct hp_ctx *c, struct hp_unix *e, bool attach, struct lxm_error **err)
{
	_cleanup_free_ char *node = NULL;
	char errbuf[1024];
	char *argv[9];
	int n = 0, status, r;

	if (attach && (r = make_node(c->rundir, &e->u, &e->node, &node, err)) < 0)
		return r;
	argv[n++] = c->monitor;
	argv[n++] = (char *)"disk";
	argv[n++] = (char *)(attach ? "attach" : "detach");
	argv[n++] = (char *)c->pid;
	if (attach)
		argv[n++] = node;
	argv[n++] = (char *)e->u.path;
	if (!attach)
		argv[n++] = (char *)"--remove";
	if (c->idmap)
		argv[n++] = (char *)"--idmap";
	argv[n] = NULL;
	errbuf[0] = '\0';
	status = lxmd_run_sync_lines(argv, NULL, NULL, NULL, errbuf, sizeof(errbuf));
	if (!attach || status != 0)
		remove_node(c->rundir, e->u.name);
	if (status == 0)
		return 0;
	errbuf[strcspn(errbuf, "\n")] = '\0';
	if (status < 0)
		return lxm_error_setx(err, status, 500, "unix device '%s': run %s", e->u.name,
				      c->monitor);
	return lxm_error_set(err, -EIO, 500, "unix device '%s': %s %s: %s", e->u.name,
			     attach ? "add the node at" : "remove the node at", e->u.path,
			     errbuf[0] ? errbuf : "failed");
}

/* The nodes of v that are present, for the cgroup. */
static int nodes_of(const struct hp_unix *v, size_t n, struct lxm_cgroup_device **ret, size_t *k)
{
	*k = 0;
	*ret = calloc(n + 1, sizeof(**ret));
	if (!*ret)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (v[i].present)
			(*ret)[(*k)++] = v[i].node;
	return 0;
}

static int set_cgroup(struct lxmd *d, const char *instance, const struct hp_unix *v, size_t n,
		      struct lxm_error **err)
{
	_cleanup_free_ struct lxm_cgroup_device *nodes = NULL;
	size_t k;

	if (nodes_of(v, n, &nodes, &k) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return lxm_cgroup_set_devices(lxmd_instance_cgroups(d), instance, nodes, k, err);
}

/* Whether init's user namespace is not ours (an unprivileged container). */
static int userns_differs(pid_t pid, bool *ret, struct lxm_error **err)
{
	char path[64], ours[64], theirs[64];

	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	memset(ours, 0, sizeof(ours));
	memset(theirs, 0, sizeof(theirs));
	if (readlink(path, theirs, sizeof(theirs) - 1) < 0 ||
	    readlink("/proc/self/ns/user", ours, sizeof(ours) - 1) < 0)
		return lxm_error_setx(err, -errno, 500, "read %s", path);
	*ret = !streq(ours, theirs);
	return 0;
}

/* Puts back what a failed hot-plug changed: the added nodes removed, the old allow-list, the
 * removed nodes added again. Failures are logged. */
static void hp_undo(struct lxmd *d, const struct hp_ctx *c, struct hp_unix *old, size_t n_old,
		    struct hp_unix *new, size_t n_new)
{
	struct lxm_error *e2 = NULL;

	for (size_t i = 0; i < n_new; i++)
		if (new[i].done && hp_run(c, &new[i], false, &e2) < 0)
			goto log;
	if (set_cgroup(d, c->instance, old, n_old, &e2) < 0)
		goto log;
	for (size_t i = 0; i < n_old; i++)
		if (old[i].done && hp_run(c, &old[i], true, &e2) < 0)
			goto log;
	return;
log:
	log_error("instance '%s': put back its unix devices after a failed hot-plug: %s",
		  c->instance, e2 ? e2->msg : "out of memory");
	lxm_error_free(e2);
}

int lxmd_unixdevs_hotplug(struct lxmd *d, const char *instance, const json_t *new_xdevices,
			  struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	_cleanup_free_ struct hp_unix *old = NULL, *new = NULL;
	struct hp_ctx c = { .instance = instance };
	size_t n_old = 0, n_new = 0, changes = 0;
	pid_t pid;
	int r;

	if (lxmd_instance_running(d, instance, &pid, NULL, NULL) != 0)
		return 0;
	if ((r = lxm_db_instance_get(d->db, instance, &inst, err)) < 0 ||
	    (r = lxmd_instance_expand(d, inst, &config, &devices, err)) < 0)
		return r;
	if ((r = collect(instance, devices, &old, &n_old, NULL)) < 0 ||
	    (r = collect(instance, new_xdevices, &new, &n_new, err)) < 0)
		return r;
	for (size_t i = 0; i < n_old; i++)
		changes += !unchanged(devices, new_xdevices, old[i].u.name);
	for (size_t i = 0; i < n_new; i++)
		changes += !unchanged(devices, new_xdevices, new[i].u.name);
	if (changes == 0)
		return 0;
	snprintf(c.pid, sizeof(c.pid), "%d", (int)pid);
	if ((r = userns_differs(pid, &c.idmap, err)) < 0)
		return lxm_error_prefix(err, "instance '%s': hot-plug", instance);
	if (!(c.monitor = strdup(lxmd_monitor_path(d))) ||
	    asprintf(&c.rundir, "%s/%s", d->cfg.rundir, instance) < 0) {
		free(c.monitor);
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	/* Out with the devices that went or changed, then the allow-list, then in with the new. */
	for (size_t i = 0; i < n_old && r >= 0; i++) {
		if (!old[i].present || unchanged(devices, new_xdevices, old[i].u.name))
			continue;
		r = hp_run(&c, &old[i], false, err);
		old[i].done = r >= 0;
	}
	if (r >= 0)
		r = set_cgroup(d, instance, new, n_new, err);
	for (size_t i = 0; i < n_new && r >= 0; i++) {
		if (unchanged(devices, new_xdevices, new[i].u.name))
			continue;
		if (!new[i].present) {
			log_info("instance '%s': unix device '%s': source %s is missing: skipped "
				 "(required=false)",
				 instance, new[i].u.name, new[i].u.source);
			continue;
		}
		r = hp_run(&c, &new[i], true, err);
		new[i].done = r >= 0;
	}
	if (r < 0) {
		hp_undo(d, &c, old, n_old, new, n_new);
		lxm_error_prefix(err, "instance '%s': hot-plug", instance);
	}
	free(c.monitor);
	free(c.rundir);
	return r;
}
