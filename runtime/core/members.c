/* The member table; see members.h. Entries live in a pm_idtable. */
#include "members.h"

#include <string.h>

#include "idtable.h"

#define SILENT_INTERVALS 3 /* refreshes missed before the slow path fails */

/* 12 bytes, and the ID (32 more, or a 4-byte handle in a shared pool): a
 * node of a 10,000-member mesh holds 10,000 of them. */
typedef struct entry {
  uint32_t inc;
  /* The last news of it: its last $alive while alive, the suspicion while
   * suspect, its $leave once left (a failure leaves it as it was), in ms
   * after the table's base (below). */
  uint32_t at;
  /* The refresh interval it announced, in tenths of a second, rounded up
   * (receivers clamp intervals to 2,250,000 ms: 22,500 fits). */
  uint16_t interval_ds;
  uint8_t state; /* enum pm_member_state */
  uint8_t asked; /* failed, and this node asked it to refute */
} entry;

static uint16_t to_ds(uint32_t ms) {
  uint32_t ds = ms / 100 + (ms % 100 != 0);
  return (uint16_t)(ds > UINT16_MAX ? UINT16_MAX : ds);
}

static uint32_t interval_of(const entry *e) {
  return (uint32_t)e->interval_ds * 100;
}

struct pm_members {
  pm_idtable tab;
  /* Entry times count from here. It starts at the first time the table is
   * told and moves on when they would pass 2^31 ms (after 24 days), taking
   * 12 days off every entry (none below 0): only failed and left members
   * can be that old, and all they lose is the order of their eviction. */
  uint64_t base;
  int based;
  uint32_t live;
  uint64_t suspect_ms;
  uint32_t floor_ms; /* least refresh interval assumed of any member */
  uint32_t bcount[PM_MEMBERS_BUCKETS]; /* live members per digest bucket */
  uint64_t bxor[PM_MEMBERS_BUCKETS];   /* XOR of their ID tags */
  uint64_t next_due;                   /* lower bound of the next expiry */
  /* The same XOR per sub-bucket is computed when asked for (only for a
   * bucket that differs, from its few dozen members): kept up to date, it
   * took a cache miss per change and 32 KiB per node. */
};

#define REBASE_AT (1u << 31)
#define REBASE_TO (1u << 30)

/* `now` as an entry time. */
static uint32_t stamp(pm_members *t, uint64_t now) {
  if (!t->based) {
    t->base = now;
    t->based = 1;
  }
  if (now < t->base)
    return 0;
  if (now - t->base >= REBASE_AT) {
    uint64_t shift = now - t->base - REBASE_TO;
    for (uint32_t i = 0; i < t->tab.count; i++) {
      entry *e = pm_idtable_at(&t->tab, i);
      e->at = e->at > shift ? (uint32_t)(e->at - shift) : 0;
    }
    t->base += shift;
  }
  return (uint32_t)(now - t->base);
}

static uint64_t when(const pm_members *t, const entry *e) {
  return t->base + e->at;
}

static entry *at(const pm_members *t, uint32_t i) {
  return pm_idtable_at(&t->tab, i);
}

static const uint8_t *key(const pm_members *t, const entry *e) {
  return pm_idtable_key(&t->tab, e);
}

static entry *find(const pm_members *t, const uint8_t *id) {
  uint32_t i = pm_idtable_find(&t->tab, id);
  return i == PM_IDTABLE_NONE ? NULL : at(t, i);
}

pm_members *pm_members_new(const pm_allocator *alloc, pm_idpool *ids,
                           uint32_t capacity, uint64_t suspect_ms) {
  if (!alloc)
    alloc = pm_allocator_default();
  if (capacity == 0)
    return NULL;
  pm_members *t = alloc->realloc(alloc->ud, NULL, sizeof *t);
  if (!t)
    return NULL;
  memset(t, 0, sizeof *t);
  t->suspect_ms = suspect_ms;
  t->next_due = UINT64_MAX;
  if (pm_idtable_init(&t->tab, alloc, ids, sizeof(entry), capacity)) {
    pm_members_free(t);
    return NULL;
  }
  return t;
}

void pm_members_free(pm_members *t) {
  if (!t)
    return;
  const pm_allocator *a = t->tab.alloc;
  pm_idtable_fini(&t->tab);
  a->realloc(a->ud, t, 0);
}

static int is_live(const entry *e) {
  return e->state == PM_MEMBER_ALIVE || e->state == PM_MEMBER_SUSPECT;
}

/* A member becomes live or stops being live: the count and the digest
 * follow. */
static void toggle_live(pm_members *t, const entry *e, int up) {
  if (up)
    t->live++;
  else
    t->live--;
  const uint8_t *id = key(t, e);
  uint32_t b = pm_members_bucket(id);
  t->bcount[b] += up ? 1u : UINT32_MAX; /* -1, modulo 2^32 */
  uint64_t tag = pm_members_tag(id);
  t->bxor[b] ^= tag;
}

void pm_members_prefetch(const pm_members *t,
                         const uint8_t id[PM_NODE_ID_LEN]) {
  pm_idtable_prefetch(&t->tab, id);
}

void pm_members_prefetch_entry(const pm_members *t,
                               const uint8_t id[PM_NODE_ID_LEN]) {
  pm_idtable_prefetch_entry(&t->tab, id);
}

/* Makes room for one more entry when the table is full: the longest-silent
 * member that is not alive goes, else the longest-silent one. */
static void make_room(pm_members *t) {
  uint32_t count = t->tab.count;
  if (count < t->tab.capacity || count == 0)
    return;
  uint32_t victim = 0;
  for (uint32_t i = 1; i < count; i++) {
    const entry *e = at(t, i), *v = at(t, victim);
    int e_alive = e->state == PM_MEMBER_ALIVE;
    int v_alive = v->state == PM_MEMBER_ALIVE;
    if (e_alive != v_alive ? !e_alive : e->at < v->at)
      victim = i;
  }
  if (is_live(at(t, victim)))
    toggle_live(t, at(t, victim), 0);
  pm_idtable_remove(&t->tab, victim);
}

static uint64_t silent_deadline(const pm_members *t, const entry *e) {
  uint64_t iv = interval_of(e) > t->floor_ms ? interval_of(e) : t->floor_ms;
  return when(t, e) + SILENT_INTERVALS * iv + t->suspect_ms;
}

static void set_alive(pm_members *t, entry *e, uint32_t inc,
                      uint32_t interval_ms, uint64_t now) {
  if (!is_live(e))
    toggle_live(t, e, 1);
  e->state = PM_MEMBER_ALIVE;
  e->inc = inc;
  e->interval_ds = to_ds(interval_ms);
  e->at = stamp(t, now);
  uint64_t due = silent_deadline(t, e);
  if (due < t->next_due)
    t->next_due = due;
}

/* A new entry, alive; `slot` is where pm_idtable_lookup found it would go. */
static int add_alive(pm_members *t, const uint8_t *id, uint32_t slot,
                     uint32_t inc, uint32_t interval_ms, uint64_t now) {
  uint32_t count = t->tab.count;
  make_room(t);
  entry *e = t->tab.count == count ? pm_idtable_add_at(&t->tab, id, slot)
                                   : pm_idtable_add(&t->tab, id);
  if (!e)
    return PM_ERR_NOMEM;
  set_alive(t, e, inc, interval_ms, now);
  return PM_MEMBERS_JOINED;
}

int pm_members_alive(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                     uint32_t inc, uint32_t interval_ms, uint64_t now) {
  uint32_t slot, i = pm_idtable_lookup(&t->tab, id, &slot);
  if (i == PM_IDTABLE_NONE)
    return add_alive(t, id, slot, inc, interval_ms, now);
  entry *e = at(t, i);
  switch (e->state) {
  case PM_MEMBER_ALIVE:
    if (inc < e->inc)
      return PM_MEMBERS_NONE;
    set_alive(t, e, inc, interval_ms, now);
    return PM_MEMBERS_NONE;
  case PM_MEMBER_SUSPECT: /* only a higher incarnation refutes */
    if (inc <= e->inc)
      return PM_MEMBERS_NONE;
    set_alive(t, e, inc, interval_ms, now);
    return PM_MEMBERS_NONE;
  case PM_MEMBER_FAILED:
    if (inc < e->inc)
      return PM_MEMBERS_NONE;
    set_alive(t, e, inc, interval_ms, now);
    return PM_MEMBERS_JOINED;
  default: /* left: only a new incarnation comes back */
    if (inc <= e->inc)
      return PM_MEMBERS_NONE;
    set_alive(t, e, inc, interval_ms, now);
    return PM_MEMBERS_JOINED;
  }
}

int pm_members_vouch(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                     uint32_t inc, uint32_t interval_ms, uint64_t now) {
  uint32_t slot, i = pm_idtable_lookup(&t->tab, id, &slot);
  if (i == PM_IDTABLE_NONE)
    return add_alive(t, id, slot, inc, interval_ms, now);
  entry *e = at(t, i);
  if (inc <= e->inc)
    return PM_MEMBERS_NONE; /* nothing newer than what this node knows */
  int was_live = is_live(e);
  set_alive(t, e, inc, interval_ms, now);
  return was_live ? PM_MEMBERS_NONE : PM_MEMBERS_JOINED;
}

int pm_members_ask(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                   uint32_t inc) {
  entry *e = find(t, id);
  if (!e || e->state != PM_MEMBER_FAILED || e->inc != inc || e->asked ||
      inc == UINT32_MAX)
    return 0;
  e->asked = 1;
  return 1;
}

int pm_members_leave(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                     uint32_t inc, uint64_t now) {
  entry *e = find(t, id);
  if (!e || inc < e->inc || e->state == PM_MEMBER_LEFT)
    return PM_MEMBERS_NONE;
  int was_live = is_live(e);
  if (was_live)
    toggle_live(t, e, 0);
  e->state = PM_MEMBER_LEFT;
  e->inc = inc;
  e->at = stamp(t, now);
  /* A member already reported failed is gone already: no second event. */
  return was_live ? PM_MEMBERS_LEFT : PM_MEMBERS_NONE;
}

int pm_members_suspect(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                       uint32_t inc, uint64_t now) {
  entry *e = find(t, id);
  if (!e || e->state != PM_MEMBER_ALIVE || inc < e->inc)
    return PM_MEMBERS_NONE;
  e->state = PM_MEMBER_SUSPECT;
  e->inc = inc;
  e->at = stamp(t, now);
  if (now + t->suspect_ms < t->next_due)
    t->next_due = now + t->suspect_ms;
  return PM_MEMBERS_SUSPECTED;
}

void pm_members_expire(pm_members *t, uint64_t now, pm_members_failed_fn fn,
                       void *ud) {
  if (now < t->next_due)
    return;
  uint64_t next = UINT64_MAX;
  for (uint32_t i = 0; i < t->tab.count; i++) {
    entry *e = at(t, i);
    uint64_t due;
    if (e->state == PM_MEMBER_SUSPECT)
      due = when(t, e) + t->suspect_ms;
    else if (e->state == PM_MEMBER_ALIVE)
      due = silent_deadline(t, e);
    else
      continue;
    if (due > now) {
      if (due < next)
        next = due;
      continue;
    }
    e->state = PM_MEMBER_FAILED;
    e->asked = 0; /* not asked yet (pm_members_ask) */
    toggle_live(t, e, 0);
    if (fn) {
      /* A copy: the callback may change this table or the pool. */
      uint8_t id[PM_NODE_ID_LEN];
      memcpy(id, key(t, e), PM_NODE_ID_LEN);
      fn(ud, id);
    }
  }
  t->next_due = next;
}

uint64_t pm_members_deadline(const pm_members *t) {
  return t->next_due;
}

int pm_members_get(const pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                   int *state, uint32_t *inc) {
  const entry *e = find(t, id);
  if (!e)
    return 0;
  if (state)
    *state = e->state;
  if (inc)
    *inc = e->inc;
  return 1;
}

uint32_t pm_members_count(const pm_members *t) {
  return t->tab.count;
}

uint32_t pm_members_live(const pm_members *t) {
  return t->live;
}

uint32_t pm_members_bucket(const uint8_t id[PM_NODE_ID_LEN]) {
  return id[0]; /* PM_MEMBERS_BUCKETS is 256 */
}

uint64_t pm_members_tag(const uint8_t id[PM_NODE_ID_LEN]) {
  uint64_t v = 0;
  for (int i = 8; i < 16; i++)
    v = v << 8 | id[i];
  return v;
}

uint32_t pm_members_sub(const uint8_t id[PM_NODE_ID_LEN]) {
  return (uint32_t)id[0] << 4 | id[1] >> 4; /* PM_MEMBERS_SUBS is 16 */
}

void pm_members_digest(const pm_members *t, uint32_t count[PM_MEMBERS_BUCKETS],
                       uint64_t tags[PM_MEMBERS_BUCKETS]) {
  memcpy(count, t->bcount, sizeof t->bcount);
  memcpy(tags, t->bxor, sizeof t->bxor);
}

void pm_members_subtags(const pm_members *t, uint8_t b,
                        uint64_t tags[PM_MEMBERS_SUBS]) {
  memset(tags, 0, PM_MEMBERS_SUBS * sizeof *tags);
  pm_idtable_walk w;
  pm_idtable_prefix(&t->tab, b, 8, &w);
  for (uint32_t i; (i = pm_idtable_next(&t->tab, &w)) != PM_IDTABLE_NONE;) {
    const entry *e = at(t, i);
    if (!is_live(e))
      continue;
    const uint8_t *id = key(t, e);
    tags[pm_members_sub(id) % PM_MEMBERS_SUBS] ^= pm_members_tag(id);
  }
}

void pm_members_set_floor(pm_members *t, uint32_t floor_ms) {
  t->floor_ms = floor_ms;
}

void pm_members_prefix(const pm_members *t, uint8_t b, pm_members_walk *w) {
  pm_idtable_prefix(&t->tab, b, 8, w);
}

void pm_members_sub_prefix(const pm_members *t, uint32_t sub,
                           pm_members_walk *w) {
  pm_idtable_prefix(&t->tab, (uint16_t)sub, 12, w);
}

uint32_t pm_members_next(const pm_members *t, pm_members_walk *w) {
  return pm_idtable_next(&t->tab, w);
}

void pm_members_at(const pm_members *t, uint32_t i, pm_member_info *out,
                   uint32_t *interval_ms) {
  const entry *e = at(t, i);
  memcpy(out->id, key(t, e), PM_NODE_ID_LEN);
  out->incarnation = e->inc;
  out->state = e->state;
  out->last_heard = when(t, e);
  if (interval_ms)
    *interval_ms = interval_of(e);
}
