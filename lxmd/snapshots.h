/* The files of instance snapshots: where they live and how they are made, restored, renamed and
 * removed. The one place that copies them, so that storage drivers (btrfs subvolume snapshots,
 * overlay upper layers) can take over how without the API code changing.
 *
 * Layout: ROOT/containers-snapshots/<instance>/<snapshot>/ holds rootfs/ and, when the instance
 * has them, metadata.yaml and templates/ (what publish packs). Work in progress is a
 * ".tmp-<snapshot>-XXXXXX" directory beside it; a restore stages the snapshot's copy in
 * "<instance dir>/.restore-XXXXXX" and swaps it in.
 *
 * Functions marked "blocking" copy or walk trees: call them on the thread pool, never on the
 * loop thread. They never log; errors name the step and the path. */
#pragma once

#include <stdint.h>

#include "error.h"

struct lxmd;

/* Where the files of snapshot snap of instance live. */
int lxmd_snapshot_path(const struct lxmd *d, const char *instance, const char *snap, char **ret);

/* The directory holding every snapshot of instance. */
int lxmd_snapshots_dir(const struct lxmd *d, const char *instance, char **ret);

/* Blocking. Copies the instance's rootfs/, metadata.yaml and templates/ (those it has) from
 * instance_path into a new snapshot directory snap_path (cp -a --reflink=auto, as a child
 * process), staged beside it and renamed into place, so that a failure leaves nothing. -EEXIST
 * when snap_path exists already. *ret_size gets the bytes the copy takes (-1 when not known). */
int lxmd_snapshot_create_files(const char *instance_path, const char *snap_path, int64_t *ret_size,
			       struct lxm_error **err);

/* What a restore swapped, to undo it or to remove the old files afterwards. */
struct lxmd_snapshot_swap {
	char *trash;	  /* staging directory, holding the instance's old files afterwards */
	unsigned created; /* bit per entry that the instance did not have before (undo removes) */
};

/* Frees what swap holds (not the trash on disk). Accepts NULL. */
void lxmd_snapshot_swap_done(struct lxmd_snapshot_swap *swap);

/* Blocking. Replaces the instance's rootfs/, metadata.yaml and templates/ in instance_path with
 * copies of the snapshot's: copied into a staging directory first (the instance is untouched
 * when that fails), then swapped in by rename (rootfs with an atomic exchange). The old files
 * end in swap->trash, for lxmd_snapshot_discard(). The instance must not be running. */
int lxmd_snapshot_restore_files(const char *snap_path, const char *instance_path,
				struct lxmd_snapshot_swap *swap, struct lxm_error **err);

/* Puts the files that lxmd_snapshot_restore_files() replaced back (renames only: quick enough for
 * the loop thread). What was restored ends in swap->trash. */
int lxmd_snapshot_restore_undo(const char *instance_path, const struct lxmd_snapshot_swap *swap,
			       struct lxm_error **err);

/* Renames a snapshot's directory; -EEXIST when new_path exists. A rename: quick. */
int lxmd_snapshot_rename_files(const char *old_path, const char *new_path, struct lxm_error **err);

/* Moves a snapshot's directory out of the way (its name is free at once) to *ret_trash, for
 * lxmd_snapshot_discard(). A rename: quick. -ENOENT when there is no such directory. */
int lxmd_snapshot_delete_files(const char *snap_path, char **ret_trash, struct lxm_error **err);

/* Removes a tree that the functions above moved aside, in the background (rm as a child of the
 * loop); failures are logged. */
void lxmd_snapshot_discard(struct lxmd *d, const char *trash);

/* Blocking. Removes every snapshot of an instance (its snapshots directory); a missing one is
 * fine. */
int lxmd_snapshots_delete_all_files(const char *snapshots_dir, struct lxm_error **err);

/* At start-up: removes, in the background, what snapshots and restores that an earlier lxmd did
 * not finish left: ".tmp-*" and ".trash-*" in ROOT/containers-snapshots/<instance>/, ".restore-*"
 * in ROOT/containers/<instance>/. Returns how many it found. */
int lxmd_snapshots_sweep(struct lxmd *d);
