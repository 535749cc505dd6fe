/* lxm init, lxm launch, lxm delete. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/util.h"
#include "lxm/commands.h"
#include "lxm/remotes.h"
#include "lxm/image-transfer.h"

struct init_args {
	bool empty;	  /* --empty: no image, an empty root file system */
	bool no_profiles; /* --no-profiles: "profiles": [] rather than the server's default */
	json_t *profiles; /* -p values in order, NULL when none was given */
	json_t *config;	  /* -c key=value pairs */
	const char *type; /* "container" or, with --vm, "virtual-machine" */
	bool ephemeral;	  /* -e */
};

static void init_args_done(struct init_args *a)
{
	json_decref(a->profiles);
	json_decref(a->config);
}

static int parse_init(int argc, char **argv, struct init_args *a, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "empty", no_argument, NULL, 'E' },
		{ "profile", required_argument, NULL, 'p' },
		{ "no-profiles", no_argument, NULL, 'n' },
		{ "config", required_argument, NULL, 'c' },
		{ "vm", no_argument, NULL, 'v' },
		{ "ephemeral", no_argument, NULL, 'e' },
		{},
	};
	const char *cmd = argv[0];
	int opt;

	a->type = "container";
	a->config = json_object();
	if (!a->config)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":p:c:e", options, NULL)) != -1) {
		_cleanup_free_ char *key = NULL, *value = NULL;

		switch (opt) {
		case 'E':
			a->empty = true;
			break;
		case 'n':
			a->no_profiles = true;
			break;
		case 'v':
			a->type = "virtual-machine";
			break;
		case 'e':
			a->ephemeral = true;
			break;
		case 'p':
			if (!a->profiles && !(a->profiles = json_array()))
				return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
			if (json_array_append_new(a->profiles, json_string(optarg)) < 0)
				return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
			break;
		case 'c':
			if (lxm_cli_split_kv(optarg, &key, &value) < 0)
				return lxm_error_set(err, -EINVAL, 400,
						     "%s: invalid config '%s': expected KEY=VALUE",
						     cmd, optarg);
			if (json_object_set_new(a->config, key, json_string(value)) < 0)
				return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
			break;
		default:
			return lxm_cli_flag_error(cmd, argv, opt, err);
		}
	}
	if (a->no_profiles && a->profiles)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s: --no-profiles and --profile cannot be used together",
				     cmd);
	return 0;
}

/* The instance an operation created: lxc reads resources.instances, then resources.containers. */
static const char *created_name(const json_t *op)
{
	const json_t *res = json_object_get(op, "resources");
	const char *url = json_string_value(json_array_get(json_object_get(res, "instances"), 0));
	const char *slash;

	if (!url)
		url = json_string_value(json_array_get(json_object_get(res, "containers"), 0));
	slash = url ? strrchr(url, '/') : NULL;
	return slash ? slash + 1 : url;
}

/* Whether name looks like an image fingerprint (or a prefix of one lxmd resolves). */
static bool is_fingerprint(const char *name)
{
	size_t n = strlen(name);

	return n >= 12 && n <= 64 && strspn(name, "0123456789abcdef") == n;
}

/* Whether the local server's alias name targets a virtual-machine image; 0 when it does not or
 * the alias does not exist (yet: template images are built on first use). */
static int alias_is_vm(struct lxm_client *c, const char *name, struct lxm_error **err)
{
	_cleanup_free_ char *ename = lxm_url_escape(name), *path = NULL, *ipath = NULL;
	_cleanup_json_ json_t *alias = NULL, *img = NULL;
	struct lxm_error *e = NULL;
	const char *target, *type;
	int r;

	if (!ename || asprintf(&path, "/1.0/images/aliases/%s", ename) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	r = lxm_client_do(c, "GET", path, NULL, &alias, &e);
	if (r < 0) {
		r = e->status == 404 ? 0 : r;
		if (r < 0)
			*err = e;
		else
			lxm_error_free(e);
		return r;
	}
	target = json_string_value(json_object_get(alias, "target"));
	if (!target || asprintf(&ipath, "/1.0/images/%s", target) < 0)
		return 0;
	if ((r = lxm_client_do(c, "GET", ipath, NULL, &img, err)) < 0)
		return r;
	type = json_string_value(json_object_get(img, "type"));
	return type && streq(type, "virtual-machine");
}

/* --vm with an alias of the local server: its virtual-machine variant "<alias>/vm" (busybox ->
 * busybox/vm, debian/12 -> debian/12/vm) unless the alias is a VM image's already. A fingerprint
 * or an alias ending in "/vm" is used as is. *ret_changed gets whether source changed. */
static int pick_vm_variant(struct lxm_client *c, json_t *source, bool *ret_changed,
			   struct lxm_error **err)
{
	const char *alias = json_string_value(json_object_get(source, "alias"));
	_cleanup_free_ char *variant = NULL;
	int r;

	*ret_changed = false;
	if (!alias || json_object_get(source, "server") || is_fingerprint(alias) ||
	    (strlen(alias) >= 3 && streq(alias + strlen(alias) - 3, "/vm")) || streq(alias, "vm"))
		return 0;
	r = alias_is_vm(c, alias, err);
	if (r != 0)
		return r < 0 ? r : 0;
	if (asprintf(&variant, "%s/vm", alias) < 0 ||
	    json_object_set_new(source, "alias", json_string(variant)) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "out of memory");
	*ret_changed = true;
	return 0;
}

/* init and launch: create from IMAGE (or --empty), then start for launch. */
static int create_instance(int argc, char **argv, bool start, struct lxm_error **err)
{
	_cleanup_(init_args_done) struct init_args a = {};
	_cleanup_client_ struct lxm_client *c = NULL;
	_cleanup_json_ json_t *body = NULL, *op = NULL, *source = NULL;
	_cleanup_free_ char *state_path = NULL;
	const char *cmd = argv[0], *name, *image = NULL;
	struct lxm_op_progress progress;
	bool variant = false;
	int r, nargs;

	r = parse_init(argc, argv, &a, err);
	if (r < 0)
		return r;
	nargs = argc - optind;
	if (a.empty) {
		if (start)
			return lxm_error_set(
				err, -EINVAL, 400,
				"%s: --empty makes an instance with nothing to boot; use "
				"'lxm init --empty'",
				cmd);
		r = lxm_cli_nargs(cmd, nargs, 0, 1, "at most one instance NAME", err);
		if (r < 0)
			return r;
		name = nargs == 1 ? argv[optind] : NULL;
		source = json_pack("{s:s}", "type", "none");
	} else {
		r = lxm_cli_nargs(cmd, nargs, 1, 2, "IMAGE [NAME] (or --empty [NAME])", err);
		if (r < 0)
			return r;
		image = argv[optind];
		name = nargs == 2 ? argv[optind + 1] : NULL;
		/* REMOTE:NAME creates the instance on that remote. */
		if (name) {
			r = lxm_cli_target(name, &name, err);
			if (r < 0)
				return r;
			if (!*name)
				name = NULL;
		}
		/* Filled in once connected: REMOTE:ALIAS may need the image copied first. */
		source = json_object();
	}

	/* "profiles": null asks for the server's default profile, [] for none at all. */
	body = json_pack("{s:O, s:s, s:o?, s:O}", "source", source, "type", a.type, "profiles",
			 a.no_profiles ? json_array() : json_incref(a.profiles), "config",
			 a.config);
	if (!body || (name && json_object_set_new(body, "name", json_string(name)) < 0) ||
	    (a.ephemeral && json_object_set_new(body, "ephemeral", json_true()) < 0))
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);

	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	if (image) {
		json_decref(TAKE_PTR(source));
		r = lxm_image_source(c, image, &source, err);
		if (r >= 0 && streq(a.type, "virtual-machine"))
			r = pick_vm_variant(c, source, &variant, err);
		if (r < 0)
			return lxm_error_prefix(err, "%s", cmd);
		if (json_object_set(body, "source", source) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	}
	if (name)
		printf("Creating %s\n", name);
	else
		printf("Creating the instance\n");
	fflush(stdout);
	/* The image may be downloaded or built first: its progress shows on a terminal. */
	lxm_show_op_progress(c, &progress, "Retrieving image");
	r = lxm_client_do(c, "POST", "/1.0/instances", body, &op, err);
	/* No "<alias>/vm" on the server: the alias as given, which the server refuses with the
	 * reason (a container image) or accepts (a VM image it resolves). */
	if (r < 0 && variant && (*err)->status == 404) {
		lxm_error_free(TAKE_PTR(*err));
		if (json_object_set_new(source, "alias", json_string(image)) < 0 ||
		    json_object_set(body, "source", source) < 0)
			return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
		r = lxm_client_do(c, "POST", "/1.0/instances", body, &op, err);
	}
	lxm_client_set_progress(c, NULL, NULL);
	if (r < 0)
		return name ? lxm_error_prefix(err, "create instance '%s'", name)
			    : lxm_error_prefix(err, "create instance");
	if (!name) {
		name = created_name(op);
		if (!name)
			return lxm_error_set(
				err, -EPROTO, 502,
				"create instance: the server did not say which instance "
				"it created");
		printf("Instance name is: %s\n", name);
	}
	if (!start)
		return 0;
	printf("Starting %s\n", name);
	fflush(stdout);
	json_decref(TAKE_PTR(body));
	body = json_pack("{s:s, s:i, s:b, s:b}", "action", "start", "timeout", 0, "force", false,
			 "stateful", false);
	if (!body || asprintf(&state_path, "/1.0/instances/%s/state", name) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "%s: out of memory", cmd);
	r = lxm_client_do(c, "PUT", state_path, body, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "start '%s'", name);
	return 0;
}

int lxm_cmd_init(int argc, char **argv, struct lxm_error **err)
{
	/* "lxm init --auto" sets up the server (storage) instead of creating an instance. */
	for (int i = 1; i < argc && !streq(argv[i], "--"); i++)
		if (streq(argv[i], "--auto"))
			return lxm_storage_init_auto(argc, argv, err);
	return create_instance(argc, argv, false, err);
}

int lxm_cmd_launch(int argc, char **argv, struct lxm_error **err)
{
	return create_instance(argc, argv, true, err);
}

/* "/1.0/instances/c1", or "/1.0/instances/c1/snapshots/s0" for "c1/s0" as lxc accepts. */
static int instance_path(const char *name, char **ret)
{
	const char *slash = strchr(name, '/');
	_cleanup_free_ char *inst = strndup(name, slash ? (size_t)(slash - name) : strlen(name));
	_cleanup_free_ char *einst = inst ? lxm_url_escape(inst) : NULL, *esnap = NULL;

	if (!einst || (slash && !(esnap = lxm_url_escape(slash + 1))))
		return -ENOMEM;
	if (asprintf(ret, "/1.0/instances/%s%s%s", einst, esnap ? "/snapshots/" : "",
		     esnap ? esnap : "") < 0)
		return -ENOMEM;
	return 0;
}

static int delete_one(struct lxm_client *c, const char *name, bool force, struct lxm_error **err)
{
	_cleanup_free_ char *path = NULL, *state_path = NULL;
	_cleanup_json_ json_t *inst = NULL, *stop = NULL;
	const char *status;
	int r;

	if (instance_path(name, &path) < 0 || asprintf(&state_path, "%s/state", path) < 0)
		return lxm_error_set(err, -ENOMEM, 500, "delete '%s': out of memory", name);
	r = lxm_client_request(c, "GET", path, NULL, &inst, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "delete '%s'", name);

	/* Snapshots have no status; instances that run must be stopped first, by the user or
	 * with --force, as lxc asks. */
	status = json_string_value(json_object_get(inst, "status"));
	if (!strchr(name, '/') && status && !streq(status, "Stopped") && !streq(status, "Error")) {
		if (!force)
			return lxm_error_set(err, -EBUSY, 409,
					     "delete '%s': the instance is currently %s; stop it "
					     "first or use --force",
					     name, status);
		stop = json_pack("{s:s, s:i, s:b, s:b}", "action", "stop", "timeout", -1, "force",
				 1, "stateful", 0);
		if (!stop)
			return lxm_error_set(err, -ENOMEM, 500, "delete '%s': out of memory", name);
		r = lxm_client_do(c, "PUT", state_path, stop, NULL, err);
		if (r < 0)
			return lxm_error_prefix(err, "delete '%s': stop", name);
	}
	r = lxm_client_do(c, "DELETE", path, NULL, NULL, err);
	if (r < 0)
		return lxm_error_prefix(err, "delete '%s'", name);
	return 0;
}

int lxm_cmd_delete(int argc, char **argv, struct lxm_error **err)
{
	static const struct option options[] = {
		{ "force", no_argument, NULL, 'f' },
		{},
	};
	_cleanup_client_ struct lxm_client *c = NULL;
	const char *cmd = argv[0];
	bool force = false;
	int opt, r;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f", options, NULL)) != -1) {
		if (opt != 'f')
			return lxm_cli_flag_error(cmd, argv, opt, err);
		force = true;
	}
	r = lxm_cli_nargs(cmd, argc - optind, 1, -1, "at least one instance NAME", err);
	if (r >= 0)
		r = lxm_cli_target_all(argv + optind, argc - optind, err);
	if (r < 0)
		return r;
	r = lxm_cli_connect(&c, err);
	if (r < 0)
		return r;
	for (int i = optind; i < argc; i++) {
		r = delete_one(c, argv[i], force, err);
		if (r < 0)
			return r;
	}
	return 0;
}
