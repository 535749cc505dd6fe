/* The daemon's state and life: one libuv loop, the database, the API server, operations, events. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "error.h"
#include "log.h"

struct lxm_db;
struct lxm_events;
struct lxm_operations;
struct lxmd_server;
struct lxmd_runtime;
struct lxmd_pools;
struct lxmd_networks;
struct lxmd_snapshot_scheduler;
struct lxmd_boot;
struct lxmd_server_config;
struct lxmd_vm_accel;
struct lxmd_vm_agents;

struct lxmd_config {
	char *root;	   /* state directory: lxm.db, logs, instances (default /var/lib/lxm) */
	char *socket_path; /* API unix socket (default <root>/unix.socket) */
	char *rundir;	   /* runtime state (default /run/lxm, or <root>/run for other roots) */
	char *proc;	   /* where procfs is mounted ("/proc"; tests point it at a fake tree) */
	enum lxm_log_level level; /* log verbosity */
	bool foreground;	  /* stay attached to the terminal instead of daemonizing */
};

struct lxmd {
	uv_loop_t *loop;	    /* the one event loop */
	struct lxmd_config cfg;	    /* as started */
	struct lxm_db *db;	    /* state database */
	struct lxmd_server *server; /* API listener and connections */
	struct lxmd_server *https;  /* HTTPS listener (core.https_address), or NULL */
	struct lxm_operations *ops; /* async operations */
	struct lxm_events *events;  /* /1.0/events subscribers */
	struct lxmd_runtime *rt;    /* running instances and their monitors (instance.c) */
	struct lxmd_pools *pools;   /* open storage pools (pools.c) */
	json_t *kernel_features;    /* what lxmd_kernel_check() found, shown in GET /1.0 */
	uv_signal_t sig_term;	    /* SIGTERM: clean shutdown */
	uv_signal_t sig_int;	    /* SIGINT: clean shutdown */
	uv_timer_t shutdown_timer;  /* polls running operations during shutdown */
	uint64_t shutdown_deadline; /* monotonic ms after which shutdown stops waiting */
	struct lxmd_snapshot_scheduler *scheduler; /* snapshots.schedule/expiry timer */
	struct lxmd_networks *networks;		   /* managed networks (networks.c) */
	struct lxmd_boot *boot;			   /* autostart and host shutdown (boot.c) */
	struct lxmd_server_config *server_config;  /* images.* timers (server-config.c) */
	struct lxmd_vm_accel *vm_accel;		   /* the KVM probe and its answer (vm/accel.c) */
	struct lxmd_vm_agents *vm_agents;	   /* VM agent connections (vm/agent-pool.c) */
	int lock_fd;				   /* holds the root's lock for the daemon's life */
	bool shutting_down;			   /* a shutdown has begun */
	int64_t started_at;			   /* ns since the epoch */
};

/* Fills defaults for unset fields (root from $LXM_DIR or /var/lib/lxm, ...). */
int lxmd_config_finish(struct lxmd_config *cfg);
void lxmd_config_free(struct lxmd_config *cfg);

/* Checks the kernel features lxm needs under proc (namespaces, cgroups) and describes them.
 * A missing required one is an error naming it and what to enable. */
int lxmd_kernel_check(const char *proc, json_t **ret_features, struct lxm_error **err);

/* Takes the root's lock file, or fails naming the daemon that holds it. Returns the fd. */
int lxmd_lock_root(const char *root, struct lxm_error **err);

/* Sets up everything and starts listening. On failure the daemon is torn down again. */
int lxmd_init(struct lxmd *d, uv_loop_t *loop, const struct lxmd_config *cfg,
	      struct lxm_error **err);
/* Stops accepting requests, lets running operations end (bounded), then closes every handle. */
void lxmd_shutdown(struct lxmd *d);
/* Frees what lxmd_init() set up; call after the loop has ended. */
void lxmd_fini(struct lxmd *d);

/* Mounts and links every instance's volume, and rolls back creates that a kill interrupted (the
 * database rows are written first, backup.yaml last). Returns how many were rolled back. Runs at
 * start-up, before the API serves. */
int lxmd_instances_recover(struct lxmd *d, struct lxm_error **err);

/* Where an instance's files are seen (its rootfs, backup.yaml): ROOT/containers/<name>, a link
 * into the storage pool holding its volume (volumes.h). */
int lxmd_instance_path(const struct lxmd *d, const char *name, char **ret);

/* For a running instance: its init's pid (in lxmd's pid namespace) and the path of its container
 * spec. 404 for an unknown instance, 400 "instance 'c1' is not running" when stopped. */
int lxmd_instance_running(struct lxmd *d, const char *name, pid_t *ret_init_pid,
			  char **ret_spec_path, struct lxm_error **err);
