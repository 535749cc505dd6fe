/* Unit tests of network/: links, addresses, nftables and dnsmasq configuration. Everything that
 * touches links or nftables runs in a private network namespace of a child process, so the host
 * keeps none of it: the namespaces vanish with the children. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <nftables/libnftables.h>

#include "cleanup.h"
#include "network/network-internal.h"
#include "network/network.h"
#include "tap.h"
#include "util.h"

static bool argv_has(char **v, const char *arg)
{
	for (; v && *v; v++)
		if (streq(*v, arg))
			return true;
	return false;
}

static void test_cidr(void)
{
	struct lxm_ipv4_net n;

	ok(lxm_parse_ipv4_cidr("10.1.2.1/24", &n) == 0 && n.addr == 0x0a010201 && n.prefix == 24 &&
		   n.network == 0x0a010200 && n.first == 0x0a010201 && n.last == 0x0a0102fe,
	   "cidr: /24");
	ok(lxm_parse_ipv4_cidr("192.168.7.9/32", &n) == 0 && n.first == 0xc0a80709 &&
		   n.last == 0xc0a80709 && n.network == 0xc0a80709,
	   "cidr: /32 is one host");
	ok(lxm_parse_ipv4_cidr("10.0.0.3/31", &n) == 0 && n.first == 0x0a000002 &&
		   n.last == 0x0a000003,
	   "cidr: /31 has two hosts");
	ok(lxm_parse_ipv4_cidr("10.200.3.4/8", &n) == 0 && n.network == 0x0a000000 &&
		   n.first == 0x0a000001 && n.last == 0x0afffffe,
	   "cidr: /8");
	ok(lxm_parse_ipv4_cidr("0.0.0.0/0", &n) == 0 && n.network == 0 && n.last == 0xfffffffe,
	   "cidr: /0");
	const char *junk[] = { "10.1.2.1",    "10.1.2.1/",    "10.1.2.1/33", "10.1.2/24",
			       "10.1.2.1/2x", "x/24",	      "10.1.2.1/-1", "",
			       "fd00::1/64",  " 10.1.2.1/24", "10.1.2.1/ 4", "10.1.2.256/24" };
	for (size_t i = 0; i < sizeof(junk) / sizeof(*junk); i++)
		ok(lxm_parse_ipv4_cidr(junk[i], &n) == -EINVAL, "cidr: '%s' is refused", junk[i]);
}

static void test_hwaddr(void)
{
	char a[18], b[18];

	lxm_random_hwaddr(a);
	lxm_random_hwaddr(b);
	ok(strlen(a) == 17 && startswith(a, "00:16:3e:") && !streq(a, b),
	   "random hwaddr %s is LXD-style and differs from %s", a, b);
}

static void test_dnsmasq(void)
{
	char dir[] = "/tmp/test-network-XXXXXX", path[PATH_MAX];
	struct lxm_dnsmasq d = { .network = "net0",
				 .bridge = "lxmbr0",
				 .ipv4_cidr = "10.5.6.1/24",
				 .ipv6_cidr = "fd42:1:2:3::1/64",
				 .domain = "lxm",
				 .dir = dir };
	_cleanup_strv_ char **v = NULL, **v2 = NULL;
	_cleanup_free_ char *data = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	json_t *leases = NULL;
	int k;

	ok(mkdtemp(dir) != NULL, "dnsmasq: temp dir");
	k = lxm_dnsmasq_argv(&d, "/usr/sbin/dnsmasq", &v, &err);
	ok(k == 0 && v, "dnsmasq argv: built (%s)", err ? err->msg : "");
	ok(v && streq(v[0], "/usr/sbin/dnsmasq"), "dnsmasq argv: program first");
	ok(argv_has(v, "--keep-in-foreground") && argv_has(v, "--bind-interfaces") &&
		   argv_has(v, "--interface=lxmbr0") && argv_has(v, "--except-interface=lo") &&
		   argv_has(v, "--conf-file=/dev/null"),
	   "dnsmasq argv: foreground, bound to the bridge only, no host config");
	ok(argv_has(v, "--listen-address=10.5.6.1") &&
		   argv_has(v, "--dhcp-range=10.5.6.2,10.5.6.254,1h"),
	   "dnsmasq argv: IPv4 listen address and range without the gateway");
	ok(argv_has(v, "--listen-address=fd42:1:2:3::1") && argv_has(v, "--enable-ra") &&
		   argv_has(v, "--dhcp-range=::,constructor:lxmbr0,ra-stateless,ra-names"),
	   "dnsmasq argv: IPv6 RA + stateless DHCPv6");
	snprintf(path, sizeof(path), "--dhcp-hostsfile=%s/dnsmasq.hosts", dir);
	ok(argv_has(v, path), "dnsmasq argv: hosts file in the state dir");
	snprintf(path, sizeof(path), "--dhcp-leasefile=%s/dnsmasq.leases", dir);
	ok(argv_has(v, path), "dnsmasq argv: leases file in the state dir");
	ok(argv_has(v, "--domain=lxm") && argv_has(v, "--local=/lxm/"),
	   "dnsmasq argv: local domain");
	ok(argv_has(v, "--user=root"), "dnsmasq argv: a private (0700) dir keeps root");
	chmod(dir, 0711);
	ok(lxm_dnsmasq_argv(&d, NULL, &v2, NULL) == 0 && argv_has(v2, "--user=nobody") &&
		   streq(v2[0], "dnsmasq"),
	   "dnsmasq argv: a searchable dir drops to nobody");
	d.ipv4_cidr = "10.5.6.1/31";
	lxm_error_free(TAKE_PTR(err));
	lxm_strv_free(TAKE_PTR(v2));
	ok(lxm_dnsmasq_argv(&d, NULL, &v2, &err) == -EINVAL && err && strstr(err->msg, "net0"),
	   "dnsmasq argv: a /31 has no room for DHCP (%s)", err ? err->msg : "");
	d.ipv4_cidr = "10.5.6.1/24";

	struct lxm_dhcp_host hosts[] = {
		{ .name = "web1", .hwaddr = "00:16:3e:aa:bb:cc", .ipv4 = "10.5.6.10" },
		{ .name = "db", .hwaddr = "00:16:3e:00:00:01" },
	};
	ok(lxm_dnsmasq_write_hosts(&d, hosts, 2, NULL) == 0, "hosts file: written");
	snprintf(path, sizeof(path), "%s/dnsmasq.hosts", dir);
	ok(lxm_read_file(path, &data, NULL) == 0 &&
		   streq(data, "00:16:3e:aa:bb:cc,10.5.6.10,web1\n00:16:3e:00:00:01,db\n"),
	   "hosts file: one line per host, MAC,IP,NAME or MAC,NAME");
	struct stat st;
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "hosts file: mode 0644");
	struct lxm_dhcp_host bad = { .name = "x,y", .hwaddr = "00:16:3e:aa:bb:cc" };
	ok(lxm_dnsmasq_write_hosts(&d, &bad, 1, NULL) == -EINVAL, "hosts file: bad name refused");

	snprintf(path, sizeof(path), "%s/dnsmasq.leases", dir);
	const char *sample =
		"1700003600 00:16:3e:11:22:33 10.5.6.77 c1 01:00:16:3e:11:22:33\n"
		"1700003600 00:16:3e:aa:bb:cc 10.5.6.10 web1 *\n"
		"1700003600 00:16:3e:44:55:66 10.5.6.78 * *\n"
		"duid 00:01:00:01:2c:aa:bb:cc:00:16:3e:00:00:09\n"
		"1700003600 1234567 fd42:1:2:3::99 web1 00:03:00:01:00:16:3e:aa:bb:cc\n";
	ok(lxm_write_file_atomic(path, sample, strlen(sample), 0644) == 0,
	   "leases: sample written");
	k = lxm_dnsmasq_leases(&d, &leases, NULL);
	ok(k == 0 && json_array_size(leases) == 4, "leases: static + 3 dynamic (got %zu)",
	   json_array_size(leases));
	char *dump = leases ? json_dumps(leases, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	ok(dump && strstr(dump,
			  "{\"address\":\"10.5.6.10\",\"hostname\":\"web1\",\"hwaddr\":\"00:16:"
			  "3e:aa:bb:cc\",\"location\":\"none\",\"type\":\"static\"}"),
	   "leases: the static lease of web1");
	ok(dump && strstr(dump,
			  "{\"address\":\"10.5.6.77\",\"hostname\":\"c1\",\"hwaddr\":\"00:16:3e:"
			  "11:22:33\",\"location\":\"none\",\"type\":\"dynamic\"}"),
	   "leases: a dynamic lease");
	ok(dump && strstr(dump, "\"address\":\"10.5.6.78\",\"hostname\":\"\""),
	   "leases: '*' hostname is empty");
	ok(dump && strstr(dump, "{\"address\":\"fd42:1:2:3::99\",\"hostname\":\"web1\",\"hwaddr\":"
				"\"00:16:3e:aa:bb:cc\""),
	   "leases: an IPv6 lease takes the MAC of its host's static entry");
	ok(dump && !strstr(dump, "\"address\":\"00:01"), "leases: the duid line is no lease");
	printf("# %s\n", dump ? dump : "(null)");
	free(dump);
	json_decref(leases);
	lxm_rm_tree(dir);
}

/* ---- inside a private network namespace ---- */

static int set_lo_up(void)
{
	struct ifreq ifr = { 0 };
	_cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP;
	return ioctl(fd, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

/* A process in a network namespace of its own, for the container end of veths. */
static pid_t netns_holder(void)
{
	int p[2];
	char c;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0)
			_exit(1);
		(void)!write(p[1], "x", 1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (pid < 0 || read(p[0], &c, 1) != 1) {
		close(p[0]);
		return -1;
	}
	close(p[0]);
	return pid;
}

static void test_links(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	struct rtnl_link *l = NULL;
	char mac[32] = "";
	int k;

	k = lxm_bridge_ensure("lxmtest0", 1400, &err);
	ok(k == 0, "bridge: created (%s)", err ? err->msg : "");
	ok(lxm_link_exists("lxmtest0"), "bridge: exists");
	k = lxm_bridge_ensure("lxmtest0", 0, &err);
	ok(k == 0, "bridge: ensured twice reuses it");
	ok(network_route_socket(0, &sk) == 0 && rtnl_link_get_kernel(sk, 0, "lxmtest0", &l) == 0 &&
		   (rtnl_link_get_flags(l) & IFF_UP) && rtnl_link_get_mtu(l) == 1400,
	   "bridge: up with mtu 1400");
	int br_index = l ? rtnl_link_get_ifindex(l) : 0;
	if (l)
		rtnl_link_put(l), l = NULL;

	const char *a1[] = { "10.9.8.1/24", "fd42:9:8:7::1/64", NULL };
	k = lxm_link_set_addresses("lxmtest0", a1, &err);
	ok(k == 0, "addresses: set (%s)", err ? err->msg : "");
	/* The bridge's own address and the connected routes are now used. */
	_cleanup_free_ char *pick4 = NULL;
	const char *a2[] = { "10.9.9.1/24", NULL };
	k = lxm_link_set_addresses("lxmtest0", a2, &err);
	ok(k == 0, "addresses: replaced (%s)", err ? err->msg : "");
	{
		_cleanup_(nl_cache_freep) struct nl_cache *c = NULL;
		int n = 0, old = 0, v6 = 0;
		rtnl_addr_alloc_cache(sk, &c);
		for (struct nl_object *o = c ? nl_cache_get_first(c) : NULL; o;
		     o = nl_cache_get_next(o)) {
			struct rtnl_addr *a = (struct rtnl_addr *)o;
			char buf[64];
			if (rtnl_addr_get_ifindex(a) != br_index)
				continue;
			nl_addr2str(rtnl_addr_get_local(a), buf, sizeof(buf));
			n += streq(buf, "10.9.9.1/24");
			old += streq(buf, "10.9.8.1/24");
			v6 += startswith(buf, "fd42:");
		}
		ok(n == 1 && old == 0 && v6 == 0, "addresses: exactly the new set on the bridge");
	}
	const char *bad[] = { "10.9.9.1", NULL };
	ok(lxm_link_set_addresses("lxmtest0", bad, NULL) == -EINVAL,
	   "addresses: no prefix refused");

	/* veth into a second namespace. */
	pid_t holder = netns_holder();
	ok(holder > 0, "veth: namespace holder");
	struct lxm_veth v = { .host_name = "vethlxmtest",
			      .bridge = "lxmtest0",
			      .netns_pid = holder,
			      .inner_name = "eth0",
			      .hwaddr = "00:16:3e:01:02:03" };
	lxm_error_free(TAKE_PTR(err));
	k = lxm_veth_create(&v, &err);
	ok(k == 0, "veth: created (%s)", err ? err->msg : "");
	ok(rtnl_link_get_kernel(sk, 0, "vethlxmtest", &l) == 0 &&
		   rtnl_link_get_master(l) == br_index && (rtnl_link_get_flags(l) & IFF_UP) &&
		   rtnl_link_get_mtu(l) == 1400,
	   "veth: host end on the bridge, up, with the bridge's mtu");
	if (l)
		rtnl_link_put(l), l = NULL;
	{
		_cleanup_(nl_socket_freep) struct nl_sock *in = NULL;
		ok(network_route_socket(holder, &in) == 0 &&
			   rtnl_link_get_kernel(in, 0, "eth0", &l) == 0,
		   "veth: eth0 in the other namespace");
		if (l)
			nl_addr2str(rtnl_link_get_addr(l), mac, sizeof(mac));
		ok(streq(mac, "00:16:3e:01:02:03") && l && rtnl_link_get_mtu(l) == 1400 &&
			   !(rtnl_link_get_flags(l) & IFF_UP),
		   "veth: eth0 has the MAC (%s) and mtu, and is down", mac);
		if (l)
			rtnl_link_put(l), l = NULL;
		ok(!lxm_link_exists("eth0"), "veth: no eth0 in the host namespace");
		lxm_error_free(TAKE_PTR(err));
		k = lxm_veth_create(&v, &err);
		ok(k == -EEXIST && err && strstr(err->msg, "vethlxmtest"),
		   "veth: a second create fails (%s)", err ? err->msg : "");
		struct lxm_veth v2 = v;
		v2.host_name = "vethlxmtest2";
		lxm_error_free(TAKE_PTR(err));
		k = lxm_veth_create(&v2, &err);
		ok(k < 0 && !lxm_link_exists("vethlxmtest2"),
		   "veth: eth0 taken inside: fails and leaves nothing (%s)", err ? err->msg : "");
		ok(lxm_link_delete_in(holder, "eth0", NULL) == 0, "veth: deleted in the namespace");
		ok(rtnl_link_get_kernel(in, 0, "eth0", &l) < 0 && !lxm_link_exists("vethlxmtest"),
		   "veth: both ends gone");
		if (l)
			rtnl_link_put(l), l = NULL;
		ok(lxm_link_delete_in(holder, "eth0", NULL) == 0, "veth: deleting again is fine");
	}
	if (holder > 0) {
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
	}

	/* Subnet picking: 10.0.0.0/9 by address, 10.128.0.0/10 by route, 10.192.0.0/11 taken. */
	const char *a3[] = { "10.0.0.1/9", NULL };
	ok(lxm_link_set_addresses("lxmtest0", a3, NULL) == 0, "pick: address 10.0.0.1/9 added");
	struct rtnl_route *r = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	struct nl_addr *dst = NULL;
	nl_addr_parse("10.128.0.0/10", AF_INET, &dst);
	rtnl_route_set_dst(r, dst);
	rtnl_route_set_family(r, AF_INET);
	rtnl_route_nh_set_ifindex(nh, br_index);
	rtnl_route_add_nexthop(r, nh);
	k = rtnl_route_add(sk, r, NLM_F_CREATE);
	ok(k == 0, "pick: route 10.128.0.0/10 added (%s)", nl_geterror(k));
	rtnl_route_put(r);
	nl_addr_put(dst);
	const char *taken[] = { "fd00::/8", "10.192.0.0/11", NULL };
	bool all_ok = true;
	for (int i = 0; i < 50 && all_ok; i++) {
		struct lxm_ipv4_net n;
		free(pick4);
		pick4 = NULL;
		all_ok = lxm_pick_ipv4_subnet(taken, &pick4, NULL) == 0 &&
			 lxm_parse_ipv4_cidr(pick4, &n) == 0 && n.prefix == 24 &&
			 (n.addr & 0xff) == 1 && (n.network & 0xffe00000) == 0x0ae00000;
	}
	ok(all_ok, "pick: 50 picks all in 10.224.0.0/11 (last %s)", pick4 ? pick4 : "none");
	const char *a4[] = { "10.0.0.1/8", NULL };
	lxm_link_set_addresses("lxmtest0", a4, NULL);
	lxm_error_free(TAKE_PTR(err));
	free(pick4);
	pick4 = NULL;
	k = lxm_pick_ipv4_subnet(NULL, &pick4, &err);
	ok(k == -ENOSPC && err, "pick: none left under 10.0.0.0/8 (%s)", err ? err->msg : "");
	_cleanup_free_ char *pick6 = NULL;
	const char *a5[] = { "fd00::1/9", NULL };
	lxm_link_set_addresses("lxmtest0", a5, NULL);
	all_ok = true;
	for (int i = 0; i < 20 && all_ok; i++) {
		free(pick6);
		pick6 = NULL;
		all_ok = lxm_pick_ipv6_subnet(NULL, &pick6, NULL) == 0 && startswith(pick6, "fd") &&
			 strstr(pick6, "::1/64") && strtoul(pick6 + 2, NULL, 16) >= 0x80;
	}
	ok(all_ok, "pick: IPv6 ULA avoids fd00::/9 (last %s)", pick6 ? pick6 : "none");

	ok(lxm_enable_forwarding("lxmtest0", true, NULL) == 0, "forwarding: enabled");
	_cleanup_free_ char *fw = NULL, *fw6 = NULL;
	ok(lxm_read_file("/proc/sys/net/ipv4/ip_forward", &fw, NULL) == 0 && fw[0] == '1' &&
		   lxm_read_file("/proc/sys/net/ipv6/conf/lxmtest0/forwarding", &fw6, NULL) == 0 &&
		   fw6[0] == '1',
	   "forwarding: sysctls read 1 (in the private namespace)");

	ok(lxm_link_delete("lxmtest0", NULL) == 0 && !lxm_link_exists("lxmtest0"),
	   "bridge: deleted");
	ok(lxm_link_delete("lxmtest0", NULL) == 0, "bridge: deleting a missing link is fine");
	lxm_error_free(TAKE_PTR(err));
	ok(lxm_link_delete("lo", &err) < 0 && err, "delete lo: refused (%s)", err ? err->msg : "");
	ok(lxm_bridge_ensure("lo", 0, NULL) == -EEXIST,
	   "bridge: a non-bridge of that name: -EEXIST");
}

/* "nft -j list table inet lxm" through libnftables, or NULL when there is no such table. */
static char *nft_list(const char *cmd)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	char *r = NULL;

	nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	if (nft_run_cmd_from_buffer(ctx, cmd) == 0)
		r = strdup(nft_ctx_get_output_buffer(ctx));
	nft_ctx_free(ctx);
	return r;
}

/* The text listing of cmd, or NULL. */
static char *nft_list_text(const char *cmd)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	char *r = NULL;

	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	if (nft_run_cmd_from_buffer(ctx, cmd) == 0)
		r = strdup(nft_ctx_get_output_buffer(ctx));
	nft_ctx_free(ctx);
	return r;
}

static void test_nft(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	json_t *fwds = json_pack("[{s:s, s:s, s:s, s:s, s:s}]", "protocol", "tcp", "listen_address",
				 "192.0.2.1", "listen_port", "8080", "target_address",
				 "10.20.30.40", "target_port", "80");
	struct lxm_nft_network nets[2] = {
		{ .name = "net0",
		  .bridge = "lxmbr0",
		  .ipv4_subnet = "10.20.30.0/24",
		  .ipv6_subnet = "fd42:1::/64",
		  .nat4 = true,
		  .nat6 = true,
		  .forwards = fwds },
		{ .name = "net1", .bridge = "lxmbr1", .ipv4_subnet = "10.20.31.0/24" },
	};
	char *where = (char *)"x";
	int k;

	k = lxm_nft_apply("lxm", nets, 2, &err);
	ok(k == 0, "nft: applied (%s)", err ? err->msg : "");
	char *j = nft_list("list table inet lxm");
	ok(j != NULL, "nft: table inet lxm exists");
	ok(j && strstr(j, "\"hook\": \"forward\"") && strstr(j, "\"policy\": \"accept\"") &&
		   strstr(j, "\"hook\": \"postrouting\"") && strstr(j, "\"hook\": \"prerouting\""),
	   "nft: forward, postrouting and prerouting base chains");
	ok(j && strstr(j, "\"masquerade\"") && strstr(j, "\"addr\": \"10.20.30.0\"") &&
		   strstr(j, "\"addr\": \"fd42:1::\""),
	   "nft: masquerade of the network's subnets");
	ok(j && !strstr(j, "10.20.31.0"), "nft: no masquerade without nat4");
	ok(j && strstr(j, "\"right\": \"lxmbr0\"") && strstr(j, "\"right\": \"lxmbr1\""),
	   "nft: forward rules for both bridges");
	ok(j && strstr(j, "\"dnat\"") && strstr(j, "10.20.30.40") && strstr(j, "8080"),
	   "nft: the DNAT forward");
	free(j);
	nets[0].ipv4_subnet = "10.20.40.0/24";
	k = lxm_nft_apply("lxm", nets, 1, NULL);
	j = nft_list("list table inet lxm");
	ok(k == 0 && j && strstr(j, "10.20.40.0") && !strstr(j, "\"10.20.30.0\"") &&
		   !strstr(j, "lxmbr1"),
	   "nft: re-apply replaces the table");
	free(j);
	nets[0].bridge = "bad\"name";
	lxm_error_free(TAKE_PTR(err));
	ok(lxm_nft_apply("lxm", nets, 1, &err) == -EINVAL &&
		   (j = nft_list("list table inet lxm")) && strstr(j, "10.20.40.0"),
	   "nft: a bad bridge name is refused and the table kept (%s)", err ? err->msg : "");
	free(j);
	nets[0].bridge = "lxmbr0";

	k = lxm_nft_forward_drop(&where, NULL);
	ok(k == 0 && where == NULL, "nft: no foreign forward drop (lxm's accept does not count)");
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	nft_ctx_buffer_error(ctx);
	ok(nft_run_cmd_from_buffer(
		   ctx, "table ip foreign { chain filter_forward { type filter hook forward "
			"priority 0; policy drop; }; }") == 0,
	   "nft: foreign table with forward policy drop created");
	nft_ctx_free(ctx);
	k = lxm_nft_forward_drop(&where, NULL);
	ok(k == 1 && where && streq(where, "table ip foreign chain filter_forward"),
	   "nft: foreign forward drop reported (%s)", where ? where : "none");
	free(where);
	ok(lxm_nft_apply("lxm", NULL, 0, NULL) == 0 && !(j = nft_list("list table inet lxm")) &&
		   (j = nft_list("list table ip foreign")),
	   "nft: n == 0 deletes table inet lxm and leaves the foreign one");
	free(j);
	ok(lxm_nft_apply("lxm", NULL, 0, NULL) == 0, "nft: deleting a missing table is fine");

	/* Network forwards: a range mapped one to one, a list to one port, every port, IPv6. */
	json_decref(fwds);
	fwds = json_pack("[{s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s},"
			 " {s:s, s:s}, {s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s}]",
			 "protocol", "tcp", "listen_address", "198.18.0.5", "listen_port",
			 "9001-9002", "target_address", "10.20.30.40", "target_port", "81-82",
			 "protocol", "udp", "listen_address", "198.18.0.5", "listen_port",
			 "53,5353", "target_address", "10.20.30.41", "target_port", "5300",
			 "listen_address", "198.18.0.6", "target_address", "10.20.30.42",
			 "protocol", "tcp", "listen_address", "2001:db8::5", "listen_port", "80-81",
			 "target_address", "fd42:1::5", "target_port", "8080-8081", "protocol",
			 "tcp", "listen_address", "198.18.0.7", "listen_port", "100-101",
			 "target_address", "10.20.30.40", "target_port", "100-101");
	nets[0].forwards = fwds;
	lxm_error_free(TAKE_PTR(err));
	k = lxm_nft_apply("lxm", nets, 1, &err);
	ok(k == 0, "nft: forwards applied (%s)", err ? err->msg : "");
	j = nft_list_text("list table inet lxm");
	ok(j && strstr(j, "tcp dport 9001-9002 dnat ip to 10.20.30.40:tcp dport map { 9001 : 81, "
			  "9002 : 82 }"),
	   "nft: a range mapped one to one");
	ok(j && strstr(j, "udp dport { 53, 5353 } dnat ip to 10.20.30.41:5300"),
	   "nft: a list to one port");
	ok(j && strstr(j, "ip daddr 198.18.0.6 dnat ip to 10.20.30.42"),
	   "nft: every port to the default target");
	ok(j && strstr(j, "ip6 daddr 2001:db8::5 tcp dport 80-81 dnat ip6 to [fd42:1::5]:tcp dport "
			  "map { 80 : 8080, 81 : 8081 }"),
	   "nft: an IPv6 range mapped");
	ok(j && strstr(j, "ip daddr 198.18.0.7 tcp dport 100-101 dnat ip to 10.20.30.40\n"),
	   "nft: the same ports need no map");
	free(j);
	json_object_set_new(json_array_get(fwds, 0), "target_port", json_string("81-83"));
	lxm_error_free(TAKE_PTR(err));
	k = lxm_nft_apply("lxm", nets, 1, &err);
	ok(k == -EINVAL && err && strstr(err->msg, "one to one"),
	   "nft: target ports that do not match are refused (%s)", err ? err->msg : "");
	ok(lxm_nft_apply("lxm", NULL, 0, NULL) == 0, "nft: forwards' table deleted");
	json_decref(fwds);
}

/* LXD port lists: single ports, ranges and lists, in order; bad ones refused. */
static void test_ports_parse(void)
{
	uint16_t *v = NULL;
	size_t n = 0;

	ok(lxm_ports_parse("80", &v, &n) == 0 && n == 1 && v[0] == 80, "ports: one port");
	free(TAKE_PTR(v));
	ok(lxm_ports_parse("8080-8082,443", &v, &n) == 0 && n == 4 && v[0] == 8080 &&
		   v[2] == 8082 && v[3] == 443,
	   "ports: a range and a port, in order");
	free(TAKE_PTR(v));
	ok(lxm_ports_parse("1-65535", &v, &n) == 0 && n == 65535 && v[65534] == 65535,
	   "ports: the whole range");
	free(TAKE_PTR(v));
	ok(lxm_ports_parse("0", &v, &n) == -ERANGE, "ports: 0 refused");
	ok(lxm_ports_parse("65536", &v, &n) == -ERANGE, "ports: 65536 refused");
	ok(lxm_ports_parse("90-80", &v, &n) == -ERANGE, "ports: a range going down refused");
	ok(lxm_ports_parse("", &v, &n) == -EINVAL && lxm_ports_parse("80,", &v, &n) == -EINVAL &&
		   lxm_ports_parse("a", &v, &n) == -EINVAL &&
		   lxm_ports_parse("80-", &v, &n) == -EINVAL &&
		   lxm_ports_parse("-80", &v, &n) == -EINVAL &&
		   lxm_ports_parse("80 ", &v, &n) == -EINVAL,
	   "ports: malformed lists refused");
	ok(lxm_ports_parse("1-65535,80", &v, &n) == -E2BIG, "ports: more than 65535 refused");
	ok(v == NULL, "ports: nothing returned on failure");
}

/* The forward drop check on canned `nft -j list chains` output: Docker's iptables-nft FORWARD
 * chain with policy drop is found; lxm's own tables, accept policies, other hooks and bridge
 * family tables are not. */
static void test_forward_drop_parse(void)
{
	static const char docker[] =
		"{\"nftables\": [{\"metainfo\": {\"version\": \"1.0.6\", \"json_schema_version\": "
		"1}},"
		"{\"chain\": {\"family\": \"inet\", \"table\": \"lxm\", \"name\": \"forward\", "
		"\"handle\": 1, \"type\": \"filter\", \"hook\": \"forward\", \"prio\": 0, "
		"\"policy\": \"accept\"}},"
		"{\"chain\": {\"family\": \"inet\", \"table\": \"lxm_1a2b3c4d\", \"name\": \"fw\", "
		"\"handle\": 1, \"type\": \"filter\", \"hook\": \"forward\", \"prio\": 0, "
		"\"policy\": \"drop\"}},"
		"{\"chain\": {\"family\": \"ip\", \"table\": \"filter\", \"name\": \"INPUT\", "
		"\"handle\": 1, \"type\": \"filter\", \"hook\": \"input\", \"prio\": 0, "
		"\"policy\": \"drop\"}},"
		"{\"chain\": {\"family\": \"ip\", \"table\": \"filter\", \"name\": \"FORWARD\", "
		"\"handle\": 2, \"type\": \"filter\", \"hook\": \"forward\", \"prio\": 0, "
		"\"policy\": \"drop\"}},"
		"{\"chain\": {\"family\": \"ip\", \"table\": \"filter\", \"name\": "
		"\"DOCKER-USER\", "
		"\"handle\": 3}},"
		"{\"chain\": {\"family\": \"bridge\", \"table\": \"br\", \"name\": \"f\", "
		"\"handle\": 1, \"type\": \"filter\", \"hook\": \"forward\", \"prio\": 0, "
		"\"policy\": \"drop\"}},"
		"{\"chain\": {\"family\": \"inet\", \"table\": \"lxmtest_x\", \"name\": \"f\", "
		"\"handle\": 1, \"type\": \"filter\", \"hook\": \"forward\", \"prio\": 10, "
		"\"policy\": \"drop\"}}]}";
	static const char clean[] =
		"{\"nftables\": [{\"metainfo\": {\"version\": \"1.0.6\"}},"
		"{\"chain\": {\"family\": \"ip\", \"table\": \"filter\", \"name\": \"FORWARD\", "
		"\"handle\": 2, \"type\": \"filter\", \"hook\": \"forward\", \"prio\": 0, "
		"\"policy\": \"accept\"}}]}";
	_cleanup_error_ struct lxm_error *err = NULL;
	char *where = NULL;
	int k;

	k = lxm_nft_forward_drop_parse(docker, &where, NULL);
	ok(k == 2 && where &&
		   streq(where, "table ip filter chain FORWARD, table inet lxmtest_x chain f"),
	   "forward drop: Docker's FORWARD and a foreign inet table found, lxm's and bridge "
	   "ones not (%s)",
	   where ? where : "none");
	free(TAKE_PTR(where));
	k = lxm_nft_forward_drop_parse(clean, &where, NULL);
	ok(k == 0 && !where, "forward drop: an accept policy is fine");
	k = lxm_nft_forward_drop_parse("{\"nftables\": []}", &where, NULL);
	ok(k == 0 && !where, "forward drop: an empty ruleset is fine");
	k = lxm_nft_forward_drop_parse("not json", &where, &err);
	ok(k == -EIO && err && strstr(err->msg, "unexpected JSON") && !where,
	   "forward drop: bad JSON is an error (%s)", err ? err->msg : "");
}

/* dnsmasq accepts the argv: it runs on a bridge of the private namespace. */
static void test_dnsmasq_runs(void)
{
	char dir[] = "/tmp/test-network-XXXXXX";
	struct lxm_dnsmasq d = { .network = "net0",
				 .bridge = "lxmtest1",
				 .ipv4_cidr = "10.77.0.1/24",
				 .ipv6_cidr = "fd42:77::1/64",
				 .domain = "lxm",
				 .dir = dir };
	const char *addrs[] = { "10.77.0.1/24", "fd42:77::1/64", NULL };
	_cleanup_strv_ char **v = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	int status = 0;

	if (access("/usr/sbin/dnsmasq", X_OK) < 0) {
		ok(1, "# SKIP dnsmasq not installed");
		return;
	}
	ok(mkdtemp(dir) && lxm_bridge_ensure("lxmtest1", 0, &err) == 0 &&
		   lxm_link_set_addresses("lxmtest1", addrs, &err) == 0 &&
		   lxm_dnsmasq_write_hosts(&d, NULL, 0, &err) == 0 &&
		   lxm_dnsmasq_argv(&d, "/usr/sbin/dnsmasq", &v, &err) == 0,
	   "dnsmasq: bridge, hosts and argv ready (%s)", err ? err->msg : "");
	pid_t pid = fork();
	if (pid == 0) {
		execv(v[0], v);
		_exit(127);
	}
	usleep(700 * 1000);
	ok(pid > 0 && waitpid(pid, &status, WNOHANG) == 0, "dnsmasq: runs with the argv");
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	lxm_link_delete("lxmtest1", NULL);
	lxm_rm_tree(dir);
}

/* Runs the namespace tests in a child; its TAP lines continue the parent's numbering and its
 * counts come back over a pipe. */
static void in_private_netns(void)
{
	int p[2], counts[2] = { 0, 0 }, status = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return (void)ok(0, "pipe");
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		ok(unshare(CLONE_NEWNET) == 0, "private network namespace");
		ok(set_lo_up() == 0, "lo up");
		test_links();
		test_nft();
		test_dnsmasq_runs();
		counts[0] = tap_count;
		counts[1] = tap_failed;
		(void)!write(p[1], counts, sizeof(counts));
		fflush(stdout);
		_exit(0);
	}
	close(p[1]);
	bool got = read(p[0], counts, sizeof(counts)) == sizeof(counts);
	close(p[0]);
	waitpid(pid, &status, 0);
	if (got) {
		tap_count = counts[0];
		tap_failed = counts[1];
	}
	ok(got && WIFEXITED(status) && WEXITSTATUS(status) == 0, "namespace child finished");
}

int main(void)
{
	test_cidr();
	test_hwaddr();
	test_dnsmasq();
	test_ports_parse();
	test_forward_drop_parse();
	if (geteuid() == 0)
		in_private_netns();
	else
		ok(1, "# SKIP namespace tests need root");
	return tap_done();
}
