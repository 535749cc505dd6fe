/* Managed networks in the daemon: the table of networks, their set-up and tear-down on the thread
 * pool, and the supervision of one dnsmasq per network. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#include "cgroup/cgroup.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "network/network.h"
#include "networks.h"
#include "util.h"

#define DNSMASQ_PATH "/usr/sbin/dnsmasq"
/* dnsmasq restarts wait 1 s, doubling up to 30 s; a run of a minute resets the wait. */
#define RESTART_MIN_MS	 1000
#define RESTART_MAX_MS	 30000
#define RESTART_RESET_MS 60000

/* What a network asks of the host, resolved from its config. */
struct net_spec {
	char *name;	  /* the network, also its bridge */
	char *ipv4;	  /* "10.1.2.1/24", "auto" (before the pick) or NULL */
	char *ipv6;	  /* "fd..::1/64", "auto" or NULL */
	bool nat4;	  /* ipv4.nat */
	bool nat6;	  /* ipv6.nat */
	char *domain;	  /* dns.domain */
	unsigned mtu;	  /* bridge.mtu, 0: default */
	json_t *forwards; /* the network's forwards as stored (LXD's objects, sorted by listen
			   * address), shared between copies and never changed in place; or NULL */
};

struct net {
	struct lxmd *d;	     /* the daemon */
	struct net_spec s;   /* as applied */
	char *dir;	     /* ROOT/networks/<name> */
	char *cause;	     /* why it is unavailable, or NULL */
	uv_process_t proc;   /* dnsmasq, while proc_open */
	bool proc_open;	     /* proc is a live handle */
	uv_timer_t timer;    /* restart backoff */
	bool timer_open;     /* timer is a live handle */
	unsigned backoff_ms; /* next restart wait */
	uint64_t started_ms; /* when dnsmasq last started */
	bool stopping;	     /* no more restarts: deleted, renamed or lxmd stops */
	bool restart_now;    /* config changed: restart at once when it exits */
	struct net *next;    /* list link */
};

struct lxmd_networks {
	struct net *list;   /* the networks */
	struct net *dying;  /* removed, waiting for their handles to close */
	char *forward_drop; /* foreign forward chains with policy drop (last check), or NULL */
	char nft_table[32]; /* this lxmd's nftables table: "lxm", or "lxm_<root tag>" */
	bool busy;	    /* a change runs on the thread pool */
	json_t *proxies;    /* DNAT entries of running instances' proxy devices: instance name ->
			     * array of forwards with their "network" (lxmd_networks_set_proxies) */
	bool proxies_dirty; /* proxies changed while a change ran: rewrite the table after it */
};

static void spec_clear(struct net_spec *s)
{
	free(s->name);
	free(s->ipv4);
	free(s->ipv6);
	free(s->domain);
	json_decref(s->forwards);
	memset(s, 0, sizeof(*s));
}

static int spec_copy(struct net_spec *dst, const struct net_spec *src)
{
	*dst = (struct net_spec){ .nat4 = src->nat4,
				  .nat6 = src->nat6,
				  .mtu = src->mtu,
				  .forwards = json_incref(src->forwards) };
	if (!(dst->name = strdup(src->name)) || (src->ipv4 && !(dst->ipv4 = strdup(src->ipv4))) ||
	    (src->ipv6 && !(dst->ipv6 = strdup(src->ipv6))) ||
	    (src->domain && !(dst->domain = strdup(src->domain)))) {
		spec_clear(dst);
		return -ENOMEM;
	}
	return 0;
}

static struct net *net_find(struct lxmd *d, const char *name)
{
	for (struct net *n = d->networks ? d->networks->list : NULL; n; n = n->next)
		if (streq(n->s.name, name))
			return n;
	return NULL;
}

/* ---- names and config ---- */

const char *lxmd_network_name_invalid_reason(const char *name)
{
	bool digits = true;

	if (!name || !*name)
		return "the name is empty";
	if (strlen(name) > 15)
		return "the name is longer than 15 characters (it names the bridge interface)";
	if (name[0] == '-' || name[0] == '.')
		return "the name must not start with '-' or '.'";
	for (const char *p = name; *p; p++) {
		if (!isascii(*p) || !(isalnum(*p) || *p == '-' || *p == '_' || *p == '.'))
			return "the name may only hold letters, digits, '-', '_' and '.'";
		if (!isdigit(*p))
			digits = false;
	}
	if (digits)
		return "the name must not be only digits";
	if (streq(name, ".") || streq(name, ".."))
		return "the name must not be '.' or '..'";
	return NULL;
}

static bool valid_ipv6_cidr(const char *v)
{
	char buf[INET6_ADDRSTRLEN + 8];
	struct in6_addr a;
	char *slash, *end;
	long prefix;

	if (strlen(v) >= sizeof(buf))
		return false;
	strcpy(buf, v);
	slash = strchr(buf, '/');
	if (!slash)
		return false;
	*slash = '\0';
	errno = 0;
	prefix = strtol(slash + 1, &end, 10);
	return inet_pton(AF_INET6, buf, &a) == 1 && !*end && end != slash + 1 && prefix >= 8 &&
	       prefix <= 126;
}

static bool valid_bool(const char *v)
{
	return streq(v, "true") || streq(v, "false");
}

/* Checks config (an object of strings) and resolves it into s (name set by the caller).
 * Errors name the key. Creating, IPv4 defaults to auto with NAT (as LXD's create fills in);
 * afterwards a key left out means none and no NAT, as stored. */
static int config_check(const char *name, const json_t *config, bool creating, struct net_spec *s,
			struct lxm_error **err)
{
	const char *key, *v4 = creating ? "auto" : "none", *v6 = "none",
			 *nat4 = creating ? "true" : "false", *nat6 = creating ? "true" : "false",
			 *domain = "lxm";
	json_t *val;

	json_object_foreach ((json_t *)config, key, val) {
		const char *v = json_string_value(val);
		struct lxm_ipv4_net net4;

		if (!v)
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': config key '%s': not a string", name,
					     key);
		if (streq(key, "ipv4.address")) {
			if (!streq(v, "auto") && !streq(v, "none") &&
			    (lxm_parse_ipv4_cidr(v, &net4) < 0 || net4.prefix < 8 ||
			     net4.prefix > 30 || net4.addr == net4.network))
				return lxm_error_set(err, -EINVAL, 400,
						     "network '%s': ipv4.address '%s': not auto, "
						     "none or a host address with a prefix "
						     "(10.1.2.1/24)",
						     name, v);
			v4 = v;
		} else if (streq(key, "ipv6.address")) {
			if (!streq(v, "auto") && !streq(v, "none") && !valid_ipv6_cidr(v))
				return lxm_error_set(err, -EINVAL, 400,
						     "network '%s': ipv6.address '%s': not auto, "
						     "none or an address with a prefix "
						     "(fd42::1/64)",
						     name, v);
			v6 = v;
		} else if (streq(key, "ipv4.nat") || streq(key, "ipv6.nat")) {
			if (!valid_bool(v))
				return lxm_error_set(err, -EINVAL, 400,
						     "network '%s': %s '%s': not true or false",
						     name, key, v);
			if (key[3] == '4')
				nat4 = v;
			else
				nat6 = v;
		} else if (streq(key, "dns.domain")) {
			if (!*v || strlen(v) > 253 || v[0] == '.' || v[0] == '-' ||
			    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789.-") != strlen(v))
				return lxm_error_set(err, -EINVAL, 400,
						     "network '%s': dns.domain '%s': not a domain "
						     "name",
						     name, v);
			domain = v;
		} else if (streq(key, "bridge.mtu")) {
			char *end;
			long mtu;

			errno = 0;
			mtu = strtol(v, &end, 10);
			if (!*v || *end || errno || mtu < 1280 || mtu > 9000)
				return lxm_error_set(err, -EINVAL, 400,
						     "network '%s': bridge.mtu '%s': not a number "
						     "from 1280 to 9000",
						     name, v);
			s->mtu = (unsigned)mtu;
		} else if (strncmp(key, "user.", 5) != 0) {
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': unknown config key '%s'", name, key);
		}
	}
	s->nat4 = streq(nat4, "true");
	s->nat6 = streq(nat6, "true");
	if ((!streq(v4, "none") && !(s->ipv4 = strdup(v4))) ||
	    (!streq(v6, "none") && !(s->ipv6 = strdup(v6))) || !(s->domain = strdup(domain)))
		return -ENOMEM;
	return 0;
}

/* The config as stored: "auto" replaced by what was picked; creating, the defaults made
 * explicit as LXD shows them. */
static int config_resolved(const json_t *config, const struct net_spec *s, bool creating,
			   json_t **ret)
{
	json_t *c = config ? json_deep_copy(config) : json_object();
	bool v4 = creating || json_object_get(c, "ipv4.address");
	bool v6 = creating || json_object_get(c, "ipv6.address");

	if (!c ||
	    (v4 &&
	     json_object_set_new(c, "ipv4.address", json_string(s->ipv4 ? s->ipv4 : "none"))) ||
	    (v6 &&
	     json_object_set_new(c, "ipv6.address", json_string(s->ipv6 ? s->ipv6 : "none"))) ||
	    (creating && s->ipv4 && !json_object_get(c, "ipv4.nat") &&
	     json_object_set_new(c, "ipv4.nat", json_string("true"))) ||
	    (creating && s->ipv6 && !json_object_get(c, "ipv6.nat") &&
	     json_object_set_new(c, "ipv6.nat", json_string("true")))) {
		json_decref(c);
		return -ENOMEM;
	}
	*ret = c;
	return 0;
}

/* "10.1.2.0/24" of "10.1.2.1/24"; "fd42::/64" of "fd42::1/64". */
static char *subnet_of(const char *cidr, bool v6)
{
	char buf[INET6_ADDRSTRLEN + 8], out[INET6_ADDRSTRLEN];
	unsigned char a[16];
	char *slash, *s = NULL;
	unsigned prefix;

	if (!cidr || strlen(cidr) >= sizeof(buf))
		return NULL;
	strcpy(buf, cidr);
	slash = strchr(buf, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	prefix = (unsigned)atoi(slash + 1);
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, a) != 1 || prefix > (v6 ? 128u : 32u))
		return NULL;
	for (unsigned i = 0; i < (v6 ? 16u : 4u); i++) {
		unsigned bits = prefix > i * 8 ? prefix - i * 8 : 0;

		if (bits < 8)
			a[i] &= (unsigned char)(0xff00 >> bits);
	}
	if (!inet_ntop(v6 ? AF_INET6 : AF_INET, a, out, sizeof(out)) ||
	    asprintf(&s, "%s/%u", out, prefix) < 0)
		return NULL;
	return s;
}

/* ---- host work (thread pool, or start-up) ---- */

static int net_dir(struct lxmd *d, const char *name, char **ret)
{
	return asprintf(ret, "%s/networks/%s", d->cfg.root, name) < 0 ? -ENOMEM : 0;
}

/* Picks subnets for "auto" (avoiding taken) and sets up bridge, addresses and forwarding. */
static int host_setup(struct net_spec *s, char **taken, struct lxm_error **err)
{
	const char *cidrs[3] = { NULL };
	size_t n = 0;
	char *picked;
	int r;

	if (s->ipv4 && streq(s->ipv4, "auto")) {
		r = lxm_pick_ipv4_subnet((const char *const *)taken, &picked, err);
		if (r < 0)
			return lxm_error_prefix(err, "network '%s': ipv4.address=auto", s->name);
		free(s->ipv4);
		s->ipv4 = picked;
	}
	if (s->ipv6 && streq(s->ipv6, "auto")) {
		r = lxm_pick_ipv6_subnet((const char *const *)taken, &picked, err);
		if (r < 0)
			return lxm_error_prefix(err, "network '%s': ipv6.address=auto", s->name);
		free(s->ipv6);
		s->ipv6 = picked;
	}
	if (s->ipv4)
		cidrs[n++] = s->ipv4;
	if (s->ipv6)
		cidrs[n++] = s->ipv6;
	if ((r = lxm_bridge_ensure(s->name, s->mtu, err)) < 0 ||
	    (r = lxm_link_set_addresses(s->name, cidrs, err)) < 0 ||
	    (s->ipv4 && (r = lxm_enable_forwarding(s->name, s->ipv6 != NULL, err)) < 0))
		return lxm_error_prefix(err, "network '%s'", s->name);
	return 0;
}

/* The entries of proxies (instance -> array of forwards) on network name, as a new array. */
static json_t *forwards_of(const json_t *proxies, const char *name)
{
	json_t *ret = json_array(), *list, *fw;
	const char *inst;
	size_t i;

	json_object_foreach ((json_t *)proxies, inst, list)
		json_array_foreach (list, i, fw)
			if (ret && streq(json_string_value(json_object_get(fw, "network")), name))
				json_array_append(ret, fw);
	return ret;
}

/* Whether addr (text) is an IPv4 loopback address. */
static bool is_loopback4(const char *addr)
{
	return addr && strncmp(addr, "127.", 4) == 0;
}

/* Appends the DNAT entries (struct lxm_nft_network forwards) of the network forwards of s to
 * out: one per port entry, then the default target_address for everything else. Sets
 * *ret_localnet when one listens on a loopback address. */
static int forward_rules(const struct net_spec *s, json_t *out, bool *ret_localnet)
{
	size_t i, j;
	json_t *fw, *p;

	json_array_foreach (s->forwards, i, fw) {
		const char *listen = json_string_value(json_object_get(fw, "listen_address"));
		const char *dflt = json_string_value(
			json_object_get(json_object_get(fw, "config"), "target_address"));

		if (is_loopback4(listen))
			*ret_localnet = true;
		json_array_foreach (json_object_get(fw, "ports"), j, p) {
			json_t *e = json_pack("{s:s, s:s, s:O, s:O, s:O}", "network", s->name,
					      "listen_address", listen, "protocol",
					      json_object_get(p, "protocol"), "listen_port",
					      json_object_get(p, "listen_port"), "target_address",
					      json_object_get(p, "target_address"));
			const char *tp = json_string_value(json_object_get(p, "target_port"));

			if (!e ||
			    (tp && *tp && json_object_set_new(e, "target_port", json_string(tp))) ||
			    json_array_append_new(out, e) < 0)
				return -ENOMEM;
		}
		if (dflt && *dflt &&
		    json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "network", s->name,
							 "listen_address", listen, "target_address",
							 dflt)) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Writes the whole nftables table from specs (n of them) and the proxies' forwards. */
static int host_nft(const char *table, const struct net_spec *specs, size_t n,
		    const json_t *proxies, struct lxm_error **err)
{
	_cleanup_free_ struct lxm_nft_network *rules = calloc(n ? n : 1, sizeof(*rules));
	char **subnets = calloc(2 * n + 1, sizeof(char *));
	int r = -ENOMEM;

	if (!rules || !subnets)
		goto out;
	for (size_t i = 0; i < n; i++) {
		rules[i] = (struct lxm_nft_network){ .name = specs[i].name,
						     .bridge = specs[i].name,
						     .nat4 = specs[i].nat4 && specs[i].ipv4,
						     .nat6 = specs[i].nat6 && specs[i].ipv6 };
		bool localnet = false;

		if (!(rules[i].forwards =
			      proxies ? forwards_of(proxies, specs[i].name) : json_array()) ||
		    forward_rules(&specs[i], rules[i].forwards, &localnet) < 0)
			goto out;
		if (localnet && lxm_bridge_route_localnet(specs[i].name, err) < 0) {
			r = lxm_error_prefix(err, "network '%s': forwards", specs[i].name);
			goto out;
		}
		if (specs[i].ipv4 &&
		    !(rules[i].ipv4_subnet = subnets[2 * i] = subnet_of(specs[i].ipv4, false)))
			goto out;
		if (specs[i].ipv6 &&
		    !(rules[i].ipv6_subnet = subnets[2 * i + 1] = subnet_of(specs[i].ipv6, true)))
			goto out;
	}
	r = lxm_nft_apply(table, rules, n, err);
	if (r < 0)
		lxm_error_prefix(err, "apply firewall rules");
out:
	if (r == -ENOMEM)
		lxm_error_set(err, -ENOMEM, 500, "firewall rules: out of memory");
	for (size_t i = 0; subnets && i < 2 * n; i++)
		free(subnets[i]);
	free(subnets);
	for (size_t i = 0; rules && i < n; i++)
		json_decref(rules[i].forwards);
	return r;
}

static void dnsmasq_desc(const struct net *n, struct lxm_dnsmasq *dm)
{
	*dm = (struct lxm_dnsmasq){ .network = n->s.name,
				    .bridge = n->s.name,
				    .ipv4_cidr = n->s.ipv4,
				    .ipv6_cidr = n->s.ipv6,
				    .domain = n->s.domain,
				    .dir = n->dir };
}

/* ---- dnsmasq supervision ---- */

static void net_maybe_free(struct net *n);
static void dnsmasq_start(struct net *n);

static void pid_path(const struct net *n, char *buf, size_t len)
{
	snprintf(buf, len, "%s/dnsmasq.pid", n->dir);
}

/* A dnsmasq of this network left by an lxmd that was killed holds the bridge's ports: end it. */
static void dnsmasq_kill_stale(const struct net *n)
{
	_cleanup_free_ char *pid_s = NULL, *cmdline = NULL, *proc = NULL;
	char path[4096];
	size_t len;
	pid_t pid;

	pid_path(n, path, sizeof(path));
	if (lxm_read_file(path, &pid_s, NULL) < 0 || (pid = (pid_t)atoi(pid_s)) <= 1)
		return;
	if (asprintf(&proc, "/proc/%d/cmdline", (int)pid) < 0 ||
	    lxm_read_file(proc, &cmdline, &len) < 0)
		return;
	for (size_t i = 0; i + 1 < len; i++)
		if (!cmdline[i])
			cmdline[i] = ' ';
	if (strstr(cmdline, "dnsmasq") && strstr(cmdline, n->dir)) {
		log_info("network '%s': ending dnsmasq %d left from an earlier lxmd", n->s.name,
			 (int)pid);
		kill(pid, SIGTERM);
		for (int i = 0; i < 50 && kill(pid, 0) == 0; i++)
			usleep(20000);
	}
}

static void on_timer_close(uv_handle_t *h)
{
	struct net *n = h->data;

	n->timer_open = false;
	net_maybe_free(n);
}

static void on_restart_timer(uv_timer_t *t)
{
	struct net *n = t->data;

	if (!n->stopping && !n->proc_open)
		dnsmasq_start(n);
}

static void on_proc_close(uv_handle_t *h)
{
	struct net *n = h->data;
	uint64_t ran = lxm_monotonic_ms() - n->started_ms;

	n->proc_open = false;
	if (n->stopping) {
		if (n->timer_open && !uv_is_closing((uv_handle_t *)&n->timer)) {
			uv_timer_stop(&n->timer);
			uv_close((uv_handle_t *)&n->timer, on_timer_close);
		}
		net_maybe_free(n);
		return;
	}
	if (n->restart_now) {
		n->restart_now = false;
		n->backoff_ms = RESTART_MIN_MS;
		dnsmasq_start(n);
		return;
	}
	if (ran >= RESTART_RESET_MS)
		n->backoff_ms = RESTART_MIN_MS;
	log_warn("network '%s': dnsmasq ended; restarting it in %u ms", n->s.name, n->backoff_ms);
	uv_timer_start(&n->timer, on_restart_timer, n->backoff_ms, 0);
	n->backoff_ms = n->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : n->backoff_ms * 2;
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
	struct net *n = p->data;

	if (!n->stopping && !n->restart_now)
		log_warn("network '%s': dnsmasq (pid %d) exited with status %lld, signal %d",
			 n->s.name, p->pid, (long long)status, sig);
	uv_close((uv_handle_t *)p, on_proc_close);
}

/* Spawns the network's dnsmasq; a failure is logged and retried with the backoff. */
static void dnsmasq_start(struct net *n)
{
	_cleanup_strv_ char **argv = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	uv_process_options_t o = { 0 };
	struct lxm_dnsmasq dm;
	int r;

	if (n->stopping || n->proc_open || n->cause)
		return;
	dnsmasq_desc(n, &dm);
	r = lxm_dnsmasq_argv(&dm, DNSMASQ_PATH, &argv, &err);
	if (r < 0) {
		log_error("network '%s': dnsmasq: %s", n->s.name, err->msg);
		return;
	}
	o.file = argv[0];
	o.args = argv;
	o.exit_cb = on_proc_exit;
	n->proc.data = n;
	n->started_ms = lxm_monotonic_ms();
	r = uv_spawn(n->d->loop, &n->proc, &o);
	if (r < 0) {
		/* A failed uv_spawn still needs its handle closed. */
		n->proc_open = true;
		log_error("network '%s': start %s: %s", n->s.name, DNSMASQ_PATH, uv_strerror(r));
		uv_close((uv_handle_t *)&n->proc, on_proc_close);
		return;
	}
	/* dnsmasq writes its pid file itself (dnsmasq.pid in the state directory). */
	n->proc_open = true;
	log_info("network '%s': dnsmasq started (pid %d)", n->s.name, n->proc.pid);
}

static void on_kill_timer(uv_timer_t *t)
{
	struct net *n = t->data;

	if (n->proc_open && !uv_is_closing((uv_handle_t *)&n->proc)) {
		log_warn("network '%s': dnsmasq ignored SIGTERM; killing it", n->s.name);
		uv_process_kill(&n->proc, SIGKILL);
	}
}

/* Stops supervising n: no restarts, dnsmasq gets SIGTERM (SIGKILL 3 s later) and is reaped by
 * its exit callback; n is freed once its handles closed. */
static void net_stop(struct net *n)
{
	n->stopping = true;
	if (!n->timer_open || uv_is_closing((uv_handle_t *)&n->timer))
		return;
	uv_timer_stop(&n->timer);
	if (n->proc_open && !uv_is_closing((uv_handle_t *)&n->proc)) {
		uv_process_kill(&n->proc, SIGTERM);
		uv_timer_start(&n->timer, on_kill_timer, 3000, 0);
	} else if (!n->proc_open) {
		uv_close((uv_handle_t *)&n->timer, on_timer_close);
	}
}

static void net_free(struct net *n)
{
	if (!n)
		return;
	spec_clear(&n->s);
	free(n->dir);
	free(n->cause);
	free(n);
}

/* Frees a stopped network whose handles have closed (it is on the dying list). */
static void net_maybe_free(struct net *n)
{
	struct lxmd_networks *ns = n->d->networks;

	if (!n->stopping || n->proc_open || n->timer_open)
		return;
	for (struct net **p = &ns->dying; *p; p = &(*p)->next)
		if (*p == n) {
			*p = n->next;
			net_free(n);
			return;
		}
}

/* A new table entry for spec (copied), with its timer. */
static struct net *net_new(struct lxmd *d, const struct net_spec *s)
{
	struct net *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->d = d;
	n->backoff_ms = RESTART_MIN_MS;
	if (spec_copy(&n->s, s) < 0 || net_dir(d, s->name, &n->dir) < 0) {
		net_free(n);
		return NULL;
	}
	uv_timer_init(d->loop, &n->timer);
	n->timer.data = n;
	n->timer_open = true;
	return n;
}

/* Takes n out of the table and stops it. */
static void net_remove(struct lxmd *d, struct net *n)
{
	for (struct net **p = &d->networks->list; *p; p = &(*p)->next)
		if (*p == n) {
			*p = n->next;
			break;
		}
	n->next = d->networks->dying;
	d->networks->dying = n;
	net_stop(n);
	net_maybe_free(n);
}

/* ---- static leases ---- */

/* The static leases of network name from every instance's expanded nic devices naming it. */
static int hosts_collect(struct lxmd *d, const char *name, struct lxm_dhcp_host **ret,
			 char ***ret_strings, size_t *ret_n)
{
	_cleanup_strv_ char **names = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_dhcp_host *hosts = NULL;
	char **strings = NULL;
	size_t n = 0, ns = 0;
	int k;

	k = lxm_db_instance_names(d->db, &names, &err);
	if (k < 0)
		return k;
	hosts = calloc((size_t)k * 8 + 1, sizeof(*hosts));
	strings = calloc((size_t)k * 8 * 3 + 1, sizeof(char *));
	if (!hosts || !strings) {
		free(hosts);
		free(strings);
		return -ENOMEM;
	}
	for (char **i = names; *i; i++) {
		_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
		_cleanup_json_ json_t *config = NULL, *devices = NULL;
		const char *dev;
		json_t *dj;

		if (lxm_db_instance_get(d->db, *i, &inst, NULL) < 0 ||
		    lxmd_instance_expand(d, inst, &config, &devices, NULL) < 0)
			continue;
		json_object_foreach (devices, dev, dj) {
			const char *hw, *v4;
			char key[300];

			if (n >= (size_t)k * 8 ||
			    !streq(json_string_value(json_object_get(dj, "type")), "nic") ||
			    !streq(json_string_value(json_object_get(dj, "network")), name))
				continue;
			snprintf(key, sizeof(key), "volatile.%s.hwaddr", dev);
			hw = json_string_value(json_object_get(inst->config, key));
			if (!hw)
				continue;
			v4 = json_string_value(json_object_get(dj, "ipv4.address"));
			strings[ns++] = strdup(inst->name);
			strings[ns++] = strdup(hw);
			if (v4)
				strings[ns] = strdup(v4);
			ns++;
			hosts[n++] = (struct lxm_dhcp_host){ .name = strings[ns - 3],
							     .hwaddr = strings[ns - 2],
							     .ipv4 = v4 ? strings[ns - 1] : NULL };
			if (!hosts[n - 1].name || !hosts[n - 1].hwaddr)
				n--;
		}
	}
	*ret = hosts;
	*ret_strings = strings;
	*ret_n = n;
	return 0;
}

static void strings_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

struct leases_job {
	uv_work_t work;		     /* the thread pool request */
	struct lxmd *d;		     /* the daemon */
	char *name;		     /* the network */
	struct lxm_dnsmasq dm;	     /* its dnsmasq (strings owned by spec and dir) */
	struct net_spec spec;	     /* copy of the network's spec */
	char *dir;		     /* its state directory */
	struct lxm_dhcp_host *hosts; /* the static leases */
	char **strings;		     /* what hosts point into */
	size_t n;		     /* how many hosts */
	struct lxm_error *err;	     /* the failure */
};

static void leases_work(uv_work_t *w)
{
	struct leases_job *j = w->data;

	lxm_dnsmasq_write_hosts(&j->dm, j->hosts, j->n, &j->err);
}

static void leases_after(uv_work_t *w, int status)
{
	struct leases_job *j = w->data;
	struct net *n = net_find(j->d, j->name);

	(void)status;
	if (j->err)
		log_error("network '%s': static leases: %s", j->name, j->err->msg);
	else if (n && n->proc_open && !uv_is_closing((uv_handle_t *)&n->proc))
		uv_process_kill(&n->proc, SIGHUP);
	lxm_error_free(j->err);
	strings_free(j->strings, j->n * 3);
	free(j->hosts);
	spec_clear(&j->spec);
	free(j->dir);
	free(j->name);
	free(j);
}

void lxmd_network_leases_changed(struct lxmd *d, const char *name)
{
	struct net *n = net_find(d, name);
	struct leases_job *j;
	int r;

	if (!n)
		return;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->name = strdup(name)) || !(j->dir = strdup(n->dir)) ||
	    spec_copy(&j->spec, &n->s) < 0 ||
	    hosts_collect(d, name, &j->hosts, &j->strings, &j->n) < 0) {
		log_error("network '%s': static leases: out of memory or database failure", name);
		if (j) {
			spec_clear(&j->spec);
			free(j->dir);
			free(j->name);
		}
		free(j);
		return;
	}
	j->d = d;
	j->dm = (struct lxm_dnsmasq){ .network = j->spec.name,
				      .bridge = j->spec.name,
				      .ipv4_cidr = j->spec.ipv4,
				      .ipv6_cidr = j->spec.ipv6,
				      .domain = j->spec.domain,
				      .dir = j->dir };
	j->work.data = j;
	r = uv_queue_work(d->loop, &j->work, leases_work, leases_after);
	if (r < 0) {
		log_error("network '%s': static leases: %s", name, uv_strerror(r));
		strings_free(j->strings, j->n * 3);
		free(j->hosts);
		spec_clear(&j->spec);
		free(j->dir);
		free(j->name);
		free(j);
	}
}

/* Writes the static leases at once (start-up). */
static int leases_write_now(struct lxmd *d, struct net *n, struct lxm_error **err)
{
	struct lxm_dhcp_host *hosts = NULL;
	char **strings = NULL;
	struct lxm_dnsmasq dm;
	size_t cnt = 0;
	int r;

	r = hosts_collect(d, n->s.name, &hosts, &strings, &cnt);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "network '%s': collect static leases",
				      n->s.name);
	dnsmasq_desc(n, &dm);
	r = lxm_dnsmasq_write_hosts(&dm, hosts, cnt, err);
	strings_free(strings, cnt * 3);
	free(hosts);
	return r;
}

/* ---- lookups ---- */

int lxmd_network_bridge(struct lxmd *d, const char *name, const char **ret_bridge,
			struct lxm_error **err)
{
	struct net *n = net_find(d, name);

	if (!n)
		return lxm_error_set(err, -ENOENT, 404, "network '%s' not found", name);
	*ret_bridge = n->s.name;
	return 0;
}

const char *lxmd_network_status(struct lxmd *d, const char *name, const char **ret_cause)
{
	struct net *n = net_find(d, name);

	if (!n)
		return NULL;
	if (n->cause) {
		if (ret_cause)
			*ret_cause = n->cause;
		return "Unavailable";
	}
	return "Created";
}

const char *lxmd_networks_forward_drop(struct lxmd *d)
{
	return d->networks ? d->networks->forward_drop : NULL;
}

int lxmd_network_used_by(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err)
{
	_cleanup_strv_ char **profiles = NULL, **instances = NULL;
	_cleanup_json_ json_t *list = json_array();
	char *url;
	int k;

	k = lxm_db_network_used_by(d->db, name, &profiles, &instances, err);
	if (k < 0)
		return k;
	if (!list)
		return -ENOMEM;
	for (char **p = profiles; *p; p++)
		if (asprintf(&url, "/1.0/profiles/%s", *p) < 0 ||
		    json_array_append_new(list, json_string(url)) < 0)
			return -ENOMEM;
		else
			free(url);
	for (char **p = instances; *p; p++)
		if (asprintf(&url, "/1.0/instances/%s", *p) < 0 ||
		    json_array_append_new(list, json_string(url)) < 0)
			return -ENOMEM;
		else
			free(url);
	*ret = TAKE_PTR(list);
	return 0;
}

int lxmd_network_leases(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err)
{
	struct net *n = net_find(d, name);
	struct lxm_dnsmasq dm;

	if (!n)
		return lxm_error_set(err, -ENOENT, 404, "network '%s' not found", name);
	dnsmasq_desc(n, &dm);
	return lxm_dnsmasq_leases(&dm, ret, err);
}

/* The prefix length of "addr/len" (a network's ipv4 or ipv6), "" when there is none. */
static const char *prefix_of(const char *cidr)
{
	const char *slash = cidr ? strchr(cidr, '/') : NULL;

	return slash ? slash + 1 : "";
}

json_t *lxmd_network_leased_addresses(struct lxmd *d, const char *bridge, const char *hwaddr)
{
	_cleanup_json_ json_t *leases = NULL, *out = json_array();
	struct lxm_error *err = NULL;
	struct net *n = bridge ? net_find(d, bridge) : NULL;
	struct lxm_dnsmasq dm;
	json_t *l;
	size_t i;

	if (!out || !n || !hwaddr)
		return TAKE_PTR(out);
	dnsmasq_desc(n, &dm);
	if (lxm_dnsmasq_leases(&dm, &leases, &err) < 0) {
		log_warn("network '%s': leases of %s: %s", bridge, hwaddr, err->msg);
		lxm_error_free(err);
		return TAKE_PTR(out);
	}
	json_array_foreach (leases, i, l) {
		const char *addr = json_string_value(json_object_get(l, "address"));
		const char *hw = json_string_value(json_object_get(l, "hwaddr"));
		bool v6 = addr && strchr(addr, ':');

		if (!addr || !hw || strcasecmp(hw, hwaddr) != 0)
			continue;
		if (json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s}", "family",
							 v6 ? "inet6" : "inet", "address", addr,
							 "netmask",
							 prefix_of(v6 ? n->s.ipv6 : n->s.ipv4),
							 "scope", "global")) < 0)
			return NULL;
	}
	return TAKE_PTR(out);
}

/* ---- changes ---- */

enum job_kind { JOB_CREATE, JOB_UPDATE, JOB_RENAME, JOB_DELETE };

struct net_job {
	uv_work_t work;		   /* the thread pool request */
	struct lxmd *d;		   /* the daemon */
	enum job_kind kind;	   /* what changes */
	struct net_spec *specs;	   /* every network after the change */
	size_t n;		   /* how many specs */
	size_t self;		   /* index of the changed network in specs; n for a delete */
	char *old_name;		   /* rename and delete: the network (bridge) before */
	struct net_spec old;	   /* rename and delete: its spec, to restore on failure */
	char **taken;		   /* the other networks' addresses, for "auto" */
	json_t *proxies;	   /* a copy of the proxies' forwards when it started */
	char *description;	   /* create, update: the new description */
	json_t *config;		   /* create, update: the config as given */
	bool bridge_made;	   /* create: the bridge did not exist before */
	lxmd_network_done_fn done; /* called on the loop thread at the end */
	void *userdata;		   /* for done */
	struct lxm_error *err;	   /* the failure */
};

static void job_free(struct net_job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++)
		spec_clear(&j->specs[i]);
	free(j->specs);
	spec_clear(&j->old);
	free(j->old_name);
	lxm_strv_free(j->taken);
	json_decref(j->proxies);
	free(j->description);
	json_decref(j->config);
	lxm_error_free(j->err);
	free(j);
}

static void job_work(uv_work_t *w)
{
	struct net_job *j = w->data;
	struct lxmd *d = j->d;
	_cleanup_free_ char *dir = NULL, *old_dir = NULL;
	struct net_spec *s = j->self < j->n ? &j->specs[j->self] : NULL;
	int r;

	if (j->old_name) {
		if (net_dir(d, j->old_name, &old_dir) < 0)
			goto oom;
		r = lxm_link_delete(j->old_name, &j->err);
		if (r < 0)
			return;
	}
	if (s) {
		if (net_dir(d, s->name, &dir) < 0)
			goto oom;
		if (j->kind == JOB_CREATE)
			j->bridge_made = !lxm_link_exists(s->name);
		if (j->kind == JOB_RENAME && rename(old_dir, dir) < 0 && errno != ENOENT) {
			lxm_error_setx(&j->err, -errno, 500, "network '%s': rename %s to %s",
				       j->old_name, old_dir, dir);
			return;
		}
		r = lxm_mkdir_p(dir, 0755);
		if (r < 0) {
			lxm_error_setx(&j->err, r, 500, "network '%s': create %s", s->name, dir);
			return;
		}
		r = host_setup(s, j->taken, &j->err);
		if (r < 0)
			goto undo;
	}
	r = host_nft(j->d->networks->nft_table, j->specs, j->n, j->proxies, &j->err);
	if (r < 0)
		goto undo;
	if (j->kind == JOB_DELETE)
		lxm_rm_tree(old_dir);
	return;
undo:
	if (j->kind == JOB_CREATE && j->bridge_made)
		lxm_link_delete(s->name, NULL);
	return;
oom:
	lxm_error_set(&j->err, -ENOMEM, 500, "out of memory");
}

/* Rewrites the table at once (on the loop thread: short nftables work) from the networks as
 * applied and the proxies' forwards. */
static int nft_now(struct lxmd *d, struct lxm_error **err)
{
	_cleanup_free_ struct net_spec *specs = NULL;
	size_t cnt = 0, n = 0;

	for (struct net *x = d->networks->list; x; x = x->next)
		cnt++;
	specs = calloc(cnt + 1, sizeof(*specs));
	if (!specs)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (struct net *x = d->networks->list; x; x = x->next)
		if (!x->cause)
			specs[n++] = x->s;
	return host_nft(d->networks->nft_table, specs, n, d->networks->proxies, err);
}

int lxmd_networks_set_proxies(struct lxmd *d, const char *instance, json_t *forwards,
			      struct lxm_error **err)
{
	json_t *old;
	int k;

	if (!d->networks)
		return forwards && json_array_size(forwards)
			       ? lxm_error_set(err, -ENOENT, 500, "no managed networks")
			       : 0;
	old = json_object_get(d->networks->proxies, instance);
	if (!old && !json_array_size(forwards))
		return 0;
	json_incref(old);
	if (!d->networks->proxies && !(d->networks->proxies = json_object()))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (json_array_size(forwards))
		k = json_object_set(d->networks->proxies, instance, forwards);
	else
		k = json_object_del(d->networks->proxies, instance);
	if (k < 0) {
		json_decref(old);
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	if (d->networks->busy) {
		/* The change running has the old entries: the table is written again after it. */
		d->networks->proxies_dirty = true;
		json_decref(old);
		return 0;
	}
	k = nft_now(d, err);
	if (k < 0) {
		/* Put the previous entries back, so that the next rewrite does not fail too. */
		if (old)
			json_object_set(d->networks->proxies, instance, old);
		else
			json_object_del(d->networks->proxies, instance);
	}
	json_decref(old);
	return k;
}

static void job_after(uv_work_t *w, int status)
{
	struct net_job *j = w->data;
	struct lxmd *d = j->d;
	struct net_spec *s = j->self < j->n ? &j->specs[j->self] : NULL;
	struct lxm_error *err = TAKE_PTR(j->err);
	_cleanup_json_ json_t *config = NULL;
	struct net *n = NULL;
	int r = 0;

	d->networks->busy = false;
	if (status < 0 && !err)
		lxm_error_set(&err, -ECANCELED, 500, "network change cancelled");
	if (!err && (j->kind == JOB_CREATE || j->kind == JOB_UPDATE)) {
		r = config_resolved(j->config, s, j->kind == JOB_CREATE, &config);
		if (r < 0)
			lxm_error_set(&err, -ENOMEM, 500, "out of memory");
	}
	if (!err && j->kind == JOB_CREATE) {
		struct lxm_db_network row = { .name = s->name,
					      .type = "bridge",
					      .description = j->description,
					      .config = config };

		r = lxm_db_network_create(d->db, &row, &err);
		if (r < 0)
			lxm_link_delete(s->name, NULL);
	} else if (!err && j->kind == JOB_UPDATE) {
		r = lxm_db_network_update(d->db, s->name, j->description, config, &err);
	} else if (!err && j->kind == JOB_RENAME) {
		r = lxm_db_network_rename(d->db, j->old_name, s->name, &err);
	} else if (!err && j->kind == JOB_DELETE) {
		r = lxm_db_network_delete(d->db, j->old_name, &err);
	}
	if (err && (j->kind == JOB_RENAME || j->kind == JOB_DELETE)) {
		/* The network stays as it was: supervise it again. */
		log_error("network '%s': %s", j->old_name, err->msg);
		n = net_new(d, &j->old);
	} else if (!err && (j->kind == JOB_CREATE || j->kind == JOB_RENAME)) {
		n = net_new(d, s);
	} else if (!err && j->kind == JOB_UPDATE && (n = net_find(d, s->name))) {
		struct net_spec tmp;

		if (spec_copy(&tmp, s) == 0) {
			spec_clear(&n->s);
			n->s = tmp;
		}
		free(n->cause);
		n->cause = NULL;
		n->backoff_ms = RESTART_MIN_MS;
		if (n->proc_open) {
			n->restart_now = true;
			uv_process_kill(&n->proc, SIGTERM);
		} else {
			uv_timer_stop(&n->timer);
			dnsmasq_start(n);
		}
		n = NULL;
	}
	if (n) {
		_cleanup_error_ struct lxm_error *lerr = NULL;

		n->next = d->networks->list;
		d->networks->list = n;
		if (leases_write_now(d, n, &lerr) < 0)
			log_error("network '%s': %s", n->s.name, lerr->msg);
		dnsmasq_start(n);
		if (j->kind == JOB_CREATE)
			lxmd_networks_check_forward_drop(d, n->s.name);
	}
	if (d->networks->proxies_dirty) {
		_cleanup_error_ struct lxm_error *perr = NULL;

		d->networks->proxies_dirty = false;
		if (nft_now(d, &perr) < 0)
			log_error("networks: proxy devices: %s", perr->msg);
	}
	j->done(d, j->userdata, err);
	job_free(j);
}

/* Starts job j: the specs of every network but skip, plus extra (the changed one) when not NULL. */
static int job_start(struct lxmd *d, struct net_job *j, const char *skip,
		     const struct net_spec *extra, struct lxm_error **err)
{
	size_t cnt = 0, nt = 0;
	int r;

	if (d->networks->busy)
		return lxm_error_set(err, -EBUSY, 409,
				     "another network change is in progress; try again");
	for (struct net *n = d->networks->list; n; n = n->next)
		cnt++;
	j->specs = calloc(cnt + 1, sizeof(*j->specs));
	j->taken = calloc(2 * cnt + 1, sizeof(char *));
	if (!j->specs || !j->taken)
		return -ENOMEM;
	for (struct net *n = d->networks->list; n; n = n->next) {
		if (skip && streq(n->s.name, skip))
			continue;
		if (n->cause)
			continue;
		if (spec_copy(&j->specs[j->n], &n->s) < 0)
			return -ENOMEM;
		j->n++;
		if (n->s.ipv4 && !(j->taken[nt++] = strdup(n->s.ipv4)))
			return -ENOMEM;
		if (n->s.ipv6 && !(j->taken[nt++] = strdup(n->s.ipv6)))
			return -ENOMEM;
	}
	j->self = j->n;
	if (extra) {
		if (spec_copy(&j->specs[j->n], extra) < 0)
			return -ENOMEM;
		j->n++;
	}
	if (d->networks->proxies && !(j->proxies = json_deep_copy(d->networks->proxies)))
		return -ENOMEM;
	j->d = d;
	j->work.data = j;
	r = uv_queue_work(d->loop, &j->work, job_work, job_after);
	if (r < 0)
		return lxm_error_set(err, -EIO, 500, "queue network work: %s", uv_strerror(r));
	d->networks->busy = true;
	return 0;
}

static struct net_job *job_new(enum job_kind kind, const char *description, json_t *config,
			       lxmd_network_done_fn done, void *userdata)
{
	struct net_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->kind = kind;
	j->done = done;
	j->userdata = userdata;
	if (description && !(j->description = strdup(description))) {
		free(j);
		return NULL;
	}
	j->config = config ? json_incref(config) : json_object();
	return j;
}

/* -EINVAL (400) for a name a network cannot have, -EEXIST (409) when a network or a host
 * interface already has it. */
static int check_new_name(struct lxmd *d, const char *name, struct lxm_error **err)
{
	_cleanup_db_network_ struct lxm_db_network *row = NULL;
	const char *why = lxmd_network_name_invalid_reason(name);

	if (why)
		return lxm_error_set(err, -EINVAL, 400, "invalid network name '%s': %s",
				     name ? name : "", why);
	if (net_find(d, name) || lxm_db_network_get(d->db, name, &row, NULL) == 0)
		return lxm_error_set(err, -EEXIST, 409, "network '%s' already exists", name);
	if (lxm_link_exists(name))
		return lxm_error_set(err, -EEXIST, 409,
				     "network '%s': the host already has an interface of that "
				     "name",
				     name);
	return 0;
}

static int forwards_fit(const struct net_spec *s, struct lxm_error **err);

/* Starts the job that creates network name or applies a new config to it. */
static int start_config_job(struct lxmd *d, enum job_kind kind, const char *name,
			    const char *description, json_t *config, lxmd_network_done_fn done,
			    void *userdata, struct lxm_error **err)
{
	bool create = kind == JOB_CREATE;
	struct net_spec s = { 0 };
	struct net_job *j = NULL;
	int r;

	r = config_check(name, config, create, &s, err);
	if (r >= 0 && !(s.name = strdup(name)))
		r = -ENOMEM;
	/* The forwards stay with the network through a config change, and must still fit. */
	if (r >= 0 && !create && net_find(d, name)) {
		s.forwards = json_incref(net_find(d, name)->s.forwards);
		r = forwards_fit(&s, err);
	}
	if (r >= 0 && !(j = job_new(kind, description, config, done, userdata)))
		r = -ENOMEM;
	if (r >= 0 && (r = job_start(d, j, create ? NULL : name, &s, err)) < 0)
		job_free(j);
	spec_clear(&s);
	return r < 0 ? r : 0;
}

int lxmd_network_create(struct lxmd *d, const char *name, const char *description, json_t *config,
			lxmd_network_done_fn done, void *userdata, struct lxm_error **err)
{
	int r = check_new_name(d, name, err);

	if (r < 0)
		return r;
	return start_config_job(d, JOB_CREATE, name, description, config, done, userdata, err);
}

int lxmd_network_update(struct lxmd *d, const char *name, const char *description, json_t *config,
			lxmd_network_done_fn done, void *userdata, struct lxm_error **err)
{
	if (!net_find(d, name))
		return lxm_error_set(err, -ENOENT, 404, "network '%s' not found", name);
	return start_config_job(d, JOB_UPDATE, name, description, config, done, userdata, err);
}

static int check_unused(struct lxmd *d, const char *name, struct lxm_error **err)
{
	_cleanup_strv_ char **profiles = NULL, **instances = NULL;
	int k = lxm_db_network_used_by(d->db, name, &profiles, &instances, err);

	if (k > 0)
		return lxm_error_set(err, -EBUSY, 400, "The network is currently in use");
	return k;
}

static int start_removal(struct lxmd *d, enum job_kind kind, const char *name, const char *new_name,
			 lxmd_network_done_fn done, void *userdata, struct lxm_error **err)
{
	struct net *n = net_find(d, name);
	struct net_spec s = { 0 };
	struct net_job *j;
	int r;

	if (!n)
		return lxm_error_set(err, -ENOENT, 404, "network '%s' not found", name);
	if ((r = check_unused(d, name, err)) < 0)
		return r;
	j = job_new(kind, NULL, NULL, done, userdata);
	if (!j || !(j->old_name = strdup(name)) || spec_copy(&j->old, &n->s) < 0) {
		job_free(j);
		return -ENOMEM;
	}
	if (new_name) {
		if (spec_copy(&s, &n->s) < 0) {
			job_free(j);
			return -ENOMEM;
		}
		free(s.name);
		if (!(s.name = strdup(new_name))) {
			spec_clear(&s);
			job_free(j);
			return -ENOMEM;
		}
	}
	r = job_start(d, j, name, new_name ? &s : NULL, err);
	spec_clear(&s);
	if (r < 0) {
		job_free(j);
		return r;
	}
	net_remove(d, n);
	return 0;
}

int lxmd_network_rename(struct lxmd *d, const char *name, const char *new_name,
			lxmd_network_done_fn done, void *userdata, struct lxm_error **err)
{
	int r = check_new_name(d, new_name, err);

	if (r < 0)
		return r;
	return start_removal(d, JOB_RENAME, name, new_name, done, userdata, err);
}

int lxmd_network_delete(struct lxmd *d, const char *name, lxmd_network_done_fn done, void *userdata,
			struct lxm_error **err)
{
	return start_removal(d, JOB_DELETE, name, NULL, done, userdata, err);
}

/* ---- forwards ---- */

/* addr (text) in canonical form into buf, with its family and bytes; false when no address. */
static bool addr_parse(const char *addr, char buf[static INET6_ADDRSTRLEN], int *ret_family,
		       unsigned char bin[static 16])
{
	if (!addr || !*addr)
		return false;
	*ret_family = strchr(addr, ':') ? AF_INET6 : AF_INET;
	return inet_pton(*ret_family, addr, bin) == 1 &&
	       inet_ntop(*ret_family, bin, buf, INET6_ADDRSTRLEN);
}

/* Whether address bin of family lies in the subnet of cidr ("10.1.2.1/24", "fd42::1/64"). */
static bool addr_in_cidr(int family, const unsigned char bin[static 16], const char *cidr)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char net[16];
	const char *slash = cidr ? strchr(cidr, '/') : NULL;
	unsigned prefix;

	if (!slash || (size_t)(slash - cidr) >= sizeof(buf) ||
	    (family == AF_INET6) != (strchr(cidr, ':') != NULL))
		return false;
	memcpy(buf, cidr, slash - cidr);
	buf[slash - cidr] = '\0';
	prefix = (unsigned)atoi(slash + 1);
	if (inet_pton(family, buf, net) != 1)
		return false;
	for (unsigned i = 0; i < (family == AF_INET6 ? 16u : 4u); i++) {
		unsigned bits = prefix > i * 8 ? prefix - i * 8 : 0;
		unsigned char mask = bits >= 8 ? 0xff : (unsigned char)(0xff00 >> bits);

		if ((bin[i] & mask) != (net[i] & mask))
			return false;
	}
	return true;
}

/* Checks a target address of forward listen (family of the listen address): an address of the
 * network's subnet. what names it in the message ("config key target_address"). */
static int check_target(const struct net_spec *s, const char *listen, int family, const char *what,
			const char *v, char out[static INET6_ADDRSTRLEN], struct lxm_error **err)
{
	const char *cidr = family == AF_INET6 ? s->ipv6 : s->ipv4;
	unsigned char bin[16];
	int fam;

	if (!addr_parse(v, out, &fam, bin))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward %s: %s '%s': not an IP address",
				     s->name, listen, what, v ? v : "");
	if (fam != family)
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward %s: %s '%s': not of the listen "
				     "address's family",
				     s->name, listen, what, v);
	if (!addr_in_cidr(fam, bin, cidr))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward %s: %s '%s': not in the network's "
				     "subnet (%s)",
				     s->name, listen, what, v, cidr ? cidr : "none");
	return 0;
}

/* Sets the bits of ports (n of them) in used (65536 bits); false when one was set already. */
static bool ports_claim(unsigned char *used, const uint16_t *ports, size_t n, uint16_t *ret_dup)
{
	for (size_t i = 0; i < n; i++) {
		if (used[ports[i] / 8] & (1u << (ports[i] % 8))) {
			*ret_dup = ports[i];
			return false;
		}
		used[ports[i] / 8] |= (unsigned char)(1u << (ports[i] % 8));
	}
	return true;
}

/* Checks the ports of forward listen on s and puts them, cleaned up, into *ret. */
static int check_ports(const struct net_spec *s, const char *listen, int family, const json_t *in,
		       json_t **ret, struct lxm_error **err)
{
	_cleanup_free_ unsigned char *used = calloc(2, 65536 / 8);
	_cleanup_json_ json_t *out = json_array();
	size_t i;
	json_t *p;

	if (!used || !out)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (in && !json_is_null(in) && !json_is_array(in))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward %s: ports: not a list", s->name,
				     listen);
	json_array_foreach (in, i, p) {
		_cleanup_free_ uint16_t *lp = NULL, *tp = NULL;
		const char *key, *proto, *lport, *taddr, *tport, *desc;
		char t[INET6_ADDRSTRLEN], what[64];
		size_t nl = 0, nt = 0;
		uint16_t dup;
		json_t *v, *e;
		int k;

		snprintf(what, sizeof(what), "port %zu", i + 1);
		if (!json_is_object(p))
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward %s: %s: not an object", s->name,
					     listen, what);
		json_object_foreach ((json_t *)p, key, v) {
			if (!streq(key, "description") && !streq(key, "protocol") &&
			    !streq(key, "listen_port") && !streq(key, "target_address") &&
			    !streq(key, "target_port"))
				return lxm_error_set(err, -EINVAL, 400,
						     "network '%s': forward %s: %s: unknown key "
						     "'%s'",
						     s->name, listen, what, key);
			if (!json_is_string(v))
				return lxm_error_set(err, -EINVAL, 400,
						     "network '%s': forward %s: %s: %s: not a "
						     "string",
						     s->name, listen, what, key);
		}
		proto = json_string_value(json_object_get(p, "protocol"));
		lport = json_string_value(json_object_get(p, "listen_port"));
		taddr = json_string_value(json_object_get(p, "target_address"));
		tport = json_string_value(json_object_get(p, "target_port"));
		desc = json_string_value(json_object_get(p, "description"));
		if (!proto || (!streq(proto, "tcp") && !streq(proto, "udp")))
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward %s: %s: protocol '%s': not tcp "
					     "or udp",
					     s->name, listen, what, proto ? proto : "");
		k = lxm_ports_parse(lport, &lp, &nl);
		if (k == -ENOMEM)
			return lxm_error_set(err, k, 500, "out of memory");
		if (k < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward %s: %s: listen_port '%s': not "
					     "a port, range or list of ports from 1 to 65535 "
					     "(80, 8080-8082, 80,443)",
					     s->name, listen, what, lport ? lport : "");
		if (tport && *tport) {
			k = lxm_ports_parse(tport, &tp, &nt);
			if (k == -ENOMEM)
				return lxm_error_set(err, k, 500, "out of memory");
			if (k < 0)
				return lxm_error_set(
					err, -EINVAL, 400,
					"network '%s': forward %s: %s: target_port "
					"'%s': not a port, range or list of ports from "
					"1 to 65535",
					s->name, listen, what, tport);
			if (nt != 1 && nt != nl)
				return lxm_error_set(err, -EINVAL, 400,
						     "network '%s': forward %s: %s: target_port "
						     "'%s' has %zu ports and listen_port '%s' has "
						     "%zu: "
						     "give one target port or as many as listen "
						     "ports",
						     s->name, listen, what, tport, nt, lport, nl);
		}
		if (!taddr)
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward %s: %s: target_address is "
					     "required",
					     s->name, listen, what);
		snprintf(what + strlen(what), sizeof(what) - strlen(what), " target_address");
		k = check_target(s, listen, family, what, taddr, t, err);
		if (k < 0)
			return k;
		if (!ports_claim(used + (streq(proto, "udp") ? 65536 / 8 : 0), lp, nl, &dup))
			return lxm_error_set(
				err, -EINVAL, 400,
				"network '%s': forward %s: port %zu: listen_port '%s': "
				"%s port %u is forwarded twice",
				s->name, listen, i + 1, lport, proto, dup);
		e = json_pack("{s:s, s:s, s:s, s:s, s:s}", "description", desc ? desc : "",
			      "protocol", proto, "listen_port", lport, "target_port",
			      tport ? tport : "", "target_address", t);
		if (!e || json_array_append_new(out, e) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* Checks forward in (LXD's object: listen_address, description, config, ports) of network n and
 * builds the object stored, *ret. */
static int forward_check(struct lxmd *d, const struct net *n, const json_t *in, json_t **ret,
			 struct lxm_error **err)
{
	const struct net_spec *s = &n->s;
	const char *listen = json_string_value(json_object_get(in, "listen_address"));
	const char *desc = NULL, *key;
	_cleanup_json_ json_t *config = json_object(), *ports = NULL;
	char laddr[INET6_ADDRSTRLEN], t[INET6_ADDRSTRLEN];
	unsigned char bin[16];
	json_t *v, *cfg;
	int family, k;

	if (!config)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (!json_is_object(in))
		return lxm_error_set(err, -EINVAL, 400, "network '%s': forward: not an object",
				     s->name);
	if (!addr_parse(listen, laddr, &family, bin))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward: listen_address '%s': not an IP "
				     "address",
				     s->name, listen ? listen : "");
	json_object_foreach ((json_t *)in, key, v)
		if (!streq(key, "listen_address") && !streq(key, "description") &&
		    !streq(key, "config") && !streq(key, "ports") && !streq(key, "location"))
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward %s: unknown field '%s'",
					     s->name, laddr, key);
	if (streq(laddr, "0.0.0.0") || streq(laddr, "::"))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward: listen_address '%s': a wildcard "
				     "address cannot be forwarded; give one address of the host",
				     s->name, listen);
	if ((family == AF_INET && (bin[0] >= 224)) || (family == AF_INET6 && bin[0] == 0xff))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward: listen_address '%s': not a unicast "
				     "address",
				     s->name, listen);
	if (family == AF_INET6 && streq(laddr, "::1"))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward: listen_address '::1': IPv6 loopback "
				     "traffic cannot be routed to a bridge",
				     s->name);
	if (addr_in_cidr(family, bin, family == AF_INET6 ? s->ipv6 : s->ipv4))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward: listen_address '%s': inside the "
				     "network's own subnet (%s)",
				     s->name, listen, family == AF_INET6 ? s->ipv6 : s->ipv4);
	/* One listen address belongs to one network. */
	for (struct net *o = d->networks->list; o; o = o->next) {
		size_t i;
		json_t *fw;

		if (o == n)
			continue;
		json_array_foreach (o->s.forwards, i, fw)
			if (streq(json_string_value(json_object_get(fw, "listen_address")), laddr))
				return lxm_error_set(err, -EEXIST, 409,
						     "network '%s': forward %s: network '%s' "
						     "already forwards that address",
						     s->name, laddr, o->s.name);
	}
	v = json_object_get(in, "description");
	if (v && !json_is_null(v) && !(desc = json_string_value(v)))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward %s: description: not a string", s->name,
				     laddr);
	cfg = json_object_get(in, "config");
	if (cfg && !json_is_null(cfg) && !json_is_object(cfg))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': forward %s: config: not an object", s->name,
				     laddr);
	json_object_foreach (cfg, key, v) {
		const char *sv = json_string_value(v);

		if (!sv)
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward %s: config key '%s': not a "
					     "string",
					     s->name, laddr, key);
		if (streq(key, "target_address")) {
			if (*sv) {
				k = check_target(s, laddr, family, "config key target_address", sv,
						 t, err);
				if (k < 0)
					return k;
				if (is_loopback4(laddr))
					return lxm_error_set(
						err, -EINVAL, 400,
						"network '%s': forward %s: config key "
						"target_address: a loopback listen address "
						"takes only ports, not all its traffic",
						s->name, laddr);
				sv = t;
			}
		} else if (strncmp(key, "user.", 5) != 0) {
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward %s: unknown config key '%s'",
					     s->name, laddr, key);
		}
		if (json_object_set_new(config, key, json_string(sv)) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	k = check_ports(s, laddr, family, json_object_get(in, "ports"), &ports, err);
	if (k < 0)
		return k;
	*ret = json_pack("{s:s, s:s, s:O, s:O}", "listen_address", laddr, "description",
			 desc ? desc : "", "config", config, "ports", ports);
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* Whether the forwards of s still fit its (new) subnets: every target address inside, every
 * listen address outside. 400 naming the forward and the address otherwise. */
/* Whether target address addr of forward listen still lies in a subnet of s. */
static int target_fits(const struct net_spec *s, const char *listen, const char *addr,
		       struct lxm_error **err)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char bin[16];
	const char *cidr;
	int family;

	if (!addr || !addr_parse(addr, buf, &family, bin))
		return 0;
	cidr = family == AF_INET6 ? s->ipv6 : s->ipv4;
	if (cidr && !streq(cidr, "auto") && addr_in_cidr(family, bin, cidr))
		return 0;
	return lxm_error_set(err, -EINVAL, 400,
			     "network '%s': %s '%s': forward %s targets %s outside it; change or "
			     "delete the forward first",
			     s->name, family == AF_INET6 ? "ipv6.address" : "ipv4.address",
			     cidr ? cidr : "none", listen, addr);
}

static int forwards_fit(const struct net_spec *s, struct lxm_error **err)
{
	size_t i, j;
	json_t *fw, *p;
	int k;

	json_array_foreach (s->forwards, i, fw) {
		const char *listen = json_string_value(json_object_get(fw, "listen_address"));
		char buf[INET6_ADDRSTRLEN];
		unsigned char bin[16];
		const char *cidr;
		int family;

		if (addr_parse(listen, buf, &family, bin) &&
		    (cidr = family == AF_INET6 ? s->ipv6 : s->ipv4) && !streq(cidr, "auto") &&
		    addr_in_cidr(family, bin, cidr))
			return lxm_error_set(
				err, -EINVAL, 400,
				"network '%s': %s '%s': it holds the listen address of "
				"forward %s; change or delete the forward first",
				s->name, family == AF_INET6 ? "ipv6.address" : "ipv4.address", cidr,
				listen);
		k = target_fits(s, listen,
				json_string_value(json_object_get(json_object_get(fw, "config"),
								  "target_address")),
				err);
		if (k < 0)
			return k;
		json_array_foreach (json_object_get(fw, "ports"), j, p) {
			k = target_fits(s, listen,
					json_string_value(json_object_get(p, "target_address")),
					err);
			if (k < 0)
				return k;
		}
	}
	return 0;
}

/* The index of listen (canonical) in forwards, or -1. */
static ssize_t forward_index(const json_t *forwards, const char *listen)
{
	size_t i;
	json_t *fw;

	json_array_foreach (forwards, i, fw)
		if (streq(json_string_value(json_object_get(fw, "listen_address")), listen))
			return (ssize_t)i;
	return -1;
}

static int listen_cmp(const void *a, const void *b)
{
	const char *x = json_string_value(json_object_get(*(json_t *const *)a, "listen_address"));
	const char *y = json_string_value(json_object_get(*(json_t *const *)b, "listen_address"));

	return strcmp(x ? x : "", y ? y : "");
}

/* A new array of forwards with fw in place of the one at idx (-1: added; fw NULL: removed),
 * sorted by listen address. */
static json_t *forwards_with(const json_t *forwards, ssize_t idx, json_t *fw)
{
	size_t n = json_array_size(forwards) + 1, cnt = 0, i;
	_cleanup_free_ json_t **v = calloc(n, sizeof(*v));
	json_t *out = json_array(), *e;

	if (!v || !out) {
		json_decref(out);
		return NULL;
	}
	json_array_foreach (forwards, i, e)
		if ((ssize_t)i != idx)
			v[cnt++] = e;
	if (fw)
		v[cnt++] = fw;
	qsort(v, cnt, sizeof(*v), listen_cmp);
	for (i = 0; i < cnt; i++)
		if (json_array_append(out, v[i]) < 0) {
			json_decref(out);
			return NULL;
		}
	return out;
}

/* The network of a forward request: 404 when unknown. listen (when not NULL) in canonical form
 * into buf (400 when it is no address). */
static int forward_lookup(struct lxmd *d, const char *name, const char *listen,
			  char buf[static INET6_ADDRSTRLEN], struct net **ret,
			  struct lxm_error **err)
{
	unsigned char bin[16];
	int family;

	*ret = d->networks ? net_find(d, name) : NULL;
	if (!*ret)
		return lxm_error_set(err, -ENOENT, 404, "network '%s' not found", name);
	if (listen && !addr_parse(listen, buf, &family, bin))
		return lxm_error_set(err, -ENOENT, 404,
				     "network '%s': forward %s not found (not an IP address)", name,
				     listen);
	return 0;
}

int lxmd_network_forwards(struct lxmd *d, const char *name, json_t **ret, struct lxm_error **err)
{
	char buf[INET6_ADDRSTRLEN];
	struct net *n;
	int k = forward_lookup(d, name, NULL, buf, &n, err);

	if (k < 0 || !n)
		return k < 0 ? k : -ENOENT;
	*ret = n->s.forwards ? json_deep_copy(n->s.forwards) : json_array();
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

int lxmd_network_forward_get(struct lxmd *d, const char *name, const char *listen, json_t **ret,
			     struct lxm_error **err)
{
	char buf[INET6_ADDRSTRLEN];
	struct net *n;
	ssize_t idx;
	int k = forward_lookup(d, name, listen, buf, &n, err);

	if (k < 0 || !n)
		return k < 0 ? k : -ENOENT;
	idx = forward_index(n->s.forwards, buf);
	if (idx < 0)
		return lxm_error_set(err, -ENOENT, 404, "network '%s': forward %s not found", name,
				     buf);
	*ret = json_deep_copy(json_array_get(n->s.forwards, (size_t)idx));
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

int lxmd_network_forward_change(struct lxmd *d, const char *name, const char *listen,
				const json_t *in, enum lxmd_forward_op op, struct lxm_error **err)
{
	_cleanup_json_ json_t *fw = NULL, *copy = NULL, *next = NULL, *old = NULL;
	char buf[INET6_ADDRSTRLEN];
	struct net *n;
	ssize_t idx;
	int k;

	if (op == LXMD_FORWARD_CREATE)
		listen = json_string_value(json_object_get(in, "listen_address"));
	k = forward_lookup(d, name, op == LXMD_FORWARD_CREATE ? NULL : listen, buf, &n, err);
	if (k < 0 || !n)
		return k < 0 ? k : -ENOENT;
	if (op == LXMD_FORWARD_CREATE) {
		unsigned char bin[16];
		int family;

		if (!addr_parse(listen, buf, &family, bin))
			return lxm_error_set(err, -EINVAL, 400,
					     "network '%s': forward: listen_address '%s': not an "
					     "IP address",
					     name, listen ? listen : "");
	}
	if (d->networks->busy)
		return lxm_error_set(err, -EBUSY, 409,
				     "network '%s': forward %s: another network change is in "
				     "progress; try again",
				     name, buf);
	idx = forward_index(n->s.forwards, buf);
	if (op == LXMD_FORWARD_CREATE && idx >= 0)
		return lxm_error_set(err, -EEXIST, 409,
				     "network '%s': a forward of listen address %s already exists",
				     name, buf);
	if (op != LXMD_FORWARD_CREATE && idx < 0)
		return lxm_error_set(err, -ENOENT, 404, "network '%s': forward %s not found", name,
				     buf);
	if (op != LXMD_FORWARD_DELETE) {
		/* The listen address is the forward's name: the URL's wins over the body's. */
		if (!(copy = json_deep_copy(in)) ||
		    json_object_set_new(copy, "listen_address", json_string(buf)) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		k = forward_check(d, n, copy, &fw, err);
		if (k < 0)
			return k;
	}
	next = forwards_with(n->s.forwards, idx, fw);
	if (!next)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	old = n->s.forwards;
	n->s.forwards = json_incref(next);
	if (!n->cause && (k = nft_now(d, err)) < 0) {
		json_decref(n->s.forwards);
		n->s.forwards = TAKE_PTR(old);
		return lxm_error_prefix(err, "network '%s': forward %s", name, buf);
	}
	k = op == LXMD_FORWARD_DELETE
		    ? lxm_db_network_forward_delete(d->db, name, buf, err)
		    : lxm_db_network_forward_put(d->db, name, fw, op == LXMD_FORWARD_CREATE, err);
	if (k < 0) {
		_cleanup_error_ struct lxm_error *e2 = NULL;

		json_decref(n->s.forwards);
		n->s.forwards = TAKE_PTR(old);
		if (!n->cause && nft_now(d, &e2) < 0)
			log_error("network '%s': forward %s: restore the rules: %s", name, buf,
				  e2->msg);
		return k;
	}
	log_info("network '%s': forward %s %s", name, buf,
		 op == LXMD_FORWARD_CREATE    ? "created"
		 : op == LXMD_FORWARD_REPLACE ? "updated"
					      : "deleted");
	return 0;
}

/* ---- foreign forward drop policies ---- */

void lxmd_networks_check_forward_drop(struct lxmd *d, const char *network)
{
	_cleanup_error_ struct lxm_error *e = NULL;
	_cleanup_free_ char *where = NULL;
	int k;

	if (!d->networks)
		return;
	k = lxm_nft_forward_drop(&where, &e);
	if (k < 0) {
		log_warn("networks: check other nftables tables for a forward drop policy: %s",
			 e ? e->msg : "failed");
		return;
	}
	if (where &&
	    (network || !d->networks->forward_drop || !streq(where, d->networks->forward_drop)))
		log_warn("network%s%s%s: %s %s a forward hook with policy drop: traffic routed to "
			 "and from lxm's bridges (NAT to the outside, network forwards) is dropped "
			 "there unless that table accepts it; lxm's own table inet %s cannot "
			 "override another table's drop (accept it there, e.g. for Docker: "
			 "iptables -I DOCKER-USER -i <bridge> -j ACCEPT and -o <bridge>)",
			 network ? " '" : "s", network ? network : "", network ? "'" : "", where,
			 strstr(where, ", ") ? "have" : "has", d->networks->nft_table);
	free(d->networks->forward_drop);
	d->networks->forward_drop = TAKE_PTR(where);
}

/* ---- life cycle ---- */

int lxmd_networks_init(struct lxmd *d, struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	_cleanup_error_ struct lxm_error *nerr = NULL;
	_cleanup_free_ struct net_spec *specs = NULL;
	struct net **tail;
	char tag[LXM_CGROUP_TAG_SIZE];
	size_t cnt = 0, ok = 0;
	int k;

	d->networks = calloc(1, sizeof(*d->networks));
	if (!d->networks)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	/* The same tag as the cgroups: the default root keeps the plain name. */
	k = lxm_cgroup_owner_tag(d->cfg.root, tag);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "set up networks: nftables table name");
	snprintf(d->networks->nft_table, sizeof(d->networks->nft_table), "lxm%s%s", *tag ? "_" : "",
		 tag);
	k = lxm_db_network_names(d->db, &names, err);
	if (k < 0)
		return lxm_error_prefix(err, "set up networks");
	if (k == 0)
		return 0;
	tail = &d->networks->list;
	for (char **p = names; *p; p++) {
		_cleanup_db_network_ struct lxm_db_network *row = NULL;
		_cleanup_error_ struct lxm_error *e = NULL;
		struct net_spec s = { 0 };
		struct net *n;

		if (lxm_db_network_get(d->db, *p, &row, &e) < 0 ||
		    config_check(*p, row->config, false, &s, &e) < 0 || !(s.name = strdup(*p)) ||
		    lxm_db_network_forwards(d->db, *p, &s.forwards, &e) < 0) {
			log_error("network '%s': %s", *p, e ? e->msg : "out of memory");
			spec_clear(&s);
			continue;
		}
		n = net_new(d, &s);
		spec_clear(&s);
		if (!n)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		*tail = n;
		tail = &n->next;
		cnt++;
	}
	specs = calloc(cnt + 1, sizeof(*specs));
	if (!specs)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (struct net *n = d->networks->list; n; n = n->next) {
		_cleanup_error_ struct lxm_error *e = NULL;
		_cleanup_strv_ char **taken = calloc(2 * cnt + 1, sizeof(char *));
		size_t nt = 0;

		if (!taken)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		for (struct net *o = d->networks->list; o; o = o->next) {
			if (o != n && o->s.ipv4 && !streq(o->s.ipv4, "auto"))
				taken[nt++] = strdup(o->s.ipv4);
			if (o != n && o->s.ipv6 && !streq(o->s.ipv6, "auto"))
				taken[nt++] = strdup(o->s.ipv6);
		}
		k = lxm_mkdir_p(n->dir, 0755);
		if (k < 0)
			lxm_error_setx(&e, k, 500, "network '%s': create %s", n->s.name, n->dir);
		else
			dnsmasq_kill_stale(n);
		if (k < 0 || host_setup(&n->s, taken, &e) < 0) {
			log_error("%s", e->msg);
			n->cause = strdup(e->msg);
			continue;
		}
		specs[ok++] = n->s;
	}
	k = host_nft(d->networks->nft_table, specs, ok, NULL, &nerr);
	if (k < 0)
		log_error("networks: %s", nerr->msg);
	lxmd_networks_check_forward_drop(d, NULL);
	for (struct net *n = d->networks->list; n; n = n->next) {
		_cleanup_error_ struct lxm_error *e = NULL;

		if (n->cause)
			continue;
		if (leases_write_now(d, n, &e) < 0)
			log_error("network '%s': %s", n->s.name, e->msg);
		dnsmasq_start(n);
	}
	return 0;
}

void lxmd_networks_stop(struct lxmd *d)
{
	if (!d->networks)
		return;
	while (d->networks->list)
		net_remove(d, d->networks->list);
}

void lxmd_networks_fini(struct lxmd *d)
{
	struct net *n;

	if (!d->networks)
		return;
	lxmd_networks_stop(d);
	/* Handles still open (init failed before the loop ran) keep their memory. */
	while ((n = d->networks->dying)) {
		d->networks->dying = n->next;
		if (!n->proc_open && !n->timer_open)
			net_free(n);
	}
	free(d->networks->forward_drop);
	json_decref(d->networks->proxies);
	free(TAKE_PTR(d->networks));
}
