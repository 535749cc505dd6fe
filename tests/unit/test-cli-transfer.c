/* lxm/image-transfer.c: the multipart/form-data writer (lxm_body_multipart) and the streaming
 * reader (lxm_mp_*): round trips through reads of every size, boundaries split across reads,
 * parts cut short, a missing closing boundary, oversized headers, and content that looks like
 * a boundary. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/util.h"
#include "lxm/image-transfer.h"
#include "tests/unit/tap.h"

/* What a reader saw: the parts' names and contents, in order. */
struct seen {
	char names[4][64]; /* name/filename of each part */
	char *data[4];	   /* each part's bytes */
	size_t len[4];	   /* and their count */
	int nparts;	   /* parts begun */
	int fail_begin;	   /* an error begin() returns, 0 for none */
};

static void seen_done(struct seen *s)
{
	for (int i = 0; i < 4; i++)
		free(s->data[i]);
}

static int on_begin(const char *name, const char *filename, void *ud)
{
	struct seen *s = ud;

	if (s->fail_begin)
		return s->fail_begin;
	if (s->nparts >= 4)
		return -E2BIG;
	snprintf(s->names[s->nparts], sizeof(s->names[0]), "%s/%s", name ? name : "-",
		 filename ? filename : "-");
	s->nparts++;
	return 0;
}

static int on_data(const char *d, size_t n, void *ud)
{
	struct seen *s = ud;
	int i = s->nparts - 1;
	char *grown;

	if (i < 0)
		return -EPROTO;
	grown = realloc(s->data[i], s->len[i] + n);
	if (!grown)
		return -ENOMEM;
	memcpy(grown + s->len[i], d, n);
	s->data[i] = grown;
	s->len[i] += n;
	return 0;
}

/* Feeds body to a reader for content_type in pieces of step bytes (0: one piece); returns the
 * first error, or 0, and the reader's final state. */
static int feed(const char *content_type, const char *body, size_t len, size_t step, struct seen *s,
		enum lxm_mp_state *state)
{
	struct lxm_mp m = {};
	int r;

	r = lxm_mp_init(&m, content_type);
	m.begin = on_begin;
	m.data = on_data;
	m.ud = s;
	for (size_t off = 0; r >= 0 && off < len;) {
		size_t n = step && len - off > step ? step : len - off;

		r = lxm_mp_feed(&m, body + off, n);
		off += n;
	}
	*state = m.state;
	lxm_mp_done(&m);
	return r;
}

/* A body made by lxm_body_multipart around two memory "files", read back with lxm_body_read
 * in pieces of rstep bytes. */
static char *write_body(const char *meta, size_t meta_len, const char *rootfs, size_t rootfs_len,
			size_t rstep, size_t *ret_len, char **ret_ctype)
{
	struct lxm_segment ms = { .mem = meta, .len = meta_len, .fd = -1 };
	struct lxm_segment rs = { .mem = rootfs, .len = rootfs_len, .fd = -1 };
	struct lxm_body b = {};
	char *out = NULL, buf[4096];
	size_t len = 0;
	ssize_t n;

	if (lxm_body_multipart(&b, &ms, "meta.tar.xz", &rs, "root.squashfs") < 0)
		abort();
	while ((n = lxm_body_read(buf, rstep < sizeof(buf) ? rstep : sizeof(buf), &b)) > 0) {
		out = realloc(out, len + (size_t)n);
		if (!out)
			abort();
		memcpy(out + len, buf, (size_t)n);
		len += (size_t)n;
	}
	if (n < 0 || (int64_t)len != lxm_body_size(&b))
		abort();
	*ret_ctype = strdup(b.content_type);
	lxm_body_done(&b);
	*ret_len = len;
	return out;
}

static void test_round_trip(void)
{
	/* Binary content with CRLFs, NULs and text that looks like a delimiter. */
	static const char meta[] = "\x1f\x8b\0\r\n--lxm-\r\n--\r\n\r\nmetadata";
	char rootfs[70000];
	_cleanup_free_ char *body = NULL, *ctype = NULL;
	size_t len, steps[] = { 0, 1, 2, 3, 7, 63, 64, 65, 4096 };

	for (size_t i = 0; i < sizeof(rootfs); i++)
		rootfs[i] = (char)(i * 7 + i / 251);
	memcpy(rootfs + 100, "\r\n--lxm-", 8);
	body = write_body(meta, sizeof(meta) - 1, rootfs, sizeof(rootfs), 1000, &len, &ctype);
	ok(strncmp(ctype, "multipart/form-data; boundary=lxm-", 34) == 0 && strlen(ctype) == 66,
	   "writer: content type with a random boundary (%s)", ctype);
	ok(strstr(body, "name=\"metadata\"; filename=\"meta.tar.xz\"") != NULL,
	   "writer: the metadata part names its file");

	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		struct seen s = {};
		enum lxm_mp_state st;
		int r = feed(ctype, body, len, steps[k], &s, &st);

		ok(r == 0 && st == LXM_MP_DONE && s.nparts == 2, "reads of %zu: two parts, done",
		   steps[k]);
		ok(streq(s.names[0], "metadata/meta.tar.xz") &&
			   streq(s.names[1], "rootfs/root.squashfs"),
		   "reads of %zu: part names and file names", steps[k]);
		ok(s.len[0] == sizeof(meta) - 1 && memcmp(s.data[0], meta, s.len[0]) == 0,
		   "reads of %zu: metadata intact", steps[k]);
		ok(s.len[1] == sizeof(rootfs) && memcmp(s.data[1], rootfs, s.len[1]) == 0,
		   "reads of %zu: rootfs intact", steps[k]);
		seen_done(&s);
	}
	/* The writer's own reads in tiny pieces give the same bytes. */
	{
		_cleanup_free_ char *body2 = NULL, *ctype2 = NULL;
		size_t len2;

		body2 = write_body(meta, sizeof(meta) - 1, rootfs, sizeof(rootfs), 3, &len2,
				   &ctype2);
		ok(len2 == len && strncmp(ctype2, ctype, 34) == 0 && !streq(ctype2, ctype),
		   "writer: reads of 3 bytes give a body of the same length, another boundary");
	}
}

static const char ct[] = "multipart/form-data; boundary=XyZ";

static void test_malformed(void)
{
	static const char good_part[] = "--XyZ\r\n"
					"Content-Disposition: form-data; name=\"metadata\"\r\n"
					"\r\n"
					"abc--XyZdef\r\n--XyYz\r\n-";
	struct seen s = {};
	enum lxm_mp_state st;
	_cleanup_free_ char *big = NULL;
	char *body;
	int r;

	/* Cut short inside a part: no error while feeding, but not done, and nothing of what
	 * may be a delimiter was passed on as content. */
	r = feed(ct, good_part, sizeof(good_part) - 1, 5, &s, &st);
	ok(r == 0 && st == LXM_MP_BODY, "cut short: the reader is still in the part");
	ok(s.nparts == 1 && s.len[0] >= 11 && memcmp(s.data[0], "abc--XyZdef", 11) == 0,
	   "cut short: bytes like a boundary inside content are content");
	seen_done(&s);

	/* A whole part but no closing delimiter. */
	s = (struct seen){};
	body = "--XyZ\r\nContent-Disposition: form-data; name=\"rootfs\"\r\n\r\nDATA\r\n--XyZ";
	r = feed(ct, body, strlen(body), 0, &s, &st);
	ok(r == 0 && st == LXM_MP_AFTER, "no closing boundary: not done");
	ok(s.nparts == 1 && s.len[0] == 4 && memcmp(s.data[0], "DATA", 4) == 0,
	   "no closing boundary: the part's content is complete");
	seen_done(&s);

	/* Closed: done, and an epilogue is ignored. */
	s = (struct seen){};
	body = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"rootfs\"\r\n\r\n"
	       "DATA\r\n--XyZ--\r\nepilogue";
	r = feed(ct, body, strlen(body), 1, &s, &st);
	ok(r == 0 && st == LXM_MP_DONE && s.nparts == 1 && s.len[0] == 4,
	   "a preamble and an epilogue are skipped");
	seen_done(&s);

	/* A delimiter followed by neither CRLF nor "--". */
	s = (struct seen){};
	body = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XyZ!!";
	r = feed(ct, body, strlen(body), 0, &s, &st);
	ok(r == -EPROTO, "garbage after a delimiter: -EPROTO");
	seen_done(&s);

	/* Headers over the limit, fed in pieces. */
	s = (struct seen){};
	big = calloc(1, LXM_MP_HEADERS_MAX + 100);
	strcpy(big, "--XyZ\r\nX-Long: ");
	memset(big + strlen(big), 'a', LXM_MP_HEADERS_MAX + 50);
	r = feed(ct, big, strlen(big), 1000, &s, &st);
	ok(r == -EPROTO && s.nparts == 0, "headers over %d bytes: -EPROTO", LXM_MP_HEADERS_MAX);
	seen_done(&s);

	/* Headers just under the limit are fine. */
	s = (struct seen){};
	free(big);
	big = calloc(1, LXM_MP_HEADERS_MAX + 200);
	strcpy(big, "--XyZ\r\nContent-Disposition: form-data; name=\"m\"\r\nX-Pad: ");
	memset(big + strlen(big), 'b', LXM_MP_HEADERS_MAX - 200);
	strcat(big, "\r\n\r\nok\r\n--XyZ--");
	r = feed(ct, big, strlen(big), 999, &s, &st);
	ok(r == 0 && st == LXM_MP_DONE && s.nparts == 1 && s.len[0] == 2,
	   "headers under the limit are accepted");
	seen_done(&s);

	/* A callback's error stops the reader. */
	s = (struct seen){ .fail_begin = -EEXIST };
	r = feed(ct, good_part, sizeof(good_part) - 1, 0, &s, &st);
	ok(r == -EEXIST, "a callback's error is returned");
	seen_done(&s);

	/* Content types without a usable boundary. */
	{
		struct lxm_mp m = {};

		ok(lxm_mp_init(&m, "multipart/form-data") == -EPROTO, "no boundary: -EPROTO");
		lxm_mp_done(&m);
		m = (struct lxm_mp){};
		ok(lxm_mp_init(&m, "multipart/form-data; boundary=") == -EPROTO,
		   "empty boundary: -EPROTO");
		lxm_mp_done(&m);
		m = (struct lxm_mp){};
		ok(lxm_mp_init(&m, "multipart/form-data; boundary=\"q b\"") == 0 &&
			   streq(m.delim, "\r\n--q b"),
		   "quoted boundary");
		lxm_mp_done(&m);
	}
}

static void test_header_param(void)
{
	_cleanup_free_ char *a =
		lxm_header_param("form-data; name=\"x\"; filename=\"y z\"", "filename");
	_cleanup_free_ char *b = lxm_header_param("form-data; name=\"x\"; filename=\"y\"", "name");
	_cleanup_free_ char *c = lxm_header_param("attachment; filename=f.tar; x=1", "filename");
	_cleanup_free_ char *d = lxm_header_param("attachment", "filename");
	_cleanup_free_ char *e = lxm_safe_filename("/tmp/a\"b\\c\nd");

	ok(a && streq(a, "y z"), "quoted parameter");
	ok(b && streq(b, "x"), "name is not confused with filename");
	ok(c && streq(c, "f.tar"), "unquoted parameter");
	ok(!d, "absent parameter");
	ok(e && streq(e, "a_b_c_d"), "safe file name: last component, no quotes or controls");
}

int main(void)
{
	test_round_trip();
	test_malformed();
	test_header_param();
	return tap_done();
}
