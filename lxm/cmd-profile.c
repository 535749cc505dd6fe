/* lxm profile list|show|create|delete|set|unset|get|rename|edit. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"

/* lxc shows a profile in the order of Go's api.Profile fields. */
static const char *const profile_keys[] = {
	"config", "description", "devices", "name", "used_by", NULL,
};

static int profile_path(const char *name, char **ret)
{
	*ret = lxm_cli_path("/1.0/profiles/", name);
	return *ret ? 0 : -ENOMEM;
}

static const struct lxm_cli_config_kind profile_kind = {
	.prefix = "/1.0/profiles/",
	.kind = "profile",
	.title = "Profile",
	.name_args = "a profile NAME",
	.rename_args = "OLD and NEW profile names",
	.key_args = "a profile NAME and a KEY",
	.devices = true,
	.rename_says_new = true,
};

/* PUT /1.0/profiles/NAME {"config","description","devices"}, guarded by the ETag of the GET it
 * follows, so that a concurrent change fails instead of being overwritten. */
static int put_profile(struct lxm_client *c, const char *name, json_t *config,
		       const char *description, json_t *devices, const char *etag,
		       struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	body = json_pack("{s:o, s:s, s:o}", "config", config ? json_incref(config) : json_object(),
			 "description", description ? description : "", "devices",
			 json_is_object(devices) ? json_incref(devices) : json_object());
	if (!body || profile_path(name, &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "profile '%s': out of memory", name);
	r = lxm_cli_put(c, path, body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "update profile '%s'", name);
	return 0;
}

/* The profile as lxc shows it: its fields in lxc's order, maps with sorted keys. */
static json_t *profile_view(const json_t *p)
{
	_cleanup_json_ json_t *view = lxm_json_reorder(p, profile_keys);
	const char *maps[] = { "config", "devices" };

	if (!view)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(maps); i++) {
		json_t *v = json_object_get(view, maps[i]);

		if (!v || json_is_null(v))
			v = json_object();
		else
			v = lxm_json_sorted(v);
		if (!v || json_object_set_new(view, maps[i], v) < 0)
			return NULL;
	}
	return TAKE_PTR(view);
}

/* ---- list, show ---- */

static int name_cmp(const void *a, const void *b)
{
	const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
	const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));

	return lxm_natural_cmp(x ? x : "", y ? y : "");
}

/* GET /1.0/profiles?recursion=1, sorted by name; a server that ignores recursion sends URLs,
 * which are fetched one by one. */
static int fetch_profiles(struct lxm_client *c, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *all = NULL, *out = json_array();
	_cleanup_free_ json_t **v = NULL;
	size_t n = 0, i;
	json_t *p;
	int r;

	r = lxm_client_request(c, "GET", "/1.0/profiles?recursion=1", NULL, &all, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "list profiles");
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502, "list profiles: the server sent no list");
	v = calloc(json_array_size(all) + 1, sizeof(*v));
	if (!v || !out)
		return lxm_error_set(err, -ENOMEM, 500, "list profiles: out of memory");
	json_array_foreach (all, i, p) {
		if (json_is_string(p)) {
			const char *slash = strrchr(json_string_value(p), '/');
			json_t *full = NULL;

			r = lxm_cli_kind_get(c, &profile_kind,
					     slash ? slash + 1 : json_string_value(p), &full, NULL,
					     err);
			if (r < 0)
				return r;
			json_array_set_new(all, i, full);
			p = full;
		}
		if (json_is_object(p))
			v[n++] = p;
	}
	qsort(v, n, sizeof(*v), name_cmp);
	for (i = 0; i < n; i++)
		if (json_array_append(out, v[i]) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "list profiles: out of memory");
	*ret = TAKE_PTR(out);
	return 0;
}

static int profile_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "NAME", "DESCRIPTION", "USED BY" };
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *profiles = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	const json_t *p;
	size_t i;
	int r;

	r = lxm_cli_list_args(argc, argv, 0, 0, "no arguments", &fmt, err);
	if (r >= 0)
		r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	r = fetch_profiles(c, &profiles, err);
	if (r < 0)
		return r;

	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (profiles, i, p) {
		char used[32];
		const char *row[3];

		snprintf(used, sizeof(used), "%zu", json_array_size(json_object_get(p, "used_by")));
		row[0] = json_string_value(json_object_get(p, "name"));
		row[1] = json_string_value(json_object_get(p, "description"));
		row[2] = used;
		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	return lxm_cli_print_list(cmd, profiles, t, fmt, err);
}

static int profile_show(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *p = NULL, *view = NULL;
	_cleanup_free_ char *what = NULL;
	int r;

	r = lxm_cli_open(argc, argv, 1, 1, "a profile NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &profile_kind, argv[1], &p, NULL, err);
	if (r < 0)
		return r;
	view = profile_view(p);
	if (asprintf(&what, "profile '%s'", argv[1]) < 0)
		what = NULL;
	return lxm_cli_print_yaml(argv[0], what ? view : NULL, what, err);
}

/* ---- create, delete, rename ---- */

static int profile_create(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL;
	int r;

	r = lxm_cli_open(argc, argv, 1, 1, "a profile NAME", &c, err);
	if (r < 0)
		return r;
	body = json_pack("{s:s, s:{}, s:s, s:{}}", "name", argv[1], "config", "description", "",
			 "devices");
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_kind_create(c, &profile_kind, argv[1], body, err);
}

static int profile_delete(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_kind_delete(&profile_kind, argc, argv, err);
}

static int profile_rename(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_kind_rename(&profile_kind, argc, argv, err);
}

/* ---- set, unset, get ---- */

static int profile_set(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_set(&profile_kind, argc, argv, err);
}

static int profile_unset(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_unset(&profile_kind, argc, argv, err);
}

static int profile_get(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_get(&profile_kind, argc, argv, err);
}

/* ---- edit ---- */

static const char edit_header[] =
	"### This is the profile as YAML. Lines starting with '#' are ignored.\n"
	"###\n"
	"### A profile holds config keys and devices, for example:\n"
	"###   config:\n"
	"###     limits.cpu: \"2\"\n"
	"###   description: Two CPUs and a NIC\n"
	"###   devices:\n"
	"###     eth0:\n"
	"###       type: nic\n"
	"###       network: lxmbr0\n"
	"###\n"
	"### The name and used_by are shown for reference; they cannot be changed here.\n";

/* What an edited document must look like, turned into the PUT's fields. */
struct profile_edit {
	json_t *config;
	json_t *devices;
	char *description;
};

static void profile_edit_done(struct profile_edit *e)
{
	json_decref(e->config);
	json_decref(e->devices);
	free(e->description);
	*e = (struct profile_edit){};
}

static int check_devices(const json_t *in, json_t **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *out = json_object();
	const char *dev;
	json_t *v;

	if (!out)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (in && !json_is_null(in) && !json_is_object(in))
		return lxm_error_set(err, -EINVAL, 400, "devices must be a map of device names");
	json_object_foreach ((json_t *)in, dev, v) {
		_cleanup_free_ char *what = NULL;
		json_t *keys = NULL;
		int r;

		if (asprintf(&what, "device '%s'", dev) < 0) {
			what = NULL;
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		}
		r = lxm_cli_string_map(v, what, &keys, err);
		if (r < 0)
			return r;
		if (json_object_set_new(out, dev, keys) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	*ret = TAKE_PTR(out);
	return 0;
}

static int check_profile_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	static const char *const known[] = { "config", "description", "devices",
					     "name",   "used_by",     "project" };
	struct profile_edit *e = userdata;
	const json_t *desc;
	const char *key;
	json_t *v;
	int r;

	profile_edit_done(e);
	if (!json_is_object(doc))
		return lxm_error_set(err, -EINVAL, 400,
				     json_is_null(doc)
					     ? "the document is empty; nothing was changed"
					     : "the document must be a map of profile fields");
	json_object_foreach ((json_t *)doc, key, v) {
		size_t i;

		for (i = 0; i < ARRAY_SIZE(known); i++)
			if (streq(key, known[i]))
				break;
		if (i == ARRAY_SIZE(known))
			return lxm_error_set(
				err, -EINVAL, 400,
				"unknown field '%s' (a profile has config, description "
				"and devices)",
				key);
	}
	r = lxm_cli_string_map(json_object_get(doc, "config"), "config", &e->config, err);
	if (r < 0)
		return r;
	r = check_devices(json_object_get(doc, "devices"), &e->devices, err);
	if (r < 0)
		return r;
	desc = json_object_get(doc, "description");
	if (desc && !json_is_null(desc) && !json_is_string(desc))
		return lxm_error_set(err, -EINVAL, 400, "description must be text");
	e->description = strdup(json_string_value(desc) ? json_string_value(desc) : "");
	if (!e->description)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return 0;
}

static int profile_edit(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(profile_edit_done) struct profile_edit e = {};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *p = NULL, *view = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL;
	int r;

	r = lxm_cli_open(argc, argv, 1, 1, "a profile NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &profile_kind, argv[1], &p, &etag, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "profile '%s'", argv[1]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	view = profile_view(p);
	r = lxm_cli_edit_view(argv[0], what, view, edit_header, check_profile_doc, &e, err);
	if (r < 0)
		return r;
	return put_profile(c, argv[1], e.config, e.description, e.devices, etag, err);
}

const struct lxm_command lxm_profile_commands[] = {
	LXM_CMD("create", profile_create, "Create a profile", "profile create NAME"),
	LXM_CMD_DELETE(profile_delete, "Delete a profile", "profile delete NAME"),
	{
		.name = "edit",
		.run = profile_edit,
		.summary = "Edit a profile as YAML",
		.usage = "profile edit NAME",
		.help = "Opens $VISUAL or $EDITOR (default vi) on the profile, or reads the YAML\n"
			"from standard input when it is not a terminal:\n"
			"  lxm profile edit web < web.yaml\n",
	},
	LXM_CMD("get", profile_get, "Get the value of a profile config key",
		"profile get NAME KEY"),
	LXM_CMD_LIST(profile_list, "List profiles", "profile list [flags]"),
	LXM_CMD_RENAME(profile_rename, "Rename a profile", "profile rename OLD NEW"),
	LXM_CMD("set", profile_set, "Set profile config keys",
		"profile set NAME KEY=VALUE... | profile set NAME KEY VALUE"),
	LXM_CMD("show", profile_show, "Show a profile as YAML", "profile show NAME"),
	LXM_CMD("unset", profile_unset, "Unset a profile config key", "profile unset NAME KEY"),
	{},
};
