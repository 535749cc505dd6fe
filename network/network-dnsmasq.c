/* dnsmasq for a managed network: its argv, its static hosts file and its leases. lxmd runs it in
 * the foreground and supervises it; this file only says how. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "json.h"
#include "network.h"
#include "util.h"

/* A growing NULL-terminated argv. */
struct argv {
	char **v; /* the arguments, NULL-terminated */
	size_t n; /* how many */
};

static __attribute__((format(printf, 2, 3))) int argv_add(struct argv *a, const char *fmt, ...)
{
	char **v = realloc(a->v, (a->n + 2) * sizeof(*v));
	va_list ap;
	int r;

	if (!v)
		return -ENOMEM;
	a->v = v;
	va_start(ap, fmt);
	r = vasprintf(&v[a->n], fmt, ap);
	va_end(ap);
	if (r < 0) {
		v[a->n] = NULL;
		return -ENOMEM;
	}
	v[++a->n] = NULL;
	return 0;
}

static void ipv4_text(uint32_t a, char buf[static INET_ADDRSTRLEN])
{
	uint32_t be = htonl(a);

	inet_ntop(AF_INET, &be, buf, INET_ADDRSTRLEN);
}

/* dnsmasq drops to user nobody after start-up, and reads the hosts file again on SIGHUP as that
 * user: that works only when every directory down to d->dir is searchable by others. When it is
 * not (a private state directory), dnsmasq keeps root. */
static bool reachable_by_others(const char *dir)
{
	char path[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path) || dir[0] != '/')
		return false;
	memcpy(path, dir, n + 1);
	for (;;) {
		struct stat st;

		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode) || !(st.st_mode & S_IXOTH))
			return false;
		char *slash = strrchr(path, '/');
		if (slash == path)
			break;
		*slash = '\0';
	}
	return true;
}

static int build_argv(const struct lxm_dnsmasq *d, const char *dnsmasq_path, struct argv *a,
		      struct lxm_error **err)
{
	struct lxm_ipv4_net net;
	char ip[INET6_ADDRSTRLEN], first[INET_ADDRSTRLEN], last[INET_ADDRSTRLEN];
	int k = 0;

#define ADD(...)                                                                                   \
	do {                                                                                       \
		k = argv_add(a, __VA_ARGS__);                                                      \
		if (k < 0)                                                                         \
			return k;                                                                  \
	} while (0)

	ADD("%s", dnsmasq_path ? dnsmasq_path : "dnsmasq");
	ADD("--keep-in-foreground");
	ADD("--strict-order");
	ADD("--bind-interfaces");
	ADD("--except-interface=lo");
	ADD("--no-ping");
	ADD("--interface=%s", d->bridge);
	ADD("--dhcp-rapid-commit");
	ADD("--quiet-dhcp");
	ADD("--quiet-dhcp6");
	ADD("--quiet-ra");
	/* No configuration file: /etc/dnsmasq.conf belongs to the host's own dnsmasq. */
	ADD("--conf-file=/dev/null");
	ADD("--pid-file=%s/dnsmasq.pid", d->dir);
	ADD("--dhcp-no-override");
	ADD("--dhcp-authoritative");
	ADD("--dhcp-leasefile=%s/dnsmasq.leases", d->dir);
	ADD("--dhcp-hostsfile=%s/dnsmasq.hosts", d->dir);
	ADD("--user=%s", reachable_by_others(d->dir) ? "nobody" : "root");
	if (d->ipv4_cidr) {
		if (lxm_parse_ipv4_cidr(d->ipv4_cidr, &net) < 0 || net.prefix > 30)
			return lxm_error_set(
				err, -EINVAL, 400,
				"'%s' is not an IPv4 address/prefix with room for DHCP",
				d->ipv4_cidr);
		/* The range is the subnet's hosts without the bridge's own address. */
		uint32_t lo = net.first == net.addr ? net.first + 1 : net.first;
		uint32_t hi = net.last == net.addr ? net.last - 1 : net.last;

		ipv4_text(net.addr, ip);
		ipv4_text(lo, first);
		ipv4_text(hi, last);
		ADD("--listen-address=%s", ip);
		ADD("--dhcp-range=%s,%s,1h", first, last);
	}
	if (d->ipv6_cidr) {
		const char *slash = strchr(d->ipv6_cidr, '/');
		unsigned char bin[16];

		if (!slash || (size_t)(slash - d->ipv6_cidr) >= sizeof(ip))
			return lxm_error_set(err, -EINVAL, 400,
					     "'%s' is not an IPv6 address/prefix", d->ipv6_cidr);
		memcpy(ip, d->ipv6_cidr, slash - d->ipv6_cidr);
		ip[slash - d->ipv6_cidr] = '\0';
		if (inet_pton(AF_INET6, ip, bin) != 1)
			return lxm_error_set(err, -EINVAL, 400,
					     "'%s' is not an IPv6 address/prefix", d->ipv6_cidr);
		ADD("--listen-address=%s", ip);
		ADD("--enable-ra");
		/* SLAAC from router advertisements, names from stateless DHCPv6. */
		ADD("--dhcp-range=::,constructor:%s,ra-stateless,ra-names", d->bridge);
	}
	if (d->domain && *d->domain) {
		ADD("--domain=%s", d->domain);
		/* Names under the domain are answered here and never forwarded upstream. */
		ADD("--local=/%s/", d->domain);
		ADD("--interface-name=_gateway.%s,%s", d->domain, d->bridge);
	}
	return 0;
#undef ADD
}

int lxm_dnsmasq_argv(const struct lxm_dnsmasq *d, const char *dnsmasq_path, char ***ret,
		     struct lxm_error **err)
{
	struct argv a = { 0 };
	int k;

	if (!d->bridge || !d->dir)
		return lxm_error_set(err, -EINVAL, 500,
				     "network '%s': dnsmasq: no bridge or directory", d->network);
	if (strchr(d->dir, ',') || (d->domain && strpbrk(d->domain, ",/ ")))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': dnsmasq: the directory and dns.domain must not "
				     "hold ',', '/' or spaces",
				     d->network);
	k = build_argv(d, dnsmasq_path, &a, err);
	if (k < 0) {
		lxm_strv_free(a.v);
		return lxm_error_prefix(err, "network '%s': dnsmasq", d->network);
	}
	*ret = a.v;
	return 0;
}

/* "00:16:3e:12:34:56": six hex pairs. */
static bool hwaddr_ok(const char *s)
{
	if (!s || strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? s[i] != ':' : !strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	return true;
}

int lxm_dnsmasq_write_hosts(const struct lxm_dnsmasq *d, const struct lxm_dhcp_host *hosts,
			    size_t n, struct lxm_error **err)
{
	_cleanup_free_ char *buf = NULL, *path = NULL;
	size_t len = 0;
	FILE *f;
	int k;

	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct lxm_dhcp_host *h = &hosts[i];
		struct in_addr in;

		if (!hwaddr_ok(h->hwaddr) || lxm_name_invalid_reason(h->name) ||
		    (h->ipv4 && inet_pton(AF_INET, h->ipv4, &in) != 1)) {
			fclose(f);
			return lxm_error_set(
				err, -EINVAL, 400,
				"network '%s': static lease of '%s': bad name, MAC '%s' "
				"or address '%s'",
				d->network, h->name ? h->name : "", h->hwaddr ? h->hwaddr : "",
				h->ipv4 ? h->ipv4 : "");
		}
		if (h->ipv4)
			fprintf(f, "%s,%s,%s\n", h->hwaddr, h->ipv4, h->name);
		else
			fprintf(f, "%s,%s\n", h->hwaddr, h->name);
	}
	if (fclose(f) != 0)
		return -ENOMEM;
	if (asprintf(&path, "%s/dnsmasq.hosts", d->dir) < 0)
		return -ENOMEM;
	/* World-readable: dnsmasq may read it again as nobody. */
	k = lxm_write_file_atomic(path, buf ? buf : "", len, 0644);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "network '%s': write %s", d->network, path);
	return 0;
}

/* The static leases of the hosts file as lease objects (type static). */
static int hosts_leases(const struct lxm_dnsmasq *d, json_t *arr, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *data = NULL;
	char *save = NULL;
	int k;

	if (asprintf(&path, "%s/dnsmasq.hosts", d->dir) < 0)
		return -ENOMEM;
	k = lxm_read_file(path, &data, NULL);
	if (k == -ENOENT)
		return 0;
	if (k < 0)
		return lxm_error_setx(err, k, 500, "network '%s': read %s", d->network, path);
	for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[3] = { 0 };
		int nf = 0;

		for (char *p = line; p && nf < 3; nf++) {
			f[nf] = p;
			p = strchr(p, ',');
			if (p)
				*p++ = '\0';
		}
		if (nf != 3)
			continue; /* no fixed address: only its name is static */
		if (json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s}", "hostname",
							 f[2], "hwaddr", f[0], "address", f[1],
							 "type", "static", "location", "none")) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Whether arr already has a lease of address. */
static bool has_address(json_t *arr, const char *address)
{
	size_t i;
	json_t *l;

	json_array_foreach (arr, i, l) {
		const char *a = json_string_value(json_object_get(l, "address"));

		if (a && streq(a, address))
			return true;
	}
	return false;
}

/* The hwaddr a static lease gives hostname, for IPv6 leases that carry none. */
static const char *static_hwaddr(json_t *arr, const char *hostname)
{
	size_t i;
	json_t *l;

	json_array_foreach (arr, i, l) {
		const char *h = json_string_value(json_object_get(l, "hostname"));

		if (h && streq(h, hostname))
			return json_string_value(json_object_get(l, "hwaddr"));
	}
	return NULL;
}

int lxm_dnsmasq_leases(const struct lxm_dnsmasq *d, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *arr = json_array();
	_cleanup_free_ char *path = NULL, *data = NULL;
	char *save = NULL;
	size_t nstatic;
	int k;

	if (!arr)
		return -ENOMEM;
	k = hosts_leases(d, arr, err);
	if (k < 0)
		return k;
	nstatic = json_array_size(arr);
	if (asprintf(&path, "%s/dnsmasq.leases", d->dir) < 0)
		return -ENOMEM;
	k = lxm_read_file(path, &data, NULL);
	if (k < 0 && k != -ENOENT)
		return lxm_error_setx(err, k, 500, "network '%s': read %s", d->network, path);
	/* Lines: "expiry MAC IPv4 hostname client-id", or for DHCPv6 "expiry IAID IPv6 hostname
	 * DUID" after a "duid SERVER-DUID" line; a hostname of "*" means none. */
	for (char *line = data ? strtok_r(data, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *f[4] = { 0 }, *s2 = NULL;
		int nf = 0;

		for (char *t = strtok_r(line, " ", &s2); t && nf < 4; t = strtok_r(NULL, " ", &s2))
			f[nf++] = t;
		if (nf < 4 || streq(f[0], "duid") || has_address(arr, f[2]))
			continue;
		bool v6 = strchr(f[2], ':') != NULL;
		const char *host = streq(f[3], "*") ? "" : f[3];
		const char *hw = v6 ? (*host ? static_hwaddr(arr, host) : NULL) : f[1];
		bool is_static = false;

		for (size_t i = 0; i < nstatic && !v6; i++) {
			const char *shw = json_string_value(
				json_object_get(json_array_get(arr, i), "hwaddr"));
			is_static = is_static || (shw && strcasecmp(shw, f[1]) == 0);
		}
		if (json_array_append_new(arr,
					  json_pack("{s:s, s:s, s:s, s:s, s:s}", "hostname", host,
						    "hwaddr", hw ? hw : "", "address", f[2], "type",
						    is_static ? "static" : "dynamic", "location",
						    "none")) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(arr);
	return 0;
}
