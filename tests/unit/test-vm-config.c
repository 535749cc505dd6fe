/* Unit tests of a VM's settings from its config (lxmd/vm/vm-config.c). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "tap.h"
#include "vm/vm-config.h"

static const struct lxm_vm_host host = {
	.memory_bytes = 8ULL << 30,
	.ncpus = 4,
	.accel = "tcg",
};

/* Runs lxm_vm_config on a config and devices given as JSON text. */
static int run(const char *config, const char *devices, const struct lxm_vm_host *h,
	       struct lxm_qemu_vm *vm, uint64_t *size, char *msg, size_t msg_len)
{
	_cleanup_json_ json_t *c = json_loads(config, 0, NULL);
	_cleanup_json_ json_t *d = json_loads(devices ? devices : "{}", 0, NULL);
	_cleanup_error_ struct lxm_error *err = NULL;
	int r;

	r = lxm_vm_config("v1", c, d, h, vm, size, &err);
	snprintf(msg, msg_len, "%s", err ? err->msg : "");
	return r;
}

static void test_defaults(void)
{
	struct lxm_qemu_vm vm = { .name = "v1", .vcpus = 99 };
	uint64_t size = 7;
	char msg[512];

	ok(run("{}", NULL, &host, &vm, &size, msg, sizeof(msg)) == 0, "empty config (%s)", msg);
	is_int(vm.vcpus, 1, "default: 1 vCPU");
	is_int(vm.memory_mib, 1024, "default: 1 GiB");
	is_int(vm.accel, LXM_QEMU_ACCEL_TCG, "the probe's answer: tcg");
	is_int(size, 0, "no root size: 0");
	is_str(vm.name, "v1", "other fields untouched");
}

static void test_values(void)
{
	struct lxm_qemu_vm vm = { 0 };
	struct lxm_vm_host kvm_host = host;
	uint64_t size = 0;
	char msg[512];

	kvm_host.accel = "kvm";
	ok(run("{\"limits.cpu\": \"2\", \"limits.memory\": \"512MiB\"}",
	       "{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"default\", "
	       "\"size\": \"10GiB\"}, \"eth0\": {\"type\": \"nic\"}}",
	       &kvm_host, &vm, &size, msg, sizeof(msg)) == 0,
	   "count, size, root size (%s)", msg);
	is_int(vm.vcpus, 2, "limits.cpu=2: 2 vCPUs");
	is_int(vm.memory_mib, 512, "limits.memory=512MiB");
	is_int(vm.accel, LXM_QEMU_ACCEL_KVM, "the probe's answer: kvm");
	ok(size == 10ULL << 30, "root size 10GiB in bytes");

	ok(run("{\"limits.cpu\": \"0-1,3\", \"limits.memory\": \"1GB\"}", NULL, &host, &vm, NULL,
	       msg, sizeof(msg)) == 0,
	   "list and decimal size (%s)", msg);
	is_int(vm.vcpus, 3, "limits.cpu=0-1,3: 3 vCPUs");
	is_int(vm.memory_mib, 953, "limits.memory=1GB: 953 MiB");

	ok(run("{\"limits.memory\": \"25%\"}", NULL, &host, &vm, NULL, msg, sizeof(msg)) == 0,
	   "percentage (%s)", msg);
	is_int(vm.memory_mib, 2048, "25% of 8 GiB: 2048 MiB");

	ok(run("{\"security.vm.accel\": \"kvm\"}", NULL, &host, &vm, NULL, msg, sizeof(msg)) == 0,
	   "forced kvm (%s)", msg);
	is_int(vm.accel, LXM_QEMU_ACCEL_KVM, "security.vm.accel=kvm overrides the probe's tcg");
	ok(run("{\"security.vm.accel\": \"tcg\"}", NULL, &kvm_host, &vm, NULL, msg, sizeof(msg)) ==
			   0 &&
		   vm.accel == LXM_QEMU_ACCEL_TCG,
	   "security.vm.accel=tcg overrides the probe's kvm");
	ok(run("{\"limits.cpu\": \"\"}", NULL, &host, &vm, NULL, msg, sizeof(msg)) == 0 &&
		   vm.vcpus == 1,
	   "an empty value is unset: default");
}

/* Expects the config to be refused with errno want and a message with text. */
static void refused(const char *config, const char *devices, const struct lxm_vm_host *h, int want,
		    const char *text, const char *what)
{
	struct lxm_qemu_vm vm = { 0 };
	char msg[512];
	int r = run(config, devices, h, &vm, NULL, msg, sizeof(msg));

	ok(r == -want && strstr(msg, text) && strstr(msg, "VM 'v1'") && vm.vcpus == 0,
	   "refused: %s (%s)", what, msg);
}

static void test_errors(void)
{
	struct lxm_vm_host probing = host;

	refused("{\"limits.cpu\": \"lots\"}", NULL, &host, EINVAL, "limits.cpu",
		"a CPU count that is not one");
	refused("{\"limits.cpu\": \"8\"}", NULL, &host, EINVAL, "the host has 4",
		"more vCPUs than host CPUs");
	refused("{\"limits.cpu\": \"0\"}", NULL, &host, EINVAL, "limits.cpu", "0 vCPUs");
	refused("{\"limits.memory\": \"lots\"}", NULL, &host, EINVAL, "limits.memory",
		"a size that is not one");
	refused("{\"limits.memory\": \"8MiB\"}", NULL, &host, EINVAL,
		"'limits.memory': invalid value '8MiB': 8 MiB", "too little memory");
	refused("{\"limits.memory\": \"150%\"}", NULL, &host, EINVAL, "limits.memory",
		"more than the host");
	refused("{\"security.vm.accel\": \"xen\"}", NULL, &host, EINVAL,
		"'security.vm.accel': invalid value 'xen'", "unknown accelerator");
	refused("{}", "{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"size\": \"big\"}}", &host,
		EINVAL, "root disk device 'root'", "a root size that is not one");
	refused("{}", "{\"rootfs\": {\"type\": \"disk\", \"path\": \"/\", \"size\": \"100kB\"}}",
		&host, EINVAL, "root disk device 'rootfs': size '100kB' is under 1 MiB",
		"a tiny root");
	probing.accel = "probing";
	refused("{}", NULL, &probing, EAGAIN, "KVM probe has not answered yet",
		"no accelerator while probing");
	{
		struct lxm_qemu_vm vm = { 0 };
		char msg[512];

		ok(run("{\"security.vm.accel\": \"tcg\"}", NULL, &probing, &vm, NULL, msg,
		       sizeof(msg)) == 0 &&
			   vm.accel == LXM_QEMU_ACCEL_TCG,
		   "a forced accelerator needs no probe (%s)", msg);
	}
}

static void test_cpuset_count(void)
{
	is_int(lxm_vm_cpuset_count("0"), 1, "0");
	is_int(lxm_vm_cpuset_count("0-3"), 4, "0-3");
	is_int(lxm_vm_cpuset_count("0-1,3,5-6"), 5, "0-1,3,5-6");
	is_int(lxm_vm_cpuset_count(""), -EINVAL, "empty");
	is_int(lxm_vm_cpuset_count("3-1"), -EINVAL, "backwards range");
	is_int(lxm_vm_cpuset_count("1,"), -EINVAL, "trailing comma");
	is_int(lxm_vm_cpuset_count("a"), -EINVAL, "not a number");
}

int main(void)
{
	test_defaults();
	test_values();
	test_errors();
	test_cpuset_count();
	return tap_done();
}
