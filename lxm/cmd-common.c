#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"

int lxm_cli_connect(struct lxm_client **ret, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	int r;

	/* A remote named as REMOTE:NAME, or the default remote ('lxm remote switch'). */
	r = lxm_cli_connect_target(ret, err);
	if (r != 0)
		return r < 0 ? r : 0;
	r = lxm_client_new(&c, err);
	if (r < 0)
		return r;
	r = lxm_client_server(c, NULL, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

const struct lxm_command *lxm_cli_find(const struct lxm_command *table, const char *name)
{
	for (const struct lxm_command *c = table; c->name; c++)
		if (streq(c->name, name) || streq(c->alias, name))
			return c;
	return NULL;
}

int lxm_cli_dispatch(const struct lxm_command *table, const char *choices, int argc, char **argv,
		     struct lxm_error **err)
{
	const struct lxm_command *c;
	char path[64];

	if (argc < 2)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: expected a command: %s (see 'lxm %s --help')", argv[0],
				     choices, argv[0]);
	c = lxm_cli_find(table, argv[1]);
	if (!c)
		return lxm_error_set(err, -EINVAL, 400,
				     "unknown command \"%s %s\" (see 'lxm %s --help')", argv[0],
				     argv[1], argv[0]);
	snprintf(path, sizeof(path), "%s %s", argv[0], c->name);
	argv[1] = path;
	return c->run(argc - 1, argv + 1, err);
}

int lxm_cli_open(int argc, char **argv, int min, int max, const char *expected,
		 struct lxm_client **ret, struct lxm_error **err)
{
	int r = lxm_cli_nargs(argv[0], argc - 1, min, max, expected, err);

	if (r < 0)
		return r;
	return lxm_cli_connect(ret, err);
}

int lxm_cli_target_name(const char *cmd, char **arg, struct lxm_error **err)
{
	const char *orig = *arg;
	int r = lxm_cli_target_arg(arg, err);

	if (r >= 0 && !**arg && *orig)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: '%s' names a remote but nothing on it (REMOTE:NAME)", cmd,
				     orig);
	return r;
}

int lxm_cli_list_remote(int argc, char **argv, int first, struct lxm_error **err)
{
	const char *orig;
	int r;

	if (first >= argc)
		return 0;
	orig = argv[first];
	r = lxm_cli_target_arg(&argv[first], err);
	if (r >= 0 && *argv[first])
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: '%s' is not a remote: expected REMOTE: (e.g. local:)",
				     argv[0], orig);
	return r;
}

int lxm_cli_open_target(int argc, char **argv, int min, int max, const char *expected,
			struct lxm_client **ret, struct lxm_error **err)
{
	int r = lxm_cli_nargs(argv[0], argc - 1, min, max, expected, err);

	if (r >= 0 && argc > 1)
		r = lxm_cli_target_name(argv[0], &argv[1], err);
	return r < 0 ? r : lxm_cli_connect(ret, err);
}

char *lxm_cli_path(const char *prefix, const char *name)
{
	_cleanup_free_ char *e = lxm_url_escape(name);
	char *p;

	if (!e || asprintf(&p, "%s%s", prefix, e) < 0)
		return NULL;
	return p;
}

int lxm_cli_get_object(struct lxm_client *c, const char *path, const char *what, const char *kind,
		       json_t **ret, char **ret_etag, struct lxm_error **err)
{
	struct lxm_client_response resp = {};
	json_t *obj = NULL;
	int r;

	r = lxm_client_request(c, "GET", path, NULL, &obj, &resp, err);
	if (r < 0) {
		lxm_client_response_done(&resp);
		return lxm_error_prefix(err, "%s", what);
	}
	if (!json_is_object(obj)) {
		json_decref(obj);
		lxm_client_response_done(&resp);
		return lxm_error_set(err, -EPROTO, 502, "%s: the server sent no %s", what, kind);
	}
	*ret = obj;
	if (ret_etag)
		*ret_etag = TAKE_PTR(resp.etag);
	lxm_client_response_done(&resp);
	return 0;
}

/* Says what an update recorded that a running instance only takes at its next start: lxmd's
 * "restart_required" (keys for an instance's update, instance -> keys for a profile's). */
static void print_restart_required(const char *path, const json_t *metadata)
{
	const json_t *rr = json_object_get(metadata, "restart_required");
	const char *slash = strrchr(path, '/'), *name;
	json_t *list, *v;
	size_t i;

	if (json_is_array(rr)) {
		json_array_foreach ((json_t *)rr, i, v)
			fprintf(stderr, "Instance '%s': %s takes effect at its next start\n",
				slash ? slash + 1 : path, json_string_value(v));
		return;
	}
	json_object_foreach ((json_t *)rr, name, list)
		json_array_foreach (list, i, v)
			fprintf(stderr, "Instance '%s': %s takes effect at its next start\n", name,
				json_string_value(v));
}

int lxm_cli_put(struct lxm_client *c, const char *path, const json_t *body, const char *etag,
		struct lxm_error **err)
{
	struct lxm_client_response resp = { .if_match = etag };
	_cleanup_json_ json_t *metadata = NULL, *op = NULL;
	int r;

	r = lxm_client_request(c, "PUT", path, body, &metadata, &resp, err);
	if (r >= 0 && resp.operation) {
		r = lxm_client_wait_operation(c, resp.operation, &op, err);
		if (r >= 0)
			print_restart_required(path, json_object_get(op, "metadata"));
	} else if (r >= 0) {
		print_restart_required(path, metadata);
	}
	lxm_client_response_done(&resp);
	return r;
}

int lxm_cli_print_yaml(const char *cmd, const json_t *view, const char *what,
		       struct lxm_error **err)
{
	_cleanup_free_ char *out = NULL;
	int r;

	if (!view)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_yaml_from_json(view, &out);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "%s: render %s", cmd, what);
	return lxm_cli_print(cmd, out, err);
}

int lxm_cli_list_args(int argc, char **argv, int min, int max, const char *expected,
		      enum lxm_format *fmt, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "format", required_argument, NULL, 'f' },
		{},
	};
	const char *cmd = argv[0];
	int opt, r;

	*fmt = LXM_FORMAT_TABLE;
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:", options, NULL)) != -1) {
		if (opt != 'f')
			return lxm_cli_flag_error(cmd, argv, opt, err);
		r = lxm_cli_parse_format(cmd, optarg, fmt, err);
		if (r < 0)
			return r;
	}
	r = lxm_cli_nargs(cmd, argc - optind, min, max, expected, err);
	return r < 0 ? r : optind;
}

int lxm_cli_flag_error(const char *cmd, char **argv, int c, struct lxm_error **err)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";
	char shortopt[3] = { '-', (char)optopt, '\0' };

	/* For a bad letter inside a cluster ("-xq"), optopt names it better than argv does. */
	if (optopt && optopt < 128 && (!arg || arg[0] != '-' || arg[1] != '-'))
		arg = shortopt;
	if (c == ':')
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: flag '%s' needs a value (see 'lxm %s --help')", cmd, arg,
				     cmd);
	return lxm_error_set(err, -EINVAL, 400, "%s: unknown flag '%s' (see 'lxm %s --help')", cmd,
			     arg, cmd);
}

int lxm_cli_nargs(const char *cmd, int nargs, int min, int max, const char *expected,
		  struct lxm_error **err)
{
	if (nargs >= min && (max < 0 || nargs <= max))
		return 0;
	return lxm_error_set(err, -EINVAL, 400,
			     "%s: expected %s, got %d argument%s (see 'lxm %s --help')", cmd,
			     expected, nargs, nargs == 1 ? "" : "s", cmd);
}

int lxm_cli_parse_format(const char *cmd, const char *value, enum lxm_format *ret,
			 struct lxm_error **err)
{
	enum lxm_format f = lxm_format_from_string(value);

	if (f == _LXM_FORMAT_INVALID)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: invalid format '%s' (use table, csv, json or yaml)", cmd,
				     value);
	*ret = f;
	return 0;
}

int lxm_cli_print(const char *cmd, const char *text, struct lxm_error **err)
{
	if (fputs(text, stdout) == EOF || fflush(stdout) == EOF)
		return lxm_error_setx(err, -errno ? -errno : -EIO, 500, "%s: write output", cmd);
	return 0;
}

int lxm_cli_print_list(const char *cmd, const json_t *value, const struct lxm_table *table,
		       enum lxm_format fmt, struct lxm_error **err)
{
	_cleanup_free_ char *out = NULL;
	int r;

	if (fmt == LXM_FORMAT_JSON || fmt == LXM_FORMAT_YAML)
		r = lxm_format_value(value, fmt, &out);
	else
		r = lxm_table_render(table, fmt, &out);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "%s: render output", cmd);
	return lxm_cli_print(cmd, out, err);
}

char *lxm_cli_upper(const char *s)
{
	char *u = strdup(s ? s : "");

	for (char *p = u; p && *p; p++)
		*p = (char)toupper((unsigned char)*p);
	return u;
}

int lxm_cli_split_kv(const char *arg, char **ret_key, char **ret_value)
{
	const char *eq = strchr(arg, '=');
	char *k, *v;

	if (!eq || eq == arg)
		return -EINVAL;
	k = strndup(arg, (size_t)(eq - arg));
	v = strdup(eq + 1);
	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	*ret_key = k;
	*ret_value = v;
	return 0;
}

/* Puts each "KEY=VALUE" of args into map; a bad one fails, worded for set verbs (which also
 * take "KEY VALUE") when set_form is true, else for --config style arguments. */
static int put_kv_args(const char *cmd, int nargs, char *const *args, json_t *map, bool set_form,
		       struct lxm_error **err)
{
	for (int i = 0; i < nargs; i++) {
		_cleanup_free_ char *key = NULL, *value = NULL;

		if (lxm_cli_split_kv(args[i], &key, &value) < 0)
			return lxm_error_set(
				err, -EINVAL, 400,
				set_form ? "%s: invalid '%s': expected KEY=VALUE (or "
					   "KEY VALUE)"
					 : "%s: invalid config '%s': expected KEY=VALUE",
				cmd, args[i]);
		if (json_object_set_new(map, key, json_string(value)) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	}
	return 0;
}

int lxm_cli_kv_args(const char *cmd, int nargs, char *const *args, json_t *config,
		    struct lxm_error **err)
{
	return put_kv_args(cmd, nargs, args, config, false, err);
}

int lxm_cli_set_args(const char *cmd, int nargs, char *const *args, json_t **ret,
		     struct lxm_error **err)
{
	_cleanup_json_ json_t *set = json_object();
	int r;

	if (!set)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	if (nargs == 2 && !strchr(args[0], '=')) {
		if (json_object_set_new(set, args[0], json_string(args[1])) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	} else {
		r = put_kv_args(cmd, nargs, args, set, true, err);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(set);
	return 0;
}

int lxm_cli_change_config(const char *cmd, const char *what, const json_t *obj, const json_t *set,
			  const char *unset, json_t **ret, struct lxm_error **err)
{
	const json_t *old = json_object_get(obj, "config");
	_cleanup_json_ json_t *config =
		json_is_object(old) ? json_copy((json_t *)old) : json_object();
	const char *key;
	json_t *value;

	if (!config)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	if (unset && json_object_del(config, unset) < 0)
		return lxm_error_set(err, -ENOENT, 404, "%s: cannot unset key '%s': it is not set",
				     what, unset);
	json_object_foreach ((json_t *)set, key, value)
		if (json_object_set(config, key, value) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	*ret = TAKE_PTR(config);
	return 0;
}

/* GET PREFIX/NAME of kind k, with its ETag for a following PUT. */
int lxm_cli_kind_get(struct lxm_client *c, const struct lxm_cli_config_kind *k, const char *name,
		     json_t **ret, char **ret_etag, struct lxm_error **err)
{
	_cleanup_free_ char *path = lxm_cli_path(k->prefix, name), *what = NULL;

	if (!path || asprintf(&what, "%s '%s'", k->kind, name) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s '%s': out of memory", k->kind, name);
	return lxm_cli_get_object(c, path, what, k->kind, ret, ret_etag, err);
}

int lxm_cli_kind_create(struct lxm_client *c, const struct lxm_cli_config_kind *k, const char *name,
			const json_t *body, struct lxm_error **err)
{
	_cleanup_free_ char *path = strndup(k->prefix, strlen(k->prefix) - 1);
	int r;

	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "create %s '%s': out of memory", k->kind,
				     name);
	r = lxm_client_do(c, "POST", path, body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "create %s '%s'", k->kind, name);
	printf("%s %s created\n", k->title, name);
	return 0;
}

int lxm_cli_kind_delete(const struct lxm_cli_config_kind *k, int argc, char **argv,
			struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 1, 1, k->name_args, &c, err);
	if (r < 0)
		return r;
	path = lxm_cli_path(k->prefix, argv[1]);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_do(c, "DELETE", path, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "delete %s '%s'", k->kind, argv[1]);
	printf("%s %s deleted\n", k->title, argv[1]);
	return 0;
}

int lxm_cli_kind_rename(const struct lxm_cli_config_kind *k, int argc, char **argv,
			struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 2, k->rename_args, &c, err);
	if (r < 0)
		return r;
	body = json_pack("{s:s}", "name", argv[2]);
	path = lxm_cli_path(k->prefix, argv[1]);
	if (!body || !path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_do(c, "POST", path, body, NULL, err);
	if (r < 0 && k->rename_says_new)
		return lxm_error_prefix(err, "rename %s '%s' to '%s'", k->kind, argv[1], argv[2]);
	if (r < 0)
		return lxm_error_prefix(err, "rename %s '%s'", k->kind, argv[1]);
	printf("%s %s renamed to %s\n", k->title, argv[1], argv[2]);
	return 0;
}

int lxm_cli_create_args(int argc, char **argv, int nfixed, const char *expected,
			const char **ret_desc, const char **ret_type, json_t **ret_config,
			struct lxm_client **ret, struct lxm_error **err)
{
	static const struct option typed[] = {
		{ "description", required_argument, NULL, 'd' },
		{ "type", required_argument, NULL, 't' },
		{},
	};
	/* Without ret_type, the verb has no --type: the table ends before it. */
	static const struct option untyped[] = {
		{ "description", required_argument, NULL, 'd' },
		{},
	};
	_cleanup_json_ json_t *config = NULL;
	const char *cmd = argv[0];
	int r, opt, first;

	*ret_desc = "";
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ret_type ? ":t:" : ":", ret_type ? typed : untyped,
				  NULL)) != -1) {
		if (opt == 'd')
			*ret_desc = optarg;
		else if (opt == 't')
			*ret_type = optarg;
		else
			return lxm_cli_flag_error(cmd, argv, opt, err);
	}
	first = optind;
	r = lxm_cli_nargs(cmd, argc - first, nfixed, -1, expected, err);
	if (r < 0)
		return r;
	config = json_object();
	if (!config)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_kv_args(cmd, argc - first - nfixed, argv + first + nfixed, config, err);
	if (r >= 0)
		r = lxm_cli_target_name(cmd, &argv[first], err);
	if (r >= 0)
		r = lxm_cli_connect(ret, err);
	if (r < 0)
		return r;
	*ret_config = TAKE_PTR(config);
	return first;
}

/* Changes the config of NAME with a GET and a PUT guarded by its ETag, so that a concurrent
 * change fails instead of being overwritten: see lxm_cli_change_config(). */
static int change_object_config(const struct lxm_cli_config_kind *k, const char *cmd,
				const char *name, const json_t *set, const char *unset,
				struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *obj = NULL, *config = NULL, *body = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL, *path = NULL;
	const json_t *devices;
	int r;

	r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, k, name, &obj, &etag, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "%s '%s'", k->kind, name) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_change_config(cmd, what, obj, set, unset, &config, err);
	if (r < 0)
		return r;
	body = json_pack("{s:O, s:s}", "config", config, "description",
			 json_string_value(json_object_get(obj, "description")) ?: "");
	devices = json_object_get(obj, "devices");
	if (body && k->devices &&
	    json_object_set_new(body, "devices",
				json_is_object(devices) ? json_incref((json_t *)devices)
							: json_object()) < 0)
		json_decref(TAKE_PTR(body));
	path = lxm_cli_path(k->prefix, name);
	if (!body || !path)
		return lxm_error_set(err, -ENOMEM, 500, "%s '%s': out of memory", k->kind, name);
	r = lxm_cli_put(c, path, body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "update %s '%s'", k->kind, name);
	return 0;
}

int lxm_cli_config_set(const struct lxm_cli_config_kind *k, int argc, char **argv,
		       struct lxm_error **err)
{
	_cleanup_json_ json_t *set = NULL;
	const char *cmd = argv[0];
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 2, -1, "NAME KEY=VALUE... or NAME KEY VALUE", err);
	if (r >= 0)
		r = lxm_cli_target_name(cmd, &argv[1], err);
	if (r >= 0)
		r = lxm_cli_set_args(cmd, argc - 2, argv + 2, &set, err);
	return r < 0 ? r : change_object_config(k, cmd, argv[1], set, NULL, err);
}

int lxm_cli_config_unset(const struct lxm_cli_config_kind *k, int argc, char **argv,
			 struct lxm_error **err)
{
	int r = lxm_cli_nargs(argv[0], argc - 1, 2, 2, k->key_args, err);

	if (r >= 0)
		r = lxm_cli_target_name(argv[0], &argv[1], err);
	return r < 0 ? r : change_object_config(k, argv[0], argv[1], NULL, argv[2], err);
}

int lxm_cli_config_get(const struct lxm_cli_config_kind *k, int argc, char **argv,
		       struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *obj = NULL;
	const char *v;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 2, k->key_args, &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, k, argv[1], &obj, NULL, err);
	if (r < 0)
		return r;
	/* An unset key prints an empty line, as in lxc, so scripts can test for "". */
	v = json_string_value(json_object_get(json_object_get(obj, "config"), argv[2]));
	printf("%s\n", v ? v : "");
	return 0;
}

int lxm_cli_string_map(const json_t *in, const char *what, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *out = json_object();
	const char *k;
	json_t *v;

	if (!out)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", what);
	if (json_is_null(in) || !in) {
		*ret = TAKE_PTR(out);
		return 0;
	}
	if (!json_is_object(in))
		return lxm_error_set(err, -EINVAL, 400, "%s must be a map of key: value", what);
	json_object_foreach ((json_t *)in, k, v) {
		char num[32];
		const char *s;

		switch (json_typeof(v)) {
		case JSON_STRING:
			s = json_string_value(v);
			break;
		case JSON_INTEGER:
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			s = num;
			break;
		case JSON_TRUE:
			s = "true";
			break;
		case JSON_FALSE:
			s = "false";
			break;
		case JSON_NULL:
			s = "";
			break;
		default:
			return lxm_error_set(err, -EINVAL, 400,
					     "%s key '%s': value must be text, not a %s", what, k,
					     json_is_array(v) ? "list" : "map");
		}
		if (json_object_set_new(out, k, json_string(s)) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", what);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* ---- editing ---- */

/* Reads standard input, which lxm_read_file cannot open by name when it is a socket. */
static int read_stdin(char **ret, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			char *grown = realloc(buf, cap + 65536);

			if (!grown)
				return -ENOMEM;
			buf = grown;
			cap += 65536;
		}
		n = read(STDIN_FILENO, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*ret = TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

static int parse_and_check(const char *text, size_t len, lxm_cli_edit_check_fn check,
			   void *userdata, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *doc = NULL;
	_cleanup_free_ char *msg = NULL;
	int r;

	r = lxm_yaml_to_json(text, len, &doc, &msg);
	if (r < 0)
		return lxm_error_set(err, r, 400, "invalid YAML: %s", msg ? msg : "out of memory");
	r = check(doc, userdata, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(doc);
	return 0;
}

/* Runs the user's editor on path. The editor variable may carry arguments ("code --wait"), so it
 * goes through the shell, with the file name passed as a separate argument, never spliced in. */
static int run_editor(const char *path, struct lxm_error **err)
{
	const char *editor = getenv("VISUAL");
	int status;
	pid_t pid;

	if (!editor || !*editor)
		editor = getenv("EDITOR");
	if (!editor || !*editor)
		editor = "vi";
	pid = fork();
	if (pid < 0)
		return lxm_error_setx(err, -errno, 500, "start editor '%s'", editor);
	if (pid == 0) {
		_cleanup_free_ char *script = NULL;

		if (asprintf(&script, "%s \"$1\"", editor) < 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", script, "sh", path, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return lxm_error_setx(err, -errno, 500, "wait for editor '%s'", editor);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return lxm_error_set(err, -ECANCELED, 500,
				     "editor '%s' failed (exit status %d); nothing was changed",
				     editor, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 0;
}

static void unlink_tmp(char **path)
{
	if (*path) {
		unlink(*path);
		free(*path);
	}
}

static int edit_in_editor(const char *header, const char *text, lxm_cli_edit_check_fn check,
			  void *userdata, json_t **ret, struct lxm_error **err)
{
	_cleanup_(unlink_tmp) char *path = NULL;
	const char *tmpdir = getenv("TMPDIR");
	_cleanup_close_ int fd = -1;
	FILE *f;

	if (asprintf(&path, "%s/lxm_editor_XXXXXX.yaml", tmpdir && *tmpdir ? tmpdir : "/tmp") < 0) {
		path = NULL;
		return lxm_error_set(err, -ENOMEM, 500, "edit: out of memory");
	}
	fd = mkostemps(path, 5, O_CLOEXEC);
	if (fd < 0) {
		int r = -errno;

		free(TAKE_PTR(path));
		return lxm_error_setx(err, r, 500, "create a temporary file in %s",
				      tmpdir && *tmpdir ? tmpdir : "/tmp");
	}
	f = fdopen(TAKE_FD(fd), "w");
	if (!f || fputs(header, f) == EOF || fputs(text, f) == EOF || fclose(f) != 0)
		return lxm_error_setx(err, -EIO, 500, "write %s", path);

	for (;;) {
		_cleanup_error_ struct lxm_error *perr = NULL;
		_cleanup_free_ char *buf = NULL;
		char answer[64];
		size_t len;
		int r;

		r = run_editor(path, err);
		if (r < 0)
			return r;
		r = lxm_read_file(path, &buf, &len);
		if (r < 0)
			return lxm_error_setx(err, r, 500, "read back %s", path);
		r = parse_and_check(buf, len, check, userdata, ret, &perr);
		if (r >= 0)
			return 0;
		/* Like lxc: show what is wrong and let the user fix it instead of losing the edit.
		 */
		fprintf(stderr, "Config parsing error: %s\n", perr->msg);
		fprintf(stderr, "Press enter to open the editor again or ctrl+c to abort change\n");
		if (!fgets(answer, sizeof(answer), stdin))
			return lxm_error_set(err, r, 400, "%s", perr->msg);
	}
}

int lxm_cli_edit_yaml(const char *header, const char *text, lxm_cli_edit_check_fn check,
		      void *userdata, json_t **ret, struct lxm_error **err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	if (isatty(STDIN_FILENO))
		return edit_in_editor(header, text, check, userdata, ret, err);

	r = read_stdin(&buf, &len);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "read standard input");
	r = parse_and_check(buf, len, check, userdata, ret, err);
	if (r < 0)
		return lxm_error_prefix(err, "standard input");
	return 0;
}

int lxm_cli_edit_view(const char *cmd, const char *what, const json_t *view, const char *header,
		      lxm_cli_edit_check_fn check, void *userdata, struct lxm_error **err)
{
	_cleanup_json_ json_t *doc = NULL;
	_cleanup_free_ char *text = NULL;
	int r;

	if (!view)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_yaml_from_json(view, &text);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "%s: render %s", cmd, what);
	r = lxm_cli_edit_yaml(header, text, check, userdata, &doc, err);
	if (r < 0)
		return lxm_error_prefix(err, "edit %s", what);
	return 0;
}

void lxm_cli_config_edit_done(struct lxm_cli_config_edit *e)
{
	json_decref(TAKE_PTR(e->config));
	free(TAKE_PTR(e->description));
}

int lxm_cli_check_doc_fields(const json_t *doc, const char *const *fields, const char *what,
			     const char *known, struct lxm_error **err)
{
	const char *key;
	json_t *v;

	if (json_is_null(doc))
		return lxm_error_set(err, -EINVAL, 400,
				     "the document is empty; nothing was changed");
	if (!json_is_object(doc))
		return lxm_error_set(err, -EINVAL, 400, "the document must be %s", what);
	json_object_foreach ((json_t *)doc, key, v) {
		size_t i;

		for (i = 0; fields[i] && !streq(key, fields[i]); i++)
			;
		if (!fields[i])
			return lxm_error_set(err, -EINVAL, 400, "unknown field '%s' (%s)", key,
					     known);
	}
	return 0;
}

int lxm_cli_doc_description(const json_t *doc, char **ret, struct lxm_error **err)
{
	const json_t *desc = json_object_get(doc, "description");

	if (desc && !json_is_null(desc) && !json_is_string(desc))
		return lxm_error_set(err, -EINVAL, 400, "description must be text");
	*ret = strdup(json_string_value(desc) ? json_string_value(desc) : "");
	if (!*ret)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return 0;
}

int lxm_cli_check_config_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	struct lxm_cli_config_edit *e = userdata;
	char what[64], known[64];
	int r;

	lxm_cli_config_edit_done(e);
	snprintf(what, sizeof(what), "a map of %s fields", e->kind);
	snprintf(known, sizeof(known), "a %s has config and description", e->kind);
	r = lxm_cli_check_doc_fields(doc, e->fields, what, known, err);
	if (r >= 0)
		r = lxm_cli_doc_description(doc, &e->description, err);
	if (r < 0)
		return r;
	return lxm_cli_string_map(json_object_get(doc, "config"), "config", &e->config, err);
}
