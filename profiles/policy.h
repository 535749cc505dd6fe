/* The policy compiler: turns an instance's expanded config into the limits and security settings
 * the runtime applies. Pure: no files, no syscalls; every value it cannot parse is an error that
 * names the key and says what a valid value looks like. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* The huge page sizes of the limits.hugepages.<size> keys, as the keys and the kernel's hugetlb
 * cgroup files name them (lxm_hugepage_names). */
enum lxm_hugepage_size {
	LXM_HUGEPAGE_64KB,
	LXM_HUGEPAGE_1MB,
	LXM_HUGEPAGE_2MB,
	LXM_HUGEPAGE_1GB,
	LXM_HUGEPAGE_N,
};

/* "64KB", "1MB", "2MB", "1GB": the key's suffix and the hugetlb.<size>.* file names. */
extern const char *const lxm_hugepage_names[LXM_HUGEPAGE_N];
/* Each size in kB, as /sys/kernel/mm/hugepages/hugepages-<kB>kB names it. */
extern const uint64_t lxm_hugepage_kb[LXM_HUGEPAGE_N];

/* Resource limits; -1 (or NULL) means "not set". */
struct lxm_limits {
	int64_t memory;	       /* limits.memory in bytes ("512MiB", "1GB"; "50%" of host_memory) */
	bool memory_swap;      /* limits.memory.swap (default true) */
	bool memory_soft;      /* limits.memory.enforce=soft: a reservation, not a hard cap */
	char *cpuset;	       /* limits.cpu as a cpu list ("0-1,3"); a count N becomes "0-(N-1)" */
	int64_t cpu_quota_us;  /* limits.cpu.allowance "50%" -> 50000/100000, "25ms/100ms" */
	int64_t cpu_period_us; /* period for cpu_quota_us */
	int64_t cpu_weight;    /* limits.cpu.priority 0-10 as a cgroup v2 weight 1-100 (policy.c) */
	int64_t processes;     /* limits.processes */
	int64_t hugepages[LXM_HUGEPAGE_N]; /* limits.hugepages.<size>: bytes of huge pages */
	int64_t disk_priority; /* limits.disk.priority 0-10; each driver makes it an io weight */
};

struct lxm_policy_host {
	uint64_t memory_bytes; /* host RAM, for percentages */
	unsigned ncpus;	       /* online CPUs, for counts and validation */
	bool apparmor;	       /* the kernel has AppArmor enabled */
	bool selinux;	       /* the kernel has SELinux enabled */
	unsigned hugepages;    /* bit n: the host has huge pages of size n (lxm_hugepage_size) and a
				  hugetlb cgroup controller to limit them */
	const char *root;      /* lxmd's root dir: part of the generated AppArmor profile name */
};

struct lxm_policy {
	bool privileged; /* security.privileged */
	bool nesting;	 /* security.nesting */
	struct lxm_limits limits;
	uint64_t caps_drop; /* bounding-set capabilities to drop, bit n = capability n */
	/* Syscall names that fail with EPERM: the default list (unless deny_default=false) plus
	   security.syscalls.deny; never NULL, empty in allow-list mode. NULL-terminated. */
	char **syscalls_deny;
	char **syscalls_allow;	 /* security.syscalls.allow (allow-list mode), or NULL */
	bool deny_forced_umount; /* umount2(MNT_FORCE) fails with EPERM: an argument filter, so not
				    a name in syscalls_deny; on with the default deny list */
	/* Name to exec init under (generated or security.apparmor.profile); NULL when the host has
	   no AppArmor. Nested instances stack under the AppArmor namespace of the same name. */
	char *apparmor_profile;
	char *apparmor_text; /* the generated profile's source, or NULL when one was named */
	char *selinux_label; /* security.selinux.label, or the default container label when the
				host has SELinux; NULL otherwise */
	/* Signal for a clean stop, as numbered in a glibc container (SIGRTMIN+3 = 37): from
	   boot.stop.signal, else image.init / image.os (systemd SIGRTMIN+3, busybox SIGUSR2),
	   else SIGPWR. */
	int halt_signal;
	int64_t time_offset_monotonic;	 /* linux.time.offset: seconds */
	int64_t time_offset_boottime;	 /* linux.time.offset: seconds */
	bool idmap_isolated;		 /* security.idmap.isolated: a host id range of its own */
	int64_t idmap_base;		 /* security.idmap.base: its first host id, or -1 */
	int64_t idmap_size;		 /* security.idmap.size: ids mapped (default 65536) */
	struct lxm_raw_idmap *raw_idmap; /* raw.idmap: host ids mapped on top of the range */
	size_t n_raw_idmap;		 /* entries in raw_idmap */
	bool protect_shift;		 /* security.protection.shift: the id map may not change */
};

/* Compiles the policy for instance name. */
int lxm_policy_compile(const char *name, const json_t *expanded_config,
		       const struct lxm_policy_host *host, struct lxm_policy **ret,
		       struct lxm_error **err);
void lxm_policy_free(struct lxm_policy *p);

/* Value parsers, shared with live updates. Each returns -EINVAL with err naming key. */
int lxm_parse_size(const char *key, const char *value, uint64_t percent_of, int64_t *ret,
		   struct lxm_error **err);
int lxm_parse_cpu(const char *key, const char *value, unsigned ncpus, char **ret_cpuset,
		  struct lxm_error **err);
/* raw.idmap: lines "uid|gid|both HOST[-HOST2] NS[-NS2]" (ranges of equal length). */
struct lxm_raw_idmap {
	bool uid;	/* maps user ids */
	bool gid;	/* maps group ids */
	uint32_t host;	/* first host id */
	uint32_t ns;	/* first id in the container */
	uint32_t count; /* ids in the range */
};
/* Parses raw.idmap into *ret (n entries, malloc'd; NULL and 0 for an empty value). Ranges of one
 * kind that overlap on either side are refused. */
int lxm_parse_raw_idmap(const char *key, const char *value, struct lxm_raw_idmap **ret,
			size_t *ret_n, struct lxm_error **err);
int lxm_parse_allowance(const char *key, const char *value, int64_t *ret_quota_us,
			int64_t *ret_period_us, struct lxm_error **err);

/* The generated AppArmor profile for an instance (what the tests check with apparmor_parser). */
int lxm_apparmor_profile(const char *name, const struct lxm_policy_host *host, bool nesting,
			 bool privileged, char **ret_name, char **ret_text);
