/* The simulator's event queues.
 *
 * Events are ordered by (time, insertion sequence), so two events due at the
 * same virtual millisecond run in the order they were scheduled and a run
 * never depends on how a queue happens to break ties.
 *
 * sim_heap is a binary min-heap: small queues (the global timeline) and the
 * far future. sim_evq, one per partition, is a timing wheel: one FIFO bucket
 * per millisecond for the next SIM_WHEEL_MS, the heap beyond. An event
 * leaves the heap for its bucket as soon as its time comes within the wheel's
 * reach, before anything else can be scheduled for that millisecond, so the
 * wheel keeps the exact (time, sequence) order at O(1) per event. */
#ifndef SIM_EVQ_H
#define SIM_EVQ_H

#include <stddef.h>
#include <stdint.h>

#define SIM_WHEEL_MS 8192 /* a power of two */

typedef struct sim_event {
  uint64_t time; /* virtual ms */
  uint32_t kind;
  uint32_t a, b; /* meaning depends on kind */
} sim_event;

typedef struct sim_heap_item {
  uint64_t time;
  uint64_t seq; /* insertion order, breaks ties */
  uint32_t kind, a, b;
} sim_heap_item;

typedef struct sim_heap {
  sim_heap_item *v;
  size_t len, cap;
  uint64_t next_seq;
} sim_heap;

void sim_heap_push(sim_heap *h, uint64_t time, uint32_t kind, uint32_t a,
                   uint32_t b);
/* Removes the earliest event into `out`. Returns 1, or 0 when empty. */
int sim_heap_pop(sim_heap *h, sim_event *out);
/* The earliest event's time, or UINT64_MAX when empty. */
uint64_t sim_heap_peek_time(const sim_heap *h);
void sim_heap_free(sim_heap *h);

typedef struct sim_wheel_item {
  uint32_t kind, a, b;
} sim_wheel_item;

typedef struct sim_bucket {
  sim_wheel_item *v;
  uint32_t len, cap;
} sim_bucket;

typedef struct sim_evq {
  sim_bucket *wheel; /* bucket t % SIM_WHEEL_MS holds the events of ms t */
  uint64_t cur;      /* the millisecond being drained */
  uint32_t pos;      /* next event of the current bucket */
  size_t count;      /* events in the wheel */
  sim_heap far;      /* events SIM_WHEEL_MS or more after cur */
} sim_evq;

void sim_evq_init(sim_evq *q);
void sim_evq_free(sim_evq *q);
/* Schedules an event at `time` >= the time of the last popped event; aborts
 * the process when out of memory. */
void sim_evq_push(sim_evq *q, uint64_t time, uint32_t kind, uint32_t a,
                  uint32_t b);
/* Removes the earliest event due before `limit` into `out`. Returns 1, or 0
 * when there is none; the queue then stands at limit - 1. */
int sim_evq_pop(sim_evq *q, uint64_t limit, sim_event *out);
/* The k-th event after the last one popped, if it is due in the same
 * millisecond (k = 0 is the next), else NULL. Only a hint, for prefetching:
 * it may be popped later than another one pushed meanwhile. */
const sim_wheel_item *sim_evq_peek(const sim_evq *q, uint32_t k);
/* Events waiting. */
size_t sim_evq_len(const sim_evq *q);

#endif
