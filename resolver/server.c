#include "server.h"
#include "net.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "frame.h"
#include "registry.h"
#include "resolver_msg.h"
#include "wire.h"

#define DEFAULT_MAX_CONNECTIONS 1024
#define DEFAULT_SWEEP_MS 60000
#define LISTEN_BACKLOG 128
/* Answers queued for one peer before the server stops reading from it. */
#define OUT_MAX (256 * 1024)
/* An idle connection keeps no input buffer larger than this. */
#define IN_KEEP 4096

typedef struct conn {
  uv_tcp_t tcp; /* tcp.data points back here */
  uv_shutdown_t shutdown;
  pm_resolver_server *s;
  struct conn *prev, *next;
  pm_buf in;          /* unparsed input: at most one frame */
  size_t out_pending; /* bytes handed to uv_write, not yet written */
  int reading;
  int draining; /* no more requests: close once the answers are written */
  int shutting_down;
  int closing;
  uint64_t drain_since;
  char peer[PM_ADDR_MAX + 1]; /* the peer's IP as text; "" when unknown */
} conn;

typedef struct wreq {
  uv_write_t req;
  conn *c;
  pm_buf buf;
} wreq;

struct pm_resolver_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t sweep;
  pm_registry *reg;
  conn *conns;
  size_t nconns;
  unsigned max_conns;
  uint64_t sweep_ms;
  int handles; /* handles initialised and not yet closed */
  int closing;
  void (*on_closed)(void *ud);
  void *on_closed_ud;
  uint16_t port;
  /* libuv reads into this and the bytes are copied out at once, so every
   * connection can share it. */
  char slab[PM_FRAME_MAX];
};

static void conn_process(conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* ---- teardown ------------------------------------------------------------ */

static void server_maybe_finish(pm_resolver_server *s) {
  if (!s->closing || s->handles > 0)
    return;
  void (*cb)(void *) = s->on_closed;
  void *ud = s->on_closed_ud;
  pm_registry_free(s->reg);
  free(s);
  if (cb)
    cb(ud);
}

static void on_server_handle_closed(uv_handle_t *h) {
  pm_resolver_server *s = h->data;
  s->handles--;
  server_maybe_finish(s);
}

static void on_conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  pm_resolver_server *s = c->s;
  pm_buf_free(&c->in);
  free(c);
  s->handles--;
  server_maybe_finish(s);
}

static void conn_close(conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  pm_resolver_server *s = c->s;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->nconns--;
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  conn_close(req->data);
}

/* Stops taking requests and closes once the answers already queued are
 * written; a peer that never reads them is cut by the sweep. */
static void conn_drain(conn *c) {
  c->draining = 1;
  if (c->closing || c->shutting_down)
    return;
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
  c->drain_since = uv_now(c->s->loop);
  c->shutting_down = 1;
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
    conn_close(c);
}

/* ---- writing ------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  conn *c = w->c;
  c->out_pending -= w->buf.len;
  pm_buf_free(&w->buf);
  free(w);
  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  /* Reading was paused for a peer slow to take its answers: resume. */
  if (!c->reading && !c->draining && c->out_pending < OUT_MAX / 2)
    conn_process(c);
}

/* Queues `out` (taking ownership of its bytes) on the connection. */
static void conn_write(conn *c, pm_buf *out) {
  wreq *w = malloc(sizeof *w);
  if (!w) {
    pm_buf_free(out);
    conn_close(c);
    return;
  }
  w->c = c;
  w->buf = *out;
  pm_buf_init(out, NULL);
  uv_buf_t b = uv_buf_init((char *)w->buf.data, (unsigned)w->buf.len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    pm_buf_free(&w->buf);
    free(w);
    conn_close(c);
    return;
  }
  c->out_pending += w->buf.len;
}

/* ---- requests ------------------------------------------------------------ */

static int host_is_unspecified(const char *host) {
  unsigned char b[16];
  if (uv_inet_pton(AF_INET, host, b) == 0)
    return b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0;
  if (uv_inet_pton(AF_INET6, host, b) == 0) {
    unsigned char acc = 0;
    for (size_t i = 0; i < sizeof b; i++)
      acc |= b[i];
    return acc == 0;
  }
  return 0;
}

/* Replaces an unspecified host in `addr` by the connection's peer IP.
 * Returns 0, or PM_ERR_IO when the peer's address is unknown. */
static int substitute_host(const conn *c, char addr[PM_ADDR_MAX + 1]) {
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  if (pm_addr_parse(addr, host, &port, 0) != 0 || !host_is_unspecified(host))
    return 0;
  if (!c->peer[0])
    return PM_ERR_IO;
  return pm_addr_format(addr, c->peer, port) == 0 ? 0 : PM_ERR_IO;
}

static int answer_error(pm_buf *out, uint32_t req_id, int code, const char *m) {
  return pm_resolver_msg_write_error(out, req_id, (uint16_t)code, m);
}

static int handle_register(conn *c, const pm_resolver_msg_register *m,
                           pm_buf *out) {
  pm_resolver_server *s = c->s;
  char addr[PM_ADDR_MAX + 1];
  memcpy(addr, m->addr, sizeof addr);
  if (substitute_host(c, addr) != 0)
    return answer_error(out, m->req_id, PM_RESOLVER_CODE_INTERNAL,
                        "cannot observe the client's address");
  uint32_t lifetime = 0;
  int rc = pm_registry_register(s->reg, uv_now(s->loop), m->mesh, m->node_id,
                                addr, c->peer[0] ? c->peer : NULL, &lifetime);
  switch (rc) {
  case 0: {
    pm_resolver_msg_registered r = {m->req_id, lifetime};
    return pm_resolver_msg_write_registered(out, &r);
  }
  case PM_ERR_FULL:
    return answer_error(out, m->req_id, PM_RESOLVER_CODE_QUOTA,
                        "registration quota exceeded");
  case PM_ERR_INVAL:
    return answer_error(out, m->req_id, PM_RESOLVER_CODE_BAD_REQUEST,
                        "invalid registration");
  default:
    return answer_error(out, m->req_id, PM_RESOLVER_CODE_INTERNAL,
                        pm_strerror(rc));
  }
}

static int handle_resolve(conn *c, const pm_resolver_msg_resolve *m,
                          pm_buf *out) {
  pm_resolver_server *s = c->s;
  pm_resolver_msg_resolved r;
  size_t n = 0;
  r.req_id = m->req_id;
  int rc = pm_registry_resolve(s->reg, uv_now(s->loop), m->mesh, m->max,
                               m->exclude, r.entries, &n);
  if (rc)
    return answer_error(out, m->req_id, PM_RESOLVER_CODE_BAD_REQUEST,
                        pm_strerror(rc));
  r.count = (uint8_t)n;
  return pm_resolver_msg_write_resolved(out, &r);
}

static int handle_unregister(conn *c, const pm_resolver_msg_unregister *m,
                             pm_buf *out) {
  pm_resolver_server *s = c->s;
  int rc = pm_registry_unregister(s->reg, uv_now(s->loop), m->mesh, m->node_id);
  if (rc == PM_ERR_NOT_FOUND)
    return answer_error(out, m->req_id, PM_RESOLVER_CODE_NOT_FOUND,
                        "no such registration");
  if (rc)
    return answer_error(out, m->req_id, PM_RESOLVER_CODE_BAD_REQUEST,
                        pm_strerror(rc));
  pm_resolver_msg_unregistered r = {m->req_id};
  return pm_resolver_msg_write_unregistered(out, &r);
}

/* Appends the answer to one request frame to `out`. A request that cannot
 * be understood is answered with bad_request and ends the connection. */
static int handle_frame(conn *c, const pm_frame *f, pm_buf *out) {
  pm_resolver_msg m;
  int rc = pm_resolver_msg_read(f, &m);
  if (rc == 0) {
    switch (m.type) {
    case PM_RESOLVER_MSG_REGISTER:
      return handle_register(c, &m.u.reg, out);
    case PM_RESOLVER_MSG_RESOLVE:
      return handle_resolve(c, &m.u.resolve, out);
    case PM_RESOLVER_MSG_UNREGISTER:
      return handle_unregister(c, &m.u.unreg, out);
    default:
      rc = PM_ERR_UNEXPECTED; /* an answer sent as a request */
      break;
    }
  }
  uint32_t req_id = 0;
  if (pm_resolver_msg_peek_req_id(f, &req_id) != 0)
    req_id = 0;
  c->draining = 1;
  return answer_error(out, req_id, PM_RESOLVER_CODE_BAD_REQUEST,
                      pm_strerror(rc));
}

/* Answers every complete request in the input buffer, as long as the peer
 * keeps taking its answers, then decides whether to keep reading. */
static void conn_process(conn *c) {
  pm_buf out;
  pm_buf_init(&out, NULL);
  size_t off = 0;
  int failed = 0;
  while (!c->draining && c->out_pending + out.len < OUT_MAX) {
    pm_frame f;
    size_t used;
    if (off == c->in.len)
      break;
    int rc = pm_frame_parse(c->in.data + off, c->in.len - off, &f, &used);
    if (rc == 0)
      break;
    if (rc < 0) {
      failed = 1; /* the stream cannot be resynchronised */
      break;
    }
    off += used;
    if (handle_frame(c, &f, &out) != 0) {
      failed = 1; /* no answer could be built (out of memory) */
      break;
    }
  }
  pm_buf_consume(&c->in, off);
  if (c->in.len == 0 && c->in.cap > IN_KEEP)
    pm_buf_free(&c->in);

  if (failed || out.err) {
    pm_buf_free(&out);
    conn_close(c);
    return;
  }
  if (out.len)
    conn_write(c, &out);
  else
    pm_buf_free(&out);
  if (c->closing)
    return;
  if (c->draining) {
    conn_drain(c);
    return;
  }
  uv_stream_t *st = (uv_stream_t *)&c->tcp;
  if (c->out_pending >= OUT_MAX) {
    if (c->reading) {
      uv_read_stop(st);
      c->reading = 0;
    }
  } else if (!c->reading) {
    if (uv_read_start(st, on_alloc, on_read) != 0) {
      conn_close(c);
      return;
    }
    c->reading = 1;
  }
}

/* ---- reading ------------------------------------------------------------- */

/* Input is bounded by one frame. While reading, the buffer holds only the
 * start of one frame (conn_process consumed the complete ones), whose header
 * pm_frame_parse has checked: read no more than the rest of that frame, or
 * than PM_FRAME_MAX bytes in all while its header is incomplete. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  size_t want = sizeof c->s->slab - c->in.len;
  if (c->in.len >= PM_FRAME_HEADER) {
    size_t total = PM_FRAME_HEADER + (size_t)pm_load_u32(c->in.data + 2);
    if (total > c->in.len && total - c->in.len < want)
      want = total - c->in.len;
  }
  if (want == 0)
    want = 1; /* cannot happen; on_read then closes the connection */
  *buf = uv_buf_init(c->s->slab, (unsigned)want);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn *c = st->data;
  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    if (nread == UV_EOF)
      conn_drain(c); /* answer what was asked, then go */
    else
      conn_close(c);
    return;
  }
  if (c->draining)
    return;
  pm_buf_put(&c->in, buf->base, (size_t)nread);
  if (c->in.err || c->in.len > PM_FRAME_MAX) {
    conn_close(c);
    return;
  }
  conn_process(c);
}

/* ---- accepting ----------------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status) {
  pm_resolver_server *s = listener->data;
  if (status < 0 || s->closing)
    return;
  conn *c = calloc(1, sizeof *c);
  if (!c)
    return; /* out of memory: the connection waits in the backlog */
  c->s = s;
  pm_buf_init(&c->in, NULL);
  if (uv_tcp_init(s->loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  c->tcp.data = c;
  s->handles++;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
      s->nconns > s->max_conns) {
    conn_close(c); /* refused: too many connections */
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  pm_net_peer_ip(&c->tcp, c->peer);
  conn_process(c); /* starts reading */
}

/* ---- sweeping ------------------------------------------------------------ */

static void on_sweep(uv_timer_t *t) {
  pm_resolver_server *s = t->data;
  uint64_t now = uv_now(s->loop);
  pm_registry_expire(s->reg, now);
  conn *next;
  for (conn *c = s->conns; c; c = next) {
    next = c->next;
    if (c->draining && now - c->drain_since >= s->sweep_ms)
      conn_close(c);
  }
}

/* ---- public -------------------------------------------------------------- */

static uint64_t server_random(void *ud) {
  (void)ud;
  return ((uint64_t)randombytes_random() << 32) | randombytes_random();
}

static int listen_error(int uverr) {
  switch (uverr) {
  case UV_EADDRINUSE:
    return PM_ERR_EXISTS;
  case UV_EINVAL:
  case UV_EAFNOSUPPORT:
    return PM_ERR_INVAL;
  case UV_ENOMEM:
  case UV_ENOBUFS:
    return PM_ERR_NOMEM;
  default:
    return PM_ERR_IO;
  }
}

int pm_resolver_server_start(uv_loop_t *loop, const char *listen_addr,
                             const pm_resolver_server_config *cfg,
                             pm_resolver_server **out) {
  *out = NULL;
  struct sockaddr_storage sa;
  if (!loop || pm_net_sockaddr(listen_addr, 1, &sa) != 0)
    return PM_ERR_INVAL;
  if (sodium_init() < 0)
    return PM_ERR_IO;

  pm_resolver_server_config defaults;
  memset(&defaults, 0, sizeof defaults);
  if (!cfg)
    cfg = &defaults;
  pm_resolver_server *s = calloc(1, sizeof *s);
  if (!s)
    return PM_ERR_NOMEM;
  s->loop = loop;
  s->max_conns =
      cfg->max_connections ? cfg->max_connections : DEFAULT_MAX_CONNECTIONS;
  s->sweep_ms = cfg->sweep_ms ? cfg->sweep_ms : DEFAULT_SWEEP_MS;
  pm_registry_config rc = {
      .lifetime_s = cfg->lifetime_s,
      .max_entries = cfg->max_entries,
      .max_per_mesh = cfg->max_per_mesh,
      .max_per_client = cfg->max_per_client,
      .random = server_random,
      .random_ud = NULL,
      .alloc = NULL,
  };
  int err = pm_registry_new(&rc, &s->reg);
  if (err) {
    free(s);
    return err;
  }
  err = uv_tcp_init(loop, &s->listener);
  if (err) {
    pm_registry_free(s->reg);
    free(s);
    return listen_error(err);
  }
  s->listener.data = s;
  s->handles = 1;
  err = uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
  if (err == 0)
    err = uv_timer_init(loop, &s->sweep);
  if (err) {
    /* The listener is freed by the loop; nobody is told. */
    s->closing = 1;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    return listen_error(err);
  }
  s->handles++;
  s->sweep.data = s;
  uv_timer_start(&s->sweep, on_sweep, s->sweep_ms, s->sweep_ms);
  uv_unref((uv_handle_t *)&s->sweep);
  s->port = pm_net_local_port(&s->listener);
  *out = s;
  return 0;
}

uint16_t pm_resolver_server_port(const pm_resolver_server *s) {
  return s->port;
}

size_t pm_resolver_server_connections(const pm_resolver_server *s) {
  return s->nconns;
}

size_t pm_resolver_server_registrations(const pm_resolver_server *s) {
  return pm_registry_count(s->reg);
}

void pm_resolver_server_close(pm_resolver_server *s,
                              void (*on_closed)(void *ud), void *ud) {
  if (!s || s->closing)
    return;
  s->closing = 1;
  s->on_closed = on_closed;
  s->on_closed_ud = ud;
  uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
  uv_close((uv_handle_t *)&s->sweep, on_server_handle_closed);
  while (s->conns)
    conn_close(s->conns);
}
