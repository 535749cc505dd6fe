/* A VM's settings from its instance config (vm-config.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "profiles/policy.h"
#include "util.h"
#include "vm/vm-config.h"
#include "volumes.h"

int lxm_vm_cpuset_count(const char *cpuset)
{
	const char *s = cpuset;
	long count = 0;

	if (!s || !*s)
		return -EINVAL;
	for (;;) {
		char *end;
		unsigned long a, b;

		if (*s < '0' || *s > '9')
			return -EINVAL;
		a = b = strtoul(s, &end, 10);
		if (*end == '-') {
			s = end + 1;
			if (*s < '0' || *s > '9')
				return -EINVAL;
			b = strtoul(s, &end, 10);
		}
		if (b < a || b - a >= 65536)
			return -EINVAL;
		count += (long)(b - a + 1);
		if (count > 65536)
			return -EINVAL;
		if (*end == '\0')
			return (int)count;
		if (*end != ',')
			return -EINVAL;
		s = end + 1;
	}
}

static const char *config_str(const json_t *config, const char *key)
{
	const char *v = json_string_value(json_object_get(config, key));

	return v && *v ? v : NULL;
}

static int vm_vcpus(const char *name, const json_t *config, const struct lxm_vm_host *host,
		    unsigned *ret, struct lxm_error **err)
{
	const char *v = config_str(config, "limits.cpu");
	_cleanup_free_ char *set = NULL;
	int n, r;

	if (!v) {
		*ret = LXM_VM_DEFAULT_VCPUS;
		return 0;
	}
	r = lxm_parse_cpu("limits.cpu", v, host->ncpus, &set, err);
	if (r < 0) {
		lxm_error_prefix(err, "VM '%s'", name);
		return r;
	}
	/* A list pins a container's CPUs; a VM gets as many vCPUs as the list has CPUs. */
	n = lxm_vm_cpuset_count(set);
	if (n < 1 || n > LXM_QEMU_VCPUS_MAX)
		return lxm_error_set(err, -EINVAL, 400,
				     "VM '%s': config key 'limits.cpu': invalid value '%s': %d "
				     "CPUs, a VM can have 1 to %d",
				     name, v, n, LXM_QEMU_VCPUS_MAX);
	*ret = (unsigned)n;
	return 0;
}

static int vm_memory(const char *name, const json_t *config, const struct lxm_vm_host *host,
		     uint64_t *ret, struct lxm_error **err)
{
	const char *v = config_str(config, "limits.memory");
	int64_t bytes;
	uint64_t mib;
	int r;

	if (!v) {
		*ret = LXM_VM_DEFAULT_MEMORY_MIB;
		return 0;
	}
	r = lxm_parse_size("limits.memory", v, host->memory_bytes, &bytes, err);
	if (r < 0) {
		lxm_error_prefix(err, "VM '%s'", name);
		return r;
	}
	/* Guest RAM is given to QEMU in whole MiB: "1GB" is 953 MiB. */
	mib = (uint64_t)bytes >> 20;
	if (mib < LXM_QEMU_MEMORY_MIN || mib > LXM_QEMU_MEMORY_MAX)
		return lxm_error_set(
			err, -EINVAL, 400,
			"VM '%s': config key 'limits.memory': invalid value '%s': %llu "
			"MiB, a VM needs %d MiB to %llu MiB",
			name, v, (unsigned long long)mib, LXM_QEMU_MEMORY_MIN,
			(unsigned long long)LXM_QEMU_MEMORY_MAX);
	*ret = mib;
	return 0;
}

static int vm_accel(const char *name, const json_t *config, const struct lxm_vm_host *host,
		    enum lxm_qemu_accel *ret, struct lxm_error **err)
{
	const char *v = config_str(config, LXM_VM_KEY_ACCEL);
	enum lxm_qemu_accel a;

	if (v) {
		a = lxm_qemu_accel_from_string(v);
		if (a < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "VM '%s': config key '" LXM_VM_KEY_ACCEL
					     "': invalid value '%s': expected kvm or tcg",
					     name, v);
		*ret = a;
		return 0;
	}
	a = lxm_qemu_accel_from_string(host->accel);
	if (a < 0)
		return lxm_error_set(err, -EAGAIN, 503,
				     "VM '%s': the KVM probe has not answered yet (%s); retry in a "
				     "moment or set " LXM_VM_KEY_ACCEL "=kvm|tcg",
				     name, host->accel ? host->accel : "no answer");
	*ret = a;
	return 0;
}

static int vm_root_size(const char *name, const json_t *devices, uint64_t *ret,
			struct lxm_error **err)
{
	const char *dev = NULL;
	const json_t *root = lxmd_root_disk(devices, &dev);
	const char *v = config_str(root, "size");
	int64_t bytes;
	int r;

	*ret = 0;
	if (!v)
		return 0;
	r = lxm_parse_size("size", v, 0, &bytes, err);
	if (r < 0) {
		lxm_error_prefix(err, "VM '%s': root disk device '%s'", name, dev);
		return r;
	}
	if (bytes < (1 << 20))
		return lxm_error_set(err, -EINVAL, 400,
				     "VM '%s': root disk device '%s': size '%s' is under 1 MiB",
				     name, dev, v);
	*ret = (uint64_t)bytes;
	return 0;
}

int lxm_vm_config(const char *name, const json_t *config, const json_t *devices,
		  const struct lxm_vm_host *host, struct lxm_qemu_vm *vm, uint64_t *ret_root_size,
		  struct lxm_error **err)
{
	unsigned vcpus = 0;
	uint64_t mib = 0, size = 0;
	enum lxm_qemu_accel accel = _LXM_QEMU_ACCEL_INVALID;
	int r;

	if ((r = vm_vcpus(name, config, host, &vcpus, err)) < 0 ||
	    (r = vm_memory(name, config, host, &mib, err)) < 0 ||
	    (r = vm_accel(name, config, host, &accel, err)) < 0 ||
	    (r = vm_root_size(name, devices, &size, err)) < 0)
		return r;
	vm->vcpus = vcpus;
	vm->memory_mib = mib;
	vm->accel = accel;
	if (ret_root_size)
		*ret_root_size = size;
	return 0;
}
