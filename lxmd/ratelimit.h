/* Request-rate limits per client: a token bucket per key (the client's IP address) in a table of
 * bounded size. Time is passed in by the caller (monotonic milliseconds), so tests drive it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct lxmd_ratelimit;

/* rate: tokens added per second (>= 1); burst: most tokens a bucket holds (>= 1); max_keys: most
 * buckets kept at once (>= 1). -EINVAL for values out of range. */
int lxmd_ratelimit_new(uint32_t rate, uint32_t burst, size_t max_keys, struct lxmd_ratelimit **ret);
void lxmd_ratelimit_free(struct lxmd_ratelimit *rl);

/* Takes one token from key's bucket at now_ms (a new key starts with a full bucket). Returns 0
 * when it had one, else the milliseconds until the next token (the request is refused). A new key
 * in a full table takes the place of the least recently used one. */
uint64_t lxmd_ratelimit_take(struct lxmd_ratelimit *rl, const char *key, uint64_t now_ms);

/* Frees the buckets that have refilled by now_ms: they are as good as absent. Returns how many. */
size_t lxmd_ratelimit_expire(struct lxmd_ratelimit *rl, uint64_t now_ms);

/* Buckets in the table. */
size_t lxmd_ratelimit_size(const struct lxmd_ratelimit *rl);
