/* The files of instance snapshots (see snapshots.h). Copies are cp -a --reflink=auto run as a
 * child process (reflinks make them cheap where the filesystem can); swaps and removals are
 * renames, so that no step leaves a half snapshot or a half restored instance under a real
 * name. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "snapshots.h"
#include "util.h"

/* What a snapshot holds of an instance's directory, in the order they are copied and swapped. */
static const char *const entries[] = { "rootfs", "metadata.yaml", "templates" };
#define N_ENTRIES (sizeof(entries) / sizeof(entries[0]))

int lxmd_snapshots_dir(const struct lxmd *d, const char *instance, char **ret)
{
	return asprintf(ret, "%s/containers-snapshots/%s", d->cfg.root, instance) < 0 ? -ENOMEM : 0;
}

int lxmd_snapshot_path(const struct lxmd *d, const char *instance, const char *snap, char **ret)
{
	return asprintf(ret, "%s/containers-snapshots/%s/%s", d->cfg.root, instance, snap) < 0
		       ? -ENOMEM
		       : 0;
}

/* nftw() has no user data: the running total of tree_size(), per thread. */
static __thread int64_t size_total;

static int size_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag != FTW_NS)
		size_total += (int64_t)st->st_blocks * 512;
	return 0;
}

/* The bytes a tree takes on disk, or -1 when it cannot be walked. */
static int64_t tree_size(const char *path)
{
	size_total = 0;
	if (nftw(path, size_entry, 32, FTW_PHYS | FTW_MOUNT) != 0)
		return -1;
	return size_total;
}

/* The last line of a program's stderr, for a message. */
static const char *last_line(char *text)
{
	size_t len = strlen(text);
	char *nl;

	while (len > 0 && text[len - 1] == '\n')
		text[--len] = '\0';
	nl = strrchr(text, '\n');
	return nl ? nl + 1 : text;
}

/* cp -a --reflink=auto of the entries that src_dir has into dest_dir. rootfs must be there. */
static int copy_entries(const char *src_dir, const char *dest_dir, struct lxm_error **err)
{
	/* "--" before the operands; cp takes the last one as the target. */
	char *argv[4 + N_ENTRIES + 2] = { (char *)"/bin/cp", (char *)"-a", (char *)"--reflink=auto",
					  (char *)"--" };
	char *paths[N_ENTRIES] = { 0 }, errbuf[4096];
	size_t n = 4;
	int k = 0;

	for (size_t i = 0; i < N_ENTRIES && k == 0; i++) {
		struct stat st;

		if (asprintf(&paths[i], "%s/%s", src_dir, entries[i]) < 0) {
			paths[i] = NULL;
			k = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		} else if (lstat(paths[i], &st) == 0) {
			argv[n++] = paths[i];
		} else if (errno != ENOENT || i == 0) {
			k = lxm_error_setx(err, -errno, 500, "read %s", paths[i]);
		}
	}
	if (k == 0) {
		argv[n++] = (char *)dest_dir;
		argv[n] = NULL;
		k = lxmd_run_sync(argv, errbuf, sizeof(errbuf));
		if (k < 0)
			k = lxm_error_setx(err, k, 500, "run cp");
		else if (k > 0)
			k = lxm_error_set(err, -EIO, 500, "copy %s: %s", src_dir,
					  *errbuf ? last_line(errbuf) : "cp failed");
	}
	for (size_t i = 0; i < N_ENTRIES; i++)
		free(paths[i]);
	return k;
}

int lxmd_snapshot_create_files(const char *instance_path, const char *snap_path, int64_t *ret_size,
			       struct lxm_error **err)
{
	_cleanup_free_ char *parent = strdup(snap_path), *tmp = NULL;
	const char *base;
	struct stat st;
	char *slash;
	int64_t size;
	int k;

	slash = parent ? strrchr(parent, '/') : NULL;
	if (!slash)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*slash = '\0';
	base = slash + 1;
	k = lxm_mkdir_p(parent, 0700);
	if (k >= 0 && stat(parent, &st) == 0 && !S_ISDIR(st.st_mode))
		k = -ENOTDIR;
	if (k < 0)
		return lxm_error_setx(err, k, 500, "create snapshots directory %s", parent);
	if (access(snap_path, F_OK) == 0)
		return lxm_error_set(err, -EEXIST, 409,
				     "%s exists already (left behind by something else than lxmd: "
				     "move it away)",
				     snap_path);
	if (asprintf(&tmp, "%s/.tmp-%s-XXXXXX", parent, base) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (!mkdtemp(tmp))
		return lxm_error_setx(err, -errno, 500, "create %s", tmp);
	k = copy_entries(instance_path, tmp, err);
	if (k < 0)
		goto fail;
	size = tree_size(tmp);
	/* NOREPLACE: rename() would replace an empty directory of that name. */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, snap_path, RENAME_NOREPLACE) < 0) {
		k = lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "move %s to %s", tmp,
				   snap_path);
		goto fail;
	}
	*ret_size = size;
	return 0;
fail:
	lxm_rm_tree(tmp);
	return k;
}

void lxmd_snapshot_swap_done(struct lxmd_snapshot_swap *swap)
{
	if (!swap)
		return;
	free(swap->trash);
	swap->trash = NULL;
	swap->created = 0;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Swaps entry i of the instance directory with that of dir (both directions: a second call
 * undoes the first). created tells whether the instance had no such entry before the restore. */
static int swap_entry(const char *instance_path, const char *dir, size_t i, bool undo,
		      unsigned *created, struct lxm_error **err)
{
	_cleanup_free_ char *cur = NULL, *other = NULL;
	bool c, o;

	if (asprintf(&cur, "%s/%s", instance_path, entries[i]) < 0 ||
	    asprintf(&other, "%s/%s", dir, entries[i]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	c = exists(cur);
	o = exists(other);
	if (undo && (*created & (1u << i))) {
		/* The restore added it: it goes to the trash. */
		if (c && rename(cur, other) < 0)
			return lxm_error_setx(err, -errno, 500, "move %s to %s", cur, other);
		return 0;
	}
	if (c && o) {
		if (renameat2(AT_FDCWD, other, AT_FDCWD, cur, RENAME_EXCHANGE) < 0)
			return lxm_error_setx(err, -errno, 500, "swap %s and %s", other, cur);
	} else if (o) {
		if (rename(other, cur) < 0)
			return lxm_error_setx(err, -errno, 500, "move %s to %s", other, cur);
		if (!undo)
			*created |= 1u << i;
	} else if (c) {
		if (rename(cur, other) < 0)
			return lxm_error_setx(err, -errno, 500, "move %s to %s", cur, other);
	}
	return 0;
}

int lxmd_snapshot_restore_files(const char *snap_path, const char *instance_path,
				struct lxmd_snapshot_swap *swap, struct lxm_error **err)
{
	_cleanup_free_ char *stage = NULL;
	unsigned created = 0;
	size_t i;
	int k;

	if (asprintf(&stage, "%s/.restore-XXXXXX", instance_path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (!mkdtemp(stage))
		return lxm_error_setx(err, -errno, 500, "create %s", stage);
	k = copy_entries(snap_path, stage, err);
	for (i = 0; k >= 0 && i < N_ENTRIES; i++)
		k = swap_entry(instance_path, stage, i, false, &created, err);
	if (k < 0) {
		/* Entries before i were swapped: put them back, newest first. */
		while (i-- > 1)
			if (swap_entry(instance_path, stage, i - 1, true, &created, NULL) < 0)
				break;
		lxm_rm_tree(stage);
		return k;
	}
	swap->trash = TAKE_PTR(stage);
	swap->created = created;
	return 0;
}

int lxmd_snapshot_restore_undo(const char *instance_path, const struct lxmd_snapshot_swap *swap,
			       struct lxm_error **err)
{
	unsigned created = swap->created;
	int k;

	for (size_t i = N_ENTRIES; i-- > 0;) {
		k = swap_entry(instance_path, swap->trash, i, true, &created, err);
		if (k < 0)
			return k;
	}
	return 0;
}

int lxmd_snapshot_rename_files(const char *old_path, const char *new_path, struct lxm_error **err)
{
	if (renameat2(AT_FDCWD, old_path, AT_FDCWD, new_path, RENAME_NOREPLACE) < 0)
		return lxm_error_setx(err, -errno, errno == EEXIST ? 409 : 500, "move %s to %s",
				      old_path, new_path);
	return 0;
}

int lxmd_snapshot_delete_files(const char *snap_path, char **ret_trash, struct lxm_error **err)
{
	_cleanup_free_ char *trash = NULL, *parent = strdup(snap_path);
	char *slash = parent ? strrchr(parent, '/') : NULL;
	char hex[17];
	int k;

	if (!slash)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*slash = '\0';
	k = lxm_random_hex(hex, 8);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "random name");
	if (asprintf(&trash, "%s/.trash-%s-%s", parent, slash + 1, hex) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (renameat2(AT_FDCWD, snap_path, AT_FDCWD, trash, RENAME_NOREPLACE) < 0)
		return lxm_error_setx(err, -errno, errno == ENOENT ? 404 : 500, "move %s to %s",
				      snap_path, trash);
	*ret_trash = TAKE_PTR(trash);
	return 0;
}

static void discarded(int status, const char *out, const char *errout, void *ud)
{
	char *trash = ud;

	(void)out;
	if (status != 0)
		log_warn("remove %s: rm exited with %d: %s", trash, status,
			 errout && *errout ? errout : "no message");
	free(trash);
}

void lxmd_snapshot_discard(struct lxmd *d, const char *trash)
{
	char *copy = trash ? strdup(trash) : NULL;
	char *argv[] = { (char *)"/bin/rm", (char *)"-rf", (char *)"--one-file-system", copy,
			 NULL };
	int k;

	if (!copy)
		return;
	k = lxmd_child_run(d->loop, argv, discarded, copy);
	if (k < 0) {
		log_warn("remove %s: run rm: %s", copy, strerror(-k));
		free(copy);
	}
}

int lxmd_snapshots_delete_all_files(const char *snapshots_dir, struct lxm_error **err)
{
	int k = lxm_rm_tree(snapshots_dir);

	if (k < 0)
		return lxm_error_setx(err, k, 500, "remove %s", snapshots_dir);
	return 0;
}

/* Discards the entries of each instance directory under top whose names start with prefix1 or
 * prefix2 (NULL for none). */
static int sweep_under(struct lxmd *d, const char *top, const char *prefix1, const char *prefix2)
{
	_cleanup_closedir_ DIR *outer = opendir(top);
	struct dirent *de;
	int found = 0;

	if (!outer)
		return 0;
	while ((de = readdir(outer))) {
		_cleanup_free_ char *dir = NULL;
		_cleanup_closedir_ DIR *inner = NULL;
		struct dirent *e;

		if (de->d_name[0] == '.' || asprintf(&dir, "%s/%s", top, de->d_name) < 0)
			continue;
		inner = opendir(dir);
		while (inner && (e = readdir(inner))) {
			_cleanup_free_ char *path = NULL;

			if (!startswith(e->d_name, prefix1) &&
			    !(prefix2 && startswith(e->d_name, prefix2)))
				continue;
			if (asprintf(&path, "%s/%s", dir, e->d_name) < 0)
				continue;
			log_info("removing %s, left by an interrupted snapshot or restore", path);
			lxmd_snapshot_discard(d, path);
			found++;
		}
	}
	return found;
}

int lxmd_snapshots_sweep(struct lxmd *d)
{
	_cleanup_free_ char *snaps = NULL, *insts = NULL;
	int n = 0;

	if (asprintf(&snaps, "%s/containers-snapshots", d->cfg.root) >= 0)
		n += sweep_under(d, snaps, ".tmp-", ".trash-");
	if (asprintf(&insts, "%s/containers", d->cfg.root) >= 0)
		n += sweep_under(d, insts, ".restore-", NULL);
	return n;
}
