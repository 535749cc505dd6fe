/* Nic devices: a veth pair per `type=nic` device of an instance's expanded devices, its host end
 * on a bridge (network=NAME: a managed network's bridge; nictype=bridged parent=BRIDGE: an
 * existing one), its peer in the container's network namespace as name= (default: the device's
 * name) with hwaddr= (else volatile.<dev>.hwaddr, generated once and recorded) and mtu=.
 *
 * At a start lxmd works out each nic (its bridge, MAC and host end, recording the volatile keys)
 * into the container spec, and lxm-monitor creates the veths once it has cloned the container
 * and before it lets the child exec init: init finds its interfaces in place. A nic that cannot
 * be created fails the start before init runs (the monitor kills the child and removes the veths
 * it made), with the error naming the device and the step. The host end
 * (volatile.<dev>.host_name, "veth" + 8 hex) goes away with the container's network namespace
 * when it stops. Nics of a running instance are hot-plugged by lxmd when its devices change. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "container/spec.h"
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

/* The nics of a start, into spec->nics (inst is the instance as recorded, xdevices its expanded
 * devices): resolves each one's bridge and records the volatile keys it generates in inst's
 * config and the database, and tells managed networks about new MACs (static leases). Errors name
 * the device (a managed network or a parent bridge that does not exist, say). On the loop
 * thread. */
int lxmd_nics_to_spec(struct lxmd *d, struct lxm_db_instance *inst, const json_t *xdevices,
		      struct lxm_container_spec *spec, struct lxm_error **err);

/* Creates nic n's veth with its peer in the network namespace of pid, and its rate limits; on
 * failure nothing is left and err names the device and the step. Blocks (it waits up to 3 s for
 * a host end of the last run to go): lxm-monitor and lxmd's thread pool call it. */
int lxmd_nic_veth_create(const struct lxm_spec_nic *n, pid_t pid, struct lxm_error **err);

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
