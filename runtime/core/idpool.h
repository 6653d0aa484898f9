/* The pool's side used by pm_idtable; see peermesh/idpool.h. A handle
 * names one ID for as long as some table holds a reference to it; a
 * handle whose last reference goes may be given to another ID later. */
#ifndef PM_CORE_IDPOOL_H
#define PM_CORE_IDPOOL_H

#include <stdint.h>

#include "peermesh/idpool.h"
#include "peermesh/node.h"

#define PM_IDPOOL_NONE UINT32_MAX

/* The handle of `id`, or PM_IDPOOL_NONE when no table holds it. */
uint32_t pm_idpool_find(const pm_idpool *p, const uint8_t id[PM_NODE_ID_LEN]);
/* One more reference to `id`, added when new: its handle, or
 * PM_IDPOOL_NONE when out of memory. */
uint32_t pm_idpool_ref(pm_idpool *p, const uint8_t id[PM_NODE_ID_LEN]);
/* pm_idpool_ref, and when `id` is new to the pool, a copy of `len` bytes
 * of `data` kept with it until its last reference goes: the first
 * reference's data stays. For pools of things named by a hash of what
 * they hold, as flooded messages are. */
uint32_t pm_idpool_ref_data(pm_idpool *p, const uint8_t id[PM_NODE_ID_LEN],
                            const uint8_t *data, size_t len);
/* The data kept with a referenced handle (NULL if none), valid while it
 * is referenced. */
const uint8_t *pm_idpool_data(const pm_idpool *p, uint32_t h, size_t *len);
/* Drops a reference pm_idpool_ref gave. */
void pm_idpool_unref(pm_idpool *p, uint32_t h);
/* The ID of a referenced handle: valid until the pool next changes (a
 * reference added or dropped anywhere). */
const uint8_t *pm_idpool_id(const pm_idpool *p, uint32_t h);

/* Hints, as pm_idtable's: the home slot of `id` soon, then (some time
 * later) the entry it likely names; or the ID of handle `h`. */
void pm_idpool_prefetch(const pm_idpool *p, const uint8_t id[PM_NODE_ID_LEN]);
void pm_idpool_prefetch_entry(const pm_idpool *p,
                              const uint8_t id[PM_NODE_ID_LEN]);
void pm_idpool_prefetch_handle(const pm_idpool *p, uint32_t h);

#endif
