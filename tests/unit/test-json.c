#include "config.h"

#include <errno.h>
#include <string.h>

#include "json.h"
#include "tap.h"
#include "util.h"

int main(void)
{
	struct lxm_error *err = NULL;
	json_t *j = NULL, *o = NULL;
	const char *s = "unchanged";
	bool b = false;

	j = lxm_json_sync(json_pack("{s:i}", "a", 1));
	is_str(json_string_value(json_object_get(j, "type")), "sync", "sync type");
	is_int(json_integer_value(json_object_get(j, "status_code")), 200, "sync status_code");
	is_str(json_string_value(json_object_get(j, "status")), "Success", "sync status");
	json_decref(j);
	j = lxm_json_sync(NULL);
	ok(json_is_null(json_object_get(j, "metadata")), "sync metadata null");
	json_decref(j);
	j = lxm_json_async(json_object(), "/1.0/operations/x");
	is_int(json_integer_value(json_object_get(j, "status_code")), 100, "async status_code");
	is_str(json_string_value(json_object_get(j, "operation")), "/1.0/operations/x",
	       "async operation url");
	json_decref(j);
	j = lxm_json_error(404, "Instance not found");
	is_int(json_integer_value(json_object_get(j, "error_code")), 404, "error code");
	is_str(json_string_value(json_object_get(j, "error")), "Instance not found", "error text");
	json_decref(j);

	ok(lxm_json_decode_body("{\"a\":1}", 7, JSON_OBJECT, false, &j, &err) == 0, "object body");
	json_decref(j);
	ok(lxm_json_decode_body("  \n", 3, JSON_OBJECT, true, &j, &err) == 0 && j == NULL,
	   "empty body allowed");
	ok(lxm_json_decode_body("", 0, JSON_OBJECT, false, &j, &err) == -EINVAL &&
		   err->status == 400,
	   "empty body refused");
	lxm_error_free(err);
	err = NULL;
	ok(lxm_json_decode_body("{\"a\":", 5, JSON_OBJECT, false, &j, &err) == -EINVAL &&
		   strstr(err->msg, "line 1"),
	   "truncated body: says where (%s)", err ? err->msg : "");
	lxm_error_free(err);
	err = NULL;
	ok(lxm_json_decode_body("[1]", 3, JSON_OBJECT, false, &j, &err) == -EINVAL &&
		   strstr(err->msg, "expected an object"),
	   "wrong type refused");
	lxm_error_free(err);
	err = NULL;
	ok(lxm_json_decode_body("{\"a\":1,\"a\":2}", 13, JSON_OBJECT, false, &j, &err) == -EINVAL,
	   "duplicate keys refused");
	lxm_error_free(err);
	err = NULL;

	o = json_pack("{s:s, s:b, s:i, s:{s:s}}", "name", "c1", "eph", 1, "n", 3, "config", "k",
		      "v");
	ok(lxm_json_opt_string(o, "name", &s, &err) == 0 && streq(s, "c1"), "opt string");
	s = "unchanged";
	ok(lxm_json_opt_string(o, "missing", &s, &err) == 0 && streq(s, "unchanged"),
	   "absent keeps value");
	ok(lxm_json_opt_bool(o, "eph", &b, &err) == 0 && b, "opt bool");
	ok(lxm_json_opt_string(o, "n", &s, &err) == -EINVAL && strstr(err->msg, "'n'"),
	   "wrong type names the field");
	lxm_error_free(err);
	err = NULL;
	ok(lxm_json_check_string_map(json_object_get(o, "config"), "config", &err) == 0,
	   "string map ok");
	ok(lxm_json_check_string_map(o, "config", &err) == -EINVAL && strstr(err->msg, "eph"),
	   "non-string value named");
	lxm_error_free(err);
	json_decref(o);
	return tap_done();
}
