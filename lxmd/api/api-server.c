/* GET / and GET /1.0: the API versions and the server description clients read first; PUT and
 * PATCH /1.0: the server's config (the keys of server-config.h), guarded by GET's ETag. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "api.h"
#include "certificates.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "json.h"
#include "events.h"
#include "pools.h"
#include "server-config.h"
#include "server.h"
#include "util.h"
#include "vm/accel.h"

/* Only what lxmd really implements: an extension promises clients a behaviour. */
static const char *const api_extensions[] = {
	"etag",		     /* ETag on profiles and /1.0, If-Match checked on PUT/PATCH */
	"instances",	     /* the /1.0/instances tree (and /1.0/containers) */
	"api_filtering",     /* ?filter= on instance lists */
	"container_full",    /* ?recursion=2 on instance lists */
	"instance_get_full", /* ?recursion=1 on one instance gives state and snapshots */
	/* .../files: DELETE; X-LXD-write: append; X-LXD-type: directory (push and listings on
	 * pull); X-LXD-type: symlink (push and pull) */
	"file_delete",
	"file_append",
	"directory_manipulation",
	"file_symlinks",

	/* exec's "user", "group" and "cwd" (lxc needs it for --user, --group, --cwd) */
	"container_exec_user_group_cwd",
	/* POST .../console with websockets "0" and "control"; GET/DELETE of the console log */
	"console",
	/* "aliases" in POST /1.0/images */
	"image_create_aliases",
	/* /1.0/storage-pools: create, update, delete, resources, volume lists */
	"storage",
	/* custom volumes: POST .../volumes/custom/<v> {name} renames; .../snapshots (create and
	 * delete answer with operations), PUT {"restore"} */
	"storage_api_volume_rename",
	"storage_api_volume_snapshots",
	/* /1.0/networks: create, update (PUT/PATCH), rename (POST {name}), delete; .../leases;
	 * .../state; .../forwards with port ranges and a default target_address */
	"network",
	"network_leases",
	"network_state",
	"network_forward",
	/* POST /1.0/certificates {"token": true}: join tokens as running "token" operations */
	"certificate_token",
};

int lxmd_api_root_get(struct lxmd_request *r, struct lxm_error **err)
{
	return lxmd_respond_sync(r, json_pack("[s]", "/1.0"), NULL);
}

/* PRETTY_NAME-less os-release reading: NAME and VERSION_ID, as LXD reports os_name/os_version. */
static void os_release(char name[64], char version[64])
{
	_cleanup_fclose_ FILE *f = fopen("/etc/os-release", "re");
	char line[256];

	snprintf(name, 64, "Linux");
	version[0] = '\0';
	while (f && fgets(line, sizeof(line), f)) {
		char *v = strchr(line, '=');

		if (!v)
			continue;
		*v++ = '\0';
		v[strcspn(v, "\n")] = '\0';
		if (*v == '"') {
			v++;
			v[strcspn(v, "\"")] = '\0';
		}
		if (streq(line, "NAME"))
			snprintf(name, 64, "%s", v);
		else if (streq(line, "VERSION_ID"))
			snprintf(version, 64, "%s", v);
	}
}

/* What an untrusted client sees: LXD's ServerUntrusted fields only. */
static int server_get_untrusted(struct lxmd_request *r)
{
	_cleanup_json_ json_t *ext = json_array();

	if (!ext)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(api_extensions); i++)
		json_array_append_new(ext, json_string(api_extensions[i]));
	return lxmd_respond_sync(r,
				 json_pack("{s:O, s:s, s:s, s:s, s:b, s:[s]}", "api_extensions",
					   ext, "api_status", "stable", "api_version", "1.0",
					   "auth", "untrusted", "public", false, "auth_methods",
					   "tls"),
				 NULL);
}

int lxmd_api_server_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_json_ json_t *ext = json_array(), *config = NULL, *env = NULL, *meta = NULL;
	_cleanup_free_ char *storage = lxmd_pools_drivers_in_use(r->d);
	char host[256] = "", osname[64], osver[64], etag[65];
	_cleanup_free_ char *pem = NULL;
	char fp[65] = "";
	struct utsname u;
	int k;

	if (r->untrusted)
		return server_get_untrusted(r);
	lxmd_server_cert_read(r->d, &pem, fp);
	for (size_t i = 0; i < ARRAY_SIZE(api_extensions); i++)
		json_array_append_new(ext, json_string(api_extensions[i]));
	k = lxm_db_config_get_all(r->d->db, &config, err);
	if (k < 0)
		return lxm_error_prefix(err, "read server config");
	uname(&u);
	gethostname(host, sizeof(host) - 1);
	os_release(osname, osver);

	env = json_pack("{s:o, s:[s], s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:s, s:s,"
			" s:b, s:s, s:i, s:s, s:s, s:s, s:o}",
			"addresses", lxmd_https_addresses(r->d), "architectures", u.machine,
			"certificate", pem ? pem : "", "certificate_fingerprint", fp, "driver",
			"lxm", "driver_version", PACKAGE_VERSION, "firewall", "nftables", "kernel",
			u.sysname, "kernel_features", r->d->kernel_features, "kernel_architecture",
			u.machine, "kernel_version", u.release, "os_name", osname, "os_version",
			osver, "project", "default", "server_clustered", false, "server_name", host,
			"server_pid", (int)getpid(), "server_version", PACKAGE_VERSION, "server",
			"lxmd", "storage", storage ? storage : "", "storage_supported_drivers",
			lxmd_pools_supported_drivers(r->d));
	if (!env || lxmd_vm_accel_to_env(r->d, env) < 0)
		return -ENOMEM;
	meta = json_pack("{s:O, s:s, s:s, s:s, s:b, s:[s], s:O, s:O}", "config", config,
			 "api_status", "stable", "api_version", "1.0", "auth", "trusted", "public",
			 false, "auth_methods", "tls", "api_extensions", ext, "environment", env);
	if (!meta)
		return -ENOMEM;
	/* The config is the only writable part: its hash is the ETag a PUT must match. */
	if ((k = lxmd_etag(config, etag)) < 0)
		return k;
	return lxmd_respond_sync(r, TAKE_PTR(meta), etag);
}

/* Stores config in place of old: the keys it drops are removed, all in one transaction. */
static int store_config(struct lxmd *d, const json_t *old, const json_t *config,
			struct lxm_error **err)
{
	const char *key;
	json_t *v;
	int k;

	if ((k = lxm_db_begin(d->db, err)) < 0)
		return k;
	json_object_foreach ((json_t *)old, key, v)
		if (!json_object_get(config, key) &&
		    (k = lxm_db_config_set(d->db, key, NULL, err)) < 0)
			goto fail;
	json_object_foreach ((json_t *)config, key, v)
		if (!json_equal(v, json_object_get(old, key)) &&
		    (k = lxm_db_config_set(d->db, key, json_string_value(v), err)) < 0)
			goto fail;
	return lxm_db_commit(d->db, err);
fail:
	lxm_db_rollback(d->db, NULL);
	return k;
}

/* PUT replaces the config with the body's (what it leaves out is removed); PATCH merges the
 * body's into it ("" or null removes a key). */
static int server_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_json_ json_t *old = NULL, *config = NULL;
	json_t *in = NULL;
	const char *was, *now;
	char etag[65];
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "update server config: request body is empty");
	if ((k = lxm_db_config_get_all(r->d->db, &old, err)) < 0)
		return lxm_error_prefix(err, "update server config");
	if ((k = lxmd_etag(old, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "config", &in, err)) < 0 ||
	    (k = lxm_server_config_update(old, in, patch, &config, err)) < 0)
		return lxm_error_prefix(err, "update server config");
	/* The listener moves first: an address it cannot bind is refused and not stored. */
	was = lxm_server_config_value(old, LXM_KEY_HTTPS_ADDRESS);
	now = lxm_server_config_value(config, LXM_KEY_HTTPS_ADDRESS);
	if (!streq(was, now) && (k = lxmd_https_set(r->d, now, err)) < 0)
		return lxm_error_prefix(err, "update server config");
	if ((k = store_config(r->d, old, config, err)) < 0) {
		if (!streq(was, now))
			lxmd_https_set(r->d, was, NULL);
		return lxm_error_prefix(err, "update server config");
	}
	lxmd_server_config_changed(r->d, old, config);
	lxm_events_lifecycle(r->d->events, "config-updated", "/1.0", NULL);
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_server_put(struct lxmd_request *r, struct lxm_error **err)
{
	return server_update(r, false, err);
}

int lxmd_api_server_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return server_update(r, true, err);
}
