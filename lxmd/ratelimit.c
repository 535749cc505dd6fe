/* Token buckets per client (see ratelimit.h). Tokens are counted in thousandths, so that the
 * refill (rate tokens a second is rate thousandths a millisecond) needs no floating point. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "ratelimit.h"

#define MILLI 1000u

struct bucket {
	struct bucket *next;	 /* in its hash chain */
	TAILQ_ENTRY(bucket) lru; /* in rl->lru, least recently used first */
	uint64_t tokens;	 /* thousandths of a token left */
	uint64_t updated_ms;	 /* when tokens was last refilled */
	char key[];		 /* the client's address */
};

struct lxmd_ratelimit {
	uint32_t rate;		  /* tokens a second */
	uint64_t full;		  /* a full bucket, in thousandths */
	size_t max_keys;	  /* most buckets at once */
	size_t n_keys;		  /* buckets now */
	size_t n_slots;		  /* entries in slots (a power of two) */
	struct bucket **slots;	  /* hash chains */
	TAILQ_HEAD(, bucket) lru; /* every bucket, least recently used first */
};

static size_t hash(const char *key)
{
	size_t h = 14695981039346656037ULL;

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ULL;
	return h;
}

int lxmd_ratelimit_new(uint32_t rate, uint32_t burst, size_t max_keys, struct lxmd_ratelimit **ret)
{
	struct lxmd_ratelimit *rl;
	size_t n = 16;

	if (rate < 1 || burst < 1 || max_keys < 1 || max_keys > (1u << 24))
		return -EINVAL;
	while (n < max_keys)
		n *= 2;
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return -ENOMEM;
	rl->slots = calloc(n, sizeof(*rl->slots));
	if (!rl->slots) {
		free(rl);
		return -ENOMEM;
	}
	rl->rate = rate;
	rl->full = (uint64_t)burst * MILLI;
	rl->max_keys = max_keys;
	rl->n_slots = n;
	TAILQ_INIT(&rl->lru);
	*ret = rl;
	return 0;
}

void lxmd_ratelimit_free(struct lxmd_ratelimit *rl)
{
	struct bucket *b;

	if (!rl)
		return;
	while ((b = TAILQ_FIRST(&rl->lru))) {
		TAILQ_REMOVE(&rl->lru, b, lru);
		free(b);
	}
	free(rl->slots);
	free(rl);
}

/* The bucket's tokens as of now_ms (time never runs backwards here). */
static uint64_t bucket_level(const struct lxmd_ratelimit *rl, const struct bucket *b,
			     uint64_t now_ms)
{
	uint64_t elapsed = now_ms > b->updated_ms ? now_ms - b->updated_ms : 0;

	/* Past the time a whole bucket takes to refill, it is full (and no product overflows). */
	if (elapsed >= rl->full / rl->rate + 1)
		return rl->full;
	return b->tokens + elapsed * rl->rate < rl->full ? b->tokens + elapsed * rl->rate
							 : rl->full;
}

static void bucket_remove(struct lxmd_ratelimit *rl, struct bucket *b)
{
	struct bucket **p = &rl->slots[hash(b->key) & (rl->n_slots - 1)];

	while (*p != b)
		p = &(*p)->next;
	*p = b->next;
	TAILQ_REMOVE(&rl->lru, b, lru);
	rl->n_keys--;
	free(b);
}

uint64_t lxmd_ratelimit_take(struct lxmd_ratelimit *rl, const char *key, uint64_t now_ms)
{
	size_t slot = hash(key) & (rl->n_slots - 1);
	struct bucket *b;

	for (b = rl->slots[slot]; b; b = b->next)
		if (strcmp(b->key, key) == 0)
			break;
	if (b) {
		TAILQ_REMOVE(&rl->lru, b, lru);
	} else {
		size_t len = strlen(key);

		/* A full table makes room: the least recently seen client starts afresh if it
		 * comes back, which costs it nothing unless it was over its rate already. */
		if (rl->n_keys >= rl->max_keys)
			bucket_remove(rl, TAILQ_FIRST(&rl->lru));
		b = malloc(sizeof(*b) + len + 1);
		/* Out of memory: let the request through rather than refuse every client. */
		if (!b)
			return 0;
		memcpy(b->key, key, len + 1);
		b->tokens = rl->full;
		b->updated_ms = now_ms;
		b->next = rl->slots[slot];
		rl->slots[slot] = b;
		rl->n_keys++;
	}
	TAILQ_INSERT_TAIL(&rl->lru, b, lru);
	b->tokens = bucket_level(rl, b, now_ms);
	if (now_ms > b->updated_ms)
		b->updated_ms = now_ms;
	if (b->tokens >= MILLI) {
		b->tokens -= MILLI;
		return 0;
	}
	/* The thousandths missing, at rate thousandths a millisecond, rounded up. */
	return (MILLI - b->tokens + rl->rate - 1) / rl->rate;
}

size_t lxmd_ratelimit_expire(struct lxmd_ratelimit *rl, uint64_t now_ms)
{
	struct bucket *b, *next;
	size_t n = 0;

	for (b = TAILQ_FIRST(&rl->lru); b; b = next) {
		next = TAILQ_NEXT(b, lru);
		if (bucket_level(rl, b, now_ms) < rl->full)
			continue;
		bucket_remove(rl, b);
		n++;
	}
	return n;
}

size_t lxmd_ratelimit_size(const struct lxmd_ratelimit *rl)
{
	return rl->n_keys;
}
