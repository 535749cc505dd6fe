/* lib/simplestreams: catalogue parsing, the choice of version and files, fingerprints, lookups
 * by alias, architecture and fingerprint prefix, and malformed catalogues, all without a network.
 *
 * Run with arguments, the binary is also a small client that the integration test
 * (tests/integration/test_simplestreams.py) drives against a local HTTPS server:
 *   test-simplestreams list URL CA
 *   test-simplestreams find URL CA NAME ARCH|- [TYPE]
 *   test-simplestreams download URL CA NAME ARCH|- DIR
 * CA is a PEM file or "-" for the system's trust store. Results go to stdout as JSON, errors to
 * stderr, exit status 1 on error. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "json.h"
#include "simplestreams.h"
#include "tap.h"

#define SHA(c)                                                                                     \
	c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  \
		c c c c c c c c c c c c c c c c c c c
/* 64 hex digits made of one repeated character. */
#define H(c) SHA(#c)
/* Shares its first digit with H(6). */
#define FP_ARM "6ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static const char *index_json =
	"{\"format\":\"index:1.0\",\"index\":{"
	"\"ids\":{\"datatype\":\"image-ids\",\"path\":\"streams/v1/ids.json\"},"
	"\"images\":{\"datatype\":\"image-downloads\",\"path\":\"streams/v1/images.json\","
	"\"format\":\"products:1.0\",\"products\":[\"debian:12:amd64:default\"]}}}";

/* clang-format off */
static const char *products_json =
"{\"content_id\":\"images\",\"datatype\":\"image-downloads\",\"format\":\"products:1.0\","
" \"products\":{"
"  \"debian:12:amd64:default\":{\"aliases\":\"debian/12, debian/bookworm,debian/12/default\","
"   \"arch\":\"amd64\",\"os\":\"Debian\",\"release\":\"bookworm\",\"release_title\":\"12\","
"   \"variant\":\"default\",\"versions\":{"
"    \"20250101_10:00\":{\"items\":{"
"      \"lxd.tar.xz\":{\"ftype\":\"lxd.tar.xz\",\"path\":\"images/d/old/lxd.tar.xz\","
"        \"sha256\":\"" H(1) "\",\"size\":10,\"combined_squashfs_sha256\":\"" H(2) "\"},"
"      \"root.squashfs\":{\"ftype\":\"squashfs\",\"path\":\"images/d/old/rootfs.squashfs\","
"        \"sha256\":\"" H(3) "\",\"size\":20}}},"
"    \"20250102_11:30\":{\"items\":{"
"      \"lxd.tar.xz\":{\"ftype\":\"lxd.tar.xz\",\"path\":\"images/d/new/lxd.tar.xz\","
"        \"sha256\":\"" H(4) "\",\"size\":11,"
"        \"combined_sha256\":\"" H(5) "\",\"combined_rootxz_sha256\":\"" H(5) "\","
"        \"combined_squashfs_sha256\":\"" H(6) "\",\"combined_disk-kvm-img_sha256\":\"" H(7) "\"},"
"      \"root.tar.xz\":{\"ftype\":\"root.tar.xz\",\"path\":\"images/d/new/rootfs.tar.xz\","
"        \"sha256\":\"" H(8) "\",\"size\":30},"
"      \"root.squashfs\":{\"ftype\":\"squashfs\",\"path\":\"images/d/new/rootfs.squashfs\","
"        \"sha256\":\"" H(9) "\",\"size\":40},"
"      \"disk.img\":{\"ftype\":\"disk-kvm.img\",\"path\":\"images/d/new/disk.qcow2\","
"        \"sha256\":\"" H(a) "\",\"size\":50}}}}},"
"  \"debian:12:arm64:default\":{\"aliases\":\"debian/12,debian/bookworm\",\"arch\":\"arm64\","
"   \"os\":\"Debian\",\"release\":\"bookworm\",\"variant\":\"default\",\"versions\":{"
"    \"20250102_11:30\":{\"items\":{"
"      \"lxd.tar.xz\":{\"ftype\":\"lxd.tar.xz\",\"path\":\"images/a/lxd.tar.xz\","
"        \"sha256\":\"" H(b) "\",\"size\":12,\"combined_rootxz_sha256\":\"" FP_ARM "\"},"
"      \"root.tar.xz\":{\"ftype\":\"root.tar.xz\",\"path\":\"images/a/rootfs.tar.xz\","
"        \"sha256\":\"" H(d) "\",\"size\":60}}}}},"
"  \"busy:1:amd64:default\":{\"aliases\":\"busy\",\"arch\":\"amd64\",\"os\":\"BusyBox\","
"   \"release\":\"1\",\"versions\":{"
"    \"20240301\":{\"items\":{"
"      \"unified\":{\"ftype\":\"lxd_combined.tar.gz\",\"path\":\"images/b/lxd.tar.gz\","
"        \"sha256\":\"" H(E) "\",\"size\":70}}}}},"
"  \"broken:1:amd64:default\":{\"aliases\":\"broken\",\"arch\":\"amd64\",\"versions\":{"
"    \"20250101\":{\"items\":{"
"      \"lxd.tar.xz\":{\"ftype\":\"lxd.tar.xz\",\"path\":\"images/x/lxd.tar.xz\",\"size\":1,"
"        \"combined_squashfs_sha256\":\"" H(f) "\"},"
"      \"root\":{\"ftype\":\"squashfs\",\"path\":\"../../etc/passwd\",\"sha256\":\"" H(f) "\","
"        \"size\":1}}}}}"
"}}";
/* clang-format on */

static json_t *load(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);

	if (!j)
		printf("# fixture: %s (line %d col %d)\n", e.text, e.line, e.column);
	return j;
}

static struct lxm_sstreams_image *by(struct lxm_sstreams_image **imgs, size_t n,
				     const char *product, const char *type)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(imgs[i]->product, product) == 0 && strcmp(imgs[i]->type, type) == 0)
			return imgs[i];
	return NULL;
}

static void test_index(void)
{
	_cleanup_json_ json_t *j = load(index_json);
	_cleanup_strv_ char **paths = NULL;
	struct lxm_error *err = NULL;
	int r;

	r = lxm_sstreams_parse_index(j, &paths, &err);
	is_int(r, 0, "index.json parses");
	ok(paths && paths[0] && strcmp(paths[0], "streams/v1/images.json") == 0 && !paths[1],
	   "only the image-downloads stream is listed");

	static const char *const bad[] = {
		"[]",
		"{\"format\":\"index:1.0\"}",
		"{\"index\":{\"x\":{\"datatype\":\"image-ids\",\"path\":\"a.json\"}}}",
		"{\"index\":{\"x\":{\"datatype\":\"image-downloads\"}}}",
		"{\"index\":{\"x\":{\"datatype\":\"image-downloads\",\"path\":\"../x.json\"}}}",
		"{\"index\":{\"x\":{\"datatype\":\"image-downloads\",\"path\":\"https://e/x\"}}}",
		"{\"index\":{\"x\":3}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		_cleanup_json_ json_t *b = load(bad[i]);
		_cleanup_strv_ char **p = NULL;
		_cleanup_error_ struct lxm_error *e = NULL;

		r = lxm_sstreams_parse_index(b, &p, &e);
		ok(r < 0 && e && e->status == 400 && strstr(e->msg, "index.json"),
		   "malformed index %zu refused: %s", i, e ? e->msg : "(no error)");
	}
}

static void test_catalogue(void)
{
	_cleanup_json_ json_t *j = load(products_json);
	struct lxm_sstreams_image **imgs = NULL, *img, *found = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	size_t n = 0;
	int r;

	r = lxm_sstreams_parse_catalogue(j, &imgs, &n, &err);
	is_int(r, 0, "images.json parses");
	/* debian amd64: container + vm; debian arm64: container; busy: container; broken: none. */
	is_int(n, 4, "four images: the broken product has no complete item set");
	ok(!by(imgs, n, "broken:1:amd64:default", "container"),
	   "items without sha256 or with a '..' path are left out");

	img = by(imgs, n, "debian:12:amd64:default", "container");
	ok(img != NULL, "debian amd64 container found");
	if (img) {
		is_str(img->version, "20250102_11:30", "the latest version is chosen");
		is_str(img->architecture, "x86_64", "amd64 is named x86_64");
		is_str(img->rootfs_ftype, "squashfs", "squashfs is preferred over root.tar.xz");
		is_str(img->fingerprint, H(6), "fingerprint = combined_squashfs_sha256");
		is_str(img->meta_path, "images/d/new/lxd.tar.xz", "metadata path");
		is_str(img->meta_sha256, H(4), "metadata sha256");
		is_int(img->meta_size, 11, "metadata size");
		is_str(img->rootfs_path, "images/d/new/rootfs.squashfs", "rootfs path");
		is_str(img->rootfs_sha256, H(9), "rootfs sha256");
		is_int(img->rootfs_size, 40, "rootfs size");
		is_int(img->created_at, 1735817400, "created_at from the version key (UTC)");
		is_int(json_array_size(img->aliases), 3, "three aliases");
		is_str(json_string_value(json_array_get(img->aliases, 1)), "debian/bookworm",
		       "blanks around alias names are dropped");
		is_str(json_string_value(json_object_get(img->properties, "os")), "Debian",
		       "property os");
		is_str(json_string_value(json_object_get(img->properties, "architecture")), "amd64",
		       "property architecture keeps Debian's name");
		is_str(json_string_value(json_object_get(img->properties, "description")),
		       "Debian 12 amd64 (default) (20250102_11:30)", "property description");
	}

	img = by(imgs, n, "debian:12:amd64:default", "virtual-machine");
	ok(img && strcmp(img->fingerprint, H(7)) == 0 &&
		   strcmp(img->rootfs_ftype, "disk-kvm.img") == 0,
	   "vm image: disk-kvm.img with combined_disk-kvm-img_sha256");

	img = by(imgs, n, "debian:12:arm64:default", "container");
	ok(img && strcmp(img->architecture, "aarch64") == 0 &&
		   strcmp(img->rootfs_ftype, "root.tar.xz") == 0 &&
		   strcmp(img->fingerprint, FP_ARM) == 0,
	   "arm64 container: root.tar.xz with combined_rootxz_sha256, aarch64");

	img = by(imgs, n, "busy:1:amd64:default", "container");
	ok(img && !img->rootfs_path && strcmp(img->fingerprint, SHA("e")) == 0,
	   "unified image: fingerprint is the file's sha256, lowercased");
	ok(img && img->created_at == 1709251200, "a date-only version key gives midnight UTC");

	/* Lookups. */
	r = lxm_sstreams_lookup(imgs, n, "debian/12", "x86_64", NULL, &found, &err);
	ok(r == 0 && found && strcmp(found->architecture, "x86_64") == 0 &&
		   strcmp(found->type, "container") == 0,
	   "alias + x86_64 -> the amd64 container");
	r = lxm_sstreams_lookup(imgs, n, "debian/bookworm", "aarch64", NULL, &found, &err);
	ok(r == 0 && found && strcmp(found->product, "debian:12:arm64:default") == 0,
	   "alias + aarch64 -> the arm64 image");
	r = lxm_sstreams_lookup(imgs, n, "debian/12/arm64", "x86_64", NULL, &found, &err);
	ok(r == 0 && found && strcmp(found->architecture, "aarch64") == 0,
	   "alias/ARCH names the architecture itself");
	r = lxm_sstreams_lookup(imgs, n, "debian/12", "x86_64", "virtual-machine", &found, &err);
	ok(r == 0 && found && strcmp(found->fingerprint, H(7)) == 0, "type virtual-machine");
	r = lxm_sstreams_lookup(imgs, n, "debian/12/default", "aarch64", NULL, &found, &err);
	ok(r == -ENOENT && err && err->status == 404 && strstr(err->msg, "debian/12/default"),
	   "an alias only another architecture has: 404 (%s)", err ? err->msg : "");
	lxm_error_free(TAKE_PTR(err));
	r = lxm_sstreams_lookup(imgs, n, "busy", "aarch64", NULL, &found, &err);
	ok(r == -ENOENT && err && err->status == 404, "busy has no aarch64 image: 404");
	lxm_error_free(TAKE_PTR(err));

	r = lxm_sstreams_lookup(imgs, n, "666", NULL, NULL, &found, &err);
	ok(r == 0 && found && strcmp(found->fingerprint, H(6)) == 0, "unique fingerprint prefix");
	r = lxm_sstreams_lookup(imgs, n, "EEEE", "x86_64", NULL, &found, &err);
	ok(r == 0 && found && strcmp(found->product, "busy:1:amd64:default") == 0,
	   "fingerprint prefixes are case-insensitive");
	r = lxm_sstreams_lookup(imgs, n, H(7), NULL, NULL, &found, &err);
	ok(r == 0 && found && strcmp(found->type, "virtual-machine") == 0,
	   "a full fingerprint finds a vm image whatever the type asked");
	r = lxm_sstreams_lookup(imgs, n, "6", NULL, NULL, &found, &err);
	ok(r == -EEXIST && err && err->status == 409, "ambiguous prefix: 409 (%s)",
	   err ? err->msg : "");
	lxm_error_free(TAKE_PTR(err));
	r = lxm_sstreams_lookup(imgs, n, "0123", NULL, NULL, &found, &err);
	ok(r == -ENOENT && err && err->status == 404, "unknown prefix: 404");
	lxm_error_free(TAKE_PTR(err));

	lxm_sstreams_images_free(imgs, n);
}

static void test_malformed(void)
{
	static const char *const bad[] = {
		"[]",
		"{\"content_id\":\"images\"}",
		"{\"products\":[]}",
		"{\"products\":{\"p\":[]}}",
		"{\"products\":{\"p\":{\"versions\":{}}}}",
		"{\"products\":{\"p\":{\"arch\":\"amd64\"}}}",
		"{\"products\":{\"p\":{\"arch\":\"amd64\",\"versions\":[]}}}",
		"{\"products\":{\"p\":{\"arch\":\"amd64\",\"versions\":{\"1\":{}}}}}",
		"{\"products\":{\"p\":{\"arch\":\"amd64\",\"versions\":{\"1\":{\"items\":[]}}}}}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		_cleanup_json_ json_t *j = load(bad[i]);
		_cleanup_error_ struct lxm_error *err = NULL;
		struct lxm_sstreams_image **imgs = NULL;
		size_t n = 0;
		int r = lxm_sstreams_parse_catalogue(j, &imgs, &n, &err);

		ok(r == -EINVAL && err && err->status == 400 && n == 0,
		   "malformed catalogue %zu refused: %s", i, err ? err->msg : "(no error)");
		lxm_sstreams_images_free(imgs, n);
	}
}

static void test_new(void)
{
	static const char *const bad[] = { "http://127.0.0.1:8443", "ftp://x", "https://",
					   "127.0.0.1", "https://a b" };
	struct lxm_sstreams *s = NULL;
	struct lxm_error *err = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = lxm_sstreams_new(bad[i], NULL, &s, &err);

		ok(r < 0 && err && err->status == 400, "server '%s' refused: %s", bad[i],
		   err ? err->msg : "(no error)");
		lxm_error_free(TAKE_PTR(err));
	}
	ok(lxm_sstreams_new("https://images.example/", NULL, &s, &err) == 0 && s,
	   "https server accepted");
	lxm_sstreams_free(s);
	is_str(lxm_sstreams_arch_name("ppc64el"), "ppc64le", "ppc64el -> ppc64le");
	is_str(lxm_sstreams_arch_name("x86_64"), "x86_64", "kernel names pass through");
}

/* The JSON form lxm-imagetool hands images on in: the same image back, and checked. */
static void test_json(void)
{
	_cleanup_json_ json_t *j = load(products_json);
	struct lxm_sstreams_image **imgs = NULL, *back = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	size_t n = 0;
	bool same = true;
	int r;

	r = lxm_sstreams_parse_catalogue(j, &imgs, &n, &err);
	is_int(r, 0, "images.json parses");
	for (size_t i = 0; i < n; i++) {
		_cleanup_json_ json_t *a = lxm_sstreams_image_to_json(imgs[i]), *b = NULL;

		r = a ? lxm_sstreams_image_from_json(a, &back, &err) : -ENOMEM;
		b = r == 0 ? lxm_sstreams_image_to_json(back) : NULL;
		same = same && b && json_equal(a, b) && back->meta_size == imgs[i]->meta_size &&
		       back->created_at == imgs[i]->created_at &&
		       (back->rootfs_path != NULL) == (imgs[i]->rootfs_path != NULL);
		lxm_sstreams_image_free(TAKE_PTR(back));
	}
	ok(n > 0 && same, "every image of the catalogue comes back from its JSON unchanged");
	if (n > 0) {
		_cleanup_json_ json_t *a = lxm_sstreams_image_to_json(imgs[0]);

		json_object_set_new(a, "meta_path", json_string("../../etc/shadow"));
		r = lxm_sstreams_image_from_json(a, &back, &err);
		ok(r == -EINVAL && err && err->status == 400, "a '..' path is refused: %s",
		   err ? err->msg : "(no error)");
		lxm_error_free(TAKE_PTR(err));
		json_object_del(a, "fingerprint");
		r = lxm_sstreams_image_from_json(a, &back, &err);
		ok(r == -EINVAL && err && err->status == 400, "no fingerprint is refused: %s",
		   err ? err->msg : "(no error)");
	}
	lxm_sstreams_images_free(imgs, n);
}

/* ---------------------------------------------------------------- client mode */

static int print_image(const struct lxm_sstreams_image *img)
{
	_cleanup_json_ json_t *j = lxm_sstreams_image_to_json(img);
	_cleanup_free_ char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	if (!s)
		return 1;
	printf("%s\n", s);
	return 0;
}

static uint64_t last_done;

static int on_progress(uint64_t done, uint64_t total, void *ud)
{
	(void)ud;
	if (done < last_done || done > total)
		fprintf(stderr, "progress went wrong: %llu of %llu\n", (unsigned long long)done,
			(unsigned long long)total);
	last_done = done;
	return 0;
}

static int client(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_sstreams *s = NULL;
	const char *ca = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
	int r, rc = 1;

	r = lxm_sstreams_new(argv[2], ca, &s, &err);
	if (r < 0)
		goto out;
	if (strcmp(argv[1], "list") == 0 && argc == 4) {
		struct lxm_sstreams_image **imgs = NULL;
		size_t n = 0;

		r = lxm_sstreams_list(s, &imgs, &n, &err);
		if (r < 0)
			goto out;
		rc = 0;
		for (size_t i = 0; i < n; i++)
			rc |= print_image(imgs[i]);
		lxm_sstreams_images_free(imgs, n);
	} else if ((strcmp(argv[1], "find") == 0 && (argc == 6 || argc == 7)) ||
		   (strcmp(argv[1], "download") == 0 && argc == 7)) {
		bool download = strcmp(argv[1], "download") == 0;
		const char *arch = strcmp(argv[5], "-") == 0 ? NULL : argv[5];
		struct lxm_sstreams_image *img = NULL;

		r = lxm_sstreams_find(s, argv[4], arch, !download && argc == 7 ? argv[6] : NULL,
				      &img, &err);
		if (r < 0)
			goto out;
		if (download)
			r = lxm_sstreams_download(s, img, argv[6], on_progress, NULL, &err);
		if (r >= 0)
			rc = print_image(img);
		if (download && r >= 0 && last_done != img->meta_size + img->rootfs_size) {
			fprintf(stderr, "progress ended at %llu\n", (unsigned long long)last_done);
			rc = 1;
		}
		lxm_sstreams_image_free(img);
	} else {
		fprintf(stderr, "usage: %s list|find|download URL CA [NAME ARCH [TYPE|DIR]]\n",
			argv[0]);
		rc = 2;
	}
out:
	if (r < 0)
		fprintf(stderr, "error: %s\n", err ? err->msg : strerror(-r));
	lxm_sstreams_free(s);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 4)
		return client(argc, argv);
	test_index();
	test_catalogue();
	test_malformed();
	test_new();
	test_json();
	return tap_done();
}
