/* The member table (runtime/core/members.h), with literal timestamps. */
#include "members.h"
#include "pooled.h"
#include "test.h"

#define SUSPECT 10000
#define IV 30000 /* announced refresh interval */

/* Member k's digest tag: distinct per member, all 64 bits used. */
static uint64_t tag_of(uint32_t k) {
  return (uint64_t)(k + 1) * 0x9e3779b97f4a7c15u;
}

static void id_of(uint8_t id[PM_NODE_ID_LEN], uint32_t k) {
  memset(id, 0, PM_NODE_ID_LEN);
  memcpy(id, &k, sizeof k);
  uint64_t tag = tag_of(k);
  for (int i = 15; i >= 8; i--, tag >>= 8)
    id[i] = (uint8_t)tag; /* bytes 8..15, big-endian */
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

static int vouch(pm_members *t, uint32_t k, uint32_t inc, uint64_t now) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, k);
  return pm_members_vouch(t, id, inc, IV, now);
}

/* Member k's entry as pm_members_at lists it; 0 when it is not there. */
static int entry_of(const pm_members *t, uint32_t k, pm_member_info *out,
                    uint32_t *interval_ms) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, k);
  for (uint32_t i = 0; i < pm_members_count(t); i++) {
    pm_members_at(t, i, out, interval_ms);
    if (memcmp(out->id, id, PM_NODE_ID_LEN) == 0)
      return 1;
  }
  return 0;
}

static uint64_t last_heard_of(const pm_members *t, uint32_t k) {
  pm_member_info info;
  CHECK(entry_of(t, k, &info, NULL));
  return info.last_heard;
}

/* 1 when the table's digest is exactly that of members keys[0..n): counted
 * in bucket id[0] (of 256), their tags XORed, and XORed again by
 * sub-bucket (id[0] and the high nibble of id[1]); computed here, not by
 * members.c. */
static int digest_is(const pm_members *t, const uint32_t *keys, size_t n) {
  static uint64_t want_subs[PM_MEMBERS_BUCKETS][PM_MEMBERS_SUBS];
  uint32_t want_count[PM_MEMBERS_BUCKETS] = {0};
  uint64_t want_tags[PM_MEMBERS_BUCKETS] = {0};
  memset(want_subs, 0, sizeof want_subs);
  for (size_t i = 0; i < n; i++) {
    uint8_t id[PM_NODE_ID_LEN];
    id_of(id, keys[i]);
    want_count[id[0]]++;
    want_tags[id[0]] ^= tag_of(keys[i]);
    want_subs[id[0]][id[1] >> 4] ^= tag_of(keys[i]);
  }
  uint32_t count[PM_MEMBERS_BUCKETS];
  uint64_t tags[PM_MEMBERS_BUCKETS];
  memset(count, 0x55, sizeof count);
  memset(tags, 0x55, sizeof tags);
  pm_members_digest(t, count, tags);
  int subs_ok = 1;
  for (unsigned b = 0; b < PM_MEMBERS_BUCKETS; b++) {
    uint64_t sub[PM_MEMBERS_SUBS];
    pm_members_subtags(t, (uint8_t)b, sub);
    subs_ok &= memcmp(sub, want_subs[b], sizeof sub) == 0;
  }
  return memcmp(count, want_count, sizeof count) == 0 &&
         memcmp(tags, want_tags, sizeof tags) == 0 && subs_ok &&
         pm_members_live(t) == n;
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
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
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
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
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
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
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
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
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
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  CHECK_INT(alive(t, 1, 0, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(alive(t, 2, 0, 1000), PM_MEMBERS_JOINED);
  uint64_t due = 1000 + 3 * IV + SUSPECT;
  CHECK_INT(pm_members_deadline(t), due);
  /* Member 2 refreshes (an $alive); member 1 stays silent. */
  CHECK_INT(alive(t, 2, 0, 50000), PM_MEMBERS_NONE);
  pm_members_expire(t, due - 1, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  pm_members_expire(t, due, on_failed, NULL);
  CHECK_INT(nfailed, 1);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  CHECK_INT(state_of(t, 2), PM_MEMBER_ALIVE);
  CHECK_INT(pm_members_deadline(t), 50000 + 3 * IV + SUSPECT);
  pm_members_free(t);
}

static void test_capacity_evicts_gone_first(void) {
  pm_members *t = pm_members_new(NULL, pool, 4, SUSPECT);
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

/* Entry times are kept in 32 bits from a base that moves after 24 days:
 * a node's clock starting far from zero, and running for a month, keeps
 * every recent time exact, and an old failed member only gets younger. */
static void test_times_far_from_zero_and_apart(void) {
  const uint64_t t0 = 5000000000000ull; /* the clock does not start at 0 */
  const uint64_t day = 24ull * 3600 * 1000;
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  CHECK_INT(alive(t, 1, 0, t0), PM_MEMBERS_JOINED);
  CHECK_INT(last_heard_of(t, 1), t0);
  CHECK_INT(pm_members_deadline(t), t0 + 3 * IV + SUSPECT);
  pm_members_expire(t, t0 + 3 * IV + SUSPECT, on_failed, NULL);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  /* A month later, member 2 joins; member 1's time is moved up, no more. */
  uint64_t later = t0 + 30 * day;
  CHECK_INT(alive(t, 2, 0, later), PM_MEMBERS_JOINED);
  CHECK_INT(last_heard_of(t, 2), later);
  CHECK(last_heard_of(t, 1) >= t0 && last_heard_of(t, 1) < later);
  CHECK_INT(pm_members_deadline(t), later + 3 * IV + SUSPECT);
  /* Suspected and failed on time, in the new range. */
  CHECK_INT(suspect(t, 2, 0, later + 5), PM_MEMBERS_SUSPECTED);
  CHECK_INT(last_heard_of(t, 2), later + 5);
  pm_members_expire(t, later + 5 + SUSPECT - 1, on_failed, NULL);
  CHECK_INT(state_of(t, 2), PM_MEMBER_SUSPECT);
  pm_members_expire(t, later + 5 + SUSPECT, on_failed, NULL);
  CHECK_INT(state_of(t, 2), PM_MEMBER_FAILED);
  pm_members_free(t);
}

/* Intervals are kept in tenths of a second, rounded up, and bounded. */
static void test_interval_kept_in_tenths(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  uint8_t id[PM_NODE_ID_LEN];
  uint32_t ivs[] = {30000, 22501, 10000000};
  uint32_t want[] = {30000, 22600, 6553500};
  for (uint32_t k = 0; k < 3; k++) {
    id_of(id, k);
    CHECK_INT(pm_members_alive(t, id, 0, ivs[k], 1000), PM_MEMBERS_JOINED);
    pm_member_info info;
    uint32_t iv = 0;
    CHECK(entry_of(t, k, &info, &iv));
    CHECK_INT(iv, want[k]);
  }
  /* The silent deadline follows the kept interval. */
  CHECK_INT(pm_members_deadline(t), 1000 + 3 * 22600 + SUSPECT);
  pm_members_free(t);
}

static void test_many_members_grow_and_list(void) {
  pm_members *t = pm_members_new(NULL, pool, 5000, SUSPECT);
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

/* ---- vouch: second-hand alive entries ---------------------------------- */

static void test_vouch_adds_unknown(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  CHECK_INT(vouch(t, 1, 4, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  CHECK_INT(inc_of(t, 1), 4);
  CHECK_INT(pm_members_count(t), 1);
  CHECK_INT(pm_members_live(t), 1);
  pm_member_info info;
  uint32_t iv = 0;
  CHECK(entry_of(t, 1, &info, &iv));
  CHECK_INT(info.last_heard, 1000);
  CHECK_INT(iv, IV);
  /* A full member: it fails when silent like any other (1000 + 3 x 30000 +
   * 10000). */
  CHECK_INT(pm_members_deadline(t), 101000);
  pm_members_expire(t, 100999, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  pm_members_expire(t, 101000, on_failed, NULL);
  CHECK_INT(nfailed, 1);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  pm_members_free(t);
}

static void test_vouch_alive_needs_newer_incarnation(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  CHECK_INT(alive(t, 1, 5, 1000), PM_MEMBERS_JOINED);
  /* The same incarnation second-hand: not even a refresh. */
  CHECK_INT(vouch(t, 1, 5, 2000), PM_MEMBERS_NONE);
  CHECK_INT(last_heard_of(t, 1), 1000);
  CHECK_INT(inc_of(t, 1), 5);
  /* An older one: nothing either. */
  CHECK_INT(vouch(t, 1, 4, 3000), PM_MEMBERS_NONE);
  CHECK_INT(last_heard_of(t, 1), 1000);
  CHECK_INT(inc_of(t, 1), 5);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  /* A newer one counts, silently. */
  CHECK_INT(vouch(t, 1, 6, 4000), PM_MEMBERS_NONE);
  CHECK_INT(last_heard_of(t, 1), 4000);
  CHECK_INT(inc_of(t, 1), 6);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  CHECK_INT(pm_members_count(t), 1);
  CHECK_INT(pm_members_live(t), 1);
  /* First-hand, the same incarnation does refresh: the rules differ. */
  CHECK_INT(alive(t, 1, 6, 5000), PM_MEMBERS_NONE);
  CHECK_INT(last_heard_of(t, 1), 5000);
  pm_members_free(t);
}

static void test_vouch_clears_suspicion(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  CHECK_INT(alive(t, 1, 2, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(suspect(t, 1, 2, 2000), PM_MEMBERS_SUSPECTED);
  CHECK_INT(pm_members_live(t), 1);
  /* The same incarnation does not clear the suspicion. */
  CHECK_INT(vouch(t, 1, 2, 3000), PM_MEMBERS_NONE);
  CHECK_INT(state_of(t, 1), PM_MEMBER_SUSPECT);
  CHECK_INT(pm_members_live(t), 1);
  /* A newer one does: alive again, no event, still one live member. */
  CHECK_INT(vouch(t, 1, 3, 4000), PM_MEMBERS_NONE);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  CHECK_INT(inc_of(t, 1), 3);
  CHECK_INT(pm_members_live(t), 1);
  CHECK_INT(last_heard_of(t, 1), 4000);
  /* The suspicion would have failed it at 2000 + 10000: it does not. */
  pm_members_expire(t, 12000, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  pm_members_free(t);
}

static void test_vouch_cannot_revive_same_incarnation(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  /* Failed: 1000 + 3 x 30000 + 10000. */
  CHECK_INT(alive(t, 1, 2, 1000), PM_MEMBERS_JOINED);
  pm_members_expire(t, 101000, on_failed, NULL);
  CHECK_INT(nfailed, 1);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  CHECK_INT(pm_members_live(t), 0);
  /* A neighbour that has not yet seen it fail cannot bring it back. */
  CHECK_INT(vouch(t, 1, 2, 102000), PM_MEMBERS_NONE);
  CHECK_INT(vouch(t, 1, 1, 102000), PM_MEMBERS_NONE);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  CHECK_INT(inc_of(t, 1), 2);
  CHECK_INT(pm_members_live(t), 0);
  CHECK_INT(last_heard_of(t, 1), 1000);
  /* A new incarnation does. */
  CHECK_INT(vouch(t, 1, 3, 103000), PM_MEMBERS_JOINED);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  CHECK_INT(inc_of(t, 1), 3);
  CHECK_INT(pm_members_live(t), 1);
  CHECK_INT(last_heard_of(t, 1), 103000);
  /* Likewise a member that left. */
  CHECK_INT(alive(t, 2, 4, 104000), PM_MEMBERS_JOINED);
  CHECK_INT(pm_members_live(t), 2);
  CHECK_INT(leave(t, 2, 4, 105000), PM_MEMBERS_LEFT);
  CHECK_INT(pm_members_live(t), 1);
  CHECK_INT(vouch(t, 2, 4, 106000), PM_MEMBERS_NONE);
  CHECK_INT(state_of(t, 2), PM_MEMBER_LEFT);
  CHECK_INT(pm_members_live(t), 1);
  CHECK_INT(vouch(t, 2, 5, 107000), PM_MEMBERS_JOINED);
  CHECK_INT(state_of(t, 2), PM_MEMBER_ALIVE);
  CHECK_INT(inc_of(t, 2), 5);
  CHECK_INT(pm_members_live(t), 2);
  CHECK_INT(pm_members_count(t), 2);
  pm_members_free(t);
}

static int ask(pm_members *t, uint32_t k, uint32_t inc) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, k);
  return pm_members_ask(t, id, inc);
}

static void test_ask_once_per_failed_incarnation(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  CHECK_INT(alive(t, 1, 2, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(alive(t, 2, 2, 1000), PM_MEMBERS_JOINED);
  /* Alive, unknown: nothing to ask. */
  CHECK_INT(ask(t, 1, 2), 0);
  CHECK_INT(ask(t, 3, 0), 0);
  /* Member 2 refreshes; member 1 fails. */
  CHECK_INT(alive(t, 2, 2, 60000), PM_MEMBERS_NONE);
  pm_members_expire(t, 101000, on_failed, NULL);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  /* Failed at 2: asked once for 2, never for another incarnation. */
  CHECK_INT(ask(t, 1, 1), 0);
  CHECK_INT(ask(t, 1, 3), 0);
  CHECK_INT(ask(t, 1, 2), 1);
  CHECK_INT(ask(t, 1, 2), 0);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED); /* asking changes no state */
  CHECK_INT(pm_members_live(t), 1);
  /* A member that left is not asked: its leave was signed. */
  CHECK_INT(leave(t, 2, 2, 101500), PM_MEMBERS_LEFT);
  CHECK_INT(ask(t, 2, 2), 0);
  /* Revived by its refutation, then failed again at 3: asked again. */
  CHECK_INT(alive(t, 1, 3, 102000), PM_MEMBERS_JOINED);
  pm_member_info info;
  uint32_t iv = 0;
  CHECK(entry_of(t, 1, &info, &iv));
  CHECK_INT(iv, IV); /* the announced interval again */
  pm_members_expire(t, 102000 + 3 * IV + SUSPECT, on_failed, NULL);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  CHECK_INT(ask(t, 1, 3), 1);
  CHECK_INT(ask(t, 1, 3), 0);
  pm_members_free(t);
}

/* ---- digest ------------------------------------------------------------ */

static void test_bucket_and_tag(void) {
  uint8_t id[PM_NODE_ID_LEN];
  memset(id, 0xff, sizeof id);
  id[0] = 0x45; /* the first byte: 256 buckets */
  for (int i = 8; i < 16; i++)
    id[i] = (uint8_t)(i - 7);
  CHECK_INT(pm_members_bucket(id), 0x45);
  CHECK(pm_members_tag(id) == 0x0102030405060708u);
  id[0] = 0xff;
  CHECK_INT(pm_members_bucket(id), 255);
  id[0] = 0x00;
  CHECK_INT(pm_members_bucket(id), 0);
  id[8] = 0x80;
  CHECK(pm_members_tag(id) == 0x8002030405060708u);
}

/* Sub-buckets: the first 12 bits of the ID; a walk of one lists exactly
 * its members, whatever their state. */
static void test_sub_buckets(void) {
  uint8_t id[PM_NODE_ID_LEN];
  memset(id, 0, sizeof id);
  id[0] = 0x45;
  id[1] = 0xa7;
  CHECK_INT(pm_members_sub(id), 0x45a);
  pm_members *t = pm_members_new(NULL, pool, 64, SUSPECT);
  /* Member 1 + 256 * 16 * j: bucket 1, sub-bucket 0x010 + j; and 17
   * (bucket 17), which shares no sub-bucket with them. */
  uint32_t keys[5] = {1, 1 + 4096, 1 + 2 * 4096, 1 + 2 * 4096 + 256, 17};
  for (int i = 0; i < 5; i++)
    CHECK_INT(alive(t, keys[i], 0, 1000), PM_MEMBERS_JOINED);
  CHECK(digest_is(t, keys, 5));
  CHECK_INT(leave(t, keys[1], 0, 2000), PM_MEMBERS_LEFT);
  CHECK(digest_is(
      t, (const uint32_t[]){1, 1 + 2 * 4096, 1 + 2 * 4096 + 256, 17}, 4));
  static const struct {
    uint32_t sub;
    int n;
  } walks[] = {{0x010, 1}, {0x011, 1}, {0x012, 2}, {0x013, 0}, {0x110, 1}};
  for (size_t w = 0; w < sizeof walks / sizeof walks[0]; w++) {
    pm_members_walk wk;
    pm_members_sub_prefix(t, walks[w].sub, &wk);
    int n = 0;
    for (uint32_t i; (i = pm_members_next(t, &wk)) != PM_MEMBERS_END; n++) {
      pm_member_info info;
      pm_members_at(t, i, &info, NULL);
      CHECK_INT(pm_members_sub(info.id), walks[w].sub);
    }
    CHECK_INT(n, walks[w].n);
  }
  pm_members_free(t);
}

static void test_digest_follows_changes(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  /* 1 and 33 share bucket 1; 2 and 70 have buckets 2 and 6. */
  CHECK(digest_is(t, NULL, 0));
  CHECK_INT(alive(t, 1, 0, 1000), PM_MEMBERS_JOINED);
  CHECK(digest_is(t, (const uint32_t[]){1}, 1));
  CHECK_INT(vouch(t, 33, 0, 1000), PM_MEMBERS_JOINED);
  CHECK(digest_is(t, (const uint32_t[]){1, 33}, 2));
  CHECK_INT(alive(t, 2, 0, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(vouch(t, 70, 0, 1000), PM_MEMBERS_JOINED);
  CHECK(digest_is(t, (const uint32_t[]){1, 33, 2, 70}, 4));
  /* Refreshes, stale and newer incarnations: counted once. */
  CHECK_INT(alive(t, 1, 0, 2000), PM_MEMBERS_NONE);
  CHECK_INT(alive(t, 1, 1, 2000), PM_MEMBERS_NONE);
  CHECK_INT(vouch(t, 33, 0, 2000), PM_MEMBERS_NONE);
  CHECK_INT(vouch(t, 33, 1, 2000), PM_MEMBERS_NONE);
  CHECK(digest_is(t, (const uint32_t[]){1, 33, 2, 70}, 4));
  /* A suspect is still live. */
  CHECK_INT(suspect(t, 2, 0, 3000), PM_MEMBERS_SUSPECTED);
  CHECK(digest_is(t, (const uint32_t[]){1, 33, 2, 70}, 4));
  /* Leaving removes it from the digest (bucket 1 keeps member 1). */
  CHECK_INT(leave(t, 33, 1, 4000), PM_MEMBERS_LEFT);
  CHECK(digest_is(t, (const uint32_t[]){1, 2, 70}, 3));
  /* The suspect fails at 3000 + 10000: removed. */
  pm_members_expire(t, 13000, on_failed, NULL);
  CHECK_INT(nfailed, 1);
  CHECK_INT(state_of(t, 2), PM_MEMBER_FAILED);
  CHECK(digest_is(t, (const uint32_t[]){1, 70}, 2));
  /* Second-hand news of the same incarnations changes nothing. */
  CHECK_INT(vouch(t, 2, 0, 14000), PM_MEMBERS_NONE);
  CHECK_INT(vouch(t, 33, 1, 14000), PM_MEMBERS_NONE);
  CHECK(digest_is(t, (const uint32_t[]){1, 70}, 2));
  /* Revived, first- and second-hand: added back. */
  CHECK_INT(alive(t, 2, 0, 15000), PM_MEMBERS_JOINED);
  CHECK(digest_is(t, (const uint32_t[]){1, 70, 2}, 3));
  CHECK_INT(vouch(t, 33, 2, 16000), PM_MEMBERS_JOINED);
  CHECK(digest_is(t, (const uint32_t[]){1, 70, 2, 33}, 4));
  /* A silent member fails too (1000 + 3 x 30000 + 10000; 1 was refreshed
   * at 2000, 33 at 16000): 70 goes. */
  pm_members_expire(t, 101000, on_failed, NULL);
  CHECK_INT(nfailed, 2);
  CHECK_INT(state_of(t, 70), PM_MEMBER_FAILED);
  CHECK(digest_is(t, (const uint32_t[]){1, 2, 33}, 3));
  pm_members_free(t);
}

static void test_digest_follows_eviction(void) {
  pm_members *t = pm_members_new(NULL, pool, 4, SUSPECT);
  CHECK_INT(alive(t, 1, 0, 1000), PM_MEMBERS_JOINED);
  CHECK_INT(alive(t, 33, 0, 2000), PM_MEMBERS_JOINED);
  CHECK_INT(alive(t, 2, 0, 3000), PM_MEMBERS_JOINED);
  CHECK_INT(vouch(t, 65, 0, 4000), PM_MEMBERS_JOINED);
  CHECK(digest_is(t, (const uint32_t[]){1, 33, 2, 65}, 4));
  /* Full, all alive: the longest silent (1) goes, live or not. */
  CHECK_INT(alive(t, 5, 0, 5000), PM_MEMBERS_JOINED);
  CHECK_INT(state_of(t, 1), 0);
  CHECK_INT(pm_members_count(t), 4);
  CHECK(digest_is(t, (const uint32_t[]){33, 2, 65, 5}, 4));
  /* A suspect is not alive: it goes first, though 33 was silent longer. */
  CHECK_INT(suspect(t, 65, 0, 6000), PM_MEMBERS_SUSPECTED);
  CHECK_INT(vouch(t, 6, 0, 7000), PM_MEMBERS_JOINED);
  CHECK_INT(state_of(t, 65), 0);
  CHECK_INT(state_of(t, 33), PM_MEMBER_ALIVE);
  CHECK(digest_is(t, (const uint32_t[]){33, 2, 5, 6}, 4));
  /* A left member was out of the digest already: evicting it changes
   * nothing but the newcomer. */
  CHECK_INT(leave(t, 2, 0, 8000), PM_MEMBERS_LEFT);
  CHECK(digest_is(t, (const uint32_t[]){33, 5, 6}, 3));
  CHECK_INT(alive(t, 34, 0, 9000), PM_MEMBERS_JOINED);
  CHECK_INT(state_of(t, 2), 0);
  CHECK(digest_is(t, (const uint32_t[]){33, 5, 6, 34}, 4));
  pm_members_free(t);
}

static void test_digest_independent_of_order(void) {
  pm_members *a = pm_members_new(NULL, pool, 256, SUSPECT);
  pm_members *b = pm_members_new(NULL, pool, 256, SUSPECT);
  uint32_t keys[100];
  for (uint32_t k = 0; k < 100; k++) {
    keys[k] = k * 7; /* several per bucket */
    CHECK_INT(alive(a, k * 7, 0, 1000 + k), PM_MEMBERS_JOINED);
  }
  /* The other way round, second-hand, with members that came and went. */
  CHECK_INT(alive(b, 1000, 0, 500), PM_MEMBERS_JOINED);
  CHECK_INT(alive(b, 1001, 0, 500), PM_MEMBERS_JOINED);
  for (uint32_t k = 100; k-- > 0;) {
    CHECK_INT(vouch(b, k * 7, 0, 2000 + k), PM_MEMBERS_JOINED);
    if (k == 50) {
      CHECK_INT(leave(b, 1000, 0, 2000), PM_MEMBERS_LEFT);
      CHECK_INT(suspect(b, 1001, 0, 2000), PM_MEMBERS_SUSPECTED);
    }
  }
  pm_members_expire(b, 12000, on_failed, NULL); /* 1001 fails */
  CHECK_INT(state_of(b, 1001), PM_MEMBER_FAILED);
  CHECK_INT(pm_members_count(b), 102);
  CHECK(digest_is(a, keys, 100));
  CHECK(digest_is(b, keys, 100));
  uint32_t ca[PM_MEMBERS_BUCKETS], cb[PM_MEMBERS_BUCKETS];
  uint64_t ta[PM_MEMBERS_BUCKETS], tb[PM_MEMBERS_BUCKETS];
  pm_members_digest(a, ca, ta);
  pm_members_digest(b, cb, tb);
  CHECK_MEM(ca, cb, sizeof ca);
  CHECK_MEM(ta, tb, sizeof ta);
  /* One more member on one side: exactly its bucket differs. */
  CHECK_INT(alive(a, 300, 0, 3000), PM_MEMBERS_JOINED);
  uint8_t id[PM_NODE_ID_LEN];
  id_of(id, 300);
  int bk = id[0]; /* 300 & 0xff = 44: bucket 44 */
  pm_members_digest(a, ca, ta);
  for (int i = 0; i < PM_MEMBERS_BUCKETS; i++) {
    int differs = ca[i] != cb[i] || ta[i] != tb[i];
    CHECK_INT(differs, i == bk);
  }
  CHECK_INT(ca[bk], cb[bk] + 1);
  CHECK(ta[bk] == (tb[bk] ^ tag_of(300)));
  pm_members_free(a);
  pm_members_free(b);
}

/* ---- floor ------------------------------------------------------------- */

static void test_floor_extends_silence(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  /* Announced 30 s, floor 50 s: fails at 1000 + 3 x 50000 + 10000, not at
   * 1000 + 3 x 30000 + 10000. Member 1 came before the floor was set,
   * member 2 after. */
  CHECK_INT(alive(t, 1, 0, 1000), PM_MEMBERS_JOINED);
  pm_members_set_floor(t, 50000);
  CHECK_INT(alive(t, 2, 0, 1000), PM_MEMBERS_JOINED);
  pm_members_expire(t, 101000, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  pm_members_expire(t, 160999, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  CHECK_INT(state_of(t, 2), PM_MEMBER_ALIVE);
  CHECK_INT(pm_members_deadline(t), 161000);
  pm_members_expire(t, 161000, on_failed, NULL);
  CHECK_INT(nfailed, 2);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  CHECK_INT(state_of(t, 2), PM_MEMBER_FAILED);
  CHECK_INT(pm_members_live(t), 0);
  pm_members_free(t);
}

static void test_floor_below_interval_changes_nothing(void) {
  pm_members *t = pm_members_new(NULL, pool, 16, SUSPECT);
  nfailed = 0;
  /* Floor 10 s, announced 30 s: the announced one counts (1000 + 3 x 30000
   * + 10000), not the floor (1000 + 3 x 10000 + 10000). */
  pm_members_set_floor(t, 10000);
  CHECK_INT(alive(t, 1, 0, 1000), PM_MEMBERS_JOINED);
  pm_members_expire(t, 41000, on_failed, NULL);
  pm_members_expire(t, 100999, on_failed, NULL);
  CHECK_INT(nfailed, 0);
  CHECK_INT(state_of(t, 1), PM_MEMBER_ALIVE);
  pm_members_expire(t, 101000, on_failed, NULL);
  CHECK_INT(nfailed, 1);
  CHECK_INT(state_of(t, 1), PM_MEMBER_FAILED);
  pm_members_free(t);
}

/* Each case again, with the IDs in a pool. */
static void test_alive_joins_once_pooled(void) {
  pooled(test_alive_joins_once);
}

static void test_leave_pooled(void) {
  pooled(test_leave);
}

static void test_suspect_fails_after_timeout_pooled(void) {
  pooled(test_suspect_fails_after_timeout);
}

static void test_refuted_suspicion_pooled(void) {
  pooled(test_refuted_suspicion);
}

static void test_silent_member_fails_pooled(void) {
  pooled(test_silent_member_fails);
}

static void test_capacity_evicts_gone_first_pooled(void) {
  pooled(test_capacity_evicts_gone_first);
}

static void test_times_far_from_zero_and_apart_pooled(void) {
  pooled(test_times_far_from_zero_and_apart);
}

static void test_interval_kept_in_tenths_pooled(void) {
  pooled(test_interval_kept_in_tenths);
}

static void test_many_members_grow_and_list_pooled(void) {
  pooled(test_many_members_grow_and_list);
}

static void test_vouch_adds_unknown_pooled(void) {
  pooled(test_vouch_adds_unknown);
}

static void test_vouch_alive_needs_newer_incarnation_pooled(void) {
  pooled(test_vouch_alive_needs_newer_incarnation);
}

static void test_vouch_clears_suspicion_pooled(void) {
  pooled(test_vouch_clears_suspicion);
}

static void test_vouch_cannot_revive_same_incarnation_pooled(void) {
  pooled(test_vouch_cannot_revive_same_incarnation);
}

static void test_ask_once_per_failed_incarnation_pooled(void) {
  pooled(test_ask_once_per_failed_incarnation);
}

static void test_bucket_and_tag_pooled(void) {
  pooled(test_bucket_and_tag);
}

static void test_sub_buckets_pooled(void) {
  pooled(test_sub_buckets);
}

static void test_digest_follows_changes_pooled(void) {
  pooled(test_digest_follows_changes);
}

static void test_digest_follows_eviction_pooled(void) {
  pooled(test_digest_follows_eviction);
}

static void test_digest_independent_of_order_pooled(void) {
  pooled(test_digest_independent_of_order);
}

static void test_floor_extends_silence_pooled(void) {
  pooled(test_floor_extends_silence);
}

static void test_floor_below_interval_changes_nothing_pooled(void) {
  pooled(test_floor_below_interval_changes_nothing);
}

TEST_MAIN(TEST_CASE(test_alive_joins_once),
          TEST_CASE(test_alive_joins_once_pooled), TEST_CASE(test_leave),
          TEST_CASE(test_leave_pooled),
          TEST_CASE(test_suspect_fails_after_timeout),
          TEST_CASE(test_suspect_fails_after_timeout_pooled),
          TEST_CASE(test_refuted_suspicion),
          TEST_CASE(test_refuted_suspicion_pooled),
          TEST_CASE(test_silent_member_fails),
          TEST_CASE(test_silent_member_fails_pooled),
          TEST_CASE(test_capacity_evicts_gone_first),
          TEST_CASE(test_capacity_evicts_gone_first_pooled),
          TEST_CASE(test_times_far_from_zero_and_apart),
          TEST_CASE(test_times_far_from_zero_and_apart_pooled),
          TEST_CASE(test_interval_kept_in_tenths),
          TEST_CASE(test_interval_kept_in_tenths_pooled),
          TEST_CASE(test_many_members_grow_and_list),
          TEST_CASE(test_many_members_grow_and_list_pooled),
          TEST_CASE(test_vouch_adds_unknown),
          TEST_CASE(test_vouch_adds_unknown_pooled),
          TEST_CASE(test_vouch_alive_needs_newer_incarnation),
          TEST_CASE(test_vouch_alive_needs_newer_incarnation_pooled),
          TEST_CASE(test_vouch_clears_suspicion),
          TEST_CASE(test_vouch_clears_suspicion_pooled),
          TEST_CASE(test_vouch_cannot_revive_same_incarnation),
          TEST_CASE(test_vouch_cannot_revive_same_incarnation_pooled),
          TEST_CASE(test_ask_once_per_failed_incarnation),
          TEST_CASE(test_ask_once_per_failed_incarnation_pooled),
          TEST_CASE(test_bucket_and_tag), TEST_CASE(test_bucket_and_tag_pooled),
          TEST_CASE(test_sub_buckets), TEST_CASE(test_sub_buckets_pooled),
          TEST_CASE(test_digest_follows_changes),
          TEST_CASE(test_digest_follows_changes_pooled),
          TEST_CASE(test_digest_follows_eviction),
          TEST_CASE(test_digest_follows_eviction_pooled),
          TEST_CASE(test_digest_independent_of_order),
          TEST_CASE(test_digest_independent_of_order_pooled),
          TEST_CASE(test_floor_extends_silence),
          TEST_CASE(test_floor_extends_silence_pooled),
          TEST_CASE(test_floor_below_interval_changes_nothing),
          TEST_CASE(test_floor_below_interval_changes_nothing_pooled))
