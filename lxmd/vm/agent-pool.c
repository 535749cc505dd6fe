/* The VMs' agent connections (agent-pool.h): a list of entries, one per VM with a connection
 * that is being opened or stands, each with the requests waiting for it. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "util.h"
#include "vm/agent-pool.h"

#define DEFAULT_TIMEOUT_MS (120 * 1000)

struct pool_entry;

struct lxmd_vm_agent_wait {
	struct pool_entry *e;		 /* the entry it waits on, NULL once delivered */
	struct lxmd_vm_agent_wait *next; /* the entry's list */
	lxmd_vm_agent_cb cb;		 /* the caller's callback */
	void *ud;			 /* passed to it */
};

struct pool_entry {
	struct lxmd *d;			  /* the daemon */
	struct pool_entry *next;	  /* the pool's list */
	char *name;			  /* the VM */
	struct lxm_agent *a;		  /* its connection */
	bool ready;			  /* the agent answered */
	struct lxmd_vm_agent_wait *waits; /* requests waiting for the answer */
};

struct lxmd_vm_agents {
	struct pool_entry *entries; /* one per VM */
};

uint64_t lxmd_vm_agent_timeout_ms(void)
{
	const char *v = getenv("LXMD_VM_AGENT_TIMEOUT_MS");
	unsigned long long ms;
	char *end;

	if (!v || !*v)
		return DEFAULT_TIMEOUT_MS;
	errno = 0;
	ms = strtoull(v, &end, 10);
	if (errno || *end || ms == 0) {
		log_warn("LXMD_VM_AGENT_TIMEOUT_MS='%s' is not a number of milliseconds: using %d",
			 v, DEFAULT_TIMEOUT_MS);
		return DEFAULT_TIMEOUT_MS;
	}
	return ms;
}

int lxmd_vm_agent_check_running(struct lxmd *d, const char *name, struct lxm_error **err)
{
	if (streq(getenv("LXMD_TEST_VM_AGENT_STOPPED"), "1"))
		return 0;
	return lxmd_instance_running(d, name, NULL, NULL, err);
}

/* Takes e off the pool's list; its connection closes and its waiters (if any) are not told. */
static void entry_unlink(struct pool_entry *e)
{
	struct lxmd_vm_agents *p = e->d->vm_agents;

	for (struct pool_entry **q = &p->entries; *q; q = &(*q)->next)
		if (*q == e) {
			*q = e->next;
			return;
		}
}

/* Tells every waiter (a, or err) and forgets them. */
static void entry_deliver(struct pool_entry *e, struct lxm_agent *a, struct lxm_error *err)
{
	struct lxmd_vm_agent_wait *list = TAKE_PTR(e->waits), *w;

	for (w = list; w; w = w->next)
		w->e = NULL;
	while ((w = list)) {
		list = w->next;
		w->cb(a, err, w->ud);
		free(w);
	}
}

static void entry_free(struct pool_entry *e)
{
	free(e->name);
	free(e);
}

static void entry_ready(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	struct pool_entry *e = ud;
	_cleanup_error_ struct lxm_error *why = NULL;

	if (!err) {
		log_debug("VM '%s': agent %s answered (guest kernel %s)", e->name,
			  lxm_agent_version(a), lxm_agent_kernel(a));
		e->ready = true;
		entry_deliver(e, a, NULL);
		return;
	}
	/* The next request tries again from the start. */
	entry_unlink(e);
	if (err->errnum == ETIMEDOUT)
		lxm_error_set(&why, -ETIMEDOUT, 503,
			      "the VM agent did not answer within %g s: is lxm-agent running in "
			      "the guest? (%s)",
			      (double)lxmd_vm_agent_timeout_ms() / 1000, err->msg);
	else
		lxm_error_set(&why, err->errnum ? -err->errnum : -EIO, 503, "%s", err->msg);
	entry_deliver(e, NULL, why);
	lxm_agent_close(a);
	entry_free(e);
}

static void entry_lost(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	struct pool_entry *e = ud;

	log_info("VM '%s': %s", e->name, err->msg);
	entry_unlink(e);
	lxm_agent_close(a);
	entry_free(e);
}

static struct pool_entry *entry_find(struct lxmd *d, const char *name)
{
	if (!d->vm_agents)
		return NULL;
	for (struct pool_entry *e = d->vm_agents->entries; e; e = e->next)
		if (streq(e->name, name))
			return e;
	return NULL;
}

int lxmd_vm_agent_get(struct lxmd *d, const char *name, lxmd_vm_agent_cb cb, void *ud,
		      struct lxmd_vm_agent_wait **ret, struct lxm_error **err)
{
	struct pool_entry *e = entry_find(d, name);
	struct lxmd_vm_agent_wait *w;
	_cleanup_free_ char *path = NULL;
	int k;

	if (ret)
		*ret = NULL;
	if (e && e->ready && lxm_agent_is_ready(e->a)) {
		cb(e->a, NULL, ud);
		return 0;
	}
	if (!d->vm_agents && !(d->vm_agents = calloc(1, sizeof(*d->vm_agents))))
		return lxm_error_set(err, -ENOMEM, 500, "VM '%s': agent: out of memory", name);
	w = calloc(1, sizeof(*w));
	if (!w)
		return lxm_error_set(err, -ENOMEM, 500, "VM '%s': agent: out of memory", name);
	w->cb = cb;
	w->ud = ud;
	if (!e) {
		struct lxm_agent_conn_opts o = { .timeout_ms = lxmd_vm_agent_timeout_ms(),
						 .ready = entry_ready,
						 .lost = entry_lost };

		if (asprintf(&path, "%s/%s/agent.sock", d->cfg.rundir, name) < 0)
			path = NULL;
		e = calloc(1, sizeof(*e));
		if (!e || !path || !(e->name = strdup(name))) {
			free(e);
			free(w);
			return lxm_error_set(err, -ENOMEM, 500, "VM '%s': agent: out of memory",
					     name);
		}
		e->d = d;
		o.path = path;
		o.ud = e;
		k = lxm_agent_connect(d->loop, &o, &e->a, err);
		if (k < 0) {
			entry_free(e);
			free(w);
			return lxm_error_prefix(err, "VM '%s'", name);
		}
		log_debug("VM '%s': waiting for the VM agent on %s", name, path);
		e->next = d->vm_agents->entries;
		d->vm_agents->entries = e;
	}
	w->e = e;
	w->next = e->waits;
	e->waits = w;
	if (ret)
		*ret = w;
	return 0;
}

void lxmd_vm_agent_wait_cancel(struct lxmd_vm_agent_wait *w)
{
	if (!w || !w->e)
		return;
	for (struct lxmd_vm_agent_wait **q = &w->e->waits; *q; q = &(*q)->next)
		if (*q == w) {
			*q = w->next;
			break;
		}
	free(w);
}

static void entry_drop(struct pool_entry *e, const char *why)
{
	_cleanup_error_ struct lxm_error *err = NULL;

	entry_unlink(e);
	lxm_error_set(&err, -ECANCELED, 503, "VM '%s': %s", e->name, why);
	entry_deliver(e, NULL, err);
	lxm_agent_close(e->a);
	entry_free(e);
}

bool lxmd_vm_agent_held(struct lxmd *d, const char *name)
{
	return entry_find(d, name) != NULL;
}

void lxmd_vm_agent_forget(struct lxmd *d, const char *name)
{
	struct pool_entry *e = entry_find(d, name);

	if (e)
		entry_drop(e, "the VM stopped");
}

void lxmd_vm_agents_fini(struct lxmd *d)
{
	if (!d->vm_agents)
		return;
	while (d->vm_agents->entries)
		entry_drop(d->vm_agents->entries, "lxmd is shutting down");
	free(TAKE_PTR(d->vm_agents));
}
