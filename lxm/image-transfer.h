/* Moving image files between the CLI and lxmd, streamed both ways (never a whole file in
 * memory): upload bodies made of files and multipart framing, a streaming multipart/form-data
 * reader, the export writer that keeps files only when their sha256 is the image's fingerprint,
 * and the copy pump that streams one lxmd's export into another's import. Progress is drawn
 * when stdout is a terminal. */
#pragma once

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/error.h"
#include "lxm/client.h"

/* LXD's fingerprints: sha256 in lower-case hex. */
#define LXM_FP_LEN 64

/* Whether s is a non-empty lower-case hex string of at most LXM_FP_LEN characters (a
 * fingerprint or a prefix of one). */
bool lxm_is_fingerprint_prefix(const char *s);

/* ---- progress of a transfer on a terminal ---- */

struct lxm_progress {
	const char *label; /* "Uploading image" */
	uint64_t done;	   /* bytes so far */
	uint64_t total;	   /* bytes expected, 0 when unknown */
	uint64_t last_ms;  /* when it was last drawn */
	bool tty;	   /* stdout is a terminal: draw */
	bool shown;	   /* something was drawn (to erase) */
};

void lxm_progress_init(struct lxm_progress *p, const char *label, uint64_t total);
/* Counts n more bytes and redraws "Label: 1.00MiB of 2.00MiB (50%)" at most every 200ms. */
void lxm_progress_add(struct lxm_progress *p, size_t n);
/* Erases the line, if one was drawn. */
void lxm_progress_end(struct lxm_progress *p);

/* ---- progress of an operation on a terminal ---- */

/* The line "Retrieving image: download 45% (12.30MB/s)" drawn from an operation's
 * metadata.progress ({"stage", "done", "total", "percent"}). */
struct lxm_op_progress {
	const char *label;  /* "Retrieving image" */
	uint64_t last_done; /* progress.done at the last rate sample */
	uint64_t last_ms;   /* when that sample was taken */
	char *last_stage;   /* the stage it belongs to */
	double rate;	    /* bytes per second, 0 when unknown */
	bool shown;	    /* something was drawn (to erase) */
};

/* The text of the line for op (without label), or NULL when op has no progress. */
char *lxm_op_progress_text(struct lxm_op_progress *p, const json_t *op, uint64_t now_ms);
/* An lxm_client_progress_fn (ud: struct lxm_op_progress): draws or, for NULL, erases. */
void lxm_op_progress_draw(const json_t *op, void *ud);
/* Shows the progress of c's operations under label while stdout is a terminal; p must live as
 * long as c waits. Off the terminal nothing changes. */
void lxm_show_op_progress(struct lxm_client *c, struct lxm_op_progress *p, const char *label);

/* ---- upload bodies ---- */

/* One piece of an upload body: bytes in memory, or a file read as it is sent. */
struct lxm_segment {
	const char *mem;  /* the bytes, or NULL for a file */
	uint64_t len;	  /* bytes in mem, or the file's size */
	int fd;		  /* the file, or -1 */
	const char *path; /* the file's name, for errors */
};

/* An upload body made of segments: a file, or multipart parts around two files. The files'
 * bytes feed sha (when non-NULL): LXD's fingerprint is the sha256 of the file, or of metadata
 * then rootfs. */
struct lxm_body {
	struct lxm_segment seg[5]; /* in order */
	size_t n;		   /* segments */
	size_t i;		   /* the segment being sent */
	uint64_t off;		   /* bytes of seg[i] sent */
	EVP_MD_CTX *sha;	   /* the files' digest, or NULL */
	struct lxm_progress prog;  /* bytes of the files sent */
	int err;		   /* a failed read: -errno (-ENODATA: the file shrank) */
	const char *err_path;	   /* and the file it was */
	char *framing[3];	   /* the multipart framing the segments point into */
	char *content_type;	   /* "multipart/form-data; boundary=..." of a two-part body */
};

void lxm_body_done(struct lxm_body *b);
/* The body's length: the sum of its segments. */
int64_t lxm_body_size(const struct lxm_body *b);
/* An lxm_stream read callback (ud: the struct lxm_body): the next bytes of the body. */
ssize_t lxm_body_read(char *buf, size_t len, void *ud);
/* Makes b a multipart/form-data body with parts "metadata" (meta) and "rootfs" (rootfs), as lxc
 * sends a split image, under a random boundary (so no file contains it by chance); sets
 * b->content_type. The segments' files are not owned by b. Returns 0 or -ENOMEM. */
int lxm_body_multipart(struct lxm_body *b, const struct lxm_segment *meta, const char *meta_name,
		       const struct lxm_segment *rootfs, const char *rootfs_name);

/* A file name as a header value or a multipart parameter: its last component, with quotes,
 * backslashes and control characters replaced. */
char *lxm_safe_filename(const char *path);

/* The value of parameter key in a header value like `form-data; name="x"; filename="y"` or
 * `multipart/form-data; boundary=z`, malloc'ed, or NULL. */
char *lxm_header_param(const char *value, const char *key);

/* ---- multipart/form-data reader ---- */

enum lxm_mp_state {
	LXM_MP_PREAMBLE, /* before the first delimiter */
	LXM_MP_AFTER,	 /* after a delimiter: "\r\n" (a part) or "--" (the end) */
	LXM_MP_HEADERS,	 /* a part's headers */
	LXM_MP_BODY,	 /* a part's content */
	LXM_MP_DONE,	 /* after the closing delimiter */
};

/* Most bytes of a part's headers accepted; more is -EPROTO. */
#define LXM_MP_HEADERS_MAX 16384

/* A streaming reader of multipart/form-data: it keeps only what may still be the start of a
 * delimiter, never a whole part. Callbacks return 0 or -errno, which stops the reader. */
struct lxm_mp {
	char *delim;		 /* "\r\n--BOUNDARY" */
	size_t dlen;		 /* its length */
	char *buf;		 /* bytes received and not consumed */
	size_t len;		 /* bytes in buf */
	enum lxm_mp_state state; /* where the reader is */
	/* a part starts: its name and filename parameters (either may be NULL) */
	int (*begin)(const char *name, const char *filename, void *ud);
	int (*data)(const char *d, size_t n, void *ud); /* a piece of the part's content */
	void *ud;					/* for the callbacks */
};

/* Sets up m for a body of content_type (which names the boundary): -EPROTO without one. */
int lxm_mp_init(struct lxm_mp *m, const char *content_type);
/* Feeds the next n bytes of the body: -EPROTO for a malformed body, or a callback's error.
 * Whether the body was complete is m->state == LXM_MP_DONE after the last bytes. */
int lxm_mp_feed(struct lxm_mp *m, const char *d, size_t n);
void lxm_mp_done(struct lxm_mp *m);

/* ---- the image commands' transfers ---- */

/* What an image upload says about itself besides its files. */
struct lxm_image_upload {
	bool public;		  /* X-LXD-public */
	const json_t *properties; /* X-LXD-properties, or NULL */
};

/* Imports the unified image file meta, or the split image meta + rootfs (rootfs non-NULL), into
 * c with POST /1.0/images, checks that the server's fingerprint is the sha256 of what was sent
 * (deleting the image otherwise) and returns it. cmd prefixes messages about the files. */
int lxm_image_import_files(struct lxm_client *c, const char *cmd, const char *meta,
			   const char *rootfs, const struct lxm_image_upload *u, char **ret_fp,
			   struct lxm_error **err);

/* Where an export went: the metadata (or unified) file and the rootfs file (NULL for a unified
 * image), both malloc'ed. */
struct lxm_export_result {
	char *files[2];
};
void lxm_export_result_done(struct lxm_export_result *r);

/* Downloads image fp from c into dir under the server's file names (or named after the
 * fingerprint), or to target_file (and target_file.root) when non-NULL, keeping them only when
 * what was received has the image's fingerprint as sha256. */
int lxm_image_export_files(struct lxm_client *c, const char *cmd, const char *fp, const char *dir,
			   const char *target_file, struct lxm_export_result *ret,
			   struct lxm_error **err);

/* Copies image fp (Image object img) from src (remote src_name) into dst: the export streamed
 * into an import through a socket pair, checked against the fingerprint on both sides. */
int lxm_image_copy_stream(struct lxm_client *src, const char *src_name, const char *fp,
			  const json_t *img, struct lxm_client *dst, bool public,
			  struct lxm_error **err);

/* Best effort: deletes image fp from c (its content is not what was sent). */
void lxm_image_drop(struct lxm_client *c, const char *fp);
