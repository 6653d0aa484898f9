/* Recently forwarded flood frames, kept to answer Graft requests.
 *
 * A neighbour that learns of a message only by announcement (IHave) asks
 * for it with Graft; the node answers from this cache. Entries are kept in
 * arrival order and forgotten when older than the TTL or when the cache
 * holds more than its byte budget (the oldest go first). */
#ifndef PM_CORE_MSGCACHE_H
#define PM_CORE_MSGCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/alloc.h"
#include "peermesh/idpool.h"
#include "peermesh/node.h"

/* Bytes at var_offset that each cache keeps its own of (a Flood's hops). */
#define PM_MSGCACHE_VAR_LEN 2

typedef struct pm_msgcache pm_msgcache;

/* Every frame stored holds its message ID at `id_offset` (a Flood frame:
 * PM_FRAME_HEADER), so the cache keeps no copy of it. With a `pool`
 * (peermesh/idpool.h), the caches sharing it keep one copy of each frame
 * there, by ID: frames with one ID must be the same bytes but for the
 * PM_MSGCACHE_VAR_LEN at `var_offset`, which each cache keeps its own of.
 * Floods are so: the ID is a hash of all but the hops and the signature, and
 * a node keeps one only once it checked both ID and signature. The budget
 * still counts every frame a cache holds. Returns NULL when out of
 * memory or max_bytes is 0. */
pm_msgcache *pm_msgcache_new(const pm_allocator *alloc, pm_idpool *pool,
                             size_t max_bytes, uint64_t ttl_ms,
                             size_t id_offset, size_t var_offset);
void pm_msgcache_free(pm_msgcache *c);

/* Stores a copy of `frame`, found later by the ID it holds at the
 * cache's id_offset; a `background` one (the mesh's own bookkeeping) gives
 * way to the others in pm_msgcache_recent. Returns 0, PM_ERR_INVAL for a
 * frame too short to hold an ID (with a pool: or its bytes at
 * var_offset), or PM_ERR_NOMEM; a frame larger than the
 * whole budget is not stored (and 0 is returned). Callers may ignore
 * failure: it only means a later lookup finds nothing. */
int pm_msgcache_put(pm_msgcache *c, const uint8_t *frame, size_t len,
                    int background, uint64_t now);
/* Hints that a frame is put soon: where it and its entry will go start
 * loading. Reads the cache itself, so it comes some time after the cache
 * was fetched. */
void pm_msgcache_prefetch(const pm_msgcache *c);
/* The stored frame for `id`, or NULL. Valid until the next put, get or
 * expire. */
const uint8_t *pm_msgcache_get(pm_msgcache *c, const uint8_t id[PM_MSG_ID_LEN],
                               size_t *len, uint64_t now);
/* Copies into `ids` the IDs of up to `max` of the entries stored at or
 * after `since`: the newest of those not in the background first, newest
 * first, then, with the room left, the newest background ones. Returns how
 * many. */
size_t pm_msgcache_recent(const pm_msgcache *c, uint64_t since, uint8_t *ids,
                          size_t max);
void pm_msgcache_expire(pm_msgcache *c, uint64_t now);
size_t pm_msgcache_bytes(const pm_msgcache *c);
size_t pm_msgcache_count(const pm_msgcache *c);

#endif
