/* metadata.yaml, the template language and the application of templates to a rootfs.
 *
 * The renderer is a one-pass recursive descent over the template text: text is copied to the
 * output, {{ EXPR }} appends the value, and {% if %} parses every branch (so a syntax error is
 * found wherever it is) while only the first true one writes output. Expressions are pure, so
 * evaluating them in a branch not taken changes nothing. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "images/metadata.h"
#include "json.h"
#include "util.h"
#include "yaml.h"

#define TEMPLATE_MAX (1024 * 1024) /* the largest template file read */
#define OUTPUT_MAX   (1024 * 1024) /* the largest rendered output */
#define NESTING_MAX  64		   /* nested {% if %} blocks, and nested not / ( ) */

/* ---- metadata.yaml ---- */

void lxm_image_metadata_free(struct lxm_image_metadata *m)
{
	if (!m)
		return;
	free(m->architecture);
	json_decref(m->properties);
	json_decref(m->templates);
	json_decref(m->raw);
	free(m);
}

/* A 400 error about the document's content. */
#define bad(err, ...) lxm_error_set(err, -EINVAL, 400, __VA_ARGS__)

/* The text of a scalar as the YAML reader typed it (12, true): its text again; null is "". */
static char *scalar_text(const json_t *v)
{
	char *s = NULL;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return strdup(json_string_value(v));
	case JSON_INTEGER:
		return asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0 ? NULL : s;
	case JSON_REAL:
		return asprintf(&s, "%g", json_real_value(v)) < 0 ? NULL : s;
	case JSON_TRUE:
		return strdup("true");
	case JSON_FALSE:
		return strdup("false");
	default:
		return strdup("");
	}
}

/* A map of strings from YAML: scalars the YAML reader typed (12, true) go back to their text,
 * null to "". what names the map in errors. */
static int string_map(const json_t *in, const char *what, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *out = json_object();
	const char *key;
	json_t *v;

	if (!out)
		return -ENOMEM;
	if (in && !json_is_null(in) && !json_is_object(in))
		return bad(err, "metadata.yaml: %s: not a mapping", what);
	json_object_foreach ((json_t *)in, key, v) {
		_cleanup_free_ char *s = NULL;

		if (json_is_object(v) || json_is_array(v))
			return lxm_error_set(err, -EINVAL, 400,
					     "metadata.yaml: %s.%s: not a string", what, key);
		s = scalar_text(v);
		if (!s || json_object_set_new(out, key, json_string(s)) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(out);
	return 0;
}

static int parse_date(const json_t *doc, const char *key, bool required, int64_t *ret,
		      struct lxm_error **err)
{
	json_t *v = json_object_get(doc, key);

	if (!v || json_is_null(v)) {
		if (required)
			return bad(err, "metadata.yaml: %s: missing", key);
		*ret = 0;
		return 0;
	}
	if (!json_is_integer(v))
		return bad(err, "metadata.yaml: %s: not a number", key);
	if (json_integer_value(v) < 0)
		return bad(err, "metadata.yaml: %s: negative", key);
	*ret = json_integer_value(v);
	return 0;
}

/* Whether path has a ".." component. */
static bool has_dotdot(const char *path)
{
	for (const char *p = path; (p = strstr(p, "..")); p += 2) {
		if ((p == path || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			return true;
	}
	return false;
}

static int parse_when(const json_t *when, const char *path, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *out = json_array();
	size_t i;
	json_t *v;

	if (!out)
		return -ENOMEM;
	if (when && !json_is_null(when) && !json_is_array(when))
		return bad(err, "metadata.yaml: templates: %s: when: not a list", path);
	json_array_foreach (when, i, v) {
		const char *s = json_string_value(v);

		if (!streq(s, "create") && !streq(s, "copy") && !streq(s, "start"))
			return bad(err,
				   "metadata.yaml: templates: %s: when: %s is not one of create, "
				   "copy, start",
				   path, s ? s : "(not a string)");
		if (json_array_append(out, v) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* Checks one entry of templates and returns it normalized: every field present. */
static int parse_template(const char *path, const json_t *in, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *when = NULL, *props = NULL, *out = NULL;
	_cleanup_free_ char *what = NULL;
	const json_t *co = json_object_get(in, "create_only");
	const char *file;
	int k;

	if (path[0] != '/' || has_dotdot(path))
		return bad(err, "metadata.yaml: templates: %s: %s", path,
			   "not an absolute path without \"..\"");
	if (!json_is_object(in))
		return bad(err, "metadata.yaml: templates: %s: %s", path, "not a mapping");
	file = json_string_value(json_object_get(in, "template"));
	if (!file || !*file)
		return bad(err, "metadata.yaml: templates: %s: %s", path, "template: missing");
	if (strchr(file, '/') || streq(file, ".") || streq(file, ".."))
		return bad(err,
			   "metadata.yaml: templates: %s: template: %s is not a plain file name",
			   path, file);
	if (co && !json_is_boolean(co) && !json_is_null(co))
		return bad(err, "metadata.yaml: templates: %s: %s", path,
			   "create_only: not true or false");
	k = parse_when(json_object_get(in, "when"), path, &when, err);
	if (k < 0)
		return k;
	if (asprintf(&what, "templates: %s: properties", path) < 0)
		return -ENOMEM;
	k = string_map(json_object_get(in, "properties"), what, &props, err);
	if (k < 0)
		return k;
	out = json_pack("{s:O, s:s, s:O, s:b}", "when", when, "template", file, "properties", props,
			"create_only", json_is_true(co));
	if (!out)
		return -ENOMEM;
	*ret = TAKE_PTR(out);
	return 0;
}

static int parse_templates(const json_t *in, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *out = json_object();
	const char *path;
	json_t *v;

	if (!out)
		return -ENOMEM;
	if (in && !json_is_null(in) && !json_is_object(in))
		return bad(err, "metadata.yaml: templates: not a mapping");
	json_object_foreach ((json_t *)in, path, v) {
		json_t *t = NULL;
		int k = parse_template(path, v, &t, err);

		if (k < 0)
			return k;
		if (json_object_set_new(out, path, t) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(out);
	return 0;
}

int lxm_image_metadata_parse(const char *text, size_t len, struct lxm_image_metadata **ret,
			     struct lxm_error **err)
{
	struct lxm_image_metadata *m = NULL;
	_cleanup_free_ char *msg = NULL;
	_cleanup_json_ json_t *doc = NULL;
	const char *arch;
	int k;

	k = lxm_yaml_to_json(text, len, &doc, &msg);
	if (k == -ENOMEM)
		return lxm_error_set(err, k, 500, "metadata.yaml: out of memory");
	if (k < 0)
		return lxm_error_set(err, k, 400, "metadata.yaml: %s", msg ? msg : "not YAML");
	if (!json_is_object(doc))
		return lxm_error_set(err, -EINVAL, 400, "metadata.yaml: not a mapping");
	arch = json_string_value(json_object_get(doc, "architecture"));
	if (!json_object_get(doc, "architecture"))
		return lxm_error_set(err, -EINVAL, 400, "metadata.yaml: architecture: missing");
	if (!arch || !*arch)
		return lxm_error_set(err, -EINVAL, 400,
				     "metadata.yaml: architecture: not a non-empty string");

	m = calloc(1, sizeof(*m));
	if (!m || !(m->architecture = strdup(arch))) {
		k = -ENOMEM;
		goto fail;
	}
	k = parse_date(doc, "creation_date", true, &m->creation_date, err);
	if (k >= 0)
		k = parse_date(doc, "expiry_date", false, &m->expiry_date, err);
	if (k >= 0)
		k = string_map(json_object_get(doc, "properties"), "properties", &m->properties,
			       err);
	if (k >= 0)
		k = parse_templates(json_object_get(doc, "templates"), &m->templates, err);
	if (k < 0)
		goto fail;
	m->raw = TAKE_PTR(doc);
	*ret = m;
	return 0;

fail:
	lxm_image_metadata_free(m);
	if (k == -ENOMEM)
		return lxm_error_set(err, k, 500, "metadata.yaml: out of memory");
	return k;
}

/* ---- the template language ---- */

enum tok_type {
	T_CLOSE,  /* "}}" or "%}" (whichever closes the current tag) */
	T_NAME,	  /* identifier */
	T_STRING, /* "..." or '...' */
	T_INT,	  /* decimal integer */
	T_LPAREN, /* ( */
	T_RPAREN, /* ) */
	T_COMMA,  /* , */
	T_DOT,	  /* . */
	T_PIPE,	  /* | */
	T_COLON,  /* : */
	T_EQ,	  /* == */
	T_NE,	  /* != */
};

struct tok {
	enum tok_type type; /* what it is */
	const char *s;	    /* T_NAME: where the name starts in the template */
	size_t len;	    /* T_NAME: its length */
	char *str;	    /* T_STRING: the decoded text (owned) */
	json_int_t num;	    /* T_INT: the value */
	bool trim;	    /* T_CLOSE: written "-}}" or "-%}": trim the whitespace after */
};

struct tpl {
	const char *p;		/* the next character to read */
	const char *end;	/* the end of the template */
	int line;		/* the line of p, from 1 */
	const json_t *ctx;	/* what names refer to */
	char *out;		/* the output so far */
	size_t out_len;		/* its length */
	size_t out_cap;		/* its allocation */
	struct lxm_error **err; /* where errors go */
	int depth;		/* current nesting of blocks and expressions */
	bool trim_next;		/* the previous tag ended with "-": skip leading whitespace */
	char close;		/* '}' in {{ }}, '%' in {% %}: the tag's closing character */
	struct tok tok;		/* the token looked at */
	bool have_tok;		/* tok is valid */
};

static __attribute__((format(printf, 2, 3))) int syntax(struct tpl *t, const char *fmt, ...)
{
	_cleanup_free_ char *what = NULL;
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vasprintf(&what, fmt, ap);
	va_end(ap);
	if (k < 0)
		return -ENOMEM;
	return lxm_error_set(t->err, -EINVAL, 400, "template line %d: %s", t->line, what);
}

static int emit(struct tpl *t, const char *s, size_t n)
{
	if (n == 0)
		return 0;
	if (t->out_len + n > OUTPUT_MAX)
		return lxm_error_set(t->err, -EFBIG, 400, "template line %d: output over 1 MiB",
				     t->line);
	if (t->out_len + n + 1 > t->out_cap) {
		size_t cap = t->out_cap ? t->out_cap : 256;
		char *o;

		while (cap < t->out_len + n + 1)
			cap *= 2;
		o = realloc(t->out, cap);
		if (!o)
			return -ENOMEM;
		t->out = o;
		t->out_cap = cap;
	}
	memcpy(t->out + t->out_len, s, n);
	t->out_len += n;
	t->out[t->out_len] = '\0';
	return 0;
}

/* Reads a quoted string starting at t->p (the quote) into tok->str. */
static int lex_string(struct tpl *t)
{
	char quote = *t->p++;
	_cleanup_free_ char *s = malloc((size_t)(t->end - t->p) + 1);
	size_t n = 0;

	if (!s)
		return -ENOMEM;
	for (;;) {
		char c;

		if (t->p >= t->end)
			return syntax(t, "%s", "unterminated string");
		c = *t->p++;
		if (c == quote)
			break;
		if (c == '\n')
			t->line++;
		if (c == '\\' && t->p < t->end) {
			c = *t->p++;
			c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
		}
		s[n++] = c;
	}
	s[n] = '\0';
	t->tok.type = T_STRING;
	t->tok.str = TAKE_PTR(s);
	return 0;
}

static int lex(struct tpl *t)
{
	struct tok *k = &t->tok;
	const char *p;

	free(k->str);
	*k = (struct tok){ 0 };
	while (t->p < t->end && isspace((unsigned char)*t->p)) {
		if (*t->p == '\n')
			t->line++;
		t->p++;
	}
	p = t->p;
	if (p >= t->end)
		return syntax(t, "%s", t->close == '%' ? "unclosed {%" : "unclosed {{");
	if (*p == '-' && t->end - p >= 3 && p[1] == t->close && p[2] == '}') {
		k->type = T_CLOSE;
		k->trim = true;
		t->p += 3;
	} else if (*p == t->close && t->end - p >= 2 && p[1] == '}') {
		k->type = T_CLOSE;
		t->p += 2;
	} else if (isalpha((unsigned char)*p) || *p == '_') {
		while (t->p < t->end && (isalnum((unsigned char)*t->p) || *t->p == '_'))
			t->p++;
		k->type = T_NAME;
		k->s = p;
		k->len = (size_t)(t->p - p);
	} else if (isdigit((unsigned char)*p) ||
		   (*p == '-' && t->end - p >= 2 && isdigit((unsigned char)p[1]))) {
		char *e;

		errno = 0;
		k->num = strtoll(p, &e, 10);
		if (errno || e > t->end)
			return syntax(t, "%s", "number out of range");
		k->type = T_INT;
		t->p = e;
	} else if (*p == '"' || *p == '\'') {
		return lex_string(t);
	} else if ((*p == '=' || *p == '!') && t->end - p >= 2 && p[1] == '=') {
		k->type = *p == '=' ? T_EQ : T_NE;
		t->p += 2;
	} else {
		static const char punct[] = "(),.|:";
		static const enum tok_type types[] = { T_LPAREN, T_RPAREN, T_COMMA,
						       T_DOT,	 T_PIPE,   T_COLON };
		const char *c = strchr(punct, *p);
		char s[2] = { *p, '\0' };

		if (!c || !*p)
			return syntax(t, "unexpected character '%s'", s);
		k->type = types[c - punct];
		t->p++;
	}
	return 0;
}

static int peek(struct tpl *t)
{
	int k;

	if (t->have_tok)
		return 0;
	k = lex(t);
	if (k < 0)
		return k;
	t->have_tok = true;
	return 0;
}

/* Consumes the token looked at (its string stays valid until the next peek). */
static void take(struct tpl *t)
{
	t->have_tok = false;
}

static bool tok_is_name(const struct tok *k, const char *name)
{
	return k->type == T_NAME && k->len == strlen(name) && memcmp(k->s, name, k->len) == 0;
}

static int expect(struct tpl *t, enum tok_type type, const char *what)
{
	int k = peek(t);

	if (k < 0)
		return k;
	if (t->tok.type != type)
		return syntax(t, "expected %s", what);
	take(t);
	return 0;
}

static int expect_close(struct tpl *t)
{
	int k = expect(t, T_CLOSE, t->close == '%' ? "%}" : "}}");

	if (k >= 0)
		t->trim_next = t->tok.trim;
	return k;
}

/* ---- values ---- */

static bool truthy(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return json_string_length(v) > 0;
	case JSON_INTEGER:
		return json_integer_value(v) != 0;
	case JSON_REAL:
		return json_real_value(v) != 0;
	case JSON_TRUE:
		return true;
	case JSON_OBJECT:
		return json_object_size(v) > 0;
	case JSON_ARRAY:
		return json_array_size(v) > 0;
	default:
		return false;
	}
}

/* The text of a value as {{ }} writes it: booleans as True/False and null as "", as pongo2
 * does. */
static char *to_text(const json_t *v)
{
	char *s = NULL;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return strndup(json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0 ? NULL : s;
	case JSON_REAL:
		return asprintf(&s, "%g", json_real_value(v)) < 0 ? NULL : s;
	case JSON_TRUE:
		return strdup("True");
	case JSON_FALSE:
		return strdup("False");
	case JSON_NULL:
		return strdup("");
	default:
		return json_dumps(v, JSON_COMPACT);
	}
}

/* A name at the top of an expression. "container" and "instance" name the same object. */
static json_t *lookup_root(struct tpl *t, const char *name, size_t len)
{
	json_t *v = json_object_getn(t->ctx, name, len);

	if (!v && len == 9 && memcmp(name, "container", 9) == 0)
		v = json_object_get(t->ctx, "instance");
	if (!v && len == 8 && memcmp(name, "instance", 8) == 0)
		v = json_object_get(t->ctx, "container");
	return v ? json_incref(v) : json_null();
}

static int parse_expr(struct tpl *t, json_t **ret);

/* config_get("key", "default"): the instance's config value with trailing newlines removed,
 * or the default (null when not given) when the key is not set. */
static int call_config_get(struct tpl *t, json_t **ret)
{
	_cleanup_json_ json_t *key = NULL, *def = NULL;
	const char *v;
	int k;

	k = expect(t, T_LPAREN, "( after config_get");
	if (k >= 0)
		k = parse_expr(t, &key);
	if (k >= 0)
		k = peek(t);
	if (k < 0)
		return k;
	if (t->tok.type == T_COMMA) {
		take(t);
		k = parse_expr(t, &def);
		if (k < 0)
			return k;
	}
	k = expect(t, T_RPAREN, ") after the arguments of config_get");
	if (k < 0)
		return k;
	if (!json_is_string(key))
		return syntax(t, "%s", "config_get: the key is not a string");
	v = json_string_value(
		json_object_get(json_object_get(t->ctx, "config"), json_string_value(key)));
	if (!v) {
		*ret = def ? TAKE_PTR(def) : json_null();
		return 0;
	}
	size_t n = strlen(v);
	while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r'))
		n--;
	*ret = json_stringn(v, n);
	return *ret ? 0 : -ENOMEM;
}

/* A name and its .attribute chain, a call, a literal, or ( EXPR ). */
static int parse_primary(struct tpl *t, json_t **ret)
{
	_cleanup_json_ json_t *v = NULL;
	struct tok k;
	int r = peek(t);

	if (r < 0)
		return r;
	k = t->tok;
	switch (k.type) {
	case T_STRING:
		take(t);
		*ret = json_string(k.str);
		return *ret ? 0 : -ENOMEM;
	case T_INT:
		take(t);
		*ret = json_integer(k.num);
		return *ret ? 0 : -ENOMEM;
	case T_LPAREN:
		take(t);
		r = parse_expr(t, &v);
		if (r >= 0)
			r = expect(t, T_RPAREN, ")");
		if (r < 0)
			return r;
		*ret = TAKE_PTR(v);
		return 0;
	case T_NAME:
		break;
	default:
		return syntax(t, "%s", "expected a value");
	}
	take(t);
	if (tok_is_name(&k, "config_get"))
		return call_config_get(t, ret);
	if (tok_is_name(&k, "true") || tok_is_name(&k, "True")) {
		*ret = json_true();
		return 0;
	}
	if (tok_is_name(&k, "false") || tok_is_name(&k, "False")) {
		*ret = json_false();
		return 0;
	}
	if (tok_is_name(&k, "none") || tok_is_name(&k, "None")) {
		*ret = json_null();
		return 0;
	}
	v = lookup_root(t, k.s, k.len);
	for (;;) {
		json_t *next;

		r = peek(t);
		if (r < 0)
			return r;
		if (t->tok.type == T_LPAREN) {
			_cleanup_free_ char *fn = strndup(k.s, k.len);

			return syntax(t, "unknown function '%s'", fn ? fn : "?");
		}
		if (t->tok.type != T_DOT)
			break;
		take(t);
		r = expect(t, T_NAME, "a name after '.'");
		if (r < 0)
			return r;
		next = json_object_getn(v, t->tok.s, t->tok.len);
		json_decref(v);
		v = next ? json_incref(next) : json_null();
	}
	*ret = TAKE_PTR(v);
	return 0;
}

static int apply_filter(struct tpl *t, const struct tok *name, json_t *arg, json_t **v)
{
	_cleanup_free_ char *s = NULL;

	if (tok_is_name(name, "default")) {
		if (!arg)
			return syntax(t, "%s", "filter default needs an argument (|default:\"x\")");
		if (!truthy(*v)) {
			json_decref(*v);
			*v = json_incref(arg);
		}
		return 0;
	}
	if (tok_is_name(name, "lower") || tok_is_name(name, "upper")) {
		bool up = tok_is_name(name, "upper");

		s = to_text(*v);
		if (!s)
			return -ENOMEM;
		for (char *c = s; *c; c++)
			*c = (char)(up ? toupper((unsigned char)*c) : tolower((unsigned char)*c));
		json_decref(*v);
		*v = json_string(s);
		return *v ? 0 : -ENOMEM;
	}
	s = strndup(name->s, name->len);
	return syntax(t, "unknown filter '%s'", s ? s : "?");
}

/* VALUE ( | filter ( : VALUE )? )* */
static int parse_filtered(struct tpl *t, json_t **ret)
{
	_cleanup_json_ json_t *v = NULL;
	int k = parse_primary(t, &v);

	while (k >= 0) {
		_cleanup_json_ json_t *arg = NULL;
		struct tok name;

		k = peek(t);
		if (k < 0 || t->tok.type != T_PIPE)
			break;
		take(t);
		k = expect(t, T_NAME, "a filter name after '|'");
		if (k < 0)
			break;
		name = t->tok;
		k = peek(t);
		if (k >= 0 && t->tok.type == T_COLON) {
			take(t);
			k = parse_primary(t, &arg);
		}
		if (k >= 0)
			k = apply_filter(t, &name, arg, &v);
	}
	if (k < 0)
		return k;
	*ret = TAKE_PTR(v);
	return 0;
}

/* VALUE ( (== | !=) VALUE )? */
static int parse_compare(struct tpl *t, json_t **ret)
{
	_cleanup_json_ json_t *a = NULL, *b = NULL;
	enum tok_type op;
	int k = parse_filtered(t, &a);

	if (k >= 0)
		k = peek(t);
	if (k < 0)
		return k;
	op = t->tok.type;
	if (op != T_EQ && op != T_NE) {
		*ret = TAKE_PTR(a);
		return 0;
	}
	take(t);
	k = parse_filtered(t, &b);
	if (k < 0)
		return k;
	*ret = json_boolean(json_equal(a, b) == (op == T_EQ));
	return 0;
}

/* not* COMPARE */
static int parse_not(struct tpl *t, json_t **ret)
{
	_cleanup_json_ json_t *v = NULL;
	int k = peek(t);

	if (k < 0)
		return k;
	if (!tok_is_name(&t->tok, "not"))
		return parse_compare(t, ret);
	take(t);
	if (++t->depth > NESTING_MAX)
		return syntax(t, "%s", "expression nested too deeply");
	k = parse_not(t, &v);
	t->depth--;
	if (k < 0)
		return k;
	*ret = json_boolean(!truthy(v));
	return 0;
}

/* One level of "and" / "or": operand ( word operand )*, giving true or false. */
static int parse_logic(struct tpl *t, const char *word, int (*operand)(struct tpl *, json_t **),
		       json_t **ret)
{
	_cleanup_json_ json_t *v = NULL;
	int k = operand(t, &v);

	for (;;) {
		_cleanup_json_ json_t *w = NULL;
		bool a;

		if (k >= 0)
			k = peek(t);
		if (k < 0)
			return k;
		if (!tok_is_name(&t->tok, word))
			break;
		take(t);
		k = operand(t, &w);
		if (k < 0)
			return k;
		a = streq(word, "and") ? truthy(v) && truthy(w) : truthy(v) || truthy(w);
		json_decref(v);
		v = json_boolean(a);
	}
	*ret = TAKE_PTR(v);
	return 0;
}

static int parse_and(struct tpl *t, json_t **ret)
{
	return parse_logic(t, "and", parse_not, ret);
}

static int parse_expr(struct tpl *t, json_t **ret)
{
	int k;

	if (++t->depth > NESTING_MAX)
		return syntax(t, "%s", "expression nested too deeply");
	k = parse_logic(t, "or", parse_and, ret);
	t->depth--;
	return k;
}

/* ---- blocks ---- */

/* Copies text up to the next tag ("{{", "{%" or "{#") when active, and moves past the tag's
 * opening. Returns the tag's second character, or '\0' at the end of the template. */
static int render_text(struct tpl *t, bool active, char *ret_kind)
{
	const char *start = t->p, *stop = t->p, *text_end;
	char kind = '\0';
	int k;

	while (stop < t->end) {
		stop = memchr(stop, '{', (size_t)(t->end - stop));
		if (!stop) {
			stop = t->end;
			break;
		}
		if (stop + 1 < t->end && (stop[1] == '{' || stop[1] == '%' || stop[1] == '#')) {
			kind = stop[1];
			break;
		}
		stop++;
	}
	text_end = stop;
	if (t->trim_next)
		while (start < text_end && isspace((unsigned char)*start))
			start++;
	t->trim_next = false;
	/* "{{-" and "{%-" trim the whitespace before the tag. */
	if (kind && kind != '#' && stop + 2 < t->end && stop[2] == '-')
		while (text_end > start && isspace((unsigned char)text_end[-1]))
			text_end--;
	for (const char *c = t->p; c < stop; c++)
		t->line += *c == '\n';
	if (active) {
		k = emit(t, start, (size_t)(text_end - start));
		if (k < 0)
			return k;
	}
	t->p = kind ? stop + 2 : t->end;
	if (kind && kind != '#' && t->p < t->end && *t->p == '-')
		t->p++;
	*ret_kind = kind;
	return 0;
}

static int skip_comment(struct tpl *t)
{
	int line = t->line;

	for (const char *c = t->p; c + 1 < t->end; c++) {
		if (c[0] == '#' && c[1] == '}') {
			t->p = c + 2;
			return 0;
		}
		t->line += *c == '\n';
	}
	t->line = line;
	return syntax(t, "%s", "unclosed {#");
}

static int render_output(struct tpl *t, bool active)
{
	_cleanup_json_ json_t *v = NULL;
	_cleanup_free_ char *s = NULL;
	int k;

	t->close = '}';
	k = parse_expr(t, &v);
	if (k >= 0)
		k = expect_close(t);
	if (k < 0 || !active)
		return k;
	s = to_text(v);
	if (!s)
		return -ENOMEM;
	return emit(t, s, strlen(s));
}

static int render_block(struct tpl *t, bool active, bool in_if, const char **ret_end);

/* After "{% if": the condition, the branches and "{% endif %}". */
static int render_if(struct tpl *t, bool active)
{
	int line = t->line, k;
	const char *end = NULL;
	bool taken = false;

	if (++t->depth > NESTING_MAX)
		return syntax(t, "%s", "{% if %} nested too deeply");
	for (;;) {
		_cleanup_json_ json_t *cond = NULL;
		bool c;

		k = parse_expr(t, &cond);
		if (k >= 0)
			k = expect_close(t);
		if (k < 0)
			return k;
		c = truthy(cond);
		k = render_block(t, active && !taken && c, true, &end);
		if (k < 0)
			return k;
		taken = taken || c;
		if (!streq(end, "elif"))
			break;
	}
	if (streq(end, "else")) {
		k = expect_close(t);
		if (k >= 0)
			k = render_block(t, active && !taken, true, &end);
		if (k < 0)
			return k;
	}
	if (!streq(end, "endif")) {
		t->line = line;
		return syntax(t, "%s",
			      *end ? "{% else %} followed by another branch"
				   : "{% if %} without {% endif %}");
	}
	t->depth--;
	return expect_close(t);
}

/* Renders until the end of the template, or (in_if) until {% elif %}, {% else %} or
 * {% endif %}, whose name goes to *ret_end with the tag read up to its name ("" at the end). */
static int render_block(struct tpl *t, bool active, bool in_if, const char **ret_end)
{
	for (;;) {
		_cleanup_free_ char *word = NULL;
		char kind;
		int k;

		k = render_text(t, active, &kind);
		if (k < 0)
			return k;
		if (kind == '\0') {
			*ret_end = "";
			return 0;
		}
		if (kind == '#') {
			k = skip_comment(t);
		} else if (kind == '{') {
			k = render_output(t, active);
		} else {
			t->close = '%';
			k = expect(t, T_NAME, "a tag name after {%");
			if (k < 0)
				return k;
			if (tok_is_name(&t->tok, "if")) {
				k = render_if(t, active);
			} else if (tok_is_name(&t->tok, "elif") || tok_is_name(&t->tok, "else") ||
				   tok_is_name(&t->tok, "endif")) {
				*ret_end = tok_is_name(&t->tok, "elif")	  ? "elif"
					   : tok_is_name(&t->tok, "else") ? "else"
									  : "endif";
				if (!in_if)
					return syntax(t, "{%% %s %%} without {%% if %%}", *ret_end);
				return 0;
			} else {
				word = strndup(t->tok.s, t->tok.len);
				return syntax(t, "unknown tag '%s'", word ? word : "?");
			}
		}
		if (k < 0)
			return k;
	}
}

int lxm_template_render(const char *tpl, size_t len, const json_t *ctx, char **ret,
			struct lxm_error **err)
{
	struct tpl t = {
		.p = tpl,
		.end = tpl + len,
		.line = 1,
		.ctx = ctx,
		.err = err,
	};
	const char *end = NULL;
	int k;

	k = emit(&t, "", 0);
	if (k >= 0)
		k = render_block(&t, true, false, &end);
	free(t.tok.str);
	if (k < 0) {
		free(t.out);
		if (k == -ENOMEM)
			return lxm_error_set(err, k, 500, "template: out of memory");
		return k;
	}
	*ret = t.out ? t.out : strdup("");
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "template: out of memory");
}

/* ---- applying templates to a rootfs ---- */

/* Resolved as if rootfd were "/": symlinks resolve against it and ".." stops at it. */
static int open_in_root(int rootfd, const char *path, int flags)
{
	return lxm_openat2(rootfd, path, flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

/* Reads templates_dir/name, which must be a regular file there (no symlink on the way). */
static int read_template(int tdirfd, const char *name, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t got = 0;

	fd = lxm_openat2(tdirfd, name, O_RDONLY | O_NOFOLLOW, 0,
			 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (st.st_size > TEMPLATE_MAX)
		return -EFBIG;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*ret = TAKE_PTR(buf);
	*ret_len = got;
	return 0;
}

/* Opens the directory that holds path in the rootfs (resolved in the root), creating missing
 * directories (0755, root) on the way. *ret_name points at the last component in path. */
static int open_parent(int rootfd, const char *path, int *ret_fd, const char **ret_name)
{
	_cleanup_free_ char *prefix = strdup(path);
	_cleanup_close_ int cur = -1;
	const char *last = strrchr(path, '/');
	size_t n = 0;

	if (!prefix || !last)
		return !prefix ? -ENOMEM : -EINVAL;
	cur = open_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
	if (cur < 0)
		return cur;
	for (const char *p = path; p < last;) {
		const char *slash;
		int fd;

		while (*p == '/')
			p++;
		slash = strchr(p, '/');
		if (!slash || slash > last || p >= last)
			break;
		n = (size_t)(slash - path);
		memcpy(prefix, path, n);
		prefix[n] = '\0';
		fd = open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY);
		if (fd == -ENOENT) {
			_cleanup_free_ char *comp = strndup(p, (size_t)(slash - p));
			_cleanup_close_ int made = -1;

			if (!comp)
				return -ENOMEM;
			if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST)
				return -errno;
			made = open_in_root(rootfd, prefix, O_RDONLY | O_DIRECTORY);
			if (made < 0)
				return made;
			if (fchown(made, 0, 0) < 0 || fchmod(made, 0755) < 0)
				return -errno;
			fd = open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY);
		}
		if (fd < 0)
			return fd;
		close(cur);
		cur = fd;
		p = slash;
	}
	*ret_fd = TAKE_FD(cur);
	*ret_name = last + 1;
	return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes data to name in dirfd: a temporary file beside it, renamed over it, so a symlink at
 * name is replaced and never followed, and the file changes at once or not at all. */
static int replace_file(int dirfd, const char *name, const char *data, size_t len)
{
	char tmp[64] = ".lxm-template.";
	_cleanup_close_ int fd = -1;
	int k;

	k = lxm_random_hex(tmp + strlen(tmp), 8);
	if (k < 0)
		return k;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	k = write_all(fd, data, len);
	if (k >= 0 && (fchown(fd, 0, 0) < 0 || fchmod(fd, 0644) < 0))
		k = -errno;
	if (k >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		k = -errno;
	if (k < 0)
		unlinkat(dirfd, tmp, 0);
	return k;
}

static bool when_has(const json_t *when, const char *trigger)
{
	size_t i;
	json_t *v;

	json_array_foreach (when, i, v) {
		if (streq(json_string_value(v), trigger))
			return true;
	}
	return false;
}

static int apply_one(int rootfd, int tdirfd, const char *path, const json_t *t, const char *trigger,
		     const json_t *ctx, struct lxm_error **err)
{
	const char *file = json_string_value(json_object_get(t, "template")), *name = NULL;
	_cleanup_free_ char *text = NULL, *out = NULL;
	_cleanup_json_ json_t *c = NULL;
	_cleanup_close_ int dirfd = -1;
	struct stat st;
	size_t len = 0;
	int k;

	k = read_template(tdirfd, file, &text, &len);
	if (k < 0)
		return lxm_error_setx(err, k, k == -ENOENT || k == -EINVAL ? 400 : 500,
				      "template %s: read %s", path, file);
	c = ctx ? json_copy((json_t *)ctx) : json_object();
	if (!c || json_object_set(c, "properties", json_object_get(t, "properties")) < 0 ||
	    json_object_set_new(c, "trigger", json_string(trigger)) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "template %s: out of memory", path);
	k = lxm_template_render(text, len, c, &out, err);
	if (k < 0)
		return lxm_error_prefix(err, "template %s (%s)", path, file);
	k = open_parent(rootfd, path, &dirfd, &name);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "template %s: open its directory in the rootfs",
				      path);
	if (json_is_true(json_object_get(t, "create_only")) &&
	    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	k = replace_file(dirfd, name, out, strlen(out));
	if (k < 0)
		return lxm_error_setx(err, k, 500, "template %s: write", path);
	return 0;
}

int lxm_image_apply_templates(const struct lxm_image_metadata *m, const char *templates_dir,
			      const char *rootfs, const char *trigger, const json_t *ctx,
			      struct lxm_error **err)
{
	_cleanup_close_ int rootfd = -1, tdirfd = -1;
	const char *path;
	json_t *t;

	json_object_foreach (m->templates, path, t) {
		int k;

		if (!when_has(json_object_get(t, "when"), trigger))
			continue;
		if (rootfd < 0) {
			rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (rootfd < 0)
				return lxm_error_setx(err, -errno, 500, "templates: open %s",
						      rootfs);
			tdirfd = open(templates_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (tdirfd < 0)
				return lxm_error_setx(err, -errno, 500, "templates: open %s",
						      templates_dir);
		}
		k = apply_one(rootfd, tdirfd, path, t, trigger, ctx, err);
		if (k < 0)
			return k;
	}
	return 0;
}
