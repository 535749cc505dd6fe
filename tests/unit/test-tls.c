/* TLS over memory BIOs: a server and a client session in one process, bytes pumped between them
 * by hand as the event loop would; and the certificate helpers the trust store uses. */
#include "config.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certificates.h"
#include "error.h"
#include "tap.h"
#include "tls-client.h"
#include "tls.h"
#include "util.h"

static char dir[] = "/tmp/lxm-test-tls-XXXXXX";

static char *path(const char *name)
{
	static char buf[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

/* Moves what one side has for the other; returns the bytes moved. */
static size_t pump(struct lxm_tls *from, struct lxm_tls *to)
{
	char *out = NULL;
	size_t len = 0;

	if (lxm_tls_take_output(from, &out, &len) < 0 || len == 0)
		return 0;
	lxm_tls_feed(to, out, len);
	free(out);
	return len;
}

/* Runs the handshake (and delivers pending data) until nothing moves. Reads on each side land in
 * the buffers. */
static void exchange(struct lxm_tls *s, struct lxm_tls *c, char *sbuf, size_t *slen, char *cbuf,
		     size_t *clen)
{
	for (int i = 0; i < 20; i++) {
		ssize_t n;
		size_t moved;

		while ((n = lxm_tls_read(s, sbuf + *slen, 4096)) > 0)
			*slen += (size_t)n;
		moved = pump(s, c);
		while ((n = lxm_tls_read(c, cbuf + *clen, 4096)) > 0)
			*clen += (size_t)n;
		moved += pump(c, s);
		if (!moved && i > 2)
			break;
	}
}

static SSL_CTX *client_ctx(bool with_cert)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (with_cert) {
		SSL_CTX_use_certificate_file(ctx, path("client.crt"), SSL_FILETYPE_PEM);
		SSL_CTX_use_PrivateKey_file(ctx, path("client.key"), SSL_FILETYPE_PEM);
	}
	return ctx;
}

static void test_round_trip(SSL_CTX *sctx, bool with_cert, const char *client_fp)
{
	SSL_CTX *cctx = client_ctx(with_cert);
	struct lxm_tls *s = NULL, *c = NULL;
	static char sbuf[1 << 20], cbuf[1 << 20];
	size_t slen = 0, clen = 0;
	char fp[65] = "";
	char *big = malloc(200000);

	ok(lxm_tls_new(sctx, true, &s) == 0 && lxm_tls_new(cctx, false, &c) == 0,
	   "sessions created");
	/* The client speaks first (ClientHello). */
	ok(lxm_tls_read(c, cbuf, 1) == 0, "client: no data before the handshake");
	exchange(s, c, sbuf, &slen, cbuf, &clen);
	ok(lxm_tls_established(s) && lxm_tls_established(c), "handshake completes (%s)",
	   with_cert ? "client certificate" : "no client certificate");
	if (with_cert)
		ok(lxm_tls_peer_fingerprint(s, fp) && streq(fp, client_fp),
		   "server sees the client certificate's fingerprint");
	else
		ok(!lxm_tls_peer_fingerprint(s, fp), "server sees no client certificate");

	ok(lxm_tls_write(c, "GET /1.0 HTTP/1.1\r\n\r\n", 21) == 0, "client writes");
	exchange(s, c, sbuf, &slen, cbuf, &clen);
	ok(slen == 21 && memcmp(sbuf, "GET /1.0 HTTP/1.1\r\n\r\n", 21) == 0,
	   "server reads the plaintext");

	for (size_t i = 0; i < 200000; i++)
		big[i] = (char)(i * 7);
	ok(lxm_tls_write(s, big, 200000) == 0, "server writes 200000 bytes");
	exchange(s, c, sbuf, &slen, cbuf, &clen);
	ok(clen == 200000 && memcmp(cbuf, big, 200000) == 0,
	   "client reads them intact (several records)");

	/* The client ends the session: the server sees the end. */
	SSL_shutdown(lxm_tls_ssl(c));
	pump(c, s);
	ok(lxm_tls_read(s, sbuf, 10) == -ECONNRESET, "close_notify reads as the end");

	lxm_tls_free(s);
	lxm_tls_free(c);
	SSL_CTX_free(cctx);
	free(big);
}

static void test_version(SSL_CTX *sctx)
{
	SSL_CTX *cctx = client_ctx(false);
	struct lxm_tls *s = NULL, *c = NULL;
	static char sbuf[4096], cbuf[4096];
	size_t slen = 0, clen = 0;

	SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION);
	SSL_CTX_set_security_level(cctx, 0);
	lxm_tls_new(sctx, true, &s);
	lxm_tls_new(cctx, false, &c);
	exchange(s, c, sbuf, &slen, cbuf, &clen);
	ok(!lxm_tls_established(s), "a TLS 1.1 client is refused");
	ok(lxm_tls_read(s, sbuf, 10) == -EPROTO || !lxm_tls_established(s),
	   "the server reports a protocol error");
	lxm_tls_free(s);
	lxm_tls_free(c);
	SSL_CTX_free(cctx);

	/* A default client gets TLS 1.3. */
	cctx = client_ctx(false);
	lxm_tls_new(sctx, true, &s);
	lxm_tls_new(cctx, false, &c);
	slen = clen = 0;
	exchange(s, c, sbuf, &slen, cbuf, &clen);
	ok(lxm_tls_established(s) && SSL_version(lxm_tls_ssl(s)) == TLS1_3_VERSION,
	   "TLS 1.3 is negotiated when the client offers it");
	lxm_tls_free(s);
	lxm_tls_free(c);
	SSL_CTX_free(cctx);
}

static void test_parse(const char *client_fp)
{
	struct lxm_error *err = NULL;
	char *pem = NULL, *pem2 = NULL, *cn = NULL, *b64;
	char fp[65], fp2[65];
	size_t len = 0;
	unsigned char *der = NULL;
	int dl;
	X509 *x;
	FILE *f;

	lxm_read_file(path("client.crt"), &pem, &len);
	ok(lxm_cert_parse(pem, &pem2, fp, &cn, &err) == 0 && streq(fp, client_fp) &&
		   streq(cn, "test-client"),
	   "PEM certificate parsed: fingerprint and CN");
	free(pem2);
	free(cn);

	f = fopen(path("client.crt"), "r");
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	dl = i2d_X509(x, &der);
	b64 = malloc(4 * ((size_t)dl + 2) / 3 + 4);
	EVP_EncodeBlock((unsigned char *)b64, der, dl);
	ok(lxm_cert_parse(b64, &pem2, fp2, NULL, &err) == 0 && streq(fp2, client_fp) &&
		   strstr(pem2, "BEGIN CERTIFICATE"),
	   "base64 DER certificate parsed to the same fingerprint and a PEM");
	free(pem2);
	ok(lxm_cert_parse("bm90IGEgY2VydA==", &pem2, fp2, NULL, &err) == -EINVAL && err &&
		   strstr(err->msg, "not a PEM certificate"),
	   "garbage refused: %s", err ? err->msg : "");
	lxm_error_free(err);
	X509_free(x);
	OPENSSL_free(der);
	free(b64);
	free(pem);
}

int main(void)
{
	const char *sans[] = { "DNS:localhost", "IP:127.0.0.1", NULL };
	struct lxm_error *err = NULL;
	SSL_CTX *sctx = NULL, *bad = NULL;
	char client_fp[65] = "";
	struct stat st;
	X509 *x;
	FILE *f;

	if (!mkdtemp(dir))
		return 1;
	ok(lxm_cert_generate(path("server.crt"), path("server.key"), "test-server", sans, &err) ==
		   0,
	   "server certificate generated");
	ok(stat(path("server.key"), &st) == 0 && (st.st_mode & 0777) == 0600, "key has mode 0600");
	ok(lxm_cert_generate(path("client.crt"), path("client.key"), "test-client", NULL, &err) ==
		   0,
	   "client certificate generated");
	f = fopen(path("client.crt"), "r");
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	lxm_tlsc_fingerprint(x, client_fp);
	{
		EVP_PKEY *k = X509_get0_pubkey(x);
		char group[32] = "";
		size_t gl = 0;

		EVP_PKEY_get_group_name(k, group, sizeof(group), &gl);
		ok(streq(group, "secp384r1"), "key is EC P-384 (%s)", group);
	}
	X509_free(x);
	ok(lxm_tls_server_ctx(path("server.crt"), path("server.key"), &sctx, &err) == 0,
	   "server context");
	test_round_trip(sctx, true, client_fp);
	test_round_trip(sctx, false, NULL);
	test_version(sctx);
	test_parse(client_fp);
	ok(lxm_tls_server_ctx(path("server.crt"), path("client.key"), &bad, &err) < 0 && err &&
		   strstr(err->msg, "client.key"),
	   "mismatched key refused: %s", err ? err->msg : "");
	lxm_error_free(err);
	SSL_CTX_free(sctx);
	unlink(path("server.crt"));
	unlink(path("server.key"));
	unlink(path("client.crt"));
	unlink(path("client.key"));
	rmdir(dir);
	return tap_done();
}
