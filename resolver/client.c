#include "client.h"
#include "net.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "frame.h"
#include "wire.h"

#define CONNECT_TIMEOUT_MS 5000
#define REQUEST_TIMEOUT_MS 5000
#define RETRY_FIRST_MIN_MS 20
#define RETRY_FIRST_SPREAD_MS 100 /* first retry: 20..120 ms */
#define RETRY_MAX_MS 10000
/* A connection lost sooner than this after it came up does not reset the
 * retry delay, so a server that accepts and drops at once is not hammered. */
#define STABLE_MS 1000
#define REGISTER_REFUSED_RETRY_MS 30000
#define REFRESH_MIN_MS 500

enum client_state {
  ST_IDLE,       /* not connected; the retry timer runs */
  ST_CONNECTING, /* the retry timer is the connect timeout */
  ST_UP,
};

/* One TCP connection attempt; replaced on every reconnection. */
typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  pm_resolver_client *c;
} conn;

typedef struct reg {
  struct reg *next;
  char mesh[PM_MESH_NAME_MAX + 1];
  uint8_t node_id[PM_NODE_ID_LEN];
  char addr[PM_ADDR_MAX + 1];
  uint32_t pending_id; /* REGISTER awaiting an answer; 0: none */
  uint64_t due_ms;     /* when to send REGISTER next, while up */
} reg;

typedef struct pending {
  struct pending *prev, *next;
  uint32_t id;
  uint64_t deadline_ms;
  pm_resolver_resolve_cb cb;
  void *ud;
} pending;

typedef struct wreq {
  uv_write_t req;
  pm_resolver_client *c;
  conn *conn;
  pm_buf buf;
} wreq;

struct pm_resolver_client {
  uv_loop_t *loop;
  struct sockaddr_storage addr;
  pm_resolver_client_state_cb state_cb;
  void *ud;
  int state;
  int reported; /* last state told to state_cb: -1 none yet, 0, 1 */
  int closed;
  int handles;   /* handles initialised and not yet closed */
  int retry_err; /* failure to act on when the retry timer fires */
  conn *conn;    /* the current connection, NULL when idle */
  uv_timer_t retry_timer;
  uv_timer_t req_timer;
  uv_timer_t reg_timer;
  uint64_t backoff_ms; /* last retry delay; 0: none since the last success */
  uint64_t up_since;
  uint32_t last_id;
  reg *regs;
  pending *head, *tail; /* resolves in sending order = deadline order */
  pm_buf in;
  char slab[PM_FRAME_MAX];
};

static void service_regs(pm_resolver_client *c);
static void connection_lost(pm_resolver_client *c, int err);
static void on_retry_timer(uv_timer_t *t);

/* ---- small helpers ------------------------------------------------------- */

static uint32_t next_id(pm_resolver_client *c) {
  if (++c->last_id == 0)
    c->last_id = 1;
  return c->last_id;
}

static int map_uv_error(int uverr) {
  switch (uverr) {
  case UV_ECONNREFUSED:
    return PM_ERR_REFUSED;
  case UV_ETIMEDOUT:
    return PM_ERR_TIMEOUT;
  case UV_EOF:
  case UV_ECONNRESET:
    return PM_ERR_CLOSED;
  case UV_ENOMEM:
  case UV_ENOBUFS:
    return PM_ERR_NOMEM;
  default:
    return PM_ERR_IO;
  }
}

static void report(pm_resolver_client *c, int up, int err) {
  if (c->reported == up)
    return;
  c->reported = up;
  if (c->state_cb)
    c->state_cb(c->ud, up, up ? 0 : err);
}

/* ---- freeing ------------------------------------------------------------- */

static void client_maybe_free(pm_resolver_client *c) {
  if (!c->closed || c->handles > 0)
    return;
  pm_buf_free(&c->in);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  pm_resolver_client *c = h->data;
  c->handles--;
  client_maybe_free(c);
}

static void on_conn_closed(uv_handle_t *h) {
  conn *k = h->data;
  pm_resolver_client *c = k->c;
  free(k);
  c->handles--;
  client_maybe_free(c);
}

/* Closes the current connection, if any. Its pending callbacks (connect,
 * writes) then see a connection that is no longer c->conn and do nothing. */
static void conn_drop(pm_resolver_client *c) {
  conn *k = c->conn;
  if (!k)
    return;
  c->conn = NULL;
  uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
}

static void free_pending(pm_resolver_client *c) {
  while (c->head) {
    pending *p = c->head;
    c->head = p->next;
    free(p);
  }
  c->tail = NULL;
}

static void free_regs(pm_resolver_client *c) {
  while (c->regs) {
    reg *r = c->regs;
    c->regs = r->next;
    free(r);
  }
}

/* ---- writing ------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  pm_resolver_client *c = w->c;
  conn *k = w->conn;
  pm_buf_free(&w->buf);
  free(w);
  if (status < 0 && !c->closed && k == c->conn && c->state == ST_UP)
    connection_lost(c, map_uv_error(status));
}

/* Acts on a connection failure found inside a call from the application, on
 * the next loop iteration, so that no callback runs inside that call. */
static void defer_loss(pm_resolver_client *c, int err) {
  if (c->retry_err)
    return;
  c->retry_err = err;
  uv_timer_start(&c->retry_timer, on_retry_timer, 0, 0);
}

/* Sends the frames in `b` (taking its bytes). Returns 0, PM_ERR_NOMEM, or
 * PM_ERR_IO (not connected, or the connection failed: its loss is then
 * handled on the next loop iteration). */
static int send_buf(pm_resolver_client *c, pm_buf *b) {
  if (b->err) {
    int err = b->err;
    pm_buf_free(b);
    return err;
  }
  if (c->state != ST_UP || !c->conn) {
    pm_buf_free(b);
    return PM_ERR_IO;
  }
  wreq *w = malloc(sizeof *w);
  if (!w) {
    pm_buf_free(b);
    return PM_ERR_NOMEM;
  }
  w->c = c;
  w->conn = c->conn;
  w->buf = *b;
  pm_buf_init(b, NULL);
  uv_buf_t ub = uv_buf_init((char *)w->buf.data, (unsigned)w->buf.len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->conn->tcp, &ub, 1, on_write);
  if (rc != 0) {
    pm_buf_free(&w->buf);
    free(w);
    defer_loss(c, map_uv_error(rc));
    return PM_ERR_IO;
  }
  return 0;
}

/* ---- connecting ---------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status);

static void schedule_retry(pm_resolver_client *c) {
  if (c->backoff_ms == 0)
    c->backoff_ms = RETRY_FIRST_MIN_MS +
                    (uint64_t)randombytes_uniform(RETRY_FIRST_SPREAD_MS + 1);
  else if (c->backoff_ms < RETRY_MAX_MS / 2)
    c->backoff_ms *= 2;
  else
    c->backoff_ms = RETRY_MAX_MS;
  uv_timer_start(&c->retry_timer, on_retry_timer, c->backoff_ms, 0);
}

static int start_connect(pm_resolver_client *c) {
  conn *k = calloc(1, sizeof *k);
  if (!k)
    return PM_ERR_NOMEM;
  k->c = c;
  int rc = uv_tcp_init(c->loop, &k->tcp);
  if (rc != 0) {
    free(k);
    return map_uv_error(rc);
  }
  k->tcp.data = k;
  k->connect.data = k;
  c->handles++;
  rc = uv_tcp_connect(&k->connect, &k->tcp, (const struct sockaddr *)&c->addr,
                      on_connect);
  if (rc != 0) {
    uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
    return map_uv_error(rc);
  }
  c->conn = k;
  c->state = ST_CONNECTING;
  uv_timer_start(&c->retry_timer, on_retry_timer, CONNECT_TIMEOUT_MS, 0);
  return 0;
}

/* The attempt under way (or about to be made) failed. */
static void attempt_failed(pm_resolver_client *c, int err) {
  conn_drop(c);
  c->state = ST_IDLE;
  schedule_retry(c);
  report(c, 0, err);
}

static void on_retry_timer(uv_timer_t *t) {
  pm_resolver_client *c = t->data;
  if (c->closed)
    return;
  int err = c->retry_err;
  c->retry_err = 0;
  switch (c->state) {
  case ST_UP:
    if (err)
      connection_lost(c, err);
    break;
  case ST_CONNECTING:
    attempt_failed(c, PM_ERR_TIMEOUT);
    break;
  default:
    if (!err)
      err = start_connect(c);
    if (err)
      attempt_failed(c, err);
    break;
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void on_connect(uv_connect_t *req, int status) {
  conn *k = req->data;
  pm_resolver_client *c = k->c;
  if (c->closed || k != c->conn)
    return; /* cancelled, or a connection already given up */
  if (status < 0) {
    attempt_failed(c, map_uv_error(status));
    return;
  }
  uv_timer_stop(&c->retry_timer);
  c->retry_err = 0;
  c->state = ST_UP;
  c->up_since = uv_now(c->loop);
  pm_buf_reset(&c->in);
  uv_tcp_nodelay(&k->tcp, 1);
  int rc = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
  if (rc != 0) {
    connection_lost(c, map_uv_error(rc));
    return;
  }
  for (reg *r = c->regs; r; r = r->next) {
    r->pending_id = 0;
    r->due_ms = 0;
  }
  service_regs(c); /* registrations go first on the wire */
  if (c->state == ST_UP)
    report(c, 1, 0);
}

/* ---- losing the connection ----------------------------------------------- */

static void connection_lost(pm_resolver_client *c, int err) {
  uint64_t now = uv_now(c->loop);
  conn_drop(c);
  c->state = ST_IDLE;
  c->retry_err = 0;
  uv_timer_stop(&c->req_timer);
  uv_timer_stop(&c->reg_timer);
  for (reg *r = c->regs; r; r = r->next)
    r->pending_id = 0;
  if (now - c->up_since >= STABLE_MS)
    c->backoff_ms = 0;
  schedule_retry(c);
  /* Fail the resolves in flight, one at a time: any callback may close. */
  while (c->head) {
    pending *p = c->head;
    c->head = p->next;
    if (c->head)
      c->head->prev = NULL;
    else
      c->tail = NULL;
    pm_resolver_resolve_cb cb = p->cb;
    void *ud = p->ud;
    free(p);
    cb(ud, err, NULL, 0);
    if (c->closed)
      return;
  }
  report(c, 0, err);
}

/* ---- registrations ------------------------------------------------------- */

static void on_reg_timer(uv_timer_t *t) {
  pm_resolver_client *c = t->data;
  if (!c->closed)
    service_regs(c);
}

/* Sends every registration that is due, then sets the timer for the next. */
static void service_regs(pm_resolver_client *c) {
  if (c->state != ST_UP)
    return;
  uint64_t now = uv_now(c->loop);
  pm_buf b;
  pm_buf_init(&b, NULL);
  for (reg *r = c->regs; r; r = r->next) {
    if (r->due_ms > now)
      continue;
    pm_resolver_msg_register m;
    m.req_id = next_id(c);
    memcpy(m.mesh, r->mesh, sizeof m.mesh);
    memcpy(m.node_id, r->node_id, PM_NODE_ID_LEN);
    memcpy(m.addr, r->addr, sizeof m.addr);
    if (pm_resolver_msg_write_register(&b, &m) != 0)
      break;
    r->pending_id = m.req_id;
    r->due_ms = now + REQUEST_TIMEOUT_MS; /* unanswered: send again */
  }
  uint64_t next = UINT64_MAX;
  for (reg *r = c->regs; r; r = r->next)
    if (r->due_ms < next)
      next = r->due_ms;
  if (b.err) /* out of memory: try again a little later */
    next = now + REFRESH_MIN_MS;
  if (b.len || b.err) {
    if (send_buf(c, &b) != 0)
      return; /* the loss is handled on the next iteration */
  } else {
    pm_buf_free(&b);
  }
  if (next == UINT64_MAX)
    uv_timer_stop(&c->reg_timer);
  else
    uv_timer_start(&c->reg_timer, on_reg_timer, next > now ? next - now : 0, 0);
}

static reg *reg_find(pm_resolver_client *c, const char *mesh,
                     const uint8_t node_id[PM_NODE_ID_LEN], reg ***where) {
  reg **pp = &c->regs;
  for (; *pp; pp = &(*pp)->next) {
    if (strcmp((*pp)->mesh, mesh) == 0 &&
        memcmp((*pp)->node_id, node_id, PM_NODE_ID_LEN) == 0)
      break;
  }
  if (where)
    *where = pp;
  return *pp;
}

static int mesh_arg_ok(const char *mesh) {
  return mesh &&
         pm_resolver_mesh_valid(mesh, strnlen(mesh, PM_MESH_NAME_MAX + 1));
}

int pm_resolver_client_register(pm_resolver_client *c, const char *mesh,
                                const uint8_t node_id[PM_NODE_ID_LEN],
                                const char *addr) {
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  if (!c || c->closed || !mesh_arg_ok(mesh) || !node_id || !addr ||
      strnlen(addr, PM_ADDR_MAX + 1) > PM_ADDR_MAX ||
      pm_addr_parse(addr, host, &port, 0) != 0)
    return PM_ERR_INVAL;
  reg *r = reg_find(c, mesh, node_id, NULL);
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r)
      return PM_ERR_NOMEM;
    strcpy(r->mesh, mesh);
    memcpy(r->node_id, node_id, PM_NODE_ID_LEN);
    r->next = c->regs;
    c->regs = r;
  }
  strcpy(r->addr, addr);
  r->pending_id = 0;
  r->due_ms = 0;
  service_regs(c);
  return 0;
}

int pm_resolver_client_unregister(pm_resolver_client *c, const char *mesh,
                                  const uint8_t node_id[PM_NODE_ID_LEN]) {
  if (!c || c->closed || !mesh_arg_ok(mesh) || !node_id)
    return PM_ERR_INVAL;
  reg **where;
  reg *r = reg_find(c, mesh, node_id, &where);
  if (r) {
    *where = r->next;
    free(r);
  }
  if (c->state != ST_UP)
    return 0;
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_unregister m;
  m.req_id = next_id(c);
  strcpy(m.mesh, mesh);
  memcpy(m.node_id, node_id, PM_NODE_ID_LEN);
  int rc = pm_resolver_msg_write_unregister(&b, &m);
  if (rc) {
    pm_buf_free(&b);
    return rc;
  }
  rc = send_buf(c, &b);
  /* A failed send means a lost connection; the server forgets nothing it
   * was not told, but the registration expires there on its own. */
  return rc == PM_ERR_NOMEM ? rc : 0;
}

/* ---- resolving ----------------------------------------------------------- */

static void on_req_timer(uv_timer_t *t);

static void arm_req_timer(pm_resolver_client *c) {
  if (!c->head) {
    uv_timer_stop(&c->req_timer);
    return;
  }
  uint64_t now = uv_now(c->loop);
  uint64_t d = c->head->deadline_ms;
  uv_timer_start(&c->req_timer, on_req_timer, d > now ? d - now : 0, 0);
}

static void pending_unlink(pm_resolver_client *c, pending *p) {
  if (p->prev)
    p->prev->next = p->next;
  else
    c->head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  else
    c->tail = p->prev;
}

static void on_req_timer(uv_timer_t *t) {
  pm_resolver_client *c = t->data;
  if (c->closed)
    return;
  uint64_t now = uv_now(c->loop);
  while (c->head && c->head->deadline_ms <= now) {
    pending *p = c->head;
    pending_unlink(c, p);
    pm_resolver_resolve_cb cb = p->cb;
    void *ud = p->ud;
    free(p);
    cb(ud, PM_ERR_TIMEOUT, NULL, 0);
    if (c->closed)
      return;
  }
  arm_req_timer(c);
}

int pm_resolver_client_resolve(pm_resolver_client *c, const char *mesh,
                               unsigned max,
                               const uint8_t exclude[PM_NODE_ID_LEN],
                               pm_resolver_resolve_cb cb, void *ud) {
  if (!c || c->closed || !mesh_arg_ok(mesh) || max == 0 ||
      max > PM_RESOLVER_MAX_ENTRIES || !cb)
    return PM_ERR_INVAL;
  if (c->state != ST_UP)
    return PM_ERR_IO;
  pending *p = calloc(1, sizeof *p);
  if (!p)
    return PM_ERR_NOMEM;
  pm_resolver_msg_resolve m;
  memset(&m, 0, sizeof m);
  m.req_id = next_id(c);
  strcpy(m.mesh, mesh);
  m.max = (uint8_t)max;
  if (exclude)
    memcpy(m.exclude, exclude, PM_NODE_ID_LEN);
  pm_buf b;
  pm_buf_init(&b, NULL);
  int rc = pm_resolver_msg_write_resolve(&b, &m);
  if (rc == 0)
    rc = send_buf(c, &b);
  else
    pm_buf_free(&b);
  if (rc) {
    free(p);
    return rc;
  }
  p->id = m.req_id;
  p->deadline_ms = uv_now(c->loop) + REQUEST_TIMEOUT_MS;
  p->cb = cb;
  p->ud = ud;
  p->prev = c->tail;
  if (c->tail)
    c->tail->next = p;
  else
    c->head = p;
  c->tail = p;
  if (c->head == p)
    arm_req_timer(c);
  return 0;
}

/* ---- reading ------------------------------------------------------------- */

static pending *pending_find(pm_resolver_client *c, uint32_t id) {
  for (pending *p = c->head; p; p = p->next)
    if (p->id == id)
      return p;
  return NULL;
}

static reg *reg_by_pending(pm_resolver_client *c, uint32_t id) {
  for (reg *r = c->regs; r; r = r->next)
    if (r->pending_id == id)
      return r;
  return NULL;
}

/* Completes a resolve with its answer; the callback may close the client. */
static void complete(pm_resolver_client *c, pending *p, int status,
                     const pm_resolver_entry *entries, size_t n) {
  int was_head = c->head == p;
  pending_unlink(c, p);
  pm_resolver_resolve_cb cb = p->cb;
  void *ud = p->ud;
  free(p);
  if (was_head)
    arm_req_timer(c);
  cb(ud, status, entries, n);
}

/* Acts on one answer frame. Returns 0, or a negative code when the frame is
 * not a valid answer (the connection must then be closed). */
static int handle_answer(pm_resolver_client *c, const pm_frame *f) {
  pm_resolver_msg m;
  int rc = pm_resolver_msg_read(f, &m);
  if (rc)
    return rc;
  uint64_t now = uv_now(c->loop);
  switch (m.type) {
  case PM_RESOLVER_MSG_REGISTERED: {
    reg *r =
        m.u.registered.req_id ? reg_by_pending(c, m.u.registered.req_id) : NULL;
    if (r) {
      uint64_t half = (uint64_t)m.u.registered.lifetime_s * 500u;
      r->pending_id = 0;
      r->due_ms = now + (half < REFRESH_MIN_MS ? REFRESH_MIN_MS : half);
      service_regs(c);
    }
    return 0;
  }
  case PM_RESOLVER_MSG_RESOLVED: {
    pending *p = pending_find(c, m.u.resolved.req_id);
    if (p)
      complete(c, p, 0, m.u.resolved.entries, m.u.resolved.count);
    return 0;
  }
  case PM_RESOLVER_MSG_UNREGISTERED:
    return 0;
  case PM_RESOLVER_MSG_ERROR: {
    uint32_t id = m.u.error.req_id;
    pending *p = id ? pending_find(c, id) : NULL;
    if (p) {
      complete(c, p, pm_resolver_code_to_err(m.u.error.code), NULL, 0);
      return 0;
    }
    reg *r = id ? reg_by_pending(c, id) : NULL;
    if (r) {
      r->pending_id = 0;
      r->due_ms = now + REGISTER_REFUSED_RETRY_MS;
      service_regs(c);
    }
    return 0;
  }
  default:
    return PM_ERR_UNEXPECTED; /* a request, from the server */
  }
}

/* The input holds at most one frame: see the server's on_alloc. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *k = h->data;
  pm_resolver_client *c = k->c;
  size_t want = sizeof c->slab - c->in.len;
  if (c->in.len >= PM_FRAME_HEADER) {
    size_t total = PM_FRAME_HEADER + (size_t)pm_load_u32(c->in.data + 2);
    if (total > c->in.len && total - c->in.len < want)
      want = total - c->in.len;
  }
  if (want == 0)
    want = 1;
  *buf = uv_buf_init(c->slab, (unsigned)want);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn *k = st->data;
  pm_resolver_client *c = k->c;
  if (c->closed || k != c->conn || c->state != ST_UP || nread == 0)
    return;
  if (nread < 0) {
    connection_lost(c, map_uv_error((int)nread));
    return;
  }
  pm_buf_put(&c->in, buf->base, (size_t)nread);
  if (c->in.err || c->in.len > PM_FRAME_MAX) {
    connection_lost(c, c->in.err ? c->in.err : PM_ERR_MALFORMED);
    return;
  }
  size_t off = 0;
  while (off < c->in.len) {
    pm_frame f;
    size_t used;
    int rc = pm_frame_parse(c->in.data + off, c->in.len - off, &f, &used);
    if (rc == 0)
      break;
    if (rc > 0) {
      off += used;
      rc = handle_answer(c, &f);
    }
    if (rc < 0) {
      if (!c->closed && k == c->conn)
        connection_lost(c, PM_ERR_MALFORMED);
      return;
    }
    if (c->closed || k != c->conn)
      return; /* a callback closed the client or lost the connection */
  }
  pm_buf_consume(&c->in, off);
}

/* ---- public -------------------------------------------------------------- */

int pm_resolver_client_new(uv_loop_t *loop, const char *addr,
                           pm_resolver_client_state_cb state_cb, void *ud,
                           pm_resolver_client **out) {
  *out = NULL;
  struct sockaddr_storage sa;
  if (!loop || pm_net_sockaddr(addr, 0, &sa) != 0)
    return PM_ERR_INVAL;
  if (sodium_init() < 0)
    return PM_ERR_IO;
  pm_resolver_client *c = calloc(1, sizeof *c);
  if (!c)
    return PM_ERR_NOMEM;
  c->loop = loop;
  c->addr = sa;
  c->state_cb = state_cb;
  c->ud = ud;
  c->reported = -1;
  c->state = ST_IDLE;
  pm_buf_init(&c->in, NULL);
  uv_timer_init(loop, &c->retry_timer);
  uv_timer_init(loop, &c->req_timer);
  uv_timer_init(loop, &c->reg_timer);
  c->retry_timer.data = c->req_timer.data = c->reg_timer.data = c;
  c->handles = 3;
  int rc = start_connect(c);
  if (rc) {
    /* Report the failure from the loop, not from inside this call. */
    c->retry_err = rc;
    uv_timer_start(&c->retry_timer, on_retry_timer, 0, 0);
  }
  *out = c;
  return 0;
}

int pm_resolver_client_is_up(const pm_resolver_client *c) {
  return c && !c->closed && c->state == ST_UP;
}

void pm_resolver_client_close(pm_resolver_client *c) {
  if (!c || c->closed)
    return;
  c->closed = 1;
  free_pending(c);
  free_regs(c);
  conn_drop(c);
  uv_close((uv_handle_t *)&c->retry_timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->req_timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->reg_timer, on_handle_closed);
}
