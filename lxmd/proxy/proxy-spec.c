/* Proxy device addresses: see proxy-spec.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/proxy-spec.h"

/* Reads a port number at *p (digits only), moving *p past it. */
static bool read_port(const char **p, uint16_t *ret)
{
	unsigned long v = 0;
	size_t n = 0;

	while (**p >= '0' && **p <= '9' && n < 6) {
		v = v * 10 + (unsigned long)(**p - '0');
		(*p)++;
		n++;
	}
	if (n == 0 || n > 5 || v < 1 || v > 65535)
		return false;
	*ret = (uint16_t)v;
	return true;
}

/* Expands "80,443,8000-8002" into ret (no port twice). */
static const char *parse_ports(const char *s, struct lxm_proxy_addr *ret)
{
	uint8_t seen[65536 / 8] = { 0 };
	const char *p = s;

	ret->n_ports = 0;
	if (!*p)
		return "the port is missing (\"tcp:ADDRESS:PORT\")";
	for (;;) {
		uint16_t lo, hi;

		if (!read_port(&p, &lo))
			return "a port must be a number from 1 to 65535 (ranges: 8080-8082, lists: "
			       "80,443)";
		hi = lo;
		if (*p == '-') {
			p++;
			if (!read_port(&p, &hi))
				return "a port must be a number from 1 to 65535 (ranges: "
				       "8080-8082, "
				       "lists: 80,443)";
			if (hi < lo)
				return "a port range must go upwards (8080-8082)";
		}
		for (unsigned v = lo; v <= hi; v++) {
			if (ret->n_ports == LXM_PROXY_MAX_PORTS)
				return "too many ports (at most 1024)";
			if (seen[v / 8] & (1u << (v % 8)))
				return "a port is given twice";
			seen[v / 8] |= (uint8_t)(1u << (v % 8));
			ret->ports[ret->n_ports++] = (uint16_t)v;
		}
		if (!*p)
			return NULL;
		if (*p != ',')
			return "a port must be a number from 1 to 65535 (ranges: 8080-8082, lists: "
			       "80,443)";
		p++;
	}
}

const char *lxm_proxy_addr_parse(const char *s, struct lxm_proxy_addr *ret)
{
	const char *a, *colon, *end;
	unsigned char bin[16];
	size_t n;

	if (strncmp(s, "unix:", 5) == 0)
		return "unix sockets are not supported (tcp or udp)";
	if (strncmp(s, "tcp:", 4) != 0 && strncmp(s, "udp:", 4) != 0)
		return "the protocol must be tcp or udp (\"tcp:ADDRESS:PORT\")";
	memcpy(ret->protocol, s, 3);
	ret->protocol[3] = '\0';
	a = s + 4;
	ret->family = *a == '[' ? AF_INET6 : AF_INET;
	if (*a == '[') {
		end = strchr(a, ']');
		if (!end || end[1] != ':')
			return "an IPv6 address goes in brackets: \"tcp:[ADDRESS]:PORT\"";
		a++;
		n = (size_t)(end - a);
		colon = end + 1;
	} else {
		colon = strchr(a, ':');
		if (!colon)
			return "the port is missing (\"tcp:ADDRESS:PORT\")";
		n = (size_t)(colon - a);
	}
	if (n == 0 || n >= sizeof(ret->addr))
		return "the address is missing or too long";
	memcpy(ret->addr, a, n);
	ret->addr[n] = '\0';
	if (inet_pton(ret->family, ret->addr, bin) != 1)
		return ret->family == AF_INET && strchr(ret->addr, ':')
			       ? "an IPv6 address goes in brackets: \"tcp:[ADDRESS]:PORT\""
			       : "the address is not an IP address (host names are not supported)";
	return parse_ports(colon + 1, ret);
}

uint16_t lxm_proxy_target_port(const struct lxm_proxy_addr *listen,
			       const struct lxm_proxy_addr *connect, size_t i)
{
	return connect->n_ports == listen->n_ports ? connect->ports[i] : connect->ports[0];
}

const char *lxm_proxy_pair_check(const struct lxm_proxy_addr *listen,
				 const struct lxm_proxy_addr *connect)
{
	if (strcmp(listen->protocol, connect->protocol) != 0)
		return "listen and connect must use the same protocol";
	if (listen->family != connect->family)
		return "listen and connect addresses must be of one family";
	if (strcmp(connect->addr, "0.0.0.0") == 0 || strcmp(connect->addr, "::") == 0)
		return "the connect address must be one to connect to, not a wildcard";
	if (connect->n_ports != 1 && connect->n_ports != listen->n_ports)
		return "connect must have one port, or as many ports as listen (one to one)";
	return NULL;
}

int lxm_proxy_ports_format(const uint16_t *ports, size_t n, char *buf, size_t size)
{
	size_t len = 0, i = 0;

	if (size == 0)
		return -ENOSPC;
	buf[0] = '\0';
	while (i < n) {
		size_t j = i;
		int w;

		while (j + 1 < n && ports[j + 1] == ports[j] + 1)
			j++;
		if (j == i)
			w = snprintf(buf + len, size - len, "%s%u", len ? "," : "", ports[i]);
		else
			w = snprintf(buf + len, size - len, "%s%u-%u", len ? "," : "", ports[i],
				     ports[j]);
		if (w < 0 || (size_t)w >= size - len)
			return -ENOSPC;
		len += (size_t)w;
		i = j + 1;
	}
	return (int)len;
}
