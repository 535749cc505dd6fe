/* The listing of collections shared by their handlers, and the collections whose contents later
 * parts of lxmd manage (networks): listed from the database now so that clients see a
 * consistent, empty-but-real state. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "json.h"
#include "server.h"

int lxmd_list_collection(struct lxmd_request *r, const char *prefix, const char *what,
			 int (*names)(struct lxm_db *db, char ***ret, struct lxm_error **err),
			 int (*object)(struct lxmd_request *r, const char *name, json_t **ret,
				       struct lxm_error **err),
			 bool filter, struct lxm_error **err)
{
	_cleanup_strv_ char **list_names = NULL;
	_cleanup_json_ json_t *list = json_array();
	int recursion, k;

	if ((k = lxmd_query_recursion(r, &recursion, err)) < 0 ||
	    (k = lxmd_query_project(r, err)) < 0)
		return k;
	if (!list)
		return -ENOMEM;
	k = names(r->d->db, &list_names, err);
	if (k < 0)
		return lxm_error_prefix(err, "list %s", what);
	/* Objects only the resource's own handlers can build: refused until those exist rather
	 * than faked. */
	if (recursion > 0 && !object && list_names && list_names[0])
		return lxm_error_set(err, -EOPNOTSUPP, 501,
				     "list %s: recursion is not supported yet", what);
	for (char **n = list_names; n && *n; n++) {
		json_t *j = NULL;

		if (recursion > 0) {
			k = object(r, *n, &j, err);
			if (k < 0)
				return k;
		} else {
			_cleanup_free_ char *url = NULL;

			if (asprintf(&url, "%s/%s", prefix, *n) < 0 || !(j = json_string(url)))
				return -ENOMEM;
		}
		if (json_array_append_new(list, j) < 0)
			return -ENOMEM;
	}
	if (recursion > 0 && filter && (k = lxmd_apply_filter(r, list, err)) < 0)
		return k;
	return lxmd_respond_sync(r, TAKE_PTR(list), NULL);
}

/* GET /1.0/networks is api-networks.c's. */
