/* The image store (see images.h for the layout). Work that touches image contents runs as jobs:
 * on the thread pool (import, unpack, pack, templates) or as child processes (template builds,
 * copies, removals). Jobs that others can share carry a key (a template's build key or an image's
 * fingerprint), and later callers wait on the running job instead of starting a second one.
 *
 * Progress from the thread pool reaches operations through one uv_async_t: a worker stores its
 * figures in its job under images_store.lock and wakes the loop, which publishes them.
 *
 * This file is the core; images-instance.c and images-sources.c have the rest (see
 * images-internal.h). */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "images/archive.h"
#include "images/images-internal.h"
#include "images/images.h"
#include "images/metadata.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "util.h"

/* ---- jobs ---- */

struct images_store images_store = { .lock = PTHREAD_MUTEX_INITIALIZER };

void images_job_init(struct job *j, enum job_kind kind)
{
	j->kind = kind;
	j->sent_percent = -1;
	j->work.data = j;
	TAILQ_INIT(&j->waiters);
	LIST_INSERT_HEAD(&images_store.jobs, j, link);
}

void images_job_free(struct job *j)
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
		json_decref(pj->img);
		lxm_rm_tree(pj->dir);
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

bool images_job_returned(struct job *j)
{
	j->pending = false;
	if (!j->cancelled)
		return false;
	images_job_free(j);
	return true;
}

int images_job_wait(struct job *j, struct lxm_operation *op, lxmd_image_done_fn done, void *ud)
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

/* Tells every waiter the result; they may start or end other jobs. The last stage the worker
 * reported goes out first: uv_async_send() coalesces, so its wake-up may not have run yet. */
void images_job_notify(struct job *j, int result, const char *fp, const struct lxm_error *err)
{
	struct waiter *w;

	images_job_flush(j);
	while ((w = TAILQ_FIRST(&j->waiters))) {
		TAILQ_REMOVE(&j->waiters, w, link);
		if (w->done)
			w->done(images_store.d, result, result < 0 ? NULL : fp, err, w->ud);
		free(w);
	}
}

struct job *images_job_find(enum job_kind kind, const char *key)
{
	struct job *j;

	LIST_FOREACH(j, &images_store.jobs, link)
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

void images_op_progress(struct lxm_operation *op, const char *stage, uint64_t done, uint64_t total)
{
	json_t *m;

	if (op && (m = progress_json(stage, done, total)))
		lxm_operation_set_metadata(op, m);
}

static void job_publish(struct job *j, const char *stage, uint64_t done, uint64_t total)
{
	struct waiter *w;

	TAILQ_FOREACH(w, &j->waiters, link)
	images_op_progress(w->op, stage, done, total);
	if (j->kind == JOB_FILL)
		images_op_progress(((struct fill_job *)j)->op, stage, done, total);
}

/* Called by workers (lxm_progress_fn): stores the figures and wakes the loop when the percent
 * moved (or every 16 MiB when the total is unknown). Cancels the work once lxmd is closing. */
int images_work_progress(uint64_t done, uint64_t total, void *ud)
{
	struct job *j = ud;
	bool closing;

	pthread_mutex_lock(&images_store.lock);
	closing = images_store.closing;
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
			uv_async_send(&images_store.wake);
		}
	}
	pthread_mutex_unlock(&images_store.lock);
	return closing ? 1 : 0;
}

void images_work_stage(struct job *j, const char *stage)
{
	pthread_mutex_lock(&images_store.lock);
	snprintf(j->stage, sizeof(j->stage), "%s", stage);
	j->done = j->total = 0;
	j->sent_percent = -1;
	j->sent_done = 0;
	j->dirty = true;
	if (!images_store.closing)
		uv_async_send(&images_store.wake);
	pthread_mutex_unlock(&images_store.lock);
}

/* Publishes what the worker reported since the last publication. */
void images_job_flush(struct job *j)
{
	char stage[sizeof(j->stage)];
	uint64_t done, total;
	bool dirty;

	pthread_mutex_lock(&images_store.lock);
	dirty = j->dirty;
	j->dirty = false;
	memcpy(stage, j->stage, sizeof(stage));
	done = j->done;
	total = j->total;
	pthread_mutex_unlock(&images_store.lock);
	if (dirty && !j->cancelled)
		job_publish(j, stage, done, total);
}

static void on_wake(uv_async_t *a)
{
	struct job *j;

	LIST_FOREACH(j, &images_store.jobs, link)
	images_job_flush(j);
}

/* ---- files ---- */

int images_store_path(const char *fp, const char *suffix, char **ret)
{
	return asprintf(ret, "%s/%s%s", images_store.dir, fp, suffix) < 0 ? -ENOMEM : 0;
}

/* A fresh name for work in progress: ROOT/images/.tmp-<random><suffix>. */
int images_tmp_path(const char *suffix, char **ret)
{
	char rnd[17];
	int k = lxm_random_hex(rnd, 8);

	if (k < 0)
		return k;
	return asprintf(ret, "%s/.tmp-%s%s", images_store.dir, rnd, suffix) < 0 ? -ENOMEM : 0;
}

/* Removes a file or tree from the loop thread: renamed out of the way at once (so the name is
 * free again), then removed by a child process. */
void images_discard(const char *path)
{
	_cleanup_free_ char *trash = NULL;
	const char *victim = path;
	char *argv[5];

	if (access(path, F_OK) < 0)
		return;
	if (images_tmp_path("-trash", &trash) == 0 && rename(path, trash) == 0)
		victim = trash;
	argv[0] = (char *)"/bin/rm";
	argv[1] = (char *)"-rf";
	argv[2] = (char *)"--one-file-system";
	argv[3] = (char *)victim;
	argv[4] = NULL;
	if (lxmd_child_run(images_store.d->loop, argv, NULL, NULL) < 0)
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

int64_t images_file_size(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* ---- lxm-imagetool ---- */

/* What images_tool_run's line callback works with. */
struct tool_run {
	struct job *j;	/* gets the progress lines, or NULL */
	char *out;	/* the other lines, each with its newline */
	size_t len;	/* bytes in out */
	bool failed;	/* out of memory collecting them */
	bool cancelled; /* the child was killed because lxmd is closing */
};

static bool store_closing(void)
{
	bool closing;

	pthread_mutex_lock(&images_store.lock);
	closing = images_store.closing;
	pthread_mutex_unlock(&images_store.lock);
	return closing;
}

static int tool_line(const char *line, void *ud)
{
	struct tool_run *t = ud;
	uint64_t done, total;
	size_t n;
	char *nb;

	if (!line || (t->j && startswith(line, "progress ") &&
		      sscanf(line, "progress %" SCNu64 " %" SCNu64, &done, &total) == 2)) {
		if (line ? images_work_progress(done, total, t->j) != 0 : store_closing()) {
			t->cancelled = true;
			return 1;
		}
		return 0;
	}
	n = strlen(line);
	nb = realloc(t->out, t->len + n + 2);
	if (!nb) {
		t->failed = true;
		return 1;
	}
	t->out = nb;
	memcpy(t->out + t->len, line, n);
	t->len += n;
	t->out[t->len++] = '\n';
	t->out[t->len] = '\0';
	return 0;
}

/* The tool's own error: the last "error STATUS ERRNO MESSAGE" line of its stderr, or NULL. */
static const char *tool_error(const char *errout, int *status, int *errnum)
{
	const char *p = errout, *found = NULL;
	int skip = 0;

	for (; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (startswith(p, "error "))
			found = p;
	if (!found || sscanf(found, "error %d %d %n", status, errnum, &skip) != 2 || skip == 0)
		return NULL;
	return found + skip;
}

int images_tool_run(struct job *j, const char *const args[], const char *input, char **ret_out,
		    struct lxm_error **err)
{
	_cleanup_free_ char *tool = NULL, *errout = malloc(16384), *msg = NULL;
	_cleanup_free_ char **argv = NULL;
	struct tool_run t = { .j = j };
	const char *why;
	char line[512];
	size_t n = 0;
	int k, status = 0, errnum = 0;

	while (args[n])
		n++;
	argv = calloc(n + 2, sizeof(*argv));
	if (!argv || !errout || lxmd_find_helper(LXM_IMAGETOOL_NAME, "LXM_IMAGETOOL", &tool) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	argv[0] = tool;
	for (size_t i = 0; i < n; i++)
		argv[i + 1] = (char *)args[i];
	k = lxmd_run_sync_lines(argv, input, tool_line, &t, errout, 16384);
	if (k < 0) {
		free(t.out);
		return lxm_error_setx(err, k, 500, "run %s", tool);
	}
	if (k == 0 && !t.failed && !t.cancelled) {
		if (ret_out)
			*ret_out = t.out ? t.out : strdup("");
		else
			free(t.out);
		return ret_out && !*ret_out ? lxm_error_set(err, -ENOMEM, 500, "out of memory") : 0;
	}
	free(t.out);
	if (t.cancelled)
		return lxm_error_set(err, -ECANCELED, 503, "lxmd is shutting down");
	if (t.failed)
		return lxm_error_set(err, -ENOMEM, 500, "%s %s: out of memory", LXM_IMAGETOOL_NAME,
				     args[0]);
	why = tool_error(errout, &status, &errnum);
	if (why && status >= 400 && status < 600 && (msg = strdup(why))) {
		/* Its message as it made it, with the tool's trailing newline dropped. */
		msg[strcspn(msg, "\n")] = '\0';
		return lxm_error_set(err, errnum > 0 ? -errnum : -EIO, status, "%s", msg);
	}
	return lxm_error_set(err, -EIO, 500, "%s %s: exited with status %d: %s", LXM_IMAGETOOL_NAME,
			     args[0], k, images_last_line(errout, line, sizeof(line)));
}

int images_vm_parts(const char *rootfs_dir, char **ret_disk, char **ret_boot)
{
	_cleanup_free_ char *disk = NULL, *boot = NULL;
	const char *slash = strrchr(rootfs_dir, '/');
	int dirlen = slash ? (int)(slash - rootfs_dir) + 1 : 0;
	struct stat st;

	if (asprintf(&disk, "%s.img", rootfs_dir) < 0 ||
	    asprintf(&boot, "%.*sboot", dirlen, rootfs_dir) < 0)
		return -ENOMEM;
	if (lstat(disk, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	*ret_disk = TAKE_PTR(disk);
	*ret_boot = lstat(boot, &st) == 0 && S_ISDIR(st.st_mode) ? TAKE_PTR(boot) : NULL;
	return 1;
}

const char *images_type_of(const char *fp, const struct lxm_image_metadata *meta)
{
	_cleanup_free_ char *rootfs = NULL, *disk = NULL, *boot = NULL;
	const char *declared =
		json_string_value(json_object_get(json_object_get(meta->raw, "lxm"), "type"));

	if (declared && streq(declared, "virtual-machine"))
		return "virtual-machine";
	if (asprintf(&rootfs, "%s/%s.unpacked/rootfs", images_store.dir, fp) >= 0 &&
	    images_vm_parts(rootfs, &disk, &boot) > 0)
		return "virtual-machine";
	return "container";
}

int images_pack(struct job *j, const char *yaml, const char *templates_dir, const char *rootfs_dir,
		const char *out, enum lxm_compression c, char fp[static 65], struct lxm_error **err)
{
	_cleanup_free_ char *res = NULL, *tmp = NULL, *disk = NULL, *boot = NULL;
	const char *args[14] = { "pack", "--compression", lxm_compression_name(c), "--metadata",
				 "-" };
	size_t n = 5;
	struct stat st;
	int k;

	if (stat(templates_dir, &st) == 0) {
		args[n++] = "--templates";
		args[n++] = templates_dir;
	}
	/* A virtual machine's tree has rootfs.img and boot/ beside where rootfs/ would be. */
	if (stat(rootfs_dir, &st) < 0 && images_vm_parts(rootfs_dir, &disk, &boot) > 0) {
		args[n++] = "--disk";
		args[n++] = disk;
		if (boot) {
			args[n++] = "--boot";
			args[n++] = boot;
		}
		rootfs_dir = "-";
	}
	args[n++] = rootfs_dir;
	args[n++] = out;
	args[n] = NULL;
	images_work_stage(j, "pack");
	k = images_tool_run(j, args, yaml, &res, err);
	if (k < 0) {
		/* A killed tool leaves its half-written file behind (the tool itself cleans up on
		 * its own errors). */
		if (asprintf(&tmp, "%s.tmp", out) >= 0)
			unlink(tmp);
		return k;
	}
	if (!startswith(res, "sha256 ") || strlen(res) != 7 + 64 + 1)
		return lxm_error_set(err, -EIO, 500, "%s pack: unexpected output '%.80s'",
				     LXM_IMAGETOOL_NAME, res);
	snprintf(fp, 65, "%.64s", res + 7);
	return 0;
}

/* Unpacks one file of an image with lxm-imagetool; a killed tool's half-made tree is removed
 * (on its own errors the tool removed it, and an existing dest is left alone). */
static int unpack_one(struct job *j, const char *kind, const char *path, const char *dest,
		      struct lxm_error **err)
{
	const char *args[] = { "unpack", kind, path, dest, NULL };
	int k = images_tool_run(j, args, NULL, NULL, err);

	if (k < 0 && k != -EEXIST)
		lxm_rm_tree(dest);
	return k;
}

/* Unpacks an image's file(s) into dest (which must not exist), from a worker. */
int images_unpack_files(const char *meta, const char *rootfs, const char *dest, struct job *j,
			struct lxm_error **err)
{
	_cleanup_free_ char *half = NULL, *from = NULL, *to = NULL;
	int k;

	images_work_stage(j, "unpack");
	if (!rootfs)
		return unpack_one(j, "unified", meta, dest, err);
	k = unpack_one(NULL, "metadata", meta, dest, err);
	if (k < 0)
		return k;
	/* The rootfs half lands in <half>/rootfs, which then moves beside metadata.yaml. */
	if (asprintf(&half, "%s-rootfs", dest) < 0 || asprintf(&from, "%s/rootfs", half) < 0 ||
	    asprintf(&to, "%s/rootfs", dest) < 0) {
		lxm_rm_tree(dest);
		return lxm_error_set(err, -ENOMEM, 500, "unpack: out of memory");
	}
	k = unpack_one(j, "rootfs", rootfs, half, err);
	if (k >= 0 && rename(from, to) < 0)
		k = lxm_error_setx(err, -errno, 500, "unpack: move %s to %s", from, to);
	lxm_rm_tree(half);
	if (k < 0)
		lxm_rm_tree(dest);
	return k;
}

/* ---- the database ---- */

/* The alias names in aliases that exist already: 409 naming the first. */
int images_check_aliases_free(struct lxmd *d, const json_t *aliases, struct lxm_error **err)
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
int images_check_aliases_valid(const json_t *aliases, struct lxm_error **err)
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

int images_record_image(struct lxmd *d, const struct record *rec, struct lxm_error **err)
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
	img.type = (char *)images_type_of(rec->fp, rec->meta);
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

bool images_image_exists(struct lxmd *d, const char *fp)
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

	free(TAKE_PTR(images_store.dir));
	if (asprintf(&images_store.dir, "%s/images", d->cfg.root) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "image store: out of memory");
	k = lxm_mkdir_p(images_store.dir, 0700);
	if (k < 0) {
		lxm_error_setx(err, k, 500, "image store: create %s", images_store.dir);
		goto fail;
	}
	k = uv_async_init(d->loop, &images_store.wake, on_wake);
	if (k < 0) {
		lxm_error_set(err, k, 500, "image store: %s", uv_strerror(k));
		goto fail;
	}
	images_store.d = d;
	images_store.closing = false;
	LIST_INIT(&images_store.jobs);

	/* Work an earlier lxmd did not finish, and files the database does not know (a crash
	 * between moving them in and recording them). */
	dir = opendir(images_store.dir);
	if (!dir) {
		k = lxm_error_setx(err, -errno, 500, "image store: read %s", images_store.dir);
		lxmd_images_fini(d);
		return k;
	}
	while ((de = readdir(dir))) {
		_cleanup_free_ char *path = NULL;
		char fp[65];

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (!startswith(de->d_name, ".tmp-") && !startswith(de->d_name, ".build-") &&
		    !(store_entry(de->d_name, fp) && !images_image_exists(d, fp)))
			continue;
		if (asprintf(&path, "%s/%s", images_store.dir, de->d_name) < 0)
			continue;
		log_info("image store: removing leftover %s", path);
		images_discard(path);
	}
	return 0;
fail:
	free(TAKE_PTR(images_store.dir));
	return k;
}

static void defer_closed(uv_handle_t *h)
{
	images_job_free(h->data);
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
			fj->cb(images_store.d, fj->instance, -ECANCELED, err, fj->ud);
		}
	}
	images_job_notify(j, -ECANCELED, NULL, err);
	if (j->kind == JOB_DEFER) {
		uv_timer_stop(&j->timer);
		uv_close((uv_handle_t *)&j->timer, defer_closed);
		return;
	}
	if (!j->pending)
		images_job_free(j);
}

void lxmd_images_fini(struct lxmd *d)
{
	struct job *j;

	if (!images_store.d)
		return;
	pthread_mutex_lock(&images_store.lock);
	images_store.closing = true;
	pthread_mutex_unlock(&images_store.lock);
	uv_close((uv_handle_t *)&images_store.wake, NULL);
	/* Abandoning one job can end others (fills waiting for an unpack): start over each time. */
	for (;;) {
		LIST_FOREACH(j, &images_store.jobs, link)
		if (!j->cancelled)
			break;
		if (!j)
			break;
		job_abandon(j);
	}
	images_store.d = NULL;
	/* images_store.dir stays: workers of abandoned jobs may still be using it. */
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
	ti = images_template_image_for(name);
	return ti && images_template_for(ti->tpl, &tpl) == 0;
}

static void defer_fire(uv_timer_t *t)
{
	struct defer_job *dj = t->data;

	/* Done: lxmd_images_fini must not close the timer a second time. */
	dj->j.cancelled = true;
	images_job_notify(&dj->j, 0, dj->fp, NULL);
	uv_close((uv_handle_t *)t, defer_closed);
}

static int defer_result(struct lxmd *d, const char *fp, struct lxm_operation *op,
			lxmd_image_done_fn done, void *ud)
{
	struct defer_job *dj = calloc(1, sizeof(*dj));

	if (!dj)
		return -ENOMEM;
	images_job_init(&dj->j, JOB_DEFER);
	snprintf(dj->fp, sizeof(dj->fp), "%s", fp);
	if (images_job_wait(&dj->j, op, done, ud) < 0) {
		images_job_free(&dj->j);
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
	struct lxmd *d = images_store.d;
	json_t *aliases;
	int k;

	if (images_job_returned(&bj->j))
		return;
	if (bj->j.result < 0) {
		build_failed(bj, TAKE_PTR(bj->j.err));
		return;
	}
	if (bj->existing && images_image_exists(d, bj->fp)) {
		log_info("image '%s' built: %s, already in the store", bj->ti->key, bj->fp);
		images_job_notify(&bj->j, 0, bj->fp, NULL);
		images_job_free(&bj->j);
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
	k = images_record_image(d,
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
		if (images_store_path(bj->fp, "", &path) == 0)
			images_discard(path);
		free(TAKE_PTR(path));
		if (images_store_path(bj->fp, ".unpacked", &path) == 0)
			images_discard(path);
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
	images_job_notify(&bj->j, 0, bj->fp, NULL);
	images_job_free(&bj->j);
}

/* The thread pool's half of a build: packs the template's output into the images_store. */
static void build_pack(uv_work_t *w)
{
	struct build_job *bj = w->data;
	_cleanup_free_ char *yaml_path = NULL, *text = NULL, *tpl_dir = NULL, *rootfs = NULL;
	_cleanup_free_ char *dest = NULL, *unpacked = NULL;
	struct lxm_error **err = &bj->j.err;
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
	/* zstd: the tarball is only kept for export, and zstd packs a rootfs several times faster
	 * than gzip at a similar size, which is most of a first launch's wait after the build. */
	k = images_pack(&bj->j, text, tpl_dir, rootfs, bj->packfile, LXM_COMPRESS_ZSTD, bj->fp,
			err);
	if (k < 0) {
		bj->j.result = lxm_error_prefix(err, "pack");
		return;
	}
	bj->size = images_file_size(bj->packfile);
	if (asprintf(&dest, "%s/%s", images_store.dir, bj->fp) < 0 ||
	    asprintf(&unpacked, "%s.unpacked", dest) < 0) {
		bj->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		return;
	}
	/* The same image again (a rebuild that changed nothing): the store has it. */
	if (access(dest, F_OK) == 0) {
		bj->existing = true;
		lxm_rm_tree(bj->builddir);
		unlink(bj->packfile);
		bj->j.result = 0;
		return;
	}
	/* The build directory is the unpacked tree already: instances are filled from it. */
	lxm_rm_tree(unpacked);
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
	images_job_notify(&bj->j, err ? -err->errnum : -EIO, NULL, err);
	lxm_error_free(err);
	if (bj->builddir)
		images_discard(bj->builddir);
	if (bj->packfile)
		images_discard(bj->packfile);
	images_job_free(&bj->j);
}

/* The last non-empty line of a helper's stderr: where it says why it failed. */
const char *images_last_line(const char *text, char *buf, size_t size)
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
	if (images_job_returned(&bj->j))
		return;
	if (status != 0) {
		log_error("image '%s': template output:\n%s", bj->ti->key, errout);
		/* A release lxmd does not know, refused by the template before it began: the
		 * request was wrong, and the template's message says why. */
		if (bj->ti == &bj->own && !bj->staged)
			lxm_error_set(&err, -EINVAL, 400, "image '%s': %s", bj->ti->key,
				      images_last_line(errout, why, sizeof(why)));
		else
			lxm_error_set(&err, -EIO, 500,
				      "image '%s': template build failed (exit status %d): %s",
				      bj->ti->key, status,
				      images_last_line(errout, why, sizeof(why)));
		build_failed(bj, err);
		return;
	}
	k = uv_queue_work(images_store.d->loop, &bj->j.work, build_pack, build_record);
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
int images_build_start(struct lxmd *d, const struct template_image *ti, const char *tpl_name,
		       const char *release, struct lxm_operation *op, lxmd_image_done_fn done,
		       void *ud, struct lxm_error **err)
{
	_cleanup_free_ char *tpl = NULL, *agent = NULL;
	struct build_job *bj;
	char *argv[8];
	size_t n = 2;
	char rnd[17];
	int k;

	if (images_template_for(ti ? ti->tpl : tpl_name, &tpl) < 0)
		return lxm_error_set(err, -ENOENT, 404,
				     "image '%s' not found (its template '%s' is not installed)",
				     ti ? ti->key : tpl_name, ti ? ti->tpl : tpl_name);
	bj = calloc(1, sizeof(*bj));
	if (!bj)
		return -ENOMEM;
	images_job_init(&bj->j, JOB_BUILD);
	bj->ti = ti;
	if (!ti) {
		bj->ti = &bj->own;
		if (asprintf(&bj->own_key, "%s/%s", tpl_name, release) < 0 ||
		    !(bj->own_release = strdup(release))) {
			bj->own_key = NULL;
			images_job_free(&bj->j);
			return lxm_error_set(err, -ENOMEM, 500, "image: out of memory");
		}
		bj->own = (struct template_image){ .key = bj->own_key,
						   .tpl = tpl_name,
						   .release = bj->own_release };
		ti = bj->ti;
	}
	if (!(bj->j.key = strdup(ti->key)) || lxm_random_hex(rnd, 8) < 0 ||
	    asprintf(&bj->builddir, "%s/.build-%s", images_store.dir, rnd) < 0 ||
	    images_tmp_path(".tar.zst", &bj->packfile) < 0 ||
	    images_job_wait(&bj->j, op, done, ud) < 0) {
		images_job_free(&bj->j);
		return lxm_error_set(err, -ENOMEM, 500, "image '%s': out of memory", ti->key);
	}
	snprintf(bj->j.stage, sizeof(bj->j.stage), "build");
	/* A VM image gets the agent of this build (lxmd/vm/agent/ in a build tree) or the
	 * installed one; the template refuses to build without it, naming the path. */
	if (ti->vm && lxmd_find_helper("vm/agent/lxm-agent", "LXM_AGENT", &agent) == 0 &&
	    access(agent, X_OK) < 0) {
		free(TAKE_PTR(agent));
		lxmd_find_helper("lxm-agent", NULL, &agent);
	}
	argv[0] = tpl;
	argv[1] = bj->builddir;
	if (ti->release) {
		argv[n++] = (char *)"--release";
		argv[n++] = (char *)ti->release;
	}
	if (ti->vm) {
		argv[n++] = (char *)"--vm";
		argv[n++] = (char *)"--agent";
		argv[n++] = agent ? agent : (char *)"lxm-agent";
	}
	argv[n] = NULL;
	log_info("image '%s': building it with %s", ti->key, tpl);
	k = lxmd_child_run_lines(d->loop, argv, build_line, build_exited, bj, &bj->j.child);
	if (k < 0) {
		/* The waiter is the caller, told through err: not called back. */
		images_job_free(&bj->j);
		return lxm_error_set(err, k, 500, "image '%s': run %s: %s", ti->key, tpl,
				     uv_strerror(k));
	}
	bj->j.pending = true;
	images_op_progress(op, "build", 0, 0);
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
	ti = images_template_image_for(name);
	if (!ti || !rerr || rerr->status != 404) {
		if (err && !*err)
			*err = TAKE_PTR(rerr);
		return k;
	}
	j = images_job_find(JOB_BUILD, ti->key);
	if (j) {
		log_info("image '%s': waiting for the build in progress", name);
		if (images_job_wait(j, op, done, ud) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "image '%s': out of memory", name);
		images_op_progress(op, j->stage, 0, 0);
		return 0;
	}
	return images_build_start(d, ti, NULL, NULL, op, done, ud, err);
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
	images_job_notify(&ij->j, result, ij->fp, err);
	lxm_error_free(err);
	images_job_free(&ij->j);
}

/* First stage, thread pool: metadata.yaml and the fingerprint. */
static void import_hash(uv_work_t *w)
{
	struct import_job *ij = w->data;
	struct lxm_error **err = &ij->j.err;
	_cleanup_free_ char *text = NULL, *sum = NULL;
	const char *read_args[] = { "read-metadata", ij->meta_path, NULL };
	const char *sum_args[] = { "sha256", ij->meta_path, ij->rootfs_path, NULL };
	int k;

	images_work_stage(&ij->j, "verify");
	k = images_tool_run(NULL, read_args, NULL, &text, err);
	if (k >= 0)
		k = lxm_image_metadata_parse(text, strlen(text), &ij->meta, err);
	if (k >= 0)
		k = images_tool_run(NULL, sum_args, NULL, &sum, err);
	if (k >= 0 && strlen(sum) != 64 + 1)
		k = lxm_error_set(err, -EIO, 500, "%s sha256: unexpected output '%.80s'",
				  LXM_IMAGETOOL_NAME, sum);
	if (k >= 0)
		snprintf(ij->fp, sizeof(ij->fp), "%.64s", sum);
	if (k >= 0 && ij->expected_fp && strcasecmp(ij->expected_fp, ij->fp) != 0)
		k = lxm_error_set(err, -EINVAL, 400,
				  "fingerprint mismatch: the upload's sha256 is %s, not %s", ij->fp,
				  ij->expected_fp);
	ij->size = images_file_size(ij->meta_path) + images_file_size(ij->rootfs_path);
	ij->j.result = k;
}

/* Second stage, thread pool: the whole content checked by unpacking it, then moved in. */
static void import_unpack(uv_work_t *w)
{
	struct import_job *ij = w->data;
	struct lxm_error **err = &ij->j.err;
	_cleanup_free_ char *tmp = NULL, *dest = NULL, *rootfs = NULL, *unpacked = NULL;
	int k;

	if (images_tmp_path("", &tmp) < 0 ||
	    asprintf(&dest, "%s/%s", images_store.dir, ij->fp) < 0 ||
	    asprintf(&rootfs, "%s.rootfs", dest) < 0 ||
	    asprintf(&unpacked, "%s.unpacked", dest) < 0) {
		ij->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		return;
	}
	k = images_unpack_files(ij->meta_path, ij->rootfs_path, tmp, &ij->j, err);
	if (k < 0) {
		ij->j.result = lxm_error_prefix(err, "unpack");
		return;
	}
	/* The fingerprint is claimed (not in the database, no other import of it): anything under
	 * its names is a leftover. */
	lxm_rm_tree(unpacked);
	if (rename(tmp, unpacked) < 0) {
		k = lxm_error_setx(err, -errno, 500, "move %s to %s", tmp, unpacked);
		lxm_rm_tree(tmp);
	} else if (rename(ij->meta_path, dest) < 0) {
		k = lxm_error_setx(err, -errno, 500, "move %s to %s", ij->meta_path, dest);
	} else if (ij->rootfs_path && rename(ij->rootfs_path, rootfs) < 0) {
		k = lxm_error_setx(err, -errno, 500, "move %s to %s", ij->rootfs_path, rootfs);
		rename(dest, ij->meta_path);
	}
	if (k < 0)
		lxm_rm_tree(unpacked);
	ij->j.result = k;
}

static void import_recorded(struct import_job *ij)
{
	_cleanup_free_ char *dest = NULL, *rootfs = NULL, *unpacked = NULL;
	struct lxm_error *err = NULL;
	int k;

	k = images_record_image(images_store.d,
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
		if (images_store_path(ij->fp, "", &dest) == 0)
			images_discard(dest);
		if (images_store_path(ij->fp, ".rootfs", &rootfs) == 0)
			images_discard(rootfs);
		if (images_store_path(ij->fp, ".unpacked", &unpacked) == 0)
			images_discard(unpacked);
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
		images_job_free(&ij->j);
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
	other = images_job_find(JOB_IMPORT, ij->fp);
	if (images_image_exists(images_store.d, ij->fp) || other) {
		lxm_error_set(&err, -EEXIST, 409, "image %s already exists", ij->fp);
		import_end(ij, -EEXIST, err);
		return;
	}
	if (images_check_aliases_free(images_store.d, ij->aliases, &err) < 0) {
		lxm_error_prefix(&err, "import image %s", ij->fp);
		import_end(ij, -EEXIST, err);
		return;
	}
	ij->j.key = strdup(ij->fp);
	k = ij->j.key
		    ? uv_queue_work(images_store.d->loop, &ij->j.work, import_unpack, import_after)
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
	images_job_init(&ij->j, JOB_IMPORT);
	ij->public = imp->public;
	if (!(ij->meta_path = strdup(imp->meta_path)) ||
	    (imp->rootfs_path && !(ij->rootfs_path = strdup(imp->rootfs_path))) ||
	    !(ij->filename = strdup(imp->filename ? imp->filename : "")) ||
	    (imp->expected_fp && *imp->expected_fp &&
	     !(ij->expected_fp = strdup(imp->expected_fp))) ||
	    images_job_wait(&ij->j, op, done, ud) < 0) {
		images_job_free(&ij->j);
		k = -ENOMEM;
		goto consumed;
	}
	ij->properties = imp->properties ? json_deep_copy(imp->properties) : NULL;
	ij->aliases = imp->aliases ? json_deep_copy(imp->aliases) : NULL;
	/* Taken aliases fail now rather than after the upload was hashed and unpacked. */
	k = images_check_aliases_free(d, ij->aliases, err);
	if (k < 0) {
		images_job_free(&ij->j);
		lxm_error_prefix(err, "import image");
		goto consumed_err;
	}
	k = uv_queue_work(d->loop, &ij->j.work, import_hash, import_after);
	if (k < 0) {
		images_job_free(&ij->j);
		lxm_error_set(err, k, 500, "import image: queue work: %s", uv_strerror(k));
		goto consumed_err;
	}
	ij->j.pending = true;
	images_op_progress(op, "verify", 0, 0);
	return 0;
consumed:
	lxm_error_set(err, k, 500, "import image: out of memory");
consumed_err:
	unlink(imp->meta_path);
	if (imp->rootfs_path)
		unlink(imp->rootfs_path);
	return k;
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
	if (images_store_path(fp, "", &meta) < 0 || images_store_path(fp, ".rootfs", &rootfs) < 0)
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

	LIST_FOREACH(j, &images_store.jobs, link)
	if ((j->kind == JOB_FILL || j->kind == JOB_UNPACK) && !j->cancelled && streq(j->key, fp))
		return lxm_error_set(err, -EBUSY, 400,
				     "image %s is in use: an instance is being created from it",
				     fp);
	k = lxm_db_image_delete(d->db, fp, err);
	if (k < 0)
		return k;
	for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
		_cleanup_free_ char *path = NULL;

		if (images_store_path(fp, suffixes[i], &path) == 0)
			images_discard(path);
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

void images_req_free(struct image_req *q)
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
	bool users = false;
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
		/* Now a user's image: auto_update as the request says, not as
		 * images.auto_update_cached made it. */
		users = true;
	}
	if ((q->public && !img->public) || (q->auto_update && !img->auto_update) ||
	    (users && img->auto_update != q->auto_update)) {
		img->public |= q->public;
		img->auto_update = users ? q->auto_update : img->auto_update || q->auto_update;
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
void images_req_done(struct lxmd *d, int result, const char *fp, const struct lxm_error *jerr,
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
	images_req_free(q);
}

json_t *images_aliases_copy(const json_t *aliases)
{
	return aliases ? json_deep_copy(aliases) : NULL;
}
