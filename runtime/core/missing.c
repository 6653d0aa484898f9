#include "missing.h"

#include <string.h>

typedef struct entry {
  uint8_t id[PM_MSG_ID_LEN];
  uint64_t due;
  uint32_t sources[PM_MISSING_SOURCES];
  uint8_t nsources;
  uint32_t asked; /* the source last asked, while its answer is awaited */
} entry;

struct pm_missing {
  const pm_allocator *alloc;
  uint32_t limit, cap, count; /* cap grows by doubling up to limit */
  entry *entries;             /* unordered; the table is small */
};

pm_missing *pm_missing_new(const pm_allocator *alloc, uint32_t capacity) {
  if (!alloc)
    alloc = pm_allocator_default();
  if (capacity == 0)
    return NULL;
  pm_missing *m = alloc->realloc(alloc->ud, NULL, sizeof *m);
  if (!m)
    return NULL;
  memset(m, 0, sizeof *m);
  m->alloc = alloc;
  m->limit = capacity;
  m->cap = capacity < 16 ? capacity : 16;
  m->entries = alloc->realloc(alloc->ud, NULL, m->cap * sizeof(entry));
  if (!m->entries) {
    alloc->realloc(alloc->ud, m, 0);
    return NULL;
  }
  return m;
}

void pm_missing_free(pm_missing *m) {
  if (!m)
    return;
  m->alloc->realloc(m->alloc->ud, m->entries, 0);
  m->alloc->realloc(m->alloc->ud, m, 0);
}

static entry *find(pm_missing *m, const uint8_t *id) {
  for (uint32_t i = 0; i < m->count; i++)
    if (memcmp(m->entries[i].id, id, PM_MSG_ID_LEN) == 0)
      return &m->entries[i];
  return NULL;
}

static void drop(pm_missing *m, entry *e) {
  *e = m->entries[--m->count];
}

void pm_missing_announce(pm_missing *m, const uint8_t id[PM_MSG_ID_LEN],
                         uint32_t link_id, uint64_t due) {
  entry *e = find(m, id);
  if (e) {
    for (unsigned i = 0; i < e->nsources; i++)
      if (e->sources[i] == link_id)
        return;
    if (e->nsources < PM_MISSING_SOURCES)
      e->sources[e->nsources++] = link_id;
    return;
  }
  if (m->count == m->cap && m->cap < m->limit) {
    uint32_t ncap = m->cap > m->limit / 2 ? m->limit : m->cap * 2;
    entry *ne = m->alloc->realloc(m->alloc->ud, m->entries, ncap * sizeof *ne);
    if (ne) {
      m->entries = ne;
      m->cap = ncap;
    }
  }
  if (m->count == m->cap) {
    entry *soonest = &m->entries[0];
    for (uint32_t i = 1; i < m->count; i++)
      if (m->entries[i].due < soonest->due)
        soonest = &m->entries[i];
    drop(m, soonest);
  }
  e = &m->entries[m->count++];
  memcpy(e->id, id, PM_MSG_ID_LEN);
  e->due = due;
  e->sources[0] = link_id;
  e->nsources = 1;
  e->asked = 0;
}

void pm_missing_remove(pm_missing *m, const uint8_t id[PM_MSG_ID_LEN]) {
  entry *e = find(m, id);
  if (e)
    drop(m, e);
}

void pm_missing_forget_link(pm_missing *m, uint32_t link_id,
                            uint32_t fallback) {
  for (uint32_t i = 0; i < m->count;) {
    entry *e = &m->entries[i];
    unsigned k = 0;
    for (unsigned j = 0; j < e->nsources; j++)
      if (e->sources[j] != link_id)
        e->sources[k++] = e->sources[j];
    /* The link asked is gone with its answer: ask another one now. */
    int lost_answer = e->asked == link_id;
    if (lost_answer) {
      e->asked = 0;
      e->due = 0;
    }
    if ((k == 0 || lost_answer) && fallback && fallback != link_id &&
        k < PM_MISSING_SOURCES) {
      int known = 0;
      for (unsigned j = 0; j < k; j++)
        known |= e->sources[j] == fallback;
      if (!known)
        e->sources[k++] = fallback;
    }
    e->nsources = (uint8_t)k;
    if (k == 0 && e->asked)
      k = 1; /* still waiting for an answer from a live link */
    if (k == 0)
      drop(m, e); /* re-examine the entry moved into slot i */
    else
      i++;
  }
}

int pm_missing_take_due(pm_missing *m, uint64_t now, uint64_t retry_at,
                        uint8_t id_out[PM_MSG_ID_LEN], uint32_t *link_out) {
  for (uint32_t i = 0; i < m->count;) {
    entry *e = &m->entries[i];
    if (e->due > now) {
      i++;
      continue;
    }
    if (e->nsources == 0) { /* the last one asked did not answer either */
      drop(m, e);           /* re-examine the entry moved into slot i */
      continue;
    }
    memcpy(id_out, e->id, PM_MSG_ID_LEN);
    *link_out = e->asked = e->sources[0];
    memmove(e->sources, e->sources + 1,
            (size_t)(e->nsources - 1) * sizeof e->sources[0]);
    e->nsources--;
    e->due = retry_at;
    return 1;
  }
  return 0;
}

uint64_t pm_missing_deadline(const pm_missing *m) {
  uint64_t d = PM_DEADLINE_NONE;
  for (uint32_t i = 0; i < m->count; i++)
    if (m->entries[i].due < d)
      d = m->entries[i].due;
  return d;
}

uint32_t pm_missing_count(const pm_missing *m) {
  return m->count;
}
