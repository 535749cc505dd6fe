/* AppArmor for init: the profile (generated and loaded by lxmd) is attached to the next exec, so
 * the setup itself runs unconfined and init starts confined. Without libapparmor, or on a kernel
 * without AppArmor, nothing is done and the caller is told it was skipped. */
#include "config.h"

#include <errno.h>

#include "container/setup-internal.h"

#ifdef HAVE_APPARMOR

#include <fcntl.h>
#include <stdbool.h>
#include <sys/apparmor.h>
#include <unistd.h>

#include "cleanup.h"

/* Whether the kernel enforces AppArmor. After pivot_root securityfs is not mounted, and then
 * aa_is_enabled() says no (errno ENOENT) although the kernel confines us; the module parameter
 * in sysfs still tells the truth. */
static bool apparmor_enabled(void)
{
	_cleanup_close_ int fd = -1;
	char c = 'N';

	if (aa_is_enabled())
		return true;
	if (errno != ENOENT)
		return false;
	fd = open("/sys/module/apparmor/parameters/enabled", O_RDONLY | O_CLOEXEC);
	return fd >= 0 && read(fd, &c, 1) == 1 && c == 'Y';
}

int lxm_lsm_apparmor_apply(const char *profile, struct lxm_error **err)
{
	if (!apparmor_enabled())
		return 1;
	if (aa_change_onexec(profile) < 0)
		return lxm_error_setx(err, -errno, 500, "apparmor: exec init under profile '%s'",
				      profile);
	return 0;
}

#else /* !HAVE_APPARMOR */

int lxm_lsm_apparmor_apply(const char *profile, struct lxm_error **err)
{
	return 1;
}

#endif
