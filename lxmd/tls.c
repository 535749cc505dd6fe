/* TLS with memory BIOs (see tls.h). */
#include "config.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "tls-client.h"
#include "tls.h"

struct lxm_tls {
	SSL *ssl;	 /* the session */
	BIO *in;	 /* what the peer sent, not decrypted yet (owned by ssl) */
	BIO *out;	 /* what goes to the peer (owned by ssl) */
	char error[160]; /* the last TLS error */
};

/* Any certificate passes: the API decides trust from its fingerprint. */
static int accept_any(int preverify, X509_STORE_CTX *ctx)
{
	return 1;
}

const char *lxm_tls_reason(char buf[160])
{
	unsigned long e = ERR_get_error();

	if (!e)
		return "unknown error";
	ERR_error_string_n(e, buf, 160);
	ERR_clear_error();
	return buf;
}

int lxm_tls_server_ctx(const char *cert_path, const char *key_path, SSL_CTX **ret,
		       struct lxm_error **err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char buf[160];

	if (!ctx)
		return lxm_error_set(err, -ENOMEM, 500, "TLS context: %s", lxm_tls_reason(buf));
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		SSL_CTX_free(ctx);
		return lxm_error_set(err, -EINVAL, 500, "TLS: load server certificate %s: %s",
				     cert_path, lxm_tls_reason(buf));
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		SSL_CTX_free(ctx);
		return lxm_error_set(err, -EINVAL, 500, "TLS: load server key %s: %s", key_path,
				     lxm_tls_reason(buf));
	}
	/* Request a client certificate, do not require one: untrusted clients may read /1.0. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
	/* Sessions kept for resumption: a bounded cache, so that a flood of handshakes cannot grow
	 * it (OpenSSL's default holds 20480); and the context without which a client that resumes
	 * a session with its certificate fails the handshake instead. */
	SSL_CTX_sess_set_cache_size(ctx, 1024);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"lxmd", 4);
	*ret = ctx;
	return 0;
}

int lxm_tls_new(SSL_CTX *ctx, bool server, struct lxm_tls **ret)
{
	struct lxm_tls *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->ssl = SSL_new(ctx);
	t->in = BIO_new(BIO_s_mem());
	t->out = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->in || !t->out) {
		SSL_free(t->ssl);
		BIO_free(t->in);
		BIO_free(t->out);
		free(t);
		return -ENOMEM;
	}
	/* An empty input BIO means "more later", not EOF. */
	BIO_set_mem_eof_return(t->in, -1);
	SSL_set_bio(t->ssl, t->in, t->out);
	if (server)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);
	*ret = t;
	return 0;
}

void lxm_tls_free(struct lxm_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	free(t);
}

int lxm_tls_feed(struct lxm_tls *t, const void *data, size_t len)
{
	while (len > 0) {
		int n = BIO_write(t->in, data, len > INT32_MAX ? INT32_MAX : (int)len);

		if (n <= 0)
			return -ENOMEM;
		data = (const char *)data + n;
		len -= (size_t)n;
	}
	return 0;
}

static int tls_failed(struct lxm_tls *t, int r)
{
	int e = SSL_get_error(t->ssl, r);

	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return -ECONNRESET;
	default:
		lxm_tls_reason(t->error);
		return -EPROTO;
	}
}

ssize_t lxm_tls_read(struct lxm_tls *t, void *buf, size_t cap)
{
	size_t n = 0;
	int r;

	if (!SSL_is_init_finished(t->ssl)) {
		r = SSL_do_handshake(t->ssl);
		if (r != 1)
			return tls_failed(t, r);
	}
	r = SSL_read_ex(t->ssl, buf, cap, &n);
	if (r != 1)
		return tls_failed(t, r);
	return (ssize_t)n;
}

int lxm_tls_write(struct lxm_tls *t, const void *data, size_t len)
{
	size_t n = 0;
	int r;

	/* Memory BIOs take everything: one call writes it all (partial writes are on). */
	while (len > 0) {
		r = SSL_write_ex(t->ssl, data, len, &n);
		if (r != 1) {
			r = tls_failed(t, r);
			/* Before the handshake completes nothing can be written yet. */
			return r < 0 ? r : -EAGAIN;
		}
		data = (const char *)data + n;
		len -= n;
	}
	return 0;
}

int lxm_tls_take_output(struct lxm_tls *t, char **ret, size_t *ret_len)
{
	size_t pending = BIO_ctrl_pending(t->out);
	char *buf;
	int n;

	*ret = NULL;
	*ret_len = 0;
	if (pending == 0)
		return 0;
	buf = malloc(pending);
	if (!buf)
		return -ENOMEM;
	n = BIO_read(t->out, buf, (int)pending);
	if (n <= 0) {
		free(buf);
		return 0;
	}
	*ret = buf;
	*ret_len = (size_t)n;
	return 0;
}

bool lxm_tls_established(const struct lxm_tls *t)
{
	return SSL_is_init_finished(t->ssl);
}

bool lxm_tls_peer_fingerprint(const struct lxm_tls *t, char ret[65])
{
	X509 *cert;
	int k;

	if (!SSL_is_init_finished(t->ssl))
		return false;
	cert = SSL_get1_peer_certificate(t->ssl);
	if (!cert)
		return false;
	k = lxm_tlsc_fingerprint(cert, ret);
	X509_free(cert);
	return k == 0;
}

const char *lxm_tls_error(const struct lxm_tls *t)
{
	return t->error;
}

int lxm_tls_peer_pem(const struct lxm_tls *t, char **ret)
{
	X509 *cert = SSL_get1_peer_certificate(t->ssl);
	BIO *out;
	char *data;
	long len;

	if (!cert)
		return -ENOENT;
	out = BIO_new(BIO_s_mem());
	if (!out || !PEM_write_bio_X509(out, cert)) {
		BIO_free(out);
		X509_free(cert);
		return -ENOMEM;
	}
	len = BIO_get_mem_data(out, &data);
	*ret = strndup(data, (size_t)len);
	BIO_free(out);
	X509_free(cert);
	return *ret ? 0 : -ENOMEM;
}

SSL *lxm_tls_ssl(struct lxm_tls *t)
{
	return t->ssl;
}
