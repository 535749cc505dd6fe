/* The container spec: everything lxm-monitor needs to create and run one container, computed by
 * lxmd (from the instance's expanded config through the policy compiler) and written as JSON to
 * <rundir>/<name>/spec.json. The monitor never reads lxmd's database. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* One line of /proc/<pid>/{uid,gid}_map: ids nsid..nsid+count-1 inside are hostid.. outside. */
struct lxm_idmap {
	uint32_t nsid;	 /* first id inside the container */
	uint32_t hostid; /* first id on the host */
	uint32_t count;	 /* how many */
};

/* An extra mount (disk devices, lxmd/disks.c); applied after the standard file systems. */
struct lxm_spec_mount {
	char *source;  /* host path (bind) or file system source */
	char *target;  /* path inside the container, absolute */
	char *fstype;  /* "bind" for a bind mount, else a file system type */
	char *options; /* file system data, or NULL */
	bool readonly; /* mount read-only */
	bool optional; /* a missing source is skipped instead of failing */
};

/* A device node to create in the container's /dev (a bind of the host node when unprivileged,
 * where mknod is not allowed). */
struct lxm_spec_device {
	char *path;	/* inside the container, e.g. "/dev/null" */
	char type;	/* 'c' or 'b' */
	uint32_t major; /* device major */
	uint32_t minor; /* device minor */
	uint32_t mode;	/* permission bits */
	uint32_t uid;	/* owner inside the container */
	uint32_t gid;	/* group inside the container */
};

/* A nic's veth, created by lxm-monitor before init runs (lxmd/nic.c works it out). */
struct lxm_spec_nic {
	char *device;	  /* the nic device's name, for messages */
	char *host_name;  /* the host end ("veth" + 8 hex) */
	char *bridge;	  /* the bridge the host end joins */
	char *inner;	  /* the peer's name inside ("eth0") */
	char *hwaddr;	  /* the peer's MAC */
	unsigned mtu;	  /* 0: the bridge's */
	uint64_t ingress; /* bit/s the host end sends to the container, 0: no limit */
	uint64_t egress;  /* bit/s the container sends, 0: no limit */
};

struct lxm_container_spec {
	char *name;	 /* instance name */
	char *hostname;	 /* UTS hostname (defaults to the name) */
	char *rootfs;	 /* host path of the root file system directory */
	char **init;	 /* argv of PID 1, NULL-terminated, e.g. {"/sbin/init", NULL} */
	char **env;	 /* environment of PID 1, "K=V", NULL-terminated */
	bool privileged; /* no user namespace; root is host root (security.privileged=true) */
	struct lxm_idmap *uidmap; /* user id map (unprivileged), n_uidmap entries */
	size_t n_uidmap;	  /* entries in uidmap */
	struct lxm_idmap *gidmap; /* group id map */
	size_t n_gidmap;	  /* entries in gidmap */

	char *cgroup_v2; /* the container's cgroup dir on the unified hierarchy (CLONE_INTO_CGROUP),
			    or NULL on hosts whose controllers are all on v1 */
	char **cgroup_v1;     /* the container's cgroup dirs on each v1 hierarchy, joined before the
				 child runs anything; NULL-terminated, may be NULL */
	char *cgroup_ns_root; /* the cgroup the container sees as its "/" (cgroup namespace): its
				 own v2 dir, or NULL */

	uint64_t caps_drop;	/* bounding-set capabilities to drop: bit n = capability n */
	char **syscalls_deny;	/* syscall names that fail with EPERM (default list + config) */
	char **syscalls_allow;	/* when non-NULL: allow-list mode, everything else fails */
	bool nesting;		/* security.nesting: allow what running containers inside needs */
	char *apparmor_profile; /* profile name to exec init under, or NULL */
	char *apparmor_text;	/* profile source lxmd loaded (for reference), or NULL */
	char *selinux_label;	/* exec label for init, or NULL */
	bool no_new_privs; /* set PR_SET_NO_NEW_PRIVS before exec (off: breaks setuid in init) */
	bool allow_forced_umount; /* security.syscalls.deny_default=false: umount2(MNT_FORCE) is not
				   filtered (absent or false: it fails with EPERM) */

	struct lxm_spec_mount *mounts;	 /* extra mounts, n_mounts entries */
	size_t n_mounts;		 /* entries in mounts */
	struct lxm_spec_device *devices; /* device nodes for /dev, n_devices entries */
	size_t n_devices;		 /* entries in devices */
	struct lxm_spec_nic *nics;	 /* veths into the container, n_nics entries */
	size_t n_nics;			 /* entries in nics */

	int64_t time_offset_monotonic; /* time namespace offsets in seconds (linux.time.offset) */
	int64_t time_offset_boottime;  /* idem for CLOCK_BOOTTIME */
	uint64_t run_size;	       /* size cap of the /run tmpfs in bytes */
	int halt_signal; /* what makes init shut down cleanly (SIGRTMIN+3, SIGPWR, ...) */

	char *rundir;		  /* runtime dir of this container: <lxmd rundir>/<name> */
	char *control_socket;	  /* the monitor's control socket (in rundir) */
	char *console_log;	  /* file the monitor copies console output into */
	uint64_t console_log_max; /* size cap of console_log in bytes (older output is dropped) */
};

/* Parses spec.json; every missing required field or wrong type is a 400-style error that names it.
 */
int lxm_container_spec_from_json(const json_t *j, struct lxm_container_spec **ret,
				 struct lxm_error **err);
json_t *lxm_container_spec_to_json(const struct lxm_container_spec *s);
/* Reads and parses a spec file. */
int lxm_container_spec_load(const char *path, struct lxm_container_spec **ret,
			    struct lxm_error **err);
/* Writes a spec file atomically (mode 0600). */
int lxm_container_spec_save(const struct lxm_container_spec *s, const char *path,
			    struct lxm_error **err);
void lxm_container_spec_free(struct lxm_container_spec *s);
/* Frees the strings of n (not n itself). */
void lxm_spec_nic_clear(struct lxm_spec_nic *n);
