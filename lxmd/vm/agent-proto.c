/* The lxm agent protocol's framing, messages and flow control (agent-proto.h has the format).
 * Linked into lxmd and into the static agent: libc only, no logging. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/agent-proto.h"

#define MAGIC0 'L'
#define MAGIC1 'A'

static const char *const type_names[_LXM_AGENT_TYPE_MAX] = {
	[LXM_AGENT_HELLO] = "HELLO",
	[LXM_AGENT_EXEC] = "EXEC",
	[LXM_AGENT_STARTED] = "STARTED",
	[LXM_AGENT_STDIN] = "STDIN",
	[LXM_AGENT_STDIN_EOF] = "STDIN_EOF",
	[LXM_AGENT_STDOUT] = "STDOUT",
	[LXM_AGENT_STDERR] = "STDERR",
	[LXM_AGENT_RESIZE] = "RESIZE",
	[LXM_AGENT_SIGNAL] = "SIGNAL",
	[LXM_AGENT_EXIT] = "EXIT",
	[LXM_AGENT_FILE_GET] = "FILE_GET",
	[LXM_AGENT_FILE] = "FILE",
	[LXM_AGENT_FILE_PUT] = "FILE_PUT",
	[LXM_AGENT_DATA] = "DATA",
	[LXM_AGENT_END] = "END",
	[LXM_AGENT_RESULT] = "RESULT",
	[LXM_AGENT_ERROR] = "ERROR",
	[LXM_AGENT_WINDOW_MSG] = "WINDOW",
	[LXM_AGENT_CLOSE] = "CLOSE",
};

const char *lxm_agent_type_name(unsigned type)
{
	return type < _LXM_AGENT_TYPE_MAX && type_names[type] ? type_names[type] : "unknown";
}

bool lxm_agent_type_windowed(unsigned type)
{
	return type == LXM_AGENT_STDIN || type == LXM_AGENT_STDOUT || type == LXM_AGENT_STDERR ||
	       type == LXM_AGENT_DATA;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

int lxm_agent_frame_parse(const void *buf, size_t len, struct lxm_agent_frame *f, size_t *used)
{
	const uint8_t *p = buf;
	uint32_t n;

	/* The header is checked as far as it has arrived, so garbage is seen early. */
	if ((len >= 1 && p[0] != MAGIC0) || (len >= 2 && p[1] != MAGIC1) || (len >= 4 && p[3]))
		return -EBADMSG;
	if (len >= 3 && (p[2] == 0 || p[2] >= _LXM_AGENT_TYPE_MAX))
		return -EPROTO;
	if (len < LXM_AGENT_HDR_SIZE)
		return 0;
	n = get_be32(p + 8);
	if (n > LXM_AGENT_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (len - LXM_AGENT_HDR_SIZE < n)
		return 0;
	f->type = p[2];
	f->session = get_be32(p + 4);
	f->len = n;
	f->payload = p + LXM_AGENT_HDR_SIZE;
	*used = LXM_AGENT_HDR_SIZE + (size_t)n;
	return 1;
}

void lxm_agent_frame_header(uint8_t hdr[LXM_AGENT_HDR_SIZE], uint8_t type, uint32_t session,
			    uint32_t len)
{
	hdr[0] = MAGIC0;
	hdr[1] = MAGIC1;
	hdr[2] = type;
	hdr[3] = 0;
	put_be32(hdr + 4, session);
	put_be32(hdr + 8, len);
}

size_t lxm_agent_resync(const void *buf, size_t len)
{
	static const uint8_t want[8] = { MAGIC0, MAGIC1, LXM_AGENT_HELLO, 0, 0, 0, 0, 0 };
	const uint8_t *p = buf;

	/* A HELLO header: magic, type, no flags, session 0, a payload under 64 KiB. */
	for (size_t i = 0; i < len; i++) {
		size_t have = len - i < 10 ? len - i : 10;

		if (memcmp(p + i, want, have < 8 ? have : 8) == 0 && (have < 9 || p[i + 8] == 0) &&
		    (have < 10 || p[i + 9] == 0))
			return i;
	}
	return len;
}

static void enc_reserve(struct lxm_agent_enc *e, size_t n)
{
	size_t cap;
	uint8_t *d;

	if (e->err)
		return;
	if (e->len + n <= e->cap)
		return;
	cap = e->cap ? e->cap : 256;
	while (cap < e->len + n)
		cap *= 2;
	d = realloc(e->data, cap);
	if (!d) {
		e->err = -ENOMEM;
		return;
	}
	e->data = d;
	e->cap = cap;
}

void lxm_agent_enc_begin(struct lxm_agent_enc *e, uint8_t type, uint32_t session)
{
	e->start = e->len;
	enc_reserve(e, LXM_AGENT_HDR_SIZE);
	if (e->err)
		return;
	lxm_agent_frame_header(e->data + e->len, type, session, 0);
	e->len += LXM_AGENT_HDR_SIZE;
}

void lxm_agent_enc_bytes(struct lxm_agent_enc *e, const void *p, size_t n)
{
	if (e->len - e->start + n > LXM_AGENT_HDR_SIZE + LXM_AGENT_MAX_PAYLOAD && !e->err)
		e->err = -EMSGSIZE;
	enc_reserve(e, n);
	if (e->err || n == 0)
		return;
	memcpy(e->data + e->len, p, n);
	e->len += n;
}

void lxm_agent_enc_u16(struct lxm_agent_enc *e, uint16_t v)
{
	uint8_t b[2] = { v >> 8, v };

	lxm_agent_enc_bytes(e, b, 2);
}

void lxm_agent_enc_u32(struct lxm_agent_enc *e, uint32_t v)
{
	uint8_t b[4];

	put_be32(b, v);
	lxm_agent_enc_bytes(e, b, 4);
}

void lxm_agent_enc_u64(struct lxm_agent_enc *e, uint64_t v)
{
	lxm_agent_enc_u32(e, v >> 32);
	lxm_agent_enc_u32(e, (uint32_t)v);
}

void lxm_agent_enc_str(struct lxm_agent_enc *e, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n > LXM_AGENT_MAX_PAYLOAD) {
		if (!e->err)
			e->err = -EMSGSIZE;
		return;
	}
	lxm_agent_enc_u32(e, (uint32_t)n);
	lxm_agent_enc_bytes(e, s, n);
}

void lxm_agent_enc_strv(struct lxm_agent_enc *e, char *const *v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	if (n > LXM_AGENT_MAX_STRV) {
		if (!e->err)
			e->err = -E2BIG;
		return;
	}
	lxm_agent_enc_u32(e, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		lxm_agent_enc_str(e, v[i]);
}

int lxm_agent_enc_end(struct lxm_agent_enc *e)
{
	int r = e->err;

	if (r) {
		/* Drop the partial frame; the buffer keeps the whole frames before it. */
		e->len = e->start < e->len ? e->start : e->len;
		e->err = 0;
		return r;
	}
	put_be32(e->data + e->start + 8, (uint32_t)(e->len - e->start - LXM_AGENT_HDR_SIZE));
	e->start = e->len;
	return 0;
}

void lxm_agent_enc_consume(struct lxm_agent_enc *e, size_t n)
{
	if (n >= e->len) {
		e->len = e->start = 0;
		return;
	}
	memmove(e->data, e->data + n, e->len - n);
	e->len -= n;
	e->start = e->start > n ? e->start - n : 0;
}

void lxm_agent_enc_free(struct lxm_agent_enc *e)
{
	free(e->data);
	*e = (struct lxm_agent_enc){ 0 };
}

void lxm_agent_dec_init(struct lxm_agent_dec *d, const struct lxm_agent_frame *f)
{
	*d = (struct lxm_agent_dec){ .p = f->payload, .left = f->len };
}

static const uint8_t *dec_take(struct lxm_agent_dec *d, size_t n)
{
	const uint8_t *p = d->p;

	if (d->err)
		return NULL;
	if (d->left < n) {
		d->err = -EBADMSG;
		return NULL;
	}
	d->p += n;
	d->left -= n;
	return p;
}

uint16_t lxm_agent_dec_u16(struct lxm_agent_dec *d)
{
	const uint8_t *p = dec_take(d, 2);

	return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

uint32_t lxm_agent_dec_u32(struct lxm_agent_dec *d)
{
	const uint8_t *p = dec_take(d, 4);

	return p ? get_be32(p) : 0;
}

uint64_t lxm_agent_dec_u64(struct lxm_agent_dec *d)
{
	uint64_t hi = lxm_agent_dec_u32(d);

	return hi << 32 | lxm_agent_dec_u32(d);
}

char *lxm_agent_dec_str(struct lxm_agent_dec *d)
{
	uint32_t n = lxm_agent_dec_u32(d);
	const uint8_t *p = dec_take(d, n);
	char *s;

	if (!p)
		return NULL;
	if (memchr(p, 0, n)) {
		d->err = -EBADMSG;
		return NULL;
	}
	s = malloc((size_t)n + 1);
	if (!s) {
		d->err = -ENOMEM;
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = 0;
	return s;
}

void lxm_agent_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

char **lxm_agent_dec_strv(struct lxm_agent_dec *d)
{
	uint32_t n = lxm_agent_dec_u32(d);
	char **v;

	if (d->err)
		return NULL;
	/* Each string takes at least its 4-byte length, which bounds the allocation. */
	if (n > LXM_AGENT_MAX_STRV || n > d->left / 4) {
		d->err = -EBADMSG;
		return NULL;
	}
	v = calloc((size_t)n + 1, sizeof(*v));
	if (!v) {
		d->err = -ENOMEM;
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		v[i] = lxm_agent_dec_str(d);
		if (!v[i]) {
			lxm_agent_strv_free(v);
			return NULL;
		}
	}
	return v;
}

int lxm_agent_dec_end(struct lxm_agent_dec *d)
{
	if (d->err)
		return d->err;
	return d->left ? -EBADMSG : 0;
}

int lxm_agent_hello_encode(struct lxm_agent_enc *e, const struct lxm_agent_hello *h)
{
	lxm_agent_enc_begin(e, LXM_AGENT_HELLO, 0);
	lxm_agent_enc_u32(e, h->proto_min);
	lxm_agent_enc_u32(e, h->proto_max);
	lxm_agent_enc_u32(e, h->nonce);
	lxm_agent_enc_str(e, h->version);
	lxm_agent_enc_str(e, h->kernel);
	return lxm_agent_enc_end(e);
}

void lxm_agent_hello_clear(struct lxm_agent_hello *h)
{
	free(h->version);
	free(h->kernel);
	*h = (struct lxm_agent_hello){ 0 };
}

int lxm_agent_hello_decode(const struct lxm_agent_frame *f, struct lxm_agent_hello *h)
{
	struct lxm_agent_dec d;
	int r;

	*h = (struct lxm_agent_hello){ 0 };
	if (f->type != LXM_AGENT_HELLO || f->session != 0)
		return -EPROTO;
	lxm_agent_dec_init(&d, f);
	h->proto_min = lxm_agent_dec_u32(&d);
	h->proto_max = lxm_agent_dec_u32(&d);
	h->nonce = lxm_agent_dec_u32(&d);
	h->version = lxm_agent_dec_str(&d);
	h->kernel = lxm_agent_dec_str(&d);
	r = lxm_agent_dec_end(&d);
	if (r == 0 && h->proto_min > h->proto_max)
		r = -EBADMSG;
	if (r < 0)
		lxm_agent_hello_clear(h);
	return r;
}

int lxm_agent_exec_encode(struct lxm_agent_enc *e, uint32_t session,
			  const struct lxm_agent_exec_req *x)
{
	lxm_agent_enc_begin(e, LXM_AGENT_EXEC, session);
	lxm_agent_enc_u32(e, x->flags);
	lxm_agent_enc_u32(e, x->uid);
	lxm_agent_enc_u32(e, x->gid);
	lxm_agent_enc_u16(e, x->rows);
	lxm_agent_enc_u16(e, x->cols);
	lxm_agent_enc_str(e, x->cwd);
	lxm_agent_enc_strv(e, x->argv);
	lxm_agent_enc_strv(e, x->env);
	return lxm_agent_enc_end(e);
}

void lxm_agent_exec_clear(struct lxm_agent_exec_req *x)
{
	free(x->cwd);
	lxm_agent_strv_free(x->argv);
	lxm_agent_strv_free(x->env);
	*x = (struct lxm_agent_exec_req){ 0 };
}

int lxm_agent_exec_decode(const struct lxm_agent_frame *f, struct lxm_agent_exec_req *x)
{
	struct lxm_agent_dec d;
	int r;

	*x = (struct lxm_agent_exec_req){ 0 };
	if (f->type != LXM_AGENT_EXEC || f->session == 0)
		return -EPROTO;
	lxm_agent_dec_init(&d, f);
	x->flags = lxm_agent_dec_u32(&d);
	x->uid = lxm_agent_dec_u32(&d);
	x->gid = lxm_agent_dec_u32(&d);
	x->rows = lxm_agent_dec_u16(&d);
	x->cols = lxm_agent_dec_u16(&d);
	x->cwd = lxm_agent_dec_str(&d);
	x->argv = lxm_agent_dec_strv(&d);
	x->env = lxm_agent_dec_strv(&d);
	r = lxm_agent_dec_end(&d);
	if (r == 0 && ((x->flags & ~(uint32_t)_LXM_AGENT_EXEC_ALL) || !x->argv[0]))
		r = -EBADMSG;
	if (r < 0)
		lxm_agent_exec_clear(x);
	return r;
}

int lxm_agent_file_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session,
			  const struct lxm_agent_file *fi)
{
	lxm_agent_enc_begin(e, type, session);
	lxm_agent_enc_u32(e, fi->type);
	lxm_agent_enc_u32(e, fi->mode);
	lxm_agent_enc_u32(e, fi->uid);
	lxm_agent_enc_u32(e, fi->gid);
	if (type == LXM_AGENT_FILE) {
		lxm_agent_enc_u64(e, fi->size);
	} else {
		lxm_agent_enc_u32(e, fi->flags);
		lxm_agent_enc_str(e, fi->path);
	}
	lxm_agent_enc_str(e, fi->target);
	return lxm_agent_enc_end(e);
}

void lxm_agent_file_clear(struct lxm_agent_file *fi)
{
	free(fi->path);
	free(fi->target);
	*fi = (struct lxm_agent_file){ 0 };
}

int lxm_agent_file_decode(const struct lxm_agent_frame *f, struct lxm_agent_file *fi)
{
	struct lxm_agent_dec d;
	int r;

	*fi = (struct lxm_agent_file){ 0 };
	if ((f->type != LXM_AGENT_FILE && f->type != LXM_AGENT_FILE_PUT) || f->session == 0)
		return -EPROTO;
	lxm_agent_dec_init(&d, f);
	fi->type = lxm_agent_dec_u32(&d);
	fi->mode = lxm_agent_dec_u32(&d);
	fi->uid = lxm_agent_dec_u32(&d);
	fi->gid = lxm_agent_dec_u32(&d);
	if (f->type == LXM_AGENT_FILE) {
		fi->size = lxm_agent_dec_u64(&d);
	} else {
		fi->flags = lxm_agent_dec_u32(&d);
		fi->path = lxm_agent_dec_str(&d);
	}
	fi->target = lxm_agent_dec_str(&d);
	r = lxm_agent_dec_end(&d);
	if (r == 0 && (fi->type >= _LXM_AGENT_FILE_TYPE_MAX || (fi->mode & ~07777u) ||
		       (fi->flags & ~(uint32_t)_LXM_AGENT_PUT_ALL) ||
		       (f->type == LXM_AGENT_FILE_PUT && !fi->path[0])))
		r = -EBADMSG;
	if (r < 0)
		lxm_agent_file_clear(fi);
	return r;
}

int lxm_agent_error_encode(struct lxm_agent_enc *e, uint32_t session, int errnum, const char *msg)
{
	char cut[1024];

	/* A message is cut rather than lost. */
	snprintf(cut, sizeof(cut), "%s", msg ? msg : "");
	lxm_agent_enc_begin(e, LXM_AGENT_ERROR, session);
	lxm_agent_enc_u32(e, (uint32_t)(errnum < 0 ? -errnum : errnum));
	lxm_agent_enc_str(e, cut);
	return lxm_agent_enc_end(e);
}

int lxm_agent_error_decode(const struct lxm_agent_frame *f, int *ret_errnum, char **ret_msg)
{
	struct lxm_agent_dec d;
	uint32_t errnum;
	char *msg;
	int r;

	if (f->type != LXM_AGENT_ERROR)
		return -EPROTO;
	lxm_agent_dec_init(&d, f);
	errnum = lxm_agent_dec_u32(&d);
	msg = lxm_agent_dec_str(&d);
	r = lxm_agent_dec_end(&d);
	if (r == 0 && (errnum == 0 || errnum > 4095))
		r = -EBADMSG;
	if (r < 0) {
		free(msg);
		return r;
	}
	*ret_errnum = (int)errnum;
	*ret_msg = msg;
	return 0;
}

int lxm_agent_u32_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session, uint32_t v)
{
	lxm_agent_enc_begin(e, type, session);
	lxm_agent_enc_u32(e, v);
	return lxm_agent_enc_end(e);
}

int lxm_agent_u32_decode(const struct lxm_agent_frame *f, uint32_t *v)
{
	struct lxm_agent_dec d;

	lxm_agent_dec_init(&d, f);
	*v = lxm_agent_dec_u32(&d);
	return lxm_agent_dec_end(&d);
}

int lxm_agent_exit_encode(struct lxm_agent_enc *e, uint32_t session, uint32_t kind, uint32_t value)
{
	lxm_agent_enc_begin(e, LXM_AGENT_EXIT, session);
	lxm_agent_enc_u32(e, kind);
	lxm_agent_enc_u32(e, value);
	return lxm_agent_enc_end(e);
}

int lxm_agent_exit_decode(const struct lxm_agent_frame *f, uint32_t *kind, uint32_t *value)
{
	struct lxm_agent_dec d;
	int r;

	lxm_agent_dec_init(&d, f);
	*kind = lxm_agent_dec_u32(&d);
	*value = lxm_agent_dec_u32(&d);
	r = lxm_agent_dec_end(&d);
	if (r == 0 && *kind != LXM_AGENT_EXIT_CODE && *kind != LXM_AGENT_EXIT_SIGNAL)
		r = -EBADMSG;
	return r;
}

int lxm_agent_resize_encode(struct lxm_agent_enc *e, uint32_t session, uint16_t rows, uint16_t cols)
{
	lxm_agent_enc_begin(e, LXM_AGENT_RESIZE, session);
	lxm_agent_enc_u16(e, rows);
	lxm_agent_enc_u16(e, cols);
	return lxm_agent_enc_end(e);
}

int lxm_agent_resize_decode(const struct lxm_agent_frame *f, uint16_t *rows, uint16_t *cols)
{
	struct lxm_agent_dec d;

	lxm_agent_dec_init(&d, f);
	*rows = lxm_agent_dec_u16(&d);
	*cols = lxm_agent_dec_u16(&d);
	return lxm_agent_dec_end(&d);
}

int lxm_agent_str_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session, const char *s)
{
	lxm_agent_enc_begin(e, type, session);
	lxm_agent_enc_str(e, s);
	return lxm_agent_enc_end(e);
}

int lxm_agent_str_decode(const struct lxm_agent_frame *f, char **ret)
{
	struct lxm_agent_dec d;
	char *s;
	int r;

	lxm_agent_dec_init(&d, f);
	s = lxm_agent_dec_str(&d);
	r = lxm_agent_dec_end(&d);
	if (r < 0) {
		free(s);
		return r;
	}
	*ret = s;
	return 0;
}

int lxm_agent_data_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session, const void *p,
			  size_t n)
{
	lxm_agent_enc_begin(e, type, session);
	lxm_agent_enc_bytes(e, p, n);
	return lxm_agent_enc_end(e);
}

int lxm_agent_empty_encode(struct lxm_agent_enc *e, uint8_t type, uint32_t session)
{
	lxm_agent_enc_begin(e, type, session);
	return lxm_agent_enc_end(e);
}

void lxm_agent_window_init(struct lxm_agent_window *w)
{
	*w = (struct lxm_agent_window){ .send_credit = LXM_AGENT_WINDOW };
}

size_t lxm_agent_window_sendable(const struct lxm_agent_window *w, size_t want)
{
	size_t n = want < w->send_credit ? want : w->send_credit;

	return n < LXM_AGENT_MAX_PAYLOAD ? n : LXM_AGENT_MAX_PAYLOAD;
}

void lxm_agent_window_sent(struct lxm_agent_window *w, size_t n)
{
	w->send_credit -= n <= w->send_credit ? (uint32_t)n : w->send_credit;
}

int lxm_agent_window_granted(struct lxm_agent_window *w, uint32_t n)
{
	if (n == 0 || n > LXM_AGENT_WINDOW - w->send_credit)
		return -EPROTO;
	w->send_credit += n;
	return 0;
}

int lxm_agent_window_received(struct lxm_agent_window *w, size_t n)
{
	if (n > LXM_AGENT_WINDOW - w->recv_held)
		return -EPROTO;
	w->recv_held += (uint32_t)n;
	return 0;
}

uint32_t lxm_agent_window_consumed(struct lxm_agent_window *w, size_t n)
{
	uint32_t grant;

	if (n > w->recv_held - w->recv_done)
		n = w->recv_held - w->recv_done;
	w->recv_done += (uint32_t)n;
	if (w->recv_done < LXM_AGENT_WINDOW / 4)
		return 0;
	grant = w->recv_done;
	w->recv_held -= grant;
	w->recv_done = 0;
	return grant;
}
