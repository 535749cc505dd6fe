/* Runs a helper program off the loop thread: lxmd waits for it through libuv and gets its exit
 * status and (bounded) output in one callback. Used for the monitor, image templates and copies. */
#pragma once

#include <stddef.h>
#include <uv.h>

struct lxmd_child;

/* status: exit code, or 128 + signal. out/err: what it wrote (NUL-terminated, at most the cap),
 * valid during the call only. */
typedef void (*lxmd_child_done_fn)(int status, const char *out, const char *err, void *ud);
/* One line of the child's stdout, without its newline (cut at 4 KiB), valid during the call. */
typedef void (*lxmd_child_line_fn)(const char *line, void *ud);

/* Starts argv[0] (a path) with stdin on /dev/null and stdout/stderr captured. The callback (may
 * be NULL) runs once both pipes reached EOF and the process exited. Returns -errno when it could
 * not start (and the callback will not run). */
int lxmd_child_run(uv_loop_t *loop, char *const argv[], lxmd_child_done_fn done, void *ud);

/* Like lxmd_child_run() for long-running helpers that report progress (image templates): line
 * (when non-NULL) gets stdout line by line and done's out is then "", and err holds the last
 * 64 KiB of stderr (where a failing helper says why) instead of the first. *ret (optional) is the
 * child, for lxmd_child_kill(), valid until done has run. */
int lxmd_child_run_lines(uv_loop_t *loop, char *const argv[], lxmd_child_line_fn line,
			 lxmd_child_done_fn done, void *ud, struct lxmd_child **ret);
/* Sends signum to a child that has not exited yet (0 when it has). */
int lxmd_child_kill(struct lxmd_child *c, int signum);

/* The directory of the running lxmd executable (for helpers installed beside it). */
int lxmd_self_dir(char **ret);

/* The path of helper program name: $env_var when set and non-empty, else name beside the
 * running executable (a build tree) when it is executable there, else LXM_LIBEXECDIR/name. */
int lxmd_find_helper(const char *name, const char *env_var, char **ret);

/* Blocking, for worker threads only: runs argv (looked up in a fixed PATH) with stdin and stdout
 * on /dev/null and the end of its stderr in errbuf (NUL-terminated). Returns the exit status (128
 * + signal when killed) or -errno when it could not run. posix_spawn and waitpid on its own pid,
 * so it never reaps a child that lxmd's loop waits for. */
int lxmd_run_sync(char *const argv[], char *errbuf, size_t errsize);

/* For lxmd_run_sync_lines: one complete line of the child's stdout (without its newline,
 * NUL-terminated, valid during the call), or NULL about every 200 ms while the child is quiet.
 * A non-zero return kills the child (SIGKILL): that is how a worker cancels it. */
typedef int (*lxmd_sync_line_fn)(const char *line, void *ud);

/* Blocking, for worker threads only: like lxmd_run_sync() for lxmd's own helpers (argv[0] is a
 * path, the environment is lxmd's, so that e.g. a proxy set for lxmd applies to lxm-imagetool's
 * downloads as it did when lxmd made them), with input (when non-NULL) written to its stdin and
 * its stdout handed to line line by line (lines up to 64 MiB; a longer one kills the child).
 * Returns the exit status (128 + signal when killed) or -errno when it could not run; errbuf
 * gets the end of its stderr. */
int lxmd_run_sync_lines(char *const argv[], const char *input, lxmd_sync_line_fn line, void *ud,
			char *errbuf, size_t errsize);
