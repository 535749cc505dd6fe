/* lxm image list|info|show|edit|delete|alias|import|export|copy|build and lxm publish. IMAGE is
 * [REMOTE:]ALIAS or [REMOTE:]FINGERPRINT-PREFIX; aliases win, as in lxc. Image files are
 * streamed both ways (never whole in memory); progress is shown when stdout is a terminal. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lib/yaml.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"

#define FP_LEN 64

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free)

/* ---- small helpers ---- */

static bool is_hex(const char *s)
{
	if (!*s || strlen(s) > FP_LEN)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s) && !(*s >= 'a' && *s <= 'f'))
			return false;
	return true;
}

/* Alias names: what the API accepts, minus ':' (it separates a remote from the name). */
static const char *alias_invalid_reason(const char *name)
{
	if (!*name)
		return "an alias must not be empty";
	if (strlen(name) > 255)
		return "an alias is at most 255 characters long";
	if (strchr(name, ':'))
		return "an alias must not contain ':' (it separates a remote from the name)";
	if (name[0] == '/' || name[strlen(name) - 1] == '/')
		return "an alias must not start or end with '/'";
	if (streq(name, ".") || streq(name, ".."))
		return "an alias must not be '.' or '..'";
	for (const char *s = name; *s; s++)
		if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
			return "an alias must not contain whitespace or control characters";
	return NULL;
}

static int check_alias(const char *cmd, const char *name, struct lxm_error **err)
{
	const char *reason = alias_invalid_reason(name);

	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "%s: invalid alias '%s': %s", cmd, name,
				     reason);
	return 0;
}

/* prefix + name, percent-encoded: "/1.0/images/aliases/" + "debian/12". */
static char *path_of(const char *prefix, const char *name)
{
	_cleanup_free_ char *e = lxm_url_escape(name);
	char *p;

	if (!e || asprintf(&p, "%s%s", prefix, e) < 0)
		return NULL;
	return p;
}

static char *hex_digest(const unsigned char *md, unsigned int len)
{
	char *s = malloc(2 * len + 1);

	for (unsigned int i = 0; s && i < len; i++)
		sprintf(s + 2 * i, "%02x", md[i]);
	return s;
}

/* lxc's SIZE column: always MiB with two decimals. */
static void size_mib(json_int_t size, char buf[static 32])
{
	snprintf(buf, 32, "%.2fMiB", (double)size / 1024.0 / 1024.0);
}

/* lxc's UPLOAD DATE: "May 1, 2024 at 10:00am (UTC)". Empty for no or Go's zero time. */
static void upload_date(const char *rfc3339, char buf[static 64])
{
	struct tm tm = {};
	const char *rest;
	time_t t;

	buf[0] = '\0';
	if (!rfc3339 || !(rest = strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm)) ||
	    tm.tm_year + 1900 <= 1)
		return;
	t = timegm(&tm);
	if (*rest == '.')
		for (rest++; isdigit((unsigned char)*rest); rest++)
			;
	if (*rest == '+' || *rest == '-') {
		int h = 0, m = 0;

		if (sscanf(rest + 1, "%2d:%2d", &h, &m) == 2)
			t -= (*rest == '-' ? -1 : 1) * (h * 3600 + m * 60);
	}
	gmtime_r(&t, &tm);
	strftime(buf, 64, "%b %-d, %Y at %-I:%M%P (UTC)", &tm);
}

/* ---- progress on a terminal ---- */

struct progress {
	const char *label; /* "Uploading image" */
	uint64_t done;	   /* bytes so far */
	uint64_t total;	   /* bytes expected, 0 when unknown */
	uint64_t last_ms;  /* when it was last drawn */
	bool tty;	   /* stdout is a terminal: draw */
	bool shown;	   /* something was drawn (to erase) */
};

static void progress_init(struct progress *p, const char *label, uint64_t total)
{
	*p = (struct progress){ .label = label, .total = total, .tty = isatty(STDOUT_FILENO) };
}

static void progress_add(struct progress *p, size_t n)
{
	char done[32], total[32];
	uint64_t now;

	p->done += n;
	if (!p->tty)
		return;
	now = lxm_monotonic_ms();
	if (p->shown && now - p->last_ms < 200)
		return;
	p->last_ms = now;
	p->shown = true;
	lxm_format_bytes(p->done, true, done);
	if (p->total)
		printf("\r%s: %s of %s (%d%%)\033[K", p->label, done,
		       lxm_format_bytes(p->total, true, total),
		       (int)(p->done * 100 / (p->total ? p->total : 1)));
	else
		printf("\r%s: %s\033[K", p->label, done);
	fflush(stdout);
}

static void progress_end(struct progress *p)
{
	if (p->shown) {
		printf("\r\033[K");
		fflush(stdout);
		p->shown = false;
	}
}

/* ---- remotes and images ---- */

/* An argument [REMOTE:]NAME with its remote's client. */
struct target {
	struct lxm_remotes *rs;		 /* the remotes, loaded */
	const struct lxm_remote *remote; /* the argument's remote, in rs */
	char *name;			 /* what follows the ':' */
	struct lxm_client *c;		 /* connected (lxd remotes) */
};

static void target_done(struct target *t)
{
	lxm_client_free(t->c);
	free(t->name);
	lxm_remotes_free(t->rs);
	*t = (struct target){};
}

/* Splits arg and connects to its remote (an lxd one: the commands that accept a simplestreams
 * remote look at t->remote before connecting). */
static int target_open(const char *arg, bool connect, struct target *t, struct lxm_error **err)
{
	int r;

	if (!t->rs) {
		r = lxm_remotes_load(&t->rs, err);
		if (r < 0)
			return r;
	}
	r = lxm_remotes_split(t->rs, arg, &t->remote, &t->name, err);
	if (r < 0 || !connect)
		return r;
	return lxm_remote_connect(t->remote, &t->c, err);
}

/* The full fingerprint IMAGE names on a remote: an alias, else a unique fingerprint prefix. */
static int resolve_image(struct lxm_client *c, const char *remote, const char *name, char **ret_fp,
			 struct lxm_error **err)
{
	_cleanup_error_ struct lxm_error *e = NULL;
	_cleanup_json_ json_t *alias = NULL, *list = NULL;
	_cleanup_free_ char *path = NULL, *found = NULL;
	const char *target;
	json_t *v;
	size_t i;
	int r;

	if (!*name)
		return lxm_error_set(err, -EINVAL, 400, "no image named after '%s:'", remote);
	path = path_of("/1.0/images/aliases/", name);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "GET", path, NULL, &alias, NULL, &e);
	if (r >= 0) {
		target = json_string_value(json_object_get(alias, "target"));
		if (!target || !*target)
			return lxm_error_set(err, -EPROTO, 502,
					     "image '%s' on remote '%s': the alias has no target",
					     name, remote);
		*ret_fp = strdup(target);
		return *ret_fp ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	if (r != -ENOENT) {
		*err = TAKE_PTR(e);
		return lxm_error_prefix(err, "image '%s' on remote '%s'", name, remote);
	}
	if (is_hex(name)) {
		r = lxm_client_request(c, "GET", "/1.0/images", NULL, &list, NULL, err);
		if (r < 0)
			return lxm_error_prefix(err, "image '%s' on remote '%s'", name, remote);
		json_array_foreach (list, i, v) {
			const char *url = json_string_value(v), *fp;

			if (!url)
				url = json_string_value(json_object_get(v, "fingerprint"));
			fp = url && strrchr(url, '/') ? strrchr(url, '/') + 1 : url;
			if (!fp || !startswith(fp, name))
				continue;
			if (found)
				return lxm_error_set(err, -EINVAL, 400,
						     "image '%s' on remote '%s': the fingerprint "
						     "prefix is ambiguous (%.12s, %.12s, ...)",
						     name, remote, found, fp);
			found = strdup(fp);
			if (!found)
				return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		}
		if (found) {
			*ret_fp = TAKE_PTR(found);
			return 0;
		}
	}
	return lxm_error_set(err, -ENOENT, 404, "image '%s': not found on remote '%s'", name,
			     remote);
}

/* GET /1.0/images/<fp>, with the ETag for a following PUT. */
static int get_image(struct lxm_client *c, const char *remote, const char *fp, json_t **ret,
		     char **ret_etag, struct lxm_error **err)
{
	struct lxm_client_response resp = {};
	_cleanup_free_ char *path = path_of("/1.0/images/", fp);
	json_t *img = NULL;
	int r;

	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "GET", path, NULL, &img, &resp, err);
	if (r < 0) {
		lxm_client_response_done(&resp);
		if (r == -ENOENT) {
			lxm_error_free(*err);
			*err = NULL;
			return lxm_error_set(err, r, 404, "image '%.12s': not found on remote '%s'",
					     fp, remote);
		}
		return lxm_error_prefix(err, "image '%.12s' on remote '%s'", fp, remote);
	}
	if (!json_is_object(img)) {
		json_decref(img);
		lxm_client_response_done(&resp);
		return lxm_error_set(err, -EPROTO, 502, "image '%.12s': the server sent no image",
				     fp);
	}
	*ret = img;
	if (ret_etag)
		*ret_etag = TAKE_PTR(resp.etag);
	lxm_client_response_done(&resp);
	return 0;
}

/* Opens IMAGE: its remote's client, its fingerprint and (when ret_img) the Image object. */
static int open_image(const char *arg, struct target *t, char **ret_fp, json_t **ret_img,
		      char **ret_etag, struct lxm_error **err)
{
	_cleanup_free_ char *fp = NULL;
	int r;

	r = target_open(arg, true, t, err);
	if (r < 0)
		return r;
	r = resolve_image(t->c, t->remote->name, t->name, &fp, err);
	if (r < 0)
		return r;
	if (ret_img) {
		r = get_image(t->c, t->remote->name, fp, ret_img, ret_etag, err);
		if (r < 0)
			return r;
	}
	*ret_fp = TAKE_PTR(fp);
	return 0;
}

/* Creates alias name -> fp on c, or moves it there when it exists (as lxc does on import). */
static int set_alias(struct lxm_client *c, const char *name, const char *description,
		     const char *fp, struct lxm_error **err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	body = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "description",
			 description ? description : "", "target", fp, "type", "");
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "POST", "/1.0/images/aliases", body, NULL, NULL, err);
	if (r != -EEXIST)
		return r < 0 ? lxm_error_prefix(err, "alias '%s'", name) : 0;
	lxm_error_free(*err);
	*err = NULL;
	json_object_del(body, "name");
	path = path_of("/1.0/images/aliases/", name);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "PUT", path, body, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "alias '%s'", name);
	return 0;
}

/* ---- list ---- */

static const char *shortest_alias(const json_t *img, char buf[static 320])
{
	const json_t *aliases = json_object_get(img, "aliases"), *a;
	const char *best = NULL;
	size_t i;

	json_array_foreach (aliases, i, a) {
		const char *n = json_string_value(json_object_get(a, "name"));

		if (n && (!best || strlen(n) < strlen(best)))
			best = n;
	}
	if (!best)
		return "";
	if (json_array_size(aliases) > 1)
		snprintf(buf, 320, "%.255s (%zu more)", best, json_array_size(aliases) - 1);
	else
		snprintf(buf, 320, "%s", best);
	return buf;
}

/* A FILTER: KEY=VALUE on the image's properties, else a fingerprint prefix or a part of an
 * alias. */
static bool image_matches(const json_t *img, char **filters, int n)
{
	for (int i = 0; i < n; i++) {
		const char *f = filters[i], *eq = strchr(f, '='), *fp;
		const json_t *a;
		bool hit = false;
		size_t k;

		if (eq) {
			_cleanup_free_ char *key = strndup(f, (size_t)(eq - f));
			const char *v = json_string_value(json_object_get(
				json_object_get(img, "properties"), key ? key : ""));

			if (!v || !streq(v, eq + 1))
				return false;
			continue;
		}
		fp = json_string_value(json_object_get(img, "fingerprint"));
		hit = fp && startswith(fp, f);
		json_array_foreach (json_object_get(img, "aliases"), k, a) {
			const char *name = json_string_value(json_object_get(a, "name"));

			hit |= name && strstr(name, f);
		}
		if (!hit)
			return false;
	}
	return true;
}

/* GET /1.0/images?recursion=1; a server that sends URLs gets them fetched one by one. */
static int fetch_images(struct lxm_client *c, const char *remote, json_t **ret,
			struct lxm_error **err)
{
	_cleanup_json_ json_t *all = NULL;
	json_t *v;
	size_t i;
	int r;

	r = lxm_client_request(c, "GET", "/1.0/images?recursion=1", NULL, &all, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "list images on remote '%s'", remote);
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502,
				     "list images on remote '%s': the server sent no list", remote);
	json_array_foreach (all, i, v) {
		if (json_is_string(v)) {
			const char *slash = strrchr(json_string_value(v), '/');
			json_t *img = NULL;

			r = get_image(c, remote, slash ? slash + 1 : json_string_value(v), &img,
				      NULL, err);
			if (r < 0)
				return r;
			json_array_set_new(all, i, img);
		}
	}
	*ret = TAKE_PTR(all);
	return 0;
}

static int image_list(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "format", required_argument, NULL, 'f' },
		{},
	};
	static const char *const header[] = { "ALIAS",	     "FINGERPRINT",  "PUBLIC",
					      "DESCRIPTION", "ARCHITECTURE", "TYPE",
					      "SIZE",	     "UPLOAD DATE" };
	_cleanup_(target_done) struct target t = {};
	_cleanup_table_ struct lxm_table *tab = NULL;
	_cleanup_json_ json_t *images = NULL, *shown = json_array();
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	char **filters;
	int opt, r, nf;
	json_t *img;
	size_t i;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:", options, NULL)) != -1) {
		if (opt != 'f')
			return lxm_cli_flag_error(cmd, argv, opt, err);
		r = lxm_cli_parse_format(cmd, optarg, &fmt, err);
		if (r < 0)
			return r;
	}
	filters = argv + optind;
	nf = argc - optind;
	/* "lxm image list other:" lists another remote's images. */
	if (nf > 0 && strchr(filters[0], ':')) {
		r = target_open(filters[0], false, &t, err);
		if (r < 0)
			return lxm_error_prefix(err, "%s", cmd);
		filters++;
		nf--;
		if (*t.name) {
			filters--;
			nf++;
			filters[0] = t.name;
		}
	} else {
		r = target_open("local:", false, &t, err);
		if (r < 0)
			return r;
	}
	if (t.remote->protocol == LXM_REMOTE_SIMPLESTREAMS)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "%s: remote '%s' is a simplestreams server: listing its "
				     "images is not supported yet (launch or copy them by alias)",
				     cmd, t.remote->name);
	r = lxm_remote_connect(t.remote, &t.c, err);
	if (r < 0)
		return r;
	r = fetch_images(t.c, t.remote->name, &images, err);
	if (r < 0)
		return r;
	r = shown ? lxm_table_new(&tab, ARRAY_SIZE(header), header) : -ENOMEM;
	json_array_foreach (images, i, img) {
		char alias[320], size[32], date[64], fp[13];
		_cleanup_free_ char *type = NULL;
		const char *row[8];

		if (r < 0 || !image_matches(img, filters, nf))
			continue;
		snprintf(fp, sizeof(fp), "%s",
			 json_string_value(json_object_get(img, "fingerprint")) ?: "");
		size_mib(json_integer_value(json_object_get(img, "size")), size);
		upload_date(json_string_value(json_object_get(img, "uploaded_at")), date);
		type = lxm_cli_upper(json_string_value(json_object_get(img, "type"))
					     ?: "container");
		row[0] = shortest_alias(img, alias);
		row[1] = fp;
		row[2] = json_is_true(json_object_get(img, "public")) ? "yes" : "no";
		row[3] = json_string_value(
			json_object_get(json_object_get(img, "properties"), "description"));
		row[4] = json_string_value(json_object_get(img, "architecture"));
		row[5] = type;
		row[6] = size;
		row[7] = date;
		r = type ? lxm_table_add_row(tab, row) : -ENOMEM;
		if (r >= 0)
			r = json_array_append(shown, img);
	}
	if (r < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	lxm_table_sort(tab);
	return lxm_cli_print_list(cmd, shown, tab, fmt, err);
}

/* ---- info, show, edit, delete ---- */

static void print_time(const char *label, const json_t *img, const char *key)
{
	char buf[64];

	if (lxm_format_time(json_string_value(json_object_get(img, key)), false, buf) < 0)
		snprintf(buf, sizeof(buf), "never");
	printf("    %s: %s\n", label, buf);
}

static int image_info(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *img = NULL, *props = NULL;
	_cleanup_free_ char *fp = NULL;
	const char *cmd = argv[0], *k;
	const json_t *a, *v;
	char size[32];
	size_t i;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 1, "an IMAGE", err);
	if (r < 0)
		return r;
	r = open_image(argv[1], &t, &fp, &img, NULL, err);
	if (r < 0)
		return r;
	size_mib(json_integer_value(json_object_get(img, "size")), size);
	printf("Fingerprint: %s\n", json_string_value(json_object_get(img, "fingerprint")) ?: fp);
	printf("Size: %s\n", size);
	printf("Architecture: %s\n", json_string_value(json_object_get(img, "architecture")) ?: "");
	printf("Type: %s\n", json_string_value(json_object_get(img, "type")) ?: "container");
	printf("Public: %s\n", json_is_true(json_object_get(img, "public")) ? "yes" : "no");
	printf("Timestamps:\n");
	print_time("Created", img, "created_at");
	print_time("Uploaded", img, "uploaded_at");
	print_time("Expires", img, "expires_at");
	print_time("Last used", img, "last_used_at");
	printf("Properties:\n");
	props = lxm_json_sorted(json_object_get(img, "properties") ?: json_object());
	json_object_foreach (props, k, v)
		printf("    %s: %s\n", k, json_string_value(v) ?: "");
	printf("Aliases:\n");
	json_array_foreach (json_object_get(img, "aliases"), i, a) {
		const char *d = json_string_value(json_object_get(a, "description"));

		printf("    - %s%s%s%s\n", json_string_value(json_object_get(a, "name")) ?: "",
		       d && *d ? " (" : "", d && *d ? d : "", d && *d ? ")" : "");
	}
	printf("Cached: %s\n", json_is_true(json_object_get(img, "cached")) ? "yes" : "no");
	printf("Auto update: %s\n",
	       json_is_true(json_object_get(img, "auto_update")) ? "enabled" : "disabled");
	if (json_array_size(json_object_get(img, "profiles"))) {
		printf("Profiles:\n");
		json_array_foreach (json_object_get(img, "profiles"), i, a)
			printf("    - %s\n", json_string_value(a) ?: "");
	}
	return 0;
}

/* The editable fields (LXD's ImagePut), in its order. */
static const char *const editable_keys[] = {
	"auto_update", "properties", "public", "expires_at", "profiles", NULL,
};

/* Read-only fields of an Image: accepted in an edited document (a full `GET` fed back) and
 * ignored. */
static const char *const readonly_keys[] = {
	"aliases",     "architecture", "cached",      "created_at", "filename",
	"fingerprint", "last_used_at", "size",	      "type",	    "update_source",
	"uploaded_at", "project",      "description", NULL,
};

static bool in_list(const char *const *list, const char *key)
{
	for (; *list; list++)
		if (streq(*list, key))
			return true;
	return false;
}

static json_t *editable_view(const json_t *img)
{
	_cleanup_json_ json_t *view = json_object();

	if (!view)
		return NULL;
	for (const char *const *k = editable_keys; *k; k++) {
		json_t *v = json_object_get(img, *k);

		if (!v)
			continue;
		v = streq(*k, "properties") ? lxm_json_sorted(v) : json_incref(v);
		if (!v || json_object_set_new(view, *k, v) < 0)
			return NULL;
	}
	return TAKE_PTR(view);
}

static int image_show(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *img = NULL, *view = NULL;
	_cleanup_free_ char *fp = NULL, *out = NULL;
	const char *cmd = argv[0];
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 1, "an IMAGE", err);
	if (r < 0)
		return r;
	r = open_image(argv[1], &t, &fp, &img, NULL, err);
	if (r < 0)
		return r;
	view = editable_view(img);
	if (!view || lxm_yaml_from_json(view, &out) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: render image '%s'", cmd, argv[1]);
	return lxm_cli_print(cmd, out, err);
}

static const char edit_header[] =
	"### This is the image's editable part as YAML. Lines starting with '#' are ignored.\n"
	"###\n"
	"### For example:\n"
	"###   auto_update: false\n"
	"###   properties:\n"
	"###     description: Debian 12 with nginx\n"
	"###     os: debian\n"
	"###   public: false\n"
	"###\n"
	"### Aliases are changed with 'lxm image alias'.\n";

static int check_image_doc(const json_t *doc, void *userdata, struct lxm_error **err)
{
	json_t **put = userdata, *v;
	const char *key;
	size_t i;

	json_decref(*put);
	*put = NULL;
	if (!json_is_object(doc))
		return lxm_error_set(err, -EINVAL, 400,
				     json_is_null(doc)
					     ? "the document is empty; nothing was changed"
					     : "the document must be a map of image fields");
	json_object_foreach ((json_t *)doc, key, v) {
		if (in_list(readonly_keys, key))
			continue;
		if (!in_list(editable_keys, key))
			return lxm_error_set(err, -EINVAL, 400,
					     "unknown field '%s' (an image has auto_update, "
					     "properties, public, expires_at and profiles)",
					     key);
		if ((streq(key, "auto_update") || streq(key, "public")) && !json_is_boolean(v))
			return lxm_error_set(err, -EINVAL, 400, "%s must be true or false", key);
		if (streq(key, "expires_at") && !json_is_string(v) && !json_is_null(v))
			return lxm_error_set(err, -EINVAL, 400, "expires_at must be a timestamp");
		if (streq(key, "profiles")) {
			json_t *p;

			if (!json_is_array(v) && !json_is_null(v))
				return lxm_error_set(err, -EINVAL, 400,
						     "profiles must be a list of names");
			json_array_foreach (v, i, p)
				if (!json_is_string(p))
					return lxm_error_set(err, -EINVAL, 400,
							     "profiles must be a list of names");
		}
	}
	*put = json_object();
	if (!*put)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (const char *const *k = editable_keys; *k; k++) {
		json_t *val = json_object_get(doc, *k);
		int r = 0;

		if (streq(*k, "properties"))
			r = lxm_cli_string_map(val, "properties", &val, err);
		else if (val)
			json_incref(val);
		if (r < 0)
			return r;
		if (val && json_object_set_new(*put, *k, val) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	return 0;
}

static int image_edit(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *img = NULL, *view = NULL, *doc = NULL, *put = NULL;
	_cleanup_free_ char *fp = NULL, *etag = NULL, *text = NULL, *path = NULL;
	struct lxm_client_response resp = {};
	const char *cmd = argv[0];
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 1, "an IMAGE", err);
	if (r < 0)
		return r;
	r = open_image(argv[1], &t, &fp, &img, &etag, err);
	if (r < 0)
		return r;
	view = editable_view(img);
	if (!view || lxm_yaml_from_json(view, &text) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: render image '%s'", cmd, argv[1]);
	r = lxm_cli_edit_yaml(edit_header, text, check_image_doc, &put, &doc, err);
	if (r < 0)
		return lxm_error_prefix(err, "edit image '%s'", argv[1]);
	path = path_of("/1.0/images/", fp);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	/* The ETag of the GET guards the PUT: a concurrent change fails instead of being lost. */
	resp.if_match = etag;
	r = lxm_client_request(t.c, "PUT", path, put, NULL, &resp, err);
	if (r >= 0 && resp.operation)
		r = lxm_client_wait_operation(t.c, resp.operation, NULL, err);
	lxm_client_response_done(&resp);
	if (r < 0)
		return lxm_error_prefix(err, "edit image '%s'", argv[1]);
	return 0;
}

static int image_delete(int argc, char **argv, struct lxm_error **err)
{
	const char *cmd = argv[0];
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, -1, "at least one IMAGE", err);
	if (r < 0)
		return r;
	for (int i = 1; i < argc; i++) {
		_cleanup_(target_done) struct target t = {};
		_cleanup_free_ char *fp = NULL, *path = NULL;

		r = open_image(argv[i], &t, &fp, NULL, NULL, err);
		if (r < 0)
			return lxm_error_prefix(err, "delete image '%s'", argv[i]);
		path = path_of("/1.0/images/", fp);
		if (!path)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
		r = lxm_client_do(t.c, "DELETE", path, NULL, NULL, err);
		if (r < 0)
			return lxm_error_prefix(err, "delete image '%s'", argv[i]);
	}
	return 0;
}

/* ---- aliases ---- */

static int alias_create(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "description", required_argument, NULL, 'd' },
		{},
	};
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *fp = NULL, *tname = NULL;
	const char *cmd = argv[0], *desc = "";
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		if (opt != 'd')
			return lxm_cli_flag_error(cmd, argv, opt, err);
		desc = optarg;
	}
	r = lxm_cli_nargs(cmd, argc - optind, 2, 2, "[REMOTE:]ALIAS and a FINGERPRINT", err);
	if (r < 0)
		return r;
	r = target_open(argv[optind], true, &t, err);
	if (r < 0)
		return r;
	r = check_alias(cmd, t.name, err);
	if (r < 0)
		return r;
	r = resolve_image(t.c, t.remote->name, argv[optind + 1], &fp, err);
	if (r < 0)
		return lxm_error_prefix(err, "create alias '%s'", t.name);
	body = json_pack("{s:s, s:s, s:s, s:s}", "name", t.name, "description", desc, "target", fp,
			 "type", "");
	if (!body)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_request(t.c, "POST", "/1.0/images/aliases", body, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "create alias '%s'", t.name);
	return 0;
}

static int alias_delete(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_free_ char *path = NULL;
	const char *cmd = argv[0];
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 1, 1, "an ALIAS", err);
	if (r < 0)
		return r;
	r = target_open(argv[1], true, &t, err);
	if (r < 0)
		return r;
	path = path_of("/1.0/images/aliases/", t.name);
	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_do(t.c, "DELETE", path, NULL, NULL, err);
	if (r == -ENOENT) {
		lxm_error_free(*err);
		*err = NULL;
		return lxm_error_set(err, r, 404, "delete alias '%s': not found on remote '%s'",
				     t.name, t.remote->name);
	}
	if (r < 0)
		return lxm_error_prefix(err, "delete alias '%s'", t.name);
	return 0;
}

static int alias_rename(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *path = NULL;
	const char *cmd = argv[0], *to;
	int r;

	r = lxm_cli_nargs(cmd, argc - 1, 2, 2, "OLD and NEW alias names", err);
	if (r < 0)
		return r;
	r = target_open(argv[1], true, &t, err);
	if (r < 0)
		return r;
	/* NEW may repeat the remote ("other:a other:b"), but not name another one. */
	to = argv[2];
	if (strchr(to, ':') && startswith(to, t.remote->name) && to[strlen(t.remote->name)] == ':')
		to += strlen(t.remote->name) + 1;
	r = check_alias(cmd, to, err);
	if (r < 0)
		return r;
	body = json_pack("{s:s}", "name", to);
	path = path_of("/1.0/images/aliases/", t.name);
	if (!body || !path)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_do(t.c, "POST", path, body, NULL, err);
	if (r == -ENOENT) {
		lxm_error_free(*err);
		*err = NULL;
		return lxm_error_set(err, r, 404, "rename alias '%s': not found on remote '%s'",
				     t.name, t.remote->name);
	}
	if (r < 0)
		return lxm_error_prefix(err, "rename alias '%s' to '%s'", t.name, to);
	return 0;
}

static int alias_list(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "format", required_argument, NULL, 'f' },
		{},
	};
	static const char *const header[] = { "ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION" };
	_cleanup_(target_done) struct target t = {};
	_cleanup_table_ struct lxm_table *tab = NULL;
	_cleanup_json_ json_t *all = NULL;
	enum lxm_format fmt = LXM_FORMAT_TABLE;
	const char *cmd = argv[0];
	int opt, r;
	json_t *a;
	size_t i;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:", options, NULL)) != -1) {
		if (opt != 'f')
			return lxm_cli_flag_error(cmd, argv, opt, err);
		r = lxm_cli_parse_format(cmd, optarg, &fmt, err);
		if (r < 0)
			return r;
	}
	r = lxm_cli_nargs(cmd, argc - optind, 0, 1, "at most a REMOTE:", err);
	if (r < 0)
		return r;
	r = target_open(argc > optind ? argv[optind] : "local:", true, &t, err);
	if (r < 0)
		return r;
	r = lxm_client_request(t.c, "GET", "/1.0/images/aliases?recursion=1", NULL, &all, NULL,
			       err);
	if (r < 0)
		return lxm_error_prefix(err, "list aliases on remote '%s'", t.remote->name);
	if (!json_is_array(all))
		return lxm_error_set(err, -EPROTO, 502, "list aliases: the server sent no list");
	r = lxm_table_new(&tab, ARRAY_SIZE(header), header);
	json_array_foreach (all, i, a) {
		_cleanup_free_ char *type = NULL;
		const char *row[4];
		char fp[13];

		snprintf(fp, sizeof(fp), "%s",
			 json_string_value(json_object_get(a, "target")) ?: "");
		type = lxm_cli_upper(json_string_value(json_object_get(a, "type")) ?: "");
		row[0] = json_string_value(json_object_get(a, "name")) ?: json_string_value(a);
		row[1] = fp;
		row[2] = type;
		row[3] = json_string_value(json_object_get(a, "description"));
		if (r >= 0)
			r = type ? lxm_table_add_row(tab, row) : -ENOMEM;
	}
	if (r < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	lxm_table_sort(tab);
	return lxm_cli_print_list(cmd, all, tab, fmt, err);
}

const struct lxm_command lxm_image_alias_commands[] = {
	{
		.name = "create",
		.alias = "add",
		.run = alias_create,
		.summary = "Create an alias of an image",
		.usage = "image alias create [REMOTE:]ALIAS FINGERPRINT [flags]",
		.help = "Flags:\n"
			"      --description D   Description of the alias\n",
	},
	{
		.name = "delete",
		.alias = "rm",
		.run = alias_delete,
		.summary = "Delete an alias",
		.usage = "image alias delete [REMOTE:]ALIAS",
	},
	{
		.name = "list",
		.alias = "ls",
		.run = alias_list,
		.summary = "List aliases",
		.usage = "image alias list [REMOTE:] [flags]",
		.help = "Flags:\n"
			"  -f, --format FMT   table (default), csv, json or yaml\n",
	},
	{
		.name = "rename",
		.alias = "mv",
		.run = alias_rename,
		.summary = "Rename an alias",
		.usage = "image alias rename [REMOTE:]OLD NEW",
	},
	{},
};

/* "lxm image alias ...": a group inside a group, dispatched here (main knows two levels). */
static int image_alias(int argc, char **argv, struct lxm_error **err)
{
	const struct lxm_command *c;
	char path[64];

	if (argc < 2)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: expected a command: create, delete, list or rename (see "
				     "'lxm %s --help')",
				     argv[0], argv[0]);
	for (c = lxm_image_alias_commands; c->name; c++)
		if (streq(c->name, argv[1]) || streq(c->alias, argv[1]))
			break;
	if (!c->name)
		return lxm_error_set(err, -EINVAL, 400,
				     "unknown command \"%s %s\" (see 'lxm %s --help')", argv[0],
				     argv[1], argv[0]);
	snprintf(path, sizeof(path), "%s %s", argv[0], c->name);
	argv[1] = path;
	return c->run(argc - 1, argv + 1, err);
}

/* ---- uploads ---- */

/* One piece of an upload body: bytes in memory, or a file read as it is sent. */
struct segment {
	const char *mem;  /* the bytes, or NULL for a file */
	uint64_t len;	  /* bytes in mem, or the file's size */
	int fd;		  /* the file, or -1 */
	const char *path; /* the file's name, for errors */
};

/* An upload body made of segments (a file, or multipart parts around two files). The files'
 * bytes feed sha: LXD's fingerprint is the sha256 of the file, or of metadata then rootfs. */
struct body {
	struct segment seg[5]; /* in order */
	size_t n;	       /* segments */
	size_t i;	       /* the segment being sent */
	uint64_t off;	       /* bytes of seg[i] sent */
	EVP_MD_CTX *sha;       /* the files' digest */
	struct progress prog;  /* bytes of the files sent */
	int err;	       /* a failed read: -errno */
	const char *err_path;  /* and the file it was */
};

static ssize_t body_read(char *buf, size_t len, void *ud)
{
	struct body *b = ud;

	while (b->i < b->n) {
		struct segment *s = &b->seg[b->i];
		uint64_t left = s->len - b->off;
		ssize_t n;

		if (left == 0) {
			b->i++;
			b->off = 0;
			continue;
		}
		if (len > left)
			len = (size_t)left;
		if (s->mem) {
			memcpy(buf, s->mem + b->off, len);
			n = (ssize_t)len;
		} else {
			do
				n = read(s->fd, buf, len);
			while (n < 0 && errno == EINTR);
			if (n <= 0) {
				/* A file that shrank would send a short body: fail instead. */
				b->err = n < 0 ? -errno : -ENODATA;
				b->err_path = s->path;
				return b->err;
			}
			EVP_DigestUpdate(b->sha, buf, (size_t)n);
			progress_add(&b->prog, (size_t)n);
		}
		b->off += (uint64_t)n;
		return n;
	}
	return 0;
}

/* The properties header: key=value pairs, URL-encoded as a query string. */
static int properties_header(const json_t *props, char **ret)
{
	_cleanup_free_ char *q = strdup("X-LXD-properties: ");
	const char *k;
	json_t *v;

	json_object_foreach ((json_t *)props, k, v) {
		_cleanup_free_ char *ek = lxm_url_escape(k), *ev = NULL, *next = NULL;

		ev = lxm_url_escape(json_string_value(v) ?: "");
		if (!q || !ek || !ev ||
		    asprintf(&next, "%s%s%s=%s", q, strchr(q, '=') ? "&" : "", ek, ev) < 0)
			return -ENOMEM;
		free(q);
		q = TAKE_PTR(next);
	}
	if (!q)
		return -ENOMEM;
	*ret = TAKE_PTR(q);
	return 0;
}

/* A file name as a header value or a multipart parameter: its last component, with quotes,
 * backslashes and control characters replaced. */
static char *safe_filename(const char *path)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	char *s = strdup(*base ? base : "image");

	for (char *p = s; p && *p; p++)
		if (*p == '"' || *p == '\\' || iscntrl((unsigned char)*p))
			*p = '_';
	return s;
}

/* What an upload says about itself besides its body. */
struct upload {
	const char *content_type; /* the body's */
	const char *filename;	  /* X-LXD-filename, or NULL */
	bool public;		  /* X-LXD-public */
	const json_t *properties; /* X-LXD-properties, or NULL */
	const char *expected_fp;  /* X-LXD-fingerprint: the server checks it, or NULL */
	ssize_t (*read)(char *buf, size_t len, void *ud); /* the body */
	void *ud;					  /* for read */
	int64_t size; /* the body's length, -1 when unknown (chunked) */
};

/* POST /1.0/images with a streamed body, waits for the operation and returns the image's
 * fingerprint from its metadata. */
static int post_image(struct lxm_client *c, const struct upload *u, char **ret_fp,
		      struct lxm_error **err)
{
	_cleanup_free_ char *h_type = NULL, *h_name = NULL, *h_props = NULL, *h_fp = NULL;
	_cleanup_json_ json_t *op = NULL;
	struct lxm_stream s = {
		.read = u->read,
		.ud = u->ud,
		.upload_size = u->size,
	};
	const char *headers[7], *fp;
	size_t n = 0;
	int r;

	if (asprintf(&h_type, "Content-Type: %s", u->content_type) < 0 ||
	    (u->filename && asprintf(&h_name, "X-LXD-filename: %s", u->filename) < 0) ||
	    (u->expected_fp && asprintf(&h_fp, "X-LXD-fingerprint: %s", u->expected_fp) < 0) ||
	    (u->properties && json_object_size(u->properties) &&
	     properties_header(u->properties, &h_props) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	headers[n++] = h_type;
	headers[n++] = u->public ? "X-LXD-public: 1" : "X-LXD-public: 0";
	if (h_name)
		headers[n++] = h_name;
	if (h_props)
		headers[n++] = h_props;
	if (h_fp)
		headers[n++] = h_fp;
	headers[n] = NULL;
	s.headers = headers;
	r = lxm_stream_request(c, "POST", "/1.0/images", &s, err);
	if (r >= 0 && !s.operation)
		r = lxm_error_set(err, -EPROTO, 502, "the server did not start an operation");
	if (r >= 0)
		r = lxm_client_wait_operation(c, s.operation, &op, err);
	lxm_stream_done(&s);
	if (r < 0)
		return r;
	fp = json_string_value(json_object_get(json_object_get(op, "metadata"), "fingerprint"));
	if (!fp || !is_hex(fp) || strlen(fp) != FP_LEN)
		return lxm_error_set(err, -EPROTO, 502,
				     "the server did not say which image it made (no fingerprint "
				     "in the operation's metadata)");
	*ret_fp = strdup(fp);
	return *ret_fp ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* Best effort: an image that must not stay (its content is not what was sent). */
static void drop_image(struct lxm_client *c, const char *fp)
{
	_cleanup_error_ struct lxm_error *e = NULL;
	_cleanup_free_ char *path = path_of("/1.0/images/", fp);

	if (path)
		lxm_client_do(c, "DELETE", path, NULL, NULL, &e);
}

static int add_aliases(struct lxm_client *c, const char *fp, const json_t *aliases,
		       struct lxm_error **err)
{
	json_t *a;
	size_t i;

	json_array_foreach ((json_t *)aliases, i, a) {
		int r = set_alias(c, json_string_value(json_object_get(a, "name")),
				  json_string_value(json_object_get(a, "description")), fp, err);

		if (r < 0)
			return lxm_error_prefix(err, "image %.12s", fp);
	}
	return 0;
}

/* Flags shared by import, copy, publish and build. */
struct image_flags {
	json_t *aliases;    /* [{"name", "description"}] from --alias */
	json_t *properties; /* from --property or KEY=VALUE */
	bool public;	    /* --public */
};

static void image_flags_done(struct image_flags *f)
{
	json_decref(f->aliases);
	json_decref(f->properties);
}

static int flag_alias(const char *cmd, struct image_flags *f, const char *name,
		      struct lxm_error **err)
{
	int r = check_alias(cmd, name, err);

	if (r < 0)
		return r;
	if ((!f->aliases && !(f->aliases = json_array())) ||
	    json_array_append_new(f->aliases,
				  json_pack("{s:s, s:s}", "name", name, "description", "")) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	return 0;
}

static int flag_property(const char *cmd, struct image_flags *f, const char *kv,
			 struct lxm_error **err)
{
	_cleanup_free_ char *k = NULL, *v = NULL;

	if (lxm_cli_split_kv(kv, &k, &v) < 0)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: invalid property '%s': expected KEY=VALUE", cmd, kv);
	if ((!f->properties && !(f->properties = json_object())) ||
	    json_object_set_new(f->properties, k, json_string(v)) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	return 0;
}

static int open_file(const char *cmd, const char *path, struct segment *s, struct lxm_error **err)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 400, "%s: %s: open", cmd, path);
	*s = (struct segment){ .fd = fd, .path = path };
	if (fstat(fd, &st) < 0)
		return lxm_error_setx(err, -errno, 400, "%s: %s: stat", cmd, path);
	if (!S_ISREG(st.st_mode))
		return lxm_error_set(err, -EINVAL, 400, "%s: %s: not a regular file", cmd, path);
	if (st.st_size == 0)
		return lxm_error_set(err, -EINVAL, 400, "%s: %s: the file is empty", cmd, path);
	s->len = (uint64_t)st.st_size;
	return 0;
}

static int image_import(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "alias", required_argument, NULL, 'a' },
		{ "public", no_argument, NULL, 'p' },
		{ "property", required_argument, NULL, 'P' },
		{},
	};
	_cleanup_(image_flags_done) struct image_flags f = {};
	_cleanup_(target_done) struct target t = {};
	_cleanup_free_ char *boundary_hex = NULL, *pre1 = NULL, *pre2 = NULL, *end = NULL;
	_cleanup_free_ char *ctype = NULL, *meta_name = NULL, *rootfs_name = NULL, *fp = NULL;
	_cleanup_free_ char *local_fp = NULL;
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *sha = EVP_MD_CTX_new();
	struct segment meta = { .fd = -1 }, rootfs = { .fd = -1 };
	struct body b = {};
	struct upload u = {};
	const char *cmd = argv[0], *remote_arg = "local:";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int opt, r, nargs;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'a':
			r = flag_alias(cmd, &f, optarg, err);
			break;
		case 'p':
			f.public = true;
			r = 0;
			break;
		case 'P':
			r = flag_property(cmd, &f, optarg, err);
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
		if (r < 0)
			return r;
	}
	nargs = argc - optind;
	/* A last argument "REMOTE:" names where to import. */
	if (nargs >= 2 && argv[argc - 1][strlen(argv[argc - 1]) - 1] == ':' &&
	    !strchr(argv[argc - 1], '/')) {
		remote_arg = argv[argc - 1];
		nargs--;
	}
	r = lxm_cli_nargs(cmd, nargs, 1, 2, "an image FILE, or a METADATA and a ROOTFS file", err);
	if (r < 0)
		return r;
	if (!sha || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1)
		return lxm_error_set(err, -ENOMEM, 500, "%s: cannot set up sha256", cmd);
	r = open_file(cmd, argv[optind], &meta, err);
	if (r >= 0 && nargs == 2)
		r = open_file(cmd, argv[optind + 1], &rootfs, err);
	if (r >= 0)
		r = target_open(remote_arg, true, &t, err);
	if (r < 0)
		goto out;

	b.sha = sha;
	progress_init(&b.prog, "Uploading image", meta.len + rootfs.len);
	if (nargs == 1) {
		b.seg[b.n++] = meta;
		meta_name = safe_filename(argv[optind]);
		u.content_type = "application/octet-stream";
		u.filename = meta_name;
	} else {
		char hex[33];

		/* A split image goes as multipart/form-data with parts "metadata" and "rootfs",
		 * as lxc sends it; the boundary is random, so no file can contain it by chance. */
		meta_name = safe_filename(argv[optind]);
		rootfs_name = safe_filename(argv[optind + 1]);
		if (lxm_random_hex(hex, 16) < 0 || !meta_name || !rootfs_name ||
		    asprintf(&ctype, "multipart/form-data; boundary=lxm-%s", hex) < 0 ||
		    asprintf(&pre1,
			     "--lxm-%s\r\nContent-Disposition: form-data; name=\"metadata\"; "
			     "filename=\"%s\"\r\nContent-Type: application/octet-stream\r\n\r\n",
			     hex, meta_name) < 0 ||
		    asprintf(&pre2,
			     "\r\n--lxm-%s\r\nContent-Disposition: form-data; name=\"rootfs\"; "
			     "filename=\"%s\"\r\nContent-Type: application/octet-stream\r\n\r\n",
			     hex, rootfs_name) < 0 ||
		    asprintf(&end, "\r\n--lxm-%s--\r\n", hex) < 0) {
			r = lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
			goto out;
		}
		b.seg[b.n++] = (struct segment){ .mem = pre1, .len = strlen(pre1), .fd = -1 };
		b.seg[b.n++] = meta;
		b.seg[b.n++] = (struct segment){ .mem = pre2, .len = strlen(pre2), .fd = -1 };
		b.seg[b.n++] = rootfs;
		b.seg[b.n++] = (struct segment){ .mem = end, .len = strlen(end), .fd = -1 };
		u.content_type = ctype;
	}
	u.public = f.public;
	u.properties = f.properties;
	u.read = body_read;
	u.ud = &b;
	u.size = 0;
	for (size_t i = 0; i < b.n; i++)
		u.size += (int64_t)b.seg[i].len;

	r = post_image(t.c, &u, &fp, err);
	progress_end(&b.prog);
	if (r < 0) {
		if (b.err) {
			lxm_error_free(*err);
			*err = NULL;
			r = lxm_error_setx(err, b.err, 400, "%s: %s: read", cmd, b.err_path);
			if (b.err == -ENODATA)
				r = lxm_error_set(err, -EIO, 400,
						  "%s: %s: the file shrank while it was sent", cmd,
						  b.err_path);
		}
		r = lxm_error_prefix(err, "import image '%s'", argv[optind]);
		goto out;
	}
	/* What the server stored must be what was sent. */
	EVP_DigestFinal_ex(sha, md, &mdlen);
	local_fp = hex_digest(md, mdlen);
	if (!local_fp || !streq(local_fp, fp)) {
		drop_image(t.c, fp);
		r = lxm_error_set(err, -EIO, 502,
				  "import image '%s': the server's fingerprint %s is not the "
				  "sha256 of what was sent (%s); the image was deleted",
				  argv[optind], fp, local_fp ? local_fp : "?");
		goto out;
	}
	r = add_aliases(t.c, fp, f.aliases, err);
	if (r < 0)
		goto out;
	printf("Image imported with fingerprint: %s\n", fp);
out:
	if (meta.fd >= 0)
		close(meta.fd);
	if (rootfs.fd >= 0)
		close(rootfs.fd);
	return r;
}

/* ---- multipart replies (split image exports) ---- */

enum mp_state {
	MP_PREAMBLE, /* before the first delimiter */
	MP_AFTER,    /* after a delimiter: "\r\n" (a part) or "--" (the end) */
	MP_HEADERS,  /* a part's headers */
	MP_BODY,     /* a part's content */
	MP_DONE,     /* after the closing delimiter */
};

/* A streaming reader of multipart/form-data: it keeps only what may still be the start of a
 * delimiter, never a whole part. */
struct mp {
	char *delim;	     /* "\r\n--BOUNDARY" */
	size_t dlen;	     /* its length */
	char *buf;	     /* bytes received and not consumed */
	size_t len;	     /* bytes in buf */
	enum mp_state state; /* where the reader is */
	/* a part starts: its name and filename parameters (either may be NULL) */
	int (*begin)(const char *name, const char *filename, void *ud);
	int (*data)(const char *d, size_t n, void *ud); /* a piece of the part's content */
	void *ud;					/* for the callbacks */
};

static void mp_done(struct mp *m)
{
	free(m->delim);
	free(m->buf);
}

/* The value of parameter key in a header value like `form-data; name="x"; filename="y"` or
 * `multipart/form-data; boundary=z`. */
static char *header_param(const char *value, const char *key)
{
	size_t klen = strlen(key);

	for (const char *p = strchr(value, ';'); p; p = strchr(p + 1, ';')) {
		const char *v = p + 1, *e;

		while (*v == ' ' || *v == '\t')
			v++;
		if (strncasecmp(v, key, klen) != 0 || v[klen] != '=')
			continue;
		v += klen + 1;
		if (*v == '"') {
			e = strchr(++v, '"');
			return e ? strndup(v, (size_t)(e - v)) : NULL;
		}
		return strndup(v, strcspn(v, "; \t"));
	}
	return NULL;
}

static int mp_init(struct mp *m, const char *content_type)
{
	_cleanup_free_ char *boundary = header_param(content_type, "boundary");

	if (!boundary || !*boundary || strlen(boundary) > 200)
		return -EPROTO;
	/* The body starts with "--BOUNDARY": a leading CRLF lets one search find them all. */
	m->buf = strdup("\r\n");
	m->len = 2;
	if (!m->buf || asprintf(&m->delim, "\r\n--%s", boundary) < 0)
		return -ENOMEM;
	m->dlen = strlen(m->delim);
	m->state = MP_PREAMBLE;
	return 0;
}

static void mp_consume(struct mp *m, size_t n)
{
	memmove(m->buf, m->buf + n, m->len - n);
	m->len -= n;
}

static int mp_part_headers(struct mp *m, const char *h, size_t n)
{
	_cleanup_free_ char *text = strndup(h, n), *name = NULL, *filename = NULL;

	if (!text)
		return -ENOMEM;
	for (char *line = text, *next; line && *line; line = next) {
		next = strstr(line, "\r\n");
		if (next) {
			*next = '\0';
			next += 2;
		}
		if (strncasecmp(line, "Content-Disposition:", 20) == 0) {
			name = header_param(line, "name");
			filename = header_param(line, "filename");
		}
	}
	return m->begin(name, filename, m->ud);
}

static int mp_feed(struct mp *m, const char *d, size_t n)
{
	char *grown = realloc(m->buf, m->len + n + 1), *p;
	int r;

	if (!grown)
		return -ENOMEM;
	m->buf = grown;
	memcpy(m->buf + m->len, d, n);
	m->len += n;
	for (;;) {
		switch (m->state) {
		case MP_PREAMBLE:
		case MP_BODY:
			p = memmem(m->buf, m->len, m->delim, m->dlen);
			if (!p) {
				/* Keep what could be the start of a delimiter. */
				size_t keep = m->dlen - 1, out;

				if (m->len <= keep)
					return 0;
				out = m->len - keep;
				if (m->state == MP_BODY && (r = m->data(m->buf, out, m->ud)) < 0)
					return r;
				mp_consume(m, out);
				return 0;
			}
			if (m->state == MP_BODY && p > m->buf &&
			    (r = m->data(m->buf, (size_t)(p - m->buf), m->ud)) < 0)
				return r;
			mp_consume(m, (size_t)(p - m->buf) + m->dlen);
			m->state = MP_AFTER;
			break;
		case MP_AFTER:
			if (m->len < 2)
				return 0;
			if (m->buf[0] == '-' && m->buf[1] == '-') {
				m->state = MP_DONE;
				break;
			}
			if (m->buf[0] != '\r' || m->buf[1] != '\n')
				return -EPROTO;
			mp_consume(m, 2);
			m->state = MP_HEADERS;
			break;
		case MP_HEADERS:
			p = memmem(m->buf, m->len, "\r\n\r\n", 4);
			if (!p)
				return m->len > 16384 ? -EPROTO : 0;
			r = mp_part_headers(m, m->buf, (size_t)(p - m->buf));
			if (r < 0)
				return r;
			mp_consume(m, (size_t)(p - m->buf) + 4);
			m->state = MP_BODY;
			break;
		case MP_DONE:
			m->len = 0;
			return 0;
		}
	}
}

/* ---- export ---- */

/* A file being exported: written to a temporary file beside its destination, renamed into
 * place once the whole image checked out. */
struct out_file {
	char *tmp;		/* the temporary file, removed unless renamed */
	int fd;			/* open on tmp, or -1 */
	char *name;		/* the name the server gave, or NULL */
	unsigned char magic[8]; /* its first bytes: the kind of file */
	size_t magic_len;	/* bytes in magic */
	char *final;		/* where it went */
};

struct export
{
	const char *cmd;	  /* for messages */
	const char *fp;		  /* the image */
	const char *dir;	  /* the directory the files go to */
	struct out_file files[2]; /* metadata (or the unified file), rootfs */
	int cur;		  /* the file being written, -1 before the first */
	EVP_MD_CTX *sha;	  /* of everything written, in order */
	struct progress prog;	  /* bytes received */
	bool multipart;		  /* a split image */
	struct mp mp;		  /* its reader */
	struct lxm_error *err;	  /* why a callback failed */
};

static void out_file_done(struct out_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp)
		unlink(f->tmp);
	free(f->tmp);
	free(f->name);
	free(f->final);
	*f = (struct out_file){ .fd = -1 };
}

static void export_done(struct export *e)
{
	out_file_done(&e->files[0]);
	out_file_done(&e->files[1]);
	mp_done(&e->mp);
	lxm_error_free(e->err);
}

static int export_open(struct export *e, int idx, const char *name)
{
	struct out_file *f = &e->files[idx];

	if (f->tmp)
		return lxm_error_set(&e->err, -EPROTO, 502, "the server sent the %s file twice",
				     idx ? "rootfs" : "metadata");
	if (idx == 1 && !e->files[0].tmp)
		return lxm_error_set(&e->err, -EPROTO, 502,
				     "the server sent the rootfs before the metadata");
	if (asprintf(&f->tmp, "%s/.lxm-export-XXXXXX", e->dir) < 0) {
		f->tmp = NULL;
		return lxm_error_set(&e->err, -ENOMEM, 500, "out of memory");
	}
	f->fd = mkostemp(f->tmp, O_CLOEXEC);
	if (f->fd < 0) {
		int r = -errno;

		free(TAKE_PTR(f->tmp));
		return lxm_error_setx(&e->err, r, 500, "create a file in %s", e->dir);
	}
	f->name = name ? strdup(name) : NULL;
	e->cur = idx;
	return 0;
}

static int export_write(struct export *e, const char *d, size_t n)
{
	struct out_file *f;

	if (e->cur < 0)
		return lxm_error_set(&e->err, -EPROTO, 502, "data outside of a file part");
	f = &e->files[e->cur];
	if (f->magic_len < sizeof(f->magic)) {
		size_t k = sizeof(f->magic) - f->magic_len;

		if (k > n)
			k = n;

		memcpy(f->magic + f->magic_len, d, k);
		f->magic_len += k;
	}
	EVP_DigestUpdate(e->sha, d, n);
	if (lxm_write_all(f->fd, d, n) < 0)
		return lxm_error_setx(&e->err, -errno ? -errno : -EIO, 500, "write %s", f->tmp);
	return 0;
}

static int export_part_begin(const char *name, const char *filename, void *ud)
{
	struct export *e = ud;

	if (streq(name, "metadata"))
		return export_open(e, 0, filename);
	if (streq(name, "rootfs") || streq(name, "rootfs.img"))
		return export_open(e, 1, filename);
	return lxm_error_set(&e->err, -EPROTO, 502, "unexpected part '%s' in the export",
			     name ? name : "");
}

static int export_part_data(const char *d, size_t n, void *ud)
{
	return export_write(ud, d, n);
}

static int export_on_headers(struct lxm_stream *s, void *ud)
{
	struct export *e = ud;
	_cleanup_free_ char *name = NULL;

	if (!s->raw)
		return 0;
	if (s->content_length > 0)
		e->prog.total = (uint64_t)s->content_length;
	if (s->content_type && strncasecmp(s->content_type, "multipart/", 10) == 0) {
		e->multipart = true;
		e->mp.begin = export_part_begin;
		e->mp.data = export_part_data;
		e->mp.ud = e;
		if (mp_init(&e->mp, s->content_type) < 0)
			return lxm_error_set(&e->err, -EPROTO, 502,
					     "a multipart export without a boundary");
		return 0;
	}
	if (s->content_disposition)
		name = header_param(s->content_disposition, "filename");
	return export_open(e, 0, name);
}

static int export_sink(const char *d, size_t n, void *ud)
{
	struct export *e = ud;
	int r;

	progress_add(&e->prog, n);
	if (!e->multipart)
		return export_write(e, d, n);
	r = mp_feed(&e->mp, d, n);
	if (r < 0 && !e->err)
		lxm_error_setx(&e->err, r, 502, "read the multipart export");
	return r;
}

/* The usual extension of a file that starts with magic. */
static const char *extension(const struct out_file *f)
{
	static const struct {
		const char *magic;
		size_t len;
		const char *ext;
	} kinds[] = {
		{ "\x1f\x8b", 2, ".tar.gz" },
		{ "\xfd"
		  "7zXZ\0",
		  6, ".tar.xz" },
		{ "\x28\xb5\x2f\xfd", 4, ".tar.zst" },
		{ "BZh", 3, ".tar.bz2" },
		{ "hsqs", 4, ".squashfs" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		if (f->magic_len >= kinds[i].len &&
		    memcmp(f->magic, kinds[i].magic, kinds[i].len) == 0)
			return kinds[i].ext;
	return ".tar";
}

/* A name the server gave, if it is a plain file name. */
static bool plain_name(const char *n)
{
	return n && *n && !strchr(n, '/') && !streq(n, ".") && !streq(n, "..") && n[0] != '.';
}

/* Where the files go: into the directory under the server's names (or the fingerprint), or,
 * for a file TARGET, TARGET and TARGET.root. */
static int export_names(struct export *e, const char *target_file)
{
	for (int i = 0; i < 2; i++) {
		struct out_file *f = &e->files[i];
		int k;

		if (!f->tmp)
			continue;
		if (target_file)
			k = asprintf(&f->final, "%s%s", target_file, i ? ".root" : "");
		else if (plain_name(f->name))
			k = asprintf(&f->final, "%s/%s", e->dir, f->name);
		else
			k = asprintf(&f->final, "%s/%s%s%s", e->dir,
				     i == 0 && e->files[1].tmp ? "meta-" : "", e->fp, extension(f));
		if (k < 0) {
			f->final = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

static int image_export(int argc, char **argv, struct lxm_error **err)
{
	_cleanup_(target_done) struct target t = {};
	_cleanup_(export_done) struct export e = { .cur = -1 };
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *sha = EVP_MD_CTX_new();
	_cleanup_free_ char *fp = NULL, *path = NULL, *dir = NULL, *got = NULL;
	const char *cmd = argv[0], *target_file = NULL;
	struct lxm_stream s = {};
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct stat st;
	int r;

	e.files[0].fd = e.files[1].fd = -1;
	r = lxm_cli_nargs(cmd, argc - 1, 1, 2, "an IMAGE and at most a DIRECTORY or FILE", err);
	if (r < 0)
		return r;
	if (argc == 3 && !(stat(argv[2], &st) == 0 && S_ISDIR(st.st_mode))) {
		/* A file name: its directory must exist. */
		const char *slash = strrchr(argv[2], '/');

		target_file = argv[2];
		dir = slash ? strndup(argv[2], slash == argv[2] ? 1 : (size_t)(slash - argv[2]))
			    : strdup(".");
		if (dir && (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)))
			return lxm_error_setx(err, -errno ?: -ENOTDIR, 400, "%s: %s", cmd, dir);
	} else {
		dir = strdup(argc == 3 ? argv[2] : ".");
	}
	if (!dir || !sha || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = open_image(argv[1], &t, &fp, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "export image '%s'", argv[1]);
	path = path_of("/1.0/images/", fp);
	if (!path || asprintf(&got, "%s/export", path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);

	e.cmd = cmd;
	e.fp = fp;
	e.dir = dir;
	e.sha = sha;
	progress_init(&e.prog, "Exporting image", 0);
	s.on_headers = export_on_headers;
	s.sink = export_sink;
	s.ud = &e;
	r = lxm_stream_request(t.c, "GET", got, &s, err);
	progress_end(&e.prog);
	if (r < 0 && e.err) {
		lxm_error_free(*err);
		*err = TAKE_PTR(e.err);
	}
	if (r >= 0 && !s.raw)
		r = lxm_error_set(err, -EPROTO, 502, "the server sent no image file");
	if (r >= 0 && e.multipart && (e.mp.state != MP_DONE || !e.files[1].tmp))
		r = lxm_error_set(err, -EPROTO, 502, "the split image's reply ended early (%s)",
				  e.files[1].tmp ? "no closing boundary" : "no rootfs part");
	if (r >= 0 && !e.files[0].tmp)
		r = lxm_error_set(err, -EPROTO, 502, "the server sent no image file");
	lxm_stream_done(&s);
	if (r < 0)
		return lxm_error_prefix(err, "export image '%s'", argv[1]);

	/* The files are kept only if they are the image the fingerprint names. */
	EVP_DigestFinal_ex(sha, md, &mdlen);
	free(got);
	got = hex_digest(md, mdlen);
	if (!got || !streq(got, fp))
		return lxm_error_set(err, -EIO, 502,
				     "export image '%s': what was received has sha256 %s, not the "
				     "image's fingerprint %s; the files were deleted",
				     argv[1], got ? got : "?", fp);
	if (export_names(&e, target_file) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	for (int i = 0; i < 2; i++) {
		struct out_file *f = &e.files[i];

		if (!f->tmp)
			continue;
		if (fsync(f->fd) < 0 || fchmod(f->fd, 0644) < 0)
			return lxm_error_setx(err, -errno, 500, "%s: write %s", cmd, f->final);
		if (rename(f->tmp, f->final) < 0)
			return lxm_error_setx(err, -errno, 500, "%s: rename %s to %s", cmd, f->tmp,
					      f->final);
		free(TAKE_PTR(f->tmp));
	}
	printf("Image exported to %s%s%s\n", e.files[0].final, e.files[1].final ? " and " : "",
	       e.files[1].final ? e.files[1].final : "");
	return 0;
}

/* ---- copy between lxd remotes: an export streamed into an import ---- */

/* The export side runs in its own thread and writes into a socket pair that the import reads:
 * no temporary file, and only a socket buffer of the image in memory. */
struct pump {
	struct lxm_client *src; /* the source remote (used by the thread only) */
	const char *path;	/* GET .../export */
	int fd;			/* the thread's end of the socket pair */
	pthread_mutex_t lock;	/* guards ready */
	pthread_cond_t cond;	/* signalled when ready is set */
	bool ready;		/* headers are in, or the export is over */
	struct lxm_stream s;	/* the export request */
	struct lxm_error *err;	/* the export's failure */
	int result;		/* its result */
};

static void pump_signal(struct pump *p)
{
	pthread_mutex_lock(&p->lock);
	p->ready = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static int pump_on_headers(struct lxm_stream *s, void *ud)
{
	(void)s;
	pump_signal(ud);
	return 0;
}

static int pump_sink(const char *d, size_t n, void *ud)
{
	struct pump *p = ud;

	while (n > 0) {
		ssize_t k = send(p->fd, d, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		d += k;
		n -= (size_t)k;
	}
	return 0;
}

static void *pump_run(void *ud)
{
	struct pump *p = ud;

	p->result = lxm_stream_request(p->src, "GET", p->path, &p->s, &p->err);
	/* EOF for the import's reader. */
	shutdown(p->fd, SHUT_WR);
	pump_signal(p);
	return NULL;
}

/* The import side's reader: the socket pair, hashed (a unified image's fingerprint is the
 * sha256 of the stream). */
struct drain {
	int fd;		      /* the import's end */
	EVP_MD_CTX *sha;      /* of the bytes read */
	struct progress prog; /* bytes copied */
};

static ssize_t drain_read(char *buf, size_t len, void *ud)
{
	struct drain *d = ud;
	ssize_t n;

	do
		n = recv(d->fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	EVP_DigestUpdate(d->sha, buf, (size_t)n);
	progress_add(&d->prog, (size_t)n);
	return n;
}

/* Copies image fp (Image object img) from src to dst. */
static int copy_image(struct lxm_client *src, const char *src_name, const char *fp,
		      const json_t *img, struct lxm_client *dst, bool public,
		      struct lxm_error **err)
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *sha = EVP_MD_CTX_new();
	_cleanup_free_ char *path = NULL, *got = NULL, *name = NULL;
	struct pump p = { .src = src };
	struct drain d = {};
	struct upload u = {};
	int sv[2], r;
	pthread_t th;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	bool unified;

	path = path_of("/1.0/images/", fp);
	if (!path || asprintf(&got, "%s/export", path) < 0 || !sha ||
	    EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	p.path = got;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return lxm_error_setx(err, -errno, 500, "create a socket pair");
	p.fd = sv[1];
	d.fd = sv[0];
	d.sha = sha;
	p.s.on_headers = pump_on_headers;
	p.s.sink = pump_sink;
	p.s.ud = &p;
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cond, NULL);
	r = -pthread_create(&th, NULL, pump_run, &p);
	if (r < 0) {
		close(sv[0]);
		close(sv[1]);
		return lxm_error_setx(err, r, 500, "start the export");
	}
	pthread_mutex_lock(&p.lock);
	while (!p.ready)
		pthread_cond_wait(&p.cond, &p.lock);
	pthread_mutex_unlock(&p.lock);

	r = 0;
	if (p.s.raw) {
		unified =
			!(p.s.content_type && strncasecmp(p.s.content_type, "multipart/", 10) == 0);
		if (unified && p.s.content_disposition)
			name = header_param(p.s.content_disposition, "filename");
		progress_init(&d.prog, "Copying image",
			      p.s.content_length > 0
				      ? (uint64_t)p.s.content_length
				      : (uint64_t)json_integer_value(json_object_get(img, "size")));
		u.content_type = p.s.content_type ? p.s.content_type : "application/octet-stream";
		u.filename = name && plain_name(name) ? name : NULL;
		u.public = public;
		u.properties = json_object_get(img, "properties");
		u.expected_fp = fp;
		u.read = drain_read;
		u.ud = &d;
		u.size = p.s.content_length;
		r = post_image(dst, &u, &name, err);
		progress_end(&d.prog);
		if (r >= 0 && !streq(name, fp)) {
			drop_image(dst, name);
			r = lxm_error_set(err, -EIO, 502,
					  "the copy's fingerprint %s is not the image's %s; the "
					  "copy was deleted",
					  name, fp);
		}
		if (r >= 0 && unified) {
			_cleanup_free_ char *local = NULL;

			EVP_DigestFinal_ex(sha, md, &mdlen);
			local = hex_digest(md, mdlen);
			if (!local || !streq(local, fp))
				r = lxm_error_set(err, -EIO, 502,
						  "the stream from remote '%s' has sha256 %s, not "
						  "%s",
						  src_name, local ? local : "?", fp);
		}
	}
	/* Whatever happened to the import, the export stops now (its writes fail). */
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(th, NULL);
	close(sv[0]);
	close(sv[1]);
	pthread_mutex_destroy(&p.lock);
	pthread_cond_destroy(&p.cond);
	if (p.result < 0 || (!p.s.raw && p.result >= 0)) {
		/* The export's own error explains an import that failed with it. */
		lxm_error_free(*err);
		*err = p.err ? TAKE_PTR(p.err) : NULL;
		if (!*err)
			lxm_error_set(err, -EPROTO, 502, "the server sent no image file");
		r = lxm_error_prefix(err, "export from remote '%s'", src_name);
	}
	lxm_error_free(p.err);
	lxm_stream_done(&p.s);
	return r;
}

/* Whether the remote has image fp. */
static int has_image(struct lxm_client *c, const char *fp, struct lxm_error **err)
{
	_cleanup_free_ char *path = path_of("/1.0/images/", fp);
	_cleanup_error_ struct lxm_error *e = NULL;
	int r;

	if (!path)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_request(c, "GET", path, NULL, NULL, NULL, &e);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		*err = TAKE_PTR(e);
		return r;
	}
	return 1;
}

/* The "source" of a pull from a simplestreams server, for POST /1.0/images or
 * /1.0/instances. */
static int pull_source(const struct lxm_remote *remote, const char *name, json_t **ret,
		       struct lxm_error **err)
{
	_cleanup_json_ json_t *src = NULL;
	_cleanup_free_ char *pem = NULL;
	int r;

	src = json_pack("{s:s, s:s, s:s, s:s}", "type", "image", "mode", "pull", "server",
			remote->addr, "protocol", "simplestreams");
	if (!src ||
	    json_object_set_new(src, is_hex(name) ? "fingerprint" : "alias", json_string(name)) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (remote->ca) {
		r = lxm_read_file(remote->ca, &pem, NULL);
		if (r < 0)
			return lxm_error_setx(err, r, 400, "remote '%s': read CA file %s",
					      remote->name, remote->ca);
		if (json_object_set_new(src, "certificate", json_string(pem)) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	*ret = TAKE_PTR(src);
	return 0;
}

/* POST /1.0/images with a JSON body (publish, build, pull), waited for: the new fingerprint. */
static int post_image_json(struct lxm_client *c, const json_t *body, char **ret_fp,
			   struct lxm_error **err)
{
	_cleanup_json_ json_t *op = NULL;
	const char *fp;
	int r;

	r = lxm_client_do(c, "POST", "/1.0/images", body, &op, err);
	if (r < 0)
		return r;
	fp = json_string_value(json_object_get(json_object_get(op, "metadata"), "fingerprint"));
	if (!fp || !is_hex(fp))
		return lxm_error_set(err, -EPROTO, 502,
				     "the server did not say which image it made (no fingerprint "
				     "in the operation's metadata)");
	*ret_fp = strdup(fp);
	return *ret_fp ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

static int image_copy(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "alias", required_argument, NULL, 'a' },
		{ "copy-aliases", no_argument, NULL, 'c' },
		{ "public", no_argument, NULL, 'p' },
		{},
	};
	_cleanup_(image_flags_done) struct image_flags f = {};
	_cleanup_(target_done) struct target src = {}, dst = {};
	_cleanup_json_ json_t *img = NULL, *body = NULL;
	_cleanup_free_ char *fp = NULL, *made = NULL;
	const char *cmd = argv[0];
	bool copy_aliases = false;
	json_t *a;
	size_t i;
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'a':
			r = flag_alias(cmd, &f, optarg, err);
			break;
		case 'c':
			copy_aliases = true;
			r = 0;
			break;
		case 'p':
			f.public = true;
			r = 0;
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
		if (r < 0)
			return r;
	}
	r = lxm_cli_nargs(cmd, argc - optind, 2, 2, "[REMOTE:]IMAGE and a target REMOTE:", err);
	if (r < 0)
		return r;
	r = target_open(argv[optind], false, &src, err);
	if (r >= 0)
		r = target_open(argv[optind + 1], true, &dst, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", cmd);
	if (*dst.name)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: the target is a remote ('%s:'), not '%s' (use --alias "
				     "to name the copy)",
				     cmd, dst.remote->name, argv[optind + 1]);
	if (src.remote == lxm_remotes_find(dst.rs, src.remote->name) &&
	    streq(src.remote->name, dst.remote->name))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: source and target are both remote '%s'", cmd,
				     src.remote->name);

	if (src.remote->protocol == LXM_REMOTE_SIMPLESTREAMS) {
		/* The target server pulls the image itself, as LXD does. */
		json_t *source = NULL;

		if (copy_aliases && flag_alias(cmd, &f, src.name, err) < 0)
			return -EINVAL;
		r = pull_source(src.remote, src.name, &source, err);
		if (r < 0)
			return r;
		body = json_pack("{s:o, s:b, s:o}", "source", source, "public", f.public, "aliases",
				 f.aliases ? json_incref(f.aliases) : json_array());
		if (!body)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
		r = post_image_json(dst.c, body, &made, err);
		if (r < 0)
			return lxm_error_prefix(err, "copy image '%s' from remote '%s'", src.name,
						src.remote->name);
		printf("Image copied with fingerprint: %s\n", made);
		return 0;
	}

	r = lxm_remote_connect(src.remote, &src.c, err);
	if (r >= 0)
		r = resolve_image(src.c, src.remote->name, src.name, &fp, err);
	if (r >= 0)
		r = get_image(src.c, src.remote->name, fp, &img, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s", cmd);
	if (copy_aliases)
		json_array_foreach (json_object_get(img, "aliases"), i, a) {
			r = flag_alias(cmd, &f, json_string_value(json_object_get(a, "name")) ?: "",
				       err);
			if (r < 0)
				return r;
		}
	r = has_image(dst.c, fp, err);
	if (r < 0)
		return lxm_error_prefix(err, "%s: remote '%s'", cmd, dst.remote->name);
	if (r == 0) {
		r = copy_image(src.c, src.remote->name, fp, img, dst.c, f.public, err);
		if (r < 0)
			return lxm_error_prefix(err, "copy image '%s' from remote '%s' to '%s'",
						src.name, src.remote->name, dst.remote->name);
	}
	r = add_aliases(dst.c, fp, f.aliases, err);
	if (r < 0)
		return r;
	printf("Image copied with fingerprint: %s\n", fp);
	return 0;
}

int lxm_image_source(struct lxm_client *local, const char *image, json_t **ret,
		     struct lxm_error **err)
{
	_cleanup_(target_done) struct target src = {};
	_cleanup_json_ json_t *img = NULL;
	_cleanup_free_ char *fp = NULL;
	int r;

	r = target_open(image, false, &src, err);
	if (r < 0)
		return r;
	if (src.remote->builtin) {
		/* The server resolves local aliases itself, and builds template images on
		 * their first use. */
		*ret = json_pack("{s:s, s:s}", "type", "image", "alias", src.name);
		return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
	}
	if (!*src.name)
		return lxm_error_set(err, -EINVAL, 400, "'%s': no image named after the remote",
				     image);
	if (src.remote->protocol == LXM_REMOTE_SIMPLESTREAMS)
		return pull_source(src.remote, src.name, ret, err);

	/* Another lxmd: its image is copied here first, then used by fingerprint. */
	r = lxm_remote_connect(src.remote, &src.c, err);
	if (r >= 0)
		r = resolve_image(src.c, src.remote->name, src.name, &fp, err);
	if (r >= 0)
		r = get_image(src.c, src.remote->name, fp, &img, NULL, err);
	if (r >= 0)
		r = has_image(local, fp, err);
	if (r == 0) {
		printf("Copying image '%s' from remote '%s'\n", src.name, src.remote->name);
		fflush(stdout);
		r = copy_image(src.c, src.remote->name, fp, img, local, false, err);
	}
	if (r < 0)
		return lxm_error_prefix(err, "image '%s'", image);
	*ret = json_pack("{s:s, s:s}", "type", "image", "fingerprint", fp);
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* ---- build, publish ---- */

static int image_build(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "release", required_argument, NULL, 'r' },
		{ "alias", required_argument, NULL, 'a' },
		{ "public", no_argument, NULL, 'p' },
		{},
	};
	_cleanup_(image_flags_done) struct image_flags f = {};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *fp = NULL;
	const char *cmd = argv[0], *release = NULL;
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'r':
			release = optarg;
			r = 0;
			break;
		case 'a':
			r = flag_alias(cmd, &f, optarg, err);
			break;
		case 'p':
			f.public = true;
			r = 0;
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
		if (r < 0)
			return r;
	}
	r = lxm_cli_nargs(cmd, argc - optind, 1, 1, "a TEMPLATE (busybox, debian)", err);
	if (r < 0)
		return r;
	body = json_pack("{s:{s:s, s:s}, s:b, s:o}", "source", "type", "template", "name",
			 argv[optind], "public", f.public, "aliases",
			 f.aliases ? json_incref(f.aliases) : json_array());
	if (!body || (release && json_object_set_new(json_object_get(body, "source"), "release",
						     json_string(release)) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	printf("Building image from template '%s'%s%s\n", argv[optind], release ? ", release " : "",
	       release ? release : "");
	fflush(stdout);
	r = post_image_json(c, body, &fp, err);
	if (r < 0)
		return lxm_error_prefix(err, "build image '%s'", argv[optind]);
	printf("Image built with fingerprint: %s\n", fp);
	return 0;
}

int lxm_cmd_publish(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "alias", required_argument, NULL, 'a' },
		{ "public", no_argument, NULL, 'p' },
		{ "compression", required_argument, NULL, 'C' },
		{},
	};
	static const char *const compressions[] = { "gzip", "xz", "zstd", "none" };
	_cleanup_(image_flags_done) struct image_flags f = {};
	_cleanup_(target_done) struct target t = {};
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *fp = NULL;
	const char *cmd = argv[0], *compression = NULL;
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'a':
			r = flag_alias(cmd, &f, optarg, err);
			break;
		case 'p':
			f.public = true;
			r = 0;
			break;
		case 'C':
			compression = optarg;
			r = -EINVAL;
			for (size_t i = 0; i < ARRAY_SIZE(compressions); i++)
				if (streq(optarg, compressions[i]))
					r = 0;
			if (r < 0)
				return lxm_error_set(err, r, 400,
						     "%s: unknown compression '%s' (gzip, xz, "
						     "zstd or none)",
						     cmd, optarg);
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
		if (r < 0)
			return r;
	}
	r = lxm_cli_nargs(cmd, argc - optind, 1, -1, "an INSTANCE and KEY=VALUE properties", err);
	if (r < 0)
		return r;
	for (int i = optind + 1; i < argc; i++) {
		r = flag_property(cmd, &f, argv[i], err);
		if (r < 0)
			return r;
	}
	r = target_open(argv[optind], true, &t, err);
	if (r < 0)
		return r;
	body = json_pack("{s:{s:s, s:s}, s:b, s:o, s:o}", "source", "type",
			 strchr(t.name, '/') ? "snapshot" : "instance", "name", t.name, "public",
			 f.public, "properties",
			 f.properties ? json_incref(f.properties) : json_object(), "aliases",
			 f.aliases ? json_incref(f.aliases) : json_array());
	if (!body || (compression && json_object_set_new(body, "compression_algorithm",
							 json_string(compression)) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = post_image_json(t.c, body, &fp, err);
	if (r < 0)
		return lxm_error_prefix(err, "publish '%s'", t.name);
	printf("Instance published with fingerprint: %s\n", fp);
	return 0;
}

const struct lxm_command lxm_image_commands[] = {
	{
		.name = "alias",
		.run = image_alias,
		.summary = "Manage image aliases",
		.usage = "image alias <command>",
		.subcommands = lxm_image_alias_commands,
	},
	{
		.name = "build",
		.run = image_build,
		.summary = "Build an image from a template",
		.usage = "image build TEMPLATE [flags]",
		.help = "Flags:\n"
			"      --release R   Release of the distribution (debian: trixie, "
			"bookworm)\n"
			"      --alias A     Alias of the new image (repeatable)\n"
			"      --public      Serve the image to other hosts\n",
	},
	{
		.name = "copy",
		.alias = "cp",
		.run = image_copy,
		.summary = "Copy an image between remotes",
		.usage = "image copy [REMOTE:]IMAGE REMOTE: [flags]",
		.help = "From another lxmd (a unix:// remote) the image is streamed from its "
			"export\n"
			"into an import; a simplestreams remote's image is pulled by the target.\n"
			"\n"
			"Flags:\n"
			"      --alias A        Alias of the copy (repeatable)\n"
			"      --copy-aliases   Give the copy the aliases of the source\n"
			"      --public         Serve the copy to other hosts\n",
	},
	{
		.name = "delete",
		.alias = "rm",
		.run = image_delete,
		.summary = "Delete images",
		.usage = "image delete [REMOTE:]IMAGE...",
	},
	{
		.name = "edit",
		.run = image_edit,
		.summary = "Edit an image's properties as YAML",
		.usage = "image edit [REMOTE:]IMAGE",
		.help = "Opens $VISUAL or $EDITOR (default vi) on the image's editable fields, or\n"
			"reads the YAML from standard input when it is not a terminal.\n",
	},
	{
		.name = "export",
		.run = image_export,
		.summary = "Export an image's files",
		.usage = "image export [REMOTE:]IMAGE [DIRECTORY|FILE]",
		.help = "Into DIRECTORY (default: the current one) under the image's file names;\n"
			"to FILE (and FILE.root for the rootfs of a split image). The files are\n"
			"checked against the image's fingerprint and removed if they differ.\n",
	},
	{
		.name = "import",
		.run = image_import,
		.summary = "Import an image from its files",
		.usage = "image import FILE [ROOTFS] [REMOTE:] [flags]",
		.help = "FILE is a unified image (metadata.yaml and rootfs/ in one tarball), or "
			"the\n"
			"metadata tarball of a split image whose ROOTFS follows.\n"
			"\n"
			"Flags:\n"
			"      --alias A          Alias of the image (repeatable)\n"
			"      --public           Serve the image to other hosts\n"
			"      --property K=V     Image property (repeatable)\n",
	},
	{
		.name = "info",
		.run = image_info,
		.summary = "Show useful information about an image",
		.usage = "image info [REMOTE:]IMAGE",
	},
	{
		.name = "list",
		.alias = "ls",
		.run = image_list,
		.summary = "List images",
		.usage = "image list [REMOTE:] [FILTER...] [flags]",
		.help = "A FILTER is KEY=VALUE on the image's properties, or part of an alias or\n"
			"the start of a fingerprint. All filters must match.\n"
			"\n"
			"Flags:\n"
			"  -f, --format FMT   table (default), csv, json or yaml\n",
	},
	{
		.name = "show",
		.run = image_show,
		.summary = "Show an image's editable fields as YAML",
		.usage = "image show [REMOTE:]IMAGE",
	},
	{},
};
