/* lxm list: instances as lxc shows them. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"

#define DEFAULT_COLUMNS "ns46tS"

/* Top-level instance fields a key=value filter compares (case-insensitively, as LXD does); any
 * other key is a config key. */
static const char *const field_keys[] = {
	"name",	    "status",  "type",	    "architecture", "description",
	"location", "project", "ephemeral", "stateful",
};

struct column {
	char shorthand;	  /* lxc's column letter, or 0 for a config key column */
	char *config_key; /* for shorthand 0 */
	char *header;
};

static const struct {
	char shorthand;
	const char *header;
} column_defs[] = {
	{ 'n', "NAME" },	 { 's', "STATE" },	{ '4', "IPV4" },
	{ '6', "IPV6" },	 { 't', "TYPE" },	{ 'S', "SNAPSHOTS" },
	{ 'a', "ARCHITECTURE" }, { 'c', "CREATED AT" }, { 'l', "LAST USED AT" },
	{ 'd', "DESCRIPTION" },	 { 'P', "PROFILES" },	{ 'p', "PID" },
	{ 'N', "PROCESSES" },	 { 'e', "PROJECT" },	{ 'L', "LOCATION" },
};

struct columns {
	struct column *v;
	size_t n;
};

static void columns_done(struct columns *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].config_key);
		free(c->v[i].header);
	}
	free(c->v);
}

static int columns_add(struct columns *c, char shorthand, const char *key, const char *header)
{
	struct column *v = reallocarray(c->v, c->n + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	c->v = v;
	v[c->n] = (struct column){ .shorthand = shorthand };
	v[c->n].header = strdup(header);
	v[c->n].config_key = key ? strdup(key) : NULL;
	c->n++;
	if (!v[c->n - 1].header || (key && !v[c->n - 1].config_key))
		return -ENOMEM;
	return 0;
}

/* "ns46tS", or comma-separated parts where a part with a dot is a config key column
 * ("user.role" or "user.role:ROLE") and any other part is a run of column letters. */
static int parse_columns(const char *cmd, const char *spec, struct columns *ret,
			 struct lxm_error **err)
{
	_cleanup_free_ char *copy = strdup(spec);
	char *save = NULL;
	int r = 0;

	if (!copy)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	for (char *part = strtok_r(copy, ",", &save); part && r >= 0;
	     part = strtok_r(NULL, ",", &save)) {
		if (strchr(part, '.')) {
			char *colon = strchr(part, ':');

			if (colon)
				*colon = '\0';
			r = columns_add(ret, 0, part, colon && colon[1] ? colon + 1 : part);
			continue;
		}
		for (const char *p = part; *p && r >= 0; p++) {
			size_t i;

			for (i = 0; i < ARRAY_SIZE(column_defs); i++)
				if (column_defs[i].shorthand == *p)
					break;
			if (i == ARRAY_SIZE(column_defs))
				return lxm_error_set(
					err, -EINVAL, 400,
					"%s: unknown column shorthand char '%c' in '%s' "
					"(see 'lxm %s --help')",
					cmd, *p, spec, cmd);
			r = columns_add(ret, *p, NULL, column_defs[i].header);
		}
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	if (ret->n == 0)
		return lxm_error_set(err, -EINVAL, 400, "%s: no columns in '%s'", cmd, spec);
	return 0;
}

/* ---- cells ---- */

/* lxc's IsActive(): only Stopped (102) and Error (112) instances have no live state. */
static bool is_active(const json_t *inst)
{
	json_int_t code = json_integer_value(json_object_get(inst, "status_code"));

	return json_object_get(inst, "state") && code != 102 && code != 112;
}

static int str_rcmp(const void *a, const void *b)
{
	return -strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "10.0.3.5 (eth0)" per global address of the family, one per line, loopback interfaces and
 * link-local scopes left out, in lxc's (reverse sorted) order. */
static char *addresses(const json_t *inst, const char *family)
{
	const json_t *net = json_object_get(json_object_get(inst, "state"), "network"), *iface;
	_cleanup_strv_ char **lines = NULL;
	size_t n = 0, total = 1;
	const char *ifname;
	char *out, *o;

	if (!is_active(inst) || !json_is_object(net))
		return strdup("");
	json_object_foreach ((json_t *)net, ifname, iface) {
		const json_t *addr;
		size_t i;

		if (streq(json_string_value(json_object_get(iface, "type")), "loopback"))
			continue;
		json_array_foreach (json_object_get(iface, "addresses"), i, addr) {
			const char *a = json_string_value(json_object_get(addr, "address"));
			const char *scope = json_string_value(json_object_get(addr, "scope"));
			char **grown;

			if (!a ||
			    !streq(json_string_value(json_object_get(addr, "family")), family) ||
			    streq(scope, "link") || streq(scope, "local"))
				continue;
			grown = reallocarray(lines, n + 2, sizeof(*lines));
			if (!grown)
				return NULL;
			lines = grown;
			if (asprintf(&lines[n], "%s (%s)", a, ifname) < 0) {
				lines[n] = NULL;
				return NULL;
			}
			total += strlen(lines[n]) + 1;
			lines[++n] = NULL;
		}
	}
	if (n == 0)
		return strdup("");
	qsort(lines, n, sizeof(*lines), str_rcmp);
	out = o = malloc(total);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%s%s", i ? "\n" : "", lines[i]);
	return out;
}

static char *join_strings(const json_t *arr, const char *sep)
{
	_cleanup_free_ char *buf = NULL;
	size_t size = 0, i;
	const json_t *e;
	FILE *f;

	f = open_memstream(&buf, &size);
	if (!f)
		return NULL;
	json_array_foreach (arr, i, e)
		fprintf(f, "%s%s", i ? sep : "", json_string_value(e) ? json_string_value(e) : "");
	if (fclose(f) != 0)
		return NULL;
	return TAKE_PTR(buf);
}

static char *string_field(const json_t *inst, const char *key)
{
	const char *s = json_string_value(json_object_get(inst, key));

	return strdup(s ? s : "");
}

static char *time_field(const json_t *inst, const char *key)
{
	char buf[64];

	if (lxm_format_time(json_string_value(json_object_get(inst, key)), true, buf) < 0)
		buf[0] = '\0';
	return strdup(buf);
}

static char *state_number(const json_t *inst, const char *key)
{
	char *s;

	if (!is_active(inst))
		return strdup("");
	if (asprintf(&s, "%" JSON_INTEGER_FORMAT,
		     json_integer_value(json_object_get(json_object_get(inst, "state"), key))) < 0)
		return NULL;
	return s;
}

static char *type_cell(const json_t *inst)
{
	const char *type = json_string_value(json_object_get(inst, "type"));
	_cleanup_free_ char *u = lxm_cli_upper(type && *type ? type : "container");
	char *s;

	if (!u ||
	    asprintf(&s, "%s%s", u,
		     json_is_true(json_object_get(inst, "ephemeral")) ? " (EPHEMERAL)" : "") < 0)
		return NULL;
	return s;
}

static char *config_cell(const json_t *inst, const char *key)
{
	const char *v =
		json_string_value(json_object_get(json_object_get(inst, "expanded_config"), key));

	if (!v)
		v = json_string_value(json_object_get(json_object_get(inst, "config"), key));
	return strdup(v ? v : "");
}

/* The text of one cell; NULL on allocation failure. */
static char *cell(const json_t *inst, const struct column *col)
{
	char *s;

	switch (col->shorthand) {
	case 0:
		return config_cell(inst, col->config_key);
	case 'n':
		return string_field(inst, "name");
	case 's':
		return lxm_cli_upper(json_string_value(json_object_get(inst, "status")));
	case '4':
		return addresses(inst, "inet");
	case '6':
		return addresses(inst, "inet6");
	case 't':
		return type_cell(inst);
	case 'S':
		if (asprintf(&s, "%zu", json_array_size(json_object_get(inst, "snapshots"))) < 0)
			return NULL;
		return s;
	case 'a':
		return string_field(inst, "architecture");
	case 'c':
		return time_field(inst, "created_at");
	case 'l':
		return time_field(inst, "last_used_at");
	case 'd':
		return string_field(inst, "description");
	case 'P':
		return join_strings(json_object_get(inst, "profiles"), "\n");
	case 'p':
		return state_number(inst, "pid");
	case 'N':
		return state_number(inst, "processes");
	case 'e':
		s = string_field(inst, "project");
		if (s && !*s) {
			free(s);
			s = strdup("default");
		}
		return s;
	case 'L':
		return string_field(inst, "location");
	}
	return strdup("");
}

/* ---- filters ---- */

static bool is_field_key(const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(field_keys); i++)
		if (streq(key, field_keys[i]))
			return true;
	return false;
}

/* A bare word matches names it prefixes, or that it matches whole as a regular expression. */
static bool name_matches(const char *name, const char *filter)
{
	_cleanup_free_ char *anchored = NULL;
	regex_t re;
	bool match;

	if (startswith(name, filter))
		return true;
	if (asprintf(&anchored, "^(%s)$", filter) < 0) {
		anchored = NULL;
		return false;
	}
	if (regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB) != 0)
		return false;
	match = regexec(&re, name, 0, NULL, 0) == 0;
	regfree(&re);
	return match;
}

static bool field_matches(const json_t *inst, const char *key, const char *value)
{
	const json_t *v = json_object_get(inst, key);
	const char *s;

	if (json_is_boolean(v))
		s = json_is_true(v) ? "true" : "false";
	else if (streq(key, "type") && !json_string_value(v))
		s = "container";
	else
		s = json_string_value(v);
	return s && strcasecmp(s, value) == 0;
}

static bool instance_matches(const json_t *inst, char **filters, int n)
{
	const char *name = json_string_value(json_object_get(inst, "name"));

	for (int i = 0; i < n; i++) {
		const char *eq = strchr(filters[i], '=');
		_cleanup_free_ char *key = NULL, *cfg = NULL;

		if (!eq) {
			if (!name || !name_matches(name, filters[i]))
				return false;
			continue;
		}
		key = strndup(filters[i], (size_t)(eq - filters[i]));
		if (!key)
			return false;
		if (is_field_key(key)) {
			if (!field_matches(inst, key, eq + 1))
				return false;
			continue;
		}
		cfg = config_cell(inst, key);
		if (!cfg || !streq(cfg, eq + 1))
			return false;
	}
	return true;
}

/* The `filter=` query for the filters the server can apply ("status eq running and ..."), or
 * NULL when there are none. Values with spaces or quotes are left to the client side. */
static int server_filter(char **filters, int n, char **ret)
{
	_cleanup_free_ char *buf = NULL;
	size_t size = 0;
	bool any = false;
	FILE *f;

	f = open_memstream(&buf, &size);
	if (!f)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(filters[i], '=');
		_cleanup_free_ char *key = NULL;

		if (!eq || strpbrk(eq + 1, " \t'\"") || !eq[1])
			continue;
		key = strndup(filters[i], (size_t)(eq - filters[i]));
		if (!key)
			break;
		if (!is_field_key(key))
			continue;
		fprintf(f, "%s%s eq %s", any ? " and " : "", key, eq + 1);
		any = true;
	}
	if (fclose(f) != 0)
		return -ENOMEM;
	*ret = any ? TAKE_PTR(buf) : NULL;
	return 0;
}

/* ---- the command ---- */

static int name_cmp(const void *a, const void *b)
{
	const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
	const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));

	return lxm_natural_cmp(x ? x : "", y ? y : "");
}

/* The instances that pass every filter, sorted by name. */
static int select_instances(const json_t *all, char **filters, int n, json_t **ret)
{
	_cleanup_free_ json_t **v = calloc(json_array_size(all) + 1, sizeof(*v));
	_cleanup_json_ json_t *out = json_array();
	size_t count = 0, i;
	json_t *inst;

	if (!v || !out)
		return -ENOMEM;
	json_array_foreach (all, i, inst)
		if (json_is_object(inst) && instance_matches(inst, filters, n))
			v[count++] = inst;
	qsort(v, count, sizeof(*v), name_cmp);
	for (i = 0; i < count; i++)
		if (json_array_append(out, v[i]) < 0)
			return -ENOMEM;
	*ret = TAKE_PTR(out);
	return 0;
}

static int build_table(const json_t *instances, const struct columns *cols, struct lxm_table **ret)
{
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_free_ const char **header = calloc(cols->n, sizeof(*header));
	_cleanup_free_ char **row = calloc(cols->n, sizeof(*row));
	const json_t *inst;
	size_t i;
	int r;

	if (!header || !row)
		return -ENOMEM;
	for (size_t c = 0; c < cols->n; c++)
		header[c] = cols->v[c].header;
	r = lxm_table_new(&t, cols->n, header);
	if (r < 0)
		return r;
	json_array_foreach (instances, i, inst) {
		for (size_t c = 0; c < cols->n; c++)
			row[c] = cell(inst, &cols->v[c]);
		r = lxm_table_add_row(t, (const char *const *)row);
		for (size_t c = 0; c < cols->n; c++) {
			if (!row[c])
				r = -ENOMEM;
			free(row[c]);
		}
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(t);
	return 0;
}

int lxm_cmd_list(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "columns", required_argument, NULL, 'c' },
		{ "format", required_argument, NULL, 'f' },
		{},
	};
	_cleanup_(columns_done) struct columns cols = {};
	_cleanup_free_ char *filter = NULL, *efilter = NULL, *path = NULL;
	_cleanup_json_ json_t *all = NULL, *selected = NULL;
	_cleanup_table_ struct lxm_table *table = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	const char *cmd = argv[0], *spec = DEFAULT_COLUMNS;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":c:f:", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			spec = optarg;
			break;
		case 'f':
			r = lxm_cli_parse_format(cmd, optarg, &fmt, err);
			if (r < 0)
				return r;
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	r = parse_columns(cmd, spec, &cols, err);
	if (r < 0)
		return r;
	/* "REMOTE:" lists that remote's instances. */
	if (optind < argc && strchr(argv[optind], ':')) {
		const char *rest;

		r = lxm_cli_target(argv[optind], &rest, err);
		if (r < 0)
			return r;
		if (*rest)
			return lxm_error_set(err, -EINVAL, 400,
					     "%s: '%s': expected REMOTE: alone, then filters", cmd,
					     argv[optind]);
		optind++;
	}

	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	/* Let the server cut the list down when it can (LXD's api_filtering); the client-side pass
	 * below still applies every filter, so a partial server implementation is harmless. */
	if (lxm_client_has_extension(c, "api_filtering") &&
	    server_filter(argv + optind, argc - optind, &filter) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	if (filter && !(efilter = lxm_url_escape(filter)))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	if (asprintf(&path, "/1.0/instances?recursion=2%s%s", efilter ? "&filter=" : "",
		     efilter ? efilter : "") < 0) {
		path = NULL;
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	}
	r = lxm_client_request(c, "GET", path, NULL, &all, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "list instances");
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502,
				     "list instances: the server sent no list of instances");

	r = select_instances(all, argv + optind, argc - optind, &selected);
	if (r >= 0 && fmt != LXM_FORMAT_JSON && fmt != LXM_FORMAT_YAML)
		r = build_table(selected, &cols, &table);
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	return lxm_cli_print_list(cmd, selected, table, fmt, err);
}
