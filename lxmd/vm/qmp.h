/* A QMP client (QEMU's machine protocol: one JSON object per line on a unix socket), blocking
 * with deadlines, for lxm-monitor's poll loop and for tools and tests. The connection's fd can
 * sit in a poll() set: when it is readable, lxm_qmp_read_events() takes what QEMU sent without
 * blocking, and lxm_qmp_next_event() hands the events on. A command waits for its own answer
 * (matched by id) and queues the events that arrive meanwhile, so none is lost.
 *
 * Errors name the command and QEMU's error class and text ("qmp 'cont': GenericError:
 * ..."); a connection that breaks or sends what is not QMP is -EPROTO / -ECONNRESET, and later
 * calls fail at once (-ENOTCONN). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The longest line read from QEMU: a longer one is refused (-EPROTO), never buffered on. */
#define LXM_QMP_LINE_MAX (1024 * 1024)
/* Events kept for the caller; older ones are dropped (and counted) past this. */
#define LXM_QMP_EVENTS_MAX 256

struct lxm_qmp;

/* The VM's run state, from query-status (QEMU's RunState; the rest is OTHER). */
enum lxm_qmp_status {
	LXM_QMP_STATUS_PRELAUNCH,      /* started with -S, never run */
	LXM_QMP_STATUS_RUNNING,	       /* vCPUs running */
	LXM_QMP_STATUS_PAUSED,	       /* stopped by "stop" */
	LXM_QMP_STATUS_SHUTDOWN,       /* the guest powered off (QEMU stays with -no-shutdown) */
	LXM_QMP_STATUS_SUSPENDED,      /* the guest is in S3 */
	LXM_QMP_STATUS_GUEST_PANICKED, /* the guest reported a panic */
	LXM_QMP_STATUS_INTERNAL_ERROR, /* the accelerator failed */
	LXM_QMP_STATUS_IO_ERROR,       /* a disk failed and the VM stopped for it */
	LXM_QMP_STATUS_OTHER,	       /* migration, debug, watchdog and other states */
	_LXM_QMP_STATUS_MAX,
	_LXM_QMP_STATUS_INVALID = -1,
};

/* The events the supervisor acts on; others are OTHER. */
enum lxm_qmp_event {
	LXM_QMP_EVENT_SHUTDOWN,	 /* QEMU is shutting down (data: guest, reason) */
	LXM_QMP_EVENT_POWERDOWN, /* system_powerdown was sent to the guest */
	LXM_QMP_EVENT_STOP,	 /* vCPUs stopped */
	LXM_QMP_EVENT_RESUME,	 /* vCPUs resumed */
	LXM_QMP_EVENT_RESET,	 /* the guest reset (with -no-reboot, a SHUTDOWN follows) */
	LXM_QMP_EVENT_OTHER,
	_LXM_QMP_EVENT_MAX,
	_LXM_QMP_EVENT_INVALID = -1,
};

/* A vCPU, from query-cpus-fast. */
struct lxm_qmp_cpu {
	int index;     /* cpu-index */
	int thread_id; /* the host thread (tid) that runs it */
};

/* Guest memory, from query-memory-size-summary and query-balloon. */
struct lxm_qmp_memory {
	uint64_t base;		 /* RAM the VM started with, bytes */
	uint64_t plugged;	 /* hot-plugged RAM, bytes */
	bool balloon;		 /* a balloon device is active */
	uint64_t balloon_actual; /* with balloon: RAM the guest has now, bytes */
};

/* Connects to the QMP socket at path, reads QEMU's greeting and enters command mode
 * (qmp_capabilities), all within timeout_ms. A socket that does not exist yet or refuses is
 * retried until then (QEMU creates it while it starts). -ETIMEDOUT names what was awaited. */
int lxm_qmp_connect(const char *path, int timeout_ms, struct lxm_qmp **ret, struct lxm_error **err);
/* Closes the connection and frees the queued events. NULL is allowed. */
void lxm_qmp_close(struct lxm_qmp *q);
/* The connection's fd, for poll(); -1 after it broke. */
int lxm_qmp_fd(const struct lxm_qmp *q);
/* QEMU's version from the greeting ("7.2.22"). */
const char *lxm_qmp_version(const struct lxm_qmp *q);

/* Runs cmd with args (borrowed, may be NULL) and waits up to timeout_ms for its answer. On
 * success *ret_return (optional) is QEMU's "return" value (a new reference). QEMU's error is
 * -EIO with "qmp 'cmd': Class: desc" (status 500). -ETIMEDOUT when no answer came in time (a
 * late answer is recognised by its id and dropped). */
int lxm_qmp_execute(struct lxm_qmp *q, const char *cmd, json_t *args, int timeout_ms,
		    json_t **ret_return, struct lxm_error **err);

/* Reads what QEMU sent without blocking and queues its events. 0, or -errno when the connection
 * broke (-ECONNRESET at EOF: QEMU exited). */
int lxm_qmp_read_events(struct lxm_qmp *q, struct lxm_error **err);
/* The oldest queued event (a new reference: {"event":..., "data":..., "timestamp":...}), waiting
 * up to timeout_ms (0: no wait) for one. 1 with an event, 0 when none came, -errno when the
 * connection broke. */
int lxm_qmp_next_event(struct lxm_qmp *q, int timeout_ms, json_t **ret_event,
		       struct lxm_error **err);
/* Events dropped because the queue was full. */
size_t lxm_qmp_events_dropped(const struct lxm_qmp *q);

enum lxm_qmp_event lxm_qmp_event_kind(const json_t *event);
const char *lxm_qmp_status_to_string(enum lxm_qmp_status s);
enum lxm_qmp_status lxm_qmp_status_from_string(const char *s);

/* The commands lxm-monitor uses. */
int lxm_qmp_status(struct lxm_qmp *q, int timeout_ms, enum lxm_qmp_status *ret,
		   struct lxm_error **err);
int lxm_qmp_stop(struct lxm_qmp *q, int timeout_ms, struct lxm_error **err);
int lxm_qmp_cont(struct lxm_qmp *q, int timeout_ms, struct lxm_error **err);
/* ACPI power button: the guest's OS decides; nothing happens without one. */
int lxm_qmp_powerdown(struct lxm_qmp *q, int timeout_ms, struct lxm_error **err);
/* Ends QEMU at once. QEMU may close the connection before it answers: that counts as done. */
int lxm_qmp_quit(struct lxm_qmp *q, int timeout_ms, struct lxm_error **err);
/* The vCPUs (an array the caller frees) and their count. */
int lxm_qmp_cpus(struct lxm_qmp *q, int timeout_ms, struct lxm_qmp_cpu **ret, size_t *ret_n,
		 struct lxm_error **err);
int lxm_qmp_memory(struct lxm_qmp *q, int timeout_ms, struct lxm_qmp_memory *ret,
		   struct lxm_error **err);
