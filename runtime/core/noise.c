/* The Noise Protocol Framework (revision 34) on libsodium: CipherState,
 * SymmetricState and a HandshakeState that interprets message patterns token
 * by token. See noise.h; section numbers below are the spec's. */
#include "noise.h"

#include <sodium.h>
#include <string.h>

#define BLOCK_LEN 128 /* BLAKE2b's block length, for HMAC */
#define NONCE_MAX UINT64_MAX

static const char name_prefix[] = "Noise_";
static const char name_suffix[] = "_25519_ChaChaPoly_BLAKE2b";

enum token { TOK_E = 1, TOK_S, TOK_EE, TOK_ES, TOK_SE, TOK_SS, TOK_PSK };

/* Handshake patterns as the spec writes them (sections 7.4 to 7.6): tokens
 * of the initiator's and responder's pre-messages, then of each message;
 * message i is the initiator's when i is even. */
struct pattern {
  const char *name;
  const char *pre_i, *pre_r;
  const char *msgs[PM_NOISE_MAX_MESSAGES];
};

static const struct pattern patterns[] = {
    /* one-way */
    {"N", "", "s", {"e, es"}},
    {"K", "s", "s", {"e, es, ss"}},
    {"X", "", "s", {"e, es, s, ss"}},
    /* interactive, fundamental */
    {"NN", "", "", {"e", "e, ee"}},
    {"NK", "", "s", {"e, es", "e, ee"}},
    {"NX", "", "", {"e", "e, ee, s, es"}},
    {"KN", "s", "", {"e", "e, ee, se"}},
    {"KK", "s", "s", {"e, es, ss", "e, ee, se"}},
    {"KX", "s", "", {"e", "e, ee, se, s, es"}},
    {"XN", "", "", {"e", "e, ee", "s, se"}},
    {"XK", "", "s", {"e, es", "e, ee", "s, se"}},
    {"XX", "", "", {"e", "e, ee, s, es", "s, se"}},
    {"IN", "", "", {"e, s", "e, ee, se"}},
    {"IK", "", "s", {"e, es, s, ss", "e, ee, se"}},
    {"IX", "", "", {"e, s", "e, ee, se, s, es"}},
    /* interactive, deferred */
    {"NK1", "", "s", {"e", "e, ee, es"}},
    {"NX1", "", "", {"e", "e, ee, s", "es"}},
    {"X1N", "", "", {"e", "e, ee", "s", "se"}},
    {"X1K", "", "s", {"e, es", "e, ee", "s", "se"}},
    {"XK1", "", "s", {"e", "e, ee, es", "s, se"}},
    {"X1K1", "", "s", {"e", "e, ee, es", "s", "se"}},
    {"X1X", "", "", {"e", "e, ee, s, es", "s", "se"}},
    {"XX1", "", "", {"e", "e, ee, s", "es, s, se"}},
    {"X1X1", "", "", {"e", "e, ee, s", "es, s", "se"}},
    {"K1N", "s", "", {"e", "e, ee", "se"}},
    {"K1K", "s", "s", {"e, es", "e, ee", "se"}},
    {"KK1", "s", "s", {"e", "e, ee, se, es"}},
    {"K1K1", "s", "s", {"e", "e, ee, es", "se"}},
    {"K1X", "s", "", {"e", "e, ee, s, es", "se"}},
    {"KX1", "s", "", {"e", "e, ee, se, s", "es"}},
    {"K1X1", "s", "", {"e", "e, ee, s", "se, es"}},
    {"I1N", "", "", {"e, s", "e, ee", "se"}},
    {"I1K", "", "s", {"e, es, s", "e, ee", "se"}},
    {"IK1", "", "s", {"e, s", "e, ee, se, es"}},
    {"I1K1", "", "s", {"e, s", "e, ee, es", "se"}},
    {"I1X", "", "", {"e, s", "e, ee, s, es", "se"}},
    {"IX1", "", "", {"e, s", "e, ee, se, s", "es"}},
    {"I1X1", "", "", {"e, s", "e, ee, s", "se, es"}},
};

/* ---- hash functions (section 4.3) --------------------------------------- */

static void hash2(uint8_t out[PM_NOISE_HASH_LEN], const uint8_t *a,
                  size_t a_len, const uint8_t *b, size_t b_len) {
  crypto_generichash_blake2b_state st;
  crypto_generichash_blake2b_init(&st, NULL, 0, PM_NOISE_HASH_LEN);
  crypto_generichash_blake2b_update(&st, a, a_len);
  if (b_len)
    crypto_generichash_blake2b_update(&st, b, b_len);
  crypto_generichash_blake2b_final(&st, out, PM_NOISE_HASH_LEN);
  sodium_memzero(&st, sizeof st);
}

/* HMAC (RFC 2104) over BLAKE2b with a 128-byte block; Noise keys are never
 * longer than HASHLEN, so they are only padded, never hashed first. The
 * message is the concatenation of `a` and `b`. */
static void hmac(uint8_t out[PM_NOISE_HASH_LEN],
                 const uint8_t key[PM_NOISE_HASH_LEN], const uint8_t *a,
                 size_t a_len, const uint8_t *b, size_t b_len) {
  uint8_t pad[BLOCK_LEN], inner[PM_NOISE_HASH_LEN];
  crypto_generichash_blake2b_state st;

  memset(pad, 0x36, sizeof pad);
  for (size_t i = 0; i < PM_NOISE_HASH_LEN; i++)
    pad[i] ^= key[i];
  crypto_generichash_blake2b_init(&st, NULL, 0, PM_NOISE_HASH_LEN);
  crypto_generichash_blake2b_update(&st, pad, sizeof pad);
  if (a_len)
    crypto_generichash_blake2b_update(&st, a, a_len);
  if (b_len)
    crypto_generichash_blake2b_update(&st, b, b_len);
  crypto_generichash_blake2b_final(&st, inner, sizeof inner);

  memset(pad, 0x5c, sizeof pad);
  for (size_t i = 0; i < PM_NOISE_HASH_LEN; i++)
    pad[i] ^= key[i];
  hash2(out, pad, sizeof pad, inner, sizeof inner);

  sodium_memzero(pad, sizeof pad);
  sodium_memzero(inner, sizeof inner);
  sodium_memzero(&st, sizeof st);
}

/* HKDF(chaining_key, input_key_material, num_outputs): two outputs, or
 * three when `out3` is not NULL. */
static void hkdf(const uint8_t ck[PM_NOISE_HASH_LEN], const uint8_t *ikm,
                 size_t ikm_len, uint8_t out1[PM_NOISE_HASH_LEN],
                 uint8_t out2[PM_NOISE_HASH_LEN],
                 uint8_t out3[PM_NOISE_HASH_LEN]) {
  uint8_t temp[PM_NOISE_HASH_LEN];
  const uint8_t one = 1, two = 2, three = 3;

  hmac(temp, ck, ikm, ikm_len, NULL, 0);
  hmac(out1, temp, &one, 1, NULL, 0);
  hmac(out2, temp, out1, PM_NOISE_HASH_LEN, &two, 1);
  if (out3)
    hmac(out3, temp, out2, PM_NOISE_HASH_LEN, &three, 1);
  sodium_memzero(temp, sizeof temp);
}

/* ---- CipherState (section 5.1) ------------------------------------------ */

static void cipher_init_key(pm_noise_cipher *c, const uint8_t *k) {
  memcpy(c->k, k, PM_NOISE_KEY_LEN);
  c->n = 0;
  c->has_key = 1;
}

/* ChaChaPoly's 96-bit nonce: 32 zero bits, then n as 64-bit little-endian. */
static void cipher_nonce(uint8_t nonce[12], uint64_t n) {
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++)
    nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

/* EncryptWithAd: `out` holds len bytes, plus a tag when there is a key.
 * Without a key the plaintext passes through, as the spec says; only the
 * handshake relies on that (transport ciphers refuse to work keyless). */
static int cipher_seal(pm_noise_cipher *c, const uint8_t *ad, size_t ad_len,
                       const uint8_t *plain, size_t len, uint8_t *out) {
  static const uint8_t empty[1];
  uint8_t nonce[12];

  if (!c->has_key) {
    if (len)
      memcpy(out, plain, len);
    return 0;
  }
  if (c->n == NONCE_MAX)
    return PM_NOISE_ERR_NONCE;
  cipher_nonce(nonce, c->n);
  crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, len ? plain : empty, len,
                                            ad_len ? ad : empty, ad_len, NULL,
                                            nonce, c->k);
  c->n++;
  return 0;
}

/* DecryptWithAd: `msg` is len bytes including the tag when there is a key.
 * A failure leaves the nonce as it was. */
static int cipher_open(pm_noise_cipher *c, const uint8_t *ad, size_t ad_len,
                       const uint8_t *msg, size_t len, uint8_t *out) {
  static const uint8_t empty[1];
  uint8_t nonce[12];

  if (!c->has_key) {
    if (len)
      memcpy(out, msg, len);
    return 0;
  }
  if (c->n == NONCE_MAX)
    return PM_NOISE_ERR_NONCE;
  if (len < PM_NOISE_TAG_LEN)
    return PM_ERR_TRUNCATED;
  cipher_nonce(nonce, c->n);
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, msg, len,
                                                ad_len ? ad : empty, ad_len,
                                                nonce, c->k) != 0)
    return PM_NOISE_ERR_DECRYPT;
  c->n++;
  return 0;
}

/* ---- SymmetricState (section 5.2) --------------------------------------- */

static void ss_init(pm_noise_symmetric *ss, const char *name, size_t len) {
  memset(ss, 0, sizeof *ss);
  if (len <= PM_NOISE_HASH_LEN)
    memcpy(ss->h, name, len);
  else
    hash2(ss->h, (const uint8_t *)name, len, NULL, 0);
  memcpy(ss->ck, ss->h, PM_NOISE_HASH_LEN);
}

static void mix_hash(pm_noise_symmetric *ss, const uint8_t *data, size_t len) {
  hash2(ss->h, ss->h, PM_NOISE_HASH_LEN, data, len);
}

static void mix_key(pm_noise_symmetric *ss, const uint8_t *ikm, size_t len) {
  uint8_t temp_k[PM_NOISE_HASH_LEN];
  hkdf(ss->ck, ikm, len, ss->ck, temp_k, NULL);
  cipher_init_key(&ss->cs, temp_k); /* truncated to 32 bytes */
  sodium_memzero(temp_k, sizeof temp_k);
}

static void mix_key_and_hash(pm_noise_symmetric *ss, const uint8_t *ikm,
                             size_t len) {
  uint8_t temp_h[PM_NOISE_HASH_LEN], temp_k[PM_NOISE_HASH_LEN];
  hkdf(ss->ck, ikm, len, ss->ck, temp_h, temp_k);
  mix_hash(ss, temp_h, sizeof temp_h);
  cipher_init_key(&ss->cs, temp_k);
  sodium_memzero(temp_h, sizeof temp_h);
  sodium_memzero(temp_k, sizeof temp_k);
}

/* The bytes EncryptAndHash adds to a plaintext in the current state. */
static size_t ss_tag_len(const pm_noise_symmetric *ss) {
  return ss->cs.has_key ? PM_NOISE_TAG_LEN : 0;
}

static int encrypt_and_hash(pm_noise_symmetric *ss, const uint8_t *plain,
                            size_t len, uint8_t *out) {
  size_t out_len = len + ss_tag_len(ss);
  int r = cipher_seal(&ss->cs, ss->h, PM_NOISE_HASH_LEN, plain, len, out);
  if (r == 0)
    mix_hash(ss, out, out_len);
  return r;
}

static int decrypt_and_hash(pm_noise_symmetric *ss, const uint8_t *msg,
                            size_t len, uint8_t *out) {
  int r = cipher_open(&ss->cs, ss->h, PM_NOISE_HASH_LEN, msg, len, out);
  if (r == 0)
    mix_hash(ss, msg, len);
  return r;
}

/* ---- protocol names and patterns ---------------------------------------- */

/* Parses "e, ee, s" into tokens appended to `toks`. Returns 0 or
 * PM_ERR_INVAL for an unknown token or too many. */
static int parse_tokens(const char *text, uint8_t *toks, uint8_t *count) {
  static const struct {
    const char *word;
    uint8_t tok;
  } words[] = {{"e", TOK_E},   {"s", TOK_S},   {"ee", TOK_EE},
               {"es", TOK_ES}, {"se", TOK_SE}, {"ss", TOK_SS}};
  const char *p = text;

  while (*p) {
    while (*p == ' ' || *p == ',')
      p++;
    size_t n = 0;
    while (p[n] && p[n] != ',' && p[n] != ' ')
      n++;
    if (n == 0)
      break;
    uint8_t tok = 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
      if (strlen(words[i].word) == n && memcmp(words[i].word, p, n) == 0)
        tok = words[i].tok;
    if (!tok || *count >= PM_NOISE_MAX_TOKENS)
      return PM_ERR_INVAL;
    toks[(*count)++] = tok;
    p += n;
  }
  return 0;
}

static const struct pattern *find_pattern(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++)
    if (strlen(patterns[i].name) == len &&
        memcmp(patterns[i].name, name, len) == 0)
      return &patterns[i];
  return NULL;
}

/* Inserts a psk token as modifier pskN says: first in message 0 for psk0,
 * last in message N-1 otherwise (section 9.2). */
static int add_psk(pm_noise_handshake *hs, unsigned n) {
  if (n > hs->msg_count || hs->psk_count >= PM_NOISE_MAX_PSKS)
    return PM_ERR_INVAL;
  unsigned m = n == 0 ? 0 : n - 1;
  uint8_t *toks = hs->tokens[m];
  uint8_t *count = &hs->token_count[m];
  if (*count >= PM_NOISE_MAX_TOKENS)
    return PM_ERR_INVAL;
  if (n == 0) {
    memmove(toks + 1, toks, *count);
    toks[0] = TOK_PSK;
  } else {
    toks[*count] = TOK_PSK;
  }
  (*count)++;
  hs->psk_count++;
  return 0;
}

/* Parses the modifiers after the pattern name: "", "psk2", "psk0+psk2". */
static int parse_modifiers(pm_noise_handshake *hs, const char *p, size_t len) {
  unsigned seen = 0;
  size_t i = 0;

  while (i < len) {
    if (i > 0 && p[i++] != '+')
      return PM_ERR_INVAL;
    if (len - i < 4 || memcmp(p + i, "psk", 3) != 0 || p[i + 3] < '0' ||
        p[i + 3] > '9')
      return PM_ERR_INVAL;
    unsigned n = (unsigned)(p[i + 3] - '0');
    if (seen & (1u << n))
      return PM_ERR_INVAL;
    seen |= 1u << n;
    int r = add_psk(hs, n);
    if (r < 0)
      return r;
    i += 4;
  }
  return 0;
}

/* Fills the pattern fields of `hs` from a full protocol name. */
static int parse_protocol(pm_noise_handshake *hs, const char *name, size_t len,
                          const struct pattern **out) {
  size_t pre = sizeof name_prefix - 1, suf = sizeof name_suffix - 1;

  if (len <= pre + suf || memcmp(name, name_prefix, pre) != 0 ||
      memcmp(name + len - suf, name_suffix, suf) != 0)
    return PM_ERR_INVAL;
  const char *base = name + pre;
  size_t rest = len - pre - suf, base_len = 0;
  while (base_len < rest && ((base[base_len] >= 'A' && base[base_len] <= 'Z') ||
                             (base[base_len] >= '0' && base[base_len] <= '9')))
    base_len++;
  const struct pattern *pat = find_pattern(base, base_len);
  if (!pat)
    return PM_ERR_INVAL;

  for (unsigned m = 0; m < PM_NOISE_MAX_MESSAGES && pat->msgs[m]; m++) {
    int r = parse_tokens(pat->msgs[m], hs->tokens[m], &hs->token_count[m]);
    if (r < 0)
      return r;
    hs->msg_count = (uint8_t)(m + 1);
  }
  hs->one_way = base_len == 1;
  *out = pat;
  return parse_modifiers(hs, base + base_len, rest - base_len);
}

/* ---- HandshakeState (section 5.3) --------------------------------------- */

static int is_initiator(const pm_noise_handshake *hs) {
  return hs->role == PM_NOISE_INITIATOR;
}

/* 1 when some message of ours carries our static key. */
static int sends_static(const pm_noise_handshake *hs) {
  for (unsigned m = is_initiator(hs) ? 0 : 1; m < hs->msg_count; m += 2)
    for (unsigned t = 0; t < hs->token_count[m]; t++)
      if (hs->tokens[m][t] == TOK_S)
        return 1;
  return 0;
}

/* Takes the keys from the config and checks the pattern has what it needs. */
static int load_keys(pm_noise_handshake *hs, const pm_noise_config *cfg,
                     const struct pattern *pat) {
  const char *pre_local = is_initiator(hs) ? pat->pre_i : pat->pre_r;
  const char *pre_remote = is_initiator(hs) ? pat->pre_r : pat->pre_i;
  int need_s = pre_local[0] != '\0' || sends_static(hs);
  int need_rs = pre_remote[0] != '\0';

  if (need_s) {
    if (!cfg->local_static)
      return PM_ERR_INVAL;
    memcpy(hs->s_priv, cfg->local_static, PM_NOISE_KEY_LEN);
    if (crypto_scalarmult_base(hs->s_pub, hs->s_priv) != 0)
      return PM_ERR_INVAL;
    hs->has_s = 1;
  }
  /* A remote key the pattern would not use would mislead the caller into
   * thinking the peer is authenticated against it. */
  if (need_rs != (cfg->remote_static != NULL))
    return PM_ERR_INVAL;
  if (need_rs) {
    memcpy(hs->rs, cfg->remote_static, PM_NOISE_KEY_LEN);
    hs->has_rs = 1;
  }
  if (cfg->psk_count != hs->psk_count || (cfg->psk_count && !cfg->psks))
    return PM_ERR_INVAL;
  for (size_t i = 0; i < cfg->psk_count; i++)
    memcpy(hs->psks[i], cfg->psks[i], PM_NOISE_KEY_LEN);
  return 0;
}

/* Hashes the pre-messages: the initiator's, then the responder's. Only
 * static keys occur in the supported patterns. */
static void mix_pre_messages(pm_noise_handshake *hs,
                             const struct pattern *pat) {
  const uint8_t *init_s = is_initiator(hs) ? hs->s_pub : hs->rs;
  const uint8_t *resp_s = is_initiator(hs) ? hs->rs : hs->s_pub;
  if (pat->pre_i[0])
    mix_hash(&hs->ss, init_s, PM_NOISE_KEY_LEN);
  if (pat->pre_r[0])
    mix_hash(&hs->ss, resp_s, PM_NOISE_KEY_LEN);
}

int pm_noise_handshake_init(pm_noise_handshake *hs,
                            const pm_noise_config *cfg) {
  const struct pattern *pat = NULL;

  if (!hs)
    return PM_ERR_INVAL;
  memset(hs, 0, sizeof *hs);
  if (!cfg || !cfg->protocol || (!cfg->prologue && cfg->prologue_len) ||
      (cfg->role != PM_NOISE_INITIATOR && cfg->role != PM_NOISE_RESPONDER))
    return PM_ERR_INVAL;
  size_t len = strlen(cfg->protocol);
  if (len > PM_NOISE_MAX_NAME_LEN)
    return PM_ERR_INVAL;
  hs->role = (uint8_t)cfg->role;
  int r = parse_protocol(hs, cfg->protocol, len, &pat);
  if (r == 0)
    r = load_keys(hs, cfg, pat);
  if (r < 0) {
    pm_noise_handshake_clear(hs);
    return r;
  }
  hs->psk_mode = hs->psk_count > 0;
  ss_init(&hs->ss, cfg->protocol, len);
  mix_hash(&hs->ss, cfg->prologue, cfg->prologue_len);
  mix_pre_messages(hs, pat);
  return 0;
}

int pm_noise_handshake_set_ephemeral(pm_noise_handshake *hs,
                                     const uint8_t priv[PM_NOISE_KEY_LEN]) {
  if (!hs || !priv)
    return PM_ERR_INVAL;
  if (hs->has_e || hs->split_done)
    return PM_ERR_UNEXPECTED;
  memcpy(hs->e_priv, priv, PM_NOISE_KEY_LEN);
  if (crypto_scalarmult_base(hs->e_pub, hs->e_priv) != 0) {
    sodium_memzero(hs->e_priv, sizeof hs->e_priv);
    return PM_ERR_INVAL;
  }
  hs->has_e = 1;
  return 0;
}

int pm_noise_handshake_is_complete(const pm_noise_handshake *hs) {
  return hs && hs->msg_count > 0 && hs->msg_index >= hs->msg_count;
}

int pm_noise_handshake_writing(const pm_noise_handshake *hs) {
  if (!hs || pm_noise_handshake_is_complete(hs) || hs->msg_count == 0)
    return 0;
  return (hs->msg_index % 2 == 0) == is_initiator(hs);
}

size_t pm_noise_handshake_overhead(const pm_noise_handshake *hs) {
  if (!hs || hs->msg_index >= hs->msg_count)
    return 0;
  int has_key = hs->ss.cs.has_key;
  size_t n = 0;
  const uint8_t *toks = hs->tokens[hs->msg_index];
  for (unsigned t = 0; t < hs->token_count[hs->msg_index]; t++) {
    switch (toks[t]) {
    case TOK_E:
      n += PM_NOISE_KEY_LEN;
      has_key |= hs->psk_mode;
      break;
    case TOK_S:
      n += PM_NOISE_KEY_LEN + (has_key ? PM_NOISE_TAG_LEN : 0);
      break;
    default: /* DH and psk tokens set a key */
      has_key = 1;
      break;
    }
  }
  return n + (has_key ? PM_NOISE_TAG_LEN : 0);
}

/* MixKey(DH(...)) for ee, es, se, ss. The token names put the initiator's
 * key first: es is DH(initiator e, responder s). */
static int mix_dh(pm_noise_handshake *hs, uint8_t tok) {
  int init = is_initiator(hs);
  int local_e =
      tok == TOK_EE || (tok == TOK_ES && init) || (tok == TOK_SE && !init);
  int remote_e =
      tok == TOK_EE || (tok == TOK_ES && !init) || (tok == TOK_SE && init);
  const uint8_t *priv = local_e ? hs->e_priv : hs->s_priv;
  const uint8_t *pub = remote_e ? hs->re : hs->rs;
  uint8_t shared[PM_NOISE_KEY_LEN];

  if (!(local_e ? hs->has_e : hs->has_s) ||
      !(remote_e ? hs->has_re : hs->has_rs))
    return PM_ERR_INVAL; /* NEVER: every table pattern has the keys */
  /* crypto_scalarmult fails when the result is all zeros: the peer sent a
   * low-order point. */
  if (crypto_scalarmult(shared, priv, pub) != 0)
    return PM_NOISE_ERR_DECRYPT;
  mix_key(&hs->ss, shared, sizeof shared);
  sodium_memzero(shared, sizeof shared);
  return 0;
}

static void mix_psk(pm_noise_handshake *hs) {
  mix_key_and_hash(&hs->ss, hs->psks[hs->psk_index], PM_NOISE_KEY_LEN);
  hs->psk_index++;
}

/* WriteMessage's token loop and payload; `out` has room for the message. */
static int write_tokens(pm_noise_handshake *hs, const uint8_t *payload,
                        size_t payload_len, uint8_t *out) {
  const uint8_t *toks = hs->tokens[hs->msg_index];
  size_t pos = 0;
  int r = 0;

  for (unsigned t = 0; t < hs->token_count[hs->msg_index] && r == 0; t++) {
    switch (toks[t]) {
    case TOK_E:
      if (!hs->has_e)
        return PM_ERR_INVAL; /* pm_noise_handshake_set_ephemeral first */
      memcpy(out + pos, hs->e_pub, PM_NOISE_KEY_LEN);
      pos += PM_NOISE_KEY_LEN;
      mix_hash(&hs->ss, hs->e_pub, PM_NOISE_KEY_LEN);
      if (hs->psk_mode)
        mix_key(&hs->ss, hs->e_pub, PM_NOISE_KEY_LEN);
      break;
    case TOK_S: {
      size_t n = PM_NOISE_KEY_LEN + ss_tag_len(&hs->ss);
      r = encrypt_and_hash(&hs->ss, hs->s_pub, PM_NOISE_KEY_LEN, out + pos);
      pos += n;
      break;
    }
    case TOK_PSK:
      mix_psk(hs);
      break;
    default:
      r = mix_dh(hs, toks[t]);
      break;
    }
  }
  if (r == 0)
    r = encrypt_and_hash(&hs->ss, payload, payload_len, out + pos);
  if (r == 0)
    hs->msg_index++;
  return r;
}

/* ReadMessage's token loop and payload; the length was checked against the
 * overhead, so every token finds its bytes. */
static int read_tokens(pm_noise_handshake *hs, const uint8_t *msg, size_t len,
                       uint8_t *out) {
  const uint8_t *toks = hs->tokens[hs->msg_index];
  size_t pos = 0;
  int r = 0;

  for (unsigned t = 0; t < hs->token_count[hs->msg_index] && r == 0; t++) {
    switch (toks[t]) {
    case TOK_E:
      memcpy(hs->re, msg + pos, PM_NOISE_KEY_LEN);
      hs->has_re = 1;
      pos += PM_NOISE_KEY_LEN;
      mix_hash(&hs->ss, hs->re, PM_NOISE_KEY_LEN);
      if (hs->psk_mode)
        mix_key(&hs->ss, hs->re, PM_NOISE_KEY_LEN);
      break;
    case TOK_S: {
      size_t n = PM_NOISE_KEY_LEN + ss_tag_len(&hs->ss);
      r = decrypt_and_hash(&hs->ss, msg + pos, n, hs->rs);
      hs->has_rs = r == 0;
      pos += n;
      break;
    }
    case TOK_PSK:
      mix_psk(hs);
      break;
    default:
      r = mix_dh(hs, toks[t]);
      break;
    }
  }
  if (r == 0)
    r = decrypt_and_hash(&hs->ss, msg + pos, len - pos, out);
  if (r == 0)
    hs->msg_index++;
  return r;
}

int pm_noise_handshake_write(pm_noise_handshake *hs, const uint8_t *payload,
                             size_t payload_len, uint8_t *out, size_t out_cap,
                             size_t *out_len) {
  if (!hs || !out || !out_len || (!payload && payload_len))
    return PM_ERR_INVAL;
  if (!pm_noise_handshake_writing(hs))
    return PM_ERR_UNEXPECTED;
  size_t overhead = pm_noise_handshake_overhead(hs);
  if (payload_len > PM_NOISE_MAX_MSG_LEN - overhead)
    return PM_ERR_FRAME_TOO_LARGE;
  if (payload_len + overhead > out_cap)
    return PM_ERR_FULL;

  /* Work on a copy so that a failure leaves `hs` untouched. */
  pm_noise_handshake t = *hs;
  int r = write_tokens(&t, payload, payload_len, out);
  if (r == 0) {
    *hs = t;
    *out_len = payload_len + overhead;
  }
  sodium_memzero(&t, sizeof t);
  return r;
}

int pm_noise_handshake_read(pm_noise_handshake *hs, const uint8_t *msg,
                            size_t len, uint8_t *out, size_t out_cap,
                            size_t *out_len) {
  if (!hs || !out_len || (!msg && len))
    return PM_ERR_INVAL;
  if (pm_noise_handshake_is_complete(hs) || pm_noise_handshake_writing(hs) ||
      hs->msg_count == 0)
    return PM_ERR_UNEXPECTED;
  if (len > PM_NOISE_MAX_MSG_LEN)
    return PM_ERR_FRAME_TOO_LARGE;
  size_t overhead = pm_noise_handshake_overhead(hs);
  if (len < overhead)
    return PM_ERR_TRUNCATED;
  if (len - overhead > out_cap)
    return PM_ERR_FULL;
  if (!out && len > overhead)
    return PM_ERR_INVAL;

  pm_noise_handshake t = *hs;
  uint8_t none[1];
  int r = read_tokens(&t, msg, len, out ? out : none);
  if (r == 0) {
    *hs = t;
    *out_len = len - overhead;
  }
  sodium_memzero(&t, sizeof t);
  return r;
}

const uint8_t *pm_noise_handshake_hash(const pm_noise_handshake *hs) {
  return hs ? hs->ss.h : NULL;
}

const uint8_t *pm_noise_handshake_remote_static(const pm_noise_handshake *hs) {
  return hs && hs->has_rs ? hs->rs : NULL;
}

int pm_noise_handshake_split(pm_noise_handshake *hs, pm_noise_cipher *send,
                             pm_noise_cipher *recv) {
  uint8_t k1[PM_NOISE_HASH_LEN], k2[PM_NOISE_HASH_LEN];

  if (!hs || !send || !recv)
    return PM_ERR_INVAL;
  if (!pm_noise_handshake_is_complete(hs) || hs->split_done)
    return PM_ERR_UNEXPECTED;
  hkdf(hs->ss.ck, NULL, 0, k1, k2, NULL);
  memset(send, 0, sizeof *send);
  memset(recv, 0, sizeof *recv);
  /* The initiator sends with the first key, the responder with the second;
   * in a one-way pattern the second is never used (section 7.4). */
  cipher_init_key(is_initiator(hs) ? send : recv, k1);
  if (!hs->one_way)
    cipher_init_key(is_initiator(hs) ? recv : send, k2);
  sodium_memzero(k1, sizeof k1);
  sodium_memzero(k2, sizeof k2);

  /* Keep only what stays readable: h and the remote static key. */
  sodium_memzero(hs->ss.ck, sizeof hs->ss.ck);
  pm_noise_cipher_clear(&hs->ss.cs);
  sodium_memzero(hs->s_priv, sizeof hs->s_priv);
  sodium_memzero(hs->e_priv, sizeof hs->e_priv);
  sodium_memzero(hs->psks, sizeof hs->psks);
  hs->split_done = 1;
  return 0;
}

void pm_noise_handshake_clear(pm_noise_handshake *hs) {
  if (hs)
    sodium_memzero(hs, sizeof *hs);
}

/* ---- transport ---------------------------------------------------------- */

int pm_noise_cipher_encrypt(pm_noise_cipher *c, const uint8_t *ad,
                            size_t ad_len, const uint8_t *plain, size_t len,
                            uint8_t *out, size_t out_cap, size_t *out_len) {
  if (!c || !out || !out_len || (!ad && ad_len) || (!plain && len))
    return PM_ERR_INVAL;
  if (!c->has_key)
    return PM_ERR_UNEXPECTED;
  if (len > PM_NOISE_MAX_PAYLOAD)
    return PM_ERR_FRAME_TOO_LARGE;
  if (len + PM_NOISE_TAG_LEN > out_cap)
    return PM_ERR_FULL;
  int r = cipher_seal(c, ad, ad_len, plain, len, out);
  if (r == 0)
    *out_len = len + PM_NOISE_TAG_LEN;
  return r;
}

int pm_noise_cipher_decrypt(pm_noise_cipher *c, const uint8_t *ad,
                            size_t ad_len, const uint8_t *msg, size_t len,
                            uint8_t *out, size_t out_cap, size_t *out_len) {
  if (!c || !out_len || (!ad && ad_len) || (!msg && len))
    return PM_ERR_INVAL;
  if (!c->has_key)
    return PM_ERR_UNEXPECTED;
  if (len > PM_NOISE_MAX_MSG_LEN)
    return PM_ERR_FRAME_TOO_LARGE;
  if (len < PM_NOISE_TAG_LEN)
    return PM_ERR_TRUNCATED;
  if (len - PM_NOISE_TAG_LEN > out_cap)
    return PM_ERR_FULL;
  if (!out && len > PM_NOISE_TAG_LEN)
    return PM_ERR_INVAL;
  uint8_t none[1];
  int r = cipher_open(c, ad, ad_len, msg, len, out ? out : none);
  if (r == 0)
    *out_len = len - PM_NOISE_TAG_LEN;
  return r;
}

uint64_t pm_noise_cipher_nonce(const pm_noise_cipher *c) {
  return c ? c->n : 0;
}

void pm_noise_cipher_set_nonce(pm_noise_cipher *c, uint64_t n) {
  if (c)
    c->n = n;
}

/* REKEY(k) = the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zeros). */
int pm_noise_cipher_rekey(pm_noise_cipher *c) {
  static const uint8_t zeros[PM_NOISE_KEY_LEN];
  uint8_t nonce[12], out[PM_NOISE_KEY_LEN + PM_NOISE_TAG_LEN];

  if (!c)
    return PM_ERR_INVAL;
  if (!c->has_key)
    return PM_ERR_UNEXPECTED;
  cipher_nonce(nonce, NONCE_MAX);
  crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, zeros, sizeof zeros,
                                            zeros, 0, NULL, nonce, c->k);
  memcpy(c->k, out, PM_NOISE_KEY_LEN);
  sodium_memzero(out, sizeof out);
  return 0;
}

void pm_noise_cipher_clear(pm_noise_cipher *c) {
  if (c)
    sodium_memzero(c, sizeof *c);
}
