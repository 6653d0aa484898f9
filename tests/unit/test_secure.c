/* Unit tests for runtime/core/secure.c: the per-link secure channel.
 *
 * Two pm_secure instances exchange bytes through pm_bufs: the handshake, data
 * both ways (split into records, fed in any chunk size), and every refusal:
 * tampering, replay, a wrong PSK or mesh, another version, oversized headers,
 * forged identity proofs (from a hand-driven Noise peer built on noise.h),
 * nonce exhaustion. Keys are fixed (seeded) and randomness deterministic. */
#include <sodium.h>
#include <stdalign.h>
#include <stdlib.h>

#include "noise.h"
#include "secure.h"
#include "test.h"

/* ---- fixtures ------------------------------------------------------------ */

typedef struct ident {
  uint8_t pk[crypto_sign_PUBLICKEYBYTES];
  uint8_t sk[crypto_sign_SECRETKEYBYTES];
} ident;

static void ident_make(ident *id, uint8_t seed_byte) {
  uint8_t seed[crypto_sign_SEEDBYTES];
  memset(seed, seed_byte, sizeof seed);
  crypto_sign_seed_keypair(id->pk, id->sk, seed);
}

/* splitmix64: a deterministic stand-in for the node's random callback. */
static uint64_t rng_next(void *ud) {
  uint64_t *x = ud;
  uint64_t z = (*x += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* A counting allocator: records the largest block and the live bytes, and
 * fails every request once `fail` is set. */
typedef struct counter {
  size_t largest, live, peak;
  int fail;
} counter;

typedef union block_header {
  size_t size;
  max_align_t align;
} block_header;

static void *count_realloc(void *ud, void *ptr, size_t size) {
  counter *c = ud;
  block_header *h = ptr ? (block_header *)ptr - 1 : NULL;
  size_t old = h ? h->size : 0;
  if (size == 0) {
    c->live -= old;
    free(h);
    return NULL;
  }
  if (c->fail)
    return NULL;
  block_header *n = realloc(h, sizeof *n + size);
  if (!n)
    return NULL;
  n->size = size;
  c->live = c->live - old + size;
  if (c->live > c->peak)
    c->peak = c->live;
  if (size > c->largest)
    c->largest = size;
  return n + 1;
}

/* One end of a link: its channel, what it has to send, what it received. */
typedef struct side {
  ident id;
  uint64_t rng;
  counter count;
  pm_allocator alloc;
  pm_secure s;
  pm_buf out;
  pm_buf plain;
  int err; /* the first error pm_secure_recv returned */
} side;

typedef struct opts {
  uint8_t key_seed, psk_byte, tag_byte;
  int password;
  uint64_t rng_seed; /* 0: the key seed */
} opts;

static const opts default_opts = {0, 0x50, 0x70, 0, 0};

static int side_init(side *d, int initiator, const opts *o) {
  uint8_t psk[PM_SECURE_KEY_LEN], tag[PM_SECURE_MESH_TAG_LEN];
  memset(d, 0, sizeof *d);
  uint8_t seed = o->key_seed ? o->key_seed : (initiator ? 0x11 : 0x22);
  ident_make(&d->id, seed);
  d->rng = o->rng_seed ? o->rng_seed : seed;
  memset(psk, o->psk_byte, sizeof psk);
  memset(tag, o->tag_byte, sizeof tag);
  d->alloc.realloc = count_realloc;
  d->alloc.ud = &d->count;
  pm_buf_init(&d->out, NULL);
  pm_buf_init(&d->plain, NULL);
  pm_secure_config cfg = {.initiator = initiator,
                          .psk = psk,
                          .ed25519_sk = d->id.sk,
                          .ed25519_pk = d->id.pk,
                          .mesh_tag = tag,
                          .password = o->password,
                          .random = rng_next,
                          .random_ud = &d->rng,
                          .alloc = &d->alloc};
  return pm_secure_init(&d->s, &cfg);
}

static void side_free(side *d) {
  pm_secure_clear(&d->s);
  pm_buf_free(&d->out);
  pm_buf_free(&d->plain);
  CHECK_INT(d->count.live, 0); /* pm_secure_clear released everything */
}

/* Feeds `len` bytes to `to` in chunks of `chunk`; stops at the first error,
 * which it records and returns. */
static int feed(side *to, const uint8_t *data, size_t len, size_t chunk) {
  for (size_t off = 0; off < len && !to->err; off += chunk) {
    size_t n = len - off < chunk ? len - off : chunk;
    int r = pm_secure_recv(&to->s, data + off, n, &to->plain, &to->out);
    if (r)
      to->err = r;
  }
  return to->err;
}

/* Moves everything `from` has to send into `to`. */
static int deliver(side *from, side *to, size_t chunk) {
  pm_buf copy;
  pm_buf_init(&copy, NULL);
  pm_buf_put(&copy, from->out.data, from->out.len);
  pm_buf_reset(&from->out);
  int r = to->err ? to->err : feed(to, copy.data, copy.len, chunk);
  pm_buf_free(&copy);
  return r;
}

/* Exchanges bytes until both sides have nothing left to send. */
static void pump(side *a, side *b, size_t chunk) {
  while (a->out.len || b->out.len) {
    if (a->out.len)
      (void)deliver(a, b, chunk);
    if (b->out.len)
      (void)deliver(b, a, chunk);
  }
}

/* Two sides with the given options, handshake started by `a`. */
static void pair_open(side *a, side *b, const opts *oa, const opts *ob) {
  CHECK_INT(side_init(a, 1, oa), 0);
  CHECK_INT(side_init(b, 0, ob), 0);
  CHECK_INT(pm_secure_start(&a->s, &a->out), 0);
  CHECK_INT(pm_secure_start(&b->s, &b->out), 0);
}

static void pair_establish(side *a, side *b) {
  pair_open(a, b, &default_opts, &default_opts);
  pump(a, b, 1 << 20);
  CHECK_INT(a->err, 0);
  CHECK_INT(b->err, 0);
  CHECK(pm_secure_established(&a->s));
  CHECK(pm_secure_established(&b->s));
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)((i * 131u + seed) ^ (i >> 8));
}

static const uint8_t reject_wrong_mesh[] = {1, 4, 0, 0, 0, 1, 1};
static const uint8_t reject_auth[] = {1, 4, 0, 0, 0, 1, 2};
static const uint8_t reject_version[] = {1, 4, 0, 0, 0, 1, 3};

/* Whether `b` holds exactly the record `rec` (7 bytes). */
static int holds(const pm_buf *b, const uint8_t rec[7]) {
  return b->len == 7 && memcmp(b->data, rec, 7) == 0;
}

/* ---- a Noise peer driven by hand, to forge what pm_secure never sends --- */

typedef struct raw {
  pm_noise_handshake hs;
} raw;

static void raw_init(raw *r, int initiator, uint8_t psk_byte,
                     const ident *static_id, uint8_t eph_byte) {
  uint8_t x_sk[32], psk[32], e[32];
  CHECK_INT(crypto_sign_ed25519_sk_to_curve25519(x_sk, static_id->sk), 0);
  memset(psk, psk_byte, sizeof psk);
  memset(e, eph_byte, sizeof e);
  const uint8_t(*psks)[32] = (const uint8_t(*)[32])psk;
  pm_noise_config nc = {.role =
                            initiator ? PM_NOISE_INITIATOR : PM_NOISE_RESPONDER,
                        .protocol = PM_SECURE_PROTOCOL,
                        .prologue = (const uint8_t *)PM_SECURE_PROLOGUE,
                        .prologue_len = strlen(PM_SECURE_PROLOGUE),
                        .local_static = x_sk,
                        .psks = psks,
                        .psk_count = 1};
  CHECK_INT(pm_noise_handshake_init(&r->hs, &nc), 0);
  CHECK_INT(pm_noise_handshake_set_ephemeral(&r->hs, e), 0);
}

/* Appends the next handshake message as a record. */
static void raw_write(raw *r, const uint8_t *payload, size_t n, pm_buf *out) {
  uint8_t msg[1024];
  size_t len = 0;
  CHECK_INT(pm_noise_handshake_write(&r->hs, payload, n, msg, sizeof msg, &len),
            0);
  pm_buf_u8(out, 1);
  pm_buf_u8(out, PM_SECURE_REC_HANDSHAKE);
  pm_buf_u32(out, (uint32_t)len);
  pm_buf_put(out, msg, len);
}

/* Reads the one handshake record in `in` (and empties it). */
static int raw_read(raw *r, pm_buf *in, uint8_t *payload, size_t *n) {
  CHECK(in->len >= 6 && in->data[1] == PM_SECURE_REC_HANDSHAKE);
  CHECK_INT(pm_load_u32(in->data + 2), in->len - 6);
  int rc = pm_noise_handshake_read(&r->hs, in->data + 6, in->len - 6, payload,
                                   256, n);
  pm_buf_reset(in);
  return rc;
}

/* An identity proof claiming `claimed`, signed by `signer`, over the X25519
 * public key of `static_id`. */
static void make_proof(uint8_t out[96], const ident *claimed,
                       const ident *signer, const ident *static_id) {
  uint8_t x[32], m[24 + 32];
  CHECK_INT(crypto_sign_ed25519_pk_to_curve25519(x, static_id->pk), 0);
  memcpy(m, PM_SECURE_PROOF_DOMAIN, 24);
  memcpy(m + 24, x, 32);
  memcpy(out, claimed->pk, 32);
  CHECK_INT(crypto_sign_detached(out + 32, NULL, m, sizeof m, signer->sk), 0);
}

static void msg1_payload(uint8_t p[18], uint8_t version, uint8_t tag_byte,
                         uint8_t flags) {
  p[0] = version;
  memset(p + 1, tag_byte, 16);
  p[17] = flags;
}

/* The initiator `a` is started; a raw responder (static key of
 * `static_id`) answers msg1 with `proof` as msg2's payload. Returns a's
 * result. */
static int forged_responder(const ident *static_id, const uint8_t proof[96]) {
  side a;
  raw r;
  uint8_t p[256];
  size_t n = 0;
  CHECK_INT(side_init(&a, 1, &default_opts), 0);
  CHECK_INT(pm_secure_start(&a.s, &a.out), 0);
  raw_init(&r, 0, default_opts.psk_byte, static_id, 0x33);
  CHECK_INT(raw_read(&r, &a.out, p, &n), 0);
  CHECK_INT(n, 18);
  pm_buf wire;
  pm_buf_init(&wire, NULL);
  raw_write(&r, proof, 96, &wire);
  int rc = feed(&a, wire.data, wire.len, wire.len);
  if (rc == 0) { /* a accepted: msg3 must be readable by the raw side */
    CHECK(pm_secure_established(&a.s));
    CHECK_MEM(pm_secure_peer_key(&a.s), proof, 32);
    CHECK_INT(raw_read(&r, &a.out, p, &n), 0);
    CHECK_INT(n, 96);
    CHECK_MEM(p, a.id.pk, 32);
  } else {
    CHECK(!pm_secure_established(&a.s));
    CHECK_INT(a.out.len, 0); /* no msg3, no Reject from an initiator */
  }
  pm_buf_free(&wire);
  pm_noise_handshake_clear(&r.hs);
  side_free(&a);
  return rc;
}

/* A raw initiator (static key of `static_id`) sends `m1` as msg1's payload
 * and, when answered, `proof` as msg3's. Returns the responder's result; its
 * output (a Reject, or nothing) is left in `*b_out_copy`. */
static int forged_initiator(const ident *static_id, const uint8_t *m1,
                            size_t m1_len, const uint8_t proof[96],
                            pm_buf *b_out_copy) {
  side b;
  raw r;
  uint8_t p[256];
  size_t n = 0;
  pm_buf wire;
  pm_buf_init(&wire, NULL);
  CHECK_INT(side_init(&b, 0, &default_opts), 0);
  raw_init(&r, 1, default_opts.psk_byte, static_id, 0x44);
  raw_write(&r, m1, m1_len, &wire);
  int rc = feed(&b, wire.data, wire.len, wire.len);
  if (rc == 0) {
    CHECK_INT(raw_read(&r, &b.out, p, &n), 0);
    CHECK_INT(n, 96);
    CHECK_MEM(p, b.id.pk, 32);
    pm_buf_reset(&wire);
    raw_write(&r, proof, 96, &wire);
    rc = feed(&b, wire.data, wire.len, wire.len);
    CHECK_INT(pm_secure_established(&b.s), rc == 0);
  }
  pm_buf_put(b_out_copy, b.out.data, b.out.len);
  pm_buf_free(&wire);
  pm_noise_handshake_clear(&r.hs);
  side_free(&b);
  return rc;
}

/* ---- handshake ----------------------------------------------------------- */

static void test_handshake(void) {
  side a, b;
  pair_open(&a, &b, &default_opts, &default_opts);
  CHECK_INT(b.out.len, 0); /* the responder's start writes nothing */
  CHECK(pm_secure_peer_key(&a.s) == NULL);
  CHECK(pm_secure_handshake_hash(&a.s) == NULL);
  /* msg1: header, e (32), payload (18) + tag (16) */
  CHECK_INT(a.out.len, 6 + 66);
  CHECK_INT(a.out.data[0], 1);
  CHECK_INT(a.out.data[1], PM_SECURE_REC_HANDSHAKE);
  CHECK_INT(pm_load_u32(a.out.data + 2), 66);
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  /* msg2: e (32), s (32 + 16), proof (96) + tag (16) */
  CHECK_INT(b.out.len, 6 + 192);
  CHECK(!pm_secure_established(&b.s));
  CHECK_INT(deliver(&b, &a, 1 << 20), 0);
  /* msg3: s (32 + 16), proof (96) + tag (16) */
  CHECK_INT(a.out.len, 6 + 160);
  CHECK(pm_secure_established(&a.s));
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  CHECK(pm_secure_established(&b.s));
  CHECK_INT(b.out.len, 0);
  CHECK_MEM(pm_secure_peer_key(&a.s), b.id.pk, 32);
  CHECK_MEM(pm_secure_peer_key(&b.s), a.id.pk, 32);
  CHECK(pm_secure_handshake_hash(&a.s) != NULL);
  CHECK_MEM(pm_secure_handshake_hash(&a.s), pm_secure_handshake_hash(&b.s),
            PM_NOISE_HASH_LEN);
  CHECK_INT(pm_secure_error(&a.s), 0);
  /* The handshake state is wiped once split. */
  static const pm_noise_handshake zero_hs;
  CHECK(memcmp(&a.s.hs, &zero_hs, sizeof zero_hs) == 0);
  CHECK(memcmp(&b.s.hs, &zero_hs, sizeof zero_hs) == 0);
  side_free(&a);
  side_free(&b);
}

static void test_password_mesh_handshake(void) {
  side a, b;
  opts o = default_opts;
  o.password = 1;
  pair_open(&a, &b, &o, &o);
  pump(&a, &b, 1 << 20);
  CHECK(pm_secure_established(&a.s) && pm_secure_established(&b.s));
  side_free(&a);
  side_free(&b);
}

static void test_deterministic(void) {
  side a1, a2, a3;
  opts o = default_opts;
  CHECK_INT(side_init(&a1, 1, &o), 0);
  CHECK_INT(side_init(&a2, 1, &o), 0);
  o.rng_seed = 99; /* same key, another ephemeral key */
  CHECK_INT(side_init(&a3, 1, &o), 0);
  CHECK_INT(pm_secure_start(&a1.s, &a1.out), 0);
  CHECK_INT(pm_secure_start(&a2.s, &a2.out), 0);
  CHECK_INT(pm_secure_start(&a3.s, &a3.out), 0);
  CHECK_INT(a1.out.len, a2.out.len);
  CHECK_MEM(a1.out.data, a2.out.data, a1.out.len);
  CHECK(memcmp(a1.out.data, a3.out.data, a1.out.len) != 0);
  CHECK_INT(pm_secure_start(&a1.s, &a1.out), PM_ERR_UNEXPECTED);
  side_free(&a1);
  side_free(&a2);
  side_free(&a3);
}

static void test_chunked_conversation(void) {
  static const size_t chunks[] = {1, 2, 3, 5, 7, 64, 4096};
  uint8_t msg_a[3000], msg_b[1000];
  fill_pattern(msg_a, sizeof msg_a, 1);
  fill_pattern(msg_b, sizeof msg_b, 2);
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    side a, b;
    pair_open(&a, &b, &default_opts, &default_opts);
    CHECK_INT(pm_secure_send(&a.s, msg_a, sizeof msg_a, &a.out), 0);
    CHECK_INT(pm_secure_send(&b.s, msg_b, sizeof msg_b, &b.out), 0);
    pump(&a, &b, chunks[i]);
    CHECK_INT(a.err, 0);
    CHECK_INT(b.err, 0);
    CHECK_INT(b.plain.len, sizeof msg_a);
    CHECK_INT(a.plain.len, sizeof msg_b);
    CHECK(b.plain.len == sizeof msg_a &&
          memcmp(b.plain.data, msg_a, sizeof msg_a) == 0);
    CHECK(a.plain.len == sizeof msg_b &&
          memcmp(a.plain.data, msg_b, sizeof msg_b) == 0);
    side_free(&a);
    side_free(&b);
  }
}

/* ---- data ---------------------------------------------------------------- */

static void test_both_ways(void) {
  side a, b;
  pair_establish(&a, &b);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"hello", 5, &a.out), 0);
  CHECK_INT(a.out.len, 6 + 5 + 16);
  CHECK_INT(a.out.data[1], PM_SECURE_REC_TRANSPORT);
  CHECK_INT(pm_secure_send(&b.s, (const uint8_t *)"world!", 6, &b.out), 0);
  CHECK_INT(pm_secure_send(&b.s, NULL, 0, &b.out), 0); /* nothing to do */
  CHECK_INT(b.out.len, 6 + 6 + 16);
  pump(&a, &b, 1 << 20);
  CHECK_INT(b.plain.len, 5);
  CHECK_MEM(b.plain.data, "hello", 5);
  CHECK_INT(a.plain.len, 6);
  CHECK_MEM(a.plain.data, "world!", 6);
  side_free(&a);
  side_free(&b);
}

static void test_large_split(void) {
  enum { BIG = 200000, BACK = 70000 };
  uint8_t *big = malloc(BIG), *back = malloc(BACK);
  side a, b;
  fill_pattern(big, BIG, 7);
  fill_pattern(back, BACK, 9);
  pair_establish(&a, &b);
  CHECK_INT(pm_secure_send(&a.s, big, BIG, &a.out), 0);
  /* 3 full records of 65519 plaintext bytes and one of 3443 */
  CHECK_INT(a.out.len, BIG + 4 * (6 + 16));
  size_t off = 0, records = 0;
  while (off + 6 <= a.out.len) {
    uint32_t len = pm_load_u32(a.out.data + off + 2);
    CHECK_INT(a.out.data[off + 1], PM_SECURE_REC_TRANSPORT);
    CHECK_INT(len, records < 3 ? 65535 : 3443 + 16);
    off += 6 + len;
    records++;
  }
  CHECK_INT(off, a.out.len);
  CHECK_INT(records, 4);
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  CHECK(b.plain.len == BIG && memcmp(b.plain.data, big, BIG) == 0);
  /* back the other way, one byte at a time */
  CHECK_INT(pm_secure_send(&b.s, back, BACK, &b.out), 0);
  CHECK_INT(deliver(&b, &a, 1), 0);
  CHECK(a.plain.len == BACK && memcmp(a.plain.data, back, BACK) == 0);
  /* a's receive buffer never held more than one record, and shrank */
  CHECK_INT(a.count.largest, 6 + 65535);
  CHECK(a.s.in.cap <= 4096);
  side_free(&a);
  side_free(&b);
  free(big);
  free(back);
}

static void test_pending_before_established(void) {
  side a, b;
  CHECK_INT(side_init(&a, 1, &default_opts), 0);
  CHECK_INT(side_init(&b, 0, &default_opts), 0);
  /* both write their Hello before the handshake starts */
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"hello-a", 7, &a.out), 0);
  CHECK_INT(pm_secure_send(&b.s, (const uint8_t *)"hello-b", 7, &b.out), 0);
  CHECK_INT(a.out.len, 0);
  CHECK_INT(b.out.len, 0);
  CHECK_INT(pm_secure_start(&a.s, &a.out), 0);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"+more", 5, &a.out), 0);
  CHECK_INT(a.out.len, 6 + 66); /* only msg1 */
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  CHECK_INT(b.out.len, 6 + 192); /* only msg2 */
  CHECK_INT(deliver(&b, &a, 1 << 20), 0);
  /* msg3, then the queued bytes as one transport record */
  CHECK_INT(a.out.len, 6 + 160 + 6 + 12 + 16);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"!", 1, &a.out), 0);
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  CHECK_INT(b.plain.len, 13);
  CHECK_MEM(b.plain.data, "hello-a+more!", 13);
  /* the responder flushed its queue when msg3 arrived */
  CHECK_INT(b.out.len, 6 + 7 + 16);
  CHECK_INT(deliver(&b, &a, 1 << 20), 0);
  CHECK_INT(a.plain.len, 7);
  CHECK_MEM(a.plain.data, "hello-b", 7);
  CHECK_INT(a.s.pending.cap, 0); /* the queue's memory is released */
  side_free(&a);
  side_free(&b);
}

static void test_pending_bound(void) {
  side a;
  uint8_t *buf = calloc(1, PM_SECURE_MAX_PENDING);
  CHECK_INT(side_init(&a, 1, &default_opts), 0);
  CHECK_INT(pm_secure_send(&a.s, buf, PM_SECURE_MAX_PENDING - 1, &a.out), 0);
  CHECK_INT(pm_secure_send(&a.s, buf, 1, &a.out), 0);
  CHECK_INT(pm_secure_send(&a.s, buf, 1, &a.out), PM_ERR_FULL);
  CHECK_INT(pm_secure_error(&a.s), PM_ERR_FULL);
  CHECK_INT(pm_secure_start(&a.s, &a.out), PM_ERR_FULL);
  CHECK_INT(a.out.len, 0);
  side_free(&a);
  free(buf);
}

static void test_empty_record(void) {
  side a, b;
  uint8_t rec[6 + 16];
  size_t n = 0;
  pair_establish(&a, &b);
  rec[0] = 1;
  rec[1] = PM_SECURE_REC_TRANSPORT;
  pm_store_u32(rec + 2, 16);
  CHECK_INT(
      pm_noise_cipher_encrypt(&a.s.send, rec, 6, NULL, 0, rec + 6, 16, &n), 0);
  CHECK_INT(feed(&b, rec, sizeof rec, sizeof rec), 0);
  CHECK_INT(b.plain.len, 0);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"x", 1, &a.out), 0);
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  CHECK_INT(b.plain.len, 1);
  side_free(&a);
  side_free(&b);
}

/* ---- tampering ----------------------------------------------------------- */

/* a sends "hello"; `off` of the record gets `mask` XORed before b reads it. */
static int tampered(size_t off, uint8_t mask) {
  side a, b;
  pair_establish(&a, &b);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"hello", 5, &a.out), 0);
  a.out.data[off] ^= mask;
  int r = deliver(&a, &b, 1 << 20);
  CHECK_INT(b.plain.len, 0);
  CHECK(!pm_secure_established(&b.s));
  side_free(&a);
  side_free(&b);
  return r;
}

static void test_tamper(void) {
  CHECK_INT(tampered(6 + 2, 0x01), PM_ERR_AUTH);   /* ciphertext */
  CHECK_INT(tampered(6 + 20, 0x80), PM_ERR_AUTH);  /* tag */
  CHECK_INT(tampered(5, 0x01), PM_ERR_AUTH);       /* length 21 -> 20 */
  CHECK_INT(tampered(5, 0x10), PM_ERR_AUTH);       /* length 21 -> 5 */
  CHECK_INT(tampered(1, 0x01), PM_ERR_UNEXPECTED); /* type 3 -> 2 */
  CHECK_INT(tampered(0, 0x03), PM_ERR_VERSION);
}

static void test_replay_and_reorder(void) {
  side a, b;
  pm_buf one, two;
  pm_buf_init(&one, NULL);
  pm_buf_init(&two, NULL);
  pair_establish(&a, &b);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"one", 3, &one), 0);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"two", 3, &two), 0);
  CHECK_INT(feed(&b, one.data, one.len, one.len), 0);
  CHECK_INT(feed(&b, one.data, one.len, one.len), PM_ERR_AUTH); /* replay */
  CHECK_INT(b.plain.len, 3);
  /* a record out of order fails too */
  side c, d;
  pair_establish(&c, &d);
  pm_buf_reset(&one);
  pm_buf_reset(&two);
  CHECK_INT(pm_secure_send(&c.s, (const uint8_t *)"one", 3, &one), 0);
  CHECK_INT(pm_secure_send(&c.s, (const uint8_t *)"two", 3, &two), 0);
  CHECK_INT(feed(&d, two.data, two.len, two.len), PM_ERR_AUTH);
  CHECK_INT(d.plain.len, 0);
  pm_buf_free(&one);
  pm_buf_free(&two);
  side_free(&a);
  side_free(&b);
  side_free(&c);
  side_free(&d);
}

/* A tampered handshake message fails authentication. */
static void test_tampered_msg2(void) {
  side a, b;
  pair_open(&a, &b, &default_opts, &default_opts);
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  b.out.data[6 + 40] ^= 0x04; /* inside the encrypted static key */
  CHECK_INT(deliver(&b, &a, 1 << 20), PM_ERR_AUTH);
  CHECK_INT(a.out.len, 0);
  side_free(&a);
  side_free(&b);
}

/* ---- refusals ------------------------------------------------------------ */

static void test_wrong_psk(void) {
  side a, b;
  opts ob = default_opts;
  ob.psk_byte = 0x51;
  pair_open(&a, &b, &default_opts, &ob);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"secret", 6, &a.out), 0);
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  CHECK_INT(deliver(&b, &a, 1 << 20), 0);
  /* the initiator cannot tell yet: only the responder checks the PSK */
  CHECK(pm_secure_established(&a.s));
  CHECK_INT(deliver(&a, &b, 1 << 20), PM_ERR_WRONG_PASSWORD);
  CHECK_INT(b.plain.len, 0);
  CHECK(!pm_secure_established(&b.s));
  CHECK(holds(&b.out, reject_auth));
  CHECK_INT(deliver(&b, &a, 1 << 20), PM_ERR_WRONG_PASSWORD);
  CHECK(!pm_secure_established(&a.s));
  CHECK_INT(a.out.len, 0);
  CHECK_STR(pm_strerror(PM_ERR_WRONG_PASSWORD),
            "handshake failed: the peer's mesh password differs");
  CHECK_STR(pm_errname(PM_ERR_WRONG_PASSWORD), "WRONG_PASSWORD");
  side_free(&a);
  side_free(&b);
}

static void test_password_flag_differs(void) {
  side a, b;
  opts oa = default_opts;
  oa.password = 1;
  pair_open(&a, &b, &oa, &default_opts);
  CHECK_INT(deliver(&a, &b, 1 << 20), PM_ERR_WRONG_PASSWORD);
  CHECK(holds(&b.out, reject_auth));
  CHECK_INT(deliver(&b, &a, 1 << 20), PM_ERR_WRONG_PASSWORD);
  side_free(&a);
  side_free(&b);
}

static void test_wrong_mesh(void) {
  side a, b;
  opts ob = default_opts;
  ob.tag_byte = 0x71;
  pair_open(&a, &b, &default_opts, &ob);
  CHECK_INT(deliver(&a, &b, 1 << 20), PM_ERR_WRONG_MESH);
  CHECK(holds(&b.out, reject_wrong_mesh));
  CHECK_INT(deliver(&b, &a, 1 << 20), PM_ERR_WRONG_MESH);
  CHECK(!pm_secure_established(&a.s) && !pm_secure_established(&b.s));
  side_free(&a);
  side_free(&b);
}

static void test_version(void) {
  side a, b;
  pair_open(&a, &b, &default_opts, &default_opts);
  a.out.data[0] = 2;
  /* judged on the first byte alone */
  CHECK_INT(feed(&b, a.out.data, 1, 1), PM_ERR_VERSION);
  CHECK(holds(&b.out, reject_version));
  CHECK_INT(deliver(&b, &a, 1 << 20), PM_ERR_VERSION);
  CHECK_INT(a.out.len, 6 + 66); /* untouched: the initiator sends no Reject */
  side_free(&a);
  side_free(&b);

  /* an established initiator gets a record of version 2: no Reject */
  pair_establish(&a, &b);
  CHECK_INT(pm_secure_send(&b.s, (const uint8_t *)"x", 1, &b.out), 0);
  b.out.data[0] = 2;
  CHECK_INT(deliver(&b, &a, 1 << 20), PM_ERR_VERSION);
  CHECK_INT(a.out.len, 0);
  side_free(&a);
  side_free(&b);

  /* version 2 in msg1's payload, from a raw initiator */
  ident i;
  uint8_t m1[18], proof[96];
  pm_buf out;
  pm_buf_init(&out, NULL);
  ident_make(&i, 0x61);
  make_proof(proof, &i, &i, &i);
  msg1_payload(m1, 2, default_opts.tag_byte, 0);
  CHECK_INT(forged_initiator(&i, m1, sizeof m1, proof, &out), PM_ERR_VERSION);
  CHECK(holds(&out, reject_version));
  /* version 1 but a payload of the wrong size: malformed, no Reject */
  pm_buf_reset(&out);
  msg1_payload(m1, 1, default_opts.tag_byte, 0);
  CHECK_INT(forged_initiator(&i, m1, 17, proof, &out), PM_ERR_MALFORMED);
  CHECK_INT(out.len, 0);
  pm_buf_free(&out);
}

static void test_too_large(void) {
  static const uint8_t huge_hs[] = {1, 2, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t huge_tr[] = {1, 3, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t just_over[] = {1, 3, 0x00, 0x01, 0x00, 0x00};
  static const uint8_t max_len[] = {1, 3, 0x00, 0x00, 0xff, 0xff, 0xaa};
  side a, b;

  /* during the handshake, whole header at once: nothing buffered */
  CHECK_INT(side_init(&b, 0, &default_opts), 0);
  CHECK_INT(feed(&b, huge_hs, sizeof huge_hs, sizeof huge_hs),
            PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(b.count.largest, 0);
  CHECK_INT(b.out.len, 0);
  side_free(&b);
  /* byte by byte: only the header's first bytes were buffered */
  CHECK_INT(side_init(&b, 0, &default_opts), 0);
  CHECK_INT(feed(&b, huge_hs, sizeof huge_hs, 1), PM_ERR_FRAME_TOO_LARGE);
  CHECK(b.count.largest <= 256);
  side_free(&b);

  /* established */
  pair_establish(&a, &b);
  CHECK_INT(feed(&b, huge_tr, sizeof huge_tr, 3), PM_ERR_FRAME_TOO_LARGE);
  CHECK(b.count.largest <= 256);
  CHECK_INT(pm_secure_recv(&b.s, huge_tr, sizeof huge_tr, &b.plain, &b.out),
            PM_ERR_FRAME_TOO_LARGE); /* sticky */
  side_free(&a);
  side_free(&b);
  pair_establish(&a, &b);
  CHECK_INT(feed(&b, just_over, sizeof just_over, sizeof just_over),
            PM_ERR_FRAME_TOO_LARGE);
  side_free(&a);
  side_free(&b);
  /* 65535 is allowed: the start of such a record waits for the rest */
  pair_establish(&a, &b);
  CHECK_INT(feed(&b, max_len, sizeof max_len, sizeof max_len), 0);
  CHECK_INT(b.s.in.len, sizeof max_len);
  CHECK_INT(b.count.largest, 6 + 65535); /* room for exactly that record */
  side_free(&a);
  side_free(&b);
}

static void test_forged_responder_proof(void) {
  ident good, other, thief;
  uint8_t proof[96];
  ident_make(&good, 0x31);
  ident_make(&other, 0x32);
  ident_make(&thief, 0x33);
  /* control: a correct proof from the hand-driven responder is accepted */
  make_proof(proof, &good, &good, &good);
  CHECK_INT(forged_responder(&good, proof), 0);
  /* the claimed key did not sign */
  make_proof(proof, &good, &other, &good);
  CHECK_INT(forged_responder(&good, proof), PM_ERR_AUTH);
  /* a genuine signature, but the Noise static key is not the claimed key's:
   * the thief replays good's proof with its own static key */
  make_proof(proof, &good, &good, &good);
  CHECK_INT(forged_responder(&thief, proof), PM_ERR_AUTH);
  /* the claimed key signed the thief's static key */
  make_proof(proof, &good, &good, &thief);
  CHECK_INT(forged_responder(&thief, proof), PM_ERR_AUTH);
  /* a claimed key that is not a valid point */
  make_proof(proof, &good, &good, &good);
  memset(proof, 0xff, 32);
  CHECK_INT(forged_responder(&good, proof), PM_ERR_AUTH);
}

static void test_forged_initiator_proof(void) {
  ident good, other, thief;
  uint8_t m1[18], proof[96];
  pm_buf out;
  pm_buf_init(&out, NULL);
  ident_make(&good, 0x41);
  ident_make(&other, 0x42);
  ident_make(&thief, 0x43);
  msg1_payload(m1, 1, default_opts.tag_byte, 0);
  make_proof(proof, &good, &good, &good);
  CHECK_INT(forged_initiator(&good, m1, sizeof m1, proof, &out), 0);
  make_proof(proof, &good, &other, &good);
  CHECK_INT(forged_initiator(&good, m1, sizeof m1, proof, &out), PM_ERR_AUTH);
  make_proof(proof, &good, &good, &good);
  CHECK_INT(forged_initiator(&thief, m1, sizeof m1, proof, &out), PM_ERR_AUTH);
  CHECK_INT(out.len, 0); /* no Reject for a forged identity */
  pm_buf_free(&out);
}

static void test_unexpected_records(void) {
  static const uint8_t hello[] = {1, 1, 0, 0, 0, 0}; /* a plaintext frame */
  static const uint8_t transport[] = {1, 3, 0, 0, 0, 16};
  side a, b;

  CHECK_INT(side_init(&b, 0, &default_opts), 0);
  CHECK_INT(feed(&b, transport, sizeof transport, 6), PM_ERR_UNEXPECTED);
  CHECK_INT(b.out.len, 0);
  side_free(&b);
  CHECK_INT(side_init(&b, 0, &default_opts), 0);
  CHECK_INT(feed(&b, hello, sizeof hello, 6), PM_ERR_UNEXPECTED);
  side_free(&b);
  CHECK_INT(side_init(&b, 0, &default_opts), 0);
  CHECK_INT(feed(&b, reject_auth, sizeof reject_auth, 7), PM_ERR_UNEXPECTED);
  side_free(&b);
  /* an initiator that has not started expects nothing */
  CHECK_INT(side_init(&a, 1, &default_opts), 0);
  CHECK_INT(feed(&a, reject_auth, sizeof reject_auth, 7), PM_ERR_UNEXPECTED);
  side_free(&a);

  /* a handshake message after the handshake */
  pair_establish(&a, &b);
  side c, d;
  pair_open(&c, &d, &default_opts, &default_opts);
  CHECK_INT(deliver(&c, &b, 1 << 20), PM_ERR_UNEXPECTED);
  side_free(&c);
  side_free(&d);
  side_free(&a);
  side_free(&b);
  /* a Reject once the responder proved the PSK with a transport record */
  pair_establish(&a, &b);
  CHECK_INT(pm_secure_send(&b.s, (const uint8_t *)"hi", 2, &b.out), 0);
  CHECK_INT(deliver(&b, &a, 1 << 20), 0);
  CHECK_INT(feed(&a, reject_auth, sizeof reject_auth, 7), PM_ERR_UNEXPECTED);
  side_free(&a);
  side_free(&b);
}

static void test_reject_payloads(void) {
  static const uint8_t long_reject[] = {1, 4, 0, 0, 0, 2, 2, 0};
  static const uint8_t odd_reason[] = {1, 4, 0, 0, 0, 1, 9};
  side a, b;
  pair_open(&a, &b, &default_opts, &default_opts);
  CHECK_INT(feed(&a, long_reject, sizeof long_reject, 1), PM_ERR_MALFORMED);
  side_free(&a);
  side_free(&b);
  pair_open(&a, &b, &default_opts, &default_opts);
  CHECK_INT(feed(&a, odd_reason, sizeof odd_reason, 1), PM_ERR_REFUSED);
  side_free(&a);
  side_free(&b);
  pair_open(&a, &b, &default_opts, &default_opts);
  CHECK_INT(feed(&a, reject_wrong_mesh, sizeof reject_wrong_mesh, 1),
            PM_ERR_WRONG_MESH);
  side_free(&a);
  side_free(&b);
}

static void test_nonce_exhaustion(void) {
  side a, b;
  pair_establish(&a, &b);
  pm_noise_cipher_set_nonce(&a.s.send, UINT64_MAX - 1);
  pm_noise_cipher_set_nonce(&b.s.recv, UINT64_MAX - 1);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"last", 4, &a.out), 0);
  CHECK_INT(deliver(&a, &b, 1 << 20), 0);
  CHECK_INT(b.plain.len, 4);
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"over", 4, &a.out),
            PM_ERR_NONCE);
  CHECK_INT(a.out.len, 0);
  CHECK_INT(pm_secure_error(&a.s), PM_ERR_NONCE);
  side_free(&a);
  side_free(&b);
  /* the receiving side refuses too */
  pair_establish(&a, &b);
  CHECK_INT(pm_secure_send(&b.s, (const uint8_t *)"x", 1, &b.out), 0);
  pm_noise_cipher_set_nonce(&a.s.recv, UINT64_MAX);
  CHECK_INT(deliver(&b, &a, 1 << 20), PM_ERR_NONCE);
  side_free(&a);
  side_free(&b);
}

static void test_errors_are_final(void) {
  side a, b;
  opts ob = default_opts;
  ob.tag_byte = 0x72;
  pair_open(&a, &b, &default_opts, &ob);
  CHECK_INT(deliver(&a, &b, 1 << 20), PM_ERR_WRONG_MESH);
  CHECK_INT(pm_secure_error(&b.s), PM_ERR_WRONG_MESH);
  CHECK_INT(pm_secure_send(&b.s, (const uint8_t *)"x", 1, &b.out),
            PM_ERR_WRONG_MESH);
  CHECK_INT(pm_secure_recv(&b.s, (const uint8_t *)"\x01", 1, &b.plain, &b.out),
            PM_ERR_WRONG_MESH);
  CHECK_INT(pm_secure_start(&b.s, &b.out), PM_ERR_WRONG_MESH);
  CHECK_INT(b.out.len, sizeof reject_wrong_mesh); /* one Reject, no more */
  CHECK(pm_secure_peer_key(&b.s) == NULL);
  CHECK_INT(b.count.live, 0); /* buffers released on failure */
  side_free(&a);
  side_free(&b);
}

static void test_out_of_memory(void) {
  side a, b;
  pair_open(&a, &b, &default_opts, &default_opts);
  b.count.fail = 1;
  CHECK_INT(deliver(&a, &b, 5), PM_ERR_NOMEM); /* a partial header to keep */
  side_free(&a);
  side_free(&b);
  CHECK_INT(side_init(&a, 1, &default_opts), 0);
  a.count.fail = 1;
  CHECK_INT(pm_secure_send(&a.s, (const uint8_t *)"x", 1, &a.out),
            PM_ERR_NOMEM);
  side_free(&a);
}

static void test_init_arguments(void) {
  ident id, other;
  uint8_t psk[32] = {0}, tag[16] = {0};
  uint64_t rng = 1;
  pm_secure s;
  ident_make(&id, 0x51);
  ident_make(&other, 0x52);
  pm_secure_config cfg = {.initiator = 1,
                          .psk = psk,
                          .ed25519_sk = id.sk,
                          .ed25519_pk = id.pk,
                          .mesh_tag = tag,
                          .random = rng_next,
                          .random_ud = &rng};
  CHECK_INT(pm_secure_init(NULL, &cfg), PM_ERR_INVAL);
  CHECK_INT(pm_secure_init(&s, NULL), PM_ERR_INVAL);
  cfg.random = NULL;
  CHECK_INT(pm_secure_init(&s, &cfg), PM_ERR_INVAL);
  cfg.random = rng_next;
  cfg.psk = NULL;
  CHECK_INT(pm_secure_init(&s, &cfg), PM_ERR_INVAL);
  cfg.psk = psk;
  cfg.ed25519_pk = other.pk; /* not the secret key's */
  CHECK_INT(pm_secure_init(&s, &cfg), PM_ERR_INVAL);
  CHECK(!pm_secure_established(&s));
  CHECK_INT(pm_secure_error(&s), 0);
  pm_secure_clear(&s);
  cfg.ed25519_pk = id.pk;
  CHECK_INT(pm_secure_init(&s, &cfg), 0);
  pm_buf out;
  pm_buf_init(&out, NULL);
  CHECK_INT(pm_secure_recv(&s, NULL, 1, &out, &out), PM_ERR_INVAL);
  CHECK_INT(pm_secure_send(&s, NULL, 1, &out), PM_ERR_INVAL);
  CHECK_INT(pm_secure_start(&s, NULL), PM_ERR_INVAL);
  CHECK_INT(pm_secure_error(&s), 0); /* argument errors are not final */
  pm_buf_free(&out);
  pm_secure_clear(&s);
  static const pm_secure zero;
  CHECK(memcmp(&s, &zero, sizeof s) == 0);
  pm_secure_clear(&s); /* twice is harmless */
  pm_secure_clear(NULL);
}

static void test_error_names(void) {
  CHECK_STR(pm_errname(PM_ERR_AUTH), "AUTH");
  CHECK_STR(pm_strerror(PM_ERR_AUTH), "authentication failed");
  CHECK_STR(pm_errname(PM_ERR_NONCE), "NONCE");
  CHECK_INT(PM_ERR_AUTH, -20);
  CHECK_INT(PM_ERR_WRONG_PASSWORD, -21);
  CHECK_INT(PM_ERR_NONCE, -22);
}

static void setup(void) {
  if (sodium_init() < 0)
    abort();
}

int main(void) {
  static const struct pm_test_case cases[] = {
      TEST_CASE(test_handshake),
      TEST_CASE(test_password_mesh_handshake),
      TEST_CASE(test_deterministic),
      TEST_CASE(test_chunked_conversation),
      TEST_CASE(test_both_ways),
      TEST_CASE(test_large_split),
      TEST_CASE(test_pending_before_established),
      TEST_CASE(test_pending_bound),
      TEST_CASE(test_empty_record),
      TEST_CASE(test_tamper),
      TEST_CASE(test_replay_and_reorder),
      TEST_CASE(test_tampered_msg2),
      TEST_CASE(test_wrong_psk),
      TEST_CASE(test_password_flag_differs),
      TEST_CASE(test_wrong_mesh),
      TEST_CASE(test_version),
      TEST_CASE(test_too_large),
      TEST_CASE(test_forged_responder_proof),
      TEST_CASE(test_forged_initiator_proof),
      TEST_CASE(test_unexpected_records),
      TEST_CASE(test_reject_payloads),
      TEST_CASE(test_nonce_exhaustion),
      TEST_CASE(test_errors_are_final),
      TEST_CASE(test_out_of_memory),
      TEST_CASE(test_init_arguments),
      TEST_CASE(test_error_names),
  };
  setup();
  return pm_test_run(cases, sizeof cases / sizeof cases[0]);
}
