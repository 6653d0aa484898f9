/* The ID pool; see peermesh/idpool.h and idpool.h.
 *
 * The IDs live in a pm_idtable (with no pool of its own), whose positions
 * move when an entry is removed; handles stay put: `pos` maps a handle to
 * its entry's position, and each entry names its handle, so the entry
 * that moves into a removed one's place has its handle's position
 * updated. Handles no ID uses form a free list through `pos`. */
#include "idpool.h"

#include <string.h>

#include "idtable.h"

#define FREE_BIT 0x80000000u /* in pos: a free handle; the rest: the next */
#define FREE_END 0x7fffffffu

typedef struct entry {
  uint32_t refs;
  uint32_t handle;
  uint8_t *data; /* pm_idpool_ref_data's copy, or NULL */
  size_t len;
} entry;

struct pm_idpool {
  pm_idtable tab;
  uint32_t *pos;      /* per handle: its position in tab, or a free link */
  uint32_t npos, cap; /* handles ever given, and room in pos */
  uint32_t free_head; /* FREE_END: no free handle */
};

pm_idpool *pm_idpool_new(const pm_allocator *alloc) {
  if (!alloc)
    alloc = pm_allocator_default();
  pm_idpool *p = alloc->realloc(alloc->ud, NULL, sizeof *p);
  if (!p)
    return NULL;
  memset(p, 0, sizeof *p);
  p->free_head = FREE_END;
  if (pm_idtable_init(&p->tab, alloc, NULL, sizeof(entry), PM_IDTABLE_MAX)) {
    alloc->realloc(alloc->ud, p, 0);
    return NULL;
  }
  return p;
}

void pm_idpool_free(pm_idpool *p) {
  if (!p)
    return;
  const pm_allocator *a = p->tab.alloc;
  for (uint32_t i = 0; i < p->tab.count; i++) /* none, if all unref'd */
    a->realloc(a->ud, ((entry *)pm_idtable_at(&p->tab, i))->data, 0);
  pm_idtable_fini(&p->tab);
  a->realloc(a->ud, p->pos, 0);
  a->realloc(a->ud, p, 0);
}

uint32_t pm_idpool_count(const pm_idpool *p) {
  return p->tab.count;
}

uint32_t pm_idpool_find(const pm_idpool *p, const uint8_t id[PM_NODE_ID_LEN]) {
  uint32_t i = pm_idtable_find(&p->tab, id);
  return i == PM_IDTABLE_NONE
             ? PM_IDPOOL_NONE
             : ((const entry *)pm_idtable_at(&p->tab, i))->handle;
}

/* A handle for a new entry: a free one, else the next never given. */
static uint32_t new_handle(pm_idpool *p) {
  if (p->free_head != FREE_END) {
    uint32_t h = p->free_head;
    p->free_head = p->pos[h] & ~FREE_BIT;
    return h;
  }
  if (p->npos == p->cap) {
    uint32_t cap = p->cap ? p->cap * 2 : 64;
    uint32_t *pos =
        p->tab.alloc->realloc(p->tab.alloc->ud, p->pos, cap * sizeof *pos);
    if (!pos)
      return PM_IDPOOL_NONE;
    p->pos = pos;
    p->cap = cap;
  }
  return p->npos++;
}

static void free_handle(pm_idpool *p, uint32_t h) {
  p->pos[h] = FREE_BIT | p->free_head;
  p->free_head = h;
}

uint32_t pm_idpool_ref_data(pm_idpool *p, const uint8_t id[PM_NODE_ID_LEN],
                            const uint8_t *data, size_t len) {
  uint32_t slot, i = pm_idtable_lookup(&p->tab, id, &slot);
  if (i != PM_IDTABLE_NONE) {
    entry *e = pm_idtable_at(&p->tab, i);
    e->refs++;
    return e->handle;
  }
  const pm_allocator *a = p->tab.alloc;
  uint8_t *copy = NULL;
  if (data) {
    copy = a->realloc(a->ud, NULL, len ? len : 1);
    if (!copy)
      return PM_IDPOOL_NONE;
    memcpy(copy, data, len);
  }
  uint32_t h = new_handle(p);
  entry *e = h == PM_IDPOOL_NONE ? NULL : pm_idtable_add_at(&p->tab, id, slot);
  if (!e) {
    if (h != PM_IDPOOL_NONE)
      free_handle(p, h);
    a->realloc(a->ud, copy, 0);
    return PM_IDPOOL_NONE;
  }
  e->refs = 1;
  e->handle = h;
  e->data = copy;
  e->len = len;
  p->pos[h] = p->tab.count - 1;
  return h;
}

uint32_t pm_idpool_ref(pm_idpool *p, const uint8_t id[PM_NODE_ID_LEN]) {
  return pm_idpool_ref_data(p, id, NULL, 0);
}

void pm_idpool_unref(pm_idpool *p, uint32_t h) {
  uint32_t i = p->pos[h];
  entry *e = pm_idtable_at(&p->tab, i);
  if (--e->refs)
    return;
  p->tab.alloc->realloc(p->tab.alloc->ud, e->data, 0);
  pm_idtable_remove(&p->tab, i);
  free_handle(p, h);
  if (i < p->tab.count)
    p->pos[((const entry *)pm_idtable_at(&p->tab, i))->handle] = i;
}

const uint8_t *pm_idpool_id(const pm_idpool *p, uint32_t h) {
  return pm_idtable_key(&p->tab, pm_idtable_at(&p->tab, p->pos[h]));
}

const uint8_t *pm_idpool_data(const pm_idpool *p, uint32_t h, size_t *len) {
  const entry *e = pm_idtable_at(&p->tab, p->pos[h]);
  *len = e->len;
  return e->data;
}

void pm_idpool_prefetch(const pm_idpool *p, const uint8_t id[PM_NODE_ID_LEN]) {
  pm_idtable_prefetch(&p->tab, id);
}

void pm_idpool_prefetch_entry(const pm_idpool *p,
                              const uint8_t id[PM_NODE_ID_LEN]) {
  pm_idtable_prefetch_entry(&p->tab, id);
}

void pm_idpool_prefetch_handle(const pm_idpool *p, uint32_t h) {
  const uint8_t *e = pm_idtable_at(&p->tab, p->pos[h]);
  __builtin_prefetch(e);
  __builtin_prefetch(e + p->tab.stride - 1);
}
