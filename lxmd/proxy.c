/* Proxy devices: DNAT rules (nat=true) or lxm-proxy forwarders for a running instance, see
 * proxy.h. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "network/network.h"
#include "networks.h"
#include "nic.h"
#include "proxy.h"
#include "util.h"

#define PROXY_HELPER "lxm-proxy"

/* How long a new forwarder may take to say it listens. */
#define PROXY_READY_TIMEOUT_MS 5000
/* How long a forwarder may take to end on SIGTERM before it is killed. */
#define PROXY_STOP_TIMEOUT_MS 2000

extern char **environ;

/* The keys a proxy device may have here. */
static const char *const proxy_keys[] = { "type", "listen", "connect", "bind", "nat" };

static const char *str(const json_t *dev, const char *key)
{
	const char *v = json_string_value(json_object_get(dev, key));

	return v && *v ? v : NULL;
}

static int parse_side(const char *name, const char *key, const char *spec,
		      struct lxm_proxy_addr *ret, struct lxm_error **err)
{
	const char *why;

	if (!spec)
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': key '%s' missing (\"tcp:ADDRESS:PORT\")",
				     name, key);
	why = lxm_proxy_addr_parse(spec, ret);
	if (why)
		return lxm_error_set(err, -EINVAL, 400, "proxy device '%s': key '%s': '%s': %s",
				     name, key, spec, why);
	return 0;
}

int lxmd_proxy_parse(const char *name, const json_t *dev, struct lxmd_proxy *ret,
		     struct lxm_error **err)
{
	const char *type = str(dev, "type"), *bind = str(dev, "bind"), *nat = str(dev, "nat");
	const char *key, *why;
	json_t *v;
	int k;

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
	ret->name = name;
	ret->listen_spec = str(dev, "listen");
	ret->connect_spec = str(dev, "connect");
	if (nat && !streq(nat, "true") && !streq(nat, "false"))
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': key 'nat': '%s' must be true or false",
				     name, nat);
	ret->nat = nat && streq(nat, "true");
	if (bind && !streq(bind, "host") && !streq(bind, "instance"))
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': key 'bind': '%s' must be host or instance",
				     name, bind);
	ret->bind_instance = bind && streq(bind, "instance");
	if (ret->nat && ret->bind_instance)
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': key 'bind': 'instance' is not supported "
				     "with nat=true (only host)",
				     name);
	if ((k = parse_side(name, "listen", ret->listen_spec, &ret->listen, err)) < 0 ||
	    (k = parse_side(name, "connect", ret->connect_spec, &ret->connect, err)) < 0)
		return k;
	why = lxm_proxy_pair_check(&ret->listen, &ret->connect);
	if (why)
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': key 'connect': '%s' with listen '%s': %s",
				     name, ret->connect_spec, ret->listen_spec, why);
	return 1;
}

/* ---- NAT mode ---- */

static int append_forward(json_t *array, const struct lxmd_proxy *p, const char *network,
			  const char *bridge, const char *lport, const char *tport)
{
	json_t *fw = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "network", network,
			       "bridge", bridge, "device", p->name, "protocol", p->listen.protocol,
			       "listen_address", p->listen.addr, "listen_port", lport,
			       "target_address", p->connect.addr, "target_port", tport);

	return !fw || json_array_append_new(array, fw) < 0 ? -ENOMEM : 0;
}

int lxmd_proxy_nat_forwards(const struct lxmd_proxy *p, const char *network, const char *bridge,
			    json_t *array)
{
	char lport[256], tport[8];
	int k;

	/* One target port: one rule matches every listen port (nft's limit on the list aside). */
	if (p->connect.n_ports == 1 &&
	    lxm_proxy_ports_format(p->listen.ports, p->listen.n_ports, lport, sizeof(lport)) > 0) {
		snprintf(tport, sizeof(tport), "%u", p->connect.ports[0]);
		return append_forward(array, p, network, bridge, lport, tport);
	}
	/* nft maps a port range to a range by picking any port of it: one to one is one rule per
	 * pair. */
	for (size_t i = 0; i < p->listen.n_ports; i++) {
		snprintf(lport, sizeof(lport), "%u", p->listen.ports[i]);
		snprintf(tport, sizeof(tport), "%u",
			 lxm_proxy_target_port(&p->listen, &p->connect, i));
		if ((k = append_forward(array, p, network, bridge, lport, tport)) < 0)
			return k;
	}
	return 0;
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

static int plan_nat(struct lxmd *d, const json_t *devices, const struct lxmd_proxy *p, json_t *nat,
		    struct lxm_error **err)
{
	const char *network = network_of(devices, p->connect.addr), *bridge;
	int k;

	if (!network)
		return lxm_error_set(err, -EINVAL, 400,
				     "proxy device '%s': nat=true needs the "
				     "connect address %s to be the static ipv4.address of "
				     "one of the instance's nics on a managed network "
				     "(network=NAME ipv4.address=%s)",
				     p->name, p->connect.addr, p->connect.addr);
	if ((k = lxmd_network_bridge(d, network, &bridge, err)) < 0)
		return lxm_error_prefix(err, "proxy device '%s'", p->name);
	return lxmd_proxy_nat_forwards(p, network, bridge, nat) < 0
		       ? lxm_error_set(err, -ENOMEM, 500, "out of memory")
		       : 0;
}

int lxmd_proxies_plan(struct lxmd *d, const char *instance, const json_t *devices, json_t **ret,
		      struct lxm_error **err)
{
	_cleanup_json_ json_t *nat = json_array(), *fwd = json_object();
	const char *name;
	json_t *dev;
	int k;

	(void)instance;
	*ret = NULL;
	if (!nat || !fwd)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	json_object_foreach ((json_t *)devices, name, dev) {
		struct lxmd_proxy p;

		k = lxmd_proxy_parse(name, dev, &p, err);
		if (k < 0)
			return k;
		if (k == 0)
			continue;
		if (p.nat)
			k = plan_nat(d, devices, &p, nat, err);
		else if (json_object_set_new(fwd, name,
					     json_pack("{s:s, s:s, s:s}", "listen", p.listen_spec,
						       "connect", p.connect_spec, "bind",
						       p.bind_instance ? "instance" : "host")) < 0)
			k = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		if (k < 0)
			return k;
	}
	if (!json_array_size(nat) && !json_object_size(fwd))
		return 0;
	*ret = json_pack("{s:O, s:O}", "nat", nat, "forwarders", fwd);
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

static int apply_nat(struct lxmd *d, const char *instance, json_t *nat, struct lxm_error **err)
{
	size_t i;
	json_t *fw;
	int k;

	json_array_foreach (nat, i, fw) {
		const char *laddr = json_string_value(json_object_get(fw, "listen_address"));

		if (!streq(laddr, "0.0.0.0") && strncmp(laddr, "127.", 4) != 0)
			continue;
		k = lxm_bridge_route_localnet(json_string_value(json_object_get(fw, "bridge")),
					      err);
		if (k < 0)
			return lxm_error_prefix(err, "proxy device '%s'",
						json_string_value(json_object_get(fw, "device")));
	}
	k = lxmd_networks_set_proxies(d, instance, json_array_size(nat) ? nat : NULL, err);
	if (k < 0)
		return lxm_error_prefix(err, "proxy devices");
	return 0;
}

/* ---- forwarders ---- */

/* <rundir>/proxy.d/<instance>: the pidfiles of its forwarders (instance names have no dot, so
 * this is no instance's runtime directory). */
static int forwarders_dir(struct lxmd *d, const char *instance, char **ret)
{
	return asprintf(ret, "%s/proxy.d/%s", d->cfg.rundir, instance) < 0 ? -ENOMEM : 0;
}

/* A forwarder's command line; the pidfile comes last (stop_forwarder() relies on it). */
struct fwd_argv {
	char *argv[18]; /* NULL-terminated */
	char *helper;	/* argv[0] */
	char *pidfile;	/* the --pidfile value */
	char pid[16];	/* the --pid value */
};

static void fwd_argv_free(struct fwd_argv *a)
{
	free(a->helper);
	free(a->pidfile);
}

static int fwd_argv_build(const char *helper, const char *instance, const char *device,
			  pid_t init_pid, const json_t *spec, const char *dir, struct fwd_argv *a)
{
	size_t n = 0;

	memset(a, 0, sizeof(*a));
	if (!(a->helper = strdup(helper)) || asprintf(&a->pidfile, "%s/%s.pid", dir, device) < 0) {
		a->pidfile = NULL;
		fwd_argv_free(a);
		return -ENOMEM;
	}
	snprintf(a->pid, sizeof(a->pid), "%d", (int)init_pid);
	a->argv[n++] = a->helper;
	a->argv[n++] = (char *)"--instance";
	a->argv[n++] = (char *)instance;
	a->argv[n++] = (char *)"--device";
	a->argv[n++] = (char *)device;
	a->argv[n++] = (char *)"--pid";
	a->argv[n++] = a->pid;
	a->argv[n++] = (char *)"--bind";
	a->argv[n++] = (char *)json_string_value(json_object_get(spec, "bind"));
	a->argv[n++] = (char *)"--listen";
	a->argv[n++] = (char *)json_string_value(json_object_get(spec, "listen"));
	a->argv[n++] = (char *)"--connect";
	a->argv[n++] = (char *)json_string_value(json_object_get(spec, "connect"));
	a->argv[n++] = (char *)"--pidfile";
	a->argv[n++] = a->pidfile;
	a->argv[n] = NULL;
	return 0;
}

/* The command line of process pid, NUL-separated, in *ret (*ret_len bytes). */
static int read_cmdline(pid_t pid, char **ret, size_t *ret_len)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	return lxm_read_file(path, ret, ret_len);
}

/* Whether process pid runs exactly argv. */
static bool runs(pid_t pid, char *const argv[])
{
	_cleanup_free_ char *cmd = NULL;
	size_t len, off = 0;

	if (read_cmdline(pid, &cmd, &len) < 0)
		return false;
	for (size_t i = 0; argv[i]; i++) {
		size_t n = strlen(argv[i]) + 1;

		if (off + n > len || memcmp(cmd + off, argv[i], n) != 0)
			return false;
		off += n;
	}
	return off == len;
}

/* Whether process pid is a forwarder writing pidfile (its last two arguments). */
static bool is_forwarder(pid_t pid, const char *pidfile)
{
	_cleanup_free_ char *cmd = NULL;
	size_t len, plen = strlen(pidfile) + 1, olen = sizeof("--pidfile");
	const char *base;

	if (read_cmdline(pid, &cmd, &len) < 0 || len < plen + olen)
		return false;
	base = strrchr(cmd, '/');
	base = base ? base + 1 : cmd;
	return streq(base, PROXY_HELPER) && memcmp(cmd + len - plen, pidfile, plen) == 0 &&
	       memcmp(cmd + len - plen - olen, "--pidfile", olen) == 0;
}

static pid_t read_pidfile(const char *path)
{
	_cleanup_free_ char *text = NULL;
	long v;

	if (lxm_read_file(path, &text, NULL) < 0)
		return 0;
	v = strtol(text, NULL, 10);
	return v > 1 && v < (1L << 22) ? (pid_t)v : 0;
}

/* Waits up to ms for the process of pidfd to end: true when it did. */
static bool wait_exit(int pidfd, int ms)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
	int k;

	do
		k = poll(&pfd, 1, ms);
	while (k < 0 && errno == EINTR);
	return k > 0;
}

/* Ends the forwarder of pidfile (when that is what runs under its pid) and removes pidfile. It
 * is not lxmd's child (it detached): a pidfd tells when it is gone. */
static void stop_forwarder(const char *instance, const char *pidfile)
{
	pid_t pid = read_pidfile(pidfile);
	_cleanup_close_ int pidfd = -1;

	if (pid > 0 && (pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) >= 0 &&
	    is_forwarder(pid, pidfile)) {
		if (syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0) == 0 &&
		    !wait_exit(pidfd, PROXY_STOP_TIMEOUT_MS)) {
			log_warn("instance '%s': proxy forwarder %d ignored SIGTERM: killing it",
				 instance, (int)pid);
			(void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			(void)wait_exit(pidfd, PROXY_STOP_TIMEOUT_MS);
		}
	}
	unlink(pidfile);
}

/* Reads the forwarder's report line from fd: "ready" or "error MESSAGE". */
static int read_report(int fd, char *buf, size_t size)
{
	uint64_t deadline = lxm_monotonic_ms() + PROXY_READY_TIMEOUT_MS;
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = lxm_monotonic_ms();
		ssize_t n;
		int k;

		if (now >= deadline)
			return -ETIMEDOUT;
		k = poll(&pfd, 1, (int)(deadline - now));
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -ETIMEDOUT;
		n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		len += (size_t)n;
		buf[len] = '\0';
		if (n == 0 || strchr(buf, '\n') || len == size - 1) {
			buf[strcspn(buf, "\n")] = '\0';
			return (int)len;
		}
	}
}

/* Starts the forwarder of argv and waits for its report; its stderr goes to logpath. */
static int spawn_forwarder(const char *device, char *const argv[], const char *logpath,
			   struct lxm_error **err)
{
	posix_spawn_file_actions_t fa;
	_cleanup_close_ int rd = -1;
	int p[2], k, status = 0;
	char line[1024];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return lxm_error_setx(err, -errno, 500, "proxy device '%s': pipe", device);
	rd = p[0];
	k = posix_spawn_file_actions_init(&fa);
	if (k == 0)
		k = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (k == 0)
		k = posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	if (k == 0)
		k = posix_spawn_file_actions_addopen(&fa, 2, logpath, O_WRONLY | O_APPEND | O_CREAT,
						     0600);
	if (k == 0)
		k = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (k != 0)
		return lxm_error_setx(err, -k, 500, "proxy device '%s': run %s", device, argv[0]);
	/* It exits as soon as the forwarder detached; the forwarder holds the pipe. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	k = read_report(rd, line, sizeof(line));
	if (k < 0)
		return lxm_error_setx(err, k, 500, "proxy device '%s': wait for %s to listen",
				      device, argv[0]);
	if (streq(line, "ready"))
		return 0;
	if (startswith(line, "error "))
		return lxm_error_set(err, -EIO, 400, "%s", line + 6);
	return lxm_error_set(err, -EIO, 500,
			     "proxy device '%s': %s exited (status %d) without saying it listens",
			     device, argv[0], WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Makes instance's forwarders those of fwd (device -> {listen, connect, bind}; NULL: none). */
static int apply_forwarders(struct lxmd *d, const char *instance, json_t *fwd,
			    struct lxm_error **err)
{
	_cleanup_free_ char *dir = NULL, *helper = NULL, *logdir = NULL, *logpath = NULL;
	_cleanup_json_ json_t *keep = json_object(), *started = json_array();
	_cleanup_closedir_ DIR *dh = NULL;
	const char *device;
	struct dirent *de;
	pid_t init_pid = 0;
	json_t *spec;
	int k = 0;

	if (!keep || !started)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (forwarders_dir(d, instance, &dir) < 0 ||
	    lxmd_find_helper(PROXY_HELPER, "LXM_PROXY", &helper) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (json_object_size(fwd) &&
	    (k = lxmd_instance_running(d, instance, &init_pid, NULL, err)) < 0)
		return k;

	/* Forwarders already running exactly as wanted stay (an lxmd restart, or devices that did
	 * not change); the others end. */
	dh = opendir(dir);
	while (dh && (de = readdir(dh))) {
		_cleanup_free_ char *name = NULL, *path = NULL;
		struct fwd_argv a;
		size_t n = strlen(de->d_name);
		pid_t pid;

		if (n <= 4 || !streq(de->d_name + n - 4, ".pid"))
			continue;
		if (!(name = strndup(de->d_name, n - 4)) ||
		    asprintf(&path, "%s/%s", dir, de->d_name) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		spec = json_object_get(fwd, name);
		pid = read_pidfile(path);
		if (spec && pid > 0 &&
		    fwd_argv_build(helper, instance, name, init_pid, spec, dir, &a) == 0) {
			bool same = runs(pid, a.argv);

			fwd_argv_free(&a);
			if (same) {
				json_object_set_new(keep, name, json_true());
				continue;
			}
		}
		stop_forwarder(instance, path);
	}
	if (!json_object_size(fwd)) {
		(void)rmdir(dir);
		return 0;
	}

	if ((k = lxm_mkdir_p(dir, 0700)) < 0)
		return lxm_error_setx(err, k, 500, "proxy devices: create %s", dir);
	if (asprintf(&logdir, "%s/logs/%s", d->cfg.root, instance) < 0 ||
	    asprintf(&logpath, "%s/proxy.log", logdir) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if ((k = lxm_mkdir_p(logdir, 0700)) < 0)
		return lxm_error_setx(err, k, 500, "proxy devices: create %s", logdir);
	json_object_foreach (fwd, device, spec) {
		struct fwd_argv a;

		if (json_object_get(keep, device))
			continue;
		if (fwd_argv_build(helper, instance, device, init_pid, spec, dir, &a) < 0) {
			k = lxm_error_set(err, -ENOMEM, 500, "out of memory");
			break;
		}
		/* A stale pidfile (its forwarder gone) must not be mistaken for the new one's. */
		unlink(a.pidfile);
		k = spawn_forwarder(device, a.argv, logpath, err);
		if (k == 0)
			json_array_append_new(started, json_string(a.pidfile));
		fwd_argv_free(&a);
		if (k < 0)
			break;
		log_info("instance '%s': proxy device '%s': forwarder listens on %s", instance,
			 device, json_string_value(json_object_get(spec, "listen")));
	}
	if (k < 0) {
		size_t i;
		json_t *v;

		/* A change that fails leaves none of what it started. */
		json_array_foreach (started, i, v)
			stop_forwarder(instance, json_string_value(v));
		(void)rmdir(dir);
	}
	return k;
}

int lxmd_proxies_apply(struct lxmd *d, const char *instance, json_t *plan, struct lxm_error **err)
{
	int k;

	k = apply_forwarders(d, instance, json_object_get(plan, "forwarders"), err);
	if (k < 0)
		return k;
	return apply_nat(d, instance, json_object_get(plan, "nat"), err);
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
	lxm_error_free(TAKE_PTR(err));
	if (apply_forwarders(d, instance, NULL, &err) < 0)
		log_error("instance '%s': stop the forwarders of its proxy devices: %s", instance,
			  err->msg);
}
