/* lxm storage create|delete|edit|get|info|list|set|show|unset and lxm storage volume
 * attach|create|delete|detach|list|rename|restore|set|show|snapshot|unset. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/commands.h"

/* lxc shows a pool in the order of Go's api.StoragePool fields. */
static const char *const pool_keys[] = {
	"config", "description", "name", "driver", "used_by", "status", "locations", NULL,
};

/* "/1.0/storage-pools/NAME" + suffix (when non-NULL), percent-encoded. */
static int pool_path(const char *name, const char *suffix, char **ret)
{
	_cleanup_free_ char *p = lxm_cli_path("/1.0/storage-pools/", name);

	if (!p || asprintf(ret, "%s%s", p, suffix ? suffix : "") < 0)
		return -ENOMEM;
	return 0;
}

static const struct lxm_cli_config_kind pool_kind = {
	.prefix = "/1.0/storage-pools/",
	.kind = "storage pool",
	.title = "Storage pool",
	.name_args = "a storage pool NAME",
	.key_args = "a storage pool NAME and a KEY",
};

/* PUT /1.0/storage-pools/NAME {"config","description"}, guarded by the ETag of the GET it
 * follows. */
static int put_pool(struct lxm_client *c, const char *name, json_t *config, const char *description,
		    const char *etag, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	body = json_pack("{s:O, s:s}", "config", config, "description",
			 description ? description : "");
	if (!body || pool_path(name, NULL, &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "storage pool '%s': out of memory", name);
	r = lxm_cli_put(c, path, body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "update storage pool '%s'", name);
	return 0;
}

/* The pool as lxc shows it: its fields in lxc's order, config with sorted keys. */
static json_t *pool_view(const json_t *p)
{
	_cleanup_json_ json_t *view = lxm_json_reorder(p, pool_keys);
	json_t *config;

	if (!view)
		return NULL;
	config = json_object_get(view, "config");
	config = json_is_object(config) ? lxm_json_sorted(config) : json_object();
	if (!config || json_object_set_new(view, "config", config) < 0)
		return NULL;
	return TAKE_PTR(view);
}

/* ---- list, show, info ---- */

static int name_cmp(const void *a, const void *b)
{
	const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
	const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));

	return lxm_natural_cmp(x ? x : "", y ? y : "");
}

/* GET path?recursion=1 as an array of objects sorted by name; what names it in errors. */
static int fetch_sorted(struct lxm_client *c, const char *path, const char *what, json_t **ret,
			struct lxm_error **err)
{
	_cleanup_json_ json_t *all = NULL, *out = json_array();
	_cleanup_free_ json_t **v = NULL;
	_cleanup_free_ char *url = NULL;
	size_t n = 0, i;
	json_t *p;
	int r;

	if (asprintf(&url, "%s?recursion=1", path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "list %s: out of memory", what);
	r = lxm_client_request(c, "GET", url, NULL, &all, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "list %s", what);
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502, "list %s: the server sent no list", what);
	v = calloc(json_array_size(all) + 1, sizeof(*v));
	if (!v || !out)
		return lxm_error_set(err, -ENOMEM, 500, "list %s: out of memory", what);
	json_array_foreach (all, i, p)
		if (json_is_object(p))
			v[n++] = p;
	qsort(v, n, sizeof(*v), name_cmp);
	for (i = 0; i < n; i++)
		if (json_array_append(out, v[i]) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "list %s: out of memory", what);
	*ret = TAKE_PTR(out);
	return 0;
}

static int storage_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "NAME",	     "DRIVER",	"SOURCE",
					      "DESCRIPTION", "USED BY", "STATE" };
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *pools = NULL;
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
	if (r >= 0)
		r = fetch_sorted(c, "/1.0/storage-pools", "storage pools", &pools, err);
	if (r < 0)
		return r;
	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (pools, i, p) {
		_cleanup_free_ char *state =
			lxm_cli_upper(json_string_value(json_object_get(p, "status")));
		const char *row[6];
		char used[32];

		snprintf(used, sizeof(used), "%zu", json_array_size(json_object_get(p, "used_by")));
		row[0] = json_string_value(json_object_get(p, "name"));
		row[1] = json_string_value(json_object_get(p, "driver"));
		row[2] = json_string_value(json_object_get(json_object_get(p, "config"), "source"));
		row[3] = json_string_value(json_object_get(p, "description"));
		row[4] = used;
		row[5] = state;
		if (r >= 0)
			r = state ? lxm_table_add_row(t, row) : -ENOMEM;
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	return lxm_cli_print_list(cmd, pools, t, fmt, err);
}

static int storage_show(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *p = NULL, *view = NULL;
	_cleanup_free_ char *what = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 1, 1, "a storage pool NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &pool_kind, argv[1], &p, NULL, err);
	if (r < 0)
		return r;
	view = pool_view(p);
	if (asprintf(&what, "storage pool '%s'", argv[1]) < 0)
		what = NULL;
	return lxm_cli_print_yaml(argv[0], what ? view : NULL, what, err);
}

/* used_by URLs grouped as lxc's "used by" section: {"instances": [names], "profiles": [...]}. */
static json_t *used_by_groups(const json_t *used_by)
{
	_cleanup_json_ json_t *groups = json_object();
	const json_t *u;
	size_t i;

	if (!groups)
		return NULL;
	json_array_foreach (used_by, i, u) {
		const char *url = json_string_value(u), *kind, *name;
		char group[64];
		json_t *list;

		if (!url || !startswith(url, "/1.0/"))
			continue;
		kind = url + 5;
		name = strrchr(kind, '/');
		if (!name || name == kind)
			continue;
		/* "storage-pools/p/volumes/custom/v": the group is the volume type's. */
		if (startswith(kind, "storage-pools/"))
			snprintf(group, sizeof(group), "volumes");
		else
			snprintf(group, sizeof(group), "%.*s", (int)(strchr(kind, '/') - kind),
				 kind);
		list = json_object_get(groups, group);
		if (!list && json_object_set_new(groups, group, list = json_array()) < 0)
			return NULL;
		if (json_array_append_new(list, json_string(name + 1)) < 0)
			return NULL;
	}
	return lxm_json_sorted(groups);
}

static int storage_info(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *p = NULL, *res = NULL, *view = NULL;
	_cleanup_free_ char *path = NULL, *what = NULL;
	char used[32], total[32];
	int r;

	r = lxm_cli_open_target(argc, argv, 1, 1, "a storage pool NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &pool_kind, argv[1], &p, NULL, err);
	if (r < 0)
		return r;
	if (pool_path(argv[1], "/resources", &path) < 0 ||
	    asprintf(&what, "storage pool '%s'", argv[1]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_request(c, "GET", path, NULL, &res, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "storage pool '%s': read its space", argv[1]);
	lxm_format_bytes((uint64_t)json_integer_value(
				 json_object_get(json_object_get(res, "space"), "used")),
			 true, used);
	lxm_format_bytes((uint64_t)json_integer_value(
				 json_object_get(json_object_get(res, "space"), "total")),
			 true, total);
	view = json_pack("{s:{s:s, s:s, s:s, s:s, s:s}, s:o}", "info", "description",
			 json_string_value(json_object_get(p, "description")) ?: "", "driver",
			 json_string_value(json_object_get(p, "driver")) ?: "", "name", argv[1],
			 "space used", used, "total space", total, "used by",
			 used_by_groups(json_object_get(p, "used_by")));
	return lxm_cli_print_yaml(argv[0], view, what, err);
}

/* ---- create, delete ---- */

static int storage_create(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *config = NULL;
	const char *desc;
	int i;

	i = lxm_cli_create_args(argc, argv, 2, "NAME DRIVER [KEY=VALUE...]", &desc, NULL, &config,
				&c, err);
	if (i < 0)
		return i;
	body = json_pack("{s:s, s:s, s:s, s:O}", "name", argv[i], "driver", argv[i + 1],
			 "description", desc, "config", config);
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return lxm_cli_kind_create(c, &pool_kind, argv[i], body, err);
}

static int storage_delete(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_kind_delete(&pool_kind, argc, argv, err);
}

/* ---- set, unset, get ---- */

static int storage_set(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_set(&pool_kind, argc, argv, err);
}

static int storage_unset(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_unset(&pool_kind, argc, argv, err);
}

static int storage_get(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_config_get(&pool_kind, argc, argv, err);
}

/* ---- edit ---- */

static const char edit_header[] =
	"### This is the storage pool as YAML. Lines starting with '#' are ignored.\n"
	"###\n"
	"### Its description and config can be changed, for example:\n"
	"###   config:\n"
	"###     source: /var/lib/lxm/disks/default.img\n"
	"###     size: 10GiB\n"
	"###   description: Where the containers live\n"
	"###\n"
	"### The name, driver, status and used_by are shown for reference; they cannot be changed\n"
	"### here, nor can source and size once the pool exists.\n";

/* The fields of a storage pool document: those shown, of which only config and description change.
 */
static const char *const edit_fields[] = { "config", "description", "name",    "driver", "used_by",
					   "status", "locations",   "managed", NULL };

static int storage_edit(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(lxm_cli_config_edit_done) struct lxm_cli_config_edit e = {
		.kind = "storage pool",
		.fields = edit_fields,
	};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *p = NULL, *view = NULL;
	_cleanup_free_ char *etag = NULL, *what = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 1, 1, "a storage pool NAME", &c, err);
	if (r >= 0)
		r = lxm_cli_kind_get(c, &pool_kind, argv[1], &p, &etag, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "storage pool '%s'", argv[1]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	view = pool_view(p);
	r = lxm_cli_edit_view(argv[0], what, view, edit_header, lxm_cli_check_config_doc, &e, err);
	if (r < 0)
		return r;
	return put_pool(c, argv[1], e.config, e.description, etag, err);
}

/* ---- volumes ---- */

static int volume_list(int argc, char **argv, struct lxm_error **err)
{
	static const char *const header[] = { "TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE",
					      "USED BY" };
	_cleanup_table_ struct lxm_table *t = NULL;
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *vols = NULL;
	_cleanup_free_ char *path = NULL, *what = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	const json_t *v;
	size_t i;
	int r;

	r = lxm_cli_list_args(argc, argv, 1, 1, "a storage pool NAME", &fmt, err);
	if (r >= 0)
		r = lxm_cli_target_name(cmd, &argv[optind], err);
	if (r < 0)
		return r;
	if (pool_path(argv[optind], "/volumes", &path) < 0 ||
	    asprintf(&what, "volumes of storage pool '%s'", argv[optind]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = fetch_sorted(c, path, what, &vols, err);
	if (r < 0)
		return r;
	r = lxm_table_new(&t, ARRAY_SIZE(header), header);
	json_array_foreach (vols, i, v) {
		const char *row[5];
		char used[32];

		snprintf(used, sizeof(used), "%zu", json_array_size(json_object_get(v, "used_by")));
		row[0] = json_string_value(json_object_get(v, "type"));
		row[1] = json_string_value(json_object_get(v, "name"));
		row[2] = json_string_value(json_object_get(v, "description"));
		row[3] = json_string_value(json_object_get(v, "content_type"));
		row[4] = used;
		if (r >= 0)
			r = lxm_table_add_row(t, row);
	}
	if (r < 0)
		return lxm_error_set(err, r, 500, "%s: out of memory", cmd);
	lxm_table_sort(t);
	return lxm_cli_print_list(cmd, vols, t, fmt, err);
}

/* "/1.0/storage-pools/POOL/volumes/custom/VOL" + suffix, percent-encoded. */
static char *volume_path(const char *pool, const char *vol, const char *suffix)
{
	_cleanup_free_ char *p = lxm_cli_path("/1.0/storage-pools/", pool);
	_cleanup_free_ char *v = lxm_cli_path("/volumes/custom/", vol);
	char *ret;

	if (!p || !v || asprintf(&ret, "%s%s%s", p, v, suffix ? suffix : "") < 0)
		return NULL;
	return ret;
}

static int get_volume(struct lxm_client *c, const char *pool, const char *vol, json_t **ret,
		      char **ret_etag, struct lxm_error **err)
{
	_cleanup_free_ char *path = volume_path(pool, vol, NULL), *what = NULL;

	if (!path || asprintf(&what, "storage volume '%s' in pool '%s'", vol, pool) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "storage volume '%s': out of memory", vol);
	return lxm_cli_get_object(c, path, what, "storage volume", ret, ret_etag, err);
}

static int volume_create(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *config = NULL;
	_cleanup_free_ char *path = NULL;
	const char *desc;
	int i, r;

	i = lxm_cli_create_args(argc, argv, 2, "POOL VOLUME [KEY=VALUE...]", &desc, NULL, &config,
				&c, err);
	if (i < 0)
		return i;
	body = json_pack("{s:s, s:s, s:s, s:O}", "name", argv[i + 1], "description", desc,
			 "content_type", "filesystem", "config", config);
	if (!body || pool_path(argv[i], "/volumes/custom", &path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_do(c, "POST", path, body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "create storage volume '%s' in pool '%s'", argv[i + 1],
					argv[i]);
	printf("Storage volume %s created\n", argv[i + 1]);
	return 0;
}

/* A request on a volume (or below it, with suffix) that prints done when it worked. */
static int volume_do(int argc, char **argv, int nargs, const char *expected, const char *method,
		     const char *suffix, const json_t *body, const char *what, const char *done,
		     struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, nargs, nargs, expected, &c, err);
	if (r < 0)
		return r;
	path = volume_path(argv[1], argv[2], suffix);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_do(c, method, path, body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s storage volume '%s' in pool '%s'", what, argv[2],
					argv[1]);
	if (done)
		printf("%s\n", done);
	return 0;
}

static int volume_delete(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_free_ char *done = NULL;

	if (argc == 3 && asprintf(&done, "Storage volume %s deleted", argv[2]) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return volume_do(argc, argv, 2, "POOL VOLUME", "DELETE", NULL, NULL, "delete", done, err);
}

static int volume_rename(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *done = NULL;

	if (argc == 4 &&
	    (!(body = json_pack("{s:s}", "name", argv[3])) ||
	     asprintf(&done, "Renamed storage volume from \"%s\" to \"%s\"", argv[2], argv[3]) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return volume_do(argc, argv, 3, "POOL OLD NEW", "POST", NULL, body, "rename", done, err);
}

static int volume_snapshot(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;

	if (argc < 3 || argc > 4)
		return lxm_cli_nargs(argv[0], argc - 1, 2, 3, "POOL VOLUME [SNAPSHOT]", err);
	body = argc == 4 ? json_pack("{s:s}", "name", argv[3]) : json_object();
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return volume_do(argc, argv, argc - 1, "POOL VOLUME [SNAPSHOT]", "POST", "/snapshots", body,
			 "snapshot", NULL, err);
}

static int volume_restore(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;

	if (argc == 4 && !(body = json_pack("{s:s}", "restore", argv[3])))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	return volume_do(argc, argv, 3, "POOL VOLUME SNAPSHOT", "PUT", NULL, body, "restore", NULL,
			 err);
}

/* The volume as lxc shows it: its fields in lxc's order. */
static const char *const volume_keys[] = {
	"config",   "description",  "name",    "type",	     "used_by",
	"location", "content_type", "project", "created_at", NULL,
};

static int volume_show(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *v = NULL, *view = NULL;
	_cleanup_free_ char *what = NULL;
	int r;

	r = lxm_cli_open_target(argc, argv, 2, 2, "POOL VOLUME", &c, err);
	if (r >= 0)
		r = get_volume(c, argv[1], argv[2], &v, NULL, err);
	if (r < 0)
		return r;
	view = lxm_json_reorder(v, volume_keys);
	if (asprintf(&what, "storage volume '%s'", argv[2]) < 0)
		what = NULL;
	return lxm_cli_print_yaml(argv[0], what ? view : NULL, what, err);
}

/* GET + ETag-guarded PUT of the volume's config: unset (when non-NULL) removed, set merged. */
static int volume_change_config(const char *cmd, const char *pool, const char *vol,
				const json_t *set, const char *unset, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *v = NULL, *config = NULL, *body = NULL;
	_cleanup_free_ char *etag = NULL, *path = NULL, *what = NULL;
	const json_t *desc;
	int r;

	r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = get_volume(c, pool, vol, &v, &etag, err);
	if (r < 0)
		return r;
	if (asprintf(&what, "storage volume '%s'", vol) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_change_config(cmd, what, v, set, unset, &config, err);
	if (r < 0)
		return r;
	desc = json_object_get(v, "description");
	body = json_pack("{s:O, s:s}", "config", config, "description",
			 json_is_string(desc) ? json_string_value(desc) : "");
	path = volume_path(pool, vol, NULL);
	if (!body || !path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_put(c, path, body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "update storage volume '%s' in pool '%s'", vol, pool);
	return 0;
}

static int volume_set(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_json_ json_t *set = NULL;
	const char *cmd = argv[0];
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 3, -1, "POOL VOLUME KEY=VALUE... or POOL VOLUME KEY VALUE",
			  err);
	if (r >= 0)
		r = lxm_cli_target_name(cmd, &argv[1], err);
	if (r >= 0)
		r = lxm_cli_set_args(cmd, argc - 3, argv + 3, &set, err);
	return r < 0 ? r : volume_change_config(cmd, argv[1], argv[2], set, NULL, err);
}

static int volume_unset(int argc, char **argv, struct lxm_error **err)
{
	int r = lxm_cli_nargs(argv[0], argc - 1, 3, 3, "POOL VOLUME KEY", err);

	if (r >= 0)
		r = lxm_cli_target_name(argv[0], &argv[1], err);
	return r < 0 ? r : volume_change_config(argv[0], argv[1], argv[2], NULL, argv[3], err);
}

/* GET /1.0/instances/NAME with its ETag. */
static int get_instance(struct lxm_client *c, const char *instance, json_t **ret, char **ret_etag,
			struct lxm_error **err)
{
	_cleanup_free_ char *path = lxm_cli_path("/1.0/instances/", instance), *what = NULL;

	if (!path || asprintf(&what, "instance '%s'", instance) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "instance '%s': out of memory", instance);
	return lxm_cli_get_object(c, path, what, "instance", ret, ret_etag, err);
}

/* storage volume attach POOL VOLUME INSTANCE [DEVICE] PATH: PATCH adds the one device (PATCH
 * merges devices by name). */
static int volume_attach(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *inst = NULL, *body = NULL;
	_cleanup_free_ char *path = NULL;
	const char *pool, *vol, *instance, *dev, *target;
	int r;

	r = lxm_cli_open_target(argc, argv, 4, 5, "POOL VOLUME INSTANCE [DEVICE] PATH", &c, err);
	if (r < 0)
		return r;
	pool = argv[1];
	vol = argv[2];
	instance = argv[3];
	dev = argc == 6 ? argv[4] : vol;
	target = argv[argc - 1];
	if (target[0] != '/')
		return lxm_error_set(err, -EINVAL, 400,
				     "attach storage volume '%s' to '%s': PATH '%s' must be "
				     "absolute",
				     vol, instance, target);
	r = get_instance(c, instance, &inst, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "attach storage volume '%s'", vol);
	if (json_object_get(json_object_get(inst, "devices"), dev))
		return lxm_error_set(err, -EEXIST, 409,
				     "attach storage volume '%s' to '%s': the instance already "
				     "has a device named '%s'",
				     vol, instance, dev);
	body = json_pack("{s:{s:{s:s, s:s, s:s, s:s}}}", "devices", dev, "type", "disk", "pool",
			 pool, "source", vol, "path", target);
	path = lxm_cli_path("/1.0/instances/", instance);
	if (!body || !path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_client_do(c, "PATCH", path, body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "attach storage volume '%s' to instance '%s'", vol,
					instance);
	return 0;
}

/* storage volume detach POOL VOLUME INSTANCE: removes the instance's own disk devices naming
 * the volume, with a GET and an ETag-guarded PUT of the instance (as lxc does). */
static int volume_detach(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *inst = NULL;
	_cleanup_free_ char *etag = NULL, *path = NULL;
	const char *key;
	json_t *devices, *d, *tmp;
	int r, n = 0;

	r = lxm_cli_open_target(argc, argv, 3, 3, "POOL VOLUME INSTANCE", &c, err);
	if (r < 0)
		return r;
	r = get_instance(c, argv[3], &inst, &etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "detach storage volume '%s'", argv[2]);
	devices = json_object_get(inst, "devices");
	json_object_foreach_safe (devices, tmp, key, d) {
		const char *type = json_string_value(json_object_get(d, "type"));
		const char *pool = json_string_value(json_object_get(d, "pool"));
		const char *src = json_string_value(json_object_get(d, "source"));

		if (type && pool && src && streq(type, "disk") && streq(pool, argv[1]) &&
		    streq(src, argv[2])) {
			json_object_del(devices, key);
			n++;
		}
	}
	if (n == 0)
		return lxm_error_set(err, -ENOENT, 404,
				     "detach storage volume '%s': no device of instance '%s' "
				     "uses it",
				     argv[2], argv[3]);
	path = lxm_cli_path("/1.0/instances/", argv[3]);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", argv[0]);
	r = lxm_cli_put(c, path, inst, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "detach storage volume '%s' from instance '%s'",
					argv[2], argv[3]);
	return 0;
}

static const struct lxm_command volume_commands[] = {
	LXM_CMD("attach", volume_attach, "Attach a custom volume to an instance",
		"storage volume attach POOL VOLUME INSTANCE [DEVICE] PATH"),
	{
		.name = "create",
		.run = volume_create,
		.summary = "Create a custom storage volume",
		.usage = "storage volume create POOL VOLUME [KEY=VALUE...] [flags]",
		.help = "Keys: size=1GiB (a quota; btrfs pools only).\n"
			"\n"
			"Flags:\n"
			"      --description D   Description of the volume\n",
	},
	LXM_CMD_DELETE(volume_delete, "Delete a custom storage volume",
		       "storage volume delete POOL VOLUME"),
	LXM_CMD("detach", volume_detach, "Detach a custom volume from an instance",
		"storage volume detach POOL VOLUME INSTANCE"),
	LXM_CMD_LIST(volume_list, "List the volumes of a storage pool",
		     "storage volume list POOL [flags]"),
	LXM_CMD_RENAME(volume_rename, "Rename a custom storage volume",
		       "storage volume rename POOL OLD NEW"),
	LXM_CMD("restore", volume_restore, "Restore a custom volume from one of its snapshots",
		"storage volume restore POOL VOLUME SNAPSHOT"),
	LXM_CMD("set", volume_set, "Set custom storage volume config keys",
		"storage volume set POOL VOLUME KEY=VALUE..."),
	LXM_CMD("show", volume_show, "Show a custom storage volume as YAML",
		"storage volume show POOL VOLUME"),
	LXM_CMD("snapshot", volume_snapshot, "Snapshot a custom storage volume",
		"storage volume snapshot POOL VOLUME [SNAPSHOT]"),
	LXM_CMD("unset", volume_unset, "Unset a custom storage volume config key",
		"storage volume unset POOL VOLUME KEY"),
	{},
};

static int storage_volume(int argc, char **argv, struct lxm_error **err)
{
	return lxm_cli_dispatch(volume_commands,
				"attach, create, delete, detach, list, rename, restore, set, show, "
				"snapshot or unset",
				argc, argv, err);
}

const struct lxm_command lxm_storage_commands[] = {
	{
		.name = "create",
		.run = storage_create,
		.summary = "Create a storage pool",
		.usage = "storage create NAME DRIVER [KEY=VALUE...] [flags]",
		.help = "DRIVER is dir, btrfs or overlay. A btrfs pool without source= lives on a\n"
			"loop file of size= (default chosen by the server) under the lxmd root.\n"
			"\n"
			"Flags:\n"
			"      --description D   Description of the pool\n",
	},
	LXM_CMD_DELETE(storage_delete, "Delete a storage pool", "storage delete NAME"),
	{
		.name = "edit",
		.run = storage_edit,
		.summary = "Edit a storage pool as YAML",
		.usage = "storage edit NAME",
		.help = "Opens $VISUAL or $EDITOR (default vi) on the pool, or reads the YAML\n"
			"from standard input when it is not a terminal:\n"
			"  lxm storage edit default < pool.yaml\n",
	},
	LXM_CMD("get", storage_get, "Get the value of a storage pool config key",
		"storage get NAME KEY"),
	LXM_CMD("info", storage_info, "Show a storage pool's space and users", "storage info NAME"),
	LXM_CMD_LIST(storage_list, "List storage pools", "storage list [flags] [REMOTE:]"),
	LXM_CMD("set", storage_set, "Set storage pool config keys",
		"storage set NAME KEY=VALUE... | storage set NAME KEY VALUE"),
	LXM_CMD("show", storage_show, "Show a storage pool as YAML", "storage show NAME"),
	LXM_CMD("unset", storage_unset, "Unset a storage pool config key",
		"storage unset NAME KEY"),
	{
		.name = "volume",
		.run = storage_volume,
		.summary = "Manage storage volumes",
		.usage = "storage volume <command>",
		.subcommands = volume_commands,
	},
	{},
};

/* ---- lxm init --auto ---- */

struct auto_args {
	const char *backend; /* --storage-backend, or NULL: btrfs when the server can, else dir */
	const char *loop;    /* --storage-create-loop: GiB of the btrfs loop file, or NULL */
	const char *network; /* --network-name (default lxmbr0), or NULL with --no-network */
};

static int parse_auto(int argc, char **argv, struct auto_args *a, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "auto", no_argument, NULL, 'a' },
		{ "storage-backend", required_argument, NULL, 'b' },
		{ "storage-create-loop", required_argument, NULL, 'l' },
		{ "network-name", required_argument, NULL, 'n' },
		{ "no-network", no_argument, NULL, 'N' },
		{},
	};
	const char *cmd = argv[0];
	bool no_network = false;
	char *end;
	int opt;

	a->network = "lxmbr0";
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'a':
			break;
		case 'b':
			a->backend = optarg;
			break;
		case 'n':
			a->network = optarg;
			break;
		case 'N':
			no_network = true;
			break;
		case 'l':
			if (strtoul(optarg, &end, 10) == 0 || *end)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s: invalid --storage-create-loop '%s': "
						     "expected a size in GiB (a whole number, at "
						     "least 1)",
						     cmd, optarg);
			a->loop = optarg;
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	if (no_network)
		a->network = NULL;
	return lxm_cli_nargs(cmd, argc - optind, 0, 0, "no arguments with --auto", err);
}

/* The driver to use: the one asked for, when the server supports it, else btrfs when it can,
 * else dir. */
static int auto_backend(struct lxm_client *c, const struct auto_args *a, const char **ret,
			struct lxm_error **err)
{
	const json_t *server, *drivers, *drv;
	char names[128] = "";
	bool btrfs = false;
	size_t i;
	int r;

	r = lxm_client_server(c, &server, err);
	if (r < 0)
		return r;
	drivers = json_object_get(json_object_get(server, "environment"),
				  "storage_supported_drivers");
	json_array_foreach (drivers, i, drv) {
		const char *n = json_string_value(json_object_get(drv, "name"));

		if (!n)
			continue;
		if (a->backend && streq(n, a->backend)) {
			*ret = a->backend;
			return 0;
		}
		btrfs |= streq(n, "btrfs");
		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
			 *names ? ", " : "", n);
	}
	if (a->backend)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "init: storage backend '%s' is not available on this server "
				     "(available: %s)",
				     a->backend, *names ? names : "none");
	*ret = btrfs ? "btrfs" : "dir";
	return 0;
}

/* The name of profile's root disk device (type disk, path /), or NULL. */
static const char *root_device(const json_t *profile, const json_t **ret_dev)
{
	const char *name;
	json_t *dev;

	json_object_foreach ((json_t *)json_object_get(profile, "devices"), name, dev) {
		if (streq(json_string_value(json_object_get(dev, "type")) ?: "", "disk") &&
		    streq(json_string_value(json_object_get(dev, "path")) ?: "", "/")) {
			*ret_dev = dev;
			return name;
		}
	}
	return NULL;
}

/* PUTs profile default p, as got with etag, back with dev (a new reference, taken) added as
 * device name; step names the change in errors. */
static int put_default_device(struct lxm_client *c, const json_t *p, const char *etag,
			      const char *name, json_t *dev, const char *step,
			      struct lxm_error **err)
{
	json_t *old_devices = json_object_get(p, "devices"),
	       *old_config = json_object_get(p, "config");
	_cleanup_json_ json_t *devices =
		json_is_object(old_devices) ? json_copy(old_devices) : json_object();
	_cleanup_json_ json_t *config =
		json_is_object(old_config) ? json_incref(old_config) : json_object();
	_cleanup_json_ json_t *body = NULL;
	int r;

	/* json_object_set_new() takes dev even when it fails. */
	if (json_object_set_new(devices, name, dev) < 0 || !config)
		return lxm_error_set(err, -ENOMEM, 500, "init: out of memory");
	body = json_pack("{s:O, s:s, s:O}", "config", config, "description",
			 json_string_value(json_object_get(p, "description")) ?: "", "devices",
			 devices);
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "init: out of memory");
	r = lxm_cli_put(c, "/1.0/profiles/default", body, etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", step);
	return 0;
}

/* Adds {type: disk, path: /, pool: default} as device "root" to profile default, unless a root
 * disk on pool default is there already. Returns 1 when it added it. */
static int auto_root_device(struct lxm_client *c, struct lxm_error **err)
{
	_cleanup_json_ json_t *p = NULL;
	_cleanup_free_ char *etag = NULL;
	const json_t *dev = NULL;
	const char *name;
	int r;

	r = lxm_cli_get_object(c, "/1.0/profiles/default", "profile 'default'", "profile", &p,
			       &etag, err);
	if (r < 0)
		return r;
	name = root_device(p, &dev);
	if (name) {
		const char *pool = json_string_value(json_object_get(dev, "pool"));

		if (pool && streq(pool, "default"))
			return 0;
		return lxm_error_set(
			err, -EEXIST, 409,
			"profile 'default' already has a root disk device '%s' on "
			"storage pool '%s': remove it first (lxm profile edit default)",
			name, pool ? pool : "(none)");
	}
	if (json_object_get(json_object_get(p, "devices"), "root"))
		return lxm_error_set(err, -EEXIST, 409,
				     "profile 'default' already has a device named 'root' that is "
				     "not a root disk: rename or remove it first");
	r = put_default_device(
		c, p, etag, "root",
		json_pack("{s:s, s:s, s:s}", "type", "disk", "path", "/", "pool", "default"),
		"add a root disk device to profile 'default'", err);
	return r < 0 ? r : 1;
}

/* Creates managed network name (IPv4 with NAT on a free subnet, no IPv6) unless it exists, and
 * adds a nic device eth0 on it to profile default unless that has an eth0. */
static int auto_network(struct lxm_client *c, const char *name, struct lxm_error **err)
{
	_cleanup_json_ json_t *net = NULL, *body = NULL, *p = NULL;
	_cleanup_free_ char *path = NULL, *etag = NULL;
	int r;

	path = lxm_cli_path("/1.0/networks/", name);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "init: out of memory");
	r = lxm_client_request(c, "GET", path, NULL, &net, NULL, err);
	if (r == -ENOENT) {
		lxm_error_free(TAKE_PTR(*err));
		body = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s}}", "name", name, "type",
				 "bridge", "description", "", "config", "ipv4.address", "auto",
				 "ipv4.nat", "true", "ipv6.address", "none");
		if (!body)
			return lxm_error_set(err, -ENOMEM, 500, "init: out of memory");
		r = lxm_client_do(c, "POST", "/1.0/networks", body, NULL, err);
		if (r < 0)
			return lxm_error_prefix(err, "init: create network '%s'", name);
		printf("Network %s created\n", name);
	} else if (r < 0) {
		return lxm_error_prefix(err, "init: network '%s'", name);
	}
	r = lxm_cli_get_object(c, "/1.0/profiles/default", "profile 'default'", "profile", &p,
			       &etag, err);
	if (r < 0)
		return lxm_error_prefix(err, "init");
	if (json_object_get(json_object_get(p, "devices"), "eth0")) {
		printf("Profile default: it has a device eth0 already\n");
		return 0;
	}
	r = put_default_device(
		c, p, etag, "eth0",
		json_pack("{s:s, s:s, s:s}", "type", "nic", "network", name, "name", "eth0"),
		"init: add a nic device eth0 to profile 'default'", err);
	if (r < 0)
		return r;
	printf("Profile default: nic device 'eth0' added on network %s\n", name);
	return 0;
}

int lxm_storage_init_auto(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *pool = NULL;
	struct lxm_error *undo = NULL;
	struct auto_args a = {};
	const char *driver = NULL;
	int r;

	r = parse_auto(argc, argv, &a, err);
	if (r >= 0)
		r = lxm_cli_connect(&c, err);
	if (r >= 0)
		r = auto_backend(c, &a, &driver, err);
	if (r < 0)
		return r;
	if (a.loop && !streq(driver, "btrfs"))
		return lxm_error_set(err, -EINVAL, 400,
				     "init: --storage-create-loop makes the loop file of a btrfs "
				     "pool; the %s backend has none",
				     driver);
	r = lxm_client_request(c, "GET", "/1.0/storage-pools/default", NULL, &pool, NULL, err);
	if (r >= 0)
		return lxm_error_set(
			err, -EEXIST, 409,
			"init: storage pool 'default' already exists (%s): this server "
			"is set up already",
			json_string_value(json_object_get(pool, "driver")) ?: "?");
	if (r != -ENOENT)
		return lxm_error_prefix(err, "init");
	lxm_error_free(TAKE_PTR(*err));

	body = json_pack("{s:s, s:s, s:s, s:{}}", "name", "default", "driver", driver,
			 "description", "", "config");
	if (body && a.loop) {
		char size[32];

		snprintf(size, sizeof(size), "%sGiB", a.loop);
		json_object_set_new(json_object_get(body, "config"), "size", json_string(size));
	}
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "init: out of memory");
	/* Refuse before creating anything when the profile cannot take the root device. */
	json_decref(TAKE_PTR(pool));
	r = lxm_cli_get_object(c, "/1.0/profiles/default", "profile 'default'", "profile", &pool,
			       NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "init");
	{
		const json_t *dev = NULL;
		const char *name = root_device(pool, &dev);
		const char *on = name ? json_string_value(json_object_get(dev, "pool")) : NULL;

		if (name && !(on && streq(on, "default")))
			return lxm_error_set(err, -EEXIST, 409,
					     "init: profile 'default' already has a root disk "
					     "device '%s' on storage pool '%s': remove it first "
					     "(lxm profile edit default)",
					     name, on ? on : "(none)");
	}
	r = lxm_client_do(c, "POST", "/1.0/storage-pools", body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "init: create storage pool 'default' (%s)", driver);
	printf("Storage pool default created (driver %s%s%s%s)\n", driver,
	       a.loop ? ", loop file of " : "", a.loop ? a.loop : "", a.loop ? "GiB" : "");
	r = auto_root_device(c, err);
	if (r < 0) {
		/* Leave the server as it was. */
		if (lxm_client_do(c, "DELETE", "/1.0/storage-pools/default", NULL, NULL, &undo) < 0)
			lxm_error_prefix(
				err,
				"init (storage pool 'default' was created and could not be "
				"removed again: %s)",
				undo && undo->msg ? undo->msg : "unknown error");
		else
			lxm_error_prefix(err, "init");
		lxm_error_free(undo);
		return r;
	}
	if (r > 0)
		printf("Profile default: root disk device 'root' added on storage pool default\n");
	else
		printf("Profile default: its root disk device already uses storage pool default\n");
	return a.network ? auto_network(c, a.network, err) : 0;
}
