/* Fuzzes the request-body path of the API: JSON decoding and the validators every create/update
 * handler runs on the decoded body (typed fields, config maps, devices, ETag hashing). */
#include "config.h"

#include <stdlib.h>

#include "api/api.h"
#include "fuzz.h"
#include "json.h"

const char *lxm_fuzz_corpus_name(void)
{
	return "json";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lxm_error *err = NULL;
	json_t *body = NULL, *v = NULL;
	const char *s = NULL;
	bool b = false;
	char etag[65];

	if (lxm_json_decode_body((const char *)data, size, JSON_OBJECT, true, &body, &err) < 0 ||
	    !body) {
		lxm_error_free(err);
		return 0;
	}
	lxm_json_opt_string(body, "name", &s, &err);
	lxm_error_free(err);
	err = NULL;
	lxm_json_opt_bool(body, "ephemeral", &b, &err);
	lxm_error_free(err);
	err = NULL;
	lxm_json_opt_object(body, "config", &v, &err);
	lxm_error_free(err);
	err = NULL;
	lxmd_check_config(v, &err);
	lxm_error_free(err);
	err = NULL;
	v = NULL;
	lxm_json_opt_object(body, "devices", &v, &err);
	lxm_error_free(err);
	err = NULL;
	lxmd_check_devices(v, &err);
	lxm_error_free(err);
	lxmd_etag(body, etag);
	free(lxm_json_dump(body));
	json_decref(body);
	return 0;
}
