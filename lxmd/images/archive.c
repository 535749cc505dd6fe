/* Image files with libarchive, streamed in blocks of BLOCK_SIZE.
 *
 * Unpacking goes through archive_write_disk, which resolves entry names against the current
 * directory. lxmd runs this on its thread pool, so the working thread first takes a private
 * current directory with unshare(CLONE_FS) (cwd, root and umask stop being shared with the
 * other threads) and changes into destdir for the duration. Every entry is checked here before
 * libarchive sees it (layout, absolute paths, "..", symlinks on the way, file types, hard link
 * targets), so a refusal names the entry; libarchive's own SECURE_* checks stay on behind ours.
 * File flags (chattr +i and the like) are not restored: an image must never be able to make its
 * own directory in the store undeletable. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <sched.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "images/archive.h"
#include "util.h"

#define BLOCK_SIZE    (128 * 1024)
#define METADATA_MAX  (1024 * 1024)
#define PROGRESS_STEP (1024 * 1024)

/* What archive_write_disk restores. Owners are numeric: no user or group lookup is set. */
#define EXTRACT_FLAGS                                                                              \
	(ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |                     \
	 ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_SECURE_NODOTDOT |           \
	 ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS)

static inline void archive_read_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}

static inline void archive_write_freep(struct archive **a)
{
	if (*a)
		archive_write_free(*a);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive_entry *, archive_entry_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive_entry_linkresolver *, archive_entry_linkresolver_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free)

#define _cleanup_archive_read_	_cleanup_(archive_read_freep)
#define _cleanup_archive_write_ _cleanup_(archive_write_freep)

/* ---- progress ---- */

struct progress {
	lxm_progress_fn fn; /* the caller's callback, or NULL */
	void *ud;	    /* for fn */
	uint64_t total;	    /* what done counts up to, 0 when unknown */
	uint64_t last;	    /* done at the last report */
};

/* Reports when at least PROGRESS_STEP bytes were handled since the last report, or when forced.
 * Returns -ECANCELED when the callback asks to stop. */
static int progress_report(struct progress *p, uint64_t done, bool force)
{
	if (!p->fn)
		return 0;
	if (!force && done - p->last < PROGRESS_STEP)
		return 0;
	p->last = done;
	return p->fn(done, p->total, p->ud) ? -ECANCELED : 0;
}

/* ---- small file helpers ---- */

/* HTTP status for a failure while writing the unpacked tree: the machine's fault (500) or the
 * image's (400, e.g. a name libarchive refused). */
static int disk_status(int errnum)
{
	switch (errnum) {
	case ENOSPC:
	case EDQUOT:
	case EIO:
	case ENOMEM:
	case EROFS:
		return 500;
	default:
		return 400;
	}
}

/* ---- entry checks ---- */

/* Where an entry lands in an unpacked image. */
enum area {
	AREA_NONE,	/* nowhere: refused */
	AREA_METADATA,	/* metadata.yaml */
	AREA_TEMPLATES, /* templates/... */
	AREA_ROOTFS,	/* rootfs/... */
	AREA_DISK,	/* rootfs.img: a virtual machine's root disk */
	AREA_BOOT,	/* boot/...: a virtual machine's kernel and initrd */
};

/* Normalizes an entry name: leading "./" and empty or "." components are dropped, so
 * "./rootfs//etc/./x/" becomes "rootfs/etc/x" and "./" becomes "". For the rootfs half of a
 * split image the result is put under "rootfs/". Returns 0, or -EINVAL with *reason set. */
static int entry_name(const char *name, enum lxm_archive_kind kind, char **ret, const char **reason)
{
	_cleanup_free_ char *out = NULL;
	size_t n = 0, len = strlen(name);
	const char *p = name;

	if (name[0] == '/') {
		*reason = "absolute path";
		return -EINVAL;
	}
	out = malloc(len + sizeof("rootfs/"));
	if (!out)
		return -ENOMEM;
	if (kind == LXM_ARCHIVE_ROOTFS)
		n = (size_t)sprintf(out, "rootfs");
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t clen = slash ? (size_t)(slash - p) : strlen(p);

		if (clen == 2 && p[0] == '.' && p[1] == '.') {
			*reason = "path leaves the image";
			return -EINVAL;
		}
		if (clen > 0 && !(clen == 1 && p[0] == '.')) {
			if (n > 0)
				out[n++] = '/';
			memcpy(out + n, p, clen);
			n += clen;
		}
		p += clen;
		if (*p == '/')
			p++;
	}
	out[n] = '\0';
	*ret = TAKE_PTR(out);
	return 0;
}

static enum area area_of(const char *name, enum lxm_archive_kind kind)
{
	if (streq(name, "rootfs") || startswith(name, "rootfs/"))
		return kind == LXM_ARCHIVE_METADATA ? AREA_NONE : AREA_ROOTFS;
	if (kind == LXM_ARCHIVE_ROOTFS)
		return AREA_NONE;
	if (streq(name, "metadata.yaml"))
		return AREA_METADATA;
	if (streq(name, "templates") || startswith(name, "templates/"))
		return AREA_TEMPLATES;
	if (streq(name, "boot") || startswith(name, "boot/"))
		return AREA_BOOT;
	if (streq(name, "rootfs.img"))
		return kind == LXM_ARCHIVE_UNIFIED ? AREA_DISK : AREA_NONE;
	return AREA_NONE;
}

/* Why a file of this type and mode may not be at name (in area), or NULL when it may. */
static const char *type_refusal(const char *name, enum area area, mode_t mode)
{
	mode_t type = mode & S_IFMT;

	if (type == S_IFCHR || type == S_IFBLK || type == S_IFIFO || type == S_IFSOCK) {
		if (area != AREA_ROOTFS || !startswith(name, "rootfs/dev/"))
			return "device node, fifo or socket outside rootfs/dev";
	}
	if ((mode & (S_ISUID | S_ISGID)) && area != AREA_ROOTFS)
		return "setuid or setgid file outside rootfs/";
	if (area == AREA_METADATA && type != S_IFREG)
		return "metadata.yaml is not a regular file";
	if ((streq(name, "rootfs") || streq(name, "templates") || streq(name, "boot")) &&
	    type != S_IFDIR)
		return "not a directory";
	if (area == AREA_TEMPLATES && type != S_IFREG && type != S_IFDIR)
		return "only files and directories may be in templates/";
	if (area == AREA_BOOT && type != S_IFREG && type != S_IFDIR)
		return "only files and directories may be in boot/";
	if (area == AREA_DISK && type != S_IFREG)
		return "rootfs.img is not a regular file";
	return NULL;
}

/* Whether the directories leading to name (relative to destfd) are all real directories: a
 * symlink on the way is refused (-ELOOP). Directories that do not exist yet are fine:
 * libarchive creates them. */
static int parents_check(int destfd, const char *name)
{
	_cleanup_free_ char *parent = strdup(name);
	char *slash;
	int fd;

	if (!parent)
		return -ENOMEM;
	slash = strrchr(parent, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	fd = lxm_openat2(destfd, parent, O_PATH | O_DIRECTORY, 0,
			 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	/* ENOTDIR: a file in the way, which libarchive replaces by a directory. */
	if (fd == -ENOENT || fd == -ENOTDIR)
		return 0;
	return fd;
}

/* The state of one unpack. */
struct unpack {
	const char *path;	    /* the image file */
	enum lxm_archive_kind kind; /* what it should hold */
	int destfd;		    /* destdir, O_PATH */
	struct progress progress;   /* the caller's progress callback */
	bool seen_metadata;	    /* metadata.yaml was unpacked */
	bool seen_rootfs;	    /* something under rootfs/ was unpacked */
	char *last; /* the name of the last entry read, for errors between entries */
};

static int refuse(struct lxm_error **err, const char *entry, const char *reason)
{
	return lxm_error_set(err, -EINVAL, 400, "image: %s: %s", entry, reason);
}

/* Checks a hard link entry: its target must already be in the same part of the image, reached
 * without symlinks, and of a type allowed where the link is. Rewrites the target normalized. */
static int check_hardlink(struct unpack *u, struct archive_entry *e, const char *raw,
			  const char *name, enum area area, struct lxm_error **err)
{
	_cleanup_free_ char *target = NULL;
	const char *reason = NULL, *why;
	struct stat st;
	int k;

	k = entry_name(archive_entry_hardlink(e), u->kind, &target, &reason);
	if (k == -ENOMEM)
		return lxm_error_set(err, k, 500, "image: %s: out of memory", raw);
	if (k < 0)
		return lxm_error_set(err, k, 400, "image: %s: hard link target %s: %s", raw,
				     archive_entry_hardlink(e), reason);
	if (area_of(target, u->kind) != area || streq(target, name))
		return lxm_error_set(err, -EINVAL, 400,
				     "image: %s: hard link to %s leaves its part of the image", raw,
				     archive_entry_hardlink(e));
	k = parents_check(u->destfd, target);
	if (k >= 0 && fstatat(u->destfd, target, &st, AT_SYMLINK_NOFOLLOW) < 0)
		k = -errno;
	if (k < 0)
		return lxm_error_set(err, k, 400,
				     "image: %s: hard link target %s is not in the image", raw,
				     archive_entry_hardlink(e));
	why = type_refusal(name, area, st.st_mode);
	if (why)
		return refuse(err, raw, why);
	archive_entry_set_hardlink(e, target);
	return 0;
}

/* Checks one entry and rewrites its name (and hard link target) normalized. Returns 1 when the
 * entry is the top directory of the archive, which is skipped. */
static int check_entry(struct unpack *u, struct archive_entry *e, struct lxm_error **err)
{
	const char *raw = archive_entry_pathname(e), *reason = NULL, *why;
	_cleanup_free_ char *name = NULL;
	enum area area;
	int k;

	if (!raw || !*raw)
		return lxm_error_set(err, -EINVAL, 400,
				     "image: entry after %s: truncated or corrupt: no name",
				     u->last ? u->last : "the start");
	free(u->last);
	u->last = strdup(raw);
	if (!u->last)
		return -ENOMEM;
	k = entry_name(raw, u->kind, &name, &reason);
	if (k == -ENOMEM)
		return lxm_error_set(err, k, 500, "image: %s: out of memory", raw);
	if (k < 0)
		return refuse(err, raw, reason);
	if (!*name)
		return 1;
	area = area_of(name, u->kind);
	if (area == AREA_NONE)
		return refuse(
			err, raw,
			u->kind == LXM_ARCHIVE_METADATA
				? "not part of an image's metadata (metadata.yaml, templates/, "
				  "boot/)"
				: "not part of an image (metadata.yaml, templates/, rootfs/ or "
				  "rootfs.img, boot/)");
	k = parents_check(u->destfd, name);
	if (k < 0)
		return refuse(err, raw,
			      k == -ELOOP || k == -EXDEV ? "path goes through a symlink"
							 : "path cannot be resolved");
	if (archive_entry_hardlink(e)) {
		k = check_hardlink(u, e, raw, name, area, err);
		if (k < 0)
			return k;
	} else {
		why = type_refusal(name, area, archive_entry_mode(e));
		if (why)
			return refuse(err, raw, why);
		if (area == AREA_TEMPLATES && archive_entry_symlink(e))
			return refuse(err, raw, "only files and directories may be in templates/");
		if (area == AREA_BOOT && archive_entry_symlink(e))
			return refuse(err, raw, "only files and directories may be in boot/");
	}
	if (area == AREA_METADATA) {
		if (archive_entry_size(e) > METADATA_MAX)
			return refuse(err, raw, "larger than 1 MiB");
		u->seen_metadata = true;
	}
	if (area == AREA_ROOTFS || area == AREA_DISK)
		u->seen_rootfs = true;
	archive_entry_set_pathname(e, name);
	return 0;
}

/* ---- unpacking a tarball ---- */

static int open_reader(const char *path, struct archive **ret, struct lxm_error **err)
{
	_cleanup_archive_read_ struct archive *a = archive_read_new();

	if (!a)
		return lxm_error_set(err, -ENOMEM, 500, "image: out of memory");
	/* Each call returns ARCHIVE_WARN when the filter would run as an external program. */
	if (archive_read_support_filter_gzip(a) < ARCHIVE_WARN ||
	    archive_read_support_filter_xz(a) < ARCHIVE_WARN ||
	    archive_read_support_filter_zstd(a) < ARCHIVE_WARN ||
	    archive_read_support_filter_bzip2(a) < ARCHIVE_WARN ||
	    archive_read_support_format_tar(a) != ARCHIVE_OK)
		return lxm_error_set(err, -ENOTSUP, 500, "image: libarchive: %s",
				     archive_error_string(a));
	if (archive_read_open_filename(a, path, BLOCK_SIZE) != ARCHIVE_OK) {
		int e = archive_errno(a);

		/* Not a file libarchive can read (a system errno) or not a tarball in a known
		 * compression (its own codes). */
		if (e == ENOENT || e == EACCES || e == EISDIR || e == EIO || e == ENOMEM)
			return lxm_error_set(err, -e, e == ENOENT ? 404 : 500, "image: %s: %s",
					     path, archive_error_string(a));
		return lxm_error_set(err, -EINVAL, 400, "image: %s: not a tarball: %s", path,
				     archive_error_string(a));
	}
	*ret = TAKE_PTR(a);
	return 0;
}

/* An error of the reading side: the file is truncated or corrupt. */
static int read_failed(struct archive *a, const char *what, struct lxm_error **err)
{
	const char *msg = archive_error_string(a);
	int e = archive_errno(a);

	return lxm_error_set(err, e > 0 && e != ENOMEM ? -e : -EINVAL, e == ENOMEM ? 500 : 400,
			     "image: %s: truncated or corrupt: %s", what,
			     msg ? msg : "unknown error");
}

static int write_failed(struct archive *disk, const char *entry, struct lxm_error **err)
{
	const char *msg = archive_error_string(disk);
	int e = archive_errno(disk) > 0 ? archive_errno(disk) : EIO;

	return lxm_error_set(err, -e, disk_status(e), "image: %s: %s", entry,
			     msg ? msg : "write failed");
}

static int copy_entry_data(struct unpack *u, struct archive *in, struct archive *disk,
			   const char *entry, struct lxm_error **err)
{
	for (;;) {
		const void *buf;
		size_t size;
		la_int64_t off;
		la_ssize_t w;
		int r;

		r = archive_read_data_block(in, &buf, &size, &off);
		if (r == ARCHIVE_EOF)
			return 0;
		/* A warning while reading data means the data is not what the archive says. */
		if (r != ARCHIVE_OK)
			return read_failed(in, entry, err);
		w = archive_write_data_block(disk, buf, size, off);
		if (w < ARCHIVE_OK)
			return write_failed(disk, entry, err);
		r = progress_report(&u->progress, (uint64_t)archive_filter_bytes(in, -1), false);
		if (r < 0)
			return lxm_error_set(err, r, 400, "image: unpack cancelled");
	}
}

/* Reads every entry of in, checks it and writes it through disk (the cwd is destdir). */
static int unpack_entries(struct unpack *u, struct archive *in, struct archive *disk,
			  struct lxm_error **err)
{
	for (;;) {
		struct archive_entry *e;
		int r, k;

		r = archive_read_next_header(in, &e);
		if (r == ARCHIVE_EOF)
			return 0;
		/* ARCHIVE_WARN on a header means it was read but a name could not be converted
		 * to the locale (a UTF-8 name under LANG=C): the entry keeps its bytes as they are,
		 * which is what should land on disk. */
		if (r < ARCHIVE_WARN) {
			_cleanup_free_ char *where = NULL;

			if (asprintf(&where, "entry after %s", u->last ? u->last : "the start") < 0)
				return -ENOMEM;
			return read_failed(in, where, err);
		}
		k = check_entry(u, e, err);
		if (k < 0)
			return k;
		if (k > 0)
			continue;
		r = archive_write_header(disk, e);
		if (r != ARCHIVE_OK)
			return write_failed(disk, u->last, err);
		if (archive_entry_size(e) > 0) {
			k = copy_entry_data(u, in, disk, u->last, err);
			if (k < 0)
				return k;
		}
		r = archive_write_finish_entry(disk);
		if (r != ARCHIVE_OK)
			return write_failed(disk, u->last, err);
		/* Also here: a run of empty files or directories reads input too. */
		k = progress_report(&u->progress, (uint64_t)archive_filter_bytes(in, -1), false);
		if (k < 0)
			return lxm_error_set(err, k, 400, "image: unpack cancelled");
	}
}

/* Gives the calling thread its own current directory (see the top of the file) and moves it
 * to dirfd. *ret_old is where it was. */
static int enter_dir(int dirfd, int *ret_old)
{
	_cleanup_close_ int old = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (old < 0)
		return -errno;
	if (unshare(CLONE_FS) < 0 || fchdir(dirfd) < 0)
		return -errno;
	*ret_old = TAKE_FD(old);
	return 0;
}

static void leave_dir(int old)
{
	if (fchdir(old) < 0) {
		/* The previous directory is still open, so this cannot fail in practice; the
		 * thread's directory only matters to libarchive, which always enters again. */
	}
	close(old);
}

static int unpack_tarball(struct unpack *u, struct lxm_error **err)
{
	_cleanup_archive_read_ struct archive *in = NULL;
	struct archive *disk;
	int old = -1, k, r;

	k = open_reader(u->path, &in, err);
	if (k < 0)
		return k;
	k = enter_dir(u->destfd, &old);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "image: enter the unpack directory");
	/* The write-disk handle applies directory modes and times when it closes, by names
	 * relative to the cwd: it must be freed before leaving destdir, on every path. */
	disk = archive_write_disk_new();
	if (!disk) {
		leave_dir(old);
		return lxm_error_set(err, -ENOMEM, 500, "image: out of memory");
	}
	archive_write_disk_set_options(disk, EXTRACT_FLAGS);
	k = unpack_entries(u, in, disk, err);
	r = archive_write_close(disk);
	if (k >= 0 && r != ARCHIVE_OK)
		k = write_failed(disk, "finishing directories", err);
	archive_write_free(disk);
	leave_dir(old);
	if (k < 0)
		return k;
	return progress_report(&u->progress, (uint64_t)archive_filter_bytes(in, -1), true) < 0
		       ? lxm_error_set(err, -ECANCELED, 400, "image: unpack cancelled")
		       : 0;
}

/* ---- unpacking a squashfs rootfs ---- */

static int is_squashfs(const char *path, bool *ret)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	char magic[4];
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, magic, sizeof(magic), 0);
	if (n < 0)
		return -errno;
	*ret = n == (ssize_t)sizeof(magic) && memcmp(magic, "hsqs", 4) == 0;
	return 0;
}

/* The first entry of an unpacked squashfs that the device rule refuses. nftw() has no user
 * data, hence a thread-local. */
static __thread struct {
	size_t prefix_len; /* length of destdir plus the '/' */
	char *bad;	   /* the offending path relative to destdir */
} squash_walk;

static int squash_check(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	const char *name = path + squash_walk.prefix_len;

	(void)ftw;
	if (type == FTW_NS || type == FTW_DNR) {
		squash_walk.bad = strdup(name);
		return 1;
	}
	if (type_refusal(name, AREA_ROOTFS, st->st_mode)) {
		squash_walk.bad = strdup(name);
		return 1;
	}
	return 0;
}

static int unpack_squashfs(struct unpack *u, const char *destdir, struct lxm_error **err)
{
	_cleanup_free_ char *rootfs = NULL;
	char errbuf[2048], *nl;
	struct stat st;
	int k;

	if (asprintf(&rootfs, "%s/rootfs", destdir) < 0)
		return -ENOMEM;
	k = progress_report(&u->progress, 0, true);
	if (k < 0)
		return lxm_error_set(err, k, 400, "image: unpack cancelled");
	char *const argv[] = { "unsquashfs", "-no-progress", "-quiet",	      "-strict-errors",
			       "-dest",	     rootfs,	     (char *)u->path, NULL };
	k = lxmd_run_sync(argv, errbuf, sizeof(errbuf));
	if (k < 0)
		return lxm_error_setx(err, k, 500, "image: run unsquashfs");
	if (k != 0) {
		/* Drop a trailing newline, so the message ends with unsquashfs's own words. */
		nl = errbuf + strlen(errbuf);
		while (nl > errbuf && (nl[-1] == '\n' || nl[-1] == ' '))
			*--nl = '\0';
		return lxm_error_set(err, -EINVAL, 400,
				     "image: squashfs rootfs: unsquashfs failed (status %d): %s", k,
				     *errbuf ? errbuf : "no message");
	}
	if (lstat(rootfs, &st) < 0 || !S_ISDIR(st.st_mode))
		return lxm_error_set(err, -EINVAL, 400,
				     "image: squashfs rootfs: no root directory");
	squash_walk.prefix_len = strlen(destdir) + 1;
	squash_walk.bad = NULL;
	k = nftw(rootfs, squash_check, 32, FTW_PHYS | FTW_MOUNT);
	if (k != 0) {
		_cleanup_free_ char *bad = squash_walk.bad;

		squash_walk.bad = NULL;
		if (k < 0)
			return lxm_error_setx(err, -errno, 500,
					      "image: squashfs rootfs: walk the tree");
		return refuse(err, bad ? bad : "rootfs",
			      "device node, fifo or socket outside rootfs/dev");
	}
	u->seen_rootfs = true;
	k = progress_report(&u->progress, u->progress.total, true);
	return k < 0 ? lxm_error_set(err, k, 400, "image: unpack cancelled") : 0;
}

int lxm_archive_unpack(const char *path, enum lxm_archive_kind kind, const char *destdir,
		       lxm_progress_fn progress, void *ud, struct lxm_error **err)
{
	struct unpack u = {
		.path = path,
		.kind = kind,
		.destfd = -1,
		.progress = { .fn = progress, .ud = ud },
	};
	struct stat st;
	bool squash = false;
	int k;

	if (stat(path, &st) < 0)
		return lxm_error_setx(err, -errno, errno == ENOENT ? 404 : 500, "image: %s", path);
	if (!S_ISREG(st.st_mode))
		return lxm_error_set(err, -EINVAL, 400, "image: %s: not a regular file", path);
	u.progress.total = (uint64_t)st.st_size;
	if (kind == LXM_ARCHIVE_ROOTFS) {
		k = is_squashfs(path, &squash);
		if (k < 0)
			return lxm_error_setx(err, k, 500, "image: read %s", path);
	}
	if (mkdir(destdir, 0700) < 0)
		return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "image: create %s",
				      destdir);
	u.destfd = open(destdir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (u.destfd < 0) {
		k = lxm_error_setx(err, -errno, 500, "image: open %s", destdir);
		goto fail;
	}
	k = squash ? unpack_squashfs(&u, destdir, err) : unpack_tarball(&u, err);
	if (k < 0)
		goto fail;
	if (kind != LXM_ARCHIVE_ROOTFS && !u.seen_metadata) {
		k = lxm_error_set(err, -EINVAL, 400, "image: no metadata.yaml");
		goto fail;
	}
	if (kind != LXM_ARCHIVE_METADATA && !u.seen_rootfs) {
		k = lxm_error_set(err, -EINVAL, 400, "image: no rootfs");
		goto fail;
	}
	close(u.destfd);
	free(u.last);
	return 0;

fail:
	if (u.destfd >= 0)
		close(u.destfd);
	free(u.last);
	lxm_rm_tree(destdir);
	return k;
}

/* ---- metadata.yaml alone ---- */

int lxm_archive_read_metadata(const char *path, char **ret, size_t *ret_len, struct lxm_error **err)
{
	_cleanup_archive_read_ struct archive *in = NULL;
	struct archive_entry *e;
	int k, r;

	k = open_reader(path, &in, err);
	if (k < 0)
		return k;
	for (;;) {
		_cleanup_free_ char *name = NULL, *buf = NULL;
		const char *reason = NULL;
		size_t got = 0;
		la_int64_t size;

		r = archive_read_next_header(in, &e);
		if (r == ARCHIVE_EOF)
			return lxm_error_set(err, -ENOENT, 400, "image: no metadata.yaml");
		if (r < ARCHIVE_WARN)
			return read_failed(in, "reading entries", err);
		k = entry_name(archive_entry_pathname(e) ? archive_entry_pathname(e) : "",
			       LXM_ARCHIVE_UNIFIED, &name, &reason);
		if (k == -ENOMEM)
			return lxm_error_set(err, k, 500, "image: out of memory");
		if (k < 0 || !streq(name, "metadata.yaml"))
			continue;
		if (archive_entry_filetype(e) != AE_IFREG)
			return refuse(err, archive_entry_pathname(e),
				      "metadata.yaml is not a regular file");
		size = archive_entry_size(e);
		if (size > METADATA_MAX)
			return refuse(err, archive_entry_pathname(e), "larger than 1 MiB");
		buf = malloc((size_t)size + 1);
		if (!buf)
			return lxm_error_set(err, -ENOMEM, 500, "image: out of memory");
		for (;;) {
			la_ssize_t n = archive_read_data(in, buf + got, (size_t)size - got);

			if (n < 0)
				return read_failed(in, "metadata.yaml", err);
			if (n == 0)
				break;
			got += (size_t)n;
		}
		if (got != (size_t)size)
			return lxm_error_set(err, -EINVAL, 400, "image: metadata.yaml: truncated");
		buf[got] = '\0';
		*ret = TAKE_PTR(buf);
		if (ret_len)
			*ret_len = got;
		return 0;
	}
}

/* ---- packing ---- */

/* Where the packed bytes go: the temporary file, hashed on the way. */
struct pack_out {
	int fd;		/* path.tmp */
	EVP_MD_CTX *md; /* sha256 of everything written */
};

static la_ssize_t pack_write(struct archive *a, void *ud, const void *buf, size_t len)
{
	struct pack_out *o = ud;
	const char *p = buf;
	size_t left = len;

	while (left > 0) {
		ssize_t n = write(o->fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			archive_set_error(a, errno, "write: %s", strerror(errno));
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	if (EVP_DigestUpdate(o->md, buf, len) != 1) {
		archive_set_error(a, ENOMEM, "sha256 failed");
		return -1;
	}
	return (la_ssize_t)len;
}

/* The running sum of tree_size(); nftw() has no user data. */
static __thread uint64_t sum_sizes;

static int sum_size(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (type == FTW_F && S_ISREG(st->st_mode))
		sum_sizes += (uint64_t)st->st_size;
	return 0;
}

/* The bytes of regular files under dir, for the progress total (0 when it cannot be walked).
 * Hard links count once per name, so done may stay below it: the last report says total. */
static uint64_t tree_size(const char *dir)
{
	sum_sizes = 0;
	if (!dir || nftw(dir, sum_size, 32, FTW_PHYS) != 0)
		return 0;
	return sum_sizes;
}

struct pack {
	struct archive *out;			  /* the tarball being written */
	struct archive_entry_linkresolver *links; /* hard links seen so far */
	struct progress progress;		  /* the caller's callback */
	uint64_t done;				  /* source bytes read */
	char zeros[64 * 1024];			  /* for holes in sparse files */
};

static int pack_write_failed(struct pack *p, const char *name, struct lxm_error **err)
{
	int e = archive_errno(p->out) > 0 ? archive_errno(p->out) : EIO;

	return lxm_error_set(err, -e, 500, "pack image: %s: %s", name,
			     archive_error_string(p->out) ? archive_error_string(p->out)
							  : "write failed");
}

static int pack_write_exact(struct pack *p, const void *buf, size_t len, const char *name,
			    struct lxm_error **err)
{
	la_ssize_t w = archive_write_data(p->out, buf, len);

	if (w < 0 || (size_t)w != len)
		return pack_write_failed(p, name, err);
	return 0;
}

/* Copies the data of the entry disk is at. Holes of a sparse file are written as zeros, which
 * the pax writer turns back into holes when the entry carries a sparse map. */
static int pack_copy_data(struct pack *p, struct archive *disk, const char *name,
			  struct lxm_error **err)
{
	la_int64_t pos = 0;

	for (;;) {
		const void *buf;
		size_t size;
		la_int64_t off;
		int r, k;

		r = archive_read_data_block(disk, &buf, &size, &off);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r != ARCHIVE_OK)
			return lxm_error_set(err, -EIO, 500, "pack image: read %s: %s", name,
					     archive_error_string(disk));
		while (off > pos) {
			size_t n = (size_t)(off - pos) < sizeof(p->zeros) ? (size_t)(off - pos)
									  : sizeof(p->zeros);

			k = pack_write_exact(p, p->zeros, n, name, err);
			if (k < 0)
				return k;
			pos += (la_int64_t)n;
			p->done += n;
		}
		k = pack_write_exact(p, buf, size, name, err);
		if (k < 0)
			return k;
		pos += (la_int64_t)size;
		p->done += size;
		k = progress_report(&p->progress, p->done, false);
		if (k < 0)
			return lxm_error_set(err, k, 400, "pack image: cancelled");
	}
}

/* Writes one entry read from disk under its archive name. */
static int pack_entry(struct pack *p, struct archive *disk, struct archive_entry *e,
		      const char *name, struct lxm_error **err)
{
	struct archive_entry *sparse = NULL;
	int r;

	archive_entry_set_pathname(e, name);
	/* Numeric owners: the names of the host's users mean nothing in the image. */
	archive_entry_set_uname(e, NULL);
	archive_entry_set_gname(e, NULL);
	/* For tar the resolver never holds an entry back: the first of a set of links is written
	 * with its data, the later ones become hard links (with no data) to its name. */
	archive_entry_linkify(p->links, &e, &sparse);
	/* ARCHIVE_WARN: a name that is not valid in the locale is stored as bytes (hdrcharset
	 * BINARY), which the unpacking side keeps as they are. */
	r = archive_write_header(p->out, e);
	if (r < ARCHIVE_WARN)
		return pack_write_failed(p, name, err);
	if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0)
		return pack_copy_data(p, disk, name, err);
	return 0;
}

/* Adds the tree at dir under prefix ("rootfs", "templates"). The tree must hold no mounts such
 * as /proc or /sys: read_disk would archive what they show. Callers pack a stopped instance's
 * or a snapshot's rootfs, where nothing is mounted. */
static int pack_tree(struct pack *p, const char *dir, const char *prefix, struct lxm_error **err)
{
	_cleanup_archive_read_ struct archive *disk = archive_read_disk_new();
	_cleanup_free_ char *base = strdup(dir);
	size_t base_len;
	int r;

	if (!disk || !base)
		return lxm_error_set(err, -ENOMEM, 500, "pack image: out of memory");
	base_len = strlen(base);
	while (base_len > 1 && base[base_len - 1] == '/')
		base[--base_len] = '\0';
	archive_read_disk_set_symlink_physical(disk);
	/* No atime restore (it would touch every file's ctime); file flags are not packed,
	 * since unpacking never restores them. */
	archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_FFLAGS);
	if (archive_read_disk_open(disk, base) != ARCHIVE_OK)
		return lxm_error_set(err, -ENOENT, 400, "pack image: %s: %s", base,
				     archive_error_string(disk));
	for (;;) {
		_cleanup_(archive_entry_freep) struct archive_entry *e = archive_entry_new();
		_cleanup_free_ char *name = NULL;
		const char *src, *rel;
		int k;

		if (!e)
			return lxm_error_set(err, -ENOMEM, 500, "pack image: out of memory");
		r = archive_read_next_header2(disk, e);
		if (r == ARCHIVE_EOF)
			return 0;
		src = archive_entry_sourcepath(e) ? archive_entry_sourcepath(e) : base;
		if (r != ARCHIVE_OK)
			return lxm_error_set(err, -EIO, 500, "pack image: %s: %s", src,
					     archive_error_string(disk));
		archive_read_disk_descend(disk);
		if (archive_entry_filetype(e) == AE_IFSOCK)
			continue;
		rel = archive_entry_pathname(e);
		if (!rel || strncmp(rel, base, base_len) != 0)
			return lxm_error_set(err, -EINVAL, 500, "pack image: %s: unexpected name",
					     src);
		rel += base_len;
		while (*rel == '/')
			rel++;
		if (asprintf(&name, "%s%s%s", prefix, *rel ? "/" : "", rel) < 0)
			return -ENOMEM;
		k = pack_entry(p, disk, e, name, err);
		if (k < 0)
			return k;
	}
}

static int pack_metadata(struct pack *p, const char *yaml, struct lxm_error **err)
{
	_cleanup_(archive_entry_freep) struct archive_entry *e = archive_entry_new();
	size_t len = strlen(yaml);

	if (!e)
		return lxm_error_set(err, -ENOMEM, 500, "pack image: out of memory");
	archive_entry_set_pathname(e, "metadata.yaml");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_size(e, (la_int64_t)len);
	archive_entry_set_mtime(e, time(NULL), 0);
	if (archive_write_header(p->out, e) != ARCHIVE_OK)
		return pack_write_failed(p, "metadata.yaml", err);
	return pack_write_exact(p, yaml, len, "metadata.yaml", err);
}

static int add_filter(struct archive *a, enum lxm_compression c)
{
	switch (c) {
	case LXM_COMPRESS_NONE:
		return archive_write_add_filter_none(a);
	case LXM_COMPRESS_GZIP:
		return archive_write_add_filter_gzip(a);
	case LXM_COMPRESS_XZ:
		return archive_write_add_filter_xz(a);
	case LXM_COMPRESS_ZSTD:
		return archive_write_add_filter_zstd(a);
	}
	return ARCHIVE_FATAL;
}

static int pack_all(struct pack *p, const struct lxm_pack_source *src, struct lxm_error **err)
{
	int k;

	k = pack_metadata(p, src->metadata_yaml, err);
	if (k >= 0 && src->templates_dir)
		k = pack_tree(p, src->templates_dir, "templates", err);
	if (k >= 0 && src->boot_dir)
		k = pack_tree(p, src->boot_dir, "boot", err);
	if (k >= 0 && src->rootfs_dir)
		k = pack_tree(p, src->rootfs_dir, "rootfs", err);
	else if (k >= 0)
		k = pack_tree(p, src->disk_image, "rootfs.img", err);
	if (k >= 0 && archive_write_close(p->out) != ARCHIVE_OK)
		k = pack_write_failed(p, "end of archive", err);
	if (k >= 0)
		k = progress_report(&p->progress, p->progress.total ? p->progress.total : p->done,
				    true) < 0
			    ? lxm_error_set(err, -ECANCELED, 400, "pack image: cancelled")
			    : 0;
	return k;
}

int lxm_archive_pack(const struct lxm_pack_source *src, const char *path, enum lxm_compression c,
		     char sha256_hex[static 65], lxm_progress_fn progress, void *ud,
		     struct lxm_error **err)
{
	_cleanup_(archive_entry_linkresolver_freep) struct archive_entry_linkresolver *links = NULL;
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
	_cleanup_archive_write_ struct archive *out = archive_write_new();
	_cleanup_free_ struct pack *p = calloc(1, sizeof(*p));
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	unsigned char digest[32];
	struct pack_out o;
	int k;

	if (!src || !src->metadata_yaml || !src->rootfs_dir == !src->disk_image)
		return lxm_error_set(err, -EINVAL, 500,
				     "pack image: no metadata, or not one of rootfs and disk");
	links = archive_entry_linkresolver_new();
	if (!md || !out || !p || !links || asprintf(&tmp, "%s.tmp", path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "pack image: out of memory");
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		return lxm_error_set(err, -EIO, 500, "pack image: sha256 unavailable");
	archive_entry_linkresolver_set_strategy(links, ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE);
	if (archive_write_set_format_pax(out) != ARCHIVE_OK || add_filter(out, c) != ARCHIVE_OK)
		return lxm_error_set(err, -ENOTSUP, 500, "pack image: libarchive: %s",
				     archive_error_string(out));
	/* A regular file needs no padding after the last block. */
	archive_write_set_bytes_in_last_block(out, 1);
	archive_write_set_bytes_per_block(out, BLOCK_SIZE);

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "pack image: create %s", tmp);
	o = (struct pack_out){ .fd = fd, .md = md };
	if (archive_write_open2(out, &o, NULL, pack_write, NULL, NULL) != ARCHIVE_OK) {
		k = lxm_error_set(err, -EIO, 500, "pack image: %s: %s", tmp,
				  archive_error_string(out));
		goto fail;
	}
	p->out = out;
	p->links = links;
	p->progress = (struct progress){ .fn = progress, .ud = ud };
	if (progress)
		p->progress.total = tree_size(src->rootfs_dir ? src->rootfs_dir : src->disk_image) +
				    tree_size(src->templates_dir) + tree_size(src->boot_dir);
	k = pack_all(p, src, err);
	if (k < 0)
		goto fail;
	if (fsync(fd) < 0 || close(TAKE_FD(fd)) < 0) {
		k = lxm_error_setx(err, -errno, 500, "pack image: write %s", tmp);
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		k = lxm_error_setx(err, -errno, 500, "pack image: rename %s", tmp);
		goto fail;
	}
	if (EVP_DigestFinal_ex(md, digest, NULL) != 1)
		return lxm_error_set(err, -EIO, 500, "pack image: sha256 failed");
	lxm_hex(digest, sizeof(digest), sha256_hex);
	return 0;

fail:
	unlink(tmp);
	return k;
}

/* ---- fingerprints ---- */

int lxm_sha256_files(const char *const paths[], size_t n, char out[static 65],
		     struct lxm_error **err)
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
	_cleanup_free_ char *buf = malloc(BLOCK_SIZE);
	unsigned char digest[32];

	if (!md || !buf)
		return lxm_error_set(err, -ENOMEM, 500, "sha256: out of memory");
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		return lxm_error_set(err, -EIO, 500, "sha256: unavailable");
	for (size_t i = 0; i < n; i++) {
		_cleanup_close_ int fd = open(paths[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return lxm_error_setx(err, -errno, errno == ENOENT ? 404 : 500,
					      "sha256: open %s", paths[i]);
		for (;;) {
			ssize_t r = read(fd, buf, BLOCK_SIZE);

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return lxm_error_setx(err, -errno, 500, "sha256: read %s",
						      paths[i]);
			if (r == 0)
				break;
			if (EVP_DigestUpdate(md, buf, (size_t)r) != 1)
				return lxm_error_set(err, -EIO, 500, "sha256: failed");
		}
	}
	if (EVP_DigestFinal_ex(md, digest, NULL) != 1)
		return lxm_error_set(err, -EIO, 500, "sha256: failed");
	lxm_hex(digest, sizeof(digest), out);
	return 0;
}
