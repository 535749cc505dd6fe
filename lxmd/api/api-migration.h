/* Instance transfers between lxmd hosts (stop-copy migration in the shape of LXD's API): the
 * source side answers POST /1.0/instances/<name> (or a snapshot's) {"migration": true}, the target
 * side is the create of POST /1.0/instances {"source": {"type": "migration", "mode": "push"}}.
 * See api-migration.c for the wire format. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

struct lxmd;
struct lxmd_request;
struct lxm_operation;
struct lxmd_migration;

/* POST /1.0/instances/<name> (snap NULL) or /1.0/instances/<name>/snapshots/<snap> with
 * "migration": true: answers with the source's websocket operation, whose metadata holds the
 * secrets {"control": S1, "fs": S2}. A running instance (snap NULL) and "live": true are refused.
 */
int lxmd_migration_source(struct lxmd_request *r, const char *name, const char *snap,
			  struct lxm_error **err);

/* The target's receiving side of the create of instance name: *ret_metadata gets the operation's
 * metadata (the secrets). Nothing is connectable until lxmd_migration_target_attach(). */
int lxmd_migration_target_new(struct lxmd *d, const char *name, struct lxmd_migration **ret,
			      json_t **ret_metadata);
/* Makes m's websockets reachable through op and starts the connect timeout. */
void lxmd_migration_target_attach(struct lxmd_migration *m, struct lxm_operation *op);

/* Called once when the data is in (err NULL) or the transfer failed (err, consumed); never
 * while the extracting child still writes into the rootfs. */
typedef void (*lxmd_migration_done_fn)(void *ud, struct lxm_error *err);
/* Extracts the incoming tar stream into rootfs (the new volume's empty rootfs/). done may run
 * before this returns (a transfer that failed already). */
void lxmd_migration_receive(struct lxmd_migration *m, const char *rootfs,
			    lxmd_migration_done_fn done, void *ud);
/* Tells the source how the create ended (err NULL: the instance exists) and closes the
 * websockets. Once; later calls do nothing. */
void lxmd_migration_target_end(struct lxmd_migration *m, const struct lxm_error *err);
/* Fails the transfer as cancelled (the create's operation was cancelled). */
void lxmd_migration_cancel(struct lxmd_migration *m);
/* The create's job lets go of m (NULL is fine): what still runs is stopped. */
void lxmd_migration_release(struct lxmd_migration *m);
