/* Per-author replay windows for flooded messages.
 *
 * Every author numbers its messages with an increasing sequence. A node
 * remembers, per author, the highest sequence it accepted and which of the
 * PM_AUTHORS_WINDOW below it it has seen, so a message replayed after the
 * duplicate cache forgot it is still refused, and messages may arrive out
 * of order by up to the window. At most `capacity` authors are remembered;
 * when full, the one heard from least recently is forgotten. */
#ifndef PM_CORE_AUTHORS_H
#define PM_CORE_AUTHORS_H

#include <stdint.h>

#include "peermesh/alloc.h"
#include "peermesh/idpool.h"
#include "peermesh/node.h"

#define PM_AUTHORS_WINDOW 256

typedef struct pm_authors pm_authors;

/* `ids`: the pool that keeps the authors' IDs (peermesh/idpool.h), or
 * NULL for IDs kept in the entries. */
pm_authors *pm_authors_new(const pm_allocator *alloc, pm_idpool *ids,
                           uint32_t capacity);
void pm_authors_free(pm_authors *a);

/* 1 when (author, seq) has not been accepted before and is not older than
 * the author's window; 0 for a replay. Changes nothing. */
int pm_authors_fresh(const pm_authors *a, const uint8_t author[PM_NODE_ID_LEN],
                     uint64_t seq);
/* Hints that `author` is looked up soon: its index slot, then (some time
 * later) the entry the slot likely names, start loading. */
void pm_authors_prefetch(const pm_authors *a,
                         const uint8_t author[PM_NODE_ID_LEN]);
void pm_authors_prefetch_entry(const pm_authors *a,
                               const uint8_t author[PM_NODE_ID_LEN]);
/* Records an accepted (author, seq). Returns 0 or PM_ERR_NOMEM. */
int pm_authors_accept(pm_authors *a, const uint8_t author[PM_NODE_ID_LEN],
                      uint64_t seq);
uint32_t pm_authors_count(const pm_authors *a);

#endif
