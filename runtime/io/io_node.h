/* A node joined to a mesh, on the host's libuv loop.
 *
 * This is the glue between one sans-I/O pm_node and the world: a TCP
 * listener, one TCP connection per link with its secure channel
 * (runtime/core/secure.h) between the socket and the core, a timer for the
 * core's deadline, resolver clients (plaintext), and the host's history. It
 * feeds the core and carries out what the core asks, then hands the core's
 * events to `cb`. */
#ifndef PM_IO_NODE_H
#define PM_IO_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "host.h"
#include "peermesh/node.h"

typedef struct pm_io_node pm_io_node;

/* Called for every core event. Runs on the loop; may call pm_io_node_send
 * and pm_io_node_leave. Not called after pm_io_node_leave.
 *
 * Every link is encrypted and authenticated (runtime/core/secure.h); the
 * core sees only what a completed handshake let through. A link whose
 * secure channel fails (wrong password, another mesh or version, tampered
 * data, an oversized record) is closed and reported as a PM_EV_LINK_ERROR
 * with `error` the PM_ERR_* code, like the core's own protocol errors; the
 * sentence printed on stderr is pm_io_node_event_text during the call. */
typedef void (*pm_io_event_cb)(void *ud, pm_io_node *node, const pm_event *ev);

typedef struct pm_join_options {
  const char *mesh;         /* required */
  const char *listen;       /* "HOST:PORT"; NULL = "0.0.0.0:0" */
  const char *const *peers; /* addresses to keep connecting to */
  size_t npeers;
  const char *const *resolvers; /* "IP:PORT" resolver addresses */
  size_t nresolvers;
  int resolver_none; /* no resolver at all, not even the local default */
  /* The PSK of a password mesh (pm_psk_derive, PM_PSK_LEN bytes; copied).
   * NULL: the host's key for this mesh (pm_host_mesh_psk): the command
   * line's password when the mesh is the command line's, else the open
   * mesh's. */
  const uint8_t *psk;
} pm_join_options;

/* Joins a mesh. With no peers and no resolvers (and not resolver_none) the
 * node uses the machine's local resolver, hosting it when nobody does.
 * Returns 0, or a negative code with a sentence in `err`. */
int pm_io_node_join(pm_host *host, const pm_join_options *opts,
                    pm_io_event_cb cb, void *ud, pm_io_node **out, char *err,
                    size_t errlen) PM_MUST_CHECK;

/* Floods a message; `body` is JSON text. Returns 0 and the message ID, or a
 * negative code (PM_ERR_INVAL, PM_ERR_CLOSED, ...). */
int pm_io_node_send(pm_io_node *node, const char *action, const char *body,
                    size_t body_len, int has_hop_limit, uint32_t hop_limit,
                    uint8_t id_out[PM_MSG_ID_LEN]) PM_MUST_CHECK;

/* Leaves the mesh: says goodbye to the neighbours, flushes what is queued,
 * closes everything and frees the node once libuv is done with it. */
void pm_io_node_leave(pm_io_node *node);

/* Sets the node's propagation filter (see pm_node_set_filter); NULL
 * clears it. The filter must not call back into the node. */
void pm_io_node_set_filter(pm_io_node *node, pm_filter_fn fn, void *ud);

/* During a PM_EV_LINK_ERROR callback: the sentence describing it, as
 * printed on stderr without the "peermesh: " prefix, e.g. "link to
 * 127.0.0.1:7001 refused: wrong password for mesh 'lobby' (the mesh name
 * matched)". NULL otherwise. */
const char *pm_io_node_event_text(const pm_io_node *node);

const uint8_t *pm_io_node_id(const pm_io_node *node);
const char *pm_io_node_mesh(const pm_io_node *node);
/* The port the node listens on. */
uint16_t pm_io_node_port(const pm_io_node *node);
int pm_io_node_online(const pm_io_node *node);
void pm_io_node_stats(const pm_io_node *node, pm_node_stats *out);

#endif
