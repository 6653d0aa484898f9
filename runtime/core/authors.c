/* Per-author replay windows; see authors.h. Entries live in one array with
 * a chained hash index over it, so lookups cost one short chain walk. */
#include "authors.h"

#include <string.h>

#define WORDS (PM_AUTHORS_WINDOW / 64)
#define NIL UINT32_MAX

typedef struct entry {
  uint8_t author[PM_NODE_ID_LEN];
  uint64_t max_seq;
  uint64_t seen[WORDS]; /* bit k: max_seq - k was accepted */
  uint64_t used;        /* when last accepted, in accept() calls */
  uint32_t next;        /* hash chain */
} entry;

struct pm_authors {
  const pm_allocator *alloc;
  uint32_t cap, count, nbuckets;
  uint64_t clock;
  entry *entries;
  uint32_t *buckets;
};

static uint32_t hash(const pm_authors *a, const uint8_t *author) {
  uint32_t h;
  memcpy(&h, author, sizeof h); /* keys are public keys: already uniform */
  return h % a->nbuckets;
}

/* Rebuilds the index with `nbuckets` chains. */
static int rehash(pm_authors *a, uint32_t nbuckets) {
  uint32_t *b = a->alloc->realloc(a->alloc->ud, NULL, nbuckets * sizeof *b);
  if (!b)
    return PM_ERR_NOMEM;
  if (a->buckets)
    a->alloc->realloc(a->alloc->ud, a->buckets, 0);
  a->buckets = b;
  a->nbuckets = nbuckets;
  for (uint32_t i = 0; i < nbuckets; i++)
    b[i] = NIL;
  for (uint32_t i = 0; i < a->count; i++) {
    uint32_t *head = &b[hash(a, a->entries[i].author)];
    a->entries[i].next = *head;
    *head = i;
  }
  return 0;
}

pm_authors *pm_authors_new(const pm_allocator *alloc, uint32_t capacity) {
  if (!alloc)
    alloc = pm_allocator_default();
  if (capacity == 0)
    return NULL;
  pm_authors *a = alloc->realloc(alloc->ud, NULL, sizeof *a);
  if (!a)
    return NULL;
  memset(a, 0, sizeof *a);
  a->alloc = alloc;
  a->cap = capacity;
  if (rehash(a, capacity < 64 ? capacity : 64)) {
    alloc->realloc(alloc->ud, a, 0);
    return NULL;
  }
  return a;
}

void pm_authors_free(pm_authors *a) {
  if (!a)
    return;
  if (a->entries)
    a->alloc->realloc(a->alloc->ud, a->entries, 0);
  a->alloc->realloc(a->alloc->ud, a->buckets, 0);
  a->alloc->realloc(a->alloc->ud, a, 0);
}

static uint32_t find(const pm_authors *a, const uint8_t *author) {
  for (uint32_t i = a->buckets[hash(a, author)]; i != NIL;
       i = a->entries[i].next)
    if (memcmp(a->entries[i].author, author, PM_NODE_ID_LEN) == 0)
      return i;
  return NIL;
}

int pm_authors_fresh(const pm_authors *a, const uint8_t author[PM_NODE_ID_LEN],
                     uint64_t seq) {
  uint32_t i = find(a, author);
  if (i == NIL)
    return 1;
  const entry *e = &a->entries[i];
  if (seq > e->max_seq)
    return 1;
  uint64_t k = e->max_seq - seq;
  if (k >= PM_AUTHORS_WINDOW)
    return 0; /* older than the window: cannot tell, so refuse */
  return !(e->seen[k / 64] >> (k % 64) & 1);
}

static void unlink_entry(pm_authors *a, uint32_t i) {
  uint32_t *p = &a->buckets[hash(a, a->entries[i].author)];
  while (*p != i)
    p = &a->entries[*p].next;
  *p = a->entries[i].next;
}

/* A slot for a new author: a fresh one while below capacity, else the
 * least recently used one, unlinked. */
static uint32_t new_slot(pm_authors *a) {
  if (a->count < a->cap) {
    /* Chains stay short: at most one author per chain on average. */
    if (a->count == a->nbuckets && a->nbuckets < a->cap &&
        rehash(a, a->nbuckets * 2 < a->cap ? a->nbuckets * 2 : a->cap))
      return NIL;
    if (a->count % 64 == 0) {
      size_t n = a->count + 64 < a->cap ? a->count + 64 : a->cap;
      entry *ne = a->alloc->realloc(a->alloc->ud, NULL, n * sizeof *ne);
      if (!ne)
        return NIL;
      if (a->count)
        memcpy(ne, a->entries, a->count * sizeof *ne);
      if (a->entries)
        a->alloc->realloc(a->alloc->ud, a->entries, 0);
      a->entries = ne;
    }
    return a->count++;
  }
  uint32_t lru = 0;
  for (uint32_t i = 1; i < a->count; i++)
    if (a->entries[i].used < a->entries[lru].used)
      lru = i;
  unlink_entry(a, lru);
  return lru;
}

static void shift(uint64_t *seen, uint64_t by) {
  if (by >= PM_AUTHORS_WINDOW) {
    memset(seen, 0, WORDS * sizeof *seen);
    return;
  }
  unsigned words = (unsigned)(by / 64), bits = (unsigned)(by % 64);
  for (int w = WORDS - 1; w >= 0; w--) {
    uint64_t v = w >= (int)words ? seen[w - words] << bits : 0;
    if (bits && w > (int)words)
      v |= seen[w - words - 1] >> (64 - bits);
    seen[w] = v;
  }
}

int pm_authors_accept(pm_authors *a, const uint8_t author[PM_NODE_ID_LEN],
                      uint64_t seq) {
  uint32_t i = find(a, author);
  if (i == NIL) {
    i = new_slot(a);
    if (i == NIL)
      return PM_ERR_NOMEM;
    entry *e = &a->entries[i];
    memset(e, 0, sizeof *e);
    memcpy(e->author, author, PM_NODE_ID_LEN);
    e->max_seq = seq;
    e->seen[0] = 1;
    uint32_t *b = &a->buckets[hash(a, author)];
    e->next = *b;
    *b = i;
  } else {
    entry *e = &a->entries[i];
    if (seq > e->max_seq) {
      shift(e->seen, seq - e->max_seq);
      e->max_seq = seq;
      e->seen[0] |= 1;
    } else if (e->max_seq - seq < PM_AUTHORS_WINDOW) {
      uint64_t k = e->max_seq - seq;
      e->seen[k / 64] |= (uint64_t)1 << (k % 64);
    }
  }
  a->entries[i].used = ++a->clock;
  return 0;
}

uint32_t pm_authors_count(const pm_authors *a) {
  return a->count;
}
