/* The spanning tree that carries payloads (docs/PROTOCOL.md, "Tree").
 *
 * Every node advertises to each neighbour the root it follows, the root's
 * epoch and its distance in hops from the root; the node with the lowest ID
 * is the root. The root starts a new epoch every beacon interval; the epoch
 * reaches every node over every link. Each node takes as its parent a
 * neighbour closest to the root, so the tree is a breadth-first tree and a
 * payload crosses at most twice the mesh's radius.
 *
 * Loop freedom follows Babel's feasibility condition: within one epoch a
 * node may only move to a neighbour strictly closer to the root than the
 * closest it has been itself, and a newer epoch always comes from the root
 * over a path that exists. A node that hears of no new epoch for the root
 * timeout takes the root for dead, remembers it as such for a while (so that
 * stale adverts do not bring it back), and becomes a root itself; the lowest
 * ID among the survivors wins again. It does so at once when its parent was
 * the root and is gone, when its parent has moved to a higher root (which
 * it does only once it took the root for dead), or, when it would detach,
 * when a neighbour left the root that way.
 *
 * The module keeps no links of its own: the node hands it the current
 * neighbours' last adverts at each call. */
#ifndef PM_CORE_TREE_H
#define PM_CORE_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/node.h"

#define PM_TREE_INF 0xFFFF       /* distance: no path to the root */
#define PM_TREE_FLAG_PARENT 0x01 /* the sender's parent is the receiver */
#define PM_TREE_DEAD_MAX 8

typedef struct pm_tree_adv {
  uint8_t root[PM_NODE_ID_LEN];
  uint32_t epoch;
  uint16_t dist;
  uint8_t flags;
} pm_tree_adv;

/* A neighbour as the tree sees it. */
typedef struct pm_tree_peer {
  uint32_t link_id;
  int has_adv;
  pm_tree_adv adv; /* the last one received */
  /* The root this neighbour left for a higher one, taking it for dead. */
  int has_left;
  uint8_t left[PM_NODE_ID_LEN];
} pm_tree_peer;

typedef struct pm_tree_dead {
  uint8_t root[PM_NODE_ID_LEN];
  uint32_t epoch; /* adverts of this root up to this epoch are stale */
  uint64_t until;
} pm_tree_dead;

typedef struct pm_tree {
  uint8_t self[PM_NODE_ID_LEN];
  uint8_t root[PM_NODE_ID_LEN];
  uint32_t epoch;
  uint16_t dist;
  uint16_t fd;       /* feasibility distance: the least dist in this epoch */
  uint32_t parent;   /* link id; 0 when root or detached */
  uint32_t own;      /* the last epoch this node started as a root */
  uint64_t epoch_at; /* when the root was last heard of (new epoch) */
  uint64_t next_beacon;
  uint32_t beacon_ms, root_timeout_ms, dead_ms;
  pm_tree_dead dead[PM_TREE_DEAD_MAX];
} pm_tree;

/* Starts as the root of a tree of one. */
void pm_tree_init(pm_tree *t, const uint8_t self[PM_NODE_ID_LEN],
                  uint32_t beacon_ms, uint32_t root_timeout_ms, uint64_t now);

int pm_tree_is_root(const pm_tree *t);

/* Records the advert a neighbour sent. */
void pm_tree_heard(pm_tree_peer *p, const pm_tree_adv *a);

/* Chooses the parent again from the neighbours' adverts, after an advert
 * arrived or a neighbour went. Returns 1 when this node's own advert
 * changed and must be sent to every neighbour. */
int pm_tree_update(pm_tree *t, pm_tree_peer *const *peers, size_t count,
                   uint64_t now);

/* Runs the timers: the root's beacon, the root timeout. Returns 1 when the
 * advert changed. */
int pm_tree_tick(pm_tree *t, pm_tree_peer *const *peers, size_t count,
                 uint64_t now);

uint64_t pm_tree_deadline(const pm_tree *t);

/* No path to the root for now: payloads flood (sent on every link, and
 * asked for on every link) until one is found. */
int pm_tree_detached(const pm_tree *t);

/* What to advertise on the link `link_id`. */
void pm_tree_advert(const pm_tree *t, uint32_t link_id, pm_tree_adv *out);

/* Whether payloads travel on this neighbour's link: it is the parent, or
 * it says this node is its parent. */
int pm_tree_is_tree_link(const pm_tree *t, const pm_tree_peer *p);

#endif
