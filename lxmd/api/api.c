#include "config.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "devices.h"
#include "events.h"
#include "http.h"
#include "json.h"
#include "networks.h"
#include "nic.h"
#include "profiles/keys.h"
#include "proxy.h"
#include "server.h"
#include "snapshot-schedule.h"
#include "util.h"

/* Every route of the API. The first match wins; patterns overlap only where a fixed segment
 * comes before a '*' in the same place (/1.0/images/aliases before /1.0/images/ *). */
static const struct lxmd_route routes[] = {
	{ "/", { [LXMD_GET] = lxmd_api_root_get } },
	{ "/1.0",
	  { [LXMD_GET] = lxmd_api_server_get,
	    [LXMD_PUT] = lxmd_api_server_put,
	    [LXMD_PATCH] = lxmd_api_server_patch } },
	{ "/1.0/events", { [LXMD_GET] = lxmd_api_events_get }, LXMD_ROUTE_WEBSOCKET },
	{ "/1.0/certificates",
	  { [LXMD_GET] = lxmd_api_certificates_get, [LXMD_POST] = lxmd_api_certificates_post } },
	{ "/1.0/certificates/*",
	  { [LXMD_GET] = lxmd_api_certificate_get,
	    [LXMD_PUT] = lxmd_api_certificate_put,
	    [LXMD_PATCH] = lxmd_api_certificate_patch,
	    [LXMD_DELETE] = lxmd_api_certificate_delete } },
	{ "/1.0/operations", { [LXMD_GET] = lxmd_api_operations_get } },
	{ "/1.0/operations/*",
	  { [LXMD_GET] = lxmd_api_operation_get, [LXMD_DELETE] = lxmd_api_operation_delete } },
	{ "/1.0/operations/*/wait", { [LXMD_GET] = lxmd_api_operation_wait } },
	{ "/1.0/operations/*/websocket",
	  { [LXMD_GET] = lxmd_api_operation_websocket_get },
	  LXMD_ROUTE_WEBSOCKET },
	{ "/1.0/instances",
	  { [LXMD_GET] = lxmd_api_instances_get, [LXMD_POST] = lxmd_api_instances_post } },
	{ "/1.0/instances/*",
	  { [LXMD_GET] = lxmd_api_instance_get,
	    [LXMD_POST] = lxmd_api_instance_post,
	    [LXMD_PUT] = lxmd_api_instance_put,
	    [LXMD_PATCH] = lxmd_api_instance_patch,
	    [LXMD_DELETE] = lxmd_api_instance_delete } },
	{ "/1.0/instances/*/state",
	  { [LXMD_GET] = lxmd_api_instance_state_get, [LXMD_PUT] = lxmd_api_instance_state_put } },
	{ "/1.0/instances/*/exec", { [LXMD_POST] = lxmd_api_instance_exec_post } },
	{ "/1.0/instances/*/files",
	  { [LXMD_GET] = lxmd_api_instance_files_get,
	    [LXMD_POST] = lxmd_api_instance_files_post,
	    [LXMD_DELETE] = lxmd_api_instance_files_delete },
	  LXMD_ROUTE_RAW_BODY | LXMD_ROUTE_STREAM_BODY },
	{ "/1.0/instances/*/console",
	  { [LXMD_GET] = lxmd_api_instance_console_get,
	    [LXMD_POST] = lxmd_api_instance_console_post,
	    [LXMD_DELETE] = lxmd_api_instance_console_delete } },
	{ "/1.0/instances/*/snapshots",
	  { [LXMD_GET] = lxmd_api_instance_snapshots_get,
	    [LXMD_POST] = lxmd_api_instance_snapshots_post } },
	{ "/1.0/instances/*/snapshots/*",
	  { [LXMD_GET] = lxmd_api_instance_snapshot_get,
	    [LXMD_PUT] = lxmd_api_instance_snapshot_put,
	    [LXMD_PATCH] = lxmd_api_instance_snapshot_patch,
	    [LXMD_POST] = lxmd_api_instance_snapshot_post,
	    [LXMD_DELETE] = lxmd_api_instance_snapshot_delete } },
	{ "/1.0/profiles",
	  { [LXMD_GET] = lxmd_api_profiles_get, [LXMD_POST] = lxmd_api_profiles_post } },
	{ "/1.0/profiles/*",
	  { [LXMD_GET] = lxmd_api_profile_get,
	    [LXMD_PUT] = lxmd_api_profile_put,
	    [LXMD_PATCH] = lxmd_api_profile_patch,
	    [LXMD_POST] = lxmd_api_profile_post,
	    [LXMD_DELETE] = lxmd_api_profile_delete } },
	{ "/1.0/images",
	  { [LXMD_GET] = lxmd_api_images_get, [LXMD_POST] = lxmd_api_images_post },
	  LXMD_ROUTE_RAW_BODY | LXMD_ROUTE_STREAM_BODY },
	/* Before /1.0/images/ *: "aliases" is not a fingerprint. */
	{ "/1.0/images/aliases",
	  { [LXMD_GET] = lxmd_api_image_aliases_get, [LXMD_POST] = lxmd_api_image_aliases_post } },
	{ "/1.0/images/aliases/**",
	  { [LXMD_GET] = lxmd_api_image_alias_get,
	    [LXMD_PUT] = lxmd_api_image_alias_put,
	    [LXMD_PATCH] = lxmd_api_image_alias_patch,
	    [LXMD_POST] = lxmd_api_image_alias_post,
	    [LXMD_DELETE] = lxmd_api_image_alias_delete } },
	{ "/1.0/images/*",
	  { [LXMD_GET] = lxmd_api_image_get,
	    [LXMD_PUT] = lxmd_api_image_put,
	    [LXMD_PATCH] = lxmd_api_image_patch,
	    [LXMD_DELETE] = lxmd_api_image_delete } },
	{ "/1.0/images/*/export", { [LXMD_GET] = lxmd_api_image_export_get } },
	{ "/1.0/images/*/refresh", { [LXMD_POST] = lxmd_api_image_refresh_post } },
	{ "/1.0/storage-pools",
	  { [LXMD_GET] = lxmd_api_storage_pools_get, [LXMD_POST] = lxmd_api_storage_pools_post } },
	{ "/1.0/storage-pools/*",
	  { [LXMD_GET] = lxmd_api_storage_pool_get,
	    [LXMD_PUT] = lxmd_api_storage_pool_put,
	    [LXMD_PATCH] = lxmd_api_storage_pool_patch,
	    [LXMD_DELETE] = lxmd_api_storage_pool_delete } },
	{ "/1.0/storage-pools/*/resources", { [LXMD_GET] = lxmd_api_storage_pool_resources_get } },
	{ "/1.0/storage-pools/*/volumes", { [LXMD_GET] = lxmd_api_storage_volumes_get } },
	{ "/1.0/storage-pools/*/volumes/*",
	  { [LXMD_GET] = lxmd_api_storage_volumes_type_get,
	    [LXMD_POST] = lxmd_api_storage_volumes_type_post } },
	{ "/1.0/storage-pools/*/volumes/*/*",
	  { [LXMD_GET] = lxmd_api_storage_volume_get,
	    [LXMD_PUT] = lxmd_api_storage_volume_put,
	    [LXMD_PATCH] = lxmd_api_storage_volume_patch,
	    [LXMD_POST] = lxmd_api_storage_volume_post,
	    [LXMD_DELETE] = lxmd_api_storage_volume_delete } },
	{ "/1.0/storage-pools/*/volumes/*/*/snapshots",
	  { [LXMD_GET] = lxmd_api_storage_volume_snapshots_get,
	    [LXMD_POST] = lxmd_api_storage_volume_snapshots_post } },
	{ "/1.0/storage-pools/*/volumes/*/*/snapshots/*",
	  { [LXMD_GET] = lxmd_api_storage_volume_snapshot_get,
	    [LXMD_DELETE] = lxmd_api_storage_volume_snapshot_delete } },
	{ "/1.0/networks",
	  { [LXMD_GET] = lxmd_api_networks_get, [LXMD_POST] = lxmd_api_networks_post } },
	{ "/1.0/networks/*",
	  { [LXMD_GET] = lxmd_api_network_get,
	    [LXMD_PUT] = lxmd_api_network_put,
	    [LXMD_PATCH] = lxmd_api_network_patch,
	    [LXMD_POST] = lxmd_api_network_post,
	    [LXMD_DELETE] = lxmd_api_network_delete } },
	{ "/1.0/networks/*/leases", { [LXMD_GET] = lxmd_api_network_leases_get } },
	{ "/1.0/networks/*/state", { [LXMD_GET] = lxmd_api_network_state_get } },
	{ "/1.0/networks/*/forwards",
	  { [LXMD_GET] = lxmd_api_network_forwards_get,
	    [LXMD_POST] = lxmd_api_network_forwards_post } },
	{ "/1.0/networks/*/forwards/*",
	  { [LXMD_GET] = lxmd_api_network_forward_get,
	    [LXMD_PUT] = lxmd_api_network_forward_put,
	    [LXMD_PATCH] = lxmd_api_network_forward_patch,
	    [LXMD_DELETE] = lxmd_api_network_forward_delete } },
};

static const char *const method_names[_LXMD_METHOD_MAX] = {
	[LXMD_GET] = "GET",   [LXMD_PUT] = "PUT",	[LXMD_PATCH] = "PATCH",
	[LXMD_POST] = "POST", [LXMD_DELETE] = "DELETE",
};

enum lxmd_method lxmd_method_from_http(enum http_method m)
{
	switch (m) {
	case HTTP_GET:
		return LXMD_GET;
	case HTTP_PUT:
		return LXMD_PUT;
	case HTTP_PATCH:
		return LXMD_PATCH;
	case HTTP_POST:
		return LXMD_POST;
	case HTTP_DELETE:
		return LXMD_DELETE;
	default:
		return _LXMD_METHOD_INVALID;
	}
}

/* Compares path against pattern segment by segment; '*' takes one non-empty segment, and a
 * final '**' the rest of the path (one or more segments, e.g. alias names like "debian/12"). */
static bool route_matches(const char *pattern, const char *path, char *args[4])
{
	size_t n = 0;

	for (;;) {
		const char *pe = strchrnul(pattern, '/'), *se = strchrnul(path, '/');
		size_t plen = (size_t)(pe - pattern), slen = (size_t)(se - path);

		if (plen == 2 && !*pe && memcmp(pattern, "**", 2) == 0) {
			if (slen == 0 || n >= 4)
				goto fail;
			args[n] = strdup(path);
			return args[n] != NULL;
		}
		if (plen == 1 && pattern[0] == '*') {
			if (slen == 0 || n >= 4)
				goto fail;
			args[n] = strndup(path, slen);
			if (!args[n])
				goto fail;
			n++;
		} else if (plen != slen || memcmp(pattern, path, plen) != 0) {
			goto fail;
		}
		if (!*pe || !*se) {
			if (*pe || *se)
				goto fail;
			return true;
		}
		pattern = pe + 1;
		path = se + 1;
	}
fail:
	for (size_t i = 0; i < n; i++) {
		free(args[i]);
		args[i] = NULL;
	}
	return false;
}

const struct lxmd_route *lxmd_api_match(const char *path, char *args[4], bool *ret_containers)
{
	_cleanup_free_ char *norm = NULL;
	size_t len;

	*ret_containers = false;
	if (!path || path[0] != '/')
		return NULL;
	norm = strdup(path);
	if (!norm)
		return NULL;
	/* "/1.0/instances/" and "/1.0/instances" are the same resource. */
	len = strlen(norm);
	while (len > 1 && norm[len - 1] == '/')
		norm[--len] = '\0';
	/* The legacy tree is the same resource with other URLs (pylxd only uses it). */
	if (startswith(norm, "/1.0/containers") && (norm[15] == '\0' || norm[15] == '/')) {
		memcpy(norm + 5, "instances", 9);
		memmove(norm + 14, norm + 15, strlen(norm + 15) + 1);
		*ret_containers = true;
	}
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (route_matches(routes[i].pattern, norm, args))
			return &routes[i];
	return NULL;
}

static int respond_not_allowed(struct lxmd_request *r)
{
	char allow[128] = "Allow: ";
	const char *extra[2] = { allow, NULL };
	_cleanup_free_ char *msg = NULL;
	bool first = true;

	for (int m = 0; m < _LXMD_METHOD_MAX; m++) {
		if (!r->route->handlers[m])
			continue;
		if (!first)
			strcat(allow, ", ");
		strcat(allow, method_names[m]);
		first = false;
	}
	if (asprintf(&msg, "method %s not allowed on %s (allowed: %s)",
		     http_method_str(r->http->method), r->http->path, allow + 7) < 0)
		msg = NULL;
	return lxmd_respond_json(r, 405, lxm_json_error(405, msg ? msg : "method not allowed"),
				 extra);
}

void lxmd_api_handle(struct lxmd_request *r)
{
	struct lxm_error *err = NULL;
	enum lxmd_method m = lxmd_method_from_http(r->http->method);
	lxmd_handler_fn fn;
	int k;

	/* Clients from the network: before anything else, not even a 404 for the untrusted. */
	if (lxmd_api_check_trust(r, &err) < 0) {
		lxmd_respond_error(r, err);
		return;
	}
	if (!r->route) {
		lxm_error_set(&err, -ENOENT, 404, "not found: %s", r->http->path);
		lxmd_respond_error(r, err);
		return;
	}
	fn = m >= 0 ? r->route->handlers[m] : NULL;
	if (!fn) {
		respond_not_allowed(r);
		return;
	}
	if (r->http->upgrade && !(r->route->flags & LXMD_ROUTE_WEBSOCKET)) {
		lxm_error_set(&err, -EINVAL, 400, "%s does not accept a protocol upgrade",
			      r->http->path);
		lxmd_respond_error(r, err);
		return;
	}
	if ((m == LXMD_POST || m == LXMD_PUT || m == LXMD_PATCH) &&
	    !(r->route->flags & LXMD_ROUTE_RAW_BODY)) {
		/* DELETE-like POSTs (rename, cancel) may come with an empty body; handlers that
		 * need one say so. */
		k = lxm_json_decode_body(r->http->body, r->http->body_len, JSON_OBJECT, true,
					 &r->body, &err);
		if (k < 0) {
			lxmd_respond_error(r, err);
			return;
		}
	}
	k = fn(r, &err);
	if (k < 0) {
		if (!err)
			lxm_error_setx(&err, k, 500, "%s %s", method_names[m], r->http->path);
		lxmd_respond_error(r, err);
		return;
	}
	lxm_error_free(err);
}

int lxmd_query_recursion(struct lxmd_request *r, int *ret, struct lxm_error **err)
{
	_cleanup_free_ char *v = NULL;
	char *end;
	long n;

	*ret = 0;
	if (lxm_http_query_get(r->http->query, "recursion", &v) < 0 || !*v)
		return 0;
	n = strtol(v, &end, 10);
	if (*end || n < 0 || n > 2)
		return lxm_error_set(err, -EINVAL, 400, "invalid recursion '%s': must be 0, 1 or 2",
				     v);
	*ret = (int)n;
	return 0;
}

int lxmd_query_project(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_free_ char *v = NULL;

	if (lxm_http_query_get(r->http->query, "project", &v) < 0 || !*v || streq(v, "default"))
		return 0;
	return lxm_error_set(err, -ENOENT, 404,
			     "project '%s' not found (lxmd has only the 'default' project)", v);
}

int lxmd_instance_url(struct lxmd_request *r, const char *name, char **ret)
{
	return asprintf(ret, "/1.0/%s/%s", r->containers ? "containers" : "instances", name) < 0
		       ? -ENOMEM
		       : 0;
}

int lxmd_etag(const json_t *j, char ret[65])
{
	_cleanup_free_ char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (!text)
		return -ENOMEM;
	if (!EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL))
		return -EIO;
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(ret + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int lxmd_check_if_match(struct lxmd_request *r, const char *etag, struct lxm_error **err)
{
	const char *v = lxm_http_request_header(r->http, "If-Match");
	size_t len;

	if (!v || !*v || streq(v, "*"))
		return 0;
	len = strlen(v);
	if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
		v++;
		len -= 2;
	}
	if (len == strlen(etag) && memcmp(v, etag, len) == 0)
		return 0;
	return lxm_error_set(
		err, -ESTALE, 412,
		"%s changed since it was read (ETag mismatch): read it again and retry",
		r->http->path);
}

int lxmd_etag_config(const char *description, const json_t *config, char ret[65])
{
	_cleanup_json_ json_t *j = json_pack("{s:s, s:O?}", "description",
					     description ? description : "", "config", config);

	return j ? lxmd_etag(j, ret) : -ENOMEM;
}

int lxmd_update_config(bool patch, const char *old_desc, const json_t *old_config,
		       const char **desc, json_t *in, json_t **config)
{
	if (!patch) {
		*config = in ? json_incref(in) : json_object();
		if (!*desc)
			*desc = "";
		return *config ? 0 : -ENOMEM;
	}
	*config = json_deep_copy(old_config);
	if (!*config || (in && json_object_update(*config, in) < 0))
		return -ENOMEM;
	if (!*desc)
		*desc = old_desc;
	return 0;
}

int lxmd_body_desc_config(const json_t *body, const char **desc, json_t **config,
			  struct lxm_error **err)
{
	int k;

	if ((k = lxm_json_opt_string(body, "description", desc, err)) < 0 ||
	    (k = lxm_json_opt_object(body, "config", config, err)) < 0)
		return k;
	return lxm_json_check_string_map(*config, "config", err);
}

static void deferred_abort(struct lxmd_request *r)
{
	struct lxmd_deferred *dr = r->defer_data;

	dr->r = NULL;
}

struct lxmd_deferred *lxmd_deferred_new(const char *base, const char *name, const char *action)
{
	struct lxmd_deferred *dr = calloc(1, sizeof(*dr));

	if (dr && !(dr->name = strdup(name))) {
		free(dr);
		return NULL;
	}
	if (dr) {
		dr->base = base;
		dr->action = action;
	}
	return dr;
}

void lxmd_deferred_free(struct lxmd_deferred *dr)
{
	if (!dr)
		return;
	free(dr->name);
	free(dr);
}

void lxmd_deferred_attach(struct lxmd_request *r, struct lxmd_deferred *dr)
{
	dr->r = r;
	r->deferred = true;
	r->on_abort = deferred_abort;
	r->defer_data = dr;
}

void lxmd_deferred_done(struct lxmd *d, void *userdata, struct lxm_error *err)
{
	struct lxmd_deferred *dr = userdata;
	_cleanup_free_ char *url = NULL;

	if (!err && dr->action && asprintf(&url, "%s/%s", dr->base, dr->name) >= 0)
		lxm_events_lifecycle(d->events, dr->action, url, NULL);
	if (dr->r && err)
		lxmd_respond_error(dr->r, err);
	else if (dr->r)
		lxmd_respond_sync(dr->r, NULL, NULL);
	else
		lxm_error_free(err);
	lxmd_deferred_free(dr);
}

/* The field named by a dotted path ("config.limits.cpu" looks for the key "limits.cpu" inside
 * "config" before splitting further), as a string for comparison. */
static const char *filter_field(const json_t *obj, const char *path, char buf[64])
{
	const json_t *v = json_object_get(obj, path);
	const char *dot;

	if (!v && (dot = strchr(path, '.'))) {
		_cleanup_free_ char *head = strndup(path, (size_t)(dot - path));
		const json_t *sub = head ? json_object_get(obj, head) : NULL;

		return sub && json_is_object(sub) ? filter_field(sub, dot + 1, buf) : NULL;
	}
	if (!v)
		return NULL;
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_boolean(v))
		return json_is_true(v) ? "true" : "false";
	if (json_is_integer(v)) {
		snprintf(buf, 64, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	return NULL;
}

struct filter_clause {
	char *field; /* dotted path */
	bool negate; /* "ne" instead of "eq" */
	char *value; /* compared case-insensitively, as LXD does */
};

static void clauses_free(struct filter_clause *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(c[i].field);
		free(c[i].value);
	}
	free(c);
}

static int filter_parse(const char *text, struct filter_clause **ret, size_t *ret_n,
			struct lxm_error **err)
{
	_cleanup_free_ char *copy = strdup(text);
	struct filter_clause *c = NULL;
	size_t n = 0;
	char *save = NULL, *tok[3];
	int k = 0;

	if (!copy)
		return -ENOMEM;
	for (char *w = strtok_r(copy, " ", &save);; w = strtok_r(NULL, " ", &save)) {
		if (w && k < 3) {
			tok[k++] = w;
			continue;
		}
		if (k == 3) {
			struct filter_clause *nc;

			if (strcasecmp(tok[1], "eq") && strcasecmp(tok[1], "ne"))
				goto bad;
			nc = realloc(c, (n + 1) * sizeof(*c));
			if (!nc)
				goto oom;
			c = nc;
			c[n].field = strdup(tok[0]);
			c[n].negate = strcasecmp(tok[1], "ne") == 0;
			c[n].value = strdup(tok[2]);
			n++;
			k = 0;
		}
		if (!w)
			break;
		if (k != 0 || strcasecmp(w, "and") != 0)
			goto bad;
	}
	if (k != 0)
		goto bad;
	*ret = c;
	*ret_n = n;
	return 0;
bad:
	clauses_free(c, n);
	return lxm_error_set(err, -EINVAL, 400,
			     "invalid filter '%s': expected 'FIELD eq|ne VALUE [and ...]'", text);
oom:
	clauses_free(c, n);
	return -ENOMEM;
}

int lxmd_apply_filter(struct lxmd_request *r, json_t *list, struct lxm_error **err)
{
	_cleanup_free_ char *text = NULL;
	struct filter_clause *c = NULL;
	size_t n = 0;
	int k;

	if (lxm_http_query_get(r->http->query, "filter", &text) < 0 || !*text)
		return 0;
	k = filter_parse(text, &c, &n, err);
	if (k < 0)
		return k;
	for (size_t i = json_array_size(list); i-- > 0;) {
		json_t *obj = json_array_get(list, i);
		bool keep = true;

		for (size_t j = 0; j < n && keep; j++) {
			char buf[64];
			const char *v = filter_field(obj, c[j].field, buf);
			bool eq = v && strcasecmp(v, c[j].value) == 0;

			keep = c[j].negate ? !eq : eq;
		}
		if (!keep)
			json_array_remove(list, i);
	}
	clauses_free(c, n);
	return 0;
}

/* The key table's check (profiles/keys.c), then the snapshots.* values, which lxmd's scheduler
 * parses; keys that keep their old value are not checked again. */
static int check_config(const json_t *old, const json_t *config, enum lxm_config_target target,
			struct lxm_error **err)
{
	const char *key;
	json_t *v;
	int k;

	k = lxm_config_check(old, config, target, err);
	if (k < 0 || !config)
		return k;
	json_object_foreach ((json_t *)config, key, v) {
		json_t *was = old ? json_object_get(old, key) : NULL;

		if (was && json_equal(was, v))
			continue;
		k = lxm_snapshot_config_check(key, json_string_value(v), err);
		if (k < 0)
			return k;
	}
	return 0;
}

int lxmd_check_config(const json_t *config, struct lxm_error **err)
{
	return check_config(NULL, config, LXM_CONFIG_CREATE, err);
}

int lxmd_check_config_change(const json_t *old, const json_t *config, bool profile,
			     struct lxm_error **err)
{
	return check_config(old, config, profile ? LXM_CONFIG_PROFILE : LXM_CONFIG_UPDATE, err);
}

int lxmd_check_devices(const json_t *devices, struct lxm_error **err)
{
	int k;

	k = lxm_json_check_devices(devices, err);
	if (k < 0 || !devices)
		return k;
	/* Each device by its type's validator (devices.c). */
	return lxmd_devices_validate(devices, err);
}

int lxmd_parse_rfc3339(const char *s, int64_t *ret_sec, int64_t *ret_nsec)
{
	struct tm tm = { 0 };
	int n = 0, off = 0, oh, om;
	int64_t frac = 0, scale = 100000000;
	const char *p;

	if (!*s || startswith(s, "0001-01-01T00:00:00")) {
		*ret_sec = 0;
		if (ret_nsec)
			*ret_nsec = 0;
		return 0;
	}
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
	    n != 19)
		return -EINVAL;
	p = s + n;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac += (*p - '0') * scale;
	if ((*p == 'Z' || *p == 'z') && !p[1])
		off = 0;
	else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
		 n == 5 && !p[6])
		off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
	else
		return -EINVAL;
	if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -EINVAL;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*ret_sec = (int64_t)timegm(&tm) - off;
	if (ret_nsec)
		*ret_nsec = frac;
	return 0;
}
