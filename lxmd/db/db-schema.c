/* The schema, as the numbered migrations that build it. A released migration never changes: a
 * database that ran it must end up where a fresh one does, so every change is a new migration at
 * the end. Timestamps are INTEGER unix nanoseconds, 0 meaning "never". Child rows go with their
 * parent (ON DELETE CASCADE), except that a profile in use cannot be deleted (RESTRICT). */
#include "config.h"

#include "cleanup.h"
#include "db-internal.h"

/* v1: instances, profiles and server config: what a daemon with no images or storage needs. */
static const char schema_v1[] =
	"CREATE TABLE config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	key TEXT NOT NULL UNIQUE,\n"
	"	value TEXT NOT NULL\n"
	");\n"
	"CREATE TABLE profiles (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	name TEXT NOT NULL UNIQUE,\n"
	"	description TEXT NOT NULL DEFAULT ''\n"
	");\n"
	"CREATE TABLE profiles_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (profile_id, key)\n"
	");\n"
	"CREATE TABLE profiles_devices (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,\n"
	"	name TEXT NOT NULL,\n"
	"	UNIQUE (profile_id, name)\n"
	");\n"
	"CREATE TABLE profiles_devices_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	profile_device_id INTEGER NOT NULL\n"
	"		REFERENCES profiles_devices (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (profile_device_id, key)\n"
	");\n"
	"CREATE TABLE instances (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	name TEXT NOT NULL UNIQUE,\n"
	"	type TEXT NOT NULL CHECK (type IN ('container', 'virtual-machine')),\n"
	"	architecture TEXT NOT NULL DEFAULT '',\n"
	"	ephemeral INTEGER NOT NULL DEFAULT 0,\n"
	"	stateful INTEGER NOT NULL DEFAULT 0,\n"
	"	description TEXT NOT NULL DEFAULT '',\n"
	"	created_at INTEGER NOT NULL DEFAULT 0,\n"
	"	last_used_at INTEGER NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE TABLE instances_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (instance_id, key)\n"
	");\n"
	"CREATE TABLE instances_devices (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,\n"
	"	name TEXT NOT NULL,\n"
	"	UNIQUE (instance_id, name)\n"
	");\n"
	"CREATE TABLE instances_devices_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_device_id INTEGER NOT NULL\n"
	"		REFERENCES instances_devices (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (instance_device_id, key)\n"
	");\n"
	/* apply_order is the position in the instance's list: profiles apply in that order, later
	 * ones overriding earlier ones, so the order is data, not presentation. */
	"CREATE TABLE instances_profiles (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,\n"
	"	profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE RESTRICT,\n"
	"	apply_order INTEGER NOT NULL,\n"
	"	UNIQUE (instance_id, profile_id),\n"
	"	UNIQUE (instance_id, apply_order)\n"
	");\n"
	/* For "which instances use profile p", asked on every profile delete and GET. */
	"CREATE INDEX instances_profiles_profile_id ON instances_profiles (profile_id);\n";

/* v2: images, their properties and aliases. */
static const char schema_v2[] =
	"CREATE TABLE images (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	fingerprint TEXT NOT NULL UNIQUE,\n"
	"	filename TEXT NOT NULL DEFAULT '',\n"
	"	size INTEGER NOT NULL DEFAULT 0,\n"
	"	public INTEGER NOT NULL DEFAULT 0,\n"
	"	architecture TEXT NOT NULL DEFAULT '',\n"
	"	type TEXT NOT NULL DEFAULT 'container'\n"
	"		CHECK (type IN ('container', 'virtual-machine')),\n"
	"	created_at INTEGER NOT NULL DEFAULT 0,\n"
	"	uploaded_at INTEGER NOT NULL DEFAULT 0,\n"
	"	expires_at INTEGER NOT NULL DEFAULT 0,\n"
	"	last_used_at INTEGER NOT NULL DEFAULT 0,\n"
	"	auto_update INTEGER NOT NULL DEFAULT 0,\n"
	"	cached INTEGER NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE TABLE images_properties (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (image_id, key)\n"
	");\n"
	"CREATE TABLE images_aliases (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	name TEXT NOT NULL UNIQUE,\n"
	"	image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,\n"
	"	description TEXT NOT NULL DEFAULT ''\n"
	");\n"
	"CREATE INDEX images_aliases_image_id ON images_aliases (image_id);\n";

/* v3: instance snapshots, storage pools and volumes, networks. */
static const char schema_v3[] =
	"CREATE TABLE instances_snapshots (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,\n"
	"	name TEXT NOT NULL,\n"
	"	stateful INTEGER NOT NULL DEFAULT 0,\n"
	"	description TEXT NOT NULL DEFAULT '',\n"
	"	created_at INTEGER NOT NULL DEFAULT 0,\n"
	"	expires_at INTEGER NOT NULL DEFAULT 0,\n"
	"	UNIQUE (instance_id, name)\n"
	");\n"
	"CREATE TABLE instances_snapshots_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_snapshot_id INTEGER NOT NULL\n"
	"		REFERENCES instances_snapshots (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (instance_snapshot_id, key)\n"
	");\n"
	"CREATE TABLE instances_snapshots_devices (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_snapshot_id INTEGER NOT NULL\n"
	"		REFERENCES instances_snapshots (id) ON DELETE CASCADE,\n"
	"	name TEXT NOT NULL,\n"
	"	UNIQUE (instance_snapshot_id, name)\n"
	");\n"
	"CREATE TABLE instances_snapshots_devices_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_snapshot_device_id INTEGER NOT NULL\n"
	"		REFERENCES instances_snapshots_devices (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (instance_snapshot_device_id, key)\n"
	");\n"
	"CREATE TABLE storage_pools (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	name TEXT NOT NULL UNIQUE,\n"
	"	driver TEXT NOT NULL,\n"
	"	description TEXT NOT NULL DEFAULT ''\n"
	");\n"
	"CREATE TABLE storage_pools_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	storage_pool_id INTEGER NOT NULL REFERENCES storage_pools (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (storage_pool_id, key)\n"
	");\n"
	/* type is the volume's kind as LXD names it (container, virtual-machine, image, custom): an
	 * instance and a custom volume may share a name in one pool. */
	"CREATE TABLE storage_volumes (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	storage_pool_id INTEGER NOT NULL REFERENCES storage_pools (id) ON DELETE CASCADE,\n"
	"	name TEXT NOT NULL,\n"
	"	type TEXT NOT NULL,\n"
	"	content_type TEXT NOT NULL DEFAULT 'filesystem',\n"
	"	description TEXT NOT NULL DEFAULT '',\n"
	"	created_at INTEGER NOT NULL DEFAULT 0,\n"
	"	UNIQUE (storage_pool_id, name, type)\n"
	");\n"
	"CREATE TABLE storage_volumes_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	storage_volume_id INTEGER NOT NULL\n"
	"		REFERENCES storage_volumes (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (storage_volume_id, key)\n"
	");\n"
	"CREATE TABLE networks (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	name TEXT NOT NULL UNIQUE,\n"
	"	type TEXT NOT NULL DEFAULT 'bridge',\n"
	"	description TEXT NOT NULL DEFAULT ''\n"
	");\n"
	"CREATE TABLE networks_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	network_id INTEGER NOT NULL REFERENCES networks (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (network_id, key)\n"
	");\n";

/* v4: the default profile, which instances get when they name none and which cannot be renamed or
 * deleted. OR IGNORE keeps a "default" an admin made by hand on an older version. */
static const char schema_v4[] = "INSERT OR IGNORE INTO profiles (name, description) VALUES "
				"('default', 'Default lxm profile');\n";

/* v5: where an image was pulled from (LXD's update_source), one row per image that has one:
 * the image server, its protocol, the alias asked for and the certificate trusted for it. */
static const char schema_v5[] =
	"CREATE TABLE images_source (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	image_id INTEGER NOT NULL UNIQUE REFERENCES images (id) ON DELETE CASCADE,\n"
	"	server TEXT NOT NULL,\n"
	"	protocol TEXT NOT NULL,\n"
	"	alias TEXT NOT NULL DEFAULT '',\n"
	"	certificate TEXT NOT NULL DEFAULT ''\n"
	");\n";

/* v6: a snapshot keeps the profiles its instance applied when it was taken (a restore brings them
 * back; a profile deleted since drops out of the list), and the bytes its files took when taken
 * (-1: unknown). */
static const char schema_v6[] =
	"CREATE TABLE instances_snapshots_profiles (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	instance_snapshot_id INTEGER NOT NULL\n"
	"		REFERENCES instances_snapshots (id) ON DELETE CASCADE,\n"
	"	profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,\n"
	"	apply_order INTEGER NOT NULL,\n"
	"	UNIQUE (instance_snapshot_id, profile_id),\n"
	"	UNIQUE (instance_snapshot_id, apply_order)\n"
	");\n"
	"ALTER TABLE instances_snapshots ADD COLUMN size INTEGER NOT NULL DEFAULT -1;\n";

/* v7: snapshots of custom storage volumes (their files are the storage driver's, at
 * <pool>/custom-snapshots/<volume>/<snapshot>); they go with their volume. */
static const char schema_v7[] =
	"CREATE TABLE storage_volumes_snapshots (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	storage_volume_id INTEGER NOT NULL\n"
	"		REFERENCES storage_volumes (id) ON DELETE CASCADE,\n"
	"	name TEXT NOT NULL,\n"
	"	description TEXT NOT NULL DEFAULT '',\n"
	"	created_at INTEGER NOT NULL DEFAULT 0,\n"
	"	UNIQUE (storage_volume_id, name)\n"
	");\n";

/* v8: network forwards (LXD's /1.0/networks/<net>/forwards): one row per listen address of a
 * network, its ports a JSON array as the API gives them; they go with their network. */
static const char schema_v8[] =
	"CREATE TABLE networks_forwards (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	network_id INTEGER NOT NULL REFERENCES networks (id) ON DELETE CASCADE,\n"
	"	listen_address TEXT NOT NULL,\n"
	"	description TEXT NOT NULL DEFAULT '',\n"
	"	ports TEXT NOT NULL DEFAULT '[]',\n"
	"	UNIQUE (network_id, listen_address)\n"
	");\n"
	"CREATE TABLE networks_forwards_config (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	network_forward_id INTEGER NOT NULL\n"
	"		REFERENCES networks_forwards (id) ON DELETE CASCADE,\n"
	"	key TEXT NOT NULL,\n"
	"	value TEXT NOT NULL,\n"
	"	UNIQUE (network_forward_id, key)\n"
	");\n";

/* v9: the trust store of the HTTPS listener: client certificates by sha256 fingerprint; read_only
 * is lxm's own (LXD 5.0 has only the "client" type): such a client may only read. */
static const char schema_v9[] =
	"CREATE TABLE certificates (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"	fingerprint TEXT NOT NULL UNIQUE,\n"
	"	type TEXT NOT NULL DEFAULT 'client' CHECK (type IN ('client')),\n"
	"	name TEXT NOT NULL,\n"
	"	certificate TEXT NOT NULL,\n"
	"	restricted INTEGER NOT NULL DEFAULT 0,\n"
	"	read_only INTEGER NOT NULL DEFAULT 0,\n"
	"	created_at INTEGER NOT NULL DEFAULT 0\n"
	");\n";

const struct db_migration db_migrations[] = {
	{ .version = 1, .what = "instances, profiles and config", .sql = schema_v1 },
	{ .version = 2, .what = "images and aliases", .sql = schema_v2 },
	{ .version = 3, .what = "snapshots, storage and networks", .sql = schema_v3 },
	{ .version = 4, .what = "default profile", .sql = schema_v4 },
	{ .version = 5, .what = "image sources", .sql = schema_v5 },
	{ .version = 6, .what = "snapshot profiles and size", .sql = schema_v6 },
	{ .version = 7, .what = "custom volume snapshots", .sql = schema_v7 },
	{ .version = 8, .what = "network forwards", .sql = schema_v8 },
	{ .version = 9, .what = "trusted certificates", .sql = schema_v9 },
};

const int lxm_db_schema_latest = (int)ARRAY_SIZE(db_migrations);
