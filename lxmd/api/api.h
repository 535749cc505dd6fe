/* The REST API: one route table for every resource. Each route names a path pattern ('*' matches
 * one segment, a final '**' the rest of the path) and a handler per method; /1.0/containers/...
 * is served by the /1.0/instances routes. */
#pragma once

#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct lxmd_request;

enum lxmd_method {
	LXMD_GET,
	LXMD_PUT,
	LXMD_PATCH,
	LXMD_POST,
	LXMD_DELETE,
	_LXMD_METHOD_MAX,
	_LXMD_METHOD_INVALID = -1,
};

/* Answers r (through lxmd_respond_*) and returns 0, or returns a negative errno with *err set and
 * the dispatcher answers with the error envelope. */
typedef int (*lxmd_handler_fn)(struct lxmd_request *r, struct lxm_error **err);

enum lxmd_route_flags {
	LXMD_ROUTE_WEBSOCKET = 1 << 0, /* GET is a websocket upgrade */
	LXMD_ROUTE_RAW_BODY = 1 << 1,  /* the handler reads the body itself: not decoded as JSON */
	/* The handler runs when the headers are in and takes the body in pieces as it arrives
	 * (lxmd_request.on_body): nothing is buffered. Use with LXMD_ROUTE_RAW_BODY. */
	LXMD_ROUTE_STREAM_BODY = 1 << 2,
};

struct lxmd_route {
	const char *pattern;			    /* "/1.0/instances/ *" without the space */
	lxmd_handler_fn handlers[_LXMD_METHOD_MAX]; /* NULL: 405 Method Not Allowed */
	unsigned flags;				    /* enum lxmd_route_flags */
};

enum lxmd_method lxmd_method_from_http(enum http_method m);

/* Finds the route for a decoded path; fills args with copies of the '*' segments (caller frees)
 * and tells whether the path used /1.0/containers. NULL when no route matches. */
const struct lxmd_route *lxmd_api_match(const char *path, char *args[4], bool *ret_containers);

/* Handles a complete request (routing errors, 405, JSON decoding, the handler, its error). */
void lxmd_api_handle(struct lxmd_request *r);

/* Helpers shared by the resource files. */
/* Reads ?recursion=N (0 when absent; 400 when not 0..2). */
int lxmd_query_recursion(struct lxmd_request *r, int *ret, struct lxm_error **err);
/* Refuses a ?project= other than "default" (404). */
int lxmd_query_project(struct lxmd_request *r, struct lxm_error **err);
/* "/1.0/instances/<name>" or "/1.0/containers/<name>" as the request came in. */
int lxmd_instance_url(struct lxmd_request *r, const char *name, char **ret);
/* The sha256 ETag of a JSON value (serialised with sorted keys). */
int lxmd_etag(const json_t *j, char ret[65]);
/* 412 when the request carries If-Match and it differs from etag. */
int lxmd_check_if_match(struct lxmd_request *r, const char *etag, struct lxm_error **err);
/* The ETag of an object whose PUT replaces its description and config. */
int lxmd_etag_config(const char *description, const json_t *config, char ret[65]);
/* The description and config an update leaves in *desc and *config: PUT replaces both with desc
 * and in (empty when left out); PATCH merges in into old_config and keeps old_desc when desc is
 * NULL. */
int lxmd_update_config(bool patch, const char *old_desc, const json_t *old_config,
		       const char **desc, json_t *in, json_t **config);
/* Reads the optional "description" (a string) and "config" (an object of strings) of body; the
 * caller names the object in the message. */
int lxmd_body_desc_config(const json_t *body, const char **desc, json_t **config,
			  struct lxm_error **err);
/* A request answered when a job on an object ends; the job outlives a client that went away. */
struct lxmd;
struct lxmd_deferred {
	struct lxmd_request *r; /* NULL once the client went away */
	const char *base;	/* the collection's URL for lifecycle events ("/1.0/networks") */
	char *name;		/* the object (after the change) */
	const char *action;	/* lifecycle event on success ("network-created") */
};
struct lxmd_deferred *lxmd_deferred_new(const char *base, const char *name, const char *action);
void lxmd_deferred_free(struct lxmd_deferred *dr);
/* Makes dr answer r: r is deferred until lxmd_deferred_done. */
void lxmd_deferred_attach(struct lxmd_request *r, struct lxmd_deferred *dr);
/* A job's done callback (userdata is dr): sends the lifecycle event on success, answers the
 * request when its client is still there and frees dr. */
void lxmd_deferred_done(struct lxmd *d, void *userdata, struct lxm_error *err);
/* Applies ?filter= (LXD's "key eq value and key ne value" over top-level and dotted fields) to a
 * list of objects, in place. */
int lxmd_apply_filter(struct lxmd_request *r, json_t *list, struct lxm_error **err);
/* Answers GET on a collection (api-collections.c): the URLs prefix/NAME of the names that
 * names() lists or, with ?recursion=1, the objects that object() builds from them, filtered by
 * ?filter= when filter is true; object NULL refuses recursion (501). what names the collection
 * in errors ("profiles"). */
struct lxm_db;
int lxmd_list_collection(struct lxmd_request *r, const char *prefix, const char *what,
			 int (*names)(struct lxm_db *db, char ***ret, struct lxm_error **err),
			 int (*object)(struct lxmd_request *r, const char *name, json_t **ret,
				       struct lxm_error **err),
			 bool filter, struct lxm_error **err);

/* Resource handlers, one file each. */
int lxmd_api_root_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_server_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_server_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_server_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_events_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_operations_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_operation_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_operation_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_operation_wait(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instances_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instances_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_state_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_snapshots_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_snapshots_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_snapshot_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_snapshot_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_snapshot_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_snapshot_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_snapshot_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_state_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_exec_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_files_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_files_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_files_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_console_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_console_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_instance_console_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_operation_websocket_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_profiles_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_profiles_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_profile_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_profile_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_profile_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_profile_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_profile_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_images_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_images_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_refresh_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_export_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_aliases_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_aliases_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_alias_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_alias_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_alias_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_alias_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_image_alias_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_pools_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_pools_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_pool_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_pool_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_pool_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_pool_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_pool_resources_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volumes_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volumes_type_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volumes_type_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_snapshots_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_snapshots_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_snapshot_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_storage_volume_snapshot_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_networks_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_networks_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_delete(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_leases_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_network_state_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_certificates_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_certificates_post(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_certificate_get(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_certificate_put(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_certificate_patch(struct lxmd_request *r, struct lxm_error **err);
int lxmd_api_certificate_delete(struct lxmd_request *r, struct lxm_error **err);
/* Decides whether r may go on (api-certificates.c): unix socket clients always; TLS clients whose
 * certificate is in the trust store (read-only ones only for GET); others only for GET / and
 * /1.0 and POST /1.0/certificates (marked r->untrusted). 403 "not authorized" otherwise. */
int lxmd_api_check_trust(struct lxmd_request *r, struct lxm_error **err);

/* Snapshots (api-snapshots.c) as the instance code uses them. */
struct lxmd;
struct lxm_db_instance;
/* Every snapshot of inst as LXD's InstanceSnapshot objects, in creation order. */
int lxmd_snapshots_json(struct lxmd *d, const struct lxm_db_instance *inst, json_t **ret,
			struct lxm_error **err);
/* PUT /1.0/instances/<name> {"restore": "snap0" or "<name>/snap0"}: answers with the operation
 * that brings back the snapshot's files, config, devices and profiles. 400 while it runs. */
int lxmd_snapshot_restore(struct lxmd_request *r, const struct lxm_db_instance *inst,
			  const char *restore, struct lxm_error **err);
/* Whether a snapshot or restore of instance is copying its files (a delete must wait). */
bool lxmd_snapshot_busy(const char *instance);
/* Marks the instance's files busy (-ENOMEM) until lxmd_snapshot_busy_release(). */
int lxmd_snapshot_busy_take(const char *instance);
void lxmd_snapshot_busy_release(const char *instance);

/* Checks a new instance's config map against the key table (profiles/keys.h): string values,
 * known and supported keys with valid values; read-only keys (image.*, volatile.*) may come along
 * (a copy's). */
int lxmd_check_config(const json_t *config, struct lxm_error **err);
/* Checks config replacing old (an instance's PUT/PATCH, or a profile's write with profile true):
 * as lxmd_check_config(), but keys that keep their old value pass unchecked, read-only keys may
 * only be sent back unchanged, and profiles refuse instance-only keys. */
int lxmd_check_config_change(const json_t *old, const json_t *config, bool profile,
			     struct lxm_error **err);
/* Checks devices: an object of objects of strings, each with a "type". */
int lxmd_check_devices(const json_t *devices, struct lxm_error **err);

/* RFC 3339 ("2024-05-01T10:00:00Z", "...+02:00", fractions allowed) to unix seconds and the
 * nanoseconds of its fraction (ret_nsec may be NULL); Go's zero time and "" are 0 (never).
 * -EINVAL when s is not such a time. */
int lxmd_parse_rfc3339(const char *s, int64_t *ret_sec, int64_t *ret_nsec);
