/* Proxy devices: `type=proxy listen=tcp:0.0.0.0:8080 connect=tcp:127.0.0.1:80` while the instance
 * runs. Ports may be ranges and lists ("8080-8082", "80,443"): connect has one port, or as many as
 * listen (one to one).
 *
 * Without NAT (nat unset or false, LXD's default) one lxm-proxy forwarder per device listens in
 * the host's network namespace (bind=host) or the container's (bind=instance) and connects in
 * the other, so connect can be the container's loopback. Forwarders leave lxmd's session and
 * outlive an lxmd restart, as containers do; each writes its pid to
 * <rundir>/proxy.d/<instance>/<device>.pid, which is how lxmd finds it again (checking its
 * command line), stops it when its device goes or changes, and never starts a second one. A
 * forwarder ends by itself when the container's init exits.
 *
 * With nat=true a device becomes DNAT rules in lxmd's nftables table (a forward of the managed
 * network the target address is on): as in LXD, connect must be the static ipv4.address of one
 * of the instance's nics on a managed network, and bind must be host.
 *
 * Both are set up once the instance's nics are in, removed when it stops, and changed when the
 * devices of a running instance change. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"
#include "proxy/proxy-spec.h"

struct lxmd;

/* A proxy device as its config says. */
struct lxmd_proxy {
	const char *name;	       /* the device's name */
	const char *listen_spec;       /* listen= as given (owned by the device's JSON) */
	const char *connect_spec;      /* connect= as given (owned by the device's JSON) */
	bool nat;		       /* nat=true: DNAT rules, else a forwarder */
	bool bind_instance;	       /* bind=instance: listen in the container */
	struct lxm_proxy_addr listen;  /* listen=, parsed */
	struct lxm_proxy_addr connect; /* connect=, parsed */
};

/* Classifies device name: 1 with *ret filled for a proxy, 0 for another type, -EINVAL (400)
 * naming the device and the key for a proxy that cannot work (an unknown or unsupported key, a
 * bad listen=, connect=, bind= or nat=). Pure: no I/O. */
int lxmd_proxy_parse(const char *name, const json_t *dev, struct lxmd_proxy *ret,
		     struct lxm_error **err);

/* The DNAT forwards of a NAT-mode proxy p whose connect address is on the network with bridge
 * bridge, appended to array (the entries lxmd_networks_set_proxies() takes): one forward when
 * connect has one port (listen's ports as a list), else one per port pair. */
int lxmd_proxy_nat_forwards(const struct lxmd_proxy *p, const char *network, const char *bridge,
			    json_t *array);

/* What instance's proxy devices among its expanded devices need, for lxmd_proxies_apply() (*ret
 * NULL when it has none), or -EINVAL (400) naming a NAT-mode device whose connect address is no
 * static ipv4.address of a nic of devices on a managed network. */
int lxmd_proxies_plan(struct lxmd *d, const char *instance, const json_t *devices, json_t **ret,
		      struct lxm_error **err);

/* Sets up running instance's proxy devices (its recorded, expanded devices): at start, once its
 * nics are in, and after an lxmd restart (forwarders still running are kept). Errors name the
 * device. */
int lxmd_proxies_start(struct lxmd *d, const char *instance, struct lxm_error **err);
/* Makes running instance's proxies what plan (from lxmd_proxies_plan(); NULL: none) says, for a
 * device change: forwarders of devices that went or changed are stopped, new ones started
 * (those started by a call that fails are stopped again). Blocks until each new forwarder
 * listens or failed (bounded). */
int lxmd_proxies_apply(struct lxmd *d, const char *instance, json_t *plan, struct lxm_error **err);
/* Removes them (the instance stopped): its DNAT rules and its forwarders. Failures are logged. */
void lxmd_proxies_stop(struct lxmd *d, const char *instance);
