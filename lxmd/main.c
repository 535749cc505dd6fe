/* lxmd: the lxm daemon. Everything but argument handling and daemonizing lives in liblxmd. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "server.h"
#include "vm/kvm-probe.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: lxmd [OPTIONS]\n"
		"\n"
		"The lxm daemon: serves LXD's REST API 1.0 on a unix socket.\n"
		"\n"
		"Options:\n"
		"  --root DIR         state directory (default $LXM_DIR or %s)\n"
		"  --socket PATH      API socket (default ROOT/unix.socket)\n"
		"  --rundir DIR       runtime state (default %s, or ROOT/run for other roots)\n"
		"  --log-level LEVEL  error, warn, info or debug (default info)\n"
		"  --foreground       stay in the foreground and log to stderr too\n"
		"  --probe-kvm        check whether KVM runs guests at speed here, then exit:\n"
		"                     0 yes, 1 no (VMs would use TCG), 2 the check failed\n"
		"  --version          print the version\n"
		"  -h, --help         show this help\n",
		LXM_DEFAULT_DIR, LXM_DEFAULT_RUNDIR);
}

/* Forks; the parent waits until the child reports that it serves (or why it could not) and exits
 * with that result, so that `lxmd && lxm info` works. Returns in the child with the write end of
 * the report pipe. */
static int daemonize(int *ret_report)
{
	int p[2], devnull;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &c, 1) == 1 && c == 'R')
			_exit(0);
		/* The child printed its error to our shared stderr before closing the pipe. */
		waitpid(pid, NULL, WNOHANG);
		_exit(1);
	}
	close(p[0]);
	if (setsid() < 0)
		return -errno;
	if (chdir("/") < 0)
		return -errno;
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		close(devnull);
	}
	*ret_report = p[1];
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 's' },
		{ "rundir", required_argument, NULL, 'R' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "probe-kvm", no_argument, NULL, 'K' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct lxmd_config cfg = { .level = LXM_LOG_INFO };
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxmd d;
	uv_loop_t loop;
	int c, k, report = -1;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'r':
			free(cfg.root);
			cfg.root = strdup(optarg);
			break;
		case 's':
			free(cfg.socket_path);
			cfg.socket_path = strdup(optarg);
			break;
		case 'R':
			free(cfg.rundir);
			cfg.rundir = strdup(optarg);
			break;
		case 'l':
			cfg.level = lxm_log_level_from_string(optarg);
			if (cfg.level == _LXM_LOG_LEVEL_INVALID) {
				fprintf(stderr,
					"Error: invalid --log-level '%s' (error, warn, info, "
					"debug)\n",
					optarg);
				return 1;
			}
			break;
		case 'f':
			cfg.foreground = true;
			break;
		case 'V':
			printf("%s\n", PACKAGE_VERSION);
			return 0;
		case 'K': {
			struct lxm_kvm_probe_result res;
			const char *dev = lxm_kvm_probe_device();

			k = lxm_kvm_probe(dev, LXM_KVM_PROBE_DEADLINE_MS, &res);
			lxm_kvm_probe_print(stdout, dev, &res);
			return k < 0 ? 2 : res.usable ? 0 : 1;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "Error: unexpected argument '%s' (see lxmd --help)\n",
			argv[optind]);
		return 1;
	}
	if (lxmd_config_finish(&cfg) < 0) {
		fprintf(stderr, "Error: out of memory\n");
		return 1;
	}
	lxm_log_set_level(cfg.level);
	if (lxmd_server_test_knobs(&err) < 0) {
		fprintf(stderr, "Error: %s\n", err->msg);
		lxmd_config_free(&cfg);
		return 1;
	}

	if (!cfg.foreground && geteuid() == 0) {
		k = daemonize(&report);
		if (k < 0) {
			fprintf(stderr, "Error: daemonize: %s\n", strerror(-k));
			return 1;
		}
		/* A daemon's lines go to its log file; a start-up error still reaches the user's
		 * terminal once, from the failure path below. */
		lxm_log_set_stderr(false);
	}
	/* The thread pool runs long jobs (image unpacks and packs, hashing, downloads) beside the
	 * short ones every request needs (start files, freezes, file transfers): four threads, the
	 * default, would let a few image jobs hold up the rest. Read once, at its first use. */
	if (!getenv("UV_THREADPOOL_SIZE"))
		setenv("UV_THREADPOOL_SIZE", "16", 1);
	uv_loop_init(&loop);
	k = lxmd_init(&d, &loop, &cfg, &err);
	lxmd_config_free(&cfg);
	if (k < 0) {
		/* The user reads it once on stderr; the log file (when open) keeps it too. */
		lxm_log_set_stderr(false);
		log_error("%s", err ? err->msg : strerror(-k));
		fprintf(stderr, "Error: %s\n", err ? err->msg : strerror(-k));
		uv_run(&loop, UV_RUN_DEFAULT);
		uv_loop_close(&loop);
		return 1;
	}
	if (report >= 0) {
		/* Ready: let the parent exit 0; from now on only the log file gets our lines. */
		if (write(report, "R", 1) < 0) {
		}
		close(report);
		int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (devnull >= 0) {
			dup2(devnull, STDERR_FILENO);
			close(devnull);
		}
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	lxmd_fini(&d);
	k = uv_loop_close(&loop);
	if (k < 0)
		log_warn("event loop closed with handles still open: %s", uv_strerror(k));
	log_info("lxmd stopped");
	lxm_log_open_file(NULL);
	return 0;
}
