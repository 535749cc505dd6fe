/* Unit tests of the QEMU command line builder (lxmd/vm/qemu.c). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "error.h"
#include "tap.h"
#include "vm/qemu.h"

/* The index of the argument that follows opt and starts with prefix, or -1. */
static int find_opt(char **argv, const char *opt, const char *prefix)
{
	for (int i = 0; argv[i]; i++)
		if (strcmp(argv[i], opt) == 0 && argv[i + 1] &&
		    strncmp(argv[i + 1], prefix, strlen(prefix)) == 0)
			return i + 1;
	return -1;
}

static const char *opt_value(char **argv, const char *opt, const char *prefix)
{
	int i = find_opt(argv, opt, prefix);

	return i < 0 ? "" : argv[i];
}

static int count_opt(char **argv, const char *opt)
{
	int n = 0;

	for (int i = 0; argv[i]; i++)
		n += strcmp(argv[i], opt) == 0;
	return n;
}

static int argc_of(char **argv)
{
	int n = 0;

	while (argv[n])
		n++;
	return n;
}

static struct lxm_qemu_vm base_vm(void)
{
	return (struct lxm_qemu_vm){
		.name = "v1",
		.uuid = "0f6a3c2e-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
		.vcpus = 2,
		.memory_mib = 512,
		.accel = LXM_QEMU_ACCEL_TCG,
		.kernel = "/var/lib/lxm/images/abc/vmlinuz",
		.initrd = "/var/lib/lxm/images/abc/initrd.img",
		.root = { .path = "/var/lib/lxm/pools/default/v1/root.img",
			  .format = LXM_QEMU_DISK_RAW },
		.qmp_socket = "/run/lxm/v1/qmp.sock",
		.agent_socket = "/run/lxm/v1/agent.sock",
		.console_fd = 5,
		.pidfile = "/run/lxm/v1/qemu.pid",
	};
}

/* Builds vm's argv; on failure *msg gets the error message (static buffer). */
static int build(const struct lxm_qemu_vm *vm, char ***argv, char *msg, size_t msg_len)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	int r = lxm_qemu_argv(vm, argv, &err);

	msg[0] = '\0';
	if (r < 0 && err)
		snprintf(msg, msg_len, "%s", err->msg);
	return r;
}

static void test_full(void)
{
	struct lxm_qemu_vm vm = base_vm();
	_cleanup_strv_ char **argv = NULL;
	char msg[512];

	ok(build(&vm, &argv, msg, sizeof(msg)) == 0, "a full description builds (%s)", msg);
	if (!argv)
		return;
	is_str(argv[0], "qemu-system-x86_64", "argv[0] is the binary");
	ok(argv[argc_of(argv)] == NULL, "argv is NULL-terminated");
	is_str(opt_value(argv, "-name", ""), "guest=v1,debug-threads=on", "-name");
	is_str(opt_value(argv, "-uuid", ""), "0f6a3c2e-1b2d-4e5f-8a9b-0c1d2e3f4a5b", "-uuid");
	ok(count_opt(argv, "-nodefaults") == 1 && count_opt(argv, "-no-user-config") == 1,
	   "-nodefaults -no-user-config");
	ok(count_opt(argv, "-no-reboot") == 1,
	   "-no-reboot: the monitor restarts a rebooting guest");
	is_str(opt_value(argv, "-display", ""), "none", "headless");
	ok(find_opt(argv, "-machine", "q35,") > 0, "q35 machine");
	ok(strstr(opt_value(argv, "-machine", "q35"), "smm=off") != NULL, "no SMM");
	is_str(opt_value(argv, "-accel", ""), "tcg,thread=multi,tb-size=256", "-accel tcg");
	is_str(opt_value(argv, "-cpu", ""), "max", "-cpu max under TCG");
	is_str(opt_value(argv, "-smp", ""), "cpus=2,sockets=1,cores=2,threads=1", "-smp");
	is_str(opt_value(argv, "-m", ""), "512M", "-m");
	is_str(opt_value(argv, "-kernel", ""), "/var/lib/lxm/images/abc/vmlinuz", "-kernel");
	is_str(opt_value(argv, "-initrd", ""), "/var/lib/lxm/images/abc/initrd.img", "-initrd");
	is_str(opt_value(argv, "-append", ""), "console=ttyS0 root=/dev/vda rw panic=-1",
	       "-append without extra");
	is_str(opt_value(argv, "-blockdev", "driver=file,node-name=file-root,"),
	       "driver=file,node-name=file-root,filename=/var/lib/lxm/pools/default/v1/root.img,"
	       "aio=threads,cache.direct=off,cache.no-flush=off,read-only=off,discard=unmap",
	       "root file node");
	is_str(opt_value(argv, "-blockdev", "driver=raw,"),
	       "driver=raw,node-name=fmt-root,file=file-root,read-only=off,discard=unmap",
	       "root format node");
	is_str(opt_value(argv, "-device", "virtio-blk-pci,"),
	       "virtio-blk-pci,drive=fmt-root,id=disk-root,serial=root", "root virtio-blk");
	is_str(opt_value(argv, "-chardev", "socket,id=qmp,"),
	       "socket,id=qmp,path=/run/lxm/v1/qmp.sock,server=on,wait=off", "QMP chardev");
	is_str(opt_value(argv, "-mon", ""), "chardev=qmp,mode=control", "QMP monitor");
	is_str(opt_value(argv, "-add-fd", ""), "fd=5,set=1,opaque=console", "console fd passed");
	is_str(opt_value(argv, "-chardev", "serial,"), "serial,id=console,path=/dev/fdset/1",
	       "console chardev opens the fd set");
	ok(find_opt(argv, "-device", "isa-serial,chardev=console") > 0, "ttyS0 on the console");
	is_str(opt_value(argv, "-chardev", "socket,id=agent,"),
	       "socket,id=agent,path=/run/lxm/v1/agent.sock,server=on,wait=off", "agent chardev");
	is_str(opt_value(argv, "-device", "virtserialport,"),
	       "virtserialport,bus=vserial.0,chardev=agent,name=org.lxm.agent.0", "agent port");
	ok(find_opt(argv, "-device", "virtio-serial-pci,id=vserial") > 0, "virtio-serial bus");
	ok(find_opt(argv, "-device", "virtio-rng-pci,rng=rng") > 0, "virtio-rng");
	is_str(opt_value(argv, "-object", "rng-random"), "rng-random,id=rng,filename=/dev/urandom",
	       "rng from /dev/urandom");
	is_str(opt_value(argv, "-pidfile", ""), "/run/lxm/v1/qemu.pid", "-pidfile");
	ok(strncmp(opt_value(argv, "-sandbox", ""), "on,", 3) == 0, "-sandbox on");
	ok(count_opt(argv, "-S") == 0, "not paused");
	ok(count_opt(argv, "-netdev") == 0, "no nics, no netdev");
}

static void test_kvm_nics_disks(void)
{
	struct lxm_qemu_vm vm = base_vm();
	struct lxm_qemu_nic nics[] = { { "tapv1a", "00:16:3e:aa:bb:cc" },
				       { "tapv1b", "00:16:3e:aa:bb:cd" } };
	struct lxm_qemu_disk disks[] = {
		{ .name = "data", .path = "/srv/data.qcow2", .format = LXM_QEMU_DISK_QCOW2 },
		{ .name = "iso", .path = "/srv/seed.img", .readonly = true },
	};
	_cleanup_strv_ char **argv = NULL;
	char msg[512];

	vm.accel = LXM_QEMU_ACCEL_KVM;
	vm.vhost_net = true;
	vm.nics = nics;
	vm.n_nics = 2;
	vm.disks = disks;
	vm.n_disks = 2;
	vm.cmdline = "quiet lxm.agent=1";
	vm.paused = true;
	vm.root.format = LXM_QEMU_DISK_QCOW2;
	ok(build(&vm, &argv, msg, sizeof(msg)) == 0, "kvm with nics and disks builds (%s)", msg);
	if (!argv)
		return;
	is_str(opt_value(argv, "-accel", ""), "kvm", "-accel kvm");
	is_str(opt_value(argv, "-cpu", ""), "host", "-cpu host under KVM");
	is_str(opt_value(argv, "-append", ""),
	       "console=ttyS0 root=/dev/vda rw panic=-1 quiet lxm.agent=1",
	       "extra cmdline appended");
	is_str(opt_value(argv, "-blockdev", "driver=qcow2,node-name=fmt-root"),
	       "driver=qcow2,node-name=fmt-root,file=file-root,read-only=off,discard=unmap",
	       "qcow2 root");
	is_str(opt_value(argv, "-netdev", "tap,id=net0,"),
	       "tap,id=net0,ifname=tapv1a,script=no,downscript=no,vhost=on", "tap 0");
	is_str(opt_value(argv, "-netdev", "tap,id=net1,"),
	       "tap,id=net1,ifname=tapv1b,script=no,downscript=no,vhost=on", "tap 1");
	is_str(opt_value(argv, "-device", "virtio-net-pci,netdev=net0"),
	       "virtio-net-pci,netdev=net0,id=nic0,mac=00:16:3e:aa:bb:cc,romfile=",
	       "nic 0 without option ROM");
	is_str(opt_value(argv, "-device", "virtio-net-pci,netdev=net1"),
	       "virtio-net-pci,netdev=net1,id=nic1,mac=00:16:3e:aa:bb:cd,romfile=", "nic 1");
	ok(find_opt(argv, "-blockdev",
		    "driver=file,node-name=file-data,filename=/srv/data.qcow2,") > 0,
	   "data disk file node");
	ok(find_opt(argv, "-blockdev", "driver=qcow2,node-name=fmt-data,") > 0, "data disk qcow2");
	ok(strstr(opt_value(argv, "-blockdev", "driver=file,node-name=file-iso"), "read-only=on"),
	   "read-only disk");
	ok(count_opt(argv, "-device") >= 6, "devices for 3 disks and 2 nics");
	/* The root disk is vda: its device comes before the other disks'. */
	ok(find_opt(argv, "-device", "virtio-blk-pci,drive=fmt-root") <
		   find_opt(argv, "-device", "virtio-blk-pci,drive=fmt-data"),
	   "root disk first");
	ok(count_opt(argv, "-S") == 1, "paused: -S");
}

static void test_minimal(void)
{
	struct lxm_qemu_vm vm = base_vm();
	_cleanup_strv_ char **argv = NULL;
	char msg[512];

	vm.kernel = vm.initrd = NULL;
	vm.agent_socket = NULL;
	vm.pidfile = NULL;
	vm.console_fd = -1;
	ok(build(&vm, &argv, msg, sizeof(msg)) == 0, "minimal description builds (%s)", msg);
	if (!argv)
		return;
	ok(count_opt(argv, "-kernel") == 0 && count_opt(argv, "-append") == 0, "no kernel");
	ok(count_opt(argv, "-add-fd") == 0 && find_opt(argv, "-chardev", "serial") < 0,
	   "no console");
	ok(find_opt(argv, "-chardev", "socket,id=agent") < 0 &&
		   find_opt(argv, "-device", "virtio-serial-pci") < 0,
	   "no agent");
	ok(count_opt(argv, "-pidfile") == 0, "no pidfile");
}

static void test_escaping(void)
{
	struct lxm_qemu_vm vm = base_vm();
	_cleanup_strv_ char **argv = NULL;
	_cleanup_free_ char *e = lxm_qemu_escape("a,b,,c,");
	char msg[512];

	is_str(e, "a,,b,,,,c,,", "escape doubles every comma");
	vm.root.path = "/pool/v1,file=/etc/shadow/root.img";
	vm.qmp_socket = "/run/x,server=off/qmp.sock";
	vm.agent_socket = "/run/a,b/agent.sock";
	ok(build(&vm, &argv, msg, sizeof(msg)) == 0, "paths with commas build (%s)", msg);
	if (!argv)
		return;
	ok(strstr(opt_value(argv, "-blockdev", "driver=file,node-name=file-root"),
		  "filename=/pool/v1,,file=/etc/shadow/root.img,aio=threads") != NULL,
	   "disk path's comma doubled");
	is_str(opt_value(argv, "-chardev", "socket,id=qmp"),
	       "socket,id=qmp,path=/run/x,,server=off/qmp.sock,server=on,wait=off",
	       "QMP path's comma doubled");
	is_str(opt_value(argv, "-chardev", "socket,id=agent"),
	       "socket,id=agent,path=/run/a,,b/agent.sock,server=on,wait=off",
	       "agent path's comma doubled");
}

/* Expects the description to be refused with a message containing want. */
static void refused(const struct lxm_qemu_vm *vm, const char *want, const char *what)
{
	_cleanup_strv_ char **argv = NULL;
	char msg[512];
	int r = build(vm, &argv, msg, sizeof(msg));

	ok(r == -EINVAL && argv == NULL && strstr(msg, want), "refused: %s (%s)", what, msg);
}

static void test_invalid(void)
{
	struct lxm_qemu_vm vm;
	struct lxm_qemu_nic nic = { "tap0", "00:16:3e:00:00:01" };
	struct lxm_qemu_disk disk = { .name = "data", .path = "/srv/d.img" };
	char long_sock[200];

	vm = base_vm(), vm.name = "bad name";
	refused(&vm, "VM name 'bad name'", "name with a space");
	vm = base_vm(), vm.name = NULL;
	refused(&vm, "VM name ''", "no name");
	vm = base_vm(), vm.uuid = "0f6a3c2e-1b2d-4e5f-8a9b-0c1d2e3f4a5";
	refused(&vm, "is not a UUID", "short uuid");
	vm = base_vm(), vm.uuid = "0f6a3c2e,1b2d-4e5f-8a9b-0c1d2e3f4a5b";
	refused(&vm, "is not a UUID", "uuid with a comma");
	vm = base_vm(), vm.vcpus = 0;
	refused(&vm, "0 vCPUs", "no vCPUs");
	vm = base_vm(), vm.vcpus = 256;
	refused(&vm, "256 vCPUs", "too many vCPUs");
	vm = base_vm(), vm.memory_mib = 8;
	refused(&vm, "memory 8 MiB", "too little memory");
	vm = base_vm(), vm.accel = (enum lxm_qemu_accel)7;
	refused(&vm, "unknown accelerator", "accel out of range");
	vm = base_vm(), vm.kernel = "vmlinuz";
	refused(&vm, "kernel 'vmlinuz' is not an absolute path", "relative kernel");
	vm = base_vm(), vm.kernel = "/boot/../etc/vmlinuz";
	refused(&vm, "kernel '/boot/../etc/vmlinuz'", "kernel path with ..");
	vm = base_vm(), vm.kernel = NULL;
	refused(&vm, "needs a kernel", "initrd without kernel");
	vm = base_vm(), vm.cmdline = "quiet\ninit=/bin/sh";
	refused(&vm, "has a control character", "cmdline with a newline");
	vm = base_vm(), vm.root.path = NULL;
	refused(&vm, "root disk '' is empty", "no root disk");
	vm = base_vm(), vm.root.format = (enum lxm_qemu_disk_format)9;
	refused(&vm, "unknown format", "unknown disk format");
	vm = base_vm(), vm.root.path = "/pool/root\tx.img";
	refused(&vm, "control character", "disk path with a tab");
	vm = base_vm(), vm.disks = &disk, vm.n_disks = 1, disk.name = "root";
	refused(&vm, "disk name 'root' is used twice", "disk named like the root disk");
	vm = base_vm(), vm.disks = &disk, vm.n_disks = 1, disk.name = "da,ta";
	refused(&vm, "disk name 'da,ta'", "disk name with a comma");
	vm = base_vm(), vm.disks = &disk, vm.n_disks = LXM_QEMU_DISKS_MAX + 1, disk.name = "data";
	refused(&vm, "disks, at most", "too many disks");
	vm = base_vm(), vm.nics = &nic, vm.n_nics = 1, nic.ifname = "tap-with-a-long-name";
	refused(&vm, "tap name 'tap-with-a-long-name'", "tap name too long");
	vm = base_vm(), vm.nics = &nic, vm.n_nics = 1, nic.ifname = "tap,0";
	refused(&vm, "tap name 'tap,0'", "tap name with a comma");
	nic.ifname = "tap0";
	vm = base_vm(), vm.nics = &nic, vm.n_nics = 1, nic.mac = "01:16:3e:00:00:01";
	refused(&vm, "not a unicast", "multicast MAC");
	vm = base_vm(), vm.nics = &nic, vm.n_nics = 1, nic.mac = "00:16:3e:00:00:0g";
	refused(&vm, "MAC '00:16:3e:00:00:0g'", "MAC with a non-hex digit");
	nic.mac = "00:16:3e:00:00:01";
	vm = base_vm(), vm.nics = &nic, vm.n_nics = 1, vm.vhost_net = true;
	refused(&vm, "vhost-net needs KVM", "vhost under TCG");
	vm = base_vm(), vm.qmp_socket = "qmp.sock";
	refused(&vm, "QMP socket 'qmp.sock'", "relative QMP socket");
	memset(long_sock, 'x', sizeof(long_sock) - 1);
	long_sock[0] = '/';
	long_sock[sizeof(long_sock) - 1] = '\0';
	vm = base_vm(), vm.agent_socket = long_sock;
	refused(&vm, "longer than a unix socket path", "agent socket path too long");
	vm = base_vm(), vm.pidfile = "/run/./qemu.pid";
	refused(&vm, "pidfile '/run/./qemu.pid'", "pidfile with .");
	vm = base_vm(), vm.console_fd = 1;
	refused(&vm, "console fd 1", "console on stdout");
}

static void test_names(void)
{
	ok(lxm_qemu_accel_from_string("kvm") == LXM_QEMU_ACCEL_KVM &&
		   lxm_qemu_accel_from_string("tcg") == LXM_QEMU_ACCEL_TCG &&
		   lxm_qemu_accel_from_string("xen") == _LXM_QEMU_ACCEL_INVALID &&
		   lxm_qemu_accel_from_string(NULL) == _LXM_QEMU_ACCEL_INVALID,
	   "accel names");
	ok(lxm_qemu_disk_format_from_string("qcow2") == LXM_QEMU_DISK_QCOW2 &&
		   lxm_qemu_disk_format_from_string("raw") == LXM_QEMU_DISK_RAW &&
		   lxm_qemu_disk_format_from_string("vmdk") == _LXM_QEMU_DISK_FORMAT_INVALID,
	   "disk format names");
	ok(lxm_qemu_accel_to_string(_LXM_QEMU_ACCEL_INVALID) == NULL &&
		   lxm_qemu_disk_format_to_string(_LXM_QEMU_DISK_FORMAT_MAX) == NULL,
	   "out-of-range enums have no name");
}

int main(void)
{
	test_full();
	test_kvm_nics_disks();
	test_minimal();
	test_escaping();
	test_invalid();
	test_names();
	return tap_done();
}
