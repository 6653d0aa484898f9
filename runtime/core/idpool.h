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
