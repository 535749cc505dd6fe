/* The id maps of unprivileged containers: see idmap.h. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "idmap.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "util.h"

#define KEY_BASE    "volatile.idmap.base"
#define KEY_NEXT    "volatile.idmap.next"
#define KEY_CURRENT "volatile.idmap.current"

/* An interval of ids. */
struct ids {
	uint64_t first; /* first id */
	uint64_t count; /* ids */
};

static int ids_cmp(const void *a, const void *b)
{
	const struct ids *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

static int line_cmp(const void *a, const void *b)
{
	const struct lxm_idmap *x = a, *y = b;

	return x->nsid < y->nsid ? -1 : x->nsid > y->nsid;
}

static bool meet(uint64_t a, uint64_t an, uint64_t b, uint64_t bn)
{
	return a < b + bn && b < a + an;
}

/* One map (uid or gid) of ids 0..size-1 at host.., with the raw entries of that kind. */
static int build_one(bool uid, uint32_t host, uint32_t size, const struct lxm_raw_idmap *raw,
		     size_t n_raw, struct lxm_idmap **ret, size_t *ret_n, struct lxm_error **err)
{
	_cleanup_free_ struct ids *ex = calloc(2 * n_raw + 1, sizeof(*ex));
	_cleanup_free_ struct lxm_idmap *v = calloc(3 * n_raw + 1, sizeof(*v));
	uint64_t cursor = 0;
	size_t nex = 0, n = 0;

	if (!ex || !v)
		return lxm_error_set(err, -ENOMEM, 500, "id map: out of memory");
	/* Out of the range: the container ids a raw entry maps, and those whose host ids it
	   takes (a host id can be mapped once). */
	for (size_t i = 0; i < n_raw; i++) {
		const struct lxm_raw_idmap *e = &raw[i];

		if (!(uid ? e->uid : e->gid))
			continue;
		ex[nex++] = (struct ids){ e->ns, e->count };
		if (meet(e->host, e->count, host, size)) {
			uint64_t a = e->host > host ? e->host : host;
			uint64_t z = (uint64_t)e->host + e->count < (uint64_t)host + size
					     ? (uint64_t)e->host + e->count
					     : (uint64_t)host + size;

			ex[nex++] = (struct ids){ a - host, z - a };
		}
	}
	qsort(ex, nex, sizeof(*ex), ids_cmp);
	for (size_t i = 0; i <= nex && cursor < size; i++) {
		uint64_t end = i < nex ? ex[i].first : size;

		if (end > size)
			end = size;
		if (end > cursor)
			v[n++] = (struct lxm_idmap){ (uint32_t)cursor, (uint32_t)(host + cursor),
						     (uint32_t)(end - cursor) };
		if (i < nex && ex[i].first + ex[i].count > cursor)
			cursor = ex[i].first + ex[i].count;
	}
	for (size_t i = 0; i < n_raw; i++)
		if (uid ? raw[i].uid : raw[i].gid)
			v[n++] = (struct lxm_idmap){ raw[i].ns, raw[i].host, raw[i].count };
	if (n > LXMD_IDMAP_LINES_MAX)
		return lxm_error_set(err, -E2BIG, 400,
				     "raw.idmap: the %s map would have %zu lines, more than the "
				     "kernel's %d",
				     uid ? "uid" : "gid", n, LXMD_IDMAP_LINES_MAX);
	qsort(v, n, sizeof(*v), line_cmp);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

int lxmd_idmap_build(uint32_t uid_host, uint32_t gid_host, uint32_t size,
		     const struct lxm_raw_idmap *raw, size_t n_raw, struct lxm_idmap **ret_uid,
		     size_t *ret_nuid, struct lxm_idmap **ret_gid, size_t *ret_ngid,
		     struct lxm_error **err)
{
	int r = build_one(true, uid_host, size, raw, n_raw, ret_uid, ret_nuid, err);

	if (r < 0)
		return r;
	r = build_one(false, gid_host, size, raw, n_raw, ret_gid, ret_ngid, err);
	if (r < 0) {
		free(*ret_uid);
		*ret_uid = NULL;
	}
	return r;
}

static int add_lines(json_t *a, bool uid, const struct lxm_idmap *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, json_pack("{s:b, s:b, s:I, s:I, s:I}", "Isuid", uid,
						       "Isgid", !uid, "Hostid",
						       (json_int_t)v[i].hostid, "Nsid",
						       (json_int_t)v[i].nsid, "Maprange",
						       (json_int_t)v[i].count)) < 0)
			return -ENOMEM;
	return 0;
}

json_t *lxmd_idmap_json(const struct lxm_idmap *uid, size_t nuid, const struct lxm_idmap *gid,
			size_t ngid)
{
	json_t *a = json_array();

	if (!a || add_lines(a, true, uid, nuid) < 0 || add_lines(a, false, gid, ngid) < 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* Whether size ids from b are in [lo, hi) and meet none of the n taken ranges. */
static bool free_at(uint64_t lo, uint64_t hi, const struct ids *taken, size_t n, uint32_t size,
		    uint64_t b)
{
	if (b < lo || b + size > hi)
		return false;
	for (size_t i = 0; i < n; i++)
		if (meet(b, size, taken[i].first, taken[i].count))
			return false;
	return true;
}

int lxmd_idmap_allocate(const struct lxmd_subids *ids, const struct lxmd_idmap_used *used,
			size_t n_used, int64_t explicit, int64_t recorded, uint32_t size,
			const char *name, uint32_t *ret, struct lxm_error **err)
{
	/* Isolated ranges use the same host ids for users and groups: where both of root's
	   subordinate ranges have them, beyond the shared range of either. */
	uint64_t lo = ids->uid_base > ids->gid_base ? ids->uid_base : ids->gid_base;
	uint64_t uend = (uint64_t)ids->uid_base + ids->uid_count;
	uint64_t gend = (uint64_t)ids->gid_base + ids->gid_count;
	uint64_t hi = uend < gend ? uend : gend;
	_cleanup_free_ struct ids *taken = calloc(n_used + 2, sizeof(*taken));
	size_t n = 0;

	if (!taken)
		return lxm_error_set(err, -ENOMEM, 500, "instance '%s': id map: out of memory",
				     name);
	taken[n++] = (struct ids){ ids->uid_base, LXMD_IDMAP_SHARED_SIZE };
	taken[n++] = (struct ids){ ids->gid_base, LXMD_IDMAP_SHARED_SIZE };
	for (size_t i = 0; i < n_used; i++)
		taken[n++] = (struct ids){ used[i].first, used[i].count };

	if (explicit >= 0) {
		if ((uint64_t) explicit < lo || (uint64_t) explicit + size > hi)
			return lxm_error_set(err, -EINVAL, 400,
					     "instance '%s': config key 'security.idmap.base': "
					     "invalid value '%" PRId64 "': ids %" PRId64 "-%" PRIu64
					     " are not all in root's subordinate ids (%" PRIu64
					     "-%" PRIu64 " in /etc/subuid and /etc/subgid)",
					     name, explicit, explicit,
					     (uint64_t) explicit + size - 1, lo, hi - 1);
		if (!free_at(lo, hi, taken, n, size, explicit))
			return lxm_error_set(err, -EBUSY, 400,
					     "instance '%s': config key 'security.idmap.base': "
					     "invalid value '%" PRId64 "': ids %" PRId64 "-%" PRIu64
					     " overlap the shared range or another isolated "
					     "instance's",
					     name, explicit, explicit,
					     (uint64_t) explicit + size - 1);
		*ret = (uint32_t) explicit;
		return 0;
	}
	if (recorded >= 0 && free_at(lo, hi, taken, n, size, recorded)) {
		*ret = (uint32_t)recorded;
		return 0;
	}
	/* The lowest free range starts at lo or right after a taken one. */
	qsort(taken, n, sizeof(*taken), ids_cmp);
	if (free_at(lo, hi, taken, n, size, lo)) {
		*ret = (uint32_t)lo;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (free_at(lo, hi, taken, n, size, taken[i].first + taken[i].count)) {
			*ret = (uint32_t)(taken[i].first + taken[i].count);
			return 0;
		}
	return lxm_error_set(err, -ENOSPC, 409,
			     "instance '%s': no free range of %u ids left in root's subordinate "
			     "ids (%" PRIu64 "-%" PRIu64 ") for security.idmap.isolated: make "
			     "the range in /etc/subuid and /etc/subgid larger",
			     name, size, lo, hi - 1);
}

/* An integer in a string config value, or -1. */
static int64_t cfg_id(const json_t *config, const char *key)
{
	const char *v = json_string_value(json_object_get(config, key));
	char *end;
	long long x;

	if (!v || !*v)
		return -1;
	errno = 0;
	x = strtoll(v, &end, 10);
	return errno || *end || x < 0 || x > UINT32_MAX ? -1 : x;
}

/* The isolated ranges of the instances other than me, from their recorded bases. A copy of an
 * instance comes with its volatile keys: where another instance records a range that meets
 * mine (size ids from mine, -1 for none) and was created after me, it is the copy, which gets a
 * range of its own at its start, so it takes nothing from me. */
static int used_ranges(struct lxmd *d, const struct lxm_db_instance *me, int64_t mine,
		       uint32_t size, struct lxmd_idmap_used **ret, size_t *ret_n,
		       struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	_cleanup_free_ struct lxmd_idmap_used *v = NULL;
	size_t n = 0;
	int k;

	k = lxm_db_instance_names(d->db, &names, err);
	if (k < 0)
		return k;
	v = calloc((size_t)k + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (char **p = names; *p; p++) {
		_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
		_cleanup_json_ json_t *config = NULL, *devices = NULL;
		int64_t base, other;

		if (streq(*p, me->name))
			continue;
		if ((k = lxm_db_instance_get(d->db, *p, &inst, err)) < 0 ||
		    (k = lxmd_instance_expand(d, inst, &config, &devices, err)) < 0)
			return k;
		base = cfg_id(inst->config, KEY_BASE);
		if (base < 0 ||
		    !streq(json_string_value(json_object_get(config, "security.idmap.isolated"))
				   ?: "",
			   "true"))
			continue;
		other = cfg_id(config, "security.idmap.size");
		if (other <= 0)
			other = LXMD_IDMAP_SHARED_SIZE;
		if (mine >= 0 && meet((uint64_t)base, (uint64_t)other, (uint64_t)mine, size) &&
		    inst->created_at > me->created_at)
			continue;
		v[n++] = (struct lxmd_idmap_used){ (uint64_t)base, (uint64_t)other };
	}
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* The map pol gives, as volatile.idmap.* JSON, with the isolated range at base. */
static json_t *map_json(const struct lxmd_subids *ids, const struct lxm_policy *pol, uint32_t base,
			struct lxm_idmap **ret_uid, size_t *ret_nuid, struct lxm_idmap **ret_gid,
			size_t *ret_ngid, struct lxm_error **err)
{
	_cleanup_free_ struct lxm_idmap *uid = NULL, *gid = NULL;
	size_t nuid = 0, ngid = 0;
	json_t *j;

	if (pol->privileged)
		return json_array();
	if (lxmd_idmap_build(pol->idmap_isolated ? base : ids->uid_base,
			     pol->idmap_isolated ? base : ids->gid_base,
			     pol->idmap_isolated ? (uint32_t)pol->idmap_size
						 : LXMD_IDMAP_SHARED_SIZE,
			     pol->raw_idmap, pol->n_raw_idmap, &uid, &nuid, &gid, &ngid, err) < 0)
		return NULL;
	j = lxmd_idmap_json(uid, nuid, gid, ngid);
	if (!j) {
		lxm_error_set(err, -ENOMEM, 500, "id map: out of memory");
		return NULL;
	}
	if (ret_uid) {
		*ret_uid = TAKE_PTR(uid);
		*ret_nuid = nuid;
		*ret_gid = TAKE_PTR(gid);
		*ret_ngid = ngid;
	}
	return j;
}

/* Whether the recorded volatile.idmap.current differs from want (no record: never started). */
static bool map_changes(const json_t *config, const json_t *want)
{
	const char *cur = json_string_value(json_object_get(config, KEY_CURRENT));
	_cleanup_json_ json_t *was = cur && *cur ? json_loads(cur, 0, NULL) : NULL;

	if (!cur || !*cur)
		return false;
	return !was || !json_equal(was, want);
}

static int set_key(json_t *config, const char *key, const char *value)
{
	if (!value)
		return json_object_del(config, key), 0;
	return json_object_set_new(config, key, json_string(value)) < 0 ? -ENOMEM : 0;
}

int lxmd_idmap_for_start(struct lxmd *d, const struct lxmd_subids *ids,
			 struct lxm_db_instance *inst, const json_t *config,
			 const struct lxm_policy *pol, struct lxm_container_spec *spec,
			 struct lxm_error **err)
{
	_cleanup_free_ struct lxmd_idmap_used *used = NULL;
	_cleanup_free_ struct lxm_idmap *uid = NULL, *gid = NULL;
	_cleanup_json_ json_t *want = NULL;
	_cleanup_free_ char *text = NULL;
	size_t n_used = 0, nuid = 0, ngid = 0;
	uint32_t base = 0;
	char basebuf[16];
	int k;

	if (!inst->config && !(inst->config = json_object()))
		return -ENOMEM;
	if (!pol->privileged && pol->idmap_isolated) {
		k = used_ranges(d, inst, cfg_id(inst->config, KEY_BASE), (uint32_t)pol->idmap_size,
				&used, &n_used, err);
		if (k < 0)
			return lxm_error_prefix(err, "id map");
		k = lxmd_idmap_allocate(ids, used, n_used, pol->idmap_base,
					cfg_id(inst->config, KEY_BASE), (uint32_t)pol->idmap_size,
					inst->name, &base, err);
		if (k < 0)
			return k;
	}
	want = map_json(ids, pol, base, &uid, &nuid, &gid, &ngid, err);
	if (!want)
		return lxm_error_prefix(err, "instance '%s'", inst->name);
	if (pol->protect_shift && map_changes(config, want))
		return lxm_error_set(err, -EPERM, 400,
				     "instance '%s' has security.protection.shift: its id map may "
				     "not change from the one it last ran with (%s); put "
				     "security.idmap.*, raw.idmap and security.privileged back, or "
				     "unset security.protection.shift",
				     inst->name,
				     json_string_value(json_object_get(config, KEY_CURRENT)));
	text = json_dumps(want, JSON_COMPACT);
	snprintf(basebuf, sizeof(basebuf), "%u", base);
	if (!text || set_key(inst->config, KEY_NEXT, text) < 0 ||
	    set_key(inst->config, KEY_CURRENT, text) < 0 ||
	    set_key(inst->config, KEY_BASE, pol->idmap_isolated ? basebuf : NULL) < 0)
		return -ENOMEM;
	if (pol->privileged)
		return 0;
	free(spec->uidmap);
	free(spec->gidmap);
	spec->uidmap = TAKE_PTR(uid);
	spec->n_uidmap = nuid;
	spec->gidmap = TAKE_PTR(gid);
	spec->n_gidmap = ngid;
	if (pol->idmap_isolated)
		log_info("instance '%s': isolated id map: %u ids from host id %u", inst->name,
			 (unsigned)pol->idmap_size, base);
	return 0;
}

int lxmd_idmap_check_change(const struct lxmd_subids *ids, const char *name, const json_t *config,
			    const struct lxm_policy *pol, bool running, struct lxm_error **err)
{
	_cleanup_json_ json_t *want = NULL;
	int64_t base = pol->idmap_base >= 0 ? pol->idmap_base : cfg_id(config, KEY_BASE);
	bool changes;

	if (!running && !pol->protect_shift)
		return 0;
	/* An isolated map without a range yet gets one at its next start: a new map. */
	if (!pol->privileged && pol->idmap_isolated && base < 0) {
		changes = json_object_get(config, KEY_CURRENT) != NULL;
	} else {
		want = map_json(ids, pol, (uint32_t)(base < 0 ? 0 : base), NULL, NULL, NULL, NULL,
				err);
		if (!want)
			return lxm_error_prefix(err, "instance '%s'", name);
		changes = map_changes(config, want);
	}
	if (!changes)
		return 0;
	if (running)
		return lxm_error_set(
			err, -EBUSY, 400,
			"instance '%s' is running: changing its id map "
			"(security.idmap.*, raw.idmap, security.privileged) requires a "
			"restart; stop it, make the change, then start it",
			name);
	return lxm_error_set(err, -EPERM, 400,
			     "instance '%s' has security.protection.shift: its id map "
			     "(security.idmap.*, raw.idmap, security.privileged) may not change; "
			     "unset security.protection.shift first",
			     name);
}
