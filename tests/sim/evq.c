#include "evq.h"

#include <stdio.h>
#include <stdlib.h>

#define WHEEL_MASK ((uint64_t)SIM_WHEEL_MS - 1)

static void *evq_realloc(void *p, size_t size) {
  void *q = realloc(p, size);
  if (!q) {
    fprintf(stderr, "peermesh-sim: out of memory (event queue)\n");
    abort();
  }
  return q;
}

/* ---- binary heap ---------------------------------------------------------
 */

static int item_before(const sim_heap_item *x, const sim_heap_item *y) {
  return x->time < y->time || (x->time == y->time && x->seq < y->seq);
}

void sim_heap_push(sim_heap *h, uint64_t time, uint32_t kind, uint32_t a,
                   uint32_t b) {
  if (h->len == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 256;
    h->v = evq_realloc(h->v, h->cap * sizeof *h->v);
  }
  sim_heap_item e = {time, h->next_seq++, kind, a, b};
  size_t i = h->len++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!item_before(&e, &h->v[parent]))
      break;
    h->v[i] = h->v[parent];
    i = parent;
  }
  h->v[i] = e;
}

int sim_heap_pop(sim_heap *h, sim_event *out) {
  if (h->len == 0)
    return 0;
  out->time = h->v[0].time;
  out->kind = h->v[0].kind;
  out->a = h->v[0].a;
  out->b = h->v[0].b;
  sim_heap_item last = h->v[--h->len];
  size_t n = h->len, i = 0;
  if (n == 0)
    return 1;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && item_before(&h->v[c + 1], &h->v[c]))
      c++;
    if (!item_before(&h->v[c], &last))
      break;
    h->v[i] = h->v[c];
    i = c;
  }
  h->v[i] = last;
  return 1;
}

uint64_t sim_heap_peek_time(const sim_heap *h) {
  return h->len ? h->v[0].time : UINT64_MAX;
}

void sim_heap_free(sim_heap *h) {
  free(h->v);
  h->v = NULL;
  h->len = h->cap = 0;
  h->next_seq = 0;
}

/* ---- timing wheel --------------------------------------------------------
 */

void sim_evq_init(sim_evq *q) {
  q->wheel = calloc(SIM_WHEEL_MS, sizeof *q->wheel);
  if (!q->wheel) {
    fprintf(stderr, "peermesh-sim: out of memory (event queue)\n");
    abort();
  }
  q->cur = 0;
  q->pos = 0;
  q->count = 0;
  q->far.v = NULL;
  q->far.len = q->far.cap = 0;
  q->far.next_seq = 0;
}

void sim_evq_free(sim_evq *q) {
  if (q->wheel)
    for (size_t i = 0; i < SIM_WHEEL_MS; i++)
      free(q->wheel[i].v);
  free(q->wheel);
  q->wheel = NULL;
  sim_heap_free(&q->far);
}

static void bucket_add(sim_evq *q, uint64_t time, uint32_t kind, uint32_t a,
                       uint32_t b) {
  sim_bucket *bk = &q->wheel[time & WHEEL_MASK];
  if (bk->len == bk->cap) {
    bk->cap = bk->cap ? bk->cap * 2 : 16;
    bk->v = evq_realloc(bk->v, bk->cap * sizeof *bk->v);
  }
  sim_wheel_item *it = &bk->v[bk->len++];
  it->kind = kind;
  it->a = a;
  it->b = b;
  q->count++;
}

void sim_evq_push(sim_evq *q, uint64_t time, uint32_t kind, uint32_t a,
                  uint32_t b) {
  if (time < q->cur) {
    fprintf(stderr, "peermesh-sim: event scheduled in the past (%llu < %llu)\n",
            (unsigned long long)time, (unsigned long long)q->cur);
    abort();
  }
  if (time - q->cur < SIM_WHEEL_MS)
    bucket_add(q, time, kind, a, b);
  else
    sim_heap_push(&q->far, time, kind, a, b);
}

/* Moves the far events that came within reach into their buckets, in
 * (time, sequence) order, before anything else can be added there. */
static void migrate(sim_evq *q) {
  while (q->far.len && q->far.v[0].time - q->cur < SIM_WHEEL_MS) {
    sim_event e;
    sim_heap_pop(&q->far, &e);
    bucket_add(q, e.time, e.kind, e.a, e.b);
  }
}

int sim_evq_pop(sim_evq *q, uint64_t limit, sim_event *out) {
  for (;;) {
    if (q->cur >= limit)
      return 0;
    sim_bucket *bk = &q->wheel[q->cur & WHEEL_MASK];
    if (q->pos < bk->len) {
      const sim_wheel_item *it = &bk->v[q->pos++];
      out->time = q->cur;
      out->kind = it->kind;
      out->a = it->a;
      out->b = it->b;
      q->count--;
      return 1;
    }
    if (q->cur + 1 >= limit)
      return 0;
    bk->len = 0;
    q->pos = 0;
    uint64_t next = q->cur + 1;
    if (q->count == 0) {
      /* Nothing in the wheel: skip to the next far event or the limit. */
      uint64_t far = sim_heap_peek_time(&q->far);
      uint64_t target = far < limit - 1 ? far : limit - 1;
      if (target > next)
        next = target;
    }
    q->cur = next;
    migrate(q);
  }
}

size_t sim_evq_len(const sim_evq *q) {
  return q->count + q->far.len;
}

const sim_wheel_item *sim_evq_peek(const sim_evq *q, uint32_t k) {
  const sim_bucket *bk = &q->wheel[q->cur & WHEEL_MASK];
  return q->pos + k < bk->len ? &bk->v[q->pos + k] : NULL;
}
