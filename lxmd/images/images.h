/* The image store. Files: ROOT/images/<fp> (a unified image, or the metadata half of a split one)
 * and ROOT/images/<fp>.rootfs (the rootfs half), recorded in the database with their properties
 * and aliases; ROOT/images/<fp>.unpacked/ the unpacked tree instances are filled from, made on
 * first use and shared; ROOT/images/.tmp-* work in progress (removed at start-up). Templates
 * (templates/<name>/build) build images on first use of their alias.
 *
 * Every function here is called on the loop thread; unpacking, packing, hashing and copying run
 * on the thread pool or in child processes. A call that fails synchronously never runs its
 * callback. Long work reports progress in its operation's metadata (when op is non-NULL) as
 * {"progress": {"stage": "unpack", "done": bytes, "total": bytes, "percent": n}}. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

struct lxmd;
struct lxm_operation;

/* Sets up ROOT/images and removes the leftovers of work an earlier lxmd did not finish. */
int lxmd_images_init(struct lxmd *d, struct lxm_error **err);
/* Cancels builds and waits are abandoned (their callbacks run with -ECANCELED). */
void lxmd_images_fini(struct lxmd *d);

/* Result of image work: the image's full fingerprint on success (result 0), else err (borrowed,
 * valid during the call). */
typedef void (*lxmd_image_done_fn)(struct lxmd *d, int result, const char *fp,
				   const struct lxm_error *err, void *ud);

/* What a user may call an image: an alias, or a unique prefix of a fingerprint. Sets ret_fp to
 * the full fingerprint; 404 when nothing matches, 400 when a prefix is ambiguous. */
int lxmd_image_resolve(struct lxmd *d, const char *name, char **ret_fp, struct lxm_error **err);

/* Whether name resolves, or is the alias of a template that can build it ("busybox", "debian",
 * "debian/12", "debian/bookworm", ...). */
bool lxmd_image_known(struct lxmd *d, const char *name);

/* Resolves name, building the template image first when name is a template alias not built yet
 * (once: concurrent calls for the same alias wait for that one build). The built image is
 * stored like an imported one, with the template's aliases. */
int lxmd_image_ensure(struct lxmd *d, const char *name, struct lxm_operation *op,
		      lxmd_image_done_fn done, void *ud, struct lxm_error **err);

/* An import of image files already on disk (an upload the API spooled under ROOT/images/). */
struct lxmd_image_import {
	const char *meta_path;	  /* a unified image, or the metadata half of a split one */
	const char *rootfs_path;  /* the rootfs half (tarball or squashfs), NULL when unified */
	const char *filename;	  /* the name it was uploaded as ("" when unknown) */
	const char *expected_fp;  /* the fingerprint the client announced, or NULL */
	bool public;		  /* served to other hosts */
	const json_t *properties; /* object of strings laid over metadata.yaml's, or NULL */
	const json_t *aliases;	  /* array of {"name", "description"} to create, or NULL */
};
/* Checks the files (lxm_archive_unpack's rules, a valid metadata.yaml, the announced
 * fingerprint), moves them into the store and records the image. The files are consumed: moved
 * or removed, also on failure. An image already in the store is 409 "image <fp> already exists"
 * (with the fingerprint in the message). */
int lxmd_image_import(struct lxmd *d, const struct lxmd_image_import *imp, struct lxm_operation *op,
		      lxmd_image_done_fn done, void *ud, struct lxm_error **err);

/* A new image from a stopped instance's filesystem, or from one of its snapshots (LXD's
 * publish). */
struct lxmd_image_publish {
	const char *instance;	  /* its name */
	const char *snapshot;	  /* the snapshot's short name, or NULL: the instance itself */
	const char *compression;  /* "gzip", "xz", "zstd", "none"; NULL: the server's default */
	bool public;		  /* served to other hosts */
	const json_t *properties; /* laid over those of the instance's image, or NULL */
	const json_t *aliases;	  /* array of {"name", "description"}, or NULL */
};
int lxmd_image_publish(struct lxmd *d, const struct lxmd_image_publish *pub,
		       struct lxm_operation *op, lxmd_image_done_fn done, void *ud,
		       struct lxm_error **err);

/* The files of an image, to export: the unified file, or the metadata file and the rootfs file
 * (ret_rootfs set to NULL for unified images). */
int lxmd_image_files(struct lxmd *d, const char *fp, char **ret_meta, char **ret_rootfs,
		     struct lxm_error **err);

/* Removes an image: database row and aliases now, files in the background. 400 while a build or
 * fill is using it. */
int lxmd_image_delete(struct lxmd *d, const char *fp, struct lxm_error **err);

/* Creates an instance's volume in pool from image fp: unpacks the image once (shared by
 * concurrent fills), makes the volume from the pool's image volume (see lxmd_volume_create),
 * keeps metadata.yaml and templates/ beside the rootfs (for publish), and applies the image's
 * "create" templates with ctx (see lxm_template_render). cb runs once with the result, and on
 * failure err (borrowed, valid during the call) says which step failed and why. The image cannot be
 * deleted meanwhile. */
typedef void (*lxmd_rootfs_done_fn)(struct lxmd *d, const char *name, int result,
				    const struct lxm_error *err, void *ud);
struct lxm_pool;
int lxmd_image_fill_rootfs(struct lxmd *d, const char *fp, struct lxm_pool *pool,
			   const char *instance, const json_t *ctx, struct lxm_operation *op,
			   lxmd_rootfs_done_fn cb, void *ud, struct lxm_error **err);

/* A pull from an image server (LXD's image source with mode "pull"). */
struct lxmd_image_pull {
	const char *server;	 /* "https://host[:port][/path]" */
	const char *protocol;	 /* "simplestreams"; NULL or "" is LXD's default, "lxd" (501) */
	const char *alias;	 /* an alias, or a fingerprint (prefix), on the server */
	const char *certificate; /* PEM trusted for the server, or NULL: the system's CAs */
	bool cached;		 /* for an instance: recorded cached (LXD's), not a user's image */
	bool public;		 /* make it public */
	bool auto_update;	 /* make it auto_update */
	const json_t *aliases;	 /* array of {"name", "description"} created or moved to it */
};
/* Looks alias up on the server for this host's architecture (thread pool); uses the store's
 * image when it has that fingerprint, else downloads it (progress: stage "download", bytes) and
 * imports it, once for concurrent pulls of the same image. The image records its source
 * (update_source). Errors name alias and server: "image 'x' on https://...: not found". */
int lxmd_image_pull(struct lxmd *d, const struct lxmd_image_pull *p, struct lxm_operation *op,
		    lxmd_image_done_fn done, void *ud, struct lxm_error **err);

/* What lxmd_image_pull refuses before any traffic (no server or alias, protocol "lxd": 501,
 * an unknown protocol, a server that is not https://). */
int lxmd_image_pull_check(const struct lxmd_image_pull *p, struct lxm_error **err);

/* An explicit build from a template, also when its image exists (a rebuild). */
struct lxmd_image_build {
	const char *tpl;       /* "busybox", "debian" */
	const char *release;   /* "trixie", "13", ...; NULL or "": the template's default */
	bool public;	       /* make it public */
	const json_t *aliases; /* array of {"name", "description"} created or moved to it */
};
/* Builds (or joins the build in progress of) the template's image; the template's own aliases
 * for that release and the requested ones move to the new image, older images stay. 404
 * "template 'x' not found (known: ...)"; a release the template refuses is 400 with its
 * message. */
int lxmd_image_build(struct lxmd *d, const struct lxmd_image_build *b, struct lxm_operation *op,
		     lxmd_image_done_fn done, void *ud, struct lxm_error **err);

/* Refreshes image fp from where it came from: an image server (the newest image of its alias,
 * pulled when the fingerprint differs) or a template (rebuilt). done's fp is the image the
 * aliases name afterwards: fp itself when nothing was newer. The old image's aliases move to
 * the new one; the old image is deleted when it was a cached one (as LXD does), else kept. 400
 * for an image with no source (imported, published). */
int lxmd_image_refresh(struct lxmd *d, const char *fp, struct lxm_operation *op,
		       lxmd_image_done_fn done, void *ud, struct lxm_error **err);

struct lxm_db_image;
/* LXD's Image object for a row already read (aliases and update_source included): the one
 * builder of it. NULL when out of memory. */
json_t *lxmd_image_json(const struct lxm_db_image *img);
/* LXD's Image object for GET /1.0/images/<fp>. */
int lxmd_image_to_json(struct lxmd *d, const char *fp, json_t **ret, struct lxm_error **err);
