#include "dedup.h"

#include <string.h>

/* A cache starts this small and doubles as it fills, so a quiet node pays
 * little memory and a busy one at most its capacity. */
#define INITIAL_CAP 64

/* An entry keeps the first KEY_LEN bytes of the ID (dedup.h). */
#define KEY_LEN 16

typedef struct entry {
  uint8_t key[KEY_LEN];
  uint64_t at;
} entry;

struct pm_dedup {
  const pm_allocator *alloc;
  uint64_t ttl;
  uint32_t limit; /* the most IDs ever kept */
  uint32_t cap;   /* ring capacity now; grows by doubling up to limit */
  uint32_t head;  /* oldest entry */
  uint32_t count;
  uint32_t slots; /* hash slots, a power of two >= 2 * cap */
  entry *ring;
  /* Per slot: the ring position + 1 (0 = empty slot) in the low half, the
   * ID's tag in the high half, so that a probe reads the ring only for an
   * ID that very likely is the one looked for. */
  uint64_t *index;
};

/* IDs are cryptographic hashes already: any bytes are uniform. The slot
 * comes from bytes 0..3, the tag from bytes 4..7. */
static uint32_t id_hash(const uint8_t *id) {
  return (uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 |
         (uint32_t)id[3] << 24;
}

static uint64_t id_tag(const uint8_t *id) {
  return (uint64_t)((uint32_t)id[4] | (uint32_t)id[5] << 8 |
                    (uint32_t)id[6] << 16 | (uint32_t)id[7] << 24)
         << 32;
}

static uint32_t slot_pos(uint64_t slot) {
  return (uint32_t)slot; /* position + 1 */
}

pm_dedup *pm_dedup_new(const pm_allocator *alloc, uint32_t capacity,
                       uint64_t ttl_ms) {
  if (!alloc)
    alloc = pm_allocator_default();
  if (capacity == 0 || capacity > (1u << 28))
    return NULL;
  pm_dedup *d = alloc->realloc(alloc->ud, NULL, sizeof *d);
  if (!d)
    return NULL;
  memset(d, 0, sizeof *d);
  d->alloc = alloc;
  d->ttl = ttl_ms;
  d->limit = capacity;
  d->cap = capacity < INITIAL_CAP ? capacity : INITIAL_CAP;
  d->slots = 16;
  while (d->slots < 2 * d->cap)
    d->slots *= 2;
  d->ring = alloc->realloc(alloc->ud, NULL, sizeof(entry) * d->cap);
  d->index = alloc->realloc(alloc->ud, NULL, sizeof *d->index * d->slots);
  if (!d->ring || !d->index) {
    pm_dedup_free(d);
    return NULL;
  }
  memset(d->index, 0, sizeof *d->index * d->slots);
  return d;
}

void pm_dedup_free(pm_dedup *d) {
  if (!d)
    return;
  const pm_allocator *a = d->alloc;
  if (d->ring)
    a->realloc(a->ud, d->ring, 0);
  if (d->index)
    a->realloc(a->ud, d->index, 0);
  a->realloc(a->ud, d, 0);
}

/* Slot holding `id`, or the empty slot where it would go. */
static uint32_t find_slot(const pm_dedup *d, const uint8_t *id) {
  uint32_t mask = d->slots - 1;
  uint32_t s = id_hash(id) & mask;
  uint64_t tag = id_tag(id);
  for (;; s = (s + 1) & mask) {
    uint64_t v = d->index[s];
    if (!v || ((v & ~(uint64_t)UINT32_MAX) == tag &&
               memcmp(d->ring[slot_pos(v) - 1].key, id, KEY_LEN) == 0))
      return s;
  }
}

void pm_dedup_prefetch(const pm_dedup *d, const uint8_t id[PM_MSG_ID_LEN]) {
  __builtin_prefetch(&d->index[id_hash(id) & (d->slots - 1)]);
}

void pm_dedup_prefetch_entry(const pm_dedup *d,
                             const uint8_t id[PM_MSG_ID_LEN]) {
  uint32_t mask = d->slots - 1, s = id_hash(id) & mask;
  uint64_t tag = id_tag(id);
  for (int k = 0; k < 4; k++, s = (s + 1) & mask) {
    uint64_t v = d->index[s];
    if (!v)
      return;
    if ((v & ~(uint64_t)UINT32_MAX) == tag) {
      __builtin_prefetch(&d->ring[slot_pos(v) - 1]);
      return;
    }
  }
}

/* Removes the oldest entry: clears its slot and re-seats the cluster after it
 * (linear-probing deletion without tombstones). */
static void drop_oldest(pm_dedup *d) {
  uint32_t mask = d->slots - 1;
  uint32_t s = find_slot(d, d->ring[d->head].key);
  d->index[s] = 0;
  for (uint32_t t = (s + 1) & mask; d->index[t]; t = (t + 1) & mask) {
    uint64_t v = d->index[t];
    d->index[t] = 0;
    d->index[find_slot(d, d->ring[slot_pos(v) - 1].key)] = v;
  }
  d->head = (d->head + 1) % d->cap;
  d->count--;
}

/* Doubles the ring (up to the limit) and rebuilds the index. Returns 0, or
 * PM_ERR_NOMEM, in which case the cache stays as it was. */
static int grow(pm_dedup *d) {
  const pm_allocator *a = d->alloc;
  uint32_t cap = d->cap > d->limit / 2 ? d->limit : d->cap * 2;
  uint32_t slots = d->slots;
  while (slots < 2 * cap)
    slots *= 2;
  entry *ring = a->realloc(a->ud, NULL, sizeof(entry) * cap);
  uint64_t *index = a->realloc(a->ud, NULL, sizeof *index * slots);
  if (!ring || !index) {
    if (ring)
      a->realloc(a->ud, ring, 0);
    if (index)
      a->realloc(a->ud, index, 0);
    return PM_ERR_NOMEM;
  }
  for (uint32_t i = 0; i < d->count; i++)
    ring[i] = d->ring[(d->head + i) % d->cap];
  a->realloc(a->ud, d->ring, 0);
  a->realloc(a->ud, d->index, 0);
  d->ring = ring;
  d->index = index;
  d->cap = cap;
  d->slots = slots;
  d->head = 0;
  memset(index, 0, sizeof *index * slots);
  for (uint32_t i = 0; i < d->count; i++)
    d->index[find_slot(d, d->ring[i].key)] = id_tag(d->ring[i].key) | (i + 1);
  return 0;
}

void pm_dedup_expire(pm_dedup *d, uint64_t now) {
  while (d->count && now >= d->ring[d->head].at &&
         now - d->ring[d->head].at >= d->ttl)
    drop_oldest(d);
}

int pm_dedup_contains(pm_dedup *d, const uint8_t id[PM_MSG_ID_LEN],
                      uint64_t now) {
  /* No sweep here (the oldest entry is one more cache miss per lookup):
   * an entry past its time counts as gone. */
  uint32_t pos = slot_pos(d->index[find_slot(d, id)]);
  if (!pos)
    return 0;
  uint64_t at = d->ring[pos - 1].at;
  return !(now >= at && now - at >= d->ttl);
}

int pm_dedup_insert(pm_dedup *d, const uint8_t id[PM_MSG_ID_LEN],
                    uint64_t now) {
  pm_dedup_expire(d, now);
  if (d->index[find_slot(d, id)])
    return 0;
  if (d->count == d->cap && (d->cap == d->limit || grow(d) != 0))
    drop_oldest(d);
  uint32_t pos = (d->head + d->count) % d->cap;
  memcpy(d->ring[pos].key, id, KEY_LEN);
  d->ring[pos].at = now;
  d->count++;
  d->index[find_slot(d, id)] = id_tag(id) | (pos + 1);
  return 1;
}

uint32_t pm_dedup_count(const pm_dedup *d) {
  return d->count;
}

uint64_t pm_dedup_deadline(const pm_dedup *d) {
  return d->count ? d->ring[d->head].at + d->ttl : PM_DEADLINE_NONE;
}
