/* Images as lxmd uses them: resolving a name, filling an instance's rootfs from one. */
#pragma once

#include <stdbool.h>

#include "error.h"

struct lxmd;

/* Fills an instance's rootfs from an image alias (building a template image on first use). Ends
 * op when done; cb is called first with the result (to roll back the database row on failure). */
typedef void (*lxmd_rootfs_done_fn)(struct lxmd *d, const char *name, int result, void *ud);
int lxmd_instance_fill_rootfs(struct lxmd *d, const char *name, const char *alias,
			      lxmd_rootfs_done_fn cb, void *ud, struct lxm_error **err);
/* Whether an image alias can be used (exists, or a template can build it). */
bool lxmd_image_known(struct lxmd *d, const char *alias);
