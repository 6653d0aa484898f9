/* Fuzz target: the resolver protocol decoder (resolver/resolver_msg.h) and
 * the registration table a server answers from (resolver/registry.h).
 *
 * The input is the byte stream a client sends a resolver (or a resolver a
 * client). Frames are cut from it with pm_frame_parse, as the server does,
 * and each is decoded with pm_resolver_msg_read. A decoded message must be
 * what the header promises: NUL-terminated strings inside their arrays,
 * valid mesh names and addresses, counts in range, and, the format being
 * canonical, re-encoding it must give back exactly the frame's bytes.
 * Decoding may fail only with the documented codes.
 *
 * Decoded requests are then applied to a pm_registry with tiny quotas and a
 * short lifetime, as the server's handlers do, on a clock that each request
 * moves forward by an amount taken from its request ID. The table must keep
 * its quotas, answer only live, valid, non-excluded, distinct entries, and
 * produce answers the encoder accepts.
 *
 * A failed check aborts, which libFuzzer and the replay driver report as a
 * crash. Built with replay.c it replays a corpus under `make test`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "registry.h"
#include "resolver_msg.h"
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

#define MAX_ENTRIES 8
#define MAX_PER_MESH 5
#define MAX_PER_CLIENT 3
#define LIFETIME_S 5

static const uint8_t zero_id[PM_NODE_ID_LEN];

static uint64_t xorshift(void *ud) {
  uint64_t *s = ud;
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* A string field: NUL-terminated within `cap` bytes. Returns its length. */
static size_t terminated(const char *s, size_t cap) {
  size_t n = strnlen(s, cap);
  FUZZ_CHECK(n < cap);
  return n;
}

static void check_mesh(const char mesh[PM_MESH_NAME_MAX + 1]) {
  size_t n = terminated(mesh, PM_MESH_NAME_MAX + 1);
  FUZZ_CHECK(pm_resolver_mesh_valid(mesh, n));
}

static void check_addr(const char addr[PM_ADDR_MAX + 1]) {
  terminated(addr, PM_ADDR_MAX + 1);
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  FUZZ_CHECK(pm_addr_parse(addr, host, &port, 0) == 0);
  FUZZ_CHECK(port != 0);
}

/* Checks a decoded message and encodes it again into `b`. */
static void check_and_encode(const pm_resolver_msg *m, pm_buf *b) {
  int rc = -1000;
  switch (m->type) {
  case PM_RESOLVER_MSG_REGISTER:
    check_mesh(m->u.reg.mesh);
    check_addr(m->u.reg.addr);
    rc = pm_resolver_msg_write_register(b, &m->u.reg);
    break;
  case PM_RESOLVER_MSG_REGISTERED:
    rc = pm_resolver_msg_write_registered(b, &m->u.registered);
    break;
  case PM_RESOLVER_MSG_RESOLVE:
    check_mesh(m->u.resolve.mesh);
    FUZZ_CHECK(m->u.resolve.max >= 1 &&
               m->u.resolve.max <= PM_RESOLVER_MAX_ENTRIES);
    rc = pm_resolver_msg_write_resolve(b, &m->u.resolve);
    break;
  case PM_RESOLVER_MSG_RESOLVED:
    FUZZ_CHECK(m->u.resolved.count <= PM_RESOLVER_MAX_ENTRIES);
    for (unsigned i = 0; i < m->u.resolved.count; i++)
      check_addr(m->u.resolved.entries[i].addr);
    rc = pm_resolver_msg_write_resolved(b, &m->u.resolved);
    break;
  case PM_RESOLVER_MSG_UNREGISTER:
    check_mesh(m->u.unreg.mesh);
    rc = pm_resolver_msg_write_unregister(b, &m->u.unreg);
    break;
  case PM_RESOLVER_MSG_UNREGISTERED:
    rc = pm_resolver_msg_write_unregistered(b, &m->u.unregistered);
    break;
  case PM_RESOLVER_MSG_ERROR: {
    size_t n = terminated(m->u.error.message, sizeof m->u.error.message);
    FUZZ_CHECK(memchr(m->u.error.message, '\0', n) == NULL);
    FUZZ_CHECK(pm_resolver_code_name(m->u.error.code) != NULL);
    FUZZ_CHECK(pm_resolver_code_to_err(m->u.error.code) < 0);
    rc = pm_resolver_msg_write_error(b, m->u.error.req_id, m->u.error.code,
                                     m->u.error.message);
    break;
  }
  default:
    FUZZ_FAIL("decoded a type the decoder does not know");
  }
  FUZZ_CHECK(rc == 0);
}

static void check_registry(const pm_registry *reg, const char *mesh,
                           const char *client) {
  FUZZ_CHECK(pm_registry_count(reg) <= MAX_ENTRIES);
  FUZZ_CHECK(pm_registry_mesh_count(reg, mesh) <= MAX_PER_MESH);
  if (client)
    FUZZ_CHECK(pm_registry_client_count(reg, client) <= MAX_PER_CLIENT);
}

/* What the server does with a request, minus the sockets. */
static void apply(pm_registry *reg, uint64_t now, const pm_resolver_msg *m,
                  const char *client) {
  switch (m->type) {
  case PM_RESOLVER_MSG_REGISTER: {
    uint32_t lifetime = 0;
    int rc = pm_registry_register(reg, now, m->u.reg.mesh, m->u.reg.node_id,
                                  m->u.reg.addr, client, &lifetime);
    FUZZ_CHECK(rc == 0 || rc == PM_ERR_FULL);
    if (rc == 0)
      FUZZ_CHECK(lifetime == LIFETIME_S);
    check_registry(reg, m->u.reg.mesh, client);
    break;
  }
  case PM_RESOLVER_MSG_RESOLVE: {
    pm_resolver_msg_resolved r;
    size_t n = 99;
    r.req_id = m->u.resolve.req_id;
    FUZZ_CHECK(pm_registry_resolve(reg, now, m->u.resolve.mesh,
                                   m->u.resolve.max, m->u.resolve.exclude,
                                   r.entries, &n) == 0);
    FUZZ_CHECK(n <= m->u.resolve.max);
    FUZZ_CHECK(n <= pm_registry_mesh_count(reg, m->u.resolve.mesh));
    int excluding = memcmp(m->u.resolve.exclude, zero_id, PM_NODE_ID_LEN) != 0;
    for (size_t i = 0; i < n; i++) {
      check_addr(r.entries[i].addr);
      if (excluding)
        FUZZ_CHECK(memcmp(r.entries[i].node_id, m->u.resolve.exclude,
                          PM_NODE_ID_LEN) != 0);
      for (size_t j = 0; j < i; j++)
        FUZZ_CHECK(memcmp(r.entries[i].node_id, r.entries[j].node_id,
                          PM_NODE_ID_LEN) != 0);
    }
    /* The answer the server would send must encode and decode back. */
    r.count = (uint8_t)n;
    pm_buf b;
    pm_buf_init(&b, NULL);
    FUZZ_CHECK(pm_resolver_msg_write_resolved(&b, &r) == 0);
    pm_frame f;
    size_t used;
    pm_resolver_msg back;
    FUZZ_CHECK(pm_frame_parse(b.data, b.len, &f, &used) == 1);
    FUZZ_CHECK(used == b.len);
    FUZZ_CHECK(pm_resolver_msg_read(&f, &back) == 0);
    FUZZ_CHECK(back.type == PM_RESOLVER_MSG_RESOLVED);
    FUZZ_CHECK(back.u.resolved.count == n);
    for (size_t i = 0; i < n; i++)
      FUZZ_CHECK(strcmp(back.u.resolved.entries[i].addr, r.entries[i].addr) ==
                 0);
    pm_buf_free(&b);
    break;
  }
  case PM_RESOLVER_MSG_UNREGISTER: {
    int rc =
        pm_registry_unregister(reg, now, m->u.unreg.mesh, m->u.unreg.node_id);
    FUZZ_CHECK(rc == 0 || rc == PM_ERR_NOT_FOUND);
    check_registry(reg, m->u.unreg.mesh, NULL);
    break;
  }
  default:
    break; /* answers: a server treats them as bad requests */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t seed = 0x9e3779b97f4a7c15u;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.lifetime_s = LIFETIME_S;
  cfg.max_entries = MAX_ENTRIES;
  cfg.max_per_mesh = MAX_PER_MESH;
  cfg.max_per_client = MAX_PER_CLIENT;
  cfg.random = xorshift;
  cfg.random_ud = &seed;
  pm_registry *reg;
  if (pm_registry_new(&cfg, &reg) != 0)
    abort();
  static const char *const clients[] = {"10.0.0.1", "10.0.0.2", NULL};
  uint64_t now = 1000;
  size_t off = 0;
  unsigned index = 0;
  while (off < size) {
    pm_frame f;
    size_t used = 0;
    if (pm_frame_parse(data + off, size - off, &f, &used) != 1)
      break;
    FUZZ_CHECK(used <= size - off);
    uint32_t peeked = 0;
    int peek = pm_resolver_msg_peek_req_id(&f, &peeked);
    FUZZ_CHECK(peek == (f.len >= 4 ? 0 : PM_ERR_TRUNCATED));

    pm_resolver_msg m;
    int rc = pm_resolver_msg_read(&f, &m);
    if (rc != 0) {
      FUZZ_CHECK(rc == PM_ERR_TRUNCATED || rc == PM_ERR_MALFORMED ||
                 rc == PM_ERR_UNEXPECTED);
      FUZZ_CHECK(rc != PM_ERR_UNEXPECTED ||
                 (f.type != PM_RESOLVER_MSG_REGISTER &&
                  f.type != PM_RESOLVER_MSG_REGISTERED &&
                  f.type != PM_RESOLVER_MSG_RESOLVE &&
                  f.type != PM_RESOLVER_MSG_RESOLVED &&
                  f.type != PM_RESOLVER_MSG_UNREGISTER &&
                  f.type != PM_RESOLVER_MSG_UNREGISTERED &&
                  f.type != PM_RESOLVER_MSG_ERROR));
    } else {
      FUZZ_CHECK(m.type == f.type);
      FUZZ_CHECK(peek == 0);
      /* Every message starts with its request ID. */
      FUZZ_CHECK(peeked == m.u.registered.req_id);
      pm_buf b;
      pm_buf_init(&b, NULL);
      check_and_encode(&m, &b);
      FUZZ_CHECK(b.len == used);
      FUZZ_CHECK(memcmp(b.data, data + off, used) == 0);
      pm_buf_free(&b);
      now += (uint64_t)(peeked & 0xff) * 64;
      apply(reg, now, &m, clients[index % 3]);
    }
    off += used;
    index++;
  }
  /* Everything expires in the end. */
  now += (uint64_t)LIFETIME_S * 1000 + 1;
  pm_registry_expire(reg, now);
  FUZZ_CHECK(pm_registry_count(reg) == 0);
  pm_registry_free(reg);
  return 0;
}
