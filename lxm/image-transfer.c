/* The transfers of lxm image import, export and copy (see image-transfer.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/commands.h"
#include "lxm/image-transfer.h"
#include "lxm/remotes.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free)

bool lxm_is_fingerprint_prefix(const char *s)
{
	if (!*s || strlen(s) > LXM_FP_LEN)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s) && !(*s >= 'a' && *s <= 'f'))
			return false;
	return true;
}

static char *hex_digest(const unsigned char *md, unsigned int len)
{
	char *s = malloc(2 * len + 1);

	for (unsigned int i = 0; s && i < len; i++)
		sprintf(s + 2 * i, "%02x", md[i]);
	return s;
}

/* ---- progress on a terminal ---- */

void lxm_progress_init(struct lxm_progress *p, const char *label, uint64_t total)
{
	*p = (struct lxm_progress){ .label = label, .total = total, .tty = isatty(STDOUT_FILENO) };
}

void lxm_progress_add(struct lxm_progress *p, size_t n)
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

void lxm_progress_end(struct lxm_progress *p)
{
	if (p->shown) {
		printf("\r\033[K");
		fflush(stdout);
		p->shown = false;
	}
}

/* ---- progress of operations ---- */

char *lxm_op_progress_text(struct lxm_op_progress *p, const json_t *op, uint64_t now_ms)
{
	const json_t *prog = json_object_get(json_object_get(op, "metadata"), "progress");
	const char *stage = json_string_value(json_object_get(prog, "stage"));
	uint64_t done = (uint64_t)json_integer_value(json_object_get(prog, "done"));
	uint64_t total = (uint64_t)json_integer_value(json_object_get(prog, "total"));
	json_int_t percent = json_integer_value(json_object_get(prog, "percent"));
	char pct[16] = "", rate[48] = "", size[32];
	char *text;

	if (!json_is_object(prog) || !stage)
		return NULL;
	if (!p->last_stage || !streq(p->last_stage, stage) || done < p->last_done) {
		/* A new stage: its rate starts over. */
		free(p->last_stage);
		p->last_stage = strdup(stage);
		p->last_done = done;
		p->last_ms = now_ms;
		p->rate = 0;
	} else if (now_ms - p->last_ms >= 500) {
		p->rate = (double)(done - p->last_done) * 1000.0 / (double)(now_ms - p->last_ms);
		p->last_done = done;
		p->last_ms = now_ms;
	}
	if (total)
		snprintf(pct, sizeof(pct), " %d%%", (int)(percent < 0 ? 0 : percent));
	if (p->rate >= 1)
		snprintf(rate, sizeof(rate), " (%s/s)",
			 lxm_format_bytes((uint64_t)p->rate, false, size));
	if (asprintf(&text, "%s%s%s", stage, pct, rate) < 0)
		return NULL;
	return text;
}

void lxm_op_progress_draw(const json_t *op, void *ud)
{
	struct lxm_op_progress *p = ud;
	_cleanup_free_ char *text = NULL;

	if (!op) {
		if (p->shown) {
			printf("\r\033[K");
			fflush(stdout);
			p->shown = false;
		}
		free(p->last_stage);
		p->last_stage = NULL;
		return;
	}
	text = lxm_op_progress_text(p, op, lxm_monotonic_ms());
	if (!text)
		return;
	printf("\r%s: %s\033[K", p->label, text);
	fflush(stdout);
	p->shown = true;
}

void lxm_show_op_progress(struct lxm_client *c, struct lxm_op_progress *p, const char *label)
{
	*p = (struct lxm_op_progress){ .label = label };
	if (isatty(STDOUT_FILENO))
		lxm_client_set_progress(c, lxm_op_progress_draw, p);
}

/* ---- uploads ---- */

ssize_t lxm_body_read(char *buf, size_t len, void *ud)
{
	struct lxm_body *b = ud;

	while (b->i < b->n) {
		struct lxm_segment *s = &b->seg[b->i];
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
			if (b->sha)
				EVP_DigestUpdate(b->sha, buf, (size_t)n);
			lxm_progress_add(&b->prog, (size_t)n);
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
char *lxm_safe_filename(const char *path)
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
	if (!fp || !lxm_is_fingerprint_prefix(fp) || strlen(fp) != LXM_FP_LEN)
		return lxm_error_set(err, -EPROTO, 502,
				     "the server did not say which image it made (no fingerprint "
				     "in the operation's metadata)");
	*ret_fp = strdup(fp);
	return *ret_fp ? 0 : lxm_error_set(err, -ENOMEM, 500, "out of memory");
}

/* Best effort: an image that must not stay (its content is not what was sent). */
void lxm_image_drop(struct lxm_client *c, const char *fp)
{
	_cleanup_error_ struct lxm_error *e = NULL;
	_cleanup_free_ char *path = lxm_cli_path("/1.0/images/", fp);

	if (path)
		lxm_client_do(c, "DELETE", path, NULL, NULL, &e);
}

static int open_file(const char *cmd, const char *path, struct lxm_segment *s,
		     struct lxm_error **err)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return lxm_error_setx(err, -errno, 400, "%s: %s: open", cmd, path);
	*s = (struct lxm_segment){ .fd = fd, .path = path };
	if (fstat(fd, &st) < 0)
		return lxm_error_setx(err, -errno, 400, "%s: %s: stat", cmd, path);
	if (!S_ISREG(st.st_mode))
		return lxm_error_set(err, -EINVAL, 400, "%s: %s: not a regular file", cmd, path);
	if (st.st_size == 0)
		return lxm_error_set(err, -EINVAL, 400, "%s: %s: the file is empty", cmd, path);
	s->len = (uint64_t)st.st_size;
	return 0;
}

void lxm_body_done(struct lxm_body *b)
{
	for (size_t i = 0; i < ARRAY_SIZE(b->framing); i++)
		free(b->framing[i]);
	free(b->content_type);
	*b = (struct lxm_body){};
}

int64_t lxm_body_size(const struct lxm_body *b)
{
	int64_t size = 0;

	for (size_t i = 0; i < b->n; i++)
		size += (int64_t)b->seg[i].len;
	return size;
}

static struct lxm_segment mem_segment(const char *s)
{
	return (struct lxm_segment){ .mem = s, .len = strlen(s), .fd = -1 };
}

int lxm_body_multipart(struct lxm_body *b, const struct lxm_segment *meta, const char *meta_name,
		       const struct lxm_segment *rootfs, const char *rootfs_name)
{
	static const char part[] =
		"Content-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
		"Content-Type: application/octet-stream\r\n\r\n";
	_cleanup_free_ char *p1 = NULL, *p2 = NULL;
	char hex[33];

	if (lxm_random_hex(hex, 16) < 0)
		return -EIO;
	if (asprintf(&p1, part, "metadata", meta_name) < 0) {
		p1 = NULL;
		return -ENOMEM;
	}
	if (asprintf(&p2, part, "rootfs", rootfs_name) < 0) {
		p2 = NULL;
		return -ENOMEM;
	}
	if (asprintf(&b->content_type, "multipart/form-data; boundary=lxm-%s", hex) < 0 ||
	    asprintf(&b->framing[0], "--lxm-%s\r\n%s", hex, p1) < 0 ||
	    asprintf(&b->framing[1], "\r\n--lxm-%s\r\n%s", hex, p2) < 0 ||
	    asprintf(&b->framing[2], "\r\n--lxm-%s--\r\n", hex) < 0)
		return -ENOMEM;
	b->n = 0;
	b->seg[b->n++] = mem_segment(b->framing[0]);
	b->seg[b->n++] = *meta;
	b->seg[b->n++] = mem_segment(b->framing[1]);
	b->seg[b->n++] = *rootfs;
	b->seg[b->n++] = mem_segment(b->framing[2]);
	return 0;
}

/* The sha256 of what went through sha, as hex; NULL when out of memory. */
static char *sha_hex(EVP_MD_CTX *sha)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_DigestFinal_ex(sha, md, &mdlen);
	return hex_digest(md, mdlen);
}

static EVP_MD_CTX *sha256_new(void)
{
	EVP_MD_CTX *sha = EVP_MD_CTX_new();

	if (sha && EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(sha);
		return NULL;
	}
	return sha;
}

static void segment_close(struct lxm_segment *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

int lxm_image_import_files(struct lxm_client *c, const char *cmd, const char *meta_path,
			   const char *rootfs_path, const struct lxm_image_upload *iu,
			   char **ret_fp, struct lxm_error **err)
{
	_cleanup_free_ char *meta_name = NULL, *rootfs_name = NULL, *fp = NULL, *local_fp = NULL;
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *sha = sha256_new();
	_cleanup_(segment_close) struct lxm_segment meta = { .fd = -1 };
	_cleanup_(segment_close) struct lxm_segment rootfs = { .fd = -1 };
	_cleanup_(lxm_body_done) struct lxm_body b = {};
	struct upload u = {};
	int r;

	if (!sha)
		return lxm_error_set(err, -ENOMEM, 500, "%s: cannot set up sha256", cmd);
	r = open_file(cmd, meta_path, &meta, err);
	if (r >= 0 && rootfs_path)
		r = open_file(cmd, rootfs_path, &rootfs, err);
	if (r < 0)
		return r;

	meta_name = lxm_safe_filename(meta_path);
	if (!meta_name)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	if (!rootfs_path) {
		b.seg[b.n++] = meta;
		u.content_type = "application/octet-stream";
		u.filename = meta_name;
	} else {
		rootfs_name = lxm_safe_filename(rootfs_path);
		r = rootfs_name ? lxm_body_multipart(&b, &meta, meta_name, &rootfs, rootfs_name)
				: -ENOMEM;
		if (r < 0)
			return lxm_error_setx(err, r, 500, "%s: set up the upload", cmd);
		u.content_type = b.content_type;
	}
	b.sha = sha;
	lxm_progress_init(&b.prog, "Uploading image", meta.len + rootfs.len);
	u.public = iu->public;
	u.properties = iu->properties;
	u.read = lxm_body_read;
	u.ud = &b;
	u.size = lxm_body_size(&b);

	r = post_image(c, &u, &fp, err);
	lxm_progress_end(&b.prog);
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
		return lxm_error_prefix(err, "import image '%s'", meta_path);
	}
	/* What the server stored must be what was sent. */
	local_fp = sha_hex(sha);
	if (!local_fp || !streq(local_fp, fp)) {
		lxm_image_drop(c, fp);
		return lxm_error_set(err, -EIO, 502,
				     "import image '%s': the server's fingerprint %s is not the "
				     "sha256 of what was sent (%s); the image was deleted",
				     meta_path, fp, local_fp ? local_fp : "?");
	}
	*ret_fp = TAKE_PTR(fp);
	return 0;
}

/* ---- multipart replies (split image exports) ---- */

void lxm_mp_done(struct lxm_mp *m)
{
	free(m->delim);
	free(m->buf);
}

/* The value of parameter key in a header value like `form-data; name="x"; filename="y"` or
 * `multipart/form-data; boundary=z`. */
char *lxm_header_param(const char *value, const char *key)
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

int lxm_mp_init(struct lxm_mp *m, const char *content_type)
{
	_cleanup_free_ char *boundary = lxm_header_param(content_type, "boundary");

	if (!boundary || !*boundary || strlen(boundary) > 200)
		return -EPROTO;
	/* The body starts with "--BOUNDARY": a leading CRLF lets one search find them all. */
	m->buf = strdup("\r\n");
	m->len = 2;
	if (!m->buf || asprintf(&m->delim, "\r\n--%s", boundary) < 0)
		return -ENOMEM;
	m->dlen = strlen(m->delim);
	m->state = LXM_MP_PREAMBLE;
	return 0;
}

static void mp_consume(struct lxm_mp *m, size_t n)
{
	memmove(m->buf, m->buf + n, m->len - n);
	m->len -= n;
}

static int mp_part_headers(struct lxm_mp *m, const char *h, size_t n)
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
			name = lxm_header_param(line, "name");
			filename = lxm_header_param(line, "filename");
		}
	}
	return m->begin(name, filename, m->ud);
}

int lxm_mp_feed(struct lxm_mp *m, const char *d, size_t n)
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
		case LXM_MP_PREAMBLE:
		case LXM_MP_BODY:
			p = memmem(m->buf, m->len, m->delim, m->dlen);
			if (!p) {
				/* Keep what could be the start of a delimiter. */
				size_t keep = m->dlen - 1, out;

				if (m->len <= keep)
					return 0;
				out = m->len - keep;
				if (m->state == LXM_MP_BODY &&
				    (r = m->data(m->buf, out, m->ud)) < 0)
					return r;
				mp_consume(m, out);
				return 0;
			}
			if (m->state == LXM_MP_BODY && p > m->buf &&
			    (r = m->data(m->buf, (size_t)(p - m->buf), m->ud)) < 0)
				return r;
			mp_consume(m, (size_t)(p - m->buf) + m->dlen);
			m->state = LXM_MP_AFTER;
			break;
		case LXM_MP_AFTER:
			if (m->len < 2)
				return 0;
			if (m->buf[0] == '-' && m->buf[1] == '-') {
				m->state = LXM_MP_DONE;
				break;
			}
			if (m->buf[0] != '\r' || m->buf[1] != '\n')
				return -EPROTO;
			mp_consume(m, 2);
			m->state = LXM_MP_HEADERS;
			break;
		case LXM_MP_HEADERS:
			p = memmem(m->buf, m->len, "\r\n\r\n", 4);
			if (!p)
				return m->len > 16384 ? -EPROTO : 0;
			r = mp_part_headers(m, m->buf, (size_t)(p - m->buf));
			if (r < 0)
				return r;
			mp_consume(m, (size_t)(p - m->buf) + 4);
			m->state = LXM_MP_BODY;
			break;
		case LXM_MP_DONE:
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
	struct lxm_progress prog; /* bytes received */
	bool multipart;		  /* a split image */
	struct lxm_mp mp;	  /* its reader */
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
	lxm_mp_done(&e->mp);
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
		if (lxm_mp_init(&e->mp, s->content_type) < 0)
			return lxm_error_set(&e->err, -EPROTO, 502,
					     "a multipart export without a boundary");
		return 0;
	}
	if (s->content_disposition)
		name = lxm_header_param(s->content_disposition, "filename");
	return export_open(e, 0, name);
}

static int export_sink(const char *d, size_t n, void *ud)
{
	struct export *e = ud;
	int r;

	lxm_progress_add(&e->prog, n);
	if (!e->multipart)
		return export_write(e, d, n);
	r = lxm_mp_feed(&e->mp, d, n);
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

void lxm_export_result_done(struct lxm_export_result *r)
{
	free(r->files[0]);
	free(r->files[1]);
	*r = (struct lxm_export_result){};
}

int lxm_image_export_files(struct lxm_client *c, const char *cmd, const char *fp, const char *dir,
			   const char *target_file, struct lxm_export_result *ret,
			   struct lxm_error **err)
{
	_cleanup_(export_done) struct export e = { .cur = -1 };
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *sha = sha256_new();
	_cleanup_free_ char *path = NULL, *got = NULL;
	struct lxm_stream s = {};
	int r;

	e.files[0].fd = e.files[1].fd = -1;
	path = lxm_cli_path("/1.0/images/", fp);
	if (!sha || !path || asprintf(&got, "%s/export", path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	e.cmd = cmd;
	e.fp = fp;
	e.dir = dir;
	e.sha = sha;
	lxm_progress_init(&e.prog, "Exporting image", 0);
	s.on_headers = export_on_headers;
	s.sink = export_sink;
	s.ud = &e;
	r = lxm_stream_request(c, "GET", got, &s, err);
	lxm_progress_end(&e.prog);
	if (r < 0 && e.err) {
		lxm_error_free(*err);
		*err = TAKE_PTR(e.err);
	}
	if (r >= 0 && !s.raw)
		r = lxm_error_set(err, -EPROTO, 502, "the server sent no image file");
	if (r >= 0 && e.multipart && (e.mp.state != LXM_MP_DONE || !e.files[1].tmp))
		r = lxm_error_set(err, -EPROTO, 502, "the split image's reply ended early (%s)",
				  e.files[1].tmp ? "no closing boundary" : "no rootfs part");
	if (r >= 0 && !e.files[0].tmp)
		r = lxm_error_set(err, -EPROTO, 502, "the server sent no image file");
	lxm_stream_done(&s);
	if (r < 0)
		return r;

	/* The files are kept only if they are the image the fingerprint names. */
	free(got);
	got = sha_hex(sha);
	if (!got || !streq(got, fp))
		return lxm_error_set(err, -EIO, 502,
				     "what was received has sha256 %s, not the image's fingerprint "
				     "%s; the files were deleted",
				     got ? got : "?", fp);
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
		ret->files[i] = TAKE_PTR(f->final);
	}
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
	int fd;			  /* the import's end */
	EVP_MD_CTX *sha;	  /* of the bytes read */
	struct lxm_progress prog; /* bytes copied */
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
	lxm_progress_add(&d->prog, (size_t)n);
	return n;
}

/* Copies image fp (Image object img) from src to dst. */
int lxm_image_copy_stream(struct lxm_client *src, const char *src_name, const char *fp,
			  const json_t *img, struct lxm_client *dst, bool public,
			  struct lxm_error **err)
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *sha = sha256_new();
	_cleanup_free_ char *path = NULL, *got = NULL, *name = NULL, *copied = NULL;
	struct pump p = { .src = src };
	struct drain d = {};
	struct upload u = {};
	int sv[2], r;
	pthread_t th;
	bool unified;

	path = lxm_cli_path("/1.0/images/", fp);
	if (!path || asprintf(&got, "%s/export", path) < 0 || !sha)
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
			name = lxm_header_param(p.s.content_disposition, "filename");
		lxm_progress_init(&d.prog, "Copying image",
				  p.s.content_length > 0 ? (uint64_t)p.s.content_length
							 : (uint64_t)json_integer_value(
								   json_object_get(img, "size")));
		u.content_type = p.s.content_type ? p.s.content_type : "application/octet-stream";
		u.filename = name && plain_name(name) ? name : NULL;
		u.public = public;
		u.properties = json_object_get(img, "properties");
		u.expected_fp = fp;
		u.read = drain_read;
		u.ud = &d;
		u.size = p.s.content_length;
		r = post_image(dst, &u, &copied, err);
		lxm_progress_end(&d.prog);
		if (r >= 0 && !streq(copied, fp)) {
			lxm_image_drop(dst, copied);
			r = lxm_error_set(err, -EIO, 502,
					  "the copy's fingerprint %s is not the image's %s; the "
					  "copy was deleted",
					  copied, fp);
		}
		if (r >= 0 && unified) {
			_cleanup_free_ char *local = NULL;

			local = sha_hex(sha);
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
