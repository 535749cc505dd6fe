/* Unit tests of the VM spec lxm-monitor's vm mode reads (lxmd/vm/vm-spec.c), checked through the
 * QEMU command line it becomes. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "tap.h"
#include "vm/qemu.h"
#include "vm/vm-spec.h"

#define BASE                                                                                       \
	"\"name\":\"v1\",\"uuid\":\"11111111-2222-3333-4444-555555555555\",\"rundir\":\"/run/"     \
	"x/v1\",\"control_socket\":\"/run/x/v1/monitor.sock\",\"qmp_socket\":\"/run/x/v1/"         \
	"qmp.sock\",\"accel\":\"tcg\",\"kernel\":\"/p/boot/vmlinuz\",\"root\":{\"path\":\"/p/"     \
	"root.qcow2\",\"format\":\"qcow2\"}"

static int load(const char *text, struct lxm_vm_spec **ret, char *msg, size_t len)
{
	_cleanup_json_ json_t *j = json_loads(text, 0, NULL);
	_cleanup_error_ struct lxm_error *err = NULL;
	int r;

	if (!j) {
		snprintf(msg, len, "bad test JSON");
		return -EINVAL;
	}
	r = lxm_vm_spec_from_json(j, ret, &err);
	snprintf(msg, len, "%s", err ? err->msg : "");
	return r;
}

static bool argv_has(char **argv, const char *s)
{
	for (; *argv; argv++)
		if (strstr(*argv, s))
			return true;
	return false;
}

int main(void)
{
	struct lxm_vm_spec *s = NULL;
	char msg[512];
	char **argv = NULL;
	int r;

	/* The smallest spec: defaults for what it leaves out. */
	r = load("{" BASE "}", &s, msg, sizeof(msg));
	ok(r == 0, "minimal spec loads (%s)", msg);
	if (r == 0) {
		ok(s->qemu.vcpus == 1 && s->qemu.memory_mib == 1024, "defaults: 1 vCPU, 1024 MiB");
		ok(s->stop_timeout == -1 && s->n_nics == 0 && !s->cgroup_v2,
		   "no timeout, nics, cgroup");
		ok(s->qemu.root.format == LXM_QEMU_DISK_QCOW2, "root format qcow2");
		s->qemu.console_fd = 5;
		ok(lxm_qemu_argv(&s->qemu, &argv, NULL) == 0, "it makes a QEMU command line");
		ok(argv && argv_has(argv, "driver=qcow2") && argv_has(argv, "fd=5,set=1"),
		   "with the qcow2 root and the console fd");
		lxm_strv_free(argv);
		argv = NULL;
		lxm_vm_spec_free(s);
		s = NULL;
	}

	/* Nics, cgroups, limits. */
	r = load("{" BASE ",\"vcpus\":2,\"memory_mib\":256,\"stop_timeout\":30,"
		 "\"cgroup_v2\":\"/sys/fs/cgroup/x\",\"cgroup_v1\":[\"/a\",\"/b\"],"
		 "\"nics\":[{\"device\":\"eth0\",\"bridge\":\"br0\",\"host_name\":\"tap1\","
		 "\"mac\":\"00:16:3e:00:00:01\",\"mtu\":1400}]}",
		 &s, msg, sizeof(msg));
	ok(r == 0, "full spec loads (%s)", msg);
	if (r == 0) {
		ok(s->qemu.vcpus == 2 && s->qemu.memory_mib == 256 && s->stop_timeout == 30,
		   "vCPUs, memory, stop timeout");
		ok(s->cgroup_v1 && !strcmp(s->cgroup_v1[1], "/b") && !s->cgroup_v1[2],
		   "v1 cgroups");
		ok(s->n_nics == 1 && s->nics[0].mtu == 1400 && !strcmp(s->nics[0].bridge, "br0"),
		   "the nic");
		ok(lxm_qemu_argv(&s->qemu, &argv, NULL) == 0 && argv_has(argv, "ifname=tap1") &&
			   argv_has(argv, "mac=00:16:3e:00:00:01"),
		   "the nic is a tap by name with the guest's MAC");
		lxm_strv_free(argv);
		lxm_vm_spec_free(s);
		s = NULL;
	}

	/* Refusals name the field. */
	r = load("{" BASE ",\"accel\":\"hvf\"}", &s, msg, sizeof(msg));
	ok(r == -EINVAL && strstr(msg, "accel") && strstr(msg, "hvf"), "unknown accel: %s", msg);
	r = load("{\"name\":\"v1\"}", &s, msg, sizeof(msg));
	ok(r == -EINVAL && strstr(msg, "uuid"), "missing field: %s", msg);
	r = load("{" BASE ",\"memory_mib\":1}", &s, msg, sizeof(msg));
	ok(r == -EINVAL && strstr(msg, "memory_mib"), "memory out of range: %s", msg);
	r = load("{" BASE ",\"nics\":[{\"device\":\"eth0\",\"mac\":\"00:16:3e:00:00:01\"}]}", &s,
		 msg, sizeof(msg));
	ok(r == -EINVAL && strstr(msg, "nics[0]") && strstr(msg, "host_name"),
	   "nic without a tap name: %s", msg);
	r = load("{" BASE ",\"root\":{\"path\":\"/p/x\",\"format\":\"vmdk\"}}", &s, msg,
		 sizeof(msg));
	ok(r == -EINVAL && strstr(msg, "vmdk"), "unknown disk format: %s", msg);
	r = load("{" BASE ",\"initrd\":5}", &s, msg, sizeof(msg));
	ok(r == -EINVAL && strstr(msg, "initrd") && strstr(msg, "string"),
	   "initrd that is not a string: %s", msg);
	return tap_done();
}
