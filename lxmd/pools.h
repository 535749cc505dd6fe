/* The daemon's storage pools: every pool of the database opened (and mounted) at start-up, kept
 * in one table for the life of lxmd, and the create, update and delete flows the API runs on them.
 * The storage library (storage/storage.h) does the work; this file decides when, on which
 * thread, and keeps the database and the pools' files in step.
 *
 * Pools live at ROOT/storage-pools/<name>. A pool that fails to mount at start-up stays in the
 * table as unavailable, with the cause: everything asked of it fails with that cause. Stopping
 * lxmd unmounts nothing (running containers keep their root file systems). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct lxmd;
struct lxm_pool;
struct lxmd_pools;

/* Opens every pool of the database and mounts it (blocking: only at start-up, before the API
 * serves). A pool that fails to mount is logged with the cause and marked unavailable; that is
 * not an error of init. */
int lxmd_pools_init(struct lxmd *d, struct lxm_error **err);
/* Frees the table (pools stay mounted). Call once nothing uses pools any more. Accepts a daemon
 * without pools. */
void lxmd_pools_fini(struct lxmd *d);

/* Checks a pool name: letters, digits, '-', '_' and '.', not starting with '-' or '.', at most
 * 63 characters. Returns NULL when valid, else why not. */
const char *lxmd_pool_name_invalid_reason(const char *name);

/* The open pool name, ready for volumes. -ENOENT (404) for an unknown pool, -EBUSY (409) while
 * it is being created or deleted, -EIO (503) "storage pool 'p' is unavailable: <the mount
 * failure>" when it could not be mounted. The pointer stays valid until the pool is deleted, on
 * the loop thread: work on the thread pool holds the pool with lxmd_pool_hold() instead. */
int lxmd_pool_get(struct lxmd *d, const char *name, struct lxm_pool **ret, struct lxm_error **err);

/* lxmd_pool_get() for work on the thread pool: the pool cannot be deleted, and its config is
 * not replaced, until lxmd_pool_release() (on the loop thread) says the work is done. */
int lxmd_pool_hold(struct lxmd *d, const char *name, struct lxm_pool **ret, struct lxm_error **err);
void lxmd_pool_release(struct lxmd *d, struct lxm_pool *p);

/* LXD's status of a pool as the API shows it: "Created", "Unavailable" (then *ret_cause, when
 * non-NULL, is the mount failure), "Pending" while it is created or deleted; NULL when unknown. */
const char *lxmd_pool_status(struct lxmd *d, const char *name, const struct lxm_error **ret_cause);

/* Called on the loop thread when an asynchronous pool change ended: err is NULL on success, else
 * the failure, which the callback takes (frees or hands on). */
typedef void (*lxmd_pool_done_fn)(struct lxmd *d, void *userdata, struct lxm_error *err);

/* Creates pool name with driver, description and config (an object of strings; NULL: none):
 * checks the name, the driver (known and available on this host) and the config on the spot and
 * fails at once (400, 409 when the name is taken); else creates the pool on the thread pool,
 * records it in the database and calls done. Returns 0 when done will be called. */
int lxmd_pool_create(struct lxmd *d, const char *name, const char *driver, const char *description,
		     json_t *config, lxmd_pool_done_fn done, void *userdata,
		     struct lxm_error **err);

/* Replaces a pool's description and config (validated by its driver). Keys the driver applied
 * at creation and cannot change later (source, size, the btrfs mount options) must keep their
 * value (400 naming the key); left out, they keep it too. Synchronous: no I/O on the pool. 409
 * while the pool is held. */
int lxmd_pool_update(struct lxmd *d, const char *name, const char *description, json_t *config,
		     struct lxm_error **err);

/* Deletes pool name: refused (400 "The storage pool 'p' is currently in use") while anything
 * uses it, 409 while it is held; else unmounts and removes it on the thread pool, removes its
 * database row and calls done. Returns 0 when done will be called, 1 when the pool is gone already
 * and done will not be called (a pool that could not be opened: only its row is removed). */
int lxmd_pool_delete(struct lxmd *d, const char *name, lxmd_pool_done_fn done, void *userdata,
		     struct lxm_error **err);

/* The URLs of what uses pool name, sorted: profiles and instances whose root disk device (type
 * disk, path /) names it, and its volumes (instances', images' and custom volumes' URLs). */
int lxmd_pool_used_by(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err);

/* What GET /1.0/storage-pools/<name>/resources shows. */
struct lxmd_pool_usage {
	uint64_t space_used;   /* bytes in use */
	uint64_t space_total;  /* bytes in all */
	uint64_t inodes_used;  /* inodes in use on the pool's file system */
	uint64_t inodes_total; /* inodes in all */
};

/* Called on the loop thread with the usage (NULL on failure) or the failure, which the callback
 * takes. */
typedef void (*lxmd_pool_usage_fn)(struct lxmd *d, void *userdata, const struct lxmd_pool_usage *u,
				   struct lxm_error *err);

/* Measures pool name on the thread pool. Fails at once as lxmd_pool_get() does; returns 0 when
 * done will be called. The pool cannot be deleted meanwhile. */
int lxmd_pool_usage(struct lxmd *d, const char *name, lxmd_pool_usage_fn done, void *userdata,
		    struct lxm_error **err);

/* GET /1.0's environment.storage_supported_drivers: [{name, version, remote: false}] for each
 * driver this host can run (as found at start-up); a new reference. */
json_t *lxmd_pools_supported_drivers(struct lxmd *d);

/* GET /1.0's environment.storage: the drivers of the pools, sorted, joined with " | " as LXD
 * does ("" without pools, which tells lxc the server is not initialised). NULL when out of
 * memory. */
char *lxmd_pools_drivers_in_use(struct lxmd *d);
