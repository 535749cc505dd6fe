/* lxm-monitor vm: supervises one QEMU VM (issue 9) as the start mode supervises a container's
 * init, with the same detaching, console pty and log, control socket and exit.json
 * (monitor-common.c). lxmd runs
 *     lxm-monitor vm <spec.json>
 * (vm/vm-spec.h has the spec) and reads the same ready line as for containers, init_pid being
 * QEMU's pid:
 *     {"status":"Running","init_pid":QEMU,"monitor_pid":M}   or   {"error":"..."}
 *
 * Order of events: the console pty and the control socket; the nics' taps (made persistent, so
 * that QEMU opens them by name, attached to their bridges and up); QEMU, cloned straight into the
 * VM's cgroup with the pty's slave as an inherited fd (qemu.c passes it with -add-fd) and its
 * stderr on monitor.log; then QMP on qmp.sock, which the monitor keeps in its poll loop for
 * QEMU's events. When QEMU exits, the taps, the cgroups, the sockets go, and exit.json says how
 * QEMU ended (exit_code 0: the guest powered off or was told to quit; signal 9: killed).
 *
 * Control ops beyond the console ones (monitor.h):
 *   {"op":"status"}                 -> as for containers (init_pid is QEMU's)
 *   {"op":"stop","timeout":T}       -> {"ok":true}: the ACPI power button (system_powerdown),
 *                                      pressed again every MONITOR_VM_REPRESS_S (a booting
 *                                      guest may miss a press); after T seconds (default: the
 * spec's stop_timeout; < 0: never) "quit", and SIGKILL MONITOR_VM_KILL_S later
 *   {"op":"kill"}                   -> {"ok":true}: "quit", SIGKILL MONITOR_VM_KILL_S later
 *   {"op":"freeze"} / {"op":"unfreeze"} -> {"ok":true}: QMP stop / cont (the vCPUs pause)
 *   {"op":"state"}                  -> {"status":"running"|"paused"|..., "qemu_pid":N,
 *                                      "started_at":ns, "vcpus":[{"index":I,"thread_id":T}],
 *                                      "memory":{"base":bytes}}
 *
 * A guest reboot: QEMU runs with -no-reboot, so the guest's reset ends QEMU with a SHUTDOWN event
 * whose reason is "guest-reset"; unless a stop was asked for, the monitor then starts QEMU again
 * (same taps, console and cgroup), as LXD restarts a VM whose guest rebooted. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>

#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "monitor/monitor-common.h"
#include "monitor/monitor.h"
#include "network/network.h"
#include "vm/qemu.h"
#include "vm/qmp.h"
#include "vm/vm-spec.h"

/* How long QEMU gets to open its QMP socket after it started. */
#define MONITOR_VM_QMP_CONNECT_MS (30 * 1000)
/* Bound of one QMP command in the loop. */
#define MONITOR_VM_QMP_TIMEOUT_MS 3000
/* Seconds between "quit" and SIGKILL. */
#define MONITOR_VM_KILL_S 5
/* Seconds between presses of the power button while a stop waits for the guest. */
#define MONITOR_VM_REPRESS_S 5

enum vm_stop_phase {
	VM_STOP_NONE,	   /* nobody asked for a stop */
	VM_STOP_POWERDOWN, /* the power button was pressed; the timer quits */
	VM_STOP_QUIT,	   /* "quit" was sent; the timer kills */
};

struct monitor_vm {
	struct lxm_vm_spec *spec; /* what we run */
	struct lxm_qmp *qmp;	  /* QEMU's QMP connection, or NULL */
	size_t taps_up;		  /* spec->nics[0..taps_up-1] have their tap */
	enum vm_stop_phase stop;  /* how far a stop went */
	uint64_t stop_deadline;	  /* with VM_STOP_POWERDOWN: monotonic ms of the quit, 0: never */
	bool reset;		  /* QEMU ended for a guest reset (a reboot) */
	unsigned restarts;	  /* QEMU starts after reboots */
};

/* ---- taps ---- */

static int ifreq_ioctl(int sock, unsigned long req, struct ifreq *ifr)
{
	return ioctl(sock, req, ifr) < 0 ? -errno : 0;
}

/* Creates nic n's tap as QEMU opens it (a tap without packet info, with virtio-net headers),
 * persistent so that it outlives our fd, then sets its MTU, puts it on its bridge and up. */
static int tap_create(const struct lxm_vm_spec_nic *n, struct lxm_error **err)
{
	_cleanup_close_ int tun = -1, sock = -1;
	struct ifreq ifr = { 0 };
	unsigned mtu = n->mtu;
	int r;

	if (strlen(n->host_name) >= IFNAMSIZ)
		return lxm_error_set(err, -EINVAL, 400, "nic '%s': tap name '%s' is too long",
				     n->device, n->host_name);
	tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (tun < 0)
		return lxm_error_setx(err, -errno, 500, "nic '%s': open /dev/net/tun", n->device);
	memcpy(ifr.ifr_name, n->host_name, strlen(n->host_name) + 1);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if ((r = ifreq_ioctl(tun, TUNSETIFF, &ifr)) < 0)
		return lxm_error_setx(err, r, r == -EBUSY ? 409 : 500,
				      "nic '%s': create tap %s (TUNSETIFF)", n->device,
				      n->host_name);
	if (ioctl(tun, TUNSETPERSIST, 1) < 0) {
		r = -errno;
		return lxm_error_setx(err, r, 500, "nic '%s': make tap %s persistent", n->device,
				      n->host_name);
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return lxm_error_setx(err, -errno, 500, "nic '%s': socket", n->device);
	if (n->bridge) {
		struct ifreq br = { 0 };

		if (strlen(n->bridge) >= IFNAMSIZ)
			return lxm_error_set(err, -EINVAL, 400,
					     "nic '%s': bridge name '%s' is too long", n->device,
					     n->bridge);
		memcpy(br.ifr_name, n->bridge, strlen(n->bridge) + 1);
		if (!mtu) {
			if ((r = ifreq_ioctl(sock, SIOCGIFMTU, &br)) < 0)
				return lxm_error_setx(err, r, r == -ENODEV ? 404 : 500,
						      "nic '%s': bridge %s", n->device, n->bridge);
			mtu = (unsigned)br.ifr_mtu;
		}
	}
	if (mtu) {
		struct ifreq m = { .ifr_mtu = (int)mtu };

		memcpy(m.ifr_name, n->host_name, strlen(n->host_name) + 1);
		if ((r = ifreq_ioctl(sock, SIOCSIFMTU, &m)) < 0)
			return lxm_error_setx(err, r, 500, "nic '%s': set MTU %u on tap %s",
					      n->device, mtu, n->host_name);
	}
	if (n->bridge) {
		struct ifreq br = { 0 }, idx = { 0 };

		memcpy(idx.ifr_name, n->host_name, strlen(n->host_name) + 1);
		if ((r = ifreq_ioctl(sock, SIOCGIFINDEX, &idx)) < 0)
			return lxm_error_setx(err, r, 500, "nic '%s': tap %s", n->device,
					      n->host_name);
		memcpy(br.ifr_name, n->bridge, strlen(n->bridge) + 1);
		br.ifr_ifindex = idx.ifr_ifindex;
		if ((r = ifreq_ioctl(sock, SIOCBRADDIF, &br)) < 0)
			return lxm_error_setx(err, r, r == -ENODEV ? 404 : 500,
					      "nic '%s': attach tap %s to bridge %s", n->device,
					      n->host_name, n->bridge);
	}
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, n->host_name, strlen(n->host_name) + 1);
	if ((r = ifreq_ioctl(sock, SIOCGIFFLAGS, &ifr)) < 0)
		return lxm_error_setx(err, r, 500, "nic '%s': tap %s flags", n->device,
				      n->host_name);
	ifr.ifr_flags |= IFF_UP;
	if ((r = ifreq_ioctl(sock, SIOCSIFFLAGS, &ifr)) < 0)
		return lxm_error_setx(err, r, 500, "nic '%s': set tap %s up", n->device,
				      n->host_name);
	return 0;
}

static void taps_remove(struct monitor_vm *vm)
{
	for (size_t i = 0; i < vm->taps_up; i++) {
		struct lxm_error *e = NULL;

		if (lxm_link_delete(vm->spec->nics[i].host_name, &e) < 0) {
			log_warn("nic '%s': remove tap %s: %s", vm->spec->nics[i].device,
				 vm->spec->nics[i].host_name, e->msg);
			lxm_error_free(e);
		}
	}
	vm->taps_up = 0;
}

/* ---- QEMU ---- */

/* Clones QEMU into the VM's cgroup (v2 by CLONE_INTO_CGROUP, v1 dirs joined by the child before
 * exec) with the console slave as fd qemu.console_fd. */
static int spawn_qemu(struct monitor *m, struct lxm_error **err)
{
	struct monitor_vm *vm = m->vm;
	struct lxm_vm_spec *s = vm->spec;
	_cleanup_(lxm_strv_freep) char **argv = NULL;
	_cleanup_close_ int cgroup_fd = -1;
	struct clone_args args = {
		.flags = CLONE_PIDFD,
		.pidfd = (uint64_t)(uintptr_t)&m->pidfd,
		.exit_signal = SIGCHLD,
	};
	long pid;
	int r;

	s->qemu.console_fd = m->pty_slave;
	r = lxm_qemu_argv(&s->qemu, &argv, err);
	if (r < 0)
		return r;
	if (s->cgroup_v2) {
		cgroup_fd = open(s->cgroup_v2, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (cgroup_fd < 0)
			return lxm_error_setx(err, -errno, 500, "open cgroup %s", s->cgroup_v2);
		args.flags |= CLONE_INTO_CGROUP;
		args.cgroup = (uint64_t)cgroup_fd;
	}
	pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0)
		return lxm_error_setx(err, -errno, 500, "clone3 for QEMU%s%s",
				      s->cgroup_v2 ? " into cgroup " : "",
				      s->cgroup_v2 ? s->cgroup_v2 : "");
	if (pid == 0) {
		sigset_t none;
		char line[32];
		int len = snprintf(line, sizeof(line), "%d\n", (int)getpid());

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		/* stdout to /dev/null (stdin's), stderr stays on monitor.log. */
		dup2(STDIN_FILENO, STDOUT_FILENO);
		for (char **d = s->cgroup_v1; d && *d; d++) {
			_cleanup_free_ char *p = NULL;
			int fd;

			if (asprintf(&p, "%s/cgroup.procs", *d) < 0)
				_exit(127);
			fd = open(p, O_WRONLY | O_CLOEXEC);
			if (fd < 0 || write(fd, line, (size_t)len) != len) {
				fprintf(stderr, "QEMU: join cgroup %s: %s\n", *d, strerror(errno));
				_exit(127);
			}
			close(fd);
		}
		/* The console slave is the one fd QEMU inherits. */
		if (fcntl(m->pty_slave, F_SETFD, 0) < 0)
			_exit(127);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	m->init_pid = (pid_t)pid;
	m->init_reaped = false;
	log_info("QEMU started: pid %d (%s, %u vCPUs, %llu MiB)", (int)pid,
		 lxm_qemu_accel_to_string(s->qemu.accel), s->qemu.vcpus,
		 (unsigned long long)s->qemu.memory_mib);
	return 0;
}

/* QEMU's last complaint in monitor.log (its stderr) as ": <line>", or "". */
static void qemu_last_error(struct monitor *m, char *buf, size_t size)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	/* QEMU prefixes its messages with its name, or with "qemu" before it parsed its options. */
	static const char *const tags[] = { LXM_QEMU_BINARY ": ", "qemu: " };
	const char *p, *last = NULL;
	size_t len;

	buf[0] = '\0';
	if (asprintf(&path, "%s/monitor.log", m->rundir) < 0 ||
	    lxm_read_file(path, &text, NULL) < 0)
		return;
	for (size_t t = 0; t < ARRAY_SIZE(tags); t++)
		for (p = strstr(text, tags[t]); p; p = strstr(p + 1, tags[t]))
			if (!last || p > last)
				last = p;
	if (!last)
		return;
	len = strcspn(last, "\n");
	snprintf(buf, size, ": %.*s", (int)len, last);
}

/* Connects QMP; QEMU dying meanwhile ends the wait with its status. */
static int connect_qmp(struct monitor *m, struct lxm_error **err)
{
	struct monitor_vm *vm = m->vm;
	uint64_t deadline = lxm_monotonic_ms() + MONITOR_VM_QMP_CONNECT_MS;
	int r;

	for (;;) {
		struct lxm_error *e = NULL;

		r = lxm_qmp_connect(vm->spec->qemu.qmp_socket, 200, &vm->qmp, &e);
		if (r >= 0)
			break;
		monitor_reap_init(m, false);
		if (m->init_reaped) {
			char why[512];

			lxm_error_free(e);
			qemu_last_error(m, why, sizeof(why));
			if (m->init_exit.si_code == CLD_EXITED)
				return lxm_error_set(
					err, -EIO, 500,
					"QEMU exited with status %d before it answered "
					"on QMP%s (see %s/monitor.log)",
					m->init_exit.si_status, why, m->rundir);
			return lxm_error_set(err, -EIO, 500,
					     "QEMU was killed by signal %d before it answered on "
					     "QMP (see %s/monitor.log)",
					     m->init_exit.si_status, m->rundir);
		}
		if (lxm_monotonic_ms() >= deadline) {
			*err = e;
			return lxm_error_prefix(err, "QMP");
		}
		lxm_error_free(e);
	}
	m->extra_fd = lxm_qmp_fd(vm->qmp);
	log_info("QMP connected: QEMU %s", lxm_qmp_version(vm->qmp));
	return 0;
}

static void qmp_close(struct monitor *m)
{
	lxm_qmp_close(m->vm->qmp);
	m->vm->qmp = NULL;
	m->extra_fd = -1;
}

/* Acts on QEMU's queued events: a SHUTDOWN for a guest reset is a reboot. */
static void handle_events(struct monitor *m)
{
	struct monitor_vm *vm = m->vm;
	json_t *ev;

	while (vm->qmp && lxm_qmp_next_event(vm->qmp, 0, &ev, NULL) == 1) {
		enum lxm_qmp_event kind = lxm_qmp_event_kind(ev);
		const char *reason =
			json_string_value(json_object_get(json_object_get(ev, "data"), "reason"));

		if (kind == LXM_QMP_EVENT_SHUTDOWN) {
			log_info("QEMU shutting down: %s", reason ? reason : "(no reason)");
			if (reason && streq(reason, "guest-reset"))
				vm->reset = true;
		} else if (kind == LXM_QMP_EVENT_POWERDOWN) {
			log_info("ACPI power button pressed");
		}
		json_decref(ev);
	}
}

static void vm_extra(struct monitor *m, short revents)
{
	struct lxm_error *e = NULL;

	(void)revents;
	if (!m->vm->qmp)
		return;
	if (lxm_qmp_read_events(m->vm->qmp, &e) < 0) {
		/* QEMU closed QMP: it is exiting; its pidfd tells the rest. */
		handle_events(m);
		lxm_error_free(e);
		qmp_close(m);
		return;
	}
	handle_events(m);
}

static int arm_timer(struct monitor *m, int seconds)
{
	struct itimerspec its = { .it_value.tv_sec = seconds };

	if (m->timer_fd < 0)
		m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (m->timer_fd < 0 || timerfd_settime(m->timer_fd, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

/* "quit", then SIGKILL when QEMU is still there MONITOR_VM_KILL_S later. */
static void quit_qemu(struct monitor *m)
{
	struct lxm_error *e = NULL;

	m->vm->stop = VM_STOP_QUIT;
	if (m->vm->qmp && lxm_qmp_quit(m->vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &e) < 0) {
		log_warn("stop: %s; SIGKILL to QEMU %d", e->msg, (int)m->init_pid);
		lxm_error_free(e);
		(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
		return;
	}
	if (arm_timer(m, MONITOR_VM_KILL_S) < 0) {
		log_warn("stop: arm the SIGKILL timer: %s; SIGKILL to QEMU now", strerror(errno));
		(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
	}
}

/* The power button again after MONITOR_VM_REPRESS_S (a guest still booting may not have
 * listened to the first press), or the quit at the deadline, whichever comes first. */
static int arm_powerdown_timer(struct monitor *m)
{
	uint64_t now = lxm_monotonic_ms(), left;

	if (!m->vm->stop_deadline)
		return arm_timer(m, MONITOR_VM_REPRESS_S);
	left = m->vm->stop_deadline > now ? (m->vm->stop_deadline - now + 999) / 1000 : 1;
	return arm_timer(m, left < MONITOR_VM_REPRESS_S ? (int)left : MONITOR_VM_REPRESS_S);
}

static void vm_timer(struct monitor *m)
{
	struct lxm_error *e = NULL;

	if (m->vm->stop == VM_STOP_POWERDOWN && m->vm->stop_deadline &&
	    lxm_monotonic_ms() >= m->vm->stop_deadline) {
		log_info("stop: the guest did not power off in time: quit");
		quit_qemu(m);
	} else if (m->vm->stop == VM_STOP_POWERDOWN) {
		if (m->vm->qmp &&
		    lxm_qmp_powerdown(m->vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &e) < 0) {
			log_warn("stop: press the power button again: %s", e->msg);
			lxm_error_free(e);
		}
		handle_events(m);
		if (arm_powerdown_timer(m) < 0)
			log_warn("stop: arm the timer: %s", strerror(errno));
	} else if (m->vm->stop == VM_STOP_QUIT) {
		log_info("stop: QEMU %d still there after quit: SIGKILL", (int)m->init_pid);
		(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
	}
}

static json_t *ok_reply(void)
{
	return json_pack("{s:b}", "ok", 1);
}

static json_t *qmp_error_reply(const char *op, struct lxm_error *e)
{
	json_t *reply = monitor_error_reply("%s: %s", op, e ? e->msg : "QMP is not connected");

	lxm_error_free(e);
	return reply;
}

static json_t *op_stop(struct monitor *m, const json_t *req)
{
	json_t *jtimeout = json_object_get(req, "timeout");
	json_int_t timeout = m->vm->spec->stop_timeout;
	struct lxm_error *e = NULL;
	enum lxm_qmp_status st;

	if (jtimeout && !json_is_null(jtimeout)) {
		if (!json_is_integer(jtimeout))
			return monitor_error_reply(
				"stop: 'timeout' must be an integer (seconds, < 0: never)");
		timeout = json_integer_value(jtimeout);
	}
	if (m->vm->stop == VM_STOP_QUIT)
		return ok_reply();
	if (timeout == 0) {
		quit_qemu(m);
		return ok_reply();
	}
	/* A paused (frozen) guest cannot see its power button. */
	if (m->vm->qmp && lxm_qmp_status(m->vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &st, NULL) >= 0 &&
	    st == LXM_QMP_STATUS_PAUSED &&
	    lxm_qmp_cont(m->vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &e) < 0)
		return qmp_error_reply("stop: resume the paused guest", e);
	if (!m->vm->qmp || lxm_qmp_powerdown(m->vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &e) < 0)
		return qmp_error_reply("stop", e);
	handle_events(m);
	m->vm->stop = VM_STOP_POWERDOWN;
	m->vm->stop_deadline = timeout > 0 ? lxm_monotonic_ms() + (uint64_t)timeout * 1000 : 0;
	if (arm_powerdown_timer(m) < 0)
		return monitor_error_reply("stop: arm the timer: %s", strerror(errno));
	log_info("stop: ACPI power button, quit in %lld s", (long long)timeout);
	return ok_reply();
}

static json_t *op_state(struct monitor *m)
{
	struct monitor_vm *vm = m->vm;
	_cleanup_free_ struct lxm_qmp_cpu *cpus = NULL;
	struct lxm_qmp_memory mem = { 0 };
	enum lxm_qmp_status st;
	struct lxm_error *e = NULL;
	_cleanup_json_ json_t *jcpus = NULL;
	size_t n = 0;

	if (!vm->qmp || lxm_qmp_status(vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &st, &e) < 0 ||
	    lxm_qmp_cpus(vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &cpus, &n, &e) < 0 ||
	    lxm_qmp_memory(vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &mem, &e) < 0)
		return qmp_error_reply("state", e);
	jcpus = json_array();
	for (size_t i = 0; jcpus && i < n; i++)
		json_array_append_new(jcpus, json_pack("{s:i,s:i}", "index", cpus[i].index,
						       "thread_id", cpus[i].thread_id));
	return json_pack("{s:s,s:I,s:I,s:I,s:O,s:{s:I,s:I}}", "status",
			 lxm_qmp_status_to_string(st), "qemu_pid", (json_int_t)m->init_pid,
			 "monitor_pid", (json_int_t)m->pid, "started_at", (json_int_t)m->started_at,
			 "vcpus", jcpus, "memory", "base", (json_int_t)mem.base, "plugged",
			 (json_int_t)mem.plugged);
}

static json_t *vm_request(struct monitor *m, const char *op, const json_t *req)
{
	struct lxm_error *e = NULL;

	if (streq(op, "status"))
		return monitor_status_reply(m);
	if (streq(op, "stop"))
		return op_stop(m, req);
	if (streq(op, "kill")) {
		log_info("kill: quit QEMU %d", (int)m->init_pid);
		quit_qemu(m);
		return ok_reply();
	}
	if (streq(op, "freeze")) {
		if (!m->vm->qmp || lxm_qmp_stop(m->vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &e) < 0)
			return qmp_error_reply("freeze", e);
		log_info("freeze: vCPUs stopped");
		return ok_reply();
	}
	if (streq(op, "unfreeze")) {
		if (!m->vm->qmp || lxm_qmp_cont(m->vm->qmp, MONITOR_VM_QMP_TIMEOUT_MS, &e) < 0)
			return qmp_error_reply("unfreeze", e);
		log_info("unfreeze: vCPUs running");
		return ok_reply();
	}
	if (streq(op, "state"))
		return op_state(m);
	return monitor_error_reply("unknown op '%s' (expected status, stop, kill, freeze, "
				   "unfreeze, state, console, console-resize or "
				   "console-log-clear)",
				   op);
}

static const struct monitor_ops vm_ops = {
	.request = vm_request,
	.timer = vm_timer,
	.extra = vm_extra,
};

/* ---- start and end ---- */

static void unlink_sockets(struct monitor *m)
{
	const struct lxm_qemu_vm *q = &m->vm->spec->qemu;

	if (q->qmp_socket)
		unlink(q->qmp_socket);
	if (q->agent_socket)
		unlink(q->agent_socket);
}

/* A start that failed after something was made: undo it. */
static void undo_start(struct monitor *m)
{
	struct lxm_vm_spec *s = m->vm->spec;

	qmp_close(m);
	if (m->pidfd >= 0 && !m->init_reaped) {
		(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
		monitor_reap_init(m, true);
	}
	taps_remove(m->vm);
	monitor_remove_cgroups(s->cgroup_v2, s->cgroup_v1);
	unlink_sockets(m);
	if (m->ctl_created)
		unlink(m->control_socket);
}

static int start_vm(struct monitor *m, struct lxm_error **err)
{
	struct monitor_vm *vm = m->vm;
	int r;

	r = monitor_setup(m, monitor_open_console, err);
	if (r < 0)
		return r;
	/* Leftovers of a QEMU that was killed with its monitor: QEMU refuses a socket path that
	 * exists. */
	unlink_sockets(m);
	for (; vm->taps_up < vm->spec->n_nics; vm->taps_up++) {
		r = tap_create(&vm->spec->nics[vm->taps_up], err);
		if (r < 0) {
			/* A tap that exists but failed later is ours: remove it too. */
			if (r != -EBUSY)
				vm->taps_up++;
			return r;
		}
	}
	r = spawn_qemu(m, err);
	if (r < 0)
		return r;
	return connect_qmp(m, err);
}

/* What --help says the mode does. */
static const char usage_what[] =
	"Starts the QEMU VM described by spec.json, prints one JSON line on stdout\n"
	"and supervises QEMU in the background (see lxmd/monitor/monitor-vm.c).\n";

int lxm_monitor_vm_main(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_vm_spec *spec = NULL;
	struct monitor_vm vm = { 0 };
	struct monitor *m;
	int r, status;

	if (!monitor_check_args(argc, argv, "vm", usage_what, &status))
		return status;

	r = lxm_vm_spec_load(argv[1], &spec, &err);
	if (r < 0)
		return monitor_load_failed(&err);
	m = monitor_new_detached(&vm_ops, &status);
	if (!m) {
		lxm_vm_spec_free(spec);
		return status;
	}
	vm.spec = spec;
	m->vm = &vm;
	monitor_set_instance(m, spec->name, spec->rundir, spec->control_socket, spec->console_log,
			     spec->console_log_max);
	/* The console log gets the firmware's and the kernel's first lines too. */
	monitor_console_log_open(m);
	r = start_vm(m, &err);
	if (r < 0) {
		monitor_start_failed(m, &err, undo_start);
		monitor_free(m);
		lxm_vm_spec_free(spec);
		return 1;
	}
	m->started_at = lxm_now_ns();
	log_info("VM '%s' running: QEMU pid %d, monitor pid %d", spec->name, (int)m->init_pid,
		 (int)m->pid);
	monitor_report_running(m, "VM");

	for (;;) {
		struct lxm_error *e = NULL;

		monitor_run_loop(m);
		monitor_console_drain(m);
		if (m->vm->qmp) {
			/* The last events (the SHUTDOWN's reason) may still be unread. */
			(void)lxm_qmp_read_events(m->vm->qmp, NULL);
			handle_events(m);
		}
		qmp_close(m);
		monitor_log_exit(m, "QEMU");
		if (!vm.reset || vm.stop != VM_STOP_NONE || m->init_exit.si_code != CLD_EXITED)
			break;
		/* The guest rebooted: a new QEMU on the same taps, console and cgroup. */
		vm.reset = false;
		vm.restarts++;
		close(m->pidfd);
		m->pidfd = -1;
		unlink_sockets(m);
		log_info("the guest rebooted: starting QEMU again (restart %u)", vm.restarts);
		if (spawn_qemu(m, &e) < 0 || connect_qmp(m, &e) < 0) {
			log_error("restart after the guest's reboot: %s", e->msg);
			lxm_error_free(e);
			if (m->pidfd >= 0 && !m->init_reaped) {
				(void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
				monitor_reap_init(m, true);
			}
			break;
		}
	}
	monitor_write_exit_status(m);
	taps_remove(&vm);
	monitor_remove_cgroups(spec->cgroup_v2, spec->cgroup_v1);
	unlink_sockets(m);
	if (m->ctl_created)
		unlink(m->control_socket);
	monitor_free(m);
	lxm_vm_spec_free(spec);
	return 0;
}
