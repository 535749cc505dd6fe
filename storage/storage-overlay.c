/* The overlay driver: an instance made from an image is an overlay mount at
 * containers/<name>/rootfs with the image's rootfs as its lower layer and a private upper layer,
 * so it costs no copy; only what the instance changes is stored.
 *
 * State of an overlay instance, below p->path/.overlay/<name>/:
 *   lower                    the fingerprint of the image whose rootfs is the lower layer
 *   upper/, work/            the overlay's upper and work dirs
 *   snapshots/<snap>/lower   a snapshot's lower, and upper/: its copy of the upper layer
 * containers/<name>/ holds the image's metadata.yaml and templates (copied) and the rootfs/
 * mount point. A virtual machine's volume is a plain directory whose disk, root.qcow2, is a qcow2
 * overlay over the image volume's rootfs.img (see create_vm_overlay): its snapshots and copies
 * in the pool are plain copies of that directory, on the same base. Every other volume (custom
 * volumes, an empty instance, a copy from another pool) is a plain directory, handled like the
 * dir driver does. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#include "storage-internal.h"

/* The driver's private dir below p->path. */
#define OVERLAY_STATE ".overlay"

/* The state dir of instance name, or of its snapshot snap (NULL for the instance). */
static char *state_path(const struct lxm_pool *p, const char *name, const char *snap,
			const char *file)
{
	char *s;
	int r;

	if (snap)
		r = asprintf(&s, "%s/" OVERLAY_STATE "/%s/snapshots/%s%s%s", p->path, name, snap,
			     file ? "/" : "", file ? file : "");
	else
		r = asprintf(&s, "%s/" OVERLAY_STATE "/%s%s%s", p->path, name, file ? "/" : "",
			     file ? file : "");
	return r < 0 ? NULL : s;
}

/* The fingerprint in a state dir's lower file; -ENOENT for a plain volume. */
static int read_lower(const struct lxm_pool *p, const char *name, const char *snap, char **ret)
{
	_cleanup_free_ char *path = state_path(p, name, snap, "lower");
	char *fp = NULL;
	int r;

	if (!path)
		return -ENOMEM;
	if ((r = lxm_read_file(path, &fp, NULL)) < 0)
		return r;
	fp[strcspn(fp, "\n")] = '\0';
	*ret = fp;
	return 0;
}

/* Whether the container volume name is an overlay (has state), 0 when it is plain. */
static int is_overlay(const struct lxm_pool *p, enum lxm_volume_type t, const char *name)
{
	_cleanup_free_ char *path = NULL;

	if (t != LXM_VOLUME_CONTAINER)
		return 0;
	path = state_path(p, name, NULL, "lower");
	if (!path)
		return -ENOMEM;
	return storage_exists(path);
}

/* mount(2) takes the layers as one comma- and colon-separated option string. */
static int check_option_path(const char *path, struct lxm_error **err)
{
	if (strpbrk(path, ",:\\"))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: overlay layers cannot contain ',', ':' or '\\'", path);
	return 0;
}

/* Mounts the instance's (snap NULL) or a snapshot's (read-only) overlay at target. */
static int mount_layers(const struct lxm_pool *p, const char *name, const char *snap,
			const char *target, struct lxm_error **err)
{
	_cleanup_free_ char *fp = NULL, *lower = NULL, *upper = NULL, *work = NULL, *opts = NULL;
	int r;

	if ((r = storage_is_mountpoint(target)) != 0)
		return r < 0 ? lxm_error_setx(err, r, 500, "check mounts of %s", target) : 0;
	if ((r = read_lower(p, name, snap, &fp)) < 0)
		return lxm_error_setx(err, r, 500, "read the image of %s", target);
	upper = state_path(p, name, snap, "upper");
	work = state_path(p, name, snap, "work");
	if (!upper || !work || lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &lower) < 0)
		return -ENOMEM;
	if ((r = check_option_path(lower, err)) < 0 || (r = check_option_path(upper, err)) < 0)
		return r;
	if (snap)
		r = asprintf(&opts, "lowerdir=%s:%s/rootfs", upper, lower);
	else
		r = asprintf(&opts, "lowerdir=%s/rootfs,upperdir=%s,workdir=%s", lower, upper,
			     work);
	if (r < 0)
		return -ENOMEM;
	if (mount("overlay", target, "overlay", snap ? MS_RDONLY : 0, opts) < 0)
		return lxm_error_setx(err, -errno, 500, "mount overlay (%s) on %s", opts, target);
	return 0;
}

static char *rootfs_of(const struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       const char *snap)
{
	_cleanup_free_ char *vol = NULL;
	char *s;

	if (lxm_pool_volume_path(p, t, name, snap, &vol) < 0 || asprintf(&s, "%s/rootfs", vol) < 0)
		return NULL;
	return s;
}

/* Copies every top-level entry of src but skip to dst (created). */
static int copy_around(const char *src, const char *dst, const char *skip, struct lxm_error **err)
{
	_cleanup_closedir_ DIR *d = opendir(src);
	struct dirent *de;
	int r;

	if (!d)
		return lxm_error_setx(err, -errno, errno == ENOENT ? 404 : 500, "open %s", src);
	if (mkdir(dst, STORAGE_DIR_MODE) < 0)
		return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "create %s", dst);
	while ((de = readdir(d))) {
		_cleanup_free_ char *from = NULL, *to = NULL;

		if (streq(de->d_name, ".") || streq(de->d_name, "..") || streq(de->d_name, skip))
			continue;
		if (asprintf(&from, "%s/%s", src, de->d_name) < 0 ||
		    asprintf(&to, "%s/%s", dst, de->d_name) < 0)
			return -ENOMEM;
		if ((r = storage_copy_tree(from, to, err)) < 0)
			return r;
	}
	return 0;
}

/* Copies every top-level entry of src but rootfs/ to dst (created) and makes an empty rootfs/
 * there: the volume around an overlay rootfs. */
static int copy_around_rootfs(const char *src, const char *dst, struct lxm_error **err)
{
	_cleanup_free_ char *rootfs = NULL;
	int r;

	if ((r = copy_around(src, dst, "rootfs", err)) < 0)
		return r;
	if (asprintf(&rootfs, "%s/rootfs", dst) < 0)
		return -ENOMEM;
	if (mkdir(rootfs, 0755) < 0)
		return lxm_error_setx(err, -errno, 500, "create %s", rootfs);
	return 0;
}

/* Fills a new state dir: upper/ (a copy of upper_src, or empty), work/ when asked, lower. */
static int fill_state(const char *dir, const char *fp, const char *upper_src, bool with_work,
		      struct lxm_error **err)
{
	_cleanup_free_ char *upper = NULL, *work = NULL, *lower = NULL;
	int r;

	if (asprintf(&upper, "%s/upper", dir) < 0 || asprintf(&work, "%s/work", dir) < 0 ||
	    asprintf(&lower, "%s/lower", dir) < 0)
		return -ENOMEM;
	if (upper_src) {
		if ((r = storage_copy_tree(upper_src, upper, err)) < 0)
			return r;
	} else if (mkdir(upper, 0755) < 0) {
		return lxm_error_setx(err, -errno, 500, "create %s", upper);
	}
	if (with_work && mkdir(work, 0700) < 0)
		return lxm_error_setx(err, -errno, 500, "create %s", work);
	if ((r = lxm_write_file_atomic(lower, fp, strlen(fp), 0600)) < 0)
		return lxm_error_setx(err, r, 500, "write %s", lower);
	return 0;
}

/* Makes a state dir (instance or snapshot) with lower = fp and upper copied from upper_src
 * (NULL: empty); a staged copy, renamed into place. */
static int make_state(const struct lxm_pool *p, const char *name, const char *snap, const char *fp,
		      const char *upper_src, struct lxm_error **err)
{
	_cleanup_free_ char *dir = state_path(p, name, snap, NULL), *tmp = NULL;
	int r;

	if (!dir)
		return -ENOMEM;
	if ((r = storage_require_absent(dir, err)) < 0)
		return r;
	{
		_cleanup_free_ char *parent = strdup(dir);

		if (!parent)
			return -ENOMEM;
		*strrchr(parent, '/') = '\0';
		if ((r = lxm_mkdir_p(parent, 0700)) < 0)
			return lxm_error_setx(err, r, 500, "create %s", parent);
	}
	if ((r = storage_staging_path(dir, &tmp)) < 0)
		return r;
	if (mkdir(tmp, 0700) < 0)
		return lxm_error_setx(err, -errno, 500, "create %s", tmp);
	r = fill_state(tmp, fp, upper_src, !snap, err);
	if (r >= 0)
		r = storage_rename_noreplace(tmp, dir, err);
	if (r < 0)
		lxm_rm_tree(tmp);
	return r;
}

/* Removes a state dir (instance with its snapshots, or one snapshot's). */
static int remove_state(const struct lxm_pool *p, const char *name, const char *snap,
			struct lxm_error **err)
{
	_cleanup_free_ char *dir = state_path(p, name, snap, NULL);

	if (!dir)
		return -ENOMEM;
	return storage_rm_tree(dir, err);
}

/* ---- pools ---- */

static int storage_overlay_pool_create(struct lxm_pool *p, struct lxm_error **err)
{
	_cleanup_free_ char *state = storage_pool_subpath(p, OVERLAY_STATE);
	int r;

	if (!state)
		return -ENOMEM;
	if ((r = storage_require_absent(p->path, err)) < 0)
		return r;
	if ((r = storage_make_layout(p, err)) < 0 ||
	    (mkdir(state, 0700) < 0 &&
	     (r = lxm_error_setx(err, -errno, 500, "create %s", state)))) {
		lxm_rm_tree(p->path);
		return r;
	}
	return 0;
}

static int storage_overlay_pool_mount(struct lxm_pool *p, struct lxm_error **err)
{
	_cleanup_free_ char *state = storage_pool_subpath(p, OVERLAY_STATE);
	int r = storage_exists(p->path);

	if (!state)
		return -ENOMEM;
	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "%s does not exist", p->path);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "stat %s", p->path);
	if ((r = storage_make_layout(p, err)) < 0)
		return r;
	if (mkdir(state, 0700) < 0 && errno != EEXIST)
		return lxm_error_setx(err, -errno, 500, "create %s", state);
	return 0;
}

/* Unmounts the rootfs of a volume and of each of its snapshots. */
static int unmount_all(const struct lxm_pool *p, const char *name, struct lxm_error **err)
{
	_cleanup_free_ char *rootfs = rootfs_of(p, LXM_VOLUME_CONTAINER, name, NULL), *snaps = NULL;
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r;

	if (!rootfs || lxm_pool_snapshots_dir(p, LXM_VOLUME_CONTAINER, name, &snaps) < 0)
		return -ENOMEM;
	if ((r = storage_umount(rootfs, err)) < 0)
		return r;
	if (!(d = opendir(snaps)))
		return 0;
	while ((de = readdir(d))) {
		_cleanup_free_ char *s = NULL;

		if (de->d_name[0] == '.')
			continue;
		if (!(s = rootfs_of(p, LXM_VOLUME_CONTAINER, name, de->d_name)))
			return -ENOMEM;
		if ((r = storage_umount(s, err)) < 0)
			return r;
	}
	return 0;
}

static int storage_overlay_pool_unmount(struct lxm_pool *p, struct lxm_error **err)
{
	_cleanup_free_ char *state = storage_pool_subpath(p, OVERLAY_STATE);
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r;

	if (!state)
		return -ENOMEM;
	if (!(d = opendir(state)))
		return errno == ENOENT ? 0 : lxm_error_setx(err, -errno, 500, "list %s", state);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && (r = unmount_all(p, de->d_name, err)) < 0)
			return r;
	return 0;
}

static int storage_overlay_pool_delete(struct lxm_pool *p, struct lxm_error **err)
{
	int r;

	if ((r = storage_check_no_volumes(p, err)) < 0 ||
	    (r = storage_overlay_pool_unmount(p, err)) < 0)
		return r;
	return storage_rm_tree(p->path, err);
}

static int storage_overlay_pool_usage(struct lxm_pool *p, struct lxm_storage_usage *ret,
				      struct lxm_error **err)
{
	return storage_statvfs_usage(p->path, ret, err);
}

/* ---- volumes ---- */

static int storage_overlay_image_create(struct lxm_pool *p, const char *fp, const char *src,
					struct lxm_error **err)
{
	_cleanup_free_ char *dst = NULL;

	if (lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &dst) < 0)
		return -ENOMEM;
	return storage_copy_staged(src, dst, err);
}

/* Makes the overlay instance name on lower fp: the state (upper copied from upper_src when
 * set), the volume dir from meta_src's files, and the mount. Leaves nothing on failure. */
static int create_overlay(struct lxm_pool *p, const char *name, const char *fp,
			  const char *meta_src, const char *upper_src, struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *tmp = NULL, *rootfs = NULL;
	int r;

	if (lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, name, NULL, &vol) < 0 ||
	    storage_staging_path(vol, &tmp) < 0 || asprintf(&rootfs, "%s/rootfs", vol) < 0)
		return -ENOMEM;
	if ((r = storage_require_absent(vol, err)) < 0)
		return r;
	if ((r = make_state(p, name, NULL, fp, upper_src, err)) < 0)
		return r;
	r = copy_around_rootfs(meta_src, tmp, err);
	if (r >= 0)
		r = storage_rename_noreplace(tmp, vol, err);
	if (r >= 0 && (r = mount_layers(p, name, NULL, rootfs, err)) < 0)
		lxm_rm_tree(vol);
	if (r < 0) {
		lxm_rm_tree(tmp);
		remove_state(p, name, NULL, NULL);
	}
	return r;
}

/* Makes the virtual machine volume name from the VM image volume img: its files but the disk
 * (boot/, metadata.yaml) copied, and root.qcow2, a qcow2 overlay whose backing file is the
 * image's raw disk, so that the instance stores only the blocks it writes. Staged: the volume
 * appears complete or not at all. */
static int create_vm_overlay(struct lxm_pool *p, const char *img, const char *name,
			     struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *tmp = NULL, *base = NULL, *qcow2 = NULL;
	int r;

	if (lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, name, NULL, &vol) < 0 ||
	    storage_staging_path(vol, &tmp) < 0 ||
	    asprintf(&base, "%s/" LXM_VM_DISK_RAW, img) < 0 ||
	    asprintf(&qcow2, "%s/" LXM_VM_DISK_QCOW2, tmp) < 0)
		return -ENOMEM;
	if ((r = storage_require_absent(vol, err)) < 0)
		return r;
	r = copy_around(img, tmp, LXM_VM_DISK_RAW, err);
	if (r >= 0) {
		const char *argv[] = { "qemu-img", "create", "-q", "-f",  "qcow2", "-F",
				       "raw",	   "-b",     base, qcow2, NULL };

		r = storage_run(argv, err);
	}
	if (r >= 0)
		r = storage_rename_noreplace(tmp, vol, err);
	if (r < 0)
		lxm_rm_tree(tmp);
	return r;
}

static int storage_overlay_volume_create_from_image(struct lxm_pool *p, const char *fp,
						    enum lxm_volume_type t, const char *name,
						    struct lxm_error **err)
{
	_cleanup_free_ char *img = NULL, *dst = NULL;
	int r;

	if (lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &img) < 0 ||
	    lxm_pool_volume_path(p, t, name, NULL, &dst) < 0)
		return -ENOMEM;
	/* Only instances share the image's layer; anything else gets a copy. */
	if (t != LXM_VOLUME_CONTAINER)
		return storage_copy_staged(img, dst, err);
	if (storage_exists(img) <= 0)
		return lxm_error_setx(err, -ENOENT, 404, "image volume %s", img);
	if ((r = storage_vm_disk(img, NULL)) < 0)
		return lxm_error_setx(err, r, 500, "find the disk of %s", img);
	if (r > 0)
		return create_vm_overlay(p, img, name, err);
	return create_overlay(p, name, fp, img, NULL, err);
}

static int storage_overlay_volume_copy(struct lxm_pool *p, enum lxm_volume_type t, const char *dst,
				       struct lxm_pool *src_pool, const char *src,
				       const char *src_snap, struct lxm_error **err)
{
	_cleanup_free_ char *from = NULL, *to = NULL, *fp = NULL, *upper = NULL;
	int r;

	if (lxm_pool_volume_path(src_pool, t, src, src_snap, &from) < 0 ||
	    lxm_pool_volume_path(p, t, dst, NULL, &to) < 0)
		return -ENOMEM;
	/* An overlay of this pool: a new upper copied from the source's, on the same lower. */
	if (src_pool == p && (r = is_overlay(p, t, src)) > 0) {
		if ((r = read_lower(p, src, src_snap, &fp)) < 0)
			return lxm_error_setx(err, r, r == -ENOENT ? 404 : 500, "copy %s", from);
		if (!(upper = state_path(p, src, src_snap, "upper")))
			return -ENOMEM;
		return create_overlay(p, dst, fp, from, upper, err);
	}
	/* Anything else becomes a plain directory with the full tree (the front-end mounted a
	 * source in another pool). */
	return storage_copy_staged(from, to, err);
}

/* Whether the qcow2 overlay of the VM volume or snapshot at vol has base as its backing file. */
static bool disk_backed_by(const char *vol, const char *base)
{
	_cleanup_free_ char *disk = NULL, *backing = NULL;

	if (storage_vm_disk(vol, &disk) != 2 || storage_qcow2_info(disk, &backing, NULL) < 0)
		return false;
	return backing && streq(backing, base);
}

/* Whether a VM volume in dir has base as its qcow2 backing file; *ret_user names it
 * (prefix/name when prefix is not NULL). */
static int dir_disk_backed_by(const char *dir, const char *prefix, const char *base,
			      char **ret_user)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		_cleanup_free_ char *vol = NULL;

		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&vol, "%s/%s", dir, de->d_name) < 0)
			return -ENOMEM;
		if (!disk_backed_by(vol, base))
			continue;
		if (prefix)
			return asprintf(ret_user, "%s/%s", prefix, de->d_name) < 0 ? -ENOMEM : 1;
		return (*ret_user = strdup(de->d_name)) ? 1 : -ENOMEM;
	}
	return 0;
}

/* Whether a VM volume or snapshot of the pool has the disk of image fp as its qcow2 backing
 * file; *ret_user names it. */
static int image_backs_disk(const struct lxm_pool *p, const char *fp, char **ret_user)
{
	_cleanup_free_ char *img = NULL, *base = NULL, *vols = NULL, *snaps = NULL;
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r;

	if (lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &img) < 0 ||
	    asprintf(&base, "%s/" LXM_VM_DISK_RAW, img) < 0 ||
	    !(vols = storage_pool_subpath(p, "containers")) ||
	    !(snaps = storage_pool_subpath(p, "containers-snapshots")))
		return -ENOMEM;
	if (storage_exists(base) <= 0)
		return 0;
	if ((r = dir_disk_backed_by(vols, NULL, base, ret_user)) != 0)
		return r;
	if (!(d = opendir(snaps)))
		return 0;
	while ((de = readdir(d))) {
		_cleanup_free_ char *dir = NULL;

		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&dir, "%s/%s", snaps, de->d_name) < 0)
			return -ENOMEM;
		if ((r = dir_disk_backed_by(dir, de->d_name, base, ret_user)) != 0)
			return r;
	}
	return 0;
}

/* Whether an overlay instance or snapshot has image fp as its lower layer (or, for a VM image,
 * as the backing file of its disk). */
static int image_in_use(const struct lxm_pool *p, const char *fp, char **ret_user)
{
	_cleanup_free_ char *state = storage_pool_subpath(p, OVERLAY_STATE);
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r;

	if (!state)
		return -ENOMEM;
	if ((r = image_backs_disk(p, fp, ret_user)) != 0)
		return r;
	if (!(d = opendir(state)))
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		_cleanup_free_ char *lower = NULL, *snaps = NULL;
		_cleanup_closedir_ DIR *sd = NULL;
		struct dirent *se;

		if (de->d_name[0] == '.')
			continue;
		if (read_lower(p, de->d_name, NULL, &lower) == 0 && streq(lower, fp))
			return (*ret_user = strdup(de->d_name)) ? 1 : -ENOMEM;
		if (asprintf(&snaps, "%s/%s/snapshots", state, de->d_name) < 0)
			return -ENOMEM;
		if (!(sd = opendir(snaps)))
			continue;
		while ((se = readdir(sd))) {
			_cleanup_free_ char *sl = NULL;

			if (se->d_name[0] != '.' &&
			    read_lower(p, de->d_name, se->d_name, &sl) == 0 && streq(sl, fp))
				return asprintf(ret_user, "%s/%s", de->d_name, se->d_name) < 0
					       ? -ENOMEM
					       : 1;
		}
	}
	return 0;
}

static int storage_overlay_volume_delete(struct lxm_pool *p, enum lxm_volume_type t,
					 const char *name, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *snaps = NULL, *user = NULL;
	int r;

	if (lxm_pool_volume_path(p, t, name, NULL, &path) < 0 ||
	    lxm_pool_snapshots_dir(p, t, name, &snaps) < 0)
		return -ENOMEM;
	if (t == LXM_VOLUME_IMAGE) {
		if ((r = image_in_use(p, name, &user)) < 0)
			return lxm_error_setx(err, r, 500, "check users of image %s", name);
		if (r > 0)
			return lxm_error_set(err, -EBUSY, 409,
					     "image volume %s is the lower layer (or the disk's "
					     "base) of instance %s",
					     name, user);
	}
	if (t == LXM_VOLUME_CONTAINER && (r = unmount_all(p, name, err)) < 0)
		return r;
	if ((r = storage_rm_tree(snaps, err)) < 0 || (r = storage_rm_tree(path, err)) < 0)
		return r;
	if (t == LXM_VOLUME_CONTAINER)
		return remove_state(p, name, NULL, err);
	return 0;
}

static int storage_overlay_volume_rename(struct lxm_pool *p, enum lxm_volume_type t,
					 const char *name, const char *new_name,
					 struct lxm_error **err)
{
	_cleanup_free_ char *from = NULL, *to = NULL;
	int r, overlay = is_overlay(p, t, name);

	if (overlay < 0)
		return overlay;
	if (overlay) {
		from = state_path(p, name, NULL, NULL);
		to = state_path(p, new_name, NULL, NULL);
		if (!from || !to)
			return -ENOMEM;
		if ((r = storage_exists(to)) != 0)
			return r < 0 ? r : lxm_error_setx(err, -EEXIST, 409, "rename to %s", to);
		/* The layers' paths are in the mount options: mount again under the new name. */
		if ((r = unmount_all(p, name, err)) < 0)
			return r;
	}
	if ((r = storage_rename_volume(p, t, name, new_name, err)) < 0)
		return r;
	if (overlay && (r = storage_rename_noreplace(from, to, err)) < 0) {
		storage_rename_volume(p, t, new_name, name, NULL);
		return r;
	}
	return 0;
}

static int storage_overlay_volume_mount(struct lxm_pool *p, enum lxm_volume_type t,
					const char *name, struct lxm_error **err)
{
	_cleanup_free_ char *rootfs = NULL;
	int r = is_overlay(p, t, name);

	if (r <= 0)
		return r;
	if (!(rootfs = rootfs_of(p, t, name, NULL)))
		return -ENOMEM;
	return mount_layers(p, name, NULL, rootfs, err);
}

static int storage_overlay_volume_unmount(struct lxm_pool *p, enum lxm_volume_type t,
					  const char *name, struct lxm_error **err)
{
	_cleanup_free_ char *rootfs = NULL;

	if (t != LXM_VOLUME_CONTAINER)
		return 0;
	if (!(rootfs = rootfs_of(p, t, name, NULL)))
		return -ENOMEM;
	return storage_umount(rootfs, err);
}

/* Usage of the upper layer (plus the files around rootfs), or of a plain volume's tree. */
static int usage_of(const struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		    const char *snap, struct lxm_storage_usage *ret, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *upper = NULL;
	uint64_t a = 0, b = 0;
	int k, overlay = is_overlay(p, t, name);

	if (overlay < 0)
		return overlay;
	if (lxm_pool_volume_path(p, t, name, snap, &path) < 0)
		return -ENOMEM;
	/* The walk stays on the volume's file system: a mounted rootfs is not counted twice. */
	if ((k = storage_tree_usage(path, &a)) < 0)
		return lxm_error_setx(err, k, k == -ENOENT ? 404 : 500, "measure %s", path);
	if (overlay > 0) {
		if (!(upper = state_path(p, name, snap, "upper")))
			return -ENOMEM;
		if ((k = storage_tree_usage(upper, &b)) < 0)
			return lxm_error_setx(err, k, 500, "measure %s", upper);
	}
	ret->used = a + b;
	ret->total = 0;
	return 0;
}

static int storage_overlay_volume_usage(struct lxm_pool *p, enum lxm_volume_type t,
					const char *name, struct lxm_storage_usage *ret,
					struct lxm_error **err)
{
	return usage_of(p, t, name, NULL, ret, err);
}

/* ---- snapshots ---- */

static int storage_overlay_snapshot_create(struct lxm_pool *p, enum lxm_volume_type t,
					   const char *name, const char *snap,
					   struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *snaps = NULL, *dst = NULL, *tmp = NULL, *fp = NULL;
	_cleanup_free_ char *upper = NULL;
	int r, overlay = is_overlay(p, t, name);

	if (overlay < 0)
		return overlay;
	if (lxm_pool_volume_path(p, t, name, NULL, &vol) < 0 ||
	    lxm_pool_snapshots_dir(p, t, name, &snaps) < 0 ||
	    lxm_pool_volume_path(p, t, name, snap, &dst) < 0 || storage_staging_path(dst, &tmp) < 0)
		return -ENOMEM;
	if ((r = storage_require(vol, "snapshot", err)) < 0 ||
	    (r = storage_require_absent(dst, err)) < 0)
		return r;
	if (mkdir(snaps, STORAGE_DIR_MODE) < 0 && errno != EEXIST)
		return lxm_error_setx(err, -errno, 500, "create %s", snaps);
	if (!overlay) {
		if ((r = storage_copy_staged(vol, dst, err)) < 0)
			storage_rmdir_if_empty(snaps);
		return r;
	}
	if ((r = read_lower(p, name, NULL, &fp)) < 0)
		return lxm_error_setx(err, r, 500, "read the image of %s", vol);
	if (!(upper = state_path(p, name, NULL, "upper")))
		return -ENOMEM;
	if ((r = make_state(p, name, snap, fp, upper, err)) < 0)
		return r;
	r = copy_around_rootfs(vol, tmp, err);
	if (r >= 0)
		r = storage_rename_noreplace(tmp, dst, err);
	if (r < 0) {
		lxm_rm_tree(tmp);
		remove_state(p, name, snap, NULL);
		storage_rmdir_if_empty(snaps);
	}
	return r;
}

static int storage_overlay_snapshot_delete(struct lxm_pool *p, enum lxm_volume_type t,
					   const char *name, const char *snap,
					   struct lxm_error **err)
{
	_cleanup_free_ char *snaps = NULL, *path = NULL, *rootfs = rootfs_of(p, t, name, snap);
	int r;

	if (!rootfs || lxm_pool_snapshots_dir(p, t, name, &snaps) < 0 ||
	    lxm_pool_volume_path(p, t, name, snap, &path) < 0)
		return -ENOMEM;
	if ((r = storage_umount(rootfs, err)) < 0 || (r = storage_rm_tree(path, err)) < 0)
		return r;
	storage_rmdir_if_empty(snaps);
	if (t == LXM_VOLUME_CONTAINER)
		return remove_state(p, name, snap, err);
	return 0;
}

static int storage_overlay_snapshot_rename(struct lxm_pool *p, enum lxm_volume_type t,
					   const char *name, const char *snap, const char *new_snap,
					   struct lxm_error **err)
{
	_cleanup_free_ char *from = NULL, *to = NULL, *sfrom = NULL, *sto = NULL;
	_cleanup_free_ char *rootfs = rootfs_of(p, t, name, snap);
	int r;

	if (!rootfs || lxm_pool_volume_path(p, t, name, snap, &from) < 0 ||
	    lxm_pool_volume_path(p, t, name, new_snap, &to) < 0)
		return -ENOMEM;
	if ((r = storage_umount(rootfs, err)) < 0 ||
	    (r = storage_rename_noreplace(from, to, err)) < 0)
		return r;
	if (t != LXM_VOLUME_CONTAINER)
		return 0;
	sfrom = state_path(p, name, snap, NULL);
	sto = state_path(p, name, new_snap, NULL);
	if (!sfrom || !sto)
		return -ENOMEM;
	if (storage_exists(sfrom) > 0 && (r = storage_rename_noreplace(sfrom, sto, err)) < 0) {
		(void)rename(to, from);
		return r;
	}
	return 0;
}

static int storage_overlay_snapshot_restore(struct lxm_pool *p, enum lxm_volume_type t,
					    const char *name, const char *snap,
					    struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *path = NULL, *rootfs = NULL, *upper = NULL;
	_cleanup_free_ char *snap_upper = NULL, *tmp = NULL, *work = NULL;
	int r, overlay = is_overlay(p, t, name);

	if (overlay < 0)
		return overlay;
	if (lxm_pool_volume_path(p, t, name, NULL, &vol) < 0 ||
	    lxm_pool_volume_path(p, t, name, snap, &path) < 0)
		return -ENOMEM;
	if (!overlay)
		return storage_replace_staged(path, vol, err);
	if ((r = storage_require(path, "restore", err)) < 0)
		return r;
	rootfs = rootfs_of(p, t, name, NULL);
	upper = state_path(p, name, NULL, "upper");
	work = state_path(p, name, NULL, "work");
	snap_upper = state_path(p, name, snap, "upper");
	if (!rootfs || !upper || !work || !snap_upper || storage_staging_path(upper, &tmp) < 0)
		return -ENOMEM;
	if ((r = storage_umount(rootfs, err)) < 0)
		return r;
	/* The new upper is complete before it replaces the old one. */
	r = storage_copy_tree(snap_upper, tmp, err);
	if (r >= 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, upper, RENAME_EXCHANGE) < 0)
		r = lxm_error_setx(err, -errno, 500, "swap %s with %s", tmp, upper);
	lxm_rm_tree(tmp);
	if (r < 0)
		return r;
	/* The work dir may hold leftovers of the old upper. */
	if ((r = storage_rm_tree(work, err)) < 0)
		return r;
	if (mkdir(work, 0700) < 0)
		return lxm_error_setx(err, -errno, 500, "create %s", work);
	return 0;
}

static int storage_overlay_snapshot_mount(struct lxm_pool *p, enum lxm_volume_type t,
					  const char *name, const char *snap,
					  struct lxm_error **err)
{
	_cleanup_free_ char *rootfs = NULL;
	int r = is_overlay(p, t, name);

	if (r <= 0)
		return r;
	if (!(rootfs = rootfs_of(p, t, name, snap)))
		return -ENOMEM;
	return mount_layers(p, name, snap, rootfs, err);
}

static int storage_overlay_snapshot_unmount(struct lxm_pool *p, enum lxm_volume_type t,
					    const char *name, const char *snap,
					    struct lxm_error **err)
{
	_cleanup_free_ char *rootfs = rootfs_of(p, t, name, snap);

	if (!rootfs)
		return -ENOMEM;
	return storage_umount(rootfs, err);
}

static int storage_overlay_snapshot_usage(struct lxm_pool *p, enum lxm_volume_type t,
					  const char *name, const char *snap,
					  struct lxm_storage_usage *ret, struct lxm_error **err)
{
	return usage_of(p, t, name, snap, ret, err);
}

const struct lxm_storage_ops storage_overlay_ops = {
	/* "lxm storage create P overlay". */
	.name = "overlay",
	/* No config keys: NULL makes the front-end refuse every key. */
	.pool_validate = NULL,
	/* mkdir of the pool dir, its layout and .overlay/. */
	.pool_create = storage_overlay_pool_create,
	/* Checks the dir; instance overlays are mounted by volume_mount. */
	.pool_mount = storage_overlay_pool_mount,
	/* Unmounts every instance and snapshot overlay. */
	.pool_unmount = storage_overlay_pool_unmount,
	/* Removes the pool dir (image volumes included). */
	.pool_delete = storage_overlay_pool_delete,
	/* statvfs of the pool dir. */
	.pool_usage = storage_overlay_pool_usage,
	/* A staged copy of the unpacked tree: the lower layer of its instances. */
	.image_create = storage_overlay_image_create,
	/* An empty upper over the image's rootfs, mounted. */
	.volume_create_from_image = storage_overlay_volume_create_from_image,
	/* A plain directory (plus rootfs/ for an instance). */
	.volume_create = storage_volume_mkdir,
	/* A copied upper on the same lower within the pool; a plain copy otherwise. */
	.volume_copy = storage_overlay_volume_copy,
	/* Unmounts and removes the volume, its snapshots and its state; an image that is a
	 * lower layer is -EBUSY. */
	.volume_delete = storage_overlay_volume_delete,
	/* Unmounts, renames the volume, its snapshots and its state. */
	.volume_rename = storage_overlay_volume_rename,
	/* Mounts the instance's overlay at rootfs/. */
	.volume_mount = storage_overlay_volume_mount,
	/* Unmounts it. */
	.volume_unmount = storage_overlay_volume_unmount,
	/* The upper layer's walk (a plain volume's tree). */
	.volume_usage = storage_overlay_volume_usage,
	/* Overlay has no quotas. */
	.volume_set_quota = NULL,
	/* A copy of the upper layer and of the files around rootfs/. */
	.snapshot_create = storage_overlay_snapshot_create,
	/* Unmounts and removes it; a missing one is fine. */
	.snapshot_delete = storage_overlay_snapshot_delete,
	/* Unmounts and renames it and its state. */
	.snapshot_rename = storage_overlay_snapshot_rename,
	/* Swaps in a copy of the snapshot's upper (RENAME_EXCHANGE); the instance is unmounted. */
	.snapshot_restore = storage_overlay_snapshot_restore,
	/* A read-only overlay of the snapshot's upper over the image at its rootfs/. */
	.snapshot_mount = storage_overlay_snapshot_mount,
	/* Unmounts it. */
	.snapshot_unmount = storage_overlay_snapshot_unmount,
	/* The snapshot's upper copy. */
	.snapshot_usage = storage_overlay_snapshot_usage,
};
