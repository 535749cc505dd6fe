/* Shared by the lxmd/images/ store files only: the jobs everything runs as, the store's state,
 * and the helpers the parts use. images.c has the core (jobs, progress, files, the database,
 * init and fini, resolve and ensure with template builds, import, delete, JSON, requests);
 * images-instance.c fills instances from images and publishes instances as images;
 * images-sources.c has the templates, pulls from image servers, explicit template builds and
 * refresh.
 *
 * The job, progress, database and request helpers are for the loop thread; workers use
 * images_work_progress(), images_work_stage() and the file helpers but images_discard(). */
#pragma once

#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "cleanup.h"
#include "db/db.h"
#include "error.h"
#include "images/archive.h"
#include "images/images.h"
#include "images/metadata.h"

struct lxmd_child;

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

/* An image a template builds, and the aliases that name it. */
struct template_image {
	const char *key;     /* the build's identity: concurrent requests for it share one build */
	const char *tpl;     /* templates/<tpl>/build */
	const char *release; /* passed as --release, or NULL */
	const char *aliases[4]; /* what the image is called, the first free ones recorded */
	bool vm;		/* the virtual-machine variant: built with --vm --agent PATH */
};

/* What a job does. */
enum job_kind {
	JOB_IMPORT,  /* lxmd_image_import */
	JOB_BUILD,   /* a template build, then its packing */
	JOB_UNPACK,  /* an image file unpacked into <fp>.unpacked */
	JOB_FILL,    /* lxmd_image_fill_rootfs */
	JOB_PUBLISH, /* lxmd_image_publish */
	JOB_DEFER,   /* an ensure that resolved at once, answered on the next loop turn */
	JOB_PULL,    /* an image looked up on an image server, then downloaded and imported */
};

/* Someone waiting for a job's result. */
struct waiter {
	TAILQ_ENTRY(waiter) link; /* in the job's waiters */
	struct lxm_operation *op; /* gets the job's progress, or NULL */
	lxmd_image_done_fn done;  /* told the result */
	void *ud;		  /* for done */
};

/* Work on an image, shared by everyone waiting for its result. */
struct job {
	LIST_ENTRY(job) link;	      /* in images_store.jobs */
	enum job_kind kind;	      /* what it does */
	char *key;		      /* template key (build) or fingerprint (others), or NULL */
	TAILQ_HEAD(, waiter) waiters; /* told the result, in arrival order */
	uv_work_t work;		      /* the thread pool's */
	uv_timer_t timer;	      /* JOB_DEFER's */
	struct lxmd_child *child;     /* the running helper, or NULL */
	bool pending;		      /* a work item, child or timer will still call back */
	bool cancelled;		      /* lxmd_images_fini abandoned it: callbacks only free */
	int result;		      /* 0 or -errno, set by the worker */
	struct lxm_error *err;	      /* why, set by the worker */
	/* Progress, written by the worker under images_store.lock. */
	char stage[48];	    /* what is being done ("unpack", "pack", a template's stage) */
	uint64_t done;	    /* bytes (or the template's units) done */
	uint64_t total;	    /* out of, 0 when unknown */
	bool dirty;	    /* changed since the loop last published it */
	int sent_percent;   /* the percent last sent to the loop, -1 for none */
	uint64_t sent_done; /* done when last sent (for unknown totals) */
};

/* lxmd_image_import: hashed, then unpacked and moved in, then recorded. */
struct import_job {
	struct job j;
	char *meta_path;		 /* the (metadata) file, consumed */
	char *rootfs_path;		 /* the rootfs file, consumed, or NULL */
	char *filename;			 /* recorded as uploaded */
	char *expected_fp;		 /* the announced fingerprint, or NULL */
	bool public;			 /* recorded */
	json_t *properties;		 /* laid over metadata.yaml's, or NULL */
	json_t *aliases;		 /* to create, or NULL */
	bool hashed;			 /* the first stage (metadata, hash) is done */
	char fp[65];			 /* the files' sha256 */
	int64_t size;			 /* their size */
	struct lxm_image_metadata *meta; /* parsed metadata.yaml */
};

/* A template build: the template runs as a child, then its output is packed. */
struct build_job {
	struct job j;
	const struct template_image *ti; /* what is built: an entry of template_images, or own */
	struct template_image own;	 /* a release template_images does not list */
	char *own_key;			 /* own's key */
	char *own_release;		 /* own's release */
	bool staged;			 /* the template announced its first stage */
	bool existing;			 /* the build's fingerprint is in the store already */
	char *builddir;			 /* the template's OUTDIR, then <fp>.unpacked */
	char *packfile;			 /* the packed image in progress */
	char fp[65];			 /* its sha256 */
	int64_t size;			 /* its size */
	struct lxm_image_metadata *meta; /* the template's metadata.yaml */
};

/* An image unpacked into <fp>.unpacked, once for all the fills waiting on it. */
struct unpack_job {
	struct job j;
	char *meta_path;   /* ROOT/images/<fp> */
	char *rootfs_path; /* ROOT/images/<fp>.rootfs, or NULL for a unified image */
	char *dest;	   /* ROOT/images/<fp>.unpacked */
};

/* lxmd_image_fill_rootfs: unpack (shared), copy, then templates. */
struct fill_job {
	struct job j;
	struct lxmd *d;		  /* the daemon */
	struct lxm_pool *pool;	  /* where the instance's volume goes */
	char *instance;		  /* being filled */
	char *path;		  /* its directory */
	json_t *ctx;		  /* for its templates */
	struct lxm_operation *op; /* gets the progress, or NULL */
	lxmd_rootfs_done_fn cb;	  /* told the result */
	void *ud;		  /* for cb */
	bool ended;		  /* cb has run */
	bool vm;		  /* a virtual machine's disk: no templates applied */
};

/* lxmd_image_publish: an instance's (or snapshot's) files packed into a new image. */
struct publish_job {
	struct job j;
	char *instance;			  /* its name */
	char *path;			  /* its directory */
	char *architecture;		  /* for an instance without metadata.yaml */
	enum lxm_compression compression; /* of the tarball */
	bool public;			  /* recorded */
	bool vm;			  /* a virtual machine's files: a virtual-machine image */
	json_t *properties;		  /* laid over the instance's image's, or NULL */
	json_t *aliases;		  /* to create, or NULL */
	char *packfile;			  /* the tarball in progress */
	char fp[65];			  /* its sha256 */
	int64_t size;			  /* its size */
	struct lxm_image_metadata *meta;  /* what went into it */
};

/* An image looked up on an image server, then downloaded and imported. */
struct pull_job {
	struct job j;
	char *server;	   /* the image server */
	char *alias;	   /* what is asked for there */
	char *certificate; /* PEM to trust, or NULL */
	char *ca_file;	   /* certificate written out for lxm-imagetool, or NULL */
	json_t *img;	   /* what the server offers under alias (lxm_sstreams_image_to_json) */
	char *dir;	   /* the download's directory, ROOT/images/.tmp-* */
};

/* An answer known at once, given on the next loop turn. */
struct defer_job {
	struct job j;
	char fp[65]; /* the answer */
};

/* The store's state, one for the daemon. */
struct images_store {
	struct lxmd *d;	       /* the daemon, NULL outside init ... fini */
	char *dir;	       /* ROOT/images */
	uv_async_t wake;       /* a worker has progress to publish */
	pthread_mutex_t lock;  /* guards job progress and closing against the workers */
	bool closing;	       /* fini ran (under lock): workers cancel, nobody wakes */
	LIST_HEAD(, job) jobs; /* every job not freed yet */
};
extern struct images_store images_store;

/* What the store records for a new image. */
struct record {
	const char *fp;			       /* its fingerprint */
	const struct lxm_image_metadata *meta; /* its metadata.yaml */
	const char *filename;		       /* as shown and exported */
	int64_t size;			       /* bytes of its file(s) */
	bool public;			       /* served to other hosts */
	const json_t *properties;	       /* laid over meta's, or NULL */
	const json_t *aliases;		       /* array of {"name", "description"}, or NULL */
	bool only_free_aliases;		       /* skip taken aliases instead of failing */
};

/* What a caller wants made of an image once it is there (see images_req_done). */
struct image_req {
	char *what;			/* the request in errors: "image 'x' on https://..." */
	struct lxm_db_image_source src; /* recorded on the image (server NULL: none) */
	bool cached;			/* the caller is an instance create (LXD's cached) */
	bool public;			/* make it public */
	bool auto_update;		/* make it auto-update */
	json_t *aliases;	 /* {"name", "description"} created or moved to it, or NULL */
	char *replaces;		 /* refresh: the image it replaces, or NULL */
	bool pull_404;		 /* errors of the lookup are the server's "not found" */
	lxmd_image_done_fn done; /* told the result */
	void *ud;		 /* for done */
};

/* ---- templates (images-sources.c) ---- */

/* The template image an alias names, or NULL. */
const struct template_image *images_template_image_for(const char *name);
/* The build program of template tpl; -ENOENT when it is not installed. */
int images_template_for(const char *tpl, char **ret);

/* ---- jobs ---- */

/* Sets j up as a job of kind and puts it in the store's list. */
void images_job_init(struct job *j, enum job_kind kind);
/* Takes j out of the list and frees it with its waiters; NULL is fine. */
void images_job_free(struct job *j);
/* For a callback of j's work item, child or timer: nothing is pending any more. A cancelled j
 * is freed, and true says the callback has nothing else to do. */
bool images_job_returned(struct job *j);
/* Adds a waiter to j: op gets its progress, done its result. */
int images_job_wait(struct job *j, struct lxm_operation *op, lxmd_image_done_fn done, void *ud);
/* Tells every waiter of j the result (fp on success, else err). */
void images_job_notify(struct job *j, int result, const char *fp, const struct lxm_error *err);
/* The job of kind for key that is not cancelled, or NULL. */
struct job *images_job_find(enum job_kind kind, const char *key);

/* ---- progress ---- */

/* Sets op's progress metadata; op may be NULL. */
void images_op_progress(struct lxm_operation *op, const char *stage, uint64_t done, uint64_t total);
/* For workers: an lxm_progress_fn with the job as ud; non-zero once lxmd is closing. */
int images_work_progress(uint64_t done, uint64_t total, void *ud);
/* For workers: a new stage of j begins. */
void images_work_stage(struct job *j, const char *stage);
/* Publishes what j's worker reported since the last publication. */
void images_job_flush(struct job *j);

/* ---- files ---- */

/* ROOT/images/<fp><suffix>. */
int images_store_path(const char *fp, const char *suffix, char **ret);
/* A fresh name for work in progress: ROOT/images/.tmp-<random><suffix>. */
int images_tmp_path(const char *suffix, char **ret);
/* On the loop: renames a file or tree out of the way, then removes it in a child process. */
void images_discard(const char *path);
/* The size of the file at path, 0 when there is none (or path is NULL). */
int64_t images_file_size(const char *path);
/* For workers: unpacks an image's file(s) into dest (which must not exist). */
int images_unpack_files(const char *meta, const char *rootfs, const char *dest, struct job *j,
			struct lxm_error **err);
/* For workers: runs lxm-imagetool with args (its subcommand and arguments, NULL-terminated) and
 * input (or NULL) on its stdin. With j, its "progress DONE TOTAL" lines are j's progress; every
 * other stdout line goes to *ret_out (when non-NULL; each with its newline, "" for none). Once
 * lxmd is closing the tool is killed (503). A failure the tool reports is its lxm_error as it was
 * (status, errno, message), so messages do not change for running in a child. */
int images_tool_run(struct job *j, const char *const args[], const char *input, char **ret_out,
		    struct lxm_error **err);
/* For workers: stage "pack" of j, then packs yaml (metadata.yaml), templates_dir (when it
 * exists) and rootfs_dir into a unified tarball at out with lxm-imagetool; fp gets its sha256. */
int images_pack(struct job *j, const char *yaml, const char *templates_dir, const char *rootfs_dir,
		const char *out, enum lxm_compression c, char fp[static 65],
		struct lxm_error **err);
/* The last non-empty line of a helper's stderr, in buf. */
const char *images_last_line(const char *text, char *buf, size_t size);

/* ---- the database ---- */

/* 409 naming the first alias of aliases that exists already. */
int images_check_aliases_free(struct lxmd *d, const json_t *aliases, struct lxm_error **err);
/* 400 unless aliases is NULL or an array of objects with a non-empty "name". */
int images_check_aliases_valid(const json_t *aliases, struct lxm_error **err);
/* Records a new image and its aliases, in one transaction. */
int images_record_image(struct lxmd *d, const struct record *rec, struct lxm_error **err);
/* A virtual machine's parts beside rootfs_dir (".../rootfs"): ".../rootfs.img" (a regular file)
 * and ".../boot" (NULL when absent). 1 when there is a disk, 0 when not, -ENOMEM. */
int images_vm_parts(const char *rootfs_dir, char **ret_disk, char **ret_boot);
/* "virtual-machine" for an image whose metadata.yaml says so (lxm: type: virtual-machine) or
 * whose unpacked tree (<fp>.unpacked) has a rootfs.img, else "container". */
const char *images_type_of(const char *fp, const struct lxm_image_metadata *meta);
/* Whether the database has image fp. */
bool images_image_exists(struct lxmd *d, const char *fp);

/* ---- template builds ---- */

/* Starts building ti, or with ti NULL, release (not one the templates table lists) of template
 * tpl_name; done is told the result. */
int images_build_start(struct lxmd *d, const struct template_image *ti, const char *tpl_name,
		       const char *release, struct lxm_operation *op, lxmd_image_done_fn done,
		       void *ud, struct lxm_error **err);

/* ---- requests ---- */

/* Frees q; NULL is fine. */
void images_req_free(struct image_req *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct image_req *, images_req_free)
/* A job's waiter (ud is the request, which it frees): applies it, then tells its caller. */
void images_req_done(struct lxmd *d, int result, const char *fp, const struct lxm_error *jerr,
		     void *ud);
/* A deep copy of aliases, or NULL for NULL. */
json_t *images_aliases_copy(const json_t *aliases);
