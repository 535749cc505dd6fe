/* The btrfs driver: every volume is a subvolume. An image volume is a read-only subvolume, an
 * instance from it a writable snapshot of it (no data copied), a snapshot a read-only snapshot;
 * quotas are qgroup limits on a volume's referenced bytes.
 *
 * The pool is a btrfs file system mounted at p->path: by default a sparse loop file
 * ROOT/disks/<pool>.img that lxm makes, formats and attaches itself (config source = that file);
 * or an existing directory on btrfs named by source=, bind-mounted at p->path. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/btrfs.h>
#include <linux/loop.h>
#include <linux/magic.h>

#include "cleanup.h"
#include "util.h"

#include "profiles/policy.h"
#include "storage-internal.h"

/* Size of a loop file when size= is not given, and the smallest one mkfs.btrfs makes useful. */
#define BTRFS_DEFAULT_SIZE "5GiB"
#define BTRFS_MIN_SIZE	   (256ULL << 20)
/* Mount options of a pool: containers may delete the subvolumes they create (as LXD allows);
 * discard hands freed blocks back to the loop file's file system. */
#define BTRFS_MOUNT_OPTS "user_subvol_rm_allowed,discard"
/* The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID). */
#define BTRFS_SUBVOL_ROOT_INO 256
/* How often to retry a loop device another process took between GET_FREE and CONFIGURE. */
#define BTRFS_LOOP_TRIES 16
/* How long pool_unmount waits for an autoclear loop device to let go of its file. */
#define BTRFS_LOOP_DETACH_MS 5000

static int storage_btrfs_pool_validate(json_t *config, struct lxm_error **err)
{
	const char *key, *size;
	json_t *v;
	int64_t bytes;
	int r;

	json_object_foreach (config, key, v)
		if (!streq(key, "source") && !streq(key, "size"))
			return lxm_error_set(err, -EINVAL, 400,
					     "unknown config key '%s' for btrfs pools (use source "
					     "or size)",
					     key);
	size = json_string_value(json_object_get(config, "size"));
	if (size) {
		if ((r = lxm_parse_size("size", size, 0, &bytes, err)) < 0)
			return r;
		if ((uint64_t)bytes < BTRFS_MIN_SIZE)
			return lxm_error_set(
				err, -EINVAL, 400,
				"config key 'size': '%s' is too small for a btrfs pool "
				"(at least 256MiB)",
				size);
	}
	v = json_object_get(config, "source");
	if (v && (!*json_string_value(v) || json_string_value(v)[0] != '/'))
		return lxm_error_set(err, -EINVAL, 400,
				     "config key 'source': '%s' is not an absolute path",
				     json_string_value(v));
	if (!v && !size && json_object_set_new(config, "size", json_string(BTRFS_DEFAULT_SIZE)) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- loop devices ---- */

/* Attaches file to a free loop device with autoclear (the last unmount detaches it) and returns
 * the open device in *ret_fd and its path in ret_dev. */
static int loop_attach(const char *file, int *ret_fd, char ret_dev[static 32],
		       struct lxm_error **err)
{
	_cleanup_close_ int ctl = -1, filefd = -1;

	filefd = open(file, O_RDWR | O_CLOEXEC);
	if (filefd < 0)
		return lxm_error_setx(err, -errno, 500, "open %s", file);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return lxm_error_setx(err, -errno, 500, "open /dev/loop-control");
	for (int i = 0; i < BTRFS_LOOP_TRIES; i++) {
		struct loop_config cfg = {
			.fd = (uint32_t)filefd,
			.info = { .lo_flags = LO_FLAGS_AUTOCLEAR },
		};
		_cleanup_close_ int fd = -1;
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (n < 0)
			return lxm_error_setx(err, -errno, 500, "find a free loop device");
		snprintf(ret_dev, 32, "/dev/loop%d", n);
		fd = open(ret_dev, O_RDWR | O_CLOEXEC);
		/* A /dev without devtmpfs lacks nodes for new devices. */
		if (fd < 0 && errno == ENOENT &&
		    mknod(ret_dev, S_IFBLK | 0660, makedev(7, (unsigned)n)) == 0)
			fd = open(ret_dev, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return lxm_error_setx(err, -errno, 500, "open %s", ret_dev);
		snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%s", file);
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
			*ret_fd = TAKE_FD(fd);
			return 0;
		}
		/* Someone else took it since GET_FREE: ask again. */
		if (errno != EBUSY)
			return lxm_error_setx(err, -errno, 500, "attach %s to %s", file, ret_dev);
	}
	return lxm_error_set(err, -EBUSY, 500, "attach %s: every free loop device was taken", file);
}

/* Waits until loop device dev ("/dev/loop3") has no backing file. */
static void loop_wait_detached(const char *dev)
{
	_cleanup_free_ char *bf = NULL;

	if (!startswith(dev, "/dev/loop") ||
	    asprintf(&bf, "/sys/block/%s/loop/backing_file", dev + strlen("/dev/")) < 0)
		return;
	for (int ms = 0; ms < BTRFS_LOOP_DETACH_MS && access(bf, F_OK) == 0; ms += 10)
		usleep(10000);
}

/* ---- the pool's file system ---- */

/* Whether source names a loop file (a regular file, or nothing yet) rather than a directory. */
static int source_is_file(const char *source)
{
	struct stat st;

	if (stat(source, &st) < 0)
		return errno == ENOENT ? 1 : -errno;
	if (S_ISREG(st.st_mode))
		return 1;
	if (S_ISDIR(st.st_mode))
		return 0;
	return -ENOTSUP;
}

/* Mounts the pool's file system at p->path: the loop file through a new loop device, or a bind
 * mount of a source directory. */
static int mount_source(struct lxm_pool *p, const char *source, struct lxm_error **err)
{
	_cleanup_close_ int loopfd = -1;
	struct statfs sf;
	char dev[32];
	int is_file = source_is_file(source), r;

	if (is_file < 0)
		return lxm_error_setx(err, is_file, 400,
				      "source %s: not a directory on btrfs nor a file", source);
	if ((r = lxm_mkdir_p(p->path, STORAGE_DIR_MODE)) < 0)
		return lxm_error_setx(err, r, 500, "create %s", p->path);
	if (!is_file) {
		if (statfs(source, &sf) < 0)
			return lxm_error_setx(err, -errno, 500, "statfs %s", source);
		if (sf.f_type != BTRFS_SUPER_MAGIC)
			return lxm_error_set(err, -EINVAL, 400,
					     "source %s is not on a btrfs file system", source);
		if (mount(source, p->path, NULL, MS_BIND, NULL) < 0)
			return lxm_error_setx(err, -errno, 500, "bind-mount %s on %s", source,
					      p->path);
		return 0;
	}
	if ((r = loop_attach(source, &loopfd, dev, err)) < 0)
		return r;
	if (mount(dev, p->path, "btrfs", 0, BTRFS_MOUNT_OPTS) < 0)
		return lxm_error_setx(err, -errno, 500, "mount %s (%s) on %s", dev, source,
				      p->path);
	/* Closing loopfd leaves the mount as the device's only user: its unmount detaches it. */
	return 0;
}

/* Makes the sparse loop file and formats it. */
static int make_loop_file(const char *file, uint64_t size, struct lxm_error **err)
{
	_cleanup_free_ char *dir = strdup(file);
	_cleanup_close_ int fd = -1;
	const char *argv[] = { "mkfs.btrfs", "-q", "-f", file, NULL };
	int r;

	if (!dir)
		return -ENOMEM;
	if ((r = lxm_mkdir_p(dirname(dir), 0700)) < 0)
		return lxm_error_setx(err, r, 500, "create %s", dir);
	fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "create %s", file);
	if (ftruncate(fd, (off_t)size) < 0) {
		r = lxm_error_setx(err, -errno, 500, "size %s to %" PRIu64 " bytes", file, size);
		unlink(file);
		return r;
	}
	if ((r = storage_run(argv, err)) < 0) {
		unlink(file);
		return r;
	}
	return 0;
}

static int storage_btrfs_pool_create(struct lxm_pool *p, struct lxm_error **err)
{
	_cleanup_free_ char *root = NULL, *file = NULL;
	const char *source = json_string_value(json_object_get(p->config, "source"));
	const char *size = json_string_value(json_object_get(p->config, "size"));
	int64_t bytes = 0;
	bool made_file = false;
	int r;

	if (storage_exists(p->path) > 0)
		return lxm_error_setx(err, -EEXIST, 409, "create %s", p->path);
	if (!source) {
		root = strdup(p->path);
		if (!root)
			return -ENOMEM;
		/* p->path is ROOT/storage-pools/<name>: the file goes to ROOT/disks. */
		if (asprintf(&file, "%s/disks/%s.img", dirname(dirname(root)), p->name) < 0)
			return -ENOMEM;
		source = file;
	}
	if ((r = source_is_file(source)) == 1) {
		if (storage_exists(source) > 0)
			return lxm_error_set(err, -EEXIST, 409,
					     "source %s exists: name a new file for lxm to make, "
					     "or a directory on btrfs",
					     source);
		if ((r = lxm_parse_size("size", size ? size : BTRFS_DEFAULT_SIZE, 0, &bytes, err)) <
			    0 ||
		    (r = make_loop_file(source, (uint64_t)bytes, err)) < 0)
			return r;
		made_file = true;
	}
	r = mount_source(p, source, err);
	if (r >= 0)
		r = storage_make_layout(p, err);
	if (r >= 0 && file && json_object_set_new(p->config, "source", json_string(file)) < 0)
		r = -ENOMEM;
	if (r < 0) {
		storage_umount(p->path, NULL);
		rmdir(p->path);
		if (made_file)
			unlink(source);
		return r;
	}
	return 0;
}

static int storage_btrfs_pool_mount(struct lxm_pool *p, struct lxm_error **err)
{
	const char *source = json_string_value(json_object_get(p->config, "source"));
	_cleanup_free_ char *fstype = NULL;
	int r;

	r = storage_mount_info(p->path, &fstype, NULL);
	if (r == 0 && !streq(fstype, "btrfs"))
		return lxm_error_set(err, -EINVAL, 500, "%s is mounted, but as %s, not btrfs",
				     p->path, fstype);
	if (r < 0 && r != -ENOENT)
		return lxm_error_setx(err, r, 500, "check mounts of %s", p->path);
	if (r == -ENOENT) {
		if (!source)
			return lxm_error_set(err, -EINVAL, 500,
					     "the pool has no source in its config");
		if ((r = mount_source(p, source, err)) < 0)
			return r;
	}
	return storage_make_layout(p, err);
}

static int storage_btrfs_pool_unmount(struct lxm_pool *p, struct lxm_error **err)
{
	_cleanup_free_ char *src = NULL;
	int r = storage_mount_info(p->path, NULL, &src);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return lxm_error_setx(err, r, 500, "check mounts of %s", p->path);
	if ((r = storage_umount(p->path, err)) < 0)
		return r;
	loop_wait_detached(src);
	return 0;
}

/* ---- subvolumes ---- */

static int open_dir(const char *path, struct lxm_error **err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return lxm_error_setx(err, -errno, errno == ENOENT ? 404 : 500, "open %s", path);
	return fd;
}

/* Opens the parent directory of path; *ret_base points into path at the last component. */
static int open_parent(const char *path, const char **ret_base, struct lxm_error **err)
{
	const char *slash = strrchr(path, '/');
	_cleanup_free_ char *parent = NULL;

	if (!slash || strlen(slash + 1) >= BTRFS_PATH_NAME_MAX)
		return lxm_error_set(err, -EINVAL, 400, "bad subvolume path %s", path);
	parent = strndup(path, (size_t)(slash - path));
	if (!parent)
		return -ENOMEM;
	*ret_base = slash + 1;
	return open_dir(parent, err);
}

static int subvol_create(const char *path, struct lxm_error **err)
{
	struct btrfs_ioctl_vol_args args = { 0 };
	_cleanup_close_ int dfd = -1;
	const char *base;

	if ((dfd = open_parent(path, &base, err)) < 0)
		return dfd;
	snprintf(args.name, sizeof(args.name), "%s", base);
	if (ioctl(dfd, BTRFS_IOC_SUBVOL_CREATE, &args) < 0)
		return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500,
				      "create subvolume %s", path);
	return 0;
}

/* Snapshots subvolume src as dst (read-only when asked). */
static int subvol_snapshot(const char *src, const char *dst, bool readonly, struct lxm_error **err)
{
	struct btrfs_ioctl_vol_args_v2 args = { 0 };
	_cleanup_close_ int sfd = -1, dfd = -1;
	const char *base;

	if ((sfd = open_dir(src, err)) < 0 || (dfd = open_parent(dst, &base, err)) < 0)
		return sfd < 0 ? sfd : dfd;
	args.fd = sfd;
	args.flags = readonly ? BTRFS_SUBVOL_RDONLY : 0;
	snprintf(args.name, sizeof(args.name), "%s", base);
	if (ioctl(dfd, BTRFS_IOC_SNAP_CREATE_V2, &args) < 0)
		return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "snapshot %s as %s",
				      src, dst);
	return 0;
}

static int subvol_set_readonly(const char *path, bool readonly, struct lxm_error **err)
{
	_cleanup_close_ int fd = -1;
	uint64_t flags;

	if ((fd = open_dir(path, err)) < 0)
		return fd;
	if (ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0)
		return lxm_error_setx(err, -errno, 500, "read flags of subvolume %s", path);
	flags = readonly ? flags | BTRFS_SUBVOL_RDONLY : flags & ~(uint64_t)BTRFS_SUBVOL_RDONLY;
	if (ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) < 0)
		return lxm_error_setx(err, -errno, 500, "set flags of subvolume %s", path);
	return 0;
}

static int subvol_destroy_at(int parent, const char *name, const char *path,
			     struct lxm_error **err);

/* Deletes the subvolumes nested anywhere below the directory dfd (what a container made inside
 * its rootfs), never descending into mounts. */
static int destroy_nested(int dfd, const char *path, struct lxm_error **err)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int fd = dup(dfd), r;

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return lxm_error_setx(err, -errno, 500, "list %s", path);
	}
	while ((de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;
		_cleanup_close_ int cfd = -1;
		struct statx stx;

		if (streq(de->d_name, ".") || streq(de->d_name, "..") ||
		    (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
			continue;
		if (statx(dfd, de->d_name, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO, &stx) < 0 ||
		    !S_ISDIR(stx.stx_mode) || (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
			continue;
		if (asprintf(&sub, "%s/%s", path, de->d_name) < 0)
			return -ENOMEM;
		if (stx.stx_ino == BTRFS_SUBVOL_ROOT_INO) {
			if ((r = subvol_destroy_at(dfd, de->d_name, sub, err)) < 0)
				return r;
			continue;
		}
		cfd = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0)
			continue;
		if ((r = destroy_nested(cfd, sub, err)) < 0)
			return r;
	}
	return 0;
}

static int subvol_destroy_at(int parent, const char *name, const char *path, struct lxm_error **err)
{
	struct btrfs_ioctl_vol_args args = { 0 };
	_cleanup_close_ int fd = -1;
	uint64_t flags = 0;
	int r;

	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : lxm_error_setx(err, -errno, 500, "open %s", path);
	/* A read-only subvolume cannot hold nested ones: nothing to walk. */
	if (ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0)
		return lxm_error_setx(err, -errno, 500, "read flags of subvolume %s", path);
	if (!(flags & BTRFS_SUBVOL_RDONLY) && (r = destroy_nested(fd, path, err)) < 0)
		return r;
	snprintf(args.name, sizeof(args.name), "%s", name);
	if (ioctl(parent, BTRFS_IOC_SNAP_DESTROY, &args) < 0)
		return errno == ENOENT
			       ? 0
			       : lxm_error_setx(err, -errno, 500, "delete subvolume %s", path);
	return 0;
}

/* Deletes the subvolume at path and those nested in it; a missing one is fine. */
static int subvol_destroy(const char *path, struct lxm_error **err)
{
	_cleanup_close_ int dfd = -1;
	const char *base;
	int r = storage_exists(path);

	if (r <= 0)
		return r < 0 ? lxm_error_setx(err, r, 500, "stat %s", path) : 0;
	if ((dfd = open_parent(path, &base, err)) < 0)
		return dfd;
	return subvol_destroy_at(dfd, base, path, err);
}

/* Deletes every subvolume (and nested ones) in the directory path; a missing one is fine. The
 * directory is closed on return: an open one would keep the file system busy. */
static int destroy_children(const char *path, struct lxm_error **err)
{
	_cleanup_closedir_ DIR *d = opendir(path);
	struct dirent *de;
	int r;

	if (!d)
		return errno == ENOENT ? 0 : lxm_error_setx(err, -errno, 500, "list %s", path);
	while ((de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (asprintf(&sub, "%s/%s", path, de->d_name) < 0)
			return -ENOMEM;
		if ((r = subvol_destroy(sub, err)) < 0)
			return r;
	}
	return 0;
}

/* The subvolume id of the subvolume at path. */
static int subvol_id(const char *path, uint64_t *ret, struct lxm_error **err)
{
	struct btrfs_ioctl_ino_lookup_args args = { .objectid = BTRFS_SUBVOL_ROOT_INO };
	_cleanup_close_ int fd = -1;

	if ((fd = open_dir(path, err)) < 0)
		return fd;
	if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &args) < 0)
		return lxm_error_setx(err, -errno, 500, "look up the subvolume id of %s", path);
	*ret = args.treeid;
	return 0;
}

/* ---- quotas ---- */

/* /sys/fs/btrfs/<fsid>/qgroups/0_<id> of the subvolume at path, its counters synced. */
static int qgroup_sysdir(const char *path, char **ret, struct lxm_error **err)
{
	struct btrfs_ioctl_fs_info_args fi = { 0 };
	_cleanup_close_ int fd = -1;
	char uuid[37];
	const unsigned char *u = fi.fsid;
	uint64_t id;
	int r;

	if ((r = subvol_id(path, &id, err)) < 0)
		return r;
	if ((fd = open_dir(path, err)) < 0)
		return fd;
	if (ioctl(fd, BTRFS_IOC_FS_INFO, &fi) < 0)
		return lxm_error_setx(err, -errno, 500, "read file system info of %s", path);
	/* Flushes delayed accounting, so the counters include what was just written. */
	(void)ioctl(fd, BTRFS_IOC_SYNC, NULL);
	snprintf(uuid, sizeof(uuid),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
		 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
		 u[15]);
	if (asprintf(ret, "/sys/fs/btrfs/%s/qgroups/0_%" PRIu64, uuid, id) < 0)
		return -ENOMEM;
	return 0;
}

/* The counter file of the qgroup directory dir; -ENOENT when quotas are off. */
static int qgroup_read_at(const char *dir, const char *file, uint64_t *ret, struct lxm_error **err)
{
	_cleanup_free_ char *sys = NULL, *text = NULL;
	int r;

	if (asprintf(&sys, "%s/%s", dir, file) < 0)
		return -ENOMEM;
	if ((r = lxm_read_file(sys, &text, NULL)) < 0)
		return r == -ENOENT ? r : lxm_error_setx(err, r, 500, "read %s", sys);
	*ret = strtoull(text, NULL, 10);
	return 0;
}

/* /sys/fs/btrfs/<fsid>/qgroups/0_<id>/<file> of the subvolume at path; -ENOENT when quotas
 * are off. */
static int qgroup_read(const char *path, const char *file, uint64_t *ret, struct lxm_error **err)
{
	_cleanup_free_ char *dir = NULL;
	int r;

	if ((r = qgroup_sysdir(path, &dir, err)) < 0)
		return r;
	return qgroup_read_at(dir, file, ret, err);
}

/* Usage of a subvolume: its exclusive bytes when quotas are on, else a walk of its tree. */
static int subvol_usage(const char *path, struct lxm_storage_usage *ret, struct lxm_error **err)
{
	_cleanup_free_ char *dir = NULL;
	uint64_t excl = 0, limit = 0;
	int r = qgroup_sysdir(path, &dir, err);

	if (r < 0)
		return r;
	r = qgroup_read_at(dir, "exclusive", &excl, err);
	if (r == 0) {
		if ((r = qgroup_read_at(dir, "max_referenced", &limit, err)) < 0 && r != -ENOENT)
			return r;
		ret->used = excl;
		ret->total = limit == UINT64_MAX ? 0 : limit;
		return 0;
	}
	if (r != -ENOENT)
		return r;
	return storage_measure_tree(path, ret, err);
}

static int quota_enable(struct lxm_pool *p, struct lxm_error **err)
{
	struct btrfs_ioctl_quota_ctl_args q = { .cmd = BTRFS_QUOTA_CTL_ENABLE };
	_cleanup_close_ int fd = -1;

	if ((fd = open_dir(p->path, err)) < 0)
		return fd;
	if (ioctl(fd, BTRFS_IOC_QUOTA_CTL, &q) < 0)
		return lxm_error_setx(err, -errno, 500, "enable quotas on %s", p->path);
	/* Enabling starts a rescan; the counters are right once it ends. */
	if (ioctl(fd, BTRFS_IOC_QUOTA_RESCAN_WAIT, NULL) < 0 && errno != EINVAL)
		return lxm_error_setx(err, -errno, 500, "wait for the quota rescan of %s", p->path);
	return 0;
}

/* Limits the referenced bytes of the subvolume at path; 0 removes the limit. */
static int qgroup_limit(const char *path, uint64_t bytes, struct lxm_error **err)
{
	struct btrfs_ioctl_qgroup_limit_args args = { 0 };
	_cleanup_close_ int fd = -1;
	uint64_t id;
	int r;

	if ((r = subvol_id(path, &id, err)) < 0)
		return r;
	if ((fd = open_dir(path, err)) < 0)
		return fd;
	args.qgroupid = id;
	args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
	/* The kernel takes all ones as "no limit". */
	args.lim.max_rfer = bytes ? bytes : UINT64_MAX;
	if (ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &args) < 0)
		return lxm_error_setx(err, -errno, 500, "limit subvolume %s to %" PRIu64 " bytes",
				      path, bytes);
	return 0;
}

static int storage_btrfs_volume_set_quota(struct lxm_pool *p, enum lxm_volume_type t,
					  const char *name, uint64_t bytes, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;
	uint64_t v;
	int r;

	if (lxm_pool_volume_path(p, t, name, NULL, &path) < 0)
		return -ENOMEM;
	r = qgroup_read(path, "referenced", &v, err);
	if (r == -ENOENT) {
		/* Clearing a limit while quotas are off is already done. */
		if (bytes == 0)
			return 0;
		if ((r = quota_enable(p, err)) < 0)
			return r;
	} else if (r < 0) {
		return r;
	}
	return qgroup_limit(path, bytes, err);
}

/* ---- pools ---- */

static int storage_btrfs_pool_delete(struct lxm_pool *p, struct lxm_error **err)
{
	const char *source = json_string_value(json_object_get(p->config, "source"));
	_cleanup_free_ char *images = NULL;
	int r;

	if ((r = storage_btrfs_pool_mount(p, err)) < 0 ||
	    (r = storage_check_no_volumes(p, err)) < 0)
		return r;
	/* Image volumes are caches: they go with the pool. */
	images = storage_pool_subpath(p, "images");
	if (!images)
		return -ENOMEM;
	if ((r = destroy_children(images, err)) < 0)
		return r;
	/* Only lxm's directories: a source directory stays as it was before. */
	if ((r = storage_remove_layout(p, err)) < 0)
		return r;
	if ((r = storage_btrfs_pool_unmount(p, err)) < 0)
		return r;
	if (rmdir(p->path) < 0 && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "remove %s", p->path);
	if (source && source_is_file(source) == 1 && unlink(source) < 0 && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "remove %s", source);
	return 0;
}

static int storage_btrfs_pool_usage(struct lxm_pool *p, struct lxm_storage_usage *ret,
				    struct lxm_error **err)
{
	return storage_statvfs_usage(p->path, ret, err);
}

/* ---- volumes ---- */

/* A virtual machine's disk is rewritten in place all the time: copy-on-write would fragment it
 * and double its writes. When src holds a VM disk, the empty subvolume dst gets nodatacow before
 * anything is copied into it, so the disk copied in inherits it (snapshots still share its
 * extents until either side writes). */
static int nocow_for_disk(const char *src, const char *dst, struct lxm_error **err)
{
	int r = storage_vm_disk(src, NULL);

	if (r < 0)
		return lxm_error_setx(err, r, 500, "find the disk of %s", src);
	return r > 0 ? storage_set_nocow(dst, err) : 0;
}

static int storage_btrfs_image_create(struct lxm_pool *p, const char *fp, const char *src,
				      struct lxm_error **err)
{
	_cleanup_free_ char *dst = NULL, *tmp = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &dst)) < 0 ||
	    (r = storage_staging_path(dst, &tmp)) < 0)
		return r;
	if ((r = storage_require_absent(dst, err)) < 0)
		return r;
	if ((r = subvol_create(tmp, err)) < 0)
		return r;
	r = nocow_for_disk(src, tmp, err);
	if (r >= 0)
		r = storage_copy_tree(src, tmp, err);
	if (r >= 0)
		r = subvol_set_readonly(tmp, true, err);
	if (r >= 0)
		r = storage_rename_noreplace(tmp, dst, err);
	if (r < 0)
		subvol_destroy(tmp, NULL);
	return r;
}

static int storage_btrfs_volume_create_from_image(struct lxm_pool *p, const char *fp,
						  enum lxm_volume_type t, const char *name,
						  struct lxm_error **err)
{
	_cleanup_free_ char *src = NULL, *dst = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &src)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, name, NULL, &dst)) < 0)
		return r;
	return subvol_snapshot(src, dst, false, err);
}

static int storage_btrfs_volume_create(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				       struct lxm_error **err)
{
	_cleanup_free_ char *dst = NULL, *rootfs = NULL;
	int r;

	if (lxm_pool_volume_path(p, t, name, NULL, &dst) < 0)
		return -ENOMEM;
	if ((r = subvol_create(dst, err)) < 0)
		return r;
	if (chmod(dst, STORAGE_DIR_MODE) < 0 ||
	    (t == LXM_VOLUME_CONTAINER &&
	     (asprintf(&rootfs, "%s/rootfs", dst) < 0 || mkdir(rootfs, 0755) < 0))) {
		r = lxm_error_setx(err, -errno, 500, "prepare %s", dst);
		subvol_destroy(dst, NULL);
		return r;
	}
	return 0;
}

static int storage_btrfs_volume_copy(struct lxm_pool *p, enum lxm_volume_type t, const char *dst,
				     struct lxm_pool *src_pool, const char *src,
				     const char *src_snap, struct lxm_error **err)
{
	_cleanup_free_ char *from = NULL, *to = NULL, *tmp = NULL;
	int r;

	if ((r = lxm_pool_volume_path(src_pool, t, src, src_snap, &from)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, dst, NULL, &to)) < 0)
		return r;
	if ((r = storage_require(from, "copy", err)) < 0)
		return r;
	if (streq(src_pool->driver, "btrfs")) {
		/* A snapshot when both are on one file system; EXDEV otherwise. */
		struct lxm_error *e = NULL;

		r = subvol_snapshot(from, to, false, &e);
		if (r != -EXDEV) {
			if (r < 0 && err && !*err)
				*err = e;
			else
				lxm_error_free(e);
			return r;
		}
		lxm_error_free(e);
	}
	if ((r = storage_require_absent(to, err)) < 0)
		return r;
	if ((r = storage_staging_path(to, &tmp)) < 0 || (r = subvol_create(tmp, err)) < 0)
		return r;
	r = nocow_for_disk(from, tmp, err);
	if (r >= 0)
		r = storage_copy_tree(from, tmp, err);
	if (r >= 0)
		r = storage_rename_noreplace(tmp, to, err);
	if (r < 0)
		subvol_destroy(tmp, NULL);
	return r;
}

/* Deletes every snapshot of a volume and the snapshots dir. */
static int destroy_snapshots(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			     struct lxm_error **err)
{
	_cleanup_free_ char *snaps = NULL;
	int r;

	if ((r = lxm_pool_snapshots_dir(p, t, name, &snaps)) < 0 ||
	    (r = destroy_children(snaps, err)) < 0)
		return r;
	return storage_rm_tree(snaps, err);
}

static int storage_btrfs_volume_delete(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				       struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;
	int r;

	if (lxm_pool_volume_path(p, t, name, NULL, &path) < 0)
		return -ENOMEM;
	if ((r = destroy_snapshots(p, t, name, err)) < 0)
		return r;
	return subvol_destroy(path, err);
}

static int storage_btrfs_volume_usage(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				      struct lxm_storage_usage *ret, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;

	if (lxm_pool_volume_path(p, t, name, NULL, &path) < 0)
		return -ENOMEM;
	return subvol_usage(path, ret, err);
}

/* ---- snapshots ---- */

static int storage_btrfs_snapshot_create(struct lxm_pool *p, enum lxm_volume_type t,
					 const char *name, const char *snap, struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *snaps = NULL, *dst = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, t, name, NULL, &vol)) < 0 ||
	    (r = lxm_pool_snapshots_dir(p, t, name, &snaps)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, name, snap, &dst)) < 0)
		return r;
	if ((r = storage_require(vol, "snapshot", err)) < 0)
		return r;
	if (mkdir(snaps, STORAGE_DIR_MODE) < 0 && errno != EEXIST)
		return lxm_error_setx(err, -errno, 500, "create %s", snaps);
	if ((r = subvol_snapshot(vol, dst, true, err)) < 0)
		storage_rmdir_if_empty(snaps);
	return r;
}

static int storage_btrfs_snapshot_delete(struct lxm_pool *p, enum lxm_volume_type t,
					 const char *name, const char *snap, struct lxm_error **err)
{
	_cleanup_free_ char *snaps = NULL, *path = NULL;
	int r;

	if ((r = lxm_pool_snapshots_dir(p, t, name, &snaps)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, name, snap, &path)) < 0)
		return r;
	if ((r = subvol_destroy(path, err)) < 0)
		return r;
	storage_rmdir_if_empty(snaps);
	return 0;
}

static int storage_btrfs_snapshot_restore(struct lxm_pool *p, enum lxm_volume_type t,
					  const char *name, const char *snap,
					  struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *path = NULL, *tmp = NULL;
	uint64_t limit = 0;
	int r;

	if ((r = lxm_pool_volume_path(p, t, name, NULL, &vol)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, name, snap, &path)) < 0 ||
	    (r = storage_staging_path(vol, &tmp)) < 0)
		return r;
	if ((r = storage_require(path, "restore", err)) < 0 ||
	    (r = storage_require(vol, "restore to", err)) < 0)
		return r;
	/* The new subvolume gets a new qgroup: it takes over the old one's limit. */
	r = qgroup_read(vol, "max_referenced", &limit, err);
	if (r < 0 && r != -ENOENT)
		return r;
	if ((r = subvol_snapshot(path, tmp, false, err)) < 0)
		return r;
	if (limit && limit != UINT64_MAX)
		r = qgroup_limit(tmp, limit, err);
	if (r >= 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, vol, RENAME_EXCHANGE) < 0)
		r = lxm_error_setx(err, -errno, 500, "swap %s with %s", tmp, vol);
	/* After the swap tmp is the old volume; before it, the unused snapshot. */
	if (r < 0) {
		subvol_destroy(tmp, NULL);
		return r;
	}
	return subvol_destroy(tmp, err);
}

static int storage_btrfs_snapshot_usage(struct lxm_pool *p, enum lxm_volume_type t,
					const char *name, const char *snap,
					struct lxm_storage_usage *ret, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;

	if (lxm_pool_volume_path(p, t, name, snap, &path) < 0)
		return -ENOMEM;
	return subvol_usage(path, ret, err);
}

const struct lxm_storage_ops storage_btrfs_ops = {
	/* "lxm storage create P btrfs". */
	.name = "btrfs",
	/* source (a directory on btrfs, or the loop file to make) and size (of the loop file,
	 * default 5GiB, at least 256MiB). */
	.pool_validate = storage_btrfs_pool_validate,
	/* Makes, formats, attaches and mounts the loop file, or bind-mounts source. */
	.pool_create = storage_btrfs_pool_create,
	/* The same mount after a reboot, when p->path is not mounted. */
	.pool_mount = storage_btrfs_pool_mount,
	/* Unmounts; the autoclear loop device detaches with it. */
	.pool_unmount = storage_btrfs_pool_unmount,
	/* Deletes the image subvolumes and lxm's dirs, unmounts, removes the loop file. */
	.pool_delete = storage_btrfs_pool_delete,
	/* statvfs of the mounted file system. */
	.pool_usage = storage_btrfs_pool_usage,
	/* A subvolume filled with a reflink copy, then made read-only. */
	.image_create = storage_btrfs_image_create,
	/* A writable snapshot of the image subvolume. */
	.volume_create_from_image = storage_btrfs_volume_create_from_image,
	/* An empty subvolume (plus rootfs/ for an instance). */
	.volume_create = storage_btrfs_volume_create,
	/* A writable snapshot on the same file system, else a copy into a new subvolume. */
	.volume_copy = storage_btrfs_volume_copy,
	/* Deletes the snapshots, the nested subvolumes and the subvolume. */
	.volume_delete = storage_btrfs_volume_delete,
	/* rename(2) of the subvolume and its snapshots dir. */
	.volume_rename = storage_rename_volume,
	/* Subvolumes are visible while the pool is mounted. */
	.volume_mount = NULL,
	.volume_unmount = NULL,
	/* The qgroup's exclusive bytes when quotas are on, else a walk. */
	.volume_usage = storage_btrfs_volume_usage,
	/* Enables quotas on first use and limits the qgroup's referenced bytes. */
	.volume_set_quota = storage_btrfs_volume_set_quota,
	/* A read-only snapshot. */
	.snapshot_create = storage_btrfs_snapshot_create,
	/* Deletes the snapshot subvolume; a missing one is fine. */
	.snapshot_delete = storage_btrfs_snapshot_delete,
	/* rename(2). */
	.snapshot_rename = storage_snapshot_rename,
	/* A writable snapshot of the snapshot swapped in with RENAME_EXCHANGE. */
	.snapshot_restore = storage_btrfs_snapshot_restore,
	/* Read-only snapshots are always readable. */
	.snapshot_mount = NULL,
	.snapshot_unmount = NULL,
	/* The snapshot qgroup's exclusive bytes, else a walk. */
	.snapshot_usage = storage_btrfs_snapshot_usage,
};
