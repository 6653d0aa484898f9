#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

void pm_cli_usage(FILE *f) {
  fputs(
      "usage: peermesh [chat] [OPTIONS]            chat on a mesh (default)\n"
      "       peermesh run [OPTIONS] SCRIPT [ARGS]  run a Lua script\n"
      "       peermesh history [--mesh NAME] [--limit N] [--json] "
      "[--data-dir DIR]\n"
      "       peermesh resolver [--listen HOST:PORT]  host a resolver\n"
      "       peermesh id [--data-dir DIR]          show this node's identity\n"
      "       peermesh --help | --version\n"
      "\n"
      "options for chat and run:\n"
      "  --mesh NAME           mesh to join (default: lobby)\n"
      "  --nick NICK           nickname (the chat asks when not given)\n"
      "  --peer HOST:PORT      a node to connect to (repeatable)\n"
      "  --resolver HOST:PORT  a resolver to use (repeatable), or 'none'\n"
      "  --listen HOST:PORT    where to accept links (default: all "
      "interfaces, a free port)\n"
      "  --data-dir DIR        history and identity (default: "
      "$XDG_DATA_HOME/peermesh)\n"
      "  --password-file FILE  join a password mesh; FILE holds the password "
      "on one\n"
      "                        line and must be mode 0600\n"
      "  --ask-password        chat: ask the mesh password on the terminal\n"
      "  -v, --verbose         report links and resolvers on stderr\n"
      "\n"
      "With neither --peer nor --resolver, nodes on one machine find each "
      "other\nthrough the resolver on 127.0.0.1:7470, which the first of "
      "them hosts.\n"
      "\n"
      "A mesh has a password when --password-file or --ask-password is "
      "given, or when\nthe environment variable PEERMESH_PASSWORD is set "
      "(those two options win over\nit); otherwise it is open. A password is "
      "never given as a command-line value:\nother users can read those, and "
      "shells keep them in their history.\n",
      f);
}

__attribute__((format(printf, 3, 4))) static int bad(char *err, size_t errlen,
                                                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return 2;
}

static int mesh_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

static int nick_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > PM_NICK_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return 0;
  return 1;
}

static int addr_ok(const char *s, int allow_zero_port) {
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  return pm_addr_parse(s, host, &port, allow_zero_port) == 0;
}

/* Options a user may try for a password on the command line: refused with
 * an explanation, never read. */
static int is_password_option(const char *name) {
  static const char *const names[] = {"--password", "--passwd", "--pass",
                                      "--passphrase", "--pw"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i]) == 0)
      return 1;
  return 0;
}

/* Which options a subcommand takes. */
enum {
  OPT_NODE = 1,
  OPT_DATA = 2,
  OPT_LISTEN = 4,
  OPT_PASSWORD = 8, /* --password-file */
  OPT_ASK = 16,     /* --ask-password: only the chat has a person to ask */
};

static int takes(enum pm_cli_command cmd) {
  switch (cmd) {
  case PM_CMD_CHAT:
    return OPT_NODE | OPT_DATA | OPT_LISTEN | OPT_PASSWORD | OPT_ASK;
  case PM_CMD_RUN:
    return OPT_NODE | OPT_DATA | OPT_LISTEN | OPT_PASSWORD;
  case PM_CMD_RESOLVER:
    return OPT_LISTEN;
  case PM_CMD_ID:
    return OPT_DATA;
  default:
    return 0;
  }
}

static const char *cmd_name(enum pm_cli_command cmd) {
  switch (cmd) {
  case PM_CMD_CHAT:
    return "chat";
  case PM_CMD_RUN:
    return "run";
  case PM_CMD_RESOLVER:
    return "resolver";
  case PM_CMD_ID:
    return "id";
  default:
    return "peermesh";
  }
}

int pm_cli_parse(int argc, char **argv, pm_cli *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->cmd = PM_CMD_CHAT;
  o->mesh = "lobby";
  int i = 1;
  if (i < argc && argv[i][0] != '-') {
    const char *c = argv[i];
    if (strcmp(c, "chat") == 0)
      o->cmd = PM_CMD_CHAT;
    else if (strcmp(c, "run") == 0)
      o->cmd = PM_CMD_RUN;
    else if (strcmp(c, "history") == 0) {
      /* history parses its own options (cmd_history.c) */
      o->cmd = PM_CMD_HISTORY;
      o->sub_argc = argc - i;
      o->sub_argv = argv + i;
      return 0;
    } else if (strcmp(c, "resolver") == 0)
      o->cmd = PM_CMD_RESOLVER;
    else if (strcmp(c, "id") == 0)
      o->cmd = PM_CMD_ID;
    else if (strcmp(c, "help") == 0) {
      o->cmd = PM_CMD_HELP;
      return 0;
    } else
      return bad(err, errlen, "unknown command '%s'", c);
    i++;
  }
  int allowed = takes(o->cmd);
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (o->cmd == PM_CMD_RUN && a[0] != '-') {
      o->script = a;
      o->script_argc = argc - i - 1;
      o->script_argv = argv + i + 1;
      return 0;
    }
    if (strcmp(a, "--") == 0 && o->cmd == PM_CMD_RUN) {
      if (i + 1 >= argc)
        return bad(err, errlen, "run: missing SCRIPT after '--'");
      o->script = argv[i + 1];
      o->script_argc = argc - i - 2;
      o->script_argv = argv + i + 2;
      return 0;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      o->cmd = PM_CMD_HELP;
      return 0;
    }
    if (strcmp(a, "--version") == 0) {
      o->cmd = PM_CMD_VERSION;
      return 0;
    }
    if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
      o->verbose = 1;
      continue;
    }
    /* Every other option takes a value: "--opt VALUE" or "--opt=VALUE".
     * Messages name the option without its value, which may be a secret
     * typed in the wrong place. */
    char name[32];
    const char *val = NULL;
    const char *eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
    if (strncmp(a, "--", 2) != 0 || nlen >= sizeof name)
      return bad(err, errlen, "%s: unknown option '%.*s'", cmd_name(o->cmd),
                 (int)(nlen > 64 ? 64 : nlen), a);
    memcpy(name, a, nlen);
    name[nlen] = '\0';
    if (is_password_option(name))
      return bad(err, errlen,
                 "option '%s' is not accepted: other users can read a "
                 "command line, and shells keep it in their history (if that "
                 "was a real password, change it). Give the password with "
                 "--password-file FILE (mode 0600), the PEERMESH_PASSWORD "
                 "environment variable, or --ask-password (chat)",
                 name);
    if (strcmp(name, "--ask-password") == 0) {
      if (eq)
        return bad(err, errlen, "option '--ask-password' takes no value");
      if (!(allowed & OPT_ASK))
        return bad(err, errlen,
                   "%s: option '--ask-password' does not apply here%s",
                   cmd_name(o->cmd),
                   o->cmd == PM_CMD_RUN
                       ? " (only the chat asks; give a script the password "
                         "with --password-file FILE or PEERMESH_PASSWORD)"
                       : "");
      o->ask_password = 1;
      continue;
    }
    int opt;
    if (strcmp(name, "--mesh") == 0 || strcmp(name, "--nick") == 0 ||
        strcmp(name, "--peer") == 0 || strcmp(name, "--resolver") == 0)
      opt = OPT_NODE;
    else if (strcmp(name, "--data-dir") == 0)
      opt = OPT_DATA;
    else if (strcmp(name, "--listen") == 0)
      opt = OPT_LISTEN;
    else if (strcmp(name, "--password-file") == 0)
      opt = OPT_PASSWORD;
    else
      return bad(err, errlen, "%s: unknown option '%s'", cmd_name(o->cmd),
                 name);
    if (!(allowed & opt))
      return bad(err, errlen, "%s: option '%s' does not apply here",
                 cmd_name(o->cmd), name);
    if (eq)
      val = eq + 1;
    else if (i + 1 < argc)
      val = argv[++i];
    else
      return bad(err, errlen, "option '%s' needs a value", name);

    if (strcmp(name, "--mesh") == 0) {
      if (!mesh_ok(val))
        return bad(err, errlen,
                   "bad mesh name '%s': use 1-63 letters, digits, '.', '_' "
                   "or '-'",
                   val);
      o->mesh = val;
    } else if (strcmp(name, "--nick") == 0) {
      if (!nick_ok(val))
        return bad(err, errlen,
                   "bad nickname '%s': 1-64 bytes without control "
                   "characters",
                   val);
      o->nick = val;
    } else if (strcmp(name, "--peer") == 0) {
      if (!addr_ok(val, 0))
        return bad(err, errlen,
                   "bad peer address '%s': expected HOST:PORT, e.g. "
                   "127.0.0.1:7000",
                   val);
      if (o->npeers == PM_CLI_MAX_PEERS)
        return bad(err, errlen, "too many --peer options (at most 32)");
      o->peers[o->npeers++] = val;
    } else if (strcmp(name, "--resolver") == 0) {
      if (strcmp(val, "none") == 0) {
        o->resolver_none = 1;
        continue;
      }
      if (!addr_ok(val, 0))
        return bad(err, errlen,
                   "bad resolver address '%s': expected IP:PORT or 'none'",
                   val);
      if (o->nresolvers == PM_CLI_MAX_RESOLVERS)
        return bad(err, errlen, "too many --resolver options (at most 8)");
      o->resolvers[o->nresolvers++] = val;
    } else if (strcmp(name, "--listen") == 0) {
      if (!addr_ok(val, 1))
        return bad(err, errlen,
                   "bad listen address '%s': expected HOST:PORT, e.g. "
                   "0.0.0.0:7000 (port 0 picks a free one)",
                   val);
      o->listen = val;
    } else if (strcmp(name, "--data-dir") == 0) {
      if (val[0] == '\0')
        return bad(err, errlen, "option '--data-dir' needs a directory");
      o->data_dir = val;
    } else if (strcmp(name, "--password-file") == 0) {
      if (val[0] == '\0')
        return bad(err, errlen, "option '--password-file' needs a file");
      o->password_file = val;
    }
  }
  if (o->password_file && o->ask_password)
    return bad(err, errlen,
               "give either --password-file or --ask-password, not both");
  if (o->resolver_none && o->nresolvers)
    return bad(err, errlen,
               "'--resolver none' cannot be combined with resolver "
               "addresses");
  if (o->cmd == PM_CMD_RUN && !o->script)
    return bad(err, errlen, "run: missing SCRIPT");
  return 0;
}
