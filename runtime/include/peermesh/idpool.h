/* A pool of node IDs shared by the nodes of one process.
 *
 * Every node keeps a table of the mesh's members and one of the authors it
 * heard from, each entry keyed by a 32-byte node ID. A process that runs
 * many nodes of one mesh (the simulator runs thousands) would hold every
 * ID once per node; nodes given the same pool (pm_node_config.ids) keep
 * each ID once in the pool and a 4-byte handle per entry instead, with
 * the same behaviour. The pool counts the entries that use an ID and
 * forgets it when none does.
 *
 * A pool is not thread-safe: the nodes sharing it must never run at the
 * same time, and it must outlive them. A node given no pool keeps its IDs
 * in its own entries. */
#ifndef PEERMESH_IDPOOL_H
#define PEERMESH_IDPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/alloc.h"

typedef struct pm_idpool pm_idpool;

/* NULL when out of memory. `alloc` NULL: the C library's. */
pm_idpool *pm_idpool_new(const pm_allocator *alloc);
/* Every node using the pool must be freed first. */
void pm_idpool_free(pm_idpool *p);
/* IDs held: those some node's table still uses. */
uint32_t pm_idpool_count(const pm_idpool *p);

#endif
