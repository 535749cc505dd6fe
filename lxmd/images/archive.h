/* Image files with libarchive, always streamed (never a whole image in memory): unpacking an
 * LXD image (unified tarball, or the two parts of a split image) into a directory with every
 * entry checked, packing a directory back into a unified tarball, and fingerprints. These are
 * blocking calls, and archive.c is linked into lxm-imagetool only: lxmd runs that tool for
 * image work (see imagetool.c), so the parsing of untrusted tarballs happens outside the daemon
 * and lxmd does not map libarchive and the libraries it drags in. lxmd uses the enums and the
 * inline helpers of this header. */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "error.h"

/* The helper program that runs the functions of this header (and of lib/simplestreams.h). */
#define LXM_IMAGETOOL_NAME "lxm-imagetool"

/* What an archive is expected to hold. */
enum lxm_archive_kind {
	LXM_ARCHIVE_UNIFIED,  /* metadata.yaml, templates/..., rootfs/... (a virtual machine's:
			       * rootfs.img and boot/... instead of rootfs/) */
	LXM_ARCHIVE_METADATA, /* the metadata half of a split image: metadata.yaml, templates/...
			       * (and boot/... for a virtual machine) */
	LXM_ARCHIVE_ROOTFS,   /* the rootfs half of a split image: the tree at the top level, as a
			       * tarball or a squashfs file; it lands in DEST/rootfs/ */
};

enum lxm_compression {
	LXM_COMPRESS_NONE,
	LXM_COMPRESS_GZIP,
	LXM_COMPRESS_XZ,
	LXM_COMPRESS_ZSTD,
};

/* Names of the compressions, as in LXD's compression_algorithm. */
static const char *const lxm_compression_names[] = {
	[LXM_COMPRESS_NONE] = "none",
	[LXM_COMPRESS_GZIP] = "gzip",
	[LXM_COMPRESS_XZ] = "xz",
	[LXM_COMPRESS_ZSTD] = "zstd",
};

/* "gzip", "xz", "zstd", "none" -> value; -EINVAL otherwise. */
static inline int lxm_compression_from_name(const char *name, enum lxm_compression *ret)
{
	for (size_t i = 0; i < sizeof(lxm_compression_names) / sizeof(lxm_compression_names[0]);
	     i++) {
		if (strcmp(name, lxm_compression_names[i]) == 0) {
			*ret = (enum lxm_compression)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* The name of c (for lxm-imagetool's --compression). */
static inline const char *lxm_compression_name(enum lxm_compression c)
{
	return lxm_compression_names[c];
}

/* Progress of long work, called from the working thread: bytes of the input (unpack) or of the
 * source tree (pack) handled so far, and the total, 0 when unknown. A non-zero return cancels the
 * work, which then fails with -ECANCELED. */
typedef int (*lxm_progress_fn)(uint64_t done, uint64_t total, void *ud);

/* Unpacks the image file at path (compression detected: none, gzip, xz, zstd, bzip2; for
 * LXM_ARCHIVE_ROOTFS also squashfs) into destdir, which must not exist yet and is created with
 * mode 0700. Layout: destdir/metadata.yaml, destdir/templates/, destdir/rootfs/.
 * Owners (numeric), modes, times, hard links, symlinks and xattrs (security.capability) are kept.
 * Refused with a 400 error naming the entry, and destdir removed again: a truncated or corrupt
 * file, an absolute path or a ".." component, a hard link or a path through a symlink that would
 * leave destdir, an entry outside the kind's layout, a device node, fifo or socket outside
 * rootfs/dev, a setuid/setgid file outside rootfs/, a unified or metadata archive without
 * metadata.yaml, a metadata.yaml over 1 MiB; also anything but files and directories in
 * templates/, a hard link to another part of the image (rootfs/ -> templates/), and a unified
 * image or rootfs without any rootfs/ entry. A virtual machine's unified image has the file
 * rootfs.img (its root disk) in place of rootfs/, and its boot files (kernel, initrd) under boot/
 * (files and directories only, as templates/). Entry names may start with "./". An existing destdir
 * is a 409 and left alone. File flags (chattr) are not restored. A squashfs rootfs is unpacked by
 * unsquashfs, then walked for the device rule. Runs with its own working directory: the calling
 * thread is unshare(CLONE_FS)'d for good (its cwd and umask stop following the process's). */
int lxm_archive_unpack(const char *path, enum lxm_archive_kind kind, const char *destdir,
		       lxm_progress_fn progress, void *ud, struct lxm_error **err);

/* Reads metadata.yaml from a unified or metadata archive without unpacking the rest (stops at
 * that entry). ret is NUL-terminated; at most 1 MiB. 400 when absent or the file is corrupt. */
int lxm_archive_read_metadata(const char *path, char **ret, size_t *ret_len,
			      struct lxm_error **err);

/* What goes into a unified tarball: rootfs_dir for a container, disk_image for a VM. */
struct lxm_pack_source {
	const char *metadata_yaml; /* content of metadata.yaml */
	const char *templates_dir; /* a directory whose files become templates/, or NULL */
	const char *rootfs_dir;	   /* the tree that becomes rootfs/, or NULL */
	const char *disk_image;	   /* a VM's root disk file that becomes rootfs.img, or NULL */
	const char *boot_dir;	   /* a directory whose files become boot/ (a VM's), or NULL */
};

/* Writes a unified tarball of src to path (through path.tmp, renamed at the end, so path never
 * holds half a file), POSIX pax format with numeric owners, xattrs and hard links, compressed
 * with c. sha256_hex gets the sha256 of the written file (the image's fingerprint). Sockets are
 * skipped. */
int lxm_archive_pack(const struct lxm_pack_source *src, const char *path, enum lxm_compression c,
		     char sha256_hex[static 65], lxm_progress_fn progress, void *ud,
		     struct lxm_error **err);

/* sha256 of the concatenation of the files (a split image's fingerprint is that of its metadata
 * file followed by its rootfs file), as 64 lowercase hex digits. */
int lxm_sha256_files(const char *const paths[], size_t n, char out[static 65],
		     struct lxm_error **err);
