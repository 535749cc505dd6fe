/* lxm: the command-line client of lxmd, with lxc's verbs, flags and output. main() finds the verb
 * in the table, answers --help and --version, runs the verb and prints its error, once. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/util.h"
#include "lxm/commands.h"

static const struct lxm_command commands[] = {
	{
		.name = "console",
		.run = lxm_cmd_console,
		.summary = "Attach to instance consoles",
		.usage = "console NAME [flags]",
		.help = "Keys go to the instance's console and its output comes back until you\n"
			"detach with <ctrl>+a q (<ctrl>+a twice sends one <ctrl>+a).\n"
			"\n"
			"Flags:\n"
			"      --show-log   Print the console log (kept after a stop)\n",
	},
	{
		.name = "delete",
		.alias = "rm",
		.run = lxm_cmd_delete,
		.summary = "Delete instances",
		.usage = "delete NAME [NAME...] [flags]",
		.help = "Flags:\n"
			"  -f, --force   Stop running instances first\n",
	},
	{
		.name = "exec",
		.run = lxm_cmd_exec,
		.summary = "Execute commands in instances",
		.usage = "exec NAME [flags] [--] COMMAND [ARG...]",
		.help = "The exit status is the command's. The session is interactive (a\n"
			"terminal in the instance) when stdin and stdout are terminals.\n"
			"\n"
			"Flags:\n"
			"  -t, --force-interactive     Allocate a terminal without a local one\n"
			"  -T, --force-noninteractive  Pipes only, even on a terminal\n"
			"  -n, --disable-stdin         Give the command no input (stdin at EOF)\n"
			"      --env K=V               Environment variable (repeatable)\n"
			"      --cwd DIR               Working directory inside the instance\n"
			"      --user UID              User ID to run as (default 0)\n"
			"      --group GID             Group ID to run as (default 0)\n",
	},
	{
		.name = "info",
		.run = lxm_cmd_info,
		.summary = "Show server or instance information",
		.usage = "info [NAME]",
		.help = "Without NAME, prints the server's GET /1.0 as YAML; with NAME, a summary "
			"of "
			"the instance.\n",
	},
	{
		.name = "init",
		.alias = "create",
		.run = lxm_cmd_init,
		.summary = "Create instances",
		.usage = "init IMAGE [NAME] [flags] | init --empty [NAME] [flags] | init --auto "
			 "[flags]",
		.help = "IMAGE is an image alias; 'busybox' is built locally on first use.\n\n"
			"Flags:\n"
			"      --empty          Create an instance with no root file system image\n"
			"  -p, --profile NAME   Profile to apply (repeat for several; default: "
			"the\n"
			"                       server's default profile)\n"
			"      --no-profiles    Apply no profile at all\n"
			"  -c, --config K=V     Instance config key (repeatable)\n"
			"  -e, --ephemeral      Ephemeral instance\n"
			"\n"
			"With --auto, sets up a new server instead: creates the storage\n"
			"pool 'default' (btrfs on a loop file when the server can, else\n"
			"dir) and adds a root disk device on it to profile 'default'; then the\n"
			"network lxmbr0 (IPv4 with NAT) and a nic device eth0 on it.\n"
			"      --storage-backend B       dir, btrfs or overlay\n"
			"      --storage-create-loop N   Size in GiB of the btrfs loop file\n"
			"      --network-name NAME       Name of the network (default lxmbr0)\n"
			"      --no-network              Create no network\n",
	},
	{
		.name = "launch",
		.run = lxm_cmd_launch,
		.summary = "Create and start instances from images",
		.usage = "launch IMAGE [NAME] [flags]",
		.help = "IMAGE is an image alias; 'busybox' is built locally on first use.\n\n"
			"Flags:\n"
			"  -p, --profile NAME   Profile to apply (repeat for several)\n"
			"      --no-profiles    Apply no profile at all\n"
			"  -c, --config K=V     Instance config key (repeatable)\n"
			"  -e, --ephemeral      Ephemeral instance\n",
	},
	{
		.name = "start",
		.run = lxm_cmd_start,
		.summary = "Start instances",
		.usage = "start NAME...",
		.help = NULL,
	},
	{
		.name = "stop",
		.run = lxm_cmd_stop,
		.summary = "Stop instances",
		.usage = "stop NAME... [flags]",
		.help = "Flags:\n"
			"  -f, --force          Kill the instance at once\n"
			"      --timeout N      Seconds to wait for a clean shutdown before "
			"killing it\n"
			"                       (default: wait as long as it takes)\n",
	},
	{
		.name = "restart",
		.run = lxm_cmd_restart,
		.summary = "Restart instances",
		.usage = "restart NAME... [flags]",
		.help = "Flags:\n"
			"  -f, --force          Kill the instance instead of a clean shutdown\n"
			"      --timeout N      Seconds to wait for a clean shutdown before "
			"killing it\n",
	},
	{
		.name = "pause",
		.alias = "freeze",
		.run = lxm_cmd_pause,
		.summary = "Pause (freeze) instances; 'start' resumes them",
		.usage = "pause NAME...",
		.help = NULL,
	},

	{
		.name = "snapshot",
		.run = lxm_cmd_snapshot,
		.summary = "Take snapshots of instances",
		.usage = "snapshot INSTANCE [SNAPSHOT] [flags]",
		.help = "Copies the instance's files, config, devices and profiles as they\n"
			"are now (a running instance is frozen for the copy). Without\n"
			"SNAPSHOT the name is snap0, snap1, ... Remove one with\n"
			"'lxm delete INSTANCE/SNAPSHOT'.\n"
			"\n"
			"Flags:\n"
			"      --reuse          Replace SNAPSHOT if it exists\n"
			"      --no-expiry      Never expire (the default: no expiry)\n",
	},
	{
		.name = "restore",
		.run = lxm_cmd_restore,
		.summary = "Restore instances from snapshots",
		.usage = "restore INSTANCE SNAPSHOT",
		.help = "Brings back the snapshot's files, config, devices and profiles. The\n"
			"instance must be stopped.\n",
	},
	{
		.name = "copy",
		.alias = "cp",
		.run = lxm_cmd_copy,
		.summary = "Copy instances (or a snapshot into a new instance)",
		.usage = "copy SOURCE[/SNAPSHOT] DESTINATION [flags]",
		.help = "The copy gets the source's config (without its volatile state),\n"
			"devices and profiles, in the pool its root disk device names; its\n"
			"hostname templates are rendered again. A running source is frozen for\n"
			"the copy. Snapshots are not copied.\n"
			"\n"
			"Flags:\n"
			"  -c, --config K=V     Config key for the copy (repeatable)\n"
			"  -p, --profile NAME   Profile for the copy instead of the source's\n"
			"      --no-profiles    No profile at all\n"
			"      --instance-only  Accepted (snapshots are never copied)\n",
	},
	{
		.name = "move",
		.alias = "mv",
		.run = lxm_cmd_move,
		.summary = "Rename instances or snapshots",
		.usage = "move OLD NEW | move INSTANCE/OLD INSTANCE/NEW",
		.help = "An instance must be stopped; its snapshots, logs and volume follow.\n",
	},
	{
		.name = "list",
		.alias = "ls",
		.run = lxm_cmd_list,
		.summary = "List instances",
		.usage = "list [FILTER...] [flags]",
		.help = "A FILTER is a name prefix (or an anchored regular expression), or "
			"key=value\n"
			"on an instance field (status=running, type=container) or config key\n"
			"(user.role=web). All filters must match.\n"
			"\n"
			"Flags:\n"
			"  -c, --columns COLS   Columns (default ns46tS):\n"
			"                       n name, s state, 4 IPv4, 6 IPv6, t type,\n"
			"                       S snapshots, a architecture, c created at,\n"
			"                       l last used at, d description, P profiles,\n"
			"                       p PID, N processes, e project, L location;\n"
			"                       a config key as a column: -c ns,user.role:ROLE\n"
			"  -f, --format FMT     table (default), csv, json or yaml\n",
	},
	{
		.name = "operation",
		.summary = "List, show and cancel background operations",
		.usage = "operation <command>",
		.subcommands = lxm_operation_commands,
	},
	{
		.name = "config",
		.summary = "Manage instance configuration",
		.usage = "config <command>",
		.subcommands = lxm_config_commands,
	},
	{
		.name = "file",
		.summary = "Manage files in instances",
		.usage = "file <command>",
		.subcommands = lxm_file_commands,
	},
	{
		.name = "image",
		.summary = "Manage images",
		.usage = "image <command>",
		.subcommands = lxm_image_commands,
	},
	{
		.name = "publish",
		.run = lxm_cmd_publish,
		.summary = "Publish instances as images",
		.usage = "publish INSTANCE[/SNAPSHOT] [KEY=VALUE...] [flags]",
		.help = "Makes an image of a stopped instance (or a snapshot); KEY=VALUE sets\n"
			"image properties. Prints the new image's fingerprint.\n"
			"\n"
			"Flags:\n"
			"      --alias A          Alias of the new image (repeatable)\n"
			"      --public           Serve the image to other hosts\n"
			"      --compression C    gzip (default), xz, zstd or none\n",
	},
	{
		.name = "remote",
		.summary = "Manage the list of remote servers",
		.usage = "remote <command>",
		.subcommands = lxm_remote_commands,
	},
	{
		.name = "network",
		.summary = "Manage networks",
		.usage = "network <command>",
		.subcommands = lxm_network_commands,
	},
	{
		.name = "profile",
		.summary = "Manage profiles",
		.usage = "profile <command>",
		.subcommands = lxm_profile_commands,
	},
	{
		.name = "storage",
		.summary = "Manage storage pools and volumes",
		.usage = "storage <command>",
		.subcommands = lxm_storage_commands,
	},
	{
		.name = "version",
		.run = lxm_cmd_version,
		.summary = "Show local and remote versions",
		.usage = "version",
	},
	{},
};

static void print_command_list(const struct lxm_command *table)
{
	size_t width = 0;

	for (const struct lxm_command *c = table; c->name; c++)
		if (strlen(c->name) > width)
			width = strlen(c->name);
	for (const struct lxm_command *c = table; c->name; c++)
		printf("  %-*s  %s\n", (int)width, c->name, c->summary);
}

static void print_top_help(void)
{
	printf("Usage: lxm <command> [flags]\n"
	       "\n"
	       "lxm is the command-line client of lxmd, a system container and virtual machine\n"
	       "manager that serves LXD's REST API.\n"
	       "\n"
	       "Commands:\n");
	print_command_list(commands);
	printf("\n"
	       "Global flags:\n"
	       "  -h, --help     Print help\n"
	       "      --version  Print the client version number\n"
	       "\n"
	       "Environment:\n"
	       "  LXM_DIR     lxmd's directory (default %s); lxm talks to its unix.socket\n"
	       "  LXM_SOCKET  the socket to talk to, overriding LXM_DIR\n"
	       "\n"
	       "Use \"lxm <command> --help\" for more about a command.\n",
	       LXM_DEFAULT_DIR);
}

static void print_command_help(const struct lxm_command *cmd)
{
	printf("Usage: lxm %s\n\n%s\n", cmd->usage, cmd->summary);
	if (cmd->alias)
		printf("\nAlias: %s\n", cmd->alias);
	if (cmd->subcommands) {
		printf("\nCommands:\n");
		print_command_list(cmd->subcommands);
		printf("\nUse \"lxm %s <command> --help\" for more about a command.\n", cmd->name);
	}
	if (cmd->help)
		printf("\n%s", cmd->help);
}

/* Edit distance where swapping two neighbouring letters counts as one edit ("lsit" is one edit
 * from "list"), since that is the commonest typo. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[32][32];

	if (la >= ARRAY_SIZE(d) || lb >= ARRAY_SIZE(d))
		return (size_t)-1;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/* The command a typo most likely meant: within two edits, or a prefix of one. */
static const char *closest(const struct lxm_command *table, const char *typed)
{
	const char *best = NULL;
	size_t best_d = 3;

	for (const struct lxm_command *c = table; c->name; c++) {
		size_t d = edit_distance(typed, c->name);

		if (startswith(c->name, typed) && strlen(typed) >= 2)
			d = 1;
		if (d < best_d) {
			best_d = d;
			best = c->name;
		}
	}
	return best;
}

static const struct lxm_command *find(const struct lxm_command *table, const char *name)
{
	return lxm_cli_find(table, name);
}

static int unknown_command(const struct lxm_command *table, const char *prefix, const char *typed)
{
	const char *near = closest(table, typed);
	const char *sp = *prefix ? " " : "";

	fprintf(stderr, "Error: unknown command \"%s%s%s\" (see 'lxm %s%s--help')", prefix, sp,
		typed, prefix, sp);
	if (near)
		fprintf(stderr, "; did you mean \"%s%s%s\"?", prefix, sp, near);
	fputc('\n', stderr);
	return EXIT_FAILURE;
}

/* --help and -h anywhere before "--" ask for help, as in lxc. */
static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (streq(argv[i], "--"))
			return false;
		if (streq(argv[i], "--help") || streq(argv[i], "-h"))
			return true;
	}
	return false;
}

static int run(const struct lxm_command *cmd, const char *path, int argc, char **argv)
{
	_cleanup_error_ struct lxm_error *err = NULL;
	int r;

	argv[0] = (char *)path;
	r = cmd->run(argc, argv, &err);
	/* Output that never reached its file (a full disk, a closed pipe) is a failure too. */
	if ((fflush(stdout) == EOF || ferror(stdout)) && r >= 0)
		r = lxm_error_setx(&err, errno ? -errno : -EIO, 500, "%s: write output", path);
	if (r >= 0)
		return r > 255 ? EXIT_FAILURE : r; /* a verb's positive return is its exit status */
	fprintf(stderr, "Error: %s\n", err && err->msg ? err->msg : strerror(-r));
	return EXIT_FAILURE;
}

int main(int argc, char **argv)
{
	const struct lxm_command *cmd, *sub;
	char path[128];

	if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h") ||
	    (streq(argv[1], "help") && argc == 2)) {
		print_top_help();
		return EXIT_SUCCESS;
	}
	if (streq(argv[1], "--version")) {
		printf("%s\n", PACKAGE_VERSION);
		return EXIT_SUCCESS;
	}
	if (streq(argv[1], "help")) {
		/* "lxm help profile show" is "lxm profile show --help". */
		argv++;
		argc--;
		cmd = find(commands, argv[1]);
		if (!cmd)
			return unknown_command(commands, "", argv[1]);
		sub = cmd->subcommands && argc > 2 ? find(cmd->subcommands, argv[2]) : NULL;
		print_command_help(sub ? sub : cmd);
		return EXIT_SUCCESS;
	}
	if (argv[1][0] == '-') {
		fprintf(stderr, "Error: unknown flag '%s' (see 'lxm --help')\n", argv[1]);
		return EXIT_FAILURE;
	}

	cmd = find(commands, argv[1]);
	if (!cmd)
		return unknown_command(commands, "", argv[1]);
	if (!cmd->subcommands) {
		if (wants_help(argc - 1, argv + 1)) {
			print_command_help(cmd);
			return EXIT_SUCCESS;
		}
		return run(cmd, cmd->name, argc - 1, argv + 1);
	}

	if (argc < 3 || streq(argv[2], "--help") || streq(argv[2], "-h")) {
		print_command_help(cmd);
		return EXIT_SUCCESS;
	}
	sub = find(cmd->subcommands, argv[2]);
	if (!sub)
		return unknown_command(cmd->subcommands, cmd->name, argv[2]);
	snprintf(path, sizeof(path), "%s %s", cmd->name, sub->name);
	if (wants_help(argc - 2, argv + 2)) {
		print_command_help(sub);
		return EXIT_SUCCESS;
	}
	return run(sub, path, argc - 2, argv + 2);
}
