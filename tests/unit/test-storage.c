/* The storage drivers against real file systems: the same conformance flow runs on a dir pool in
 * a temp dir, a btrfs pool on a loop file the driver creates, and an overlay pool. Afterwards
 * nothing may be left: no mounts below the temp dir, no loop device backed by its files, no
 * files. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#include "storage/storage.h"
#include "tap.h"

#define FP "0123abcd"

static char *path_join(const char *a, const char *b)
{
	char *s;

	if (asprintf(&s, "%s/%s", a, b) < 0)
		abort();
	return s;
}

static int write_text(const char *path, const char *text)
{
	return lxm_write_file_atomic(path, text, strlen(text), 0644);
}

/* The file's content, or NULL. */
static char *read_text(const char *path)
{
	char *s = NULL;

	if (lxm_read_file(path, &s, NULL) < 0)
		return NULL;
	return s;
}

static bool text_is(const char *path, const char *want)
{
	_cleanup_free_ char *got = read_text(path);

	if (!streq(got, want))
		printf("#   %s: got \"%s\", want \"%s\"\n", path, got ? got : "(missing)", want);
	return streq(got, want);
}

/* A small unpacked image: a symlink, a hardlink, an xattr, a setuid file owned by uid 100000. */
static void make_image_tree(const char *src)
{
	_cleanup_free_ char *rootfs = path_join(src, "rootfs");
	char p[4096];

	ok(lxm_mkdir_p(rootfs, 0755) == 0, "make fake image rootfs");
	snprintf(p, sizeof(p), "%s/etc", rootfs);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/bin", rootfs);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/templates", src);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/metadata.yaml", src);
	write_text(p, "architecture: x86_64\ncreation_date: 1\n");
	snprintf(p, sizeof(p), "%s/templates/hostname.tpl", src);
	write_text(p, "{{ container.name }}\n");
	snprintf(p, sizeof(p), "%s/etc/hostname", rootfs);
	write_text(p, "image\n");
	ok(setxattr(p, "user.lxm", "yes", 3, 0) == 0, "set an xattr on the fake image: %s",
	   strerror(errno));
	{
		char l[4096];

		snprintf(l, sizeof(l), "%s/etc/hostname.hard", rootfs);
		ok(link(p, l) == 0, "hardlink in the fake image");
		snprintf(l, sizeof(l), "%s/etc/name", rootfs);
		ok(symlink("hostname", l) == 0, "symlink in the fake image");
	}
	snprintf(p, sizeof(p), "%s/bin/su", rootfs);
	write_text(p, "#!/bin/true\n");
	ok(chown(p, 100000, 100000) == 0 && chmod(p, 04755) == 0, "setuid file owned by 100000");
}

/* Checks the copied image content at vol (a volume path). */
static void check_image_content(const char *what, const char *vol)
{
	char p[4096], l[4096];
	struct stat st, st2;
	char x[32] = "";
	ssize_t n;

	snprintf(p, sizeof(p), "%s/rootfs/etc/hostname", vol);
	ok(text_is(p, "image\n"), "%s: file content", what);
	n = getxattr(p, "user.lxm", x, sizeof(x));
	ok(n == 3 && memcmp(x, "yes", 3) == 0, "%s: xattr kept", what);
	snprintf(l, sizeof(l), "%s/rootfs/etc/hostname.hard", vol);
	ok(stat(p, &st) == 0 && stat(l, &st2) == 0 && st.st_ino == st2.st_ino, "%s: hardlink kept",
	   what);
	snprintf(l, sizeof(l), "%s/rootfs/etc/name", vol);
	n = readlink(l, x, sizeof(x) - 1);
	ok(n == 8 && memcmp(x, "hostname", 8) == 0, "%s: symlink kept", what);
	snprintf(p, sizeof(p), "%s/rootfs/bin/su", vol);
	ok(lstat(p, &st) == 0 && st.st_uid == 100000 && (st.st_mode & 07777) == 04755,
	   "%s: owner and setuid mode kept", what);
	snprintf(p, sizeof(p), "%s/metadata.yaml", vol);
	ok(access(p, F_OK) == 0, "%s: metadata.yaml", what);
}

/* Whether any mount point lies at or below dir. */
static bool mounts_below(const char *dir)
{
	_cleanup_free_ char *mi = NULL;

	if (lxm_read_file("/proc/self/mountinfo", &mi, NULL) < 0)
		return true;
	for (char *line = strtok(mi, "\n"); line; line = strtok(NULL, "\n")) {
		char mp[4096];

		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && startswith(mp, dir)) {
			printf("#   still mounted: %s\n", mp);
			return true;
		}
	}
	return false;
}

/* Whether a loop device is backed by a file below dir. */
static bool loops_below(const char *dir)
{
	_cleanup_closedir_ DIR *d = opendir("/sys/block");
	struct dirent *de;

	if (!d)
		return false;
	while ((de = readdir(d))) {
		_cleanup_free_ char *bf = NULL, *file = NULL;

		if (!startswith(de->d_name, "loop"))
			continue;
		if (asprintf(&bf, "/sys/block/%s/loop/backing_file", de->d_name) < 0)
			abort();
		if (lxm_read_file(bf, &file, NULL) == 0 && startswith(file, dir)) {
			printf("#   %s still backed by %s", de->d_name, file);
			return true;
		}
	}
	return false;
}

static void error_cases(struct lxm_pool *p, const char *vol)
{
	_cleanup_error_ struct lxm_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
	int r;

	r = lxm_volume_create(p, LXM_VOLUME_CONTAINER, "c1", &e1);
	ok(r == -EEXIST, "%s: creating an existing volume is -EEXIST (%d: %s)", p->driver, r,
	   e1 ? e1->msg : "");
	ok(e1 && strstr(e1->msg, "pool 'p1'"), "%s: the error names the pool", p->driver);
	r = lxm_snapshot_restore(p, LXM_VOLUME_CONTAINER, "c1", "nosuch", &e2);
	ok(r == -ENOENT, "%s: restoring a missing snapshot is -ENOENT (%d: %s)", p->driver, r,
	   e2 ? e2->msg : "");
	r = lxm_volume_create(p, LXM_VOLUME_CUSTOM, "a/b", &e3);
	ok(r == -EINVAL && e3 && strstr(e3->msg, "'/'"), "%s: a name with '/' is refused: %s",
	   p->driver, e3 ? e3->msg : "");
	r = lxm_snapshot_create(p, LXM_VOLUME_CONTAINER, "c1", ".hidden", &e4);
	ok(r == -EINVAL, "%s: a snapshot name starting with '.' is refused", p->driver);
	(void)vol;
}

/* Writes until the file system refuses; returns the errno or 0 when limit bytes went in. */
static int fill(const char *path, size_t limit)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	static char buf[1 << 20];
	size_t done = 0;

	if (fd < 0)
		return errno;
	memset(buf, 'x', sizeof(buf));
	while (done < limit) {
		ssize_t n = write(fd, buf, sizeof(buf));

		if (n < 0)
			return errno;
		done += (size_t)n;
	}
	if (fsync(fd) < 0)
		return errno;
	return 0;
}

static void quota_cases(struct lxm_pool *p, const char *vol)
{
	_cleanup_error_ struct lxm_error *e = NULL;
	_cleanup_free_ char *big = path_join(vol, "rootfs/big");
	struct lxm_storage_usage u = { 0 };
	int r;

	r = lxm_volume_set_quota(p, LXM_VOLUME_CONTAINER, "c1", 32 << 20, &e);
	if (!streq(p->driver, "btrfs")) {
		ok(r == -EOPNOTSUPP && e && strstr(e->msg, "cannot"),
		   "%s: quotas are refused clearly: %s", p->driver, e ? e->msg : "");
		return;
	}
	ok(r == 0, "btrfs: set a 32MiB quota: %s", e ? e->msg : "");
	r = fill(big, 64 << 20);
	ok(r == EDQUOT || r == ENOSPC, "btrfs: writing 64MiB past a 32MiB quota fails (%s)",
	   strerror(r));
	unlink(big);
	r = lxm_volume_usage(p, LXM_VOLUME_CONTAINER, "c1", &u, &e);
	ok(r == 0 && u.total == 32 << 20, "btrfs: usage reports the quota (%llu)",
	   (unsigned long long)u.total);
	r = lxm_volume_set_quota(p, LXM_VOLUME_CONTAINER, "c1", 0, &e);
	ok(r == 0, "btrfs: clear the quota: %s", e ? e->msg : "");
	r = fill(big, 40 << 20);
	ok(r == 0, "btrfs: 40MiB fit once the quota is gone (%s)", strerror(r));
	unlink(big);
}

static void conformance(const char *driver, const char *config_json)
{
	char tmpl[] = "/var/tmp/lxm-test-storage-XXXXXX";
	_cleanup_free_ char *root = NULL, *src = NULL, *pools = NULL, *disks = NULL;
	_cleanup_free_ char *vol = NULL, *snap = NULL, *c2 = NULL, *c3 = NULL, *f = NULL;
	_cleanup_error_ struct lxm_error *e = NULL;
	struct lxm_pool *p = NULL;
	struct lxm_storage_usage u = { 0 };
	json_t *config;
	char path[4096];
	int r;

	if (!lxm_storage_driver_available(driver)) {
		printf("ok - # SKIP %s: this host lacks the driver\n", driver);
		return;
	}
	if (!mkdtemp(tmpl))
		abort();
	root = strdup(tmpl);
	src = path_join(root, "src");
	pools = path_join(root, "storage-pools");
	disks = path_join(root, "disks");
	make_image_tree(src);

	config = json_loads(config_json, 0, NULL);
	r = lxm_pool_new(pools, "p1", driver, config, &p, &e);
	json_decref(config);
	ok(r == 0, "%s: open pool", driver);
	if (r < 0)
		return;
#define STEP(call, what)                                                                           \
	do {                                                                                       \
		lxm_error_free(e);                                                                 \
		e = NULL;                                                                          \
		r = (call);                                                                        \
		ok(r >= 0, "%s: %s%s%s", driver, what, e ? ": " : "", e ? e->msg : "");            \
	} while (0)

	STEP(lxm_pool_create(p, &e), "create pool");
	STEP(lxm_pool_mount(p, &e), "mount pool (idempotent)");
	STEP(lxm_pool_image_create(p, FP, src, &e), "create image volume");
	lxm_pool_volume_path(p, LXM_VOLUME_IMAGE, FP, NULL, &f);
	check_image_content("image volume", f);
	STEP(lxm_volume_create_from_image(p, FP, LXM_VOLUME_CONTAINER, "c1", &e),
	     "create instance volume from image");
	STEP(lxm_volume_mount(p, LXM_VOLUME_CONTAINER, "c1", &e), "mount instance volume");
	lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, "c1", NULL, &vol);
	check_image_content("instance volume", vol);

	snprintf(path, sizeof(path), "%s/rootfs/new", vol);
	ok(write_text(path, "v1\n") == 0, "%s: write into the instance", driver);
	STEP(lxm_snapshot_create(p, LXM_VOLUME_CONTAINER, "c1", "snap0", &e), "snapshot");
	lxm_error_free(e);
	e = NULL;
	r = lxm_snapshot_create(p, LXM_VOLUME_CONTAINER, "c1", "snap0", &e);
	ok(r == -EEXIST, "%s: snapshot again is -EEXIST (%d)", driver, r);
	write_text(path, "v2\n");
	snprintf(path, sizeof(path), "%s/rootfs/etc/hostname", vol);
	unlink(path);
	STEP(lxm_volume_unmount(p, LXM_VOLUME_CONTAINER, "c1", &e), "unmount before restore");
	STEP(lxm_snapshot_restore(p, LXM_VOLUME_CONTAINER, "c1", "snap0", &e), "restore");
	STEP(lxm_volume_mount(p, LXM_VOLUME_CONTAINER, "c1", &e), "mount after restore");
	snprintf(path, sizeof(path), "%s/rootfs/new", vol);
	ok(text_is(path, "v1\n"), "%s: restore brought the content back", driver);
	check_image_content("restored volume", vol);

	STEP(lxm_snapshot_mount(p, LXM_VOLUME_CONTAINER, "c1", "snap0", &e), "mount snapshot");
	lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, "c1", "snap0", &snap);
	snprintf(path, sizeof(path), "%s/rootfs/new", snap);
	ok(text_is(path, "v1\n"), "%s: snapshot readable", driver);
	snprintf(path, sizeof(path), "%s/rootfs/etc/hostname", snap);
	ok(text_is(path, "image\n"), "%s: snapshot has the image's files", driver);
	STEP(lxm_snapshot_unmount(p, LXM_VOLUME_CONTAINER, "c1", "snap0", &e), "unmount snapshot");

	STEP(lxm_volume_copy(p, LXM_VOLUME_CONTAINER, "c2", p, "c1", "snap0", &e),
	     "copy from snapshot");
	STEP(lxm_volume_mount(p, LXM_VOLUME_CONTAINER, "c2", &e), "mount copy");
	lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, "c2", NULL, &c2);
	snprintf(path, sizeof(path), "%s/rootfs/new", c2);
	ok(text_is(path, "v1\n"), "%s: the copy has the snapshot's content", driver);
	STEP(lxm_volume_rename(p, LXM_VOLUME_CONTAINER, "c2", "c3", &e), "rename");
	STEP(lxm_volume_mount(p, LXM_VOLUME_CONTAINER, "c3", &e), "mount renamed");
	lxm_pool_volume_path(p, LXM_VOLUME_CONTAINER, "c3", NULL, &c3);
	snprintf(path, sizeof(path), "%s/rootfs/new", c3);
	ok(text_is(path, "v1\n") && access(c2, F_OK) < 0, "%s: renamed volume under its new name",
	   driver);

	STEP(lxm_volume_usage(p, LXM_VOLUME_CONTAINER, "c1", &u, &e), "volume usage");
	ok(u.used > 0, "%s: volume usage > 0 (%llu)", driver, (unsigned long long)u.used);
	STEP(lxm_pool_usage(p, &u, &e), "pool usage");
	ok(u.used > 0 && u.total >= u.used, "%s: pool usage %llu of %llu", driver,
	   (unsigned long long)u.used, (unsigned long long)u.total);

	error_cases(p, vol);
	quota_cases(p, vol);

	STEP(lxm_volume_create(p, LXM_VOLUME_CUSTOM, "data", &e), "create custom volume");
	STEP(lxm_snapshot_create(p, LXM_VOLUME_CUSTOM, "data", "s1", &e), "snapshot custom");
	STEP(lxm_snapshot_rename(p, LXM_VOLUME_CUSTOM, "data", "s1", "s2", &e), "rename snapshot");
	STEP(lxm_snapshot_delete(p, LXM_VOLUME_CUSTOM, "data", "s2", &e), "delete snapshot");
	STEP(lxm_volume_delete(p, LXM_VOLUME_CUSTOM, "data", &e), "delete custom volume");

	lxm_error_free(e);
	e = NULL;
	r = lxm_pool_delete(p, &e);
	ok(r == -EBUSY, "%s: a pool with volumes is not deleted (%d)", driver, r);
	if (streq(driver, "overlay")) {
		lxm_error_free(e);
		e = NULL;
		r = lxm_volume_delete(p, LXM_VOLUME_IMAGE, FP, &e);
		ok(r == -EBUSY, "overlay: an image in use by instances is -EBUSY (%d)", r);
	}
	STEP(lxm_volume_delete(p, LXM_VOLUME_CONTAINER, "c1", &e), "delete instance volume");
	STEP(lxm_volume_delete(p, LXM_VOLUME_CONTAINER, "c3", &e), "delete copy");
	STEP(lxm_volume_delete(p, LXM_VOLUME_CONTAINER, "c3", &e), "delete a missing volume");
	STEP(lxm_volume_delete(p, LXM_VOLUME_IMAGE, FP, &e), "delete image volume");
	STEP(lxm_pool_delete(p, &e), "delete pool");
#undef STEP
	lxm_pool_free(p);

	ok(!mounts_below(root), "%s: no mounts left", driver);
	ok(!loops_below(root), "%s: no loop device left", driver);
	lxm_rm_tree(src);
	rmdir(disks);
	ok(rmdir(pools) == 0 || errno == ENOENT, "%s: nothing left in storage-pools", driver);
	ok(rmdir(root) == 0, "%s: nothing left in the temp dir (%s)", driver, strerror(errno));
}

static void config_cases(void)
{
	const struct lxm_storage_ops *btrfs = lxm_storage_driver("btrfs");
	_cleanup_error_ struct lxm_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
	json_t *c;
	int r;

	c = json_pack("{ss}", "bogus", "1");
	r = lxm_pool_validate(btrfs, c, &e1);
	ok(r == -EINVAL && e1 && strstr(e1->msg, "'bogus'"), "unknown btrfs key named: %s",
	   e1 ? e1->msg : "");
	json_decref(c);
	c = json_pack("{ss}", "size", "12XB");
	r = lxm_pool_validate(btrfs, c, &e2);
	ok(r == -EINVAL && e2 && strstr(e2->msg, "size"), "bad btrfs size named: %s",
	   e2 ? e2->msg : "");
	json_decref(c);
	c = json_pack("{ss}", "size", "100MiB");
	r = lxm_pool_validate(btrfs, c, &e3);
	ok(r == -EINVAL && e3 && strstr(e3->msg, "256MiB"), "btrfs size below the minimum: %s",
	   e3 ? e3->msg : "");
	json_decref(c);
	c = json_pack("{ss}", "source", "/x");
	r = lxm_pool_validate(lxm_storage_driver("dir"), c, &e4);
	ok(r == -EINVAL && e4 && strstr(e4->msg, "'source'"),
	   "dir pools name a key they refuse: %s", e4 ? e4->msg : "");
	json_decref(c);

	ok(lxm_volume_type_from_name("custom") == LXM_VOLUME_CUSTOM, "volume type from name");
	is_str(lxm_volume_type_name(LXM_VOLUME_CONTAINER), "container", "volume type name");
	ok(lxm_volume_type_from_name("vm") == _LXM_VOLUME_TYPE_INVALID, "unknown volume type");
	ok(lxm_storage_driver("zfs") == NULL, "no zfs driver");
}

int main(int argc, char **argv)
{
	static const char *const configs[][2] = {
		{ "dir", "{}" },
		{ "btrfs", "{\"size\": \"512MiB\"}" },
		{ "overlay", "{}" },
	};

	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root (mounts, loop devices, chown)\n");
		return 0;
	}
	config_cases();
	/* "test-storage btrfs" runs one driver's flow. */
	for (size_t i = 0; i < ARRAY_SIZE(configs); i++)
		if (argc < 2 || streq(argv[1], configs[i][0]))
			conformance(configs[i][0], configs[i][1]);
	return tap_done();
}
