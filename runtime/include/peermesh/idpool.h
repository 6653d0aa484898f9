/* A pool of 32-byte IDs shared by the nodes of one process.
 *
 * Every node keeps a table of the mesh's members and one of the authors it
 * heard from, each entry keyed by a 32-byte node ID, and a cache of the
 * messages it forwarded. A process that runs many nodes of one mesh (the
 * simulator runs thousands) would hold every ID, and every message, once
 * per node. Nodes given the same pool as pm_node_config.ids keep each node
 * ID once in the pool and a 4-byte handle per entry instead; given the same
 * pool as pm_node_config.frames, they keep one copy of each message frame
 * (by message ID), each node with its own hop count. Their behaviour is the
 * same. The pool counts the references to an ID and forgets it, with what
 * it kept with it, when none is left.
 *
 * A pool is not thread-safe: the nodes sharing it must never run at the
 * same time, and it must outlive them. A node given no pool keeps its own
 * copies. */
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
