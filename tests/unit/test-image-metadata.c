/* metadata.yaml parsing, the template language (every construct, errors with line numbers, the
 * output cap) and applying templates into a rootfs, with symlinks in the rootfs that point out
 * of it. Applying runs as root (files are chowned to root). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "images/metadata.h"
#include "json.h"
#include "tap.h"
#include "util.h"

static char tmp[] = "/var/tmp/lxm-test-image-metadata.XXXXXX";

static char *tmp_path(const char *rel)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", tmp, rel) < 0)
		abort();
	return p;
}

static int remove_any(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

static int put(const char *rel, const char *text)
{
	_cleanup_free_ char *p = tmp_path(rel);

	return lxm_write_file_atomic(p, text, strlen(text), 0644);
}

static char *get(const char *rel)
{
	_cleanup_free_ char *p = tmp_path(rel);
	char *text = NULL;
	size_t len;

	return lxm_read_file(p, &text, &len) < 0 ? NULL : text;
}

/* ---- metadata.yaml ---- */

static const char full_yaml[] = "architecture: x86_64\n"
				"creation_date: 1700000000\n"
				"expiry_date: 1800000000\n"
				"vendor_field: kept\n"
				"properties:\n"
				"  os: debian\n"
				"  release: 12\n"
				"  description: Debian 12\n"
				"templates:\n"
				"  /etc/hostname:\n"
				"    when: [create, copy]\n"
				"    template: hostname.tpl\n"
				"  /etc/hosts:\n"
				"    when:\n"
				"      - create\n"
				"    template: hosts.tpl\n"
				"    properties:\n"
				"      default: 127.0.1.1\n"
				"    create_only: true\n";

static void test_parse(void)
{
	struct lxm_image_metadata *m = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	json_t *t;
	int k;

	k = lxm_image_metadata_parse(full_yaml, strlen(full_yaml), &m, &err);
	ok(k == 0, "parse a full metadata.yaml: %s", err ? err->msg : "ok");
	if (k < 0)
		return;
	is_str(m->architecture, "x86_64", "architecture");
	is_int(m->creation_date, 1700000000, "creation_date");
	is_int(m->expiry_date, 1800000000, "expiry_date");
	is_str(json_string_value(json_object_get(m->properties, "os")), "debian", "properties.os");
	is_str(json_string_value(json_object_get(m->properties, "release")), "12",
	       "properties.release: a YAML number is kept as its text");
	is_str(json_string_value(json_object_get(m->raw, "vendor_field")), "kept",
	       "unknown keys stay in raw");
	t = json_object_get(m->templates, "/etc/hostname");
	ok(t && json_array_size(json_object_get(t, "when")) == 2 &&
		   streq(json_string_value(json_object_get(t, "template")), "hostname.tpl") &&
		   json_is_false(json_object_get(t, "create_only")) &&
		   json_object_size(json_object_get(t, "properties")) == 0,
	   "templates: /etc/hostname normalized (create_only false, properties {})");
	t = json_object_get(m->templates, "/etc/hosts");
	ok(t && json_is_true(json_object_get(t, "create_only")) &&
		   streq(json_string_value(
				 json_object_get(json_object_get(t, "properties"), "default")),
			 "127.0.1.1"),
	   "templates: /etc/hosts keeps its properties and create_only");
	lxm_image_metadata_free(m);
	m = NULL;

	k = lxm_image_metadata_parse("architecture: aarch64\ncreation_date: 1\n", 38, &m, &err);
	ok(k == 0 && m && json_object_size(m->properties) == 0 &&
		   json_object_size(m->templates) == 0 && m->expiry_date == 0,
	   "a minimal metadata.yaml: empty properties and templates, no expiry");
	lxm_image_metadata_free(m);
}

static void parse_fails(const char *yaml, const char *want, const char *what)
{
	struct lxm_image_metadata *m = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	int k = lxm_image_metadata_parse(yaml, strlen(yaml), &m, &err);

	ok(k == -EINVAL && !m && err && err->status == 400 && strstr(err->msg, want), "%s: %s",
	   what, err ? err->msg : "(no error)");
	lxm_image_metadata_free(m);
}

static void test_parse_errors(void)
{
	parse_fails("creation_date: 1\n", "metadata.yaml: architecture: missing",
		    "missing architecture");
	parse_fails("architecture: [x]\ncreation_date: 1\n", "architecture: not a non-empty string",
		    "architecture not a string");
	parse_fails("architecture: x86_64\n", "metadata.yaml: creation_date: missing",
		    "missing creation_date");
	parse_fails("architecture: x86_64\ncreation_date: yesterday\n",
		    "metadata.yaml: creation_date: not a number", "bad creation_date");
	parse_fails("architecture: x86_64\ncreation_date: 1\nexpiry_date: 1.5\n",
		    "expiry_date: not a number", "bad expiry_date");
	parse_fails("architecture: x86_64\ncreation_date: 1\nproperties:\n  os: {a: b}\n",
		    "properties.os: not a string", "nested property");
	parse_fails("architecture: x86_64\ncreation_date: 1\ntemplates:\n"
		    "  /etc/../../root/x:\n    template: x.tpl\n    when: [create]\n",
		    "templates: /etc/../../root/x: not an absolute path without \"..\"",
		    "template path with ..");
	parse_fails("architecture: x86_64\ncreation_date: 1\ntemplates:\n"
		    "  etc/hostname:\n    template: x.tpl\n",
		    "templates: etc/hostname: not an absolute path", "relative template path");
	parse_fails("architecture: x86_64\ncreation_date: 1\ntemplates:\n"
		    "  /etc/hostname:\n    template: ../x.tpl\n",
		    "template: ../x.tpl is not a plain file name", "template file with a /");
	parse_fails("architecture: x86_64\ncreation_date: 1\ntemplates:\n"
		    "  /etc/hostname:\n    when: [boot]\n    template: h.tpl\n",
		    "when: boot is not one of create, copy, start", "unknown trigger");
	parse_fails("architecture: x86_64\ncreation_date: 1\ntemplates:\n"
		    "  /etc/hostname:\n    when: [create]\n",
		    "templates: /etc/hostname: template: missing", "template without a file");
	parse_fails("architecture: x86_64\ncreation_date: 1\ntemplates:\n"
		    "  /etc/hostname:\n    template: h.tpl\n    create_only: maybe\n",
		    "create_only: not true or false", "bad create_only");
	parse_fails("architecture: x86_64\n  creation_date: 1\n", "metadata.yaml: line 2",
		    "YAML syntax error");
	parse_fails("- a\n- b\n", "metadata.yaml: not a mapping", "not a mapping");
}

/* ---- rendering ---- */

static json_t *ctx;

static void render_is(const char *tpl, const char *want, const char *what)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *out = NULL;
	int k = lxm_template_render(tpl, strlen(tpl), ctx, &out, &err);

	if (k < 0) {
		ok(0, "%s: %s", what, err ? err->msg : "failed");
		return;
	}
	is_str(out, want, what);
}

static void render_fails(const char *tpl, const char *want, const char *what)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *out = NULL;
	int k = lxm_template_render(tpl, strlen(tpl), ctx, &out, &err);

	ok(k < 0 && !out && err && err->status == 400 && strstr(err->msg, want), "%s: %s", what,
	   err ? err->msg : "(no error)");
}

static void test_render(void)
{
	render_is("plain text\n", "plain text\n", "text passes through");
	render_is("", "", "empty template");
	render_is("{{ instance.name }}", "web1", "instance.name");
	render_is("{{container.name}}.{{ container.type }}", "web1.container",
		  "container is an alias of instance");
	render_is("{{ properties.default }} {{ trigger }}", "127.0.1.1 create",
		  "properties and trigger");
	render_is("[{{ nothing }}][{{ instance.nothing.deeper }}][{{ properties.x }}]", "[][][]",
		  "unknown names render as nothing");
	render_is("{{ config_get(\"user.greeting\", \"none\") }}!", "hello!",
		  "config_get: a set key, trailing newline dropped");
	render_is("{{ config_get(\"user.missing\", \"fallback\") }}", "fallback",
		  "config_get: the default");
	render_is("[{{ config_get('user.missing') }}]", "[]", "config_get without a default");
	render_is("{{ nothing|default:\"dflt\" }} {{ instance.name|default:\"dflt\" }}",
		  "dflt web1", "default filter");
	render_is("{{ \"MiXeD\"|lower }} {{ instance.name|upper }}", "mixed WEB1",
		  "lower and upper");
	render_is("{{ nothing|default:\"AbC\"|lower }}", "abc", "filters chain");
	render_is("{{ instance.name == \"web1\" }} {{ not instance.name }}", "True False",
		  "booleans render as True/False");
	render_is("{{ 42 }} {{ config.limit }}", "42 7", "numbers");
	render_is("a{# a comment\n over lines #}b", "ab", "comments vanish");
	render_is("{% if instance.name %}yes{% endif %}", "yes", "if true");
	render_is("{% if nothing %}yes{% endif %}no", "no", "if false");
	render_is("{% if nothing %}a{% else %}b{% endif %}", "b", "else");
	render_is("{% if nothing %}a{% elif instance.name == \"x\" %}b{% elif instance.name == "
		  "\"web1\" %}c{% else %}d{% endif %}",
		  "c", "elif chain takes the first true branch");
	render_is("{% if instance.name %}a{% elif instance.name %}b{% else %}c{% endif %}", "a",
		  "only the first true branch");
	render_is("{% if not nothing %}a{% endif %}{% if not not instance.name %}b{% endif %}",
		  "ab", "not");
	render_is("{% if instance.name != \"web2\" %}a{% endif %}", "a", "!=");
	render_is("{% if config_get(\"user.flag\", \"\") == \"on\" %}on{% else %}off{% endif %}",
		  "on", "if on config_get");
	render_is("{% if instance.name and nothing %}a{% elif nothing or instance.name %}b{% endif "
		  "%}",
		  "b", "and / or");
	render_is("{% if instance.name %}{% if nothing %}x{% else %}y{% endif %}z{% endif %}", "yz",
		  "nested if");
	render_is("{% if (not nothing) == true %}t{% endif %}", "t", "parentheses and true");
	render_is("a  {%- if true -%}  b  {%- endif %}\nc", "ab\nc", "whitespace control");
	render_is("127.0.0.1 localhost\n127.0.1.1 {{ instance.name }}\n",
		  "127.0.0.1 localhost\n127.0.1.1 web1\n", "a hosts file");
	render_is("{ not a tag } {", "{ not a tag } {", "lone braces are text");
}

static void test_render_errors(void)
{
	_cleanup_free_ char *deep = NULL, *nots = NULL, *huge = NULL;
	size_t n = 0;

	render_fails("line 1\nline 2\n{% for x in y %}{% endfor %}",
		     "template line 3: unknown tag 'for'", "unknown tag with its line");
	render_fails("a\n{{ instance.name|title }}", "template line 2: unknown filter 'title'",
		     "unknown filter with its line");
	render_fails("a\n\n{% if x %}\nb\n", "template line 3: {% if %} without {% endif %}",
		     "unclosed if names the if's line");
	render_fails("a\n{% endif %}", "template line 2: {% endif %} without {% if %}",
		     "stray endif");
	render_fails("{% if x %}{% else %}{% else %}{% endif %}",
		     "{% else %} followed by another branch", "two elses");
	render_fails("{{ \"open }}", "unterminated string", "unterminated string");
	render_fails("x\n{{ instance.name ", "template line 2: unclosed {{", "unclosed {{");
	render_fails("{# no end", "template line 1: unclosed {#", "unclosed comment");
	render_fails("{{ upper(\"x\") }}", "unknown function 'upper'", "unknown function");
	render_fails("{{ instance.name instance.name }}", "expected }}", "two values");
	render_fails("{% if %}{% endif %}", "expected a value", "if without a condition");
	render_fails("{{ x|default }}", "filter default needs an argument",
		     "default without argument");
	render_fails("{{ a @ b }}", "unexpected character '@'", "stray character");

	/* Deep nesting is an error, not a stack overflow. */
	deep = calloc(200, 16);
	nots = calloc(200, 4 + 1);
	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(deep + n, "{%% if 1 %%}");
	render_fails(deep, "nested too deeply", "100 nested ifs");
	strcpy(nots, "{{ ");
	for (int i = 0; i < 150; i++)
		strcat(nots, "not ");
	strcat(nots, "1 }}");
	render_fails(nots, "nested too deeply", "150 nots");

	/* 20 references to a 100 KB config value: over the 1 MiB output cap. */
	huge = calloc(1, 2000);
	for (int i = 0; i < 20; i++)
		strcat(huge, "{{ config.big }}{{ config.big }}\n");
	render_fails(huge, "output over 1 MiB", "output cap");
}

/* ---- applying templates ---- */

static const char apply_yaml[] = "architecture: x86_64\n"
				 "creation_date: 1700000000\n"
				 "templates:\n"
				 "  /etc/hostname:\n"
				 "    when: [create, copy]\n"
				 "    template: hostname.tpl\n"
				 "  /etc/hosts:\n"
				 "    when: [create]\n"
				 "    template: hosts.tpl\n"
				 "    properties:\n"
				 "      default: 127.0.1.1\n"
				 "  /etc/motd:\n"
				 "    when: [create, start]\n"
				 "    template: motd.tpl\n"
				 "    create_only: true\n"
				 "  /etc/issue:\n"
				 "    when: [create]\n"
				 "    template: motd.tpl\n"
				 "    create_only: true\n"
				 "  /srv/new/deep/file.txt:\n"
				 "    when: [create]\n"
				 "    template: hostname.tpl\n"
				 "  /abs/out.txt:\n"
				 "    when: [create]\n"
				 "    template: hostname.tpl\n"
				 "  /up/out.txt:\n"
				 "    when: [create]\n"
				 "    template: hostname.tpl\n"
				 "  /etc/final:\n"
				 "    when: [create]\n"
				 "    template: hostname.tpl\n"
				 "  /etc/started:\n"
				 "    when: [start]\n"
				 "    template: trigger.tpl\n";

static bool is_root_file(const char *rel, mode_t mode)
{
	_cleanup_free_ char *p = tmp_path(rel);
	struct stat st;

	return lstat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == mode &&
	       st.st_uid == 0 && st.st_gid == 0;
}

static void test_apply(void)
{
	_cleanup_free_ char *rootfs = tmp_path("rootfs"), *tpls = tmp_path("templates");
	_cleanup_free_ char *hostdir = tmp_path("hostdir"), *inside = NULL, *cmd = NULL;
	_cleanup_free_ char *hostfile = tmp_path("hostdir/hostfile"), *text = NULL;
	struct lxm_image_metadata *m = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	struct stat st;
	int k;

	if (asprintf(&inside, "%s%s", rootfs, hostdir) < 0 ||
	    asprintf(&cmd, "mkdir -p %s/etc %s/hostdir %s %s %s && chmod 0700 %s", rootfs, rootfs,
		     tpls, hostdir, inside, tmp) < 0)
		abort();
	ok(system(cmd) == 0, "rootfs made");
	put("templates/hostname.tpl", "{{ instance.name }}\n");
	put("templates/hosts.tpl", "127.0.0.1 localhost\n{{ properties.default }} "
				   "{{ container.name }}\n");
	put("templates/motd.tpl", "Welcome to {{ instance.name|upper }}\n");
	put("templates/trigger.tpl", "{{ trigger }} {{ config_get(\"user.greeting\") }}\n");
	put("rootfs/etc/motd", "keep me\n");
	put("hostdir/hostfile", "host\n");
	/* /abs points at a host directory by its absolute path (which also exists inside the
	 * rootfs), /up climbs out with "..", /etc/final is a symlink to a host file. */
	free(cmd);
	if (asprintf(&cmd, "ln -s %s %s/abs && ln -s ../hostdir %s/up && ln -s %s %s/etc/final",
		     hostdir, rootfs, rootfs, hostfile, rootfs) < 0 ||
	    system(cmd) != 0)
		abort();

	k = lxm_image_metadata_parse(apply_yaml, strlen(apply_yaml), &m, &err);
	ok(k == 0, "parse: %s", err ? err->msg : "ok");
	if (k < 0)
		return;
	k = lxm_image_apply_templates(m, tpls, rootfs, "create", ctx, &err);
	ok(k == 0, "apply create: %s", err ? err->msg : "ok");
	text = get("rootfs/etc/hostname");
	is_str(text, "web1\n", "/etc/hostname rendered");
	ok(is_root_file("rootfs/etc/hostname", 0644), "/etc/hostname: 0644 root:root");
	free(text);
	text = get("rootfs/etc/hosts");
	is_str(text, "127.0.0.1 localhost\n127.0.1.1 web1\n",
	       "/etc/hosts with the template's properties");
	free(text);
	text = get("rootfs/etc/motd");
	is_str(text, "keep me\n", "create_only leaves an existing file alone");
	free(text);
	text = get("rootfs/etc/issue");
	is_str(text, "Welcome to WEB1\n", "create_only writes a missing file");
	free(text);
	text = get("rootfs/srv/new/deep/file.txt");
	is_str(text, "web1\n", "parent directories created");
	{
		_cleanup_free_ char *p = tmp_path("rootfs/srv/new/deep");

		ok(stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755 &&
			   st.st_uid == 0,
		   "created directories are 0755 root");
	}
	free(text);
	text = get("hostdir/out.txt");
	ok(!text, "an absolute symlink did not lead the write to the host");
	free(text);
	{
		_cleanup_free_ char *p = NULL;

		if (asprintf(&p, "%s/out.txt", inside) < 0)
			abort();
		ok(lxm_read_file(p, &text, &(size_t){ 0 }) == 0 && streq(text, "web1\n"),
		   "it resolved inside the rootfs");
	}
	free(text);
	text = get("rootfs/hostdir/out.txt");
	is_str(text, "web1\n", "a symlink with .. resolved inside the rootfs");
	free(text);
	text = get("hostdir/hostfile");
	is_str(text, "host\n", "a symlink at the path to a host file: the host file is untouched");
	free(text);
	text = get("rootfs/etc/final");
	ok(is_root_file("rootfs/etc/final", 0644) && streq(text, "web1\n"),
	   "the symlink was replaced by the rendered file");
	free(text);
	text = get("rootfs/etc/started");
	ok(!text, "start templates not applied on create");
	free(text);

	/* start: motd exists (create_only), /etc/started is written with the trigger. */
	k = lxm_image_apply_templates(m, tpls, rootfs, "start", ctx, &err);
	ok(k == 0, "apply start: %s", err ? err->msg : "ok");
	text = get("rootfs/etc/started");
	is_str(text, "start hello\n", "start template sees its trigger and the config");
	free(text);
	text = get("rootfs/etc/motd");
	is_str(text, "keep me\n", "create_only still holds on start");
	free(text);
	text = NULL;
	lxm_image_metadata_free(m);
	m = NULL;

	/* A template file that is a symlink to a host file is not read. */
	{
		_cleanup_free_ char *p = tmp_path("templates/hostname.tpl");
		static const char y[] = "architecture: x\ncreation_date: 1\ntemplates:\n"
					"  /etc/hostname:\n    when: [copy]\n"
					"    template: hostname.tpl\n";

		unlink(p);
		if (symlink(hostfile, p) < 0)
			abort();
		k = lxm_image_metadata_parse(y, strlen(y), &m, &err);
		k = k < 0 ? k : lxm_image_apply_templates(m, tpls, rootfs, "copy", ctx, &err);
		ok(k < 0 && err && strstr(err->msg, "template /etc/hostname: read hostname.tpl"),
		   "a symlinked template file is refused: %s", err ? err->msg : "no error");
		lxm_error_free(TAKE_PTR(err));
		lxm_image_metadata_free(m);
		m = NULL;
	}
	/* A template that does not parse names the path, the file and the line. */
	{
		static const char y[] =
			"architecture: x\ncreation_date: 1\ntemplates:\n"
			"  /etc/bad:\n    when: [create]\n    template: bad.tpl\n"
			"  /etc/missing:\n    when: [copy]\n    template: none.tpl\n";

		put("templates/bad.tpl", "ok\n{% for %}\n");
		k = lxm_image_metadata_parse(y, strlen(y), &m, &err);
		k = k < 0 ? k : lxm_image_apply_templates(m, tpls, rootfs, "create", ctx, &err);
		ok(k < 0 && err && err->status == 400 &&
			   strstr(err->msg, "template /etc/bad (bad.tpl): template line 2: unknown "
					    "tag 'for'"),
		   "a bad template: %s", err ? err->msg : "no error");
		lxm_error_free(TAKE_PTR(err));
		text = get("rootfs/etc/bad");
		ok(!text, "nothing written for it");
		k = lxm_image_apply_templates(m, tpls, rootfs, "copy", ctx, &err);
		ok(k < 0 && err && strstr(err->msg, "template /etc/missing: read none.tpl"),
		   "a missing template file: %s", err ? err->msg : "no error");
		lxm_image_metadata_free(m);
	}
}

int main(void)
{
	_cleanup_free_ char *big = malloc(100 * 1024 + 1);

	memset(big, 'x', 100 * 1024);
	big[100 * 1024] = '\0';
	ctx = json_pack("{s:{s:s, s:s}, s:{s:s, s:s, s:s, s:i, s:s}, s:{s:s}, s:s}", "instance",
			"name", "web1", "type", "container", "config", "user.greeting", "hello\n",
			"user.flag", "on", "user.empty", "", "limit", 7, "big", big, "properties",
			"default", "127.0.1.1", "trigger", "create");
	test_parse();
	test_parse_errors();
	test_render();
	test_render_errors();
	if (geteuid() == 0 && mkdtemp(tmp)) {
		test_apply();
		nftw(tmp, remove_any, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	} else {
		printf("# applying templates skipped: needs root\n");
	}
	json_decref(ctx);
	return tap_done();
}
