/* /1.0/certificates: the trust store of the HTTPS listener, and the trust check every request
 * from the network goes through. Clients on the unix socket are trusted (the socket's mode
 * guards it); a TLS client is trusted when its certificate's fingerprint is in the store, looked
 * up per request so that a removed certificate stops working at once, also on connections that
 * are already open; the websockets such a client has open are closed when its certificate is
 * removed or made read-only. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "certificates.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "events.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "server.h"
#include "util.h"

/* What an untrusted client may do: read the server's public description, add itself with a
 * token, list, read and export the public images and their aliases (the image handlers show it
 * nothing else: lxmd as an image server for other hosts), and, as with LXD, connect the
 * websockets of an operation, which its secret authorises: the secret is known only to whoever
 * created the operation, and clients such as pylxd (ws4py) open them without a certificate. */
static bool untrusted_allowed(struct lxmd_request *r)
{
	static const char *const readable[] = { "/",
						"/1.0",
						"/1.0/images",
						"/1.0/images/*",
						"/1.0/images/*/export",
						"/1.0/images/aliases",
						"/1.0/images/aliases/**",
						"/1.0/operations/*/websocket" };
	enum lxmd_method m = lxmd_method_from_http(r->http->method);
	const char *p = r->route ? r->route->pattern : "";

	if (m == LXMD_GET)
		for (size_t i = 0; i < ARRAY_SIZE(readable); i++)
			if (streq(p, readable[i]))
				return true;
	return m == LXMD_POST && streq(p, "/1.0/certificates");
}

int lxmd_api_check_trust(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_certificate_ struct lxm_db_certificate *c = NULL;
	_cleanup_error_ struct lxm_error *e = NULL;
	const char *fp = lxmd_conn_peer_fingerprint(r->conn);
	enum lxmd_method m = lxmd_method_from_http(r->http->method);
	int k;

	r->untrusted = false;
	if (!fp)
		return 0;
	k = *fp ? lxm_db_certificate_get(r->d->db, fp, &c, &e) : -ENOENT;
	/* A prefix lookup would also accept a longer stored fingerprint: compare in full. */
	if (k == 0 && !streq(c->fingerprint, fp))
		k = -ENOENT;
	if (k < 0 && k != -ENOENT)
		return lxm_error_set(err, k, 500, "check client certificate: %s",
				     e ? e->msg : "database error");
	if (k < 0) {
		r->untrusted = true;
		if (untrusted_allowed(r))
			return 0;
		log_info("%s %s from %s: refused, client not trusted (certificate %s)",
			 http_method_str(r->http->method), r->http->path,
			 lxmd_conn_peer_address(r->conn), *fp ? fp : "none");
		return lxm_error_set(err, -EACCES, 403, "not authorized");
	}
	if (c->read_only && m != LXMD_GET) {
		log_info("%s %s from %s: refused, certificate '%s' is read-only",
			 http_method_str(r->http->method), r->http->path,
			 lxmd_conn_peer_address(r->conn), c->name);
		return lxm_error_set(err, -EACCES, 403,
				     "not authorized: certificate '%s' is read-only", c->name);
	}
	return 0;
}

static json_t *certificate_json(const struct lxm_db_certificate *c)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:b, s:[], s:b}", "name", c->name, "type", c->type,
			 "fingerprint", c->fingerprint, "certificate", c->certificate, "restricted",
			 c->restricted, "projects", "read_only", c->read_only);
}

static int certificate_object(struct lxmd_request *r, const char *fp, json_t **ret,
			      struct lxm_error **err)
{
	_cleanup_db_certificate_ struct lxm_db_certificate *c = NULL;
	int k = lxm_db_certificate_get(r->d->db, fp, &c, err);

	if (k < 0)
		return k;
	*ret = certificate_json(c);
	return *ret ? 0 : -ENOMEM;
}

int lxmd_api_certificates_get(struct lxmd_request *r, struct lxm_error **err)
{
	return lxmd_list_collection(r, "/1.0/certificates", "certificates",
				    lxm_db_certificate_fingerprints, certificate_object, true, err);
}

static int read_type(const json_t *body, struct lxm_error **err)
{
	const char *type = NULL;
	int k = lxm_json_opt_string(body, "type", &type, err);

	if (k < 0)
		return k;
	if (type && *type && !streq(type, "client"))
		return lxm_error_set(
			err, -EINVAL, 400,
			"add certificate: type '%.32s' is not supported (only \"client\")", type);
	return 0;
}

/* {"token": true, "name": N}: a join token, shown (as in LXD) by an operation of class "token"
 * that runs until the token is redeemed, revoked or expires. */
static int create_token(struct lxmd_request *r, const char *name, struct lxm_error **err)
{
	struct lxm_operation *op = NULL;
	int k;

	if (!name || !*name)
		return lxm_error_set(err, -EINVAL, 400,
				     "create join token: a \"name\" for the client is required");
	k = lxmd_token_new(r->d, name, &op, err);
	if (k < 0)
		return k;
	log_info("join token created for client '%s'", name);
	k = lxmd_respond_async(r, op);
	return k < 0 ? k : 0;
}

static int add_certificate(struct lxmd_request *r, const char *pem, const char *fp,
			   const char *name, bool read_only, struct lxm_error **err)
{
	_cleanup_free_ char *url = NULL;
	struct lxm_db_certificate c = {
		.fingerprint = (char *)fp,
		.name = (char *)name,
		.type = (char *)"client",
		.certificate = (char *)pem,
		.read_only = read_only,
	};
	int k = lxm_db_certificate_add(r->d->db, &c, err);

	if (k < 0)
		return k;
	log_info("certificate %s ('%s'%s) is trusted now", fp, name,
		 read_only ? ", read-only" : "");
	if (asprintf(&url, "/1.0/certificates/%s", fp) >= 0)
		lxm_events_lifecycle(r->d->events, "certificate-created", url, NULL);
	return lxmd_respond_sync(r, NULL, NULL);
}

/* An untrusted TLS client redeems a join token (LXD 5.0 sends it as "password"; later LXD as
 * "trust_token"): its own certificate is added under the token's name. */
static int redeem_token(struct lxmd_request *r, const char *token, struct lxm_error **err)
{
	_cleanup_free_ char *name = NULL, *pem = NULL;
	const char *peer = lxmd_conn_peer_fingerprint(r->conn);
	_cleanup_db_certificate_ struct lxm_db_certificate *c = NULL;
	int k;

	if (!peer)
		return lxm_error_set(err, -EINVAL, 400,
				     "add certificate: a token is redeemed over HTTPS with the "
				     "client certificate to trust");
	if (!*peer)
		return lxm_error_set(err, -EACCES, 403,
				     "add certificate: the client sent no TLS certificate");
	if (!r->untrusted)
		return lxmd_respond_sync(r, NULL, NULL);
	k = lxmd_token_redeem(token, &name, err);
	if (k < 0) {
		log_info("POST /1.0/certificates from %s: token refused",
			 lxmd_conn_peer_address(r->conn));
		return k;
	}
	(void)c;
	/* The peer's certificate as the handshake gave it. */
	k = lxmd_conn_peer_pem(r->conn, &pem);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "add certificate: read the client certificate");
	return add_certificate(r, pem, peer, name, false, err);
}

int lxmd_api_certificates_post(struct lxmd_request *r, struct lxm_error **err)
{
	const char *cert = NULL, *name = NULL, *password = NULL, *trust_token = NULL;
	_cleanup_free_ char *pem = NULL, *cn = NULL;
	bool token = false, read_only = false;
	char fp[65];
	int k;

	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400, "add certificate: request body is empty");
	if ((k = lxm_json_opt_string(r->body, "certificate", &cert, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "password", &password, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "trust_token", &trust_token, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "token", &token, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "read_only", &read_only, err)) < 0 ||
	    (k = read_type(r->body, err)) < 0)
		return lxm_error_prefix(err, "add certificate");
	if (trust_token && *trust_token)
		return redeem_token(r, trust_token, err);
	if (password && *password)
		return redeem_token(r, password, err);
	if (r->untrusted)
		return lxm_error_set(err, -EACCES, 403, "not authorized");
	if (json_is_true(json_object_get(r->body, "restricted")))
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "add certificate: restricted certificates (limited to "
				     "projects) are not supported: lxmd has one project");
	if (token)
		return create_token(r, name, err);
	if (!cert || !*cert) {
		const char *peer = lxmd_conn_peer_fingerprint(r->conn);

		/* A trusted client adding itself: it is in already. */
		if (peer && *peer)
			return lxmd_respond_sync(r, NULL, NULL);
		return lxm_error_set(err, -EINVAL, 400,
				     "add certificate: give \"certificate\" (PEM or base64 DER), "
				     "\"token\": true, or a token to redeem");
	}
	if ((k = lxm_cert_parse(cert, &pem, fp, &cn, err)) < 0)
		return lxm_error_prefix(err, "add certificate");
	return add_certificate(r, pem, fp, name && *name ? name : (*cn ? cn : fp), read_only, err);
}

int lxmd_api_certificate_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_certificate_ struct lxm_db_certificate *c = NULL;
	_cleanup_json_ json_t *j = NULL;
	char etag[65];
	int k = lxm_db_certificate_get(r->d->db, r->args[0], &c, err);

	if (k < 0)
		return k;
	j = certificate_json(c);
	if (!j)
		return -ENOMEM;
	{
		_cleanup_json_ json_t *w =
			json_pack("{s:s, s:b, s:b}", "name", c->name, "restricted", c->restricted,
				  "read_only", c->read_only);

		if (!w || (k = lxmd_etag(w, etag)) < 0)
			return -ENOMEM;
	}
	return lxmd_respond_sync(r, TAKE_PTR(j), etag);
}

static int certificate_update(struct lxmd_request *r, bool patch, struct lxm_error **err)
{
	_cleanup_db_certificate_ struct lxm_db_certificate *c = NULL;
	const char *name = NULL, *type = NULL;
	bool read_only, restricted, was_read_only;
	char etag[65];
	int k = lxm_db_certificate_get(r->d->db, r->args[0], &c, err);

	if (k < 0)
		return k;
	if (!r->body)
		return lxm_error_set(err, -EINVAL, 400,
				     "update certificate %s: request body is empty",
				     c->fingerprint);
	{
		_cleanup_json_ json_t *w =
			json_pack("{s:s, s:b, s:b}", "name", c->name, "restricted", c->restricted,
				  "read_only", c->read_only);

		if (!w || (k = lxmd_etag(w, etag)) < 0)
			return -ENOMEM;
	}
	read_only = patch ? c->read_only : false;
	restricted = false;
	if ((k = lxmd_check_if_match(r, etag, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "name", &name, err)) < 0 ||
	    (k = lxm_json_opt_string(r->body, "type", &type, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "read_only", &read_only, err)) < 0 ||
	    (k = lxm_json_opt_bool(r->body, "restricted", &restricted, err)) < 0)
		return lxm_error_prefix(err, "update certificate %s", c->fingerprint);
	if (type && *type && !streq(type, "client"))
		return lxm_error_set(err, -EINVAL, 400,
				     "update certificate %s: type '%.32s' is not supported (only "
				     "\"client\")",
				     c->fingerprint, type);
	if (restricted)
		return lxm_error_set(err, -EOPNOTSUPP, 400,
				     "update certificate %s: restricted certificates are not "
				     "supported",
				     c->fingerprint);
	if (name && *name) {
		free(c->name);
		c->name = strdup(name);
		if (!c->name)
			return -ENOMEM;
	} else if (!patch) {
		return lxm_error_set(err, -EINVAL, 400,
				     "update certificate %s: \"name\" is required", c->fingerprint);
	}
	was_read_only = c->read_only;
	c->read_only = read_only;
	if ((k = lxm_db_certificate_update(r->d->db, c, err)) < 0)
		return k;
	if (read_only && !was_read_only)
		lxmd_https_close_websockets_of(r->d, c->fingerprint, "made read-only");
	return lxmd_respond_sync(r, NULL, NULL);
}

int lxmd_api_certificate_put(struct lxmd_request *r, struct lxm_error **err)
{
	return certificate_update(r, false, err);
}

int lxmd_api_certificate_patch(struct lxmd_request *r, struct lxm_error **err)
{
	return certificate_update(r, true, err);
}

int lxmd_api_certificate_delete(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_db_certificate_ struct lxm_db_certificate *c = NULL;
	_cleanup_free_ char *url = NULL;
	int k = lxm_db_certificate_get(r->d->db, r->args[0], &c, err);

	if (k < 0 || (k = lxm_db_certificate_delete(r->d->db, c->fingerprint, err)) < 0)
		return k;
	log_info("certificate %s ('%s') removed from the trust store", c->fingerprint, c->name);
	lxmd_https_close_websockets_of(r->d, c->fingerprint, "removed from the trust store");
	if (asprintf(&url, "/1.0/certificates/%s", c->fingerprint) >= 0)
		lxm_events_lifecycle(r->d->events, "certificate-deleted", url, NULL);
	return lxmd_respond_sync(r, NULL, NULL);
}
