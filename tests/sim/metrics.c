/* What a run measures, and the report.
 *
 * A message must reach every node that was running from its send time until
 * window_ms after it (the sender excepted); those are its expected
 * deliveries, counted when it is sent (churn is planned in advance, so
 * every node's end is known then). A delivery is a node's first
 * PM_EV_MESSAGE with own = 0 for the message's ID; a second one is a
 * duplicate delivery, a bug in the core. Frames are counted by reading the
 * 6-byte headers in the byte streams the network delivers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h" /* PM_FRAME_FLOOD, PM_FRAME_HEADER */
#include "sim.h"

#define LAT_BUCKETS 600001 /* ms; later deliveries land in the last one */
#define HOP_BUCKETS 65537

void sim_metrics_init(sim *s) {
  uint32_t m = s->o->messages;
  s->msgs = sim_xcalloc((size_t)m + 1, sizeof *s->msgs);
  uint32_t slots = 16;
  while (slots < 2 * m)
    slots *= 2;
  s->msg_slots = sim_xcalloc(slots, sizeof *s->msg_slots);
  s->msg_mask = slots - 1;
  for (uint32_t i = 0; i < s->nparts; i++) {
    sim_part *p = &s->parts[i];
    p->c.lat_len = LAT_BUCKETS;
    p->c.lat_hist = sim_xcalloc(LAT_BUCKETS, sizeof *p->c.lat_hist);
    p->c.hop_len = HOP_BUCKETS;
    p->c.hop_hist = sim_xcalloc(HOP_BUCKETS, sizeof *p->c.hop_hist);
    p->msg_delivered = sim_xcalloc((size_t)m + 1, sizeof *p->msg_delivered);
    p->msg_delivered_same =
        sim_xcalloc((size_t)m + 1, sizeof *p->msg_delivered_same);
  }
}

void sim_metrics_free(sim *s) {
  free(s->msgs);
  free(s->msg_slots);
  for (uint32_t i = 0; i < s->nparts; i++) {
    sim_part *p = &s->parts[i];
    free(p->c.lat_hist);
    free(p->c.hop_hist);
    free(p->msg_delivered);
    free(p->msg_delivered_same);
  }
}

uint64_t sim_sum_counter(const sim *s, size_t offset) {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < s->nparts; i++) {
    uint64_t v;
    memcpy(&v, (const uint8_t *)&s->parts[i].c + offset, sizeof v);
    sum += v;
  }
  return sum;
}

static uint32_t msg_delivered(const sim *s, uint32_t idx) {
  uint32_t sum = 0;
  for (uint32_t i = 0; i < s->nparts; i++)
    sum += s->parts[i].msg_delivered[idx];
  return sum;
}

static uint32_t msg_delivered_same(const sim *s, uint32_t idx) {
  uint32_t sum = 0;
  for (uint32_t i = 0; i < s->nparts; i++)
    sum += s->parts[i].msg_delivered_same[idx];
  return sum;
}

static uint32_t id_slot(const uint8_t *id) {
  uint32_t v;
  memcpy(&v, id, sizeof v); /* IDs are hashes: any 4 bytes are uniform */
  return v;
}

static uint32_t msg_find(const sim *s, const uint8_t *id) {
  for (uint32_t i = id_slot(id) & s->msg_mask;; i = (i + 1) & s->msg_mask) {
    uint32_t v = s->msg_slots[i];
    if (v == 0)
      return SIM_NONE;
    if (memcmp(s->msgs[v - 1].id, id, PM_MSG_ID_LEN) == 0)
      return v - 1;
  }
}

/* Had node `n` to receive a message sent at `at` by `sender`? */
static int must_receive(const sim *s, uint32_t n, uint64_t at,
                        uint32_t sender) {
  const sim_node *nd = &s->nodes[n];
  return n != sender && nd->start_ms <= at &&
         (nd->end_ms == SIM_NEVER || nd->end_ms >= at + s->o->window_ms);
}

void sim_msg_sent(sim *s, uint32_t sender, const uint8_t id[PM_MSG_ID_LEN]) {
  if (s->nmsgs >= s->o->messages || msg_find(s, id) != SIM_NONE) {
    s->parts[0].c.sim_errors++;
    return;
  }
  uint32_t idx = s->nmsgs++;
  sim_msg *m = &s->msgs[idx];
  memcpy(m->id, id, PM_MSG_ID_LEN);
  m->sent_at = s->now;
  m->sender = sender;
  m->during_cut = (uint8_t)s->cut;
  uint8_t side = s->hosts[s->nodes[sender].host].side;
  m->sender_side = side;
  for (uint32_t i = 0; i < s->nlive; i++) {
    uint32_t r = s->live[i];
    if (!must_receive(s, r, s->now, sender))
      continue;
    m->expected++;
    m->expected_same += s->hosts[s->nodes[r].host].side == side;
  }
  s->expected += m->expected;
  uint32_t i = id_slot(id) & s->msg_mask;
  while (s->msg_slots[i])
    i = (i + 1) & s->msg_mask;
  s->msg_slots[i] = idx + 1;
  uint64_t v;
  memcpy(&v, id, sizeof v);
  sim_trace_fold(&s->trace, v);
}

void sim_on_message(sim_part *p, uint32_t n, const pm_event *ev) {
  sim *s = p->s;
  if (ev->own)
    return;
  uint32_t idx = msg_find(s, ev->id);
  if (idx == SIM_NONE) {
    p->c.unknown_messages++;
    return;
  }
  uint64_t v;
  memcpy(&v, ev->id, sizeof v);
  sim_trace(p, v ^ ((uint64_t)n << 40) ^ ev->hops);
  uint8_t *bits = s->delivered + (size_t)n * s->bits_per_node;
  uint8_t mask = (uint8_t)(1u << (idx % 8));
  if (bits[idx / 8] & mask) {
    p->c.duplicate_deliveries++;
    if (s->o->verbose)
      fprintf(stderr, "[%llu] duplicate delivery of message %u to node %u\n",
              (unsigned long long)p->now, idx, n);
    return;
  }
  bits[idx / 8] |= mask;
  p->c.deliveries_all++;
  const sim_msg *m = &s->msgs[idx];
  if (!must_receive(s, n, m->sent_at, m->sender))
    return;
  p->msg_delivered[idx]++;
  p->msg_delivered_same[idx] +=
      s->hosts[s->nodes[n].host].side == m->sender_side;
  p->c.deliveries++;
  uint64_t lat = p->now - m->sent_at;
  p->c.lat_hist[lat < p->c.lat_len ? lat : p->c.lat_len - 1]++;
  p->c.hop_hist[ev->hops < p->c.hop_len ? ev->hops : p->c.hop_len - 1]++;
}

void sim_count_frames(sim_part *pt, sim_end *d, const uint8_t *p, size_t len) {
  while (len) {
    if (d->hdr_have < PM_FRAME_HEADER) {
      size_t k = PM_FRAME_HEADER - d->hdr_have;
      if (k > len)
        k = len;
      memcpy(d->hdr + d->hdr_have, p, k);
      d->hdr_have = (uint8_t)(d->hdr_have + k);
      p += k;
      len -= k;
      if (d->hdr_have < PM_FRAME_HEADER)
        return;
      d->frame_type = d->hdr[1];
      d->frame_len = (uint32_t)d->hdr[2] << 24 | (uint32_t)d->hdr[3] << 16 |
                     (uint32_t)d->hdr[4] << 8 | d->hdr[5];
      d->frame_left = d->frame_len;
    }
    size_t k = d->frame_left < len ? d->frame_left : len;
    if (d->frame_type == PM_FRAME_FLOOD && d->flood_id_have < PM_MSG_ID_LEN) {
      size_t c = PM_MSG_ID_LEN - d->flood_id_have;
      if (c > k)
        c = k;
      memcpy(d->flood_id + d->flood_id_have, p, c);
      d->flood_id_have = (uint8_t)(d->flood_id_have + c);
    }
    d->frame_left -= (uint32_t)k;
    p += k;
    len -= k;
    if (d->frame_left == 0) {
      /* A whole frame has arrived. Floods of the simulated messages are
       * payload copies; the core's own (presence) Floods are control. */
      uint64_t bytes = PM_FRAME_HEADER + (uint64_t)d->frame_len;
      int payload = d->frame_type == PM_FRAME_FLOOD &&
                    d->flood_id_have == PM_MSG_ID_LEN &&
                    msg_find(pt->s, d->flood_id) != SIM_NONE;
      d->flood_id_have = 0;
      pt->c.type_frames[d->frame_type & 127]++;
      pt->c.type_bytes[d->frame_type & 127] += bytes;
      if (payload) {
        pt->c.flood_frames++;
        pt->c.flood_bytes += bytes;
      } else {
        pt->c.control_frames++;
        pt->c.control_bytes += bytes;
      }
      d->hdr_have = 0;
    }
  }
}

void sim_debug_segment(sim_part *pt, const sim_end *e, const uint8_t *p,
                       size_t len) {
  const sim *s = pt->s;
  fprintf(stderr,
          "[%llu] node %u -> node %u, %zu bytes:", (unsigned long long)pt->now,
          e->peer_node, e->node, len);
  if (e->hdr_have || e->frame_left) {
    fprintf(stderr, " (continues a frame)\n");
    return;
  }
  while (len >= PM_FRAME_HEADER) {
    uint32_t flen = (uint32_t)p[2] << 24 | (uint32_t)p[3] << 16 |
                    (uint32_t)p[4] << 8 | p[5];
    size_t have = len - PM_FRAME_HEADER < flen ? len - PM_FRAME_HEADER : flen;
    const uint8_t *pl = p + PM_FRAME_HEADER;
    fprintf(stderr, " [0x%02x", p[1]);
    if (p[1] == PM_FRAME_FLOOD && have >= PM_MSG_ID_LEN) {
      uint32_t idx = msg_find(s, pl);
      fprintf(stderr, " msg %d", idx == SIM_NONE ? -1 : (int)idx);
    } else if ((p[1] == PM_FRAME_IHAVE || p[1] == PM_FRAME_GRAFT) && have) {
      for (size_t k = 0; k < pl[0] && 1 + (k + 1) * PM_MSG_ID_LEN <= have;
           k++) {
        uint32_t idx = msg_find(s, pl + 1 + k * PM_MSG_ID_LEN);
        fprintf(stderr, " %d", idx == SIM_NONE ? -1 : (int)idx);
      }
    }
    fprintf(stderr, "]");
    if (PM_FRAME_HEADER + (size_t)flen > len)
      break;
    p += PM_FRAME_HEADER + flen;
    len -= PM_FRAME_HEADER + flen;
  }
  fprintf(stderr, "\n");
}

static uint32_t uf_find(uint32_t *uf, uint32_t x) {
  while (uf[x] != x) {
    uf[x] = uf[uf[x]];
    x = uf[x];
  }
  return x;
}

uint32_t sim_components(sim *s) {
  for (uint32_t i = 0; i < s->nlive; i++)
    s->uf[s->live[i]] = s->live[i];
  for (uint32_t pi = 0; pi < s->nparts; pi++) {
    const sim_part *p = &s->parts[pi];
    for (uint32_t ei = 0; ei < p->ends_len; ei++) {
      const sim_end *e = &p->ends[ei];
      if (e->state != SIM_END_OPEN || !e->up || !sim_net_peer_up(s, e))
        continue;
      uint32_t x = e->node, y = e->peer_node;
      if (!sim_node_alive(s, x) || !sim_node_alive(s, y) ||
          s->nodes[x].live_pos == SIM_NONE || s->nodes[y].live_pos == SIM_NONE)
        continue;
      uint32_t a = uf_find(s->uf, x), b = uf_find(s->uf, y);
      if (a != b)
        s->uf[a < b ? b : a] = a < b ? a : b;
    }
  }
  uint32_t comps = 0;
  for (uint32_t i = 0; i < s->nlive; i++)
    comps += uf_find(s->uf, s->live[i]) == s->live[i];
  return comps;
}

/* ---- report ---------------------------------------------------------------
 */

static const char *const known[] = {"seed",
                                    "nodes",
                                    "messages",
                                    "delivery_ratio",
                                    "delivery_ratio_after_fault",
                                    "delivery_ratio_same_side",
                                    "duplicate_deliveries",
                                    "copies_per_delivery",
                                    "control_bytes_per_delivery",
                                    "payload_bytes_per_delivery",
                                    "p50_hops",
                                    "p99_hops",
                                    "p50_latency_ms",
                                    "p99_latency_ms",
                                    "components",
                                    "heal_ms",
                                    "max_neighbors_seen",
                                    "min_neighbors_end",
                                    "messages_sent",
                                    "deliveries",
                                    "expected_deliveries",
                                    "deliveries_all",
                                    "live_nodes",
                                    "link_errors",
                                    "dial_failures",
                                    "open_refused",
                                    "bytes_dropped",
                                    "core_grafts",
                                    "core_duplicates",
                                    "core_dropped",
                                    "core_invalid",
                                    "member_view",
                                    "member_view_min",
                                    "timer_spins",
                                    "sim_errors",
                                    "unknown_messages",
                                    "events",
                                    "wall_s",
                                    "rss_bytes_per_node"};

int sim_metric_known(const char *name) {
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(known[i], name) == 0)
      return 1;
  return 0;
}

static void put(sim_result *r, const char *name, int kind, double v) {
  if (r->n < SIM_METRICS_MAX) {
    r->m[r->n].name = name;
    r->m[r->n].kind = kind;
    r->m[r->n].value = v;
    r->n++;
  }
}

/* The smallest value with at least `q` of the samples at or below it. */
static double percentile(const uint64_t *hist, size_t len, uint64_t total,
                         double q) {
  if (total == 0)
    return -1;
  uint64_t want = (uint64_t)((double)total * q + 0.999999);
  if (want == 0)
    want = 1;
  uint64_t acc = 0;
  for (size_t i = 0; i < len; i++) {
    acc += hist[i];
    if (acc >= want)
      return (double)i;
  }
  return (double)(len - 1);
}

static double ratio(uint64_t a, uint64_t b) {
  return b ? (double)a / (double)b : 0.0;
}

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f)
    return 0;
  char line[256];
  long kb = 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb * 1024;
}

/* With -v: which nodes missed which messages, to start a diagnosis. */
static void report_missing(const sim *s) {
  uint32_t shown = 0;
  if (s->o->verbose > 1)
    for (uint32_t i = 0; i < s->nmsgs; i++)
      fprintf(
          stderr,
          "message %u from node %u at %llu: %u of %u (same side %u of %u)\n", i,
          s->msgs[i].sender, (unsigned long long)s->msgs[i].sent_at,
          msg_delivered(s, i), s->msgs[i].expected, msg_delivered_same(s, i),
          s->msgs[i].expected_same);
  for (uint32_t i = 0; i < s->nmsgs && shown < 20; i++) {
    const sim_msg *m = &s->msgs[i];
    uint32_t got = msg_delivered(s, i);
    if (got == m->expected)
      continue;
    fprintf(stderr,
            "message %u from node %u at %llu: %u of %u delivered; "
            "missed by",
            i, m->sender, (unsigned long long)m->sent_at, got, m->expected);
    uint32_t listed = 0;
    for (uint32_t n = 0; n < s->nnodes && listed < 8; n++) {
      const uint8_t *bits = s->delivered + (size_t)n * s->bits_per_node;
      if (must_receive(s, n, m->sent_at, m->sender) &&
          (s->nodes[n].end_ms != SIM_NEVER || s->nodes[n].core) &&
          s->nodes[n].start_ms <= m->sent_at &&
          !(bits[i / 8] & (1u << (i % 8)))) {
        fprintf(stderr, " %u", n);
        listed++;
      }
    }
    fprintf(stderr, "\n");
    shown++;
  }
}

/* The partitions' counters added up; the histograms into partition 0's. */
static void combine(sim *s, sim_counters *c) {
  *c = s->parts[0].c;
  for (uint32_t i = 1; i < s->nparts; i++) {
    const sim_counters *d = &s->parts[i].c;
    c->events += d->events;
    c->deliveries += d->deliveries;
    c->deliveries_all += d->deliveries_all;
    c->duplicate_deliveries += d->duplicate_deliveries;
    c->unknown_messages += d->unknown_messages;
    c->flood_frames += d->flood_frames;
    c->flood_bytes += d->flood_bytes;
    c->control_frames += d->control_frames;
    c->control_bytes += d->control_bytes;
    for (int t = 0; t < 128; t++) {
      c->type_frames[t] += d->type_frames[t];
      c->type_bytes[t] += d->type_bytes[t];
    }
    c->timer_events += d->timer_events;
    c->bytes_dropped += d->bytes_dropped;
    c->link_errors += d->link_errors;
    c->send_errors += d->send_errors;
    c->open_refused += d->open_refused;
    c->add_peer_refused += d->add_peer_refused;
    c->dials += d->dials;
    c->dial_failures += d->dial_failures;
    c->resolves += d->resolves;
    c->timer_spins += d->timer_spins;
    c->sim_errors += d->sim_errors;
    if (d->max_neighbors_seen > c->max_neighbors_seen)
      c->max_neighbors_seen = d->max_neighbors_seen;
    for (size_t k = 0; k < c->lat_len; k++)
      c->lat_hist[k] += d->lat_hist[k];
    for (size_t k = 0; k < c->hop_len; k++)
      c->hop_hist[k] += d->hop_hist[k];
  }
}

void sim_metrics_report(sim *s, sim_result *r) {
  if (s->o->verbose)
    report_missing(s);
  const sim_opts *o = s->o;
  sim_counters all;
  combine(s, &all);
  const sim_counters *c = &all;
  if (o->verbose) {
    fprintf(stderr, "peermesh-sim: %llu timer events; frames received by type:",
            (unsigned long long)c->timer_events);
    for (int t = 0; t < 128; t++)
      if (c->type_frames[t])
        fprintf(stderr, " 0x%02x %llu (%llu B)", t,
                (unsigned long long)c->type_frames[t],
                (unsigned long long)c->type_bytes[t]);
    fprintf(stderr, "\n");
  }
  memset(r, 0, sizeof *r);
  r->scenario = sim_scenario_name(o->scenario);
  r->seed = o->seed;
  r->trace_hash = s->trace;
  double wall = sim_wall_now() - s->wall_start;

  put(r, "nodes", 0, o->nodes);
  put(r, "messages", 0, o->messages);
  put(r, "delivery_ratio", 1,
      s->expected ? ratio(c->deliveries, s->expected) : 1.0);
  if (s->fault_at != SIM_NEVER) {
    uint64_t want = 0, got = 0;
    for (uint32_t i = 0; i < s->nmsgs; i++) {
      if (s->msgs[i].sent_at >= s->fault_at + 1000) {
        want += s->msgs[i].expected;
        got += msg_delivered(s, i);
      }
    }
    put(r, "delivery_ratio_after_fault", 1, want ? ratio(got, want) : 1.0);
  }
  if (o->scenario == SIM_PARTITION) {
    /* During the cut a message can only reach the sender's half. */
    uint64_t want = 0, got = 0;
    for (uint32_t i = 0; i < s->nmsgs; i++) {
      if (s->msgs[i].during_cut) {
        want += s->msgs[i].expected_same;
        got += msg_delivered_same(s, i);
      }
    }
    put(r, "delivery_ratio_same_side", 1, want ? ratio(got, want) : 1.0);
  }
  put(r, "duplicate_deliveries", 0, (double)c->duplicate_deliveries);
  put(r, "copies_per_delivery", 1, ratio(c->flood_frames, c->deliveries_all));
  put(r, "control_bytes_per_delivery", 1,
      ratio(c->control_bytes, c->deliveries_all));
  put(r, "payload_bytes_per_delivery", 1,
      ratio(c->flood_bytes, c->deliveries_all));
  put(r, "p50_hops", 0, percentile(c->hop_hist, c->hop_len, c->deliveries, .5));
  put(r, "p99_hops", 0,
      percentile(c->hop_hist, c->hop_len, c->deliveries, .99));
  put(r, "p50_latency_ms", 0,
      percentile(c->lat_hist, c->lat_len, c->deliveries, .5));
  put(r, "p99_latency_ms", 0,
      percentile(c->lat_hist, c->lat_len, c->deliveries, .99));
  put(r, "components", 0, sim_components(s));
  put(r, "heal_ms", 0, (double)s->heal_ms);
  put(r, "max_neighbors_seen", 0, c->max_neighbors_seen);
  uint32_t min_nb = UINT32_MAX;
  pm_node_stats sum, st;
  memset(&sum, 0, sizeof sum);
  double view_sum = 0, view_min = 1;
  for (uint32_t i = 0; i < s->nlive; i++) {
    const sim_node *nd = &s->nodes[s->live[i]];
    if (nd->nbrs < min_nb)
      min_nb = nd->nbrs;
    pm_node_get_stats(nd->core, &st);
    sum.grafts += st.grafts;
    sum.duplicates += st.duplicates;
    sum.dropped += st.dropped;
    sum.invalid += st.invalid;
    /* Presence: the live members a node counts, of the others alive. */
    double view = s->nlive > 1 ? (double)st.members / (s->nlive - 1) : 1;
    view_sum += view;
    if (view < view_min)
      view_min = view;
  }
  put(r, "min_neighbors_end", 0, s->nlive ? min_nb : 0);
  put(r, "messages_sent", 0, s->nmsgs);
  put(r, "deliveries", 0, (double)c->deliveries);
  put(r, "expected_deliveries", 0, (double)s->expected);
  put(r, "deliveries_all", 0, (double)c->deliveries_all);
  put(r, "live_nodes", 0, s->nlive);
  put(r, "link_errors", 0, (double)c->link_errors);
  put(r, "send_errors", 0, (double)c->send_errors);
  put(r, "dial_failures", 0, (double)c->dial_failures);
  put(r, "open_refused", 0, (double)c->open_refused);
  put(r, "bytes_dropped", 0, (double)c->bytes_dropped);
  put(r, "core_grafts", 0, (double)sum.grafts);
  put(r, "core_duplicates", 0, (double)sum.duplicates);
  put(r, "core_dropped", 0, (double)sum.dropped);
  put(r, "core_invalid", 0, (double)sum.invalid);
  put(r, "member_view", 1, s->nlive ? view_sum / s->nlive : 1);
  put(r, "member_view_min", 1, view_min);
  put(r, "timer_spins", 0, (double)c->timer_spins);
  put(r, "sim_errors", 0, (double)c->sim_errors);
  put(r, "unknown_messages", 0, (double)c->unknown_messages);
  put(r, "events", 0, (double)(c->events + s->events));
  put(r, "wall_s", 1, wall);
  put(r, "rss_bytes_per_node", 0,
      o->nodes ? (double)rss_bytes() / o->nodes : 0);
}

int sim_result_get(const sim_result *r, const char *name, double *out) {
  if (strcmp(name, "seed") == 0) {
    *out = (double)r->seed;
    return 1;
  }
  for (int i = 0; i < r->n; i++) {
    if (strcmp(r->m[i].name, name) == 0) {
      *out = r->m[i].value;
      return 1;
    }
  }
  return 0;
}

void sim_result_print(const sim_result *r, uint64_t *repeat_hash) {
  printf("{\"scenario\":\"%s\",\"seed\":%llu", r->scenario,
         (unsigned long long)r->seed);
  for (int i = 0; i < r->n; i++) {
    if (r->m[i].kind == 0)
      printf(",\"%s\":%lld", r->m[i].name, (long long)r->m[i].value);
    else
      printf(",\"%s\":%.6g", r->m[i].name, r->m[i].value);
  }
  printf(",\"trace_hash\":\"%016llx\"", (unsigned long long)r->trace_hash);
  if (repeat_hash)
    printf(",\"trace_hash_repeat\":\"%016llx\"",
           (unsigned long long)*repeat_hash);
  printf("}\n");
}
