/* The image store, between images and instances: a new instance's rootfs filled from an image
 * (unpacked once into <fp>.unpacked, shared by concurrent fills, then copied), and an instance or
 * one of its snapshots published as a new image. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "instance.h"
#include "json.h"
#include "log.h"
#include "server-config.h"
#include "storage/storage.h"
#include "util.h"
#include "volumes.h"
#include "yaml.h"

/* ---- fill ---- */

static void fill_end(struct fill_job *fj, int result, struct lxm_error *err)
{
	struct lxmd *d = images_store.d;

	if (result < 0) {
		lxm_error_prefix(&err, "fill rootfs from image %.12s", fj->j.key);
		log_error("instance '%s': %s", fj->instance, err ? err->msg : "fill failed");
	} else {
		lxm_db_image_touch(d->db, fj->j.key, lxm_now_ns() / 1000000000LL, NULL);
	}
	images_job_flush(&fj->j);
	fj->ended = true;
	fj->cb(d, fj->instance, result, err, fj->ud);
	lxm_error_free(err);
	images_job_free(&fj->j);
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

/* Copies the files of directory from (d, open) into directory to (existing) with mode; what
 * names them in errors. */
static int copy_dir_files(DIR *d, const char *from, const char *to, mode_t mode, const char *what,
			  struct lxm_error **err)
{
	struct dirent *de;

	while ((de = readdir(d))) {
		_cleanup_free_ char *src = NULL, *dst = NULL, *body = NULL;
		size_t len = 0;
		int k;

		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&src, "%s/%s", from, de->d_name) < 0 ||
		    asprintf(&dst, "%s/%s", to, de->d_name) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		k = lxm_read_file(src, &body, &len);
		if (k >= 0)
			k = lxm_write_file_atomic(dst, body, len, mode);
		if (k < 0)
			return lxm_error_setx(err, k, 500, "copy %s %s", what, src);
	}
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
	size_t len = 0;
	int k;

	if (asprintf(&src, "%s/%s.unpacked/metadata.yaml", images_store.dir, fj->j.key) < 0 ||
	    asprintf(&tsrc, "%s/%s.unpacked/templates", images_store.dir, fj->j.key) < 0 ||
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
		k = copy_dir_files(dir, tsrc, tdst, 0600, "template", err);
		if (k < 0) {
			fj->j.result = k;
			return;
		}
	}
	/* A virtual machine's root is a disk lxmd does not mount: the image's "create" templates
	 * (hostname, hosts) are not applied to it, nor is /etc/machine-id reset; the guest agent
	 * or cloud-init does that inside. */
	if (fj->vm) {
		fj->j.result = 0;
		return;
	}
	images_work_stage(&fj->j, "templates");
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

	if (images_job_returned(&fj->j))
		return;
	fill_end(fj, fj->j.result, TAKE_PTR(fj->j.err));
}

/* Thread pool: the instance's volume, from the pool's image volume (made from <fp>.unpacked the
 * first time). */
static void fill_volume(uv_work_t *w)
{
	struct fill_job *fj = w->data;
	_cleanup_free_ char *unpacked = NULL;

	if (images_store_path(fj->j.key, ".unpacked", &unpacked) < 0) {
		fj->j.result = lxm_error_set(&fj->j.err, -ENOMEM, 500, "out of memory");
		return;
	}
	fj->j.result =
		lxmd_volume_create(fj->d, fj->pool, fj->instance, fj->j.key, unpacked, &fj->j.err);
}

static void fill_volumed(uv_work_t *w, int status)
{
	struct fill_job *fj = w->data;
	struct lxm_error *err = NULL;
	int k;

	(void)status;
	if (images_job_returned(&fj->j))
		return;
	if (fj->j.result < 0) {
		fill_end(fj, fj->j.result, TAKE_PTR(fj->j.err));
		return;
	}
	k = uv_queue_work(images_store.d->loop, &fj->j.work, fill_templates, fill_templated);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "queue work: %s", uv_strerror(k));
		fill_end(fj, k, err);
		return;
	}
	fj->j.pending = true;
}

static void fill_copy(struct fill_job *fj)
{
	struct lxm_error *err = NULL;
	int k;

	images_op_progress(fj->op, "copy", 0, 0);
	k = uv_queue_work(images_store.d->loop, &fj->j.work, fill_volume, fill_volumed);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "queue work: %s", uv_strerror(k));
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

	if (images_tmp_path("", &tmp) < 0) {
		uj->j.result = lxm_error_set(&uj->j.err, -ENOMEM, 500, "out of memory");
		return;
	}
	k = images_unpack_files(uj->meta_path, uj->rootfs_path, tmp, &uj->j, &uj->j.err);
	if (k < 0)
		lxm_error_prefix(&uj->j.err, "unpack");
	if (k >= 0 && rename(tmp, uj->dest) < 0) {
		k = lxm_error_setx(&uj->j.err, -errno, 500, "move %s to %s", tmp, uj->dest);
		lxm_rm_tree(tmp);
	}
	uj->j.result = k;
}

static void unpack_after(uv_work_t *w, int status)
{
	struct unpack_job *uj = w->data;

	uj->j.pending = false;
	if (!uj->j.cancelled)
		images_job_notify(&uj->j, uj->j.result, uj->j.key, uj->j.err);
	images_job_free(&uj->j);
}

/* Starts (or joins) the unpacking of image fp into <fp>.unpacked; fj waits for it. */
static int unpack_wait(struct lxmd *d, const char *fp, struct fill_job *fj)
{
	struct unpack_job *uj;
	struct job *j = images_job_find(JOB_UNPACK, fp);
	int k;

	if (j)
		return images_job_wait(j, fj->op, fill_unpacked, fj);
	uj = calloc(1, sizeof(*uj));
	if (!uj)
		return -ENOMEM;
	images_job_init(&uj->j, JOB_UNPACK);
	if (!(uj->j.key = strdup(fp)) || images_store_path(fp, "", &uj->meta_path) < 0 ||
	    images_store_path(fp, ".rootfs", &uj->rootfs_path) < 0 ||
	    images_store_path(fp, ".unpacked", &uj->dest) < 0 ||
	    images_job_wait(&uj->j, fj->op, fill_unpacked, fj) < 0) {
		images_job_free(&uj->j);
		return -ENOMEM;
	}
	if (access(uj->rootfs_path, F_OK) < 0)
		free(TAKE_PTR(uj->rootfs_path));
	k = uv_queue_work(d->loop, &uj->j.work, unpack_work, unpack_after);
	if (k < 0) {
		images_job_free(&uj->j);
		return k;
	}
	uj->j.pending = true;
	return 0;
}

int lxmd_image_fill_rootfs(struct lxmd *d, const char *fp, struct lxm_pool *pool,
			   const char *instance, const json_t *ctx, struct lxm_operation *op,
			   lxmd_rootfs_done_fn cb, void *ud, struct lxm_error **err)
{
	_cleanup_free_ char *unpacked = NULL;
	struct lxm_db_image *img = NULL;
	struct fill_job *fj;
	const char *type;
	bool is_vm;
	int k;

	k = lxm_db_image_get(d->db, fp, &img, err);
	if (k < 0)
		return k;
	/* A VM image has a disk, not a tree a container could run from. */
	is_vm = img->type && streq(img->type, "virtual-machine");
	lxm_db_image_free(img);
	type = json_string_value(json_object_get(json_object_get(ctx, "instance"), "type"));
	if (is_vm && !(type && streq(type, "virtual-machine")))
		return lxm_error_set(err, -EINVAL, 400,
				     "create container '%s' from image %.12s: it is a "
				     "virtual-machine image, and a container needs a container "
				     "image (launch it with --vm)",
				     instance, fp);
	if (!is_vm && type && streq(type, "virtual-machine"))
		return lxm_error_set(err, -EINVAL, 400,
				     "create virtual machine '%s' from image %.12s: it is a "
				     "container image, and a virtual machine needs a "
				     "virtual-machine image (its '<alias>/vm' variant, or launch "
				     "it without --vm)",
				     instance, fp);
	fj = calloc(1, sizeof(*fj));
	if (!fj)
		return lxm_error_set(err, -ENOMEM, 500, "fill instance '%s': out of memory",
				     instance);
	images_job_init(&fj->j, JOB_FILL);
	fj->d = d;
	fj->pool = pool;
	fj->op = op;
	fj->cb = cb;
	fj->ud = ud;
	fj->ctx = ctx ? json_deep_copy(ctx) : json_object();
	fj->vm = is_vm;
	if (!(fj->j.key = strdup(fp)) || !(fj->instance = strdup(instance)) || !fj->ctx ||
	    lxmd_instance_path(d, instance, &fj->path) < 0 ||
	    images_store_path(fp, ".unpacked", &unpacked) < 0) {
		images_job_free(&fj->j);
		return lxm_error_set(err, -ENOMEM, 500, "fill instance '%s': out of memory",
				     instance);
	}
	if (access(unpacked, F_OK) == 0) {
		fill_copy(fj);
		return 0;
	}
	k = unpack_wait(d, fp, fj);
	if (k < 0) {
		images_job_free(&fj->j);
		return lxm_error_set(err, k, 500, "fill instance '%s': unpack image %.12s: %s",
				     instance, fp, strerror(-k));
	}
	images_op_progress(op, "unpack", 0, 0);
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
	/* A virtual machine's files make a virtual-machine image, whatever its metadata said. */
	if (pj->vm) {
		json_t *lxm = json_object_get(doc, "lxm");

		if (!json_is_object(lxm)) {
			lxm = json_object();
			json_object_set_new(doc, "lxm", lxm);
		}
		json_object_set_new(lxm, "type", json_string("virtual-machine"));
	}
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

/* A virtual machine on an overlay pool has a qcow2 overlay over its image's disk: the image gets
 * one raw disk made of both. Makes dir (new) with rootfs.img flattened from path/root.qcow2 and
 * a copy of path/boot/, which images_pack takes as a VM tree at dir/rootfs. 0 when path holds
 * no qcow2 disk (a raw disk is packed where it is), 1 when dir was made. */
static int publish_flatten(const char *path, const char *dir, struct lxm_error **err)
{
	_cleanup_free_ char *qcow2 = NULL, *raw = NULL, *boot = NULL, *dboot = NULL;
	_cleanup_(closedirp) DIR *bd = NULL;
	int k;

	if (asprintf(&qcow2, "%s/" LXM_VM_DISK_QCOW2, path) < 0 ||
	    asprintf(&raw, "%s/" LXM_VM_DISK_RAW, dir) < 0 ||
	    asprintf(&boot, "%s/boot", path) < 0 || asprintf(&dboot, "%s/boot", dir) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (access(qcow2, F_OK) < 0)
		return errno == ENOENT ? 0 : lxm_error_setx(err, -errno, 500, "stat %s", qcow2);
	if (mkdir(dir, 0700) < 0 || mkdir(dboot, 0755) < 0)
		return lxm_error_setx(err, -errno, 500, "create %s", dboot);
	if ((k = lxm_vm_disk_flatten(qcow2, raw, err)) < 0)
		return lxm_error_prefix(err, "flatten the disk");
	if (!(bd = opendir(boot)))
		return lxm_error_setx(err, -errno, 500, "open %s", boot);
	k = copy_dir_files(bd, boot, dboot, 0644, "boot file", err);
	return k < 0 ? k : 1;
}

static void publish_work(uv_work_t *w)
{
	struct publish_job *pj = w->data;
	struct lxm_error **err = &pj->j.err;
	_cleanup_free_ char *yaml = NULL, *tpl_dir = NULL, *rootfs = NULL, *flat = NULL;
	int k;

	k = publish_metadata(pj, &yaml, err);
	if (k >= 0)
		k = lxm_image_metadata_parse(yaml, strlen(yaml), &pj->meta, err);
	if (k < 0) {
		pj->j.result = lxm_error_prefix(err, "metadata.yaml");
		return;
	}
	if (asprintf(&tpl_dir, "%s/templates", pj->path) < 0 ||
	    asprintf(&rootfs, "%s/rootfs", pj->path) < 0 || images_tmp_path("", &flat) < 0) {
		pj->j.result = lxm_error_set(err, -ENOMEM, 500, "out of memory");
		return;
	}
	k = publish_flatten(pj->path, flat, err);
	if (k > 0) {
		free(rootfs);
		if (asprintf(&rootfs, "%s/rootfs", flat) < 0)
			k = lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	if (k >= 0)
		k = images_pack(&pj->j, yaml, tpl_dir, rootfs, pj->packfile, pj->compression,
				pj->fp, err);
	lxm_rm_tree(flat);
	if (k < 0) {
		pj->j.result = lxm_error_prefix(err, "pack");
		lxm_rm_tree(pj->packfile);
		return;
	}
	pj->size = images_file_size(pj->packfile);
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
		images_job_free(&pj->j);
		return;
	}
	if (k < 0) {
		err = TAKE_PTR(pj->j.err);
	} else if (images_image_exists(images_store.d, pj->fp)) {
		k = lxm_error_set(&err, -EEXIST, 409, "image %s already exists", pj->fp);
	} else if (images_store_path(pj->fp, "", &dest) < 0 ||
		   asprintf(&filename, "%s.tar%s", pj->instance, ext[pj->compression]) < 0) {
		k = lxm_error_set(&err, -ENOMEM, 500, "out of memory");
	} else if (rename(pj->packfile, dest) < 0) {
		k = lxm_error_setx(&err, -errno, 500, "move %s to %s", pj->packfile, dest);
	} else {
		/* "web1/snap0" is published as web1-snap0.tar.gz. */
		for (char *c = filename; (c = strchr(c, '/'));)
			*c = '-';
		k = images_record_image(images_store.d,
					&(struct record){ .fp = pj->fp,
							  .meta = pj->meta,
							  .filename = filename,
							  .size = pj->size,
							  .public = pj->public,
							  .aliases = pj->aliases },
					&err);
		if (k < 0)
			images_discard(dest);
	}
	if (k < 0) {
		unlink(pj->packfile);
		lxm_error_prefix(&err, "publish instance '%s'", pj->instance);
		images_job_notify(&pj->j, k, NULL, err);
	} else {
		log_info("instance '%s' published as image %s", pj->instance, pj->fp);
		images_job_notify(&pj->j, 0, pj->fp, NULL);
	}
	lxm_error_free(err);
	images_job_free(&pj->j);
}

int lxmd_image_publish(struct lxmd *d, const struct lxmd_image_publish *pub,
		       struct lxm_operation *op, lxmd_image_done_fn done, void *ud,
		       struct lxm_error **err)
{
	_cleanup_(lxm_db_instance_freep) struct lxm_db_instance *inst = NULL;
	_cleanup_free_ char *compression = NULL;
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
	/* No compression asked for: the server's images.compression_algorithm. */
	compression = pub->compression && *pub->compression
			      ? strdup(pub->compression)
			      : lxmd_server_config_string(d, LXM_KEY_COMPRESSION);
	if (!compression)
		return lxm_error_set(err, -ENOMEM, 500, "publish: out of memory");
	if (lxm_compression_from_name(compression, &c) < 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "publish instance '%s': unknown compression '%s' (gzip, xz, "
				     "zstd or none)",
				     pub->instance, compression);
	json_object_foreach ((json_t *)pub->properties, key, v)
		if (!json_is_string(v))
			return lxm_error_set(err, -EINVAL, 400,
					     "publish instance '%s': property '%s' is not a string",
					     pub->instance, key);
	k = images_check_aliases_free(d, pub->aliases, err);
	if (k < 0)
		return lxm_error_prefix(err, "publish instance '%s'", pub->instance);
	pj = calloc(1, sizeof(*pj));
	if (!pj)
		return lxm_error_set(err, -ENOMEM, 500, "publish: out of memory");
	images_job_init(&pj->j, JOB_PUBLISH);
	pj->compression = c;
	pj->public = pub->public;
	pj->vm = inst->type && streq(inst->type, "virtual-machine");
	pj->properties = pub->properties ? json_deep_copy(pub->properties) : json_object();
	pj->aliases = pub->aliases ? json_deep_copy(pub->aliases) : NULL;
	if ((pub->snapshot ? asprintf(&pj->instance, "%s/%s", pub->instance, pub->snapshot) < 0
			   : !(pj->instance = strdup(pub->instance))) ||
	    !pj->properties ||
	    !(pj->architecture = strdup(inst->architecture ? inst->architecture : "")) ||
	    (pub->snapshot ? lxmd_snapshot_path(d, pub->instance, pub->snapshot, &pj->path)
			   : lxmd_instance_path(d, pub->instance, &pj->path)) < 0 ||
	    images_tmp_path(".tar", &pj->packfile) < 0 ||
	    images_job_wait(&pj->j, op, done, ud) < 0) {
		images_job_free(&pj->j);
		return lxm_error_set(err, -ENOMEM, 500, "publish: out of memory");
	}
	k = uv_queue_work(d->loop, &pj->j.work, publish_work, publish_after);
	if (k < 0) {
		images_job_free(&pj->j);
		return lxm_error_set(err, k, 500, "publish instance '%s': queue work: %s",
				     pub->instance, uv_strerror(k));
	}
	pj->j.pending = true;
	images_op_progress(op, "pack", 0, 0);
	return 0;
}
