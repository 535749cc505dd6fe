/* What lxm-monitor's supervising modes share (monitor-common.c): detaching from lxmd, the
 * console pty and its size-capped log, the control socket and its console ops, signals, the poll
 * loop that runs until the supervised process is reaped, and exit.json. The container mode
 * (monitor-start.c) and the VM mode (monitor-vm.c) each supply the process and the ops that act
 * on it (stop, kill, status, ...) through struct monitor_ops. */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "error.h"
#include "monitor/monitor-internal.h"

/* Connections served at once; more wait in the listen backlog. */
#define MONITOR_MAX_CLIENTS 8
/* A client that sends no complete request in this time is dropped. */
#define MONITOR_CLIENT_TIMEOUT_MS 5000
/* How long the kernel gets to empty a cgroup after init died before rmdir gives up. */
#define MONITOR_RMDIR_TIMEOUT_MS 2000
/* Read size for the console; also the copy unit when the log is trimmed. */
#define MONITOR_CONSOLE_CHUNK 4096
/* Console output queued for an attached client past which the client is dropped: one that does
 * not read must neither block the loop nor make the monitor buffer without limit. */
#define MONITOR_CONSOLE_QUEUE_MAX (1024 * 1024)

struct monitor;
struct lxm_container_spec;
struct monitor_vm;

/* What a mode adds to the shared loop. */
struct monitor_ops {
	/* Answers a control request whose op is not a console op ("status", "stop", ...): a reply
	 * object (monitor_error_reply() for errors). */
	json_t *(*request)(struct monitor *m, const char *op, const json_t *req);
	/* timer_fd expired (it was armed by the mode, e.g. a stop's deadline). */
	void (*timer)(struct monitor *m);
	/* extra_fd is readable (or hung up). */
	void (*extra)(struct monitor *m, short revents);
};

struct monitor_client {
	int fd;				/* accepted connection, -1 when the slot is free */
	uint64_t deadline;		/* monotonic ms after which the connection is dropped */
	size_t len;			/* bytes of the request in buf */
	char buf[LXM_MONITOR_LINE_MAX]; /* the request line being read */
};

/* The client attached to the console (op "console"): its connection has become a byte stream. */
struct monitor_console {
	int fd;			       /* the connection, -1 when nobody is attached */
	char *out;		       /* console output (and the reply) not yet sent to it */
	size_t out_off;		       /* where the unsent part of out starts */
	size_t out_len;		       /* end of the unsent part */
	size_t out_cap;		       /* allocated size of out */
	char in[LXM_MONITOR_LINE_MAX]; /* its input that the pty has not taken yet */
	size_t in_len;		       /* bytes in in; the client is not read while there are any */
};

struct monitor {
	const struct monitor_ops *ops; /* the mode's ops */
	const char *name;	       /* the instance's name (borrowed from the mode's spec) */
	const char *rundir;	       /* its run directory: monitor.log, exit.json */
	const char *control_socket;    /* the control socket's path */
	const char *console_log;       /* the console log's path, or NULL: no log */
	uint64_t console_log_max;      /* the log's cap in bytes (0: none) */
	pid_t pid;		       /* our own pid, the "monitor_pid" lxmd sees */
	pid_t init_pid;		       /* the supervised process (init, or QEMU) */
	int pidfd;		       /* its pidfd: exit notification, signals */
	int pty_master;		       /* console master; its output goes to the console log */
	int pty_slave; /* kept open here too, so the master never sees a hangup (and poll never
			  spins on POLLHUP) while nobody has the console open */
	int ctl_fd;    /* listening control socket */
	int sig_fd;    /* signalfd: the signals the monitor survives (TERM, INT, HUP) and SIGCHLD */
	int timer_fd;  /* the mode's deadline (a stop's SIGKILL); -1 until the first one */
	int extra_fd;  /* a mode's own fd in the loop (the VM's QMP connection), or -1 */
	int log_fd;    /* console log (not O_APPEND: trimming rewrites it), or -1 */
	uint64_t log_size;   /* bytes in the console log */
	bool ctl_created;    /* we bound the control socket, so we unlink it at the end */
	bool init_reaped;    /* the process's exit status was collected */
	int64_t started_at;  /* CLOCK_REALTIME ns at which it started */
	siginfo_t init_exit; /* how it ended, once init_reaped */
	struct monitor_client clients[MONITOR_MAX_CLIENTS];
	struct monitor_console console; /* the attached console client, if any */
	/* Container mode. */
	struct lxm_container_spec *spec; /* what we run */
	int sync_fd;			 /* our end of the sync socketpair with the child */
	int cgroup_fd;			 /* O_PATH fd of spec->cgroup_v2 for CLONE_INTO_CGROUP */
	size_t nics_up; /* spec->nics[0..nics_up-1] have their veth (removed if the start fails) */
	/* VM mode. */
	struct monitor_vm *vm; /* the VM's spec and state */
};

/* Writes j as one line to fd and releases it. */
int monitor_write_json_line(int fd, json_t *j);
/* A mode's command line (argv[1]: the spec's path; --help prints the usage of mode, whose what
 * says what it does): true to go on, false with the status to exit with. Closes every fd above
 * stderr before going on. */
bool monitor_check_args(int argc, char **argv, const char *mode, const char *what, int *ret_status);
/* The spec could not be loaded: tells lxmd why; the status to exit with. */
int monitor_load_failed(struct lxm_error **err);
/* monitor_detach(), then a new monitor with the mode's ops in the detached process (which exits
 * if there is no memory for it). NULL in the original process, with the status to exit with. */
struct monitor *monitor_new_detached(const struct monitor_ops *ops, int *ret_status);
/* Points m at the instance the mode's spec describes (the strings stay the spec's). */
void monitor_set_instance(struct monitor *m, const char *name, const char *rundir,
			  const char *control_socket, const char *console_log,
			  uint64_t console_log_max);
/* The first steps of a start: stdio, signals, the console pty (opened by open_console, which
 * wraps monitor_open_console()) and the control socket. */
int monitor_setup(struct monitor *m, int (*open_console)(struct monitor *m, struct lxm_error **err),
		  struct lxm_error **err);
/* A start failed: logs err (prefixed with the instance), undoes what the start did with undo and
 * then tells lxmd. */
void monitor_start_failed(struct monitor *m, struct lxm_error **err,
			  void (*undo)(struct monitor *m));
/* Tells lxmd that the supervised process (what: "container", "VM") runs and lets go of its
 * pipe. */
void monitor_report_running(struct monitor *m, const char *what);
/* Logs how the supervised process (what: "init", "QEMU") ended. */
void monitor_log_exit(struct monitor *m, const char *what);
/* The failure line lxmd reads instead of the ready line. */
void monitor_print_error_line(const char *msg);
/* fork, setsid, fork (see monitor-common.c): true in the monitor, false in the original process
 * with the status to exit with. */
bool monitor_detach(int *ret_status);
/* stdin from /dev/null, stderr appended to <rundir>/monitor.log, cwd "/". */
int monitor_setup_stdio(const char *rundir, struct lxm_error **err);
/* The console pty (m->pty_master non-blocking, m->pty_slave). */
int monitor_open_console(struct monitor *m, struct lxm_error **err);
int monitor_open_control_socket(struct monitor *m, struct lxm_error **err);
int monitor_setup_signals(struct monitor *m, struct lxm_error **err);
/* Removes cgroup v2 dir and the v1 dirs (NULL-terminated, may be NULL) and what is below them,
 * retrying while the kernel still holds them. */
void monitor_remove_cgroups(const char *v2, char **v1);
/* Collects the supervised process's exit status, waiting with block. */
void monitor_reap_init(struct monitor *m, bool block);
void monitor_console_log_open(struct monitor *m);
/* Reads what the console has until the pty is empty. */
void monitor_console_drain(struct monitor *m);
json_t *monitor_error_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The reply to op "status" while the supervised process runs. */
json_t *monitor_status_reply(struct monitor *m);
/* Serves until the supervised process has exited and been reaped. */
void monitor_run_loop(struct monitor *m);
/* <rundir>/exit.json from m->init_exit. */
void monitor_write_exit_status(struct monitor *m);
struct monitor *monitor_new(const struct monitor_ops *ops);
/* Closes the shared fds and frees m (the mode frees its own part first). */
void monitor_free(struct monitor *m);
