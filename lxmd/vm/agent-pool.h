/* One connection to the agent of each running VM (agent-client.h), shared by every exec and file
 * session of that VM: opened on the first request, kept while it stands, opened again after it
 * was lost, closed when the VM stops (lxmd_vm_agent_forget()) or lxmd shuts down.
 *
 * The connection lives at <rundir>/<name>/agent.sock, QEMU's virtio-serial port
 * org.lxm.agent.0 as a unix socket server. While the agent has not answered (the guest boots),
 * requests wait for it up to lxmd_vm_agent_timeout_ms(); the environment variable
 * LXMD_VM_AGENT_TIMEOUT_MS overrides the default of 120 s (tests use a short one). */
#pragma once

#include <stdbool.h>

#include <stdint.h>

#include "error.h"
#include "vm/agent-client.h"

struct lxmd;
struct lxmd_vm_agent_wait;

/* Called once: a is the ready connection (err NULL), or err says why there is none. The waiter
 * is gone when this runs. */
typedef void (*lxmd_vm_agent_cb)(struct lxm_agent *a, struct lxm_error *err, void *ud);

/* Whether exec and file requests may go to VM name's agent: 0 when it runs, else as
 * lxmd_instance_running() says. LXMD_TEST_VM_AGENT_STOPPED=1 (tests only: a host-side lxm-agent
 * stands in for the guest) lets them reach the agent socket of a VM that lxmd did not start. */
int lxmd_vm_agent_check_running(struct lxmd *d, const char *name, struct lxm_error **err);
/* How long a request waits for the agent's HELLO. */
uint64_t lxmd_vm_agent_timeout_ms(void);

/* The agent of VM name: cb runs at once (before this returns) when the connection is ready,
 * else when the agent answers or the wait times out. *ret (may be NULL) is the pending wait,
 * NULL when cb already ran. Fails at once (-errno, *err) only when out of memory or the socket
 * path is unusable; cb does not run then. */
int lxmd_vm_agent_get(struct lxmd *d, const char *name, lxmd_vm_agent_cb cb, void *ud,
		      struct lxmd_vm_agent_wait **ret, struct lxm_error **err);
/* Drops a pending wait: its callback does not run. */
void lxmd_vm_agent_wait_cancel(struct lxmd_vm_agent_wait *w);
/* The VM stopped: its connection closes, sessions on it end with an error, waiters are told. */
void lxmd_vm_agent_forget(struct lxmd *d, const char *name);
/* Whether lxmd holds a connection (ready or still waiting for HELLO) to name's agent. */
bool lxmd_vm_agent_held(struct lxmd *d, const char *name);
/* lxmd stops: every connection closes as in lxmd_vm_agent_forget(). */
void lxmd_vm_agents_fini(struct lxmd *d);
