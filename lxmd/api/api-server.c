/* GET / and GET /1.0: the API versions and the server description clients read first. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "json.h"
#include "pools.h"
#include "server.h"
#include "util.h"

/* Only what lxmd really implements: an extension promises clients a behaviour. */
static const char *const api_extensions[] = {
	"etag",		     /* ETag on profiles, If-Match checked on PUT/PATCH */
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

int lxmd_api_server_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_json_ json_t *ext = json_array(), *config = NULL, *env = NULL, *meta = NULL;
	_cleanup_free_ char *storage = lxmd_pools_drivers_in_use(r->d);
	char host[256] = "", osname[64], osver[64];
	struct utsname u;
	int k;

	for (size_t i = 0; i < ARRAY_SIZE(api_extensions); i++)
		json_array_append_new(ext, json_string(api_extensions[i]));
	k = lxm_db_config_get_all(r->d->db, &config, err);
	if (k < 0)
		return lxm_error_prefix(err, "read server config");
	uname(&u);
	gethostname(host, sizeof(host) - 1);
	os_release(osname, osver);

	env = json_pack("{s:[], s:[s], s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:s, s:s,"
			" s:b, s:s, s:i, s:s, s:s, s:s, s:o}",
			"addresses", "architectures", u.machine, "certificate", "",
			"certificate_fingerprint", "", "driver", "lxm", "driver_version",
			PACKAGE_VERSION, "firewall", "nftables", "kernel", u.sysname,
			"kernel_features", r->d->kernel_features, "kernel_architecture", u.machine,
			"kernel_version", u.release, "os_name", osname, "os_version", osver,
			"project", "default", "server_clustered", false, "server_name", host,
			"server_pid", (int)getpid(), "server_version", PACKAGE_VERSION, "server",
			"lxmd", "storage", storage ? storage : "", "storage_supported_drivers",
			lxmd_pools_supported_drivers(r->d));
	if (!env)
		return -ENOMEM;
	meta = json_pack("{s:O, s:s, s:s, s:s, s:b, s:[s], s:O, s:O}", "config", config,
			 "api_status", "stable", "api_version", "1.0", "auth", "trusted", "public",
			 false, "auth_methods", "tls", "api_extensions", ext, "environment", env);
	if (!meta)
		return -ENOMEM;
	return lxmd_respond_sync(r, TAKE_PTR(meta), NULL);
}
