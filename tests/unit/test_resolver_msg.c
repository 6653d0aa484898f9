/* The resolver protocol codec: round trips of every message, the exact wire
 * bytes of a few, and rejection of truncated, padded and out-of-range input. */
#include <stdlib.h>

#include "resolver_msg.h"
#include "test.h"

static void fill_id(uint8_t id[PM_NODE_ID_LEN], uint8_t seed) {
  for (int i = 0; i < PM_NODE_ID_LEN; i++)
    id[i] = (uint8_t)(seed + i);
}

/* Cuts exactly one frame out of `b` and decodes it. */
static int decode_one(const pm_buf *b, pm_resolver_msg *m) {
  pm_frame f;
  size_t used = 0;
  int rc = pm_frame_parse(b->data, b->len, &f, &used);
  CHECK_INT(rc, 1);
  CHECK_INT(used, b->len);
  if (rc != 1)
    return -1000;
  return pm_resolver_msg_read(&f, m);
}

/* Every strict prefix of the payload must be reported as truncated. */
static void check_all_prefixes_truncated(const pm_buf *b) {
  pm_frame f;
  size_t used;
  CHECK_INT(pm_frame_parse(b->data, b->len, &f, &used), 1);
  for (size_t n = 0; n < f.len; n++) {
    pm_frame g = {f.type, f.payload, n};
    pm_resolver_msg m;
    int rc = pm_resolver_msg_read(&g, &m);
    if (rc != PM_ERR_TRUNCATED) {
      fprintf(stderr, "type 0x%02x prefix %zu of %zu: %d\n", f.type, n, f.len,
              rc);
      CHECK_INT(rc, PM_ERR_TRUNCATED);
    }
  }
}

/* The payload with one byte more must be rejected. */
static void check_trailing_rejected(const pm_buf *b) {
  pm_frame f;
  size_t used;
  CHECK_INT(pm_frame_parse(b->data, b->len, &f, &used), 1);
  uint8_t *copy = malloc(f.len + 1);
  memcpy(copy, f.payload, f.len);
  copy[f.len] = 0;
  pm_frame g = {f.type, copy, f.len + 1};
  pm_resolver_msg m;
  CHECK_INT(pm_resolver_msg_read(&g, &m), PM_ERR_MALFORMED);
  free(copy);
}

static void check_framing(const pm_buf *b) {
  check_all_prefixes_truncated(b);
  check_trailing_rejected(b);
}

static void test_register_roundtrip(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_register in;
  memset(&in, 0, sizeof in);
  in.req_id = 0xdeadbeef;
  strcpy(in.mesh, "lobby.Chat_1-x");
  fill_id(in.node_id, 7);
  strcpy(in.addr, "192.168.1.20:4000");
  CHECK_INT(pm_resolver_msg_write_register(&b, &in), 0);
  pm_resolver_msg m;
  CHECK_INT(decode_one(&b, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_REGISTER);
  CHECK_INT(m.u.reg.req_id, 0xdeadbeef);
  CHECK_STR(m.u.reg.mesh, "lobby.Chat_1-x");
  CHECK_MEM(m.u.reg.node_id, in.node_id, PM_NODE_ID_LEN);
  CHECK_STR(m.u.reg.addr, "192.168.1.20:4000");
  check_framing(&b);

  /* The unspecified hosts, IPv6 in brackets. */
  const char *addrs[] = {"0.0.0.0:1", "[::]:65535", "[fe80::1]:9",
                         "example.org:80"};
  for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
    pm_buf_reset(&b);
    strcpy(in.addr, addrs[i]);
    CHECK_INT(pm_resolver_msg_write_register(&b, &in), 0);
    CHECK_INT(decode_one(&b, &m), 0);
    CHECK_STR(m.u.reg.addr, addrs[i]);
  }
  pm_buf_free(&b);
}

static void test_registered_golden(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_registered in = {0x01020304, 300};
  CHECK_INT(pm_resolver_msg_write_registered(&b, &in), 0);
  static const uint8_t want[] = {1, 0x41, 0, 0, 0, 8, 1,
                                 2, 3,    4, 0, 0, 1, 0x2c};
  CHECK_INT(b.len, sizeof want);
  CHECK_MEM(b.data, want, sizeof want);
  pm_resolver_msg m;
  CHECK_INT(decode_one(&b, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_REGISTERED);
  CHECK_INT(m.u.registered.req_id, 0x01020304);
  CHECK_INT(m.u.registered.lifetime_s, 300);
  check_framing(&b);
  pm_buf_free(&b);
}

static void test_resolve_roundtrip(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_resolve in;
  memset(&in, 0, sizeof in);
  in.req_id = 9;
  strcpy(in.mesh, "m");
  in.max = 32;
  fill_id(in.exclude, 100);
  CHECK_INT(pm_resolver_msg_write_resolve(&b, &in), 0);
  /* version, type, length, req_id, str8 "m", max, exclude */
  static const uint8_t head[] = {1, 0x42, 0, 0, 0, 39, 0, 0, 0, 9, 1, 'm', 32};
  CHECK_INT(b.len, sizeof head + PM_NODE_ID_LEN);
  CHECK_MEM(b.data, head, sizeof head);
  pm_resolver_msg m;
  CHECK_INT(decode_one(&b, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_RESOLVE);
  CHECK_INT(m.u.resolve.req_id, 9);
  CHECK_STR(m.u.resolve.mesh, "m");
  CHECK_INT(m.u.resolve.max, 32);
  CHECK_MEM(m.u.resolve.exclude, in.exclude, PM_NODE_ID_LEN);
  check_framing(&b);
  pm_buf_free(&b);
}

static void test_resolved_roundtrip(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  static pm_resolver_msg_resolved in;
  memset(&in, 0, sizeof in);
  in.req_id = 77;
  for (unsigned count = 0; count <= PM_RESOLVER_MAX_ENTRIES; count += 8) {
    in.count = (uint8_t)count;
    for (unsigned i = 0; i < count; i++) {
      fill_id(in.entries[i].node_id, (uint8_t)i);
      snprintf(in.entries[i].addr, sizeof in.entries[i].addr, "10.0.0.%u:%u", i,
               1000 + i);
    }
    pm_buf_reset(&b);
    CHECK_INT(pm_resolver_msg_write_resolved(&b, &in), 0);
    pm_resolver_msg m;
    CHECK_INT(decode_one(&b, &m), 0);
    CHECK_INT(m.type, PM_RESOLVER_MSG_RESOLVED);
    CHECK_INT(m.u.resolved.req_id, 77);
    CHECK_INT(m.u.resolved.count, count);
    for (unsigned i = 0; i < count; i++) {
      CHECK_MEM(m.u.resolved.entries[i].node_id, in.entries[i].node_id,
                PM_NODE_ID_LEN);
      CHECK_STR(m.u.resolved.entries[i].addr, in.entries[i].addr);
    }
    check_framing(&b);
  }
  pm_buf_free(&b);
}

static void test_unregister_roundtrip(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_unregister in;
  memset(&in, 0, sizeof in);
  in.req_id = 5;
  strcpy(in.mesh,
         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.");
  CHECK_INT(strlen(in.mesh), PM_MESH_NAME_MAX);
  fill_id(in.node_id, 3);
  CHECK_INT(pm_resolver_msg_write_unregister(&b, &in), 0);
  pm_resolver_msg m;
  CHECK_INT(decode_one(&b, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_UNREGISTER);
  CHECK_INT(m.u.unreg.req_id, 5);
  CHECK_STR(m.u.unreg.mesh, in.mesh);
  CHECK_MEM(m.u.unreg.node_id, in.node_id, PM_NODE_ID_LEN);
  check_framing(&b);

  pm_buf_reset(&b);
  pm_resolver_msg_unregistered u = {6};
  CHECK_INT(pm_resolver_msg_write_unregistered(&b, &u), 0);
  CHECK_INT(decode_one(&b, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_UNREGISTERED);
  CHECK_INT(m.u.unregistered.req_id, 6);
  check_framing(&b);
  pm_buf_free(&b);
}

static void test_error_roundtrip(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_resolver_msg_write_error(&b, 42, PM_RESOLVER_CODE_QUOTA,
                                        "quota exceeded"),
            0);
  pm_resolver_msg m;
  CHECK_INT(decode_one(&b, &m), 0);
  CHECK_INT(m.type, PM_RESOLVER_MSG_ERROR);
  CHECK_INT(m.u.error.req_id, 42);
  CHECK_INT(m.u.error.code, PM_RESOLVER_CODE_QUOTA);
  CHECK_STR(m.u.error.message, "quota exceeded");
  check_framing(&b);

  /* No message, and an over-long one cut at 255 bytes. */
  pm_buf_reset(&b);
  CHECK_INT(pm_resolver_msg_write_error(&b, 1, 999, NULL), 0);
  CHECK_INT(decode_one(&b, &m), 0);
  CHECK_INT(m.u.error.code, 999);
  CHECK_STR(m.u.error.message, "");
  char longmsg[400];
  memset(longmsg, 'x', sizeof longmsg - 1);
  longmsg[sizeof longmsg - 1] = '\0';
  pm_buf_reset(&b);
  CHECK_INT(pm_resolver_msg_write_error(&b, 1, 4, longmsg), 0);
  CHECK_INT(decode_one(&b, &m), 0);
  CHECK_INT(strlen(m.u.error.message), PM_RESOLVER_MESSAGE_MAX);
  pm_buf_free(&b);
}

static void test_code_names(void) {
  CHECK_STR(pm_resolver_code_name(PM_RESOLVER_CODE_BAD_REQUEST), "bad_request");
  CHECK_STR(pm_resolver_code_name(PM_RESOLVER_CODE_QUOTA), "quota");
  CHECK_STR(pm_resolver_code_name(PM_RESOLVER_CODE_NOT_FOUND), "not_found");
  CHECK_STR(pm_resolver_code_name(PM_RESOLVER_CODE_INTERNAL), "internal");
  CHECK_STR(pm_resolver_code_name(0), "unknown");
  CHECK_STR(pm_resolver_code_name(5), "unknown");
  CHECK_INT(pm_resolver_code_to_err(PM_RESOLVER_CODE_QUOTA), PM_ERR_FULL);
  CHECK_INT(pm_resolver_code_to_err(PM_RESOLVER_CODE_NOT_FOUND),
            PM_ERR_NOT_FOUND);
  CHECK_INT(pm_resolver_code_to_err(PM_RESOLVER_CODE_INTERNAL), PM_ERR_IO);
  CHECK_INT(pm_resolver_code_to_err(PM_RESOLVER_CODE_BAD_REQUEST),
            PM_ERR_REFUSED);
  CHECK_INT(pm_resolver_code_to_err(1234), PM_ERR_REFUSED);
}

static void test_mesh_names(void) {
  CHECK(pm_resolver_mesh_valid("lobby", 5));
  CHECK(pm_resolver_mesh_valid("A.b_c-9", 7));
  CHECK(!pm_resolver_mesh_valid("", 0));
  CHECK(!pm_resolver_mesh_valid(NULL, 3));
  CHECK(!pm_resolver_mesh_valid("a b", 3));
  CHECK(!pm_resolver_mesh_valid("a/b", 3));
  CHECK(!pm_resolver_mesh_valid("caf\xc3\xa9", 5));
  CHECK(!pm_resolver_mesh_valid("a\0b", 3));
  char m64[65];
  memset(m64, 'a', 64);
  m64[64] = '\0';
  CHECK(pm_resolver_mesh_valid(m64, 63));
  CHECK(!pm_resolver_mesh_valid(m64, 64));
}

/* Builds a REGISTER payload by hand with the given mesh and addr bytes. */
static size_t raw_register(uint8_t *p, const char *mesh, size_t mlen,
                           const char *addr, size_t alen) {
  size_t n = 0;
  p[n++] = 0, p[n++] = 0, p[n++] = 0, p[n++] = 1;
  p[n++] = (uint8_t)mlen;
  memcpy(p + n, mesh, mlen);
  n += mlen;
  memset(p + n, 0xab, PM_NODE_ID_LEN);
  n += PM_NODE_ID_LEN;
  p[n++] = (uint8_t)alen;
  memcpy(p + n, addr, alen);
  n += alen;
  return n;
}

static int read_register_raw(const char *mesh, size_t mlen, const char *addr,
                             size_t alen) {
  uint8_t p[600];
  size_t n = raw_register(p, mesh, mlen, addr, alen);
  pm_frame f = {PM_RESOLVER_MSG_REGISTER, p, n};
  pm_resolver_msg m;
  return pm_resolver_msg_read(&f, &m);
}

static void test_reject_bad_fields(void) {
  const char *a = "1.2.3.4:5";
  CHECK_INT(read_register_raw("ok", 2, a, strlen(a)), 0);
  /* mesh names */
  CHECK_INT(read_register_raw("", 0, a, strlen(a)), PM_ERR_MALFORMED);
  CHECK_INT(read_register_raw("a b", 3, a, strlen(a)), PM_ERR_MALFORMED);
  CHECK_INT(read_register_raw("a\0b", 3, a, strlen(a)), PM_ERR_MALFORMED);
  char m64[64];
  memset(m64, 'm', sizeof m64);
  CHECK_INT(read_register_raw(m64, 64, a, strlen(a)), PM_ERR_MALFORMED);
  CHECK_INT(read_register_raw(m64, 63, a, strlen(a)), 0);
  /* addresses */
  const char *bad[] = {"",         "nohost",        "1.2.3.4:0",
                       "1.2.3.4:", "1.2.3.4:65536", "::1:80",
                       ":80",      "1.2.3.4:8x",    "a b:80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_INT(read_register_raw("m", 1, bad[i], strlen(bad[i])),
              PM_ERR_MALFORMED);
  CHECK_INT(read_register_raw("m", 1, "1.2.3.4:5\0", 10), PM_ERR_MALFORMED);
  char along[200];
  memset(along, 'h', sizeof along);
  memcpy(along + sizeof along - 3, ":80", 3);
  CHECK_INT(read_register_raw("m", 1, along, sizeof along), PM_ERR_MALFORMED);
}

static void test_reject_counts(void) {
  /* RESOLVE with max 0 and 33. */
  uint8_t p[64] = {0, 0, 0, 1, 1, 'm', 0};
  pm_frame f = {PM_RESOLVER_MSG_RESOLVE, p, 7 + PM_NODE_ID_LEN};
  pm_resolver_msg m;
  CHECK_INT(pm_resolver_msg_read(&f, &m), PM_ERR_MALFORMED);
  p[6] = 33;
  CHECK_INT(pm_resolver_msg_read(&f, &m), PM_ERR_MALFORMED);
  p[6] = 1;
  CHECK_INT(pm_resolver_msg_read(&f, &m), 0);

  /* RESOLVED announcing 33 entries, and 255. */
  uint8_t q[8] = {0, 0, 0, 1, 33};
  pm_frame g = {PM_RESOLVER_MSG_RESOLVED, q, 5};
  CHECK_INT(pm_resolver_msg_read(&g, &m), PM_ERR_MALFORMED);
  q[4] = 255;
  CHECK_INT(pm_resolver_msg_read(&g, &m), PM_ERR_MALFORMED);
  /* Announcing one entry and carrying none is truncation. */
  q[4] = 1;
  CHECK_INT(pm_resolver_msg_read(&g, &m), PM_ERR_TRUNCATED);
  q[4] = 0;
  CHECK_INT(pm_resolver_msg_read(&g, &m), 0);
}

static void test_reject_unknown_types(void) {
  uint8_t p[4] = {0, 0, 0, 1};
  pm_resolver_msg m;
  const uint8_t types[] = {0x46, 0x4e, 0x01, 0x20, 0x3f, 0x50, 0xff};
  for (size_t i = 0; i < sizeof types; i++) {
    pm_frame f = {types[i], p, 4};
    CHECK_INT(pm_resolver_msg_read(&f, &m), PM_ERR_UNEXPECTED);
  }
}

static void test_encoders_reject_bad_input(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_register r;
  memset(&r, 0, sizeof r);
  strcpy(r.mesh, "bad mesh");
  strcpy(r.addr, "1.2.3.4:5");
  CHECK_INT(pm_resolver_msg_write_register(&b, &r), PM_ERR_INVAL);
  strcpy(r.mesh, "ok");
  strcpy(r.addr, "1.2.3.4");
  CHECK_INT(pm_resolver_msg_write_register(&b, &r), PM_ERR_INVAL);
  /* A mesh array with no NUL at all. */
  memset(r.mesh, 'a', sizeof r.mesh);
  strcpy(r.addr, "1.2.3.4:5");
  CHECK_INT(pm_resolver_msg_write_register(&b, &r), PM_ERR_INVAL);

  pm_resolver_msg_resolve q;
  memset(&q, 0, sizeof q);
  strcpy(q.mesh, "m");
  q.max = 0;
  CHECK_INT(pm_resolver_msg_write_resolve(&b, &q), PM_ERR_INVAL);
  q.max = 33;
  CHECK_INT(pm_resolver_msg_write_resolve(&b, &q), PM_ERR_INVAL);

  static pm_resolver_msg_resolved d;
  memset(&d, 0, sizeof d);
  d.count = 33;
  CHECK_INT(pm_resolver_msg_write_resolved(&b, &d), PM_ERR_INVAL);
  d.count = 1;
  strcpy(d.entries[0].addr, "nonsense");
  CHECK_INT(pm_resolver_msg_write_resolved(&b, &d), PM_ERR_INVAL);

  pm_resolver_msg_unregister u;
  memset(&u, 0, sizeof u);
  CHECK_INT(pm_resolver_msg_write_unregister(&b, &u), PM_ERR_INVAL);
  /* Nothing was appended by any of the rejected calls. */
  CHECK_INT(b.len, 0);
  pm_buf_free(&b);
}

static void test_peek_req_id(void) {
  uint8_t p[5] = {0xa, 0xb, 0xc, 0xd, 0xff};
  pm_frame f = {0x77, p, 5};
  uint32_t id = 0;
  CHECK_INT(pm_resolver_msg_peek_req_id(&f, &id), 0);
  CHECK_INT(id, 0x0a0b0c0d);
  f.len = 3;
  CHECK_INT(pm_resolver_msg_peek_req_id(&f, &id), PM_ERR_TRUNCATED);
}

/* Frames written back to back are cut one by one. */
static void test_several_frames_in_one_buffer(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_resolver_msg_registered r1 = {1, 10};
  pm_resolver_msg_unregistered r2 = {2};
  CHECK_INT(pm_resolver_msg_write_registered(&b, &r1), 0);
  CHECK_INT(pm_resolver_msg_write_unregistered(&b, &r2), 0);
  CHECK_INT(pm_resolver_msg_write_error(&b, 3, 1, "no"), 0);
  size_t off = 0;
  uint32_t ids[3];
  int n = 0;
  while (off < b.len && n < 3) {
    pm_frame f;
    size_t used;
    CHECK_INT(pm_frame_parse(b.data + off, b.len - off, &f, &used), 1);
    pm_resolver_msg m;
    CHECK_INT(pm_resolver_msg_read(&f, &m), 0);
    CHECK_INT(pm_resolver_msg_peek_req_id(&f, &ids[n]), 0);
    n++;
    off += used;
  }
  CHECK_INT(n, 3);
  CHECK_INT(off, b.len);
  CHECK_INT(ids[0], 1);
  CHECK_INT(ids[1], 2);
  CHECK_INT(ids[2], 3);
  pm_buf_free(&b);
}

TEST_MAIN(TEST_CASE(test_register_roundtrip), TEST_CASE(test_registered_golden),
          TEST_CASE(test_resolve_roundtrip), TEST_CASE(test_resolved_roundtrip),
          TEST_CASE(test_unregister_roundtrip), TEST_CASE(test_error_roundtrip),
          TEST_CASE(test_code_names), TEST_CASE(test_mesh_names),
          TEST_CASE(test_reject_bad_fields), TEST_CASE(test_reject_counts),
          TEST_CASE(test_reject_unknown_types),
          TEST_CASE(test_encoders_reject_bad_input),
          TEST_CASE(test_peek_req_id),
          TEST_CASE(test_several_frames_in_one_buffer))
