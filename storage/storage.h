/* Storage pools: where image volumes, instance root volumes, custom volumes and their snapshots
 * live. One front-end (storage.c) over drivers (storage-dir.c, storage-btrfs.c,
 * storage-overlay.c), each a static const struct lxm_storage_ops picked by name from a registry.
 * Only the front-end calls ops; a NULL slot means -EOPNOTSUPP.
 *
 * Layout of a pool (p->path, ROOT/storage-pools/<pool>; the mount point of a btrfs pool):
 *   images/<fp>/                          image volume: rootfs/, metadata.yaml, templates/
 *   containers/<name>/                    instance volume: rootfs/, metadata.yaml, templates/,
 *                                         backup.yaml (what the instance code calls its path)
 *   containers-snapshots/<name>/<snap>/   snapshot of it, same content, read-only where the
 *                                         driver can (btrfs)
 *   custom/<vol>/                         custom volume: its files at the top
 *   custom-snapshots/<vol>/<snap>/
 * Drivers may keep private state below p->path in names starting with "." (overlay's upper and
 * work directories), never elsewhere.
 *
 * Every function here is blocking (it copies, mounts, runs mkfs): call it on the thread pool or
 * in a helper, never on lxmd's loop thread. Nothing logs; errors name the pool or volume, the
 * step and the cause ("pool 'p1': mount /dev/loop3 on /var/lib/lxm/storage-pools/p1: Invalid
 * argument"). A failing create leaves nothing behind. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* A virtual machine's instance volume holds its root disk instead of rootfs/: a raw disk (dir and
 * btrfs pools; on btrfs nodatacow), or on overlay pools a qcow2 overlay whose backing file is the
 * image volume's raw disk (images/<fp>/rootfs.img). Beside it: boot/vmlinuz, boot/initrd.img,
 * metadata.yaml and backup.yaml. Snapshots and copies keep the same layout; an image volume of a
 * VM image holds rootfs.img, boot/ and metadata.yaml. */
#define LXM_VM_DISK_RAW	  "rootfs.img"
#define LXM_VM_DISK_QCOW2 "root.qcow2"

enum lxm_volume_type {
	LXM_VOLUME_IMAGE,     /* images/<fp> */
	LXM_VOLUME_CONTAINER, /* containers/<name> */
	LXM_VOLUME_CUSTOM,    /* custom/<name> */
	_LXM_VOLUME_TYPE_MAX,
	_LXM_VOLUME_TYPE_INVALID = -1,
};

/* "image", "container", "custom" (LXD's volume type names in /1.0/storage-pools/P/volumes/TYPE). */
const char *lxm_volume_type_name(enum lxm_volume_type t);
enum lxm_volume_type lxm_volume_type_from_name(const char *name);

struct lxm_storage_ops;

/* An open pool. */
struct lxm_pool {
	char *name;	/* the pool's name */
	char *driver;	/* "dir", "btrfs", "overlay" */
	char *path;	/* ROOT/storage-pools/<name> */
	json_t *config; /* the pool's config (string values): source, size, ... */
	const struct lxm_storage_ops *ops; /* the driver */
};

/* What a volume or a pool uses. */
struct lxm_storage_usage {
	uint64_t used;	/* bytes in use */
	uint64_t total; /* bytes available in all (pool); the quota of a volume; 0 when none */
};

struct lxm_storage_ops {
	const char *name; /* the driver's name, as in "lxm storage create P <name>" */

	/* Checks a pool config before create or set: unknown keys and bad values fail with the
	 * key named (config maps key -> string). May add the defaults it chose (size). */
	int (*pool_validate)(json_t *config, struct lxm_error **err);
	/* Creates the pool's backing store (a directory, or a loop file with mkfs and a mount)
	 * and the layout directories. May add keys to p->config (source = the loop file). */
	int (*pool_create)(struct lxm_pool *p, struct lxm_error **err);
	/* Makes a created pool usable after a reboot or an lxmd restart: mounts it when it is
	 * not mounted. Idempotent. */
	int (*pool_mount)(struct lxm_pool *p, struct lxm_error **err);
	/* Unmounts what pool_mount mounted (and detaches its loop device). Idempotent. */
	int (*pool_unmount)(struct lxm_pool *p, struct lxm_error **err);
	/* Removes the pool and what lxm created for it (its loop file; never an existing btrfs
	 * filesystem named by source=, only lxm's directories in it). The pool has no volumes. */
	int (*pool_delete)(struct lxm_pool *p, struct lxm_error **err);
	/* Space used and total of the pool's filesystem (or loop file). */
	int (*pool_usage)(struct lxm_pool *p, struct lxm_storage_usage *ret,
			  struct lxm_error **err);

	/* Creates the image volume fp from an unpacked image tree src (rootfs/, metadata.yaml,
	 * templates/), copied so that src may go away later. */
	int (*image_create)(struct lxm_pool *p, const char *fp, const char *src,
			    struct lxm_error **err);

	/* Creates volume name of type t from image volume fp (t = container), in the driver's
	 * fastest way: a btrfs snapshot, an overlay upper, a reflink copy. */
	int (*volume_create_from_image)(struct lxm_pool *p, const char *fp, enum lxm_volume_type t,
					const char *name, struct lxm_error **err);
	/* Creates an empty volume (an instance created with no image; a custom volume). */
	int (*volume_create)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			     struct lxm_error **err);
	/* Creates volume dst as a copy of volume src, or of its snapshot src_snap when that is
	 * not NULL (the snapshots of src are not copied). src lives in pool src_pool, which may be
	 * p or another pool (of any driver: then the copy is a plain file copy). */
	int (*volume_copy)(struct lxm_pool *p, enum lxm_volume_type t, const char *dst,
			   struct lxm_pool *src_pool, const char *src, const char *src_snap,
			   struct lxm_error **err);
	/* Deletes a volume, its snapshots included; image volumes in use by others (overlay
	 * lowers) fail with -EBUSY. A volume that does not exist is fine. */
	int (*volume_delete)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			     struct lxm_error **err);
	/* Renames a volume and its snapshots; -EEXIST when new_name exists. */
	int (*volume_rename)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			     const char *new_name, struct lxm_error **err);
	/* Makes the volume's files visible at its path (overlay: mounts rootfs/); idempotent.
	 * Called when lxmd starts and before the files are used. NULL: always visible. */
	int (*volume_mount)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			    struct lxm_error **err);
	/* Undoes volume_mount; idempotent. */
	int (*volume_unmount)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			      struct lxm_error **err);
	/* Space the volume uses (what it adds to the pool: a btrfs subvolume's exclusive bytes,
	 * an overlay upper), and its quota. */
	int (*volume_usage)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			    struct lxm_storage_usage *ret, struct lxm_error **err);
	/* Sets (bytes > 0) or clears (0) the volume's size limit. NULL: the driver has no quotas
	 * (the front-end refuses a size= with a clear error). */
	int (*volume_set_quota)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				uint64_t bytes, struct lxm_error **err);

	/* Snapshot snap of volume name: consistent if the caller froze the writers. Read-only
	 * where the driver can. -EEXIST when it exists. */
	int (*snapshot_create)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			       const char *snap, struct lxm_error **err);
	int (*snapshot_delete)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			       const char *snap, struct lxm_error **err);
	int (*snapshot_rename)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			       const char *snap, const char *new_snap, struct lxm_error **err);
	/* Replaces the volume's content with the snapshot's (the volume is not in use). Either
	 * the whole restore happens or the volume is unchanged. */
	int (*snapshot_restore)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				const char *snap, struct lxm_error **err);
	/* Makes the snapshot's files readable at its path (overlay: a read-only mount of its
	 * rootfs/), for publish and copy; idempotent. NULL: always readable. */
	int (*snapshot_mount)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			      const char *snap, struct lxm_error **err);
	int (*snapshot_unmount)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
				const char *snap, struct lxm_error **err);
	/* Space the snapshot holds on its own. */
	int (*snapshot_usage)(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			      const char *snap, struct lxm_storage_usage *ret,
			      struct lxm_error **err);
};

/* The driver called name, or NULL. */
const struct lxm_storage_ops *lxm_storage_driver(const char *name);
/* The names of all drivers, NULL-terminated, in the order "lxm storage create --help" lists. */
const char *const *lxm_storage_driver_names(void);
/* Whether this host can run driver name (btrfs: the kernel has btrfs and mkfs.btrfs exists;
 * overlay: the kernel has overlayfs). */
bool lxm_storage_driver_available(const char *name);

/* Opens pool name of driver with config (a reference is taken) under root_dir
 * (ROOT/storage-pools): no I/O. -EINVAL for an unknown driver. Free with lxm_pool_free(). */
int lxm_pool_new(const char *root_dir, const char *name, const char *driver, json_t *config,
		 struct lxm_pool **ret, struct lxm_error **err);
void lxm_pool_free(struct lxm_pool *p);

/* Removes what work that an earlier lxmd did not finish left in the pool (staging entries
 * beside volumes and snapshots). *ret_removed gets their paths (NULL-terminated, may be NULL).
 * Returns how many. */
int lxm_pool_sweep(struct lxm_pool *p, char ***ret_removed, struct lxm_error **err);

/* Paths inside a pool (see the layout above). snap may be NULL for the volume itself. */
int lxm_pool_volume_path(const struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 const char *snap, char **ret);
/* The directory holding all snapshots of a volume. */
int lxm_pool_snapshots_dir(const struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			   char **ret);

/* Front-end calls: each checks the slot (-EOPNOTSUPP with "pool 'p': DRIVER pools cannot ..."
 * when NULL), calls it and prefixes the pool's name to an error. */
int lxm_pool_validate(const struct lxm_storage_ops *ops, json_t *config, struct lxm_error **err);
int lxm_pool_create(struct lxm_pool *p, struct lxm_error **err);
int lxm_pool_mount(struct lxm_pool *p, struct lxm_error **err);
int lxm_pool_unmount(struct lxm_pool *p, struct lxm_error **err);
int lxm_pool_delete(struct lxm_pool *p, struct lxm_error **err);
int lxm_pool_usage(struct lxm_pool *p, struct lxm_storage_usage *ret, struct lxm_error **err);
int lxm_pool_image_create(struct lxm_pool *p, const char *fp, const char *src,
			  struct lxm_error **err);
int lxm_volume_create_from_image(struct lxm_pool *p, const char *fp, enum lxm_volume_type t,
				 const char *name, struct lxm_error **err);
int lxm_volume_create(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		      struct lxm_error **err);
int lxm_volume_copy(struct lxm_pool *p, enum lxm_volume_type t, const char *dst,
		    struct lxm_pool *src_pool, const char *src, const char *src_snap,
		    struct lxm_error **err);
int lxm_volume_delete(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		      struct lxm_error **err);
int lxm_volume_rename(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		      const char *new_name, struct lxm_error **err);
int lxm_volume_mount(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		     struct lxm_error **err);
int lxm_volume_unmount(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       struct lxm_error **err);
int lxm_volume_usage(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		     struct lxm_storage_usage *ret, struct lxm_error **err);
int lxm_volume_set_quota(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 uint64_t bytes, struct lxm_error **err);
int lxm_snapshot_create(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			const char *snap, struct lxm_error **err);
int lxm_snapshot_delete(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			const char *snap, struct lxm_error **err);
int lxm_snapshot_rename(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			const char *snap, const char *new_snap, struct lxm_error **err);
int lxm_snapshot_restore(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 const char *snap, struct lxm_error **err);
int lxm_snapshot_mount(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       const char *snap, struct lxm_error **err);
int lxm_snapshot_unmount(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 const char *snap, struct lxm_error **err);
int lxm_snapshot_usage(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       const char *snap, struct lxm_storage_usage *ret, struct lxm_error **err);

/* The root disk of a virtual machine's volume (snap NULL) or snapshot: 1 with *ret_path (may be
 * NULL) the raw disk, 2 with the qcow2 overlay, 0 for a container's volume, or -errno. */
int lxm_volume_vm_disk(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
		       const char *snap, char **ret_path);
/* Writes the disk (raw or qcow2, with its backing file) as a sparse raw file raw (created; it
 * must not exist), with qemu-img convert. */
int lxm_vm_disk_flatten(const char *disk, const char *raw, struct lxm_error **err);
