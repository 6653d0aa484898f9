/* The runtime host: what the nodes of one process share.
 *
 * One libuv loop, the data directory, the node identity, the history
 * database (opened on first use, written in one transaction per loop turn),
 * and the resolver this process hosts for its machine when no other process
 * does. Nodes (io_node.h) are created on a host. */
#ifndef PM_IO_HOST_H
#define PM_IO_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "db.h"
#include "identity.h"
#include "peermesh/node.h"

/* The resolver a node uses when given neither --peer nor --resolver. */
#define PM_LOCAL_RESOLVER "127.0.0.1:7470"

typedef struct pm_host pm_host;

typedef struct pm_host_options {
  const char *data_dir; /* required: an absolute or relative path */
  /* Defaults for pm_io_node_join, from the command line. */
  const char *mesh;
  const char *listen;
  const char *const *peers;
  size_t npeers;
  const char *const *resolvers;
  size_t nresolvers;
  int resolver_none;
  int verbose;
  /* The link PSK of `mesh` from the command line's password
   * (pm_psk_derive; PM_PSK_LEN bytes), or NULL for an open mesh. The
   * password itself is gone by then. */
  const uint8_t *psk;
} pm_host_options;

/* Creates the data directory when missing. Returns 0 or a negative code with
 * a sentence in `err`. The options' strings must outlive the host. */
int pm_host_new(uv_loop_t *loop, const pm_host_options *opts, pm_host **out,
                char *err, size_t errlen) PM_MUST_CHECK;
/* Writes pending history and frees the host. Call after the loop ended. */
void pm_host_free(pm_host *host);

uv_loop_t *pm_host_loop(pm_host *host);
const pm_host_options *pm_host_options_get(const pm_host *host);

/* The process's identity, taken on first call. */
int pm_host_identity(pm_host *host, const pm_identity **out, char *err,
                     size_t errlen) PM_MUST_CHECK;

/* The link PSK of `mesh` (password.h): the command line's password PSK
 * when `mesh` is the command line's mesh and it has one (*password = 1),
 * else the open mesh's (*password = 0). Returns 0 or PM_ERR_INVAL. */
int pm_host_mesh_psk(const pm_host *host, const char *mesh, uint8_t *psk,
                     int *password) PM_MUST_CHECK;

/* Queues a delivered message for history.db; written at the end of this
 * loop turn. `body` is JSON text. */
void pm_host_history_add(pm_host *host, const char *mesh, const pm_event *ev);
/* Remembers a neighbour reached, for reconnecting after a restart. */
void pm_host_peer_seen(pm_host *host, const char *mesh,
                       const uint8_t id[PM_NODE_ID_LEN], const char *addr);
/* Calls cb for up to `max` peers of `mesh` reached before, newest first. */
void pm_host_known_peers(pm_host *host, const char *mesh, size_t max,
                         int (*cb)(void *ud, const uint8_t id[PM_NODE_ID_LEN],
                                   const char *addr),
                         void *ud);

/* Starts the machine's local resolver in this process unless one runs here
 * already. Returns 0 when this process now hosts it, PM_ERR_EXISTS when
 * another process does, or another negative code. */
int pm_host_serve_local_resolver(pm_host *host, const char *addr);

/* Nodes register themselves so the host knows when the last one left (then
 * it stops hosting the local resolver, letting the loop end). */
void pm_host_node_attach(pm_host *host);
void pm_host_node_detach(pm_host *host);

/* Prints "peermesh: <message>" to stderr. Verbose messages only with -v. */
void pm_host_log(const pm_host *host, int verbose, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Wall-clock time in ms since the Unix epoch. */
int64_t pm_host_wall_ms(void);

#endif
