/* /1.0/networks: managed bridge networks (create, read, update, rename, delete, their leases and
 * state). The host work is lxmd/networks.c's; this file speaks LXD's objects. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "json.h"
#include "networks.h"
#include "server.h"
#include "util.h"

static int network_json(struct lxmd *d, const struct lxm_db_network *n, json_t **ret,
			struct lxm_error **err)
{
	const char *status = lxmd_network_status(d, n->name, NULL);
	json_t *used_by = NULL, *j;
	int k;

	k = lxmd_network_used_by(d, n->name, &used_by, err);
	if (k < 0)
		return lxm_error_prefix(err, "network '%s'", n->name);
	j = json_pack("{s:s, s:s, s:s, s:b, s:o, s:s, s:o, s:[s]}", "name", n->name, "description",
		      n->description ? n->description : "", "type", n->type ? n->type : "bridge",
		      "managed", true, "config", n->config ? json_incref(n->config) : json_object(),
		      "status", status ? status : "Unknown", "used_by", used_by, "locations",
		      "none");
	if (!j)
		return -ENOMEM;
	*ret = j;
	return 0;
}

static int network_object(struct lxmd_request *r, const char *name, json_t **ret,
			  struct lxm_error **err)
{
	_cleanup_db_network_ struct lxm_db_network *n = NULL;
	int k;

	k = lxm_db_network_get(r->d->db, name, &n, err);
	return k < 0 ? k : network_json(r->d, n, ret, err);
}

int lxmd_api_networks_get(struct lxmd_request *r, struct lxm_error **err)
{
	return lxmd_list_collection(r, "/1.0/networks", "networks", lxm_db_network_names,
				    network_object, true, err);
}

/* Runs call (a job with done callback lxmd_deferred_done and userdata dr) and defers r's answer
 * to it. */
#define DEFER(r, name, action, call)                                                               \
	do {                                                                                       \
		struct lxmd_deferred *dr = lxmd_deferred_new("/1.0/networks", name, action);       \
		int k_;                                                                            \
                                                                                                   \
		if (!dr)                                                                           \
			return -ENOMEM;                                                            \
		k_ = (call);                                                                       \
		if (k_ < 0) {                                                                      \
			lxmd_deferred_free(dr);                                                    \
			return k_;                                                                 \
		}                                                                                  \
		lxmd_deferred_attach(r, dr);                                                       \
		return 0;                                                                          \
	} while (0)

/* ---- create, read, update, rename, delete ---- */

int lxmd_api_networks_post(struct lxmd_request *r, struct lxm_error **err)
{
	const char *name = NULL, *type = NULL, *desc = NULL;
	json_t *config = NULL;
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400, "create network: request body is empty");
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "type", &type, err)) < 0 ||
	    (k = lxmd_body_desc_config(r->body, &desc, &config, err)) < 0)
		return lxm_error_prefix(err, "create network");
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400, "create network: no name given");
	if (type && *type && !streq(type, "bridge"))
		return lxm_error_set(err, -EINVAL, 400,
				     "create network '%s': type '%s' is not supported (bridge)",
				     name, type);
	DEFER(r, name, "network-created",
	      lxmd_network_create(r->d, name, desc, config, lxmd_deferred_done, dr, err));
}

int lxmd_api_network_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_network_ struct lxm_db_network *n = NULL;
	json_t *j = NULL;
	char etag[65];
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_network_get(r->d->db, r->args[0], &n, err)) < 0 ||
	    (k = network_json(r->d, n, &j, err)) < 0)
		return k;
	if (lxmd_etag_config(n->description, n->config, etag) < 0) {
		json_decref(j);
		return -ENOMEM;
	}
	return lxmd_respond_sync(r, j, etag);
}

/* PUT replaces description and config; PATCH merges config into the network's and replaces the
 * description when given. */
static int network_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_db_network_ struct lxm_db_network *n = NULL;
	_cleanup_json_ json_t *config = NULL;
	const char *desc = NULL;
	json_t *in = NULL;
	char etag[65];
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "update network '%s': request body is empty", r->args[0]);
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_network_get(r->d->db, r->args[0], &n, err)) < 0)
		return k;
	if ((k = lxmd_etag_config(n->description, n->config, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0 ||
	    (k = lxmd_body_desc_config(r->body, &desc, &in, err)) < 0)
		return lxm_error_prefix(err, "update network '%s'", n->name);
	if ((k = lxmd_update_config(patch, n->description, n->config, &desc, in, &config)) < 0)
		return k;
	DEFER(r, n->name, "network-updated",
	      lxmd_network_update(r->d, n->name, desc, config, lxmd_deferred_done, dr, err));
}

int lxmd_api_network_put(struct lxmd_request *r, struct lxm_error **err)
{
	return network_update(r, false, err);
}

int lxmd_api_network_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return network_update(r, true, err);
}

int lxmd_api_network_post(struct lxmd_request *r, struct lxm_error **err)
{
	const char *name = NULL;
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "rename network '%s': request body is empty", r->args[0]);
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "name", &name, err)) < 0)
		return lxm_error_prefix(err, "rename network '%s'", r->args[0]);
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400, "rename network '%s': no new name given",
				     r->args[0]);
	DEFER(r, name, "network-renamed",
	      lxmd_network_rename(r->d, r->args[0], name, lxmd_deferred_done, dr, err));
}

int lxmd_api_network_delete(struct lxmd_request *r, struct lxm_error **err)
{
	int k;

	if ((k = lxmd_query_project(r, err)) < 0)
		return k;
	DEFER(r, r->args[0], "network-deleted",
	      lxmd_network_delete(r->d, r->args[0], lxmd_deferred_done, dr, err));
}

/* ---- leases and state ---- */

int lxmd_api_network_leases_get(struct lxmd_request *r, struct lxm_error **err)
{
	json_t *j = NULL;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxmd_network_leases(r->d, r->args[0], &j, err)) < 0)
		return k;
	return lxmd_respond_sync(r, j, NULL);
}

static json_int_t sys_counter(const char *link, const char *what)
{
	_cleanup_free_ char *path = NULL, *s = NULL;

	if (asprintf(&path, "/sys/class/net/%s/%s", link, what) < 0 ||
	    lxm_read_file(path, &s, NULL) < 0)
		return 0;
	return (json_int_t)strtoll(s, NULL, 10);
}

static char *sys_string(const char *link, const char *what)
{
	_cleanup_free_ char *path = NULL;
	char *s = NULL;

	if (asprintf(&path, "/sys/class/net/%s/%s", link, what) < 0 ||
	    lxm_read_file(path, &s, NULL) < 0)
		return NULL;
	s[strcspn(s, "\n")] = '\0';
	return s;
}

static int prefix_len(const struct sockaddr *mask)
{
	const unsigned char *b;
	size_t len;
	int n = 0;

	if (!mask)
		return 0;
	if (mask->sa_family == AF_INET) {
		b = (const unsigned char *)&((const struct sockaddr_in *)mask)->sin_addr;
		len = 4;
	} else {
		b = (const unsigned char *)&((const struct sockaddr_in6 *)mask)->sin6_addr;
		len = 16;
	}
	for (size_t i = 0; i < len; i++)
		n += __builtin_popcount(b[i]);
	return n;
}

int lxmd_api_network_state_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_json_ json_t *addrs = json_array();
	_cleanup_free_ char *hwaddr = NULL, *oper = NULL;
	const char *bridge;
	struct ifaddrs *ifa = NULL;
	json_t *j;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxmd_network_bridge(r->d, r->args[0], &bridge, err)) < 0)
		return k;
	if (!addrs)
		return -ENOMEM;
	if (getifaddrs(&ifa) < 0)
		return lxm_error_setx(err, -errno, 500, "network '%s': list addresses", r->args[0]);
	for (struct ifaddrs *a = ifa; a; a = a->ifa_next) {
		char buf[INET6_ADDRSTRLEN], mask[16];
		int fam;

		if (!a->ifa_addr || !streq(a->ifa_name, bridge))
			continue;
		fam = a->ifa_addr->sa_family;
		if (fam != AF_INET && fam != AF_INET6)
			continue;
		inet_ntop(fam,
			  fam == AF_INET ? (void *)&((struct sockaddr_in *)a->ifa_addr)->sin_addr
					 : (void *)&((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr,
			  buf, sizeof(buf));
		snprintf(mask, sizeof(mask), "%d", prefix_len(a->ifa_netmask));
		json_array_append_new(
			addrs,
			json_pack("{s:s, s:s, s:s, s:s}", "family",
				  fam == AF_INET ? "inet" : "inet6", "address", buf, "netmask",
				  mask, "scope",
				  fam == AF_INET6 && !strncmp(buf, "fe80", 4) ? "link" : "global"));
	}
	freeifaddrs(ifa);
	hwaddr = sys_string(bridge, "address");
	oper = sys_string(bridge, "operstate");
	j = json_pack("{s:O, s:{s:I, s:I, s:I, s:I}, s:s, s:I, s:s, s:s}", "addresses", addrs,
		      "counters", "bytes_received", sys_counter(bridge, "statistics/rx_bytes"),
		      "bytes_sent", sys_counter(bridge, "statistics/tx_bytes"), "packets_received",
		      sys_counter(bridge, "statistics/rx_packets"), "packets_sent",
		      sys_counter(bridge, "statistics/tx_packets"), "hwaddr", hwaddr ? hwaddr : "",
		      "mtu", sys_counter(bridge, "mtu"), "state",
		      oper && streq(oper, "down") ? "down" : "up", "type", "broadcast");
	if (!j)
		return -ENOMEM;
	/* Not an LXD field: other tables' forward drop policies that may drop this network's
	 * routed traffic (lxm's own accept rules cannot override them). */
	lxmd_networks_check_forward_drop(r->d, NULL);
	if (lxmd_networks_forward_drop(r->d) &&
	    json_object_set_new(j, "forward_drop", json_string(lxmd_networks_forward_drop(r->d))) <
		    0) {
		json_decref(j);
		return -ENOMEM;
	}
	return lxmd_respond_sync(r, j, NULL);
}

/* ---- forwards ---- */

/* The lifecycle event of a forward change (network-forward-created, -updated, -deleted). */
static void forward_lifecycle(struct lxmd_request *r, const char *action, const char *listen)
{
	_cleanup_free_ char *url = NULL;

	if (listen && asprintf(&url, "/1.0/networks/%s/forwards/%s", r->args[0], listen) >= 0)
		lxm_events_lifecycle(r->d->events, action, url, NULL);
}

/* The forward as LXD shows it: with its location ("none": no cluster). */
static json_t *forward_view(json_t *fw)
{
	if (!fw || json_object_set_new(fw, "location", json_string("none")) < 0) {
		json_decref(fw);
		return NULL;
	}
	return fw;
}

int lxmd_api_network_forwards_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_json_ json_t *all = NULL;
	json_t *out, *fw;
	int recursion, k;
	size_t i;

	if ((k = lxmd_query_recursion(r, &recursion, err)) < 0 ||
	    (k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxmd_network_forwards(r->d, r->args[0], &all, err)) < 0)
		return k;
	out = json_array();
	if (!out)
		return -ENOMEM;
	json_array_foreach (all, i, fw) {
		_cleanup_free_ char *url = NULL;
		json_t *e;

		if (recursion > 0)
			e = forward_view(json_incref(fw));
		else if (asprintf(&url, "/1.0/networks/%s/forwards/%s", r->args[0],
				  json_string_value(json_object_get(fw, "listen_address"))) >= 0)
			e = json_string(url);
		else
			e = NULL;
		if (!e || json_array_append_new(out, e) < 0) {
			json_decref(out);
			return -ENOMEM;
		}
	}
	return lxmd_respond_sync(r, out, NULL);
}

int lxmd_api_network_forwards_post(struct lxmd_request *r, struct lxm_error **err)
{
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': create forward: request body is empty",
				     r->args[0]);
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxmd_network_forward_change(r->d, r->args[0], NULL, r->body, LXMD_FORWARD_CREATE,
					     err)) < 0)
		return k;
	forward_lifecycle(r, "network-forward-created",
			  json_string_value(json_object_get(r->body, "listen_address")));
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_network_forward_get(struct lxmd_request *r, struct lxm_error **err)
{
	json_t *fw = NULL;
	char etag[65];
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxmd_network_forward_get(r->d, r->args[0], r->args[1], &fw, err)) < 0)
		return k;
	if (lxmd_etag(fw, etag) < 0 || !(fw = forward_view(fw)))
		return -ENOMEM;
	return lxmd_respond_sync(r, fw, etag);
}

/* PUT replaces description, config and ports; PATCH merges config, replaces the description
 * and the ports when given. */
static int forward_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_json_ json_t *cur = NULL, *next = NULL;
	const char *key;
	char etag[65];
	json_t *v;
	int k;

	if (!r->body || !json_is_object(r->body))
		return lxm_error_set(err, -EINVAL, 400,
				     "network '%s': update forward %s: request body is not an "
				     "object",
				     r->args[0], r->args[1]);
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxmd_network_forward_get(r->d, r->args[0], r->args[1], &cur, err)) < 0)
		return k;
	if ((k = lxmd_etag(cur, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0)
		return lxm_error_prefix(err, "network '%s': update forward %s", r->args[0],
					r->args[1]);
	next = patch ? json_deep_copy(cur)
		     : json_pack("{s:O}", "listen_address", json_object_get(cur, "listen_address"));
	if (!next)
		return -ENOMEM;
	json_object_foreach (r->body, key, v) {
		json_t *old = json_object_get(next, key);

		if (patch && streq(key, "config") && json_is_object(v) && json_is_object(old)) {
			if (json_object_update(old, v) < 0)
				return -ENOMEM;
		} else if (!streq(key, "listen_address") && json_object_set(next, key, v) < 0) {
			return -ENOMEM;
		}
	}
	k = lxmd_network_forward_change(r->d, r->args[0], r->args[1], next, LXMD_FORWARD_REPLACE,
					err);
	if (k < 0)
		return k;
	forward_lifecycle(r, "network-forward-updated", r->args[1]);
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_network_forward_put(struct lxmd_request *r, struct lxm_error **err)
{
	return forward_update(r, false, err);
}

int lxmd_api_network_forward_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return forward_update(r, true, err);
}

int lxmd_api_network_forward_delete(struct lxmd_request *r, struct lxm_error **err)
{
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxmd_network_forward_change(r->d, r->args[0], r->args[1], NULL,
					     LXMD_FORWARD_DELETE, err)) < 0)
		return k;
	forward_lifecycle(r, "network-forward-deleted", r->args[1]);
	return lxmd_respond_sync(r, NULL, NULL);
}
