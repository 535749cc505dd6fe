/* lxm-monitor: picks the mode from argv[1]; each mode lives in its own file. */
#include <stdio.h>
#include <unistd.h>

#include "monitor/monitor-disks.h"
#include "monitor/monitor.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s start <spec.json>\n"
		"       %s vm <spec.json>\n"
		"       %s exec <spec.json> <init_pid> [OPTION]... -- CMD [ARG...]\n"
		"       %s disk attach|detach <init_pid> ...\n"
		"\n"
		"Started by lxmd, not by hand.\n"
		"  start  detach, create the container described by spec.json, print\n"
		"         one JSON line ({\"status\":\"Running\",...} or {\"error\":...})\n"
		"         and supervise its init\n"
		"  vm     detach, start the QEMU VM described by spec.json, print\n"
		"         the same line and supervise QEMU\n"
		"  exec   run CMD inside the running container whose init is init_pid\n"
		"  disk   mount or unmount a disk in the running container (hot-plug)\n",
		LXM_MONITOR_NAME, LXM_MONITOR_NAME, LXM_MONITOR_NAME, LXM_MONITOR_NAME);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (streq(argv[1], "--help") || streq(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (streq(argv[1], "start"))
		return lxm_monitor_start_main(argc - 1, argv + 1);
	if (streq(argv[1], "vm"))
		return lxm_monitor_vm_main(argc - 1, argv + 1);
	if (streq(argv[1], "exec"))
		/* _exit, not exit: the exec helper made itself non-dumpable inside the container's
		 * user namespace, where at-exit hooks that inspect the process (LeakSanitizer's
		 * ptrace-based check in sanitizer builds) cannot work and would spin forever. The
		 * kernel releases everything a process holds anyway. */
		_exit(lxm_monitor_exec_main(argc - 1, argv + 1));
	if (streq(argv[1], "disk"))
		/* _exit, as for exec: it joins the container's user namespace. */
		_exit(lxm_monitor_disk_main(argc - 1, argv + 1));
	fprintf(stderr,
		"%s: unknown mode '%s' (expected 'start', 'vm', 'exec' or 'disk'; see --help)\n",
		LXM_MONITOR_NAME, argv[1]);
	return 2;
}
