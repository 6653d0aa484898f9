/* The mesh node core (see peermesh/node.h and docs/PROTOCOL.md).
 *
 * A node owns its links and a set of candidate addresses. Every input ends
 * with finish(): announcements queued during the call are written out, and
 * maintain() dials candidates while the node has fewer than its ideal number
 * of neighbours, asks for a resolve when it has none left to try, prunes the
 * least useful link above ideal and now and then explores a random new link
 * (which is how separated groups find each other again). Outputs and events
 * are queued in arrays drained by the application.
 *
 * Flooding is eager push plus lazy repair: payloads travel on the links of
 * a breadth-first spanning tree rooted at the lowest node ID (tree.h); the
 * other links carry IHave announcements, and a node that hears of a message
 * but does not receive it soon asks for it with Graft. */
#include <sodium.h>
#include <stddef.h>
#include <string.h>

#include "addr.h"
#include "authors.h"
#include "dedup.h"
#include "frame.h"
#include "members.h"
#include "missing.h"
#include "msg.h"
#include "msgcache.h"
#include "peermesh/node.h"
#include "tree.h"
#include "wire.h"

#define DEFAULT_MIN 2
#define DEFAULT_IDEAL 4
#define DEFAULT_MAX 8
#define MAX_CANDIDATES 64
#define CANDIDATE_GIVE_UP 5      /* failures before an unpinned address goes */
#define CONNECT_TIMEOUT_MS 10000 /* hello + connect must finish within this */
#define PING_INTERVAL_MS 5000    /* ping a link idle this long */
#define IDLE_TIMEOUT_MS 15000    /* close a link silent this long */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define RESOLVE_FAST_MS 2000  /* below min neighbours */
#define RESOLVE_SLOW_MS 30000 /* between min and ideal */
#define DEDUP_CAPACITY 65536
#define DEDUP_TTL_MS (5 * 60 * 1000)
#define CACHE_BYTES (1024 * 1024) /* payloads kept to answer Graft */
#define CACHE_TTL_MS 60000
#define MISSING_CAPACITY 1024
#define AUTHORS_CAPACITY 4096 /* authors whose replay windows are kept */
#define INVALID_STRIKES 3     /* invalid messages before a link is closed */
#define GRAFT_TIMEOUT_MS 500  /* wait this long for an announced message */
#define UTILITY_MAX 4096      /* link usefulness, PeerChannel's scale */
#define UTILITY_GAIN 128
#define UTILITY_ACCURATE 32 /* samples before a link may be pruned */
#define PRUNE_INTERVAL_MS 1000
#define PRUNE_QUIET_MS 4000    /* a beacon missed: wait before pruning */
#define PRUNE_SILENT_MS 7000   /* two beacons missed: a link brings nothing */
#define BEACON_MS 3000         /* the tree root starts an epoch this often */
#define ROOT_TIMEOUT_MS 10000  /* no new epoch this long: the root is gone */
#define PUSH_ALL_HOPS 1        /* the author pushes on every link, ... */
#define PUSH_ALL_HOPS_BIG 2    /* ... and its neighbours too in a big mesh */
#define PUSH_BIG_MESH 500      /* members: a big mesh */
#define MAX_LINKS (2 * 64 + 8) /* links a node keeps, counting half-open */
#define BUF_KEEP_BYTES 2048    /* an idle link buffer keeps at most this */
#define IHAVE_DELAY_MS 200 /* announcements wait this long to share frames */
#define DIGEST_INTERVAL_MS 30000    /* member digests on a link, +-25 % */
#define DIGEST_FIRST_MS 5000        /* a new link's first digest: 5..15 s in */
#define DIGEST_ANSWER_GAP_MS 5000   /* least time between two answers */
#define SYNC_WINDOW_MS CACHE_TTL_MS /* catch-up asks for this much */
#define LINK_SYNC_WINDOW_MS 2000    /* ... and any later new link, this much */
#define SYNC_MAX_IDS 256            /* and is told of at most this many */
#define EXPLORE_INTERVAL_MS 10000
#define EXPLORE_MEMBERS 100       /* from this many members on, explore less */
#define MEMBER_CAPACITY 16384     /* members kept in the presence table */
#define SUSPECT_TIMEOUT_MS 10000  /* a suspect not refuted this long fails */
#define SUSPECT_SPREAD_MS 1000    /* a $suspect waits up to this long... */
#define SUSPECT_PENDING 16        /* ...and this many wait at once */
#define REFRESH_PER_MEMBER_MS 500 /* mesh-wide: 2 refreshes per second */
#define REFRESH_MIN_MS 30000      /* refresh interval, before jitter */
#define REFRESH_MAX_MS (30 * 60000) /* (PROTOCOL.md §5.5) */

enum link_state {
  LINK_HELLO,      /* waiting for the peer's Hello */
  LINK_CONNECTING, /* Hello exchanged; Connect / Welcome pending */
  LINK_CONNECTED,  /* a neighbour: floods flow */
  LINK_CLOSED,     /* close queued; freed when the close output drains */
};

/* Fields read for every frame come first, so that a link costs a few
 * cache lines rather than one per field; the addresses come last. */
typedef struct link {
  uint32_t id;
  enum link_state state;
  uint32_t utility; /* 0..UTILITY_MAX: how often it brings news */
  uint32_t samples;
  pm_buf in;
  pm_buf out;
  uint64_t last_recv;
  uint64_t last_send;
  int send_queued;
  int have_hello;
  size_t in_flight; /* bytes handed to the app and not reported drained */
  pm_buf announce;  /* IDs to send in IHave, flushed by finish() */
  pm_buf graft;     /* IDs to ask for in Graft, flushed by finish() */
  pm_buf news;      /* Members entries new to this node, flushed by finish() */
  pm_tree_peer tp;  /* the peer's tree advert */
  uint64_t next_digest; /* when to send the peer a digest again */
  uint64_t opened_at;
  int outbound;
  int synced;                  /* a Sync from the peer was answered */
  int digest_answered;         /* a MembersDigest from the peer was */
  uint64_t digest_answered_at; /* ... last answered then */
  int digest_sent;             /* a digest awaits a MembersSubDigest */
  int subdigest_sent;          /* a MembersSubDigest awaits a MembersWant */
  int sync_sent;               /* this node asked the peer for catch-up */
  unsigned strikes;            /* invalid messages received */
  int has_key; /* the transport authenticated the peer as `key` */
  uint8_t key[PM_NODE_ID_LEN];
  uint8_t peer[PM_NODE_ID_LEN];
  char remote_host[PM_ADDR_MAX + 1];
  char dial_addr[PM_ADDR_MAX + 1]; /* outbound only */
  char peer_addr[PM_ADDR_MAX + 1]; /* where the peer accepts links, or "" */
} link;

typedef struct candidate {
  char addr[PM_ADDR_MAX + 1];
  uint8_t node_id[PM_NODE_ID_LEN];
  int has_id;
  int pinned;
  int self;
  int dialing;
  uint32_t failures;
  uint64_t next_try;
} candidate;

typedef struct out_item {
  int kind;
  uint32_t link_id;
  char addr[PM_ADDR_MAX + 1];
} out_item;

typedef struct ev_item {
  uint64_t order; /* events leave in the order they were made */
  pm_event ev;
  char action[PM_ACTION_MAX + 1];
  char addr[PM_ADDR_MAX + 1];
  uint8_t *body; /* owned */
} ev_item;

/* A member event, queued apart: a table's worth of them can come at once,
 * and this is a tenth of an ev_item's size. */
typedef struct mev_item {
  uint64_t order;
  int kind;
  uint8_t id[PM_NODE_ID_LEN];
} mev_item;

struct pm_node {
  const pm_allocator *alloc;
  uint8_t id[PM_NODE_ID_LEN];
  uint16_t listen_port;
  unsigned min_n, ideal_n, max_n;
  uint64_t (*random)(void *ud);
  void *random_ud;
  int left;
  int online;

  link **links;
  uint32_t *link_ids; /* link_ids[i] == links[i]->id, read without a miss */
  size_t nlinks, links_cap;
  uint32_t next_link_id;

  size_t ncands;
  uint64_t next_resolve;
  unsigned dials_in_flight; /* DIAL outputs not yet answered by the app */

  out_item *outq;
  size_t outq_head, outq_len, outq_cap;
  pm_buf scratch; /* data of the last SEND output */

  ev_item *evq;
  size_t evq_head, evq_len, evq_cap;
  mev_item *mevq;
  size_t mevq_head, mevq_len, mevq_cap;
  uint64_t ev_order; /* the next event's place in order */

  pm_signer signer;
  pm_authors *authors;
  pm_dedup *seen;
  pm_msgcache *cache;
  pm_missing *missing;
  pm_buf fwd;         /* one encoded flood, copied to every tree link */
  size_t queue_limit; /* 0: the app does not report drained bytes */
  pm_filter_fn filter;
  void *filter_ud;
  uint64_t next_prune;
  uint64_t next_explore;
  int tree_dirty;       /* a neighbour's advert or a neighbour changed */
  uint64_t announce_at; /* when queued IHave IDs go out; 0: none queued */
  int grafts_queued;    /* a link's graft buffer holds IDs */
  uint64_t seq;
  pm_node_stats stats;
  pm_members *members; /* the other members, as far as this node knows */
  /* Copies kept here so that pm_node_deadline, called after every event,
   * reads no other structure: pm_members_deadline and pm_missing_deadline
   * as of their last change, the missing table's size, the links in
   * CONNECTED, and a lower bound of every link's own deadline. */
  uint64_t members_due, missing_due, links_due;
  uint32_t missing_n;
  unsigned nconnected;
  unsigned live_n;    /* of those, heard from in the last PRUNE_SILENT_MS */
  unsigned push_hops; /* PUSH_ALL_HOPS, or _BIG in a mesh that large */
  uint32_t member_capacity;
  uint32_t incarnation;
  unsigned nsuspects;    /* suspicions waiting (suspects[], at the end) */
  uint64_t suspects_due; /* when the first of them is told */
  uint32_t refresh_iv;   /* the refresh interval last announced */
  uint64_t last_alive;   /* when this node last announced itself */
  uint64_t next_refresh; /* when this node next says "$alive" */
  int was_online;        /* it has been online before */
  pm_tree tree;          /* last: its head is hot, its dead marks are not */

  /* Large and seldom read: kept after the fields every event reads, so
   * that those share a few cache lines. */
  char mesh[PM_MESH_NAME_MAX + 1];
  candidate cands[MAX_CANDIDATES];
  char out_addr[PM_ADDR_MAX + 1];
  ev_item ev_current; /* the event last returned; owns its body */
  uint8_t secret_key[PM_SECRET_KEY_BYTES];
  /* Suspicions this node will announce unless another's arrives first:
   * rare, so after everything an event reads. */
  struct {
    uint8_t id[PM_NODE_ID_LEN];
    uint32_t inc;
    uint64_t at;
  } suspects[SUSPECT_PENDING];
};

/* ---- small helpers ------------------------------------------------------ */

static void *mem_alloc(pm_node *n, size_t size) {
  return n->alloc->realloc(n->alloc->ud, NULL, size);
}

static void mem_free(pm_node *n, void *p) {
  if (p)
    n->alloc->realloc(n->alloc->ud, p, 0);
}

static uint64_t rnd(pm_node *n, uint64_t bound) {
  return bound ? n->random(n->random_ud) % bound : 0;
}

static int mesh_name_ok(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len > PM_MESH_NAME_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

static void copy_str(char *dst, size_t cap, const char *src) {
  size_t n = src ? strlen(src) : 0;
  if (n >= cap)
    n = cap - 1;
  if (n)
    memcpy(dst, src, n);
  dst[n] = '\0';
}

const char *pm_close_reason_name(int reason) {
  switch (reason) {
  case PM_CLOSE_NONE:
    return "none";
  case PM_CLOSE_LEAVING:
    return "leaving";
  case PM_CLOSE_NOT_USEFUL:
    return "not_useful";
  case PM_CLOSE_DUPLICATE_NEIGHBOR:
    return "duplicate_neighbor";
  case PM_CLOSE_DUPLICATE_NODE_ID:
    return "duplicate_node_id";
  case PM_CLOSE_NODE_BUSY:
    return "node_busy";
  case PM_CLOSE_CONNECT_TIMEOUT:
    return "connect_timeout";
  case PM_CLOSE_PROTOCOL_ERROR:
    return "protocol_error";
  case PM_CLOSE_IDLE_TIMEOUT:
    return "idle_timeout";
  case PM_CLOSE_TRANSPORT:
    return "transport";
  case PM_CLOSE_TOO_SLOW:
    return "too_slow";
  default:
    return "unknown";
  }
}

/* ---- queues --------------------------------------------------------------
 * Both queues are rings that double when full. They grow only with work the
 * application has not drained yet, which it does after every call. */

#define RING_KEEP 64 /* a drained event queue keeps at most this many slots */

/* Makes room in a ring for `more` items beyond its `len`: one allocation
 * however many, the items moved in at most two pieces. */
static int ring_reserve(pm_node *n, void **arr, size_t *head, size_t len,
                        size_t *cap, size_t elem, size_t more) {
  if (len + more <= *cap)
    return 0;
  size_t ncap = *cap ? *cap : 16;
  while (ncap < len + more)
    ncap *= 2;
  uint8_t *na = mem_alloc(n, ncap * elem);
  if (!na)
    return PM_ERR_NOMEM;
  size_t first = len < *cap - *head ? len : *cap - *head;
  if (first)
    memcpy(na, (uint8_t *)*arr + *head * elem, first * elem);
  if (len > first)
    memcpy(na + first * elem, *arr, (len - first) * elem);
  mem_free(n, *arr);
  *arr = na;
  *head = 0;
  *cap = ncap;
  return 0;
}

static int ring_grow(pm_node *n, void **arr, size_t *head, size_t len,
                     size_t *cap, size_t elem) {
  return ring_reserve(n, arr, head, len, cap, elem, 1);
}

static out_item *push_out(pm_node *n, int kind, uint32_t link_id) {
  if (ring_grow(n, (void **)&n->outq, &n->outq_head, n->outq_len, &n->outq_cap,
                sizeof(out_item)))
    return NULL;
  out_item *o = &n->outq[(n->outq_head + n->outq_len++) % n->outq_cap];
  o->addr[0] = '\0';
  o->kind = kind;
  o->link_id = link_id;
  return o;
}

static ev_item *push_event(pm_node *n, int kind) {
  if (ring_grow(n, (void **)&n->evq, &n->evq_head, n->evq_len, &n->evq_cap,
                sizeof(ev_item)))
    return NULL;
  ev_item *e = &n->evq[(n->evq_head + n->evq_len++) % n->evq_cap];
  /* Not the whole item: its strings are as long as they are written. */
  memset(&e->ev, 0, sizeof e->ev);
  e->action[0] = '\0';
  e->addr[0] = '\0';
  e->body = NULL;
  e->order = n->ev_order++;
  e->ev.kind = kind;
  return e;
}

static void note_members(pm_node *n) {
  n->members_due = pm_members_deadline(n->members);
  n->push_hops = pm_members_live(n->members) + 1 >= PUSH_BIG_MESH
                     ? PUSH_ALL_HOPS_BIG
                     : PUSH_ALL_HOPS;
}

static void note_missing(pm_node *n) {
  n->missing_due = pm_missing_deadline(n->missing);
  n->missing_n = pm_missing_count(n->missing);
}

static void note_link_due(pm_node *n, uint64_t due) {
  if (due < n->links_due)
    n->links_due = due;
}

/* ---- links --------------------------------------------------------------- */

static link *find_link(pm_node *n, uint32_t id) {
  for (size_t i = 0; i < n->nlinks; i++)
    if (n->link_ids[i] == id)
      return n->links[i];
  return NULL;
}

static void free_link(pm_node *n, link *l) {
  for (size_t i = 0; i < n->nlinks; i++) {
    if (n->links[i] == l) {
      n->links[i] = n->links[--n->nlinks];
      n->link_ids[i] = n->link_ids[n->nlinks];
      break;
    }
  }
  pm_buf_free(&l->in);
  pm_buf_free(&l->out);
  pm_buf_free(&l->announce);
  pm_buf_free(&l->graft);
  pm_buf_free(&l->news);
  mem_free(n, l);
}

/* Marks that a link has bytes to send. Failure to queue is fatal for the
 * link only when memory is exhausted, which the caller sees via out.err. */
static void close_link(pm_node *n, link *l, uint64_t now, int reason,
                       uint8_t send_frame, const pm_msg_referrals *refs);

static void want_send(pm_node *n, link *l, uint64_t now) {
  l->last_send = now;
  /* Payloads are held back at the queue limit (forward()); anything else
   * piling up to twice that means the peer has stopped reading. */
  if (n->queue_limit && l->state != LINK_CLOSED &&
      l->in_flight + l->out.len > 2 * n->queue_limit) {
    l->out.len = 0;
    close_link(n, l, now, PM_CLOSE_TOO_SLOW, 0, NULL);
    return;
  }
  if (l->send_queued || l->out.len == 0)
    return;
  if (push_out(n, PM_OUT_SEND, l->id))
    l->send_queued = 1;
}

static void update_online(pm_node *n) {
  int online = n->nconnected > 0;
  if (online == n->online)
    return;
  n->online = online;
  push_event(n, online ? PM_EV_ONLINE : PM_EV_OFFLINE);
}

static candidate *find_candidate(pm_node *n, const char *addr) {
  for (size_t i = 0; i < n->ncands; i++)
    if (strcmp(n->cands[i].addr, addr) == 0)
      return &n->cands[i];
  return NULL;
}

static void drop_candidate(pm_node *n, candidate *c) {
  size_t i = (size_t)(c - n->cands);
  n->cands[i] = n->cands[--n->ncands];
}

static uint64_t backoff(pm_node *n, uint32_t failures) {
  uint64_t d = BACKOFF_MIN_MS;
  for (uint32_t i = 1; i < failures && d < BACKOFF_MAX_MS; i++)
    d *= 2;
  if (d > BACKOFF_MAX_MS)
    d = BACKOFF_MAX_MS;
  return d + rnd(n, d / 2 + 1); /* jitter keeps nodes from dialling in step */
}

/* A dial to `addr` ended; `ok` when it became a neighbour. */
static void candidate_done(pm_node *n, uint64_t now, const char *addr, int ok) {
  candidate *c = find_candidate(n, addr);
  if (!c)
    return;
  c->dialing = 0;
  if (ok) {
    c->failures = 0;
    c->next_try = now + backoff(n, 1);
    return;
  }
  c->failures++;
  if (!c->pinned && c->failures >= CANDIDATE_GIVE_UP) {
    drop_candidate(n, c);
    return;
  }
  c->next_try = now + backoff(n, c->failures);
}

/* Who to ask for messages a closing link announced and never sent: the
 * parent, which will have them unless the tree is broken, else any other
 * neighbour; 0 when none is left. */
static uint32_t fallback_source(const pm_node *n, const link *closing) {
  uint32_t any = 0;
  for (size_t i = 0; i < n->nlinks; i++) {
    const link *o = n->links[i];
    if (o == closing || o->state != LINK_CONNECTED)
      continue;
    if (o->id == n->tree.parent)
      return o->id;
    if (!any)
      any = o->id;
  }
  return any;
}

static void suspect_member(pm_node *n, uint64_t now,
                           const uint8_t id[PM_NODE_ID_LEN]);

static void close_link(pm_node *n, link *l, uint64_t now, int reason,
                       uint8_t send_frame, const pm_msg_referrals *refs) {
  if (l->state == LINK_CLOSED)
    return;
  if (send_frame) {
    pm_msg_referrals none;
    if (!refs) {
      memset(&none, 0, sizeof none);
      refs = &none;
    }
    pm_msg_referrals r = *refs;
    r.reason = (uint8_t)reason;
    if (pm_msg_write_referrals(&l->out, send_frame, &r) == 0)
      want_send(n, l, now);
  }
  int was_connected = l->state == LINK_CONNECTED;
  l->state = LINK_CLOSED;
  if (was_connected) {
    n->tree_dirty = 1;
    n->nconnected--;
  }
  pm_missing_forget_link(n->missing, l->id, fallback_source(n, l));
  note_missing(n);
  if (l->outbound)
    candidate_done(n, now, l->dial_addr, was_connected);
  if (was_connected) {
    ev_item *e = push_event(n, PM_EV_NEIGHBOR_DOWN);
    if (e) {
      memcpy(e->ev.peer, l->peer, PM_NODE_ID_LEN);
      copy_str(e->addr, sizeof e->addr, l->peer_addr);
      e->ev.reason = reason;
      e->ev.link_id = l->id;
    }
  }
  push_out(n, PM_OUT_CLOSE, l->id);
  update_online(n);
  /* A neighbour lost without a goodbye may have crashed. Only a node that
   * still has other neighbours says so: one that lost its last link cannot
   * tell whether the peer or it was cut off. */
  if (was_connected && !n->left && n->online &&
      (reason == PM_CLOSE_TRANSPORT || reason == PM_CLOSE_IDLE_TIMEOUT))
    suspect_member(n, now, l->peer);
}

/* Closes a link for a protocol violation and reports it. */
static int link_error(pm_node *n, link *l, uint64_t now, int err) {
  n->stats.invalid++;
  ev_item *e = push_event(n, PM_EV_LINK_ERROR);
  if (e) {
    e->ev.error = err;
    e->ev.reason = PM_CLOSE_PROTOCOL_ERROR;
    e->ev.link_id = l->id;
    memcpy(e->ev.peer, l->peer, PM_NODE_ID_LEN);
    copy_str(e->addr, sizeof e->addr,
             l->peer_addr[0]
                 ? l->peer_addr
                 : (l->dial_addr[0] ? l->dial_addr : l->remote_host));
  }
  close_link(n, l, now, PM_CLOSE_PROTOCOL_ERROR, 0, NULL);
  return err;
}

/* Up to PM_MAX_REFERRALS connected neighbours other than `except`, chosen
 * at random (PeerChannel sent its oldest, which skews joiners toward them). */
static void pick_referrals(pm_node *n, const link *except,
                           pm_msg_referrals *out) {
  memset(out, 0, sizeof *out);
  link *pool[64];
  size_t np = 0;
  for (size_t i = 0; i < n->nlinks && np < 64; i++) {
    link *l = n->links[i];
    if (l != except && l->state == LINK_CONNECTED && l->peer_addr[0])
      pool[np++] = l;
  }
  while (np && out->count < PM_MAX_REFERRALS) {
    size_t k = (size_t)rnd(n, np);
    memcpy(out->items[out->count].node_id, pool[k]->peer, PM_NODE_ID_LEN);
    copy_str(out->items[out->count].addr, PM_ADDR_MAX + 1, pool[k]->peer_addr);
    out->count++;
    pool[k] = pool[--np];
  }
}

static void learn_referrals(pm_node *n, uint64_t now,
                            const pm_msg_referrals *r) {
  /* A full candidate table just means this referral is not kept. */
  for (unsigned i = 0; i < r->count; i++)
    if (pm_node_add_peer(n, now, r->items[i].addr, r->items[i].node_id, 0))
      continue;
}

static void announce(pm_node *n, link *l, const uint8_t *ids, size_t count,
                     uint64_t now);

/* Queues for IHave on `l` the newest cached messages of the last `window`
 * ms, at most SYNC_MAX_IDS. */
static void announce_recent(pm_node *n, link *l, uint32_t window,
                            uint64_t now) {
  uint8_t ids[SYNC_MAX_IDS * PM_MSG_ID_LEN];
  uint64_t since = now > window ? now - window : 0;
  size_t count = pm_msgcache_recent(n->cache, since, ids, SYNC_MAX_IDS);
  if (count)
    announce(n, l, ids, count, now);
}

/* Coming online, pushes this node's own recent messages to its first
 * neighbour: written while it had none, no one else has them, and waiting
 * for that neighbour to ask would lose them if this node left meanwhile. */
static void push_own_recent(pm_node *n, link *l, uint64_t now) {
  uint8_t ids[SYNC_MAX_IDS * PM_MSG_ID_LEN];
  uint64_t since = now > SYNC_WINDOW_MS ? now - SYNC_WINDOW_MS : 0;
  size_t count = pm_msgcache_recent(n->cache, since, ids, SYNC_MAX_IDS);
  int pushed = 0;
  for (size_t i = count; i-- > 0;) { /* oldest first */
    size_t len;
    const uint8_t *frame =
        pm_msgcache_get(n->cache, ids + i * PM_MSG_ID_LEN, &len, now);
    pm_frame f;
    size_t used;
    pm_msg_flood m;
    if (frame && pm_frame_parse(frame, len, &f, &used) == 1 &&
        pm_msg_read_flood(&f, &m) == 0 &&
        memcmp(m.origin, n->id, PM_NODE_ID_LEN) == 0) {
      pm_buf_put(&l->out, frame, len);
      pushed = 1;
    }
  }
  if (pushed)
    want_send(n, l, now);
}

/* Tells one neighbour where this node stands in the tree. */
static void send_tree(pm_node *n, link *l, uint64_t now) {
  pm_tree_adv a;
  pm_tree_advert(&n->tree, l->id, &a);
  if (pm_msg_write_tree(&l->out, &a) == 0)
    want_send(n, l, now);
}

/* The neighbours, as pm_tree wants them. */
static size_t tree_peers(pm_node *n, pm_tree_peer **peers) {
  size_t count = 0;
  for (size_t i = 0; i < n->nlinks && count < MAX_LINKS; i++)
    if (n->links[i]->state == LINK_CONNECTED)
      peers[count++] = &n->links[i]->tp;
  return count;
}

/* Runs the tree's timers (`tick`) or re-chooses the parent, and tells every
 * neighbour when this node's advert changed. */
static void tree_refresh(pm_node *n, uint64_t now, int tick) {
  pm_tree_peer *peers[MAX_LINKS];
  size_t count = tree_peers(n, peers);
  n->tree_dirty = 0;
  int changed = tick ? pm_tree_tick(&n->tree, peers, count, now)
                     : pm_tree_update(&n->tree, peers, count, now);
  if (!changed)
    return;
  for (size_t i = 0; i < n->nlinks; i++)
    if (n->links[i]->state == LINK_CONNECTED)
      send_tree(n, n->links[i], now);
}

static void send_alive(pm_node *n, uint64_t now);
static void first_alive(pm_node *n, link *l, uint64_t now);
static void send_digest(pm_node *n, link *l, uint64_t now);
static void news_self(pm_node *n, link *l, uint64_t now);

static void become_connected(pm_node *n, link *l, uint64_t now) {
  l->state = LINK_CONNECTED;
  n->nconnected++;
  send_tree(n, l, now);
  /* Coming online (joining, or back after losing every neighbour): ask
   * for what the mesh said meanwhile, and tell of what this node holds —
   * what it wrote while alone included, which nobody has yet. */
  if (!n->online) {
    if (pm_msg_write_sync(&l->out, SYNC_WINDOW_MS) == 0) {
      l->sync_sent = 1;
      want_send(n, l, now);
    }
    push_own_recent(n, l, now);
    announce_recent(n, l, SYNC_WINDOW_MS, now);
    if (n->was_online)
      send_alive(n, now); /* back: "I am here", to those that gave up */
    else
      first_alive(n, l, now); /* joining: the tables spread it */
    n->was_online = 1;
    send_digest(n, l, now); /* the neighbour answers with its table */
  } else {
    /* A new neighbour while online: the tree may have just moved this node
     * to another parent, and a message still on its way along the old
     * branch is lost if that link closes. The new neighbour announces
     * what it got in the last moments; this node grafts what it lacks. */
    if (pm_msg_write_sync(&l->out, LINK_SYNC_WINDOW_MS) == 0) {
      l->sync_sent = 1;
      want_send(n, l, now);
    }
    /* Every new neighbour hears of this node itself: the first one may
     * have had nobody to pass the news on to (two nodes starting at once
     * whose first links are to each other), and the rest of the mesh
     * would learn of this node only from digests, seconds later. */
    news_self(n, l, now);
    /* Tables are compared a little later: right after a link comes up
     * they often differ only by news still on its way (many nodes
     * starting at once), and the answer would repeat it. */
    l->next_digest = now + DIGEST_FIRST_MS + rnd(n, DIGEST_FIRST_MS * 2 + 1);
  }
  note_link_due(n, l->next_digest);
  note_link_due(n, l->last_send + PING_INTERVAL_MS);
  ev_item *e = push_event(n, PM_EV_NEIGHBOR_UP);
  if (e) {
    memcpy(e->ev.peer, l->peer, PM_NODE_ID_LEN);
    copy_str(e->addr, sizeof e->addr, l->peer_addr);
    e->ev.link_id = l->id;
  }
  /* Remember the peer's id for its address so it is not dialled twice. */
  if (l->outbound) {
    candidate *c = find_candidate(n, l->dial_addr);
    if (c) {
      memcpy(c->node_id, l->peer, PM_NODE_ID_LEN);
      c->has_id = 1;
    }
  }
  update_online(n);
}

/* The frame that closes a link politely: Refuse from a responder that has
 * not welcomed the peer yet, Disconnect once connected or from the
 * initiator, nothing before the Hellos. */
static uint8_t goodbye_frame(const link *l) {
  if (l->state == LINK_CONNECTED ||
      (l->state == LINK_CONNECTING && l->outbound))
    return PM_FRAME_DISCONNECT;
  if (l->state == LINK_CONNECTING)
    return PM_FRAME_REFUSE;
  return 0;
}

/* ---- frame handlers --------------------------------------------------------
 */

static int on_hello(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  pm_msg_hello h;
  int rc = pm_msg_read_hello(f, &h);
  if (rc)
    return link_error(n, l, now, rc);
  if (l->have_hello)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  if (h.mesh_len != strlen(n->mesh) || memcmp(h.mesh, n->mesh, h.mesh_len))
    return link_error(n, l, now, PM_ERR_WRONG_MESH);
  if (l->has_key && memcmp(h.node_id, l->key, PM_NODE_ID_LEN) != 0)
    return link_error(n, l, now, PM_ERR_AUTH);
  memcpy(l->peer, h.node_id, PM_NODE_ID_LEN);
  l->have_hello = 1;
  if (memcmp(h.node_id, n->id, PM_NODE_ID_LEN) == 0) {
    if (l->outbound) {
      candidate *c = find_candidate(n, l->dial_addr);
      if (c)
        c->self = 1;
    }
    return link_error(n, l, now, PM_ERR_SELF);
  }
  if (h.listen_port && l->remote_host[0] &&
      pm_addr_format(l->peer_addr, l->remote_host, h.listen_port) != 0)
    l->peer_addr[0] = '\0';

  /* Two links to one node: both ends close the same one. If one side dialled
   * both, the newer goes; otherwise the link dialled by the larger ID goes. */
  for (size_t i = 0; i < n->nlinks; i++) {
    link *o = n->links[i];
    if (o == l || o->state == LINK_CLOSED || !o->have_hello ||
        memcmp(o->peer, l->peer, PM_NODE_ID_LEN) != 0)
      continue;
    link *loser = l;
    if (o->outbound != l->outbound) {
      const uint8_t *l_dialer = l->outbound ? n->id : l->peer;
      const uint8_t *other = l->outbound ? l->peer : n->id;
      loser = memcmp(l_dialer, other, PM_NODE_ID_LEN) > 0 ? l : o;
    }
    close_link(n, loser, now, PM_CLOSE_DUPLICATE_NEIGHBOR, goodbye_frame(loser),
               NULL);
    if (loser == l)
      return 0;
    break;
  }

  l->state = LINK_CONNECTING;
  if (l->outbound) {
    if (n->nconnected >= n->max_n) {
      close_link(n, l, now, PM_CLOSE_NODE_BUSY, 0, NULL);
      return 0;
    }
    if (pm_msg_write_empty(&l->out, PM_FRAME_CONNECT) == 0)
      want_send(n, l, now);
  }
  return 0;
}

static int on_connect(pm_node *n, link *l, uint64_t now) {
  if (l->outbound || l->state != LINK_CONNECTING)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  pm_msg_referrals refs;
  pick_referrals(n, l, &refs);
  if (n->nconnected >= n->max_n) {
    close_link(n, l, now, PM_CLOSE_NODE_BUSY, PM_FRAME_REFUSE, &refs);
    return 0;
  }
  if (pm_msg_write_referrals(&l->out, PM_FRAME_WELCOME, &refs) != 0)
    return link_error(n, l, now, PM_ERR_NOMEM);
  want_send(n, l, now);
  become_connected(n, l, now);
  return 0;
}

static int on_referrals(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  pm_msg_referrals r;
  int rc = pm_msg_read_referrals(f, &r);
  if (rc)
    return link_error(n, l, now, rc);
  if (f->type == PM_FRAME_WELCOME) {
    if (!l->outbound || l->state != LINK_CONNECTING)
      return link_error(n, l, now, PM_ERR_UNEXPECTED);
    learn_referrals(n, now, &r);
    /* Inbound links may have filled the node while this Welcome travelled. */
    if (n->nconnected >= n->max_n) {
      close_link(n, l, now, PM_CLOSE_NODE_BUSY, PM_FRAME_DISCONNECT, NULL);
      return 0;
    }
    become_connected(n, l, now);
    return 0;
  }
  if (f->type == PM_FRAME_REFUSE &&
      (!l->outbound || l->state != LINK_CONNECTING))
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  learn_referrals(n, now, &r);
  int reason = r.reason;
  if (reason == PM_CLOSE_NONE || reason > PM_CLOSE_IDLE_TIMEOUT)
    reason = PM_CLOSE_PROTOCOL_ERROR;
  close_link(n, l, now, reason, 0, NULL);
  return 0;
}

/* Usefulness, as PeerChannel scored it: every report decays the score by
 * 1/32, and news adds UTILITY_GAIN. */
static void rate_link(link *l, int news) {
  l->utility -= l->utility / 32;
  if (news)
    l->utility += UTILITY_GAIN;
  if (l->utility > UTILITY_MAX)
    l->utility = UTILITY_MAX;
  if (l->samples < UINT32_MAX)
    l->samples++;
}

/* Queues IDs for an IHave on `l`. Announcements are not urgent (the
 * payload is on its way along the tree): they wait IHAVE_DELAY_MS, so that
 * those of a busy mesh share frames. */
static void announce(pm_node *n, link *l, const uint8_t *ids, size_t count,
                     uint64_t now) {
  pm_buf_put(&l->announce, ids, count * PM_MSG_ID_LEN);
  if (!n->announce_at)
    n->announce_at = now + IHAVE_DELAY_MS;
}

/* Sends a message on: the payload on tree links, an announcement on the
 * others; keeps a copy to answer Graft. The author pushes its own messages
 * on every link (PUSH_ALL_HOPS): a neighbour off the tree would otherwise
 * have to ask for them, and cannot when the author leaves right after
 * sending (a chat's Leave). That costs a few copies per message, whatever
 * the mesh's size. In a mesh of PUSH_BIG_MESH members or more, the
 * author's neighbours do the same: the message enters the tree at a dozen
 * places near its author rather than one, which takes about a hop off the
 * longest paths (the tree's paths run through its root) for a few per cent
 * more copies; in a smaller mesh those copies would be a large share. */
static int is_presence(const pm_msg_flood *m);

/* Sends `m` on: pushed on tree links, announced on the others. `f`, when
 * the message came in a frame, is that frame: it is copied with the new
 * hop count rather than encoded again. */
static void forward(pm_node *n, uint64_t now, const link *from,
                    const pm_msg_flood *m, const pm_frame *f) {
  pm_buf_reset(&n->fwd);
  if ((f ? pm_msg_relay_flood(&n->fwd, f, m->hops)
         : pm_msg_write_flood(&n->fwd, m)) != 0)
    return;
  pm_msgcache_put(n->cache, n->fwd.data, n->fwd.len, is_presence(m), now);
  for (size_t i = 0; i < n->nlinks; i++) {
    link *l = n->links[i];
    if (l == from || l->state != LINK_CONNECTED)
      continue;
    if (n->queue_limit &&
        l->in_flight + l->out.len + n->fwd.len > n->queue_limit) {
      /* The neighbour does not keep up. Drop it unless it is the last one;
       * then drop this copy for it instead: memory stays bounded either
       * way, and it can still ask for what it missed. */
      if (n->nconnected > 1)
        close_link(n, l, now, PM_CLOSE_TOO_SLOW, 0, NULL);
      else
        n->stats.dropped++;
      continue;
    }
    if (m->hops < n->push_hops || pm_tree_detached(&n->tree) ||
        pm_tree_is_tree_link(&n->tree, &l->tp)) {
      pm_buf_put(&l->out, n->fwd.data, n->fwd.len);
      want_send(n, l, now);
    } else {
      announce(n, l, m->id, 1, now);
    }
  }
}

static void deliver(pm_node *n, const pm_msg_flood *m, int own) {
  ev_item *e = push_event(n, PM_EV_MESSAGE);
  if (!e)
    return;
  if (m->body_len) {
    e->body = mem_alloc(n, m->body_len);
    if (!e->body) {
      n->evq_len--; /* drop the half-built event */
      return;
    }
    memcpy(e->body, m->body, m->body_len);
  }
  memcpy(e->ev.id, m->id, PM_MSG_ID_LEN);
  memcpy(e->ev.origin, m->origin, PM_NODE_ID_LEN);
  e->ev.seq = m->seq;
  e->ev.time_ms = m->time_ms;
  e->ev.hops = own ? 0 : (uint32_t)m->hops + 1;
  e->ev.own = own;
  memcpy(e->action, m->action, m->action_len);
  e->action[m->action_len] = '\0';
  e->ev.body_len = m->body_len;
  n->stats.delivered++;
}

/* Asks the application's propagation filter, if any, what to do with a
 * message: deliver it here, send it on, both or neither. */
static int propagation(pm_node *n, const pm_msg_flood *m, int origination) {
  if (!n->filter)
    return PM_PROPAGATE_BOTH;
  pm_event ev;
  char action[PM_ACTION_MAX + 1];
  memset(&ev, 0, sizeof ev);
  ev.kind = PM_EV_MESSAGE;
  memcpy(ev.id, m->id, PM_MSG_ID_LEN);
  memcpy(ev.origin, m->origin, PM_NODE_ID_LEN);
  ev.seq = m->seq;
  ev.time_ms = m->time_ms;
  ev.own = origination == PM_ORIGIN_LOCAL;
  ev.hops = ev.own ? 0 : (uint32_t)m->hops + 1;
  memcpy(action, m->action, m->action_len);
  action[m->action_len] = '\0';
  ev.action = action;
  ev.body = m->body;
  ev.body_len = m->body_len;
  ev.addr = "";
  return n->filter(n->filter_ud, &ev, origination) & PM_PROPAGATE_BOTH;
}

/* A message that is not what its author wrote (altered, forged, or sent
 * beyond its hop limit) is dropped and counted; a neighbour that keeps
 * sending them is disconnected. */
static int invalid_message(pm_node *n, link *l, uint64_t now, int err) {
  if (++l->strikes >= INVALID_STRIKES)
    return link_error(n, l, now, err); /* counts it */
  n->stats.invalid++;
  return 0;
}

/* ---- member presence (PROTOCOL.md §5.5) ------------------------------------
 * Presence messages are Floods with reserved actions beginning with '$',
 * signed and relayed like any other but handled here: never delivered,
 * never shown to the propagation filter, never hop-limited. */

static void member_event(pm_node *n, int kind,
                         const uint8_t id[PM_NODE_ID_LEN]) {
  if (ring_grow(n, (void **)&n->mevq, &n->mevq_head, n->mevq_len, &n->mevq_cap,
                sizeof(mev_item)))
    return;
  mev_item *e = &n->mevq[(n->mevq_head + n->mevq_len++) % n->mevq_cap];
  e->order = n->ev_order++;
  e->kind = kind;
  memcpy(e->id, id, PM_NODE_ID_LEN);
}

static void member_failed(void *ud, const uint8_t id[PM_NODE_ID_LEN]) {
  member_event(ud, PM_EV_MEMBER_FAILED, id);
}

/* The refresh interval: 500 ms per live member known, within 30 s..30 min,
 * +-25 % jitter. Every member refreshing this often makes about two
 * refreshes per second mesh-wide, whatever the mesh's size (up to 3,600
 * members; beyond, N / 1,800 per second). */
static uint32_t mesh_interval(const pm_node *n) {
  uint64_t t = (uint64_t)pm_members_live(n->members) * REFRESH_PER_MEMBER_MS;
  if (t < REFRESH_MIN_MS)
    t = REFRESH_MIN_MS;
  if (t > REFRESH_MAX_MS)
    t = REFRESH_MAX_MS;
  return (uint32_t)t;
}

static uint32_t refresh_interval(pm_node *n) {
  uint32_t t = mesh_interval(n);
  return (uint32_t)(t - t / 4 + rnd(n, t / 2 + 1));
}

/* Floods a presence message of this node's. Its time is 0: the core has no
 * wall clock, and presence messages are never shown to the application. */
static void send_presence(pm_node *n, uint64_t now, const char *action,
                          const uint8_t *body, size_t len) {
  pm_msg_flood m;
  memset(&m, 0, sizeof m);
  memcpy(m.origin, n->id, PM_NODE_ID_LEN);
  m.seq = ++n->seq;
  m.action = action;
  m.action_len = strlen(action);
  m.body = body;
  m.body_len = len;
  pm_msg_flood_id(&m, m.id);
  n->signer.sign(n->signer.ud, n->id, m.id, m.sig);
  pm_dedup_insert(n->seen, m.id, now);
  forward(n, now, NULL, &m, NULL);
}

/* This node announces itself now; the next refresh is one interval on. */
static void start_refresh(pm_node *n, uint64_t now) {
  n->refresh_iv = refresh_interval(n);
  n->last_alive = now;
  n->next_refresh = now + n->refresh_iv;
}

/* "$alive": incarnation, and the interval until this node's next refresh,
 * which receivers allow three times over before they give up on it. */
static void send_alive(pm_node *n, uint64_t now) {
  start_refresh(n, now);
  uint8_t body[8];
  pm_store_u32(body, n->incarnation);
  pm_store_u32(body + 4, n->refresh_iv);
  send_presence(n, now, "$alive", body, sizeof body);
}

/* Joining: no flood. The first neighbour's table takes this node's entry
 * (it comes first in this node's Members), and every table that learns of
 * it passes it on, in batches (PROTOCOL.md §5.5). */
static void encode_member(uint8_t e[PM_MEMBERS_ENTRY_LEN],
                          const uint8_t id[PM_NODE_ID_LEN], uint32_t inc,
                          uint32_t iv);

/* This node's own entry, as news to a neighbour whose link just came up
 * (PROTOCOL.md §5.5, "Joining"). */
static void news_self(pm_node *n, link *l, uint64_t now) {
  uint8_t e[PM_MEMBERS_ENTRY_LEN];
  encode_member(e, n->id, n->incarnation, n->refresh_iv);
  pm_buf_put(&l->news, e, sizeof e);
  if (!n->announce_at)
    n->announce_at = now + IHAVE_DELAY_MS;
}

static void first_alive(pm_node *n, link *l, uint64_t now) {
  start_refresh(n, now);
  news_self(n, l, now);
}

/* The refresh is due. A node that has learned since that the mesh is
 * larger waits for the longer interval members of such a mesh use (which
 * is what the others wait for, pm_members_set_floor); it does not say
 * "$alive" twice as often as the mesh expects. */
static void refresh_due(pm_node *n, uint64_t now) {
  uint32_t iv = refresh_interval(n);
  if (iv > n->refresh_iv && n->last_alive + iv > now) {
    n->refresh_iv = iv;
    n->next_refresh = n->last_alive + iv;
    return;
  }
  send_alive(n, now);
}

/* "$suspect": the target and the incarnation suspected. */
static void send_suspect(pm_node *n, uint64_t now,
                         const uint8_t id[PM_NODE_ID_LEN], uint32_t inc) {
  uint8_t body[PM_NODE_ID_LEN + 4];
  memcpy(body, id, PM_NODE_ID_LEN);
  pm_store_u32(body + PM_NODE_ID_LEN, inc);
  send_presence(n, now, "$suspect", body, sizeof body);
}

static void note_suspects(pm_node *n) {
  n->suspects_due = PM_DEADLINE_NONE;
  for (unsigned k = 0; k < n->nsuspects; k++)
    if (n->suspects[k].at < n->suspects_due)
      n->suspects_due = n->suspects[k].at;
}

/* A neighbour's link closed without a goodbye: suspect it, and tell the
 * mesh; it refutes if it is alive. Not when it is suspect or gone already.
 * A crash resets every link of the node at once, so all its neighbours
 * would tell the mesh the same thing: each waits a random moment first,
 * and does not once another's word has reached it (withdraw_suspect). */
static void suspect_member(pm_node *n, uint64_t now,
                           const uint8_t id[PM_NODE_ID_LEN]) {
  int state;
  uint32_t inc;
  if (!pm_members_get(n->members, id, &state, &inc) || state != PM_MEMBER_ALIVE)
    return;
  pm_members_suspect(n->members, id, inc, now);
  note_members(n);
  if (n->nsuspects == SUSPECT_PENDING) {
    send_suspect(n, now, id, inc);
    return;
  }
  memcpy(n->suspects[n->nsuspects].id, id, PM_NODE_ID_LEN);
  n->suspects[n->nsuspects].inc = inc;
  n->suspects[n->nsuspects].at = now + rnd(n, SUSPECT_SPREAD_MS + 1);
  n->nsuspects++;
  note_suspects(n);
}

/* Someone else's $suspect(id, inc), or the member's refutation (an $alive
 * of a later incarnation than `inc`): a waiting suspicion of it at inc or
 * below has nothing left to say. */
static void withdraw_suspect(pm_node *n, const uint8_t id[PM_NODE_ID_LEN],
                             uint32_t inc) {
  for (unsigned k = 0; k < n->nsuspects; k++)
    if (n->suspects[k].inc <= inc &&
        memcmp(n->suspects[k].id, id, PM_NODE_ID_LEN) == 0) {
      n->suspects[k] = n->suspects[--n->nsuspects];
      note_suspects(n);
      return;
    }
}

/* Announces the suspicions whose moment has come. */
static void send_suspects_due(pm_node *n, uint64_t now) {
  for (unsigned k = 0; k < n->nsuspects;) {
    if (n->suspects[k].at > now) {
      k++;
      continue;
    }
    int state;
    uint32_t inc;
    if (pm_members_get(n->members, n->suspects[k].id, &state, &inc) &&
        state == PM_MEMBER_SUSPECT && inc == n->suspects[k].inc)
      send_suspect(n, now, n->suspects[k].id, inc); /* else news came */
    n->suspects[k] = n->suspects[--n->nsuspects];
  }
  note_suspects(n);
}

static int is_presence(const pm_msg_flood *m) {
  return m->action_len > 0 && m->action[0] == '$';
}

static int action_is(const pm_msg_flood *m, const char *a) {
  return m->action_len == strlen(a) && memcmp(m->action, a, m->action_len) == 0;
}

/* A presence message is well formed: a known action with a body of its
 * size and no hop limit. */
static int presence_ok(const pm_msg_flood *m) {
  if (m->has_hop_limit)
    return 0;
  if (action_is(m, "$alive"))
    return m->body_len == 8;
  if (action_is(m, "$leave"))
    return m->body_len == 4;
  if (action_is(m, "$suspect"))
    return m->body_len == PM_NODE_ID_LEN + 4;
  return 0;
}

/* An announced interval, within what an honest member announces. */
static uint32_t sane_interval(uint32_t iv) {
  uint32_t lo = REFRESH_MIN_MS - REFRESH_MIN_MS / 4;
  uint32_t hi = REFRESH_MAX_MS + REFRESH_MAX_MS / 4;
  return iv < lo ? lo : iv > hi ? hi : iv;
}

static void member_alive(pm_node *n, const uint8_t id[PM_NODE_ID_LEN],
                         uint32_t inc, uint32_t iv, uint64_t now) {
  if (memcmp(id, n->id, PM_NODE_ID_LEN) == 0)
    return; /* this node is never in its own table */
  if (pm_members_alive(n->members, id, inc, sane_interval(iv), now) ==
      PM_MEMBERS_JOINED)
    member_event(n, PM_EV_MEMBER_JOINED, id);
  note_members(n);
}

/* Applies a presence message accepted from the mesh (presence_ok). */
static void on_presence(pm_node *n, uint64_t now, const pm_msg_flood *m) {
  uint32_t inc = pm_load_u32(m->body + m->body_len - 4);
  if (action_is(m, "$alive")) {
    /* Not a refresh of the suspected incarnation: that may be old news,
     * sent before the member crashed. */
    if (n->nsuspects && pm_load_u32(m->body) > 0)
      withdraw_suspect(n, m->origin, pm_load_u32(m->body) - 1);
    member_alive(n, m->origin, pm_load_u32(m->body), pm_load_u32(m->body + 4),
                 now);
  } else if (action_is(m, "$leave")) {
    if (pm_members_leave(n->members, m->origin, inc, now) == PM_MEMBERS_LEFT)
      member_event(n, PM_EV_MEMBER_LEFT, m->origin);
    note_members(n);
  } else if (memcmp(m->body, n->id, PM_NODE_ID_LEN) == 0) {
    /* Suspected, yet here: refute with a new incarnation. */
    if (inc >= n->incarnation && !n->left) {
      n->incarnation = inc + 1;
      send_alive(n, now);
    }
  } else {
    if (n->nsuspects)
      withdraw_suspect(n, m->body, inc);
    pm_members_suspect(n->members, m->body, inc, now);
    note_members(n);
  }
}

/* Writes Members frames of `count` encoded entries to `l`. */
static void write_members(pm_node *n, link *l, const uint8_t *entries,
                          size_t count, uint64_t now) {
  while (count) {
    size_t k = count < PM_MEMBERS_PER_FRAME ? count : PM_MEMBERS_PER_FRAME;
    size_t start = pm_frame_begin(&l->out, PM_FRAME_MEMBERS);
    pm_buf_u16(&l->out, (uint16_t)k);
    pm_buf_put(&l->out, entries, k * PM_MEMBERS_ENTRY_LEN);
    if (l->out.err || pm_frame_end(&l->out, start))
      break;
    entries += k * PM_MEMBERS_ENTRY_LEN;
    count -= k;
  }
  want_send(n, l, now);
}

static void encode_member(uint8_t e[PM_MEMBERS_ENTRY_LEN],
                          const uint8_t id[PM_NODE_ID_LEN], uint32_t inc,
                          uint32_t iv) {
  memcpy(e, id, PM_NODE_ID_LEN);
  pm_store_u32(e + PM_NODE_ID_LEN, inc);
  pm_store_u32(e + PM_NODE_ID_LEN + 4, iv);
}

/* Members: this node's table, alive members only, itself first; of the
 * entries whose bucket among `nb` is marked in `want`. Written straight
 * into frames of up to PM_MEMBERS_PER_FRAME entries, each frame's count
 * filled in when it is full. */
typedef struct members_writer {
  pm_buf *out;
  size_t start; /* the open frame, if count > 0 */
  size_t count;
} members_writer;

static void members_close(members_writer *w) {
  if (!w->count)
    return;
  pm_buf *b = w->out;
  if (!b->err) {
    b->data[w->start + PM_FRAME_HEADER] = (uint8_t)(w->count >> 8);
    b->data[w->start + PM_FRAME_HEADER + 1] = (uint8_t)w->count;
  }
  /* Fails only when the buffer already did (1,024 entries always fit),
   * which the send reports. */
  int rc = pm_frame_end(b, w->start);
  (void)rc;
  w->count = 0;
}

static void members_put(members_writer *w, const uint8_t *id, uint32_t inc,
                        uint32_t iv) {
  if (w->count == PM_MEMBERS_PER_FRAME)
    members_close(w);
  if (!w->count) {
    w->start = pm_frame_begin(w->out, PM_FRAME_MEMBERS);
    pm_buf_u16(w->out, 0); /* the count, filled in by members_close */
  }
  uint8_t e[PM_MEMBERS_ENTRY_LEN];
  encode_member(e, id, inc, iv);
  pm_buf_put(w->out, e, sizeof e);
  w->count++;
}

/* The alive members a walk lists. */
static void members_put_walk(pm_node *n, members_writer *w,
                             pm_members_walk *wk) {
  for (uint32_t i; (i = pm_members_next(n->members, wk)) != PM_MEMBERS_END;) {
    pm_member_info info;
    uint32_t iv;
    pm_members_at(n->members, i, &info, &iv);
    if (info.state == PM_MEMBER_ALIVE)
      members_put(w, info.id, info.incarnation, iv);
  }
}

static void send_members(pm_node *n, link *l, const uint8_t *want, unsigned nb,
                         uint64_t now) {
  members_writer w = {&l->out, 0, 0};
  if (want[pm_members_bucket(n->id) % nb])
    members_put(&w, n->id, n->incarnation, n->refresh_iv);
  /* Bucket b holds the IDs whose first byte is b modulo nb: only those
   * stretches of the table are read. */
  for (unsigned b = 0; b < PM_MEMBERS_BUCKETS; b++) {
    if (!want[b % nb])
      continue;
    pm_members_walk wk;
    pm_members_prefix(n->members, (uint8_t)b, &wk);
    members_put_walk(n, &w, &wk);
  }
  members_close(&w);
  want_send(n, l, now);
}

/* The entries of sub-bucket `sub`: alive members, and this node. */
static void members_put_sub(pm_node *n, members_writer *w, uint32_t sub) {
  if (pm_members_sub(n->id) == sub)
    members_put(w, n->id, n->incarnation, n->refresh_iv);
  pm_members_walk wk;
  pm_members_sub_prefix(n->members, sub, &wk);
  members_put_walk(n, w, &wk);
}

/* Bucket b's sub-bucket tags, this node included. */
static void own_subtags(const pm_node *n, uint8_t b,
                        uint64_t tags[PM_MEMBERS_SUBS]) {
  pm_members_subtags(n->members, b, tags);
  if (pm_members_bucket(n->id) == b)
    tags[pm_members_sub(n->id) % PM_MEMBERS_SUBS] ^= pm_members_tag(n->id);
}

/* This node's digest in `nb` buckets (a power of two up to 256): its
 * table's, itself included. */
static void own_digest(const pm_node *n, unsigned nb, uint32_t *count,
                       uint64_t *tags) {
  uint32_t fc[PM_MEMBERS_BUCKETS];
  uint64_t ft[PM_MEMBERS_BUCKETS];
  pm_members_digest(n->members, fc, ft);
  uint32_t b = pm_members_bucket(n->id);
  fc[b]++;
  ft[b] ^= pm_members_tag(n->id);
  for (unsigned i = 0; i < nb; i++) {
    count[i] = 0;
    tags[i] = 0;
  }
  for (unsigned i = 0; i < PM_MEMBERS_BUCKETS; i++) {
    count[i % nb] += fc[i];
    tags[i % nb] ^= ft[i];
  }
}

/* MembersDigest, 5..15 s after a link comes up (at once when it brings
 * this node online) and then every DIGEST_INTERVAL_MS: a peer whose own
 * digest differs answers with the entries of the buckets that differ.
 * That is how two parts of a mesh that meet (after a partition, or islands
 * formed while the mesh started) learn of each other's members, and how a
 * node mends what it missed while the tree that carries news was changing.
 * About 8 members a bucket: a small mesh sends a few bytes, a large one
 * 3 KiB, and an answer holds little more than the entries that differ. */
static void send_digest(pm_node *n, link *l, uint64_t now) {
  unsigned nb = 1;
  while (nb < PM_MEMBERS_BUCKETS && nb * 8 < pm_members_live(n->members) + 1)
    nb *= 2;
  uint32_t count[PM_MEMBERS_BUCKETS];
  uint64_t tags[PM_MEMBERS_BUCKETS];
  own_digest(n, nb, count, tags);
  size_t start = pm_frame_begin(&l->out, PM_FRAME_MEMBERS_DIGEST);
  for (unsigned b = 0; b < nb; b++) {
    pm_buf_u32(&l->out, count[b]);
    pm_buf_u64(&l->out, tags[b]);
  }
  if (pm_frame_end(&l->out, start) == 0)
    want_send(n, l, now);
  l->digest_sent = 1;
  l->next_digest = now + DIGEST_INTERVAL_MS - DIGEST_INTERVAL_MS / 4 +
                   rnd(n, DIGEST_INTERVAL_MS / 2 + 1);
}

/* Answers a 256-bucket digest: the sub-bucket tags of the buckets marked
 * in `want`. */
static void send_subdigest(pm_node *n, link *l, const uint8_t *want,
                           uint64_t now) {
  size_t start = pm_frame_begin(&l->out, PM_FRAME_MEMBERS_SUBDIGEST);
  for (unsigned b = 0; b < PM_MEMBERS_BUCKETS; b++) {
    if (!want[b])
      continue;
    uint64_t tags[PM_MEMBERS_SUBS];
    own_subtags(n, (uint8_t)b, tags);
    pm_buf_u8(&l->out, (uint8_t)b);
    for (unsigned j = 0; j < PM_MEMBERS_SUBS; j++)
      pm_buf_u64(&l->out, tags[j]);
  }
  if (pm_frame_end(&l->out, start) == 0) {
    l->subdigest_sent = 1;
    want_send(n, l, now);
  }
}

static int on_digest(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  if (l->state != LINK_CONNECTED)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  size_t nb = f->len / PM_MEMBERS_DIGEST_ENTRY;
  if (f->len % PM_MEMBERS_DIGEST_ENTRY || nb == 0 || nb > PM_MEMBERS_BUCKETS ||
      (nb & (nb - 1)))
    return link_error(n, l, now, PM_ERR_MALFORMED);
  /* At most one answer per DIGEST_ANSWER_GAP_MS: a small frame must not
   * buy a table's worth of traffic at will. */
  if (l->digest_answered && now - l->digest_answered_at < DIGEST_ANSWER_GAP_MS)
    return 0;
  l->digest_answered = 1;
  l->digest_answered_at = now;
  uint32_t count[PM_MEMBERS_BUCKETS];
  uint64_t tags[PM_MEMBERS_BUCKETS];
  own_digest(n, (unsigned)nb, count, tags);
  uint8_t want[PM_MEMBERS_BUCKETS];
  int any = 0;
  for (size_t b = 0; b < nb; b++) {
    const uint8_t *p = f->payload + PM_MEMBERS_DIGEST_ENTRY * b;
    want[b] = pm_load_u32(p) != count[b] || pm_load_u64(p + 4) != tags[b];
    any |= want[b];
  }
  if (any && nb == PM_MEMBERS_BUCKETS)
    send_subdigest(n, l, want, now);
  else if (any)
    send_members(n, l, want, (unsigned)nb, now);
  return 0;
}

/* The peer's sub-bucket tags for the buckets that differ: this node sends
 * its entries of the sub-buckets that differ and asks for the peer's. */
static int on_subdigest(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  if (l->state != LINK_CONNECTED)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  size_t count = f->len / PM_MEMBERS_SUBDIGEST_ENTRY;
  if (f->len % PM_MEMBERS_SUBDIGEST_ENTRY || count > PM_MEMBERS_BUCKETS)
    return link_error(n, l, now, PM_ERR_MALFORMED);
  for (size_t k = 1; k < count; k++)
    if (f->payload[k * PM_MEMBERS_SUBDIGEST_ENTRY] <=
        f->payload[(k - 1) * PM_MEMBERS_SUBDIGEST_ENTRY])
      return link_error(n, l, now, PM_ERR_MALFORMED);
  if (!l->digest_sent)
    return 0; /* not an answer to this node's digest */
  l->digest_sent = 0;
  members_writer w = {&l->out, 0, 0};
  uint16_t want[PM_MEMBERS_SUBBUCKETS];
  size_t nwant = 0;
  for (size_t k = 0; k < count; k++) {
    const uint8_t *p = f->payload + k * PM_MEMBERS_SUBDIGEST_ENTRY;
    uint64_t mine[PM_MEMBERS_SUBS];
    own_subtags(n, p[0], mine);
    for (unsigned j = 0; j < PM_MEMBERS_SUBS; j++) {
      if (pm_load_u64(p + 1 + 8 * j) == mine[j])
        continue;
      uint32_t sub = (uint32_t)p[0] * PM_MEMBERS_SUBS + j;
      members_put_sub(n, &w, sub);
      want[nwant++] = (uint16_t)sub;
    }
  }
  members_close(&w);
  if (nwant) {
    size_t start = pm_frame_begin(&l->out, PM_FRAME_MEMBERS_WANT);
    for (size_t i = 0; i < nwant; i++)
      pm_buf_u16(&l->out, want[i]);
    /* Fails only when the buffer already did (8 KiB always fit), which
     * the send reports. */
    int rc = pm_frame_end(&l->out, start);
    (void)rc;
  }
  want_send(n, l, now);
  return 0;
}

/* The sub-buckets the peer found different: this node's entries of them. */
static int on_members_want(pm_node *n, link *l, uint64_t now,
                           const pm_frame *f) {
  if (l->state != LINK_CONNECTED)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  size_t count = f->len / 2;
  if (f->len % 2 || count > PM_MEMBERS_SUBBUCKETS)
    return link_error(n, l, now, PM_ERR_MALFORMED);
  uint32_t prev = 0;
  for (size_t k = 0; k < count; k++) {
    uint32_t sub = (uint32_t)f->payload[2 * k] << 8 | f->payload[2 * k + 1];
    if (sub >= PM_MEMBERS_SUBBUCKETS || (k && sub <= prev))
      return link_error(n, l, now, PM_ERR_MALFORMED);
    prev = sub;
  }
  if (!l->subdigest_sent)
    return 0; /* not an answer to this node's sub-digest */
  l->subdigest_sent = 0;
  members_writer w = {&l->out, 0, 0};
  for (size_t k = 0; k < count; k++)
    members_put_sub(n, &w,
                    (uint32_t)f->payload[2 * k] << 8 | f->payload[2 * k + 1]);
  members_close(&w);
  want_send(n, l, now);
  return 0;
}

/* The links news from `from` goes on to: every other neighbour on the
 * tree (every other neighbour while this node is detached from it). */
static size_t news_targets(const pm_node *n, const link *from,
                           link *out[MAX_LINKS]) {
  int detached = pm_tree_detached(&n->tree);
  size_t k = 0;
  for (size_t i = 0; i < n->nlinks && k < MAX_LINKS; i++) {
    link *l = n->links[i];
    if (l != from && l->state == LINK_CONNECTED &&
        (detached || pm_tree_is_tree_link(&n->tree, &l->tp)))
      out[k++] = l;
  }
  return k;
}

/* An entry new to this node goes on to the `to` links with the next batch
 * of announcements. A neighbour whose batch is full (a table's worth
 * already waiting) misses it; it still learns of the member by its next
 * refresh. */
static void queue_news(pm_node *n, link *const *to, size_t nto,
                       const uint8_t e[PM_MEMBERS_ENTRY_LEN], uint64_t now) {
  for (size_t i = 0; i < nto; i++) {
    link *l = to[i];
    if (l->state != LINK_CONNECTED)
      continue; /* closed since, as too slow for a suspicion sent */
    if (l->news.len >= (size_t)n->member_capacity * PM_MEMBERS_ENTRY_LEN) {
      n->stats.dropped++;
      continue;
    }
    pm_buf_put(&l->news, e, PM_MEMBERS_ENTRY_LEN);
  }
  if (!n->announce_at)
    n->announce_at = now + IHAVE_DELAY_MS;
}

static void flush_news(pm_node *n, link *l, uint64_t now) {
  if (!l->news.err)
    write_members(n, l, l->news.data, l->news.len / PM_MEMBERS_ENTRY_LEN, now);
  pm_buf_reset(&l->news);
  pm_buf_trim(&l->news, BUF_KEEP_BYTES);
}

/* Members (a neighbour's table, or the news it passes on). The neighbour
 * vouches for the entries; they cannot bring back a member this node saw
 * fail or leave unless it has a new incarnation. */
static int on_members(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  if (l->state != LINK_CONNECTED)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  if (f->len < 2)
    return link_error(n, l, now, PM_ERR_TRUNCATED);
  size_t count = (size_t)f->payload[0] << 8 | f->payload[1];
  if (count > PM_MEMBERS_PER_FRAME ||
      f->len != 2 + count * PM_MEMBERS_ENTRY_LEN)
    return link_error(n, l, now, PM_ERR_MALFORMED);
  /* Room for an event per entry at once, rather than doubling as they
   * come (a frame may name 1,024 members new to this node). */
  ring_reserve(n, (void **)&n->mevq, &n->mevq_head, n->mevq_len, &n->mevq_cap,
               sizeof(mev_item), count);
  /* Handling an entry changes neither the tree nor the links but for
   * closing one: where news goes is the same for the whole frame. */
  link *to[MAX_LINKS];
  size_t nto = news_targets(n, l, to);
  /* Each entry's index slot, then its entry, load ahead of its turn. */
  for (size_t k = 0; k < count && k < 16; k++)
    pm_members_prefetch(n->members, f->payload + 2 + k * PM_MEMBERS_ENTRY_LEN);
  for (size_t k = 0; k < count; k++) {
    const uint8_t *e = f->payload + 2 + k * PM_MEMBERS_ENTRY_LEN;
    if (k + 16 < count)
      pm_members_prefetch(n->members, e + 16 * PM_MEMBERS_ENTRY_LEN);
    if (k + 8 < count)
      pm_members_prefetch_entry(n->members, e + 8 * PM_MEMBERS_ENTRY_LEN);
    if (memcmp(e, n->id, PM_NODE_ID_LEN) == 0)
      continue; /* this node is never in its own table */
    uint32_t iv = sane_interval(pm_load_u32(e + PM_NODE_ID_LEN + 4));
    uint32_t inc = pm_load_u32(e + PM_NODE_ID_LEN);
    int rc = pm_members_vouch(n->members, e, inc, iv, now);
    if (rc == PM_MEMBERS_JOINED) {
      member_event(n, PM_EV_MEMBER_JOINED, e);
      queue_news(n, to, nto, e, now);
    } else if (rc == PM_MEMBERS_NONE && pm_members_ask(n->members, e, inc)) {
      /* The neighbour holds alive a member this node saw fail, at the same
       * incarnation: after a partition, each side failed the other's
       * members, and none of them heard. A suspicion reaches the member,
       * which refutes with a new incarnation that revives it everywhere;
       * if it is gone, the nodes that still hold it alive fail it. */
      send_suspect(n, now, e, inc);
    }
  }
  note_members(n);
  return 0;
}

static int on_flood(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  if (l->state != LINK_CONNECTED)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  pm_msg_flood m;
  int rc = pm_msg_read_flood(f, &m);
  if (rc)
    return link_error(n, l, now, rc);
  if (m.action_len > PM_ACTION_MAX || m.body_len > PM_BODY_MAX ||
      memchr(m.action, '\0', m.action_len))
    return link_error(n, l, now, PM_ERR_MALFORMED);
  uint8_t id[PM_MSG_ID_LEN];
  pm_msg_flood_id(&m, id);
  if (memcmp(id, m.id, PM_MSG_ID_LEN) != 0)
    return invalid_message(n, l, now, PM_ERR_BAD_ID);
  if (memcmp(m.origin, n->id, PM_NODE_ID_LEN) == 0 ||
      pm_dedup_contains(n->seen, m.id, now)) {
    n->stats.duplicates++;
    rate_link(l, 0);
    return 0;
  }
  /* The ID is the hash of the signed content, so one signature check
   * covers everything but the hop count. */
  uint32_t distance = (uint32_t)m.hops + 1;
  if (m.has_hop_limit && distance > m.hop_limit)
    return invalid_message(n, l, now, PM_ERR_AUTH);
  if (!pm_authors_fresh(n->authors, m.origin, m.seq)) {
    n->stats.replayed++; /* may be an honest relay's late copy: no strike */
    return 0;
  }
  if (!n->signer.verify(n->signer.ud, m.origin, m.id, m.sig))
    return invalid_message(n, l, now, PM_ERR_AUTH);
  int presence = is_presence(&m);
  if (presence && !presence_ok(&m))
    return invalid_message(n, l, now, PM_ERR_MALFORMED);
  pm_dedup_insert(n->seen, m.id, now);
  pm_authors_accept(n->authors, m.origin, m.seq);
  rate_link(l, 1);
  if (n->missing_n) {
    pm_missing_remove(n->missing, m.id);
    note_missing(n);
  }
  if (presence) {
    on_presence(n, now, &m);
    if (m.hops < UINT16_MAX)
      m.hops++;
    forward(n, now, l, &m, f);
    return 0;
  }
  int how = propagation(n, &m, PM_ORIGIN_REMOTE);
  if (how & PM_PROPAGATE_LOCAL)
    deliver(n, &m, 0);
  if (!(how & PM_PROPAGATE_REMOTE))
    return 0;
  if (m.has_hop_limit && distance >= m.hop_limit)
    return 0; /* delivered here, travels no further */
  if (m.hops < UINT16_MAX)
    m.hops++;
  forward(n, now, l, &m, f);
  return 0;
}

/* Decodes the ID list of an IHave or Graft, which only neighbours send.
 * Returns 0, or the error that closed the link. */
static int read_ids(pm_node *n, link *l, uint64_t now, const pm_frame *f,
                    const uint8_t **ids, size_t *count) {
  if (l->state != LINK_CONNECTED)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  int rc = pm_msg_read_ids(f, ids, count);
  return rc ? link_error(n, l, now, rc) : 0;
}

/* The peer has announced `id`, so it has the message: this node's own
 * announcement of it, if still waiting for the batch, is dropped. Both ends
 * of a non-tree link usually hold each message before either batch goes
 * out, and each would otherwise tell the other. */
static void unannounce(link *l, const uint8_t *id) {
  size_t count = l->announce.len / PM_MSG_ID_LEN;
  for (size_t i = 0; i < count; i++) {
    uint8_t *p = l->announce.data + i * PM_MSG_ID_LEN;
    if (memcmp(p, id, PM_MSG_ID_LEN) == 0) {
      memmove(p, p + PM_MSG_ID_LEN, (count - i - 1) * PM_MSG_ID_LEN);
      l->announce.len -= PM_MSG_ID_LEN;
      return;
    }
  }
}

static int on_ihave(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  const uint8_t *ids;
  size_t count;
  int rc = read_ids(n, l, now, f, &ids, &count);
  if (rc)
    return rc;
  /* The IDs' slots load together rather than one after the other. */
  for (size_t i = 0; i < count; i++)
    pm_dedup_prefetch(n->seen, ids + i * PM_MSG_ID_LEN);
  for (size_t i = 0; i < count; i++) {
    const uint8_t *id = ids + i * PM_MSG_ID_LEN;
    int news = !pm_dedup_contains(n->seen, id, now);
    rate_link(l, news);
    if (news) {
      pm_missing_announce(n->missing, id, l->id, now + GRAFT_TIMEOUT_MS);
      note_missing(n);
    } else {
      unannounce(l, id);
    }
  }
  return 0;
}

static int on_graft(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  const uint8_t *ids;
  size_t count;
  int rc = read_ids(n, l, now, f, &ids, &count);
  if (rc)
    return rc;
  for (size_t i = 0; i < count; i++) {
    size_t len;
    const uint8_t *frame =
        pm_msgcache_get(n->cache, ids + i * PM_MSG_ID_LEN, &len, now);
    if (frame)
      pm_buf_put(&l->out, frame, len);
  }
  want_send(n, l, now);
  return 0;
}

static void flush_ids(pm_node *n, link *l, pm_buf *ids, uint8_t type,
                      uint64_t now);

/* Catch-up: announces the newest cached messages of the asked window, once
 * per link (an answer costs up to 8 KiB; a peer may not make it repeat). */
static int on_sync(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  if (l->state != LINK_CONNECTED)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  uint32_t window;
  int rc = pm_msg_read_sync(f, &window);
  if (rc)
    return link_error(n, l, now, rc);
  if (l->synced)
    return 0;
  l->synced = 1;
  announce_recent(n, l, window, now);
  return 0;
}

static int on_tree(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  if (l->state != LINK_CONNECTED)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  pm_tree_adv a;
  int rc = pm_msg_read_tree(f, &a);
  if (rc)
    return link_error(n, l, now, rc);
  pm_tree_heard(&l->tp, &a);
  n->tree_dirty = 1;
  return 0;
}

static int handle_frame(pm_node *n, link *l, uint64_t now, const pm_frame *f) {
  if (!l->have_hello && f->type != PM_FRAME_HELLO)
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  switch (f->type) {
  case PM_FRAME_HELLO:
    return on_hello(n, l, now, f);
  case PM_FRAME_CONNECT:
    if (f->len != 0)
      return link_error(n, l, now, PM_ERR_MALFORMED);
    return on_connect(n, l, now);
  case PM_FRAME_WELCOME:
  case PM_FRAME_REFUSE:
  case PM_FRAME_DISCONNECT:
    return on_referrals(n, l, now, f);
  case PM_FRAME_PING:
    if (f->len != 0)
      return link_error(n, l, now, PM_ERR_MALFORMED);
    return 0;
  case PM_FRAME_FLOOD:
    return on_flood(n, l, now, f);
  case PM_FRAME_IHAVE:
    return on_ihave(n, l, now, f);
  case PM_FRAME_GRAFT:
    return on_graft(n, l, now, f);
  case PM_FRAME_TREE:
    return on_tree(n, l, now, f);
  case PM_FRAME_SYNC:
    return on_sync(n, l, now, f);
  case PM_FRAME_MEMBERS:
    return on_members(n, l, now, f);
  case PM_FRAME_MEMBERS_DIGEST:
    return on_digest(n, l, now, f);
  case PM_FRAME_MEMBERS_SUBDIGEST:
    return on_subdigest(n, l, now, f);
  case PM_FRAME_MEMBERS_WANT:
    return on_members_want(n, l, now, f);
  default:
    return link_error(n, l, now, PM_ERR_UNEXPECTED);
  }
}

/* ---- maintenance -----------------------------------------------------------
 */

static int connected_to(const pm_node *n, const candidate *c) {
  for (size_t i = 0; i < n->nlinks; i++) {
    const link *l = n->links[i];
    if (l->state == LINK_CLOSED)
      continue;
    if (c->has_id && l->have_hello &&
        memcmp(l->peer, c->node_id, PM_NODE_ID_LEN) == 0)
      return 1;
    if (strcmp(l->peer_addr, c->addr) == 0 ||
        strcmp(l->dial_addr, c->addr) == 0)
      return 1;
  }
  return 0;
}

static int dialable(const pm_node *n, const candidate *c, uint64_t now) {
  return !c->self && !c->dialing && c->next_try <= now &&
         !(c->has_id && memcmp(c->node_id, n->id, PM_NODE_ID_LEN) == 0) &&
         !connected_to(n, c);
}

/* Links being set up by this node: dials not yet answered plus outbound
 * links not yet connected. */
static unsigned pending_outbound(const pm_node *n) {
  unsigned pending = n->dials_in_flight;
  for (size_t i = 0; i < n->nlinks; i++)
    if (n->links[i]->outbound && n->links[i]->state != LINK_CONNECTED &&
        n->links[i]->state != LINK_CLOSED)
      pending++;
  return pending;
}

/* Asks the app to dial one random eligible candidate. Returns 1, or 0 when
 * there is none (or no memory to queue the request). */
static int dial_random(pm_node *n, uint64_t now) {
  candidate *pool[MAX_CANDIDATES];
  size_t np = 0;
  for (size_t i = 0; i < n->ncands; i++)
    if (dialable(n, &n->cands[i], now))
      pool[np++] = &n->cands[i];
  if (np == 0)
    return 0;
  candidate *c = pool[rnd(n, np)];
  out_item *o = push_out(n, PM_OUT_DIAL, 0);
  if (!o)
    return 0;
  copy_str(o->addr, sizeof o->addr, c->addr);
  c->dialing = 1;
  n->dials_in_flight++;
  return 1;
}

/* Above ideal, closes the least useful link whose score is settled. Tree
 * links are kept: a child that only receives scores low, yet closing its
 * link would cut its subtree off until it finds another parent. */
static void prune(pm_node *n, uint64_t now) {
  /* Look again only after the interval, whether or not a link goes now:
   * with no settled link yet the deadline must still move forward. */
  n->next_prune = now + PRUNE_INTERVAL_MS;
  link *worst = NULL;
  uint32_t worst_u = 0;
  for (size_t i = 0; i < n->nlinks; i++) {
    link *l = n->links[i];
    /* A link silent for a few beacons brings nothing, whatever it scored
     * before: its score only moves when something arrives. */
    int silent = now - l->last_recv >= PRUNE_SILENT_MS;
    /* One falling silent (a partition, a crash without a reset) makes
     * the others' scores meaningless until it is settled one way or the
     * other: prune nothing meanwhile. */
    if (l->state == LINK_CONNECTED && !silent &&
        now - l->last_recv >= PRUNE_QUIET_MS)
      return;
    uint32_t u = silent ? 0 : l->utility;
    if (l->state == LINK_CONNECTED &&
        (silent || l->samples >= UTILITY_ACCURATE) &&
        !pm_tree_is_tree_link(&n->tree, &l->tp) && (!worst || u < worst_u)) {
      worst = l;
      worst_u = u;
    }
  }
  if (!worst)
    return;
  pm_msg_referrals refs;
  pick_referrals(n, worst, &refs);
  close_link(n, worst, now, PM_CLOSE_NOT_USEFUL, PM_FRAME_DISCONNECT, &refs);
  n->next_prune = now + PRUNE_INTERVAL_MS;
}

/* Now and then, one link to a random candidate beyond ideal: if it joins two
 * groups that had lost each other it brings news and stays, otherwise it
 * scores low and is pruned. Fresh candidates come from a resolve. */
static void explore(pm_node *n, uint64_t now) {
  /* Every node of a small mesh explores every EXPLORE_INTERVAL_MS or so; in
   * a larger one, each less often, so that the mesh as a whole makes about
   * EXPLORE_MEMBERS / EXPLORE_INTERVAL_MS new links (and resolves) a second
   * whatever its size. */
  uint64_t iv = EXPLORE_INTERVAL_MS;
  uint32_t live = pm_members_live(n->members);
  if (live > EXPLORE_MEMBERS)
    iv = iv * live / EXPLORE_MEMBERS;
  n->next_explore = now + iv / 2 + rnd(n, iv);
  dial_random(n, now);
  push_out(n, PM_OUT_RESOLVE, 0);
}

static void maintain(pm_node *n, uint64_t now) {
  if (n->left)
    return;
  unsigned have = n->nconnected;
  if (have > n->ideal_n && now >= n->next_prune) {
    prune(n, now);
    have = n->nconnected;
  }
  if (have >= n->min_n && have < n->max_n && now >= n->next_explore)
    explore(n, now);
  /* A neighbour silent for two beacons is likely gone (a partition, a
   * crash that reset nothing): replace it now rather than after the idle
   * timeout closes its link. A node whose neighbours were all across a cut
   * would otherwise stay alone for 15 s. */
  have = 0;
  for (size_t i = 0; i < n->nlinks; i++)
    have += n->links[i]->state == LINK_CONNECTED &&
            now - n->links[i]->last_recv < PRUNE_SILENT_MS;
  n->live_n = have;
  if (have < n->ideal_n) { /* counting the dials in flight walks the links */
    unsigned pending = pending_outbound(n);
    while (have + pending < n->ideal_n && n->nconnected + pending < n->max_n) {
      if (!dial_random(n, now))
        break;
      pending++;
    }
  }
  if (have >= n->ideal_n || now < n->next_resolve)
    return;
  /* Below ideal: ask the resolvers when nothing is left to try, and even
   * then when below min, since the candidates may all be stale. */
  int any_waiting = 0;
  for (size_t i = 0; i < n->ncands; i++)
    if (!n->cands[i].self && !connected_to(n, &n->cands[i]))
      any_waiting = 1;
  uint64_t interval = have < n->min_n ? RESOLVE_FAST_MS : RESOLVE_SLOW_MS;
  if (any_waiting && have >= n->min_n) {
    n->next_resolve = now + interval; /* look again later */
    return;
  }
  if (push_out(n, PM_OUT_RESOLVE, 0))
    n->next_resolve = now + interval;
}

/* Writes the IDs queued for IHave and Graft during this call, a frame per
 * PM_MAX_IDS, so that one call's worth of messages shares frames. */
static void flush_ids(pm_node *n, link *l, pm_buf *ids, uint8_t type,
                      uint64_t now) {
  size_t count = ids->len / PM_MSG_ID_LEN;
  for (size_t off = 0; off < count; off += PM_MAX_IDS) {
    size_t k = count - off < PM_MAX_IDS ? count - off : PM_MAX_IDS;
    if (pm_msg_write_ids(&l->out, type, ids->data + off * PM_MSG_ID_LEN, k))
      break;
  }
  pm_buf_reset(ids);
  pm_buf_trim(ids, BUF_KEEP_BYTES);
  want_send(n, l, now);
}

static void finish(pm_node *n, uint64_t now) {
  /* Adverts may close a slow link, which changes the tree again. */
  for (int i = 0; i < 4 && n->tree_dirty && !n->left; i++)
    tree_refresh(n, now, 0);
  int announce_due = n->announce_at && now >= n->announce_at;
  if (announce_due)
    n->announce_at = 0;
  /* Most calls have nothing to flush: they need not read every link. */
  if (!announce_due && !n->grafts_queued) {
    maintain(n, now);
    return;
  }
  n->grafts_queued = 0;
  for (size_t i = 0; i < n->nlinks; i++) {
    link *l = n->links[i];
    if (l->state != LINK_CONNECTED) {
      pm_buf_reset(&l->announce);
      pm_buf_reset(&l->graft);
      pm_buf_reset(&l->news);
      continue;
    }
    if (announce_due && l->announce.len)
      flush_ids(n, l, &l->announce, PM_FRAME_IHAVE, now);
    if (announce_due && l->news.len)
      flush_news(n, l, now);
    if (l->graft.len)
      flush_ids(n, l, &l->graft, PM_FRAME_GRAFT, now);
  }
  maintain(n, now);
}

/* Asks for announced messages that have not arrived in time. */
static void request_missing(pm_node *n, uint64_t now) {
  uint8_t id[PM_MSG_ID_LEN];
  uint32_t link_id;
  while (pm_missing_take_due(n->missing, now, now + GRAFT_TIMEOUT_MS, id,
                             &link_id)) {
    link *l = find_link(n, link_id);
    if (!l || l->state != LINK_CONNECTED)
      continue;
    pm_buf_put(&l->graft, id, PM_MSG_ID_LEN);
    n->grafts_queued = 1;
    n->stats.grafts++;
  }
  note_missing(n);
}

/* ---- public API
 * -------------------------------------------------------------- */

static void ed25519_sign(void *ud, const uint8_t author[PM_NODE_ID_LEN],
                         const uint8_t id[PM_MSG_ID_LEN],
                         uint8_t sig[PM_SIG_BYTES]) {
  (void)author;
  const pm_node *n = ud;
  pm_msg_sign_id(id, n->secret_key, sig);
}

static int ed25519_verify(void *ud, const uint8_t author[PM_NODE_ID_LEN],
                          const uint8_t id[PM_MSG_ID_LEN],
                          const uint8_t sig[PM_SIG_BYTES]) {
  (void)ud;
  return pm_msg_verify_id(id, author, sig);
}

/* The secret key must be the node ID's: messages signed with another
 * would be refused by every receiver. */
static int key_matches(const pm_node_config *cfg) {
  uint8_t pk[PM_NODE_ID_LEN];
  return cfg->secret_key &&
         crypto_sign_ed25519_sk_to_pk(pk, cfg->secret_key) == 0 &&
         memcmp(pk, cfg->node_id, PM_NODE_ID_LEN) == 0;
}

int pm_node_new(const pm_node_config *cfg, pm_node **out) {
  *out = NULL;
  if (!cfg || !cfg->mesh || !mesh_name_ok(cfg->mesh) || !cfg->random)
    return PM_ERR_INVAL;
  if (cfg->signer ? !cfg->signer->sign || !cfg->signer->verify
                  : !key_matches(cfg))
    return PM_ERR_INVAL;
  unsigned mn = cfg->min_neighbors ? cfg->min_neighbors : DEFAULT_MIN;
  unsigned id = cfg->ideal_neighbors ? cfg->ideal_neighbors : DEFAULT_IDEAL;
  unsigned mx = cfg->max_neighbors ? cfg->max_neighbors : DEFAULT_MAX;
  if (mn > id || id > mx || mx > 64)
    return PM_ERR_INVAL;
  const pm_allocator *a = cfg->alloc ? cfg->alloc : pm_allocator_default();
  pm_node *n = a->realloc(a->ud, NULL, sizeof *n);
  if (!n)
    return PM_ERR_NOMEM;
  memset(n, 0, sizeof *n);
  n->alloc = a;
  copy_str(n->mesh, sizeof n->mesh, cfg->mesh);
  memcpy(n->id, cfg->node_id, PM_NODE_ID_LEN);
  n->listen_port = cfg->listen_port;
  n->queue_limit = cfg->send_queue_limit;
  n->min_n = mn;
  n->ideal_n = id;
  n->max_n = mx;
  n->random = cfg->random;
  n->random_ud = cfg->random_ud;
  n->seq = cfg->first_seq ? cfg->first_seq - 1 : 0;
  if (cfg->signer) {
    n->signer = *cfg->signer;
  } else {
    memcpy(n->secret_key, cfg->secret_key, PM_SECRET_KEY_BYTES);
    n->signer.sign = ed25519_sign;
    n->signer.verify = ed25519_verify;
    n->signer.ud = n;
  }
  n->next_link_id = 1;
  pm_tree_init(&n->tree, n->id, BEACON_MS, ROOT_TIMEOUT_MS, 0);
  pm_buf_init(&n->scratch, a);
  pm_buf_init(&n->fwd, a);
  n->seen = pm_dedup_new(a, DEDUP_CAPACITY, DEDUP_TTL_MS);
  n->cache = pm_msgcache_new(
      a, cfg->frames, cfg->cache_bytes ? cfg->cache_bytes : CACHE_BYTES,
      CACHE_TTL_MS, PM_FRAME_HEADER, PM_FRAME_HEADER + PM_FLOOD_HOPS_OFFSET);
  n->missing = pm_missing_new(a, MISSING_CAPACITY);
  n->authors = pm_authors_new(a, cfg->ids, AUTHORS_CAPACITY);
  n->member_capacity =
      cfg->member_capacity ? cfg->member_capacity : MEMBER_CAPACITY;
  n->members =
      pm_members_new(a, cfg->ids, n->member_capacity, SUSPECT_TIMEOUT_MS);
  n->links_due = n->members_due = n->missing_due = PM_DEADLINE_NONE;
  n->suspects_due = PM_DEADLINE_NONE;
  n->push_hops = PUSH_ALL_HOPS;
  /* Incarnations start from the first sequence number, which a restarted
   * node sets above its earlier runs' (the wall clock in microseconds):
   * seconds, so that a member's new run outranks its old one. */
  n->incarnation = (uint32_t)(n->seq / 1000000u);
  if (!n->seen || !n->cache || !n->missing || !n->authors || !n->members) {
    pm_node_free(n);
    return PM_ERR_NOMEM;
  }
  *out = n;
  return 0;
}

void pm_node_free(pm_node *n) {
  if (!n)
    return;
  while (n->nlinks)
    free_link(n, n->links[0]);
  mem_free(n, n->links);
  mem_free(n, n->link_ids);
  for (size_t i = 0; i < n->evq_len; i++)
    mem_free(n, n->evq[(n->evq_head + i) % n->evq_cap].body);
  mem_free(n, n->ev_current.body);
  mem_free(n, n->evq);
  mem_free(n, n->mevq);
  mem_free(n, n->outq);
  pm_buf_free(&n->scratch);
  pm_buf_free(&n->fwd);
  pm_dedup_free(n->seen);
  pm_msgcache_free(n->cache);
  pm_missing_free(n->missing);
  pm_authors_free(n->authors);
  pm_members_free(n->members);
  sodium_memzero(n->secret_key, sizeof n->secret_key);
  n->alloc->realloc(n->alloc->ud, n, 0);
}

int pm_node_link_open(pm_node *n, uint64_t now, int outbound,
                      const char *remote_host, const char *dial_addr,
                      uint32_t *link_id) {
  if (outbound && n->dials_in_flight)
    n->dials_in_flight--;
  if (n->left)
    return PM_ERR_CLOSED;
  if (n->nlinks >= 2 * (size_t)n->max_n + 8) {
    if (outbound && dial_addr)
      candidate_done(n, now, dial_addr, 0);
    return PM_ERR_FULL;
  }
  if (n->nlinks == n->links_cap) {
    size_t cap = n->links_cap ? n->links_cap * 2 : 8;
    link **nl = mem_alloc(n, cap * sizeof *nl);
    uint32_t *ni = mem_alloc(n, cap * sizeof *ni);
    if (!nl || !ni) {
      mem_free(n, nl);
      mem_free(n, ni);
      return PM_ERR_NOMEM;
    }
    if (n->nlinks) {
      memcpy(nl, n->links, n->nlinks * sizeof *nl);
      memcpy(ni, n->link_ids, n->nlinks * sizeof *ni);
    }
    mem_free(n, n->links);
    mem_free(n, n->link_ids);
    n->links = nl;
    n->link_ids = ni;
    n->links_cap = cap;
  }
  link *l = mem_alloc(n, sizeof *l);
  if (!l)
    return PM_ERR_NOMEM;
  memset(l, 0, sizeof *l);
  l->id = n->next_link_id++;
  if (n->next_link_id == 0)
    n->next_link_id = 1;
  l->tp.link_id = l->id;
  l->outbound = outbound ? 1 : 0;
  l->state = LINK_HELLO;
  copy_str(l->remote_host, sizeof l->remote_host, remote_host);
  if (outbound)
    copy_str(l->dial_addr, sizeof l->dial_addr, dial_addr);
  pm_buf_init(&l->in, n->alloc);
  pm_buf_init(&l->out, n->alloc);
  pm_buf_init(&l->announce, n->alloc);
  pm_buf_init(&l->graft, n->alloc);
  pm_buf_init(&l->news, n->alloc);
  l->opened_at = l->last_recv = now;
  note_link_due(n,
                now + (CONNECT_TIMEOUT_MS < IDLE_TIMEOUT_MS ? CONNECT_TIMEOUT_MS
                                                            : IDLE_TIMEOUT_MS));
  n->link_ids[n->nlinks] = l->id;
  n->links[n->nlinks++] = l;

  pm_msg_hello h = {n->mesh, strlen(n->mesh), {0}, n->listen_port, 0};
  memcpy(h.node_id, n->id, PM_NODE_ID_LEN);
  if (pm_msg_write_hello(&l->out, &h) != 0) {
    free_link(n, l);
    return PM_ERR_NOMEM;
  }
  want_send(n, l, now);
  *link_id = l->id;
  return 0;
}

int pm_node_link_recv(pm_node *n, uint64_t now, uint32_t link_id,
                      const uint8_t *data, size_t len) {
  link *l = find_link(n, link_id);
  if (!l || l->state == LINK_CLOSED || len == 0)
    return 0;
  l->last_recv = now;
  /* Whole frames are read where they are; only a partial one waits in
   * l->in for the rest of its bytes. */
  const uint8_t *p = data;
  size_t plen = len;
  if (l->in.len) {
    pm_buf_put(&l->in, data, len);
    if (l->in.err)
      return link_error(n, l, now, PM_ERR_NOMEM);
    p = l->in.data;
    plen = l->in.len;
  }
  size_t off = 0;
  int rc = 0;
  while (l->state != LINK_CLOSED) {
    pm_frame f;
    size_t used;
    int got = pm_frame_parse(p + off, plen - off, &f, &used);
    if (got < 0) {
      rc = link_error(n, l, now, got);
      break;
    }
    if (got == 0)
      break;
    off += used;
    rc = handle_frame(n, l, now, &f);
    if (rc)
      break;
  }
  if (l->state != LINK_CLOSED) {
    if (p == data) {
      if (off < len) {
        pm_buf_put(&l->in, data + off, len - off);
        if (l->in.err)
          rc = link_error(n, l, now, PM_ERR_NOMEM);
      }
    } else {
      pm_buf_consume(&l->in, off);
    }
    pm_buf_trim(&l->in, BUF_KEEP_BYTES);
  }
  finish(n, now);
  return rc;
}

void pm_node_link_set_peer_key(pm_node *n, uint32_t link_id,
                               const uint8_t key[PM_NODE_ID_LEN]) {
  link *l = find_link(n, link_id);
  if (!l)
    return;
  memcpy(l->key, key, PM_NODE_ID_LEN);
  l->has_key = 1;
}

void pm_node_link_closed(pm_node *n, uint64_t now, uint32_t link_id) {
  link *l = find_link(n, link_id);
  if (l && l->state != LINK_CLOSED) {
    l->out.len = 0; /* the transport is gone: nothing more can be sent */
    close_link(n, l, now, PM_CLOSE_TRANSPORT, 0, NULL);
  }
  finish(n, now);
}

void pm_node_link_drained(pm_node *n, uint64_t now, uint32_t link_id,
                          size_t bytes) {
  (void)now;
  link *l = find_link(n, link_id);
  if (l)
    l->in_flight = bytes < l->in_flight ? l->in_flight - bytes : 0;
}

void pm_node_dial_failed(pm_node *n, uint64_t now, const char *addr) {
  if (n->dials_in_flight)
    n->dials_in_flight--;
  candidate_done(n, now, addr, 0);
  finish(n, now);
}

int pm_node_add_peer(pm_node *n, uint64_t now, const char *addr,
                     const uint8_t *node_id, int pinned) {
  if (n->left)
    return PM_ERR_CLOSED;
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  if (pm_addr_parse(addr, host, &port, 0) != 0)
    return PM_ERR_INVAL;
  if (node_id && memcmp(node_id, n->id, PM_NODE_ID_LEN) == 0)
    return 0; /* ourselves, as listed by a resolver or a referral */
  candidate *c = find_candidate(n, addr);
  if (!c) {
    if (n->ncands == MAX_CANDIDATES) {
      /* Make room by forgetting the unpinned address that failed most. */
      candidate *worst = NULL;
      for (size_t i = 0; i < n->ncands; i++) {
        candidate *o = &n->cands[i];
        if (!o->pinned && !o->dialing &&
            (!worst || o->failures > worst->failures))
          worst = o;
      }
      if (!worst)
        return PM_ERR_FULL;
      drop_candidate(n, worst);
    }
    c = &n->cands[n->ncands++];
    memset(c, 0, sizeof *c);
    copy_str(c->addr, sizeof c->addr, addr);
    c->next_try = now;
  }
  if (node_id) {
    memcpy(c->node_id, node_id, PM_NODE_ID_LEN);
    c->has_id = 1;
  }
  if (pinned)
    c->pinned = 1;
  finish(n, now);
  return 0;
}

int pm_node_send(pm_node *n, uint64_t now, const pm_send *s,
                 uint8_t id_out[PM_MSG_ID_LEN]) {
  if (n->left)
    return PM_ERR_CLOSED;
  if (!s || !s->action || (s->body_len && !s->body))
    return PM_ERR_INVAL;
  size_t alen = strlen(s->action);
  if (alen == 0 || alen > PM_ACTION_MAX || s->body_len > PM_BODY_MAX ||
      s->action[0] == '$') /* '$' actions are the core's (presence) */
    return PM_ERR_INVAL;
  pm_msg_flood m;
  memset(&m, 0, sizeof m);
  memcpy(m.origin, n->id, PM_NODE_ID_LEN);
  m.seq = ++n->seq;
  m.time_ms = s->time_ms;
  m.action = s->action;
  m.action_len = alen;
  m.body = s->body;
  m.body_len = s->body_len;
  m.has_hop_limit = s->has_hop_limit ? 1 : 0;
  m.hop_limit = s->has_hop_limit ? s->hop_limit : 0;
  pm_msg_flood_id(&m, m.id);
  n->signer.sign(n->signer.ud, n->id, m.id, m.sig);
  pm_dedup_insert(n->seen, m.id, now);
  if (id_out)
    memcpy(id_out, m.id, PM_MSG_ID_LEN);
  int how = propagation(n, &m, PM_ORIGIN_LOCAL);
  if (how & PM_PROPAGATE_LOCAL)
    deliver(n, &m, 1);
  if (!(how & PM_PROPAGATE_REMOTE))
    return 0;
  if (m.has_hop_limit && m.hop_limit == 0)
    return 0; /* this node only */
  forward(n, now, NULL, &m, NULL);
  finish(n, now);
  return 0;
}

void pm_node_leave(pm_node *n, uint64_t now) {
  if (n->left)
    return;
  /* Goodbye to the mesh first: this node pushes its own messages on every
   * link, ahead of the Disconnects. */
  if (n->online) {
    uint8_t body[4];
    pm_store_u32(body, n->incarnation);
    send_presence(n, now, "$leave", body, sizeof body);
  }
  /* Choose every link's referrals before closing any, so that each
   * neighbour learns of all the others. */
  size_t count = n->nlinks;
  pm_msg_referrals *refs = count ? mem_alloc(n, count * sizeof *refs) : NULL;
  for (size_t i = 0; refs && i < count; i++)
    pick_referrals(n, n->links[i], &refs[i]);
  for (size_t i = 0; i < count; i++) {
    link *l = n->links[i];
    close_link(n, l, now, PM_CLOSE_LEAVING, goodbye_frame(l),
               refs ? &refs[i] : NULL);
  }
  mem_free(n, refs);
  n->left = 1;
}

/* A link's own next deadline: connect or idle timeout, falling silent,
 * ping, digest. */
static uint64_t link_due(const link *l, uint64_t now) {
  /* A connected link falling silent counts no more for maintain(); once
   * silent, what is left is its idle timeout. */
  uint64_t d = l->last_recv + PRUNE_SILENT_MS;
  if (l->state != LINK_CONNECTED || d <= now)
    d = l->last_recv + IDLE_TIMEOUT_MS;
  uint64_t t = l->state != LINK_CONNECTED ? l->opened_at + CONNECT_TIMEOUT_MS
               : l->next_digest < l->last_send + PING_INTERVAL_MS
                   ? l->next_digest
                   : l->last_send + PING_INTERVAL_MS;
  return t < d ? t : d;
}

void pm_node_handle_timeout(pm_node *n, uint64_t now) {
  /* Every link is visited: the lower bound becomes exact again. */
  n->links_due = PM_DEADLINE_NONE;
  for (size_t i = 0; i < n->nlinks; i++) {
    link *l = n->links[i];
    if (l->state == LINK_CLOSED)
      continue;
    if (l->state != LINK_CONNECTED &&
        now - l->opened_at >= CONNECT_TIMEOUT_MS) {
      close_link(n, l, now, PM_CLOSE_CONNECT_TIMEOUT, 0, NULL);
      continue;
    }
    if (now - l->last_recv >= IDLE_TIMEOUT_MS) {
      close_link(n, l, now, PM_CLOSE_IDLE_TIMEOUT, 0, NULL);
      continue;
    }
    if (l->state == LINK_CONNECTED && !n->left && now >= l->next_digest)
      send_digest(n, l, now);
    if (l->state == LINK_CONNECTED && now - l->last_send >= PING_INTERVAL_MS &&
        pm_msg_write_empty(&l->out, PM_FRAME_PING) == 0)
      want_send(n, l, now);
    note_link_due(n, link_due(l, now));
  }
  pm_dedup_expire(n->seen, now);
  pm_msgcache_expire(n->cache, now);
  request_missing(n, now);
  if (!n->left) {
    if (now >= n->suspects_due)
      send_suspects_due(n, now);
    tree_refresh(n, now, 1);
    if (n->online && now >= n->next_refresh)
      refresh_due(n, now);
    uint32_t floor = mesh_interval(n);
    pm_members_set_floor(n->members, floor + floor / 4);
    pm_members_expire(n->members, now, member_failed, n);
    note_members(n);
  }
  finish(n, now);
}

static uint64_t min64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

uint64_t pm_node_deadline(const pm_node *n) {
  if (n->left)
    return PM_DEADLINE_NONE;
  uint64_t d = n->links_due;
  /* Wake for a candidate's backoff only when maintain() would dial it:
   * an address already linked, or a full set of links, needs no timer. */
  unsigned have = n->live_n;
  unsigned pending = have < n->ideal_n ? pending_outbound(n) : 0;
  if (have + pending < n->ideal_n && n->nconnected + pending < n->max_n)
    for (size_t i = 0; i < n->ncands; i++) {
      const candidate *c = &n->cands[i];
      if (!c->self && !c->dialing && !connected_to(n, c))
        d = min64(d, c->next_try);
    }
  if (have < n->ideal_n)
    d = min64(d, n->next_resolve);
  have = n->nconnected;
  if (have > n->ideal_n)
    d = min64(d, n->next_prune);
  if (have >= n->min_n && have < n->max_n)
    d = min64(d, n->next_explore);
  d = min64(d, n->missing_due);
  d = min64(d, pm_tree_deadline(&n->tree));
  if (n->announce_at)
    d = min64(d, n->announce_at);
  if (n->online)
    d = min64(d, n->next_refresh);
  d = min64(d, n->members_due);
  d = min64(d, n->suspects_due);
  return d;
}

int pm_node_next_output(pm_node *n, pm_output *out) {
  /* The last SEND's bytes are the app's no longer. */
  pm_buf_reset(&n->scratch);
  pm_buf_trim(&n->scratch, BUF_KEEP_BYTES);
  while (n->outq_len) {
    out_item *o = &n->outq[n->outq_head];
    n->outq_head = (n->outq_head + 1) % n->outq_cap;
    n->outq_len--;
    memset(out, 0, sizeof *out);
    out->kind = o->kind;
    out->link_id = o->link_id;
    if (o->kind == PM_OUT_SEND) {
      link *l = find_link(n, o->link_id);
      if (!l)
        continue;
      l->send_queued = 0;
      if (l->out.len == 0)
        continue;
      /* Hand the bytes over by swapping buffers: no copy. */
      pm_buf t = n->scratch;
      n->scratch = l->out;
      l->out = t;
      pm_buf_reset(&l->out);
      pm_buf_trim(&l->out, BUF_KEEP_BYTES);
      out->data = n->scratch.data;
      out->len = n->scratch.len;
      if (n->queue_limit)
        l->in_flight += out->len;
      return 1;
    }
    if (o->kind == PM_OUT_CLOSE) {
      link *l = find_link(n, o->link_id);
      if (l)
        free_link(n, l);
      return 1;
    }
    copy_str(n->out_addr, sizeof n->out_addr, o->addr);
    out->addr = n->out_addr;
    return 1;
  }
  return 0;
}

int pm_node_next_event(pm_node *n, pm_event *ev) {
  mem_free(n, n->ev_current.body);
  n->ev_current.body = NULL;
  if (n->mevq_len && (n->evq_len == 0 || n->mevq[n->mevq_head].order <
                                             n->evq[n->evq_head].order)) {
    /* A table's worth of these can come at once: only the event itself is
     * written, and its strings are the empty ones of ev_current. */
    const mev_item *m = &n->mevq[n->mevq_head];
    memset(ev, 0, sizeof *ev);
    ev->kind = m->kind;
    memcpy(ev->peer, m->id, PM_NODE_ID_LEN);
    n->ev_current.action[0] = '\0';
    n->ev_current.addr[0] = '\0';
    ev->action = n->ev_current.action;
    ev->addr = n->ev_current.addr;
    n->mevq_head = n->mevq_head + 1 == n->mevq_cap ? 0 : n->mevq_head + 1;
    n->mevq_len--;
    return 1;
  }
  if (n->evq_len == 0) {
    /* Drained: a burst keeps no memory. */
    if (n->evq_cap > RING_KEEP) {
      mem_free(n, n->evq);
      n->evq = NULL;
      n->evq_cap = n->evq_head = 0;
    }
    if (n->mevq_cap > RING_KEEP) {
      mem_free(n, n->mevq);
      n->mevq = NULL;
      n->mevq_cap = n->mevq_head = 0;
    }
    return 0;
  }
  /* The item's slot may be reused by the next call: what the event points
   * to moves to ev_current, strings as long as they are. */
  const ev_item *e = &n->evq[n->evq_head];
  *ev = e->ev;
  memcpy(n->ev_current.action, e->action, strlen(e->action) + 1);
  memcpy(n->ev_current.addr, e->addr, strlen(e->addr) + 1);
  n->ev_current.body = e->body;
  n->evq_head = (n->evq_head + 1) % n->evq_cap;
  n->evq_len--;
  ev->action = n->ev_current.action;
  ev->addr = n->ev_current.addr;
  ev->body = n->ev_current.body;
  return 1;
}

void pm_node_prefetch(const pm_node *n) {
  /* The fields every event reads come first in struct pm_node. Nothing is
   * read here: the node itself is still on its way. */
  const char *p = (const char *)n;
  for (size_t off = 0; off < offsetof(struct pm_node, tree) + 128; off += 64)
    __builtin_prefetch(p + off);
}

void pm_node_prefetch_link(const pm_node *n, uint32_t link_id) {
  (void)link_id; /* which link is found in the next stage */
  __builtin_prefetch(n->link_ids);
  __builtin_prefetch(n->links);
  __builtin_prefetch(n->seen);
  __builtin_prefetch(n->authors);
  __builtin_prefetch(n->cache);
}

/* The IDs the whole frames at the start of `data` will look up: their
 * slots at stage 0, the entries the slots name at stage 1. */
static void prefetch_id(const pm_node *n, const uint8_t *id,
                        const uint8_t *author, int stage) {
  if (stage == 0) {
    pm_dedup_prefetch(n->seen, id);
    if (author)
      pm_authors_prefetch(n->authors, author);
  } else {
    pm_dedup_prefetch_entry(n->seen, id);
    if (author)
      pm_authors_prefetch_entry(n->authors, author);
  }
}

static void prefetch_frames(const pm_node *n, const uint8_t *data, size_t len,
                            int stage) {
  pm_frame f;
  size_t used;
  int flood = 0;
  for (int k = 0; k < 4 && data && pm_frame_parse(data, len, &f, &used) == 1;
       k++, data += used, len -= used) {
    const uint8_t *ids;
    size_t count;
    if (f.type == PM_FRAME_FLOOD && f.len >= PM_MSG_ID_LEN + PM_NODE_ID_LEN) {
      prefetch_id(n, f.payload, f.payload + PM_MSG_ID_LEN, stage);
      flood = 1;
    } else if (f.type == PM_FRAME_IHAVE &&
               pm_msg_read_ids(&f, &ids, &count) == 0)
      for (size_t i = 0; i < count; i++)
        prefetch_id(n, ids + i * PM_MSG_ID_LEN, NULL, stage);
  }
  if (flood && stage == 1)
    pm_msgcache_prefetch(n->cache); /* where a new message is kept */
}

void pm_node_prefetch_input(const pm_node *n, uint32_t link_id,
                            const uint8_t *data, size_t len) {
  for (size_t i = 0; i < n->nlinks; i++)
    if (n->link_ids[i] == link_id) {
      const char *l = (const char *)n->links[i];
      __builtin_prefetch(l);
      __builtin_prefetch(l + 64);
      __builtin_prefetch(l + 128);
      break;
    }
  prefetch_frames(n, data, len, 0);
}

void pm_node_prefetch_entries(const pm_node *n, const uint8_t *data,
                              size_t len) {
  prefetch_frames(n, data, len, 1);
}

void pm_node_set_filter(pm_node *n, pm_filter_fn fn, void *ud) {
  n->filter = fn;
  n->filter_ud = ud;
}

void pm_node_get_stats(const pm_node *n, pm_node_stats *out) {
  *out = n->stats;
  out->neighbors = n->nconnected;
  out->links = (unsigned)n->nlinks;
  out->members = pm_members_live(n->members);
}

size_t pm_node_members(const pm_node *n, pm_member_info *out, size_t max) {
  uint32_t count = pm_members_count(n->members);
  for (uint32_t i = 0; i < count && i < max; i++)
    pm_members_at(n->members, i, &out[i], NULL);
  return count;
}

int pm_node_is_online(const pm_node *n) {
  return n->online;
}
const uint8_t *pm_node_id(const pm_node *n) {
  return n->id;
}
const char *pm_node_mesh(const pm_node *n) {
  return n->mesh;
}
