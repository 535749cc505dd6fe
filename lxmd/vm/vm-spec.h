/* The VM spec: everything lxm-monitor's vm mode needs to run one VM, computed by lxmd and written
 * as JSON to <rundir>/<name>/spec.json (the container spec's counterpart, container/spec.h). The
 * monitor never reads lxmd's database. The format (every path absolute):
 *
 *   {"name": "v1", "uuid": "8-4-4-4-12",
 *    "rundir": R, "control_socket": R/monitor.sock, "qmp_socket": R/qmp.sock,
 *    "agent_socket": R/agent.sock (optional),
 *    "console_log": ".../console.log" (optional), "console_log_max": bytes (0: no cap),
 *    "vcpus": N, "memory_mib": N, "accel": "kvm"|"tcg",
 *    "kernel": P/boot/vmlinuz, "initrd": P/boot/initrd.img (optional), "cmdline": "..." (opt.),
 *    "root": {"path": P/rootfs.img or P/root.qcow2, "format": "raw"|"qcow2"},
 *    "cgroup_v2": dir (optional), "cgroup_v1": [dir, ...] (optional): made by lxmd with the
 *        limits (memory.max = guest RAM + LXM_VM_QEMU_OVERHEAD_MIB), joined by QEMU, removed by
 *        the monitor when QEMU is gone,
 *    "nics": [{"device": "eth0", "bridge": "lxmbr0", "host_name": "tap1a2b3c4d",
 *              "mac": "00:16:3e:..", "mtu": 1500 (0: the bridge's)}],
 *    "stop_timeout": seconds a stop without its own timeout waits for the guest (< 0: forever)}
 *
 * Strings in struct lxm_vm_spec are borrowed from the JSON it was read from. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "vm/qemu.h"

/* What QEMU itself needs beyond the guest's RAM, for the cgroup's memory.max: its code and
 * libraries, device emulation, the block layer's buffers and, under TCG, the translation cache
 * (LXM_QEMU_TCG_TB_MIB, filled as the guest runs new code). Measured on the busybox VM image
 * under TCG with 256 MiB of guest RAM: QEMU's RSS is ~250 MiB once booted, the cgroup's
 * memory.current ~240 MiB; the guest's RAM is the bulk of it only once the guest uses it, so
 * RAM + 64 MiB + the translation cache bounds QEMU with room to spare. */
#define LXM_VM_QEMU_OVERHEAD_MIB (64 + LXM_QEMU_TCG_TB_MIB)

/* A nic of the VM: a tap on the host, attached to a bridge. */
struct lxm_vm_spec_nic {
	const char *device;    /* the nic device's name in the instance config */
	const char *bridge;    /* the bridge the tap joins, or NULL */
	const char *host_name; /* the tap's name */
	const char *mac;       /* the guest's MAC */
	unsigned mtu;	       /* the tap's MTU, 0: the bridge's */
};

struct lxm_vm_spec {
	json_t *json;			/* the spec as read (owns every string below) */
	const char *name;		/* instance name */
	const char *rundir;		/* run directory */
	const char *control_socket;	/* the monitor's control socket */
	const char *console_log;	/* the console log, or NULL */
	uint64_t console_log_max;	/* its cap in bytes, 0: none */
	const char *cgroup_v2;		/* cgroup v2 dir QEMU runs in, or NULL */
	char **cgroup_v1;		/* v1 dirs (NULL-terminated, strings borrowed), or NULL */
	struct lxm_vm_spec_nic *nics;	/* the nics */
	size_t n_nics;			/* entries in nics */
	int stop_timeout;		/* default stop timeout in seconds, < 0: forever */
	struct lxm_qemu_vm qemu;	/* QEMU's description (console_fd -1, nics from nics) */
	struct lxm_qemu_nic *qemu_nics; /* qemu.nics' storage */
};

/* Reads and checks the spec at path. */
int lxm_vm_spec_load(const char *path, struct lxm_vm_spec **ret, struct lxm_error **err);
/* The same from a JSON object (a new reference is taken). */
int lxm_vm_spec_from_json(json_t *j, struct lxm_vm_spec **ret, struct lxm_error **err);
void lxm_vm_spec_free(struct lxm_vm_spec *s);
