#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "boot.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "operations.h"
#include "profiles/policy-internal.h"
#include "server.h"
#include "util.h"

/* How long past an instance's boot.host_shutdown_timeout a host shutdown still waits for its
 * monitor to report the kill, before it kills it itself and goes on. */
#define STOP_GRACE_S 10
/* The largest priority, delay or timeout accepted: seconds fit a timer in milliseconds.
 * Priorities may be negative, as in LXD. */
#define BOOT_INT_MAX INT32_MAX

enum boot_phase {
	BOOT_IDLE,	    /* nothing under way */
	BOOT_AUTOSTART,	    /* starting the instances that should autostart, one at a time */
	BOOT_HOST_SHUTDOWN, /* stopping every running instance, group by group */
};

struct lxmd_boot {
	struct lxmd *d;		      /* the daemon */
	uv_signal_t sig_pwr;	      /* SIGPWR: the host shuts down */
	uv_timer_t timer;	      /* the next step: the first start, a delay, the next group */
	enum boot_phase phase;	      /* what the sequence does */
	struct lxmd_boot_item *items; /* the sequence, in order */
	size_t n;		      /* its length */
	size_t next;		      /* the first item not yet started or stopped */
	size_t pending;		      /* changes of the sequence not ended yet */
	bool power_requested;	      /* SIGPWR came while a start was under way */
	bool host_stopping;	      /* a host shutdown began: stops keep "RUNNING" */
	bool autostarted;	      /* the autostart sequence ran (it runs once) */
	int open_handles;	      /* handles not closed yet after lxmd_boot_fini() */
};

/* ---- settings ---- */

static int opt_int(const json_t *cfg, const char *key, int64_t min, int64_t def, int64_t *ret,
		   struct lxm_error **err)
{
	const char *v = json_string_value(json_object_get(cfg, key));

	*ret = def;
	if (!v || !*v)
		return 0;
	return lxm_parse_int(key, v, min, BOOT_INT_MAX, ret, err);
}

int lxmd_boot_settings_read(const json_t *cfg, struct lxmd_boot_settings *ret,
			    struct lxm_error **err)
{
	struct lxmd_boot_settings s = { 0 };
	const char *v = json_string_value(json_object_get(cfg, LXM_KEY_AUTOSTART));
	const char *last = json_string_value(json_object_get(cfg, LXM_KEY_LAST_STATE_POWER));
	int k;

	/* Unset: as it was when lxmd last saw it (LXD's rule). */
	if (v && *v) {
		k = lxm_parse_bool(LXM_KEY_AUTOSTART, v, &s.autostart, err);
		if (k < 0)
			return k;
	} else {
		s.autostart = last && streq(last, "RUNNING");
	}
	if ((k = opt_int(cfg, LXM_KEY_AUTOSTART_PRIORITY, -BOOT_INT_MAX, 0, &s.start_prio, err)) <
		    0 ||
	    (k = opt_int(cfg, LXM_KEY_AUTOSTART_DELAY, 0, 0, &s.start_delay, err)) < 0 ||
	    (k = opt_int(cfg, LXM_KEY_STOP_PRIORITY, -BOOT_INT_MAX, 0, &s.stop_prio, err)) < 0 ||
	    (k = opt_int(cfg, LXM_KEY_HOST_SHUTDOWN_TIMEOUT, 0, LXM_HOST_SHUTDOWN_TIMEOUT_DEFAULT,
			 &s.stop_timeout, err)) < 0)
		return k;
	*ret = s;
	return 0;
}

static int item_cmp(const void *a, const void *b)
{
	const struct lxmd_boot_item *x = a, *y = b;

	if (x->prio != y->prio)
		return x->prio > y->prio ? -1 : 1;
	return strcmp(x->name, y->name);
}

void lxmd_boot_sort(struct lxmd_boot_item *items, size_t n)
{
	if (n > 1)
		qsort(items, n, sizeof(*items), item_cmp);
}

/* The boot settings of a stored instance, from its expanded config. */
static int instance_settings(struct lxmd *d, const char *name, struct lxmd_boot_settings *ret,
			     struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	int k;

	if ((k = lxm_db_instance_get(d->db, name, &inst, err)) < 0 ||
	    (k = lxmd_instance_expand(d, inst, &config, &devices, err)) < 0)
		return k;
	k = lxmd_boot_settings_read(config, ret, err);
	return k < 0 ? lxm_error_prefix(err, "instance '%s'", name) : 0;
}

/* ---- last state ---- */

static int write_power(struct lxmd *d, const char *name, const char *state, struct lxm_error **err)
{
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	const char *old;
	int k;

	k = lxm_db_instance_get(d->db, name, &inst, err);
	if (k < 0)
		return k;
	old = json_string_value(json_object_get(inst->config, LXM_KEY_LAST_STATE_POWER));
	if (old && streq(old, state))
		return 0;
	if (json_object_set_new(inst->config, LXM_KEY_LAST_STATE_POWER, json_string(state)) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	return lxm_db_instance_update(d->db, name, inst, err);
}

void lxmd_boot_record_power(struct lxmd *d, const char *name, bool running)
{
	struct lxm_error *err = NULL;

	/* A host shutdown's stops are not the user's: the instance comes back after the boot. */
	if (!running && d->boot && d->boot->host_stopping)
		return;
	if (write_power(d, name, running ? "RUNNING" : "STOPPED", &err) < 0) {
		/* An ephemeral instance may be gone already. */
		if (err && err->errnum == ENOENT)
			log_debug("instance '%s': not recording its state: %s", name, err->msg);
		else
			log_warn("instance '%s': record %s: %s", name, LXM_KEY_LAST_STATE_POWER,
				 err ? err->msg : "out of memory");
		lxm_error_free(err);
	}
}

/* ---- sequences ---- */

static void items_free(struct lxmd_boot *b)
{
	for (size_t k = 0; k < b->n; k++) {
		/* The operation goes on; only this sequence stops waiting for it. */
		if (b->items[k].wait)
			lxm_operation_wait_abort(b->items[k].wait);
		free(b->items[k].name);
	}
	free(b->items);
	b->items = NULL;
	b->n = b->next = b->pending = 0;
}

static int item_add(struct lxmd_boot *b, const char *name, int64_t prio, int64_t seconds)
{
	struct lxmd_boot_item *it = &b->items[b->n];

	*it = (struct lxmd_boot_item){
		.name = strdup(name), .prio = prio, .seconds = seconds, .boot = b
	};
	if (!it->name)
		return -ENOMEM;
	b->n++;
	return 0;
}

/* The names of the sequence, for the log: "a, b, c". */
static char *items_list(const struct lxmd_boot *b)
{
	size_t len = 1;
	char *s;

	for (size_t k = 0; k < b->n; k++)
		len += strlen(b->items[k].name) + 48;
	s = calloc(1, len);
	for (size_t k = 0; s && k < b->n; k++)
		snprintf(s + strlen(s), len - strlen(s), "%s%s (priority %" PRId64 ")",
			 k ? ", " : "", b->items[k].name, b->items[k].prio);
	return s;
}

/* The message of an operation that failed. */
static char *op_failure(struct lxm_operation *op)
{
	_cleanup_json_ json_t *j = lxm_operation_to_json(op);
	const char *msg = json_string_value(json_object_get(j, "err"));

	return strdup(msg && *msg ? msg : lxm_status_name(lxm_operation_status(op)));
}

static void change_done(struct lxm_operation *op, bool timed_out, void *ud);

/* Asks for a state change of its instance as a user would, in an operation of its own that the
 * sequence waits for (at most wait_ms, < 0 forever). A change that cannot begin fails here. */
static int begin_change(struct lxmd_boot *b, struct lxmd_boot_item *it, const char *action,
			int timeout, bool force, int64_t wait_ms, struct lxm_error **err)
{
	struct lxmd *d = b->d;
	struct lxm_operation *op = NULL;
	struct lxm_error *copy = NULL;
	json_t *res;
	int k;

	res = json_pack("{s:[s+], s:[s+]}", "instances", "/1.0/instances/", it->name, "containers",
			"/1.0/containers/", it->name);
	k = lxm_operation_new(d->ops, LXM_OP_TASK,
			      streq(action, "start") ? "Starting instance" : "Stopping instance",
			      res, NULL, NULL, NULL, NULL, &op);
	if (k < 0)
		return lxm_error_setx(err, k, 500, "%s '%s': new operation", action, it->name);
	lxm_operation_start(op);
	k = lxmd_instance_change_state(d, it->name, action, timeout, force, op, err);
	if (k < 0) {
		/* The operation records the refusal too, as the API's do. */
		lxm_error_set(&copy, -(*err)->errnum, (*err)->status, "%s", (*err)->msg);
		lxm_operation_finish(op, copy);
		return k;
	}
	it->op = op;
	b->pending++;
	k = lxm_operation_wait(op, wait_ms, change_done, it, &it->wait);
	if (k < 0) {
		/* Nothing to wait on: the change goes on unobserved. */
		log_warn("instance '%s': cannot wait for its %s: %s", it->name, action,
			 strerror(-k));
		it->op = NULL;
		it->wait = NULL;
		b->pending--;
	}
	return 0;
}

static void step(uv_timer_t *t);

/* The next step runs from the timer, never inside an operation's callback. */
static void step_soon(struct lxmd_boot *b, uint64_t ms)
{
	if (b->open_handles == 0)
		uv_timer_start(&b->timer, step, ms, 0);
}

/* ---- autostart ---- */

/* Collects the stopped instances that should start, in order. */
static int autostart_collect(struct lxmd_boot *b)
{
	struct lxmd *d = b->d;
	_cleanup_strv_ char **names = NULL;
	_cleanup_free_ char *list = NULL;
	struct lxm_error *err = NULL;
	size_t n = 0;
	int k;

	k = lxm_db_instance_names(d->db, &names, &err);
	if (k < 0) {
		log_error("autostart: %s", err ? err->msg : "out of memory");
		lxm_error_free(err);
		return k;
	}
	while (names && names[n])
		n++;
	b->items = calloc(n + 1, sizeof(*b->items));
	if (!b->items)
		return -ENOMEM;
	for (char **name = names; name && *name; name++) {
		struct lxmd_boot_settings s;
		int code;

		lxmd_instance_status(d, *name, &code);
		if (code != LXM_STATUS_STOPPED)
			continue;
		if (instance_settings(d, *name, &s, &err) < 0) {
			log_error("autostart: not starting '%s': %s", *name, err->msg);
			lxm_error_free(TAKE_PTR(err));
			continue;
		}
		if (s.autostart && item_add(b, *name, s.start_prio, s.start_delay) < 0)
			return -ENOMEM;
	}
	lxmd_boot_sort(b->items, b->n);
	list = items_list(b);
	if (b->n)
		log_info("autostart: starting %zu instances in this order: %s", b->n,
			 list ? list : "");
	return 0;
}

static void host_shutdown_begin(struct lxmd_boot *b);

static void autostart_next(struct lxmd_boot *b)
{
	/* lxmd is stopping (SIGTERM): what is not started yet stays stopped. */
	while (b->next < b->n && !b->d->shutting_down) {
		struct lxmd_boot_item *it = &b->items[b->next++];
		struct lxm_error *err = NULL;

		log_info("autostart: starting '%s'", it->name);
		if (begin_change(b, it, "start", -1, false, -1, &err) == 0)
			return;
		if (err && err->errnum == EALREADY)
			log_info("autostart: %s", err->msg);
		else
			log_error("autostart: %s", err ? err->msg : "out of memory");
		lxm_error_free(err);
	}
	if (b->n)
		log_info("autostart: done");
	b->phase = BOOT_IDLE;
	items_free(b);
}

/* ---- host shutdown ---- */

/* Stops the next group of instances that share a boot.stop.priority, all at once. */
static void stop_next_group(struct lxmd_boot *b)
{
	while (b->pending == 0 && b->next < b->n) {
		int64_t prio = b->items[b->next].prio;

		log_info("host shutdown: stopping the instances of boot.stop.priority %" PRId64,
			 prio);
		while (b->next < b->n && b->items[b->next].prio == prio) {
			struct lxmd_boot_item *it = &b->items[b->next++];
			int timeout = (int)it->seconds;
			int64_t wait_ms = (it->seconds + STOP_GRACE_S) * 1000;
			struct lxm_error *err = NULL;

			log_info("host shutdown: stopping '%s' (killed after %d s)", it->name,
				 timeout);
			if (begin_change(b, it, "stop", timeout, false, wait_ms, &err) == 0)
				continue;
			if (err && err->errnum == EBUSY) {
				/* A user's stop or restart is under way: it ends now. */
				log_warn("host shutdown: %s: killing it", err->msg);
				lxm_error_free(TAKE_PTR(err));
				if (begin_change(b, it, "stop", 0, true, wait_ms, &err) == 0)
					continue;
			}
			if (err && err->errnum == EINVAL)
				log_info("host shutdown: %s", err->msg);
			else
				log_error("host shutdown: %s", err ? err->msg : "out of memory");
			lxm_error_free(err);
		}
	}
	if (b->pending)
		return;
	log_info("host shutdown: every instance is stopped; lxmd exits");
	b->phase = BOOT_IDLE;
	items_free(b);
	lxmd_shutdown(b->d);
}

/* Collects the running instances, records that they ran, and stops them in order. */
static void host_shutdown_begin(struct lxmd_boot *b)
{
	struct lxmd *d = b->d;
	_cleanup_strv_ char **names = NULL;
	_cleanup_free_ char *list = NULL;
	struct lxm_error *err = NULL;
	size_t n = 0;

	items_free(b);
	b->phase = BOOT_HOST_SHUTDOWN;
	b->host_stopping = true;
	/* No new requests: nothing may start while the host goes down. */
	lxmd_server_close(TAKE_PTR(d->server));
	if (lxm_db_instance_names(d->db, &names, &err) < 0) {
		log_error("host shutdown: %s", err ? err->msg : "out of memory");
		lxm_error_free(TAKE_PTR(err));
	}
	while (names && names[n])
		n++;
	b->items = calloc(n + 1, sizeof(*b->items));
	if (!b->items)
		log_error("host shutdown: out of memory: the instances keep running");
	for (char **name = names; b->items && name && *name; name++) {
		struct lxmd_boot_settings s = { .stop_timeout = LXM_HOST_SHUTDOWN_TIMEOUT_DEFAULT };
		int code;

		lxmd_instance_status(d, *name, &code);
		if (code == LXM_STATUS_STOPPED)
			continue;
		if (instance_settings(d, *name, &s, &err) < 0) {
			/* It is stopped all the same, with the defaults. */
			log_error("host shutdown: %s: stopping it with boot.stop.priority 0 and a "
				  "%d s timeout",
				  err->msg, LXM_HOST_SHUTDOWN_TIMEOUT_DEFAULT);
			lxm_error_free(TAKE_PTR(err));
			s = (struct lxmd_boot_settings){
				.stop_timeout = LXM_HOST_SHUTDOWN_TIMEOUT_DEFAULT
			};
		}
		if (write_power(d, *name, "RUNNING", &err) < 0) {
			log_warn("host shutdown: instance '%s': record %s: %s", *name,
				 LXM_KEY_LAST_STATE_POWER, err->msg);
			lxm_error_free(TAKE_PTR(err));
		}
		if (item_add(b, *name, s.stop_prio, s.stop_timeout) < 0)
			log_error("host shutdown: instance '%s': out of memory", *name);
	}
	lxmd_boot_sort(b->items, b->n);
	list = items_list(b);
	log_info("host shutdown: stopping %zu running instances in this order: %s", b->n,
		 list && *list ? list : "(none)");
	stop_next_group(b);
}

static void on_sigpwr(uv_signal_t *s, int signum)
{
	struct lxmd_boot *b = s->data;

	(void)signum;
	if (b->host_stopping || b->power_requested || b->d->shutting_down) {
		log_info("received SIGPWR: a shutdown is already under way");
		return;
	}
	log_info("received SIGPWR: the host shuts down; stopping every instance");
	uv_timer_stop(&b->timer);
	if (b->phase == BOOT_AUTOSTART && b->pending) {
		/* The start under way ends first: then its instance is stopped with the rest. */
		log_info("host shutdown: waiting for the start of '%s' to end",
			 b->items[b->next - 1].name);
		b->power_requested = true;
		return;
	}
	host_shutdown_begin(b);
}

static void change_done(struct lxm_operation *op, bool timed_out, void *ud)
{
	struct lxmd_boot_item *it = ud;
	struct lxmd_boot *b = it->boot;
	_cleanup_free_ char *why = NULL;
	bool stop = b->phase == BOOT_HOST_SHUTDOWN;

	it->wait = NULL;
	it->op = NULL;
	b->pending--;
	if (!op)
		return; /* lxmd is going away */
	if (timed_out) {
		struct lxm_error *err = NULL;

		/* Its monitor did not report the kill in time: kill it without waiting. */
		log_warn("host shutdown: '%s' is still running %" PRId64 " s after its timeout; "
			 "killing it",
			 it->name, (int64_t)STOP_GRACE_S);
		if (lxmd_instance_change_state(b->d, it->name, "stop", 0, true, NULL, &err) < 0) {
			log_error("host shutdown: %s", err->msg);
			lxm_error_free(err);
		}
	} else if (lxm_operation_status(op) == LXM_STATUS_SUCCESS) {
		log_info("%s: '%s' %s", stop ? "host shutdown" : "autostart", it->name,
			 stop ? "stopped" : "started");
	} else {
		why = op_failure(op);
		log_error("%s: %s", stop ? "host shutdown" : "autostart", why ? why : "failed");
	}
	if (b->phase == BOOT_AUTOSTART && !b->power_requested && !timed_out &&
	    lxm_operation_status(op) == LXM_STATUS_SUCCESS && it->seconds > 0) {
		log_info("autostart: waiting %" PRId64 " s (boot.autostart.delay of '%s')",
			 it->seconds, it->name);
		step_soon(b, (uint64_t)it->seconds * 1000);
		return;
	}
	if (b->pending == 0)
		step_soon(b, 0);
}

/* The next step of whatever the sequence does. */
static void step(uv_timer_t *t)
{
	struct lxmd_boot *b = t->data;

	if (b->power_requested) {
		b->power_requested = false;
		host_shutdown_begin(b);
		return;
	}
	switch (b->phase) {
	case BOOT_IDLE:
		/* The first step: the autostart sequence. */
		if (b->autostarted || b->host_stopping)
			return;
		b->autostarted = true;
		if (autostart_collect(b) < 0) {
			log_error("autostart: out of memory");
			items_free(b);
			return;
		}
		b->phase = BOOT_AUTOSTART;
		autostart_next(b);
		break;
	case BOOT_AUTOSTART:
		autostart_next(b);
		break;
	case BOOT_HOST_SHUTDOWN:
		stop_next_group(b);
		break;
	}
}

/* ---- life cycle ---- */

int lxmd_boot_init(struct lxmd *d, struct lxm_error **err)
{
	struct lxmd_boot *b = calloc(1, sizeof(*b));
	int k;

	if (!b)
		return lxm_error_set(err, -ENOMEM, 500, "set up autostart: out of memory");
	b->d = d;
	uv_timer_init(d->loop, &b->timer);
	uv_signal_init(d->loop, &b->sig_pwr);
	b->timer.data = b->sig_pwr.data = b;
	d->boot = b;
	k = uv_signal_start(&b->sig_pwr, on_sigpwr, SIGPWR);
	if (k < 0) {
		lxmd_boot_fini(d);
		return lxm_error_set(err, k, 500, "handle SIGPWR: %s", uv_strerror(k));
	}
	/* After start-up, once the API serves. */
	uv_timer_start(&b->timer, step, 0, 0);
	return 0;
}

static void boot_closed(uv_handle_t *h)
{
	struct lxmd_boot *b = h->data;

	if (--b->open_handles == 0)
		free(b);
}

void lxmd_boot_fini(struct lxmd *d)
{
	struct lxmd_boot *b = TAKE_PTR(d->boot);

	if (!b)
		return;
	items_free(b);
	b->open_handles = 2;
	uv_timer_stop(&b->timer);
	uv_close((uv_handle_t *)&b->timer, boot_closed);
	uv_close((uv_handle_t *)&b->sig_pwr, boot_closed);
}
