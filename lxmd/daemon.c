#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "images/images.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "networks.h"
#include "pools.h"
#include "certificates.h"
#include "server-config.h"
#include "server.h"
#include "snapshot-schedule.h"
#include "util.h"
#include "vm/accel.h"
#include "vm/agent-pool.h"

/* Ended operations stay readable this long: LXD keeps 5 s, which loses exec results (pylxd#362). */
#define OPERATION_RETENTION_MS (60 * 1000)
/* How long a shutdown waits for running operations before it closes everything. */
#define SHUTDOWN_GRACE_MS (30 * 1000)

int lxmd_config_finish(struct lxmd_config *cfg)
{
	const char *env = getenv("LXM_DIR");

	if (!cfg->root)
		cfg->root = strdup(env && *env ? env : LXM_DEFAULT_DIR);
	if (!cfg->socket_path && asprintf(&cfg->socket_path, "%s/unix.socket", cfg->root) < 0)
		return -ENOMEM;
	if (!cfg->rundir) {
		/* A private root (tests, a second instance) must not share runtime state. */
		if (streq(cfg->root, LXM_DEFAULT_DIR))
			cfg->rundir = strdup(LXM_DEFAULT_RUNDIR);
		else if (asprintf(&cfg->rundir, "%s/run", cfg->root) < 0)
			return -ENOMEM;
	}
	if (!cfg->proc)
		cfg->proc = strdup("/proc");
	if (!cfg->root || !cfg->rundir || !cfg->proc)
		return -ENOMEM;
	return 0;
}

void lxmd_config_free(struct lxmd_config *cfg)
{
	free(cfg->root);
	free(cfg->socket_path);
	free(cfg->rundir);
	free(cfg->proc);
	memset(cfg, 0, sizeof(*cfg));
}

/* Namespaces every container gets; without any of them lxm cannot keep its promises. */
static const char *const required_ns[] = { "mnt", "pid", "uts", "ipc", "net", "user", "cgroup" };

int lxmd_kernel_check(const char *proc, json_t **ret_features, struct lxm_error **err)
{
	_cleanup_json_ json_t *f = json_object();
	_cleanup_free_ char *path = NULL, *maxns = NULL, *cgroups = NULL;
	bool cgroup2 = false, cgroup1 = false;
	char *line, *save = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(required_ns); i++) {
		free(path);
		if (asprintf(&path, "%s/self/ns/%s", proc, required_ns[i]) < 0)
			return -ENOMEM;
		if (access(path, F_OK) < 0)
			return lxm_error_set(err, -ENOTSUP, 500,
					     "kernel check: %s namespaces are not available (%s "
					     "missing): build the kernel with CONFIG_%s_NS",
					     required_ns[i], path,
					     streq(required_ns[i], "mnt") ? "MNT" : required_ns[i]);
	}
	free(path);
	if (asprintf(&path, "%s/sys/user/max_user_namespaces", proc) < 0)
		return -ENOMEM;
	if (lxm_read_file(path, &maxns, NULL) == 0 && atol(maxns) <= 0)
		return lxm_error_set(err, -ENOTSUP, 500,
				     "kernel check: user namespaces are disabled (%s is 0): set "
				     "user.max_user_namespaces to a positive value",
				     path);
	free(path);
	if (asprintf(&path, "%s/self/ns/time", proc) < 0)
		return -ENOMEM;
	json_object_set_new(f, "time_namespace",
			    json_string(access(path, F_OK) == 0 ? "true" : "false"));

	free(path);
	if (asprintf(&path, "%s/filesystems", proc) < 0)
		return -ENOMEM;
	if (lxm_read_file(path, &cgroups, NULL) < 0)
		return lxm_error_setx(err, -errno, 500, "kernel check: read %s", path);
	for (line = strtok_r(cgroups, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *fs = strrchr(line, '\t');

		fs = fs ? fs + 1 : line;
		cgroup2 |= streq(fs, "cgroup2");
		cgroup1 |= streq(fs, "cgroup");
	}
	if (!cgroup2 && !cgroup1)
		return lxm_error_set(err, -ENOTSUP, 500,
				     "kernel check: no cgroup filesystem in %s: build the kernel "
				     "with CONFIG_CGROUPS",
				     path);
	json_object_set_new(f, "cgroup2", json_string(cgroup2 ? "true" : "false"));
	json_object_set_new(f, "cgroup1", json_string(cgroup1 ? "true" : "false"));
	*ret_features = TAKE_PTR(f);
	return 0;
}

int lxmd_lock_root(const char *root, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -1;
	char pid[32];
	int n;

	if (asprintf(&path, "%s/lxmd.lock", root) < 0)
		return -ENOMEM;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "lock %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		n = (int)pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			return lxm_error_set(err, -EBUSY, 500,
					     "another lxmd (pid %s) is already using %s: stop it "
					     "first or choose another --root",
					     *pid ? pid : "unknown", root);
		return lxm_error_setx(err, -e, 500, "lock %s", path);
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		return lxm_error_setx(err, -errno, 500, "write pid to %s", path);
	return TAKE_FD(fd);
}

int lxmd_instance_path(const struct lxmd *d, const char *name, char **ret)
{
	return asprintf(ret, "%s/containers/%s", d->cfg.root, name) < 0 ? -ENOMEM : 0;
}

static void on_operation_change(struct lxm_operation *op, void *ud)
{
	struct lxmd *d = ud;

	lxm_events_emit(d->events, LXM_EVENT_OPERATION, lxm_operation_to_json(op));
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct lxmd *d = s->data;

	log_info("received %s, shutting down", strsignal(signum));
	lxmd_shutdown(d);
}

static int config_copy(struct lxmd_config *dst, const struct lxmd_config *src)
{
	*dst = (struct lxmd_config){
		.root = strdup(src->root),
		.socket_path = strdup(src->socket_path),
		.rundir = strdup(src->rundir),
		.proc = strdup(src->proc),
		.level = src->level,
		.foreground = src->foreground,
	};
	return dst->root && dst->socket_path && dst->rundir && dst->proc ? 0 : -ENOMEM;
}

int lxmd_init(struct lxmd *d, uv_loop_t *loop, const struct lxmd_config *cfg,
	      struct lxm_error **err)
{
	_cleanup_free_ char *dbpath = NULL, *logpath = NULL, *containers = NULL;
	int k;

	memset(d, 0, sizeof(*d));
	d->loop = loop;
	d->lock_fd = -1;
	d->started_at = lxm_now_ns();
	if (config_copy(&d->cfg, cfg) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");

	if (geteuid() != 0)
		return lxm_error_set(err, -EPERM, 500,
				     "lxmd must run as root (it creates namespaces, cgroups and "
				     "mounts): run it with sudo or as a system service");
	k = lxmd_kernel_check(cfg->proc, &d->kernel_features, err);
	if (k < 0)
		goto fail;
	/* 0711: other users may reach the socket and their own instances' files, not list them. */
	k = lxm_mkdir_p(cfg->root, 0711);
	if (k < 0) {
		lxm_error_setx(err, k, 500, "create root directory %s", cfg->root);
		goto fail;
	}
	/* Unprivileged containers (host uids of root's subordinate range) must traverse the root
	 * to reach their rootfs, never list it. */
	{
		struct stat st;

		if (stat(cfg->root, &st) == 0 && (st.st_mode & 0711) != 0711 &&
		    chmod(cfg->root, (st.st_mode & 07777) | 0711) < 0) {
			k = lxm_error_setx(err, -errno, 500, "set mode 0711 on root directory %s",
					   cfg->root);
			goto fail;
		}
	}
	k = lxmd_lock_root(cfg->root, err);
	if (k < 0)
		goto fail;
	d->lock_fd = k;
	if (asprintf(&logpath, "%s/lxmd.log", cfg->root) < 0 ||
	    asprintf(&dbpath, "%s/lxm.db", cfg->root) < 0 ||
	    asprintf(&containers, "%s/containers", cfg->root) < 0) {
		k = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		goto fail;
	}
	k = lxm_log_open_file(logpath);
	if (k < 0) {
		lxm_error_setx(err, k, 500, "open log file %s", logpath);
		goto fail;
	}
	if ((k = lxm_mkdir_p(cfg->rundir, 0711)) < 0 || (k = lxm_mkdir_p(containers, 0711)) < 0) {
		lxm_error_setx(err, k, 500, "create state directories under %s and %s", cfg->rundir,
			       cfg->root);
		goto fail;
	}
	k = lxm_db_open(dbpath, &d->db, err);
	if (k < 0)
		goto fail;
	k = lxmd_pools_init(d, err);
	if (k < 0)
		goto fail;
	k = lxmd_networks_init(d, err);
	if (k < 0)
		goto fail;
	k = lxmd_instances_recover(d, err);
	if (k < 0)
		goto fail;
	k = lxmd_runtime_init(d, err);
	if (k < 0)
		goto fail;
	k = lxmd_images_init(d, err);
	if (k < 0)
		goto fail;
	if ((k = lxm_events_new(&d->events)) < 0 ||
	    (k = lxm_operations_new(loop, OPERATION_RETENTION_MS, on_operation_change, d,
				    &d->ops)) < 0) {
		lxm_error_setx(err, k, 500, "set up operations");
		goto fail;
	}
	k = lxmd_server_new(d, cfg->socket_path, &d->server, err);
	if (k < 0)
		goto fail;

	uv_signal_init(loop, &d->sig_term);
	uv_signal_init(loop, &d->sig_int);
	d->sig_term.data = d->sig_int.data = d;
	uv_signal_start(&d->sig_term, on_signal, SIGTERM);
	uv_signal_start(&d->sig_int, on_signal, SIGINT);
	uv_timer_init(loop, &d->shutdown_timer);
	d->shutdown_timer.data = d;
	k = lxmd_snapshot_schedule_start(d, err);
	if (k < 0)
		goto fail;
	/* images.auto_update_interval and images.remote_cache_expiry. */
	k = lxmd_server_config_start(d, err);
	if (k < 0)
		goto fail;
	/* Instances that should autostart start once the loop runs; SIGPWR stops them all. */
	k = lxmd_boot_init(d, err);
	if (k < 0)
		goto fail;
	/* core.https_address: a listener that cannot start (the port is taken now) is logged,
	 * the unix socket still serves so that the admin can fix the address. */
	{
		_cleanup_free_ char *https = lxmd_server_config_string(d, "core.https_address");
		_cleanup_error_ struct lxm_error *herr = NULL;

		if (https && *https && lxmd_https_set(d, https, &herr) < 0)
			log_error("%s", herr ? herr->msg : "HTTPS listener: failed to start");
	}
	/* Writes to a client that went away must not kill the daemon. */
	signal(SIGPIPE, SIG_IGN);
	/* KVM or TCG for VMs: answered off the loop, GET /1.0 says "probing" until then. */
	lxmd_vm_accel_start(d);
	log_info("lxmd %s ready: root %s, socket %s", PACKAGE_VERSION, cfg->root, cfg->socket_path);
	return 0;
fail:
	lxmd_fini(d);
	return k;
}

static void finish_shutdown(struct lxmd *d)
{
	uv_timer_stop(&d->shutdown_timer);
	uv_close((uv_handle_t *)&d->shutdown_timer, NULL);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	/* Image builds and unpacks still running are abandoned (their operations fail). */
	lxmd_images_fini(d);
	/* Running containers keep running: only lxmd's watch on their monitors ends. */
	lxmd_runtime_fini(d);
	/* dnsmasq ends with lxmd and starts again with it; bridges and rules stay. */
	lxmd_networks_stop(d);
	/* Before the operations it may wait on are freed. */
	lxmd_boot_fini(d);
	lxm_operations_free(TAKE_PTR(d->ops));
}

static void shutdown_poll(uv_timer_t *t)
{
	struct lxmd *d = t->data;
	size_t running = lxm_operations_running(d->ops);

	if (running == 0 || lxm_monotonic_ms() >= d->shutdown_deadline) {
		if (running)
			log_warn("shutdown: %zu operations still running after %d s; stopping "
				 "anyway",
				 running, SHUTDOWN_GRACE_MS / 1000);
		finish_shutdown(d);
	}
}

void lxmd_shutdown(struct lxmd *d)
{
	if (d->shutting_down)
		return;
	d->shutting_down = true;
	lxmd_snapshot_schedule_stop(d);
	lxmd_server_config_stop(d);
	/* Join tokens (running operations) end with lxmd: the wait below is not for them. */
	lxmd_tokens_clear();
	/* No new requests; then wait (bounded) for work already in the thread pool, whose
	 * callbacks still use the operations table. */
	lxmd_server_close(TAKE_PTR(d->server));
	if (d->https)
		lxmd_server_close(TAKE_PTR(d->https));
	/* Exec and file sessions in VMs end now, and nothing waits for a booting guest. */
	lxmd_vm_agents_fini(d);
	d->shutdown_deadline = lxm_monotonic_ms() + SHUTDOWN_GRACE_MS;
	uv_timer_start(&d->shutdown_timer, shutdown_poll, 0, 50);
}

void lxmd_fini(struct lxmd *d)
{
	/* Only reached without a running loop on init failure: nothing async is pending then. */
	if (d->server)
		lxmd_server_close(TAKE_PTR(d->server));
	if (d->https)
		lxmd_server_close(TAKE_PTR(d->https));
	lxmd_tokens_clear();
	/* The image timers of an init that failed later (the caller's uv_run closes them). */
	lxmd_server_config_stop(d);
	lxmd_images_fini(d);
	lxmd_runtime_fini(d);
	if (d->ops)
		lxm_operations_free(TAKE_PTR(d->ops));
	lxm_events_free(TAKE_PTR(d->events));
	lxmd_pools_fini(d);
	lxmd_networks_fini(d);
	lxm_db_close(TAKE_PTR(d->db));
	json_decref(TAKE_PTR(d->kernel_features));
	lxmd_vm_accel_fini(d);
	if (d->lock_fd >= 0) {
		close(d->lock_fd);
		d->lock_fd = -1;
	}
	lxmd_config_free(&d->cfg);
}
