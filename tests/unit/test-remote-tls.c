/* The CLI's TLS helpers for remotes: join tokens, fingerprints, the client certificate, URLs. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "tap.h"
#include "tls-client.h"
#include "util.h"

static void test_tokens(void)
{
	char *addrs[] = { "127.0.0.1:8443", "[::1]:8443", NULL };
	struct lxm_tlsc_token t = {
		.client_name = "laptop",
		.fingerprint = "ab12",
		.addresses = addrs,
		.n_addresses = 2,
		.secret = "s3cr3t",
		.expires_at = "2030-01-01T00:00:00Z",
	};
	struct lxm_tlsc_token d = {};
	_cleanup_free_ char *enc = NULL, *unpadded = NULL;
	char raw[1024] = { 0 };
	int n;

	ok(lxm_tlsc_token_encode(&t, &enc) == 0, "a token encodes");
	ok(lxm_tlsc_token_decode(enc, &d) == 0, "and decodes");
	ok(streq(d.client_name, "laptop") && streq(d.fingerprint, "ab12") &&
		   streq(d.secret, "s3cr3t") && streq(d.expires_at, "2030-01-01T00:00:00Z"),
	   "with its fields");
	ok(d.n_addresses == 2 && streq(d.addresses[0], "127.0.0.1:8443") &&
		   streq(d.addresses[1], "[::1]:8443") && !d.addresses[2],
	   "and its addresses, NULL-terminated");
	lxm_tlsc_token_done(&d);

	/* The encoding is base64 of JSON, as LXD's: decode it by hand. */
	if (strlen(enc) * 3 / 4 >= sizeof(raw)) {
		ok(false, "the token fits the test's buffer");
		return;
	}
	n = EVP_DecodeBlock((unsigned char *)raw, (unsigned char *)enc, (int)strlen(enc));
	ok(n > 0 && strstr(raw, "\"secret\":\"s3cr3t\"") &&
		   strstr(raw, "\"client_name\":\"laptop\""),
	   "the token is base64 of LXD's JSON");

	unpadded = strdup(enc);
	while (unpadded[strlen(unpadded) - 1] == '=')
		unpadded[strlen(unpadded) - 1] = '\0';
	ok(lxm_tlsc_token_decode(unpadded, &d) == 0 && streq(d.secret, "s3cr3t"),
	   "a token without its base64 padding decodes");
	lxm_tlsc_token_done(&d);

	ok(lxm_tlsc_token_decode("https://host:8443", &d) == -EINVAL, "a URL is not a token");
	ok(lxm_tlsc_token_decode("", &d) == -EINVAL, "nor is nothing");
	/* base64 of {"secret":"x"}: no fingerprint, no address. */
	ok(lxm_tlsc_token_decode("eyJzZWNyZXQiOiJ4In0=", &d) == -EINVAL,
	   "a token without addresses is refused");
	/* base64 of "not json". */
	ok(lxm_tlsc_token_decode("bm90IGpzb24=", &d) == -EINVAL, "base64 of no JSON is refused");
}

static void test_urls(void)
{
	char *host = NULL, *port = NULL;

	ok(lxm_tlsc_split_url("https://10.0.0.1", "8443", &host, &port) == 0 &&
		   streq(host, "10.0.0.1") && streq(port, "8443"),
	   "the default port is 8443");
	free(host);
	free(port);
	ok(lxm_tlsc_split_url("https://example.org:9443/", "8443", &host, &port) == 0 &&
		   streq(host, "example.org") && streq(port, "9443"),
	   "an explicit port, a trailing slash");
	free(host);
	free(port);
	ok(lxm_tlsc_split_url("https://[::1]:7443", "8443", &host, &port) == 0 &&
		   streq(host, "::1") && streq(port, "7443"),
	   "an IPv6 literal loses its brackets");
	free(host);
	free(port);
	ok(lxm_tlsc_split_url("http://h", "8443", &host, &port) == -EINVAL, "http:// is refused");
	ok(lxm_tlsc_split_url("https://h:x", "8443", &host, &port) == -EINVAL, "a bad port too");
	ok(lxm_tlsc_split_url("https://h/1.0", "8443", &host, &port) == -EINVAL, "and a path");
	ok(lxm_tlsc_split_url("https://:8443", "8443", &host, &port) == -EINVAL,
	   "and an empty host");
}

static void test_client_cert(void)
{
	char dir[] = "/tmp/test-remote-tls.XXXXXX", cmd[512], fp[65], out[200], expect[200];
	_cleanup_free_ char *cert = NULL, *key = NULL, *pem = NULL, *der = NULL;
	const char *step;
	bool created;
	struct stat st;
	size_t len, j = 0;
	FILE *p;
	int r;

	if (!mkdtemp(dir)) {
		ok(false, "mkdtemp");
		return;
	}
	r = lxm_tlsc_client_cert_ensure(dir, &cert, &key, &created, &step);
	ok(r == 0 && created, "a client certificate is made on first use");
	ok(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600, "its key is mode 0600");
	free(cert);
	free(key);
	cert = key = NULL;
	r = lxm_tlsc_client_cert_ensure(dir, &cert, &key, &created, &step);
	ok(r == 0 && !created, "and kept afterwards");

	ok(lxm_read_file(cert, &pem, &len) == 0 && lxm_tlsc_fingerprint_pem(pem, len, fp) == 0 &&
		   strlen(fp) == 64,
	   "its fingerprint is 64 hex digits");
	/* openssl(1) prints AB:CD:...: the same digest, another spelling. */
	snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -noout -fingerprint -sha256", cert);
	p = popen(cmd, "r");
	out[0] = '\0';
	if (p) {
		if (!fgets(out, sizeof(out), p))
			out[0] = '\0';
		pclose(p);
	}
	for (const char *s = strchr(out, '='); s && *++s && *s != '\n';)
		if (*s != ':' && j < sizeof(expect) - 1)
			expect[j++] = (char)(*s >= 'A' && *s <= 'F' ? *s + 32 : *s);
	expect[j] = '\0';
	ok(streq(fp, expect), "and matches openssl's sha256 fingerprint (%s)", expect);
	snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -noout -text | grep -q 'secp384r1\\|P-384'",
		 cert);
	ok(system(cmd) == 0, "the key is EC P-384");

	ok(lxm_tlsc_pem_to_base64_der(pem, len, &der) == 0 && strlen(der) > 100 &&
		   !strchr(der, '\n'),
	   "base64 DER is one line");
	ok(lxm_tlsc_fingerprint_pem("junk", 4, fp) == -EBADMSG, "junk has no fingerprint");

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ok(system(cmd) == 0, "cleanup");
}

int main(void)
{
	test_tokens();
	test_urls();
	test_client_cert();
	return tap_done();
}
