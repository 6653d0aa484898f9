/* The mesh node core: one node's membership of one mesh, with no I/O.
 *
 * The application feeds it what happened (a link opened, bytes arrived, a
 * dial failed, time passed, the user sent a message), each call carrying the
 * current time `now` in milliseconds of a monotonic clock. The core answers
 * through two queues that the application drains after every call:
 *   - outputs (pm_node_next_output): bytes to write on a link, a link to close
 *     once its bytes are written, an address to dial, a wish for more
 *     addresses from the resolvers;
 *   - events (pm_node_next_event): messages delivered, online/offline,
 *     neighbours up and down, members joined, left and failed.
 * and through pm_node_deadline, the time at which pm_node_handle_timeout must
 * next be called. Randomness comes from the injected `random` callback and
 * memory from the injected allocator, so a run is reproducible from its
 * inputs: tests pass literal timestamps, the simulator a virtual clock. */
#ifndef PEERMESH_NODE_H
#define PEERMESH_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/alloc.h"
#include "peermesh/error.h"
#include "peermesh/idpool.h"

#define PM_NODE_ID_LEN 32
#define PM_MSG_ID_LEN 32
/* Mesh names: 1..63 bytes of [A-Za-z0-9._-]. */
#define PM_MESH_NAME_MAX 63
/* Actions: 1..64 bytes. */
#define PM_ACTION_MAX 64
/* Largest message body; the rest of a 64 KiB frame is headers. */
#define PM_BODY_MAX 65000

#define PM_DEADLINE_NONE UINT64_MAX

/* Why a link was refused or closed; carried in Refuse and Disconnect. */
enum pm_close_reason {
  PM_CLOSE_NONE = 0,
  PM_CLOSE_LEAVING = 1,            /* the sender leaves the mesh */
  PM_CLOSE_NOT_USEFUL = 2,         /* pruned as the least useful link */
  PM_CLOSE_DUPLICATE_NEIGHBOR = 3, /* another link to the same node won */
  PM_CLOSE_DUPLICATE_NODE_ID = 4,  /* the peer has the receiver's node ID */
  PM_CLOSE_NODE_BUSY = 5,          /* the sender has its maximum of links */
  PM_CLOSE_CONNECT_TIMEOUT = 6,    /* not connected in time */
  PM_CLOSE_PROTOCOL_ERROR = 7,     /* the peer sent something invalid */
  PM_CLOSE_IDLE_TIMEOUT = 8,       /* nothing heard for too long */
  PM_CLOSE_TRANSPORT = 9,          /* the connection failed (local only) */
  PM_CLOSE_TOO_SLOW = 10,          /* its send queue would not drain (local) */
};

/* The stable lower-case name of a close reason, e.g. "node_busy". */
const char *pm_close_reason_name(int reason);

typedef struct pm_node pm_node;

#define PM_SIG_BYTES 64
#define PM_SECRET_KEY_BYTES 64

/* Signs and checks flooded messages. Without one, the node signs with
 * Ed25519 (config.secret_key) and verifies with the author's node ID as the
 * Ed25519 public key, which is what real nodes do. A simulator may supply a
 * cheaper scheme that still binds each message to its author. */
typedef struct pm_signer {
  /* Signs the message ID `id` as `author`, this node. */
  void (*sign)(void *ud, const uint8_t author[PM_NODE_ID_LEN],
               const uint8_t id[PM_MSG_ID_LEN], uint8_t sig[PM_SIG_BYTES]);
  /* 1 when `sig` is `author`'s signature of `id`. */
  int (*verify)(void *ud, const uint8_t author[PM_NODE_ID_LEN],
                const uint8_t id[PM_MSG_ID_LEN],
                const uint8_t sig[PM_SIG_BYTES]);
  void *ud;
} pm_signer;

typedef struct pm_node_config {
  const char *mesh;                /* NUL-terminated mesh name */
  uint8_t node_id[PM_NODE_ID_LEN]; /* this node's ID (its public key) */
  uint16_t listen_port;            /* advertised to neighbours; 0 = none */
  unsigned min_neighbors;          /* 0 = default (2) */
  unsigned ideal_neighbors;        /* 0 = default (4) */
  unsigned max_neighbors;          /* 0 = default (8) */
  size_t cache_bytes;              /* payloads kept for Graft; 0 = 1 MiB */
  /* Most bytes a link may have waiting to be written. 0 = unlimited, for
   * applications that do not call pm_node_link_drained. */
  size_t send_queue_limit;
  uint64_t (*random)(void *ud); /* required: uniform 64-bit values */
  void *random_ud;
  const pm_allocator *alloc; /* NULL = the C library's */
  /* The Ed25519 secret key (libsodium's 64-byte form) whose public half is
   * node_id; required unless `signer` is given. The node keeps a copy. */
  const uint8_t *secret_key;
  const pm_signer *signer; /* NULL: Ed25519 with secret_key */
  /* The first sequence number this node gives its messages (0 means 1).
   * Receivers refuse an author's sequence numbers far below the highest
   * they accepted (replays), so a restarted node must start above its
   * earlier runs: runtime/io uses the wall clock in microseconds. */
  uint64_t first_seq;
  /* Most members the presence table keeps (0 = 16384). */
  uint32_t member_capacity;
  /* Where the member and author tables keep node IDs: a pool shared with
   * the other nodes this thread runs (peermesh/idpool.h), or NULL for the
   * node's own entries. It must outlive the node. */
  pm_idpool *ids;
  /* The same for the payload cache's frames: one copy for all the nodes
   * sharing the pool, each with its own hop count. NULL: its own copies.
   * A pool for `ids` and one for `frames` are two pools. */
  pm_idpool *frames;
} pm_node_config;

/* Creates a node. Returns 0 and sets *out, or PM_ERR_INVAL (bad mesh name,
 * inconsistent neighbour counts, no random source) or PM_ERR_NOMEM. */
int pm_node_new(const pm_node_config *cfg, pm_node **out) PM_MUST_CHECK;
void pm_node_free(pm_node *node);

/* ---- links --------------------------------------------------------------
 * A link is one transport connection. `remote_host` is the peer's observed IP
 * address as text (used to build referrals from the port it advertises).
 * `dial_addr` is the address that was dialled for outbound links, NULL for
 * inbound ones. Returns 0 and the link's ID, PM_ERR_FULL when the node takes
 * no more links (close the connection at once), or PM_ERR_CLOSED after
 * pm_node_leave. */
int pm_node_link_open(pm_node *node, uint64_t now, int outbound,
                      const char *remote_host, const char *dial_addr,
                      uint32_t *link_id) PM_MUST_CHECK;
/* The link's transport authenticated the peer as this Ed25519 key (the
 * secure channel, runtime/core/secure.h): its Hello must name the same node
 * ID, or the link closes with PM_ERR_AUTH. Call before the Hello arrives. */
void pm_node_link_set_peer_key(pm_node *node, uint32_t link_id,
                               const uint8_t key[PM_NODE_ID_LEN]);
/* Bytes received on a link. Returns 0, or a negative code when the bytes
 * violated the protocol: the core has then queued a close of the link and
 * the code says why (PM_ERR_VERSION, PM_ERR_FRAME_TOO_LARGE, ...). Unknown
 * link IDs are ignored. */
int pm_node_link_recv(pm_node *node, uint64_t now, uint32_t link_id,
                      const uint8_t *data, size_t len);
/* The transport connection ended (EOF, error, or after a close output). */
void pm_node_link_closed(pm_node *node, uint64_t now, uint32_t link_id);
/* `bytes` of what the link's SEND outputs carried have been written (they
 * left the application's queue). Only needed with send_queue_limit. */
void pm_node_link_drained(pm_node *node, uint64_t now, uint32_t link_id,
                          size_t bytes);
/* An address from a DIAL output could not be reached. */
void pm_node_dial_failed(pm_node *node, uint64_t now, const char *addr);

/* ---- commands ----------------------------------------------------------- */

/* Adds an address to try. `node_id` may be NULL when unknown. A `pinned`
 * address (given by the user) is retried for as long as the node runs; others
 * are forgotten after repeated failures. Returns 0, PM_ERR_INVAL for a
 * malformed address, PM_ERR_FULL when the candidate table holds only pinned
 * or in-use addresses, or PM_ERR_CLOSED after pm_node_leave. */
int pm_node_add_peer(pm_node *node, uint64_t now, const char *addr,
                     const uint8_t *node_id, int pinned) PM_MUST_CHECK;

typedef struct pm_send {
  const char *action; /* 1..PM_ACTION_MAX bytes, NUL-terminated */
  const uint8_t *body;
  size_t body_len;    /* at most PM_BODY_MAX */
  uint64_t time_ms;   /* wall-clock time of sending, ms since the Unix epoch */
  int has_hop_limit;  /* 0: unlimited */
  uint32_t hop_limit; /* 0: this node only */
} pm_send;

/* Floods a message to the mesh and delivers it locally (event with
 * own = 1). Returns 0 and the message ID, PM_ERR_INVAL (also for actions
 * beginning with '$', which are reserved for the core's presence messages),
 * PM_ERR_NOMEM, or PM_ERR_CLOSED after pm_node_leave. */
int pm_node_send(pm_node *node, uint64_t now, const pm_send *msg,
                 uint8_t id_out[PM_MSG_ID_LEN]) PM_MUST_CHECK;

/* Tells the mesh this member leaves (a "$leave" presence message), says
 * goodbye to every neighbour (Disconnect, leaving) and closes the links.
 * Later commands fail with PM_ERR_CLOSED; outputs already queued remain. */
void pm_node_leave(pm_node *node, uint64_t now);

/* Runs the timers due at `now`. */
void pm_node_handle_timeout(pm_node *node, uint64_t now);
/* When pm_node_handle_timeout must next run, or PM_DEADLINE_NONE. */
uint64_t pm_node_deadline(const pm_node *node);

/* ---- outputs ------------------------------------------------------------ */

enum pm_output_kind {
  PM_OUT_SEND = 1,    /* write data[0..len) on link */
  PM_OUT_CLOSE = 2,   /* close link after the data already given */
  PM_OUT_DIAL = 3,    /* open an outbound link to addr */
  PM_OUT_RESOLVE = 4, /* ask the resolvers for addresses of this mesh */
};

typedef struct pm_output {
  int kind;
  uint32_t link_id;
  const uint8_t *data; /* valid until the next call into the node */
  size_t len;
  const char *addr; /* DIAL: NUL-terminated, valid until the next call */
} pm_output;

/* Returns 1 and fills `out`, or 0 when the queue is empty. */
int pm_node_next_output(pm_node *node, pm_output *out);

/* ---- events ------------------------------------------------------------- */

enum pm_event_kind {
  PM_EV_MESSAGE = 1,
  PM_EV_ONLINE = 2,  /* the first neighbour connected */
  PM_EV_OFFLINE = 3, /* the last neighbour went */
  PM_EV_NEIGHBOR_UP = 4,
  PM_EV_NEIGHBOR_DOWN = 5,
  PM_EV_LINK_ERROR = 6, /* a link was closed for a protocol error */
  /* Member presence (docs/PROTOCOL.md §5.5); `peer` is the member's ID. */
  PM_EV_MEMBER_JOINED = 7, /* first heard of, or back after left/failed */
  PM_EV_MEMBER_LEFT = 8,   /* said goodbye */
  PM_EV_MEMBER_FAILED = 9, /* suspected and not refuted, or long silent */
};

typedef struct pm_event {
  int kind;
  /* PM_EV_MESSAGE; pointers valid until the next call into the node */
  uint8_t id[PM_MSG_ID_LEN];
  uint8_t origin[PM_NODE_ID_LEN];
  uint64_t seq;
  uint64_t time_ms;
  uint32_t hops;      /* hops travelled; 0 for own messages */
  int own;            /* sent by this node */
  const char *action; /* NUL-terminated */
  const uint8_t *body;
  size_t body_len;
  /* PM_EV_NEIGHBOR_UP/DOWN, PM_EV_LINK_ERROR; PM_EV_MEMBER_*: the member */
  uint8_t peer[PM_NODE_ID_LEN]; /* zero when the peer never said hello */
  const char *addr;             /* the peer's address, NUL-terminated */
  int reason;                   /* enum pm_close_reason */
  int error;                    /* PM_EV_LINK_ERROR: the PM_ERR_* code */
  uint32_t link_id;
} pm_event;

/* Hints, for an application driving many nodes: `node` is about to be
 * called. Its state starts loading from memory now, while the caller does
 * other work. No effect on behaviour. Each stage reads what the one before
 * loaded, so they pay off called in order, each some time (another node's
 * event) after the one before: pm_node_prefetch loads the node,
 * pm_node_prefetch_link what finding `link_id` and looking up messages
 * reads, pm_node_prefetch_input the link and, for the bytes `data` about to
 * be passed to pm_node_link_recv, where their frames' IDs are indexed, and
 * pm_node_prefetch_entries the entries those name. */
void pm_node_prefetch(const pm_node *node);
void pm_node_prefetch_link(const pm_node *node, uint32_t link_id);
void pm_node_prefetch_input(const pm_node *node, uint32_t link_id,
                            const uint8_t *data, size_t len);
void pm_node_prefetch_entries(const pm_node *node, const uint8_t *data,
                              size_t len);

/* Returns 1 and fills `ev`, or 0 when no event is pending. */
int pm_node_next_event(pm_node *node, pm_event *ev);

/* ---- propagation filter ---------------------------------------------------
 * PeerChannel's PeerMessagePropagationFilter: for every new message, sent
 * here (PM_ORIGIN_LOCAL) or received (PM_ORIGIN_REMOTE), the filter decides
 * whether it is delivered here (LOCAL), sent on to neighbours (REMOTE),
 * both, or dropped. `msg` is an event view valid during the call only. The
 * filter runs inside the node: it must not call into the node. */

enum pm_propagation {
  PM_PROPAGATE_NONE = 0,
  PM_PROPAGATE_LOCAL = 1,
  PM_PROPAGATE_REMOTE = 2,
  PM_PROPAGATE_BOTH = 3,
};

enum pm_origination { PM_ORIGIN_LOCAL = 0, PM_ORIGIN_REMOTE = 1 };

typedef int (*pm_filter_fn)(void *ud, const pm_event *msg, int origination);

/* Sets (or with NULL clears) the filter. Without one, every message is
 * delivered and sent on. */
void pm_node_set_filter(pm_node *node, pm_filter_fn fn, void *ud);

/* ---- inspection --------------------------------------------------------- */

typedef struct pm_node_stats {
  unsigned neighbors;  /* connected neighbours */
  unsigned links;      /* all open links, connected or not */
  uint64_t delivered;  /* messages delivered locally */
  uint64_t duplicates; /* copies dropped as already seen */
  uint64_t invalid;    /* frames rejected; forged or altered messages */
  uint64_t replayed;   /* messages refused as replays of older ones */
  uint64_t grafts;     /* messages asked for after an announcement */
  uint64_t dropped;    /* copies not queued for a last, slow neighbour */
  unsigned members;    /* other members known alive (or suspect) */
} pm_node_stats;

void pm_node_get_stats(const pm_node *node, pm_node_stats *out);
int pm_node_is_online(const pm_node *node);
const uint8_t *pm_node_id(const pm_node *node);

/* ---- members ----------------------------------------------------------- */

enum pm_member_state {
  PM_MEMBER_ALIVE = 1,
  PM_MEMBER_SUSPECT = 2, /* a neighbour lost it; failed unless it refutes */
  PM_MEMBER_LEFT = 3,
  PM_MEMBER_FAILED = 4,
};

typedef struct pm_member_info {
  uint8_t id[PM_NODE_ID_LEN];
  uint32_t incarnation;
  int state;           /* enum pm_member_state */
  uint64_t last_heard; /* node time (ms) of the last news of it */
} pm_member_info;

/* Copies up to `max` entries of the member table (this node excluded), in
 * no particular order, and returns how many it holds. */
size_t pm_node_members(const pm_node *node, pm_member_info *out, size_t max);
const char *pm_node_mesh(const pm_node *node);

#endif
