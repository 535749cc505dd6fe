/* An idmapped rootfs for an unprivileged container whose rootfs is an overlayfs mount.
 *
 * overlayfs cannot be idmapped itself (mount_setattr(MOUNT_ATTR_IDMAP) on it is EINVAL), but it
 * accepts idmapped layers (Linux 5.19+). So the monitor reads the host overlay's layers from
 * mountinfo, clones each layer (and the dir holding upper/ and work/) as an idmapped mount through
 * the child's user namespace, and builds a new overlay on those clones with the host mount's
 * options; its detached mount is the child's rootfs tree. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

struct lxm_error;

/* The layers and options of an overlay mount, as its mountinfo super options give them. */
struct monitor_overlay {
	char **lower;	/* lower layers, top first, NULL-terminated */
	size_t n_lower; /* entries in lower */
	char *upper;	/* upperdir, NULL for a read-only overlay */
	char *work;	/* workdir, NULL when upper is */
	char **opts;	/* "key=value" or "flag" options to repeat, NULL-terminated */
	size_t n_opts;	/* entries in opts */
};

void monitor_overlay_done(struct monitor_overlay *o);

/* Parses mountinfo's super options of an overlay ("rw,lowerdir=a:b,upperdir=u,workdir=w,...",
 * with mountinfo's \ooo escapes) into o. Keeps only the options that change how the layers are
 * used (index, redirect_dir, metacopy, ...). -EINVAL when no lower layer is named or only one of
 * upperdir/workdir is, -EOPNOTSUPP for data-only layers. */
int monitor_overlay_parse(const char *super_opts, struct monitor_overlay *o);

/* Builds the idmapped overlay for the overlay mounted at rootfs: *ret is the detached mount of a
 * new overlay whose layers are mounts idmapped through userns_fd, in which root_uid/root_gid
 * (the host ids of the container's root) are 0. */
int monitor_overlay_idmapped_tree(const char *rootfs, int userns_fd, uid_t root_uid, gid_t root_gid,
				  int *ret, struct lxm_error **err);
