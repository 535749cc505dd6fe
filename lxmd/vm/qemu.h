/* The QEMU command line of a VM (issue 9): a pure function from a VM's description to the argv
 * of qemu-system-x86_64, run by the instance's lxm-monitor. It checks every value and quotes what
 * goes into QEMU's "key=value,..." options (a comma in a value is doubled), so a path or a name
 * can never add an option of its own. No I/O: the caller probes what the host has (KVM through
 * vm/accel.h, /dev/vhost-net) and says so in the description. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The binary run, looked up in $PATH. */
#define LXM_QEMU_BINARY "qemu-system-x86_64"
/* The virtio-serial port the guest agent (vm/agent*) opens in the guest. */
#define LXM_QEMU_AGENT_PORT "org.lxm.agent.0"
/* The kernel command line every VM starts with; the description's cmdline follows it. */
#define LXM_QEMU_CMDLINE_BASE "console=ttyS0 root=/dev/vda rw panic=-1"
/* x86's COMMAND_LINE_SIZE: a longer command line is cut by the kernel. */
#define LXM_QEMU_CMDLINE_MAX 2048
/* Limits QEMU itself accepts for -smp on q35 (without an IOMMU: 255 vCPUs) and a RAM bound. */
#define LXM_QEMU_VCPUS_MAX  255
#define LXM_QEMU_MEMORY_MIN 16
#define LXM_QEMU_MEMORY_MAX (1024ULL * 1024) /* MiB: 1 TiB */
#define LXM_QEMU_DISKS_MAX  16
#define LXM_QEMU_NICS_MAX   16
/* TCG's translation cache in MiB: QEMU's default is 1 GiB per VM (mapped lazily, but a long-lived
 * guest fills it and keeps it resident); 256 MiB holds the code of a booted Debian guest with
 * room to spare, and bounds what each TCG VM can cost beyond its RAM. */
#define LXM_QEMU_TCG_TB_MIB 256

enum lxm_qemu_accel {
	LXM_QEMU_ACCEL_KVM,
	LXM_QEMU_ACCEL_TCG,
	_LXM_QEMU_ACCEL_MAX,
	_LXM_QEMU_ACCEL_INVALID = -1,
};

enum lxm_qemu_disk_format {
	LXM_QEMU_DISK_RAW,
	LXM_QEMU_DISK_QCOW2,
	_LXM_QEMU_DISK_FORMAT_MAX,
	_LXM_QEMU_DISK_FORMAT_INVALID = -1,
};

/* A disk of the VM: a file (or block device) on the host, a virtio-blk device in the guest. */
struct lxm_qemu_disk {
	const char *name;		  /* device name (the guest sees it as the disk's serial) */
	const char *path;		  /* absolute path of the image or block device */
	enum lxm_qemu_disk_format format; /* raw, or qcow2 (its backing file opens by its header) */
	bool readonly;			  /* the guest cannot write it */
};

/* A network interface: a tap device on the host (created by the caller, e.g. on a bridge), a
 * virtio-net device in the guest. */
struct lxm_qemu_nic {
	const char *ifname; /* the tap device's name on the host (at most 15 bytes) */
	const char *mac;    /* the guest's MAC, "xx:xx:xx:xx:xx:xx", unicast */
};

/* What lxm_qemu_argv() builds a command line from. Strings are borrowed. */
struct lxm_qemu_vm {
	const char *name;    /* instance name (a hostname label): QEMU's -name, thread names */
	const char *uuid;    /* the VM's UUID, "8-4-4-4-12" hex (the guest's SMBIOS UUID) */
	unsigned vcpus;	     /* virtual CPUs, 1 .. LXM_QEMU_VCPUS_MAX */
	uint64_t memory_mib; /* guest RAM in MiB, LXM_QEMU_MEMORY_MIN .. LXM_QEMU_MEMORY_MAX */
	enum lxm_qemu_accel accel; /* kvm or tcg, as vm/accel.h or security.vm.accel decided */
	const char *kernel;	   /* the kernel to boot directly; NULL: no kernel, the firmware
				    * finds nothing to boot (tests of QMP only) */
	const char *initrd;	   /* its initramfs, or NULL; needs kernel */
	const char *cmdline;	   /* appended to LXM_QEMU_CMDLINE_BASE, or NULL; needs kernel */
	struct lxm_qemu_disk root; /* the root disk, /dev/vda in the guest (root.name may be NULL:
				    * "root") */
	const struct lxm_qemu_disk *disks; /* further disks, /dev/vdb on */
	size_t n_disks;			   /* entries in disks */
	const struct lxm_qemu_nic *nics;   /* network interfaces, eth0 on */
	size_t n_nics;			   /* entries in nics */
	bool vhost_net; /* the nics use vhost-net (the caller checked /dev/vhost-net; KVM only) */
	const char *qmp_socket;	  /* unix socket QEMU listens on for QMP (absolute) */
	const char *agent_socket; /* unix socket QEMU listens on for the agent's virtio-serial port
				   * (absolute), or NULL: no agent port */
	int console_fd;		  /* fd QEMU inherits that is the console: the slave of a pty whose
				   * master the monitor reads into the console log (as for
				   * containers), or a connected socket; -1: no console */
	const char *pidfile;	  /* file QEMU writes its pid to, or NULL */
	bool paused; /* start with the vCPUs stopped (-S): "cont" over QMP starts them */
};

/* Builds the NULL-terminated argv (argv[0] is LXM_QEMU_BINARY) for vm. 0, or -EINVAL with an
 * error naming the field and the value (status 400), or -ENOMEM. */
int lxm_qemu_argv(const struct lxm_qemu_vm *vm, char ***ret_argv, struct lxm_error **err);

/* The accelerator's name ("kvm", "tcg") and back; NULL / _LXM_QEMU_ACCEL_INVALID for others. */
const char *lxm_qemu_accel_to_string(enum lxm_qemu_accel a);
enum lxm_qemu_accel lxm_qemu_accel_from_string(const char *s);
/* The disk format's name ("raw", "qcow2") and back. */
const char *lxm_qemu_disk_format_to_string(enum lxm_qemu_disk_format f);
enum lxm_qemu_disk_format lxm_qemu_disk_format_from_string(const char *s);

/* s with every ',' doubled, as QEMU's option parser reads a value back. NULL when out of memory. */
char *lxm_qemu_escape(const char *s);
