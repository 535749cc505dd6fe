/* The device-type table (lxmd/devices.c: known, unsupported and unknown types, each type's
 * validation) and unix devices (lxmd/unixdev.c: parsing, resolving a host node). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "lxmd/cgroup/cgroup.h"
#include "lxmd/devices.h"
#include "lxmd/disks.h"
#include "lxmd/nic.h"
#include "lxmd/proxy.h"
#include "lxmd/unixdev.h"
#include "lxmd/volumes.h"
#include "util.h"
#include "tests/unit/tap.h"

#define diag(...) (printf("# "), printf(__VA_ARGS__), printf("\n"))

/* Validates a devices object given as JSON: the result, and the message in *msg (to free). */
static int check(const char *json, char **msg)
{
	_cleanup_json_ json_t *devs = json_loads(json, 0, NULL);
	struct lxm_error *err = NULL;
	int r;

	*msg = NULL;
	if (!devs)
		return -999;
	r = lxmd_devices_validate(devs, &err);
	if (err)
		*msg = strdup(err->msg);
	lxm_error_free(err);
	return r;
}

/* Whether json is refused with a message containing each of the NULL-terminated words. */
static bool refused(const char *json, ...)
{
	_cleanup_free_ char *msg = NULL;
	bool all = true;
	va_list ap;
	int r = check(json, &msg);

	if (r != -EINVAL || !msg) {
		diag("%s: %d, %s", json, r, msg ? msg : "(no message)");
		return false;
	}
	va_start(ap, json);
	for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *))
		if (!strstr(msg, w)) {
			diag("'%s' lacks '%s'", msg, w);
			all = false;
		}
	va_end(ap);
	return all;
}

static bool accepted(const char *json)
{
	_cleanup_free_ char *msg = NULL;
	int r = check(json, &msg);

	if (r != 0)
		diag("%s: %d %s", json, r, msg ? msg : "");
	return r == 0;
}

static void test_table(void)
{
	static const char *const known[] = { "none",  "disk",	   "nic",
					     "proxy", "unix-char", "unix-block" };
	const struct lxmd_device_type *t;

	for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
		t = lxmd_device_type_find(known[i]);
		ok(t && streq(t->name, known[i]) && t->validate, "type %s is in the table",
		   known[i]);
	}
	ok(lxmd_device_type_find("gpu") == NULL, "gpu is not implemented");
	ok(lxmd_device_type_find("Disk") == NULL, "types are case-sensitive");
	ok(lxmd_device_type_find(NULL) == NULL, "NULL type");
	t = lxmd_device_type_find("unix-char");
	ok(t && t->kind == LXMD_DEVICE_UNIX_CHAR && t->hotplug, "unix-char hot-plugs");
}

static void test_types(void)
{
	ok(refused("{\"g\": {\"type\": \"gpu\"}}", "device 'g'",
		   "type 'gpu' is not supported by lxm", NULL),
	   "gpu refused as unsupported");
	ok(refused("{\"u\": {\"type\": \"usb\", \"vendorid\": \"1\"}}",
		   "type 'usb' is not supported", NULL),
	   "usb refused as unsupported");
	ok(refused("{\"h\": {\"type\": \"unix-hotplug\"}}", "not supported", NULL),
	   "unix-hotplug refused as unsupported");
	ok(refused("{\"d\": {\"type\": \"dsik\", \"path\": \"/x\", \"source\": \"/y\"}}",
		   "device 'd'", "unknown type 'dsik'", "did you mean 'disk'?", NULL),
	   "a typo is refused with the nearest type");
	ok(refused("{\"c\": {\"type\": \"unix-chr\", \"source\": \"/dev/zero\"}}",
		   "did you mean 'unix-char'?", NULL),
	   "unix-chr suggests unix-char");
	ok(refused("{\"n\": {\"type\": \"nci\"}}", "did you mean 'nic'?", NULL),
	   "nci suggests nic");
	ok(refused("{\"x\": {\"path\": \"/x\"}}", "device 'x'", "missing key 'type'", NULL),
	   "no type");
	ok(refused("{\"x\": {\"type\": \"\"}}", "device 'x'", "type", NULL), "empty type");
	ok(refused("{\"a/b\": {\"type\": \"none\"}}", "invalid device name 'a/b'", NULL),
	   "a bad device name");
}

static void test_none(void)
{
	ok(accepted("{\"eth0\": {\"type\": \"none\"}}"), "none alone");
	ok(refused("{\"eth0\": {\"type\": \"none\", \"network\": \"br0\"}}", "device 'eth0'",
		   "key 'network'", "value 'br0'", "type none has no other key", NULL),
	   "none with another key is refused, naming the key and value");
}

static void test_disk(void)
{
	ok(accepted("{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"default\"}}"),
	   "a root disk");
	ok(accepted("{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\", "
		    "\"size\": \"32MiB\"}}"),
	   "a root disk with a size");
	ok(refused("{\"root\": {\"type\": \"disk\", \"path\": \"/\"}}", "root disk device 'root'",
		   "pool", NULL),
	   "a root disk without a pool");
	ok(refused("{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\", "
		   "\"size\": \"lots\"}}",
		   "root disk device 'root'", "size", NULL),
	   "a root disk with a bad size");
	ok(refused("{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\", "
		   "\"source\": \"/srv\"}}",
		   "key 'source'", "value '/srv'", NULL),
	   "a root disk with a source");
	ok(refused("{\"r1\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\"}, "
		   "\"r2\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\"}}",
		   "two root disks", NULL),
	   "two root disks");
	ok(accepted("{\"data\": {\"type\": \"disk\", \"path\": \"/data\", \"source\": \"/srv\"}}"),
	   "a host-path disk");
	ok(refused("{\"data\": {\"type\": \"disk\", \"path\": \"data\", \"source\": \"/srv\"}}",
		   "disk device 'data'", "path=data", NULL),
	   "a disk with a relative path (disks.c's rules)");
}

static void test_nic_proxy(void)
{
	ok(accepted("{\"eth0\": {\"type\": \"nic\", \"network\": \"lxmbr0\"}}"), "a nic");
	ok(refused("{\"eth0\": {\"type\": \"nic\", \"network\": \"lxmbr0\", \"mtu\": \"x\"}}",
		   "eth0", "mtu", NULL),
	   "a nic with a bad mtu (nic.c's rules)");
	ok(accepted("{\"p\": {\"type\": \"proxy\", \"listen\": \"tcp:127.0.0.1:8080\", "
		    "\"connect\": \"tcp:127.0.0.1:80\"}}"),
	   "a proxy");
	ok(refused("{\"p\": {\"type\": \"proxy\", \"listen\": \"tcp:127.0.0.1:8080\"}}", "'p'",
		   "connect", NULL),
	   "a proxy without connect (proxy.c's rules)");
}

static void test_unix_validate(void)
{
	ok(accepted("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\"}}"),
	   "unix-char with a source");
	ok(accepted("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"path\": "
		    "\"/dev/myzero\", \"uid\": \"1000\", \"gid\": \"100\", \"mode\": \"0640\", "
		    "\"required\": \"false\"}}"),
	   "unix-char with every key");
	ok(accepted(
		   "{\"b\": {\"type\": \"unix-block\", \"path\": \"/dev/loopx\", \"major\": \"7\", "
		   "\"minor\": \"200\"}}"),
	   "unix-block by major and minor");
	ok(refused("{\"b\": {\"type\": \"unix-block\", \"path\": \"/dev/loopx\", \"major\": "
		   "\"7\"}}",
		   "unix device 'b'", "no source=", NULL),
	   "no source and no minor");
	ok(refused("{\"z\": {\"type\": \"unix-char\"}}", "unix device 'z'", NULL),
	   "neither source nor path");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"mode\": "
		   "\"rw\"}}",
		   "unix device 'z'", "mode=rw", NULL),
	   "a bad mode names the device, the key and the value");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"mode\": "
		   "\"0999\"}}",
		   "mode=0999", NULL),
	   "mode is octal");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"uid\": "
		   "\"-1\"}}",
		   "uid=-1", NULL),
	   "a negative uid");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"required\": "
		   "\"maybe\"}}",
		   "required=maybe", NULL),
	   "a bad boolean");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"source\": \"dev/zero\"}}",
		   "source=dev/zero", NULL),
	   "a relative source");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"path\": "
		   "\"/dev/../x\"}}",
		   "path=/dev/../x", NULL),
	   "a path with ..");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"path\": "
		   "\"/\"}}",
		   "path=/", NULL),
	   "path / itself");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"owner\": "
		   "\"me\"}}",
		   "unix device 'z'", "unknown key 'owner'", "value 'me'", NULL),
	   "an unknown key names the key and the value");
	ok(refused("{\"z\": {\"type\": \"unix-char\", \"path\": \"/dev/x\", \"major\": \"1\", "
		   "\"minor\": \"99999999\"}}",
		   "minor=99999999", NULL),
	   "a minor out of range");
}

static int parse_one(const char *json, struct lxmd_unixdev *u, json_t **keep)
{
	*keep = json_loads(json, 0, NULL);
	return *keep ? lxmd_unixdev_parse("d", *keep, u, NULL) : -999;
}

static void test_unix_parse_resolve(void)
{
	struct lxmd_unixdev u;
	struct lxm_cgroup_device n;
	struct lxm_error *err = NULL;
	json_t *j = NULL;
	struct stat st;

	ok(parse_one("{\"type\": \"disk\", \"path\": \"/x\", \"source\": \"/y\"}", &u, &j) == 0,
	   "a disk is not a unix device");
	json_decref(j);
	ok(parse_one("{\"type\": \"unix-char\", \"source\": \"/dev/zero\"}", &u, &j) == 1 &&
		   u.type == 'c' && streq(u.path, "/dev/zero") && u.mode == 0660 && u.uid == 0 &&
		   u.gid == 0 && u.required,
	   "defaults: path = source, mode 0660, uid and gid 0, required");
	ok(lxmd_unixdev_resolve(&u, &n, NULL) == 1 && n.type == 'c' && n.major == 1 && n.minor == 5,
	   "/dev/zero resolves to c 1:5");
	json_decref(j);
	ok(parse_one("{\"type\": \"unix-char\", \"source\": \"/dev/zero\", \"path\": "
		     "\"/dev/z\", \"minor\": \"7\", \"mode\": \"600\", \"uid\": \"5\"}",
		     &u, &j) == 1 &&
		   streq(u.path, "/dev/z") && u.mode == 0600 && u.uid == 5,
	   "path, mode (octal without a leading 0), uid");
	ok(lxmd_unixdev_resolve(&u, &n, NULL) == 1 && n.major == 1 && n.minor == 7,
	   "minor= wins over the source's");
	json_decref(j);
	ok(parse_one("{\"type\": \"unix-block\", \"source\": \"/dev/zero\"}", &u, &j) == 1 &&
		   lxmd_unixdev_resolve(&u, &n, &err) == -ENODEV && err &&
		   strstr(err->msg, "not a block device"),
	   "a char node as a unix-block source is refused");
	lxm_error_free(TAKE_PTR(err));
	json_decref(j);
	ok(parse_one("{\"type\": \"unix-char\", \"source\": \"/nonexistent/lxm-dev\"}", &u, &j) ==
			   1 &&
		   lxmd_unixdev_resolve(&u, &n, &err) == -ENOENT && err &&
		   strstr(err->msg, "unix device 'd'") && strstr(err->msg, "/nonexistent/lxm-dev"),
	   "a missing required source fails, naming the device and the path");
	lxm_error_free(TAKE_PTR(err));
	json_decref(j);
	ok(parse_one("{\"type\": \"unix-char\", \"source\": \"/nonexistent/lxm-dev\", "
		     "\"required\": \"false\"}",
		     &u, &j) == 1 &&
		   lxmd_unixdev_resolve(&u, &n, &err) == 0 && !err,
	   "a missing source that is not required is skipped");
	json_decref(j);
	ok(parse_one("{\"type\": \"unix-char\", \"source\": \"/etc/hostname\"}", &u, &j) == 1 &&
		   stat("/etc/hostname", &st) == 0 && lxmd_unixdev_resolve(&u, &n, &err) == -ENODEV,
	   "a regular file is no device node");
	lxm_error_free(TAKE_PTR(err));
	json_decref(j);
	ok(parse_one("{\"type\": \"unix-block\", \"path\": \"/dev/b\", \"major\": \"7\", "
		     "\"minor\": \"3\"}",
		     &u, &j) == 1 &&
		   lxmd_unixdev_resolve(&u, &n, NULL) == 1 && n.type == 'b' && n.major == 7 &&
		   n.minor == 3 && !u.source,
	   "major and minor without a source");
	json_decref(j);
}

/* Each consumer classifies by type: a none device is nothing to any of them. */
static void test_none_consumers(void)
{
	_cleanup_json_ json_t *none = json_pack("{s:s}", "type", "none");
	_cleanup_json_ json_t *xdevs = json_pack("{s:{s:s}}", "root", "type", "none");
	struct lxmd_disk disk;
	struct lxmd_nic nic;
	struct lxmd_proxy proxy;
	struct lxmd_unixdev u;

	ok(lxmd_disk_parse("data", none, &disk, NULL) == 0, "disks pass over none");
	ok(lxmd_nic_parse("eth0", none, &nic, NULL) == 0, "nics pass over none");
	ok(lxmd_proxy_parse("p", none, &proxy, NULL) == 0, "proxies pass over none");
	ok(lxmd_unixdev_parse("u", none, &u, NULL) == 0, "unix devices pass over none");
	ok(lxmd_root_disk(xdevs, NULL) == NULL, "a none named root is no root disk");
}

int main(void)
{
	test_none_consumers();
	test_table();
	test_types();
	test_none();
	test_disk();
	test_nic_proxy();
	test_unix_validate();
	test_unix_parse_resolve();
	return tap_done();
}
