/* A client of the simplestreams protocol (LXD's image server format): streams/v1/index.json,
 * the products catalogue it points at (images.json), choosing an image for an alias and an
 * architecture, and downloading its files over HTTPS with libcurl, with progress and sha256
 * verification. Blocking calls: lxmd runs them on the thread pool. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct lxm_sstreams;

/* server: "https://host[:port][/path]". ca_file: a PEM bundle to trust instead of the system's
 * (for servers with a private CA, and the tests), or NULL. */
int lxm_sstreams_new(const char *server, const char *ca_file, struct lxm_sstreams **ret,
		     struct lxm_error **err);
void lxm_sstreams_free(struct lxm_sstreams *s);

/* One downloadable image of the catalogue. */
struct lxm_sstreams_image {
	char *fingerprint;   /* LXD's: sha256 of metadata file + rootfs file (combined_sha256...) */
	char *product;	     /* product id, e.g. "debian:12:amd64:default" */
	char *version;	     /* version key, e.g. "20261101_05:24" */
	char *architecture;  /* LXD's name: "x86_64" */
	char *type;	     /* "container" or "virtual-machine" */
	char *meta_path;     /* path of the metadata file (lxd.tar.xz) relative to the server */
	char *meta_sha256;   /* its sha256 */
	uint64_t meta_size;  /* its size */
	char *rootfs_path;   /* path of the rootfs file (squashfs or root.tar.xz), or NULL when the
			      * image is unified (meta_path is the whole image) */
	char *rootfs_sha256; /* its sha256 */
	uint64_t rootfs_size;
	json_t *aliases;    /* array of alias strings */
	json_t *properties; /* os, release, description, ... */
	int64_t created_at; /* unix seconds */
};
void lxm_sstreams_image_free(struct lxm_sstreams_image *img);

/* Every image of the server (latest version of each product, for each architecture), in the
 * order of the catalogue. ret is an array of n owned pointers. */
int lxm_sstreams_list(struct lxm_sstreams *s, struct lxm_sstreams_image ***ret, size_t *ret_n,
		      struct lxm_error **err);

/* The image an alias ("debian/12", "debian/bookworm/cloud") or a fingerprint prefix names, for
 * architecture (LXD's name, e.g. "x86_64"). 404 when there is none. */
int lxm_sstreams_find(struct lxm_sstreams *s, const char *alias_or_fp, const char *architecture,
		      struct lxm_sstreams_image **ret, struct lxm_error **err);

/* Progress of a download: bytes received so far of the image's files, and their total. A
 * non-zero return cancels (-ECANCELED). */
typedef int (*lxm_sstreams_progress_fn)(uint64_t done, uint64_t total, void *ud);

/* Downloads img's files into dir as dir/meta and, for split images, dir/rootfs, checking size
 * and sha256 of each and the combined fingerprint; a mismatch or a short download is an error
 * that leaves neither file behind. */
int lxm_sstreams_download(struct lxm_sstreams *s, const struct lxm_sstreams_image *img,
			  const char *dir, lxm_sstreams_progress_fn progress, void *ud,
			  struct lxm_error **err);
