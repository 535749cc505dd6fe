/* The boot.* keys: reading and checking them, and the order of start and stop sequences. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "boot.h"
#include "error.h"
#include "tap.h"

/* Reads settings from a config given as "key", "value", ... NULL. */
static int read_cfg(struct lxmd_boot_settings *s, struct lxm_error **err, ...)
{
	json_t *cfg = json_object();
	const char *k, *v;
	va_list ap;
	int r;

	va_start(ap, err);
	while ((k = va_arg(ap, const char *)) && (v = va_arg(ap, const char *)))
		json_object_set_new(cfg, k, json_string(v));
	va_end(ap);
	r = lxmd_boot_settings_read(cfg, s, err);
	json_decref(cfg);
	return r;
}

static void test_defaults(void)
{
	struct lxmd_boot_settings s;
	struct lxm_error *err = NULL;

	ok(read_cfg(&s, &err, NULL) == 0, "empty config reads");
	ok(!s.autostart, "no autostart by default (never ran)");
	ok(s.start_prio == 0 && s.start_delay == 0 && s.stop_prio == 0,
	   "priorities and delay default to 0");
	ok(s.stop_timeout == LXM_HOST_SHUTDOWN_TIMEOUT_DEFAULT && s.stop_timeout == 30,
	   "host shutdown timeout defaults to 30 s");
}

static void test_autostart(void)
{
	struct lxmd_boot_settings s;
	struct lxm_error *err = NULL;

	ok(read_cfg(&s, &err, "volatile.last_state.power", "RUNNING", NULL) == 0 && s.autostart,
	   "unset autostart follows a last state RUNNING");
	ok(read_cfg(&s, &err, "volatile.last_state.power", "STOPPED", NULL) == 0 && !s.autostart,
	   "unset autostart follows a last state STOPPED");
	ok(read_cfg(&s, &err, "boot.autostart", "", "volatile.last_state.power", "RUNNING", NULL) ==
			   0 &&
		   s.autostart,
	   "an empty boot.autostart is unset");
	ok(read_cfg(&s, &err, "boot.autostart", "false", "volatile.last_state.power", "RUNNING",
		    NULL) == 0 &&
		   !s.autostart,
	   "boot.autostart=false wins over the last state");
	ok(read_cfg(&s, &err, "boot.autostart", "true", "volatile.last_state.power", "STOPPED",
		    NULL) == 0 &&
		   s.autostart,
	   "boot.autostart=true wins over the last state");
	ok(read_cfg(&s, &err, "boot.autostart", "yes", NULL) < 0 && err && err->status == 400 &&
		   strstr(err->msg, "boot.autostart") && strstr(err->msg, "yes"),
	   "a bad boolean is refused naming key and value: %s", err ? err->msg : "");
	lxm_error_free(err);
}

static void test_numbers(void)
{
	static const char *const keys[] = { "boot.autostart.priority", "boot.autostart.delay",
					    "boot.stop.priority", "boot.host_shutdown_timeout" };
	struct lxmd_boot_settings s;
	struct lxm_error *err = NULL;

	ok(read_cfg(&s, &err, "boot.autostart.priority", "7", "boot.autostart.delay", "3",
		    "boot.stop.priority", "2", "boot.host_shutdown_timeout", "0", NULL) == 0 &&
		   s.start_prio == 7 && s.start_delay == 3 && s.stop_prio == 2 &&
		   s.stop_timeout == 0,
	   "numbers read");
	ok(read_cfg(&s, &err, "boot.autostart.priority", "-3", "boot.stop.priority", "-4", NULL) ==
			   0 &&
		   s.start_prio == -3 && s.stop_prio == -4,
	   "negative priorities read");
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		static const char *const bad[] = { "-1", "1.5", "ten", "99999999999" };

		/* Priorities may be negative, as in LXD; the delay and the timeout may not. */
		for (size_t b = strstr(keys[k], "priority") ? 1 : 0;
		     b < sizeof(bad) / sizeof(bad[0]); b++) {
			int r = read_cfg(&s, &err, keys[k], bad[b], NULL);

			ok(r < 0 && err && strstr(err->msg, keys[k]), "%s=%s refused: %s", keys[k],
			   bad[b], err ? err->msg : "(accepted)");
			lxm_error_free(err);
			err = NULL;
		}
	}
}

static void test_sort(void)
{
	struct lxmd_boot_item items[] = {
		{ .name = (char *)"web", .prio = 0 },	{ .name = (char *)"db", .prio = 10 },
		{ .name = (char *)"cache", .prio = 5 }, { .name = (char *)"app", .prio = 0 },
		{ .name = (char *)"dns", .prio = 10 },
	};
	static const char *const want[] = { "db", "dns", "cache", "app", "web" };
	bool same = true;

	lxmd_boot_sort(items, sizeof(items) / sizeof(items[0]));
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++)
		same &= strcmp(items[k].name, want[k]) == 0;
	ok(same, "higher priority first, then by name: %s %s %s %s %s", items[0].name,
	   items[1].name, items[2].name, items[3].name, items[4].name);
	lxmd_boot_sort(items, 0);
	ok(true, "an empty sequence sorts");
}

int main(void)
{
	test_defaults();
	test_autostart();
	test_numbers();
	test_sort();
	return tap_done();
}
