/* Message bodies (runtime/core/msg.h): round trips, golden bytes, and the
 * decoder's refusals (referral limits, bad addresses, trailing and missing
 * bytes, unknown flags), plus what the flood ID does and does not cover. */
#include "msg.h"
#include <sodium.h>

#include "test.h"

/* Cuts the single frame in `b` and checks its type. */
static int cut(const pm_buf *b, uint8_t type, pm_frame *f) {
  size_t used = 0;
  int rc = pm_frame_parse(b->data, b->len, f, &used);
  CHECK_INT(rc, 1);
  CHECK_INT(used, b->len);
  CHECK_INT(f->type, type);
  return rc == 1 && used == b->len && f->type == type;
}

static void fill_id(uint8_t *id, uint8_t base) {
  for (int i = 0; i < 32; i++)
    id[i] = (uint8_t)(base + i);
}

/* ---- Hello ----------------------------------------------------------------
 */

static void test_hello_round_trip(void) {
  pm_msg_hello h = {"lobby", 5, {0}, 4000, 0};
  fill_id(h.node_id, 0xa0);
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_hello(&b, &h), 0);
  pm_frame f;
  if (cut(&b, PM_FRAME_HELLO, &f)) {
    pm_msg_hello g;
    memset(&g, 0xee, sizeof g);
    CHECK_INT(pm_msg_read_hello(&f, &g), 0);
    CHECK_INT(g.mesh_len, 5);
    CHECK_MEM(g.mesh, "lobby", 5);
    CHECK_MEM(g.node_id, h.node_id, PM_NODE_ID_LEN);
    CHECK_INT(g.listen_port, 4000);
    CHECK_INT(g.features, 0);
  }
  /* Longest mesh name, no listen port, some feature bits. */
  pm_buf_reset(&b);
  char mesh[PM_MESH_NAME_MAX];
  memset(mesh, 'm', sizeof mesh);
  pm_msg_hello h2 = {mesh, sizeof mesh, {0}, 0, 0x80000001u};
  CHECK_INT(pm_msg_write_hello(&b, &h2), 0);
  if (cut(&b, PM_FRAME_HELLO, &f)) {
    pm_msg_hello g;
    CHECK_INT(pm_msg_read_hello(&f, &g), 0);
    CHECK_INT(g.mesh_len, PM_MESH_NAME_MAX);
    CHECK_INT(g.listen_port, 0);
    CHECK_INT(g.features, 0x80000001u);
  }
  pm_buf_free(&b);
}

static void test_hello_write_rejects_bad_names(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  char mesh[PM_MESH_NAME_MAX + 1];
  memset(mesh, 'm', sizeof mesh);
  pm_msg_hello h = {mesh, 0, {0}, 1, 0};
  CHECK_INT(pm_msg_write_hello(&b, &h), PM_ERR_INVAL);
  h.mesh_len = PM_MESH_NAME_MAX + 1;
  CHECK_INT(pm_msg_write_hello(&b, &h), PM_ERR_INVAL);
  CHECK_INT(b.len, 0);
  pm_buf_free(&b);
}

static void test_hello_golden(void) {
  pm_msg_hello h = {"lobby", 5, {0}, 0x1234, 0};
  fill_id(h.node_id, 0x00);
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_hello(&b, &h), 0);
  /* clang-format off */
  static const uint8_t want[] = {
      0x01, 0x01, 0x00, 0x00, 0x00, 0x2c,   /* v1, Hello, 44 bytes */
      0x05, 'l',  'o',  'b',  'b',  'y',    /* mesh, u8 length */
      0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, /* node ID */
      0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
      0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
      0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
      0x12, 0x34,                           /* listen port */
      0x00, 0x00, 0x00, 0x00,               /* features */
  };
  /* clang-format on */
  CHECK_INT(b.len, sizeof want);
  if (b.len == sizeof want)
    CHECK_MEM(b.data, want, sizeof want);
  pm_buf_free(&b);
}

static void test_hello_rejects(void) {
  pm_msg_hello h = {"m", 1, {0}, 1, 0};
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_hello(&b, &h), 0);
  pm_frame f;
  if (!cut(&b, PM_FRAME_HELLO, &f)) {
    pm_buf_free(&b);
    return;
  }
  pm_msg_hello g;
  for (size_t n = 0; n < f.len; n++) {
    pm_frame t = f;
    t.len = n;
    if (pm_msg_read_hello(&t, &g) != PM_ERR_TRUNCATED) {
      fprintf(stderr, "hello truncated to %zu accepted\n", n);
      CHECK(0);
    }
  }
  /* Trailing byte. */
  uint8_t more[128];
  memcpy(more, f.payload, f.len);
  more[f.len] = 0;
  pm_frame t = {PM_FRAME_HELLO, more, f.len + 1};
  CHECK_INT(pm_msg_read_hello(&t, &g), PM_ERR_MALFORMED);
  /* Empty mesh name on the wire. */
  more[0] = 0;
  memmove(more + 1, f.payload + 2, f.len - 2);
  t.len = f.len - 1;
  CHECK_INT(pm_msg_read_hello(&t, &g), PM_ERR_MALFORMED);
  pm_buf_free(&b);
}

/* ---- Welcome / Refuse / Disconnect -------------------------------------- */

static void test_referrals_round_trip(void) {
  static const uint8_t types[] = {PM_FRAME_WELCOME, PM_FRAME_REFUSE,
                                  PM_FRAME_DISCONNECT};
  static const char *const addrs[] = {"127.0.0.1:4000", "[::1]:5",
                                      "peer.example:65535"};
  pm_msg_referrals m;
  memset(&m, 0, sizeof m);
  m.reason = PM_CLOSE_NODE_BUSY;
  m.count = 3;
  for (int i = 0; i < 3; i++) {
    fill_id(m.items[i].node_id, (uint8_t)(0x10 * i));
    strcpy(m.items[i].addr, addrs[i]);
  }
  for (size_t t = 0; t < sizeof types; t++) {
    pm_buf b;
    pm_buf_init(&b, NULL);
    CHECK_INT(pm_msg_write_referrals(&b, types[t], &m), 0);
    pm_frame f;
    if (cut(&b, types[t], &f)) {
      pm_msg_referrals g;
      memset(&g, 0xee, sizeof g);
      CHECK_INT(pm_msg_read_referrals(&f, &g), 0);
      CHECK_INT(g.reason, PM_CLOSE_NODE_BUSY);
      CHECK_INT(g.count, 3);
      for (int i = 0; i < 3; i++) {
        CHECK_MEM(g.items[i].node_id, m.items[i].node_id, PM_NODE_ID_LEN);
        CHECK_STR(g.items[i].addr, addrs[i]);
      }
    }
    pm_buf_free(&b);
  }

  /* Empty Welcome and a full house of ten. */
  pm_msg_referrals z;
  memset(&z, 0, sizeof z);
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_referrals(&b, PM_FRAME_WELCOME, &z), 0);
  static const uint8_t want[] = {0x01, 0x11, 0, 0, 0, 2, 0x00, 0x00};
  CHECK_INT(b.len, sizeof want);
  CHECK_MEM(b.data, want, sizeof want);
  pm_buf_reset(&b);
  z.count = PM_MAX_REFERRALS;
  for (int i = 0; i < PM_MAX_REFERRALS; i++)
    snprintf(z.items[i].addr, sizeof z.items[i].addr, "10.0.0.%d:%d", i,
             1000 + i);
  CHECK_INT(pm_msg_write_referrals(&b, PM_FRAME_DISCONNECT, &z), 0);
  pm_frame f;
  if (cut(&b, PM_FRAME_DISCONNECT, &f)) {
    pm_msg_referrals g;
    CHECK_INT(pm_msg_read_referrals(&f, &g), 0);
    CHECK_INT(g.count, PM_MAX_REFERRALS);
    CHECK_STR(g.items[9].addr, "10.0.0.9:1009");
  }
  pm_buf_free(&b);
}

/* Builds a referrals payload by hand: reason, count, then `n` entries all
 * with the address `addr` of `alen` bytes (which may hold a NUL). */
static size_t raw_referrals(uint8_t *out, uint8_t count, unsigned n,
                            const char *addr, size_t alen) {
  size_t o = 0;
  out[o++] = 0;
  out[o++] = count;
  for (unsigned i = 0; i < n; i++) {
    fill_id(out + o, (uint8_t)i);
    o += PM_NODE_ID_LEN;
    out[o++] = (uint8_t)alen;
    memcpy(out + o, addr, alen);
    o += alen;
  }
  return o;
}

static void test_referrals_too_many(void) {
  pm_msg_referrals m;
  memset(&m, 0, sizeof m);
  m.count = PM_MAX_REFERRALS + 1;
  for (int i = 0; i < PM_MAX_REFERRALS; i++)
    strcpy(m.items[i].addr, "1.2.3.4:5");
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_referrals(&b, PM_FRAME_WELCOME, &m), PM_ERR_INVAL);
  CHECK_INT(b.len, 0);
  pm_buf_free(&b);

  static uint8_t raw[4096];
  pm_msg_referrals g;
  /* Ten well-formed entries with a count of 10: fine. */
  size_t n = raw_referrals(raw, 10, 10, "1.2.3.4:5", 9);
  pm_frame f = {PM_FRAME_WELCOME, raw, n};
  CHECK_INT(pm_msg_read_referrals(&f, &g), 0);
  /* Eleven well-formed entries with a count of 11: refused. */
  n = raw_referrals(raw, 11, 11, "1.2.3.4:5", 9);
  f.len = n;
  CHECK_INT(pm_msg_read_referrals(&f, &g), PM_ERR_MALFORMED);
  n = raw_referrals(raw, 255, 0, "", 0);
  f.len = n;
  CHECK_INT(pm_msg_read_referrals(&f, &g), PM_ERR_MALFORMED);
}

static void test_referrals_bad_address(void) {
  static const char *const bad[] = {
      "not an address", "127.0.0.1", "127.0.0.1:0", "::1:80",
      "[::1]",          "h:65536",   ":80",         "",
  };
  uint8_t raw[512];
  pm_msg_referrals g;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = raw_referrals(raw, 1, 1, bad[i], strlen(bad[i]));
    pm_frame f = {PM_FRAME_REFUSE, raw, n};
    if (pm_msg_read_referrals(&f, &g) != PM_ERR_MALFORMED) {
      fprintf(stderr, "referral address \"%s\" accepted\n", bad[i]);
      CHECK(0);
    }
  }
  /* A bad entry after a good one still spoils the message. */
  size_t o = 0;
  raw[o++] = 0;
  raw[o++] = 2;
  fill_id(raw + o, 1);
  o += PM_NODE_ID_LEN;
  raw[o++] = 9;
  memcpy(raw + o, "1.2.3.4:5", 9);
  o += 9;
  fill_id(raw + o, 2);
  o += PM_NODE_ID_LEN;
  raw[o++] = 4;
  memcpy(raw + o, "nope", 4);
  o += 4;
  pm_frame f2 = {PM_FRAME_REFUSE, raw, o};
  CHECK_INT(pm_msg_read_referrals(&f2, &g), PM_ERR_MALFORMED);
  /* An address longer than PM_ADDR_MAX. */
  char longaddr[200];
  memset(longaddr, 'a', sizeof longaddr);
  memcpy(longaddr + 195, ":1234", 5);
  size_t n = raw_referrals(raw, 1, 1, longaddr, 200);
  pm_frame f3 = {PM_FRAME_REFUSE, raw, n};
  CHECK_INT(pm_msg_read_referrals(&f3, &g), PM_ERR_MALFORMED);
}

static void test_referrals_nul_in_address(void) {
  uint8_t raw[512];
  pm_msg_referrals g;
  /* What precedes the NUL is a valid address: a C-string reader would be
   * fooled into accepting it. */
  static const char a1[] = "127.0.0.1:80\0evil";
  size_t n = raw_referrals(raw, 1, 1, a1, sizeof a1 - 1);
  pm_frame f = {PM_FRAME_DISCONNECT, raw, n};
  CHECK_INT(pm_msg_read_referrals(&f, &g), PM_ERR_MALFORMED);
  static const char a2[] = "127.0.0.1:80\0";
  n = raw_referrals(raw, 1, 1, a2, sizeof a2 - 1);
  f.len = n;
  CHECK_INT(pm_msg_read_referrals(&f, &g), PM_ERR_MALFORMED);
  static const char a3[] = "\0127.0.0.1:80";
  n = raw_referrals(raw, 1, 1, a3, sizeof a3 - 1);
  f.len = n;
  CHECK_INT(pm_msg_read_referrals(&f, &g), PM_ERR_MALFORMED);
}

static void test_referrals_trailing_and_truncated(void) {
  pm_msg_referrals m;
  memset(&m, 0, sizeof m);
  m.reason = PM_CLOSE_LEAVING;
  m.count = 2;
  strcpy(m.items[0].addr, "10.0.0.1:1");
  strcpy(m.items[1].addr, "[::1]:2");
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_referrals(&b, PM_FRAME_DISCONNECT, &m), 0);
  pm_frame f;
  if (cut(&b, PM_FRAME_DISCONNECT, &f)) {
    pm_msg_referrals g;
    for (size_t n = 0; n < f.len; n++) {
      pm_frame t = f;
      t.len = n;
      int rc = pm_msg_read_referrals(&t, &g);
      if (rc != PM_ERR_TRUNCATED) {
        fprintf(stderr, "referrals truncated to %zu: %d\n", n, rc);
        CHECK(0);
      }
    }
    uint8_t more[256];
    memcpy(more, f.payload, f.len);
    more[f.len] = 0x00;
    pm_frame t = {PM_FRAME_DISCONNECT, more, f.len + 1};
    CHECK_INT(pm_msg_read_referrals(&t, &g), PM_ERR_MALFORMED);
  }
  pm_buf_free(&b);
}

static void test_empty_frames(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_empty(&b, PM_FRAME_CONNECT), 0);
  CHECK_INT(pm_msg_write_empty(&b, PM_FRAME_PING), 0);
  static const uint8_t want[] = {1, 0x10, 0, 0, 0, 0, 1, 0x14, 0, 0, 0, 0};
  CHECK_INT(b.len, sizeof want);
  CHECK_MEM(b.data, want, sizeof want);
  pm_buf_free(&b);
}

/* ---- Flood ----------------------------------------------------------------
 */

static pm_msg_flood sample_flood(void) {
  pm_msg_flood m;
  memset(&m, 0, sizeof m);
  fill_id(m.origin, 0x40);
  m.seq = 0x0102030405060708ull;
  m.time_ms = 1700000000123ull;
  m.has_hop_limit = 1;
  m.hop_limit = 7;
  m.hops = 3;
  m.action = "Chat";
  m.action_len = 4;
  m.body = (const uint8_t *)"{\"text\":\"hi\"}";
  m.body_len = 13;
  pm_msg_flood_id(&m, m.id);
  memset(m.sig, 0x5A, sizeof m.sig);
  return m;
}

static void test_flood_round_trip(void) {
  pm_msg_flood m = sample_flood();
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_flood(&b, &m), 0);
  pm_frame f;
  if (cut(&b, PM_FRAME_FLOOD, &f)) {
    pm_msg_flood g;
    memset(&g, 0xee, sizeof g);
    CHECK_INT(pm_msg_read_flood(&f, &g), 0);
    CHECK_MEM(g.id, m.id, PM_MSG_ID_LEN);
    CHECK_MEM(g.origin, m.origin, PM_NODE_ID_LEN);
    CHECK(g.seq == m.seq);
    CHECK(g.time_ms == m.time_ms);
    CHECK_INT(g.has_hop_limit, 1);
    CHECK_INT(g.hop_limit, 7);
    CHECK_INT(g.hops, 3);
    CHECK_INT(g.action_len, 4);
    CHECK_MEM(g.action, "Chat", 4);
    CHECK_INT(g.body_len, 13);
    CHECK_MEM(g.body, m.body, 13);
    CHECK_MEM(g.sig, m.sig, PM_SIG_BYTES);
    uint8_t id[PM_MSG_ID_LEN];
    pm_msg_flood_id(&g, id);
    CHECK_MEM(id, m.id, PM_MSG_ID_LEN);
  }

  /* No hop limit, empty body, longest action. */
  char action[PM_ACTION_MAX];
  memset(action, 'A', sizeof action);
  m.has_hop_limit = 0;
  m.hop_limit = 0;
  m.hops = UINT16_MAX;
  m.action = action;
  m.action_len = sizeof action;
  m.body = NULL;
  m.body_len = 0;
  pm_buf_reset(&b);
  CHECK_INT(pm_msg_write_flood(&b, &m), 0);
  if (cut(&b, PM_FRAME_FLOOD, &f)) {
    pm_msg_flood g;
    CHECK_INT(pm_msg_read_flood(&f, &g), 0);
    CHECK_INT(g.has_hop_limit, 0);
    CHECK_INT(g.hop_limit, 0);
    CHECK_INT(g.hops, UINT16_MAX);
    CHECK_INT(g.action_len, PM_ACTION_MAX);
    CHECK_INT(g.body_len, 0);
  }

  /* The writer refuses an empty or overlong action. */
  m.action_len = 0;
  CHECK_INT(pm_msg_write_flood(&b, &m), PM_ERR_INVAL);
  m.action_len = PM_ACTION_MAX + 1;
  CHECK_INT(pm_msg_write_flood(&b, &m), PM_ERR_INVAL);
  pm_buf_free(&b);
}

/* Relaying copies the frame with a new hop count: byte for byte what
 * encoding the message again would give, with and without a hop limit. */
static void test_flood_relay_matches_write(void) {
  pm_msg_flood m = sample_flood();
  for (int limited = 1; limited >= 0; limited--) {
    m.has_hop_limit = (uint8_t)limited;
    m.hop_limit = limited ? 7 : 0;
    m.hops = 3;
    pm_buf in, relayed, written;
    pm_buf_init(&in, NULL);
    pm_buf_init(&relayed, NULL);
    pm_buf_init(&written, NULL);
    CHECK_INT(pm_msg_write_flood(&in, &m), 0);
    pm_frame f;
    if (cut(&in, PM_FRAME_FLOOD, &f)) {
      CHECK_INT(pm_msg_relay_flood(&relayed, &f, 4), 0);
      m.hops = 4;
      CHECK_INT(pm_msg_write_flood(&written, &m), 0);
      CHECK_INT(relayed.len, written.len);
      CHECK(relayed.len == written.len &&
            memcmp(relayed.data, written.data, written.len) == 0);
      pm_frame g;
      pm_msg_flood r;
      if (cut(&relayed, PM_FRAME_FLOOD, &g)) {
        CHECK_INT(pm_msg_read_flood(&g, &r), 0);
        CHECK_INT(r.hops, 4);
      }
      /* A payload too short to hold a hop count is refused. */
      pm_frame shortf = {PM_FRAME_FLOOD, f.payload, PM_FLOOD_HOPS_OFFSET + 1};
      CHECK_INT(pm_msg_relay_flood(&relayed, &shortf, 4), PM_ERR_INVAL);
    }
    pm_buf_free(&in);
    pm_buf_free(&relayed);
    pm_buf_free(&written);
  }
}

static void test_flood_truncated_at_every_length(void) {
  pm_msg_flood m = sample_flood();
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_flood(&b, &m), 0);
  pm_frame f;
  if (cut(&b, PM_FRAME_FLOOD, &f)) {
    pm_msg_flood g;
    for (size_t n = 0; n < f.len; n++) {
      pm_frame t = f;
      t.len = n;
      int rc = pm_msg_read_flood(&t, &g);
      if (rc != PM_ERR_TRUNCATED) {
        fprintf(stderr, "flood truncated to %zu of %zu: %d\n", n, f.len, rc);
        CHECK(0);
      }
    }
    pm_frame t = f;
    CHECK_INT(pm_msg_read_flood(&t, &g), 0);
  }
  pm_buf_free(&b);
}

static void test_flood_trailing_bytes(void) {
  pm_msg_flood m = sample_flood();
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_flood(&b, &m), 0);
  pm_frame f;
  if (cut(&b, PM_FRAME_FLOOD, &f)) {
    uint8_t more[512];
    memcpy(more, f.payload, f.len);
    more[f.len] = 0;
    more[f.len + 1] = 0;
    pm_frame t = {PM_FRAME_FLOOD, more, f.len + 1};
    pm_msg_flood g;
    CHECK_INT(pm_msg_read_flood(&t, &g), PM_ERR_MALFORMED);
    t.len = f.len + 2;
    CHECK_INT(pm_msg_read_flood(&t, &g), PM_ERR_MALFORMED);
  }
  pm_buf_free(&b);
}

/* Offsets in the flood payload. */
#define FLOOD_OFF_FLAGS (PM_MSG_ID_LEN + PM_NODE_ID_LEN + 8 + 8)
#define FLOOD_OFF_HOP_LIMIT (FLOOD_OFF_FLAGS + 1)
#define FLOOD_OFF_ACTION (FLOOD_OFF_HOP_LIMIT + 4 + 2)

static void test_flood_flags(void) {
  pm_msg_flood m = sample_flood();
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_flood(&b, &m), 0);
  pm_frame f;
  if (cut(&b, PM_FRAME_FLOOD, &f)) {
    uint8_t copy[512];
    memcpy(copy, f.payload, f.len);
    pm_frame t = {PM_FRAME_FLOOD, copy, f.len};
    pm_msg_flood g;
    CHECK_INT(copy[FLOOD_OFF_FLAGS], 1);
    CHECK_INT(pm_msg_read_flood(&t, &g), 0);
    static const uint8_t bad[] = {0x02, 0x03, 0x80, 0x81, 0xfe, 0xff, 0x10};
    for (size_t i = 0; i < sizeof bad; i++) {
      copy[FLOOD_OFF_FLAGS] = bad[i];
      if (pm_msg_read_flood(&t, &g) != PM_ERR_MALFORMED) {
        fprintf(stderr, "flags 0x%02x accepted\n", bad[i]);
        CHECK(0);
      }
    }
    /* Flag 0 with a hop limit present: inconsistent. */
    copy[FLOOD_OFF_FLAGS] = 0;
    CHECK_INT(pm_msg_read_flood(&t, &g), PM_ERR_MALFORMED);
    /* Flag 0 with hop limit 0: fine. */
    memset(copy + FLOOD_OFF_HOP_LIMIT, 0, 4);
    CHECK_INT(pm_msg_read_flood(&t, &g), 0);
    CHECK_INT(g.has_hop_limit, 0);
    /* An empty action on the wire. */
    memcpy(copy, f.payload, f.len);
    CHECK_INT(copy[FLOOD_OFF_ACTION], 4);
    copy[FLOOD_OFF_ACTION] = 0;
    memmove(copy + FLOOD_OFF_ACTION + 1, copy + FLOOD_OFF_ACTION + 5,
            f.len - FLOOD_OFF_ACTION - 5);
    t.len = f.len - 4;
    CHECK_INT(pm_msg_read_flood(&t, &g), PM_ERR_MALFORMED);
  }
  pm_buf_free(&b);
}

static void test_flood_body_length_lies(void) {
  pm_msg_flood m = sample_flood();
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_msg_write_flood(&b, &m), 0);
  pm_frame f;
  if (cut(&b, PM_FRAME_FLOOD, &f)) {
    uint8_t copy[512];
    memcpy(copy, f.payload, f.len);
    size_t blen_off = FLOOD_OFF_ACTION + 1 + 4;
    CHECK_INT(pm_load_u32(copy + blen_off), 13);
    pm_frame t = {PM_FRAME_FLOOD, copy, f.len};
    pm_msg_flood g;
    pm_store_u32(copy + blen_off, 0xffffffffu);
    CHECK_INT(pm_msg_read_flood(&t, &g), PM_ERR_TRUNCATED);
    pm_store_u32(copy + blen_off, 14);
    CHECK_INT(pm_msg_read_flood(&t, &g), PM_ERR_TRUNCATED);
    pm_store_u32(copy + blen_off, 12);
    CHECK_INT(pm_msg_read_flood(&t, &g), PM_ERR_MALFORMED);
  }
  pm_buf_free(&b);
}

static int same_id(const pm_msg_flood *m, const uint8_t *id) {
  uint8_t x[PM_MSG_ID_LEN];
  pm_msg_flood_id(m, x);
  return memcmp(x, id, PM_MSG_ID_LEN) == 0;
}

static void test_flood_id_coverage(void) {
  pm_msg_flood base = sample_flood();
  uint8_t id[PM_MSG_ID_LEN];
  pm_msg_flood_id(&base, id);
  CHECK_MEM(id, base.id, PM_MSG_ID_LEN);
  pm_msg_flood m;

  /* Content changes change the ID. */
  m = base;
  m.origin[31] ^= 1;
  CHECK(!same_id(&m, id));
  m = base;
  m.origin[0] ^= 0x80;
  CHECK(!same_id(&m, id));
  m = base;
  m.seq++;
  CHECK(!same_id(&m, id));
  m = base;
  m.seq ^= 1ull << 63;
  CHECK(!same_id(&m, id));
  m = base;
  m.time_ms++;
  CHECK(!same_id(&m, id));
  m = base;
  m.action = "Chas";
  CHECK(!same_id(&m, id));
  m = base;
  m.action = "Chat!";
  m.action_len = 5;
  CHECK(!same_id(&m, id));
  m = base;
  m.body = (const uint8_t *)"{\"text\":\"ho\"}";
  CHECK(!same_id(&m, id));
  m = base;
  m.body_len = 12;
  CHECK(!same_id(&m, id));
  m = base;
  m.body = NULL;
  m.body_len = 0;
  CHECK(!same_id(&m, id));
  /* Moving a byte from the action to the body changes the ID too. */
  pm_msg_flood p = base, q = base;
  p.action = "ab";
  p.action_len = 2;
  p.body = (const uint8_t *)"c";
  p.body_len = 1;
  q.action = "a";
  q.action_len = 1;
  q.body = (const uint8_t *)"bc";
  q.body_len = 2;
  uint8_t pid[PM_MSG_ID_LEN];
  pm_msg_flood_id(&p, pid);
  CHECK(!same_id(&q, pid));

  /* The author's hop limit is signed content... */
  m = base;
  m.hop_limit = 0;
  CHECK(!same_id(&m, id));
  m = base;
  m.has_hop_limit = 0;
  m.hop_limit = 0;
  CHECK(!same_id(&m, id));
  m = base;
  m.hop_limit = UINT32_MAX;
  CHECK(!same_id(&m, id));
  /* ...the hop count, which relays change, the signature and the carried
   * ID are not. */
  m = base;
  m.hops = 0;
  CHECK(same_id(&m, id));
  m.hops = UINT16_MAX;
  CHECK(same_id(&m, id));
  m = base;
  memset(m.sig, 0xAB, sizeof m.sig);
  CHECK(same_id(&m, id));
  m = base;
  memset(m.id, 0, sizeof m.id);
  CHECK(same_id(&m, id));
  /* Only the bytes count, not where they live. */
  uint8_t body_copy[13];
  memcpy(body_copy, base.body, 13);
  char action_copy[5] = "Chat";
  m = base;
  m.body = body_copy;
  m.action = action_copy;
  CHECK(same_id(&m, id));
}

static void test_sign_and_verify(void) {
  uint8_t pk[PM_NODE_ID_LEN], sk[64], other_pk[PM_NODE_ID_LEN], other_sk[64];
  uint8_t seed[32];
  memset(seed, 1, sizeof seed);
  crypto_sign_seed_keypair(pk, sk, seed);
  memset(seed, 2, sizeof seed);
  crypto_sign_seed_keypair(other_pk, other_sk, seed);
  pm_msg_flood m = sample_flood();
  uint8_t sig[PM_SIG_BYTES];
  pm_msg_sign_id(m.id, sk, sig);
  CHECK(pm_msg_verify_id(m.id, pk, sig));
  CHECK(!pm_msg_verify_id(m.id, other_pk, sig)); /* another author */
  uint8_t id[PM_MSG_ID_LEN];
  memcpy(id, m.id, sizeof id);
  id[31] ^= 1;
  CHECK(!pm_msg_verify_id(id, pk, sig)); /* other content */
  sig[0] ^= 1;
  CHECK(!pm_msg_verify_id(m.id, pk, sig));
  /* The signature is over a domain string and the ID, not the bare ID:
   * a key used elsewhere for raw 32-byte signatures cannot be reused. */
  uint8_t bare[PM_SIG_BYTES];
  crypto_sign_detached(bare, NULL, m.id, PM_MSG_ID_LEN, sk);
  CHECK(!pm_msg_verify_id(m.id, pk, bare));
}

TEST_MAIN(TEST_CASE(test_hello_round_trip), TEST_CASE(test_sign_and_verify),
          TEST_CASE(test_hello_write_rejects_bad_names),
          TEST_CASE(test_hello_golden), TEST_CASE(test_hello_rejects),
          TEST_CASE(test_referrals_round_trip),
          TEST_CASE(test_referrals_too_many),
          TEST_CASE(test_referrals_bad_address),
          TEST_CASE(test_referrals_nul_in_address),
          TEST_CASE(test_referrals_trailing_and_truncated),
          TEST_CASE(test_empty_frames), TEST_CASE(test_flood_round_trip),
          TEST_CASE(test_flood_relay_matches_write),
          TEST_CASE(test_flood_truncated_at_every_length),
          TEST_CASE(test_flood_trailing_bytes), TEST_CASE(test_flood_flags),
          TEST_CASE(test_flood_body_length_lies),
          TEST_CASE(test_flood_id_coverage))
