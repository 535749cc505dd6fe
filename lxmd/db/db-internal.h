/* Shared by the lxmd/db/ files only: the handle, the migrations table and small query helpers.
 *
 * The helpers set *err to the bare sqlite message (or their own cause) and leave naming the step
 * to their caller, which adds it with db_error_prefix() on the way up:
 * "create instance 'c1': insert config: <sqlite3_errmsg>". */
#pragma once

#include <jansson.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"

#include "db.h"

struct lxm_db {
	sqlite3 *handle; /* the one connection, opened read-write */
	char *path;	 /* file name as given to open, for messages */
	int version;	 /* schema version after the migrations run by open */
};

/* One schema step. Each runs in its own transaction together with its row in `schema`. */
struct db_migration {
	int version;	  /* the version the database is at once sql ran: 1, 2, ... */
	const char *what; /* one line for messages: "images and aliases" */
	const char *sql;  /* statements run with sqlite3_exec(): constants only, no parameters */
};

/* Indexed by version - 1; db_migrations[i].version == i + 1. */
extern const struct db_migration db_migrations[];

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize)
#define _cleanup_stmt_ _cleanup_(sqlite3_finalizep)

/* jansson ships json_decrefp(); named apart from lib/json.h's _cleanup_json_ so the two can meet
 * in one file. */
#define _cleanup_db_json_ _cleanup_(json_decrefp)

/* Current time in unix nanoseconds, the unit of every timestamp column. */
int64_t db_now_ns(void);

/* Fills *err from a failed sqlite call: the connection's message, with an errno and HTTP status
 * that say what kind of failure rc is (a UNIQUE constraint is -EEXIST/409, a busy database
 * -EBUSY/503, ...). Returns that negative errno. */
int db_sqlite_error(struct lxm_db *db, int rc, struct lxm_error **err);

/* Prefixes "<step>: " to *err and returns r (unchanged, so the errno survives a NULL err). */
int db_error_prefix(struct lxm_error **err, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Compiles one statement. */
int db_prepare(struct lxm_db *db, const char *sql, sqlite3_stmt **ret, struct lxm_error **err);

/* Binds parameters 1, 2, ... from the arguments, one per character of types:
 * 't' const char * (NULL binds SQL NULL), 'i' int64_t, 'b' bool (passed as int). */
int db_bind(struct lxm_db *db, sqlite3_stmt *stmt, struct lxm_error **err, const char *types, ...);

/* db_prepare() followed by binding the va_list as db_bind() does. */
int db_preparev(struct lxm_db *db, const char *sql, sqlite3_stmt **ret, struct lxm_error **err,
		const char *types, va_list ap);

/* Prepares sql, binds the arguments as db_bind() does and runs it to completion, ignoring rows.
 * Returns the number of rows changed. */
int db_exec(struct lxm_db *db, struct lxm_error **err, const char *sql, const char *types, ...);

/* Runs a query whose first row's first column is an integer and stores it in *ret. Returns
 * -ENOENT without touching *err when there is no row, so the caller can say what is missing. */
int db_query_int64(struct lxm_db *db, int64_t *ret, struct lxm_error **err, const char *sql,
		   const char *types, ...);

/* Runs a query and collects the first column of every row (in the query's order) into a
 * NULL-terminated string array. Returns the count. */
int db_query_strv(struct lxm_db *db, char ***ret, struct lxm_error **err, const char *sql,
		  const char *types, ...);

/* Starts a transaction: BEGIN (IMMEDIATE when write, so the write lock is taken up front) when
 * none is open, and then *ret_owned is true; else a savepoint inside the caller's transaction.
 * Reads use one too, so that the several SELECTs behind one object see one snapshot. On failure
 * the message starts with the context fmt: "<context>: begin transaction: <cause>". */
int db_tx_begin(struct lxm_db *db, bool write, bool *ret_owned, struct lxm_error **err,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Ends what db_tx_begin() started: commits (or releases the savepoint) when r >= 0, undoes
 * everything since the begin when r < 0 or when the commit fails. Returns r (whose message the
 * caller composed), or the commit failure as "<context>: commit: <cause>". */
int db_tx_end(struct lxm_db *db, bool owned, int r, struct lxm_error **err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Checks that map is NULL or an object whose values are all strings. what names the map in the
 * message ("config", "device 'eth0'"). -EINVAL (400) naming the key otherwise. */
int db_check_map(const json_t *map, const char *what, struct lxm_error **err);

/* Checks that devices is NULL or an object of device name → db_check_map()-valid object. */
int db_check_devices(const json_t *devices, struct lxm_error **err);

/* Inserts every key of map (checked with db_check_map()) with sql, an INSERT taking the parameters
 * (owner_id, key, value). A NULL map inserts nothing. */
int db_insert_map(struct lxm_db *db, const char *sql, int64_t owner_id, const json_t *map,
		  struct lxm_error **err);

/* Inserts every device of devices (checked with db_check_devices()): device_sql takes
 * (owner_id, name) and config_sql takes (device row id, key, value). */
int db_insert_devices(struct lxm_db *db, const char *device_sql, const char *config_sql,
		      int64_t owner_id, const json_t *devices, struct lxm_error **err);

/* Reads a key → value object with sql, a SELECT of (key, value) whose parameters are bound from
 * the arguments as db_bind() does. */
int db_read_map(struct lxm_db *db, json_t **ret, struct lxm_error **err, const char *sql,
		const char *types, ...);

/* The statements of a key → value table whose rows belong to one row of another table, such as
 * networks_config (network_id, key, value). Make one with DB_MAP_TABLE(). */
struct db_map_table {
	const char *select_sql; /* SELECT key, value ... WHERE <owner> = ? ORDER BY key */
	const char *delete_sql; /* DELETE ... WHERE <owner> = ? */
	const char *insert_sql; /* INSERT ... (<owner>, key, value) VALUES (?, ?, ?) */
};

#define DB_MAP_TABLE(table, owner)                                                                 \
	{                                                                                          \
		.select_sql = "SELECT key, value FROM " table " WHERE " owner " = ? ORDER BY key", \
		.delete_sql = "DELETE FROM " table " WHERE " owner " = ?",                         \
		.insert_sql = "INSERT INTO " table " (" owner ", key, value) VALUES (?, ?, ?)",    \
	}

/* Reads the rows of owner_id in t as a key → value object. */
int db_map_table_read(struct lxm_db *db, const struct db_map_table *t, int64_t owner_id,
		      json_t **ret, struct lxm_error **err);

/* Replaces the rows of owner_id in t by the keys of map (checked with db_check_map()); a NULL
 * map leaves none. */
int db_map_table_replace(struct lxm_db *db, const struct db_map_table *t, int64_t owner_id,
			 const json_t *map, struct lxm_error **err);

/* Reads a device name → object of key → value with sql, a SELECT of (device name, key, value)
 * taking (owner_id), where key and value are NULL for a device without keys (a LEFT JOIN). */
int db_read_devices(struct lxm_db *db, const char *sql, int64_t owner_id, json_t **ret,
		    struct lxm_error **err);

/* Duplicates text column col of the current row; SQL NULL reads as "". NULL only when out of
 * memory. */
char *db_column_strdup(sqlite3_stmt *stmt, int col);
