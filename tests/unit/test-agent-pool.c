/* lxmd's pool of VM agent connections (vm/agent-pool.h) against the real lxm-agent on
 * <rundir>/<vm>/agent.sock: the wait and its timeout message, waiters sharing one connection, a
 * ready connection answering at once, a cancelled wait, forget, a lost connection opened again,
 * and the end at shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "agent-test-util.h"
#include "daemon.h"
#include "tap.h"
#include "vm/agent-pool.h"

static uv_loop_t loop;
static char dir[64], vmdir[128], sock[192];

/* What one wait saw. */
struct got {
	bool called;	     /* the callback ran */
	struct lxm_agent *a; /* the connection */
	char msg[512];	     /* the error, "" for none */
};

static void on_agent(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	struct got *g = ud;

	g->called = true;
	g->a = a;
	snprintf(g->msg, sizeof(g->msg), "%s", err && err->msg ? err->msg : "");
}

/* Runs the loop until *flag or timeout_ms; whether the flag came. */
static bool run_until(bool *flag, uint64_t timeout_ms)
{
	return agent_test_run_until(&loop, flag, timeout_ms);
}

static void stop_agent(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	unlink(sock);
}

int main(void)
{
	struct lxmd d = { .loop = &loop };
	struct lxm_error *err = NULL;
	struct lxmd_vm_agent_wait *w1 = NULL, *w2 = NULL, *w3 = NULL;
	struct got g1 = { 0 }, g2 = { 0 }, g3 = { 0 }, g4 = { 0 };
	struct lxm_agent *first;
	uint64_t t0;
	pid_t pid;

	if (!agent_test_init(&loop, dir, sizeof(dir), "test-agent-pool"))
		return 1;
	snprintf(vmdir, sizeof(vmdir), "%s/v1", dir);
	snprintf(sock, sizeof(sock), "%s/agent.sock", vmdir);
	mkdir(vmdir, 0700);
	d.cfg.rundir = dir;

	/* No agent: the wait ends at the deadline with a message that says what to check. */
	setenv("LXMD_VM_AGENT_TIMEOUT_MS", "600", 1);
	ok(lxmd_vm_agent_timeout_ms() == 600, "LXMD_VM_AGENT_TIMEOUT_MS sets the deadline");
	t0 = uv_now(&loop);
	ok(lxmd_vm_agent_get(&d, "v1", on_agent, &g1, &w1, &err) == 0 && w1, "a wait begins");
	ok(run_until(&g1.called, 5000) && !g1.a, "it ends without an agent");
	uv_update_time(&loop);
	ok(uv_now(&loop) - t0 >= 550, "... at the deadline (%llu ms)",
	   (unsigned long long)(uv_now(&loop) - t0));
	ok(strstr(g1.msg, "did not answer within") &&
		   strstr(g1.msg, "is lxm-agent running in the guest?") && strstr(g1.msg, sock),
	   "the error names the socket and the agent: %s", g1.msg);

	/* Two waiters before the agent answers share one connection. */
	setenv("LXMD_VM_AGENT_TIMEOUT_MS", "10000", 1);
	memset(&g1, 0, sizeof(g1));
	ok(lxmd_vm_agent_get(&d, "v1", on_agent, &g1, &w1, &err) == 0 && w1, "first waiter");
	ok(lxmd_vm_agent_get(&d, "v1", on_agent, &g2, &w2, &err) == 0 && w2, "second waiter");
	ok(lxmd_vm_agent_get(&d, "v1", on_agent, &g3, &w3, &err) == 0 && w3, "third waiter");
	lxmd_vm_agent_wait_cancel(w3);
	pid = agent_test_start(sock);
	ok(pid > 0 && access(sock, F_OK) == 0, "the agent listens (the guest booted)");
	ok(run_until(&g2.called, 5000) && g1.called, "both waiters hear of it");
	ok(g1.a && g1.a == g2.a && !*g1.msg && lxm_agent_is_ready(g1.a),
	   "... with the same ready connection");
	ok(!g3.called, "a cancelled wait is not called");
	first = g1.a;

	/* Once ready, the answer is immediate. */
	w1 = (void *)1;
	ok(lxmd_vm_agent_get(&d, "v1", on_agent, &g4, &w1, &err) == 0 && !w1 && g4.called &&
		   g4.a == first,
	   "a ready connection answers before get returns");

	/* The agent goes away: the connection is lost and opened again for the next request. */
	stop_agent(pid);
	/* (first is freed with its pool entry: only the pool is asked.) */
	for (int i = 0; i < 50 && lxmd_vm_agent_held(&d, "v1"); i++)
		uv_run(&loop, UV_RUN_NOWAIT), usleep(10000);
	ok(!lxmd_vm_agent_held(&d, "v1"), "the lost connection is let go");
	pid = agent_test_start(sock);
	memset(&g1, 0, sizeof(g1));
	ok(lxmd_vm_agent_get(&d, "v1", on_agent, &g1, &w1, &err) == 0, "a request after the loss");
	ok(run_until(&g1.called, 5000) && g1.a && !*g1.msg && lxm_agent_is_ready(g1.a),
	   "... gets a new connection");

	/* The VM stops: waiters and sessions end with an error; the next request reconnects. */
	lxmd_vm_agent_forget(&d, "v1");
	memset(&g2, 0, sizeof(g2));
	ok(lxmd_vm_agent_get(&d, "v1", on_agent, &g2, &w2, &err) == 0 && w2,
	   "after forget, a request waits for a new connection");
	lxmd_vm_agent_forget(&d, "v1");
	ok(g2.called && !g2.a && strstr(g2.msg, "the VM stopped"), "forget tells waiters: %s",
	   g2.msg);

	/* Shutdown ends pending waits. */
	memset(&g3, 0, sizeof(g3));
	ok(lxmd_vm_agent_get(&d, "v1", on_agent, &g3, &w3, &err) == 0 && w3, "a pending wait");
	lxmd_vm_agents_fini(&d);
	ok(g3.called && !g3.a && strstr(g3.msg, "shutting down"), "shutdown tells it: %s", g3.msg);
	ok(d.vm_agents == NULL, "the pool is gone");

	stop_agent(pid);
	uv_run(&loop, UV_RUN_DEFAULT);
	ok(uv_loop_close(&loop) == 0, "every handle closed");
	rmdir(vmdir);
	rmdir(dir);
	lxm_error_free(err);
	return tap_done();
}
