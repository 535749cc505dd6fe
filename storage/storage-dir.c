/* The dir driver: every volume is a plain directory tree below the pool's directory. Copies use
 * reflinks where the file system has them (cp --reflink=auto), so on xfs or btrfs an instance
 * from an image costs no data; elsewhere it is a full copy. No quotas. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#include "storage-internal.h"

static int storage_dir_pool_create(struct lxm_pool *p, struct lxm_error **err)
{
	int r;

	/* The pool's directory is lxm's own: an existing one belongs to something else. */
	if (mkdir(p->path, STORAGE_DIR_MODE) < 0) {
		if (errno != ENOENT)
			return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "create %s",
					      p->path);
		/* A missing parent (ROOT/storage-pools on the first pool) is made with it. */
		if ((r = lxm_mkdir_p(p->path, STORAGE_DIR_MODE)) < 0)
			return lxm_error_setx(err, r, 500, "create %s", p->path);
	}
	if ((r = storage_make_layout(p, err)) < 0) {
		lxm_rm_tree(p->path);
		return r;
	}
	return 0;
}

static int storage_dir_pool_mount(struct lxm_pool *p, struct lxm_error **err)
{
	int r = storage_exists(p->path);

	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "%s does not exist", p->path);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "stat %s", p->path);
	/* Recreates a layout dir someone removed while lxmd was down. */
	return storage_make_layout(p, err);
}

static int storage_dir_pool_delete(struct lxm_pool *p, struct lxm_error **err)
{
	int r;

	if ((r = storage_check_no_volumes(p, err)) < 0)
		return r;
	return storage_rm_tree(p->path, err);
}

static int storage_dir_pool_usage(struct lxm_pool *p, struct lxm_storage_usage *ret,
				  struct lxm_error **err)
{
	return storage_statvfs_usage(p->path, ret, err);
}

static int storage_dir_image_create(struct lxm_pool *p, const char *fp, const char *src,
				    struct lxm_error **err)
{
	_cleanup_free_ char *dst = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &dst)) < 0)
		return r;
	return storage_copy_staged(src, dst, err);
}

static int storage_dir_volume_create_from_image(struct lxm_pool *p, const char *fp,
						enum lxm_volume_type t, const char *name,
						struct lxm_error **err)
{
	_cleanup_free_ char *src = NULL, *dst = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &src)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, name, NULL, &dst)) < 0)
		return r;
	return storage_copy_staged(src, dst, err);
}

static int storage_dir_volume_copy(struct lxm_pool *p, enum lxm_volume_type t, const char *dst,
				   struct lxm_pool *src_pool, const char *src, const char *src_snap,
				   struct lxm_error **err)
{
	_cleanup_free_ char *from = NULL, *to = NULL;
	int r;

	if ((r = lxm_pool_volume_path(src_pool, t, src, src_snap, &from)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, dst, NULL, &to)) < 0)
		return r;
	return storage_copy_staged(from, to, err);
}

static int storage_dir_volume_delete(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				     struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *snaps = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, t, name, NULL, &path)) < 0 ||
	    (r = lxm_pool_snapshots_dir(p, t, name, &snaps)) < 0)
		return r;
	if ((r = storage_rm_tree(snaps, err)) < 0)
		return r;
	return storage_rm_tree(path, err);
}

static int storage_dir_volume_usage(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				    struct lxm_storage_usage *ret, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;

	if (lxm_pool_volume_path(p, t, name, NULL, &path) < 0)
		return -ENOMEM;
	return storage_measure_tree(path, ret, err);
}

static int storage_dir_snapshot_create(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				       const char *snap, struct lxm_error **err)
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
	r = storage_copy_staged(vol, dst, err);
	if (r < 0)
		storage_rmdir_if_empty(snaps);
	return r;
}

static int storage_dir_snapshot_delete(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				       const char *snap, struct lxm_error **err)
{
	_cleanup_free_ char *snaps = NULL, *path = NULL;
	int r;

	if ((r = lxm_pool_snapshots_dir(p, t, name, &snaps)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, name, snap, &path)) < 0)
		return r;
	if ((r = storage_rm_tree(path, err)) < 0)
		return r;
	storage_rmdir_if_empty(snaps);
	return 0;
}

static int storage_dir_snapshot_restore(struct lxm_pool *p, enum lxm_volume_type t,
					const char *name, const char *snap, struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *path = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, t, name, NULL, &vol)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, name, snap, &path)) < 0)
		return r;
	return storage_replace_staged(path, vol, err);
}

static int storage_dir_snapshot_usage(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				      const char *snap, struct lxm_storage_usage *ret,
				      struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;

	if (lxm_pool_volume_path(p, t, name, snap, &path) < 0)
		return -ENOMEM;
	return storage_measure_tree(path, ret, err);
}

const struct lxm_storage_ops storage_dir_ops = {
	/* "lxm storage create P dir". */
	.name = "dir",
	/* No config keys: NULL makes the front-end refuse every key. */
	.pool_validate = NULL,
	/* mkdir of the pool dir and its layout. */
	.pool_create = storage_dir_pool_create,
	/* Nothing to mount: checks the dir and recreates missing layout dirs. */
	.pool_mount = storage_dir_pool_mount,
	/* Nothing mounted. */
	.pool_unmount = NULL,
	/* Removes the pool dir (image volumes included). */
	.pool_delete = storage_dir_pool_delete,
	/* statvfs of the pool dir. */
	.pool_usage = storage_dir_pool_usage,
	/* A staged reflink copy of the unpacked tree. */
	.image_create = storage_dir_image_create,
	/* A staged reflink copy of the image volume. */
	.volume_create_from_image = storage_dir_volume_create_from_image,
	/* mkdir (plus rootfs/ for an instance). */
	.volume_create = storage_volume_mkdir,
	/* A staged copy of the source volume or snapshot, from any pool. */
	.volume_copy = storage_dir_volume_copy,
	/* rm -r of the snapshots and the volume. */
	.volume_delete = storage_dir_volume_delete,
	/* rename(2) of the volume and its snapshots dir. */
	.volume_rename = storage_rename_volume,
	/* Plain directories are always visible. */
	.volume_mount = NULL,
	.volume_unmount = NULL,
	/* A du-style walk. */
	.volume_usage = storage_dir_volume_usage,
	/* No quotas on a plain directory. */
	.volume_set_quota = NULL,
	/* A staged copy into containers-snapshots/<name>/<snap>. */
	.snapshot_create = storage_dir_snapshot_create,
	/* rm -r; a missing snapshot is fine. */
	.snapshot_delete = storage_dir_snapshot_delete,
	/* rename(2). */
	.snapshot_rename = storage_snapshot_rename,
	/* Copy to a staging dir, then RENAME_EXCHANGE with the volume. */
	.snapshot_restore = storage_dir_snapshot_restore,
	/* Snapshots are plain directories, always readable. */
	.snapshot_mount = NULL,
	.snapshot_unmount = NULL,
	/* A du-style walk of the snapshot. */
	.snapshot_usage = storage_dir_snapshot_usage,
};
