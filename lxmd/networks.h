/* The daemon's managed networks: for each network of the database a bridge with its addresses,
 * the rules of the "inet lxm" nftables table, and a dnsmasq that lxmd spawns and supervises
 * (restarted with a backoff when it dies, stopped with the network and with lxmd). The network
 * library (network/network.h) does the host work; this file decides when and on which thread
 * (the thread pool, except at start-up), and keeps the database and the host in step.
 *
 * A network's state lives in ROOT/networks/<name>/ (dnsmasq's hosts and leases files, its pid).
 * Changes are serialised: while one create, update, rename or delete runs, another is refused
 * with 409 (the nftables table is written whole from every network at once). */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

struct lxmd;
struct lxmd_networks;

/* Sets up every network of the database (blocking: only at start-up, before the API serves):
 * bridge, addresses, forwarding, the nftables table, dnsmasq. A network that fails is logged with
 * the cause and shown as "Unavailable"; that is not an error of init. */
int lxmd_networks_init(struct lxmd *d, struct lxm_error **err);
/* Stops every dnsmasq (SIGTERM) and closes the handles (bridges and rules stay: running
 * containers keep their networking). Call from shutdown, on the loop. */
void lxmd_networks_stop(struct lxmd *d);
/* Frees the table once the loop has ended. Accepts a daemon without networks. */
void lxmd_networks_fini(struct lxmd *d);

/* Checks a network name: LXD's rules (letters, digits, '-', '_' and '.', not starting with a
 * digit-only name, '-' or '.', no ':' or '/') and at most 15 characters, as it names the bridge.
 * Returns NULL when valid, else why not. */
const char *lxmd_network_name_invalid_reason(const char *name);

/* The bridge of managed network name. -ENOENT (404) for an unknown network. The string stays
 * valid until the network is renamed or deleted (on the loop thread). */
int lxmd_network_bridge(struct lxmd *d, const char *name, const char **ret_bridge,
			struct lxm_error **err);

/* Rewrites network name's static leases from the nic devices of the instances that name it
 * (type=nic, network=name: their volatile.<dev>.hwaddr and ipv4.address) on the thread pool, then
 * tells its dnsmasq (SIGHUP). Failures are logged. Call on the loop thread. */
void lxmd_network_leases_changed(struct lxmd *d, const char *name);

/* "Created", "Unavailable" (then *ret_cause, when non-NULL, says why) or NULL when unknown. */
const char *lxmd_network_status(struct lxmd *d, const char *name, const char **ret_cause);

/* Where other tables' forward hooks drop routed traffic ("table ip filter chain FORWARD"; as
 * last checked), or NULL. */
const char *lxmd_networks_forward_drop(struct lxmd *d);
/* Looks (again) for other nftables tables whose forward hook has policy drop, which lxm's own
 * accept rules cannot override; logs a warning naming them (and network, the one just created,
 * when not NULL) when found and new or when network is given. Other tables are only read. Runs at
 * start-up, after a network is created and when a network's state is read. */
void lxmd_networks_check_forward_drop(struct lxmd *d, const char *network);

/* ---- network forwards: listen address -> instance addresses, as DNAT rules ---- */

/* The forwards of network name: LXD's objects {"listen_address", "description", "config",
 * "ports"} (without location), sorted by listen address. 404 for an unknown network. */
int lxmd_network_forwards(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err);
/* One forward; 404 for an unknown network or listen address. */
int lxmd_network_forward_get(struct lxmd *d, const char *name, const char *listen, json_t **ret,
			     struct lxm_error **err);

enum lxmd_forward_op {
	LXMD_FORWARD_CREATE,  /* a new listen address (409 when taken) */
	LXMD_FORWARD_REPLACE, /* description, config and ports of an existing one (404 otherwise) */
	LXMD_FORWARD_DELETE,  /* remove it (404 when missing) */
};
/* Creates, replaces or deletes forward listen of network name (for create, the listen address is
 * fw's listen_address; for delete fw is unused). Checks fw (400 naming the forward, the port
 * entry, the key and the value): a unicast listen address outside the network's subnets, not
 * 0.0.0.0 or ::, not another network's; ports tcp or udp, 1-65535, single, ranges or lists,
 * target ports one or as many as the listen ports, no listen port twice per protocol; target
 * addresses in the network's subnet. Then rewrites the nftables table at once (on the loop
 * thread) and records the forward; on failure nothing changed. 409 while a network change runs. */
int lxmd_network_forward_change(struct lxmd *d, const char *name, const char *listen,
				const json_t *fw, enum lxmd_forward_op op, struct lxm_error **err);

/* Called on the loop thread when a change ended: err is NULL on success, else the failure, which
 * the callback takes. */
typedef void (*lxmd_network_done_fn)(struct lxmd *d, void *userdata, struct lxm_error *err);

/* Creates network name with description and config (an object of strings; NULL: none): checks
 * name and config on the spot (400 naming the key, 409 when taken or while another change runs),
 * then builds it on the thread pool ("auto" addresses become the subnet picked, as stored),
 * records it and calls done. Returns 0 when done will be called. */
int lxmd_network_create(struct lxmd *d, const char *name, const char *description, json_t *config,
			lxmd_network_done_fn done, void *userdata, struct lxm_error **err);
/* Replaces description and config; applies them on the thread pool, restarts dnsmasq. */
int lxmd_network_update(struct lxmd *d, const char *name, const char *description, json_t *config,
			lxmd_network_done_fn done, void *userdata, struct lxm_error **err);
/* Renames an unused network (400 "The network is currently in use" otherwise). */
int lxmd_network_rename(struct lxmd *d, const char *name, const char *new_name,
			lxmd_network_done_fn done, void *userdata, struct lxm_error **err);
/* Deletes an unused network: dnsmasq, bridge, rules, state directory, row. */
int lxmd_network_delete(struct lxmd *d, const char *name, lxmd_network_done_fn done, void *userdata,
			struct lxm_error **err);

/* The URLs of the profiles and instances whose nic devices name network name, sorted. */
int lxmd_network_used_by(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err);

/* Sets the DNAT forwards of instance's proxy devices to forwards (an array of struct
 * lxm_nft_network forwards, each with the "network" it belongs to; NULL or empty: none) and
 * rewrites the nftables table at once (on the loop thread); while a network change runs, the
 * table is rewritten when it ends. On failure the previous forwards stay. */
int lxmd_networks_set_proxies(struct lxmd *d, const char *instance, json_t *forwards,
			      struct lxm_error **err);

/* The leases of network name (lxm_dnsmasq_leases()). 404 for an unknown network. */
int lxmd_network_leases(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err);

/* The addresses managed network bridge leased to MAC hwaddr, as LXD lists an interface's
 * addresses ({"family", "address", "netmask": the network's prefix, "scope": "global"}): what a
 * VM's state shows for a nic the host cannot look into. An empty array for a bridge that is not a
 * managed network or a MAC without a lease (a leases file that cannot be read is logged); NULL
 * without memory. */
json_t *lxmd_network_leased_addresses(struct lxmd *d, const char *bridge, const char *hwaddr);

/* The handlers of /1.0/networks/<net>/forwards[/<listen address>] (api-networks.c). */
struct lxmd_request;
int lxmd_api_network_forwards_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_forwards_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_forward_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_forward_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_forward_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_forward_delete(struct lxmd_request *r, struct lxm_error **err);
