/* Bit rate limits of nics: the LXD-style rate parser and token bucket qdiscs set through
 * libnl-route. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>

#include "cleanup.h"
#include "network-internal.h"
#include "network.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_qdisc *, rtnl_qdisc_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_link *, rtnl_link_put)

/* The units of a rate, in bits per second. */
static const struct {
	const char *unit; /* the suffix */
	uint64_t mult;	  /* bits per second of one */
} rate_units[] = {
	{ "bit", 1ULL },
	{ "kbit", 1000ULL },
	{ "Mbit", 1000ULL * 1000 },
	{ "Gbit", 1000ULL * 1000 * 1000 },
	{ "Tbit", 1000ULL * 1000 * 1000 * 1000 },
	{ "Kibit", 1ULL << 10 },
	{ "Mibit", 1ULL << 20 },
	{ "Gibit", 1ULL << 30 },
	{ "Tibit", 1ULL << 40 },
};

int lxm_parse_bitrate(const char *s, uint64_t *ret)
{
	uint64_t v = 0, mult = 0;
	const char *p = s;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	for (size_t i = 0; i < sizeof(rate_units) / sizeof(rate_units[0]) && !mult; i++)
		if (strcmp(p, rate_units[i].unit) == 0)
			mult = rate_units[i].mult;
	if (!mult)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	v *= mult;
	/* tbf counts whole bytes per second in 32 signed bits. */
	if (v < 8 || v / 8 > INT_MAX)
		return -ERANGE;
	*ret = v;
	return 0;
}

int lxm_link_set_rate(pid_t netns_pid, const char *name, uint64_t bps, struct lxm_error **err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(rtnl_qdisc_putp) struct rtnl_qdisc *q = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	int ifindex, rate = (int)(bps / 8), burst, k;

	k = network_route_socket(netns_pid, &sk);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "limit %s: netlink socket", name);
	k = rtnl_link_get_kernel(sk, 0, name, &l);
	if (k < 0)
		return lxm_error_setx(err, network_nl_errno(k), 500, "limit %s: find the link",
				      name);
	ifindex = rtnl_link_get_ifindex(l);
	q = rtnl_qdisc_alloc();
	if (!q)
		return -ENOMEM;
	rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
	rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(1, 0));
	k = rtnl_tc_set_kind(TC_CAST(q), "tbf");
	if (k < 0)
		return lxm_error_setx(err, network_nl_errno(k), 500, "limit %s: tbf qdisc", name);
	/* A bucket of 10 ms of traffic, but never less than a few full-size frames. */
	burst = rate / 100 > 16384 ? rate / 100 : 16384;
	rtnl_qdisc_tbf_set_rate(q, rate, burst, 0);
	k = rtnl_qdisc_tbf_set_limit_by_latency(q, 50 * 1000);
	if (k >= 0)
		k = rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_REPLACE);
	if (k < 0)
		return lxm_error_setx(err, network_nl_errno(k), 500,
				      "limit %s to %llu bit/s: add tbf qdisc", name,
				      (unsigned long long)bps);
	return 0;
}
