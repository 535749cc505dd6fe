/* Proxy devices (lxmd/proxy.c, lxmd/proxy/proxy-spec.c): listen= and connect= with port ranges
 * and lists, the modes, the refusals that name the device, the key and the value, and the DNAT
 * forwards a NAT-mode device with ranges becomes. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "lxmd/proxy.h"
#include "util.h"
#include "tests/unit/tap.h"

/* Parses device "web" from json into *ret, the error message (or "") in msg. */
static int parse(const char *json, struct lxmd_proxy *ret, char msg[static 512])
{
	static json_t *keep[64];
	static size_t n_keep;
	json_t *dev = json_loads(json, 0, NULL);
	struct lxm_error *err = NULL;
	int r;

	if (!dev)
		return -999;
	/* ret points into dev: it lives to the end of the test. */
	if (n_keep < ARRAY_SIZE(keep))
		keep[n_keep++] = dev;
	r = lxmd_proxy_parse("web", dev, ret, &err);
	snprintf(msg, 512, "%s", err ? err->msg : "");
	lxm_error_free(err);
	return r;
}

/* A refusal: -EINVAL, naming the device and every word of words. */
static void refused(const char *json, const char *w1, const char *w2)
{
	struct lxmd_proxy p;
	char msg[512];
	int r = parse(json, &p, msg);

	ok(r == -EINVAL && strstr(msg, "proxy device 'web'") && strstr(msg, w1) &&
		   (!w2 || strstr(msg, w2)),
	   "refused %s: %s", json, msg);
}

static void ports(void)
{
	struct lxm_proxy_addr a, c;
	char buf[64];

	ok(!lxm_proxy_addr_parse("tcp:127.0.0.1:8080", &a) && a.n_ports == 1 &&
		   a.ports[0] == 8080 && a.family == AF_INET && streq(a.protocol, "tcp") &&
		   streq(a.addr, "127.0.0.1"),
	   "one port");
	ok(!lxm_proxy_addr_parse("udp:[::1]:8080-8082", &a) && a.n_ports == 3 &&
		   a.ports[0] == 8080 && a.ports[2] == 8082 && a.family == AF_INET6 &&
		   streq(a.addr, "::1") && streq(a.protocol, "udp"),
	   "an IPv6 range");
	ok(!lxm_proxy_addr_parse("tcp:0.0.0.0:80,443,8000-8001", &a) && a.n_ports == 4 &&
		   a.ports[0] == 80 && a.ports[1] == 443 && a.ports[2] == 8000 &&
		   a.ports[3] == 8001,
	   "a list with a range, in order");
	ok(lxm_proxy_ports_format(a.ports, a.n_ports, buf, sizeof(buf)) > 0 &&
		   streq(buf, "80,443,8000-8001"),
	   "formatted back: %s", buf);
	ok(!lxm_proxy_addr_parse("tcp:1.2.3.4:1-1024", &a) && a.n_ports == 1024,
	   "1024 ports are allowed");
	ok(lxm_proxy_addr_parse("tcp:1.2.3.4:1-1025", &a) != NULL, "1025 are too many");
	ok(lxm_proxy_ports_format(a.ports, 1024, buf, 4) == -ENOSPC, "format: too small a buffer");
	ok(lxm_proxy_addr_parse("tcp:1.2.3.4:80,80", &a) != NULL, "a port twice");
	ok(lxm_proxy_addr_parse("tcp:1.2.3.4:82-80", &a) != NULL, "a range downwards");
	ok(lxm_proxy_addr_parse("tcp:1.2.3.4:80-", &a) != NULL, "a range without its end");
	ok(lxm_proxy_addr_parse("tcp:1.2.3.4:80,", &a) != NULL, "a list ending in a comma");
	ok(lxm_proxy_addr_parse("tcp:1.2.3.4:0", &a) != NULL, "port 0");
	ok(lxm_proxy_addr_parse("tcp:1.2.3.4:65536", &a) != NULL, "port 65536");
	ok(lxm_proxy_addr_parse("tcp:1.2.3.4:+80", &a) != NULL, "a sign");
	ok(lxm_proxy_addr_parse("tcp:::1:80", &a) != NULL, "IPv6 without brackets");
	ok(lxm_proxy_addr_parse("tcp:localhost:80", &a) != NULL, "a host name");
	ok(lxm_proxy_addr_parse("unix:/run/x.sock", &a) != NULL, "a unix socket");

	ok(!lxm_proxy_addr_parse("tcp:0.0.0.0:8080-8082", &a) &&
		   !lxm_proxy_addr_parse("tcp:127.0.0.1:80-82", &c) &&
		   !lxm_proxy_pair_check(&a, &c) && lxm_proxy_target_port(&a, &c, 0) == 80 &&
		   lxm_proxy_target_port(&a, &c, 2) == 82,
	   "a range one to one");
	ok(!lxm_proxy_addr_parse("tcp:127.0.0.1:80", &c) && !lxm_proxy_pair_check(&a, &c) &&
		   lxm_proxy_target_port(&a, &c, 2) == 80,
	   "a range to one port");
	ok(!lxm_proxy_addr_parse("tcp:127.0.0.1:80-81", &c) && lxm_proxy_pair_check(&a, &c),
	   "3 listen ports, 2 connect ports: refused");
	ok(!lxm_proxy_addr_parse("udp:127.0.0.1:80", &c) && lxm_proxy_pair_check(&a, &c),
	   "tcp to udp: refused");
	ok(!lxm_proxy_addr_parse("tcp:[::1]:80", &c) && lxm_proxy_pair_check(&a, &c),
	   "IPv4 to IPv6: refused");
}

static void devices(void)
{
	struct lxmd_proxy p;
	char msg[512];

	ok(parse("{\"type\": \"nic\", \"network\": \"n\"}", &p, msg) == 0, "a nic is no proxy");
	ok(parse("{\"type\": \"proxy\", \"listen\": \"tcp:127.0.0.1:8080\", "
		 "\"connect\": \"tcp:127.0.0.1:80\"}",
		 &p, msg) == 1 &&
		   !p.nat && !p.bind_instance && streq(p.listen_spec, "tcp:127.0.0.1:8080") &&
		   p.connect.ports[0] == 80,
	   "nat unset: a forwarder, bind host (%s)", msg);
	ok(parse("{\"type\": \"proxy\", \"listen\": \"udp:127.0.0.1:5353\", \"nat\": \"false\", "
		 "\"bind\": \"instance\", \"connect\": \"udp:127.0.0.1:53\"}",
		 &p, msg) == 1 &&
		   !p.nat && p.bind_instance,
	   "bind=instance, nat=false (%s)", msg);
	ok(parse("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:8080-8081\", \"nat\": \"true\", "
		 "\"connect\": \"tcp:10.0.0.5:80-81\"}",
		 &p, msg) == 1 &&
		   p.nat && p.listen.n_ports == 2,
	   "nat=true with ranges (%s)", msg);

	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80\", \"connect\": "
		"\"tcp:10.0.0.5:80\", \"nat\": \"yes\"}",
		"'nat'", "'yes'");
	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80\", \"connect\": "
		"\"tcp:10.0.0.5:80\", \"bind\": \"guest\"}",
		"'bind'", "'guest'");
	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80\", \"connect\": "
		"\"tcp:10.0.0.5:80\", \"bind\": \"instance\", \"nat\": \"true\"}",
		"'bind'", "nat=true");
	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80\", \"connect\": "
		"\"tcp:10.0.0.5:80\", \"mode\": \"0644\"}",
		"'mode'", NULL);
	refused("{\"type\": \"proxy\", \"connect\": \"tcp:10.0.0.5:80\"}", "'listen'", "missing");
	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80\"}", "'connect'", "missing");
	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80-90x\", \"connect\": "
		"\"tcp:10.0.0.5:80\"}",
		"'listen'", "'tcp:0.0.0.0:80-90x'");
	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80-82\", \"connect\": "
		"\"tcp:10.0.0.5:80-81\"}",
		"'connect'", "as many ports");
	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80\", \"connect\": "
		"\"tcp:0.0.0.0:80\"}",
		"'connect'", "wildcard");
	refused("{\"type\": \"proxy\", \"listen\": \"tcp:0.0.0.0:80\", \"connect\": "
		"\"udp:10.0.0.5:80\"}",
		"'connect'", "same protocol");
}

static void nat_forwards(void)
{
	_cleanup_json_ json_t *a = json_array(), *b = json_array(), *c = json_array();
	struct lxmd_proxy p;
	char msg[512];

	ok(parse("{\"type\": \"proxy\", \"nat\": \"true\", \"listen\": \"tcp:0.0.0.0:8080-8082\", "
		 "\"connect\": \"tcp:10.0.0.5:80\"}",
		 &p, msg) == 1 &&
		   lxmd_proxy_nat_forwards(&p, "net", "br0", a) == 0 && json_array_size(a) == 1 &&
		   streq(json_string_value(json_object_get(json_array_get(a, 0), "listen_port")),
			 "8080-8082") &&
		   streq(json_string_value(json_object_get(json_array_get(a, 0), "target_port")),
			 "80"),
	   "a range to one port: one forward");
	ok(parse("{\"type\": \"proxy\", \"nat\": \"true\", \"listen\": \"tcp:0.0.0.0:8080-8082\", "
		 "\"connect\": \"tcp:10.0.0.5:80-82\"}",
		 &p, msg) == 1 &&
		   lxmd_proxy_nat_forwards(&p, "net", "br0", b) == 0 && json_array_size(b) == 3 &&
		   streq(json_string_value(json_object_get(json_array_get(b, 2), "listen_port")),
			 "8082") &&
		   streq(json_string_value(json_object_get(json_array_get(b, 2), "target_port")),
			 "82") &&
		   streq(json_string_value(json_object_get(json_array_get(b, 2), "device")),
			 "web") &&
		   streq(json_string_value(json_object_get(json_array_get(b, 2), "bridge")), "br0"),
	   "one to one: a forward per pair");
	ok(parse("{\"type\": \"proxy\", \"nat\": \"true\", \"listen\": \"udp:0.0.0.0:53,5353\", "
		 "\"connect\": \"udp:10.0.0.5:53\"}",
		 &p, msg) == 1 &&
		   lxmd_proxy_nat_forwards(&p, "net", "br0", c) == 0 && json_array_size(c) == 1 &&
		   streq(json_string_value(json_object_get(json_array_get(c, 0), "listen_port")),
			 "53,5353") &&
		   streq(json_string_value(json_object_get(json_array_get(c, 0), "protocol")),
			 "udp"),
	   "a list to one port: one forward");
}

int main(void)
{
	ports();
	devices();
	nat_forwards();
	return tap_done();
}
