/* Scenarios: the timeline of a run and the faults it injects.
 *
 *   0 .. startup_ms        the initial nodes start, each with no peers but
 *                          what the resolver gives it
 *   t0 = warmup_ms         the message phase: one message every interval_ms
 *                          from a random live node, `messages` in all
 *   steady, lossy          no faults (lossy: 5 % of transmissions lost)
 *   kill30                 at t0, 30 % of the nodes crash at once
 *   partition              at t0 the halves are cut for partition_ms
 *   churn                  every churn_interval_ms of the message phase a
 *                          random node leaves (gracefully and by crash in
 *                          turn) and a new one joins
 *   restart                kill30, then the crashed nodes restart with the
 *                          same ID and address restart_after_ms later
 *                          (default: half-way through the message phase)
 *   end                    every message's window closed, the last fault
 *                          over, then drain_ms more
 *
 * Churn is planned when the run is set up, so every node's end is known
 * when a message is sent: that decides who had to receive it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char *const names[] = {"steady", "kill30", "partition",
                                    "churn",  "lossy",  "restart"};

int sim_scenario_parse(const char *name) {
  for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
    if (strcmp(name, names[i]) == 0)
      return i;
  return -1;
}

const char *sim_scenario_name(int scenario) {
  return names[scenario];
}

static void plan_churn(sim *s, uint64_t first, uint64_t until, uint64_t step) {
  uint32_t cap = 0;
  for (uint64_t t = first; t < until; t += step)
    cap++;
  s->churn = sim_xcalloc(cap ? cap : 1, sizeof *s->churn);
  /* The hosts that will be up, updated step by step as the run will. */
  uint32_t *up = sim_xmalloc(((size_t)s->nhosts + cap + 1) * sizeof *up);
  uint32_t nup = 0;
  for (uint32_t h = 0; h < s->nhosts; h++)
    up[nup++] = h;
  uint64_t t = first;
  for (uint32_t j = 0; j < cap; j++, t += step) {
    sim_churn_step *st = &s->churn[j];
    uint32_t k = (uint32_t)sim_rng_below(&s->rng, nup);
    st->victim = up[k];
    up[k] = up[--nup];
    s->hosts[st->victim].planned_end = t;
    st->joiner = sim_host_add(s);
    up[nup++] = st->joiner;
    st->graceful = (uint8_t)(j % 2 == 0);
    sim_heap_push(&s->gq, t, SIM_EV_CHURN, j, 0);
  }
  s->nchurn = cap;
  free(up);
}

void sim_scenario_setup(sim *s) {
  const sim_opts *o = s->o;
  uint32_t n = o->nodes;
  s->t0 = o->warmup_ms;
  uint64_t phase_end = s->t0 + (uint64_t)o->messages * o->interval_ms;
  uint64_t last_send =
      s->t0 + (o->messages ? (uint64_t)(o->messages - 1) * o->interval_ms : 0);
  uint64_t fault_end = s->t0;
  s->fault_at = SIM_NEVER;
  s->heal_ref = s->t0;
  s->heal_ms = -1;

  for (uint32_t i = 0; i < n; i++)
    sim_host_add(s);
  for (uint32_t i = 0; i < n; i++) {
    uint64_t at = o->startup_ms ? sim_rng_below(&s->rng, o->startup_ms) : 0;
    sim_evq_push(&s->parts[s->hosts[i].part].q, at, SIM_EV_START, i, 0);
  }
  uint32_t extra = 0;
  switch (o->scenario) {
  case SIM_KILL30:
    sim_heap_push(&s->gq, s->t0, SIM_EV_KILL, 0, 0);
    s->fault_at = s->t0;
    break;
  case SIM_PARTITION:
    sim_heap_push(&s->gq, s->t0, SIM_EV_CUT_START, 0, 0);
    sim_heap_push(&s->gq, s->t0 + o->partition_ms, SIM_EV_CUT_END, 0, 0);
    fault_end = s->heal_ref = s->t0 + o->partition_ms;
    break;
  case SIM_CHURN:
    plan_churn(s, s->t0 + o->churn_interval_ms, phase_end,
               o->churn_interval_ms);
    if (s->nchurn)
      fault_end = s->heal_ref =
          s->t0 + (uint64_t)s->nchurn * o->churn_interval_ms;
    break;
  case SIM_RESTART: {
    uint64_t after = o->restart_after_ms != SIM_NEVER ? o->restart_after_ms
                                                      : (phase_end - s->t0) / 2;
    sim_heap_push(&s->gq, s->t0, SIM_EV_KILL, 0, 0);
    sim_heap_push(&s->gq, s->t0 + after, SIM_EV_RESTART, 0, 0);
    fault_end = s->heal_ref = s->fault_at = s->t0 + after;
    extra = n;
    break;
  }
  default:
    break;
  }
  if (o->messages)
    sim_heap_push(&s->gq, s->t0, SIM_EV_SEND, 0, 0);
  sim_heap_push(&s->gq, s->heal_ref, SIM_EV_SAMPLE, 0, 0);
  if (o->verbose)
    sim_heap_push(&s->gq, 10000, SIM_EV_PROGRESS, 0, 0);
  uint64_t windows_end = last_send + o->window_ms;
  s->end_at = (windows_end > fault_end ? windows_end : fault_end) + o->drain_ms;

  /* Node h is host h's first incarnation; restarts come after them. */
  s->nnodes = s->nhosts;
  s->nodes_cap = s->nhosts + extra;
  s->nodes = sim_xcalloc(s->nodes_cap, sizeof *s->nodes);
  s->live = sim_xcalloc(s->nodes_cap, sizeof *s->live);
  s->uf = sim_xcalloc(s->nodes_cap, sizeof *s->uf);
  s->bits_per_node = ((size_t)o->messages + 7) / 8;
  s->delivered = sim_xcalloc((size_t)s->nodes_cap * s->bits_per_node + 1, 1);
  s->killed = sim_xcalloc((size_t)n + 1, sizeof *s->killed);
}

static void send_message(sim *s, uint32_t k) {
  const sim_opts *o = s->o;
  if (k + 1 < o->messages)
    sim_heap_push(&s->gq, s->now + o->interval_ms, SIM_EV_SEND, k + 1, 0);
  if (s->nlive == 0) {
    s->parts[0].c.send_errors++;
    return;
  }
  uint32_t n = s->live[sim_rng_below(&s->rng, s->nlive)];
  char body[96];
  int len = snprintf(body, sizeof body, "{\"member\":\"n%u\",\"text\":\"%u\"}",
                     s->nodes[n].host, k);
  pm_send msg;
  memset(&msg, 0, sizeof msg);
  msg.action = "Chat";
  msg.body = (const uint8_t *)body;
  msg.body_len = (size_t)len;
  msg.time_ms = 1767225600000ull + s->now; /* 2026-01-01 plus virtual time */
  uint8_t id[PM_MSG_ID_LEN];
  sim_part *p = sim_node_part(s, n);
  int rc = pm_node_send(s->nodes[n].core, s->now, &msg, id);
  if (rc) {
    p->c.send_errors++;
    if (o->verbose)
      fprintf(stderr, "[%llu] send from node %u: %s\n",
              (unsigned long long)s->now, n, pm_strerror(rc));
  } else {
    sim_msg_sent(s, n, id);
  }
  sim_pump(p, n);
}

static void kill_fraction(sim *s) {
  uint32_t k = (uint32_t)((double)s->nlive * s->o->kill_fraction);
  for (uint32_t i = 0; i < k && s->nlive; i++) {
    uint32_t n = s->live[sim_rng_below(&s->rng, s->nlive)];
    s->killed[s->nkilled++] = s->nodes[n].host;
    sim_node_crash(sim_node_part(s, n), n);
  }
}

static void sample(sim *s) {
  if (s->heal_ms >= 0)
    return;
  uint32_t comps = sim_components(s);
  if (comps <= 1) {
    s->heal_ms = (int64_t)(s->now - s->heal_ref);
    return;
  }
  if (s->now + 100 <= s->end_at)
    sim_heap_push(&s->gq, s->now + 100, SIM_EV_SAMPLE, 0, 0);
}

void sim_scenario_event(sim *s, const sim_event *ev) {
  switch (ev->kind) {
  case SIM_EV_SEND:
    send_message(s, ev->a);
    break;
  case SIM_EV_KILL:
    kill_fraction(s);
    break;
  case SIM_EV_RESTART:
    for (uint32_t i = 0; i < s->nkilled; i++) {
      uint32_t h = s->killed[i];
      sim_node_start(&s->parts[s->hosts[h].part], h, s->nnodes++, 1);
    }
    break;
  case SIM_EV_CUT_START:
    s->cut = 1;
    break;
  case SIM_EV_CUT_END:
    s->cut = 0;
    for (uint32_t i = 0; i < s->nparts; i++)
      sim_net_cut_end(&s->parts[i]);
    break;
  case SIM_EV_CHURN: {
    const sim_churn_step *st = &s->churn[ev->a];
    uint32_t v = s->hosts[st->victim].node;
    if (v != SIM_NONE) {
      if (st->graceful)
        sim_node_leave(sim_node_part(s, v), v);
      else
        sim_node_crash(sim_node_part(s, v), v);
    }
    /* A joiner's first node has the host's number. */
    sim_node_start(&s->parts[s->hosts[st->joiner].part], st->joiner, st->joiner,
                   0);
    break;
  }
  case SIM_EV_SAMPLE:
    sample(s);
    break;
  case SIM_EV_PROGRESS: {
    uint64_t ends = 0;
    for (uint32_t i = 0; i < s->nparts; i++)
      ends += s->parts[i].ends_in_use;
    fprintf(stderr,
            "[%6.1f s virtual] live %u, events %llu, deliveries %llu/%llu, "
            "connection ends %llu, wall %.1f s\n",
            (double)s->now / 1000.0, s->nlive,
            (unsigned long long)(SIM_SUM(s, events) + s->events),
            (unsigned long long)SIM_SUM(s, deliveries),
            (unsigned long long)s->expected, (unsigned long long)ends,
            sim_wall_now() - s->wall_start);
    if (s->now + 10000 <= s->end_at)
      sim_heap_push(&s->gq, s->now + 10000, SIM_EV_PROGRESS, 0, 0);
  } break;
  default:
    break;
  }
}
