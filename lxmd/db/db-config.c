/* Key/value data: the server config, the config and device maps that profiles, instances and
 * snapshots share the shape of, and the name lists of the collections later code fills in. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cleanup.h"
#include "db-internal.h"

int db_check_map(const json_t *map, const char *what, struct lxm_error **err)
{
	const char *key;
	json_t *value;

	if (!map)
		return 0;
	if (!json_is_object(map))
		return lxm_error_set(err, -EINVAL, 400, "%s is not an object", what);
	/* The foreach macro takes a non-const object; it only reads it. */
	json_object_foreach ((json_t *)map, key, value) {
		if (!json_is_string(value))
			return lxm_error_set(err, -EINVAL, 400,
					     "%s key '%s': value is not a string", what, key);
	}
	return 0;
}

int db_check_devices(const json_t *devices, struct lxm_error **err)
{
	const char *name;
	json_t *dev;

	if (!devices)
		return 0;
	if (!json_is_object(devices))
		return lxm_error_set(err, -EINVAL, 400, "devices is not an object");
	json_object_foreach ((json_t *)devices, name, dev) {
		_cleanup_free_ char *what = NULL;
		int r;

		if (!json_is_object(dev))
			return lxm_error_set(err, -EINVAL, 400, "device '%s' is not an object",
					     name);
		if (asprintf(&what, "device '%s'", name) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		r = db_check_map(dev, what, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int db_insert_map(struct lxm_db *db, const char *sql, int64_t owner_id, const json_t *map,
		  struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	const char *key;
	json_t *value;
	int r, rc;

	if (!map || json_object_size(map) == 0)
		return 0;
	r = db_prepare(db, sql, &stmt, err);
	if (r < 0)
		return r;
	/* One statement for all keys: reset and rebind rather than recompile per row. */
	json_object_foreach ((json_t *)map, key, value) {
		sqlite3_reset(stmt);
		r = db_bind(db, stmt, err, "itt", owner_id, key, json_string_value(value));
		if (r < 0)
			return db_error_prefix(err, r, "key '%s'", key);
		rc = sqlite3_step(stmt);
		if (rc != SQLITE_DONE)
			return db_error_prefix(err, db_sqlite_error(db, rc, err), "key '%s'", key);
	}
	return 0;
}

int db_insert_devices(struct lxm_db *db, const char *device_sql, const char *config_sql,
		      int64_t owner_id, const json_t *devices, struct lxm_error **err)
{
	const char *name;
	json_t *dev;
	int r;

	if (!devices)
		return 0;
	json_object_foreach ((json_t *)devices, name, dev) {
		r = db_exec(db, err, device_sql, "it", owner_id, name);
		if (r >= 0)
			r = db_insert_map(db, config_sql, sqlite3_last_insert_rowid(db->handle),
					  dev, err);
		if (r < 0)
			return db_error_prefix(err, r, "device '%s'", name);
	}
	return 0;
}

/* Sets obj[key] = value. jansson refuses text that is not UTF-8, which only raw SQL can have put
 * in the database; it answers out-of-memory the same way, hence the hedged message. */
static int db_set_string(json_t *obj, const char *key, const char *value, struct lxm_error **err)
{
	if (json_object_set_new(obj, key, json_string(value)) < 0)
		return lxm_error_set(err, -EILSEQ, 500,
				     "key '%s': not valid UTF-8 (or out of memory)", key);
	return 0;
}

int db_read_map(struct lxm_db *db, json_t **ret, struct lxm_error **err, const char *sql,
		const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	_cleanup_db_json_ json_t *map = NULL;
	va_list ap;
	int r, rc;

	va_start(ap, types);
	r = db_preparev(db, sql, &stmt, err, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	map = json_object();
	if (!map)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		r = db_set_string(map, (const char *)sqlite3_column_text(stmt, 0),
				  (const char *)sqlite3_column_text(stmt, 1), err);
		if (r < 0)
			return r;
	}
	if (rc != SQLITE_DONE)
		return db_sqlite_error(db, rc, err);
	*ret = TAKE_PTR(map);
	return 0;
}

int db_read_devices(struct lxm_db *db, const char *sql, int64_t owner_id, json_t **ret,
		    struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	_cleanup_db_json_ json_t *devices = NULL;
	int r, rc;

	r = db_prepare(db, sql, &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "i", owner_id);
	if (r < 0)
		return r;
	devices = json_object();
	if (!devices)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(stmt, 0);
		json_t *dev = json_object_get(devices, name);

		if (!dev) {
			dev = json_object();
			if (json_object_set_new(devices, name, dev) < 0)
				return lxm_error_set(
					err, -EILSEQ, 500,
					"device '%s': not valid UTF-8 (or out of memory)", name);
		}
		/* A device without keys comes as one row with a NULL key. */
		if (sqlite3_column_type(stmt, 1) == SQLITE_NULL)
			continue;
		r = db_set_string(dev, (const char *)sqlite3_column_text(stmt, 1),
				  (const char *)sqlite3_column_text(stmt, 2), err);
		if (r < 0)
			return db_error_prefix(err, r, "device '%s'", name);
	}
	if (rc != SQLITE_DONE)
		return db_sqlite_error(db, rc, err);
	*ret = TAKE_PTR(devices);
	return 0;
}

int lxm_db_config_get_all(struct lxm_db *db, json_t **ret_object, struct lxm_error **err)
{
	int r = db_read_map(db, ret_object, err, "SELECT key, value FROM config ORDER BY key",
			    NULL);

	return r < 0 ? db_error_prefix(err, r, "read server config") : 0;
}

int lxm_db_config_set(struct lxm_db *db, const char *key, const char *value, struct lxm_error **err)
{
	int r;

	if (value)
		r = db_exec(db, err,
			    "INSERT INTO config (key, value) VALUES (?, ?)\n"
			    "	ON CONFLICT (key) DO UPDATE SET value = excluded.value",
			    "tt", key, value);
	else
		r = db_exec(db, err, "DELETE FROM config WHERE key = ?", "t", key);
	return r < 0 ? db_error_prefix(err, r, "%s server config '%s'", value ? "set" : "unset",
				       key)
		     : 0;
}

int lxm_db_image_fingerprints(struct lxm_db *db, char ***ret, struct lxm_error **err)
{
	int r = db_query_strv(db, ret, err, "SELECT fingerprint FROM images ORDER BY fingerprint",
			      NULL);

	return r < 0 ? db_error_prefix(err, r, "list images") : r;
}

int lxm_db_storage_pool_names(struct lxm_db *db, char ***ret, struct lxm_error **err)
{
	int r = db_query_strv(db, ret, err, "SELECT name FROM storage_pools ORDER BY name", NULL);

	return r < 0 ? db_error_prefix(err, r, "list storage pools") : r;
}

int lxm_db_network_names(struct lxm_db *db, char ***ret, struct lxm_error **err)
{
	int r = db_query_strv(db, ret, err, "SELECT name FROM networks ORDER BY name", NULL);

	return r < 0 ? db_error_prefix(err, r, "list networks") : r;
}
