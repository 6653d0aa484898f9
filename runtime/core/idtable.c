/* The ID-keyed table; see idtable.h. */
#include "idtable.h"

#include <string.h>

#define POS_BITS 24
#define POS_MASK ((1u << POS_BITS) - 1)
#define TAG_MASK (~POS_MASK)

static void *mem(const pm_idtable *t, void *p, size_t size) {
  return t->alloc->realloc(t->alloc->ud, p, size);
}

static uint32_t home(const pm_idtable *t, const uint8_t *id) {
  uint32_t h = (uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 |
               (uint32_t)id[2] << 8 | id[3];
  return h >> (32 - t->slot_bits);
}

static uint32_t slot_tag(const uint8_t *id) {
  return (uint32_t)id[4] << POS_BITS;
}

static const uint8_t *entry_of(const pm_idtable *t, uint32_t slot) {
  return pm_idtable_at(t, (slot & POS_MASK) - 1);
}

/* An entry's handle in the pool. */
static uint32_t handle_of(const pm_idtable *t, const uint8_t *e) {
  uint32_t h;
  memcpy(&h, e + t->esize, sizeof h);
  return h;
}

/* The slot holding `id`, or the empty one where it would go. With a pool,
 * entries hold handles: the handle of `id` is looked up only once some
 * slot's tag matches (a table not holding `id` seldom has one), and when
 * the pool has no handle for it, no entry can hold it. */
static uint32_t find_slot(const pm_idtable *t, const uint8_t *id) {
  uint32_t mask = t->nslots - 1, tag = slot_tag(id);
  uint32_t h = PM_IDPOOL_NONE;
  int have_h = 0;
  for (uint32_t s = home(t, id);; s = (s + 1) & mask) {
    uint32_t v = t->slots[s];
    if (!v)
      return s;
    if ((v & TAG_MASK) != tag)
      continue;
    const uint8_t *e = entry_of(t, v);
    if (!t->pool) {
      if (memcmp(e + t->esize, id, PM_NODE_ID_LEN) == 0)
        return s;
      continue;
    }
    if (!have_h) {
      h = pm_idpool_find(t->pool, id);
      have_h = 1;
    }
    if (h != PM_IDPOOL_NONE && handle_of(t, e) == h)
      return s;
  }
}

/* The first empty slot from the home of `id`, which is not in the index. */
static uint32_t empty_slot(const pm_idtable *t, const uint8_t *id) {
  uint32_t mask = t->nslots - 1, s = home(t, id);
  while (t->slots[s])
    s = (s + 1) & mask;
  return s;
}

/* Rebuilds the index with `nslots` slots. */
static int reindex(pm_idtable *t, uint32_t nslots) {
  uint32_t *sl = mem(t, NULL, (size_t)nslots * sizeof *sl);
  if (!sl)
    return PM_ERR_NOMEM;
  mem(t, t->slots, 0);
  memset(sl, 0, (size_t)nslots * sizeof *sl);
  t->slots = sl;
  t->nslots = nslots;
  t->slot_bits = 0;
  while ((1u << t->slot_bits) < nslots)
    t->slot_bits++;
  for (uint32_t i = 0; i < t->count; i++) {
    if (t->pool && i + 8 < t->count)
      pm_idpool_prefetch_handle(t->pool, handle_of(t, pm_idtable_at(t, i + 8)));
    const uint8_t *id = pm_idtable_key(t, pm_idtable_at(t, i));
    t->slots[empty_slot(t, id)] = slot_tag(id) | (i + 1);
  }
  return 0;
}

int pm_idtable_init(pm_idtable *t, const pm_allocator *alloc, pm_idpool *pool,
                    size_t esize, uint32_t capacity) {
  memset(t, 0, sizeof *t);
  t->alloc = alloc ? alloc : pm_allocator_default();
  t->pool = pool;
  t->esize = esize;
  /* Entries stay aligned as the owner's part is: to 8 bytes when its size
   * is a multiple of 8, else to 4. */
  size_t align = esize % 8 == 0 ? 8 : 4;
  size_t key = pool ? sizeof(uint32_t) : PM_NODE_ID_LEN;
  t->stride = (esize + key + align - 1) / align * align;
  t->capacity = capacity < PM_IDTABLE_MAX ? capacity : PM_IDTABLE_MAX;
  return reindex(t, 16);
}

void pm_idtable_fini(pm_idtable *t) {
  if (t->pool)
    for (uint32_t i = 0; i < t->count; i++)
      pm_idpool_unref(t->pool, handle_of(t, pm_idtable_at(t, i)));
  for (uint32_t b = 0; b < t->nblocks; b++)
    mem(t, t->blocks[b], 0);
  mem(t, t->blocks, 0);
  mem(t, t->slots, 0);
  memset(t, 0, sizeof *t);
}

uint32_t pm_idtable_find(const pm_idtable *t,
                         const uint8_t id[PM_NODE_ID_LEN]) {
  uint32_t slot;
  return pm_idtable_lookup(t, id, &slot);
}

uint32_t pm_idtable_lookup(const pm_idtable *t,
                           const uint8_t id[PM_NODE_ID_LEN], uint32_t *slot) {
  *slot = find_slot(t, id);
  uint32_t v = t->slots[*slot];
  return v ? (v & POS_MASK) - 1 : PM_IDTABLE_NONE;
}

/* Room for one more entry: the first block grows by half up to a whole
 * block, then whole blocks are added. */
static int grow(pm_idtable *t) {
  if (t->cap < PM_IDTABLE_BLOCK) {
    uint32_t ncap = t->cap ? t->cap + t->cap / 2 : 16;
    if (ncap > PM_IDTABLE_BLOCK)
      ncap = PM_IDTABLE_BLOCK;
    if (ncap > t->capacity)
      ncap = t->capacity;
    if (!t->blocks) {
      t->blocks = mem(t, NULL, sizeof *t->blocks);
      if (!t->blocks)
        return PM_ERR_NOMEM;
      t->blocks[0] = NULL;
      t->blocks_cap = t->nblocks = 1;
    }
    uint8_t *b = mem(t, t->blocks[0], (size_t)ncap * t->stride);
    if (!b)
      return PM_ERR_NOMEM;
    t->blocks[0] = b;
    t->cap = ncap;
    return 0;
  }
  if (t->nblocks == t->blocks_cap) {
    uint32_t nb = t->blocks_cap * 2;
    uint8_t **bl = mem(t, t->blocks, (size_t)nb * sizeof *bl);
    if (!bl)
      return PM_ERR_NOMEM;
    t->blocks = bl;
    t->blocks_cap = nb;
  }
  uint8_t *b = mem(t, NULL, (size_t)PM_IDTABLE_BLOCK * t->stride);
  if (!b)
    return PM_ERR_NOMEM;
  t->blocks[t->nblocks++] = b;
  t->cap += PM_IDTABLE_BLOCK;
  return 0;
}

void *pm_idtable_add(pm_idtable *t, const uint8_t id[PM_NODE_ID_LEN]) {
  return pm_idtable_add_at(t, id, empty_slot(t, id));
}

void *pm_idtable_add_at(pm_idtable *t, const uint8_t id[PM_NODE_ID_LEN],
                        uint32_t slot) {
  if (t->count >= t->capacity)
    return NULL;
  if (t->count == t->cap && grow(t))
    return NULL;
  uint32_t h = 0;
  if (t->pool && (h = pm_idpool_ref(t->pool, id)) == PM_IDPOOL_NONE)
    return NULL;
  if ((t->count + 1) * 4 > t->nslots * 3) {
    if (reindex(t, t->nslots * 2)) {
      if (t->pool)
        pm_idpool_unref(t->pool, h);
      return NULL;
    }
    slot = empty_slot(t, id);
  }
  uint8_t *e = pm_idtable_at(t, t->count);
  memset(e, 0, t->esize);
  if (t->pool)
    memcpy(e + t->esize, &h, sizeof h);
  else
    memcpy(e + t->esize, id, PM_NODE_ID_LEN);
  t->slots[slot] = slot_tag(id) | ++t->count;
  return e;
}

/* Empties slot `s` and re-seats the run after it, so that every entry
 * stays reachable from its home slot (deletion without tombstones). */
static void clear_slot(pm_idtable *t, uint32_t s) {
  uint32_t mask = t->nslots - 1;
  t->slots[s] = 0;
  for (uint32_t j = (s + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
    uint32_t v = t->slots[j];
    t->slots[j] = 0;
    t->slots[empty_slot(t, pm_idtable_key(t, entry_of(t, v)))] = v;
  }
}

/* The slot of the entry at position `i`. */
static uint32_t slot_of(const pm_idtable *t, uint32_t i) {
  const uint8_t *e = pm_idtable_at(t, i);
  uint32_t mask = t->nslots - 1, s = home(t, pm_idtable_key(t, e));
  while ((t->slots[s] & POS_MASK) != i + 1)
    s = (s + 1) & mask;
  return s;
}

void pm_idtable_remove(pm_idtable *t, uint32_t i) {
  uint8_t *e = pm_idtable_at(t, i);
  clear_slot(t, slot_of(t, i));
  if (t->pool)
    pm_idpool_unref(t->pool, handle_of(t, e));
  uint32_t last = --t->count;
  if (i == last)
    return;
  uint32_t s = slot_of(t, last);
  t->slots[s] = (t->slots[s] & TAG_MASK) | (i + 1);
  memcpy(e, pm_idtable_at(t, last), t->stride);
}

void pm_idtable_prefix(const pm_idtable *t, uint16_t prefix, unsigned bits,
                       pm_idtable_walk *w) {
  /* The home slots of IDs beginning with the prefix: a stretch of
   * nslots >> bits when there are that many slots, else the one slot the
   * prefix falls in. */
  uint32_t sb = t->slot_bits;
  w->slot = sb >= bits ? (uint32_t)prefix << (sb - bits)
                       : (uint32_t)prefix >> (bits - sb);
  w->homes = sb >= bits ? 1u << (sb - bits) : 1;
  w->left = t->nslots;
  w->prefix = prefix;
  w->bits = (uint8_t)bits;
}

uint32_t pm_idtable_next(const pm_idtable *t, pm_idtable_walk *w) {
  uint32_t mask = t->nslots - 1, shift = 16u - w->bits;
  /* An entry sits in its home slot or after it, with no empty slot in
   * between: an empty slot at the stretch's end or past it ends the walk. */
  while (w->left) {
    uint32_t s = w->slot, v = t->slots[s];
    if (!v && w->homes <= 1)
      break;
    w->slot = (s + 1) & mask;
    w->left--;
    if (w->homes)
      w->homes--;
    uint32_t ahead = t->slots[(s + 8) & mask];
    if (ahead)
      __builtin_prefetch(entry_of(t, ahead));
    if (v) {
      const uint8_t *id = pm_idtable_key(t, entry_of(t, v));
      if (((uint32_t)id[0] << 8 | id[1]) >> shift == w->prefix)
        return (v & POS_MASK) - 1;
    }
  }
  w->left = 0;
  return PM_IDTABLE_NONE;
}

void pm_idtable_prefetch(const pm_idtable *t,
                         const uint8_t id[PM_NODE_ID_LEN]) {
  __builtin_prefetch(&t->slots[home(t, id)]);
  if (t->pool)
    pm_idpool_prefetch(t->pool, id);
}

/* Loads the entry whose slot, among the few from the home of `id` (one
 * cache line), first has its tag: very likely the entry of `id`. */
static void prefetch_match(const pm_idtable *t, const uint8_t *id) {
  uint32_t mask = t->nslots - 1, tag = slot_tag(id), s = home(t, id);
  for (int k = 0; k < 4; k++, s = (s + 1) & mask) {
    uint32_t v = t->slots[s];
    if (!v)
      return;
    if ((v & TAG_MASK) == tag) {
      __builtin_prefetch(entry_of(t, v));
      __builtin_prefetch(entry_of(t, v) + t->stride - 1);
      return;
    }
  }
}

void pm_idtable_prefetch_entry(const pm_idtable *t,
                               const uint8_t id[PM_NODE_ID_LEN]) {
  prefetch_match(t, id);
  if (t->pool)
    pm_idpool_prefetch_entry(t->pool, id);
}
