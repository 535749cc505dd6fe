/* Opening the database (pragmas, migrations, the backup taken before them), transactions and the
 * statement helpers every other db file uses. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "db-internal.h"

/* How long a statement waits for another connection's lock (the sqlite3 shell, a second lxmd on
 * the same file) before failing with "database is locked". lxmd itself holds one connection. */
#define DB_BUSY_TIMEOUT_MS 5000

int64_t db_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The errno and HTTP status for an sqlite result code. Constraint failures are the caller's
 * input clashing with the data, hence 4xx; a busy database is worth retrying, hence 503. */
static void db_classify(sqlite3 *handle, int rc, int *ret_errno, int *ret_status)
{
	int sys = handle ? sqlite3_system_errno(handle) : 0;

	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		*ret_errno = EEXIST, *ret_status = 409;
		return;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		*ret_errno = EBUSY, *ret_status = 409;
		return;
	}
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
	case SQLITE_TOOBIG:
		*ret_errno = EINVAL, *ret_status = 400;
		return;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		*ret_errno = EBUSY, *ret_status = 503;
		return;
	case SQLITE_NOMEM:
		*ret_errno = ENOMEM;
		break;
	case SQLITE_READONLY:
		*ret_errno = EROFS;
		break;
	case SQLITE_FULL:
		*ret_errno = ENOSPC;
		break;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		*ret_errno = EACCES;
		break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		*ret_errno = EBADMSG;
		break;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
		*ret_errno = sys > 0 ? sys : EIO;
		break;
	default:
		*ret_errno = EIO;
		break;
	}
	*ret_status = 500;
}

static int db_handle_error(sqlite3 *handle, int rc, struct lxm_error **err)
{
	const char *msg = handle ? sqlite3_errmsg(handle) : sqlite3_errstr(rc);
	int errnum, status, sys = handle ? sqlite3_system_errno(handle) : 0;

	db_classify(handle, rc, &errnum, &status);
	/* "unable to open database file" alone does not say whether the directory is missing or
	 * not writable; the OS error does. */
	if (((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_IOERR) && sys > 0)
		return lxm_error_set(err, -errnum, status, "%s: %s", msg, strerror(sys));
	return lxm_error_set(err, -errnum, status, "%s", msg);
}

int db_sqlite_error(struct lxm_db *db, int rc, struct lxm_error **err)
{
	return db_handle_error(db ? db->handle : NULL, rc, err);
}

static int db_error_vprefix(struct lxm_error **err, int r, const char *fmt, va_list ap)
{
	_cleanup_free_ char *ctx = NULL;

	if (!err || !*err)
		return r;
	if (vasprintf(&ctx, fmt, ap) >= 0)
		lxm_error_prefix(err, "%s", ctx);
	return r;
}

int db_error_prefix(struct lxm_error **err, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	r = db_error_vprefix(err, r, fmt, ap);
	va_end(ap);
	return r;
}

int db_prepare(struct lxm_db *db, const char *sql, sqlite3_stmt **ret, struct lxm_error **err)
{
	sqlite3_stmt *stmt = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db->handle, sql, -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return db_sqlite_error(db, rc, err);
	*ret = stmt;
	return 0;
}

static int db_bindv(struct lxm_db *db, sqlite3_stmt *stmt, struct lxm_error **err,
		    const char *types, va_list ap)
{
	for (int i = 0; types && types[i]; i++) {
		int rc;

		switch (types[i]) {
		case 't':
			/* Static: every caller's strings outlive the statement. */
			rc = sqlite3_bind_text(stmt, i + 1, va_arg(ap, const char *), -1,
					       SQLITE_STATIC);
			break;
		case 'i':
			rc = sqlite3_bind_int64(stmt, i + 1, va_arg(ap, int64_t));
			break;
		case 'b':
			rc = sqlite3_bind_int(stmt, i + 1, va_arg(ap, int) ? 1 : 0);
			break;
		default:
			return lxm_error_set(err, -EINVAL, 500,
					     "bind parameter %d: unknown type '%c'", i + 1,
					     types[i]);
		}
		if (rc != SQLITE_OK)
			return db_error_prefix(err, db_sqlite_error(db, rc, err),
					       "bind parameter %d", i + 1);
	}
	return 0;
}

int db_bind(struct lxm_db *db, sqlite3_stmt *stmt, struct lxm_error **err, const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = db_bindv(db, stmt, err, types, ap);
	va_end(ap);
	return r;
}

int db_preparev(struct lxm_db *db, const char *sql, sqlite3_stmt **ret, struct lxm_error **err,
		const char *types, va_list ap)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int r;

	r = db_prepare(db, sql, &stmt, err);
	if (r < 0)
		return r;
	r = db_bindv(db, stmt, err, types, ap);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(stmt);
	return 0;
}

int db_exec(struct lxm_db *db, struct lxm_error **err, const char *sql, const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	va_list ap;
	int r, rc;

	va_start(ap, types);
	r = db_preparev(db, sql, &stmt, err, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		return db_sqlite_error(db, rc, err);
	return sqlite3_changes(db->handle);
}

int db_query_int64(struct lxm_db *db, int64_t *ret, struct lxm_error **err, const char *sql,
		   const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	va_list ap;
	int r, rc;

	va_start(ap, types);
	r = db_preparev(db, sql, &stmt, err, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_sqlite_error(db, rc, err);
	*ret = sqlite3_column_int64(stmt, 0);
	return 0;
}

char *db_column_strdup(sqlite3_stmt *stmt, int col)
{
	const unsigned char *s;

	if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
		return strdup("");
	s = sqlite3_column_text(stmt, col);
	return s ? strdup((const char *)s) : NULL;
}

int db_map_table_read(struct lxm_db *db, const struct db_map_table *t, int64_t owner_id,
		      json_t **ret, struct lxm_error **err)
{
	return db_read_map(db, ret, err, t->select_sql, "i", owner_id);
}

int db_map_table_replace(struct lxm_db *db, const struct db_map_table *t, int64_t owner_id,
			 const json_t *map, struct lxm_error **err)
{
	int r = db_exec(db, err, t->delete_sql, "i", owner_id);

	return r < 0 ? r : db_insert_map(db, t->insert_sql, owner_id, map, err);
}

int db_query_strv(struct lxm_db *db, char ***ret, struct lxm_error **err, const char *sql,
		  const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	_cleanup_strv_ char **v = NULL;
	size_t n = 0, cap = 0;
	va_list ap;
	int r, rc;

	va_start(ap, types);
	r = db_preparev(db, sql, &stmt, err, types, ap);
	va_end(ap);
	if (r < 0)
		return r;

	v = calloc(1, sizeof(char *));
	if (!v)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	cap = 1;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (n + 1 >= cap) {
			char **nv = realloc(v, cap * 2 * sizeof(char *));

			if (!nv)
				return lxm_error_set(err, -ENOMEM, 500, "out of memory");
			v = nv;
			cap *= 2;
		}
		v[n] = db_column_strdup(stmt, 0);
		if (!v[n])
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		v[++n] = NULL;
	}
	if (rc != SQLITE_DONE)
		return db_sqlite_error(db, rc, err);
	*ret = TAKE_PTR(v);
	return (int)n;
}

/* Runs fixed SQL without parameters (transaction control, pragmas, migrations). */
static int db_run(struct lxm_db *db, const char *sql, struct lxm_error **err)
{
	int rc = sqlite3_exec(db->handle, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : db_sqlite_error(db, rc, err);
}

int db_tx_begin(struct lxm_db *db, bool write, bool *ret_owned, struct lxm_error **err,
		const char *fmt, ...)
{
	bool owned = sqlite3_get_autocommit(db->handle);
	va_list ap;
	int r;

	if (owned)
		r = db_run(db, write ? "BEGIN IMMEDIATE" : "BEGIN", err);
	else
		r = db_run(db, "SAVEPOINT lxm_tx", err);
	if (r < 0) {
		db_error_prefix(err, r, "begin transaction");
		va_start(ap, fmt);
		db_error_vprefix(err, r, fmt, ap);
		va_end(ap);
		return r;
	}
	*ret_owned = owned;
	return 0;
}

/* Undoes a transaction or savepoint, ignoring errors: it runs on failure paths, and some failures
 * (a full disk, an I/O error) have already rolled the transaction back. */
static void db_undo(struct lxm_db *db, bool owned)
{
	if (owned) {
		if (!sqlite3_get_autocommit(db->handle))
			sqlite3_exec(db->handle, "ROLLBACK", NULL, NULL, NULL);
		return;
	}
	sqlite3_exec(db->handle, "ROLLBACK TO lxm_tx", NULL, NULL, NULL);
	sqlite3_exec(db->handle, "RELEASE lxm_tx", NULL, NULL, NULL);
}

int db_tx_end(struct lxm_db *db, bool owned, int r, struct lxm_error **err, const char *fmt, ...)
{
	va_list ap;

	if (r >= 0) {
		int k = db_run(db, owned ? "COMMIT" : "RELEASE lxm_tx", err);

		if (k >= 0)
			return r;
		db_error_prefix(err, k, "commit");
		va_start(ap, fmt);
		r = db_error_vprefix(err, k, fmt, ap);
		va_end(ap);
	}
	db_undo(db, owned);
	return r;
}

int lxm_db_begin(struct lxm_db *db, struct lxm_error **err)
{
	if (!sqlite3_get_autocommit(db->handle))
		return lxm_error_set(err, -EBUSY, 500,
				     "begin transaction: a transaction is already open");
	return db_error_prefix(err, db_run(db, "BEGIN IMMEDIATE", err), "begin transaction");
}

int lxm_db_commit(struct lxm_db *db, struct lxm_error **err)
{
	int r;

	if (sqlite3_get_autocommit(db->handle))
		return lxm_error_set(err, -EINVAL, 500,
				     "commit transaction: no transaction is open");
	r = db_run(db, "COMMIT", err);
	if (r < 0) {
		db_undo(db, true);
		return db_error_prefix(err, r, "commit transaction");
	}
	return 0;
}

int lxm_db_rollback(struct lxm_db *db, struct lxm_error **err)
{
	if (sqlite3_get_autocommit(db->handle))
		return 0;
	return db_error_prefix(err, db_run(db, "ROLLBACK", err), "roll back transaction");
}

/* Reads the value of a pragma that answers with one text row (journal_mode, foreign_keys). */
static int db_pragma(struct lxm_db *db, const char *sql, char **ret, struct lxm_error **err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int r, rc;

	r = db_prepare(db, sql, &stmt, err);
	if (r < 0)
		return r;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return lxm_error_set(err, -EIO, 500, "no answer");
	if (rc != SQLITE_ROW)
		return db_sqlite_error(db, rc, err);
	*ret = db_column_strdup(stmt, 0);
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* Sets up the connection. sqlite's unix VFS opens the database, its WAL and its shared-memory
 * file with O_CLOEXEC, so the children lxmd starts inherit none of them (the unit test checks). */
static int db_configure(struct lxm_db *db, struct lxm_error **err)
{
	_cleanup_free_ char *mode = NULL, *fk = NULL;
	int r;

	sqlite3_extended_result_codes(db->handle, 1);
	sqlite3_busy_timeout(db->handle, DB_BUSY_TIMEOUT_MS);

	/* WAL: readers never block the writer, and a crash never leaves a half-written page. */
	r = db_pragma(db, "PRAGMA journal_mode = WAL", &mode, err);
	if (r < 0)
		return db_error_prefix(err, r, "set journal mode");
	if (strcasecmp(mode, "wal") != 0)
		return lxm_error_set(err, -EOPNOTSUPP, 500,
				     "set journal mode: WAL refused, the mode is '%s'", mode);

	/* FULL: a commit the API reported is on disk, even after a power cut. */
	r = db_run(db, "PRAGMA synchronous = FULL", err);
	if (r < 0)
		return db_error_prefix(err, r, "set synchronous mode");

	/* The pragma silently does nothing in a transaction or in an sqlite built without foreign
	 * keys, and the schema relies on them for cascades and RESTRICT: check that it took. */
	r = db_run(db, "PRAGMA foreign_keys = ON", err);
	if (r >= 0)
		r = db_pragma(db, "PRAGMA foreign_keys", &fk, err);
	if (r < 0)
		return db_error_prefix(err, r, "enable foreign keys");
	if (strcmp(fk, "1") != 0)
		return lxm_error_set(err, -EOPNOTSUPP, 500,
				     "enable foreign keys: sqlite left them off");
	return 0;
}

static int db_read_version(struct lxm_db *db, int *ret, struct lxm_error **err)
{
	int64_t v = 0;
	int r;

	r = db_run(db,
		   "CREATE TABLE IF NOT EXISTS schema (\n"
		   "	id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
		   "	version INTEGER NOT NULL UNIQUE,\n"
		   "	applied_at INTEGER NOT NULL\n"
		   ")",
		   err);
	if (r >= 0)
		r = db_query_int64(db, &v, err, "SELECT COALESCE(MAX(version), 0) FROM schema",
				   NULL);
	if (r < 0)
		return db_error_prefix(err, r, "read schema version");
	*ret = (int)v;
	return 0;
}

/* Makes the rename of a new file durable: without it a crash may keep the file's data but lose
 * its name. */
static int db_sync_dir(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	_cleanup_close_ int fd = -1;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return -errno;
	return 0;
}

/* Copies the database to "<path>.bak-v<version>" with the online backup API, which copies a
 * consistent snapshot including what is still in the WAL (a file copy would miss it). The copy is
 * written under a temporary name and renamed, so a backup that exists is a complete one. */
static int db_backup(struct lxm_db *db, int version, struct lxm_error **err)
{
	_cleanup_free_ char *dest = NULL, *tmp = NULL;
	sqlite3 *bh = NULL;
	sqlite3_backup *b;
	int r = 0, rc;

	if (asprintf(&dest, "%s.bak-v%d", db->path, version) < 0 ||
	    asprintf(&tmp, "%s.tmp", dest) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "back up database: out of memory");
	if (unlink(tmp) < 0 && errno != ENOENT)
		return lxm_error_setx(err, -errno, 500, "back up database: remove '%s'", tmp);

	rc = sqlite3_open_v2(tmp, &bh, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		r = db_handle_error(bh, rc, err);
		goto out;
	}
	b = sqlite3_backup_init(bh, "main", db->handle, "main");
	if (!b) {
		r = db_handle_error(bh, sqlite3_errcode(bh), err);
		goto out;
	}
	/* All pages in one step: lxmd's is the only connection writing, nothing to interleave. */
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE)
		r = db_handle_error(bh, rc, err);
out:
	rc = sqlite3_close(bh);
	if (r >= 0 && rc != SQLITE_OK)
		r = db_handle_error(NULL, rc, err);
	if (r >= 0 && rename(tmp, dest) < 0)
		r = lxm_error_setx(err, -errno, 500, "rename '%s'", tmp);
	if (r >= 0 && (r = db_sync_dir(dest)) < 0)
		lxm_error_setx(err, r, 500, "sync directory of '%s'", dest);
	if (r < 0) {
		unlink(tmp);
		return db_error_prefix(err, r, "back up database to '%s'", dest);
	}
	return 0;
}

/* Applies the migrations after the database's version up to target, each in its own transaction
 * with its `schema` row. The version is read again inside each transaction, so that two daemons
 * opening one file at once never apply a migration twice. Stores the version reached. */
static int db_migrate(struct lxm_db *db, int target, int *ret_version, struct lxm_error **err)
{
	for (;;) {
		const struct db_migration *m;
		bool owned;
		int r, version;

		r = db_tx_begin(db, true, &owned, err, "migrate");
		if (r < 0)
			return r;
		r = db_read_version(db, &version, err);
		if (r < 0 || version >= target) {
			r = db_tx_end(db, owned, r, err, "migrate");
			if (r >= 0)
				*ret_version = version;
			return r;
		}

		m = &db_migrations[version];
		r = db_run(db, m->sql, err);
		if (r >= 0)
			r = db_exec(db, err,
				    "INSERT INTO schema (version, applied_at) VALUES (?, ?)", "ii",
				    (int64_t)m->version, db_now_ns());
		if (r < 0)
			db_error_prefix(err, r, "migrate to version %d (%s)", m->version, m->what);
		r = db_tx_end(db, owned, r, err, "migrate to version %d (%s)", m->version, m->what);
		if (r < 0)
			return r;
	}
}

static int db_open_at(const char *path, int target, struct lxm_db **ret, struct lxm_error **err)
{
	_cleanup_db_ struct lxm_db *db = NULL;
	int r, rc, version;

	if (target < 0 || target > lxm_db_schema_latest)
		return lxm_error_set(
			err, -EINVAL, 500,
			"open database '%s': no schema version %d (this lxmd knows 0 to %d)", path,
			target, lxm_db_schema_latest);
	db = calloc(1, sizeof(*db));
	if (!db || !(db->path = strdup(path)))
		return lxm_error_set(err, -ENOMEM, 500, "open database '%s': out of memory", path);

	rc = sqlite3_open_v2(path, &db->handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK)
		return db_error_prefix(err, db_sqlite_error(db, rc, err), "open database '%s'",
				       path);
	r = db_configure(db, err);
	if (r >= 0)
		r = db_read_version(db, &version, err);
	if (r < 0)
		return db_error_prefix(err, r, "open database '%s'", path);

	if (version > lxm_db_schema_latest)
		return lxm_error_set(
			err, -ENOTSUP, 500,
			"database '%s' has schema version %d, this lxmd knows up to %d: "
			"upgrade lxmd",
			path, version, lxm_db_schema_latest);
	if (version > target)
		return lxm_error_set(err, -EINVAL, 500,
				     "database '%s' has schema version %d, past the requested %d",
				     path, version, target);

	if (version > 0 && version < target) {
		r = db_backup(db, version, err);
		if (r < 0)
			return db_error_prefix(err, r, "open database '%s'", path);
	}
	r = db_migrate(db, target, &db->version, err);
	if (r < 0)
		return db_error_prefix(err, r, "open database '%s'", path);

	*ret = TAKE_PTR(db);
	return 0;
}

int lxm_db_open(const char *path, struct lxm_db **ret, struct lxm_error **err)
{
	return db_open_at(path, lxm_db_schema_latest, ret, err);
}

int lxm_db_open_at_version(const char *path, int version, struct lxm_db **ret,
			   struct lxm_error **err)
{
	return db_open_at(path, version, ret, err);
}

void lxm_db_close(struct lxm_db *db)
{
	if (!db)
		return;
	if (db->handle) {
		if (!sqlite3_get_autocommit(db->handle))
			sqlite3_exec(db->handle, "ROLLBACK", NULL, NULL, NULL);
		/* _v2: a statement left unfinalised by a bug delays the close instead of leaking
		 * the connection. The last close checkpoints the WAL and removes -wal and -shm. */
		sqlite3_close_v2(db->handle);
	}
	free(db->path);
	free(db);
}

int lxm_db_schema_version(struct lxm_db *db)
{
	return db->version;
}

sqlite3 *lxm_db_handle(struct lxm_db *db)
{
	return db->handle;
}
