/* Instances: containers and virtual machines, with their local config, devices and the ordered
 * list of profiles they apply. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "db-internal.h"

#define SQL_INSTANCE_CONFIG_INSERT                                                                 \
	"INSERT INTO instances_config (instance_id, key, value) VALUES (?, ?, ?)"
#define SQL_INSTANCE_DEVICE_INSERT "INSERT INTO instances_devices (instance_id, name) VALUES (?, ?)"
#define SQL_INSTANCE_DEVICE_CONFIG_INSERT                                                          \
	"INSERT INTO instances_devices_config (instance_device_id, key, value) VALUES (?, ?, ?)"

void lxm_db_instance_free(struct lxm_db_instance *inst)
{
	if (!inst)
		return;
	free(inst->name);
	free(inst->type);
	free(inst->architecture);
	free(inst->description);
	json_decref(inst->config);
	json_decref(inst->devices);
	json_decref(inst->profiles);
	free(inst);
}

/* Looks up an instance's row id; -ENOENT (404) naming the instance when there is none. */
static int instance_id(struct lxm_db *db, const char *name, int64_t *ret, struct lxm_error **err)
{
	int r = db_query_int64(db, ret, err, "SELECT id FROM instances WHERE name = ?", "t", name);

	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404, "instance '%s' not found", name);
	return r;
}

/* -EEXIST (409) when an instance called name exists. */
static int instance_check_free(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	int64_t id;
	int r = db_query_int64(db, &id, err, "SELECT id FROM instances WHERE name = ?", "t", name);

	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "instance '%s' already exists", name);
	return r == -ENOENT ? 0 : r;
}

int lxm_db_instance_names(struct lxm_db *db, char ***ret, struct lxm_error **err)
{
	int r = db_query_strv(db, ret, err, "SELECT name FROM instances ORDER BY name", NULL);

	return r < 0 ? db_error_prefix(err, r, "list instances") : r;
}

/* Fills inst from the instances row; children are read by the caller. */
static int instance_read_row(struct lxm_db *db, const char *name, struct lxm_db_instance *inst,
			     struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int r, rc;

	r = db_prepare(db,
		       "SELECT id, type, architecture, ephemeral, stateful, description,\n"
		       "	created_at, last_used_at FROM instances WHERE name = ?",
		       &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "t", name);
	if (r < 0)
		return r;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return lxm_error_set(err, -ENOENT, 404, "instance '%s' not found", name);
	if (rc != SQLITE_ROW)
		return db_sqlite_error(db, rc, err);

	if (!(inst->name = strdup(name)) || !(inst->type = db_column_strdup(stmt, 1)) ||
	    !(inst->architecture = db_column_strdup(stmt, 2)) ||
	    !(inst->description = db_column_strdup(stmt, 5)))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	inst->id = sqlite3_column_int64(stmt, 0);
	inst->ephemeral = sqlite3_column_int(stmt, 3) != 0;
	inst->stateful = sqlite3_column_int(stmt, 4) != 0;
	inst->created_at = sqlite3_column_int64(stmt, 6);
	inst->last_used_at = sqlite3_column_int64(stmt, 7);
	return 0;
}

static int instance_read_profiles(struct lxm_db *db, int64_t id, json_t **ret,
				  struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	_cleanup_db_json_ json_t *profiles = NULL;
	int r;

	r = db_query_strv(db, &names, err,
			  "SELECT p.name FROM instances_profiles ip\n"
			  "	JOIN profiles p ON p.id = ip.profile_id\n"
			  "	WHERE ip.instance_id = ? ORDER BY ip.apply_order",
			  "i", id);
	if (r < 0)
		return r;
	profiles = json_array();
	if (!profiles)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (char **n = names; *n; n++)
		if (json_array_append_new(profiles, json_string(*n)) < 0)
			return lxm_error_set(err, -EILSEQ, 500,
					     "profile '%s': not valid UTF-8 (or out of memory)",
					     *n);
	*ret = TAKE_PTR(profiles);
	return 0;
}

static int instance_read(struct lxm_db *db, const char *name, struct lxm_db_instance **ret,
			 struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	int r;

	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return lxm_error_set(err, -ENOMEM, 500, "get instance '%s': out of memory", name);
	r = instance_read_row(db, name, inst, err);
	if (r == -ENOENT)
		return r;
	if (r < 0)
		return db_error_prefix(err, r, "get instance '%s'", name);
	r = db_read_map(
		db, &inst->config, err,
		"SELECT key, value FROM instances_config WHERE instance_id = ? ORDER BY key", "i",
		inst->id);
	if (r < 0)
		return db_error_prefix(err, r, "get instance '%s': read config", name);
	r = db_read_devices(
		db,
		"SELECT d.name, c.key, c.value FROM instances_devices d\n"
		"	LEFT JOIN instances_devices_config c ON c.instance_device_id = d.id\n"
		"	WHERE d.instance_id = ? ORDER BY d.name, c.key",
		inst->id, &inst->devices, err);
	if (r < 0)
		return db_error_prefix(err, r, "get instance '%s': read devices", name);
	r = instance_read_profiles(db, inst->id, &inst->profiles, err);
	if (r < 0)
		return db_error_prefix(err, r, "get instance '%s': read profiles", name);
	*ret = TAKE_PTR(inst);
	return 0;
}

int lxm_db_instance_get(struct lxm_db *db, const char *name, struct lxm_db_instance **ret,
			struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "get instance '%s'", name);
	if (r < 0)
		return r;
	r = instance_read(db, name, &inst, err);
	r = db_tx_end(db, owned, r, err, "get instance '%s'", name);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(inst);
	return 0;
}

/* Checks the parts of inst the database cannot: that maps hold strings, and that profiles is an
 * array of distinct names (a profile listed twice would apply twice, in two places). */
static int instance_check(const struct lxm_db_instance *inst, struct lxm_error **err)
{
	size_t i, j;
	int r;

	r = db_check_map(inst->config, "config", err);
	if (r >= 0)
		r = db_check_devices(inst->devices, err);
	if (r < 0 || !inst->profiles)
		return r;
	if (!json_is_array(inst->profiles))
		return lxm_error_set(err, -EINVAL, 400, "profiles is not an array");
	for (i = 0; i < json_array_size(inst->profiles); i++) {
		const char *name = json_string_value(json_array_get(inst->profiles, i));

		if (!name)
			return lxm_error_set(err, -EINVAL, 400, "profiles[%zu] is not a string", i);
		for (j = 0; j < i; j++)
			if (strcmp(name, json_string_value(json_array_get(inst->profiles, j))) == 0)
				return lxm_error_set(err, -EINVAL, 400,
						     "profile '%s' is listed twice", name);
	}
	return 0;
}

/* Writes config, devices and profile links of an instance whose old ones, if any, are gone.
 * Messages name the step; the caller adds which instance and operation. */
static int instance_write_children(struct lxm_db *db, int64_t id,
				   const struct lxm_db_instance *inst, struct lxm_error **err)
{
	size_t i;
	int r;

	r = db_insert_map(db, SQL_INSTANCE_CONFIG_INSERT, id, inst->config, err);
	if (r < 0)
		return db_error_prefix(err, r, "insert config");
	r = db_insert_devices(db, SQL_INSTANCE_DEVICE_INSERT, SQL_INSTANCE_DEVICE_CONFIG_INSERT, id,
			      inst->devices, err);
	if (r < 0)
		return db_error_prefix(err, r, "insert devices");

	for (i = 0; i < json_array_size(inst->profiles); i++) {
		const char *name = json_string_value(json_array_get(inst->profiles, i));
		int64_t profile_id;

		r = db_query_int64(db, &profile_id, err, "SELECT id FROM profiles WHERE name = ?",
				   "t", name);
		if (r == -ENOENT)
			return lxm_error_set(err, -ENOENT, 404, "profile '%s' not found", name);
		if (r >= 0)
			r = db_exec(db, err,
				    "INSERT INTO instances_profiles (instance_id, profile_id,\n"
				    "	apply_order) VALUES (?, ?, ?)",
				    "iii", id, profile_id, (int64_t)i);
		if (r < 0)
			return db_error_prefix(err, r, "insert profile '%s'", name);
	}
	return 0;
}

static int instance_create_tx(struct lxm_db *db, const struct lxm_db_instance *inst,
			      int64_t *ret_id, struct lxm_error **err)
{
	int64_t id;
	int r;

	r = instance_check_free(db, inst->name, err);
	if (r == -EEXIST)
		return r;
	if (r >= 0)
		r = db_exec(
			db, err,
			"INSERT INTO instances (name, type, architecture, ephemeral, stateful,\n"
			"	description, created_at, last_used_at)\n"
			"	VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			"tttbbtii", inst->name, inst->type,
			inst->architecture ? inst->architecture : "", (int)inst->ephemeral,
			(int)inst->stateful, inst->description ? inst->description : "",
			inst->created_at ? inst->created_at : db_now_ns(), inst->last_used_at);
	if (r < 0)
		return db_error_prefix(err, r, "create instance '%s': insert", inst->name);
	id = sqlite3_last_insert_rowid(db->handle);
	r = instance_write_children(db, id, inst, err);
	if (r < 0)
		return db_error_prefix(err, r, "create instance '%s'", inst->name);
	*ret_id = id;
	return 0;
}

int lxm_db_instance_create(struct lxm_db *db, const struct lxm_db_instance *inst, int64_t *ret_id,
			   struct lxm_error **err)
{
	int64_t id = 0;
	bool owned;
	int r;

	r = instance_check(inst, err);
	if (r < 0)
		return db_error_prefix(err, r, "create instance '%s'", inst->name);
	r = db_tx_begin(db, true, &owned, err, "create instance '%s'", inst->name);
	if (r < 0)
		return r;
	r = instance_create_tx(db, inst, &id, err);
	r = db_tx_end(db, owned, r, err, "create instance '%s'", inst->name);
	if (r < 0)
		return r;
	if (ret_id)
		*ret_id = id;
	return 0;
}

static int instance_update_tx(struct lxm_db *db, const char *name,
			      const struct lxm_db_instance *inst, struct lxm_error **err)
{
	int64_t id;
	int r;

	r = instance_id(db, name, &id, err);
	if (r == -ENOENT)
		return r;
	if (r >= 0)
		r = db_exec(
			db, err,
			"UPDATE instances SET architecture = ?, description = ?, ephemeral = ?,\n"
			"	last_used_at = ? WHERE id = ?",
			"ttbii", inst->architecture ? inst->architecture : "",
			inst->description ? inst->description : "", (int)inst->ephemeral,
			inst->last_used_at, id);
	if (r < 0)
		return db_error_prefix(err, r, "update instance '%s'", name);
	/* Device config goes with the devices by cascade. */
	r = db_exec(db, err, "DELETE FROM instances_config WHERE instance_id = ?", "i", id);
	if (r >= 0)
		r = db_exec(db, err, "DELETE FROM instances_devices WHERE instance_id = ?", "i",
			    id);
	if (r >= 0)
		r = db_exec(db, err, "DELETE FROM instances_profiles WHERE instance_id = ?", "i",
			    id);
	if (r < 0)
		return db_error_prefix(err, r, "update instance '%s': delete old config", name);
	r = instance_write_children(db, id, inst, err);
	if (r < 0)
		return db_error_prefix(err, r, "update instance '%s'", name);
	return 0;
}

int lxm_db_instance_update(struct lxm_db *db, const char *name, const struct lxm_db_instance *inst,
			   struct lxm_error **err)
{
	bool owned;
	int r;

	r = instance_check(inst, err);
	if (r < 0)
		return db_error_prefix(err, r, "update instance '%s'", name);
	r = db_tx_begin(db, true, &owned, err, "update instance '%s'", name);
	if (r < 0)
		return r;
	r = instance_update_tx(db, name, inst, err);
	return db_tx_end(db, owned, r, err, "update instance '%s'", name);
}

static int instance_rename_tx(struct lxm_db *db, const char *old_name, const char *new_name,
			      struct lxm_error **err)
{
	int64_t id;
	int r;

	r = instance_id(db, old_name, &id, err);
	if (r == -ENOENT)
		return r;
	if (r >= 0)
		r = instance_check_free(db, new_name, err);
	if (r == -EEXIST)
		return r;
	if (r >= 0)
		r = db_exec(db, err, "UPDATE instances SET name = ? WHERE id = ?", "ti", new_name,
			    id);
	if (r < 0)
		return db_error_prefix(err, r, "rename instance '%s' to '%s'", old_name, new_name);
	return 0;
}

int lxm_db_instance_rename(struct lxm_db *db, const char *old_name, const char *new_name,
			   struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "rename instance '%s'", old_name);
	if (r < 0)
		return r;
	r = instance_rename_tx(db, old_name, new_name, err);
	return db_tx_end(db, owned, r, err, "rename instance '%s'", old_name);
}

int lxm_db_instance_delete(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	/* One statement, atomic on its own: the children go by cascade within it. */
	int r = db_exec(db, err, "DELETE FROM instances WHERE name = ?", "t", name);

	if (r < 0)
		return db_error_prefix(err, r, "delete instance '%s'", name);
	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "instance '%s' not found", name);
	return 0;
}

int lxm_db_instance_snapshot_names(struct lxm_db *db, const char *instance, char ***ret,
				   struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	int64_t id;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list snapshots of instance '%s'", instance);
	if (r < 0)
		return r;
	r = instance_id(db, instance, &id, err);
	/* Creation order, as LXD lists them; id breaks ties of equal timestamps. */
	if (r >= 0)
		r = db_query_strv(db, &names, err,
				  "SELECT name FROM instances_snapshots WHERE instance_id = ?\n"
				  "	ORDER BY created_at, id",
				  "i", id);
	if (r < 0 && r != -ENOENT)
		db_error_prefix(err, r, "list snapshots of instance '%s'", instance);
	r = db_tx_end(db, owned, r, err, "list snapshots of instance '%s'", instance);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(names);
	return r;
}
