/* The image store (see images.h for the layout). Work that touches image contents runs as jobs:
 * on the thread pool (import, unpack, pack, templates) or as child processes (template builds,
 * copies, removals). Jobs that others can share carry a key (a template's build key or an image's
 * fingerprint), and later callers wait on the running job instead of starting a second one.
 *
 * Progress from the thread pool reaches operations through one uv_async_t: a worker stores its
 * figures in its job under store.lock and wakes the loop, which publishes them. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "images/archive.h"
#include "images/images.h"
#include "images/metadata.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "simplestreams.h"
#include "snapshots.h"
#include "util.h"
#include "yaml.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_image_metadata *, lxm_image_metadata_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

/* ---- templates ---- */

/* An image a template builds, and the aliases that name it. */
struct template_image {
	const char *key;     /* the build's identity: concurrent requests for it share one build */
	const char *tpl;     /* templates/<tpl>/build */
	const char *release; /* passed as --release, or NULL */
	const char *aliases[4]; /* what the image is called, the first free ones recorded */
};

static const struct template_image template_images[] = {
	{ "busybox", "busybox", NULL, { "busybox" } },
	{ "debian/bookworm", "debian", "bookworm", { "debian", "debian/12", "debian/bookworm" } },
	{ "debian/trixie", "debian", "trixie", { "debian/13", "debian/trixie" } },
};

static const struct template_image *template_image_for(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(template_images); i++)
		for (size_t k = 0; k < ARRAY_SIZE(template_images[i].aliases); k++)
			if (streq(template_images[i].aliases[k], name))
				return &template_images[i];
	return NULL;
}

/* The template that builds an image: $LXM_TEMPLATES_DIR, the source tree beside a build, or the
 * installed data directory. */
static int template_for(const char *tpl, char **ret)
{
	const char *env = getenv("LXM_TEMPLATES_DIR");
	_cleanup_free_ char *self = NULL;
	char *path = NULL;

	if (env && *env && asprintf(&path, "%s/%s/build", env, tpl) >= 0 && access(path, X_OK) == 0)
		goto found;
	free(TAKE_PTR(path));
	if (lxmd_self_dir(&self) == 0 &&
	    asprintf(&path, "%s/../../templates/%s/build", self, tpl) >= 0 &&
	    access(path, X_OK) == 0)
		goto found;
	free(TAKE_PTR(path));
	if (asprintf(&path, "%s/templates/%s/build", LXM_DATADIR, tpl) >= 0 &&
	    access(path, X_OK) == 0)
		goto found;
	free(path);
	return -ENOENT;
found:
	*ret = path;
	return 0;
}

/* ---- jobs ---- */

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

struct job {
	LIST_ENTRY(job) link;	      /* in store.jobs */
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
	/* Progress, written by the worker under store.lock. */
	char stage[48];	    /* what is being done ("unpack", "pack", a template's stage) */
	uint64_t done;	    /* bytes (or the template's units) done */
	uint64_t total;	    /* out of, 0 when unknown */
	bool dirty;	    /* changed since the loop last published it */
	int sent_percent;   /* the percent last sent to the loop, -1 for none */
	uint64_t sent_done; /* done when last sent (for unknown totals) */
};

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

struct unpack_job {
	struct job j;
	char *meta_path;   /* ROOT/images/<fp> */
	char *rootfs_path; /* ROOT/images/<fp>.rootfs, or NULL for a unified image */
	char *dest;	   /* ROOT/images/<fp>.unpacked */
};

struct fill_job {
	struct job j;
	struct lxmd *d;		  /* the daemon */
	char *instance;		  /* being filled */
	char *path;		  /* its directory */
	json_t *ctx;		  /* for its templates */
	struct lxm_operation *op; /* gets the progress, or NULL */
	lxmd_rootfs_done_fn cb;	  /* told the result */
	void *ud;		  /* for cb */
	bool ended;		  /* cb has run */
};

struct publish_job {
	struct job j;
	char *instance;			  /* its name */
	char *path;			  /* its directory */
	char *architecture;		  /* for an instance without metadata.yaml */
	enum lxm_compression compression; /* of the tarball */
	bool public;			  /* recorded */
	json_t *properties;		  /* laid over the instance's image's, or NULL */
	json_t *aliases;		  /* to create, or NULL */
	char *packfile;			  /* the tarball in progress */
	char fp[65];			  /* its sha256 */
	int64_t size;			  /* its size */
	struct lxm_image_metadata *meta;  /* what went into it */
};

struct pull_job {
	struct job j;
	char *server;			/* the image server */
	char *alias;			/* what is asked for there */
	char *certificate;		/* PEM to trust, or NULL */
	char *ca_file;			/* certificate written out for libcurl, or NULL */
	struct lxm_sstreams *ss;	/* the client */
	struct lxm_sstreams_image *img; /* what the server offers under alias */
	char *dir;			/* the download's directory, ROOT/images/.tmp-* */
};

struct defer_job {
	struct job j;
	char fp[65]; /* the answer */
};

static struct {
	struct lxmd *d;	       /* the daemon, NULL outside init ... fini */
	char *dir;	       /* ROOT/images */
	uv_async_t wake;       /* a worker has progress to publish */
	pthread_mutex_t lock;  /* guards job progress and closing against the workers */
	bool closing;	       /* fini ran (under lock): workers cancel, nobody wakes */
	LIST_HEAD(, job) jobs; /* every job not freed yet */
} store = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void job_init(struct job *j, enum job_kind kind)
{
	j->kind = kind;
	j->sent_percent = -1;
	j->work.data = j;
	TAILQ_INIT(&j->waiters);
	LIST_INSERT_HEAD(&store.jobs, j, link);
}

static void rm_tree(const char *path);

static void job_free(struct job *j)
{
	struct waiter *w;

	if (!j)
		return;
	LIST_REMOVE(j, link);
	while ((w = TAILQ_FIRST(&j->waiters))) {
		TAILQ_REMOVE(&j->waiters, w, link);
		free(w);
	}
	switch (j->kind) {
	case JOB_IMPORT: {
		struct import_job *ij = (struct import_job *)j;

		free(ij->meta_path);
		free(ij->rootfs_path);
		free(ij->filename);
		free(ij->expected_fp);
		json_decref(ij->properties);
		json_decref(ij->aliases);
		lxm_image_metadata_free(ij->meta);
		break;
	}
	case JOB_BUILD: {
		struct build_job *bj = (struct build_job *)j;

		free(bj->builddir);
		free(bj->packfile);
		free(bj->own_key);
		free(bj->own_release);
		lxm_image_metadata_free(bj->meta);
		break;
	}
	case JOB_UNPACK: {
		struct unpack_job *uj = (struct unpack_job *)j;

		free(uj->meta_path);
		free(uj->rootfs_path);
		free(uj->dest);
		break;
	}
	case JOB_FILL: {
		struct fill_job *fj = (struct fill_job *)j;

		free(fj->instance);
		free(fj->path);
		json_decref(fj->ctx);
		break;
	}
	case JOB_PUBLISH: {
		struct publish_job *pj = (struct publish_job *)j;

		free(pj->instance);
		free(pj->path);
		free(pj->architecture);
		json_decref(pj->properties);
		json_decref(pj->aliases);
		free(pj->packfile);
		lxm_image_metadata_free(pj->meta);
		break;
	}
	case JOB_PULL: {
		struct pull_job *pj = (struct pull_job *)j;

		free(pj->server);
		free(pj->alias);
		free(pj->certificate);
		if (pj->ca_file)
			unlink(pj->ca_file);
		free(pj->ca_file);
		lxm_sstreams_free(pj->ss);
		lxm_sstreams_image_free(pj->img);
		if (pj->dir)
			rm_tree(pj->dir);
		free(pj->dir);
		break;
	}
	case JOB_DEFER:
		break;
	}
	lxm_error_free(j->err);
	free(j->key);
	free(j);
}

static int job_wait(struct job *j, struct lxm_operation *op, lxmd_image_done_fn done, void *ud)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->op = op;
	w->done = done;
	w->ud = ud;
	TAILQ_INSERT_TAIL(&j->waiters, w, link);
	return 0;
}

static void job_flush(struct job *j);

/* Tells every waiter the result; they may start or end other jobs. The last stage the worker
 * reported goes out first: uv_async_send() coalesces, so its wake-up may not have run yet. */
static void job_notify(struct job *j, int result, const char *fp, const struct lxm_error *err)
{
	struct waiter *w;

	job_flush(j);
	while ((w = TAILQ_FIRST(&j->waiters))) {
		TAILQ_REMOVE(&j->waiters, w, link);
		if (w->done)
			w->done(store.d, result, result < 0 ? NULL : fp, err, w->ud);
		free(w);
	}
}

static struct job *job_find(enum job_kind kind, const char *key)
{
	struct job *j;

	LIST_FOREACH(j, &store.jobs, link)
	if (j->kind == kind && !j->cancelled && streq(j->key, key))
		return j;
	return NULL;
}

/* ---- progress ---- */

static json_t *progress_json(const char *stage, uint64_t done, uint64_t total)
{
	int percent = total ? (int)(done >= total ? 100 : done * 100 / total) : 0;

	return json_pack("{s:{s:s, s:I, s:I, s:i}}", "progress", "stage", stage, "done",
			 (json_int_t)done, "total", (json_int_t)total, "percent", percent);
}

static void op_progress(struct lxm_operation *op, const char *stage, uint64_t done, uint64_t total)
{
	json_t *m;

	if (op && (m = progress_json(stage, done, total)))
		lxm_operation_set_metadata(op, m);
}

static void job_publish(struct job *j, const char *stage, uint64_t done, uint64_t total)
{
	struct waiter *w;

	TAILQ_FOREACH(w, &j->waiters, link)
	op_progress(w->op, stage, done, total);
	if (j->kind == JOB_FILL)
		op_progress(((struct fill_job *)j)->op, stage, done, total);
}

/* Called by workers (lxm_progress_fn): stores the figures and wakes the loop when the percent
 * moved (or every 16 MiB when the total is unknown). Cancels the work once lxmd is closing. */
static int work_progress(uint64_t done, uint64_t total, void *ud)
{
	struct job *j = ud;
	bool closing;

	pthread_mutex_lock(&store.lock);
	closing = store.closing;
	if (!closing) {
		int percent = total ? (int)(done >= total ? 100 : done * 100 / total) : -1;
		bool moved = total ? percent != j->sent_percent
				   : done - j->sent_done >= 16 * 1024 * 1024;

		j->done = done;
		j->total = total;
		if (moved) {
			j->sent_percent = percent;
			j->sent_done = done;
			j->dirty = true;
			uv_async_send(&store.wake);
		}
	}
	pthread_mutex_unlock(&store.lock);
	return closing ? 1 : 0;
}

static void work_stage(struct job *j, const char *stage)
{
	pthread_mutex_lock(&store.lock);
	snprintf(j->stage, sizeof(j->stage), "%s", stage);
	j->done = j->total = 0;
	j->sent_percent = -1;
	j->sent_done = 0;
	j->dirty = true;
	if (!store.closing)
		uv_async_send(&store.wake);
	pthread_mutex_unlock(&store.lock);
}

/* Publishes what the worker reported since the last publication. */
static void job_flush(struct job *j)
{
	char stage[sizeof(j->stage)];
	uint64_t done, total;
	bool dirty;

	pthread_mutex_lock(&store.lock);
	dirty = j->dirty;
	j->dirty = false;
	memcpy(stage, j->stage, sizeof(stage));
	done = j->done;
	total = j->total;
	pthread_mutex_unlock(&store.lock);
	if (dirty && !j->cancelled)
		job_publish(j, stage, done, total);
}

static void on_wake(uv_async_t *a)
{
	struct job *j;

	LIST_FOREACH(j, &store.jobs, link)
	job_flush(j);
}

/* ---- files ---- */

static int store_path(const char *fp, const char *suffix, char **ret)
{
	return asprintf(ret, "%s/%s%s", store.dir, fp, suffix) < 0 ? -ENOMEM : 0;
}

/* A fresh name for work in progress: ROOT/images/.tmp-<random><suffix>. */
static int tmp_path(const char *suffix, char **ret)
{
	char rnd[17];
	int k = lxm_random_hex(rnd, 8);

	if (k < 0)
		return k;
	return asprintf(ret, "%s/.tmp-%s%s", store.dir, rnd, suffix) < 0 ? -ENOMEM : 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (remove(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* Removes a file or tree from a worker thread; a missing one is fine. */
static void rm_tree(const char *path)
{
	if (path)
		nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* Removes a file or tree from the loop thread: renamed out of the way at once (so the name is
 * free again), then removed by a child process. */
static void discard(const char *path)
{
	_cleanup_free_ char *trash = NULL;
	const char *victim = path;
	char *argv[5];

	if (access(path, F_OK) < 0)
		return;
	if (tmp_path("-trash", &trash) == 0 && rename(path, trash) == 0)
		victim = trash;
	argv[0] = (char *)"/bin/rm";
	argv[1] = (char *)"-rf";
	argv[2] = (char *)"--one-file-system";
	argv[3] = (char *)victim;
	argv[4] = NULL;
	if (lxmd_child_run(store.d->loop, argv, NULL, NULL) < 0)
		log_warn("image store: could not start removing %s", victim);
}

static bool is_fingerprint_prefix(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* Kernel names for the architectures Debian spells its own way. */
static const char *arch_name(const char *a)
{
	static const char *const map[][2] = {
		{ "amd64", "x86_64" }, { "arm64", "aarch64" },	 { "i386", "i686" },
		{ "armhf", "armv7l" }, { "ppc64el", "ppc64le" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (streq(a, map[i][0]))
			return map[i][1];
	return a;
}

static int64_t file_size(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Unpacks an image's file(s) into dest (which must not exist), from a worker. */
static int unpack_files(const char *meta, const char *rootfs, const char *dest, struct job *j,
			struct lxm_error **err)
{
	_cleanup_free_ char *half = NULL, *from = NULL, *to = NULL;
	int k;

	work_stage(j, "unpack");
	if (!rootfs)
		return lxm_archive_unpack(meta, LXM_ARCHIVE_UNIFIED, dest, work_progress, j, err);
	k = lxm_archive_unpack(meta, LXM_ARCHIVE_METADATA, dest, NULL, NULL, err);
	if (k < 0)
		return k;
	/* The rootfs half lands in <half>/rootfs, which then moves beside metadata.yaml. */
	if (asprintf(&half, "%s-rootfs", dest) < 0 || asprintf(&from, "%s/rootfs", half) < 0 ||
	    asprintf(&to, "%s/rootfs", dest) < 0) {
		rm_tree(dest);
		return lxm_error_set(err, -ENOMEM, 500, "unpack: out of memory");
	}
	k = lxm_archive_unpack(rootfs, LXM_ARCHIVE_ROOTFS, half, work_progress, j, err);
	if (k >= 0 && rename(from, to) < 0)
		k = lxm_error_setx(err, -errno, 500, "unpack: move %s to %s", from, to);
	rm_tree(half);
	if (k < 0)
		rm_tree(dest);
	return k;
}

/* ---- the database ---- */

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

/* The alias names in aliases that exist already: 409 naming the first. */
static int check_aliases_free(struct lxmd *d, const json_t *aliases, struct lxm_error **err)
{
	json_t *a;
	size_t i;

	json_array_foreach (aliases, i, a) {
		const char *name = json_string_value(json_object_get(a, "name"));
		struct lxm_db_image_alias *found = NULL;

		if (!name || !*name)
			return lxm_error_set(err, -EINVAL, 400, "alias %zu has no name", i);
		if (lxm_db_image_alias_get(d->db, name, &found, NULL) == 0) {
			lxm_db_image_alias_free(found);
			return lxm_error_set(err, -EEXIST, 409, "alias '%s' already exists", name);
		}
	}
	return 0;
}

/* aliases is NULL or an array of objects with a non-empty "name". */
static int check_aliases_valid(const json_t *aliases, struct lxm_error **err)
{
	json_t *a;
	size_t i;

	if (aliases && !json_is_array(aliases))
		return lxm_error_set(err, -EINVAL, 400, "aliases must be an array");
	json_array_foreach (aliases, i, a) {
		const char *name = json_string_value(json_object_get(a, "name"));

		if (!name || !*name)
			return lxm_error_set(err, -EINVAL, 400, "alias %zu has no name", i);
	}
	return 0;
}

static int record_image(struct lxmd *d, const struct record *rec, struct lxm_error **err)
{
	_cleanup_json_ json_t *props = NULL;
	struct lxm_db_image img = { 0 };
	json_t *a, *v;
	const char *key;
	size_t i;
	int k;

	props = json_deep_copy(rec->meta->properties);
	if (!props)
		return lxm_error_set(err, -ENOMEM, 500, "record image: out of memory");
	json_object_foreach ((json_t *)rec->properties, key, v)
		json_object_set(props, key, v);
	img.fingerprint = (char *)rec->fp;
	img.filename = (char *)(rec->filename ? rec->filename : "");
	img.size = rec->size;
	img.public = rec->public;
	img.architecture = (char *)arch_name(rec->meta->architecture);
	img.type = (char *)"container";
	img.created_at = rec->meta->creation_date;
	img.uploaded_at = lxm_now_ns() / 1000000000LL;
	img.expires_at = rec->meta->expiry_date;
	img.properties = props;

	k = lxm_db_begin(d->db, err);
	if (k < 0)
		return k;
	k = lxm_db_image_create(d->db, &img, err);
	json_array_foreach ((json_t *)rec->aliases, i, a) {
		const char *name = json_string_value(json_object_get(a, "name"));
		const char *desc = json_string_value(json_object_get(a, "description"));
		struct lxm_db_image_alias *found = NULL;

		if (k < 0)
			break;
		if (!name || !*name) {
			k = lxm_error_set(err, -EINVAL, 400, "alias %zu has no name", i);
			break;
		}
		if (rec->only_free_aliases &&
		    lxm_db_image_alias_get(d->db, name, &found, NULL) == 0) {
			lxm_db_image_alias_free(found);
			continue;
		}
		k = lxm_db_image_alias_create(d->db, name, rec->fp, desc ? desc : "", err);
	}
	if (k >= 0)
		return lxm_db_commit(d->db, err);
	lxm_db_rollback(d->db, NULL);
	return k;
}

static bool image_exists(struct lxmd *d, const char *fp)
{
	struct lxm_db_image *img = NULL;

	if (lxm_db_image_get(d->db, fp, &img, NULL) < 0)
		return false;
	lxm_db_image_free(img);
	return true;
}

/* ---- init / fini ---- */

/* A store entry name: "<fp>", "<fp>.rootfs" or "<fp>.unpacked"; sets fp. */
static bool store_entry(const char *name, char fp[static 65])
{
	size_t n = strlen(name);

	if (n < 64 || !is_fingerprint_prefix(strndupa(name, 64)))
		return false;
	if (n != 64 && !streq(name + 64, ".rootfs") && !streq(name + 64, ".unpacked"))
		return false;
	memcpy(fp, name, 64);
	fp[64] = '\0';
	return true;
}

int lxmd_images_init(struct lxmd *d, struct lxm_error **err)
{
	_cleanup_(closedirp) DIR *dir = NULL;
	struct dirent *de;
	int k;

	free(TAKE_PTR(store.dir));
	if (asprintf(&store.dir, "%s/images", d->cfg.root) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "image store: out of memory");
	k = lxm_mkdir_p(store.dir, 0700);
	if (k < 0) {
		lxm_error_setx(err, k, 500, "image store: create %s", store.dir);
		goto fail;
	}
	k = uv_async_init(d->loop, &store.wake, on_wake);
	if (k < 0) {
		lxm_error_set(err, k, 500, "image store: %s", uv_strerror(k));
		goto fail;
	}
	store.d = d;
	store.closing = false;
	LIST_INIT(&store.jobs);

	/* Work an earlier lxmd did not finish, and files the database does not know (a crash
	 * between moving them in and recording them). */
	dir = opendir(store.dir);
	if (!dir) {
		k = lxm_error_setx(err, -errno, 500, "image store: read %s", store.dir);
		lxmd_images_fini(d);
		return k;
	}
	while ((de = readdir(dir))) {
		_cleanup_free_ char *path = NULL;
		char fp[65];

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (!startswith(de->d_name, ".tmp-") && !startswith(de->d_name, ".build-") &&
		    !(store_entry(de->d_name, fp) && !image_exists(d, fp)))
			continue;
		if (asprintf(&path, "%s/%s", store.dir, de->d_name) < 0)
			continue;
		log_info("image store: removing leftover %s", path);
		discard(path);
	}
	return 0;
fail:
	free(TAKE_PTR(store.dir));
	return k;
}

static void defer_closed(uv_handle_t *h)
{
	job_free(h->data);
}

/* Ends a job for lxmd's shutdown: its waiters hear -ECANCELED now; callbacks still due only
 * free it. */
static void job_abandon(struct job *j)
{
	_cleanup_error_ struct lxm_error *err = NULL;

	j->cancelled = true;
	lxm_error_set(&err, -ECANCELED, 503, "lxmd is shutting down");
	if (j->child)
		lxmd_child_kill(j->child, SIGTERM);
	if (j->kind == JOB_FILL) {
		struct fill_job *fj = (struct fill_job *)j;

		if (!fj->ended) {
			fj->ended = true;
			fj->cb(store.d, fj->instance, -ECANCELED, err, fj->ud);
		}
	}
	job_notify(j, -ECANCELED, NULL, err);
	if (j->kind == JOB_DEFER) {
		uv_timer_stop(&j->timer);
		uv_close((uv_handle_t *)&j->timer, defer_closed);
		return;
	}
	if (!j->pending)
		job_free(j);
}

void lxmd_images_fini(struct lxmd *d)
{
	struct job *j;

	if (!store.d)
		return;
	pthread_mutex_lock(&store.lock);
	store.closing = true;
	pthread_mutex_unlock(&store.lock);
	uv_close((uv_handle_t *)&store.wake, NULL);
	/* Abandoning one job can end others (fills waiting for an unpack): start over each time. */
	for (;;) {
		LIST_FOREACH(j, &store.jobs, link)
		if (!j->cancelled)
			break;
		if (!j)
			break;
		job_abandon(j);
	}
	store.d = NULL;
	/* store.dir stays: workers of abandoned jobs may still be using it. */
}

/* ---- resolve / ensure ---- */

int lxmd_image_resolve(struct lxmd *d, const char *name, char **ret_fp, struct lxm_error **err)
{
	_cleanup_(lxm_db_image_alias_freep) struct lxm_db_image_alias *alias = NULL;
	_cleanup_error_ struct lxm_error *aerr = NULL;
	_cleanup_free_ char *lower = NULL;
	int k;

	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400, "image name is empty");
	k = lxm_db_image_alias_get(d->db, name, &alias, &aerr);
	if (k == 0) {
		*ret_fp = strdup(alias->target);
		return *ret_fp ? 0 : -ENOMEM;
	}
	if (aerr && aerr->status != 404)
		return lxm_error_set(err, k, aerr->status, "image '%s': %s", name, aerr->msg);
	if (!is_fingerprint_prefix(name))
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found", name);
	lower = strdup(name);
	if (!lower)
		return -ENOMEM;
	for (char *p = lower; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return lxm_db_image_resolve_prefix(d->db, lower, ret_fp, err);
}

bool lxmd_image_known(struct lxmd *d, const char *name)
{
	_cleanup_free_ char *fp = NULL, *tpl = NULL;
	const struct template_image *ti;

	if (lxmd_image_resolve(d, name, &fp, NULL) == 0)
		return true;
	ti = template_image_for(name);
	return ti && template_for(ti->tpl, &tpl) == 0;
}

static void defer_fire(uv_timer_t *t)
{
	struct defer_job *dj = t->data;

	/* Done: lxmd_images_fini must not close the timer a second time. */
	dj->j.cancelled = true;
	job_notify(&dj->j, 0, dj->fp, NULL);
	uv_close((uv_handle_t *)t, defer_closed);
}

static int defer_result(struct lxmd *d, const char *fp, struct lxm_operation *op,
			lxmd_image_done_fn done, void *ud)
{
	struct defer_job *dj = calloc(1, sizeof(*dj));

	if (!dj)
		return -ENOMEM;
	job_init(&dj->j, JOB_DEFER);
	snprintf(dj->fp, sizeof(dj->fp), "%s", fp);
	if (job_wait(&dj->j, op, done, ud) < 0) {
		job_free(&dj->j);
		return -ENOMEM;
	}
	uv_timer_init(d->loop, &dj->j.timer);
	dj->j.timer.data = dj;
	dj->j.pending = true;
	uv_timer_start(&dj->j.timer, defer_fire, 0, 0);
	return 0;
}

static void build_failed(struct build_job *bj, struct lxm_error *err);

static void build_record(uv_work_t *w, int status)
{
	struct build_job *bj = w->data;
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *filename = NULL, *path = NULL;
	struct lxmd *d = store.d;
	json_t *aliases;
	int k;

	bj->j.pending = false;
	if (bj->j.cancelled) {
		job_free(&bj->j);
		return;
	}
	if (bj->j.result < 0) {
		build_failed(bj, TAKE_PTR(bj->j.err));
		return;
	}
	if (bj->existing && image_exists(d, bj->fp)) {
		log_info("image '%s' built: %s, already in the store", bj->ti->key, bj->fp);
		job_notify(&bj->j, 0, bj->fp, NULL);
		job_free(&bj->j);
		return;
	}
	aliases = json_array();
	for (size_t i = 0; i < ARRAY_SIZE(bj->ti->aliases) && bj->ti->aliases[i]; i++)
		json_array_append_new(aliases, json_pack("{s:s, s:s}", "name", bj->ti->aliases[i],
							 "description", ""));
	if (asprintf(&filename, "%s.tar.zst", bj->ti->key) < 0)
		filename = NULL;
	for (char *p = filename; p && *p; p++)
		if (*p == '/')
			*p = '-';
	k = record_image(d,
			 &(struct record){ .fp = bj->fp,
					   .meta = bj->meta,
					   .filename = filename,
					   .size = bj->size,
					   .aliases = aliases,
					   .only_free_aliases = true },
			 &err);
	json_decref(aliases);
	if (k < 0) {
		lxm_error_prefix(&err, "image '%s': record it", bj->ti->key);
		/* Its files are in place already: take them out again. */
		if (store_path(bj->fp, "", &path) == 0)
			discard(path);
		free(TAKE_PTR(path));
		if (store_path(bj->fp, ".unpacked", &path) == 0)
			discard(path);
		build_failed(bj, TAKE_PTR(err));
		return;
	}
	/* Refreshing it means building it again. */
	k = lxm_db_image_source_set(d->db, bj->fp,
				    &(struct lxm_db_image_source){ .server = (char *)"",
								   .protocol = (char *)"template",
								   .alias = (char *)bj->ti->key,
								   .certificate = (char *)"" },
				    &err);
	if (k < 0)
		log_warn("image '%s': %s", bj->ti->key, err ? err->msg : "record its source");
	log_info("image '%s' built: %s", bj->ti->key, bj->fp);
	job_notify(&bj->j, 0, bj->fp, NULL);
	job_free(&bj->j);
}

/* The thread pool's half of a build: packs the template's output into the store. */
static void build_pack(uv_work_t *w)
{
	struct build_job *bj = w->data;
	_cleanup_free_ char *yaml_path = NULL, *text = NULL, *tpl_dir = NULL, *rootfs = NULL;
	_cleanup_free_ char *dest = NULL, *unpacked = NULL;
	struct lxm_error **err = &bj->j.err;
	struct stat st;
	size_t len = 0;
	int k;

	if (asprintf(&yaml_path, "%s/metadata.yaml", bj->builddir) < 0 ||
	    asprintf(&tpl_dir, "%s/templates", bj->builddir) < 0 ||
	    asprintf(&rootfs, "%s/rootfs", bj->builddir) < 0) {
		bj->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		return;
	}
	k = lxm_read_file(yaml_path, &text, &len);
	if (k < 0) {
		bj->j.result = lxm_error_setx(err, k, 500, "read %s", yaml_path);
		return;
	}
	k = lxm_image_metadata_parse(text, len, &bj->meta, err);
	if (k < 0) {
		bj->j.result = k;
		return;
	}
	work_stage(&bj->j, "pack");
	/* zstd: the tarball is only kept for export, and zstd packs a rootfs several times faster
	 * than gzip at a similar size, which is most of a first launch's wait after the build. */
	k = lxm_archive_pack(&(struct lxm_pack_source){ .metadata_yaml = text,
							.templates_dir = stat(tpl_dir, &st) == 0
										 ? tpl_dir
										 : NULL,
							.rootfs_dir = rootfs },
			     bj->packfile, LXM_COMPRESS_ZSTD, bj->fp, work_progress, &bj->j, err);
	if (k < 0) {
		bj->j.result = lxm_error_prefix(err, "pack");
		return;
	}
	bj->size = file_size(bj->packfile);
	if (asprintf(&dest, "%s/%s", store.dir, bj->fp) < 0 ||
	    asprintf(&unpacked, "%s.unpacked", dest) < 0) {
		bj->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		return;
	}
	/* The same image again (a rebuild that changed nothing): the store has it. */
	if (access(dest, F_OK) == 0) {
		bj->existing = true;
		rm_tree(bj->builddir);
		unlink(bj->packfile);
		bj->j.result = 0;
		return;
	}
	/* The build directory is the unpacked tree already: instances are filled from it. */
	rm_tree(unpacked);
	if (rename(bj->builddir, unpacked) < 0) {
		bj->j.result =
			lxm_error_setx(err, -errno, 500, "move %s to %s", bj->builddir, unpacked);
		return;
	}
	if (rename(bj->packfile, dest) < 0) {
		bj->j.result =
			lxm_error_setx(err, -errno, 500, "move %s to %s", bj->packfile, dest);
		rename(unpacked, bj->builddir);
		return;
	}
	bj->j.result = 0;
}

static void build_failed(struct build_job *bj, struct lxm_error *err)
{
	log_error("%s", err ? err->msg : "image build failed");
	job_notify(&bj->j, err ? -err->errnum : -EIO, NULL, err);
	lxm_error_free(err);
	if (bj->builddir)
		discard(bj->builddir);
	if (bj->packfile)
		discard(bj->packfile);
	job_free(&bj->j);
}

/* The last non-empty line of a helper's stderr: where it says why it failed. */
static const char *last_line(const char *text, char *buf, size_t size)
{
	const char *end = text + strlen(text), *start;

	while (end > text && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	start = end;
	while (start > text && start[-1] != '\n')
		start--;
	snprintf(buf, size, "%.*s", (int)(end - start), start);
	return buf;
}

static void build_exited(int status, const char *out, const char *errout, void *ud)
{
	struct build_job *bj = ud;
	struct lxm_error *err = NULL;
	char why[512];
	int k;

	bj->j.child = NULL;
	bj->j.pending = false;
	if (bj->j.cancelled) {
		job_free(&bj->j);
		return;
	}
	if (status != 0) {
		log_error("image '%s': template output:\n%s", bj->ti->key, errout);
		/* A release lxmd does not know, refused by the template before it began: the
		 * request was wrong, and the template's message says why. */
		if (bj->ti == &bj->own && !bj->staged)
			lxm_error_set(&err, -EINVAL, 400, "image '%s': %s", bj->ti->key,
				      last_line(errout, why, sizeof(why)));
		else
			lxm_error_set(&err, -EIO, 500,
				      "image '%s': template build failed (exit status %d): %s",
				      bj->ti->key, status, last_line(errout, why, sizeof(why)));
		build_failed(bj, err);
		return;
	}
	k = uv_queue_work(store.d->loop, &bj->j.work, build_pack, build_record);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "image '%s': queue packing: %s", bj->ti->key,
			      uv_strerror(k));
		build_failed(bj, err);
		return;
	}
	bj->j.pending = true;
}

/* A template's stdout: "stage: NAME" and "progress: DONE TOTAL" go to the waiting operations,
 * the rest to the debug log. */
static void build_line(const char *line, void *ud)
{
	struct build_job *bj = ud;
	unsigned long long done, total;

	if (bj->j.cancelled)
		return;
	if (startswith(line, "stage: ")) {
		bj->staged = true;
		snprintf(bj->j.stage, sizeof(bj->j.stage), "%s", line + 7);
		bj->j.done = bj->j.total = 0;
		bj->j.sent_percent = -1;
		log_info("image '%s': %s", bj->ti->key, line);
		job_publish(&bj->j, bj->j.stage, 0, 0);
	} else if (sscanf(line, "progress: %llu %llu", &done, &total) == 2) {
		int percent = total ? (int)(done >= total ? 100 : done * 100 / total) : -1;

		if (percent == bj->j.sent_percent)
			return;
		bj->j.sent_percent = percent;
		job_publish(&bj->j, bj->j.stage, done, total);
	} else {
		log_debug("image '%s': %s", bj->ti->key, line);
	}
}

/* Starts building ti, or with ti NULL, release (not one template_images lists) of template
 * tpl. */
static int build_start(struct lxmd *d, const struct template_image *ti, const char *tpl_name,
		       const char *release, struct lxm_operation *op, lxmd_image_done_fn done,
		       void *ud, struct lxm_error **err)
{
	_cleanup_free_ char *tpl = NULL;
	struct build_job *bj;
	char *argv[5];
	char rnd[17];
	int k;

	if (template_for(ti ? ti->tpl : tpl_name, &tpl) < 0)
		return lxm_error_set(err, -ENOENT, 404,
				     "image '%s' not found (its template '%s' is not installed)",
				     ti ? ti->key : tpl_name, ti ? ti->tpl : tpl_name);
	bj = calloc(1, sizeof(*bj));
	if (!bj)
		return -ENOMEM;
	job_init(&bj->j, JOB_BUILD);
	bj->ti = ti;
	if (!ti) {
		bj->ti = &bj->own;
		if (asprintf(&bj->own_key, "%s/%s", tpl_name, release) < 0 ||
		    !(bj->own_release = strdup(release))) {
			bj->own_key = NULL;
			job_free(&bj->j);
			return lxm_error_set(err, -ENOMEM, 500, "image: out of memory");
		}
		bj->own = (struct template_image){ .key = bj->own_key,
						   .tpl = tpl_name,
						   .release = bj->own_release };
		ti = bj->ti;
	}
	if (!(bj->j.key = strdup(ti->key)) || lxm_random_hex(rnd, 8) < 0 ||
	    asprintf(&bj->builddir, "%s/.build-%s", store.dir, rnd) < 0 ||
	    tmp_path(".tar.zst", &bj->packfile) < 0 || job_wait(&bj->j, op, done, ud) < 0) {
		job_free(&bj->j);
		return lxm_error_set(err, -ENOMEM, 500, "image '%s': out of memory", ti->key);
	}
	snprintf(bj->j.stage, sizeof(bj->j.stage), "build");
	argv[0] = tpl;
	argv[1] = bj->builddir;
	argv[2] = ti->release ? (char *)"--release" : NULL;
	argv[3] = (char *)ti->release;
	argv[4] = NULL;
	log_info("image '%s': building it with %s", ti->key, tpl);
	k = lxmd_child_run_lines(d->loop, argv, build_line, build_exited, bj, &bj->j.child);
	if (k < 0) {
		/* The waiter is the caller, told through err: not called back. */
		job_free(&bj->j);
		return lxm_error_set(err, k, 500, "image '%s': run %s: %s", ti->key, tpl,
				     uv_strerror(k));
	}
	bj->j.pending = true;
	op_progress(op, "build", 0, 0);
	return 0;
}

int lxmd_image_ensure(struct lxmd *d, const char *name, struct lxm_operation *op,
		      lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	_cleanup_error_ struct lxm_error *rerr = NULL;
	_cleanup_free_ char *fp = NULL;
	const struct template_image *ti;
	struct job *j;
	int k;

	k = lxmd_image_resolve(d, name, &fp, &rerr);
	if (k == 0) {
		k = defer_result(d, fp, op, done, ud);
		return k < 0 ? lxm_error_set(err, k, 500, "image '%s': out of memory", name) : 0;
	}
	ti = template_image_for(name);
	if (!ti || !rerr || rerr->status != 404) {
		if (err && !*err)
			*err = TAKE_PTR(rerr);
		return k;
	}
	j = job_find(JOB_BUILD, ti->key);
	if (j) {
		log_info("image '%s': waiting for the build in progress", name);
		if (job_wait(j, op, done, ud) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "image '%s': out of memory", name);
		op_progress(op, j->stage, 0, 0);
		return 0;
	}
	return build_start(d, ti, NULL, NULL, op, done, ud, err);
}

/* ---- import ---- */

static void import_end(struct import_job *ij, int result, struct lxm_error *err)
{
	if (result < 0) {
		/* The files are consumed on every path. */
		unlink(ij->meta_path);
		if (ij->rootfs_path)
			unlink(ij->rootfs_path);
	}
	job_notify(&ij->j, result, ij->fp, err);
	lxm_error_free(err);
	job_free(&ij->j);
}

/* First stage, thread pool: metadata.yaml and the fingerprint. */
static void import_hash(uv_work_t *w)
{
	struct import_job *ij = w->data;
	struct lxm_error **err = &ij->j.err;
	_cleanup_free_ char *text = NULL;
	const char *paths[2] = { ij->meta_path, ij->rootfs_path };
	size_t len = 0;
	int k;

	work_stage(&ij->j, "verify");
	k = lxm_archive_read_metadata(ij->meta_path, &text, &len, err);
	if (k >= 0)
		k = lxm_image_metadata_parse(text, len, &ij->meta, err);
	if (k >= 0)
		k = lxm_sha256_files(paths, ij->rootfs_path ? 2 : 1, ij->fp, err);
	if (k >= 0 && ij->expected_fp && strcasecmp(ij->expected_fp, ij->fp) != 0)
		k = lxm_error_set(err, -EINVAL, 400,
				  "fingerprint mismatch: the upload's sha256 is %s, not %s", ij->fp,
				  ij->expected_fp);
	ij->size = file_size(ij->meta_path) + file_size(ij->rootfs_path);
	ij->j.result = k;
}

/* Second stage, thread pool: the whole content checked by unpacking it, then moved in. */
static void import_unpack(uv_work_t *w)
{
	struct import_job *ij = w->data;
	struct lxm_error **err = &ij->j.err;
	_cleanup_free_ char *tmp = NULL, *dest = NULL, *rootfs = NULL, *unpacked = NULL;
	int k;

	if (tmp_path("", &tmp) < 0 || asprintf(&dest, "%s/%s", store.dir, ij->fp) < 0 ||
	    asprintf(&rootfs, "%s.rootfs", dest) < 0 ||
	    asprintf(&unpacked, "%s.unpacked", dest) < 0) {
		ij->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		return;
	}
	k = unpack_files(ij->meta_path, ij->rootfs_path, tmp, &ij->j, err);
	if (k < 0) {
		ij->j.result = lxm_error_prefix(err, "unpack");
		return;
	}
	/* The fingerprint is claimed (not in the database, no other import of it): anything under
	 * its names is a leftover. */
	rm_tree(unpacked);
	if (rename(tmp, unpacked) < 0) {
		k = lxm_error_setx(err, -errno, 500, "move %s to %s", tmp, unpacked);
		rm_tree(tmp);
	} else if (rename(ij->meta_path, dest) < 0) {
		k = lxm_error_setx(err, -errno, 500, "move %s to %s", ij->meta_path, dest);
	} else if (ij->rootfs_path && rename(ij->rootfs_path, rootfs) < 0) {
		k = lxm_error_setx(err, -errno, 500, "move %s to %s", ij->rootfs_path, rootfs);
		rename(dest, ij->meta_path);
	}
	if (k < 0)
		rm_tree(unpacked);
	ij->j.result = k;
}

static void import_recorded(struct import_job *ij)
{
	_cleanup_free_ char *dest = NULL, *rootfs = NULL, *unpacked = NULL;
	struct lxm_error *err = NULL;
	int k;

	k = record_image(store.d,
			 &(struct record){ .fp = ij->fp,
					   .meta = ij->meta,
					   .filename = ij->filename,
					   .size = ij->size,
					   .public = ij->public,
					   .properties = ij->properties,
					   .aliases = ij->aliases },
			 &err);
	if (k < 0) {
		lxm_error_prefix(&err, "import image %s", ij->fp);
		if (store_path(ij->fp, "", &dest) == 0)
			discard(dest);
		if (store_path(ij->fp, ".rootfs", &rootfs) == 0)
			discard(rootfs);
		if (store_path(ij->fp, ".unpacked", &unpacked) == 0)
			discard(unpacked);
		/* Already moved: nothing left at the spool paths. */
		import_end(ij, k, err);
		return;
	}
	log_info("image %s imported (%s)", ij->fp, ij->filename);
	import_end(ij, 0, NULL);
}

static void import_after(uv_work_t *w, int status)
{
	struct import_job *ij = w->data;
	struct lxm_error *err = NULL;
	struct job *other;
	int k;

	ij->j.pending = false;
	if (ij->j.cancelled) {
		unlink(ij->meta_path);
		if (ij->rootfs_path)
			unlink(ij->rootfs_path);
		job_free(&ij->j);
		return;
	}
	if (ij->j.result < 0) {
		err = TAKE_PTR(ij->j.err);
		lxm_error_prefix(&err, "import image%s%s", *ij->filename ? " " : "", ij->filename);
		import_end(ij, ij->j.result, err);
		return;
	}
	if (ij->hashed) {
		import_recorded(ij);
		return;
	}
	ij->hashed = true;
	/* Claim the fingerprint before the expensive stage: the store or another import may have
	 * it already. */
	other = job_find(JOB_IMPORT, ij->fp);
	if (image_exists(store.d, ij->fp) || other) {
		lxm_error_set(&err, -EEXIST, 409, "image %s already exists", ij->fp);
		import_end(ij, -EEXIST, err);
		return;
	}
	if (check_aliases_free(store.d, ij->aliases, &err) < 0) {
		lxm_error_prefix(&err, "import image %s", ij->fp);
		import_end(ij, -EEXIST, err);
		return;
	}
	ij->j.key = strdup(ij->fp);
	k = ij->j.key ? uv_queue_work(store.d->loop, &ij->j.work, import_unpack, import_after)
		      : -ENOMEM;
	if (k < 0) {
		lxm_error_set(&err, k, 500, "import image %s: queue work: %s", ij->fp,
			      uv_strerror(k));
		import_end(ij, k, err);
		return;
	}
	ij->j.pending = true;
}

int lxmd_image_import(struct lxmd *d, const struct lxmd_image_import *imp, struct lxm_operation *op,
		      lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	struct import_job *ij = calloc(1, sizeof(*ij));
	int k;

	if (!ij) {
		k = -ENOMEM;
		goto consumed;
	}
	job_init(&ij->j, JOB_IMPORT);
	ij->public = imp->public;
	if (!(ij->meta_path = strdup(imp->meta_path)) ||
	    (imp->rootfs_path && !(ij->rootfs_path = strdup(imp->rootfs_path))) ||
	    !(ij->filename = strdup(imp->filename ? imp->filename : "")) ||
	    (imp->expected_fp && *imp->expected_fp &&
	     !(ij->expected_fp = strdup(imp->expected_fp))) ||
	    job_wait(&ij->j, op, done, ud) < 0) {
		job_free(&ij->j);
		k = -ENOMEM;
		goto consumed;
	}
	ij->properties = imp->properties ? json_deep_copy(imp->properties) : NULL;
	ij->aliases = imp->aliases ? json_deep_copy(imp->aliases) : NULL;
	/* Taken aliases fail now rather than after the upload was hashed and unpacked. */
	k = check_aliases_free(d, ij->aliases, err);
	if (k < 0) {
		job_free(&ij->j);
		lxm_error_prefix(err, "import image");
		goto consumed_err;
	}
	k = uv_queue_work(d->loop, &ij->j.work, import_hash, import_after);
	if (k < 0) {
		job_free(&ij->j);
		lxm_error_set(err, k, 500, "import image: queue work: %s", uv_strerror(k));
		goto consumed_err;
	}
	ij->j.pending = true;
	op_progress(op, "verify", 0, 0);
	return 0;
consumed:
	lxm_error_set(err, k, 500, "import image: out of memory");
consumed_err:
	unlink(imp->meta_path);
	if (imp->rootfs_path)
		unlink(imp->rootfs_path);
	return k;
}

/* ---- fill ---- */

static void fill_end(struct fill_job *fj, int result, struct lxm_error *err)
{
	struct lxmd *d = store.d;

	if (result < 0) {
		lxm_error_prefix(&err, "fill rootfs from image %.12s", fj->j.key);
		log_error("instance '%s': %s", fj->instance, err ? err->msg : "fill failed");
	} else {
		lxm_db_image_touch(d->db, fj->j.key, lxm_now_ns() / 1000000000LL, NULL);
	}
	job_flush(&fj->j);
	fj->ended = true;
	fj->cb(d, fj->instance, result, err, fj->ud);
	lxm_error_free(err);
	job_free(&fj->j);
}

/* Thread pool: metadata.yaml and templates/ beside the rootfs (publish packs them again), then
 * the image's "create" templates applied to the new rootfs. */

/* A new instance must not share the machine id of the instance its image was published from
 * (systemd derives its DHCP client id and more from it): an empty /etc/machine-id makes systemd
 * make a new one at first boot. Anything but a regular file there is left alone. */
static int reset_machine_id(const char *rootfs, struct lxm_error **err)
{
	_cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (rootfd < 0)
		return lxm_error_setx(err, -errno, 500, "reset /etc/machine-id: open %s", rootfs);
	/* Non-blocking: a fifo planted there must not hang the worker. */
	fd = lxm_openat2(rootfd, "etc/machine-id", O_WRONLY | O_NOFOLLOW | O_NONBLOCK, 0,
			 RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
	if (fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR || fd == -ENXIO || fd == -EISDIR)
		return 0;
	if (fd < 0)
		return lxm_error_setx(err, fd, 500, "reset /etc/machine-id");
	if (fstat(fd, &st) < 0)
		return lxm_error_setx(err, -errno, 500, "reset /etc/machine-id");
	if (S_ISREG(st.st_mode) && st.st_size > 0 && ftruncate(fd, 0) < 0)
		return lxm_error_setx(err, -errno, 500, "reset /etc/machine-id");
	return 0;
}

static void fill_templates(uv_work_t *w)
{
	struct fill_job *fj = w->data;
	struct lxm_error **err = &fj->j.err;
	_cleanup_(lxm_image_metadata_freep) struct lxm_image_metadata *meta = NULL;
	_cleanup_free_ char *src = NULL, *text = NULL, *yaml = NULL, *tsrc = NULL, *tdst = NULL;
	_cleanup_free_ char *rootfs = NULL;
	_cleanup_(closedirp) DIR *dir = NULL;
	struct dirent *de;
	size_t len = 0;
	int k;

	if (asprintf(&src, "%s/%s.unpacked/metadata.yaml", store.dir, fj->j.key) < 0 ||
	    asprintf(&tsrc, "%s/%s.unpacked/templates", store.dir, fj->j.key) < 0 ||
	    asprintf(&yaml, "%s/metadata.yaml", fj->path) < 0 ||
	    asprintf(&tdst, "%s/templates", fj->path) < 0 ||
	    asprintf(&rootfs, "%s/rootfs", fj->path) < 0) {
		fj->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		return;
	}
	k = lxm_read_file(src, &text, &len);
	if (k < 0) {
		fj->j.result = lxm_error_setx(err, k, 500, "read %s", src);
		return;
	}
	k = lxm_write_file_atomic(yaml, text, len, 0600);
	if (k < 0) {
		fj->j.result = lxm_error_setx(err, k, 500, "write %s", yaml);
		return;
	}
	dir = opendir(tsrc);
	if (dir) {
		if (mkdir(tdst, 0700) < 0 && errno != EEXIST) {
			fj->j.result = lxm_error_setx(err, -errno, 500, "create %s", tdst);
			return;
		}
		while ((de = readdir(dir))) {
			_cleanup_free_ char *from = NULL, *to = NULL, *body = NULL;
			size_t blen = 0;

			if (de->d_name[0] == '.')
				continue;
			if (asprintf(&from, "%s/%s", tsrc, de->d_name) < 0 ||
			    asprintf(&to, "%s/%s", tdst, de->d_name) < 0) {
				fj->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
				return;
			}
			k = lxm_read_file(from, &body, &blen);
			if (k >= 0)
				k = lxm_write_file_atomic(to, body, blen, 0600);
			if (k < 0) {
				fj->j.result =
					lxm_error_setx(err, k, 500, "copy template %s", from);
				return;
			}
		}
	}
	work_stage(&fj->j, "templates");
	k = lxm_image_metadata_parse(text, len, &meta, err);
	if (k >= 0)
		k = lxm_image_apply_templates(meta, tdst, rootfs, "create", fj->ctx, err);
	if (k >= 0)
		k = reset_machine_id(rootfs, err);
	fj->j.result = k < 0 ? lxm_error_prefix(err, "apply templates") : 0;
}

static void fill_templated(uv_work_t *w, int status)
{
	struct fill_job *fj = w->data;

	fj->j.pending = false;
	if (fj->j.cancelled) {
		job_free(&fj->j);
		return;
	}
	fill_end(fj, fj->j.result, TAKE_PTR(fj->j.err));
}

static void fill_copied(int status, const char *out, const char *errout, void *ud)
{
	struct fill_job *fj = ud;
	struct lxm_error *err = NULL;
	char why[512];
	int k;

	fj->j.child = NULL;
	fj->j.pending = false;
	if (fj->j.cancelled) {
		job_free(&fj->j);
		return;
	}
	if (status != 0) {
		lxm_error_set(&err, -EIO, 500, "copy rootfs (cp exit status %d): %s", status,
			      last_line(errout, why, sizeof(why)));
		fill_end(fj, -EIO, err);
		return;
	}
	k = uv_queue_work(store.d->loop, &fj->j.work, fill_templates, fill_templated);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "queue work: %s", uv_strerror(k));
		fill_end(fj, k, err);
		return;
	}
	fj->j.pending = true;
}

static void fill_copy(struct fill_job *fj)
{
	_cleanup_free_ char *from = NULL, *dst = NULL;
	struct lxm_error *err = NULL;
	char *argv[6];
	int k;

	/* "rootfs/." copies the tree's content (and the root directory's own mode and owner) into
	 * the instance's rootfs directory. */
	if (asprintf(&from, "%s/%s.unpacked/rootfs/.", store.dir, fj->j.key) < 0 ||
	    asprintf(&dst, "%s/rootfs", fj->path) < 0) {
		fill_end(fj, -ENOMEM, NULL);
		return;
	}
	k = lxm_mkdir_p(fj->path, 0711);
	if (k >= 0 && mkdir(dst, 0755) < 0 && errno != EEXIST)
		k = -errno;
	if (k < 0) {
		lxm_error_setx(&err, k, 500, "create %s", dst);
		fill_end(fj, k, err);
		return;
	}
	argv[0] = (char *)"/bin/cp";
	argv[1] = (char *)"-a";
	argv[2] = (char *)"--reflink=auto";
	argv[3] = from;
	argv[4] = dst;
	argv[5] = NULL;
	op_progress(fj->op, "copy", 0, 0);
	k = lxmd_child_run_lines(store.d->loop, argv, NULL, fill_copied, fj, &fj->j.child);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "run cp: %s", uv_strerror(k));
		fill_end(fj, k, err);
		return;
	}
	fj->j.pending = true;
}

static void fill_unpacked(struct lxmd *d, int result, const char *fp, const struct lxm_error *err,
			  void *ud)
{
	struct fill_job *fj = ud;
	struct lxm_error *copy = NULL;

	if (fj->ended)
		return;
	if (result < 0) {
		lxm_error_set(&copy, result, err ? err->status : 500, "%s",
			      err ? err->msg : "unpack failed");
		fill_end(fj, result, copy);
		return;
	}
	fill_copy(fj);
}

static void unpack_work(uv_work_t *w)
{
	struct unpack_job *uj = w->data;
	_cleanup_free_ char *tmp = NULL;
	int k;

	if (tmp_path("", &tmp) < 0) {
		uj->j.result = lxm_error_set(&uj->j.err, -ENOMEM, 500, "out of memory");
		return;
	}
	k = unpack_files(uj->meta_path, uj->rootfs_path, tmp, &uj->j, &uj->j.err);
	if (k < 0)
		lxm_error_prefix(&uj->j.err, "unpack");
	if (k >= 0 && rename(tmp, uj->dest) < 0) {
		k = lxm_error_setx(&uj->j.err, -errno, 500, "move %s to %s", tmp, uj->dest);
		rm_tree(tmp);
	}
	uj->j.result = k;
}

static void unpack_after(uv_work_t *w, int status)
{
	struct unpack_job *uj = w->data;

	uj->j.pending = false;
	if (!uj->j.cancelled)
		job_notify(&uj->j, uj->j.result, uj->j.key, uj->j.err);
	job_free(&uj->j);
}

/* Starts (or joins) the unpacking of image fp into <fp>.unpacked; fj waits for it. */
static int unpack_wait(struct lxmd *d, const char *fp, struct fill_job *fj)
{
	struct unpack_job *uj;
	struct job *j = job_find(JOB_UNPACK, fp);
	int k;

	if (j)
		return job_wait(j, fj->op, fill_unpacked, fj);
	uj = calloc(1, sizeof(*uj));
	if (!uj)
		return -ENOMEM;
	job_init(&uj->j, JOB_UNPACK);
	if (!(uj->j.key = strdup(fp)) || store_path(fp, "", &uj->meta_path) < 0 ||
	    store_path(fp, ".rootfs", &uj->rootfs_path) < 0 ||
	    store_path(fp, ".unpacked", &uj->dest) < 0 ||
	    job_wait(&uj->j, fj->op, fill_unpacked, fj) < 0) {
		job_free(&uj->j);
		return -ENOMEM;
	}
	if (access(uj->rootfs_path, F_OK) < 0)
		free(TAKE_PTR(uj->rootfs_path));
	k = uv_queue_work(d->loop, &uj->j.work, unpack_work, unpack_after);
	if (k < 0) {
		job_free(&uj->j);
		return k;
	}
	uj->j.pending = true;
	return 0;
}

int lxmd_image_fill_rootfs(struct lxmd *d, const char *fp, const char *instance, const json_t *ctx,
			   struct lxm_operation *op, lxmd_rootfs_done_fn cb, void *ud,
			   struct lxm_error **err)
{
	_cleanup_free_ char *unpacked = NULL;
	struct lxm_db_image *img = NULL;
	struct fill_job *fj;
	int k;

	k = lxm_db_image_get(d->db, fp, &img, err);
	if (k < 0)
		return k;
	lxm_db_image_free(img);
	fj = calloc(1, sizeof(*fj));
	if (!fj)
		return lxm_error_set(err, -ENOMEM, 500, "fill instance '%s': out of memory",
				     instance);
	job_init(&fj->j, JOB_FILL);
	fj->d = d;
	fj->op = op;
	fj->cb = cb;
	fj->ud = ud;
	fj->ctx = ctx ? json_deep_copy(ctx) : json_object();
	if (!(fj->j.key = strdup(fp)) || !(fj->instance = strdup(instance)) || !fj->ctx ||
	    lxmd_instance_path(d, instance, &fj->path) < 0 ||
	    store_path(fp, ".unpacked", &unpacked) < 0) {
		job_free(&fj->j);
		return lxm_error_set(err, -ENOMEM, 500, "fill instance '%s': out of memory",
				     instance);
	}
	if (access(unpacked, F_OK) == 0) {
		fill_copy(fj);
		return 0;
	}
	k = unpack_wait(d, fp, fj);
	if (k < 0) {
		job_free(&fj->j);
		return lxm_error_set(err, k, 500, "fill instance '%s': unpack image %.12s: %s",
				     instance, fp, strerror(-k));
	}
	op_progress(op, "unpack", 0, 0);
	return 0;
}

/* ---- publish ---- */

/* metadata.yaml for the new image: the instance's (from its image) with creation_date now and
 * the properties laid over, or a minimal one for an instance created empty. */
static int publish_metadata(struct publish_job *pj, char **ret, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *text = NULL, *msg = NULL;
	_cleanup_json_ json_t *doc = NULL;
	json_t *props, *v;
	const char *key;
	size_t len = 0;
	int k;

	if (asprintf(&path, "%s/metadata.yaml", pj->path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	k = lxm_read_file(path, &text, &len);
	if (k == -ENOENT) {
		doc = json_pack("{s:s}", "architecture", pj->architecture);
	} else if (k < 0) {
		return lxm_error_setx(err, k, 500, "read %s", path);
	} else if (lxm_yaml_to_json(text, len, &doc, &msg) < 0 || !json_is_object(doc)) {
		return lxm_error_set(err, -EINVAL, 400, "%s: %s", path,
				     msg ? msg : "not a YAML mapping");
	}
	if (!doc)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	json_object_set_new(doc, "creation_date", json_integer(lxm_now_ns() / 1000000000LL));
	json_object_del(doc, "expiry_date");
	props = json_object_get(doc, "properties");
	if (!json_is_object(props)) {
		props = json_object();
		json_object_set_new(doc, "properties", props);
	}
	json_object_foreach (pj->properties, key, v)
		json_object_set(props, key, v);
	if (lxm_yaml_from_json(doc, ret) < 0)
		return lxm_error_set(err, -EINVAL, 500, "render metadata.yaml");
	return 0;
}

static void publish_work(uv_work_t *w)
{
	struct publish_job *pj = w->data;
	struct lxm_error **err = &pj->j.err;
	_cleanup_free_ char *yaml = NULL, *tpl_dir = NULL, *rootfs = NULL;
	struct stat st;
	int k;

	k = publish_metadata(pj, &yaml, err);
	if (k >= 0)
		k = lxm_image_metadata_parse(yaml, strlen(yaml), &pj->meta, err);
	if (k < 0) {
		pj->j.result = lxm_error_prefix(err, "metadata.yaml");
		return;
	}
	if (asprintf(&tpl_dir, "%s/templates", pj->path) < 0 ||
	    asprintf(&rootfs, "%s/rootfs", pj->path) < 0) {
		pj->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		return;
	}
	work_stage(&pj->j, "pack");
	k = lxm_archive_pack(&(struct lxm_pack_source){ .metadata_yaml = yaml,
							.templates_dir = stat(tpl_dir, &st) == 0
										 ? tpl_dir
										 : NULL,
							.rootfs_dir = rootfs },
			     pj->packfile, pj->compression, pj->fp, work_progress, &pj->j, err);
	if (k < 0) {
		pj->j.result = lxm_error_prefix(err, "pack");
		rm_tree(pj->packfile);
		return;
	}
	pj->size = file_size(pj->packfile);
	pj->j.result = 0;
}

static void publish_after(uv_work_t *w, int status)
{
	struct publish_job *pj = w->data;
	_cleanup_free_ char *dest = NULL, *filename = NULL;
	struct lxm_error *err = NULL;
	static const char *const ext[] = { [LXM_COMPRESS_NONE] = "",
					   [LXM_COMPRESS_GZIP] = ".gz",
					   [LXM_COMPRESS_XZ] = ".xz",
					   [LXM_COMPRESS_ZSTD] = ".zst" };
	int k = pj->j.result;

	pj->j.pending = false;
	if (pj->j.cancelled) {
		unlink(pj->packfile);
		job_free(&pj->j);
		return;
	}
	if (k < 0) {
		err = TAKE_PTR(pj->j.err);
	} else if (image_exists(store.d, pj->fp)) {
		k = lxm_error_set(&err, -EEXIST, 409, "image %s already exists", pj->fp);
	} else if (store_path(pj->fp, "", &dest) < 0 ||
		   asprintf(&filename, "%s.tar%s", pj->instance, ext[pj->compression]) < 0) {
		k = lxm_error_set(&err, -ENOMEM, 500, "out of memory");
	} else if (rename(pj->packfile, dest) < 0) {
		k = lxm_error_setx(&err, -errno, 500, "move %s to %s", pj->packfile, dest);
	} else {
		/* "web1/snap0" is published as web1-snap0.tar.gz. */
		for (char *c = filename; (c = strchr(c, '/'));)
			*c = '-';
		k = record_image(store.d,
				 &(struct record){ .fp = pj->fp,
						   .meta = pj->meta,
						   .filename = filename,
						   .size = pj->size,
						   .public = pj->public,
						   .aliases = pj->aliases },
				 &err);
		if (k < 0)
			discard(dest);
	}
	if (k < 0) {
		unlink(pj->packfile);
		lxm_error_prefix(&err, "publish instance '%s'", pj->instance);
		job_notify(&pj->j, k, NULL, err);
	} else {
		log_info("instance '%s' published as image %s", pj->instance, pj->fp);
		job_notify(&pj->j, 0, pj->fp, NULL);
	}
	lxm_error_free(err);
	job_free(&pj->j);
}

int lxmd_image_publish(struct lxmd *d, const struct lxmd_image_publish *pub,
		       struct lxm_operation *op, lxmd_image_done_fn done, void *ud,
		       struct lxm_error **err)
{
	_cleanup_(lxm_db_instance_freep) struct lxm_db_instance *inst = NULL;
	enum lxm_compression c = LXM_COMPRESS_GZIP;
	struct publish_job *pj;
	json_t *v;
	const char *key;
	int code, k;

	k = lxm_db_instance_get(d->db, pub->instance, &inst, err);
	if (k < 0)
		return lxm_error_prefix(err, "publish");
	/* A snapshot's files do not change: it is published whatever its instance does. */
	if (pub->snapshot) {
		struct lxm_db_snapshot *snap = NULL;

		k = lxm_db_snapshot_get(d->db, pub->instance, pub->snapshot, &snap, err);
		lxm_db_snapshot_free(snap);
		if (k < 0)
			return lxm_error_prefix(err, "publish");
	} else if (!streq(lxmd_instance_status(d, pub->instance, &code), "Stopped"))
		return lxm_error_set(err, -EBUSY, 400,
				     "publish instance '%s': it is %s; stop it first (an image is "
				     "taken from a stopped instance only)",
				     pub->instance, lxmd_instance_status(d, pub->instance, &code));
	if (pub->compression && *pub->compression &&
	    lxm_compression_from_name(pub->compression, &c) < 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "publish instance '%s': unknown compression '%s' (gzip, xz, "
				     "zstd or none)",
				     pub->instance, pub->compression);
	json_object_foreach ((json_t *)pub->properties, key, v)
		if (!json_is_string(v))
			return lxm_error_set(err, -EINVAL, 400,
					     "publish instance '%s': property '%s' is not a string",
					     pub->instance, key);
	k = check_aliases_free(d, pub->aliases, err);
	if (k < 0)
		return lxm_error_prefix(err, "publish instance '%s'", pub->instance);
	pj = calloc(1, sizeof(*pj));
	if (!pj)
		return lxm_error_set(err, -ENOMEM, 500, "publish: out of memory");
	job_init(&pj->j, JOB_PUBLISH);
	pj->compression = c;
	pj->public = pub->public;
	pj->properties = pub->properties ? json_deep_copy(pub->properties) : json_object();
	pj->aliases = pub->aliases ? json_deep_copy(pub->aliases) : NULL;
	if ((pub->snapshot ? asprintf(&pj->instance, "%s/%s", pub->instance, pub->snapshot) < 0
			   : !(pj->instance = strdup(pub->instance))) ||
	    !pj->properties ||
	    !(pj->architecture = strdup(inst->architecture ? inst->architecture : "")) ||
	    (pub->snapshot ? lxmd_snapshot_path(d, pub->instance, pub->snapshot, &pj->path)
			   : lxmd_instance_path(d, pub->instance, &pj->path)) < 0 ||
	    tmp_path(".tar", &pj->packfile) < 0 || job_wait(&pj->j, op, done, ud) < 0) {
		job_free(&pj->j);
		return lxm_error_set(err, -ENOMEM, 500, "publish: out of memory");
	}
	k = uv_queue_work(d->loop, &pj->j.work, publish_work, publish_after);
	if (k < 0) {
		job_free(&pj->j);
		return lxm_error_set(err, k, 500, "publish instance '%s': queue work: %s",
				     pub->instance, uv_strerror(k));
	}
	pj->j.pending = true;
	op_progress(op, "pack", 0, 0);
	return 0;
}

/* ---- files, delete, JSON ---- */

int lxmd_image_files(struct lxmd *d, const char *fp, char **ret_meta, char **ret_rootfs,
		     struct lxm_error **err)
{
	_cleanup_free_ char *meta = NULL, *rootfs = NULL;
	struct lxm_db_image *img = NULL;
	int k;

	k = lxm_db_image_get(d->db, fp, &img, err);
	if (k < 0)
		return k;
	lxm_db_image_free(img);
	if (store_path(fp, "", &meta) < 0 || store_path(fp, ".rootfs", &rootfs) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "image %s: out of memory", fp);
	if (access(meta, F_OK) < 0)
		return lxm_error_setx(err, -errno, 500, "image %s: its file %s", fp, meta);
	if (access(rootfs, F_OK) < 0)
		free(TAKE_PTR(rootfs));
	*ret_meta = TAKE_PTR(meta);
	*ret_rootfs = TAKE_PTR(rootfs);
	return 0;
}

int lxmd_image_delete(struct lxmd *d, const char *fp, struct lxm_error **err)
{
	static const char *const suffixes[] = { "", ".rootfs", ".unpacked" };
	struct job *j;
	int k;

	LIST_FOREACH(j, &store.jobs, link)
	if ((j->kind == JOB_FILL || j->kind == JOB_UNPACK) && !j->cancelled && streq(j->key, fp))
		return lxm_error_set(err, -EBUSY, 400,
				     "image %s is in use: an instance is being created from it",
				     fp);
	k = lxm_db_image_delete(d->db, fp, err);
	if (k < 0)
		return k;
	for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
		_cleanup_free_ char *path = NULL;

		if (store_path(fp, suffixes[i], &path) == 0)
			discard(path);
	}
	log_info("image %s deleted", fp);
	return 0;
}

static json_t *time_json(int64_t seconds)
{
	char buf[LXM_RFC3339_MAX];
	struct timespec ts = { seconds, 0 };

	/* Go's zero time, as LXD shows a time that never happened. */
	if (seconds == 0)
		return json_string("0001-01-01T00:00:00Z");
	return json_string(lxm_rfc3339(&ts, buf));
}

json_t *lxmd_image_json(const struct lxm_db_image *img)
{
	json_t *j;

	j = json_pack("{s:O, s:s, s:b, s:b, s:o, s:o, s:o, s:o, s:s, s:s, s:O, s:b, s:I, s:s,"
		      " s:[s], s:s}",
		      "aliases", img->aliases, "architecture",
		      img->architecture ? img->architecture : "", "auto_update", img->auto_update,
		      "cached", img->cached, "created_at", time_json(img->created_at), "expires_at",
		      time_json(img->expires_at), "last_used_at", time_json(img->last_used_at),
		      "uploaded_at", time_json(img->uploaded_at), "filename",
		      img->filename ? img->filename : "", "fingerprint", img->fingerprint,
		      "properties", img->properties, "public", img->public, "size",
		      (json_int_t)img->size, "type", img->type ? img->type : "container",
		      "profiles", "default", "project", "default");
	/* Images pulled from an image server say where from; template builds keep their source
	 * for refresh only (it is no server a client could use). */
	if (j && img->source && !streq(img->source->protocol, "template"))
		json_object_set_new(j, "update_source",
				    json_pack("{s:s, s:s, s:s, s:s, s:s}", "alias",
					      img->source->alias, "certificate",
					      img->source->certificate, "protocol",
					      img->source->protocol, "server", img->source->server,
					      "image_type", img->type ? img->type : "container"));
	return j;
}

int lxmd_image_to_json(struct lxmd *d, const char *fp, json_t **ret, struct lxm_error **err)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	json_t *j;
	int k;

	k = lxm_db_image_get(d->db, fp, &img, err);
	if (k < 0)
		return k;
	j = lxmd_image_json(img);
	if (!j)
		return lxm_error_set(err, -ENOMEM, 500, "image %s: out of memory", fp);
	*ret = j;
	return 0;
}

/* ---- requests: what a caller wants made of an image once it is there ---- */

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

static void req_free(struct image_req *q)
{
	if (!q)
		return;
	free(q->what);
	free(q->src.server);
	free(q->src.protocol);
	free(q->src.alias);
	free(q->src.certificate);
	json_decref(q->aliases);
	free(q->replaces);
	free(q);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct image_req *, req_free)

/* Creates alias name for fp, or points it at fp when it exists. */
static int alias_set(struct lxmd *d, const char *name, const char *desc, const char *fp,
		     struct lxm_error **err)
{
	_cleanup_(lxm_db_image_alias_freep) struct lxm_db_image_alias *a = NULL;

	if (lxm_db_image_alias_get(d->db, name, &a, NULL) == 0) {
		if (streq(a->target, fp) && (!desc || streq(a->description, desc)))
			return 0;
		return lxm_db_image_alias_update(d->db, name, fp, desc ? desc : a->description,
						 err);
	}
	return lxm_db_image_alias_create(d->db, name, fp, desc ? desc : "", err);
}

/* Applies q to image fp: its source, cached flag, public and auto_update, aliases, and for a
 * refresh the old image's aliases (and the old image itself when it was a cached one, as LXD
 * drops a cached image its refresh replaced). */
static int req_apply(struct lxmd *d, struct image_req *q, const char *fp, struct lxm_error **err)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL, *old = NULL;
	json_t *a;
	size_t i;
	int k;

	k = lxm_db_image_get(d->db, fp, &img, err);
	if (k < 0)
		return k;
	if (q->src.server && !img->source) {
		k = lxm_db_image_source_set(d->db, fp, &q->src, err);
		if (k < 0)
			return k;
	}
	if (img->cached && !q->cached) {
		k = lxm_db_image_set_cached(d->db, fp, false, err);
		if (k < 0)
			return k;
	}
	if ((q->public && !img->public) || (q->auto_update && !img->auto_update)) {
		img->public |= q->public;
		img->auto_update |= q->auto_update;
		k = lxm_db_image_update(d->db, img, err);
		if (k < 0)
			return k;
	}
	if (q->replaces && !streq(q->replaces, fp) &&
	    lxm_db_image_get(d->db, q->replaces, &old, NULL) == 0) {
		json_array_foreach (old->aliases, i, a) {
			k = alias_set(d, json_string_value(json_object_get(a, "name")),
				      json_string_value(json_object_get(a, "description")), fp,
				      err);
			if (k < 0)
				return k;
		}
		if (old->cached) {
			_cleanup_error_ struct lxm_error *derr = NULL;

			if (lxmd_image_delete(d, q->replaces, &derr) < 0)
				log_warn("image %s: keeping it after its refresh: %s", q->replaces,
					 derr ? derr->msg : "delete failed");
			else
				log_info("image %s: replaced by %s", q->replaces, fp);
		}
	}
	json_array_foreach (q->aliases, i, a) {
		k = alias_set(d, json_string_value(json_object_get(a, "name")),
			      json_string_value(json_object_get(a, "description")), fp, err);
		if (k < 0)
			return k;
	}
	return 0;
}

/* A job's waiter for a request: applies it, then tells the caller. */
static void req_done(struct lxmd *d, int result, const char *fp, const struct lxm_error *jerr,
		     void *ud)
{
	struct image_req *q = ud;
	_cleanup_error_ struct lxm_error *err = NULL;

	if (result >= 0)
		result = req_apply(d, q, fp, &err);
	else if (jerr)
		lxm_error_set(&err, result, jerr->status, "%s", jerr->msg);
	if (result < 0) {
		if (!err)
			lxm_error_set(&err, result, 500, "%s", strerror(-result));
		/* The job's own messages name the image already; a lookup's names the server. */
		if (q->what && !strstr(err->msg, q->what))
			lxm_error_prefix(&err, "%s", q->what);
		q->done(d, result, NULL, err, q->ud);
	} else {
		q->done(d, 0, fp, NULL, q->ud);
	}
	req_free(q);
}

static json_t *aliases_copy(const json_t *aliases)
{
	return aliases ? json_deep_copy(aliases) : NULL;
}

/* ---- pull from an image server ---- */

/* Thread pool: the server's catalogue, and the image alias names there. */
static void pull_find(uv_work_t *w)
{
	struct pull_job *pj = w->data;
	struct lxm_error **err = &pj->j.err;
	struct utsname u;
	int k;

	if (pj->certificate) {
		if (tmp_path(".ca.pem", &pj->ca_file) < 0) {
			pj->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
			return;
		}
		k = lxm_write_file_atomic(pj->ca_file, pj->certificate, strlen(pj->certificate),
					  0600);
		if (k < 0) {
			pj->j.result = lxm_error_setx(
				err, k, 500, "write the server's certificate to %s", pj->ca_file);
			return;
		}
	}
	work_stage(&pj->j, "metadata");
	uname(&u);
	k = lxm_sstreams_new(pj->server, pj->ca_file, &pj->ss, err);
	if (k >= 0)
		k = lxm_sstreams_find(pj->ss, pj->alias, u.machine, NULL, &pj->img, err);
	if (k < 0 && *err && (*err)->status == 404) {
		/* "image 'x' on SERVER: not found (container, x86_64)". */
		const char *why = strstr((*err)->msg, "not found");
		_cleanup_free_ char *msg = strdup(why ? why : (*err)->msg);

		lxm_error_free(TAKE_PTR(*err));
		lxm_error_set(err, -ENOENT, 404, "%s", msg ? msg : "not found");
	}
	pj->j.result = k;
}

/* Thread pool: the image's files, verified, into pj->dir. */
static void pull_download(uv_work_t *w)
{
	struct pull_job *pj = w->data;

	work_stage(&pj->j, "download");
	pj->j.result =
		lxm_sstreams_download(pj->ss, pj->img, pj->dir, work_progress, &pj->j, &pj->j.err);
}

static void pull_end(struct pull_job *pj, int result, const struct lxm_error *err)
{
	job_notify(&pj->j, result, pj->j.key, err);
	job_free(&pj->j);
}

static void pull_imported(struct lxmd *d, int result, const char *fp, const struct lxm_error *err,
			  void *ud)
{
	struct pull_job *pj = ud;

	pj->j.pending = false;
	if (pj->j.cancelled) {
		job_free(&pj->j);
		return;
	}
	/* Imported meanwhile by someone else: the same files, so the same image. */
	if (result == -EEXIST && image_exists(d, pj->j.key))
		result = 0;
	if (result >= 0) {
		/* Cached until a user's request says otherwise (req_apply). */
		lxm_db_image_set_cached(d->db, pj->j.key, true, NULL);
		log_info("image %s pulled from %s (%s)", pj->j.key, pj->server, pj->alias);
	}
	pull_end(pj, result, err);
}

static void pull_downloaded(uv_work_t *w, int status)
{
	struct pull_job *pj = w->data;
	_cleanup_free_ char *meta = NULL, *rootfs = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	struct waiter *first;
	const char *base;
	int k;

	pj->j.pending = false;
	if (pj->j.cancelled) {
		job_free(&pj->j);
		return;
	}
	if (pj->j.result < 0) {
		pull_end(pj, pj->j.result, pj->j.err);
		return;
	}
	if (asprintf(&meta, "%s/meta", pj->dir) < 0 ||
	    (pj->img->rootfs_path && asprintf(&rootfs, "%s/rootfs", pj->dir) < 0)) {
		lxm_error_set(&err, -ENOMEM, 500, "out of memory");
		pull_end(pj, -ENOMEM, err);
		return;
	}
	base = strrchr(pj->img->meta_path, '/');
	first = TAILQ_FIRST(&pj->j.waiters);
	k = lxmd_image_import(store.d,
			      &(struct lxmd_image_import){
				      .meta_path = meta,
				      .rootfs_path = rootfs,
				      .filename = base ? base + 1 : pj->img->meta_path,
				      .expected_fp = pj->img->fingerprint,
			      },
			      first ? first->op : NULL, pull_imported, pj, &err);
	if (k < 0) {
		pull_end(pj, k, err);
		return;
	}
	pj->j.pending = true;
}

static void pull_found(uv_work_t *w, int status)
{
	struct pull_job *pj = w->data;
	_cleanup_error_ struct lxm_error *err = NULL;
	struct job *other;
	const char *fp;
	int k;

	pj->j.pending = false;
	if (pj->j.cancelled) {
		job_free(&pj->j);
		return;
	}
	if (pj->j.result < 0) {
		pull_end(pj, pj->j.result, pj->j.err);
		return;
	}
	fp = pj->img->fingerprint;
	if (image_exists(store.d, fp)) {
		log_info("image %s (%s on %s) is in the store already", fp, pj->alias, pj->server);
		job_notify(&pj->j, 0, fp, NULL);
		job_free(&pj->j);
		return;
	}
	other = job_find(JOB_PULL, fp);
	if (other) {
		/* One download per image: the waiters join the one in progress. */
		log_info("image %s: waiting for the download in progress", fp);
		TAILQ_CONCAT(&other->waiters, &pj->j.waiters, link);
		job_free(&pj->j);
		return;
	}
	if (!(pj->j.key = strdup(fp)) || tmp_path("", &pj->dir) < 0) {
		lxm_error_set(&err, -ENOMEM, 500, "out of memory");
		pull_end(pj, -ENOMEM, err);
		return;
	}
	if (mkdir(pj->dir, 0700) < 0) {
		lxm_error_setx(&err, -errno, 500, "create %s", pj->dir);
		free(TAKE_PTR(pj->dir));
		pull_end(pj, -EIO, err);
		return;
	}
	k = uv_queue_work(store.d->loop, &pj->j.work, pull_download, pull_downloaded);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "queue work: %s", uv_strerror(k));
		pull_end(pj, k, err);
		return;
	}
	pj->j.pending = true;
}

int lxmd_image_pull_check(const struct lxmd_image_pull *p, struct lxm_error **err)
{
	const char *proto = p->protocol && *p->protocol ? p->protocol : "lxd";

	if (!p->server || !*p->server)
		return lxm_error_set(err, -EINVAL, 400, "pull image: source.server is required");
	if (!p->alias || !*p->alias)
		return lxm_error_set(err, -EINVAL, 400,
				     "pull image from %s: source.alias or source.fingerprint is "
				     "required",
				     p->server);
	if (streq(proto, "lxd"))
		return lxm_error_set(err, -EOPNOTSUPP, 501,
				     "image '%s' on %s: pulling from an LXD server (protocol "
				     "'lxd') is not implemented yet; use an image server with "
				     "protocol 'simplestreams'",
				     p->alias, p->server);
	if (!streq(proto, "simplestreams"))
		return lxm_error_set(err, -EINVAL, 400,
				     "image '%s' on %s: unknown protocol '%s' (simplestreams or "
				     "lxd)",
				     p->alias, p->server, proto);
	if (strncasecmp(p->server, "https://", 8) != 0)
		return lxm_error_set(err, -EPROTONOSUPPORT, 400,
				     "image '%s' on %s: only https:// image servers are supported",
				     p->alias, p->server);
	return 0;
}

static int pull_start(struct lxmd *d, const struct lxmd_image_pull *p, struct image_req *q,
		      struct lxm_operation *op, struct lxm_error **err)
{
	struct pull_job *pj = calloc(1, sizeof(*pj));
	int k;

	if (!pj)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", q->what);
	job_init(&pj->j, JOB_PULL);
	if (!(pj->server = strdup(p->server)) || !(pj->alias = strdup(p->alias)) ||
	    (p->certificate && *p->certificate && !(pj->certificate = strdup(p->certificate))) ||
	    job_wait(&pj->j, op, req_done, q) < 0) {
		job_free(&pj->j);
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", q->what);
	}
	k = uv_queue_work(d->loop, &pj->j.work, pull_find, pull_found);
	if (k < 0) {
		/* The request stays the caller's to free: take the waiter out. */
		struct waiter *w = TAILQ_FIRST(&pj->j.waiters);

		TAILQ_REMOVE(&pj->j.waiters, w, link);
		free(w);
		job_free(&pj->j);
		return lxm_error_set(err, k, 500, "%s: queue work: %s", q->what, uv_strerror(k));
	}
	pj->j.pending = true;
	op_progress(op, "metadata", 0, 0);
	return 0;
}

int lxmd_image_pull(struct lxmd *d, const struct lxmd_image_pull *p, struct lxm_operation *op,
		    lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	_cleanup_(req_freep) struct image_req *q = NULL;
	int k;

	k = lxmd_image_pull_check(p, err);
	if (k < 0)
		return k;
	k = check_aliases_valid(p->aliases, err);
	if (k < 0)
		return lxm_error_prefix(err, "image '%s' on %s", p->alias, p->server);
	q = calloc(1, sizeof(*q));
	if (!q || asprintf(&q->what, "image '%s' on %s", p->alias, p->server) < 0 ||
	    !(q->src.server = strdup(p->server)) || !(q->src.protocol = strdup("simplestreams")) ||
	    !(q->src.alias = strdup(p->alias)) ||
	    !(q->src.certificate = strdup(p->certificate ? p->certificate : "")))
		return lxm_error_set(err, -ENOMEM, 500, "pull image: out of memory");
	q->cached = p->cached;
	q->public = p->public;
	q->auto_update = p->auto_update;
	q->aliases = aliases_copy(p->aliases);
	q->done = done;
	q->ud = ud;
	k = pull_start(d, p, q, op, err);
	if (k < 0)
		return k;
	TAKE_PTR(q);
	return 0;
}

/* ---- explicit template builds ---- */

/* The templates installed, for messages: "busybox, debian". */
static void templates_known(char *buf, size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(template_images); i++) {
		_cleanup_free_ char *path = NULL;
		bool seen = false;

		for (size_t k = 0; k < i; k++)
			seen |= streq(template_images[k].tpl, template_images[i].tpl);
		if (seen || template_for(template_images[i].tpl, &path) < 0)
			continue;
		n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%s", n ? ", " : "",
				      template_images[i].tpl);
	}
}

/* Starts (or joins) the build of release of template tpl for q. */
static int build_for(struct lxmd *d, const char *tpl, const char *release, struct image_req *q,
		     struct lxm_operation *op, struct lxm_error **err)
{
	const struct template_image *ti = NULL, *known = NULL;
	_cleanup_free_ char *path = NULL, *name = NULL;
	struct job *j;
	char list[128];
	int k;

	for (size_t i = 0; i < ARRAY_SIZE(template_images); i++)
		if (streq(template_images[i].tpl, tpl)) {
			known = &template_images[i];
			break;
		}
	if (!known || template_for(known->tpl, &path) < 0) {
		templates_known(list, sizeof(list));
		return lxm_error_set(err, -ENOENT, 404, "template '%s' not found (known: %s)", tpl,
				     *list ? list : "none installed");
	}
	if (!release || !*release) {
		ti = known;
	} else if (asprintf(&name, "%s/%s", tpl, release) >= 0) {
		ti = template_image_for(name);
		if (ti && !streq(ti->tpl, tpl))
			ti = NULL;
	}
	/* Its aliases move to the new image: a rebuild replaces what they name. */
	for (size_t i = 0; ti && i < ARRAY_SIZE(ti->aliases) && ti->aliases[i]; i++) {
		if (!q->aliases)
			q->aliases = json_array();
		json_array_append_new(q->aliases, json_pack("{s:s, s:s}", "name", ti->aliases[i],
							    "description", ""));
	}
	j = job_find(JOB_BUILD, ti ? ti->key : name);
	if (j) {
		if (job_wait(j, op, req_done, q) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", q->what);
		op_progress(op, j->stage, 0, 0);
		return 0;
	}
	k = build_start(d, ti, known->tpl, release, op, req_done, q, err);
	return k < 0 ? lxm_error_prefix(err, "%s", q->what) : 0;
}

int lxmd_image_build(struct lxmd *d, const struct lxmd_image_build *b, struct lxm_operation *op,
		     lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	_cleanup_(req_freep) struct image_req *q = NULL;
	int k;

	k = check_aliases_valid(b->aliases, err);
	if (k < 0)
		return lxm_error_prefix(err, "build image from template '%s'", b->tpl);
	q = calloc(1, sizeof(*q));
	if (!q || asprintf(&q->what, "build image from template '%s'%s%s", b->tpl,
			   b->release && *b->release ? " release " : "",
			   b->release && *b->release ? b->release : "") < 0)
		return lxm_error_set(err, -ENOMEM, 500, "build image: out of memory");
	q->public = b->public;
	q->aliases = aliases_copy(b->aliases);
	q->done = done;
	q->ud = ud;
	k = build_for(d, b->tpl, b->release, q, op, err);
	if (k < 0)
		return k;
	TAKE_PTR(q);
	return 0;
}

/* ---- refresh ---- */

int lxmd_image_refresh(struct lxmd *d, const char *fp, struct lxm_operation *op,
		       lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	_cleanup_(req_freep) struct image_req *q = NULL;
	_cleanup_free_ char *tpl = NULL;
	const struct template_image *ti = NULL;
	const char *release = NULL;
	json_t *a;
	size_t i;
	int k;

	k = lxm_db_image_get(d->db, fp, &img, err);
	if (k < 0)
		return k;
	q = calloc(1, sizeof(*q));
	if (!q || !(q->replaces = strdup(fp)))
		return lxm_error_set(err, -ENOMEM, 500, "refresh image %s: out of memory", fp);
	q->cached = img->cached;
	q->public = img->public;
	q->auto_update = img->auto_update;
	q->done = done;
	q->ud = ud;
	if (img->source && streq(img->source->protocol, "simplestreams")) {
		struct lxmd_image_pull p = { .server = img->source->server,
					     .protocol = img->source->protocol,
					     .alias = img->source->alias,
					     .certificate = img->source->certificate };

		if (asprintf(&q->what, "image '%s' on %s", p.alias, p.server) < 0 ||
		    !(q->src.server = strdup(p.server)) ||
		    !(q->src.protocol = strdup(p.protocol)) || !(q->src.alias = strdup(p.alias)) ||
		    !(q->src.certificate = strdup(p.certificate)))
			return lxm_error_set(err, -ENOMEM, 500, "refresh image %s: out of memory",
					     fp);
		k = lxmd_image_pull_check(&p, err);
		if (k >= 0)
			k = pull_start(d, &p, q, op, err);
		if (k < 0)
			return lxm_error_prefix(err, "refresh image %s", fp);
		TAKE_PTR(q);
		return 0;
	}
	/* A template's image: its recorded build, else a template alias it carries (an image
	 * built before sources were recorded). */
	if (img->source && streq(img->source->protocol, "template")) {
		char *slash;

		tpl = strdup(img->source->alias);
		if (!tpl)
			return -ENOMEM;
		slash = strchr(tpl, '/');
		if (slash) {
			*slash = '\0';
			release = slash + 1;
		}
	} else {
		json_array_foreach (img->aliases, i, a) {
			ti = template_image_for(json_string_value(json_object_get(a, "name")));
			if (ti)
				break;
		}
		if (ti && !(tpl = strdup(ti->tpl)))
			return -ENOMEM;
		release = ti ? ti->release : NULL;
	}
	if (!tpl)
		return lxm_error_set(err, -EINVAL, 400,
				     "refresh image %s: it has no source to refresh from (it was "
				     "imported or published here, not pulled from an image server "
				     "or built from a template)",
				     fp);
	if (asprintf(&q->what, "refresh image %s (template '%s')", fp, tpl) < 0)
		return -ENOMEM;
	k = build_for(d, tpl, release, q, op, err);
	if (k < 0)
		return k;
	TAKE_PTR(q);
	return 0;
}
