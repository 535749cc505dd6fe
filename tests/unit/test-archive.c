/* Image files: pack/unpack round trips with every compression (owners, modes, times, symlinks,
 * hard links, xattrs, setuid, device nodes), fingerprints against sha256sum, tarballs made by
 * GNU tar, split images and squashfs, and archives crafted to escape or to smuggle files,
 * each of which must be refused by name with nothing left behind. Runs as root. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "images/archive.h"
#include "tap.h"
#include "util.h"

static char tmp[PATH_MAX];
static int dest_counter;

static const char metadata_yaml[] = "architecture: x86_64\n"
				    "creation_date: 1700000000\n"
				    "properties:\n"
				    "  os: fixture\n"
				    "templates:\n"
				    "  /etc/hostname:\n"
				    "    when: [create]\n"
				    "    template: hostname.tpl\n";

/* ---- helpers ---- */

static int remove_any(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *dir)
{
	nftw(dir, remove_any, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* A path in the test's temporary directory. */
static __attribute__((format(printf, 1, 2))) char *tmp_path(const char *fmt, ...)
{
	_cleanup_free_ char *name = NULL;
	char *p = NULL;
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vasprintf(&name, fmt, ap);
	va_end(ap);
	if (k < 0 || asprintf(&p, "%s/%s", tmp, name) < 0)
		abort();
	return p;
}

static char *new_dest(void)
{
	char *p = NULL;

	if (asprintf(&p, "%s/dest-%d", tmp, ++dest_counter) < 0)
		abort();
	return p;
}

static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) < 0)
		return -1;
	return 0;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* The first line of a command's output, without its newline. */
static char *command_line(const char *cmd)
{
	_cleanup_(lxm_fclosep) FILE *f = popen(cmd, "r");
	char buf[512];

	if (!f)
		return NULL;
	if (!fgets(buf, sizeof(buf), f)) {
		pclose(TAKE_PTR(f));
		return NULL;
	}
	pclose(TAKE_PTR(f));
	buf[strcspn(buf, "\n")] = '\0';
	return strdup(buf);
}

static char *sha256sum(const char *path)
{
	_cleanup_free_ char *cmd = NULL;
	char *line;

	if (asprintf(&cmd, "cat %s | sha256sum", path) < 0)
		abort();
	line = command_line(cmd);
	if (line)
		line[strcspn(line, " ")] = '\0';
	return line;
}

static int run(const char *cmd)
{
	int status = system(cmd);

	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the fixture ---- */

static int set_old_time(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	struct timespec ts[2] = { { .tv_sec = 1600000000 }, { .tv_sec = 1600000000 } };

	(void)st;
	(void)type;
	(void)ftw;
	return utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

static int make_fixture(const char *root)
{
	struct vfs_cap_data cap = {
		.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
		.data = { { .permitted = 1u << CAP_NET_RAW } },
	};
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char p[PATH_MAX], q[PATH_MAX], big[4096];
	int fd;

#define P(rel) (snprintf(p, sizeof(p), "%s/%s", root, rel), p)
	if (mkdir(root, 0755) < 0 || mkdir(P("rootfs"), 0755) < 0 || chmod(p, 0755) < 0 ||
	    mkdir(P("templates"), 0755) < 0)
		return -1;
	if (write_file(P("templates/hostname.tpl"), "{{ instance.name }}\n", 20, 0644) < 0)
		return -1;
	if (mkdir(P("rootfs/etc"), 0755) < 0 || mkdir(P("rootfs/bin"), 0755) < 0 ||
	    mkdir(P("rootfs/usr"), 0755) < 0 || mkdir(P("rootfs/usr/bin"), 0755) < 0 ||
	    mkdir(P("rootfs/dev"), 0755) < 0 || mkdir(P("rootfs/data"), 0750) < 0 ||
	    lchown(P("rootfs/data"), 1234, 5678) < 0 || mkdir(P("rootfs/empty"), 0700) < 0)
		return -1;
	if (write_file(P("rootfs/etc/hostname"), "fixture\n", 8, 0644) < 0 ||
	    write_file(P("rootfs/bin/tool"), "#!/bin/sh\necho tool\n", 20, 0755) < 0 ||
	    lchown(P("rootfs/bin/tool"), 1234, 5678) < 0 ||
	    write_file(P("rootfs/data/secret"), "s3cret", 6, 0600) < 0 ||
	    lchown(P("rootfs/data/secret"), 1234, 5678) < 0)
		return -1;
	/* setuid root, as su is: chown first, since chown clears the bit. */
	if (write_file(P("rootfs/usr/bin/su"), "ELF-ish", 7, 0755) < 0 ||
	    chmod(P("rootfs/usr/bin/su"), 04755) < 0 ||
	    write_file(P("rootfs/usr/bin/wall"), "wall", 4, 0755) < 0 || lchown(p, 0, 5) < 0 ||
	    chmod(p, 02755) < 0)
		return -1;
	if (symlink("/etc/hostname", P("rootfs/etc/link")) < 0 || lchown(p, 1234, 5678) < 0 ||
	    symlink("../bin/tool", P("rootfs/usr/tool")) < 0)
		return -1;
	if (write_file(P("rootfs/bin/hard1"), "linked", 6, 0644) < 0 ||
	    (snprintf(q, sizeof(q), "%s/rootfs/bin/hard1", root), false) ||
	    link(q, P("rootfs/usr/bin/hard2")) < 0)
		return -1;
	if (write_file(P("rootfs/bin/ping"), "ping", 4, 0755) < 0 ||
	    lsetxattr(p, "security.capability", &cap, sizeof(cap), 0) < 0 ||
	    lsetxattr(p, "user.test", "hello", 5, 0) < 0)
		return -1;
	if (mknod(P("rootfs/dev/null"), S_IFCHR | 0666, makedev(1, 3)) < 0 || chmod(p, 0666) < 0 ||
	    mknod(P("rootfs/dev/initctl"), S_IFIFO | 0600, 0) < 0)
		return -1;
	/* 3 MiB with a hole in the middle, for progress and sparse handling. */
	fd = open(P("rootfs/big"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	for (int i = 0; i < 256; i++)
		if (write(fd, big, sizeof(big)) != (ssize_t)sizeof(big))
			return -1;
	if (pwrite(fd, big, sizeof(big), 3 * 1024 * 1024 - sizeof(big)) < 0)
		return -1;
	close(fd);
	/* A socket, which packing skips. */
	if (strlen(P("rootfs/sock")) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, p, strlen(p) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	close(fd);
	/* Old fixed times last, so that an unpack that does not restore them cannot match. */
	return nftw(P("rootfs"), set_old_time, 16, FTW_PHYS | FTW_DEPTH);
#undef P
}

/* ---- tree comparison ---- */

static int differences;

static void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

static void differ(const char *rel, const char *what)
{
	differences++;
	printf("#   %s: %s differs\n", rel, what);
}

static void compare_xattrs(const char *a, const char *b, const char *rel)
{
	char names[4096], va[512], vb[512];
	ssize_t n = llistxattr(a, names, sizeof(names));
	ssize_t m = llistxattr(b, va, sizeof(va));

	if (n < 0 || m < 0 || n != m) {
		differ(rel, "xattr list");
		return;
	}
	for (char *x = names; x < names + n; x += strlen(x) + 1) {
		ssize_t la = lgetxattr(a, x, va, sizeof(va));
		ssize_t lb = lgetxattr(b, x, vb, sizeof(vb));

		if (la < 0 || la != lb || memcmp(va, vb, (size_t)la) != 0)
			differ(rel, x);
	}
}

static void compare_path(const char *a, const char *b, const char *rel, bool times)
{
	struct stat sa, sb;

	if (lstat(a, &sa) < 0) {
		differ(rel, "source");
		return;
	}
	if (S_ISSOCK(sa.st_mode)) {
		if (exists(b))
			differ(rel, "a socket was packed:");
		return;
	}
	if (lstat(b, &sb) < 0) {
		differ(rel, "presence");
		return;
	}
	if (sa.st_mode != sb.st_mode)
		differ(rel, "mode");
	if (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid)
		differ(rel, "owner");
	if (times && sa.st_mtime != sb.st_mtime)
		differ(rel, "mtime");
	compare_xattrs(a, b, rel);
	if (S_ISREG(sa.st_mode)) {
		_cleanup_free_ char *da = NULL, *db = NULL;
		size_t la = 0, lb = 0;

		if (lxm_read_file(a, &da, &la) < 0 || lxm_read_file(b, &db, &lb) < 0 || la != lb ||
		    memcmp(da, db, la) != 0)
			differ(rel, "content");
	} else if (S_ISLNK(sa.st_mode)) {
		char ta[PATH_MAX] = "", tb[PATH_MAX] = "";

		if (readlink(a, ta, sizeof(ta) - 1) < 0 || readlink(b, tb, sizeof(tb) - 1) < 0 ||
		    strcmp(ta, tb) != 0)
			differ(rel, "symlink target");
	} else if (S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode)) {
		if (sa.st_rdev != sb.st_rdev)
			differ(rel, "device number");
	} else if (S_ISDIR(sa.st_mode)) {
		_cleanup_(closedirp) DIR *d = opendir(a);
		struct dirent *de;

		while (d && (de = readdir(d))) {
			_cleanup_free_ char *ca = NULL, *cb = NULL, *cr = NULL;

			if (streq(de->d_name, ".") || streq(de->d_name, ".."))
				continue;
			if (asprintf(&ca, "%s/%s", a, de->d_name) < 0 ||
			    asprintf(&cb, "%s/%s", b, de->d_name) < 0 ||
			    asprintf(&cr, "%s/%s", rel, de->d_name) < 0)
				abort();
			compare_path(ca, cb, cr, times);
		}
	}
}

/* Differences between the fixture's rootfs and an unpacked one. */
static int compare_rootfs(const char *fixture, const char *dest, bool times)
{
	_cleanup_free_ char *a = NULL, *b = NULL;

	differences = 0;
	if (asprintf(&a, "%s/rootfs", fixture) < 0 || asprintf(&b, "%s/rootfs", dest) < 0)
		abort();
	compare_path(a, b, "rootfs", times);
	return differences;
}

static bool same_inode(const char *dest, const char *x, const char *y)
{
	_cleanup_free_ char *a = NULL, *b = NULL;
	struct stat sa, sb;

	if (asprintf(&a, "%s/%s", dest, x) < 0 || asprintf(&b, "%s/%s", dest, y) < 0)
		abort();
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino && sa.st_nlink == 2;
}

/* ---- progress ---- */

struct counter {
	int calls;	  /* callbacks */
	uint64_t last;	  /* the last done */
	uint64_t total;	  /* the last total */
	bool monotonic;	  /* done never went down */
	int cancel_after; /* cancel on this call, 0 never */
};

static int count_progress(uint64_t done, uint64_t total, void *ud)
{
	struct counter *c = ud;

	c->calls++;
	if (done < c->last)
		c->monotonic = false;
	c->last = done;
	c->total = total;
	return c->cancel_after && c->calls >= c->cancel_after;
}

/* ---- crafting archives ---- */

struct spec {
	const char *name;     /* entry name */
	mode_t type;	      /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFIFO */
	mode_t perm;	      /* permission bits */
	const char *data;     /* content, or symlink target */
	const char *hardlink; /* hard link target, instead of the above */
	size_t size;	      /* content size when data is NULL (zeros) */
};

static int craft(const char *path, const struct spec *s, size_t n)
{
	struct archive *a = archive_write_new();
	static const char zeros[4096];
	int r = 0;

	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_gzip(a);
	if (archive_write_open_filename(a, path) != ARCHIVE_OK)
		return -1;
	for (size_t i = 0; i < n && r == 0; i++) {
		struct archive_entry *e = archive_entry_new();
		size_t len = s[i].data && s[i].type == AE_IFREG ? strlen(s[i].data) : s[i].size;

		archive_entry_set_pathname(e, s[i].name);
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		archive_entry_set_mtime(e, 1700000000, 0);
		if (s[i].hardlink) {
			archive_entry_set_hardlink(e, s[i].hardlink);
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_size(e, 0);
			len = 0;
		} else {
			archive_entry_set_filetype(e, s[i].type);
			archive_entry_set_perm(e, s[i].perm);
			if (s[i].type == AE_IFLNK)
				archive_entry_set_symlink(e, s[i].data);
			if (s[i].type == AE_IFCHR)
				archive_entry_set_rdev(e, makedev(8, 0));
			if (s[i].type != AE_IFREG)
				len = 0;
			archive_entry_set_size(e, (la_int64_t)len);
		}
		if (archive_write_header(a, e) != ARCHIVE_OK)
			r = -1;
		if (len && s[i].data && archive_write_data(a, s[i].data, len) != (la_ssize_t)len)
			r = -1;
		for (size_t left = s[i].data ? 0 : len; left > 0;) {
			size_t c = left < sizeof(zeros) ? left : sizeof(zeros);

			if (archive_write_data(a, zeros, c) != (la_ssize_t)c)
				r = -1;
			left -= c;
		}
		archive_entry_free(e);
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		r = -1;
	archive_write_free(a);
	return r;
}

#define META                                                                                       \
	{                                                                                          \
		"metadata.yaml", AE_IFREG, 0644, metadata_yaml, NULL, 0                            \
	}
#define ROOT                                                                                       \
	{                                                                                          \
		"rootfs", AE_IFDIR, 0755, NULL, NULL, 0                                            \
	}
#define FILE_(name, text)                                                                          \
	{                                                                                          \
		name, AE_IFREG, 0644, text, NULL, 0                                                \
	}

/* Unpacks path and expects a 400 whose message holds want, and nothing at the destination. */
static void expect_refused(const char *path, enum lxm_archive_kind kind, const char *want,
			   const char *what)
{
	_cleanup_free_ char *dest = new_dest();
	_cleanup_error_ struct lxm_error *err = NULL;
	int k = lxm_archive_unpack(path, kind, dest, NULL, NULL, &err);

	ok(k < 0 && err && err->status == 400, "%s: refused (%d, %d)", what, k,
	   err ? err->status : 0);
	ok(err && strstr(err->msg, want), "%s: the error says \"%s\": %s", what, want,
	   err ? err->msg : "(none)");
	ok(!exists(dest), "%s: nothing left at the destination", what);
}

static void expect_crafted_refused(const char *what, const struct spec *s, size_t n,
				   enum lxm_archive_kind kind, const char *want)
{
	_cleanup_free_ char *path = tmp_path("crafted-%s.tar.gz", what);

	for (char *c = strrchr(path, '/'); *c; c++)
		if (*c == ' ')
			*c = '_';
	if (!ok(craft(path, s, n) == 0, "%s: crafted", what))
		return;
	expect_refused(path, kind, want, what);
	unlink(path);
}

static void test_malicious(void)
{
	struct stat before, after;

	stat("/etc/passwd", &before);
	{
		struct spec s[] = { META, ROOT, FILE_("../x", "x") };
		expect_crafted_refused("dotdot", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "../x: path leaves the image");
	}
	{
		struct spec s[] = { META, ROOT, FILE_("/abs", "x") };
		expect_crafted_refused("absolute", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "/abs: absolute path");
	}
	{
		struct spec s[] = { META, ROOT, FILE_("rootfs/../../x", "x") };
		expect_crafted_refused("rootfs dotdot", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "rootfs/../../x: path leaves the image");
	}
	{
		struct spec s[] = { META,
				    ROOT,
				    { "rootfs/l", AE_IFLNK, 0777, "/etc", NULL, 0 },
				    FILE_("rootfs/l/passwd", "pwned:x:0:0::/:/bin/sh\n") };
		expect_crafted_refused("through symlink", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "rootfs/l/passwd: path goes through a symlink");
	}
	{
		struct spec s[] = { META,
				    ROOT,
				    { "rootfs/l", AE_IFLNK, 0777, "../../..", NULL, 0 },
				    FILE_("rootfs/l/etc/passwd", "pwned") };
		expect_crafted_refused("through relative symlink", s, ARRAY_SIZE(s),
				       LXM_ARCHIVE_UNIFIED,
				       "rootfs/l/etc/passwd: path goes through a symlink");
	}
	{
		struct spec s[] = { META, ROOT, { "rootfs/h", 0, 0, NULL, "../../etc/passwd", 0 } };
		expect_crafted_refused("hard link out", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "rootfs/h: hard link target ../../etc/passwd");
	}
	{
		struct spec s[] = { META, ROOT, { "rootfs/h", 0, 0, NULL, "/etc/passwd", 0 } };
		expect_crafted_refused("hard link absolute", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "rootfs/h: hard link target /etc/passwd: absolute path");
	}
	{
		struct spec s[] = { META,
				    ROOT,
				    { "rootfs/l", AE_IFLNK, 0777, "/etc", NULL, 0 },
				    { "rootfs/h", 0, 0, NULL, "rootfs/l/passwd", 0 } };
		expect_crafted_refused(
			"hard link through symlink", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
			"rootfs/h: hard link target rootfs/l/passwd is not in the image");
	}
	{
		struct spec s[] = { META,
				    ROOT,
				    { "rootfs/dev/", AE_IFDIR, 0755, NULL, NULL, 0 },
				    { "rootfs/dev/null", AE_IFCHR, 0666, NULL, NULL, 0 },
				    { "rootfs/bin/null", 0, 0, NULL, "rootfs/dev/null", 0 } };
		expect_crafted_refused(
			"hard link to a device", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
			"rootfs/bin/null: device node, fifo or socket outside rootfs/dev");
	}
	{
		struct spec s[] = { META,
				    ROOT,
				    { "rootfs/bin/sda", AE_IFCHR, 0660, NULL, NULL, 0 } };
		expect_crafted_refused(
			"device in bin", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
			"rootfs/bin/sda: device node, fifo or socket outside rootfs/dev");
	}
	{
		struct spec s[] = { META, ROOT, { "rootfs/tmp/f", AE_IFIFO, 0600, NULL, NULL, 0 } };
		expect_crafted_refused(
			"fifo in tmp", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
			"rootfs/tmp/f: device node, fifo or socket outside rootfs/dev");
	}
	{
		struct spec s[] = { META,
				    ROOT,
				    { "templates/x.tpl", AE_IFREG, 04755, "x", NULL, 0 } };
		expect_crafted_refused("setuid template", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "templates/x.tpl: setuid or setgid file outside rootfs/");
	}
	{
		struct spec s[] = { META,
				    ROOT,
				    { "templates/t", AE_IFLNK, 0777, "/etc/shadow", NULL, 0 } };
		expect_crafted_refused(
			"symlink template", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
			"templates/t: only files and directories may be in templates/");
	}
	{
		struct spec s[] = { META, ROOT, FILE_("evil", "x") };
		expect_crafted_refused("top level", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "evil: not part of an image");
	}
	{
		struct spec s[] = { ROOT, FILE_("rootfs/etc/hostname", "x") };
		expect_crafted_refused("no metadata", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "no metadata.yaml");
	}
	{
		struct spec s[] = { META };
		expect_crafted_refused("no rootfs", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "no rootfs");
	}
	{
		struct spec s[] = { META, { "rootfs", AE_IFLNK, 0777, "/", NULL, 0 } };
		expect_crafted_refused("rootfs symlink", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "rootfs: not a directory");
	}
	{
		struct spec s[] = {
			META, ROOT, { "metadata.yaml", AE_IFREG, 0644, NULL, NULL, 1024 * 1024 + 1 }
		};
		expect_crafted_refused("big metadata", s, ARRAY_SIZE(s), LXM_ARCHIVE_UNIFIED,
				       "metadata.yaml: larger than 1 MiB");
	}
	{
		struct spec s[] = { META, ROOT };
		expect_crafted_refused("rootfs in metadata", s, ARRAY_SIZE(s), LXM_ARCHIVE_METADATA,
				       "rootfs/: not part of an image's metadata");
	}
	{
		struct spec s[] = { FILE_("./etc/hostname", "x"),
				    { "./bin/sda", AE_IFBLK, 0660, NULL, NULL, 0 } };
		expect_crafted_refused("device in split rootfs", s, ARRAY_SIZE(s),
				       LXM_ARCHIVE_ROOTFS, "./bin/sda: device node");
	}
	{
		struct spec s[] = { FILE_("etc/hostname", "x"), FILE_("../escape", "x") };
		expect_crafted_refused("dotdot in split rootfs", s, ARRAY_SIZE(s),
				       LXM_ARCHIVE_ROOTFS, "../escape: path leaves the image");
	}
	stat("/etc/passwd", &after);
	ok(before.st_mtime == after.st_mtime && before.st_size == after.st_size &&
		   before.st_ino == after.st_ino,
	   "the host's /etc/passwd is untouched");
}

/* ---- round trips ---- */

static const char *const compressions[] = { "none", "gzip", "xz", "zstd" };

static void test_round_trip(const char *fixture, const char *name)
{
	_cleanup_free_ char *img = NULL, *dest = new_dest(), *want = NULL, *tmpfile = NULL;
	_cleanup_free_ char *meta = NULL, *tpl = NULL, *tpl_dir = NULL, *rootfs_dir = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	struct counter pc = { .monotonic = true }, uc = { .monotonic = true };
	enum lxm_compression c = LXM_COMPRESS_NONE;
	char fp[65] = "";
	size_t len = 0;
	struct stat st;
	int k;

	img = tmp_path("image-%s.tar", name);
	if (asprintf(&tmpfile, "%s.tmp", img) < 0 ||
	    asprintf(&tpl_dir, "%s/templates", fixture) < 0 ||
	    asprintf(&rootfs_dir, "%s/rootfs/", fixture) < 0)
		abort();
	ok(lxm_compression_from_name(name, &c) == 0, "%s: compression known", name);
	struct lxm_pack_source src = {
		.metadata_yaml = metadata_yaml,
		.templates_dir = tpl_dir,
		.rootfs_dir = rootfs_dir,
	};
	k = lxm_archive_pack(&src, img, c, fp, count_progress, &pc, &err);
	ok(k == 0, "%s: pack: %s", name, err ? err->msg : "ok");
	if (k < 0)
		return;
	want = sha256sum(img);
	is_str(fp, want, "pack: the fingerprint is sha256sum's");
	ok(!exists(tmpfile), "%s: no temporary file left", name);
	ok(pc.calls >= 3 && pc.monotonic && pc.total >= 3 * 1024 * 1024 && pc.last == pc.total,
	   "%s: pack progress: %d calls up to %llu of %llu", name, pc.calls,
	   (unsigned long long)pc.last, (unsigned long long)pc.total);

	k = lxm_archive_unpack(img, LXM_ARCHIVE_UNIFIED, dest, count_progress, &uc, &err);
	ok(k == 0, "%s: unpack: %s", name, err ? err->msg : "ok");
	if (k < 0)
		return;
	stat(img, &st);
	ok(uc.calls >= 1 && uc.monotonic && uc.last == (uint64_t)st.st_size &&
		   uc.total == (uint64_t)st.st_size,
	   "%s: unpack progress ends at the file size (%d calls)", name, uc.calls);
	is_int(compare_rootfs(fixture, dest, true), 0, "unpacked rootfs equals the source");
	ok(same_inode(dest, "rootfs/bin/hard1", "rootfs/usr/bin/hard2"), "%s: hard links kept",
	   name);
	if (asprintf(&meta, "%s/metadata.yaml", dest) < 0 ||
	    asprintf(&tpl, "%s/templates/hostname.tpl", dest) < 0)
		abort();
	{
		_cleanup_free_ char *text = NULL;

		ok(lxm_read_file(meta, &text, &len) == 0 && streq(text, metadata_yaml),
		   "%s: metadata.yaml unpacked", name);
	}
	ok(exists(tpl), "%s: templates unpacked", name);
	ok(lstat(dest, &st) == 0 && (st.st_mode & 07777) == 0700, "%s: destdir is 0700", name);
	{
		_cleanup_free_ char *text = NULL;

		k = lxm_archive_read_metadata(img, &text, &len, &err);
		ok(k == 0 && streq(text, metadata_yaml) && len == strlen(metadata_yaml),
		   "%s: read_metadata", name);
	}

	/* The same file cut in half, and with bytes flipped in the middle. */
	{
		_cleanup_free_ char *cut = NULL, *cmd = NULL;

		cut = tmp_path("cut-%s.tar", name);
		stat(img, &st);
		if (asprintf(&cmd, "head -c %lld %s > %s", (long long)st.st_size / 2, img, cut) < 0)
			abort();
		ok(run(cmd) == 0, "%s: cut in half", name);
		expect_refused(cut, LXM_ARCHIVE_UNIFIED, "truncated or corrupt", "truncated");
		unlink(cut);
	}
	if (c != LXM_COMPRESS_NONE) {
		_cleanup_free_ char *bad = tmp_path("corrupt-%s.tar", name), *cmd = NULL;
		_cleanup_close_ int fd = -1;

		if (asprintf(&cmd, "cp %s %s", img, bad) < 0)
			abort();
		run(cmd);
		fd = open(bad, O_RDWR | O_CLOEXEC);
		stat(bad, &st);
		for (off_t o = st.st_size / 2; o < st.st_size / 2 + 64; o++) {
			unsigned char b;

			if (pread(fd, &b, 1, o) == 1) {
				b ^= 0x5a;
				if (pwrite(fd, &b, 1, o) != 1)
					abort();
			}
		}
		expect_refused(bad, LXM_ARCHIVE_UNIFIED, "truncated or corrupt", "corrupt");
		unlink(bad);
	}
	rm_rf(dest);
	unlink(img);
}

/* Tarballs made by GNU tar: a unified one with "./" names, and a split image. */
static void test_gnu_tar(const char *fixture)
{
	_cleanup_free_ char *uni = tmp_path("%s.tar.xz", "gnu"),
			    *meta = tmp_path("%s.tar.gz", "meta");
	_cleanup_free_ char *rootfs = tmp_path("%s.tar.zst", "rootfs"), *cmd = NULL;
	_cleanup_free_ char *d1 = new_dest(), *d2 = new_dest(), *d3 = new_dest(), *want = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	char fp[65];
	int k;

	if (asprintf(&cmd,
		     "tar --xattrs --xattrs-include='*' --numeric-owner -C %s -cJf %s "
		     "./metadata.yaml ./templates ./rootfs 2>/dev/null;"
		     "tar --numeric-owner -C %s -czf %s metadata.yaml templates;"
		     "tar --xattrs --xattrs-include='*' --numeric-owner --zstd -C %s/rootfs -cf %s "
		     ". "
		     "2>/dev/null",
		     fixture, uni, fixture, meta, fixture, rootfs) < 0)
		abort();
	run(cmd);
	ok(exists(uni) && exists(meta) && exists(rootfs), "GNU tar made the tarballs");

	k = lxm_archive_unpack(uni, LXM_ARCHIVE_UNIFIED, d1, NULL, NULL, &err);
	ok(k == 0, "GNU tar unified: unpack: %s", err ? err->msg : "ok");
	is_int(compare_rootfs(fixture, d1, true), 0, "GNU tar unified: rootfs equals the source");
	ok(same_inode(d1, "rootfs/bin/hard1", "rootfs/usr/bin/hard2"),
	   "GNU tar unified: hard links kept");

	k = lxm_archive_unpack(meta, LXM_ARCHIVE_METADATA, d2, NULL, NULL, &err);
	ok(k == 0, "split metadata: unpack: %s", err ? err->msg : "ok");
	k = lxm_archive_unpack(rootfs, LXM_ARCHIVE_ROOTFS, d3, NULL, NULL, &err);
	ok(k == 0, "split rootfs: unpack: %s", err ? err->msg : "ok");
	is_int(compare_rootfs(fixture, d3, true), 0, "split rootfs: equals the source");
	ok(same_inode(d3, "rootfs/bin/hard1", "rootfs/usr/bin/hard2"),
	   "split rootfs: hard links kept");
	{
		_cleanup_free_ char *text = NULL, *p = NULL;
		size_t len;

		if (asprintf(&p, "%s/templates/hostname.tpl", d2) < 0)
			abort();
		ok(exists(p), "split metadata: templates unpacked");
		k = lxm_archive_read_metadata(meta, &text, &len, &err);
		ok(k == 0 && streq(text, metadata_yaml), "split metadata: read_metadata");
		k = lxm_archive_read_metadata(rootfs, &text, &len, &err);
		ok(k < 0 && err && err->status == 400 && strstr(err->msg, "no metadata.yaml"),
		   "read_metadata of a rootfs tarball: %s", err ? err->msg : "no error");
		lxm_error_free(TAKE_PTR(err));
	}
	{
		const char *paths[] = { meta, rootfs };

		free(cmd);
		if (asprintf(&cmd, "cat %s %s | sha256sum", meta, rootfs) < 0)
			abort();
		want = command_line(cmd);
		if (want)
			want[strcspn(want, " ")] = '\0';
		ok(lxm_sha256_files(paths, 2, fp, &err) == 0, "sha256 of a split image");
		is_str(fp, want, "split fingerprint: sha256 of metadata then rootfs");
	}
	/* The rootfs half given as a unified image has no metadata.yaml. */
	expect_refused(rootfs, LXM_ARCHIVE_UNIFIED, "not part of an image", "rootfs as unified");
	rm_rf(d1);
	rm_rf(d2);
	rm_rf(d3);
	unlink(uni);
	unlink(meta);
	unlink(rootfs);
}

static void test_squashfs(const char *fixture)
{
	_cleanup_free_ char *sq = tmp_path("%s.squashfs", "rootfs"), *cmd = NULL,
			    *dest = new_dest();
	_cleanup_free_ char *bad = tmp_path("%s.squashfs", "bad"),
			    *badtree = tmp_path("%s", "badtree");
	_cleanup_error_ struct lxm_error *err = NULL;
	int k;

	if (asprintf(&cmd,
		     "mksquashfs %s/rootfs %s -noappend -quiet -no-progress -e sock >/dev/null",
		     fixture, sq) < 0)
		abort();
	ok(run(cmd) == 0, "mksquashfs made a rootfs");
	k = lxm_archive_unpack(sq, LXM_ARCHIVE_ROOTFS, dest, NULL, NULL, &err);
	ok(k == 0, "squashfs rootfs: unpack: %s", err ? err->msg : "ok");
	is_int(compare_rootfs(fixture, dest, true), 0, "squashfs rootfs: equals the source");
	ok(same_inode(dest, "rootfs/bin/hard1", "rootfs/usr/bin/hard2"),
	   "squashfs rootfs: hard links kept");
	rm_rf(dest);

	/* A device node outside /dev, found by the walk after unsquashfs. */
	free(cmd);
	if (asprintf(&cmd,
		     "mkdir -p %s/bin && mknod %s/bin/sda b 8 0 && "
		     "mksquashfs %s %s -noappend -quiet -no-progress >/dev/null",
		     badtree, badtree, badtree, bad) < 0)
		abort();
	ok(run(cmd) == 0, "mksquashfs made a rootfs with a device in /bin");
	expect_refused(bad, LXM_ARCHIVE_ROOTFS, "rootfs/bin/sda: device node", "squashfs device");
	/* A squashfs only counts as the rootfs half. */
	expect_refused(bad, LXM_ARCHIVE_UNIFIED, "not a tarball", "squashfs as unified");
	/* A squashfs cut short. */
	free(cmd);
	if (asprintf(&cmd, "head -c 4096 %s > %s.cut", sq, sq) < 0)
		abort();
	run(cmd);
	free(cmd);
	if (asprintf(&cmd, "%s.cut", sq) < 0)
		abort();
	expect_refused(cmd, LXM_ARCHIVE_ROOTFS, "unsquashfs failed", "truncated squashfs");
	unlink(cmd);
	rm_rf(badtree);
	unlink(bad);
	unlink(sq);
}

static void test_misc(const char *fixture)
{
	_cleanup_free_ char *dest = tmp_path("%s", "exists"), *img = tmp_path("%s", "c.tar.gz");
	_cleanup_free_ char *marker = NULL, *rootfs_dir = NULL, *dest2 = new_dest();
	_cleanup_error_ struct lxm_error *err = NULL;
	struct counter cancel = { .monotonic = true, .cancel_after = 2 };
	enum lxm_compression c;
	char fp[65];
	int k;

	ok(lxm_compression_from_name("zstd", &c) == 0 && c == LXM_COMPRESS_ZSTD, "zstd is known");
	ok(lxm_compression_from_name("lz4", &c) == -EINVAL, "lz4 is not");

	/* An existing destination is left alone. */
	if (asprintf(&marker, "%s/keep", dest) < 0 ||
	    asprintf(&rootfs_dir, "%s/rootfs", fixture) < 0)
		abort();
	mkdir(dest, 0755);
	write_file(marker, "x", 1, 0644);
	{
		struct lxm_pack_source src = { .metadata_yaml = metadata_yaml,
					       .rootfs_dir = rootfs_dir };

		k = lxm_archive_pack(&src, img, LXM_COMPRESS_GZIP, fp, NULL, NULL, &err);
		ok(k == 0, "pack without templates: %s", err ? err->msg : "ok");
		k = lxm_archive_unpack(img, LXM_ARCHIVE_UNIFIED, dest, NULL, NULL, &err);
		ok(k < 0 && err && err->status == 409 && exists(marker),
		   "unpack into an existing directory: refused and left alone (%s)",
		   err ? err->msg : "no error");
		lxm_error_free(TAKE_PTR(err));

		/* Uncompressed, so that the input is over 1 MiB and progress comes mid-way. */
		unlink(img);
		k = lxm_archive_pack(&src, img, LXM_COMPRESS_NONE, fp, NULL, NULL, &err);
		k = k < 0 ? k
			  : lxm_archive_unpack(img, LXM_ARCHIVE_UNIFIED, dest2, count_progress,
					       &cancel, &err);
		ok(k == -ECANCELED && cancel.calls == 2 && !exists(dest2),
		   "unpack cancelled by progress: nothing left");
		lxm_error_free(TAKE_PTR(err));
		unlink(img);
		cancel = (struct counter){ .monotonic = true, .cancel_after = 2 };
		k = lxm_archive_pack(&src, img, LXM_COMPRESS_GZIP, fp, count_progress, &cancel,
				     &err);
		ok(k == -ECANCELED && !exists(img), "pack cancelled by progress: no file");
		lxm_error_free(TAKE_PTR(err));
		k = lxm_archive_unpack("/nonexistent/image", LXM_ARCHIVE_UNIFIED, dest2, NULL, NULL,
				       &err);
		ok(k == -ENOENT && !exists(dest2), "a missing image file: %s",
		   err ? err->msg : "no error");
	}
	rm_rf(dest);
}

/* ---- lxm-imagetool, the way lxmd runs it (lxmd_run_sync_lines) ---- */

/* What collect() saw. */
struct lines {
	char text[4096]; /* the lines, each with a newline */
	int progress;	 /* "progress" lines */
	int ticks;	 /* quiet periods (NULL lines) */
	int stop_after;	 /* return non-zero at this many ticks or lines, 0 never */
};

static int collect(const char *line, void *ud)
{
	struct lines *l = ud;
	size_t n = strlen(l->text);

	if (!line)
		return l->stop_after && ++l->ticks >= l->stop_after;
	if (strncmp(line, "progress ", 9) == 0)
		l->progress++;
	else
		snprintf(l->text + n, sizeof(l->text) - n, "%s\n", line);
	return 0;
}

static void test_imagetool(void)
{
	char tool[PATH_MAX], errbuf[4096];
	_cleanup_free_ char *yaml = tmp_path("%s", "fixture/metadata.yaml"),
			    *rootfs = tmp_path("%s", "fixture/rootfs"),
			    *img = tmp_path("%s", "tool.tar.gz"),
			    *dest = tmp_path("%s", "tool-dest"),
			    *bad = tmp_path("%s", "tool-bad.tar");
	struct lines l = { 0 };
	char fp[65] = "";
	_cleanup_error_ struct lxm_error *err = NULL;
	const char *paths[] = { img };
	int k;

	snprintf(tool, sizeof(tool), "%s/lxmd/%s", LXM_BUILDDIR, LXM_IMAGETOOL_NAME);
	if (access(tool, X_OK) < 0) {
		ok(false, "%s is built (make all)", tool);
		return;
	}
	{
		char *const argv[] = { "/bin/sh", "-c", "cat; echo; echo progress 1 2; echo two",
				       NULL };

		k = lxmd_run_sync_lines(argv, "one", collect, &l, errbuf, sizeof(errbuf));
		ok(k == 0 && strcmp(l.text, "one\ntwo\n") == 0 && l.progress == 1,
		   "stdin reaches the child, its stdout comes back line by line");
	}
	{
		char *const argv[] = { "/bin/sh", "-c", "echo why >&2; sleep 30", NULL };
		struct lines q = { .stop_after = 2 };

		k = lxmd_run_sync_lines(argv, NULL, collect, &q, errbuf, sizeof(errbuf));
		ok(k == 128 + SIGKILL && strcmp(errbuf, "why\n") == 0,
		   "a callback's non-zero return kills the child (status %d), stderr is kept", k);
	}
	{
		char *const argv[] = { tool,   "pack",	     "--compression",
				       "gzip", "--metadata", yaml,
				       rootfs, img,	     NULL };

		memset(&l, 0, sizeof(l));
		k = lxmd_run_sync_lines(argv, NULL, collect, &l, errbuf, sizeof(errbuf));
		ok(k == 0 && strncmp(l.text, "sha256 ", 7) == 0 && l.progress > 0,
		   "pack: progress lines, then the sha256 (%d: %s)", k, errbuf);
		ok(lxm_sha256_files(paths, 1, fp, &err) == 0 && strncmp(l.text + 7, fp, 64) == 0,
		   "pack: the sha256 printed is the file's");
	}
	{
		char *const argv[] = { tool, "unpack", "unified", img, dest, NULL };

		memset(&l, 0, sizeof(l));
		k = lxmd_run_sync_lines(argv, NULL, collect, &l, errbuf, sizeof(errbuf));
		ok(k == 0 && l.progress > 0 && access(dest, F_OK) == 0,
		   "unpack: done with progress (%d: %s)", k, errbuf);
		k = lxmd_run_sync_lines(argv, NULL, collect, &l, errbuf, sizeof(errbuf));
		errbuf[strcspn(errbuf, "\n")] = '\0';
		ok(k == 1 && strncmp(errbuf, "error 409 17 image: create ", 27) == 0,
		   "unpack into an existing directory: the tool's lxm_error as a line: %s", errbuf);
	}
	{
		char *const argv[] = { tool, "unpack", "unified", bad, dest, NULL };

		write_file(bad, "not a tarball at all", 20, 0644);
		rm_rf(dest);
		k = lxmd_run_sync_lines(argv, NULL, collect, &l, errbuf, sizeof(errbuf));
		errbuf[strcspn(errbuf, "\n")] = '\0';
		ok(k == 1 && strstr(errbuf, "error 400 ") == errbuf &&
			   strstr(errbuf, "not a tarball") && access(dest, F_OK) < 0,
		   "a corrupt file: 400 with libarchive's reason, nothing left: %s", errbuf);
	}
}

int main(void)
{
	_cleanup_free_ char *fixture = NULL, *meta = NULL;

	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root (owners, device nodes, security.capability)\n");
		return 0;
	}
	snprintf(tmp, sizeof(tmp), "/var/tmp/lxm-test-archive.XXXXXX");
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	fixture = tmp_path("%s", "fixture");
	if (!ok(make_fixture(fixture) == 0, "fixture tree: %s", strerror(errno))) {
		rm_rf(tmp);
		return tap_done();
	}
	meta = tmp_path("%s", "fixture/metadata.yaml");
	write_file(meta, metadata_yaml, strlen(metadata_yaml), 0644);
	for (size_t i = 0; i < ARRAY_SIZE(compressions); i++)
		test_round_trip(fixture, compressions[i]);
	test_gnu_tar(fixture);
	test_squashfs(fixture);
	test_malicious();
	test_misc(fixture);
	test_imagetool();
	rm_rf(tmp);
	return tap_done();
}
