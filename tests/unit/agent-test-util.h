/* What the unit tests that drive the real lxm-agent share (test-agent.c, test-agent-pool.c): the
 * agent started in its --listen mode, and a libuv loop run until a flag is set. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

#define AGENT LXM_BUILDDIR "/lxmd/vm/agent/lxm-agent"

/* Ignores SIGPIPE, makes the test's temp dir (/tmp/<name>-XXXXXX, into dir of size bytes) and
 * initialises loop; false if the dir cannot be made. */
static inline bool agent_test_init(uv_loop_t *loop, char *dir, size_t size, const char *name)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, size, "/tmp/%s-XXXXXX", name);
	if (!mkdtemp(dir))
		return false;
	uv_loop_init(loop);
	return true;
}

static inline void agent_test_on_timer(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Runs loop until *flag or timeout_ms; whether the flag came. */
static inline bool agent_test_run_until(uv_loop_t *loop, bool *flag, uint64_t timeout_ms)
{
	uv_timer_t t;
	bool late = false;

	uv_timer_init(loop, &t);
	t.data = &late;
	uv_timer_start(&t, agent_test_on_timer, timeout_ms, 0);
	while (!*flag && !late)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return *flag;
}

/* Starts lxm-agent --listen sock and waits (up to 5 s) for the socket to appear; its pid. */
static inline pid_t agent_test_start(const char *sock)
{
	pid_t pid = fork();

	if (pid == 0) {
		/* The agent goes with the test, however the test ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(AGENT, "lxm-agent", "--listen", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && access(sock, F_OK) < 0; i++)
		usleep(10000);
	return pid;
}
