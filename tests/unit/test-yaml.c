/* lib/yaml.c: JSON -> YAML rendering, YAML -> JSON typing rule, round trips, errors. */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/yaml.h"
#include "tests/unit/tap.h"

/* Renders the JSON text as YAML and compares with want. */
static void check_render(const char *json, const char *want, const char *name)
{
	_cleanup_json_ json_t *j = json_loads(json, JSON_DECODE_ANY, NULL);
	_cleanup_free_ char *out = NULL;
	int r;

	r = j ? lxm_yaml_from_json(j, &out) : -EINVAL;
	if (!ok(r == 0, "%s: renders", name))
		return;
	is_str(out, want, name);
}

/* Parses YAML and compares the compact JSON (keys in document order) with want. */
static void check_parse(const char *yaml, const char *want, const char *name)
{
	_cleanup_json_ json_t *j = NULL;
	_cleanup_free_ char *dump = NULL, *msg = NULL;
	int r;

	r = lxm_yaml_to_json(yaml, strlen(yaml), &j, &msg);
	if (!ok(r == 0, "%s: parses", name)) {
		printf("#   error: %s\n", msg ? msg : "(none)");
		return;
	}
	dump = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	is_str(dump, want, name);
}

/* JSON -> YAML -> JSON must give the same value back. */
static void check_roundtrip(const char *json, const char *name)
{
	_cleanup_json_ json_t *j = json_loads(json, JSON_DECODE_ANY, NULL), *back = NULL;
	_cleanup_free_ char *yaml = NULL, *msg = NULL;

	if (!ok(j && lxm_yaml_from_json(j, &yaml) == 0, "%s: renders", name))
		return;
	if (!ok(lxm_yaml_to_json(yaml, strlen(yaml), &back, &msg) == 0, "%s: reloads", name)) {
		printf("#   yaml:\n%s#   error: %s\n", yaml, msg ? msg : "(none)");
		return;
	}
	if (!ok(json_equal(j, back), "%s: same value after the round trip", name)) {
		_cleanup_free_ char *dump = json_dumps(back, JSON_COMPACT | JSON_ENCODE_ANY);
		printf("#   yaml:\n%s#   got: %s\n", yaml, dump);
	}
}

static void check_error(const char *yaml, const char *want_substr, const char *name)
{
	_cleanup_json_ json_t *j = NULL;
	_cleanup_free_ char *msg = NULL;
	int r;

	r = lxm_yaml_to_json(yaml, strlen(yaml), &j, &msg);
	is_int(r, -EINVAL, name);
	ok(j == NULL, "%s: no value", name);
	if (!ok(msg && strstr(msg, want_substr), "%s: message mentions '%s'", name, want_substr))
		printf("#   got: %s\n", msg ? msg : "(null)");
}

static void test_quoting(void)
{
	static const char *const quoted[] = {
		"",	"true", "false", "True", "yes",	 "no",	  "on",	  "OFF",  "y",	   "~",
		"null", "NULL", "123",	 "-7",	 "+5",	 "0755",  "0x1F", "0o17", "0b101", "1.5",
		"1e3",	".5",	"1_000", "1:30", ".inf", "-.inf", ".NaN", "=",	  "<<",
	};
	static const char *const plain[] = {
		"hello",
		"5.0.2",
		"lxdbr0",
		"x86_64",
		"eth0",
		"1a2b3c",
		"0xZZ",
		"e5",
		"-",
		".",
		"/1.0/instances/c1",
		"2024-05-01T10:00:00Z",
		"truely",
		"nullable",
		"limits.cpu",
	};

	for (size_t i = 0; i < ARRAY_SIZE(quoted); i++)
		ok(lxm_yaml_string_needs_quotes(quoted[i]), "'%s' needs quotes", quoted[i]);
	for (size_t i = 0; i < ARRAY_SIZE(plain); i++)
		ok(!lxm_yaml_string_needs_quotes(plain[i]), "'%s' can be plain", plain[i]);
}

static void test_render(void)
{
	check_render("{\"config\":{},\"description\":\"Default profile\",\"devices\":{\"eth0\":"
		     "{\"name\":\"eth0\",\"type\":\"nic\"}},\"name\":\"default\",\"used_by\":[]}",
		     "config: {}\n"
		     "description: Default profile\n"
		     "devices:\n"
		     "  eth0:\n"
		     "    name: eth0\n"
		     "    type: nic\n"
		     "name: default\n"
		     "used_by: []\n",
		     "profile-like object in key order, empty map and list in flow style");
	check_render("{\"z\":1,\"a\":2}", "z: 1\na: 2\n", "keys keep the object's order");
	check_render("{\"list\":[\"a\",\"b\"],\"nul\":null,\"t\":true,\"f\":false,\"r\":1.5}",
		     "list:\n- a\n- b\nnul: null\nt: true\nf: false\nr: 1.5\n",
		     "sequences, null, booleans, reals");
	check_render("{\"a\":\"true\",\"b\":\"123\",\"c\":\"\",\"d\":\"k: v\",\"e\":\"null\"}",
		     "a: \"true\"\nb: \"123\"\nc: \"\"\nd: 'k: v'\ne: \"null\"\n",
		     "strings that would change type are quoted");
	check_render("{\"true\":\"x\",\"1\":\"z\",\"n\":\"y\"}",
		     "\"true\": x\n\"1\": z\n\"n\": \"y\"\n",
		     "keys are quoted by the same rule (y and n are YAML 1.1 booleans)");
	check_render("{\"s\":\"line1\\nline2\\n\"}", "s: |\n  line1\n  line2\n",
		     "multi-line strings are literal blocks");
	check_render("{\"s\":\" padded \"}", "s: ' padded '\n", "leading spaces are quoted");
	check_render("[]", "[]\n", "empty top-level array");
	check_render("{}", "{}\n", "empty top-level object");
	check_render("\"caf\\u00e9\"", "café\n", "UTF-8 is kept, not escaped");
	check_render("{\"a\":{\"b\":[{\"c\":1}]}}", "a:\n  b:\n  - c: 1\n",
		     "nested sequences of maps");
	check_render("2.0", "2.0\n", "a whole real still reads as a real");
}

static void test_parse(void)
{
	check_parse("a: true\nb: false\nc: null\nd: ~\ne:\nf: 42\ng: -7\nh: 0\n",
		    "{\"a\":true,\"b\":false,\"c\":null,\"d\":null,\"e\":null,\"f\":42,\"g\":-7,"
		    "\"h\":0}",
		    "plain true/false/null/~/empty/integers are typed");
	check_parse("a: \"true\"\nb: '42'\nc: \"\"\nd: !!str 7\n",
		    "{\"a\":\"true\",\"b\":\"42\",\"c\":\"\",\"d\":\"7\"}",
		    "quoted and tagged scalars stay strings");
	check_parse("a: yes\nb: 0755\nc: 1.0\nd: +5\ne: 0x10\nf: True\ng: -0\nh: 1e3\n",
		    "{\"a\":\"yes\",\"b\":\"0755\",\"c\":\"1.0\",\"d\":\"+5\",\"e\":\"0x10\","
		    "\"f\":\"True\",\"g\":\"-0\",\"h\":\"1e3\"}",
		    "everything else stays the text the user wrote");
	check_parse("n: 99999999999999999999\n", "{\"n\":\"99999999999999999999\"}",
		    "integers beyond 64 bits stay strings");
	check_parse("z: 1\na: 2\nm: 3\n", "{\"z\":1,\"a\":2,\"m\":3}",
		    "document key order is kept");
	check_parse("l:\n- a\n- b: c\n", "{\"l\":[\"a\",{\"b\":\"c\"}]}", "sequences");
	check_parse("{a: [1, x], b: {}}", "{\"a\":[1,\"x\"],\"b\":{}}", "flow style");
	check_parse("s: |\n  one\n  two\n", "{\"s\":\"one\\ntwo\\n\"}", "literal block");
	check_parse("", "null", "empty text is null");
	check_parse("# only a comment\n", "null", "comment-only text is null");
	check_parse("---\nkey: value\n...\n", "{\"key\":\"value\"}", "explicit document markers");
	check_parse("123: x\ntrue: y\n", "{\"123\":\"x\",\"true\":\"y\"}", "keys are strings");
}

static void test_errors(void)
{
	check_error("a: b: c\n", "line 1, column 5", "nested plain mapping is a syntax error");
	check_error("a: [1, 2\n", "line 2", "unclosed flow sequence");
	check_error("a: 1\na: 2\n", "duplicate key 'a'", "duplicate keys");
	check_error("a: &x 1\nb: *x\n", "aliases", "aliases are refused");
	check_error("a: 1\n---\nb: 2\n", "single YAML document", "two documents");
	check_error("? [a]\n: b\n", "mapping keys", "non-scalar keys");
	check_error("a: \"\xff\"\n", "byte", "invalid UTF-8");
}

static void test_roundtrip(void)
{
	check_roundtrip("{\"config\":{\"limits.cpu\":\"2\",\"security.nesting\":\"true\","
			"\"user.empty\":\"\",\"user.null\":\"null\",\"user.octal\":\"0755\","
			"\"user.float\":\"1.5\",\"user.colon\":\"a: b\",\"user.hash\":\"a #b\","
			"\"user.dash\":\"- x\",\"user.multi\":\"l1\\nl2\",\"user.yes\":\"yes\"},"
			"\"description\":\"\",\"devices\":{},\"name\":\"p\",\"used_by\":[]}",
			"config strings of every awkward kind");
	check_roundtrip("{\"i\":-12,\"b\":true,\"n\":null,\"a\":[1,\"1\",[],{}],\"s\":\"~\"}",
			"typed values and nesting");
	check_roundtrip("{\"s\":\"trailing space \",\"t\":\"\\ttab\",\"q\":\"'\\\"\"}",
			"whitespace and quotes");
	check_roundtrip("{\"s\":\"no newline at end\\nsecond\",\"u\":\"\\u00e9\\u4e2d\"}",
			"literal block without a final newline; non-ASCII");
	check_roundtrip("[\"\",\"-\",\"?\",\":\",\"#\",\"@x\",\"`x\",\"%x\",\"!x\",\"*x\",\"&x\"]",
			"indicator characters");
}

int main(void)
{
	test_quoting();
	test_render();
	test_parse();
	test_errors();
	test_roundtrip();
	return tap_done();
}
