/* Join tokens: core.remote_token_expiry's durations (LXD's "1d 3H" form, with S for seconds),
 * the expiry check, and the key's validation through the server config table. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certificates.h"
#include "error.h"
#include "server-config.h"
#include "tap.h"
#include "util.h"

/* 2026-01-31T12:00:00Z: the last day of a month, so that "1m" shows calendar months. */
#define NOW 1769860800

/* Parses text at NOW; the expiry (or -1 on error) and the error message in msg. */
static int64_t expiry(const char *text, char msg[512])
{
	struct lxm_error *err = NULL;
	int64_t e = -2;
	int r = lxm_token_expiry_parse(text, NOW, &e, &err);

	msg[0] = '\0';
	if (err)
		snprintf(msg, 512, "%s", err->msg);
	lxm_error_free(err);
	return r < 0 ? -1 : e;
}

static void test_parse(void)
{
	char msg[512];

	ok(expiry("", msg) == 0, "empty: never expires");
	ok(expiry("   ", msg) == 0, "blank: never expires");
	ok(expiry("2S", msg) == NOW + 2, "2S: two seconds");
	ok(expiry("10M", msg) == NOW + 600, "10M: ten minutes (M is minutes, as in LXD)");
	ok(expiry("1H", msg) == NOW + 3600, "1H: an hour");
	ok(expiry("2d", msg) == NOW + 2 * 86400, "2d: two days");
	ok(expiry("1w", msg) == NOW + 7 * 86400, "1w: a week");
	ok(expiry("1d 3H 30S", msg) == NOW + 86400 + 3 * 3600 + 30, "parts add up: 1d 3H 30S");
	ok(expiry("  5S   5S ", msg) == NOW + 10, "repeated units add up, spaces are free");
	/* 2026-01-31 plus one month is "February 31st", which mktime carries to March 3rd. */
	ok(expiry("1m", msg) == NOW + 31 * 86400, "1m: a calendar month (m is months)");
	ok(expiry("1y", msg) == NOW + 365 * 86400, "1y: a calendar year");
	ok(expiry("0S", msg) == 0, "a zero duration is no expiry");

	ok(expiry("10", msg) == -1 && strstr(msg, "S seconds"), "a count without unit: %s", msg);
	ok(expiry("10s", msg) == -1 && strstr(msg, "'10s'"), "lower-case s is refused: %s", msg);
	ok(expiry("1h", msg) == -1, "lower-case h is refused");
	ok(expiry("H", msg) == -1, "a unit without count is refused");
	ok(expiry("1d3H", msg) == -1, "parts must be separated by spaces");
	ok(expiry("-1d", msg) == -1, "negative counts are refused");
	ok(expiry("99999999999S", msg) == -1, "an absurd count is refused");
}

static void test_expired(void)
{
	ok(!lxm_token_expired(0, NOW), "0 never expires");
	ok(!lxm_token_expired(NOW + 1, NOW), "not yet expired a second before");
	ok(lxm_token_expired(NOW, NOW), "expired at its expiry time");
	ok(lxm_token_expired(NOW - 5, NOW), "expired after it");
}

static void test_key(void)
{
	struct lxm_error *err = NULL;
	const struct lxm_server_key *k = lxm_server_key_find("core.remote_token_expiry");
	int r;

	ok(k != NULL, "core.remote_token_expiry is in the server key table");
	ok(lxm_server_config_check("core.remote_token_expiry", "1d 3H", NULL) == 0,
	   "'1d 3H' is accepted");
	ok(lxm_server_config_check("core.remote_token_expiry", "", NULL) == 0,
	   "'' (never) is accepted");
	r = lxm_server_config_check("core.remote_token_expiry", "soon", &err);
	ok(r < 0 && err && strstr(err->msg, "core.remote_token_expiry") && strstr(err->msg, "soon"),
	   "'soon' is refused naming the key and value: %s", err ? err->msg : "");
	ok(err && err->status == 400, "with status 400");
	lxm_error_free(err);
}

int main(void)
{
	test_parse();
	test_expired();
	test_key();
	return tap_done();
}
