/* lxm version, lxm info [NAME]. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"

int lxm_cmd_version(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_error_ struct lxm_error *cerr = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	const char *server = NULL;
	const json_t *info;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 0, 0, "no arguments", err);
	if (r < 0)
		return r;
	/* Like lxc, an unreachable server is not an error here: the client version still helps. */
	if (lxm_cli_connect(&c, &cerr) >= 0 && lxm_client_server(c, &info, &cerr) >= 0)
		server = json_string_value(
			json_object_get(json_object_get(info, "environment"), "server_version"));
	printf("Client version: %s\nServer version: %s\n", PACKAGE_VERSION,
	       server ? server : "unreachable");
	return 0;
}

/* lxc prints GET /1.0 in the order of Go's api.Server fields. */
static const char *const server_keys[] = {
	"config", "api_extensions", "api_status",  "api_version", "auth",
	"public", "auth_methods",   "environment", NULL,
};

static int info_server(struct lxm_client *c, const char *cmd, struct lxm_error **err)
{
	_cleanup_json_ json_t *ordered = NULL, *config = NULL;
	_cleanup_free_ char *out = NULL;
	const json_t *info, *env;
	const char *accel, *reason;
	int r;

	r = lxm_client_server(c, &info, err);
	if (r < 0)
		return r;
	ordered = lxm_json_reorder(info, server_keys);
	if (!ordered)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	/* Go prints maps with sorted keys. */
	config = lxm_json_sorted(json_object_get(info, "config"));
	if (config && json_object_set(ordered, "config", config) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_yaml_from_json(ordered, &out);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "%s: render server information", cmd);
	r = lxm_cli_print(cmd, out, err);
	env = json_object_get(info, "environment");
	accel = json_string_value(json_object_get(env, "vm_acceleration"));
	reason = json_string_value(json_object_get(env, "vm_acceleration_reason"));
	/* In a comment, so that the output stays one YAML document. */
	if (r >= 0 && accel)
		printf("# vm acceleration: %s (%s)\n", accel, reason ? reason : "no reason given");
	return r;
}

static void print_time(const char *label, const json_t *inst, const char *key)
{
	char buf[64];

	if (lxm_format_time(json_string_value(json_object_get(inst, key)), true, buf) == 0)
		printf("%s: %s\n", label, buf);
}

static int print_snapshots(const char *cmd, const json_t *snaps, struct lxm_error **err)
{
	static const char *const header[] = { "NAME", "TAKEN AT", "EXPIRES AT", "SIZE",
					      "STATEFUL" };
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_free_ char *out = NULL;
	const json_t *s;
	size_t i;
	int r;

	if (json_array_size(snaps) == 0)
		return 0;
	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (snaps, i, s) {
		char taken[64] = "", expires[64] = "", size[32] = "";
		const char *name = json_string_value(json_object_get(s, "name"));
		const char *slash = name ? strrchr(name, '/') : NULL;
		const json_t *sz = json_object_get(s, "size");
		const char *row[5];

		lxm_format_time(json_string_value(json_object_get(s, "created_at")), true, taken);
		lxm_format_time(json_string_value(json_object_get(s, "expires_at")), true, expires);
		row[0] = slash ? slash + 1 : name;
		row[1] = taken;
		row[2] = expires;
		/* -1: not known (the driver could not say). */
		if (json_is_integer(sz) && json_integer_value(sz) >= 0)
			lxm_format_bytes((uint64_t)json_integer_value(sz), true, size);
		row[3] = size;
		row[4] = json_is_true(json_object_get(s, "stateful")) ? "YES" : "NO";
		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r >= 0) {
		lxm_table_sort(t);
		r = lxm_table_render(t, LXM_FORMAT_TABLE, &out);
	}
	if (r < 0)
		return lxm_error_setx(err, r, 500, "%s: render snapshots", cmd);
	printf("\nSnapshots:\n");
	return lxm_cli_print(cmd, out, err);
}

static json_int_t int_at(const json_t *obj, const char *a, const char *b)
{
	const json_t *v = json_object_get(obj, a);

	return json_integer_value(b ? json_object_get(v, b) : v);
}

/* One interface of the state's network section, as lxc info lists it. */
static void print_interface(const char *ifname, const json_t *nic)
{
	const json_t *counters = json_object_get(nic, "counters"), *addrs, *a;
	char buf[32];
	const char *s;
	size_t i;

	printf("    %s:\n", ifname);
	s = json_string_value(json_object_get(nic, "type"));
	if (s && *s)
		printf("      Type: %s\n", s);
	s = json_string_value(json_object_get(nic, "state"));
	if (s && *s) {
		_cleanup_free_ char *up = lxm_cli_upper(s);

		printf("      State: %s\n", up ? up : s);
	}
	s = json_string_value(json_object_get(nic, "host_name"));
	if (s && *s)
		printf("      Host interface: %s\n", s);
	s = json_string_value(json_object_get(nic, "hwaddr"));
	if (s && *s)
		printf("      MAC address: %s\n", s);
	if (int_at(nic, "mtu", NULL) > 0)
		printf("      MTU: %" JSON_INTEGER_FORMAT "\n", int_at(nic, "mtu", NULL));
	printf("      Bytes received: %s\n",
	       lxm_format_bytes((uint64_t)int_at(counters, "bytes_received", NULL), false, buf));
	printf("      Bytes sent: %s\n",
	       lxm_format_bytes((uint64_t)int_at(counters, "bytes_sent", NULL), false, buf));
	printf("      Packets received: %" JSON_INTEGER_FORMAT "\n",
	       int_at(counters, "packets_received", NULL));
	printf("      Packets sent: %" JSON_INTEGER_FORMAT "\n",
	       int_at(counters, "packets_sent", NULL));
	addrs = json_object_get(nic, "addresses");
	if (json_array_size(addrs) == 0)
		return;
	printf("      IP addresses:\n");
	json_array_foreach (addrs, i, a) {
		const char *family = json_string_value(json_object_get(a, "family"));
		const char *addr = json_string_value(json_object_get(a, "address"));
		const char *mask = json_string_value(json_object_get(a, "netmask"));
		const char *scope = json_string_value(json_object_get(a, "scope"));

		if (!family || !addr)
			continue;
		printf("        %s:%s %s%s%s", family, streq(family, "inet") ? " " : "", addr,
		       mask && *mask ? "/" : "", mask ? mask : "");
		printf(scope && *scope ? " (%s)\n" : "%s\n", scope && *scope ? scope : "");
	}
}

/* The Resources section of a running instance's info: lxc's layout, from GET .../state. */
static int print_resources(struct lxm_client *c, const char *name, const char *ename,
			   struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *state = NULL;
	const json_t *net, *nic, *disk;
	const char *ifname;
	char buf[32];
	int r;

	if (asprintf(&path, "/1.0/instances/%s/state", ename) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "info: out of memory");
	r = lxm_client_request(c, "GET", path, NULL, &state, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "instance '%s': state", name);
	printf("\nResources:\n");
	printf("  Processes: %" JSON_INTEGER_FORMAT "\n", int_at(state, "processes", NULL));
	printf("  CPU usage:\n    CPU usage (in seconds): %" JSON_INTEGER_FORMAT "\n",
	       int_at(state, "cpu", "usage") / 1000000000);
	printf("  Memory usage:\n    Memory (current): %s\n",
	       lxm_format_bytes((uint64_t)int_at(state, "memory", "usage"), true, buf));
	if (int_at(state, "memory", "usage_peak") > 0)
		printf("    Memory (peak): %s\n",
		       lxm_format_bytes((uint64_t)int_at(state, "memory", "usage_peak"), true,
					buf));
	disk = json_object_get(state, "disk");
	if (json_object_size(disk) > 0) {
		printf("  Disk usage:\n");
		json_object_foreach ((json_t *)disk, ifname, nic)
			printf("    %s: %s\n", ifname,
			       lxm_format_bytes((uint64_t)int_at(nic, "usage", NULL), true, buf));
	}
	net = json_object_get(state, "network");
	if (json_object_size(net) == 0)
		return 0;
	printf("  Network usage:\n");
	json_object_foreach ((json_t *)net, ifname, nic)
		print_interface(ifname, nic);
	return 0;
}

/* A summary of one instance in lxc's words; only the fields the server sent. */
static int info_instance(struct lxm_client *c, const char *cmd, const char *name,
			 struct lxm_error **err)
{
	_cleanup_free_ char *ename = lxm_url_escape(name), *path = NULL;
	_cleanup_json_ json_t *inst = NULL;
	const json_t *state, *profiles, *p;
	const char *s, *type;
	json_int_t pid;
	size_t i;
	int r;

	if (!ename || asprintf(&path, "/1.0/instances/%s?recursion=1", ename) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_request(c, "GET", path, NULL, &inst, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "instance '%s'", name);
	state = json_object_get(inst, "state");

	printf("Name: %s\n", name);
	s = json_string_value(json_object_get(inst, "description"));
	if (s && *s)
		printf("Description: %s\n", s);
	s = json_string_value(json_object_get(inst, "status"));
	if (s) {
		printf("Status: ");
		for (; *s; s++)
			putchar(toupper((unsigned char)*s));
		putchar('\n');
	}
	type = json_string_value(json_object_get(inst, "type"));
	printf("Type: %s%s\n", type && *type ? type : "container",
	       json_is_true(json_object_get(inst, "ephemeral")) ? " (ephemeral)" : "");
	s = json_string_value(json_object_get(inst, "architecture"));
	if (s && *s)
		printf("Architecture: %s\n", s);
	if (type && streq(type, "virtual-machine")) {
		/* security.vm.accel forces it; otherwise the server's KVM probe decides. */
		_cleanup_json_ json_t *server = NULL;
		const json_t *env;

		s = json_string_value(json_object_get(json_object_get(inst, "expanded_config"),
						      "security.vm.accel"));
		if (s && *s) {
			printf("vm acceleration: %s (security.vm.accel)\n", s);
		} else if (lxm_client_request(c, "GET", "/1.0", NULL, &server, NULL, NULL) >= 0) {
			env = json_object_get(server, "environment");
			s = json_string_value(json_object_get(env, "vm_acceleration"));
			if (s)
				printf("vm acceleration: %s (%s)\n", s,
				       json_string_value(
					       json_object_get(env, "vm_acceleration_reason"))
					       ?: "no reason given");
		}
	}
	pid = json_integer_value(json_object_get(state, "pid"));
	if (pid > 0)
		printf("PID: %" JSON_INTEGER_FORMAT "\n", pid);
	print_time("Created", inst, "created_at");
	print_time("Last Used", inst, "last_used_at");
	profiles = json_object_get(inst, "profiles");
	if (json_is_array(profiles)) {
		printf("Profiles:");
		json_array_foreach (profiles, i, p)
			printf("%s %s", i ? "," : "",
			       json_string_value(p) ? json_string_value(p) : "");
		putchar('\n');
	}
	s = json_string_value(json_object_get(inst, "status"));
	if (s && (streq(s, "Running") || streq(s, "Frozen"))) {
		r = print_resources(c, name, ename, err);
		if (r < 0)
			return r;
	}
	return print_snapshots(cmd, json_object_get(inst, "snapshots"), err);
}

int lxm_cmd_info(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	const char *name = NULL;
	int r;

	r = lxm_cli_nargs(argv[0], argc - 1, 0, 1, "at most one instance NAME", err);
	if (r < 0)
		return r;
	if (argc > 1 && argv[1][0] == '-')
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: unknown flag '%s' (see 'lxm %s --help')", argv[0],
				     argv[1], argv[0]);
	/* REMOTE: is that server, REMOTE:NAME an instance on it. */
	r = argc > 1 ? lxm_cli_target(argv[1], &name, err) : 0;
	if (r >= 0)
		r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	if (argc == 1 || !*name)
		return info_server(c, argv[0], err);
	return info_instance(c, argv[0], name, err);
}
