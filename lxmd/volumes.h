/* Instance root volumes and their snapshots on storage pools: the one place where instance code
 * reaches the storage drivers (storage/storage.h).
 *
 * An instance's volume lives in the pool its root disk device names (type=disk, path=/, pool=P)
 * when it is created, and stays there (the database records it as a storage volume row).
 * ROOT/containers/<name> and ROOT/containers-snapshots/<name> are relative symlinks into that
 * pool, as in LXD, so everything that reads an instance's files (rootfs/, backup.yaml,
 * metadata.yaml, templates/) or a snapshot's finds them through lxmd_instance_path() and
 * lxmd_snapshot_path() whatever the driver.
 *
 * Functions marked "blocking" copy, mount or snapshot: call them on the thread pool, never on
 * the loop thread. They never log; errors name the instance, the step and the cause. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "error.h"

struct lxmd;
struct lxm_pool;

/* The pool that the root disk device among expanded devices names: 400 when there is no root
 * disk device or it names no pool, 404 when the pool does not exist, 503 when it is not
 * available (it failed to mount). No I/O. */
int lxmd_root_pool(struct lxmd *d, const json_t *xdevices, const char *instance,
		   struct lxm_pool **ret, struct lxm_error **err);

/* The root disk device (type=disk, path=/) among expanded devices, or NULL; *ret_name (when
 * non-NULL) gets its name. */
const json_t *lxmd_root_disk(const json_t *xdevices, const char **ret_name);

/* The pool holding instance's volume (from the database); *ret is NULL (and 0 is returned) for
 * an instance from before storage pools, whose files are a plain ROOT/containers/<name>. */
int lxmd_instance_volume_pool(struct lxmd *d, const char *instance, struct lxm_pool **ret,
			      struct lxm_error **err);
/* The same for what needs a pool: an instance from before storage pools is refused (400). */
int lxmd_instance_pool(struct lxmd *d, const char *instance, struct lxm_pool **ret,
		       struct lxm_error **err);

/* Blocking. Creates instance's volume in p: from image fp when fp is not NULL (the pool's image
 * volume is made from unpacked, the store's unpacked tree, the first time), else empty with an
 * empty rootfs/; then the links. A failure leaves no volume and no link. */
int lxmd_volume_create(struct lxmd *d, struct lxm_pool *p, const char *instance, const char *fp,
		       const char *unpacked, struct lxm_error **err);

/* Blocking. Creates instance's volume in p as a copy of src's volume (in src_pool), or of its
 * snapshot src_snap when that is not NULL; then the links. */
int lxmd_volume_copy(struct lxmd *d, struct lxm_pool *p, const char *instance,
		     struct lxm_pool *src_pool, const char *src, const char *src_snap,
		     struct lxm_error **err);

/* Blocking. Deletes instance's volume with its snapshots, and the links. A volume that is gone
 * already is fine (an interrupted create or delete). */
int lxmd_volume_delete(struct lxmd *d, struct lxm_pool *p, const char *instance,
		       struct lxm_error **err);

/* Blocking. Renames instance's volume (and its snapshots) and moves the links. */
int lxmd_volume_rename(struct lxmd *d, struct lxm_pool *p, const char *instance,
		       const char *new_name, struct lxm_error **err);

/* Blocking. Makes the volume's files visible (an overlay mount) and checks the links; at
 * start-up and before a start. */
int lxmd_volume_mount(struct lxmd *d, struct lxm_pool *p, const char *instance,
		      struct lxm_error **err);

/* Blocking. The bytes the volume uses, and its quota (0: none). */
int lxmd_volume_usage(struct lxm_pool *p, const char *instance, uint64_t *ret_used,
		      uint64_t *ret_quota, struct lxm_error **err);

/* Blocking. Snapshot snap of instance (the caller froze a running instance); *ret_size gets the
 * bytes it holds on its own (-1 when not known). */
int lxmd_volume_snapshot(struct lxm_pool *p, const char *instance, const char *snap,
			 int64_t *ret_size, struct lxm_error **err);
/* Blocking. The instance's files become the snapshot's (the instance is stopped). */
int lxmd_volume_restore(struct lxm_pool *p, const char *instance, const char *snap,
			struct lxm_error **err);
/* Blocking. */
int lxmd_volume_snapshot_delete(struct lxm_pool *p, const char *instance, const char *snap,
				struct lxm_error **err);
/* Blocking. */
int lxmd_volume_snapshot_rename(struct lxm_pool *p, const char *instance, const char *snap,
				const char *new_snap, struct lxm_error **err);
/* Blocking. Makes a snapshot's files readable at lxmd_snapshot_path() (publish, copy). */
int lxmd_volume_snapshot_mount(struct lxm_pool *p, const char *instance, const char *snap,
			       struct lxm_error **err);

/* Where the files of snapshot snap of instance are seen (through the link). */
int lxmd_snapshot_path(const struct lxmd *d, const char *instance, const char *snap, char **ret);
