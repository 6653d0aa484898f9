/* The member table; see members.h. Entries live in one array (grown by
 * doubling up to the capacity) with a chained hash index over it, as in
 * authors.c; removing an entry moves the last one into its slot. */
#include "members.h"

#include <string.h>

#define NIL UINT32_MAX
#define SILENT_INTERVALS 3 /* refreshes missed before the slow path fails */

typedef struct entry {
  uint8_t id[PM_NODE_ID_LEN];
  uint32_t inc;
  /* While alive or suspect, the refresh interval it announced; once failed,
   * 1 + the incarnation this node asked it to refute (0: not asked). */
  uint32_t interval_ms;
  uint32_t next; /* hash chain */
  uint8_t state; /* enum pm_member_state */
  /* The last news of it: its last $alive while alive, the suspicion while
   * suspect, its $leave once left (a failure leaves it as it was). One
   * field keeps an entry at 56 bytes: a node of a 10,000-member mesh holds
   * 10,000 of them. */
  uint64_t at;
} entry;

struct pm_members {
  const pm_allocator *alloc;
  uint32_t capacity, count, cap, nbuckets, live;
  uint64_t suspect_ms;
  uint32_t floor_ms; /* least refresh interval assumed of any member */
  uint32_t bcount[PM_MEMBERS_BUCKETS]; /* live members per digest bucket */
  uint64_t bxor[PM_MEMBERS_BUCKETS];   /* XOR of their ID tags */
  uint64_t next_due;                   /* lower bound of the next expiry */
  entry *entries;
  uint32_t *buckets;
};

static void *mem(const pm_members *t, void *p, size_t size) {
  return t->alloc->realloc(t->alloc->ud, p, size);
}

static uint32_t hash(const pm_members *t, const uint8_t *id) {
  uint32_t h;
  memcpy(&h, id, sizeof h); /* IDs are public keys: already uniform */
  return h % t->nbuckets;
}

static int rehash(pm_members *t, uint32_t nbuckets) {
  uint32_t *b = mem(t, NULL, nbuckets * sizeof *b);
  if (!b)
    return PM_ERR_NOMEM;
  mem(t, t->buckets, 0);
  t->buckets = b;
  t->nbuckets = nbuckets;
  for (uint32_t i = 0; i < nbuckets; i++)
    b[i] = NIL;
  for (uint32_t i = 0; i < t->count; i++) {
    uint32_t *head = &b[hash(t, t->entries[i].id)];
    t->entries[i].next = *head;
    *head = i;
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
  t->capacity = capacity;
  t->suspect_ms = suspect_ms;
  t->next_due = UINT64_MAX;
  if (rehash(t, 16)) {
    pm_members_free(t);
    return NULL;
  }
  return t;
}

void pm_members_free(pm_members *t) {
  if (!t)
    return;
  mem(t, t->entries, 0);
  mem(t, t->buckets, 0);
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

static entry *find(const pm_members *t, const uint8_t *id) {
  for (uint32_t i = t->buckets[hash(t, id)]; i != NIL; i = t->entries[i].next)
    if (memcmp(t->entries[i].id, id, PM_NODE_ID_LEN) == 0)
      return &t->entries[i];
  return NULL;
}

void pm_members_prefetch(const pm_members *t,
                         const uint8_t id[PM_NODE_ID_LEN]) {
  __builtin_prefetch(&t->buckets[hash(t, id)]);
}

/* Unlinks entry `i` from its chain. */
static void unlink_entry(pm_members *t, uint32_t i) {
  uint32_t *p = &t->buckets[hash(t, t->entries[i].id)];
  while (*p != i)
    p = &t->entries[*p].next;
  *p = t->entries[i].next;
}

static void remove_entry(pm_members *t, uint32_t i) {
  if (is_live(&t->entries[i]))
    toggle_live(t, &t->entries[i], 0);
  unlink_entry(t, i);
  uint32_t last = --t->count;
  if (i == last)
    return;
  unlink_entry(t, last);
  t->entries[i] = t->entries[last];
  uint32_t *head = &t->buckets[hash(t, t->entries[i].id)];
  t->entries[i].next = *head;
  *head = i;
}

/* Makes room for one more entry: grows the array, or evicts. */
static int make_room(pm_members *t) {
  if (t->count == t->capacity) {
    uint32_t victim = NIL;
    for (uint32_t i = 0; i < t->count; i++) {
      const entry *e = &t->entries[i];
      if (victim == NIL) {
        victim = i;
        continue;
      }
      const entry *v = &t->entries[victim];
      int e_alive = e->state == PM_MEMBER_ALIVE;
      int v_alive = v->state == PM_MEMBER_ALIVE;
      if (e_alive != v_alive ? !e_alive : e->at < v->at)
        victim = i;
    }
    remove_entry(t, victim);
    return 0;
  }
  if (t->count == t->cap) {
    uint32_t ncap = t->cap ? t->cap + t->cap / 2 : 16; /* 1.5x: less slack */
    if (ncap > t->capacity)
      ncap = t->capacity;
    entry *ne = mem(t, t->entries, (size_t)ncap * sizeof *ne);
    if (!ne)
      return PM_ERR_NOMEM;
    t->entries = ne;
    t->cap = ncap;
  }
  if (t->count >= t->nbuckets && t->nbuckets < (1u << 30))
    return rehash(t, t->nbuckets * 2);
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
  entry *e = &t->entries[t->count];
  memset(e, 0, sizeof *e);
  memcpy(e->id, id, PM_NODE_ID_LEN);
  uint32_t *head = &t->buckets[hash(t, id)];
  e->next = *head;
  *head = t->count++;
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
    entry *e = &t->entries[i];
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
  const entry *e = &t->entries[i];
  memcpy(out->id, e->id, PM_NODE_ID_LEN);
  out->incarnation = e->inc;
  out->state = e->state;
  out->last_heard = e->at;
  if (interval_ms)
    *interval_ms = e->interval_ms;
}
