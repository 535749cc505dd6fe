/* The disk devices of a starting container: see monitor-disks.h.
 *
 * The child could clone the sources itself (it owns its mount namespace) but could not idmap the
 * clones: MOUNT_ATTR_IDMAP needs privilege over the file system's user namespace, which only the
 * monitor, in the host's, has. An idmapped clone shows the files' host ids 0.. as the
 * container's 0.. (the host root's files are the container root's), and what the container
 * writes is stored with its own ids, as in its rootfs. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "cleanup.h"
#include "util.h"
#include "monitor/monitor-disks.h"

/* Room for the SCM_RIGHTS of the largest sync record. */
union sync_control {
	struct cmsghdr align;
	char buf[CMSG_SPACE(MONITOR_DISKS_MAX * sizeof(int))];
};

int monitor_sync_send_fds(int sock, char type, const int *fds, size_t n)
{
	union sync_control control;
	struct iovec iov = { .iov_base = &type, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (n > MONITOR_DISKS_MAX)
		return -E2BIG;
	if (n > 0) {
		memset(control.buf, 0, sizeof(control.buf));
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

int monitor_sync_recv_fds(int sock, char *type, int *fds, size_t max, size_t *n)
{
	union sync_control control;
	struct iovec iov = { .iov_base = type, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = CMSG_SPACE(max * sizeof(int)),
	};
	size_t got = 0;
	ssize_t len;

	*n = 0;
	if (max > MONITOR_DISKS_MAX)
		return -E2BIG;
	do
		len = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (len < 0 && errno == EINTR);
	if (len < 0)
		return -errno;
	if (len == 0)
		return -EPIPE;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (got > max)
			got = max;
		memcpy(fds, CMSG_DATA(c), got * sizeof(int));
	}
	if (msg.msg_flags & MSG_CTRUNC) {
		for (size_t i = 0; i < got; i++)
			close(fds[i]);
		return -EPROTO;
	}
	*n = got;
	return 0;
}

bool monitor_disk_is_bind(const struct lxm_spec_mount *m)
{
	return !m->fstype || streq(m->fstype, "bind");
}

static size_t count_binds(const struct lxm_container_spec *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n_mounts; i++)
		n += monitor_disk_is_bind(&s->mounts[i]);
	return n;
}

int monitor_open_userns(pid_t pid, int *ret, struct lxm_error **err)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	*ret = open(path, O_RDONLY | O_CLOEXEC);
	if (*ret < 0)
		return lxm_error_setx(err, -errno, 500, "open %s", path);
	return 0;
}

int monitor_clone_mount(const char *what, const char *path, int userns, bool recursive,
			bool readonly, int *ret, struct lxm_error **err)
{
	unsigned int at = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
	struct mount_attr attr = { 0 };
	_cleanup_close_ int fd = -1;
	struct stat st;

	fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (at & AT_RECURSIVE));
	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "%s %s: clone", what, path);
	if (userns >= 0) {
		attr.attr_set |= MOUNT_ATTR_IDMAP;
		attr.userns_fd = (uint64_t)userns;
	}
	if (readonly)
		attr.attr_set |= MOUNT_ATTR_RDONLY;
	/* A device node (a unix device's, made in a runtime dir that may be nodev) is there to be
	 * opened. */
	if (fstat(fd, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
		attr.attr_clr |= MOUNT_ATTR_NODEV;
	if ((attr.attr_set || attr.attr_clr) && mount_setattr(fd, "", at, &attr, sizeof(attr)) < 0)
		return lxm_error_setx(err, -errno, 500, "%s %s: %s", what, path,
				      userns >= 0 ? "idmap the clone (does its file system support "
						    "idmapped mounts?)"
						  : "set the clone's mount flags");
	*ret = TAKE_FD(fd);
	return 0;
}

int monitor_disks_send(const struct lxm_container_spec *s, pid_t child, int sync_fd,
		       struct lxm_error **err)
{
	int fds[MONITOR_DISKS_MAX];
	_cleanup_close_ int userns = -1;
	size_t n = count_binds(s), k = 0;
	int r = 0;

	if (n == 0)
		return 0;
	if (n > MONITOR_DISKS_MAX)
		return lxm_error_set(err, -E2BIG, 400, "%zu disk devices: at most %d", n,
				     MONITOR_DISKS_MAX);
	if (!s->privileged && (r = monitor_open_userns(child, &userns, err)) < 0)
		return r;
	for (size_t i = 0; i < s->n_mounts && r >= 0; i++) {
		const struct lxm_spec_mount *m = &s->mounts[i];

		if (!monitor_disk_is_bind(m))
			continue;
		r = monitor_clone_mount("disk", m->source, userns, false, m->readonly, &fds[k],
					err);
		if (r >= 0)
			k++;
	}
	if (r >= 0 && (r = monitor_sync_send_fds(sync_fd, LXM_MONITOR_SYNC_MOUNTS, fds, n)) < 0)
		lxm_error_setx(err, r, 500, "send the disk mounts to the child");
	for (size_t i = 0; i < k; i++)
		close(fds[i]);
	return r;
}

int monitor_disks_recv(const struct lxm_container_spec *s, int sync_fd, int **ret,
		       struct lxm_error **err)
{
	_cleanup_free_ int *trees = NULL;
	size_t n = count_binds(s), got = 0, k = 0;
	int fds[MONITOR_DISKS_MAX];
	char type = 0;
	int r;

	*ret = NULL;
	if (n == 0)
		return 0;
	r = monitor_sync_recv_fds(sync_fd, &type, fds, MONITOR_DISKS_MAX, &got);
	if (r == -EPIPE)
		return lxm_error_set(err, r, 500,
				     "the monitor went away before sending the disk mounts");
	if (r < 0 && r != -EPROTO)
		return lxm_error_setx(err, r, 500, "wait for the disk mounts");
	if (r < 0 || type != LXM_MONITOR_SYNC_MOUNTS || got != n) {
		for (size_t i = 0; i < got; i++)
			close(fds[i]);
		return lxm_error_set(err, -EPROTO, 500,
				     "unexpected message from the monitor (expected %zu disk "
				     "mounts, got %zu)",
				     n, got);
	}
	trees = calloc(s->n_mounts, sizeof(*trees));
	if (!trees)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (size_t i = 0; i < s->n_mounts; i++)
		trees[i] = monitor_disk_is_bind(&s->mounts[i]) ? fds[k++] : -1;
	*ret = TAKE_PTR(trees);
	return 0;
}

/* ---- hot-plug: lxm-monitor disk ---- */

/* Creates the directories of path (absolute) inside the current root, resolving each step
 * without leaving it or following magic links; returns an O_PATH fd of the last one. */
static int mkdir_inside(const char *path, int *ret, struct lxm_error **err)
{
	_cleanup_free_ char *copy = strdup(path);
	_cleanup_close_ int dir = -1;
	char *save = NULL;

	if (!copy)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return lxm_error_setx(err, -errno, 500, "open the container's root");
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int next;

		if (mkdirat(dir, c, 0755) < 0 && errno != EEXIST)
			return lxm_error_setx(err, -errno, 500, "create %s: mkdir %s", path, c);
		next = lxm_openat2(dir, c, O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
				   RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
		if (next < 0)
			return lxm_error_setx(err, next, 500, "create %s: open %s", path, c);
		close(dir);
		dir = next;
	}
	*ret = TAKE_FD(dir);
	return 0;
}

/* Creates an empty file at path (absolute; its directories too) inside the current root, as a
 * mount point for something that is not a directory (a unix device's node); returns an O_PATH
 * fd of it. */
static int mkfile_inside(const char *path, int *ret, struct lxm_error **err)
{
	_cleanup_free_ char *dir = strdup(path);
	_cleanup_close_ int dfd = -1, fd = -1;
	char *base;
	int r;

	if (!dir)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	base = strrchr(dir, '/');
	*base++ = '\0';
	if (!*base)
		return lxm_error_set(err, -EINVAL, 400, "create %s: not a file name", path);
	r = mkdir_inside(dir[0] ? dir : "/", &dfd, err);
	if (r < 0)
		return r;
	fd = lxm_openat2(dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0,
			 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
	if (fd == -ENOENT) {
		/* dfd is an O_PATH fd, which mknodat takes (openat with O_CREAT would not). */
		if (mknodat(dfd, base, S_IFREG | 0644, 0) < 0 && errno != EEXIST)
			return lxm_error_setx(err, -errno, 500, "create %s", path);
		fd = lxm_openat2(dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0,
				 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
	}
	if (fd < 0)
		return lxm_error_setx(err, fd, 500, "create %s: open", path);
	*ret = TAKE_FD(fd);
	return 0;
}

/* Joins init's mount namespace, and its user namespace when user is set. */
static int join(pid_t pid, bool user, struct lxm_error **err)
{
	_cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (pidfd < 0)
		return lxm_error_setx(err, -errno, 400, "open init (pid %d)", (int)pid);
	/* Inside the container's user namespace its root may not inspect us. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (setns(pidfd, CLONE_NEWNS | (user ? CLONE_NEWUSER : 0)) < 0)
		return lxm_error_setx(err, -errno, 500, "join the namespaces of pid %d", (int)pid);
	if (user) {
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
			return lxm_error_setx(err, -errno, 500, "become the container's root");
		(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	}
	if (chdir("/") < 0)
		return lxm_error_setx(err, -errno, 500, "enter the container's root");
	return 0;
}

static int disk_attach(pid_t pid, const char *source, const char *target, bool readonly, bool idmap,
		       struct lxm_error **err)
{
	_cleanup_close_ int userns = -1, tree = -1, tfd = -1;
	struct stat st;
	int r;

	if (idmap && (r = monitor_open_userns(pid, &userns, err)) < 0)
		return r;
	r = monitor_clone_mount("disk", source, userns, false, readonly, &tree, err);
	if (r < 0)
		return r;
	if (fstat(tree, &st) < 0)
		return lxm_error_setx(err, -errno, 500, "disk %s: stat the clone", source);
	r = join(pid, idmap, err);
	if (r < 0)
		return r;
	r = S_ISDIR(st.st_mode) ? mkdir_inside(target, &tfd, err)
				: mkfile_inside(target, &tfd, err);
	if (r < 0)
		return r;
	if (move_mount(tree, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return lxm_error_setx(err, -errno, 500, "mount %s on %s", source, target);
	return 0;
}

static int disk_detach(pid_t pid, const char *target, bool user, bool remove,
		       struct lxm_error **err)
{
	int r = join(pid, user, err);

	if (r < 0)
		return r;
	/* The path resolves inside the container's root (ours now); the last step is not
	 * followed. */
	if (umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "unmount %s", target);
	/* --remove: the mount point was made for the mount (a unix device's node). */
	if (remove && unlink(target) < 0 && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "remove %s", target);
	return 0;
}

int lxm_monitor_disk_main(int argc, char **argv)
{
	struct lxm_error *err = NULL;
	bool readonly = false, idmap = false, remove = false;
	const char *pos[4];
	size_t n = 0;
	char *end;
	long pid;
	int r;

	for (int i = 1; i < argc; i++) {
		if (streq(argv[i], "--readonly"))
			readonly = true;
		else if (streq(argv[i], "--idmap"))
			idmap = true;
		else if (streq(argv[i], "--remove"))
			remove = true;
		else if (n < ARRAY_SIZE(pos))
			pos[n++] = argv[i];
		else
			n = ARRAY_SIZE(pos) + 1;
	}
	if (n < 3 || (streq(pos[0], "attach") ? n != 4 : !streq(pos[0], "detach") || n != 3)) {
		fprintf(stderr, "usage: disk attach PID SOURCE TARGET [--readonly] [--idmap] | "
				"disk detach PID TARGET [--idmap] [--remove]\n");
		return 2;
	}
	errno = 0;
	pid = strtol(pos[1], &end, 10);
	if (*end || pid <= 0 || errno) {
		fprintf(stderr, "disk: invalid pid '%s'\n", pos[1]);
		return 2;
	}
	if (pos[n - 1][0] != '/') {
		fprintf(stderr, "disk: target '%s' is not absolute\n", pos[n - 1]);
		return 2;
	}
	if (streq(pos[0], "attach"))
		r = disk_attach((pid_t)pid, pos[2], pos[3], readonly, idmap, &err);
	else
		r = disk_detach((pid_t)pid, pos[2], idmap, remove, &err);
	if (r < 0) {
		fprintf(stderr, "%s\n", err ? err->msg : "failed");
		lxm_error_free(err);
		return 1;
	}
	return 0;
}
