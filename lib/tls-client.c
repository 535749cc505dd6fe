/* TLS for the CLI's remotes; see tls-client.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cleanup.h"
#include "json.h"
#include "tls-client.h"
#include "util.h"

void lxm_tlsc_free(struct lxm_tlsc *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t->pin_fp);
	free(t->peer_fp);
	free(t->peer_pem);
	free(t);
}

int lxm_tlsc_fingerprint(X509 *cert, char ret[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	if (!X509_digest(cert, EVP_sha256(), md, &n) || n != 32)
		return -EIO;
	lxm_hex(md, n, ret);
	return 0;
}

static X509 *pem_to_x509(const char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x;

	if (!b)
		return NULL;
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	return x;
}

int lxm_tlsc_fingerprint_pem(const char *pem, size_t len, char ret[65])
{
	X509 *x = pem_to_x509(pem, len);
	int r;

	if (!x)
		return -EBADMSG;
	r = lxm_tlsc_fingerprint(x, ret);
	X509_free(x);
	return r;
}

int lxm_tlsc_pem_to_base64_der(const char *pem, size_t len, char **ret)
{
	X509 *x = pem_to_x509(pem, len);
	unsigned char *der = NULL;
	char *out;
	int n;

	if (!x)
		return -EBADMSG;
	n = i2d_X509(x, &der);
	X509_free(x);
	if (n <= 0)
		return -EBADMSG;
	out = malloc(4 * ((size_t)n + 2) / 3 + 1);
	if (!out) {
		OPENSSL_free(der);
		return -ENOMEM;
	}
	EVP_EncodeBlock((unsigned char *)out, der, n);
	OPENSSL_free(der);
	*ret = out;
	return 0;
}

/* Accepts any chain at handshake time: the pin is checked once the handshake is done (lxd
 * remotes trust their pinned certificate, not a CA). */
static int verify_any(int preverify, X509_STORE_CTX *ctx)
{
	return 1;
}

int lxm_tlsc_new(const char *cert_file, const char *key_file, const char *pin_file,
		 struct lxm_tlsc **ret)
{
	_cleanup_(lxm_tlsc_freep) struct lxm_tlsc *t = calloc(1, sizeof(*t));
	_cleanup_free_ char *pin = NULL;
	size_t len;
	char fp[65];
	int r;

	if (!t)
		return -ENOMEM;
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (!t->ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, verify_any);
	SSL_CTX_set_mode(t->ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (cert_file && key_file) {
		if (access(cert_file, R_OK) < 0 || access(key_file, R_OK) < 0)
			return -errno;
		if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1 ||
		    SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
			ERR_clear_error();
			return -EBADMSG;
		}
		if (SSL_CTX_check_private_key(t->ctx) != 1) {
			ERR_clear_error();
			return -EKEYREJECTED;
		}
	}
	if (pin_file) {
		r = lxm_read_file(pin_file, &pin, &len);
		if (r < 0)
			return r;
		r = lxm_tlsc_fingerprint_pem(pin, len, fp);
		if (r < 0)
			return r;
		t->pin_fp = strdup(fp);
		if (!t->pin_fp)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(t);
	return 0;
}

/* Waits for fd to become ready for events, at most timeout_ms. */
static int wait_fd(int fd, short events, unsigned timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int k;

	do
		k = poll(&p, 1, (int)timeout_ms);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return -errno;
	return k == 0 ? -ETIMEDOUT : 0;
}

static int tcp_connect(const char *host, const char *port, unsigned timeout_ms, int *ret_fd,
		       enum lxm_tlsc_fail *ret_fail)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	struct addrinfo *ai = NULL;
	int r = -ECONNREFUSED, k;

	k = getaddrinfo(host, port, &hints, &ai);
	if (k != 0) {
		*ret_fail = LXM_TLSC_FAIL_RESOLVE;
		return k == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	}
	*ret_fail = LXM_TLSC_FAIL_CONNECT;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		_cleanup_close_ int fd =
			socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		socklen_t elen = sizeof(int);
		int soerr = 0;

		if (fd < 0) {
			r = -errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
			if (errno != EINPROGRESS) {
				r = -errno;
				continue;
			}
			k = wait_fd(fd, POLLOUT, timeout_ms);
			if (k == -ETIMEDOUT) {
				*ret_fail = LXM_TLSC_FAIL_CONNECT_TIMEOUT;
				r = k;
				continue;
			}
			if (k < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0) {
				r = k < 0 ? k : -errno;
				continue;
			}
			if (soerr) {
				r = -soerr;
				continue;
			}
		}
		*ret_fd = TAKE_FD(fd);
		freeaddrinfo(ai);
		*ret_fail = LXM_TLSC_FAIL_NONE;
		return 0;
	}
	freeaddrinfo(ai);
	return r;
}

int lxm_tlsc_probe(const char *host, const char *port, unsigned timeout_ms)
{
	enum lxm_tlsc_fail why;
	int fd, r;

	r = tcp_connect(host, port, timeout_ms, &fd, &why);
	if (r < 0)
		return r;
	close(fd);
	return 0;
}

/* Keeps the server's certificate, to check it and to show it. */
static int remember_peer(struct lxm_tlsc *t, SSL *ssl)
{
	X509 *x = SSL_get1_peer_certificate(ssl);
	BIO *b;
	char fp[65], *data;
	long n;
	int r;

	if (!x)
		return -EPROTO;
	r = lxm_tlsc_fingerprint(x, fp);
	b = BIO_new(BIO_s_mem());
	if (r < 0 || !b || PEM_write_bio_X509(b, x) != 1) {
		BIO_free(b);
		X509_free(x);
		return r < 0 ? r : -ENOMEM;
	}
	X509_free(x);
	n = BIO_get_mem_data(b, &data);
	free(t->peer_fp);
	free(t->peer_pem);
	t->peer_fp = strdup(fp);
	t->peer_pem = strndup(data, (size_t)n);
	BIO_free(b);
	return t->peer_fp && t->peer_pem ? 0 : -ENOMEM;
}

int lxm_tlsc_connect(struct lxm_tlsc *t, const char *host, const char *port, unsigned timeout_ms,
		     int *ret_fd, SSL **ret_ssl, enum lxm_tlsc_fail *ret_fail)
{
	_cleanup_close_ int fd = -1;
	SSL *ssl;
	int r, k, e;

	t->detail = NULL;
	r = tcp_connect(host, port, timeout_ms, &fd, ret_fail);
	if (r < 0)
		return r;
	*ret_fail = LXM_TLSC_FAIL_HANDSHAKE;
	ssl = SSL_new(t->ctx);
	if (!ssl)
		return -ENOMEM;
	/* SNI for names, not for address literals. */
	if (!strchr(host, ':') && strspn(host, "0123456789.") != strlen(host))
		SSL_set_tlsext_host_name(ssl, host);
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return -ENOMEM;
	}
	for (;;) {
		ERR_clear_error();
		k = SSL_connect(ssl);
		if (k == 1)
			break;
		e = SSL_get_error(ssl, k);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			r = wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, timeout_ms);
			if (r < 0) {
				t->detail = r == -ETIMEDOUT ? "the TLS handshake timed out" : NULL;
				SSL_free(ssl);
				return r;
			}
			continue;
		}
		t->detail = e == SSL_ERROR_SSL ? ERR_reason_error_string(ERR_peek_last_error())
					       : "the connection closed during the TLS handshake";
		if (!t->detail)
			t->detail = "the TLS handshake failed";
		ERR_clear_error();
		SSL_free(ssl);
		return -EPROTO;
	}
	r = remember_peer(t, ssl);
	if (r < 0) {
		t->detail = "the server sent no certificate";
		SSL_free(ssl);
		return r;
	}
	if (t->pin_fp && !streq(t->pin_fp, t->peer_fp)) {
		*ret_fail = LXM_TLSC_FAIL_PIN;
		t->detail = "the server's certificate is not the pinned one";
		SSL_free(ssl);
		return -EKEYREJECTED;
	}
	*ret_fail = LXM_TLSC_FAIL_NONE;
	*ret_fd = TAKE_FD(fd);
	*ret_ssl = ssl;
	return 0;
}

void lxm_tlsc_close(SSL *ssl, int fd)
{
	if (ssl) {
		/* A close_notify, without waiting for the server's. */
		(void)SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	if (fd >= 0)
		close(fd);
}

/* ---- the client certificate ---- */

static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long n;
	int r;

	if (!b)
		return -ENOMEM;
	if (key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1
		: PEM_write_bio_X509(b, x) != 1) {
		BIO_free(b);
		return -ENOMEM;
	}
	n = BIO_get_mem_data(b, &data);
	r = lxm_write_file_atomic(path, data, (size_t)n, mode);
	BIO_free(b);
	return r;
}

int lxm_tlsc_cert_generate(const char *cert_path, const char *key_path, const char *cn,
			   const char *exts[][2], size_t n_exts, const char **ret_step)
{
	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;
	X509_NAME *name;
	X509V3_CTX v3;
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	int r = -ENOMEM;

	/* The queue must say why this call failed, not an earlier one. */
	ERR_clear_error();
	*ret_step = "generate a key";
	pkey = EVP_EC_gen("P-384");
	if (!pkey)
		goto out;
	*ret_step = "make the certificate";
	x = X509_new();
	if (!x || lxm_random_bytes(serial, sizeof(serial)) < 0)
		goto out;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto out;
	name = X509_get_subject_name(x);
	if (X509_set_version(x, 2) != 1 ||
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"lxm", -1,
					-1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
					0) ||
	    X509_set_issuer_name(x, name) != 1 || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600) ||
	    X509_set_pubkey(x, pkey) != 1)
		goto out;
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	for (size_t i = 0; i < n_exts; i++) {
		X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);

		if (!e) {
			*ret_step = "make the certificate's extensions";
			r = -EINVAL;
			goto out;
		}
		r = X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
		if (r != 1) {
			r = -ENOMEM;
			goto out;
		}
	}
	*ret_step = "sign the certificate";
	r = -EIO;
	if (X509_sign(x, pkey, EVP_sha384()) <= 0)
		goto out;
	*ret_step = "write the key";
	r = write_pem(key_path, 0600, pkey, NULL);
	if (r < 0)
		goto out;
	*ret_step = "write the certificate";
	r = write_pem(cert_path, 0644, NULL, x);
out:
	BN_free(bn);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return r;
}

int lxm_tlsc_client_cert_ensure(const char *dir, char **ret_cert, char **ret_key, bool *ret_created,
				const char **ret_step)
{
	_cleanup_free_ char *cert = NULL, *key = NULL;
	char host[256] = "lxm", cn[300];
	int r;

	*ret_created = false;
	*ret_step = "";
	if (asprintf(&cert, "%s/client.crt", dir) < 0 || asprintf(&key, "%s/client.key", dir) < 0)
		return -ENOMEM;
	if (access(cert, F_OK) < 0 || access(key, F_OK) < 0) {
		*ret_step = "create the directory";
		r = lxm_mkdir_p(dir, 0700);
		if (r < 0)
			return r;
		(void)gethostname(host, sizeof(host) - 1);
		snprintf(cn, sizeof(cn), "lxm@%s", host);
		r = lxm_tlsc_cert_generate(cert, key, cn, NULL, 0, ret_step);
		ERR_clear_error();
		if (r < 0)
			return r;
		*ret_created = true;
	}
	*ret_cert = TAKE_PTR(cert);
	*ret_key = TAKE_PTR(key);
	return 0;
}

/* ---- URLs ---- */

int lxm_tlsc_split_url(const char *url, const char *default_port, char **ret_host, char **ret_port)
{
	const char *h, *end, *port = NULL;
	size_t hlen;

	if (!startswith(url, "https://"))
		return -EINVAL;
	h = url + strlen("https://");
	end = h + strcspn(h, "/");
	if (*end && !streq(end, "/"))
		return -EINVAL;
	if (*h == '[') {
		const char *close = memchr(h, ']', (size_t)(end - h));

		if (!close)
			return -EINVAL;
		hlen = (size_t)(close - h - 1);
		h++;
		if (close + 1 < end) {
			if (close[1] != ':')
				return -EINVAL;
			port = close + 2;
		}
	} else {
		const char *colon = memchr(h, ':', (size_t)(end - h));

		hlen = colon ? (size_t)(colon - h) : (size_t)(end - h);
		if (colon)
			port = colon + 1;
	}
	if (hlen == 0 ||
	    (port && (port == end || strspn(port, "0123456789") != (size_t)(end - port))))
		return -EINVAL;
	*ret_host = strndup(h, hlen);
	*ret_port = port ? strndup(port, (size_t)(end - port)) : strdup(default_port);
	if (!*ret_host || !*ret_port) {
		free(*ret_host);
		free(*ret_port);
		return -ENOMEM;
	}
	return 0;
}

/* ---- tokens ---- */

void lxm_tlsc_token_done(struct lxm_tlsc_token *t)
{
	free(t->client_name);
	free(t->fingerprint);
	for (size_t i = 0; i < t->n_addresses; i++)
		free(t->addresses[i]);
	free(t->addresses);
	free(t->secret);
	free(t->expires_at);
	*t = (struct lxm_tlsc_token){};
}

int lxm_tlsc_token_decode(const char *s, struct lxm_tlsc_token *ret)
{
	_cleanup_free_ unsigned char *raw = NULL;
	_cleanup_free_ char *padded = NULL;
	struct lxm_tlsc_token t = {};
	json_t *doc, *addrs, *a;
	size_t len = strlen(s), i;
	int n, pad;

	/* Base64 with or without padding; nothing else. */
	if (len == 0 ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != len)
		return -EINVAL;
	padded = malloc(len + 4);
	raw = malloc(len + 4);
	if (!padded || !raw)
		return -ENOMEM;
	memcpy(padded, s, len);
	while (len % 4)
		padded[len++] = '=';
	padded[len] = '\0';
	n = EVP_DecodeBlock(raw, (unsigned char *)padded, (int)len);
	if (n < 0)
		return -EINVAL;
	pad = (len >= 1 && padded[len - 1] == '=') + (len >= 2 && padded[len - 2] == '=');
	n -= pad;
	doc = json_loadb((const char *)raw, (size_t)n, 0, NULL);
	if (!json_is_object(doc)) {
		json_decref(doc);
		return -EINVAL;
	}
	addrs = json_object_get(doc, "addresses");
	if (!json_is_string(json_object_get(doc, "secret")) ||
	    !json_is_string(json_object_get(doc, "fingerprint")) || !json_is_array(addrs) ||
	    json_array_size(addrs) == 0) {
		json_decref(doc);
		return -EINVAL;
	}
	t.secret = strdup(json_string_value(json_object_get(doc, "secret")));
	t.fingerprint = strdup(json_string_value(json_object_get(doc, "fingerprint")));
	t.client_name = strdup(json_is_string(json_object_get(doc, "client_name"))
				       ? json_string_value(json_object_get(doc, "client_name"))
				       : "");
	if (json_is_string(json_object_get(doc, "expires_at")))
		t.expires_at = strdup(json_string_value(json_object_get(doc, "expires_at")));
	t.addresses = calloc(json_array_size(addrs) + 1, sizeof(char *));
	if (!t.secret || !t.fingerprint || !t.client_name || !t.addresses) {
		json_decref(doc);
		lxm_tlsc_token_done(&t);
		return -ENOMEM;
	}
	json_array_foreach (addrs, i, a) {
		if (!json_is_string(a))
			continue;
		t.addresses[t.n_addresses] = strdup(json_string_value(a));
		if (!t.addresses[t.n_addresses++]) {
			json_decref(doc);
			lxm_tlsc_token_done(&t);
			return -ENOMEM;
		}
	}
	json_decref(doc);
	if (t.n_addresses == 0 || !*t.secret) {
		lxm_tlsc_token_done(&t);
		return -EINVAL;
	}
	*ret = t;
	return 0;
}

int lxm_tlsc_token_encode(const struct lxm_tlsc_token *t, char **ret)
{
	_cleanup_json_ json_t *doc = NULL, *addrs = json_array();
	_cleanup_free_ char *text = NULL;
	char *out;
	size_t len;

	if (!addrs)
		return -ENOMEM;
	for (size_t i = 0; i < t->n_addresses; i++)
		if (json_array_append_new(addrs, json_string(t->addresses[i])) < 0)
			return -ENOMEM;
	doc = json_pack("{s:s, s:s, s:O, s:s}", "client_name", t->client_name ? t->client_name : "",
			"fingerprint", t->fingerprint, "addresses", addrs, "secret", t->secret);
	if (!doc || (t->expires_at &&
		     json_object_set_new(doc, "expires_at", json_string(t->expires_at)) < 0))
		return -ENOMEM;
	text = json_dumps(doc, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	out = malloc(4 * (len + 2) / 3 + 1);
	if (!out)
		return -ENOMEM;
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)text, (int)len);
	*ret = out;
	return 0;
}
