#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Angle brackets: lib/yaml.h is found on the -I path and includes libyaml's header after it. */
#include <yaml.h>

#include "cleanup.h"
#include "json.h"

/* Deeper documents than this are refused instead of recursing without bound on hostile input. */
#define YAML_MAX_DEPTH 256

/* ---- which strings must be quoted ---- */

/* Words that YAML 1.1 (PyYAML, go-yaml v2) or 1.2 readers load as null, booleans, infinities or
 * special keys. "" is in the list because an empty plain scalar is null. */
static const char *const yaml_special_words[] = {
	"",    "~",   "null", "Null", "NULL", "y",    "Y",     "yes",	"Yes",	 "YES", "n",  "N",
	"no",  "No",  "NO",   "true", "True", "TRUE", "false", "False", "FALSE", "on",	"On", "ON",
	"off", "Off", "OFF",  ".inf", ".Inf", ".INF", ".nan",  ".NaN",	".NAN",	 "<<",	"=",
};

static bool is_digit_in(char c, int base)
{
	switch (base) {
	case 2:
		return c == '0' || c == '1';
	case 8:
		return c >= '0' && c <= '7';
	case 16:
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
	default:
		return c >= '0' && c <= '9';
	}
}

/* 0x1f, 0o17, 0b101 (with YAML 1.1's digit-separating underscores). */
static bool looks_prefixed_int(const char *p)
{
	int base;

	if (p[0] != '0')
		return false;
	switch (p[1]) {
	case 'x':
	case 'X':
		base = 16;
		break;
	case 'o':
	case 'O':
		base = 8;
		break;
	case 'b':
	case 'B':
		base = 2;
		break;
	default:
		return false;
	}
	p += 2;
	if (!*p)
		return false;
	for (; *p; p++)
		if (*p != '_' && !is_digit_in(*p, base))
			return false;
	return true;
}

/* Decimal and octal integers, floats with or without exponent, and YAML 1.1 base-60 numbers
 * ("1:30"). Over-matching only costs a pair of quotes; under-matching would change a value's
 * type on reload, so the scan accepts the union of what the schemas accept. */
static bool looks_decimal_number(const char *p)
{
	bool digits = false, dot = false;

	if (!(is_digit_in(*p, 10) || *p == '.'))
		return false;
	for (; *p; p++) {
		if (is_digit_in(*p, 10))
			digits = true;
		else if (*p == '_' || (*p == ':' && !dot))
			continue;
		else if (*p == '.' && !dot)
			dot = true;
		else
			break;
	}
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!is_digit_in(*p, 10))
			return false;
		while (is_digit_in(*p, 10))
			p++;
	}
	return *p == '\0';
}

bool lxm_yaml_string_needs_quotes(const char *s)
{
	const char *p = s;

	for (size_t i = 0; i < ARRAY_SIZE(yaml_special_words); i++)
		if (strcmp(s, yaml_special_words[i]) == 0)
			return true;
	if (*p == '+' || *p == '-')
		p++;
	if (p != s && (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 || strcmp(p, ".INF") == 0))
		return true;
	return looks_prefixed_int(p) || looks_decimal_number(p);
}

/* ---- JSON -> YAML ---- */

static int emit(yaml_emitter_t *e, yaml_event_t *ev)
{
	/* The emitter owns the event from here on, whether it succeeds or not. */
	return yaml_emitter_emit(e, ev) ? 0 : -EINVAL;
}

static int emit_scalar(yaml_emitter_t *e, const char *text, size_t len, bool is_string)
{
	yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
	int plain_implicit = 1;
	yaml_event_t ev;

	if (is_string) {
		if (memchr(text, '\n', len)) {
			/* Multi-line values (cloud-init user data, scripts) stay readable and
			 * editable; libyaml falls back to a quoted style where a literal block
			 * cannot hold them. */
			style = YAML_LITERAL_SCALAR_STYLE;
		} else if (strlen(text) != len || lxm_yaml_string_needs_quotes(text)) {
			style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
			plain_implicit = 0;
		}
	} else {
		style = YAML_PLAIN_SCALAR_STYLE;
	}
	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)len,
					  plain_implicit, 1, style))
		return -ENOMEM;
	return emit(e, &ev);
}

/* Shortest text that reads back as the same double, always recognisable as a float. */
static void format_real(double d, char buf[static 64])
{
	if (isnan(d)) {
		strcpy(buf, ".nan");
		return;
	}
	if (isinf(d)) {
		strcpy(buf, d < 0 ? "-.inf" : ".inf");
		return;
	}
	snprintf(buf, 64, "%.15g", d);
	if (strtod(buf, NULL) != d)
		snprintf(buf, 64, "%.17g", d);
	if (!strpbrk(buf, ".eEn"))
		strcat(buf, ".0");
}

static int emit_node(yaml_emitter_t *e, const json_t *j, int depth)
{
	char buf[64];
	yaml_event_t ev;
	int r;

	if (depth > YAML_MAX_DEPTH)
		return -EINVAL;

	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *value;

		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
							 YAML_BLOCK_MAPPING_STYLE))
			return -ENOMEM;
		r = emit(e, &ev);
		if (r < 0)
			return r;
		json_object_foreach ((json_t *)j, key, value) {
			r = emit_scalar(e, key, strlen(key), true);
			if (r < 0)
				return r;
			r = emit_node(e, value, depth + 1);
			if (r < 0)
				return r;
		}
		yaml_mapping_end_event_initialize(&ev);
		return emit(e, &ev);
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *value;

		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
							  YAML_BLOCK_SEQUENCE_STYLE))
			return -ENOMEM;
		r = emit(e, &ev);
		if (r < 0)
			return r;
		json_array_foreach (j, i, value) {
			r = emit_node(e, value, depth + 1);
			if (r < 0)
				return r;
		}
		yaml_sequence_end_event_initialize(&ev);
		return emit(e, &ev);
	}
	case JSON_STRING:
		return emit_scalar(e, json_string_value(j), json_string_length(j), true);
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		return emit_scalar(e, buf, strlen(buf), false);
	case JSON_REAL:
		format_real(json_real_value(j), buf);
		return emit_scalar(e, buf, strlen(buf), false);
	case JSON_TRUE:
		return emit_scalar(e, "true", 4, false);
	case JSON_FALSE:
		return emit_scalar(e, "false", 5, false);
	case JSON_NULL:
		return emit_scalar(e, "null", 4, false);
	}
	return -EINVAL;
}

static int emit_document(yaml_emitter_t *e, const json_t *j)
{
	yaml_event_t ev;
	int r;

	if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING))
		return -ENOMEM;
	r = emit(e, &ev);
	if (r < 0)
		return r;
	if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1))
		return -ENOMEM;
	r = emit(e, &ev);
	if (r < 0)
		return r;
	r = emit_node(e, j, 0);
	if (r < 0)
		return r;
	if (!yaml_document_end_event_initialize(&ev, 1))
		return -ENOMEM;
	r = emit(e, &ev);
	if (r < 0)
		return r;
	if (!yaml_stream_end_event_initialize(&ev))
		return -ENOMEM;
	return emit(e, &ev);
}

int lxm_yaml_from_json(const json_t *j, char **ret)
{
	_cleanup_free_ char *buf = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	yaml_emitter_t e;
	size_t size = 0;
	int r;

	if (!j)
		return -EINVAL;
	f = open_memstream(&buf, &size);
	if (!f)
		return -errno;
	if (!yaml_emitter_initialize(&e))
		return -ENOMEM;
	yaml_emitter_set_output_file(&e, f);
	yaml_emitter_set_unicode(&e, 1);
	/* Never fold long values across lines: a user copying a value or diffing output wants it
	 * whole, as lxc prints it. */
	yaml_emitter_set_width(&e, -1);
	yaml_emitter_set_indent(&e, 2);
	r = emit_document(&e, j);
	if (r == 0 && !yaml_emitter_flush(&e))
		r = -EIO;
	yaml_emitter_delete(&e);
	if (r < 0)
		return r;
	if (fclose(TAKE_PTR(f)) != 0)
		return -ENOMEM;
	*ret = TAKE_PTR(buf);
	return 0;
}

/* ---- YAML -> JSON ---- */

struct loader {
	yaml_parser_t parser;
	char *errmsg; /* first error, with its position */
};

static int loader_fail(struct loader *l, const yaml_mark_t *mark, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int loader_fail(struct loader *l, const yaml_mark_t *mark, const char *fmt, ...)
{
	_cleanup_free_ char *what = NULL;
	va_list ap;
	int r;

	if (l->errmsg)
		return -EINVAL;
	va_start(ap, fmt);
	r = vasprintf(&what, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	if (asprintf(&l->errmsg, "line %zu, column %zu: %s", mark->line + 1, mark->column + 1,
		     what) < 0) {
		l->errmsg = NULL;
		return -ENOMEM;
	}
	return -EINVAL;
}

static int next_event(struct loader *l, yaml_event_t *ev)
{
	yaml_parser_t *p = &l->parser;

	if (yaml_parser_parse(p, ev))
		return 0;
	if (p->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	if (p->error == YAML_READER_ERROR) {
		if (asprintf(&l->errmsg, "byte %zu: %s", p->problem_offset,
			     p->problem ? p->problem : "cannot read input") < 0)
			l->errmsg = NULL;
		return -EINVAL;
	}
	if (p->context)
		return loader_fail(l, &p->problem_mark, "%s (%s at line %zu)",
				   p->problem ? p->problem : "syntax error", p->context,
				   p->context_mark.line + 1);
	return loader_fail(l, &p->problem_mark, "%s", p->problem ? p->problem : "syntax error");
}

/* "0", "42", "-7": exactly the integers whose decimal text is unique, so turning them back into a
 * string gives what the user wrote. */
static bool plain_is_integer(const char *s, json_int_t *ret)
{
	const char *p = s;
	char *end;
	long long v;

	if (*p == '-')
		p++;
	if (!is_digit_in(*p, 10) || (p[0] == '0' && (p[1] || p != s)))
		return false;
	for (const char *q = p; *q; q++)
		if (!is_digit_in(*q, 10))
			return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end)
		return false;
	*ret = (json_int_t)v;
	return true;
}

static json_t *load_scalar(const yaml_event_t *ev)
{
	const char *text = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	json_int_t n;

	/* Only untagged plain scalars are typed; quoting or a tag means the user chose. */
	if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag && strlen(text) == len) {
		if (strcmp(text, "true") == 0)
			return json_true();
		if (strcmp(text, "false") == 0)
			return json_false();
		if (strcmp(text, "null") == 0 || strcmp(text, "~") == 0 || len == 0)
			return json_null();
		if (plain_is_integer(text, &n))
			return json_integer(n);
	}
	return json_stringn(text, len);
}

static int load_node(struct loader *l, yaml_event_t *ev, int depth, json_t **ret);

static int load_mapping(struct loader *l, int depth, json_t **ret)
{
	_cleanup_json_ json_t *obj = json_object();
	int r;

	if (!obj)
		return -ENOMEM;
	for (;;) {
		_cleanup_json_ json_t *value = NULL;
		_cleanup_free_ char *key = NULL;
		yaml_event_t ev;
		yaml_mark_t mark;

		r = next_event(l, &ev);
		if (r < 0)
			return r;
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		mark = ev.start_mark;
		if (ev.type != YAML_SCALAR_EVENT) {
			yaml_event_delete(&ev);
			return loader_fail(l, &mark, "mapping keys must be plain text");
		}
		key = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
		yaml_event_delete(&ev);
		if (!key)
			return -ENOMEM;
		if (json_object_get(obj, key))
			return loader_fail(l, &mark, "duplicate key '%s'", key);

		r = next_event(l, &ev);
		if (r < 0)
			return r;
		r = load_node(l, &ev, depth + 1, &value);
		if (r < 0)
			return r;
		if (json_object_set(obj, key, value) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(obj);
	return 0;
}

static int load_sequence(struct loader *l, int depth, json_t **ret)
{
	_cleanup_json_ json_t *arr = json_array();
	int r;

	if (!arr)
		return -ENOMEM;
	for (;;) {
		_cleanup_json_ json_t *value = NULL;
		yaml_event_t ev;

		r = next_event(l, &ev);
		if (r < 0)
			return r;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		r = load_node(l, &ev, depth + 1, &value);
		if (r < 0)
			return r;
		if (json_array_append(arr, value) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(arr);
	return 0;
}

/* Builds the node that starts with ev, consuming (and deleting) ev. */
static int load_node(struct loader *l, yaml_event_t *ev, int depth, json_t **ret)
{
	yaml_mark_t mark = ev->start_mark;
	yaml_event_type_t type = ev->type;
	json_t *scalar;

	if (depth > YAML_MAX_DEPTH) {
		yaml_event_delete(ev);
		return loader_fail(l, &mark, "nested deeper than %d levels", YAML_MAX_DEPTH);
	}
	switch (type) {
	case YAML_SCALAR_EVENT:
		scalar = load_scalar(ev);
		yaml_event_delete(ev);
		if (!scalar)
			return -ENOMEM;
		*ret = scalar;
		return 0;
	case YAML_MAPPING_START_EVENT:
		yaml_event_delete(ev);
		return load_mapping(l, depth, ret);
	case YAML_SEQUENCE_START_EVENT:
		yaml_event_delete(ev);
		return load_sequence(l, depth, ret);
	case YAML_ALIAS_EVENT:
		yaml_event_delete(ev);
		return loader_fail(l, &mark, "aliases (*name) are not supported");
	default:
		yaml_event_delete(ev);
		return loader_fail(l, &mark, "unexpected YAML event");
	}
}

/* Expects an event of the given type and drops it. */
static int expect_event(struct loader *l, yaml_event_type_t type, const char *what)
{
	yaml_event_t ev;
	yaml_mark_t mark;
	bool match;
	int r;

	r = next_event(l, &ev);
	if (r < 0)
		return r;
	match = ev.type == type;
	mark = ev.start_mark;
	yaml_event_delete(&ev);
	return match ? 0 : loader_fail(l, &mark, "%s", what);
}

static int load_stream(struct loader *l, json_t **ret)
{
	_cleanup_json_ json_t *root = NULL;
	yaml_event_t ev;
	int r;

	r = expect_event(l, YAML_STREAM_START_EVENT, "expected the start of a YAML stream");
	if (r < 0)
		return r;
	r = next_event(l, &ev);
	if (r < 0)
		return r;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		*ret = json_null();
		return 0;
	}
	yaml_event_delete(&ev);

	r = next_event(l, &ev);
	if (r < 0)
		return r;
	r = load_node(l, &ev, 0, &root);
	if (r < 0)
		return r;
	r = expect_event(l, YAML_DOCUMENT_END_EVENT, "expected the end of the document");
	if (r < 0)
		return r;
	r = expect_event(l, YAML_STREAM_END_EVENT,
			 "expected a single YAML document, found another one ('---')");
	if (r < 0)
		return r;
	*ret = TAKE_PTR(root);
	return 0;
}

int lxm_yaml_to_json(const char *text, size_t len, json_t **ret, char **ret_errmsg)
{
	struct loader l = {};
	json_t *root = NULL;
	int r;

	if (!yaml_parser_initialize(&l.parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&l.parser, (const unsigned char *)text, len);
	yaml_parser_set_encoding(&l.parser, YAML_UTF8_ENCODING);
	r = load_stream(&l, &root);
	yaml_parser_delete(&l.parser);
	if (r < 0) {
		if (ret_errmsg)
			*ret_errmsg = TAKE_PTR(l.errmsg);
		free(l.errmsg);
		return r;
	}
	free(l.errmsg);
	*ret = root;
	return 0;
}
