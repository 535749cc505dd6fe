/* Small helpers with no policy: strings, time, randomness, files. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

static inline bool streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static inline bool startswith(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Formats a CLOCK_REALTIME timestamp as RFC 3339 in UTC with nanoseconds and a zone:
 * "2024-05-01T10:00:00.123456789Z". buf must hold LXM_RFC3339_MAX bytes. */
#define LXM_RFC3339_MAX 64
char *lxm_rfc3339(const struct timespec *ts, char buf[static LXM_RFC3339_MAX]);
/* The current time, formatted as above. */
char *lxm_rfc3339_now(char buf[static LXM_RFC3339_MAX]);
/* Nanoseconds of CLOCK_REALTIME / CLOCK_MONOTONIC. */
int64_t lxm_now_ns(void);
uint64_t lxm_monotonic_ms(void);

/* Fills buf with n random bytes from getrandom(). Returns 0 or -errno. */
int lxm_random_bytes(void *buf, size_t n);
/* Writes 2*nbytes lowercase hex characters of randomness plus NUL into out. */
int lxm_random_hex(char *out, size_t nbytes);
/* Writes the n bytes of data as 2*n lowercase hex characters plus NUL into out. */
void lxm_hex(const void *data, size_t n, char *out);
/* A random (version 4) UUID in canonical form; out holds 37 bytes. */
int lxm_uuid4(char out[static 37]);

/* mkdir -p with mode for each component created. Returns 0 or -errno. */
int lxm_mkdir_p(const char *path, mode_t mode);
/* Removes a file or tree, never following symlinks nor crossing into other file systems; a
 * missing one (or NULL) is fine. Returns 0 or -errno. */
int lxm_rm_tree(const char *path);
/* Reads a whole small file into a NUL-terminated buffer. */
int lxm_read_file(const char *path, char **ret, size_t *ret_len);
/* openat2() with O_CLOEXEC added, retried while the kernel asks for it (a rename in the tree
 * during the walk). mode is used with O_CREAT only. Returns the fd or -errno. */
int lxm_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve);
/* Undoes the octal escapes of /proc/self/mountinfo ("\040" for a space, "\054" for a comma)
 * in place. */
void lxm_unescape_octal(char *s);
/* The last error line a file system wrote to its fs context fd (fsopen: "e tmpfs: Bad value for
 * 'size'"), as " (Bad value ...)" in buf, or "" when it wrote none: it says far more than the
 * errno alone. Reads the log empty. */
void lxm_fs_log(int fsfd, char *buf, size_t len);

/* Whether p is an absolute path without "." or ".." components. */
bool lxm_path_is_clean(const char *p);

/* Writes all of data to fd (a blocking fd), retrying on EINTR and short writes. 0 or -errno. */
int lxm_write_all(int fd, const void *data, size_t len);
/* Writes data to path atomically (tmp file + fsync + rename). */
int lxm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Object names (instances, profiles, pools, networks): what LXD accepts for an instance name is
 * a hostname label: 1-63 chars of [a-zA-Z0-9-], not starting with a digit or '-', not ending
 * with '-'. Returns NULL when valid, else a static sentence that says what is wrong. */
const char *lxm_name_invalid_reason(const char *name);
/* Profile / pool / network names: non-empty, at most 63 bytes, no '/', no whitespace or control
 * characters, not "." or "..". Returns NULL when valid, else a static reason. */
const char *lxm_entity_name_invalid_reason(const char *name);
