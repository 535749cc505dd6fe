/* The trust store: client certificates of the HTTPS listener (see db.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "db-internal.h"
#include "util.h"

void lxm_db_certificate_free(struct lxm_db_certificate *c)
{
	if (!c)
		return;
	free(c->fingerprint);
	free(c->name);
	free(c->type);
	free(c->certificate);
	free(c);
}

int lxm_db_certificate_fingerprints(struct lxm_db *db, char ***ret, struct lxm_error **err)
{
	int r = db_query_strv(db, ret, err,
			      "SELECT fingerprint FROM certificates ORDER BY fingerprint", NULL);

	return r < 0 ? db_error_prefix(err, r, "list certificates") : r;
}

static char *col(sqlite3_stmt *stmt, int i)
{
	const char *v = (const char *)sqlite3_column_text(stmt, i);

	return strdup(v ? v : "");
}

int lxm_db_certificate_get(struct lxm_db *db, const char *fp, struct lxm_db_certificate **ret,
			   struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	_cleanup_db_certificate_ struct lxm_db_certificate *c = NULL;
	_cleanup_free_ char *pattern = NULL;
	int r, rc, n = 0;

	/* Fingerprints are hex: a prefix with anything else matches nothing. */
	if (!*fp || strspn(fp, "0123456789abcdef") != strlen(fp))
		return lxm_error_set(err, -ENOENT, 404, "certificate '%.70s' not found", fp);
	if (asprintf(&pattern, "%s%%", fp) < 0)
		return -ENOMEM;
	r = db_prepare(db,
		       "SELECT fingerprint, name, type, certificate, restricted, read_only\n"
		       "	FROM certificates WHERE fingerprint LIKE ? ORDER BY fingerprint\n"
		       "	LIMIT 2",
		       &stmt, err);
	if (r >= 0)
		r = db_bind(db, stmt, err, "t", pattern);
	if (r < 0)
		return db_error_prefix(err, r, "read certificate '%s'", fp);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (++n > 1)
			return lxm_error_set(err, -EINVAL, 400,
					     "certificate '%s': the prefix matches several "
					     "certificates; give more of the fingerprint",
					     fp);
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		c->fingerprint = col(stmt, 0);
		c->name = col(stmt, 1);
		c->type = col(stmt, 2);
		c->certificate = col(stmt, 3);
		c->restricted = sqlite3_column_int(stmt, 4);
		c->read_only = sqlite3_column_int(stmt, 5);
		if (!c->fingerprint || !c->name || !c->type || !c->certificate)
			return -ENOMEM;
	}
	if (rc != SQLITE_DONE)
		return db_error_prefix(err, db_sqlite_error(db, rc, err), "read certificate '%s'",
				       fp);
	if (!c)
		return lxm_error_set(err, -ENOENT, 404, "certificate '%s' not found", fp);
	*ret = TAKE_PTR(c);
	return 0;
}

int lxm_db_certificate_add(struct lxm_db *db, const struct lxm_db_certificate *c,
			   struct lxm_error **err)
{
	int r = db_exec(
		db, err,
		"INSERT INTO certificates (fingerprint, name, type, certificate, restricted,\n"
		"	read_only, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		"ttttbbi", c->fingerprint, c->name, c->type ? c->type : "client", c->certificate,
		c->restricted, c->read_only, db_now_ns());

	if (r == -EEXIST)
		return lxm_error_set(err, -EEXIST, 409, "certificate %s is trusted already",
				     c->fingerprint);
	return r < 0 ? db_error_prefix(err, r, "add certificate %s", c->fingerprint) : 0;
}

int lxm_db_certificate_update(struct lxm_db *db, const struct lxm_db_certificate *c,
			      struct lxm_error **err)
{
	int r = db_exec(db, err,
			"UPDATE certificates SET name = ?, restricted = ?, read_only = ?\n"
			"	WHERE fingerprint = ?",
			"tbbt", c->name, c->restricted, c->read_only, c->fingerprint);

	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "certificate '%s' not found",
				     c->fingerprint);
	return r < 0 ? db_error_prefix(err, r, "update certificate %s", c->fingerprint) : 0;
}

int lxm_db_certificate_delete(struct lxm_db *db, const char *fp, struct lxm_error **err)
{
	int r = db_exec(db, err, "DELETE FROM certificates WHERE fingerprint = ?", "t", fp);

	if (r == 0)
		return lxm_error_set(err, -ENOENT, 404, "certificate '%s' not found", fp);
	return r < 0 ? db_error_prefix(err, r, "delete certificate %s", fp) : 0;
}
