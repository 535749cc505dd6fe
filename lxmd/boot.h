/* The boot.* instance keys: which stopped instances lxmd starts when it starts (boot.autostart,
 * boot.autostart.priority, boot.autostart.delay), and how it stops the running ones when the host
 * shuts down (SIGPWR: boot.stop.priority, boot.host_shutdown_timeout).
 *
 * Whether an instance was running is kept in volatile.last_state.power ("RUNNING" or "STOPPED"):
 * written when an instance starts or stops through lxmd, and left at "RUNNING" for the instances
 * a host shutdown stops. Containers outlive an lxmd restart (SIGTERM, a crash), so the key only
 * matters once they did not: after a host reboot or a SIGPWR. An instance with boot.autostart
 * unset is started again when it says "RUNNING"; "true" always starts it, "false" never does.
 *
 * Everything runs on lxmd's loop: starts and stops are operations (listed like a user's), and the
 * delays and timeouts are timers, so the API answers all along. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct lxmd;
struct lxmd_boot;
struct lxm_operation;
struct lxm_op_wait;

#define LXM_KEY_AUTOSTART	      "boot.autostart"
#define LXM_KEY_AUTOSTART_DELAY	      "boot.autostart.delay"
#define LXM_KEY_AUTOSTART_PRIORITY    "boot.autostart.priority"
#define LXM_KEY_STOP_PRIORITY	      "boot.stop.priority"
#define LXM_KEY_HOST_SHUTDOWN_TIMEOUT "boot.host_shutdown_timeout"
#define LXM_KEY_LAST_STATE_POWER      "volatile.last_state.power"

/* Seconds a host shutdown waits for an instance's clean stop before killing it (LXD's). */
#define LXM_HOST_SHUTDOWN_TIMEOUT_DEFAULT 30

/* One instance's boot settings, read from its expanded config. */
struct lxmd_boot_settings {
	bool autostart;	     /* lxmd's start should start it (when stopped) */
	int64_t start_prio;  /* boot.autostart.priority: higher starts first (default 0) */
	int64_t start_delay; /* boot.autostart.delay: seconds to wait after its start (default 0) */
	int64_t stop_prio;   /* boot.stop.priority: higher stops first (default 0) */
	int64_t stop_timeout; /* boot.host_shutdown_timeout: seconds before it is killed (30) */
};

/* Reads the boot keys of an expanded config. Every value is checked: booleans "true"/"false",
 * priorities whole numbers in [-2^31+1, 2^31-1], the delay and the timeout in [0, 2^31-1]
 * seconds; 400 naming the key and the value otherwise. */
int lxmd_boot_settings_read(const json_t *expanded_config, struct lxmd_boot_settings *ret,
			    struct lxm_error **err);

/* One instance in a start or stop sequence. */
struct lxmd_boot_item {
	char *name;		  /* the instance */
	int64_t prio;		  /* the priority that orders it (start or stop) */
	int64_t seconds;	  /* start: the delay after it; stop: the timeout before the kill */
	struct lxm_operation *op; /* its operation while one is under way, else NULL */
	struct lxm_op_wait *wait; /* the wait on op, else NULL */
	struct lxmd_boot *boot;	  /* the sequence's owner */
};

/* Orders items by priority, highest first, then by name. */
void lxmd_boot_sort(struct lxmd_boot_item *items, size_t n);

/* Sets up the SIGPWR handler and, on the next loop turn, starts the instances that should
 * autostart, one after the other in priority order. Call last in lxmd_init(). */
int lxmd_boot_init(struct lxmd *d, struct lxm_error **err);
/* Ends the sequence under way (instances already asked to start or stop go on) and closes the
 * handles; the state is freed once they are closed. */
void lxmd_boot_fini(struct lxmd *d);

/* The host shuts down (SIGPWR): stops every running instance, group by group in boot.stop.priority
 * order (the same priority in parallel), each killed after its boot.host_shutdown_timeout, then
 * shuts lxmd down. The API is closed at once. */
void lxmd_boot_host_shutdown(struct lxmd *d);

/* Records that an instance started (running) or stopped through lxmd, in
 * volatile.last_state.power. Stops during a host shutdown keep "RUNNING". Failures are logged. */
void lxmd_boot_record_power(struct lxmd *d, const char *name, bool running);
