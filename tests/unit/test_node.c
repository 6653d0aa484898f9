/* The mesh node core (peermesh/node.h), driven by a tiny in-memory world.
 *
 * Each node listens on "127.0.0.1:<4000 + index>". The world drains every
 * node's outputs until all are quiet: SEND hands the bytes to the other end
 * of the connection, CLOSE tells the other end the transport ended, DIAL
 * connects to whichever node listens on the address (or fails the dial), and
 * RESOLVE answers with every other node's address and ID when the world is
 * set to. Time is virtual: literal timestamps, advanced to the nodes'
 * deadlines. A "raw" peer is a connection end driven by the test itself, to
 * send bytes no node would. */
#include <stdlib.h>

#include "frame.h"
#include "members.h"
#include "msg.h"
#include "peermesh/node.h"
#include "test.h"
#include "test_signer.h"

#define MAX_NODES 6
#define MAX_PAIRS 256
#define MAX_EVENTS 512
#define MAX_DIALS 512
#define MAX_FRAMES 8192
#define RAW (-1)
#define STEP_MS 1000      /* longest virtual-time jump without a deadline */
#define KEEPALIVE_MS 3000 /* as often as the root's beacon */

typedef struct rec_event {
  int kind;
  uint64_t at;
  uint8_t id[PM_MSG_ID_LEN];
  uint8_t origin[PM_NODE_ID_LEN];
  uint8_t peer[PM_NODE_ID_LEN];
  uint64_t seq;
  uint64_t time_ms;
  uint32_t hops;
  int own;
  int reason;
  int error;
  uint32_t link_id;
  char action[PM_ACTION_MAX + 1];
  char body[256];
  size_t body_len;
  char addr[PM_ADDR_MAX + 1];
} rec_event;

typedef struct rec_dial {
  char addr[PM_ADDR_MAX + 1];
  uint64_t at;
} rec_dial;

typedef struct wnode {
  pm_node *node;
  uint8_t id[PM_NODE_ID_LEN];
  char addr[32];
  char alias[32]; /* a second address it listens on, or "" */
  int listening;
  uint64_t rng;
  rec_event ev[MAX_EVENTS];
  size_t nev;
  rec_dial dial[MAX_DIALS];
  size_t ndial;
  unsigned resolves;
  int dead; /* crashed: freed, never called again */
} wnode;

/* One transport connection: `a` dialled `b` (for raw pairs `a` is the node
 * and `b` is RAW). */
typedef struct pair {
  int a;
  uint32_t la;
  int b;
  uint32_t lb;
  int open;
  pm_buf raw_in; /* what the node sent to a raw peer */
  pm_buf held;   /* bytes from the listener held back (see world.hold_*) */
  /* A raw neighbour (raw_neighbor) pings every KEEPALIVE_MS, as a live
   * peer's Tree frames would arrive, unless the test wants it silent. */
  int keepalive;
  uint64_t last_ping;
} pair;

typedef struct wire_frame {
  int from, to; /* node index or RAW */
  uint8_t type;
  int first; /* first payload byte, -1 when empty */
  uint64_t at;
  uint8_t payload[256]; /* the start of the payload */
  size_t len;           /* the whole payload's length */
} wire_frame;

typedef struct world {
  wnode n[MAX_NODES];
  int count;
  pair p[MAX_PAIRS];
  size_t np;
  uint64_t now;
  int answer_resolve;
  /* Latency: bytes node `hold_from` sends on connections dialled by node
   * `hold_dialer` wait in the pair until release() (-1 = off). A CLOSE
   * delivers them first, as TCP would. */
  int hold_from, hold_dialer;
  /* Slow connects: DIAL outputs are recorded but not answered. */
  int defer_dials;
  /* send_queue_limit for nodes added from now on. The harness never
   * reports bytes drained, so with a limit every link looks stalled. */
  size_t queue_limit;
  wire_frame frames[MAX_FRAMES];
  size_t nframes;
  unsigned stuck; /* deadline still <= now after handle_timeout(now) */
  uint64_t stuck_at;
  int stuck_node;
  int real_keys; /* world_add: Ed25519 keys, the core's own signer */
} world;

static uint64_t xorshift_random(void *ud) {
  uint64_t *s = ud;
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static world *world_new(uint64_t now) {
  world *w = calloc(1, sizeof *w);
  if (!w)
    abort();
  w->now = now;
  w->hold_from = w->hold_dialer = -1;
  return w;
}

static void world_free(world *w) {
  /* Every scenario also checks that the nodes never ask to be woken in the
   * past: that would spin the application's event loop. */
  if (w->stuck) {
    fprintf(stderr,
            "%u timer runs left a deadline <= now (first: node %d at %llu)\n",
            w->stuck, w->stuck_node, (unsigned long long)w->stuck_at);
    CHECK(0);
  }
  for (int i = 0; i < w->count; i++)
    pm_node_free(w->n[i].node);
  for (size_t i = 0; i < w->np; i++) {
    pm_buf_free(&w->p[i].raw_in);
    pm_buf_free(&w->p[i].held);
  }
  free(w);
}

/* Adds a node whose ID is 32 copies of `id_byte`; 0 counts mean defaults. */
static int world_add(world *w, const char *mesh, uint8_t id_byte,
                     unsigned min_n, unsigned ideal_n, unsigned max_n) {
  int i = w->count++;
  wnode *n = &w->n[i];
  memset(n->id, id_byte, PM_NODE_ID_LEN);
  snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", 4000 + i);
  n->listening = 1;
  n->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(i + 1) * 0x2545f4914f6cdd1dull;
  pm_node_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.mesh = mesh;
  memcpy(cfg.node_id, n->id, PM_NODE_ID_LEN);
  cfg.listen_port = (uint16_t)(4000 + i);
  cfg.min_neighbors = min_n;
  cfg.ideal_neighbors = ideal_n;
  cfg.max_neighbors = max_n;
  cfg.send_queue_limit = w->queue_limit;
  cfg.random = xorshift_random;
  cfg.random_ud = &n->rng;
  pm_signer signer = {pm_test_sign, pm_test_verify, NULL};
  uint8_t seed[crypto_sign_SEEDBYTES], sk[crypto_sign_SECRETKEYBYTES];
  if (w->real_keys) {
    memset(seed, id_byte, sizeof seed);
    crypto_sign_seed_keypair(n->id, sk, seed);
    memcpy(cfg.node_id, n->id, PM_NODE_ID_LEN);
    cfg.secret_key = sk;
  } else {
    cfg.signer = &signer;
  }
  int rc = pm_node_new(&cfg, &n->node);
  CHECK_INT(rc, 0);
  if (rc)
    abort();
  return i;
}

static pair *find_pair(world *w, int node, uint32_t link, int *other,
                       uint32_t *other_link) {
  for (size_t k = 0; k < w->np; k++) {
    pair *p = &w->p[k];
    if (p->a == node && p->la == link) {
      *other = p->b;
      *other_link = p->lb;
      return p;
    }
    if (p->b == node && p->b != RAW && p->lb == link) {
      *other = p->a;
      *other_link = p->la;
      return p;
    }
  }
  return NULL;
}

static pair *new_pair(world *w, int a, uint32_t la, int b, uint32_t lb) {
  if (w->np == MAX_PAIRS)
    abort();
  pair *p = &w->p[w->np++];
  memset(p, 0, sizeof *p);
  p->a = a;
  p->la = la;
  p->b = b;
  p->lb = lb;
  p->open = 1;
  pm_buf_init(&p->raw_in, NULL);
  pm_buf_init(&p->held, NULL);
  return p;
}

static void record_frames(world *w, int from, int to, const uint8_t *d,
                          size_t len) {
  size_t off = 0;
  while (off < len) {
    if (w->nframes == MAX_FRAMES) {
      CHECK(!"frame log full: raise MAX_FRAMES");
      return;
    }
    pm_frame f;
    size_t used;
    wire_frame *r = &w->frames[w->nframes++];
    r->from = from;
    r->to = to;
    r->at = w->now;
    if (pm_frame_parse(d + off, len - off, &f, &used) != 1) {
      r->type = 0xff; /* a node wrote something that is not a frame */
      r->first = -1;
      CHECK(0);
      return;
    }
    r->type = f.type;
    r->first = f.len ? f.payload[0] : -1;
    r->len = f.len;
    memcpy(r->payload, f.payload,
           f.len < sizeof r->payload ? f.len : sizeof r->payload);
    off += used;
  }
}

static void drain_events(world *w, int i) {
  wnode *n = &w->n[i];
  pm_event ev;
  while (pm_node_next_event(n->node, &ev)) {
    if (n->nev == MAX_EVENTS) {
      CHECK(!"event log full: raise MAX_EVENTS");
      continue;
    }
    rec_event *r = &n->ev[n->nev++];
    memset(r, 0, sizeof *r);
    r->kind = ev.kind;
    r->at = w->now;
    memcpy(r->id, ev.id, PM_MSG_ID_LEN);
    memcpy(r->origin, ev.origin, PM_NODE_ID_LEN);
    memcpy(r->peer, ev.peer, PM_NODE_ID_LEN);
    r->seq = ev.seq;
    r->time_ms = ev.time_ms;
    r->hops = ev.hops;
    r->own = ev.own;
    r->reason = ev.reason;
    r->error = ev.error;
    r->link_id = ev.link_id;
    if (ev.kind == PM_EV_MESSAGE) {
      snprintf(r->action, sizeof r->action, "%s", ev.action);
      r->body_len = ev.body_len;
      if (ev.body_len && ev.body_len < sizeof r->body)
        memcpy(r->body, ev.body, ev.body_len);
    }
    if (ev.addr)
      snprintf(r->addr, sizeof r->addr, "%s", ev.addr);
  }
}

static void do_dial(world *w, int i, const char *addr_in) {
  wnode *n = &w->n[i];
  char addr[PM_ADDR_MAX + 1];
  snprintf(addr, sizeof addr, "%s", addr_in); /* valid until next call */
  if (n->ndial < MAX_DIALS) {
    snprintf(n->dial[n->ndial].addr, sizeof n->dial[n->ndial].addr, "%s", addr);
    n->dial[n->ndial++].at = w->now;
  }
  if (w->defer_dials)
    return;
  int j = -1;
  for (int k = 0; k < w->count; k++)
    if (w->n[k].listening &&
        (strcmp(w->n[k].addr, addr) == 0 || strcmp(w->n[k].alias, addr) == 0))
      j = k;
  if (j < 0) {
    pm_node_dial_failed(n->node, w->now, addr);
    return;
  }
  uint32_t lj = 0, li = 0;
  if (pm_node_link_open(w->n[j].node, w->now, 0, "127.0.0.1", NULL, &lj)) {
    pm_node_dial_failed(n->node, w->now, addr);
    return;
  }
  if (pm_node_link_open(n->node, w->now, 1, "127.0.0.1", addr, &li)) {
    pm_node_link_closed(w->n[j].node, w->now, lj);
    return;
  }
  new_pair(w, i, li, j, lj);
}

static void do_output(world *w, int i, const pm_output *o) {
  int other = RAW;
  uint32_t other_link = 0;
  pair *p;
  switch (o->kind) {
  case PM_OUT_SEND: {
    p = find_pair(w, i, o->link_id, &other, &other_link);
    CHECK(p != NULL);
    if (!p || !p->open || o->len == 0)
      return;
    uint8_t *copy = malloc(o->len);
    if (!copy)
      abort();
    memcpy(copy, o->data, o->len);
    if (i == w->hold_from && p->a == w->hold_dialer && p->b == i) {
      pm_buf_put(&p->held, copy, o->len);
      free(copy);
      return;
    }
    record_frames(w, i, other, copy, o->len);
    if (other == RAW)
      pm_buf_put(&p->raw_in, copy, o->len);
    else
      (void)pm_node_link_recv(w->n[other].node, w->now, other_link, copy,
                              o->len);
    free(copy);
    return;
  }
  case PM_OUT_CLOSE:
    p = find_pair(w, i, o->link_id, &other, &other_link);
    CHECK(p != NULL);
    if (!p || !p->open)
      return;
    if (p->held.len && other != RAW) {
      record_frames(w, i, other, p->held.data, p->held.len);
      (void)pm_node_link_recv(w->n[other].node, w->now, other_link,
                              p->held.data, p->held.len);
      pm_buf_reset(&p->held);
    }
    p->open = 0;
    if (other != RAW)
      pm_node_link_closed(w->n[other].node, w->now, other_link);
    return;
  case PM_OUT_DIAL:
    do_dial(w, i, o->addr);
    return;
  case PM_OUT_RESOLVE:
    w->n[i].resolves++;
    if (!w->answer_resolve)
      return;
    for (int k = 0; k < w->count; k++)
      if (k != i && w->n[k].listening)
        CHECK_INT(
            pm_node_add_peer(w->n[i].node, w->now, w->n[k].addr, w->n[k].id, 0),
            0);
    return;
  default:
    CHECK(0);
  }
}

/* Drains every node until no output is left anywhere. */
static void pump(world *w) {
  for (int guard = 0; guard < 100000; guard++) {
    int busy = 0;
    for (int i = 0; i < w->count; i++) {
      pm_output o;
      while (!w->n[i].dead && pm_node_next_output(w->n[i].node, &o)) {
        busy = 1;
        do_output(w, i, &o);
      }
    }
    for (int i = 0; i < w->count; i++)
      if (!w->n[i].dead)
        drain_events(w, i);
    if (!busy)
      return;
  }
  fprintf(stderr, "pump: the world never went quiet\n");
  CHECK(0);
}

/* Ends the hold and delivers what it kept, then drains. */
static void release(world *w) {
  w->hold_from = w->hold_dialer = -1;
  for (size_t k = 0; k < w->np; k++) {
    pair *p = &w->p[k];
    if (!p->held.len || !p->open)
      continue;
    record_frames(w, p->b, p->a, p->held.data, p->held.len);
    (void)pm_node_link_recv(w->n[p->a].node, w->now, p->la, p->held.data,
                            p->held.len);
    pm_buf_reset(&p->held);
  }
  pump(w);
}

/* Runs the timers of every node due at `w->now`. */
static void fire(world *w) {
  int ran[MAX_NODES] = {0};
  for (int i = 0; i < w->count; i++) {
    if (!w->n[i].dead && pm_node_deadline(w->n[i].node) <= w->now) {
      pm_node_handle_timeout(w->n[i].node, w->now);
      ran[i] = 1;
    }
  }
  pump(w);
  for (int i = 0; i < w->count; i++) {
    if (ran[i] && pm_node_deadline(w->n[i].node) <= w->now) {
      if (!w->stuck++) {
        w->stuck_at = w->now;
        w->stuck_node = i;
      }
    }
  }
}

/* Advances virtual time to `end`, stopping at every deadline on the way
 * (and at least every STEP_MS, so a deadline stuck in the past cannot hang
 * the test; fire() counts those). */
static int raw_send(world *w, size_t pi, const void *data, size_t len);

static void keep_raw_alive(world *w) {
  static const uint8_t ping[] = {0x01, PM_FRAME_PING, 0, 0, 0, 0};
  for (size_t i = 0; i < w->np; i++) {
    pair *p = &w->p[i];
    if (p->keepalive && p->open && w->now - p->last_ping >= KEEPALIVE_MS) {
      p->last_ping = w->now;
      CHECK_INT(raw_send(w, i, ping, sizeof ping), 0);
    }
  }
}

static void run_until(world *w, uint64_t end) {
  for (int guard = 0; guard < 1000000; guard++) {
    uint64_t next = w->now + STEP_MS;
    for (int i = 0; i < w->count; i++) {
      if (w->n[i].dead)
        continue;
      uint64_t d = pm_node_deadline(w->n[i].node);
      if (d > w->now && d < next)
        next = d;
    }
    if (next > end)
      next = end;
    if (next <= w->now)
      return;
    w->now = next;
    fire(w);
    keep_raw_alive(w);
  }
  CHECK(0);
}

static int connect_to(world *w, int from, int to) {
  int rc = pm_node_add_peer(w->n[from].node, w->now, w->n[to].addr, NULL, 0);
  pump(w);
  return rc;
}

static pm_node_stats stats(world *w, int i) {
  pm_node_stats s;
  pm_node_get_stats(w->n[i].node, &s);
  return s;
}

static size_t count_ev(const world *w, int i, int kind) {
  size_t c = 0;
  for (size_t k = 0; k < w->n[i].nev; k++)
    c += w->n[i].ev[k].kind == kind;
  return c;
}

/* The first event of `kind` at index >= *from, or NULL. */
static const rec_event *next_ev(const world *w, int i, int kind, size_t *from) {
  for (size_t k = *from; k < w->n[i].nev; k++) {
    if (w->n[i].ev[k].kind == kind) {
      *from = k + 1;
      return &w->n[i].ev[k];
    }
  }
  *from = w->n[i].nev;
  return NULL;
}

static const rec_event *first_ev(const world *w, int i, int kind) {
  size_t from = 0;
  return next_ev(w, i, kind, &from);
}

static size_t count_msgs(const world *w, int i, const char *action) {
  size_t c = 0;
  for (size_t k = 0; k < w->n[i].nev; k++)
    c += w->n[i].ev[k].kind == PM_EV_MESSAGE &&
         strcmp(w->n[i].ev[k].action, action) == 0;
  return c;
}

static const rec_event *find_msg(const world *w, int i, const char *action) {
  for (size_t k = 0; k < w->n[i].nev; k++)
    if (w->n[i].ev[k].kind == PM_EV_MESSAGE &&
        strcmp(w->n[i].ev[k].action, action) == 0)
      return &w->n[i].ev[k];
  return NULL;
}

static size_t count_dials(const world *w, int i, const char *addr) {
  size_t c = 0;
  for (size_t k = 0; k < w->n[i].ndial; k++)
    c += strcmp(w->n[i].dial[k].addr, addr) == 0;
  return c;
}

static size_t count_frames(const world *w, int from, int to, uint8_t type) {
  size_t c = 0;
  for (size_t k = 0; k < w->nframes; k++)
    c += w->frames[k].from == from && w->frames[k].to == to &&
         w->frames[k].type == type;
  return c;
}

/* Where a Flood payload's action starts: id, origin, seq, time, flags,
 * hop_limit, hops, then the action's length byte. */
#define FLOOD_ACTION_AT (32 + 32 + 8 + 8 + 1 + 4 + 2)

/* A Flood payload carrying a presence message ('$' action, §5.5). */
static int is_presence_flood(const uint8_t *payload, size_t len) {
  return len > FLOOD_ACTION_AT + 1 && payload[FLOOD_ACTION_AT] > 0 &&
         payload[FLOOD_ACTION_AT + 1] == '$';
}

/* Flood frames from `from` to `to` carrying application messages. */
static size_t count_app_floods(const world *w, int from, int to) {
  size_t c = 0;
  for (size_t k = 0; k < w->nframes; k++)
    c += w->frames[k].from == from && w->frames[k].to == to &&
         w->frames[k].type == PM_FRAME_FLOOD &&
         !is_presence_flood(w->frames[k].payload, w->frames[k].len);
  return c;
}

/* Presence floods of `action` from `from` to `to`, written by `origin`
 * (NULL: anyone). */
static size_t count_presence_by(const world *w, int from, int to,
                                const char *action, const uint8_t *origin) {
  size_t c = 0, alen = strlen(action);
  for (size_t k = 0; k < w->nframes; k++) {
    const wire_frame *f = &w->frames[k];
    c += f->from == from && f->to == to && f->type == PM_FRAME_FLOOD &&
         (!origin || memcmp(f->payload + 32, origin, PM_NODE_ID_LEN) == 0) &&
         f->len > FLOOD_ACTION_AT + alen &&
         f->payload[FLOOD_ACTION_AT] == alen &&
         memcmp(f->payload + FLOOD_ACTION_AT + 1, action, alen) == 0;
  }
  return c;
}

static size_t count_presence(const world *w, int from, int to,
                             const char *action) {
  return count_presence_by(w, from, to, action, NULL);
}

static size_t open_pairs(const world *w) {
  size_t c = 0;
  for (size_t k = 0; k < w->np; k++)
    c += (size_t)w->p[k].open;
  return c;
}

static int send_msg(world *w, int i, const char *action, const char *body,
                    int has_hop_limit, uint32_t hop_limit,
                    uint8_t id[PM_MSG_ID_LEN]) {
  pm_send s;
  memset(&s, 0, sizeof s);
  s.action = action;
  s.body = (const uint8_t *)body;
  s.body_len = body ? strlen(body) : 0;
  s.time_ms = 1700000000000ull + w->now;
  s.has_hop_limit = has_hop_limit;
  s.hop_limit = hop_limit;
  uint8_t tmp[PM_MSG_ID_LEN];
  int rc = pm_node_send(w->n[i].node, w->now, &s, id ? id : tmp);
  pump(w);
  return rc;
}

/* ---- raw peers ----------------------------------------------------------- */

/* Opens an outbound link on node `i`, as if it had dialled `addr`, whose
 * other end the test drives. */
static size_t raw_open_outbound(world *w, int i, const char *addr) {
  uint32_t lid = 0;
  int rc = pm_node_link_open(w->n[i].node, w->now, 1, "127.0.0.1", addr, &lid);
  CHECK_INT(rc, 0);
  new_pair(w, i, lid, RAW, 0);
  pump(w);
  return w->np - 1;
}

/* Opens an inbound link on node `i` whose other end the test drives. */
static size_t raw_open(world *w, int i) {
  uint32_t lid = 0;
  int rc = pm_node_link_open(w->n[i].node, w->now, 0, "127.0.0.1", NULL, &lid);
  CHECK_INT(rc, 0);
  new_pair(w, i, lid, RAW, 0);
  pump(w);
  return w->np - 1;
}

static int raw_send(world *w, size_t pi, const void *data, size_t len) {
  pair *p = &w->p[pi];
  int rc = pm_node_link_recv(w->n[p->a].node, w->now, p->la, data, len);
  pump(w);
  return rc;
}

static int raw_send_buf(world *w, size_t pi, pm_buf *b) {
  int rc = raw_send(w, pi, b->data, b->len);
  pm_buf_reset(b);
  return rc;
}

/* Frames of `type` the node has sent to raw pair `pi`. */
static size_t raw_frames(const world *w, size_t pi, uint8_t type) {
  const pm_buf *b = &w->p[pi].raw_in;
  size_t off = 0, c = 0;
  while (off < b->len) {
    pm_frame f;
    size_t used;
    if (pm_frame_parse(b->data + off, b->len - off, &f, &used) != 1)
      break;
    c += f.type == type;
    off += used;
  }
  return c;
}

/* Flood frames carrying application messages the node sent to raw pair
 * `pi`. */
static size_t raw_app_floods(const world *w, size_t pi) {
  const pm_buf *b = &w->p[pi].raw_in;
  size_t off = 0, c = 0;
  while (off < b->len) {
    pm_frame f;
    size_t used;
    if (pm_frame_parse(b->data + off, b->len - off, &f, &used) != 1)
      break;
    c += f.type == PM_FRAME_FLOOD && !is_presence_flood(f.payload, f.len);
    off += used;
  }
  return c;
}

/* The last frame of `type` the node sent to the raw peer `pi`: its payload
 * and length, or NULL. */
static const uint8_t *raw_last(const world *w, size_t pi, uint8_t type,
                               size_t *len) {
  const pm_buf *b = &w->p[pi].raw_in;
  const uint8_t *last = NULL;
  size_t off = 0;
  while (off < b->len) {
    pm_frame f;
    size_t used;
    if (pm_frame_parse(b->data + off, b->len - off, &f, &used) != 1)
      break;
    if (f.type == type) {
      last = f.payload;
      if (len)
        *len = f.len;
    }
    off += used;
  }
  return last;
}

static const uint8_t *raw_last_payload(const world *w, size_t pi,
                                       uint8_t type) {
  return raw_last(w, pi, type, NULL);
}

/* Its payload length, or -1. */
static long raw_last_len(const world *w, size_t pi, uint8_t type) {
  size_t len = 0;
  return raw_last(w, pi, type, &len) ? (long)len : -1;
}

static int raw_hello(world *w, size_t pi, const char *mesh, uint8_t id_byte,
                     uint16_t port) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_msg_hello h;
  memset(&h, 0, sizeof h);
  h.mesh = mesh;
  h.mesh_len = strlen(mesh);
  memset(h.node_id, id_byte, PM_NODE_ID_LEN);
  h.listen_port = port;
  CHECK_INT(pm_msg_write_hello(&b, &h), 0);
  int rc = raw_send_buf(w, pi, &b);
  pm_buf_free(&b);
  return rc;
}

/* Hello + Connect from a raw peer: afterwards it is a neighbour of `i`. */
static size_t raw_neighbor(world *w, int i, uint8_t id_byte) {
  size_t pi = raw_open(w, i);
  CHECK_INT(raw_hello(w, pi, pm_node_mesh(w->n[i].node), id_byte, 0), 0);
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_empty(&b, PM_FRAME_CONNECT), 0);
  CHECK_INT(raw_send_buf(w, pi, &b), 0);
  pm_buf_free(&b);
  CHECK_INT(raw_frames(w, pi, PM_FRAME_HELLO), 1);
  CHECK_INT(raw_frames(w, pi, PM_FRAME_WELCOME), 1);
  w->p[pi].keepalive = 1;
  w->p[pi].last_ping = w->now;
  return pi;
}

/* A Flood frame from `origin_byte` with a correct ID. */
static void make_flood(pm_buf *b, uint8_t origin_byte, uint64_t seq,
                       const char *action, const char *body, uint16_t hops) {
  pm_msg_flood m;
  memset(&m, 0, sizeof m);
  memset(m.origin, origin_byte, PM_NODE_ID_LEN);
  m.seq = seq;
  m.time_ms = 1700000000000ull + seq;
  m.hops = hops;
  m.action = action;
  m.action_len = strlen(action);
  m.body = (const uint8_t *)body;
  m.body_len = strlen(body);
  pm_msg_flood_id(&m, m.id);
  pm_test_signature(m.origin, m.id, m.sig);
  CHECK_INT(pm_msg_write_flood(b, &m), 0);
}

/* Two nodes, A (0) dialling B (1), connected at t = 1000. */
static world *two_connected(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  world_add(w, "lobby", 0x22, 0, 0, 0);
  CHECK_INT(connect_to(w, 0, 1), 0);
  CHECK_INT(stats(w, 0).neighbors, 1);
  CHECK_INT(stats(w, 1).neighbors, 1);
  return w;
}

/* ---- scenarios ------------------------------------------------------------
 */

static void test_config_validation(void) {
  uint64_t rng = 1;
  pm_node_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.mesh = "lobby";
  cfg.random = xorshift_random;
  cfg.random_ud = &rng;
  pm_signer signer = {pm_test_sign, pm_test_verify, NULL};
  cfg.signer = &signer;
  pm_node *n = NULL;
  CHECK_INT(pm_node_new(&cfg, &n), 0);
  CHECK_STR(pm_node_mesh(n), "lobby");
  CHECK(!pm_node_is_online(n));
  pm_node_free(n);
  pm_node_config bad = cfg;
  bad.mesh = "bad name";
  CHECK_INT(pm_node_new(&bad, &n), PM_ERR_INVAL);
  CHECK(n == NULL);
  bad.mesh = "";
  CHECK_INT(pm_node_new(&bad, &n), PM_ERR_INVAL);
  bad = cfg;
  bad.random = NULL;
  CHECK_INT(pm_node_new(&bad, &n), PM_ERR_INVAL);
  bad = cfg;
  bad.min_neighbors = 4;
  bad.ideal_neighbors = 3;
  CHECK_INT(pm_node_new(&bad, &n), PM_ERR_INVAL);
  bad = cfg;
  bad.max_neighbors = 65;
  CHECK_INT(pm_node_new(&bad, &n), PM_ERR_INVAL);
}

static void test_two_nodes_connect(void) {
  world *w = two_connected();
  for (int i = 0; i < 2; i++) {
    CHECK_INT(count_ev(w, i, PM_EV_ONLINE), 1);
    CHECK_INT(count_ev(w, i, PM_EV_NEIGHBOR_UP), 1);
    CHECK_INT(count_ev(w, i, PM_EV_LINK_ERROR), 0);
    CHECK(pm_node_is_online(w->n[i].node));
    CHECK_INT(stats(w, i).links, 1);
  }
  const rec_event *up = first_ev(w, 0, PM_EV_NEIGHBOR_UP);
  if (up) {
    CHECK_MEM(up->peer, w->n[1].id, PM_NODE_ID_LEN);
    CHECK_STR(up->addr, "127.0.0.1:4001");
  }
  up = first_ev(w, 1, PM_EV_NEIGHBOR_UP);
  if (up) {
    CHECK_MEM(up->peer, w->n[0].id, PM_NODE_ID_LEN);
    CHECK_STR(up->addr, "127.0.0.1:4000"); /* observed host, Hello's port */
  }
  /* The handshake on the wire. */
  CHECK_INT(count_frames(w, 0, 1, PM_FRAME_HELLO), 1);
  CHECK_INT(count_frames(w, 1, 0, PM_FRAME_HELLO), 1);
  CHECK_INT(count_frames(w, 0, 1, PM_FRAME_CONNECT), 1);
  CHECK_INT(count_frames(w, 1, 0, PM_FRAME_WELCOME), 1);
  CHECK_INT(count_frames(w, 1, 0, PM_FRAME_CONNECT), 0);
  CHECK_INT(count_dials(w, 0, "127.0.0.1:4001"), 1);

  /* Over three quiet minutes, the root's tree beacons keep the link up
   * (a link with nothing else to send would get a Ping). */
  run_until(w, 1000 + 200000);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(count_ev(w, i, PM_EV_NEIGHBOR_DOWN), 0);
    CHECK_INT(count_ev(w, i, PM_EV_OFFLINE), 0);
    CHECK_INT(stats(w, i).neighbors, 1);
    CHECK_INT(stats(w, i).links, 1);
  }
  CHECK(count_frames(w, 0, 1, PM_FRAME_TREE) >= 60);
  CHECK(count_frames(w, 1, 0, PM_FRAME_TREE) >= 60);
  CHECK_INT(open_pairs(w), 1);
  world_free(w);
}

static void test_three_node_mesh_delivers_once(void) {
  world *w = world_new(1000);
  w->answer_resolve = 1;
  for (uint8_t i = 0; i < 3; i++)
    world_add(w, "lobby", (uint8_t)(0x11 * (i + 1)), 0, 0, 0);
  run_until(w, 20000);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(stats(w, i).neighbors, 2);
    CHECK_INT(stats(w, i).links, 2);
    CHECK(pm_node_is_online(w->n[i].node));
    CHECK_INT(count_ev(w, i, PM_EV_LINK_ERROR), 0);
    CHECK_INT(count_ev(w, i, PM_EV_ONLINE), 1);
  }
  CHECK_INT(open_pairs(w), 3);

  uint8_t id[PM_MSG_ID_LEN];
  CHECK_INT(send_msg(w, 0, "Chat", "hello, mesh", 0, 0, id), 0);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(count_msgs(w, i, "Chat"), 1);
    CHECK_INT(stats(w, i).delivered, 1);
    const rec_event *m = find_msg(w, i, "Chat");
    if (!m)
      continue;
    CHECK_INT(m->own, i == 0);
    CHECK_INT(m->hops, i == 0 ? 0 : 1);
    CHECK_MEM(m->id, id, PM_MSG_ID_LEN);
    CHECK_MEM(m->origin, w->n[0].id, PM_NODE_ID_LEN);
    CHECK(m->seq >= 1); /* presence messages take numbers too */
    CHECK_INT(m->time_ms, 1700000000000ull + 20000);
    CHECK_INT(m->body_len, 11);
    CHECK_MEM(m->body, "hello, mesh", 11);
  }
  /* A (lowest ID) is the tree's root, B and C its children; B-C is off
   * the tree and carries only announcements, so nobody gets a copy twice. */
  CHECK_INT(count_app_floods(w, 1, 2), 0);
  CHECK_INT(count_app_floods(w, 2, 1), 0);
  pm_node_stats before[3];
  for (int i = 0; i < 3; i++)
    before[i] = stats(w, i);

  /* A second message from another node, with an empty body. */
  CHECK_INT(send_msg(w, 2, "Leave", NULL, 0, 0, NULL), 0);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(count_msgs(w, i, "Leave"), 1);
    const rec_event *m = find_msg(w, i, "Leave");
    if (m) {
      CHECK_INT(m->own, i == 2);
      CHECK_INT(m->body_len, 0);
    }
  }
  /* C writes the second: an author pushes on all its links, so A and B
   * get it directly, and relay it to each other on their tree link: one
   * duplicate each. */
  CHECK_INT(stats(w, 0).duplicates - before[0].duplicates, 1);
  CHECK_INT(stats(w, 1).duplicates - before[1].duplicates, 1);
  CHECK_INT(stats(w, 2).duplicates - before[2].duplicates, 0);
  for (int i = 0; i < 3; i++)
    CHECK_INT(stats(w, i).grafts, before[i].grafts);
  /* Sequence numbers count per sender. */
  const rec_event *m1 = find_msg(w, 1, "Chat");
  CHECK_INT(send_msg(w, 0, "Chat2", "x", 0, 0, NULL), 0);
  const rec_event *m = find_msg(w, 1, "Chat2");
  CHECK(m != NULL && m1 != NULL);
  if (m && m1)
    CHECK_INT(m->seq, m1->seq + 1);
  world_free(w);
}

/* A - B - C: the ends accept one neighbour only, so C keeps the referral to
 * A that B's Welcome carries without dialling it. */
static world *line_world(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 1, 1, 1);
  world_add(w, "lobby", 0x22, 0, 0, 0);
  world_add(w, "lobby", 0x33, 1, 1, 1);
  CHECK_INT(connect_to(w, 0, 1), 0);
  CHECK_INT(connect_to(w, 2, 1), 0);
  run_until(w, 5000);
  CHECK_INT(stats(w, 0).neighbors, 1);
  CHECK_INT(stats(w, 1).neighbors, 2);
  CHECK_INT(stats(w, 2).neighbors, 1);
  CHECK_INT(count_dials(w, 2, "127.0.0.1:4000"), 0);
  return w;
}

static void test_hop_limits(void) {
  world *w = line_world();
  size_t floods = count_app_floods(w, 0, 1);

  CHECK_INT(send_msg(w, 0, "h0", "x", 1, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 0, "h0"), 1);
  CHECK_INT(count_msgs(w, 1, "h0"), 0);
  CHECK_INT(count_msgs(w, 2, "h0"), 0);
  CHECK_INT(count_app_floods(w, 0, 1), floods);

  CHECK_INT(send_msg(w, 0, "h1", "x", 1, 1, NULL), 0);
  CHECK_INT(count_msgs(w, 0, "h1"), 1);
  CHECK_INT(count_msgs(w, 1, "h1"), 1);
  CHECK_INT(count_msgs(w, 2, "h1"), 0);
  CHECK_INT(count_app_floods(w, 1, 2), 0);

  CHECK_INT(send_msg(w, 0, "h2", "x", 1, 2, NULL), 0);
  CHECK_INT(count_msgs(w, 1, "h2"), 1);
  CHECK_INT(count_msgs(w, 2, "h2"), 1);
  const rec_event *m = find_msg(w, 2, "h2");
  if (m)
    CHECK_INT(m->hops, 2);

  CHECK_INT(send_msg(w, 0, "inf", "x", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 1, "inf"), 1);
  CHECK_INT(count_msgs(w, 2, "inf"), 1);

  /* From the middle, one hop reaches both ends. */
  CHECK_INT(send_msg(w, 1, "mid", "x", 1, 1, NULL), 0);
  CHECK_INT(count_msgs(w, 0, "mid"), 1);
  CHECK_INT(count_msgs(w, 2, "mid"), 1);
  CHECK_INT(send_msg(w, 1, "mid0", "x", 1, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 1, "mid0"), 1);
  CHECK_INT(count_msgs(w, 0, "mid0"), 0);
  CHECK_INT(count_msgs(w, 2, "mid0"), 0);

  /* A huge limit does not wrap. */
  CHECK_INT(send_msg(w, 2, "big", "x", 1, UINT32_MAX, NULL), 0);
  CHECK_INT(count_msgs(w, 0, "big"), 1);
  for (int i = 0; i < 3; i++)
    CHECK_INT(stats(w, i).duplicates, 0);
  world_free(w);
}

static void test_duplicate_floods_counted_not_delivered(void) {
  world *w = two_connected();
  size_t r = raw_neighbor(w, 0, 0x77);
  CHECK_INT(stats(w, 0).neighbors, 2);
  pm_buf b;
  pm_buf_init(&b, NULL);

  make_flood(&b, 0x77, 1, "Chat", "once", 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_msgs(w, 0, "Chat"), 1);
  CHECK_INT(count_msgs(w, 1, "Chat"), 1); /* relayed */
  const rec_event *m = find_msg(w, 1, "Chat");
  if (m)
    CHECK_INT(m->hops, 2);
  CHECK_INT(raw_app_floods(w, r), 0); /* not sent back */

  /* The same message again, and again with other hop counts. */
  make_flood(&b, 0x77, 1, "Chat", "once", 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  make_flood(&b, 0x77, 1, "Chat", "once", 9);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_msgs(w, 0, "Chat"), 1);
  CHECK_INT(count_msgs(w, 1, "Chat"), 1);
  CHECK_INT(stats(w, 0).duplicates, 2);
  CHECK_INT(stats(w, 0).delivered, 1);
  CHECK_INT(count_app_floods(w, 0, 1), 1);

  /* Two copies in one read. */
  make_flood(&b, 0x77, 2, "Chat", "twice", 0);
  make_flood(&b, 0x77, 2, "Chat", "twice", 1);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_msgs(w, 0, "Chat"), 2);
  CHECK_INT(stats(w, 0).duplicates, 3);

  /* A relayed message's duplicate is counted the same way. The raw
   * neighbour sends no tree advert, so its link is off the tree: what A
   * relays from B is announced to it, not pushed. */
  make_flood(&b, 0x99, 1, "Relayed", "r", 1);
  make_flood(&b, 0x99, 1, "Relayed", "r", 2);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_msgs(w, 0, "Relayed"), 1);
  CHECK_INT(stats(w, 0).duplicates, 4);
  CHECK_INT(send_msg(w, 1, "FromB", "b", 0, 0, NULL), 0);
  run_until(w, w->now + 200); /* announcements wait 200 ms */
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), 1);

  /* A's own message coming back is a duplicate too. */
  uint8_t id[PM_MSG_ID_LEN];
  uint64_t sent_at = w->now;
  CHECK_INT(send_msg(w, 0, "Mine", "m", 0, 0, id), 0);
  run_until(w, w->now + 100);
  CHECK_INT(raw_app_floods(w, r), 1); /* authors push to all */
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), 1);
  pm_msg_flood mf;
  memset(&mf, 0, sizeof mf);
  memcpy(mf.origin, w->n[0].id, PM_NODE_ID_LEN);
  const rec_event *mine = find_msg(w, 0, "Mine");
  mf.seq = mine ? mine->seq : 0;
  mf.time_ms = 1700000000000ull + sent_at;
  mf.action = "Mine";
  mf.action_len = 4;
  mf.body = (const uint8_t *)"m";
  mf.body_len = 1;
  pm_msg_flood_id(&mf, mf.id);
  pm_test_signature(mf.origin, mf.id, mf.sig);
  CHECK_MEM(mf.id, id, PM_MSG_ID_LEN);
  CHECK_INT(pm_msg_write_flood(&b, &mf), 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_msgs(w, 0, "Mine"), 1);
  CHECK_INT(stats(w, 0).duplicates, 5);
  CHECK_INT(stats(w, 0).invalid, 0);
  CHECK_INT(stats(w, 1).duplicates, 0);
  pm_buf_free(&b);
  world_free(w);
}

static void test_busy_node_refuses_with_referrals(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 0, 0, 0);
  int b = world_add(w, "lobby", 0x22, 0, 0, 0);
  int c = world_add(w, "lobby", 0x33, 1, 1, 1);
  CHECK_INT(connect_to(w, b, c), 0);
  CHECK_INT(stats(w, c).neighbors, 1);
  size_t c_up = count_ev(w, c, PM_EV_NEIGHBOR_UP);

  /* A only knows C, which is full. */
  CHECK_INT(connect_to(w, a, c), 0);
  CHECK_INT(count_frames(w, c, a, PM_FRAME_REFUSE), 1);
  CHECK_INT(count_frames(w, c, a, PM_FRAME_WELCOME), 0);
  for (size_t k = 0; k < w->nframes; k++)
    if (w->frames[k].from == c && w->frames[k].to == a &&
        w->frames[k].type == PM_FRAME_REFUSE)
      CHECK_INT(w->frames[k].first, PM_CLOSE_NODE_BUSY);
  CHECK_INT(count_ev(w, c, PM_EV_NEIGHBOR_UP), c_up);
  CHECK_INT(stats(w, c).neighbors, 1);
  /* The referral pointed A at B, which A then dialled and joined. */
  CHECK_INT(count_dials(w, a, w->n[b].addr), 1);
  CHECK_INT(stats(w, a).neighbors, 1);
  const rec_event *up = first_ev(w, a, PM_EV_NEIGHBOR_UP);
  CHECK(up != NULL);
  if (up)
    CHECK_MEM(up->peer, w->n[b].id, PM_NODE_ID_LEN);
  CHECK_INT(count_ev(w, a, PM_EV_LINK_ERROR), 0);
  CHECK_INT(count_ev(w, c, PM_EV_LINK_ERROR), 0);
  CHECK_INT(stats(w, b).neighbors, 2);
  world_free(w);
}

static void test_wrong_mesh(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 0, 0, 0);
  int x = world_add(w, "other-mesh", 0x22, 0, 0, 0);
  int b = world_add(w, "lobby", 0x33, 0, 0, 0);
  CHECK_INT(connect_to(w, b, a), 0);
  CHECK_INT(connect_to(w, x, a), 0);
  for (int i = 0; i < 2; i++) {
    int node = i ? x : a;
    const rec_event *e = first_ev(w, node, PM_EV_LINK_ERROR);
    CHECK(e != NULL);
    if (!e)
      continue;
    CHECK_INT(e->error, PM_ERR_WRONG_MESH);
    CHECK_INT(e->reason, PM_CLOSE_PROTOCOL_ERROR);
    CHECK_INT(count_ev(w, node, PM_EV_LINK_ERROR), 1);
    CHECK_INT(stats(w, node).invalid, 1);
  }
  const rec_event *e = first_ev(w, x, PM_EV_LINK_ERROR);
  if (e)
    CHECK_STR(e->addr, w->n[a].addr);
  CHECK_INT(count_ev(w, x, PM_EV_NEIGHBOR_UP), 0);
  CHECK_INT(stats(w, x).links, 0);
  CHECK(!pm_node_is_online(w->n[x].node));
  /* A keeps its good neighbour. */
  CHECK_INT(stats(w, a).links, 1);
  CHECK_INT(stats(w, a).neighbors, 1);
  CHECK_INT(count_ev(w, a, PM_EV_NEIGHBOR_UP), 1);
  CHECK_INT(count_frames(w, x, a, PM_FRAME_CONNECT), 0);
  world_free(w);
}

static void test_dial_self(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 0, 0, 0);
  /* Pinned, so only self-detection can stop the retries. */
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, w->n[a].addr, NULL, 1), 0);
  pump(w);
  CHECK_INT(count_dials(w, a, w->n[a].addr), 1);
  size_t from = 0;
  const rec_event *e = next_ev(w, a, PM_EV_LINK_ERROR, &from);
  CHECK(e != NULL);
  if (e)
    CHECK_INT(e->error, PM_ERR_SELF);
  e = next_ev(w, a, PM_EV_LINK_ERROR, &from); /* the accepting end */
  CHECK(e != NULL);
  if (e)
    CHECK_INT(e->error, PM_ERR_SELF);
  CHECK_INT(count_ev(w, a, PM_EV_NEIGHBOR_UP), 0);
  CHECK_INT(stats(w, a).links, 0);
  CHECK(!pm_node_is_online(w->n[a].node));

  run_until(w, 1000 + 10 * 60 * 1000);
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, w->n[a].addr, NULL, 1), 0);
  pump(w);
  run_until(w, w->now + 60000);
  CHECK_INT(count_dials(w, a, w->n[a].addr), 1);
  world_free(w);
}

static void simultaneous(uint8_t id_a, uint8_t id_b) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", id_a, 0, 0, 0);
  int b = world_add(w, "lobby", id_b, 0, 0, 0);
  /* Both queue a dial before either is carried out. */
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, w->n[b].addr, NULL, 0), 0);
  CHECK_INT(pm_node_add_peer(w->n[b].node, w->now, w->n[a].addr, NULL, 0), 0);
  pump(w);
  CHECK_INT(count_dials(w, a, w->n[b].addr), 1);
  CHECK_INT(count_dials(w, b, w->n[a].addr), 1);
  CHECK_INT(w->np, 2);
  CHECK_INT(open_pairs(w), 1);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(stats(w, i).links, 1);
    CHECK_INT(stats(w, i).neighbors, 1);
    CHECK_INT(count_ev(w, i, PM_EV_LINK_ERROR), 0);
    CHECK_INT(count_ev(w, i, PM_EV_ONLINE), 1);
    CHECK_INT(count_ev(w, i, PM_EV_OFFLINE), 0);
    CHECK_INT(stats(w, i).invalid, 0);
    CHECK_INT(count_ev(w, i, PM_EV_NEIGHBOR_UP) -
                  count_ev(w, i, PM_EV_NEIGHBOR_DOWN),
              1);
  }
  /* The survivor is the link dialled by the smaller ID. */
  for (size_t k = 0; k < w->np; k++)
    if (w->p[k].open)
      CHECK_INT(w->p[k].a, id_a < id_b ? a : b);
  /* And it stays that way. */
  run_until(w, 1000 + 120000);
  CHECK_INT(open_pairs(w), 1);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(stats(w, i).links, 1);
    CHECK_INT(stats(w, i).neighbors, 1);
  }
  /* Messages still flow, once. */
  CHECK_INT(send_msg(w, a, "Chat", "after", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, b, "Chat"), 1);
  world_free(w);
}

/* As above, but the larger ID's Hello on the connection the smaller one
 * dialled is slow to arrive. The larger node sees both Hellos first, so it
 * is the one to close its own outbound link (the loser: dialled by the
 * larger ID); the smaller node must take that in stride. */
static void test_simultaneous_dial_late_hello(void) {
  world *w = world_new(1000);
  int big = world_add(w, "lobby", 0x22, 0, 0, 0);
  int small = world_add(w, "lobby", 0x11, 0, 0, 0);
  w->hold_from = big;
  w->hold_dialer = small;
  CHECK_INT(pm_node_add_peer(w->n[big].node, w->now, w->n[small].addr, NULL, 0),
            0);
  CHECK_INT(pm_node_add_peer(w->n[small].node, w->now, w->n[big].addr, NULL, 0),
            0);
  pump(w);
  release(w);
  CHECK_INT(w->np, 2);
  CHECK_INT(open_pairs(w), 1);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(stats(w, i).links, 1);
    CHECK_INT(stats(w, i).neighbors, 1);
    CHECK_INT(stats(w, i).invalid, 0);
    const rec_event *e = first_ev(w, i, PM_EV_LINK_ERROR);
    if (e) {
      fprintf(stderr, "node %d: LINK_ERROR %s on link %u\n", i,
              pm_errname(e->error), e->link_id);
      CHECK(0);
    }
    /* The smaller node may have been briefly up on the losing link (the
     * larger one sent Connect before it knew); it must end up online. */
    CHECK(pm_node_is_online(w->n[i].node));
  }
  for (size_t k = 0; k < w->np; k++)
    if (w->p[k].open)
      CHECK_INT(w->p[k].a, small);
  world_free(w);
}

/* One node dials the same peer under two names: the newer link goes. */
static void test_second_link_same_direction(void) {
  world *w = two_connected();
  snprintf(w->n[1].alias, sizeof w->n[1].alias, "localhost:4001");
  CHECK_INT(pm_node_add_peer(w->n[0].node, w->now, "localhost:4001", NULL, 0),
            0);
  pump(w);
  CHECK_INT(count_dials(w, 0, "localhost:4001"), 1);
  CHECK_INT(w->np, 2);
  CHECK(w->p[0].open);  /* the first connection stays */
  CHECK(!w->p[1].open); /* the newer one goes */
  for (int i = 0; i < 2; i++) {
    CHECK_INT(stats(w, i).links, 1);
    CHECK_INT(stats(w, i).neighbors, 1);
    CHECK_INT(count_ev(w, i, PM_EV_NEIGHBOR_UP), 1);
    CHECK_INT(count_ev(w, i, PM_EV_NEIGHBOR_DOWN), 0);
    CHECK_INT(count_ev(w, i, PM_EV_LINK_ERROR), 0);
  }
  world_free(w);
}

static void test_simultaneous_dial_smaller_id_first(void) {
  simultaneous(0x11, 0x22);
}

static void test_simultaneous_dial_larger_id_first(void) {
  simultaneous(0x22, 0x11);
}

/* Feeds `bytes` to a fresh raw link on A (neighbour of B) and checks that
 * exactly that link is closed with `err` while A and B carry on. */
static void bad_input_case(const char *label, const uint8_t *bytes, size_t len,
                           int hello_first, int err) {
  world *w = two_connected();
  size_t r = raw_open(w, 0);
  if (hello_first)
    CHECK_INT(raw_hello(w, r, "lobby", 0x66, 0), 0);
  uint32_t lid = w->p[r].la;
  uint64_t invalid = stats(w, 0).invalid;
  int rc = raw_send(w, r, bytes, len);
  if (rc != err) {
    fprintf(stderr, "%s: link_recv gave %d (%s), expected %s\n", label, rc,
            pm_errname(rc), pm_errname(err));
    CHECK(0);
  }
  const rec_event *e = first_ev(w, 0, PM_EV_LINK_ERROR);
  CHECK(e != NULL);
  if (e) {
    CHECK_INT(e->error, err);
    CHECK_INT(e->link_id, lid);
    CHECK_INT(e->reason, PM_CLOSE_PROTOCOL_ERROR);
  }
  CHECK_INT(count_ev(w, 0, PM_EV_LINK_ERROR), 1);
  CHECK_INT(stats(w, 0).invalid, invalid + 1);
  CHECK(!w->p[r].open);            /* the node closed it */
  CHECK_INT(stats(w, 0).links, 1); /* and only it */
  CHECK_INT(stats(w, 0).neighbors, 1);
  CHECK_INT(count_ev(w, 0, PM_EV_NEIGHBOR_DOWN), 0);
  CHECK_INT(count_ev(w, 0, PM_EV_OFFLINE), 0);
  /* Bytes after the close are ignored. */
  CHECK_INT(raw_send(w, r, bytes, len), 0);
  CHECK_INT(count_ev(w, 0, PM_EV_LINK_ERROR), 1);
  CHECK_INT(send_msg(w, 0, "Chat", "still here", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 1, "Chat"), 1);
  CHECK_INT(send_msg(w, 1, "Back", "me too", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 0, "Back"), 1);
  world_free(w);
}

static void test_bad_input_closes_only_that_link(void) {
  static const uint8_t http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  bad_input_case("garbage", http, sizeof http - 1, 0, PM_ERR_VERSION);
  static const uint8_t zero[] = {0x00};
  bad_input_case("one zero byte", zero, 1, 0, PM_ERR_VERSION);
  static const uint8_t huge[] = {0x01, 0x01, 0xff, 0xff, 0xff, 0xff};
  bad_input_case("4 GiB header", huge, sizeof huge, 0, PM_ERR_FRAME_TOO_LARGE);
  static const uint8_t huge_flood[] = {0x01, 0x20, 0xff, 0xff, 0xff, 0xff};
  bad_input_case("4 GiB header after hello", huge_flood, sizeof huge_flood, 1,
                 PM_ERR_FRAME_TOO_LARGE);
  static const uint8_t ping[] = {0x01, 0x14, 0, 0, 0, 0};
  bad_input_case("ping before hello", ping, sizeof ping, 0, PM_ERR_UNEXPECTED);
  static const uint8_t connect[] = {0x01, 0x10, 0, 0, 0, 0};
  bad_input_case("connect before hello", connect, sizeof connect, 0,
                 PM_ERR_UNEXPECTED);
  static const uint8_t unknown[] = {0x01, 0x7f, 0, 0, 0, 0};
  bad_input_case("unknown type after hello", unknown, sizeof unknown, 1,
                 PM_ERR_UNEXPECTED);
  static const uint8_t welcome[] = {0x01, 0x11, 0, 0, 0, 2, 0, 0};
  bad_input_case("welcome on an inbound link", welcome, sizeof welcome, 1,
                 PM_ERR_UNEXPECTED);
  static const uint8_t short_hello[] = {0x01, 0x01, 0, 0, 0, 1, 5};
  bad_input_case("truncated hello", short_hello, sizeof short_hello, 0,
                 PM_ERR_TRUNCATED);
  static const uint8_t ping_body[] = {0x01, 0x14, 0, 0, 0, 1, 0};
  bad_input_case("ping with a body", ping_body, sizeof ping_body, 1,
                 PM_ERR_MALFORMED);

  /* A Hello again after the first. */
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_msg_hello h = {"lobby", 5, {0}, 0, 0};
  memset(h.node_id, 0x66, PM_NODE_ID_LEN);
  CHECK_INT(pm_msg_write_hello(&b, &h), 0);
  bad_input_case("second hello", b.data, b.len, 1, PM_ERR_UNEXPECTED);
  /* A flood before Connect/Welcome. */
  pm_buf_reset(&b);
  make_flood(&b, 0x66, 1, "Chat", "early", 0);
  bad_input_case("flood before connect", b.data, b.len, 1, PM_ERR_UNEXPECTED);
  pm_buf_free(&b);
}

static void test_huge_header_byte_by_byte(void) {
  world *w = two_connected();
  size_t r = raw_open(w, 0);
  static const uint8_t huge[] = {0x01, 0x01, 0xff, 0xff, 0xff, 0xff};
  for (size_t i = 0; i + 1 < sizeof huge; i++)
    CHECK_INT(raw_send(w, r, huge + i, 1), 0);
  CHECK(w->p[r].open);
  CHECK_INT(raw_send(w, r, huge + 5, 1), PM_ERR_FRAME_TOO_LARGE);
  CHECK(!w->p[r].open);
  const rec_event *e = first_ev(w, 0, PM_EV_LINK_ERROR);
  if (e)
    CHECK_INT(e->error, PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(stats(w, 0).neighbors, 1);
  world_free(w);
}

/* A Flood from the raw peer 0x77, authored by `origin`, signed as
 * `signer` (0: unsigned), with its body changed after signing when
 * `alter` is set. */
static void odd_flood(pm_buf *b, uint8_t origin, uint8_t signer, uint64_t seq,
                      int alter) {
  pm_msg_flood m;
  memset(&m, 0, sizeof m);
  memset(m.origin, origin, PM_NODE_ID_LEN);
  m.seq = seq;
  m.time_ms = 5;
  m.action = "Chat";
  m.action_len = 4;
  m.body = (const uint8_t *)"forged";
  m.body_len = 6;
  pm_msg_flood_id(&m, m.id);
  if (signer) {
    uint8_t as[PM_NODE_ID_LEN];
    memset(as, signer, sizeof as);
    pm_test_signature(as, m.id, m.sig);
  }
  if (alter)
    m.body = (const uint8_t *)"FORGED"; /* content no longer matches */
  CHECK_INT(pm_msg_write_flood(b, &m), 0);
}

static void test_invalid_messages_dropped_then_link_closed(void) {
  world *w = two_connected();
  size_t r = raw_neighbor(w, 0, 0x77);
  uint32_t lid = w->p[r].la;
  pm_buf b;
  pm_buf_init(&b, NULL);
  /* Altered after signing; signed by a key other than its author's;
   * unsigned. Each is dropped and counted, never delivered or relayed. */
  odd_flood(&b, 0x77, 0x77, 1, 1);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  odd_flood(&b, 0x55, 0x77, 2, 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(stats(w, 0).invalid, 2);
  CHECK(w->p[r].open);
  CHECK_INT(count_ev(w, 0, PM_EV_MESSAGE), 0);
  CHECK_INT(count_ev(w, 1, PM_EV_MESSAGE), 0);
  CHECK_INT(count_app_floods(w, 0, 1), 0);
  /* The third closes the link: it keeps sending what nobody wrote. */
  odd_flood(&b, 0x77, 0, 3, 0);
  CHECK_INT(raw_send_buf(w, r, &b), PM_ERR_AUTH);
  CHECK_INT(stats(w, 0).invalid, 3);
  CHECK_INT(stats(w, 0).delivered, 0);
  const rec_event *e = first_ev(w, 0, PM_EV_LINK_ERROR);
  CHECK(e != NULL);
  if (e) {
    CHECK_INT(e->error, PM_ERR_AUTH);
    CHECK_INT(e->link_id, lid);
  }
  CHECK(!w->p[r].open);
  const rec_event *down = first_ev(w, 0, PM_EV_NEIGHBOR_DOWN);
  CHECK(down != NULL);
  if (down)
    CHECK_INT(down->reason, PM_CLOSE_PROTOCOL_ERROR);
  /* B did not go, and still speaks. */
  CHECK_INT(stats(w, 0).neighbors, 1);
  CHECK_INT(send_msg(w, 1, "Chat", "fine", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 0, "Chat"), 1);
  pm_buf_free(&b);
  world_free(w);
}

static void test_ed25519_signatures(void) {
  world *w = world_new(1000);
  w->real_keys = 1;
  world_add(w, "lobby", 0x11, 0, 0, 0);
  world_add(w, "lobby", 0x22, 0, 0, 0);
  CHECK_INT(connect_to(w, 0, 1), 0);
  CHECK_INT(send_msg(w, 0, "Chat", "signed", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 1, "Chat"), 1);
  CHECK_INT(stats(w, 1).invalid, 0);
  /* A secret key that is not the node ID's is refused at creation. */
  pm_node_config cfg;
  memset(&cfg, 0, sizeof cfg);
  uint64_t rng = 1;
  uint8_t sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(cfg.node_id, sk);
  cfg.mesh = "lobby";
  cfg.random = xorshift_random;
  cfg.random_ud = &rng;
  cfg.secret_key = sk;
  pm_node *n = NULL;
  CHECK_INT(pm_node_new(&cfg, &n), 0);
  pm_node_free(n);
  cfg.node_id[0] ^= 1;
  CHECK_INT(pm_node_new(&cfg, &n), PM_ERR_INVAL);
  cfg.secret_key = NULL;
  CHECK_INT(pm_node_new(&cfg, &n), PM_ERR_INVAL);
  world_free(w);
}

static void test_replays_refused_after_dedup_forgets(void) {
  world *w = two_connected();
  size_t r = raw_neighbor(w, 0, 0x77);
  pm_buf b;
  pm_buf_init(&b, NULL);
  for (uint64_t seq = 1; seq <= 3; seq++) {
    make_flood(&b, 0x77, seq, "Chat", "hi", 0);
    CHECK_INT(raw_send_buf(w, r, &b), 0);
  }
  CHECK_INT(count_msgs(w, 0, "Chat"), 3);
  /* Ten minutes on, the duplicate cache has forgotten them; the author's
   * replay window has not. Keep the link alive meanwhile. */
  for (int i = 0; i < 20; i++) {
    run_until(w, w->now + 30000);
    CHECK_INT(
        raw_send(w, r, (const uint8_t[]){1, PM_FRAME_PING, 0, 0, 0, 0}, 6), 0);
  }
  make_flood(&b, 0x77, 2, "Chat", "hi", 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_msgs(w, 0, "Chat"), 3);
  CHECK_INT(stats(w, 0).replayed, 1);
  CHECK_INT(stats(w, 0).invalid, 0);
  CHECK(w->p[r].open); /* a late copy may come from an honest relay */
  /* The author's next message is welcome. */
  make_flood(&b, 0x77, 4, "Chat", "hi", 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_msgs(w, 0, "Chat"), 4);
  pm_buf_free(&b);
  world_free(w);
}

static void test_leave(void) {
  world *w = two_connected();
  w->now = 2000;
  pm_node_leave(w->n[0].node, w->now);
  pump(w);
  CHECK_INT(count_frames(w, 0, 1, PM_FRAME_DISCONNECT), 1);
  for (size_t k = 0; k < w->nframes; k++)
    if (w->frames[k].type == PM_FRAME_DISCONNECT)
      CHECK_INT(w->frames[k].first, PM_CLOSE_LEAVING);
  const rec_event *down = first_ev(w, 1, PM_EV_NEIGHBOR_DOWN);
  CHECK(down != NULL);
  if (down) {
    CHECK_INT(down->reason, PM_CLOSE_LEAVING);
    CHECK_MEM(down->peer, w->n[0].id, PM_NODE_ID_LEN);
    CHECK_INT(down->at, 2000);
  }
  CHECK_INT(count_ev(w, 1, PM_EV_OFFLINE), 1);
  CHECK(!pm_node_is_online(w->n[1].node));
  CHECK_INT(stats(w, 1).neighbors, 0);
  CHECK_INT(count_ev(w, 1, PM_EV_LINK_ERROR), 0);
  /* The leaver reports its side too. */
  down = first_ev(w, 0, PM_EV_NEIGHBOR_DOWN);
  CHECK(down != NULL);
  if (down)
    CHECK_INT(down->reason, PM_CLOSE_LEAVING);
  CHECK_INT(count_ev(w, 0, PM_EV_OFFLINE), 1);
  CHECK_INT(stats(w, 0).links, 0);
  CHECK_INT(open_pairs(w), 0);
  CHECK(pm_node_deadline(w->n[0].node) == PM_DEADLINE_NONE);
  /* Later commands fail. */
  pm_send s = {"Chat", NULL, 0, 0, 0, 0};
  uint8_t id[PM_MSG_ID_LEN];
  CHECK_INT(pm_node_send(w->n[0].node, w->now, &s, id), PM_ERR_CLOSED);
  uint32_t lid;
  CHECK_INT(pm_node_link_open(w->n[0].node, w->now, 0, "127.0.0.1", NULL, &lid),
            PM_ERR_CLOSED);
  pm_node_leave(w->n[0].node, w->now); /* twice is harmless */
  pump(w);
  CHECK_INT(count_ev(w, 0, PM_EV_OFFLINE), 1);
  /* B cannot get A back, and gives no further events about it. */
  w->n[0].listening = 0;
  run_until(w, 60000);
  CHECK_INT(count_ev(w, 1, PM_EV_NEIGHBOR_UP), 1);
  CHECK_INT(count_ev(w, 0, PM_EV_MESSAGE), 0);
  world_free(w);
}

/* A leaving node hands each neighbour referrals to the others, so they can
 * close the gap it leaves. */
static void test_leave_refers_every_neighbor(void) {
  world *w = line_world();
  size_t before = w->nframes;
  pm_node_leave(w->n[1].node, w->now);
  pump(w);
  for (int end = 0; end <= 2; end += 2) {
    const wire_frame *f = NULL;
    for (size_t k = before; k < w->nframes; k++)
      if (w->frames[k].from == 1 && w->frames[k].to == end &&
          w->frames[k].type == PM_FRAME_DISCONNECT)
        f = &w->frames[k];
    CHECK(f != NULL);
    if (!f)
      continue;
    pm_frame fr = {PM_FRAME_DISCONNECT, f->payload, f->len};
    pm_msg_referrals r;
    CHECK_INT(pm_msg_read_referrals(&fr, &r), 0);
    CHECK_INT(r.reason, PM_CLOSE_LEAVING);
    if (r.count != 1) {
      fprintf(stderr, "Disconnect to node %d carries %u referrals, want 1\n",
              end, r.count);
      CHECK(0);
      continue;
    }
    CHECK_STR(r.items[0].addr, w->n[2 - end].addr);
    CHECK_MEM(r.items[0].node_id, w->n[2 - end].id, PM_NODE_ID_LEN);
  }
  /* The ends find each other. */
  run_until(w, w->now + 10000);
  CHECK_INT(stats(w, 0).neighbors, 1);
  CHECK_INT(stats(w, 2).neighbors, 1);
  world_free(w);
}

/* node.h: "Later commands fail with PM_ERR_CLOSED" after pm_node_leave. */
static void test_add_peer_after_leave_fails_closed(void) {
  world *w = two_connected();
  pm_node_leave(w->n[0].node, w->now);
  pump(w);
  CHECK_INT(pm_node_add_peer(w->n[0].node, w->now, "127.0.0.1:4999", NULL, 0),
            PM_ERR_CLOSED);
  world_free(w);
}

static void test_idle_link_pinged_then_closed(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  size_t r = raw_neighbor(w, 0, 0x77); /* at 1000; then silent */
  w->p[r].keepalive = 0;
  CHECK_INT(stats(w, 0).neighbors, 1);
  /* A, the root, tells it of a new tree epoch every 3 s; the link stays
   * until 15 s of silence from the other end. */
  run_until(w, 16000 - 1);
  CHECK(raw_frames(w, r, PM_FRAME_TREE) >= 5);
  CHECK(w->p[r].open);
  CHECK_INT(count_ev(w, 0, PM_EV_NEIGHBOR_DOWN), 0);
  run_until(w, 16000);
  CHECK(!w->p[r].open);
  const rec_event *down = first_ev(w, 0, PM_EV_NEIGHBOR_DOWN);
  CHECK(down != NULL);
  if (down) {
    CHECK_INT(down->reason, PM_CLOSE_IDLE_TIMEOUT);
    CHECK_INT(down->at, 16000);
  }
  const rec_event *off = first_ev(w, 0, PM_EV_OFFLINE);
  CHECK(off != NULL);
  if (off)
    CHECK_INT(off->at, 16000);
  CHECK_INT(count_ev(w, 0, PM_EV_LINK_ERROR), 0);
  CHECK_INT(stats(w, 0).links, 0);
  world_free(w);
}

/* Above ideal, the least useful settled link goes; a link that has been
 * silent for two beacons brings nothing, whatever it scored while it
 * spoke, and while one has missed a beacon nothing goes (a partition that
 * holds packets leaves such links up until the idle timeout, and the node
 * must not prune its live ones meanwhile). */
static void test_prune_prefers_silent_links(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 1, 2, 8);
  pm_node *node = w->n[0].node;
  size_t r1 = raw_neighbor(w, 0, 0x77);
  size_t r2 = raw_neighbor(w, 0, 0x78);
  /* r1 brings 40 new messages: settled, high score. */
  pm_buf b;
  pm_buf_init(&b, NULL);
  for (int k = 0; k < 40; k++) {
    pm_buf_reset(&b);
    make_flood(&b, 0x77, (uint64_t)k + 1, "Chat", "hi", 0);
    CHECK_INT(raw_send_buf(w, r1, &b), 0);
  }
  /* r2 announces 40 messages A has already: settled, low score. */
  uint8_t ids[40 * PM_MSG_ID_LEN];
  for (int k = 0; k < 40; k++) {
    pm_send s = {"Chat", (const uint8_t *)"yo", 2, 0, 0, 0};
    CHECK_INT(pm_node_send(node, w->now, &s, ids + k * PM_MSG_ID_LEN), 0);
  }
  pump(w);
  pm_buf_reset(&b);
  CHECK_INT(pm_msg_write_ids(&b, PM_FRAME_IHAVE, ids, 40), 0);
  CHECK_INT(raw_send_buf(w, r2, &b), 0);
  /* r1 falls silent; r2 keeps pinging. 4.5 s on, a third neighbour puts A
   * above ideal. While r1 has missed a beacon but not two, nothing goes
   * (its score says nothing any more, and r2's is the lowest); then r1
   * goes, not r2. */
  w->p[r1].keepalive = 0;
  uint64_t quiet = w->now;
  run_until(w, quiet + 4500);
  size_t r3 = raw_neighbor(w, 0, 0x79);
  run_until(w, quiet + 6900);
  CHECK(w->p[r1].open && w->p[r2].open && w->p[r3].open);
  CHECK_INT(count_ev(w, 0, PM_EV_NEIGHBOR_DOWN), 0);
  run_until(w, quiet + 8000);
  CHECK(!w->p[r1].open);
  CHECK_INT(raw_frames(w, r1, PM_FRAME_DISCONNECT), 1);
  CHECK(w->p[r2].open);
  CHECK(w->p[r3].open);
  const rec_event *down = first_ev(w, 0, PM_EV_NEIGHBOR_DOWN);
  CHECK(down != NULL);
  if (down)
    CHECK_INT(down->reason, PM_CLOSE_NOT_USEFUL);
  pm_buf_free(&b);
  world_free(w);
}

/* A neighbour silent for two beacons (7 s) no longer counts toward the
 * ideal: the node dials a replacement then, while the silent link waits
 * for its idle timeout (15 s) to close. A node whose neighbours were all
 * cut off by a partition would otherwise stay alone for those 15 s. */
static void test_silent_neighbor_replaced_before_idle_timeout(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 1, 2, 8);
  world_add(w, "lobby", 0x22, 1, 2, 8); /* B: listens, dials no one */
  pm_node *a = w->n[0].node;
  size_t r1 = raw_neighbor(w, 0, 0x77);
  size_t r2 = raw_neighbor(w, 0, 0x78);
  /* A is at its ideal: it knows B but has no reason to dial it. */
  CHECK_INT(pm_node_add_peer(a, w->now, w->n[1].addr, w->n[1].id, 0), 0);
  pump(w);
  CHECK_INT(count_dials(w, 0, w->n[1].addr), 0);
  w->p[r1].keepalive = 0;
  uint64_t quiet = w->p[r1].last_ping;
  run_until(w, quiet + 6900);
  CHECK_INT(count_dials(w, 0, w->n[1].addr), 0);
  run_until(w, quiet + 7100);
  CHECK_INT(count_dials(w, 0, w->n[1].addr), 1);
  CHECK(w->p[r2].open);
  /* With B, A is above its ideal, and the silent link is the one pruned,
   * before its idle timeout; nothing more is dialled. */
  run_until(w, quiet + 15100);
  CHECK(!w->p[r1].open);
  CHECK_INT(raw_frames(w, r1, PM_FRAME_DISCONNECT), 1);
  CHECK(w->p[r2].open);
  pm_node_stats st;
  pm_node_get_stats(a, &st);
  CHECK_INT(st.neighbors, 2); /* r2 and B */
  CHECK_INT(count_dials(w, 0, w->n[1].addr), 1);
  world_free(w);
}

static void test_talking_link_stays_up(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  size_t r = raw_neighbor(w, 0, 0x77);
  w->p[r].keepalive = 0;
  static const uint8_t ping[] = {0x01, 0x14, 0, 0, 0, 0};
  for (uint64_t t = 10000; t <= 300000; t += 10000) {
    run_until(w, t);
    CHECK_INT(raw_send(w, r, ping, sizeof ping), 0);
  }
  run_until(w, 300000 + 14999);
  CHECK(w->p[r].open);
  CHECK_INT(count_ev(w, 0, PM_EV_NEIGHBOR_DOWN), 0);
  run_until(w, 300000 + 15000);
  CHECK(!w->p[r].open);
  world_free(w);
}

static void test_handshake_timeout(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  size_t r = raw_open(w, 0); /* never says Hello */
  run_until(w, 11000 - 1);
  CHECK(w->p[r].open);
  run_until(w, 11000);
  CHECK(!w->p[r].open);
  CHECK_INT(count_ev(w, 0, PM_EV_NEIGHBOR_DOWN), 0); /* never a neighbour */
  CHECK_INT(stats(w, 0).links, 0);
  world_free(w);
}

/* Dial times to `addr`, returning how many. */
static size_t dial_times(const world *w, int i, const char *addr, uint64_t *out,
                         size_t max) {
  size_t c = 0;
  for (size_t k = 0; k < w->n[i].ndial && c < max; k++)
    if (strcmp(w->n[i].dial[k].addr, addr) == 0)
      out[c++] = w->n[i].dial[k].at;
  return c;
}

static void test_failed_dial_backoff_unpinned(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 0, 0, 0);
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, "127.0.0.1:4999", NULL, 0),
            0);
  pump(w);
  CHECK_INT(count_dials(w, a, "127.0.0.1:4999"), 1);
  uint64_t d = pm_node_deadline(w->n[a].node);
  CHECK(d >= 1000 + 500 && d <= 1000 + 750);

  run_until(w, 1000 + 10 * 60 * 1000);
  uint64_t t[16];
  size_t n = dial_times(w, a, "127.0.0.1:4999", t, 16);
  CHECK_INT(n, 5); /* then forgotten */
  for (size_t k = 1; k < n && k < 5; k++) {
    uint64_t base = 500ull << (k - 1);
    uint64_t gap = t[k] - t[k - 1];
    if (gap < base || gap > base + base / 2) {
      fprintf(stderr, "retry %zu after %llu ms, expected %llu..%llu\n", k,
              (unsigned long long)gap, (unsigned long long)base,
              (unsigned long long)(base + base / 2));
      CHECK(0);
    }
  }
  /* Forgotten means a resolve is the only thing left to wait for. */
  CHECK(w->n[a].resolves > 0);
  world_free(w);
}

static void test_failed_dial_backoff_pinned(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 0, 0, 0);
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, "127.0.0.1:4999", NULL, 1),
            0);
  pump(w);
  run_until(w, 1000 + 10 * 60 * 1000);
  uint64_t t[64];
  size_t n = dial_times(w, a, "127.0.0.1:4999", t, 64);
  CHECK(n >= 16);
  for (size_t k = 1; k < n; k++) {
    uint64_t base = k < 7 ? 500ull << (k - 1) : 30000;
    if (base > 30000)
      base = 30000;
    uint64_t gap = t[k] - t[k - 1];
    if (gap < base || gap > base + base / 2) {
      fprintf(stderr, "pinned retry %zu after %llu ms, expected %llu..%llu\n",
              k, (unsigned long long)gap, (unsigned long long)base,
              (unsigned long long)(base + base / 2));
      CHECK(0);
    }
  }
  /* Once the peer appears, the next retry connects. */
  w->now = t[n - 1] + 1;
  int b = world_add(w, "lobby", 0x22, 0, 0, 0);
  CHECK_INT(b, 1);
  /* Node 1 listens on 127.0.0.1:4001; re-point the pinned address. */
  snprintf(w->n[b].addr, sizeof w->n[b].addr, "127.0.0.1:4999");
  run_until(w, w->now + 50000);
  CHECK_INT(stats(w, a).neighbors, 1);
  CHECK_INT(count_ev(w, a, PM_EV_ONLINE), 1);
  world_free(w);
}

static void test_deadline_after_timeout_is_in_future(void) {
  /* B learns A's address from a resolve while A is already its neighbour
   * over the link A dialled; B still wants more neighbours. */
  world *w = two_connected();
  w->answer_resolve = 1;
  run_until(w, 30000);
  CHECK_INT(stats(w, 0).neighbors, 1);
  CHECK_INT(stats(w, 1).neighbors, 1);
  for (int i = 0; i < 2; i++) {
    pm_node_handle_timeout(w->n[i].node, w->now);
    uint64_t d = pm_node_deadline(w->n[i].node);
    if (d <= w->now) {
      fprintf(stderr,
              "node %d: deadline %llu right after handle_timeout(%llu)\n", i,
              (unsigned long long)d, (unsigned long long)w->now);
      CHECK(0);
    }
  }
  world_free(w);
}

/* A node with min neighbours but below its ideal, dialling a peer whose
 * connect is slow (the DIAL is not answered yet). */
static void test_deadline_in_future_while_dial_pending(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 1, 2, 7);
  world_add(w, "lobby", 0x22, 0, 0, 0);
  CHECK_INT(connect_to(w, a, 1), 0);
  CHECK_INT(stats(w, a).neighbors, 1);
  w->defer_dials = 1;
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, "127.0.0.1:4999", NULL, 0),
            0);
  pump(w);
  CHECK_INT(count_dials(w, a, "127.0.0.1:4999"), 1);
  /* The connect takes a while; time passes meanwhile. */
  run_until(w, 1000 + 60000);
  CHECK_INT(count_dials(w, a, "127.0.0.1:4999"), 1);
  pm_node_handle_timeout(w->n[a].node, w->now);
  uint64_t d = pm_node_deadline(w->n[a].node);
  if (d <= w->now) {
    fprintf(stderr, "deadline %llu right after handle_timeout(%llu)\n",
            (unsigned long long)d, (unsigned long long)w->now);
    CHECK(0);
  }
  /* The connect finally fails: the node backs off as usual. */
  pm_node_dial_failed(w->n[a].node, w->now, "127.0.0.1:4999");
  pump(w);
  CHECK(pm_node_deadline(w->n[a].node) > w->now);
  world_free(w);
}

static void test_empty_read_is_harmless(void) {
  world *w = two_connected();
  size_t r = raw_open(w, 0);
  static const uint8_t nothing[1] = {0};
  CHECK_INT(raw_send(w, r, nothing, 0), 0);
  CHECK_INT(raw_send(w, r, NULL, 0), 0);
  CHECK(w->p[r].open);
  CHECK_INT(raw_hello(w, r, "lobby", 0x66, 0), 0);
  CHECK_INT(raw_send(w, r, NULL, 0), 0);
  CHECK(w->p[r].open);
  /* Unknown link IDs are ignored. */
  CHECK_INT(pm_node_link_recv(w->n[0].node, w->now, 9999, nothing, 1), 0);
  pm_node_link_closed(w->n[0].node, w->now, 9999);
  pump(w);
  CHECK_INT(count_ev(w, 0, PM_EV_LINK_ERROR), 0);
  CHECK_INT(stats(w, 0).links, 2);
  world_free(w);
}

static void test_large_bodies(void) {
  world *w = two_connected();
  char *body = malloc(PM_BODY_MAX + 2);
  if (!body)
    abort();
  memset(body, 'b', PM_BODY_MAX + 1);
  body[PM_BODY_MAX + 1] = '\0';
  char action[PM_ACTION_MAX + 2];
  memset(action, 'a', PM_ACTION_MAX + 1);
  action[PM_ACTION_MAX + 1] = '\0';
  uint8_t id[PM_MSG_ID_LEN];
  pm_send s = {action, (const uint8_t *)body, PM_BODY_MAX + 1, 0, 0, 0};
  CHECK_INT(pm_node_send(w->n[0].node, w->now, &s, id), PM_ERR_INVAL);
  s.body_len = PM_BODY_MAX;
  CHECK_INT(pm_node_send(w->n[0].node, w->now, &s, id), PM_ERR_INVAL);
  action[PM_ACTION_MAX] = '\0'; /* longest action, biggest body */
  CHECK_INT(pm_node_send(w->n[0].node, w->now, &s, id), 0);
  pump(w);
  const rec_event *m = find_msg(w, 1, action);
  CHECK(m != NULL);
  if (m) {
    CHECK_INT(m->body_len, PM_BODY_MAX);
    CHECK_MEM(m->id, id, PM_MSG_ID_LEN);
  }
  CHECK_INT(count_ev(w, 1, PM_EV_LINK_ERROR), 0);

  /* A peer's flood may fit a frame yet carry more than PM_BODY_MAX. */
  size_t r = raw_neighbor(w, 0, 0x77);
  pm_buf b;
  pm_buf_init(&b, NULL);
  body[PM_BODY_MAX + 1] = '\0';
  make_flood(&b, 0x77, 1, "Chat", body, 0);
  CHECK(b.len <= PM_FRAME_MAX);
  CHECK_INT(raw_send_buf(w, r, &b), PM_ERR_MALFORMED);
  CHECK_INT(count_msgs(w, 0, "Chat"), 0);
  CHECK_INT(stats(w, 1).delivered, 1);
  pm_buf_free(&b);
  free(body);
  world_free(w);
}

/* Outbound handshakes finish after inbound ones filled the node up. */
static void test_max_neighbors_holds_when_welcomes_race(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 1, 1, 1);
  size_t out = raw_open_outbound(w, a, "127.0.0.1:5000");
  CHECK_INT(raw_hello(w, out, "lobby", 0x55, 5000), 0);
  CHECK_INT(raw_frames(w, out, PM_FRAME_CONNECT), 1); /* room for one */
  size_t in = raw_neighbor(w, a, 0x66);               /* takes the room */
  CHECK_INT(stats(w, a).neighbors, 1);
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_msg_referrals none;
  memset(&none, 0, sizeof none);
  CHECK_INT(pm_msg_write_referrals(&b, PM_FRAME_WELCOME, &none), 0);
  (void)raw_send_buf(w, out, &b);
  pm_buf_free(&b);
  if (stats(w, a).neighbors > 1) {
    fprintf(stderr, "%u neighbours with max_neighbors 1\n",
            stats(w, a).neighbors);
    CHECK(0);
  }
  CHECK(w->p[in].open || w->p[out].open);
  world_free(w);
}

static void test_tables_are_bounded(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 1, 1, 1);
  /* Half-open connections: at most 2 * max + 8 links. */
  size_t opened = 0;
  for (int k = 0; k < 50; k++) {
    uint32_t lid;
    int rc =
        pm_node_link_open(w->n[a].node, w->now, 0, "127.0.0.1", NULL, &lid);
    if (rc == PM_ERR_FULL)
      break;
    CHECK_INT(rc, 0);
    new_pair(w, a, lid, RAW, 0);
    opened++;
  }
  pump(w);
  CHECK_INT(opened, 10);
  CHECK_INT(stats(w, a).links, 10);
  /* They all time out, and room comes back. */
  run_until(w, 1000 + 10000);
  CHECK_INT(stats(w, a).links, 0);
  size_t r = raw_neighbor(w, a, 0x77);
  CHECK(w->p[r].open);

  /* Candidate addresses: at most 64; pinned ones are never evicted. */
  w->defer_dials = 1;
  char addr[32];
  for (int k = 0; k < 64; k++) {
    snprintf(addr, sizeof addr, "10.0.0.1:%d", 1000 + k);
    CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, addr, NULL, 1), 0);
  }
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, "10.0.0.2:1", NULL, 1),
            PM_ERR_FULL);
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, "10.0.0.2:1", NULL, 0),
            PM_ERR_FULL);
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, "10.0.0.1:1000", NULL, 1),
            0); /* already known */
  pump(w);
  world_free(w);
}

static void test_fresh_node_resolves_and_sends_nothing(void) {
  world *w = world_new(1000);
  int a = world_add(w, "lobby", 0x11, 0, 0, 0);
  /* A node with nobody to talk to asks the resolvers, at a bounded pace. */
  CHECK(pm_node_deadline(w->n[a].node) <= 1000);
  run_until(w, 1000 + 60000);
  CHECK(w->n[a].resolves >= 10);
  CHECK(w->n[a].resolves <= 31);
  CHECK_INT(w->n[a].ndial, 0);
  CHECK_INT(w->n[a].nev, 0);
  /* Sending alone still delivers locally. */
  CHECK_INT(send_msg(w, a, "Chat", "alone", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, a, "Chat"), 1);
  pm_send s = {"", NULL, 0, 0, 0, 0};
  uint8_t id[PM_MSG_ID_LEN];
  CHECK_INT(pm_node_send(w->n[a].node, w->now, &s, id), PM_ERR_INVAL);
  CHECK_INT(pm_node_add_peer(w->n[a].node, w->now, "no-port", NULL, 0),
            PM_ERR_INVAL);
  world_free(w);
}

/* The ID a make_flood() frame carries. */
static void flood_id(uint8_t origin_byte, uint64_t seq, const char *action,
                     const char *body, uint8_t out[PM_MSG_ID_LEN]) {
  pm_msg_flood m;
  memset(&m, 0, sizeof m);
  memset(m.origin, origin_byte, PM_NODE_ID_LEN);
  m.seq = seq;
  m.time_ms = 1700000000000ull + seq;
  m.action = action;
  m.action_len = strlen(action);
  m.body = (const uint8_t *)body;
  m.body_len = strlen(body);
  pm_msg_flood_id(&m, out);
}

static void test_announced_message_is_grafted(void) {
  world *w = two_connected();
  size_t r = raw_neighbor(w, 0, 0x77);
  uint8_t id[PM_MSG_ID_LEN];
  flood_id(0x77, 1, "Chat", "lazy", id);
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_ids(&b, PM_FRAME_IHAVE, id, 1), 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  /* Nothing is asked before the graft timeout; then exactly once. */
  uint64_t t0 = w->now;
  CHECK(pm_node_deadline(w->n[0].node) <= t0 + 500);
  run_until(w, t0 + 499);
  CHECK_INT(raw_frames(w, r, PM_FRAME_GRAFT), 0);
  run_until(w, t0 + 500);
  CHECK_INT(raw_frames(w, r, PM_FRAME_GRAFT), 1);
  CHECK_INT(stats(w, 0).grafts, 1);
  /* The answer is delivered and pushed on to B. */
  make_flood(&b, 0x77, 1, "Chat", "lazy", 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_msgs(w, 0, "Chat"), 1);
  CHECK_INT(count_msgs(w, 1, "Chat"), 1);
  /* The only source was asked: nothing more is requested later. */
  run_until(w, t0 + 5000);
  CHECK_INT(raw_frames(w, r, PM_FRAME_GRAFT), 1);
  pm_buf_free(&b);
  world_free(w);
}

static void test_known_message_announced_is_not_grafted(void) {
  world *w = two_connected();
  size_t r = raw_neighbor(w, 0, 0x77);
  pm_buf b;
  pm_buf_init(&b, NULL);
  make_flood(&b, 0x77, 1, "Chat", "pushed", 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  uint8_t id[PM_MSG_ID_LEN];
  flood_id(0x77, 1, "Chat", "pushed", id);
  CHECK_INT(pm_msg_write_ids(&b, PM_FRAME_IHAVE, id, 1), 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  run_until(w, w->now + 5000);
  CHECK_INT(raw_frames(w, r, PM_FRAME_GRAFT), 0);
  CHECK_INT(stats(w, 0).grafts, 0);
  pm_buf_free(&b);
  world_free(w);
}

static void test_graft_is_answered_from_cache(void) {
  world *w = two_connected();
  size_t r = raw_neighbor(w, 0, 0x77);
  pm_buf b;
  pm_buf_init(&b, NULL);
  /* The raw link is off the tree, so A only announces what it relays
   * there. (What A itself writes it pushes on every link.) */
  uint8_t id[PM_MSG_ID_LEN];
  CHECK_INT(send_msg(w, 1, "Chat", "from B", 0, 0, id), 0);
  CHECK_INT(count_msgs(w, 0, "Chat"), 1);
  CHECK_INT(raw_app_floods(w, r), 0);
  /* Announcements wait 200 ms, so that a busy mesh's share frames. */
  run_until(w, w->now + 199);
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), 0);
  run_until(w, w->now + 1);
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), 1);
  /* Graft asks for it; the link stays off the tree. */
  CHECK_INT(pm_msg_write_ids(&b, PM_FRAME_GRAFT, id, 1), 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(raw_app_floods(w, r), 1);
  CHECK_INT(send_msg(w, 1, "Chat", "again", 0, 0, NULL), 0);
  CHECK_INT(send_msg(w, 1, "Chat", "and again", 0, 0, NULL), 0);
  run_until(w, w->now + 200);
  CHECK_INT(raw_app_floods(w, r), 1);
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), 2);
  const uint8_t *two = raw_last_payload(w, r, PM_FRAME_IHAVE);
  if (two)
    CHECK_INT(two[0], 2); /* both IDs in one frame */
  /* Once the raw neighbour takes A as its parent, A pushes to it. */
  pm_tree_adv adv;
  memset(&adv, 0, sizeof adv);
  memcpy(adv.root, w->n[0].id, PM_NODE_ID_LEN);
  adv.epoch = 1;
  adv.dist = 1;
  adv.flags = PM_TREE_FLAG_PARENT;
  CHECK_INT(pm_msg_write_tree(&b, &adv), 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(send_msg(w, 1, "Chat", "pushed", 0, 0, NULL), 0);
  run_until(w, w->now + 200);
  CHECK_INT(raw_app_floods(w, r), 2);
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), 2);
  /* A Graft for something unknown is answered with nothing. */
  uint8_t unknown[PM_MSG_ID_LEN];
  memset(unknown, 0xEE, sizeof unknown);
  CHECK_INT(pm_msg_write_ids(&b, PM_FRAME_GRAFT, unknown, 1), 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(raw_app_floods(w, r), 2);
  CHECK_INT(stats(w, 0).invalid, 0);
  pm_buf_free(&b);
  world_free(w);
}

static void test_hello_must_match_authenticated_key(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  size_t r = raw_open(w, 0);
  uint8_t key[PM_NODE_ID_LEN];
  memset(key, 0x77, sizeof key);
  pm_node_link_set_peer_key(w->n[0].node, w->p[r].la, key);
  CHECK_INT(raw_hello(w, r, "lobby", 0x78, 4100), PM_ERR_AUTH);
  CHECK(!w->p[r].open);
  CHECK_INT(count_ev(w, 0, PM_EV_LINK_ERROR), 1);
  /* The key it was told of is accepted. */
  r = raw_open(w, 0);
  pm_node_link_set_peer_key(w->n[0].node, w->p[r].la, key);
  CHECK_INT(raw_hello(w, r, "lobby", 0x77, 4100), 0);
  CHECK(w->p[r].open);
  world_free(w);
}

static void test_sync_announces_recent_messages_once(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  /* A writes while alone; it reaches nobody yet. */
  uint8_t alone[PM_MSG_ID_LEN];
  CHECK_INT(send_msg(w, 0, "Chat", "alone", 0, 0, alone), 0);
  /* A comes online through the raw neighbour: it asks for what it missed,
   * and announces what it holds, its own message included. */
  size_t r = raw_neighbor(w, 0, 0x77);
  CHECK_INT(raw_frames(w, r, PM_FRAME_SYNC), 1);
  CHECK_INT(raw_app_floods(w, r), 1); /* pushed, not just told */
  run_until(w, w->now + 200);
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), 1);
  const uint8_t *first = raw_last_payload(w, r, PM_FRAME_IHAVE);
  if (first) {
    CHECK_INT(first[0], 1);
    CHECK_MEM(first + 1, alone, PM_MSG_ID_LEN);
  }
  uint8_t id1[PM_MSG_ID_LEN], id2[PM_MSG_ID_LEN];
  CHECK_INT(send_msg(w, 0, "Chat", "one", 0, 0, id1), 0);
  run_until(w, w->now + 30000);
  CHECK_INT(send_msg(w, 0, "Chat", "two", 0, 0, id2), 0);
  size_t ihaves = raw_frames(w, r, PM_FRAME_IHAVE);
  /* Asked for the last 10 s, A announces only the second message. */
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_sync(&b, 10000), 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  run_until(w, w->now + 200);
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), ihaves + 1);
  const uint8_t *last = raw_last_payload(w, r, PM_FRAME_IHAVE);
  CHECK(last != NULL);
  if (last) {
    CHECK_INT(last[0], 1);
    CHECK_MEM(last + 1, id2, PM_MSG_ID_LEN);
  }
  /* A second Sync on the same link is not answered. */
  CHECK_INT(pm_msg_write_sync(&b, 60000), 0);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  run_until(w, w->now + 200);
  CHECK_INT(raw_frames(w, r, PM_FRAME_IHAVE), ihaves + 1);
  CHECK_INT(stats(w, 0).invalid, 0);
  pm_buf_free(&b);
  world_free(w);
}

static void test_bad_gossip_frames_close_the_link(void) {
  static const uint8_t empty_ihave[] = {1, PM_FRAME_IHAVE, 0, 0, 0, 1, 0};
  static const uint8_t short_graft[] = {1, PM_FRAME_GRAFT, 0, 0, 0, 2, 1, 9};
  static const uint8_t short_tree[] = {1, PM_FRAME_TREE, 0, 0, 0, 2, 1, 9};
  uint8_t bad_flags[PM_FRAME_HEADER + 39] = {1, PM_FRAME_TREE, 0, 0, 0, 39};
  bad_flags[sizeof bad_flags - 1] = 0x80;
  const uint8_t *cases[] = {empty_ihave, short_graft, short_tree, bad_flags};
  size_t lens[] = {sizeof empty_ihave, sizeof short_graft, sizeof short_tree,
                   sizeof bad_flags};
  int errs[] = {PM_ERR_MALFORMED, PM_ERR_TRUNCATED, PM_ERR_TRUNCATED,
                PM_ERR_MALFORMED};
  for (int k = 0; k < 4; k++) {
    world *w = two_connected();
    size_t r = raw_neighbor(w, 0, 0x77);
    CHECK_INT(raw_send(w, r, cases[k], lens[k]), errs[k]);
    CHECK_INT(stats(w, 0).neighbors, 1); /* B stays */
    CHECK_INT(count_ev(w, 0, PM_EV_LINK_ERROR), 1);
    world_free(w);
  }
}

static void test_too_many_ids_rejected(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  uint8_t ids[(PM_MAX_IDS + 1) * PM_MSG_ID_LEN];
  memset(ids, 1, sizeof ids);
  CHECK_INT(pm_msg_write_ids(&b, PM_FRAME_IHAVE, ids, PM_MAX_IDS + 1),
            PM_ERR_INVAL);
  CHECK_INT(pm_msg_write_ids(&b, PM_FRAME_IHAVE, ids, 0), PM_ERR_INVAL);
  CHECK_INT(pm_msg_write_ids(&b, PM_FRAME_IHAVE, ids, PM_MAX_IDS), 0);
  pm_frame f;
  size_t used;
  CHECK_INT(pm_frame_parse(b.data, b.len, &f, &used), 1);
  const uint8_t *view;
  size_t count;
  CHECK_INT(pm_msg_read_ids(&f, &view, &count), 0);
  CHECK_INT(count, PM_MAX_IDS);
  pm_buf_free(&b);
}

typedef struct filter_probe {
  int answer;      /* what the filter returns */
  int calls;       /* how often it ran */
  int last_origin; /* origination of the last call */
  char last_action[PM_ACTION_MAX + 1];
} filter_probe;

static int probe_filter(void *ud, const pm_event *msg, int origination) {
  filter_probe *p = ud;
  p->calls++;
  p->last_origin = origination;
  snprintf(p->last_action, sizeof p->last_action, "%s", msg->action);
  return p->answer;
}

static void test_propagation_filter(void) {
  world *w = line_world(); /* A(0) - B(1) - C(2) */
  filter_probe pb = {PM_PROPAGATE_LOCAL, 0, -1, ""};
  pm_node_set_filter(w->n[1].node, probe_filter, &pb);
  /* B keeps A's message to itself: delivered at B, never reaches C. */
  CHECK_INT(send_msg(w, 0, "Local", "x", 0, 0, NULL), 0);
  CHECK_INT(pb.calls, 1);
  CHECK_INT(pb.last_origin, PM_ORIGIN_REMOTE);
  CHECK_STR(pb.last_action, "Local");
  CHECK_INT(count_msgs(w, 1, "Local"), 1);
  CHECK_INT(count_msgs(w, 2, "Local"), 0);
  /* REMOTE: B relays without showing it. */
  pb.answer = PM_PROPAGATE_REMOTE;
  CHECK_INT(send_msg(w, 0, "Relay", "x", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 1, "Relay"), 0);
  CHECK_INT(count_msgs(w, 2, "Relay"), 1);
  /* NONE drops it here. */
  pb.answer = PM_PROPAGATE_NONE;
  CHECK_INT(send_msg(w, 0, "Drop", "x", 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 1, "Drop"), 0);
  CHECK_INT(count_msgs(w, 2, "Drop"), 0);
  /* The idiom for "do not echo my own messages": REMOTE for local origin. */
  filter_probe pa = {PM_PROPAGATE_REMOTE, 0, -1, ""};
  pm_node_set_filter(w->n[0].node, probe_filter, &pa);
  pm_node_set_filter(w->n[1].node, NULL, NULL);
  CHECK_INT(send_msg(w, 0, "Quiet", "x", 0, 0, NULL), 0);
  CHECK_INT(pa.last_origin, PM_ORIGIN_LOCAL);
  CHECK_INT(count_msgs(w, 0, "Quiet"), 0);
  CHECK_INT(count_msgs(w, 1, "Quiet"), 1);
  CHECK_INT(count_msgs(w, 2, "Quiet"), 1);
  world_free(w);
}

static void test_slow_neighbour_dropped_never_the_last(void) {
  world *w = world_new(1000);
  w->queue_limit = 4096;
  world_add(w, "lobby", 0x11, 0, 0, 0);
  world_add(w, "lobby", 0x22, 0, 0, 0);
  CHECK_INT(connect_to(w, 0, 1), 0);
  raw_neighbor(w, 0, 0x77);
  CHECK_INT(stats(w, 0).neighbors, 2);
  char body[1001];
  memset(body, 'x', 1000);
  body[1000] = '\0';
  /* Nothing drains: after about four 1 KB messages both links are full. One
   * is dropped as too slow; the other, now the last, is kept, and the
   * copies that do not fit are dropped instead. */
  for (int k = 0; k < 8; k++)
    CHECK_INT(send_msg(w, 0, "Big", body, 0, 0, NULL), 0);
  CHECK_INT(stats(w, 0).neighbors, 1);
  size_t slow = 0, from = 0;
  const rec_event *e;
  while ((e = next_ev(w, 0, PM_EV_NEIGHBOR_DOWN, &from)))
    slow += e->reason == PM_CLOSE_TOO_SLOW;
  CHECK_INT(slow, 1);
  CHECK(stats(w, 0).dropped >= 1);
  CHECK_INT(count_msgs(w, 0, "Big"), 8); /* still delivered locally */
  world_free(w);
}

/* ---- member presence (PROTOCOL.md §5.5) ------------------------------------
 */

/* Node `i`'s view of member `id` (0 when unknown); its incarnation. */
static int member_state(world *w, int i, const uint8_t *id, uint32_t *inc) {
  pm_member_info info[16];
  size_t n = pm_node_members(w->n[i].node, info, 16);
  for (size_t k = 0; k < n && k < 16; k++) {
    if (memcmp(info[k].id, id, PM_NODE_ID_LEN) == 0) {
      if (inc)
        *inc = info[k].incarnation;
      return info[k].state;
    }
  }
  return 0;
}

static size_t count_member_ev(const world *w, int i, int kind,
                              const uint8_t *id) {
  size_t c = 0;
  for (size_t k = 0; k < w->n[i].nev; k++)
    c += w->n[i].ev[k].kind == kind &&
         memcmp(w->n[i].ev[k].peer, id, PM_NODE_ID_LEN) == 0;
  return c;
}

/* Three nodes that found each other through the resolver: a triangle. */
static world *triangle(void) {
  world *w = world_new(1000);
  w->answer_resolve = 1;
  for (uint8_t i = 0; i < 3; i++)
    world_add(w, "lobby", (uint8_t)(0x11 * (i + 1)), 0, 0, 0);
  run_until(w, 20000);
  for (int i = 0; i < 3; i++)
    CHECK_INT(stats(w, i).neighbors, 2);
  return w;
}

/* A presence Flood from `origin_byte` with a binary body. */
static void make_presence(pm_buf *b, uint8_t origin_byte, uint64_t seq,
                          const char *action, const uint8_t *body, size_t len) {
  pm_msg_flood m;
  memset(&m, 0, sizeof m);
  memset(m.origin, origin_byte, PM_NODE_ID_LEN);
  m.seq = seq;
  m.action = action;
  m.action_len = strlen(action);
  m.body = body;
  m.body_len = len;
  pm_msg_flood_id(&m, m.id);
  pm_test_signature(m.origin, m.id, m.sig);
  CHECK_INT(pm_msg_write_flood(b, &m), 0);
}

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static void test_members_join_when_nodes_come_online(void) {
  world *w = triangle();
  for (int i = 0; i < 3; i++) {
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_JOINED), 2);
    for (int j = 0; j < 3; j++) {
      CHECK_INT(count_member_ev(w, i, PM_EV_MEMBER_JOINED, w->n[j].id), i != j);
      CHECK_INT(member_state(w, i, w->n[j].id, NULL),
                i == j ? 0 : PM_MEMBER_ALIVE); /* never itself */
    }
    CHECK_INT(stats(w, i).members, 2);
    CHECK_INT(count_ev(w, i, PM_EV_MESSAGE), 0); /* never delivered */
    CHECK_INT(stats(w, i).delivered, 0);
  }
  /* A join floods nothing: the tables pass the entry on. Refreshes follow
   * (every 30 s +-25 % in a mesh this small), without new events; nobody
   * fails while everyone is there. */
  CHECK_INT(count_presence_by(w, 0, 1, "$alive", w->n[0].id), 0);
  run_until(w, 20000 + 10 * 60000);
  size_t refreshes = count_presence_by(w, 0, 1, "$alive", w->n[0].id);
  CHECK(refreshes >= 16 && refreshes <= 27);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_JOINED), 2);
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_FAILED), 0);
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_LEFT), 0);
  }
  world_free(w);
}

static void test_member_leaves(void) {
  world *w = triangle();
  pm_node_leave(w->n[2].node, w->now);
  pump(w);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(count_member_ev(w, i, PM_EV_MEMBER_LEFT, w->n[2].id), 1);
    CHECK_INT(member_state(w, i, w->n[2].id, NULL), PM_MEMBER_LEFT);
    CHECK_INT(stats(w, i).members, 1);
  }
  /* A goodbye, not a crash: no suspicion, and nothing fails later. */
  w->n[2].listening = 0;
  run_until(w, w->now + 5 * 60000);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(count_presence(w, i, 1 - i, "$suspect"), 0);
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_FAILED), 0);
    CHECK_INT(count_member_ev(w, i, PM_EV_MEMBER_LEFT, w->n[2].id), 1);
  }
  world_free(w);
}

/* Node `i` crashes: its connections end without a goodbye. */
static void crash(world *w, int i) {
  for (size_t k = 0; k < w->np; k++) {
    pair *p = &w->p[k];
    if (!p->open || (p->a != i && p->b != i))
      continue;
    p->open = 0;
    int other = p->a == i ? p->b : p->a;
    uint32_t ol = p->a == i ? p->lb : p->la;
    if (other != RAW)
      pm_node_link_closed(w->n[other].node, w->now, ol);
  }
  w->n[i].listening = 0;
  w->n[i].dead = 1;
  pm_node_free(w->n[i].node);
  w->n[i].node = NULL;
  pump(w);
}

static void test_crashed_member_fails_after_suspicion(void) {
  world *w = triangle();
  uint64_t t = w->now;
  crash(w, 2);
  /* Both survivors lost a link to it uncleanly and still have each other:
   * each suspects it at once, and would say so after a random moment of
   * up to 1 s; the first to speak is heard by the other, which then says
   * nothing. */
  for (int i = 0; i < 2; i++) {
    CHECK_INT(count_presence(w, i, 1 - i, "$suspect"), 0);
    CHECK_INT(member_state(w, i, w->n[2].id, NULL), PM_MEMBER_SUSPECT);
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_FAILED), 0);
  }
  run_until(w, t + 1000);
  CHECK_INT(count_presence(w, 0, 1, "$suspect") +
                count_presence(w, 1, 0, "$suspect"),
            1);
  run_until(w, t + 9999);
  CHECK_INT(count_presence(w, 0, 1, "$suspect") +
                count_presence(w, 1, 0, "$suspect"),
            1);
  for (int i = 0; i < 2; i++)
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_FAILED), 0);
  run_until(w, t + 10000);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(count_member_ev(w, i, PM_EV_MEMBER_FAILED, w->n[2].id), 1);
    CHECK_INT(member_state(w, i, w->n[2].id, NULL), PM_MEMBER_FAILED);
    CHECK_INT(stats(w, i).members, 1);
    CHECK_INT(member_state(w, i, w->n[1 - i].id, NULL), PM_MEMBER_ALIVE);
  }
  run_until(w, t + 5 * 60000);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_FAILED), 1);
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_LEFT), 0);
  }
  CHECK_INT(w->n[0].dead + w->n[1].dead, 0);
  world_free(w);
}

static void test_suspected_member_refutes(void) {
  world *w = triangle();
  uint32_t inc_before = 99;
  CHECK_INT(member_state(w, 0, w->n[2].id, &inc_before), PM_MEMBER_ALIVE);
  /* The A-C connection breaks; both still reach B. Each suspects the other,
   * each is told through B and refutes with a new incarnation. */
  for (size_t k = 0; k < w->np; k++) {
    pair *p = &w->p[k];
    if (!p->open || !((p->a == 0 && p->b == 2) || (p->a == 2 && p->b == 0)))
      continue;
    p->open = 0;
    pm_node_link_closed(w->n[p->a].node, w->now, p->la);
    pm_node_link_closed(w->n[p->b].node, w->now, p->lb);
  }
  pump(w);
  run_until(w, w->now + 1000); /* a suspicion is told within 1 s */
  CHECK(count_presence(w, 0, 1, "$suspect") >= 1);
  CHECK(count_presence(w, 2, 1, "$suspect") >= 1);
  run_until(w, w->now + 60000);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_FAILED), 0);
    CHECK_INT(count_ev(w, i, PM_EV_MEMBER_JOINED), 2);
    CHECK_INT(stats(w, i).members, 2);
  }
  uint32_t inc = 0;
  CHECK_INT(member_state(w, 1, w->n[2].id, &inc), PM_MEMBER_ALIVE);
  CHECK_INT(inc, inc_before + 1);
  CHECK_INT(member_state(w, 0, w->n[2].id, &inc), PM_MEMBER_ALIVE);
  CHECK_INT(inc, inc_before + 1);
  world_free(w);
}

static void test_reserved_actions_refused(void) {
  world *w = two_connected();
  CHECK_INT(send_msg(w, 0, "$alive", "x", 0, 0, NULL), PM_ERR_INVAL);
  CHECK_INT(send_msg(w, 0, "$", NULL, 0, 0, NULL), PM_ERR_INVAL);
  CHECK_INT(send_msg(w, 0, "a$", NULL, 0, 0, NULL), 0);
  CHECK_INT(count_msgs(w, 1, "a$"), 1);
  world_free(w);
}

static void test_members_frame(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  /* A comes online through the raw neighbour: it asks for catch-up, and
   * takes the Members frame that answers it. */
  size_t r = raw_neighbor(w, 0, 0x77);
  CHECK_INT(raw_frames(w, r, PM_FRAME_SYNC), 1);
  uint8_t f[6 + 2 + 3 * 40];
  f[0] = 1;
  f[1] = PM_FRAME_MEMBERS;
  put_u32(f + 2, 2 + 3 * 40);
  f[6] = 0;
  f[7] = 3;
  uint8_t *e = f + 8;
  memset(e, 0x77, 32);
  put_u32(e + 32, 4);
  put_u32(e + 36, 30000);
  memset(e + 40, 0x55, 32);
  put_u32(e + 72, 9);
  put_u32(e + 76, 900000);
  memset(e + 80, 0x11, 32); /* A itself: skipped */
  put_u32(e + 112, 1);
  put_u32(e + 116, 30000);
  CHECK_INT(raw_send(w, r, f, sizeof f), 0);
  uint8_t id77[PM_NODE_ID_LEN], id55[PM_NODE_ID_LEN];
  memset(id77, 0x77, sizeof id77);
  memset(id55, 0x55, sizeof id55);
  CHECK_INT(count_ev(w, 0, PM_EV_MEMBER_JOINED), 2);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_JOINED, id77), 1);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_JOINED, id55), 1);
  uint32_t inc = 0;
  CHECK_INT(member_state(w, 0, id55, &inc), PM_MEMBER_ALIVE);
  CHECK_INT(inc, 9);
  CHECK_INT(stats(w, 0).members, 2);
  /* An empty one is fine. */
  static const uint8_t empty[] = {1, PM_FRAME_MEMBERS, 0, 0, 0, 2, 0, 0};
  CHECK_INT(raw_send(w, r, empty, sizeof empty), 0);
  CHECK_INT(stats(w, 0).members, 2);

  /* A tells the neighbour that brings it online the digest of its table
   * (itself included) at once: B buckets, about 8 members each (B a power
   * of two; a member's bucket is its ID's first byte mod B), each a count
   * and the XOR of ID bytes 8..15. A alone: one bucket. A digest that
   * differs gets the entries of the buckets that differ, A first when its
   * bucket is one of them. */
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS_DIGEST), 1);
  const uint8_t *dp = raw_last_payload(w, r, PM_FRAME_MEMBERS_DIGEST);
  CHECK_INT(raw_last_len(w, r, PM_FRAME_MEMBERS_DIGEST), 12);
  if (dp) {
    CHECK_INT(dp[3], 1);
    CHECK_INT(dp[4], 0x11);
    CHECK_INT(dp[11], 0x11);
  }
  /* Its own entry goes to its first neighbour as news, with the next
   * batch of announcements. */
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), 0);
  run_until(w, w->now + 200);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), 1);
  const uint8_t *jp = raw_last_payload(w, r, PM_FRAME_MEMBERS);
  if (jp) {
    CHECK_INT(jp[0] << 8 | jp[1], 1);
    CHECK_MEM(jp + 2, w->n[0].id, PM_NODE_ID_LEN);
  }
  /* The raw neighbour's digest: itself (0x77) and no one else. Its bucket
   * matches A's now; A's own (0x11) and 0x55's buckets do not. */
  uint8_t dg[6 + 32 * 12]; /* 32 buckets */
  memset(dg, 0, sizeof dg);
  dg[0] = 1;
  dg[1] = PM_FRAME_MEMBERS_DIGEST;
  put_u32(dg + 2, 32 * 12);
  uint8_t *b77 = dg + 6 + 12 * (0x77 % 32);
  put_u32(b77, 1);
  memset(b77 + 4, 0x77, 8);
  CHECK_INT(raw_send(w, r, dg, sizeof dg), 0);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), 2);
  const uint8_t *mp = raw_last_payload(w, r, PM_FRAME_MEMBERS);
  if (mp) {
    CHECK_INT(mp[0] << 8 | mp[1], 2);
    CHECK_MEM(mp + 2, w->n[0].id, PM_NODE_ID_LEN);
    CHECK_MEM(mp + 2 + PM_MEMBERS_ENTRY_LEN, id55, PM_NODE_ID_LEN);
  }
  /* One answer per 5 s at most. */
  CHECK_INT(raw_send(w, r, dg, sizeof dg), 0);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), 2);
  run_until(w, w->now + 5000);
  CHECK_INT(raw_send(w, r, dg, sizeof dg), 0);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), 3);
  /* Digests go out again every 30 s (+-25 %). */
  run_until(w, w->now + 40000);
  CHECK(raw_frames(w, r, PM_FRAME_MEMBERS_DIGEST) >= 2);
  static const uint8_t short_digest[] = {1, PM_FRAME_MEMBERS_DIGEST, 0, 0, 0, 1,
                                         0};

  /* A count that does not match the length closes the link. */
  static const uint8_t bad[] = {1, PM_FRAME_MEMBERS, 0, 0, 0, 2, 0, 1};
  CHECK_INT(raw_send(w, r, bad, sizeof bad), PM_ERR_MALFORMED);
  CHECK(!w->p[r].open);
  CHECK_INT(stats(w, 0).invalid, 1);
  CHECK_INT(stats(w, 0).members, 2);
  size_t r2 = raw_neighbor(w, 0, 0x78);
  CHECK_INT(raw_send(w, r2, short_digest, sizeof short_digest),
            PM_ERR_MALFORMED);

  /* Silent members fail after three intervals (plus the suspicion
   * timeout): 0x77's 30 s, raised to the 37.5 s that members of a mesh
   * this small may wait (30 s + 25 % jitter); 0x55's 15 min. */
  run_until(w, 1000 + 3 * 30000 + 10000 + 1);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_FAILED, id77), 0);
  run_until(w, 1000 + 3 * 37500 + 10000 + 1);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_FAILED, id77), 1);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_FAILED, id55), 0);
  run_until(w, 1000 + 3 * 900000 + 10000 + 1);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_FAILED, id55), 1);
  CHECK_INT(stats(w, 0).members, 0);
  world_free(w);
}

/* Every neighbour whose link comes up hears of the node itself as news,
 * not only the first: that one may have had nobody to pass it on to. */
static void test_own_entry_to_every_new_neighbor(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  size_t r = raw_neighbor(w, 0, 0x77);
  run_until(w, w->now + 200);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), 1);
  uint8_t first[PM_MEMBERS_ENTRY_LEN] = {0};
  const uint8_t *p = raw_last_payload(w, r, PM_FRAME_MEMBERS);
  CHECK_INT(raw_last_len(w, r, PM_FRAME_MEMBERS), 2 + PM_MEMBERS_ENTRY_LEN);
  if (p)
    memcpy(first, p + 2, sizeof first);
  CHECK_MEM(first, w->n[0].id, PM_NODE_ID_LEN);

  /* A second neighbour, A online already: the same entry, with the next
   * batch of announcements, and nothing more to the first. */
  size_t r2 = raw_neighbor(w, 0, 0x78);
  CHECK_INT(raw_frames(w, r2, PM_FRAME_MEMBERS), 0);
  run_until(w, w->now + 200);
  CHECK_INT(raw_frames(w, r2, PM_FRAME_MEMBERS), 1);
  CHECK_INT(raw_last_len(w, r2, PM_FRAME_MEMBERS), 2 + PM_MEMBERS_ENTRY_LEN);
  p = raw_last_payload(w, r2, PM_FRAME_MEMBERS);
  if (p) {
    CHECK_INT(p[0] << 8 | p[1], 1);
    CHECK_MEM(p + 2, first, sizeof first);
  }
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), 1);
  world_free(w);
}

static void put_u64(uint8_t *p, uint64_t v) {
  put_u32(p, (uint32_t)(v >> 32));
  put_u32(p + 4, (uint32_t)v);
}

/* A frame of `type` around `len` bytes of payload, in `f`. */
static size_t frame_of(uint8_t *f, uint8_t type, const uint8_t *payload,
                       size_t len) {
  f[0] = 1;
  f[1] = type;
  put_u32(f + 2, (uint32_t)len);
  memcpy(f + 6, payload, len);
  return 6 + len;
}

/* A 256-bucket digest is answered by the sub-bucket tags of the buckets
 * that differ; the peer then sends its entries of the sub-buckets that
 * differ and asks for this node's, which it gets. Each step answers only
 * the step before it, once. */
static void test_members_subdigest(void) {
  world *w = world_new(1000);
  world_add(w, "lobby", 0x11, 0, 0, 0);
  size_t r = raw_neighbor(w, 0, 0x77);
  /* A learns 0x55.., X = 55 10 33.. (sub-bucket 0x551) and 0x66... */
  uint8_t x[PM_NODE_ID_LEN];
  memset(x, 0x33, sizeof x);
  x[0] = 0x55;
  x[1] = 0x10;
  uint8_t mp[2 + 3 * PM_MEMBERS_ENTRY_LEN] = {0, 3};
  for (int k = 0; k < 3; k++) {
    uint8_t *e = mp + 2 + PM_MEMBERS_ENTRY_LEN * k;
    if (k == 1)
      memcpy(e, x, PM_NODE_ID_LEN);
    else
      memset(e, k == 0 ? 0x55 : 0x66, PM_NODE_ID_LEN);
    put_u32(e + 32, 1);
    put_u32(e + 36, 30000);
  }
  uint8_t f[6 + 4096 * 2];
  size_t flen = frame_of(f, PM_FRAME_MEMBERS, mp, sizeof mp);
  CHECK_INT(raw_send(w, r, f, flen), 0);
  CHECK_INT(stats(w, 0).members, 3);
  run_until(w, w->now + 200);
  size_t members0 = raw_frames(w, r, PM_FRAME_MEMBERS);

  /* A sent its digest when the link brought it online: the neighbour's
   * sub-digest answers it. It has 0x55.. but not X (bucket 0x55), and
   * itself (bucket 0x77). */
  uint8_t sd[2 * PM_MEMBERS_SUBDIGEST_ENTRY];
  memset(sd, 0, sizeof sd);
  sd[0] = 0x55;
  put_u64(sd + 1 + 8 * 5, 0x5555555555555555u);
  sd[PM_MEMBERS_SUBDIGEST_ENTRY] = 0x77;
  put_u64(sd + PM_MEMBERS_SUBDIGEST_ENTRY + 1 + 8 * 7, 0x7777777777777777u);
  flen = frame_of(f, PM_FRAME_MEMBERS_SUBDIGEST, sd, sizeof sd);
  CHECK_INT(raw_send(w, r, f, flen), 0);
  /* A sends X, the one entry of sub-bucket 0x551, and asks for the
   * neighbour's of 0x551 and 0x777. */
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), members0 + 1);
  const uint8_t *p = raw_last_payload(w, r, PM_FRAME_MEMBERS);
  if (p) {
    CHECK_INT(p[0] << 8 | p[1], 1);
    CHECK_MEM(p + 2, x, PM_NODE_ID_LEN);
  }
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS_WANT), 1);
  static const uint8_t want_x[] = {0x05, 0x51, 0x07, 0x77};
  CHECK_INT(raw_last_len(w, r, PM_FRAME_MEMBERS_WANT), 4);
  p = raw_last_payload(w, r, PM_FRAME_MEMBERS_WANT);
  if (p)
    CHECK_MEM(p, want_x, sizeof want_x);
  /* Once: a second sub-digest is no answer to anything. */
  CHECK_INT(raw_send(w, r, f, flen), 0);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), members0 + 1);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS_WANT), 1);

  /* The neighbour's 256-bucket digest: the same bucket 0x55, no 0x66, and
   * itself (0x77), not A (0x11). */
  uint8_t dg[PM_MEMBERS_DIGEST_LEN];
  memset(dg, 0, sizeof dg);
  put_u32(dg + 12 * 0x55, 2);
  put_u64(dg + 12 * 0x55 + 4, 0x5555555555555555u ^ 0x3333333333333333u);
  put_u32(dg + 12 * 0x77, 1);
  put_u64(dg + 12 * 0x77 + 4, 0x7777777777777777u);
  flen = frame_of(f, PM_FRAME_MEMBERS_DIGEST, dg, sizeof dg);
  CHECK_INT(raw_send(w, r, f, flen), 0);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), members0 + 1);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS_SUBDIGEST), 1);
  CHECK_INT(raw_last_len(w, r, PM_FRAME_MEMBERS_SUBDIGEST),
            3 * PM_MEMBERS_SUBDIGEST_ENTRY);
  p = raw_last_payload(w, r, PM_FRAME_MEMBERS_SUBDIGEST);
  if (p) {
    uint8_t want[3 * PM_MEMBERS_SUBDIGEST_ENTRY];
    memset(want, 0, sizeof want);
    want[0] = 0x11; /* A itself, sub-bucket 0x111 */
    put_u64(want + 1 + 8 * 1, 0x1111111111111111u);
    want[PM_MEMBERS_SUBDIGEST_ENTRY] = 0x66;
    put_u64(want + PM_MEMBERS_SUBDIGEST_ENTRY + 1 + 8 * 6, 0x6666666666666666u);
    want[2 * PM_MEMBERS_SUBDIGEST_ENTRY] = 0x77; /* A has none */
    CHECK_MEM(p, want, sizeof want);
  }
  /* The neighbour asks for 0x111 and 0x666: A and 0x66... */
  static const uint8_t ask[] = {0x01, 0x11, 0x06, 0x66};
  flen = frame_of(f, PM_FRAME_MEMBERS_WANT, ask, sizeof ask);
  CHECK_INT(raw_send(w, r, f, flen), 0);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), members0 + 2);
  p = raw_last_payload(w, r, PM_FRAME_MEMBERS);
  if (p) {
    CHECK_INT(p[0] << 8 | p[1], 2);
    CHECK_MEM(p + 2, w->n[0].id, PM_NODE_ID_LEN);
    uint8_t id66[PM_NODE_ID_LEN];
    memset(id66, 0x66, sizeof id66);
    CHECK_MEM(p + 2 + PM_MEMBERS_ENTRY_LEN, id66, PM_NODE_ID_LEN);
  }
  /* ... once. */
  CHECK_INT(raw_send(w, r, f, flen), 0);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), members0 + 2);

  /* Sub-buckets out of order, or a length that is no whole record, close
   * the link. */
  static const uint8_t backwards[] = {0x06, 0x66, 0x01, 0x11};
  flen = frame_of(f, PM_FRAME_MEMBERS_WANT, backwards, sizeof backwards);
  CHECK_INT(raw_send(w, r, f, flen), PM_ERR_MALFORMED);
  CHECK(!w->p[r].open);
  size_t r2 = raw_neighbor(w, 0, 0x78);
  flen = frame_of(f, PM_FRAME_MEMBERS_SUBDIGEST, sd, sizeof sd - 1);
  CHECK_INT(raw_send(w, r2, f, flen), PM_ERR_MALFORMED);
  CHECK(!w->p[r2].open);
  world_free(w);
}

/* One Members entry for `id_byte`, incarnation `inc`, 30 s. */
static void members_frame(uint8_t f[6 + 2 + 40], uint8_t id_byte,
                          uint32_t inc) {
  f[0] = 1;
  f[1] = PM_FRAME_MEMBERS;
  put_u32(f + 2, 2 + 40);
  f[6] = 0;
  f[7] = 1;
  memset(f + 8, id_byte, 32);
  put_u32(f + 40, inc);
  put_u32(f + 44, 30000);
}

static void test_members_news_passed_on(void) {
  world *w = two_connected();
  /* A was online: it asks its new neighbour only for the last 2 s, what
   * may have been on its way along a branch A just left. */
  size_t r = raw_neighbor(w, 0, 0x77);
  CHECK_INT(raw_frames(w, r, PM_FRAME_SYNC), 1);
  const uint8_t *sp = raw_last_payload(w, r, PM_FRAME_SYNC);
  if (sp)
    CHECK_INT(sp[0] << 24 | sp[1] << 16 | sp[2] << 8 | sp[3], 2000);
  /* Its digest comes 5..15 s after the link, not at once. */
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS_DIGEST), 0);
  uint64_t linked = w->now;
  uint8_t id55[PM_NODE_ID_LEN];
  memset(id55, 0x55, sizeof id55);
  uint8_t f[6 + 2 + 40];
  members_frame(f, 0x55, 1);
  CHECK_INT(raw_send(w, r, f, sizeof f), 0);
  CHECK_INT(stats(w, 0).members, 2);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_JOINED, id55), 1);
  /* News goes on to the other neighbours with the next batch. */
  CHECK_INT(count_member_ev(w, 1, PM_EV_MEMBER_JOINED, id55), 0);
  run_until(w, w->now + 500);
  CHECK_INT(count_member_ev(w, 1, PM_EV_MEMBER_JOINED, id55), 1);
  CHECK_INT(stats(w, 1).members, 2);
  /* Old news is not passed on: nothing new for anyone. */
  size_t sent = raw_frames(w, r, PM_FRAME_MEMBERS);
  CHECK_INT(raw_send(w, r, f, sizeof f), 0);
  run_until(w, w->now + 500);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_JOINED, id55), 1);
  CHECK_INT(count_member_ev(w, 1, PM_EV_MEMBER_JOINED, id55), 1);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS), sent);
  run_until(w, linked + 4999);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS_DIGEST), 0);
  run_until(w, linked + 15001);
  CHECK_INT(raw_frames(w, r, PM_FRAME_MEMBERS_DIGEST), 1);
  /* 0x55 never refreshes: it fails. A neighbour still vouching for it
   * cannot bring it back, unless with a new incarnation. */
  run_until(w, w->now + 3 * 37500 + 10000 + 1000);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_FAILED, id55), 1);
  size_t r3 = raw_neighbor(w, 0, 0x79);
  size_t floods = raw_frames(w, r3, PM_FRAME_FLOOD);
  CHECK_INT(raw_send(w, r3, f, sizeof f), 0);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_JOINED, id55), 1);
  CHECK_INT(member_state(w, 0, id55, NULL), PM_MEMBER_FAILED);
  /* But the views differ (as after a partition): A suspects 0x55 at that
   * incarnation, once, so that 0x55 refutes if it is alive. */
  CHECK_INT(raw_frames(w, r3, PM_FRAME_FLOOD), floods + 1);
  const uint8_t *sus = raw_last_payload(w, r3, PM_FRAME_FLOOD);
  if (sus) {
    CHECK_INT(sus[FLOOD_ACTION_AT], 8);
    CHECK(memcmp(sus + FLOOD_ACTION_AT + 1, "$suspect", 8) == 0);
  }
  CHECK_INT(raw_send(w, r3, f, sizeof f), 0);
  CHECK_INT(raw_frames(w, r3, PM_FRAME_FLOOD), floods + 1);
  members_frame(f, 0x55, 2);
  CHECK_INT(raw_send(w, r3, f, sizeof f), 0);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_JOINED, id55), 2);
  CHECK_INT(member_state(w, 0, id55, NULL), PM_MEMBER_ALIVE);
  world_free(w);
}

static void test_presence_floods_checked(void) {
  world *w = two_connected();
  size_t r = raw_neighbor(w, 0, 0x77);
  pm_buf b;
  pm_buf_init(&b, NULL);
  uint8_t body[36];
  memset(body, 0, sizeof body);
  size_t relayed = count_presence(w, 0, 1, "$alive");
  /* Wrong sizes and unknown reserved actions are invalid: dropped,
   * counted, not relayed. */
  make_presence(&b, 0x77, 1, "$alive", body, 4);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  make_presence(&b, 0x77, 2, "$hello", body, 4);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(stats(w, 0).invalid, 2);
  CHECK_INT(count_ev(w, 0, PM_EV_MEMBER_JOINED), 1); /* B only */
  CHECK_INT(count_presence(w, 0, 1, "$alive"), relayed);
  CHECK(w->p[r].open);
  /* A good one: joined here and at B, relayed, never delivered. */
  put_u32(body, 3);
  put_u32(body + 4, 30000);
  make_presence(&b, 0x77, 3, "$alive", body, 8);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  uint8_t id77[PM_NODE_ID_LEN];
  memset(id77, 0x77, sizeof id77);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_JOINED, id77), 1);
  CHECK_INT(count_member_ev(w, 1, PM_EV_MEMBER_JOINED, id77), 1);
  CHECK_INT(count_presence(w, 0, 1, "$alive"), relayed + 1);
  CHECK_INT(count_ev(w, 0, PM_EV_MESSAGE), 0);
  CHECK_INT(count_ev(w, 1, PM_EV_MESSAGE), 0);
  /* 0x77 suspects A: A refutes with a higher incarnation, pushed on every
   * link; B keeps A alive at that incarnation. */
  uint32_t inc = 0;
  CHECK_INT(member_state(w, 1, w->n[0].id, &inc), PM_MEMBER_ALIVE);
  size_t own = raw_frames(w, r, PM_FRAME_FLOOD);
  memcpy(body, w->n[0].id, PM_NODE_ID_LEN);
  put_u32(body + 32, inc);
  make_presence(&b, 0x77, 4, "$suspect", body, 36);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(raw_frames(w, r, PM_FRAME_FLOOD), own + 1);
  uint32_t inc2 = 0;
  CHECK_INT(member_state(w, 1, w->n[0].id, &inc2), PM_MEMBER_ALIVE);
  CHECK_INT(inc2, inc + 1);
  /* 0x77 says goodbye. */
  put_u32(body, 3);
  make_presence(&b, 0x77, 5, "$leave", body, 4);
  CHECK_INT(raw_send_buf(w, r, &b), 0);
  CHECK_INT(count_member_ev(w, 0, PM_EV_MEMBER_LEFT, id77), 1);
  CHECK_INT(count_member_ev(w, 1, PM_EV_MEMBER_LEFT, id77), 1);
  /* A presence message with a hop limit is invalid; the third strike
   * closes the link. */
  pm_msg_flood m;
  memset(&m, 0, sizeof m);
  memset(m.origin, 0x77, PM_NODE_ID_LEN);
  m.seq = 6;
  m.action = "$leave";
  m.action_len = 6;
  m.body = body;
  m.body_len = 4;
  m.has_hop_limit = 1;
  m.hop_limit = 5;
  pm_msg_flood_id(&m, m.id);
  pm_test_signature(m.origin, m.id, m.sig);
  CHECK_INT(pm_msg_write_flood(&b, &m), 0);
  CHECK_INT(raw_send_buf(w, r, &b), PM_ERR_MALFORMED);
  CHECK_INT(stats(w, 0).invalid, 3);
  CHECK(!w->p[r].open);
  pm_buf_free(&b);
  world_free(w);
}

TEST_MAIN(TEST_CASE(test_config_validation), TEST_CASE(test_two_nodes_connect),
          TEST_CASE(test_three_node_mesh_delivers_once),
          TEST_CASE(test_hop_limits),
          TEST_CASE(test_duplicate_floods_counted_not_delivered),
          TEST_CASE(test_busy_node_refuses_with_referrals),
          TEST_CASE(test_wrong_mesh), TEST_CASE(test_dial_self),
          TEST_CASE(test_simultaneous_dial_smaller_id_first),
          TEST_CASE(test_simultaneous_dial_larger_id_first),
          TEST_CASE(test_simultaneous_dial_late_hello),
          TEST_CASE(test_second_link_same_direction),
          TEST_CASE(test_bad_input_closes_only_that_link),
          TEST_CASE(test_huge_header_byte_by_byte),
          TEST_CASE(test_invalid_messages_dropped_then_link_closed),
          TEST_CASE(test_ed25519_signatures),
          TEST_CASE(test_replays_refused_after_dedup_forgets),
          TEST_CASE(test_leave), TEST_CASE(test_leave_refers_every_neighbor),
          TEST_CASE(test_add_peer_after_leave_fails_closed),
          TEST_CASE(test_idle_link_pinged_then_closed),
          TEST_CASE(test_silent_neighbor_replaced_before_idle_timeout),
          TEST_CASE(test_talking_link_stays_up),
          TEST_CASE(test_prune_prefers_silent_links),
          TEST_CASE(test_handshake_timeout),
          TEST_CASE(test_failed_dial_backoff_unpinned),
          TEST_CASE(test_failed_dial_backoff_pinned),
          TEST_CASE(test_deadline_after_timeout_is_in_future),
          TEST_CASE(test_deadline_in_future_while_dial_pending),
          TEST_CASE(test_empty_read_is_harmless), TEST_CASE(test_large_bodies),
          TEST_CASE(test_max_neighbors_holds_when_welcomes_race),
          TEST_CASE(test_tables_are_bounded),
          TEST_CASE(test_fresh_node_resolves_and_sends_nothing),
          TEST_CASE(test_announced_message_is_grafted),
          TEST_CASE(test_known_message_announced_is_not_grafted),
          TEST_CASE(test_graft_is_answered_from_cache),
          TEST_CASE(test_hello_must_match_authenticated_key),
          TEST_CASE(test_sync_announces_recent_messages_once),
          TEST_CASE(test_bad_gossip_frames_close_the_link),
          TEST_CASE(test_too_many_ids_rejected),
          TEST_CASE(test_propagation_filter),
          TEST_CASE(test_slow_neighbour_dropped_never_the_last),
          TEST_CASE(test_members_join_when_nodes_come_online),
          TEST_CASE(test_member_leaves),
          TEST_CASE(test_crashed_member_fails_after_suspicion),
          TEST_CASE(test_suspected_member_refutes),
          TEST_CASE(test_reserved_actions_refused),
          TEST_CASE(test_members_frame), TEST_CASE(test_members_subdigest),
          TEST_CASE(test_members_news_passed_on),
          TEST_CASE(test_presence_floods_checked),
          TEST_CASE(test_own_entry_to_every_new_neighbor))
