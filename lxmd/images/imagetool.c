/* lxm-imagetool: the image work that needs libarchive or libcurl, as a program of its own that
 * lxmd (and, for simplestreams remotes, lxm) runs as a child process. Keeping it out of the
 * daemon does two things: lxmd does not map libarchive, libcurl and their dependencies (libxml2,
 * ICU, the TLS stack, ...), which is most of its memory beyond its own code; and untrusted image
 * tarballs and server answers are parsed in a short-lived process, so a bug in a parser cannot
 * corrupt or crash the daemon that holds every container's state.
 *
 * Protocol: arguments select the work; progress goes to stdout as "progress DONE TOTAL" lines;
 * results go to stdout as described per subcommand; a failure ends with the exit status 1 (3
 * when ss-list or ss-find refused the server's URL before any transfer) and,
 * as the last line of stderr, "error STATUS ERRNO MESSAGE" (the lxm_error's HTTP status, its
 * positive errno, its message unchanged), which the caller turns back into an lxm_error. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "cleanup.h"
#include "error.h"
#include "images/archive.h"
#include "json.h"
#include "simplestreams.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_sstreams *, lxm_sstreams_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_sstreams_image *, lxm_sstreams_image_free)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s unpack unified|metadata|rootfs PATH DEST\n"
		"       %s read-metadata PATH\n"
		"       %s sha256 FILE...\n"
		"       %s pack --compression none|gzip|xz|zstd --metadata FILE|- [--templates DIR]"
		" [--disk FILE --boot DIR] ROOTFS_DIR|- OUT\n"
		"       %s ss-list SERVER CAFILE|-\n"
		"       %s ss-find SERVER CAFILE|- NAME ARCH|- [TYPE]\n"
		"       %s ss-download SERVER CAFILE|- DIR < IMAGE.json\n"
		"\n"
		"Run by lxmd and lxm, not by hand. Progress: \"progress DONE TOTAL\" lines on\n"
		"stdout; a failure: exit status 1 and \"error STATUS ERRNO MESSAGE\" on stderr.\n",
		LXM_IMAGETOOL_NAME, LXM_IMAGETOOL_NAME, LXM_IMAGETOOL_NAME, LXM_IMAGETOOL_NAME,
		LXM_IMAGETOOL_NAME, LXM_IMAGETOOL_NAME, LXM_IMAGETOOL_NAME);
}

/* Reports err (or, without one, the errno k) in the form the callers parse. */
static int fail(int k, struct lxm_error *err)
{
	if (err)
		fprintf(stderr, "error %d %d %s\n", err->status, err->errnum, err->msg);
	else
		fprintf(stderr, "error 500 %d %s\n", -k, strerror(-k));
	return 1;
}

static int bad_usage(const char *what)
{
	fprintf(stderr, "error 500 %d %s: %s (see --help)\n", EINVAL, LXM_IMAGETOOL_NAME, what);
	return 2;
}

/* lxm_progress_fn and lxm_sstreams_progress_fn: one line per report. A caller that went away
 * (stdout closed) cancels the work. */
static int progress_line(uint64_t done, uint64_t total, void *ud)
{
	if (printf("progress %" PRIu64 " %" PRIu64 "\n", done, total) < 0 || fflush(stdout) != 0)
		return 1;
	return 0;
}

static int cmd_unpack(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	enum lxm_archive_kind kind;
	int k;

	if (streq(argv[1], "unified"))
		kind = LXM_ARCHIVE_UNIFIED;
	else if (streq(argv[1], "metadata"))
		kind = LXM_ARCHIVE_METADATA;
	else if (streq(argv[1], "rootfs"))
		kind = LXM_ARCHIVE_ROOTFS;
	else
		return bad_usage("unpack: KIND is unified, metadata or rootfs");
	k = lxm_archive_unpack(argv[2], kind, argv[3], progress_line, NULL, &err);
	return k < 0 ? fail(k, err) : 0;
}

static int cmd_read_metadata(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int k;

	k = lxm_archive_read_metadata(argv[1], &text, &len, &err);
	if (k < 0)
		return fail(k, err);
	if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)
		return fail(-errno, NULL);
	return 0;
}

static int cmd_sha256(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	char fp[65];
	int k;

	k = lxm_sha256_files((const char *const *)argv + 1, (size_t)argc - 1, fp, &err);
	if (k < 0)
		return fail(k, err);
	printf("%s\n", fp);
	return 0;
}

static int cmd_pack(int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_free_ char *yaml = NULL;
	const char *metadata = NULL, *templates = NULL, *disk = NULL, *boot = NULL;
	enum lxm_compression c = LXM_COMPRESS_GZIP;
	size_t len = 0;
	char fp[65];
	int i, k;

	for (i = 1; i + 1 < argc && startswith(argv[i], "--"); i += 2) {
		if (streq(argv[i], "--compression")) {
			if (lxm_compression_from_name(argv[i + 1], &c) < 0)
				return bad_usage("pack: unknown compression");
		} else if (streq(argv[i], "--metadata")) {
			metadata = argv[i + 1];
		} else if (streq(argv[i], "--templates")) {
			templates = argv[i + 1];
		} else if (streq(argv[i], "--disk")) {
			disk = argv[i + 1];
		} else if (streq(argv[i], "--boot")) {
			boot = argv[i + 1];
		} else {
			return bad_usage("pack: unknown option");
		}
	}
	if (!metadata || argc - i != 2)
		return bad_usage("pack: --metadata, ROOTFS_DIR and OUT expected");
	/* A virtual machine's image: its disk stands for the rootfs tree ("-"). */
	if (!disk != !streq(argv[i], "-"))
		return bad_usage("pack: a ROOTFS_DIR, or --disk with ROOTFS_DIR -, expected");
	k = lxm_read_file(streq(metadata, "-") ? "/dev/stdin" : metadata, &yaml, &len);
	if (k < 0) {
		lxm_error_setx(&err, k, 500, "pack image: read metadata.yaml from %s",
			       streq(metadata, "-") ? "stdin" : metadata);
		return fail(k, err);
	}
	k = lxm_archive_pack(&(struct lxm_pack_source){ .metadata_yaml = yaml,
							.templates_dir = templates,
							.rootfs_dir = disk ? NULL : argv[i],
							.disk_image = disk,
							.boot_dir = boot },
			     argv[i + 1], c, fp, progress_line, NULL, &err);
	if (k < 0)
		return fail(k, err);
	printf("sha256 %s\n", fp);
	return 0;
}

/* The exit status when the server's URL itself is refused (before any transfer), so that a
 * caller can tell that from a failing transfer. */
#define EXIT_BAD_SERVER 3

/* SERVER CAFILE|-: the client for it. */
static int ss_open(char **argv, struct lxm_sstreams **ret, struct lxm_error **err)
{
	return lxm_sstreams_new(argv[0], streq(argv[1], "-") ? NULL : argv[1], ret, err);
}

/* ss_open() for ss-list and ss-find: 0, or (the error reported) EXIT_BAD_SERVER. */
static int ss_open_server(char **argv, struct lxm_sstreams **ret)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	int k = ss_open(argv, ret, &err);

	if (k < 0) {
		fail(k, err);
		return EXIT_BAD_SERVER;
	}
	return 0;
}

/* Prints o as one line of JSON. */
static int print_json(const json_t *o)
{
	_cleanup_free_ char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	if (!s)
		return fail(-ENOMEM, NULL);
	if (printf("%s\n", s) < 0 || fflush(stdout) != 0)
		return fail(-errno, NULL);
	return 0;
}

static int cmd_ss_list(int argc, char **argv)
{
	_cleanup_(lxm_sstreams_freep) struct lxm_sstreams *s = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_json_ json_t *all = json_array();
	struct lxm_sstreams_image **imgs = NULL;
	size_t n = 0;
	int k;

	if ((k = ss_open_server(argv + 1, &s)) != 0)
		return k;
	k = lxm_sstreams_list(s, &imgs, &n, &err);
	if (k < 0)
		return fail(k, err);
	for (size_t i = 0; k >= 0 && i < n; i++)
		k = all ? json_array_append_new(all, lxm_sstreams_image_to_json(imgs[i])) : -ENOMEM;
	lxm_sstreams_images_free(imgs, n);
	if (k < 0)
		return fail(-ENOMEM, NULL);
	return print_json(all);
}

static int cmd_ss_find(int argc, char **argv)
{
	_cleanup_(lxm_sstreams_freep) struct lxm_sstreams *s = NULL;
	_cleanup_(lxm_sstreams_image_freep) struct lxm_sstreams_image *img = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_json_ json_t *o = NULL;
	int k;

	if ((k = ss_open_server(argv + 1, &s)) != 0)
		return k;
	k = lxm_sstreams_find(s, argv[3], streq(argv[4], "-") ? NULL : argv[4],
			      argc == 6 ? argv[5] : NULL, &img, &err);
	if (k < 0)
		return fail(k, err);
	o = lxm_sstreams_image_to_json(img);
	return print_json(o);
}

static int cmd_ss_download(int argc, char **argv)
{
	_cleanup_(lxm_sstreams_freep) struct lxm_sstreams *s = NULL;
	_cleanup_(lxm_sstreams_image_freep) struct lxm_sstreams_image *img = NULL;
	_cleanup_error_ struct lxm_error *err = NULL;
	_cleanup_json_ json_t *o = NULL;
	json_error_t jerr;
	int k;

	o = json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr);
	if (!o) {
		lxm_error_set(&err, -EINVAL, 400, "image description on stdin: %s", jerr.text);
		return fail(-EINVAL, err);
	}
	k = lxm_sstreams_image_from_json(o, &img, &err);
	if (k >= 0)
		k = ss_open(argv + 1, &s, &err);
	if (k >= 0)
		k = lxm_sstreams_download(s, img, argv[3], progress_line, NULL, &err);
	return k < 0 ? fail(k, err) : 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;		   /* the subcommand */
		int min_args;			   /* arguments it needs after its name */
		int max_args;			   /* arguments it takes at most, -1: any */
		const char *expected;		   /* the usage error when the count is wrong */
		int (*run)(int argc, char **argv); /* argv[0] is the subcommand */
	} cmds[] = {
		{ "unpack", 3, 3, "unpack: KIND PATH DEST expected", cmd_unpack },
		{ "read-metadata", 1, 1, "read-metadata: PATH expected", cmd_read_metadata },
		{ "sha256", 1, -1, "sha256: FILE expected", cmd_sha256 },
		/* pack checks its options and arguments itself. */
		{ "pack", 0, -1, NULL, cmd_pack },
		{ "ss-list", 2, 2, "ss-list: SERVER CAFILE expected", cmd_ss_list },
		{ "ss-find", 4, 5, "ss-find: SERVER CAFILE NAME ARCH [TYPE] expected",
		  cmd_ss_find },
		{ "ss-download", 3, 3, "ss-download: SERVER CAFILE DIR expected", cmd_ss_download },
	};

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (streq(argv[1], "--help") || streq(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	/* Work for a caller that is gone is wasted: end with it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		int nargs = argc - 2;

		if (!streq(argv[1], cmds[i].name))
			continue;
		if (nargs < cmds[i].min_args || (cmds[i].max_args >= 0 && nargs > cmds[i].max_args))
			return bad_usage(cmds[i].expected);
		return cmds[i].run(argc - 1, argv + 1);
	}
	return bad_usage("unknown subcommand");
}
