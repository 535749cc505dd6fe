/* Addressing: picking subnets no host address or route uses, CIDR parsing, and the forwarding
 * sysctls a routed network needs. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>

#include "network-internal.h"
#include "network.h"
#include "util.h"

/* A prefix of either family, as the collision checks compare them. */
struct prefix {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network byte order; 4 bytes used for IPv4 */
	unsigned len;		/* prefix length */
};

/* What the host and the other networks use. */
struct prefix_set {
	struct prefix *v; /* the prefixes */
	size_t n;	  /* how many */
};

static int prefix_set_add(struct prefix_set *s, int family, const void *addr, unsigned len)
{
	struct prefix *v = realloc(s->v, (s->n + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	s->v = v;
	memset(&v[s->n], 0, sizeof(v[s->n]));
	v[s->n].family = family;
	memcpy(v[s->n].addr, addr, family == AF_INET ? 4 : 16);
	v[s->n].len = len;
	s->n++;
	return 0;
}

/* Whether the first bits bits of a and b agree. */
static bool bits_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (!rest)
		return true;
	return ((a[bytes] ^ b[bytes]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* Two prefixes overlap when they agree on the shorter one's bits. */
static bool prefix_set_overlaps(const struct prefix_set *s, int family, const void *addr,
				unsigned len)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].family == family &&
		    bits_equal(s->v[i].addr, addr, len < s->v[i].len ? len : s->v[i].len))
			return true;
	return false;
}

/* Parses "addr/len" of family into p; -EINVAL for anything else. */
static int parse_prefix(const char *cidr, int family, struct prefix *p)
{
	char buf[INET6_ADDRSTRLEN + 1], *end;
	const char *slash = strchr(cidr, '/');
	unsigned long len;
	unsigned max = family == AF_INET ? 32 : 128;

	if (!slash || (size_t)(slash - cidr) >= sizeof(buf) || !slash[1] || slash[1] == '-' ||
	    slash[1] == '+' || slash[1] == ' ')
		return -EINVAL;
	memcpy(buf, cidr, slash - cidr);
	buf[slash - cidr] = '\0';
	memset(p, 0, sizeof(*p));
	if (inet_pton(family, buf, p->addr) != 1)
		return -EINVAL;
	errno = 0;
	len = strtoul(slash + 1, &end, 10);
	if (errno || *end || len > max)
		return -EINVAL;
	p->family = family;
	p->len = (unsigned)len;
	return 0;
}

/* The host's addresses and routes of family (default routes aside: they cover everything),
 * plus the taken CIDRs of that family. */
static int collect_used(int family, const char *const taken[], struct prefix_set *s,
			struct lxm_error **err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(nl_cache_freep) struct nl_cache *addrs = NULL, *routes = NULL;
	int k;

	k = network_route_socket(0, &sk);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "open netlink socket");
	k = rtnl_addr_alloc_cache(sk, &addrs);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), 500, "list host addresses: %s",
				     nl_geterror(k));
	k = rtnl_route_alloc_cache(sk, family, 0, &routes);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), 500, "list host routes: %s",
				     nl_geterror(k));
	for (struct nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct nl_addr *local = rtnl_addr_get_local(a);

		if (rtnl_addr_get_family(a) != family || !local ||
		    nl_addr_get_len(local) != (family == AF_INET ? 4u : 16u))
			continue;
		k = prefix_set_add(s, family, nl_addr_get_binary_addr(local),
				   (unsigned)rtnl_addr_get_prefixlen(a));
		if (k < 0)
			return k;
	}
	for (struct nl_object *o = nl_cache_get_first(routes); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *r = (struct rtnl_route *)o;
		struct nl_addr *dst = rtnl_route_get_dst(r);

		if (rtnl_route_get_family(r) != family || !dst || nl_addr_get_prefixlen(dst) == 0 ||
		    nl_addr_get_len(dst) != (family == AF_INET ? 4u : 16u))
			continue;
		k = prefix_set_add(s, family, nl_addr_get_binary_addr(dst),
				   nl_addr_get_prefixlen(dst));
		if (k < 0)
			return k;
	}
	for (size_t i = 0; taken && taken[i]; i++) {
		struct prefix p;

		if (parse_prefix(taken[i], family, &p) < 0)
			continue; /* the other family's, or not a CIDR at all */
		k = prefix_set_add(s, family, p.addr, p.len);
		if (k < 0)
			return k;
	}
	return 0;
}

int lxm_pick_ipv4_subnet(const char *const taken[], char **ret, struct lxm_error **err)
{
	struct prefix_set used = { 0 };
	unsigned char r[2 * 64];
	unsigned start;
	int k;

	k = collect_used(AF_INET, taken, &used, err);
	if (k < 0) {
		free(used.v);
		return lxm_error_prefix(err, "pick an IPv4 subnet");
	}
	k = lxm_random_bytes(r, sizeof(r));
	if (k < 0) {
		free(used.v);
		return lxm_error_setx(err, k, 500, "pick an IPv4 subnet: random bytes");
	}
	/* Random candidates first, as LXD does, then every 10.x.y.0/24 from a random start, so
	 * -ENOSPC means that really none is free. */
	start = (unsigned)r[0] << 8 | r[1];
	for (unsigned i = 0; i < 64 + 65536; i++) {
		unsigned char a[4] = { 10, 0, 0, 0 };

		if (i < 64) {
			a[1] = r[2 * i];
			a[2] = r[2 * i + 1];
		} else {
			unsigned c = (start + i) & 0xffff;

			a[1] = c >> 8;
			a[2] = c & 0xff;
		}
		if (prefix_set_overlaps(&used, AF_INET, a, 24))
			continue;
		free(used.v);
		if (asprintf(ret, "10.%u.%u.1/24", a[1], a[2]) < 0)
			return -ENOMEM;
		return 0;
	}
	free(used.v);
	return lxm_error_set(err, -ENOSPC, 409,
			     "pick an IPv4 subnet: every 10.x.y.0/24 collides with an address or "
			     "route of the host");
}

int lxm_pick_ipv6_subnet(const char *const taken[], char **ret, struct lxm_error **err)
{
	struct prefix_set used = { 0 };
	int k;

	k = collect_used(AF_INET6, taken, &used, err);
	if (k < 0) {
		free(used.v);
		return lxm_error_prefix(err, "pick an IPv6 subnet");
	}
	for (int i = 0; i < 64; i++) {
		unsigned char a[16] = { 0xfd };
		char buf[INET6_ADDRSTRLEN];

		/* fd00::/8, a random 40-bit global ID and a random 16-bit subnet (RFC 4193). */
		k = lxm_random_bytes(a + 1, 7);
		if (k < 0)
			break;
		if (prefix_set_overlaps(&used, AF_INET6, a, 64))
			continue;
		free(used.v);
		a[15] = 1;
		if (!inet_ntop(AF_INET6, a, buf, sizeof(buf)))
			return -errno;
		if (asprintf(ret, "%s/64", buf) < 0)
			return -ENOMEM;
		return 0;
	}
	free(used.v);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "pick an IPv6 subnet: random bytes");
	return lxm_error_set(err, -ENOSPC, 409,
			     "pick an IPv6 subnet: 64 random fd00::/8 subnets all collided with "
			     "the host's addresses or routes");
}

int lxm_parse_ipv4_cidr(const char *cidr, struct lxm_ipv4_net *ret)
{
	struct prefix p;
	uint32_t addr, mask, network, broadcast;

	if (!cidr || parse_prefix(cidr, AF_INET, &p) < 0)
		return -EINVAL;
	addr = (uint32_t)p.addr[0] << 24 | (uint32_t)p.addr[1] << 16 | (uint32_t)p.addr[2] << 8 |
	       p.addr[3];
	mask = p.len ? 0xffffffffu << (32 - p.len) : 0;
	network = addr & mask;
	broadcast = network | ~mask;
	ret->addr = addr;
	ret->prefix = p.len;
	ret->network = network;
	if (p.len >= 31) {
		/* Point to point (RFC 3021) and single hosts: every address is usable. */
		ret->first = network;
		ret->last = broadcast;
	} else {
		ret->first = network + 1;
		ret->last = broadcast - 1;
	}
	return 0;
}

/* Writes value to the sysctl at path (under /proc/sys/net). */
static int sysctl_write(const char *path, const char *value)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return lxm_write_all(fd, value, strlen(value));
}

/* Reads the first line of the sysctl at path into buf. */
static int sysctl_read(const char *path, char *buf, size_t size)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	if (!fgets(buf, (int)size, f))
		return -EIO;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Turning IPv6 forwarding on makes every interface with accept_ra=1 ignore router
 * advertisements, which would cut a SLAAC-configured host off; accept_ra=2 keeps accepting them
 * while forwarding. */
static int keep_accepting_ra(struct lxm_error **err)
{
	_cleanup_closedir_ DIR *d = opendir("/proc/sys/net/ipv6/conf");
	struct dirent *e;

	if (!d)
		return lxm_error_setx(err, -errno, 500, "read /proc/sys/net/ipv6/conf");
	while ((e = readdir(d))) {
		char path[PATH_MAX], val[16];

		if (e->d_name[0] == '.' || streq(e->d_name, "all") || streq(e->d_name, "default"))
			continue;
		snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/accept_ra", e->d_name);
		if (sysctl_read(path, val, sizeof(val)) < 0 || !streq(val, "1"))
			continue;
		int k = sysctl_write(path, "2");
		if (k < 0)
			return lxm_error_setx(err, k, 500, "write 2 to %s", path);
	}
	return 0;
}

int lxm_enable_forwarding(const char *bridge, bool ipv6, struct lxm_error **err)
{
	char path[PATH_MAX], val[16];
	int k;

	k = sysctl_write("/proc/sys/net/ipv4/ip_forward", "1");
	if (k < 0)
		return lxm_error_setx(err, k, 500,
				      "network bridge %s: write 1 to /proc/sys/net/ipv4/ip_forward",
				      bridge);
	if (!ipv6)
		return 0;
	k = sysctl_read("/proc/sys/net/ipv6/conf/all/forwarding", val, sizeof(val));
	if (k < 0)
		return lxm_error_setx(
			err, k, 500,
			"network bridge %s: read /proc/sys/net/ipv6/conf/all/forwarding", bridge);
	if (!streq(val, "1")) {
		k = keep_accepting_ra(err);
		if (k < 0)
			return lxm_error_prefix(err, "network bridge %s", bridge);
		k = sysctl_write("/proc/sys/net/ipv6/conf/all/forwarding", "1");
		if (k < 0)
			return lxm_error_setx(err, k, 500,
					      "network bridge %s: write 1 to "
					      "/proc/sys/net/ipv6/conf/all/forwarding",
					      bridge);
	}
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/forwarding", bridge);
	k = sysctl_write(path, "1");
	if (k < 0)
		return lxm_error_setx(err, k, 500, "network bridge %s: write 1 to %s", bridge,
				      path);
	return 0;
}

int lxm_bridge_route_localnet(const char *bridge, struct lxm_error **err)
{
	char path[96];
	int k;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/route_localnet", bridge);
	k = sysctl_write(path, "1");
	if (k < 0)
		return lxm_error_setx(err, k, 500, "bridge %s: write 1 to %s", bridge, path);
	return 0;
}
