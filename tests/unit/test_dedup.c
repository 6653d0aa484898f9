/* Duplicate cache (runtime/core/dedup.h): TTL with literal timestamps,
 * capacity eviction, deadline, and a long randomised run checked against a
 * reference model, with a counting allocator proving memory stops growing
 * once the cache is full. */
#include <stdlib.h>

#include "dedup.h"
#include "test.h"

/* An ID whose first four bytes (the hash the table uses) come from `hash`
 * and bytes 8..11 from `tag`, the rest being the same for all, so tests can
 * force collisions (bytes 4..7, which the index keeps, are the same too). */
static void make_id(uint8_t id[PM_MSG_ID_LEN], uint32_t hash, uint32_t tag) {
  memset(id, 0x5a, PM_MSG_ID_LEN);
  id[0] = (uint8_t)hash;
  id[1] = (uint8_t)(hash >> 8);
  id[2] = (uint8_t)(hash >> 16);
  id[3] = (uint8_t)(hash >> 24);
  id[8] = (uint8_t)(tag >> 24);
  id[9] = (uint8_t)(tag >> 16);
  id[10] = (uint8_t)(tag >> 8);
  id[11] = (uint8_t)tag;
}

static void simple_id(uint8_t id[PM_MSG_ID_LEN], uint32_t n) {
  make_id(id, n * 2654435761u, n);
}

/* ---- counting allocator ------------------------------------------------- */

typedef struct counting {
  size_t calls; /* allocations and reallocations (not frees) */
  size_t live;  /* blocks not yet freed */
} counting;

static void *counting_realloc(void *ud, void *ptr, size_t size) {
  counting *c = ud;
  if (size == 0) {
    if (ptr)
      c->live--;
    free(ptr);
    return NULL;
  }
  c->calls++;
  if (!ptr)
    c->live++;
  return realloc(ptr, size);
}

/* ---- tests -------------------------------------------------------------- */

static void test_new_rejects_zero_capacity(void) {
  CHECK(pm_dedup_new(NULL, 0, 1000) == NULL);
}

static void test_insert_contains(void) {
  pm_dedup *d = pm_dedup_new(NULL, 8, 1000);
  CHECK(d != NULL);
  if (!d)
    return;
  uint8_t a[PM_MSG_ID_LEN], b[PM_MSG_ID_LEN];
  simple_id(a, 1);
  simple_id(b, 2);
  CHECK_INT(pm_dedup_count(d), 0);
  CHECK_INT(pm_dedup_contains(d, a, 1), 0);
  CHECK_INT(pm_dedup_insert(d, a, 1), 1);
  CHECK_INT(pm_dedup_contains(d, a, 1), 1);
  CHECK_INT(pm_dedup_contains(d, b, 1), 0);
  CHECK_INT(pm_dedup_insert(d, a, 2), 0); /* already known */
  CHECK_INT(pm_dedup_count(d), 1);
  CHECK_INT(pm_dedup_insert(d, b, 2), 1);
  CHECK_INT(pm_dedup_count(d), 2);
  CHECK_INT(pm_dedup_contains(d, a, 3), 1);
  CHECK_INT(pm_dedup_contains(d, b, 3), 1);
  /* Byte 15 tells IDs apart; the bytes after it are not kept. */
  uint8_t c[PM_MSG_ID_LEN];
  memcpy(c, a, sizeof c);
  c[15] ^= 1;
  CHECK_INT(pm_dedup_contains(d, c, 3), 0);
  c[15] ^= 1;
  c[16] ^= 1;
  c[PM_MSG_ID_LEN - 1] ^= 1;
  CHECK_INT(pm_dedup_contains(d, c, 3), 1);
  CHECK_INT(pm_dedup_insert(d, c, 3), 0);
  pm_dedup_free(d);
  pm_dedup_free(NULL);
}

static void test_ttl_expiry(void) {
  pm_dedup *d = pm_dedup_new(NULL, 8, 3);
  if (!d) {
    CHECK(0);
    return;
  }
  uint8_t a[PM_MSG_ID_LEN], b[PM_MSG_ID_LEN];
  simple_id(a, 10);
  simple_id(b, 11);
  CHECK_INT(pm_dedup_insert(d, a, 1), 1);
  CHECK_INT(pm_dedup_insert(d, b, 2), 1);
  /* Re-inserting keeps the original time: `a` still goes at 1 + 3. */
  CHECK_INT(pm_dedup_insert(d, a, 3), 0);
  CHECK_INT(pm_dedup_contains(d, a, 3), 1);
  CHECK_INT(pm_dedup_contains(d, b, 3), 1);
  CHECK_INT(pm_dedup_contains(d, a, 4), 0); /* 4 - 1 >= ttl */
  CHECK_INT(pm_dedup_contains(d, b, 4), 1);
  CHECK_INT(pm_dedup_count(d), 2); /* a lookup does not sweep */
  pm_dedup_expire(d, 4);
  CHECK_INT(pm_dedup_count(d), 1);
  CHECK_INT(pm_dedup_contains(d, b, 5), 0);
  pm_dedup_expire(d, 5);
  CHECK_INT(pm_dedup_count(d), 0);
  /* Once forgotten, an ID is new again. */
  CHECK_INT(pm_dedup_insert(d, a, 5), 1);
  CHECK_INT(pm_dedup_contains(d, a, 7), 1);
  pm_dedup_expire(d, 8);
  CHECK_INT(pm_dedup_count(d), 0);
  pm_dedup_free(d);
}

static void test_deadline(void) {
  pm_dedup *d = pm_dedup_new(NULL, 4, 100);
  if (!d) {
    CHECK(0);
    return;
  }
  uint8_t a[PM_MSG_ID_LEN], b[PM_MSG_ID_LEN], c[PM_MSG_ID_LEN];
  simple_id(a, 1);
  simple_id(b, 2);
  simple_id(c, 3);
  CHECK(pm_dedup_deadline(d) == PM_DEADLINE_NONE);
  CHECK_INT(pm_dedup_insert(d, a, 10), 1);
  CHECK_INT(pm_dedup_deadline(d), 110);
  CHECK_INT(pm_dedup_insert(d, b, 50), 1);
  CHECK_INT(pm_dedup_insert(d, c, 60), 1);
  CHECK_INT(pm_dedup_deadline(d), 110); /* still the oldest */
  pm_dedup_expire(d, 109);
  CHECK_INT(pm_dedup_count(d), 3);
  pm_dedup_expire(d, 110);
  CHECK_INT(pm_dedup_count(d), 2);
  CHECK_INT(pm_dedup_deadline(d), 150);
  pm_dedup_expire(d, 1000);
  CHECK_INT(pm_dedup_count(d), 0);
  CHECK(pm_dedup_deadline(d) == PM_DEADLINE_NONE);
  pm_dedup_free(d);
}

static void test_capacity_evicts_oldest(void) {
  pm_dedup *d = pm_dedup_new(NULL, 3, 1000000);
  if (!d) {
    CHECK(0);
    return;
  }
  uint8_t id[5][PM_MSG_ID_LEN];
  for (uint32_t i = 0; i < 5; i++)
    simple_id(id[i], 100 + i);
  CHECK_INT(pm_dedup_insert(d, id[0], 1), 1);
  CHECK_INT(pm_dedup_insert(d, id[1], 2), 1);
  CHECK_INT(pm_dedup_insert(d, id[2], 3), 1);
  CHECK_INT(pm_dedup_deadline(d), 1 + 1000000);
  CHECK_INT(pm_dedup_insert(d, id[3], 4), 1);
  CHECK_INT(pm_dedup_count(d), 3);
  CHECK_INT(pm_dedup_contains(d, id[0], 5), 0);
  CHECK_INT(pm_dedup_contains(d, id[1], 5), 1);
  CHECK_INT(pm_dedup_contains(d, id[2], 5), 1);
  CHECK_INT(pm_dedup_contains(d, id[3], 5), 1);
  CHECK_INT(pm_dedup_deadline(d), 2 + 1000000);
  /* A re-insert of a known ID does not refresh its place. */
  CHECK_INT(pm_dedup_insert(d, id[1], 6), 0);
  CHECK_INT(pm_dedup_insert(d, id[4], 7), 1);
  CHECK_INT(pm_dedup_contains(d, id[1], 8), 0);
  CHECK_INT(pm_dedup_contains(d, id[2], 8), 1);
  /* The evicted one is new again and pushes out the next oldest. */
  CHECK_INT(pm_dedup_insert(d, id[0], 9), 1);
  CHECK_INT(pm_dedup_contains(d, id[2], 9), 0);
  CHECK_INT(pm_dedup_contains(d, id[3], 9), 1);
  CHECK_INT(pm_dedup_contains(d, id[4], 9), 1);
  CHECK_INT(pm_dedup_contains(d, id[0], 9), 1);
  pm_dedup_free(d);
}

static void test_colliding_hashes(void) {
  /* Every ID lands in the same slot: deletion must re-seat the cluster. */
  pm_dedup *d = pm_dedup_new(NULL, 16, 1000000);
  if (!d) {
    CHECK(0);
    return;
  }
  uint8_t id[PM_MSG_ID_LEN];
  for (uint32_t i = 0; i < 64; i++) {
    make_id(id, 7, i);
    CHECK_INT(pm_dedup_insert(d, id, i), 1);
    for (uint32_t j = 0; j <= i; j++) {
      make_id(id, 7, j);
      int want = j + 16 > i;
      if (pm_dedup_contains(d, id, i) != want) {
        fprintf(stderr, "after %u inserts, id %u: want %d\n", i + 1, j, want);
        CHECK(0);
      }
    }
  }
  pm_dedup_free(d);
}

/* ---- randomised run against a reference model --------------------------- */

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

#define POOL 3000

/* Model: ID `k` is present iff its latest successful insert is among the
 * last `cap` successful inserts and younger than the TTL. */
typedef struct model {
  uint64_t seq[POOL]; /* 0 = never inserted */
  uint64_t at[POOL];
  uint64_t inserted;
  uint32_t cap;
  uint64_t ttl;
} model;

static int model_has(const model *m, uint32_t k, uint64_t now) {
  return m->seq[k] && m->seq[k] + m->cap > m->inserted &&
         now - m->at[k] < m->ttl;
}

static uint32_t model_count(const model *m, uint64_t now) {
  uint32_t c = 0;
  for (uint32_t k = 0; k < POOL; k++) /* unused IDs have seq 0 */
    c += (uint32_t)model_has(m, k, now);
  return c;
}

/* IDs come from a pool of `pool` (<= POOL) distinct values. `clustered`:
 * their hashes are 16 values straddling the end of the table, so probes run
 * long and wrap around (kept to small capacities: a table of colliding IDs
 * is quadratic, which real IDs, being hashes, never are). `tick`: time
 * advance per insert (0 keeps TTL out of the picture). */
static void run_model(uint64_t seed, uint32_t cap, uint32_t pool, int clustered,
                      uint64_t tick, uint64_t ttl, uint32_t rounds) {
  static model m;
  memset(&m, 0, sizeof m);
  m.cap = cap;
  m.ttl = ttl;
  counting ca = {0, 0};
  pm_allocator alloc = {counting_realloc, &ca};
  pm_dedup *d = pm_dedup_new(&alloc, m.cap, ttl);
  if (!d) {
    CHECK(0);
    return;
  }
  size_t calls_when_full = 0;
  int full = 0;
  uint32_t hashes[POOL];
  uint64_t s = seed;
  uint32_t slots = 16;
  while (slots < 2 * cap)
    slots *= 2;
  for (uint32_t k = 0; k < pool; k++)
    hashes[k] = clustered ? (uint32_t)(slots - 8 + xorshift(&s) % 16)
                          : (uint32_t)xorshift(&s);

  uint64_t now = 1;
  int reported = 0;
  for (uint32_t r = 0; r < rounds; r++) {
    now += tick;
    uint32_t k = (uint32_t)(xorshift(&s) % pool);
    uint8_t id[PM_MSG_ID_LEN];
    make_id(id, hashes[k], k);
    int want = !model_has(&m, k, now);
    int got = pm_dedup_insert(d, id, now);
    if (want) {
      m.seq[k] = ++m.inserted;
      m.at[k] = now;
    }
    if (got != want && reported++ < 5) {
      fprintf(stderr, "round %u id %u: insert gave %d, model %d\n", r, k, got,
              want);
      CHECK(0);
    }
    if (pm_dedup_count(d) > m.cap) {
      CHECK(0);
      break;
    }
    if (!full && pm_dedup_count(d) == m.cap) {
      full = 1;
      calls_when_full = ca.calls;
    }
    if (r % 997 == 0 || r + 1 == rounds) {
      for (uint32_t j = 0; j < pool; j++) {
        make_id(id, hashes[j], j);
        int w = model_has(&m, j, now);
        int g = pm_dedup_contains(d, id, now);
        if (g != w && reported++ < 5) {
          fprintf(stderr, "round %u id %u: contains gave %d, model %d\n", r, j,
                  g, w);
          CHECK(0);
        }
      }
      CHECK_INT(pm_dedup_count(d), model_count(&m, now));
    }
  }
  /* Once full, no more allocation: memory is bounded by the capacity. */
  if (full)
    CHECK_INT(ca.calls, calls_when_full);
  CHECK_INT(ca.live, 3);
  pm_dedup_free(d);
  CHECK_INT(ca.live, 0);
}

static void test_random_uniform(void) {
  /* 100k inserts from 3000 IDs into 1000 places: IDs come back both while
   * still known and after being evicted. */
  run_model(0x9e3779b97f4a7c15ull, 1000, POOL, 0, 0, 1000, 100000);
}

static void test_random_clustered(void) {
  run_model(12345, 64, 200, 1, 0, 1000, 100000);
  run_model(54321, 200, 600, 1, 0, 1000, 20000);
}

static void test_random_with_ttl(void) {
  /* One ms per insert and a 700 ms TTL: expiry, not capacity, bounds it
   * most of the time, with the table still near full. */
  run_model(777, 1000, POOL, 0, 1, 700, 100000);
  run_model(778, 64, 200, 1, 1, 50, 50000);
}

static void test_fresh_ids_never_grow(void) {
  /* 100k IDs never seen before into capacity 1000: the last 1000 are all
   * known, the one before them is not. */
  counting ca = {0, 0};
  pm_allocator alloc = {counting_realloc, &ca};
  pm_dedup *d = pm_dedup_new(&alloc, 1000, UINT64_MAX / 2);
  if (!d) {
    CHECK(0);
    return;
  }
  size_t calls = 0;
  uint64_t s = 42;
  static uint8_t ids[100000][8];
  uint8_t id[PM_MSG_ID_LEN];
  for (uint32_t i = 0; i < 100000; i++) {
    uint64_t v = xorshift(&s);
    for (int b = 0; b < 8; b++)
      ids[i][b] = (uint8_t)(v >> (8 * b));
    memset(id, 0, sizeof id);
    memcpy(id, ids[i], 8);
    if (pm_dedup_insert(d, id, i) != 1) {
      CHECK(0);
      break;
    }
    if (i == 999)
      calls = ca.calls; /* full now: nothing more may be allocated */
  }
  CHECK_INT(pm_dedup_count(d), 1000);
  for (uint32_t i = 100000 - 1001; i < 100000; i++) {
    memset(id, 0, sizeof id);
    memcpy(id, ids[i], 8);
    CHECK_INT(pm_dedup_contains(d, id, 100000), i >= 100000 - 1000);
  }
  CHECK_INT(ca.calls, calls);
  pm_dedup_free(d);
  CHECK_INT(ca.live, 0);
}

TEST_MAIN(TEST_CASE(test_new_rejects_zero_capacity),
          TEST_CASE(test_insert_contains), TEST_CASE(test_ttl_expiry),
          TEST_CASE(test_deadline), TEST_CASE(test_capacity_evicts_oldest),
          TEST_CASE(test_colliding_hashes), TEST_CASE(test_random_uniform),
          TEST_CASE(test_random_clustered), TEST_CASE(test_random_with_ttl),
          TEST_CASE(test_fresh_ids_never_grow))
