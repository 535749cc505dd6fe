/* The container spec as JSON: lxmd writes it, lxm-monitor reads it. Parsing checks everything the
 * setup later relies on (absolute paths, id map ranges, device types), so a bad spec fails at load
 * with the name of the field instead of halfway through a container start. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "container/spec.h"
#include "json.h"
#include "util.h"

/* The kernel accepts at most this many lines in a uid_map or gid_map (since Linux 4.15). */
#define IDMAP_MAX_LINES 340
/* sethostname() takes at most HOST_NAME_MAX (64) bytes. */
#define HOSTNAME_MAX 64

DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_container_spec *, lxm_container_spec_free)

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "unknown";
}

/* Every message names the field by its full path: "spec field 'mounts[1].target': ...". */
static int bad_field(struct lxm_error **err, const char *path, const char *what, const json_t *v)
{
	if (v)
		return lxm_error_set(err, -EINVAL, 400, "spec field '%s': must be %s, not %s", path,
				     what, type_name(v));
	return lxm_error_set(err, -EINVAL, 400, "spec field '%s': %s", path, what);
}

static int missing_field(struct lxm_error **err, const char *path)
{
	return lxm_error_set(err, -EINVAL, 400, "spec field '%s': required", path);
}

/* Looks up key in obj; absent and null are the same. ret_path receives "prefix.key". */
static json_t *field(const json_t *obj, const char *prefix, const char *key, char *path,
		     size_t pathlen)
{
	json_t *v = json_object_get(obj, key);

	snprintf(path, pathlen, "%s%s%s", prefix, prefix[0] ? "." : "", key);
	return json_is_null(v) ? NULL : v;
}

static int get_string(const json_t *obj, const char *prefix, const char *key, bool required,
		      char **ret, struct lxm_error **err)
{
	char path[128];
	json_t *v = field(obj, prefix, key, path, sizeof(path));

	if (!v)
		return required ? missing_field(err, path) : 0;
	if (!json_is_string(v))
		return bad_field(err, path, "a string", v);
	if (required && json_string_length(v) == 0)
		return bad_field(err, path, "must not be empty", NULL);
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : -ENOMEM;
}

static int get_path(const json_t *obj, const char *prefix, const char *key, bool required,
		    char **ret, struct lxm_error **err)
{
	char path[128];
	int r = get_string(obj, prefix, key, required, ret, err);

	if (r < 0 || !*ret)
		return r;
	if ((*ret)[0] != '/') {
		snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", key);
		return lxm_error_set(err, -EINVAL, 400,
				     "spec field '%s': '%s' is not an absolute path", path, *ret);
	}
	return 0;
}

static int get_bool(const json_t *obj, const char *prefix, const char *key, bool *ret,
		    struct lxm_error **err)
{
	char path[128];
	json_t *v = field(obj, prefix, key, path, sizeof(path));

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return bad_field(err, path, "a boolean", v);
	*ret = json_is_true(v);
	return 0;
}

/* An integer within [min, max]; absent keeps *ret unless required. */
static int get_int(const json_t *obj, const char *prefix, const char *key, bool required,
		   int64_t min, int64_t max, int64_t *ret, struct lxm_error **err)
{
	char path[128];
	json_t *v = field(obj, prefix, key, path, sizeof(path));
	json_int_t i;

	if (!v)
		return required ? missing_field(err, path) : 0;
	if (!json_is_integer(v))
		return bad_field(err, path, "an integer", v);
	i = json_integer_value(v);
	if (i < min || i > max)
		return lxm_error_set(err, -ERANGE, 400,
				     "spec field '%s': %lld is out of range (%lld to %lld)", path,
				     (long long)i, (long long)min, (long long)max);
	*ret = i;
	return 0;
}

static int get_u32(const json_t *obj, const char *prefix, const char *key, bool required,
		   uint32_t min, uint32_t max, uint32_t *ret, struct lxm_error **err)
{
	int64_t v = *ret;
	int r = get_int(obj, prefix, key, required, min, max, &v, err);

	if (r >= 0)
		*ret = (uint32_t)v;
	return r;
}

static int get_u64(const json_t *obj, const char *key, uint64_t *ret, struct lxm_error **err)
{
	int64_t v = (int64_t)*ret;
	int r = get_int(obj, "", key, false, 0, INT64_MAX, &v, err);

	if (r >= 0)
		*ret = (uint64_t)v;
	return r;
}

/* A NULL-terminated string array; non_empty demands at least one entry. */
static int get_strv(const json_t *obj, const char *key, bool required, bool non_empty, char ***ret,
		    struct lxm_error **err)
{
	_cleanup_strv_ char **v = NULL;
	char path[128];
	json_t *a = field(obj, "", key, path, sizeof(path)), *e;
	size_t i;

	if (!a)
		return required ? missing_field(err, path) : 0;
	if (!json_is_array(a))
		return bad_field(err, path, "an array of strings", a);
	if (non_empty && json_array_size(a) == 0)
		return bad_field(err, path, "must have at least one entry", NULL);
	v = calloc(json_array_size(a) + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	json_array_foreach (a, i, e) {
		if (!json_is_string(e)) {
			snprintf(path, sizeof(path), "%s[%zu]", key, i);
			return bad_field(err, path, "a string", e);
		}
		v[i] = strdup(json_string_value(e));
		if (!v[i])
			return -ENOMEM;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

/* Ranges [a, a+n) and [b, b+m) intersect. */
static bool ranges_overlap(uint64_t a, uint64_t n, uint64_t b, uint64_t m)
{
	return a < b + m && b < a + n;
}

/* One id map: each line's ranges must fit in 32 bits and not overlap another line's, on either
 * side, or the kernel rejects the whole map when the monitor writes it. */
static int get_idmap(const json_t *obj, const char *key, struct lxm_idmap **ret, size_t *ret_n,
		     struct lxm_error **err)
{
	_cleanup_free_ struct lxm_idmap *map = NULL;
	char path[128], prefix[64];
	json_t *a = field(obj, "", key, path, sizeof(path)), *e;
	size_t i, n;
	int r;

	if (!a)
		return 0;
	if (!json_is_array(a))
		return bad_field(err, path, "an array of {nsid, hostid, count} objects", a);
	n = json_array_size(a);
	if (n > IDMAP_MAX_LINES)
		return lxm_error_set(err, -E2BIG, 400,
				     "spec field '%s': %zu lines, the kernel takes at most %d",
				     path, n, IDMAP_MAX_LINES);
	if (n == 0) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	map = calloc(n, sizeof(*map));
	if (!map)
		return -ENOMEM;
	json_array_foreach (a, i, e) {
		struct lxm_idmap *m = &map[i];

		snprintf(prefix, sizeof(prefix), "%s[%zu]", key, i);
		if (!json_is_object(e))
			return bad_field(err, prefix, "an object {nsid, hostid, count}", e);
		r = get_u32(e, prefix, "nsid", true, 0, UINT32_MAX - 1, &m->nsid, err);
		if (r >= 0)
			r = get_u32(e, prefix, "hostid", true, 0, UINT32_MAX - 1, &m->hostid, err);
		if (r >= 0)
			r = get_u32(e, prefix, "count", true, 1, UINT32_MAX, &m->count, err);
		if (r < 0)
			return r;
		/* -1 (4294967295) is never a valid id: it means "no id" to chown(). */
		if ((uint64_t)m->nsid + m->count > UINT32_MAX ||
		    (uint64_t)m->hostid + m->count > UINT32_MAX)
			return lxm_error_set(
				err, -ERANGE, 400,
				"spec field '%s': ids %u+%u or %u+%u go past 4294967294", prefix,
				m->nsid, m->count, m->hostid, m->count);
		for (size_t j = 0; j < i; j++) {
			const struct lxm_idmap *o = &map[j];

			if (ranges_overlap(m->nsid, m->count, o->nsid, o->count) ||
			    ranges_overlap(m->hostid, m->count, o->hostid, o->count))
				return lxm_error_set(err, -EINVAL, 400,
						     "spec field '%s': overlaps %s[%zu]", prefix,
						     key, j);
		}
	}
	*ret = TAKE_PTR(map);
	*ret_n = n;
	return 0;
}

static void mount_clear(struct lxm_spec_mount *m)
{
	free(m->source);
	free(m->target);
	free(m->fstype);
	free(m->options);
}

static int get_mounts(const json_t *obj, struct lxm_container_spec *s, struct lxm_error **err)
{
	char path[128], prefix[64];
	json_t *a = field(obj, "", "mounts", path, sizeof(path)), *e;
	size_t i;
	int r;

	if (!a)
		return 0;
	if (!json_is_array(a))
		return bad_field(err, path, "an array of mount objects", a);
	if (json_array_size(a) == 0)
		return 0;
	s->mounts = calloc(json_array_size(a), sizeof(*s->mounts));
	if (!s->mounts)
		return -ENOMEM;
	json_array_foreach (a, i, e) {
		struct lxm_spec_mount *m = &s->mounts[i];

		s->n_mounts = i + 1;
		snprintf(prefix, sizeof(prefix), "mounts[%zu]", i);
		if (!json_is_object(e))
			return bad_field(err, prefix, "an object", e);
		r = get_string(e, prefix, "source", true, &m->source, err);
		if (r >= 0)
			r = get_path(e, prefix, "target", true, &m->target, err);
		if (r >= 0)
			r = get_string(e, prefix, "fstype", false, &m->fstype, err);
		if (r >= 0)
			r = get_string(e, prefix, "options", false, &m->options, err);
		if (r >= 0)
			r = get_bool(e, prefix, "readonly", &m->readonly, err);
		if (r >= 0)
			r = get_bool(e, prefix, "optional", &m->optional, err);
		if (r < 0)
			return r;
		if (!m->fstype) {
			m->fstype = strdup("bind");
			if (!m->fstype)
				return -ENOMEM;
		}
		if (streq(m->fstype, "bind") && m->source[0] != '/')
			return lxm_error_set(err, -EINVAL, 400,
					     "spec field '%s.source': '%s' is not an absolute path",
					     prefix, m->source);
	}
	return 0;
}

/* A /dev path of plain components (no "..", ".", or empty ones), so a device can never be
 * created outside the container's /dev. */
static bool dev_path_valid(const char *p)
{
	if (!startswith(p, "/dev/"))
		return false;
	for (const char *c = p + 5;;) {
		size_t n = strcspn(c, "/");

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!c[n])
			return true;
		c += n + 1;
	}
}

static int get_devices(const json_t *obj, struct lxm_container_spec *s, struct lxm_error **err)
{
	char path[128], prefix[64];
	json_t *a = field(obj, "", "devices", path, sizeof(path)), *e;
	size_t i;
	int r;

	if (!a)
		return 0;
	if (!json_is_array(a))
		return bad_field(err, path, "an array of device objects", a);
	if (json_array_size(a) == 0)
		return 0;
	s->devices = calloc(json_array_size(a), sizeof(*s->devices));
	if (!s->devices)
		return -ENOMEM;
	json_array_foreach (a, i, e) {
		struct lxm_spec_device *d = &s->devices[i];
		_cleanup_free_ char *type = NULL;

		s->n_devices = i + 1;
		snprintf(prefix, sizeof(prefix), "devices[%zu]", i);
		if (!json_is_object(e))
			return bad_field(err, prefix, "an object", e);
		d->mode = 0660;
		r = get_path(e, prefix, "path", true, &d->path, err);
		if (r >= 0)
			r = get_string(e, prefix, "type", true, &type, err);
		if (r >= 0)
			r = get_u32(e, prefix, "major", true, 0, 4095, &d->major, err);
		if (r >= 0)
			r = get_u32(e, prefix, "minor", true, 0, (1U << 20) - 1, &d->minor, err);
		if (r >= 0)
			r = get_u32(e, prefix, "mode", false, 0, 07777, &d->mode, err);
		if (r >= 0)
			r = get_u32(e, prefix, "uid", false, 0, UINT32_MAX - 1, &d->uid, err);
		if (r >= 0)
			r = get_u32(e, prefix, "gid", false, 0, UINT32_MAX - 1, &d->gid, err);
		if (r < 0)
			return r;
		if (!dev_path_valid(d->path))
			return lxm_error_set(err, -EINVAL, 400,
					     "spec field '%s.path': '%s' is not a path under /dev/",
					     prefix, d->path);
		if (!streq(type, "c") && !streq(type, "b"))
			return lxm_error_set(
				err, -EINVAL, 400,
				"spec field '%s.type': must be \"c\" or \"b\", not \"%s\"", prefix,
				type);
		d->type = type[0];
	}
	return 0;
}

void lxm_spec_nic_clear(struct lxm_spec_nic *n)
{
	free(n->device);
	free(n->host_name);
	free(n->bridge);
	free(n->inner);
	free(n->hwaddr);
}

static int get_nics(const json_t *obj, struct lxm_container_spec *s, struct lxm_error **err)
{
	char path[128], prefix[64];
	json_t *a = field(obj, "", "nics", path, sizeof(path)), *e;
	size_t i;
	int r;

	if (!a)
		return 0;
	if (!json_is_array(a))
		return bad_field(err, path, "an array of nic objects", a);
	if (json_array_size(a) == 0)
		return 0;
	s->nics = calloc(json_array_size(a), sizeof(*s->nics));
	if (!s->nics)
		return -ENOMEM;
	json_array_foreach (a, i, e) {
		struct lxm_spec_nic *n = &s->nics[i];
		int64_t ingress = 0, egress = 0;
		uint32_t mtu = 0;

		s->n_nics = i + 1;
		snprintf(prefix, sizeof(prefix), "nics[%zu]", i);
		if (!json_is_object(e))
			return bad_field(err, prefix, "an object", e);
		r = get_string(e, prefix, "device", true, &n->device, err);
		if (r >= 0)
			r = get_string(e, prefix, "host_name", true, &n->host_name, err);
		if (r >= 0)
			r = get_string(e, prefix, "bridge", true, &n->bridge, err);
		if (r >= 0)
			r = get_string(e, prefix, "name", true, &n->inner, err);
		if (r >= 0)
			r = get_string(e, prefix, "hwaddr", true, &n->hwaddr, err);
		if (r >= 0)
			r = get_u32(e, prefix, "mtu", false, 0, 65535, &mtu, err);
		if (r >= 0)
			r = get_int(e, prefix, "ingress", false, 0, INT64_MAX, &ingress, err);
		if (r >= 0)
			r = get_int(e, prefix, "egress", false, 0, INT64_MAX, &egress, err);
		if (r < 0)
			return r;
		n->mtu = mtu;
		n->ingress = (uint64_t)ingress;
		n->egress = (uint64_t)egress;
	}
	return 0;
}

static int check_spec(const struct lxm_container_spec *s, struct lxm_error **err)
{
	const char *reason;

	if (strlen(s->hostname) > HOSTNAME_MAX)
		return lxm_error_set(err, -EINVAL, 400,
				     "spec field 'hostname': longer than %d bytes", HOSTNAME_MAX);
	if (s->init[0][0] != '/')
		return lxm_error_set(err, -EINVAL, 400,
				     "spec field 'init[0]': '%s' is not an absolute path",
				     s->init[0]);
	for (size_t i = 0; s->env && s->env[i]; i++)
		if (!strchr(s->env[i], '=') || s->env[i][0] == '=')
			return lxm_error_set(err, -EINVAL, 400,
					     "spec field 'env[%zu]': '%s' is not KEY=VALUE", i,
					     s->env[i]);
	if (!s->privileged && (s->n_uidmap == 0 || s->n_gidmap == 0))
		return lxm_error_set(err, -EINVAL, 400,
				     "spec field '%s': required for an unprivileged container",
				     s->n_uidmap == 0 ? "uidmap" : "gidmap");
	reason = lxm_name_invalid_reason(s->name);
	if (reason)
		return lxm_error_set(err, -EINVAL, 400, "spec field 'name': %s", reason);
	return 0;
}

int lxm_container_spec_from_json(const json_t *j, struct lxm_container_spec **ret,
				 struct lxm_error **err)
{
	_cleanup_(lxm_container_spec_freep) struct lxm_container_spec *s = NULL;
	int64_t sig = SIGPWR;
	int r;

	if (!json_is_object(j))
		return lxm_error_set(err, -EINVAL, 400, "spec: must be a JSON object, not %s",
				     j ? type_name(j) : "nothing");
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;

	r = get_string(j, "", "name", true, &s->name, err);
	if (r >= 0)
		r = get_string(j, "", "hostname", false, &s->hostname, err);
	if (r >= 0)
		r = get_path(j, "", "rootfs", true, &s->rootfs, err);
	if (r >= 0)
		r = get_strv(j, "init", true, true, &s->init, err);
	if (r >= 0)
		r = get_strv(j, "env", false, false, &s->env, err);
	if (r >= 0)
		r = get_bool(j, "", "privileged", &s->privileged, err);
	if (r >= 0)
		r = get_idmap(j, "uidmap", &s->uidmap, &s->n_uidmap, err);
	if (r >= 0)
		r = get_idmap(j, "gidmap", &s->gidmap, &s->n_gidmap, err);
	if (r >= 0)
		r = get_path(j, "", "cgroup_v2", false, &s->cgroup_v2, err);
	if (r >= 0)
		r = get_strv(j, "cgroup_v1", false, false, &s->cgroup_v1, err);
	if (r >= 0)
		r = get_string(j, "", "cgroup_ns_root", false, &s->cgroup_ns_root, err);
	if (r >= 0)
		r = get_u64(j, "caps_drop", &s->caps_drop, err);
	if (r >= 0)
		r = get_strv(j, "syscalls_deny", false, false, &s->syscalls_deny, err);
	if (r >= 0)
		r = get_strv(j, "syscalls_allow", false, false, &s->syscalls_allow, err);
	if (r >= 0)
		r = get_bool(j, "", "nesting", &s->nesting, err);
	if (r >= 0)
		r = get_string(j, "", "apparmor_profile", false, &s->apparmor_profile, err);
	if (r >= 0)
		r = get_string(j, "", "apparmor_text", false, &s->apparmor_text, err);
	if (r >= 0)
		r = get_string(j, "", "selinux_label", false, &s->selinux_label, err);
	if (r >= 0)
		r = get_bool(j, "", "no_new_privs", &s->no_new_privs, err);
	if (r >= 0)
		r = get_bool(j, "", "allow_forced_umount", &s->allow_forced_umount, err);
	if (r >= 0)
		r = get_mounts(j, s, err);
	if (r >= 0)
		r = get_devices(j, s, err);
	if (r >= 0)
		r = get_nics(j, s, err);
	if (r >= 0)
		r = get_int(j, "", "time_offset_monotonic", false, INT32_MIN, INT32_MAX,
			    &s->time_offset_monotonic, err);
	if (r >= 0)
		r = get_int(j, "", "time_offset_boottime", false, INT32_MIN, INT32_MAX,
			    &s->time_offset_boottime, err);
	if (r >= 0)
		r = get_u64(j, "run_size", &s->run_size, err);
	if (r >= 0)
		r = get_int(j, "", "halt_signal", false, 1, _NSIG - 1, &sig, err);
	if (r >= 0)
		r = get_path(j, "", "rundir", false, &s->rundir, err);
	if (r >= 0)
		r = get_path(j, "", "control_socket", false, &s->control_socket, err);
	if (r >= 0)
		r = get_path(j, "", "console_log", false, &s->console_log, err);
	if (r >= 0)
		r = get_u64(j, "console_log_max", &s->console_log_max, err);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "spec"); /* only when no field said more */
	s->halt_signal = (int)sig;
	if (!s->hostname) {
		s->hostname = strdup(s->name);
		if (!s->hostname)
			return -ENOMEM;
	}
	r = check_spec(s, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

static int set_new(json_t *o, const char *key, json_t *v)
{
	return v ? json_object_set_new(o, key, v) : -1;
}

static json_t *strv_json(char **v)
{
	json_t *a = json_array();

	for (size_t i = 0; a && v && v[i]; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *idmap_json(const struct lxm_idmap *m, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a,
					  json_pack("{s:I,s:I,s:I}", "nsid", (json_int_t)m[i].nsid,
						    "hostid", (json_int_t)m[i].hostid, "count",
						    (json_int_t)m[i].count)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *mounts_json(const struct lxm_container_spec *s)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < s->n_mounts; i++) {
		const struct lxm_spec_mount *m = &s->mounts[i];
		json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:b}", "source", m->source, "target",
				      m->target, "fstype", m->fstype ? m->fstype : "bind",
				      "readonly", m->readonly, "optional", m->optional);

		if (o && m->options && set_new(o, "options", json_string(m->options)) < 0)
			json_decref(TAKE_PTR(o));
		if (json_array_append_new(a, o) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *devices_json(const struct lxm_container_spec *s)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < s->n_devices; i++) {
		const struct lxm_spec_device *d = &s->devices[i];
		char type[2] = { d->type, '\0' };

		if (json_array_append_new(
			    a, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "path", d->path, "type",
					 type, "major", (json_int_t)d->major, "minor",
					 (json_int_t)d->minor, "mode", (json_int_t)d->mode, "uid",
					 (json_int_t)d->uid, "gid", (json_int_t)d->gid)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *nics_json(const struct lxm_container_spec *s)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < s->n_nics; i++) {
		const struct lxm_spec_nic *n = &s->nics[i];

		if (json_array_append_new(
			    a, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "device", n->device,
					 "host_name", n->host_name, "bridge", n->bridge, "name",
					 n->inner, "hwaddr", n->hwaddr, "mtu", (json_int_t)n->mtu,
					 "ingress", (json_int_t)n->ingress, "egress",
					 (json_int_t)n->egress)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

json_t *lxm_container_spec_to_json(const struct lxm_container_spec *s)
{
	_cleanup_json_ json_t *o = json_object();
	const struct {
		const char *key;
		const char *value;
	} strings[] = {
		{ "name", s->name },
		{ "hostname", s->hostname },
		{ "rootfs", s->rootfs },
		{ "cgroup_v2", s->cgroup_v2 },
		{ "cgroup_ns_root", s->cgroup_ns_root },
		{ "apparmor_profile", s->apparmor_profile },
		{ "apparmor_text", s->apparmor_text },
		{ "selinux_label", s->selinux_label },
		{ "rundir", s->rundir },
		{ "control_socket", s->control_socket },
		{ "console_log", s->console_log },
	};
	int r = 0;

	if (!o)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
		if (strings[i].value)
			r |= set_new(o, strings[i].key, json_string(strings[i].value));
	r |= set_new(o, "init", strv_json(s->init));
	if (s->env)
		r |= set_new(o, "env", strv_json(s->env));
	if (s->cgroup_v1)
		r |= set_new(o, "cgroup_v1", strv_json(s->cgroup_v1));
	if (s->syscalls_deny)
		r |= set_new(o, "syscalls_deny", strv_json(s->syscalls_deny));
	/* An empty allow list is still allow-list mode (everything denied), so it is kept. */
	if (s->syscalls_allow)
		r |= set_new(o, "syscalls_allow", strv_json(s->syscalls_allow));
	r |= set_new(o, "privileged", json_boolean(s->privileged));
	r |= set_new(o, "uidmap", idmap_json(s->uidmap, s->n_uidmap));
	r |= set_new(o, "gidmap", idmap_json(s->gidmap, s->n_gidmap));
	r |= set_new(o, "caps_drop", json_integer((json_int_t)s->caps_drop));
	r |= set_new(o, "nesting", json_boolean(s->nesting));
	r |= set_new(o, "no_new_privs", json_boolean(s->no_new_privs));
	r |= set_new(o, "allow_forced_umount", json_boolean(s->allow_forced_umount));
	r |= set_new(o, "mounts", mounts_json(s));
	r |= set_new(o, "devices", devices_json(s));
	if (s->n_nics)
		r |= set_new(o, "nics", nics_json(s));
	r |= set_new(o, "time_offset_monotonic", json_integer(s->time_offset_monotonic));
	r |= set_new(o, "time_offset_boottime", json_integer(s->time_offset_boottime));
	r |= set_new(o, "run_size", json_integer((json_int_t)s->run_size));
	r |= set_new(o, "halt_signal", json_integer(s->halt_signal));
	r |= set_new(o, "console_log_max", json_integer((json_int_t)s->console_log_max));
	if (r != 0)
		return NULL;
	return TAKE_PTR(o);
}

int lxm_container_spec_load(const char *path, struct lxm_container_spec **ret,
			    struct lxm_error **err)
{
	_cleanup_json_ json_t *j = NULL;
	int r;

	r = lxm_json_load_file(path, "spec", &j, err);
	if (r < 0)
		return r;
	r = lxm_container_spec_from_json(j, ret, err);
	if (r < 0)
		lxm_error_prefix(err, "spec %s", path);
	return r;
}

int lxm_container_spec_save(const struct lxm_container_spec *s, const char *path,
			    struct lxm_error **err)
{
	_cleanup_json_ json_t *j = lxm_container_spec_to_json(s);
	_cleanup_free_ char *data = NULL;
	int r;

	if (j)
		data = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!data)
		return lxm_error_set(err, -ENOMEM, 500, "save spec %s: out of memory", path);
	r = lxm_write_file_atomic(path, data, strlen(data), 0600);
	if (r < 0)
		return lxm_error_setx(err, r, 500, "save spec %s", path);
	return 0;
}

void lxm_container_spec_free(struct lxm_container_spec *s)
{
	if (!s)
		return;
	free(s->name);
	free(s->hostname);
	free(s->rootfs);
	lxm_strv_free(s->init);
	lxm_strv_free(s->env);
	free(s->uidmap);
	free(s->gidmap);
	free(s->cgroup_v2);
	lxm_strv_free(s->cgroup_v1);
	free(s->cgroup_ns_root);
	lxm_strv_free(s->syscalls_deny);
	lxm_strv_free(s->syscalls_allow);
	free(s->apparmor_profile);
	free(s->apparmor_text);
	free(s->selinux_label);
	for (size_t i = 0; i < s->n_mounts; i++)
		mount_clear(&s->mounts[i]);
	free(s->mounts);
	for (size_t i = 0; i < s->n_devices; i++)
		free(s->devices[i].path);
	free(s->devices);
	for (size_t i = 0; i < s->n_nics; i++)
		lxm_spec_nic_clear(&s->nics[i]);
	free(s->nics);
	free(s->rundir);
	free(s->control_socket);
	free(s->console_log);
	free(s);
}
