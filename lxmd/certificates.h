/* Certificates for the HTTPS listener: the server's own (generated on first use), parsing of the
 * client certificates the trust store takes, and the single-use join tokens that let a client add
 * its own certificate. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct lxmd;
struct lxm_operation;

/* Makes a self-signed EC P-384 certificate valid for ten years, CN cn, with sans ("DNS:x" or
 * "IP:1.2.3.4", NULL-terminated, may be NULL) as subjectAltName; writes the key (mode 0600) and
 * the certificate as PEM. */
int lxm_cert_generate(const char *cert_path, const char *key_path, const char *cn,
		      const char *const *sans, struct lxm_error **err);

/* ROOT/server.crt and ROOT/server.key, generated when missing (CN the hostname, SANs the
 * hostname, localhost and host, the listen address' host when non-empty). */
int lxmd_server_cert_ensure(struct lxmd *d, const char *host, char **ret_cert, char **ret_key,
			    struct lxm_error **err);
/* The server certificate's PEM and fingerprint, if it exists (false otherwise). */
bool lxmd_server_cert_read(struct lxmd *d, char **ret_pem, char ret_fp[65]);

/* A certificate given as PEM or as base64 of its DER (LXD's POST /1.0/certificates): its PEM, its
 * sha256 fingerprint and its CN (for a default name). 400 when it is neither. */
int lxm_cert_parse(const char *input, char **ret_pem, char ret_fp[65], char **ret_cn,
		   struct lxm_error **err);

/* ---- join tokens ---- */

/* core.remote_token_expiry as LXD writes it: counts with units separated by spaces, S seconds,
 * M minutes, H hours, d days, w weeks, m months, y years ("10M", "1d 3H"). *ret_expires is now
 * (unix seconds) plus that, or 0 for "" (never). 400 naming the value when it is none of that. */
int lxm_token_expiry_parse(const char *text, int64_t now, int64_t *ret_expires,
			   struct lxm_error **err);
/* Whether a token expiring at expires (unix seconds, 0: never) has expired at now. */
bool lxm_token_expired(int64_t expires, int64_t now);

/* Makes a single-use token for the client name, valid for core.remote_token_expiry. As in LXD,
 * it is a running operation of class "token" whose metadata holds the request, the secret, the
 * server's fingerprint and addresses, expiresAt, and the encoded token (base64 of LXD's JSON
 * {client_name, fingerprint, addresses, secret, expires_at}); cancelling the operation revokes
 * the token, redeeming it ends it (Success), expiry ends it (Failure). Tokens live in memory:
 * none survives lxmd. */
int lxmd_token_new(struct lxmd *d, const char *name, struct lxm_operation **ret_op,
		   struct lxm_error **err);
/* Redeems a token (the encoded token or its bare secret): consumed on success, the client name
 * it was made for in *ret_name. 403 when unknown, revoked, used or expired (then saying when). */
int lxmd_token_redeem(const char *token, char **ret_name, struct lxm_error **err);
/* Ends every token (at shutdown): their operations are cancelled. */
void lxmd_tokens_clear(void);

/* ---- the HTTPS listener ---- */

/* Makes core.https_address effective: "" stops the listener (closing its connections), an
 * address (re)starts it there, with the server certificate generated if needed. On failure the
 * listener stays as it was and err names the address and the cause (400). */
int lxmd_https_set(struct lxmd *d, const char *address, struct lxm_error **err);
/* The addresses in GET /1.0's environment.addresses: the listener's, with a wildcard host
 * replaced by the host's addresses; an empty array without a listener. */
json_t *lxmd_https_addresses(struct lxmd *d);
/* Closes the open websockets (events, exec, console) of the HTTPS clients with certificate fp,
 * which has just left the trust store or become read-only (why says which, for the log). Their
 * next requests are refused by the per-request trust check already. */
void lxmd_https_close_websockets_of(struct lxmd *d, const char *fp, const char *why);
