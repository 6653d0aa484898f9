#include "evq.h"

#include <stdio.h>
#include <stdlib.h>

static int ev_before(const sim_event *x, const sim_event *y) {
  return x->time < y->time || (x->time == y->time && x->seq < y->seq);
}

void sim_evq_init(sim_evq *q) {
  q->heap = NULL;
  q->len = q->cap = 0;
  q->next_seq = 0;
}

void sim_evq_free(sim_evq *q) {
  free(q->heap);
  sim_evq_init(q);
}

void sim_evq_push(sim_evq *q, uint64_t time, uint32_t kind, uint32_t a,
                  uint32_t b) {
  if (q->len == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 1024;
    sim_event *h = realloc(q->heap, cap * sizeof *h);
    if (!h) {
      fprintf(stderr, "peermesh-sim: out of memory (event queue)\n");
      abort();
    }
    q->heap = h;
    q->cap = cap;
  }
  sim_event e = {time, q->next_seq++, kind, a, b};
  size_t i = q->len++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!ev_before(&e, &q->heap[parent]))
      break;
    q->heap[i] = q->heap[parent];
    i = parent;
  }
  q->heap[i] = e;
}

int sim_evq_pop(sim_evq *q, sim_event *out) {
  if (q->len == 0)
    return 0;
  *out = q->heap[0];
  sim_event last = q->heap[--q->len];
  size_t n = q->len, i = 0;
  if (n == 0)
    return 1;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && ev_before(&q->heap[c + 1], &q->heap[c]))
      c++;
    if (!ev_before(&q->heap[c], &last))
      break;
    q->heap[i] = q->heap[c];
    i = c;
  }
  q->heap[i] = last;
  return 1;
}

uint64_t sim_evq_peek_time(const sim_evq *q) {
  return q->len ? q->heap[0].time : UINT64_MAX;
}
