/* The client side of TLS for the CLI's remotes (OpenSSL): a context that presents the client's
 * certificate and checks the server's against a pinned one, connections over TCP, the client
 * certificate generated on first use, certificate fingerprints, and LXD's certificate add tokens.
 * Helpers here never log: failures are -errno with a static detail for the caller's message. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* Why a TLS connection failed, beyond its errno. */
enum lxm_tlsc_fail {
	LXM_TLSC_FAIL_NONE,	       /* connected */
	LXM_TLSC_FAIL_RESOLVE,	       /* the host name did not resolve */
	LXM_TLSC_FAIL_CONNECT,	       /* connect() failed; the errno is connect()'s */
	LXM_TLSC_FAIL_CONNECT_TIMEOUT, /* the server did not accept within the timeout */
	LXM_TLSC_FAIL_HANDSHAKE,       /* the TLS handshake failed; detail says why */
	LXM_TLSC_FAIL_PIN,	       /* the server's certificate is not the pinned one */
};

struct lxm_tlsc {
	SSL_CTX *ctx;	    /* the client's certificate and key, TLS 1.2 or later */
	char *pin_fp;	    /* the sha256 fingerprint the server's certificate must have, or NULL */
	char *peer_fp;	    /* the last server certificate seen's fingerprint, or NULL */
	char *peer_pem;	    /* the last server certificate seen, PEM, or NULL */
	const char *detail; /* a static description of the last failure, or NULL */
};

/* A context presenting cert_file/key_file (both NULL: no client certificate), checking the
 * server's certificate against the PEM file pin_file (NULL: accept any and remember it, to show
 * it to the user). Returns 0, -ENOENT/-EACCES for unreadable files, -EKEYREJECTED for a key that
 * does not match its certificate, -EBADMSG for files that are no PEM, -ENOMEM. */
int lxm_tlsc_new(const char *cert_file, const char *key_file, const char *pin_file,
		 struct lxm_tlsc **ret);
void lxm_tlsc_free(struct lxm_tlsc *t);
static inline void lxm_tlsc_freep(struct lxm_tlsc **t)
{
	lxm_tlsc_free(*t);
}

/* Connects to host:port and completes the TLS handshake, waiting at most timeout_ms for each
 * step. On success *ret_fd (non-blocking) and *ret_ssl; the server's certificate is remembered in
 * t->peer_fp/peer_pem. On failure -errno and *ret_fail; a certificate that is not the pinned one
 * is -EKEYREJECTED with LXM_TLSC_FAIL_PIN (t->peer_fp says what it was). */
int lxm_tlsc_connect(struct lxm_tlsc *t, const char *host, const char *port, unsigned timeout_ms,
		     int *ret_fd, SSL **ret_ssl, enum lxm_tlsc_fail *ret_fail);

/* Whether host:port accepts a TCP connection within timeout_ms: 0 or -errno. */
int lxm_tlsc_probe(const char *host, const char *port, unsigned timeout_ms);

/* Closes a connection made by lxm_tlsc_connect(). */
void lxm_tlsc_close(SSL *ssl, int fd);

/* The sha256 fingerprint of a certificate (of its DER), as 64 lowercase hex digits. */
int lxm_tlsc_fingerprint(X509 *cert, char ret[65]);
/* The same for a certificate in PEM; -EBADMSG when pem holds none. */
int lxm_tlsc_fingerprint_pem(const char *pem, size_t len, char ret[65]);
/* The base64 of a PEM certificate's DER, as LXD's POST /1.0/certificates takes it. */
int lxm_tlsc_pem_to_base64_der(const char *pem, size_t len, char **ret);

/* Makes a self-signed EC P-384 certificate valid for ten years, O lxm and CN cn, with the
 * n_exts X509v3 extensions exts ({name, value} in OpenSSL's config syntax, e.g.
 * {"subjectAltName", "DNS:x,IP:1.2.3.4"}), and writes the key (mode 0600) and the certificate as
 * PEM, each atomically. On failure -errno, *ret_step names the step and OpenSSL's error queue
 * says why (the caller clears it). */
int lxm_tlsc_cert_generate(const char *cert_path, const char *key_path, const char *cn,
			   const char *exts[][2], size_t n_exts, const char **ret_step);

/* DIR/client.crt and DIR/client.key, a self-signed EC P-384 certificate and its key (mode 0600),
 * made when either is missing (DIR is created 0700). *ret_created says whether they were made. */
int lxm_tlsc_client_cert_ensure(const char *dir, char **ret_cert, char **ret_key, bool *ret_created,
				const char **ret_step);

/* An https://HOST[:PORT][/] URL split into host (brackets of an IPv6 literal dropped) and port
 * (default_port when none). -EINVAL for anything else. */
int lxm_tlsc_split_url(const char *url, const char *default_port, char **ret_host, char **ret_port);

/* LXD's certificate add token: base64 of JSON {client_name, fingerprint, addresses, secret,
 * expires_at}. */
struct lxm_tlsc_token {
	char *client_name;  /* the name the token was made for */
	char *fingerprint;  /* the server certificate's fingerprint */
	char **addresses;   /* "HOST:PORT" addresses of the server, NULL-terminated */
	size_t n_addresses; /* entries in addresses */
	char *secret;	    /* the single-use secret */
	char *expires_at;   /* RFC 3339 expiry, or NULL */
};

/* Decodes a token: -EINVAL when s is not one (not base64, not JSON, or without a secret,
 * a fingerprint or an address). */
int lxm_tlsc_token_decode(const char *s, struct lxm_tlsc_token *ret);
/* Encodes a token (expires_at may be NULL). */
int lxm_tlsc_token_encode(const struct lxm_tlsc_token *t, char **ret);
void lxm_tlsc_token_done(struct lxm_tlsc_token *t);
