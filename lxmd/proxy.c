/* Proxy devices in NAT mode: DNAT rules for a running instance, see proxy.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "networks.h"
#include "nic.h"
#include "proxy.h"
#include "util.h"

/* The keys a proxy device may have here. */
static const char *const proxy_keys[] = { "type", "listen", "connect", "bind", "nat" };

static const char *str(const json_t *dev, const char *key)
{
	const char *v = json_string_value(json_object_get(dev, key));

	return v && *v ? v : NULL;
}

/* Splits "tcp:ADDR:PORT" (ADDR an IPv4 address or a bracketed IPv6 one) into its parts; returns
 * why not, or NULL when it is good. */
static const char *split_address(const char *s, char proto[static 4], char addr[static 48],
				 char port[static 12])
{
	const char *a, *colon, *end;
	unsigned char bin[16];
	size_t n;
	long p;
	char *e;

	if (strncmp(s, "tcp:", 4) != 0 && strncmp(s, "udp:", 4) != 0)
		return "the protocol must be tcp or udp (\"tcp:ADDRESS:PORT\")";
	memcpy(proto, s, 3);
	proto[3] = '\0';
	a = s + 4;
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
	if (n == 0 || n >= 48)
		return "the address is missing or too long";
	memcpy(addr, a, n);
	addr[n] = '\0';
	if (inet_pton(*s && s[4] == '[' ? AF_INET6 : AF_INET, addr, bin) != 1)
		return "the address is not an IP address (host names are not supported)";
	if (strchr(colon + 1, '-') || strchr(colon + 1, ','))
		return "port ranges and lists are not supported";
	errno = 0;
	p = strtol(colon + 1, &e, 10);
	if (!colon[1] || *e || errno || p < 1 || p > 65535 || colon[1] == '+' || colon[1] == '-')
		return "the port must be a number from 1 to 65535";
	snprintf(port, 12, "%ld", p);
	return NULL;
}

int lxmd_proxy_parse(const char *name, const json_t *dev, struct lxmd_proxy *ret,
		     struct lxm_error **err)
{
	const char *type = str(dev, "type"), *listen = str(dev, "listen"),
		   *connect = str(dev, "connect"), *bind = str(dev, "bind"), *nat = str(dev, "nat");
	struct lxmd_proxy k = { .name = name };
	const char *key, *why;
	json_t *v;

	if (!type || !streq(type, "proxy"))
		return 0;
	json_object_foreach ((json_t *)dev, key, v) {
		bool known = false;

		for (size_t i = 0; i < ARRAY_SIZE(proxy_keys) && !known; i++)
			known = streq(key, proxy_keys[i]);
		if (!known)
			return lxm_error_set(err, -EINVAL, 400,
					     "proxy device '%s': unknown or unsupported key '%s' "
					     "(known: listen, connect, bind, nat)",
					     name, key);
	}
	if (!nat || !streq(nat, "true"))
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': only NAT mode is supported: set nat=true",
				     name);
	if (bind && !streq(bind, "host"))
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': key 'bind': '%s' is not supported in NAT "
				     "mode (only host)",
				     name, bind);
	if (!listen)
		return lxm_error_set(
			err, -EINVAL, 400,
			"proxy device '%s': key 'listen' missing (\"tcp:ADDRESS:PORT\")", name);
	if (!connect)
		return lxm_error_set(
			err, -EINVAL, 400,
			"proxy device '%s': key 'connect' missing (\"tcp:ADDRESS:PORT\")", name);
	why = split_address(listen, k.protocol, k.listen_addr, k.listen_port);
	if (why)
		return lxm_error_set(err, -EINVAL, 400, "proxy device '%s': key 'listen': '%s': %s",
				     name, listen, why);
	{
		char proto[4];

		why = split_address(connect, proto, k.connect_addr, k.connect_port);
		if (why)
			return lxm_error_set(err, -EINVAL, 400,
					     "proxy device '%s': key 'connect': '%s': %s", name,
					     connect, why);
		if (!streq(proto, k.protocol))
			return lxm_error_set(err, -EINVAL, 400,
					     "proxy device '%s': listen and connect must use the "
					     "same protocol (%s and %s)",
					     name, k.protocol, proto);
	}
	if (!strchr(k.listen_addr, ':') != !strchr(k.connect_addr, ':'))
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': listen and connect addresses must be of "
				     "one family (%s and %s)",
				     name, k.listen_addr, k.connect_addr);
	if (streq(k.connect_addr, "0.0.0.0") || streq(k.connect_addr, "::"))
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': key 'connect': the address must be the "
				     "instance's, not a wildcard",
				     name);
	*ret = k;
	return 1;
}

/* The managed network of the nic of devices whose static ipv4.address is addr, or NULL. */
static const char *network_of(const json_t *devices, const char *addr)
{
	const char *name;
	json_t *dev;

	json_object_foreach ((json_t *)devices, name, dev) {
		struct lxmd_nic nic;

		if (lxmd_nic_parse(name, dev, &nic, NULL) == 1 && nic.network && nic.ipv4 &&
		    streq(nic.ipv4, addr))
			return nic.network;
	}
	return NULL;
}

int lxmd_proxies_plan(struct lxmd *d, const char *instance, const json_t *devices, json_t **ret,
		      struct lxm_error **err)
{
	_cleanup_json_ json_t *plan = NULL;
	const char *name;
	json_t *dev;
	int k;

	*ret = NULL;
	json_object_foreach ((json_t *)devices, name, dev) {
		struct lxmd_proxy p;
		const char *network, *bridge;
		json_t *fw;

		k = lxmd_proxy_parse(name, dev, &p, err);
		if (k < 0)
			return k;
		if (k == 0)
			continue;
		network = network_of(devices, p.connect_addr);
		if (!network)
			return lxm_error_set(err, -EINVAL, 400,
					     "proxy device '%s': nat=true needs the "
					     "connect address %s to be the static ipv4.address of "
					     "one of the instance's nics on a managed network "
					     "(network=NAME ipv4.address=%s)",
					     name, p.connect_addr, p.connect_addr);
		if ((k = lxmd_network_bridge(d, network, &bridge, err)) < 0)
			return lxm_error_prefix(err, "proxy device '%s'", name);
		if (!plan && !(plan = json_array()))
			return -ENOMEM;
		fw = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "network", network,
			       "bridge", bridge, "device", name, "protocol", p.protocol,
			       "listen_address", p.listen_addr, "listen_port", p.listen_port,
			       "target_address", p.connect_addr, "target_port", p.connect_port);
		if (!fw || json_array_append_new(plan, fw) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(plan);
	return 0;
}

/* Lets the host's own connections to 127.0.0.1 be routed out of bridge after the DNAT (the
 * kernel drops loopback sources on other links unless route_localnet is set). */
static int allow_localnet(const char *bridge, struct lxm_error **err)
{
	_cleanup_close_ int fd = -1;
	char path[96];

	snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/route_localnet", bridge);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || lxm_write_all(fd, "1", 1) < 0)
		return lxm_error_setx(err, -errno, 500, "bridge %s: write 1 to %s", bridge, path);
	return 0;
}

int lxmd_proxies_apply(struct lxmd *d, const char *instance, json_t *plan, struct lxm_error **err)
{
	size_t i;
	json_t *fw;
	int k;

	json_array_foreach (plan, i, fw) {
		const char *laddr = json_string_value(json_object_get(fw, "listen_address"));

		if (!streq(laddr, "0.0.0.0") && strncmp(laddr, "127.", 4) != 0)
			continue;
		k = allow_localnet(json_string_value(json_object_get(fw, "bridge")), err);
		if (k < 0)
			return lxm_error_prefix(err, "proxy device '%s'",
						json_string_value(json_object_get(fw, "device")));
	}
	k = lxmd_networks_set_proxies(d, instance, plan, err);
	if (k < 0)
		return lxm_error_prefix(err, "proxy devices");
	return 0;
}

int lxmd_proxies_start(struct lxmd *d, const char *instance, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL, *plan = NULL;
	int k;

	if ((k = lxm_db_instance_get(d->db, instance, &inst, err)) < 0 ||
	    (k = lxmd_instance_expand(d, inst, &config, &devices, err)) < 0 ||
	    (k = lxmd_proxies_plan(d, instance, devices, &plan, err)) < 0 ||
	    (k = lxmd_proxies_apply(d, instance, plan, err)) < 0)
		return lxm_error_prefix(err, "start '%s'", instance);
	return 0;
}

void lxmd_proxies_stop(struct lxmd *d, const char *instance)
{
	_cleanup_error_ struct lxm_error *err = NULL;

	if (lxmd_networks_set_proxies(d, instance, NULL, &err) < 0)
		log_error("instance '%s': remove the rules of its proxy devices: %s", instance,
			  err->msg);
}
