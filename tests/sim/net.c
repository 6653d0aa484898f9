/* The network model: TCP connections between simulated nodes.
 *
 * A connection is two ends, each owned by its node's partition and named by
 * (partition, index, generation). Everything one end tells the other is a
 * packet with an arrival time at least one base latency (>= --lat-min-ms)
 * after it was sent: data segments, the FIN, the SYN-ACK, a dial's failure.
 * Each packet is one event at its arrival; a packet for another partition
 * waits in an outbox and joins the receiver's queue at the start of the
 * next window, before it is due.
 *
 * Each direction's arrival times never decrease (the sending end keeps the
 * last one), and events of one millisecond run in the order they were
 * scheduled, so bytes are never reordered; a retransmitted segment (--loss)
 * delays every segment behind it, as TCP's head-of-line blocking does. A FIN
 * travels behind the data already sent. While a partition is in force, a
 * packet that would cross it is held at its end, and so is everything after
 * it; they move again, in order, one latency after the cut ends.
 *
 * Connecting: the dialler's end exists from the DIAL; the SYN reaches the
 * target host one latency later, where the target's core accepts the link
 * (or refuses it: SYN-ACK then FIN), and the SYN-ACK brings the link to the
 * dialler's core one more latency later. A dead host answers with a reset
 * (one latency back); an unknown address, or one behind the cut, fails after
 * --connect-timeout-ms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define CHUNK_UNITS (1u << SIM_SLAB_CHUNK_SHIFT)

/* In an outbox, a packet is its sim_seg then its data, padded to 8 bytes. */
#define REC_BYTES(len) (sizeof(sim_seg) + (((size_t)(len) + 7) & ~(size_t)7))
#define OUTBOX_MIN (64 * 1024) /* bytes an outbox starts with */
#define OUTBOX_WINDOWS 512     /* release_outbox looks back this far */

/* ---- the packet slab -------------------------------------------------------
 * Packets of up to a segment are blocks of whole SIM_UNITs carved from 2 MiB
 * chunks, recycled through one free list per size: no malloc per packet,
 * and the blocks a partition just freed are the ones it uses next. Larger
 * ones are malloc'd one by one (sim.h, SIM_SEG_BIG). */

static sim_seg *seg_at(const sim_part *p, uint32_t i) {
  if (i & SIM_SEG_BIG)
    return p->slab.big[i & ~SIM_SEG_BIG];
  return (sim_seg *)(p->slab.chunks[i >> SIM_SLAB_CHUNK_SHIFT] +
                     (size_t)(i & (CHUNK_UNITS - 1)) * SIM_UNIT);
}

static uint8_t *seg_data(sim_seg *g) {
  return (uint8_t *)(g + 1);
}

static void stack_push(sim_free_stack *fs, uint32_t v) {
  if (fs->len == fs->cap) {
    fs->cap = fs->cap ? fs->cap * 2 : 1024;
    fs->v = sim_xrealloc(fs->v, fs->cap * sizeof *fs->v);
  }
  fs->v[fs->len++] = v;
}

static uint32_t big_alloc(sim_part *p, uint32_t len) {
  sim_slab *sl = &p->slab;
  uint32_t i;
  if (sl->big_free.len) {
    i = sl->big_free.v[--sl->big_free.len];
  } else {
    if (sl->nbig == sl->big_cap) {
      sl->big_cap = sl->big_cap ? sl->big_cap * 2 : 256;
      sl->big = sim_xrealloc(sl->big, sl->big_cap * sizeof *sl->big);
    }
    i = sl->nbig++;
  }
  sl->big[i] = sim_xmalloc(sizeof(sim_seg) + len);
  return i | SIM_SEG_BIG;
}

static uint16_t seg_units(uint32_t len) {
  return (uint16_t)((sizeof(sim_seg) + len + SIM_UNIT - 1) / SIM_UNIT);
}

static uint32_t seg_alloc(sim_part *p, uint32_t len) {
  sim_slab *sl = &p->slab;
  uint32_t units = seg_units(len);
  if (units >= SIM_SLAB_CLASSES)
    return big_alloc(p, len);
  uint32_t i;
  sim_free_stack *fs = &sl->free[units];
  if (fs->len) {
    i = fs->v[--fs->len];
  } else {
    if (sl->nchunks == 0 || sl->used + units > CHUNK_UNITS) {
      if (sl->nchunks == sl->chunks_cap) {
        sl->chunks_cap = sl->chunks_cap ? sl->chunks_cap * 2 : 16;
        sl->chunks =
            sim_xrealloc(sl->chunks, sl->chunks_cap * sizeof *sl->chunks);
      }
      sl->chunks[sl->nchunks++] = sim_xmalloc((size_t)CHUNK_UNITS * SIM_UNIT);
      sl->used = 0;
    }
    i = (sl->nchunks - 1) << SIM_SLAB_CHUNK_SHIFT | sl->used;
    sl->used += units;
  }
  /* The caller writes the whole header: no read of a cold block here. */
  return i;
}

static void seg_free(sim_part *p, uint32_t i) {
  if (i & SIM_SEG_BIG) {
    i &= ~SIM_SEG_BIG;
    free(p->slab.big[i]);
    p->slab.big[i] = NULL;
    stack_push(&p->slab.big_free, i);
    return;
  }
  stack_push(&p->slab.free[seg_at(p, i)->units], i);
}

/* ---- ends and dials -------------------------------------------------------
 */

static uint32_t dial_alloc(sim_part *p, const char *addr) {
  uint32_t i;
  if (p->dial_free != SIM_NONE) {
    i = p->dial_free;
    p->dial_free = p->dials[i].next_free;
  } else {
    if (p->dials_len == p->dials_cap) {
      p->dials_cap = p->dials_cap ? p->dials_cap * 2 : 256;
      p->dials = sim_xrealloc(p->dials, p->dials_cap * sizeof *p->dials);
    }
    i = p->dials_len++;
  }
  sim_dial *d = &p->dials[i];
  size_t len = strlen(addr);
  if (len >= sizeof d->addr)
    len = sizeof d->addr - 1;
  memcpy(d->addr, addr, len);
  d->addr[len] = '\0';
  d->next_free = SIM_NONE;
  return i;
}

static void dial_release(sim_part *p, uint32_t i) {
  p->dials[i].next_free = p->dial_free;
  p->dial_free = i;
}

static uint32_t end_alloc(sim_part *p, uint32_t node) {
  uint32_t i, gen = 0;
  if (p->end_free != SIM_NONE) {
    i = p->end_free;
    p->end_free = p->ends[i].next_free;
    gen = p->ends[i].gen;
  } else {
    if (p->ends_len == p->ends_cap) {
      /* Cache-line aligned, so that an end's hot half is one line. */
      uint32_t cap = p->ends_cap ? p->ends_cap * 2 : 1024;
      sim_end *v = aligned_alloc(64, cap * sizeof *v);
      if (!v)
        sim_xmalloc(SIZE_MAX); /* reports and aborts */
      if (p->ends_len)
        memcpy(v, p->ends, p->ends_len * sizeof *v);
      free(p->ends);
      p->ends = v;
      p->ends_cap = cap;
    }
    i = p->ends_len++;
  }
  sim_end *e = &p->ends[i];
  memset(e, 0, sizeof *e);
  e->gen = gen;
  e->node = node;
  e->next_free = SIM_NONE;
  e->peer = e->peer_gen = e->peer_host = e->peer_node = SIM_NONE;
  e->dial = SIM_NONE;
  e->head = e->tail = SIM_NONE;
  p->ends_in_use++;
  return i;
}

/* Frees an end: what still waits for it meets a closed socket, and packets
 * still travelling to it find a new generation and are dropped. */
static void end_free(sim_part *p, uint32_t ei) {
  sim_end *e = &p->ends[ei];
  uint32_t si = e->head;
  while (si != SIM_NONE) {
    sim_seg *g = seg_at(p, si);
    uint32_t next = g->next;
    p->c.bytes_dropped += g->len;
    seg_free(p, si);
    si = next;
  }
  if (e->dial != SIM_NONE)
    dial_release(p, e->dial);
  e->head = e->tail = e->dial = SIM_NONE;
  e->state = SIM_END_FREE;
  e->gen++;
  e->next_free = p->end_free;
  p->end_free = ei;
  p->ends_in_use--;
}

void sim_net_init(sim_part *p) {
  p->out = sim_xcalloc(2 * (size_t)p->s->nparts, sizeof *p->out);
  p->end_free = p->dial_free = SIM_NONE;
}

void sim_net_free(sim_part *p) {
  for (uint32_t i = 0; i < p->slab.nchunks; i++)
    free(p->slab.chunks[i]);
  for (size_t k = 0; k < SIM_SLAB_CLASSES; k++)
    free(p->slab.free[k].v);
  free(p->slab.chunks);
  for (uint32_t i = 0; i < p->slab.nbig; i++)
    free(p->slab.big[i]);
  free(p->slab.big);
  free(p->slab.big_free.v);
  free(p->ends);
  free(p->dials);
  free(p->stalled);
  free(p->scratch);
  for (uint32_t i = 0; i < 2 * p->s->nparts; i++)
    free(p->out[i].buf);
  free(p->out);
}

/* ---- a node's ends ----------------------------------------------------------
 */

static void node_add_conn(sim *s, uint32_t n, uint32_t link, uint32_t ei) {
  sim_node *nd = &s->nodes[n];
  if (nd->nconns == nd->conns_cap) {
    nd->conns_cap = (uint16_t)(nd->conns_cap ? nd->conns_cap * 2 : 8);
    nd->conns = sim_xrealloc(nd->conns, nd->conns_cap * sizeof *nd->conns);
  }
  sim_nconn *c = &nd->conns[nd->nconns++];
  c->link = link;
  c->end = ei;
}

static void node_remove_conn(sim *s, uint32_t n, uint32_t link) {
  sim_node *nd = &s->nodes[n];
  for (uint16_t i = 0; i < nd->nconns; i++) {
    if (nd->conns[i].link == link) {
      nd->conns[i] = nd->conns[--nd->nconns];
      return;
    }
  }
}

uint32_t sim_net_find(const sim_part *p, uint32_t n, uint32_t link) {
  const sim_node *nd = &p->s->nodes[n];
  for (uint16_t i = 0; i < nd->nconns; i++)
    if (nd->conns[i].link == link)
      return nd->conns[i].end;
  return SIM_NONE;
}

int sim_net_peer_up(const sim *s, const sim_end *e) {
  if (e->peer == SIM_NONE)
    return 0;
  const sim_part *q = &s->parts[e->peer_part];
  if (e->peer >= q->ends_len)
    return 0;
  const sim_end *f = &q->ends[e->peer];
  return f->gen == e->peer_gen && f->state == SIM_END_OPEN && f->up;
}

/* ---- sending ------------------------------------------------------------- */

uint32_t sim_net_draw_latency(sim_part *p) {
  uint32_t lo = p->s->o->lat_min_ms, hi = p->s->o->lat_max_ms;
  return lo + (uint32_t)sim_rng_below(&p->rng, (uint64_t)(hi - lo) + 1);
}

static int side_of_node(const sim *s, uint32_t n) {
  return s->hosts[s->nodes[n].host].side;
}

static int crosses_cut(const sim *s, const sim_end *e) {
  return side_of_node(s, e->node) != s->hosts[e->peer_host].side;
}

/* When a packet sent now from end `e` arrives: latency, jitter, and for each
 * lost transmission an RTO that doubles; never before the one ahead of it. */
static uint64_t next_arrival(sim_part *p, sim_end *e) {
  uint64_t t = p->now + e->lat;
  t += sim_rng_below(&p->rng, (uint64_t)p->s->o->jitter_ms + 1);
  if (p->s->loss > 0) {
    uint64_t rto = 200;
    while (sim_rng_unit(&p->rng) < p->s->loss) {
      t += rto;
      if (rto < 60000)
        rto *= 2;
    }
  }
  if (t < e->last_arrival)
    t = e->last_arrival;
  e->last_arrival = t;
  return t;
}

/* Sends a packet to end (or, for a SYN, host) `dst` of partition `to`. */
static void post(sim_part *p, uint32_t to, uint32_t dst, uint32_t dst_gen,
                 uint64_t arrival, int kind, const uint32_t arg[5],
                 const uint8_t *data, uint32_t len) {
  sim_seg h;
  memset(&h, 0, sizeof h);
  h.arrival = arrival;
  h.dst = dst;
  h.dst_gen = dst_gen;
  h.len = len;
  if (arg) {
    h.a = arg[0];
    h.b = arg[1];
    h.c = arg[2];
    h.d = arg[3];
    h.e = arg[4];
  }
  h.kind = (uint8_t)kind;
  if (to == p->idx) {
    uint32_t si = seg_alloc(p, len);
    sim_seg *g = seg_at(p, si);
    h.units = seg_units(len);
    h.next = SIM_NONE;
    *g = h;
    if (len)
      memcpy(seg_data(g), data, len);
    sim_evq_push(&p->q, arrival, SIM_EV_PACKET, si, dst);
    return;
  }
  sim_outbox *ob = &p->out[to * 2 + (p->s->window & 1)];
  size_t need = REC_BYTES(len);
  if (ob->len + need > ob->cap) {
    size_t cap = ob->cap ? ob->cap * 2 : OUTBOX_MIN;
    while (cap < ob->len + need)
      cap *= 2;
    ob->buf = sim_xrealloc(ob->buf, cap);
    ob->cap = cap;
  }
  memcpy(ob->buf + ob->len, &h, sizeof h);
  if (len)
    memcpy(ob->buf + ob->len + sizeof h, data, len);
  ob->len += need;
}

/* A packet from end `ei` to its peer. */
static void post_peer(sim_part *p, uint32_t ei, int kind, uint32_t a,
                      const uint8_t *data, uint32_t len) {
  sim_end *e = &p->ends[ei];
  uint64_t at = next_arrival(p, e);
  uint32_t arg[5] = {a, 0, 0, 0, 0};
  post(p, e->peer_part, e->peer, e->peer_gen, at, kind, arg, data, len);
}

/* Empties an outbox just read. Outboxes grow to the largest burst they
 * carried (the members tables passed while nodes join: a quarter of a
 * gigabyte for 10,000 nodes); one that has held less than a quarter of its
 * room for OUTBOX_WINDOWS windows is freed, and grows again as needed. The
 * reader may: in this window the writer fills the other parity's. */
static void release_outbox(sim_outbox *ob) {
  if (ob->len > ob->peak)
    ob->peak = ob->len;
  ob->len = 0;
  if (++ob->reads < OUTBOX_WINDOWS)
    return;
  if (ob->cap > OUTBOX_MIN && ob->peak < ob->cap / 4) {
    free(ob->buf);
    ob->buf = NULL;
    ob->cap = 0;
  }
  ob->reads = 0;
  ob->peak = 0;
}

void sim_net_merge(sim_part *p) {
  sim *s = p->s;
  for (uint32_t src = 0; src < s->nparts; src++) {
    if (src == p->idx)
      continue;
    sim_outbox *ob = &s->parts[src].out[p->idx * 2 + ((s->window + 1) & 1)];
    size_t off = 0;
    while (off < ob->len) {
      sim_seg h;
      memcpy(&h, ob->buf + off, sizeof h);
      uint32_t si = seg_alloc(p, h.len);
      sim_seg *g = seg_at(p, si);
      h.units = seg_units(h.len);
      h.next = SIM_NONE;
      *g = h;
      if (h.len)
        memcpy(seg_data(g), ob->buf + off + sizeof h, h.len);
      sim_evq_push(&p->q, h.arrival, SIM_EV_PACKET, si, h.dst);
      off += REC_BYTES(h.len);
    }
    release_outbox(ob);
  }
}

/* ---- outputs of a node ----------------------------------------------------
 */

void sim_net_send(sim_part *p, uint32_t n, uint32_t link, const uint8_t *data,
                  size_t len) {
  uint32_t ei = sim_net_find(p, n, link);
  if (ei == SIM_NONE) {
    p->c.sim_errors++;
    return;
  }
  sim_end *e = &p->ends[ei];
  if (e->peer == SIM_NONE || e->peer_fin) {
    p->c.bytes_dropped += len; /* the peer is gone: TCP would reset */
    return;
  }
  /* Each segment draws its own arrival (jitter, losses), in order; a
   * packet of up to SIM_BURST bytes carries several and arrives with the
   * last of them, so the receiver reads them in one go, as a socket read
   * would once they are all in. */
  while (len) {
    uint32_t k = len < SIM_BURST ? (uint32_t)len : SIM_BURST;
    uint64_t at = 0;
    for (uint32_t off = 0; off < k; off += SIM_MSS)
      at = next_arrival(p, e);
    uint32_t arg[5] = {0, 0, 0, 0, 0};
    post(p, e->peer_part, e->peer, e->peer_gen, at, SIM_PK_DATA, arg, data, k);
    data += k;
    len -= k;
  }
}

void sim_net_close(sim_part *p, uint32_t n, uint32_t link) {
  uint32_t ei = sim_net_find(p, n, link);
  if (ei == SIM_NONE) {
    p->c.sim_errors++;
    return;
  }
  sim_end *e = &p->ends[ei];
  if (e->up) { /* the core reports NEIGHBOR_DOWN first; be safe anyway */
    e->up = 0;
    p->s->nodes[n].nbrs--;
  }
  node_remove_conn(p->s, n, link);
  if (e->peer != SIM_NONE && !e->peer_fin)
    post_peer(p, ei, SIM_PK_FIN, 0, NULL, 0);
  end_free(p, ei);
}

void sim_net_dial(sim_part *p, uint32_t n, const char *addr) {
  sim *s = p->s;
  p->c.dials++;
  uint32_t h = sim_addr_host(s, addr);
  uint32_t ei = end_alloc(p, n);
  sim_end *e = &p->ends[ei];
  e->state = SIM_END_CONNECTING;
  e->lat = sim_net_draw_latency(p);
  e->peer_host = h;
  e->dial = dial_alloc(p, addr);
  /* Nobody at that address, or behind the cut: the SYN goes unanswered. */
  if (h == SIM_NONE || (s->cut && s->hosts[h].side != side_of_node(s, n))) {
    sim_evq_push(&p->q, p->now + s->o->connect_timeout_ms, SIM_EV_DIAL_FAIL, ei,
                 e->gen);
    return;
  }
  e->peer_part = s->hosts[h].part;
  uint32_t arg[5] = {ei, e->gen, s->nodes[n].host, e->lat, n};
  post(p, s->hosts[h].part, h, 0, p->now + e->lat, SIM_PK_SYN, arg, NULL, 0);
}

static void dial_failed(sim_part *p, uint32_t ei) {
  sim *s = p->s;
  sim_end *e = &p->ends[ei];
  if (e->state != SIM_END_CONNECTING)
    return;
  uint32_t n = e->node;
  char addr[SIM_ADDR_MAX];
  memcpy(addr, p->dials[e->dial].addr, sizeof addr);
  end_free(p, ei); /* before any call that may dial again */
  if (sim_node_alive(s, n)) {
    p->c.dial_failures++;
    pm_node_dial_failed(s->nodes[n].core, p->now, addr);
    sim_pump(p, n);
  }
}

void sim_net_on_dial_fail(sim_part *p, uint32_t ei, uint32_t gen) {
  if (ei < p->ends_len && p->ends[ei].gen == gen)
    dial_failed(p, ei);
}

/* The SYN reached host `h`: its node accepts the connection now, or the
 * dialler learns it failed. */
static void on_syn(sim_part *p, uint32_t si) {
  sim *s = p->s;
  sim_seg g = *seg_at(p, si);
  seg_free(p, si);
  uint32_t h = g.dst;
  uint32_t dend = g.a, dgen = g.b, dhost = g.c, lat = g.d, dnode = g.e;
  uint32_t dpart = s->hosts[dhost].part;
  uint32_t t = s->hosts[h].node;
  if (t == SIM_NONE || !sim_node_alive(s, t)) {
    /* The host answers the SYN with a reset: one more latency back. */
    post(p, dpart, dend, dgen, p->now + lat, SIM_PK_DIALFAIL, NULL, NULL, 0);
    return;
  }
  if (s->cut && s->hosts[h].side != s->hosts[dhost].side) {
    /* The cut came up while the SYN travelled: the dial times out. */
    uint64_t at = g.arrival - lat + s->o->connect_timeout_ms;
    if (at < p->now + lat)
      at = p->now + lat;
    post(p, dpart, dend, dgen, at, SIM_PK_DIALFAIL, NULL, NULL, 0);
    return;
  }
  uint32_t ei = end_alloc(p, t);
  sim_end *e = &p->ends[ei];
  e->peer = dend;
  e->peer_gen = dgen;
  e->peer_part = (uint8_t)dpart;
  e->peer_host = dhost;
  e->peer_node = dnode;
  e->lat = lat;
  char ip[32];
  sim_host_ip(dhost, ip);
  uint32_t lid = 0;
  int rc = pm_node_link_open(s->nodes[t].core, p->now, 0, ip, NULL, &lid);
  if (rc) {
    /* The target takes no more links: it closes the connection at once. */
    p->c.open_refused++;
    post_peer(p, ei, SIM_PK_SYNACK, SIM_NONE, NULL, 0);
    post_peer(p, ei, SIM_PK_FIN, 0, NULL, 0);
    end_free(p, ei);
    sim_pump(p, t);
    return;
  }
  e->link = lid;
  e->state = SIM_END_OPEN;
  node_add_conn(s, t, lid, ei);
  uint64_t at = next_arrival(p, e);
  uint32_t arg[5] = {ei, e->gen, t, 0, 0};
  post(p, dpart, dend, dgen, at, SIM_PK_SYNACK, arg, NULL, 0);
  sim_pump(p, t); /* its Hello follows the SYN-ACK */
}

/* The SYN-ACK reached the dialler: its core gets the link. `peer` is
 * SIM_NONE when the target refused it (a FIN follows). */
static void on_synack(sim_part *p, uint32_t ei, uint32_t peer,
                      uint32_t peer_gen, uint32_t peer_node) {
  sim *s = p->s;
  sim_end *e = &p->ends[ei];
  if (e->state != SIM_END_CONNECTING) {
    p->c.sim_errors++;
    return;
  }
  e->peer = peer;
  e->peer_gen = peer_gen;
  e->peer_node = peer_node;
  uint32_t n = e->node;
  if (!sim_node_alive(s, n)) {
    /* The dialler is gone: its kernel resets the connection. */
    if (peer != SIM_NONE)
      post_peer(p, ei, SIM_PK_FIN, 0, NULL, 0);
    end_free(p, ei);
    return;
  }
  char ip[32];
  sim_host_ip(e->peer_host, ip);
  uint32_t lid = 0;
  int rc = pm_node_link_open(s->nodes[n].core, p->now, 1, ip,
                             p->dials[e->dial].addr, &lid);
  e = &p->ends[ei];
  if (rc) {
    p->c.open_refused++;
    if (peer != SIM_NONE)
      post_peer(p, ei, SIM_PK_FIN, 0, NULL, 0);
    end_free(p, ei);
    sim_pump(p, n);
    return;
  }
  dial_release(p, e->dial);
  e->dial = SIM_NONE;
  e->link = lid;
  e->state = SIM_END_OPEN;
  node_add_conn(s, n, lid, ei);
  sim_pump(p, n);
}

/* ---- delivery -------------------------------------------------------------
 */

static int debug_end(const sim_part *p, const sim_end *e) {
  const sim_opts *o = p->s->o;
  if (o->verbose > 1)
    return 1;
  if (o->trace_node == SIM_NONE)
    return 0;
  return e->node == o->trace_node || e->peer_node == o->trace_node;
}

/* Packet `si` arrived at end `ei`, which still exists: its effect. */
static void receive(sim_part *p, uint32_t ei, uint32_t si) {
  sim *s = p->s;
  sim_end *e = &p->ends[ei];
  sim_seg *g = seg_at(p, si);
  sim_trace(p, (uint64_t)g->len << 8 | g->kind);
  if (g->kind == SIM_PK_DATA && e->state == SIM_END_OPEN) {
    uint32_t n = e->node, len = g->len;
    const uint8_t *data = seg_data(g);
    if (debug_end(p, e))
      sim_debug_segment(p, e, data, len);
    sim_count_frames(p, e, data, len);
    /* A protocol error comes back as a close output and a LINK_ERROR
     * event, both drained below. */
    (void)pm_node_link_recv(s->nodes[n].core, p->now, e->link, data, len);
    seg_free(p, si);
    if (s->o->send_queue_limit && e->peer != SIM_NONE && !e->peer_fin)
      post_peer(p, ei, SIM_PK_DRAIN, len, NULL, 0); /* the ACK */
    sim_pump(p, n);
    return;
  }
  sim_seg pk = *g;
  seg_free(p, si);
  switch (pk.kind) {
  case SIM_PK_FIN:
    e->peer_fin = 1;
    if (e->state == SIM_END_OPEN) {
      /* The core answers with a close output, which frees the end. */
      pm_node_link_closed(s->nodes[e->node].core, p->now, e->link);
      sim_pump(p, e->node);
    } else {
      end_free(p, ei);
    }
    break;
  case SIM_PK_SYNACK:
    on_synack(p, ei, pk.a, pk.b, pk.c);
    break;
  case SIM_PK_DIALFAIL:
    dial_failed(p, ei);
    break;
  case SIM_PK_DRAIN:
    if (e->state == SIM_END_OPEN) {
      pm_node_link_drained(s->nodes[e->node].core, p->now, e->link, pk.a);
      sim_pump(p, e->node);
    }
    break;
  default: /* data for an end that is not open */
    p->c.bytes_dropped += pk.len;
    break;
  }
}

/* The cut holds packet `si` at end `ei`, behind any it holds already. */
static void hold(sim_part *p, uint32_t ei, uint32_t si) {
  sim_end *e = &p->ends[ei];
  seg_at(p, si)->next = SIM_NONE;
  if (e->tail == SIM_NONE)
    e->head = si;
  else
    seg_at(p, e->tail)->next = si;
  e->tail = si;
  if (e->stalled)
    return;
  e->stalled = 1;
  if (p->nstalled + 2 > p->stalled_cap) {
    p->stalled_cap = p->stalled_cap ? p->stalled_cap * 2 : 256;
    p->stalled = sim_xrealloc(p->stalled, p->stalled_cap * sizeof *p->stalled);
  }
  p->stalled[p->nstalled++] = ei;
  p->stalled[p->nstalled++] = e->gen;
}

void sim_net_on_packet(sim_part *p, uint32_t si, uint32_t dst) {
  sim *s = p->s;
  /* The event names the end too: its record and the packet load at once,
   * rather than one after the other. */
  uint32_t egen = dst < p->ends_len ? p->ends[dst].gen : 0;
  sim_seg *g = seg_at(p, si);
  if (g->kind == SIM_PK_SYN) {
    on_syn(p, si);
    return;
  }
  uint32_t ei = dst;
  if (ei >= p->ends_len || egen != g->dst_gen ||
      p->ends[ei].state == SIM_END_FREE) {
    p->c.bytes_dropped += g->len; /* the end is gone */
    seg_free(p, si);
    return;
  }
  sim_end *e = &p->ends[ei];
  if (g->kind != SIM_PK_DIALFAIL &&
      (e->stalled || (s->cut && crosses_cut(s, e)))) {
    hold(p, ei, si);
    return;
  }
  receive(p, ei, si);
}

void sim_net_prefetch_packet(const sim_part *p, uint32_t si) {
  const char *g = (const char *)seg_at(p, si);
  __builtin_prefetch(g);
  __builtin_prefetch(g + 64);
  __builtin_prefetch(g + 128);
}

const uint8_t *sim_net_packet_data(const sim_part *p, uint32_t si,
                                   size_t *len) {
  sim_seg *g = seg_at(p, si);
  *len = g->kind == SIM_PK_DATA ? g->len : 0;
  return *len ? seg_data(g) : NULL;
}

void sim_net_on_release(sim_part *p, uint32_t ei, uint32_t gen) {
  sim *s = p->s;
  if (ei >= p->ends_len || p->ends[ei].gen != gen)
    return; /* the end was freed, and what it held with it */
  for (;;) {
    sim_end *e = &p->ends[ei];
    if (e->head == SIM_NONE) {
      e->stalled = 0;
      return;
    }
    if (s->cut && crosses_cut(s, e)) { /* cut again: hold on */
      e->stalled = 0;
      uint32_t si = e->head;
      e->head = e->tail = SIM_NONE;
      while (si != SIM_NONE) {
        uint32_t next = seg_at(p, si)->next;
        hold(p, ei, si);
        si = next;
      }
      return;
    }
    uint32_t si = e->head;
    e->head = seg_at(p, si)->next;
    if (e->head == SIM_NONE)
      e->tail = SIM_NONE;
    receive(p, ei, si);
    if (p->ends[ei].gen != gen)
      return;
  }
}

/* ---- faults ----------------------------------------------------------------
 */

void sim_net_crash(sim_part *p, uint32_t n) {
  sim_node *nd = &p->s->nodes[n];
  while (nd->nconns) {
    uint32_t ei = nd->conns[--nd->nconns].end;
    sim_end *e = &p->ends[ei];
    e->up = 0;
    /* Bytes already on the wire still arrive; then the peer's kernel sees
     * a reset. What was coming finds no one. */
    if (e->peer != SIM_NONE && !e->peer_fin)
      post_peer(p, ei, SIM_PK_FIN, 0, NULL, 0);
    end_free(p, ei);
  }
}

void sim_net_cut_end(sim_part *p) {
  for (uint32_t i = 0; i + 1 < p->nstalled; i += 2) {
    uint32_t ei = p->stalled[i], gen = p->stalled[i + 1];
    sim_end *e = &p->ends[ei];
    if (e->gen != gen || !e->stalled)
      continue;
    /* TCP retransmits what the cut held: it arrives one latency later.
     * Until then, packets arriving for the end still queue behind. */
    sim_evq_push(&p->q, p->now + e->lat, SIM_EV_RELEASE, ei, gen);
  }
  p->nstalled = 0;
}
