/* Recently forwarded flood frames; see msgcache.h.
 *
 * The frames are copied, in arrival order, into chunks of 2 KiB, so that
 * keeping a frame costs no allocation of its own and forgetting the oldest
 * reads none of them: a chunk goes back to the allocator as a whole once
 * its last frame has gone. (A node of a busy mesh keeps thousands of
 * frames and forgets as many each minute; freeing them one by one, each
 * cold in memory, cost 7 % of a 10,000-node simulation.) A chunk's unused
 * end is shorter than the frame that did not fit, so the chunks take at
 * most about twice the byte budget. An entry holds no copy of the ID: the
 * frame has it, at id_offset (32 bytes less per frame, a quarter of what a
 * node keeps per message of a busy mesh, besides the frame).
 *
 * With a pool (the nodes of one simulator partition share one), the
 * frames live there instead, one copy for all, and an entry keeps the
 * frame's handle and its own bytes at var_offset (a Flood's hop count);
 * the chunks stay unused. */
#include "msgcache.h"

#include <string.h>

#include "idpool.h"

typedef struct entry {
  uint64_t at;
  union {
    uint8_t *frame; /* in a chunk */
    struct {        /* with a pool: the frame's handle there, and the */
      uint32_t h;   /* bytes at var_offset this copy has */
      uint8_t var[PM_MSGCACHE_VAR_LEN];
    } pooled;
  } u;
  uint32_t len;
  uint32_t background;
} entry;

/* Frames are stored in the order of the entries, so the oldest entry's
 * frame is always in the first chunk. */
typedef struct chunk {
  struct chunk *next;
  uint32_t cap, used; /* bytes of data */
  uint32_t frames;    /* entries whose frame is here */
  uint8_t data[];
} chunk;

/* One allocation of 2,032 bytes (2 KiB with a malloc header: larger
 * chunks leave holes of the heap unused and take fresh memory); a bigger
 * frame gets a chunk of its own size. */
#define CHUNK_BYTES (2048 - 16)
#define CHUNK_DATA (CHUNK_BYTES - offsetof(chunk, data))

struct pm_msgcache {
  const pm_allocator *alloc;
  pm_idpool *pool; /* NULL: frames in the chunks */
  size_t max_bytes;
  uint64_t ttl;
  size_t id_offset;  /* of the ID in each frame */
  size_t var_offset; /* with a pool: of the bytes each copy has its own */
  uint8_t *out;      /* with a pool: the frame pm_msgcache_get gave */
  size_t out_cap;
  entry *ring;
  size_t head, count, cap;
  size_t bytes;        /* of the frames held */
  chunk *first, *last; /* oldest and newest */
};

pm_msgcache *pm_msgcache_new(const pm_allocator *alloc, pm_idpool *pool,
                             size_t max_bytes, uint64_t ttl_ms,
                             size_t id_offset, size_t var_offset) {
  if (!alloc)
    alloc = pm_allocator_default();
  if (max_bytes == 0)
    return NULL;
  pm_msgcache *c = alloc->realloc(alloc->ud, NULL, sizeof *c);
  if (!c)
    return NULL;
  memset(c, 0, sizeof *c);
  c->alloc = alloc;
  c->max_bytes = max_bytes;
  c->ttl = ttl_ms;
  c->pool = pool;
  c->id_offset = id_offset;
  c->var_offset = var_offset;
  return c;
}

static void free_first_chunk(pm_msgcache *c) {
  chunk *k = c->first;
  c->first = k->next;
  if (!c->first)
    c->last = NULL;
  c->alloc->realloc(c->alloc->ud, k, 0);
}

static void drop_oldest(pm_msgcache *c) {
  entry *e = &c->ring[c->head];
  c->bytes -= e->len;
  c->head = (c->head + 1) % c->cap;
  c->count--;
  if (c->pool) {
    pm_idpool_unref(c->pool, e->u.pooled.h);
    return;
  }
  e->u.frame = NULL;
  /* The newest chunk stays, emptied, for the frames to come. */
  if (--c->first->frames == 0) {
    if (c->first != c->last)
      free_first_chunk(c);
    else
      c->first->used = 0;
  }
}

void pm_msgcache_free(pm_msgcache *c) {
  if (!c)
    return;
  while (c->pool && c->count)
    drop_oldest(c);
  while (c->first)
    free_first_chunk(c);
  c->alloc->realloc(c->alloc->ud, c->out, 0);
  if (c->ring)
    c->alloc->realloc(c->alloc->ud, c->ring, 0);
  c->alloc->realloc(c->alloc->ud, c, 0);
}

void pm_msgcache_expire(pm_msgcache *c, uint64_t now) {
  while (c->count && now >= c->ring[c->head].at &&
         now - c->ring[c->head].at >= c->ttl)
    drop_oldest(c);
}

static int grow(pm_msgcache *c) {
  size_t cap = c->cap ? c->cap * 2 : 32;
  entry *ring = c->alloc->realloc(c->alloc->ud, NULL, cap * sizeof *ring);
  if (!ring)
    return PM_ERR_NOMEM;
  for (size_t i = 0; i < c->count; i++)
    ring[i] = c->ring[(c->head + i) % c->cap];
  if (c->ring)
    c->alloc->realloc(c->alloc->ud, c->ring, 0);
  c->ring = ring;
  c->head = 0;
  c->cap = cap;
  return 0;
}

/* Room for `len` bytes at the end of the newest chunk, or NULL. */
static uint8_t *room(pm_msgcache *c, size_t len) {
  chunk *k = c->last;
  if (k && k->cap - k->used >= len) {
    uint8_t *p = k->data + k->used;
    k->used += (uint32_t)len;
    k->frames++;
    return p;
  }
  size_t cap = len > CHUNK_DATA ? len : CHUNK_DATA;
  chunk *n = c->alloc->realloc(c->alloc->ud, NULL, offsetof(chunk, data) + cap);
  if (!n)
    return NULL;
  n->next = NULL;
  n->cap = (uint32_t)cap;
  n->used = (uint32_t)len;
  n->frames = 1;
  if (k && k->frames == 0) { /* the only chunk: empty, and too small */
    c->alloc->realloc(c->alloc->ud, k, 0);
    k = NULL;
  }
  if (k)
    k->next = n;
  else
    c->first = n;
  c->last = n;
  return n->data;
}

void pm_msgcache_prefetch(const pm_msgcache *c) {
  if (c->last) {
    __builtin_prefetch(c->last, 1);
    __builtin_prefetch(c->last->data + c->last->used, 1);
  }
  if (c->cap)
    __builtin_prefetch(&c->ring[(c->head + c->count) % c->cap], 1);
}

/* The ID of entry `e`. */
static const uint8_t *id_of(const pm_msgcache *c, const entry *e) {
  return c->pool ? pm_idpool_id(c->pool, e->u.pooled.h)
                 : e->u.frame + c->id_offset;
}

/* Keeps `frame` in the pool: one copy for every cache that has it. */
static int put_pooled(pm_msgcache *c, entry *e, const uint8_t *frame,
                      size_t len) {
  uint32_t h = pm_idpool_ref_data(c->pool, frame + c->id_offset, frame, len);
  if (h == PM_IDPOOL_NONE)
    return PM_ERR_NOMEM;
  e->u.pooled.h = h;
  memcpy(e->u.pooled.var, frame + c->var_offset, PM_MSGCACHE_VAR_LEN);
  return 0;
}

int pm_msgcache_put(pm_msgcache *c, const uint8_t *frame, size_t len,
                    int background, uint64_t now) {
  /* No sweep by age here (one more cache miss per message): the byte
   * budget bounds the cache, and the node sweeps on its timer. */
  if (len < c->id_offset + PM_MSG_ID_LEN ||
      (c->pool && len < c->var_offset + PM_MSGCACHE_VAR_LEN))
    return PM_ERR_INVAL; /* before anything is evicted for it */
  if (len > c->max_bytes || len > UINT32_MAX)
    return 0;
  while (c->count && c->bytes + len > c->max_bytes)
    drop_oldest(c);
  if (c->count == c->cap && grow(c) != 0)
    return PM_ERR_NOMEM;
  entry *e = &c->ring[(c->head + c->count) % c->cap];
  if (c->pool) {
    int rc = put_pooled(c, e, frame, len);
    if (rc)
      return rc;
  } else {
    uint8_t *copy = room(c, len);
    if (!copy)
      return PM_ERR_NOMEM;
    memcpy(copy, frame, len);
    e->u.frame = copy;
  }
  e->at = now;
  e->len = (uint32_t)len;
  e->background = background != 0;
  c->count++;
  c->bytes += len;
  return 0;
}

const uint8_t *pm_msgcache_get(pm_msgcache *c, const uint8_t id[PM_MSG_ID_LEN],
                               size_t *len, uint64_t now) {
  pm_msgcache_expire(c, now);
  /* Newest first: a Graft asks for what was announced a moment ago. The
   * scan is linear, which is fine for the rare Graft. */
  for (size_t i = c->count; i-- > 0;) {
    entry *e = &c->ring[(c->head + i) % c->cap];
    if (memcmp(id_of(c, e), id, PM_MSG_ID_LEN) != 0)
      continue;
    if (!c->pool) {
      *len = e->len;
      return e->u.frame;
    }
    /* The pool's copy, with this cache's own bytes at var_offset. */
    const uint8_t *f = pm_idpool_data(c->pool, e->u.pooled.h, len);
    if (*len > c->out_cap) {
      uint8_t *o = c->alloc->realloc(c->alloc->ud, c->out, *len);
      if (!o)
        return NULL;
      c->out = o;
      c->out_cap = *len;
    }
    memcpy(c->out, f, *len);
    memcpy(c->out + c->var_offset, e->u.pooled.var, PM_MSGCACHE_VAR_LEN);
    return c->out;
  }
  return NULL;
}

size_t pm_msgcache_recent(const pm_msgcache *c, uint64_t since, uint8_t *ids,
                          size_t max) {
  size_t n = 0;
  for (uint32_t background = 0; background < 2; background++)
    for (size_t i = c->count; i-- > 0 && n < max;) {
      const entry *e = &c->ring[(c->head + i) % c->cap];
      if (e->at < since)
        break;
      if (e->background == background)
        memcpy(ids + n++ * PM_MSG_ID_LEN, id_of(c, e), PM_MSG_ID_LEN);
    }
  return n;
}

size_t pm_msgcache_bytes(const pm_msgcache *c) {
  return c->bytes;
}
size_t pm_msgcache_count(const pm_msgcache *c) {
  return c->count;
}
