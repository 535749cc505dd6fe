/* TLS over any byte stream with OpenSSL memory BIOs: the caller feeds what it read from the
 * socket in, takes the plaintext out, hands plaintext to send in and writes out what comes back.
 * No socket is touched here, so libuv streams (and tests) drive it as they like. */
#pragma once

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

struct lxm_tls;

/* The oldest queued OpenSSL error as text in buf (the queue is cleared), or "unknown error". */
const char *lxm_tls_reason(char buf[160]);

/* A server context: TLS 1.2 minimum, the certificate and key from PEM files, and client
 * certificates requested but not required (any is accepted here: trust is decided by the
 * caller from the fingerprint). */
int lxm_tls_server_ctx(const char *cert_path, const char *key_path, SSL_CTX **ret,
		       struct lxm_error **err);

/* A session on ctx (server true: accepts, false: connects). */
int lxm_tls_new(SSL_CTX *ctx, bool server, struct lxm_tls **ret);
void lxm_tls_free(struct lxm_tls *t);

/* Hands bytes read from the peer to the session. */
int lxm_tls_feed(struct lxm_tls *t, const void *data, size_t len);
/* Decrypted bytes into buf (the handshake advances as needed): >0 bytes, 0 when more input is
 * needed, -ECONNRESET when the peer closed the session, -EPROTO on a TLS error (its reason in
 * lxm_tls_error()). */
ssize_t lxm_tls_read(struct lxm_tls *t, void *buf, size_t cap);
/* Encrypts data; the result waits in lxm_tls_take_output(). Returns 0 or -EPROTO. */
int lxm_tls_write(struct lxm_tls *t, const void *data, size_t len);
/* The bytes to send to the peer (handshake records, encrypted data), malloc'ed in *ret (NULL
 * and 0 when there are none). */
int lxm_tls_take_output(struct lxm_tls *t, char **ret, size_t *ret_len);
/* Whether the handshake has completed. */
bool lxm_tls_established(const struct lxm_tls *t);
/* The sha256 of the peer certificate's DER as 64 hex digits, or false when the peer sent
 * none (or the handshake is not done). */
bool lxm_tls_peer_fingerprint(const struct lxm_tls *t, char ret[65]);
/* The last TLS error as text ("" when none). */
const char *lxm_tls_error(const struct lxm_tls *t);

/* The peer's certificate as PEM (-ENOENT when it sent none). */
int lxm_tls_peer_pem(const struct lxm_tls *t, char **ret);
/* The OpenSSL session (tests inspect the protocol version). */
SSL *lxm_tls_ssl(struct lxm_tls *t);
