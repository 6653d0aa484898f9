/* One simulation run: setup, the windows and the timeline between them, the
 * threads, the report, and cleanup.
 *
 * The run is a sequence of windows [T, W): W is T + L (the lookahead, the
 * smallest one-way latency), or the next timeline event, or the end of the
 * run, whichever comes first. In a window every partition takes the packets
 * the others sent it in the previous one and runs its own events due before
 * W; then, with the threads waiting, the nodes the partitions started join
 * the resolver's list and the timeline events due at W run. A packet sent to
 * another partition at time t arrives at t + L or later, that is in a later
 * window, so no partition ever sees the past change. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prefault.h"
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

void sim_global_clock(sim *s) {
  for (uint32_t i = 0; i < s->nparts; i++)
    s->parts[i].now = s->now;
}

static void dispatch(sim_part *p, const sim_event *ev) {
  switch (ev->kind) {
  case SIM_EV_TIMER:
    p->c.timer_events++;
    sim_on_timer(p, ev->a, ev->b);
    break;
  case SIM_EV_PACKET:
    sim_net_on_packet(p, ev->a, ev->b);
    break;
  case SIM_EV_RELEASE:
    sim_net_on_release(p, ev->a, ev->b);
    break;
  case SIM_EV_DIAL_FAIL:
    sim_net_on_dial_fail(p, ev->a, ev->b);
    break;
  case SIM_EV_RESOLVE:
    sim_on_resolve(p, ev->a);
    break;
  case SIM_EV_START:
    sim_node_start(p, ev->a, ev->a, 0); /* node h is host h's first */
    break;
  default:
    p->c.sim_errors++;
    break;
  }
}

/* Memory latency bounds a big run: while an event is handled, the state of
 * the next ones starts loading, in stages, each of which needs the one
 * before in cache and has one event's time to arrive: five events ahead, a
 * packet and its connection end (which names the node and the link); four
 * ahead, the node's record here; three ahead, the node's core; two ahead,
 * what finding the link and looking up IDs reads; one ahead, the link and
 * the index slots of the IDs in the packet's frames; and for the very next
 * event, the entries those slots name. */
static uint32_t event_node(const sim_part *p, const sim_wheel_item *it) {
  if (it->kind == SIM_EV_PACKET && it->b < p->ends_len)
    return p->ends[it->b].node;
  if (it->kind == SIM_EV_TIMER)
    return it->a;
  return SIM_NONE;
}

static pm_node *event_core(const sim_part *p, const sim_wheel_item *it) {
  uint32_t n = event_node(p, it);
  return n < p->s->nodes_cap ? p->s->nodes[n].core : NULL;
}

static void prefetch_ahead(sim_part *p) {
  const sim *s = p->s;
  const sim_wheel_item *it = sim_evq_peek(&p->q, 5);
  if (it && it->kind == SIM_EV_PACKET && it->b < p->ends_len) {
    __builtin_prefetch(&p->ends[it->b]);
    sim_net_prefetch_packet(p, it->a);
  }
  if ((it = sim_evq_peek(&p->q, 4)) != NULL) {
    uint32_t n = event_node(p, it);
    if (n < s->nodes_cap)
      __builtin_prefetch(&s->nodes[n]);
  }
  pm_node *core;
  if ((it = sim_evq_peek(&p->q, 3)) != NULL && (core = event_core(p, it)))
    pm_node_prefetch(core);
  if ((it = sim_evq_peek(&p->q, 2)) != NULL && it->kind == SIM_EV_PACKET &&
      (core = event_core(p, it)))
    pm_node_prefetch_link(core, p->ends[it->b].link);
  size_t len;
  const uint8_t *data;
  if ((it = sim_evq_peek(&p->q, 1)) != NULL && it->kind == SIM_EV_PACKET &&
      (core = event_core(p, it))) {
    data = sim_net_packet_data(p, it->a, &len);
    pm_node_prefetch_input(core, p->ends[it->b].link, data, len);
  }
  if ((it = sim_evq_peek(&p->q, 0)) != NULL && it->kind == SIM_EV_PACKET &&
      (core = event_core(p, it))) {
    data = sim_net_packet_data(p, it->a, &len);
    pm_node_prefetch_entries(core, data, len);
  }
}

/* One partition's share of a window: the packets from the others, then its
 * events due before `end`. */
static void run_window(sim_part *p, uint64_t end) {
  sim_net_merge(p);
  sim_event ev;
  while (sim_evq_pop(&p->q, end, &ev)) {
    prefetch_ahead(p);
    p->now = ev.time;
    p->c.events++;
    sim_trace(p, ev.time << 8 | ev.kind);
    sim_trace(p, (uint64_t)ev.a << 32 | ev.b);
    dispatch(p, &ev);
  }
}

/* A thread's share of a window: first its own block of partitions (they
 * keep their memory warm in one core, and their allocations in one malloc
 * arena), then whatever the others have not started yet. Which thread runs
 * which partition does not matter to the run: within a window a partition
 * reads only its own state and the shared state that changes between
 * windows. */
static void run_partitions(sim *s, uint32_t t) {
  double t0 = s->o->verbose ? sim_wall_now() : 0;
  uint64_t mark = s->window + 1;
  uint32_t first = (uint32_t)((uint64_t)t * s->nparts / s->nthreads);
  for (uint32_t k = 0; k < s->nparts; k++) {
    uint32_t i = (first + k) % s->nparts;
    if (atomic_load_explicit(&s->claimed[i], memory_order_relaxed) == mark ||
        atomic_exchange_explicit(&s->claimed[i], mark, memory_order_relaxed) ==
            mark)
      continue;
    run_window(&s->parts[i], s->win_end);
  }
  if (s->o->verbose)
    s->busy_s[t] += sim_wall_now() - t0;
}

/* Waits until every thread has arrived. Waiting threads spin for a while
 * (a window is a few milliseconds, and waking a sleeping thread costs tens
 * of microseconds), then sleep. The atomics order each thread's writes
 * before the barrier with everyone's reads after it. */
#define SPIN_LIMIT 200000

static void barrier(sim *s) {
  uint32_t gen = atomic_load_explicit(&s->bar_gen, memory_order_acquire);
  if (atomic_fetch_add_explicit(&s->bar_count, 1, memory_order_acq_rel) + 1 ==
      s->nthreads) {
    atomic_store_explicit(&s->bar_count, 0, memory_order_relaxed);
    pthread_mutex_lock(&s->bar_mu);
    atomic_store_explicit(&s->bar_gen, gen + 1, memory_order_release);
    pthread_cond_broadcast(&s->bar_cv);
    pthread_mutex_unlock(&s->bar_mu);
    return;
  }
  for (int i = 0; i < SPIN_LIMIT; i++) {
    if (atomic_load_explicit(&s->bar_gen, memory_order_acquire) != gen)
      return;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  pthread_mutex_lock(&s->bar_mu);
  while (atomic_load_explicit(&s->bar_gen, memory_order_acquire) == gen)
    pthread_cond_wait(&s->bar_cv, &s->bar_mu);
  pthread_mutex_unlock(&s->bar_mu);
}

typedef struct worker_arg {
  sim *s;
  uint32_t t;
} worker_arg;

static void *worker(void *arg) {
  sim *s = ((worker_arg *)arg)->s;
  uint32_t t = ((worker_arg *)arg)->t;
  for (;;) {
    barrier(s); /* a window starts, or the run is over */
    if (s->done)
      break;
    run_partitions(s, t);
    barrier(s); /* the window is over */
  }
  return NULL;
}

/* Registers started nodes, then runs the timeline events due at s->now. */
static void global_step(sim *s) {
  double t0 = s->o->verbose ? sim_wall_now() : 0;
  sim_global_clock(s);
  sim_register_started(s);
  while (sim_heap_peek_time(&s->gq) == s->now) {
    sim_event ev;
    sim_heap_pop(&s->gq, &ev);
    if (ev.kind != SIM_EV_PROGRESS) { /* -v must not change the trace */
      s->events++;
      sim_trace_fold(&s->trace, ev.time << 8 | ev.kind);
      sim_trace_fold(&s->trace, (uint64_t)ev.a << 32 | ev.b);
    }
    sim_scenario_event(s, &ev);
    sim_register_started(s);
  }
  if (s->o->verbose)
    s->global_s += sim_wall_now() - t0;
}

static void run_loop(sim *s) {
  uint64_t t = 0;
  s->now = 0;
  global_step(s);
  while (t <= s->end_at) {
    uint64_t w = t + s->lookahead;
    uint64_t g = sim_heap_peek_time(&s->gq);
    if (g < w)
      w = g;
    if (s->end_at + 1 < w)
      w = s->end_at + 1;
    s->win_end = w;
    if (s->nthreads > 1) {
      barrier(s);
      run_partitions(s, 0);
      barrier(s);
    } else {
      run_partitions(s, 0);
    }
    s->window++;
    t = w;
    if (t > s->end_at)
      break;
    s->now = t;
    global_step(s);
  }
  s->now = s->end_at;
  sim_global_clock(s);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ALWAYS_TEARDOWN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ALWAYS_TEARDOWN 1
#endif
#endif
#ifndef ALWAYS_TEARDOWN
#define ALWAYS_TEARDOWN 0
#endif

int sim_run(const sim_opts *o, sim_result *r, int teardown) {
  sim *s = sim_xcalloc(1, sizeof *s);
  s->o = o;
  s->loss = o->loss >= 0 ? o->loss : (o->scenario == SIM_LOSSY ? 0.05 : 0.0);
  s->nparts = o->partitions ? o->partitions : 1;
  s->nthreads = o->threads ? o->threads : 1;
  if (s->nthreads > s->nparts)
    s->nthreads = s->nparts;
  s->lookahead = o->lat_min_ms ? o->lat_min_ms : 1;
  if (s->nparts > SIM_MAX_PARTS || s->nthreads > SIM_MAX_THREADS ||
      (s->nparts > 1 && o->lat_min_ms == 0)) {
    fprintf(stderr, "peermesh-sim: bad number of partitions or threads\n");
    free(s);
    return -1;
  }
  s->parts = sim_xcalloc(s->nparts, sizeof *s->parts);
  s->claimed = sim_xcalloc(s->nparts, sizeof *s->claimed);
  sim_rng_seed(&s->rng, o->seed);
  s->trace = 0xcbf29ce484222325ull;
  for (uint32_t i = 0; i < s->nparts; i++) {
    sim_part *p = &s->parts[i];
    p->s = s;
    p->idx = i;
    sim_rng_seed(&p->rng,
                 o->seed ^ 0x6E6574776F726B21ull ^ (0xD1B54A32D192ED03ull * i));
    p->trace = 0xcbf29ce484222325ull;
    sim_evq_init(&p->q);
    sim_net_init(p);
    p->ids = pm_idpool_new(NULL);
    p->frames = pm_idpool_new(NULL);
    if (!p->ids || !p->frames) {
      fprintf(stderr, "peermesh-sim: out of memory\n");
      exit(3);
    }
  }
  s->wall_start = sim_wall_now();
  sim_scenario_setup(s);
  sim_metrics_init(s);

  worker_arg args[SIM_MAX_THREADS];
  if (s->nthreads > 1) {
    pthread_mutex_init(&s->bar_mu, NULL);
    pthread_cond_init(&s->bar_cv, NULL);
    for (uint32_t i = 1; i < s->nthreads; i++) {
      args[i].s = s;
      args[i].t = i;
      if (pthread_create(&s->threads[i], NULL, worker, &args[i])) {
        fprintf(stderr, "peermesh-sim: pthread_create failed\n");
        abort();
      }
    }
  }
  int prefault = o->prefault > 0;
  if (prefault)
    sim_prefault_start();
  double loop_start = sim_wall_now();
  run_loop(s);
  uint64_t pf_bytes = 0;
  double pf_cpu = 0;
  if (prefault)
    sim_prefault_stop(&pf_bytes, &pf_cpu);
  if (s->nthreads > 1) {
    s->done = 1;
    barrier(s);
    for (uint32_t i = 1; i < s->nthreads; i++)
      pthread_join(s->threads[i], NULL);
    pthread_cond_destroy(&s->bar_cv);
    pthread_mutex_destroy(&s->bar_mu);
  }

  if (o->verbose) {
    double wall = sim_wall_now() - s->wall_start;
    fprintf(stderr,
            "peermesh-sim: %.1f s setup, %llu windows in %.1f s wall (%.1f s "
            "between windows);",
            loop_start - s->wall_start, (unsigned long long)s->window,
            wall - (loop_start - s->wall_start), s->global_s);
    for (uint32_t i = 0; i < s->nthreads; i++)
      fprintf(stderr, " thread %u %.1f s busy;", i, s->busy_s[i]);
    fprintf(stderr, " %u partitions, events", s->nparts);
    for (uint32_t i = 0; i < s->nparts; i++)
      fprintf(stderr, " %llu", (unsigned long long)s->parts[i].c.events);
    fprintf(stderr, "\n");
    if (prefault)
      fprintf(stderr,
              "peermesh-sim: prefault: went over %.2f GB in %.1f s of CPU\n",
              (double)pf_bytes / 1e9, pf_cpu);
  }
  /* The run's hash: the timeline's, then each partition's, in order. */
  for (uint32_t i = 0; i < s->nparts; i++)
    sim_trace_fold(&s->trace, s->parts[i].trace);
  sim_trace_fold(&s->trace, SIM_SUM(s, flood_frames));
  sim_trace_fold(&s->trace, SIM_SUM(s, control_bytes));
  sim_metrics_report(s, r);
  if (!teardown && !ALWAYS_TEARDOWN)
    return 0;

  sim_nodes_free(s);
  for (uint32_t i = 0; i < s->nparts; i++) {
    sim_net_free(&s->parts[i]);
    sim_evq_free(&s->parts[i].q);
    free(s->parts[i].started);
    pm_idpool_free(s->parts[i].ids);
    pm_idpool_free(s->parts[i].frames);
  }
  sim_metrics_free(s);
  sim_heap_free(&s->gq);
  free(s->parts);
  free((void *)s->claimed);
  free(s->killed);
  free(s->churn);
  free(s);
  return 0;
}
