/* Disk devices (lxmd/disks.c: which devices are mounted, what a change of them means) and the
 * custom volume rows (lxmd/db/db-storage.c: users, edits, snapshots). */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "lxmd/db/db.h"
#include "lxmd/disks.h"
#include "util.h"
#include "tests/unit/tap.h"

static int parse(const char *json, struct lxmd_disk *ret, char **ret_msg)
{
	_cleanup_json_ json_t *dev = json_loads(json, 0, NULL);
	struct lxm_error *err = NULL;
	int r;

	if (!dev)
		return -999;
	r = lxmd_disk_parse("d", dev, ret, &err);
	if (ret_msg)
		*ret_msg = err ? strdup(err->msg) : NULL;
	if (r >= 0) {
		/* The result points into dev: keep copies for the checks. */
		ret->path = ret->path ? strdup(ret->path) : NULL;
		ret->pool = ret->pool ? strdup(ret->pool) : NULL;
		ret->source = ret->source ? strdup(ret->source) : NULL;
	}
	lxm_error_free(err);
	return r;
}

static void disk_free(struct lxmd_disk *k)
{
	free((char *)k->path);
	free((char *)k->pool);
	free((char *)k->source);
	memset(k, 0, sizeof(*k));
}

static void test_parse(void)
{
	struct lxmd_disk k = { 0 };
	char *msg = NULL;

	is_int(parse("{\"type\": \"nic\", \"path\": \"/x\"}", &k, NULL), 0, "a nic is no disk");
	is_int(parse("{\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\"}", &k, NULL), 0,
	       "the root disk is not mounted as an extra disk");

	is_int(parse("{\"type\": \"disk\", \"path\": \"/mnt/v\", \"pool\": \"p\", \"source\": "
		     "\"v\"}",
		     &k, NULL),
	       1, "a custom volume");
	is_str(k.path, "/mnt/v", "its path");
	is_str(k.pool, "p", "its pool");
	is_str(k.source, "v", "its volume");
	ok(!k.readonly, "read-write by default");
	disk_free(&k);

	is_int(parse("{\"type\": \"disk\", \"path\": \"/srv\", \"source\": \"/data\", "
		     "\"readonly\": \"true\"}",
		     &k, NULL),
	       1, "a host directory");
	ok(k.pool == NULL, "no pool");
	is_str(k.source, "/data", "its host path");
	ok(k.readonly, "readonly=true");
	disk_free(&k);
	is_int(parse("{\"type\": \"disk\", \"path\": \"/srv\", \"source\": \"/data\", "
		     "\"readonly\": \"off\"}",
		     &k, NULL),
	       1, "readonly=off");
	ok(!k.readonly, "is read-write");
	disk_free(&k);

	is_int(parse("{\"type\": \"disk\", \"path\": \"/srv\", \"source\": \"/d\", \"readonly\": "
		     "\"maybe\"}",
		     &k, &msg),
	       -EINVAL, "a bad readonly value");
	ok(msg && strstr(msg, "disk device 'd'") && strstr(msg, "readonly=maybe"),
	   "names the device and the value: %s", msg);
	free(msg);
	is_int(parse("{\"type\": \"disk\", \"source\": \"/d\"}", &k, &msg), -EINVAL, "no path");
	ok(msg && strstr(msg, "no path"), "says so: %s", msg);
	free(msg);
	is_int(parse("{\"type\": \"disk\", \"path\": \"srv\", \"source\": \"/d\"}", &k, NULL),
	       -EINVAL, "a relative path");
	is_int(parse("{\"type\": \"disk\", \"path\": \"/srv/../etc\", \"source\": \"/d\"}", &k,
		     NULL),
	       -EINVAL, "a path with '..'");
	is_int(parse("{\"type\": \"disk\", \"path\": \"/srv\"}", &k, &msg), -EINVAL, "no source");
	ok(msg && strstr(msg, "no source"), "says so: %s", msg);
	free(msg);
	is_int(parse("{\"type\": \"disk\", \"path\": \"/srv\", \"source\": \"data\"}", &k, NULL),
	       -EINVAL, "a relative host path without a pool");
	is_int(parse("{\"type\": \"disk\", \"path\": \"/srv\", \"pool\": \"p\", \"source\": "
		     "\"v/snap\"}",
		     &k, NULL),
	       -EINVAL, "a volume snapshot");
}

static bool changed(const char *a, const char *b, const char **name)
{
	_cleanup_json_ json_t *x = json_loads(a, 0, NULL), *y = json_loads(b, 0, NULL);
	static char buf[64];
	const char *n = NULL;
	bool r = lxmd_disks_changed(x, y, &n);

	snprintf(buf, sizeof(buf), "%s", n ? n : "");
	if (name)
		*name = buf;
	return r;
}

static void test_changed(void)
{
	const char *root = "\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\"}";
	const char *eth = "\"eth0\": {\"type\": \"nic\", \"nictype\": \"bridged\"}";
	const char *vol = "\"v\": {\"type\": \"disk\", \"path\": \"/v\", \"pool\": \"p\", "
			  "\"source\": \"v\"}";
	char a[512], b[512];
	const char *name;

	snprintf(a, sizeof(a), "{%s, %s}", root, eth);
	snprintf(b, sizeof(b), "{%s}", root);
	ok(!changed(a, b, NULL), "a nic going away is no disk change");
	snprintf(b, sizeof(b), "{%s, %s, %s}", root, eth, vol);
	ok(changed(a, b, &name), "a volume added is");
	is_str(name, "v", "naming it");
	ok(changed(b, a, &name), "a volume removed is");
	is_str(name, "v", "naming it");
	ok(!changed(b, b, NULL), "the same devices are not");
	snprintf(a, sizeof(a),
		 "{%s, \"v\": {\"type\": \"disk\", \"path\": \"/w\", \"pool\": \"p\", \"source\": "
		 "\"v\"}}",
		 root);
	snprintf(b, sizeof(b), "{%s, %s}", root, vol);
	ok(changed(a, b, NULL), "a new path is");
	snprintf(a, sizeof(a),
		 "{%s, \"v\": {\"type\": \"disk\", \"path\": \"/v\", \"pool\": \"p\", \"source\": "
		 "\"v\", \"readonly\": \"false\"}}",
		 root);
	ok(!changed(a, b, NULL), "readonly=false spelled out is no change");
	snprintf(a, sizeof(a),
		 "{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"q\"}}");
	snprintf(b, sizeof(b), "{%s}", root);
	ok(!changed(a, b, NULL), "the root disk is not an extra disk");
}

static char tmpdir[] = "/tmp/lxm-test-disks-XXXXXX";

static void test_db(void)
{
	_cleanup_db_ struct lxm_db *db = NULL;
	_cleanup_free_ char *path = NULL;
	struct lxm_db_storage_pool pool = { .name = (char *)"p", .driver = (char *)"dir" };
	struct lxm_db_storage_volume v = { .pool = (char *)"p",
					   .type = (char *)"custom",
					   .name = (char *)"v" };
	struct lxm_db_instance inst = { .name = (char *)"c", .type = (char *)"container" };
	struct lxm_db_volume_snapshot s = { .name = (char *)"s0", .description = (char *)"first" };
	_cleanup_db_storage_volume_ struct lxm_db_storage_volume *got = NULL;
	_cleanup_db_volume_snapshot_ struct lxm_db_volume_snapshot *gs = NULL;
	struct lxm_db_volume_snapshot **list = NULL;
	struct lxm_error *err = NULL;
	char **users = NULL;
	size_t n = 0;
	int r;

	if (!mkdtemp(tmpdir) || asprintf(&path, "%s/db.sqlite", tmpdir) < 0) {
		ok(0, "temporary directory");
		return;
	}
	r = lxm_db_open(path, &db, &err);
	is_int(r, 0, "open a database");
	if (r < 0)
		return;
	is_int(lxm_db_storage_pool_create(db, &pool, &err), 0, "pool");
	is_int(lxm_db_storage_volume_create(db, &v, &err), 0, "volume");

	is_int(lxm_db_storage_volume_used_by(db, "p", "v", &users, &err), 0, "no users yet");
	lxm_strv_free(users);
	users = NULL;
	inst.devices = json_pack("{s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:s}}", "data", "type",
				 "disk", "pool", "p", "source", "v", "path", "/data", "other",
				 "type", "disk", "pool", "p", "source", "w", "path", "/w");
	is_int(lxm_db_instance_create(db, &inst, NULL, &err), 0, "an instance using it");
	json_decref(inst.devices);
	is_int(lxm_db_storage_volume_used_by(db, "p", "v", &users, &err), 1, "one user");
	ok(users && users[0] && streq(users[0], "c") && !users[1], "the instance");
	lxm_strv_free(users);
	users = NULL;
	is_int(lxm_db_storage_volume_used_by(db, "q", "v", &users, &err), 0,
	       "a volume of that name in another pool has none");
	lxm_strv_free(users);

	json_t *config = json_pack("{s:s}", "size", "1GiB");
	is_int(lxm_db_storage_volume_update(db, "p", "custom", "v", "desc", config, &err), 0,
	       "update");
	json_decref(config);
	is_int(lxm_db_storage_volume_get(db, "p", "custom", "v", &got, &err), 0, "read back");
	ok(got && streq(got->description, "desc") &&
		   streq(json_string_value(json_object_get(got->config, "size")), "1GiB"),
	   "description and config replaced");

	is_int(lxm_db_volume_snapshot_create(db, "p", "v", &s, &err), 0, "snapshot");
	is_int(lxm_db_volume_snapshot_create(db, "p", "v", &s, &err), -EEXIST, "twice: 409");
	ok(err && err->status == 409 && strstr(err->msg, "already exists"), "says so");
	lxm_error_free(TAKE_PTR(err));
	is_int(lxm_db_volume_snapshot_create(db, "p", "nope", &s, &err), -ENOENT,
	       "of a missing volume: 404");
	lxm_error_free(TAKE_PTR(err));
	s.name = (char *)"s1";
	is_int(lxm_db_volume_snapshot_create(db, "p", "v", &s, &err), 0, "another");
	is_int(lxm_db_volume_snapshot_list(db, "p", "v", &list, &n, &err), 0, "list");
	ok(n == 2 && streq(list[0]->name, "s0") && streq(list[1]->name, "s1"),
	   "both, oldest first");
	lxm_db_volume_snapshot_list_free(list, n);
	is_int(lxm_db_volume_snapshot_get(db, "p", "v", "s0", &gs, &err), 0, "get one");
	ok(gs && streq(gs->description, "first") && gs->created_at > 0, "with its fields");

	is_int(lxm_db_storage_volume_rename(db, "p", "custom", "v", "w", &err), 0, "rename");
	is_int(lxm_db_volume_snapshot_list(db, "p", "w", &list, &n, &err), 0,
	       "snapshots follow the volume");
	is_int((int)n, 2, "both");
	lxm_db_volume_snapshot_list_free(list, n);
	is_int(lxm_db_volume_snapshot_delete(db, "p", "w", "s0", &err), 0, "delete a snapshot");
	is_int(lxm_db_volume_snapshot_delete(db, "p", "w", "s0", &err), -ENOENT, "gone: 404");
	lxm_error_free(TAKE_PTR(err));
	is_int(lxm_db_storage_volume_delete(db, "p", "custom", "w", &err), 0, "delete the volume");
	is_int(lxm_db_storage_volume_create(db, &v, &err), 0, "make 'v' again");
	is_int(lxm_db_storage_volume_rename(db, "p", "custom", "v", "w", &err), 0, "as 'w'");
	is_int(lxm_db_volume_snapshot_list(db, "p", "w", &list, &n, &err), 0,
	       "the deleted volume's snapshots went with it");
	is_int((int)n, 0, "none");
	lxm_db_volume_snapshot_list_free(list, n);
	lxm_error_free(err);
}

int main(void)
{
	test_parse();
	test_changed();
	test_db();
	if (tmpdir[strlen(tmpdir) - 1] != 'X') {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			ok(0, "remove %s", tmpdir);
	}
	return tap_done();
}
