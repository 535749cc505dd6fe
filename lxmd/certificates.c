/* Server certificate, client certificate parsing and join tokens (see certificates.h). */
#include "config.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "certificates.h"
#include "cleanup.h"
#include "daemon.h"
#include "json.h"
#include "log.h"
#include "server.h"
#include "tls-client.h"
#include "tls.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(X509 *, X509_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(BIO *, BIO_free)

int lxm_cert_generate(const char *cert_path, const char *key_path, const char *cn,
		      const char *const *sans, struct lxm_error **err)
{
	_cleanup_free_ char *san = NULL;
	const char *exts[][2] = {
		{ "basicConstraints", "critical,CA:FALSE" },
		{ "keyUsage", "critical,digitalSignature" },
		{ "extendedKeyUsage", "serverAuth" },
		{ "subjectAltName", NULL },
	};
	const char *step;
	char buf[160];
	int k;

	for (size_t i = 0; sans && sans[i]; i++) {
		char *n = NULL;

		if (asprintf(&n, "%s%s%s", san ? san : "", san ? "," : "", sans[i]) < 0)
			return -ENOMEM;
		free(san);
		san = n;
	}
	exts[3][1] = san;
	k = lxm_tlsc_cert_generate(cert_path, key_path, cn, exts, san ? 4 : 3, &step);
	if (k < 0 && ERR_peek_error())
		return lxm_error_set(err, k, 500, "generate server certificate %s: %s: %s",
				     cert_path, step, lxm_tls_reason(buf));
	if (k < 0)
		return lxm_error_setx(err, k, 500, "generate server certificate %s: %s", cert_path,
				      step);
	return 0;
}

static int server_paths(struct lxmd *d, char **cert, char **key)
{
	if (asprintf(cert, "%s/server.crt", d->cfg.root) < 0)
		return -ENOMEM;
	if (asprintf(key, "%s/server.key", d->cfg.root) < 0) {
		free(*cert);
		return -ENOMEM;
	}
	return 0;
}

/* Whether s is an IP address literal (then its SAN is IP:, else DNS:). */
static bool is_ip(const char *s)
{
	return strspn(s, "0123456789.") == strlen(s) || strchr(s, ':');
}

int lxmd_server_cert_ensure(struct lxmd *d, const char *host, char **ret_cert, char **ret_key,
			    struct lxm_error **err)
{
	_cleanup_free_ char *cert = NULL, *key = NULL, *s1 = NULL, *s2 = NULL;
	char hostname[256] = "";
	const char *sans[4] = { "DNS:localhost", "IP:127.0.0.1", NULL, NULL };
	int k;

	if (server_paths(d, &cert, &key) < 0)
		return -ENOMEM;
	if (access(cert, F_OK) == 0 && access(key, F_OK) == 0) {
		*ret_cert = TAKE_PTR(cert);
		*ret_key = TAKE_PTR(key);
		return 0;
	}
	gethostname(hostname, sizeof(hostname) - 1);
	if (!*hostname)
		snprintf(hostname, sizeof(hostname), "lxmd");
	if (asprintf(&s1, "DNS:%s", hostname) < 0)
		return -ENOMEM;
	sans[2] = s1;
	if (host && *host && !streq(host, "0.0.0.0") && !streq(host, "::") &&
	    !streq(host, "127.0.0.1")) {
		if (asprintf(&s2, "%s:%s", is_ip(host) ? "IP" : "DNS", host) < 0)
			return -ENOMEM;
		sans[3] = s2;
	}
	k = lxm_cert_generate(cert, key, hostname, sans, err);
	if (k < 0)
		return k;
	log_info("generated server certificate %s (EC P-384, CN %s)", cert, hostname);
	*ret_cert = TAKE_PTR(cert);
	*ret_key = TAKE_PTR(key);
	return 0;
}

bool lxmd_server_cert_read(struct lxmd *d, char **ret_pem, char ret_fp[65])
{
	_cleanup_free_ char *cert = NULL, *key = NULL, *pem = NULL;
	size_t len = 0;

	if (server_paths(d, &cert, &key) < 0)
		return false;
	if (lxm_read_file(cert, &pem, &len) < 0)
		return false;
	if (lxm_cert_parse(pem, ret_pem, ret_fp, NULL, NULL) < 0)
		return false;
	return true;
}

int lxm_cert_parse(const char *input, char **ret_pem, char ret_fp[65], char **ret_cn,
		   struct lxm_error **err)
{
	_cleanup_(X509_freep) X509 *x = NULL;
	_cleanup_(BIO_freep) BIO *out = NULL;
	char *data;
	long len;

	if (strstr(input, "-----BEGIN CERTIFICATE-----")) {
		_cleanup_(BIO_freep) BIO *in = BIO_new_mem_buf(input, -1);

		x = in ? PEM_read_bio_X509(in, NULL, NULL, NULL) : NULL;
	} else {
		size_t n = strlen(input);
		_cleanup_free_ unsigned char *der = malloc(n / 4 * 3 + 4);
		_cleanup_free_ char *clean = malloc(n + 1);
		const unsigned char *p;
		size_t m = 0;
		int dl;

		if (!der || !clean)
			return -ENOMEM;
		/* Line breaks may come with the base64. */
		for (size_t i = 0; i < n; i++)
			if (input[i] != '\n' && input[i] != '\r' && input[i] != ' ')
				clean[m++] = input[i];
		clean[m] = '\0';
		dl = m % 4 == 0 && m > 0 ? EVP_DecodeBlock(der, (unsigned char *)clean, (int)m)
					 : -1;
		if (dl > 0) {
			/* DecodeBlock counts the padding as zero bytes. */
			if (m >= 1 && clean[m - 1] == '=')
				dl--;
			if (m >= 2 && clean[m - 2] == '=')
				dl--;
			p = der;
			x = d2i_X509(NULL, &p, dl);
		}
	}
	ERR_clear_error();
	if (!x)
		return lxm_error_set(err, -EINVAL, 400,
				     "certificate: not a PEM certificate nor base64 of a DER one");
	if (lxm_tlsc_fingerprint(x, ret_fp) < 0)
		return lxm_error_set(err, -EINVAL, 400, "certificate: cannot compute fingerprint");
	out = BIO_new(BIO_s_mem());
	if (!out || !PEM_write_bio_X509(out, x))
		return -ENOMEM;
	len = BIO_get_mem_data(out, &data);
	*ret_pem = strndup(data, (size_t)len);
	if (!*ret_pem)
		return -ENOMEM;
	if (ret_cn) {
		char cn[256] = "";

		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
		*ret_cn = strdup(cn);
		if (!*ret_cn) {
			free(*ret_pem);
			return -ENOMEM;
		}
	}
	return 0;
}

/* ---- join tokens ---- */

struct token {
	LIST_ENTRY(token) link; /* in tokens */
	char *name;		/* the client name it was made for */
	char secret[65];	/* 32 random bytes in hex */
	int64_t expires;	/* unix seconds, 0: never */
};

static LIST_HEAD(, token) tokens = LIST_HEAD_INITIALIZER(tokens);

static void token_free(struct token *t)
{
	LIST_REMOVE(t, link);
	free(t->name);
	free(t);
}

static int base64(const char *s, char **ret)
{
	size_t n = strlen(s);
	char *out = malloc(4 * ((n + 2) / 3) + 1);

	if (!out)
		return -ENOMEM;
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	*ret = out;
	return 0;
}

int lxmd_token_new(struct lxmd *d, const char *name, int64_t ttl_sec, char **ret_token,
		   char **ret_secret, struct lxm_error **err)
{
	_cleanup_free_ char *pem = NULL, *dump = NULL;
	_cleanup_json_ json_t *j = NULL, *addrs = NULL;
	unsigned char raw[32];
	char fp[65] = "", when[64] = "0001-01-01T00:00:00Z";
	struct token *t;
	int k;

	if (!lxmd_server_cert_read(d, &pem, fp))
		return lxm_error_set(err, -ENOENT, 400,
				     "create join token: the server has no certificate yet: set "
				     "core.https_address first");
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return lxm_error_set(err, -EIO, 500, "create join token: no random bytes");
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->name = strdup(name);
	if (!t->name) {
		free(t);
		return -ENOMEM;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(t->secret + 2 * i, 3, "%02x", raw[i]);
	if (ttl_sec > 0) {
		time_t e = time(NULL) + ttl_sec;
		struct tm tm;

		t->expires = e;
		gmtime_r(&e, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	LIST_INSERT_HEAD(&tokens, t, link);
	addrs = lxmd_https_addresses(d);
	j = json_pack("{s:s, s:s, s:O, s:s, s:s}", "client_name", name, "fingerprint", fp,
		      "addresses", addrs ? addrs : json_array(), "secret", t->secret, "expires_at",
		      when);
	dump = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (!dump || (k = base64(dump, ret_token)) < 0 || !(*ret_secret = strdup(t->secret))) {
		token_free(t);
		return -ENOMEM;
	}
	return 0;
}

int lxmd_token_redeem(const char *token, char **ret_name, struct lxm_error **err)
{
	_cleanup_free_ unsigned char *raw = NULL;
	_cleanup_json_ json_t *j = NULL;
	const char *secret = token;
	size_t n = strlen(token);
	struct token *t;

	/* The encoded token carries the secret; a bare secret is 64 hex digits. */
	if (n != 64 && n % 4 == 0 && n > 0) {
		int dl;

		raw = calloc(1, n / 4 * 3 + 1);
		if (!raw)
			return -ENOMEM;
		dl = EVP_DecodeBlock(raw, (const unsigned char *)token, (int)n);
		if (dl > 0)
			j = json_loads((const char *)raw, JSON_DISABLE_EOF_CHECK, NULL);
		secret = json_string_value(json_object_get(j, "secret"));
		if (!secret)
			secret = "";
	}
	LIST_FOREACH(t, &tokens, link)
	{
		if (!streq(t->secret, secret))
			continue;
		if (t->expires && time(NULL) > t->expires) {
			token_free(t);
			break;
		}
		*ret_name = TAKE_PTR(t->name);
		token_free(t);
		return 0;
	}
	return lxm_error_set(err, -EACCES, 403,
			     "add certificate: the token is unknown, expired or already used (lxmd "
			     "has no trust password: ask the admin for a join token)");
}

void lxmd_token_cancel(const char *secret)
{
	struct token *t;

	LIST_FOREACH(t, &tokens, link)
	if (streq(t->secret, secret)) {
		token_free(t);
		return;
	}
}

void lxmd_tokens_clear(void)
{
	while (!LIST_EMPTY(&tokens))
		token_free(LIST_FIRST(&tokens));
}

/* ---- the HTTPS listener ---- */

/* The host part of an address as the certificate names it. */
static void address_host(const char *address, char host[64])
{
	const char *end;

	host[0] = '\0';
	if (address[0] == '[') {
		end = strchr(address, ']');
		if (end)
			snprintf(host, 64, "%.*s", (int)(end - address - 1), address + 1);
		return;
	}
	end = strrchr(address, ':');
	if (end && strchr(address, ':') == end)
		snprintf(host, 64, "%.*s", (int)(end - address), address);
	else
		snprintf(host, 64, "%s", address);
}

int lxmd_https_set(struct lxmd *d, const char *address, struct lxm_error **err)
{
	_cleanup_free_ char *cert = NULL, *key = NULL;
	struct lxmd_server *s = NULL;
	char host[64];
	int k;

	if (!address || !*address) {
		if (d->https) {
			log_info("HTTPS listener on %s stopped", lxmd_server_address(d->https));
			lxmd_server_close(TAKE_PTR(d->https));
		}
		return 0;
	}
	if (d->https && streq(lxmd_server_address(d->https), address))
		return 0;
	address_host(address, host);
	k = lxmd_server_cert_ensure(d, host, &cert, &key, err);
	if (k < 0)
		return lxm_error_prefix(err, "HTTPS listener on '%s'", address);
	k = lxmd_server_new_tcp(d, address, cert, key, &s, err);
	/* The old listener may hold the port (the same port on another host part): free it and
	 * try again; if that fails too, the old one comes back. */
	if (k == UV_EADDRINUSE && d->https) {
		_cleanup_free_ char *old = strdup(lxmd_server_address(d->https));

		if (!old)
			return -ENOMEM;
		lxm_error_free(TAKE_PTR(*err));
		lxmd_server_close(TAKE_PTR(d->https));
		k = lxmd_server_new_tcp(d, address, cert, key, &s, err);
		if (k < 0 && lxmd_server_new_tcp(d, old, cert, key, &d->https, NULL) < 0)
			log_error("HTTPS listener: could not restore %s", old);
	}
	if (k < 0)
		return k;
	if (d->https)
		lxmd_server_close(TAKE_PTR(d->https));
	d->https = s;
	return 0;
}

json_t *lxmd_https_addresses(struct lxmd *d)
{
	json_t *a = json_array();
	const char *addr;
	char host[64];

	if (!a || !d->https)
		return a;
	addr = lxmd_server_address(d->https);
	address_host(addr, host);
	if (!*host || streq(host, "::") || streq(host, "0.0.0.0")) {
		char name[256] = "";
		const char *port = strrchr(addr, ':');

		gethostname(name, sizeof(name) - 1);
		json_array_append_new(a, json_sprintf("%s%s", name, port ? port : ":8443"));
	} else {
		json_array_append_new(a, json_string(addr));
	}
	return a;
}
