/* The network model: TCP connections between simulated nodes.
 *
 * Each direction of a connection is a FIFO of segments with arrival times
 * that never decrease, so bytes are never reordered within a direction; a
 * retransmitted segment (--loss) delays every segment behind it, as TCP's
 * head-of-line blocking does. A direction has at most one SIM_EV_SEG in the
 * event queue, for its head segment. A FIN (or the RST of a crash) travels
 * as a marker behind the data already sent. While a partition is in force,
 * a head segment that would cross it stays where it is (the direction is
 * "stalled") and moves again, in order, one latency after the cut ends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* ---- pools -------------------------------------------------------------- */

static uint32_t seg_alloc(sim *s) {
  if (s->seg_free != SIM_NONE) {
    uint32_t i = s->seg_free;
    s->seg_free = s->segs[i].next;
    return i;
  }
  if (s->segs_len == s->segs_cap) {
    s->segs_cap = s->segs_cap ? s->segs_cap * 2 : 4096;
    s->segs = sim_xrealloc(s->segs, s->segs_cap * sizeof *s->segs);
  }
  return s->segs_len++;
}

static void seg_release(sim *s, uint32_t i) {
  sim_seg *g = &s->segs[i];
  free(g->ext);
  g->ext = NULL;
  g->next = s->seg_free;
  s->seg_free = i;
}

static const uint8_t *seg_data(const sim_seg *g) {
  return g->len > SIM_SEG_INLINE ? g->ext : g->data;
}

static uint32_t conn_alloc(sim *s) {
  uint32_t i;
  if (s->conn_free != SIM_NONE) {
    i = s->conn_free;
    s->conn_free = s->conns[i].next_free;
  } else {
    if (s->conns_len == s->conns_cap) {
      s->conns_cap = s->conns_cap ? s->conns_cap * 2 : 1024;
      s->conns = sim_xrealloc(s->conns, s->conns_cap * sizeof *s->conns);
    }
    i = s->conns_len++;
  }
  sim_conn *c = &s->conns[i];
  memset(c, 0, sizeof *c);
  c->in_use = 1;
  c->next_free = SIM_NONE;
  for (int d = 0; d < 2; d++)
    c->dir[d].head = c->dir[d].tail = SIM_NONE;
  s->conns_in_use++;
  return i;
}

static uint32_t dial_alloc(sim *s) {
  if (s->dial_free != SIM_NONE) {
    uint32_t i = s->dial_free;
    s->dial_free = s->dials[i].next_free;
    return i;
  }
  if (s->dials_len == s->dials_cap) {
    s->dials_cap = s->dials_cap ? s->dials_cap * 2 : 256;
    s->dials = sim_xrealloc(s->dials, s->dials_cap * sizeof *s->dials);
  }
  return s->dials_len++;
}

static void dial_release(sim *s, uint32_t i) {
  s->dials[i].next_free = s->dial_free;
  s->dial_free = i;
}

void sim_net_init(sim *s) {
  s->seg_free = s->conn_free = s->dial_free = SIM_NONE;
}

void sim_net_free(sim *s) {
  for (uint32_t i = 0; i < s->segs_len; i++)
    free(s->segs[i].ext); /* released segments have ext NULL */
  free(s->segs);
  free(s->conns);
  free(s->dials);
  free(s->stalled);
}

/* ---- a node's connections ------------------------------------------------ */

static void node_add_conn(sim *s, uint32_t n, uint32_t ci, int end) {
  sim_node *nd = &s->nodes[n];
  if (nd->nconns == nd->conns_cap) {
    nd->conns_cap = (uint16_t)(nd->conns_cap ? nd->conns_cap * 2 : 8);
    nd->conns = sim_xrealloc(nd->conns, nd->conns_cap * sizeof *nd->conns);
  }
  sim_nconn *e = &nd->conns[nd->nconns++];
  e->link = s->conns[ci].link[end];
  e->conn = ci;
  e->end = (uint32_t)end;
}

static void node_remove_conn(sim *s, uint32_t n, uint32_t ci, int end) {
  sim_node *nd = &s->nodes[n];
  for (uint16_t i = 0; i < nd->nconns; i++) {
    if (nd->conns[i].conn == ci && nd->conns[i].end == (uint32_t)end) {
      nd->conns[i] = nd->conns[--nd->nconns];
      return;
    }
  }
}

uint32_t sim_net_find(const sim *s, uint32_t n, uint32_t link, int *end) {
  const sim_node *nd = &s->nodes[n];
  for (uint16_t i = 0; i < nd->nconns; i++) {
    if (nd->conns[i].link == link) {
      *end = (int)nd->conns[i].end;
      return nd->conns[i].conn;
    }
  }
  return SIM_NONE;
}

/* ---- directions ------------------------------------------------------------
 */

uint32_t sim_net_draw_latency(sim *s) {
  uint32_t lo = s->o->lat_min_ms, hi = s->o->lat_max_ms;
  return lo + (uint32_t)sim_rng_below(&s->net_rng, (uint64_t)(hi - lo) + 1);
}

static int crosses_cut(const sim *s, const sim_conn *c) {
  return s->hosts[s->nodes[c->node[0]].host].side !=
         s->hosts[s->nodes[c->node[1]].host].side;
}

/* When a segment sent now arrives: latency, jitter, and for each lost
 * transmission an RTO that doubles; never before the segment ahead of it. */
static uint64_t next_arrival(sim *s, sim_conn *c, sim_dir *d) {
  uint64_t t = s->now + c->lat;
  t += sim_rng_below(&s->net_rng, (uint64_t)s->o->jitter_ms + 1);
  if (s->loss > 0) {
    uint64_t rto = 200;
    while (sim_rng_unit(&s->net_rng) < s->loss) {
      t += rto;
      if (rto < 60000)
        rto *= 2;
    }
  }
  if (t < d->last_arrival)
    t = d->last_arrival;
  d->last_arrival = t;
  return t;
}

static void dir_push(sim *s, uint32_t ci, int di, uint32_t si) {
  sim_dir *d = &s->conns[ci].dir[di];
  s->segs[si].next = SIM_NONE;
  if (d->tail == SIM_NONE)
    d->head = si;
  else
    s->segs[d->tail].next = si;
  d->tail = si;
  if (!d->pending && !d->stalled) {
    d->pending = 1;
    sim_evq_push(&s->q, s->segs[si].arrival, SIM_EV_SEG, ci, (uint32_t)di);
  }
}

static void push_fin(sim *s, uint32_t ci, int di) {
  uint32_t si = seg_alloc(s);
  sim_conn *c = &s->conns[ci];
  sim_seg *g = &s->segs[si];
  g->len = 0;
  g->fin = 1;
  g->ext = NULL;
  g->arrival = next_arrival(s, c, &c->dir[di]);
  dir_push(s, ci, di, si);
}

/* Drops whatever a direction still carries. */
static void dir_clear(sim *s, sim_dir *d) {
  uint32_t si = d->head;
  while (si != SIM_NONE) {
    uint32_t next = s->segs[si].next;
    s->c.bytes_dropped += s->segs[si].len;
    seg_release(s, si);
    si = next;
  }
  d->head = d->tail = SIM_NONE;
}

/* Frees a connection once neither end has it and no event refers to it. */
static void conn_maybe_free(sim *s, uint32_t ci) {
  sim_conn *c = &s->conns[ci];
  if (!c->in_use || c->open[0] || c->open[1])
    return;
  for (int d = 0; d < 2; d++) {
    dir_clear(s, &c->dir[d]);
    c->dir[d].stalled = 0;
  }
  if (c->dir[0].pending || c->dir[1].pending)
    return; /* the running or scheduled SIM_EV_SEG frees it */
  c->in_use = 0;
  c->next_free = s->conn_free;
  s->conn_free = ci;
  s->conns_in_use--;
}

/* ---- outputs of a node ----------------------------------------------------
 */

void sim_net_send(sim *s, uint32_t n, uint32_t link, const uint8_t *data,
                  size_t len) {
  int e;
  uint32_t ci = sim_net_find(s, n, link, &e);
  if (ci == SIM_NONE) {
    s->c.sim_errors++;
    return;
  }
  if (!s->conns[ci].open[1 - e]) {
    s->c.bytes_dropped += len; /* the peer is gone: TCP would reset */
    return;
  }
  while (len) {
    size_t k = len < SIM_MSS ? len : SIM_MSS;
    uint32_t si = seg_alloc(s);
    sim_conn *c = &s->conns[ci];
    sim_seg *g = &s->segs[si];
    g->len = (uint32_t)k;
    g->fin = 0;
    g->ext = NULL;
    if (k > SIM_SEG_INLINE) {
      g->ext = sim_xmalloc(k);
      memcpy(g->ext, data, k);
    } else {
      memcpy(g->data, data, k);
    }
    g->arrival = next_arrival(s, c, &c->dir[e]);
    dir_push(s, ci, e, si);
    data += k;
    len -= k;
  }
}

void sim_net_close(sim *s, uint32_t n, uint32_t link) {
  int e;
  uint32_t ci = sim_net_find(s, n, link, &e);
  if (ci == SIM_NONE) {
    s->c.sim_errors++;
    return;
  }
  sim_conn *c = &s->conns[ci];
  c->open[e] = 0;
  if (c->up[e]) { /* the core reports NEIGHBOR_DOWN first; be safe anyway */
    c->up[e] = 0;
    s->nodes[n].nbrs--;
    s->comps_dirty = 1;
  }
  node_remove_conn(s, n, ci, e);
  /* Bytes still travelling towards this end would meet a closed socket. */
  dir_clear(s, &c->dir[1 - e]);
  if (c->open[1 - e])
    push_fin(s, ci, e);
  else
    conn_maybe_free(s, ci);
}

void sim_net_dial(sim *s, uint32_t n, const char *addr) {
  s->c.dials++;
  uint32_t di = dial_alloc(s);
  sim_dial *d = &s->dials[di];
  d->started = s->now;
  d->dialer = n;
  d->host = sim_addr_host(s, addr);
  d->lat = sim_net_draw_latency(s);
  d->next_free = SIM_NONE;
  size_t len = strlen(addr);
  if (len >= sizeof d->addr)
    len = sizeof d->addr - 1;
  memcpy(d->addr, addr, len);
  d->addr[len] = '\0';
  /* Nobody at that address, or behind the cut: the SYN goes unanswered. */
  if (d->host == SIM_NONE ||
      (s->cut && s->hosts[d->host].side != s->hosts[s->nodes[n].host].side)) {
    sim_evq_push(&s->q, s->now + s->o->connect_timeout_ms, SIM_EV_DIAL_FAIL, di,
                 0);
    return;
  }
  sim_evq_push(&s->q, s->now + d->lat, SIM_EV_DIAL_ARRIVE, di, 0);
}

/* The SYN reached a live process: both ends get the connection now. */
static void establish(sim *s, uint32_t dialer, uint32_t target,
                      const char *addr, uint32_t lat) {
  uint32_t ci = conn_alloc(s);
  sim_conn *c = &s->conns[ci];
  c->node[0] = dialer;
  c->node[1] = target;
  c->lat = lat;
  char ip[32];
  sim_host_ip(s->nodes[target].host, ip);
  uint32_t lid = 0;
  int rc = pm_node_link_open(s->nodes[dialer].core, s->now, 1, ip, addr, &lid);
  if (rc) {
    s->c.open_refused++;
    conn_maybe_free(s, ci);
    sim_pump(s, dialer);
    return;
  }
  c->link[0] = lid;
  c->open[0] = 1;
  /* The target's end exists from now on for the bytes the dialler sends
   * (its Hello); its link ID follows below. */
  c->open[1] = 1;
  node_add_conn(s, dialer, ci, 0);
  sim_pump(s, dialer);

  sim_host_ip(s->nodes[dialer].host, ip);
  rc = pm_node_link_open(s->nodes[target].core, s->now, 0, ip, NULL, &lid);
  c = &s->conns[ci];
  if (rc) {
    /* The target takes no more links: it closes the connection at once. */
    s->c.open_refused++;
    c->open[1] = 0;
    dir_clear(s, &c->dir[0]);
    if (c->open[0])
      push_fin(s, ci, 1);
    else
      conn_maybe_free(s, ci);
    sim_pump(s, target);
    return;
  }
  c->link[1] = lid;
  c->open[1] = 1;
  node_add_conn(s, target, ci, 1);
  sim_pump(s, target);
}

void sim_net_on_dial_arrive(sim *s, uint32_t di) {
  sim_dial d = s->dials[di];
  if (!sim_node_alive(s, d.dialer)) {
    dial_release(s, di);
    return;
  }
  uint32_t target = s->hosts[d.host].node;
  if (target == SIM_NONE || !sim_node_alive(s, target)) {
    /* The host answers the SYN with a reset: one more latency back. */
    sim_evq_push(&s->q, s->now + d.lat, SIM_EV_DIAL_FAIL, di, 0);
    return;
  }
  if (s->cut &&
      s->hosts[d.host].side != s->hosts[s->nodes[d.dialer].host].side) {
    uint64_t at = d.started + s->o->connect_timeout_ms;
    sim_evq_push(&s->q, at > s->now ? at : s->now, SIM_EV_DIAL_FAIL, di, 0);
    return;
  }
  dial_release(s, di);
  establish(s, d.dialer, target, d.addr, d.lat);
}

void sim_net_on_dial_fail(sim *s, uint32_t di) {
  sim_dial *d = &s->dials[di];
  uint32_t n = d->dialer;
  if (sim_node_alive(s, n)) {
    char addr[SIM_ADDR_MAX];
    memcpy(addr, d->addr, sizeof addr);
    dial_release(s, di); /* before any call that may dial again */
    s->c.dial_failures++;
    pm_node_dial_failed(s->nodes[n].core, s->now, addr);
    sim_pump(s, n);
    return;
  }
  dial_release(s, di);
}

/* ---- delivery -------------------------------------------------------------
 */

void sim_net_on_seg(sim *s, uint32_t ci, uint32_t di) {
  int re = 1 - (int)di; /* the receiving end */
  for (;;) {
    sim_conn *c = &s->conns[ci];
    sim_dir *d = &c->dir[di];
    uint32_t si = d->head;
    if (si == SIM_NONE)
      break;
    sim_seg *g = &s->segs[si];
    if (g->arrival > s->now) {
      sim_evq_push(&s->q, g->arrival, SIM_EV_SEG, ci, di);
      return; /* still pending */
    }
    if (s->cut && crosses_cut(s, c)) {
      d->stalled = 1;
      if (s->nstalled == s->stalled_cap) {
        s->stalled_cap = s->stalled_cap ? s->stalled_cap * 2 : 256;
        s->stalled =
            sim_xrealloc(s->stalled, s->stalled_cap * sizeof *s->stalled);
      }
      s->stalled[s->nstalled++] = ci * 2 + di;
      break;
    }
    d->head = g->next;
    if (d->head == SIM_NONE)
      d->tail = SIM_NONE;
    uint32_t len = g->len;
    sim_trace(s, (uint64_t)len << 1 | g->fin);
    if (!c->open[re]) {
      s->c.bytes_dropped += len;
      seg_release(s, si);
      continue;
    }
    uint32_t rn = c->node[re];
    if (g->fin) {
      seg_release(s, si);
      pm_node_link_closed(s->nodes[rn].core, s->now, c->link[re]);
      sim_pump(s, rn);
      continue;
    }
    const uint8_t *data = seg_data(g);
    if (s->o->verbose > 1 ||
        (s->o->trace_node != SIM_NONE &&
         (rn == s->o->trace_node || c->node[di] == s->o->trace_node)))
      sim_debug_segment(s, ci, di, data, len);
    sim_count_frames(s, d, data, len);
    /* A protocol error comes back as a close output and a LINK_ERROR
     * event, both drained below. */
    (void)pm_node_link_recv(s->nodes[rn].core, s->now, c->link[re], data, len);
    seg_release(s, si);
    if (s->o->send_queue_limit && c->open[di]) {
      uint32_t sn = c->node[di];
      pm_node_link_drained(s->nodes[sn].core, s->now, c->link[di], len);
      sim_pump(s, sn);
    }
    sim_pump(s, rn);
  }
  s->conns[ci].dir[di].pending = 0;
  conn_maybe_free(s, ci);
}

/* ---- faults ----------------------------------------------------------------
 */

void sim_net_crash(sim *s, uint32_t n) {
  sim_node *nd = &s->nodes[n];
  while (nd->nconns) {
    sim_nconn en = nd->conns[--nd->nconns];
    uint32_t ci = en.conn;
    int e = (int)en.end;
    sim_conn *c = &s->conns[ci];
    c->open[e] = 0;
    c->up[e] = 0;
    /* What it had sent is lost with it; what was coming finds no one. */
    dir_clear(s, &c->dir[e]);
    dir_clear(s, &c->dir[1 - e]);
    if (c->open[1 - e])
      push_fin(s, ci, e); /* the peer's kernel sees a reset */
    conn_maybe_free(s, ci);
  }
}

void sim_net_cut_end(sim *s) {
  s->cut = 0;
  for (uint32_t i = 0; i < s->nstalled; i++) {
    uint32_t ci = s->stalled[i] / 2, di = s->stalled[i] % 2;
    sim_conn *c = &s->conns[ci];
    sim_dir *d = &c->dir[di];
    if (!c->in_use || !d->stalled)
      continue;
    d->stalled = 0;
    if (d->head != SIM_NONE && !d->pending) {
      /* TCP retransmits what the cut held: it arrives one latency later. */
      d->pending = 1;
      sim_evq_push(&s->q, s->now + c->lat, SIM_EV_SEG, ci, di);
    } else {
      conn_maybe_free(s, ci);
    }
  }
  s->nstalled = 0;
}
