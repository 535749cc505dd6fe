/* Instance snapshots: the rows that say which snapshots an instance has, with the config, devices
 * and profiles the instance had when each was taken. Their files are lxmd/snapshots.c's. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "db-internal.h"

#define SQL_SNAPSHOT_CONFIG_INSERT                                                                 \
	"INSERT INTO instances_snapshots_config (instance_snapshot_id, key, value)\n"              \
	"	VALUES (?, ?, ?)"
#define SQL_SNAPSHOT_DEVICE_INSERT                                                                 \
	"INSERT INTO instances_snapshots_devices (instance_snapshot_id, name) VALUES (?, ?)"
#define SQL_SNAPSHOT_DEVICE_CONFIG_INSERT                                                          \
	"INSERT INTO instances_snapshots_devices_config (instance_snapshot_device_id, key,\n"      \
	"	value) VALUES (?, ?, ?)"
#define SQL_SNAPSHOT_COLUMNS                                                                       \
	"s.id, s.name, s.stateful, s.description, s.created_at, s.expires_at, s.size"

void lxm_db_snapshot_free(struct lxm_db_snapshot *s)
{
	if (!s)
		return;
	free(s->instance);
	free(s->name);
	free(s->description);
	json_decref(s->config);
	json_decref(s->devices);
	json_decref(s->profiles);
	free(s);
}

void lxm_db_snapshot_list_free(struct lxm_db_snapshot **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		lxm_db_snapshot_free(list[i]);
	free(list);
}

/* The instance's row id; -ENOENT (404) naming it when there is none. */
static int instance_id(struct lxm_db *db, const char *name, int64_t *ret, struct lxm_error **err)
{
	int r = db_query_int64(db, ret, err, "SELECT id FROM instances WHERE name = ?", "t", name);

	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404, "instance '%s' not found", name);
	return r;
}

/* The snapshot's row id; -ENOENT (404) naming the instance or the snapshot when missing. */
static int snapshot_id(struct lxm_db *db, const char *instance, const char *name, int64_t *ret,
		       struct lxm_error **err)
{
	int64_t iid;
	int r = instance_id(db, instance, &iid, err);

	if (r < 0)
		return r;
	r = db_query_int64(db, ret, err,
			   "SELECT id FROM instances_snapshots WHERE instance_id = ? AND name = ?",
			   "it", iid, name);
	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404, "snapshot '%s/%s' not found", instance,
				     name);
	return r;
}

/* Fills s from the current row of a SELECT of SQL_SNAPSHOT_COLUMNS. */
static int snapshot_from_row(sqlite3_stmt *stmt, const char *instance, struct lxm_db_snapshot *s)
{
	if (!(s->instance = strdup(instance)) || !(s->name = db_column_strdup(stmt, 1)) ||
	    !(s->description = db_column_strdup(stmt, 3)))
		return -ENOMEM;
	s->id = sqlite3_column_int64(stmt, 0);
	s->stateful = sqlite3_column_int(stmt, 2) != 0;
	s->created_at = sqlite3_column_int64(stmt, 4);
	s->expires_at = sqlite3_column_int64(stmt, 5);
	s->size = sqlite3_column_int64(stmt, 6);
	return 0;
}

/* Reads config, devices and profiles of a snapshot whose row is in s. */
static int snapshot_read_children(struct lxm_db *db, struct lxm_db_snapshot *s,
				  struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	int r;

	r = db_read_map(db, &s->config, err,
			"SELECT key, value FROM instances_snapshots_config\n"
			"	WHERE instance_snapshot_id = ? ORDER BY key",
			"i", s->id);
	if (r < 0)
		return db_error_prefix(err, r, "read config");
	r = db_read_devices(db,
			    "SELECT d.name, c.key, c.value FROM instances_snapshots_devices d\n"
			    "	LEFT JOIN instances_snapshots_devices_config c\n"
			    "		ON c.instance_snapshot_device_id = d.id\n"
			    "	WHERE d.instance_snapshot_id = ? ORDER BY d.name, c.key",
			    s->id, &s->devices, err);
	if (r < 0)
		return db_error_prefix(err, r, "read devices");
	r = db_query_strv(db, &names, err,
			  "SELECT p.name FROM instances_snapshots_profiles sp\n"
			  "	JOIN profiles p ON p.id = sp.profile_id\n"
			  "	WHERE sp.instance_snapshot_id = ? ORDER BY sp.apply_order",
			  "i", s->id);
	if (r < 0)
		return db_error_prefix(err, r, "read profiles");
	s->profiles = json_array();
	if (!s->profiles)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (char **n = names; *n; n++)
		if (json_array_append_new(s->profiles, json_string(*n)) < 0)
			return lxm_error_set(err, -EILSEQ, 500,
					     "profile '%s': not valid UTF-8 (or out of memory)",
					     *n);
	return 0;
}

/* Reads the snapshots of instance id iid, all of them (name NULL) or the one called name. */
static int snapshots_read(struct lxm_db *db, const char *instance, int64_t iid, const char *name,
			  struct lxm_db_snapshot ***ret, size_t *ret_n, struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	struct lxm_db_snapshot **list = NULL;
	size_t n = 0;
	int r, rc;

	r = db_prepare(db,
		       name ? "SELECT " SQL_SNAPSHOT_COLUMNS " FROM instances_snapshots s\n"
			      "	WHERE s.instance_id = ? AND s.name = ?"
			    : "SELECT " SQL_SNAPSHOT_COLUMNS " FROM instances_snapshots s\n"
			      "	WHERE s.instance_id = ? ORDER BY s.created_at, s.id",
		       &stmt, err);
	if (r >= 0)
		r = name ? db_bind(db, stmt, err, "it", iid, name)
			 : db_bind(db, stmt, err, "i", iid);
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct lxm_db_snapshot **grown = realloc(list, (n + 1) * sizeof(*list));

		if (grown)
			list = grown;
		if (!grown || !(list[n] = calloc(1, sizeof(**list)))) {
			r = lxm_error_set(err, -ENOMEM, 500, "out of memory");
			goto fail;
		}
		n++;
		if (snapshot_from_row(stmt, instance, list[n - 1]) < 0) {
			r = lxm_error_set(err, -ENOMEM, 500, "out of memory");
			goto fail;
		}
	}
	if (rc != SQLITE_DONE) {
		r = db_sqlite_error(db, rc, err);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		r = snapshot_read_children(db, list[i], err);
		if (r < 0) {
			db_error_prefix(err, r, "snapshot '%s'", list[i]->name);
			goto fail;
		}
	}
	*ret = list;
	*ret_n = n;
	return 0;
fail:
	lxm_db_snapshot_list_free(list, n);
	return r;
}

int lxm_db_snapshot_get(struct lxm_db *db, const char *instance, const char *name,
			struct lxm_db_snapshot **ret, struct lxm_error **err)
{
	struct lxm_db_snapshot **list = NULL;
	size_t n = 0;
	int64_t iid;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "get snapshot '%s/%s'", instance, name);
	if (r < 0)
		return r;
	r = instance_id(db, instance, &iid, err);
	if (r >= 0) {
		r = snapshots_read(db, instance, iid, name, &list, &n, err);
		if (r < 0)
			db_error_prefix(err, r, "get snapshot '%s/%s'", instance, name);
		else if (n == 0)
			r = lxm_error_set(err, -ENOENT, 404, "snapshot '%s/%s' not found", instance,
					  name);
	}
	r = db_tx_end(db, owned, r, err, "get snapshot '%s/%s'", instance, name);
	if (r < 0) {
		lxm_db_snapshot_list_free(list, n);
		return r;
	}
	*ret = list[0];
	list[0] = NULL;
	lxm_db_snapshot_list_free(list, n);
	return 0;
}

int lxm_db_snapshot_list(struct lxm_db *db, const char *instance, struct lxm_db_snapshot ***ret,
			 size_t *ret_n, struct lxm_error **err)
{
	struct lxm_db_snapshot **list = NULL;
	size_t n = 0;
	int64_t iid;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list snapshots of instance '%s'", instance);
	if (r < 0)
		return r;
	r = instance_id(db, instance, &iid, err);
	if (r >= 0) {
		r = snapshots_read(db, instance, iid, NULL, &list, &n, err);
		if (r < 0)
			db_error_prefix(err, r, "list snapshots of instance '%s'", instance);
	}
	r = db_tx_end(db, owned, r, err, "list snapshots of instance '%s'", instance);
	if (r < 0) {
		lxm_db_snapshot_list_free(list, n);
		return r;
	}
	*ret = list;
	*ret_n = n;
	return 0;
}

/* Maps of strings and a list of distinct profile names, checked before anything is written. */
static int snapshot_check(const struct lxm_db_snapshot *s, struct lxm_error **err)
{
	size_t i, j;
	int r;

	r = db_check_map(s->config, "config", err);
	if (r >= 0)
		r = db_check_devices(s->devices, err);
	if (r < 0 || !s->profiles)
		return r;
	if (!json_is_array(s->profiles))
		return lxm_error_set(err, -EINVAL, 400, "profiles is not an array");
	for (i = 0; i < json_array_size(s->profiles); i++) {
		const char *name = json_string_value(json_array_get(s->profiles, i));

		if (!name)
			return lxm_error_set(err, -EINVAL, 400, "profiles[%zu] is not a string", i);
		for (j = 0; j < i; j++)
			if (strcmp(name, json_string_value(json_array_get(s->profiles, j))) == 0)
				return lxm_error_set(err, -EINVAL, 400,
						     "profile '%s' is listed twice", name);
	}
	return 0;
}

static int snapshot_create_tx(struct lxm_db *db, const struct lxm_db_snapshot *s,
			      struct lxm_error **err)
{
	int64_t iid, sid;
	int r;

	r = instance_id(db, s->instance, &iid, err);
	if (r < 0)
		return r;
	r = db_query_int64(db, &sid, err,
			   "SELECT id FROM instances_snapshots WHERE instance_id = ? AND name = ?",
			   "it", iid, s->name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "snapshot '%s/%s' already exists",
				     s->instance, s->name);
	if (r != -ENOENT)
		return r;
	r = db_exec(db, err,
		    "INSERT INTO instances_snapshots (instance_id, name, stateful, description,\n"
		    "	created_at, expires_at, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
		    "itbtiii", iid, s->name, (int)s->stateful, s->description ? s->description : "",
		    s->created_at ? s->created_at : db_now_ns(), s->expires_at, s->size);
	if (r < 0)
		return db_error_prefix(err, r, "insert");
	sid = sqlite3_last_insert_rowid(db->handle);
	r = db_insert_map(db, SQL_SNAPSHOT_CONFIG_INSERT, sid, s->config, err);
	if (r < 0)
		return db_error_prefix(err, r, "insert config");
	r = db_insert_devices(db, SQL_SNAPSHOT_DEVICE_INSERT, SQL_SNAPSHOT_DEVICE_CONFIG_INSERT,
			      sid, s->devices, err);
	if (r < 0)
		return db_error_prefix(err, r, "insert devices");
	for (size_t i = 0; i < json_array_size(s->profiles); i++) {
		const char *name = json_string_value(json_array_get(s->profiles, i));
		int64_t pid;

		r = db_query_int64(db, &pid, err, "SELECT id FROM profiles WHERE name = ?", "t",
				   name);
		if (r == -ENOENT)
			return lxm_error_set(err, -ENOENT, 404, "profile '%s' not found", name);
		if (r >= 0)
			r = db_exec(db, err,
				    "INSERT INTO instances_snapshots_profiles\n"
				    "	(instance_snapshot_id, profile_id, apply_order)\n"
				    "	VALUES (?, ?, ?)",
				    "iii", sid, pid, (int64_t)i);
		if (r < 0)
			return db_error_prefix(err, r, "insert profile '%s'", name);
	}
	return 0;
}

int lxm_db_snapshot_create(struct lxm_db *db, const struct lxm_db_snapshot *s,
			   struct lxm_error **err)
{
	bool owned;
	int r;

	r = snapshot_check(s, err);
	if (r < 0)
		return db_error_prefix(err, r, "create snapshot '%s/%s'", s->instance, s->name);
	r = db_tx_begin(db, true, &owned, err, "create snapshot '%s/%s'", s->instance, s->name);
	if (r < 0)
		return r;
	r = snapshot_create_tx(db, s, err);
	/* Not-found and conflict messages say it all already. */
	if (r < 0 && r != -ENOENT && r != -EEXIST)
		db_error_prefix(err, r, "create snapshot '%s/%s'", s->instance, s->name);
	r = db_tx_end(db, owned, r, err, "create snapshot '%s/%s'", s->instance, s->name);
	return r < 0 ? r : 0;
}

int lxm_db_snapshot_update(struct lxm_db *db, const char *instance, const char *name,
			   const struct lxm_db_snapshot *s, struct lxm_error **err)
{
	int64_t sid;
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "update snapshot '%s/%s'", instance, name);
	if (r < 0)
		return r;
	r = snapshot_id(db, instance, name, &sid, err);
	if (r >= 0) {
		r = db_exec(db, err,
			    "UPDATE instances_snapshots SET description = ?, expires_at = ?\n"
			    "	WHERE id = ?",
			    "tii", s->description ? s->description : "", s->expires_at, sid);
		if (r < 0)
			db_error_prefix(err, r, "update snapshot '%s/%s'", instance, name);
	}
	r = db_tx_end(db, owned, r, err, "update snapshot '%s/%s'", instance, name);
	return r < 0 ? r : 0;
}

int lxm_db_snapshot_rename(struct lxm_db *db, const char *instance, const char *old_name,
			   const char *new_name, struct lxm_error **err)
{
	int64_t sid, other;
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "rename snapshot '%s/%s'", instance, old_name);
	if (r < 0)
		return r;
	r = snapshot_id(db, instance, old_name, &sid, err);
	if (r >= 0) {
		r = snapshot_id(db, instance, new_name, &other, NULL);
		if (r >= 0)
			r = lxm_error_set(err, -EEXIST, 409, "snapshot '%s/%s' already exists",
					  instance, new_name);
		else if (r == -ENOENT)
			r = db_exec(db, err, "UPDATE instances_snapshots SET name = ? WHERE id = ?",
				    "ti", new_name, sid);
		if (r < 0 && r != -EEXIST)
			db_error_prefix(err, r, "rename snapshot '%s/%s' to '%s'", instance,
					old_name, new_name);
	}
	r = db_tx_end(db, owned, r, err, "rename snapshot '%s/%s'", instance, old_name);
	return r < 0 ? r : 0;
}

int lxm_db_snapshot_delete(struct lxm_db *db, const char *instance, const char *name,
			   struct lxm_error **err)
{
	int64_t sid;
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "delete snapshot '%s/%s'", instance, name);
	if (r < 0)
		return r;
	r = snapshot_id(db, instance, name, &sid, err);
	/* Config, devices and profile links go by cascade. */
	if (r >= 0) {
		r = db_exec(db, err, "DELETE FROM instances_snapshots WHERE id = ?", "i", sid);
		if (r < 0)
			db_error_prefix(err, r, "delete snapshot '%s/%s'", instance, name);
	}
	r = db_tx_end(db, owned, r, err, "delete snapshot '%s/%s'", instance, name);
	return r < 0 ? r : 0;
}
