/* One simulation run: setup, the event loop, the report, and cleanup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

void *sim_xmalloc(size_t size) {
  void *p = malloc(size ? size : 1);
  if (!p) {
    fprintf(stderr, "peermesh-sim: out of memory (%zu bytes)\n", size);
    abort();
  }
  return p;
}

void *sim_xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) {
    fprintf(stderr, "peermesh-sim: out of memory (%zu x %zu bytes)\n", count,
            size);
    abort();
  }
  return p;
}

void *sim_xrealloc(void *p, size_t size) {
  void *q = realloc(p, size ? size : 1);
  if (!q) {
    fprintf(stderr, "peermesh-sim: out of memory (%zu bytes)\n", size);
    abort();
  }
  return q;
}

/* A 64-bit multiply-xorshift fold: order-sensitive, and one flipped input
 * bit changes the whole hash. */
void sim_trace(sim *s, uint64_t v) {
  uint64_t h = (s->trace ^ v) * 0x9E3779B97F4A7C15ull;
  s->trace = h ^ (h >> 29);
}

double sim_wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Host h is 127.x.y.z with x.y.z = h + 1 in base 256. */
void sim_host_ip(uint32_t h, char out[32]) {
  uint32_t v = h + 1;
  snprintf(out, 32, "127.%u.%u.%u", (v >> 16) & 255, (v >> 8) & 255, v & 255);
}

void sim_host_addr(uint32_t h, char out[32]) {
  uint32_t v = h + 1;
  snprintf(out, 32, "127.%u.%u.%u:%u", (v >> 16) & 255, (v >> 8) & 255, v & 255,
           SIM_LISTEN_PORT);
}

static int parse_octet(const char **p, char stop, uint32_t *out) {
  uint32_t v = 0;
  int digits = 0;
  while (**p >= '0' && **p <= '9' && digits < 4) {
    v = v * 10 + (uint32_t)(**p - '0');
    (*p)++;
    digits++;
  }
  if (!digits || v > 255 || **p != stop)
    return -1;
  (*p)++;
  *out = v;
  return 0;
}

uint32_t sim_addr_host(const sim *s, const char *addr) {
  if (strncmp(addr, "127.", 4) != 0)
    return SIM_NONE;
  const char *p = addr + 4;
  uint32_t x, y, z;
  if (parse_octet(&p, '.', &x) || parse_octet(&p, '.', &y) ||
      parse_octet(&p, ':', &z))
    return SIM_NONE;
  if (strcmp(p, "7000") != 0)
    return SIM_NONE; /* nobody listens on another port */
  uint32_t v = x << 16 | y << 8 | z;
  if (v == 0 || v - 1 >= s->nhosts)
    return SIM_NONE;
  return v - 1;
}

int sim_node_alive(const sim *s, uint32_t n) {
  return n < s->nnodes && s->nodes[n].core != NULL;
}

static void dispatch(sim *s, const sim_event *ev) {
  switch (ev->kind) {
  case SIM_EV_TIMER:
    sim_on_timer(s, ev->a, ev->b);
    break;
  case SIM_EV_SEG:
    sim_net_on_seg(s, ev->a, ev->b);
    break;
  case SIM_EV_DIAL_ARRIVE:
    sim_net_on_dial_arrive(s, ev->a);
    break;
  case SIM_EV_DIAL_FAIL:
    sim_net_on_dial_fail(s, ev->a);
    break;
  case SIM_EV_RESOLVE:
    sim_on_resolve(s, ev->a);
    break;
  case SIM_EV_START:
    sim_node_start(s, ev->a, (int)ev->b);
    break;
  default:
    sim_scenario_event(s, ev);
    break;
  }
}

int sim_run(const sim_opts *o, sim_result *r) {
  sim *s = sim_xcalloc(1, sizeof *s);
  s->o = o;
  s->loss = o->loss >= 0 ? o->loss : (o->scenario == SIM_LOSSY ? 0.05 : 0.0);
  sim_rng_seed(&s->rng, o->seed);
  sim_rng_seed(&s->net_rng, o->seed ^ 0x6E6574776F726B21ull);
  s->trace = 0xcbf29ce484222325ull;
  sim_evq_init(&s->q);
  sim_net_init(s);
  s->wall_start = sim_wall_now();
  sim_scenario_setup(s);
  sim_metrics_init(s);

  sim_event ev;
  while (sim_evq_pop(&s->q, &ev)) {
    if (ev.time > s->end_at)
      break;
    s->now = ev.time;
    if (ev.kind != SIM_EV_PROGRESS) { /* -v must not change the trace */
      s->c.events++;
      sim_trace(s, ev.time << 8 | ev.kind);
      sim_trace(s, (uint64_t)ev.a << 32 | ev.b);
    }
    dispatch(s, &ev);
  }
  sim_trace(s, s->c.flood_frames);
  sim_trace(s, s->c.control_bytes);
  sim_metrics_report(s, r);

  sim_nodes_free(s);
  sim_net_free(s);
  sim_evq_free(&s->q);
  sim_metrics_free(s);
  free(s->killed);
  free(s->churn);
  free(s);
  return 0;
}
