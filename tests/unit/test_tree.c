/* Unit tests for the payload spanning tree (runtime/core/tree.c), driven
 * with hand-written adverts and literal timestamps. */
#include <string.h>

#include "test.h"
#include "tree.h"

#define BEACON 3000
#define TIMEOUT 10000

static void id_of(uint8_t b, uint8_t out[PM_NODE_ID_LEN]) {
  memset(out, b, PM_NODE_ID_LEN);
}

static void set_adv(pm_tree_peer *p, uint32_t link_id, uint8_t root,
                    uint32_t epoch, uint16_t dist, uint8_t flags) {
  p->link_id = link_id;
  p->has_adv = 1;
  id_of(root, p->adv.root);
  p->adv.epoch = epoch;
  p->adv.dist = dist;
  p->adv.flags = flags;
}

/* The same, arriving as a Tree frame does (pm_tree_heard). */
static void hear(pm_tree_peer *p, uint32_t link_id, uint8_t root,
                 uint32_t epoch, uint16_t dist) {
  pm_tree_adv a = {0};
  id_of(root, a.root);
  a.epoch = epoch;
  a.dist = dist;
  p->link_id = link_id;
  pm_tree_heard(p, &a);
}

static int root_is(const pm_tree *t, uint8_t b) {
  uint8_t id[PM_NODE_ID_LEN];
  id_of(b, id);
  return memcmp(t->root, id, PM_NODE_ID_LEN) == 0;
}

static void test_starts_as_its_own_root(void) {
  pm_tree t;
  uint8_t self[PM_NODE_ID_LEN];
  id_of(0x50, self);
  pm_tree_init(&t, self, BEACON, TIMEOUT, 1000);
  CHECK(pm_tree_is_root(&t));
  CHECK_INT(t.dist, 0);
  CHECK_INT(t.parent, 0);
  CHECK_INT(pm_tree_deadline(&t), 1000 + BEACON);
  pm_tree_adv a;
  pm_tree_advert(&t, 7, &a);
  CHECK_MEM(a.root, self, PM_NODE_ID_LEN);
  CHECK_INT(a.epoch, 1);
  CHECK_INT(a.dist, 0);
  CHECK_INT(a.flags, 0);
  /* The beacon starts a new epoch. */
  CHECK_INT(pm_tree_tick(&t, NULL, 0, 1000 + BEACON - 1), 0);
  CHECK_INT(pm_tree_tick(&t, NULL, 0, 1000 + BEACON), 1);
  CHECK_INT(t.epoch, 2);
  CHECK_INT(pm_tree_deadline(&t), 1000 + 2 * BEACON);
}

static void test_follows_lower_root_and_ignores_higher(void) {
  pm_tree t;
  uint8_t self[PM_NODE_ID_LEN];
  id_of(0x50, self);
  pm_tree_init(&t, self, BEACON, TIMEOUT, 0);
  pm_tree_peer hi = {0}, lo = {0};
  set_adv(&hi, 1, 0x60, 9, 0, 0);
  pm_tree_peer *peers[] = {&hi, &lo};
  CHECK_INT(pm_tree_update(&t, peers, 1, 100), 0);
  CHECK(pm_tree_is_root(&t));

  set_adv(&lo, 2, 0x10, 4, 2, 0);
  CHECK_INT(pm_tree_update(&t, peers, 2, 200), 1);
  CHECK(root_is(&t, 0x10));
  CHECK_INT(t.epoch, 4);
  CHECK_INT(t.dist, 3);
  CHECK_INT(t.parent, 2);
  CHECK_INT(pm_tree_deadline(&t), 200 + TIMEOUT);
  /* Its advert carries the parent flag only on the parent's link. */
  pm_tree_adv a;
  pm_tree_advert(&t, 2, &a);
  CHECK_INT(a.flags, PM_TREE_FLAG_PARENT);
  pm_tree_advert(&t, 1, &a);
  CHECK_INT(a.flags, 0);
  CHECK(pm_tree_is_tree_link(&t, &lo));
  CHECK(!pm_tree_is_tree_link(&t, &hi));
  /* A neighbour whose parent is this node is a tree link, never a parent. */
  set_adv(&hi, 1, 0x10, 4, 4, PM_TREE_FLAG_PARENT);
  CHECK_INT(pm_tree_update(&t, peers, 2, 300), 0);
  CHECK(pm_tree_is_tree_link(&t, &hi));
  CHECK_INT(t.parent, 2);
}

static void test_moves_only_to_strictly_closer(void) {
  pm_tree t;
  uint8_t self[PM_NODE_ID_LEN];
  id_of(0x50, self);
  pm_tree_init(&t, self, BEACON, TIMEOUT, 0);
  pm_tree_peer a = {0}, b = {0};
  set_adv(&a, 1, 0x10, 4, 3, 0);
  pm_tree_peer *peers[] = {&a, &b};
  CHECK_INT(pm_tree_update(&t, peers, 1, 100), 1);
  CHECK_INT(t.dist, 4);
  /* Same distance elsewhere: stay. */
  set_adv(&b, 2, 0x10, 4, 3, 0);
  CHECK_INT(pm_tree_update(&t, peers, 2, 110), 0);
  CHECK_INT(t.parent, 1);
  /* Closer: move. */
  set_adv(&b, 2, 0x10, 4, 1, 0);
  CHECK_INT(pm_tree_update(&t, peers, 2, 120), 1);
  CHECK_INT(t.parent, 2);
  CHECK_INT(t.dist, 2);
  CHECK_INT(t.fd, 2);
  /* A newer epoch from the old parent at a longer distance does not pull
   * the node back: it waits for its parent's news. */
  set_adv(&a, 1, 0x10, 5, 3, 0);
  CHECK_INT(pm_tree_update(&t, peers, 2, 3100), 0);
  CHECK_INT(t.parent, 2);
  CHECK_INT(t.epoch, 4);
  set_adv(&b, 2, 0x10, 5, 1, 0);
  CHECK_INT(pm_tree_update(&t, peers, 2, 3110), 1);
  CHECK_INT(t.epoch, 5);
  CHECK_INT(t.parent, 2);
  CHECK_INT(pm_tree_deadline(&t), 3110 + TIMEOUT);
}

static void test_lost_parent_takes_feasible_or_detaches(void) {
  pm_tree t;
  uint8_t self[PM_NODE_ID_LEN];
  id_of(0x50, self);
  pm_tree_init(&t, self, BEACON, TIMEOUT, 0);
  pm_tree_peer p = {0}, same = {0}, closer = {0};
  set_adv(&p, 1, 0x10, 4, 2, 0);
  pm_tree_peer *peers[] = {&p, &same, &closer};
  CHECK_INT(pm_tree_update(&t, peers, 1, 100), 1);
  CHECK_INT(t.dist, 3);
  /* The parent goes. A neighbour as far as this node is not feasible in
   * this epoch: it may be a descendant. The node detaches. */
  set_adv(&same, 2, 0x10, 4, 3, 0);
  pm_tree_peer *rest[] = {&same};
  CHECK_INT(pm_tree_update(&t, rest, 1, 200), 1);
  CHECK_INT(t.parent, 0);
  CHECK_INT(t.dist, PM_TREE_INF);
  CHECK(root_is(&t, 0x10));
  pm_tree_adv a;
  pm_tree_advert(&t, 2, &a);
  CHECK_INT(a.dist, PM_TREE_INF);
  /* One strictly closer than the last distance is taken. */
  set_adv(&closer, 3, 0x10, 4, 1, 0);
  pm_tree_peer *two[] = {&same, &closer};
  CHECK_INT(pm_tree_update(&t, two, 2, 300), 1);
  CHECK_INT(t.parent, 3);
  CHECK_INT(t.dist, 2);
  /* A parent that turns unreachable is lost the same way. */
  set_adv(&closer, 3, 0x10, 4, PM_TREE_INF, 0);
  CHECK_INT(pm_tree_update(&t, two, 2, 400), 1);
  CHECK_INT(t.parent, 0);
  /* The next epoch is feasible from anyone who has it. */
  set_adv(&same, 2, 0x10, 5, 6, 0);
  CHECK_INT(pm_tree_update(&t, two, 2, 3000), 1);
  CHECK_INT(t.parent, 2);
  CHECK_INT(t.dist, 7);
  CHECK_INT(t.epoch, 5);
}

static void test_dead_root_replaced_and_stale_adverts_ignored(void) {
  pm_tree t;
  uint8_t self[PM_NODE_ID_LEN];
  id_of(0x50, self);
  pm_tree_init(&t, self, BEACON, TIMEOUT, 0);
  pm_tree_peer p = {0}, q = {0};
  set_adv(&p, 1, 0x10, 4, 0, 0);
  pm_tree_peer *peers[] = {&p, &q};
  CHECK_INT(pm_tree_update(&t, peers, 1, 1000), 1);
  CHECK_INT(pm_tree_deadline(&t), 1000 + TIMEOUT);
  /* No new epoch for the timeout: the root is taken for dead, and this
   * node (0x50) is a root until a lower live one is heard. */
  set_adv(&q, 2, 0x10, 4, 1, 0);
  CHECK_INT(pm_tree_tick(&t, peers, 2, 1000 + TIMEOUT - 1), 0);
  CHECK_INT(pm_tree_tick(&t, peers, 2, 1000 + TIMEOUT), 1);
  CHECK(pm_tree_is_root(&t));
  /* Neighbours still repeating the dead root's last epoch are ignored. */
  CHECK_INT(pm_tree_update(&t, peers, 2, 11500), 0);
  CHECK(pm_tree_is_root(&t));
  /* A lower live root is followed. */
  set_adv(&q, 2, 0x20, 1, 0, 0);
  CHECK_INT(pm_tree_update(&t, peers, 2, 11600), 1);
  CHECK(root_is(&t, 0x20));
  CHECK_INT(t.parent, 2);
  /* The old root's newer epoch (it was only cut off) wins again. */
  set_adv(&p, 1, 0x10, 5, 0, 0);
  CHECK_INT(pm_tree_update(&t, peers, 2, 12000), 1);
  CHECK(root_is(&t, 0x10));
  CHECK_INT(t.parent, 1);
  CHECK_INT(t.dist, 1);
}

static void test_root_moves_past_its_old_epochs(void) {
  /* A restarted root starts counting at 1 while neighbours remember a
   * later epoch of it; it must continue above theirs. */
  pm_tree t;
  uint8_t self[PM_NODE_ID_LEN];
  id_of(0x05, self);
  pm_tree_init(&t, self, BEACON, TIMEOUT, 0);
  pm_tree_peer p = {0};
  set_adv(&p, 1, 0x05, 40, 1, 0);
  pm_tree_peer *peers[] = {&p};
  CHECK_INT(pm_tree_update(&t, peers, 1, 100), 1);
  CHECK(pm_tree_is_root(&t));
  CHECK_INT(t.epoch, 41);
  /* Its own current epoch echoed back changes nothing. */
  set_adv(&p, 1, 0x05, 41, 1, 0);
  CHECK_INT(pm_tree_update(&t, peers, 1, 200), 0);
  CHECK_INT(pm_tree_tick(&t, peers, 1, 100 + BEACON), 1);
  CHECK_INT(t.epoch, 42);
}

/* The root's child whose link to it goes takes the root for dead at once,
 * rather than detaching (and flooding) until the root timeout; its own
 * child follows when it sees its parent under a higher root. A root that
 * was alive comes back with its next epoch. */
static void test_root_child_takes_over_at_once(void) {
  pm_tree t;
  uint8_t self[PM_NODE_ID_LEN];
  id_of(0x50, self);
  pm_tree_init(&t, self, BEACON, TIMEOUT, 0);
  pm_tree_peer root = {0}, cousin = {0};
  set_adv(&root, 1, 0x10, 4, 0, 0);
  set_adv(&cousin, 2, 0x10, 4, 2, 0);
  pm_tree_peer *peers[] = {&root, &cousin};
  CHECK_INT(pm_tree_update(&t, peers, 2, 100), 1);
  CHECK_INT(t.dist, 1);
  pm_tree_peer *rest[] = {&cousin};
  CHECK_INT(pm_tree_update(&t, rest, 1, 200), 1);
  CHECK(pm_tree_is_root(&t));
  CHECK(!pm_tree_detached(&t));
  CHECK_INT(pm_tree_deadline(&t), 200 + BEACON);
  /* The cousin still repeating the dead root's epoch is not followed. */
  CHECK_INT(pm_tree_update(&t, rest, 1, 300), 0);
  CHECK(pm_tree_is_root(&t));

  /* Its child (0x60) sees it under root 0x50 now, above 0x10. */
  pm_tree c;
  uint8_t cid[PM_NODE_ID_LEN];
  id_of(0x60, cid);
  pm_tree_init(&c, cid, BEACON, TIMEOUT, 0);
  pm_tree_peer parent = {0};
  set_adv(&parent, 7, 0x10, 4, 1, 0);
  pm_tree_peer *cp[] = {&parent};
  CHECK_INT(pm_tree_update(&c, cp, 1, 150), 1);
  CHECK_INT(c.dist, 2);
  pm_tree_adv a;
  pm_tree_advert(&t, 7, &a);
  pm_tree_heard(&parent, &a);
  CHECK_INT(pm_tree_update(&c, cp, 1, 250), 1);
  CHECK(root_is(&c, 0x50));
  CHECK_INT(c.parent, 7);
  CHECK_INT(c.dist, 1);
  /* An advert of 0x10's last epoch no longer counts there either. */
  pm_tree_peer late = {0};
  set_adv(&late, 8, 0x10, 4, 3, 0);
  pm_tree_peer *cq[] = {&parent, &late};
  CHECK_INT(pm_tree_update(&c, cq, 2, 260), 0);
  CHECK(root_is(&c, 0x50));

  /* 0x10 was alive, only its link had gone: its next epoch wins. */
  set_adv(&cousin, 2, 0x10, 5, 2, 0);
  CHECK_INT(pm_tree_update(&t, rest, 1, 3000), 1);
  CHECK(root_is(&t, 0x10));
  CHECK_INT(t.parent, 2);
  CHECK_INT(t.dist, 3);
}

/* A detached node whose neighbour left its root for a higher one takes the
 * root for dead too; a neighbour that came back under the root is no such
 * sign. */
static void test_detached_follows_a_neighbour_that_left_the_root(void) {
  pm_tree t;
  uint8_t self[PM_NODE_ID_LEN];
  id_of(0x50, self);
  pm_tree_init(&t, self, BEACON, TIMEOUT, 0);
  pm_tree_peer parent = {0}, n = {0};
  hear(&parent, 1, 0x10, 4, 1);
  hear(&n, 2, 0x10, 4, 3);
  pm_tree_peer *peers[] = {&parent, &n};
  CHECK_INT(pm_tree_update(&t, peers, 2, 100), 1);
  CHECK_INT(t.dist, 2);
  /* The neighbour left 0x10 and came back: no sign. */
  hear(&n, 2, 0x30, 1, 0);
  hear(&n, 2, 0x10, 4, 3);
  pm_tree_peer *rest[] = {&n};
  CHECK_INT(pm_tree_update(&t, rest, 1, 200), 1);
  CHECK(pm_tree_detached(&t));
  CHECK_INT(pm_tree_update(&t, rest, 1, 250), 0);
  CHECK(pm_tree_detached(&t));
  /* It leaves 0x10 for 0x30 (above 0x10, below 0x50): so does this node,
   * and follows it. */
  hear(&n, 2, 0x30, 1, 0);
  CHECK_INT(pm_tree_update(&t, rest, 1, 300), 1);
  CHECK(root_is(&t, 0x30));
  CHECK_INT(t.parent, 2);
  CHECK_INT(t.dist, 1);
}

TEST_MAIN(TEST_CASE(test_starts_as_its_own_root),
          TEST_CASE(test_detached_follows_a_neighbour_that_left_the_root),
          TEST_CASE(test_root_child_takes_over_at_once),
          TEST_CASE(test_follows_lower_root_and_ignores_higher),
          TEST_CASE(test_moves_only_to_strictly_closer),
          TEST_CASE(test_lost_parent_takes_feasible_or_detaches),
          TEST_CASE(test_dead_root_replaced_and_stale_adverts_ignored),
          TEST_CASE(test_root_moves_past_its_old_epochs))
