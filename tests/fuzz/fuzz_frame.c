/* Fuzz target: the link frame decoder and every frame body decoder
 * (runtime/core/frame.h, msg.h), fed arbitrary bytes as a peer would send
 * them on a link.
 *
 * The input is a byte stream. Frames are cut from it with pm_frame_parse, as
 * pm_node_link_recv does, until the stream needs more bytes or fails. Each
 * frame's payload then goes through every body decoder, whatever its type
 * (the decoders do not look at the type, so this reaches them all from any
 * header), and what a decoder accepts must hold up:
 *   - a frame never claims more bytes than the input holds, nor more than
 *     PM_FRAME_MAX, and any strict prefix of it is "need more bytes";
 *   - decoded views lie inside the payload;
 *   - the formats are canonical, so re-encoding a decoded Hello, referral
 *     list, Flood, ID list, Tree advert or Sync gives back exactly the payload,
 *     whenever the
 *     encoder accepts the values (encoders are stricter than decoders about
 *     a few lengths, e.g. mesh names above 63 bytes).
 * A failed check aborts, which libFuzzer and the replay driver report as a
 * crash. Built with replay.c it replays a corpus under `make test`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "msg.h"
#include "tree.h"
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

/* 1 when [p, p + n) lies within [base, base + len). */
static int inside(const void *p, size_t n, const uint8_t *base, size_t len) {
  const uint8_t *q = p;
  return q >= base && n <= len && (size_t)(q - base) <= len - n;
}

/* The frame `b` holds must carry exactly the payload of `f`. */
static void check_reencoded(const pm_buf *b, const pm_frame *f) {
  FUZZ_CHECK(b->err == 0);
  FUZZ_CHECK(b->len == PM_FRAME_HEADER + f->len);
  FUZZ_CHECK(b->data[0] == PM_PROTOCOL_VERSION);
  FUZZ_CHECK(pm_load_u32(b->data + 2) == f->len);
  FUZZ_CHECK(f->len == 0 ||
             memcmp(b->data + PM_FRAME_HEADER, f->payload, f->len) == 0);
}

static void fuzz_hello(const pm_frame *f) {
  pm_msg_hello h;
  if (pm_msg_read_hello(f, &h) != 0)
    return;
  FUZZ_CHECK(h.mesh_len >= 1 && h.mesh_len <= UINT8_MAX);
  FUZZ_CHECK(inside(h.mesh, h.mesh_len, f->payload, f->len));
  FUZZ_CHECK(f->len == 1 + h.mesh_len + PM_NODE_ID_LEN + 2 + 4);
  pm_buf b;
  pm_buf_init(&b, NULL);
  int rc = pm_msg_write_hello(&b, &h);
  if (h.mesh_len <= PM_MESH_NAME_MAX) {
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(b.data[1] == PM_FRAME_HELLO);
    check_reencoded(&b, f);
  } else {
    FUZZ_CHECK(rc == PM_ERR_INVAL);
  }
  pm_buf_free(&b);
}

static void fuzz_referrals(const pm_frame *f) {
  pm_msg_referrals r;
  if (pm_msg_read_referrals(f, &r) != 0)
    return;
  FUZZ_CHECK(r.count <= PM_MAX_REFERRALS);
  size_t want = 2;
  for (unsigned i = 0; i < r.count; i++) {
    /* Accepted addresses are NUL-terminated, parse, and hold no NUL. */
    size_t n = strnlen(r.items[i].addr, sizeof r.items[i].addr);
    FUZZ_CHECK(n >= 1 && n <= PM_ADDR_MAX);
    char host[PM_ADDR_MAX + 1];
    uint16_t port;
    FUZZ_CHECK(pm_addr_parse(r.items[i].addr, host, &port, 0) == 0);
    FUZZ_CHECK(port != 0);
    want += PM_NODE_ID_LEN + 1 + n;
  }
  FUZZ_CHECK(f->len == want);
  /* All three referral frames share one body: re-encode as each. */
  static const uint8_t types[] = {PM_FRAME_WELCOME, PM_FRAME_REFUSE,
                                  PM_FRAME_DISCONNECT};
  for (size_t t = 0; t < sizeof types; t++) {
    pm_buf b;
    pm_buf_init(&b, NULL);
    FUZZ_CHECK(pm_msg_write_referrals(&b, types[t], &r) == 0);
    FUZZ_CHECK(b.data[1] == types[t]);
    check_reencoded(&b, f);
    pm_buf_free(&b);
  }
}

static void fuzz_flood(const pm_frame *f) {
  pm_msg_flood m;
  if (pm_msg_read_flood(f, &m) != 0)
    return;
  FUZZ_CHECK(m.action_len >= 1 && m.action_len <= UINT8_MAX);
  FUZZ_CHECK(inside(m.action, m.action_len, f->payload, f->len));
  FUZZ_CHECK(m.body_len == 0 || inside(m.body, m.body_len, f->payload, f->len));
  FUZZ_CHECK(m.has_hop_limit == 0 || m.has_hop_limit == 1);
  FUZZ_CHECK(m.has_hop_limit || m.hop_limit == 0);
  FUZZ_CHECK(f->len == PM_MSG_ID_LEN + PM_NODE_ID_LEN + 8 + 8 + 1 + 4 + 2 + 1 +
                           m.action_len + 4 + m.body_len + PM_SIG_BYTES);
  /* The ID is a pure function of the signed fields: the same for equal
   * inputs, whatever the hop count and the signature say. */
  uint8_t id1[PM_MSG_ID_LEN], id2[PM_MSG_ID_LEN];
  pm_msg_flood_id(&m, id1);
  pm_msg_flood unsigned_part = m;
  unsigned_part.hops = (uint16_t)(m.hops ^ 0xffffu);
  unsigned_part.sig[0] ^= 1;
  pm_msg_flood_id(&unsigned_part, id2);
  FUZZ_CHECK(memcmp(id1, id2, PM_MSG_ID_LEN) == 0);

  pm_buf b;
  pm_buf_init(&b, NULL);
  int rc = pm_msg_write_flood(&b, &m);
  if (m.action_len <= PM_ACTION_MAX) {
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(b.data[1] == PM_FRAME_FLOOD);
    check_reencoded(&b, f);
  } else {
    FUZZ_CHECK(rc == PM_ERR_INVAL);
  }
  pm_buf_free(&b);
}

static void fuzz_tree(const pm_frame *f) {
  pm_tree_adv a;
  if (pm_msg_read_tree(f, &a) != 0)
    return;
  FUZZ_CHECK(f->len == PM_NODE_ID_LEN + 4 + 2 + 1);
  FUZZ_CHECK((a.flags & ~PM_TREE_FLAG_PARENT) == 0);
  pm_buf b;
  pm_buf_init(&b, NULL);
  FUZZ_CHECK(pm_msg_write_tree(&b, &a) == 0);
  FUZZ_CHECK(b.data[1] == PM_FRAME_TREE);
  check_reencoded(&b, f);
  pm_buf_free(&b);
}

static void fuzz_sync(const pm_frame *f) {
  uint32_t window;
  if (pm_msg_read_sync(f, &window) != 0)
    return;
  FUZZ_CHECK(f->len == 4);
  pm_buf b;
  pm_buf_init(&b, NULL);
  FUZZ_CHECK(pm_msg_write_sync(&b, window) == 0);
  FUZZ_CHECK(b.data[1] == PM_FRAME_SYNC);
  check_reencoded(&b, f);
  pm_buf_free(&b);
}

static void fuzz_ids(const pm_frame *f) {
  const uint8_t *ids;
  size_t count;
  if (pm_msg_read_ids(f, &ids, &count) != 0)
    return;
  FUZZ_CHECK(count >= 1 && count <= PM_MAX_IDS);
  FUZZ_CHECK(f->len == 1 + count * PM_MSG_ID_LEN);
  FUZZ_CHECK(ids == f->payload + 1);
  pm_buf b;
  pm_buf_init(&b, NULL);
  FUZZ_CHECK(pm_msg_write_ids(&b, PM_FRAME_IHAVE, ids, count) == 0);
  check_reencoded(&b, f);
  pm_buf_free(&b);
}

/* Checks what pm_frame_parse said about the frame at the start of `data`
 * against its header, and that no strict prefix of a complete frame is
 * taken for a frame or an error. */
static void check_frame(const uint8_t *data, size_t len, int got,
                        const pm_frame *f, size_t used) {
  if (got < 0) {
    FUZZ_CHECK(used == 0);
    FUZZ_CHECK(len >= 1);
    if (data[0] != PM_PROTOCOL_VERSION) {
      FUZZ_CHECK(got == PM_ERR_VERSION);
    } else {
      FUZZ_CHECK(got == PM_ERR_FRAME_TOO_LARGE);
      FUZZ_CHECK(len >= PM_FRAME_HEADER);
      FUZZ_CHECK(pm_load_u32(data + 2) > PM_FRAME_MAX_PAYLOAD);
    }
    return;
  }
  if (got == 0) {
    FUZZ_CHECK(used == 0);
    FUZZ_CHECK(len < PM_FRAME_HEADER ||
               (size_t)pm_load_u32(data + 2) > len - PM_FRAME_HEADER);
    return;
  }
  FUZZ_CHECK(got == 1);
  FUZZ_CHECK(used == PM_FRAME_HEADER + f->len);
  FUZZ_CHECK(used <= len && used <= PM_FRAME_MAX);
  FUZZ_CHECK(f->type == data[1]);
  FUZZ_CHECK(f->payload == data + PM_FRAME_HEADER);
  static const size_t cuts[] = {0, 1, PM_FRAME_HEADER - 1, PM_FRAME_HEADER};
  for (size_t i = 0; i <= sizeof cuts / sizeof cuts[0]; i++) {
    size_t cut = i < sizeof cuts / sizeof cuts[0] ? cuts[i] : used - 1;
    if (cut >= used)
      continue;
    pm_frame g;
    size_t u = 99;
    FUZZ_CHECK(pm_frame_parse(data, cut, &g, &u) == 0);
    FUZZ_CHECK(u == 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    pm_frame f;
    size_t used = 0;
    int got = pm_frame_parse(data + off, size - off, &f, &used);
    check_frame(data + off, size - off, got, &f, used);
    if (got != 1)
      break;
    fuzz_hello(&f);
    fuzz_referrals(&f);
    fuzz_flood(&f);
    fuzz_ids(&f);
    fuzz_tree(&f);
    fuzz_sync(&f);
    off += used;
  }
  return 0;
}
