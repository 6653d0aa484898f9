/* Time-bounded cache of message IDs seen, for duplicate suppression.
 *
 * IDs are kept in insertion order in a ring and indexed by an open-addressing
 * hash table whose slots also hold a few bytes of the ID, so that looking up
 * an unknown ID reads one slot, not the ring. An ID is forgotten when it is
 * older than the TTL or when the cache holds its capacity (the oldest goes
 * first). Memory starts small and grows with the number of IDs kept, never past
 * what the capacity needs, so a flood of new IDs cannot grow it without bound.
 *
 * IDs are compared on their first 16 bytes, which is what the cache keeps
 * (24 bytes an ID with its time, not 40: the cache holds every message a
 * node saw in the last minutes). Message IDs are BLAKE2b-256 hashes, so two
 * that share 16 bytes take about 2^64 messages to find, and only suppress
 * each other (both made by whoever found them); making one that matches a
 * given message's ID takes about 2^128.
 */
#ifndef PM_CORE_DEDUP_H
#define PM_CORE_DEDUP_H

#include <stdint.h>

#include "peermesh/alloc.h"
#include "peermesh/node.h"

typedef struct pm_dedup pm_dedup;

/* `capacity` IDs at most, each kept `ttl_ms`. Returns NULL when out of
 * memory or capacity is 0. */
pm_dedup *pm_dedup_new(const pm_allocator *alloc, uint32_t capacity,
                       uint64_t ttl_ms);
void pm_dedup_free(pm_dedup *d);

/* Records `id` seen at `now`. Returns 1 if it was new, 0 if already known
 * (the original time is kept). */
int pm_dedup_insert(pm_dedup *d, const uint8_t id[PM_MSG_ID_LEN], uint64_t now);
/* 1 if `id` is known and not expired at `now`. */
int pm_dedup_contains(pm_dedup *d, const uint8_t id[PM_MSG_ID_LEN],
                      uint64_t now);
/* Hints that `id` is looked up soon: pm_dedup_prefetch loads its hash
 * slot; pm_dedup_prefetch_entry, some time later, reads the slots and
 * loads the entry they likely name. */
void pm_dedup_prefetch(const pm_dedup *d, const uint8_t id[PM_MSG_ID_LEN]);
void pm_dedup_prefetch_entry(const pm_dedup *d,
                             const uint8_t id[PM_MSG_ID_LEN]);
/* Forgets IDs older than the TTL. */
void pm_dedup_expire(pm_dedup *d, uint64_t now);
uint32_t pm_dedup_count(const pm_dedup *d);
/* When the oldest ID expires, or PM_DEADLINE_NONE when empty. */
uint64_t pm_dedup_deadline(const pm_dedup *d);

#endif
