/* An overlay rootfs rebuilt on idmapped layers for an unprivileged container (see
 * monitor-overlay.h). The new overlay shares its upper and work dirs with the host's mount, which
 * overlayfs allows (with a warning in the kernel log) as long as the index feature is off; with
 * index=on it refuses with EBUSY, which the error then says.
 *
 * overlayfs does its own work in the upper layer (the work dir, copy-up, whiteouts) with the
 * credentials of whoever created it. Host root (fsuid 0) has no id in the layers' idmapping, so
 * the kernel would refuse every such write with EOVERFLOW (and mount the overlay read-only).
 * The overlay is therefore created with fsuid/fsgid set to the container's root on the host,
 * which the idmapped layers write as 0, and with the capabilities kept. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#include "cleanup.h"
#include "error.h"
#include "util.h"
#include "monitor/monitor-disks.h"
#include "monitor/monitor-overlay.h"

/* Super options of the host mount that change how the layers are read or written: the new
 * overlay repeats them so that both mounts agree on the upper layer's format. */
static const char *const kept_options[] = {
	"redirect_dir", "index",  "uuid",     "nfs_export", "xino",
	"metacopy",	"verity", "volatile", "userxattr",  "ro",
};

void monitor_overlay_done(struct monitor_overlay *o)
{
	lxm_strv_free(o->lower);
	lxm_strv_free(o->opts);
	free(o->upper);
	free(o->work);
	*o = (struct monitor_overlay){ 0 };
}

static int strv_add(char ***v, size_t *n, const char *s, size_t len)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strndup(s, len);
	if (!nv[*n])
		return -ENOMEM;
	nv[++*n] = NULL;
	return 0;
}

/* lowerdir is a ':'-separated list in which a backslash escapes the next character ("\:"). */
static int add_lower_list(struct monitor_overlay *o, const char *list)
{
	_cleanup_free_ char *layer = malloc(strlen(list) + 1);
	size_t len = 0;
	int r;

	if (!layer)
		return -ENOMEM;
	for (const char *p = list;; p++) {
		if (*p == '\\' && p[1]) {
			layer[len++] = *++p;
			continue;
		}
		if (*p && *p != ':') {
			layer[len++] = *p;
			continue;
		}
		if (len == 0)
			return -EINVAL;
		if ((r = strv_add(&o->lower, &o->n_lower, layer, len)) < 0)
			return r;
		len = 0;
		if (!*p)
			return 0;
	}
}

static bool is_kept(const char *key, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(kept_options); i++)
		if (strlen(kept_options[i]) == len && strncmp(key, kept_options[i], len) == 0)
			return true;
	return false;
}

static int parse_one(struct monitor_overlay *o, char *opt)
{
	char *eq, **dst = NULL;
	const char *val;
	size_t keylen;

	/* Escaped commas and '=' are part of a value: unescape once the option is cut out; the
	 * first '=' left is then the one after the key. */
	lxm_unescape_octal(opt);
	eq = strchr(opt, '=');
	keylen = eq ? (size_t)(eq - opt) : strlen(opt);
	val = eq ? eq + 1 : NULL;
	if (val && keylen == 8 && strncmp(opt, "lowerdir", 8) == 0)
		return add_lower_list(o, val);
	if (val && keylen == 9 && strncmp(opt, "lowerdir+", 9) == 0)
		return *val ? strv_add(&o->lower, &o->n_lower, val, strlen(val)) : -EINVAL;
	if (keylen == 8 && strncmp(opt, "datadir+", 8) == 0)
		return -EOPNOTSUPP;
	if (val && keylen == 8 && strncmp(opt, "upperdir", 8) == 0)
		dst = &o->upper;
	else if (val && keylen == 7 && strncmp(opt, "workdir", 7) == 0)
		dst = &o->work;
	if (dst) {
		free(*dst);
		*dst = strdup(val);
		return *dst ? 0 : -ENOMEM;
	}
	if (is_kept(opt, keylen))
		return strv_add(&o->opts, &o->n_opts, opt, strlen(opt));
	return 0;
}

int monitor_overlay_parse(const char *super_opts, struct monitor_overlay *o)
{
	_cleanup_free_ char *copy = strdup(super_opts);
	char *rest = copy, *opt;
	int r;

	*o = (struct monitor_overlay){ 0 };
	if (!copy)
		return -ENOMEM;
	while ((opt = strsep(&rest, ","))) {
		if (!*opt)
			continue;
		if ((r = parse_one(o, opt)) < 0) {
			monitor_overlay_done(o);
			return r;
		}
	}
	if (o->n_lower == 0 || !o->upper != !o->work) {
		monitor_overlay_done(o);
		return -EINVAL;
	}
	return 0;
}

/* Per-mount flags of the host mount (mountinfo's field 6), kept on the new mount. */
static unsigned int mount_attrs(const char *mnt_opts)
{
	static const struct {
		const char *name;
		unsigned int attr;
	} flags[] = {
		{ "ro", MOUNT_ATTR_RDONLY },
		{ "nosuid", MOUNT_ATTR_NOSUID },
		{ "nodev", MOUNT_ATTR_NODEV },
		{ "noexec", MOUNT_ATTR_NOEXEC },
		{ "noatime", MOUNT_ATTR_NOATIME },
		{ "strictatime", MOUNT_ATTR_STRICTATIME },
		{ "nodiratime", MOUNT_ATTR_NODIRATIME },
	};
	_cleanup_free_ char *copy = strdup(mnt_opts);
	unsigned int attrs = 0;
	char *rest = copy, *opt;

	while (copy && (opt = strsep(&rest, ",")))
		for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
			if (streq(opt, flags[i].name))
				attrs |= flags[i].attr;
	return attrs;
}

/* The mount options and super options of the mount with id mnt_id, from its mountinfo line
 * ("id parent maj:min root mountpoint mntopts [optional...] - fstype source superopts"). */
static int find_overlay(uint64_t mnt_id, char **ret_mnt_opts, char **ret_super_opts)
{
	_cleanup_free_ char *text = NULL;
	char *rest, *line;
	int r;

	if ((r = lxm_read_file("/proc/self/mountinfo", &text, NULL)) < 0)
		return r;
	rest = text;
	while ((line = strsep(&rest, "\n"))) {
		char *f[6], *sep, *fstype, *super, *p = line;
		int n = 0;

		while (n < 6 && (f[n] = strsep(&p, " ")))
			n++;
		if (n < 6 || strtoull(f[0], NULL, 10) != mnt_id || !p)
			continue;
		sep = startswith(p, "- ") ? p : strstr(p, " - ");
		if (!sep)
			return -EBADMSG;
		p = sep + (sep == p ? 2 : 3);
		fstype = strsep(&p, " ");
		(void)strsep(&p, " ");
		super = strsep(&p, " ");
		if (!fstype || !super)
			return -EBADMSG;
		if (!streq(fstype, "overlay"))
			return -EMEDIUMTYPE;
		*ret_mnt_opts = strdup(f[5]);
		*ret_super_opts = strdup(super);
		if (!*ret_mnt_opts || !*ret_super_opts) {
			free(*ret_mnt_opts);
			free(*ret_super_opts);
			return -ENOMEM;
		}
		return 0;
	}
	return -ENOENT;
}

/* Opens path below the clone tree of its dir parent and checks that it is the host's path and
 * not the dir a mount on path hides: upper and work must be on the clone's mount. */
static int open_in_clone(int tree, const char *parent, const char *path, int *ret,
			 struct lxm_error **err)
{
	const char *rel = path + strlen(parent);
	_cleanup_close_ int fd = -1;
	struct stat in_clone, on_host;

	rel += *rel == '/';
	fd = openat(tree, *rel ? rel : ".", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "open overlay layer %s", path);
	if (fstat(fd, &in_clone) < 0 || stat(path, &on_host) < 0)
		return lxm_error_setx(err, -errno, 500, "stat overlay layer %s", path);
	if (in_clone.st_dev != on_host.st_dev || in_clone.st_ino != on_host.st_ino)
		return lxm_error_set(err, -EXDEV, 500,
				     "open overlay layer %s: not on the mount of %s, as the upper "
				     "and work dirs must be",
				     path, parent);
	*ret = TAKE_FD(fd);
	return 0;
}

/* The dir that holds both a and b (absolute paths): their longest common '/'-bounded prefix. */
static char *common_dir(const char *a, const char *b)
{
	size_t last = 0, i;

	for (i = 0; a[i] && a[i] == b[i]; i++)
		if (a[i] == '/')
			last = i;
	if ((!a[i] && (b[i] == '/' || !b[i])) || (!b[i] && a[i] == '/'))
		last = i;
	return strndup(a, last ? last : 1);
}

static int set_string(int fsfd, const char *key, const char *value)
{
	return fsconfig(fsfd, FSCONFIG_SET_STRING, key, value, 0) < 0 ? -errno : 0;
}

/* The calling thread's fs ids and capabilities, to be put back after the overlay is made. */
struct saved_creds {
	uid_t fsuid;			       /* fsuid before the switch */
	gid_t fsgid;			       /* fsgid before the switch */
	struct __user_cap_header_struct hdr;   /* capget/capset header (version 3, this thread) */
	struct __user_cap_data_struct caps[2]; /* capability sets before the switch */
};

static void restore_creds(struct saved_creds *c)
{
	(void)setfsuid(c->fsuid);
	(void)setfsgid(c->fsgid);
	(void)syscall(SYS_capset, &c->hdr, c->caps);
}

/* Sets this thread's fsuid/fsgid to uid/gid and raises again the file capabilities that a
 * change of fsuid away from 0 drops. */
static int switch_creds(uid_t uid, gid_t gid, struct saved_creds *c)
{
	c->hdr = (struct __user_cap_header_struct){ .version = _LINUX_CAPABILITY_VERSION_3 };
	if (syscall(SYS_capget, &c->hdr, c->caps) < 0)
		return -errno;
	c->fsgid = (gid_t)setfsgid(gid);
	c->fsuid = (uid_t)setfsuid(uid);
	/* setfsuid() and setfsgid() return the old id whether or not they worked. */
	if ((uid_t)setfsuid((uid_t)-1) != uid || (gid_t)setfsgid((gid_t)-1) != gid) {
		restore_creds(c);
		return -EPERM;
	}
	if (syscall(SYS_capset, &c->hdr, c->caps) < 0) {
		int r = -errno;

		restore_creds(c);
		return r;
	}
	return 0;
}

/* fsopen + fsconfig + fsmount of an overlay on the layer fds (lower top first; up and work -1
 * for a read-only one). */
static int mount_overlay(const int *lower, size_t n_lower, int up, int work,
			 const struct monitor_overlay *o, unsigned int attrs, int *ret, char *why,
			 size_t whylen)
{
	_cleanup_close_ int fsfd = -1;
	_cleanup_free_ char *lowerdir = malloc(n_lower * 32 + 1);
	char path[32];
	size_t len = 0;
	int r, mfd;

	why[0] = '\0';
	if (!lowerdir)
		return -ENOMEM;
	/* The layers are named by their fds: no path of the host's needs escaping. */
	for (size_t i = 0; i < n_lower; i++)
		len += (size_t)sprintf(lowerdir + len, "%s/proc/self/fd/%d", i ? ":" : "",
				       lower[i]);
	fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return -errno;
	if ((r = set_string(fsfd, "source", "overlay")) < 0 ||
	    (r = set_string(fsfd, "lowerdir", lowerdir)) < 0)
		goto fail;
	if (up >= 0) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", up);
		if ((r = set_string(fsfd, "upperdir", path)) < 0)
			goto fail;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", work);
		if ((r = set_string(fsfd, "workdir", path)) < 0)
			goto fail;
	}
	for (size_t i = 0; i < o->n_opts; i++) {
		_cleanup_free_ char *key = strdup(o->opts[i]);
		char *eq = key ? strchr(key, '=') : NULL;

		if (!key)
			return -ENOMEM;
		if (eq) {
			*eq = '\0';
			r = set_string(fsfd, key, eq + 1);
		} else {
			r = fsconfig(fsfd, FSCONFIG_SET_FLAG, key, NULL, 0) < 0 ? -errno : 0;
		}
		if (r < 0)
			goto fail;
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		r = -errno;
		goto fail;
	}
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
	if (mfd < 0) {
		r = -errno;
		goto fail;
	}
	*ret = mfd;
	return 0;
fail:
	lxm_fs_log(fsfd, why, whylen);
	return r;
}

/* Closes the n fds of a layer array. */
static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
}

int monitor_overlay_idmapped_tree(const char *rootfs, int userns_fd, uid_t root_uid, gid_t root_gid,
				  int *ret, struct lxm_error **err)
{
	struct saved_creds saved;
	_cleanup_free_ char *mnt_opts = NULL, *super_opts = NULL, *parent = NULL;
	_cleanup_close_ int updir = -1, up = -1, work = -1;
	struct monitor_overlay o = { 0 };
	struct statx stx;
	char why[600];
	int *lower = NULL, r;

	if (statx(AT_FDCWD, rootfs, 0, STATX_MNT_ID, &stx) < 0)
		return lxm_error_setx(err, -errno, 500, "stat rootfs %s", rootfs);
	if (!(stx.stx_mask & STATX_MNT_ID))
		return lxm_error_set(err, -EOPNOTSUPP, 500,
				     "stat rootfs %s: the kernel gives no mount id", rootfs);
	r = find_overlay(stx.stx_mnt_id, &mnt_opts, &super_opts);
	if (r < 0)
		return lxm_error_setx(err, r, 500,
				      "find overlay layers of %s in /proc/self/mountinfo", rootfs);
	r = monitor_overlay_parse(super_opts, &o);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "read overlay layers of %s from \"%s\"", rootfs,
				      super_opts);
	lower = malloc(o.n_lower * sizeof(int));
	if (!lower) {
		r = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < o.n_lower; i++)
		lower[i] = -1;
	for (size_t i = 0; i < o.n_lower; i++)
		if ((r = monitor_clone_mount("overlay layer", o.lower[i], userns_fd, false, false,
					     &lower[i], err)) < 0)
			goto out;
	if (o.upper) {
		/* Overlay wants upper and work on one mount: both are opened in one clone of the
		 * dir that holds them. */
		if (o.upper[0] != '/' || o.work[0] != '/') {
			r = lxm_error_set(
				err, -EINVAL, 500,
				"overlay of %s: upperdir %s or workdir %s is not absolute", rootfs,
				o.upper, o.work);
			goto out;
		}
		parent = common_dir(o.upper, o.work);
		if (!parent) {
			r = lxm_error_set(err, -ENOMEM, 500, "out of memory");
			goto out;
		}
		if ((r = monitor_clone_mount("overlay layer", parent, userns_fd, false, false,
					     &updir, err)) < 0 ||
		    (r = open_in_clone(updir, parent, o.upper, &up, err)) < 0 ||
		    (r = open_in_clone(updir, parent, o.work, &work, err)) < 0)
			goto out;
	}
	if ((r = switch_creds(root_uid, root_gid, &saved)) < 0) {
		lxm_error_setx(err, r, 500,
			       "mount overlay on idmapped layers for %s: switch to fsuid %u",
			       rootfs, (unsigned)root_uid);
		goto out;
	}
	r = mount_overlay(lower, o.n_lower, up, work, &o, mount_attrs(mnt_opts), ret, why,
			  sizeof(why));
	restore_creds(&saved);
	if (r < 0)
		lxm_error_set(err, r, 500, "mount overlay on idmapped layers for %s: %s%s", rootfs,
			      strerror(-r), why);
out:
	if (lower)
		close_all(lower, o.n_lower);
	monitor_overlay_done(&o);
	return r;
}
