/* Shared by the lxmd/cgroup/ files only: the layout detection fills, the driver ops table and the
 * file helpers both drivers use.
 *
 * The drivers set *err to a message that names the step and the path ("set memory.max to 512:
 * /sys/fs/cgroup/lxm.payload.c1/memory.max: Invalid argument"); the front-end adds the object
 * ("cgroup 'c1': ...") on the way up. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#include "cgroup.h"

/* The parent of every instance cgroup on a v1 hierarchy: "<mount>/lxm.payload/<name>" for the
 * default root, "<mount>/lxm.payload.<tag>/<name>" for any other (lxm_cgroup_set_owner). */
#define CGROUP_V1_PAYLOAD "lxm.payload"
/* On a v2 hierarchy instances sit directly under the root: "<mount>/lxm.payload.<name>", or
 * "<mount>/lxm.payload.<tag>.<name>" for a root other than the default one. */
#define CGROUP_V2_PREFIX "lxm.payload."
/* Hex digits of sha256(root) in <tag>. */
#define CGROUP_OWNER_TAG_LEN 8

/* How long a freeze waits for the kernel to report every task frozen. */
#define CGROUP_FREEZE_TIMEOUT_MS 5000
/* How long destroy keeps killing and retrying rmdir while the kernel still empties a cgroup. */
#define CGROUP_REMOVE_TIMEOUT_MS 1000
/* The pause between two polls of either wait. */
#define CGROUP_POLL_MS 10

/* The default CFS period (100 ms), used when a quota comes without one and to reset. */
#define CGROUP_CPU_PERIOD_DEFAULT_US 100000

/* limits.disk.priority 0-10 as a weight of v2's io.weight and of BFQ's weights (io.bfq.weight,
 * blkio.bfq.weight), whose default is 100: 5, LXD's default priority, is the default weight, and
 * each step is the same ratio (about 1.6x) up to 1000 and down to 10. */
int64_t cgroup_io_weight(int64_t priority);

/* One mounted hierarchy. */
struct cgroup_hierarchy {
	char *mount;	    /* prefix + mount point: where instance cgroups are made */
	char **controllers; /* v1: controllers bound to it ("cpu", "cpuacct"); v2: those in the
			       root's cgroup.controllers. NULL-terminated, never NULL */
	char *name;	    /* v1 named hierarchy without "name=" ("systemd"), or NULL */
};

struct cgroup_ops;

/* Attaches the device allow-list program to a cgroup v2 dir (cgroup-bpf.c): the default list
 * plus the n nodes of extra. A program attached before is replaced. */
int cgroup_bpf_devices(const char *dir, const struct lxm_cgroup_device *extra, size_t n,
		       struct lxm_error **err);

struct lxm_cgroup_layout {
	enum lxm_cgroup_mode mode;    /* what detection found; picks ops */
	const struct cgroup_ops *ops; /* the driver for mode */
	char *prefix;		      /* prepended to every mount point; "" for the real system */
	char *v1_payload; /* the instances' parent dir on v1 hierarchies (CGROUP_V1_PAYLOAD or
			     "lxm.payload.<tag>") */
	char *v2_prefix;  /* the instance dir's name before <name> on v2 (CGROUP_V2_PREFIX or
			     "lxm.payload.<tag>.") */
	bool owned;	  /* v1_payload belongs to this root alone: removed once empty */
	struct cgroup_hierarchy *v2; /* the cgroup2 mount, or NULL when there is none */
	struct cgroup_hierarchy *v1; /* the v1 hierarchies in mountinfo order, n_v1 entries */
	size_t n_v1;		     /* entries in v1 */
};

/* A driver. Only the front-end (cgroup.c) calls these; it has checked the name, and it adds
 * "cgroup '<name>': " to every error. A NULL slot means -EOPNOTSUPP. */
struct cgroup_ops {
	/* For messages: "v1" or "v2". */
	const char *name;
	/* Makes the instance's dirs (and their lxm.payload parents) and prepares them so that tasks
	 * can join; existing dirs are reused. Fills ret only on success; on failure removes the
	 * instance dirs it got to (only while empty: rmdir refuses otherwise). */
	int (*create)(struct lxm_cgroup_layout *l, const char *name, struct lxm_cgroup_paths *ret,
		      struct lxm_error **err);
	/* Writes every limit; an unset one is written as "no limit". */
	int (*apply)(struct lxm_cgroup_layout *l, const char *name, const struct lxm_limits *limits,
		     struct lxm_error **err);
	/* Freezes (and waits until every task is frozen) or thaws. */
	int (*freeze)(struct lxm_cgroup_layout *l, const char *name, bool freeze,
		      struct lxm_error **err);
	/* Reads usage; a figure the host does not account stays -1. */
	int (*stats)(struct lxm_cgroup_layout *l, const char *name, struct lxm_cgroup_stats *ret,
		     struct lxm_error **err);
	/* Sets the device allow-list: the default plus extra (lxm_cgroup_set_devices). */
	int (*devices)(struct lxm_cgroup_layout *l, const char *name,
		       const struct lxm_cgroup_device *extra, size_t n, struct lxm_error **err);
	/* Kills what is left and removes the dirs (descendants first); missing dirs are fine. */
	int (*destroy)(struct lxm_cgroup_layout *l, const char *name, struct lxm_error **err);
};

extern const struct cgroup_ops cgroup_v1_ops;
extern const struct cgroup_ops cgroup_v2_ops;

/* "a/b", or NULL when out of memory. */
char *cgroup_path(const char *dir, const char *file);
bool cgroup_has_controller(const struct cgroup_hierarchy *h, const char *controller);

/* mkdir that accepts an existing dir: 1 when it made the dir, 0 when it was there. */
int cgroup_mkdir(const char *path, struct lxm_error **err);

/* Writes value to dir/file in one write(), as cgroupfs wants it. Plain -errno, no message. */
int cgroup_write(const char *dir, const char *file, const char *value);
/* cgroup_write() with a message: "set <file> to <value>: <path>: <strerror>". A missing file
 * means the controller is not there: fine (0) when optional, else -EOPNOTSUPP with a message that
 * names the controller (the part of file before the first '.'). */
int cgroup_set(const char *dir, const char *file, const char *value, bool optional,
	       struct lxm_error **err);
/* cgroup_set() for a number. */
int cgroup_set_int64(const char *dir, const char *file, int64_t value, bool optional,
		     struct lxm_error **err);
/* Reads dir/file without trailing whitespace. Plain -errno, no message. */
int cgroup_read(const char *dir, const char *file, char **ret);
/* Reads dir/file as one integer. -ENOENT when missing, -EBADMSG when not a number. */
int cgroup_read_int64(const char *dir, const char *file, int64_t *ret);
/* Reads the number after "key " in a flat-keyed file (cpu.stat, cgroup.events). */
int cgroup_read_key_int64(const char *dir, const char *file, const char *key, int64_t *ret);
/* Counts the pids in dir/cgroup.procs. */
int cgroup_count_procs(const char *dir, int64_t *ret);

/* Writes value to file in dir and in every cgroup below it, parents first; missing files are
 * skipped (a v1 thaw of a frozen subtree). */
int cgroup_set_tree(const char *dir, const char *file, const char *value);

/* Kills every process in dir and below: "1" to cgroup.kill where the kernel has it, and SIGKILL
 * to each pid in every cgroup.procs in any case (v1 has no cgroup.kill). A missing dir is fine. */
int cgroup_kill(const char *dir);

/* Removes dirs (each with its descendants, deepest first), killing what is left and retrying
 * while the kernel answers EBUSY, for up to CGROUP_REMOVE_TIMEOUT_MS. Missing dirs are fine.
 * cgroupfs lets rmdir remove a dir full of control files; a plain directory (a fake tree in a
 * test) fails with ENOTEMPTY until its files are gone. */
int cgroup_remove(char *const *dirs, size_t n, struct lxm_error **err);

/* rmdir of each dir, once, ignoring failures: undoing a create (a dir with tasks stays). */
void cgroup_rmdir_quiet(char *const *dirs, size_t n);

/* Freezes or thaws a v2 cgroup: cgroup.freeze, then waits for "frozen 1" in cgroup.events.
 * Also the v1 driver's fallback when the host has no v1 freezer. */
int cgroup_v2_freeze_dir(const char *dir, bool freeze, struct lxm_error **err);

/* Sleeps CGROUP_POLL_MS. */
void cgroup_poll_sleep(void);
