/* Nic devices: a veth pair per `type=nic` device of an instance's expanded devices, its host end
 * on a bridge (network=NAME: a managed network's bridge; nictype=bridged parent=BRIDGE: an
 * existing one), its peer in the container's network namespace as name= (default: the device's
 * name) with hwaddr= (else volatile.<dev>.hwaddr, generated once and recorded) and mtu=.
 *
 * A container's network namespace exists once lxm-monitor has cloned its init: lxmd creates the
 * veths right after the monitor reports the init pid, on the thread pool. A nic that cannot be
 * created fails the start: the container is killed and the start's operation ends with the
 * error, naming the device and the step. The host end (volatile.<dev>.host_name, "veth" + 8 hex)
 * goes away with the container's network namespace when it stops. Nics of a running instance
 * are hot-plugged when its devices change. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

struct lxmd;
struct lxm_db_instance;
struct lxm_operation;

/* A nic device as its config says (pointers into the device's JSON). */
struct lxmd_nic {
	const char *name;      /* the device's name */
	const char *network;   /* network=: a managed network, or NULL */
	const char *parent;    /* parent=: the bridge of nictype=bridged, or NULL */
	const char *inner;     /* the interface's name inside the container */
	const char *hwaddr;    /* hwaddr=, or NULL: volatile.<dev>.hwaddr */
	const char *host_name; /* host_name=, or NULL: volatile.<dev>.host_name */
	const char *ipv4;      /* ipv4.address=: a static DHCP lease (network= only), or NULL */
	unsigned mtu;	       /* mtu=, 0: the bridge's */
	uint64_t ingress;      /* limits.ingress= in bit/s (to the instance), 0: none */
	uint64_t egress;       /* limits.egress= in bit/s (from the instance), 0: none */
};

/* Classifies device name: 1 with *ret filled for a nic, 0 for another type, -EINVAL (400) naming
 * the device and the key for a nic that cannot work (an unknown key, no network= or parent=, a
 * bad MAC, MTU, name, address or bit rate). Pure: no I/O. */
int lxmd_nic_parse(const char *name, const json_t *dev, struct lxmd_nic *ret,
		   struct lxm_error **err);

/* Called on the loop thread when the nics of a start are in place (err NULL) or failed (err,
 * which the callee owns). */
typedef void (*lxmd_nics_cb)(struct lxmd *d, const char *instance, struct lxm_error *err);

/* Creates the veths of instance's nics for its init init_pid: records the volatile keys it
 * generates first (on the loop thread), then works on the thread pool. Returns 1 when the work
 * is queued (done is called later), 0 when the instance has no nic (done is not called), or a
 * negative errno with err set (a managed network that does not exist, say). */
int lxmd_nics_start(struct lxmd *d, const char *instance, pid_t init_pid, lxmd_nics_cb done,
		    struct lxm_error **err);

/* Hot-plug: the nics that change when a running (or frozen) instance's devices change. */
struct lxmd_nic_hotplug;

/* Before a change of inst's devices is recorded (inst is the instance as it will be recorded;
 * new_xdevices its expanded devices): when it runs and its nics change, *ret gets the plan (the
 * veths to remove and to create), and inst->config the volatile keys of the new nics. *ret is
 * NULL when there is nothing to hot-plug. On the loop thread. */
int lxmd_nics_hotplug_plan(struct lxmd *d, struct lxm_db_instance *inst, const json_t *new_xdevices,
			   struct lxmd_nic_hotplug **ret, struct lxm_error **err);
/* After the change is recorded: removes, then creates, on the thread pool, and finishes op: a
 * Success, or a Failure naming the device after the veths created so far were removed and the
 * instance's recorded config and devices put back. Takes plan. */
void lxmd_nics_hotplug_run(struct lxmd *d, struct lxmd_nic_hotplug *plan, struct lxm_operation *op);
void lxmd_nics_hotplug_free(struct lxmd_nic_hotplug *plan);
static inline void lxmd_nics_hotplug_freep(struct lxmd_nic_hotplug **p)
{
	lxmd_nics_hotplug_free(*p);
}
