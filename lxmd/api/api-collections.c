/* Collections whose contents later parts of lxmd manage (networks): listed
 * from the database now so that clients see a consistent, empty-but-real state. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "json.h"
#include "server.h"

typedef int (*names_fn)(struct lxm_db *db, char ***ret, struct lxm_error **err);

/* Answers with the URLs of a collection; recursion asks for objects, which only the resource's
 * own handlers can build, so it is refused until those exist rather than faked. */
static int list_urls(struct lxmd_request *r, const char *prefix, const char *what, names_fn fn,
		     struct lxm_error **err)
{
	_cleanup_strv_ char **names = NULL;
	_cleanup_json_ json_t *list = json_array();
	int recursion, k;

	if ((k = lxmd_query_recursion(r, &recursion, err)) < 0 ||
	    (k = lxmd_query_project(r, err)) < 0)
		return k;
	k = fn(r->d->db, &names, err);
	if (k < 0)
		return lxm_error_prefix(err, "list %s", what);
	if (recursion > 0 && names && names[0])
		return lxm_error_set(err, -EOPNOTSUPP, 501,
				     "list %s: recursion is not supported yet", what);
	for (char **n = names; n && *n; n++) {
		char *url = NULL;

		if (asprintf(&url, "%s/%s", prefix, *n) < 0)
			return -ENOMEM;
		json_array_append_new(list, json_string(url));
		free(url);
	}
	return lxmd_respond_sync(r, TAKE_PTR(list), NULL);
}

int lxmd_api_networks_get(struct lxmd_request *r, struct lxm_error **err)
{
	return list_urls(r, "/1.0/networks", "networks", lxm_db_network_names, err);
}
