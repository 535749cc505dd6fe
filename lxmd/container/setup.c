/* The container setup: the ordered, named steps the child of clone3 runs once the monitor has
 * written its id maps and placed it in its cgroups, ending in the exec of init. A failing step
 * puts its name first in the error ("step 'mount-proc': mount proc on /proc: ..."), which the
 * monitor passes on to the user. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cleanup.h"
#include "container/setup-internal.h"
#include "util.h"

static LXM_SETUP_STEP(step_close_fds);
static LXM_SETUP_STEP(step_exec_init);

const struct lxm_setup_step lxm_setup_steps[] = {
	/* After the monitor's wait-for-parent: take the ids its uid_map/gid_map gave us. */
	{ "idmap", lxm_step_idmap },
	{ "mount-private", lxm_step_mount_private },
	{ "mount-rootfs", lxm_step_mount_rootfs },
	{ "mount-proc", lxm_step_mount_proc },
	{ "mount-sys", lxm_step_mount_sys },
	{ "mount-dev", lxm_step_mount_dev },
	{ "mount-console", lxm_step_mount_console },
	{ "mount-run", lxm_step_mount_run },
	{ "mount-cgroup", lxm_step_mount_cgroup },
	{ "mount-extra", lxm_step_mount_extra },
	{ "pivot-root", lxm_step_pivot_root },
	{ "hostname", lxm_step_hostname },
	{ "loopback", lxm_step_loopback },
	{ "rlimits", lxm_step_rlimits },
	{ "capabilities", lxm_step_capabilities },
	{ "lsm", lxm_step_lsm },
	{ "no-new-privs", lxm_step_no_new_privs },
	/* Last before exec: the filter may deny what the setup itself uses. */
	{ "seccomp", lxm_step_seccomp },
	{ "close-fds", step_close_fds },
	{ "exec-init", step_exec_init },
	{ NULL, NULL },
};

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* close() of every fd in [from, to]: where close_range is missing, or a seccomp allow list
 * refuses it. */
static void close_each(unsigned int from, unsigned int to)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur - 1 < to)
		to = (unsigned int)(rl.rlim_cur - 1);
	for (unsigned int fd = from; fd <= to && fd >= from; fd++)
		close((int)fd);
}

static void close_between(unsigned int from, unsigned int to)
{
	if (from > to)
		return;
	if (close_range(from, to, 0) < 0)
		close_each(from, to);
}

int lxm_close_fds_except(const int *keep, size_t n)
{
	_cleanup_free_ int *sorted = NULL;
	unsigned int from = 3;

	if (n > 0) {
		sorted = malloc(n * sizeof(*sorted));
		if (!sorted)
			return -ENOMEM;
		memcpy(sorted, keep, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), cmp_int);
	}
	for (size_t i = 0; i < n; i++) {
		if (sorted[i] < 0 || (unsigned int)sorted[i] < from)
			continue;
		close_between(from, (unsigned int)sorted[i] - 1);
		from = (unsigned int)sorted[i] + 1;
	}
	close_between(from, ~0U);
	return 0;
}

/* Every fd above stdio that would survive exec is closed now (CVE-2024-21626: a leaked host fd
 * is a way out). Those marked close-on-exec stay until exec: the monitor's sync socket among
 * them, so that a failing exec can still be reported. */
static LXM_SETUP_STEP(step_close_fds)
{
	_cleanup_free_ int *keep = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int r;

	d = opendir("/proc/self/fd");
	if (!d)
		return lxm_error_setx(err, -errno, 500, "list open fds in /proc/self/fd");
	while ((de = readdir(d))) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		int flags;

		if (*end || end == de->d_name || fd < 3 || fd == dirfd(d))
			continue;
		flags = fcntl((int)fd, F_GETFD);
		if (flags < 0 || !(flags & FD_CLOEXEC))
			continue;
		if (n == cap) {
			int *nk = realloc(keep, (cap = cap ? 2 * cap : 16) * sizeof(*keep));

			if (!nk) {
				closedir(d);
				return lxm_error_set(err, -ENOMEM, 500, "close fds: out of memory");
			}
			keep = nk;
		}
		keep[n++] = (int)fd;
	}
	closedir(d);
	r = lxm_close_fds_except(keep, n);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "close inherited fds");
	return 0;
}

static LXM_SETUP_STEP(step_exec_init)
{
	static char *const default_env[] = { (char *)LXM_INIT_DEFAULT_PATH, (char *)"container=lxc",
					     NULL };
	int r;

	execve(s->init[0], s->init, s->env ? s->env : default_env);
	r = -errno;
	if (r == -ENOENT && access(s->init[0], F_OK) == 0)
		return lxm_error_set(err, r, 500,
				     "init %s: its program interpreter (ELF loader or #! line) is "
				     "missing in the container's rootfs",
				     s->init[0]);
	if (r == -ENOENT)
		return lxm_error_set(err, r, 500, "init %s not found in the container's rootfs",
				     s->init[0]);
	return lxm_error_setx(err, r, 500, "exec init %s", s->init[0]);
}

/* Signal dispositions and the mask survive exec; init must start with neither the monitor's
 * ignored signals nor its blocked ones. */
static void reset_signals(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t all;

	for (int sig = 1; sig < _NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}

int lxm_container_setup_and_exec(const struct lxm_container_spec *s,
				 const struct lxm_setup_fds *fds, struct lxm_error **err)
{
	reset_signals();
	for (const struct lxm_setup_step *step = lxm_setup_steps; step->name; step++) {
		int r = step->run(s, fds, err);

		if (r < 0) {
			if (err && !*err)
				lxm_error_setx(err, r, 500, "failed");
			lxm_error_prefix(err, "step '%s'", step->name);
			return r;
		}
	}
	/* exec-init returns only when exec failed, with the error set. */
	return lxm_error_set(err, -EIO, 500, "step 'exec-init': returned without exec");
}
