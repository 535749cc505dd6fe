/* Profiles: named bundles of config and devices that instances apply in order. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "db-internal.h"

#define SQL_PROFILE_CONFIG_INSERT                                                                  \
	"INSERT INTO profiles_config (profile_id, key, value) VALUES (?, ?, ?)"
#define SQL_PROFILE_DEVICE_INSERT "INSERT INTO profiles_devices (profile_id, name) VALUES (?, ?)"
#define SQL_PROFILE_DEVICE_CONFIG_INSERT                                                           \
	"INSERT INTO profiles_devices_config (profile_device_id, key, value) VALUES (?, ?, ?)"

/* The profile that instances get when they name none: it must always exist. */
static const char default_profile[] = "default";

void lxm_db_profile_free(struct lxm_db_profile *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->description);
	json_decref(p->config);
	json_decref(p->devices);
	free(p);
}

/* Looks up a profile's row id; -ENOENT (404) naming the profile when there is none. */
static int profile_id(struct lxm_db *db, const char *name, int64_t *ret, struct lxm_error **err)
{
	int r = db_query_int64(db, ret, err, "SELECT id FROM profiles WHERE name = ?", "t", name);

	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404, "profile '%s' not found", name);
	return r;
}

int lxm_db_profile_names(struct lxm_db *db, char ***ret, struct lxm_error **err)
{
	int r = db_query_strv(db, ret, err, "SELECT name FROM profiles ORDER BY name", NULL);

	return r < 0 ? db_error_prefix(err, r, "list profiles") : r;
}

static int profile_read(struct lxm_db *db, const char *name, struct lxm_db_profile **ret,
			struct lxm_error **err)
{
	_cleanup_db_profile_ struct lxm_db_profile *p = NULL;
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int64_t id;
	int r, rc;

	r = db_prepare(db, "SELECT id, description FROM profiles WHERE name = ?", &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "t", name);
	if (r < 0)
		return db_error_prefix(err, r, "get profile '%s'", name);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return lxm_error_set(err, -ENOENT, 404, "profile '%s' not found", name);
	if (rc != SQLITE_ROW)
		return db_error_prefix(err, db_sqlite_error(db, rc, err), "get profile '%s'", name);

	p = calloc(1, sizeof(*p));
	if (!p || !(p->name = strdup(name)) || !(p->description = db_column_strdup(stmt, 1)))
		return lxm_error_set(err, -ENOMEM, 500, "get profile '%s': out of memory", name);
	id = sqlite3_column_int64(stmt, 0);

	r = db_read_map(db, &p->config, err,
			"SELECT key, value FROM profiles_config WHERE profile_id = ? ORDER BY key",
			"i", id);
	if (r < 0)
		return db_error_prefix(err, r, "get profile '%s': read config", name);
	r = db_read_devices(db,
			    "SELECT d.name, c.key, c.value FROM profiles_devices d\n"
			    "	LEFT JOIN profiles_devices_config c ON c.profile_device_id = d.id\n"
			    "	WHERE d.profile_id = ? ORDER BY d.name, c.key",
			    id, &p->devices, err);
	if (r < 0)
		return db_error_prefix(err, r, "get profile '%s': read devices", name);
	*ret = TAKE_PTR(p);
	return 0;
}

int lxm_db_profile_get(struct lxm_db *db, const char *name, struct lxm_db_profile **ret,
		       struct lxm_error **err)
{
	_cleanup_db_profile_ struct lxm_db_profile *p = NULL;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "get profile '%s'", name);
	if (r < 0)
		return r;
	r = profile_read(db, name, &p, err);
	r = db_tx_end(db, owned, r, err, "get profile '%s'", name);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(p);
	return 0;
}

/* Writes config and devices of a profile whose old ones, if any, are gone. */
static int profile_write_children(struct lxm_db *db, int64_t id, const struct lxm_db_profile *p,
				  struct lxm_error **err)
{
	int r;

	r = db_insert_map(db, SQL_PROFILE_CONFIG_INSERT, id, p->config, err);
	if (r < 0)
		return db_error_prefix(err, r, "insert config");
	r = db_insert_devices(db, SQL_PROFILE_DEVICE_INSERT, SQL_PROFILE_DEVICE_CONFIG_INSERT, id,
			      p->devices, err);
	if (r < 0)
		return db_error_prefix(err, r, "insert devices");
	return 0;
}

static int profile_check(const struct lxm_db_profile *p, struct lxm_error **err)
{
	int r = db_check_map(p->config, "config", err);

	return r < 0 ? r : db_check_devices(p->devices, err);
}

static int profile_create_tx(struct lxm_db *db, const struct lxm_db_profile *p,
			     struct lxm_error **err)
{
	int64_t id;
	int r;

	r = db_query_int64(db, &id, err, "SELECT id FROM profiles WHERE name = ?", "t", p->name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "profile '%s' already exists", p->name);
	if (r != -ENOENT)
		return db_error_prefix(err, r, "create profile '%s'", p->name);

	r = db_exec(db, err, "INSERT INTO profiles (name, description) VALUES (?, ?)", "tt",
		    p->name, p->description ? p->description : "");
	if (r >= 0)
		r = profile_write_children(db, sqlite3_last_insert_rowid(db->handle), p, err);
	if (r < 0)
		return db_error_prefix(err, r, "create profile '%s'", p->name);
	return 0;
}

int lxm_db_profile_create(struct lxm_db *db, const struct lxm_db_profile *p, struct lxm_error **err)
{
	bool owned;
	int r;

	r = profile_check(p, err);
	if (r < 0)
		return db_error_prefix(err, r, "create profile '%s'", p->name);
	r = db_tx_begin(db, true, &owned, err, "create profile '%s'", p->name);
	if (r < 0)
		return r;
	r = profile_create_tx(db, p, err);
	return db_tx_end(db, owned, r, err, "create profile '%s'", p->name);
}

static int profile_update_tx(struct lxm_db *db, const char *name, const struct lxm_db_profile *p,
			     struct lxm_error **err)
{
	int64_t id;
	int r;

	r = profile_id(db, name, &id, err);
	if (r == -ENOENT)
		return r;
	if (r >= 0)
		r = db_exec(db, err, "UPDATE profiles SET description = ? WHERE id = ?", "ti",
			    p->description ? p->description : "", id);
	if (r < 0)
		return db_error_prefix(err, r, "update profile '%s'", name);
	/* Devices go with their config by cascade. */
	r = db_exec(db, err, "DELETE FROM profiles_config WHERE profile_id = ?", "i", id);
	if (r >= 0)
		r = db_exec(db, err, "DELETE FROM profiles_devices WHERE profile_id = ?", "i", id);
	if (r < 0)
		return db_error_prefix(err, r, "update profile '%s': delete old config", name);
	r = profile_write_children(db, id, p, err);
	if (r < 0)
		return db_error_prefix(err, r, "update profile '%s'", name);
	return 0;
}

int lxm_db_profile_update(struct lxm_db *db, const char *name, const struct lxm_db_profile *p,
			  struct lxm_error **err)
{
	bool owned;
	int r;

	r = profile_check(p, err);
	if (r < 0)
		return db_error_prefix(err, r, "update profile '%s'", name);
	r = db_tx_begin(db, true, &owned, err, "update profile '%s'", name);
	if (r < 0)
		return r;
	r = profile_update_tx(db, name, p, err);
	return db_tx_end(db, owned, r, err, "update profile '%s'", name);
}

static int profile_rename_tx(struct lxm_db *db, const char *old_name, const char *new_name,
			     struct lxm_error **err)
{
	int64_t id, other;
	int r;

	r = profile_id(db, old_name, &id, err);
	if (r == -ENOENT)
		return r;
	if (r >= 0)
		r = db_query_int64(db, &other, err, "SELECT id FROM profiles WHERE name = ?", "t",
				   new_name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "profile '%s' already exists", new_name);
	if (r == -ENOENT)
		r = db_exec(db, err, "UPDATE profiles SET name = ? WHERE id = ?", "ti", new_name,
			    id);
	if (r < 0)
		return db_error_prefix(err, r, "rename profile '%s' to '%s'", old_name, new_name);
	return 0;
}

int lxm_db_profile_rename(struct lxm_db *db, const char *old_name, const char *new_name,
			  struct lxm_error **err)
{
	bool owned;
	int r;

	if (strcmp(old_name, default_profile) == 0)
		return lxm_error_set(err, -EPERM, 403, "the default profile cannot be renamed");
	r = db_tx_begin(db, true, &owned, err, "rename profile '%s'", old_name);
	if (r < 0)
		return r;
	r = profile_rename_tx(db, old_name, new_name, err);
	return db_tx_end(db, owned, r, err, "rename profile '%s'", old_name);
}

/* Joins names with ", " for messages. */
static char *strv_join(char **v)
{
	size_t len = 1;
	char *s, *p;

	for (char **n = v; *n; n++)
		len += strlen(*n) + 2;
	s = p = malloc(len);
	if (!s)
		return NULL;
	*p = '\0';
	for (char **n = v; *n; n++)
		p = stpcpy(stpcpy(p, n == v ? "" : ", "), *n);
	return s;
}

static int profile_users(struct lxm_db *db, int64_t id, char ***ret, struct lxm_error **err)
{
	return db_query_strv(db, ret, err,
			     "SELECT i.name FROM instances i\n"
			     "	JOIN instances_profiles ip ON ip.instance_id = i.id\n"
			     "	WHERE ip.profile_id = ? ORDER BY i.name",
			     "i", id);
}

static int profile_delete_tx(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	_cleanup_strv_ char **users = NULL;
	_cleanup_free_ char *list = NULL;
	int64_t id;
	int r;

	r = profile_id(db, name, &id, err);
	if (r == -ENOENT)
		return r;
	if (r >= 0)
		r = profile_users(db, id, &users, err);
	if (r < 0)
		return db_error_prefix(err, r, "delete profile '%s': list instances using it",
				       name);
	/* The schema's RESTRICT would refuse too, but without saying who holds the profile. */
	if (r > 0) {
		list = strv_join(users);
		return lxm_error_set(err, -EBUSY, 409, "profile '%s' is used by instances: %s",
				     name, list ? list : "(out of memory)");
	}
	r = db_exec(db, err, "DELETE FROM profiles WHERE id = ?", "i", id);
	if (r < 0)
		return db_error_prefix(err, r, "delete profile '%s'", name);
	return 0;
}

int lxm_db_profile_delete(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	bool owned;
	int r;

	if (strcmp(name, default_profile) == 0)
		return lxm_error_set(err, -EPERM, 403, "the default profile cannot be deleted");
	r = db_tx_begin(db, true, &owned, err, "delete profile '%s'", name);
	if (r < 0)
		return r;
	r = profile_delete_tx(db, name, err);
	return db_tx_end(db, owned, r, err, "delete profile '%s'", name);
}

int lxm_db_profile_used_by(struct lxm_db *db, const char *name, char ***ret_instance_names,
			   struct lxm_error **err)
{
	_cleanup_strv_ char **users = NULL;
	int64_t id;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list users of profile '%s'", name);
	if (r < 0)
		return r;
	r = profile_id(db, name, &id, err);
	if (r >= 0)
		r = profile_users(db, id, &users, err);
	if (r < 0 && r != -ENOENT)
		db_error_prefix(err, r, "list users of profile '%s'", name);
	r = db_tx_end(db, owned, r, err, "list users of profile '%s'", name);
	if (r < 0)
		return r;
	*ret_instance_names = TAKE_PTR(users);
	return r;
}
