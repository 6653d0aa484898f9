/* Unit tests for the per-author replay windows (runtime/core/authors.c). */
#include <string.h>

#include "authors.h"
#include "pooled.h"
#include "test.h"

static void key(uint8_t b, uint8_t out[PM_NODE_ID_LEN]) {
  memset(out, b, PM_NODE_ID_LEN);
}

static void test_accepts_each_seq_once(void) {
  pm_authors *a = pm_authors_new(NULL, pool, 16);
  uint8_t k[PM_NODE_ID_LEN];
  key(1, k);
  CHECK(pm_authors_fresh(a, k, 5));
  CHECK_INT(pm_authors_accept(a, k, 5), 0);
  CHECK(!pm_authors_fresh(a, k, 5));
  /* Out of order within the window is fine, once. */
  CHECK(pm_authors_fresh(a, k, 3));
  CHECK_INT(pm_authors_accept(a, k, 3), 0);
  CHECK(!pm_authors_fresh(a, k, 3));
  CHECK(pm_authors_fresh(a, k, 4));
  CHECK(pm_authors_fresh(a, k, 6));
  /* Another author has its own window. */
  uint8_t other[PM_NODE_ID_LEN];
  key(2, other);
  CHECK(pm_authors_fresh(a, other, 5));
  CHECK_INT(pm_authors_count(a), 1);
  pm_authors_free(a);
}

static void test_window_slides(void) {
  pm_authors *a = pm_authors_new(NULL, pool, 16);
  uint8_t k[PM_NODE_ID_LEN];
  key(1, k);
  for (uint64_t s = 1; s <= 100; s++)
    CHECK_INT(pm_authors_accept(a, k, s), 0);
  /* Jump 300 ahead: everything before 300 + 100 - 255 is now too old. */
  CHECK_INT(pm_authors_accept(a, k, 400), 0);
  CHECK(!pm_authors_fresh(a, k, 100));
  CHECK(!pm_authors_fresh(a, k, 400 - PM_AUTHORS_WINDOW));
  CHECK(pm_authors_fresh(a, k, 400 - PM_AUTHORS_WINDOW + 1));
  CHECK(pm_authors_fresh(a, k, 399));
  /* A slide by less than a word keeps the bits, moved. */
  CHECK_INT(pm_authors_accept(a, k, 390), 0);
  CHECK_INT(pm_authors_accept(a, k, 470), 0);
  CHECK(!pm_authors_fresh(a, k, 390));
  CHECK(!pm_authors_fresh(a, k, 400));
  CHECK(pm_authors_fresh(a, k, 391));
  CHECK(pm_authors_fresh(a, k, 469));
  pm_authors_free(a);
}

static void test_full_table_forgets_least_recent(void) {
  pm_authors *a = pm_authors_new(NULL, pool, 3);
  uint8_t k[PM_NODE_ID_LEN];
  for (uint8_t b = 1; b <= 3; b++) {
    key(b, k);
    CHECK_INT(pm_authors_accept(a, k, 10), 0);
  }
  key(1, k);
  CHECK_INT(pm_authors_accept(a, k, 11), 0); /* 1 is now the most recent */
  key(4, k);
  CHECK_INT(pm_authors_accept(a, k, 10), 0);
  CHECK_INT(pm_authors_count(a), 3);
  key(2, k);
  CHECK(pm_authors_fresh(a, k, 10)); /* 2 was forgotten */
  key(1, k);
  CHECK(!pm_authors_fresh(a, k, 10));
  key(3, k);
  CHECK(!pm_authors_fresh(a, k, 10));
  key(4, k);
  CHECK(!pm_authors_fresh(a, k, 10));
  pm_authors_free(a);
}

static void test_many_authors_grow(void) {
  pm_authors *a = pm_authors_new(NULL, pool, 1000);
  uint8_t k[PM_NODE_ID_LEN];
  memset(k, 0, sizeof k);
  for (uint32_t i = 0; i < 1000; i++) {
    memcpy(k, &i, sizeof i);
    CHECK_INT(pm_authors_accept(a, k, 1 + i), 0);
  }
  CHECK_INT(pm_authors_count(a), 1000);
  for (uint32_t i = 0; i < 1000; i += 97) {
    memcpy(k, &i, sizeof i);
    CHECK(!pm_authors_fresh(a, k, 1 + i));
    CHECK(pm_authors_fresh(a, k, 2 + i));
  }
  pm_authors_free(a);
}

/* Each case again, with the IDs in a pool. */
static void test_accepts_each_seq_once_pooled(void) {
  pooled(test_accepts_each_seq_once);
}

static void test_window_slides_pooled(void) {
  pooled(test_window_slides);
}

static void test_full_table_forgets_least_recent_pooled(void) {
  pooled(test_full_table_forgets_least_recent);
}

static void test_many_authors_grow_pooled(void) {
  pooled(test_many_authors_grow);
}

TEST_MAIN(TEST_CASE(test_accepts_each_seq_once),
          TEST_CASE(test_accepts_each_seq_once_pooled),
          TEST_CASE(test_window_slides), TEST_CASE(test_window_slides_pooled),
          TEST_CASE(test_full_table_forgets_least_recent),
          TEST_CASE(test_full_table_forgets_least_recent_pooled),
          TEST_CASE(test_many_authors_grow),
          TEST_CASE(test_many_authors_grow_pooled))
