/* The id maps of unprivileged containers: the range shared by every instance (the first 65536 ids
 * of root's subordinate ids), a range of its own for an instance with security.idmap.isolated,
 * and the host ids raw.idmap maps on top of either.
 *
 * The rootfs is mounted into the container through a mount idmapped with the container's own
 * user namespace (lxm-monitor), so its files keep the container's ids on disk whatever the map:
 * lxm never shifts (chowns) a rootfs, and a new map needs no more than a new start. A user
 * namespace's map cannot change once written, so a running instance keeps the map it started
 * with: lxmd refuses a config change that would give it another until it is stopped.
 *
 * lxmd records what it chose in the instance's volatile keys, as LXD does: volatile.idmap.base
 * (the first host id of an isolated range, which keeps the range across starts and lxmd
 * restarts), volatile.idmap.next (the map the next start uses) and volatile.idmap.current (the
 * map of the running or last run container), both as LXD's JSON list of
 * {"Isuid", "Isgid", "Hostid", "Nsid", "Maprange"}. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "container/spec.h"
#include "profiles/policy.h"

struct lxmd;
struct lxm_db_instance;

/* Ids of the shared range: LXD's default map size. */
#define LXMD_IDMAP_SHARED_SIZE 65536
/* The kernel takes at most this many lines in a uid_map or gid_map. */
#define LXMD_IDMAP_LINES_MAX 340

/* Root's subordinate ids (/etc/subuid, /etc/subgid). */
struct lxmd_subids {
	uint32_t uid_base;  /* first subordinate uid */
	uint32_t uid_count; /* how many */
	uint32_t gid_base;  /* first subordinate gid */
	uint32_t gid_count; /* how many */
};

/* A host id range in use by an isolated instance. */
struct lxmd_idmap_used {
	uint64_t first; /* first host id */
	uint64_t count; /* ids */
};

/* The uid and gid maps of ids 0..size-1 at uid_host.. and gid_host.., with the raw entries on
 * top: container ids a raw entry maps, and those whose host id a raw entry takes, leave the
 * range. -E2BIG (err set) beyond the kernel's LXMD_IDMAP_LINES_MAX lines. */
int lxmd_idmap_build(uint32_t uid_host, uint32_t gid_host, uint32_t size,
		     const struct lxm_raw_idmap *raw, size_t n_raw, struct lxm_idmap **ret_uid,
		     size_t *ret_nuid, struct lxm_idmap **ret_gid, size_t *ret_ngid,
		     struct lxm_error **err);

/* The maps as LXD's volatile.idmap.* JSON list. NULL when out of memory. */
json_t *lxmd_idmap_json(const struct lxm_idmap *uid, size_t nuid, const struct lxm_idmap *gid,
			size_t ngid);

/* Chooses the first host id of an isolated range of size ids for instance name: explicit
 * (security.idmap.base, -1 when unset) must be free and in root's subordinate ids, else it is
 * an error naming the key; otherwise recorded (volatile.idmap.base, -1 when none) when it is
 * still free, else the lowest free range above the shared one. used: the other isolated
 * instances' ranges. */
int lxmd_idmap_allocate(const struct lxmd_subids *ids, const struct lxmd_idmap_used *used,
			size_t n_used, int64_t explicit, int64_t recorded, uint32_t size,
			const char *name, uint32_t *ret, struct lxm_error **err);

/* At start: the maps of instance inst (expanded config, its compiled policy pol) into spec
 * (whose maps it replaces), and its volatile.idmap.* keys recorded in inst->config for the
 * caller to save. Refused with a 400 when security.protection.shift is set and the map would
 * differ from the one it last ran with. */
int lxmd_idmap_for_start(struct lxmd *d, const struct lxmd_subids *ids,
			 struct lxm_db_instance *inst, const json_t *config,
			 const struct lxm_policy *pol, struct lxm_container_spec *spec,
			 struct lxm_error **err);

/* A config change for instance name (new expanded config, compiled into pol): refused with a
 * 400 that says why when it changes the id map of a running instance ("requires a restart"),
 * or of an instance with security.protection.shift. */
int lxmd_idmap_check_change(const struct lxmd_subids *ids, const char *name, const json_t *config,
			    const struct lxm_policy *pol, bool running, struct lxm_error **err);
