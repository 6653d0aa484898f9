/* The payload spanning tree; see tree.h and docs/PROTOCOL.md, "Tree". */
#include "tree.h"

#include <string.h>

#define DEAD_FACTOR 4 /* a dead root stays dead this many root timeouts */

static int id_cmp(const uint8_t *a, const uint8_t *b) {
  return memcmp(a, b, PM_NODE_ID_LEN);
}

static void become_root(pm_tree *t, uint64_t now) {
  memcpy(t->root, t->self, PM_NODE_ID_LEN);
  t->epoch = ++t->own;
  t->dist = t->fd = 0;
  t->parent = 0;
  t->epoch_at = now;
  t->next_beacon = now + t->beacon_ms;
}

void pm_tree_init(pm_tree *t, const uint8_t self[PM_NODE_ID_LEN],
                  uint32_t beacon_ms, uint32_t root_timeout_ms, uint64_t now) {
  memset(t, 0, sizeof *t);
  memcpy(t->self, self, PM_NODE_ID_LEN);
  t->beacon_ms = beacon_ms;
  t->root_timeout_ms = root_timeout_ms;
  t->dead_ms = DEAD_FACTOR * root_timeout_ms;
  become_root(t, now);
}

int pm_tree_is_root(const pm_tree *t) {
  return id_cmp(t->root, t->self) == 0;
}

static int is_dead(const pm_tree *t, const pm_tree_adv *a, uint64_t now) {
  for (int i = 0; i < PM_TREE_DEAD_MAX; i++) {
    const pm_tree_dead *d = &t->dead[i];
    if (d->until > now && id_cmp(d->root, a->root) == 0 && a->epoch <= d->epoch)
      return 1;
  }
  return 0;
}

static void mark_dead(pm_tree *t, uint64_t now) {
  pm_tree_dead *slot = &t->dead[0];
  for (int i = 0; i < PM_TREE_DEAD_MAX; i++) {
    pm_tree_dead *d = &t->dead[i];
    if (id_cmp(d->root, t->root) == 0) {
      slot = d;
      break;
    }
    if (d->until < slot->until)
      slot = d;
  }
  memcpy(slot->root, t->root, PM_NODE_ID_LEN);
  slot->epoch = t->epoch;
  slot->until = now + t->dead_ms;
}

/* An advert this node may take a path from. */
static int usable(const pm_tree *t, const pm_tree_peer *p, uint64_t now) {
  return p->has_adv && p->adv.dist != PM_TREE_INF &&
         !(p->adv.flags & PM_TREE_FLAG_PARENT) &&
         id_cmp(p->adv.root, t->self) != 0 && !is_dead(t, &p->adv, now);
}

/* Taking this path cannot close a loop: a better root, a newer epoch (which
 * comes from the root itself), or, in this epoch, a neighbour strictly
 * closer than this node has been. */
static int feasible(const pm_tree *t, const pm_tree_adv *a) {
  int c = id_cmp(a->root, t->root);
  if (c != 0)
    return c < 0;
  return a->epoch > t->epoch || (a->epoch == t->epoch && a->dist < t->fd);
}

/* Preference among feasible paths: lower root, fewer hops, newer epoch,
 * then the lower link id so that both choices are deterministic. */
static int better(const pm_tree_peer *a, const pm_tree_peer *b) {
  int c = id_cmp(a->adv.root, b->adv.root);
  if (c != 0)
    return c < 0;
  if (a->adv.dist != b->adv.dist)
    return a->adv.dist < b->adv.dist;
  if (a->adv.epoch != b->adv.epoch)
    return a->adv.epoch > b->adv.epoch;
  return a->link_id < b->link_id;
}

static void adopt(pm_tree *t, const pm_tree_peer *p, uint64_t now) {
  const pm_tree_adv *a = &p->adv;
  int fresh = id_cmp(a->root, t->root) != 0 || a->epoch > t->epoch;
  memcpy(t->root, a->root, PM_NODE_ID_LEN);
  t->dist = (uint16_t)(a->dist + 1 < PM_TREE_INF ? a->dist + 1 : PM_TREE_INF);
  if (fresh) {
    t->epoch = a->epoch;
    t->epoch_at = now;
    t->fd = t->dist;
  } else if (t->dist < t->fd) {
    t->fd = t->dist;
  }
  t->parent = p->link_id;
}

void pm_tree_heard(pm_tree_peer *p, const pm_tree_adv *a) {
  if (p->has_adv && id_cmp(a->root, p->adv.root) > 0) {
    p->has_left = 1;
    memcpy(p->left, p->adv.root, PM_NODE_ID_LEN);
  } else if (p->has_left && id_cmp(a->root, p->left) <= 0) {
    p->has_left = 0; /* back under that root, or a lower one */
  }
  p->adv = *a;
  p->has_adv = 1;
}

/* A neighbour left this node's root for a higher one. */
static int root_left(const pm_tree *t, pm_tree_peer *const *peers,
                     size_t count) {
  for (size_t i = 0; i < count; i++)
    if (peers[i]->has_left && id_cmp(peers[i]->left, t->root) == 0)
      return 1;
  return 0;
}

int pm_tree_update(pm_tree *t, pm_tree_peer *const *peers, size_t count,
                   uint64_t now) {
  pm_tree before = *t;
  const pm_tree_peer *parent = NULL;
  const pm_tree_peer *best = NULL;
  for (size_t i = 0; i < count; i++) {
    const pm_tree_peer *p = peers[i];
    /* Someone still follows an old epoch of this node as root: move past
     * it, so the new adverts are not taken for stale ones. */
    if (p->has_adv && pm_tree_is_root(t) && id_cmp(p->adv.root, t->self) == 0 &&
        p->adv.epoch > t->epoch)
      t->epoch = t->own = p->adv.epoch + 1;
    if (p->link_id == t->parent)
      parent = p;
    else if (usable(t, p, now) && feasible(t, &p->adv) &&
             (!best || better(p, best)))
      best = p;
  }

  if (pm_tree_is_root(t)) {
    if (best && id_cmp(best->adv.root, t->self) < 0)
      adopt(t, best, now);
  } else {
    int parent_ok = parent && usable(t, parent, now) &&
                    id_cmp(parent->adv.root, t->root) <= 0 &&
                    (id_cmp(parent->adv.root, t->root) < 0 ||
                     parent->adv.epoch >= t->epoch);
    if ((t->dist == 1 && !parent) ||
        (parent && usable(t, parent, now) &&
         id_cmp(parent->adv.root, t->root) > 0) ||
        (!parent_ok && !best && root_left(t, peers, count))) {
      /* The parent was the root and is gone; or the parent follows a root
       * above this node's, which it does only once it took this one for
       * dead; or this node would detach and a neighbour left the root so.
       * This node takes the root for dead too, now rather than after the
       * root timeout (detached, it would flood until then), and its
       * subtree follows the same way. */
      mark_dead(t, now);
      become_root(t, now);
      pm_tree_update(t, peers, count, now);
      return 1;
    }
    if (parent_ok)
      adopt(t, parent, now); /* follows the parent's news */
    if (best && (!parent_ok || id_cmp(best->adv.root, t->root) < 0 ||
                 best->adv.dist + 1u < t->dist))
      adopt(t, best, now);
    else if (!parent_ok) {
      t->parent = 0; /* detached until a feasible path appears */
      t->dist = PM_TREE_INF;
    }
  }
  return id_cmp(before.root, t->root) != 0 || before.epoch != t->epoch ||
         before.dist != t->dist || before.parent != t->parent;
}

int pm_tree_tick(pm_tree *t, pm_tree_peer *const *peers, size_t count,
                 uint64_t now) {
  int changed = 0;
  if (pm_tree_is_root(t)) {
    if (now >= t->next_beacon) {
      t->epoch = ++t->own;
      t->epoch_at = now;
      t->next_beacon = now + t->beacon_ms;
      changed = 1;
    }
  } else if (now >= t->epoch_at + t->root_timeout_ms) {
    mark_dead(t, now);
    become_root(t, now);
    changed = 1;
  }
  return pm_tree_update(t, peers, count, now) || changed;
}

uint64_t pm_tree_deadline(const pm_tree *t) {
  return pm_tree_is_root(t) ? t->next_beacon : t->epoch_at + t->root_timeout_ms;
}

int pm_tree_detached(const pm_tree *t) {
  return t->parent == 0 && !pm_tree_is_root(t);
}

void pm_tree_advert(const pm_tree *t, uint32_t link_id, pm_tree_adv *out) {
  memcpy(out->root, t->root, PM_NODE_ID_LEN);
  out->epoch = t->epoch;
  out->dist = t->dist;
  /* Detached, every neighbour is asked to push: flooding until the tree
   * is whole again. */
  out->flags = ((t->parent && t->parent == link_id) || pm_tree_detached(t))
                   ? PM_TREE_FLAG_PARENT
                   : 0;
}

int pm_tree_is_tree_link(const pm_tree *t, const pm_tree_peer *p) {
  return (t->parent && p->link_id == t->parent) ||
         (p->has_adv && (p->adv.flags & PM_TREE_FLAG_PARENT));
}
