/* The device-type table: see devices.h. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "devices.h"
#include "disks.h"
#include "nic.h"
#include "profiles/policy-internal.h"
#include "profiles/policy.h"
#include "proxy.h"
#include "unixdev.h"
#include "util.h"

int lxmd_device_bool(const char *v)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (streq(v, yes[i]))
			return 1;
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		if (streq(v, no[i]))
			return 0;
	return -EINVAL;
}

static const char *str(const json_t *dev, const char *key)
{
	return json_string_value(json_object_get(dev, key));
}

/* The root disk: a pool (the instance's volume lives there), a size= that parses, and no source=
 * (the volume is the instance's own). */
static int validate_root_disk(const char *name, const json_t *dev, struct lxm_error **err)
{
	const char *pool = str(dev, "pool"), *size = str(dev, "size"), *source = str(dev, "source");
	int64_t bytes;

	if (source && *source)
		return lxm_error_set(err, -EINVAL, 400,
				     "root disk device '%s': key 'source' (value '%s'): the root "
				     "disk is the instance's own volume (set pool= instead)",
				     name, source);
	if (!pool || !*pool)
		return lxm_error_set(err, -EINVAL, 400,
				     "root disk device '%s': no pool= given (the storage pool of "
				     "the instance's volume)",
				     name);
	if (size && *size && lxm_parse_size("size", size, 0, &bytes, err) < 0)
		return lxm_error_prefix(err, "root disk device '%s'", name);
	return 0;
}

static int validate_disk(const char *name, const json_t *dev, struct lxm_error **err)
{
	struct lxmd_disk disk;
	const char *path = str(dev, "path");

	if (path && streq(path, "/"))
		return validate_root_disk(name, dev, err);
	return lxmd_disk_parse(name, dev, &disk, err) < 0 ? -EINVAL : 0;
}

static int validate_nic(const char *name, const json_t *dev, struct lxm_error **err)
{
	struct lxmd_nic nic;

	return lxmd_nic_parse(name, dev, &nic, err) < 0 ? -EINVAL : 0;
}

static int validate_proxy(const char *name, const json_t *dev, struct lxm_error **err)
{
	struct lxmd_proxy proxy;

	return lxmd_proxy_parse(name, dev, &proxy, err) < 0 ? -EINVAL : 0;
}

static int validate_unix(const char *name, const json_t *dev, struct lxm_error **err)
{
	struct lxmd_unixdev u;

	return lxmd_unixdev_parse(name, dev, &u, err) < 0 ? -EINVAL : 0;
}

/* A none device only masks: any other key would be ignored, so it is refused. */
static int validate_none(const char *name, const json_t *dev, struct lxm_error **err)
{
	const char *key;
	json_t *v;

	json_object_foreach ((json_t *)dev, key, v)
		if (!streq(key, "type"))
			return lxm_error_set(err, -EINVAL, 400,
					     "device '%s': key '%s' (value '%s'): a device of type "
					     "none has no other key",
					     name, key, json_string_value(v) ?: "");
	return 0;
}

static const struct lxmd_device_type types[] = {
	{ "none", LXMD_DEVICE_NONE, true, validate_none },
	{ "disk", LXMD_DEVICE_DISK, true, validate_disk },
	{ "nic", LXMD_DEVICE_NIC, true, validate_nic },
	{ "proxy", LXMD_DEVICE_PROXY, true, validate_proxy },
	{ "unix-char", LXMD_DEVICE_UNIX_CHAR, true, validate_unix },
	{ "unix-block", LXMD_DEVICE_UNIX_BLOCK, true, validate_unix },
};

/* LXD's device types that lxm does not implement. */
static const char *const unsupported[] = {
	"gpu", "usb", "infiniband", "tpm", "pci", "unix-hotplug",
};

const struct lxmd_device_type *lxmd_device_type_find(const char *type)
{
	for (size_t i = 0; type && i < ARRAY_SIZE(types); i++)
		if (streq(type, types[i].name))
			return &types[i];
	return NULL;
}

int lxmd_device_type_of(const char *name, const json_t *dev, const struct lxmd_device_type **ret,
			struct lxm_error **err)
{
	const char *names[ARRAY_SIZE(types)];
	const json_t *t = json_object_get(dev, "type");
	const char *type = json_string_value(t);

	if (!json_is_object(dev))
		return lxm_error_set(err, -EINVAL, 400, "device '%s': expected an object", name);
	if (!t)
		return lxm_error_set(err, -EINVAL, 400, "device '%s': missing key 'type'", name);
	if (!type || !*type)
		return lxm_error_set(err, -EINVAL, 400,
				     "device '%s': key 'type' must be a non-empty string", name);
	*ret = lxmd_device_type_find(type);
	if (*ret)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(unsupported); i++)
		if (streq(type, unsupported[i]))
			return lxm_error_set(err, -EINVAL, 400,
					     "device '%s': type '%s' is not supported by lxm", name,
					     type);
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		names[i] = types[i].name;
	return lxm_error_set(
		err, -EINVAL, 400,
		"device '%s': unknown type '%s' (did you mean '%s'? known: none, disk, "
		"nic, proxy, unix-char, unix-block)",
		name, type, lxm_closest_word(type, names, ARRAY_SIZE(names)));
}

int lxmd_device_validate(const char *name, const json_t *dev, struct lxm_error **err)
{
	const struct lxmd_device_type *t;
	int r = lxmd_device_type_of(name, dev, &t, err);

	return r < 0 ? r : t->validate(name, dev, err);
}

int lxmd_devices_validate(const json_t *devices, struct lxm_error **err)
{
	const char *name, *root = NULL;
	json_t *dev;
	int r;

	json_object_foreach ((json_t *)devices, name, dev) {
		const char *reason = lxm_entity_name_invalid_reason(name);

		if (reason)
			return lxm_error_set(err, -EINVAL, 400, "invalid device name '%s': %s",
					     name, reason);
		if ((r = lxmd_device_validate(name, dev, err)) < 0)
			return r;
		if (!streq(str(dev, "type"), "disk") || !streq(str(dev, "path"), "/"))
			continue;
		if (root)
			return lxm_error_set(err, -EINVAL, 400,
					     "devices '%s' and '%s': two root disks (path=/)", root,
					     name);
		root = name;
	}
	return 0;
}
