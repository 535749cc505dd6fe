/* Disk devices of a starting container (the spec's bind mounts): the monitor clones each source
 * (idmapped through the child's user namespace when unprivileged, read-only when asked) and hands
 * the detached trees to the child right after GO, in one LXM_MONITOR_SYNC_MOUNTS record; the
 * child attaches them in step 'mount-extra' (lxmd/container/setup-mounts.c). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "container/spec.h"
#include "error.h"

/* Sync record monitor -> child after GO, with SCM_RIGHTS {one tree per bind mount of the spec, in
 * spec order}; sent only when the spec has bind mounts. */
#define LXM_MONITOR_SYNC_MOUNTS 'M'

/* The most bind mounts a spec may have (one SCM_RIGHTS record carries them all). */
#define MONITOR_DISKS_MAX 64

/* Opens the user namespace of process pid (/proc/PID/ns/user) into *ret. */
int monitor_open_userns(pid_t pid, int *ret, struct lxm_error **err);

/* The one way the monitor clones a mount (disks, the rootfs, overlay layers): *ret gets a
 * detached clone of the mount at path (with the mounts below it when recursive), idmapped
 * through userns when that is not -1, read-only when asked. what names the mount in errors
 * ("disk /srv/x: clone"). */
int monitor_clone_mount(const char *what, const char *path, int userns, bool recursive,
			bool readonly, int *ret, struct lxm_error **err);

/* Sends a sync record (one byte, type) with n fds (at most MONITOR_DISKS_MAX) over sock.
 * 0 or -errno. */
int monitor_sync_send_fds(int sock, char type, const int *fds, size_t n);
/* Receives a sync record: *type, and its fds (close-on-exec, at most max of them) in fds, *n
 * of them. 0; -EPIPE at end of file; -EPROTO when more fds came than fit (none are kept);
 * -errno. */
int monitor_sync_recv_fds(int sock, char *type, int *fds, size_t max, size_t *n);

/* Whether mount m is one the monitor clones (a bind mount). */
bool monitor_disk_is_bind(const struct lxm_spec_mount *m);

/* Monitor: clones the sources of the spec's bind mounts and sends them to child (pid, in its user
 * namespace) over sync_fd. Nothing is sent without bind mounts. Errors name the source. */
int monitor_disks_send(const struct lxm_container_spec *s, pid_t child, int sync_fd,
		       struct lxm_error **err);

/* Child: receives the trees that monitor_disks_send() sent: *ret gets an array of s->n_mounts
 * fds (close-on-exec; -1 for mounts that are not binds), or NULL without bind mounts. */
int monitor_disks_recv(const struct lxm_container_spec *s, int sync_fd, int **ret,
		       struct lxm_error **err);

/* lxm-monitor disk: hot-plugs a disk into a running container, run by lxmd (argv[0] is "disk"):
 *   disk attach <init_pid> <source> <target> [--readonly] [--idmap]
 *   disk detach <init_pid> <target> [--idmap] [--remove]
 * attach clones source on the host (idmapped through init's user namespace with --idmap), joins
 * init's user (with --idmap) and mount namespaces, creates target (directories, as the
 * container's root, resolved inside its root; an empty file for a source that is no directory)
 * and attaches the clone there; detach unmounts target there (and with --remove unlinks it).
 * Exit 0, or 1 with the reason on stderr. */
int lxm_monitor_disk_main(int argc, char **argv);
