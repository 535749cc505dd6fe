/* Daemon helpers that need no running daemon: the kernel check against a fake /proc, the root
 * lock, route matching (incl. the /1.0/containers alias), filters, ETags, config checks. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "daemon.h"
#include "http.h"
#include "json.h"
#include "server.h"
#include "tap.h"
#include "util.h"

static char tmp[] = "/tmp/lxm-unit-daemon-XXXXXX";

static void touch(const char *rel, const char *content)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	*strrchr(path, '/') = '\0';
	lxm_mkdir_p(path, 0755);
	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	f = fopen(path, "w");
	fputs(content, f);
	fclose(f);
}

static void test_kernel_check(void)
{
	static const char *const ns[] = { "mnt", "pid", "uts", "ipc", "net", "user", "cgroup" };
	struct lxm_error *err = NULL;
	json_t *f = NULL;
	char proc[512], path[512];

	snprintf(proc, sizeof(proc), "%s/proc", tmp);
	for (size_t i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "proc/self/ns/%s", ns[i]);
		touch(path, "");
	}
	touch("proc/sys/user/max_user_namespaces", "63000\n");
	touch("proc/filesystems", "nodev\tsysfs\nnodev\tcgroup\nnodev\tcgroup2\n");
	ok(lxmd_kernel_check(proc, &f, &err) == 0, "complete fake proc passes");
	is_str(json_string_value(json_object_get(f, "cgroup2")), "true", "cgroup2 detected");
	is_str(json_string_value(json_object_get(f, "time_namespace")), "false",
	       "no time namespace in the fake tree");
	json_decref(f);

	touch("proc/sys/user/max_user_namespaces", "0\n");
	ok(lxmd_kernel_check(proc, &f, &err) < 0 && err && strstr(err->msg, "user namespaces"),
	   "disabled user namespaces refused: %s", err ? err->msg : "");
	lxm_error_free(err);
	err = NULL;
	touch("proc/sys/user/max_user_namespaces", "10\n");

	snprintf(path, sizeof(path), "%s/proc/self/ns/cgroup", tmp);
	unlink(path);
	ok(lxmd_kernel_check(proc, &f, &err) < 0 && err && strstr(err->msg, "cgroup namespaces"),
	   "missing cgroup namespace named: %s", err ? err->msg : "");
	lxm_error_free(err);
	err = NULL;
	touch("proc/self/ns/cgroup", "");

	touch("proc/filesystems", "nodev\tsysfs\n");
	ok(lxmd_kernel_check(proc, &f, &err) < 0 && err && strstr(err->msg, "cgroup filesystem"),
	   "no cgroup filesystem refused: %s", err ? err->msg : "");
	lxm_error_free(err);
}

static void test_lock(void)
{
	struct lxm_error *err = NULL;
	int fd, fd2;

	fd = lxmd_lock_root(tmp, &err);
	ok(fd >= 0, "root locked");
	/* flock locks belong to the open file description: a second open conflicts, as another
	 * process would. */
	fd2 = lxmd_lock_root(tmp, &err);
	ok(fd2 < 0 && err && strstr(err->msg, "another lxmd") && strstr(err->msg, tmp),
	   "second lock refused naming the root: %s", err ? err->msg : "");
	lxm_error_free(err);
	close(fd);
	err = NULL;
	fd2 = lxmd_lock_root(tmp, &err);
	ok(fd2 >= 0, "lock free again after close");
	close(fd2);
}

static void test_routes(void)
{
	char *args[4] = { 0 };
	const struct lxmd_route *r;
	bool containers;

	r = lxmd_api_match("/1.0", args, &containers);
	ok(r && r->handlers[LXMD_GET] && !containers, "/1.0 routed");
	r = lxmd_api_match("/1.0/instances/c1", args, &containers);
	ok(r && streq(args[0], "c1") && !containers, "instance name captured");
	free(args[0]);
	args[0] = NULL;
	r = lxmd_api_match("/1.0/containers/c1/", args, &containers);
	ok(r && streq(args[0], "c1") && containers && r->handlers[LXMD_DELETE],
	   "/1.0/containers alias routed to the same handlers");
	free(args[0]);
	args[0] = NULL;
	r = lxmd_api_match("/1.0/operations/abc/wait", args, &containers);
	ok(r && streq(args[0], "abc"), "wait route");
	free(args[0]);
	args[0] = NULL;
	ok(lxmd_api_match("/1.0/containersX", args, &containers) == NULL, "no prefix confusion");
	ok(lxmd_api_match("/1.0/instances//state", args, &containers) == NULL,
	   "empty segment does not match '*'");
	ok(lxmd_api_match("/2.0", args, &containers) == NULL, "unknown path");
	ok(lxmd_api_match("relative", args, &containers) == NULL, "relative path");
	is_int(lxmd_method_from_http(HTTP_OPTIONS), _LXMD_METHOD_INVALID, "OPTIONS not routed");
}

static void test_filter_etag_config(void)
{
	struct lxm_http_request http = { .query = (char *)"filter=status%20eq%20running%20and%20"
							  "config.user.x%20ne%20y" };
	struct lxmd_request r = { .http = &http };
	struct lxm_error *err = NULL;
	json_t *list = json_pack("[{s:s,s:{s:s}},{s:s,s:{s:s}},{s:s,s:{}}]", "status", "Running",
				 "config", "user.x", "y", "status", "RUNNING", "config", "user.x",
				 "z", "status", "Stopped", "config");
	json_t *cfg;
	char e1[65], e2[65];

	ok(lxmd_apply_filter(&r, list, &err) == 0, "filter applied");
	is_int(json_array_size(list), 1, "one instance matches (case-insensitive eq, dotted ne)");
	is_str(json_string_value(json_object_get(json_object_get(json_array_get(list, 0), "config"),
						 "user.x")),
	       "z", "the right one");
	json_decref(list);
	http.query = (char *)"filter=status%20is%20running";
	list = json_array();
	ok(lxmd_apply_filter(&r, list, &err) < 0 && err && err->status == 400,
	   "malformed filter: 400");
	lxm_error_free(TAKE_PTR(err));
	json_decref(list);

	cfg = json_pack("{s:s,s:s}", "b", "1", "a", "2");
	lxmd_etag(cfg, e1);
	json_decref(cfg);
	cfg = json_pack("{s:s,s:s}", "a", "2", "b", "1");
	lxmd_etag(cfg, e2);
	is_str(e1, e2, "etag ignores key order");
	json_object_set_new(cfg, "a", json_string("3"));
	lxmd_etag(cfg, e2);
	ok(strcmp(e1, e2) != 0, "etag changes with content");
	json_decref(cfg);

	cfg = json_pack("{s:s,s:s}", "limits.cpu", "2", "user.note", "x");
	ok(lxmd_check_config(cfg, &err) == 0, "known namespaces accepted");
	json_decref(cfg);
	cfg = json_pack("{s:s}", "limitz.cpu", "2");
	ok(lxmd_check_config(cfg, &err) < 0 && err && strstr(err->msg, "limitz.cpu"),
	   "unknown namespace refused, key named");
	lxm_error_free(TAKE_PTR(err));
	json_decref(cfg);
	cfg = json_pack("{s:i}", "limits.cpu", 2);
	ok(lxmd_check_config(cfg, &err) < 0 && err && strstr(err->msg, "must be a string"),
	   "non-string value refused");
	lxm_error_free(TAKE_PTR(err));
	json_decref(cfg);
	cfg = json_pack("{s:{s:s}}", "eth0", "nictype", "bridged");
	ok(lxmd_check_devices(cfg, &err) < 0 && err && strstr(err->msg, "'type'"),
	   "device without type refused");
	lxm_error_free(TAKE_PTR(err));
	json_decref(cfg);
}

int main(void)
{
	char cmd[600];

	if (!mkdtemp(tmp))
		return 1;
	test_kernel_check();
	test_lock();
	test_routes();
	test_filter_etag_config();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	ok(system(cmd) == 0, "temporary tree removed");
	return tap_done();
}
