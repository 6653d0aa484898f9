/* The member table; see members.h. Entries live in blocks of BLOCK_LEN
 * (the first one grows up to that size), so that growing never copies a
 * table nor needs its size again in one piece; removing an entry moves the
 * last one into its slot. An open-addressing index over them (linear
 * probing, at most 3/4 full) holds per slot the entry's position + 1 and a
 * byte of its ID, so that looking up an unknown member reads one slot and
 * no entry. */
#include "members.h"

#include <string.h>

#define SILENT_INTERVALS 3 /* refreshes missed before the slow path fails */
#define BLOCK_SHIFT 9
#define BLOCK_LEN (1u << BLOCK_SHIFT)
#define POS_BITS 24
#define POS_MASK ((1u << POS_BITS) - 1)
#define TAG_MASK (~POS_MASK)
#define MAX_CAPACITY (POS_MASK - 1)

typedef struct entry {
  uint8_t id[PM_NODE_ID_LEN];
  uint32_t inc;
  /* While alive or suspect, the refresh interval it announced; once failed,
   * 1 + the incarnation this node asked it to refute (0: not asked). */
  uint32_t interval_ms;
  uint8_t state; /* enum pm_member_state */
  /* The last news of it: its last $alive while alive, the suspicion while
   * suspect, its $leave once left (a failure leaves it as it was). One
   * field keeps an entry at 56 bytes: a node of a 10,000-member mesh holds
   * 10,000 of them. */
  uint64_t at;
} entry;

struct pm_members {
  const pm_allocator *alloc;
  uint32_t capacity, count, cap, live;
  uint32_t nblocks, blocks_cap;
  uint32_t nslots; /* a power of two */
  uint64_t suspect_ms;
  uint32_t floor_ms; /* least refresh interval assumed of any member */
  uint32_t bcount[PM_MEMBERS_BUCKETS]; /* live members per digest bucket */
  uint64_t bxor[PM_MEMBERS_BUCKETS];   /* XOR of their ID tags */
  uint64_t next_due;                   /* lower bound of the next expiry */
  entry **blocks;
  uint32_t *slots; /* ID byte 4 << POS_BITS | position + 1; 0 = empty */
};

static void *mem(const pm_members *t, void *p, size_t size) {
  return t->alloc->realloc(t->alloc->ud, p, size);
}

static entry *at(const pm_members *t, uint32_t i) {
  return &t->blocks[i >> BLOCK_SHIFT][i & (BLOCK_LEN - 1)];
}

/* IDs are public keys: already uniform. The home slot comes from bytes
 * 0..3, the slot's tag from byte 4. */
static uint32_t home(const pm_members *t, const uint8_t *id) {
  uint32_t h;
  memcpy(&h, id, sizeof h);
  return h & (t->nslots - 1);
}

static uint32_t slot_tag(const uint8_t *id) {
  return (uint32_t)id[4] << POS_BITS;
}

/* The slot holding `id`, or the empty one where it would go. */
static uint32_t find_slot(const pm_members *t, const uint8_t *id) {
  uint32_t mask = t->nslots - 1, tag = slot_tag(id);
  for (uint32_t s = home(t, id);; s = (s + 1) & mask) {
    uint32_t v = t->slots[s];
    if (!v || ((v & TAG_MASK) == tag &&
               memcmp(at(t, (v & POS_MASK) - 1)->id, id, PM_NODE_ID_LEN) == 0))
      return s;
  }
}

static entry *find(const pm_members *t, const uint8_t *id) {
  uint32_t v = t->slots[find_slot(t, id)];
  return v ? at(t, (v & POS_MASK) - 1) : NULL;
}

/* Rebuilds the index with `nslots` slots. */
static int reindex(pm_members *t, uint32_t nslots) {
  uint32_t *sl = mem(t, NULL, (size_t)nslots * sizeof *sl);
  if (!sl)
    return PM_ERR_NOMEM;
  mem(t, t->slots, 0);
  memset(sl, 0, (size_t)nslots * sizeof *sl);
  t->slots = sl;
  t->nslots = nslots;
  for (uint32_t i = 0; i < t->count; i++) {
    const uint8_t *id = at(t, i)->id;
    t->slots[find_slot(t, id)] = slot_tag(id) | (i + 1);
  }
  return 0;
}

pm_members *pm_members_new(const pm_allocator *alloc, uint32_t capacity,
                           uint64_t suspect_ms) {
  if (!alloc)
    alloc = pm_allocator_default();
  if (capacity == 0)
    return NULL;
  pm_members *t = alloc->realloc(alloc->ud, NULL, sizeof *t);
  if (!t)
    return NULL;
  memset(t, 0, sizeof *t);
  t->alloc = alloc;
  t->capacity = capacity < MAX_CAPACITY ? capacity : MAX_CAPACITY;
  t->suspect_ms = suspect_ms;
  t->next_due = UINT64_MAX;
  if (reindex(t, 16)) {
    pm_members_free(t);
    return NULL;
  }
  return t;
}

void pm_members_free(pm_members *t) {
  if (!t)
    return;
  for (uint32_t b = 0; b < t->nblocks; b++)
    mem(t, t->blocks[b], 0);
  mem(t, t->blocks, 0);
  mem(t, t->slots, 0);
  t->alloc->realloc(t->alloc->ud, t, 0);
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
  uint32_t b = pm_members_bucket(e->id);
  t->bcount[b] += up ? 1u : UINT32_MAX; /* -1, modulo 2^32 */
  t->bxor[b] ^= pm_members_tag(e->id);
}

void pm_members_prefetch(const pm_members *t,
                         const uint8_t id[PM_NODE_ID_LEN]) {
  __builtin_prefetch(&t->slots[home(t, id)]);
}

void pm_members_prefetch_entry(const pm_members *t,
                               const uint8_t id[PM_NODE_ID_LEN]) {
  uint32_t v = t->slots[home(t, id)];
  if (v && (v & TAG_MASK) == slot_tag(id))
    __builtin_prefetch(at(t, (v & POS_MASK) - 1));
}

/* Empties slot `s` and re-seats the run after it, so that every entry
 * stays reachable from its home slot (deletion without tombstones). */
static void clear_slot(pm_members *t, uint32_t s) {
  uint32_t mask = t->nslots - 1;
  t->slots[s] = 0;
  for (uint32_t j = (s + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
    uint32_t v = t->slots[j];
    t->slots[j] = 0;
    t->slots[find_slot(t, at(t, (v & POS_MASK) - 1)->id)] = v;
  }
}

static void remove_entry(pm_members *t, uint32_t i) {
  entry *e = at(t, i);
  if (is_live(e))
    toggle_live(t, e, 0);
  clear_slot(t, find_slot(t, e->id));
  uint32_t last = --t->count;
  if (i == last)
    return;
  entry *l = at(t, last);
  uint32_t s = find_slot(t, l->id);
  t->slots[s] = (t->slots[s] & TAG_MASK) | (i + 1);
  *e = *l;
}

/* Makes room for one more entry: grows the storage, or evicts. */
static int make_room(pm_members *t) {
  if (t->count == t->capacity) {
    uint32_t victim = 0;
    for (uint32_t i = 1; i < t->count; i++) {
      const entry *e = at(t, i), *v = at(t, victim);
      int e_alive = e->state == PM_MEMBER_ALIVE;
      int v_alive = v->state == PM_MEMBER_ALIVE;
      if (e_alive != v_alive ? !e_alive : e->at < v->at)
        victim = i;
    }
    remove_entry(t, victim);
    return 0;
  }
  if (t->count == t->cap) {
    if (t->cap < BLOCK_LEN) { /* the first block grows by half */
      uint32_t ncap = t->cap ? t->cap + t->cap / 2 : 16;
      if (ncap > BLOCK_LEN)
        ncap = BLOCK_LEN;
      if (ncap > t->capacity)
        ncap = t->capacity;
      if (!t->blocks) {
        t->blocks = mem(t, NULL, sizeof *t->blocks);
        if (!t->blocks)
          return PM_ERR_NOMEM;
        t->blocks[0] = NULL;
        t->blocks_cap = t->nblocks = 1;
      }
      entry *b = mem(t, t->blocks[0], (size_t)ncap * sizeof *b);
      if (!b)
        return PM_ERR_NOMEM;
      t->blocks[0] = b;
      t->cap = ncap;
    } else { /* then whole blocks, never moved */
      if (t->nblocks == t->blocks_cap) {
        uint32_t nb = t->blocks_cap * 2;
        entry **bl = mem(t, t->blocks, (size_t)nb * sizeof *bl);
        if (!bl)
          return PM_ERR_NOMEM;
        t->blocks = bl;
        t->blocks_cap = nb;
      }
      entry *b = mem(t, NULL, (size_t)BLOCK_LEN * sizeof *b);
      if (!b)
        return PM_ERR_NOMEM;
      t->blocks[t->nblocks++] = b;
      t->cap += BLOCK_LEN;
    }
  }
  if ((t->count + 1) * 4 > t->nslots * 3)
    return reindex(t, t->nslots * 2);
  return 0;
}

static uint64_t silent_deadline(const pm_members *t, const entry *e) {
  uint64_t iv = e->interval_ms > t->floor_ms ? e->interval_ms : t->floor_ms;
  return e->at + SILENT_INTERVALS * iv + t->suspect_ms;
}

static void set_alive(pm_members *t, entry *e, uint32_t inc,
                      uint32_t interval_ms, uint64_t now) {
  if (!is_live(e))
    toggle_live(t, e, 1);
  e->state = PM_MEMBER_ALIVE;
  e->inc = inc;
  e->interval_ms = interval_ms;
  e->at = now;
  uint64_t due = silent_deadline(t, e);
  if (due < t->next_due)
    t->next_due = due;
}

/* A new entry, alive. */
static int add_alive(pm_members *t, const uint8_t *id, uint32_t inc,
                     uint32_t interval_ms, uint64_t now) {
  int rc = make_room(t);
  if (rc)
    return rc;
  entry *e = at(t, t->count);
  memset(e, 0, sizeof *e);
  memcpy(e->id, id, PM_NODE_ID_LEN);
  t->slots[find_slot(t, id)] = slot_tag(id) | ++t->count;
  set_alive(t, e, inc, interval_ms, now);
  return PM_MEMBERS_JOINED;
}

int pm_members_alive(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                     uint32_t inc, uint32_t interval_ms, uint64_t now) {
  entry *e = find(t, id);
  if (!e)
    return add_alive(t, id, inc, interval_ms, now);
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
  entry *e = find(t, id);
  if (!e)
    return add_alive(t, id, inc, interval_ms, now);
  if (inc <= e->inc)
    return PM_MEMBERS_NONE; /* nothing newer than what this node knows */
  int was_live = is_live(e);
  set_alive(t, e, inc, interval_ms, now);
  return was_live ? PM_MEMBERS_NONE : PM_MEMBERS_JOINED;
}

int pm_members_ask(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                   uint32_t inc) {
  entry *e = find(t, id);
  if (!e || e->state != PM_MEMBER_FAILED || e->inc != inc ||
      e->interval_ms == inc + 1u || inc == UINT32_MAX)
    return 0;
  e->interval_ms = inc + 1u;
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
  e->at = now;
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
  e->at = now;
  if (now + t->suspect_ms < t->next_due)
    t->next_due = now + t->suspect_ms;
  return PM_MEMBERS_SUSPECTED;
}

void pm_members_expire(pm_members *t, uint64_t now, pm_members_failed_fn fn,
                       void *ud) {
  if (now < t->next_due)
    return;
  uint64_t next = UINT64_MAX;
  for (uint32_t i = 0; i < t->count; i++) {
    entry *e = at(t, i);
    uint64_t due;
    if (e->state == PM_MEMBER_SUSPECT)
      due = e->at + t->suspect_ms;
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
    e->interval_ms = 0; /* not asked yet (pm_members_ask) */
    toggle_live(t, e, 0);
    if (fn)
      fn(ud, e->id);
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
  return t->count;
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

void pm_members_digest(const pm_members *t, uint32_t count[PM_MEMBERS_BUCKETS],
                       uint64_t tags[PM_MEMBERS_BUCKETS]) {
  memcpy(count, t->bcount, sizeof t->bcount);
  memcpy(tags, t->bxor, sizeof t->bxor);
}

void pm_members_set_floor(pm_members *t, uint32_t floor_ms) {
  t->floor_ms = floor_ms;
}

void pm_members_at(const pm_members *t, uint32_t i, pm_member_info *out,
                   uint32_t *interval_ms) {
  const entry *e = at(t, i);
  memcpy(out->id, e->id, PM_NODE_ID_LEN);
  out->incarnation = e->inc;
  out->state = e->state;
  out->last_heard = e->at;
  if (interval_ms)
    *interval_ms = e->interval_ms;
}
