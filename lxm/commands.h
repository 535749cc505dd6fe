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

/* Verb groups. */
extern const struct lxm_command lxm_operation_commands[];
extern const struct lxm_command lxm_profile_commands[];
extern const struct lxm_command lxm_config_commands[];
extern const struct lxm_command lxm_file_commands[];
extern const struct lxm_command lxm_image_commands[];
extern const struct lxm_command lxm_remote_commands[];

/* cmd-server.c */
int lxm_cmd_version(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_info(int argc, char **argv, struct lxm_error **err);
/* cmd-list.c */
int lxm_cmd_list(int argc, char **argv, struct lxm_error **err);
/* cmd-instance.c */
int lxm_cmd_init(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_launch(int argc, char **argv, struct lxm_error **err);
int lxm_cmd_delete(int argc, char **argv, struct lxm_error **err);
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

/* A client that has already fetched GET /1.0, so a dead or foreign socket fails here, with the
 * connection message, before a command adds its own context to errors. */
int lxm_cli_connect(struct lxm_client **ret, struct lxm_error **err);

static inline void lxm_client_freep(struct lxm_client **c)
{
	lxm_client_free(*c);
}
#define _cleanup_client_ __attribute__((cleanup(lxm_client_freep)))

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

/* A YAML value meant as a string map entry (config, device keys): strings as they are, and the
 * plain scalars lxm_yaml_to_json() typed (42, true, null) back to their text ("42", "true", "").
 * Fails for lists and maps, naming what. *ret is a new object. */
int lxm_cli_string_map(const json_t *in, const char *what, json_t **ret, struct lxm_error **err);

/* Lets the user edit YAML: when stdin is not a terminal, reads the whole of stdin (as `lxc ...
 * edit < file` does); otherwise opens $VISUAL / $EDITOR / vi on a temp file that starts with
 * header and text, and calls check() on the result, re-opening the editor while check() fails and
 * the user presses Enter. *ret gets the parsed JSON that check() accepted. */
typedef int (*lxm_cli_edit_check_fn)(const json_t *doc, void *userdata, struct lxm_error **err);
int lxm_cli_edit_yaml(const char *header, const char *text, lxm_cli_edit_check_fn check,
		      void *userdata, json_t **ret, struct lxm_error **err);
