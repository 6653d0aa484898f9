/* Unit tests for runtime/core/missing.c: announced, not yet received. */
#include "test.h"

#include "missing.h"

static void make_id(uint8_t id[PM_MSG_ID_LEN], uint8_t v) {
  memset(id, v, PM_MSG_ID_LEN);
}

static void test_due_asks_sources_in_turn(void) {
  pm_missing *m = pm_missing_new(NULL, 16);
  uint8_t id[PM_MSG_ID_LEN], got[PM_MSG_ID_LEN];
  uint32_t link;
  make_id(id, 7);
  pm_missing_announce(m, id, 3, 1500);
  pm_missing_announce(m, id, 4, 1600); /* a second source, same entry */
  pm_missing_announce(m, id, 3, 1700); /* a repeat changes nothing */
  CHECK_INT(pm_missing_count(m), 1);
  CHECK_INT(pm_missing_deadline(m), 1500);
  CHECK_INT(pm_missing_take_due(m, 1499, 2000, got, &link), 0);
  CHECK_INT(pm_missing_take_due(m, 1500, 2000, got, &link), 1);
  CHECK_MEM(got, id, PM_MSG_ID_LEN);
  CHECK_INT(link, 3);
  CHECK_INT(pm_missing_deadline(m), 2000);
  CHECK_INT(pm_missing_take_due(m, 1999, 2500, got, &link), 0);
  CHECK_INT(pm_missing_take_due(m, 2000, 2500, got, &link), 1);
  CHECK_INT(link, 4);
  /* No source left: it waits for link 4's answer until 2500, then goes. */
  CHECK_INT(pm_missing_count(m), 1);
  CHECK_INT(pm_missing_deadline(m), 2500);
  CHECK_INT(pm_missing_take_due(m, 2500, 3000, got, &link), 0);
  CHECK_INT(pm_missing_count(m), 0);
  CHECK_INT(pm_missing_deadline(m), PM_DEADLINE_NONE);
  pm_missing_free(m);
}

static void test_arrival_removes(void) {
  pm_missing *m = pm_missing_new(NULL, 16);
  uint8_t id[PM_MSG_ID_LEN], got[PM_MSG_ID_LEN];
  uint32_t link;
  make_id(id, 1);
  pm_missing_announce(m, id, 1, 100);
  pm_missing_remove(m, id);
  CHECK_INT(pm_missing_take_due(m, 1000, 2000, got, &link), 0);
  pm_missing_remove(m, id); /* twice is harmless */
  pm_missing_free(m);
}

static void test_closed_link_is_no_source(void) {
  pm_missing *m = pm_missing_new(NULL, 16);
  uint8_t a[PM_MSG_ID_LEN], b[PM_MSG_ID_LEN], got[PM_MSG_ID_LEN];
  uint32_t link;
  make_id(a, 1);
  make_id(b, 2);
  pm_missing_announce(m, a, 5, 100);
  pm_missing_announce(m, b, 5, 100);
  pm_missing_announce(m, b, 6, 100);
  pm_missing_forget_link(m, 5, 0);
  CHECK_INT(pm_missing_count(m), 1); /* a had only link 5 */
  CHECK_INT(pm_missing_take_due(m, 100, 200, got, &link), 1);
  CHECK_MEM(got, b, PM_MSG_ID_LEN);
  CHECK_INT(link, 6);
  /* With a fallback, an entry left without a source asks it instead. */
  pm_missing_announce(m, a, 5, 300);
  pm_missing_announce(m, b, 5, 300);
  pm_missing_announce(m, b, 6, 300);
  pm_missing_forget_link(m, 5, 9);
  CHECK_INT(pm_missing_count(m), 2);
  int asked9 = 0, asked6 = 0;
  while (pm_missing_take_due(m, 300, 400, got, &link)) {
    if (memcmp(got, a, PM_MSG_ID_LEN) == 0)
      asked9 += link == 9;
    else
      asked6 += link == 6;
  }
  CHECK_INT(asked9, 1);
  CHECK_INT(asked6, 1);
  CHECK_INT(pm_missing_take_due(m, 400, 500, got, &link), 0);
  CHECK_INT(pm_missing_count(m), 0);
  pm_missing_free(m);
}

static void test_lost_answer_asks_fallback(void) {
  pm_missing *m = pm_missing_new(NULL, 16);
  uint8_t a[PM_MSG_ID_LEN], got[PM_MSG_ID_LEN];
  uint32_t link;
  make_id(a, 1);
  pm_missing_announce(m, a, 5, 100);
  CHECK_INT(pm_missing_take_due(m, 100, 600, got, &link), 1);
  CHECK_INT(link, 5);
  /* Link 5 was asked and is its only source; the entry waits for it. */
  CHECK_INT(pm_missing_count(m), 1);
  CHECK_INT(pm_missing_deadline(m), 600);
  /* Link 5 closes before answering: link 7 is asked at once. */
  pm_missing_forget_link(m, 5, 7);
  CHECK_INT(pm_missing_deadline(m), 0);
  CHECK_INT(pm_missing_take_due(m, 200, 700, got, &link), 1);
  CHECK_INT(link, 7);
  CHECK_MEM(got, a, PM_MSG_ID_LEN);
  /* No answer by 700 either: given up. */
  CHECK_INT(pm_missing_take_due(m, 699, 1200, got, &link), 0);
  CHECK_INT(pm_missing_count(m), 1);
  CHECK_INT(pm_missing_take_due(m, 700, 1200, got, &link), 0);
  CHECK_INT(pm_missing_count(m), 0);
  pm_missing_free(m);
}

static void test_capacity_drops_soonest(void) {
  pm_missing *m = pm_missing_new(NULL, 3);
  uint8_t id[PM_MSG_ID_LEN], got[PM_MSG_ID_LEN];
  uint32_t link;
  for (uint8_t i = 1; i <= 4; i++) {
    make_id(id, i);
    pm_missing_announce(m, id, i, 1000 + i);
  }
  CHECK_INT(pm_missing_count(m), 3);
  CHECK_INT(pm_missing_deadline(m), 1002); /* 1001 made room for 1004 */
  int seen = 0;
  while (pm_missing_take_due(m, 5000, 9000, got, &link))
    seen++;
  CHECK_INT(seen, 3);
  pm_missing_free(m);
  CHECK(pm_missing_new(NULL, 0) == NULL);
}

TEST_MAIN(TEST_CASE(test_due_asks_sources_in_turn),
          TEST_CASE(test_arrival_removes),
          TEST_CASE(test_closed_link_is_no_source),
          TEST_CASE(test_lost_answer_asks_fallback),
          TEST_CASE(test_capacity_drops_soonest))
