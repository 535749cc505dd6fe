/* A client of the simplestreams protocol (LXD's image server format): streams/v1/index.json,
 * the products catalogue it points at (images.json), choosing an image for an alias and an
 * architecture, and downloading its files over HTTPS with libcurl, with progress and sha256
 * verification. Blocking calls, linked into lxm-imagetool only (lxmd and lxm run that tool, so
 * neither maps libcurl and its TLS stack). */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Largest index.json or products catalogue accepted; larger answers are refused. */
#define LXM_SSTREAMS_JSON_MAX (64u << 20)

struct lxm_sstreams;

/* server: "https://host[:port][/path]"; anything but https:// is refused (400). ca_file: a PEM
 * bundle to trust instead of the system's (for servers with a private CA, and the tests), or
 * NULL. No network traffic happens here. */
int lxm_sstreams_new(const char *server, const char *ca_file, struct lxm_sstreams **ret,
		     struct lxm_error **err);
void lxm_sstreams_free(struct lxm_sstreams *s);

/* One downloadable image of the catalogue. */
struct lxm_sstreams_image {
	char *fingerprint;    /* LXD's: sha256 of metadata file + rootfs file (the catalogue's
			       * combined_*_sha256), or of the one file of a unified image */
	char *product;	      /* product id, e.g. "debian:12:amd64:default" */
	char *version;	      /* version key, e.g. "20261101_05:24" */
	char *architecture;   /* LXD's name: "x86_64" */
	char *type;	      /* "container" or "virtual-machine" */
	char *meta_path;      /* path of the metadata file (lxd.tar.xz) relative to the server */
	char *meta_sha256;    /* its sha256 */
	uint64_t meta_size;   /* its size */
	char *rootfs_path;    /* path of the rootfs file (squashfs, root.tar.xz or disk-kvm.img),
			       * or NULL when the image is unified (meta_path is the whole image) */
	char *rootfs_ftype;   /* the rootfs item's ftype ("squashfs", "root.tar.xz",
			       * "disk-kvm.img"), NULL for unified images */
	char *rootfs_sha256;  /* its sha256 */
	uint64_t rootfs_size; /* its size */
	json_t *aliases;      /* array of alias strings (the product's "aliases") */
	json_t *properties;   /* os, release, variant, architecture, description, serial */
	int64_t created_at;   /* unix seconds, from the version key; 0 when it is no date */
};
void lxm_sstreams_image_free(struct lxm_sstreams_image *img);
/* Frees n images and the array. */
void lxm_sstreams_images_free(struct lxm_sstreams_image **imgs, size_t n);

/* img as a JSON object of the same fields (how lxm-imagetool hands images to lxmd and lxm). */
json_t *lxm_sstreams_image_to_json(const struct lxm_sstreams_image *img);
/* The reverse, checked: 400 when a field is missing, of the wrong type or unsafe (a path with
 * "..", a fingerprint that is no sha256). *ret is owned. */
int lxm_sstreams_image_from_json(const json_t *o, struct lxm_sstreams_image **ret,
				 struct lxm_error **err);

/* The paths of the products catalogues ("datatype": "image-downloads") an index.json lists, as
 * a NULL-terminated array. Errors (400) say what is malformed. */
int lxm_sstreams_parse_index(const json_t *index, char ***ret_paths, struct lxm_error **err);

/* The images of one products catalogue (images.json): for each product the latest version
 * (highest version key in C order) that has complete items, one image per type it offers
 * (container: lxd.tar.xz + squashfs, preferred, or root.tar.xz, or a unified
 * lxd_combined.tar.gz; virtual-machine: lxd.tar.xz + disk-kvm.img). Items without a sha256,
 * a size or a usable path, and images without a fingerprint, are left out. Appends to *imgs
 * (an array of *n owned pointers, reallocated). 400 when the catalogue is malformed. */
int lxm_sstreams_parse_catalogue(const json_t *products, struct lxm_sstreams_image ***imgs,
				 size_t *n, struct lxm_error **err);

/* Picks the image name designates among imgs: an alias of a product ("debian/12") or that
 * alias followed by "/" and the Debian architecture ("debian/12/amd64"), for architecture (LXD's
 * name; NULL: any) and type (NULL: "container"); else a fingerprint or a unique fingerprint
 * prefix, whatever its architecture. *ret points into imgs. 404 when nothing matches, 409 when
 * a prefix is ambiguous. */
int lxm_sstreams_lookup(struct lxm_sstreams_image *const *imgs, size_t n, const char *name,
			const char *architecture, const char *type, struct lxm_sstreams_image **ret,
			struct lxm_error **err);

/* LXD's architecture name for a Debian one ("amd64" -> "x86_64"); names it does not know are
 * returned unchanged. */
const char *lxm_sstreams_arch_name(const char *debian_arch);

/* Every image of the server (latest version of each product, per type), in the order of the
 * catalogue. The catalogue is fetched once per handle. ret is an array of n owned pointers
 * (free with lxm_sstreams_images_free). */
int lxm_sstreams_list(struct lxm_sstreams *s, struct lxm_sstreams_image ***ret, size_t *ret_n,
		      struct lxm_error **err);

/* The image an alias ("debian/12", "debian/bookworm/cloud") or a fingerprint prefix names, for
 * architecture (LXD's name, e.g. "x86_64") and type (NULL: "container"); see
 * lxm_sstreams_lookup. *ret is an owned copy. */
int lxm_sstreams_find(struct lxm_sstreams *s, const char *alias_or_fp, const char *architecture,
		      const char *type, struct lxm_sstreams_image **ret, struct lxm_error **err);

/* Progress of a download: bytes received so far of the image's files, and their total. A
 * non-zero return cancels (-ECANCELED). */
typedef int (*lxm_sstreams_progress_fn)(uint64_t done, uint64_t total, void *ud);

/* Downloads img's files into dir (which must exist) as dir/meta and, for split images,
 * dir/rootfs, streamed to disk while their sha256 is computed, checking size and sha256 of each
 * and the combined fingerprint; a mismatch, an oversize or short download, an HTTP or TLS error
 * is an error that leaves neither file behind. Existing files of those names are an error. */
int lxm_sstreams_download(struct lxm_sstreams *s, const struct lxm_sstreams_image *img,
			  const char *dir, lxm_sstreams_progress_fn progress, void *ud,
			  struct lxm_error **err);
