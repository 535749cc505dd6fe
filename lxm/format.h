/* Output of the CLI's list and show commands, in the shapes lxc prints: bordered tables, CSV
 * without a header, compact JSON and YAML of the API objects. Renderers return strings so that
 * tests can compare them byte for byte; only commands write to stdout. */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lxm_format {
	LXM_FORMAT_TABLE, /* +----+ bordered table with a header row (the default) */
	LXM_FORMAT_CSV,	  /* RFC 4180 rows, no header */
	LXM_FORMAT_JSON,  /* the API objects, compact, one line */
	LXM_FORMAT_YAML,  /* the API objects, block YAML */
	_LXM_FORMAT_MAX,
	_LXM_FORMAT_INVALID = -EINVAL,
};

/* "table", "csv", "json", "yaml" -> the enum; anything else -> _LXM_FORMAT_INVALID. */
enum lxm_format lxm_format_from_string(const char *s);

/* A table of strings; a cell may hold several lines ("10.0.0.2 (eth0)\n10.0.1.2 (eth1)"). */
struct lxm_table;

int lxm_table_new(struct lxm_table **ret, size_t ncols, const char *const *header);
void lxm_table_free(struct lxm_table *t);
/* Appends a copy of ncols cells (NULL cells print empty). Returns 0 or -ENOMEM. */
int lxm_table_add_row(struct lxm_table *t, const char *const *cells);
size_t lxm_table_rows(const struct lxm_table *t);
/* Orders rows like lxc: column by column, numbers inside strings by value ("c2" < "c10"). */
void lxm_table_sort(struct lxm_table *t);
/* Renders as LXM_FORMAT_TABLE or LXM_FORMAT_CSV into a malloc'ed string; other formats -EINVAL.
 * Table cells are left-aligned, headers centered, widths counted in UTF-8 characters. */
int lxm_table_render(const struct lxm_table *t, enum lxm_format fmt, char **ret);

static inline void lxm_table_freep(struct lxm_table **t)
{
	lxm_table_free(*t);
}
#define _cleanup_table_ __attribute__((cleanup(lxm_table_freep)))

/* Renders API objects as LXM_FORMAT_JSON (one line) or LXM_FORMAT_YAML, ending in a newline. */
int lxm_format_value(const json_t *j, enum lxm_format fmt, char **ret);

/* strcmp() that compares runs of digits by numeric value, as lxc sorts its tables. */
int lxm_natural_cmp(const char *a, const char *b);

/* Formats an RFC 3339 timestamp from the API like lxc does: "2024/05/01 10:00 UTC" in UTC, or in
 * the local zone ("2024/05/01 12:00 CEST") when local is true. Returns 0, -EINVAL for text that is
 * no timestamp, or -ERANGE for Go's zero time ("0001-01-01T00:00:00Z"), which lxc leaves out. */
int lxm_format_time(const char *rfc3339, bool local, char buf[static 64]);

/* A byte count as lxc prints sizes, with two decimals: in IEC units when iec ("55.68MiB", for
 * memory and images) or decimal ones otherwise ("38.61kB", for network traffic); "0B" for 0. */
char *lxm_format_bytes(uint64_t bytes, bool iec, char buf[static 32]);

/* A new object with the keys of obj: first those in keys (NULL-terminated) that obj has, in that
 * order, then the others sorted, so `show` output has lxc's field order whatever the server's. */
json_t *lxm_json_reorder(const json_t *obj, const char *const *keys);
/* A deep copy of j whose objects list their keys sorted, as Go prints maps. */
json_t *lxm_json_sorted(const json_t *j);
