/* Messages announced by neighbours (IHave) but not yet received.
 *
 * Each entry remembers up to PM_MISSING_SOURCES links that announced the
 * message and when to ask for it. When the deadline passes with no copy,
 * the node asks (Graft) the first source, then the next one after another
 * timeout, and forgets the message when no source is left. The table has a
 * fixed capacity; when full, the entry closest to its deadline goes. */
#ifndef PM_CORE_MISSING_H
#define PM_CORE_MISSING_H

#include <stdint.h>

#include "peermesh/alloc.h"
#include "peermesh/node.h"

#define PM_MISSING_SOURCES 4

typedef struct pm_missing pm_missing;

pm_missing *pm_missing_new(const pm_allocator *alloc, uint32_t capacity);
void pm_missing_free(pm_missing *m);

/* `link_id` announced `id`. A new entry is due at `due`; a known one just
 * gains a source. */
void pm_missing_announce(pm_missing *m, const uint8_t id[PM_MSG_ID_LEN],
                         uint32_t link_id, uint64_t due);
/* The message arrived: forget it. */
void pm_missing_remove(pm_missing *m, const uint8_t id[PM_MSG_ID_LEN]);
/* The link closed: it can no longer serve as a source. An entry left with
 * no source, or whose request went to this link, asks `fallback` instead
 * (another neighbour, which has most likely seen the message too) — at
 * once in the second case; with no fallback it is dropped. */
void pm_missing_forget_link(pm_missing *m, uint32_t link_id, uint32_t fallback);

/* Takes one entry due at `now`: stores its ID and the source to ask, and
 * moves the entry on to its next source, due at `retry_at`. An entry whose
 * last source was asked stays until `retry_at` too, so that a fallback can
 * be asked should that source's link close first (forget_link); then it is
 * dropped. Returns 1, or 0 when nothing is due. */
int pm_missing_take_due(pm_missing *m, uint64_t now, uint64_t retry_at,
                        uint8_t id_out[PM_MSG_ID_LEN], uint32_t *link_out);

/* The earliest deadline, or PM_DEADLINE_NONE. */
uint64_t pm_missing_deadline(const pm_missing *m);
uint32_t pm_missing_count(const pm_missing *m);

#endif
