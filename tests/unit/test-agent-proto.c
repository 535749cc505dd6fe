/* The VM agent protocol (lxmd/vm/agent-proto.c): round trips of every message, each class of
 * malformed frame rejected without reading past the buffer, resync, and window accounting. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "vm/agent-proto.h"

/* Parses the one frame in e, which must be whole. */
static int parse_one(const struct lxm_agent_enc *e, struct lxm_agent_frame *f)
{
	size_t used = 0;
	int r = lxm_agent_frame_parse(e->data, e->len, f, &used);

	return r == 1 && used == e->len ? 0 : -1;
}

/* A heap copy of exactly n bytes, so that ASan sees any read past them. */
static uint8_t *exact(const void *p, size_t n)
{
	uint8_t *c = malloc(n ? n : 1);

	memcpy(c, p, n);
	return c;
}

static void test_round_trips(void)
{
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_frame f;
	struct lxm_agent_hello h = { 1, 1, 42, (char *)"0.1", (char *)"6.1.0-cloud" }, h2;
	char *argv[] = { (char *)"sh", (char *)"-c", (char *)"echo hi", NULL };
	char *env[] = { (char *)"PATH=/bin", NULL };
	struct lxm_agent_exec_req x = { LXM_AGENT_EXEC_PTY | LXM_AGENT_EXEC_STDIN,
					1000,
					100,
					24,
					80,
					(char *)"/root",
					argv,
					env },
				  x2;
	struct lxm_agent_file
		fi = { LXM_AGENT_FILE_SYMLINK, 0755,	      1, 2, LXM_AGENT_PUT_MODE, 0,
		       (char *)"/etc/x",       (char *)"../y" },
		fi2;
	uint32_t a, b;
	uint16_t rows, cols;
	char *msg = NULL;
	int errnum = 0;

	ok(lxm_agent_hello_encode(&e, &h) == 0 && parse_one(&e, &f) == 0, "HELLO encodes");
	ok(lxm_agent_hello_decode(&f, &h2) == 0 && h2.nonce == 42 && h2.proto_max == 1 &&
		   !strcmp(h2.version, "0.1") && !strcmp(h2.kernel, "6.1.0-cloud"),
	   "HELLO round-trips");
	lxm_agent_hello_clear(&h2);
	lxm_agent_enc_free(&e);

	ok(lxm_agent_exec_encode(&e, 7, &x) == 0 && parse_one(&e, &f) == 0 && f.session == 7,
	   "EXEC encodes with its session");
	ok(lxm_agent_exec_decode(&f, &x2) == 0 && x2.flags == x.flags && x2.uid == 1000 &&
		   x2.gid == 100 && x2.rows == 24 && x2.cols == 80 && !strcmp(x2.cwd, "/root") &&
		   !strcmp(x2.argv[2], "echo hi") && !x2.argv[3] &&
		   !strcmp(x2.env[0], "PATH=/bin") && !x2.env[1],
	   "EXEC round-trips");
	lxm_agent_exec_clear(&x2);
	lxm_agent_enc_free(&e);

	ok(lxm_agent_file_encode(&e, LXM_AGENT_FILE_PUT, 3, &fi) == 0 && parse_one(&e, &f) == 0,
	   "FILE_PUT encodes");
	ok(lxm_agent_file_decode(&f, &fi2) == 0 && fi2.type == LXM_AGENT_FILE_SYMLINK &&
		   fi2.mode == 0755 && fi2.uid == 1 && fi2.gid == 2 &&
		   fi2.flags == LXM_AGENT_PUT_MODE && !strcmp(fi2.path, "/etc/x") &&
		   !strcmp(fi2.target, "../y"),
	   "FILE_PUT round-trips");
	lxm_agent_file_clear(&fi2);
	lxm_agent_enc_free(&e);
	fi.size = 1ULL << 40;
	ok(lxm_agent_file_encode(&e, LXM_AGENT_FILE, 3, &fi) == 0 && parse_one(&e, &f) == 0 &&
		   lxm_agent_file_decode(&f, &fi2) == 0 && fi2.size == 1ULL << 40 && !fi2.path,
	   "FILE carries a 64-bit size");
	lxm_agent_file_clear(&fi2);
	lxm_agent_enc_free(&e);

	ok(lxm_agent_error_encode(&e, 9, -ENOENT, "stat /x: No such file or directory") == 0 &&
		   parse_one(&e, &f) == 0 && lxm_agent_error_decode(&f, &errnum, &msg) == 0 &&
		   errnum == ENOENT && !strcmp(msg, "stat /x: No such file or directory"),
	   "ERROR round-trips (errno positive on the wire)");
	free(msg);
	lxm_agent_enc_free(&e);

	ok(lxm_agent_exit_encode(&e, 2, LXM_AGENT_EXIT_SIGNAL, 15) == 0 && parse_one(&e, &f) == 0 &&
		   lxm_agent_exit_decode(&f, &a, &b) == 0 && a == LXM_AGENT_EXIT_SIGNAL && b == 15,
	   "EXIT round-trips");
	lxm_agent_enc_free(&e);
	ok(lxm_agent_resize_encode(&e, 2, 50, 132) == 0 && parse_one(&e, &f) == 0 &&
		   lxm_agent_resize_decode(&f, &rows, &cols) == 0 && rows == 50 && cols == 132,
	   "RESIZE round-trips");
	lxm_agent_enc_free(&e);
	ok(lxm_agent_u32_encode(&e, LXM_AGENT_WINDOW_MSG, 2, 65536) == 0 &&
		   parse_one(&e, &f) == 0 && lxm_agent_u32_decode(&f, &a) == 0 && a == 65536,
	   "WINDOW round-trips");
	lxm_agent_enc_free(&e);
	ok(lxm_agent_str_encode(&e, LXM_AGENT_FILE_GET, 4, "/etc/hostname") == 0 &&
		   parse_one(&e, &f) == 0 && lxm_agent_str_decode(&f, &msg) == 0 &&
		   !strcmp(msg, "/etc/hostname"),
	   "FILE_GET round-trips");
	free(msg);
	lxm_agent_enc_free(&e);
}

static void test_stream(void)
{
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_frame f;
	uint8_t big[LXM_AGENT_MAX_PAYLOAD + 1];
	size_t used, off = 0;
	int n = 0, r;

	memset(big, 'x', sizeof(big));
	lxm_agent_data_encode(&e, LXM_AGENT_STDOUT, 1, "abc", 3);
	lxm_agent_empty_encode(&e, LXM_AGENT_STDIN_EOF, 1);
	lxm_agent_data_encode(&e, LXM_AGENT_DATA, 2, big, LXM_AGENT_MAX_PAYLOAD);
	ok(lxm_agent_data_encode(&e, LXM_AGENT_DATA, 2, big, sizeof(big)) == -EMSGSIZE,
	   "a payload over the cap is refused by the encoder");
	ok(e.len == 3 * LXM_AGENT_HDR_SIZE + 3 + LXM_AGENT_MAX_PAYLOAD,
	   "the refused frame leaves the earlier frames whole");
	/* Fed one byte more at a time, a parser sees each frame only once it is whole. */
	for (size_t have = 0; have <= e.len; have++) {
		r = lxm_agent_frame_parse(e.data + off, have - off, &f, &used);
		if (r < 0)
			break;
		if (r == 1) {
			n++;
			off += used;
		}
	}
	ok(n == 3 && off == e.len, "three frames parse from a byte-by-byte stream");
	lxm_agent_enc_consume(&e, LXM_AGENT_HDR_SIZE + 3);
	ok(lxm_agent_frame_parse(e.data, e.len, &f, &used) == 1 && f.type == LXM_AGENT_STDIN_EOF,
	   "consuming the first frame leaves the second at the start");
	lxm_agent_enc_free(&e);
}

static void test_malformed(void)
{
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_frame f;
	struct lxm_agent_exec_req x;
	struct lxm_agent_hello h;
	struct lxm_agent_file fi;
	uint8_t hdr[LXM_AGENT_HDR_SIZE], *c;
	size_t used;
	uint32_t v;
	char *argv[] = { (char *)"true", NULL };
	struct lxm_agent_exec_req good = { 0, 0, 0, 0, 0, (char *)"", argv, argv };

	lxm_agent_frame_header(hdr, LXM_AGENT_STDIN, 1, 10);
	c = exact(hdr, 5);
	ok(lxm_agent_frame_parse(c, 5, &f, &used) == 0, "a short header asks for more");
	free(c);
	c = exact(hdr, sizeof(hdr));
	ok(lxm_agent_frame_parse(c, sizeof(hdr), &f, &used) == 0,
	   "a truncated payload asks for more (never read past the buffer)");
	free(c);
	lxm_agent_frame_header(hdr, LXM_AGENT_STDIN, 1, LXM_AGENT_MAX_PAYLOAD + 1);
	ok(lxm_agent_frame_parse(hdr, sizeof(hdr), &f, &used) == -EMSGSIZE,
	   "a length over the cap is an error");
	lxm_agent_frame_header(hdr, _LXM_AGENT_TYPE_MAX, 1, 0);
	ok(lxm_agent_frame_parse(hdr, sizeof(hdr), &f, &used) == -EPROTO,
	   "an unknown type is an error");
	lxm_agent_frame_header(hdr, 0, 1, 0);
	ok(lxm_agent_frame_parse(hdr, 3, &f, &used) == -EPROTO, "type 0 is an error, seen early");
	ok(lxm_agent_frame_parse("GET / HTTP/1.1\r\n", 16, &f, &used) == -EBADMSG,
	   "a bad magic is an error");
	ok(lxm_agent_frame_parse("L", 1, &f, &used) == 0 &&
		   lxm_agent_frame_parse("X", 1, &f, &used) == -EBADMSG,
	   "a bad magic is seen from the first byte");
	lxm_agent_frame_header(hdr, LXM_AGENT_STDIN, 1, 0);
	hdr[3] = 1;
	ok(lxm_agent_frame_parse(hdr, sizeof(hdr), &f, &used) == -EBADMSG,
	   "unknown flags are an error");

	/* Payloads: each cut short by one byte, and each with one byte too many. */
	lxm_agent_exec_encode(&e, 1, &good);
	{
		size_t cuts = e.len - LXM_AGENT_HDR_SIZE, refused = 0;

		for (size_t cut = 0; cut < cuts; cut++) {
			f = (struct lxm_agent_frame){ LXM_AGENT_EXEC, 1, (uint32_t)cut, NULL };
			c = exact(e.data + LXM_AGENT_HDR_SIZE, cut);
			f.payload = c;
			if (lxm_agent_exec_decode(&f, &x) == 0)
				lxm_agent_exec_clear(&x);
			else
				refused++;
			free(c);
		}
		ok(cuts > 0 && refused == cuts,
		   "every truncation of an EXEC payload is refused (%zu of %zu)", refused, cuts);
	}
	{
		uint8_t *p = exact(e.data + LXM_AGENT_HDR_SIZE, e.len - LXM_AGENT_HDR_SIZE + 1);

		p[e.len - LXM_AGENT_HDR_SIZE] = 0;
		f = (struct lxm_agent_frame){ LXM_AGENT_EXEC, 1,
					      (uint32_t)(e.len - LXM_AGENT_HDR_SIZE + 1), p };
		ok(lxm_agent_exec_decode(&f, &x) == -EBADMSG, "trailing bytes are refused");
		free(p);
	}
	lxm_agent_enc_free(&e);

	{
		/* A string count that claims more than the payload holds. */
		uint8_t p[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	 0,    0,    0,
				0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff };

		f = (struct lxm_agent_frame){ LXM_AGENT_EXEC, 1, sizeof(p), p };
		ok(lxm_agent_exec_decode(&f, &x) == -EBADMSG, "a huge argv count is refused");
	}
	{
		uint8_t p[] = { 0, 0, 0, 3, 'a', 0, 'b' };

		f = (struct lxm_agent_frame){ LXM_AGENT_FILE_GET, 1, sizeof(p), p };
		c = NULL;
		ok(lxm_agent_str_decode(&f, (char **)&c) == -EBADMSG,
		   "a NUL inside a string is refused");
	}
	{
		uint8_t p[] = { 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };

		f = (struct lxm_agent_frame){ LXM_AGENT_HELLO, 0, sizeof(p), p };
		ok(lxm_agent_hello_decode(&f, &h) == -EBADMSG, "HELLO with min > max is refused");
		f.session = 5;
		ok(lxm_agent_hello_decode(&f, &h) == -EPROTO, "HELLO off session 0 is refused");
	}
	{
		uint8_t p[] = { 0, 0, 0, 9, 0, 0, 0, 0, 0, 0,	0, 0, 0, 0, 0,
				0, 0, 0, 0, 0, 0, 0, 0, 1, 'x', 0, 0, 0, 0 };

		f = (struct lxm_agent_frame){ LXM_AGENT_FILE_PUT, 1, sizeof(p), p };
		ok(lxm_agent_file_decode(&f, &fi) == -EBADMSG, "an unknown file type is refused");
	}
	{
		uint8_t p[] = { 0, 0, 0, 1, 0 };

		f = (struct lxm_agent_frame){ LXM_AGENT_WINDOW_MSG, 1, sizeof(p), p };
		ok(lxm_agent_u32_decode(&f, &v) == -EBADMSG, "a WINDOW of 5 bytes is refused");
		f.len = 3;
		ok(lxm_agent_u32_decode(&f, &v) == -EBADMSG, "a WINDOW of 3 bytes is refused");
	}
}

static void test_resync(void)
{
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_hello h = { 1, 1, 7, (char *)"", (char *)"" };
	uint8_t buf[256];
	size_t n = 0, at;

	memcpy(buf, "garbage LA\x03 more LA", 19);
	n = 19;
	lxm_agent_hello_encode(&e, &h);
	memcpy(buf + n, e.data, e.len);
	at = lxm_agent_resync(buf, n + e.len);
	ok(at == 19, "resync skips garbage and false starts up to the HELLO (%zu)", at);
	ok(lxm_agent_resync("xxLA", 4) == 2,
	   "resync keeps a possible header start at the end of the input");
	ok(lxm_agent_resync("LA\x01\x00\x00\x00\x00\x00\x01", 9) == 9,
	   "a header with a payload over the cap is no HELLO");
	ok(lxm_agent_resync("xyz", 3) == 3, "no header: all of it is skipped");
	lxm_agent_enc_free(&e);
}

static void test_window(void)
{
	struct lxm_agent_window w;
	size_t sent = 0, n;
	uint32_t grant, total = 0;

	lxm_agent_window_init(&w);
	ok(lxm_agent_window_sendable(&w, 1 << 20) == LXM_AGENT_MAX_PAYLOAD,
	   "one frame at most at a time");
	while ((n = lxm_agent_window_sendable(&w, 1 << 20)) > 0) {
		lxm_agent_window_sent(&w, n);
		sent += n;
	}
	ok(sent == LXM_AGENT_WINDOW, "a sender stops after the window (%zu bytes)", sent);
	ok(lxm_agent_window_granted(&w, LXM_AGENT_WINDOW + 1) == -EPROTO,
	   "a grant of more than was sent is refused");
	ok(lxm_agent_window_granted(&w, 0) == -EPROTO, "a grant of 0 is refused");
	ok(lxm_agent_window_granted(&w, 1000) == 0 && lxm_agent_window_sendable(&w, 5000) == 1000,
	   "a grant lets that much through");

	lxm_agent_window_init(&w);
	ok(lxm_agent_window_received(&w, LXM_AGENT_WINDOW) == 0, "the receiver takes a window");
	ok(lxm_agent_window_received(&w, 1) == -EPROTO, "one byte past it is a protocol error");
	grant = lxm_agent_window_consumed(&w, 100);
	ok(grant == 0, "a small consumption is not granted at once");
	for (int i = 0; i < 10000; i++)
		total += lxm_agent_window_consumed(&w, 100);
	ok(total >= LXM_AGENT_WINDOW - LXM_AGENT_WINDOW / 4 && w.recv_held < LXM_AGENT_WINDOW / 4,
	   "consumed bytes are granted back in batches (%u granted, %u held)", total, w.recv_held);
	ok(lxm_agent_window_received(&w, LXM_AGENT_WINDOW - w.recv_held) == 0 &&
		   lxm_agent_window_received(&w, 1) == -EPROTO,
	   "the peer may send exactly what was granted back");

	lxm_agent_window_init(&w);
	lxm_agent_window_received(&w, 1000);
	ok(lxm_agent_window_consumed(&w, 2 * LXM_AGENT_WINDOW) == 0 && w.recv_done == 1000,
	   "consuming more than was received counts only what was received");
}

int main(void)
{
	test_round_trips();
	test_stream();
	test_malformed();
	test_resync();
	test_window();
	return tap_done();
}
