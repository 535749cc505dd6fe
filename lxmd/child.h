/* Runs a helper program off the loop thread: lxmd waits for it through libuv and gets its exit
 * status and (bounded) output in one callback. Used for the monitor, image templates and copies. */
#pragma once

#include <stddef.h>
#include <uv.h>

struct lxmd_child;

/* status: exit code, or 128 + signal. out/err: what it wrote (NUL-terminated, at most the cap),
 * valid during the call only. line_cb variants are not needed: the monitor writes one line. */
typedef void (*lxmd_child_done_fn)(int status, const char *out, const char *err, void *ud);

/* Starts argv[0] (a path) with stdin on /dev/null and stdout/stderr captured. The callback (may
 * be NULL) runs once both pipes reached EOF and the process exited. Returns -errno when it could
 * not start (and the callback will not run). */
int lxmd_child_run(uv_loop_t *loop, char *const argv[], lxmd_child_done_fn done, void *ud);

/* The directory of the running lxmd executable (for helpers installed beside it). */
int lxmd_self_dir(char **ret);
