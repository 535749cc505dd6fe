/* Proxy devices in NAT mode: `type=proxy nat=true listen=tcp:0.0.0.0:8080
 * connect=tcp:10.1.2.10:80` becomes a DNAT rule in lxmd's nftables table (a forward of the
 * managed network the target address is on) while the instance runs: added once its nics are in,
 * removed when it stops, replaced when the devices of a running instance change. As in LXD, the
 * connect address must be the static ipv4.address of one of the instance's nics on a managed
 * network. Only NAT mode exists here: a proxy without nat=true is refused. */
#pragma once

#include <jansson.h>

#include "error.h"

struct lxmd;

/* A proxy device as its config says. */
struct lxmd_proxy {
	const char *name;      /* the device's name */
	char protocol[4];      /* "tcp" or "udp" (listen and connect agree) */
	char listen_addr[48];  /* listen address: "0.0.0.0", "127.0.0.1", "::" */
	char listen_port[12];  /* listen port, "1".."65535" */
	char connect_addr[48]; /* connect address (the instance's) */
	char connect_port[12]; /* connect port */
};

/* Classifies device name: 1 with *ret filled for a proxy, 0 for another type, -EINVAL (400)
 * naming the device and the key for a proxy that cannot work (an unknown or unsupported key,
 * nat not true, a bad listen= or connect=). Pure: no I/O. */
int lxmd_proxy_parse(const char *name, const json_t *dev, struct lxmd_proxy *ret,
		     struct lxm_error **err);

/* The forwards of instance's proxy devices among its expanded devices: an array for
 * lxmd_networks_set_proxies() (*ret NULL when it has none), or -EINVAL (400) naming a device whose
 * connect address is no static ipv4.address of a nic of devices on a managed network. */
int lxmd_proxies_plan(struct lxmd *d, const char *instance, const json_t *devices, json_t **ret,
		      struct lxm_error **err);

/* Installs the DNAT rules of running instance's proxy devices (its recorded, expanded devices):
 * at start, once its nics are in. Errors name the device. */
int lxmd_proxies_start(struct lxmd *d, const char *instance, struct lxm_error **err);
/* Replaces them with plan (from lxmd_proxies_plan(); NULL: none), for a device change of a
 * running instance. */
int lxmd_proxies_apply(struct lxmd *d, const char *instance, json_t *plan, struct lxm_error **err);
/* Removes them (the instance stopped). Failures are logged. */
void lxmd_proxies_stop(struct lxmd *d, const char *instance);
