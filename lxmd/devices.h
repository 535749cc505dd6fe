/* The device types an instance or a profile may have, in one table: LXD's names, which of them lxm
 * implements, how each is checked and whether a running container takes a change of it live.
 *
 * Known types: disk (disks.c and the root disk rules of volumes.c), nic (nic.c), proxy (proxy.c),
 * unix-char and unix-block (unixdev.c) and none, which has no other key: a device of type none
 * masks a device of the same name from an earlier profile. It stays in the expanded devices, as in
 * LXD, and every consumer passes over it, since each one classifies devices by their type.
 *
 * LXD's other types (gpu, usb, infiniband, tpm, pci, unix-hotplug) are refused as not supported;
 * any other type is refused with the nearest known one suggested. Pure: no I/O. */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>

#include "error.h"

enum lxmd_device_kind {
	LXMD_DEVICE_NONE,
	LXMD_DEVICE_DISK,
	LXMD_DEVICE_NIC,
	LXMD_DEVICE_PROXY,
	LXMD_DEVICE_UNIX_CHAR,
	LXMD_DEVICE_UNIX_BLOCK,
	_LXMD_DEVICE_KIND_MAX,
	_LXMD_DEVICE_KIND_INVALID = -EINVAL,
};

/* One implemented device type. */
struct lxmd_device_type {
	const char *name;	    /* the type= value */
	enum lxmd_device_kind kind; /* which one */
	bool hotplug;		    /* a running container takes an added, changed or removed device
				       of this type live */
	/* Checks device name's keys and values: 0, or -EINVAL (400) naming the device, the key and
	 * the value. */
	int (*validate)(const char *name, const json_t *dev, struct lxm_error **err);
};

/* LXD's boolean words for a device key: 1 for true, 1, yes or on, 0 for false, 0, no or off,
 * -EINVAL for anything else. */
int lxmd_device_bool(const char *v);

/* The entry for type, or NULL when lxm does not implement it. */
const struct lxmd_device_type *lxmd_device_type_find(const char *type);

/* The entry for device name's type=: 0 with *ret set, or -EINVAL (400): no type, a type of LXD
 * that lxm does not support ("type 'gpu' is not supported by lxm"), or an unknown type (with the
 * nearest known one suggested). */
int lxmd_device_type_of(const char *name, const json_t *dev, const struct lxmd_device_type **ret,
			struct lxm_error **err);

/* Checks one device: its type, then its keys and values by the type's validator. */
int lxmd_device_validate(const char *name, const json_t *dev, struct lxm_error **err);

/* Checks a devices object (of an instance or a profile): each device's name and the device
 * itself, and that at most one is a root disk (type=disk, path=/). */
int lxmd_devices_validate(const json_t *devices, struct lxm_error **err);
