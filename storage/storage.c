/* The storage front-end: the driver registry, pool objects, paths, name checks, and the calls
 * that check a driver's slot, run it and name the pool in every error. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#include "storage-internal.h"

/* Longest volume or snapshot name: leaves room below NAME_MAX for the staging prefix and
 * suffix a driver adds. */
#define STORAGE_NAME_MAX 200

/* The registry, in the order "lxm storage create --help" lists the drivers. */
static const struct {
	const char *name;		   /* the driver's name */
	const struct lxm_storage_ops *ops; /* its table */
} storage_drivers[] = {
	{ "dir", &storage_dir_ops },
	{ "btrfs", &storage_btrfs_ops },
	{ "overlay", &storage_overlay_ops },
};

static const char *const storage_driver_name_list[] = { "dir", "btrfs", "overlay", NULL };

static const char *const volume_type_names[_LXM_VOLUME_TYPE_MAX] = {
	[LXM_VOLUME_IMAGE] = "image",
	[LXM_VOLUME_CONTAINER] = "container",
	[LXM_VOLUME_CUSTOM] = "custom",
};

static const char *const volume_type_dirs[_LXM_VOLUME_TYPE_MAX] = {
	[LXM_VOLUME_IMAGE] = "images",
	[LXM_VOLUME_CONTAINER] = "containers",
	[LXM_VOLUME_CUSTOM] = "custom",
};

static const char *const volume_type_snapshot_dirs[_LXM_VOLUME_TYPE_MAX] = {
	[LXM_VOLUME_IMAGE] = "images-snapshots",
	[LXM_VOLUME_CONTAINER] = "containers-snapshots",
	[LXM_VOLUME_CUSTOM] = "custom-snapshots",
};

const char *lxm_volume_type_name(enum lxm_volume_type t)
{
	if (t < 0 || t >= _LXM_VOLUME_TYPE_MAX)
		return NULL;
	return volume_type_names[t];
}

enum lxm_volume_type lxm_volume_type_from_name(const char *name)
{
	for (int t = 0; t < _LXM_VOLUME_TYPE_MAX; t++)
		if (streq(name, volume_type_names[t]))
			return (enum lxm_volume_type)t;
	return _LXM_VOLUME_TYPE_INVALID;
}

const struct lxm_storage_ops *lxm_storage_driver(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(storage_drivers); i++)
		if (streq(name, storage_drivers[i].name))
			return storage_drivers[i].ops;
	return NULL;
}

const char *const *lxm_storage_driver_names(void)
{
	return storage_driver_name_list;
}

/* Whether the kernel knows file system type fstype now, or has it as a module it loads on the
 * first mount. */
static bool kernel_has_fs(const char *fstype)
{
	_cleanup_free_ char *fs = NULL, *mod = NULL;
	struct utsname u;
	char needle[64];

	snprintf(needle, sizeof(needle), "\t%s\n", fstype);
	if (lxm_read_file("/proc/filesystems", &fs, NULL) == 0 && strstr(fs, needle))
		return true;
	if (uname(&u) < 0 || asprintf(&mod, "/lib/modules/%s/kernel/fs/%s", u.release, fstype) < 0)
		return false;
	return access(mod, F_OK) == 0;
}

bool lxm_storage_driver_available(const char *name)
{
	_cleanup_free_ char *prog = NULL;

	if (streq(name, "dir"))
		return true;
	if (streq(name, "btrfs"))
		return kernel_has_fs("btrfs") && storage_find_program("mkfs.btrfs", &prog) == 0;
	if (streq(name, "overlay"))
		return kernel_has_fs("overlay");
	return false;
}

int lxm_pool_new(const char *root_dir, const char *name, const char *driver, json_t *config,
		 struct lxm_pool **ret, struct lxm_error **err)
{
	const struct lxm_storage_ops *ops = lxm_storage_driver(driver);
	struct lxm_pool *p;
	const char *reason = lxm_entity_name_invalid_reason(name);

	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "pool name '%s': %s", name ? name : "",
				     reason);
	if (!ops)
		return lxm_error_set(err, -EINVAL, 400,
				     "pool '%s': unknown storage driver '%s' (use dir, btrfs or "
				     "overlay)",
				     name, driver ? driver : "");
	if (config && !json_is_object(config))
		return lxm_error_set(err, -EINVAL, 400, "pool '%s': config is not an object", name);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->name = strdup(name);
	p->driver = strdup(ops->name);
	p->config = config ? json_incref(config) : json_object();
	p->ops = ops;
	if (!p->name || !p->driver || !p->config ||
	    asprintf(&p->path, "%s/%s", root_dir, name) < 0) {
		p->path = NULL;
		lxm_pool_free(p);
		return -ENOMEM;
	}
	*ret = p;
	return 0;
}

void lxm_pool_free(struct lxm_pool *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->driver);
	free(p->path);
	json_decref(p->config);
	free(p);
}

int lxm_pool_volume_path(const struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 const char *snap, char **ret)
{
	int r;

	if (t < 0 || t >= _LXM_VOLUME_TYPE_MAX)
		return -EINVAL;
	if (snap)
		r = asprintf(ret, "%s/%s/%s/%s", p->path, volume_type_snapshot_dirs[t], name, snap);
	else
		r = asprintf(ret, "%s/%s/%s", p->path, volume_type_dirs[t], name);
	return r < 0 ? -ENOMEM : 0;
}

int lxm_pool_snapshots_dir(const struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			   char **ret)
{
	if (t < 0 || t >= _LXM_VOLUME_TYPE_MAX)
		return -EINVAL;
	if (asprintf(ret, "%s/%s/%s", p->path, volume_type_snapshot_dirs[t], name) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- checks shared by the calls ---- */

static int unsupported(const struct lxm_pool *p, const char *what, struct lxm_error **err)
{
	return lxm_error_set(err, -EOPNOTSUPP, 400, "pool '%s': %s pools cannot %s", p->name,
			     p->ops->name, what);
}

/* Volume, snapshot and image names become one path component: no "/", no leading "." (the
 * drivers' private and staging names), not empty, not too long for the staging names. */
static int check_name(const struct lxm_pool *p, const char *kind, const char *name,
		      struct lxm_error **err)
{
	const char *why = NULL;

	if (!name || !*name)
		why = "it is empty";
	else if (strchr(name, '/'))
		why = "it contains '/'";
	else if (name[0] == '.')
		why = "it starts with '.'";
	else if (strlen(name) > STORAGE_NAME_MAX)
		why = "it is longer than 200 bytes";
	if (!why)
		return 0;
	return lxm_error_set(err, -EINVAL, 400, "pool '%s': invalid %s name '%s': %s", p->name,
			     kind, name ? name : "", why);
}

static int check_type(const struct lxm_pool *p, enum lxm_volume_type t, struct lxm_error **err)
{
	if (t >= 0 && t < _LXM_VOLUME_TYPE_MAX)
		return 0;
	return lxm_error_set(err, -EINVAL, 400, "pool '%s': invalid volume type %d", p->name,
			     (int)t);
}

static int check_volume(const struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			const char *snap, struct lxm_error **err)
{
	int r;

	if ((r = check_type(p, t, err)) < 0 ||
	    (r = check_name(p, t == LXM_VOLUME_IMAGE ? "image" : "volume", name, err)) < 0)
		return r;
	if (snap && (r = check_name(p, "snapshot", snap, err)) < 0)
		return r;
	return 0;
}

/* Prefixes the pool's name to what a driver returned. */
static int done(const struct lxm_pool *p, int r, struct lxm_error **err)
{
	if (r >= 0)
		return r;
	if (err && !*err)
		return lxm_error_setx(err, r, 500, "pool '%s'", p->name);
	lxm_error_prefix(err, "pool '%s'", p->name);
	return r;
}

/* ---- pools ---- */

int lxm_pool_validate(const struct lxm_storage_ops *ops, json_t *config, struct lxm_error **err)
{
	const char *key;
	json_t *v;

	if (!json_is_object(config))
		return lxm_error_set(err, -EINVAL, 400, "%s pool config is not an object",
				     ops->name);
	json_object_foreach (config, key, v)
		if (!json_is_string(v))
			return lxm_error_set(err, -EINVAL, 400,
					     "config key '%s': the value must be a string", key);
	if (!ops->pool_validate) {
		json_object_foreach (config, key, v)
			return lxm_error_set(err, -EINVAL, 400,
					     "unknown config key '%s' for %s pools (they take no "
					     "config)",
					     key, ops->name);
		return 0;
	}
	return ops->pool_validate(config, err);
}

int lxm_pool_create(struct lxm_pool *p, struct lxm_error **err)
{
	int r;

	if ((r = lxm_pool_validate(p->ops, p->config, err)) < 0)
		return done(p, r, err);
	if (!p->ops->pool_create)
		return unsupported(p, "be created", err);
	return done(p, p->ops->pool_create(p, err), err);
}

int lxm_pool_mount(struct lxm_pool *p, struct lxm_error **err)
{
	if (!p->ops->pool_mount)
		return 0;
	return done(p, p->ops->pool_mount(p, err), err);
}

int lxm_pool_unmount(struct lxm_pool *p, struct lxm_error **err)
{
	if (!p->ops->pool_unmount)
		return 0;
	return done(p, p->ops->pool_unmount(p, err), err);
}

int lxm_pool_delete(struct lxm_pool *p, struct lxm_error **err)
{
	if (!p->ops->pool_delete)
		return unsupported(p, "be deleted", err);
	return done(p, p->ops->pool_delete(p, err), err);
}

int lxm_pool_usage(struct lxm_pool *p, struct lxm_storage_usage *ret, struct lxm_error **err)
{
	if (!p->ops->pool_usage)
		return unsupported(p, "report their usage", err);
	return done(p, p->ops->pool_usage(p, ret, err), err);
}

/* ---- volumes ---- */

int lxm_pool_image_create(struct lxm_pool *p, const char *fp, const char *src,
			  struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, LXM_VOLUME_IMAGE, fp, NULL, err)) < 0)
		return r;
	if (!p->ops->image_create)
		return unsupported(p, "hold images", err);
	return done(p, p->ops->image_create(p, fp, src, err), err);
}

int lxm_volume_create_from_image(struct lxm_pool *p, const char *fp, enum lxm_volume_type t,
				 const char *name, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, LXM_VOLUME_IMAGE, fp, NULL, err)) < 0 ||
	    (r = check_volume(p, t, name, NULL, err)) < 0)
		return r;
	if (t == LXM_VOLUME_IMAGE)
		return lxm_error_set(err, -EINVAL, 400,
				     "pool '%s': an image volume cannot be created from an image",
				     p->name);
	if (!p->ops->volume_create_from_image)
		return unsupported(p, "create volumes from images", err);
	return done(p, p->ops->volume_create_from_image(p, fp, t, name, err), err);
}

int lxm_volume_create(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		      struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, NULL, err)) < 0)
		return r;
	if (!p->ops->volume_create)
		return unsupported(p, "create empty volumes", err);
	return done(p, p->ops->volume_create(p, t, name, err), err);
}

/* A copy from another pool reads the source's files at its path: they must be visible there
 * (an overlay volume or snapshot is a mount). Returns 1 when it mounted a snapshot that the
 * caller unmounts afterwards. */
static int copy_mount_source(struct lxm_pool *src_pool, enum lxm_volume_type t, const char *src,
			     const char *src_snap, struct lxm_error **err)
{
	int r;

	if (src_snap) {
		if (!src_pool->ops->snapshot_mount)
			return 0;
		r = src_pool->ops->snapshot_mount(src_pool, t, src, src_snap, err);
		return r < 0 ? done(src_pool, r, err) : 1;
	}
	if (!src_pool->ops->volume_mount)
		return 0;
	r = src_pool->ops->volume_mount(src_pool, t, src, err);
	return r < 0 ? done(src_pool, r, err) : 0;
}

int lxm_volume_vm_disk(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       const char *snap, char **ret_path)
{
	_cleanup_free_ char *path = NULL;

	if (lxm_pool_volume_path(p, t, name, snap, &path) < 0)
		return -ENOMEM;
	return storage_vm_disk(path, ret_path);
}

int lxm_vm_disk_flatten(const char *disk, const char *raw, struct lxm_error **err)
{
	const char *argv[] = {
		"qemu-img", "convert", "-q", "-O", "raw", "-S", "4k", disk, raw, NULL
	};
	int r;

	if ((r = storage_require_absent(raw, err)) < 0)
		return r;
	if ((r = storage_run(argv, err)) < 0)
		unlink(raw);
	return r;
}

/* Replaces a copied volume's qcow2 overlay by a raw disk of its own. */
static int flatten_copied_disk(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			       struct lxm_error **err)
{
	_cleanup_free_ char *disk = NULL, *vol = NULL, *raw = NULL;
	int r = -ENOMEM;

	if (lxm_pool_volume_path(p, t, name, NULL, &vol) >= 0)
		r = storage_vm_disk(vol, &disk);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "find the disk of volume %s", name);
	if (r != 2)
		return 0;
	if (asprintf(&raw, "%s/" LXM_VM_DISK_RAW, vol) < 0)
		return -ENOMEM;
	if ((r = lxm_vm_disk_flatten(disk, raw, err)) < 0)
		return r;
	if (unlink(disk) < 0)
		return lxm_error_setx(err, -errno, 500, "remove %s", disk);
	return 0;
}

int lxm_volume_copy(struct lxm_pool *p, enum lxm_volume_type t, const char *dst,
		    struct lxm_pool *src_pool, const char *src, const char *src_snap,
		    struct lxm_error **err)
{
	int r, mounted = 0;

	if ((r = check_volume(p, t, dst, NULL, err)) < 0 ||
	    (r = check_volume(src_pool, t, src, src_snap, err)) < 0)
		return r;
	if (!p->ops->volume_copy)
		return unsupported(p, "copy volumes", err);
	if (src_pool != p && (mounted = copy_mount_source(src_pool, t, src, src_snap, err)) < 0)
		return mounted;
	r = done(p, p->ops->volume_copy(p, t, dst, src_pool, src, src_snap, err), err);
	if (mounted > 0)
		src_pool->ops->snapshot_unmount(src_pool, t, src, src_snap, NULL);
	/* A qcow2 overlay's backing file is an image volume of the source's pool: a copy to
	 * another pool gets the disk as one raw file of its own. */
	if (r >= 0 && src_pool != p && (r = flatten_copied_disk(p, t, dst, err)) < 0) {
		struct lxm_error *e = NULL;

		p->ops->volume_delete(p, t, dst, &e);
		lxm_error_free(e);
		r = done(p, r, err);
	}
	return r;
}

int lxm_volume_delete(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		      struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, NULL, err)) < 0)
		return r;
	if (!p->ops->volume_delete)
		return unsupported(p, "delete volumes", err);
	return done(p, p->ops->volume_delete(p, t, name, err), err);
}

int lxm_volume_rename(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		      const char *new_name, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, NULL, err)) < 0 ||
	    (r = check_volume(p, t, new_name, NULL, err)) < 0)
		return r;
	if (!p->ops->volume_rename)
		return unsupported(p, "rename volumes", err);
	return done(p, p->ops->volume_rename(p, t, name, new_name, err), err);
}

int lxm_volume_mount(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		     struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, NULL, err)) < 0)
		return r;
	if (!p->ops->volume_mount)
		return 0;
	return done(p, p->ops->volume_mount(p, t, name, err), err);
}

int lxm_volume_unmount(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, NULL, err)) < 0)
		return r;
	if (!p->ops->volume_unmount)
		return 0;
	return done(p, p->ops->volume_unmount(p, t, name, err), err);
}

int lxm_volume_usage(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		     struct lxm_storage_usage *ret, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, NULL, err)) < 0)
		return r;
	if (!p->ops->volume_usage)
		return unsupported(p, "report volume usage", err);
	return done(p, p->ops->volume_usage(p, t, name, ret, err), err);
}

int lxm_volume_set_quota(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 uint64_t bytes, struct lxm_error **err)
{
	_cleanup_free_ char *disk = NULL;
	int r;

	if ((r = check_volume(p, t, name, NULL, err)) < 0)
		return r;
	/* A virtual machine's size= is the size of its disk, which only grows; no size keeps the
	 * disk as it is. */
	if ((r = lxm_volume_vm_disk(p, t, name, NULL, &disk)) != 0) {
		if (r < 0)
			return done(p,
				    lxm_error_setx(err, r, 500, "find the disk of volume %s", name),
				    err);
		if (bytes == 0)
			return 0;
		return done(p, storage_vm_disk_grow(disk, r, bytes, err), err);
	}
	if (!p->ops->volume_set_quota) {
		/* Clearing a limit that cannot exist is not an error. */
		if (bytes == 0)
			return 0;
		return unsupported(p, "limit a volume's size (size=); use a btrfs pool", err);
	}
	return done(p, p->ops->volume_set_quota(p, t, name, bytes, err), err);
}

/* ---- snapshots ---- */

int lxm_snapshot_create(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			const char *snap, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, snap, err)) < 0)
		return r;
	if (!p->ops->snapshot_create)
		return unsupported(p, "snapshot volumes", err);
	return done(p, p->ops->snapshot_create(p, t, name, snap, err), err);
}

int lxm_snapshot_delete(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			const char *snap, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, snap, err)) < 0)
		return r;
	if (!p->ops->snapshot_delete)
		return unsupported(p, "delete snapshots", err);
	return done(p, p->ops->snapshot_delete(p, t, name, snap, err), err);
}

int lxm_snapshot_rename(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			const char *snap, const char *new_snap, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, snap, err)) < 0 ||
	    (r = check_name(p, "snapshot", new_snap, err)) < 0)
		return r;
	if (!p->ops->snapshot_rename)
		return unsupported(p, "rename snapshots", err);
	return done(p, p->ops->snapshot_rename(p, t, name, snap, new_snap, err), err);
}

int lxm_snapshot_restore(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 const char *snap, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, snap, err)) < 0)
		return r;
	if (!p->ops->snapshot_restore)
		return unsupported(p, "restore snapshots", err);
	return done(p, p->ops->snapshot_restore(p, t, name, snap, err), err);
}

int lxm_snapshot_mount(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       const char *snap, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, snap, err)) < 0)
		return r;
	if (!p->ops->snapshot_mount)
		return 0;
	return done(p, p->ops->snapshot_mount(p, t, name, snap, err), err);
}

int lxm_snapshot_unmount(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 const char *snap, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, snap, err)) < 0)
		return r;
	if (!p->ops->snapshot_unmount)
		return 0;
	return done(p, p->ops->snapshot_unmount(p, t, name, snap, err), err);
}

int lxm_snapshot_usage(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       const char *snap, struct lxm_storage_usage *ret, struct lxm_error **err)
{
	int r;

	if ((r = check_volume(p, t, name, snap, err)) < 0)
		return r;
	if (!p->ops->snapshot_usage)
		return unsupported(p, "report snapshot usage", err);
	return done(p, p->ops->snapshot_usage(p, t, name, snap, ret, err), err);
}

/* Removes the staging entries (STORAGE_STAGING_PREFIX) of directory dir; appends their paths to
 * *removed. Errors name the pool and dir. */
static int sweep_dir(const struct lxm_pool *p, const char *dir, char ***removed, size_t *n,
		     struct lxm_error **err)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	int r = 0;

	if (!d && errno != ENOENT)
		r = -errno;
	while (d && r == 0 && (de = readdir(d))) {
		char *path = NULL, **grown;

		if (!startswith(de->d_name, STORAGE_STAGING_PREFIX))
			continue;
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		grown = realloc(*removed, (*n + 2) * sizeof(char *));
		if (!grown) {
			free(path);
			r = -ENOMEM;
			break;
		}
		*removed = grown;
		(*removed)[(*n)++] = path;
		(*removed)[*n] = NULL;
		lxm_rm_tree(path);
	}
	if (r < 0)
		return lxm_error_setx(err, r, 500, "pool '%s': remove unfinished work in %s",
				      p->name, dir);
	return 0;
}

int lxm_pool_sweep(struct lxm_pool *p, char ***ret_removed, struct lxm_error **err)
{
	static const char *const tops[] = { "images", "containers", "custom" };
	static const char *const snaps[] = { "containers-snapshots", "custom-snapshots" };
	_cleanup_strv_ char **removed = NULL;
	size_t n = 0;
	int k = 0;

	for (size_t i = 0; i < ARRAY_SIZE(tops) && k >= 0; i++) {
		_cleanup_free_ char *dir = NULL;

		if (asprintf(&dir, "%s/%s", p->path, tops[i]) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		k = sweep_dir(p, dir, &removed, &n, err);
	}
	for (size_t i = 0; i < ARRAY_SIZE(snaps) && k >= 0; i++) {
		_cleanup_free_ char *dir = NULL;
		_cleanup_closedir_ DIR *d = NULL;
		struct dirent *de;

		if (asprintf(&dir, "%s/%s", p->path, snaps[i]) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		d = opendir(dir);
		while (d && k >= 0 && (de = readdir(d))) {
			_cleanup_free_ char *sub = NULL;

			if (de->d_name[0] == '.' && !startswith(de->d_name, STORAGE_STAGING_PREFIX))
				continue;
			if (asprintf(&sub, "%s/%s", dir, de->d_name) < 0)
				return lxm_error_set(err, -ENOMEM, 500, "out of memory");
			k = startswith(de->d_name, STORAGE_STAGING_PREFIX)
				    ? 0
				    : sweep_dir(p, sub, &removed, &n, err);
		}
		if (k >= 0)
			k = sweep_dir(p, dir, &removed, &n, err);
	}
	if (k < 0)
		return k;
	*ret_removed = TAKE_PTR(removed);
	return (int)n;
}
