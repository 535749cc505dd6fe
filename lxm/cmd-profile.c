/* lxm profile list|show|create|copy|delete|set|unset|get|rename|edit|device, and the profiles
 * of instances: add, remove, assign. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"
#include "profiles/keys.h"

/* lxc shows a profile in the order of Go's api.Profile fields. */
static const char *const profile_keys[] = {
	"config", "description", "devices", "name", "used_by", NULL,
};

static int profile_path(const char *name, char **ret)
{
	*ret = lxm_cli_path("/1.0/profiles/", name);
	return *ret ? 0 : -ENOMEM;
}

/* What PUT /1.0/profiles/NAME takes back. */
static const char *const profile_put_fields[] = { "config", "description", "devices", NULL };

const struct lxm_cli_config_kind lxm_cli_profile_kind = {
	.prefix = "/1.0/profiles/",
	.kind = "profile",
	.title = "Profile",
	.name_args = "a profile NAME",
	.rename_args = "OLD and NEW profile names",
	.key_args = "a profile NAME and a KEY",
	.devices = true,
	.rename_says_new = true,
	.put_fields = profile_put_fields,
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

			r = lxm_cli_kind_get(c, &lxm_cli_profile_kind,
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

	r = lxm_cli_list_args(argc, argv, 0, 1, "at most a REMOTE:", &fmt, err);
	if (r >= 0)
		r = lxm_cli_list_remote(argc, argv, r, err);
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

	r = lxm_cli_open_target(argc, argv, 1, 1, "a profile NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &lxm_cli_profile_kind, argv[1], &p, NULL, err);
	if (r < 0)
		return r;
	view = profile_view(p);
	if (asprintf(&what, "profile '%s'", argv[1]) < 0)
		what = NULL;
	return lxm_cli_print_yaml(argv[0], what ? view : NULL, what, err);
}

/* ---- create, delete, rename ---- */

static int profile_delete(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_kind_delete(&lxm_cli_profile_kind, argc, argv, err);
}

static int profile_rename(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_kind_rename(&lxm_cli_profile_kind, argc, argv, err);
}

/* ---- set, unset, get ---- */

static int profile_set(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_json_ json_t *set = NULL;
	int r = 0;

	/* The keys are checked here as lxmd checks them, before any request. */
	if (argc > 2 && (r = lxm_cli_set_args(argv[0], argc - 2, argv + 2, &set, err)) >= 0 &&
	    (r = lxm_config_check(NULL, set, LXM_CONFIG_PROFILE, err)) < 0)
		return lxm_error_prefix(err, "update profile '%s'", argv[1]);
	return r < 0 ? r : lxm_cli_config_set(&lxm_cli_profile_kind, argc, argv, err);
}

static int profile_unset(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_unset(&lxm_cli_profile_kind, argc, argv, err);
}

static int profile_get(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_get(&lxm_cli_profile_kind, argc, argv, err);
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

static int check_profile_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	static const char *const known[] = { "config",	"description", "devices", "name",
					     "used_by", "project",     NULL };
	struct profile_edit *e = userdata;
	int r;

	profile_edit_done(e);
	r = lxm_cli_check_doc_fields(doc, known, "a map of profile fields",
				     "a profile has config, description and devices", err);
	if (r >= 0)
		r = lxm_cli_string_map(json_object_get(doc, "config"), "config", &e->config, err);
	if (r >= 0)
		r = lxm_cli_devices_map(json_object_get(doc, "devices"), &e->devices, err);
	if (r >= 0)
		r = lxm_cli_doc_description(doc, &e->description, err);
	return r < 0 ? r : 0;
}

static int profile_edit(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(profile_edit_done) struct profile_edit e = {};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *p = NULL, *view = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 1, 1, "a profile NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &lxm_cli_profile_kind, argv[1], &p, &etag, err);
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

/* ---- create, copy ---- */

/* An empty document (or stdin at its end) makes an empty profile. */
static int check_create_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	struct profile_edit *e = userdata;

	if (!json_is_null(doc))
		return check_profile_doc(doc, userdata, err);
	profile_edit_done(e);
	e->config = json_object();
	e->devices = json_object();
	e->description = strdup("");
	if (!e->config || !e->devices || !e->description)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return 0;
}

/* create NAME: with the config, description and devices of a YAML document on stdin when stdin
 * is not a terminal (lxm profile create web < web.yaml), as lxc does. */
static int profile_create(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(profile_edit_done) struct profile_edit e = {};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *doc = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 1, 1, "a profile NAME", &c, err);
	if (r < 0)
		return r;
	if (!isatty(STDIN_FILENO)) {
		r = lxm_cli_edit_yaml("", "", check_create_doc, &e, &doc, err);
		if (r < 0)
			return lxm_error_prefix(err, "create profile '%s'", argv[1]);
	}
	body = json_pack("{s:s, s:o, s:s, s:o}", "name", argv[1], "config",
			 e.config ? json_incref(e.config) : json_object(), "description",
			 e.description ? e.description : "", "devices",
			 e.devices ? json_incref(e.devices) : json_object());
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_kind_create(c, &lxm_cli_profile_kind, argv[1], body, err);
}

/* copy SOURCE DESTINATION: a new profile with the source's config, description and devices. */
static int profile_copy(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL, *dst = NULL;
	_cleanup_json_ json_t *p = NULL, *body = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 2, "SOURCE and DESTINATION profile names", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &lxm_cli_profile_kind, argv[1], &p, NULL, err);
	/* The destination may be on another remote, as with lxc (profile copy r2:web local:). */
	if (r >= 0)
		r = lxm_cli_target_all(&argv[2], 1, err);
	if (r >= 0 && !*argv[2])
		argv[2] = argv[1];
	if (r >= 0)
		r = lxm_cli_connect(&dst, err);
	if (r < 0)
		return lxm_error_prefix(err, "copy profile '%s' to '%s'", argv[1], argv[2]);
	body = json_pack("{s:s, s:s}", "name", argv[2], "description",
			 json_string_value(json_object_get(p, "description")) ?: "");
	for (size_t i = 0; body && i < 2; i++) {
		const char *field = i == 0 ? "config" : "devices";
		json_t *v = json_object_get(p, field);

		if (json_object_set_new(body, field,
					json_is_object(v) ? json_incref(v) : json_object()) < 0)
			json_decref(TAKE_PTR(body));
	}
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_do(dst, "POST", "/1.0/profiles", body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "copy profile '%s' to '%s'", argv[1], argv[2]);
	return 0;
}

/* ---- the profiles of an instance: add, remove, assign ---- */

/* An instance read for a change of its profile list: its object, ETag and a copy of the list. */
struct applied {
	struct lxm_client *c; /* the connection */
	json_t *inst;	      /* the instance as the GET gave it */
	char *etag;	      /* its ETag, for the PUT */
	json_t *profiles;     /* a copy of its profile list, to change */
};

static void applied_done(struct applied *a)
{
	lxm_client_free(a->c);
	json_decref(a->inst);
	free(a->etag);
	json_decref(a->profiles);
	*a = (struct applied){};
}

static int applied_open(int argc, char **argv, const char *expected, struct applied *a,
			struct lxm_error **err)
{
	const json_t *p;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 2, expected, &a->c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(a->c, &lxm_cli_instance_kind, argv[1], &a->inst, &a->etag,
				     err);
	if (r < 0)
		return r;
	p = json_object_get(a->inst, "profiles");
	a->profiles = json_is_array(p) ? json_copy((json_t *)p) : json_array();
	if (!a->profiles)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return 0;
}

/* The index of profile name in the list, or -1. */
static ssize_t applied_find(const struct applied *a, const char *name)
{
	for (size_t i = 0; i < json_array_size(a->profiles); i++)
		if (streq(json_string_value(json_array_get(a->profiles, i)), name))
			return (ssize_t)i;
	return -1;
}

static int applied_put(struct applied *a, const char *instance, struct lxm_error **err)
{
	if (json_object_set(a->inst, "profiles", a->profiles) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return lxm_cli_kind_put(a->c, &lxm_cli_instance_kind, instance, a->inst, a->etag, err);
}

/* add INSTANCE PROFILE: appended, so it applies after (over) the others. */
static int profile_add(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(applied_done) struct applied a = {};
	int r;

	r = applied_open(argc, argv, "an INSTANCE and a PROFILE", &a, err);
	if (r < 0)
		return r;
	if (applied_find(&a, argv[2]) >= 0)
		return lxm_error_set(err, -EEXIST, 409,
				     "profile '%s' is already applied to instance '%s'", argv[2],
				     argv[1]);
	if (json_array_append_new(a.profiles, json_string(argv[2])) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = applied_put(&a, argv[1], err);
	if (r < 0)
		return r;
	printf("Profile %s added to %s\n", argv[2], argv[1]);
	return 0;
}

/* remove INSTANCE PROFILE */
static int profile_remove(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(applied_done) struct applied a = {};
	ssize_t i;
	int r;

	r = applied_open(argc, argv, "an INSTANCE and a PROFILE", &a, err);
	if (r < 0)
		return r;
	i = applied_find(&a, argv[2]);
	if (i < 0)
		return lxm_error_set(err, -ENOENT, 404,
				     "profile '%s' is not applied to instance '%s'", argv[2],
				     argv[1]);
	json_array_remove(a.profiles, (size_t)i);
	r = applied_put(&a, argv[1], err);
	if (r < 0)
		return r;
	printf("Profile %s removed from %s\n", argv[2], argv[1]);
	return 0;
}

/* assign INSTANCE P1,P2,...: the whole list, in that order; "" applies none. */
static int profile_assign(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(applied_done) struct applied a = {};
	const char *s;
	int r;

	r = applied_open(argc, argv, "an INSTANCE and PROFILES (comma-separated)", &a, err);
	if (r < 0)
		return r;
	json_array_clear(a.profiles);
	for (s = argv[2]; *argv[2];) {
		size_t n = strcspn(s, ",");

		if (n == 0)
			return lxm_error_set(err, -EINVAL, 400,
					     "%s: invalid profile list '%s': an empty name "
					     "(expected P1,P2,... or '' for none)",
					     argv[0], argv[2]);
		if (json_array_append_new(a.profiles, json_stringn(s, n)) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
		if (!s[n])
			break;
		s += n + 1;
	}
	r = applied_put(&a, argv[1], err);
	if (r < 0)
		return r;
	if (*argv[2])
		printf("Profiles %s applied to %s\n", argv[2], argv[1]);
	else
		printf("All profiles removed from %s\n", argv[1]);
	return 0;
}

const struct lxm_command lxm_profile_commands[] = {
	LXM_CMD("add", profile_add, "Add a profile to an instance (applied last)",
		"profile add INSTANCE PROFILE"),
	{
		.name = "assign",
		.run = profile_assign,
		.summary = "Set the profiles of an instance",
		.usage = "profile assign INSTANCE PROFILE[,PROFILE...]",
		.help = "Replaces the instance's list; later profiles apply over earlier ones:\n"
			"  lxm profile assign c1 default,web\n"
			"  lxm profile assign c1 ''      (no profile at all)\n",
	},
	LXM_CMD("copy", profile_copy, "Copy a profile",
		"profile copy [REMOTE:]SOURCE [REMOTE:][DESTINATION]"),
	{
		.name = "create",
		.run = profile_create,
		.summary = "Create a profile",
		.usage = "profile create NAME",
		.help = "When standard input is not a terminal, the profile's config, description\n"
			"and devices are read from it as YAML (as 'profile show' prints them):\n"
			"  lxm profile create web < web.yaml\n",
	},
	LXM_CMD_DELETE(profile_delete, "Delete a profile", "profile delete NAME"),
	{
		.name = "device",
		.run = lxm_cli_profile_device,
		.summary = "Manage a profile's devices",
		.usage = "profile device add|get|list|remove|set|show|unset PROFILE ...",
		.help = "  profile device add PROFILE DEVICE TYPE [KEY=VALUE...]\n"
			"  profile device remove PROFILE DEVICE...\n"
			"  profile device set PROFILE DEVICE KEY=VALUE... | set PROFILE DEVICE KEY "
			"VALUE\n"
			"  profile device unset PROFILE DEVICE KEY\n"
			"  profile device get PROFILE DEVICE KEY\n"
			"  profile device list PROFILE | show PROFILE\n",
	},
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
	LXM_CMD_LIST(profile_list, "List profiles", "profile list [flags] [REMOTE:]"),
	LXM_CMD("remove", profile_remove, "Remove a profile from an instance",
		"profile remove INSTANCE PROFILE"),
	LXM_CMD_RENAME(profile_rename, "Rename a profile", "profile rename OLD NEW"),
	LXM_CMD("set", profile_set, "Set profile config keys",
		"profile set NAME KEY=VALUE... | profile set NAME KEY VALUE"),
	LXM_CMD("show", profile_show, "Show a profile as YAML", "profile show NAME"),
	LXM_CMD("unset", profile_unset, "Unset a profile config key", "profile unset NAME KEY"),
	{},
};
