#include "dedup.h"

#include <string.h>

typedef struct entry {
  uint8_t id[PM_MSG_ID_LEN];
  uint64_t at;
} entry;

struct pm_dedup {
  const pm_allocator *alloc;
  uint64_t ttl;
  uint32_t cap;  /* ring capacity */
  uint32_t head; /* oldest entry */
  uint32_t count;
  uint32_t slots; /* hash slots, a power of two >= 2 * cap */
  entry *ring;
  uint32_t *index; /* ring position + 1; 0 = empty slot */
};

static uint32_t id_hash(const uint8_t *id) {
  /* IDs are cryptographic hashes already: any 4 bytes are uniform. */
  return (uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 |
         (uint32_t)id[3] << 24;
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
  d->cap = capacity;
  d->slots = 16;
  while (d->slots < 2 * capacity)
    d->slots *= 2;
  d->ring = alloc->realloc(alloc->ud, NULL, sizeof(entry) * capacity);
  d->index = alloc->realloc(alloc->ud, NULL, sizeof(uint32_t) * d->slots);
  if (!d->ring || !d->index) {
    pm_dedup_free(d);
    return NULL;
  }
  memset(d->index, 0, sizeof(uint32_t) * d->slots);
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
  while (d->index[s] &&
         memcmp(d->ring[d->index[s] - 1].id, id, PM_MSG_ID_LEN) != 0)
    s = (s + 1) & mask;
  return s;
}

/* Removes the oldest entry: clears its slot and re-seats the cluster after it
 * (linear-probing deletion without tombstones). */
static void drop_oldest(pm_dedup *d) {
  uint32_t mask = d->slots - 1;
  uint32_t s = find_slot(d, d->ring[d->head].id);
  d->index[s] = 0;
  for (uint32_t t = (s + 1) & mask; d->index[t]; t = (t + 1) & mask) {
    uint32_t pos = d->index[t];
    d->index[t] = 0;
    d->index[find_slot(d, d->ring[pos - 1].id)] = pos;
  }
  d->head = (d->head + 1) % d->cap;
  d->count--;
}

void pm_dedup_expire(pm_dedup *d, uint64_t now) {
  while (d->count && now >= d->ring[d->head].at &&
         now - d->ring[d->head].at >= d->ttl)
    drop_oldest(d);
}

int pm_dedup_contains(pm_dedup *d, const uint8_t id[PM_MSG_ID_LEN],
                      uint64_t now) {
  pm_dedup_expire(d, now);
  return d->index[find_slot(d, id)] != 0;
}

int pm_dedup_insert(pm_dedup *d, const uint8_t id[PM_MSG_ID_LEN],
                    uint64_t now) {
  pm_dedup_expire(d, now);
  if (d->index[find_slot(d, id)])
    return 0;
  if (d->count == d->cap)
    drop_oldest(d);
  uint32_t pos = (d->head + d->count) % d->cap;
  memcpy(d->ring[pos].id, id, PM_MSG_ID_LEN);
  d->ring[pos].at = now;
  d->count++;
  d->index[find_slot(d, id)] = pos + 1;
  return 1;
}

uint32_t pm_dedup_count(const pm_dedup *d) {
  return d->count;
}

uint64_t pm_dedup_deadline(const pm_dedup *d) {
  return d->count ? d->ring[d->head].at + d->ttl : PM_DEADLINE_NONE;
}
