/* The resolver's registration table, in memory and sans-I/O.
 *
 * A registration maps (mesh, node ID) to an address and an expiry time. The
 * caller passes the time (`now_ms`, milliseconds of a monotonic clock, never
 * decreasing from one call to the next) into every call; randomness comes
 * from the injected `random` callback and memory from the injected allocator,
 * so tests drive it with literal timestamps and a fixed random sequence.
 *
 * Every registration gets the same lifetime, so expiry order is refresh
 * order: the table keeps its entries in that order and drops the expired
 * ones at the start of every call, in time proportional to the number
 * dropped. Expired registrations are therefore never returned and never
 * count against a quota. Costs: register, unregister O(1) expected; resolve
 * O(max) expected, whatever the size of the mesh; expire O(expired).
 *
 * Hash tables are keyed with SipHash and a key drawn from `random`, so a
 * remote party choosing mesh names or node IDs cannot force collisions. */
#ifndef PM_RESOLVER_REGISTRY_H
#define PM_RESOLVER_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/alloc.h"
#include "peermesh/error.h"
#include "resolver_msg.h"

#define PM_REGISTRY_DEFAULT_LIFETIME_S 300
#define PM_REGISTRY_DEFAULT_MAX_ENTRIES 100000
#define PM_REGISTRY_DEFAULT_MAX_PER_MESH 10000
#define PM_REGISTRY_DEFAULT_MAX_PER_CLIENT 64

typedef struct pm_registry pm_registry;

typedef struct pm_registry_config {
  uint32_t lifetime_s;   /* 0 = PM_REGISTRY_DEFAULT_LIFETIME_S */
  size_t max_entries;    /* whole table; 0 = default (100000) */
  size_t max_per_mesh;   /* 0 = default (10000) */
  size_t max_per_client; /* per client address string; 0 = default (64) */
  uint64_t (*random)(void *ud); /* required: uniform 64-bit values */
  void *random_ud;
  const pm_allocator *alloc; /* NULL = the C library's */
} pm_registry_config;

/* Creates an empty table. Returns 0 and sets *out, PM_ERR_INVAL when `cfg`
 * or its random callback is missing, or PM_ERR_NOMEM. */
int pm_registry_new(const pm_registry_config *cfg,
                    pm_registry **out) PM_MUST_CHECK;
void pm_registry_free(pm_registry *reg);

/* Inserts or refreshes the registration of `node_id` in `mesh` with `addr`
 * (a valid address, stored as given), expiring `lifetime` after `now_ms`.
 * `client` names who registers (the server passes the peer's IP address) for
 * the per-client quota; NULL means no per-client quota. A refresh may move a
 * registration to another client or address. Returns 0 and the lifetime in
 * seconds in *lifetime_s (may be NULL); PM_ERR_INVAL for a bad mesh name,
 * address or client (longer than PM_ADDR_MAX); PM_ERR_FULL when a quota (total,
 * per mesh or per client) would be exceeded, the table being unchanged; or
 * PM_ERR_NOMEM. */
int pm_registry_register(pm_registry *reg, uint64_t now_ms, const char *mesh,
                         const uint8_t node_id[PM_NODE_ID_LEN],
                         const char *addr, const char *client,
                         uint32_t *lifetime_s) PM_MUST_CHECK;

/* Removes a registration. Returns 0, PM_ERR_NOT_FOUND when there is no live
 * one, or PM_ERR_INVAL for a bad mesh name. */
int pm_registry_unregister(pm_registry *reg, uint64_t now_ms, const char *mesh,
                           const uint8_t node_id[PM_NODE_ID_LEN]) PM_MUST_CHECK;

/* Draws up to `max` live registrations of `mesh`, a uniform random sample
 * without replacement, leaving out `exclude` (NULL or all zero: nobody).
 * `out` must hold `max` entries; *n receives how many were written (0 for an
 * unknown mesh). Returns 0 or PM_ERR_INVAL (bad mesh name). The order of the
 * entries is random too. */
int pm_registry_resolve(pm_registry *reg, uint64_t now_ms, const char *mesh,
                        size_t max, const uint8_t *exclude,
                        pm_resolver_entry *out, size_t *n) PM_MUST_CHECK;

/* Drops every registration whose expiry is at or before `now_ms`; returns how
 * many. Other calls do this too; call it from a timer to release memory when
 * the table is otherwise idle. */
size_t pm_registry_expire(pm_registry *reg, uint64_t now_ms);

/* Registrations held, live or not yet swept. */
size_t pm_registry_count(const pm_registry *reg);
/* Registrations held for `mesh` (0 for an unknown or invalid name). */
size_t pm_registry_mesh_count(const pm_registry *reg, const char *mesh);
/* Registrations attributed to `client`. */
size_t pm_registry_client_count(const pm_registry *reg, const char *client);
/* The lifetime every registration receives, in seconds. */
uint32_t pm_registry_lifetime(const pm_registry *reg);

#endif
