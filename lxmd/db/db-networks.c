/* Managed networks: the rows that say which networks exist, with their config. The bridges,
 * firewall rules and dnsmasq behind them are lxmd/networks.c's. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "db-internal.h"
#include "util.h"

static const struct db_map_table network_config = DB_MAP_TABLE("networks_config", "network_id");

void lxm_db_network_free(struct lxm_db_network *n)
{
	if (!n)
		return;
	free(n->name);
	free(n->type);
	free(n->description);
	json_decref(n->config);
	free(n);
}

/* The network's row id; -ENOENT (404) naming the network when there is none. */
static int network_id(struct lxm_db *db, const char *name, int64_t *ret, struct lxm_error **err)
{
	int r = db_query_int64(db, ret, err, "SELECT id FROM networks WHERE name = ?", "t", name);

	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404, "network '%s' not found", name);
	return r;
}

static int network_read(struct lxm_db *db, const char *name, struct lxm_db_network **ret,
			struct lxm_error **err)
{
	_cleanup_db_network_ struct lxm_db_network *n = NULL;
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int64_t id;
	int r, rc;

	r = db_prepare(db, "SELECT id, type, description FROM networks WHERE name = ?", &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "t", name);
	if (r < 0)
		return r;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return lxm_error_set(err, -ENOENT, 404, "network '%s' not found", name);
	if (rc != SQLITE_ROW)
		return db_sqlite_error(db, rc, err);
	n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name)) || !(n->type = db_column_strdup(stmt, 1)) ||
	    !(n->description = db_column_strdup(stmt, 2)))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	id = sqlite3_column_int64(stmt, 0);
	r = db_map_table_read(db, &network_config, id, &n->config, err);
	if (r < 0)
		return db_error_prefix(err, r, "read config");
	*ret = TAKE_PTR(n);
	return 0;
}

int lxm_db_network_get(struct lxm_db *db, const char *name, struct lxm_db_network **ret,
		       struct lxm_error **err)
{
	_cleanup_db_network_ struct lxm_db_network *n = NULL;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "get network '%s'", name);
	if (r < 0)
		return r;
	r = network_read(db, name, &n, err);
	if (r < 0 && r != -ENOENT)
		db_error_prefix(err, r, "get network '%s'", name);
	r = db_tx_end(db, owned, r, err, "get network '%s'", name);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(n);
	return 0;
}

static int network_create_tx(struct lxm_db *db, const struct lxm_db_network *n,
			     struct lxm_error **err)
{
	int64_t id;
	int r;

	r = db_query_int64(db, &id, err, "SELECT id FROM networks WHERE name = ?", "t", n->name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "network '%s' already exists", n->name);
	if (r != -ENOENT)
		return r;
	r = db_exec(db, err, "INSERT INTO networks (name, type, description) VALUES (?, ?, ?)",
		    "ttt", n->name, n->type ? n->type : "bridge",
		    n->description ? n->description : "");
	if (r < 0)
		return r;
	r = db_insert_map(db, network_config.insert_sql, sqlite3_last_insert_rowid(db->handle),
			  n->config, err);
	return r < 0 ? db_error_prefix(err, r, "insert config") : 0;
}

int lxm_db_network_create(struct lxm_db *db, const struct lxm_db_network *n, struct lxm_error **err)
{
	bool owned;
	int r;

	if (!n->name)
		return lxm_error_set(err, -EINVAL, 400, "create network: missing name");
	r = db_check_map(n->config, "config", err);
	if (r < 0)
		return db_error_prefix(err, r, "create network '%s'", n->name);
	r = db_tx_begin(db, true, &owned, err, "create network '%s'", n->name);
	if (r < 0)
		return r;
	r = network_create_tx(db, n, err);
	if (r < 0 && r != -EEXIST)
		db_error_prefix(err, r, "create network '%s'", n->name);
	return db_tx_end(db, owned, r, err, "create network '%s'", n->name);
}

static int network_update_tx(struct lxm_db *db, const char *name, const char *description,
			     const json_t *config, struct lxm_error **err)
{
	int64_t id;
	int r;

	r = network_id(db, name, &id, err);
	if (r < 0)
		return r;
	r = db_exec(db, err, "UPDATE networks SET description = ? WHERE id = ?", "ti",
		    description ? description : "", id);
	if (r >= 0)
		r = db_map_table_replace(db, &network_config, id, config, err);
	return r < 0 ? db_error_prefix(err, r, "update network '%s'", name) : 0;
}

int lxm_db_network_update(struct lxm_db *db, const char *name, const char *description,
			  const json_t *config, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_check_map(config, "config", err);
	if (r < 0)
		return db_error_prefix(err, r, "update network '%s'", name);
	r = db_tx_begin(db, true, &owned, err, "update network '%s'", name);
	if (r < 0)
		return r;
	r = network_update_tx(db, name, description, config, err);
	return db_tx_end(db, owned, r, err, "update network '%s'", name);
}

static int network_rename_tx(struct lxm_db *db, const char *name, const char *new_name,
			     struct lxm_error **err)
{
	int64_t id, other;
	int r;

	r = network_id(db, name, &id, err);
	if (r < 0)
		return r;
	r = db_query_int64(db, &other, err, "SELECT id FROM networks WHERE name = ?", "t",
			   new_name);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "network '%s' already exists", new_name);
	if (r == -ENOENT)
		r = db_exec(db, err, "UPDATE networks SET name = ? WHERE id = ?", "ti", new_name,
			    id);
	return r < 0 ? db_error_prefix(err, r, "rename network '%s' to '%s'", name, new_name) : 0;
}

int lxm_db_network_rename(struct lxm_db *db, const char *name, const char *new_name,
			  struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "rename network '%s'", name);
	if (r < 0)
		return r;
	r = network_rename_tx(db, name, new_name, err);
	return db_tx_end(db, owned, r, err, "rename network '%s'", name);
}

int lxm_db_network_delete(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	int64_t id;
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "delete network '%s'", name);
	if (r < 0)
		return r;
	r = network_id(db, name, &id, err);
	if (r >= 0) {
		r = db_exec(db, err, "DELETE FROM networks WHERE id = ?", "i", id);
		if (r < 0)
			db_error_prefix(err, r, "delete network '%s'", name);
	}
	return db_tx_end(db, owned, r, err, "delete network '%s'", name);
}

/* A device whose config has type=nic and network=? (the network's name). The same test serves
 * the profiles' and the instances' device tables. */
#define SQL_NIC_ON_NETWORK(cfgtable, fk)                                                           \
	"EXISTS (SELECT 1 FROM " cfgtable " c WHERE c." fk " = d.id AND c.key = 'type'\n"          \
	"		AND c.value = 'nic')\n"                                                                 \
	"	AND EXISTS (SELECT 1 FROM " cfgtable " c WHERE c." fk " = d.id\n"                  \
	"		AND c.key = 'network' AND c.value = ?)"

int lxm_db_network_used_by(struct lxm_db *db, const char *name, char ***ret_profiles,
			   char ***ret_instances, struct lxm_error **err)
{
	_cleanup_strv_ char **profiles = NULL, **instances = NULL;
	int np = 0, ni = 0;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list users of network '%s'", name);
	if (r < 0)
		return r;
	np = r =
		db_query_strv(db, &profiles, err,
			      "SELECT DISTINCT p.name FROM profiles p\n"
			      "	JOIN profiles_devices d ON d.profile_id = p.id\n"
			      "	WHERE " SQL_NIC_ON_NETWORK("profiles_devices_config",
							   "profile_device_id") " ORDER BY p.name",
			      "t", name);
	if (r >= 0)
		ni = r = db_query_strv(
			db, &instances, err,
			"SELECT DISTINCT i.name FROM instances i\n"
			"	JOIN instances_devices d ON d.instance_id = i.id\n"
			"	WHERE " SQL_NIC_ON_NETWORK("instances_devices_config",
							   "instance_device_id") " ORDER BY i.name",
			"t", name);
	if (r < 0)
		db_error_prefix(err, r, "list users of network '%s'", name);
	r = db_tx_end(db, owned, r, err, "list users of network '%s'", name);
	if (r < 0)
		return r;
	*ret_profiles = TAKE_PTR(profiles);
	*ret_instances = TAKE_PTR(instances);
	return np + ni;
}

/* ---- forwards ---- */

static const struct db_map_table forward_config =
	DB_MAP_TABLE("networks_forwards_config", "network_forward_id");

static int forwards_read(struct lxm_db *db, int64_t net_id, json_t **ret, struct lxm_error **err)
{
	_cleanup_db_json_ json_t *list = json_array();
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int r, rc;

	if (!list)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = db_prepare(db,
		       "SELECT id, listen_address, description, ports FROM networks_forwards\n"
		       "	WHERE network_id = ? ORDER BY listen_address",
		       &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "i", net_id);
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *listen = (const char *)sqlite3_column_text(stmt, 1);
		const char *desc = (const char *)sqlite3_column_text(stmt, 2);
		const char *ports = (const char *)sqlite3_column_text(stmt, 3);
		json_t *config = NULL, *pj, *fw;

		pj = json_loads(ports ? ports : "[]", 0, NULL);
		if (!json_is_array(pj)) {
			json_decref(pj);
			return lxm_error_set(err, -EIO, 500,
					     "forward '%s': the stored ports are not a JSON array",
					     listen ? listen : "");
		}
		r = db_map_table_read(db, &forward_config, sqlite3_column_int64(stmt, 0), &config,
				      err);
		if (r < 0) {
			json_decref(pj);
			return db_error_prefix(err, r, "forward '%s': read config",
					       listen ? listen : "");
		}
		fw = json_pack("{s:s, s:s, s:o, s:o}", "listen_address", listen ? listen : "",
			       "description", desc ? desc : "", "config", config, "ports", pj);
		if (!fw || json_array_append_new(list, fw) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	if (rc != SQLITE_DONE)
		return db_sqlite_error(db, rc, err);
	*ret = TAKE_PTR(list);
	return 0;
}

int lxm_db_network_forwards(struct lxm_db *db, const char *name, json_t **ret,
			    struct lxm_error **err)
{
	_cleanup_db_json_ json_t *list = NULL;
	int64_t id;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list forwards of network '%s'", name);
	if (r < 0)
		return r;
	r = network_id(db, name, &id, err);
	if (r >= 0 && (r = forwards_read(db, id, &list, err)) < 0)
		db_error_prefix(err, r, "list forwards of network '%s'", name);
	r = db_tx_end(db, owned, r, err, "list forwards of network '%s'", name);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(list);
	return 0;
}

static int forward_put_tx(struct lxm_db *db, const char *name, const json_t *fw, bool create,
			  struct lxm_error **err)
{
	const char *listen = json_string_value(json_object_get(fw, "listen_address"));
	const char *desc = json_string_value(json_object_get(fw, "description"));
	json_t *ports = json_object_get(fw, "ports");
	_cleanup_free_ char *ports_s = NULL;
	int64_t net_id, id;
	int r;

	r = network_id(db, name, &net_id, err);
	if (r < 0)
		return r;
	ports_s = json_is_array(ports) ? json_dumps(ports, JSON_COMPACT) : strdup("[]");
	if (!ports_s)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = db_query_int64(db, &id, err,
			   "SELECT id FROM networks_forwards WHERE network_id = ? AND "
			   "listen_address = ?",
			   "it", net_id, listen);
	if (r >= 0 && create)
		return lxm_error_set(err, -EEXIST, 409,
				     "network '%s': a forward of listen address %s already exists",
				     name, listen);
	if (r == -ENOENT && !create)
		return lxm_error_set(err, -ENOENT, 404, "network '%s': forward %s not found", name,
				     listen);
	if (r < 0 && r != -ENOENT)
		return r;
	if (create) {
		r = db_exec(db, err,
			    "INSERT INTO networks_forwards (network_id, listen_address, "
			    "description, ports) VALUES (?, ?, ?, ?)",
			    "ittt", net_id, listen, desc ? desc : "", ports_s);
		id = sqlite3_last_insert_rowid(db->handle);
	} else {
		r = db_exec(db, err,
			    "UPDATE networks_forwards SET description = ?, ports = ? WHERE id = ?",
			    "tti", desc ? desc : "", ports_s, id);
	}
	if (r >= 0)
		r = db_map_table_replace(db, &forward_config, id, json_object_get(fw, "config"),
					 err);
	return r;
}

int lxm_db_network_forward_put(struct lxm_db *db, const char *name, const json_t *fw, bool create,
			       struct lxm_error **err)
{
	const char *listen = json_string_value(json_object_get(fw, "listen_address"));
	bool owned;
	int r;

	if (!listen)
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward without listen_address", name);
	r = db_check_map(json_object_get(fw, "config"), "config", err);
	if (r < 0)
		return db_error_prefix(err, r, "network '%s': forward %s", name, listen);
	r = db_tx_begin(db, true, &owned, err, "network '%s': store forward %s", name, listen);
	if (r < 0)
		return r;
	r = forward_put_tx(db, name, fw, create, err);
	if (r < 0 && r != -ENOENT && r != -EEXIST)
		db_error_prefix(err, r, "network '%s': store forward %s", name, listen);
	return db_tx_end(db, owned, r, err, "network '%s': store forward %s", name, listen);
}

int lxm_db_network_forward_delete(struct lxm_db *db, const char *name, const char *listen,
				  struct lxm_error **err)
{
	int64_t net_id;
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "network '%s': delete forward %s", name, listen);
	if (r < 0)
		return r;
	r = network_id(db, name, &net_id, err);
	if (r >= 0) {
		r = db_exec(db, err,
			    "DELETE FROM networks_forwards WHERE network_id = ? AND "
			    "listen_address = ?",
			    "it", net_id, listen);
		if (r == 0)
			r = lxm_error_set(err, -ENOENT, 404, "network '%s': forward %s not found",
					  name, listen);
		else if (r < 0)
			db_error_prefix(err, r, "network '%s': delete forward %s", name, listen);
	}
	return db_tx_end(db, owned, r < 0 ? r : 0, err, "network '%s': delete forward %s", name,
			 listen);
}
