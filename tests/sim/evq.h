/* The simulator's event queue: a binary min-heap of timed events.
 *
 * Events are ordered by (time, insertion sequence), so two events due at the
 * same virtual millisecond run in the order they were scheduled and a run
 * never depends on how the heap happens to break ties. */
#ifndef SIM_EVQ_H
#define SIM_EVQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct sim_event {
  uint64_t time; /* virtual ms */
  uint64_t seq;  /* insertion order, breaks ties */
  uint32_t kind;
  uint32_t a, b; /* meaning depends on kind */
} sim_event;

typedef struct sim_evq {
  sim_event *heap;
  size_t len, cap;
  uint64_t next_seq;
} sim_evq;

void sim_evq_init(sim_evq *q);
void sim_evq_free(sim_evq *q);
/* Schedules an event; aborts the process when out of memory. */
void sim_evq_push(sim_evq *q, uint64_t time, uint32_t kind, uint32_t a,
                  uint32_t b);
/* Removes the earliest event into `out`. Returns 1, or 0 when empty. */
int sim_evq_pop(sim_evq *q, sim_event *out);
/* The earliest event's time, or UINT64_MAX when empty. */
uint64_t sim_evq_peek_time(const sim_evq *q);

#endif
