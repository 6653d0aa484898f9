/* The member table: who is in the mesh, as far as this node knows
 * (docs/PROTOCOL.md §5.5). A pure data structure: the node feeds it the
 * presence messages it accepted, with the current time, and it answers
 * which events follow.
 *
 * Per member: its incarnation (raised by the member itself to refute a
 * suspicion), its state, when it was last heard from (its last $alive), the
 * refresh interval it announced, and when it was suspected. Rules:
 *   - alive(inc): an unknown member, or one failed with inc >= known, or
 *     left with inc > known, becomes alive: JOINED. An alive member with
 *     inc >= known, or a suspect with inc > known (a refutation), stays or
 *     becomes alive silently. Older incarnations are ignored.
 *   - leave(inc): inc >= known makes a known member left: LEFT (silently
 *     when it had failed already).
 *   - suspect(inc): an alive member with inc >= known becomes suspect.
 *   - vouch(inc): the same news second-hand, from a neighbour's table: it
 *     adds an unknown member (JOINED), and otherwise counts only with an
 *     incarnation above the known one, so that a neighbour that has not yet
 *     seen a member fail cannot bring it back.
 *   - expire(now): a suspect not refuted within `suspect_ms`, or an alive
 *     member silent for 3 intervals plus `suspect_ms`, fails: FAILED. The
 *     interval is the one the member announced, or the floor the node sets
 *     (what members of a mesh of this size announce), whichever is longer.
 * At most `capacity` members are kept; when full, the longest-silent member
 * that is not alive goes first, else the longest-silent one. The entries
 * grow as needed, never beyond the capacity (at most 2^24 - 2). */
#ifndef PM_CORE_MEMBERS_H
#define PM_CORE_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include "idtable.h"
#include "peermesh/alloc.h"
#include "peermesh/idpool.h"
#include "peermesh/node.h"

/* Members: u16 count, count x (id[32], u32 incarnation, u32 interval_ms). */
#define PM_FRAME_MEMBERS 0x26
/* MembersDigest: for each of B buckets (B a power of two, 1..256; a
 * member's bucket is the first byte of its ID modulo B), u32 live members
 * counted (the sender included) and u64 XOR of their tags (bytes 8..15 of
 * the ID, big-endian). The table keeps the 256 finest buckets. */
#define PM_FRAME_MEMBERS_DIGEST 0x27
/* MembersSubDigest, the answer to a 256-bucket digest that differs: for
 * each bucket that differs, in increasing order, u8 bucket and 16 x u64:
 * the XOR of the tags of its live members whose ID's byte 1 has that high
 * nibble (its sub-bucket), the sender included. */
#define PM_FRAME_MEMBERS_SUBDIGEST 0x28
#define PM_MEMBERS_SUBDIGEST_ENTRY (1 + PM_MEMBERS_SUBS * 8)
/* MembersWant: u16 sub-buckets (bucket << 4 | nibble), increasing: "send
 * me your entries of these". */
#define PM_FRAME_MEMBERS_WANT 0x29
#define PM_MEMBERS_BUCKETS 256
#define PM_MEMBERS_SUBS 16 /* sub-buckets a bucket */
#define PM_MEMBERS_SUBBUCKETS (PM_MEMBERS_BUCKETS * PM_MEMBERS_SUBS)
#define PM_MEMBERS_DIGEST_ENTRY 12
#define PM_MEMBERS_DIGEST_LEN (PM_MEMBERS_BUCKETS * PM_MEMBERS_DIGEST_ENTRY)
#define PM_MEMBERS_ENTRY_LEN (PM_NODE_ID_LEN + 8)
#define PM_MEMBERS_PER_FRAME 1024

/* What a change means to the application. */
enum pm_members_change {
  PM_MEMBERS_NONE = 0,   /* nothing to report (refresh, stale, unknown) */
  PM_MEMBERS_JOINED = 1, /* became alive: unknown, left or failed before */
  PM_MEMBERS_LEFT = 2,
  PM_MEMBERS_SUSPECTED = 3, /* alive -> suspect (not reported to the app) */
};

typedef struct pm_members pm_members;

typedef void (*pm_members_failed_fn)(void *ud,
                                     const uint8_t id[PM_NODE_ID_LEN]);

/* `ids`: the pool that keeps the members' IDs (peermesh/idpool.h), or
 * NULL for IDs kept in the entries. */
pm_members *pm_members_new(const pm_allocator *alloc, pm_idpool *ids,
                           uint32_t capacity, uint64_t suspect_ms);
void pm_members_free(pm_members *t);

/* `interval_ms` is the member's announced refresh interval (kept rounded
 * up to a tenth of a second, at most 6,553,500 ms). Returns a
 * change, or PM_ERR_NOMEM. */
int pm_members_alive(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                     uint32_t inc, uint32_t interval_ms, uint64_t now);
int pm_members_leave(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                     uint32_t inc, uint64_t now);
int pm_members_suspect(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                       uint32_t inc, uint64_t now);
/* An alive entry from a neighbour's Members frame (the vouch rule above).
 * Returns a change (JOINED or NONE), or PM_ERR_NOMEM. */
int pm_members_vouch(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                     uint32_t inc, uint32_t interval_ms, uint64_t now);
/* A neighbour vouched for `id` at incarnation `inc` (pm_members_vouch
 * changed nothing) while this node holds it failed at that same
 * incarnation: the two views differ, as after a partition. Returns 1 the
 * first time for that incarnation (the node then asks the member, by a
 * suspicion, to refute if it is alive), else 0. */
int pm_members_ask(pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                   uint32_t inc);
/* Hints that `id` is looked up soon, so that a table's worth of entries
 * does not wait on memory one by one: pm_members_prefetch loads its index
 * slot; pm_members_prefetch_entry, some time later, reads that slot and
 * loads the entry it likely names. */
void pm_members_prefetch(const pm_members *t, const uint8_t id[PM_NODE_ID_LEN]);
void pm_members_prefetch_entry(const pm_members *t,
                               const uint8_t id[PM_NODE_ID_LEN]);
/* Fails the members due at `now`, calling `fn` for each. */
void pm_members_expire(pm_members *t, uint64_t now, pm_members_failed_fn fn,
                       void *ud);
/* When pm_members_expire has work next (a lower bound), or UINT64_MAX. */
uint64_t pm_members_deadline(const pm_members *t);

/* Looks a member up: 1 and its state/incarnation, or 0 when unknown. */
int pm_members_get(const pm_members *t, const uint8_t id[PM_NODE_ID_LEN],
                   int *state, uint32_t *inc);
/* Members in the table, and those alive or suspect. */
uint32_t pm_members_count(const pm_members *t);
uint32_t pm_members_live(const pm_members *t);
/* The digest of the live members, bucket by bucket: how many, and the XOR
 * of their tags. Two tables with the same live members have the same
 * digest; a bucket that differs says where to look. */
uint32_t pm_members_bucket(const uint8_t id[PM_NODE_ID_LEN]);
uint64_t pm_members_tag(const uint8_t id[PM_NODE_ID_LEN]);
void pm_members_digest(const pm_members *t, uint32_t count[PM_MEMBERS_BUCKETS],
                       uint64_t tags[PM_MEMBERS_BUCKETS]);
/* A bucket, finer: its members' sub-bucket (0..4095) is their ID's first
 * 12 bits, and pm_members_subtags gives the XOR of the tags in each of
 * bucket b's 16, reading only bucket b's members: two tables find which
 * members they differ by without reading the others. */
uint32_t pm_members_sub(const uint8_t id[PM_NODE_ID_LEN]);
void pm_members_subtags(const pm_members *t, uint8_t b,
                        uint64_t tags[PM_MEMBERS_SUBS]);
/* The least refresh interval expire() assumes of any member. */
void pm_members_set_floor(pm_members *t, uint32_t floor_ms);
/* The positions (for pm_members_at) of the members whose ID begins with
 * the byte `b`, in no particular order, without reading the others: start
 * with pm_members_prefix, then pm_members_next until PM_MEMBERS_END. The
 * table must not change meanwhile. */
#define PM_MEMBERS_END PM_IDTABLE_NONE
typedef pm_idtable_walk pm_members_walk;
void pm_members_prefix(const pm_members *t, uint8_t b, pm_members_walk *w);
/* The same for the members of sub-bucket `sub` (pm_members_sub). */
void pm_members_sub_prefix(const pm_members *t, uint32_t sub,
                           pm_members_walk *w);
uint32_t pm_members_next(const pm_members *t, pm_members_walk *w);
/* The i-th entry (0 <= i < count), in no particular order. */
void pm_members_at(const pm_members *t, uint32_t i, pm_member_info *out,
                   uint32_t *interval_ms);

#endif
