/* The VM spec (vm-spec.h): reading and checking it. lxmd builds the JSON itself (instance.c);
 * lxm_qemu_argv() checks the QEMU side again when the monitor builds the command line. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "json.h"
#include "util.h"
#include "vm/vm-spec.h"

void lxm_vm_spec_free(struct lxm_vm_spec *s)
{
	if (!s)
		return;
	json_decref(s->json);
	free(s->cgroup_v1);
	free(s->nics);
	free(s->qemu_nics);
	free(s);
}

/* An optional string field (NULL when absent); a present one must be a string. */
static int opt_string(const json_t *j, const char *key, const char **ret, struct lxm_error **err)
{
	*ret = NULL;
	return lxm_json_opt_string(j, key, ret, err);
}

static int req_string(const json_t *j, const char *key, const char **ret, struct lxm_error **err)
{
	int r = opt_string(j, key, ret, err);

	if (r >= 0 && !*ret)
		return lxm_error_set(err, -EINVAL, 400, "field '%s' is required", key);
	return r;
}

static int opt_int(const json_t *j, const char *key, json_int_t min, json_int_t max,
		   json_int_t *ret, struct lxm_error **err)
{
	json_t *v = json_object_get(j, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return lxm_error_set(err, -EINVAL, 400,
				     "field '%s' is not an integer from %lld to %lld", key,
				     (long long)min, (long long)max);
	*ret = json_integer_value(v);
	return 0;
}

static int parse_nics(struct lxm_vm_spec *s, const json_t *arr, struct lxm_error **err)
{
	size_t idx;
	json_t *n;

	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > LXM_QEMU_NICS_MAX)
		return lxm_error_set(err, -EINVAL, 400,
				     "field 'nics' is not an array of at most %d",
				     LXM_QEMU_NICS_MAX);
	s->n_nics = json_array_size(arr);
	s->nics = calloc(s->n_nics + 1, sizeof(*s->nics));
	s->qemu_nics = calloc(s->n_nics + 1, sizeof(*s->qemu_nics));
	if (!s->nics || !s->qemu_nics)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	json_array_foreach (arr, idx, n) {
		struct lxm_vm_spec_nic *v = &s->nics[idx];
		json_int_t mtu = 0;
		int r;

		if (!json_is_object(n))
			return lxm_error_set(err, -EINVAL, 400, "nics[%zu] is not an object", idx);
		if ((r = req_string(n, "device", &v->device, err)) < 0 ||
		    (r = opt_string(n, "bridge", &v->bridge, err)) < 0 ||
		    (r = req_string(n, "host_name", &v->host_name, err)) < 0 ||
		    (r = req_string(n, "mac", &v->mac, err)) < 0 ||
		    (r = opt_int(n, "mtu", 0, 65535, &mtu, err)) < 0)
			return lxm_error_prefix(err, "nics[%zu]", idx);
		v->mtu = (unsigned)mtu;
		s->qemu_nics[idx] = (struct lxm_qemu_nic){ .ifname = v->host_name, .mac = v->mac };
	}
	s->qemu.nics = s->qemu_nics;
	s->qemu.n_nics = s->n_nics;
	return 0;
}

static int parse(struct lxm_vm_spec *s, struct lxm_error **err)
{
	const json_t *j = s->json;
	json_t *root = json_object_get(j, "root"), *v1 = json_object_get(j, "cgroup_v1");
	const char *accel = NULL, *format = NULL;
	json_int_t vcpus = 0, mem = 0, max = 0, timeout = -1;
	int r;

	if (!json_is_object(j))
		return lxm_error_set(err, -EINVAL, 400, "not a JSON object");
	if ((r = req_string(j, "name", &s->name, err)) < 0 ||
	    (r = req_string(j, "uuid", &s->qemu.uuid, err)) < 0 ||
	    (r = req_string(j, "rundir", &s->rundir, err)) < 0 ||
	    (r = req_string(j, "control_socket", &s->control_socket, err)) < 0 ||
	    (r = req_string(j, "qmp_socket", &s->qemu.qmp_socket, err)) < 0 ||
	    (r = opt_string(j, "agent_socket", &s->qemu.agent_socket, err)) < 0 ||
	    (r = opt_string(j, "console_log", &s->console_log, err)) < 0 ||
	    (r = opt_int(j, "console_log_max", 0, INT64_MAX, &max, err)) < 0 ||
	    (r = opt_int(j, "vcpus", 1, LXM_QEMU_VCPUS_MAX, &vcpus, err)) < 0 ||
	    (r = opt_int(j, "memory_mib", LXM_QEMU_MEMORY_MIN, LXM_QEMU_MEMORY_MAX, &mem, err)) <
		    0 ||
	    (r = req_string(j, "accel", &accel, err)) < 0 ||
	    (r = req_string(j, "kernel", &s->qemu.kernel, err)) < 0 ||
	    (r = opt_string(j, "initrd", &s->qemu.initrd, err)) < 0 ||
	    (r = opt_string(j, "cmdline", &s->qemu.cmdline, err)) < 0 ||
	    (r = opt_string(j, "cgroup_v2", &s->cgroup_v2, err)) < 0 ||
	    (r = opt_int(j, "stop_timeout", -1, INT32_MAX, &timeout, err)) < 0)
		return r;
	s->qemu.name = s->name;
	s->qemu.vcpus = vcpus ? (unsigned)vcpus : 1;
	s->qemu.memory_mib = mem ? (uint64_t)mem : 1024;
	s->qemu.accel = lxm_qemu_accel_from_string(accel);
	if (s->qemu.accel == _LXM_QEMU_ACCEL_INVALID)
		return lxm_error_set(err, -EINVAL, 400, "field 'accel': '%s' is not kvm or tcg",
				     accel);
	s->console_log_max = (uint64_t)max;
	s->stop_timeout = (int)timeout;
	s->qemu.console_fd = -1;
	if (!json_is_object(root))
		return lxm_error_set(err, -EINVAL, 400, "field 'root' is required (an object)");
	if ((r = req_string(root, "path", &s->qemu.root.path, err)) < 0 ||
	    (r = req_string(root, "format", &format, err)) < 0)
		return lxm_error_prefix(err, "root");
	s->qemu.root.format = lxm_qemu_disk_format_from_string(format);
	if (s->qemu.root.format == _LXM_QEMU_DISK_FORMAT_INVALID)
		return lxm_error_set(err, -EINVAL, 400, "root: format '%s' is not raw or qcow2",
				     format);
	if (v1 && !json_is_null(v1)) {
		size_t idx;
		json_t *e;

		if (!json_is_array(v1))
			return lxm_error_set(err, -EINVAL, 400,
					     "field 'cgroup_v1' is not an array");
		s->cgroup_v1 = calloc(json_array_size(v1) + 1, sizeof(char *));
		if (!s->cgroup_v1)
			return lxm_error_set(err, -ENOMEM, 500, "out of memory");
		json_array_foreach (v1, idx, e) {
			if (!json_is_string(e))
				return lxm_error_set(err, -EINVAL, 400,
						     "cgroup_v1[%zu] is not a string", idx);
			s->cgroup_v1[idx] = (char *)json_string_value(e);
		}
	}
	return parse_nics(s, json_object_get(j, "nics"), err);
}

int lxm_vm_spec_from_json(json_t *j, struct lxm_vm_spec **ret, struct lxm_error **err)
{
	struct lxm_vm_spec *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	s->json = json_incref(j);
	r = parse(s, err);
	if (r < 0) {
		lxm_vm_spec_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

int lxm_vm_spec_load(const char *path, struct lxm_vm_spec **ret, struct lxm_error **err)
{
	_cleanup_json_ json_t *j = NULL;
	int r;

	r = lxm_json_load_file(path, "VM spec", &j, err);
	if (r < 0)
		return r;
	r = lxm_vm_spec_from_json(j, ret, err);
	if (r < 0)
		lxm_error_prefix(err, "VM spec %s", path);
	return r;
}
