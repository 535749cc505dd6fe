/* Shared by the storage/ files only: the driver tables and the helpers every driver uses (child
 * processes, tree copies and walks, mount point lookups, staging names).
 *
 * Drivers set *err to a message that names the step and the path ("create subvolume
 * /var/lib/lxm/storage-pools/p1/containers/c1: File exists"); the front-end adds the pool
 * ("pool 'p1': ...") on the way up. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#include "storage.h"

/* The drivers (storage-dir.c, storage-btrfs.c, storage-overlay.c). */
extern const struct lxm_storage_ops storage_dir_ops;
extern const struct lxm_storage_ops storage_btrfs_ops;
extern const struct lxm_storage_ops storage_overlay_ops;

/* Mode of the layout directories and of volume directories: traversable, not listable, so an
 * unprivileged container's root can reach its rootfs without seeing its neighbours. */
#define STORAGE_DIR_MODE 0711

/* The prefix of a staging directory (a copy under way, renamed into place when complete).
 * Names starting with "." are never volumes, so a crash leaves only something to sweep. */
#define STORAGE_STAGING_PREFIX ".tmp-"

/* ROOT/storage-pools/<pool>/<sub> for a driver's own paths; NULL on ENOMEM. */
char *storage_pool_subpath(const struct lxm_pool *p, const char *sub);

/* Makes p->path and the layout directories (images, containers, ...); existing ones are fine. */
int storage_make_layout(const struct lxm_pool *p, struct lxm_error **err);
/* Removes the layout directories and what they hold, leaving p->path itself. */
int storage_remove_layout(const struct lxm_pool *p, struct lxm_error **err);
/* Fails with -EBUSY when the pool still has instance or custom volumes. */
int storage_check_no_volumes(const struct lxm_pool *p, struct lxm_error **err);

/* The full path of program name (searched in PATH and the sbin directories), or -ENOENT. */
int storage_find_program(const char *name, char **ret);
/* Runs argv[0] (searched like storage_find_program) with stdin and stdout on /dev/null and
 * waits. Its stderr becomes the error: "<argv joined>: <stderr>", with the errno the text names
 * (ENOSPC for "No space left on device") or -EIO. */
int storage_run(const char *const argv[], struct lxm_error **err);

/* Copies the tree src to dst (created; its contents merged when it exists) with
 * "cp -a --reflink=auto" (plus --sparse=always when src holds a VM disk): ownership, modes, xattrs,
 * hardlinks and sparse files preserved, shared extents where the file system can. */
int storage_copy_tree(const char *src, const char *dst, struct lxm_error **err);
/* Copies src to a new staging directory beside dst, then renames it to dst: dst appears
 * complete or not at all. -EEXIST when dst exists. */
int storage_copy_staged(const char *src, const char *dst, struct lxm_error **err);
/* Replaces the tree dst with a copy of src: copy to a staging dir, swap with
 * renameat2(RENAME_EXCHANGE), remove the old tree. dst is unchanged when the copy fails. */
int storage_replace_staged(const char *src, const char *dst, struct lxm_error **err);
/* A new unique name "<dirname(path)>/.tmp-<basename(path)>-<random>" (not created). */
int storage_staging_path(const char *path, char **ret);

/* Bytes the tree at path occupies (st_blocks * 512, every hardlinked inode once, not crossing
 * into other file systems). A missing path is -ENOENT. */
int storage_tree_usage(const char *path, uint64_t *ret);
/* storage_tree_usage() as a volume's usage (total 0: no limit), with an error "measure <path>"
 * (404 when it is missing). */
int storage_measure_tree(const char *path, struct lxm_storage_usage *ret, struct lxm_error **err);
/* Space of the file system holding path, as used/total bytes. */
int storage_statvfs_usage(const char *path, struct lxm_storage_usage *ret, struct lxm_error **err);

/* 1 when path is a mount point in /proc/self/mountinfo, 0 when not (or path does not exist),
 * or -errno. */
int storage_is_mountpoint(const char *path);
/* The file system type mounted at path ("btrfs") in *ret_fstype, or -ENOENT when path is not a
 * mount point. ret_source, when non-NULL, gets the mount source ("/dev/loop3"). */
int storage_mount_info(const char *path, char **ret_fstype, char **ret_source);
/* Unmounts path until it is no longer a mount point; not mounted is fine. */
int storage_umount(const char *path, struct lxm_error **err);

/* 1 when path exists (lstat), 0 when not, or -errno. */
int storage_exists(const char *path);
/* 0 when path exists; else -ENOENT (404) or the stat error, as "<step> <path>: ...". */
int storage_require(const char *path, const char *step, struct lxm_error **err);
/* 0 when path does not exist; else -EEXIST (409, "create <path>") or the stat error. */
int storage_require_absent(const char *path, struct lxm_error **err);
/* rename(2) with an error that names both paths; -EEXIST (never replacing) when dst exists. */
int storage_rename_noreplace(const char *src, const char *dst, struct lxm_error **err);
/* Removes the tree at path with an error that names it; missing is fine. */
int storage_rm_tree(const char *path, struct lxm_error **err);
/* Renames a volume dir and its snapshots dir (-EEXIST when either new name exists); when the
 * second rename fails the first is undone. */
int storage_rename_volume(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			  const char *new_name, struct lxm_error **err);
/* Removes the snapshots dir of a volume when it has become empty. */
void storage_rmdir_if_empty(const char *path);
/* rename(2) of snapshot snap to new_snap (-EEXIST when it exists): the snapshot_rename of the
 * drivers whose snapshots are plain directories or subvolumes. */
int storage_snapshot_rename(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			    const char *snap, const char *new_snap, struct lxm_error **err);
/* mkdir of a plain volume (plus rootfs/ for an instance): the volume_create of the dir and
 * overlay drivers. */
int storage_volume_mkdir(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 struct lxm_error **err);

/* The root disk of a virtual machine's volume (or snapshot) at volpath: 1 with *ret (may be NULL)
 * set to volpath/rootfs.img (raw), 2 with volpath/root.qcow2 (a qcow2 overlay), 0 when the volume
 * holds no disk (a container's), or -errno. */
int storage_vm_disk(const char *volpath, char **ret);
/* Sets nodatacow (chattr +C) on path: on an empty file, or on a directory whose new files
 * inherit it. Data written before it was set keeps being copied on write. */
int storage_set_nocow(const char *path, struct lxm_error **err);
/* Reads a qcow2 header: *ret_backing (may be NULL; NULL when none) gets the backing file's name,
 * *ret_size (may be NULL) the virtual size. -EBADMSG when path is not a qcow2 file. */
int storage_qcow2_info(const char *path, char **ret_backing, uint64_t *ret_size);
/* The size of disk (kind 1: raw, its length; kind 2: qcow2, its virtual size). */
int storage_vm_disk_size(const char *disk, int kind, uint64_t *ret, struct lxm_error **err);
/* Grows disk (of kind, as storage_vm_disk() found it) to bytes (truncate, or qemu-img resize
 * for qcow2); a smaller size is refused (-EINVAL, 400), the same size changes nothing. */
int storage_vm_disk_grow(const char *disk, int kind, uint64_t bytes, struct lxm_error **err);
