/* The HTTPS listener's request-rate limiter: token buckets per client address, refilled over a
 * time the test injects, with a bounded table whose refilled entries expire. */
#include "config.h"

#include <errno.h>
#include <stdio.h>

#include "ratelimit.h"
#include "tap.h"

/* Takes n tokens for key at now; returns how many were granted. */
static int take_n(struct lxmd_ratelimit *rl, const char *key, int n, uint64_t now)
{
	int granted = 0;

	for (int i = 0; i < n; i++)
		granted += lxmd_ratelimit_take(rl, key, now) == 0;
	return granted;
}

int main(void)
{
	struct lxmd_ratelimit *rl = NULL;
	const uint64_t t0 = 1000000;
	char key[32];
	uint64_t wait;

	is_int(lxmd_ratelimit_new(0, 10, 8, &rl), -EINVAL, "a rate of 0 is refused");
	is_int(lxmd_ratelimit_new(10, 0, 8, &rl), -EINVAL, "a burst of 0 is refused");
	is_int(lxmd_ratelimit_new(10, 10, 0, &rl), -EINVAL, "a table of 0 keys is refused");

	/* Burst and refill: 10 a second, bursts of 20. */
	is_int(lxmd_ratelimit_new(10, 20, 4, &rl), 0, "new limiter");
	is_int(take_n(rl, "192.0.2.1", 20, t0), 20, "a new client has its whole burst at once");
	wait = lxmd_ratelimit_take(rl, "192.0.2.1", t0);
	is_int(wait, 100, "the 21st request waits 100 ms (one token at 10 a second)");
	is_int(lxmd_ratelimit_take(rl, "192.0.2.1", t0 + 50), 50, "50 ms later: 50 ms to go");
	is_int(lxmd_ratelimit_take(rl, "192.0.2.1", t0 + 100), 0, "100 ms later: one token");
	is_int(lxmd_ratelimit_take(rl, "192.0.2.1", t0 + 100), 100, "and only one");
	is_int(take_n(rl, "192.0.2.1", 20, t0 + 600), 5, "500 ms more: five tokens");
	is_int(take_n(rl, "192.0.2.2", 20, t0 + 600), 20, "another address has its own bucket");
	is_int(take_n(rl, "192.0.2.1", 100, t0 + 600 + 3600 * 1000), 20,
	       "after an hour the bucket is full again, no more than the burst");
	is_int(lxmd_ratelimit_take(rl, "192.0.2.1", t0), 100,
	       "time going backwards grants nothing");

	/* Expiry: only buckets that have refilled go. */
	lxmd_ratelimit_free(rl);
	is_int(lxmd_ratelimit_new(10, 20, 4, &rl), 0, "new limiter");
	take_n(rl, "a", 20, t0);
	take_n(rl, "b", 1, t0);
	is_int(lxmd_ratelimit_size(rl), 2, "two buckets");
	is_int(lxmd_ratelimit_expire(rl, t0 + 50), 0, "50 ms later neither has refilled");
	is_int(lxmd_ratelimit_expire(rl, t0 + 100), 1,
	       "after 100 ms the one that took one token has refilled and goes");
	is_int(lxmd_ratelimit_size(rl), 1, "one bucket left");
	is_int(lxmd_ratelimit_take(rl, "a", t0 + 1000), 0, "the emptied one has refilled 10");
	is_int(take_n(rl, "a", 20, t0 + 1000), 9, "9 of them left");
	is_int(lxmd_ratelimit_expire(rl, t0 + 3000), 1, "after 2 s more it has refilled too");
	is_int(lxmd_ratelimit_size(rl), 0, "the table is empty");

	/* The cap: a full table drops its least recently used bucket for a new key. */
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "10.0.0.%d", i);
		take_n(rl, key, 20, t0 + 4000);
	}
	is_int(lxmd_ratelimit_size(rl), 4, "four buckets, the cap");
	ok(lxmd_ratelimit_take(rl, "10.0.0.0", t0 + 4000) > 0, "10.0.0.0 is over its rate");
	ok(lxmd_ratelimit_take(rl, "10.0.0.1", t0 + 4000) > 0, "10.0.0.1 too");
	is_int(lxmd_ratelimit_take(rl, "10.0.0.9", t0 + 4000), 0, "a fifth address is served");
	is_int(lxmd_ratelimit_size(rl), 4, "the table stays at its cap");
	/* 10.0.0.2 was least recently used (0 and 1 were just seen): it went. */
	is_int(lxmd_ratelimit_take(rl, "10.0.0.2", t0 + 4000), 0,
	       "the least recently used one was dropped and starts afresh");
	ok(lxmd_ratelimit_take(rl, "10.0.0.0", t0 + 4000) > 0,
	   "a recently seen one kept its empty bucket");
	is_int(lxmd_ratelimit_size(rl), 4, "still four");
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "2001:db8::%x", i);
		lxmd_ratelimit_take(rl, key, t0 + 5000);
	}
	is_int(lxmd_ratelimit_size(rl), 4, "a thousand addresses later, still four");
	is_int(lxmd_ratelimit_expire(rl, t0 + 5000), 0,
	       "each just took a token: none has refilled");
	is_int(lxmd_ratelimit_expire(rl, t0 + 5100), 4, "100 ms later all four have, and go");
	is_int(lxmd_ratelimit_size(rl), 0, "the table is empty again");
	lxmd_ratelimit_free(rl);
	return tap_done();
}
