/* Server certificate, client certificate parsing and join tokens (see certificates.h). */
#include "config.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
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
#include "operations.h"
#include "server-config.h"
#include "server.h"
#include "snapshot-schedule.h"
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

int lxm_token_expiry_parse(const char *text, int64_t now, int64_t *ret_expires,
			   struct lxm_error **err)
{
	struct lxm_expiry e;
	int k = lxm_expiry_parse_units(text, true, &e, err);

	if (k < 0)
		return k;
	*ret_expires =
		lxm_expiry_none(&e) ? 0 : lxm_expiry_add(&e, now * 1000000000LL) / 1000000000LL;
	return 0;
}

bool lxm_token_expired(int64_t expires, int64_t now)
{
	return expires > 0 && now >= expires;
}

/* RFC 3339 in UTC; Go's zero time for "never", as LXD shows it. */
static void format_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || !gmtime_r(&tt, &tm)) {
		snprintf(out, 32, "0001-01-01T00:00:00Z");
		return;
	}
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

struct token {
	LIST_ENTRY(token) link;	  /* in tokens */
	char *name;		  /* the client name it was made for */
	char secret[65];	  /* 32 random bytes in hex */
	int64_t expires;	  /* unix seconds, 0: never */
	struct lxm_operation *op; /* the running "token" operation that shows it (LXD's way) */
	uv_timer_t timer;	  /* fires at expires */
	bool timer_started;	  /* timer was initialised (then closed on free) */
};

static LIST_HEAD(, token) tokens = LIST_HEAD_INITIALIZER(tokens);

static void token_freed(uv_handle_t *h)
{
	free(h->data);
}

/* Forgets t and ends its operation: Success when redeemed (err NULL), else Cancelled or Failure
 * with err's message (consumed). */
static void token_end(struct token *t, struct lxm_error *err)
{
	struct lxm_operation *op = TAKE_PTR(t->op);

	LIST_REMOVE(t, link);
	free(TAKE_PTR(t->name));
	if (op)
		lxm_operation_finish(op, err);
	else
		lxm_error_free(err);
	if (t->timer_started) {
		uv_timer_stop(&t->timer);
		uv_close((uv_handle_t *)&t->timer, token_freed);
	} else {
		free(t);
	}
}

static int token_expired_error(const struct token *t, struct lxm_error **err)
{
	char when[32];

	format_time(t->expires, when);
	return lxm_error_set(err, -EACCES, 403, "token for '%s' expired at %s", t->name, when);
}

static void token_timer_fired(uv_timer_t *h)
{
	struct token *t = h->data;
	struct lxm_error *err = NULL;

	token_expired_error(t, &err);
	log_info("join token for client '%s' removed: %s", t->name, err ? err->msg : "expired");
	token_end(t, err);
}

/* DELETE /1.0/operations/<id> (lxc config trust revoke-token). */
static int token_op_cancel(struct lxm_operation *op, void *data, struct lxm_error **err)
{
	struct token *t = data;
	struct lxm_error *e = NULL;

	(void)op;
	(void)err;
	log_info("join token for client '%s' revoked", t->name);
	lxm_error_set(&e, -ECANCELED, 400, "token for '%s' revoked", t->name);
	token_end(t, e);
	return 0;
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

/* The operation's metadata: LXD's fields (request, secret, fingerprint, addresses, expiresAt,
 * from which its client encodes the token) and the encoded token itself. */
static json_t *token_metadata(struct lxmd *d, const struct token *t, const char *fp)
{
	_cleanup_free_ char *dump = NULL, *encoded = NULL;
	_cleanup_json_ json_t *addrs = lxmd_https_addresses(d), *j = NULL;
	char when[32];

	format_time(t->expires, when);
	if (!addrs)
		return NULL;
	j = json_pack("{s:s, s:s, s:O, s:s, s:s}", "client_name", t->name, "fingerprint", fp,
		      "addresses", addrs, "secret", t->secret, "expires_at", when);
	dump = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (!dump || base64(dump, &encoded) < 0)
		return NULL;
	return json_pack("{s:{s:s, s:s, s:b}, s:s, s:s, s:O, s:s, s:s, s:s, s:s, s:s}", "request",
			 "name", t->name, "type", "client", "token", 1, "secret", t->secret,
			 "fingerprint", fp, "addresses", addrs, "expiresAt", when, "client_name",
			 t->name, "clientName", t->name, "expires_at", when, "token", encoded);
}

int lxmd_token_new(struct lxmd *d, const char *name, struct lxm_operation **ret_op,
		   struct lxm_error **err)
{
	_cleanup_free_ char *pem = NULL, *expiry = NULL;
	_cleanup_json_ json_t *md = NULL;
	char fp[65] = "";
	int64_t now = time(NULL), expires = 0;
	struct token *t;
	int k;

	if (!lxmd_server_cert_read(d, &pem, fp))
		return lxm_error_set(err, -ENOENT, 400,
				     "create join token: the server has no certificate yet: set "
				     "core.https_address first");
	expiry = lxmd_server_config_string(d, LXM_KEY_REMOTE_TOKEN_EXPIRY);
	if (!expiry)
		return lxm_error_set(err, -ENOMEM, 500, "create join token: out of memory");
	k = lxm_token_expiry_parse(expiry, now, &expires, err);
	if (k < 0)
		return lxm_error_prefix(err, "create join token: %s", LXM_KEY_REMOTE_TOKEN_EXPIRY);
	t = calloc(1, sizeof(*t));
	if (!t)
		return lxm_error_set(err, -ENOMEM, 500, "create join token: out of memory");
	k = lxm_random_hex(t->secret, (sizeof(t->secret) - 1) / 2);
	if (k < 0) {
		free(t);
		return lxm_error_setx(err, k, 500, "create join token: random secret");
	}
	t->name = strdup(name);
	LIST_INSERT_HEAD(&tokens, t, link);
	t->expires = expires;
	md = t->name ? token_metadata(d, t, fp) : NULL;
	if (!md) {
		token_end(t, NULL);
		return lxm_error_set(err, -ENOMEM, 500, "create join token: out of memory");
	}
	k = lxm_operation_new(d->ops, LXM_OP_TOKEN, "Certificate add token", NULL, NULL,
			      token_op_cancel, t, NULL, &t->op);
	if (k < 0) {
		token_end(t, NULL);
		return lxm_error_setx(err, k, 500, "create join token: new operation");
	}
	lxm_operation_set_metadata(t->op, TAKE_PTR(md));
	lxm_operation_start(t->op);
	if (expires) {
		uint64_t ms = expires > now ? (uint64_t)(expires - now) * 1000 : 0;

		uv_timer_init(d->loop, &t->timer);
		t->timer.data = t;
		t->timer_started = true;
		uv_timer_start(&t->timer, token_timer_fired, ms, 0);
	}
	*ret_op = t->op;
	return 0;
}

/* For a token that is not (or no longer) known: when the token itself says it expired, that
 * is the clearer reason. */
static int token_unknown_error(const json_t *j, struct lxm_error **err)
{
	const char *name = json_string_value(json_object_get(j, "client_name"));
	const char *when = json_string_value(json_object_get(j, "expires_at"));
	struct tm tm = { 0 };
	const char *end = when ? strptime(when, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;

	if (name && end && tm.tm_year > 1 && lxm_token_expired((int64_t)timegm(&tm), time(NULL)))
		return lxm_error_set(err, -EACCES, 403,
				     "add certificate: token for '%s' expired at %s", name, when);
	return lxm_error_set(err, -EACCES, 403,
			     "add certificate: the token is unknown, revoked or already used (lxmd "
			     "has no trust password: ask the admin for a join token)");
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
		struct lxm_error *e = NULL;

		if (!streq(t->secret, secret))
			continue;
		if (lxm_token_expired(t->expires, time(NULL))) {
			token_expired_error(t, &e);
			token_expired_error(t, err);
			token_end(t, e);
			return lxm_error_prefix(err, "add certificate");
		}
		*ret_name = TAKE_PTR(t->name);
		token_end(t, NULL);
		return 0;
	}
	return token_unknown_error(j, err);
}

void lxmd_tokens_clear(void)
{
	while (!LIST_EMPTY(&tokens)) {
		struct lxm_error *e = NULL;

		lxm_error_set(&e, -ECANCELED, 503, "lxmd is stopping: join tokens end with it");
		token_end(LIST_FIRST(&tokens), e);
	}
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

void lxmd_https_close_websockets_of(struct lxmd *d, const char *fp, const char *why)
{
	size_t n;

	if (!d->https)
		return;
	n = lxmd_server_close_websockets_of(d->https, fp);
	if (n)
		log_info("closed %zu websocket%s of certificate %.12s: %s", n, n == 1 ? "" : "s",
			 fp, why);
}
