/* The resolver server and client over real loopback TCP. Nothing sleeps:
 * each wait runs the loop until the awaited condition holds, and fails when
 * a guard timer fires first. Every test ends with a loop that closes cleanly
 * (uv_loop_close succeeds only when no handle was leaked). */
#include <stdlib.h>

#include "client.h"
#include "resolver_msg.h"
#include "server.h"
#include "test.h"

#define WAIT_MS 5000

static uv_loop_t loop;
static uv_timer_t guard;
static int timed_out;

static void on_guard(uv_timer_t *t) {
  (void)t;
  timed_out = 1;
  uv_stop(&loop);
}

static void loop_begin(void) {
  CHECK_INT(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &guard);
  uv_unref((uv_handle_t *)&guard);
}

/* Runs the loop until cond(arg) holds; 0 on timeout. */
static int wait_for(int (*cond)(void *), void *arg, const char *what) {
  timed_out = 0;
  uv_timer_start(&guard, on_guard, WAIT_MS, 0);
  while (!cond(arg) && !timed_out)
    uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  if (!cond(arg)) {
    fprintf(stderr, "timed out waiting for %s\n", what);
    return 0;
  }
  return 1;
}

static int flag_set(void *p) {
  return *(int *)p != 0;
}

#define WAIT_FLAG(flag) CHECK(wait_for(flag_set, &(flag), #flag))

/* Runs the loop until nothing but the guard is left, then closes it. */
static void loop_end(void) {
  timed_out = 0;
  uv_timer_start(&guard, on_guard, WAIT_MS, 0);
  uv_unref((uv_handle_t *)&guard);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(!timed_out); /* something kept the loop alive */
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
}

static void node(uint8_t id[PM_NODE_ID_LEN], uint8_t n) {
  memset(id, 0, PM_NODE_ID_LEN);
  id[0] = 0xee;
  id[31] = n;
}

/* ---- client observers ---------------------------------------------------- */

typedef struct watch {
  int ups, downs;
  int up; /* last state */
  int last_err;
  int close_on_down; /* pm_resolver_client_close from inside the callback */
  pm_resolver_client *client;
} watch;

static void on_state(void *ud, int up, int err) {
  watch *w = ud;
  w->up = up;
  if (up) {
    w->ups++;
  } else {
    w->downs++;
    w->last_err = err;
    CHECK(err < 0);
    if (w->close_on_down)
      pm_resolver_client_close(w->client);
  }
}

typedef struct answer {
  int done;
  int calls;
  int status;
  size_t n;
  pm_resolver_entry e[PM_RESOLVER_MAX_ENTRIES];
  pm_resolver_client *close_me;
} answer;

static void on_resolved(void *ud, int status, const pm_resolver_entry *e,
                        size_t n) {
  answer *a = ud;
  a->done = 1;
  a->calls++;
  a->status = status;
  a->n = n;
  CHECK(n <= PM_RESOLVER_MAX_ENTRIES);
  if (n)
    memcpy(a->e, e, n * sizeof *e);
  if (status)
    CHECK_INT(n, 0);
  if (a->close_me)
    pm_resolver_client_close(a->close_me);
}

static const pm_resolver_entry *find(const answer *a, uint8_t n) {
  uint8_t id[PM_NODE_ID_LEN];
  node(id, n);
  for (size_t i = 0; i < a->n; i++)
    if (memcmp(a->e[i].node_id, id, PM_NODE_ID_LEN) == 0)
      return &a->e[i];
  return NULL;
}

static void resolve_now(pm_resolver_client *c, const char *mesh, unsigned max,
                        const uint8_t *exclude, answer *a) {
  memset(a, 0, sizeof *a);
  CHECK_INT(pm_resolver_client_resolve(c, mesh, max, exclude, on_resolved, a),
            0);
  WAIT_FLAG(a->done);
}

static void on_server_closed(void *ud) {
  *(int *)ud = 1;
}

static void close_server(pm_resolver_server *s) {
  int closed = 0;
  pm_resolver_server_close(s, on_server_closed, &closed);
  WAIT_FLAG(closed);
}

static pm_resolver_server *start_server(const char *addr,
                                        const pm_resolver_server_config *cfg,
                                        char client_addr[64]) {
  pm_resolver_server *s = NULL;
  CHECK_INT(pm_resolver_server_start(&loop, addr, cfg, &s), 0);
  if (s && client_addr)
    snprintf(client_addr, 64, "127.0.0.1:%u", pm_resolver_server_port(s));
  return s;
}

static int up_count_is(void *p) {
  const watch *w = p;
  return w->ups > 0 && w->up;
}

/* ---- tests --------------------------------------------------------------- */

static void test_register_and_resolve(void) {
  loop_begin();
  char addr[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", NULL, addr);
  CHECK(pm_resolver_server_port(s) != 0);
  watch w = {0};
  pm_resolver_client *c = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w, &c), 0);
  w.client = c;
  CHECK(wait_for(up_count_is, &w, "client up"));
  CHECK_INT(w.ups, 1);
  CHECK_INT(w.downs, 0);
  CHECK(pm_resolver_client_is_up(c));

  uint8_t a[PM_NODE_ID_LEN], b[PM_NODE_ID_LEN];
  node(a, 1);
  node(b, 2);
  CHECK_INT(pm_resolver_client_register(c, "lobby", a, "10.1.2.3:4001"), 0);
  CHECK_INT(pm_resolver_client_register(c, "lobby", b, "0.0.0.0:4002"), 0);

  answer ans;
  resolve_now(c, "lobby", 10, NULL, &ans);
  CHECK_INT(ans.status, 0);
  CHECK_INT(ans.n, 2);
  const pm_resolver_entry *ea = find(&ans, 1), *eb = find(&ans, 2);
  CHECK(ea && eb);
  if (ea)
    CHECK_STR(ea->addr, "10.1.2.3:4001");
  if (eb) /* the unspecified host became the observed one */
    CHECK_STR(eb->addr, "127.0.0.1:4002");

  resolve_now(c, "lobby", 10, a, &ans);
  CHECK_INT(ans.status, 0);
  CHECK_INT(ans.n, 1);
  CHECK(find(&ans, 2) != NULL);

  resolve_now(c, "lobby", 1, NULL, &ans);
  CHECK_INT(ans.n, 1);

  resolve_now(c, "nobody-here", 32, NULL, &ans);
  CHECK_INT(ans.status, 0);
  CHECK_INT(ans.n, 0);

  CHECK_INT(pm_resolver_client_unregister(c, "lobby", a), 0);
  resolve_now(c, "lobby", 10, NULL, &ans);
  CHECK_INT(ans.n, 1);
  CHECK(find(&ans, 2) != NULL);
  CHECK_INT(pm_resolver_server_registrations(s), 1);

  /* Bad arguments fail at once and never call back. */
  answer never = {0};
  CHECK_INT(
      pm_resolver_client_resolve(c, "bad mesh", 1, NULL, on_resolved, &never),
      PM_ERR_INVAL);
  CHECK_INT(pm_resolver_client_resolve(c, "m", 0, NULL, on_resolved, &never),
            PM_ERR_INVAL);
  CHECK_INT(pm_resolver_client_resolve(c, "m", 33, NULL, on_resolved, &never),
            PM_ERR_INVAL);
  CHECK_INT(pm_resolver_client_register(c, "m", a, "no-port"), PM_ERR_INVAL);
  CHECK_INT(pm_resolver_client_register(c, "", a, "1.2.3.4:5"), PM_ERR_INVAL);

  pm_resolver_client_close(c);
  close_server(s);
  loop_end();
  CHECK_INT(never.calls, 0);
  CHECK_INT(w.downs, 0); /* closing reports nothing */
}

static void test_ipv6(void) {
  loop_begin();
  pm_resolver_server *s = NULL;
  int rc = pm_resolver_server_start(&loop, "[::1]:0", NULL, &s);
  if (rc != 0) {
    fprintf(stderr, "IPv6 loopback unavailable (%s): skipped\n",
            pm_errname(rc));
    loop_end();
    return;
  }
  char addr[64];
  snprintf(addr, sizeof addr, "[::1]:%u", pm_resolver_server_port(s));
  watch w = {0};
  pm_resolver_client *c = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w, &c), 0);
  CHECK(wait_for(up_count_is, &w, "client up"));
  uint8_t a[PM_NODE_ID_LEN];
  node(a, 6);
  CHECK_INT(pm_resolver_client_register(c, "six", a, "[::]:7000"), 0);
  answer ans;
  resolve_now(c, "six", 4, NULL, &ans);
  CHECK_INT(ans.n, 1);
  if (ans.n)
    CHECK_STR(ans.e[0].addr, "[::1]:7000");
  pm_resolver_client_close(c);
  close_server(s);
  loop_end();
}

static int reg_count_is_one(void *p) {
  return pm_resolver_server_registrations(p) == 1;
}

static int is_down(void *p) {
  const watch *w = p;
  return w->downs > 0 && !w->up;
}

static void test_server_restart(void) {
  loop_begin();
  char addr[64], listen[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", NULL, addr);
  snprintf(listen, sizeof listen, "127.0.0.1:%u", pm_resolver_server_port(s));
  watch w = {0};
  pm_resolver_client *c = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w, &c), 0);
  CHECK(wait_for(up_count_is, &w, "client up"));
  uint8_t a[PM_NODE_ID_LEN];
  node(a, 1);
  CHECK_INT(pm_resolver_client_register(c, "m", a, "0.0.0.0:5000"), 0);
  CHECK(wait_for(reg_count_is_one, s, "registration"));

  /* The server goes: the client says so. */
  close_server(s);
  CHECK(wait_for(is_down, &w, "client down"));
  CHECK_INT(w.downs, 1);
  CHECK(!pm_resolver_client_is_up(c));
  CHECK(w.last_err == PM_ERR_CLOSED || w.last_err == PM_ERR_IO);
  answer never = {0};
  CHECK_INT(pm_resolver_client_resolve(c, "m", 1, NULL, on_resolved, &never),
            PM_ERR_IO);

  /* A new server on the same port: the client returns and registers again
   * on its own. */
  s = start_server(listen, NULL, NULL);
  CHECK(wait_for(up_count_is, &w, "client up again"));
  CHECK_INT(w.ups, 2);
  CHECK(wait_for(reg_count_is_one, s, "re-registration"));
  answer ans;
  resolve_now(c, "m", 4, NULL, &ans);
  CHECK_INT(ans.n, 1);
  if (ans.n)
    CHECK_STR(ans.e[0].addr, "127.0.0.1:5000");

  pm_resolver_client_close(c);
  close_server(s);
  loop_end();
  CHECK_INT(never.calls, 0);
}

static void test_nobody_answers_then_server_appears(void) {
  loop_begin();
  /* Find a free port, then leave it free. */
  char addr[64], listen[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", NULL, addr);
  snprintf(listen, sizeof listen, "127.0.0.1:%u", pm_resolver_server_port(s));
  close_server(s);

  watch w = {0};
  pm_resolver_client *c = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w, &c), 0);
  CHECK(wait_for(is_down, &w, "first attempt to fail"));
  CHECK_INT(w.downs, 1);
  CHECK_INT(w.ups, 0);
  CHECK_INT(w.last_err, PM_ERR_REFUSED);
  uint8_t a[PM_NODE_ID_LEN];
  node(a, 3);
  /* Registering while down is remembered for later. */
  CHECK_INT(pm_resolver_client_register(c, "late", a, "10.0.0.3:3"), 0);

  s = start_server(listen, NULL, NULL);
  CHECK(wait_for(up_count_is, &w, "client up"));
  CHECK_INT(w.downs, 1); /* failed retries while down were silent */
  CHECK(wait_for(reg_count_is_one, s, "registration"));
  pm_resolver_client_close(c);
  close_server(s);
  loop_end();
}

static void test_address_in_use(void) {
  loop_begin();
  char addr[64], listen[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", NULL, addr);
  snprintf(listen, sizeof listen, "127.0.0.1:%u", pm_resolver_server_port(s));
  pm_resolver_server *s2 = (pm_resolver_server *)&loop;
  CHECK_INT(pm_resolver_server_start(&loop, listen, NULL, &s2), PM_ERR_EXISTS);
  CHECK(s2 == NULL);
  CHECK_INT(pm_resolver_server_start(&loop, "nonsense", NULL, &s2),
            PM_ERR_INVAL);
  CHECK_INT(pm_resolver_server_start(&loop, "localhost:0", NULL, &s2),
            PM_ERR_INVAL);
  CHECK_INT(pm_resolver_server_start(&loop, "1.2.3.4", NULL, &s2),
            PM_ERR_INVAL);
  pm_resolver_client *c = (pm_resolver_client *)&loop;
  CHECK_INT(pm_resolver_client_new(&loop, "127.0.0.1:0", NULL, NULL, &c),
            PM_ERR_INVAL);
  CHECK(c == NULL);
  CHECK_INT(pm_resolver_client_new(&loop, "example.org:80", NULL, NULL, &c),
            PM_ERR_INVAL);
  close_server(s);
  loop_end();
}

/* ---- raw connections ----------------------------------------------------- */

typedef struct raw {
  uv_tcp_t tcp;
  uv_connect_t connect;
  int connected, eof, closed;
  pm_buf in;
} raw;

static void raw_on_closed(uv_handle_t *h) {
  raw *r = h->data;
  r->closed = 1;
}

static void raw_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(size);
  buf->len = buf->base ? size : 0;
}

static void raw_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  raw *r = st->data;
  if (nread > 0)
    pm_buf_put(&r->in, buf->base, (size_t)nread);
  free(buf->base);
  if (nread < 0 && !r->eof) {
    r->eof = 1;
    uv_close((uv_handle_t *)&r->tcp, raw_on_closed);
  }
}

static void raw_on_connect(uv_connect_t *req, int status) {
  raw *r = req->data;
  CHECK_INT(status, 0);
  r->connected = 1;
  if (status == 0)
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
}

static void raw_open(raw *r, uint16_t port) {
  memset(r, 0, sizeof *r);
  pm_buf_init(&r->in, NULL);
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", port, &sa);
  uv_tcp_init(&loop, &r->tcp);
  r->tcp.data = r;
  r->connect.data = r;
  CHECK_INT(uv_tcp_connect(&r->connect, &r->tcp, (struct sockaddr *)&sa,
                           raw_on_connect),
            0);
  WAIT_FLAG(r->connected);
}

static void raw_on_write(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void raw_send(raw *r, const void *data, size_t len) {
  uv_write_t *req = malloc(sizeof *req + len);
  memcpy(req + 1, data, len);
  uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)len);
  CHECK_INT(uv_write(req, (uv_stream_t *)&r->tcp, &b, 1, raw_on_write), 0);
}

static void raw_free(raw *r) {
  if (!r->eof) {
    r->eof = 1;
    uv_close((uv_handle_t *)&r->tcp, raw_on_closed);
  }
  WAIT_FLAG(r->closed);
  pm_buf_free(&r->in);
}

/* Decodes the n-th frame the raw connection received. */
static int raw_frame(const raw *r, int index, pm_resolver_msg *m) {
  size_t off = 0;
  for (int i = 0;; i++) {
    pm_frame f;
    size_t used;
    if (pm_frame_parse(r->in.data + off, r->in.len - off, &f, &used) != 1)
      return -1;
    if (i == index)
      return pm_resolver_msg_read(&f, m);
    off += used;
  }
}

static int conns_zero(void *p) {
  return pm_resolver_server_connections(p) == 0;
}

static int conns_two(void *p) {
  return pm_resolver_server_connections(p) == 2;
}

static void test_hostile_input(void) {
  loop_begin();
  char addr[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", NULL, addr);
  uint16_t port = pm_resolver_server_port(s);

  /* Not our protocol at all. */
  raw r;
  raw_open(&r, port);
  const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  raw_send(&r, http, sizeof http - 1);
  WAIT_FLAG(r.eof);
  CHECK_INT(r.in.len, 0);
  raw_free(&r);

  /* A header announcing 4 GiB. */
  raw_open(&r, port);
  const uint8_t huge[] = {1, 0x42, 0xff, 0xff, 0xff, 0xff, 0, 0, 0};
  raw_send(&r, huge, sizeof huge);
  WAIT_FLAG(r.eof);
  CHECK_INT(r.in.len, 0);
  raw_free(&r);

  /* A well-framed request with a bad mesh name: answered, then closed. */
  raw_open(&r, port);
  uint8_t bad[64] = {1,    0x42, 0, 0,   0,   0,   0, 0,
                     0x12, 0x34, 3, 'a', ' ', 'b', 1};
  size_t blen = 15 + PM_NODE_ID_LEN;
  bad[5] = (uint8_t)(blen - 6);
  raw_send(&r, bad, blen);
  WAIT_FLAG(r.eof);
  pm_resolver_msg m;
  CHECK_INT(raw_frame(&r, 0, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_ERROR);
  CHECK_INT(m.u.error.req_id, 0x1234);
  CHECK_INT(m.u.error.code, PM_RESOLVER_CODE_BAD_REQUEST);
  raw_free(&r);

  /* An answer type sent as a request, after a good request: both answered
   * in order, then closed. */
  raw_open(&r, port);
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_resolve q;
  memset(&q, 0, sizeof q);
  q.req_id = 1;
  strcpy(q.mesh, "m");
  q.max = 3;
  CHECK_INT(pm_resolver_msg_write_resolve(&b, &q), 0);
  pm_resolver_msg_registered ans = {2, 60};
  CHECK_INT(pm_resolver_msg_write_registered(&b, &ans), 0);
  CHECK_INT(pm_resolver_msg_write_resolve(&b, &q), 0); /* never answered */
  raw_send(&r, b.data, b.len);
  WAIT_FLAG(r.eof);
  CHECK_INT(raw_frame(&r, 0, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_RESOLVED);
  CHECK_INT(raw_frame(&r, 1, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_ERROR);
  CHECK_INT(m.u.error.req_id, 2);
  CHECK_INT(raw_frame(&r, 2, &m), -1);
  raw_free(&r);

  /* Half a frame, then the peer leaves. */
  raw_open(&r, port);
  raw_send(&r, b.data, 10);
  raw_free(&r);

  /* Many requests in one burst, byte by byte for a few. */
  raw_open(&r, port);
  pm_buf_reset(&b);
  for (uint32_t i = 1; i <= 500; i++) {
    q.req_id = i;
    CHECK_INT(pm_resolver_msg_write_resolve(&b, &q), 0);
  }
  for (size_t i = 0; i < 20; i++)
    raw_send(&r, b.data + i, 1);
  raw_send(&r, b.data + 20, b.len - 20);
  uv_shutdown_t sd;
  CHECK_INT(uv_shutdown(&sd, (uv_stream_t *)&r.tcp, NULL), 0);
  WAIT_FLAG(r.eof); /* the server answers everything, then closes */
  CHECK_INT(raw_frame(&r, 499, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_RESOLVED);
  CHECK_INT(m.u.resolved.req_id, 500);
  raw_free(&r);
  pm_buf_free(&b);

  CHECK(wait_for(conns_zero, s, "connections closed"));

  /* The server still works. */
  watch w = {0};
  pm_resolver_client *c = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w, &c), 0);
  CHECK(wait_for(up_count_is, &w, "client up"));
  answer a;
  resolve_now(c, "m", 1, NULL, &a);
  CHECK_INT(a.status, 0);
  pm_resolver_client_close(c);
  close_server(s);
  loop_end();
}

static void test_connection_limit_and_quota(void) {
  loop_begin();
  pm_resolver_server_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_connections = 2;
  cfg.max_per_client = 1;
  char addr[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", &cfg, addr);
  uint16_t port = pm_resolver_server_port(s);
  raw r1, r2, r3;
  raw_open(&r1, port);
  raw_open(&r2, port);
  CHECK(wait_for(conns_two, s, "two connections"));
  raw_open(&r3, port);
  WAIT_FLAG(r3.eof); /* the third is refused */
  CHECK_INT(pm_resolver_server_connections(s), 2);
  CHECK(!r1.eof && !r2.eof);

  /* One registration per client address: the second is over quota. */
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_register g;
  memset(&g, 0, sizeof g);
  strcpy(g.mesh, "q");
  strcpy(g.addr, "10.0.0.1:1");
  g.req_id = 10;
  node(g.node_id, 1);
  CHECK_INT(pm_resolver_msg_write_register(&b, &g), 0);
  g.req_id = 11;
  node(g.node_id, 2);
  CHECK_INT(pm_resolver_msg_write_register(&b, &g), 0);
  pm_resolver_msg_unregister u;
  memset(&u, 0, sizeof u);
  u.req_id = 12;
  strcpy(u.mesh, "q");
  node(u.node_id, 9);
  CHECK_INT(pm_resolver_msg_write_unregister(&b, &u), 0);
  raw_send(&r1, b.data, b.len);
  uv_shutdown_t sd;
  CHECK_INT(uv_shutdown(&sd, (uv_stream_t *)&r1.tcp, NULL), 0);
  WAIT_FLAG(r1.eof);
  pm_resolver_msg m;
  CHECK_INT(raw_frame(&r1, 0, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_REGISTERED);
  CHECK_INT(m.u.registered.req_id, 10);
  CHECK_INT(m.u.registered.lifetime_s, 300);
  CHECK_INT(raw_frame(&r1, 1, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_ERROR);
  CHECK_INT(m.u.error.req_id, 11);
  CHECK_INT(m.u.error.code, PM_RESOLVER_CODE_QUOTA);
  CHECK_INT(raw_frame(&r1, 2, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_ERROR);
  CHECK_INT(m.u.error.req_id, 12);
  CHECK_INT(m.u.error.code, PM_RESOLVER_CODE_NOT_FOUND);
  pm_buf_free(&b);

  raw_free(&r1);
  raw_free(&r2);
  raw_free(&r3);
  close_server(s); /* with no connection left open by the test */
  loop_end();
}

static void on_pause_done(uv_timer_t *t) {
  *(int *)t->data = 1;
}

static int frames_at_least(void *p) {
  const raw *r = p;
  pm_resolver_msg m;
  return raw_frame(r, 10031, &m) == 0;
}

/* A peer that sends many requests and does not read the answers: the server
 * stops reading from it instead of queueing answers without bound, and
 * resumes when the peer reads again. Every answer arrives, in order. */
static void test_slow_reader(void) {
  loop_begin();
  char addr[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", NULL, addr);
  uint16_t port = pm_resolver_server_port(s);
  raw r;
  raw_open(&r, port);
  uv_read_stop((uv_stream_t *)&r.tcp);
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_register g;
  memset(&g, 0, sizeof g);
  strcpy(g.mesh, "big");
  for (uint8_t i = 0; i < 32; i++) {
    g.req_id = 100000u + i;
    node(g.node_id, i);
    snprintf(g.addr, sizeof g.addr, "[2001:db8::%u]:65000", 1000u + i);
    CHECK_INT(pm_resolver_msg_write_register(&b, &g), 0);
  }
  pm_resolver_msg_resolve q;
  memset(&q, 0, sizeof q);
  strcpy(q.mesh, "big");
  q.max = 32;
  for (uint32_t i = 0; i < 10000; i++) {
    q.req_id = i;
    CHECK_INT(pm_resolver_msg_write_resolve(&b, &q), 0);
  }
  raw_send(&r, b.data, b.len); /* about 15 MB of answers */
  pm_buf_free(&b);
  int paused = 0;
  uv_timer_t pause;
  uv_timer_init(&loop, &pause);
  pause.data = &paused;
  uv_timer_start(&pause, on_pause_done, 300, 0);
  WAIT_FLAG(paused);
  uv_close((uv_handle_t *)&pause, NULL);
  CHECK_INT(pm_resolver_server_connections(s), 1);
  uv_read_start((uv_stream_t *)&r.tcp, raw_alloc, raw_read);
  CHECK(wait_for(frames_at_least, &r, "all answers"));
  pm_resolver_msg m;
  CHECK_INT(raw_frame(&r, 31, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_REGISTERED);
  CHECK_INT(raw_frame(&r, 10031, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_RESOLVED);
  CHECK_INT(m.u.resolved.req_id, 9999);
  CHECK_INT(m.u.resolved.count, 32);
  raw_free(&r);
  close_server(s);
  loop_end();
}

/* With a 1 s lifetime the client refreshes every 500 ms, so the
 * registration outlives its lifetime several times over. */
static void test_refresh(void) {
  loop_begin();
  pm_resolver_server_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.lifetime_s = 1;
  char addr[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", &cfg, addr);
  watch w = {0};
  pm_resolver_client *c = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w, &c), 0);
  CHECK(wait_for(up_count_is, &w, "client up"));
  uint8_t a[PM_NODE_ID_LEN];
  node(a, 1);
  CHECK_INT(pm_resolver_client_register(c, "short", a, "10.0.0.1:1"), 0);
  int later = 0;
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &later;
  uv_timer_start(&t, on_pause_done, 2600, 0);
  WAIT_FLAG(later);
  uv_close((uv_handle_t *)&t, NULL);
  answer ans;
  resolve_now(c, "short", 4, NULL, &ans);
  CHECK_INT(ans.n, 1);
  /* Once unregistered, nothing refreshes it. */
  CHECK_INT(pm_resolver_client_unregister(c, "short", a), 0);
  resolve_now(c, "short", 4, NULL, &ans);
  CHECK_INT(ans.n, 0);
  pm_resolver_client_close(c);
  close_server(s);
  loop_end();
}

/* ---- a fake resolver that misbehaves ------------------------------------- */

typedef struct fake {
  uv_tcp_t listener;
  uv_tcp_t conn[4];
  int nconns;
  int mode; /* 0: close on the first bytes; 1: answer garbage */
  int accepted;
} fake;

static void fake_noop_close(uv_handle_t *h) {
  (void)h;
}

static void fake_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  fake *f = st->data;
  free(buf->base);
  if (nread == 0)
    return;
  if (nread > 0 && f->mode == 1) {
    /* A well-formed frame holding a RESOLVED that announces 200 entries. */
    static const uint8_t junk[] = {1, 0x43, 0, 0, 0, 5, 0, 0, 0, 1, 200};
    uv_buf_t b = uv_buf_init((char *)junk, sizeof junk);
    uv_try_write(st, &b, 1);
    return;
  }
  if (!uv_is_closing((uv_handle_t *)st))
    uv_close((uv_handle_t *)st, fake_noop_close);
}

static void fake_on_connection(uv_stream_t *l, int status) {
  fake *f = l->data;
  CHECK_INT(status, 0);
  if (f->nconns >= 4)
    return;
  uv_tcp_t *t = &f->conn[f->nconns++];
  uv_tcp_init(&loop, t);
  t->data = f;
  CHECK_INT(uv_accept(l, (uv_stream_t *)t), 0);
  uv_read_start((uv_stream_t *)t, raw_alloc, fake_read);
  f->accepted++;
}

static uint16_t fake_start(fake *f, int mode) {
  memset(f, 0, sizeof *f);
  f->mode = mode;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_init(&loop, &f->listener);
  f->listener.data = f;
  CHECK_INT(uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0), 0);
  CHECK_INT(uv_listen((uv_stream_t *)&f->listener, 8, fake_on_connection), 0);
  struct sockaddr_in bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&f->listener, (struct sockaddr *)&bound, &len);
  return ntohs(bound.sin_port);
}

static void fake_stop(fake *f) {
  uv_close((uv_handle_t *)&f->listener, fake_noop_close);
  for (int i = 0; i < f->nconns; i++)
    if (!uv_is_closing((uv_handle_t *)&f->conn[i]))
      uv_close((uv_handle_t *)&f->conn[i], fake_noop_close);
}

static int ups_two(void *p) {
  const watch *w = p;
  return w->ups >= 2 && w->up;
}

static void run_fake(int mode, int expect_status) {
  loop_begin();
  fake f;
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", fake_start(&f, mode));
  watch w = {0};
  pm_resolver_client *c = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w, &c), 0);
  CHECK(wait_for(up_count_is, &w, "client up"));
  answer a;
  memset(&a, 0, sizeof a);
  CHECK_INT(pm_resolver_client_resolve(c, "m", 3, NULL, on_resolved, &a), 0);
  WAIT_FLAG(a.done);
  CHECK_INT(a.calls, 1);
  CHECK_INT(a.status, expect_status);
  CHECK_INT(a.n, 0);
  CHECK(wait_for(is_down, &w, "client down"));
  CHECK_INT(w.last_err, expect_status);
  /* It comes back by itself. */
  CHECK(wait_for(ups_two, &w, "client reconnected"));
  CHECK_INT(f.accepted, 2);
  pm_resolver_client_close(c);
  fake_stop(&f);
  loop_end();
}

/* The connection drops while a resolve waits: the callback gets an error. */
static void test_loss_while_waiting(void) {
  run_fake(0, PM_ERR_CLOSED);
}

/* A malformed answer closes the connection; the client reconnects. */
static void test_malformed_answer(void) {
  run_fake(1, PM_ERR_MALFORMED);
}

/* ---- closing from callbacks ---------------------------------------------- */

static void test_close_inside_callbacks(void) {
  loop_begin();
  char addr[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", NULL, addr);

  /* From a resolve callback, with another resolve still pending: the
   * other one is never called. */
  watch w = {0};
  pm_resolver_client *c = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w, &c), 0);
  CHECK(wait_for(up_count_is, &w, "client up"));
  answer a1, a2;
  memset(&a1, 0, sizeof a1);
  memset(&a2, 0, sizeof a2);
  a1.close_me = c;
  CHECK_INT(pm_resolver_client_resolve(c, "m", 1, NULL, on_resolved, &a1), 0);
  CHECK_INT(pm_resolver_client_resolve(c, "m", 1, NULL, on_resolved, &a2), 0);
  WAIT_FLAG(a1.done);

  /* From the state callback, when the server goes. */
  watch w2 = {0};
  pm_resolver_client *c2 = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w2, &c2), 0);
  w2.client = c2;
  w2.close_on_down = 1;
  CHECK(wait_for(up_count_is, &w2, "second client up"));

  /* Closed with a resolve pending: its callback never runs. */
  watch w3 = {0};
  pm_resolver_client *c3 = NULL;
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w3, &c3), 0);
  CHECK(wait_for(up_count_is, &w3, "third client up"));
  answer a3;
  memset(&a3, 0, sizeof a3);
  CHECK_INT(pm_resolver_client_resolve(c3, "m", 1, NULL, on_resolved, &a3), 0);
  pm_resolver_client_close(c3);

  /* Closed right after creation, before it ever connected. */
  pm_resolver_client *c4 = NULL;
  watch w4 = {0};
  CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w4, &c4), 0);
  pm_resolver_client_close(c4);

  close_server(s);
  CHECK(wait_for(is_down, &w2, "second client down"));
  loop_end();
  CHECK_INT(a1.calls, 1);
  CHECK_INT(a2.calls, 0);
  CHECK_INT(a3.calls, 0);
  CHECK_INT(w2.downs, 1);
  CHECK_INT(w3.downs, 0);
  CHECK_INT(w4.ups + w4.downs, 0);
}

/* Closing the server with clients connected and a client closing in the
 * same turn releases everything. */
static void test_close_everything_at_once(void) {
  loop_begin();
  char addr[64];
  pm_resolver_server *s = start_server("127.0.0.1:0", NULL, addr);
  watch w[3] = {{0}};
  pm_resolver_client *c[3];
  for (int i = 0; i < 3; i++) {
    CHECK_INT(pm_resolver_client_new(&loop, addr, on_state, &w[i], &c[i]), 0);
    CHECK(wait_for(up_count_is, &w[i], "client up"));
    uint8_t id[PM_NODE_ID_LEN];
    node(id, (uint8_t)i);
    CHECK_INT(pm_resolver_client_register(c[i], "all", id, "0.0.0.0:9"), 0);
  }
  pm_resolver_server_close(s, NULL, NULL);
  for (int i = 0; i < 3; i++)
    pm_resolver_client_close(c[i]);
  loop_end();
}

TEST_MAIN(TEST_CASE(test_register_and_resolve), TEST_CASE(test_ipv6),
          TEST_CASE(test_server_restart),
          TEST_CASE(test_nobody_answers_then_server_appears),
          TEST_CASE(test_address_in_use), TEST_CASE(test_hostile_input),
          TEST_CASE(test_connection_limit_and_quota),
          TEST_CASE(test_slow_reader), TEST_CASE(test_refresh),
          TEST_CASE(test_loss_while_waiting), TEST_CASE(test_malformed_answer),
          TEST_CASE(test_close_inside_callbacks),
          TEST_CASE(test_close_everything_at_once))
