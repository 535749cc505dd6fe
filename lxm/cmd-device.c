/* lxm config device ... and lxm profile device ...: the devices of an instance or of a profile.
 * One implementation serves both kinds: each verb reads the object with its ETag, changes its own
 * devices map and PUTs its writable fields back guarded by that ETag, as lxc does. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"

int lxm_cli_kind_put(struct lxm_client *c, const struct lxm_cli_config_kind *k, const char *name,
		     const json_t *obj, const char *etag, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = json_object();
	_cleanup_free_ char *path = lxm_cli_path(k->prefix, name);
	int r;

	if (!body || !path)
		return lxm_error_set(err, -ENOMEM, 500, "update %s '%s': out of memory", k->kind,
				     name);
	for (const char *const *f = k->put_fields; f && *f; f++) {
		json_t *v = json_object_get(obj, *f);

		if (v && json_object_set(body, *f, v) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "update %s '%s': out of memory",
					     k->kind, name);
	}
	r = lxm_cli_put(c, path, body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "update %s '%s'", k->kind, name);
	return 0;
}

int lxm_cli_devices_map(const json_t *in, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *out = json_object();
	const char *dev;
	json_t *v;

	if (!out)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (in && !json_is_null(in) && !json_is_object(in))
		return lxm_error_set(err, -EINVAL, 400, "devices must be a map of device names");
	json_object_foreach ((json_t *)in, dev, v) {
		_cleanup_free_ char *what = NULL;
		json_t *keys = NULL;
		int r;

		if (asprintf(&what, "device '%s'", dev) < 0) {
			what = NULL;
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		}
		r = lxm_cli_string_map(v, what, &keys, err);
		if (r < 0)
			return r;
		if (json_object_set_new(out, dev, keys) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* What a device verb works on: the owner as read, with the ETag of that read. */
struct owner {
	const struct lxm_cli_config_kind *k; /* instance or profile */
	const char *name;		     /* the owner's name as typed */
	struct lxm_client *c;		     /* the connection */
	json_t *obj;			     /* the object as the GET gave it */
	char *etag;			     /* its ETag, for the PUT */
	json_t *devices;		     /* its own devices map, inside obj (borrowed) */
};

static void owner_done(struct owner *o)
{
	lxm_client_free(o->c);
	json_decref(o->obj);
	free(o->etag);
	*o = (struct owner){};
}

/* Checks that the verb got between min and max arguments after the owner's name (max < 0: no
 * bound), connects and reads the owner. expected names all arguments ("NAME DEVICE KEY"). */
static int owner_open(const struct lxm_cli_config_kind *k, int argc, char **argv, int min, int max,
		      const char *expected, struct owner *o, struct lxm_error **err)
{
	json_t *devices;
	int r;

	r = lxm_cli_open_target(argc, argv, min + 1, max < 0 ? -1 : max + 1, expected, &o->c, err);
	if (r < 0)
		return r;
	o->k = k;
	o->name = argv[1];
	r = lxm_cli_kind_get(o->c, k, o->name, &o->obj, &o->etag, err);
	if (r < 0)
		return r;
	devices = json_object_get(o->obj, "devices");
	if (!json_is_object(devices)) {
		devices = json_object();
		if (!devices || json_object_set_new(o->obj, "devices", devices) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	}
	o->devices = devices;
	return 0;
}

static int owner_put(struct owner *o, struct lxm_error **err)
{
	return lxm_cli_kind_put(o->c, o->k, o->name, o->obj, o->etag, err);
}

/* The profile of an instance whose device dev is (the last of its profiles that has it: later
 * profiles win), as a new string, or NULL when none has it. */
static int device_profile(struct owner *o, const char *dev, char **ret, struct lxm_error **err)
{
	const json_t *profiles = json_object_get(o->obj, "profiles");

	*ret = NULL;
	for (size_t i = json_array_size(profiles); i-- > 0;) {
		const char *p = json_string_value(json_array_get(profiles, i));
		_cleanup_json_ json_t *prof = NULL;
		int r;

		if (!p)
			continue;
		r = lxm_cli_kind_get(o->c, &lxm_cli_profile_kind, p, &prof, NULL, err);
		if (r < 0)
			return r;
		if (json_object_get(json_object_get(prof, "devices"), dev)) {
			*ret = strdup(p);
			return *ret ? 0 : -ENOMEM;
		}
	}
	return 0;
}

/* The error for a device the owner does not have itself. An instance's device that comes from
 * one of its profiles cannot be changed or removed here: the message says which profile and
 * what to do instead (the hint of the verb). */
static int no_such_device(struct owner *o, const char *dev, const char *hint,
			  struct lxm_error **err)
{
	_cleanup_free_ char *profile = NULL;
	int r;

	if (o->k->inherits && json_object_get(json_object_get(o->obj, "expanded_devices"), dev)) {
		r = device_profile(o, dev, &profile, err);
		if (r < 0)
			return r;
		return lxm_error_set(err, -EINVAL, 400,
				     "device '%s' of instance '%s' comes from profile '%s': %s",
				     dev, o->name, profile ? profile : "?", hint);
	}
	return lxm_error_set(err, -ENOENT, 404, "device '%s' does not exist on %s '%s'", dev,
			     o->k->kind, o->name);
}

/* ---- add, override ---- */

/* add NAME DEVICE TYPE [KEY=VALUE...] */
static int device_add(const struct lxm_cli_config_kind *k, int argc, char **argv,
		      struct lxm_error **err)
{
	_cleanup_(owner_done) struct owner o = {};
	_cleanup_json_ json_t *dev = NULL;
	const char *cmd = argv[0];
	int r;

	r = owner_open(k, argc, argv, 2, -1, "NAME DEVICE TYPE [KEY=VALUE...]", &o, err);
	if (r < 0)
		return r;
	if (json_object_get(o.devices, argv[2]))
		return lxm_error_set(err, -EEXIST, 409, "device '%s' already exists on %s '%s'",
				     argv[2], k->kind, o.name);
	dev = json_pack("{s:s}", "type", argv[3]);
	if (!dev)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_kv_args(cmd, argc - 4, argv + 4, dev, err);
	if (r < 0)
		return r;
	if (json_object_set(o.devices, argv[2], dev) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = owner_put(&o, err);
	if (r < 0)
		return r;
	printf("Device %s added to %s\n", argv[2], o.name);
	return 0;
}

/* override NAME DEVICE [KEY=VALUE...]: the profile's device copied into the instance, with
 * the keys given changed. */
static int device_override(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(owner_done) struct owner o = {};
	_cleanup_json_ json_t *dev = NULL;
	const char *cmd = argv[0];
	const json_t *from;
	int r;

	r = owner_open(&lxm_cli_instance_kind, argc, argv, 1, -1, "NAME DEVICE [KEY=VALUE...]", &o,
		       err);
	if (r < 0)
		return r;
	if (json_object_get(o.devices, argv[2]))
		return lxm_error_set(err, -EEXIST, 409,
				     "device '%s' already exists on instance '%s' (change it with "
				     "'lxm config device set')",
				     argv[2], o.name);
	from = json_object_get(json_object_get(o.obj, "expanded_devices"), argv[2]);
	if (!json_is_object(from))
		return lxm_error_set(err, -ENOENT, 404,
				     "device '%s' does not exist in the profiles of instance '%s'",
				     argv[2], o.name);
	dev = json_deep_copy(from);
	if (!dev)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_kv_args(cmd, argc - 3, argv + 3, dev, err);
	if (r < 0)
		return r;
	if (json_object_set(o.devices, argv[2], dev) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = owner_put(&o, err);
	if (r < 0)
		return r;
	printf("Device %s overridden for %s\n", argv[2], o.name);
	return 0;
}

/* ---- remove ---- */

/* remove NAME DEVICE...: all or none. */
static int device_remove(const struct lxm_cli_config_kind *k, int argc, char **argv,
			 struct lxm_error **err)
{
	_cleanup_(owner_done) struct owner o = {};
	_cleanup_free_ char *hint = NULL;
	int r;

	r = owner_open(k, argc, argv, 1, -1, "NAME DEVICE...", &o, err);
	if (r < 0)
		return r;
	for (int i = 2; i < argc; i++) {
		if (json_object_del(o.devices, argv[i]) == 0)
			continue;
		if (asprintf(&hint,
			     "override it ('lxm config device override %s %s') or mask it with "
			     "a device of type none ('lxm config device add %s %s none')",
			     o.name, argv[i], o.name, argv[i]) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
		return no_such_device(&o, argv[i], hint, err);
	}
	r = owner_put(&o, err);
	if (r < 0)
		return r;
	for (int i = 2; i < argc; i++)
		printf("Device %s removed from %s\n", argv[i], o.name);
	return 0;
}

/* ---- set, unset, get ---- */

/* The owner's own device dev, for set and unset. */
static int own_device(struct owner *o, const char *dev, json_t **ret, struct lxm_error **err)
{
	_cleanup_free_ char *hint = NULL;

	*ret = json_object_get(o->devices, dev);
	if (json_is_object(*ret))
		return 0;
	if (asprintf(&hint,
		     "copy it into the instance with changes ('lxm config device override %s %s "
		     "KEY=VALUE...') or change the profile",
		     o->name, dev) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return no_such_device(o, dev, hint, err);
}

/* set NAME DEVICE KEY=VALUE... or set NAME DEVICE KEY VALUE */
static int device_set(const struct lxm_cli_config_kind *k, int argc, char **argv,
		      struct lxm_error **err)
{
	_cleanup_(owner_done) struct owner o = {};
	_cleanup_json_ json_t *set = NULL;
	json_t *dev;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 3, -1,
			  "NAME DEVICE KEY=VALUE... or NAME DEVICE KEY VALUE", err);
	if (r >= 0)
		r = lxm_cli_set_args(argv[0], argc - 3, argv + 3, &set, err);
	if (r >= 0)
		r = owner_open(k, argc, argv, 2, -1, "NAME DEVICE KEY=VALUE...", &o, err);
	if (r >= 0)
		r = own_device(&o, argv[2], &dev, err);
	if (r < 0)
		return r;
	if (json_object_update(dev, set) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return owner_put(&o, err);
}

/* unset NAME DEVICE KEY */
static int device_unset(const struct lxm_cli_config_kind *k, int argc, char **argv,
			struct lxm_error **err)
{
	_cleanup_(owner_done) struct owner o = {};
	json_t *dev;
	int r;

	r = owner_open(k, argc, argv, 2, 2, "NAME DEVICE KEY", &o, err);
	if (r >= 0)
		r = own_device(&o, argv[2], &dev, err);
	if (r < 0)
		return r;
	if (streq(argv[3], "type"))
		return lxm_error_set(err, -EINVAL, 400,
				     "device '%s' of %s '%s': cannot unset key 'type': a device "
				     "needs one (remove the device instead)",
				     argv[2], k->kind, o.name);
	if (json_object_del(dev, argv[3]) < 0)
		return lxm_error_set(err, -ENOENT, 404,
				     "device '%s' of %s '%s': cannot unset key '%s': it is not set",
				     argv[2], k->kind, o.name, argv[3]);
	return owner_put(&o, err);
}

/* get NAME DEVICE KEY: an instance's device may come from a profile; an unset key prints an
 * empty line, as lxc does. */
static int device_get(const struct lxm_cli_config_kind *k, int argc, char **argv,
		      struct lxm_error **err)
{
	_cleanup_(owner_done) struct owner o = {};
	const json_t *dev;
	const char *v;
	int r;

	r = owner_open(k, argc, argv, 2, 2, "NAME DEVICE KEY", &o, err);
	if (r < 0)
		return r;
	dev = json_object_get(o.devices, argv[2]);
	if (!dev && k->inherits)
		dev = json_object_get(json_object_get(o.obj, "expanded_devices"), argv[2]);
	if (!json_is_object(dev))
		return lxm_error_set(err, -ENOENT, 404, "device '%s' does not exist on %s '%s'",
				     argv[2], k->kind, o.name);
	v = json_string_value(json_object_get(dev, argv[3]));
	printf("%s\n", v ? v : "");
	return 0;
}

/* ---- list, show ---- */

/* list NAME: the names of the owner's own devices, one a line, sorted. */
static int device_list(const struct lxm_cli_config_kind *k, int argc, char **argv,
		       struct lxm_error **err)
{
	_cleanup_(owner_done) struct owner o = {};
	_cleanup_json_ json_t *sorted = NULL;
	const char *dev;
	json_t *v;
	int r;

	r = owner_open(k, argc, argv, 0, 0, k->name_args, &o, err);
	if (r < 0)
		return r;
	sorted = lxm_json_sorted(o.devices);
	if (!sorted)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	json_object_foreach (sorted, dev, v)
		printf("%s\n", dev);
	return 0;
}

/* show NAME: the owner's own devices as YAML. */
static int device_show(const struct lxm_cli_config_kind *k, int argc, char **argv,
		       struct lxm_error **err)
{
	_cleanup_(owner_done) struct owner o = {};
	_cleanup_json_ json_t *view = NULL;
	_cleanup_free_ char *what = NULL;
	int r;

	r = owner_open(k, argc, argv, 0, 0, k->name_args, &o, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "devices of %s '%s'", k->kind, o.name) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	view = lxm_json_sorted(o.devices);
	return lxm_cli_print_yaml(argv[0], view, what, err);
}

/* ---- the two verb groups ---- */

#define DEVICE_VERBS(prefix, kindp)                                                                \
	static int prefix##_add(int argc, char **argv, struct lxm_error **err)                     \
	{                                                                                          \
		return device_add(kindp, argc, argv, err);                                         \
	}                                                                                          \
	static int prefix##_remove(int argc, char **argv, struct lxm_error **err)                  \
	{                                                                                          \
		return device_remove(kindp, argc, argv, err);                                      \
	}                                                                                          \
	static int prefix##_set(int argc, char **argv, struct lxm_error **err)                     \
	{                                                                                          \
		return device_set(kindp, argc, argv, err);                                         \
	}                                                                                          \
	static int prefix##_unset(int argc, char **argv, struct lxm_error **err)                   \
	{                                                                                          \
		return device_unset(kindp, argc, argv, err);                                       \
	}                                                                                          \
	static int prefix##_get(int argc, char **argv, struct lxm_error **err)                     \
	{                                                                                          \
		return device_get(kindp, argc, argv, err);                                         \
	}                                                                                          \
	static int prefix##_list(int argc, char **argv, struct lxm_error **err)                    \
	{                                                                                          \
		return device_list(kindp, argc, argv, err);                                        \
	}                                                                                          \
	static int prefix##_show(int argc, char **argv, struct lxm_error **err)                    \
	{                                                                                          \
		return device_show(kindp, argc, argv, err);                                        \
	}

DEVICE_VERBS(instance_device, &lxm_cli_instance_kind)
DEVICE_VERBS(profile_device, &lxm_cli_profile_kind)

const struct lxm_command lxm_config_device_commands[] = {
	LXM_CMD("add", instance_device_add, "Add a device to an instance",
		"config device add NAME DEVICE TYPE [KEY=VALUE...]"),
	LXM_CMD("get", instance_device_get, "Get the value of a device key",
		"config device get NAME DEVICE KEY"),
	LXM_CMD("list", instance_device_list, "List an instance's own devices",
		"config device list NAME"),
	LXM_CMD("override", device_override,
		"Copy a device from a profile into an instance, with changes",
		"config device override NAME DEVICE [KEY=VALUE...]"),
	LXM_CMD("remove", instance_device_remove, "Remove devices from an instance",
		"config device remove NAME DEVICE..."),
	LXM_CMD("set", instance_device_set, "Set device keys",
		"config device set NAME DEVICE KEY=VALUE... | config device set NAME DEVICE KEY "
		"VALUE"),
	LXM_CMD("show", instance_device_show, "Show an instance's own devices as YAML",
		"config device show NAME"),
	LXM_CMD("unset", instance_device_unset, "Unset a device key",
		"config device unset NAME DEVICE KEY"),
	{},
};

const struct lxm_command lxm_profile_device_commands[] = {
	LXM_CMD("add", profile_device_add, "Add a device to a profile",
		"profile device add PROFILE DEVICE TYPE [KEY=VALUE...]"),
	LXM_CMD("get", profile_device_get, "Get the value of a device key",
		"profile device get PROFILE DEVICE KEY"),
	LXM_CMD("list", profile_device_list, "List a profile's devices",
		"profile device list PROFILE"),
	LXM_CMD("remove", profile_device_remove, "Remove devices from a profile",
		"profile device remove PROFILE DEVICE..."),
	LXM_CMD("set", profile_device_set, "Set device keys",
		"profile device set PROFILE DEVICE KEY=VALUE... | profile device set PROFILE "
		"DEVICE KEY VALUE"),
	LXM_CMD("show", profile_device_show, "Show a profile's devices as YAML",
		"profile device show PROFILE"),
	LXM_CMD("unset", profile_device_unset, "Unset a device key",
		"profile device unset PROFILE DEVICE KEY"),
	{},
};

int lxm_cli_config_device(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_dispatch(lxm_config_device_commands,
				"add, get, list, override, remove, set, show or unset", argc, argv,
				err);
}

int lxm_cli_profile_device(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_dispatch(lxm_profile_device_commands,
				"add, get, list, remove, set, show or unset", argc, argv, err);
}
