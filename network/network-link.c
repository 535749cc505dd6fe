/* Links through libnl-route: the bridge of a network, its addresses, and the veth pairs of
 * instances whose inner end lives in the container's network namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>

#include "log.h"
#include "network-internal.h"
#include "network.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_link *, rtnl_link_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_addr *, rtnl_addr_put)

int network_nl_errno(int nle)
{
	switch (nle < 0 ? -nle : nle) {
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_EXIST:
		return -EEXIST;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_NODEV:
		return -ENODEV;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_RANGE:
		return -ERANGE;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:
		return -EAFNOSUPPORT;
	default:
		return -EIO;
	}
}

/* The socket is connected while this thread is in pid's namespace (a socket stays in the
 * namespace it was made in), then the thread goes back. A thread that cannot go back would go
 * on working in a container's namespace, which must never happen, so that logs why and aborts. */
int network_route_socket(pid_t pid, struct nl_sock **ret)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_close_ int self = -1, target = -1;
	char path[64];
	int k;

	sk = nl_socket_alloc();
	if (!sk)
		return -ENOMEM;
	if (pid == 0) {
		k = nl_connect(sk, NETLINK_ROUTE);
		if (k < 0)
			return network_nl_errno(k);
		*ret = TAKE_PTR(sk);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	target = open(path, O_RDONLY | O_CLOEXEC);
	if (target < 0)
		return -errno;
	if (setns(target, CLONE_NEWNET) < 0)
		return -errno;
	k = nl_connect(sk, NETLINK_ROUTE);
	if (setns(self, CLONE_NEWNET) < 0) {
		log_error("cannot return to lxmd's network namespace after entering pid %d's: %s",
			  (int)pid, strerror(errno));
		abort();
	}
	if (k < 0)
		return network_nl_errno(k);
	*ret = TAKE_PTR(sk);
	return 0;
}

/* Applies changes c to link l. The original handed to libnl carries only the index: with the
 * full object libnl would send its kind-specific attributes again, which bridges refuse. */
static int link_change(struct nl_sock *sk, struct rtnl_link *l, struct rtnl_link *c)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *o = rtnl_link_alloc();

	if (!o)
		return -NLE_NOMEM;
	rtnl_link_set_ifindex(o, rtnl_link_get_ifindex(l));
	rtnl_link_set_name(o, rtnl_link_get_name(l));
	return rtnl_link_change(sk, o, c, 0);
}

/* Sets flag IFF_UP on link l. */
static int link_up(struct nl_sock *sk, struct rtnl_link *l)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *c = rtnl_link_alloc();

	if (!c)
		return -NLE_NOMEM;
	rtnl_link_set_flags(c, IFF_UP);
	return link_change(sk, l, c);
}

int lxm_bridge_ensure(const char *name, unsigned mtu, struct lxm_error **err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	int k;

	k = network_route_socket(0, &sk);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "bridge %s: open netlink socket", name);
	k = rtnl_link_get_kernel(sk, 0, name, &l);
	if (k >= 0) {
		const char *type = rtnl_link_get_type(l);

		if (!type || !streq(type, "bridge"))
			return lxm_error_set(
				err, -EEXIST, 409,
				"bridge %s: a link of that name exists and is a %s, not "
				"a bridge",
				name, type ? type : "plain device");
	} else if (k == -NLE_OBJ_NOTFOUND || k == -NLE_NODEV) {
		_cleanup_(rtnl_link_putp) struct rtnl_link *n = rtnl_link_bridge_alloc();

		if (!n)
			return -ENOMEM;
		rtnl_link_set_name(n, name);
		if (mtu)
			rtnl_link_set_mtu(n, mtu);
		k = rtnl_link_add(sk, n, NLM_F_CREATE | NLM_F_EXCL);
		if (k < 0)
			return lxm_error_set(err, network_nl_errno(k), 500, "bridge %s: create: %s",
					     name, nl_geterror(k));
		k = rtnl_link_get_kernel(sk, 0, name, &l);
		if (k < 0)
			return lxm_error_set(err, network_nl_errno(k), 500,
					     "bridge %s: look up after creating it: %s", name,
					     nl_geterror(k));
	} else {
		return lxm_error_set(err, network_nl_errno(k), 500, "bridge %s: look up: %s", name,
				     nl_geterror(k));
	}
	if (mtu && rtnl_link_get_mtu(l) != mtu) {
		_cleanup_(rtnl_link_putp) struct rtnl_link *c = rtnl_link_alloc();

		if (!c)
			return -ENOMEM;
		rtnl_link_set_mtu(c, mtu);
		k = link_change(sk, l, c);
		if (k < 0)
			return lxm_error_set(err, network_nl_errno(k), 500,
					     "bridge %s: set mtu %u: %s", name, mtu,
					     nl_geterror(k));
	}
	k = link_up(sk, l);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), 500, "bridge %s: set up: %s", name,
				     nl_geterror(k));
	return 0;
}

/* Deletes link name through sk; a missing one is fine. */
static int link_delete(struct nl_sock *sk, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = rtnl_link_alloc();
	int k;

	if (!l)
		return -NLE_NOMEM;
	rtnl_link_set_name(l, name);
	k = rtnl_link_delete(sk, l);
	if (k == -NLE_OBJ_NOTFOUND || k == -NLE_NODEV)
		return 0;
	return k;
}

int lxm_link_delete(const char *name, struct lxm_error **err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	int k;

	k = network_route_socket(0, &sk);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "delete link %s: open netlink socket", name);
	k = link_delete(sk, name);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), 500, "delete link %s: %s", name,
				     nl_geterror(k));
	return 0;
}

bool lxm_link_exists(const char *name)
{
	return if_nametoindex(name) > 0;
}

/* Whether addr a is among cidrs (parsed as want[]). */
static bool addr_wanted(struct rtnl_addr *a, struct nl_addr *const want[], size_t n)
{
	struct nl_addr *local = rtnl_addr_get_local(a);

	if (!local)
		return false;
	for (size_t i = 0; i < n; i++)
		if (nl_addr_get_family(want[i]) == nl_addr_get_family(local) &&
		    nl_addr_get_len(want[i]) == nl_addr_get_len(local) &&
		    memcmp(nl_addr_get_binary_addr(want[i]), nl_addr_get_binary_addr(local),
			   nl_addr_get_len(local)) == 0 &&
		    nl_addr_get_prefixlen(want[i]) == (unsigned)rtnl_addr_get_prefixlen(a))
			return true;
	return false;
}

/* The kernel's own IPv6 link-local address is not lxm's to remove. */
static bool addr_link_local(struct rtnl_addr *a)
{
	struct nl_addr *local = rtnl_addr_get_local(a);
	const unsigned char *b = local ? nl_addr_get_binary_addr(local) : NULL;

	return rtnl_addr_get_family(a) == AF_INET6 && b && b[0] == 0xfe && (b[1] & 0xc0) == 0x80;
}

static void addr_list_free(struct nl_addr **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		nl_addr_put(v[i]);
	free(v);
}

/* Adds address want to ifindex; IPv6 ones skip duplicate address detection, as a bridge
 * without ports would otherwise keep them tentative and dnsmasq could not bind them. */
static int addr_add(struct nl_sock *sk, int ifindex, struct nl_addr *want)
{
	_cleanup_(rtnl_addr_putp) struct rtnl_addr *a = rtnl_addr_alloc();
	int k;

	if (!a)
		return -NLE_NOMEM;
	rtnl_addr_set_ifindex(a, ifindex);
	rtnl_addr_set_family(a, nl_addr_get_family(want));
	k = rtnl_addr_set_local(a, want);
	if (k < 0)
		return k;
	if (nl_addr_get_family(want) == AF_INET6)
		rtnl_addr_set_flags(a, IFA_F_NODAD);
	return rtnl_addr_add(sk, a, 0);
}

int lxm_link_set_addresses(const char *name, const char *const cidrs[], struct lxm_error **err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
	struct nl_addr **want = NULL;
	size_t n = 0;
	int ifindex, k;

	ifindex = (int)if_nametoindex(name);
	if (ifindex <= 0)
		return lxm_error_setx(err, -errno, 404, "set addresses of %s", name);
	for (size_t i = 0; cidrs && cidrs[i]; i++)
		n++;
	want = calloc(n + 1, sizeof(*want));
	if (!want)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		k = strchr(cidrs[i], '/') ? nl_addr_parse(cidrs[i], AF_UNSPEC, &want[i])
					  : -NLE_INVAL;
		if (k < 0 || (nl_addr_get_family(want[i]) != AF_INET &&
			      nl_addr_get_family(want[i]) != AF_INET6)) {
			addr_list_free(want, n);
			return lxm_error_set(err, -EINVAL, 400,
					     "set addresses of %s: '%s' is not an address/prefix",
					     name, cidrs[i]);
		}
	}
	k = network_route_socket(0, &sk);
	if (k < 0) {
		addr_list_free(want, n);
		return lxm_error_setx(err, k, 500, "set addresses of %s: open netlink socket",
				      name);
	}
	k = rtnl_addr_alloc_cache(sk, &cache);
	if (k < 0) {
		addr_list_free(want, n);
		return lxm_error_set(err, network_nl_errno(k), 500,
				     "set addresses of %s: list addresses: %s", name,
				     nl_geterror(k));
	}
	/* Removals first, so a changed prefix of the same address can be added again. */
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		char buf[INET6_ADDRSTRLEN + 8];

		if (rtnl_addr_get_ifindex(a) != ifindex || addr_link_local(a) ||
		    addr_wanted(a, want, n))
			continue;
		k = rtnl_addr_delete(sk, a, 0);
		if (k < 0 && k != -NLE_NOADDR && k != -NLE_OBJ_NOTFOUND) {
			addr_list_free(want, n);
			nl_addr2str(rtnl_addr_get_local(a), buf, sizeof(buf));
			return lxm_error_set(err, network_nl_errno(k), 500,
					     "remove address %s from %s: %s", buf, name,
					     nl_geterror(k));
		}
	}
	for (size_t i = 0; i < n; i++) {
		bool have = false;

		for (struct nl_object *o = nl_cache_get_first(cache); o && !have;
		     o = nl_cache_get_next(o))
			have = rtnl_addr_get_ifindex((struct rtnl_addr *)o) == ifindex &&
			       addr_wanted((struct rtnl_addr *)o, &want[i], 1);
		if (have)
			continue;
		k = addr_add(sk, ifindex, want[i]);
		if (k < 0) {
			addr_list_free(want, n);
			return lxm_error_set(err, network_nl_errno(k), 500,
					     "add address %s to %s: %s", cidrs[i], name,
					     nl_geterror(k));
		}
	}
	addr_list_free(want, n);
	return 0;
}

void lxm_random_hwaddr(char buf[static 18])
{
	unsigned char b[3] = { 0 };

	/* lxm_random_bytes reads getrandom(), which does not fail for 3 bytes once the pool is
	 * initialised; a zero tail is still a valid address. */
	(void)lxm_random_bytes(b, sizeof(b));
	snprintf(buf, 18, "00:16:3e:%02x:%02x:%02x", b[0], b[1], b[2]);
}

/* A temporary name for the peer until it is renamed inside the container: unique enough that
 * two concurrent creates never meet. */
static void temp_name(char buf[static IFNAMSIZ])
{
	unsigned char b[4] = { 0 };

	(void)lxm_random_bytes(b, sizeof(b));
	snprintf(buf, IFNAMSIZ, "lxmtmp%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
}

/* Renames the peer tmp in pid's namespace to v->inner_name with v's MAC and mtu. */
static int veth_configure_inner(const struct lxm_veth *v, const char *tmp, unsigned mtu,
				struct lxm_error **err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL, *c = NULL;
	_cleanup_(nl_addr_putp) struct nl_addr *mac = NULL;
	char hw[18];
	int k;

	k = network_route_socket(v->netns_pid, &sk);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "open netlink socket in the namespace of pid %d",
				      (int)v->netns_pid);
	k = rtnl_link_get_kernel(sk, 0, tmp, &l);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), 500,
				     "find the peer %s in the namespace of pid %d: %s", tmp,
				     (int)v->netns_pid, nl_geterror(k));
	if (!v->hwaddr)
		lxm_random_hwaddr(hw);
	k = nl_addr_parse(v->hwaddr ? v->hwaddr : hw, AF_LLC, &mac);
	if (k < 0 || nl_addr_get_len(mac) != 6)
		return lxm_error_set(err, -EINVAL, 400, "'%s' is not a MAC address", v->hwaddr);
	c = rtnl_link_alloc();
	if (!c)
		return -ENOMEM;
	rtnl_link_set_name(c, v->inner_name);
	rtnl_link_set_addr(c, mac);
	if (mtu)
		rtnl_link_set_mtu(c, mtu);
	k = link_change(sk, l, c);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), k == -NLE_EXIST ? 409 : 500,
				     "rename %s to %s with MAC %s in the namespace of pid %d: %s",
				     tmp, v->inner_name, v->hwaddr ? v->hwaddr : hw,
				     (int)v->netns_pid, nl_geterror(k));
	return 0;
}

/* Turns on hairpin mode of bridge port l (IFLA_BRPORT_MODE): an AF_BRIDGE change, whose
 * original must be of that family too. */
static int bridge_port_hairpin(struct nl_sock *sk, struct rtnl_link *l)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *o = rtnl_link_alloc(), *c = rtnl_link_alloc();
	int k;

	if (!o || !c)
		return -NLE_NOMEM;
	rtnl_link_set_ifindex(o, rtnl_link_get_ifindex(l));
	rtnl_link_set_family(o, AF_BRIDGE);
	rtnl_link_set_family(c, AF_BRIDGE);
	k = rtnl_link_bridge_set_flags(c, RTNL_BRIDGE_HAIRPIN_MODE);
	if (k >= 0)
		k = rtnl_link_change(sk, o, c, 0);
	return k;
}

/* Attaches the host end to its bridge (when any) and sets it up. */
static int veth_configure_host(struct nl_sock *sk, const struct lxm_veth *v, int bridge_index,
			       struct lxm_error **err)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL, *c = NULL;
	int k;

	k = rtnl_link_get_kernel(sk, 0, v->host_name, &l);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), 500, "look up %s: %s", v->host_name,
				     nl_geterror(k));
	c = rtnl_link_alloc();
	if (!c)
		return -ENOMEM;
	if (bridge_index > 0)
		rtnl_link_set_master(c, bridge_index);
	rtnl_link_set_flags(c, IFF_UP);
	k = link_change(sk, l, c);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), 500,
				     "attach %s to %s and set it up: %s", v->host_name,
				     v->bridge ? v->bridge : "no bridge", nl_geterror(k));
	if (bridge_index > 0) {
		/* Hairpin: the bridge may send a frame back out of the port it came in on, so that
		 * an instance reaches itself through a DNAT of its own address (a network forward
		 * or a proxy device) when br_netfilter hands bridged traffic to nftables. */
		k = bridge_port_hairpin(sk, l);
		if (k < 0)
			return lxm_error_set(err, network_nl_errno(k), 500,
					     "set hairpin mode on %s (port of %s): %s",
					     v->host_name, v->bridge, nl_geterror(k));
	}
	return 0;
}

int lxm_veth_create(const struct lxm_veth *v, struct lxm_error **err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	struct rtnl_link *peer;
	char tmp[IFNAMSIZ];
	int bridge_index = 0, k;
	unsigned mtu = v->mtu;

	if (!v->host_name || strlen(v->host_name) >= IFNAMSIZ || !v->inner_name ||
	    strlen(v->inner_name) >= IFNAMSIZ || v->netns_pid <= 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "create veth %s: invalid names or namespace pid",
				     v->host_name ? v->host_name : "(none)");
	k = network_route_socket(0, &sk);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "create veth %s: open netlink socket",
				      v->host_name);
	if (v->bridge) {
		_cleanup_(rtnl_link_putp) struct rtnl_link *br = NULL;

		k = rtnl_link_get_kernel(sk, 0, v->bridge, &br);
		if (k < 0)
			return lxm_error_set(err, network_nl_errno(k), 404,
					     "create veth %s: bridge %s: %s", v->host_name,
					     v->bridge, nl_geterror(k));
		bridge_index = rtnl_link_get_ifindex(br);
		if (!mtu)
			mtu = rtnl_link_get_mtu(br);
	}
	temp_name(tmp);
	l = rtnl_link_veth_alloc();
	if (!l)
		return -ENOMEM;
	rtnl_link_set_name(l, v->host_name);
	if (mtu)
		rtnl_link_set_mtu(l, mtu);
	peer = rtnl_link_veth_get_peer(l);
	rtnl_link_set_name(peer, tmp);
	if (mtu)
		rtnl_link_set_mtu(peer, mtu);
	rtnl_link_set_ns_pid(peer, v->netns_pid);
	rtnl_link_put(peer);
	k = rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), k == -NLE_EXIST ? 409 : 500,
				     "create veth %s with its peer in the namespace of pid %d: %s",
				     v->host_name, (int)v->netns_pid, nl_geterror(k));
	k = veth_configure_inner(v, tmp, mtu, err);
	if (k >= 0)
		k = veth_configure_host(sk, v, bridge_index, err);
	if (k < 0) {
		/* Deleting the host end takes the peer with it, wherever it is. */
		(void)link_delete(sk, v->host_name);
		return lxm_error_prefix(err, "create veth %s", v->host_name);
	}
	return 0;
}

int lxm_link_delete_in(pid_t netns_pid, const char *inner_name, struct lxm_error **err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	int k;

	k = network_route_socket(netns_pid, &sk);
	if (k < 0)
		return lxm_error_setx(err, k, 500,
				      "delete %s in the namespace of pid %d: open netlink socket",
				      inner_name, (int)netns_pid);
	k = link_delete(sk, inner_name);
	if (k < 0)
		return lxm_error_set(err, network_nl_errno(k), 500,
				     "delete %s in the namespace of pid %d: %s", inner_name,
				     (int)netns_pid, nl_geterror(k));
	return 0;
}
