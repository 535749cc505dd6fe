/* lxmd's VM acceleration: the KVM probe, run once at start off the loop thread (accel.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "daemon.h"
#include "log.h"
#include "vm/accel.h"
#include "vm/kvm-probe.h"

struct lxmd_vm_accel {
	uv_work_t work;			    /* the probe in the thread pool */
	const char *dev;		    /* the device probed (static or from the environment) */
	struct lxm_kvm_probe_result result; /* its answer, once done */
	bool done;			    /* result is final */
};

static void probe_work(uv_work_t *w)
{
	struct lxmd_vm_accel *a = w->data;

	/* Blocking for at most the deadline: fork, the guest, waitpid on its own child. */
	lxm_kvm_probe(a->dev, LXM_KVM_PROBE_DEADLINE_MS, &a->result);
}

static void probe_done(uv_work_t *w, int status)
{
	struct lxmd_vm_accel *a = w->data;

	a->done = true;
	if (a->result.usable)
		log_info("vm: KVM usable (%s), VMs will use KVM", a->result.reason);
	else
		log_warn("vm: KVM unusable (%s), VMs will use TCG", a->result.reason);
}

void lxmd_vm_accel_start(struct lxmd *d)
{
	struct lxmd_vm_accel *a = calloc(1, sizeof(*a));
	int k;

	if (!a) {
		log_warn("vm: KVM probe not started: out of memory, VMs will use TCG");
		return;
	}
	a->dev = lxm_kvm_probe_device();
	a->work.data = a;
	d->vm_accel = a;
	k = uv_queue_work(d->loop, &a->work, probe_work, probe_done);
	if (k < 0) {
		snprintf(a->result.reason, sizeof(a->result.reason),
			 "kvm probe: queue it in the thread pool: %s", uv_strerror(k));
		probe_done(&a->work, k);
	}
}

void lxmd_vm_accel_fini(struct lxmd *d)
{
	free(d->vm_accel);
	d->vm_accel = NULL;
}

const char *lxmd_vm_accel(const struct lxmd *d, const char **ret_reason)
{
	const struct lxmd_vm_accel *a = d->vm_accel;

	if (!a || !a->done) {
		if (ret_reason)
			*ret_reason =
				a ? "the KVM probe is running" : "the KVM probe did not start";
		return a ? "probing" : "tcg";
	}
	if (ret_reason)
		*ret_reason = a->result.reason;
	return a->result.usable ? "kvm" : "tcg";
}

int lxmd_vm_accel_to_env(const struct lxmd *d, json_t *env)
{
	const char *reason, *accel = lxmd_vm_accel(d, &reason);

	if (json_object_set_new(env, "vm_acceleration", json_string(accel)) < 0 ||
	    json_object_set_new(env, "vm_acceleration_reason", json_string(reason)) < 0)
		return -ENOMEM;
	return 0;
}
