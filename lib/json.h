/* JSON helpers shared by the daemon and the CLI: LXD's response envelopes, body decoding with
 * errors that say where, and typed field access. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "cleanup.h"
#include "error.h"

/* jansson ships json_decrefp() (for json_auto_t); reuse it. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* {"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"",
 * "metadata":metadata}. Steals metadata (NULL becomes JSON null). */
json_t *lxm_json_sync(json_t *metadata);

/* {"type":"async","status":"Operation created","status_code":100,"operation":url,...,
 * "metadata":op}. Steals op. */
json_t *lxm_json_async(json_t *op, const char *url);

/* {"type":"error","status":"","status_code":0,"operation":"","error_code":status,
 * "error":msg,"metadata":null} */
json_t *lxm_json_error(int status, const char *msg);

/* Decodes a request body that must be one JSON value of the given type (JSON_OBJECT, ...; -1 for
 * any). An empty body is an error unless allow_empty (then *ret is NULL). Errors are 400 and say
 * what was wrong and where: "invalid JSON body: '}' expected near end of file (line 1, col 9)". */
int lxm_json_decode_body(const char *body, size_t len, int type, bool allow_empty, json_t **ret,
			 struct lxm_error **err);

/* Reads the JSON file path (duplicate keys rejected) into *ret. what names the file in errors:
 * "read spec /x: No such file or directory" (404), "spec /x: invalid JSON: ... (line 1, col 9)"
 * (400). */
int lxm_json_load_file(const char *path, const char *what, json_t **ret, struct lxm_error **err);

/* Typed optional field access. Absent or null: *ret keeps its value and 0 is returned. Wrong type:
 * -EINVAL with a 400 error naming the field and the type it must have. */
int lxm_json_opt_string(const json_t *obj, const char *key, const char **ret,
			struct lxm_error **err);
int lxm_json_opt_bool(const json_t *obj, const char *key, bool *ret, struct lxm_error **err);
int lxm_json_opt_object(const json_t *obj, const char *key, json_t **ret, struct lxm_error **err);
int lxm_json_opt_array(const json_t *obj, const char *key, json_t **ret, struct lxm_error **err);

/* Checks that obj is an object of string values (config maps). what names the map in errors:
 * "config key 'limits.cpu': value must be a string". NULL obj is fine. */
int lxm_json_check_string_map(const json_t *obj, const char *what, struct lxm_error **err);

/* Checks an object of objects of strings (devices): "device 'eth0': key 'type': ...". */
int lxm_json_check_devices(const json_t *obj, struct lxm_error **err);

/* Compact serialisation; NULL on allocation failure. */
char *lxm_json_dump(const json_t *j);
