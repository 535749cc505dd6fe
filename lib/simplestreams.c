/* The simplestreams client: catalogue parsing (pure, unit-tested without a network), image
 * choice, and HTTPS transfers with libcurl, streamed to memory (JSON, capped) or to files
 * (images, hashed while written). */
#include "config.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "json.h"
#include "simplestreams.h"
#include "util.h"

struct lxm_sstreams {
	char *server;			  /* base URL without a trailing '/' */
	char *ca_file;			  /* PEM bundle to trust instead of the system's, or NULL */
	struct lxm_sstreams_image **imgs; /* the catalogue, once fetched */
	size_t n_imgs;			  /* entries of imgs */
	bool loaded;			  /* whether imgs holds the server's catalogue */
};

DEFINE_TRIVIAL_CLEANUP_FUNC(CURL *, curl_easy_cleanup)
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_sstreams_image *, lxm_sstreams_image_free)

/* ---------------------------------------------------------------- small helpers */

static const struct {
	const char *debian; /* Debian's name, as in the catalogue's "arch" */
	const char *lxd;    /* the kernel's (uname -m), as LXD names architectures */
} arch_names[] = {
	{ "amd64", "x86_64" },	  { "i386", "i686" },	    { "arm64", "aarch64" },
	{ "armhf", "armv7l" },	  { "armel", "armv6l" },    { "ppc64el", "ppc64le" },
	{ "s390x", "s390x" },	  { "riscv64", "riscv64" }, { "loong64", "loongarch64" },
	{ "mips64el", "mips64" },
};

const char *lxm_sstreams_arch_name(const char *debian_arch)
{
	for (size_t i = 0; i < ARRAY_SIZE(arch_names); i++)
		if (streq(debian_arch, arch_names[i].debian))
			return arch_names[i].lxd;
	return debian_arch;
}

static bool is_sha256_hex(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return i == 64;
}

static char *lowercase_dup(const char *s)
{
	char *r = strdup(s);

	if (r)
		for (char *p = r; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return r;
}

/* A catalogue path is appended to the server's URL: it must stay a relative path on that
 * server, without anything that would make it a different URL (query, fragment, scheme, "..",
 * blanks). */
static bool path_ok(const char *p)
{
	if (!*p || *p == '/' || strstr(p, "://"))
		return false;
	for (const char *c = p; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '?' || *c == '#' || *c == '\\')
			return false;
	for (const char *c = p; c;) {
		if (startswith(c, "..") && (c[2] == '/' || c[2] == '\0'))
			return false;
		c = strchr(c, '/');
		if (c)
			c++;
	}
	return true;
}

/* "20261101_05:24" (lxd images), "20261101" or "20261101.1" (ubuntu): the build's UTC time. */
static int64_t version_time(const char *v)
{
	struct tm tm = { 0 };
	int y, mo, d, h = 0, mi = 0;
	char sep = 0;

	if (sscanf(v, "%4d%2d%2d%c%2d:%2d", &y, &mo, &d, &sep, &h, &mi) < 3)
		return 0;
	if (sep != '_')
		h = mi = 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59)
		return 0;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	return (int64_t)timegm(&tm);
}

void lxm_sstreams_image_free(struct lxm_sstreams_image *img)
{
	if (!img)
		return;
	free(img->fingerprint);
	free(img->product);
	free(img->version);
	free(img->architecture);
	free(img->type);
	free(img->meta_path);
	free(img->meta_sha256);
	free(img->rootfs_path);
	free(img->rootfs_ftype);
	free(img->rootfs_sha256);
	json_decref(img->aliases);
	json_decref(img->properties);
	free(img);
}

void lxm_sstreams_images_free(struct lxm_sstreams_image **imgs, size_t n)
{
	if (!imgs)
		return;
	for (size_t i = 0; i < n; i++)
		lxm_sstreams_image_free(imgs[i]);
	free(imgs);
}

static char *strdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static struct lxm_sstreams_image *image_dup(const struct lxm_sstreams_image *src)
{
	_cleanup_(lxm_sstreams_image_freep) struct lxm_sstreams_image *img =
		calloc(1, sizeof(*img));

	if (!img)
		return NULL;
	img->fingerprint = strdup_or_null(src->fingerprint);
	img->product = strdup_or_null(src->product);
	img->version = strdup_or_null(src->version);
	img->architecture = strdup_or_null(src->architecture);
	img->type = strdup_or_null(src->type);
	img->meta_path = strdup_or_null(src->meta_path);
	img->meta_sha256 = strdup_or_null(src->meta_sha256);
	img->rootfs_path = strdup_or_null(src->rootfs_path);
	img->rootfs_ftype = strdup_or_null(src->rootfs_ftype);
	img->rootfs_sha256 = strdup_or_null(src->rootfs_sha256);
	img->aliases = json_deep_copy(src->aliases);
	img->properties = json_deep_copy(src->properties);
	img->meta_size = src->meta_size;
	img->rootfs_size = src->rootfs_size;
	img->created_at = src->created_at;
	if (!img->fingerprint || !img->product || !img->version || !img->architecture ||
	    !img->type || !img->meta_path || !img->meta_sha256 || !img->aliases ||
	    !img->properties || (src->rootfs_path && (!img->rootfs_path || !img->rootfs_sha256)))
		return NULL;
	return TAKE_PTR(img);
}

/* ---------------------------------------------------------------- JSON form */

json_t *lxm_sstreams_image_to_json(const struct lxm_sstreams_image *img)
{
	/* The rootfs fields of a unified image are null. */
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s?, s:s?, s:s?, s:I, s:O, "
			 "s:O, s:I}",
			 "fingerprint", img->fingerprint, "product", img->product, "version",
			 img->version, "architecture", img->architecture, "type", img->type,
			 "meta_path", img->meta_path, "meta_sha256", img->meta_sha256, "meta_size",
			 (json_int_t)img->meta_size, "rootfs_path", img->rootfs_path,
			 "rootfs_ftype", img->rootfs_ftype, "rootfs_sha256", img->rootfs_sha256,
			 "rootfs_size", (json_int_t)img->rootfs_size, "aliases", img->aliases,
			 "properties", img->properties, "created_at", (json_int_t)img->created_at);
}

/* A string field that may be null (or absent): false when it is something else. */
static bool string_or_null(const json_t *v, char **ret)
{
	*ret = (char *)json_string_value(v);
	return !v || json_is_null(v) || json_is_string(v);
}

int lxm_sstreams_image_from_json(const json_t *o, struct lxm_sstreams_image **ret,
				 struct lxm_error **err)
{
	struct lxm_sstreams_image src = { 0 };
	json_int_t meta_size = 0, rootfs_size = 0, created_at = 0;
	json_t *rootfs_path = NULL, *rootfs_ftype = NULL, *rootfs_sha256 = NULL;
	json_error_t jerr;

	if (json_unpack_ex((json_t *)o, &jerr, 0,
			   "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s?o, s?o, s?o, s?I, s:o, "
			   "s:o, s?I}",
			   "fingerprint", &src.fingerprint, "product", &src.product, "version",
			   &src.version, "architecture", &src.architecture, "type", &src.type,
			   "meta_path", &src.meta_path, "meta_sha256", &src.meta_sha256,
			   "meta_size", &meta_size, "rootfs_path", &rootfs_path, "rootfs_ftype",
			   &rootfs_ftype, "rootfs_sha256", &rootfs_sha256, "rootfs_size",
			   &rootfs_size, "aliases", &src.aliases, "properties", &src.properties,
			   "created_at", &created_at) < 0)
		return lxm_error_set(err, -EINVAL, 400, "image description: %s", jerr.text);
	if (!string_or_null(rootfs_path, &src.rootfs_path) ||
	    !string_or_null(rootfs_ftype, &src.rootfs_ftype) ||
	    !string_or_null(rootfs_sha256, &src.rootfs_sha256) || meta_size < 0 ||
	    rootfs_size < 0 || !json_is_array(src.aliases) || !json_is_object(src.properties) ||
	    !is_sha256_hex(src.fingerprint) || (src.rootfs_path && !src.rootfs_sha256) ||
	    !path_ok(src.meta_path) || (src.rootfs_path && !path_ok(src.rootfs_path)))
		return lxm_error_set(err, -EINVAL, 400, "image description: invalid fields");
	src.meta_size = (uint64_t)meta_size;
	src.rootfs_size = (uint64_t)rootfs_size;
	src.created_at = created_at;
	*ret = image_dup(&src);
	return *ret ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* ---------------------------------------------------------------- index.json */

int lxm_sstreams_parse_index(const json_t *index, char ***ret_paths, struct lxm_error **err)
{
	_cleanup_strv_ char **paths = NULL;
	const char *key;
	json_t *entry, *streams;
	size_t n = 0;

	if (!json_is_object(index))
		return lxm_error_set(err, -EINVAL, 400, "index.json: not a JSON object");
	streams = json_object_get(index, "index");
	if (!json_is_object(streams))
		return lxm_error_set(err, -EINVAL, 400, "index.json: no \"index\" object");
	paths = calloc(json_object_size(streams) + 1, sizeof(*paths));
	if (!paths)
		return -ENOMEM;
	json_object_foreach (streams, key, entry) {
		json_t *datatype, *path;

		if (!json_is_object(entry))
			return lxm_error_set(err, -EINVAL, 400,
					     "index.json: entry '%s' is not an object", key);
		datatype = json_object_get(entry, "datatype");
		/* Other streams (e.g. cloud image ids) are not image downloads. */
		if (!json_is_string(datatype) ||
		    !streq(json_string_value(datatype), "image-downloads"))
			continue;
		path = json_object_get(entry, "path");
		if (!json_is_string(path) || !path_ok(json_string_value(path)))
			return lxm_error_set(err, -EINVAL, 400,
					     "index.json: entry '%s' has no valid \"path\"", key);
		paths[n] = strdup(json_string_value(path));
		if (!paths[n++])
			return -ENOMEM;
	}
	if (n == 0)
		return lxm_error_set(err, -ENOENT, 400,
				     "index.json: no stream of datatype \"image-downloads\"");
	*ret_paths = TAKE_PTR(paths);
	return 0;
}

/* ---------------------------------------------------------------- images.json */

/* One file of a version, as the catalogue describes it. */
struct item {
	const json_t *obj;  /* the item object (for its combined_* fields) */
	const char *path;   /* relative path on the server */
	const char *sha256; /* 64 hex digits */
	uint64_t size;	    /* bytes */
};

/* Finds the item of the given ftype in items; false when absent or incomplete. */
static bool find_item(const json_t *items, const char *ftype, struct item *ret)
{
	const char *key;
	json_t *it;

	json_object_foreach ((json_t *)items, key, it) {
		json_t *ft = json_object_get(it, "ftype"), *path = json_object_get(it, "path"),
		       *sha = json_object_get(it, "sha256"), *size = json_object_get(it, "size");

		if (!json_is_string(ft) || !streq(json_string_value(ft), ftype))
			continue;
		if (!json_is_string(path) || !path_ok(json_string_value(path)) ||
		    !json_is_string(sha) || !is_sha256_hex(json_string_value(sha)) ||
		    !json_is_integer(size) || json_integer_value(size) <= 0)
			continue;
		*ret = (struct item){ .obj = it,
				      .path = json_string_value(path),
				      .sha256 = json_string_value(sha),
				      .size = (uint64_t)json_integer_value(size) };
		return true;
	}
	return false;
}

/* The metadata item's combined_<name> field when it is a sha256, else NULL. */
static const char *combined(const struct item *meta, const char *name)
{
	const char *v = json_string_value(json_object_get(meta->obj, name));

	return v && is_sha256_hex(v) ? v : NULL;
}

/* What one version offers for one type: the two (or one) files and the fingerprint. */
struct choice {
	struct item meta;	  /* metadata file, or the whole image when unified */
	struct item rootfs;	  /* rootfs file; valid when has_rootfs */
	bool has_rootfs;	  /* false for unified images */
	const char *rootfs_ftype; /* ftype of rootfs */
	const char *fingerprint;  /* the image's fingerprint */
};

static bool choose(const json_t *items, bool vm, struct choice *c)
{
	bool has_meta = find_item(items, "lxd.tar.xz", &c->meta) ||
			find_item(items, "incus.tar.xz", &c->meta);

	*c = (struct choice){ .meta = c->meta };
	if (vm) {
		if (!has_meta || !find_item(items, "disk-kvm.img", &c->rootfs))
			return false;
		c->has_rootfs = true;
		c->rootfs_ftype = "disk-kvm.img";
		c->fingerprint = combined(&c->meta, "combined_disk-kvm-img_sha256");
		return c->fingerprint;
	}
	/* Like LXD, squashfs first (it unpacks fastest), then the xz tarball, then a unified file.
	 */
	if (has_meta && find_item(items, "squashfs", &c->rootfs)) {
		c->fingerprint = combined(&c->meta, "combined_squashfs_sha256");
		if (c->fingerprint) {
			c->has_rootfs = true;
			c->rootfs_ftype = "squashfs";
			return true;
		}
	}
	if (has_meta && find_item(items, "root.tar.xz", &c->rootfs)) {
		c->fingerprint = combined(&c->meta, "combined_rootxz_sha256");
		if (!c->fingerprint)
			c->fingerprint = combined(&c->meta, "combined_sha256");
		if (c->fingerprint) {
			c->has_rootfs = true;
			c->rootfs_ftype = "root.tar.xz";
			return true;
		}
	}
	if (find_item(items, "lxd_combined.tar.gz", &c->meta) ||
	    find_item(items, "incus_combined.tar.gz", &c->meta)) {
		c->fingerprint = c->meta.sha256;
		return true;
	}
	return false;
}

static int cmp_desc(const void *a, const void *b)
{
	return -strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *obj_string(const json_t *o, const char *key, const char *def)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v && *v ? v : def;
}

static int make_image(const char *product_id, const json_t *product, const char *version,
		      const char *type, const struct choice *c, struct lxm_sstreams_image **ret)
{
	_cleanup_(lxm_sstreams_image_freep) struct lxm_sstreams_image *img =
		calloc(1, sizeof(*img));
	const char *arch = obj_string(product, "arch", "");
	const char *os = obj_string(product, "os", "");
	const char *release = obj_string(product, "release", "");
	const char *variant = obj_string(product, "variant", "default");
	const char *aliases = obj_string(product, "aliases", "");
	_cleanup_free_ char *desc = NULL;

	if (!img)
		return -ENOMEM;
	img->product = strdup(product_id);
	img->version = strdup(version);
	img->architecture = strdup(lxm_sstreams_arch_name(arch));
	img->type = strdup(type);
	img->fingerprint = lowercase_dup(c->fingerprint);
	img->meta_path = strdup(c->meta.path);
	img->meta_sha256 = lowercase_dup(c->meta.sha256);
	img->meta_size = c->meta.size;
	if (c->has_rootfs) {
		img->rootfs_path = strdup(c->rootfs.path);
		img->rootfs_ftype = strdup(c->rootfs_ftype);
		img->rootfs_sha256 = lowercase_dup(c->rootfs.sha256);
		img->rootfs_size = c->rootfs.size;
		if (!img->rootfs_path || !img->rootfs_ftype || !img->rootfs_sha256)
			return -ENOMEM;
	}
	img->created_at = version_time(version);
	img->aliases = json_array();
	if (!img->product || !img->version || !img->architecture || !img->type ||
	    !img->fingerprint || !img->meta_path || !img->meta_sha256 || !img->aliases)
		return -ENOMEM;

	/* "aliases" is one comma-separated string; blanks around names are not part of them. */
	for (const char *p = aliases; *p;) {
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len;

		while (b < e && isspace((unsigned char)*b))
			b++;
		while (e > b && isspace((unsigned char)e[-1]))
			e--;
		if (e > b && json_array_append_new(img->aliases, json_stringn(b, (size_t)(e - b))))
			return -ENOMEM;
		p += len;
		if (*p == ',')
			p++;
	}

	if (asprintf(&desc, "%s %s %s (%s) (%s)", os, obj_string(product, "release_title", release),
		     arch, variant, version) < 0)
		return -ENOMEM;
	img->properties =
		json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "os", os, "release", release, "variant",
			  variant, "architecture", arch, "description", desc, "serial", version);
	if (!img->properties)
		return -ENOMEM;
	*ret = TAKE_PTR(img);
	return 0;
}

static int append_image(struct lxm_sstreams_image ***imgs, size_t *n,
			struct lxm_sstreams_image *img)
{
	struct lxm_sstreams_image **v = realloc(*imgs, (*n + 1) * sizeof(*v));

	if (!v) {
		lxm_sstreams_image_free(img);
		return -ENOMEM;
	}
	v[(*n)++] = img;
	*imgs = v;
	return 0;
}

/* The product's images: for each type, the latest version that offers one. */
static int parse_product(const char *id, const json_t *product, struct lxm_sstreams_image ***imgs,
			 size_t *n, struct lxm_error **err)
{
	static const char *const types[] = { "container", "virtual-machine" };
	json_t *versions = json_object_get(product, "versions");
	_cleanup_free_ const char **keys = NULL;
	const char *key;
	json_t *v;
	size_t nk = 0;

	if (!json_is_object(product))
		return lxm_error_set(err, -EINVAL, 400,
				     "products catalogue: product '%s' is not "
				     "an object",
				     id);
	if (!json_is_string(json_object_get(product, "arch")))
		return lxm_error_set(err, -EINVAL, 400,
				     "products catalogue: product '%s' has no \"arch\"", id);
	if (!json_is_object(versions))
		return lxm_error_set(err, -EINVAL, 400,
				     "products catalogue: product '%s' has no \"versions\" object",
				     id);
	keys = calloc(json_object_size(versions) + 1, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	json_object_foreach (versions, key, v) {
		if (!json_is_object(v) || !json_is_object(json_object_get(v, "items")))
			return lxm_error_set(err, -EINVAL, 400,
					     "products catalogue: product '%s' version '%s' has no "
					     "\"items\" object",
					     id, key);
		keys[nk++] = key;
	}
	/* Version keys sort by C string order, newest last (the protocol's rule). */
	qsort(keys, nk, sizeof(*keys), cmp_desc);

	for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
		for (size_t i = 0; i < nk; i++) {
			json_t *items =
				json_object_get(json_object_get(versions, keys[i]), "items");
			struct lxm_sstreams_image *img = NULL;
			struct choice c = { 0 };
			int r;

			if (!choose(items, t == 1, &c))
				continue;
			r = make_image(id, product, keys[i], types[t], &c, &img);
			if (r < 0)
				return r;
			r = append_image(imgs, n, img);
			if (r < 0)
				return r;
			break;
		}
	}
	return 0;
}

int lxm_sstreams_parse_catalogue(const json_t *products, struct lxm_sstreams_image ***imgs,
				 size_t *n, struct lxm_error **err)
{
	json_t *all, *product;
	const char *id;

	if (!json_is_object(products))
		return lxm_error_set(err, -EINVAL, 400, "products catalogue: not a JSON object");
	all = json_object_get(products, "products");
	if (!json_is_object(all))
		return lxm_error_set(err, -EINVAL, 400,
				     "products catalogue: no \"products\" object");
	json_object_foreach (all, id, product) {
		int r = parse_product(id, product, imgs, n, err);

		if (r < 0)
			return r;
	}
	return 0;
}

/* ---------------------------------------------------------------- choosing an image */

static bool all_hex(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isxdigit((unsigned char)*s))
			return false;
	return true;
}

/* Whether name is one of img's aliases, or one of them followed by "/<debian arch>". *explicit
 * tells which (the architecture is then given by the name). */
static bool alias_matches(const struct lxm_sstreams_image *img, const char *name, bool *explicit)
{
	const char *arch = json_string_value(json_object_get(img->properties, "architecture"));
	size_t i;
	json_t *a;

	json_array_foreach (img->aliases, i, a) {
		const char *alias = json_string_value(a);
		size_t len = strlen(alias);

		if (streq(alias, name)) {
			*explicit = false;
			return true;
		}
		if (arch && strncmp(name, alias, len) == 0 && name[len] == '/' &&
		    streq(name + len + 1, arch)) {
			*explicit = true;
			return true;
		}
	}
	return false;
}

int lxm_sstreams_lookup(struct lxm_sstreams_image *const *imgs, size_t n, const char *name,
			const char *architecture, const char *type, struct lxm_sstreams_image **ret,
			struct lxm_error **err)
{
	struct lxm_sstreams_image *found = NULL;

	if (!type)
		type = "container";
	for (size_t i = 0; i < n; i++) {
		bool explicit = false;

		if (!streq(imgs[i]->type, type) || !alias_matches(imgs[i], name, &explicit))
			continue;
		if (!explicit && architecture && !streq(imgs[i]->architecture, architecture))
			continue;
		*ret = imgs[i];
		return 0;
	}

	if (all_hex(name)) {
		size_t len = strlen(name);

		for (size_t i = 0; i < n; i++) {
			if (strncasecmp(imgs[i]->fingerprint, name, len) != 0)
				continue;
			if (found && !streq(found->fingerprint, imgs[i]->fingerprint))
				return lxm_error_set(err, -EEXIST, 409,
						     "image fingerprint prefix '%s' is ambiguous",
						     name);
			found = imgs[i];
		}
		if (found) {
			*ret = found;
			return 0;
		}
	}
	if (architecture)
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found (%s, %s)", name, type,
				     architecture);
	return lxm_error_set(err, -ENOENT, 404, "image '%s' not found (%s)", name, type);
}

/* ---------------------------------------------------------------- HTTPS */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int lxm_sstreams_new(const char *server, const char *ca_file, struct lxm_sstreams **ret,
		     struct lxm_error **err)
{
	_cleanup_free_ struct lxm_sstreams *s = NULL;
	size_t len = strlen(server);

	if (strncasecmp(server, "https://", 8) != 0 || len <= 8)
		return lxm_error_set(err, -EPROTONOSUPPORT, 400,
				     "image server '%s': only https:// URLs are supported", server);
	for (const char *c = server; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '?' || *c == '#')
			return lxm_error_set(err, -EINVAL, 400,
					     "image server '%s': invalid character in the URL",
					     server);
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK)
		return lxm_error_set(err, -EIO, 500, "image server '%s': libcurl: %s", server,
				     curl_easy_strerror(curl_init_result));
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	while (len > 8 && server[len - 1] == '/')
		len--;
	s->server = strndup(server, len);
	if (!s->server)
		return -ENOMEM;
	if (ca_file) {
		s->ca_file = strdup(ca_file);
		if (!s->ca_file) {
			free(s->server);
			return -ENOMEM;
		}
	}
	*ret = TAKE_PTR(s);
	return 0;
}

void lxm_sstreams_free(struct lxm_sstreams *s)
{
	if (!s)
		return;
	lxm_sstreams_images_free(s->imgs, s->n_imgs);
	free(s->server);
	free(s->ca_file);
	free(s);
}

/* Where a transfer's body goes: a capped memory buffer, or a file of known size, hashed. */
struct sink {
	char *buf;	   /* memory mode: the body, NUL-terminated */
	size_t len;	   /* memory mode: bytes in buf */
	size_t cap;	   /* memory mode: allocated size of buf */
	int fd;		   /* file mode: destination, else -1 */
	EVP_MD_CTX *md;	   /* file mode: sha256 of this file */
	EVP_MD_CTX *all;   /* file mode: sha256 of all the image's files, in order */
	uint64_t limit;	   /* most bytes accepted */
	uint64_t received; /* bytes received so far */
	int error;	   /* negative errno of what stopped the transfer, 0 */
	lxm_sstreams_progress_fn progress; /* download progress, or NULL */
	void *ud;			   /* its user data */
	uint64_t base;			   /* bytes of earlier files of the image */
	uint64_t total;			   /* bytes of all the image's files */
};

static size_t sink_write(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct sink *k = userdata;
	size_t n = size * nmemb;

	if (k->received + n > k->limit) {
		k->error = -EFBIG;
		return 0;
	}
	if (k->fd >= 0) {
		for (size_t off = 0; off < n;) {
			ssize_t w = write(k->fd, data + off, n - off);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				k->error = -errno;
				return 0;
			}
			off += (size_t)w;
		}
		if (EVP_DigestUpdate(k->md, data, n) != 1 ||
		    EVP_DigestUpdate(k->all, data, n) != 1) {
			k->error = -EIO;
			return 0;
		}
	} else {
		if (k->len + n + 1 > k->cap) {
			size_t cap = k->cap ? k->cap : 65536;
			char *b;

			while (cap < k->len + n + 1)
				cap *= 2;
			b = realloc(k->buf, cap);
			if (!b) {
				k->error = -ENOMEM;
				return 0;
			}
			k->buf = b;
			k->cap = cap;
		}
		memcpy(k->buf + k->len, data, n);
		k->len += n;
		k->buf[k->len] = '\0';
	}
	k->received += n;
	if (k->progress && k->progress(k->base + k->received, k->total, k->ud) != 0) {
		k->error = -ECANCELED;
		return 0;
	}
	return n;
}

/* The errno a failed transfer stands for. */
static int curl_errno(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTONOSUPPORT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
		return -EPROTO;
	default:
		return -EIO;
	}
}

static bool curl_is_tls(CURLcode c)
{
	return curl_errno(c) == -EPROTO;
}

/* GETs server/path into k. Errors name the URL and the cause. */
static int http_get(struct lxm_sstreams *s, const char *path, struct sink *k, bool compressed,
		    struct lxm_error **err)
{
	_cleanup_(curl_easy_cleanupp) CURL *h = curl_easy_init();
	_cleanup_free_ char *url = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	bool ok = true;
	CURLcode c;

	if (asprintf(&url, "%s/%s", s->server, path) < 0)
		return -ENOMEM;
	if (!h)
		return lxm_error_set(err, -ENOMEM, 500, "GET %s: cannot create a libcurl handle",
				     url);
	ok &= curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK;
	/* HTTPS only, redirects included: image files are only as trustworthy as the catalogue,
	 * and the catalogue only as its transport. */
#if LIBCURL_VERSION_NUM >= 0x075500
	ok &= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https") == CURLE_OK;
#else
	ok &= curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, (long)CURLPROTO_HTTPS) == CURLE_OK;
#endif
	ok &= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L) == CURLE_OK;
	/* A stalled server: less than 1 byte/s for a minute ends the transfer. */
	ok &= curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_USERAGENT, "lxm/" PACKAGE_VERSION) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_WRITEDATA, k) == CURLE_OK;
	if (compressed)
		ok &= curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK;
	if (s->ca_file)
		ok &= curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file) == CURLE_OK;
	if (!ok)
		return lxm_error_set(err, -EINVAL, 500, "GET %s: cannot set up libcurl", url);

	c = curl_easy_perform(h);
	if (c == CURLE_OK)
		return 0;
	if (k->error == -EFBIG)
		return lxm_error_set(err, -EFBIG, 500,
				     "GET %s: the server sent more than %" PRIu64 " bytes", url,
				     k->limit);
	if (k->error == -ECANCELED)
		return lxm_error_set(err, -ECANCELED, 500, "GET %s: cancelled", url);
	if (k->error)
		return lxm_error_setx(err, k->error, 500, "GET %s: storing the body", url);
	if (c == CURLE_HTTP_RETURNED_ERROR) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		return lxm_error_set(err, status == 404 ? -ENOENT : -EIO, 500,
				     "GET %s: the server answered HTTP %ld", url, status);
	}
	return lxm_error_set(err, curl_errno(c), 500, "GET %s: %s%s", url,
			     curl_is_tls(c) ? "TLS error: " : "",
			     *errbuf ? errbuf : curl_easy_strerror(c));
}

/* GETs a JSON document (at most LXM_SSTREAMS_JSON_MAX bytes) and decodes it. */
static int get_json(struct lxm_sstreams *s, const char *path, json_t **ret, struct lxm_error **err)
{
	struct sink k = { .fd = -1, .limit = LXM_SSTREAMS_JSON_MAX };
	_cleanup_free_ char *body = NULL;
	json_error_t jerr;
	json_t *j;
	int r;

	r = http_get(s, path, &k, true, err);
	body = k.buf;
	if (r < 0)
		return r;
	j = json_loadb(body ? body : "", k.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return lxm_error_set(err, -EINVAL, 500, "%s/%s: invalid JSON: %s (line %d)",
				     s->server, path, jerr.text, jerr.line);
	*ret = j;
	return 0;
}

static int load(struct lxm_sstreams *s, struct lxm_error **err)
{
	_cleanup_json_ json_t *index = NULL;
	_cleanup_strv_ char **paths = NULL;
	struct lxm_sstreams_image **imgs = NULL;
	size_t n = 0;
	int r;

	if (s->loaded)
		return 0;
	r = get_json(s, "streams/v1/index.json", &index, err);
	if (r < 0)
		goto fail;
	r = lxm_sstreams_parse_index(index, &paths, err);
	if (r < 0)
		goto fail;
	for (char **p = paths; *p; p++) {
		_cleanup_json_ json_t *products = NULL;

		r = get_json(s, *p, &products, err);
		if (r >= 0)
			r = lxm_sstreams_parse_catalogue(products, &imgs, &n, err);
		if (r < 0) {
			lxm_sstreams_images_free(imgs, n);
			goto fail;
		}
	}
	s->imgs = imgs;
	s->n_imgs = n;
	s->loaded = true;
	return 0;
fail:
	if (r == -ENOMEM)
		lxm_error_set(err, r, 500, "out of memory");
	return lxm_error_prefix(err, "image server %s", s->server);
}

int lxm_sstreams_list(struct lxm_sstreams *s, struct lxm_sstreams_image ***ret, size_t *ret_n,
		      struct lxm_error **err)
{
	struct lxm_sstreams_image **v;
	int r = load(s, err);

	if (r < 0)
		return r;
	v = calloc(s->n_imgs ? s->n_imgs : 1, sizeof(*v));
	if (!v)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	for (size_t i = 0; i < s->n_imgs; i++) {
		v[i] = image_dup(s->imgs[i]);
		if (!v[i]) {
			lxm_sstreams_images_free(v, i);
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		}
	}
	*ret = v;
	*ret_n = s->n_imgs;
	return 0;
}

int lxm_sstreams_find(struct lxm_sstreams *s, const char *alias_or_fp, const char *architecture,
		      const char *type, struct lxm_sstreams_image **ret, struct lxm_error **err)
{
	struct lxm_sstreams_image *img, *copy;
	int r = load(s, err);

	if (r < 0)
		return r;
	r = lxm_sstreams_lookup(s->imgs, s->n_imgs, alias_or_fp, architecture, type, &img, err);
	if (r < 0)
		return lxm_error_prefix(err, "image server %s", s->server);
	copy = image_dup(img);
	if (!copy)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*ret = copy;
	return 0;
}

/* ---------------------------------------------------------------- downloads */

/* Downloads one file of img to dest (created, must not exist), checking its size and sha256. */
static int download_file(struct lxm_sstreams *s, const char *what, const char *path,
			 const char *sha256, uint64_t size, const char *dest, struct sink *k,
			 struct lxm_error **err)
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
	_cleanup_close_ int fd = -1;
	unsigned char digest[EVP_MAX_MD_SIZE];
	char got[65] = "";
	unsigned dlen = 0;
	int r;

	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		return lxm_error_set(err, -ENOMEM, 500, "%s: cannot set up sha256", what);
	fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 500, "%s: create %s", what, dest);
	k->fd = fd;
	k->md = md;
	k->limit = size;
	k->received = 0;
	k->error = 0;
	r = http_get(s, path, k, false, err);
	k->fd = -1;
	k->md = NULL;
	if (r < 0) {
		if (r == -EFBIG)
			return lxm_error_prefix(err,
						"%s: larger than the catalogue's %" PRIu64 " bytes",
						what, size);
		return lxm_error_prefix(err, "%s", what);
	}
	if (k->received != size)
		return lxm_error_set(err, -EIO, 500,
				     "%s: short download: %" PRIu64 " of %" PRIu64 " bytes", what,
				     k->received, size);
	if (EVP_DigestFinal_ex(md, digest, &dlen) != 1)
		return lxm_error_set(err, -EIO, 500, "%s: sha256 failed", what);
	lxm_hex(digest, dlen, got);
	if (strcasecmp(got, sha256) != 0)
		return lxm_error_set(err, -EBADMSG, 500,
				     "%s: sha256 mismatch: got %s, the catalogue says %s", what,
				     got, sha256);
	if (fsync(fd) < 0)
		return lxm_error_setx(err, -errno, 500, "%s: fsync %s", what, dest);
	r = close(TAKE_FD(fd));
	if (r < 0)
		return lxm_error_setx(err, -errno, 500, "%s: close %s", what, dest);
	return 0;
}

int lxm_sstreams_download(struct lxm_sstreams *s, const struct lxm_sstreams_image *img,
			  const char *dir, lxm_sstreams_progress_fn progress, void *ud,
			  struct lxm_error **err)
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *all = EVP_MD_CTX_new();
	_cleanup_free_ char *meta = NULL, *rootfs = NULL, *what = NULL;
	unsigned char digest[EVP_MAX_MD_SIZE];
	char got[65] = "";
	unsigned dlen = 0;
	bool meta_made = false, rootfs_made = false;
	struct sink k = { .fd = -1, .progress = progress, .ud = ud };
	int r;

	if (asprintf(&what, "download image %.12s from %s", img->fingerprint, s->server) < 0 ||
	    asprintf(&meta, "%s/meta", dir) < 0 || asprintf(&rootfs, "%s/rootfs", dir) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	if (!all || EVP_DigestInit_ex(all, EVP_sha256(), NULL) != 1)
		return lxm_error_set(err, -ENOMEM, 500, "%s: cannot set up sha256", what);
	k.all = all;
	k.total = img->meta_size + (img->rootfs_path ? img->rootfs_size : 0);

	/* The catalogue's files may only be trusted as far as it states them; stop before any
	 * transfer if what it says does not even hold together. */
	if (!img->rootfs_path && strcasecmp(img->fingerprint, img->meta_sha256) != 0) {
		r = lxm_error_set(err, -EBADMSG, 500,
				  "%s: a unified image's fingerprint must be its file's sha256",
				  what);
		goto fail;
	}

	r = download_file(s, what, img->meta_path, img->meta_sha256, img->meta_size, meta, &k, err);
	meta_made = r != -EEXIST;
	if (r < 0)
		goto fail;
	if (img->rootfs_path) {
		k.base = img->meta_size;
		r = download_file(s, what, img->rootfs_path, img->rootfs_sha256, img->rootfs_size,
				  rootfs, &k, err);
		rootfs_made = r != -EEXIST;
		if (r < 0)
			goto fail;
	}
	if (EVP_DigestFinal_ex(all, digest, &dlen) != 1) {
		r = lxm_error_set(err, -EIO, 500, "%s: sha256 failed", what);
		goto fail;
	}
	lxm_hex(digest, dlen, got);
	if (strcasecmp(got, img->fingerprint) != 0) {
		r = lxm_error_set(err, -EBADMSG, 500,
				  "%s: fingerprint mismatch: the files hash to %s", what, got);
		goto fail;
	}
	return 0;
fail:
	/* Nothing half-checked stays: the caller sees either both verified files or none. */
	if (meta_made)
		unlink(meta);
	if (rootfs_made)
		unlink(rootfs);
	return r;
}
