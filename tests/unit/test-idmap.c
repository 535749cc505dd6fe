/* Id maps (lxmd/idmap.c): the maps built from a range and raw.idmap entries, their JSON, and the
 * allocation of isolated ranges in root's subordinate ids. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "lxmd/idmap.h"
#include "tap.h"

/* The map as "ns:host:count" lines joined by spaces (static). */
static const char *show(const struct lxm_idmap *v, size_t n)
{
	static char buf[1024];
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && len < sizeof(buf); i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%u:%u:%u", i ? " " : "",
					v[i].nsid, v[i].hostid, v[i].count);
	return buf;
}

static void test_build(void)
{
	struct lxm_error *err = NULL;
	struct lxm_idmap *u = NULL, *g = NULL;
	size_t nu = 0, ng = 0;
	struct lxm_raw_idmap raw[] = {
		{ .uid = true, .gid = true, .host = 1000, .ns = 1000, .count = 1 },
		{ .uid = true, .host = 5000, .ns = 100, .count = 10 },
	};
	/* A host id inside the container's own range: that container id leaves the range. */
	struct lxm_raw_idmap inside[] = {
		{ .uid = true, .host = 1000005, .ns = 70000, .count = 1 },
	};
	json_t *j;
	char *text;
	int r;

	r = lxmd_idmap_build(1000000, 2000000, 65536, NULL, 0, &u, &nu, &g, &ng, &err);
	is_int(r, 0, "the plain range builds");
	is_str(show(u, nu), "0:1000000:65536", "uid map: one line");
	is_str(show(g, ng), "0:2000000:65536", "gid map: one line at the gid base");
	j = lxmd_idmap_json(u, nu, g, ng);
	text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	is_str(text,
	       "[{\"Hostid\":1000000,\"Isgid\":false,\"Isuid\":true,\"Maprange\":65536,\"Nsid\":0},"
	       "{\"Hostid\":2000000,\"Isgid\":true,\"Isuid\":false,\"Maprange\":65536,\"Nsid\":0}]",
	       "LXD's JSON form");
	free(text);
	json_decref(j);
	free(u);
	free(g);

	r = lxmd_idmap_build(1000000, 1000000, 65536, raw, 2, &u, &nu, &g, &ng, &err);
	is_int(r, 0, "a range with raw entries builds");
	is_str(show(u, nu),
	       "0:1000000:100 100:5000:10 110:1000110:890 1000:1000:1 1001:1001001:64535",
	       "uid map: the raw ids punched out of the range and mapped on their own");
	is_str(show(g, ng), "0:1000000:1000 1000:1000:1 1001:1001001:64535",
	       "gid map: only the 'both' entry");
	free(u);
	free(g);

	r = lxmd_idmap_build(1000000, 1000000, 65536, inside, 1, &u, &nu, &g, &ng, &err);
	is_int(r, 0, "a raw host id inside the range builds");
	is_str(show(u, nu), "0:1000000:5 6:1000006:65530 70000:1000005:1",
	       "uid map: container id 5 leaves the range, its host id goes to 70000");
	free(u);
	free(g);

	{
		struct lxm_raw_idmap many[200];

		for (unsigned i = 0; i < 200; i++)
			many[i] = (struct lxm_raw_idmap){
				.uid = true, .host = 3000000 + 2 * i, .ns = 10 + 2 * i, .count = 1
			};
		r = lxmd_idmap_build(1000000, 1000000, 65536, many, 200, &u, &nu, &g, &ng, &err);
		is_int(r, -E2BIG, "more lines than the kernel takes is refused");
		ok(err && strstr(err->msg, "raw.idmap") && strstr(err->msg, "340"),
		   "the message names raw.idmap and the limit: %s", err ? err->msg : "");
		lxm_error_free(err);
		err = NULL;
	}
}

static void test_allocate(void)
{
	const struct lxmd_subids ids = { 1000000, 1000000000, 1000000, 1000000000 };
	const struct lxmd_subids small = { 1000000, 200000, 1000000, 200000 };
	struct lxmd_idmap_used used[] = { { 1065536, 65536 }, { 1200000, 65536 } };
	struct lxm_error *err = NULL;
	uint32_t base = 0;
	int r;

	r = lxmd_idmap_allocate(&ids, NULL, 0, -1, -1, 65536, "c1", &base, &err);
	is_int(r, 0, "first isolated range");
	is_int(base, 1065536, "right after the shared range");
	r = lxmd_idmap_allocate(&ids, used, 2, -1, -1, 65536, "c2", &base, &err);
	is_int(r, 0, "second isolated range");
	is_int(base, 1131072, "the lowest gap that fits");
	r = lxmd_idmap_allocate(&ids, used, 2, -1, -1, 100000, "c3", &base, &err);
	is_int(r, 0, "a larger range");
	is_int(base, 1265536, "skips a gap too small for it");
	r = lxmd_idmap_allocate(&ids, used, 2, -1, 5000000, 65536, "c4", &base, &err);
	is_int(r, 0, "a recorded range");
	is_int(base, 5000000, "a recorded range that is still free is kept");
	r = lxmd_idmap_allocate(&ids, used, 2, -1, 1200000, 65536, "c5", &base, &err);
	is_int(r, 0, "a recorded range now taken");
	is_int(base, 1131072, "is given up for the lowest free one");
	r = lxmd_idmap_allocate(&ids, used, 2, 3000000, 5000000, 65536, "c6", &base, &err);
	is_int(r, 0, "an explicit base");
	is_int(base, 3000000, "wins over the recorded one");

	r = lxmd_idmap_allocate(&ids, used, 2, 1210000, -1, 65536, "c7", &base, &err);
	is_int(r, -EBUSY, "an explicit base overlapping another instance's range is refused");
	ok(err && strstr(err->msg, "'security.idmap.base'") && strstr(err->msg, "'1210000'") &&
		   strstr(err->msg, "another isolated"),
	   "the message names the key, the value and the cause: %s", err ? err->msg : "");
	lxm_error_free(err);
	err = NULL;
	r = lxmd_idmap_allocate(&ids, used, 2, 1000, -1, 65536, "c8", &base, &err);
	is_int(r, -EINVAL, "an explicit base outside root's subordinate ids is refused");
	ok(err && strstr(err->msg, "subordinate ids"), "says why: %s", err ? err->msg : "");
	lxm_error_free(err);
	err = NULL;
	r = lxmd_idmap_allocate(&ids, NULL, 0, 1000000, -1, 65536, "c9", &base, &err);
	is_int(r, -EBUSY, "an explicit base in the shared range is refused");
	lxm_error_free(err);
	err = NULL;
	r = lxmd_idmap_allocate(&small, used, 1, -1, -1, 100000, "c10", &base, &err);
	is_int(r, -ENOSPC, "no room left is an error");
	ok(err && strstr(err->msg, "no free range of 100000 ids") &&
		   strstr(err->msg, "/etc/subuid"),
	   "says what to do: %s", err ? err->msg : "");
	lxm_error_free(err);
}

int main(void)
{
	test_build();
	test_allocate();
	return tap_done();
}
