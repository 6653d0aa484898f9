/* Per-author replay windows; see authors.h. Entries live in a
 * pm_idtable. */
#include "authors.h"

#include <string.h>

#include "idtable.h"

#define WORDS (PM_AUTHORS_WINDOW / 64)

typedef struct entry { /* then the author's ID, or its handle in a pool */
  uint64_t max_seq;
  uint64_t seen[WORDS]; /* bit k: max_seq - k was accepted */
  uint64_t used;        /* when last accepted, in accept() calls */
} entry;

struct pm_authors {
  pm_idtable tab;
  uint64_t clock;
};

pm_authors *pm_authors_new(const pm_allocator *alloc, pm_idpool *ids,
                           uint32_t capacity) {
  if (!alloc)
    alloc = pm_allocator_default();
  if (capacity == 0)
    return NULL;
  pm_authors *a = alloc->realloc(alloc->ud, NULL, sizeof *a);
  if (!a)
    return NULL;
  memset(a, 0, sizeof *a);
  if (pm_idtable_init(&a->tab, alloc, ids, sizeof(entry), capacity)) {
    pm_authors_free(a);
    return NULL;
  }
  return a;
}

void pm_authors_free(pm_authors *a) {
  if (!a)
    return;
  const pm_allocator *alloc = a->tab.alloc;
  pm_idtable_fini(&a->tab);
  alloc->realloc(alloc->ud, a, 0);
}

static entry *find(const pm_authors *a, const uint8_t *author) {
  uint32_t i = pm_idtable_find(&a->tab, author);
  return i == PM_IDTABLE_NONE ? NULL : pm_idtable_at(&a->tab, i);
}

int pm_authors_fresh(const pm_authors *a, const uint8_t author[PM_NODE_ID_LEN],
                     uint64_t seq) {
  const entry *e = find(a, author);
  if (!e)
    return 1;
  if (seq > e->max_seq)
    return 1;
  uint64_t k = e->max_seq - seq;
  if (k >= PM_AUTHORS_WINDOW)
    return 0; /* older than the window: cannot tell, so refuse */
  return !(e->seen[k / 64] >> (k % 64) & 1);
}

void pm_authors_prefetch(const pm_authors *a,
                         const uint8_t author[PM_NODE_ID_LEN]) {
  pm_idtable_prefetch(&a->tab, author);
}

void pm_authors_prefetch_entry(const pm_authors *a,
                               const uint8_t author[PM_NODE_ID_LEN]) {
  pm_idtable_prefetch_entry(&a->tab, author);
}

/* An entry for a new author; when full, the least recently used one makes
 * room. */
static entry *add(pm_authors *a, const uint8_t *author) {
  uint32_t count = a->tab.count;
  if (count && count >= a->tab.capacity) {
    uint32_t lru = 0;
    for (uint32_t i = 1; i < count; i++)
      if (((const entry *)pm_idtable_at(&a->tab, i))->used <
          ((const entry *)pm_idtable_at(&a->tab, lru))->used)
        lru = i;
    pm_idtable_remove(&a->tab, lru);
  }
  return pm_idtable_add(&a->tab, author);
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
  entry *e = find(a, author);
  if (!e) {
    e = add(a, author);
    if (!e)
      return PM_ERR_NOMEM;
    e->max_seq = seq;
    e->seen[0] = 1;
  } else if (seq > e->max_seq) {
    shift(e->seen, seq - e->max_seq);
    e->max_seq = seq;
    e->seen[0] |= 1;
  } else if (e->max_seq - seq < PM_AUTHORS_WINDOW) {
    uint64_t k = e->max_seq - seq;
    e->seen[k / 64] |= (uint64_t)1 << (k % 64);
  }
  e->used = ++a->clock;
  return 0;
}

uint32_t pm_authors_count(const pm_authors *a) {
  return a->tab.count;
}
