/* Images: the rows of the image store (one per fingerprint) with their properties, and the aliases
 * that name them. The files themselves are the store's business (lxmd/images/).
 *
 * The interface speaks unix seconds for image timestamps, as LXD's Image object does; the columns
 * keep the schema's unit (nanoseconds), converted here. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "db-internal.h"

#define NS_PER_SEC INT64_C(1000000000)

#define SQL_IMAGE_PROPERTY_INSERT                                                                  \
	"INSERT INTO images_properties (image_id, key, value) VALUES (?, ?, ?)"

/* The columns image_read_row() reads, in its order. */
#define SQL_IMAGE_COLUMNS                                                                          \
	"id, fingerprint, filename, size, public, auto_update, cached, architecture, type,\n"      \
	"	created_at, uploaded_at, expires_at, last_used_at"

void lxm_db_image_source_free(struct lxm_db_image_source *src)
{
	if (!src)
		return;
	free(src->server);
	free(src->protocol);
	free(src->alias);
	free(src->certificate);
	free(src);
}

void lxm_db_image_free(struct lxm_db_image *img)
{
	if (!img)
		return;
	lxm_db_image_source_free(img->source);
	free(img->fingerprint);
	free(img->filename);
	free(img->architecture);
	free(img->type);
	json_decref(img->properties);
	json_decref(img->aliases);
	free(img);
}

void lxm_db_image_alias_free(struct lxm_db_image_alias *a)
{
	if (!a)
		return;
	free(a->name);
	free(a->description);
	free(a->target);
	free(a->type);
	free(a);
}

static int64_t sec_to_ns(int64_t s)
{
	return s > INT64_MAX / NS_PER_SEC ? INT64_MAX : s * NS_PER_SEC;
}

/* Looks up an image's row id; -ENOENT (404) naming the image when there is none. */
static int image_id(struct lxm_db *db, const char *fp, int64_t *ret, struct lxm_error **err)
{
	int r = db_query_int64(db, ret, err, "SELECT id FROM images WHERE fingerprint = ?", "t",
			       fp);

	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found", fp);
	return r;
}

/* Looks up an alias's row id; -ENOENT (404) naming the alias when there is none. */
static int alias_id(struct lxm_db *db, const char *name, int64_t *ret, struct lxm_error **err)
{
	int r = db_query_int64(db, ret, err, "SELECT id FROM images_aliases WHERE name = ?", "t",
			       name);

	if (r == -ENOENT)
		return lxm_error_set(err, -ENOENT, 404, "image alias '%s' not found", name);
	return r;
}

/* Fills img from the current row of a SELECT of SQL_IMAGE_COLUMNS; sets *ret_id. */
static int image_read_row(sqlite3_stmt *stmt, struct lxm_db_image *img, int64_t *ret_id,
			  struct lxm_error **err)
{
	if (!(img->fingerprint = db_column_strdup(stmt, 1)) ||
	    !(img->filename = db_column_strdup(stmt, 2)) ||
	    !(img->architecture = db_column_strdup(stmt, 7)) ||
	    !(img->type = db_column_strdup(stmt, 8)))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*ret_id = sqlite3_column_int64(stmt, 0);
	img->size = sqlite3_column_int64(stmt, 3);
	img->public = sqlite3_column_int(stmt, 4) != 0;
	img->auto_update = sqlite3_column_int(stmt, 5) != 0;
	img->cached = sqlite3_column_int(stmt, 6) != 0;
	img->created_at = sqlite3_column_int64(stmt, 9) / NS_PER_SEC;
	img->uploaded_at = sqlite3_column_int64(stmt, 10) / NS_PER_SEC;
	img->expires_at = sqlite3_column_int64(stmt, 11) / NS_PER_SEC;
	img->last_used_at = sqlite3_column_int64(stmt, 12) / NS_PER_SEC;
	return 0;
}

/* The aliases of image id as an array of {"name", "description"}, sorted by name. */
static int image_read_aliases(struct lxm_db *db, int64_t id, json_t **ret, struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	_cleanup_db_json_ json_t *list = json_array();
	int r, rc;

	if (!list)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = db_prepare(db,
		       "SELECT name, description FROM images_aliases WHERE image_id = ?\n"
		       "	ORDER BY name",
		       &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "i", id);
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(stmt, 0);
		const char *desc = (const char *)sqlite3_column_text(stmt, 1);
		json_t *a = json_pack("{s:s, s:s}", "name", name ? name : "", "description",
				      desc ? desc : "");

		if (!a || json_array_append_new(list, a) < 0)
			return lxm_error_set(err, -EILSEQ, 500,
					     "alias '%s': not valid UTF-8 (or out of memory)",
					     name ? name : "");
	}
	if (rc != SQLITE_DONE)
		return db_sqlite_error(db, rc, err);
	*ret = TAKE_PTR(list);
	return 0;
}

/* The source of image id into *ret, NULL when it has none. */
static int image_read_source(struct lxm_db *db, int64_t id, struct lxm_db_image_source **ret,
			     struct lxm_error **err)
{
	_cleanup_(lxm_db_image_source_freep) struct lxm_db_image_source *src = NULL;
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int r, rc;

	*ret = NULL;
	r = db_prepare(db,
		       "SELECT server, protocol, alias, certificate FROM images_source\n"
		       "	WHERE image_id = ?",
		       &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "i", id);
	if (r < 0)
		return r;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return db_sqlite_error(db, rc, err);
	src = calloc(1, sizeof(*src));
	if (!src || !(src->server = db_column_strdup(stmt, 0)) ||
	    !(src->protocol = db_column_strdup(stmt, 1)) ||
	    !(src->alias = db_column_strdup(stmt, 2)) ||
	    !(src->certificate = db_column_strdup(stmt, 3)))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*ret = TAKE_PTR(src);
	return 0;
}

/* Reads one image with its properties and aliases; -ENOENT (404) when it does not exist. */
static int image_read(struct lxm_db *db, const char *fp, struct lxm_db_image **ret,
		      struct lxm_error **err)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int64_t id = 0;
	int r, rc;

	r = db_prepare(db, "SELECT " SQL_IMAGE_COLUMNS " FROM images WHERE fingerprint = ?", &stmt,
		       err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "t", fp);
	if (r < 0)
		return db_error_prefix(err, r, "get image '%s'", fp);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found", fp);
	if (rc != SQLITE_ROW)
		return db_error_prefix(err, db_sqlite_error(db, rc, err), "get image '%s'", fp);

	img = calloc(1, sizeof(*img));
	if (!img)
		return lxm_error_set(err, -ENOMEM, 500, "get image '%s': out of memory", fp);
	r = image_read_row(stmt, img, &id, err);
	if (r < 0)
		return db_error_prefix(err, r, "get image '%s'", fp);
	r = db_read_map(db, &img->properties, err,
			"SELECT key, value FROM images_properties WHERE image_id = ? ORDER BY key",
			"i", id);
	if (r < 0)
		return db_error_prefix(err, r, "get image '%s': read properties", fp);
	r = image_read_aliases(db, id, &img->aliases, err);
	if (r < 0)
		return db_error_prefix(err, r, "get image '%s': read aliases", fp);
	r = image_read_source(db, id, &img->source, err);
	if (r < 0)
		return db_error_prefix(err, r, "get image '%s': read source", fp);
	*ret = TAKE_PTR(img);
	return 0;
}

int lxm_db_image_get(struct lxm_db *db, const char *fp, struct lxm_db_image **ret,
		     struct lxm_error **err)
{
	_cleanup_(lxm_db_image_freep) struct lxm_db_image *img = NULL;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "get image '%s'", fp);
	if (r < 0)
		return r;
	r = image_read(db, fp, &img, err);
	r = db_tx_end(db, owned, r, err, "get image '%s'", fp);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(img);
	return 0;
}

int lxm_db_image_resolve_prefix(struct lxm_db *db, const char *prefix, char **ret_fp,
				struct lxm_error **err)
{
	_cleanup_strv_ char **fps = NULL;
	int r;

	if (!*prefix)
		return lxm_error_set(err, -EINVAL, 400, "an image fingerprint prefix is empty");
	/* substr() rather than LIKE: '%' and '_' in what the client sent are not wildcards. At
	 * most two rows tell "one" from "several". */
	r = db_query_strv(db, &fps, err,
			  "SELECT fingerprint FROM images WHERE substr(fingerprint, 1, ?) = ?\n"
			  "	ORDER BY fingerprint LIMIT 2",
			  "it", (int64_t)strlen(prefix), prefix);
	if (r < 0)
		return db_error_prefix(err, r, "find image '%s'", prefix);
	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found", prefix);
	if (r > 1) {
		int64_t n = 0;

		db_query_int64(db, &n, NULL,
			       "SELECT count(*) FROM images WHERE substr(fingerprint, 1, ?) = ?",
			       "it", (int64_t)strlen(prefix), prefix);
		return lxm_error_set(err, -EINVAL, 400,
				     "image prefix '%s' is ambiguous: %lld images match", prefix,
				     (long long)(n > 1 ? n : 2));
	}
	*ret_fp = TAKE_PTR(fps[0]);
	return 0;
}

static void images_free(struct lxm_db_image **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		lxm_db_image_free(v[i]);
	free(v);
}

static int image_list_tx(struct lxm_db *db, struct lxm_db_image ***ret, size_t *ret_n,
			 struct lxm_error **err)
{
	_cleanup_strv_ char **fps = NULL;
	struct lxm_db_image **v;
	int r, n;

	n = db_query_strv(db, &fps, err, "SELECT fingerprint FROM images ORDER BY fingerprint",
			  NULL);
	if (n < 0)
		return db_error_prefix(err, n, "list images");
	v = calloc((size_t)n + 1, sizeof(*v));
	if (!v)
		return lxm_error_set(err, -ENOMEM, 500, "list images: out of memory");
	for (int i = 0; i < n; i++) {
		r = image_read(db, fps[i], &v[i], err);
		if (r < 0) {
			images_free(v, (size_t)i);
			return db_error_prefix(err, r, "list images");
		}
	}
	*ret = v;
	*ret_n = (size_t)n;
	return 0;
}

int lxm_db_image_list(struct lxm_db *db, struct lxm_db_image ***ret, size_t *ret_n,
		      struct lxm_error **err)
{
	struct lxm_db_image **v = NULL;
	size_t n = 0;
	bool owned;
	int r;

	r = db_tx_begin(db, false, &owned, err, "list images");
	if (r < 0)
		return r;
	r = image_list_tx(db, &v, &n, err);
	r = db_tx_end(db, owned, r, err, "list images");
	if (r < 0) {
		images_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* A fingerprint names files in the store: exactly 64 lowercase hex digits. */
static bool fingerprint_valid(const char *fp)
{
	return fp && strlen(fp) == 64 && strspn(fp, "0123456789abcdef") == 64;
}

static int image_create_tx(struct lxm_db *db, const struct lxm_db_image *img,
			   struct lxm_error **err)
{
	int64_t id;
	int r;

	r = db_query_int64(db, &id, err, "SELECT id FROM images WHERE fingerprint = ?", "t",
			   img->fingerprint);
	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "image '%s' already exists",
				     img->fingerprint);
	if (r != -ENOENT)
		return r;
	r = db_exec(
		db, err,
		"INSERT INTO images (fingerprint, filename, size, public, auto_update, cached,\n"
		"	architecture, type, created_at, uploaded_at, expires_at, last_used_at)\n"
		"	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		"ttibbbttiiii", img->fingerprint, img->filename ? img->filename : "", img->size,
		(int)img->public, (int)img->auto_update, (int)img->cached,
		img->architecture ? img->architecture : "",
		img->type && *img->type ? img->type : "container", sec_to_ns(img->created_at),
		img->uploaded_at ? sec_to_ns(img->uploaded_at) : db_now_ns(),
		sec_to_ns(img->expires_at), sec_to_ns(img->last_used_at));
	if (r < 0)
		return db_error_prefix(err, r, "insert");
	r = db_insert_map(db, SQL_IMAGE_PROPERTY_INSERT, sqlite3_last_insert_rowid(db->handle),
			  img->properties, err);
	if (r < 0)
		return db_error_prefix(err, r, "insert properties");
	return 0;
}

int lxm_db_image_create(struct lxm_db *db, const struct lxm_db_image *img, struct lxm_error **err)
{
	const char *fp = img->fingerprint ? img->fingerprint : "";
	bool owned;
	int r;

	if (!fingerprint_valid(img->fingerprint))
		return lxm_error_set(err, -EINVAL, 400,
				     "create image '%s': a fingerprint is 64 lowercase hex digits",
				     fp);
	if (img->type && *img->type && strcmp(img->type, "container") != 0 &&
	    strcmp(img->type, "virtual-machine") != 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "create image '%s': unknown type '%s' (container or "
				     "virtual-machine)",
				     fp, img->type);
	r = db_check_map(img->properties, "properties", err);
	if (r < 0)
		return db_error_prefix(err, r, "create image '%s'", fp);
	r = db_tx_begin(db, true, &owned, err, "create image '%s'", fp);
	if (r < 0)
		return r;
	r = image_create_tx(db, img, err);
	if (r < 0 && r != -EEXIST)
		db_error_prefix(err, r, "create image '%s'", fp);
	return db_tx_end(db, owned, r, err, "create image '%s'", fp);
}

static int image_update_tx(struct lxm_db *db, const struct lxm_db_image *img,
			   struct lxm_error **err)
{
	int64_t id;
	int r;

	r = image_id(db, img->fingerprint, &id, err);
	if (r < 0)
		return r;
	r = db_exec(db, err,
		    "UPDATE images SET public = ?, auto_update = ?, expires_at = ? WHERE id = ?",
		    "bbii", (int)img->public, (int)img->auto_update, sec_to_ns(img->expires_at),
		    id);
	if (r >= 0)
		r = db_exec(db, err, "DELETE FROM images_properties WHERE image_id = ?", "i", id);
	if (r >= 0)
		r = db_insert_map(db, SQL_IMAGE_PROPERTY_INSERT, id, img->properties, err);
	return r < 0 ? r : 0;
}

int lxm_db_image_update(struct lxm_db *db, const struct lxm_db_image *img, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_check_map(img->properties, "properties", err);
	if (r < 0)
		return db_error_prefix(err, r, "update image '%s'", img->fingerprint);
	r = db_tx_begin(db, true, &owned, err, "update image '%s'", img->fingerprint);
	if (r < 0)
		return r;
	r = image_update_tx(db, img, err);
	if (r < 0 && r != -ENOENT)
		db_error_prefix(err, r, "update image '%s'", img->fingerprint);
	return db_tx_end(db, owned, r, err, "update image '%s'", img->fingerprint);
}

static int image_source_set_tx(struct lxm_db *db, const char *fp,
			       const struct lxm_db_image_source *src, struct lxm_error **err)
{
	int64_t id;
	int r;

	r = image_id(db, fp, &id, err);
	if (r < 0)
		return r;
	r = db_exec(db, err,
		    "INSERT INTO images_source (image_id, server, protocol, alias, certificate)\n"
		    "	VALUES (?, ?, ?, ?, ?)\n"
		    "	ON CONFLICT (image_id) DO UPDATE SET server = excluded.server,\n"
		    "	protocol = excluded.protocol, alias = excluded.alias,\n"
		    "	certificate = excluded.certificate",
		    "itttt", id, src->server ? src->server : "", src->protocol ? src->protocol : "",
		    src->alias ? src->alias : "", src->certificate ? src->certificate : "");
	return r < 0 ? r : 0;
}

int lxm_db_image_source_set(struct lxm_db *db, const char *fp,
			    const struct lxm_db_image_source *src, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "record the source of image '%s'", fp);
	if (r < 0)
		return r;
	r = image_source_set_tx(db, fp, src, err);
	if (r < 0 && r != -ENOENT)
		db_error_prefix(err, r, "record the source of image '%s'", fp);
	return db_tx_end(db, owned, r, err, "record the source of image '%s'", fp);
}

int lxm_db_image_set_cached(struct lxm_db *db, const char *fp, bool cached, struct lxm_error **err)
{
	int r = db_exec(db, err, "UPDATE images SET cached = ? WHERE fingerprint = ?", "bt",
			(int)cached, fp);

	if (r < 0)
		return db_error_prefix(err, r, "mark image '%s' cached", fp);
	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found", fp);
	return 0;
}

int lxm_db_image_touch(struct lxm_db *db, const char *fp, int64_t when, struct lxm_error **err)
{
	int r = db_exec(db, err, "UPDATE images SET last_used_at = ? WHERE fingerprint = ?", "it",
			sec_to_ns(when), fp);

	if (r < 0)
		return db_error_prefix(err, r, "mark image '%s' used", fp);
	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found", fp);
	return 0;
}

int lxm_db_image_delete(struct lxm_db *db, const char *fp, struct lxm_error **err)
{
	/* One statement, atomic on its own: properties and aliases go by cascade within it. */
	int r = db_exec(db, err, "DELETE FROM images WHERE fingerprint = ?", "t", fp);

	if (r < 0)
		return db_error_prefix(err, r, "delete image '%s'", fp);
	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found", fp);
	return 0;
}

/* ---- aliases ---- */

#define SQL_ALIAS_SELECT                                                                           \
	"SELECT a.name, a.description, i.fingerprint, i.type FROM images_aliases a\n"              \
	"	JOIN images i ON i.id = a.image_id"

static int alias_read_row(sqlite3_stmt *stmt, struct lxm_db_image_alias **ret,
			  struct lxm_error **err)
{
	_cleanup_(lxm_db_image_alias_freep) struct lxm_db_image_alias *a = calloc(1, sizeof(*a));

	if (!a || !(a->name = db_column_strdup(stmt, 0)) ||
	    !(a->description = db_column_strdup(stmt, 1)) ||
	    !(a->target = db_column_strdup(stmt, 2)) || !(a->type = db_column_strdup(stmt, 3)))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*ret = TAKE_PTR(a);
	return 0;
}

int lxm_db_image_alias_get(struct lxm_db *db, const char *name, struct lxm_db_image_alias **ret,
			   struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int r, rc;

	r = db_prepare(db, SQL_ALIAS_SELECT " WHERE a.name = ?", &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "t", name);
	if (r < 0)
		return db_error_prefix(err, r, "get image alias '%s'", name);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return lxm_error_set(err, -ENOENT, 404, "image alias '%s' not found", name);
	if (rc != SQLITE_ROW)
		return db_error_prefix(err, db_sqlite_error(db, rc, err), "get image alias '%s'",
				       name);
	r = alias_read_row(stmt, ret, err);
	return r < 0 ? db_error_prefix(err, r, "get image alias '%s'", name) : 0;
}

int lxm_db_image_alias_list(struct lxm_db *db, struct lxm_db_image_alias ***ret, size_t *ret_n,
			    struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	struct lxm_db_image_alias **v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	r = db_prepare(db, SQL_ALIAS_SELECT " ORDER BY a.name", &stmt, err);
	if (r < 0)
		return db_error_prefix(err, r, "list image aliases");
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (n + 1 >= cap) {
			struct lxm_db_image_alias **nv;

			cap = cap ? 2 * cap : 8;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = lxm_error_set(err, -ENOMEM, 500, "out of memory");
				goto fail;
			}
			v = nv;
		}
		r = alias_read_row(stmt, &v[n], err);
		if (r < 0)
			goto fail;
		v[++n] = NULL;
	}
	if (rc != SQLITE_DONE) {
		r = db_sqlite_error(db, rc, err);
		goto fail;
	}
	*ret = v ? v : calloc(1, sizeof(*v));
	if (!*ret)
		return lxm_error_set(err, -ENOMEM, 500, "list image aliases: out of memory");
	*ret_n = n;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		lxm_db_image_alias_free(v[i]);
	free(v);
	return db_error_prefix(err, r, "list image aliases");
}

/* -EEXIST (409) when an alias called name exists. */
static int alias_check_free(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	int64_t id;
	int r = db_query_int64(db, &id, err, "SELECT id FROM images_aliases WHERE name = ?", "t",
			       name);

	if (r >= 0)
		return lxm_error_set(err, -EEXIST, 409, "image alias '%s' already exists", name);
	return r == -ENOENT ? 0 : r;
}

static int alias_create_tx(struct lxm_db *db, const char *name, const char *target,
			   const char *description, struct lxm_error **err)
{
	int64_t image;
	int r;

	r = alias_check_free(db, name, err);
	if (r >= 0)
		r = image_id(db, target, &image, err);
	if (r >= 0)
		r = db_exec(
			db, err,
			"INSERT INTO images_aliases (name, image_id, description) VALUES (?, ?, "
			"?)",
			"tit", name, image, description ? description : "");
	return r < 0 ? r : 0;
}

int lxm_db_image_alias_create(struct lxm_db *db, const char *name, const char *target,
			      const char *description, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "create image alias '%s'", name);
	if (r < 0)
		return r;
	r = alias_create_tx(db, name, target, description, err);
	if (r < 0 && r != -ENOENT && r != -EEXIST)
		db_error_prefix(err, r, "create image alias '%s'", name);
	return db_tx_end(db, owned, r, err, "create image alias '%s'", name);
}

static int alias_update_tx(struct lxm_db *db, const char *name, const char *target,
			   const char *description, struct lxm_error **err)
{
	int64_t id, image;
	int r;

	r = alias_id(db, name, &id, err);
	if (r >= 0)
		r = image_id(db, target, &image, err);
	if (r >= 0)
		r = db_exec(db, err,
			    "UPDATE images_aliases SET image_id = ?, description = ? WHERE id = ?",
			    "iti", image, description ? description : "", id);
	return r < 0 ? r : 0;
}

int lxm_db_image_alias_update(struct lxm_db *db, const char *name, const char *target,
			      const char *description, struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "update image alias '%s'", name);
	if (r < 0)
		return r;
	r = alias_update_tx(db, name, target, description, err);
	if (r < 0 && r != -ENOENT && r != -EEXIST)
		db_error_prefix(err, r, "update image alias '%s'", name);
	return db_tx_end(db, owned, r, err, "update image alias '%s'", name);
}

static int alias_rename_tx(struct lxm_db *db, const char *name, const char *new_name,
			   struct lxm_error **err)
{
	int64_t id;
	int r;

	r = alias_id(db, name, &id, err);
	if (r >= 0)
		r = alias_check_free(db, new_name, err);
	if (r >= 0)
		r = db_exec(db, err, "UPDATE images_aliases SET name = ? WHERE id = ?", "ti",
			    new_name, id);
	return r < 0 ? r : 0;
}

int lxm_db_image_alias_rename(struct lxm_db *db, const char *name, const char *new_name,
			      struct lxm_error **err)
{
	bool owned;
	int r;

	r = db_tx_begin(db, true, &owned, err, "rename image alias '%s'", name);
	if (r < 0)
		return r;
	r = alias_rename_tx(db, name, new_name, err);
	if (r < 0 && r != -ENOENT && r != -EEXIST)
		db_error_prefix(err, r, "rename image alias '%s' to '%s'", name, new_name);
	return db_tx_end(db, owned, r, err, "rename image alias '%s'", name);
}

int lxm_db_image_alias_delete(struct lxm_db *db, const char *name, struct lxm_error **err)
{
	int r = db_exec(db, err, "DELETE FROM images_aliases WHERE name = ?", "t", name);

	if (r < 0)
		return db_error_prefix(err, r, "delete image alias '%s'", name);
	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "image alias '%s' not found", name);
	return 0;
}
