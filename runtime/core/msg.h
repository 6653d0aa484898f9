/* Bodies of the link and mesh frames (docs/PROTOCOL.md, "Messages").
 *
 * Each pm_msg_write_* appends one whole frame to a pm_buf; each pm_msg_read_*
 * decodes the payload of a frame already cut by pm_frame_parse. Decoded views
 * (strings, bodies) point into the frame and live as long as its bytes. */
#ifndef PM_CORE_MSG_H
#define PM_CORE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "frame.h"
#include "peermesh/node.h"
#include "tree.h"

#define PM_MAX_REFERRALS 10
/* Message IDs in one IHave or Graft frame. */
#define PM_MAX_IDS 64

typedef struct pm_msg_hello {
  const char *mesh; /* view, not NUL-terminated */
  size_t mesh_len;
  uint8_t node_id[PM_NODE_ID_LEN];
  uint16_t listen_port; /* 0: the sender accepts no links */
  uint32_t features;    /* reserved, 0 */
} pm_msg_hello;

typedef struct pm_msg_referral {
  uint8_t node_id[PM_NODE_ID_LEN];
  char addr[PM_ADDR_MAX + 1]; /* NUL-terminated, validated */
} pm_msg_referral;

/* Welcome, Refuse and Disconnect share one shape; Welcome's reason is 0. */
typedef struct pm_msg_referrals {
  uint8_t reason; /* enum pm_close_reason */
  uint8_t count;
  pm_msg_referral items[PM_MAX_REFERRALS];
} pm_msg_referrals;

/* A flooded message. Everything but `hops` is the author's and signed:
 * `id` is the hash of the signed content (pm_msg_flood_id) and `sig` the
 * author's Ed25519 signature of it (pm_msg_flood_sign). */
typedef struct pm_msg_flood {
  uint8_t id[PM_MSG_ID_LEN];
  uint8_t origin[PM_NODE_ID_LEN]; /* the author's Ed25519 public key */
  uint64_t seq;                   /* per author, increasing */
  uint64_t time_ms;
  uint8_t has_hop_limit;
  uint32_t hop_limit; /* the author's limit: nodes this many hops away and
                         nearer receive it */
  uint16_t hops;      /* hops travelled before the receiver (not signed) */
  const char *action;
  size_t action_len;
  const uint8_t *body;
  size_t body_len;
  uint8_t sig[PM_SIG_BYTES];
} pm_msg_flood;

int pm_msg_write_hello(pm_buf *b, const pm_msg_hello *m) PM_MUST_CHECK;
int pm_msg_read_hello(const pm_frame *f, pm_msg_hello *m) PM_MUST_CHECK;

/* type is PM_FRAME_WELCOME, PM_FRAME_REFUSE or PM_FRAME_DISCONNECT. */
int pm_msg_write_referrals(pm_buf *b, uint8_t type,
                           const pm_msg_referrals *m) PM_MUST_CHECK;
int pm_msg_read_referrals(const pm_frame *f, pm_msg_referrals *m) PM_MUST_CHECK;

/* Connect and Ping carry no body. */
int pm_msg_write_empty(pm_buf *b, uint8_t type) PM_MUST_CHECK;

int pm_msg_write_flood(pm_buf *b, const pm_msg_flood *m) PM_MUST_CHECK;
int pm_msg_read_flood(const pm_frame *f, pm_msg_flood *m) PM_MUST_CHECK;
/* Where `hops` sits in a Flood payload: everything before it is fixed. */
#define PM_FLOOD_HOPS_OFFSET (PM_MSG_ID_LEN + PM_NODE_ID_LEN + 8 + 8 + 1 + 4)
/* Writes the Flood frame whose payload `f` carries (one pm_msg_read_flood
 * accepted) with `hops` in place of its own: the same bytes
 * pm_msg_write_flood would write for it, without encoding it again. */
int pm_msg_relay_flood(pm_buf *b, const pm_frame *f,
                       uint16_t hops) PM_MUST_CHECK;

/* IHave and Graft: u8 count (1..PM_MAX_IDS), count x id[32]. */
int pm_msg_write_ids(pm_buf *b, uint8_t type, const uint8_t *ids,
                     size_t count) PM_MUST_CHECK;
/* Stores a view of the IDs (count x PM_MSG_ID_LEN bytes) in *ids. */
int pm_msg_read_ids(const pm_frame *f, const uint8_t **ids,
                    size_t *count) PM_MUST_CHECK;

/* Sync: u32 window in ms. */
int pm_msg_write_sync(pm_buf *b, uint32_t window_ms) PM_MUST_CHECK;
int pm_msg_read_sync(const pm_frame *f, uint32_t *window_ms) PM_MUST_CHECK;

/* Tree: root[32] u32 epoch u16 dist u8 flags. */
int pm_msg_write_tree(pm_buf *b, const pm_tree_adv *a) PM_MUST_CHECK;
int pm_msg_read_tree(const pm_frame *f, pm_tree_adv *a) PM_MUST_CHECK;

/* The message ID: BLAKE2b-256 over the signed content (docs/PROTOCOL.md,
 * "Flooding"): origin, sequence, time, hop limit, action and body. `hops`
 * is left out because relays change it. */
void pm_msg_flood_id(const pm_msg_flood *m, uint8_t out[PM_MSG_ID_LEN]);

/* The author's signature: Ed25519, by the 64-byte libsodium secret key, of
 * "peermesh message v1" followed by the ID. */
void pm_msg_sign_id(const uint8_t id[PM_MSG_ID_LEN], const uint8_t *secret_key,
                    uint8_t sig[PM_SIG_BYTES]);
/* 1 when `sig` is `author`'s signature of `id`. */
int pm_msg_verify_id(const uint8_t id[PM_MSG_ID_LEN],
                     const uint8_t author[PM_NODE_ID_LEN],
                     const uint8_t sig[PM_SIG_BYTES]);

#endif
