/* Unit tests for the node ID pool (runtime/core/idpool.c) and for tables
 * that share one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "idpool.h"
#include "idtable.h"
#include "test.h"

/* Entry i's ID: i spread over the first four bytes (the home slot), and i
 * again further on. */
static void make_id(uint8_t id[PM_NODE_ID_LEN], uint32_t i) {
  uint32_t h = i * 2654435761u;
  memset(id, 0, PM_NODE_ID_LEN);
  id[0] = (uint8_t)(h >> 24);
  id[1] = (uint8_t)(h >> 16);
  id[2] = (uint8_t)(h >> 8);
  id[3] = (uint8_t)h;
  memcpy(id + 8, &i, sizeof i);
}

/* The same ID twice is one handle with two references; it is forgotten
 * with the last. */
static void test_refs_count(void) {
  pm_idpool *p = pm_idpool_new(NULL);
  CHECK(p != NULL);
  uint8_t a[PM_NODE_ID_LEN], b[PM_NODE_ID_LEN];
  make_id(a, 1);
  make_id(b, 2);
  CHECK_INT(pm_idpool_find(p, a), PM_IDPOOL_NONE);
  uint32_t ha = pm_idpool_ref(p, a);
  CHECK(ha != PM_IDPOOL_NONE);
  CHECK_INT(pm_idpool_ref(p, a), ha);
  uint32_t hb = pm_idpool_ref(p, b);
  CHECK(hb != ha);
  CHECK_INT(pm_idpool_count(p), 2);
  CHECK_INT(pm_idpool_find(p, a), ha);
  CHECK_MEM(pm_idpool_id(p, ha), a, PM_NODE_ID_LEN);
  CHECK_MEM(pm_idpool_id(p, hb), b, PM_NODE_ID_LEN);
  pm_idpool_unref(p, ha);
  CHECK_INT(pm_idpool_find(p, a), ha); /* one reference left */
  pm_idpool_unref(p, ha);
  CHECK_INT(pm_idpool_find(p, a), PM_IDPOOL_NONE);
  CHECK_INT(pm_idpool_count(p), 1);
  CHECK_MEM(pm_idpool_id(p, hb), b, PM_NODE_ID_LEN);
  pm_idpool_unref(p, hb);
  CHECK_INT(pm_idpool_count(p), 0);
  pm_idpool_free(p);
}

/* Dropping IDs moves others inside the pool: every remaining handle still
 * names its own ID, and freed handles are given again. */
static void test_handles_stay_put(void) {
  enum { N = 2000 };
  pm_idpool *p = pm_idpool_new(NULL);
  static uint32_t h[N];
  uint8_t id[PM_NODE_ID_LEN];
  for (uint32_t i = 0; i < N; i++) {
    make_id(id, i);
    h[i] = pm_idpool_ref(p, id);
    CHECK(h[i] != PM_IDPOOL_NONE);
  }
  for (uint32_t i = 0; i < N; i += 2)
    pm_idpool_unref(p, h[i]);
  CHECK_INT(pm_idpool_count(p), N / 2);
  for (uint32_t i = 0; i < N; i++) {
    make_id(id, i);
    if (i % 2 == 0) {
      CHECK_INT(pm_idpool_find(p, id), PM_IDPOOL_NONE);
      continue;
    }
    CHECK_INT(pm_idpool_find(p, id), h[i]);
    CHECK_MEM(pm_idpool_id(p, h[i]), id, PM_NODE_ID_LEN);
  }
  /* New IDs take the freed handles before new ones. */
  uint32_t most = 0;
  for (uint32_t i = 0; i < N; i++)
    most = h[i] > most ? h[i] : most;
  for (uint32_t i = 0; i < N / 2; i++) {
    make_id(id, N + i);
    uint32_t k = pm_idpool_ref(p, id);
    CHECK(k <= most);
    CHECK_MEM(pm_idpool_id(p, k), id, PM_NODE_ID_LEN);
  }
  for (uint32_t i = 1; i < N; i += 2) {
    make_id(id, i);
    CHECK_MEM(pm_idpool_id(p, h[i]), id, PM_NODE_ID_LEN);
  }
  pm_idpool_free(p);
}

/* Data kept with an ID is the first reference's, and stays while any
 * reference does. */
static void test_data_kept_with_id(void) {
  pm_idpool *p = pm_idpool_new(NULL);
  uint8_t id[PM_NODE_ID_LEN];
  make_id(id, 5);
  const uint8_t first[] = "first", second[] = "second!";
  uint32_t h = pm_idpool_ref_data(p, id, first, sizeof first);
  CHECK(h != PM_IDPOOL_NONE);
  CHECK_INT(pm_idpool_ref_data(p, id, second, sizeof second), h);
  size_t len = 0;
  const uint8_t *d = pm_idpool_data(p, h, &len);
  CHECK_INT(len, sizeof first);
  CHECK(d != first);
  CHECK_MEM(d, first, sizeof first);
  pm_idpool_unref(p, h);
  CHECK_MEM(pm_idpool_data(p, h, &len), first, sizeof first);
  pm_idpool_unref(p, h);
  CHECK_INT(pm_idpool_count(p), 0);
  /* An ID without data has none. */
  h = pm_idpool_ref(p, id);
  CHECK(pm_idpool_data(p, h, &len) == NULL);
  CHECK_INT(len, 0);
  pm_idpool_unref(p, h);
  pm_idpool_free(p);
}

typedef struct item {
  uint32_t value;
} item;

/* Two tables share a pool: an ID both hold is kept once, and stays until
 * neither does; each table still finds, walks and removes its own. */
static void test_tables_share(void) {
  pm_idpool *p = pm_idpool_new(NULL);
  pm_idtable a, b;
  CHECK_INT(pm_idtable_init(&a, NULL, p, sizeof(item), 100), 0);
  CHECK_INT(pm_idtable_init(&b, NULL, p, sizeof(item), 100), 0);
  CHECK_INT(a.stride, 8);
  uint8_t id[PM_NODE_ID_LEN];
  for (uint32_t i = 0; i < 60; i++) {
    make_id(id, i);
    item *e = pm_idtable_add(&a, id);
    CHECK(e != NULL);
    e->value = i;
    if (i % 3 == 0)
      ((item *)pm_idtable_add(&b, id))->value = 1000 + i;
  }
  CHECK_INT(pm_idpool_count(p), 60);
  for (uint32_t i = 0; i < 60; i++) {
    make_id(id, i);
    uint32_t k = pm_idtable_find(&a, id);
    CHECK(k != PM_IDTABLE_NONE);
    CHECK_INT(((item *)pm_idtable_at(&a, k))->value, i);
    CHECK_MEM(pm_idtable_key(&a, pm_idtable_at(&a, k)), id, PM_NODE_ID_LEN);
    k = pm_idtable_find(&b, id);
    if (i % 3)
      CHECK_INT(k, PM_IDTABLE_NONE);
    else
      CHECK_INT(((item *)pm_idtable_at(&b, k))->value, 1000 + i);
  }
  pm_idtable_fini(&a); /* b's IDs stay */
  CHECK_INT(pm_idpool_count(p), 20);
  make_id(id, 3);
  CHECK_INT(((item *)pm_idtable_at(&b, pm_idtable_find(&b, id)))->value, 1003);
  make_id(id, 4);
  CHECK_INT(pm_idpool_find(p, id), PM_IDPOOL_NONE);
  pm_idtable_remove(
      &b, pm_idtable_find(&b, pm_idtable_key(&b, pm_idtable_at(&b, 0))));
  CHECK_INT(pm_idpool_count(p), 19);
  pm_idtable_fini(&b);
  CHECK_INT(pm_idpool_count(p), 0);
  pm_idpool_free(p);
}

/* Whichever allocation fails, an add that fails leaves no reference
 * behind in the pool, and what was added stays findable. */
static void test_allocation_failures(void) {
  int completed = 0;
  for (long limit = 0; limit < 200 && !completed; limit++) {
    pm_test_budget bud = {limit};
    pm_allocator alloc = {pm_test_budget_realloc, &bud};
    pm_idpool *p = pm_idpool_new(&alloc);
    if (!p)
      continue;
    pm_idtable t;
    if (pm_idtable_init(&t, &alloc, p, sizeof(item), 1000)) {
      pm_idpool_free(p);
      continue;
    }
    uint8_t id[PM_NODE_ID_LEN];
    uint32_t added = 0;
    for (uint32_t i = 0; i < 300; i++) {
      make_id(id, i);
      if (pm_idtable_add(&t, id))
        added++;
      CHECK_INT(pm_idpool_count(p), added);
    }
    CHECK_INT(t.count, added);
    for (uint32_t i = 0; i < t.count; i++) {
      const uint8_t *k = pm_idtable_key(&t, pm_idtable_at(&t, i));
      CHECK_INT(pm_idtable_find(&t, k), i);
    }
    completed = added == 300;
    pm_idtable_fini(&t);
    CHECK_INT(pm_idpool_count(p), 0);
    pm_idpool_free(p);
  }
  CHECK(completed);
}

TEST_MAIN(TEST_CASE(test_refs_count), TEST_CASE(test_handles_stay_put),
          TEST_CASE(test_data_kept_with_id), TEST_CASE(test_tables_share),
          TEST_CASE(test_allocation_failures))
