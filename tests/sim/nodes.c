/* Node lifecycle and the glue around each pm_node core.
 *
 * After every call into a core, sim_pump drains its events (deliveries and
 * neighbour bookkeeping), then its outputs (bytes, closes, dials, resolves,
 * handed to the network model or the resolver), then keeps one timer event
 * at the core's deadline. Timer events carry a generation: a timer moved
 * earlier makes the old event stale, and a stale event is ignored.
 *
 * The resolver knows the registered nodes (sim.live). A node registers when
 * it starts, but one started by a partition during a window only at the end
 * of that window: the list is shared, and changes only between windows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static uint64_t node_random(void *ud) {
  return sim_splitmix((uint64_t *)ud);
}

uint32_t sim_host_add(sim *s) {
  if (s->nhosts == s->hosts_cap) {
    s->hosts_cap = s->hosts_cap ? s->hosts_cap * 2 : 1024;
    s->hosts = sim_xrealloc(s->hosts, s->hosts_cap * sizeof *s->hosts);
  }
  uint32_t h = s->nhosts++;
  sim_host *ho = &s->hosts[h];
  for (int i = 0; i < PM_NODE_ID_LEN; i += 8) {
    uint64_t v = sim_rng_next(&s->rng);
    memcpy(ho->id + i, &v, 8);
  }
  ho->node = SIM_NONE;
  ho->planned_end = SIM_NEVER;
  ho->side = (uint8_t)(h < s->o->nodes ? h >= s->o->nodes / 2 : h % 2);
  /* Initial hosts in contiguous blocks (their nodes stay apart in memory),
   * joiners in turn. */
  ho->part = (uint8_t)(h < s->o->nodes ? (uint64_t)h * s->nparts / s->o->nodes
                                       : h % s->nparts);
  return h;
}

/* Re-arms the node's timer at its deadline, but not before `floor`. */
static void arm(sim_part *p, uint32_t n, uint64_t floor) {
  sim_node *nd = &p->s->nodes[n];
  uint64_t d = pm_node_deadline(nd->core);
  if (d == PM_DEADLINE_NONE)
    return;
  if (d < floor) {
    if (floor > p->now) {
      /* handle_timeout left the deadline in the past: the core would wake
       * a real runtime again at once (runtime/io waits 1 ms). */
      p->c.timer_spins++;
      if (p->s->o->verbose > 1) {
        pm_node_stats st;
        pm_node_get_stats(nd->core, &st);
        fprintf(stderr,
                "[%llu] node %u: deadline %llu not after now; %u "
                "neighbours, %u links\n",
                (unsigned long long)p->now, n, (unsigned long long)d,
                st.neighbors, st.links);
      }
      floor = p->now + p->s->o->min_timer_ms;
    }
    d = floor;
  }
  if (d < nd->timer_at) {
    nd->timer_at = d;
    nd->timer_gen++;
    sim_evq_push(&p->q, d, SIM_EV_TIMER, n, nd->timer_gen);
  }
}

static void remember_neighbor(sim_node *nd, uint32_t host) {
  for (uint8_t i = 0; i < nd->nprev; i++)
    if (nd->prev[i] == host)
      return;
  nd->prev[nd->prev_pos] = host;
  nd->prev_pos = (uint8_t)((nd->prev_pos + 1) % SIM_PREV_NEIGHBORS);
  if (nd->nprev < SIM_PREV_NEIGHBORS)
    nd->nprev++;
}

static void on_event(sim_part *p, uint32_t n, const pm_event *ev) {
  sim *s = p->s;
  sim_node *nd = &s->nodes[n];
  sim_trace(p, (uint64_t)ev->kind << 32 | ev->link_id);
  switch (ev->kind) {
  case PM_EV_MESSAGE:
    if (n == s->o->trace_node)
      fprintf(stderr, "[%llu] node %u: message delivered, %u hops%s\n",
              (unsigned long long)p->now, n, ev->hops, ev->own ? ", own" : "");
    sim_on_message(p, n, ev);
    break;
  case PM_EV_NEIGHBOR_UP:
  case PM_EV_NEIGHBOR_DOWN: {
    uint32_t ei = sim_net_find(p, n, ev->link_id);
    if (ei == SIM_NONE) {
      p->c.sim_errors++;
      break;
    }
    sim_end *e = &p->ends[ei];
    if (s->o->verbose > 1 || n == s->o->trace_node)
      fprintf(stderr, "[%llu] node %u: neighbour %s host %u (end %u.%u, %s)\n",
              (unsigned long long)p->now, n,
              ev->kind == PM_EV_NEIGHBOR_UP ? "up" : "down", e->peer_host,
              p->idx, ei, pm_close_reason_name(ev->reason));
    if (ev->kind == PM_EV_NEIGHBOR_UP && !e->up) {
      e->up = 1;
      nd->nbrs++;
      if (nd->nbrs > p->c.max_neighbors_seen)
        p->c.max_neighbors_seen = nd->nbrs;
      remember_neighbor(nd, e->peer_host);
    } else if (ev->kind == PM_EV_NEIGHBOR_DOWN && e->up) {
      e->up = 0;
      nd->nbrs--;
    }
    break;
  }
  case PM_EV_LINK_ERROR:
    p->c.link_errors++;
    if (s->o->verbose)
      fprintf(stderr, "[%llu] node %u link %u error %s (%s)\n",
              (unsigned long long)p->now, n, ev->link_id, pm_errname(ev->error),
              ev->addr);
    break;
  default:
    break;
  }
}

static void pump_floor(sim_part *p, uint32_t n, uint64_t floor) {
  const sim_node *nd = &p->s->nodes[n];
  pm_node *core = nd->core;
  /* The node is likely to send on its links: fetch their ends now, while
   * the core hands over its events. */
  for (uint16_t i = 0; i < nd->nconns; i++)
    __builtin_prefetch(&p->ends[nd->conns[i].end]);
  pm_event ev;
  while (pm_node_next_event(core, &ev))
    on_event(p, n, &ev);
  pm_output o;
  while (pm_node_next_output(core, &o)) {
    switch (o.kind) {
    case PM_OUT_SEND:
      sim_net_send(p, n, o.link_id, o.data, o.len);
      break;
    case PM_OUT_CLOSE:
      sim_net_close(p, n, o.link_id);
      break;
    case PM_OUT_DIAL:
      sim_net_dial(p, n, o.addr);
      break;
    case PM_OUT_RESOLVE:
      sim_evq_push(&p->q, p->now + 2 * (uint64_t)sim_net_draw_latency(p),
                   SIM_EV_RESOLVE, n, 0);
      break;
    default:
      p->c.sim_errors++;
      break;
    }
  }
  arm(p, n, floor);
}

void sim_pump(sim_part *p, uint32_t n) {
  pump_floor(p, n, p->now);
}

void sim_on_timer(sim_part *p, uint32_t n, uint32_t gen) {
  sim_node *nd = &p->s->nodes[n];
  if (!nd->core || gen != nd->timer_gen)
    return; /* stale */
  nd->timer_at = SIM_NEVER;
  uint64_t d = pm_node_deadline(nd->core);
  if (d == PM_DEADLINE_NONE)
    return;
  if (d > p->now) {
    arm(p, n, p->now); /* the deadline moved later meanwhile */
    return;
  }
  pm_node_handle_timeout(nd->core, p->now);
  pump_floor(p, n, p->now + 1);
}

void sim_on_resolve(sim_part *p, uint32_t n) {
  sim *s = p->s;
  if (!sim_node_alive(s, n))
    return;
  p->c.resolves++;
  uint32_t picks[SIM_RESOLVE_MAX];
  uint32_t np = 0;
  uint8_t side = s->hosts[s->nodes[n].host].side;
  /* Up to 8 random registered nodes; during a partition each side's
   * resolver replica knows only its own side. The list is as it was at the
   * start of the window. */
  for (int tries = 0; np < SIM_RESOLVE_MAX && tries < 64 && s->nlive; tries++) {
    uint32_t m = s->live[sim_rng_below(&p->rng, s->nlive)];
    if (m == n || (s->cut && s->hosts[s->nodes[m].host].side != side))
      continue;
    int dup = 0;
    for (uint32_t i = 0; i < np; i++)
      dup |= picks[i] == m;
    if (!dup)
      picks[np++] = m;
  }
  for (uint32_t i = 0; i < np; i++) {
    char addr[32];
    uint32_t h = s->nodes[picks[i]].host;
    sim_host_addr(h, addr);
    /* A full candidate table keeps what it has; nothing to do about it. */
    if (pm_node_add_peer(s->nodes[n].core, p->now, addr, s->hosts[h].id, 0))
      p->c.add_peer_refused++;
    sim_pump(p, n);
  }
}

/* The simulator's stand-in signature: each byte mixes the message ID and
 * the author's ID, so a message altered, or attributed to another author,
 * fails verification as it would with Ed25519. It is not a MAC (anyone can
 * compute it): the simulator measures the protocol, not the cryptography,
 * and a keyed hash per message was a few percent of a large run.
 * tests/unit/test_signer.h is the one the unit tests and fuzzers use. */
static void sim_signature(const uint8_t author[PM_NODE_ID_LEN],
                          const uint8_t id[PM_MSG_ID_LEN],
                          uint8_t sig[PM_SIG_BYTES]) {
  for (int i = 0; i < PM_SIG_BYTES; i++)
    sig[i] = (uint8_t)(id[i % PM_MSG_ID_LEN] ^
                       author[(i * 7 + 3) % PM_NODE_ID_LEN] ^ (i * 0x9d));
}

static void sim_sign(void *ud, const uint8_t author[PM_NODE_ID_LEN],
                     const uint8_t id[PM_MSG_ID_LEN],
                     uint8_t sig[PM_SIG_BYTES]) {
  (void)ud;
  sim_signature(author, id, sig);
}

static int sim_verify(void *ud, const uint8_t author[PM_NODE_ID_LEN],
                      const uint8_t id[PM_MSG_ID_LEN],
                      const uint8_t sig[PM_SIG_BYTES]) {
  (void)ud;
  uint8_t want[PM_SIG_BYTES];
  sim_signature(author, id, want);
  return memcmp(want, sig, PM_SIG_BYTES) == 0;
}

void sim_node_start(sim_part *p, uint32_t h, uint32_t n, int restart) {
  sim *s = p->s;
  if (n >= s->nodes_cap) {
    fprintf(stderr, "peermesh-sim: node table full (%u)\n", s->nodes_cap);
    abort();
  }
  sim_node *nd = &s->nodes[n];
  memset(nd, 0, sizeof *nd);
  nd->host = h;
  nd->start_ms = p->now;
  nd->end_ms = s->hosts[h].planned_end;
  nd->timer_at = SIM_NEVER;
  nd->live_pos = SIM_NONE;
  uint64_t st = s->o->seed ^ (0xA24BAED4963EE407ull * ((uint64_t)n + 1));
  nd->rng = sim_splitmix(&st);
  uint32_t prev = s->hosts[h].node;
  s->hosts[h].node = n;

  pm_node_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.mesh = SIM_MESH;
  memcpy(cfg.node_id, s->hosts[h].id, PM_NODE_ID_LEN);
  cfg.listen_port = SIM_LISTEN_PORT;
  cfg.min_neighbors = s->o->min_n;
  cfg.ideal_neighbors = s->o->ideal_n;
  cfg.max_neighbors = s->o->max_n;
  cfg.cache_bytes = s->o->cache_bytes;
  cfg.send_queue_limit = s->o->send_queue_limit;
  cfg.random = node_random;
  cfg.random_ud = &nd->rng;
  /* Made-up IDs, not Ed25519 keys: messages carry a stand-in signature
   * that still ties each to its author and its ID (sim_sign). */
  static const pm_signer signer = {sim_sign, sim_verify, NULL};
  cfg.signer = &signer;
  cfg.ids = p->ids;
  cfg.frames = p->frames;
  /* A restarted node counts on from above its earlier incarnation. */
  cfg.first_seq = p->now * 1000 + 1;
  int rc = pm_node_new(&cfg, &nd->core);
  if (rc) {
    fprintf(stderr, "peermesh-sim: pm_node_new: %s\n", pm_strerror(rc));
    exit(3);
  }
  /* Registered with the resolver at the end of the window (or of the
   * timeline event). */
  if (p->nstarted == p->started_cap) {
    p->started_cap = p->started_cap ? p->started_cap * 2 : 256;
    p->started = sim_xrealloc(p->started, p->started_cap * sizeof *p->started);
  }
  p->started[p->nstarted++] = n;

  if (restart && prev != SIM_NONE) {
    /* What the known-peers table would give: the last neighbours. */
    const sim_node *old = &s->nodes[prev];
    for (uint8_t i = 0; i < old->nprev; i++) {
      char addr[32];
      sim_host_addr(old->prev[i], addr);
      if (pm_node_add_peer(nd->core, p->now, addr, s->hosts[old->prev[i]].id,
                           0))
        p->c.add_peer_refused++;
      sim_pump(p, n);
    }
  }
  pm_node_handle_timeout(nd->core, p->now); /* first maintenance round */
  sim_pump(p, n);
}

void sim_register_started(sim *s) {
  for (uint32_t i = 0; i < s->nparts; i++) {
    sim_part *p = &s->parts[i];
    for (uint32_t k = 0; k < p->nstarted; k++) {
      uint32_t n = p->started[k];
      if (!s->nodes[n].core || s->nodes[n].live_pos != SIM_NONE)
        continue;
      s->nodes[n].live_pos = s->nlive;
      s->live[s->nlive++] = n;
    }
    p->nstarted = 0;
  }
}

static void node_gone(sim_part *p, uint32_t n) {
  sim *s = p->s;
  sim_node *nd = &s->nodes[n];
  sim_net_crash(p, n);
  pm_node_free(nd->core);
  nd->core = NULL;
  if (nd->live_pos != SIM_NONE) {
    uint32_t pos = nd->live_pos, last = s->live[--s->nlive];
    s->live[pos] = last;
    s->nodes[last].live_pos = pos;
    nd->live_pos = SIM_NONE;
  }
  nd->timer_at = SIM_NEVER;
  nd->timer_gen++;
  free(nd->conns);
  nd->conns = NULL;
  nd->nconns = nd->conns_cap = 0;
  nd->nbrs = 0;
}

void sim_node_crash(sim_part *p, uint32_t n) {
  if (sim_node_alive(p->s, n))
    node_gone(p, n);
}

void sim_node_leave(sim_part *p, uint32_t n) {
  if (!sim_node_alive(p->s, n))
    return;
  pm_node_leave(p->s->nodes[n].core, p->now);
  sim_pump(p, n);  /* Disconnects and closes go out */
  node_gone(p, n); /* links the core kept, if any, are reset */
}

void sim_nodes_free(sim *s) {
  for (uint32_t n = 0; n < s->nnodes; n++) {
    pm_node_free(s->nodes[n].core);
    free(s->nodes[n].conns);
  }
  free(s->nodes);
  free(s->hosts);
  free(s->live);
  free(s->delivered);
  free(s->uf);
}
