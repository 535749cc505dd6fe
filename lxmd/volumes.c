/* Instance root volumes and their snapshots on storage pools: see volumes.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "pools.h"
#include "storage/storage.h"
#include "util.h"
#include "volumes.h"

/* Image volumes are made once per pool: two creates from a new image must not both make it. */
static pthread_mutex_t image_volume_lock = PTHREAD_MUTEX_INITIALIZER;

const json_t *lxmd_root_disk(const json_t *xdevices, const char **ret_name)
{
	const char *dev_name;
	json_t *dev;

	json_object_foreach ((json_t *)xdevices, dev_name, dev)
		if (streq(json_string_value(json_object_get(dev, "type")), "disk") &&
		    streq(json_string_value(json_object_get(dev, "path")), "/")) {
			if (ret_name)
				*ret_name = dev_name;
			return dev;
		}
	return NULL;
}

int lxmd_root_pool(struct lxmd *d, const json_t *xdevices, const char *instance,
		   struct lxm_pool **ret, struct lxm_error **err)
{
	const char *dev_name = NULL, *pool;
	const json_t *dev = lxmd_root_disk(xdevices, &dev_name);

	if (!dev)
		return lxm_error_set(err, -EINVAL, 400,
				     "no root disk device: add one to its profile ('lxm profile "
				     "device add default root disk path=/ pool=POOL') or run 'lxm "
				     "init --auto'");
	pool = json_string_value(json_object_get(dev, "pool"));
	if (!pool || !*pool)
		return lxm_error_set(err, -EINVAL, 400,
				     "root disk device '%s' names no storage pool (set its pool=)",
				     dev_name);
	return lxmd_pool_get(d, pool, ret, err);
}

int lxmd_instance_volume_pool(struct lxmd *d, const char *instance, struct lxm_pool **ret,
			      struct lxm_error **err)
{
	_cleanup_free_ char *pool = NULL;
	int k;

	k = lxm_db_storage_volume_pool(d->db, "container", instance, &pool, NULL);
	if (k == -ENOENT) {
		*ret = NULL;
		return 0;
	}
	if (k < 0)
		return lxm_error_setx(err, k, 500, "instance '%s': find its storage volume",
				      instance);
	return lxmd_pool_get(d, pool, ret, err);
}

int lxmd_instance_pool(struct lxmd *d, const char *instance, struct lxm_pool **ret,
		       struct lxm_error **err)
{
	int k = lxmd_instance_volume_pool(d, instance, ret, err);

	if (k >= 0 && !*ret)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "instance '%s' was created before storage pools: its files "
				     "are in a plain directory, which this needs a pool for",
				     instance);
	return k;
}

/* ROOT/containers/<instance> (snapshots: ROOT/containers-snapshots/<instance>) -> target. The
 * new link replaces an old one by rename, so it is never missing in between. */
static int link_one(struct lxmd *d, const char *top, const char *instance, const char *target,
		    struct lxm_error **err)
{
	_cleanup_free_ char *dir = NULL, *link = NULL, *tmp = NULL;
	struct stat st;
	int k;

	if (asprintf(&dir, "%s/%s", d->cfg.root, top) < 0 ||
	    asprintf(&link, "%s/%s", dir, instance) < 0 ||
	    asprintf(&tmp, "%s/.link-%s", dir, instance) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	k = lxm_mkdir_p(dir, 0711);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "create %s", dir);
	/* A real directory there is an instance from before storage pools: never replaced. */
	if (lstat(link, &st) == 0 && !S_ISLNK(st.st_mode))
		return lxm_error_set(err, -EEXIST, 409,
				     "%s exists and is not a link into a storage pool (move it "
				     "away)",
				     link);
	unlink(tmp);
	if (symlink(target, tmp) < 0)
		return lxm_error_setx(err, -errno, 500, "link %s", tmp);
	if (rename(tmp, link) < 0) {
		k = -errno;
		unlink(tmp);
		return lxm_error_setx(err, k, 500, "link %s to %s", link, target);
	}
	return 0;
}

static int unlink_one(struct lxmd *d, const char *top, const char *instance, struct lxm_error **err)
{
	_cleanup_free_ char *link = NULL;
	struct stat st;

	if (asprintf(&link, "%s/%s/%s", d->cfg.root, top, instance) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (lstat(link, &st) < 0)
		return errno == ENOENT ? 0 : lxm_error_setx(err, -errno, 500, "read %s", link);
	if (!S_ISLNK(st.st_mode))
		return lxm_error_set(err, -EEXIST, 409,
				     "%s is not a link into a storage pool (move it away)", link);
	if (unlink(link) < 0 && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "remove %s", link);
	return 0;
}

static int link_volume(struct lxmd *d, struct lxm_pool *p, const char *instance,
		       struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *snaps = NULL;

	if (lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, instance, NULL, &vol) < 0 ||
	    lxm_pool_snapshots_dir(p, LXM_VOLUME_CONTAINER, instance, &snaps) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	/* Traversable by the container's root (a host id of the subordinate range), whatever
	 * mode the image's tree had. */
	if (chmod(vol, 0711) < 0)
		return lxm_error_setx(err, -errno, 500, "chmod %s", vol);
	if (link_one(d, "containers", instance, vol, err) < 0 ||
	    link_one(d, "containers-snapshots", instance, snaps, err) < 0)
		return -(*err)->errnum;
	return 0;
}

static int unlink_volume(struct lxmd *d, const char *instance, struct lxm_error **err)
{
	if (unlink_one(d, "containers", instance, err) < 0 ||
	    unlink_one(d, "containers-snapshots", instance, err) < 0)
		return -(*err)->errnum;
	return 0;
}

/* The pool's image volume fp, made from the unpacked tree the first time. */
static int ensure_image_volume(struct lxm_pool *p, const char *fp, const char *unpacked,
			       struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;
	int k = 0;

	if (lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, fp, NULL, &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	pthread_mutex_lock(&image_volume_lock);
	if (access(path, F_OK) < 0)
		k = lxm_pool_image_create(p, fp, unpacked, err);
	pthread_mutex_unlock(&image_volume_lock);
	return k;
}

/* Undoes a volume create whose links failed. */
static void drop_volume(struct lxm_pool *p, const char *instance)
{
	struct lxm_error *e = NULL;

	lxm_volume_delete(p, LXM_VOLUME_CONTAINER, instance, &e);
	lxm_error_free(e);
}

int lxmd_volume_create(struct lxmd *d, struct lxm_pool *p, const char *instance, const char *fp,
		       const char *unpacked, struct lxm_error **err)
{
	_cleanup_free_ char *vol = NULL, *rootfs = NULL;
	int k;

	if (fp) {
		k = ensure_image_volume(p, fp, unpacked, err);
		if (k >= 0)
			k = lxm_volume_create_from_image(p, fp, LXM_VOLUME_CONTAINER, instance,
							 err);
	} else {
		k = lxm_volume_create(p, LXM_VOLUME_CONTAINER, instance, err);
		if (k >= 0 &&
		    (lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, instance, NULL, &vol) < 0 ||
		     asprintf(&rootfs, "%s/rootfs", vol) < 0)) {
			drop_volume(p, instance);
			k = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		} else if (k >= 0 && mkdir(rootfs, 0755) < 0 && errno != EEXIST) {
			k = lxm_error_setx(err, -errno, 500, "create %s", rootfs);
			drop_volume(p, instance);
		}
	}
	if (k < 0)
		return lxm_error_prefix(err, "instance '%s': create its volume", instance);
	k = link_volume(d, p, instance, err);
	if (k < 0) {
		drop_volume(p, instance);
		return lxm_error_prefix(err, "instance '%s'", instance);
	}
	return 0;
}

int lxmd_volume_copy(struct lxmd *d, struct lxm_pool *p, const char *instance,
		     struct lxm_pool *src_pool, const char *src, const char *src_snap,
		     struct lxm_error **err)
{
	int k;

	if (src_snap)
		k = lxm_snapshot_mount(src_pool, LXM_VOLUME_CONTAINER, src, src_snap, err);
	else
		k = lxm_volume_mount(src_pool, LXM_VOLUME_CONTAINER, src, err);
	if (k >= 0)
		k = lxm_volume_copy(p, LXM_VOLUME_CONTAINER, instance, src_pool, src, src_snap,
				    err);
	if (k < 0)
		return lxm_error_prefix(err, "instance '%s': copy the volume of '%s%s%s'", instance,
					src, src_snap ? "/" : "", src_snap ? src_snap : "");
	k = link_volume(d, p, instance, err);
	if (k < 0) {
		drop_volume(p, instance);
		return lxm_error_prefix(err, "instance '%s'", instance);
	}
	return 0;
}

int lxmd_volume_delete(struct lxmd *d, struct lxm_pool *p, const char *instance,
		       struct lxm_error **err)
{
	int k;

	k = lxm_volume_unmount(p, LXM_VOLUME_CONTAINER, instance, err);
	if (k >= 0)
		k = lxm_volume_delete(p, LXM_VOLUME_CONTAINER, instance, err);
	if (k >= 0)
		k = unlink_volume(d, instance, err);
	return k < 0 ? lxm_error_prefix(err, "instance '%s': delete its volume", instance) : 0;
}

int lxmd_volume_rename(struct lxmd *d, struct lxm_pool *p, const char *instance,
		       const char *new_name, struct lxm_error **err)
{
	struct lxm_error *e = NULL;
	int k;

	k = lxm_volume_unmount(p, LXM_VOLUME_CONTAINER, instance, err);
	if (k >= 0)
		k = lxm_volume_rename(p, LXM_VOLUME_CONTAINER, instance, new_name, err);
	if (k < 0)
		return lxm_error_prefix(err, "rename instance '%s': rename its volume", instance);
	k = lxm_volume_mount(p, LXM_VOLUME_CONTAINER, new_name, err);
	if (k >= 0)
		k = link_volume(d, p, new_name, err);
	if (k < 0) {
		/* Back to where it was, so that the old name keeps working. */
		if (lxm_volume_rename(p, LXM_VOLUME_CONTAINER, new_name, instance, &e) >= 0)
			lxm_volume_mount(p, LXM_VOLUME_CONTAINER, instance, &e);
		lxm_error_free(e);
		return lxm_error_prefix(err, "rename instance '%s'", instance);
	}
	k = unlink_volume(d, instance, err);
	return k < 0 ? lxm_error_prefix(err, "rename instance '%s'", instance) : 0;
}

int lxmd_volume_mount(struct lxmd *d, struct lxm_pool *p, const char *instance,
		      struct lxm_error **err)
{
	int k = lxm_volume_mount(p, LXM_VOLUME_CONTAINER, instance, err);

	if (k >= 0)
		k = link_volume(d, p, instance, err);
	return k < 0 ? lxm_error_prefix(err, "instance '%s': mount its volume", instance) : 0;
}

int lxmd_volume_usage(struct lxm_pool *p, const char *instance, uint64_t *ret_used,
		      uint64_t *ret_quota, struct lxm_error **err)
{
	struct lxm_storage_usage u = { 0 };
	int k = lxm_volume_usage(p, LXM_VOLUME_CONTAINER, instance, &u, err);

	if (k < 0)
		return lxm_error_prefix(err, "instance '%s': disk usage", instance);
	*ret_used = u.used;
	*ret_quota = u.total;
	return 0;
}

int lxmd_volume_snapshot(struct lxm_pool *p, const char *instance, const char *snap,
			 int64_t *ret_size, struct lxm_error **err)
{
	struct lxm_storage_usage u = { 0 };
	struct lxm_error *e = NULL;
	int k;

	k = lxm_snapshot_create(p, LXM_VOLUME_CONTAINER, instance, snap, err);
	if (k < 0)
		return k;
	/* The size is information: a snapshot whose size cannot be read is still made. */
	*ret_size = lxm_snapshot_usage(p, LXM_VOLUME_CONTAINER, instance, snap, &u, &e) < 0
			    ? -1
			    : (int64_t)u.used;
	lxm_error_free(e);
	return 0;
}

int lxmd_volume_restore(struct lxm_pool *p, const char *instance, const char *snap,
			struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *rootfs = NULL;
	struct stat st;
	int k;

	/* A snapshot without its rootfs would leave the instance without one. */
	if (lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, instance, snap, &path) < 0 ||
	    asprintf(&rootfs, "%s/rootfs", path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	k = stat(rootfs, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	/* A virtual machine's snapshot has its disk instead. */
	if (k < 0 && lxm_volume_vm_disk(p, LXM_VOLUME_CONTAINER, instance, snap, NULL) > 0)
		k = 0;
	if (k < 0)
		return lxm_error_set(err, k, 500,
				     "snapshot '%s/%s' has no rootfs directory (%s): restored "
				     "nothing",
				     instance, snap, rootfs);
	k = lxm_volume_unmount(p, LXM_VOLUME_CONTAINER, instance, err);

	if (k >= 0)
		k = lxm_snapshot_restore(p, LXM_VOLUME_CONTAINER, instance, snap, err);
	/* Mounted again either way: a failed restore leaves the instance as it was. */
	if (lxm_volume_mount(p, LXM_VOLUME_CONTAINER, instance, k < 0 ? NULL : err) < 0 && k >= 0)
		k = -(*err)->errnum;
	return k;
}

int lxmd_volume_snapshot_delete(struct lxm_pool *p, const char *instance, const char *snap,
				struct lxm_error **err)
{
	int k = lxm_snapshot_unmount(p, LXM_VOLUME_CONTAINER, instance, snap, err);

	return k < 0 ? k : lxm_snapshot_delete(p, LXM_VOLUME_CONTAINER, instance, snap, err);
}

int lxmd_volume_snapshot_rename(struct lxm_pool *p, const char *instance, const char *snap,
				const char *new_snap, struct lxm_error **err)
{
	int k = lxm_snapshot_unmount(p, LXM_VOLUME_CONTAINER, instance, snap, err);

	return k < 0 ? k
		     : lxm_snapshot_rename(p, LXM_VOLUME_CONTAINER, instance, snap, new_snap, err);
}

int lxmd_volume_snapshot_mount(struct lxm_pool *p, const char *instance, const char *snap,
			       struct lxm_error **err)
{
	return lxm_snapshot_mount(p, LXM_VOLUME_CONTAINER, instance, snap, err);
}

int lxmd_snapshot_path(const struct lxmd *d, const char *instance, const char *snap, char **ret)
{
	return asprintf(ret, "%s/containers-snapshots/%s/%s", d->cfg.root, instance, snap) < 0
		       ? -ENOMEM
		       : 0;
}
