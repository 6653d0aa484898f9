/* The peermesh command line: subcommands, options and their checks. */
#ifndef PM_IO_CLI_H
#define PM_IO_CLI_H

#include <stddef.h>
#include <stdio.h>

#define PM_CLI_MAX_PEERS 32
#define PM_CLI_MAX_RESOLVERS 8
#define PM_NICK_MAX 64

enum pm_cli_command {
  PM_CMD_CHAT,
  PM_CMD_RUN,
  PM_CMD_HISTORY,
  PM_CMD_RESOLVER,
  PM_CMD_ID,
  PM_CMD_HELP,
  PM_CMD_VERSION,
};

typedef struct pm_cli {
  enum pm_cli_command cmd;
  const char *mesh;     /* default "lobby" */
  const char *nick;     /* NULL: the chat asks */
  const char *listen;   /* NULL: all interfaces, a free port */
  const char *data_dir; /* NULL: the XDG default */
  const char *peers[PM_CLI_MAX_PEERS];
  size_t npeers;
  const char *resolvers[PM_CLI_MAX_RESOLVERS];
  size_t nresolvers;
  int resolver_none;
  int verbose;
  /* Where a password mesh's password comes from (password.h); never from a
   * command-line value. Neither set and no PEERMESH_PASSWORD: open mesh. */
  const char *password_file; /* --password-file FILE: chat and run */
  int ask_password;          /* --ask-password: the chat prompts for it */

  const char *script; /* run */
  int script_argc;    /* run: arguments after SCRIPT */
  char **script_argv;
  int sub_argc; /* history: its own arguments, argv[0] = "history" */
  char **sub_argv;
} pm_cli;

/* Parses argv. Returns 0, or 2 (the exit code for usage errors) with a
 * sentence naming the bad option or value in `err`. */
int pm_cli_parse(int argc, char **argv, pm_cli *out, char *err, size_t errlen);

void pm_cli_usage(FILE *f);

#endif
