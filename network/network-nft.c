/* The firewall of managed networks: one nftables table, "inet lxm", rebuilt as a whole and
 * swapped in one libnftables transaction, so no other table is ever touched and a half-applied
 * rule set is never visible. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "cleanup.h"
#include "json.h"
#include "network.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nft_ctx *, nft_ctx_free)

/* Names go into nft text between double quotes: only what an interface name may hold. */
static bool ifname_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 15)
		return false;
	for (const char *p = s; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

/* "10.1.2.0/24" or "fd42::/64" of family: an address, a slash and a prefix length only. */
static bool subnet_ok(const char *s, int family)
{
	char buf[INET6_ADDRSTRLEN + 1];
	unsigned char bin[16];
	const char *slash = s ? strchr(s, '/') : NULL;
	size_t digits;

	if (!slash || (size_t)(slash - s) >= sizeof(buf))
		return false;
	memcpy(buf, s, slash - s);
	buf[slash - s] = '\0';
	digits = strspn(slash + 1, "0123456789");
	return inet_pton(family, buf, bin) == 1 && digits > 0 && digits <= 3 && !slash[1 + digits];
}

/* A port, a range "8000-8010" or a list "80,443". */
static bool ports_ok(const char *s)
{
	return s && *s && strspn(s, "0123456789,-") == strlen(s) && strlen(s) < 256;
}

int lxm_ports_parse(const char *s, uint16_t **ret, size_t *ret_n)
{
	_cleanup_free_ uint16_t *v = NULL;
	size_t n = 0, cap = 0;
	const char *p = s;

	if (!s || !*s)
		return -EINVAL;
	for (;;) {
		unsigned long lo, hi;
		char *end;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		lo = strtoul(p, &end, 10);
		hi = lo;
		if (*end == '-') {
			p = end + 1;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			hi = strtoul(p, &end, 10);
		}
		if (lo < 1 || hi > 65535 || lo > hi)
			return -ERANGE;
		if (n + (hi - lo + 1) > 65535)
			return -E2BIG;
		if (n + (hi - lo + 1) > cap) {
			uint16_t *nv;

			cap = (n + (hi - lo + 1)) * 2;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				return -ENOMEM;
			v = nv;
		}
		for (unsigned long i = lo; i <= hi; i++)
			v[n++] = (uint16_t)i;
		if (*end == '\0')
			break;
		if (*end != ',')
			return -EINVAL;
		p = end + 1;
	}
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* A port spec in nft's syntax: "80" and "8000-8010" as they are, a list "80,443" as a set. */
static void nft_ports(const char *spec, char *buf, size_t size)
{
	snprintf(buf, size, strchr(spec, ',') ? "{ %s }" : "%s", spec);
}

/* The anonymous map "{ l1 : t1, l2 : t2, ... }" from listen ports to target ports (one to one)
 * into *ret; -EINVAL when the counts differ. *ret stays NULL when both lists are the same (the
 * DNAT then keeps the port). */
static int port_map(const char *lport, const char *tport, char **ret)
{
	_cleanup_free_ uint16_t *l = NULL, *t = NULL;
	_cleanup_free_ char *buf = NULL;
	size_t nl, nt, len = 0;
	FILE *f;
	int k;

	*ret = NULL;
	if ((k = lxm_ports_parse(lport, &l, &nl)) < 0 || (k = lxm_ports_parse(tport, &t, &nt)) < 0)
		return k == -ENOMEM ? k : -EINVAL;
	if (nl != nt)
		return -EINVAL;
	if (memcmp(l, t, nl * sizeof(*l)) == 0)
		return 0;
	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	fputs("{ ", f);
	for (size_t i = 0; i < nl; i++)
		fprintf(f, "%s%u : %u", i ? ", " : "", l[i], t[i]);
	fputs(" }", f);
	if (fclose(f) != 0)
		return -ENOMEM;
	*ret = TAKE_PTR(buf);
	return 0;
}

/* Appends one forward's DNAT (prerouting and output) and hairpin masquerade rules. Without
 * protocol and listen_port, every packet to the listen address goes to the target address. */
static int append_forward(FILE *prert, FILE *out, FILE *post, const struct lxm_nft_network *nw,
			  json_t *fw, struct lxm_error **err)
{
	const char *proto = json_string_value(json_object_get(fw, "protocol"));
	const char *laddr = json_string_value(json_object_get(fw, "listen_address"));
	const char *lport = json_string_value(json_object_get(fw, "listen_port"));
	const char *taddr = json_string_value(json_object_get(fw, "target_address"));
	const char *tport = json_string_value(json_object_get(fw, "target_port"));
	_cleanup_free_ char *map = NULL;
	unsigned char bin[16];
	bool all = (!proto || !*proto) && (!lport || !*lport);
	int family;
	char dport[300], tports[300], to[128], sel[340];

	if (!all && (!proto || (!streq(proto, "tcp") && !streq(proto, "udp"))))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward: protocol must be tcp or udp",
				     nw->name);
	if (!laddr || !taddr || (!all && !ports_ok(lport)) || (tport && *tport && !ports_ok(tport)))
		return lxm_error_set(
			err, -EINVAL, 400,
			"network '%s': forward: listen_address, listen_port and "
			"target_address are required, ports are numbers, ranges or lists",
			nw->name);
	family = strchr(laddr, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(family, laddr, bin) != 1 || inet_pton(family, taddr, bin) != 1)
		return lxm_error_set(
			err, -EINVAL, 400,
			"network '%s': forward %s -> %s: addresses must be of one family", nw->name,
			laddr, taddr);
	const char *ipf = family == AF_INET6 ? "ip6" : "ip";
	char match[96];

	if (!all)
		nft_ports(lport, dport, sizeof(dport));
	/* Several target ports: one to one with the listen ports, through a map. */
	if (!all && tport && (strchr(tport, ',') || strchr(tport, '-'))) {
		int k = port_map(lport, tport, &map);

		if (k == -ENOMEM)
			return lxm_error_set(err, k, 500, "network '%s': out of memory", nw->name);
		if (k < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward %s port %s: target ports %s "
					     "do not match the listen ports one to one",
					     nw->name, laddr, lport, tport);
		if (!map)
			tport = NULL;
	}
	if (tport && *tport && !map)
		snprintf(to, sizeof(to), family == AF_INET6 ? "[%s]:%s" : "%s:%s", taddr, tport);
	else
		snprintf(to, sizeof(to), family == AF_INET6 ? "[%s]" : "%s", taddr);
	/* A wildcard listen address (a proxy device's 0.0.0.0) means every local address. */
	if (streq(laddr, "0.0.0.0") || streq(laddr, "::"))
		snprintf(match, sizeof(match), "meta nfproto %s fib daddr type local",
			 family == AF_INET6 ? "ipv6" : "ipv4");
	else
		snprintf(match, sizeof(match), "%s daddr %s", ipf, laddr);
	if (all) {
		*sel = '\0';
		*tports = '\0';
	} else {
		snprintf(sel, sizeof(sel), " %s dport %s", proto, dport);
		if (tport && *tport)
			nft_ports(tport, tports, sizeof(tports));
		else
			snprintf(tports, sizeof(tports), "%s", dport);
	}
	if (map) {
		fprintf(prert, "\t\t%s%s dnat %s to %s : %s dport map %s\n", match, sel, ipf, to,
			proto, map);
		fprintf(out, "\t\t%s%s dnat %s to %s : %s dport map %s\n", match, sel, ipf, to,
			proto, map);
	} else {
		fprintf(prert, "\t\t%s%s dnat %s to %s\n", match, sel, ipf, to);
		fprintf(out, "\t\t%s%s dnat %s to %s\n", match, sel, ipf, to);
	}
	/* The host reaching it through 127.0.0.1 (its bridge has route_localnet): the reply must
	 * come back through the bridge, so the loopback source is rewritten. */
	if (family == AF_INET && (streq(laddr, "0.0.0.0") || strncmp(laddr, "127.", 4) == 0))
		fprintf(post, "\t\tip saddr 127.0.0.0/8 ip daddr %s%s%s%s%s masquerade\n", taddr,
			all ? "" : " ", all ? "" : proto, all ? "" : " dport ", tports);
	/* An instance of the network reaching a forward (its own or another's) is sent back into
	 * the bridge: the reply must go through the host to be un-NATed, so the source of such
	 * DNATed connections is rewritten. */
	const char *from = family == AF_INET6 ? nw->ipv6_subnet : nw->ipv4_subnet;

	fprintf(post, "\t\t%s saddr %s %s daddr %s%s%s%s%s ct status dnat masquerade\n", ipf,
		from ? from : taddr, ipf, taddr, all ? "" : " ", all ? "" : proto,
		all ? "" : " dport ", tports);
	return 0;
}

/* The nft script that replaces table inet lxm with networks' rules. */
static int build_script(const char *table, const struct lxm_nft_network *networks, size_t n,
			char **ret, struct lxm_error **err)
{
	_cleanup_free_ char *fwd = NULL, *post = NULL, *prert = NULL, *out = NULL, *all = NULL;
	size_t fwd_len = 0, post_len = 0, prert_len = 0, out_len = 0, all_len = 0;
	FILE *f_fwd = open_memstream(&fwd, &fwd_len), *f_post = open_memstream(&post, &post_len);
	FILE *f_prert = open_memstream(&prert, &prert_len), *f_out = open_memstream(&out, &out_len);
	FILE *f_all = open_memstream(&all, &all_len);
	int k = 0;

	if (!f_fwd || !f_post || !f_prert || !f_out || !f_all) {
		k = -ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < n && k >= 0; i++) {
		const struct lxm_nft_network *nw = &networks[i];
		size_t j;
		json_t *fw;

		if (!ifname_ok(nw->bridge)) {
			k = lxm_error_set(err, -EINVAL, 400, "network '%s': bad bridge name '%s'",
					  nw->name, nw->bridge ? nw->bridge : "");
			break;
		}
		if ((nw->ipv4_subnet && !subnet_ok(nw->ipv4_subnet, AF_INET)) ||
		    (nw->ipv6_subnet && !subnet_ok(nw->ipv6_subnet, AF_INET6))) {
			k = lxm_error_set(err, -EINVAL, 400, "network '%s': bad subnet '%s'",
					  nw->name,
					  nw->ipv4_subnet && !subnet_ok(nw->ipv4_subnet, AF_INET)
						  ? nw->ipv4_subnet
						  : nw->ipv6_subnet);
			break;
		}
		fprintf(f_fwd, "\t\tiifname \"%s\" accept\n\t\toifname \"%s\" accept\n", nw->bridge,
			nw->bridge);
		if (nw->nat4 && nw->ipv4_subnet)
			fprintf(f_post, "\t\tip saddr %s ip daddr != %s masquerade\n",
				nw->ipv4_subnet, nw->ipv4_subnet);
		if (nw->nat6 && nw->ipv6_subnet)
			fprintf(f_post, "\t\tip6 saddr %s ip6 daddr != %s masquerade\n",
				nw->ipv6_subnet, nw->ipv6_subnet);
		json_array_foreach (nw->forwards, j, fw) {
			k = append_forward(f_prert, f_out, f_post, nw, fw, err);
			if (k < 0)
				break;
		}
	}
	if (k < 0)
		goto done;
	fclose(f_fwd), fclose(f_post), fclose(f_prert), fclose(f_out);
	f_fwd = f_post = f_prert = f_out = NULL;
	/* Creating the table first makes the delete succeed when it does not exist yet; the three
	 * commands are one transaction. */
	fprintf(f_all, "table inet %s\ndelete table inet %s\n", table, table);
	if (n > 0)
		fprintf(f_all,
			"table inet %s {\n"
			"\tchain forward {\n\t\ttype filter hook forward priority 0; policy "
			"accept;\n%s\t}\n"
			"\tchain postrouting {\n\t\ttype nat hook postrouting priority 100; policy "
			"accept;\n"
			"%s\t}\n"
			"\tchain prerouting {\n\t\ttype nat hook prerouting priority -100; policy "
			"accept;\n"
			"%s\t}\n"
			"\tchain output {\n\t\ttype nat hook output priority -100; policy "
			"accept;\n%s\t}\n"
			"}\n",
			table, fwd, post, prert, out);
	fclose(f_all);
	f_all = NULL;
	*ret = TAKE_PTR(all);
done:
	if (f_fwd)
		fclose(f_fwd);
	if (f_post)
		fclose(f_post);
	if (f_prert)
		fclose(f_prert);
	if (f_out)
		fclose(f_out);
	if (f_all)
		fclose(f_all);
	return k;
}

/* The first line of libnftables' error output, for a message. */
static void first_line(const char *s, char *buf, size_t size)
{
	size_t n = s ? strcspn(s, "\n") : 0;

	if (n >= size)
		n = size - 1;
	memcpy(buf, s ? s : "", n);
	buf[n] = '\0';
}

/* Runs script in a fresh context; output (when ret_output) is the command's buffered output. */
static int nft_run(const char *script, unsigned flags, char **ret_output, char *errbuf,
		   size_t errsize)
{
	_cleanup_(nft_ctx_freep) struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);

	if (!ctx)
		return -ENOMEM;
	nft_ctx_output_set_flags(ctx, flags);
	if (nft_ctx_buffer_output(ctx) < 0 || nft_ctx_buffer_error(ctx) < 0)
		return -ENOMEM;
	if (nft_run_cmd_from_buffer(ctx, script) != 0) {
		const char *e = nft_ctx_get_error_buffer(ctx);

		/* libnftables reports errors as text only; the usual causes are missing privilege
		 * or a missing kernel module. */
		first_line(e && *e ? e : "failed without a message", errbuf, errsize);
		return strstr(errbuf, "Operation not permitted") ? -EPERM : -EIO;
	}
	if (ret_output) {
		const char *o = nft_ctx_get_output_buffer(ctx);

		*ret_output = strdup(o ? o : "");
		if (!*ret_output)
			return -ENOMEM;
	}
	return 0;
}

int lxm_nft_apply(const char *table, const struct lxm_nft_network *networks, size_t n,
		  struct lxm_error **err)
{
	_cleanup_free_ char *script = NULL;
	char e[512];
	int k;

	k = build_script(table, networks, n, &script, err);
	if (k < 0)
		return lxm_error_prefix(err, "nftables: table inet %s", table);
	k = nft_run(script, 0, NULL, e, sizeof(e));
	if (k < 0)
		return lxm_error_set(err, k, 500, "nftables: %s table inet %s: %s",
				     n ? "replace" : "delete", table, e);
	return 0;
}

/* Whether table (of family) is one an lxmd owns: inet "lxm" or "lxm_<tag>". */
static bool own_table(const char *family, const char *table)
{
	return streq(family, "inet") && (streq(table, "lxm") || startswith(table, "lxm_"));
}

int lxm_nft_forward_drop_parse(const char *json, char **ret_where, struct lxm_error **err)
{
	_cleanup_json_ json_t *root = NULL;
	_cleanup_free_ char *where = NULL;
	size_t len = 0, i;
	json_error_t jerr;
	json_t *items, *item;
	FILE *f;
	int found = 0;

	*ret_where = NULL;
	root = json_loads(json ? json : "", 0, &jerr);
	items = json_object_get(root, "nftables");
	if (!json_is_array(items))
		return lxm_error_set(err, -EIO, 500, "nftables: list chains: unexpected JSON: %s",
				     root ? "no nftables array" : jerr.text);
	f = open_memstream(&where, &len);
	if (!f)
		return -ENOMEM;
	json_array_foreach (items, i, item) {
		json_t *c = json_object_get(item, "chain");
		const char *family = json_string_value(json_object_get(c, "family"));
		const char *table = json_string_value(json_object_get(c, "table"));
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *hook = json_string_value(json_object_get(c, "hook"));
		const char *policy = json_string_value(json_object_get(c, "policy"));

		/* Only IPv4 and IPv6 routing passes the forward hook of these families; a bridge
		 * family table filters bridged frames, not what the host routes. */
		if (!c || !family || !table || !name || !hook || !policy ||
		    !streq(hook, "forward") || !streq(policy, "drop") ||
		    (!streq(family, "ip") && !streq(family, "ip6") && !streq(family, "inet")) ||
		    own_table(family, table))
			continue;
		fprintf(f, "%stable %s %s chain %s", found ? ", " : "", family, table, name);
		found++;
	}
	if (fclose(f) != 0)
		return -ENOMEM;
	if (found)
		*ret_where = TAKE_PTR(where);
	return found;
}

int lxm_nft_forward_drop(char **ret_where, struct lxm_error **err)
{
	_cleanup_free_ char *out = NULL;
	char e[512];
	int k;

	*ret_where = NULL;
	k = nft_run("list chains", NFT_CTX_OUTPUT_JSON, &out, e, sizeof(e));
	if (k < 0)
		return lxm_error_set(err, k, 500, "nftables: list chains: %s", e);
	return lxm_nft_forward_drop_parse(out, ret_where, err);
}
