#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

json_t *lxm_json_sync(json_t *metadata)
{
	return json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:o}", "type", "sync", "status", "Success",
			 "status_code", 200, "operation", "", "error_code", 0, "error", "",
			 "metadata", metadata ? metadata : json_null());
}

json_t *lxm_json_async(json_t *op, const char *url)
{
	return json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:o}", "type", "async", "status",
			 "Operation created", "status_code", 100, "operation", url, "error_code", 0,
			 "error", "", "metadata", op ? op : json_null());
}

json_t *lxm_json_error(int status, const char *msg)
{
	return json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:n}", "type", "error", "status", "",
			 "status_code", 0, "operation", "", "error_code", status, "error",
			 msg ? msg : "", "metadata");
}

static const char *json_type_name(int type)
{
	switch (type) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

int lxm_json_decode_body(const char *body, size_t len, int type, bool allow_empty, json_t **ret,
			 struct lxm_error **err)
{
	json_error_t jerr;
	json_t *j;
	size_t i;

	for (i = 0; i < len && strchr(" \t\r\n", body[i]); i++)
		;
	if (i == len) {
		if (allow_empty) {
			*ret = NULL;
			return 0;
		}
		return lxm_error_set(err, -EINVAL, 400,
				     "request body is empty: a JSON %s is required",
				     type == JSON_OBJECT ? "object" : "value");
	}
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return lxm_error_set(err, -EINVAL, 400,
				     "invalid JSON body: %s (line %d, column %d)", jerr.text,
				     jerr.line, jerr.column);
	if (type >= 0 && (int)json_typeof(j) != type &&
	    !(type == JSON_TRUE && json_is_boolean(j))) {
		int r = lxm_error_set(err, -EINVAL, 400, "invalid JSON body: expected %s, got %s",
				      json_type_name(type), json_type_name(json_typeof(j)));
		json_decref(j);
		return r;
	}
	*ret = j;
	return 0;
}

int lxm_json_load_file(const char *path, const char *what, json_t **ret, struct lxm_error **err)
{
	_cleanup_free_ char *data = NULL;
	json_error_t jerr;
	size_t len = 0;
	json_t *j;
	int r;

	r = lxm_read_file(path, &data, &len);
	if (r < 0)
		return lxm_error_setx(err, r, r == -ENOENT ? 404 : 500, "read %s %s", what, path);
	j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return lxm_error_set(err, -EINVAL, 400, "%s %s: invalid JSON: %s (line %d, col %d)",
				     what, path, jerr.text, jerr.line, jerr.column);
	*ret = j;
	return 0;
}

static int opt_field(const json_t *obj, const char *key, int type, json_t **ret,
		     struct lxm_error **err)
{
	json_t *v = obj ? json_object_get(obj, key) : NULL;

	if (!v || json_is_null(v))
		return 0;
	if ((int)json_typeof(v) != type && !(type == JSON_TRUE && json_is_boolean(v)))
		return lxm_error_set(err, -EINVAL, 400, "field '%s' must be %s, not %s", key,
				     json_type_name(type), json_type_name(json_typeof(v)));
	*ret = v;
	return 1;
}

int lxm_json_opt_string(const json_t *obj, const char *key, const char **ret,
			struct lxm_error **err)
{
	json_t *v = NULL;
	int r = opt_field(obj, key, JSON_STRING, &v, err);

	if (r > 0)
		*ret = json_string_value(v);
	return r < 0 ? r : 0;
}

int lxm_json_opt_bool(const json_t *obj, const char *key, bool *ret, struct lxm_error **err)
{
	json_t *v = NULL;
	int r = opt_field(obj, key, JSON_TRUE, &v, err);

	if (r > 0)
		*ret = json_is_true(v);
	return r < 0 ? r : 0;
}

int lxm_json_opt_object(const json_t *obj, const char *key, json_t **ret, struct lxm_error **err)
{
	int r = opt_field(obj, key, JSON_OBJECT, ret, err);

	return r < 0 ? r : 0;
}

int lxm_json_opt_array(const json_t *obj, const char *key, json_t **ret, struct lxm_error **err)
{
	int r = opt_field(obj, key, JSON_ARRAY, ret, err);

	return r < 0 ? r : 0;
}

int lxm_json_check_string_map(const json_t *obj, const char *what, struct lxm_error **err)
{
	const char *key;
	json_t *v;

	if (!obj || json_is_null(obj))
		return 0;
	if (!json_is_object(obj))
		return lxm_error_set(err, -EINVAL, 400, "%s must be an object of strings", what);
	json_object_foreach ((json_t *)obj, key, v) {
		if (!*key)
			return lxm_error_set(err, -EINVAL, 400, "%s: empty key", what);
		if (!json_is_string(v))
			return lxm_error_set(err, -EINVAL, 400,
					     "%s key '%s': value must be a string, not %s", what,
					     key, json_type_name(json_typeof(v)));
	}
	return 0;
}

int lxm_json_check_devices(const json_t *obj, struct lxm_error **err)
{
	const char *name;
	json_t *dev;
	int r;

	if (!obj || json_is_null(obj))
		return 0;
	if (!json_is_object(obj))
		return lxm_error_set(err, -EINVAL, 400, "devices must be an object of objects");
	json_object_foreach ((json_t *)obj, name, dev) {
		char what[128];

		snprintf(what, sizeof(what), "device '%s'", name);
		if (!*name)
			return lxm_error_set(err, -EINVAL, 400, "devices: empty device name");
		if (!json_is_object(dev))
			return lxm_error_set(err, -EINVAL, 400, "%s must be an object of strings",
					     what);
		r = lxm_json_check_string_map(dev, what, err);
		if (r < 0)
			return r;
	}
	return 0;
}

char *lxm_json_dump(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}
