/* The real lxm-agent on a unix socket (its --listen mode stands in for the VM's chardev), driven
 * by lxmd's agent client on a libuv loop: exec streams, exit codes, stdin with flow control, a
 * pty, signals, file put/get, a host that goes and comes back, and garbage on the wire. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "agent-test-util.h"
#include "tap.h"
#include "vm/agent-client.h"

#define BIG (1024 * 1024)

static uv_loop_t loop;
static char dir[64], sock[128];
static pid_t agent_pid;

/* What a session saw. */
struct run {
	bool done;		    /* done was called */
	bool ready;		    /* connect: ready came without error */
	struct lxm_agent_exit exit; /* how the command ended */
	int errnum;		    /* the error's errno, 0 for none */
	char msg[512];		    /* the error's message */
	char *out[3];		    /* what came on streams 0 (file data), 1 and 2 */
	size_t len[3];		    /* their lengths */
	uint32_t pid;		    /* from started */
	struct lxm_agent_file fi;   /* from file */
	bool lost;		    /* the connection was lost */
};

/* Runs the loop until *flag or timeout_ms; whether the flag came. */
static bool run_until(bool *flag, uint64_t timeout_ms)
{
	return agent_test_run_until(&loop, flag, timeout_ms);
}

static void on_ready(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	struct run *r = ud;

	r->done = true;
	r->ready = !err;
	if (err)
		snprintf(r->msg, sizeof(r->msg), "%s", err->msg);
}

static void on_lost(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	((struct run *)ud)->lost = true;
}

static void on_started(struct lxm_agent_session *s, uint32_t pid, void *ud)
{
	((struct run *)ud)->pid = pid;
}

static void on_output(struct lxm_agent_session *s, int stream, const void *buf, size_t len,
		      void *ud)
{
	struct run *r = ud;

	r->out[stream] = realloc(r->out[stream], r->len[stream] + len + 1);
	memcpy(r->out[stream] + r->len[stream], buf, len);
	r->len[stream] += len;
	r->out[stream][r->len[stream]] = 0;
}

static void on_file(struct lxm_agent_session *s, const struct lxm_agent_file *fi, void *ud)
{
	struct run *r = ud;

	r->fi = *fi;
	r->fi.path = NULL;
	r->fi.target = strdup(fi->target);
}

static void on_done(struct lxm_agent_session *s, const struct lxm_agent_exit *exit,
		    struct lxm_error *err, void *ud)
{
	struct run *r = ud;

	r->done = true;
	if (exit)
		r->exit = *exit;
	if (err) {
		r->errnum = err->errnum;
		snprintf(r->msg, sizeof(r->msg), "%s", err->msg);
	}
}

static void run_clear(struct run *r)
{
	for (int i = 0; i < 3; i++)
		free(r->out[i]);
	free(r->fi.target);
	*r = (struct run){ 0 };
}

/* The callbacks above, recording into r. */
#define CBS(r)                                                                                     \
	(&(struct lxm_agent_cbs){ .started = on_started,                                           \
				  .output = on_output,                                             \
				  .file = on_file,                                                 \
				  .done = on_done,                                                 \
				  .ud = (r) })

static struct lxm_agent *connect_agent(struct run *r)
{
	struct lxm_agent_conn_opts o = {
		.path = sock, .timeout_ms = 5000, .ready = on_ready, .lost = on_lost, .ud = r
	};
	struct lxm_error *err = NULL;
	struct lxm_agent *a = NULL;

	if (lxm_agent_connect(&loop, &o, &a, &err) < 0) {
		printf("# connect: %s\n", err->msg);
		lxm_error_free(err);
		return NULL;
	}
	if (!run_until(&r->done, 6000) || !r->ready) {
		printf("# ready: %s\n", r->msg);
		lxm_agent_close(a);
		return NULL;
	}
	return a;
}

static struct lxm_agent_session *exec(struct lxm_agent *a, struct run *r, uint32_t flags,
				      char **argv)
{
	static char *env[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"TERM=dumb",
			       NULL };
	struct lxm_agent_exec_req x = {
		.flags = flags, .rows = 24, .cols = 80, .cwd = (char *)"", .argv = argv, .env = env
	};
	struct lxm_agent_session *s = NULL;
	struct lxm_error *err = NULL;

	if (lxm_agent_exec(a, &x, CBS(r), &s, &err) < 0) {
		printf("# exec: %s\n", err->msg);
		lxm_error_free(err);
		return NULL;
	}
	return s;
}

#define OUT_ERR (LXM_AGENT_EXEC_STDOUT | LXM_AGENT_EXEC_STDERR)

static void test_streams(struct lxm_agent *a)
{
	char *argv[] = { (char *)"sh", (char *)"-c", (char *)"echo out; echo err >&2; exit 3",
			 NULL };
	char *missing[] = { (char *)"/no/such/command", NULL };
	struct run r = { 0 };
	struct utsname u;

	uname(&u);
	is_str(lxm_agent_kernel(a), u.release, "HELLO carries the (guest) kernel release");
	ok(exec(a, &r, OUT_ERR, argv) && run_until(&r.done, 5000), "exec sh ends");
	is_str(r.out[1], "out\n", "stdout comes on stream 1");
	is_str(r.out[2], "err\n", "stderr comes on stream 2");
	ok(!r.exit.signaled && r.exit.value == 3 && !r.errnum, "exit code 3 (got %d%s)",
	   r.exit.value, r.exit.signaled ? ", signaled" : "");
	ok(r.pid > 0, "STARTED gave the pid");
	run_clear(&r);

	ok(exec(a, &r, OUT_ERR, missing) && run_until(&r.done, 5000) && r.errnum == ENOENT &&
		   strstr(r.msg, "/no/such/command"),
	   "a missing command is an error naming it (%s)", r.msg);
	run_clear(&r);
}

static void test_stdin(struct lxm_agent *a)
{
	char *argv[] = { (char *)"cat", NULL };
	struct lxm_agent_session *s;
	struct run r = { 0 };
	char *big = malloc(BIG);
	size_t pending;

	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)('a' + (i * 7 + i / 4096) % 26);
	s = exec(a, &r, LXM_AGENT_EXEC_STDIN | OUT_ERR, argv);
	ok(s && lxm_agent_stdin(s, big, BIG) == 0, "1 MiB queued for cat's stdin");
	pending = s ? lxm_agent_session_pending(s) : 0;
	ok(pending >= BIG - LXM_AGENT_WINDOW,
	   "the client holds back what is past the window (%zu bytes pending)", pending);
	ok(s && lxm_agent_stdin_eof(s) == 0, "stdin EOF queued");
	ok(run_until(&r.done, 20000), "cat ends");
	ok(r.len[1] == BIG && r.out[1] && memcmp(r.out[1], big, BIG) == 0,
	   "cat echoed 1 MiB exactly (%zu bytes)", r.len[1]);
	ok(r.exit.value == 0 && !r.exit.signaled, "cat exits 0");
	run_clear(&r);
	free(big);
}

static void test_pty(struct lxm_agent *a)
{
	char *argv[] = { (char *)"sh", (char *)"-c",
			 (char *)"tty; stty size; read x; stty size; exit 5", NULL };
	struct lxm_agent_session *s;
	struct run r = { 0 };

	bool never = false;

	s = exec(a, &r, LXM_AGENT_EXEC_PTY | LXM_AGENT_EXEC_STDIN | OUT_ERR, argv);
	for (int i = 0; i < 250 && s && !r.done && !(r.out[1] && strstr(r.out[1], "24 80")); i++)
		run_until(&never, 20);
	ok(r.out[1] && strstr(r.out[1], "/dev/pts/"), "tty names a pty");
	ok(r.out[1] && strstr(r.out[1], "24 80"), "the pty starts at 24x80");
	ok(s && !r.done && lxm_agent_resize(s, 40, 100) == 0 && lxm_agent_stdin(s, "go\n", 3) == 0,
	   "pty: resize and a line of input sent");
	ok(run_until(&r.done, 5000), "pty session ends");
	ok(r.out[1] && strstr(r.out[1], "40 100"), "RESIZE makes it 40x100");
	ok(r.len[2] == 0, "with a pty nothing comes on stream 2");
	ok(r.exit.value == 5, "exit code through the pty (%d)", r.exit.value);
	if (!r.out[1] || !strstr(r.out[1], "40 100") || !strstr(r.out[1], "24 80"))
		printf("# pty output: %s\n", r.out[1] ? r.out[1] : "(none)");
	run_clear(&r);
}

static void test_signal(struct lxm_agent *a)
{
	char *argv[] = { (char *)"sleep", (char *)"100", NULL };
	struct lxm_agent_session *s;
	struct run r = { 0 };
	bool started;

	s = exec(a, &r, OUT_ERR, argv);
	started = false;
	for (int i = 0; i < 100 && s && !r.pid; i++)
		run_until(&started, 20);
	ok(s && r.pid && lxm_agent_signal(s, SIGTERM) == 0, "SIGTERM sent to sleep");
	run_until(&r.done, 5000);
	ok(r.done && r.exit.signaled && r.exit.value == SIGTERM, "sleep ends by signal 15 (%s %d)",
	   r.exit.signaled ? "signal" : "code", r.exit.value);
	run_clear(&r);
}

static void test_files(struct lxm_agent *a)
{
	char path[256], missing[256], sub[256], link[256];
	struct lxm_agent_file fi = { .type = LXM_AGENT_FILE_REGULAR,
				     .mode = 0640,
				     .uid = 1234,
				     .gid = 5678,
				     .flags = LXM_AGENT_PUT_MODE | LXM_AGENT_PUT_UID |
					      LXM_AGENT_PUT_GID,
				     .target = (char *)"" };
	struct lxm_agent_session *s = NULL;
	struct lxm_error *err = NULL;
	struct run r = { 0 };
	size_t n = 300 * 1024;
	char *data = malloc(n);
	struct stat st;

	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 31 + 5);
	snprintf(path, sizeof(path), "%s/put-file", dir);
	fi.path = path;
	ok(lxm_agent_file_put(a, &fi, CBS(&r), &s, &err) == 0 &&
		   lxm_agent_put_write(s, data, n) == 0 && lxm_agent_put_end(s) == 0,
	   "put: 300 KiB sent");
	ok(run_until(&r.done, 5000) && !r.errnum, "put: the agent answers RESULT (%s)", r.msg);
	ok(stat(path, &st) == 0 && st.st_size == (off_t)n && (st.st_mode & 07777) == 0640 &&
		   st.st_uid == 1234 && st.st_gid == 5678,
	   "put: the file has its size, mode and owner");
	run_clear(&r);

	ok(lxm_agent_file_get(a, path, CBS(&r), &s, &err) == 0 && run_until(&r.done, 5000) &&
		   !r.errnum,
	   "get: done");
	ok(r.fi.type == LXM_AGENT_FILE_REGULAR && r.fi.mode == 0640 && r.fi.uid == 1234 &&
		   r.fi.gid == 5678 && r.fi.size == n,
	   "get: the header has type, mode, owner and size");
	ok(r.len[0] == n && memcmp(r.out[0], data, n) == 0, "get: the content round-trips");
	run_clear(&r);

	snprintf(missing, sizeof(missing), "%s/no-such-file", dir);
	ok(lxm_agent_file_get(a, missing, CBS(&r), &s, &err) == 0 && run_until(&r.done, 5000) &&
		   r.errnum == ENOENT && strstr(r.msg, missing),
	   "get of a missing file: ENOENT naming the path (%s)", r.msg);
	run_clear(&r);

	snprintf(sub, sizeof(sub), "%s/sub", dir);
	fi = (struct lxm_agent_file){ .type = LXM_AGENT_FILE_DIRECTORY,
				      .path = sub,
				      .target = (char *)"" };
	ok(lxm_agent_file_put(a, &fi, CBS(&r), &s, &err) == 0 && run_until(&r.done, 5000) &&
		   !r.errnum && stat(sub, &st) == 0 && S_ISDIR(st.st_mode) &&
		   (st.st_mode & 07777) == 0755,
	   "put of a directory makes it 0755");
	run_clear(&r);
	snprintf(link, sizeof(link), "%s/sub/link", dir);
	fi = (struct lxm_agent_file){ .type = LXM_AGENT_FILE_SYMLINK,
				      .path = link,
				      .target = (char *)"../put-file" };
	ok(lxm_agent_file_put(a, &fi, CBS(&r), &s, &err) == 0 && run_until(&r.done, 5000) &&
		   !r.errnum,
	   "put of a symlink");
	run_clear(&r);
	ok(lxm_agent_file_get(a, sub, CBS(&r), &s, &err) == 0 && run_until(&r.done, 5000) &&
		   r.fi.type == LXM_AGENT_FILE_DIRECTORY && r.len[0] == 5 &&
		   !memcmp(r.out[0], "link", 5),
	   "get of a directory lists its entry");
	run_clear(&r);
	ok(lxm_agent_file_get(a, link, CBS(&r), &s, &err) == 0 && run_until(&r.done, 5000) &&
		   r.fi.type == LXM_AGENT_FILE_SYMLINK && r.fi.target &&
		   !strcmp(r.fi.target, "../put-file"),
	   "get of a symlink gives its target");
	run_clear(&r);
	fi = (struct lxm_agent_file){ .type = LXM_AGENT_FILE_REGULAR,
				      .path = link,
				      .target = (char *)"" };
	ok(lxm_agent_file_put(a, &fi, CBS(&r), &s, &err) == 0 && lxm_agent_put_end(s) == 0 &&
		   run_until(&r.done, 5000) && r.errnum == ELOOP,
	   "a file is never written through a symlink (%s)", r.msg);
	run_clear(&r);
	unlink(link);
	rmdir(sub);
	unlink(path);
	free(data);
}

static bool pid_gone(pid_t pid, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (kill(pid, 0) < 0 && errno == ESRCH)
			return true;
		usleep(10000);
	}
	return false;
}

static struct lxm_agent *test_reconnect(struct lxm_agent *a)
{
	char *sleeper[] = { (char *)"sleep", (char *)"100", NULL };
	char *echo[] = { (char *)"echo", (char *)"again", NULL };
	struct run r = { 0 }, c = { 0 };
	bool never = false;
	pid_t pid;

	exec(a, &r, OUT_ERR, sleeper);
	for (int i = 0; i < 100 && !r.pid; i++)
		run_until(&never, 20);
	pid = (pid_t)r.pid;
	lxm_agent_close(a);
	ok(r.done && r.errnum == ECANCELED, "closing the connection ends its session (%s)", r.msg);
	uv_run(&loop, UV_RUN_NOWAIT);
	ok(pid > 0 && pid_gone(pid, 3000), "the agent killed the command of the host that left");
	run_clear(&r);
	a = connect_agent(&c);
	ok(a != NULL, "a new host connection gets HELLO again");
	if (!a)
		return NULL;
	ok(exec(a, &r, OUT_ERR, echo) && run_until(&r.done, 5000) && r.out[1] &&
		   !strcmp(r.out[1], "again\n"),
	   "and new sessions are served");
	run_clear(&r);
	return a;
}

/* Reads frames from a raw connection until one of type, or a timeout. */
static bool raw_expect(int fd, uint8_t type, uint32_t *errnum)
{
	static uint8_t buf[2 * LXM_AGENT_HDR_SIZE + 2 * LXM_AGENT_MAX_PAYLOAD];
	size_t len = 0, used;
	struct lxm_agent_frame f;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char *msg;
	int e;

	for (;;) {
		while (lxm_agent_frame_parse(buf, len, &f, &used) == 1) {
			if (f.type == type) {
				if (errnum && lxm_agent_error_decode(&f, &e, &msg) == 0) {
					*errnum = (uint32_t)e;
					free(msg);
				}
				return true;
			}
			memmove(buf, buf + used, len - used);
			len -= used;
		}
		if (poll(&p, 1, 3000) <= 0)
			return false;
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n <= 0)
			return false;
		len += (size_t)n;
	}
}

static void test_garbage(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_hello h = { 1, 1, 99, (char *)"", (char *)"" };
	char *echo[] = { (char *)"echo", (char *)"still here", NULL };
	struct lxm_agent *a;
	struct run c = { 0 }, r = { 0 };
	uint32_t errnum = 0;
	int fd, status;

	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "a raw connection to the agent");
	ok(raw_expect(fd, LXM_AGENT_HELLO, NULL), "the agent says HELLO first");
	ok(write(fd, "\x01\x02garbage that is no frame\n", 27) == 27, "garbage sent");
	raw_expect(fd, LXM_AGENT_ERROR, &errnum);
	ok(errnum == EBADMSG, "the agent answers garbage with ERROR on session 0 (errno %u)",
	   errnum);
	lxm_agent_hello_encode(&e, &h);
	ok(write(fd, "more junk", 9) == 9 && write(fd, e.data, e.len) == (ssize_t)e.len,
	   "more junk, then a HELLO");
	ok(raw_expect(fd, LXM_AGENT_HELLO, NULL), "the agent resynchronises on the HELLO");
	lxm_agent_enc_free(&e);
	close(fd);
	ok(waitpid(agent_pid, &status, WNOHANG) == 0, "the agent still runs");
	a = connect_agent(&c);
	ok(a && exec(a, &r, OUT_ERR, echo) && run_until(&r.done, 5000) && r.out[1] &&
		   !strcmp(r.out[1], "still here\n"),
	   "and serves the next host");
	run_clear(&r);
	if (a)
		lxm_agent_close(a);
}

static void test_no_agent(void)
{
	struct lxm_agent_conn_opts o = { .timeout_ms = 500, .ready = on_ready };
	char path[160];
	struct lxm_error *err = NULL;
	struct lxm_agent *a = NULL;
	struct run r = { 0 };
	uint64_t t0 = uv_now(&loop);

	snprintf(path, sizeof(path), "%s/nobody", dir);
	o.path = path;
	o.ud = &r;
	ok(lxm_agent_connect(&loop, &o, &a, &err) == 0, "connect to a socket nobody serves");
	ok(run_until(&r.done, 3000) && !r.ready && strstr(r.msg, "waiting for the VM agent"),
	   "it gives up at the deadline with a clear status (%s)", r.msg);
	uv_update_time(&loop);
	ok(uv_now(&loop) - t0 < 2000, "within its deadline");
	lxm_agent_close(a);
}

/* A fake agent that answers HELLO and then sends garbage: lxmd's side must not trust a guest. */
static void test_bad_guest(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct lxm_agent_conn_opts o = { .timeout_ms = 5000, .ready = on_ready, .lost = on_lost };
	struct lxm_agent_hello h = { 1, 1, 0, (char *)"x", (char *)"fake" };
	struct lxm_agent_enc e = { 0 };
	struct lxm_agent_frame f;
	struct lxm_error *err = NULL;
	struct lxm_agent *a = NULL;
	struct run r = { 0 };
	uint8_t buf[4096];
	size_t len = 0, used;
	int lfd, fd = -1;
	ssize_t n;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake.sock", dir);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0) {
		ok(0, "fake agent socket");
		return;
	}
	o.path = sa.sun_path;
	o.ud = &r;
	ok(lxm_agent_connect(&loop, &o, &a, &err) == 0, "connect to a fake agent");
	/* The loop runs the client's connect; then the fake agent reads its HELLO. */
	for (int i = 0; i < 100 && fd < 0; i++) {
		bool never = false;

		run_until(&never, 10);
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	}
	for (int i = 0; i < 200 && fd >= 0; i++) {
		bool never = false;

		run_until(&never, 10);
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n > 0)
			len += (size_t)n;
		if (lxm_agent_frame_parse(buf, len, &f, &used) == 1)
			break;
	}
	ok(len && lxm_agent_frame_parse(buf, len, &f, &used) == 1 && f.type == LXM_AGENT_HELLO &&
		   lxm_agent_hello_decode(&f, &h) == 0,
	   "the client says HELLO first");
	lxm_agent_hello_clear(&h);
	h = (struct lxm_agent_hello){ 1, 1, 0, (char *)"x", (char *)"fake" };
	h.nonce = 1;
	lxm_agent_hello_encode(&e, &h);
	ok(fd >= 0 && write(fd, e.data, e.len) == (ssize_t)e.len, "the fake agent answers");
	ok(run_until(&r.done, 3000) && r.ready && !strcmp(lxm_agent_kernel(a), "fake"),
	   "the client is ready");
	ok(write(fd, "LA\x06\x00\x00\x00\x00\x01\xff\xff\xff\xff", 12) == 12,
	   "the fake agent sends a frame over the length cap");
	ok(run_until(&r.lost, 3000), "the client drops the connection as lost");
	lxm_agent_close(a);
	lxm_agent_enc_free(&e);
	if (fd >= 0)
		close(fd);
	close(lfd);
	unlink(sa.sun_path);
	run_clear(&r);
}

int main(void)
{
	struct lxm_agent *a;
	struct run c = { 0 };
	int status;

	if (!agent_test_init(&loop, dir, sizeof(dir), "test-agent"))
		return 1;
	snprintf(sock, sizeof(sock), "%s/agent.sock", dir);
	agent_pid = agent_test_start(sock);
	ok(agent_pid > 0 && access(sock, F_OK) == 0, "lxm-agent listens on %s", sock);
	a = connect_agent(&c);
	ok(a != NULL, "the client connects and the agent says HELLO");
	if (a) {
		test_streams(a);
		test_stdin(a);
		test_pty(a);
		test_signal(a);
		if (geteuid() == 0)
			test_files(a);
		else
			printf("# skipping file tests: they set owners (not root)\n");
		a = test_reconnect(a);
		if (a)
			lxm_agent_close(a);
		test_garbage();
	}
	test_no_agent();
	test_bad_guest();
	kill(agent_pid, SIGTERM);
	waitpid(agent_pid, &status, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	ok(uv_loop_close(&loop) == 0, "the loop closes cleanly");
	unlink(sock);
	rmdir(dir);
	return tap_done();
}
