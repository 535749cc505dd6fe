/* /1.0/images: the image store's REST side, as LXD serves it. Listing, reading and editing images
 * and their aliases; export (the file, or multipart/form-data for a split image); delete; and
 * POST /1.0/images, which takes a unified image as a raw body, a split one as
 * multipart/form-data, or a JSON request (publish an instance, pull from an image server, build
 * from a template); POST /1.0/images/<fp>/refresh.
 *
 * Uploads are streamed, never held in memory: each piece of the body goes to a spool file under
 * ROOT/images/ (".tmp-<random>", plus ".meta"/".rootfs" for the two parts of a split image) on
 * libuv's thread pool, one step at a time per request. When the body is complete the operation
 * starts and the store imports the spooled files (it moves or removes them). A body cut short
 * removes the spool files and imports nothing. Exports read the files on the thread pool too and
 * hand each piece to the connection only once the previous one was written. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "images/images.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "server.h"
#include "util.h"

/* Bytes read from an exported file per step. */
#define EXPORT_CHUNK (256 * 1024)
/* A JSON request to POST /1.0/images is small; more is refused (413). */
#define IMAGES_POST_JSON_MAX (1024 * 1024)
/* Longest alias name, in bytes. */
#define ALIAS_NAME_MAX 255
/* Go's zero time, which LXD clients read as "never". */
#define ZERO_TIME "0001-01-01T00:00:00Z"

/* ---- representation ---- */

static json_t *timestamp(int64_t sec)
{
	char buf[LXM_RFC3339_MAX];
	struct timespec ts = { .tv_sec = (time_t)sec };

	return json_string(sec ? lxm_rfc3339(&ts, buf) : ZERO_TIME);
}

/* The writable part of an image (what PUT replaces), hashed for ETag/If-Match. */
static int image_etag(const struct lxm_db_image *img, char etag[65])
{
	_cleanup_json_ json_t *j =
		json_pack("{s:b, s:O, s:b, s:o, s:[s]}", "auto_update", img->auto_update,
			  "properties", img->properties, "public", img->public, "expires_at",
			  timestamp(img->expires_at), "profiles", "default");

	return j ? lxmd_etag(j, etag) : -ENOMEM;
}

static json_t *alias_json(const struct lxm_db_image_alias *a)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "name", a->name, "description", a->description,
			 "target", a->target, "type", a->type);
}

static int alias_etag(const struct lxm_db_image_alias *a, char etag[65])
{
	_cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s}", "name", a->name, "description",
					     a->description, "target", a->target);

	return j ? lxmd_etag(j, etag) : -ENOMEM;
}

/* What an alias may be called. A '/' separates words ("debian/12"), so the name is also a path
 * below /1.0/images/aliases/: no empty, "." or ".." segments. Clients split "remote:alias" on
 * ':' and URLs on '?' and '#', so those are refused too, like spaces and control characters.
 * NULL when valid, else a sentence saying what is wrong. */
static const char *alias_name_invalid_reason(const char *name)
{
	const char *seg;

	if (!*name)
		return "it is empty";
	if (strlen(name) > ALIAS_NAME_MAX)
		return "it is longer than 255 bytes";
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return "it contains a control character";
		if (*p == ' ' || *p == '\t')
			return "it contains a space";
		if (strchr(":?#\\", *p))
			return "it contains one of ':', '?', '#' or '\\'";
	}
	for (seg = name;; seg++) {
		size_t len = strcspn(seg, "/");

		if (len == 0)
			return "it has an empty part (a leading, trailing or double '/')";
		if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return "it has a '.' or '..' part";
		seg += len;
		if (!*seg)
			return NULL;
	}
}

static int check_alias_name(const char *name, const char *what, struct lxm_error **err)
{
	const char *reason = alias_name_invalid_reason(name);

	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "%s: invalid alias name '%s': %s", what,
				     name, reason);
	return 0;
}

/* The image a URL names: a unique prefix of its fingerprint. */
static int image_from_url(struct lxmd_request *r, char **ret_fp, struct lxm_error **err)
{
	int k = lxmd_query_project(r, err);

	if (k < 0)
		return k;
	return lxm_db_image_resolve_prefix(r->d->db, r->args[0], ret_fp, err);
}

static void images_free(struct lxm_db_image **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		lxm_db_image_free(v[i]);
	free(v);
}

static void aliases_free(struct lxm_db_image_alias **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		lxm_db_image_alias_free(v[i]);
	free(v);
}

/* ---- images ---- */

/* An untrusted client (over HTTPS) sees the public images only; the others do not exist for it,
 * as in LXD. */
static bool hidden(const struct lxmd_request *r, const struct lxm_db_image *img)
{
	return r->untrusted && !img->public;
}

/* The same for an alias: hidden unless its image is public. */
static bool alias_hidden(struct lxmd_request *r, const struct lxm_db_image_alias *a)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;

	if (!r->untrusted)
		return false;
	return lxm_db_image_get(r->d->db, a->target, &img, NULL) < 0 || !img->public;
}

static int not_found(const char *what, const char *name, struct lxm_error **err)
{
	return lxm_error_set(err, -ENOENT, 404, "%s '%s' not found", what, name);
}

int lxmd_api_images_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_json_ json_t *list = json_array(), *urls = NULL;
	struct lxm_db_image **imgs = NULL;
	size_t n = 0;
	int recursion, k;

	if ((k = lxmd_query_recursion(r, &recursion, err)) < 0 ||
	    (k = lxmd_query_project(r, err)) < 0)
		return k;
	if (!list)
		return -ENOMEM;
	k = lxm_db_image_list(r->d->db, &imgs, &n, err);
	if (k < 0)
		return k;
	for (size_t i = 0; i < n; i++)
		if (!hidden(r, imgs[i]) &&
		    json_array_append_new(list, lxmd_image_json(imgs[i])) < 0) {
			images_free(imgs, n);
			return -ENOMEM;
		}
	images_free(imgs, n);
	/* The filter applies to the objects, also when the answer is their URLs. */
	k = lxmd_apply_filter(r, list, err);
	if (k < 0)
		return k;
	if (recursion > 0)
		return lxmd_respond_sync(r, TAKE_PTR(list), NULL);
	urls = json_array();
	if (!urls)
		return -ENOMEM;
	for (size_t i = 0; i < json_array_size(list); i++) {
		const char *fp =
			json_string_value(json_object_get(json_array_get(list, i), "fingerprint"));
		char *url = NULL;

		if (asprintf(&url, "/1.0/images/%s", fp) < 0)
			return -ENOMEM;
		json_array_append_new(urls, json_string(url));
		free(url);
	}
	return lxmd_respond_sync(r, TAKE_PTR(urls), NULL);
}

int lxmd_api_image_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	_cleanup_free_ char *fp = NULL;
	json_t *j;
	char etag[65];
	int k;

	if ((k = image_from_url(r, &fp, err)) < 0 ||
	    (k = lxm_db_image_get(r->d->db, fp, &img, err)) < 0)
		return k;
	if (hidden(r, img))
		return not_found("image", r->args[0], err);
	if ((k = image_etag(img, etag)) < 0)
		return k;
	j = lxmd_image_json(img);
	if (!j)
		return -ENOMEM;
	return lxmd_respond_sync(r, j, etag);
}

/* Image profiles are not stored yet: what clients send back ("default", or none) is accepted,
 * anything else refused rather than dropped. */
static int check_image_profiles(const json_t *body, const char *fp, struct lxm_error **err)
{
	const json_t *p = json_object_get(body, "profiles");
	size_t i;
	json_t *v;

	if (!p || json_is_null(p))
		return 0;
	if (!json_is_array(p))
		return lxm_error_set(err, -EINVAL, 400,
				     "update image '%s': field 'profiles' must be an array", fp);
	json_array_foreach (p, i, v)
		if (!streq(json_string_value(v), "default"))
			return lxm_error_set(err, -EOPNOTSUPP, 400,
					     "update image '%s': image profiles other than "
					     "'default' are not supported",
					     fp);
	return 0;
}

/* PUT replaces the writable fields (a missing one takes its default); PATCH changes only those
 * it names and merges properties. */
static int image_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	_cleanup_free_ char *fp = NULL;
	json_t *props = NULL;
	const char *expires = NULL;
	char etag[65];
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400, "update image '%s': request body is empty",
				     r->args[0]);
	if ((k = image_from_url(r, &fp, err)) < 0 ||
	    (k = lxm_db_image_get(r->d->db, fp, &img, err)) < 0)
		return k;
	if ((k = image_etag(img, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0)
		return lxm_error_prefix(err, "update image '%s'", fp);
	if (!patch) {
		img->public = false;
		img->auto_update = false;
		img->expires_at = 0;
	}
	if ((k = lxm_json_opt_bool(r->body, "public", &img->public, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "auto_update", &img->auto_update, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "expires_at", &expires, err)) < 0 ||
	    (k = lxm_json_opt_object(r->body, "properties", &props, err)) < 0 ||
	    (k = lxm_json_check_string_map(props, "properties", err)) < 0)
		return lxm_error_prefix(err, "update image '%s'", fp);
	if ((k = check_image_profiles(r->body, fp, err)) < 0)
		return k;
	if (expires && lxmd_parse_rfc3339(expires, &img->expires_at, NULL) < 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "update image '%s': expires_at '%s' is not an RFC 3339 time",
				     fp, expires);
	if (!patch) {
		json_decref(img->properties);
		img->properties = props ? json_deep_copy(props) : json_object();
	} else if (props) {
		json_object_update(img->properties, props);
	}
	if (!img->properties)
		return -ENOMEM;
	if ((k = lxm_db_image_update(r->d->db, img, err)) < 0)
		return k;
	{
		_cleanup_free_ char *url = NULL;

		if (asprintf(&url, "/1.0/images/%s", fp) >= 0)
			lxm_events_lifecycle(r->d->events, "image-updated", url, NULL);
	}
	return lxmd_respond_sync(r, json_object(), NULL);
}

int lxmd_api_image_put(struct lxmd_request *r, struct lxm_error **err)
{
	return image_update(r, false, err);
}

int lxmd_api_image_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return image_update(r, true, err);
}

static json_t *image_resources(const char *fp)
{
	return json_pack("{s:[s+]}", "images", "/1.0/images/", fp);
}

int lxmd_api_image_delete(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *fp = NULL, *url = NULL;
	struct lxm_operation *op = NULL;
	int k;

	if ((k = image_from_url(r, &fp, err)) < 0)
		return k;
	/* The row goes now (a client that reads the list next must not see it); the files go in
	 * the background, and the operation reports the request as LXD's does. */
	if ((k = lxmd_image_delete(r->d, fp, err)) < 0)
		return lxm_error_prefix(err, "delete image '%s'", fp);
	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, "Deleting image", image_resources(fp), NULL,
			      NULL, NULL, NULL, &op);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "delete image '%s': new operation", fp);
	lxm_operation_start(op);
	if (asprintf(&url, "/1.0/images/%s", fp) >= 0)
		lxm_events_lifecycle(r->d->events, "image-deleted", url, NULL);
	lxm_operation_finish(op, NULL);
	return lxmd_respond_async(r, op);
}

/* ---- aliases ---- */

int lxmd_api_image_aliases_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_json_ json_t *list = json_array();
	struct lxm_db_image_alias **v = NULL;
	size_t n = 0;
	int recursion, k;

	if ((k = lxmd_query_recursion(r, &recursion, err)) < 0 ||
	    (k = lxmd_query_project(r, err)) < 0)
		return k;
	if (!list)
		return -ENOMEM;
	k = lxm_db_image_alias_list(r->d->db, &v, &n, err);
	if (k < 0)
		return k;
	for (size_t i = 0; i < n; i++) {
		json_t *item;
		char *url = NULL;

		if (alias_hidden(r, v[i]))
			continue;
		if (recursion > 0) {
			item = alias_json(v[i]);
		} else {
			item = asprintf(&url, "/1.0/images/aliases/%s", v[i]->name) < 0
				       ? NULL
				       : json_string(url);
			free(url);
		}
		if (!item || json_array_append_new(list, item) < 0) {
			aliases_free(v, n);
			return -ENOMEM;
		}
	}
	aliases_free(v, n);
	return lxmd_respond_sync(r, TAKE_PTR(list), NULL);
}

/* The full fingerprint an alias request targets (a unique prefix is accepted). */
static int alias_target(struct lxmd_request *r, const char *target, const char *what, char **ret_fp,
			struct lxm_error **err)
{
	int k;

	if (!target || !*target)
		return lxm_error_set(err, -EINVAL, 400, "%s: field 'target' is required", what);
	k = lxm_db_image_resolve_prefix(r->d->db, target, ret_fp, err);
	return k < 0 ? lxm_error_prefix(err, "%s", what) : 0;
}

int lxmd_api_image_aliases_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *fp = NULL, *what = NULL, *url = NULL;
	const char *name = NULL, *desc = NULL, *target = NULL, *type = NULL;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0)
		return k;
	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "create image alias: request body is empty");
	if ((k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "description", &desc, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "target", &target, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "type", &type, err)) < 0)
		return lxm_error_prefix(err, "create image alias");
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400,
				     "create image alias: field 'name' is required");
	if (asprintf(&what, "create image alias '%s'", name) < 0)
		return -ENOMEM;
	if ((k = check_alias_name(name, "create image alias", err)) < 0 ||
	    (k = alias_target(r, target, what, &fp, err)) < 0)
		return k;
	if (type && *type && !streq(type, "container") && !streq(type, "virtual-machine"))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: unknown type '%s' (container or virtual-machine)", what,
				     type);
	if ((k = lxm_db_image_alias_create(r->d->db, name, fp, desc, err)) < 0)
		return k;
	if (asprintf(&url, "/1.0/images/aliases/%s", name) >= 0)
		lxm_events_lifecycle(r->d->events, "image-alias-created", url, NULL);
	return lxmd_respond_sync(r, json_object(), NULL);
}

int lxmd_api_image_alias_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_(lxm_db_image_alias_freep) struct lxm_db_image_alias *a = NULL;
	char etag[65];
	json_t *j;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_image_alias_get(r->d->db, r->args[0], &a, err)) < 0)
		return k;
	if (alias_hidden(r, a))
		return not_found("image alias", r->args[0], err);
	if ((k = alias_etag(a, etag)) < 0)
		return k;
	j = alias_json(a);
	return j ? lxmd_respond_sync(r, j, etag) : -ENOMEM;
}

/* PUT replaces description and target (both required by LXD's clients' round trip: target
 * stays when left out); PATCH changes what it names. */
static int alias_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_(lxm_db_image_alias_freep) struct lxm_db_image_alias *a = NULL;
	_cleanup_free_ char *fp = NULL, *what = NULL, *url = NULL;
	const char *desc = NULL, *target = NULL;
	char etag[65];
	int k;

	if (asprintf(&what, "update image alias '%s'", r->args[0]) < 0)
		return -ENOMEM;
	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400, "%s: request body is empty", what);
	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_image_alias_get(r->d->db, r->args[0], &a, err)) < 0)
		return k;
	if ((k = alias_etag(a, etag)) < 0)
		return k;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0)
		return lxm_error_prefix(err, "%s", what);
	if ((k = lxm_json_opt_string(r->body, "description", &desc, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "target", &target, err)) < 0)
		return lxm_error_prefix(err, "%s", what);
	if (target && *target) {
		if ((k = alias_target(r, target, what, &fp, err)) < 0)
			return k;
	} else if (!(fp = strdup(a->target))) {
		return -ENOMEM;
	}
	if (!desc)
		desc = patch ? a->description : "";
	if ((k = lxm_db_image_alias_update(r->d->db, a->name, fp, desc, err)) < 0)
		return k;
	if (asprintf(&url, "/1.0/images/aliases/%s", a->name) >= 0)
		lxm_events_lifecycle(r->d->events, "image-alias-updated", url, NULL);
	return lxmd_respond_sync(r, json_object(), NULL);
}

int lxmd_api_image_alias_put(struct lxmd_request *r, struct lxm_error **err)
{
	return alias_update(r, false, err);
}

int lxmd_api_image_alias_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return alias_update(r, true, err);
}

int lxmd_api_image_alias_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *what = NULL, *url = NULL;
	const char *name = NULL;
	int k;

	if (asprintf(&what, "rename image alias '%s'", r->args[0]) < 0)
		return -ENOMEM;
	if ((k = lxmd_query_project(r, err)) < 0)
		return k;
	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400, "%s: request body is empty", what);
	if ((k = lxm_json_opt_string(r->body, "name", &name, err)) < 0)
		return lxm_error_prefix(err, "%s", what);
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400, "%s: field 'name' is required", what);
	if ((k = check_alias_name(name, what, err)) < 0)
		return k;
	if ((k = lxm_db_image_alias_rename(r->d->db, r->args[0], name, err)) < 0)
		return k;
	if (asprintf(&url, "/1.0/images/aliases/%s", name) >= 0)
		lxm_events_lifecycle(r->d->events, "image-alias-renamed", url, NULL);
	return lxmd_respond_sync(r, json_object(), NULL);
}

int lxmd_api_image_alias_delete(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *url = NULL;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0 ||
	    (k = lxm_db_image_alias_delete(r->d->db, r->args[0], err)) < 0)
		return k;
	if (asprintf(&url, "/1.0/images/aliases/%s", r->args[0]) >= 0)
		lxm_events_lifecycle(r->d->events, "image-alias-deleted", url, NULL);
	return lxmd_respond_sync(r, json_object(), NULL);
}

/* ---- export ---- */

/* One piece of an export: text made here (multipart boundaries and part headers) or a file. */
struct export_seg {
	char *text;    /* bytes to send as they are, or NULL for a file */
	size_t len;    /* bytes in text */
	char *path;    /* the file to send (text NULL) */
	int fd;	       /* opened on the thread pool, or -1 */
	uint64_t left; /* file bytes still to send */
};

struct export_job {
	uv_work_t work;		  /* libuv's */
	struct lxmd *d;		  /* the daemon */
	struct lxmd_request *r;	  /* the request; NULL once the client went away or was answered */
	bool busy;		  /* a step is queued on the thread pool */
	char *fp;		  /* the image */
	char *filename;		  /* what the client saves it as */
	bool split;		  /* metadata and rootfs files: multipart/form-data */
	struct export_seg seg[5]; /* unified: the file; split: head, metadata, head, rootfs, end */
	size_t n_seg;		  /* used entries of seg */
	size_t cur;		  /* the segment being sent */
	char rootfs_ext[16];	  /* split: the rootfs file's kind, for its part's file name */
	char *data;		  /* the read buffer */
	ssize_t got;		  /* bytes the last read gave */
	int result;		  /* what the last step gave: 0 or -errno */
	const char *step;	  /* the step that failed */
};

static void export_job_free(struct export_job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n_seg; i++) {
		if (j->seg[i].fd >= 0)
			close(j->seg[i].fd);
		free(j->seg[i].text);
		free(j->seg[i].path);
	}
	free(j->fp);
	free(j->filename);
	free(j->data);
	free(j);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct export_job *, export_job_free)

/* The kind of a rootfs file by its first bytes, as a file name extension. */
static const char *rootfs_ext(int fd)
{
	unsigned char m[6] = { 0 };

	if (pread(fd, m, sizeof(m), 0) < (ssize_t)sizeof(m))
		return ".tar";
	if (memcmp(m, "hsqs", 4) == 0)
		return ".squashfs";
	if (m[0] == 0x1f && m[1] == 0x8b)
		return ".tar.gz";
	if (memcmp(m,
		   "\xfd"
		   "7zXZ\0",
		   6) == 0)
		return ".tar.xz";
	if (memcmp(m, "\x28\xb5\x2f\xfd", 4) == 0)
		return ".tar.zst";
	return ".tar";
}

static void export_open_work(uv_work_t *w)
{
	struct export_job *j = w->data;
	struct stat st;

	j->result = 0;
	for (size_t i = 0; i < j->n_seg; i++) {
		struct export_seg *s = &j->seg[i];

		if (!s->path)
			continue;
		j->step = "open";
		s->fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (s->fd < 0 || fstat(s->fd, &st) < 0) {
			j->result = -errno;
			return;
		}
		s->left = (uint64_t)st.st_size;
		if (i == 3)
			snprintf(j->rootfs_ext, sizeof(j->rootfs_ext), "%s", rootfs_ext(s->fd));
	}
}

static void export_read_work(uv_work_t *w)
{
	struct export_job *j = w->data;
	struct export_seg *s = &j->seg[j->cur];
	size_t want = s->left < EXPORT_CHUNK ? (size_t)s->left : EXPORT_CHUNK;

	do
		j->got = read(s->fd, j->data, want);
	while (j->got < 0 && errno == EINTR);
	j->result = j->got < 0 ? -errno : 0;
}

/* The job ends; descriptors are closed on the thread pool (a close can block on some file
 * systems), or here when none is open. */
static void export_free_after(uv_work_t *w, int status)
{
	export_job_free(w->data);
}

static void export_close_work(uv_work_t *w)
{
	struct export_job *j = w->data;

	for (size_t i = 0; i < j->n_seg; i++)
		if (j->seg[i].fd >= 0)
			close(TAKE_FD(j->seg[i].fd));
}

static void export_end(struct export_job *j)
{
	j->r = NULL;
	j->work.data = j;
	if (uv_queue_work(j->d->loop, &j->work, export_close_work, export_free_after) < 0)
		export_job_free(j);
}

static void export_read_done(uv_work_t *w, int status);

/* Sends the next piece, or ends the response. */
static void export_next(struct export_job *j)
{
	struct export_seg *s;
	int k;

	while (j->cur < j->n_seg && j->seg[j->cur].text == NULL && j->seg[j->cur].left == 0)
		j->cur++;
	if (j->cur == j->n_seg) {
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		export_end(j);
		return;
	}
	s = &j->seg[j->cur];
	if (s->text) {
		j->cur++;
		k = lxmd_respond_raw_write(j->r, s->text, s->len, NULL);
		if (k < 0) {
			lxmd_respond_raw_end(TAKE_PTR(j->r));
			export_end(j);
			return;
		}
		export_next(j);
		return;
	}
	j->work.data = j;
	k = uv_queue_work(j->d->loop, &j->work, export_read_work, export_read_done);
	if (k < 0) {
		log_warn("export image '%s': cannot queue a read: %s", j->fp, uv_strerror(k));
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		export_end(j);
		return;
	}
	j->busy = true;
}

static void export_written(struct lxmd_request *r)
{
	export_next(r->defer_data);
}

static void export_read_done(uv_work_t *w, int status)
{
	struct export_job *j = w->data;

	j->busy = false;
	if (!j->r) {
		export_end(j);
		return;
	}
	/* The head is out: a failure (or a file that shrank) can only cut the body short, which
	 * closes the connection so that the client sees it. */
	if (j->result < 0 || j->got == 0) {
		if (j->result < 0)
			log_warn("export image '%s': read: %s", j->fp, strerror(-j->result));
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		export_end(j);
		return;
	}
	j->seg[j->cur].left -= (uint64_t)j->got;
	if (lxmd_respond_raw_write(j->r, j->data, (size_t)j->got, export_written) < 0) {
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		export_end(j);
	}
}

/* A part's head in multipart/form-data. */
static char *part_head(const char *boundary, bool first, const char *name, const char *filename)
{
	char *s = NULL;

	if (asprintf(&s,
		     "%s--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
		     "Content-Type: application/octet-stream\r\n\r\n",
		     first ? "" : "\r\n", boundary, name, filename) < 0)
		return NULL;
	return s;
}

/* Quotes and backslashes would end the quoted file name early: they become '_'. */
static void sanitize_filename(char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			*s = '_';
}

static void export_open_done(uv_work_t *w, int status)
{
	struct export_job *j = w->data;
	struct lxmd_request *r = j->r;
	struct lxm_error *err = NULL;
	char boundary[33], ctype[96], disp[512];
	const char *extra[] = { disp, NULL };
	int64_t total = 0;
	int k;

	j->busy = false;
	if (!r) {
		export_end(j);
		return;
	}
	if (j->result < 0) {
		lxm_error_setx(&err, j->result, j->result == -ENOENT ? 404 : 500,
			       "export image '%s': %s image file", j->fp, j->step);
		j->r = NULL;
		lxmd_respond_error(r, err);
		export_end(j);
		return;
	}
	if (j->split) {
		_cleanup_free_ char *rootfs_name = NULL;

		if (lxm_random_hex(boundary, 16) < 0 ||
		    asprintf(&rootfs_name, "%s%s", j->fp, j->rootfs_ext) < 0 ||
		    !(j->seg[0].text = part_head(boundary, true, "metadata", j->filename)) ||
		    !(j->seg[2].text = part_head(boundary, false, "rootfs", rootfs_name)) ||
		    asprintf(&j->seg[4].text, "\r\n--%s--\r\n", boundary) < 0) {
			j->r = NULL;
			lxm_error_set(&err, -ENOMEM, 500, "export image '%s': out of memory",
				      j->fp);
			lxmd_respond_error(r, err);
			export_end(j);
			return;
		}
		for (size_t i = 0; i < 5; i += 2)
			j->seg[i].len = strlen(j->seg[i].text);
		snprintf(ctype, sizeof(ctype), "multipart/form-data; boundary=%s", boundary);
	} else {
		snprintf(ctype, sizeof(ctype), "application/octet-stream");
	}
	for (size_t i = 0; i < j->n_seg; i++)
		total += j->seg[i].text ? (int64_t)j->seg[i].len : (int64_t)j->seg[i].left;
	snprintf(disp, sizeof(disp), "Content-Disposition: attachment; filename=\"%s\"",
		 j->filename);
	j->data = malloc(EXPORT_CHUNK);
	k = j->data ? lxmd_respond_raw_head(r, 200, ctype, total, j->split ? NULL : extra)
		    : -ENOMEM;
	if (k < 0) {
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		export_end(j);
		return;
	}
	export_next(j);
}

static void export_abort(struct lxmd_request *r)
{
	struct export_job *j = r->defer_data;

	j->r = NULL;
	if (!j->busy)
		export_end(j);
}

int lxmd_api_image_export_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_(export_job_freep) struct export_job *j = NULL;
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	_cleanup_free_ char *fp = NULL, *meta = NULL, *rootfs = NULL;
	int k;

	if ((k = image_from_url(r, &fp, err)) < 0 ||
	    (k = lxm_db_image_get(r->d->db, fp, &img, err)) < 0)
		return k;
	if (hidden(r, img))
		return not_found("image", r->args[0], err);
	if ((k = lxmd_image_files(r->d, fp, &meta, &rootfs, err)) < 0)
		return lxm_error_prefix(err, "export image '%s'", fp);
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(j->seg); i++)
		j->seg[i].fd = -1;
	j->d = r->d;
	j->r = r;
	j->split = rootfs != NULL;
	j->fp = TAKE_PTR(fp);
	if (*img->filename)
		j->filename = strdup(img->filename);
	else if (asprintf(&j->filename, "%s%s", j->fp, j->split ? ".meta.tar" : ".tar") < 0)
		j->filename = NULL;
	if (!j->filename)
		return -ENOMEM;
	sanitize_filename(j->filename);
	if (j->split) {
		j->n_seg = 5;
		j->seg[1].path = TAKE_PTR(meta);
		j->seg[3].path = TAKE_PTR(rootfs);
	} else {
		j->n_seg = 1;
		j->seg[0].path = TAKE_PTR(meta);
	}
	j->work.data = j;
	k = uv_queue_work(r->d->loop, &j->work, export_open_work, export_open_done);
	if (k < 0)
		return lxm_error_set(err, k, 500, "export image '%s': queue work: %s", j->fp,
				     uv_strerror(k));
	j->busy = true;
	r->deferred = true;
	r->on_abort = export_abort;
	r->defer_data = TAKE_PTR(j);
	return 0;
}

/* ---- upload: POST /1.0/images ---- */

enum upload_kind {
	UPLOAD_RAW,	  /* the body is a unified image */
	UPLOAD_MULTIPART, /* multipart/form-data: parts "metadata" and "rootfs" */
	UPLOAD_JSON,	  /* a JSON request (publish) */
};

enum mp_state {
	MP_PREAMBLE, /* before the first delimiter */
	MP_DELIM,    /* after a delimiter: "\r\n" (a part follows) or "--" (the end) */
	MP_HEADERS,  /* a part's headers, up to the blank line */
	MP_BODY,     /* a part's content, up to the next delimiter */
	MP_DONE,     /* after the closing delimiter: the epilogue is ignored */
};

/* The two files of a split image, indexed by part. */
enum { PART_META, PART_ROOTFS, _PART_MAX };

/* A part's headers may not be longer than this. */
#define MP_HEADERS_MAX (16 * 1024)

struct upload {
	uv_work_t work;		 /* libuv's */
	struct lxmd *d;		 /* the daemon */
	struct lxmd_request *r;	 /* the request; NULL once the client went away or was answered */
	enum upload_kind kind;	 /* what the body is */
	bool busy;		 /* a step is queued on the thread pool */
	char *dir;		 /* ROOT/images */
	char *paths[_PART_MAX];	 /* spool files (raw: PART_META only), "" until created */
	int fds[_PART_MAX];	 /* their descriptors while being written, or -1 */
	bool created[_PART_MAX]; /* the spool file exists (and must go on failure) */
	uint64_t size;		 /* bytes spooled */
	char *data;		 /* the piece being written */
	size_t len;		 /* bytes in data */
	char *delim;		 /* multipart: "\r\n--<boundary>" */
	size_t delim_len;	 /* bytes in delim */
	enum mp_state state;	 /* multipart: where the parser is */
	int part;		 /* multipart: the part being written, or -1 */
	char *buf;		 /* multipart: bytes not consumed yet */
	size_t buf_len;		 /* bytes in buf */
	char *part_filename;	 /* multipart: the metadata part's file name */
	char *json;		 /* JSON: the body so far */
	size_t json_len;	 /* bytes in json */
	char *expected_fp;	 /* X-LXD-fingerprint, or NULL */
	char *filename;		 /* X-LXD-filename, or NULL */
	bool public;		 /* X-LXD-public */
	json_t *properties;	 /* X-LXD-properties as an object, or NULL */
	int result;		 /* what the last step gave: 0 or -errno */
	int status;		 /* HTTP status for a failed step */
	const char *step;	 /* the step that failed ("write", ...) */
	const char *reason;	 /* a sentence that replaces "step: strerror", or NULL */
	struct lxm_error *error; /* the answer once the spool files are gone */
};

static void upload_free(struct upload *u)
{
	if (!u)
		return;
	for (int i = 0; i < _PART_MAX; i++) {
		if (u->fds[i] >= 0)
			close(u->fds[i]);
		free(u->paths[i]);
	}
	free(u->dir);
	free(u->data);
	free(u->delim);
	free(u->buf);
	free(u->part_filename);
	free(u->json);
	free(u->expected_fp);
	free(u->filename);
	json_decref(u->properties);
	lxm_error_free(u->error);
	free(u);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct upload *, upload_free)

static int upload_fail(struct upload *u, int result, int status, const char *reason)
{
	u->result = result;
	u->status = status;
	u->reason = reason;
	return result;
}

/* ---- worker side ---- */

static int spool_open(struct upload *u, int part)
{
	int k;

	if (u->fds[part] >= 0)
		return 0;
	if (u->created[part])
		return upload_fail(u, -EINVAL, 400, "a part comes twice");
	u->step = "create spool directory";
	k = lxm_mkdir_p(u->dir, 0700);
	if (k < 0)
		return upload_fail(u, k, 500, NULL);
	u->step = "create spool file";
	u->fds[part] =
		open(u->paths[part], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (u->fds[part] < 0)
		return upload_fail(u, -errno, 500, NULL);
	u->created[part] = true;
	return 0;
}

static int spool_write(struct upload *u, int part, const char *data, size_t len)
{
	int k;

	if (len == 0)
		return 0;
	u->step = "write spool file";
	k = lxm_write_all(u->fds[part], data, len);
	if (k < 0)
		return upload_fail(u, k, k == -ENOSPC || k == -EDQUOT ? 507 : 500, NULL);
	u->size += len;
	return 0;
}

/* The value of parameter key in a header value ("form-data; name=\"rootfs\""), unquoted;
 * NULL when absent. */
static char *header_param(const char *value, const char *key)
{
	size_t klen = strlen(key);

	for (const char *p = strchr(value, ';'); p; p = strchr(p + 1, ';')) {
		const char *v = p + 1;

		v += strspn(v, " \t");
		if (strncasecmp(v, key, klen) != 0 || v[klen] != '=')
			continue;
		v += klen + 1;
		if (*v == '"') {
			const char *end = strchr(v + 1, '"');

			return end ? strndup(v + 1, (size_t)(end - v - 1)) : NULL;
		}
		return strndup(v, strcspn(v, "; \t\r\n"));
	}
	return NULL;
}

/* A part's headers are complete (len bytes in head, without the blank line): opens its file. */
static int multipart_part_begin(struct upload *u, const char *head, size_t len)
{
	_cleanup_free_ char *copy = strndup(head, len), *name = NULL, *filename = NULL;

	if (!copy)
		return upload_fail(u, -ENOMEM, 500, NULL);
	for (char *line = copy, *next; line; line = next) {
		next = strstr(line, "\r\n");
		if (next) {
			*next = '\0';
			next += 2;
		}
		if (strncasecmp(line, "Content-Disposition:", 20) == 0) {
			name = header_param(line + 20, "name");
			filename = header_param(line + 20, "filename");
		}
	}
	if (!name)
		return upload_fail(u, -EINVAL, 400, "a part has no Content-Disposition name");
	if (streq(name, "metadata"))
		u->part = PART_META;
	else if (streq(name, "rootfs") || streq(name, "rootfs.img"))
		u->part = PART_ROOTFS;
	else
		return upload_fail(u, -EINVAL, 400,
				   "unknown part (expected \"metadata\" and \"rootfs\")");
	if (u->part == PART_META && filename && !u->part_filename)
		u->part_filename = TAKE_PTR(filename);
	return spool_open(u, u->part);
}

/* Runs the multipart parser over what is buffered; keeps what may be the start of a delimiter
 * (or of unfinished headers) for the next piece. */
static int multipart_feed(struct upload *u)
{
	size_t keep = u->delim_len - 1;
	char *p;
	int k;

	for (;;) {
		switch (u->state) {
		case MP_PREAMBLE:
		case MP_BODY:
			p = memmem(u->buf, u->buf_len, u->delim, u->delim_len);
			if (!p) {
				size_t n = u->buf_len > keep ? u->buf_len - keep : 0;

				if (u->state == MP_BODY &&
				    (k = spool_write(u, u->part, u->buf, n)) < 0)
					return k;
				memmove(u->buf, u->buf + n, u->buf_len - n);
				u->buf_len -= n;
				return 0;
			}
			if (u->state == MP_BODY) {
				k = spool_write(u, u->part, u->buf, (size_t)(p - u->buf));
				if (k < 0)
					return k;
				u->step = "close spool file";
				if (close(TAKE_FD(u->fds[u->part])) < 0)
					return upload_fail(u, -errno, 500, NULL);
				u->part = -1;
			}
			p += u->delim_len;
			u->buf_len -= (size_t)(p - u->buf);
			memmove(u->buf, p, u->buf_len);
			u->state = MP_DELIM;
			break;
		case MP_DELIM:
			if (u->buf_len < 2)
				return 0;
			if (memcmp(u->buf, "--", 2) == 0) {
				u->state = MP_DONE;
				break;
			}
			if (memcmp(u->buf, "\r\n", 2) != 0)
				return upload_fail(u, -EINVAL, 400,
						   "a boundary line is not followed by a line end");
			u->buf_len -= 2;
			memmove(u->buf, u->buf + 2, u->buf_len);
			u->state = MP_HEADERS;
			break;
		case MP_HEADERS:
			p = memmem(u->buf, u->buf_len, "\r\n\r\n", 4);
			if (!p && u->buf_len > MP_HEADERS_MAX)
				return upload_fail(u, -EMSGSIZE, 400,
						   "a part's headers are too long");
			if (!p)
				return 0;
			k = multipart_part_begin(u, u->buf, (size_t)(p - u->buf));
			if (k < 0)
				return k;
			p += 4;
			u->buf_len -= (size_t)(p - u->buf);
			memmove(u->buf, p, u->buf_len);
			u->state = MP_BODY;
			break;
		case MP_DONE:
			u->buf_len = 0;
			return 0;
		}
	}
}

static void upload_write_work(uv_work_t *w)
{
	struct upload *u = w->data;
	char *nb;

	u->result = 0;
	if (u->kind == UPLOAD_RAW) {
		if (spool_open(u, PART_META) == 0)
			spool_write(u, PART_META, u->data, u->len);
		return;
	}
	nb = realloc(u->buf, u->buf_len + u->len);
	if (!nb) {
		upload_fail(u, -ENOMEM, 500, NULL);
		return;
	}
	u->buf = nb;
	memcpy(u->buf + u->buf_len, u->data, u->len);
	u->buf_len += u->len;
	multipart_feed(u);
}

static void upload_finish_work(uv_work_t *w)
{
	struct upload *u = w->data;

	u->result = 0;
	if (u->kind == UPLOAD_RAW) {
		/* An empty body still makes a (refused) import, which says what is wrong. */
		if (spool_open(u, PART_META) < 0)
			return;
	} else if (u->state != MP_DONE) {
		upload_fail(u, -EINVAL, 400, "the body ends before the closing boundary");
		return;
	} else if (!u->created[PART_META] || !u->created[PART_ROOTFS]) {
		upload_fail(u, -EINVAL, 400,
			    "a split image needs a \"metadata\" and a \"rootfs\" part");
		return;
	}
	for (int i = 0; i < _PART_MAX; i++)
		if (u->fds[i] >= 0 && close(TAKE_FD(u->fds[i])) < 0) {
			u->step = "close spool file";
			upload_fail(u, -errno, 500, NULL);
			return;
		}
}

/* Closes and removes whatever was spooled. */
static void upload_cleanup_work(uv_work_t *w)
{
	struct upload *u = w->data;

	for (int i = 0; i < _PART_MAX; i++) {
		if (u->fds[i] >= 0)
			close(TAKE_FD(u->fds[i]));
		if (u->created[i] && unlink(u->paths[i]) < 0 && errno != ENOENT)
			log_warn("upload: remove %s: %s", u->paths[i], strerror(errno));
		u->created[i] = false;
	}
}

/* ---- loop side ---- */

static void upload_free_after(uv_work_t *w, int status)
{
	upload_free(w->data);
}

/* The upload ends without an import: its spool files go (on the thread pool). */
static void upload_end(struct upload *u)
{
	u->r = NULL;
	u->work.data = u;
	if (uv_queue_work(u->d->loop, &u->work, upload_cleanup_work, upload_free_after) < 0) {
		upload_cleanup_work(&u->work);
		upload_free(u);
	}
}

static struct lxm_error *upload_error(const struct upload *u)
{
	struct lxm_error *err = NULL;

	if (u->reason)
		lxm_error_set(&err, u->result, u->status, "import image: %s", u->reason);
	else
		lxm_error_setx(&err, u->result, u->status, "import image: %s", u->step);
	return err;
}

static void upload_error_after(uv_work_t *w, int status)
{
	struct upload *u = w->data;
	struct lxmd_request *r = TAKE_PTR(u->r);

	u->busy = false;
	if (r)
		lxmd_respond_error(r, TAKE_PTR(u->error));
	upload_free(u);
}

/* Answers with err once the spool files are gone, so that a client that reads the error finds
 * nothing left behind. */
static void upload_respond_error(struct upload *u, struct lxm_error *err)
{
	struct lxmd_request *r;

	u->error = err;
	u->work.data = u;
	if (uv_queue_work(u->d->loop, &u->work, upload_cleanup_work, upload_error_after) == 0) {
		u->busy = true;
		return;
	}
	upload_cleanup_work(&u->work);
	r = TAKE_PTR(u->r);
	if (r)
		lxmd_respond_error(r, TAKE_PTR(u->error));
	upload_free(u);
}

static int upload_queue(struct upload *u, uv_work_cb work, uv_after_work_cb after)
{
	int k;

	u->work.data = u;
	k = uv_queue_work(u->d->loop, &u->work, work, after);
	if (k == 0)
		u->busy = true;
	return k;
}

/* Import (or publish) ended. */
static void upload_import_done(struct lxmd *d, int result, const char *fp,
			       const struct lxm_error *err, void *ud)
{
	struct lxm_operation *op = ud;
	struct lxm_error *copy = NULL;

	if (result < 0) {
		lxm_error_set(&copy, err && err->errnum ? -err->errnum : result,
			      err ? err->status : 500, "%s",
			      err ? err->msg : "import image: failed");
		lxm_operation_finish(op, copy);
		return;
	}
	{
		_cleanup_free_ char *url = NULL;

		if (asprintf(&url, "/1.0/images/%s", fp) >= 0)
			lxm_events_lifecycle(d->events, "image-created", url, NULL);
	}
	/* lxc and pylxd read the new image's fingerprint from here. */
	lxm_operation_set_metadata(op, json_pack("{s:s}", "fingerprint", fp));
	lxm_operation_finish(op, NULL);
}

/* Starts the store's work under a new operation and answers with it. A request the store
 * refuses at once is answered with that error instead. */
typedef int (*upload_start_fn)(struct lxmd *d, const void *what, struct lxm_operation *op,
			       lxmd_image_done_fn done, void *ud, struct lxm_error **err);

static int start_import(struct lxmd *d, const void *what, struct lxm_operation *op,
			lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	return lxmd_image_import(d, what, op, done, ud, err);
}

static int start_publish(struct lxmd *d, const void *what, struct lxm_operation *op,
			 lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	return lxmd_image_publish(d, what, op, done, ud, err);
}

static int start_pull(struct lxmd *d, const void *what, struct lxm_operation *op,
		      lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	return lxmd_image_pull(d, what, op, done, ud, err);
}

static int start_build(struct lxmd *d, const void *what, struct lxm_operation *op,
		       lxmd_image_done_fn done, void *ud, struct lxm_error **err)
{
	return lxmd_image_build(d, what, op, done, ud, err);
}

static int upload_start(struct lxmd_request *r, const char *description, upload_start_fn start,
			const void *what, struct lxm_error **err)
{
	struct lxm_operation *op = NULL;
	int k;

	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, description, NULL, NULL, NULL, NULL, NULL,
			      &op);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "%s: new operation", description);
	lxm_operation_start(op);
	k = start(r->d, what, op, upload_import_done, op, err);
	if (k < 0) {
		struct lxm_error *copy = NULL;

		if (*err)
			lxm_error_set(&copy, -(*err)->errnum, (*err)->status, "%s", (*err)->msg);
		else
			lxm_error_setx(&copy, k, 500, "%s", description);
		lxm_operation_finish(op, copy);
		return k;
	}
	return lxmd_respond_async(r, op);
}

static void upload_finish_done(uv_work_t *w, int status)
{
	struct upload *u = w->data;
	struct lxmd_request *r = u->r;
	struct lxm_error *err = NULL;
	struct lxmd_image_import imp = { 0 };

	u->busy = false;
	if (!r) {
		upload_end(u);
		return;
	}
	if (u->result < 0) {
		upload_respond_error(u, upload_error(u));
		return;
	}
	imp.meta_path = u->paths[PART_META];
	imp.rootfs_path = u->kind == UPLOAD_MULTIPART ? u->paths[PART_ROOTFS] : NULL;
	imp.filename = u->filename ? u->filename : u->part_filename ? u->part_filename : "";
	imp.expected_fp = u->expected_fp;
	imp.public = u->public;
	imp.properties = u->properties;
	/* The store owns the files from here, also when it refuses them. */
	u->created[PART_META] = u->created[PART_ROOTFS] = false;
	u->r = NULL;
	if (upload_start(r, "Importing image", start_import, &imp, &err) < 0)
		lxmd_respond_error(r, err);
	upload_free(u);
}

static void upload_write_done(uv_work_t *w, int status)
{
	struct upload *u = w->data;

	u->busy = false;
	free(TAKE_PTR(u->data));
	if (!u->r) {
		upload_end(u);
		return;
	}
	if (u->result < 0) {
		upload_respond_error(u, upload_error(u));
		return;
	}
	lxmd_request_body_resume(u->r);
}

static void upload_body(struct lxmd_request *r, char *data, size_t len)
{
	struct upload *u = r->defer_data;
	struct lxm_error *err = NULL;
	int k;

	if (u->kind == UPLOAD_JSON) {
		char *n;

		if (u->json_len + len > IMAGES_POST_JSON_MAX) {
			free(data);
			lxm_error_set(&err, -EMSGSIZE, 413,
				      "import image: a JSON request is limited to %d bytes",
				      IMAGES_POST_JSON_MAX);
			upload_respond_error(u, err);
			return;
		}
		n = realloc(u->json, u->json_len + len + 1);
		if (!n) {
			free(data);
			lxm_error_set(&err, -ENOMEM, 500, "import image: out of memory");
			upload_respond_error(u, err);
			return;
		}
		u->json = n;
		memcpy(u->json + u->json_len, data, len);
		u->json_len += len;
		u->json[u->json_len] = '\0';
		free(data);
		lxmd_request_body_resume(r);
		return;
	}
	u->data = data;
	u->len = len;
	k = upload_queue(u, upload_write_work, upload_write_done);
	if (k < 0) {
		free(TAKE_PTR(u->data));
		lxm_error_set(&err, k, 500, "import image: queue write: %s", uv_strerror(k));
		upload_respond_error(u, err);
	}
}

/* Source type "image": a pull from an image server (mode "pull", the default). */
static int pull_start(struct lxmd_request *r, const json_t *body, const json_t *source,
		      const json_t *aliases, struct lxm_error **err)
{
	struct lxmd_image_pull p = { .aliases = aliases };
	const char *mode = NULL, *fp = NULL;
	int k;

	if ((k = lxm_json_opt_string(source, "mode", &mode, err)) < 0 ||
	    (k = lxm_json_opt_string(source, "server", &p.server, err)) < 0 ||
	    (k = lxm_json_opt_string(source, "protocol", &p.protocol, err)) < 0 ||
	    (k = lxm_json_opt_string(source, "alias", &p.alias, err)) < 0 ||
	    (k = lxm_json_opt_string(source, "fingerprint", &fp, err)) < 0 ||
	    (k = lxm_json_opt_string(source, "certificate", &p.certificate, err)) < 0)
		return lxm_error_prefix(err, "create image: source");
	if ((k = lxm_json_opt_bool(body, "public", &p.public, err)) < 0 ||
	    (k = lxm_json_opt_bool(body, "auto_update", &p.auto_update, err)) < 0)
		return lxm_error_prefix(err, "create image");
	if (mode && *mode && !streq(mode, "pull"))
		return lxm_error_set(err, -EOPNOTSUPP, 501,
				     "create image: source mode '%s' is not implemented (pull)",
				     mode);
	if (!p.alias || !*p.alias)
		p.alias = fp;
	return upload_start(r, "Downloading image", start_pull, &p, err);
}

/* Source type "template": an explicit build (lxm image build). */
static int build_start(struct lxmd_request *r, const json_t *body, const json_t *source,
		       const json_t *aliases, struct lxm_error **err)
{
	struct lxmd_image_build b = { .aliases = aliases };
	int k;

	if ((k = lxm_json_opt_string(source, "name", &b.tpl, err)) < 0 ||
	    (k = lxm_json_opt_string(source, "release", &b.release, err)) < 0)
		return lxm_error_prefix(err, "create image: source");
	if ((k = lxm_json_opt_bool(body, "public", &b.public, err)) < 0)
		return lxm_error_prefix(err, "create image");
	if (!b.tpl || !*b.tpl)
		return lxm_error_set(err, -EINVAL, 400,
				     "create image: source.name (the template) is required");
	return upload_start(r, "Building image", start_build, &b, err);
}

/* A JSON request: publish an instance, pull from an image server, build from a template. */
static int publish_start(struct lxmd_request *r, struct upload *u, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	json_t *source = NULL, *props = NULL, *aliases = NULL, *a;
	const char *type = NULL, *name = NULL, *compression = NULL;
	_cleanup_free_ char *snap_instance = NULL;
	struct lxmd_image_publish pub = { 0 };
	size_t i;
	int k;

	k = lxm_json_decode_body(u->json, u->json_len, JSON_OBJECT, false, &body, err);
	if (k < 0)
		return lxm_error_prefix(err, "create image");
	if ((k = lxm_json_opt_object(body, "source", &source, err)) < 0 ||
	    (k = lxm_json_opt_bool(body, "public", &pub.public, err)) < 0 ||
	    (k = lxm_json_opt_object(body, "properties", &props, err)) < 0 ||
	    (k = lxm_json_check_string_map(props, "properties", err)) < 0 ||
	    (k = lxm_json_opt_array(body, "aliases", &aliases, err)) < 0 ||
	    (k = lxm_json_opt_string(body, "compression_algorithm", &compression, err)) < 0)
		return lxm_error_prefix(err, "create image");
	if (!source)
		return lxm_error_set(err, -EINVAL, 400,
				     "create image: field 'source' is required (or send the image "
				     "file as the body)");
	if ((k = lxm_json_opt_string(source, "type", &type, err)) < 0 ||
	    (k = lxm_json_opt_string(source, "name", &name, err)) < 0)
		return lxm_error_prefix(err, "create image: source");
	json_array_foreach (aliases, i, a) {
		const char *an = json_string_value(json_object_get(a, "name"));

		if (!json_is_object(a) || !an)
			return lxm_error_set(err, -EINVAL, 400,
					     "create image: aliases[%zu] needs a 'name'", i);
		if ((k = check_alias_name(an, "create image", err)) < 0)
			return k;
	}
	if (streq(type, "image"))
		return pull_start(r, body, source, aliases, err);
	if (streq(type, "template"))
		return build_start(r, body, source, aliases, err);
	if (!type ||
	    (!streq(type, "instance") && !streq(type, "container") && !streq(type, "snapshot"))) {
		if (type && streq(type, "url"))
			return lxm_error_set(err, -EOPNOTSUPP, 501,
					     "create image: source type '%s' is not implemented "
					     "yet (image, template, instance, snapshot, or upload "
					     "the image file)",
					     type);
		return lxm_error_set(err, -EINVAL, 400,
				     "create image: unknown source type '%s' (image, template, "
				     "instance, snapshot, or upload the image file)",
				     type ? type : "");
	}
	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400, "create image: source.name is required");
	/* A snapshot is named "instance/snapshot". */
	if (streq(type, "snapshot")) {
		const char *slash = strchr(name, '/');

		if (!slash || slash == name || !slash[1])
			return lxm_error_set(err, -EINVAL, 400,
					     "create image: source.name '%s' must be "
					     "INSTANCE/SNAPSHOT",
					     name);
		snap_instance = strndup(name, (size_t)(slash - name));
		if (!snap_instance)
			return lxm_error_set(err, -ENOMEM, 500, "create image: out of memory");
		name = snap_instance;
		pub.snapshot = slash + 1;
	}
	pub.instance = name;
	pub.compression = compression && *compression ? compression : NULL;
	pub.properties = props;
	pub.aliases = aliases;
	return upload_start(r, "Publishing image", start_publish, &pub, err);
}

static void upload_body_end(struct lxmd_request *r)
{
	struct upload *u = r->defer_data;
	struct lxm_error *err = NULL;
	int k;

	if (u->kind == UPLOAD_JSON) {
		u->r = NULL;
		if (publish_start(r, u, &err) < 0)
			lxmd_respond_error(r, err ? err : NULL);
		upload_free(u);
		return;
	}
	k = upload_queue(u, upload_finish_work, upload_finish_done);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "import image: queue work: %s", uv_strerror(k));
		upload_respond_error(u, err);
	}
}

/* The client went away (a body cut short ends here): a step in flight finishes, then the spool
 * files go. */
static void upload_abort(struct lxmd_request *r)
{
	struct upload *u = r->defer_data;

	u->r = NULL;
	if (!u->busy)
		upload_end(u);
}

/* X-LXD-<name>, or Incus's X-Incus-<name>. */
static const char *upload_header(struct lxmd_request *r, const char *name)
{
	char buf[64];
	const char *v;

	snprintf(buf, sizeof(buf), "X-LXD-%s", name);
	v = lxm_http_request_header(r->http, buf);
	if (v)
		return v;
	snprintf(buf, sizeof(buf), "X-Incus-%s", name);
	return lxm_http_request_header(r->http, buf);
}

/* X-LXD-properties: "key=value&key2=value2", URL-query encoded. */
static int parse_properties_header(const char *v, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *props = json_object();
	_cleanup_free_ char *copy = strdup(v);
	char *save = NULL;

	if (!props || !copy)
		return -ENOMEM;
	for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
		_cleanup_free_ char *key = NULL, *value = NULL;
		char *eq = strchr(kv, '=');

		if (!eq || lxm_http_url_decode(kv, (size_t)(eq - kv), true, &key) < 0 ||
		    lxm_http_url_decode(eq + 1, strlen(eq + 1), true, &value) < 0 || !*key)
			return lxm_error_set(err, -EINVAL, 400,
					     "import image: X-LXD-properties: '%s' is not "
					     "key=value (URL-encoded)",
					     kv);
		if (json_object_set_new(props, key, json_string(value)) < 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "import image: X-LXD-properties: '%s' is not valid "
					     "UTF-8",
					     kv);
	}
	*ret = TAKE_PTR(props);
	return 0;
}

static int upload_headers(struct lxmd_request *r, struct upload *u, struct lxm_error **err)
{
	const char *v;
	int k;

	v = upload_header(r, "fingerprint");
	if (v && *v && !(u->expected_fp = strdup(v)))
		return -ENOMEM;
	v = upload_header(r, "filename");
	if (v && *v && !(u->filename = strdup(v)))
		return -ENOMEM;
	v = upload_header(r, "public");
	if (v && (streq(v, "1") || strcasecmp(v, "true") == 0))
		u->public = true;
	else if (v && *v && !streq(v, "0") && strcasecmp(v, "false") != 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "import image: X-LXD-public '%s' is not 1, 0, true or false",
				     v);
	v = upload_header(r, "properties");
	if (v && *v && (k = parse_properties_header(v, &u->properties, err)) < 0)
		return k;
	return 0;
}

/* The body's kind from Content-Type; multipart needs its boundary. */
static int upload_kind(struct lxmd_request *r, struct upload *u, struct lxm_error **err)
{
	const char *ct = lxm_http_request_header(r->http, "Content-Type");
	_cleanup_free_ char *boundary = NULL;
	size_t len = ct ? strcspn(ct, "; \t") : 0;

	if (!ct || !*ct || (len == 24 && strncasecmp(ct, "application/octet-stream", 24) == 0)) {
		u->kind = UPLOAD_RAW;
		return 0;
	}
	if (len == 16 && strncasecmp(ct, "application/json", 16) == 0) {
		u->kind = UPLOAD_JSON;
		return 0;
	}
	if (len != 19 || strncasecmp(ct, "multipart/form-data", 19) != 0)
		return lxm_error_set(err, -EINVAL, 415,
				     "import image: unsupported Content-Type '%s' (an image file "
				     "as application/octet-stream, a split image as "
				     "multipart/form-data, or a JSON request)",
				     ct);
	boundary = header_param(ct, "boundary");
	if (!boundary || !*boundary || strlen(boundary) > 70)
		return lxm_error_set(err, -EINVAL, 400,
				     "import image: multipart/form-data without a valid boundary");
	u->kind = UPLOAD_MULTIPART;
	if (asprintf(&u->delim, "\r\n--%s", boundary) < 0)
		return -ENOMEM;
	u->delim_len = strlen(u->delim);
	/* The first delimiter may open the body without a line end before it. */
	u->buf = strdup("\r\n");
	if (!u->buf)
		return -ENOMEM;
	u->buf_len = 2;
	u->state = MP_PREAMBLE;
	return 0;
}

int lxmd_api_images_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_(upload_freep) struct upload *u = NULL;
	char rnd[17];
	int k;

	if ((k = lxmd_query_project(r, err)) < 0)
		return k;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->fds[PART_META] = u->fds[PART_ROOTFS] = -1;
	u->part = -1;
	u->d = r->d;
	u->r = r;
	if ((k = upload_kind(r, u, err)) < 0 || (k = upload_headers(r, u, err)) < 0)
		return k;
	if ((k = lxm_random_hex(rnd, 8)) < 0)
		return lxm_error_setx(err, k, 500, "import image: random spool name");
	if (asprintf(&u->dir, "%s/images", r->d->cfg.root) < 0 ||
	    asprintf(&u->paths[PART_META], "%s/.tmp-%s%s", u->dir, rnd,
		     u->kind == UPLOAD_MULTIPART ? ".meta" : "") < 0 ||
	    asprintf(&u->paths[PART_ROOTFS], "%s/.tmp-%s.rootfs", u->dir, rnd) < 0)
		return -ENOMEM;
	/* Nothing touches the disk yet: the first piece (or the end of the body) does. */
	r->deferred = true;
	r->on_abort = upload_abort;
	r->on_body = upload_body;
	r->on_body_end = upload_body_end;
	r->defer_data = TAKE_PTR(u);
	return 0;
}

/* ---- refresh ---- */

struct refresh {
	struct lxm_operation *op; /* reports the result */
	char fp[65];		  /* the image refreshed */
};

static void refresh_done(struct lxmd *d, int result, const char *fp, const struct lxm_error *err,
			 void *ud)
{
	struct refresh *rf = ud;
	struct lxm_error *copy = NULL;
	bool refreshed;

	if (result < 0) {
		lxm_error_set(&copy, err && err->errnum ? -err->errnum : result,
			      err ? err->status : 500, "%s",
			      err ? err->msg : "refresh image: failed");
		lxm_operation_finish(rf->op, copy);
		free(rf);
		return;
	}
	refreshed = !streq(fp, rf->fp);
	if (refreshed) {
		_cleanup_free_ char *url = NULL;

		if (asprintf(&url, "/1.0/images/%s", fp) >= 0)
			lxm_events_lifecycle(d->events, "image-refreshed", url, NULL);
	}
	lxm_operation_set_metadata(
		rf->op, json_pack("{s:b, s:s}", "refreshed", refreshed, "fingerprint", fp));
	lxm_operation_finish(rf->op, NULL);
	free(rf);
}

int lxmd_api_image_refresh_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *fp = NULL;
	struct lxm_operation *op = NULL;
	struct refresh *rf;
	int k;

	if ((k = image_from_url(r, &fp, err)) < 0)
		return k;
	rf = calloc(1, sizeof(*rf));
	if (!rf)
		return -ENOMEM;
	snprintf(rf->fp, sizeof(rf->fp), "%s", fp);
	k = lxm_operation_new(r->d->ops, LXM_OP_TASK, "Refreshing image", image_resources(fp), NULL,
			      NULL, NULL, NULL, &op);
	if (k < 0) {
		free(rf);
		return lxm_error_setx(err, k, 500, "refresh image '%s': new operation", fp);
	}
	rf->op = op;
	lxm_operation_start(op);
	k = lxmd_image_refresh(r->d, fp, op, refresh_done, rf, err);
	if (k < 0) {
		struct lxm_error *copy = NULL;

		if (*err)
			lxm_error_set(&copy, -(*err)->errnum, (*err)->status, "%s", (*err)->msg);
		else
			lxm_error_setx(&copy, k, 500, "refresh image '%s'", fp);
		lxm_operation_finish(op, copy);
		free(rf);
		return k;
	}
	return lxmd_respond_async(r, op);
}
