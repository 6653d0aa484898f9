/* peermesh: the command-line entry point. */
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cli.h"
#include "cmd_history.h"
#include "host.h"
#include "identity.h"
#include "lua_host.h"
#include "password.h"
#include "paths.h"
#include "server.h"

/* The scripts directory: beside an installed binary
 * (PREFIX/bin/peermesh -> PREFIX/share/peermesh/scripts), else the source
 * tree's, for a binary run from the build directory. */
static void scripts_dir(char *out, size_t n) {
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      int w = snprintf(out, n, "%s/../%s/scripts", exe, PM_DATADIR);
      char probe[PATH_MAX + 16];
      if (w > 0 && (size_t)w < n &&
          snprintf(probe, sizeof probe, "%s/chat.lua", out) <
              (int)sizeof probe &&
          access(probe, R_OK) == 0)
        return;
    }
  }
  snprintf(out, n, "%s", PM_SOURCE_SCRIPTS);
}

static int data_dir(const pm_cli *cli, char *out, size_t n) {
  if (pm_paths_data_dir(cli->data_dir, out, n) != 0) {
    fprintf(stderr, "peermesh: cannot tell where to keep data: set HOME, "
                    "XDG_DATA_HOME or --data-dir\n");
    return 1;
  }
  return 0;
}

static int cmd_id(const pm_cli *cli) {
  char dir[4096], err[512];
  if (data_dir(cli, dir, sizeof dir))
    return 1;
  if (pm_paths_mkdir_p(dir) != 0) {
    fprintf(stderr, "peermesh: cannot create %s\n", dir);
    return 1;
  }
  pm_identity id;
  if (pm_identity_acquire(dir, &id, err, sizeof err) != 0) {
    fprintf(stderr, "peermesh: %s\n", err);
    return 1;
  }
  char hex[2 * PM_NODE_ID_LEN + 1], fp[PM_FINGERPRINT_LEN];
  pm_identity_hex(id.public_key, hex);
  pm_identity_fingerprint(id.public_key, fp);
  printf("node id:     %s\nfingerprint: %s\nkey file:    %s\n", hex, fp,
         id.path);
  pm_identity_release(&id);
  return 0;
}

typedef struct resolver_run {
  pm_resolver_server *srv;
  uv_signal_t sigint, sigterm;
} resolver_run;

/* SIGINT or SIGTERM: stop accepting, close every connection, exit 0. */
static void on_stop_signal(uv_signal_t *s, int signum) {
  resolver_run *r = s->data;
  fprintf(stderr, "peermesh: resolver stopping (%s)\n",
          signum == SIGINT ? "SIGINT" : "SIGTERM");
  pm_resolver_server_close(r->srv, NULL, NULL);
  uv_close((uv_handle_t *)&r->sigint, NULL);
  uv_close((uv_handle_t *)&r->sigterm, NULL);
}

static int cmd_resolver(const pm_cli *cli) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *addr = cli->listen ? cli->listen : "0.0.0.0:7470";
  resolver_run r;
  int rc = pm_resolver_server_start(&loop, addr, NULL, &r.srv);
  if (rc) {
    fprintf(stderr, "peermesh: cannot serve on %s: %s\n", addr,
            rc == PM_ERR_EXISTS ? "address already in use" : pm_strerror(rc));
    uv_loop_close(&loop);
    return 1;
  }
  fprintf(stderr, "peermesh: resolver listening on port %u\n",
          (unsigned)pm_resolver_server_port(r.srv));
  uv_signal_init(&loop, &r.sigint);
  uv_signal_init(&loop, &r.sigterm);
  r.sigint.data = r.sigterm.data = &r;
  uv_signal_start(&r.sigint, on_stop_signal, SIGINT);
  uv_signal_start(&r.sigterm, on_stop_signal, SIGTERM);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}

/* Loads the password of the command line's mesh (password.h) and derives
 * its link PSK into locked memory (*psk; NULL for an open mesh). The
 * password lives only in locked memory and is wiped before returning; it
 * is never printed. Returns 0 or the exit code. */
static int mesh_psk(const pm_cli *cli, uint8_t **psk) {
  *psk = NULL;
  const char *mesh = cli->mesh ? cli->mesh : "lobby";
  char err[512];
  char *pw = sodium_malloc(PM_PASSWORD_MAX + 1);
  if (!pw) {
    fprintf(stderr, "peermesh: out of memory\n");
    return 1;
  }
  size_t len = 0;
  pm_password_source src = {cli->password_file, cli->ask_password, mesh};
  int rc =
      pm_password_load(&src, pw, PM_PASSWORD_MAX + 1, &len, err, sizeof err);
  /* Scripts' child processes must not inherit it, whatever happened. */
  pm_password_forget_env();
  if (rc == PM_PASSWORD_NONE) {
    sodium_free(pw);
    return 0;
  }
  if (rc < 0) {
    sodium_free(pw);
    fprintf(stderr, "peermesh: %s; not joining '%s'\n", err, mesh);
    return 1;
  }
  *psk = sodium_malloc(PM_PSK_LEN);
  rc = *psk ? pm_psk_derive(mesh, pw, len, *psk) : PM_ERR_NOMEM;
  sodium_free(pw); /* wipes */
  if (rc) {
    fprintf(stderr,
            "peermesh: cannot derive the key of mesh '%s' from its "
            "password: %s\n",
            mesh, pm_strerror(rc));
    sodium_free(*psk);
    *psk = NULL;
    return 1;
  }
  return 0;
}

static int cmd_script(const pm_cli *cli) {
  char dir[4096], err[512], sdir[PATH_MAX], lib[PATH_MAX + 8],
      chat[PATH_MAX + 16];
  if (data_dir(cli, dir, sizeof dir))
    return 1;
  /* The mesh password, when there is one, becomes the link PSK now, before
   * the loop and the script start; the password is wiped at once and
   * PEERMESH_PASSWORD leaves the environment. */
  uint8_t *psk = NULL;
  int rc = mesh_psk(cli, &psk);
  if (rc)
    return rc;
  scripts_dir(sdir, sizeof sdir);
  snprintf(lib, sizeof lib, "%s/lib", sdir);
  const char *script = cli->script;
  if (cli->cmd == PM_CMD_CHAT) {
    snprintf(chat, sizeof chat, "%s/chat.lua", sdir);
    script = chat;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  pm_host_options ho;
  memset(&ho, 0, sizeof ho);
  ho.data_dir = dir;
  ho.mesh = cli->mesh;
  ho.listen = cli->listen;
  ho.peers = cli->peers;
  ho.npeers = cli->npeers;
  ho.resolvers = cli->resolvers;
  ho.nresolvers = cli->nresolvers;
  ho.resolver_none = cli->resolver_none;
  ho.verbose = cli->verbose;
  ho.psk = psk;
  pm_host *host;
  if (pm_host_new(&loop, &ho, &host, err, sizeof err) != 0) {
    fprintf(stderr, "peermesh: %s\n", err);
    uv_loop_close(&loop);
    sodium_free(psk);
    return 1;
  }
  pm_lua_options lo = {cli->nick};
  int code =
      pm_lua_run(host, script, cli->script_argc, cli->script_argv, lib, &lo);
  pm_host_free(host);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0 && cli->verbose)
    fprintf(stderr, "peermesh: some handles were still open at exit\n");
  sodium_free(psk); /* wipes */
  return code;
}

int main(int argc, char **argv) {
  signal(SIGPIPE,
         SIG_IGN); /* a peer closing mid-write is an EPIPE, not death */
  if (sodium_init() < 0) {
    fprintf(stderr, "peermesh: libsodium failed to start\n");
    return 1;
  }
  pm_cli cli;
  char err[512];
  if (pm_cli_parse(argc, argv, &cli, err, sizeof err) != 0) {
    fprintf(stderr, "peermesh: %s\n\n", err);
    pm_cli_usage(stderr);
    return 2;
  }
  switch (cli.cmd) {
  case PM_CMD_HELP:
    pm_cli_usage(stdout);
    return 0;
  case PM_CMD_VERSION:
    printf("peermesh %s\n", PM_VERSION);
    return 0;
  case PM_CMD_HISTORY:
    return pm_cmd_history(cli.sub_argc, cli.sub_argv, stdout, stderr);
  case PM_CMD_ID:
    return cmd_id(&cli);
  case PM_CMD_RESOLVER:
    return cmd_resolver(&cli);
  case PM_CMD_CHAT:
  case PM_CMD_RUN:
    return cmd_script(&cli);
  }
  return 2;
}
