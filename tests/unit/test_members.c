/* The member table (runtime/core/members.h), with literal timestamps. */
#include "members.h"
#include "test.h"

#define SUSPECT 10000
#define IV 30000 /* announced refresh interval */

static void id_of(uint8_t id[PM_NODE_ID_LEN], uint32_t k) {
  memset(id, 0, PM_NODE_ID_LEN);
  memcpy(id, &k, sizeof k);
  id[31] = 0xee;
}

static int state_of(const pm_members *t, uint32_t k) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, k);
  int st = 0;
  uint32_t inc = 0;
  return pm_members_get(t, id, &st, &inc) ? st : 0;
}

static uint32_t inc_of(const pm_members *t, uint32_t k) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, k);
  uint32_t inc = 0;
  CHECK(pm_members_get(t, id, NULL, &inc));
  return inc;
}

static int alive(pm_members *t, uint32_t k, uint32_t inc, uint64_t now) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, k);
  return pm_members_alive(t, id, inc, IV, now);
}

static int leave(pm_members *t, uint32_t k, uint32_t inc, uint64_t now) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, k);
  return pm_members_leave(t, id, inc, now);
}

static int suspect(pm_members *t, uint32_t k, uint32_t inc, uint64_t now) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, k);
  return pm_members_suspect(t, id, inc, now);
}

static uint8_t failed_ids[64][PM_NODE_ID_LEN];
static size_t nfailed;

static void on_failed(void *ud, const uint8_t id[PM_NODE_ID_LEN]) {
  (void)ud;
  if (nfailed < 64)
    memcpy(failed_ids[nfailed], id, PM_NODE_ID_LEN);
  nfailed++;
}

static void test_alive_joins_once(void) {
  pm_members *t = pm_members_new(NULL, 16, SUSPECT);
  CHECK_INT(alive(t, 1, 5, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(alive(t, 1, 5, 2000), PM_MEMBERS_NONE); /* refresh */
  CHECK_INT(alive(t, 1, 6, 3000), PM_MEMBERS_NONE);
  CHECK_INT(alive(t, 1, 4, 4000), PM_MEMBERS_NONE); /* stale */
  CHECK_INT(inc_of(t, 1), 6);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  CHECK_INT(pm_members_count(t), 1);
  CHECK_INT(pm_members_live(t), 1);
  CHECK_INT(state_of(t, 2), 0);
  pm_members_free(t);
}

static void test_leave(void) {
  pm_members *t = pm_members_new(NULL, 16, SUSPECT);
  CHECK_INT(leave(t, 1, 0, 1000), PM_MEMBERS_NONE); /* unknown */
  CHECK_INT(state_of(t, 1), 0);
  CHECK_INT(alive(t, 1, 3, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(leave(t, 1, 2, 2000), PM_MEMBERS_NONE); /* older incarnation */
  CHECK_INT(leave(t, 1, 3, 2000), PM_MEMBERS_LEFT);
  CHECK_INT(leave(t, 1, 3, 2500), PM_MEMBERS_NONE); /* once */
  CHECK_INT(state_of(t, 1), PM_MEMBER_LEFT);
  CHECK_INT(pm_members_live(t), 0);
  /* A late copy of the same incarnation's alive does not bring it back;
   * a new run (higher incarnation) does. */
  CHECK_INT(alive(t, 1, 3, 3000), PM_MEMBERS_NONE);
  CHECK_INT(alive(t, 1, 4, 4000), PM_MEMBERS_JOINED);
  CHECK_INT(pm_members_live(t), 1);
  pm_members_free(t);
}

static void test_suspect_fails_after_timeout(void) {
  pm_members *t = pm_members_new(NULL, 16, SUSPECT);
  nfailed = 0;
  CHECK_INT(suspect(t, 1, 0, 1000), PM_MEMBERS_NONE); /* unknown */
  CHECK_INT(alive(t, 1, 2, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(suspect(t, 1, 1, 2000), PM_MEMBERS_NONE); /* older */
  CHECK_INT(suspect(t, 1, 2, 2000), PM_MEMBERS_SUSPECTED);
  CHECK_INT(suspect(t, 1, 2, 5000), PM_MEMBERS_NONE); /* already */
  CHECK_INT(state_of(t, 1), PM_MEMBER_SUSPECT);
  CHECK_INT(pm_members_live(t), 1);
  CHECK(pm_members_deadline(t) <= 12000);
  /* A refresh of the same incarnation does not clear the suspicion. */
  CHECK_INT(alive(t, 1, 2, 6000), PM_MEMBERS_NONE);
  CHECK_INT(state_of(t, 1), PM_MEMBER_SUSPECT);
  pm_members_expire(t, 11999, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  CHECK_INT(pm_members_deadline(t), 12000);
  pm_members_expire(t, 12000, on_failed, NULL);
  CHECK_INT(nfailed, 1);
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, 1);
  CHECK_MEM(failed_ids[0], id, PM_NODE_ID_LEN);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  CHECK_INT(pm_members_live(t), 0);
  CHECK_INT(pm_members_deadline(t), UINT64_MAX);
  /* Heard from again (a partition healed): joined again. */
  CHECK_INT(alive(t, 1, 2, 13000), PM_MEMBERS_JOINED);
  /* Its leave after a failure: state only, no second goodbye. */
  pm_members_expire(t, 13000 + 3 * IV + SUSPECT, on_failed, NULL);
  CHECK_INT(nfailed, 2);
  CHECK_INT(leave(t, 1, 2, 200000), PM_MEMBERS_NONE);
  CHECK_INT(state_of(t, 1), PM_MEMBER_LEFT);
  pm_members_free(t);
}

static void test_refuted_suspicion(void) {
  pm_members *t = pm_members_new(NULL, 16, SUSPECT);
  nfailed = 0;
  CHECK_INT(alive(t, 1, 7, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(suspect(t, 1, 7, 2000), PM_MEMBERS_SUSPECTED);
  CHECK_INT(alive(t, 1, 8, 3000), PM_MEMBERS_NONE); /* refuted: no event */
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  CHECK_INT(inc_of(t, 1), 8);
  /* The old suspicion, arriving late, is stale. */
  CHECK_INT(suspect(t, 1, 7, 4000), PM_MEMBERS_NONE);
  pm_members_expire(t, 12000, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  pm_members_free(t);
}

static void test_silent_member_fails(void) {
  pm_members *t = pm_members_new(NULL, 16, SUSPECT);
  nfailed = 0;
  CHECK_INT(alive(t, 1, 0, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(alive(t, 2, 0, 1000), PM_MEMBERS_JOINED);
  uint64_t due = 1000 + 3 * IV + SUSPECT;
  CHECK_INT(pm_members_deadline(t), due);
  /* Member 2 is heard from (any message); member 1 stays silent. */
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, 2);
  pm_members_heard(t, id, 50000);
  pm_members_expire(t, due - 1, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  pm_members_expire(t, due, on_failed, NULL);
  CHECK_INT(nfailed, 1);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  CHECK_INT(state_of(t, 2), PM_MEMBER_ALIVE);
  CHECK_INT(pm_members_deadline(t), 50000 + 3 * IV + SUSPECT);
  /* heard() neither creates members nor revives failed ones. */
  id_of(id, 1);
  pm_members_heard(t, id, due + 1);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  id_of(id, 3);
  pm_members_heard(t, id, due + 1);
  CHECK_INT(state_of(t, 3), 0);
  pm_members_free(t);
}

static void test_capacity_evicts_gone_first(void) {
  pm_members *t = pm_members_new(NULL, 4, SUSPECT);
  for (uint32_t k = 1; k <= 4; k++)
    CHECK_INT(alive(t, k, 0, 1000 * k), PM_MEMBERS_JOINED);
  CHECK_INT(leave(t, 3, 0, 5000), PM_MEMBERS_LEFT);
  /* Full: the left member goes, though member 1 was silent longer. */
  CHECK_INT(alive(t, 5, 0, 6000), PM_MEMBERS_JOINED);
  CHECK_INT(pm_members_count(t), 4);
  CHECK_INT(state_of(t, 3), 0);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  /* All alive: the longest silent goes. */
  CHECK_INT(alive(t, 6, 0, 7000), PM_MEMBERS_JOINED);
  CHECK_INT(state_of(t, 1), 0);
  CHECK_INT(pm_members_count(t), 4);
  CHECK_INT(pm_members_live(t), 4);
  for (uint32_t k = 2; k <= 6; k++)
    if (k != 3)
      CHECK_INT(state_of(t, k), PM_MEMBER_ALIVE);
  pm_members_free(t);
}

static void test_many_members_grow_and_list(void) {
  pm_members *t = pm_members_new(NULL, 5000, SUSPECT);
  for (uint32_t k = 0; k < 6000; k++)
    CHECK_INT(alive(t, k, 0, 1000 + k), PM_MEMBERS_JOINED);
  CHECK_INT(pm_members_count(t), 5000);
  CHECK_INT(pm_members_live(t), 5000);
  for (uint32_t k = 0; k < 1000; k++)
    CHECK_INT(state_of(t, k), 0); /* the oldest went */
  for (uint32_t k = 1000; k < 6000; k++)
    CHECK_INT(state_of(t, k), PM_MEMBER_ALIVE);
  unsigned alive_seen = 0;
  for (uint32_t i = 0; i < pm_members_count(t); i++) {
    pm_member_info info;
    uint32_t iv = 0;
    pm_members_at(t, i, &info, &iv);
    alive_seen += info.state == PM_MEMBER_ALIVE && iv == IV;
  }
  CHECK_INT(alive_seen, 5000);
  pm_members_free(t);
}

int main(void) {
  static const struct pm_test_case cases[] = {
      TEST_CASE(test_alive_joins_once),
      TEST_CASE(test_leave),
      TEST_CASE(test_suspect_fails_after_timeout),
      TEST_CASE(test_refuted_suspicion),
      TEST_CASE(test_silent_member_fails),
      TEST_CASE(test_capacity_evicts_gone_first),
      TEST_CASE(test_many_members_grow_and_list),
  };
  return pm_test_run(cases, sizeof cases / sizeof cases[0]);
}
