#include "registry.h"

#include <sodium.h>
#include <string.h>

/* ---- an intrusive chained hash table --------------------------------------
 * Each stored object starts with an hnode. The table only links nodes; the
 * callers compare keys. Bucket counts are powers of two. */

typedef struct hnode {
  struct hnode *next;
  uint64_t hash;
} hnode;

typedef struct htable {
  hnode **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
} htable;

#define HTABLE_INITIAL 16

typedef struct mesh mesh;
typedef struct client client;

/* One registration. */
typedef struct entry {
  hnode h; /* in pm_registry.entries, keyed by (mesh, node_id) */
  struct entry *older, *newer; /* expiry order */
  mesh *mesh;
  client *client; /* NULL when registered without a client */
  uint64_t expires_ms;
  size_t index; /* position in mesh->items */
  uint8_t node_id[PM_NODE_ID_LEN];
  char addr[PM_ADDR_MAX + 1];
} entry;

/* The registrations of one mesh, in a dense array for O(1) sampling. */
struct mesh {
  hnode h; /* in pm_registry.meshes, keyed by name */
  entry **items;
  size_t n, cap;
  size_t name_len;
  char name[PM_MESH_NAME_MAX + 1];
};

/* How many registrations one client address holds. */
struct client {
  hnode h; /* in pm_registry.clients, keyed by name */
  size_t count;
  size_t name_len;
  char name[PM_ADDR_MAX + 1];
};

struct pm_registry {
  const pm_allocator *alloc;
  uint64_t (*random)(void *ud);
  void *random_ud;
  uint64_t lifetime_ms;
  uint32_t lifetime_s;
  size_t max_entries, max_per_mesh, max_per_client;
  unsigned char hash_key[crypto_shorthash_KEYBYTES];
  htable entries, meshes, clients;
  entry *oldest, *newest; /* expiry list: oldest expires first */
};

static void *mem_alloc(pm_registry *reg, size_t size) {
  return reg->alloc->realloc(reg->alloc->ud, NULL, size);
}

static void mem_free(pm_registry *reg, void *p) {
  if (p)
    reg->alloc->realloc(reg->alloc->ud, p, 0);
}

static int htable_init(pm_registry *reg, htable *t) {
  t->buckets = mem_alloc(reg, HTABLE_INITIAL * sizeof *t->buckets);
  if (!t->buckets)
    return PM_ERR_NOMEM;
  memset(t->buckets, 0, HTABLE_INITIAL * sizeof *t->buckets);
  t->nbuckets = HTABLE_INITIAL;
  t->count = 0;
  return 0;
}

static hnode *htable_first(const htable *t, uint64_t hash) {
  return t->buckets[hash & (t->nbuckets - 1)];
}

/* Doubles the bucket array when the load passes 1. Failing to grow is not an
 * error: the table only gets slower. */
static void htable_maybe_grow(pm_registry *reg, htable *t) {
  if (t->count < t->nbuckets || t->nbuckets > SIZE_MAX / 2 / sizeof(hnode *))
    return;
  size_t nb = t->nbuckets * 2;
  hnode **b = mem_alloc(reg, nb * sizeof *b);
  if (!b)
    return;
  memset(b, 0, nb * sizeof *b);
  for (size_t i = 0; i < t->nbuckets; i++) {
    hnode *n = t->buckets[i];
    while (n) {
      hnode *next = n->next;
      size_t j = n->hash & (nb - 1);
      n->next = b[j];
      b[j] = n;
      n = next;
    }
  }
  mem_free(reg, t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
}

static void htable_insert(pm_registry *reg, htable *t, hnode *n) {
  htable_maybe_grow(reg, t);
  size_t i = n->hash & (t->nbuckets - 1);
  n->next = t->buckets[i];
  t->buckets[i] = n;
  t->count++;
}

static void htable_remove(htable *t, hnode *n) {
  hnode **pp = &t->buckets[n->hash & (t->nbuckets - 1)];
  while (*pp && *pp != n)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = n->next;
    t->count--;
  }
}

static uint64_t keyed_hash(const pm_registry *reg, const void *data,
                           size_t len) {
  unsigned char out[crypto_shorthash_BYTES];
  crypto_shorthash(out, data, len, reg->hash_key);
  uint64_t h = 0;
  for (size_t i = 0; i < sizeof out; i++)
    h = (h << 8) | out[i];
  return h;
}

/* ---- lookups --------------------------------------------------------------
 */

static mesh *mesh_find(const pm_registry *reg, const char *name, size_t len) {
  uint64_t h = keyed_hash(reg, name, len);
  for (hnode *n = htable_first(&reg->meshes, h); n; n = n->next) {
    mesh *m = (mesh *)n;
    if (n->hash == h && m->name_len == len && memcmp(m->name, name, len) == 0)
      return m;
  }
  return NULL;
}

static client *client_find(const pm_registry *reg, const char *name,
                           size_t len) {
  uint64_t h = keyed_hash(reg, name, len);
  for (hnode *n = htable_first(&reg->clients, h); n; n = n->next) {
    client *c = (client *)n;
    if (n->hash == h && c->name_len == len && memcmp(c->name, name, len) == 0)
      return c;
  }
  return NULL;
}

/* Entries are keyed by their mesh object and node ID; the mesh's own hash
 * stands in for its name. */
static uint64_t entry_hash(const pm_registry *reg, const mesh *m,
                           const uint8_t node_id[PM_NODE_ID_LEN]) {
  uint8_t key[PM_NODE_ID_LEN + 8];
  memcpy(key, node_id, PM_NODE_ID_LEN);
  for (int i = 0; i < 8; i++)
    key[PM_NODE_ID_LEN + i] = (uint8_t)(m->h.hash >> (8 * i));
  return keyed_hash(reg, key, sizeof key);
}

static entry *entry_find(const pm_registry *reg, const mesh *m,
                         const uint8_t node_id[PM_NODE_ID_LEN]) {
  uint64_t h = entry_hash(reg, m, node_id);
  for (hnode *n = htable_first(&reg->entries, h); n; n = n->next) {
    entry *e = (entry *)n;
    if (n->hash == h && e->mesh == m &&
        memcmp(e->node_id, node_id, PM_NODE_ID_LEN) == 0)
      return e;
  }
  return NULL;
}

/* ---- the expiry list ------------------------------------------------------
 */

static void list_unlink(pm_registry *reg, entry *e) {
  if (e->older)
    e->older->newer = e->newer;
  else
    reg->oldest = e->newer;
  if (e->newer)
    e->newer->older = e->older;
  else
    reg->newest = e->older;
  e->older = e->newer = NULL;
}

static void list_append(pm_registry *reg, entry *e) {
  e->newer = NULL;
  e->older = reg->newest;
  if (reg->newest)
    reg->newest->newer = e;
  else
    reg->oldest = e;
  reg->newest = e;
}

/* ---- removal ----------------------------------------------------------------
 */

static void mesh_drop_if_empty(pm_registry *reg, mesh *m) {
  if (m->n)
    return;
  htable_remove(&reg->meshes, &m->h);
  mem_free(reg, m->items);
  mem_free(reg, m);
}

static void client_drop_if_empty(pm_registry *reg, client *c) {
  if (!c || c->count)
    return;
  htable_remove(&reg->clients, &c->h);
  mem_free(reg, c);
}

static void entry_remove(pm_registry *reg, entry *e) {
  mesh *m = e->mesh;
  list_unlink(reg, e);
  htable_remove(&reg->entries, &e->h);
  entry *last = m->items[m->n - 1];
  m->items[e->index] = last;
  last->index = e->index;
  m->n--;
  if (e->client) {
    e->client->count--;
    client_drop_if_empty(reg, e->client);
  }
  mesh_drop_if_empty(reg, m);
  mem_free(reg, e);
}

size_t pm_registry_expire(pm_registry *reg, uint64_t now_ms) {
  size_t dropped = 0;
  while (reg->oldest && reg->oldest->expires_ms <= now_ms) {
    entry_remove(reg, reg->oldest);
    dropped++;
  }
  return dropped;
}

/* ---- construction ----------------------------------------------------------
 */

int pm_registry_new(const pm_registry_config *cfg, pm_registry **out) {
  *out = NULL;
  if (!cfg || !cfg->random)
    return PM_ERR_INVAL;
  const pm_allocator *alloc = cfg->alloc ? cfg->alloc : pm_allocator_default();
  pm_registry *reg = alloc->realloc(alloc->ud, NULL, sizeof *reg);
  if (!reg)
    return PM_ERR_NOMEM;
  memset(reg, 0, sizeof *reg);
  reg->alloc = alloc;
  reg->random = cfg->random;
  reg->random_ud = cfg->random_ud;
  reg->lifetime_s =
      cfg->lifetime_s ? cfg->lifetime_s : PM_REGISTRY_DEFAULT_LIFETIME_S;
  reg->lifetime_ms = (uint64_t)reg->lifetime_s * 1000u;
  reg->max_entries =
      cfg->max_entries ? cfg->max_entries : PM_REGISTRY_DEFAULT_MAX_ENTRIES;
  reg->max_per_mesh =
      cfg->max_per_mesh ? cfg->max_per_mesh : PM_REGISTRY_DEFAULT_MAX_PER_MESH;
  reg->max_per_client = cfg->max_per_client
                            ? cfg->max_per_client
                            : PM_REGISTRY_DEFAULT_MAX_PER_CLIENT;
  for (size_t i = 0; i < sizeof reg->hash_key; i += 8) {
    uint64_t r = reg->random(reg->random_ud);
    for (size_t j = 0; j < 8 && i + j < sizeof reg->hash_key; j++)
      reg->hash_key[i + j] = (unsigned char)(r >> (8 * j));
  }
  if (htable_init(reg, &reg->entries) || htable_init(reg, &reg->meshes) ||
      htable_init(reg, &reg->clients)) {
    pm_registry_free(reg);
    return PM_ERR_NOMEM;
  }
  *out = reg;
  return 0;
}

void pm_registry_free(pm_registry *reg) {
  if (!reg)
    return;
  while (reg->oldest)
    entry_remove(reg, reg->oldest);
  mem_free(reg, reg->entries.buckets);
  mem_free(reg, reg->meshes.buckets);
  mem_free(reg, reg->clients.buckets);
  mem_free(reg, reg);
}

/* ---- validation ------------------------------------------------------------
 */

/* Returns the mesh name's length, or 0 when it is not valid. */
static size_t mesh_name_len(const char *name) {
  if (!name)
    return 0;
  size_t n = strnlen(name, PM_MESH_NAME_MAX + 1);
  return pm_resolver_mesh_valid(name, n) ? n : 0;
}

static int addr_ok(const char *addr) {
  if (!addr || strnlen(addr, PM_ADDR_MAX + 1) > PM_ADDR_MAX)
    return 0;
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  return pm_addr_parse(addr, host, &port, 0) == 0;
}

/* ---- register / unregister -------------------------------------------------
 */

/* Finds or creates the record of `name`; *created says which. */
static client *client_get(pm_registry *reg, const char *name, size_t len,
                          int *created) {
  *created = 0;
  client *c = client_find(reg, name, len);
  if (c)
    return c;
  c = mem_alloc(reg, sizeof *c);
  if (!c)
    return NULL;
  memset(c, 0, sizeof *c);
  c->h.hash = keyed_hash(reg, name, len);
  c->name_len = len;
  memcpy(c->name, name, len);
  htable_insert(reg, &reg->clients, &c->h);
  *created = 1;
  return c;
}

static mesh *mesh_get(pm_registry *reg, const char *name, size_t len,
                      int *created) {
  *created = 0;
  mesh *m = mesh_find(reg, name, len);
  if (m)
    return m;
  m = mem_alloc(reg, sizeof *m);
  if (!m)
    return NULL;
  memset(m, 0, sizeof *m);
  m->h.hash = keyed_hash(reg, name, len);
  m->name_len = len;
  memcpy(m->name, name, len);
  htable_insert(reg, &reg->meshes, &m->h);
  *created = 1;
  return m;
}

/* Makes room for one more item in `m`. */
static int mesh_reserve(pm_registry *reg, mesh *m) {
  if (m->n < m->cap)
    return 0;
  size_t cap = m->cap ? m->cap * 2 : 4;
  if (cap > SIZE_MAX / sizeof(entry *))
    return PM_ERR_NOMEM;
  entry **items =
      reg->alloc->realloc(reg->alloc->ud, m->items, cap * sizeof *items);
  if (!items)
    return PM_ERR_NOMEM;
  m->items = items;
  m->cap = cap;
  return 0;
}

static uint64_t expiry_for(const pm_registry *reg, uint64_t now_ms) {
  return now_ms > UINT64_MAX - reg->lifetime_ms ? UINT64_MAX
                                                : now_ms + reg->lifetime_ms;
}

/* Refreshes an existing registration, possibly for another client. */
static int entry_refresh(pm_registry *reg, entry *e, uint64_t now_ms,
                         const char *addr, const char *cname, size_t clen) {
  client *cl = NULL;
  if (cname) {
    int created;
    if (e->client && e->client->name_len == clen &&
        memcmp(e->client->name, cname, clen) == 0) {
      cl = e->client;
    } else {
      client *old = client_find(reg, cname, clen);
      if (old && old->count >= reg->max_per_client)
        return PM_ERR_FULL;
      cl = client_get(reg, cname, clen, &created);
      if (!cl)
        return PM_ERR_NOMEM;
    }
  }
  if (cl != e->client) {
    if (e->client) {
      e->client->count--;
      client_drop_if_empty(reg, e->client);
    }
    e->client = cl;
    if (cl)
      cl->count++;
  }
  strcpy(e->addr, addr);
  e->expires_ms = expiry_for(reg, now_ms);
  list_unlink(reg, e);
  list_append(reg, e);
  return 0;
}

int pm_registry_register(pm_registry *reg, uint64_t now_ms,
                         const char *mesh_name,
                         const uint8_t node_id[PM_NODE_ID_LEN],
                         const char *addr, const char *cname,
                         uint32_t *lifetime_s) {
  size_t mlen = mesh_name_len(mesh_name);
  if (!mlen || !node_id || !addr_ok(addr))
    return PM_ERR_INVAL;
  size_t clen = 0;
  if (cname) {
    clen = strnlen(cname, PM_ADDR_MAX + 1);
    if (clen == 0 || clen > PM_ADDR_MAX)
      return PM_ERR_INVAL;
  }
  pm_registry_expire(reg, now_ms);

  mesh *m = mesh_find(reg, mesh_name, mlen);
  entry *e = m ? entry_find(reg, m, node_id) : NULL;
  if (e) {
    int rc = entry_refresh(reg, e, now_ms, addr, cname, clen);
    if (rc)
      return rc;
    if (lifetime_s)
      *lifetime_s = reg->lifetime_s;
    return 0;
  }

  /* A new registration: check every quota before changing anything. */
  if (reg->entries.count >= reg->max_entries)
    return PM_ERR_FULL;
  if (m && m->n >= reg->max_per_mesh)
    return PM_ERR_FULL;
  client *cl = cname ? client_find(reg, cname, clen) : NULL;
  if (cl && cl->count >= reg->max_per_client)
    return PM_ERR_FULL;

  int mesh_created = 0, client_created = 0;
  e = mem_alloc(reg, sizeof *e);
  if (!e)
    return PM_ERR_NOMEM;
  memset(e, 0, sizeof *e);
  m = mesh_get(reg, mesh_name, mlen, &mesh_created);
  if (!m || mesh_reserve(reg, m) != 0)
    goto nomem;
  if (cname && !(cl = client_get(reg, cname, clen, &client_created)))
    goto nomem;

  memcpy(e->node_id, node_id, PM_NODE_ID_LEN);
  strcpy(e->addr, addr);
  e->mesh = m;
  e->client = cl;
  if (cl)
    cl->count++;
  e->index = m->n;
  m->items[m->n++] = e;
  e->h.hash = entry_hash(reg, m, node_id);
  htable_insert(reg, &reg->entries, &e->h);
  e->expires_ms = expiry_for(reg, now_ms);
  list_append(reg, e);
  if (lifetime_s)
    *lifetime_s = reg->lifetime_s;
  return 0;

nomem:
  mem_free(reg, e);
  if (m && mesh_created)
    mesh_drop_if_empty(reg, m);
  return PM_ERR_NOMEM;
}

int pm_registry_unregister(pm_registry *reg, uint64_t now_ms,
                           const char *mesh_name,
                           const uint8_t node_id[PM_NODE_ID_LEN]) {
  size_t mlen = mesh_name_len(mesh_name);
  if (!mlen || !node_id)
    return PM_ERR_INVAL;
  pm_registry_expire(reg, now_ms);
  mesh *m = mesh_find(reg, mesh_name, mlen);
  entry *e = m ? entry_find(reg, m, node_id) : NULL;
  if (!e)
    return PM_ERR_NOT_FOUND;
  entry_remove(reg, e);
  return 0;
}

/* ---- resolve --------------------------------------------------------------
 */

static void mesh_swap(mesh *m, size_t i, size_t j) {
  if (i == j)
    return;
  entry *a = m->items[i], *b = m->items[j];
  m->items[i] = b;
  b->index = i;
  m->items[j] = a;
  a->index = j;
}

static int all_zero(const uint8_t *p, size_t n) {
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++)
    acc |= p[i];
  return acc == 0;
}

int pm_registry_resolve(pm_registry *reg, uint64_t now_ms,
                        const char *mesh_name, size_t max,
                        const uint8_t *exclude, pm_resolver_entry *out,
                        size_t *n) {
  *n = 0;
  size_t mlen = mesh_name_len(mesh_name);
  if (!mlen)
    return PM_ERR_INVAL;
  pm_registry_expire(reg, now_ms);
  mesh *m = mesh_find(reg, mesh_name, mlen);
  if (!m || max == 0)
    return 0;

  /* Park the excluded entry at the end and sample from the rest. */
  size_t avail = m->n;
  if (exclude && !all_zero(exclude, PM_NODE_ID_LEN)) {
    entry *x = entry_find(reg, m, exclude);
    if (x) {
      mesh_swap(m, x->index, m->n - 1);
      avail--;
    }
  }

  /* A partial Fisher-Yates shuffle of the mesh's array: position i receives
   * a uniform pick among the items not drawn yet, so the first picks are a
   * uniform sample without replacement, found in O(max). The modulo's bias
   * is below avail / 2^64, far under anything observable. Entries past their
   * expiry (possible only if now_ms went backwards) are skipped. */
  size_t got = 0;
  for (size_t i = 0; i < avail && got < max; i++) {
    size_t j = i + (size_t)(reg->random(reg->random_ud) % (avail - i));
    mesh_swap(m, i, j);
    const entry *e = m->items[i];
    if (e->expires_ms <= now_ms)
      continue;
    memcpy(out[got].node_id, e->node_id, PM_NODE_ID_LEN);
    strcpy(out[got].addr, e->addr);
    got++;
  }
  *n = got;
  return 0;
}

/* ---- inspection ------------------------------------------------------------
 */

size_t pm_registry_count(const pm_registry *reg) {
  return reg->entries.count;
}

size_t pm_registry_mesh_count(const pm_registry *reg, const char *mesh_name) {
  size_t mlen = mesh_name_len(mesh_name);
  const mesh *m = mlen ? mesh_find(reg, mesh_name, mlen) : NULL;
  return m ? m->n : 0;
}

size_t pm_registry_client_count(const pm_registry *reg, const char *cname) {
  if (!cname)
    return 0;
  size_t clen = strnlen(cname, PM_ADDR_MAX + 1);
  if (clen == 0 || clen > PM_ADDR_MAX)
    return 0;
  const client *c = client_find(reg, cname, clen);
  return c ? c->count : 0;
}

uint32_t pm_registry_lifetime(const pm_registry *reg) {
  return reg->lifetime_s;
}
