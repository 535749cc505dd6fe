/* The policy compiler's front: reads the keys it knows from an expanded config, hands each value
 * to its parser, and puts the result in one struct lxm_policy. Keys it does not read are left to
 * the config-key table; a key it reads with a bad value is a 400 that names the key. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "json.h"
#include "policy-internal.h"
#include "policy.h"
#include "util.h"

/* What a container runs under on an SELinux host when security.selinux.label says nothing: the
 * type the distributions' container-selinux policy confines containers with (as Podman and
 * CRI-O use it), at the base level, since lxm does not assign per-instance categories yet. */
#define SELINUX_DEFAULT_LABEL "system_u:system_r:container_t:s0"

const char *const lxm_hugepage_names[LXM_HUGEPAGE_N] = { "64KB", "1MB", "2MB", "1GB" };
const uint64_t lxm_hugepage_kb[LXM_HUGEPAGE_N] = { 64, 1024, 2048, 1024 * 1024 };

/* What an isolated instance maps when security.idmap.size says nothing (LXD's default). */
#define IDMAP_SIZE_DEFAULT 65536

static void lxm_policy_freep(struct lxm_policy **p)
{
	lxm_policy_free(*p);
}

/* A config value, or NULL when the key is absent, null or "" (LXD's way of unsetting a key). */
static int cfg_get(const json_t *cfg, const char *key, const char **ret, struct lxm_error **err)
{
	json_t *v = cfg ? json_object_get(cfg, key) : NULL;

	*ret = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return lxm_error_set(err, -EINVAL, 400,
				     "config key '%s': value must be a string (all config values "
				     "are, e.g. \"500\" or \"true\")",
				     key);
	if (*json_string_value(v))
		*ret = json_string_value(v);
	return 0;
}

/* A boolean key; def when unset. */
static int cfg_bool(const json_t *cfg, const char *key, bool def, bool *ret, struct lxm_error **err)
{
	const char *v;
	int r;

	r = cfg_get(cfg, key, &v, err);
	if (r < 0)
		return r;
	*ret = def;
	return v ? lxm_parse_bool(key, v, ret, err) : 0;
}

/* limits.cpu.priority 0-10 to a cgroup v2 cpu.weight, geometric so that every step means the
 * same ratio (about 1.6x, ten steps for a hundredfold): 10, LXD's default and the highest, is
 * the kernel's default weight 100; 5 gets a tenth of a default instance's share; 0 a
 * hundredth. */
static const int64_t priority_weight[] = { 1, 2, 3, 4, 6, 10, 16, 25, 40, 63, 100 };

/* CPUs in a canonical list ("0-1,3" -> 3). */
static unsigned cpuset_count(const char *s)
{
	unsigned n = 0;

	while (*s) {
		char *end;
		unsigned long a = strtoul(s, &end, 10), z = a;

		if (*end == '-')
			z = strtoul(end + 1, &end, 10);
		n += (unsigned)(z - a + 1);
		if (*end != ',')
			break;
		s = end + 1;
	}
	return n;
}

static int compile_cpu(struct lxm_policy *p, const json_t *cfg, const struct lxm_policy_host *host,
		       struct lxm_error **err)
{
	struct lxm_limits *l = &p->limits;
	const char *v;
	int64_t prio;
	unsigned avail;
	int r;

	if ((r = cfg_get(cfg, KEY_CPU, &v, err)) < 0 ||
	    (v && (r = lxm_parse_cpu(KEY_CPU, v, host->ncpus, &l->cpuset, err)) < 0))
		return r;
	if ((r = cfg_get(cfg, KEY_CPU_ALLOWANCE, &v, err)) < 0 ||
	    (v && (r = lxm_parse_allowance(KEY_CPU_ALLOWANCE, v, &l->cpu_quota_us,
					   &l->cpu_period_us, err)) < 0))
		return r;
	/* More run time per period than there are CPUs to run on is no limit at all. */
	avail = l->cpuset ? cpuset_count(l->cpuset) : host->ncpus;
	if (v && avail > 0 && l->cpu_quota_us > (int64_t)avail * l->cpu_period_us)
		return lxm_policy_bad_value(err, KEY_CPU_ALLOWANCE, v,
					    "more than the %u CPU%s the instance can use%s (at "
					    "most %u%%, or %ums/100ms)",
					    avail, avail == 1 ? "" : "s",
					    l->cpuset ? " with " KEY_CPU : "", avail * 100,
					    avail * 100);
	if ((r = cfg_get(cfg, KEY_CPU_PRIORITY, &v, err)) < 0 ||
	    (v && (r = lxm_parse_int(KEY_CPU_PRIORITY, v, 0, 10, &prio, err)) < 0))
		return r;
	if (v)
		l->cpu_weight = priority_weight[prio];
	return 0;
}

/* limits.hugepages.<size>: a size in bytes, for a page size the host has. */
static int compile_hugepages(struct lxm_policy *p, const json_t *cfg,
			     const struct lxm_policy_host *host, struct lxm_error **err)
{
	for (int n = 0; n < LXM_HUGEPAGE_N; n++) {
		char key[32];
		const char *v;
		int r;

		snprintf(key, sizeof(key), KEY_HUGEPAGES "%s", lxm_hugepage_names[n]);
		if ((r = cfg_get(cfg, key, &v, err)) < 0 ||
		    (v && (r = lxm_parse_size(key, v, host->memory_bytes, &p->limits.hugepages[n],
					      err)) < 0))
			return r;
		if (v && !(host->hugepages & (1u << n)))
			return lxm_policy_bad_value(err, key, v,
						    "this host cannot limit %s huge pages: it has "
						    "none (no /sys/kernel/mm/hugepages/"
						    "hugepages-%llukB) or no hugetlb cgroup "
						    "controller",
						    lxm_hugepage_names[n],
						    (unsigned long long)lxm_hugepage_kb[n]);
	}
	return 0;
}

static int compile_limits(struct lxm_policy *p, const json_t *cfg,
			  const struct lxm_policy_host *host, struct lxm_error **err)
{
	struct lxm_limits *l = &p->limits;
	const char *v;
	int r;

	if ((r = cfg_get(cfg, KEY_MEMORY, &v, err)) < 0 ||
	    (v && (r = lxm_parse_size(KEY_MEMORY, v, host->memory_bytes, &l->memory, err)) < 0))
		return r;
	if ((r = cfg_bool(cfg, KEY_MEMORY_SWAP, true, &l->memory_swap, err)) < 0)
		return r;
	if ((r = cfg_get(cfg, KEY_MEMORY_ENFORCE, &v, err)) < 0)
		return r;
	if (v && !streq(v, "hard") && !streq(v, "soft"))
		return lxm_policy_bad_value(err, KEY_MEMORY_ENFORCE, v, "expected hard or soft");
	l->memory_soft = streq(v, "soft");
	if ((r = compile_cpu(p, cfg, host, err)) < 0)
		return r;
	if ((r = cfg_get(cfg, KEY_PROCESSES, &v, err)) < 0 ||
	    (v && (r = lxm_parse_int(KEY_PROCESSES, v, 1, INT64_MAX, &l->processes, err)) < 0))
		return r;
	if ((r = cfg_get(cfg, KEY_DISK_PRIORITY, &v, err)) < 0 ||
	    (v && (r = lxm_parse_int(KEY_DISK_PRIORITY, v, 0, 10, &l->disk_priority, err)) < 0))
		return r;
	return compile_hugepages(p, cfg, host, err);
}

/* An integer key in [min, max], or def when unset. */
static int cfg_int(const json_t *cfg, const char *key, int64_t min, int64_t max, int64_t def,
		   int64_t *ret, struct lxm_error **err)
{
	const char *v;
	int r;

	*ret = def;
	if ((r = cfg_get(cfg, key, &v, err)) < 0)
		return r;
	return v ? lxm_parse_int(key, v, min, max, ret, err) : 0;
}

/* The id map keys: security.idmap.* and raw.idmap. The range itself is allocated by lxmd, which
 * knows the host's subordinate ids and the other instances. */
static int compile_idmap(struct lxm_policy *p, const json_t *cfg, struct lxm_error **err)
{
	const char *v, *base, *size;
	int r;

	if ((r = cfg_bool(cfg, KEY_IDMAP_ISOLATED, false, &p->idmap_isolated, err)) < 0 ||
	    (r = cfg_bool(cfg, KEY_PROTECT_SHIFT, false, &p->protect_shift, err)) < 0 ||
	    (r = cfg_int(cfg, KEY_IDMAP_BASE, 0, UINT32_MAX, -1, &p->idmap_base, err)) < 0 ||
	    (r = cfg_int(cfg, KEY_IDMAP_SIZE, 1, UINT32_MAX, IDMAP_SIZE_DEFAULT, &p->idmap_size,
			 err)) < 0 ||
	    (r = cfg_get(cfg, KEY_IDMAP_BASE, &base, err)) < 0 ||
	    (r = cfg_get(cfg, KEY_IDMAP_SIZE, &size, err)) < 0 ||
	    (r = cfg_get(cfg, KEY_RAW_IDMAP, &v, err)) < 0)
		return r;
	if (v &&
	    (r = lxm_parse_raw_idmap(KEY_RAW_IDMAP, v, &p->raw_idmap, &p->n_raw_idmap, err)) < 0)
		return r;
	if (p->idmap_base >= 0 && p->idmap_base + p->idmap_size - 1 > UINT32_MAX - 1)
		return lxm_policy_bad_value(err, KEY_IDMAP_BASE, base,
					    "the range of %" PRId64 " ids from there passes the "
					    "largest id, %u",
					    p->idmap_size, UINT32_MAX - 1);
	if ((base || size) && !p->idmap_isolated)
		return lxm_error_set(err, -EINVAL, 400,
				     "config key '%s' only applies to an isolated id map: set "
				     "'%s' to true as well",
				     base ? KEY_IDMAP_BASE : KEY_IDMAP_SIZE, KEY_IDMAP_ISOLATED);
	if (p->privileged && (p->idmap_isolated || p->n_raw_idmap > 0))
		return lxm_error_set(err, -EINVAL, 400,
				     "config key '%s' needs an unprivileged container: a "
				     "privileged one ('%s' true) has no id map",
				     p->idmap_isolated ? KEY_IDMAP_ISOLATED : KEY_RAW_IDMAP,
				     KEY_PRIVILEGED);
	return 0;
}

/* "N" or "N-M" (inclusive) into first and count. */
static bool parse_id_range(const char *s, uint32_t *first, uint32_t *count)
{
	char *end;
	unsigned long long a, z;

	if (!*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	a = strtoull(s, &end, 10);
	z = a;
	if (*end == '-') {
		if (!end[1] || end[1] == '-' || end[1] == '+')
			return false;
		z = strtoull(end + 1, &end, 10);
	}
	if (errno || *end || z < a || z >= UINT32_MAX)
		return false;
	*first = (uint32_t)a;
	*count = (uint32_t)(z - a + 1);
	return true;
}

static bool ranges_meet(uint32_t a, uint32_t an, uint32_t b, uint32_t bn)
{
	return (uint64_t)a < (uint64_t)b + bn && (uint64_t)b < (uint64_t)a + an;
}

#define RAW_IDMAP_EXPECTED                                                                         \
	"expected lines 'both|uid|gid HOST NS', each a number or a range first-last of the same "  \
	"length, e.g. 'both 1000 1000' or 'uid 2000-2009 1000-1009'"

int lxm_parse_raw_idmap(const char *key, const char *value, struct lxm_raw_idmap **ret,
			size_t *ret_n, struct lxm_error **err)
{
	_cleanup_free_ char *copy = strdup(value ? value : "");
	_cleanup_free_ struct lxm_raw_idmap *v = NULL;
	char *line, *save = NULL;
	size_t n = 0;

	*ret = NULL;
	*ret_n = 0;
	if (!copy)
		return -ENOMEM;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char kind[8], host[32], ns[32], extra[2];
		struct lxm_raw_idmap e = { 0 }, *nv;
		uint32_t nscount;
		int k = sscanf(line, "%7s %31s %31s %1s", kind, host, ns, extra);

		if (k <= 0)
			continue; /* a blank line */
		if (k != 3)
			return lxm_policy_bad_value(err, key, value, "line '%s': %s", line,
						    RAW_IDMAP_EXPECTED);
		e.uid = streq(kind, "uid") || streq(kind, "both");
		e.gid = streq(kind, "gid") || streq(kind, "both");
		if (!e.uid && !e.gid)
			return lxm_policy_bad_value(err, key, value,
						    "line '%s': '%s' is not both, uid or gid", line,
						    kind);
		if (!parse_id_range(host, &e.host, &e.count) ||
		    !parse_id_range(ns, &e.ns, &nscount))
			return lxm_policy_bad_value(err, key, value, "line '%s': %s", line,
						    RAW_IDMAP_EXPECTED);
		if (nscount != e.count)
			return lxm_policy_bad_value(err, key, value,
						    "line '%s': the host range has %u ids, the "
						    "container's %u",
						    line, e.count, nscount);
		for (size_t i = 0; i < n; i++)
			if (((v[i].uid && e.uid) || (v[i].gid && e.gid)) &&
			    (ranges_meet(v[i].host, v[i].count, e.host, e.count) ||
			     ranges_meet(v[i].ns, v[i].count, e.ns, e.count)))
				return lxm_policy_bad_value(err, key, value,
							    "line '%s' overlaps an earlier line: "
							    "an id can be mapped once",
							    line);
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv)
			return -ENOMEM;
		v = nv;
		v[n++] = e;
	}
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* security.capabilities.add takes out of the default drop set, .drop adds to it; a capability in
 * both is a contradiction, not an order to resolve. */
static int compile_caps(struct lxm_policy *p, const json_t *cfg, struct lxm_error **err)
{
	uint64_t add = 0, drop = 0, both;
	const char *v;
	int r;

	if ((r = cfg_get(cfg, KEY_CAPS_ADD, &v, err)) < 0 ||
	    (v && (r = lxm_caps_parse(KEY_CAPS_ADD, v, &add, err)) < 0))
		return r;
	if ((r = cfg_get(cfg, KEY_CAPS_DROP, &v, err)) < 0 ||
	    (v && (r = lxm_caps_parse(KEY_CAPS_DROP, v, &drop, err)) < 0))
		return r;
	both = add & drop;
	if (both)
		return lxm_error_set(err, -EINVAL, 400,
				     "config keys '%s' and '%s' both name '%s': keep it in one of "
				     "them",
				     KEY_CAPS_ADD, KEY_CAPS_DROP,
				     lxm_cap_name(__builtin_ctzll(both)));
	p->caps_drop = (lxm_caps_default_drop(p->privileged) & ~add) | drop;
	return 0;
}

static int compile_syscalls(struct lxm_policy *p, const json_t *cfg, struct lxm_error **err)
{
	const char *deny, *deny_default, *allow;
	int r;

	if ((r = cfg_get(cfg, KEY_SYSCALLS_DENY, &deny, err)) < 0 ||
	    (r = cfg_get(cfg, KEY_SYSCALLS_DEFAULT, &deny_default, err)) < 0 ||
	    (r = cfg_get(cfg, KEY_SYSCALLS_ALLOW, &allow, err)) < 0)
		return r;
	return lxm_seccomp_policy(deny, deny_default, allow, p, err);
}

/* user:role:type[:level]: three non-empty fields at least; the level may hold ':' itself. */
static bool selinux_label_valid(const char *s)
{
	unsigned fields = 1, len = 0;

	for (; *s; s++) {
		if (*s <= ' ' || *s > '~')
			return false;
		if (*s == ':') {
			if (len == 0 && fields <= 3)
				return false;
			fields++;
			len = 0;
		} else {
			len++;
		}
	}
	return fields >= 3 && len > 0;
}

static int compile_apparmor(struct lxm_policy *p, const char *name, const json_t *cfg,
			    const struct lxm_policy_host *host, struct lxm_error **err)
{
	const char *v;
	int r;

	if ((r = cfg_get(cfg, KEY_APPARMOR_PROFILE, &v, err)) < 0)
		return r;
	if (v && !lxm_apparmor_name_valid(v))
		return lxm_policy_bad_value(err, KEY_APPARMOR_PROFILE, v,
					    "expected the name of a loaded AppArmor profile, "
					    "without spaces or quotes, e.g. lxm-custom or "
					    "unconfined");
	/* Without AppArmor in the kernel there is nothing to exec under. */
	if (!host->apparmor)
		return 0;
	if (v)
		return (p->apparmor_profile = strdup(v)) ? 0 : -ENOMEM;
	r = lxm_apparmor_profile(name, host, p->nesting, p->privileged, &p->apparmor_profile,
				 &p->apparmor_text);
	if (r == -EINVAL)
		return lxm_error_set(err, r, 400,
				     "instance name '%s' cannot be part of an AppArmor profile "
				     "name: use letters, digits and '-', at most 63",
				     name);
	return r;
}

static int compile_selinux(struct lxm_policy *p, const json_t *cfg,
			   const struct lxm_policy_host *host, struct lxm_error **err)
{
	const char *v;
	int r;

	if ((r = cfg_get(cfg, KEY_SELINUX_LABEL, &v, err)) < 0)
		return r;
	if (v && !selinux_label_valid(v))
		return lxm_policy_bad_value(err, KEY_SELINUX_LABEL, v,
					    "expected an SELinux context user:role:type[:level], "
					    "e.g. " SELINUX_DEFAULT_LABEL);
	/* A label the user set is kept even where SELinux is off: the runtime decides. */
	if (!v && host->selinux)
		v = SELINUX_DEFAULT_LABEL;
	if (v && !(p->selinux_label = strdup(v)))
		return -ENOMEM;
	return 0;
}

/* What each init shuts down cleanly on. image.* keys describe the image, they are not user
 * input, so a value not in the table is no error: it just says nothing about the signal. */
static const struct {
	const char *name;
	int signal;
} init_signals[] = {
	{ "systemd", LXM_SIGRTMIN + 3 },
	{ "busybox", SIGUSR2 },
	{ "sysvinit", SIGPWR },
	/* image.os, for images that do not say which init they boot (those of LXD's image
	 * servers): Alpine boots busybox init, the big distributions systemd. */
	{ "alpine", SIGUSR2 },
	{ "debian", LXM_SIGRTMIN + 3 },
	{ "ubuntu", LXM_SIGRTMIN + 3 },
	{ "fedora", LXM_SIGRTMIN + 3 },
	{ "archlinux", LXM_SIGRTMIN + 3 },
};

static bool init_signal(const char *value, int *ret)
{
	for (size_t k = 0; value && k < ARRAY_SIZE(init_signals); k++)
		if (strcasecmp(value, init_signals[k].name) == 0) {
			*ret = init_signals[k].signal;
			return true;
		}
	return false;
}

static int compile_boot(struct lxm_policy *p, const json_t *cfg, struct lxm_error **err)
{
	const char *init, *os, *v;
	int r;

	/* SIGPWR when nothing says otherwise, as LXC's lxc.signal.halt. */
	p->halt_signal = SIGPWR;
	if ((r = cfg_get(cfg, KEY_IMAGE_INIT, &init, err)) < 0 ||
	    (r = cfg_get(cfg, KEY_IMAGE_OS, &os, err)) < 0)
		return r;
	if (!init_signal(init, &p->halt_signal))
		init_signal(os, &p->halt_signal);
	if ((r = cfg_get(cfg, KEY_STOP_SIGNAL, &v, err)) < 0 ||
	    (v && (r = lxm_parse_signal(KEY_STOP_SIGNAL, v, &p->halt_signal, err)) < 0))
		return r;
	if ((r = cfg_get(cfg, KEY_TIME_OFFSET, &v, err)) < 0 ||
	    (v && (r = lxm_parse_time_offset(KEY_TIME_OFFSET, v, &p->time_offset_monotonic,
					     &p->time_offset_boottime, err)) < 0))
		return r;
	return 0;
}

int lxm_policy_compile(const char *name, const json_t *expanded_config,
		       const struct lxm_policy_host *host, struct lxm_policy **ret,
		       struct lxm_error **err)
{
	_cleanup_(lxm_policy_freep) struct lxm_policy *p = NULL;
	int r;

	if (!name || !host || !ret)
		return lxm_error_set(err, -EINVAL, 500, "compile policy: missing argument");
	if (expanded_config && !json_is_object(expanded_config))
		return lxm_error_set(err, -EINVAL, 400,
				     "config must be an object of strings, e.g. "
				     "{\"limits.memory\": \"1GiB\"}");
	p = calloc(1, sizeof(*p));
	if (!p)
		return lxm_error_set(err, -ENOMEM, 500, "compile policy: out of memory");
	p->limits = (struct lxm_limits){
		.memory = -1,
		.memory_swap = true,
		.cpu_quota_us = -1,
		.cpu_period_us = -1,
		.cpu_weight = -1,
		.processes = -1,
		.hugepages = { -1, -1, -1, -1 },
		.disk_priority = -1,
	};

	if ((r = cfg_bool(expanded_config, KEY_PRIVILEGED, false, &p->privileged, err)) < 0 ||
	    (r = cfg_bool(expanded_config, KEY_NESTING, false, &p->nesting, err)) < 0 ||
	    (r = compile_limits(p, expanded_config, host, err)) < 0 ||
	    (r = compile_caps(p, expanded_config, err)) < 0 ||
	    (r = compile_syscalls(p, expanded_config, err)) < 0 ||
	    (r = compile_apparmor(p, name, expanded_config, host, err)) < 0 ||
	    (r = compile_selinux(p, expanded_config, host, err)) < 0 ||
	    (r = compile_boot(p, expanded_config, err)) < 0 ||
	    (r = compile_idmap(p, expanded_config, err)) < 0) {
		if (r == -ENOMEM)
			return lxm_error_set(err, r, 500, "compile policy: out of memory");
		return r;
	}
	*ret = TAKE_PTR(p);
	return 0;
}

void lxm_policy_free(struct lxm_policy *p)
{
	if (!p)
		return;
	free(p->limits.cpuset);
	lxm_strv_free(p->syscalls_deny);
	lxm_strv_free(p->syscalls_allow);
	free(p->apparmor_profile);
	free(p->apparmor_text);
	free(p->selinux_label);
	free(p->raw_idmap);
	free(p);
}
