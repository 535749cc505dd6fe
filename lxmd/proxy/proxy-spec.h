/* The addresses of a proxy device, parsed: "tcp:ADDRESS:PORTS" with PORTS a port, a range
 * "8080-8082" or a list of both "80,443,8000-8002". Pure (no I/O): linked into lxmd, the
 * lxm-proxy forwarder and the unit tests, so that all three read a device the same way. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* At most this many ports in one listen= or connect= (each is a socket of the forwarder). */
#define LXM_PROXY_MAX_PORTS 1024

/* One side of a proxy device: listen= or connect=. */
struct lxm_proxy_addr {
	char protocol[4];		     /* "tcp" or "udp" */
	char addr[48];			     /* the IP address, without brackets */
	int family;			     /* AF_INET or AF_INET6 */
	uint16_t ports[LXM_PROXY_MAX_PORTS]; /* the ports in the order given, ranges expanded */
	size_t n_ports;			     /* how many of ports are used (at least 1) */
};

/* Parses s into *ret. Returns NULL when it is good, else why not (a constant sentence). */
const char *lxm_proxy_addr_parse(const char *s, struct lxm_proxy_addr *ret);

/* The connect port for the i-th listen port: connect's i-th when both have as many ports, else
 * connect's only one. Call only for a pair lxm_proxy_pair_check() accepted. */
uint16_t lxm_proxy_target_port(const struct lxm_proxy_addr *listen,
			       const struct lxm_proxy_addr *connect, size_t i);

/* Checks that listen and connect go together: one protocol, one address family, connect not a
 * wildcard, and connect with one port or as many as listen. NULL when they do, else why not. */
const char *lxm_proxy_pair_check(const struct lxm_proxy_addr *listen,
				 const struct lxm_proxy_addr *connect);

/* Writes ports back as the shortest list of ports and ranges ("80,8000-8002") into buf. Returns
 * the length, or -ENOSPC when it does not fit. */
int lxm_proxy_ports_format(const uint16_t *ports, size_t n, char *buf, size_t size);
