/* A VM's settings from its instance config (issue 9): limits.cpu -> vCPUs, limits.memory -> guest
 * RAM, the root disk's size, security.vm.accel or the KVM probe's answer -> the accelerator. Pure:
 * the host's figures come in lxm_vm_host, errors name the key and the value. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "error.h"
#include "vm/qemu.h"

/* LXD's defaults for a VM without limits.cpu / limits.memory. */
#define LXM_VM_DEFAULT_VCPUS	  1
#define LXM_VM_DEFAULT_MEMORY_MIB 1024
/* The config key that forces the accelerator. */
#define LXM_VM_KEY_ACCEL "security.vm.accel"

/* What the host has, for counts and percentages. */
struct lxm_vm_host {
	uint64_t memory_bytes; /* host RAM, for limits.memory=N% */
	unsigned ncpus;	       /* online CPUs: a VM gets at most as many vCPUs */
	const char *accel;     /* the KVM probe's answer (lxmd_vm_accel()): "kvm", "tcg" or
				* "probing" */
};

/* Fills vm->vcpus, vm->memory_mib and vm->accel for VM name from its expanded config and
 * devices (other fields of vm are left alone), and *ret_root_size (optional) with the root disk
 * device's size in bytes (0: not set, the image's size stays). -EINVAL (400) naming the key and
 * value; -EAGAIN (503) while the probe has not answered and nothing forces the accelerator. */
int lxm_vm_config(const char *name, const json_t *config, const json_t *devices,
		  const struct lxm_vm_host *host, struct lxm_qemu_vm *vm, uint64_t *ret_root_size,
		  struct lxm_error **err);

/* The number of CPUs in a list such as "0-3,6" (as lxm_parse_cpu() writes it); -EINVAL when
 * it is not one. */
int lxm_vm_cpuset_count(const char *cpuset);
