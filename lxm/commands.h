/* The CLI's verbs. main.c holds the top-level table; each verb group (profile, operation) exports
 * its own table of subcommands. One file per verb group: cmd-server.c (version, info),
 * cmd-list.c (list), cmd-instance.c (init, delete), cmd-operation.c, cmd-profile.c, cmd-file.c
 * (file push/pull/delete); shared helpers live in cmd-common.c. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "lib/error.h"
#include "lxm/client.h"
#include "lxm/format.h"

/* A verb's handler. argv[0] is the full command ("profile show") for messages, the rest are the
 * user's arguments; --help has already been handled by main. Returns 0 or a negative errno with
 * *err set; only main prints the error. A positive return (exec's command status) is the exit
 * status. */
typedef int (*lxm_command_fn)(int argc, char **argv, struct lxm_error **err);

struct lxm_command {
	const char *name;		       /* the verb as typed */
	const char *alias;		       /* lxc's short alias ("ls", "rm"), or NULL */
	lxm_command_fn run;		       /* NULL for a verb group */
	const char *summary;		       /* one line for the command list */
	const char *usage;		       /* synopsis after "lxm ": "profile show NAME" */
	const char *help;		       /* description and flags for --help, or NULL */
	const struct lxm_command *subcommands; /* a group's table, ended by a NULL name */
};

/* Table entries of the verbs most groups have. */
#define LXM_FORMAT_FLAG_HELP                                                                       \
	"Flags:\n"                                                                                 \
	"  -f, --format FMT   table (default), csv, json or yaml\n"
#define LXM_CMD(name_, fn, summary_, usage_)                                                       \
	{                                                                                          \
		.name = name_, .run = fn, .summary = summary_, .usage = usage_                     \
	}
#define LXM_CMD_LIST(fn, summary_, usage_)                                                         \
	{                                                                                          \
		.name = "list", .alias = "ls", .run = fn, .summary = summary_, .usage = usage_,    \
		.help = LXM_FORMAT_FLAG_HELP                                                       \
	}
#define LXM_CMD_DELETE(fn, summary_, usage_)                                                       \
	{                                                                                          \
		.name = "delete", .alias = "rm", .run = fn, .summary = summary_, .usage = usage_   \
	}
#define LXM_CMD_RENAME(fn, summary_, usage_)                                                       \
	{                                                                                          \
		.name = "rename", .alias = "mv", .run = fn, .summary = summary_, .usage = usage_   \
	}

/* Verb groups. */
extern const struct lxm_command lxm_operation_commands[];
extern const struct lxm_command lxm_profile_commands[];
extern const struct lxm_command lxm_config_commands[];
extern const struct lxm_command lxm_file_commands[];
extern const struct lxm_command lxm_image_commands[];
extern const struct lxm_command lxm_remote_commands[];
extern const struct lxm_command lxm_storage_commands[];
extern const struct lxm_command lxm_network_commands[];

/* cmd-server.c */
int lxm_cmd_version(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_info(int argc, char **argv, struct lxm_error **err);
/* cmd-list.c */
int lxm_cmd_list(int argc, char **argv, struct lxm_error **err);
/* cmd-instance.c */
int lxm_cmd_init(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_launch(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_delete(int argc, char **argv, struct lxm_error **err);
/* cmd-storage.c: lxm init --auto (pool "default" and the default profile's root disk) */
int lxm_storage_init_auto(int argc, char **argv, struct lxm_error **err);
/* cmd-snapshot.c */
int lxm_cmd_snapshot(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_restore(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_copy(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_move(int argc, char **argv, struct lxm_error **err);
/* cmd-lifecycle.c */
int lxm_cmd_start(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_stop(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_restart(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_pause(int argc, char **argv, struct lxm_error **err);

/* cmd-exec.c: returns the command's exit status (a positive return is main's exit status) */
int lxm_cmd_exec(int argc, char **argv, struct lxm_error **err);
/* cmd-console.c */
int lxm_cmd_console(int argc, char **argv, struct lxm_error **err);
/* cmd-image.c */
int lxm_cmd_publish(int argc, char **argv, struct lxm_error **err);
extern const struct lxm_command lxm_image_alias_commands[];
/* The "source" of POST /1.0/instances for IMAGE as typed ([REMOTE:]ALIAS): a local alias as it
 * is (the server resolves it), a pull from a simplestreams remote, or, for another lxmd, its
 * image copied to local (unless already there) and named by fingerprint. */
int lxm_image_source(struct lxm_client *local, const char *image, json_t **ret,
		     struct lxm_error **err);

/* ---- shared helpers (cmd-common.c) ---- */

/* Checks an edited document (see lxm_cli_edit_yaml). */
typedef int (*lxm_cli_edit_check_fn)(const json_t *doc, void *userdata, struct lxm_error **err);

/* A client that has already fetched GET /1.0, so a dead or foreign socket fails here, with the
 * connection message, before a command adds its own context to errors. */
int lxm_cli_connect(struct lxm_client **ret, struct lxm_error **err);

static inline void lxm_client_freep(struct lxm_client **c)
{
	lxm_client_free(*c);
}
#define _cleanup_client_ __attribute__((cleanup(lxm_client_freep)))

/* The entry of table whose name or alias is name, or NULL. */
const struct lxm_command *lxm_cli_find(const struct lxm_command *table, const char *name);

/* Runs a verb group nested in a group ("image alias list"): argv[0] is the group's path, argv[1]
 * the verb. choices lists the verbs for the error when none is given ("create, delete or
 * list"). */
int lxm_cli_dispatch(const struct lxm_command *table, const char *choices, int argc, char **argv,
		     struct lxm_error **err);

/* Checks the count of arguments after argv[0] (see lxm_cli_nargs) and connects: how most
 * verbs begin. */
int lxm_cli_open(int argc, char **argv, int min, int max, const char *expected,
		 struct lxm_client **ret, struct lxm_error **err);

/* prefix + name, percent-encoded: "/1.0/images/aliases/" + "debian/12". NULL when out of
 * memory. */
char *lxm_cli_path(const char *prefix, const char *name);

/* GET path, which must answer an object (else -EPROTO "the server sent no KIND"), with its ETag
 * when ret_etag is non-NULL. Errors are prefixed with what ("profile 'web'"). */
int lxm_cli_get_object(struct lxm_client *c, const char *path, const char *what, const char *kind,
		       json_t **ret, char **ret_etag, struct lxm_error **err);

/* PUT body on path, guarded by the ETag of the GET it follows (a concurrent change fails instead
 * of being lost), and waits for the operation of an async reply. */
int lxm_cli_put(struct lxm_client *c, const char *path, const json_t *body, const char *etag,
		struct lxm_error **err);

/* Renders view (NULL: out of memory) as YAML and prints it; what names it in errors. */
int lxm_cli_print_yaml(const char *cmd, const json_t *view, const char *what,
		       struct lxm_error **err);

/* Parses the flags of a list verb (only -f/--format) and checks that between min and max
 * (max < 0: no bound) arguments follow. Returns the index of the first argument, or a negative
 * errno. */
int lxm_cli_list_args(int argc, char **argv, int min, int max, const char *expected,
		      enum lxm_format *fmt, struct lxm_error **err);

/* REMOTE: for commands (see lxm_cli_target_arg()). lxm_cli_target_name(): *arg is
 * [REMOTE:]NAME, NAME not empty. lxm_cli_list_remote(): argv[first], when there, is a list's
 * "REMOTE:". lxm_cli_open_target(): lxm_cli_open() with argv[1] a [REMOTE:]NAME. */
int lxm_cli_target_name(const char *cmd, char **arg, struct lxm_error **err);
int lxm_cli_list_remote(int argc, char **argv, int first, struct lxm_error **err);
int lxm_cli_open_target(int argc, char **argv, int min, int max, const char *expected,
			struct lxm_client **ret, struct lxm_error **err);

/* The show and edit flows of an object shown as YAML: view is rendered, edited with
 * lxm_cli_edit_yaml() under header and checked by check(); what names it in errors. */
int lxm_cli_edit_view(const char *cmd, const char *what, const json_t *view, const char *header,
		      lxm_cli_edit_check_fn check, void *userdata, struct lxm_error **err);

/* A kind of named object at PREFIX/NAME (a network, a storage pool, a profile): its create,
 * delete and rename verbs, and the set, unset and get verbs that change its config map. */
struct lxm_cli_config_kind {
	const char *prefix;	 /* its collection's path and a slash: "/1.0/networks/" */
	const char *kind;	 /* its kind in errors: "network" */
	const char *title;	 /* its kind starting a report: "Network" ("Network x deleted") */
	const char *name_args;	 /* what delete takes: "a network NAME" */
	const char *rename_args; /* what rename takes: "a network's OLD and NEW names" */
	const char *key_args;	 /* what unset and get take: "a network NAME and a KEY" */
	bool devices;		 /* whether its PUT also carries its devices map (a profile's) */
	bool rename_says_new;	 /* whether rename errors name the new name too (a profile's) */
	const char *const *put_fields; /* the writable fields lxm_cli_kind_put() sends, or NULL */
	bool inherits; /* whether it also has devices from profiles (an instance's) */
};

/* The instances and the profiles as kinds (cmd-config.c, cmd-profile.c). */
extern const struct lxm_cli_config_kind lxm_cli_instance_kind;
extern const struct lxm_cli_config_kind lxm_cli_profile_kind;

/* PUT PREFIX/NAME with the put_fields of obj (a changed copy of what a GET gave), guarded by the
 * ETag of that GET: a concurrent change fails ("changed since it was read ... retry") instead of
 * being lost (cmd-device.c). */
int lxm_cli_kind_put(struct lxm_client *c, const struct lxm_cli_config_kind *k, const char *name,
		     const json_t *obj, const char *etag, struct lxm_error **err);

/* The "device" verb groups of config and profile: add, remove, set, unset, get, list, show (and
 * override for instances), one implementation for both kinds (cmd-device.c). */
int lxm_cli_config_device(int argc, char **argv, struct lxm_error **err);
/* config trust add|list|remove (cmd-trust.c). */
int lxm_cli_config_trust(int argc, char **argv, struct lxm_error **err);
int lxm_cli_profile_device(int argc, char **argv, struct lxm_error **err);
/* A devices map as an edited document gives it (name -> string map, as lxm_cli_string_map()
 * takes each); NULL or null give an empty map. *ret is a new object. */
int lxm_cli_devices_map(const json_t *in, json_t **ret, struct lxm_error **err);
extern const struct lxm_command lxm_config_device_commands[];
extern const struct lxm_command lxm_profile_device_commands[];

/* GET PREFIX/NAME, which must be an object, with its ETag when ret_etag is non-NULL; errors
 * name it ("network 'br0'"). */
int lxm_cli_kind_get(struct lxm_client *c, const struct lxm_cli_config_kind *k, const char *name,
		     json_t **ret, char **ret_etag, struct lxm_error **err);

/* POSTs body to the collection of k to create NAME and reports "Network NAME created". */
int lxm_cli_kind_create(struct lxm_client *c, const struct lxm_cli_config_kind *k, const char *name,
			const json_t *body, struct lxm_error **err);

/* The delete verb: NAME, deleted with DELETE PREFIX/NAME. */
int lxm_cli_kind_delete(const struct lxm_cli_config_kind *k, int argc, char **argv,
			struct lxm_error **err);

/* The rename verb: OLD NEW, renamed with POST PREFIX/OLD {"name": NEW}. */
int lxm_cli_kind_rename(const struct lxm_cli_config_kind *k, int argc, char **argv,
			struct lxm_error **err);

/* Parses a create verb's arguments: the --description flag (and -t/--type when ret_type is
 * non-NULL; its default is the value it holds), nfixed positional arguments and then KEY=VALUE
 * config keys (expected names them all: "NAME DRIVER [KEY=VALUE...]"), and connects. Returns
 * the index of the first positional argument, or a negative errno. *ret_config is a new
 * object. */
int lxm_cli_create_args(int argc, char **argv, int nfixed, const char *expected,
			const char **ret_desc, const char **ret_type, json_t **ret_config,
			struct lxm_client **ret, struct lxm_error **err);

/* The set verb: NAME KEY=VALUE... or NAME KEY VALUE, changed with a GET and an ETag-guarded
 * PUT of config and description (and devices), as lxc does. */
int lxm_cli_config_set(const struct lxm_cli_config_kind *k, int argc, char **argv,
		       struct lxm_error **err);

/* The unset verb: NAME KEY, which must be set; changed as by lxm_cli_config_set(). */
int lxm_cli_config_unset(const struct lxm_cli_config_kind *k, int argc, char **argv,
			 struct lxm_error **err);

/* The get verb: prints the value of config key KEY of NAME, or an empty line when it is unset. */
int lxm_cli_config_get(const struct lxm_cli_config_kind *k, int argc, char **argv,
		       struct lxm_error **err);

/* An edited document of an object with only config and description to change (a network, a
 * storage pool), as lxm_cli_check_config_doc() checks it. */
struct lxm_cli_config_edit {
	const char *kind;	   /* the object's kind in errors: "network" */
	const char *const *fields; /* the fields the document may have, NULL-terminated */
	json_t *config;		   /* the edited config map */
	char *description;	   /* the edited description */
};

/* Frees the config and description of e (not kind and fields). */
void lxm_cli_config_edit_done(struct lxm_cli_config_edit *e);

/* Checks the shape of an edited document: "the document is empty; nothing was changed" when it is
 * empty, "the document must be <what>" when it is not a map, "unknown field 'x' (<known>)" for a
 * field not in fields (NULL-terminated). */
int lxm_cli_check_doc_fields(const json_t *doc, const char *const *fields, const char *what,
			     const char *known, struct lxm_error **err);

/* Stores the description of an edited document, "" when it has none, into *ret (to free); an
 * error when it is not text. */
int lxm_cli_doc_description(const json_t *doc, char **ret, struct lxm_error **err);

/* An lxm_cli_edit_check_fn for a struct lxm_cli_config_edit: the document must be a map of its
 * fields, with a text description and a string map config, which it stores into e. */
int lxm_cli_check_config_doc(const json_t *doc, void *userdata, struct lxm_error **err);

/* Turns getopt_long()'s '?' or ':' into "list: unknown flag '--x' (see 'lxm list --help')". */
int lxm_cli_flag_error(const char *cmd, char **argv, int c, struct lxm_error **err);

/* Checks the count of positional arguments: "profile show: expected NAME, got 2 arguments (see
 * 'lxm profile show --help')". max < 0 means no upper bound. */
int lxm_cli_nargs(const char *cmd, int nargs, int min, int max, const char *expected,
		  struct lxm_error **err);

/* Parses a --format value; the error lists the valid ones. */
int lxm_cli_parse_format(const char *cmd, const char *value, enum lxm_format *ret,
			 struct lxm_error **err);

/* Writes a rendered string to stdout; -EIO when stdout is gone (a closed pipe). */
int lxm_cli_print(const char *cmd, const char *text, struct lxm_error **err);

/* Renders value (JSON or YAML) or the table (table or CSV) in fmt and prints it. */
int lxm_cli_print_list(const char *cmd, const json_t *value, const struct lxm_table *table,
		       enum lxm_format fmt, struct lxm_error **err);

/* A malloc'ed upper-case copy of s (NULL s gives ""), for lxc's STATE, TYPE and STATUS cells. */
char *lxm_cli_upper(const char *s);

/* "key=value" -> malloc'ed key and value (value may be empty). -EINVAL without '=' or key. */
int lxm_cli_split_kv(const char *arg, char **ret_key, char **ret_value);

/* Puts each "KEY=VALUE" of the nargs args into the string map config, as create verbs take
 * config keys: "storage create: invalid config 'x': expected KEY=VALUE". */
int lxm_cli_kv_args(const char *cmd, int nargs, char *const *args, json_t *config,
		    struct lxm_error **err);

/* The config keys a set verb gives after its object's name(s): KEY=VALUE... or, as lxc also
 * takes, KEY VALUE (two arguments, the first without '='). *ret is a new object. */
int lxm_cli_set_args(const char *cmd, int nargs, char *const *args, json_t **ret,
		     struct lxm_error **err);

/* The config a set or unset verb PUTs back: a copy of obj's config map without the key unset
 * (when non-NULL; it must be set, else -ENOENT "WHAT: cannot unset key 'K': it is not set") and
 * with the keys of set (when non-NULL) merged in. *ret is a new object. */
int lxm_cli_change_config(const char *cmd, const char *what, const json_t *obj, const json_t *set,
			  const char *unset, json_t **ret, struct lxm_error **err);

/* A YAML value meant as a string map entry (config, device keys): strings as they are, and the
 * plain scalars lxm_yaml_to_json() typed (42, true, null) back to their text ("42", "true", "").
 * Fails for lists and maps, naming what. *ret is a new object. */
int lxm_cli_string_map(const json_t *in, const char *what, json_t **ret, struct lxm_error **err);

/* Lets the user edit YAML: when stdin is not a terminal, reads the whole of stdin (as `lxc ...
 * edit < file` does); otherwise opens $VISUAL / $EDITOR / vi on a temp file that starts with
 * header and text, and calls check() on the result, re-opening the editor while check() fails and
 * the user presses Enter. *ret gets the parsed JSON that check() accepted. */
int lxm_cli_edit_yaml(const char *header, const char *text, lxm_cli_edit_check_fn check,
		      void *userdata, json_t **ret, struct lxm_error **err);
