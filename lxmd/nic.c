/* Nic devices: veth pairs into containers, see nic.h. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "network/network.h"
#include "networks.h"
#include "nic.h"
#include "operations.h"
#include "util.h"

/* The keys a nic device may have. */
static const char *const nic_keys[] = {
	"type",	     "nictype", "network",	"parent",	  "name",	   "hwaddr",
	"host_name", "mtu",	"ipv4.address", "limits.ingress", "limits.egress",
};

static const char *str(const json_t *dev, const char *key)
{
	const char *v = json_string_value(json_object_get(dev, key));

	return v && *v ? v : NULL;
}

/* A Linux interface name: 1 to 15 characters, no '/', ':' or blank, not "." or "..". */
static bool ifname_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 15 || streq(s, ".") || streq(s, ".."))
		return false;
	for (const char *c = s; *c; c++)
		if (*c == '/' || *c == ':' || isspace((unsigned char)*c) ||
		    !isprint((unsigned char)*c))
			return false;
	return true;
}

/* "xx:xx:xx:xx:xx:xx" in hex, a unicast address. */
static bool hwaddr_valid(const char *s)
{
	unsigned b[6];
	int n = 0;

	if (strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &n) !=
		    6 ||
	    n != 17)
		return false;
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			return false;
	return (b[0] & 1) == 0;
}

int lxmd_nic_parse(const char *name, const json_t *dev, struct lxmd_nic *ret,
		   struct lxm_error **err)
{
	const char *type = str(dev, "type"), *nictype = str(dev, "nictype"), *mtu = str(dev, "mtu");
	struct lxmd_nic k = { .name = name };
	struct in_addr a;
	const char *key;
	json_t *v;

	if (!type || !streq(type, "nic"))
		return 0;
	json_object_foreach ((json_t *)dev, key, v) {
		bool known = false;

		for (size_t i = 0; i < ARRAY_SIZE(nic_keys) && !known; i++)
			known = streq(key, nic_keys[i]);
		if (!known)
			return lxm_error_set(err, -EINVAL, 400,
					     "nic device '%s': unknown key '%s' (known: nictype, "
					     "network, parent, name, hwaddr, host_name, mtu, "
					     "ipv4.address, limits.ingress, limits.egress)",
					     name, key);
	}
	k.network = str(dev, "network");
	k.parent = str(dev, "parent");
	if (k.network && (nictype || k.parent))
		return lxm_error_set(err, -EINVAL, 400,
				     "nic device '%s': key '%s' cannot go with network=%s (a "
				     "managed network sets its own bridge)",
				     name, nictype ? "nictype" : "parent", k.network);
	if (!k.network) {
		if (!nictype)
			return lxm_error_set(err, -EINVAL, 400,
					     "nic device '%s': neither network= (a managed "
					     "network) nor nictype=bridged with parent= given",
					     name);
		if (!streq(nictype, "bridged"))
			return lxm_error_set(
				err, -EINVAL, 400,
				"nic device '%s': key 'nictype': '%s' is not supported "
				"(only bridged)",
				name, nictype);
		if (!k.parent)
			return lxm_error_set(
				err, -EINVAL, 400,
				"nic device '%s': key 'parent' missing: nictype=bridged "
				"needs the bridge to join",
				name);
		if (!ifname_valid(k.parent))
			return lxm_error_set(err, -EINVAL, 400,
					     "nic device '%s': key 'parent': '%s' is not an "
					     "interface name",
					     name, k.parent);
	}
	k.inner = str(dev, "name") ? str(dev, "name") : name;
	if (!ifname_valid(k.inner))
		return lxm_error_set(err, -EINVAL, 400,
				     "nic device '%s': key 'name': '%s' is not an interface name "
				     "(1 to 15 characters, no '/', ':' or blanks)",
				     name, k.inner);
	k.hwaddr = str(dev, "hwaddr");
	if (k.hwaddr && !hwaddr_valid(k.hwaddr))
		return lxm_error_set(err, -EINVAL, 400,
				     "nic device '%s': key 'hwaddr': '%s' is not a unicast MAC "
				     "address (xx:xx:xx:xx:xx:xx)",
				     name, k.hwaddr);
	k.host_name = str(dev, "host_name");
	if (k.host_name && !ifname_valid(k.host_name))
		return lxm_error_set(err, -EINVAL, 400,
				     "nic device '%s': key 'host_name': '%s' is not an interface "
				     "name",
				     name, k.host_name);
	if (mtu) {
		char *end;
		unsigned long m;

		errno = 0;
		m = strtoul(mtu, &end, 10);
		if (!isdigit((unsigned char)mtu[0]) || *end || errno || m < 68 || m > 65535)
			return lxm_error_set(
				err, -EINVAL, 400,
				"nic device '%s': key 'mtu': '%s' is not an MTU (68 to "
				"65535)",
				name, mtu);
		k.mtu = (unsigned)m;
	}
	k.ipv4 = str(dev, "ipv4.address");
	if (k.ipv4 && inet_pton(AF_INET, k.ipv4, &a) != 1)
		return lxm_error_set(err, -EINVAL, 400,
				     "nic device '%s': key 'ipv4.address': '%s' is not an IPv4 "
				     "address",
				     name, k.ipv4);
	if (k.ipv4 && !k.network)
		return lxm_error_set(err, -EINVAL, 400,
				     "nic device '%s': key 'ipv4.address' needs network= (a static "
				     "lease of a managed network)",
				     name);
	for (int i = 0; i < 2; i++) {
		const char *lim = i == 0 ? "limits.ingress" : "limits.egress",
			   *rate = str(dev, lim);
		uint64_t *bps = i == 0 ? &k.ingress : &k.egress;
		int r;

		if (!rate)
			continue;
		r = lxm_parse_bitrate(rate, bps);
		if (r == -ERANGE)
			return lxm_error_set(
				err, -EINVAL, 400,
				"nic device '%s': key '%s': '%s' is out of range (8bit "
				"to 17Gbit)",
				name, lim, rate);
		if (r < 0)
			return lxm_error_set(
				err, -EINVAL, 400,
				"nic device '%s': key '%s': '%s' is not a bit rate (a "
				"number and a unit: bit, kbit, Mbit, Gbit, Tbit, Kibit, "
				"Mibit, Gibit or Tibit, as in 10Mbit)",
				name, lim, rate);
	}
	*ret = k;
	return 1;
}

/* ---- the work: veths to remove and to create ---- */

/* One veth to create (or, for a removal, the device's veth as it was, to create it again when
 * the change fails). */
struct nic_op {
	struct lxm_spec_nic nic; /* the veth; for a removal, bridge, hwaddr or host_name may be NULL
				    (they could not be resolved) */
	char *network;		 /* its managed network, or NULL */
	bool done;		 /* the worker did it */
};

/* A hot-plug: the work on the thread pool. */
struct nic_job {
	uv_work_t work;		     /* the thread pool's request */
	struct lxmd *d;		     /* the daemon */
	char *instance;		     /* the instance */
	pid_t pid;		     /* its init: the network namespace */
	struct nic_op *del, *add;    /* veths to remove, then to create */
	size_t n_del, n_add;	     /* entries */
	struct lxm_operation *op;    /* the hot-plug's operation */
	struct lxm_db_instance *old; /* the instance as recorded before the change */
	struct lxm_error *err;	     /* the worker's failure */
};

static void nic_ops_free(struct nic_op *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		lxm_spec_nic_clear(&v[i].nic);
		free(v[i].network);
	}
	free(v);
}

static void nic_job_free(struct nic_job *j)
{
	if (!j)
		return;
	free(j->instance);
	nic_ops_free(j->del, j->n_del);
	nic_ops_free(j->add, j->n_add);
	lxm_db_instance_free(j->old);
	lxm_error_free(j->err);
	free(j);
}

void lxmd_nics_hotplug_free(struct lxmd_nic_hotplug *plan)
{
	nic_job_free((struct nic_job *)plan);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nic_job *, nic_job_free)

/* Sets config's volatile.<dev>.<what> to value. */
static int set_volatile(json_t *config, const char *dev, const char *what, const char *value)
{
	_cleanup_free_ char *key = NULL;

	if (asprintf(&key, "volatile.%s.%s", dev, what) < 0)
		return -ENOMEM;
	return json_object_set_new(config, key, json_string(value)) < 0 ? -ENOMEM : 0;
}

static bool is_vm(const struct lxm_db_instance *inst)
{
	return inst->type && streq(inst->type, "virtual-machine");
}

static const char *get_volatile(const json_t *config, const char *dev, const char *what)
{
	_cleanup_free_ char *key = NULL;

	if (asprintf(&key, "volatile.%s.%s", dev, what) < 0)
		return NULL;
	return str(config, key);
}

/* Fills e for nic k: its bridge, and its MAC and host name from the device, else from config's
 * volatile keys, else new ones recorded there (*changed): a generated host name is "tap…" for a
 * VM (vm, LXD's names) and "veth…" for a container. With resolve false (putting back a removed
 * nic), a bridge that cannot be found leaves e->bridge NULL and nothing is generated. */
static int nic_op_fill(struct lxmd *d, const struct lxmd_nic *k, json_t *config, bool vm,
		       bool resolve, struct nic_op *e, bool *changed, struct lxm_error **err)
{
	const char *bridge = k->parent, *hw = k->hwaddr, *host = k->host_name;
	char buf[18], hex[9], gen[16];
	int r;

	if (k->network) {
		r = lxmd_network_bridge(d, k->network, &bridge, resolve ? err : NULL);
		if (r < 0 && resolve)
			return lxm_error_prefix(err, "nic device '%s'", k->name);
		if (r < 0)
			bridge = NULL;
	} else if (resolve && !lxm_link_exists(bridge)) {
		return lxm_error_set(err, -ENOENT, 400,
				     "nic device '%s': parent bridge '%s' does not exist", k->name,
				     bridge);
	}
	if (!hw)
		hw = get_volatile(config, k->name, "hwaddr");
	if (!hw && resolve) {
		lxm_random_hwaddr(buf);
		if (set_volatile(config, k->name, "hwaddr", buf) < 0)
			return -ENOMEM;
		hw = get_volatile(config, k->name, "hwaddr");
		*changed = true;
	}
	if (!host)
		host = get_volatile(config, k->name, "host_name");
	if (!host && resolve) {
		/* A fresh name that no link of the host has. */
		for (int tries = 0; tries < 16; tries++) {
			if ((r = lxm_random_hex(hex, 4)) < 0)
				return lxm_error_setx(err, r, 500, "nic device '%s': random name",
						      k->name);
			snprintf(gen, sizeof(gen), "%s%s", vm ? "tap" : "veth", hex);
			if (!lxm_link_exists(gen))
				break;
		}
		if (set_volatile(config, k->name, "host_name", gen) < 0)
			return -ENOMEM;
		host = get_volatile(config, k->name, "host_name");
		*changed = true;
	}
	memset(e, 0, sizeof(*e));
	e->nic.mtu = k->mtu;
	e->nic.ingress = k->ingress;
	e->nic.egress = k->egress;
	if (!(e->nic.device = strdup(k->name)) || !(e->nic.inner = strdup(k->inner)) ||
	    (k->network && !(e->network = strdup(k->network))) ||
	    (bridge && !(e->nic.bridge = strdup(bridge))) ||
	    (hw && !(e->nic.hwaddr = strdup(hw))) || (host && !(e->nic.host_name = strdup(host))))
		return -ENOMEM;
	return 0;
}

static int ops_grow(struct nic_op **v, size_t *n, struct nic_op **ret)
{
	struct nic_op *nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	*ret = &nv[*n];
	memset(*ret, 0, sizeof(**ret));
	(*n)++;
	return 0;
}

/* Whether device name of devs is a nic that other has the same. */
static bool nic_same_in(const char *name, const json_t *dev, const json_t *other)
{
	return json_equal(dev, json_object_get(other, name));
}

/* The nics of xdevices must name different interfaces inside. */
static int check_inner_unique(const json_t *xdevices, struct lxm_error **err)
{
	const char *a, *b;
	json_t *x, *y;

	json_object_foreach ((json_t *)xdevices, a, x) {
		struct lxmd_nic p, q;

		if (lxmd_nic_parse(a, x, &p, NULL) != 1)
			continue;
		json_object_foreach ((json_t *)xdevices, b, y)
			if (strcmp(a, b) < 0 && lxmd_nic_parse(b, y, &q, NULL) == 1 &&
			    streq(p.inner, q.inner))
				return lxm_error_set(err, -EINVAL, 400,
						     "nic devices '%s' and '%s' both name the "
						     "interface '%s' inside",
						     a, b, p.inner);
	}
	return 0;
}

/* Tells the managed networks of new nics with a MAC just recorded. */
static void leases_changed(struct lxmd *d, const struct nic_op *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool seen = false;

		if (!v[i].network)
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = v[j].network && streq(v[j].network, v[i].network);
		if (!seen)
			lxmd_network_leases_changed(d, v[i].network);
	}
}

static void nic_work(uv_work_t *w)
{
	struct nic_job *j = w->data;
	struct lxm_error *e2 = NULL;

	for (size_t i = 0; i < j->n_del && !j->err; i++) {
		const struct lxm_spec_nic *n = &j->del[i].nic;

		j->del[i].done = lxm_link_delete_in(j->pid, n->inner, &j->err) >= 0;
		if (j->err)
			lxm_error_prefix(&j->err, "nic device '%s': remove %s inside", n->device,
					 n->inner);
	}
	for (size_t i = 0; i < j->n_add && !j->err; i++)
		j->add[i].done = lxmd_nic_veth_create(&j->add[i].nic, j->pid, &j->err) >= 0;
	if (!j->err)
		return;
	/* Put back what was there. */
	for (size_t i = 0; i < j->n_add; i++)
		if (j->add[i].done && lxm_link_delete(j->add[i].nic.host_name, &e2) < 0)
			lxm_error_free(TAKE_PTR(e2));
	for (size_t i = 0; i < j->n_del; i++) {
		const struct lxm_spec_nic *n = &j->del[i].nic;

		if (j->del[i].done && n->bridge && n->hwaddr && n->host_name &&
		    lxmd_nic_veth_create(n, j->pid, &e2) < 0)
			lxm_error_free(TAKE_PTR(e2));
	}
}

static void nic_done(uv_work_t *w, int status)
{
	struct nic_job *j = w->data;
	struct lxm_error *e2 = NULL;

	if (status < 0 && !j->err)
		lxm_error_set(&j->err, -ECANCELED, 500, "cancelled");
	if (j->err) {
		lxm_error_prefix(&j->err, "update instance '%s': hot-plug", j->instance);
		if (lxm_db_instance_update(j->d->db, j->instance, j->old, &e2) < 0) {
			log_error(
				"instance '%s': put back its devices after a failed nic hot-plug: "
				"%s",
				j->instance, e2->msg);
			lxm_error_free(e2);
		}
	} else {
		leases_changed(j->d, j->add, j->n_add);
	}
	lxm_operation_finish(j->op, TAKE_PTR(j->err));
	nic_job_free(j);
}

int lxmd_nics_to_spec(struct lxmd *d, struct lxm_db_instance *inst, const json_t *xdevices,
		      struct lxm_container_spec *spec, struct lxm_error **err)
{
	struct nic_op *v = NULL;
	size_t n = 0;
	bool changed = false;
	const char *name;
	json_t *dev;
	int k = 0;

	if (!inst->config && !(inst->config = json_object()))
		return -ENOMEM;
	json_object_foreach ((json_t *)xdevices, name, dev) {
		struct lxmd_nic nic;
		struct nic_op *e;

		k = lxmd_nic_parse(name, dev, &nic, err);
		if (k < 0)
			goto out;
		if (k == 0)
			continue;
		if ((k = ops_grow(&v, &n, &e)) < 0 ||
		    (k = nic_op_fill(d, &nic, inst->config, is_vm(inst), true, e, &changed, err)) <
			    0)
			goto out;
	}
	k = 0;
	if (n == 0)
		goto out;
	if ((k = check_inner_unique(xdevices, err)) < 0)
		goto out;
	if (changed) {
		k = lxm_db_instance_update(d->db, inst->name, inst, err);
		if (k < 0) {
			lxm_error_prefix(err, "record its nics' volatile keys");
			goto out;
		}
		/* The network's DHCP learns the MAC (static leases) before the container asks. */
		leases_changed(d, v, n);
	}
	spec->nics = calloc(n, sizeof(*spec->nics));
	if (!spec->nics) {
		k = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		spec->nics[i] = v[i].nic;
		memset(&v[i].nic, 0, sizeof(v[i].nic));
	}
	spec->n_nics = n;
out:
	nic_ops_free(v, n);
	if (k < 0 && err && *err)
		lxm_error_prefix(err, "start '%s'", inst->name);
	return k;
}

int lxmd_nics_hotplug_plan(struct lxmd *d, struct lxm_db_instance *inst, const json_t *new_xdevices,
			   struct lxmd_nic_hotplug **ret, struct lxm_error **err)
{
	_cleanup_(nic_job_freep) struct nic_job *j = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL, *old_config = NULL;
	bool changed = false;
	const char *name;
	json_t *dev;
	pid_t pid;
	int k;

	*ret = NULL;
	if (lxmd_instance_running(d, inst->name, &pid, NULL, NULL) != 0)
		return 0;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->instance = strdup(inst->name)))
		return -ENOMEM;
	j->d = d;
	j->pid = pid;
	if ((k = lxm_db_instance_get(d->db, inst->name, &j->old, err)) < 0 ||
	    (k = lxmd_instance_expand(d, j->old, &config, &devices, err)) < 0)
		return k;
	/* Removed or changed nics, as they were (their volatile keys from the recorded config). */
	old_config = j->old->config ? json_deep_copy(j->old->config) : json_object();
	if (!old_config)
		return -ENOMEM;
	json_object_foreach (devices, name, dev) {
		struct lxmd_nic nic;
		struct nic_op *e;

		if (lxmd_nic_parse(name, dev, &nic, NULL) != 1 ||
		    nic_same_in(name, dev, new_xdevices))
			continue;
		if ((k = ops_grow(&j->del, &j->n_del, &e)) < 0 ||
		    (k = nic_op_fill(d, &nic, old_config, is_vm(inst), false, e, &changed, NULL)) <
			    0)
			return k;
	}
	if (!inst->config && !(inst->config = json_object()))
		return -ENOMEM;
	json_object_foreach ((json_t *)new_xdevices, name, dev) {
		struct lxmd_nic nic;
		struct nic_op *e;

		k = lxmd_nic_parse(name, dev, &nic, err);
		if (k < 0)
			return lxm_error_prefix(err, "instance '%s'", inst->name);
		if (k == 0 || nic_same_in(name, dev, devices))
			continue;
		if ((k = ops_grow(&j->add, &j->n_add, &e)) < 0)
			return k;
		k = nic_op_fill(d, &nic, inst->config, is_vm(inst), true, e, &changed, err);
		if (k < 0)
			return lxm_error_prefix(err, "hot-plug");
	}
	if (j->n_add + j->n_del == 0)
		return 0;
	if ((k = check_inner_unique(new_xdevices, err)) < 0)
		return lxm_error_prefix(err, "instance '%s'", inst->name);
	*ret = (struct lxmd_nic_hotplug *)TAKE_PTR(j);
	return 0;
}

void lxmd_nics_hotplug_run(struct lxmd *d, struct lxmd_nic_hotplug *plan, struct lxm_operation *op)
{
	struct nic_job *j = (struct nic_job *)plan;
	int k;

	j->op = op;
	j->work.data = j;
	k = uv_queue_work(d->loop, &j->work, nic_work, nic_done);
	if (k < 0) {
		struct lxm_error *err = NULL;

		lxm_error_set(&err, -EIO, 500, "update instance '%s': hot-plug: queue work: %s",
			      j->instance, uv_strerror(k));
		lxm_db_instance_update(d->db, j->instance, j->old, NULL);
		lxm_operation_finish(op, err);
		nic_job_free(j);
	}
}
