/* Unit tests for the ID-keyed table (runtime/core/idtable.c). Every case
 * runs twice: with the IDs in the entries, and with them in a pool, which
 * must hold none once the table is finished. */
#include <stdint.h>
#include <string.h>

#include "idtable.h"
#include "pooled.h"
#include "test.h"

typedef struct item {
  uint32_t value;
} item;

static int init(pm_idtable *t, uint32_t capacity) {
  return pm_idtable_init(t, NULL, pool, sizeof(item), capacity);
}

/* IDs whose bytes 0..4 (home slot and slot tag) are all equal collide in
 * every slot; `salt` tells them apart further on. */
static void make_id(uint8_t id[PM_NODE_ID_LEN], uint32_t home, uint8_t tag,
                    uint32_t salt) {
  memset(id, 0, PM_NODE_ID_LEN);
  memcpy(id, &home, sizeof home);
  id[4] = tag;
  memcpy(id + 8, &salt, sizeof salt);
}

static void test_add_find_remove(void) {
  pm_idtable t;
  CHECK_INT(init(&t, 100), 0);
  uint8_t a[PM_NODE_ID_LEN], b[PM_NODE_ID_LEN], c[PM_NODE_ID_LEN];
  make_id(a, 7, 1, 1);
  make_id(b, 7, 1, 2); /* same slot and tag as a */
  make_id(c, 7, 2, 3); /* same slot, other tag */
  CHECK_INT(pm_idtable_find(&t, a), PM_IDTABLE_NONE);
  item *ia = pm_idtable_add(&t, a);
  CHECK(ia != NULL);
  CHECK_MEM(pm_idtable_key(&t, ia), a, PM_NODE_ID_LEN);
  CHECK_INT(ia->value, 0);
  ia->value = 10;
  ((item *)pm_idtable_add(&t, b))->value = 20;
  ((item *)pm_idtable_add(&t, c))->value = 30;
  CHECK_INT(t.count, 3);
  CHECK_INT(pm_idtable_find(&t, a), 0);
  CHECK_INT(pm_idtable_find(&t, b), 1);
  CHECK_INT(pm_idtable_find(&t, c), 2);
  /* Removing the first moves the last into its place. */
  pm_idtable_remove(&t, 0);
  CHECK_INT(t.count, 2);
  CHECK_INT(pm_idtable_find(&t, a), PM_IDTABLE_NONE);
  CHECK_INT(pm_idtable_find(&t, c), 0);
  CHECK_INT(((item *)pm_idtable_at(&t, 0))->value, 30);
  CHECK_INT(pm_idtable_find(&t, b), 1);
  CHECK_INT(((item *)pm_idtable_at(&t, 1))->value, 20);
  pm_idtable_fini(&t);
}

static void test_capacity_refuses(void) {
  pm_idtable t;
  CHECK_INT(init(&t, 3), 0);
  uint8_t id[PM_NODE_ID_LEN];
  for (uint32_t i = 0; i < 3; i++) {
    make_id(id, i * 2654435761u, (uint8_t)i, i);
    CHECK(pm_idtable_add(&t, id) != NULL);
  }
  make_id(id, 99, 9, 99);
  CHECK(pm_idtable_add(&t, id) == NULL);
  CHECK_INT(t.count, 3);
  pm_idtable_remove(&t, 1);
  CHECK(pm_idtable_add(&t, id) != NULL);
  CHECK_INT(pm_idtable_find(&t, id), 2);
  pm_idtable_fini(&t);
}

/* Many entries across several blocks, with long probe runs (a quarter of
 * them share a home slot), removed in an order that re-seats runs: every
 * remaining one stays findable, with its own value. */
static void test_many_with_collisions(void) {
  enum { N = 3000 };
  pm_idtable t;
  CHECK_INT(init(&t, N), 0);
  uint8_t id[PM_NODE_ID_LEN];
  for (uint32_t i = 0; i < N; i++) {
    uint32_t home = i % 4 == 0 ? 12345u : i * 2654435761u;
    make_id(id, home, (uint8_t)(i % 3), i);
    item *e = pm_idtable_add(&t, id);
    CHECK(e != NULL);
    if (e)
      e->value = i;
  }
  CHECK_INT(t.count, N);
  CHECK(t.nblocks > 1);
  static uint8_t gone[N];
  memset(gone, 0, sizeof gone);
  for (uint32_t k = 0; k < N / 2; k++) {
    uint32_t victim = (k * 7919u) % N;
    if (gone[victim])
      continue;
    make_id(id, victim % 4 == 0 ? 12345u : victim * 2654435761u,
            (uint8_t)(victim % 3), victim);
    uint32_t pos = pm_idtable_find(&t, id);
    CHECK(pos != PM_IDTABLE_NONE);
    if (pos == PM_IDTABLE_NONE)
      continue;
    pm_idtable_remove(&t, pos);
    gone[victim] = 1;
  }
  uint32_t left = 0;
  for (uint32_t i = 0; i < N; i++) {
    make_id(id, i % 4 == 0 ? 12345u : i * 2654435761u, (uint8_t)(i % 3), i);
    uint32_t pos = pm_idtable_find(&t, id);
    if (gone[i]) {
      CHECK_INT(pos, PM_IDTABLE_NONE);
      continue;
    }
    left++;
    CHECK(pos != PM_IDTABLE_NONE);
    if (pos != PM_IDTABLE_NONE)
      CHECK_INT(((item *)pm_idtable_at(&t, pos))->value, i);
  }
  CHECK_INT(t.count, left);
  pm_idtable_fini(&t);
}

/* A walk by prefix (the first byte, or the first 12 bits) finds exactly
 * the entries beginning with it, in a small table (fewer slots than
 * prefixes) and in a large one, and after removals. */
static void walk_bits(const pm_idtable *t, const uint8_t *present, uint32_t n,
                      uint32_t (*id_of)(uint32_t), unsigned bits) {
  static uint8_t seen[4096];
  for (uint32_t p = 0; p < 1u << bits; p++) {
    memset(seen, 0, n);
    pm_idtable_walk w;
    pm_idtable_prefix(t, (uint16_t)p, bits, &w);
    uint32_t found = 0;
    for (uint32_t pos; (pos = pm_idtable_next(t, &w)) != PM_IDTABLE_NONE;) {
      const item *e = pm_idtable_at(t, pos);
      const uint8_t *id = pm_idtable_key(t, e);
      CHECK_INT(((uint32_t)id[0] << 8 | id[1]) >> (16 - bits), p);
      CHECK(e->value < n && !seen[e->value]);
      if (e->value < n)
        seen[e->value] = 1;
      found++;
    }
    uint32_t want = 0;
    for (uint32_t i = 0; i < n; i++)
      if (present[i] && (id_of(i) >> (32 - bits)) == p) {
        want++;
        CHECK(seen[i]);
      }
    CHECK_INT(found, want);
  }
}

static void walk_matches(const pm_idtable *t, const uint8_t *present,
                         uint32_t n, uint32_t (*id_of)(uint32_t)) {
  walk_bits(t, present, n, id_of, 8);
  walk_bits(t, present, n, id_of, 12);
}

static uint32_t spread_id(uint32_t i) {
  return i * 2654435761u;
}

/* Entry i's ID: spread_id(i) as its first four bytes, big-endian, and i
 * further on. */
static void spread_id_bytes(uint8_t id[PM_NODE_ID_LEN], uint32_t i) {
  uint32_t h = spread_id(i);
  memset(id, 0, PM_NODE_ID_LEN);
  id[0] = (uint8_t)(h >> 24);
  id[1] = (uint8_t)(h >> 16);
  id[2] = (uint8_t)(h >> 8);
  id[3] = (uint8_t)h;
  memcpy(id + 8, &i, sizeof i);
}

static void test_walk_by_first_byte(void) {
  enum { N = 4000 };
  static uint8_t present[N];
  uint32_t sizes[] = {5, 100, N};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    uint32_t n = sizes[k];
    pm_idtable t;
    CHECK_INT(init(&t, n), 0);
    uint8_t id[PM_NODE_ID_LEN];
    for (uint32_t i = 0; i < n; i++) {
      spread_id_bytes(id, i);
      item *e = pm_idtable_add(&t, id);
      CHECK(e != NULL);
      if (e)
        e->value = i;
      present[i] = 1;
    }
    walk_matches(&t, present, n, spread_id);
    for (uint32_t i = 0; i < n; i += 3) { /* remove a third */
      spread_id_bytes(id, i);
      uint32_t pos = pm_idtable_find(&t, id);
      CHECK(pos != PM_IDTABLE_NONE);
      if (pos != PM_IDTABLE_NONE)
        pm_idtable_remove(&t, pos);
      present[i] = 0;
    }
    walk_matches(&t, present, n, spread_id);
    pm_idtable_fini(&t);
  }
}

/* pm_idtable_lookup answers as pm_idtable_find does and names the slot an
 * add then takes, past colliding entries; the add still lands right when
 * it has to grow the index first (the 13th entry of 16 slots). */
static void test_lookup_then_add_at(void) {
  pm_idtable t;
  CHECK_INT(init(&t, 100), 0);
  uint8_t id[PM_NODE_ID_LEN];
  uint32_t slot, first = 0;
  for (uint32_t k = 0; k < 40; k++) {
    make_id(id, 9, (uint8_t)(k % 3), k); /* one home slot for all */
    CHECK_INT(pm_idtable_lookup(&t, id, &slot), PM_IDTABLE_NONE);
    CHECK(slot < t.nslots);
    if (k == 0)
      first = slot;
    else if (t.nslots == 16)
      CHECK_INT(slot, (first + k) & 15); /* the next free one */
    item *e = pm_idtable_add_at(&t, id, slot);
    CHECK(e != NULL);
    e->value = k;
    CHECK_INT(pm_idtable_lookup(&t, id, &slot), k);
  }
  CHECK(t.nslots > 16);
  for (uint32_t k = 0; k < 40; k++) {
    make_id(id, 9, (uint8_t)(k % 3), k);
    uint32_t i = pm_idtable_find(&t, id);
    CHECK_INT(i, k);
    CHECK_INT(((item *)pm_idtable_at(&t, i))->value, k);
  }
  pm_idtable_fini(&t);
}

/* The hints read only what exists: an empty table, a table whose home slot
 * names another entry, one that names the entry. */
static void test_prefetch_is_harmless(void) {
  pm_idtable t;
  CHECK_INT(init(&t, 10), 0);
  uint8_t a[PM_NODE_ID_LEN], b[PM_NODE_ID_LEN];
  make_id(a, 5, 1, 1);
  make_id(b, 5, 2, 2);
  pm_idtable_prefetch(&t, a);
  pm_idtable_prefetch_entry(&t, a);
  CHECK(pm_idtable_add(&t, a) != NULL);
  pm_idtable_prefetch_entry(&t, a);
  pm_idtable_prefetch_entry(&t, b);
  CHECK_INT(pm_idtable_find(&t, a), 0);
  CHECK_INT(pm_idtable_find(&t, b), PM_IDTABLE_NONE);
  pm_idtable_fini(&t);
}

static void test_add_find_remove_pooled(void) {
  pooled(test_add_find_remove);
}

static void test_capacity_refuses_pooled(void) {
  pooled(test_capacity_refuses);
}

static void test_many_with_collisions_pooled(void) {
  pooled(test_many_with_collisions);
}

static void test_walk_by_first_byte_pooled(void) {
  pooled(test_walk_by_first_byte);
}

static void test_lookup_then_add_at_pooled(void) {
  pooled(test_lookup_then_add_at);
}

static void test_prefetch_is_harmless_pooled(void) {
  pooled(test_prefetch_is_harmless);
}

TEST_MAIN(TEST_CASE(test_add_find_remove),
          TEST_CASE(test_add_find_remove_pooled),
          TEST_CASE(test_capacity_refuses),
          TEST_CASE(test_capacity_refuses_pooled),
          TEST_CASE(test_many_with_collisions),
          TEST_CASE(test_many_with_collisions_pooled),
          TEST_CASE(test_walk_by_first_byte),
          TEST_CASE(test_walk_by_first_byte_pooled),
          TEST_CASE(test_lookup_then_add_at),
          TEST_CASE(test_lookup_then_add_at_pooled),
          TEST_CASE(test_prefetch_is_harmless),
          TEST_CASE(test_prefetch_is_harmless_pooled))
