/* The container's file systems, built in its own mount namespace before pivot_root: the rootfs
 * mount the monitor handed over, then proc, sys, dev, the console, run, cgroup and the extra
 * mounts, then pivot_root into it and the host's tree detached.
 *
 * Every target inside the container is resolved with openat2(RESOLVE_IN_ROOT) below the rootfs,
 * and mounted with the new mount API on that fd: a symlink the container's image planted (say
 * /run -> /etc on the host) can never redirect a mount outside the container. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "container/setup-internal.h"
#include "util.h"

/* Opens path (absolute as seen in the container) beneath rootfd, with symlinks resolved as if
 * rootfd were "/" and no /proc magic links. Returns the fd or -errno. */
static int open_in_root(int rootfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));

	return fd < 0 ? -errno : fd;
}

/* The root of the attached rootfs mount, which is the working directory from the mount-rootfs
 * step until pivot-root. */
static int open_root(int *ret, struct lxm_error **err)
{
	int fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "open the rootfs mount");
	*ret = fd;
	return 0;
}

/* mkdir -p beneath rootfd. Each prefix is resolved from the root again (not from its parent), so
 * an absolute symlink in the image (/var/run -> /run) means what it means inside the container.
 * Returns an O_PATH fd of the directory or -errno. */
static int mkdir_in_root(int rootfd, const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);
	_cleanup_close_ int parent = -1;
	char *c;

	if (!p)
		return -ENOMEM;
	parent = open_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
	if (parent < 0)
		return parent;
	for (c = p; *c == '/'; c++)
		;
	while (*c) {
		char *end = strchrnul(c, '/');
		char saved = *end;
		int fd;

		*end = '\0';
		fd = open_in_root(rootfd, p, O_PATH | O_DIRECTORY);
		if (fd == -ENOENT) {
			if (mkdirat(parent, c, mode) < 0 && errno != EEXIST)
				return -errno;
			fd = open_in_root(rootfd, p, O_PATH | O_DIRECTORY);
		}
		if (fd < 0)
			return fd;
		lxm_closep(&parent);
		parent = fd;
		*end = saved;
		for (c = end; *c == '/'; c++)
			;
	}
	return TAKE_FD(parent);
}

/* An existing file (of any type) at path, or a new empty one: the target of a file bind mount.
 * Returns an O_PATH fd or -errno. */
static int mkfile_in_root(int rootfd, const char *path, mode_t mode)
{
	_cleanup_free_ char *dir = strdup(path);
	_cleanup_close_ int dfd = -1;
	char *base;
	int fd;

	if (!dir)
		return -ENOMEM;
	fd = open_in_root(rootfd, path, O_PATH);
	if (fd != -ENOENT)
		return fd;
	base = strrchr(dir, '/');
	if (!base || !base[1] || streq(base, "/.") || streq(base, "/.."))
		return -EINVAL;
	*base++ = '\0';
	dfd = mkdir_in_root(rootfd, dir[0] ? dir : "/", 0755);
	if (dfd < 0)
		return dfd;
	fd = openat(dfd, base, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	close(fd);
	return open_in_root(rootfd, path, O_PATH);
}

/* A new, detached file system mount: fsopen + fsconfig from "k=v,flag" options + fsmount.
 * Returns the mount fd or -errno, with the file system's own complaint in why. */
static int fs_create(const char *fstype, const char *source, const char *options,
		     unsigned int attrs, char *why, size_t whylen)
{
	_cleanup_close_ int fsfd = -1;
	_cleanup_free_ char *opts = NULL;
	char *save = NULL;
	int r, mfd;

	why[0] = '\0';
	fsfd = fsopen(fstype, FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return -errno;
	if (source && fsconfig(fsfd, FSCONFIG_SET_STRING, "source", source, 0) < 0)
		goto fail;
	if (options) {
		opts = strdup(options);
		if (!opts)
			return -ENOMEM;
		for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(o, '=');

			if (eq) {
				*eq = '\0';
				r = fsconfig(fsfd, FSCONFIG_SET_STRING, o, eq + 1, 0);
			} else {
				r = fsconfig(fsfd, FSCONFIG_SET_FLAG, o, NULL, 0);
			}
			if (r < 0)
				goto fail;
		}
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		goto fail;
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
	if (mfd < 0)
		goto fail;
	return mfd;
fail:
	r = -errno;
	lxm_fs_log(fsfd, why, whylen);
	return r;
}

static int attach(int mntfd, int targetfd)
{
	if (move_mount(mntfd, "", targetfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) <
	    0)
		return -errno;
	return 0;
}

static int set_readonly(int mntfd, bool recursive)
{
	struct mount_attr a = { .attr_set = MOUNT_ATTR_RDONLY };

	if (mount_setattr(mntfd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a,
			  sizeof(a)) < 0)
		return -errno;
	return 0;
}

/* A detached bind mount of a path as this mount namespace sees it (the host's tree until
 * pivot-root). Returns the mount fd or -errno. */
static int bind_clone(const char *path, bool recursive, bool readonly)
{
	_cleanup_close_ int fd = -1;
	int r;

	fd = open_tree(AT_FDCWD, path,
		       OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
	if (fd < 0)
		return -errno;
	if (readonly) {
		r = set_readonly(fd, recursive);
		if (r < 0)
			return r;
	}
	return TAKE_FD(fd);
}

/* Mounts a new fstype file system on target inside the container, creating the directory. */
static int mount_fs(int rootfd, const char *fstype, const char *source, const char *options,
		    unsigned int attrs, const char *target, struct lxm_error **err)
{
	_cleanup_close_ int tfd = -1, mfd = -1;
	char why[256];
	int r;

	tfd = mkdir_in_root(rootfd, target, 0755);
	if (tfd < 0)
		return lxm_error_setx(err, tfd, 500, "create mount point %s", target);
	mfd = fs_create(fstype, source, options, attrs, why, sizeof(why));
	if (mfd < 0)
		return lxm_error_set(err, mfd, 500, "mount %s on %s: %s%s", fstype, target,
				     strerror(-mfd), why);
	r = attach(mfd, tfd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "mount %s on %s", fstype, target);
	return 0;
}

LXM_SETUP_STEP(lxm_step_mount_private)
{
	/* A slave still sees the host unmount things (so a storage pool can go away), but nothing
	 * mounted or unmounted here ever propagates back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		return lxm_error_setx(err, -errno, 500, "make / a recursive slave mount");
	return 0;
}

LXM_SETUP_STEP(lxm_step_mount_rootfs)
{
	_cleanup_close_ int own = -1;
	int tree = fds ? fds->rootfs_tree : -1;

	/* Without a tree from the monitor (a privileged container, or a test) the child can clone
	 * the rootfs itself: it owns its mount namespace. */
	if (tree < 0) {
		own = bind_clone(s->rootfs, true, false);
		if (own < 0)
			return lxm_error_setx(err, own, 500, "clone the rootfs mount %s",
					      s->rootfs);
		tree = own;
	}
	/* pivot_root needs the new root attached in this namespace; the rootfs path itself is a
	 * place that surely exists. The directories leading to it must be searchable by the
	 * container's root (LXD's 0711), which is all the child needs of the host's tree. */
	if (move_mount(tree, "", AT_FDCWD, s->rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return lxm_error_setx(err, -errno, 500, "attach the rootfs mount on %s", s->rootfs);
	/* Entering it through the fd, not the path, is immune to renames on the host meanwhile. */
	if (fchdir(tree) < 0)
		return lxm_error_setx(err, -errno, 500, "enter the rootfs mount %s", s->rootfs);
	/* A clone of a shared host mount stays in the host's peer group: mounts made beneath it
	 * would appear on the host. */
	if (mount(NULL, ".", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		return lxm_error_setx(err, -errno, 500, "make the rootfs mount %s a slave",
				      s->rootfs);
	return 0;
}

/* Files of /proc that expose the host (kernel memory, timers of every task) or act on it
 * (sysrq): covered with a read-only /dev/null. */
static const char *const proc_masked_files[] = {
	"/proc/kcore",	     "/proc/sysrq-trigger", "/proc/timer_list",
	"/proc/sched_debug", "/proc/latency_stats",
};
/* Directories of hardware state: covered with an empty read-only tmpfs. */
static const char *const proc_masked_dirs[] = { "/proc/acpi", "/proc/scsi" };

static int mask_file(int rootfd, const char *path, struct lxm_error **err)
{
	_cleanup_close_ int tfd = -1, mfd = -1;
	int r;

	tfd = open_in_root(rootfd, path, O_PATH);
	if (tfd == -ENOENT)
		return 0;
	if (tfd < 0)
		return lxm_error_setx(err, tfd, 500, "mask %s: open", path);
	mfd = bind_clone("/dev/null", false, true);
	if (mfd < 0)
		return lxm_error_setx(err, mfd, 500, "mask %s: bind /dev/null", path);
	r = attach(mfd, tfd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "mask %s: mount /dev/null on it", path);
	return 0;
}

static int mask_dir(int rootfd, const char *path, struct lxm_error **err)
{
	_cleanup_close_ int tfd = -1, mfd = -1;
	char why[256];
	int r;

	tfd = open_in_root(rootfd, path, O_PATH | O_DIRECTORY);
	if (tfd == -ENOENT)
		return 0;
	if (tfd < 0)
		return lxm_error_setx(err, tfd, 500, "mask %s: open", path);
	mfd = fs_create("tmpfs", "tmpfs", "size=4k,mode=555",
			MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
				MOUNT_ATTR_NOEXEC,
			why, sizeof(why));
	if (mfd < 0)
		return lxm_error_set(err, mfd, 500, "mask %s: mount tmpfs: %s%s", path,
				     strerror(-mfd), why);
	r = attach(mfd, tfd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "mask %s: mount tmpfs on it", path);
	return 0;
}

/* /proc/sys read-only except /proc/sys/net, which belongs to the container's own network
 * namespace. The net clone is taken before /proc/sys turns read-only, so it stays writable. */
static int proc_sys_readonly(int rootfd, struct lxm_error **err)
{
	_cleanup_close_ int sysfd = -1, netfd = -1, sysmnt = -1, netmnt = -1;
	int r;

	sysfd = open_in_root(rootfd, "/proc/sys", O_PATH | O_DIRECTORY);
	if (sysfd < 0)
		return lxm_error_setx(err, sysfd, 500, "open /proc/sys");
	netfd = open_in_root(rootfd, "/proc/sys/net", O_PATH | O_DIRECTORY);
	if (netfd >= 0) {
		netmnt = open_tree(netfd, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (netmnt < 0)
			return lxm_error_setx(err, -errno, 500, "bind /proc/sys/net");
		lxm_closep(&netfd);
	}
	sysmnt = open_tree(sysfd, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (sysmnt < 0)
		return lxm_error_setx(err, -errno, 500, "bind /proc/sys");
	r = set_readonly(sysmnt, false);
	if (r >= 0)
		r = attach(sysmnt, sysfd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "mount /proc/sys read-only");
	if (netmnt < 0)
		return 0;
	netfd = open_in_root(rootfd, "/proc/sys/net", O_PATH | O_DIRECTORY);
	if (netfd < 0)
		return lxm_error_setx(err, netfd, 500, "open /proc/sys/net");
	r = attach(netmnt, netfd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "mount /proc/sys/net read-write");
	return 0;
}

/* security.nesting on an unprivileged container: the kernel only lets a nested container mount
 * proc and sysfs where they are fully visible (no locked mounts over them), so they are left
 * whole; the user namespace already keeps everything there from acting on the host. */
static bool full_proc_sys(const struct lxm_container_spec *s)
{
	return s->nesting && !s->privileged;
}

LXM_SETUP_STEP(lxm_step_mount_proc)
{
	_cleanup_close_ int rootfd = -1;
	int r;

	r = open_root(&rootfd, err);
	if (r < 0)
		return r;
	r = mount_fs(rootfd, "proc", "proc", NULL,
		     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, "/proc", err);
	if (r < 0 || full_proc_sys(s))
		return r;
	r = proc_sys_readonly(rootfd, err);
	for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(proc_masked_files); i++)
		r = mask_file(rootfd, proc_masked_files[i], err);
	for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(proc_masked_dirs); i++)
		r = mask_dir(rootfd, proc_masked_dirs[i], err);
	return r;
}

LXM_SETUP_STEP(lxm_step_mount_sys)
{
	_cleanup_close_ int rootfd = -1;
	unsigned int attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
	int r;

	r = open_root(&rootfd, err);
	if (r < 0)
		return r;
	if (!full_proc_sys(s))
		attrs |= MOUNT_ATTR_RDONLY;
	/* In a user namespace sysfs mounts only for a network namespace that namespace owns,
	 * which clone3 made so. */
	return mount_fs(rootfd, "sysfs", "sysfs", NULL, attrs, "/sys", err);
}

/* The nodes every container gets, whatever the spec's devices list. */
static const struct lxm_spec_device dev_standard[] = {
	{ .path = (char *)"/dev/null", .type = 'c', .major = 1, .minor = 3, .mode = 0666 },
	{ .path = (char *)"/dev/zero", .type = 'c', .major = 1, .minor = 5, .mode = 0666 },
	{ .path = (char *)"/dev/full", .type = 'c', .major = 1, .minor = 7, .mode = 0666 },
	{ .path = (char *)"/dev/random", .type = 'c', .major = 1, .minor = 8, .mode = 0666 },
	{ .path = (char *)"/dev/urandom", .type = 'c', .major = 1, .minor = 9, .mode = 0666 },
	{ .path = (char *)"/dev/tty", .type = 'c', .major = 5, .minor = 0, .mode = 0666 },
};

/* Symlinks of a standard /dev: target, name in /dev. */
static const char *const dev_links[][2] = {
	{ "pts/ptmx", "ptmx" },		 { "/proc/self/fd", "fd" },
	{ "/proc/self/fd/0", "stdin" },	 { "/proc/self/fd/1", "stdout" },
	{ "/proc/self/fd/2", "stderr" },
};

/* Paths the setup provides itself, never from the host: the container's ptys come from its own
 * devpts instance and its console from the monitor. */
static bool dev_managed(const char *path)
{
	return streq(path, "/dev/ptmx") || streq(path, "/dev/console") ||
	       startswith(path, "/dev/pts/") || streq(path, "/dev/pts");
}

static bool spec_has_device(const struct lxm_container_spec *s, const char *path)
{
	for (size_t i = 0; i < s->n_devices; i++)
		if (streq(s->devices[i].path, path))
			return true;
	return false;
}

/* Binds the host's node for d: without CAP_MKNOD in the initial user namespace, a container
 * cannot create device nodes, but it can use a bind mount of one. */
static int bind_device(int rootfd, int dfd, const char *base, const struct lxm_spec_device *d,
		       struct lxm_error **err)
{
	_cleanup_close_ int tfd = -1, mfd = -1;
	mode_t type = d->type == 'b' ? S_IFBLK : S_IFCHR;
	struct stat st;
	int r;

	if (stat(d->path, &st) < 0 || (st.st_mode & S_IFMT) != type ||
	    st.st_rdev != makedev(d->major, d->minor))
		return lxm_error_set(err, -ENODEV, 500,
				     "device %s: the host has no node %c %u:%u at %s to bind",
				     d->path, d->type, d->major, d->minor, d->path);
	tfd = openat(dfd, base, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (tfd < 0)
		return lxm_error_setx(err, -errno, 500, "device %s: create", d->path);
	lxm_closep(&tfd);
	tfd = open_in_root(rootfd, d->path, O_PATH | O_NOFOLLOW);
	if (tfd < 0)
		return lxm_error_setx(err, tfd, 500, "device %s: open", d->path);
	mfd = bind_clone(d->path, false, false);
	if (mfd < 0)
		return lxm_error_setx(err, mfd, 500, "device %s: bind the host's node", d->path);
	r = attach(mfd, tfd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "device %s: mount the host's node", d->path);
	return 0;
}

static int create_device(int rootfd, const struct lxm_spec_device *d, bool privileged,
			 struct lxm_error **err)
{
	_cleanup_free_ char *dir = strdup(d->path);
	_cleanup_close_ int dfd = -1;
	mode_t type = d->type == 'b' ? S_IFBLK : S_IFCHR;
	char *base;

	if (!dir)
		return -ENOMEM;
	base = strrchr(dir, '/');
	*base++ = '\0';
	dfd = mkdir_in_root(rootfd, dir, 0755);
	if (dfd < 0)
		return lxm_error_setx(err, dfd, 500, "device %s: create %s", d->path, dir);
	if (privileged) {
		if (mknodat(dfd, base, type | (d->mode & 07777), makedev(d->major, d->minor)) ==
		    0) {
			/* mknod applied the umask; the spec's mode is what the container gets. */
			if (fchownat(dfd, base, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
			    fchmodat(dfd, base, d->mode & 07777, 0) < 0)
				return lxm_error_setx(err, -errno, 500,
						      "device %s: set owner and mode", d->path);
			return 0;
		}
		/* A privileged container started from inside another container has no CAP_MKNOD
		 * either: bind the node as an unprivileged one does. */
		if (errno != EPERM)
			return lxm_error_setx(err, -errno, 500, "device %s: mknod %c %u:%u",
					      d->path, d->type, d->major, d->minor);
	}
	return bind_device(rootfd, dfd, base, d, err);
}

/* devpts refuses gid= for a group with no id in this user namespace; our gid_map says. */
static bool gid_mapped(unsigned long gid)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/gid_map", "re");
	unsigned long nsid, hostid, count;

	while (f && fscanf(f, "%lu %lu %lu", &nsid, &hostid, &count) == 3)
		if (gid >= nsid && gid - nsid < count)
			return true;
	return false;
}

LXM_SETUP_STEP(lxm_step_mount_dev)
{
	_cleanup_close_ int rootfd = -1, devfd = -1;
	/* tty is group 5 on every distribution; pts get mode 0620 for it (write, mesg). */
	const char *pts_opts = gid_mapped(5) ? "newinstance,ptmxmode=0666,mode=0620,gid=5"
					     : "newinstance,ptmxmode=0666,mode=0620";
	int r;

	r = open_root(&rootfd, err);
	if (r >= 0)
		r = mount_fs(rootfd, "tmpfs", "tmpfs", "mode=755,size=" LXM_DEV_TMPFS_SIZE,
			     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, "/dev", err);
	if (r < 0)
		return r;
	devfd = open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
	if (devfd < 0)
		return lxm_error_setx(err, devfd, 500, "open /dev");
	for (size_t i = 0; i < ARRAY_SIZE(dev_standard); i++) {
		if (spec_has_device(s, dev_standard[i].path))
			continue;
		r = create_device(rootfd, &dev_standard[i], s->privileged, err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < s->n_devices; i++) {
		if (dev_managed(s->devices[i].path))
			continue;
		r = create_device(rootfd, &s->devices[i], s->privileged, err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++)
		if (symlinkat(dev_links[i][0], devfd, dev_links[i][1]) < 0 && errno != EEXIST)
			return lxm_error_setx(err, -errno, 500, "symlink /dev/%s -> %s",
					      dev_links[i][1], dev_links[i][0]);
	r = mount_fs(rootfd, "devpts", "devpts", pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
		     "/dev/pts", err);
	if (r >= 0)
		r = mount_fs(rootfd, "tmpfs", "shm", "mode=1777",
			     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, "/dev/shm",
			     err);
	return r;
}

/* The path of the console pty slave in this mount namespace. The fd's own magic link points into
 * the monitor's mount namespace, whose mounts cannot be bind-mounted here; the same path in this
 * namespace's copy of the host's tree can, once it is checked to be the same tty. */
static int console_path(int slave, char *buf, size_t len, struct lxm_error **err)
{
	char link[64];
	struct stat a, b;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", slave);
	n = readlink(link, buf, len - 1);
	if (n < 0)
		return lxm_error_setx(err, -errno, 500, "console: readlink %s", link);
	buf[n] = '\0';
	if (fstat(slave, &a) < 0)
		return lxm_error_setx(err, -errno, 500, "console: stat the pty");
	if (!S_ISCHR(a.st_mode) || buf[0] != '/' || stat(buf, &b) < 0 || a.st_rdev != b.st_rdev ||
	    a.st_dev != b.st_dev)
		return lxm_error_set(err, -ENOTTY, 500,
				     "console: the pty %s is not reachable from the container's "
				     "mount namespace",
				     buf);
	return 0;
}

LXM_SETUP_STEP(lxm_step_mount_console)
{
	_cleanup_close_ int rootfd = -1, tfd = -1, mfd = -1;
	char path[PATH_MAX];
	int slave = fds ? fds->console_slave : -1;
	int r;

	if (slave < 0)
		return 0;
	r = open_root(&rootfd, err);
	if (r >= 0)
		r = console_path(slave, path, sizeof(path), err);
	if (r < 0)
		return r;
	tfd = mkfile_in_root(rootfd, "/dev/console", 0600);
	if (tfd < 0)
		return lxm_error_setx(err, tfd, 500, "create /dev/console");
	mfd = bind_clone(path, false, false);
	if (mfd < 0)
		return lxm_error_setx(err, mfd, 500, "bind the console %s", path);
	r = attach(mfd, tfd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "mount the console %s on /dev/console", path);
	/* init leads its own session with the console as controlling terminal, as on a real
	 * machine; setsid only fails when we already lead one. */
	if (setsid() < 0 && getsid(0) != getpid())
		return lxm_error_setx(err, -errno, 500, "console: setsid");
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		return lxm_error_setx(err, -errno, 500, "console: make %s the controlling tty",
				      path);
	for (int fd = 0; fd < 3; fd++)
		if (dup2(slave, fd) < 0)
			return lxm_error_setx(err, -errno, 500, "console: dup2 onto fd %d", fd);
	return 0;
}

LXM_SETUP_STEP(lxm_step_mount_run)
{
	_cleanup_close_ int rootfd = -1;
	char opts[64];
	int r;

	r = open_root(&rootfd, err);
	if (r < 0)
		return r;
	if (s->run_size > 0)
		snprintf(opts, sizeof(opts), "mode=755,size=%llu", (unsigned long long)s->run_size);
	else
		snprintf(opts, sizeof(opts), "mode=755");
	return mount_fs(rootfd, "tmpfs", "tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
			"/run", err);
}

LXM_SETUP_STEP(lxm_step_mount_cgroup)
{
	_cleanup_close_ int rootfd = -1;
	int r;

	/* A cgroup namespace of our own, rooted where the monitor placed us: clone3 rooted the
	 * one it made at the v2 cgroup only, before the v1 joins (hybrid hosts). */
	if (unshare(CLONE_NEWCGROUP) < 0)
		return lxm_error_setx(err, -errno, 500, "enter a new cgroup namespace");
	r = open_root(&rootfd, err);
	if (r < 0)
		return r;
	/* On a hybrid host the unified hierarchy has no controllers, but systemd still tracks
	 * its services there. */
	return mount_fs(rootfd, "cgroup2", "cgroup2", NULL,
			MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, "/sys/fs/cgroup",
			err);
}

/* A bind mount of m->source, or of tree (the monitor's clone of it) when that is not -1. */
static int mount_extra_bind(int rootfd, const struct lxm_spec_mount *m, int tree,
			    struct lxm_error **err)
{
	_cleanup_close_ int tfd = -1, mfd = -1;
	struct stat st;
	int r;

	if (tree >= 0 ? fstat(tree, &st) < 0 : stat(m->source, &st) < 0) {
		if (errno == ENOENT && m->optional)
			return 0;
		return lxm_error_setx(err, -errno, 500, "mount %s on %s: source", m->source,
				      m->target);
	}
	tfd = S_ISDIR(st.st_mode) ? mkdir_in_root(rootfd, m->target, 0755)
				  : mkfile_in_root(rootfd, m->target, 0644);
	if (tfd < 0)
		return lxm_error_setx(err, tfd, 500, "mount %s on %s: create the target", m->source,
				      m->target);
	mfd = tree >= 0 ? fcntl(tree, F_DUPFD_CLOEXEC, 3)
			: bind_clone(m->source, true, m->readonly);
	if (mfd < 0 && tree >= 0)
		mfd = -errno;
	if (mfd < 0)
		return lxm_error_setx(err, mfd, 500, "mount %s on %s: bind", m->source, m->target);
	r = attach(mfd, tfd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "mount %s on %s", m->source, m->target);
	return 0;
}

LXM_SETUP_STEP(lxm_step_mount_extra)
{
	_cleanup_close_ int rootfd = -1;
	int r;

	if (s->n_mounts == 0)
		return 0;
	r = open_root(&rootfd, err);
	for (size_t i = 0; r >= 0 && i < s->n_mounts; i++) {
		const struct lxm_spec_mount *m = &s->mounts[i];

		if (!m->fstype || streq(m->fstype, "bind")) {
			r = mount_extra_bind(
				rootfd, m, fds && fds->mount_trees ? fds->mount_trees[i] : -1, err);
			continue;
		}
		/* A block device or image that is not there is what "optional" is for. */
		if (m->optional && m->source[0] == '/' && access(m->source, F_OK) < 0 &&
		    errno == ENOENT)
			continue;
		r = mount_fs(rootfd, m->fstype, m->source, m->options,
			     m->readonly ? MOUNT_ATTR_RDONLY : 0, m->target, err);
	}
	return r;
}

LXM_SETUP_STEP(lxm_step_pivot_root)
{
	char cwd[8];

	/* pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then
	 * detaches it, and with it every host mount, without needing a directory for it. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return lxm_error_setx(err, -errno, 500, "pivot_root into %s", s->rootfs);
	if (umount2(".", MNT_DETACH) < 0)
		return lxm_error_setx(err, -errno, 500, "detach the host's root");
	if (chdir("/") < 0)
		return lxm_error_setx(err, -errno, 500, "chdir to the new root");
	/* CVE-2024-21626: a working directory outside the root (an inherited fd's) would show as
	 * unreachable here. */
	if (!getcwd(cwd, sizeof(cwd)) || !streq(cwd, "/"))
		return lxm_error_set(err, -EPERM, 500,
				     "the working directory is outside the container's root");
	return 0;
}
