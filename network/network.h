/* Managed networks: the host side of LXD-style bridge networks. Links and addresses through
 * libnl-route (netlink; never an `ip` subprocess), NAT and forwards through libnftables in one
 * table lxm owns ("inet lxm"), and the dnsmasq configuration for a network's DHCP and DNS (lxmd
 * runs and supervises dnsmasq itself).
 *
 * Everything here is blocking, short netlink or nftables work: lxmd calls it on its thread pool
 * (or at start-up). Nothing logs (but the abort when a thread cannot return to lxmd's own network
 * namespace); errors name the link or network, the step and the cause
 * ("network 'lxmbr0': add address 10.64.12.1/24 to lxmbr0: File exists"). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* ---- links (network-link.c) ---- */

/* A connected route netlink socket in the caller's network namespace (pid 0) or in that of
 * process pid (lxmd's instance state reads a container's links through it). */
struct nl_sock;
int network_route_socket(pid_t pid, struct nl_sock **ret);

/* Creates bridge name (mtu 0: the default) and sets it up; an existing bridge of that name is
 * reused (after a restart), anything else of that name is -EEXIST. */
int lxm_bridge_ensure(const char *name, unsigned mtu, struct lxm_error **err);
/* Deletes link name; a missing one is fine. */
int lxm_link_delete(const char *name, struct lxm_error **err);
/* Whether link name exists (in the caller's network namespace). */
bool lxm_link_exists(const char *name);

/* Sets the addresses of link name to exactly those in cidrs (NULL-terminated, "10.1.2.1/24",
 * "fd42::1/64"): missing ones are added, others removed. */
int lxm_link_set_addresses(const char *name, const char *const cidrs[], struct lxm_error **err);

/* Creates a veth pair: host_name stays in the caller's namespace, attached to bridge (when not
 * NULL) and up; peer_name goes into the network namespace of netns_pid (a process in the
 * container), where it is renamed to inner_name ("eth0") with MAC hwaddr (NULL: random) and mtu
 * (0: the bridge's), and left down (the container's own networking brings it up). On failure
 * nothing is left. */
struct lxm_veth {
	const char *host_name;	/* e.g. "veth1a2b3c4d" (at most 15 characters) */
	const char *bridge;	/* bridge the host end joins, or NULL */
	pid_t netns_pid;	/* a process whose network namespace gets the peer */
	const char *inner_name; /* the peer's name inside ("eth0") */
	const char *hwaddr;	/* "00:16:3e:..", or NULL */
	unsigned mtu;		/* 0: the bridge's mtu */
};
int lxm_veth_create(const struct lxm_veth *v, struct lxm_error **err);

/* Removes inner_name from the network namespace of netns_pid (a nic hot-unplug); deleting one
 * end of a veth deletes both. A missing link is fine. */
int lxm_link_delete_in(pid_t netns_pid, const char *inner_name, struct lxm_error **err);

/* A random LXD-style MAC, "00:16:3e:xx:xx:xx", into buf. */
void lxm_random_hwaddr(char buf[static 18]);

/* ---- rate limits (network-tc.c) ---- */

/* An LXD bit rate ("10Mbit", "512kbit", "1Gibit"; units bit, kbit, Mbit, Gbit, Tbit and Kibit
 * to Tibit, case-sensitive) into *ret in bits per second. -EINVAL when it is not a rate, -ERANGE
 * when it is below 8bit or above what a token bucket holds (about 17Gbit). */
int lxm_parse_bitrate(const char *s, uint64_t *ret);
/* Shapes what link name (in the network namespace of netns_pid, 0: the caller's) sends to bps
 * bits per second: a tbf qdisc at its root, replacing the one there. */
int lxm_link_set_rate(pid_t netns_pid, const char *name, uint64_t bps, struct lxm_error **err);

/* ---- addressing (network-addr.c) ---- */

/* A private IPv4 /24 that collides with no address and no route of the host (nor any of
 * taken, NULL-terminated CIDRs of other networks): "10.x.y.1/24" into ret. -ENOSPC when none. */
int lxm_pick_ipv4_subnet(const char *const taken[], char **ret, struct lxm_error **err);
/* The same for IPv6: a random ULA "fdxx:xxxx:xxxx:xxxx::1/64". */
int lxm_pick_ipv6_subnet(const char *const taken[], char **ret, struct lxm_error **err);

/* Parses "10.1.2.1/24": the address, the prefix length, and the first and last host addresses
 * of the subnet (for the DHCP range: first after the gateway .. last before broadcast). */
struct lxm_ipv4_net {
	uint32_t addr;	  /* host byte order */
	unsigned prefix;  /* 0..32 */
	uint32_t network; /* addr & mask */
	uint32_t first;	  /* first usable host address */
	uint32_t last;	  /* last usable host address */
};
int lxm_parse_ipv4_cidr(const char *cidr, struct lxm_ipv4_net *ret);

/* Enables IPv4 (and, when ipv6, IPv6) forwarding on the host, as routing for a NAT network
 * needs (net.ipv4.ip_forward=1 and the bridge's forwarding). */
int lxm_enable_forwarding(const char *bridge, bool ipv6, struct lxm_error **err);

/* Lets the host's own connections to a 127.x address be routed out of bridge after a DNAT to
 * an instance (the kernel drops loopback sources on other links unless route_localnet is
 * set). */
int lxm_bridge_route_localnet(const char *bridge, struct lxm_error **err);

/* ---- nftables (network-nft.c) ---- */

/* What one network asks of the firewall. */
struct lxm_nft_network {
	const char *name;	 /* the network */
	const char *bridge;	 /* its bridge */
	const char *ipv4_subnet; /* "10.1.2.0/24", or NULL */
	const char *ipv6_subnet; /* "fd..::/64", or NULL */
	bool nat4;		 /* masquerade IPv4 leaving through another link */
	bool nat6;		 /* the same for IPv6 */
	json_t *forwards;	 /* DNAT rules: array of {"protocol": "tcp"|"udp", "listen_address",
				  * "listen_port", "target_address", "target_port"}, or NULL; ports
				  * as LXD writes them ("80", "80-82", "80,443"); several target
				  * ports map one to one onto the listen ports, one target port
				  * takes them all, none keeps the port; without protocol and
				  * listen_port every packet to the listen address is forwarded */
};

/* Replaces the whole "inet TABLE" table with the rules of networks (n of them) in one atomic
 * nftables transaction: forward accept to and from each bridge, masquerade, DNAT forwards.
 * n == 0 removes the table. Other tables are never touched. TABLE is "lxm" for the lxmd of the
 * default root and "lxm_<tag>" for others, so that two lxmds never replace each other's. */
int lxm_nft_apply(const char *table, const struct lxm_nft_network *networks, size_t n,
		  struct lxm_error **err);

/* Whether another table (not inet lxm or lxm_<tag>)'s forward hook has policy drop (Docker's
 * iptables-nft "filter FORWARD", ufw, firewalld): then routed traffic of lxm's networks may be
 * dropped there whatever lxm's own table accepts (every base chain of a hook sees the packet, and
 * a drop anywhere is final). Returns how many such chains there are (0: none) and, when some,
 * *ret_where naming them ("table ip filter chain FORWARD, ..."; NULL otherwise). Other tables are
 * only read. */
int lxm_nft_forward_drop(char **ret_where, struct lxm_error **err);
/* The same from the JSON text of `nft -j list chains` (or `list ruleset`). */
int lxm_nft_forward_drop_parse(const char *json, char **ret_where, struct lxm_error **err);

/* Parses an LXD port list ("80", "8080-8082", "80,443,1000-1002") into its ports, in order, as a
 * new array (*ret, *ret_n of them). -EINVAL when it is not such a list, -ERANGE for a port out of
 * 1-65535 or a range going down, -E2BIG above 65535 ports in all. */
int lxm_ports_parse(const char *s, uint16_t **ret, size_t *ret_n);

/* ---- dnsmasq (network-dnsmasq.c) ---- */

/* A network's DHCP/DNS service as dnsmasq runs it. */
struct lxm_dnsmasq {
	const char *network;   /* the network */
	const char *bridge;    /* interface to serve */
	const char *ipv4_cidr; /* bridge address "10.1.2.1/24", or NULL: no DHCPv4 */
	const char *ipv6_cidr; /* "fd..::1/64", or NULL: no IPv6 (SLAAC + DHCPv6 otherwise) */
	const char *domain;    /* dns.domain, e.g. "lxm" */
	const char *dir;       /* the network's state directory (leases, hosts file, pid) */
};

/* The argv of dnsmasq for d (NULL-terminated, allocated; free with lxm_strv_free or the
 * _cleanup_strv_ macro), with its state files in d->dir: it runs in the foreground (lxmd
 * supervises it), serves only the bridge, answers <instance>.<domain> from the static hosts file
 * and the leases, and reads the static leases (dhcp-hostsfile) again on SIGHUP. */
int lxm_dnsmasq_argv(const struct lxm_dnsmasq *d, const char *dnsmasq_path, char ***ret,
		     struct lxm_error **err);

/* One static lease: instance name, MAC and IPv4 address (NULL: any). */
struct lxm_dhcp_host {
	const char *name;
	const char *hwaddr;
	const char *ipv4;
};
/* Rewrites d->dir's dhcp-hostsfile atomically with hosts (n of them). */
int lxm_dnsmasq_write_hosts(const struct lxm_dnsmasq *d, const struct lxm_dhcp_host *hosts,
			    size_t n, struct lxm_error **err);

/* The leases dnsmasq holds (its leases file in d->dir), as LXD's lease objects: array of
 * {"hostname", "hwaddr", "address", "type": "dynamic"|"static", "location": "none"}. */
int lxm_dnsmasq_leases(const struct lxm_dnsmasq *d, json_t **ret, struct lxm_error **err);
