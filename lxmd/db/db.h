/* The state database: one sqlite3 file (WAL) holding instances, profiles, images, storage, networks
 * and server config, with a schema that numbered, compiled-in migrations bring up to date on open.
 *
 * Every fallible function returns 0 (or a count) on success and a negative errno on failure, and
 * then fills *err (when err is non-NULL) with a message naming the object, the step and the cause,
 * plus the HTTP status the API answers with. Out-parameters are set only on success.
 *
 * A handle is not thread-safe: lxmd uses it from the loop thread only. Write functions run in one
 * transaction each; inside lxm_db_begin() ... lxm_db_commit() they join the caller's transaction
 * (as a savepoint), so a caller can group several of them atomically. */
#pragma once

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"

struct lxm_db;

/* The newest schema version this binary knows. */
extern const int lxm_db_schema_latest;

/* Opens (creating it when missing) the database at path and migrates it to lxm_db_schema_latest.
 * Before migrating a database that already has a schema, a copy is taken with sqlite's online
 * backup API to "<path>.bak-v<old version>". A database newer than this binary is refused. */
int lxm_db_open(const char *path, struct lxm_db **ret, struct lxm_error **err);

/* Like lxm_db_open() but migrates only up to version (0 ... lxm_db_schema_latest), for tests that
 * need a database as an older lxmd left it. A database already past version is refused. */
int lxm_db_open_at_version(const char *path, int version, struct lxm_db **ret,
			   struct lxm_error **err);

/* Closes the handle; an open transaction is rolled back. Accepts NULL. */
void lxm_db_close(struct lxm_db *db);

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db *, lxm_db_close)
#define _cleanup_db_ _cleanup_(lxm_db_closep)

/* The schema version the database is at (after the migrations run by open). */
int lxm_db_schema_version(struct lxm_db *db);

/* The underlying connection, for queries that have no helper here (and for tests). */
sqlite3 *lxm_db_handle(struct lxm_db *db);

/* Starts a write transaction (BEGIN IMMEDIATE, so the write lock is taken up front and a commit
 * never fails on lock upgrade). Transactions do not nest: -EBUSY when one is already open. */
int lxm_db_begin(struct lxm_db *db, struct lxm_error **err);

/* Commits the transaction opened by lxm_db_begin(). When the commit fails the transaction is
 * rolled back, so the caller never has to clean up after a failed commit. */
int lxm_db_commit(struct lxm_db *db, struct lxm_error **err);

/* Rolls back the open transaction; does nothing (and returns 0) when none is open, so error paths
 * may call it unconditionally. */
int lxm_db_rollback(struct lxm_db *db, struct lxm_error **err);

/* ---- profiles ---- */

struct lxm_db_profile {
	char *name;	   /* unique profile name */
	char *description; /* free text; NULL reads as "" on write */
	json_t *config;	   /* object: key → string value; NULL means none */
	json_t *devices;   /* object: device name → object of key → string; NULL means none */
};

/* Frees the profile and everything it owns. Accepts NULL. */
void lxm_db_profile_free(struct lxm_db_profile *p);

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_profile *, lxm_db_profile_free)
#define _cleanup_db_profile_ _cleanup_(lxm_db_profile_freep)

/* All profile names, sorted, as a NULL-terminated array (free with lxm_strv_free()); returns the
 * count. */
int lxm_db_profile_names(struct lxm_db *db, char ***ret, struct lxm_error **err);

/* Reads one profile; config and devices are always objects in the result. -ENOENT (404) when the
 * profile does not exist. */
int lxm_db_profile_get(struct lxm_db *db, const char *name, struct lxm_db_profile **ret,
		       struct lxm_error **err);

/* Creates profile p. -EEXIST (409) when the name is taken; -EINVAL (400) when a config or device
 * value is not a string. */
int lxm_db_profile_create(struct lxm_db *db, const struct lxm_db_profile *p,
			  struct lxm_error **err);

/* Replaces the description, config and devices of profile name with those of p (p->name is not
 * used: see lxm_db_profile_rename()). -ENOENT (404) when the profile does not exist. */
int lxm_db_profile_update(struct lxm_db *db, const char *name, const struct lxm_db_profile *p,
			  struct lxm_error **err);

/* Renames a profile; the instances using it follow. -EPERM (403) for "default", -ENOENT (404) when
 * old_name does not exist, -EEXIST (409) when new_name is taken. */
int lxm_db_profile_rename(struct lxm_db *db, const char *old_name, const char *new_name,
			  struct lxm_error **err);

/* Deletes a profile. -EPERM (403) for "default", -ENOENT (404) when it does not exist, -EBUSY (409)
 * with the names of the instances when instances use it. */
int lxm_db_profile_delete(struct lxm_db *db, const char *name, struct lxm_error **err);

/* The names of the instances that use profile name, sorted; returns their count. -ENOENT (404)
 * when the profile does not exist. */
int lxm_db_profile_used_by(struct lxm_db *db, const char *name, char ***ret_instance_names,
			   struct lxm_error **err);

/* ---- instances ---- */

struct lxm_db_instance {
	int64_t id;	      /* row id; filled by lxm_db_instance_get(), ignored on write */
	char *name;	      /* unique instance name */
	char *type;	      /* "container" or "virtual-machine" (the schema refuses others) */
	char *architecture;   /* kernel architecture name, e.g. "x86_64"; NULL reads as "" */
	bool ephemeral;	      /* deleted when stopped */
	bool stateful;	      /* the last stop saved its running state */
	char *description;    /* free text; NULL reads as "" */
	int64_t created_at;   /* unix nanoseconds; 0 on create means "now" */
	int64_t last_used_at; /* unix nanoseconds of the last start; 0 when never started */
	json_t *config;	  /* object: key → string value (local config only); NULL means none */
	json_t *devices;  /* object: device name → object of key → string; NULL means none */
	json_t *profiles; /* array of profile names in apply order; NULL means none */
};

/* Frees the instance and everything it owns. Accepts NULL. */
void lxm_db_instance_free(struct lxm_db_instance *inst);

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_instance *, lxm_db_instance_free)
#define _cleanup_db_instance_ _cleanup_(lxm_db_instance_freep)

/* All instance names, sorted, as a NULL-terminated array (free with lxm_strv_free()); returns the
 * count. */
int lxm_db_instance_names(struct lxm_db *db, char ***ret, struct lxm_error **err);

/* Reads one instance; config, devices and profiles are always set in the result. -ENOENT (404)
 * when the instance does not exist. */
int lxm_db_instance_get(struct lxm_db *db, const char *name, struct lxm_db_instance **ret,
			struct lxm_error **err);

/* Creates inst with its config, devices and profiles, all or nothing, and stores the new row id
 * in *ret_id (when non-NULL). -EEXIST (409) when the name is taken, -ENOENT (404) when a listed
 * profile does not exist, -EINVAL (400) when a value is not a string, a profile is listed twice
 * or the type is not one the schema knows. */
int lxm_db_instance_create(struct lxm_db *db, const struct lxm_db_instance *inst, int64_t *ret_id,
			   struct lxm_error **err);

/* Replaces architecture, description, ephemeral, last_used_at, config, devices and profiles of
 * instance name with those of inst; name, type, stateful and created_at are kept. Errors as for
 * create, and -ENOENT (404) when the instance does not exist. */
int lxm_db_instance_update(struct lxm_db *db, const char *name, const struct lxm_db_instance *inst,
			   struct lxm_error **err);

/* Renames an instance; its snapshots, config and devices follow. -ENOENT (404) when old_name does
 * not exist, -EEXIST (409) when new_name is taken. */
int lxm_db_instance_rename(struct lxm_db *db, const char *old_name, const char *new_name,
			   struct lxm_error **err);

/* Deletes an instance with its config, devices, profile links and snapshots. -ENOENT (404) when
 * it does not exist. */
int lxm_db_instance_delete(struct lxm_db *db, const char *name, struct lxm_error **err);

/* The snapshot names of an instance in creation order; returns the count. -ENOENT (404) when the
 * instance does not exist. */
int lxm_db_instance_snapshot_names(struct lxm_db *db, const char *instance, char ***ret,
				   struct lxm_error **err);

/* ---- instance snapshots (db-snapshots.c) ---- */

struct lxm_db_snapshot {
	int64_t id;	    /* row id; filled by reads, ignored on write */
	char *instance;	    /* the instance's name */
	char *name;	    /* short name, unique per instance ("snap0") */
	bool stateful;	    /* the running state was saved too (never, without CRIU) */
	char *description;  /* free text; NULL reads as "" */
	int64_t created_at; /* unix nanoseconds; 0 on create means "now" */
	int64_t expires_at; /* unix nanoseconds; 0: never */
	int64_t size;	    /* bytes its files took when taken; -1: unknown */
	json_t *config;	    /* object: the instance's local config when taken; NULL means none */
	json_t *devices;    /* object: its local devices when taken; NULL means none */
	json_t *profiles;   /* array: its profiles in apply order when taken; NULL means none */
};

/* Frees the snapshot and everything it owns. Accepts NULL. */
void lxm_db_snapshot_free(struct lxm_db_snapshot *s);

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_snapshot *, lxm_db_snapshot_free)
#define _cleanup_db_snapshot_ _cleanup_(lxm_db_snapshot_freep)

/* Frees an array of n snapshots (from lxm_db_snapshot_list()). Accepts NULL. */
void lxm_db_snapshot_list_free(struct lxm_db_snapshot **list, size_t n);

/* Reads one snapshot of an instance; config, devices and profiles are always set in the result.
 * -ENOENT (404) "instance 'c1' not found" or "snapshot 'c1/s0' not found". */
int lxm_db_snapshot_get(struct lxm_db *db, const char *instance, const char *name,
			struct lxm_db_snapshot **ret, struct lxm_error **err);

/* Every snapshot of an instance in creation order (created_at, then row id): an array of n owned
 * pointers. -ENOENT (404) when the instance does not exist. */
int lxm_db_snapshot_list(struct lxm_db *db, const char *instance, struct lxm_db_snapshot ***ret,
			 size_t *ret_n, struct lxm_error **err);

/* Records snapshot s of instance s->instance with its config, devices and profiles, all or
 * nothing. -ENOENT (404) for a missing instance or profile, -EEXIST (409) "snapshot 'c1/s0'
 * already exists", -EINVAL (400) when a value is not a string or a profile is listed twice. */
int lxm_db_snapshot_create(struct lxm_db *db, const struct lxm_db_snapshot *s,
			   struct lxm_error **err);

/* Replaces what a user may edit: description and expires_at (of s, whose config is ignored).
 * -ENOENT (404) when the snapshot does not exist. */
int lxm_db_snapshot_update(struct lxm_db *db, const char *instance, const char *name,
			   const struct lxm_db_snapshot *s, struct lxm_error **err);

/* Renames a snapshot within its instance. -ENOENT (404) when it does not exist, -EEXIST (409)
 * when new_name is taken. */
int lxm_db_snapshot_rename(struct lxm_db *db, const char *instance, const char *old_name,
			   const char *new_name, struct lxm_error **err);

/* Deletes a snapshot with its config, devices and profile links. -ENOENT (404) when it does not
 * exist. */
int lxm_db_snapshot_delete(struct lxm_db *db, const char *instance, const char *name,
			   struct lxm_error **err);

/* ---- server config and other collections ---- */

/* The server config as an object of key → string value. */
int lxm_db_config_get_all(struct lxm_db *db, json_t **ret_object, struct lxm_error **err);

/* Sets server config key to value, or removes it when value is NULL (removing a key that is not
 * set is not an error). Values are stored as given, "" included: the API decides what ""
 * means. */
int lxm_db_config_set(struct lxm_db *db, const char *key, const char *value,
		      struct lxm_error **err);

/* Image fingerprints, storage pool names and network names, each sorted, as NULL-terminated
 * arrays (free with lxm_strv_free()); each returns the count. */
int lxm_db_image_fingerprints(struct lxm_db *db, char ***ret, struct lxm_error **err);
int lxm_db_storage_pool_names(struct lxm_db *db, char ***ret, struct lxm_error **err);
int lxm_db_network_names(struct lxm_db *db, char ***ret, struct lxm_error **err);

/* ---- images ---- */

/* Where an image was pulled from, to refresh it (LXD's update_source). */
struct lxm_db_image_source {
	char *server;	   /* "https://images.example.org" */
	char *protocol;	   /* "simplestreams" */
	char *alias;	   /* the alias (or fingerprint) asked for on the server */
	char *certificate; /* PEM trusted for the server, "" for the system's */
};

void lxm_db_image_source_free(struct lxm_db_image_source *src);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_image_source *, lxm_db_image_source_free)

struct lxm_db_image {
	char *fingerprint;    /* sha256 of the image file(s), 64 hex digits */
	char *filename;	      /* the file name it was imported as, shown and exported under */
	int64_t size;	      /* bytes of the image file(s) */
	bool public;	      /* served to untrusted clients and other hosts */
	bool auto_update;     /* refreshed from its source (remote images) */
	bool cached;	      /* fetched on demand from a remote, not imported by a user */
	char *architecture;   /* kernel name: "x86_64" */
	char *type;	      /* "container" or "virtual-machine" */
	int64_t created_at;   /* unix seconds: when it was built (metadata.yaml creation_date) */
	int64_t uploaded_at;  /* unix seconds: when it entered this store */
	int64_t expires_at;   /* unix seconds, 0: never */
	int64_t last_used_at; /* unix seconds an instance was last created from it, 0: never */
	json_t *properties;   /* object of strings (os, release, description, ...); never NULL */
	json_t *aliases;      /* array of {"name", "description"}, sorted by name; never NULL */
	struct lxm_db_image_source *source; /* where it was pulled from, or NULL */
};

void lxm_db_image_free(struct lxm_db_image *img);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_image *, lxm_db_image_free)

/* One image by its full fingerprint: 404 "image '<fp>' not found". */
int lxm_db_image_get(struct lxm_db *db, const char *fp, struct lxm_db_image **ret,
		     struct lxm_error **err);
/* The full fingerprint of the one image whose fingerprint starts with prefix: 404 when none,
 * 400 when several ("image prefix 'ab' is ambiguous: 2 images match"). */
int lxm_db_image_resolve_prefix(struct lxm_db *db, const char *prefix, char **ret_fp,
				struct lxm_error **err);
/* Every image, by fingerprint; ret is an array of n owned pointers. */
int lxm_db_image_list(struct lxm_db *db, struct lxm_db_image ***ret, size_t *ret_n,
		      struct lxm_error **err);
/* Records a new image with its properties (its aliases field is ignored): 409 when one with
 * that fingerprint exists. */
int lxm_db_image_create(struct lxm_db *db, const struct lxm_db_image *img, struct lxm_error **err);
/* Replaces what a user may edit: public, auto_update, expires_at, properties. 404 if unknown. */
int lxm_db_image_update(struct lxm_db *db, const struct lxm_db_image *img, struct lxm_error **err);
/* Records (or replaces) where image fp was pulled from. 404 if unknown. */
int lxm_db_image_source_set(struct lxm_db *db, const char *fp,
			    const struct lxm_db_image_source *src, struct lxm_error **err);
/* Sets the cached flag (an image fetched for an instance rather than by a user). 404 if unknown. */
int lxm_db_image_set_cached(struct lxm_db *db, const char *fp, bool cached, struct lxm_error **err);
/* Sets last_used_at. */
int lxm_db_image_touch(struct lxm_db *db, const char *fp, int64_t when, struct lxm_error **err);
/* Removes an image and its aliases. 404 if unknown. */
int lxm_db_image_delete(struct lxm_db *db, const char *fp, struct lxm_error **err);

struct lxm_db_image_alias {
	char *name;	   /* e.g. "debian/12" */
	char *description; /* free text */
	char *target;	   /* full fingerprint of the image */
	char *type;	   /* the target image's type: "container" or "virtual-machine" */
};

void lxm_db_image_alias_free(struct lxm_db_image_alias *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_image_alias *, lxm_db_image_alias_free)

/* 404 "image alias '<name>' not found". */
int lxm_db_image_alias_get(struct lxm_db *db, const char *name, struct lxm_db_image_alias **ret,
			   struct lxm_error **err);
/* Every alias, by name; ret is an array of n owned pointers. */
int lxm_db_image_alias_list(struct lxm_db *db, struct lxm_db_image_alias ***ret, size_t *ret_n,
			    struct lxm_error **err);
/* 409 when the alias exists, 404 when target is not an image. */
int lxm_db_image_alias_create(struct lxm_db *db, const char *name, const char *target,
			      const char *description, struct lxm_error **err);
/* Points an existing alias at target with description. 404 for an unknown alias or target. */
int lxm_db_image_alias_update(struct lxm_db *db, const char *name, const char *target,
			      const char *description, struct lxm_error **err);
/* 404 unknown, 409 when new_name exists. */
int lxm_db_image_alias_rename(struct lxm_db *db, const char *name, const char *new_name,
			      struct lxm_error **err);
/* 404 unknown. */
int lxm_db_image_alias_delete(struct lxm_db *db, const char *name, struct lxm_error **err);

/* ---- networks (db-networks.c) ---- */

struct lxm_db_network {
	char *name;	   /* unique network name (also its bridge's name) */
	char *type;	   /* "bridge" */
	char *description; /* free text; NULL reads as "" on write */
	json_t *config;	   /* object: key → string value; NULL means none */
};

void lxm_db_network_free(struct lxm_db_network *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_network *, lxm_db_network_free)
#define _cleanup_db_network_ _cleanup_(lxm_db_network_freep)

/* Reads one network; config is always an object in the result. -ENOENT (404) "network 'n' not
 * found". */
int lxm_db_network_get(struct lxm_db *db, const char *name, struct lxm_db_network **ret,
		       struct lxm_error **err);
/* Records network n with its config. -EEXIST (409) when the name is taken, -EINVAL (400) when a
 * config value is not a string. */
int lxm_db_network_create(struct lxm_db *db, const struct lxm_db_network *n,
			  struct lxm_error **err);
/* Replaces the description and config of network name. -ENOENT (404) when it does not exist. */
int lxm_db_network_update(struct lxm_db *db, const char *name, const char *description,
			  const json_t *config, struct lxm_error **err);
/* Renames a network. -ENOENT (404) when it does not exist, -EEXIST (409) when new_name is taken. */
int lxm_db_network_rename(struct lxm_db *db, const char *name, const char *new_name,
			  struct lxm_error **err);
/* Deletes a network row and its config. -ENOENT (404) when it does not exist. */
int lxm_db_network_delete(struct lxm_db *db, const char *name, struct lxm_error **err);
/* Who names network name in a nic device (type=nic, network=name): the profiles and the
 * instances (local devices), each sorted, as NULL-terminated arrays. Returns the total. */
int lxm_db_network_used_by(struct lxm_db *db, const char *name, char ***ret_profiles,
			   char ***ret_instances, struct lxm_error **err);
/* The forwards of network name as LXD's objects ({"listen_address", "description", "config",
 * "ports"}), sorted by listen address. -ENOENT (404) for an unknown network. */
int lxm_db_network_forwards(struct lxm_db *db, const char *name, json_t **ret,
			    struct lxm_error **err);
/* Records forward fw (such an object) of network name: create, -EEXIST (409) when its listen
 * address has one already; else replaces it, -ENOENT (404) when there is none. */
int lxm_db_network_forward_put(struct lxm_db *db, const char *name, const json_t *fw, bool create,
			       struct lxm_error **err);
/* Deletes the forward of listen address listen. -ENOENT (404) when there is none. A network's
 * forwards also go with the network. */
int lxm_db_network_forward_delete(struct lxm_db *db, const char *name, const char *listen,
				  struct lxm_error **err);

/* ---- storage pools and volumes (db-storage.c) ---- */

struct lxm_db_storage_pool {
	char *name;	   /* unique pool name */
	char *driver;	   /* "dir", "btrfs", "overlay" */
	char *description; /* free text; NULL reads as "" on write */
	json_t *config;	   /* object: key → string value; NULL means none */
};

void lxm_db_storage_pool_free(struct lxm_db_storage_pool *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_storage_pool *, lxm_db_storage_pool_free)
#define _cleanup_db_storage_pool_ _cleanup_(lxm_db_storage_pool_freep)

/* Reads one pool; config is always an object in the result. -ENOENT (404) "storage pool 'p'
 * not found". */
int lxm_db_storage_pool_get(struct lxm_db *db, const char *name, struct lxm_db_storage_pool **ret,
			    struct lxm_error **err);

/* Records pool p with its config. -EEXIST (409) when the name is taken, -EINVAL (400) when a
 * config value is not a string. */
int lxm_db_storage_pool_create(struct lxm_db *db, const struct lxm_db_storage_pool *p,
			       struct lxm_error **err);

/* Replaces the description and config of pool name with those of p (name and driver are kept).
 * -ENOENT (404) when the pool does not exist. */
int lxm_db_storage_pool_update(struct lxm_db *db, const char *name,
			       const struct lxm_db_storage_pool *p, struct lxm_error **err);

/* Deletes a pool row and its config. -ENOENT (404) when it does not exist, -EBUSY (409) while
 * volume rows name it (their files would be lost without a trace). */
int lxm_db_storage_pool_delete(struct lxm_db *db, const char *name, struct lxm_error **err);

/* Who names pool name in a root disk device (type=disk, path=/, pool=name): the profiles and
 * the instances (local devices), each sorted, as NULL-terminated arrays. Returns the total. */
int lxm_db_storage_pool_used_by(struct lxm_db *db, const char *name, char ***ret_profiles,
				char ***ret_instances, struct lxm_error **err);

struct lxm_db_storage_volume {
	char *pool;	    /* the pool's name */
	char *type;	    /* "container", "virtual-machine", "image" or "custom" */
	char *name;	    /* unique per pool and type (an instance name, a fingerprint, ...) */
	char *content_type; /* "filesystem" (NULL reads as that on write) */
	char *description;  /* free text; NULL reads as "" */
	int64_t created_at; /* unix nanoseconds; 0 on create means "now" */
	json_t *config;	    /* object: key → string value; NULL means none */
};

void lxm_db_storage_volume_free(struct lxm_db_storage_volume *v);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_storage_volume *, lxm_db_storage_volume_free)
#define _cleanup_db_storage_volume_ _cleanup_(lxm_db_storage_volume_freep)
/* Frees an array of n volumes (from lxm_db_storage_volume_list()). Accepts NULL. */
void lxm_db_storage_volume_list_free(struct lxm_db_storage_volume **list, size_t n);

/* Whether type is a volume type the database records. */
bool lxm_db_storage_volume_type_valid(const char *type);

/* Records volume v in pool v->pool. -ENOENT (404) for an unknown pool, -EEXIST (409) "storage
 * volume 'container/c1' already exists in pool 'p'", -EINVAL (400) for an unknown type or a
 * config value that is not a string. */
int lxm_db_storage_volume_create(struct lxm_db *db, const struct lxm_db_storage_volume *v,
				 struct lxm_error **err);

/* Reads one volume; config is always an object. -ENOENT (404) naming the pool or the volume. */
int lxm_db_storage_volume_get(struct lxm_db *db, const char *pool, const char *type,
			      const char *name, struct lxm_db_storage_volume **ret,
			      struct lxm_error **err);

/* The volumes of pool (of type only, when type is non-NULL), by type then name: an array of n
 * owned pointers. -ENOENT (404) for an unknown pool. */
int lxm_db_storage_volume_list(struct lxm_db *db, const char *pool, const char *type,
			       struct lxm_db_storage_volume ***ret, size_t *ret_n,
			       struct lxm_error **err);

/* Renames a volume within its pool and type. -ENOENT (404) when it does not exist, -EEXIST (409)
 * when new_name is taken. */
int lxm_db_storage_volume_rename(struct lxm_db *db, const char *pool, const char *type,
				 const char *name, const char *new_name, struct lxm_error **err);

/* The name of the pool holding the volume type/name (instance volumes are in one pool only).
 * -ENOENT (404) when no pool has it. */
int lxm_db_storage_volume_pool(struct lxm_db *db, const char *type, const char *name, char **ret,
			       struct lxm_error **err);

/* Deletes a volume row and its config. -ENOENT (404) when it does not exist. */
int lxm_db_storage_volume_delete(struct lxm_db *db, const char *pool, const char *type,
				 const char *name, struct lxm_error **err);

/* Replaces a volume's description and config. -ENOENT (404) when it does not exist. */
int lxm_db_storage_volume_update(struct lxm_db *db, const char *pool, const char *type,
				 const char *name, const char *description, json_t *config,
				 struct lxm_error **err);

/* The instances whose local devices name custom volume name of pool (type=disk, pool=pool,
 * source=name), sorted, NULL-terminated. Returns how many. */
int lxm_db_storage_volume_used_by(struct lxm_db *db, const char *pool, const char *name,
				  char ***ret, struct lxm_error **err);

/* A snapshot of a custom volume. */
struct lxm_db_volume_snapshot {
	char *name;	    /* unique per volume */
	char *description;  /* free text; NULL reads as "" */
	int64_t created_at; /* unix nanoseconds; 0 on create means "now" */
};

void lxm_db_volume_snapshot_free(struct lxm_db_volume_snapshot *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_volume_snapshot *, lxm_db_volume_snapshot_free)
#define _cleanup_db_volume_snapshot_ _cleanup_(lxm_db_volume_snapshot_freep)
void lxm_db_volume_snapshot_list_free(struct lxm_db_volume_snapshot **list, size_t n);

/* Records snapshot s of custom volume volume. -ENOENT (404) for an unknown pool or volume,
 * -EEXIST (409) when the name is taken. */
int lxm_db_volume_snapshot_create(struct lxm_db *db, const char *pool, const char *volume,
				  const struct lxm_db_volume_snapshot *s, struct lxm_error **err);
/* The snapshots of custom volume volume, oldest first. */
int lxm_db_volume_snapshot_list(struct lxm_db *db, const char *pool, const char *volume,
				struct lxm_db_volume_snapshot ***ret, size_t *ret_n,
				struct lxm_error **err);
/* One snapshot; -ENOENT (404) naming it. */
int lxm_db_volume_snapshot_get(struct lxm_db *db, const char *pool, const char *volume,
			       const char *name, struct lxm_db_volume_snapshot **ret,
			       struct lxm_error **err);
/* Deletes a snapshot row; -ENOENT (404) when it does not exist. */
int lxm_db_volume_snapshot_delete(struct lxm_db *db, const char *pool, const char *volume,
				  const char *name, struct lxm_error **err);

/* ---- trusted certificates (db-certificates.c) ---- */

struct lxm_db_certificate {
	char *fingerprint; /* sha256 of the DER, 64 hex digits */
	char *name;	   /* what the admin calls it */
	char *type;	   /* "client" */
	char *certificate; /* PEM */
	bool restricted;   /* limited to projects (always false: not supported) */
	bool read_only;	   /* only GET requests are allowed */
};

void lxm_db_certificate_free(struct lxm_db_certificate *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_db_certificate *, lxm_db_certificate_free)
#define _cleanup_db_certificate_ _cleanup_(lxm_db_certificate_freep)

/* The fingerprints of the trusted certificates, sorted; returns the count. */
int lxm_db_certificate_fingerprints(struct lxm_db *db, char ***ret, struct lxm_error **err);
/* One certificate by its fingerprint or a unique prefix of it: -ENOENT (404) when none matches,
 * -EINVAL (400) when several do. */
int lxm_db_certificate_get(struct lxm_db *db, const char *fp, struct lxm_db_certificate **ret,
			   struct lxm_error **err);
/* Adds c; -EEXIST (409) when its fingerprint is trusted already. */
int lxm_db_certificate_add(struct lxm_db *db, const struct lxm_db_certificate *c,
			   struct lxm_error **err);
/* Updates the name, restricted and read_only of certificate c->fingerprint; -ENOENT (404). */
int lxm_db_certificate_update(struct lxm_db *db, const struct lxm_db_certificate *c,
			      struct lxm_error **err);
/* Removes a certificate by its full fingerprint; -ENOENT (404). */
int lxm_db_certificate_delete(struct lxm_db *db, const char *fp, struct lxm_error **err);
