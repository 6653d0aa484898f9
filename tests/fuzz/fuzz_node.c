/* Fuzz target: the whole node state machine (peermesh/node.h) driven by the
 * bytes a hostile peer sends on one link.
 *
 * Input layout:
 *   byte 0  flags (FLAG_* below): link direction and what else the harness
 *           does around the fuzzed link
 *   byte 1  chunking: 0 feeds the stream in one pm_node_link_recv call;
 *           otherwise chunks of 1..((b & 0x3f) + 1) * 8 bytes, or single
 *           bytes when bit 6 is set; bit 7 varies the time step per chunk
 *   byte 2  time step s: the clock moves s * s ms after each chunk (0..65 s,
 *           enough to cross the 45 s idle timeout in one step)
 *   byte 3  bit 0: before feeding the stream, the harness rewrites the ID
 *           of every whole Flood frame in it to the right one, so that
 *           mutated floods still pass the ID check; bits 1..7: allocation
 *           failure rate, out of 256, when FLAG_ALLOC_FAIL
 *   byte 4  configuration (CONF_* below): neighbour counts, cache size,
 *           how the harness's own neighbour and the transport behave
 *   5..     the stream the peer sends: frames of docs/PROTOCOL.md
 * Missing header bytes count as zero. Virtual time is bounded: after
 * TIMER_BUDGET timer runs the clock jumps to each new time with one run.
 *
 * The node (mesh "fuzz", ID 32 x 0xa0) opens the fuzzed link to or from
 * 10.0.0.1; with FLAG_SECOND it first gets a second neighbour, 32 x 0x60 at
 * 10.0.0.2, connected by the harness, so that floods are forwarded,
 * announced and grafted, and a peer claiming that ID makes a duplicate. After
 * every call the harness drains outputs and events, as an application must, and
 * runs the timers at each deadline up to the next literal time. At the end time
 * runs on past every timeout, and the node is freed, so LeakSanitizer sees
 * anything it lost.
 *
 * Besides memory errors, these must hold (while no allocation has failed):
 *   - every SEND output is a whole number of well-formed frames that the
 *     node's own decoders accept, floods with the right ID;
 *   - DIAL addresses parse; events are well-formed;
 *   - NEIGHBOR_UP minus NEIGHBOR_DOWN events equal the connected neighbours,
 *     and ONLINE/OFFLINE events track pm_node_is_online;
 *   - after pm_node_handle_timeout(now) the deadline is later than now (a
 *     deadline in the past would spin the application's loop).
 * A failed check aborts. Built with replay.c it replays a corpus under
 * `make test`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "frame.h"
#include "members.h"
#include "msg.h"
#include "peermesh/node.h"
#include "test_signer.h"
#include "tree.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__,          \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)
#define FUZZ_FAIL(what)                                                        \
  do {                                                                         \
    fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__,  \
            what);                                                             \
    abort();                                                                   \
  } while (0)

enum {
  FLAG_OUTBOUND = 0x01,    /* the node dialled 10.0.0.1:4001 */
  FLAG_SECOND = 0x02,      /* a second, harness-driven neighbour */
  FLAG_SEND_OWN = 0x04,    /* the node sends a message before the stream */
  FLAG_FILTER = 0x08,      /* a propagation filter is installed */
  FLAG_QUEUE_LIMIT = 0x10, /* a send queue limit of 2 KiB */
  FLAG_FAIL_DIALS = 0x20,  /* DIAL outputs fail at once */
  FLAG_LEAVE = 0x40,       /* the node leaves the mesh after the stream */
  FLAG_ALLOC_FAIL = 0x80,  /* allocations fail now and then after setup */
};

/* Build with -DFUZZ_TRACE to see what the node does with an input. */
#ifdef FUZZ_TRACE
#define TRACE(...) fprintf(stderr, __VA_ARGS__)
#else
#define TRACE(...) ((void)0)
#endif

enum {
  CONF_COUNTS = 0x03,      /* neighbour counts: default, 1/1/1, 1/1/2, 2/2/3 */
  CONF_SMALL_CACHE = 0x04, /* a 2 KiB payload cache */
  CONF_DRAINED = 0x08,     /* every SEND is reported written at once */
  CONF_SECOND_OUT = 0x10,  /* the node dialled its second neighbour */
  CONF_TRANSPORT_END = 0x20, /* the fuzzed link's TCP ends after the stream */
  CONF_OWN_HOP_LIMIT = 0x40, /* the node's own message has hop limit 1 */
  CONF_PEER_KEY = 0x80,      /* the transport authenticated the peer as
                                32 x 0x50 (pm_node_link_set_peer_key) */
};

#define HEADER 5
#define PEER_ID_BYTE 0x50
#define MESH "fuzz"
#define NODE_ID_BYTE 0xa0
#define SECOND_ID_BYTE 0x60
#define MAX_DIALS 16
#define TIMER_BUDGET 512 /* per input, to keep slow inputs fast */

typedef struct fuzz_alloc {
  pm_allocator a;
  int armed;
  unsigned rate; /* out of 256 */
  uint64_t rng;
  unsigned failed;
} fuzz_alloc;

typedef struct harness {
  pm_node *node;
  uint64_t now;
  uint64_t rng;
  fuzz_alloc alloc;
  uint8_t id[PM_NODE_ID_LEN];
  int fail_dials;
  int report_drained;
  unsigned timer_runs;
  char dials[MAX_DIALS][PM_ADDR_MAX + 1];
  size_t ndials;
  int online;     /* as the events told it */
  long neighbors; /* NEIGHBOR_UP minus NEIGHBOR_DOWN events */
  uint64_t sink;  /* every output byte is read, for the sanitizers */
} harness;

static uint64_t xorshift(void *ud) {
  uint64_t *s = ud;
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void *fuzz_realloc(void *ud, void *ptr, size_t size) {
  fuzz_alloc *fa = ud;
  if (size == 0) {
    free(ptr);
    return NULL;
  }
  if (fa->armed && (xorshift(&fa->rng) & 0xff) < fa->rate) {
    fa->failed++;
    return NULL;
  }
  return realloc(ptr, size);
}

/* Checks are exact only while memory has never run out: after a failed
 * allocation the node may lose an event or a frame by design. */
static int exact(const harness *h) {
  return h->alloc.failed == 0;
}

static void touch(harness *h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    h->sink = h->sink * 31 + p[i];
}

/* Every frame the node writes must be one its own decoders accept. */
static void check_frames(harness *h, const uint8_t *data, size_t len) {
  size_t off = 0;
  while (off < len) {
    pm_frame f;
    size_t used = 0;
    FUZZ_CHECK(pm_frame_parse(data + off, len - off, &f, &used) == 1);
    off += used;
    TRACE("  sent frame 0x%02x, %zu bytes\n", f.type, f.len);
    switch (f.type) {
    case PM_FRAME_HELLO: {
      pm_msg_hello m;
      FUZZ_CHECK(pm_msg_read_hello(&f, &m) == 0);
      FUZZ_CHECK(m.mesh_len == strlen(MESH) &&
                 memcmp(m.mesh, MESH, m.mesh_len) == 0);
      FUZZ_CHECK(memcmp(m.node_id, h->id, PM_NODE_ID_LEN) == 0);
      break;
    }
    case PM_FRAME_CONNECT:
    case PM_FRAME_PING:
      FUZZ_CHECK(f.len == 0);
      break;
    case PM_FRAME_SYNC: {
      uint32_t window;
      FUZZ_CHECK(pm_msg_read_sync(&f, &window) == 0);
      break;
    }
    case PM_FRAME_TREE: {
      pm_tree_adv a;
      FUZZ_CHECK(pm_msg_read_tree(&f, &a) == 0);
      break;
    }
    case PM_FRAME_WELCOME:
    case PM_FRAME_REFUSE:
    case PM_FRAME_DISCONNECT: {
      pm_msg_referrals r;
      FUZZ_CHECK(pm_msg_read_referrals(&f, &r) == 0);
      FUZZ_CHECK(f.type != PM_FRAME_WELCOME || r.reason == PM_CLOSE_NONE);
      FUZZ_CHECK(
          f.type == PM_FRAME_WELCOME ||
          (r.reason >= PM_CLOSE_LEAVING && r.reason <= PM_CLOSE_NODE_BUSY));
      break;
    }
    case PM_FRAME_FLOOD: {
      pm_msg_flood m;
      uint8_t id[PM_MSG_ID_LEN];
      FUZZ_CHECK(pm_msg_read_flood(&f, &m) == 0);
      FUZZ_CHECK(m.action_len <= PM_ACTION_MAX && m.body_len <= PM_BODY_MAX);
      pm_msg_flood_id(&m, id);
      FUZZ_CHECK(memcmp(id, m.id, PM_MSG_ID_LEN) == 0);
      break;
    }
    case PM_FRAME_IHAVE:
    case PM_FRAME_GRAFT: {
      const uint8_t *ids;
      size_t count;
      FUZZ_CHECK(pm_msg_read_ids(&f, &ids, &count) == 0);
      break;
    }
    case PM_FRAME_MEMBERS_DIGEST: /* runtime/core/members.h */
      FUZZ_CHECK(f.len % PM_MEMBERS_DIGEST_ENTRY == 0);
      FUZZ_CHECK(f.len >= PM_MEMBERS_DIGEST_ENTRY &&
                 f.len <= PM_MEMBERS_DIGEST_LEN);
      FUZZ_CHECK(((f.len / PM_MEMBERS_DIGEST_ENTRY) &
                  (f.len / PM_MEMBERS_DIGEST_ENTRY - 1)) == 0);
      break;
    case PM_FRAME_MEMBERS_SUBDIGEST: {
      size_t k = f.len / PM_MEMBERS_SUBDIGEST_ENTRY;
      FUZZ_CHECK(f.len % PM_MEMBERS_SUBDIGEST_ENTRY == 0);
      FUZZ_CHECK(k >= 1 && k <= PM_MEMBERS_BUCKETS);
      for (size_t i = 1; i < k; i++)
        FUZZ_CHECK(f.payload[i * PM_MEMBERS_SUBDIGEST_ENTRY] >
                   f.payload[(i - 1) * PM_MEMBERS_SUBDIGEST_ENTRY]);
      break;
    }
    case PM_FRAME_MEMBERS_WANT: {
      size_t k = f.len / 2;
      FUZZ_CHECK(f.len % 2 == 0 && k >= 1 && k <= PM_MEMBERS_SUBBUCKETS);
      for (size_t i = 0; i < k; i++) {
        uint32_t sub = (uint32_t)f.payload[2 * i] << 8 | f.payload[2 * i + 1];
        FUZZ_CHECK(sub < PM_MEMBERS_SUBBUCKETS);
        FUZZ_CHECK(i == 0 || sub > ((uint32_t)f.payload[2 * i - 2] << 8 |
                                    f.payload[2 * i - 1]));
      }
      break;
    }
    case PM_FRAME_MEMBERS:
      FUZZ_CHECK(f.len >= 2);
      FUZZ_CHECK(((size_t)f.payload[0] << 8 | f.payload[1]) <=
                 PM_MEMBERS_PER_FRAME);
      FUZZ_CHECK(f.len == 2 + ((size_t)f.payload[0] << 8 | f.payload[1]) *
                                  PM_MEMBERS_ENTRY_LEN);
      break;
    default:
      FUZZ_FAIL("the node sent a frame of unknown type");
    }
  }
}

static void check_event(harness *h, const pm_event *ev) {
  TRACE("%llu: event %d link %u error %s reason %d\n",
        (unsigned long long)h->now, ev->kind, ev->link_id,
        ev->error ? pm_errname(ev->error) : "-", ev->reason);
  FUZZ_CHECK(ev->addr != NULL);
  FUZZ_CHECK(strlen(ev->addr) <= PM_ADDR_MAX);
  switch (ev->kind) {
  case PM_EV_MESSAGE:
    FUZZ_CHECK(ev->action != NULL);
    FUZZ_CHECK(strlen(ev->action) >= 1 && strlen(ev->action) <= PM_ACTION_MAX);
    FUZZ_CHECK(ev->body_len <= PM_BODY_MAX);
    FUZZ_CHECK(ev->body_len == 0 || ev->body != NULL);
    if (ev->body_len)
      touch(h, ev->body, ev->body_len);
    FUZZ_CHECK(ev->own || ev->hops >= 1);
    break;
  case PM_EV_ONLINE:
    FUZZ_CHECK(!exact(h) || !h->online);
    h->online = 1;
    break;
  case PM_EV_OFFLINE:
    FUZZ_CHECK(!exact(h) || h->online);
    h->online = 0;
    break;
  case PM_EV_NEIGHBOR_UP:
    h->neighbors++;
    break;
  case PM_EV_NEIGHBOR_DOWN:
    h->neighbors--;
    FUZZ_CHECK(ev->reason >= PM_CLOSE_LEAVING &&
               ev->reason <= PM_CLOSE_TOO_SLOW);
    break;
  case PM_EV_MEMBER_JOINED:
  case PM_EV_MEMBER_LEFT:
  case PM_EV_MEMBER_FAILED:
    FUZZ_CHECK(memcmp(ev->peer, pm_node_id(h->node), PM_NODE_ID_LEN) != 0);
    break;
  case PM_EV_LINK_ERROR:
    FUZZ_CHECK(ev->error < 0);
    FUZZ_CHECK(pm_errname(ev->error) != NULL);
    FUZZ_CHECK(ev->reason == PM_CLOSE_PROTOCOL_ERROR);
    break;
  default:
    FUZZ_FAIL("unknown event kind");
  }
}

/* Takes every output and event, as an application does after each call,
 * and answers DIAL outputs with a failure when asked to. */
static void drain(harness *h) {
  for (int round = 0; round < 100; round++) {
    pm_output o;
    while (pm_node_next_output(h->node, &o)) {
      switch (o.kind) {
      case PM_OUT_SEND:
        TRACE("%llu: send on link %u\n", (unsigned long long)h->now, o.link_id);
        FUZZ_CHECK(o.data != NULL && o.len > 0);
        touch(h, o.data, o.len);
        if (exact(h))
          check_frames(h, o.data, o.len);
        /* The last use of o.data: the next call may overwrite it. */
        if (h->report_drained)
          pm_node_link_drained(h->node, h->now, o.link_id, o.len);
        break;
      case PM_OUT_CLOSE:
      case PM_OUT_RESOLVE:
        break;
      case PM_OUT_DIAL: {
        TRACE("%llu: dial %s\n", (unsigned long long)h->now, o.addr);
        char host[PM_ADDR_MAX + 1];
        uint16_t port;
        FUZZ_CHECK(o.addr != NULL);
        FUZZ_CHECK(pm_addr_parse(o.addr, host, &port, 0) == 0);
        if (h->fail_dials && h->ndials < MAX_DIALS)
          memcpy(h->dials[h->ndials++], o.addr, strlen(o.addr) + 1);
        break;
      }
      default:
        FUZZ_FAIL("unknown output kind");
      }
    }
    pm_event ev;
    while (pm_node_next_event(h->node, &ev))
      check_event(h, &ev);
    if (exact(h)) {
      pm_node_stats st;
      pm_node_get_stats(h->node, &st);
      FUZZ_CHECK(h->neighbors == (long)st.neighbors);
      FUZZ_CHECK(h->online == pm_node_is_online(h->node));
      FUZZ_CHECK(h->online == (st.neighbors > 0));
    }
    if (h->ndials == 0)
      return;
    /* Answering may ask for more dials: another round. */
    size_t n = h->ndials;
    char dials[MAX_DIALS][PM_ADDR_MAX + 1];
    memcpy(dials, h->dials, sizeof dials);
    h->ndials = 0;
    for (size_t i = 0; i < n; i++)
      pm_node_dial_failed(h->node, h->now, dials[i]);
  }
}

/* Runs the timers at each deadline up to `to`, as an application's timer
 * would, then sets the clock there. Once the input's budget of timer runs is
 * spent, the timers run once at `to`, as for an application that woke late.
 */
static void advance(harness *h, uint64_t to) {
  for (;;) {
    uint64_t d = pm_node_deadline(h->node);
    if (d > to)
      break;
    if (h->timer_runs >= TIMER_BUDGET)
      d = to;
    if (d > h->now)
      h->now = d;
    h->timer_runs++;
    pm_node_handle_timeout(h->node, h->now);
    uint64_t next = pm_node_deadline(h->node);
    int stuck = next <= h->now;
    /* Out of memory, a timer may fail to re-arm; do not spin on it. */
    if (stuck && exact(h)) {
      fprintf(stderr,
              "pm_node_handle_timeout(%llu) left the deadline at %llu\n",
              (unsigned long long)h->now, (unsigned long long)next);
      FUZZ_FAIL("the node asks to be woken in the past (a spinning timer)");
    }
    drain(h);
    if (stuck || d == to)
      break;
  }
  if (to > h->now)
    h->now = to;
}

/* Gives every whole, decodable Flood frame in `s` its right ID and its
 * author's (test) signature, so that mutated floods get past both. */
static void fix_flood_ids(uint8_t *s, size_t len) {
  size_t off = 0;
  pm_frame f;
  size_t used;
  while (off < len && pm_frame_parse(s + off, len - off, &f, &used) == 1) {
    pm_msg_flood m;
    if (f.type == PM_FRAME_FLOOD && pm_msg_read_flood(&f, &m) == 0) {
      uint8_t *payload = s + off + PM_FRAME_HEADER;
      pm_msg_flood_id(&m, payload);
      pm_test_signature(m.origin, payload, payload + f.len - PM_SIG_BYTES);
    }
    off += used;
  }
}

static int filter(void *ud, const pm_event *msg, int origination) {
  harness *h = ud;
  FUZZ_CHECK(msg->kind == PM_EV_MESSAGE);
  FUZZ_CHECK(origination == PM_ORIGIN_LOCAL || origination == PM_ORIGIN_REMOTE);
  FUZZ_CHECK(msg->action && strlen(msg->action) >= 1);
  FUZZ_CHECK(msg->body_len <= PM_BODY_MAX);
  if (msg->body_len)
    touch(h, msg->body, msg->body_len);
  /* Some of each: decided by the action, so the fuzzer can choose. */
  return (msg->action[0] ^ (origination << 1)) & PM_PROPAGATE_BOTH;
}

/* The harness's own neighbour, 10.0.0.2: it dials the node and sends
 * Hello and Connect, or the node dials it and it answers Hello and Welcome.
 */
static void connect_second(harness *h, int outbound) {
  static const char addr[] = "10.0.0.2:4002";
  uint8_t peer[PM_NODE_ID_LEN];
  memset(peer, SECOND_ID_BYTE, PM_NODE_ID_LEN);
  uint32_t id;
  if (outbound) {
    FUZZ_CHECK(pm_node_add_peer(h->node, h->now, addr, peer, 0) == 0);
    drain(h);
  }
  if (pm_node_link_open(h->node, h->now, outbound, "10.0.0.2",
                        outbound ? addr : NULL, &id) != 0)
    return;
  drain(h);
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_msg_hello hello = {MESH, strlen(MESH), {0}, 4002, 0};
  memcpy(hello.node_id, peer, PM_NODE_ID_LEN);
  pm_msg_referrals none;
  memset(&none, 0, sizeof none);
  FUZZ_CHECK(pm_msg_write_hello(&b, &hello) == 0);
  if (outbound)
    FUZZ_CHECK(pm_msg_write_referrals(&b, PM_FRAME_WELCOME, &none) == 0);
  else
    FUZZ_CHECK(pm_msg_write_empty(&b, PM_FRAME_CONNECT) == 0);
  /* An outbound link sends Connect after the Hellos: the peer's Welcome must
   * come after it, in a second read. */
  size_t first =
      outbound ? PM_FRAME_HEADER + (size_t)pm_load_u32(b.data + 2) : b.len;
  FUZZ_CHECK(pm_node_link_recv(h->node, h->now, id, b.data, first) == 0);
  drain(h);
  if (first < b.len)
    FUZZ_CHECK(pm_node_link_recv(h->node, h->now, id, b.data + first,
                                 b.len - first) == 0);
  pm_buf_free(&b);
  drain(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t head[HEADER] = {0};
  if (size)
    memcpy(head, data, size < HEADER ? size : HEADER);
  const uint8_t *stream = size > HEADER ? data + HEADER : NULL;
  size_t len = size > HEADER ? size - HEADER : 0;
  uint8_t flags = head[0], chunking = head[1], step = head[2], conf = head[4];

  harness *h = calloc(1, sizeof *h);
  if (!h)
    abort();
  h->now = 1000;
  h->rng = 0x853c49e6748fea9bu;
  h->alloc.a.realloc = fuzz_realloc;
  h->alloc.a.ud = &h->alloc;
  h->alloc.rate = head[3] & 0xfeu;
  h->alloc.rng = 0x2545f4914f6cdd1du ^ head[3];
  h->report_drained = (conf & CONF_DRAINED) != 0;
  memset(h->id, NODE_ID_BYTE, PM_NODE_ID_LEN);

  pm_node_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.mesh = MESH;
  memcpy(cfg.node_id, h->id, PM_NODE_ID_LEN);
  cfg.listen_port = 4000;
  cfg.random = xorshift;
  cfg.random_ud = &h->rng;
  static const pm_signer signer = {pm_test_sign, pm_test_verify, NULL};
  cfg.signer = &signer;
  cfg.alloc = &h->alloc.a;
  if (flags & FLAG_QUEUE_LIMIT)
    cfg.send_queue_limit = 2048;
  static const unsigned counts[4][3] = {
      {0, 0, 0}, {1, 1, 1}, {1, 1, 2}, {2, 2, 3}};
  cfg.min_neighbors = counts[conf & CONF_COUNTS][0];
  cfg.ideal_neighbors = counts[conf & CONF_COUNTS][1];
  cfg.max_neighbors = counts[conf & CONF_COUNTS][2];
  if (conf & CONF_SMALL_CACHE)
    cfg.cache_bytes = 2048;
  FUZZ_CHECK(pm_node_new(&cfg, &h->node) == 0);
  if (flags & FLAG_FILTER)
    pm_node_set_filter(h->node, filter, h);

  /* Dials made while the harness sets up are left pending. */
  if (flags & FLAG_SECOND)
    connect_second(h, (conf & CONF_SECOND_OUT) != 0);
  uint32_t link = 0;
  int rc;
  if (flags & FLAG_OUTBOUND) {
    FUZZ_CHECK(pm_node_add_peer(h->node, h->now, "10.0.0.1:4001", NULL, 1) ==
               0);
    drain(h);
    rc = pm_node_link_open(h->node, h->now, 1, "10.0.0.1", "10.0.0.1:4001",
                           &link);
  } else {
    rc = pm_node_link_open(h->node, h->now, 0, "10.0.0.1", NULL, &link);
  }
  FUZZ_CHECK(rc == 0);
  if (conf & CONF_PEER_KEY) {
    uint8_t key[PM_NODE_ID_LEN];
    memset(key, PEER_ID_BYTE, PM_NODE_ID_LEN);
    pm_node_link_set_peer_key(h->node, link, key);
  }
  drain(h);
  if (flags & FLAG_SEND_OWN) {
    /* make_corpus.py knows this message's ID, to Graft it. */
    static const char body[] = "{\"member\":\"fuzz\",\"text\":\"hello\"}";
    pm_send s = {"Chat",
                 (const uint8_t *)body,
                 sizeof body - 1,
                 UINT64_C(1700000000000),
                 (conf & CONF_OWN_HOP_LIMIT) != 0,
                 1};
    uint8_t id[PM_MSG_ID_LEN];
    FUZZ_CHECK(pm_node_send(h->node, h->now, &s, id) == 0);
    drain(h);
  }

  uint8_t *fixed = NULL;
  if ((head[3] & 1) && len) {
    fixed = malloc(len);
    if (!fixed)
      abort();
    memcpy(fixed, stream, len);
    fix_flood_ids(fixed, len);
    stream = fixed;
  }

  h->fail_dials = (flags & FLAG_FAIL_DIALS) != 0;
  h->alloc.armed = (flags & FLAG_ALLOC_FAIL) != 0;
  uint64_t chunk_rng = 0x9e3779b97f4a7c15u * ((uint64_t)chunking + 1);
  size_t max_chunk = (chunking & 0x40) ? 1 : ((chunking & 0x3fu) + 1) * 8;
  size_t off = 0;
  while (off < len) {
    size_t n = len - off;
    if (chunking) {
      size_t want = 1 + (size_t)(xorshift(&chunk_rng) % max_chunk);
      if (want < n)
        n = want;
    }
    rc = pm_node_link_recv(h->node, h->now, link, stream + off, n);
    TRACE("%llu: recv %zu bytes: %d\n", (unsigned long long)h->now, n, rc);
    FUZZ_CHECK(rc <= 0);
    if (rc < 0)
      FUZZ_CHECK(pm_errname(rc) != NULL);
    off += n;
    drain(h);
    uint64_t dt = (uint64_t)step * step;
    if (chunking & 0x80)
      dt = xorshift(&chunk_rng) % (dt + 1);
    advance(h, h->now + dt);
  }

  if (conf & CONF_TRANSPORT_END) {
    pm_node_link_closed(h->node, h->now, link);
    drain(h);
  }
  if (flags & FLAG_LEAVE) {
    pm_node_leave(h->node, h->now);
    drain(h);
    FUZZ_CHECK(pm_node_deadline(h->node) == PM_DEADLINE_NONE);
    uint8_t id[PM_MSG_ID_LEN];
    pm_send s = {"Chat", NULL, 0, 1, 0, 0};
    FUZZ_CHECK(pm_node_send(h->node, h->now, &s, id) == PM_ERR_CLOSED);
  }
  /* Time runs on past every timeout; then the transport ends. */
  advance(h, h->now + 120000);
  pm_node_link_closed(h->node, h->now, link);
  drain(h);
  if (exact(h) && !(flags & FLAG_LEAVE)) {
    /* The idle timeout has closed every link by now. */
    pm_node_stats st;
    pm_node_get_stats(h->node, &st);
    FUZZ_CHECK(st.neighbors == 0);
  }
  pm_node_free(h->node);
  free(fixed);
  free(h);
  return 0;
}
