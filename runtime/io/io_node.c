#include "io_node.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "client.h"
#include "frame.h"
#include "net.h"
#include "password.h"
#include "secure.h"

/* Most bytes a link may have waiting in its socket's queue; the core drops
 * a neighbour that does not drain (PM_CLOSE_TOO_SLOW). */
#define LINK_QUEUE_LIMIT (1024u * 1024)
#define MAX_RESOLVERS 8
#define RESOLVE_MAX 8
#define KNOWN_PEERS_AT_START 8
#define LINGER_MS 2000     /* how long a leaving node waits for its goodbyes */
#define MAX_LINK_ERRORS 16 /* secure-channel errors waiting for the pump */
#define ERROR_TEXT_MAX 512

typedef struct io_link {
  uv_tcp_t tcp;
  pm_io_node *node;
  uint32_t id;       /* core link ID; 0 while dialling */
  int open;          /* tcp handle initialised */
  int resolving;     /* a name lookup is pending; it frees a closed link */
  int closing;       /* no more I/O: being shut down or closed */
  int handle_closed; /* uv_close called (or nothing to close) */
  char dial_addr[PM_ADDR_MAX + 1];
  uv_connect_t connect;
  uv_getaddrinfo_t gai;
  uv_shutdown_t shutdown;
  /* The link's secure channel (secure.h): every byte on the socket is a
   * record of it; the core only ever sees the plaintext inside. */
  pm_secure sec;
  int outbound;
  int keyed; /* the peer's verified key was handed to the core */
  uint8_t peer_key[PM_NODE_ID_LEN]; /* that key, once keyed */
  int got_plain;  /* the core has received plaintext on this link */
  int replied;    /* responder: msg2 written (msg1 was accepted) */
  int first_byte; /* the first byte received, -1 before any */
  /* Plaintext given to pm_secure_send and not yet part of a write: the
   * core counts what it handed over, so writes are drained in those units. */
  size_t plain_unwritten;
  char remote[PM_ADDR_MAX + 1]; /* "IP:PORT" of the other end, for messages */
  struct io_link *next;
} io_link;

typedef struct write_req {
  uv_write_t req;
  uv_buf_t buf;
  pm_io_node *node;
  uint32_t link_id;
  size_t plain; /* the core's bytes this write carries (for drained) */
} write_req;

/* A secure-channel failure, reported to the callback from the pump. */
typedef struct link_error {
  pm_event ev;
  char addr[PM_ADDR_MAX + 1];
  char text[ERROR_TEXT_MAX];
} link_error;

struct pm_io_node {
  pm_host *host;
  pm_node *core;
  pm_io_event_cb cb;
  void *ud;
  char mesh[PM_MESH_NAME_MAX + 1];
  uint8_t id[PM_NODE_ID_LEN];
  uv_tcp_t listener;
  uv_timer_t timer;
  uint16_t port;
  char register_addr[PM_ADDR_MAX + 1];
  io_link *links;
  pm_resolver_client *resolvers[MAX_RESOLVERS];
  size_t nresolvers;
  int zeroconf;
  char local_resolver[PM_ADDR_MAX + 1];
  int want_resolve; /* a resolve was asked while no resolver was up */
  int pumping, pump_again;
  int leaving;
  unsigned handles; /* open libuv handles still to close */
  /* Link keys: the mesh's PSK (password.h), whether it comes from a
   * password, the mesh tag msg1 carries, and the identity's Ed25519 key. */
  uint8_t psk[PM_PSK_LEN];
  int password;
  uint8_t mesh_tag[PM_MESH_TAG_LEN];
  uint8_t sk[PM_SECURE_SECRET_KEY_LEN];
  pm_buf net;   /* records to write, filled and flushed per call */
  pm_buf plain; /* plaintext decrypted from one read */
  link_error errors[MAX_LINK_ERRORS];
  size_t nerrors;
  const char *event_text; /* during a PM_EV_LINK_ERROR callback */
  char readbuf[64 * 1024];
};

static void pump(pm_io_node *n);

static uint64_t now_ms(pm_io_node *n) {
  return uv_now(pm_host_loop(n->host));
}

static uint64_t random_cb(void *ud) {
  (void)ud;
  uint64_t v;
  randombytes_buf(&v, sizeof v);
  return v;
}

static void maybe_free(pm_io_node *n) {
  if (!n->leaving || n->handles || n->pumping)
    return;
  sodium_memzero(n->psk, sizeof n->psk);
  sodium_memzero(n->sk, sizeof n->sk);
  pm_buf_free(&n->net);
  if (n->plain.data)
    sodium_memzero(n->plain.data, n->plain.cap);
  pm_buf_free(&n->plain);
  pm_node_free(n->core);
  pm_host_node_detach(n->host);
  free(n);
}

static void on_handle_closed(uv_handle_t *h) {
  pm_io_node *n = h->data;
  n->handles--;
  maybe_free(n);
}

/* ---- links ----------------------------------------------------------------
 */

static io_link *link_by_id(pm_io_node *n, uint32_t id) {
  for (io_link *l = n->links; l; l = l->next)
    if (l->id == id && !l->closing)
      return l;
  return NULL;
}

static void stop_lingering(pm_io_node *n);

/* Forgets a link whose socket is closed (or never existed). */
static void link_release(io_link *l) {
  pm_io_node *n = l->node;
  for (io_link **p = &n->links; *p; p = &(*p)->next)
    if (*p == l) {
      *p = l->next;
      break;
    }
  pm_secure_clear(&l->sec);
  free(l);
  n->handles--;
  if (n->leaving && !n->links)
    stop_lingering(n);
  maybe_free(n);
}

static void on_link_closed(uv_handle_t *h) {
  link_release(h->data);
}

/* Closes the socket at once, dropping unsent bytes. A link with no socket
 * yet is released, unless its name lookup is pending: then the lookup's
 * callback releases it. */
static void link_close_now(io_link *l) {
  l->closing = 1;
  if (l->handle_closed)
    return;
  l->handle_closed = 1;
  if (l->open)
    uv_close((uv_handle_t *)&l->tcp, on_link_closed);
  else if (l->resolving)
    uv_cancel((uv_req_t *)&l->gai);
  else
    link_release(l);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  link_close_now(req->data);
}

/* Closes once the queued writes (the goodbye frames) are on the wire. Links
 * still connecting have nothing worth waiting for. */
static void link_close_graceful(io_link *l) {
  if (l->closing)
    return;
  l->closing = 1;
  if (!l->open || l->id == 0) {
    link_close_now(l);
    return;
  }
  uv_read_stop((uv_stream_t *)&l->tcp);
  l->shutdown.data = l;
  if (uv_shutdown(&l->shutdown, (uv_stream_t *)&l->tcp, on_shutdown) != 0)
    link_close_now(l);
}

/* The transport failed or the peer closed: tell the core, drop the socket. */
static void link_lost(io_link *l) {
  pm_io_node *n = l->node;
  uint32_t id = l->id;
  link_close_now(l);
  if (id)
    pm_node_link_closed(n->core, now_ms(n), id);
  pump(n);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  io_link *l = h->data;
  buf->base = l->node->readbuf;
  buf->len = sizeof l->node->readbuf;
}

static void on_write(uv_write_t *req, int status);

/* Writes `len` bytes as they are; `plain` of the core's bytes ride in them. */
static void link_write(pm_io_node *n, io_link *l, const uint8_t *data,
                       size_t len, size_t plain) {
  if (l->closing || !l->open || len == 0)
    return;
  write_req *w = malloc(sizeof *w);
  char *copy = malloc(len);
  if (!w || !copy) {
    free(w);
    free(copy);
    if (plain) /* never queued */
      pm_node_link_drained(n->core, now_ms(n), l->id, plain);
    return;
  }
  memcpy(copy, data, len);
  w->buf = uv_buf_init(copy, (unsigned)len);
  w->node = n;
  w->link_id = l->id;
  w->plain = plain;
  if (uv_write(&w->req, (uv_stream_t *)&l->tcp, &w->buf, 1, on_write) != 0) {
    if (plain)
      pm_node_link_drained(n->core, now_ms(n), l->id, plain);
    free(copy);
    free(w);
  }
}

/* Writes what the secure channel produced. Once the handshake is done, every
 * plaintext byte queued so far is in these records. */
static void flush_net(pm_io_node *n, io_link *l) {
  size_t plain = 0;
  if (pm_secure_established(&l->sec)) {
    plain = l->plain_unwritten;
    l->plain_unwritten = 0;
  }
  if (n->net.len)
    link_write(n, l, n->net.data, n->net.len, plain);
  else if (plain)
    pm_node_link_drained(n->core, now_ms(n), l->id, plain);
  pm_buf_reset(&n->net);
}

/* How a failed channel is described: the end of the sentence starting
 * "link to ADDR refused: ". */
static void secure_error_text(const pm_io_node *n, const io_link *l, int err,
                              char *out, size_t len) {
  switch (err) {
  case PM_ERR_WRONG_PASSWORD:
    /* A responder fails before answering msg1 only when msg1's password
     * flag differs from its own; an initiator without a password facing a
     * peer of the same mesh name can only meet one with a password. */
    if ((!l->outbound && !l->replied && !n->password) ||
        (l->outbound && !n->password))
      snprintf(out, len,
               "the peer has a password for mesh '%s' and this node has "
               "none (the mesh name matched)",
               n->mesh);
    else if (!l->outbound && !l->replied)
      snprintf(out, len,
               "the peer has no password for mesh '%s' and this node has "
               "one (the mesh name matched)",
               n->mesh);
    else
      snprintf(out, len, "wrong password for mesh '%s' (the mesh name matched)",
               n->mesh);
    break;
  case PM_ERR_WRONG_MESH:
    snprintf(out, len, "the peer belongs to another mesh, not '%s'", n->mesh);
    break;
  case PM_ERR_VERSION:
    if (l->first_byte >= 0 && l->first_byte != PM_SECURE_VERSION)
      snprintf(out, len,
               "peer speaks protocol version %d (this node speaks %d)",
               l->first_byte, PM_SECURE_VERSION);
    else
      snprintf(out, len,
               "peer speaks another protocol version (this node speaks %d)",
               PM_SECURE_VERSION);
    break;
  case PM_ERR_AUTH:
    snprintf(out, len, "tampered or corrupt data (authentication failed)");
    break;
  case PM_ERR_FRAME_TOO_LARGE:
    snprintf(out, len,
             "the peer announced a record larger than the %d-byte limit",
             PM_SECURE_MAX_PAYLOAD);
    break;
  case PM_ERR_UNEXPECTED:
    snprintf(out, len,
             "the peer sent a record out of place (not a peermesh "
             "link, or a broken peer)");
    break;
  case PM_ERR_MALFORMED:
    snprintf(out, len, "malformed handshake message");
    break;
  case PM_ERR_REFUSED:
    snprintf(out, len,
             "refused by the peer for a reason this node does not "
             "know");
    break;
  case PM_ERR_FULL:
    snprintf(out, len,
             "the handshake did not finish before %d bytes were "
             "waiting to be sent",
             PM_SECURE_MAX_PENDING);
    break;
  default:
    snprintf(out, len, "%s", pm_strerror(err));
    break;
  }
}

/* The secure channel failed with `err`: says so, sends what it holds (a
 * Reject for the peer, at most), closes the connection and tells the core.
 * Nothing of what the channel received reaches the core any more. */
static void secure_failed(pm_io_node *n, io_link *l, int err) {
  char why[256];
  secure_error_text(n, l, err, why, sizeof why);
  link_error *e = NULL;
  if (n->nerrors < MAX_LINK_ERRORS)
    e = &n->errors[n->nerrors++];
  link_error spare;
  if (!e)
    e = &spare; /* the line is still printed */
  memset(e, 0, sizeof *e);
  snprintf(e->addr, sizeof e->addr, "%s",
           l->outbound && l->dial_addr[0] ? l->dial_addr : l->remote);
  snprintf(e->text, sizeof e->text, "link %s %s %s: %s",
           l->outbound ? "to" : "from", e->addr[0] ? e->addr : "a peer",
           l->got_plain ? "closed" : "refused", why);
  pm_host_log(n->host, 0, "%s", e->text);
  e->ev.kind = PM_EV_LINK_ERROR;
  e->ev.error = err;
  e->ev.reason = PM_CLOSE_PROTOCOL_ERROR;
  e->ev.link_id = l->id;
  if (l->keyed)
    memcpy(e->ev.peer, l->peer_key, PM_NODE_ID_LEN);

  uint32_t id = l->id;
  int reject = n->net.len > 0;
  flush_net(n, l);
  /* A Reject is a few bytes into a fresh socket: let it out first. */
  if (reject)
    link_close_graceful(l);
  else
    link_close_now(l);
  pm_node_link_closed(n->core, now_ms(n), id);
  pump(n);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  io_link *l = s->data;
  pm_io_node *n = l->node;
  if (nread < 0) {
    if (nread != UV_EOF)
      pm_host_log(n->host, 1, "link %u: %s", l->id, uv_strerror((int)nread));
    link_lost(l);
    return;
  }
  if (nread == 0 || l->closing)
    return;
  const uint8_t *data = (const uint8_t *)buf->base;
  if (l->first_byte < 0)
    l->first_byte = data[0];
  pm_buf_reset(&n->plain);
  int rc = pm_secure_recv(&l->sec, data, (size_t)nread, &n->plain, &n->net);
  if (rc) {
    pm_buf_reset(&n->plain);
    secure_failed(n, l, rc);
    return;
  }
  if (n->net.len && !l->outbound)
    l->replied = 1;
  flush_net(n, l);
  if (pm_secure_established(&l->sec) && !l->keyed) {
    /* Before any plaintext: the Hello must name the key just verified. */
    memcpy(l->peer_key, pm_secure_peer_key(&l->sec), PM_NODE_ID_LEN);
    pm_node_link_set_peer_key(n->core, l->id, l->peer_key);
    l->keyed = 1;
  }
  if (n->plain.len) {
    l->got_plain = 1;
    pm_node_link_recv(n->core, now_ms(n), l->id, n->plain.data, n->plain.len);
    pm_buf_reset(&n->plain);
  }
  pump(n);
}

static void on_write(uv_write_t *req, int status) {
  (void)status; /* a failed write shows up as a read error or EOF */
  write_req *w = (write_req *)req;
  pm_io_node *n = w->node;
  /* Writes finish before their handle's close callback, so the node is
   * still here; the core ignores links it has already closed. */
  if (w->plain)
    pm_node_link_drained(n->core, now_ms(n), w->link_id, w->plain);
  free(w->buf.base);
  free(w);
}

/* Hands the core's bytes to the link's secure channel, which encrypts them
 * (or holds them until the handshake is done). */
static void link_send(pm_io_node *n, io_link *l, const uint8_t *data,
                      size_t len) {
  if (l->closing || !l->open)
    return;
  l->plain_unwritten += len;
  int rc = pm_secure_send(&l->sec, data, len, &n->net);
  if (rc) {
    pm_buf_reset(&n->net);
    secure_failed(n, l, rc);
    return;
  }
  flush_net(n, l);
}

/* "IP:PORT" of the other end of a connected socket, or "". */
static void remote_text(const uv_tcp_t *tcp, char out[PM_ADDR_MAX + 1]) {
  char host[PM_ADDR_MAX + 1];
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  out[0] = '\0';
  pm_net_peer_ip(tcp, host);
  if (!host[0] || uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  uint16_t port = ss.ss_family == AF_INET
                      ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                      : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  if (pm_addr_format(out, host, port) != 0)
    out[0] = '\0';
}

/* Registers an established connection with the core and opens its secure
 * channel. The core starts at once (its connect timeout covers a stalled
 * handshake) but gets no byte until the handshake is done; its own bytes
 * wait in the channel meanwhile. */
static void link_established(pm_io_node *n, io_link *l, int outbound) {
  char host[PM_ADDR_MAX + 1];
  pm_net_peer_ip(&l->tcp, host);
  remote_text(&l->tcp, l->remote);
  uv_tcp_nodelay(&l->tcp, 1);
  l->outbound = outbound;
  l->first_byte = -1;
  int rc = pm_node_link_open(n->core, now_ms(n), outbound, host,
                             outbound ? l->dial_addr : NULL, &l->id);
  if (rc) {
    link_close_now(l);
    pump(n);
    return;
  }
  pm_secure_config sc;
  memset(&sc, 0, sizeof sc);
  sc.initiator = outbound;
  sc.psk = n->psk;
  sc.ed25519_sk = n->sk;
  sc.ed25519_pk = n->id;
  sc.mesh_tag = n->mesh_tag;
  sc.password = n->password;
  sc.random = random_cb;
  rc = pm_secure_init(&l->sec, &sc);
  if (rc == 0)
    rc = pm_secure_start(&l->sec, &n->net);
  if (rc) {
    pm_buf_reset(&n->net);
    secure_failed(n, l, rc);
    return;
  }
  flush_net(n, l);
  uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read);
  pump(n);
}

static void on_connect(uv_connect_t *req, int status) {
  io_link *l = req->data;
  pm_io_node *n = l->node;
  if (l->closing)
    return;
  if (status != 0) {
    pm_host_log(n->host, 1, "cannot reach %s: %s", l->dial_addr,
                uv_strerror(status));
    char addr[PM_ADDR_MAX + 1];
    memcpy(addr, l->dial_addr, sizeof addr);
    link_close_now(l);
    pm_node_dial_failed(n->core, now_ms(n), addr);
    pump(n);
    return;
  }
  link_established(n, l, 1);
}

static void dial_failed(pm_io_node *n, io_link *l, const char *why) {
  pm_host_log(n->host, 1, "cannot reach %s: %s", l->dial_addr, why);
  char addr[PM_ADDR_MAX + 1];
  memcpy(addr, l->dial_addr, sizeof addr);
  link_close_now(l);
  pm_node_dial_failed(n->core, now_ms(n), addr);
}

static void connect_to(pm_io_node *n, io_link *l, const struct sockaddr *sa) {
  int rc = uv_tcp_init(pm_host_loop(n->host), &l->tcp);
  if (rc == 0) {
    l->open = 1;
    l->tcp.data = l;
    l->connect.data = l;
    rc = uv_tcp_connect(&l->connect, &l->tcp, sa, on_connect);
  }
  if (rc != 0)
    dial_failed(n, l, uv_strerror(rc));
}

static void on_resolved_name(uv_getaddrinfo_t *req, int status,
                             struct addrinfo *res) {
  io_link *l = req->data;
  pm_io_node *n = l->node;
  l->resolving = 0;
  if (l->closing) {
    uv_freeaddrinfo(res);
    link_release(l);
    return;
  }
  if (status != 0 || !res)
    dial_failed(n, l, status ? uv_strerror(status) : "no address");
  else
    connect_to(n, l, res->ai_addr);
  uv_freeaddrinfo(res);
  pump(n);
}

static void dial(pm_io_node *n, const char *addr) {
  io_link *l = calloc(1, sizeof *l);
  if (!l) {
    pm_node_dial_failed(n->core, now_ms(n), addr);
    return;
  }
  l->node = n;
  snprintf(l->dial_addr, sizeof l->dial_addr, "%s", addr);
  l->next = n->links;
  n->links = l;
  n->handles++;
  struct sockaddr_storage ss;
  if (pm_net_sockaddr(addr, 0, &ss) == 0) {
    connect_to(n, l, (struct sockaddr *)&ss);
    return;
  }
  char host[PM_ADDR_MAX + 1]; /* a name: look it up first */
  uint16_t port;
  if (pm_addr_parse(addr, host, &port, 0) != 0) {
    dial_failed(n, l, "malformed address");
    return;
  }
  char service[8];
  snprintf(service, sizeof service, "%u", (unsigned)port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  l->gai.data = l;
  int rc = uv_getaddrinfo(pm_host_loop(n->host), &l->gai, on_resolved_name,
                          host, service, &hints);
  if (rc != 0)
    dial_failed(n, l, uv_strerror(rc));
  else
    l->resolving = 1;
}

static void on_connection(uv_stream_t *server, int status) {
  pm_io_node *n = server->data;
  if (status != 0 || n->leaving)
    return;
  io_link *l = calloc(1, sizeof *l);
  if (!l)
    return;
  l->node = n;
  uv_tcp_init(pm_host_loop(n->host), &l->tcp);
  l->tcp.data = l;
  l->open = 1;
  l->next = n->links;
  n->links = l;
  n->handles++;
  if (uv_accept(server, (uv_stream_t *)&l->tcp) != 0) {
    link_close_now(l);
    return;
  }
  link_established(n, l, 0);
}

/* ---- resolvers
 * --------------------------------------------------------------- */

static void on_resolve(void *ud, int status, const pm_resolver_entry *entries,
                       size_t count) {
  pm_io_node *n = ud;
  if (status != 0 || n->leaving)
    return;
  for (size_t i = 0; i < count; i++)
    if (pm_node_add_peer(n->core, now_ms(n), entries[i].addr,
                         entries[i].node_id, 0) != 0)
      pm_host_log(n->host, 1, "resolver gave a bad address: %s",
                  entries[i].addr);
  pump(n);
}

static void resolve_now(pm_io_node *n) {
  int asked = 0;
  for (size_t i = 0; i < n->nresolvers; i++)
    if (pm_resolver_client_resolve(n->resolvers[i], n->mesh, RESOLVE_MAX, n->id,
                                   on_resolve, n) == 0)
      asked = 1;
  n->want_resolve = !asked;
}

static void on_resolver_state(void *ud, int up, int err) {
  pm_io_node *n = ud;
  (void)err;
  if (n->leaving)
    return;
  if (up) {
    if (n->want_resolve)
      resolve_now(n);
    return;
  }
  /* Nobody answers on the machine's resolver address: serve it from this
   * process. If another process wins the race, the client finds it there. */
  if (n->zeroconf) {
    int rc = pm_host_serve_local_resolver(n->host, n->local_resolver);
    if (rc != 0 && rc != PM_ERR_EXISTS)
      pm_host_log(n->host, 0, "cannot host the local resolver on %s: %s",
                  n->local_resolver, pm_strerror(rc));
  }
}

/* ---- the pump
 * ------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t) {
  pm_io_node *n = t->data;
  pm_node_handle_timeout(n->core, now_ms(n));
  pump(n);
}

static void arm_timer(pm_io_node *n) {
  if (n->leaving)
    return;
  uint64_t d = pm_node_deadline(n->core);
  if (d == PM_DEADLINE_NONE) {
    uv_timer_stop(&n->timer);
    return;
  }
  uint64_t now = now_ms(n);
  /* At least 1 ms: a deadline already past would otherwise re-run inside
   * libuv's timer pass and starve every socket. */
  uv_timer_start(&n->timer, on_timer, d > now ? d - now : 1, 0);
}

static void handle_event(pm_io_node *n, const pm_event *ev) {
  char hex[2 * PM_NODE_ID_LEN + 1];
  char text[ERROR_TEXT_MAX];
  switch (ev->kind) {
  case PM_EV_MESSAGE:
    pm_host_history_add(n->host, n->mesh, ev);
    break;
  case PM_EV_NEIGHBOR_UP:
    pm_identity_hex(ev->peer, hex);
    pm_host_log(n->host, 1, "[%s] neighbour up: %.8s at %s", n->mesh, hex,
                ev->addr);
    if (ev->addr[0])
      pm_host_peer_seen(n->host, n->mesh, ev->peer, ev->addr);
    break;
  case PM_EV_NEIGHBOR_DOWN:
    pm_identity_hex(ev->peer, hex);
    pm_host_log(n->host, 1, "[%s] neighbour down: %.8s (%s)", n->mesh, hex,
                pm_close_reason_name(ev->reason));
    break;
  case PM_EV_LINK_ERROR:
    snprintf(text, sizeof text, "[%s] closed link to %s: %s", n->mesh,
             ev->addr[0] ? ev->addr : "a peer", pm_strerror(ev->error));
    pm_host_log(n->host, 0, "%s", text);
    n->event_text = text;
    break;
  default:
    break;
  }
  if (!n->leaving && n->cb)
    n->cb(n->ud, n, ev);
  n->event_text = NULL;
}

/* Reports the secure-channel failures queued by secure_failed, oldest
 * first; a callback may queue more. */
static void deliver_link_errors(pm_io_node *n) {
  while (n->nerrors) {
    link_error e = n->errors[0];
    n->nerrors--;
    memmove(&n->errors[0], &n->errors[1], n->nerrors * sizeof n->errors[0]);
    e.ev.addr = e.addr;
    n->event_text = e.text;
    if (!n->leaving && n->cb)
      n->cb(n->ud, n, &e.ev);
    n->event_text = NULL;
  }
}

static void pump(pm_io_node *n) {
  if (n->pumping) {
    n->pump_again = 1;
    return;
  }
  n->pumping = 1;
  do {
    n->pump_again = 0;
    pm_output o;
    while (pm_node_next_output(n->core, &o)) {
      io_link *l;
      switch (o.kind) {
      case PM_OUT_SEND:
        if ((l = link_by_id(n, o.link_id)))
          link_send(n, l, o.data, o.len);
        break;
      case PM_OUT_CLOSE:
        if ((l = link_by_id(n, o.link_id)))
          link_close_graceful(l);
        break;
      case PM_OUT_DIAL:
        dial(n, o.addr);
        break;
      case PM_OUT_RESOLVE:
        resolve_now(n);
        break;
      default:
        break;
      }
    }
    pm_event ev;
    while (pm_node_next_event(n->core, &ev))
      handle_event(n, &ev);
    deliver_link_errors(n);
  } while (n->pump_again);
  n->pumping = 0;
  arm_timer(n);
  maybe_free(n);
}

static void stop_lingering(pm_io_node *n) {
  if (!uv_is_closing((uv_handle_t *)&n->timer))
    uv_close((uv_handle_t *)&n->timer, on_handle_closed);
}

static void on_linger(uv_timer_t *t) {
  pm_io_node *n = t->data;
  for (io_link *l = n->links, *next; l; l = next) {
    next = l->next;
    link_close_now(l);
  }
  stop_lingering(n);
}

/* ---- public API
 * -------------------------------------------------------------------- */

static int add_known_peer(void *ud, const uint8_t id[PM_NODE_ID_LEN],
                          const char *addr) {
  pm_io_node *n = ud;
  if (pm_node_add_peer(n->core, now_ms(n), addr, id, 0) != 0)
    pm_host_log(n->host, 1, "ignoring stored peer address %s", addr);
  return 0;
}

static int start_listener(pm_io_node *n, const char *listen, char *err,
                          size_t errlen) {
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  if (pm_addr_parse(listen, host, &port, 1) != 0) {
    snprintf(err, errlen, "bad listen address '%s' (expected HOST:PORT)",
             listen);
    return PM_ERR_INVAL;
  }
  struct sockaddr_storage ss;
  if (pm_net_sockaddr(listen, 1, &ss) != 0) {
    snprintf(err, errlen, "bad listen address '%s' (HOST must be an IP)",
             listen);
    return PM_ERR_INVAL;
  }
  uv_loop_t *loop = pm_host_loop(n->host);
  uv_tcp_init(loop, &n->listener);
  n->listener.data = n;
  n->handles++;
  int rc = uv_tcp_bind(&n->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&n->listener, 128, on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "cannot listen on %s: %s", listen, uv_strerror(rc));
    return PM_ERR_IO;
  }
  n->port = pm_net_local_port(&n->listener);
  /* An unspecified host is registered as such: the resolver fills in the
   * address it sees the registration come from. */
  if (pm_addr_format(n->register_addr, host, n->port) != 0) {
    snprintf(err, errlen, "bad listen address '%s'", listen);
    return PM_ERR_INVAL;
  }
  return 0;
}

int pm_io_node_join(pm_host *host, const pm_join_options *o, pm_io_event_cb cb,
                    void *ud, pm_io_node **out, char *err, size_t errlen) {
  *out = NULL;
  const pm_identity *ident;
  int rc = pm_host_identity(host, &ident, err, errlen);
  if (rc)
    return rc;
  if (o->nresolvers > MAX_RESOLVERS) {
    snprintf(err, errlen, "at most %d resolvers", MAX_RESOLVERS);
    return PM_ERR_INVAL;
  }
  pm_io_node *n = calloc(1, sizeof *n);
  if (!n) {
    snprintf(err, errlen, "out of memory");
    return PM_ERR_NOMEM;
  }
  n->host = host;
  n->cb = cb;
  n->ud = ud;
  pm_buf_init(&n->net, NULL);
  pm_buf_init(&n->plain, NULL);
  snprintf(n->mesh, sizeof n->mesh, "%s", o->mesh);
  memcpy(n->id, ident->public_key, PM_NODE_ID_LEN);
  pm_host_node_attach(host);
  uv_loop_t *loop = pm_host_loop(host);
  uv_timer_init(loop, &n->timer);
  n->timer.data = n;
  n->handles++;

  rc = start_listener(n, o->listen ? o->listen : "0.0.0.0:0", err, errlen);
  if (rc)
    goto fail;

  pm_node_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.mesh = o->mesh;
  memcpy(cfg.node_id, n->id, PM_NODE_ID_LEN);
  cfg.listen_port = n->port;
  cfg.send_queue_limit = LINK_QUEUE_LIMIT;
  cfg.random = random_cb;
  cfg.secret_key = ident->secret_key;
  /* Sequence numbers start at the wall clock in microseconds, above any
   * earlier run's, so receivers' replay windows accept this run. */
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) == 0)
    cfg.first_seq = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
  rc = pm_node_new(&cfg, &n->core);
  if (rc) {
    snprintf(err, errlen,
             rc == PM_ERR_INVAL
                 ? "bad mesh name '%s' (1-63 letters, digits, '.', '_', '-')"
                 : "cannot create node for mesh '%s'",
             o->mesh);
    goto fail;
  }

  /* The link keys (the mesh name is valid now). */
  if (o->psk) {
    memcpy(n->psk, o->psk, PM_PSK_LEN);
    n->password = 1;
  } else if ((rc = pm_host_mesh_psk(host, n->mesh, n->psk, &n->password))) {
    snprintf(err, errlen, "cannot derive the link key of mesh '%s': %s",
             n->mesh, pm_strerror(rc));
    goto fail;
  }
  pm_mesh_tag(n->mesh, n->mesh_tag);
  memcpy(n->sk, ident->secret_key, sizeof n->sk);

  for (size_t i = 0; i < o->npeers; i++) {
    rc = pm_node_add_peer(n->core, now_ms(n), o->peers[i], NULL, 1);
    if (rc) {
      snprintf(err, errlen, "bad peer address '%s' (expected HOST:PORT)",
               o->peers[i]);
      goto fail;
    }
  }

  const char *const *res = o->resolvers;
  size_t nres = o->nresolvers;
  const char *local = NULL;
  if (!o->resolver_none && nres == 0 && o->npeers == 0) {
    n->zeroconf = 1;
    local = getenv("PEERMESH_LOCAL_RESOLVER");
    if (!local || !*local)
      local = PM_LOCAL_RESOLVER;
    snprintf(n->local_resolver, sizeof n->local_resolver, "%s", local);
    res = &local;
    nres = 1;
  }
  for (size_t i = 0; i < nres; i++) {
    rc = pm_resolver_client_new(loop, res[i], on_resolver_state, n,
                                &n->resolvers[n->nresolvers]);
    if (rc) {
      snprintf(err, errlen, "bad resolver address '%s' (expected IP:PORT)",
               res[i]);
      goto fail;
    }
    n->nresolvers++;
    if (pm_resolver_client_register(n->resolvers[i], n->mesh, n->id,
                                    n->register_addr) != 0)
      pm_host_log(host, 0, "cannot register with resolver %s", res[i]);
  }

  pm_host_known_peers(host, n->mesh, KNOWN_PEERS_AT_START, add_known_peer, n);
  *out = n;
  pm_node_handle_timeout(n->core, now_ms(n)); /* first maintenance round */
  pump(n);
  return 0;

fail:
  n->cb = NULL;
  pm_io_node_leave(n);
  return rc ? rc : PM_ERR_INVAL;
}

int pm_io_node_send(pm_io_node *n, const char *action, const char *body,
                    size_t body_len, int has_hop_limit, uint32_t hop_limit,
                    uint8_t id_out[PM_MSG_ID_LEN]) {
  if (n->leaving)
    return PM_ERR_CLOSED;
  pm_send s;
  memset(&s, 0, sizeof s);
  s.action = action;
  s.body = (const uint8_t *)body;
  s.body_len = body_len;
  s.time_ms = (uint64_t)pm_host_wall_ms();
  s.has_hop_limit = has_hop_limit;
  s.hop_limit = hop_limit;
  int rc = pm_node_send(n->core, now_ms(n), &s, id_out);
  pump(n);
  return rc;
}

void pm_io_node_leave(pm_io_node *n) {
  if (n->leaving)
    return;
  if (n->core) {
    pm_node_leave(n->core, now_ms(n));
    n->cb = NULL;
    pump(n); /* queue the goodbyes and graceful closes */
  }
  n->leaving = 1;
  for (size_t i = 0; i < n->nresolvers; i++) {
    /* Best effort: an unregistration that cannot be sent expires. */
    if (pm_resolver_client_unregister(n->resolvers[i], n->mesh, n->id) != 0)
      pm_host_log(n->host, 1, "could not unregister from a resolver");
    pm_resolver_client_close(n->resolvers[i]);
  }
  n->nresolvers = 0;
  for (io_link *l = n->links, *next; l; l = next) {
    next = l->next;
    link_close_graceful(l);
  }
  /* Give the goodbyes a moment to drain, but never hang on a peer that does
   * not read: the timer force-closes what is left. */
  if (n->links)
    uv_timer_start(&n->timer, on_linger, LINGER_MS, 0);
  else
    stop_lingering(n);
  if (uv_is_active((uv_handle_t *)&n->listener) || n->listener.type == UV_TCP)
    uv_close((uv_handle_t *)&n->listener, on_handle_closed);
}

void pm_io_node_set_filter(pm_io_node *n, pm_filter_fn fn, void *ud) {
  if (n->core)
    pm_node_set_filter(n->core, fn, ud);
}

const char *pm_io_node_event_text(const pm_io_node *n) {
  return n->event_text;
}

const uint8_t *pm_io_node_id(const pm_io_node *n) {
  return n->id;
}
const char *pm_io_node_mesh(const pm_io_node *n) {
  return n->mesh;
}
uint16_t pm_io_node_port(const pm_io_node *n) {
  return n->port;
}
int pm_io_node_online(const pm_io_node *n) {
  return n->core && pm_node_is_online(n->core);
}
void pm_io_node_stats(const pm_io_node *n, pm_node_stats *out) {
  if (n->core)
    pm_node_get_stats(n->core, out);
  else
    memset(out, 0, sizeof *out);
}
