/* The in-memory registration table, driven with literal timestamps and a
 * deterministic random sequence. */
#include <stdlib.h>

#include "registry.h"
#include "test.h"

/* xorshift64*: a fixed, reproducible sequence. */
static uint64_t xorshift(void *ud) {
  uint64_t *s = ud;
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1DULL;
}

static uint64_t always_zero(void *ud) {
  (void)ud;
  return 0;
}

static pm_registry *make(pm_registry_config *cfg, uint64_t *seed) {
  cfg->random = xorshift;
  cfg->random_ud = seed;
  pm_registry *reg = NULL;
  CHECK_INT(pm_registry_new(cfg, &reg), 0);
  return reg;
}

static void node(uint8_t id[PM_NODE_ID_LEN], unsigned n) {
  memset(id, 0, PM_NODE_ID_LEN);
  id[0] = 1; /* never all zero */
  id[30] = (uint8_t)(n >> 8);
  id[31] = (uint8_t)n;
}

static unsigned node_num(const uint8_t id[PM_NODE_ID_LEN]) {
  return (unsigned)id[30] << 8 | id[31];
}

static int reg_node(pm_registry *reg, uint64_t now, const char *mesh,
                    unsigned n, const char *client) {
  uint8_t id[PM_NODE_ID_LEN];
  char addr[32];
  node(id, n);
  snprintf(addr, sizeof addr, "10.0.%u.%u:%u", n / 256, n % 256,
           1000 + n % 1000);
  return pm_registry_register(reg, now, mesh, id, addr, client, NULL);
}

static void test_new_needs_random(void) {
  pm_registry *reg = (pm_registry *)1;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  CHECK_INT(pm_registry_new(&cfg, &reg), PM_ERR_INVAL);
  CHECK(reg == NULL);
  CHECK_INT(pm_registry_new(NULL, &reg), PM_ERR_INVAL);
}

static void test_defaults(void) {
  uint64_t seed = 1;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  pm_registry *reg = make(&cfg, &seed);
  CHECK_INT(pm_registry_lifetime(reg), 300);
  uint8_t id[PM_NODE_ID_LEN];
  node(id, 1);
  uint32_t life = 0;
  CHECK_INT(
      pm_registry_register(reg, 1000, "lobby", id, "1.2.3.4:5", NULL, &life),
      0);
  CHECK_INT(life, 300);
  /* Alive until 1000 + 300 s, gone at that instant. */
  pm_resolver_entry out[4];
  size_t n;
  CHECK_INT(pm_registry_resolve(reg, 300999, "lobby", 4, NULL, out, &n), 0);
  CHECK_INT(n, 1);
  CHECK_INT(pm_registry_resolve(reg, 301000, "lobby", 4, NULL, out, &n), 0);
  CHECK_INT(n, 0);
  CHECK_INT(pm_registry_count(reg), 0);
  pm_registry_free(reg);
}

static void test_upsert(void) {
  uint64_t seed = 2;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.lifetime_s = 10;
  pm_registry *reg = make(&cfg, &seed);
  uint8_t a[PM_NODE_ID_LEN];
  node(a, 1);
  uint32_t life = 0;
  CHECK_INT(pm_registry_register(reg, 1000, "m", a, "1.1.1.1:1", "c1", &life),
            0);
  CHECK_INT(life, 10);
  CHECK_INT(pm_registry_register(reg, 2000, "m", a, "2.2.2.2:2", "c1", &life),
            0);
  CHECK_INT(pm_registry_count(reg), 1);
  CHECK_INT(pm_registry_mesh_count(reg, "m"), 1);
  CHECK_INT(pm_registry_client_count(reg, "c1"), 1);
  pm_resolver_entry out[2];
  size_t n;
  CHECK_INT(pm_registry_resolve(reg, 3000, "m", 2, NULL, out, &n), 0);
  CHECK_INT(n, 1);
  CHECK_STR(out[0].addr, "2.2.2.2:2");
  CHECK_MEM(out[0].node_id, a, PM_NODE_ID_LEN);
  /* The same node in another mesh is another registration. */
  CHECK_INT(
      pm_registry_register(reg, 3000, "other", a, "3.3.3.3:3", "c1", NULL), 0);
  CHECK_INT(pm_registry_count(reg), 2);
  CHECK_INT(pm_registry_client_count(reg, "c1"), 2);
  /* A refresh from another client moves the registration to it. */
  CHECK_INT(pm_registry_register(reg, 4000, "m", a, "2.2.2.2:2", "c2", NULL),
            0);
  CHECK_INT(pm_registry_client_count(reg, "c1"), 1);
  CHECK_INT(pm_registry_client_count(reg, "c2"), 1);
  CHECK_INT(pm_registry_register(reg, 4000, "m", a, "2.2.2.2:2", NULL, NULL),
            0);
  CHECK_INT(pm_registry_client_count(reg, "c2"), 0);
  pm_registry_free(reg);
}

static void test_expiry(void) {
  uint64_t seed = 3;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.lifetime_s = 10;
  pm_registry *reg = make(&cfg, &seed);
  CHECK_INT(reg_node(reg, 1000, "m", 1, NULL), 0); /* expires 11000 */
  CHECK_INT(reg_node(reg, 2000, "m", 2, NULL), 0); /* expires 12000 */
  CHECK_INT(reg_node(reg, 3000, "m", 3, NULL), 0); /* expires 13000 */
  CHECK_INT(reg_node(reg, 9000, "m", 1, NULL), 0); /* refreshed: 19000 */
  CHECK_INT(pm_registry_expire(reg, 10000), 0);
  CHECK_INT(pm_registry_count(reg), 3);
  CHECK_INT(pm_registry_expire(reg, 12000), 1); /* node 2, at its expiry */
  CHECK_INT(pm_registry_count(reg), 2);

  pm_resolver_entry out[8];
  size_t n;
  CHECK_INT(pm_registry_resolve(reg, 13000, "m", 8, NULL, out, &n), 0);
  CHECK_INT(n, 1); /* node 3 expired on the way in */
  CHECK_INT(node_num(out[0].node_id), 1);
  CHECK_INT(pm_registry_count(reg), 1);

  /* Unregistering an expired one finds nothing. */
  uint8_t id[PM_NODE_ID_LEN];
  node(id, 1);
  CHECK_INT(pm_registry_unregister(reg, 19000, "m", id), PM_ERR_NOT_FOUND);
  CHECK_INT(pm_registry_count(reg), 0);
  CHECK_INT(pm_registry_mesh_count(reg, "m"), 0);
  CHECK_INT(pm_registry_expire(reg, 50000), 0);
  pm_registry_free(reg);
}

static void test_unregister(void) {
  uint64_t seed = 4;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  pm_registry *reg = make(&cfg, &seed);
  uint8_t id[PM_NODE_ID_LEN];
  node(id, 1);
  CHECK_INT(reg_node(reg, 1000, "m", 1, "c"), 0);
  CHECK_INT(reg_node(reg, 1000, "m", 2, "c"), 0);
  CHECK_INT(pm_registry_unregister(reg, 2000, "m", id), 0);
  CHECK_INT(pm_registry_unregister(reg, 2000, "m", id), PM_ERR_NOT_FOUND);
  CHECK_INT(pm_registry_unregister(reg, 2000, "nomesh", id), PM_ERR_NOT_FOUND);
  CHECK_INT(pm_registry_unregister(reg, 2000, "bad mesh", id), PM_ERR_INVAL);
  CHECK_INT(pm_registry_count(reg), 1);
  CHECK_INT(pm_registry_client_count(reg, "c"), 1);
  pm_resolver_entry out[4];
  size_t n;
  CHECK_INT(pm_registry_resolve(reg, 3000, "m", 4, NULL, out, &n), 0);
  CHECK_INT(n, 1);
  CHECK_INT(node_num(out[0].node_id), 2);
  pm_registry_free(reg);
}

static void test_invalid_input(void) {
  uint64_t seed = 5;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  pm_registry *reg = make(&cfg, &seed);
  uint8_t id[PM_NODE_ID_LEN];
  node(id, 1);
  CHECK_INT(pm_registry_register(reg, 1, "", id, "1.2.3.4:5", NULL, NULL),
            PM_ERR_INVAL);
  CHECK_INT(pm_registry_register(reg, 1, "a b", id, "1.2.3.4:5", NULL, NULL),
            PM_ERR_INVAL);
  CHECK_INT(pm_registry_register(reg, 1, "m", id, "1.2.3.4", NULL, NULL),
            PM_ERR_INVAL);
  CHECK_INT(pm_registry_register(reg, 1, "m", id, "1.2.3.4:0", NULL, NULL),
            PM_ERR_INVAL);
  CHECK_INT(pm_registry_register(reg, 1, "m", id, NULL, NULL, NULL),
            PM_ERR_INVAL);
  CHECK_INT(pm_registry_register(reg, 1, "m", id, "1.2.3.4:5", "", NULL),
            PM_ERR_INVAL);
  pm_resolver_entry out[1];
  size_t n = 99;
  CHECK_INT(pm_registry_resolve(reg, 1, "a/b", 1, NULL, out, &n), PM_ERR_INVAL);
  CHECK_INT(n, 0);
  CHECK_INT(pm_registry_resolve(reg, 1, "unknown", 1, NULL, out, &n), 0);
  CHECK_INT(n, 0);
  CHECK_INT(pm_registry_count(reg), 0);
  pm_registry_free(reg);
}

static void test_sample_without_replacement(void) {
  uint64_t seed = 6;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  pm_registry *reg = make(&cfg, &seed);
  for (unsigned i = 0; i < 20; i++)
    CHECK_INT(reg_node(reg, 1000, "m", i, NULL), 0);
  CHECK_INT(reg_node(reg, 1000, "elsewhere", 100, NULL), 0);
  pm_resolver_entry out[50];
  for (int round = 0; round < 200; round++) {
    size_t max = (size_t)(round % 25) + 1;
    size_t n;
    CHECK_INT(pm_registry_resolve(reg, 2000, "m", max, NULL, out, &n), 0);
    CHECK_INT(n, max < 20 ? max : 20);
    int seen[20] = {0};
    for (size_t i = 0; i < n; i++) {
      unsigned k = node_num(out[i].node_id);
      CHECK(k < 20);
      if (k < 20) {
        CHECK(!seen[k]);
        seen[k] = 1;
      }
    }
  }
  pm_registry_free(reg);
}

static void test_exclude(void) {
  uint64_t seed = 7;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  pm_registry *reg = make(&cfg, &seed);
  for (unsigned i = 0; i < 5; i++)
    CHECK_INT(reg_node(reg, 1000, "m", i, NULL), 0);
  uint8_t ex[PM_NODE_ID_LEN], zero[PM_NODE_ID_LEN], other[PM_NODE_ID_LEN];
  node(ex, 3);
  node(other, 999);
  memset(zero, 0, sizeof zero);
  pm_resolver_entry out[10];
  size_t n;
  for (int round = 0; round < 50; round++) {
    CHECK_INT(pm_registry_resolve(reg, 2000, "m", 10, ex, out, &n), 0);
    CHECK_INT(n, 4);
    for (size_t i = 0; i < n; i++)
      CHECK(node_num(out[i].node_id) != 3);
    CHECK_INT(pm_registry_resolve(reg, 2000, "m", 2, ex, out, &n), 0);
    CHECK_INT(n, 2);
    for (size_t i = 0; i < n; i++)
      CHECK(node_num(out[i].node_id) != 3);
  }
  CHECK_INT(pm_registry_resolve(reg, 2000, "m", 10, zero, out, &n), 0);
  CHECK_INT(n, 5);
  CHECK_INT(pm_registry_resolve(reg, 2000, "m", 10, other, out, &n), 0);
  CHECK_INT(n, 5);
  /* The only member excluded: nothing to return. */
  pm_registry *one = make(&cfg, &seed);
  CHECK_INT(reg_node(one, 1000, "solo", 3, NULL), 0);
  CHECK_INT(pm_registry_resolve(one, 2000, "solo", 10, ex, out, &n), 0);
  CHECK_INT(n, 0);
  pm_registry_free(one);
  pm_registry_free(reg);
}

/* Each of 10 members should be picked about equally often, and each
 * position of the answer should be uniform too. */
static void test_sample_is_uniform(void) {
  uint64_t seed = 8;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  pm_registry *reg = make(&cfg, &seed);
  for (unsigned i = 0; i < 10; i++)
    CHECK_INT(reg_node(reg, 1000, "m", i, NULL), 0);
  uint8_t ex[PM_NODE_ID_LEN];
  node(ex, 9);
  long picks[10] = {0}, first[10] = {0};
  const int rounds = 30000;
  pm_resolver_entry out[3];
  for (int r = 0; r < rounds; r++) {
    size_t n;
    CHECK_INT(pm_registry_resolve(reg, 2000, "m", 3, ex, out, &n), 0);
    CHECK_INT(n, 3);
    for (size_t i = 0; i < n; i++)
      picks[node_num(out[i].node_id)]++;
    first[node_num(out[0].node_id)]++;
  }
  CHECK_INT(picks[9], 0);
  /* 9 candidates, 3 picks each round: expect 10000 each; first: 3333. */
  for (int i = 0; i < 9; i++) {
    CHECK(picks[i] > 9500 && picks[i] < 10500);
    CHECK(first[i] > 3000 && first[i] < 3700);
  }
  pm_registry_free(reg);
}

/* A random source stuck at zero still gives distinct members. */
static void test_degenerate_random(void) {
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.random = always_zero;
  pm_registry *reg = NULL;
  CHECK_INT(pm_registry_new(&cfg, &reg), 0);
  for (unsigned i = 0; i < 4; i++)
    CHECK_INT(reg_node(reg, 1000, "m", i, NULL), 0);
  pm_resolver_entry out[4];
  size_t n;
  CHECK_INT(pm_registry_resolve(reg, 1000, "m", 4, NULL, out, &n), 0);
  CHECK_INT(n, 4);
  unsigned mask = 0;
  for (size_t i = 0; i < n; i++)
    mask |= 1u << node_num(out[i].node_id);
  CHECK_INT(mask, 0xf);
  pm_registry_free(reg);
}

static void test_quota_total(void) {
  uint64_t seed = 9;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_entries = 5;
  cfg.lifetime_s = 10;
  pm_registry *reg = make(&cfg, &seed);
  for (unsigned i = 0; i < 5; i++)
    CHECK_INT(reg_node(reg, 1000, i % 2 ? "a" : "b", i, NULL), 0);
  CHECK_INT(reg_node(reg, 1000, "c", 5, NULL), PM_ERR_FULL);
  CHECK_INT(pm_registry_count(reg), 5);
  CHECK_INT(pm_registry_mesh_count(reg, "c"), 0);
  /* Refreshing an existing registration is not a new one. */
  CHECK_INT(reg_node(reg, 2000, "b", 0, NULL), 0);
  /* Once some expire, there is room again. */
  CHECK_INT(reg_node(reg, 11000, "c", 5, NULL), 0);
  CHECK_INT(pm_registry_count(reg), 2);
  pm_registry_free(reg);
}

static void test_quota_per_mesh(void) {
  uint64_t seed = 10;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_per_mesh = 3;
  pm_registry *reg = make(&cfg, &seed);
  for (unsigned i = 0; i < 3; i++)
    CHECK_INT(reg_node(reg, 1000, "m", i, NULL), 0);
  CHECK_INT(reg_node(reg, 1000, "m", 3, NULL), PM_ERR_FULL);
  CHECK_INT(reg_node(reg, 1000, "n", 3, NULL), 0);
  CHECK_INT(reg_node(reg, 1000, "m", 2, NULL), 0);
  uint8_t id[PM_NODE_ID_LEN];
  node(id, 0);
  CHECK_INT(pm_registry_unregister(reg, 1000, "m", id), 0);
  CHECK_INT(reg_node(reg, 1000, "m", 3, NULL), 0);
  CHECK_INT(pm_registry_mesh_count(reg, "m"), 3);
  pm_registry_free(reg);
}

static void test_quota_per_client(void) {
  uint64_t seed = 11;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_per_client = 2;
  cfg.lifetime_s = 10;
  pm_registry *reg = make(&cfg, &seed);
  CHECK_INT(reg_node(reg, 1000, "m", 1, "10.0.0.1"), 0);
  CHECK_INT(reg_node(reg, 1000, "n", 2, "10.0.0.1"), 0);
  CHECK_INT(reg_node(reg, 1000, "m", 3, "10.0.0.1"), PM_ERR_FULL);
  CHECK_INT(reg_node(reg, 1000, "m", 3, "10.0.0.2"), 0);
  CHECK_INT(reg_node(reg, 1000, "m", 4, NULL), 0); /* no client: no quota */
  /* Moving a registration to a client already at its quota fails and
   * leaves it where it was. */
  CHECK_INT(reg_node(reg, 2000, "m", 3, "10.0.0.1"), PM_ERR_FULL);
  CHECK_INT(pm_registry_client_count(reg, "10.0.0.1"), 2);
  CHECK_INT(pm_registry_client_count(reg, "10.0.0.2"), 1);
  /* Refreshing one's own registrations at the quota is fine. */
  CHECK_INT(reg_node(reg, 5000, "m", 1, "10.0.0.1"), 0);
  /* Node 2 expires at 11000; then the client has room. */
  CHECK_INT(reg_node(reg, 11000, "m", 5, "10.0.0.1"), 0);
  CHECK_INT(pm_registry_client_count(reg, "10.0.0.1"), 2);
  pm_registry_free(reg);
}

/* A large mesh: resolve must stay cheap (this would crawl if it were
 * quadratic) and expiry must drain it completely. */
static void test_large_mesh(void) {
  uint64_t seed = 12;
  pm_registry_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.lifetime_s = 100;
  pm_registry *reg = make(&cfg, &seed);
  for (unsigned i = 0; i < 10000; i++)
    CHECK_INT(reg_node(reg, 1000 + i, "big", i, NULL), 0);
  CHECK_INT(reg_node(reg, 1000, "big", 10000, NULL), PM_ERR_FULL);
  CHECK_INT(pm_registry_mesh_count(reg, "big"), 10000);
  pm_resolver_entry out[32];
  for (int r = 0; r < 100000; r++) {
    size_t n;
    CHECK_INT(pm_registry_resolve(reg, 50000, "big", 32, NULL, out, &n), 0);
    if (n != 32) {
      CHECK_INT(n, 32);
      break;
    }
  }
  /* Expiry in refresh order: the first 5000 go at 1000 + i + 100000. */
  CHECK_INT(pm_registry_expire(reg, 105999), 5000);
  CHECK_INT(pm_registry_count(reg), 5000);
  CHECK_INT(pm_registry_expire(reg, 200000), 5000);
  CHECK_INT(pm_registry_count(reg), 0);
  pm_registry_free(reg);
}

static void test_allocation_failures(void) {
  int succeeded = 0;
  for (long limit = 0; limit < 200 && !succeeded; limit++) {
    pm_test_budget b = {limit};
    pm_allocator alloc = {pm_test_budget_realloc, &b};
    uint64_t seed = 13;
    pm_registry_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.alloc = &alloc;
    cfg.random = xorshift;
    cfg.random_ud = &seed;
    pm_registry *reg = NULL;
    int rc = pm_registry_new(&cfg, &reg);
    if (rc) {
      CHECK_INT(rc, PM_ERR_NOMEM);
      continue;
    }
    /* Register until memory runs out; every failure leaves the table as
     * it was, and everything registered stays resolvable. */
    unsigned ok = 0;
    for (unsigned i = 0; i < 40; i++) {
      rc = reg_node(reg, 1000, i % 3 ? "x" : "y", i, i % 2 ? "c1" : "c2");
      if (rc == 0)
        ok++;
      else
        CHECK_INT(rc, PM_ERR_NOMEM);
      CHECK_INT(pm_registry_count(reg), ok);
    }
    size_t total = 0, n;
    pm_resolver_entry out[32];
    CHECK_INT(pm_registry_resolve(reg, 1000, "x", 32, NULL, out, &n), 0);
    total += n;
    CHECK_INT(pm_registry_resolve(reg, 1000, "y", 32, NULL, out, &n), 0);
    total += n;
    CHECK_INT(total, ok);
    CHECK_INT(pm_registry_client_count(reg, "c1") +
                  pm_registry_client_count(reg, "c2"),
              ok);
    succeeded = ok == 40;
    pm_registry_free(reg);
  }
  CHECK(succeeded);
}

TEST_MAIN(TEST_CASE(test_new_needs_random), TEST_CASE(test_defaults),
          TEST_CASE(test_upsert), TEST_CASE(test_expiry),
          TEST_CASE(test_unregister), TEST_CASE(test_invalid_input),
          TEST_CASE(test_sample_without_replacement), TEST_CASE(test_exclude),
          TEST_CASE(test_sample_is_uniform), TEST_CASE(test_degenerate_random),
          TEST_CASE(test_quota_total), TEST_CASE(test_quota_per_mesh),
          TEST_CASE(test_quota_per_client), TEST_CASE(test_large_mesh),
          TEST_CASE(test_allocation_failures))
