/* SELinux for init: the label is set as the exec context, so it applies from init's exec on.
 * Without libselinux, or when SELinux is disabled, nothing is done and the caller is told it was
 * skipped. */
#include "config.h"

#include <errno.h>

#include "container/setup-internal.h"

#ifdef HAVE_SELINUX

#include <selinux/selinux.h>

int lxm_lsm_selinux_apply(const char *label, struct lxm_error **err)
{
	/* libselinux found selinuxfs when the monitor started, on the host: the answer holds
	 * after pivot_root too. */
	if (is_selinux_enabled() <= 0)
		return 1;
	if (setexeccon(label) < 0)
		return lxm_error_setx(err, -errno, 500, "selinux: set the exec label '%s'", label);
	return 0;
}

#else /* !HAVE_SELINUX */

int lxm_lsm_selinux_apply(const char *label, struct lxm_error **err)
{
	return 1;
}

#endif
