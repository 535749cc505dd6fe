/* Helpers shared by the files of the policy compiler; nothing here crosses the profiles/ boundary.
 * Everything stays pure: no files, no syscalls. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct lxm_policy;

/* The config keys the compiler reads, so that every error names them the same way. */
#define KEY_PRIVILEGED	     "security.privileged"
#define KEY_NESTING	     "security.nesting"
#define KEY_MEMORY	     "limits.memory"
#define KEY_MEMORY_SWAP	     "limits.memory.swap"
#define KEY_MEMORY_ENFORCE   "limits.memory.enforce"
#define KEY_CPU		     "limits.cpu"
#define KEY_CPU_ALLOWANCE    "limits.cpu.allowance"
#define KEY_CPU_PRIORITY     "limits.cpu.priority"
#define KEY_PROCESSES	     "limits.processes"
#define KEY_SYSCALLS_DENY    "security.syscalls.deny"
#define KEY_SYSCALLS_DEFAULT "security.syscalls.deny_default"
#define KEY_SYSCALLS_ALLOW   "security.syscalls.allow"
#define KEY_CAPS_DROP	     "security.capabilities.drop"
#define KEY_CAPS_ADD	     "security.capabilities.add"
#define KEY_APPARMOR_PROFILE "security.apparmor.profile"
#define KEY_SELINUX_LABEL    "security.selinux.label"
#define KEY_TIME_OFFSET	     "linux.time.offset"
#define KEY_DISK_PRIORITY    "limits.disk.priority"
#define KEY_HUGEPAGES	     "limits.hugepages."
#define KEY_IDMAP_ISOLATED   "security.idmap.isolated"
#define KEY_IDMAP_BASE	     "security.idmap.base"
#define KEY_IDMAP_SIZE	     "security.idmap.size"
#define KEY_RAW_IDMAP	     "raw.idmap"
#define KEY_PROTECT_SHIFT    "security.protection.shift"
#define KEY_STOP_SIGNAL	     "boot.stop.signal"
#define KEY_IMAGE_INIT	     "image.init"
#define KEY_IMAGE_OS	     "image.os"

/* glibc reserves the kernel's first two real-time signals, so the "SIGRTMIN+3" that systemd
 * (built against glibc in every distribution image) waits for is kernel signal 37. The policy
 * speaks of the container's signal numbers, not of whatever libc lxm itself is built with. */
#define LXM_SIGRTMIN 34
#define LXM_SIGRTMAX 64

/* ---- parse.c ---- */

/* Sets a 400 error "config key 'KEY': invalid value 'VALUE': <reason>" and returns -EINVAL. The
 * value is shortened when it is long, so a pasted file does not become the message. */
int lxm_policy_bad_value(struct lxm_error **err, const char *key, const char *value,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* "true" or "false"; nothing else (an empty value is handled by the caller as "unset"). */
int lxm_parse_bool(const char *key, const char *value, bool *ret, struct lxm_error **err);
/* A decimal integer in [min, max], optionally signed when min < 0; no units, no spaces inside. */
int lxm_parse_int(const char *key, const char *value, int64_t min, int64_t max, int64_t *ret,
		  struct lxm_error **err);
/* "SIGRTMIN+3", "RTMIN+3", "sigpwr", "30": a signal a container's init can handle. */
int lxm_parse_signal(const char *key, const char *value, int *ret, struct lxm_error **err);
/* linux.time.offset: "3600" (both clocks) or "monotonic=3600 boottime=-60" (either, any order,
 * separated by spaces or commas), in seconds. */
int lxm_parse_time_offset(const char *key, const char *value, int64_t *ret_monotonic,
			  int64_t *ret_boottime, struct lxm_error **err);

/* Splits a list separated by commas and/or white space into a NULL-terminated vector of
 * non-empty words; an empty or all-separator value gives an empty vector. */
int lxm_split_words(const char *value, char ***ret);

/* The candidate closest to word by case-insensitive edit distance (for "did you mean"). */
const char *lxm_closest_word(const char *word, const char *const *candidates, size_t n);

/* A growing string for generated text; an allocation failure sticks and shows at steal time. */
struct lxm_buf {
	char *s;    /* NUL-terminated text so far, or NULL */
	size_t len; /* bytes in s, without the NUL */
	size_t cap; /* bytes allocated for s */
	bool oom;   /* an append failed: the text is incomplete */
};

void lxm_buf_printf(struct lxm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the text on (NULL after an allocation failure) and resets b. */
char *lxm_buf_steal(struct lxm_buf *b);
void lxm_buf_done(struct lxm_buf *b);

/* ---- capabilities.c ---- */

/* The highest capability number lxm knows (CAP_CHECKPOINT_RESTORE). */
#define LXM_CAP_LAST 40

/* Resolves "sys_admin", "cap_sys_admin", "CAP_SYS_ADMIN" to its number, or -EINVAL. */
int lxm_cap_from_name(const char *name);
/* "sys_admin" for 21; NULL for a number lxm does not know. */
const char *lxm_cap_name(int cap);
/* What a container drops from its bounding set when the config says nothing. */
uint64_t lxm_caps_default_drop(bool privileged);
/* Parses a list of capability names into a mask; unknown names are 400 errors naming key and
 * the closest valid name. */
int lxm_caps_parse(const char *key, const char *value, uint64_t *ret_mask, struct lxm_error **err);

/* ---- seccomp-policy.c ---- */

/* Syscalls every container is denied unless security.syscalls.deny_default=false. */
extern const char *const lxm_seccomp_default_deny[];

/* Fills p->syscalls_deny, p->syscalls_allow and p->deny_forced_umount from the three
 * security.syscalls.* values (each NULL when unset). */
int lxm_seccomp_policy(const char *deny, const char *deny_default, const char *allow,
		       struct lxm_policy *p, struct lxm_error **err);

/* ---- apparmor.c ---- */

/* The generated profile's name for an instance: see apparmor.c for the rule. */
int lxm_apparmor_profile_name(const char *name, const char *root, char **ret);
/* Whether a user-supplied profile name can be handed to the kernel as is. */
bool lxm_apparmor_name_valid(const char *profile);
