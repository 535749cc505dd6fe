/* The image store, for images that come from a source it can go back to: the templates that
 * build images, pulls from image servers, explicit template builds, and refreshing an image
 * from where it came from. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "images/images-internal.h"
#include "images/images.h"
#include "json.h"
#include "log.h"
#include "server-config.h"
#include "util.h"

/* ---- templates ---- */

/* A virtual-machine variant is named by its container image's alias with "/vm" appended
 * ("busybox/vm", "debian/12/vm"); its key is its container key with "/vm", which a refresh splits
 * back into the template and "RELEASE/vm" (or "vm"). */
static const struct template_image template_images[] = {
	{ "busybox", "busybox", NULL, { "busybox" } },
	{ "debian/bookworm", "debian", "bookworm", { "debian", "debian/12", "debian/bookworm" } },
	{ "debian/trixie", "debian", "trixie", { "debian/13", "debian/trixie" } },
	{ "busybox/vm", "busybox", NULL, { "busybox/vm" }, true },
	{ "debian/bookworm/vm",
	  "debian",
	  "bookworm",
	  { "debian/vm", "debian/12/vm", "debian/bookworm/vm" },
	  true },
	{ "debian/trixie/vm", "debian", "trixie", { "debian/13/vm", "debian/trixie/vm" }, true },
};

const struct template_image *images_template_image_for(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(template_images); i++)
		for (size_t k = 0; k < ARRAY_SIZE(template_images[i].aliases); k++)
			if (streq(template_images[i].aliases[k], name))
				return &template_images[i];
	return NULL;
}

/* The template that builds an image: $LXM_TEMPLATES_DIR, the source tree beside a build, or the
 * installed data directory. */
int images_template_for(const char *tpl, char **ret)
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

/* ---- pull from an image server ---- */

/* Thread pool: the server's catalogue, and the image alias names there (lxm-imagetool
 * ss-find: libcurl and the parsing of the server's answers stay out of lxmd). */
static void pull_find(uv_work_t *w)
{
	struct pull_job *pj = w->data;
	struct lxm_error **err = &pj->j.err;
	_cleanup_free_ char *out = NULL;
	json_error_t jerr;
	struct utsname u;
	int k;

	if (pj->certificate) {
		if (images_tmp_path(".ca.pem", &pj->ca_file) < 0) {
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
	images_work_stage(&pj->j, "metadata");
	uname(&u);
	k = images_tool_run(NULL,
			    (const char *[]){ "ss-find", pj->server,
					      pj->ca_file ? pj->ca_file : "-", pj->alias, u.machine,
					      NULL },
			    NULL, &out, err);
	if (k >= 0) {
		pj->img = json_loads(out, JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_string(json_object_get(pj->img, "fingerprint")) ||
		    !json_is_string(json_object_get(pj->img, "meta_path")))
			k = lxm_error_set(err, -EIO, 500, "%s ss-find: unexpected output: %s",
					  LXM_IMAGETOOL_NAME,
					  pj->img ? "fields missing" : jerr.text);
	}
	if (k < 0 && *err && (*err)->status == 404) {
		/* "image 'x' on SERVER: not found (container, x86_64)". */
		const char *why = strstr((*err)->msg, "not found");
		_cleanup_free_ char *msg = strdup(why ? why : (*err)->msg);

		lxm_error_free(TAKE_PTR(*err));
		lxm_error_set(err, -ENOENT, 404, "%s", msg ? msg : "not found");
	}
	pj->j.result = k;
}

/* Thread pool: the image's files, verified, into pj->dir (lxm-imagetool ss-download, handed
 * the image ss-find described). */
static void pull_download(uv_work_t *w)
{
	struct pull_job *pj = w->data;
	_cleanup_free_ char *img = json_dumps(pj->img, JSON_COMPACT);

	images_work_stage(&pj->j, "download");
	if (!img) {
		pj->j.result = lxm_error_set(&pj->j.err, -ENOMEM, 500, "out of memory");
		return;
	}
	pj->j.result =
		images_tool_run(&pj->j,
				(const char *[]){ "ss-download", pj->server,
						  pj->ca_file ? pj->ca_file : "-", pj->dir, NULL },
				img, NULL, &pj->j.err);
}

static void pull_end(struct pull_job *pj, int result, const struct lxm_error *err)
{
	images_job_notify(&pj->j, result, pj->j.key, err);
	images_job_free(&pj->j);
}

/* For pull_found and pull_downloaded: true when the job is over, cancelled or failed (then its
 * waiters have been told). */
static bool pull_returned(struct pull_job *pj)
{
	if (images_job_returned(&pj->j))
		return true;
	if (pj->j.result < 0) {
		pull_end(pj, pj->j.result, pj->j.err);
		return true;
	}
	return false;
}

static void pull_imported(struct lxmd *d, int result, const char *fp, const struct lxm_error *err,
			  void *ud)
{
	struct pull_job *pj = ud;

	if (images_job_returned(&pj->j))
		return;
	/* Imported meanwhile by someone else: the same files, so the same image. */
	if (result == -EEXIST && images_image_exists(d, pj->j.key))
		result = 0;
	if (result >= 0) {
		/* Cached until a user's request says otherwise (req_apply). */
		lxm_db_image_set_cached(d->db, pj->j.key, true, NULL);
		lxmd_image_cached_auto_update(d, pj->j.key);
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
	const char *base, *meta_path = json_string_value(json_object_get(pj->img, "meta_path"));
	int k;

	if (pull_returned(pj))
		return;
	if (asprintf(&meta, "%s/meta", pj->dir) < 0 ||
	    (json_is_string(json_object_get(pj->img, "rootfs_path")) &&
	     asprintf(&rootfs, "%s/rootfs", pj->dir) < 0)) {
		lxm_error_set(&err, -ENOMEM, 500, "out of memory");
		pull_end(pj, -ENOMEM, err);
		return;
	}
	base = strrchr(meta_path, '/');
	first = TAILQ_FIRST(&pj->j.waiters);
	k = lxmd_image_import(
		images_store.d,
		&(struct lxmd_image_import){
			.meta_path = meta,
			.rootfs_path = rootfs,
			.filename = base ? base + 1 : meta_path,
			.expected_fp = json_string_value(json_object_get(pj->img, "fingerprint")),
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

	if (pull_returned(pj))
		return;
	fp = json_string_value(json_object_get(pj->img, "fingerprint"));
	if (images_image_exists(images_store.d, fp)) {
		log_info("image %s (%s on %s) is in the store already", fp, pj->alias, pj->server);
		images_job_notify(&pj->j, 0, fp, NULL);
		images_job_free(&pj->j);
		return;
	}
	other = images_job_find(JOB_PULL, fp);
	if (other) {
		/* One download per image: the waiters join the one in progress. */
		log_info("image %s: waiting for the download in progress", fp);
		TAILQ_CONCAT(&other->waiters, &pj->j.waiters, link);
		images_job_free(&pj->j);
		return;
	}
	if (!(pj->j.key = strdup(fp)) || images_tmp_path("", &pj->dir) < 0) {
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
	k = uv_queue_work(images_store.d->loop, &pj->j.work, pull_download, pull_downloaded);
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
	images_job_init(&pj->j, JOB_PULL);
	if (!(pj->server = strdup(p->server)) || !(pj->alias = strdup(p->alias)) ||
	    (p->certificate && *p->certificate && !(pj->certificate = strdup(p->certificate))) ||
	    images_job_wait(&pj->j, op, images_req_done, q) < 0) {
		images_job_free(&pj->j);
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", q->what);
	}
	k = uv_queue_work(d->loop, &pj->j.work, pull_find, pull_found);
	if (k < 0) {
		/* The request stays the caller's to free: take the waiter out. */
		struct waiter *w = TAILQ_FIRST(&pj->j.waiters);

		TAILQ_REMOVE(&pj->j.waiters, w, link);
		free(w);
		images_job_free(&pj->j);
		return lxm_error_set(err, k, 500, "%s: queue work: %s", q->what, uv_strerror(k));
	}
	pj->j.pending = true;
	images_op_progress(op, "metadata", 0, 0);
	return 0;
}

int lxmd_image_pull(struct lxmd *d, const struct lxmd_image_pull *p, struct lxm_operation *op,
		    lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	_cleanup_(images_req_freep) struct image_req *q = NULL;
	int k;

	k = lxmd_image_pull_check(p, err);
	if (k < 0)
		return k;
	k = images_check_aliases_valid(p->aliases, err);
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
	q->aliases = images_aliases_copy(p->aliases);
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
		if (seen || images_template_for(template_images[i].tpl, &path) < 0)
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
	if (!known || images_template_for(known->tpl, &path) < 0) {
		templates_known(list, sizeof(list));
		return lxm_error_set(err, -ENOENT, 404, "template '%s' not found (known: %s)", tpl,
				     *list ? list : "none installed");
	}
	if (!release || !*release) {
		ti = known;
	} else if (asprintf(&name, "%s/%s", tpl, release) >= 0) {
		ti = images_template_image_for(name);
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
	j = images_job_find(JOB_BUILD, ti ? ti->key : name);
	if (j) {
		if (images_job_wait(j, op, images_req_done, q) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", q->what);
		images_op_progress(op, j->stage, 0, 0);
		return 0;
	}
	k = images_build_start(d, ti, known->tpl, release, op, images_req_done, q, err);
	return k < 0 ? lxm_error_prefix(err, "%s", q->what) : 0;
}

int lxmd_image_build(struct lxmd *d, const struct lxmd_image_build *b, struct lxm_operation *op,
		     lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	_cleanup_(images_req_freep) struct image_req *q = NULL;
	int k;

	k = images_check_aliases_valid(b->aliases, err);
	if (k < 0)
		return lxm_error_prefix(err, "build image from template '%s'", b->tpl);
	q = calloc(1, sizeof(*q));
	if (!q || asprintf(&q->what, "build image from template '%s'%s%s", b->tpl,
			   b->release && *b->release ? " release " : "",
			   b->release && *b->release ? b->release : "") < 0)
		return lxm_error_set(err, -ENOMEM, 500, "build image: out of memory");
	q->public = b->public;
	q->aliases = images_aliases_copy(b->aliases);
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
	_cleanup_(images_req_freep) struct image_req *q = NULL;
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
			ti = images_template_image_for(
				json_string_value(json_object_get(a, "name")));
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
