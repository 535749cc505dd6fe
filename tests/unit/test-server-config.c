/* The server's config keys: the table, value checks, the nearest-key suggestion, PUT/PATCH
 * merging, and which images the expiry check and the auto-update pick at a given (fake) time. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "error.h"
#include "server-config.h"
#include "tap.h"
#include "util.h"

#define DAY  86400
#define HOUR 3600

/* Checks key=value and tells whether it was accepted; a refusal's message is left in msg. */
static bool accepted(const char *key, const char *value, char msg[512])
{
	struct lxm_error *err = NULL;
	int r = lxm_server_config_check(key, value, &err);

	msg[0] = '\0';
	if (err)
		snprintf(msg, 512, "%s", err->msg);
	lxm_error_free(err);
	return r == 0;
}

static void test_table(void)
{
	const char *names[] = { "images.auto_update_interval", "images.remote_cache_expiry",
				"images.auto_update_cached", "images.compression_algorithm",
				"core.https_address" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		ok(lxm_server_key_find(names[i]) != NULL, "%s is in the table", names[i]);
	ok(lxm_server_key_find("core.trust_password") == NULL, "keys lxm does not honour are not");
	for (size_t i = 1; i < lxm_server_keys_n; i++)
		ok(strcmp(lxm_server_keys[i - 1].name, lxm_server_keys[i].name) < 0,
		   "table sorted at %s", lxm_server_keys[i].name);
	is_str(lxm_server_config_value(NULL, LXM_KEY_AUTO_UPDATE_INTERVAL), "6",
	       "auto_update_interval defaults to 6 hours");
	is_str(lxm_server_config_value(NULL, LXM_KEY_REMOTE_CACHE_EXPIRY), "10",
	       "remote_cache_expiry defaults to 10 days");
	is_str(lxm_server_config_value(NULL, LXM_KEY_AUTO_UPDATE_CACHED), "true",
	       "auto_update_cached defaults to true");
	is_str(lxm_server_config_value(NULL, LXM_KEY_COMPRESSION), "gzip",
	       "compression_algorithm defaults to gzip");
}

static void test_checks(void)
{
	char msg[512];

	ok(accepted("images.auto_update_interval", "12", msg), "interval 12 accepted");
	ok(accepted("images.auto_update_interval", "0", msg), "interval 0 (off) accepted");
	ok(accepted("images.auto_update_interval", "", msg), "\"\" (unset) accepted");
	ok(!accepted("images.auto_update_interval", "-1", msg), "negative interval refused");
	ok(!accepted("images.auto_update_interval", "6h", msg), "interval with a unit refused");
	ok(strstr(msg, "images.auto_update_interval") && strstr(msg, "'6h'"),
	   "the message names key and value: %s", msg);
	ok(!accepted("images.auto_update_interval", "99999999999999999999", msg),
	   "an overflowing interval is refused");
	ok(!accepted("images.remote_cache_expiry", "abc", msg), "expiry 'abc' refused");
	ok(accepted("images.remote_cache_expiry", "1", msg), "expiry 1 accepted");
	ok(accepted("images.auto_update_cached", "false", msg), "bool false accepted");
	ok(accepted("images.auto_update_cached", "TRUE", msg), "bool TRUE accepted");
	ok(!accepted("images.auto_update_cached", "maybe", msg), "bool 'maybe' refused");
	ok(strstr(msg, "true or false") != NULL, "bool message says what is expected: %s", msg);
	ok(accepted("images.compression_algorithm", "zstd", msg), "zstd accepted");
	ok(accepted("images.compression_algorithm", "none", msg), "none accepted");
	ok(!accepted("images.compression_algorithm", "bzip2", msg), "bzip2 refused");
	ok(strstr(msg, "gzip, xz, zstd, none") != NULL, "choices listed: %s", msg);
	ok(accepted("core.https_address", ":8443", msg), "core.https_address :8443 accepted");
	ok(accepted("core.https_address", "[::]:8443", msg),
	   "core.https_address [::]:8443 accepted");
	ok(!accepted("core.https_address", "8443", msg), "core.https_address without ':' refused");
	ok(strstr(msg, "[IP]:PORT") && strstr(msg, "core.https_address"),
	   "refusal says what is expected: %s", msg);
	ok(accepted("core.https_address", "", msg), "unsetting core.https_address is fine");
	ok(!accepted("images.auto_update_intreval", "12", msg), "misspelt key refused");
	ok(strstr(msg, "'images.auto_update_intreval'") &&
		   strstr(msg, "did you mean 'images.auto_update_interval'"),
	   "suggests the nearest key: %s", msg);
	ok(!accepted("images.remote_cache_expiri", "1", msg) &&
		   strstr(msg, "did you mean 'images.remote_cache_expiry'"),
	   "suggests remote_cache_expiry: %s", msg);
}

static void test_update(void)
{
	json_t *old = json_pack("{s:s, s:s}", "images.auto_update_interval", "12",
				"core.trust_password", "legacy");
	json_t *in, *out = NULL;
	struct lxm_error *err = NULL;

	/* PATCH merges, "" and null remove. */
	in = json_pack("{s:s, s:n}", "images.remote_cache_expiry", "3", "core.trust_password");
	is_int(lxm_server_config_update(old, in, true, &out, &err), 0, "patch accepted");
	is_str(json_string_value(json_object_get(out, "images.auto_update_interval")), "12",
	       "patch keeps keys it does not name");
	is_str(json_string_value(json_object_get(out, "images.remote_cache_expiry")), "3",
	       "patch sets the new key");
	ok(!json_object_get(out, "core.trust_password"), "patch null removes a key");
	json_decref(in);
	json_decref(out);
	out = NULL;

	/* PUT replaces; what it sends back unchanged passes unchecked. */
	in = json_pack("{s:s, s:i}", "core.trust_password", "legacy", "images.auto_update_interval",
		       24);
	is_int(lxm_server_config_update(old, in, false, &out, &err), 0,
	       "put with an old unknown key unchanged accepted");
	is_str(json_string_value(json_object_get(out, "images.auto_update_interval")), "24",
	       "a number is taken as its text");
	is_int((int)json_object_size(out), 2, "put leaves only what it sent");
	json_decref(in);
	json_decref(out);
	out = NULL;

	in = json_pack("{s:s}", "images.auto_update_interval", "");
	is_int(lxm_server_config_update(old, in, false, &out, &err), 0, "put with \"\" accepted");
	is_int((int)json_object_size(out), 0, "put \"\" removes the key");
	json_decref(in);
	json_decref(out);
	out = NULL;

	in = json_pack("{s:s}", "core.trust_password", "changed");
	ok(lxm_server_config_update(old, in, true, &out, &err) < 0 && !out,
	   "a changed unknown key is refused");
	ok(err && err->status == 400, "with 400");
	lxm_error_free(err);
	err = NULL;
	json_decref(in);

	in = json_pack("{s:n}", "images.auto_update_interval");
	ok(lxm_server_config_update(old, in, false, &out, &err) < 0, "null in a PUT is refused");
	lxm_error_free(err);
	err = NULL;
	json_decref(in);

	in = json_pack("{s:[]}", "images.auto_update_interval");
	ok(lxm_server_config_update(old, in, true, &out, &err) < 0, "an array value is refused");
	lxm_error_free(err);
	json_decref(in);
	json_decref(old);

	old = json_pack("{s:s, s:s}", "images.auto_update_interval", "garbage",
			"images.auto_update_cached", "false");
	is_int((int)lxm_server_config_int(old, LXM_KEY_AUTO_UPDATE_INTERVAL), 6,
	       "an unreadable stored value reads as the default");
	is_int((int)lxm_server_config_int(old, LXM_KEY_REMOTE_CACHE_EXPIRY), 10,
	       "an unset value reads as the default");
	ok(!lxm_server_config_bool(old, LXM_KEY_AUTO_UPDATE_CACHED), "stored false reads false");
	ok(lxm_server_config_bool(NULL, LXM_KEY_AUTO_UPDATE_CACHED), "default true reads true");
	json_decref(old);
}

static void test_expiry(void)
{
	const int64_t now = 1800000000;
	struct lxm_db_image img = { .cached = true, .uploaded_at = now - 30 * DAY };

	img.last_used_at = now - 11 * DAY;
	ok(lxm_image_cache_expired(&img, now, 10), "cached, unused 11 days, expiry 10: expired");
	img.last_used_at = now - 9 * DAY;
	ok(!lxm_image_cache_expired(&img, now, 10), "used 9 days ago: kept");
	img.last_used_at = now - 10 * DAY;
	ok(lxm_image_cache_expired(&img, now, 10), "exactly 10 days: expired");
	img.last_used_at = now - 10 * DAY + 1;
	ok(!lxm_image_cache_expired(&img, now, 10), "one second short of 10 days: kept");
	img.last_used_at = now - 400 * DAY;
	ok(!lxm_image_cache_expired(&img, now, 0), "expiry 0 keeps cached images forever");
	img.cached = false;
	ok(!lxm_image_cache_expired(&img, now, 1), "a user's image never expires");
	img.cached = true;
	img.last_used_at = 0;
	ok(lxm_image_cache_expired(&img, now, 10), "never used: counted from its upload (30 d)");
	img.uploaded_at = now - 2 * DAY;
	ok(!lxm_image_cache_expired(&img, now, 10), "never used, uploaded 2 days ago: kept");
}

static void test_auto_update(void)
{
	const int64_t now = 1800000000;
	struct lxm_db_image_source ss = {
		.server = "https://x", .protocol = "simplestreams", .alias = "a", .certificate = ""
	};
	struct lxm_db_image_source tpl = { .server = "",
					   .protocol = "template",
					   .alias = "busybox" };
	struct lxm_db_image img = { .auto_update = true, .source = &ss };

	ok(lxm_image_auto_update_wanted(&img), "auto_update with a server source: refreshed");
	img.source = &tpl;
	ok(lxm_image_auto_update_wanted(&img), "auto_update with a template source: refreshed");
	img.source = NULL;
	ok(!lxm_image_auto_update_wanted(&img), "auto_update without a source: skipped");
	img.source = &ss;
	img.auto_update = false;
	ok(!lxm_image_auto_update_wanted(&img), "auto_update false: skipped");

	is_int((int)lxm_auto_update_delay(now, now, 6), 6 * HOUR, "just run: next in 6 h");
	is_int((int)lxm_auto_update_delay(now - 2 * HOUR, now, 6), 4 * HOUR,
	       "ran 2 h ago: next in 4 h");
	is_int((int)lxm_auto_update_delay(now - 2 * HOUR, now, 12), 10 * HOUR,
	       "interval raised to 12 h: next 12 h after the last run");
	is_int((int)lxm_auto_update_delay(now - 7 * HOUR, now, 6), 0, "overdue: runs now");
	is_int((int)lxm_auto_update_delay(now - 2 * HOUR, now, 1), 0,
	       "interval lowered below the time since the last run: runs now");
	is_int((int)lxm_auto_update_delay(now, now, 0), -1, "interval 0: off");
}

int main(void)
{
	test_table();
	test_checks();
	test_update();
	test_expiry();
	test_auto_update();
	return tap_done();
}
