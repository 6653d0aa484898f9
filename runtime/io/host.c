#include "host.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "password.h"
#include "paths.h"
#include "server.h"

typedef struct pending_msg {
  pm_history_entry e;
  char mesh[PM_MESH_NAME_MAX + 1];
  char action[PM_ACTION_MAX + 1];
  char *body; /* owned */
} pending_msg;

struct pm_host {
  uv_loop_t *loop;
  pm_host_options opts;
  pm_identity identity;
  int have_identity;
  pm_db *db;
  int db_failed; /* reported once; history is then not kept */
  pending_msg *pending;
  size_t npending, pending_cap;
  uv_check_t flush_check;
  pm_resolver_server *local_resolver;
  unsigned nodes;
};

int64_t pm_host_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pm_host_log(const pm_host *host, int verbose, const char *fmt, ...) {
  if (verbose && !(host && host->opts.verbose))
    return;
  va_list ap;
  va_start(ap, fmt);
  fputs("peermesh: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int pm_host_new(uv_loop_t *loop, const pm_host_options *opts, pm_host **out,
                char *err, size_t errlen) {
  *out = NULL;
  if (pm_paths_mkdir_p(opts->data_dir) != 0) {
    snprintf(err, errlen, "cannot create data directory %s: %s", opts->data_dir,
             strerror(errno));
    return PM_ERR_IO;
  }
  pm_host *h = calloc(1, sizeof *h);
  if (!h) {
    snprintf(err, errlen, "out of memory");
    return PM_ERR_NOMEM;
  }
  h->loop = loop;
  h->opts = *opts;
  h->identity.fd = -1;
  uv_check_init(loop, &h->flush_check);
  h->flush_check.data = h;
  *out = h;
  return 0;
}

uv_loop_t *pm_host_loop(pm_host *h) {
  return h->loop;
}
const pm_host_options *pm_host_options_get(const pm_host *h) {
  return &h->opts;
}

int pm_host_identity(pm_host *h, const pm_identity **out, char *err,
                     size_t errlen) {
  if (!h->have_identity) {
    int rc = pm_identity_acquire(h->opts.data_dir, &h->identity, err, errlen);
    if (rc)
      return rc;
    h->have_identity = 1;
  }
  *out = &h->identity;
  return 0;
}

int pm_host_mesh_psk(const pm_host *h, const char *mesh, uint8_t *psk,
                     int *password) {
  const char *cli_mesh = h->opts.mesh ? h->opts.mesh : "lobby";
  if (h->opts.psk && mesh && strcmp(mesh, cli_mesh) == 0) {
    memcpy(psk, h->opts.psk, PM_PSK_LEN);
    *password = 1;
    return 0;
  }
  *password = 0;
  return pm_psk_derive(mesh, NULL, 0, psk);
}

static pm_db *host_db(pm_host *h) {
  if (h->db || h->db_failed)
    return h->db;
  char path[4096], err[512];
  if (pm_paths_join(path, sizeof path, h->opts.data_dir, "history.db") != 0 ||
      pm_db_open(path, 0, &h->db, err, sizeof err) != 0) {
    h->db_failed = 1;
    h->db = NULL;
    pm_host_log(h, 0, "history will not be saved: %s", err);
  }
  return h->db;
}

static void free_pending(pm_host *h) {
  for (size_t i = 0; i < h->npending; i++)
    free(h->pending[i].body);
  h->npending = 0;
}

static void flush_history(pm_host *h) {
  if (h->npending == 0)
    return;
  pm_db *db = host_db(h);
  if (db) {
    pm_history_entry *batch = malloc(h->npending * sizeof *batch);
    if (batch) {
      /* The strings live in the pending array, which may have moved since
       * each entry was queued: point at them only now. */
      for (size_t i = 0; i < h->npending; i++) {
        batch[i] = h->pending[i].e;
        batch[i].mesh = h->pending[i].mesh;
        batch[i].action = h->pending[i].action;
        batch[i].body = h->pending[i].body;
      }
      int rc = pm_db_history_add(db, batch, h->npending);
      if (rc == PM_ERR_INVAL) {
        /* One body is not JSON (a foreign implementation sent it): store
         * the rest one by one rather than lose the batch. */
        for (size_t i = 0; i < h->npending; i++)
          if (pm_db_history_add(db, &batch[i], 1) == PM_ERR_INVAL)
            pm_host_log(h, 1, "message with a non-JSON body not stored");
      } else if (rc) {
        pm_host_log(h, 0, "could not save history: %s", pm_db_errmsg(db));
      }
      free(batch);
    }
  }
  free_pending(h);
}

static void on_flush_check(uv_check_t *c) {
  pm_host *h = c->data;
  uv_check_stop(c);
  flush_history(h);
}

void pm_host_history_add(pm_host *h, const char *mesh, const pm_event *ev) {
  if (h->db_failed)
    return;
  if (h->npending == h->pending_cap) {
    size_t cap = h->pending_cap ? h->pending_cap * 2 : 16;
    pending_msg *p = realloc(h->pending, cap * sizeof *p);
    if (!p)
      return;
    h->pending = p;
    h->pending_cap = cap;
  }
  pending_msg *m = &h->pending[h->npending];
  memset(m, 0, sizeof *m);
  m->body = malloc(ev->body_len + 1);
  if (!m->body)
    return;
  memcpy(m->body, ev->body, ev->body_len);
  m->body[ev->body_len] = '\0';
  snprintf(m->mesh, sizeof m->mesh, "%s", mesh);
  snprintf(m->action, sizeof m->action, "%s", ev->action);
  memcpy(m->e.msg_id, ev->id, PM_MSG_ID_LEN);
  memcpy(m->e.author, ev->origin, PM_NODE_ID_LEN);
  m->e.seq = ev->seq;
  m->e.time_ms = (int64_t)ev->time_ms;
  m->e.received_ms = pm_host_wall_ms();
  m->e.hops = ev->hops;
  m->e.own = ev->own;
  m->e.body_len = ev->body_len;
  h->npending++;
  if (!uv_is_active((uv_handle_t *)&h->flush_check))
    uv_check_start(&h->flush_check, on_flush_check);
}

void pm_host_peer_seen(pm_host *h, const char *mesh,
                       const uint8_t id[PM_NODE_ID_LEN], const char *addr) {
  pm_db *db = host_db(h);
  if (db && pm_db_peer_seen(db, mesh, id, addr, pm_host_wall_ms()) != 0)
    pm_host_log(h, 1, "could not remember peer %s: %s", addr, pm_db_errmsg(db));
}

void pm_host_known_peers(pm_host *h, const char *mesh, size_t max,
                         int (*cb)(void *ud, const uint8_t id[PM_NODE_ID_LEN],
                                   const char *addr),
                         void *ud) {
  pm_db *db = host_db(h);
  if (db && pm_db_peers_recent(db, mesh, max, cb, ud) != 0)
    pm_host_log(h, 1, "could not read known peers: %s", pm_db_errmsg(db));
}

int pm_host_serve_local_resolver(pm_host *h, const char *addr) {
  if (h->local_resolver)
    return 0;
  int rc = pm_resolver_server_start(h->loop, addr, NULL, &h->local_resolver);
  if (rc == 0)
    pm_host_log(h, 1, "hosting the local resolver on %s", addr);
  else
    h->local_resolver = NULL;
  return rc;
}

void pm_host_node_attach(pm_host *h) {
  h->nodes++;
}

void pm_host_node_detach(pm_host *h) {
  if (h->nodes)
    h->nodes--;
  if (h->nodes == 0 && h->local_resolver) {
    pm_resolver_server_close(h->local_resolver, NULL, NULL);
    h->local_resolver = NULL;
  }
}

void pm_host_free(pm_host *h) {
  if (!h)
    return;
  flush_history(h);
  free(h->pending);
  if (h->db)
    pm_db_close(h->db);
  if (h->local_resolver)
    pm_resolver_server_close(h->local_resolver, NULL, NULL);
  if (h->have_identity)
    pm_identity_release(&h->identity);
  uv_close((uv_handle_t *)&h->flush_check, NULL);
  /* Let libuv finish closing the handles we own before freeing them. */
  uv_run(h->loop, UV_RUN_NOWAIT);
  free(h);
}
