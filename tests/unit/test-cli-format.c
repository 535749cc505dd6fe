/* lxm/format.c (tables, CSV, JSON/YAML, times, key order) and the CLI's pure helpers: reply
 * decoding, URL escaping, socket lookup, key=value and string maps. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lxm/client.h"
#include "lxm/commands.h"
#include "lxm/format.h"
#include "tests/unit/tap.h"

static struct lxm_table *make_table(size_t ncols, const char *const *header)
{
	struct lxm_table *t = NULL;

	if (lxm_table_new(&t, ncols, header) < 0)
		abort();
	return t;
}

static void check_render(const struct lxm_table *t, enum lxm_format fmt, const char *want,
			 const char *name)
{
	_cleanup_free_ char *out = NULL;

	if (!ok(lxm_table_render(t, fmt, &out) == 0, "%s: renders", name))
		return;
	is_str(out, want, name);
}

static void test_table(void)
{
	static const char *const header[] = { "NAME", "STATE", "IPV4", "SNAPSHOTS" };
	_cleanup_table_ struct lxm_table *t = make_table(4, header);
	const char *c1[] = { "c1", "RUNNING", "10.0.4.5 (eth1)\n10.0.3.5 (eth0)", "2" };
	const char *c2[] = { "c2", "STOPPED", "", "0" };

	check_render(t, LXM_FORMAT_TABLE,
		     "+------+-------+------+-----------+\n"
		     "| NAME | STATE | IPV4 | SNAPSHOTS |\n"
		     "+------+-------+------+-----------+\n",
		     "an empty list is the header-only table");
	check_render(t, LXM_FORMAT_CSV, "", "an empty list is empty CSV");

	ok(lxm_table_add_row(t, c2) == 0, "add a row");
	ok(lxm_table_add_row(t, c1) == 0, "add a multi-line row");
	is_int(lxm_table_rows(t), 2, "two rows");
	lxm_table_sort(t);
	check_render(t, LXM_FORMAT_TABLE,
		     "+------+---------+-----------------+-----------+\n"
		     "| NAME |  STATE  |      IPV4       | SNAPSHOTS |\n"
		     "+------+---------+-----------------+-----------+\n"
		     "| c1   | RUNNING | 10.0.4.5 (eth1) | 2         |\n"
		     "|      |         | 10.0.3.5 (eth0) |           |\n"
		     "+------+---------+-----------------+-----------+\n"
		     "| c2   | STOPPED |                 | 0         |\n"
		     "+------+---------+-----------------+-----------+\n",
		     "lxc's layout: centered headers, left cells, a rule after each row");
	check_render(t, LXM_FORMAT_CSV,
		     "c1,RUNNING,\"10.0.4.5 (eth1)\n10.0.3.5 (eth0)\",2\n"
		     "c2,STOPPED,,0\n",
		     "CSV has no header and quotes multi-line cells");
	ok(lxm_table_render(t, LXM_FORMAT_JSON, &(char *){ NULL }) == -EINVAL,
	   "a table cannot render as JSON");
}

static void test_table_details(void)
{
	static const char *const h1[] = { "N" };
	static const char *const h2[] = { "NAME", "DESCRIPTION" };
	_cleanup_table_ struct lxm_table *wide = make_table(1, h1);
	_cleanup_table_ struct lxm_table *utf = make_table(2, h2);
	_cleanup_table_ struct lxm_table *csv =
		make_table(4, (const char *const[]){ "A", "B", "C", "D" });
	const char *w[] = { "abcd" };
	const char *u[] = { "café", "ünïcödé" };
	const char *q[] = { "a,b", "say \"hi\"", " lead", "plain" };
	const char *nulls[] = { NULL, "x" };

	ok(lxm_table_add_row(wide, w) == 0, "add");
	check_render(wide, LXM_FORMAT_TABLE,
		     "+------+\n"
		     "|  N   |\n"
		     "+------+\n"
		     "| abcd |\n"
		     "+------+\n",
		     "an odd gap puts the extra space after the header");

	ok(lxm_table_add_row(utf, u) == 0, "add");
	ok(lxm_table_add_row(utf, nulls) == 0, "NULL cells are empty");
	check_render(utf, LXM_FORMAT_TABLE,
		     "+------+-------------+\n"
		     "| NAME | DESCRIPTION |\n"
		     "+------+-------------+\n"
		     "| café | ünïcödé     |\n"
		     "+------+-------------+\n"
		     "|      | x           |\n"
		     "+------+-------------+\n",
		     "UTF-8 characters count one column each");

	ok(lxm_table_add_row(csv, q) == 0, "add");
	check_render(csv, LXM_FORMAT_CSV, "\"a,b\",\"say \"\"hi\"\"\",\" lead\",plain\n",
		     "RFC 4180 quoting: commas, doubled quotes, and leading spaces as Go does");
}

static void test_sort(void)
{
	static const char *const h[] = { "NAME", "X" };
	_cleanup_table_ struct lxm_table *t = make_table(2, h);
	const char *names[] = { "c10", "c2", "b", "c1", "c02" };
	_cleanup_free_ char *out = NULL;

	ok(lxm_natural_cmp("c2", "c10") < 0, "c2 < c10");
	ok(lxm_natural_cmp("c10", "c2") > 0, "c10 > c2");
	ok(lxm_natural_cmp("abc", "abd") < 0, "plain strings compare bytewise");
	ok(lxm_natural_cmp("a", "ab") < 0, "a prefix sorts first");
	ok(lxm_natural_cmp("x007", "x7") == 0, "leading zeros do not matter");
	ok(lxm_natural_cmp("", "") == 0, "empty strings are equal");

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		ok(lxm_table_add_row(t, (const char *const[]){ names[i], i % 2 ? "1" : "0" }) == 0,
		   "add %s", names[i]);
	lxm_table_sort(t);
	ok(lxm_table_render(t, LXM_FORMAT_CSV, &out) == 0, "render");
	is_str(out, "b,0\nc1,1\nc02,0\nc2,1\nc10,0\n",
	       "rows sort naturally (c02 = c2), then by later columns");
}

static void test_formats(void)
{
	_cleanup_json_ json_t *j = json_pack("[{s:s, s:i, s:b}]", "name", "c1", "num", 2, "e", 0);
	_cleanup_free_ char *js = NULL, *ys = NULL;

	is_int(lxm_format_from_string("table"), LXM_FORMAT_TABLE, "table");
	is_int(lxm_format_from_string("csv"), LXM_FORMAT_CSV, "csv");
	is_int(lxm_format_from_string("json"), LXM_FORMAT_JSON, "json");
	is_int(lxm_format_from_string("yaml"), LXM_FORMAT_YAML, "yaml");
	is_int(lxm_format_from_string("xml"), _LXM_FORMAT_INVALID, "xml is not a format");
	is_int(lxm_format_from_string(NULL), _LXM_FORMAT_INVALID, "NULL is not a format");

	ok(lxm_format_value(j, LXM_FORMAT_JSON, &js) == 0, "json renders");
	is_str(js, "[{\"name\":\"c1\",\"num\":2,\"e\":false}]\n", "json is compact, on one line");
	ok(lxm_format_value(j, LXM_FORMAT_YAML, &ys) == 0, "yaml renders");
	is_str(ys, "- name: c1\n  num: 2\n  e: false\n", "yaml is a block list");
	ok(lxm_format_value(j, LXM_FORMAT_CSV, &(char *){ NULL }) == -EINVAL,
	   "values do not render as csv");
}

static void test_time(void)
{
	char buf[64];

	ok(lxm_format_time("2024-05-01T10:00:00Z", false, buf) == 0, "plain UTC");
	is_str(buf, "2024/05/01 10:00 UTC", "lxc's layout");
	ok(lxm_format_time("2024-05-01T10:00:00.123456789Z", false, buf) == 0, "nanoseconds");
	is_str(buf, "2024/05/01 10:00 UTC", "fractions are dropped");
	ok(lxm_format_time("2024-05-01T12:30:00+02:00", false, buf) == 0, "an offset");
	is_str(buf, "2024/05/01 10:30 UTC", "offsets are applied");
	ok(lxm_format_time("2023-12-31T23:30:00-01:00", false, buf) == 0, "a negative offset");
	is_str(buf, "2024/01/01 00:30 UTC", "across a year boundary");
	is_int(lxm_format_time("0001-01-01T00:00:00Z", false, buf), -ERANGE, "Go's zero time");
	is_int(lxm_format_time("2024-05-01 10:00", false, buf), -EINVAL, "no seconds or zone");
	is_int(lxm_format_time("2024-05-01T10:00:00", false, buf), -EINVAL, "no zone");
	is_int(lxm_format_time("yesterday", false, buf), -EINVAL, "not a time");
	is_int(lxm_format_time(NULL, false, buf), -EINVAL, "NULL");
	setenv("TZ", "UTC", 1);
	ok(lxm_format_time("2024-05-01T10:00:00Z", true, buf) == 0, "local time");
	is_str(buf, "2024/05/01 10:00 UTC", "local time names the zone");
}

static void test_json_order(void)
{
	static const char *const keys[] = { "name", "config", "missing", NULL };
	_cleanup_json_ json_t *in = json_loads(
		"{\"z\":1,\"config\":{\"b\":\"2\",\"a\":{\"d\":1,\"c\":2}},\"a\":0,\"name\":\"p\"}",
		0, NULL);
	_cleanup_json_ json_t *ordered = lxm_json_reorder(in, keys);
	_cleanup_json_ json_t *sorted = lxm_json_sorted(in), *empty = json_array();
	_cleanup_free_ char *o = NULL, *s = NULL;

	o = json_dumps(ordered, JSON_COMPACT);
	is_str(o,
	       "{\"name\":\"p\",\"config\":{\"b\":\"2\",\"a\":{\"d\":1,\"c\":2}},\"a\":0,\"z\":1}",
	       "reorder: listed keys first, the rest sorted, nested maps untouched");
	s = json_dumps(sorted, JSON_COMPACT);
	is_str(s,
	       "{\"a\":0,\"config\":{\"a\":{\"c\":2,\"d\":1},\"b\":\"2\"},\"name\":\"p\",\"z\":1}",
	       "sorted: every level");
	ok(lxm_json_reorder(empty, keys) == NULL, "reorder needs an object");
}

static void check_reply_error(const char *body, long status, const char *want, int want_errno,
			      int want_status, const char *name)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	json_t *env = NULL;
	int r;

	r = lxm_client_parse_reply("/run/x.sock", status, body, strlen(body), &env, &err);
	is_int(r, -want_errno, name);
	ok(env == NULL, "%s: no envelope", name);
	if (ok(err != NULL, "%s: error set", name)) {
		is_str(err->msg, want, name);
		is_int(err->status, want_status, name);
	}
}

static void test_reply(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_json_ json_t *env = NULL;
	const char *sync = "{\"type\":\"sync\",\"status\":\"Success\",\"status_code\":200,"
			   "\"metadata\":{\"a\":1}}";

	ok(lxm_client_parse_reply("/s", 200, sync, strlen(sync), &env, &err) == 0, "sync parses");
	is_int(json_integer_value(json_object_get(json_object_get(env, "metadata"), "a")), 1,
	       "metadata is there");
	ok(err == NULL, "no error");

	check_reply_error(
		"{\"type\":\"error\",\"error\":\"Instance not found\",\"error_code\":404}", 404,
		"Instance not found", ENOENT, 404, "404 envelope");
	check_reply_error("{\"type\":\"error\",\"error\":\"exists\",\"error_code\":409}", 409,
			  "exists", EEXIST, 409, "409 envelope");
	check_reply_error("{\"type\":\"error\",\"error\":\"\",\"error_code\":0}", 500,
			  "the server failed with HTTP 500 and no message", EIO, 500,
			  "an error envelope without message or code");
	check_reply_error(
		"<html>It works!</html>\n", 200,
		"/run/x.sock is not an lxmd/LXD API endpoint (unexpected reply: HTTP 200, "
		"\"<html>It works!</html>.\")",
		EPROTO, 502, "HTML");
	check_reply_error(
		"{\"metadata\":{}}", 200,
		"/run/x.sock is not an lxmd/LXD API endpoint (unexpected reply: HTTP 200, "
		"\"{\"metadata\":{}}\")",
		EPROTO, 502, "JSON without type");
	check_reply_error(
		"{\"type\":\"weird\"}", 200,
		"/run/x.sock is not an lxmd/LXD API endpoint (unexpected reply: HTTP 200, "
		"\"{\"type\":\"weird\"}\")",
		EPROTO, 502, "unknown type");
	check_reply_error("", 204,
			  "/run/x.sock is not an lxmd/LXD API endpoint (unexpected reply: HTTP 204 "
			  "with an empty body)",
			  EPROTO, 502, "empty body");
	check_reply_error(
		"0123456789012345678901234567890123456789012345678901234567890123", 200,
		"/run/x.sock is not an lxmd/LXD API endpoint (unexpected reply: HTTP 200, "
		"\"012345678901234567890123456789012345678901234567890123456789...\")",
		EPROTO, 502, "long replies are cut");
}

static void test_client_helpers(void)
{
	_cleanup_free_ char *e1 = lxm_url_escape("c1"), *e2 = lxm_url_escape("a b/c?d&é~._-");
	_cleanup_free_ char *p1 = NULL, *p2 = NULL, *p3 = NULL;

	is_str(e1, "c1", "plain names are kept");
	is_str(e2, "a%20b%2Fc%3Fd%26%C3%A9~._-", "everything else is escaped");

	unsetenv("LXM_SOCKET");
	unsetenv("LXM_DIR");
	ok(lxm_client_socket_path(&p1) == 0, "default socket");
	is_str(p1, LXM_DEFAULT_DIR "/unix.socket", "default under " LXM_DEFAULT_DIR);
	setenv("LXM_DIR", "/tmp/lxm-test", 1);
	ok(lxm_client_socket_path(&p2) == 0, "LXM_DIR socket");
	is_str(p2, "/tmp/lxm-test/unix.socket", "LXM_DIR/unix.socket");
	setenv("LXM_SOCKET", "/run/other.sock", 1);
	ok(lxm_client_socket_path(&p3) == 0, "LXM_SOCKET");
	is_str(p3, "/run/other.sock", "LXM_SOCKET wins over LXM_DIR");
	unsetenv("LXM_SOCKET");
	unsetenv("LXM_DIR");
}

static void test_cli_helpers(void)
{
	_cleanup_json_ json_t *in =
		json_loads("{\"s\":\"x\",\"i\":2,\"t\":true,\"f\":false,\"n\":null}", 0, NULL);
	_cleanup_json_ json_t *bad = json_loads("{\"l\":[1]}", 0, NULL), *out = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *k = NULL, *v = NULL, *dump = NULL, *up = lxm_cli_upper("Running");

	ok(lxm_cli_split_kv("limits.cpu=2=3", &k, &v) == 0, "split key=value");
	is_str(k, "limits.cpu", "key");
	is_str(v, "2=3", "the value keeps later '='");
	is_int(lxm_cli_split_kv("novalue", &(char *){ NULL }, &(char *){ NULL }), -EINVAL,
	       "no '='");
	is_int(lxm_cli_split_kv("=v", &(char *){ NULL }, &(char *){ NULL }), -EINVAL, "no key");
	is_str(up, "RUNNING", "upper-case");

	ok(lxm_cli_string_map(in, "config", &out, &err) == 0, "string map");
	dump = json_dumps(out, JSON_COMPACT);
	is_str(dump, "{\"s\":\"x\",\"i\":\"2\",\"t\":\"true\",\"f\":\"false\",\"n\":\"\"}",
	       "typed YAML scalars turn back into their text");
	is_int(lxm_cli_string_map(bad, "config", &(json_t *){ NULL }, &err), -EINVAL, "a list");
	is_str(err ? err->msg : NULL, "config key 'l': value must be text, not a list",
	       "the error names the key");
}

int main(void)
{
	test_table();
	test_table_details();
	test_sort();
	test_formats();
	test_time();
	test_json_order();
	test_reply();
	test_client_helpers();
	test_cli_helpers();
	return tap_done();
}
