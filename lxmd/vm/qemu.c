/* The QEMU command line of a VM (qemu.h).
 *
 * The machine is q35, not microvm. Both boot a kernel directly, but microvm has no PCI unless
 * asked (pcie=on) and otherwise needs virtio-mmio devices that the guest finds through ACPI or
 * the command line, its ACPI power button (GED) is younger and less used, and a Debian cloud
 * kernel is built and tested on PCI machines. q35 with virtio-pci devices on its root bus is what
 * that kernel expects: it boots there with no driver to load first. Its costs are trimmed: no
 * SATA, USB, SMBus or vmport devices, no SMM (slow under TCG: every SMI leaves the translated
 * code), no S3/S4 for the guest to sleep in, no option ROMs on the NICs (SeaBIOS only hands over
 * to the kernel that QEMU loaded, it never boots from the network). Under TCG the firmware's part
 * is a fraction of a second of a boot measured in seconds.
 *
 * Devices:
 * - the console: an ISA serial port (ttyS0, which the kernel's console= names) on a fd the monitor
 *   passes, given to QEMU through -add-fd and opened as /dev/fdset/N: QEMU never opens a path
 *   of the host for it, and the monitor keeps the pty master, its console log and `lxm console`
 *   exactly as for containers;
 * - disks: -blockdev file + format nodes, virtio-blk-pci. cache.direct=off and aio=threads work
 *   on every filesystem a pool may sit on (tmpfs and overlay refuse O_DIRECT, io_uring is often
 *   denied by the seccomp of a container host); the guest's flushes still reach the disk;
 * - nics: a tap by name (script=no: the caller made it and put it on the bridge), virtio-net-pci;
 * - the agent: a virtio-serial port LXM_QEMU_AGENT_PORT on a unix socket QEMU listens on;
 * - entropy from the host's /dev/urandom (virtio-rng), so the guest's early boot never waits;
 * - QMP on a unix socket QEMU listens on (server=on,wait=off: QEMU starts without waiting);
 * -no-reboot: a guest reboot ends QEMU and the monitor starts it again, as for containers; with
 * -sandbox QEMU cannot run programs, raise its privileges or use obsolete system calls. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "cleanup.h"
#include "util.h"
#include "vm/qemu.h"

static const char *const accel_names[_LXM_QEMU_ACCEL_MAX] = {
	[LXM_QEMU_ACCEL_KVM] = "kvm",
	[LXM_QEMU_ACCEL_TCG] = "tcg",
};

static const char *const format_names[_LXM_QEMU_DISK_FORMAT_MAX] = {
	[LXM_QEMU_DISK_RAW] = "raw",
	[LXM_QEMU_DISK_QCOW2] = "qcow2",
};

/* The index of s in names[0 .. n), or -1. */
static int name_index(const char *const *names, int n, const char *s)
{
	for (int i = 0; s && i < n; i++)
		if (streq(s, names[i]))
			return i;
	return -1;
}

const char *lxm_qemu_accel_to_string(enum lxm_qemu_accel a)
{
	return a >= 0 && a < _LXM_QEMU_ACCEL_MAX ? accel_names[a] : NULL;
}

enum lxm_qemu_accel lxm_qemu_accel_from_string(const char *s)
{
	return name_index(accel_names, _LXM_QEMU_ACCEL_MAX, s);
}

const char *lxm_qemu_disk_format_to_string(enum lxm_qemu_disk_format f)
{
	return f >= 0 && f < _LXM_QEMU_DISK_FORMAT_MAX ? format_names[f] : NULL;
}

enum lxm_qemu_disk_format lxm_qemu_disk_format_from_string(const char *s)
{
	return name_index(format_names, _LXM_QEMU_DISK_FORMAT_MAX, s);
}

char *lxm_qemu_escape(const char *s)
{
	size_t n = strlen(s), commas = 0;
	char *out, *o;

	for (const char *p = s; *p; p++)
		commas += *p == ',';
	out = malloc(n + commas + 1);
	if (!out)
		return NULL;
	o = out;
	for (const char *p = s; *p; p++) {
		*o++ = *p;
		if (*p == ',')
			*o++ = ',';
	}
	*o = '\0';
	return out;
}

/* The argv being built: an error sticks, later additions are no-ops. */
struct argv_builder {
	char **v;   /* the strings so far, NULL-terminated when n > 0 */
	size_t n;   /* strings in v */
	size_t cap; /* room in v, counting the terminating NULL */
	int r;	    /* 0, or the first error (-ENOMEM) */
};

static void add_owned(struct argv_builder *b, char *s)
{
	if (b->r < 0 || !s) {
		free(s);
		b->r = b->r < 0 ? b->r : -ENOMEM;
		return;
	}
	if (b->n + 2 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		char **v = realloc(b->v, cap * sizeof(*v));

		if (!v) {
			free(s);
			b->r = -ENOMEM;
			return;
		}
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = s;
	b->v[b->n] = NULL;
}

static void add(struct argv_builder *b, const char *s)
{
	add_owned(b, strdup(s));
}

static __attribute__((format(printf, 2, 3))) void addf(struct argv_builder *b, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	add_owned(b, s);
}

/* Adds an option and its value. */
static void add2(struct argv_builder *b, const char *opt, const char *value)
{
	add(b, opt);
	add(b, value);
}

/* Checks: a string without control characters (a newline would end a line of QEMU's log or of
 * the command line as the monitor reports it), non-empty, at most max bytes. */
static const char *text_invalid_reason(const char *s, size_t max)
{
	if (!s || !*s)
		return "is empty";
	if (strlen(s) > max)
		return "is too long";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return "has a control character";
	return NULL;
}

static const char *path_invalid_reason(const char *p)
{
	const char *why = text_invalid_reason(p, 4095);

	if (why)
		return why;
	if (!lxm_path_is_clean(p))
		return "is not an absolute path without '.' or '..'";
	return NULL;
}

static int check_path(const char *what, const char *p, struct lxm_error **err)
{
	const char *why = path_invalid_reason(p);

	if (why)
		return lxm_error_set(err, -EINVAL, 400, "qemu: %s '%s' %s", what, p ? p : "", why);
	return 0;
}

/* A unix socket's path must also fit sockaddr_un, or QEMU fails with a vaguer message. */
static int check_socket(const char *what, const char *p, struct lxm_error **err)
{
	int r = check_path(what, p, err);

	if (r < 0)
		return r;
	if (strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return lxm_error_set(err, -EINVAL, 400,
				     "qemu: %s '%s' is longer than a unix socket path can be (%zu "
				     "bytes)",
				     what, p, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	return 0;
}

static bool uuid_valid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	return true;
}

static bool mac_valid(const char *s)
{
	unsigned v;

	if (!s || strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	/* A multicast MAC (low bit of the first octet) cannot be an interface's address. */
	if (sscanf(s, "%2x", &v) != 1 || (v & 1))
		return false;
	return true;
}

/* Names QEMU sees in ids and device names: [A-Za-z0-9._-], a letter first (QEMU's id rule). */
static bool id_valid(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    s[i]))
			return false;
	return true;
}

/* A tap's name: what the kernel takes for an interface (1-15 bytes, no '/', ':' or space). */
static bool ifname_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 15 || streq(s, ".") || streq(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    s[i]))
			return false;
	return true;
}

static int check_disk(const struct lxm_qemu_disk *d, const char *what, struct lxm_error **err)
{
	if (!id_valid(d->name, 20))
		return lxm_error_set(err, -EINVAL, 400,
				     "qemu: %s name '%s' is not 1-20 characters of [A-Za-z0-9._-] "
				     "starting with a letter",
				     what, d->name ? d->name : "");
	if (!lxm_qemu_disk_format_to_string(d->format))
		return lxm_error_set(err, -EINVAL, 400, "qemu: %s '%s': unknown format %d", what,
				     d->name, (int)d->format);
	return check_path(what, d->path, err);
}

static int check_vm(const struct lxm_qemu_vm *vm, struct lxm_error **err)
{
	const char *why;
	int r;

	why = lxm_name_invalid_reason(vm->name ? vm->name : "");
	if (why)
		return lxm_error_set(err, -EINVAL, 400, "qemu: VM name '%s': %s",
				     vm->name ? vm->name : "", why);
	if (!uuid_valid(vm->uuid))
		return lxm_error_set(err, -EINVAL, 400, "qemu: VM '%s': uuid '%s' is not a UUID",
				     vm->name, vm->uuid ? vm->uuid : "");
	if (vm->vcpus < 1 || vm->vcpus > LXM_QEMU_VCPUS_MAX)
		return lxm_error_set(err, -EINVAL, 400, "qemu: VM '%s': %u vCPUs, not 1 to %d",
				     vm->name, vm->vcpus, LXM_QEMU_VCPUS_MAX);
	if (vm->memory_mib < LXM_QEMU_MEMORY_MIN || vm->memory_mib > LXM_QEMU_MEMORY_MAX)
		return lxm_error_set(err, -EINVAL, 400,
				     "qemu: VM '%s': memory %llu MiB, not %d MiB to %llu MiB",
				     vm->name, (unsigned long long)vm->memory_mib,
				     LXM_QEMU_MEMORY_MIN, (unsigned long long)LXM_QEMU_MEMORY_MAX);
	if (!lxm_qemu_accel_to_string(vm->accel))
		return lxm_error_set(err, -EINVAL, 400, "qemu: VM '%s': unknown accelerator %d",
				     vm->name, (int)vm->accel);
	if (vm->kernel && (r = check_path("kernel", vm->kernel, err)) < 0)
		return r;
	if ((vm->initrd || vm->cmdline) && !vm->kernel)
		return lxm_error_set(
			err, -EINVAL, 400,
			"qemu: VM '%s': an initrd or a kernel command line needs a kernel",
			vm->name);
	if (vm->initrd && (r = check_path("initrd", vm->initrd, err)) < 0)
		return r;
	if (vm->cmdline) {
		why = text_invalid_reason(vm->cmdline,
					  LXM_QEMU_CMDLINE_MAX - strlen(LXM_QEMU_CMDLINE_BASE) - 2);
		if (why)
			return lxm_error_set(err, -EINVAL, 400,
					     "qemu: VM '%s': kernel command line '%s' %s", vm->name,
					     vm->cmdline, why);
	}
	if (vm->n_disks > LXM_QEMU_DISKS_MAX || (vm->n_disks && !vm->disks))
		return lxm_error_set(err, -EINVAL, 400, "qemu: VM '%s': %zu disks, at most %d",
				     vm->name, vm->n_disks, LXM_QEMU_DISKS_MAX);
	if (vm->n_nics > LXM_QEMU_NICS_MAX || (vm->n_nics && !vm->nics))
		return lxm_error_set(err, -EINVAL, 400, "qemu: VM '%s': %zu nics, at most %d",
				     vm->name, vm->n_nics, LXM_QEMU_NICS_MAX);
	for (size_t i = 0; i < vm->n_disks; i++) {
		if ((r = check_disk(&vm->disks[i], "disk", err)) < 0)
			return r;
		if (streq(vm->disks[i].name, vm->root.name ? vm->root.name : "root"))
			return lxm_error_set(err, -EINVAL, 400,
					     "qemu: VM '%s': disk name '%s' is used twice",
					     vm->name, vm->disks[i].name);
		for (size_t j = 0; j < i; j++)
			if (streq(vm->disks[i].name, vm->disks[j].name))
				return lxm_error_set(err, -EINVAL, 400,
						     "qemu: VM '%s': disk name '%s' is used twice",
						     vm->name, vm->disks[i].name);
	}
	for (size_t i = 0; i < vm->n_nics; i++) {
		const struct lxm_qemu_nic *n = &vm->nics[i];

		if (!ifname_valid(n->ifname))
			return lxm_error_set(
				err, -EINVAL, 400,
				"qemu: VM '%s': tap name '%s' is not 1-15 characters of "
				"[A-Za-z0-9._-]",
				vm->name, n->ifname ? n->ifname : "");
		if (!mac_valid(n->mac))
			return lxm_error_set(err, -EINVAL, 400,
					     "qemu: VM '%s': nic '%s': MAC '%s' is not a unicast "
					     "xx:xx:xx:xx:xx:xx",
					     vm->name, n->ifname, n->mac ? n->mac : "");
	}
	if (vm->vhost_net && vm->accel != LXM_QEMU_ACCEL_KVM)
		return lxm_error_set(err, -EINVAL, 400,
				     "qemu: VM '%s': vhost-net needs KVM (TCG cannot notify it)",
				     vm->name);
	if ((r = check_socket("QMP socket", vm->qmp_socket, err)) < 0)
		return r;
	if (vm->agent_socket && (r = check_socket("agent socket", vm->agent_socket, err)) < 0)
		return r;
	if (vm->pidfile && (r = check_path("pidfile", vm->pidfile, err)) < 0)
		return r;
	if (vm->console_fd < -1 || (vm->console_fd >= 0 && vm->console_fd < 3))
		return lxm_error_set(err, -EINVAL, 400,
				     "qemu: VM '%s': console fd %d is not an fd above stdio",
				     vm->name, vm->console_fd);
	return 0;
}

static void add_machine(struct argv_builder *b, const struct lxm_qemu_vm *vm)
{
	add2(b, "-machine", "q35,smm=off,vmport=off,sata=off,usb=off,smbus=off,graphics=off");
	if (vm->accel == LXM_QEMU_ACCEL_KVM) {
		add2(b, "-accel", "kvm");
		add2(b, "-cpu", "host");
	} else {
		/* One host thread per vCPU (MTTCG; x86 guests on x86 hosts support it). */
		add(b, "-accel");
		addf(b, "tcg,thread=multi,tb-size=%d", LXM_QEMU_TCG_TB_MIB);
		add2(b, "-cpu", "max");
	}
	add(b, "-smp");
	addf(b, "cpus=%u,sockets=1,cores=%u,threads=1", vm->vcpus, vm->vcpus);
	add(b, "-m");
	addf(b, "%lluM", (unsigned long long)vm->memory_mib);
	/* The guest cannot suspend itself into a state that only a host-side wakeup ends. */
	add2(b, "-global", "ICH9-LPC.disable_s3=1");
	add2(b, "-global", "ICH9-LPC.disable_s4=1");
	add2(b, "-rtc", "base=utc");
}

static void add_disk(struct argv_builder *b, const struct lxm_qemu_disk *d, const char *name)
{
	_cleanup_free_ char *path = lxm_qemu_escape(d->path);
	const char *ro = d->readonly ? "on" : "off";

	if (!path) {
		b->r = -ENOMEM;
		return;
	}
	add(b, "-blockdev");
	addf(b,
	     "driver=file,node-name=file-%s,filename=%s,aio=threads,cache.direct=off,"
	     "cache.no-flush=off,read-only=%s,discard=unmap",
	     name, path, ro);
	add(b, "-blockdev");
	addf(b, "driver=%s,node-name=fmt-%s,file=file-%s,read-only=%s,discard=unmap",
	     lxm_qemu_disk_format_to_string(d->format), name, name, ro);
	add(b, "-device");
	addf(b, "virtio-blk-pci,drive=fmt-%s,id=disk-%s,serial=%s", name, name, name);
}

static void add_nic(struct argv_builder *b, const struct lxm_qemu_nic *n, size_t i, bool vhost)
{
	add(b, "-netdev");
	addf(b, "tap,id=net%zu,ifname=%s,script=no,downscript=no,vhost=%s", i, n->ifname,
	     vhost ? "on" : "off");
	add(b, "-device");
	addf(b, "virtio-net-pci,netdev=net%zu,id=nic%zu,mac=%s,romfile=", i, i, n->mac);
}

static void add_boot(struct argv_builder *b, const struct lxm_qemu_vm *vm)
{
	if (!vm->kernel)
		return;
	add2(b, "-kernel", vm->kernel);
	if (vm->initrd)
		add2(b, "-initrd", vm->initrd);
	add(b, "-append");
	if (vm->cmdline)
		addf(b, "%s %s", LXM_QEMU_CMDLINE_BASE, vm->cmdline);
	else
		add(b, LXM_QEMU_CMDLINE_BASE);
}

static void add_chardevs(struct argv_builder *b, const struct lxm_qemu_vm *vm)
{
	_cleanup_free_ char *qmp = lxm_qemu_escape(vm->qmp_socket);
	_cleanup_free_ char *agent = vm->agent_socket ? lxm_qemu_escape(vm->agent_socket) : NULL;

	if (!qmp || (vm->agent_socket && !agent)) {
		b->r = -ENOMEM;
		return;
	}
	add(b, "-chardev");
	addf(b, "socket,id=qmp,path=%s,server=on,wait=off", qmp);
	add2(b, "-mon", "chardev=qmp,mode=control");
	if (vm->console_fd >= 0) {
		add(b, "-add-fd");
		addf(b, "fd=%d,set=1,opaque=console", vm->console_fd);
		add2(b, "-chardev", "serial,id=console,path=/dev/fdset/1");
		add2(b, "-device", "isa-serial,chardev=console");
	}
	if (agent) {
		add2(b, "-device", "virtio-serial-pci,id=vserial");
		add(b, "-chardev");
		addf(b, "socket,id=agent,path=%s,server=on,wait=off", agent);
		add2(b, "-device",
		     "virtserialport,bus=vserial.0,chardev=agent,name=" LXM_QEMU_AGENT_PORT);
	}
}

int lxm_qemu_argv(const struct lxm_qemu_vm *vm, char ***ret_argv, struct lxm_error **err)
{
	struct argv_builder b = { 0 };
	struct lxm_qemu_disk root;
	int r;

	r = check_vm(vm, err);
	if (r < 0)
		return r;
	root = vm->root;
	if (!root.name)
		root.name = "root";
	r = check_disk(&root, "root disk", err);
	if (r < 0)
		return r;

	add(&b, LXM_QEMU_BINARY);
	add(&b, "-name");
	addf(&b, "guest=%s,debug-threads=on", vm->name);
	add2(&b, "-uuid", vm->uuid);
	add(&b, "-nodefaults");
	add(&b, "-no-user-config");
	add2(&b, "-display", "none");
	add2(&b, "-vga", "none");
	add2(&b, "-msg", "timestamp=on");
	add(&b, "-no-reboot");
	add2(&b, "-sandbox",
	     "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	add_machine(&b, vm);
	add_boot(&b, vm);
	add_disk(&b, &root, root.name);
	for (size_t i = 0; i < vm->n_disks; i++)
		add_disk(&b, &vm->disks[i], vm->disks[i].name);
	for (size_t i = 0; i < vm->n_nics; i++)
		add_nic(&b, &vm->nics[i], i, vm->vhost_net);
	add2(&b, "-object", "rng-random,id=rng,filename=/dev/urandom");
	add2(&b, "-device", "virtio-rng-pci,rng=rng");
	add_chardevs(&b, vm);
	if (vm->pidfile)
		add2(&b, "-pidfile", vm->pidfile);
	if (vm->paused)
		add(&b, "-S");

	if (b.r < 0) {
		lxm_strv_free(b.v);
		return lxm_error_setx(err, b.r, 500, "qemu: VM '%s': build the command line",
				      vm->name);
	}
	*ret_argv = b.v;
	return 0;
}
