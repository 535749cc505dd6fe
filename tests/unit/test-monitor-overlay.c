/* The monitor's reading of an overlay mount's super options from mountinfo: layers, escapes,
 * the options it repeats and the ones it drops, and the mounts it refuses. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "util.h"
#include "monitor/monitor-overlay.h"
#include "tap.h"

static bool opts_are(const struct monitor_overlay *o, const char *const *want, size_t n)
{
	if (o->n_opts != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!streq(o->opts[i], want[i]))
			return false;
	return true;
}

static void test_plain(void)
{
	struct monitor_overlay o;
	static const char *const want[] = { "uuid=on" };

	ok(monitor_overlay_parse("rw,lowerdir=/p/images/f/rootfs,upperdir=/p/.overlay/c/upper,"
				 "workdir=/p/.overlay/c/work,uuid=on",
				 &o) == 0,
	   "plain: parses");
	ok(o.n_lower == 1 && streq(o.lower[0], "/p/images/f/rootfs") && !o.lower[1],
	   "plain: one lower layer");
	ok(streq(o.upper, "/p/.overlay/c/upper") && streq(o.work, "/p/.overlay/c/work"),
	   "plain: upper and work");
	ok(opts_are(&o, want, 1), "plain: uuid kept, rw dropped");
	monitor_overlay_done(&o);
}

static void test_escapes(void)
{
	struct monitor_overlay o;
	static const char *const want[] = { "index=off", "redirect_dir=on", "metacopy=off" };

	/* mountinfo writes space as \040, ',' as \054, '=' as \075 and '\' as \134; in lowerdir a
	 * backslash then escapes a ':' inside one layer's path. */
	ok(monitor_overlay_parse("rw,seclabel,lowerdir=/x\\040y:/z\\054w:/a\\134:b,"
				 "upperdir=/u\\040v\\075,workdir=/w,index=off,redirect_dir=on,"
				 "metacopy=off,default_permissions",
				 &o) == 0,
	   "escapes: parses");
	ok(o.n_lower == 3 && streq(o.lower[0], "/x y") && streq(o.lower[1], "/z,w") &&
		   streq(o.lower[2], "/a:b"),
	   "escapes: lower layers unescaped and split on unescaped ':' only");
	ok(streq(o.upper, "/u v="), "escapes: upperdir unescaped");
	ok(opts_are(&o, want, 3), "escapes: layer options kept, seclabel and others dropped");
	monitor_overlay_done(&o);
}

static void test_lowerdir_plus_and_readonly(void)
{
	struct monitor_overlay o;
	static const char *const want[] = { "ro" };

	ok(monitor_overlay_parse("rw,lowerdir+=/l1,lowerdir+=/l2,upperdir=/u,workdir=/w", &o) ==
			   0 &&
		   o.n_lower == 2 && streq(o.lower[0], "/l1") && streq(o.lower[1], "/l2"),
	   "lowerdir+: one layer per option, in order");
	monitor_overlay_done(&o);
	ok(monitor_overlay_parse("ro,lowerdir=/a:/b", &o) == 0 && o.n_lower == 2 && !o.upper &&
		   !o.work && opts_are(&o, want, 1),
	   "read-only overlay: no upper or work, ro kept");
	monitor_overlay_done(&o);
}

static void test_refused(void)
{
	struct monitor_overlay o;

	ok(monitor_overlay_parse("rw,upperdir=/u,workdir=/w", &o) == -EINVAL && !o.lower &&
		   !o.upper,
	   "no lower layer: -EINVAL, nothing left");
	ok(monitor_overlay_parse("rw,lowerdir=/a,upperdir=/u", &o) == -EINVAL,
	   "upperdir without workdir: -EINVAL");
	ok(monitor_overlay_parse("rw,lowerdir=/a::/b,upperdir=/u,workdir=/w", &o) == -EINVAL,
	   "empty lower layer: -EINVAL");
	ok(monitor_overlay_parse("rw,lowerdir+=/a,datadir+=/d", &o) == -EOPNOTSUPP,
	   "data-only layers: -EOPNOTSUPP");
}

int main(void)
{
	test_plain();
	test_escapes();
	test_lowerdir_plus_and_readonly();
	test_refused();
	return tap_done();
}
