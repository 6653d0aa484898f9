/* pm_secure: the per-link secure channel. See secure.h for the records and
 * the handshake; this file is the state machine around noise.h. */
#include "secure.h"

#include <sodium.h>
#include <string.h>

enum state {
  ST_INIT_START = 1, /* initiator, msg1 not written yet */
  ST_INIT_MSG2,      /* initiator, waiting for msg2 */
  ST_RESP_MSG1,      /* responder, waiting for msg1 */
  ST_RESP_MSG3,      /* responder, waiting for msg3 */
  ST_ESTABLISHED,
  ST_FAILED
};

#define MSG1_PAYLOAD (1 + PM_SECURE_MESH_TAG_LEN + 1)
#define PROOF_LEN (PM_SECURE_KEY_LEN + crypto_sign_BYTES)
#define DOMAIN_LEN (sizeof PM_SECURE_PROOF_DOMAIN - 1)
/* Room for a handshake payload: larger ones are malformed anyway, but the
 * version byte of a longer msg1 must still be readable. */
#define HS_PAYLOAD_CAP 256
/* The receive buffer's first size, and the most it keeps between records. */
#define IN_MIN 256
#define IN_KEEP 4096

/* ---- records ------------------------------------------------------------- */

static void put_header(uint8_t *h, uint8_t type, size_t len) {
  h[0] = PM_SECURE_VERSION;
  h[1] = type;
  pm_store_u32(h + 2, (uint32_t)len);
}

/* Appends a plaintext record. */
static int write_plain(pm_buf *out, uint8_t type, const uint8_t *payload,
                       size_t len) {
  uint8_t h[PM_SECURE_HEADER];
  put_header(h, type, len);
  pm_buf_put(out, h, sizeof h);
  pm_buf_put(out, payload, len);
  return out->err;
}

/* Appends the next Noise handshake message, carrying `payload`. */
static int write_handshake(pm_secure *s, const uint8_t *payload, size_t len,
                           pm_buf *out) {
  size_t n = len + pm_noise_handshake_overhead(&s->hs), got = 0;
  int r = pm_buf_reserve(out, PM_SECURE_HEADER + n);
  if (r)
    return r;
  uint8_t *h = out->data + out->len;
  r = pm_noise_handshake_write(&s->hs, payload, len, h + PM_SECURE_HEADER, n,
                               &got);
  if (r) /* a DH with the peer's ephemeral key gave zero: a bad key */
    return r == PM_NOISE_ERR_DECRYPT ? PM_ERR_AUTH : r;
  put_header(h, PM_SECURE_REC_HANDSHAKE, got);
  out->len += PM_SECURE_HEADER + got;
  return 0;
}

/* Appends one transport record of len <= PM_SECURE_MAX_PLAIN bytes; the
 * associated data is its header. */
static int write_transport(pm_secure *s, const uint8_t *plain, size_t len,
                           pm_buf *out) {
  size_t n = len + PM_NOISE_TAG_LEN, got = 0;
  int r = pm_buf_reserve(out, PM_SECURE_HEADER + n);
  if (r)
    return r;
  uint8_t *h = out->data + out->len;
  put_header(h, PM_SECURE_REC_TRANSPORT, n);
  r = pm_noise_cipher_encrypt(&s->send, h, PM_SECURE_HEADER, plain, len,
                              h + PM_SECURE_HEADER, n, &got);
  if (r)
    return r == PM_NOISE_ERR_NONCE ? PM_ERR_NONCE : r;
  out->len += PM_SECURE_HEADER + got;
  return 0;
}

/* Splits `plain` into full records and a last, shorter one. */
static int write_all(pm_secure *s, const uint8_t *plain, size_t len,
                     pm_buf *out) {
  while (len > 0) {
    size_t n = len < PM_SECURE_MAX_PLAIN ? len : PM_SECURE_MAX_PLAIN;
    int r = write_transport(s, plain, n, out);
    if (r)
      return r;
    plain += n;
    len -= n;
  }
  return 0;
}

/* ---- secrets and failure ------------------------------------------------ */

static void wipe_buf(pm_buf *b) {
  if (b->data)
    sodium_memzero(b->data, b->cap);
  pm_buf_free(b);
}

/* Wipes the keys and releases the buffers (which may hold plaintext). */
static void wipe_secrets(pm_secure *s) {
  pm_noise_handshake_clear(&s->hs);
  pm_noise_cipher_clear(&s->send);
  pm_noise_cipher_clear(&s->recv);
  wipe_buf(&s->pending);
  wipe_buf(&s->in);
}

/* The Reject reason the responder sends before failing with `err`, or 0. */
static uint8_t reject_reason(const pm_secure *s, int err) {
  if (s->initiator || (s->state != ST_RESP_MSG1 && s->state != ST_RESP_MSG3))
    return 0;
  switch (err) {
  case PM_ERR_WRONG_MESH:
    return PM_SECURE_REJECT_WRONG_MESH;
  case PM_ERR_WRONG_PASSWORD:
    return PM_SECURE_REJECT_AUTH;
  case PM_ERR_VERSION:
    return PM_SECURE_REJECT_VERSION;
  default:
    return 0;
  }
}

/* Kills the channel with `err`, telling the peer why when it may know. */
static int fail(pm_secure *s, int err, pm_buf *out) {
  uint8_t reason = out ? reject_reason(s, err) : 0;
  if (reason)
    (void)write_plain(out, PM_SECURE_REC_REJECT, &reason, 1);
  s->err = err;
  s->state = ST_FAILED;
  wipe_secrets(s);
  return err;
}

/* ---- identity proof ----------------------------------------------------- */

static void proof_message(uint8_t m[DOMAIN_LEN + PM_NOISE_KEY_LEN],
                          const uint8_t x25519_pub[PM_NOISE_KEY_LEN]) {
  memcpy(m, PM_SECURE_PROOF_DOMAIN, DOMAIN_LEN);
  memcpy(m + DOMAIN_LEN, x25519_pub, PM_NOISE_KEY_LEN);
}

/* Checks the peer's proof against the static key Noise authenticated. */
static int check_proof(const uint8_t proof[PROOF_LEN],
                       const uint8_t rs[PM_NOISE_KEY_LEN]) {
  uint8_t x[PM_NOISE_KEY_LEN], m[DOMAIN_LEN + PM_NOISE_KEY_LEN];
  if (!rs || crypto_sign_ed25519_pk_to_curve25519(x, proof) != 0 ||
      sodium_memcmp(x, rs, PM_NOISE_KEY_LEN) != 0)
    return PM_ERR_AUTH;
  proof_message(m, rs);
  if (crypto_sign_verify_detached(proof + PM_SECURE_KEY_LEN, m, sizeof m,
                                  proof) != 0)
    return PM_ERR_AUTH;
  return 0;
}

/* Derives the Noise static key from the Ed25519 key and signs the proof. */
static int make_static(pm_secure *s, const pm_secure_config *cfg,
                       uint8_t x_sk[PM_NOISE_KEY_LEN]) {
  uint8_t x_pk[PM_NOISE_KEY_LEN], x_pk2[PM_NOISE_KEY_LEN];
  uint8_t m[DOMAIN_LEN + PM_NOISE_KEY_LEN];

  if (memcmp(cfg->ed25519_sk + 32, cfg->ed25519_pk, PM_SECURE_KEY_LEN) != 0 ||
      crypto_sign_ed25519_sk_to_curve25519(x_sk, cfg->ed25519_sk) != 0 ||
      crypto_scalarmult_base(x_pk, x_sk) != 0 ||
      crypto_sign_ed25519_pk_to_curve25519(x_pk2, cfg->ed25519_pk) != 0 ||
      memcmp(x_pk, x_pk2, sizeof x_pk) != 0)
    return PM_ERR_INVAL;
  proof_message(m, x_pk);
  memcpy(s->proof, cfg->ed25519_pk, PM_SECURE_KEY_LEN);
  crypto_sign_detached(s->proof + PM_SECURE_KEY_LEN, NULL, m, sizeof m,
                       cfg->ed25519_sk);
  return 0;
}

/* Four 64-bit draws, little-endian, make the ephemeral private key. */
static int set_ephemeral(pm_secure *s, const pm_secure_config *cfg) {
  uint8_t e[PM_NOISE_KEY_LEN];
  for (int i = 0; i < 4; i++) {
    uint64_t v = cfg->random(cfg->random_ud);
    for (int j = 0; j < 8; j++)
      e[8 * i + j] = (uint8_t)(v >> (8 * j));
  }
  int r = pm_noise_handshake_set_ephemeral(&s->hs, e);
  sodium_memzero(e, sizeof e);
  return r;
}

/* ---- init --------------------------------------------------------------- */

static int config_ok(const pm_secure_config *cfg) {
  return cfg && cfg->psk && cfg->ed25519_sk && cfg->ed25519_pk &&
         cfg->mesh_tag && cfg->random;
}

static int init_noise(pm_secure *s, const pm_secure_config *cfg) {
  uint8_t x_sk[PM_NOISE_KEY_LEN];
  int r = make_static(s, cfg, x_sk);
  if (r == 0) {
    pm_noise_config nc = {
        .role = cfg->initiator ? PM_NOISE_INITIATOR : PM_NOISE_RESPONDER,
        .protocol = PM_SECURE_PROTOCOL,
        .prologue = (const uint8_t *)PM_SECURE_PROLOGUE,
        .prologue_len = sizeof PM_SECURE_PROLOGUE - 1,
        .local_static = x_sk,
        .psks = (const uint8_t(*)[PM_NOISE_KEY_LEN])cfg->psk,
        .psk_count = 1,
    };
    r = pm_noise_handshake_init(&s->hs, &nc);
  }
  sodium_memzero(x_sk, sizeof x_sk);
  if (r == 0)
    r = set_ephemeral(s, cfg);
  return r;
}

int pm_secure_init(pm_secure *s, const pm_secure_config *cfg) {
  if (!s)
    return PM_ERR_INVAL;
  memset(s, 0, sizeof *s);
  if (!config_ok(cfg))
    return PM_ERR_INVAL;
  s->initiator = cfg->initiator ? 1 : 0;
  s->password = cfg->password ? 1 : 0;
  s->state = s->initiator ? ST_INIT_START : ST_RESP_MSG1;
  memcpy(s->mesh_tag, cfg->mesh_tag, PM_SECURE_MESH_TAG_LEN);
  pm_buf_init(&s->in, cfg->alloc);
  pm_buf_init(&s->pending, cfg->alloc);
  int r = init_noise(s, cfg);
  if (r) {
    pm_secure_clear(s);
    return r;
  }
  return 0;
}

int pm_secure_start(pm_secure *s, pm_buf *net_out) {
  if (!s || !net_out)
    return PM_ERR_INVAL;
  if (s->err)
    return s->err;
  if (!s->initiator)
    return 0;
  if (s->state != ST_INIT_START)
    return PM_ERR_UNEXPECTED;
  uint8_t p[MSG1_PAYLOAD];
  p[0] = PM_SECURE_VERSION;
  memcpy(p + 1, s->mesh_tag, PM_SECURE_MESH_TAG_LEN);
  p[1 + PM_SECURE_MESH_TAG_LEN] = s->password ? PM_SECURE_FLAG_PASSWORD : 0;
  int r = write_handshake(s, p, sizeof p, net_out);
  if (r)
    return fail(s, r, NULL);
  s->state = ST_INIT_MSG2;
  return 0;
}

/* ---- handshake ---------------------------------------------------------- */

/* Derives the transport keys, wipes the handshake and sends what waited. */
static int finish(pm_secure *s, pm_buf *out) {
  int r = pm_noise_handshake_split(&s->hs, &s->send, &s->recv);
  if (r)
    return r;
  memcpy(s->hash, pm_noise_handshake_hash(&s->hs), PM_NOISE_HASH_LEN);
  pm_noise_handshake_clear(&s->hs);
  s->state = ST_ESTABLISHED;
  r = write_all(s, s->pending.data, s->pending.len, out);
  wipe_buf(&s->pending);
  return r;
}

/* Reads a handshake message; a failed authentication becomes `auth_err`. */
static int read_handshake(pm_secure *s, const uint8_t *msg, size_t len,
                          uint8_t *payload, size_t *n, int auth_err) {
  int r = pm_noise_handshake_read(&s->hs, msg, len, payload, HS_PAYLOAD_CAP, n);
  if (r == PM_NOISE_ERR_DECRYPT)
    return auth_err;
  if (r == PM_ERR_TRUNCATED || r == PM_ERR_FULL)
    return PM_ERR_MALFORMED;
  return r;
}

/* Responder: msg1 says which version and mesh the initiator wants. */
static int on_msg1(pm_secure *s, const uint8_t *msg, size_t len, pm_buf *out) {
  uint8_t p[HS_PAYLOAD_CAP];
  size_t n = 0;
  int r = read_handshake(s, msg, len, p, &n, PM_ERR_AUTH);
  if (r)
    return r;
  if (n >= 1 && p[0] != PM_SECURE_VERSION)
    return PM_ERR_VERSION;
  if (n != MSG1_PAYLOAD)
    return PM_ERR_MALFORMED;
  if (memcmp(p + 1, s->mesh_tag, PM_SECURE_MESH_TAG_LEN) != 0)
    return PM_ERR_WRONG_MESH;
  int password = (p[1 + PM_SECURE_MESH_TAG_LEN] & PM_SECURE_FLAG_PASSWORD) != 0;
  if (password != s->password)
    return PM_ERR_WRONG_PASSWORD;
  r = write_handshake(s, s->proof, PROOF_LEN, out);
  if (r == 0)
    s->state = ST_RESP_MSG3;
  return r;
}

/* Reads msg2 or msg3: the peer's identity proof. */
static int on_proof(pm_secure *s, const uint8_t *msg, size_t len,
                    int auth_err) {
  uint8_t p[HS_PAYLOAD_CAP];
  size_t n = 0;
  int r = read_handshake(s, msg, len, p, &n, auth_err);
  if (r)
    return r;
  if (n != PROOF_LEN)
    return PM_ERR_MALFORMED;
  r = check_proof(p, pm_noise_handshake_remote_static(&s->hs));
  if (r == 0)
    memcpy(s->peer_key, p, PM_SECURE_KEY_LEN);
  return r;
}

/* Initiator: msg2 proves the responder's identity; msg3 proves ours. */
static int on_msg2(pm_secure *s, const uint8_t *msg, size_t len, pm_buf *out) {
  int r = on_proof(s, msg, len, PM_ERR_AUTH);
  if (r == 0)
    r = write_handshake(s, s->proof, PROOF_LEN, out);
  if (r == 0)
    r = finish(s, out);
  return r;
}

/* Responder: msg3 mixes the PSK, so a different one fails to decrypt. */
static int on_msg3(pm_secure *s, const uint8_t *msg, size_t len, pm_buf *out) {
  int r = on_proof(s, msg, len, PM_ERR_WRONG_PASSWORD);
  if (r == 0)
    r = finish(s, out);
  return r;
}

static int on_handshake(pm_secure *s, const uint8_t *msg, size_t len,
                        pm_buf *out) {
  switch (s->state) {
  case ST_RESP_MSG1:
    return on_msg1(s, msg, len, out);
  case ST_INIT_MSG2:
    return on_msg2(s, msg, len, out);
  case ST_RESP_MSG3:
    return on_msg3(s, msg, len, out);
  default:
    return PM_ERR_UNEXPECTED; /* NEVER: record_allowed checked the state */
  }
}

/* ---- transport and Reject ----------------------------------------------- */

static int on_transport(pm_secure *s, const uint8_t *rec, size_t len,
                        pm_buf *plain) {
  uint8_t none[1];
  const uint8_t *ct = rec + PM_SECURE_HEADER;
  size_t clen = len - PM_SECURE_HEADER, got = 0;
  if (clen < PM_NOISE_TAG_LEN)
    return PM_ERR_AUTH;
  size_t n = clen - PM_NOISE_TAG_LEN;
  int r = pm_buf_reserve(plain, n);
  if (r)
    return r;
  uint8_t *dst = n ? plain->data + plain->len : none;
  r = pm_noise_cipher_decrypt(&s->recv, rec, PM_SECURE_HEADER, ct, clen, dst, n,
                              &got);
  if (r == PM_NOISE_ERR_NONCE)
    return PM_ERR_NONCE;
  if (r)
    return PM_ERR_AUTH;
  plain->len += got;
  s->peer_confirmed = 1;
  return 0;
}

static int on_reject(const uint8_t *payload, size_t len) {
  if (len != 1)
    return PM_ERR_MALFORMED;
  switch (payload[0]) {
  case PM_SECURE_REJECT_WRONG_MESH:
    return PM_ERR_WRONG_MESH;
  case PM_SECURE_REJECT_AUTH:
    return PM_ERR_WRONG_PASSWORD;
  case PM_SECURE_REJECT_VERSION:
    return PM_ERR_VERSION;
  default:
    return PM_ERR_REFUSED;
  }
}

/* Handles one complete record: `rec` holds its header and payload. */
static int on_record(pm_secure *s, const uint8_t *rec, size_t len,
                     pm_buf *plain, pm_buf *out) {
  const uint8_t *payload = rec + PM_SECURE_HEADER;
  size_t plen = len - PM_SECURE_HEADER;
  switch (rec[1]) {
  case PM_SECURE_REC_HANDSHAKE:
    return on_handshake(s, payload, plen, out);
  case PM_SECURE_REC_TRANSPORT:
    return on_transport(s, rec, len, plain);
  default: /* PM_SECURE_REC_REJECT, the only other type let through */
    return on_reject(payload, plen);
  }
}

/* ---- input -------------------------------------------------------------- */

/* Whether a record of `type` may arrive in the current state. */
static int record_allowed(const pm_secure *s, uint8_t type) {
  switch (type) {
  case PM_SECURE_REC_HANDSHAKE:
    return s->state == ST_RESP_MSG1 || s->state == ST_RESP_MSG3 ||
           s->state == ST_INIT_MSG2;
  case PM_SECURE_REC_TRANSPORT:
    return s->state == ST_ESTABLISHED;
  case PM_SECURE_REC_REJECT:
    return s->initiator && !s->peer_confirmed &&
           (s->state == ST_INIT_MSG2 || s->state == ST_ESTABLISHED);
  default:
    return 0;
  }
}

/* Judges a record from the `have` bytes at `p`: the version from its first
 * byte, length and type from the whole header. Returns 0 when more bytes
 * are needed, 1 with *rec_len set when the header is complete, or an
 * error. */
static int judge_header(const pm_secure *s, const uint8_t *p, size_t have,
                        size_t *rec_len) {
  if (have < 1)
    return 0;
  if (p[0] != PM_SECURE_VERSION)
    return PM_ERR_VERSION;
  if (have < PM_SECURE_HEADER)
    return 0;
  uint32_t plen = pm_load_u32(p + 2);
  if (plen > PM_SECURE_MAX_PAYLOAD)
    return PM_ERR_FRAME_TOO_LARGE;
  if (!record_allowed(s, p[1]))
    return PM_ERR_UNEXPECTED;
  *rec_len = PM_SECURE_HEADER + (size_t)plen;
  return 1;
}

/* Grows the receive buffer to `total` bytes exactly (at least IN_MIN), so
 * that it never holds more than one record. */
static int in_reserve(pm_secure *s, size_t total) {
  pm_buf *b = &s->in;
  if (total < IN_MIN)
    total = IN_MIN;
  if (b->cap >= total)
    return 0;
  uint8_t *p = b->alloc->realloc(b->alloc->ud, b->data, total);
  if (!p)
    return b->err = PM_ERR_NOMEM;
  b->data = p;
  b->cap = total;
  return 0;
}

/* Buffers `n` bytes of a record whose judged size so far is `total`. */
static int in_put(pm_secure *s, const uint8_t *p, size_t n, size_t total) {
  int r = in_reserve(s, total);
  if (r == 0) {
    pm_buf_put(&s->in, p, n);
    r = s->in.err;
  }
  return r;
}

/* Nothing buffered: handles a whole record in place, or buffers the start
 * of one (after its header, when present, passed judgement). */
static int feed_direct(pm_secure *s, const uint8_t *p, size_t n, size_t *used,
                       pm_buf *plain, pm_buf *out) {
  size_t rec_len = PM_SECURE_HEADER;
  int r = judge_header(s, p, n, &rec_len);
  if (r < 0)
    return r;
  if (r == 1 && n >= rec_len) {
    *used = rec_len;
    return on_record(s, p, rec_len, plain, out);
  }
  *used = n;
  return in_put(s, p, n, rec_len);
}

/* Part of a record buffered: adds bytes up to the end of its header, then
 * up to its end, judging the header before taking any payload byte. */
static int feed_partial(pm_secure *s, const uint8_t *p, size_t n, size_t *used,
                        pm_buf *plain, pm_buf *out) {
  size_t rec_len = PM_SECURE_HEADER;
  if (s->in.len >= PM_SECURE_HEADER &&
      judge_header(s, s->in.data, s->in.len, &rec_len) != 1)
    return PM_ERR_UNEXPECTED; /* NEVER: judged when buffered */
  size_t take = rec_len - s->in.len;
  if (take > n)
    take = n;
  *used = take;
  int r = in_put(s, p, take, rec_len);
  if (r == 0)
    r = judge_header(s, s->in.data, s->in.len, &rec_len);
  if (r <= 0 || s->in.len < rec_len)
    return r < 0 ? r : 0;
  r = on_record(s, s->in.data, rec_len, plain, out);
  pm_buf_reset(&s->in);
  if (s->in.cap > IN_KEEP) /* an idle link keeps a small buffer */
    pm_buf_free(&s->in);
  return r;
}

int pm_secure_recv(pm_secure *s, const uint8_t *data, size_t len,
                   pm_buf *plain_in, pm_buf *net_out) {
  if (!s || (!data && len) || !plain_in || !net_out)
    return PM_ERR_INVAL;
  if (s->err)
    return s->err;
  size_t off = 0;
  while (off < len) {
    size_t used = 0;
    int r =
        s->in.len
            ? feed_partial(s, data + off, len - off, &used, plain_in, net_out)
            : feed_direct(s, data + off, len - off, &used, plain_in, net_out);
    if (r)
      return fail(s, r, net_out);
    off += used;
  }
  return 0;
}

/* ---- output and queries ------------------------------------------------- */

int pm_secure_send(pm_secure *s, const uint8_t *plain, size_t len,
                   pm_buf *net_out) {
  if (!s || (!plain && len) || !net_out)
    return PM_ERR_INVAL;
  if (s->err)
    return s->err;
  if (len == 0)
    return 0;
  if (s->state == ST_ESTABLISHED) {
    int r = write_all(s, plain, len, net_out);
    return r ? fail(s, r, NULL) : 0;
  }
  if (len > PM_SECURE_MAX_PENDING - s->pending.len)
    return fail(s, PM_ERR_FULL, NULL);
  pm_buf_put(&s->pending, plain, len);
  return s->pending.err ? fail(s, s->pending.err, NULL) : 0;
}

int pm_secure_established(const pm_secure *s) {
  return s && s->state == ST_ESTABLISHED;
}

const uint8_t *pm_secure_peer_key(const pm_secure *s) {
  return pm_secure_established(s) ? s->peer_key : NULL;
}

const uint8_t *pm_secure_handshake_hash(const pm_secure *s) {
  return pm_secure_established(s) ? s->hash : NULL;
}

int pm_secure_error(const pm_secure *s) {
  return s ? s->err : PM_ERR_INVAL;
}

void pm_secure_clear(pm_secure *s) {
  if (!s)
    return;
  wipe_secrets(s);
  sodium_memzero(s, sizeof *s);
}
