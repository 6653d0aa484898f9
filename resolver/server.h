/* The resolver server: a libuv TCP listener answering the resolver protocol
 * (resolver_msg.h) from an in-memory registry (registry.h).
 *
 * Each connection may send any number of requests; each gets one answer
 * frame, in order. A request that cannot be decoded gets an ERROR
 * (bad_request) and the connection is closed once that is written; a frame
 * the stream cannot recover from (wrong version, length above PM_FRAME_MAX)
 * closes the connection at once. In REGISTER, the host "0.0.0.0" or "::" (any
 * spelling of the unspecified address) is replaced by the IP address the
 * connection comes from; that IP is also the key of the per-client quota.
 *
 * Bounds on hostile peers: at most `max_connections` connections (more are
 * accepted and closed at once); per connection, at most one frame of input
 * buffered and about 256 KiB of answers waiting to be written (beyond that
 * the server stops reading from that peer until it reads its answers); a
 * connection that was told to go but does not take its last answer is cut
 * at the next sweep. */
#ifndef PM_RESOLVER_SERVER_H
#define PM_RESOLVER_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "peermesh/error.h"

typedef struct pm_resolver_server pm_resolver_server;

typedef struct pm_resolver_server_config {
  uint32_t lifetime_s;      /* registration lifetime; 0 = 300 */
  size_t max_entries;       /* 0 = 100000 */
  size_t max_per_mesh;      /* 0 = 10000 */
  size_t max_per_client;    /* per client IP; 0 = 64 */
  unsigned max_connections; /* 0 = 1024 */
  uint64_t sweep_ms;        /* expiry sweep period; 0 = 60000 */
} pm_resolver_server_config;

/* Listens on `listen_addr`, "IP:PORT" or "[IPV6]:PORT" with a numeric IP;
 * port 0 picks a free port (see pm_resolver_server_port). `cfg` may be NULL
 * for the defaults. Returns 0 and sets *out; PM_ERR_INVAL for a malformed or
 * non-numeric address; PM_ERR_EXISTS when the address is already in use
 * (another process hosts a resolver there); PM_ERR_NOMEM; PM_ERR_IO for any
 * other failure. On failure nothing is left to free, but the loop must run
 * once more to finish closing the listener it tried. */
int pm_resolver_server_start(uv_loop_t *loop, const char *listen_addr,
                             const pm_resolver_server_config *cfg,
                             pm_resolver_server **out) PM_MUST_CHECK;

/* The port the server listens on. */
uint16_t pm_resolver_server_port(const pm_resolver_server *s);

/* Connections currently open. */
size_t pm_resolver_server_connections(const pm_resolver_server *s);

/* Registrations currently held (live or not yet swept). */
size_t pm_resolver_server_registrations(const pm_resolver_server *s);

/* Stops listening, closes every connection and forgets every registration.
 * Memory is released once libuv has closed the handles, during a later loop
 * iteration; then `on_closed(ud)` is called if it is not NULL. `s` must not be
 * used after this call. */
void pm_resolver_server_close(pm_resolver_server *s,
                              void (*on_closed)(void *ud), void *ud);

#endif
