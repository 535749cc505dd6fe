/* lxm-monitor: one small process per running container. lxmd runs
 *     lxm-monitor start <spec.json>
 * with stdout on a pipe; the monitor detaches (fork + setsid, the intermediate exits, so it is
 * never lxmd's child and survives lxmd), creates the container with clone3 in every namespace,
 * writes its id maps, places it in its cgroups, hands it the idmapped rootfs mount and the console
 * pty, and waits for its setup to exec init. Then it writes ONE line of JSON to stdout and closes
 * it:
 *     {"status":"Running","init_pid":N,"monitor_pid":M}
 * or, when the container could not start,
 *     {"error":"start 'c1': step 'pivot-root': ...: Invalid argument"}
 * (and exits 1 after cleaning up). While init runs, the monitor is its parent: it copies console
 * output to spec.console_log (capped at spec.console_log_max), serves the control socket, and when
 * init exits it writes <rundir>/exit.json ({"exit_code":N} or {"signal":N}, "stopped_at" ns),
 * removes the container's cgroups and its control socket, and exits 0.
 *
 * Control socket (spec.control_socket, mode 0600): one request per connection, a JSON object on one
 * line, answered by one JSON line:
 *   {"op":"status"}                      -> {"status":"Running","init_pid":N,"monitor_pid":M,
 *                                            "started_at":ns}
 *   {"op":"stop","signal":S,"timeout":T} -> {"ok":true}: S to init now, SIGKILL after T seconds
 *                                            (T < 0: never); completion shows as the monitor's exit
 *   {"op":"kill"}                        -> {"ok":true}: SIGKILL to init
 *   {"op":"console"}                     -> {"ok":true}, and the connection stays open as the
 *                                            console: bytes the client sends go to the pty,
 *                                            console output goes to the client (and to the log
 *                                            as always) until either side closes. One client at
 *                                            a time ({"error":"console already attached"}); one
 *                                            that lets more than 1 MiB of output pile up is
 *                                            dropped, the monitor never waits for it
 *   {"op":"console-resize","width":W,"height":H}
 *                                        -> {"ok":true}: TIOCSWINSZ on the console (1..65535)
 *   {"op":"console-log-clear"}           -> {"ok":true}: empties the console log (only the
 *                                            monitor may: it writes at its own offset)
 *   errors                               -> {"error":"..."}
 *
 * VM mode (same binary): lxm-monitor vm <spec.json> runs a QEMU VM (vm/vm-spec.h) with the same
 * ready line (init_pid: QEMU's), console, control socket and exit.json, plus the ops freeze,
 * unfreeze and state (monitor-vm.c).
 *
 * Exec helper (same binary): lxm-monitor exec <spec.json> <init_pid> [--uid U] [--gid G]
 *     [--cwd DIR] [--env K=V]... [--pty [--width W --height H]] -- CMD [ARG...]
 * joins init's namespaces (setns on a pidfd) and cgroup, reapplies the spec's capabilities,
 * seccomp and LSM, makes itself non-dumpable, forks into the pid namespace and execs CMD with the
 * stdio it was given (--pty: a pty from the container's /dev/ptmx); exits with CMD's status
 * (128+N for a signal, 127 not found, 126 not executable, 1 when the helper failed). A socket
 * on fd 3 gets its reports: the command's pidfd (and the pty master), or why it failed (see
 * monitor-exec.c). */
#pragma once

#include <jansson.h>
#include <uv.h>

#include "error.h"

#define LXM_MONITOR_NAME "lxm-monitor"

/* Sends one request to a monitor's control socket and reads the reply (blocking, bounded by
 * timeout_ms). -ENOENT/-ECONNREFUSED when no monitor listens there. A {"error":...} reply is
 * returned as -EIO with that message. */
int lxm_monitor_request(const char *socket_path, const json_t *request, int timeout_ms,
			json_t **ret_reply, struct lxm_error **err);

/* The reply (borrowed: freed when the callback returns) or, on failure, an error that the callback
 * owns; exactly one of the two is non-NULL. */
typedef void (*lxm_monitor_reply_fn)(json_t *reply, struct lxm_error *err, void *ud);

/* lxm_monitor_request() on a libuv loop: the same messages and bounds, with done called once on
 * the loop thread. Returns 0 when the call is under way, or -errno (done will not run) when the
 * request cannot be sent at all. A pending call keeps the loop alive until it ends. */
int lxm_monitor_request_async(uv_loop_t *loop, const char *socket_path, const json_t *request,
			      int timeout_ms, lxm_monitor_reply_fn done, void *ud,
			      struct lxm_error **err);

/* Entry points of the binary's modes (monitor.c's main dispatches). */
int lxm_monitor_start_main(int argc, char **argv);
int lxm_monitor_exec_main(int argc, char **argv);
int lxm_monitor_vm_main(int argc, char **argv);
