/* Unit tests of the QMP client (lxmd/vm/qmp.c): against a scripted fake server (protocol
 * details, errors, timeouts, garbage) and against a real qemu-system-x86_64 started from
 * lxm_qemu_argv()'s command line under TCG with no kernel (skipped, saying so, when QEMU is not
 * installed). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "tap.h"
#include "util.h"
#include "vm/qemu.h"
#include "vm/qmp.h"

static char tmpdir[] = "/tmp/lxm-test-qmp-XXXXXX";

static int listen_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
		perror("listen");
		exit(2);
	}
	return fd;
}

static void say(FILE *f, const char *line)
{
	fputs(line, f);
	fputs("\r\n", f);
	fflush(f);
}

/* The fake QEMU: a greeting, then answers by command name (see the cases). Runs in a child. */
static void fake_server(int lfd, const char *mode)
{
	int fd = accept(lfd, NULL, NULL);
	FILE *f = fd >= 0 ? fdopen(fd, "r+") : NULL;
	char line[4096], slow_id[64] = "";

	if (!f)
		_exit(2);
	if (streq(mode, "silent")) {
		pause();
		_exit(0);
	}
	if (streq(mode, "garbage")) {
		say(f, "hello, I am not QEMU");
		pause();
		_exit(0);
	}
	if (streq(mode, "long")) {
		static char big[LXM_QMP_LINE_MAX + 4096];

		memset(big, 'x', sizeof(big));
		fwrite(big, 1, sizeof(big), f);
		fflush(f);
		pause();
		_exit(0);
	}
	if (streq(mode, "not-greeting")) {
		say(f, "{\"return\": {}}");
		pause();
		_exit(0);
	}
	say(f, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, \"minor\": 2, \"major\": 9}, "
	       "\"package\": \"\"}, \"capabilities\": []}}");
	while (fgets(line, sizeof(line), f)) {
		_cleanup_json_ json_t *req = json_loads(line, 0, NULL);
		const char *cmd = json_string_value(json_object_get(req, "execute"));
		const char *id = json_string_value(json_object_get(req, "id"));
		char out[4096];

		if (!cmd || !id)
			_exit(3);
		if (slow_id[0]) {
			/* The late answer to the command that timed out comes first. */
			snprintf(out, sizeof(out), "{\"return\": {\"late\": true}, \"id\": \"%s\"}",
				 slow_id);
			say(f, out);
			slow_id[0] = '\0';
		}
		if (streq(cmd, "query-status")) {
			say(f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": "
			       "\"STOP\"}");
			say(f, "{\"return\": {\"status\": \"running\"}, \"id\": \"someone-else\"}");
			snprintf(out, sizeof(out),
				 "{\"return\": {\"status\": \"paused\", \"running\": false}, "
				 "\"id\": \"%s\"}",
				 id);
		} else if (streq(cmd, "boom")) {
			snprintf(out, sizeof(out),
				 "{\"error\": {\"class\": \"GenericError\", \"desc\": \"it "
				 "broke\"}, "
				 "\"id\": \"%s\"}",
				 id);
		} else if (streq(cmd, "slow")) {
			snprintf(slow_id, sizeof(slow_id), "%s", id);
			continue;
		} else if (streq(cmd, "neither")) {
			snprintf(out, sizeof(out), "{\"id\": \"%s\"}", id);
		} else if (streq(cmd, "garbage")) {
			snprintf(out, sizeof(out), "[1, 2, 3]");
		} else if (streq(cmd, "emit-later")) {
			/* The answer now, an event of its own a little later. */
			snprintf(out, sizeof(out), "{\"return\": {}, \"id\": \"%s\"}", id);
			say(f, out);
			usleep(100 * 1000);
			say(f, "{\"timestamp\": {\"seconds\": 3, \"microseconds\": 4}, "
			       "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, "
			       "\"reason\": \"guest-shutdown\"}}");
			continue;
		} else if (streq(cmd, "quit")) {
			/* Like QEMU at times: it goes away without answering. */
			_exit(0);
		} else {
			snprintf(out, sizeof(out), "{\"return\": {}, \"id\": \"%s\"}", id);
		}
		say(f, out);
	}
	_exit(0);
}

static pid_t start_fake(const char *path, const char *mode)
{
	int lfd = listen_at(path);
	pid_t pid = fork();

	if (pid == 0)
		fake_server(lfd, mode);
	close(lfd);
	return pid;
}

static void end_fake(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_fake_protocol(void)
{
	char path[256];
	struct lxm_qmp *q = NULL;
	enum lxm_qmp_status st = _LXM_QMP_STATUS_INVALID;
	json_t *ev = NULL, *res = NULL;
	pid_t pid;
	int r;

	snprintf(path, sizeof(path), "%s/fake.sock", tmpdir);
	pid = start_fake(path, "normal");
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_connect(path, 5000, &q, &err);
		ok(r == 0, "fake: connect, greeting, qmp_capabilities (%s)", err ? err->msg : "");
	}
	if (r < 0) {
		end_fake(pid);
		return;
	}
	is_str(lxm_qmp_version(q), "9.2.3", "fake: version from the greeting");
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_status(q, 2000, &st, &err);
		ok(r == 0 && st == LXM_QMP_STATUS_PAUSED,
		   "fake: query-status skips another id's answer and gets its own (%s)",
		   err ? err->msg : "");
	}
	r = lxm_qmp_next_event(q, 0, &ev, NULL);
	ok(r == 1 && lxm_qmp_event_kind(ev) == LXM_QMP_EVENT_STOP,
	   "fake: the event that came before the answer was queued");
	json_decref(ev);
	ok(lxm_qmp_next_event(q, 0, &ev, NULL) == 0, "fake: no more events");
	{
		struct pollfd p = { .fd = lxm_qmp_fd(q), .events = POLLIN };

		ok(lxm_qmp_execute(q, "emit-later", NULL, 2000, NULL, NULL) == 0 &&
			   lxm_qmp_next_event(q, 0, &ev, NULL) == 0,
		   "fake: no event before QEMU sends one");
		ok(poll(&p, 1, 5000) == 1 && lxm_qmp_read_events(q, NULL) == 0 &&
			   lxm_qmp_next_event(q, 0, &ev, NULL) == 1 &&
			   lxm_qmp_event_kind(ev) == LXM_QMP_EVENT_SHUTDOWN &&
			   json_is_true(json_object_get(json_object_get(ev, "data"), "guest")),
		   "fake: an event between commands: poll, read_events, next_event");
		json_decref(ev);
		ev = NULL;
		ok(lxm_qmp_read_events(q, NULL) == 0 && lxm_qmp_next_event(q, 0, &ev, NULL) == 0,
		   "fake: read_events with nothing there does not block");
	}
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_execute(q, "boom", NULL, 2000, NULL, &err);
		ok(r == -EIO && err && streq(err->msg, "qmp 'boom': GenericError: it broke"),
		   "fake: QEMU's error names the command, class and text (%s)",
		   err ? err->msg : "");
	}
	{
		_cleanup_error_ struct lxm_error *err = NULL;
		uint64_t t0 = lxm_monotonic_ms();

		r = lxm_qmp_execute(q, "slow", NULL, 300, NULL, &err);
		ok(r == -ETIMEDOUT && err && strstr(err->msg, "qmp 'slow': no answer") &&
			   lxm_monotonic_ms() - t0 < 2000,
		   "fake: an unanswered command times out (%s)", err ? err->msg : "");
	}
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_execute(q, "anything", NULL, 2000, &res, &err);
		ok(r == 0 && json_is_object(res) && !json_object_get(res, "late"),
		   "fake: the late answer of the timed-out command is not taken for the next (%s)",
		   err ? err->msg : "");
		json_decref(res);
		res = NULL;
	}
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_execute(q, "neither", NULL, 2000, NULL, &err);
		ok(r == -EPROTO && err && strstr(err->msg, "neither return nor error"),
		   "fake: an answer without return or error is a protocol error (%s)",
		   err ? err->msg : "");
	}
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_execute(q, "anything", NULL, 2000, NULL, &err);
		ok(r == -ENOTCONN && err && strstr(err->msg, "closed"),
		   "fake: a broken connection refuses later commands at once (%s)",
		   err ? err->msg : "");
	}
	lxm_qmp_close(q);
	end_fake(pid);

	/* Garbage in an answer; quit without an answer. */
	pid = start_fake(path, "normal");
	q = NULL;
	r = lxm_qmp_connect(path, 5000, &q, NULL);
	ok(r == 0, "fake: connect again");
	if (r == 0) {
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_execute(q, "garbage", NULL, 2000, NULL, &err);
		ok(r == -EPROTO && err && strstr(err->msg, "qmp 'garbage'") &&
			   strstr(err->msg, "not a QMP message: '[1, 2, 3]'"),
		   "fake: a line that is not an object is a clean error (%s)", err ? err->msg : "");
		lxm_qmp_close(q);
	}
	end_fake(pid);

	pid = start_fake(path, "normal");
	q = NULL;
	r = lxm_qmp_connect(path, 5000, &q, NULL);
	if (r == 0) {
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_quit(q, 2000, &err);
		ok(r == 0, "fake: quit counts a closed connection as done (%s)",
		   err ? err->msg : "");
		lxm_qmp_close(q);
	} else {
		ok(0, "fake: connect for quit");
	}
	end_fake(pid);
}

/* Connecting to a fake server in mode must fail with -want and a message containing text. */
static void connect_fails(const char *mode, int want, const char *text, const char *what)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_qmp *q = NULL;
	char path[256];
	uint64_t t0;
	pid_t pid;
	int r;

	snprintf(path, sizeof(path), "%s/%s.sock", tmpdir, mode);
	pid = start_fake(path, mode);
	t0 = lxm_monotonic_ms();
	r = lxm_qmp_connect(path, 500, &q, &err);
	ok(r == -want && q == NULL && err && strstr(err->msg, text) &&
		   lxm_monotonic_ms() - t0 < 3000,
	   "%s (%s)", what, err ? err->msg : "");
	end_fake(pid);
}

static void test_connect_errors(void)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	struct lxm_qmp *q = NULL;
	char path[256];
	uint64_t t0;
	int r, lfd;

	connect_fails("silent", ETIMEDOUT, "no greeting from QEMU within 500 ms",
		      "a socket that never answers: connect times out");
	connect_fails("garbage", EPROTO, "not a QMP message: 'hello, I am not QEMU'",
		      "garbage instead of a greeting: a clean error");
	connect_fails("long", EPROTO, "longer than", "an endless line: refused at the cap");
	connect_fails("not-greeting", EPROTO, "not a QMP greeting",
		      "a JSON line that is not a greeting");

	snprintf(path, sizeof(path), "%s/none.sock", tmpdir);
	t0 = lxm_monotonic_ms();
	r = lxm_qmp_connect(path, 200, &q, &err);
	ok(r == -ETIMEDOUT && err && strstr(err->msg, "did not listen within 200 ms") &&
		   lxm_monotonic_ms() - t0 >= 200,
	   "a socket that never appears: retried until the deadline (%s)", err ? err->msg : "");
	lxm_error_free(TAKE_PTR(err));

	/* A socket file with no listener (QEMU died and left it): refused until the deadline. */
	snprintf(path, sizeof(path), "%s/dead.sock", tmpdir);
	lfd = listen_at(path);
	close(lfd);
	r = lxm_qmp_connect(path, 200, &q, &err);
	ok(r == -ETIMEDOUT && err && strstr(err->msg, "Connection refused"),
	   "a dead socket: the last cause is named (%s)", err ? err->msg : "");
}

static void test_names(void)
{
	json_t *e = json_pack("{s:s}", "event", "SHUTDOWN");
	json_t *o = json_pack("{s:s}", "event", "BLOCK_JOB_READY");

	ok(lxm_qmp_event_kind(e) == LXM_QMP_EVENT_SHUTDOWN, "SHUTDOWN event");
	ok(lxm_qmp_event_kind(o) == LXM_QMP_EVENT_OTHER, "other event");
	ok(lxm_qmp_event_kind(NULL) == _LXM_QMP_EVENT_INVALID, "no event");
	ok(lxm_qmp_status_from_string("prelaunch") == LXM_QMP_STATUS_PRELAUNCH &&
		   lxm_qmp_status_from_string("inmigrate") == LXM_QMP_STATUS_OTHER &&
		   streq(lxm_qmp_status_to_string(LXM_QMP_STATUS_GUEST_PANICKED), "guest-panicked"),
	   "status names");
	json_decref(e);
	json_decref(o);
}

/* --- a real QEMU ------------------------------------------------------------------------ */

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Waits for the next event of kind (others are skipped). */
static bool wait_event(struct lxm_qmp *q, enum lxm_qmp_event kind, int timeout_ms, json_t **ret)
{
	uint64_t deadline = lxm_monotonic_ms() + (uint64_t)timeout_ms;

	while (lxm_monotonic_ms() < deadline) {
		json_t *ev = NULL;
		int r = lxm_qmp_next_event(q, (int)(deadline - lxm_monotonic_ms()), &ev, NULL);

		if (r <= 0)
			return false;
		if (lxm_qmp_event_kind(ev) == kind) {
			if (ret)
				*ret = ev;
			else
				json_decref(ev);
			return true;
		}
		json_decref(ev);
	}
	return false;
}

/* Reads the pty master until text shows up or timeout_ms passes. */
static bool console_shows(int master, const char *text, int timeout_ms)
{
	static char seen[65536];
	static size_t len;
	uint64_t deadline = lxm_monotonic_ms() + (uint64_t)timeout_ms;

	while (lxm_monotonic_ms() < deadline) {
		struct pollfd p = { .fd = master, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(master, seen + len, sizeof(seen) - 1 - len);
		if (n <= 0)
			continue;
		len += (size_t)n;
		seen[len] = '\0';
		if (strstr(seen, text))
			return true;
	}
	return false;
}

static bool qemu_installed(void)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *copy = strdup(path ? path : "/usr/bin:/bin");

	for (char *s = copy, *dir; (dir = strsep(&s, ":"));) {
		char p[4096];

		snprintf(p, sizeof(p), "%s/%s", dir, LXM_QEMU_BINARY);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

static void test_real_qemu(void)
{
	char disk[256], qmp_path[256], agent[256], pidfile[256], log[256], buf[64];
	struct lxm_qemu_vm vm = {
		.name = "qmptest",
		.uuid = "6d1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
		.vcpus = 2,
		.memory_mib = 256,
		.accel = LXM_QEMU_ACCEL_TCG,
		.root = { .path = disk, .format = LXM_QEMU_DISK_RAW },
		.qmp_socket = qmp_path,
		.agent_socket = agent,
		.pidfile = pidfile,
		.paused = true,
	};
	_cleanup_strv_ char **argv = NULL;
	_cleanup_free_ struct lxm_qmp_cpu *cpus = NULL;
	struct lxm_qmp_memory mem;
	struct lxm_qmp *q = NULL;
	enum lxm_qmp_status st = _LXM_QMP_STATUS_INVALID;
	size_t n_cpus = 0;
	uint64_t t0, t_qmp;
	int master, slave, r, status = -1;
	json_t *ev = NULL;
	pid_t pid;

	if (!qemu_installed()) {
		printf("# SKIP real QEMU tests: %s is not installed (scripts/install-deps)\n",
		       LXM_QEMU_BINARY);
		return;
	}
	snprintf(disk, sizeof(disk), "%s/root.img", tmpdir);
	snprintf(qmp_path, sizeof(qmp_path), "%s/qmp.sock", tmpdir);
	snprintf(agent, sizeof(agent), "%s/agent.sock", tmpdir);
	snprintf(pidfile, sizeof(pidfile), "%s/qemu.pid", tmpdir);
	snprintf(log, sizeof(log), "%s/qemu.log", tmpdir);
	{
		int fd = open(disk, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

		ok(fd >= 0 && ftruncate(fd, 16 << 20) == 0, "a 16 MiB raw disk");
		close(fd);
	}
	/* The console as the monitor would hold it: a pty, QEMU gets the slave. */
	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	ok(master >= 0 && unlockpt(master) == 0, "console pty");
	slave = open(ptsname(master), O_RDWR | O_NOCTTY); /* inherited: no O_CLOEXEC */
	vm.console_fd = slave;
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qemu_argv(&vm, &argv, &err);
		ok(r == 0, "command line for a paused TCG VM without a kernel (%s)",
		   err ? err->msg : "");
	}
	if (r < 0)
		return;

	t0 = lxm_monotonic_ms();
	pid = fork();
	if (pid == 0) {
		int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		dup2(lfd, 1);
		dup2(lfd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(slave);
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_connect(qmp_path, 20000, &q, &err);
		t_qmp = lxm_monotonic_ms() - t0;
		ok(r == 0, "QMP connected to QEMU %s in %llu ms (%s)", q ? lxm_qmp_version(q) : "?",
		   (unsigned long long)t_qmp, err ? err->msg : "");
	}
	if (r < 0) {
		_cleanup_free_ char *text = NULL;

		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		if (lxm_read_file(log, &text, NULL) == 0)
			printf("# QEMU said: %s\n", text);
		close(master);
		return;
	}
	printf("# QEMU %s: QMP answering %llu ms after fork, RSS %ld KiB (256 MiB guest, TCG, "
	       "paused)\n",
	       lxm_qmp_version(q), (unsigned long long)t_qmp, rss_kib(pid));

	ok(lxm_qmp_status(q, 5000, &st, NULL) == 0 && st == LXM_QMP_STATUS_PRELAUNCH,
	   "query-status: prelaunch (-S)");
	ok(lxm_qmp_cpus(q, 5000, &cpus, &n_cpus, NULL) == 0 && n_cpus == 2,
	   "query-cpus-fast: the 2 vCPUs asked for");
	if (n_cpus == 2) {
		char task[64];

		snprintf(task, sizeof(task), "/proc/%d/task/%d", (int)pid, cpus[1].thread_id);
		ok(cpus[0].index == 0 && cpus[1].index == 1 && access(task, F_OK) == 0,
		   "vCPU thread ids are QEMU's threads");
	}
	ok(lxm_qmp_memory(q, 5000, &mem, NULL) == 0 && mem.base == 256ULL << 20 &&
		   mem.plugged == 0 && !mem.balloon,
	   "memory: 256 MiB base, no balloon");
	{
		_cleanup_free_ char *text = NULL;

		snprintf(buf, sizeof(buf), "%d", (int)pid);
		ok(lxm_read_file(pidfile, &text, NULL) == 0 && strncmp(text, buf, strlen(buf)) == 0,
		   "pidfile holds QEMU's pid");
	}
	{
		struct stat s;

		ok(stat(agent, &s) == 0 && S_ISSOCK(s.st_mode), "agent socket listens");
	}

	ok(lxm_qmp_cont(q, 5000, NULL) == 0, "cont");
	ok(wait_event(q, LXM_QMP_EVENT_RESUME, 5000, NULL), "RESUME event");
	ok(lxm_qmp_status(q, 5000, &st, NULL) == 0 && st == LXM_QMP_STATUS_RUNNING,
	   "query-status: running");
	ok(console_shows(master, "SeaBIOS", 20000),
	   "the firmware's output reaches the console pty");
	printf("# RSS %ld KiB once running\n", rss_kib(pid));
	ok(lxm_qmp_stop(q, 5000, NULL) == 0, "stop");
	ok(wait_event(q, LXM_QMP_EVENT_STOP, 5000, NULL), "STOP event");
	ok(lxm_qmp_status(q, 5000, &st, NULL) == 0 && st == LXM_QMP_STATUS_PAUSED,
	   "query-status: paused");
	ok(lxm_qmp_cont(q, 5000, NULL) == 0 && lxm_qmp_status(q, 5000, &st, NULL) == 0 &&
		   st == LXM_QMP_STATUS_RUNNING,
	   "cont again: running");
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_execute(q, "no-such-command", NULL, 5000, NULL, &err);
		ok(r == -EIO && err && strstr(err->msg, "qmp 'no-such-command': CommandNotFound"),
		   "an unknown command: QEMU's class in the error (%s)", err ? err->msg : "");
	}
	{
		_cleanup_error_ struct lxm_error *err = NULL;
		_cleanup_json_ json_t *args = json_pack("{s:i}", "bogus", 1);

		r = lxm_qmp_execute(q, "stop", args, 5000, NULL, &err);
		ok(r == -EIO && err && strstr(err->msg, "qmp 'stop': GenericError:"),
		   "bad arguments: GenericError named (%s)", err ? err->msg : "");
	}
	ok(lxm_qmp_powerdown(q, 5000, NULL) == 0, "system_powerdown");
	ok(wait_event(q, LXM_QMP_EVENT_POWERDOWN, 5000, NULL), "POWERDOWN event");
	usleep(500 * 1000);
	ok(waitpid(pid, &status, WNOHANG) == 0, "no guest OS: QEMU still runs after the button");
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_quit(q, 5000, &err);
		ok(r == 0, "quit (%s)", err ? err->msg : "");
	}
	{
		/* QEMU may exit before its SHUTDOWN event went out (seen about once in 25 runs on a
		 * busy machine): the connection then ends without it. An event that does come must
		 * give the reason; neither within the time is a failure. */
		uint64_t deadline = lxm_monotonic_ms() + 5000;
		int er = 0;

		ev = NULL;
		while (!ev && lxm_monotonic_ms() < deadline &&
		       (er = lxm_qmp_next_event(q, (int)(deadline - lxm_monotonic_ms()), &ev,
						NULL)) > 0)
			if (lxm_qmp_event_kind(ev) != LXM_QMP_EVENT_SHUTDOWN) {
				json_decref(ev);
				ev = NULL;
			}
		ok(ev ? streq(json_string_value(
				      json_object_get(json_object_get(ev, "data"), "reason"))
				      ?: "",
			      "host-qmp-quit")
		      : er < 0,
		   "after quit: a SHUTDOWN event with reason host-qmp-quit, or the end of the "
		   "connection (%s)",
		   ev	    ? "the event"
		   : er < 0 ? "the end, without the event"
			    : "neither in 5 s");
		json_decref(ev);
	}
	{
		uint64_t deadline = lxm_monotonic_ms() + 10000;
		pid_t w = 0;

		while (w == 0 && lxm_monotonic_ms() < deadline) {
			w = waitpid(pid, &status, WNOHANG);
			if (w == 0)
				usleep(20 * 1000);
		}
		if (w == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		}
		ok(w == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "QEMU exited with status 0 after quit");
	}
	ok(access(qmp_path, F_OK) < 0 && access(agent, F_OK) < 0 && access(pidfile, F_OK) < 0,
	   "QMP and agent sockets and the pidfile are gone");
	{
		_cleanup_error_ struct lxm_error *err = NULL;

		r = lxm_qmp_execute(q, "query-status", NULL, 1000, NULL, &err);
		ok(r < 0 && err && strstr(err->msg, "query-status"),
		   "a command after QEMU exited fails naming it (%s)", err ? err->msg : "");
	}
	lxm_qmp_close(q);
	close(master);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	test_names();
	test_fake_protocol();
	test_connect_errors();
	test_real_qemu();
	lxm_rm_tree(tmpdir);
	return tap_done();
}
