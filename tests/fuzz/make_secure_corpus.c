/* Writes the seed corpus of fuzz_secure (tests/fuzz/README.md).
 *
 * The channel under test has fixed keys and randomness, so its handshake is
 * the same every run, and a recorded peer's bytes get a raw input past it.
 * The seeds are:
 *   - raw streams recorded from scripted runs: what the real peer sent in a
 *     whole handshake, then transport records, for both roles, with and
 *     without a password mesh, in several chunkings;
 *   - those streams cut, extended or corrupted: Rejects of every reason and
 *     size, records of other versions, types and lengths, a replayed record,
 *     a handshake record after the handshake;
 *   - handshake messages from a Noise peer driven by hand (noise.h), with
 *     payloads pm_secure never writes: another version, wrong sizes, another
 *     mesh tag or password flag, forged identity proofs, a low-order
 *     ephemeral key, an empty transport record;
 *   - scripts for a real peer: data both ways across the record size limit,
 *     each configuration mismatch, corruption, replay, injection, allocation
 *     failure and a full queue.
 * Each seed is run through the target as it is written, and must end as
 * named (established, or failed with the error given). Files are named
 * "seed-*"; running again rewrites them byte for byte:
 *
 *     ./build/tests/fuzz/make_secure_corpus tests/fuzz/corpus/secure
 *
 * It includes fuzz_secure.c, to share its keys, configurations and input
 * layout. */
#include "fuzz_secure.c"

#include <errno.h>
#include <sys/stat.h>

#define GEN_CHECK(cond)                                                        \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);               \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define EST 1 /* an expected end: established, no error */
#define HS_MSG_MAX 512

static const char *out_dir;
static unsigned seed_count;
static size_t seed_bytes;

static void head_of(uint8_t head[HEADER], uint8_t flags, uint8_t chunking,
                    uint8_t rate, uint8_t sizes, uint8_t b4) {
  head[0] = flags;
  head[1] = chunking;
  head[2] = rate;
  head[3] = sizes;
  head[4] = b4;
}

/* Writes seed-<name> and checks how the target ends on it: `want` is EST
 * or the error of the channel under test. */
static void emit(const char *name, const uint8_t head[HEADER],
                 const uint8_t *body, size_t len, int want) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_buf_put(&b, head, HEADER);
  pm_buf_put(&b, body, len);
  GEN_CHECK(b.err == 0);
  LLVMFuzzerTestOneInput(b.data, b.len);
  int got = fuzz_last.est ? EST : fuzz_last.err;
  if (got != want) {
    fprintf(stderr, "seed-%s ends with %d (%s), not %d (%s)\n", name, got,
            got == EST ? "established" : pm_errname(got), want,
            want == EST ? "established" : pm_errname(want));
    exit(1);
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/seed-%s", out_dir, name);
  FILE *f = fopen(path, "wb");
  GEN_CHECK(f != NULL);
  GEN_CHECK(fwrite(b.data, 1, b.len, f) == b.len);
  GEN_CHECK(fclose(f) == 0);
  seed_count++;
  seed_bytes += b.len;
  pm_buf_free(&b);
}

/* ---- scripts ------------------------------------------------------------- */

static void op(pm_buf *s, unsigned code) {
  pm_buf_u8(s, (uint8_t)code);
}

static void op16(pm_buf *s, unsigned code, unsigned n) {
  pm_buf_u8(s, (uint8_t)code);
  pm_buf_u16(s, (uint16_t)n);
}

static void op_xor(pm_buf *s, unsigned at, uint8_t v) {
  op16(s, OP_XOR, at);
  pm_buf_u8(s, v);
}

static void op_inject(pm_buf *s, int front, const uint8_t *p, size_t n) {
  pm_buf_u8(s, (uint8_t)(OP_INJECT | (front ? 0x08 : 0)));
  pm_buf_u8(s, (uint8_t)n);
  pm_buf_put(s, p, n);
}

/* Runs a scripted input and returns, in `stream`, the bytes it delivered to
 * the channel: a raw input with the same flags sees the same. */
static void capture(pm_buf *stream, uint8_t flags, const pm_buf *script) {
  uint8_t head[HEADER];
  head_of(head, flags | FLAG_PEER, 0, 0, 0, 0);
  pm_buf in;
  pm_buf_init(&in, NULL);
  pm_buf_put(&in, head, HEADER);
  pm_buf_put(&in, script->data, script->len);
  pm_buf_reset(stream);
  fuzz_capture = stream;
  LLVMFuzzerTestOneInput(in.data, in.len);
  fuzz_capture = NULL;
  GEN_CHECK(stream->err == 0 && in.err == 0);
  pm_buf_free(&in);
}

/* ---- records ------------------------------------------------------------- */

static void rec(pm_buf *b, uint8_t version, uint8_t type, uint32_t len,
                const uint8_t *payload, size_t n) {
  pm_buf_u8(b, version);
  pm_buf_u8(b, type);
  pm_buf_u32(b, len);
  pm_buf_put(b, payload, n);
}

static void rec1(pm_buf *b, uint8_t type, const uint8_t *payload, size_t n) {
  rec(b, PM_SECURE_VERSION, type, (uint32_t)n, payload, n);
}

/* The length of the first record in `p` (which holds one). */
static size_t rec_len(const uint8_t *p) {
  return PM_SECURE_HEADER + pm_load_u32(p + 2);
}

/* ---- a Noise peer driven by hand ----------------------------------------- */

typedef struct rawpeer {
  pm_noise_handshake hs;
  pm_noise_cipher send, recv;
  uint8_t x_pub[PM_NOISE_KEY_LEN]; /* its static key */
  uint64_t sent;                   /* pattern bytes sent */
} rawpeer;

/* The peer's identity and keys, ephemeral from `eph`; with `low_order` it
 * sends an all-zero ephemeral key instead of its own. */
static void raw_init(rawpeer *r, int initiator, uint8_t eph, int low_order) {
  const ident *id = identity(1);
  uint8_t x_sk[PM_NOISE_KEY_LEN], psk[PM_NOISE_KEY_LEN], e[PM_NOISE_KEY_LEN];
  memset(r, 0, sizeof *r);
  GEN_CHECK(crypto_sign_ed25519_sk_to_curve25519(x_sk, id->sk) == 0);
  GEN_CHECK(crypto_sign_ed25519_pk_to_curve25519(r->x_pub, id->pk) == 0);
  memset(psk, PSK_BYTE, sizeof psk);
  memset(e, eph, sizeof e);
  pm_noise_config nc = {
      .role = initiator ? PM_NOISE_INITIATOR : PM_NOISE_RESPONDER,
      .protocol = PM_SECURE_PROTOCOL,
      .prologue = (const uint8_t *)PM_SECURE_PROLOGUE,
      .prologue_len = sizeof PM_SECURE_PROLOGUE - 1,
      .local_static = x_sk,
      .psks = (const uint8_t(*)[PM_NOISE_KEY_LEN])psk,
      .psk_count = 1,
  };
  GEN_CHECK(pm_noise_handshake_init(&r->hs, &nc) == 0);
  GEN_CHECK(pm_noise_handshake_set_ephemeral(&r->hs, e) == 0);
  if (low_order)
    memset(r->hs.e_pub, 0, sizeof r->hs.e_pub);
}

static void raw_write(rawpeer *r, const uint8_t *payload, size_t n,
                      pm_buf *out) {
  uint8_t msg[HS_MSG_MAX];
  size_t got = 0;
  GEN_CHECK(
      pm_noise_handshake_write(&r->hs, payload, n, msg, sizeof msg, &got) == 0);
  rec1(out, PM_SECURE_REC_HANDSHAKE, msg, got);
  if (pm_noise_handshake_is_complete(&r->hs))
    GEN_CHECK(pm_noise_handshake_split(&r->hs, &r->send, &r->recv) == 0);
}

/* Reads the handshake record at the start of `p`. */
static void raw_read(rawpeer *r, const uint8_t *p, size_t len) {
  uint8_t payload[HS_MSG_MAX];
  size_t got = 0;
  GEN_CHECK(len >= PM_SECURE_HEADER && p[1] == PM_SECURE_REC_HANDSHAKE);
  GEN_CHECK(pm_noise_handshake_read(&r->hs, p + PM_SECURE_HEADER,
                                    rec_len(p) - PM_SECURE_HEADER, payload,
                                    sizeof payload, &got) == 0);
  if (pm_noise_handshake_is_complete(&r->hs))
    GEN_CHECK(pm_noise_handshake_split(&r->hs, &r->send, &r->recv) == 0);
}

/* A transport record of the next `n` pattern bytes. */
static void raw_transport(rawpeer *r, size_t n, pm_buf *out) {
  uint8_t h[PM_SECURE_HEADER], plain[1024], ct[1024 + PM_NOISE_TAG_LEN];
  size_t got = 0;
  GEN_CHECK(n <= sizeof plain);
  for (size_t i = 0; i < n; i++)
    plain[i] = pattern(DIR_TO_TARGET, r->sent + i);
  h[0] = PM_SECURE_VERSION;
  h[1] = PM_SECURE_REC_TRANSPORT;
  pm_store_u32(h + 2, (uint32_t)(n + PM_NOISE_TAG_LEN));
  GEN_CHECK(pm_noise_cipher_encrypt(&r->send, h, sizeof h, plain, n, ct,
                                    sizeof ct, &got) == 0);
  pm_buf_put(out, h, sizeof h);
  pm_buf_put(out, ct, got);
  r->sent += n;
}

/* An identity proof: `claimed`'s key, signed by `signer` over `x_pub`. */
static void make_proof(uint8_t proof[PM_SECURE_KEY_LEN + crypto_sign_BYTES],
                       const ident *claimed, const ident *signer,
                       const uint8_t x_pub[PM_NOISE_KEY_LEN]) {
  uint8_t m[sizeof PM_SECURE_PROOF_DOMAIN - 1 + PM_NOISE_KEY_LEN];
  memcpy(m, PM_SECURE_PROOF_DOMAIN, sizeof PM_SECURE_PROOF_DOMAIN - 1);
  memcpy(m + sizeof PM_SECURE_PROOF_DOMAIN - 1, x_pub, PM_NOISE_KEY_LEN);
  memcpy(proof, claimed->pk, PM_SECURE_KEY_LEN);
  crypto_sign_detached(proof + PM_SECURE_KEY_LEN, NULL, m, sizeof m,
                       signer->sk);
}

/* The channel under test, as the target builds it (non-password mesh). */
static void target_init(pm_secure *s, int initiator) {
  pm_secure_config cfg;
  conf_bytes b;
  make_config(&cfg, &b, 0, initiator, 0, MISMATCH_NONE);
  GEN_CHECK(pm_secure_init(s, &cfg) == 0);
}

/* What a hand-driven initiator sends a responder under test: msg1 with
 * payload `p1`; if the responder answers, msg3 with `p3` (unless NULL); then
 * transport records of `t1` and `t2` bytes (0: none). */
static void to_responder(pm_buf *stream, const uint8_t *p1, size_t n1,
                         int low_order, const uint8_t *p3, size_t n3, size_t t1,
                         size_t t2) {
  pm_secure t;
  rawpeer r;
  pm_buf out, plain;
  pm_buf_init(&out, NULL);
  pm_buf_init(&plain, NULL);
  target_init(&t, 0);
  raw_init(&r, 1, 0x33, low_order);
  pm_buf_reset(stream);
  raw_write(&r, p1, n1, stream);
  if (pm_secure_recv(&t, stream->data, stream->len, &plain, &out) == 0 && p3) {
    raw_read(&r, out.data, out.len);
    size_t at = stream->len;
    raw_write(&r, p3, n3, stream);
    GEN_CHECK(pm_secure_recv(&t, stream->data + at, stream->len - at, &plain,
                             &out) == 0 ||
              !(t1 || t2));
    if (t1)
      raw_transport(&r, t1 - 1, stream);
    if (t2)
      raw_transport(&r, t2 - 1, stream);
  }
  pm_secure_clear(&t);
  pm_noise_handshake_clear(&r.hs);
  pm_buf_free(&out);
  pm_buf_free(&plain);
}

/* What a hand-driven responder sends an initiator under test: msg2 with
 * payload `p2`; then, if the initiator answers, transport records of `t1`
 * and `t2` bytes (0: none; 1: empty). */
static void to_initiator(pm_buf *stream, const uint8_t *p2, size_t n2,
                         int low_order, size_t t1, size_t t2) {
  pm_secure t;
  rawpeer r;
  pm_buf out, plain;
  pm_buf_init(&out, NULL);
  pm_buf_init(&plain, NULL);
  target_init(&t, 1);
  raw_init(&r, 0, 0x44, low_order);
  GEN_CHECK(pm_secure_start(&t, &out) == 0);
  raw_read(&r, out.data, out.len);
  pm_buf_reset(&out);
  pm_buf_reset(stream);
  raw_write(&r, p2, n2, stream);
  if (pm_secure_recv(&t, stream->data, stream->len, &plain, &out) == 0 &&
      (t1 || t2)) {
    raw_read(&r, out.data, out.len);
    if (t1)
      raw_transport(&r, t1 - 1, stream);
    if (t2)
      raw_transport(&r, t2 - 1, stream);
  }
  pm_secure_clear(&t);
  pm_noise_handshake_clear(&r.hs);
  pm_buf_free(&out);
  pm_buf_free(&plain);
}

/* ---- the seeds ----------------------------------------------------------- */

static void raw_seed(const char *name, uint8_t flags, uint8_t chunking,
                     const pm_buf *stream, int want) {
  uint8_t head[HEADER];
  head_of(head, flags, chunking, 0, 0, 0);
  emit(name, head, stream->data, stream->len, want);
}

/* `stream` then one record. */
static void raw_seed_plus(const char *name, uint8_t flags, const pm_buf *stream,
                          uint8_t version, uint8_t type, uint32_t len,
                          const uint8_t *payload, size_t n, int want) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_buf_put(&b, stream->data, stream->len);
  rec(&b, version, type, len, payload, n);
  raw_seed(name, flags, 0, &b, want);
  pm_buf_free(&b);
}

static void recorded_seeds(void) {
  pm_buf s, st;
  pm_buf_init(&s, NULL);
  pm_buf_init(&st, NULL);

  /* Responder under test: the initiator's msg1 and msg3, then data. */
  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  capture(&st, 0, &s);
  raw_seed("resp-handshake", 0, 0, &st, EST);
  raw_seed("resp-handshake-bytes", 0, 0x40, &st, EST);
  pm_buf hs_resp;
  pm_buf_init(&hs_resp, NULL);
  pm_buf_put(&hs_resp, st.data, st.len);

  pm_buf_reset(&s);
  op16(&s, OP_PEER_SEND, 40); /* queued by the peer until msg3 */
  op(&s, OP_FLUSH);
  op16(&s, OP_PEER_SEND, 1);
  op16(&s, OP_PEER_SEND, 3000);
  op(&s, OP_FLUSH);
  capture(&st, 0, &s);
  raw_seed("resp-data", 0, 0, &st, EST);
  raw_seed("resp-data-chunks", 0, 0x05, &st, EST);
  raw_seed("resp-data-chunks-large", 0, 0x3f, &st, EST);
  pm_buf data_resp;
  pm_buf_init(&data_resp, NULL);
  pm_buf_put(&data_resp, st.data, st.len);

  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  op16(&s, OP_PEER_SEND, 100);
  op(&s, OP_FLUSH);
  capture(&st, FLAG_PASSWORD, &s);
  raw_seed("resp-password", FLAG_PASSWORD, 0x02, &st, EST);
  raw_seed("resp-password-flag-differs", 0, 0, &st, PM_ERR_WRONG_PASSWORD);

  /* Initiator under test: the responder's msg2, then data. */
  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  capture(&st, FLAG_INITIATOR, &s);
  raw_seed("init-handshake", FLAG_INITIATOR, 0, &st, EST);
  pm_buf hs_init;
  pm_buf_init(&hs_init, NULL);
  pm_buf_put(&hs_init, st.data, st.len);

  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  op16(&s, OP_PEER_SEND, 700);
  op16(&s, OP_PEER_SEND, 2);
  op(&s, OP_FLUSH);
  capture(&st, FLAG_INITIATOR, &s);
  raw_seed("init-data", FLAG_INITIATOR, 0, &st, EST);
  raw_seed("init-data-bytes", FLAG_INITIATOR, 0x40, &st, EST);
  raw_seed("init-data-chunks", FLAG_INITIATOR, 0x83, &st, EST);
  pm_buf data_init;
  pm_buf_init(&data_init, NULL);
  pm_buf_put(&data_init, st.data, st.len);

  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  capture(&st, FLAG_INITIATOR | FLAG_PASSWORD, &s);
  raw_seed("init-password", FLAG_INITIATOR | FLAG_PASSWORD, 0, &st, EST);

  /* Sends around the input, a late start, a second start. */
  uint8_t head[HEADER];
  head_of(head, FLAG_EARLY_SEND | FLAG_LATE_SEND | FLAG_RESTART, 0x07, 0, 0xc5,
          0);
  emit("resp-sends-restart", head, data_resp.data, data_resp.len, EST);
  head_of(head, FLAG_INITIATOR | FLAG_EARLY_SEND | FLAG_LATE_SEND, 0, 0, 0xfd,
          0);
  emit("init-sends-65536-then-2-records", head, data_init.data, data_init.len,
       EST);
  /* 4 bytes of msg2 before msg1 was sent: judged after it, fine; 8 bytes:
   * a whole header while nothing was sent, refused. */
  head_of(head, FLAG_INITIATOR | FLAG_LATE_START | FLAG_RESTART, 0x01, 0, 0,
          1 << 2);
  emit("init-late-start", head, hs_init.data, hs_init.len, EST);
  head_of(head, FLAG_INITIATOR | FLAG_LATE_START, 0, 0, 0, 2 << 2);
  emit("init-before-start", head, hs_init.data, hs_init.len, PM_ERR_UNEXPECTED);
  head_of(head, FLAG_INITIATOR | FLAG_LATE_START | FLAG_RESTART, 0x01, 0, 0, 0);
  emit("init-restart", head, hs_init.data, hs_init.len, EST);
  head_of(head, FLAG_LATE_START | FLAG_RESTART, 0, 0, 0, 5 << 2);
  emit("resp-late-start", head, hs_resp.data, hs_resp.len, EST);
  head_of(head, FLAG_EARLY_SEND, 0, 0, 0x0e, 0);
  emit("resp-queue-full", head, hs_resp.data, hs_resp.len, PM_ERR_FULL);
  head_of(head, FLAG_ALLOC_FAIL | FLAG_EARLY_SEND, 0x04, 0x40, 0x08, 0);
  emit("resp-alloc-fail", head, data_resp.data, data_resp.len, PM_ERR_NOMEM);
  head_of(head, FLAG_ALLOC_FAIL | FLAG_INITIATOR, 0, 0x80, 0, 0);
  emit("init-alloc-fail", head, data_init.data, data_init.len, PM_ERR_NOMEM);

  /* Rejects to the initiator: every reason, wrong sizes, and one after the
   * responder's first transport record. */
  static const struct {
    const char *name;
    uint8_t reason;
    int err;
  } rejects[] = {
      {"init-reject-mesh", PM_SECURE_REJECT_WRONG_MESH, PM_ERR_WRONG_MESH},
      {"init-reject-auth", PM_SECURE_REJECT_AUTH, PM_ERR_WRONG_PASSWORD},
      {"init-reject-version", PM_SECURE_REJECT_VERSION, PM_ERR_VERSION},
      {"init-reject-unknown", 0xff, PM_ERR_REFUSED},
      {"init-reject-0", 0, PM_ERR_REFUSED},
  };
  pm_buf none;
  pm_buf_init(&none, NULL);
  for (size_t i = 0; i < sizeof rejects / sizeof rejects[0]; i++)
    raw_seed_plus(rejects[i].name, FLAG_INITIATOR, &none, 1,
                  PM_SECURE_REC_REJECT, 1, &rejects[i].reason, 1,
                  rejects[i].err);
  static const uint8_t two[2] = {2, 2};
  raw_seed_plus("init-established-reject", FLAG_INITIATOR, &hs_init, 1,
                PM_SECURE_REC_REJECT, 1, two, 1, PM_ERR_WRONG_PASSWORD);
  raw_seed_plus("init-reject-empty", FLAG_INITIATOR, &none, 1,
                PM_SECURE_REC_REJECT, 0, NULL, 0, PM_ERR_MALFORMED);
  raw_seed_plus("init-reject-long", FLAG_INITIATOR, &none, 1,
                PM_SECURE_REC_REJECT, 2, two, 2, PM_ERR_MALFORMED);
  raw_seed_plus("init-reject-after-data", FLAG_INITIATOR, &data_init, 1,
                PM_SECURE_REC_REJECT, 1, two, 1, PM_ERR_UNEXPECTED);
  raw_seed_plus("resp-reject", 0, &none, 1, PM_SECURE_REC_REJECT, 1, two, 1,
                PM_ERR_UNEXPECTED);

  /* Headers refused before anything is buffered. */
  raw_seed_plus("resp-version0", 0, &none, 0, PM_SECURE_REC_HANDSHAKE, 0, NULL,
                0, PM_ERR_VERSION);
  raw_seed_plus("resp-version2", 0, &none, 2, PM_SECURE_REC_HANDSHAKE, 66, NULL,
                0, PM_ERR_VERSION);
  raw_seed_plus("resp-len-65535", 0, &none, 1, PM_SECURE_REC_HANDSHAKE, 65535,
                NULL, 0, 0);
  raw_seed_plus("resp-len-65536", 0, &none, 1, PM_SECURE_REC_HANDSHAKE, 65536,
                NULL, 0, PM_ERR_FRAME_TOO_LARGE);
  raw_seed_plus("resp-len-4gib", 0, &none, 1, PM_SECURE_REC_HANDSHAKE,
                0xffffffffu, NULL, 0, PM_ERR_FRAME_TOO_LARGE);
  raw_seed_plus("resp-transport-first", 0, &none, 1, PM_SECURE_REC_TRANSPORT,
                16, NULL, 0, PM_ERR_UNEXPECTED);
  raw_seed_plus("resp-frame-type", 0, &none, 1, 0x01, 0, NULL, 0,
                PM_ERR_UNEXPECTED);
  raw_seed_plus("resp-type-5", 0, &none, 1, 0x05, 0, NULL, 0,
                PM_ERR_UNEXPECTED);
  raw_seed_plus("resp-handshake-empty", 0, &none, 1, PM_SECURE_REC_HANDSHAKE, 0,
                NULL, 0, PM_ERR_MALFORMED);
  static const uint8_t partial[3] = {1, 2, 0};
  pm_buf_reset(&st);
  pm_buf_put(&st, partial, sizeof partial);
  raw_seed("resp-partial-header", 0, 0, &st, 0);

  /* After the handshake. */
  uint8_t junk[300];
  memset(junk, 0xa5, sizeof junk);
  raw_seed_plus("resp-handshake-again", 0, &hs_resp, 1, PM_SECURE_REC_HANDSHAKE,
                160, junk, 160, PM_ERR_UNEXPECTED);
  raw_seed_plus("init-handshake-again", FLAG_INITIATOR, &hs_init, 1,
                PM_SECURE_REC_HANDSHAKE, 192, junk, 192, PM_ERR_UNEXPECTED);
  raw_seed_plus("resp-transport-short", 0, &hs_resp, 1, PM_SECURE_REC_TRANSPORT,
                15, junk, 15, PM_ERR_AUTH);
  raw_seed_plus("resp-transport-forged", 0, &hs_resp, 1,
                PM_SECURE_REC_TRANSPORT, 300, junk, 300, PM_ERR_AUTH);
  raw_seed_plus("resp-version-after", 0, &hs_resp, 3, PM_SECURE_REC_TRANSPORT,
                16, junk, 16, PM_ERR_VERSION);
  /* The last transport record again: a replay. */
  size_t off = hs_resp.len, last = off;
  while (off < data_resp.len) {
    last = off;
    off += rec_len(data_resp.data + off);
  }
  pm_buf_reset(&st);
  pm_buf_put(&st, data_resp.data, data_resp.len);
  pm_buf_put(&st, data_resp.data + last, data_resp.len - last);
  raw_seed("resp-replay", 0, 0, &st, PM_ERR_AUTH);
  /* A tag bit flipped in the first transport record. */
  pm_buf_reset(&st);
  pm_buf_put(&st, data_init.data, data_init.len);
  st.data[hs_init.len + PM_SECURE_HEADER + 3] ^= 0x10;
  raw_seed("init-transport-flipped", FLAG_INITIATOR, 0x02, &st, PM_ERR_AUTH);
  /* Corrupted handshakes. */
  pm_buf_reset(&st);
  pm_buf_put(&st, hs_resp.data, hs_resp.len);
  st.data[PM_SECURE_HEADER + 40] ^= 1; /* msg1's encrypted payload */
  raw_seed("resp-msg1-flipped", 0, 0, &st, PM_ERR_AUTH);
  pm_buf_reset(&st);
  pm_buf_put(&st, hs_resp.data, hs_resp.len);
  st.data[st.len - 1] ^= 1; /* msg3's last tag byte */
  raw_seed("resp-msg3-flipped", 0, 0, &st, PM_ERR_WRONG_PASSWORD);
  pm_buf_reset(&st);
  pm_buf_put(&st, hs_init.data, hs_init.len);
  st.data[PM_SECURE_HEADER + 50] ^= 1; /* msg2's static key */
  raw_seed("init-msg2-flipped", FLAG_INITIATOR, 0, &st, PM_ERR_AUTH);

  pm_buf_free(&none);
  pm_buf_free(&hs_resp);
  pm_buf_free(&data_resp);
  pm_buf_free(&hs_init);
  pm_buf_free(&data_init);
  pm_buf_free(&s);
  pm_buf_free(&st);
}

static void handmade_seeds(void) {
  pm_buf st;
  pm_buf_init(&st, NULL);
  const ident *peer = identity(1), *self = identity(0);
  uint8_t m1[PM_SECURE_MESH_TAG_LEN + 2], big[300];
  m1[0] = PM_SECURE_VERSION;
  memset(m1 + 1, TAG_BYTE, PM_SECURE_MESH_TAG_LEN);
  m1[sizeof m1 - 1] = 0;
  memset(big, 0, sizeof big);
  big[0] = PM_SECURE_VERSION;
  uint8_t good[PM_SECURE_KEY_LEN + crypto_sign_BYTES], bad[sizeof good];
  uint8_t x_peer[PM_NOISE_KEY_LEN];
  GEN_CHECK(crypto_sign_ed25519_pk_to_curve25519(x_peer, peer->pk) == 0);
  make_proof(good, peer, peer, x_peer);

  /* msg1 payloads to the responder. */
  to_responder(&st, m1, sizeof m1, 0, good, sizeof good, 1, 20);
  raw_seed("hand-resp-empty-transport", 0, 0, &st, EST);
  uint8_t v[sizeof m1];
  memcpy(v, m1, sizeof v);
  v[0] = 2;
  to_responder(&st, v, sizeof v, 0, NULL, 0, 0, 0);
  raw_seed("hand-msg1-version2", 0, 0, &st, PM_ERR_VERSION);
  to_responder(&st, v, 1, 0, NULL, 0, 0, 0);
  raw_seed("hand-msg1-version2-short", 0, 0, &st, PM_ERR_VERSION);
  to_responder(&st, m1, 0, 0, NULL, 0, 0, 0);
  raw_seed("hand-msg1-empty", 0, 0, &st, PM_ERR_MALFORMED);
  to_responder(&st, m1, sizeof m1 - 1, 0, NULL, 0, 0, 0);
  raw_seed("hand-msg1-short", 0, 0, &st, PM_ERR_MALFORMED);
  to_responder(&st, big, sizeof m1 + 1, 0, NULL, 0, 0, 0);
  raw_seed("hand-msg1-long", 0, 0, &st, PM_ERR_MALFORMED);
  to_responder(&st, big, sizeof big, 0, NULL, 0, 0, 0);
  raw_seed("hand-msg1-300", 0, 0, &st, PM_ERR_MALFORMED);
  memcpy(v, m1, sizeof v);
  v[5] ^= 1;
  to_responder(&st, v, sizeof v, 0, NULL, 0, 0, 0);
  raw_seed("hand-msg1-other-mesh", 0, 0, &st, PM_ERR_WRONG_MESH);
  memcpy(v, m1, sizeof v);
  v[sizeof v - 1] = PM_SECURE_FLAG_PASSWORD;
  to_responder(&st, v, sizeof v, 0, NULL, 0, 0, 0);
  raw_seed("hand-msg1-password", 0, 0, &st, PM_ERR_WRONG_PASSWORD);
  v[sizeof v - 1] = 0xfe; /* other bits are ignored */
  to_responder(&st, v, sizeof v, 0, good, sizeof good, 0, 0);
  raw_seed("hand-msg1-other-flags", 0, 0, &st, EST);
  to_responder(&st, m1, sizeof m1, 1, NULL, 0, 0, 0);
  raw_seed("hand-msg1-low-order-e", 0, 0, &st, PM_ERR_AUTH);

  /* msg3 proofs to the responder. */
  memcpy(bad, good, sizeof bad);
  bad[sizeof bad - 1] ^= 1;
  to_responder(&st, m1, sizeof m1, 0, bad, sizeof bad, 0, 0);
  raw_seed("hand-msg3-bad-signature", 0, 0, &st, PM_ERR_AUTH);
  make_proof(bad, self, self, x_peer); /* another identity's key */
  to_responder(&st, m1, sizeof m1, 0, bad, sizeof bad, 0, 0);
  raw_seed("hand-msg3-other-key", 0, 0, &st, PM_ERR_AUTH);
  make_proof(bad, peer, self, x_peer); /* signed by another */
  to_responder(&st, m1, sizeof m1, 0, bad, sizeof bad, 0, 0);
  raw_seed("hand-msg3-other-signer", 0, 0, &st, PM_ERR_AUTH);
  to_responder(&st, m1, sizeof m1, 0, good, sizeof good - 1, 0, 0);
  raw_seed("hand-msg3-short", 0, 0, &st, PM_ERR_MALFORMED);
  to_responder(&st, m1, sizeof m1, 0, big, sizeof good + 1, 0, 0);
  raw_seed("hand-msg3-long", 0, 0, &st, PM_ERR_MALFORMED);
  to_responder(&st, m1, sizeof m1, 0, good, 0, 0, 0);
  raw_seed("hand-msg3-empty", 0, 0, &st, PM_ERR_MALFORMED);

  /* msg2 proofs to the initiator. */
  to_initiator(&st, good, sizeof good, 0, 1, 9);
  raw_seed("hand-init-empty-transport", FLAG_INITIATOR, 0, &st, EST);
  memcpy(bad, good, sizeof bad);
  bad[40] ^= 1;
  to_initiator(&st, bad, sizeof bad, 0, 0, 0);
  raw_seed("hand-msg2-bad-signature", FLAG_INITIATOR, 0, &st, PM_ERR_AUTH);
  make_proof(bad, self, self, x_peer);
  to_initiator(&st, bad, sizeof bad, 0, 0, 0);
  raw_seed("hand-msg2-other-key", FLAG_INITIATOR, 0, &st, PM_ERR_AUTH);
  to_initiator(&st, good, sizeof good + 1, 0, 0, 0);
  raw_seed("hand-msg2-long", FLAG_INITIATOR, 0, &st, PM_ERR_MALFORMED);
  to_initiator(&st, big, sizeof big, 0, 0, 0);
  raw_seed("hand-msg2-300", FLAG_INITIATOR, 0, &st, PM_ERR_MALFORMED);
  to_initiator(&st, good, sizeof good, 1, 0, 0);
  raw_seed("hand-msg2-low-order-e", FLAG_INITIATOR, 0, &st, PM_ERR_AUTH);
  /* msg2 cut short inside its static key: too short for the pattern. */
  to_initiator(&st, good, sizeof good, 0, 0, 0);
  pm_store_u32(st.data + 2, 40);
  st.len = PM_SECURE_HEADER + 40;
  raw_seed("hand-msg2-truncated", FLAG_INITIATOR, 0, &st, PM_ERR_MALFORMED);
  pm_buf_free(&st);
}

static void script_seed(const char *name, uint8_t flags, uint8_t chunking,
                        uint8_t rate, uint8_t b4, const pm_buf *script,
                        int want) {
  uint8_t head[HEADER];
  head_of(head, flags | FLAG_PEER, chunking, rate, 0, b4);
  emit(name, head, script->data, script->len, want);
}

static void script_seeds(void) {
  pm_buf s;
  pm_buf_init(&s, NULL);
  pm_buf_reset(&s);
  script_seed("peer-resp", 0, 0, 0, 0, &s, EST);
  script_seed("peer-init", FLAG_INITIATOR, 0, 0, 0, &s, EST);

  /* Data both ways, across the largest record, in small deliveries. */
  pm_buf_reset(&s);
  op16(&s, OP_TARGET_SEND, 1000);
  op16(&s, OP_PEER_SEND, 65535);
  op16(&s, OP_DELIVER, 7);
  op16(&s, OP_DELIVER, 100);
  op(&s, OP_FLUSH);
  op16(&s, OP_TARGET_SEND, 65535);
  op16(&s, OP_PEER_SEND, 65520);
  op16(&s, OP_DELIVER, 65000);
  op(&s, OP_FLUSH);
  script_seed("peer-resp-data", 0, 0x1f, 0, 0, &s, EST);
  script_seed("peer-init-data", FLAG_INITIATOR, 0x3f, 0, 0, &s, EST);
  script_seed("peer-init-password-data", FLAG_INITIATOR | FLAG_PASSWORD, 0, 0,
              0, &s, EST);

  /* Mismatched peers: each side learns why. */
  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  static const char *const mm[4] = {NULL, "psk", "mesh", "password"};
  for (int m = 1; m < 4; m++) {
    char name[64];
    int err = m == MISMATCH_MESH ? PM_ERR_WRONG_MESH : PM_ERR_WRONG_PASSWORD;
    snprintf(name, sizeof name, "peer-resp-other-%s", mm[m]);
    script_seed(name, 0, 0, 0, (uint8_t)m, &s, err);
    snprintf(name, sizeof name, "peer-init-other-%s", mm[m]);
    script_seed(name, FLAG_INITIATOR | FLAG_EARLY_SEND, 0, 0, (uint8_t)m, &s,
                err);
  }

  /* Corruption of the peer's bytes. */
  pm_buf_reset(&s);
  op_xor(&s, 1, 0x01); /* msg1's type */
  script_seed("peer-xor-type", 0, 0, 0, 0, &s, PM_ERR_UNEXPECTED);
  pm_buf_reset(&s);
  op_xor(&s, 0, 0x03); /* msg1's version */
  script_seed("peer-xor-version", 0, 0, 0, 0, &s, PM_ERR_VERSION);
  pm_buf_reset(&s);
  op_xor(&s, 2, 0x01); /* msg1's length */
  script_seed("peer-xor-length", 0, 0, 0, 0, &s, PM_ERR_FRAME_TOO_LARGE);
  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  op16(&s, OP_PEER_SEND, 50);
  op_xor(&s, 30, 0x80);
  script_seed("peer-init-xor-transport", FLAG_INITIATOR, 0, 0, 0, &s,
              PM_ERR_AUTH);
  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  op16(&s, OP_PEER_SEND, 50);
  op16(&s, OP_DUP, 72);
  script_seed("peer-replay", 0, 0, 0, 0, &s, PM_ERR_AUTH);
  pm_buf_reset(&s);
  op(&s, OP_FLUSH);
  op16(&s, OP_PEER_SEND, 10);
  op16(&s, OP_PEER_SEND, 10);
  op16(&s, OP_DROP, 32);
  script_seed("peer-init-drop", FLAG_INITIATOR, 0, 0, 0, &s, PM_ERR_AUTH);
  pm_buf_reset(&s);
  static const uint8_t reject2[7] = {1, PM_SECURE_REC_REJECT, 0, 0, 0, 1, 2};
  op_inject(&s, 0, reject2, sizeof reject2); /* after msg2 */
  script_seed("peer-init-inject-reject", FLAG_INITIATOR, 0, 0, 0, &s,
              PM_ERR_WRONG_PASSWORD);
  pm_buf_reset(&s);
  /* A partial header in front of msg1: with msg1's first bytes it announces
   * 66048 bytes. */
  op_inject(&s, 1, reject2, 3);
  op(&s, OP_FLUSH);
  script_seed("peer-inject-front", 0, 0x40, 0, 0, &s, PM_ERR_FRAME_TOO_LARGE);

  /* Resources: a full queue, failing allocations, a late start. */
  pm_buf_reset(&s);
  op16(&s, OP_TARGET_SEND, 65535);
  op16(&s, OP_TARGET_SEND, 2);
  script_seed("peer-init-queue-full", FLAG_INITIATOR, 0, 0, 0, &s, PM_ERR_FULL);
  pm_buf_reset(&s);
  op16(&s, OP_TARGET_SEND, 3000);
  op(&s, OP_FLUSH);
  op16(&s, OP_PEER_SEND, 6000);
  op16(&s, OP_DELIVER, 3000);
  op(&s, OP_FLUSH);
  script_seed("peer-alloc-fail", FLAG_ALLOC_FAIL, 0x09, 0x60, 0, &s,
              PM_ERR_NOMEM);
  pm_buf_reset(&s);
  op16(&s, OP_PEER_SEND, 10);
  op16(&s, OP_TARGET_SEND, 10);
  op(&s, OP_FLUSH);
  script_seed("peer-init-late-start", FLAG_INITIATOR | FLAG_LATE_START, 0, 0,
              2 << 2, &s, EST);
  pm_buf_free(&s);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  out_dir = argv[1];
  if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
    perror(out_dir);
    return 2;
  }
  recorded_seeds();
  handmade_seeds();
  script_seeds();
  printf("%s: %u seeds, %zu bytes\n", out_dir, seed_count, seed_bytes);
  return 0;
}
