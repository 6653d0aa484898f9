/* Unit tests for runtime/core/noise.c: the Noise handshake and transport.
 *
 * The vector test replays every vector of the cacophony file (path in
 * argv[1], else PM_NOISE_VECTORS) through an initiator and a responder and
 * compares every byte; the other tests check refusals: tampering, a wrong
 * PSK, wrong associated data, nonce exhaustion, small buffers, bad names. */
#include <ctype.h>
#include <sodium.h>
#include <stdlib.h>

#include "noise.h"
#include "test.h"

static const char *vectors_path;

/* ---- a minimal JSON reader ---------------------------------------------- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jval {
  enum jtype type;
  int boolean;
  double num;
  char *str;           /* J_STR, decoded */
  struct jval **items; /* J_ARR and J_OBJ */
  char **keys;         /* J_OBJ */
  size_t count;
} jval;

typedef struct jparser {
  const char *p, *end;
  int depth;
} jparser;

static void json_free(jval *v) {
  if (!v)
    return;
  for (size_t i = 0; i < v->count; i++) {
    json_free(v->items[i]);
    if (v->keys)
      free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
  free(v);
}

static void skip_ws(jparser *ps) {
  while (ps->p < ps->end && isspace((unsigned char)*ps->p))
    ps->p++;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Appends the UTF-8 form of code point `cp` (below 0x10000) at `out`. */
static size_t put_utf8(char *out, unsigned cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  out[0] = (char)(0xe0 | (cp >> 12));
  out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[2] = (char)(0x80 | (cp & 0x3f));
  return 3;
}

/* Parses a string literal at ps->p (the opening quote). */
static char *parse_string(jparser *ps) {
  if (ps->p >= ps->end || *ps->p != '"')
    return NULL;
  ps->p++;
  /* Escapes never grow: the decoded text fits in the raw length. */
  const char *start = ps->p;
  while (ps->p < ps->end && *ps->p != '"')
    ps->p += (*ps->p == '\\' && ps->p + 1 < ps->end) ? 2 : 1;
  if (ps->p >= ps->end)
    return NULL;
  size_t raw = (size_t)(ps->p - start);
  char *s = malloc(raw + 1), *o = s;
  if (!s)
    return NULL;
  for (const char *q = start; q < ps->p; q++) {
    if (*q != '\\') {
      *o++ = *q;
      continue;
    }
    q++;
    switch (*q) {
    case 'b':
      *o++ = '\b';
      break;
    case 'f':
      *o++ = '\f';
      break;
    case 'n':
      *o++ = '\n';
      break;
    case 'r':
      *o++ = '\r';
      break;
    case 't':
      *o++ = '\t';
      break;
    case 'u': {
      unsigned cp = 0;
      for (int i = 1; i <= 4; i++) {
        int h = q + i < ps->p ? hexval(q[i]) : -1;
        if (h < 0) {
          free(s);
          return NULL;
        }
        cp = cp * 16 + (unsigned)h;
      }
      q += 4;
      o += put_utf8(o, cp);
      break;
    }
    default: /* " \ / */
      *o++ = *q;
      break;
    }
  }
  *o = '\0';
  ps->p++; /* closing quote */
  return s;
}

static jval *parse_value(jparser *ps);

/* Adds `item` (and `key` for objects) to a container; frees them on error. */
static int append(jval *v, jval *item, char *key) {
  jval **items = realloc(v->items, (v->count + 1) * sizeof *items);
  if (items)
    v->items = items;
  int keys_ok = 1;
  if (items && v->type == J_OBJ) {
    char **keys = realloc(v->keys, (v->count + 1) * sizeof *keys);
    if (keys)
      v->keys = keys;
    keys_ok = keys != NULL;
  }
  if (!items || !keys_ok) {
    json_free(item);
    free(key);
    return -1;
  }
  v->items[v->count] = item;
  if (v->type == J_OBJ)
    v->keys[v->count] = key;
  v->count++;
  return 0;
}

/* Parses an array or an object; ps->p is at '[' or '{'. */
static jval *parse_container(jparser *ps, jval *v) {
  char close = v->type == J_ARR ? ']' : '}';
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    return v;
  }
  for (;;) {
    char *key = NULL;
    if (v->type == J_OBJ) {
      skip_ws(ps);
      key = parse_string(ps);
      skip_ws(ps);
      if (!key || ps->p >= ps->end || *ps->p != ':') {
        free(key);
        break;
      }
      ps->p++;
    }
    jval *item = parse_value(ps);
    if (!item) {
      free(key);
      break;
    }
    if (append(v, item, key) < 0)
      break;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == close) {
      ps->p++;
      return v;
    }
    break;
  }
  json_free(v);
  return NULL;
}

static int match_word(jparser *ps, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
    return 0;
  ps->p += n;
  return 1;
}

static jval *parse_value(jparser *ps) {
  skip_ws(ps);
  if (ps->p >= ps->end || ps->depth > 64)
    return NULL;
  jval *v = calloc(1, sizeof *v);
  if (!v)
    return NULL;
  char c = *ps->p;
  if (c == '{' || c == '[') {
    v->type = c == '{' ? J_OBJ : J_ARR;
    ps->depth++;
    v = parse_container(ps, v);
    ps->depth--;
    return v;
  }
  if (c == '"') {
    v->type = J_STR;
    v->str = parse_string(ps);
    if (v->str)
      return v;
  } else if (match_word(ps, "true") || match_word(ps, "false")) {
    v->type = J_BOOL;
    v->boolean = ps->p[-1] == 'e' && ps->p[-2] == 'u';
    return v;
  } else if (match_word(ps, "null")) {
    return v;
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    char buf[64];
    size_t n = 0;
    while (ps->p + n < ps->end && n < sizeof buf - 1 &&
           strchr("+-.eE0123456789", ps->p[n]))
      n++;
    memcpy(buf, ps->p, n);
    buf[n] = '\0';
    char *endp;
    v->type = J_NUM;
    v->num = strtod(buf, &endp);
    if (endp == buf + n) {
      ps->p += n;
      return v;
    }
  }
  json_free(v);
  return NULL;
}

static jval *json_parse(const char *text, size_t len) {
  jparser ps = {text, text + len, 0};
  jval *v = parse_value(&ps);
  skip_ws(&ps);
  if (v && ps.p != ps.end) {
    json_free(v);
    return NULL;
  }
  return v;
}

static const jval *json_get(const jval *obj, const char *key) {
  if (!obj || obj->type != J_OBJ)
    return NULL;
  for (size_t i = 0; i < obj->count; i++)
    if (strcmp(obj->keys[i], key) == 0)
      return obj->items[i];
  return NULL;
}

static jval *json_load(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  while (buf) {
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap)
      break;
    char *bigger = realloc(buf, cap * 2);
    if (!bigger)
      free(buf);
    buf = bigger;
    cap *= 2;
  }
  fclose(f);
  jval *v = buf ? json_parse(buf, len) : NULL;
  free(buf);
  return v;
}

/* ---- the vectors -------------------------------------------------------- */

#define MSG_BUF (PM_NOISE_MAX_MSG_LEN + 1)

static uint8_t buf_a[MSG_BUF], buf_b[MSG_BUF], want[MSG_BUF], payload[MSG_BUF];

/* Decodes a hex string into `out`; returns its length or -1. */
static long unhex(const jval *v, uint8_t *out, size_t cap) {
  if (!v || v->type != J_STR)
    return -1;
  size_t n = strlen(v->str);
  if (n % 2 || n / 2 > cap)
    return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hexval(v->str[2 * i]), lo = hexval(v->str[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out[i] = (uint8_t)(hi * 16 + lo);
  }
  return (long)(n / 2);
}

/* Keys and inputs of one side of a vector. */
struct side {
  uint8_t prologue[256];
  size_t prologue_len;
  uint8_t s[PM_NOISE_KEY_LEN], e[PM_NOISE_KEY_LEN], rs[PM_NOISE_KEY_LEN];
  int has_s, has_e, has_rs;
  uint8_t psks[PM_NOISE_MAX_PSKS][PM_NOISE_KEY_LEN];
  size_t psk_count;
};

static int load_key(const jval *v, const char *key, uint8_t out[32], int *has) {
  const jval *k = json_get(v, key);
  *has = k != NULL;
  return !k || unhex(k, out, PM_NOISE_KEY_LEN) == PM_NOISE_KEY_LEN ? 0 : -1;
}

/* Reads the fields of one side ("init" or "resp") of a vector. */
static int load_side(const jval *v, const char *who, struct side *sd) {
  char key[32];
  memset(sd, 0, sizeof *sd);
  snprintf(key, sizeof key, "%s_prologue", who);
  long n = unhex(json_get(v, key), sd->prologue, sizeof sd->prologue);
  if (n < 0)
    return -1;
  sd->prologue_len = (size_t)n;
  snprintf(key, sizeof key, "%s_static", who);
  if (load_key(v, key, sd->s, &sd->has_s) < 0)
    return -1;
  snprintf(key, sizeof key, "%s_ephemeral", who);
  if (load_key(v, key, sd->e, &sd->has_e) < 0)
    return -1;
  snprintf(key, sizeof key, "%s_remote_static", who);
  if (load_key(v, key, sd->rs, &sd->has_rs) < 0)
    return -1;
  snprintf(key, sizeof key, "%s_psks", who);
  const jval *psks = json_get(v, key);
  if (psks && (psks->type != J_ARR || psks->count > PM_NOISE_MAX_PSKS))
    return -1;
  for (size_t i = 0; psks && i < psks->count; i++)
    if (unhex(psks->items[i], sd->psks[i], PM_NOISE_KEY_LEN) !=
        PM_NOISE_KEY_LEN)
      return -1;
  sd->psk_count = psks ? psks->count : 0;
  return 0;
}

static int side_init(pm_noise_handshake *hs, const struct side *sd,
                     pm_noise_role role, const char *name) {
  pm_noise_config cfg = {
      .role = role,
      .protocol = name,
      .prologue = sd->prologue,
      .prologue_len = sd->prologue_len,
      .local_static = sd->has_s ? sd->s : NULL,
      .remote_static = sd->has_rs ? sd->rs : NULL,
      .psks =
          sd->psk_count ? (const uint8_t(*)[PM_NOISE_KEY_LEN])sd->psks : NULL,
      .psk_count = sd->psk_count,
  };
  int r = pm_noise_handshake_init(hs, &cfg);
  if (r == 0 && sd->has_e)
    r = pm_noise_handshake_set_ephemeral(hs, sd->e);
  return r;
}

/* The base pattern of a protocol name: "XX" for "Noise_XXpsk3_25519_...". */
static void base_pattern(const char *name, char *out, size_t cap) {
  const char *p = strchr(name, '_');
  size_t n = 0;
  p = p ? p + 1 : name;
  while (n + 1 < cap && p[n] &&
         (isupper((unsigned char)p[n]) || isdigit((unsigned char)p[n])))
    n++;
  memcpy(out, p, n);
  out[n] = '\0';
}

/* Required to pass: the fundamental patterns, with or without psk. Others
 * (the deferred ones) may be reported as skipped if unsupported. */
static int is_fundamental(const char *name) {
  static const char *const fundamental[] = {"N",  "K",  "X",  "NN", "NK",
                                            "NX", "KN", "KK", "KX", "XN",
                                            "XK", "XX", "IN", "IK", "IX"};
  char base[16];
  base_pattern(name, base, sizeof base);
  for (size_t i = 0; i < sizeof fundamental / sizeof fundamental[0]; i++)
    if (strcmp(base, fundamental[i]) == 0)
      return 1;
  return 0;
}

#define VFAIL(...)                                                             \
  do {                                                                         \
    fprintf(stderr, "vector %s: ", name);                                      \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
    return 1;                                                                  \
  } while (0)

/* Checks the remote static key `hs` learned against `priv`'s public key. */
static int remote_is(const pm_noise_handshake *hs, const uint8_t priv[32]) {
  uint8_t pub[PM_NOISE_KEY_LEN];
  const uint8_t *rs = pm_noise_handshake_remote_static(hs);
  if (crypto_scalarmult_base(pub, priv) != 0)
    return 0;
  return rs && memcmp(rs, pub, sizeof pub) == 0;
}

/* Runs the messages of one vector once the handshakes are set up. */
static int run_messages(const char *name, const jval *v,
                        pm_noise_handshake *ini, pm_noise_handshake *res,
                        const struct side *si, const struct side *sr) {
  const jval *msgs = json_get(v, "messages");
  uint8_t hash[PM_NOISE_HASH_LEN];
  pm_noise_cipher i_send, i_recv, r_send, r_recv;
  char base[16];
  int split = 0;

  base_pattern(name, base, sizeof base);
  int one_way = strlen(base) == 1; /* N, K, X: the initiator only sends */

  if (!msgs || msgs->type != J_ARR)
    VFAIL("no messages");
  if (unhex(json_get(v, "handshake_hash"), hash, sizeof hash) !=
      PM_NOISE_HASH_LEN)
    VFAIL("bad handshake_hash");
  for (size_t m = 0; m < msgs->count; m++) {
    long plen = unhex(json_get(msgs->items[m], "payload"), payload, MSG_BUF);
    long clen = unhex(json_get(msgs->items[m], "ciphertext"), want, MSG_BUF);
    int from_init = one_way || m % 2 == 0;
    size_t out_len = 0, got_len = 0;
    int r;
    if (plen < 0 || clen < 0)
      VFAIL("message %zu: bad hex", m);
    if (!split) {
      pm_noise_handshake *w = from_init ? ini : res;
      pm_noise_handshake *rd = from_init ? res : ini;
      if (!pm_noise_handshake_writing(w))
        VFAIL("message %zu: writer not ready", m);
      r = pm_noise_handshake_write(w, payload, (size_t)plen, buf_a, MSG_BUF,
                                   &out_len);
      if (r != 0)
        VFAIL("message %zu: write: %s", m, pm_errname(r));
      r = pm_noise_handshake_read(rd, buf_a, out_len, buf_b, MSG_BUF, &got_len);
      if (r != 0)
        VFAIL("message %zu: read: %s", m, pm_errname(r));
    } else {
      pm_noise_cipher *enc = from_init ? &i_send : &r_send;
      pm_noise_cipher *dec = from_init ? &r_recv : &i_recv;
      r = pm_noise_cipher_encrypt(enc, NULL, 0, payload, (size_t)plen, buf_a,
                                  MSG_BUF, &out_len);
      if (r != 0)
        VFAIL("message %zu: encrypt: %s", m, pm_errname(r));
      r = pm_noise_cipher_decrypt(dec, NULL, 0, buf_a, out_len, buf_b, MSG_BUF,
                                  &got_len);
      if (r != 0)
        VFAIL("message %zu: decrypt: %s", m, pm_errname(r));
    }
    if (out_len != (size_t)clen || memcmp(buf_a, want, out_len) != 0)
      VFAIL("message %zu: ciphertext differs", m);
    if (got_len != (size_t)plen || memcmp(buf_b, payload, got_len) != 0)
      VFAIL("message %zu: payload differs", m);

    if (!split && pm_noise_handshake_is_complete(ini) &&
        pm_noise_handshake_is_complete(res)) {
      if (memcmp(pm_noise_handshake_hash(ini), hash, sizeof hash) != 0 ||
          memcmp(pm_noise_handshake_hash(res), hash, sizeof hash) != 0)
        VFAIL("handshake hash differs");
      if ((si->has_s && !remote_is(res, si->s)) ||
          (sr->has_s && !remote_is(ini, sr->s)))
        VFAIL("remote static key differs");
      if (pm_noise_handshake_split(ini, &i_send, &i_recv) != 0 ||
          pm_noise_handshake_split(res, &r_send, &r_recv) != 0)
        VFAIL("split failed");
      split = 1;
    }
  }
  if (!split)
    VFAIL("handshake did not complete");
  pm_noise_cipher_clear(&i_send);
  pm_noise_cipher_clear(&i_recv);
  pm_noise_cipher_clear(&r_send);
  pm_noise_cipher_clear(&r_recv);
  return 0;
}

/* Returns 0 when the vector passes, 1 when it fails, 2 when skipped. */
static int run_vector(const jval *v) {
  const jval *pn = json_get(v, "protocol_name");
  const char *name = pn && pn->type == J_STR ? pn->str : "(unnamed)";
  struct side si, sr;
  pm_noise_handshake ini, res;

  if (load_side(v, "init", &si) < 0 || load_side(v, "resp", &sr) < 0)
    VFAIL("cannot read the vector's fields");
  int ri = side_init(&ini, &si, PM_NOISE_INITIATOR, name);
  int rr = side_init(&res, &sr, PM_NOISE_RESPONDER, name);
  int result;
  if ((ri != 0 || rr != 0) && !is_fundamental(name)) {
    printf("SKIP %s (unsupported: %s)\n", name, pm_errname(ri ? ri : rr));
    result = 2;
  } else if (ri != 0 || rr != 0) {
    fprintf(stderr, "vector %s: init: %s\n", name, pm_errname(ri ? ri : rr));
    result = 1;
  } else {
    result = run_messages(name, v, &ini, &res, &si, &sr);
  }
  pm_noise_handshake_clear(&ini);
  pm_noise_handshake_clear(&res);
  return result;
}

static void test_vectors(void) {
  jval *doc = vectors_path ? json_load(vectors_path) : NULL;
  const jval *vectors = json_get(doc, "vectors");
  int passed = 0, failed = 0, skipped = 0;
  int seen_xx = 0, seen_xxpsk3 = 0, seen_nn = 0;

  CHECK(vectors != NULL && vectors->type == J_ARR);
  if (!vectors || vectors->type != J_ARR) {
    fprintf(stderr, "cannot read vectors from %s\n",
            vectors_path ? vectors_path : "(no path)");
    json_free(doc);
    return;
  }
  for (size_t i = 0; i < vectors->count; i++) {
    const jval *pn = json_get(vectors->items[i], "protocol_name");
    const char *name = pn && pn->type == J_STR ? pn->str : "";
    int r = run_vector(vectors->items[i]);
    passed += r == 0;
    failed += r == 1;
    skipped += r == 2;
    if (r == 1)
      fprintf(stderr, "FAIL vector %s\n", name);
    seen_xx += r == 0 && strstr(name, "Noise_XX_") == name;
    seen_xxpsk3 += r == 0 && strstr(name, "Noise_XXpsk3_") == name;
    seen_nn += r == 0 && strstr(name, "Noise_NN") == name;
  }
  printf("vectors: %zu run, %d passed, %d failed, %d skipped\n", vectors->count,
         passed, failed, skipped);
  CHECK_INT(failed, 0);
  CHECK(seen_xx > 0 && seen_xxpsk3 > 0 && seen_nn >= 3);
  json_free(doc);
}

/* ---- refusals ----------------------------------------------------------- */

static const char xx[] = "Noise_XX_25519_ChaChaPoly_BLAKE2b";
static const char xxpsk3[] = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b";

/* A pair with fixed keys: statics 1.. and 2.., ephemerals 3.. and 4... */
static void make_pair(const char *proto, pm_noise_handshake *ini,
                      pm_noise_handshake *res, uint8_t psk_i, uint8_t psk_r) {
  uint8_t s_i[32], s_r[32], e_i[32], e_r[32], pi[1][32], pr[1][32];
  memset(s_i, 1, 32);
  memset(s_r, 2, 32);
  memset(e_i, 3, 32);
  memset(e_r, 4, 32);
  memset(pi, psk_i, sizeof pi);
  memset(pr, psk_r, sizeof pr);
  int psk = strstr(proto, "psk") != NULL;
  pm_noise_config ci = {PM_NOISE_INITIATOR,
                        proto,
                        (const uint8_t *)"prologue",
                        8,
                        s_i,
                        NULL,
                        psk ? (const uint8_t(*)[32])pi : NULL,
                        psk ? 1u : 0u};
  pm_noise_config cr = ci;
  cr.role = PM_NOISE_RESPONDER;
  cr.local_static = s_r;
  cr.psks = psk ? (const uint8_t(*)[32])pr : NULL;
  CHECK_INT(pm_noise_handshake_init(ini, &ci), 0);
  CHECK_INT(pm_noise_handshake_init(res, &cr), 0);
  CHECK_INT(pm_noise_handshake_set_ephemeral(ini, e_i), 0);
  CHECK_INT(pm_noise_handshake_set_ephemeral(res, e_r), 0);
}

/* One handshake message from `w` to `rd`; returns the read's result. */
static int exchange(pm_noise_handshake *w, pm_noise_handshake *rd) {
  size_t n = 0, got = 0;
  int r = pm_noise_handshake_write(w, (const uint8_t *)"hello", 5, buf_a,
                                   MSG_BUF, &n);
  if (r != 0)
    return r;
  return pm_noise_handshake_read(rd, buf_a, n, buf_b, MSG_BUF, &got);
}

/* Completes an XX-shaped handshake and splits both sides. */
static void connect_pair(const char *proto, pm_noise_cipher *i_send,
                         pm_noise_cipher *i_recv, pm_noise_cipher *r_send,
                         pm_noise_cipher *r_recv) {
  pm_noise_handshake ini, res;
  make_pair(proto, &ini, &res, 7, 7);
  CHECK_INT(exchange(&ini, &res), 0);
  CHECK_INT(exchange(&res, &ini), 0);
  CHECK_INT(exchange(&ini, &res), 0);
  CHECK(pm_noise_handshake_is_complete(&ini));
  CHECK(pm_noise_handshake_is_complete(&res));
  CHECK_MEM(pm_noise_handshake_hash(&ini), pm_noise_handshake_hash(&res),
            PM_NOISE_HASH_LEN);
  CHECK_INT(pm_noise_handshake_split(&ini, i_send, i_recv), 0);
  CHECK_INT(pm_noise_handshake_split(&res, r_send, r_recv), 0);
  CHECK_INT(pm_noise_handshake_split(&res, r_send, r_recv), PM_ERR_UNEXPECTED);
  pm_noise_handshake_clear(&ini);
  pm_noise_handshake_clear(&res);
}

/* Every single flipped bit position in message 2 of XX, and every
 * truncation, is refused; the reader's state is untouched, so the genuine
 * message is still accepted afterwards. */
static void test_tampered_handshake(void) {
  pm_noise_handshake ini, res;
  uint8_t msg[256], out[256];
  size_t n = 0, got = 0;

  make_pair(xx, &ini, &res, 0, 0);
  CHECK_INT(exchange(&ini, &res), 0);
  CHECK_INT(pm_noise_handshake_write(&res, (const uint8_t *)"payload", 7, msg,
                                     sizeof msg, &n),
            0);
  CHECK_INT(n, 32 + 48 + 7 + 16);
  int refused = 0;
  for (size_t i = 0; i < n; i++) {
    msg[i] ^= 0x01;
    refused += pm_noise_handshake_read(&ini, msg, n, out, sizeof out, &got) ==
               PM_NOISE_ERR_DECRYPT;
    msg[i] ^= 0x01;
  }
  CHECK_INT(refused, (int)n);
  for (size_t len = 0; len < n; len++) {
    int r = pm_noise_handshake_read(&ini, msg, len, out, sizeof out, &got);
    CHECK(r == PM_ERR_TRUNCATED || r == PM_NOISE_ERR_DECRYPT);
  }
  /* A zero (low-order) ephemeral key makes the ee DH zero: refused. */
  uint8_t evil[256];
  memcpy(evil, msg, n);
  memset(evil, 0, 32);
  CHECK_INT(pm_noise_handshake_read(&ini, evil, n, out, sizeof out, &got),
            PM_NOISE_ERR_DECRYPT);
  CHECK(!pm_noise_handshake_is_complete(&ini));
  CHECK_INT(pm_noise_handshake_read(&ini, msg, n, out, sizeof out, &got), 0);
  CHECK_INT(got, 7);
  CHECK_MEM(out, "payload", 7);
  CHECK_INT(exchange(&ini, &res), 0);
  CHECK(pm_noise_handshake_is_complete(&res));
  pm_noise_handshake_clear(&ini);
  pm_noise_handshake_clear(&res);
}

/* With psk3 the PSK enters in message 3: messages 1 and 2 go through, the
 * responder refuses message 3, and neither side completes. */
static void test_psk_mismatch(void) {
  pm_noise_handshake ini, res;
  make_pair(xxpsk3, &ini, &res, 7, 8);
  CHECK_INT(exchange(&ini, &res), 0);
  CHECK_INT(exchange(&res, &ini), 0);
  CHECK_INT(exchange(&ini, &res), PM_NOISE_ERR_DECRYPT);
  CHECK(!pm_noise_handshake_is_complete(&res));
  pm_noise_cipher a, b;
  CHECK_INT(pm_noise_handshake_split(&res, &a, &b), PM_ERR_UNEXPECTED);
  pm_noise_handshake_clear(&ini);
  pm_noise_handshake_clear(&res);

  /* The same PSK on both sides completes. */
  make_pair(xxpsk3, &ini, &res, 8, 8);
  CHECK_INT(exchange(&ini, &res), 0);
  CHECK_INT(exchange(&res, &ini), 0);
  CHECK_INT(exchange(&ini, &res), 0);
  CHECK(pm_noise_handshake_is_complete(&res));
  pm_noise_handshake_clear(&ini);
  pm_noise_handshake_clear(&res);
}

static void test_transport_and_wrong_ad(void) {
  pm_noise_cipher is, ir, rs, rr;
  uint8_t ct[64], pt[64];
  size_t n = 0, got = 0;

  connect_pair(xxpsk3, &is, &ir, &rs, &rr);
  CHECK_INT(pm_noise_cipher_encrypt(&is, (const uint8_t *)"ad1", 3,
                                    (const uint8_t *)"secret", 6, ct, sizeof ct,
                                    &n),
            0);
  CHECK_INT(n, 6 + PM_NOISE_TAG_LEN);
  CHECK_INT(pm_noise_cipher_nonce(&is), 1);
  CHECK_INT(pm_noise_cipher_decrypt(&rr, (const uint8_t *)"ad2", 3, ct, n, pt,
                                    sizeof pt, &got),
            PM_NOISE_ERR_DECRYPT);
  CHECK_INT(pm_noise_cipher_decrypt(&rr, NULL, 0, ct, n, pt, sizeof pt, &got),
            PM_NOISE_ERR_DECRYPT);
  CHECK_INT(pm_noise_cipher_nonce(&rr), 0); /* failures do not advance */
  CHECK_INT(pm_noise_cipher_decrypt(&rr, (const uint8_t *)"ad1", 3, ct, n, pt,
                                    sizeof pt, &got),
            0);
  CHECK_INT(got, 6);
  CHECK_MEM(pt, "secret", 6);
  /* A replay of the same message is refused: the nonce moved on. */
  CHECK_INT(pm_noise_cipher_decrypt(&rr, (const uint8_t *)"ad1", 3, ct, n, pt,
                                    sizeof pt, &got),
            PM_NOISE_ERR_DECRYPT);
  /* The other direction uses the other key. */
  CHECK_INT(pm_noise_cipher_encrypt(&rs, NULL, 0, (const uint8_t *)"back", 4,
                                    ct, sizeof ct, &n),
            0);
  CHECK_INT(pm_noise_cipher_decrypt(&rr, NULL, 0, ct, n, pt, sizeof pt, &got),
            PM_NOISE_ERR_DECRYPT);
  CHECK_INT(pm_noise_cipher_decrypt(&ir, NULL, 0, ct, n, pt, sizeof pt, &got),
            0);
  /* Rekey on both ends keeps them talking. */
  CHECK_INT(pm_noise_cipher_rekey(&is), 0);
  CHECK_INT(pm_noise_cipher_rekey(&rr), 0);
  CHECK_INT(pm_noise_cipher_encrypt(&is, NULL, 0, (const uint8_t *)"x", 1, ct,
                                    sizeof ct, &n),
            0);
  CHECK_INT(pm_noise_cipher_decrypt(&rr, NULL, 0, ct, n, pt, sizeof pt, &got),
            0);
  /* A cipher without a key refuses rather than pass plaintext through. */
  pm_noise_cipher empty;
  memset(&empty, 0, sizeof empty);
  CHECK_INT(pm_noise_cipher_encrypt(&empty, NULL, 0, (const uint8_t *)"x", 1,
                                    ct, sizeof ct, &n),
            PM_ERR_UNEXPECTED);
  pm_noise_cipher_clear(&is);
  pm_noise_cipher_clear(&ir);
  pm_noise_cipher_clear(&rs);
  pm_noise_cipher_clear(&rr);
}

/* 2^64-1 is reserved: the last usable nonce is 2^64-2. */
static void test_nonce_exhaustion(void) {
  pm_noise_cipher is, ir, rs, rr;
  uint8_t ct[64], pt[64];
  size_t n = 0, got = 0;

  connect_pair(xx, &is, &ir, &rs, &rr);
  pm_noise_cipher_set_nonce(&is, UINT64_MAX - 1);
  pm_noise_cipher_set_nonce(&rr, UINT64_MAX - 1);
  CHECK_INT(pm_noise_cipher_encrypt(&is, NULL, 0, (const uint8_t *)"last", 4,
                                    ct, sizeof ct, &n),
            0);
  CHECK(pm_noise_cipher_nonce(&is) == UINT64_MAX);
  CHECK_INT(pm_noise_cipher_decrypt(&rr, NULL, 0, ct, n, pt, sizeof pt, &got),
            0);
  CHECK_INT(pm_noise_cipher_encrypt(&is, NULL, 0, (const uint8_t *)"more", 4,
                                    ct, sizeof ct, &n),
            PM_NOISE_ERR_NONCE);
  CHECK_INT(pm_noise_cipher_decrypt(&rr, NULL, 0, ct, n, pt, sizeof pt, &got),
            PM_NOISE_ERR_NONCE);
  CHECK(pm_noise_cipher_nonce(&is) == UINT64_MAX);
  CHECK(pm_noise_cipher_nonce(&rr) == UINT64_MAX);
  pm_noise_cipher_clear(&is);
  pm_noise_cipher_clear(&ir);
  pm_noise_cipher_clear(&rs);
  pm_noise_cipher_clear(&rr);
}

/* Too-small buffers and oversized messages are refused without changing
 * state: the next call with room gives the same bytes as a fresh run. */
static void test_buffer_limits(void) {
  pm_noise_handshake ini, res, ini2, res2;
  uint8_t msg[256], out[256], ref[256];
  size_t n = 0, got = 0, ref_n = 0;

  make_pair(xx, &ini, &res, 0, 0);
  make_pair(xx, &ini2, &res2, 0, 0);
  CHECK_INT(pm_noise_handshake_overhead(&ini), 32);
  CHECK_INT(
      pm_noise_handshake_write(&ini, (const uint8_t *)"abc", 3, msg, 34, &n),
      PM_ERR_FULL);
  CHECK_INT(pm_noise_handshake_write(&ini, payload, PM_NOISE_MAX_MSG_LEN - 31,
                                     buf_a, MSG_BUF, &n),
            PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(
      pm_noise_handshake_write(&ini, (const uint8_t *)"abc", 3, msg, 35, &n),
      0);
  CHECK_INT(pm_noise_handshake_write(&ini2, (const uint8_t *)"abc", 3, ref,
                                     sizeof ref, &ref_n),
            0);
  CHECK_INT(n, ref_n);
  CHECK_MEM(msg, ref, n);

  CHECK_INT(pm_noise_handshake_read(&res, msg, n, out, 2, &got), PM_ERR_FULL);
  CHECK_INT(pm_noise_handshake_read(&res, buf_a, PM_NOISE_MAX_MSG_LEN + 1, out,
                                    sizeof out, &got),
            PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(pm_noise_handshake_read(&res, msg, n, out, 3, &got), 0);
  CHECK_MEM(out, "abc", 3);

  /* Message 2: e, ee, s, es + tagged payload. */
  CHECK_INT(pm_noise_handshake_overhead(&res), 32 + 48 + 16);
  CHECK_INT(pm_noise_handshake_write(&res, NULL, 0, msg, 95, &n), PM_ERR_FULL);
  CHECK_INT(pm_noise_handshake_write(&res, NULL, 0, msg, 96, &n), 0);
  CHECK_INT(n, 96);
  CHECK_INT(pm_noise_handshake_read(&ini, msg, n, NULL, 0, &got), 0);
  CHECK_INT(got, 0);
  pm_noise_handshake_clear(&ini);
  pm_noise_handshake_clear(&res);
  pm_noise_handshake_clear(&ini2);
  pm_noise_handshake_clear(&res2);

  pm_noise_cipher is, ir, rs, rr;
  connect_pair(xx, &is, &ir, &rs, &rr);
  CHECK_INT(pm_noise_cipher_encrypt(&is, NULL, 0, (const uint8_t *)"12345", 5,
                                    msg, 20, &n),
            PM_ERR_FULL);
  CHECK_INT(pm_noise_cipher_nonce(&is), 0);
  CHECK_INT(pm_noise_cipher_encrypt(&is, NULL, 0, payload,
                                    PM_NOISE_MAX_PAYLOAD + 1, buf_a, MSG_BUF,
                                    &n),
            PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(pm_noise_cipher_encrypt(&is, NULL, 0, payload, PM_NOISE_MAX_PAYLOAD,
                                    buf_a, MSG_BUF, &n),
            0);
  CHECK_INT(n, PM_NOISE_MAX_MSG_LEN);
  CHECK_INT(pm_noise_cipher_decrypt(&rr, NULL, 0, buf_a, n, buf_b,
                                    PM_NOISE_MAX_PAYLOAD - 1, &got),
            PM_ERR_FULL);
  CHECK_INT(
      pm_noise_cipher_decrypt(&rr, NULL, 0, buf_a, 15, buf_b, MSG_BUF, &got),
      PM_ERR_TRUNCATED);
  CHECK_INT(pm_noise_cipher_nonce(&rr), 0);
  CHECK_INT(
      pm_noise_cipher_decrypt(&rr, NULL, 0, buf_a, n, buf_b, MSG_BUF, &got), 0);
  CHECK_INT(got, PM_NOISE_MAX_PAYLOAD);
  pm_noise_cipher_clear(&is);
  pm_noise_cipher_clear(&ir);
  pm_noise_cipher_clear(&rs);
  pm_noise_cipher_clear(&rr);
}

static int init_name(const char *proto, pm_noise_role role, const uint8_t *rs) {
  uint8_t s[32], psks[2][32];
  memset(s, 1, sizeof s);
  memset(psks, 9, sizeof psks);
  pm_noise_config cfg = {
      role, proto, NULL, 0, s, rs, (const uint8_t(*)[32])psks, 1};
  pm_noise_handshake hs;
  int r = pm_noise_handshake_init(&hs, &cfg);
  pm_noise_handshake_clear(&hs);
  return r;
}

static void test_bad_setup(void) {
  uint8_t rs[32];
  memset(rs, 5, sizeof rs);
  CHECK_INT(init_name(xxpsk3, PM_NOISE_INITIATOR, NULL), 0);
  CHECK_INT(init_name("Noise_NKpsk0_25519_ChaChaPoly_BLAKE2b",
                      PM_NOISE_INITIATOR, rs),
            0);
  static const char *const bad[] = {
      "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s",
      "Noise_XXpsk3_448_ChaChaPoly_BLAKE2b",
      "Noise_XXpsk3_25519_AESGCM_BLAKE2b",
      "Noise_XYpsk3_25519_ChaChaPoly_BLAKE2b",
      "Noise_xxpsk3_25519_ChaChaPoly_BLAKE2b",
      "Noise_XXpsk4_25519_ChaChaPoly_BLAKE2b",
      "Noise_XXpsk_25519_ChaChaPoly_BLAKE2b",
      "Noise_XXpsk3+psk3_25519_ChaChaPoly_BLAKE2b",
      "Noise_XXfallback_25519_ChaChaPoly_BLAKE2b",
      "Noise_XXpsk3+_25519_ChaChaPoly_BLAKE2b",
      "Noise__25519_ChaChaPoly_BLAKE2b",
      "Noise_XX",
      "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (init_name(bad[i], PM_NOISE_INITIATOR, NULL) != PM_ERR_INVAL) {
      fprintf(stderr, "accepted bad name \"%s\"\n", bad[i]);
      CHECK(0);
    }
  /* Two psk tokens but one PSK given. */
  CHECK_INT(init_name("Noise_XXpsk0+psk3_25519_ChaChaPoly_BLAKE2b",
                      PM_NOISE_INITIATOR, NULL),
            PM_ERR_INVAL);
  /* NK needs the responder's key; XX must not be given one. */
  CHECK_INT(init_name("Noise_NKpsk0_25519_ChaChaPoly_BLAKE2b",
                      PM_NOISE_INITIATOR, NULL),
            PM_ERR_INVAL);
  CHECK_INT(init_name(xxpsk3, PM_NOISE_INITIATOR, rs), PM_ERR_INVAL);
  /* XX needs our static key. */
  pm_noise_config cfg = {PM_NOISE_RESPONDER, xx, NULL, 0, NULL, NULL, NULL, 0};
  pm_noise_handshake hs;
  CHECK_INT(pm_noise_handshake_init(&hs, &cfg), PM_ERR_INVAL);
  CHECK_INT(pm_noise_handshake_init(&hs, NULL), PM_ERR_INVAL);
  pm_noise_handshake_clear(&hs);
}

static void test_turns_and_ephemeral(void) {
  pm_noise_handshake ini, res;
  uint8_t s[32], e[32], out[256];
  size_t n = 0;
  memset(s, 1, sizeof s);
  memset(e, 3, sizeof e);
  pm_noise_config cfg = {PM_NOISE_INITIATOR, xx, NULL, 0, s, NULL, NULL, 0};
  CHECK_INT(pm_noise_handshake_init(&ini, &cfg), 0);
  /* No ephemeral key yet: the core never draws randomness itself. */
  CHECK_INT(pm_noise_handshake_write(&ini, NULL, 0, out, sizeof out, &n),
            PM_ERR_INVAL);
  CHECK_INT(pm_noise_handshake_read(&ini, out, 32, out, sizeof out, &n),
            PM_ERR_UNEXPECTED);
  CHECK_INT(pm_noise_handshake_set_ephemeral(&ini, e), 0);
  CHECK_INT(pm_noise_handshake_set_ephemeral(&ini, e), PM_ERR_UNEXPECTED);
  cfg.role = PM_NOISE_RESPONDER;
  CHECK_INT(pm_noise_handshake_init(&res, &cfg), 0);
  CHECK(!pm_noise_handshake_writing(&res));
  CHECK_INT(pm_noise_handshake_write(&res, NULL, 0, out, sizeof out, &n),
            PM_ERR_UNEXPECTED);
  CHECK(pm_noise_handshake_writing(&ini));
  CHECK_INT(pm_noise_handshake_write(&ini, NULL, 0, out, sizeof out, &n), 0);
  CHECK_INT(pm_noise_handshake_write(&ini, NULL, 0, out, sizeof out, &n),
            PM_ERR_UNEXPECTED);
  pm_noise_cipher a, b;
  CHECK_INT(pm_noise_handshake_split(&ini, &a, &b), PM_ERR_UNEXPECTED);
  pm_noise_handshake_clear(&ini);
  pm_noise_handshake_clear(&res);
}

/* In a one-way pattern only the initiator sends, after the handshake too. */
static void test_one_way(void) {
  static const char n_proto[] = "Noise_N_25519_ChaChaPoly_BLAKE2b";
  uint8_t s_r[32], rs[32], e[32], msg[128], out[128];
  size_t n = 0, got = 0;
  memset(s_r, 2, sizeof s_r);
  memset(e, 3, sizeof e);
  CHECK_INT(crypto_scalarmult_base(rs, s_r), 0);
  pm_noise_config ci = {
      PM_NOISE_INITIATOR, n_proto, NULL, 0, NULL, rs, NULL, 0};
  pm_noise_config cr = {
      PM_NOISE_RESPONDER, n_proto, NULL, 0, s_r, NULL, NULL, 0};
  pm_noise_handshake ini, res;
  CHECK_INT(pm_noise_handshake_init(&ini, &ci), 0);
  CHECK_INT(pm_noise_handshake_init(&res, &cr), 0);
  CHECK_INT(pm_noise_handshake_set_ephemeral(&ini, e), 0);
  CHECK_INT(pm_noise_handshake_write(&ini, (const uint8_t *)"hi", 2, msg,
                                     sizeof msg, &n),
            0);
  CHECK_INT(n, 32 + 2 + 16);
  CHECK_INT(pm_noise_handshake_read(&res, msg, n, out, sizeof out, &got), 0);
  CHECK(pm_noise_handshake_is_complete(&ini));
  CHECK(pm_noise_handshake_is_complete(&res));
  pm_noise_cipher is, ir, rsend, rrecv;
  CHECK_INT(pm_noise_handshake_split(&ini, &is, &ir), 0);
  CHECK_INT(pm_noise_handshake_split(&res, &rsend, &rrecv), 0);
  CHECK_INT(pm_noise_cipher_encrypt(&rsend, NULL, 0, (const uint8_t *)"x", 1,
                                    msg, sizeof msg, &n),
            PM_ERR_UNEXPECTED);
  CHECK_INT(pm_noise_cipher_encrypt(&is, NULL, 0, (const uint8_t *)"x", 1, msg,
                                    sizeof msg, &n),
            0);
  CHECK_INT(
      pm_noise_cipher_decrypt(&ir, NULL, 0, msg, n, out, sizeof out, &got),
      PM_ERR_UNEXPECTED);
  CHECK_INT(
      pm_noise_cipher_decrypt(&rrecv, NULL, 0, msg, n, out, sizeof out, &got),
      0);
  pm_noise_handshake_clear(&ini);
  pm_noise_handshake_clear(&res);
  pm_noise_cipher_clear(&is);
  pm_noise_cipher_clear(&rrecv);
}

int main(int argc, char **argv) {
  static const struct pm_test_case cases[] = {
      TEST_CASE(test_vectors),          TEST_CASE(test_tampered_handshake),
      TEST_CASE(test_psk_mismatch),     TEST_CASE(test_transport_and_wrong_ad),
      TEST_CASE(test_nonce_exhaustion), TEST_CASE(test_buffer_limits),
      TEST_CASE(test_bad_setup),        TEST_CASE(test_turns_and_ephemeral),
      TEST_CASE(test_one_way),
  };
#ifdef PM_NOISE_VECTORS
  vectors_path = PM_NOISE_VECTORS;
#endif
  if (argc > 1)
    vectors_path = argv[1];
  if (sodium_init() < 0)
    return 1;
  return pm_test_run(cases, sizeof cases / sizeof cases[0]);
}
