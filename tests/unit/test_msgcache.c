/* Unit tests for runtime/core/msgcache.c: payloads kept for Graft. The
 * cases run twice: frames in the cache's own chunks, and frames in a pool
 * (which must hold none once the cache is freed). */
#include "pooled.h"
#include "test.h"

#include <stdlib.h>

#include "msgcache.h"

/* Frames hold their ID at OFF, as Flood frames do after their header. */
#define OFF 6
#define MIN_FRAME (OFF + PM_MSG_ID_LEN)
/* With a pool, the bytes each cache keeps its own of, as a Flood's hops. */
#define VAR 2

static pm_msgcache *new_cache(size_t max_bytes, uint64_t ttl_ms) {
  return pm_msgcache_new(NULL, pool, max_bytes, ttl_ms, OFF, VAR);
}

static void make_id(uint8_t id[PM_MSG_ID_LEN], uint8_t v) {
  memset(id, v, PM_MSG_ID_LEN);
}

/* ID number i: its 4 bytes, then zeros. */
static void num_id(uint8_t id[PM_MSG_ID_LEN], uint32_t i) {
  memset(id, 0, PM_MSG_ID_LEN);
  memcpy(id, &i, sizeof i);
}

/* A frame of `len` bytes (at least MIN_FRAME) of `fill` holding `id`. */
static void make_frame(uint8_t *frame, size_t len,
                       const uint8_t id[PM_MSG_ID_LEN], uint8_t fill) {
  memset(frame, fill, len);
  memcpy(frame + OFF, id, PM_MSG_ID_LEN);
}

/* 1 when f is what make_frame(len, id, fill) wrote. */
static int frame_is(const uint8_t *f, size_t len,
                    const uint8_t id[PM_MSG_ID_LEN], uint8_t fill) {
  int same = memcmp(f + OFF, id, PM_MSG_ID_LEN) == 0;
  for (size_t k = 0; k < len; k++)
    same &= (k >= OFF && k < MIN_FRAME) || f[k] == fill;
  return same;
}

static void test_put_and_get(void) {
  pm_msgcache *c = new_cache(1000, 60000);
  uint8_t id[PM_MSG_ID_LEN], frame[MIN_FRAME + 9];
  pm_msgcache_prefetch(c); /* a hint only, even with nothing held yet */
  make_id(id, 1);
  make_frame(frame, sizeof frame, id, 'f');
  memcpy(frame + MIN_FRAME, "frame one", 9);
  CHECK_INT(pm_msgcache_put(c, frame, sizeof frame, 0, 1), 0);
  pm_msgcache_prefetch(c);
  size_t len = 0;
  const uint8_t *f = pm_msgcache_get(c, id, &len, 2);
  CHECK(f != NULL);
  CHECK_INT(len, sizeof frame);
  if (f)
    CHECK_MEM(f, frame, sizeof frame);
  make_id(id, 2);
  CHECK(pm_msgcache_get(c, id, &len, 2) == NULL);
  /* An ID is looked for where the frames hold it, not at their start. */
  memcpy(id, frame, PM_MSG_ID_LEN);
  CHECK(pm_msgcache_get(c, id, &len, 2) == NULL);
  /* A frame too short to hold an ID is refused, and nothing is lost. */
  CHECK_INT(pm_msgcache_put(c, frame, MIN_FRAME - 1, 0, 2), PM_ERR_INVAL);
  CHECK_INT(pm_msgcache_count(c), 1);
  CHECK_INT(pm_msgcache_put(c, frame, MIN_FRAME, 0, 2), 0);
  CHECK_INT(pm_msgcache_count(c), 2);
  pm_msgcache_free(c);
}

static void test_ttl(void) {
  pm_msgcache *c = new_cache(1000, 100);
  uint8_t id[PM_MSG_ID_LEN], frame[MIN_FRAME];
  make_id(id, 1);
  make_frame(frame, sizeof frame, id, 'x');
  CHECK_INT(pm_msgcache_put(c, frame, sizeof frame, 0, 1000), 0);
  size_t len;
  CHECK(pm_msgcache_get(c, id, &len, 1099) != NULL);
  CHECK(pm_msgcache_get(c, id, &len, 1100) == NULL);
  CHECK_INT(pm_msgcache_count(c), 0);
  CHECK_INT(pm_msgcache_bytes(c), 0);
  pm_msgcache_free(c);
}

/* Emptied by age, a cache takes a frame larger than what held the last. */
static void test_refill_with_larger_frame(void) {
  pm_msgcache *c = new_cache(10000, 100);
  uint8_t id[PM_MSG_ID_LEN], small[MIN_FRAME];
  make_id(id, 1);
  make_frame(small, sizeof small, id, 'x');
  CHECK_INT(pm_msgcache_put(c, small, sizeof small, 0, 1000), 0);
  pm_msgcache_expire(c, 1100);
  CHECK_INT(pm_msgcache_count(c), 0);
  static uint8_t big[5000];
  make_id(id, 2);
  make_frame(big, sizeof big, id, 'b');
  CHECK_INT(pm_msgcache_put(c, big, sizeof big, 0, 1200), 0);
  size_t len = 0;
  const uint8_t *f = pm_msgcache_get(c, id, &len, 1201);
  CHECK(f != NULL && len == sizeof big && memcmp(f, big, sizeof big) == 0);
  pm_msgcache_free(c);
}

static void test_byte_budget_evicts_oldest(void) {
  pm_msgcache *c = new_cache(100, 60000);
  uint8_t frame[40], id[PM_MSG_ID_LEN];
  for (uint8_t i = 1; i <= 10; i++) {
    make_id(id, i);
    make_frame(frame, sizeof frame, id, 'f');
    CHECK_INT(pm_msgcache_put(c, frame, sizeof frame, 0, i), 0);
    CHECK(pm_msgcache_bytes(c) <= 100);
  }
  CHECK_INT(pm_msgcache_count(c), 2); /* 2 x 40 fit in 100 */
  size_t len;
  make_id(id, 10);
  CHECK(pm_msgcache_get(c, id, &len, 11) != NULL);
  make_id(id, 9);
  CHECK(pm_msgcache_get(c, id, &len, 11) != NULL);
  make_id(id, 8);
  CHECK(pm_msgcache_get(c, id, &len, 11) == NULL);
  /* A frame bigger than the whole budget is simply not kept. */
  uint8_t big[101];
  make_id(id, 11);
  make_frame(big, sizeof big, id, 0);
  CHECK_INT(pm_msgcache_put(c, big, sizeof big, 0, 12), 0);
  CHECK(pm_msgcache_get(c, id, &len, 12) == NULL);
  CHECK_INT(pm_msgcache_count(c), 2);
  pm_msgcache_free(c);
}

static void test_many_entries_grow_and_free(void) {
  pm_msgcache *c = new_cache(1 << 20, 60000);
  uint8_t id[PM_MSG_ID_LEN], frame[MIN_FRAME + 8];
  for (uint32_t i = 0; i < 5000; i++) {
    num_id(id, i);
    make_frame(frame, sizeof frame, id, 'a');
    CHECK_INT(pm_msgcache_put(c, frame, sizeof frame, 0, i), 0);
  }
  CHECK_INT(pm_msgcache_count(c), 5000);
  num_id(id, 1234);
  size_t len;
  const uint8_t *f = pm_msgcache_get(c, id, &len, 5000);
  CHECK(f != NULL && len == sizeof frame && frame_is(f, len, id, 'a'));
  pm_msgcache_free(c);
  CHECK(new_cache(0, 1) == NULL);
}

/* Frames of many sizes, one of 40,000 bytes,
 * evicted by the budget and by age: what is kept reads back intact, what
 * is gone reads as gone, and an emptied cache fills again. */
static void test_budget_and_age_keep_frames_intact(void) {
  enum { N = 600, BUDGET = 100000 };
  pm_msgcache *c = new_cache(BUDGET, 60000);
  static uint8_t frame[40000];
  uint8_t id[PM_MSG_ID_LEN];
  size_t sizes[N];
  for (uint32_t i = 0; i < N; i++) {
    sizes[i] = i == 300 ? 40000 : MIN_FRAME + (i * 7919u) % 900;
    num_id(id, i);
    make_frame(frame, sizes[i], id, (uint8_t)i);
    CHECK_INT(pm_msgcache_put(c, frame, sizes[i], 0, 1000 + i), 0);
    CHECK(pm_msgcache_bytes(c) <= BUDGET);
  }
  /* The newest ones are all there, byte for byte; the first are gone. */
  size_t kept = 0;
  for (uint32_t i = 0; i < N; i++) {
    num_id(id, i);
    size_t len = 0;
    const uint8_t *f = pm_msgcache_get(c, id, &len, 1000 + N);
    if (!f)
      continue;
    kept++;
    CHECK_INT(len, sizes[i]);
    CHECK(frame_is(f, len, id, (uint8_t)i));
  }
  CHECK_INT(kept, pm_msgcache_count(c));
  CHECK(kept > 50 && kept < N);
  num_id(id, 0);
  size_t len;
  CHECK(pm_msgcache_get(c, id, &len, 1000 + N) == NULL);
  /* Everything expires; the cache then takes new frames. */
  pm_msgcache_expire(c, 1000 + N + 60000);
  CHECK_INT(pm_msgcache_count(c), 0);
  CHECK_INT(pm_msgcache_bytes(c), 0);
  make_id(id, 9);
  make_frame(frame, MIN_FRAME + 5, id, 'g');
  CHECK_INT(pm_msgcache_put(c, frame, MIN_FRAME + 5, 0, 200000), 0);
  const uint8_t *f = pm_msgcache_get(c, id, &len, 200001);
  CHECK(f != NULL && len == MIN_FRAME + 5 && frame_is(f, len, id, 'g'));
  pm_msgcache_free(c);
}

/* What a neighbour coming online is told of: the messages since a time,
 * newest first, the background ones (presence) after all the others, so
 * that a burst of them cannot crowd the others out of the `max`. */
static void test_recent_background_last(void) {
  pm_msgcache *c = new_cache(1 << 16, 60000);
  uint8_t id[PM_MSG_ID_LEN], frame[MIN_FRAME];
  for (uint8_t i = 1; i <= 6; i++) {
    make_id(id, i);
    make_frame(frame, sizeof frame, id, 0);
    CHECK_INT(pm_msgcache_put(c, frame, sizeof frame, i % 2 == 0, i * 10u), 0);
  }
  uint8_t ids[10 * PM_MSG_ID_LEN];
  static const uint8_t all[] = {5, 3, 6, 4, 2};
  size_t n = pm_msgcache_recent(c, 20, ids, 10);
  CHECK_INT(n, 5);
  for (size_t k = 0; k < n && k < 5; k++)
    CHECK_INT(ids[k * PM_MSG_ID_LEN], all[k]);
  CHECK_INT(pm_msgcache_recent(c, 20, ids, 3), 3);
  CHECK_INT(ids[2 * PM_MSG_ID_LEN], 6);
  static const uint8_t late[] = {5, 6, 4};
  n = pm_msgcache_recent(c, 35, ids, 10);
  CHECK_INT(n, 3);
  for (size_t k = 0; k < n && k < 3; k++)
    CHECK_INT(ids[k * PM_MSG_ID_LEN], late[k]);
  CHECK_INT(pm_msgcache_recent(c, 61, ids, 10), 0);
  pm_msgcache_free(c);
}

/* As the oldest frames go one by one, down to an empty cache that then
 * fills again, every frame left, small or large, reads back intact. */
static int frames_intact(pm_msgcache *c, uint32_t from, uint32_t to,
                         uint64_t now) {
  int same = 1;
  for (uint32_t i = from; i < to; i++) {
    uint8_t id[PM_MSG_ID_LEN];
    num_id(id, i);
    size_t len = 0;
    const uint8_t *f = pm_msgcache_get(c, id, &len, now);
    if (!f || len != (i % 50 == 7 ? 20000u : MIN_FRAME + i % 300))
      return 0;
    same &= frame_is(f, len, id, (uint8_t)i);
  }
  return same;
}

static void test_frames_survive_every_drop(void) {
  enum { N = 300, TTL = 1000 };
  pm_msgcache *c = new_cache(1 << 20, TTL);
  static uint8_t frame[20000];
  uint8_t id[PM_MSG_ID_LEN];
  uint64_t t = 0;
  for (uint32_t round = 0; round < 3; round++) {
    uint32_t first = round * 1000;
    for (uint32_t i = first; i < first + N; i++) {
      size_t len = i % 50 == 7 ? 20000 : MIN_FRAME + i % 300;
      num_id(id, i);
      make_frame(frame, len, id, (uint8_t)i);
      CHECK_INT(pm_msgcache_put(c, frame, len, 0, t + (i - first)), 0);
    }
    int intact = 1;
    for (uint32_t gone = 1; gone <= N; gone++) {
      uint64_t now = t + gone - 1 + TTL; /* the first `gone` age out */
      pm_msgcache_expire(c, now);
      intact &= pm_msgcache_count(c) == N - gone;
      intact &= frames_intact(c, first + gone, first + N, now);
    }
    CHECK(intact);
    CHECK_INT(pm_msgcache_bytes(c), 0);
    t += 10 * TTL;
  }
  pm_msgcache_free(c);
}

/* The frames share chunks; whatever their sizes, the memory the cache
 * takes stays within about twice its byte budget, plus its entries.
 * Frames of 1,005 bytes are the worst case (one to a 2 KiB chunk); small
 * ones share. */
static size_t live_bytes;
static void *counting_realloc(void *ud, void *ptr, size_t size) {
  (void)ud;
  size_t *h = ptr ? (size_t *)ptr - 2 : NULL;
  if (h)
    live_bytes -= h[0];
  if (size == 0) {
    free(h);
    return NULL;
  }
  size_t *n = realloc(h, size + 2 * sizeof *n);
  if (!n) {
    if (h)
      live_bytes += h[0];
    return NULL;
  }
  n[0] = size;
  live_bytes += size;
  return n + 2;
}

static void test_memory_within_twice_the_budget(void) {
  enum { BUDGET = 100000, ENTRY = 24 /* an entry's size */ };
  static const pm_allocator counting = {counting_realloc, NULL};
  static const size_t sizes[] = {1005, 38, 2100, 700, 1005, 2007, 64, 1500};
  static uint8_t frame[2200];
  size_t most = 0;
  int within = 1;
  pm_msgcache *c = pm_msgcache_new(&counting, NULL, BUDGET, 60000, OFF, OFF);
  for (uint32_t i = 0; i < 8000; i++) {
    size_t len = i < 2000 ? 1005 : i < 5000 ? 64 : sizes[i % 8];
    uint8_t id[PM_MSG_ID_LEN];
    num_id(id, i);
    make_frame(frame, len, id, (uint8_t)i);
    CHECK_INT(pm_msgcache_put(c, frame, len, 0, i), 0);
    if (pm_msgcache_count(c) > most)
      most = pm_msgcache_count(c);
    /* Twice the bytes held, the chunk being filled, the entries (the
     * ring of them at most twice the most there were) and the rest. */
    within &= live_bytes <= 2 * BUDGET + 2048 + 2 * most * ENTRY + 256;
  }
  CHECK(within);
  CHECK(pm_msgcache_bytes(c) > BUDGET - 2200);
  pm_msgcache_free(c);
  CHECK_INT(live_bytes, 0);
}

/* Two caches share a pool: one copy of a frame, each cache with its own
 * bytes at VAR; the copy goes when neither holds the frame. */
/* With a pool, a frame too short to hold the bytes at var_offset is
 * refused before it makes room: what the cache held stays. */
static void test_pool_refuses_short_frame_first(void) {
  pm_idpool *p = pm_idpool_new(NULL);
  enum { LONG = MIN_FRAME + 20 };
  pm_msgcache *c = pm_msgcache_new(NULL, p, LONG, 60000, OFF, LONG - 2);
  uint8_t id[PM_MSG_ID_LEN], frame[LONG];
  make_id(id, 1);
  make_frame(frame, LONG, id, 0x11);
  CHECK_INT(pm_msgcache_put(c, frame, LONG, 0, 0), 0);
  make_id(id, 2);
  make_frame(frame, LONG - 1, id, 0x22);
  CHECK_INT(pm_msgcache_put(c, frame, LONG - 1, 0, 0), PM_ERR_INVAL);
  CHECK_INT(pm_msgcache_count(c), 1);
  make_id(id, 1);
  size_t len = 0;
  CHECK(pm_msgcache_get(c, id, &len, 1) != NULL);
  CHECK_INT(len, LONG);
  pm_msgcache_free(c);
  CHECK_INT(pm_idpool_count(p), 0);
  pm_idpool_free(p);
}

static void test_pool_shared_by_caches(void) {
  pm_idpool *p = pm_idpool_new(NULL);
  pm_msgcache *a = pm_msgcache_new(NULL, p, 1000, 60000, OFF, VAR);
  pm_msgcache *b = pm_msgcache_new(NULL, p, 1000, 100, OFF, VAR);
  uint8_t id[PM_MSG_ID_LEN], frame[MIN_FRAME + 20];
  make_id(id, 7);
  make_frame(frame, sizeof frame, id, 0x55);
  frame[VAR] = 1;
  frame[VAR + 1] = 2;
  CHECK_INT(pm_msgcache_put(a, frame, sizeof frame, 0, 0), 0);
  frame[VAR] = 3;
  frame[VAR + 1] = 4;
  CHECK_INT(pm_msgcache_put(b, frame, sizeof frame, 0, 0), 0);
  CHECK_INT(pm_idpool_count(p), 1);
  size_t len = 0;
  const uint8_t *f = pm_msgcache_get(a, id, &len, 10);
  CHECK(f != NULL);
  CHECK_INT(len, sizeof frame);
  if (f) {
    CHECK_INT(f[VAR], 1);
    CHECK_INT(f[VAR + 1], 2);
    CHECK_MEM(f + OFF, id, PM_MSG_ID_LEN);
    CHECK_INT(f[sizeof frame - 1], 0x55);
  }
  f = pm_msgcache_get(b, id, &len, 10);
  CHECK(f != NULL);
  if (f) {
    CHECK_INT(f[VAR], 3);
    CHECK_INT(f[VAR + 1], 4);
  }
  pm_msgcache_expire(b, 200); /* b's TTL passes: a still holds it */
  CHECK(pm_msgcache_get(b, id, &len, 200) == NULL);
  CHECK_INT(pm_idpool_count(p), 1);
  CHECK(pm_msgcache_get(a, id, &len, 200) != NULL);
  pm_msgcache_free(a);
  CHECK_INT(pm_idpool_count(p), 0);
  pm_msgcache_free(b);
  pm_idpool_free(p);
}

static void test_refill_with_larger_frame_pooled(void) {
  pooled(test_refill_with_larger_frame);
}

static void test_put_and_get_pooled(void) {
  pooled(test_put_and_get);
}

static void test_recent_background_last_pooled(void) {
  pooled(test_recent_background_last);
}

static void test_frames_survive_every_drop_pooled(void) {
  pooled(test_frames_survive_every_drop);
}

static void test_budget_and_age_keep_frames_intact_pooled(void) {
  pooled(test_budget_and_age_keep_frames_intact);
}

static void test_ttl_pooled(void) {
  pooled(test_ttl);
}

static void test_byte_budget_evicts_oldest_pooled(void) {
  pooled(test_byte_budget_evicts_oldest);
}

static void test_many_entries_grow_and_free_pooled(void) {
  pooled(test_many_entries_grow_and_free);
}

TEST_MAIN(TEST_CASE(test_memory_within_twice_the_budget),
          TEST_CASE(test_refill_with_larger_frame),
          TEST_CASE(test_refill_with_larger_frame_pooled),
          TEST_CASE(test_put_and_get), TEST_CASE(test_put_and_get_pooled),
          TEST_CASE(test_recent_background_last),
          TEST_CASE(test_recent_background_last_pooled),
          TEST_CASE(test_frames_survive_every_drop),
          TEST_CASE(test_frames_survive_every_drop_pooled),
          TEST_CASE(test_budget_and_age_keep_frames_intact),
          TEST_CASE(test_budget_and_age_keep_frames_intact_pooled),
          TEST_CASE(test_ttl), TEST_CASE(test_ttl_pooled),
          TEST_CASE(test_byte_budget_evicts_oldest),
          TEST_CASE(test_byte_budget_evicts_oldest_pooled),
          TEST_CASE(test_many_entries_grow_and_free),
          TEST_CASE(test_many_entries_grow_and_free_pooled),
          TEST_CASE(test_pool_shared_by_caches),
          TEST_CASE(test_pool_refuses_short_frame_first))
