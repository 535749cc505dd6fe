#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/format.h"

struct lxm_table {
	size_t ncols;
	char **header; /* ncols strings */
	char ***rows;  /* nrows arrays of ncols strings */
	size_t nrows;
	size_t cap; /* allocated entries in rows */
};

static const char *const format_names[_LXM_FORMAT_MAX] = {
	[LXM_FORMAT_TABLE] = "table",
	[LXM_FORMAT_CSV] = "csv",
	[LXM_FORMAT_JSON] = "json",
	[LXM_FORMAT_YAML] = "yaml",
};

enum lxm_format lxm_format_from_string(const char *s)
{
	for (size_t i = 0; i < _LXM_FORMAT_MAX; i++)
		if (streq(s, format_names[i]))
			return (enum lxm_format)i;
	return _LXM_FORMAT_INVALID;
}

/* ---- tables ---- */

static void row_free(char **row, size_t ncols)
{
	if (!row)
		return;
	for (size_t i = 0; i < ncols; i++)
		free(row[i]);
	free(row);
}

static char **row_dup(const char *const *cells, size_t ncols)
{
	char **row = calloc(ncols, sizeof(*row));

	if (!row)
		return NULL;
	for (size_t i = 0; i < ncols; i++) {
		row[i] = strdup(cells[i] ? cells[i] : "");
		if (!row[i]) {
			row_free(row, ncols);
			return NULL;
		}
	}
	return row;
}

int lxm_table_new(struct lxm_table **ret, size_t ncols, const char *const *header)
{
	struct lxm_table *t;

	if (ncols == 0)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ncols = ncols;
	t->header = row_dup(header, ncols);
	if (!t->header) {
		free(t);
		return -ENOMEM;
	}
	*ret = t;
	return 0;
}

void lxm_table_free(struct lxm_table *t)
{
	if (!t)
		return;
	row_free(t->header, t->ncols);
	for (size_t i = 0; i < t->nrows; i++)
		row_free(t->rows[i], t->ncols);
	free(t->rows);
	free(t);
}

int lxm_table_add_row(struct lxm_table *t, const char *const *cells)
{
	char **row;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char ***rows = reallocarray(t->rows, cap, sizeof(*rows));

		if (!rows)
			return -ENOMEM;
		t->rows = rows;
		t->cap = cap;
	}
	row = row_dup(cells, t->ncols);
	if (!row)
		return -ENOMEM;
	t->rows[t->nrows++] = row;
	return 0;
}

size_t lxm_table_rows(const struct lxm_table *t)
{
	return t->nrows;
}

int lxm_natural_cmp(const char *a, const char *b)
{
	while (*a && *b) {
		if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
			const char *ea, *eb;
			size_t la, lb;
			int c;

			while (*a == '0' && isdigit((unsigned char)a[1]))
				a++;
			while (*b == '0' && isdigit((unsigned char)b[1]))
				b++;
			for (ea = a; isdigit((unsigned char)*ea); ea++)
				;
			for (eb = b; isdigit((unsigned char)*eb); eb++)
				;
			la = (size_t)(ea - a);
			lb = (size_t)(eb - b);
			if (la != lb)
				return la < lb ? -1 : 1;
			c = strncmp(a, b, la);
			if (c)
				return c;
			a = ea;
			b = eb;
			continue;
		}
		if (*a != *b)
			return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
		a++;
		b++;
	}
	return *a ? 1 : *b ? -1 : 0;
}

/* qsort() has no context argument; the column count rides in a file-scope variable, which is
 * fine for a single-threaded CLI but kept to this one call. */
static size_t sort_ncols;

static int row_cmp(const void *x, const void *y)
{
	char *const *a = *(char **const *)x, *const *b = *(char **const *)y;

	for (size_t i = 0; i < sort_ncols; i++) {
		int c = lxm_natural_cmp(a[i], b[i]);

		if (c)
			return c;
	}
	return 0;
}

void lxm_table_sort(struct lxm_table *t)
{
	if (t->nrows < 2)
		return;
	sort_ncols = t->ncols;
	qsort(t->rows, t->nrows, sizeof(*t->rows), row_cmp);
}

/* Display width of n bytes of UTF-8: one column per character. Enough for the ASCII and Latin
 * text of names and addresses; wide CJK glyphs would count as one. */
static size_t text_width(const char *s, size_t n)
{
	size_t w = 0;

	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			w++;
	return w;
}

/* Line `idx` of a multi-line cell: start and length, or length 0 past the last line. */
static size_t cell_line(const char *cell, size_t idx, const char **start)
{
	const char *p = cell, *nl;

	for (; idx > 0; idx--) {
		nl = strchr(p, '\n');
		if (!nl) {
			*start = "";
			return 0;
		}
		p = nl + 1;
	}
	*start = p;
	nl = strchr(p, '\n');
	return nl ? (size_t)(nl - p) : strlen(p);
}

static size_t cell_lines(const char *cell)
{
	size_t n = 1;

	for (; *cell; cell++)
		if (*cell == '\n')
			n++;
	return n;
}

static size_t cell_width(const char *cell)
{
	size_t w = 0, n = cell_lines(cell);

	for (size_t i = 0; i < n; i++) {
		const char *s;
		size_t len = cell_line(cell, i, &s), lw = text_width(s, len);

		if (lw > w)
			w = lw;
	}
	return w;
}

static void put_border(FILE *f, const size_t *widths, size_t ncols)
{
	for (size_t c = 0; c < ncols; c++) {
		fputc('+', f);
		for (size_t i = 0; i < widths[c] + 2; i++)
			fputc('-', f);
	}
	fputs("+\n", f);
}

static void put_padded(FILE *f, const char *s, size_t len, size_t width, bool center)
{
	size_t gap = width - text_width(s, len), left = center ? gap / 2 : 0;

	fprintf(f, "%*s%.*s%*s", (int)left, "", (int)len, s, (int)(gap - left), "");
}

static void put_row(FILE *f, char *const *row, const size_t *widths, size_t ncols, bool center)
{
	size_t height = 1;

	for (size_t c = 0; c < ncols; c++)
		if (cell_lines(row[c]) > height)
			height = cell_lines(row[c]);
	for (size_t line = 0; line < height; line++) {
		for (size_t c = 0; c < ncols; c++) {
			const char *s;
			size_t len = cell_line(row[c], line, &s);

			fputs("| ", f);
			put_padded(f, s, len, widths[c], center);
			fputc(' ', f);
		}
		fputs("|\n", f);
	}
}

static void render_table(const struct lxm_table *t, FILE *f, size_t *widths)
{
	for (size_t c = 0; c < t->ncols; c++) {
		widths[c] = cell_width(t->header[c]);
		for (size_t r = 0; r < t->nrows; r++)
			if (cell_width(t->rows[r][c]) > widths[c])
				widths[c] = cell_width(t->rows[r][c]);
	}
	/* lxc's layout: a rule above and below the header and after every row. */
	put_border(f, widths, t->ncols);
	put_row(f, t->header, widths, t->ncols, true);
	put_border(f, widths, t->ncols);
	for (size_t r = 0; r < t->nrows; r++) {
		put_row(f, t->rows[r], widths, t->ncols, false);
		put_border(f, widths, t->ncols);
	}
}

/* RFC 4180 quoting, plus Go's csv rule (which lxc uses) of quoting a leading space. */
static void put_csv_field(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && s[0] != '\t') {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void render_csv(const struct lxm_table *t, FILE *f)
{
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			if (c)
				fputc(',', f);
			put_csv_field(f, t->rows[r][c]);
		}
		fputc('\n', f);
	}
}

int lxm_table_render(const struct lxm_table *t, enum lxm_format fmt, char **ret)
{
	_cleanup_free_ size_t *widths = NULL;
	_cleanup_free_ char *buf = NULL;
	FILE *f;
	size_t size = 0;

	if (fmt != LXM_FORMAT_TABLE && fmt != LXM_FORMAT_CSV)
		return -EINVAL;
	widths = calloc(t->ncols, sizeof(*widths));
	if (!widths)
		return -ENOMEM;
	f = open_memstream(&buf, &size);
	if (!f)
		return -ENOMEM;
	if (fmt == LXM_FORMAT_TABLE)
		render_table(t, f, widths);
	else
		render_csv(t, f);
	if (fclose(f) != 0 || !buf)
		return -ENOMEM;
	*ret = TAKE_PTR(buf);
	return 0;
}

/* ---- JSON and YAML ---- */

int lxm_format_value(const json_t *j, enum lxm_format fmt, char **ret)
{
	_cleanup_free_ char *s = NULL;
	char *out;

	if (fmt == LXM_FORMAT_YAML)
		return lxm_yaml_from_json(j, ret);
	if (fmt != LXM_FORMAT_JSON)
		return -EINVAL;
	s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s || asprintf(&out, "%s\n", s) < 0)
		return -ENOMEM;
	*ret = out;
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of obj, sorted; NULL on allocation failure. The strings belong to obj. */
static const char **sorted_keys(const json_t *obj, size_t *ret_n)
{
	size_t n = json_object_size(obj), i = 0;
	const char **keys = calloc(n + 1, sizeof(*keys));
	const char *k;
	json_t *v;

	if (!keys)
		return NULL;
	json_object_foreach ((json_t *)obj, k, v)
		keys[i++] = k;
	qsort(keys, n, sizeof(*keys), key_cmp);
	*ret_n = n;
	return keys;
}

json_t *lxm_json_reorder(const json_t *obj, const char *const *keys)
{
	_cleanup_json_ json_t *out = json_object();
	_cleanup_free_ const char **rest = NULL;
	size_t n;

	if (!out || !json_is_object(obj))
		return NULL;
	for (const char *const *k = keys; *k; k++) {
		json_t *v = json_object_get(obj, *k);

		if (v && json_object_set(out, *k, v) < 0)
			return NULL;
	}
	rest = sorted_keys(obj, &n);
	if (!rest)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!json_object_get(out, rest[i]) &&
		    json_object_set(out, rest[i], json_object_get(obj, rest[i])) < 0)
			return NULL;
	return TAKE_PTR(out);
}

json_t *lxm_json_sorted(const json_t *j)
{
	if (json_is_object(j)) {
		_cleanup_json_ json_t *out = json_object();
		_cleanup_free_ const char **keys = NULL;
		size_t n;

		keys = sorted_keys(j, &n);
		if (!out || !keys)
			return NULL;
		for (size_t i = 0; i < n; i++) {
			json_t *v = lxm_json_sorted(json_object_get(j, keys[i]));

			if (!v || json_object_set_new(out, keys[i], v) < 0)
				return NULL;
		}
		return TAKE_PTR(out);
	}
	if (json_is_array(j)) {
		_cleanup_json_ json_t *out = json_array();
		json_t *e;
		size_t i;

		if (!out)
			return NULL;
		json_array_foreach (j, i, e) {
			json_t *v = lxm_json_sorted(e);

			if (!v || json_array_append_new(out, v) < 0)
				return NULL;
		}
		return TAKE_PTR(out);
	}
	return json_deep_copy(j);
}

/* ---- time ---- */

/* Parses "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" into seconds since the epoch. */
static int parse_rfc3339(const char *s, time_t *ret, int *ret_year)
{
	int year, mon, day, hour, min, sec, n = 0, oh = 0, om = 0;
	struct tm tm = {};
	const char *p;
	long off = 0;

	if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &year, &mon, &day, &hour, &min, &sec,
		   &n) != 6 ||
	    n == 0)
		return -EINVAL;
	p = s + n;
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++)
			;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int k = 0;

		if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
			return -EINVAL;
		off = (oh * 60L + om) * 60L * (*p == '-' ? -1 : 1);
		p += 1 + k;
	} else {
		return -EINVAL;
	}
	if (*p || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	*ret = timegm(&tm) - off;
	*ret_year = year;
	return 0;
}

char *lxm_format_bytes(uint64_t bytes, bool iec, char buf[static 32])
{
	static const char *const iec_units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	static const char *const si_units[] = { "B", "kB", "MB", "GB", "TB", "PB", "EB" };
	const char *const *units = iec ? iec_units : si_units;
	double base = iec ? 1024.0 : 1000.0, v = (double)bytes;
	size_t u = 0;

	while (v >= base && u + 1 < ARRAY_SIZE(iec_units)) {
		v /= base;
		u++;
	}
	if (u == 0)
		snprintf(buf, 32, "%" PRIu64 "B", bytes);
	else
		snprintf(buf, 32, "%.2f%s", v, units[u]);
	return buf;
}

int lxm_format_time(const char *rfc3339, bool local, char buf[static 64])
{
	struct tm tm;
	time_t t;
	int year, r;

	if (!rfc3339)
		return -EINVAL;
	r = parse_rfc3339(rfc3339, &t, &year);
	if (r < 0)
		return r;
	if (year <= 1)
		return -ERANGE;
	if (local ? !localtime_r(&t, &tm) : !gmtime_r(&t, &tm))
		return -EINVAL;
	if (strftime(buf, 64, local ? "%Y/%m/%d %H:%M %Z" : "%Y/%m/%d %H:%M UTC", &tm) == 0)
		return -EINVAL;
	return 0;
}
