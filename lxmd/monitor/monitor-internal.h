/* What lxm-monitor's modes and its client share and nothing else needs: the mode calling
 * convention, the sync protocol between the monitor and the child it clones, and the bounds of the
 * control protocol (monitor.h describes the protocol itself). */
#pragma once

/* Each mode's entry point (lxm_monitor_start_main, lxm_monitor_exec_main) gets main's argv minus
 * the program name: argv[0] is the mode ("start" or "exec"), so getopt() can run on it as is. */

/* Longest control request or reply line, newline included. Requests are tiny; the bound keeps a
 * broken client from making the monitor (or lxmd) buffer without limit. */
#define LXM_MONITOR_LINE_MAX 4096

/* Sync protocol over a SOCK_SEQPACKET socketpair (one record per message, first byte the type):
 *   monitor -> child  LXM_MONITOR_SYNC_GO     with SCM_RIGHTS {rootfs tree, console slave}: the
 *                                             id maps are written and the v1 cgroups joined;
 *   child -> monitor  LXM_MONITOR_SYNC_ERROR  followed by the error text (no NUL): setup failed,
 *                                             the child exits 1;
 *   EOF at the monitor                        the child's end is close-on-exec, so EOF means init
 *                                             was exec'd (or the child died without a word, which
 *                                             the monitor then sees as an exit of init). */
#define LXM_MONITOR_SYNC_GO    'G'
#define LXM_MONITOR_SYNC_ERROR 'E'
/* Longest sync record; longer error texts are cut. */
#define LXM_MONITOR_SYNC_MAX 4096
