/* The state database: opening and pragmas, profile and instance CRUD with their error statuses,
 * server config, transactions, and migrating a database from every earlier schema version. Every
 * database lives in a temporary directory that the test removes. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "lxmd/db/db.h"
#include "util.h"
#include "tests/unit/tap.h"

static char tmpdir[] = "/tmp/lxm-test-db-XXXXXX";

/* A path inside the temporary directory; the result is static, used before the next call. */
static const char *tpath(const char *name)
{
	static char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
	return buf;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* The first column of the first row of sql as an integer, -1 when there is no row or it fails. */
static long long q_int(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	long long v = -1;

	if (sqlite3_prepare_v2(h, sql, -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW)
		v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

/* The first column of the first row of sql as text (caller frees), NULL when there is none. */
static char *q_str(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	char *v = NULL;

	if (sqlite3_prepare_v2(h, sql, -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
		v = strdup((const char *)sqlite3_column_text(stmt, 0));
	sqlite3_finalize(stmt);
	return v;
}

static bool q_exec(sqlite3 *h, const char *sql)
{
	int rc = sqlite3_exec(h, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		printf("#   sql failed: %s: %s\n", sql, sqlite3_errmsg(h));
	return rc == SQLITE_OK;
}

/* For statements that must fail: true when sqlite refused sql with a constraint error. */
static bool q_refused(sqlite3 *h, const char *sql)
{
	return (sqlite3_exec(h, sql, NULL, NULL, NULL) & 0xff) == SQLITE_CONSTRAINT;
}

/* "a,b,c" for a strv, to compare lists in one is_str(). */
static char *joined(char **v)
{
	static char buf[1024];

	buf[0] = '\0';
	for (char **s = v; s && *s; s++) {
		if (s != v)
			strcat(buf, ",");
		strncat(buf, *s, sizeof(buf) - strlen(buf) - 2);
	}
	return buf;
}

/* Checks an error: errno, HTTP status and a piece of the message; frees it. */
static void check_err(int r, struct lxm_error **err, int want_r, int want_status,
		      const char *want_msg, const char *what)
{
	struct lxm_error *e = *err;
	int good = r == want_r && e && e->status == want_status && strstr(e->msg, want_msg);

	ok(good, "%s: %d/%d \"%s\"", what, want_r, want_status, want_msg);
	if (!good)
		printf("#   got r=%d status=%d msg=\"%s\"\n", r, e ? e->status : 0,
		       e ? e->msg : "(no error)");
	lxm_error_free(e);
	*err = NULL;
}

static bool json_eq(json_t *a, const char *want_json)
{
	json_t *b = json_loads(want_json, 0, NULL);
	bool eq = a && b && json_equal(a, b);

	if (!eq) {
		char *s = a ? json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

		printf("#   got %s, want %s\n", s ? s : "(null)", want_json);
		free(s);
	}
	json_decref(b);
	return eq;
}

static void test_fresh(void)
{
	_cleanup_db_profile_ struct lxm_db_profile *p = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_db_ struct lxm_db *db = NULL;
	_cleanup_free_ char *mode = NULL;
	char link[PATH_MAX];
	int r, fds = 0, cloexec = 0;
	struct dirent *de;
	DIR *d;

	r = lxm_db_open(tpath("fresh.db"), &db, &err);
	is_int(r, 0, "open a fresh database");
	if (r < 0) {
		printf("#   %s\n", err->msg);
		return;
	}
	is_int(lxm_db_schema_version(db), lxm_db_schema_latest, "fresh database is at latest");
	is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM schema"), lxm_db_schema_latest,
	       "schema table has one row per migration");
	is_int(q_int(lxm_db_handle(db), "SELECT MIN(applied_at) > 1600000000000000000 FROM schema"),
	       1, "applied_at is in unix nanoseconds");
	is_int(q_int(lxm_db_handle(db), "PRAGMA foreign_keys"), 1, "foreign keys are on");
	is_int(q_int(lxm_db_handle(db), "PRAGMA synchronous"), 2, "synchronous is FULL");
	mode = q_str(lxm_db_handle(db), "PRAGMA journal_mode");
	is_str(mode, "wal", "journal mode is WAL");
	ok(!exists(tpath("fresh.db.bak-v0")), "no backup of a fresh database");

	r = lxm_db_profile_get(db, "default", &p, &err);
	is_int(r, 0, "default profile exists");
	is_str(p ? p->description : NULL, "Default lxm profile", "default profile description");

	/* Every descriptor sqlite holds on the database files must be close-on-exec. */
	d = opendir("/proc/self/fd");
	while (d && (de = readdir(d))) {
		ssize_t n;

		n = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, tmpdir, strlen(tmpdir)) != 0)
			continue;
		fds++;
		if (fcntl(atoi(de->d_name), F_GETFD) & FD_CLOEXEC)
			cloexec++;
	}
	if (d)
		closedir(d);
	ok(fds >= 2, "sqlite holds descriptors on the database and its WAL (%d)", fds);
	is_int(cloexec, fds, "every database descriptor is close-on-exec");
}

static void test_open_errors(void)
{
	struct lxm_error *err = NULL;
	struct lxm_db *db = NULL;
	int r;

	r = lxm_db_open(tpath("missing-dir/x.db"), &db, &err);
	ok(r < 0 && !db, "open in a missing directory fails");
	ok(err && strstr(err->msg, "open database '") && strstr(err->msg, "missing-dir/x.db"),
	   "the message names the database: %s", err ? err->msg : "(none)");
	lxm_error_free(err);
	err = NULL;

	r = lxm_db_open_at_version(tpath("x.db"), lxm_db_schema_latest + 1, &db, &err);
	check_err(r, &err, -EINVAL, 500, "no schema version", "open at an unknown version");
	ok(!exists(tpath("x.db")), "nothing created for an unknown version");
}

static struct lxm_db_profile *profile_new(const char *name, const char *desc, const char *config,
					  const char *devices)
{
	struct lxm_db_profile *p = calloc(1, sizeof(*p));

	p->name = strdup(name);
	p->description = desc ? strdup(desc) : NULL;
	p->config = config ? json_loads(config, 0, NULL) : NULL;
	p->devices = devices ? json_loads(devices, 0, NULL) : NULL;
	return p;
}

static void test_profiles(struct lxm_db *db)
{
	struct lxm_db_profile *p =
		profile_new("p1", "first", "{\"limits.cpu\":\"2\",\"security.nesting\":\"true\"}",
			    "{\"eth0\":{\"type\":\"nic\",\"network\":\"lxmbr0\"},\"empty\":{}}");
	struct lxm_db_profile *got = NULL, *bad;
	struct lxm_error *err = NULL;
	char **names = NULL;
	int r;

	is_int(lxm_db_profile_create(db, p, &err), 0, "create profile p1");
	r = lxm_db_profile_get(db, "p1", &got, &err);
	is_int(r, 0, "get profile p1");
	if (r < 0)
		return;
	is_str(got->name, "p1", "profile name round trip");
	is_str(got->description, "first", "profile description round trip");
	ok(json_eq(got->config, "{\"limits.cpu\":\"2\",\"security.nesting\":\"true\"}"),
	   "profile config round trip");
	ok(json_eq(got->devices, "{\"eth0\":{\"type\":\"nic\",\"network\":\"lxmbr0\"},"
				 "\"empty\":{}}"),
	   "profile devices round trip, a device without keys included");
	lxm_db_profile_free(got);
	got = NULL;

	check_err(lxm_db_profile_create(db, p, &err), &err, -EEXIST, 409,
		  "profile 'p1' already exists", "duplicate profile");
	check_err(lxm_db_profile_get(db, "nope", &got, &err), &err, -ENOENT, 404,
		  "profile 'nope' not found", "missing profile");
	ok(!got, "no result for a missing profile");

	bad = profile_new("a0", NULL, NULL, NULL);
	is_int(lxm_db_profile_create(db, bad, &err), 0, "create profile a0 with no config");
	lxm_db_profile_free(bad);
	r = lxm_db_profile_names(db, &names, &err);
	is_int(r, 3, "three profiles");
	is_str(joined(names), "a0,default,p1", "profile names are sorted");
	lxm_strv_free(names);

	bad = profile_new("bad", NULL, "{\"limits.memory\":5}", NULL);
	check_err(lxm_db_profile_create(db, bad, &err), &err, -EINVAL, 400,
		  "config key 'limits.memory': value is not a string", "non-string config value");
	lxm_db_profile_free(bad);
	bad = profile_new("bad", NULL, NULL, "{\"root\":{\"size\":true}}");
	check_err(lxm_db_profile_create(db, bad, &err), &err, -EINVAL, 400,
		  "device 'root' key 'size': value is not a string", "non-string device value");
	lxm_db_profile_free(bad);
	bad = profile_new("bad", NULL, NULL, "{\"root\":\"disk\"}");
	check_err(lxm_db_profile_create(db, bad, &err), &err, -EINVAL, 400,
		  "device 'root' is not an object", "device that is not an object");
	lxm_db_profile_free(bad);
	check_err(lxm_db_profile_get(db, "bad", &got, &err), &err, -ENOENT, 404, "not found",
		  "refused profiles were not created");

	/* Update replaces everything, old keys and devices included. */
	json_decref(p->config);
	json_decref(p->devices);
	free(p->description);
	p->description = strdup("changed");
	p->config = json_pack("{s:s}", "limits.memory", "1GiB");
	p->devices = json_pack("{s:{s:s}}", "root", "type", "disk");
	is_int(lxm_db_profile_update(db, "p1", p, &err), 0, "update profile p1");
	r = lxm_db_profile_get(db, "p1", &got, &err);
	is_int(r, 0, "get updated p1");
	if (r >= 0) {
		is_str(got->description, "changed", "updated description");
		ok(json_eq(got->config, "{\"limits.memory\":\"1GiB\"}"), "config replaced");
		ok(json_eq(got->devices, "{\"root\":{\"type\":\"disk\"}}"), "devices replaced");
		lxm_db_profile_free(got);
		got = NULL;
	}
	check_err(lxm_db_profile_update(db, "nope", p, &err), &err, -ENOENT, 404,
		  "profile 'nope' not found", "update a missing profile");

	check_err(lxm_db_profile_rename(db, "default", "x", &err), &err, -EPERM, 403,
		  "default profile cannot be renamed", "rename default refused");
	check_err(lxm_db_profile_delete(db, "default", &err), &err, -EPERM, 403,
		  "default profile cannot be deleted", "delete default refused");
	check_err(lxm_db_profile_rename(db, "p1", "a0", &err), &err, -EEXIST, 409,
		  "profile 'a0' already exists", "rename onto an existing profile");
	check_err(lxm_db_profile_rename(db, "nope", "x", &err), &err, -ENOENT, 404,
		  "profile 'nope' not found", "rename a missing profile");
	is_int(lxm_db_profile_rename(db, "p1", "p2", &err), 0, "rename p1 to p2");
	check_err(lxm_db_profile_get(db, "p1", &got, &err), &err, -ENOENT, 404, "'p1' not found",
		  "old name gone");
	r = lxm_db_profile_get(db, "p2", &got, &err);
	ok(r == 0 && json_eq(got->config, "{\"limits.memory\":\"1GiB\"}"),
	   "renamed profile keeps its config");
	lxm_db_profile_free(got);
	check_err(lxm_db_profile_delete(db, "nope", &err), &err, -ENOENT, 404,
		  "profile 'nope' not found", "delete a missing profile");
	check_err(lxm_db_profile_used_by(db, "nope", &names, &err), &err, -ENOENT, 404,
		  "profile 'nope' not found", "used_by of a missing profile");

	/* Deleting a profile takes its config, devices and device config with it. */
	is_int(lxm_db_profile_delete(db, "a0", &err), 0, "delete unused profile a0");
	lxm_db_profile_free(p);
	p = profile_new("gone", NULL, "{\"k\":\"v\"}", "{\"d\":{\"a\":\"b\"}}");
	lxm_db_profile_create(db, p, &err);
	is_int(lxm_db_profile_delete(db, "gone", &err), 0, "delete profile with children");
	is_int(q_int(lxm_db_handle(db),
		     "SELECT (SELECT COUNT(*) FROM profiles_config WHERE key = 'k') +\n"
		     "	(SELECT COUNT(*) FROM profiles_devices WHERE name = 'd') +\n"
		     "	(SELECT COUNT(*) FROM profiles_devices_config WHERE key = 'a')"),
	       0, "profile children deleted by cascade");
	lxm_db_profile_free(p);
	lxm_error_free(err);
}

static struct lxm_db_instance *instance_new(const char *name, const char *profiles,
					    const char *config, const char *devices)
{
	struct lxm_db_instance *i = calloc(1, sizeof(*i));

	i->name = strdup(name);
	i->type = strdup("container");
	i->architecture = strdup("x86_64");
	i->description = strdup("an instance");
	i->profiles = profiles ? json_loads(profiles, 0, NULL) : NULL;
	i->config = config ? json_loads(config, 0, NULL) : NULL;
	i->devices = devices ? json_loads(devices, 0, NULL) : NULL;
	return i;
}

static void test_instance_errors(struct lxm_db *db)
{
	struct lxm_db_instance *i = instance_new("c9", "[\"default\",\"ghost\"]", NULL, NULL);
	struct lxm_db_instance *got = NULL;
	struct lxm_error *err = NULL;
	int64_t id = -1;

	check_err(lxm_db_instance_create(db, i, &id, &err), &err, -ENOENT, 404,
		  "create instance 'c9': profile 'ghost' not found", "missing profile refused");
	is_int(id, -1, "no id for a refused instance");
	check_err(lxm_db_instance_get(db, "c9", &got, &err), &err, -ENOENT, 404,
		  "instance 'c9' not found", "refused instance left nothing");
	is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM instances_profiles ip\n"
					"	LEFT JOIN instances i ON i.id = ip.instance_id\n"
					"	WHERE i.id IS NULL"),
	       0, "no orphan profile links");

	json_decref(i->profiles);
	i->profiles = json_pack("[ss]", "default", "default");
	check_err(lxm_db_instance_create(db, i, NULL, &err), &err, -EINVAL, 400,
		  "profile 'default' is listed twice", "duplicate profile refused");
	json_decref(i->profiles);
	i->profiles = json_pack("[i]", 1);
	check_err(lxm_db_instance_create(db, i, NULL, &err), &err, -EINVAL, 400,
		  "profiles[0] is not a string", "non-string profile refused");
	json_decref(i->profiles);
	i->profiles = NULL;
	i->config = json_pack("{s:b}", "boot.autostart", 1);
	check_err(lxm_db_instance_create(db, i, NULL, &err), &err, -EINVAL, 400,
		  "config key 'boot.autostart': value is not a string", "non-string config");
	json_decref(i->config);
	i->config = NULL;
	free(i->type);
	i->type = strdup("chroot");
	check_err(lxm_db_instance_create(db, i, NULL, &err), &err, -EINVAL, 400,
		  "create instance 'c9': insert: CHECK constraint failed", "unknown type refused");
	lxm_db_instance_free(i);
}

static void test_instances(struct lxm_db *db)
{
	struct lxm_db_instance *c1 = instance_new(
		"c1", "[\"default\",\"p2\"]", "{\"limits.cpu\":\"1\",\"user.x\":\"y\"}",
		"{\"root\":{\"type\":\"disk\",\"path\":\"/\",\"pool\":\"default\"}}");
	struct lxm_db_instance *c2 = instance_new("c2", "[\"p2\",\"default\"]", NULL, NULL);
	struct lxm_db_instance *got = NULL;
	struct lxm_error *err = NULL;
	char **names = NULL;
	int64_t id1 = 0, id2 = 0;
	sqlite3 *h = lxm_db_handle(db);
	int r;

	c1->ephemeral = true;
	c1->stateful = true;
	c1->last_used_at = 1234;
	is_int(lxm_db_instance_create(db, c1, &id1, &err), 0, "create c1");
	ok(id1 > 0, "c1 has an id");
	free(c2->type);
	c2->type = strdup("virtual-machine");
	c2->created_at = 42;
	is_int(lxm_db_instance_create(db, c2, &id2, &err), 0, "create c2");
	ok(id2 > id1, "c2 has a later id");

	r = lxm_db_instance_get(db, "c1", &got, &err);
	is_int(r, 0, "get c1");
	if (r < 0)
		return;
	is_int(got->id, id1, "id round trip");
	is_str(got->type, "container", "type round trip");
	is_str(got->architecture, "x86_64", "architecture round trip");
	is_str(got->description, "an instance", "description round trip");
	ok(got->ephemeral && got->stateful, "flags round trip");
	ok(got->created_at > 1600000000000000000LL, "created_at defaults to now in nanoseconds");
	is_int(got->last_used_at, 1234, "last_used_at round trip");
	ok(json_eq(got->config, "{\"limits.cpu\":\"1\",\"user.x\":\"y\"}"), "config round trip");
	ok(json_eq(got->devices, "{\"root\":{\"type\":\"disk\",\"path\":\"/\","
				 "\"pool\":\"default\"}}"),
	   "devices round trip");
	ok(json_eq(got->profiles, "[\"default\",\"p2\"]"), "profiles in apply order");
	lxm_db_instance_free(got);

	r = lxm_db_instance_get(db, "c2", &got, &err);
	ok(r == 0 && json_eq(got->profiles, "[\"p2\",\"default\"]"), "reversed profile order kept");
	ok(r == 0 && json_eq(got->config, "{}") && json_eq(got->devices, "{}"),
	   "no config reads as empty objects");
	ok(r == 0 && got->created_at == 42 && strcmp(got->type, "virtual-machine") == 0 &&
		   !got->ephemeral,
	   "given created_at, type and flags kept");
	lxm_db_instance_free(got);
	got = NULL;

	check_err(lxm_db_instance_create(db, c1, NULL, &err), &err, -EEXIST, 409,
		  "instance 'c1' already exists", "duplicate instance");
	check_err(lxm_db_instance_get(db, "nope", &got, &err), &err, -ENOENT, 404,
		  "instance 'nope' not found", "missing instance");
	test_instance_errors(db);

	r = lxm_db_instance_names(db, &names, &err);
	ok(r == 2 && strcmp(joined(names), "c1,c2") == 0, "instance names sorted");
	lxm_strv_free(names);

	r = lxm_db_profile_used_by(db, "p2", &names, &err);
	ok(r == 2 && strcmp(joined(names), "c1,c2") == 0, "p2 used by c1 and c2");
	lxm_strv_free(names);
	check_err(lxm_db_profile_delete(db, "p2", &err), &err, -EBUSY, 409,
		  "profile 'p2' is used by instances: c1, c2", "deleting a profile in use refused");
	is_int(q_int(h, "PRAGMA foreign_keys"), 1, "foreign keys still on");
	ok(q_refused(h, "DELETE FROM profiles WHERE name = 'p2'"),
	   "the schema itself refuses to delete a profile in use");

	/* Update replaces the mutable fields and the children, keeps the rest. */
	json_decref(c1->config);
	json_decref(c1->devices);
	json_decref(c1->profiles);
	c1->config = json_pack("{s:s}", "limits.memory", "2GiB");
	c1->devices = NULL;
	c1->profiles = json_pack("[s]", "p2");
	free(c1->description);
	free(c1->architecture);
	c1->description = strdup("updated");
	c1->architecture = strdup("aarch64");
	c1->ephemeral = false;
	c1->stateful = false;
	c1->last_used_at = 99;
	is_int(lxm_db_instance_update(db, "c1", c1, &err), 0, "update c1");
	r = lxm_db_instance_get(db, "c1", &got, &err);
	is_int(r, 0, "get updated c1");
	if (r >= 0) {
		ok(json_eq(got->config, "{\"limits.memory\":\"2GiB\"}"), "config replaced");
		ok(json_eq(got->devices, "{}"), "devices removed");
		ok(json_eq(got->profiles, "[\"p2\"]"), "profiles replaced");
		is_str(got->description, "updated", "description updated");
		is_str(got->architecture, "aarch64", "architecture updated");
		ok(!got->ephemeral && got->stateful, "ephemeral updated, stateful kept");
		is_int(got->last_used_at, 99, "last_used_at updated");
		lxm_db_instance_free(got);
		got = NULL;
	}
	r = lxm_db_profile_used_by(db, "default", &names, &err);
	ok(r == 1 && strcmp(joined(names), "c2") == 0, "default now used by c2 only");
	lxm_strv_free(names);
	check_err(lxm_db_instance_update(db, "nope", c1, &err), &err, -ENOENT, 404,
		  "instance 'nope' not found", "update a missing instance");
	json_decref(c1->profiles);
	c1->profiles = json_pack("[s]", "ghost");
	check_err(lxm_db_instance_update(db, "c1", c1, &err), &err, -ENOENT, 404,
		  "update instance 'c1': profile 'ghost' not found",
		  "update with a missing profile");
	r = lxm_db_instance_get(db, "c1", &got, &err);
	ok(r == 0 && json_eq(got->profiles, "[\"p2\"]") &&
		   json_eq(got->config, "{\"limits.memory\":\"2GiB\"}"),
	   "a failed update changes nothing");
	lxm_db_instance_free(got);
	got = NULL;

	/* Rename. */
	check_err(lxm_db_instance_rename(db, "c1", "c2", &err), &err, -EEXIST, 409,
		  "instance 'c2' already exists", "rename onto an existing instance");
	check_err(lxm_db_instance_rename(db, "nope", "c3", &err), &err, -ENOENT, 404,
		  "instance 'nope' not found", "rename a missing instance");
	is_int(lxm_db_instance_rename(db, "c1", "c3", &err), 0, "rename c1 to c3");
	check_err(lxm_db_instance_get(db, "c1", &got, &err), &err, -ENOENT, 404, "'c1' not found",
		  "old instance name gone");

	/* Snapshots: rows as the snapshot code will write them. */
	ok(q_exec(h, "INSERT INTO instances_snapshots (instance_id, name, created_at)\n"
		     "	SELECT id, 'snap-b', 10 FROM instances WHERE name = 'c3';\n"
		     "INSERT INTO instances_snapshots (instance_id, name, created_at)\n"
		     "	SELECT id, 'snap-a', 20 FROM instances WHERE name = 'c3';\n"
		     "INSERT INTO instances_snapshots_config (instance_snapshot_id, key, value)\n"
		     "	SELECT id, 'k', 'v' FROM instances_snapshots;\n"
		     "INSERT INTO instances_snapshots_devices (instance_snapshot_id, name)\n"
		     "	SELECT id, 'eth0' FROM instances_snapshots;\n"
		     "INSERT INTO instances_snapshots_devices_config\n"
		     "	(instance_snapshot_device_id, key, value)\n"
		     "	SELECT id, 'type', 'nic' FROM instances_snapshots_devices;\n"),
	   "insert snapshots of c3");
	r = lxm_db_instance_snapshot_names(db, "c3", &names, &err);
	ok(r == 2 && strcmp(joined(names), "snap-b,snap-a") == 0, "snapshots in creation order");
	lxm_strv_free(names);
	names = NULL;
	r = lxm_db_instance_snapshot_names(db, "c2", &names, &err);
	ok(r == 0 && names && !names[0], "no snapshots is an empty list");
	lxm_strv_free(names);
	names = NULL;
	check_err(lxm_db_instance_snapshot_names(db, "nope", &names, &err), &err, -ENOENT, 404,
		  "instance 'nope' not found", "snapshots of a missing instance");

	/* Delete takes every child row with it. */
	is_int(lxm_db_instance_delete(db, "c3", &err), 0, "delete c3");
	check_err(lxm_db_instance_delete(db, "c3", &err), &err, -ENOENT, 404,
		  "instance 'c3' not found", "delete a missing instance");
	is_int(q_int(h, "SELECT (SELECT COUNT(*) FROM instances_config) +\n"
			"	(SELECT COUNT(*) FROM instances_snapshots) +\n"
			"	(SELECT COUNT(*) FROM instances_snapshots_config) +\n"
			"	(SELECT COUNT(*) FROM instances_snapshots_devices) +\n"
			"	(SELECT COUNT(*) FROM instances_snapshots_devices_config) +\n"
			"	(SELECT COUNT(*) FROM instances_profiles WHERE instance_id = (\n"
			"		SELECT id FROM instances WHERE name = 'c3'))"),
	       0, "config, snapshots and profile links deleted by cascade");
	ok(q_exec(h, "INSERT INTO instances_devices (instance_id, name)\n"
		     "	SELECT id, 'x' FROM instances WHERE name = 'c2';\n"
		     "INSERT INTO instances_devices_config (instance_device_id, key, value)\n"
		     "	SELECT id, 'type', 'none' FROM instances_devices;"),
	   "give c2 a device");
	is_int(lxm_db_instance_delete(db, "c2", &err), 0, "delete c2");
	is_int(q_int(h, "SELECT (SELECT COUNT(*) FROM instances_devices) +\n"
			"	(SELECT COUNT(*) FROM instances_devices_config) +\n"
			"	(SELECT COUNT(*) FROM instances_profiles)"),
	       0, "devices, device config and profile links deleted by cascade");
	r = lxm_db_profile_used_by(db, "p2", &names, &err);
	ok(r == 0 && names && !names[0], "p2 unused once its instances are gone");
	lxm_strv_free(names);

	lxm_db_instance_free(c1);
	lxm_db_instance_free(c2);
	lxm_error_free(err);
}

static void test_config(struct lxm_db *db)
{
	struct lxm_error *err = NULL;
	json_t *cfg = NULL;

	is_int(lxm_db_config_get_all(db, &cfg, &err), 0, "read empty server config");
	ok(json_eq(cfg, "{}"), "server config starts empty");
	json_decref(cfg);
	is_int(lxm_db_config_set(db, "core.https_address", ":8443", &err), 0, "set a key");
	is_int(lxm_db_config_set(db, "images.auto_update_interval", "6", &err), 0, "set another");
	is_int(lxm_db_config_set(db, "core.https_address", "[::]:8443", &err), 0, "overwrite");
	is_int(lxm_db_config_set(db, "images.auto_update_interval", NULL, &err), 0, "unset");
	is_int(lxm_db_config_set(db, "never.set", NULL, &err), 0, "unset a key never set");
	is_int(lxm_db_config_set(db, "user.empty", "", &err), 0, "set an empty value");
	is_int(lxm_db_config_get_all(db, &cfg, &err), 0, "read server config");
	ok(json_eq(cfg, "{\"core.https_address\":\"[::]:8443\",\"user.empty\":\"\"}"),
	   "server config round trip");
	json_decref(cfg);
	lxm_error_free(err);
}

static void test_lists(struct lxm_db *db)
{
	struct lxm_error *err = NULL;
	char **v = NULL;
	int r;

	ok(q_exec(lxm_db_handle(db),
		  "INSERT INTO images (fingerprint, filename, size, architecture, uploaded_at)\n"
		  "	VALUES ('bbbb', 'b.tar.xz', 10, 'x86_64', 1), ('aaaa', 'a.tar.xz', 20,\n"
		  "	'x86_64', 2);\n"
		  "INSERT INTO storage_pools (name, driver) VALUES ('zz', 'dir'), ('default', "
		  "'dir');\n"
		  "INSERT INTO networks (name) VALUES ('lxmbr1'), ('lxmbr0');"),
	   "insert images, pools and networks");
	r = lxm_db_image_fingerprints(db, &v, &err);
	ok(r == 2 && strcmp(joined(v), "aaaa,bbbb") == 0, "image fingerprints sorted");
	lxm_strv_free(v);
	r = lxm_db_storage_pool_names(db, &v, &err);
	ok(r == 2 && strcmp(joined(v), "default,zz") == 0, "storage pool names sorted");
	lxm_strv_free(v);
	r = lxm_db_network_names(db, &v, &err);
	ok(r == 2 && strcmp(joined(v), "lxmbr0,lxmbr1") == 0, "network names sorted");
	lxm_strv_free(v);
	ok(q_refused(lxm_db_handle(db),
		     "INSERT INTO storage_volumes (storage_pool_id, name, type) VALUES\n"
		     "	((SELECT id FROM storage_pools WHERE name = 'zz'), 'v', 'custom'),\n"
		     "	((SELECT id FROM storage_pools WHERE name = 'zz'), 'v', 'custom')"),
	   "a volume name and type is unique per pool");
	ok(q_exec(lxm_db_handle(db),
		  "INSERT INTO storage_volumes (storage_pool_id, name, type) VALUES\n"
		  "	((SELECT id FROM storage_pools WHERE name = 'zz'), 'v', 'custom'),\n"
		  "	((SELECT id FROM storage_pools WHERE name = 'zz'), 'v', 'container');\n"
		  "INSERT INTO storage_volumes_config (storage_volume_id, key, value)\n"
		  "	SELECT id, 'size', '1GiB' FROM storage_volumes;\n"
		  "INSERT INTO images_aliases (name, image_id)\n"
		  "	SELECT 'alias-' || fingerprint, id FROM images;\n"
		  "DELETE FROM storage_pools WHERE name = 'zz';\n"
		  "DELETE FROM images;"),
	   "delete a pool with volumes and images with aliases");
	is_int(q_int(lxm_db_handle(db), "SELECT (SELECT COUNT(*) FROM storage_volumes) +\n"
					"	(SELECT COUNT(*) FROM storage_volumes_config) +\n"
					"	(SELECT COUNT(*) FROM images_aliases)"),
	       0, "volumes and aliases deleted by cascade");
	lxm_error_free(err);
}

static void test_transactions(struct lxm_db *db)
{
	struct lxm_db_profile *p = profile_new("tx1", NULL, "{\"a\":\"b\"}", NULL);
	struct lxm_db_instance *i = instance_new("txc", "[\"tx1\"]", "{\"k\":\"v\"}", NULL);
	struct lxm_db_profile *got = NULL;
	struct lxm_error *err = NULL;

	is_int(lxm_db_rollback(db, &err), 0, "rollback with no transaction is a no-op");
	check_err(lxm_db_commit(db, &err), &err, -EINVAL, 500, "no transaction is open",
		  "commit with no transaction");
	is_int(lxm_db_begin(db, &err), 0, "begin");
	check_err(lxm_db_begin(db, &err), &err, -EBUSY, 500, "already open", "begin twice");
	is_int(lxm_db_profile_create(db, p, &err), 0, "create a profile in the transaction");
	is_int(lxm_db_instance_create(db, i, NULL, &err), 0, "create an instance in it");
	is_int(lxm_db_rollback(db, &err), 0, "rollback");
	check_err(lxm_db_profile_get(db, "tx1", &got, &err), &err, -ENOENT, 404, "not found",
		  "rolled back profile is gone");
	is_int(q_int(lxm_db_handle(db),
		     "SELECT (SELECT COUNT(*) FROM profiles_config\n"
		     "	WHERE key = 'a') + (SELECT COUNT(*) FROM instances)"),
	       0, "rollback left no row behind");

	/* A failing write inside the caller's transaction undoes only itself. */
	is_int(lxm_db_begin(db, &err), 0, "begin again");
	is_int(lxm_db_profile_create(db, p, &err), 0, "create a profile");
	check_err(lxm_db_profile_create(db, p, &err), &err, -EEXIST, 409, "already exists",
		  "duplicate inside the transaction");
	json_decref(i->profiles);
	i->profiles = json_pack("[ss]", "tx1", "ghost");
	check_err(lxm_db_instance_create(db, i, NULL, &err), &err, -ENOENT, 404,
		  "profile 'ghost' not found", "failed create inside the transaction");
	is_int(lxm_db_commit(db, &err), 0, "commit");
	is_int(lxm_db_profile_get(db, "tx1", &got, &err), 0, "committed profile is there");
	is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM instances"), 0,
	       "the failed instance left nothing");
	lxm_db_profile_free(got);
	lxm_db_profile_free(p);
	lxm_db_instance_free(i);
	lxm_error_free(err);
}

static void test_reopen(void)
{
	struct lxm_db_instance *i = instance_new("keep", "[\"default\"]", "{\"k\":\"v\"}", NULL);
	struct lxm_db_instance *got = NULL;
	struct lxm_error *err = NULL;
	struct lxm_db *db = NULL;
	json_t *cfg = NULL;
	int r;

	lxm_db_open(tpath("fresh.db"), &db, &err);
	ok(db && lxm_db_instance_create(db, i, NULL, &err) == 0, "create an instance to keep");
	lxm_db_config_set(db, "core.trust_password", "x", &err);
	lxm_db_close(db);
	db = NULL;
	ok(!exists(tpath("fresh.db-wal")), "close checkpoints and removes the WAL");

	r = lxm_db_open(tpath("fresh.db"), &db, &err);
	is_int(r, 0, "reopen");
	if (r >= 0) {
		is_int(lxm_db_schema_version(db), lxm_db_schema_latest, "reopened at latest");
		r = lxm_db_instance_get(db, "keep", &got, &err);
		ok(r == 0 && json_eq(got->config, "{\"k\":\"v\"}"), "instance kept across reopen");
		lxm_db_instance_free(got);
		r = lxm_db_config_get_all(db, &cfg, &err);
		ok(r == 0 && json_eq(cfg, "{\"core.trust_password\":\"x\"}"),
		   "server config kept across reopen");
		json_decref(cfg);
		is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM schema"),
		       lxm_db_schema_latest, "no migration rerun on reopen");
	}
	ok(!exists(tpath("fresh.db.bak-v4")), "no backup when nothing migrates");
	lxm_db_close(db);
	lxm_db_instance_free(i);
	lxm_error_free(err);
}

/* Rows that a database at version v can hold, written as an lxmd of that version would. */
static bool fill_at_version(sqlite3 *h, int v)
{
	bool good = true;

	if (v >= 1)
		good &= q_exec(
			h,
			"INSERT INTO profiles (name, description) VALUES ('old', 'from before');\n"
			"INSERT INTO profiles_config (profile_id, key, value)\n"
			"	SELECT id, 'limits.cpu', '3' FROM profiles WHERE name = 'old';\n"
			"INSERT INTO profiles_devices (profile_id, name)\n"
			"	SELECT id, 'eth0' FROM profiles WHERE name = 'old';\n"
			"INSERT INTO profiles_devices_config (profile_device_id, key, value)\n"
			"	SELECT id, 'type', 'nic' FROM profiles_devices;\n"
			"INSERT INTO instances (name, type, architecture, created_at)\n"
			"	VALUES ('old1', 'container', 'x86_64', 7);\n"
			"INSERT INTO instances_config (instance_id, key, value)\n"
			"	SELECT id, 'user.a', 'b' FROM instances;\n"
			"INSERT INTO instances_profiles (instance_id, profile_id, apply_order)\n"
			"	SELECT i.id, p.id, 0 FROM instances i, profiles p WHERE p.name = "
			"'old';\n"
			"INSERT INTO config (key, value) VALUES ('core.https_address', ':8443');");
	if (v >= 2)
		good &= q_exec(
			h, "INSERT INTO images (fingerprint, filename, size, architecture,\n"
			   "	uploaded_at) VALUES ('cafe', 'cafe.tar.xz', 1, 'x86_64', 1);\n"
			   "INSERT INTO images_aliases (name, image_id)\n"
			   "	SELECT 'busybox', id FROM images;");
	if (v >= 3)
		good &= q_exec(
			h, "INSERT INTO instances_snapshots (instance_id, name, created_at)\n"
			   "	SELECT id, 'snap0', 1 FROM instances;\n"
			   "INSERT INTO storage_pools (name, driver) VALUES ('default', 'dir');\n"
			   "INSERT INTO networks (name) VALUES ('lxmbr0');");
	return good;
}

/* Checks that what fill_at_version(v) wrote survived the migration to the latest version. */
static void check_filled(struct lxm_db *db, int v)
{
	struct lxm_db_profile *p = NULL;
	struct lxm_db_instance *i = NULL;
	struct lxm_error *err = NULL;
	char **list = NULL;
	json_t *cfg = NULL;
	int r;

	r = lxm_db_profile_get(db, "default", &p, &err);
	ok(r == 0, "v%d: default profile exists after migration", v);
	lxm_db_profile_free(p);
	p = NULL;
	if (v < 1)
		return;
	r = lxm_db_profile_get(db, "old", &p, &err);
	ok(r == 0 && json_eq(p->config, "{\"limits.cpu\":\"3\"}") &&
		   json_eq(p->devices, "{\"eth0\":{\"type\":\"nic\"}}") &&
		   strcmp(p->description, "from before") == 0,
	   "v%d: profile kept", v);
	lxm_db_profile_free(p);
	r = lxm_db_instance_get(db, "old1", &i, &err);
	ok(r == 0 && json_eq(i->config, "{\"user.a\":\"b\"}") &&
		   json_eq(i->profiles, "[\"old\"]") && i->created_at == 7,
	   "v%d: instance kept", v);
	lxm_db_instance_free(i);
	r = lxm_db_config_get_all(db, &cfg, &err);
	ok(r == 0 && json_eq(cfg, "{\"core.https_address\":\":8443\"}"), "v%d: server config kept",
	   v);
	json_decref(cfg);
	if (v >= 2) {
		r = lxm_db_image_fingerprints(db, &list, &err);
		ok(r == 1 && strcmp(list[0], "cafe") == 0, "v%d: image kept", v);
		lxm_strv_free(list);
		{
			struct lxm_db_image *img = NULL;

			r = lxm_db_image_get(db, "cafe", &img, &err);
			ok(r == 0 && img->source == NULL && img->aliases &&
				   json_array_size(img->aliases) == 1,
			   "v%d: image reads back, with no source, after migration", v);
			lxm_db_image_free(img);
		}
	}
	if (v >= 3) {
		r = lxm_db_instance_snapshot_names(db, "old1", &list, &err);
		ok(r == 1 && strcmp(list[0], "snap0") == 0, "v%d: snapshot kept", v);
		lxm_strv_free(list);
		r = lxm_db_storage_pool_names(db, &list, &err);
		ok(r == 1, "v%d: storage pool kept", v);
		lxm_strv_free(list);
		r = lxm_db_network_names(db, &list, &err);
		ok(r == 1, "v%d: network kept", v);
		lxm_strv_free(list);
	}
	if (err)
		printf("#   %s\n", err->msg);
	lxm_error_free(err);
}

/* The backup taken before migrating from v is a sound database at v with v's data. */
static void check_backup(const char *path, int v)
{
	char bak[PATH_MAX], tmp[PATH_MAX + 8];
	sqlite3 *h = NULL;
	char *integrity;

	snprintf(bak, sizeof(bak), "%s.bak-v%d", path, v);
	snprintf(tmp, sizeof(tmp), "%s.tmp", bak);
	ok(!exists(tmp), "v%d: no temporary backup left", v);
	if (v == 0) {
		ok(!exists(bak), "v0: no backup of an empty database");
		return;
	}
	ok(exists(bak), "v%d: backup %s exists", v, bak);
	if (sqlite3_open_v2(bak, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		ok(0, "v%d: open backup: %s", v, sqlite3_errmsg(h));
		sqlite3_close(h);
		return;
	}
	integrity = q_str(h, "PRAGMA integrity_check");
	is_str(integrity, "ok", "backup passes the integrity check");
	free(integrity);
	is_int(q_int(h, "SELECT MAX(version) FROM schema"), v, "backup is at the old version");
	is_int(q_int(h, "SELECT COUNT(*) FROM instances WHERE name = 'old1'"), 1,
	       "backup holds the old data");
	sqlite3_close(h);
}

static void test_migrations(void)
{
	for (int v = 0; v < lxm_db_schema_latest; v++) {
		struct lxm_error *err = NULL;
		struct lxm_db *db = NULL;
		char name[32];
		const char *path;
		int r;

		snprintf(name, sizeof(name), "mig-v%d.db", v);
		path = tpath(name);
		r = lxm_db_open_at_version(path, v, &db, &err);
		ok(r == 0 && lxm_db_schema_version(db) == v, "v%d: open at version %d", v, v);
		if (r < 0) {
			printf("#   %s\n", err->msg);
			lxm_error_free(err);
			continue;
		}
		is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM profiles WHERE name = "
						"'default'"),
		       v >= 4	? 1
		       : v >= 1 ? 0
				: -1,
		       "a default profile from v4 on");
		ok(fill_at_version(lxm_db_handle(db), v), "v%d: fill with data of version %d", v,
		   v);
		lxm_db_close(db);
		db = NULL;

		/* The path buffer is reused by tpath(): keep a copy. */
		char *p = strdup(path);

		r = lxm_db_open(p, &db, &err);
		is_int(r, 0, "migrate to the latest version");
		if (r < 0) {
			printf("#   %s\n", err->msg);
			lxm_error_free(err);
			free(p);
			continue;
		}
		is_int(lxm_db_schema_version(db), lxm_db_schema_latest, "migrated to the latest");
		is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM schema"),
		       lxm_db_schema_latest, "one schema row per version");
		check_filled(db, v);
		lxm_db_close(db);
		check_backup(p, v);
		free(p);
	}
}

static void test_future_version(void)
{
	struct lxm_error *err = NULL;
	struct lxm_db *db = NULL;
	char want[128];
	sqlite3 *h = NULL;
	int r;

	r = lxm_db_open(tpath("future.db"), &db, &err);
	ok(r == 0, "create a database to age");
	lxm_db_close(db);
	db = NULL;
	sqlite3_open(tpath("future.db"), &h);
	ok(q_exec(h, "INSERT INTO schema (version, applied_at) VALUES (999, 0)"),
	   "mark it as written by a newer lxmd");
	sqlite3_close(h);

	r = lxm_db_open(tpath("future.db"), &db, &err);
	snprintf(want, sizeof(want),
		 "has schema version 999, this lxmd knows up to %d: upgrade lxmd",
		 lxm_db_schema_latest);
	ok(!db, "no handle for a newer database");
	check_err(r, &err, -ENOTSUP, 500, want, "newer database refused");
	ok(!exists(tpath("future.db.bak-v999")), "no backup of a refused database");

	r = lxm_db_open_at_version(tpath("fresh.db"), 1, &db, &err);
	check_err(r, &err, -EINVAL, 500, "past the requested 1", "no downgrade by open_at_version");
}

/* ---- images ---- */

#define FP_A "aaaa000000000000000000000000000000000000000000000000000000000001"
#define FP_B "aaaa000000000000000000000000000000000000000000000000000000000002"
#define FP_C "cccc000000000000000000000000000000000000000000000000000000000003"
#define FP_D "dddd000000000000000000000000000000000000000000000000000000000004"

static int image_add(struct lxm_db *db, const char *fp, const char *props, struct lxm_error **err)
{
	json_t *p = props ? json_loads(props, 0, NULL) : NULL;
	struct lxm_db_image img = {
		.fingerprint = (char *)fp,
		.filename = (char *)"img.tar.gz",
		.size = 1234,
		.public = true,
		.architecture = (char *)"x86_64",
		.type = (char *)"container",
		.created_at = 1700000000,
		.properties = p,
	};
	int r = lxm_db_image_create(db, &img, err);

	json_decref(p);
	return r;
}

static void test_image_rows(struct lxm_db *db)
{
	struct lxm_error *err = NULL;
	struct lxm_db_image *img = NULL, **list = NULL;
	size_t n = 0;
	char *fp = NULL;
	int r;

	r = image_add(db, FP_A, "{\"os\": \"Debian\", \"release\": \"12\"}", &err);
	is_int(r, 0, "create image A");
	r = image_add(db, FP_B, NULL, &err);
	is_int(r, 0, "create image B without properties");
	r = image_add(db, FP_A, NULL, &err);
	check_err(r, &err, -EEXIST, 409, "image '" FP_A "' already exists", "create A twice");
	r = image_add(db, "not-a-fingerprint", NULL, &err);
	check_err(r, &err, -EINVAL, 400, "64 lowercase hex digits", "invalid fingerprint");
	r = image_add(db, FP_C, "{\"os\": 1}", &err);
	check_err(r, &err, -EINVAL, 400, "os", "non-string property refused");
	is_int(q_int(lxm_db_handle(db),
		     "SELECT COUNT(*) FROM images WHERE fingerprint LIKE 'cccc%'"),
	       0, "a refused create leaves no row");

	r = lxm_db_image_get(db, FP_A, &img, &err);
	is_int(r, 0, "get image A");
	if (r == 0) {
		is_str(img->fingerprint, FP_A, "fingerprint read back");
		is_str(img->filename, "img.tar.gz", "filename read back");
		ok(img->size == 1234 && img->public && !img->auto_update && !img->cached,
		   "size and flags read back");
		is_str(img->architecture, "x86_64", "architecture read back");
		is_str(img->type, "container", "type read back");
		ok(img->created_at == 1700000000, "created_at in seconds round-trips");
		ok(img->uploaded_at > 1700000000 && img->uploaded_at < 4000000000,
		   "uploaded_at defaults to now, in seconds");
		ok(img->expires_at == 0 && img->last_used_at == 0, "expires/last used never");
		ok(json_eq(img->properties, "{\"os\": \"Debian\", \"release\": \"12\"}"),
		   "properties read back");
		ok(json_eq(img->aliases, "[]"), "no aliases yet");
	}
	lxm_db_image_free(img);
	img = NULL;
	is_int(q_int(lxm_db_handle(db),
		     "SELECT created_at FROM images WHERE fingerprint = '" FP_A "'"),
	       1700000000LL * 1000000000LL, "the column keeps nanoseconds, as the schema says");
	r = lxm_db_image_get(db, FP_C, &img, &err);
	check_err(r, &err, -ENOENT, 404, "image '" FP_C "' not found", "get unknown image");

	r = lxm_db_image_resolve_prefix(db, "aaaa", &fp, &err);
	check_err(r, &err, -EINVAL, 400, "image prefix 'aaaa' is ambiguous: 2 images match",
		  "ambiguous prefix");
	r = image_add(db, FP_D, NULL, &err);
	is_int(r, 0, "create image D");
	r = lxm_db_image_resolve_prefix(db, "dd", &fp, &err);
	ok(r == 0 && fp && strcmp(fp, FP_D) == 0, "a unique prefix resolves to D");
	r = lxm_db_image_delete(db, FP_D, &err);
	is_int(r, 0, "delete image D");
	free(fp);
	fp = NULL;
	r = lxm_db_image_resolve_prefix(db, FP_A, &fp, &err);
	ok(r == 0 && fp && strcmp(fp, FP_A) == 0, "a full fingerprint resolves to itself");
	free(fp);
	fp = NULL;
	r = lxm_db_image_resolve_prefix(db, "aa%", &fp, &err);
	check_err(r, &err, -ENOENT, 404, "image 'aa%' not found", "'%' is no wildcard");
	r = lxm_db_image_resolve_prefix(db, "", &fp, &err);
	check_err(r, &err, -EINVAL, 400, "empty", "empty prefix refused");

	{
		json_t *p = json_pack("{s:s}", "description", "edited");
		struct lxm_db_image upd = { .fingerprint = (char *)FP_A,
					    .public = false,
					    .auto_update = true,
					    .expires_at = 1800000000,
					    .properties = p };

		r = lxm_db_image_update(db, &upd, &err);
		is_int(r, 0, "update image A");
		upd.fingerprint = (char *)FP_C;
		r = lxm_db_image_update(db, &upd, &err);
		check_err(r, &err, -ENOENT, 404, "image '" FP_C "' not found", "update unknown");
		json_decref(p);
	}
	r = lxm_db_image_touch(db, FP_A, 1750000000, &err);
	is_int(r, 0, "touch image A");
	r = lxm_db_image_touch(db, FP_C, 1750000000, &err);
	check_err(r, &err, -ENOENT, 404, "not found", "touch unknown");
	r = lxm_db_image_get(db, FP_A, &img, &err);
	ok(r == 0 && !img->public && img->auto_update && img->expires_at == 1800000000 &&
		   img->last_used_at == 1750000000 && img->size == 1234,
	   "update changed public, auto_update, expires_at and touch last_used_at only");
	ok(r == 0 && json_eq(img->properties, "{\"description\": \"edited\"}"),
	   "update replaced the properties");
	lxm_db_image_free(img);
	img = NULL;

	r = lxm_db_image_list(db, &list, &n, &err);
	ok(r == 0 && n == 2 && strcmp(list[0]->fingerprint, FP_A) == 0 &&
		   strcmp(list[1]->fingerprint, FP_B) == 0 && json_is_object(list[1]->properties),
	   "list gives both images by fingerprint, with properties");
	for (size_t i = 0; i < n; i++)
		lxm_db_image_free(list[i]);
	free(list);
	lxm_error_free(err);
}

static void test_image_aliases(struct lxm_db *db)
{
	struct lxm_error *err = NULL;
	struct lxm_db_image_alias *a = NULL, **list = NULL;
	struct lxm_db_image *img = NULL;
	size_t n = 0;
	int r;

	r = lxm_db_image_alias_create(db, "debian/12", FP_A, "Debian 12", &err);
	is_int(r, 0, "create alias debian/12");
	r = lxm_db_image_alias_create(db, "b", FP_B, NULL, &err);
	is_int(r, 0, "create alias b (NULL description)");
	r = lxm_db_image_alias_create(db, "debian/12", FP_B, "", &err);
	check_err(r, &err, -EEXIST, 409, "image alias 'debian/12' already exists",
		  "create an existing alias");
	r = lxm_db_image_alias_create(db, "x", FP_C, "", &err);
	check_err(r, &err, -ENOENT, 404, "image '" FP_C "' not found", "alias to unknown image");

	r = lxm_db_image_alias_get(db, "debian/12", &a, &err);
	ok(r == 0 && strcmp(a->name, "debian/12") == 0 && strcmp(a->target, FP_A) == 0 &&
		   strcmp(a->description, "Debian 12") == 0 && strcmp(a->type, "container") == 0,
	   "get alias: name, target, description, type");
	lxm_db_image_alias_free(a);
	a = NULL;
	r = lxm_db_image_alias_get(db, "nope", &a, &err);
	check_err(r, &err, -ENOENT, 404, "image alias 'nope' not found", "get unknown alias");

	r = lxm_db_image_get(db, FP_A, &img, &err);
	ok(r == 0 && json_eq(img->aliases, "[{\"name\": \"debian/12\", \"description\": \"Debian "
					   "12\"}]"),
	   "the image lists its alias");
	lxm_db_image_free(img);
	img = NULL;

	r = lxm_db_image_alias_update(db, "b", FP_A, "now A", &err);
	is_int(r, 0, "point alias b at A");
	r = lxm_db_image_alias_update(db, "b", FP_C, "", &err);
	check_err(r, &err, -ENOENT, 404, "image '" FP_C "' not found", "update to unknown image");
	r = lxm_db_image_alias_update(db, "zz", FP_A, "", &err);
	check_err(r, &err, -ENOENT, 404, "image alias 'zz' not found", "update unknown alias");

	r = lxm_db_image_alias_rename(db, "b", "debian/12", &err);
	check_err(r, &err, -EEXIST, 409, "image alias 'debian/12' already exists",
		  "rename onto an existing alias");
	r = lxm_db_image_alias_rename(db, "zz", "yy", &err);
	check_err(r, &err, -ENOENT, 404, "image alias 'zz' not found", "rename unknown alias");
	r = lxm_db_image_alias_rename(db, "b", "debian/bookworm", &err);
	is_int(r, 0, "rename b to debian/bookworm");

	r = lxm_db_image_alias_list(db, &list, &n, &err);
	ok(r == 0 && n == 2 && strcmp(list[0]->name, "debian/12") == 0 &&
		   strcmp(list[1]->name, "debian/bookworm") == 0 &&
		   strcmp(list[1]->target, FP_A) == 0 && strcmp(list[1]->description, "now A") == 0,
	   "alias list sorted, with the rename and update applied");
	for (size_t i = 0; i < n; i++)
		lxm_db_image_alias_free(list[i]);
	free(list);

	r = lxm_db_image_alias_delete(db, "debian/bookworm", &err);
	is_int(r, 0, "delete alias");
	r = lxm_db_image_alias_delete(db, "debian/bookworm", &err);
	check_err(r, &err, -ENOENT, 404, "image alias 'debian/bookworm' not found",
		  "delete it again");

	{
		struct lxm_db_image_source src = { .server = (char *)"https://127.0.0.1:8443",
						   .protocol = (char *)"simplestreams",
						   .alias = (char *)"tiny/1",
						   .certificate = (char *)"PEM" };

		r = lxm_db_image_get(db, FP_A, &img, &err);
		ok(r == 0 && img->source == NULL && !img->cached,
		   "an imported image has no source and is not cached");
		lxm_db_image_free(img);
		img = NULL;
		r = lxm_db_image_source_set(db, FP_A, &src, &err);
		is_int(r, 0, "record the source of image A");
		src.alias = (char *)"tiny/2";
		r = lxm_db_image_source_set(db, FP_A, &src, &err);
		is_int(r, 0, "record it again (replaces)");
		r = lxm_db_image_set_cached(db, FP_A, true, &err);
		is_int(r, 0, "mark image A cached");
		r = lxm_db_image_get(db, FP_A, &img, &err);
		ok(r == 0 && img->source && img->cached &&
			   strcmp(img->source->server, "https://127.0.0.1:8443") == 0 &&
			   strcmp(img->source->protocol, "simplestreams") == 0 &&
			   strcmp(img->source->alias, "tiny/2") == 0 &&
			   strcmp(img->source->certificate, "PEM") == 0,
		   "image A reads back cached with its (replaced) source");
		lxm_db_image_free(img);
		img = NULL;
		is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM images_source"), 1,
		       "one source row per image");
		r = lxm_db_image_source_set(db, FP_D, &src, &err);
		check_err(r, &err, -ENOENT, 404, "not found", "the source of an unknown image");
		r = lxm_db_image_set_cached(db, FP_D, true, &err);
		check_err(r, &err, -ENOENT, 404, "not found", "cache an unknown image");
	}

	r = lxm_db_image_delete(db, FP_A, &err);
	is_int(r, 0, "delete image A");
	r = lxm_db_image_delete(db, FP_A, &err);
	check_err(r, &err, -ENOENT, 404, "image '" FP_A "' not found", "delete it again");
	r = lxm_db_image_alias_get(db, "debian/12", &a, &err);
	check_err(r, &err, -ENOENT, 404, "not found", "the image's alias went with it");
	is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM images_properties"), 0,
	       "its properties went with it");
	is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM images_source"), 0,
	       "its source went with it");
	r = lxm_db_image_delete(db, FP_B, &err);
	is_int(r, 0, "delete image B");
	r = lxm_db_image_alias_list(db, &list, &n, &err);
	ok(r == 0 && n == 0 && list && !list[0], "no aliases left: an empty list");
	free(list);
	lxm_error_free(err);
}

/* Removes the (flat) temporary directory; true when it is gone. */
/* ---- snapshots ---- */

static struct lxm_db_snapshot *snapshot_new(const char *instance, const char *name,
					    int64_t created_at, const char *profiles,
					    const char *config, const char *devices)
{
	struct lxm_db_snapshot *s = calloc(1, sizeof(*s));

	s->instance = strdup(instance);
	s->name = strdup(name);
	s->created_at = created_at;
	s->size = 4096;
	s->profiles = profiles ? json_loads(profiles, 0, NULL) : NULL;
	s->config = config ? json_loads(config, 0, NULL) : NULL;
	s->devices = devices ? json_loads(devices, 0, NULL) : NULL;
	return s;
}

static void test_snapshots(struct lxm_db *db)
{
	sqlite3 *h = lxm_db_handle(db);
	struct lxm_error *err = NULL;
	struct lxm_db_profile *p = profile_new("snapprof", NULL, "{\"limits.cpu\":\"1\"}", NULL);
	struct lxm_db_instance *inst =
		instance_new("si1", "[\"default\",\"snapprof\"]", "{\"user.a\":\"1\"}",
			     "{\"eth0\":{\"type\":\"nic\",\"name\":\"eth0\"}}");
	struct lxm_db_snapshot *s, *got = NULL, **list = NULL;
	size_t n = 0;
	char **names = NULL;
	int r;

	ok(lxm_db_profile_create(db, p, &err) == 0 &&
		   lxm_db_instance_create(db, inst, NULL, &err) == 0,
	   "snapshots: profile and instance to snapshot");
	lxm_db_profile_free(p);

	/* Create, read back with everything it holds. */
	s = snapshot_new("si1", "snap0", 100, "[\"snapprof\",\"default\"]", "{\"user.a\":\"1\"}",
			 "{\"eth0\":{\"type\":\"nic\",\"name\":\"eth0\"},\"empty\":{}}");
	s->expires_at = 5000;
	is_int(lxm_db_snapshot_create(db, s, &err), 0, "create snapshot si1/snap0");
	r = lxm_db_snapshot_get(db, "si1", "snap0", &got, &err);
	ok(r == 0 && got && strcmp(got->name, "snap0") == 0 && strcmp(got->instance, "si1") == 0 &&
		   got->created_at == 100 && got->expires_at == 5000 && got->size == 4096 &&
		   !got->stateful && strcmp(got->description, "") == 0,
	   "snapshot row reads back");
	ok(got && json_eq(got->config, "{\"user.a\":\"1\"}") &&
		   json_eq(got->devices,
			   "{\"eth0\":{\"type\":\"nic\",\"name\":\"eth0\"},\"empty\":{}}") &&
		   json_eq(got->profiles, "[\"snapprof\",\"default\"]"),
	   "config, devices and profiles (in order) read back");
	lxm_db_snapshot_free(got);
	got = NULL;

	/* Its config is its own: the instance changing does not change it. */
	json_object_set_new(inst->config, "user.b", json_string("2"));
	is_int(lxm_db_instance_update(db, "si1", inst, &err), 0, "change the instance");
	r = lxm_db_snapshot_get(db, "si1", "snap0", &got, &err);
	ok(r == 0 && json_eq(got->config, "{\"user.a\":\"1\"}"), "snapshot config unchanged");
	lxm_db_snapshot_free(got);
	got = NULL;

	/* Conflicts and refusals write nothing. */
	check_err(lxm_db_snapshot_create(db, s, &err), &err, -EEXIST, 409,
		  "snapshot 'si1/snap0' already exists", "duplicate snapshot name");
	free(s->instance);
	s->instance = strdup("nope");
	check_err(lxm_db_snapshot_create(db, s, &err), &err, -ENOENT, 404,
		  "instance 'nope' not found", "snapshot of a missing instance");
	free(s->instance);
	s->instance = strdup("si1");
	free(s->name);
	s->name = strdup("snap1");
	json_decref(s->profiles);
	s->profiles = json_pack("[s]", "ghost");
	check_err(lxm_db_snapshot_create(db, s, &err), &err, -ENOENT, 404,
		  "profile 'ghost' not found", "snapshot with a missing profile");
	json_decref(s->profiles);
	s->profiles = json_pack("[s,s]", "default", "default");
	check_err(lxm_db_snapshot_create(db, s, &err), &err, -EINVAL, 400, "listed twice",
		  "snapshot with a profile twice");
	json_decref(s->profiles);
	s->profiles = NULL;
	json_object_set_new(s->config, "bad", json_integer(1));
	check_err(lxm_db_snapshot_create(db, s, &err), &err, -EINVAL, 400, "bad",
		  "snapshot with a non-string value");
	json_object_del(s->config, "bad");
	is_int(q_int(h, "SELECT COUNT(*) FROM instances_snapshots"), 1, "refusals wrote no row");

	/* A second one, created earlier in time: the list is in creation order. */
	s->created_at = 50;
	is_int(lxm_db_snapshot_create(db, s, &err), 0, "create snapshot si1/snap1");
	r = lxm_db_snapshot_list(db, "si1", &list, &n, &err);
	ok(r == 0 && n == 2 && strcmp(list[0]->name, "snap1") == 0 &&
		   strcmp(list[1]->name, "snap0") == 0 && json_eq(list[0]->profiles, "[]") &&
		   json_eq(list[1]->profiles, "[\"snapprof\",\"default\"]"),
	   "list in creation order, each with its own profiles");
	lxm_db_snapshot_list_free(list, n);
	r = lxm_db_instance_snapshot_names(db, "si1", &names, &err);
	ok(r == 2 && strcmp(joined(names), "snap1,snap0") == 0, "names agree with the list");
	lxm_strv_free(names);
	check_err(lxm_db_snapshot_list(db, "nope", &list, &n, &err), &err, -ENOENT, 404,
		  "instance 'nope' not found", "list of a missing instance");
	check_err(lxm_db_snapshot_get(db, "si1", "nope", &got, &err), &err, -ENOENT, 404,
		  "snapshot 'si1/nope' not found", "get a missing snapshot");

	/* Update: description and expiry only. */
	free(s->description);
	s->description = strdup("kept");
	s->expires_at = 0;
	is_int(lxm_db_snapshot_update(db, "si1", "snap0", s, &err), 0, "update snap0");
	r = lxm_db_snapshot_get(db, "si1", "snap0", &got, &err);
	ok(r == 0 && strcmp(got->description, "kept") == 0 && got->expires_at == 0 &&
		   got->created_at == 100 && json_eq(got->config, "{\"user.a\":\"1\"}"),
	   "update changes description and expiry only");
	lxm_db_snapshot_free(got);
	got = NULL;
	check_err(lxm_db_snapshot_update(db, "si1", "nope", s, &err), &err, -ENOENT, 404,
		  "snapshot 'si1/nope' not found", "update a missing snapshot");

	/* Rename within the instance. */
	check_err(lxm_db_snapshot_rename(db, "si1", "snap0", "snap1", &err), &err, -EEXIST, 409,
		  "snapshot 'si1/snap1' already exists", "rename onto an existing snapshot");
	check_err(lxm_db_snapshot_rename(db, "si1", "nope", "x", &err), &err, -ENOENT, 404,
		  "snapshot 'si1/nope' not found", "rename a missing snapshot");
	is_int(lxm_db_snapshot_rename(db, "si1", "snap0", "first", &err), 0, "rename snap0");
	r = lxm_db_snapshot_get(db, "si1", "first", &got, &err);
	ok(r == 0 && json_eq(got->profiles, "[\"snapprof\",\"default\"]"),
	   "renamed snapshot keeps its profiles");
	lxm_db_snapshot_free(got);
	got = NULL;

	/* The same name under another instance is another snapshot. */
	struct lxm_db_instance *other = instance_new("si2", NULL, NULL, NULL);

	is_int(lxm_db_instance_create(db, other, NULL, &err), 0, "create si2");
	lxm_db_instance_free(other);
	free(s->instance);
	s->instance = strdup("si2");
	is_int(lxm_db_snapshot_create(db, s, &err), 0, "si2/snap1 beside si1/snap1");

	/* A profile deleted since drops out of the snapshot's list. */
	json_decref(inst->profiles);
	inst->profiles = json_pack("[s]", "default");
	is_int(lxm_db_instance_update(db, "si1", inst, &err), 0, "si1 stops using snapprof");
	is_int(lxm_db_profile_delete(db, "snapprof", &err), 0,
	       "a profile only snapshots use can be deleted");
	r = lxm_db_snapshot_get(db, "si1", "first", &got, &err);
	ok(r == 0 && json_eq(got->profiles, "[\"default\"]"), "deleted profile left the list");
	lxm_db_snapshot_free(got);
	got = NULL;

	/* Delete one, then the instance with the rest. */
	is_int(lxm_db_snapshot_delete(db, "si1", "first", &err), 0, "delete si1/first");
	check_err(lxm_db_snapshot_delete(db, "si1", "first", &err), &err, -ENOENT, 404,
		  "snapshot 'si1/first' not found", "delete it again");
	is_int(lxm_db_instance_delete(db, "si1", &err), 0, "delete si1");
	is_int(q_int(h, "SELECT (SELECT COUNT(*) FROM instances_snapshots) +\n"
			"	(SELECT COUNT(*) FROM instances_snapshots_config) +\n"
			"	(SELECT COUNT(*) FROM instances_snapshots_devices) +\n"
			"	(SELECT COUNT(*) FROM instances_snapshots_profiles)"),
	       4, "only si2's snapshot is left: its row, config and two devices");
	is_int(lxm_db_instance_delete(db, "si2", &err), 0, "delete si2");
	is_int(q_int(h, "SELECT COUNT(*) FROM instances_snapshots"), 0, "no snapshot rows left");
	lxm_db_snapshot_free(s);
	lxm_db_instance_free(inst);
	lxm_error_free(err);
}

static struct lxm_db_storage_volume *volume_new(const char *pool, const char *type,
						const char *name, const char *config)
{
	struct lxm_db_storage_volume *v = calloc(1, sizeof(*v));

	v->pool = strdup(pool);
	v->type = strdup(type);
	v->name = strdup(name);
	v->config = config ? json_loads(config, 0, NULL) : NULL;
	return v;
}

static void test_storage_volumes(struct lxm_db *db)
{
	struct lxm_db_storage_volume *v, **list = NULL;
	struct lxm_error *err = NULL;
	size_t n = 0;
	int r;

	v = volume_new("sp1", "container", "c1", "{\"size\": \"1GiB\"}");
	is_int(lxm_db_storage_volume_create(db, v, &err), 0, "create volume container/c1");
	check_err(lxm_db_storage_volume_create(db, v, &err), &err, -EEXIST, 409,
		  "storage volume 'container/c1' already exists in pool 'sp1'", "duplicate volume");
	free(v->pool);
	v->pool = strdup("nope");
	check_err(lxm_db_storage_volume_create(db, v, &err), &err, -ENOENT, 404,
		  "storage pool 'nope' not found", "volume in an unknown pool");
	free(v->type);
	v->type = strdup("disk");
	check_err(lxm_db_storage_volume_create(db, v, &err), &err, -EINVAL, 400,
		  "unknown storage volume type 'disk'", "volume of an unknown type");
	lxm_db_storage_volume_free(v);
	v = volume_new("sp1", "custom", "v1", NULL);
	is_int(lxm_db_storage_volume_create(db, v, &err), 0, "create volume custom/v1");
	lxm_db_storage_volume_free(v);
	v = volume_new("sp1", "image", "fp", NULL);
	is_int(lxm_db_storage_volume_create(db, v, &err), 0, "create volume image/fp");
	lxm_db_storage_volume_free(v);

	r = lxm_db_storage_volume_list(db, "sp1", NULL, &list, &n, &err);
	ok(r == 0 && n == 3 && streq(list[0]->type, "container") && streq(list[0]->name, "c1") &&
		   streq(list[1]->type, "custom") && streq(list[2]->name, "fp") &&
		   json_eq(list[0]->config, "{\"size\": \"1GiB\"}") &&
		   streq(list[1]->content_type, "filesystem") && list[1]->created_at > 0,
	   "list volumes by type and name, with config");
	lxm_db_storage_volume_list_free(list, n);
	r = lxm_db_storage_volume_list(db, "sp1", "custom", &list, &n, &err);
	ok(r == 0 && n == 1 && streq(list[0]->name, "v1"), "list volumes of one type");
	lxm_db_storage_volume_list_free(list, n);
	check_err(lxm_db_storage_volume_list(db, "nope", NULL, &list, &n, &err), &err, -ENOENT, 404,
		  "storage pool 'nope' not found", "list volumes of an unknown pool");

	v = volume_new("sp1", "container", "c3", NULL);
	is_int(lxm_db_storage_volume_create(db, v, &err), 0, "create volume container/c3");
	lxm_db_storage_volume_free(v);
	is_int(lxm_db_storage_volume_rename(db, "sp1", "container", "c1", "c2", &err), 0,
	       "rename a volume");
	r = lxm_db_storage_volume_get(db, "sp1", "container", "c2", &v, &err);
	ok(r == 0 && json_eq(v->config, "{\"size\": \"1GiB\"}"), "renamed volume keeps its config");
	lxm_db_storage_volume_free(v);
	check_err(lxm_db_storage_volume_get(db, "sp1", "container", "c1", &v, &err), &err, -ENOENT,
		  404, "storage volume 'container/c1' not found in pool 'sp1'", "old name is gone");
	check_err(lxm_db_storage_volume_rename(db, "sp1", "container", "c2", "c3", &err), &err,
		  -EEXIST, 409, "'container/c3' already exists", "rename onto a volume");
	check_err(lxm_db_storage_volume_rename(db, "sp1", "custom", "c2", "x", &err), &err, -ENOENT,
		  404, "'custom/c2' not found", "rename of another type's volume");

	check_err(lxm_db_storage_pool_delete(db, "sp1", &err), &err, -EBUSY, 409,
		  "it still holds 4 volumes", "a pool with volumes is not deleted");
	is_int(lxm_db_storage_volume_delete(db, "sp1", "container", "c2", &err), 0, "delete c2");
	check_err(lxm_db_storage_volume_delete(db, "sp1", "container", "c2", &err), &err, -ENOENT,
		  404, "not found", "delete c2 again");
	lxm_db_storage_volume_delete(db, "sp1", "container", "c3", &err);
	lxm_db_storage_volume_delete(db, "sp1", "custom", "v1", &err);
	lxm_db_storage_volume_delete(db, "sp1", "image", "fp", &err);
	is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM storage_volumes_config"), 0,
	       "volume config goes with its volume");
	lxm_error_free(err);
}

static void test_storage_pools(struct lxm_db *db)
{
	struct lxm_db_storage_pool in = { .name = "sp1", .driver = "btrfs", .description = "d1" };
	struct lxm_db_storage_pool *p = NULL;
	struct lxm_db_profile *prof;
	struct lxm_db_instance *inst;
	struct lxm_error *err = NULL;
	char **profiles = NULL, **instances = NULL;
	int r;

	in.config = json_pack("{s:s, s:s}", "source", "/x.img", "size", "1GiB");
	is_int(lxm_db_storage_pool_create(db, &in, &err), 0, "create storage pool");
	r = lxm_db_storage_pool_get(db, "sp1", &p, &err);
	ok(r == 0 && streq(p->driver, "btrfs") && streq(p->description, "d1") &&
		   json_eq(p->config, "{\"source\": \"/x.img\", \"size\": \"1GiB\"}"),
	   "read the pool back");
	lxm_db_storage_pool_free(p);
	check_err(lxm_db_storage_pool_create(db, &in, &err), &err, -EEXIST, 409,
		  "storage pool 'sp1' already exists", "duplicate pool");
	json_object_set_new(in.config, "size", json_integer(1));
	in.name = "sp2";
	check_err(lxm_db_storage_pool_create(db, &in, &err), &err, -EINVAL, 400, "size",
		  "pool config values are strings");
	check_err(lxm_db_storage_pool_get(db, "sp2", &p, &err), &err, -ENOENT, 404,
		  "storage pool 'sp2' not found", "a refused pool is not created");

	json_object_set_new(in.config, "size", json_string("2GiB"));
	in.description = NULL;
	is_int(lxm_db_storage_pool_update(db, "sp1", &in, &err), 0, "update a pool");
	r = lxm_db_storage_pool_get(db, "sp1", &p, &err);
	ok(r == 0 && streq(p->description, "") && streq(p->driver, "btrfs") &&
		   json_eq(p->config, "{\"source\": \"/x.img\", \"size\": \"2GiB\"}"),
	   "update replaces description and config");
	lxm_db_storage_pool_free(p);
	check_err(lxm_db_storage_pool_update(db, "nope", &in, &err), &err, -ENOENT, 404,
		  "storage pool 'nope' not found", "update an unknown pool");
	json_decref(in.config);

	/* Root disks (type disk, path /) naming the pool use it; other disks do not. */
	prof = profile_new("sp-root", "", NULL,
			   "{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"sp1\"}}");
	is_int(lxm_db_profile_create(db, prof, &err), 0, "profile with a root disk on sp1");
	lxm_db_profile_free(prof);
	prof = profile_new("sp-data", "", NULL,
			   "{\"d\": {\"type\": \"disk\", \"path\": \"/data\", \"pool\": \"sp1\"}}");
	is_int(lxm_db_profile_create(db, prof, &err), 0, "profile with a data disk on sp1");
	lxm_db_profile_free(prof);
	inst = instance_new("sp-i1", "[]", NULL,
			    "{\"r\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"sp1\"}}");
	is_int(lxm_db_instance_create(db, inst, NULL, &err), 0, "instance with a root disk on sp1");
	lxm_db_instance_free(inst);
	r = lxm_db_storage_pool_used_by(db, "sp1", &profiles, &instances, &err);
	ok(r == 2 && streq(joined(profiles), "sp-root"), "used by the root disk's profile");
	ok(streq(joined(instances), "sp-i1"), "used by the root disk's instance");
	lxm_strv_free(profiles);
	lxm_strv_free(instances);
	r = lxm_db_storage_pool_used_by(db, "other", &profiles, &instances, &err);
	ok(r == 0 && !profiles[0] && !instances[0], "another pool is used by nothing");
	lxm_strv_free(profiles);
	lxm_strv_free(instances);
	lxm_db_profile_delete(db, "sp-root", &err);
	lxm_db_profile_delete(db, "sp-data", &err);
	lxm_db_instance_delete(db, "sp-i1", &err);

	test_storage_volumes(db);

	is_int(lxm_db_storage_pool_delete(db, "sp1", &err), 0, "delete the pool");
	check_err(lxm_db_storage_pool_delete(db, "sp1", &err), &err, -ENOENT, 404,
		  "storage pool 'sp1' not found", "delete it again");
	is_int(q_int(lxm_db_handle(db), "SELECT COUNT(*) FROM storage_pools_config"), 0,
	       "pool config goes with the pool");
	lxm_error_free(err);
}

static bool remove_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		unlinkat(dirfd(d), de->d_name, 0);
	}
	if (d)
		closedir(d);
	return rmdir(tmpdir) == 0;
}

int main(void)
{
	struct lxm_error *err = NULL;
	struct lxm_db *db = NULL;
	int r;

	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}

	test_fresh();
	test_open_errors();
	r = lxm_db_open(tpath("crud.db"), &db, &err);
	is_int(r, 0, "open a database for CRUD");
	if (r >= 0) {
		test_profiles(db);
		test_instances(db);
		test_config(db);
		test_lists(db);
		test_transactions(db);
		test_image_rows(db);
		test_image_aliases(db);
		test_snapshots(db);
		test_storage_pools(db);
		lxm_db_close(db);
	}
	lxm_error_free(err);
	test_reopen();
	test_migrations();
	test_future_version();

	ok(remove_tmpdir(), "temporary directory removed");
	return tap_done();
}
