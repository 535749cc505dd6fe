/* Nic devices (lxmd/nic.c): which devices are nics, and the refusals that name the device and the
 * key. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "lxmd/nic.h"
#include "network/network.h"
#include "util.h"
#include "tests/unit/tap.h"

/* Parses device "n0" from json: the result, with the error message (or "") in msg. */
static int parse(const char *json, struct lxmd_nic *ret, char msg[static 512])
{
	_cleanup_json_ json_t *dev = json_loads(json, 0, NULL);
	struct lxm_error *err = NULL;
	struct lxmd_nic k = { 0 };
	int r;

	if (!dev)
		return -999;
	r = lxmd_nic_parse("n0", dev, &k, &err);
	snprintf(msg, 512, "%s", err ? err->msg : "");
	lxm_error_free(err);
	if (ret)
		*ret = (struct lxmd_nic){ .mtu = k.mtu, .ingress = k.ingress, .egress = k.egress };
	if (ret && r == 1) {
		ret->inner = k.inner && streq(k.inner, "n0") ? "n0" : k.inner ? "other" : NULL;
		ret->parent = k.parent ? "set" : NULL;
		ret->network = k.network ? "set" : NULL;
	}
	return r;
}

/* A refusal: -EINVAL, naming the device and word. */
static void refused(const char *json, const char *word)
{
	char msg[512];
	int r = parse(json, NULL, msg);

	ok(r == -EINVAL && strstr(msg, "'n0'") && strstr(msg, word), "refused %s: %s", json, msg);
}

int main(void)
{
	struct lxmd_nic k;
	char msg[512];

	ok(parse("{\"type\": \"disk\", \"path\": \"/x\"}", &k, msg) == 0, "a disk is not a nic");
	ok(parse("{\"type\": \"nic\", \"nictype\": \"bridged\", \"parent\": \"br0\"}", &k, msg) ==
			   1 &&
		   k.parent && !k.network && k.inner && streq(k.inner, "n0") && k.mtu == 0,
	   "bridged nic: inner name defaults to the device's (%s)", msg);
	ok(parse("{\"type\": \"nic\", \"network\": \"lxmbr0\", \"name\": \"eth0\", \"mtu\": "
		 "\"1400\", \"hwaddr\": \"00:16:3E:aa:bb:cc\", \"ipv4.address\": \"10.1.2.3\"}",
		 &k, msg) == 1 &&
		   k.network && !k.parent && streq(k.inner, "other") && k.mtu == 1400,
	   "managed nic with name, mtu, hwaddr, static address (%s)", msg);
	refused("{\"type\": \"nic\"}", "network");
	refused("{\"type\": \"nic\", \"nictype\": \"bridged\"}", "parent");
	refused("{\"type\": \"nic\", \"nictype\": \"macvlan\", \"parent\": \"br0\"}", "nictype");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"parent\": \"br0\"}", "parent");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"colour\": \"red\"}", "colour");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"hwaddr\": \"00:16:3e:aa:bb\"}",
		"hwaddr");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"hwaddr\": \"01:16:3e:aa:bb:cc\"}",
		"hwaddr");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"hwaddr\": \"00-16-3e-aa-bb-cc\"}",
		"hwaddr");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"mtu\": \"67\"}", "mtu");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"mtu\": \"65536\"}", "mtu");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"mtu\": \"-1500\"}", "mtu");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"name\": \"a-name-longer-than15\"}",
		"name");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"name\": \"a b\"}", "name");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"host_name\": \"x/y\"}", "host_name");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"ipv4.address\": \"10.1.2\"}",
		"ipv4.address");
	refused("{\"type\": \"nic\", \"nictype\": \"bridged\", \"parent\": \"br0\", "
		"\"ipv4.address\": \"10.1.2.3\"}",
		"ipv4.address");

	/* Bit rates: LXD's units, decimal and binary, case-sensitive. */
	static const struct {
		const char *s; /* the text */
		int r;	       /* what the parser returns */
		uint64_t bps;  /* and the rate when it is 0 */
	} rates[] = {
		{ "10Mbit", 0, 10000000ULL },
		{ "512kbit", 0, 512000ULL },
		{ "1Gbit", 0, 1000000000ULL },
		{ "8bit", 0, 8 },
		{ "1Kibit", 0, 1024 },
		{ "3Mibit", 0, 3ULL << 20 },
		{ "16Gbit", 0, 16000000000ULL },
		{ "1Tbit", -ERANGE, 0 },
		{ "7bit", -ERANGE, 0 },
		{ "0Mbit", -ERANGE, 0 },
		{ "10", -EINVAL, 0 },
		{ "10mbit", -EINVAL, 0 },
		{ "10 Mbit", -EINVAL, 0 },
		{ "Mbit", -EINVAL, 0 },
		{ "-10Mbit", -EINVAL, 0 },
		{ "1.5Mbit", -EINVAL, 0 },
		{ "10MB", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "99999999999999999999999bit", -ERANGE, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(rates); i++) {
		uint64_t bps = 0;
		int r = lxm_parse_bitrate(rates[i].s, &bps);

		ok(r == rates[i].r && (r < 0 || bps == rates[i].bps), "rate '%s': %d, %llu",
		   rates[i].s, r, (unsigned long long)bps);
	}
	ok(parse("{\"type\": \"nic\", \"network\": \"n\", \"limits.ingress\": \"10Mbit\", "
		 "\"limits.egress\": \"2Mibit\"}",
		 &k, msg) == 1 &&
		   k.ingress == 10000000ULL && k.egress == 2ULL << 20,
	   "limits.ingress and limits.egress (%s)", msg);
	ok(parse("{\"type\": \"nic\", \"network\": \"n\"}", &k, msg) == 1 && k.ingress == 0 &&
		   k.egress == 0,
	   "no limits by default (%s)", msg);
	refused("{\"type\": \"nic\", \"network\": \"n\", \"limits.ingress\": \"fast\"}",
		"limits.ingress");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"limits.egress\": \"10MB\"}",
		"limits.egress");
	refused("{\"type\": \"nic\", \"network\": \"n\", \"limits.egress\": \"1Tbit\"}",
		"out of range");
	return tap_done();
}
