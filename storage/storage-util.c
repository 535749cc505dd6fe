/* Helpers every storage driver uses: child processes (cp, mkfs.btrfs, btrfs), staged tree copies,
 * usage walks and mount point lookups. None of them logs; errors name the step and the path. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <search.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/fs.h>

#include "cleanup.h"
#include "util.h"

#include "storage-internal.h"

extern char **environ;

/* Directories searched after PATH: lxmd may run with a PATH that lacks the sbin ones. */
#define STORAGE_EXTRA_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The most of a child's stderr kept for the error message. */
#define STORAGE_CHILD_STDERR_MAX 4096

static const char *const layout_dirs[] = {
	"images", "containers", "containers-snapshots", "custom", "custom-snapshots",
};

char *storage_pool_subpath(const struct lxm_pool *p, const char *sub)
{
	char *s;

	if (asprintf(&s, "%s/%s", p->path, sub) < 0)
		return NULL;
	return s;
}

int storage_make_layout(const struct lxm_pool *p, struct lxm_error **err)
{
	int r;

	if ((r = lxm_mkdir_p(p->path, STORAGE_DIR_MODE)) < 0)
		return lxm_error_setx(err, r, 500, "create %s", p->path);
	for (size_t i = 0; i < ARRAY_SIZE(layout_dirs); i++) {
		_cleanup_free_ char *d = storage_pool_subpath(p, layout_dirs[i]);

		if (!d)
			return -ENOMEM;
		if (mkdir(d, STORAGE_DIR_MODE) < 0 && errno != EEXIST)
			return lxm_error_setx(err, -errno, 500, "create %s", d);
	}
	return 0;
}

int storage_remove_layout(const struct lxm_pool *p, struct lxm_error **err)
{
	for (size_t i = 0; i < ARRAY_SIZE(layout_dirs); i++) {
		_cleanup_free_ char *d = storage_pool_subpath(p, layout_dirs[i]);
		int r;

		if (!d)
			return -ENOMEM;
		if ((r = storage_rm_tree(d, err)) < 0)
			return r;
	}
	return 0;
}

/* Whether dir holds a volume (an entry not starting with "."). */
static int dir_has_volume(const char *path, char **ret_name)
{
	_cleanup_closedir_ DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			*ret_name = strdup(de->d_name);
			return *ret_name ? 1 : -ENOMEM;
		}
	return 0;
}

int storage_check_no_volumes(const struct lxm_pool *p, struct lxm_error **err)
{
	static const char *const dirs[] = { "containers", "custom" };

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *d = storage_pool_subpath(p, dirs[i]), *name = NULL;
		int r;

		if (!d)
			return -ENOMEM;
		r = dir_has_volume(d, &name);
		if (r < 0)
			return lxm_error_setx(err, r, 500, "list %s", d);
		if (r > 0)
			return lxm_error_set(err, -EBUSY, 409, "the pool still has volume %s/%s",
					     dirs[i], name);
	}
	return 0;
}

int storage_find_program(const char *name, char **ret)
{
	_cleanup_free_ char *search = NULL;
	const char *env = getenv("PATH");
	char *save = NULL;

	if (strchr(name, '/')) {
		if (access(name, X_OK) < 0)
			return -errno;
		*ret = strdup(name);
		return *ret ? 0 : -ENOMEM;
	}
	if (asprintf(&search, "%s:%s", env ? env : "", STORAGE_EXTRA_PATH) < 0)
		return -ENOMEM;
	for (char *dir = strtok_r(search, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		_cleanup_free_ char *full = NULL;

		if (!*dir)
			continue;
		if (asprintf(&full, "%s/%s", dir, name) < 0)
			return -ENOMEM;
		if (access(full, X_OK) == 0) {
			*ret = TAKE_PTR(full);
			return 0;
		}
	}
	return -ENOENT;
}

/* The errno whose text the child printed last ("cp: ...: No space left on device"), else EIO. */
static int errno_from_text(const char *text)
{
	const char *best = NULL;
	int best_errno = EIO;

	for (int e = 1; e < 134; e++) {
		const char *s = strerror(e), *at = text, *hit;

		if (!s || startswith(s, "Unknown error"))
			continue;
		while ((hit = strstr(at, s))) {
			if (!best || hit > best) {
				best = hit;
				best_errno = e;
			}
			at = hit + 1;
		}
	}
	return best_errno;
}

/* Appends what fd has to *buf (up to max bytes kept); returns 0 at EOF, 1 when more may come. */
static int drain(int fd, char **buf, size_t *len, size_t max)
{
	char chunk[4096];
	ssize_t n = read(fd, chunk, sizeof(chunk));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -errno;
	if (n == 0)
		return 0;
	if (*len < max) {
		size_t keep = (size_t)n < max - *len ? (size_t)n : max - *len;
		char *nb = realloc(*buf, *len + keep + 1);

		if (!nb)
			return -ENOMEM;
		memcpy(nb + *len, chunk, keep);
		*len += keep;
		nb[*len] = '\0';
		*buf = nb;
	}
	return 1;
}

static char *join_argv(const char *const argv[])
{
	size_t len = 1;
	char *s;

	for (size_t i = 0; argv[i]; i++)
		len += strlen(argv[i]) + 1;
	s = calloc(1, len);
	if (!s)
		return NULL;
	for (size_t i = 0; argv[i]; i++) {
		if (i)
			strcat(s, " ");
		strcat(s, argv[i]);
	}
	return s;
}

/* Starts prog with stdin and stdout on /dev/null and stderr on err_w. The
 * child dies with lxmd (PR_SET_PDEATHSIG): a copy that outlived a killed lxmd would write into
 * a staging directory that the next start is removing. Between fork and exec only
 * async-signal-safe calls: lxmd has threads. */
static int spawn_child(const char *prog, const char *const argv[], int err_w, pid_t *ret_pid)
{
	pid_t parent = getpid(), pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null_in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int null_out = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent || null_in < 0 ||
		    null_out < 0 || dup2(null_in, 0) < 0 || dup2(null_out, 1) < 0 ||
		    dup2(err_w, 2) < 0)
			_exit(127);
		execve(prog, (char *const *)argv, environ);
		_exit(127);
	}
	*ret_pid = pid;
	return 0;
}

int storage_run(const char *const argv[], struct lxm_error **err)
{
	_cleanup_free_ char *prog = NULL, *cmd = join_argv(argv), *errs = NULL;
	_cleanup_close_ int err_r = -1, err_w = -1;
	size_t err_len = 0;
	int p[2], r, status;
	pid_t pid = -1;

	if (!cmd)
		return -ENOMEM;
	if ((r = storage_find_program(argv[0], &prog)) < 0)
		return lxm_error_set(err, r, 500, "run %s: %s not found in PATH or the sbin dirs",
				     cmd, argv[0]);
	if (pipe2(p, O_CLOEXEC) < 0)
		return lxm_error_setx(err, -errno, 500, "run %s: pipe", cmd);
	err_r = p[0];
	err_w = p[1];
	if ((r = spawn_child(prog, argv, err_w, &pid)) < 0)
		return lxm_error_setx(err, r, 500, "run %s", cmd);
	lxm_closep(&err_w);
	err_w = -1;
	/* Reads the child's stderr until the child (and any process it left behind) closes it. */
	while ((r = drain(err_r, &errs, &err_len, STORAGE_CHILD_STDERR_MAX)) > 0)
		;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return lxm_error_setx(err, -errno, 500, "run %s: wait", cmd);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "run %s: read its output", cmd);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (errs && err_len) {
			while (err_len && (errs[err_len - 1] == '\n' || errs[err_len - 1] == ' '))
				errs[--err_len] = '\0';
			return lxm_error_set(err, -errno_from_text(errs), 500, "%s: %s", cmd, errs);
		}
		if (WIFSIGNALED(status))
			return lxm_error_set(err, -EIO, 500, "%s: killed by signal %d", cmd,
					     WTERMSIG(status));
		return lxm_error_set(err, -EIO, 500, "%s: exited with status %d", cmd,
				     WEXITSTATUS(status));
	}
	return 0;
}

int storage_copy_tree(const char *src, const char *dst, struct lxm_error **err)
{
	const char *argv[] = { "cp", "-a", "--reflink=auto", "-T", src, dst, NULL };
	/* A virtual machine's disk is mostly zeros, written out in full by an image's unpack:
	 * every run of zeros becomes a hole (where no reflink shares the extents). */
	const char *vm_argv[] = { "cp", "-a", "--reflink=auto", "--sparse=always", "-T", src,
				  dst,	NULL };
	int r = storage_vm_disk(src, NULL);

	if (r < 0)
		return lxm_error_setx(err, r, 500, "copy %s: find its disk", src);
	return storage_run(r > 0 ? vm_argv : argv, err);
}

int storage_staging_path(const char *path, char **ret)
{
	const char *slash = strrchr(path, '/');
	char rnd[17];
	int r;

	if (!slash)
		return -EINVAL;
	if ((r = lxm_random_hex(rnd, 8)) < 0)
		return r;
	if (asprintf(ret, "%.*s/" STORAGE_STAGING_PREFIX "%s-%s", (int)(slash - path), path,
		     slash + 1, rnd) < 0)
		return -ENOMEM;
	return 0;
}

int storage_exists(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

int storage_require(const char *path, const char *step, struct lxm_error **err)
{
	int r = storage_exists(path);

	if (r <= 0)
		return lxm_error_setx(err, r < 0 ? r : -ENOENT, r < 0 ? 500 : 404, "%s %s", step,
				      path);
	return 0;
}

int storage_require_absent(const char *path, struct lxm_error **err)
{
	int r = storage_exists(path);

	if (r != 0)
		return r < 0 ? lxm_error_setx(err, r, 500, "stat %s", path)
			     : lxm_error_setx(err, -EEXIST, 409, "create %s", path);
	return 0;
}

int storage_copy_staged(const char *src, const char *dst, struct lxm_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	int r;

	if ((r = storage_require_absent(dst, err)) < 0 ||
	    (r = storage_require(src, "copy", err)) < 0)
		return r;
	if ((r = storage_staging_path(dst, &tmp)) < 0)
		return lxm_error_setx(err, r, 500, "copy %s", src);
	r = storage_copy_tree(src, tmp, err);
	if (r >= 0)
		r = storage_rename_noreplace(tmp, dst, err);
	if (r < 0)
		lxm_rm_tree(tmp);
	return r;
}

int storage_replace_staged(const char *src, const char *dst, struct lxm_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	int r;

	if ((r = storage_require(src, "restore", err)) < 0 ||
	    (r = storage_require(dst, "restore to", err)) < 0)
		return r;
	if ((r = storage_staging_path(dst, &tmp)) < 0)
		return lxm_error_setx(err, r, 500, "restore %s", src);
	r = storage_copy_tree(src, tmp, err);
	if (r >= 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE) < 0)
		r = lxm_error_setx(err, -errno, 500, "swap %s with %s", tmp, dst);
	/* After the swap tmp holds the old tree; before it, the partial copy. */
	lxm_rm_tree(tmp);
	return r;
}

int storage_rename_noreplace(const char *src, const char *dst, struct lxm_error **err)
{
	if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0)
		return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "rename %s to %s",
				      src, dst);
	return 0;
}

int storage_rm_tree(const char *path, struct lxm_error **err)
{
	int r = lxm_rm_tree(path);

	if (r < 0)
		return lxm_error_setx(err, r, 500, "remove %s", path);
	return 0;
}

/* Renames a volume dir and its snapshots dir; when the second rename fails the first is undone. */
int storage_rename_volume(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			  const char *new_name, struct lxm_error **err)
{
	_cleanup_free_ char *from = NULL, *to = NULL, *snaps = NULL, *new_snaps = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, t, name, NULL, &from)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, new_name, NULL, &to)) < 0 ||
	    (r = lxm_pool_snapshots_dir(p, t, name, &snaps)) < 0 ||
	    (r = lxm_pool_snapshots_dir(p, t, new_name, &new_snaps)) < 0)
		return r;
	if ((r = storage_exists(new_snaps)) != 0)
		return r < 0 ? lxm_error_setx(err, r, 500, "stat %s", new_snaps)
			     : lxm_error_setx(err, -EEXIST, 409, "rename to %s", new_snaps);
	if ((r = storage_rename_noreplace(from, to, err)) < 0)
		return r;
	if (storage_exists(snaps) > 0 &&
	    (r = storage_rename_noreplace(snaps, new_snaps, err)) < 0) {
		(void)rename(to, from);
		return r;
	}
	return 0;
}

void storage_rmdir_if_empty(const char *path)
{
	(void)rmdir(path);
}

int storage_snapshot_rename(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			    const char *snap, const char *new_snap, struct lxm_error **err)
{
	_cleanup_free_ char *from = NULL, *to = NULL;
	int r;

	if ((r = lxm_pool_volume_path(p, t, name, snap, &from)) < 0 ||
	    (r = lxm_pool_volume_path(p, t, name, new_snap, &to)) < 0)
		return r;
	return storage_rename_noreplace(from, to, err);
}

int storage_volume_mkdir(struct lxm_pool *p, enum lxm_volume_type t, const char *name,
			 struct lxm_error **err)
{
	_cleanup_free_ char *dst = NULL, *rootfs = NULL;

	if (lxm_pool_volume_path(p, t, name, NULL, &dst) < 0)
		return -ENOMEM;
	if (mkdir(dst, STORAGE_DIR_MODE) < 0)
		return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "create %s", dst);
	if (t != LXM_VOLUME_CONTAINER)
		return 0;
	/* An instance volume always has its rootfs. */
	if (asprintf(&rootfs, "%s/rootfs", dst) < 0 || mkdir(rootfs, 0755) < 0) {
		int r = rootfs ? -errno : -ENOMEM;

		lxm_rm_tree(dst);
		return lxm_error_setx(err, r, 500, "create %s/rootfs", dst);
	}
	return 0;
}

/* ---- usage ---- */

/* One inode seen during a walk: hardlinks count once. */
struct seen_inode {
	dev_t dev; /* its device */
	ino_t ino; /* its inode number */
};

/* nftw has no user pointer; a walk runs on one thread, so thread-local state is enough. */
static __thread uint64_t walk_bytes;
static __thread void *walk_seen;
static __thread int walk_error;

static int seen_cmp(const void *a, const void *b)
{
	const struct seen_inode *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return 0;
}

static int usage_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_NS || flag == FTW_DNR)
		return 0;
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
		struct seen_inode *key = malloc(sizeof(*key)), **found;

		if (!key) {
			walk_error = -ENOMEM;
			return 1;
		}
		key->dev = st->st_dev;
		key->ino = st->st_ino;
		found = tsearch(key, &walk_seen, seen_cmp);
		if (!found) {
			free(key);
			walk_error = -ENOMEM;
			return 1;
		}
		if (*found != key) {
			free(key);
			return 0;
		}
	}
	walk_bytes += (uint64_t)st->st_blocks * 512;
	return 0;
}

int storage_tree_usage(const char *path, uint64_t *ret)
{
	int k;

	walk_bytes = 0;
	walk_seen = NULL;
	walk_error = 0;
	errno = 0;
	k = nftw(path, usage_entry, 32, FTW_PHYS | FTW_MOUNT);
	tdestroy(walk_seen, free);
	walk_seen = NULL;
	if (walk_error < 0)
		return walk_error;
	if (k == -1)
		return errno ? -errno : -EIO;
	*ret = walk_bytes;
	return 0;
}

int storage_measure_tree(const char *path, struct lxm_storage_usage *ret, struct lxm_error **err)
{
	uint64_t used;
	int r = storage_tree_usage(path, &used);

	if (r < 0)
		return lxm_error_setx(err, r, r == -ENOENT ? 404 : 500, "measure %s", path);
	ret->used = used;
	ret->total = 0;
	return 0;
}

int storage_statvfs_usage(const char *path, struct lxm_storage_usage *ret, struct lxm_error **err)
{
	struct statvfs sv;

	if (statvfs(path, &sv) < 0)
		return lxm_error_setx(err, -errno, 500, "statvfs %s", path);
	ret->total = (uint64_t)sv.f_blocks * sv.f_frsize;
	ret->used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
	return 0;
}

/* ---- mounts ---- */

int storage_mount_info(const char *path, char **ret_fstype, char **ret_source)
{
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL, *real = NULL, *fstype = NULL, *source = NULL;
	size_t cap = 0;

	real = realpath(path, NULL);
	if (!real)
		return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -errno;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	/* The last matching line is the mount on top. */
	while (getline(&line, &cap, f) > 0) {
		char *fields[10], *save = NULL, *sep;
		int n = 0;

		for (char *t = strtok_r(line, " \n", &save); t && n < 5;
		     t = strtok_r(NULL, " \n", &save))
			fields[n++] = t;
		if (n < 5)
			continue;
		lxm_unescape_octal(fields[4]);
		if (!streq(fields[4], real))
			continue;
		/* After the optional fields comes "-", then fstype and source. */
		sep = strstr(save ? save : "", " - ");
		if (!sep && startswith(save, "- "))
			sep = save - 1;
		if (!sep)
			continue;
		{
			char *s2 = NULL, *fs = strtok_r(sep + 3, " \n", &s2);
			char *src = fs ? strtok_r(NULL, " \n", &s2) : NULL;

			free(fstype);
			free(source);
			fstype = strdup(fs ? fs : "");
			source = src ? strdup(src) : strdup("");
			if (!fstype || !source)
				return -ENOMEM;
			lxm_unescape_octal(source);
		}
	}
	if (!fstype)
		return -ENOENT;
	if (ret_fstype)
		*ret_fstype = TAKE_PTR(fstype);
	if (ret_source)
		*ret_source = TAKE_PTR(source);
	return 0;
}

int storage_is_mountpoint(const char *path)
{
	int r = storage_mount_info(path, NULL, NULL);

	if (r == 0)
		return 1;
	return r == -ENOENT ? 0 : r;
}

int storage_umount(const char *path, struct lxm_error **err)
{
	for (int i = 0; i < 16; i++) {
		int r = storage_is_mountpoint(path);

		if (r < 0)
			return lxm_error_setx(err, r, 500, "check mounts of %s", path);
		if (r == 0)
			return 0;
		if (umount2(path, UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
			return lxm_error_setx(err, -errno, errno == EBUSY ? 409 : 500, "unmount %s",
					      path);
	}
	return lxm_error_set(err, -EBUSY, 409, "unmount %s: still mounted after 16 unmounts", path);
}

/* ---- virtual machine disks ---- */

int storage_vm_disk(const char *volpath, char **ret)
{
	static const char *const names[] = { LXM_VM_DISK_RAW, LXM_VM_DISK_QCOW2 };
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *path = NULL;

		if (asprintf(&path, "%s/%s", volpath, names[i]) < 0)
			return -ENOMEM;
		/* A file, not a volume: no disk in it. */
		if ((r = storage_exists(path)) == -ENOTDIR)
			return 0;
		if (r < 0)
			return r;
		if (r > 0) {
			if (ret)
				*ret = TAKE_PTR(path);
			return (int)i + 1;
		}
	}
	return 0;
}

int storage_set_nocow(const char *path, struct lxm_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int flags = 0;

	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "set nodatacow on %s: open", path);
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		return lxm_error_setx(err, -errno, 500, "set nodatacow on %s: get flags", path);
	if (flags & FS_NOCOW_FL)
		return 0;
	flags |= FS_NOCOW_FL;
	if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
		return lxm_error_setx(err, -errno, 500, "set nodatacow on %s", path);
	return 0;
}

/* A qcow2 header (all fields big-endian): "QFI\xfb", version, then where the backing file's name
 * is and how long it is, then the virtual size. */
#define QCOW2_MAGIC	 0x514649fbU
#define QCOW2_HEADER_LEN 32

static uint64_t be64(const unsigned char *b)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | b[i];
	return v;
}

static uint32_t be32(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

int storage_qcow2_info(const char *path, char **ret_backing, uint64_t *ret_size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	unsigned char h[QCOW2_HEADER_LEN];
	uint64_t off;
	uint32_t len;
	char *name;
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, h, sizeof(h), 0);
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(h) || be32(h) != QCOW2_MAGIC)
		return -EBADMSG;
	off = be64(h + 8);
	len = be32(h + 16);
	if (ret_size)
		*ret_size = be64(h + 24);
	if (!ret_backing)
		return 0;
	*ret_backing = NULL;
	if (off == 0 || len == 0)
		return 0;
	if (len > PATH_MAX)
		return -EBADMSG;
	if (!(name = calloc(1, len + 1)))
		return -ENOMEM;
	n = pread(fd, name, len, (off_t)off);
	if (n != (ssize_t)len) {
		free(name);
		return n < 0 ? -errno : -EBADMSG;
	}
	*ret_backing = name;
	return 0;
}

int storage_vm_disk_size(const char *disk, int kind, uint64_t *ret, struct lxm_error **err)
{
	struct stat st;
	int r;

	if (kind == 2) {
		if ((r = storage_qcow2_info(disk, NULL, ret)) < 0)
			return lxm_error_setx(err, r, 500, "read the qcow2 header of %s", disk);
		return 0;
	}
	if (stat(disk, &st) < 0)
		return lxm_error_setx(err, -errno, 500, "stat %s", disk);
	*ret = (uint64_t)st.st_size;
	return 0;
}

int storage_vm_disk_grow(const char *disk, int kind, uint64_t bytes, struct lxm_error **err)
{
	_cleanup_free_ char *arg = NULL;
	uint64_t cur = 0;
	int r;

	if ((r = storage_vm_disk_size(disk, kind, &cur, err)) < 0)
		return r;
	if (bytes == cur)
		return 0;
	if (bytes < cur)
		return lxm_error_set(err, -EINVAL, 400,
				     "disk %s is %" PRIu64 " bytes: a size of %" PRIu64
				     " bytes would shrink it, and disks only grow (set size= to "
				     "at least %" PRIu64 ")",
				     disk, cur, bytes, cur);
	if (kind == 2) {
		const char *argv[] = {
			"qemu-img", "resize", "-q", "-f", "qcow2", disk, NULL, NULL
		};

		if (asprintf(&arg, "%" PRIu64, bytes) < 0)
			return -ENOMEM;
		argv[6] = arg;
		return storage_run(argv, err);
	}
	if (truncate(disk, (off_t)bytes) < 0)
		return lxm_error_setx(err, -errno, errno == EFBIG || errno == ENOSPC ? 400 : 500,
				      "grow %s to %" PRIu64 " bytes", disk, bytes);
	return 0;
}
