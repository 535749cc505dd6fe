/* Storage pools and their volumes: the rows that say which pools exist (with the driver and config
 * to open them) and which volumes each holds. Their files are the storage library's. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "db-internal.h"
#include "util.h"

static const struct db_map_table pool_config =
	DB_MAP_TABLE("storage_pools_config", "storage_pool_id");
static const struct db_map_table volume_config =
	DB_MAP_TABLE("storage_volumes_config", "storage_volume_id");

/* LXD's volume type names; "virtual-machine" is recorded for the VM backend to come. */
static const char *const volume_types[] = { "container", "virtual-machine", "image", "custom" };

void lxm_db_storage_pool_free(struct lxm_db_storage_pool *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->driver);
	free(p->description);
	json_decref(p->config);
	free(p);
}

void lxm_db_storage_volume_free(struct lxm_db_storage_volume *v)
{
	if (!v)
		return;
	free(v->pool);
	free(v->type);
	free(v->name);
	free(v->content_type);
	free(v->description);
	json_decref(v->config);
	free(v);
}

void lxm_db_storage_volume_list_free(struct lxm_db_storage_volume **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		lxm_db_storage_volume_free(list[i]);
	free(list);
}

bool lxm_db_storage_volume_type_valid(const char *type)
{
	for (size_t i = 0; type && i < ARRAY_SIZE(volume_types); i++)
		if (streq(type, volume_types[i]))
			return true;
	return false;
}

/* The pool's row id; -ENOENT (404) naming the pool when there is none. */
static int pool_id(struct lxm_db *db, const char *name, int64_t *ret, struct lxm_error **err)
{
	int r = db_query_int64(db, ret, err, "SELECT id FROM storage_pools WHERE name = ?", "t",
			       name);

	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404, "storage pool '%s' not found", name);
	return r;
}

static int pool_read(struct lxm_db *db, const char *name, struct lxm_db_storage_pool **ret,
		     struct lxm_error **err)
{
	_cleanup_db_storage_pool_ struct lxm_db_storage_pool *p = NULL;
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int64_t id;
	int r, rc;

	r = db_prepare(db, "SELECT id, driver, description FROM storage_pools WHERE name = ?",
		       &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "t", name);
	if (r < 0)
		return r;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return lxm_error_set(err, -ENOENT, 404, "storage pool '%s' not found", name);
	if (rc != SQLITE_ROW)
		return db_sqlite_error(db, rc, err);
	p = calloc(1, sizeof(*p));
	if (!p || !(p->name = strdup(name)) || !(p->driver = db_column_strdup(stmt, 1)) ||
	    !(p->description = db_column_strdup(stmt, 2)))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	id = sqlite3_column_int64(stmt, 0);
	r = db_map_table_read(db, &pool_config, id, &p->config, err);
	if (r < 0)
		return db_error_prefix(err, r, "read config");
	*ret = TAKE_PTR(p);
	return 0;
}

int lxm_db_storage_pool_get(struct lxm_db *db, const char *name, struct lxm_db_storage_pool **ret,
			    struct lxm_error **err)
{
	_cleanup_db_storage_pool_ struct lxm_db_storage_pool *p = NULL;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "get storage pool '%s'", name);
	if (r < 0)
		return r;
	r = pool_read(db, name, &p, err);
	if (r < 0 && r != -ENOENT)
		db_error_prefix(err, r, "get storage pool '%s'", name);
	r = db_tx_end(db, owned, r, err, "get storage pool '%s'", name);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(p);
	return 0;
}

static int pool_create_tx(struct lxm_db *db, const struct lxm_db_storage_pool *p,
			  struct lxm_error **err)
{
	int64_t id;
	int r;

	r = db_query_int64(db, &id, err, "SELECT id FROM storage_pools WHERE name = ?", "t",
			   p->name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "storage pool '%s' already exists",
				     p->name);
	if (r != -ENOENT)
		return r;
	r = db_exec(db, err,
		    "INSERT INTO storage_pools (name, driver, description) VALUES (?, ?, ?)", "ttt",
		    p->name, p->driver, p->description ? p->description : "");
	if (r < 0)
		return r;
	r = db_insert_map(db, pool_config.insert_sql, sqlite3_last_insert_rowid(db->handle),
			  p->config, err);
	return r < 0 ? db_error_prefix(err, r, "insert config") : 0;
}

int lxm_db_storage_pool_create(struct lxm_db *db, const struct lxm_db_storage_pool *p,
			       struct lxm_error **err)
{
	bool owned;
	int r;

	if (!p->name || !p->driver)
		return lxm_error_set(err, -EINVAL, 400,
				     "create storage pool: missing name or driver");
	r = db_check_map(p->config, "config", err);
	if (r < 0)
		return db_error_prefix(err, r, "create storage pool '%s'", p->name);
	r = db_tx_begin(db, true, &owned, err, "create storage pool '%s'", p->name);
	if (r < 0)
		return r;
	r = pool_create_tx(db, p, err);
	if (r < 0 && r != -EEXIST)
		db_error_prefix(err, r, "create storage pool '%s'", p->name);
	return db_tx_end(db, owned, r, err, "create storage pool '%s'", p->name);
}

static int pool_update_tx(struct lxm_db *db, const char *name, const struct lxm_db_storage_pool *p,
			  struct lxm_error **err)
{
	int64_t id;
	int r;

	r = pool_id(db, name, &id, err);
	if (r < 0)
		return r;
	r = db_exec(db, err, "UPDATE storage_pools SET description = ? WHERE id = ?", "ti",
		    p->description ? p->description : "", id);
	if (r >= 0)
		r = db_map_table_replace(db, &pool_config, id, p->config, err);
	return r < 0 ? db_error_prefix(err, r, "update storage pool '%s'", name) : 0;
}

int lxm_db_storage_pool_update(struct lxm_db *db, const char *name,
			       const struct lxm_db_storage_pool *p, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_check_map(p->config, "config", err);
	if (r < 0)
		return db_error_prefix(err, r, "update storage pool '%s'", name);
	r = db_tx_begin(db, true, &owned, err, "update storage pool '%s'", name);
	if (r < 0)
		return r;
	r = pool_update_tx(db, name, p, err);
	return db_tx_end(db, owned, r, err, "update storage pool '%s'", name);
}

static int pool_delete_tx(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	int64_t id, n;
	int r;

	r = pool_id(db, name, &id, err);
	if (r < 0)
		return r;
	r = db_query_int64(db, &n, err,
			   "SELECT COUNT(*) FROM storage_volumes WHERE storage_pool_id = ?", "i",
			   id);
	if (r < 0)
		return db_error_prefix(err, r, "delete storage pool '%s': count volumes", name);
	if (n > 0)
		return lxm_error_set(err, -EBUSY, 409,
				     "delete storage pool '%s': it still holds %lld volumes", name,
				     (long long)n);
	r = db_exec(db, err, "DELETE FROM storage_pools WHERE id = ?", "i", id);
	return r < 0 ? db_error_prefix(err, r, "delete storage pool '%s'", name) : 0;
}

int lxm_db_storage_pool_delete(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "delete storage pool '%s'", name);
	if (r < 0)
		return r;
	r = pool_delete_tx(db, name, err);
	return db_tx_end(db, owned, r, err, "delete storage pool '%s'", name);
}

/* A device whose config has type=disk, path=/ and pool=? (the "?" is the pool's name). The same
 * test serves the profiles' and the instances' device tables. */
#define SQL_ROOT_DISK_ON_POOL(devtable, cfgtable, fk)                                              \
	"EXISTS (SELECT 1 FROM " cfgtable " c WHERE c." fk " = d.id AND c.key = 'type'\n"          \
	"		AND c.value = 'disk')\n"                                                                \
	"	AND EXISTS (SELECT 1 FROM " cfgtable " c WHERE c." fk " = d.id\n"                  \
	"		AND c.key = 'path' AND c.value = '/')\n"                                                \
	"	AND EXISTS (SELECT 1 FROM " cfgtable " c WHERE c." fk " = d.id\n"                  \
	"		AND c.key = 'pool' AND c.value = ?)"

int lxm_db_storage_pool_used_by(struct lxm_db *db, const char *name, char ***ret_profiles,
				char ***ret_instances, struct lxm_error **err)
{
	_cleanup_strv_ char **profiles = NULL, **instances = NULL;
	int np = 0, ni = 0;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list users of storage pool '%s'", name);
	if (r < 0)
		return r;
	np = r = db_query_strv(
		db, &profiles, err,
		"SELECT DISTINCT p.name FROM profiles p\n"
		"	JOIN profiles_devices d ON d.profile_id = p.id\n"
		"	WHERE " SQL_ROOT_DISK_ON_POOL("profiles_devices", "profiles_devices_config",
						      "profile_device_id") " ORDER BY p.name",
		"t", name);
	if (r >= 0)
		ni = r = db_query_strv(db, &instances, err,
				       "SELECT DISTINCT i.name FROM instances i\n"
				       "	JOIN instances_devices d ON d.instance_id = i.id\n"
				       "	WHERE " SQL_ROOT_DISK_ON_POOL(
					       "instances_devices", "instances_devices_config",
					       "instance_device_id") " ORDER BY i.name",
				       "t", name);
	if (r < 0)
		db_error_prefix(err, r, "list users of storage pool '%s'", name);
	r = db_tx_end(db, owned, r, err, "list users of storage pool '%s'", name);
	if (r < 0)
		return r;
	*ret_profiles = TAKE_PTR(profiles);
	*ret_instances = TAKE_PTR(instances);
	return np + ni;
}

/* ---- volumes ---- */

static int volume_id(struct lxm_db *db, int64_t pool, const char *pool_name, const char *type,
		     const char *name, int64_t *ret, struct lxm_error **err)
{
	int r = db_query_int64(db, ret, err,
			       "SELECT id FROM storage_volumes WHERE storage_pool_id = ? AND\n"
			       "	type = ? AND name = ?",
			       "itt", pool, type, name);

	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404,
				     "storage volume '%s/%s' not found in pool '%s'", type, name,
				     pool_name);
	return r;
}

static int check_type(const char *type, struct lxm_error **err)
{
	if (lxm_db_storage_volume_type_valid(type))
		return 0;
	return lxm_error_set(err, -EINVAL, 400,
			     "unknown storage volume type '%s' (container, virtual-machine, image "
			     "or custom)",
			     type ? type : "");
}

static int volume_create_tx(struct lxm_db *db, const struct lxm_db_storage_volume *v,
			    struct lxm_error **err)
{
	int64_t pool, id;
	int r;

	r = pool_id(db, v->pool, &pool, err);
	if (r < 0)
		return r;
	r = db_query_int64(db, &id, err,
			   "SELECT id FROM storage_volumes WHERE storage_pool_id = ? AND\n"
			   "	type = ? AND name = ?",
			   "itt", pool, v->type, v->name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409,
				     "storage volume '%s/%s' already exists in pool '%s'", v->type,
				     v->name, v->pool);
	if (r != -ENOENT)
		return r;
	r = db_exec(
		db, err,
		"INSERT INTO storage_volumes (storage_pool_id, name, type, content_type,\n"
		"	description, created_at) VALUES (?, ?, ?, ?, ?, ?)",
		"itttti", pool, v->name, v->type, v->content_type ? v->content_type : "filesystem",
		v->description ? v->description : "", v->created_at ? v->created_at : db_now_ns());
	if (r < 0)
		return r;
	r = db_insert_map(db, volume_config.insert_sql, sqlite3_last_insert_rowid(db->handle),
			  v->config, err);
	return r < 0 ? db_error_prefix(err, r, "insert config") : 0;
}

int lxm_db_storage_volume_create(struct lxm_db *db, const struct lxm_db_storage_volume *v,
				 struct lxm_error **err)
{
	bool owned;
	int r;

	if (!v->pool || !v->name)
		return lxm_error_set(err, -EINVAL, 400,
				     "create storage volume: missing pool or name");
	if ((r = check_type(v->type, err)) < 0 || (r = db_check_map(v->config, "config", err)) < 0)
		return db_error_prefix(err, r, "create storage volume '%s' in pool '%s'", v->name,
				       v->pool);
	r = db_tx_begin(db, true, &owned, err, "create storage volume '%s/%s'", v->type, v->name);
	if (r < 0)
		return r;
	r = volume_create_tx(db, v, err);
	if (r < 0 && r != -EEXIST && r != -ENOENT)
		db_error_prefix(err, r, "create storage volume '%s/%s' in pool '%s'", v->type,
				v->name, v->pool);
	return db_tx_end(db, owned, r, err, "create storage volume '%s/%s'", v->type, v->name);
}

/* Reads the volume of the current row of a SELECT of (id, type, name, content_type,
 * description, created_at). */
static int volume_from_row(struct lxm_db *db, sqlite3_stmt *stmt, const char *pool,
			   struct lxm_db_storage_volume **ret, struct lxm_error **err)
{
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *v = calloc(1, sizeof(*v));
	int r;

	if (!v || !(v->pool = strdup(pool)) || !(v->type = db_column_strdup(stmt, 1)) ||
	    !(v->name = db_column_strdup(stmt, 2)) ||
	    !(v->content_type = db_column_strdup(stmt, 3)) ||
	    !(v->description = db_column_strdup(stmt, 4)))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	v->created_at = sqlite3_column_int64(stmt, 5);
	r = db_map_table_read(db, &volume_config, sqlite3_column_int64(stmt, 0), &v->config, err);
	if (r < 0)
		return db_error_prefix(err, r, "read config of volume '%s/%s'", v->type, v->name);
	*ret = TAKE_PTR(v);
	return 0;
}

#define SQL_VOLUME_COLUMNS "id, type, name, content_type, description, created_at"

static int volume_list_tx(struct lxm_db *db, const char *pool, const char *type, const char *name,
			  struct lxm_db_storage_volume ***ret, size_t *ret_n,
			  struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	struct lxm_db_storage_volume **list = NULL;
	size_t n = 0;
	int64_t pid;
	int r, rc;

	r = pool_id(db, pool, &pid, err);
	if (r < 0)
		return r;
	r = db_prepare(db,
		       "SELECT " SQL_VOLUME_COLUMNS " FROM storage_volumes\n"
		       "	WHERE storage_pool_id = ? AND (?2 IS NULL OR type = ?2)\n"
		       "	AND (?3 IS NULL OR name = ?3) ORDER BY type, name",
		       &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "itt", pid, type, name);
	while (r >= 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct lxm_db_storage_volume **nl = realloc(list, (n + 1) * sizeof(*list));

		if (!nl) {
			r = lxm_error_set(err, -ENOMEM, 500, "out of memory");
			break;
		}
		list = nl;
		r = volume_from_row(db, stmt, pool, &list[n], err);
		if (r >= 0)
			n++;
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = db_sqlite_error(db, rc, err);
	if (r < 0) {
		lxm_db_storage_volume_list_free(list, n);
		return r;
	}
	*ret = list;
	*ret_n = n;
	return 0;
}

int lxm_db_storage_volume_list(struct lxm_db *db, const char *pool, const char *type,
			       struct lxm_db_storage_volume ***ret, size_t *ret_n,
			       struct lxm_error **err)
{
	struct lxm_db_storage_volume **list = NULL;
	size_t n = 0;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list volumes of storage pool '%s'", pool);
	if (r < 0)
		return r;
	r = volume_list_tx(db, pool, type, NULL, &list, &n, err);
	if (r < 0 && r != -ENOENT)
		db_error_prefix(err, r, "list volumes of storage pool '%s'", pool);
	r = db_tx_end(db, owned, r, err, "list volumes of storage pool '%s'", pool);
	if (r < 0) {
		lxm_db_storage_volume_list_free(list, n);
		return r;
	}
	*ret = list;
	*ret_n = n;
	return 0;
}

int lxm_db_storage_volume_get(struct lxm_db *db, const char *pool, const char *type,
			      const char *name, struct lxm_db_storage_volume **ret,
			      struct lxm_error **err)
{
	struct lxm_db_storage_volume **list = NULL;
	size_t n = 0;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "get storage volume '%s/%s'", type, name);
	if (r < 0)
		return r;
	r = volume_list_tx(db, pool, type, name, &list, &n, err);
	if (r < 0 && r != -ENOENT)
		db_error_prefix(err, r, "get storage volume '%s/%s'", type, name);
	if (r >= 0 && n == 0)
		r = lxm_error_set(err, -ENOENT, 404,
				  "storage volume '%s/%s' not found in pool '%s'", type, name,
				  pool);
	r = db_tx_end(db, owned, r, err, "get storage volume '%s/%s'", type, name);
	if (r < 0) {
		lxm_db_storage_volume_list_free(list, n);
		return r;
	}
	*ret = TAKE_PTR(list[0]);
	lxm_db_storage_volume_list_free(list, n);
	return 0;
}

static int volume_rename_tx(struct lxm_db *db, const char *pool, const char *type, const char *name,
			    const char *new_name, struct lxm_error **err)
{
	int64_t pid, id, other;
	int r;

	r = pool_id(db, pool, &pid, err);
	if (r >= 0)
		r = volume_id(db, pid, pool, type, name, &id, err);
	if (r < 0)
		return r;
	r = db_query_int64(db, &other, err,
			   "SELECT id FROM storage_volumes WHERE storage_pool_id = ? AND\n"
			   "	type = ? AND name = ?",
			   "itt", pid, type, new_name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409,
				     "storage volume '%s/%s' already exists in pool '%s'", type,
				     new_name, pool);
	if (r != -ENOENT)
		return r;
	r = db_exec(db, err, "UPDATE storage_volumes SET name = ? WHERE id = ?", "ti", new_name,
		    id);
	return r < 0 ? db_error_prefix(err, r, "rename storage volume '%s/%s' to '%s'", type, name,
				       new_name)
		     : 0;
}

int lxm_db_storage_volume_rename(struct lxm_db *db, const char *pool, const char *type,
				 const char *name, const char *new_name, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "rename storage volume '%s/%s'", type, name);
	if (r < 0)
		return r;
	r = volume_rename_tx(db, pool, type, name, new_name, err);
	return db_tx_end(db, owned, r, err, "rename storage volume '%s/%s'", type, name);
}

static int volume_delete_tx(struct lxm_db *db, const char *pool, const char *type, const char *name,
			    struct lxm_error **err)
{
	int64_t pid, id;
	int r;

	r = pool_id(db, pool, &pid, err);
	if (r >= 0)
		r = volume_id(db, pid, pool, type, name, &id, err);
	if (r < 0)
		return r;
	r = db_exec(db, err, "DELETE FROM storage_volumes WHERE id = ?", "i", id);
	return r < 0 ? db_error_prefix(err, r, "delete storage volume '%s/%s'", type, name) : 0;
}

int lxm_db_storage_volume_delete(struct lxm_db *db, const char *pool, const char *type,
				 const char *name, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "delete storage volume '%s/%s'", type, name);
	if (r < 0)
		return r;
	r = volume_delete_tx(db, pool, type, name, err);
	return db_tx_end(db, owned, r, err, "delete storage volume '%s/%s'", type, name);
}

int lxm_db_storage_volume_pool(struct lxm_db *db, const char *type, const char *name, char **ret,
			       struct lxm_error **err)
{
	_cleanup_strv_ char **pools = NULL;
	int r;

	r = db_query_strv(
		db, &pools, err,
		"SELECT storage_pools.name FROM storage_volumes\n"
		"	JOIN storage_pools ON storage_pools.id = storage_volumes.storage_pool_id\n"
		"	WHERE storage_volumes.type = ? AND storage_volumes.name = ?\n"
		"	ORDER BY storage_pools.name",
		"tt", type, name);
	if (r < 0)
		return db_error_prefix(err, r, "find the pool of storage volume '%s/%s'", type,
				       name);
	if (!pools || !pools[0])
		return lxm_error_set(err, -ENOENT, 404, "storage volume '%s/%s' not found", type,
				     name);
	*ret = strdup(pools[0]);
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* ---- custom volumes: edit, users, snapshots ---- */

static int volume_update_tx(struct lxm_db *db, const char *pool, const char *type, const char *name,
			    const char *description, json_t *config, struct lxm_error **err)
{
	int64_t pid, id;
	int r;

	r = pool_id(db, pool, &pid, err);
	if (r >= 0)
		r = volume_id(db, pid, pool, type, name, &id, err);
	if (r < 0)
		return r;
	r = db_exec(db, err, "UPDATE storage_volumes SET description = ? WHERE id = ?", "ti",
		    description ? description : "", id);
	if (r >= 0)
		r = db_map_table_replace(db, &volume_config, id, config, err);
	return r < 0 ? db_error_prefix(err, r, "update storage volume '%s/%s'", type, name) : 0;
}

int lxm_db_storage_volume_update(struct lxm_db *db, const char *pool, const char *type,
				 const char *name, const char *description, json_t *config,
				 struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_check_map(config, "config", err);
	if (r < 0)
		return db_error_prefix(err, r, "update storage volume '%s/%s'", type, name);
	r = db_tx_begin(db, true, &owned, err, "update storage volume '%s/%s'", type, name);
	if (r < 0)
		return r;
	r = volume_update_tx(db, pool, type, name, description, config, err);
	return db_tx_end(db, owned, r, err, "update storage volume '%s/%s'", type, name);
}

/* A local device of an instance with config key = value. */
#define SQL_DEVICE_HAS(key)                                                                        \
	"EXISTS (SELECT 1 FROM instances_devices_config c WHERE c.instance_device_id = d.id\n"     \
	"		AND c.key = '" key "' AND c.value = ?)\n"

int lxm_db_storage_volume_used_by(struct lxm_db *db, const char *pool, const char *name,
				  char ***ret, struct lxm_error **err)
{
	_cleanup_strv_ char **instances = NULL;
	int r;

	r = db_query_strv(
		db, &instances, err,
		"SELECT DISTINCT i.name FROM instances i\n"
		"	JOIN instances_devices d ON d.instance_id = i.id\n"
		"	WHERE " SQL_DEVICE_HAS("type") "	AND " SQL_DEVICE_HAS(
			"pool") "	AND " SQL_DEVICE_HAS("source") "	ORDER BY i.name",
		"ttt", "disk", pool, name);
	if (r < 0)
		return db_error_prefix(err, r, "list users of storage volume 'custom/%s'", name);
	*ret = TAKE_PTR(instances);
	return r;
}

void lxm_db_volume_snapshot_free(struct lxm_db_volume_snapshot *s)
{
	if (!s)
		return;
	free(s->name);
	free(s->description);
	free(s);
}

void lxm_db_volume_snapshot_list_free(struct lxm_db_volume_snapshot **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		lxm_db_volume_snapshot_free(list[i]);
	free(list);
}

/* The id of volume type/name in pool. */
static int volume_id_of(struct lxm_db *db, const char *pool, const char *type, const char *name,
			int64_t *ret, struct lxm_error **err)
{
	int64_t pid;
	int r = pool_id(db, pool, &pid, err);

	return r < 0 ? r : volume_id(db, pid, pool, type, name, ret, err);
}

static int snapshot_create_tx(struct lxm_db *db, const char *pool, const char *volume,
			      const struct lxm_db_volume_snapshot *s, struct lxm_error **err)
{
	int64_t vid, other;
	int r;

	r = volume_id_of(db, pool, "custom", volume, &vid, err);
	if (r < 0)
		return r;
	r = db_query_int64(db, &other, err,
			   "SELECT id FROM storage_volumes_snapshots WHERE storage_volume_id = ?\n"
			   "	AND name = ?",
			   "it", vid, s->name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409,
				     "snapshot '%s/%s' of storage volume already exists in pool "
				     "'%s'",
				     volume, s->name, pool);
	if (r != -ENOENT)
		return r;
	r = db_exec(db, err,
		    "INSERT INTO storage_volumes_snapshots (storage_volume_id, name, description,\n"
		    "	created_at) VALUES (?, ?, ?, ?)",
		    "itti", vid, s->name, s->description ? s->description : "",
		    s->created_at ? s->created_at : db_now_ns());
	return r < 0 ? db_error_prefix(err, r, "create snapshot '%s/%s'", volume, s->name) : 0;
}

int lxm_db_volume_snapshot_create(struct lxm_db *db, const char *pool, const char *volume,
				  const struct lxm_db_volume_snapshot *s, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "create snapshot '%s/%s'", volume, s->name);
	if (r < 0)
		return r;
	r = snapshot_create_tx(db, pool, volume, s, err);
	return db_tx_end(db, owned, r, err, "create snapshot '%s/%s'", volume, s->name);
}

static int snapshot_list_tx(struct lxm_db *db, const char *pool, const char *volume,
			    const char *name, struct lxm_db_volume_snapshot ***ret, size_t *ret_n,
			    struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	struct lxm_db_volume_snapshot **list = NULL;
	size_t n = 0;
	int64_t vid;
	int r, rc = SQLITE_DONE;

	r = volume_id_of(db, pool, "custom", volume, &vid, err);
	if (r < 0)
		return r;
	r = db_prepare(db,
		       "SELECT name, description, created_at FROM storage_volumes_snapshots\n"
		       "	WHERE storage_volume_id = ? AND (?2 IS NULL OR name = ?2)\n"
		       "	ORDER BY created_at, name",
		       &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "it", vid, name);
	while (r >= 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct lxm_db_volume_snapshot **nl = realloc(list, (n + 1) * sizeof(*list));
		struct lxm_db_volume_snapshot *s = calloc(1, sizeof(*s));

		if (nl)
			list = nl;
		if (!nl || !s || !(s->name = db_column_strdup(stmt, 0)) ||
		    !(s->description = db_column_strdup(stmt, 1))) {
			lxm_db_volume_snapshot_free(s);
			r = lxm_error_set(err, -ENOMEM, 500, "out of memory");
			break;
		}
		s->created_at = sqlite3_column_int64(stmt, 2);
		list[n++] = s;
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = db_sqlite_error(db, rc, err);
	if (r < 0) {
		lxm_db_volume_snapshot_list_free(list, n);
		return r;
	}
	*ret = list;
	*ret_n = n;
	return 0;
}

int lxm_db_volume_snapshot_list(struct lxm_db *db, const char *pool, const char *volume,
				struct lxm_db_volume_snapshot ***ret, size_t *ret_n,
				struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list snapshots of storage volume '%s'", volume);
	if (r < 0)
		return r;
	r = snapshot_list_tx(db, pool, volume, NULL, ret, ret_n, err);
	return db_tx_end(db, owned, r, err, "list snapshots of storage volume '%s'", volume);
}

int lxm_db_volume_snapshot_get(struct lxm_db *db, const char *pool, const char *volume,
			       const char *name, struct lxm_db_volume_snapshot **ret,
			       struct lxm_error **err)
{
	struct lxm_db_volume_snapshot **list = NULL;
	size_t n = 0;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "get snapshot '%s/%s'", volume, name);
	if (r < 0)
		return r;
	r = snapshot_list_tx(db, pool, volume, name, &list, &n, err);
	if (r >= 0 && n == 0)
		r = lxm_error_set(err, -ENOENT, 404,
				  "snapshot '%s/%s' of storage volume not found in pool '%s'",
				  volume, name, pool);
	r = db_tx_end(db, owned, r, err, "get snapshot '%s/%s'", volume, name);
	if (r < 0) {
		lxm_db_volume_snapshot_list_free(list, n);
		return r;
	}
	*ret = TAKE_PTR(list[0]);
	lxm_db_volume_snapshot_list_free(list, n);
	return 0;
}

static int snapshot_delete_tx(struct lxm_db *db, const char *pool, const char *volume,
			      const char *name, struct lxm_error **err)
{
	int64_t vid, id;
	int r;

	r = volume_id_of(db, pool, "custom", volume, &vid, err);
	if (r < 0)
		return r;
	r = db_query_int64(db, &id, err,
			   "SELECT id FROM storage_volumes_snapshots WHERE storage_volume_id = ?\n"
			   "	AND name = ?",
			   "it", vid, name);
	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404,
				     "snapshot '%s/%s' of storage volume not found in pool '%s'",
				     volume, name, pool);
	if (r < 0)
		return r;
	r = db_exec(db, err, "DELETE FROM storage_volumes_snapshots WHERE id = ?", "i", id);
	return r < 0 ? db_error_prefix(err, r, "delete snapshot '%s/%s'", volume, name) : 0;
}

int lxm_db_volume_snapshot_delete(struct lxm_db *db, const char *pool, const char *volume,
				  const char *name, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "delete snapshot '%s/%s'", volume, name);
	if (r < 0)
		return r;
	r = snapshot_delete_tx(db, pool, volume, name, err);
	return db_tx_end(db, owned, r, err, "delete snapshot '%s/%s'", volume, name);
}
