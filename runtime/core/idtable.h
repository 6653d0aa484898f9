/* A table of fixed-size entries keyed by a 32-byte ID (a node's public key):
 * the storage and index under the member table and the replay windows,
 * which hold up to one entry per member of the mesh. Each entry is the
 * owner's `esize` bytes followed by its key: the ID itself, or, in a table
 * given a pm_idpool, a 4-byte handle of the ID in the pool (a process
 * running many nodes then holds each ID once, not once per node).
 *
 * Entries live in blocks of PM_IDTABLE_BLOCK (the first one grows up to
 * that size), so growing never copies the table nor needs it in one piece,
 * and an entry stays where it is until removed; removing an entry moves
 * the last one into its place. The index is open addressing with linear
 * probing, at most 3/4 full; a slot holds the entry's position + 1 and a
 * byte of its ID, so looking up an unknown ID reads one slot and no entry.
 * IDs are public keys, uniform already: the home slot is the top bits of
 * bytes 0..3 read big-endian, so slots run in about ID order and the
 * entries whose ID begins with given bits sit in one stretch of slots
 * (pm_idtable_prefix).
 *
 * The owner embeds the struct and decides what happens when the table is
 * full (pm_idtable_add refuses; the owner evicts and retries). */
#ifndef PM_CORE_IDTABLE_H
#define PM_CORE_IDTABLE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "idpool.h"
#include "peermesh/alloc.h"
#include "peermesh/node.h"

#define PM_IDTABLE_NONE UINT32_MAX
#define PM_IDTABLE_MAX ((1u << 24) - 2) /* the most entries a table holds */
#define PM_IDTABLE_BLOCK_SHIFT 7
#define PM_IDTABLE_BLOCK (1u << PM_IDTABLE_BLOCK_SHIFT)

typedef struct pm_idtable {
  const pm_allocator *alloc;
  pm_idpool *pool;     /* NULL: entries hold their IDs */
  size_t esize;        /* the owner's bytes per entry */
  size_t stride;       /* bytes per entry: the owner's, then the key */
  uint32_t count, cap; /* entries held, and room for */
  uint32_t capacity;   /* the most it may hold */
  uint32_t nblocks, blocks_cap;
  uint32_t nslots;    /* a power of two */
  uint32_t slot_bits; /* log2(nslots) */
  uint8_t **blocks;
  uint32_t *slots;
} pm_idtable;

/* `capacity` is clamped to PM_IDTABLE_MAX; `pool` may be NULL, else it
 * must outlive the table. Returns 0 or PM_ERR_NOMEM (the table is then
 * empty and may be finished). */
int pm_idtable_init(pm_idtable *t, const pm_allocator *alloc, pm_idpool *pool,
                    size_t esize, uint32_t capacity);
/* Frees the table, dropping its references to the pool. */
void pm_idtable_fini(pm_idtable *t);

/* The owner's part of the entry at position `i`. */
static inline void *pm_idtable_at(const pm_idtable *t, uint32_t i) {
  return t->blocks[i >> PM_IDTABLE_BLOCK_SHIFT] +
         (size_t)(i & (PM_IDTABLE_BLOCK - 1)) * t->stride;
}

/* The ID of entry `e` (as pm_idtable_at gave it): valid until the table,
 * or any table sharing its pool, next changes. */
static inline const uint8_t *pm_idtable_key(const pm_idtable *t,
                                            const void *e) {
  const uint8_t *k = (const uint8_t *)e + t->esize;
  if (!t->pool)
    return k;
  uint32_t h;
  memcpy(&h, k, sizeof h);
  return pm_idpool_id(t->pool, h);
}

/* The position of the entry for `id`, or PM_IDTABLE_NONE. */
uint32_t pm_idtable_find(const pm_idtable *t, const uint8_t id[PM_NODE_ID_LEN]);
/* The same, and in `*slot` the index slot where `id` is or would go: a
 * lookup that finds nothing, then pm_idtable_add_at with that slot, reads
 * the index once. */
uint32_t pm_idtable_lookup(const pm_idtable *t,
                           const uint8_t id[PM_NODE_ID_LEN], uint32_t *slot);
/* Appends an entry for `id`, which must not be in the table, at position
 * count - 1: the owner's part zeroed. NULL when the table holds its
 * capacity or memory runs out. `id` must not point into the pool. */
void *pm_idtable_add(pm_idtable *t, const uint8_t id[PM_NODE_ID_LEN]);
/* pm_idtable_add, given the slot pm_idtable_lookup found for `id` with
 * the table unchanged since. */
void *pm_idtable_add_at(pm_idtable *t, const uint8_t id[PM_NODE_ID_LEN],
                        uint32_t slot);
/* Removes the entry at position `i`; the last entry takes its place. */
void pm_idtable_remove(pm_idtable *t, uint32_t i);

/* Walks the entries whose ID begins with the `bits` bits (1..16) of
 * `prefix`, reading only the slots where they can be: pm_idtable_prefix
 * starts, pm_idtable_next returns a position (in no particular order) or
 * PM_IDTABLE_NONE at the end. The table must not change during a walk. */
typedef struct pm_idtable_walk {
  uint32_t slot;  /* the next slot to read */
  uint32_t homes; /* slots of the stretch not yet read */
  uint32_t left;  /* slots that may still be read */
  uint16_t prefix;
  uint8_t bits;
} pm_idtable_walk;
void pm_idtable_prefix(const pm_idtable *t, uint16_t prefix, unsigned bits,
                       pm_idtable_walk *w);
uint32_t pm_idtable_next(const pm_idtable *t, pm_idtable_walk *w);

/* Hints that `id` is looked up soon: pm_idtable_prefetch loads its home
 * slot; pm_idtable_prefetch_entry, some time later, reads that slot and
 * loads the entry it likely names. */
void pm_idtable_prefetch(const pm_idtable *t, const uint8_t id[PM_NODE_ID_LEN]);
void pm_idtable_prefetch_entry(const pm_idtable *t,
                               const uint8_t id[PM_NODE_ID_LEN]);

#endif
