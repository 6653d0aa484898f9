/* The resolver client: one TCP connection to one resolver, kept up.
 *
 * It connects at once and reconnects by itself after a failure or a loss:
 * the first retry after a random 20..120 ms (so that clients which lost the
 * same resolver do not all return at the same instant), then doubling up to
 * 10 s while attempts keep failing; a successful connection resets the delay.
 * An attempt that has not connected within 5 s counts as failed.
 *
 * Registrations are remembered and owned by the client: each is sent
 * whenever the connection comes up, refreshed at half the lifetime the server
 * granted, retried 5 s after an unanswered attempt and 30 s after a refusal.
 *
 * Every callback may call any function of this module, including
 * pm_resolver_client_close. */
#ifndef PM_RESOLVER_CLIENT_H
#define PM_RESOLVER_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "peermesh/error.h"
#include "resolver_msg.h"

typedef struct pm_resolver_client pm_resolver_client;

/* Connection state changes: `up` is 1 when connected and 0 when not; `err`
 * is 0 when up and the PM_ERR_* cause when down (PM_ERR_REFUSED: nobody
 * listens; PM_ERR_CLOSED: the server closed the connection; PM_ERR_TIMEOUT:
 * the attempt did not complete; PM_ERR_MALFORMED: the server sent something
 * invalid; PM_ERR_IO otherwise). Called on every transition, and once when
 * the very first attempt fails, so the caller learns that nobody answers;
 * further failed attempts while down are silent. */
typedef void (*pm_resolver_client_state_cb)(void *ud, int up, int err);

/* The answer to pm_resolver_client_resolve. `status` is 0 and `entries[0..n)`
 * (valid during the call only) the registrations found, possibly none; or a
 * negative code with n = 0: PM_ERR_TIMEOUT (no answer within 5 s), the
 * connection's loss cause (see the state callback), or what the server's
 * ERROR maps to (pm_resolver_code_to_err). */
typedef void (*pm_resolver_resolve_cb)(void *ud, int status,
                                       const pm_resolver_entry *entries,
                                       size_t n);

/* Creates a client for the resolver at `addr` ("IP:PORT" or "[IPV6]:PORT",
 * numeric) and starts connecting. `state_cb` may be NULL. Returns 0 and sets
 * *out; PM_ERR_INVAL for a malformed address; PM_ERR_NOMEM; PM_ERR_IO. */
int pm_resolver_client_new(uv_loop_t *loop, const char *addr,
                           pm_resolver_client_state_cb state_cb, void *ud,
                           pm_resolver_client **out) PM_MUST_CHECK;

/* 1 when the connection is up. */
int pm_resolver_client_is_up(const pm_resolver_client *c);

/* Registers `node_id` in `mesh` at `addr` ("HOST:PORT"; host "0.0.0.0" or
 * "::" asks the server to use the address it sees), now if connected and
 * after every reconnection, refreshing it until unregistered. Registering the
 * same (mesh, node_id) again replaces the address. Returns 0; PM_ERR_INVAL
 * for a bad mesh name or address; PM_ERR_NOMEM. The strings are copied. */
int pm_resolver_client_register(pm_resolver_client *c, const char *mesh,
                                const uint8_t node_id[PM_NODE_ID_LEN],
                                const char *addr) PM_MUST_CHECK;

/* Forgets a registration and, if connected, asks the server to drop it (the
 * request is sent even when this client did not register it). Returns 0;
 * PM_ERR_INVAL for a bad mesh name; PM_ERR_NOMEM. */
int pm_resolver_client_unregister(pm_resolver_client *c, const char *mesh,
                                  const uint8_t node_id[PM_NODE_ID_LEN])
    PM_MUST_CHECK;

/* Asks for up to `max` (1..32) registrations of `mesh`, leaving out
 * `exclude` (may be NULL). Returns 0 and calls `cb` exactly once later
 * (unless the client is closed first); or PM_ERR_INVAL (bad mesh, max), or
 * PM_ERR_IO when not connected, or PM_ERR_NOMEM, and then `cb` is never
 * called. */
int pm_resolver_client_resolve(pm_resolver_client *c, const char *mesh,
                               unsigned max,
                               const uint8_t exclude[PM_NODE_ID_LEN],
                               pm_resolver_resolve_cb cb,
                               void *ud) PM_MUST_CHECK;

/* Closes the connection without sending anything more, drops pending
 * resolves without calling their callbacks, and frees the client once libuv
 * has closed its handles (during a later loop iteration; nothing then keeps
 * the loop alive). No callback is called after this. `c` must not be used
 * afterwards. Safe to call from inside any of the client's callbacks. */
void pm_resolver_client_close(pm_resolver_client *c);

#endif
