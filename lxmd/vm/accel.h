/* lxmd's VM acceleration: the KVM probe (kvm-probe.h) run once at start in the thread pool, and
 * its answer for GET /1.0 and the VM driver. */
#pragma once

#include <jansson.h>

struct lxmd;

/* Starts the probe of lxm_kvm_probe_device() without waiting for it; the answer is logged when
 * it comes (a warning when KVM is unusable). A probe that cannot be queued is answered at once. */
void lxmd_vm_accel_start(struct lxmd *d);
/* Frees the probe's state; call after the loop has ended (the probe's callback has run). */
void lxmd_vm_accel_fini(struct lxmd *d);
/* "kvm", "tcg", or "probing" until the probe answered; *ret_reason (optional) says why. */
const char *lxmd_vm_accel(const struct lxmd *d, const char **ret_reason);
/* Adds vm_acceleration and vm_acceleration_reason to env (GET /1.0's environment). */
int lxmd_vm_accel_to_env(const struct lxmd *d, json_t *env);
