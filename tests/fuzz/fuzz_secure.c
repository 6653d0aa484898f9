/* Fuzz target: the secure link channel (runtime/core/secure.h), which
 * decodes a peer's raw TCP bytes before anything else sees them.
 *
 * Input layout:
 *   byte 0  flags (FLAG_* below): the channel's role, whether a real peer
 *           drives the other end, and what else the harness does
 *   byte 1  chunking, as in fuzz_node.c: 0 feeds each stretch of bytes in
 *           one pm_secure_recv call; otherwise chunks of
 *           1..((b & 0x3f) + 1) * 8 bytes, or single bytes when bit 6 is set
 *           (after CALL_BUDGET chunks, each stretch goes in one call)
 *   byte 2  allocation failure rate, out of 256, with FLAG_ALLOC_FAIL (the
 *           channel's own allocations and its plaintext and output buffers)
 *   byte 3  how much plaintext the channel sends (send_sizes[] below): low
 *           nibble before the input (FLAG_EARLY_SEND), high nibble after it
 *           (FLAG_LATE_SEND)
 *   byte 4  bits 0..1: with FLAG_PEER, how the peer's configuration differs
 *           (0 not, 1 another PSK, 2 another mesh tag, 3 the other password
 *           flag); bits 2..7: n, with FLAG_LATE_START, how much input comes
 *           before pm_secure_start (4n bytes raw, n script operations)
 *   5..     without FLAG_PEER ("raw"): the bytes the peer sends, as from an
 *           initiator to a responder under test, or as from a responder to an
 *           initiator under test (whose msg1 goes nowhere);
 *           with FLAG_PEER ("scripted"): operations (OP_* below). A real
 *           pm_secure peer answers the channel; its bytes wait in a queue
 *           that the script delivers, corrupts, cuts, replays or extends;
 *           both sides send plaintext. At the end the queue is delivered.
 * Missing header or operand bytes count as zero.
 *
 * Keys are fixed (seeded Ed25519 identities, fixed PSK and mesh tag) and
 * each side's randomness is a fixed sequence, so a recorded handshake from
 * make_secure_corpus.c gets a raw channel to the transport records. The
 * plaintext either side sends is a fixed byte pattern, one per direction.
 *
 * These must hold, besides memory safety:
 *   - every call returns 0 or an error secure.h lists for it; after the
 *     first error every later call returns that error and does nothing more
 *     (pm_secure_start twice on an initiator is a misuse, not a failure);
 *   - plaintext appears only from an established channel (or in the call
 *     that fails after it), and is always exactly the next bytes of what the
 *     peer sent: nothing forged, replayed, dropped or reordered gets through;
 *   - pm_secure_peer_key and pm_secure_handshake_hash are non-NULL exactly
 *     while established, the key is the peer's identity, and the hash is the
 *     peer's when both sides are established;
 *   - a header is refused as soon as it is whole (the version from its
 *     first byte), and nothing but an allocation fails anywhere else than
 *     at the end of a header or of a record;
 *   - everything written parses as records: msg1 (66 bytes), msg2 (192), msg3
 *     (160) in order, transport records only after them and, for each call,
 *     full ones but the last, carrying exactly what was sent or queued; a
 *     Reject only from a failing responder, last, with the reason of its
 *     error; a call that succeeds never loses output to a failed allocation;
 *   - WRONG_MESH, WRONG_PASSWORD and REFUSED come to an initiator only before
 *     the first plaintext (a Reject), to a responder only in the handshake;
 *   - sending before the handshake queues at most PM_SECURE_MAX_PENDING
 *     bytes, and the next byte fails with PM_ERR_FULL;
 *   - the channel holds at most one record and the queue, established and
 *     between records at most IDLE_KEEP bytes; a failed channel holds no
 *     memory, and pm_secure_clear releases everything;
 *   - raw: feeding the same bytes in other chunks (one call, or single bytes)
 *     gives the same result, output and plaintext;
 *   - scripted, untampered, with enough memory: both sides end established
 *     with all plaintext delivered both ways, or, with a mismatched peer,
 *     both fail with PM_ERR_WRONG_MESH or PM_ERR_WRONG_PASSWORD.
 * The real peer of a scripted run is checked the same way. A failed check
 * aborts. Built with replay.c it replays a corpus under `make test`. */
#include <sodium.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "noise.h"
#include "secure.h"
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
#define FUZZ_FAIL(what)                                                        \
  do {                                                                         \
    fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__,  \
            what);                                                             \
    abort();                                                                   \
  } while (0)

/* Build with -DFUZZ_TRACE to see each call and its result. */
#ifdef FUZZ_TRACE
#define TRACE(...) fprintf(stderr, __VA_ARGS__)
#else
#define TRACE(...) ((void)0)
#endif

enum {
  FLAG_INITIATOR = 0x01,  /* the channel under test dials */
  FLAG_PEER = 0x02,       /* a real peer and a script (else raw bytes) */
  FLAG_PASSWORD = 0x04,   /* a password mesh */
  FLAG_EARLY_SEND = 0x08, /* the channel sends before the input */
  FLAG_LATE_SEND = 0x10,  /* the channel sends after the input */
  FLAG_ALLOC_FAIL = 0x20, /* allocations fail now and then */
  FLAG_LATE_START = 0x40, /* pm_secure_start comes after some input */
  FLAG_RESTART = 0x80,    /* pm_secure_start again at the end */
};

enum {
  MISMATCH_NONE,
  MISMATCH_PSK,
  MISMATCH_MESH,
  MISMATCH_PASSWORD,
};

/* Script operations: the low 3 bits of an operation byte; operands follow
 * (u16 big-endian where it says n16). */
enum {
  OP_DELIVER,     /* n16: the next n queued bytes to the channel (0: all) */
  OP_XOR,         /* n16 offset, u8 v: queue[offset % len] ^= v */
  OP_INJECT,      /* u8 n, n bytes: into the queue, in front if bit 3 */
  OP_DROP,        /* n16: drop the first n queued bytes */
  OP_DUP,         /* n16: append a copy of the first n queued bytes */
  OP_PEER_SEND,   /* n16: the peer sends n bytes of plaintext */
  OP_TARGET_SEND, /* n16: the channel sends n bytes of plaintext */
  OP_FLUSH,       /* deliver everything queued */
};

enum call { CALL_START, CALL_RECV, CALL_SEND };

#define HEADER 5
#define TARGET_KEY_SEED 0x11 /* Ed25519 seed bytes of the two identities */
#define PEER_KEY_SEED 0x22
#define PSK_BYTE 0x50
#define TAG_BYTE 0x70
#define TARGET_RNG UINT64_C(0x853c49e6748fea9b)
#define PEER_RNG UINT64_C(0x2545f4914f6cdd1d)
#define DIR_TO_TARGET 0x3b /* plaintext patterns */
#define DIR_FROM_TARGET 0xc4
/* Handshake record payloads: e + tag + 18; e + s + tag + 96 + tag; s + tag
 * + 96 + tag. */
#define MSG1_LEN 66u
#define MSG2_LEN 192u
#define MSG3_LEN 160u
#define MEM_BOUND                                                              \
  (PM_SECURE_HEADER + PM_SECURE_MAX_PAYLOAD + PM_SECURE_MAX_PENDING)
/* What an established channel may keep between records (secure.c's
 * IN_KEEP): its receive buffer, which grows for a long record. */
#define IDLE_KEEP 4096
#define MAX_OPS 512
#define SEND_BUDGET (1u << 18) /* plaintext bytes per side and input */
#define CALL_BUDGET 4096       /* chunked calls; then whole stretches */
#define SCRATCH (2 * PM_SECURE_MAX_PLAIN)
#define RUN_SPLIT 0 /* chunking as byte 1 says */
#define RUN_WHOLE 1 /* each stretch in one call */
#define RUN_BYTES 2 /* single bytes */

static const size_t send_sizes[16] = {
    0,     1,     15,    16,    100,   1000,  4096,  4097,
    30000, 65518, 65519, 65520, 65535, 65536, 65537, 2 * PM_SECURE_MAX_PLAIN};

/* ---- fixtures ------------------------------------------------------------ */

typedef struct ident {
  uint8_t pk[crypto_sign_PUBLICKEYBYTES];
  uint8_t sk[crypto_sign_SECRETKEYBYTES];
} ident;

/* The channel's identity (0) and its peer's (1). */
static const ident *identity(int peer) {
  static ident ids[2];
  static int ready;
  if (!ready) {
    if (sodium_init() < 0)
      abort();
    for (int i = 0; i < 2; i++) {
      uint8_t seed[crypto_sign_SEEDBYTES];
      memset(seed, i ? PEER_KEY_SEED : TARGET_KEY_SEED, sizeof seed);
      crypto_sign_seed_keypair(ids[i].pk, ids[i].sk, seed);
    }
    ready = 1;
  }
  return &ids[peer];
}

/* splitmix64: the random callback. */
static uint64_t splitmix(void *ud) {
  uint64_t *x = ud;
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Byte i of the plaintext one direction carries. */
static uint8_t pattern(uint8_t dir, uint64_t i) {
  return (uint8_t)(i * 131u + dir + (i >> 8) * 7u + (i >> 16));
}

/* What a configuration points to. */
typedef struct conf_bytes {
  uint8_t psk[PM_SECURE_KEY_LEN];
  uint8_t tag[PM_SECURE_MESH_TAG_LEN];
  uint64_t rng;
} conf_bytes;

/* The configuration of the channel under test (peer 0) or of its peer
 * (peer 1), which differs from it as `mismatch` says; make_secure_corpus.c
 * builds the same ones. */
static void make_config(pm_secure_config *cfg, conf_bytes *b, int peer,
                        int initiator, int password, int mismatch) {
  const ident *id = identity(peer);
  memset(b->psk, PSK_BYTE + (peer && mismatch == MISMATCH_PSK), sizeof b->psk);
  memset(b->tag, TAG_BYTE + (peer && mismatch == MISMATCH_MESH), sizeof b->tag);
  b->rng = peer ? PEER_RNG : TARGET_RNG;
  memset(cfg, 0, sizeof *cfg);
  cfg->initiator = initiator;
  cfg->psk = b->psk;
  cfg->ed25519_sk = id->sk;
  cfg->ed25519_pk = id->pk;
  cfg->mesh_tag = b->tag;
  cfg->password = (password != 0) ^ (peer && mismatch == MISMATCH_PASSWORD);
  cfg->random = splitmix;
  cfg->random_ud = &b->rng;
}

/* ---- a counting allocator that fails on demand --------------------------- */

typedef union block {
  size_t size;
  max_align_t align;
} block;

typedef struct fuzz_alloc {
  pm_allocator a;
  int armed;
  unsigned rate; /* out of 256 */
  uint64_t rng;
  unsigned failed;
  size_t live, largest;
} fuzz_alloc;

static void *fuzz_realloc(void *ud, void *ptr, size_t size) {
  fuzz_alloc *fa = ud;
  block *b = ptr ? (block *)ptr - 1 : NULL;
  size_t old = b ? b->size : 0;
  if (size == 0) {
    fa->live -= old;
    free(b);
    return NULL;
  }
  if (fa->armed && (xorshift(&fa->rng) & 0xff) < fa->rate) {
    fa->failed++;
    return NULL;
  }
  block *n = realloc(b, sizeof *n + size);
  if (!n)
    abort();
  n->size = size;
  fa->live = fa->live - old + size;
  if (size > fa->largest)
    fa->largest = size;
  return n + 1;
}

static void alloc_init(fuzz_alloc *fa, uint8_t rate) {
  memset(fa, 0, sizeof *fa);
  fa->a.realloc = fuzz_realloc;
  fa->a.ud = fa;
  fa->rate = rate;
  fa->rng = UINT64_C(0x9e3779b97f4a7c15) ^ rate;
}

/* ---- one channel and the checks around each call ------------------------- */

/* Follows the record boundaries of the bytes a channel receives. */
typedef struct framer {
  uint8_t hdr[PM_SECURE_HEADER];
  size_t have;   /* header bytes of the current record */
  uint64_t left; /* its payload bytes still to come */
} framer;

typedef struct chan {
  const char *name;
  framer fr;
  pm_secure s;
  fuzz_alloc mem;       /* the channel's allocations */
  const fuzz_alloc *io; /* out's and plain's, when counted */
  pm_buf out, plain;
  const uint8_t *peer_pk; /* whom it must authenticate */
  uint8_t in_dir, out_dir;
  int initiator, started, err, est_seen;
  unsigned hs_out, rejects;
  uint64_t sent, got, queued; /* plaintext bytes */
  uint64_t out_total, out_hash;
} chan;

typedef struct snap {
  int err, est;
  size_t out_len, plain_len;
} snap;

static uint8_t scratch[SCRATCH];

static snap take(const chan *c) {
  snap b = {c->err, pm_secure_established(&c->s), c->out.len, c->plain.len};
  return b;
}

static int oom(const chan *c) {
  return c->mem.failed || (c->io && c->io->failed);
}

static void chan_init(chan *c, const char *name, int peer, int initiator,
                      int password, int mismatch, const fuzz_alloc *io) {
  pm_secure_config cfg;
  conf_bytes b;
  memset(c, 0, sizeof *c);
  c->name = name;
  c->initiator = initiator;
  alloc_init(&c->mem, io ? (uint8_t)io->rate : 0);
  c->io = io;
  pm_buf_init(&c->out, io ? &io->a : NULL);
  pm_buf_init(&c->plain, io ? &io->a : NULL);
  c->peer_pk = identity(!peer)->pk;
  c->in_dir = peer ? DIR_FROM_TARGET : DIR_TO_TARGET;
  c->out_dir = peer ? DIR_TO_TARGET : DIR_FROM_TARGET;
  make_config(&cfg, &b, peer, initiator, password, mismatch);
  cfg.alloc = &c->mem.a;
  FUZZ_CHECK(pm_secure_init(&c->s, &cfg) == 0);
  FUZZ_CHECK(!pm_secure_established(&c->s) && !pm_secure_error(&c->s));
  FUZZ_CHECK(c->mem.live == 0);
}

static void chan_free(chan *c) {
  pm_secure_clear(&c->s);
  FUZZ_CHECK(c->mem.live == 0);
  FUZZ_CHECK(!pm_secure_established(&c->s) && !pm_secure_peer_key(&c->s));
  pm_secure_clear(&c->s); /* again: zeroed memory is fine */
  pm_buf_free(&c->out);
  pm_buf_free(&c->plain);
}

/* Whether `r` is a result secure.h lists for a call of kind `k` on a live
 * channel. */
static int allowed(enum call k, int r) {
  switch (r) {
  case 0:
  case PM_ERR_NOMEM:
    return 1;
  case PM_ERR_VERSION:
  case PM_ERR_FRAME_TOO_LARGE:
  case PM_ERR_MALFORMED:
  case PM_ERR_WRONG_MESH:
  case PM_ERR_WRONG_PASSWORD:
  case PM_ERR_AUTH:
  case PM_ERR_REFUSED:
    return k == CALL_RECV;
  case PM_ERR_UNEXPECTED:
    return k != CALL_SEND;
  case PM_ERR_NONCE:
    return k != CALL_START;
  case PM_ERR_FULL:
    return k == CALL_SEND;
  default:
    return 0;
  }
}

static uint8_t reject_reason(int err) {
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

/* The records a call appended to `out` (from `b->out_len` on). `n` is what
 * a send call sent. */
static void check_output(chan *c, enum call k, int r, const snap *b, size_t n) {
  size_t len = c->out.len - b->out_len, off = 0;
  const uint8_t *p = len ? c->out.data + b->out_len : NULL;
  uint64_t plain = 0;
  unsigned transports = 0;
  int short_seen = 0;
  if (len)
    FUZZ_CHECK(!b->err);
  while (off < len) {
    FUZZ_CHECK(len - off >= PM_SECURE_HEADER);
    const uint8_t *rec = p + off;
    uint32_t plen = pm_load_u32(rec + 2);
    FUZZ_CHECK(rec[0] == PM_SECURE_VERSION);
    FUZZ_CHECK(plen <= PM_SECURE_MAX_PAYLOAD);
    FUZZ_CHECK(plen <= len - off - PM_SECURE_HEADER);
    switch (rec[1]) {
    case PM_SECURE_REC_HANDSHAKE:
      FUZZ_CHECK(transports == 0);
      c->hs_out++;
      if (c->initiator)
        FUZZ_CHECK((c->hs_out == 1 && k == CALL_START && plen == MSG1_LEN) ||
                   (c->hs_out == 2 && k == CALL_RECV && plen == MSG3_LEN));
      else
        FUZZ_CHECK(c->hs_out == 1 && k == CALL_RECV && plen == MSG2_LEN);
      break;
    case PM_SECURE_REC_TRANSPORT:
      FUZZ_CHECK(k != CALL_START);
      FUZZ_CHECK(c->hs_out == (c->initiator ? 2u : 1u));
      FUZZ_CHECK(plen > PM_NOISE_TAG_LEN);
      FUZZ_CHECK(!short_seen); /* only the last one may be short */
      short_seen = plen < PM_SECURE_MAX_PAYLOAD;
      plain += plen - PM_NOISE_TAG_LEN;
      transports++;
      break;
    case PM_SECURE_REC_REJECT:
      FUZZ_CHECK(!c->initiator && k == CALL_RECV && !b->est);
      FUZZ_CHECK(r != 0 && plen == 1 && rec[6] == reject_reason(r));
      FUZZ_CHECK(off + PM_SECURE_HEADER + 1 == len); /* the last record */
      FUZZ_CHECK(++c->rejects == 1);
      break;
    default:
      FUZZ_FAIL("the channel wrote a record of unknown type");
    }
    off += PM_SECURE_HEADER + plen;
  }
  if (k == CALL_SEND) {
    if (b->est && r == 0)
      FUZZ_CHECK(plain == n);
    else
      FUZZ_CHECK(len == 0);
  } else if (k == CALL_RECV && !b->est &&
             (plain || pm_secure_established(&c->s))) {
    /* The handshake completed: what was queued went out, all of it. */
    FUZZ_CHECK(plain == c->queued);
    c->queued = 0;
  } else {
    FUZZ_CHECK(plain == 0);
  }
  for (size_t i = 0; i < len; i++)
    c->out_hash = (c->out_hash ^ p[i]) * UINT64_C(0x100000001b3);
  c->out_total += len;
}

/* The plaintext a call appended: the next bytes the peer sent. */
static void check_plain(chan *c, enum call k, int r, const snap *b, int est) {
  size_t n = c->plain.len - b->plain_len;
  if (n == 0)
    return;
  FUZZ_CHECK(!b->err && k == CALL_RECV);
  FUZZ_CHECK(b->est || est || r != 0);
  const uint8_t *p = c->plain.data + b->plain_len;
  for (size_t i = 0; i < n; i++)
    if (p[i] != pattern(c->in_dir, c->got + i)) {
      fprintf(stderr, "%s: plaintext byte %llu is %u, not %u\n", c->name,
              (unsigned long long)(c->got + i), p[i],
              pattern(c->in_dir, c->got + i));
      FUZZ_FAIL("plaintext that the peer did not send");
    }
  c->got += n;
}

static void after(chan *c, enum call k, int r, const snap *b, size_t n) {
  TRACE("%s: %s %zu -> %d (%s), out +%zu, plain +%zu\n", c->name,
        k == CALL_START  ? "start"
        : k == CALL_RECV ? "recv"
                         : "send",
        n, r, r ? pm_errname(r) : "ok", c->out.len - b->out_len,
        c->plain.len - b->plain_len);
  if (b->err) {
    FUZZ_CHECK(r == b->err); /* an error is final */
    FUZZ_CHECK(c->out.len == b->out_len && c->plain.len == b->plain_len);
  } else {
    if (!allowed(k, r)) {
      fprintf(stderr, "%s: %d (%s) from a %d call\n", c->name, r,
              pm_errname(r) ? pm_errname(r) : "?", (int)k);
      FUZZ_FAIL("an error secure.h does not list for this call");
    }
    if (r == PM_ERR_NOMEM)
      FUZZ_CHECK(oom(c));
    if (k == CALL_START && c->started) {
      /* Again: a misuse, which leaves the channel as it was. */
      FUZZ_CHECK(r == (c->initiator ? PM_ERR_UNEXPECTED : 0));
      FUZZ_CHECK(c->out.len == b->out_len);
      r = 0;
    } else if (k == CALL_START) {
      FUZZ_CHECK(r != PM_ERR_UNEXPECTED);
    }
    if (k == CALL_SEND && !b->est) {
      /* The queue takes PM_SECURE_MAX_PENDING bytes, and no more. */
      int full = c->queued + n > PM_SECURE_MAX_PENDING;
      FUZZ_CHECK(r == (full ? PM_ERR_FULL : 0) || (r == PM_ERR_NOMEM && !full));
      if (r == 0)
        c->queued += n;
    }
    if (k == CALL_RECV && (r == PM_ERR_WRONG_MESH ||
                           r == PM_ERR_WRONG_PASSWORD || r == PM_ERR_REFUSED)) {
      /* Only a Reject, or a responder's handshake check, fails so: an
       * initiator takes a Reject only until the first transport record
       * (here: plaintext) authenticates, a responder none. */
      uint64_t got = c->got + (c->plain.len - b->plain_len);
      FUZZ_CHECK(c->initiator ? got == 0 : !b->est && r != PM_ERR_REFUSED);
    }
    if (k == CALL_SEND && r == 0)
      c->sent += n;
    if (r)
      c->err = r;
  }
  if (k == CALL_START)
    c->started = 1;
  FUZZ_CHECK(pm_secure_error(&c->s) == c->err);
  int est = pm_secure_established(&c->s);
  FUZZ_CHECK(!(est && c->err));
  FUZZ_CHECK((pm_secure_peer_key(&c->s) != NULL) == est);
  FUZZ_CHECK((pm_secure_handshake_hash(&c->s) != NULL) == est);
  if (est)
    FUZZ_CHECK(
        memcmp(pm_secure_peer_key(&c->s), c->peer_pk, PM_SECURE_KEY_LEN) == 0);
  else
    FUZZ_CHECK(!c->est_seen || c->err); /* established until it fails */
  FUZZ_CHECK(c->mem.live <= MEM_BOUND);
  FUZZ_CHECK(c->mem.largest <= PM_SECURE_HEADER + PM_SECURE_MAX_PAYLOAD);
  if (c->err)
    FUZZ_CHECK(c->mem.live == 0); /* a dead channel holds nothing */
  if (c->out.err || c->plain.err) {
    /* Out of memory in our buffers: the call must fail. */
    FUZZ_CHECK(oom(c) && r != 0 && !b->err);
    c->out.len = b->out_len; /* what it wrote is not checked */
  } else {
    check_output(c, k, r, b, n);
  }
  if (est) {
    FUZZ_CHECK(c->hs_out == (c->initiator ? 2u : 1u) || c->out.err);
    c->est_seen = 1;
  }
  check_plain(c, k, r, b, est);
  pm_buf_reset(&c->plain);
}

static int c_start(chan *c) {
  snap b = take(c);
  int r = pm_secure_start(&c->s, &c->out);
  after(c, CALL_START, r, &b, 0);
  return r;
}

/* Moves the framer over `n` received bytes. Sets *act when the channel may
 * act on them (a record starts with another version, or a header or a
 * record is complete); returns 1 when they hold a header the channel must
 * refuse (another version, too long, a type that is never allowed). */
static int frame_bytes(framer *f, const uint8_t *p, size_t n, int *act) {
  size_t i = 0;
  while (i < n) {
    if (f->have < PM_SECURE_HEADER) {
      if (f->have == 0 && p[i] != PM_SECURE_VERSION) {
        *act = 1;
        return 1;
      }
      f->hdr[f->have++] = p[i++];
      if (f->have < PM_SECURE_HEADER)
        continue;
      *act = 1;
      f->left = pm_load_u32(f->hdr + 2);
      if (f->left > PM_SECURE_MAX_PAYLOAD ||
          f->hdr[1] < PM_SECURE_REC_HANDSHAKE ||
          f->hdr[1] > PM_SECURE_REC_REJECT)
        return 1;
    } else {
      size_t m = n - i < f->left ? n - i : (size_t)f->left;
      i += m;
      f->left -= m;
    }
    if (f->left == 0) {
      *act = 1;
      f->have = 0;
    }
  }
  return 0;
}

static int c_recv(chan *c, const uint8_t *p, size_t n) {
  snap b = take(c);
  int r = pm_secure_recv(&c->s, p, n, &c->plain, &c->out);
  if (!b.err) {
    /* Headers are judged as soon as they are whole, the version from the
     * first byte; nothing fails between those points but an allocation. */
    int act = 0;
    if (frame_bytes(&c->fr, p, n, &act))
      FUZZ_CHECK(r != 0);
    if (r != 0 && r != PM_ERR_NOMEM)
      FUZZ_CHECK(act);
  }
  after(c, CALL_RECV, r, &b, n);
  if (!c->err && c->fr.have == 0 && pm_secure_established(&c->s))
    FUZZ_CHECK(c->mem.live <= IDLE_KEEP); /* between records */
  return r;
}

static int c_send(chan *c, size_t n) {
  snap b = take(c);
  if (n > sizeof scratch)
    n = sizeof scratch;
  for (size_t i = 0; i < n; i++)
    scratch[i] = pattern(c->out_dir, c->sent + i);
  int r = pm_secure_send(&c->s, scratch, n, &c->out);
  after(c, CALL_SEND, r, &b, n);
  return r;
}

/* ---- the harness --------------------------------------------------------- */

typedef struct harness {
  chan t, p;     /* the channel under test, and its peer when scripted */
  fuzz_alloc io; /* t's buffers */
  int scripted, mismatch, tampered;
  pm_buf wire; /* the peer's bytes, not yet delivered to t */
  int run_mode;
  uint8_t chunking;
  uint64_t chunk_rng;
  size_t max_chunk;
  uint64_t peer_budget, target_budget;
  unsigned calls;
} harness;

/* For make_secure_corpus.c: when set, every byte a scripted run delivers to
 * the channel is appended here (a raw input's stream); and how the last
 * input ended for the channel under test. */
static pm_buf *fuzz_capture;
static struct fuzz_result {
  int err, est, peer_err;
  uint64_t got, sent;
} fuzz_last;

/* The peer's output joins the queue. */
static void route_peer(harness *h) {
  pm_buf_put(&h->wire, h->p.out.data, h->p.out.len);
  if (h->wire.err)
    abort();
  pm_buf_reset(&h->p.out);
}

/* The channel's output goes to the peer (scripted) or nowhere (raw). */
static void route_target(harness *h) {
  if (h->scripted && h->t.out.len) {
    (void)c_recv(&h->p, h->t.out.data, h->t.out.len);
    route_peer(h);
  }
  pm_buf_reset(&h->t.out);
}

static void t_start(harness *h) {
  (void)c_start(&h->t);
  route_target(h);
}

static void t_send(harness *h, size_t n) {
  (void)c_send(&h->t, n);
  route_target(h);
}

/* Feeds `n` bytes to the channel in chunks, on after an error too. */
static void feed(harness *h, const uint8_t *p, size_t n) {
  if (fuzz_capture)
    pm_buf_put(fuzz_capture, p, n);
  size_t off = 0;
  while (off < n) {
    size_t m = n - off;
    if (h->calls >= CALL_BUDGET) {
      /* Enough small calls for one input: the rest in one. */
    } else if (h->run_mode == RUN_BYTES) {
      m = 1;
    } else if (h->run_mode == RUN_SPLIT && h->chunking) {
      size_t want = 1 + (size_t)(xorshift(&h->chunk_rng) % h->max_chunk);
      if (want < m)
        m = want;
    }
    (void)c_recv(&h->t, p + off, m);
    route_target(h);
    off += m;
    h->calls++;
  }
}

/* Delivers the first `n` queued bytes (all for 0). */
static void deliver(harness *h, size_t n) {
  if (n == 0 || n > h->wire.len)
    n = h->wire.len;
  if (n == 0)
    return;
  uint8_t *copy = malloc(n); /* the queue grows while they are fed */
  if (!copy)
    abort();
  memcpy(copy, h->wire.data, n);
  pm_buf_consume(&h->wire, n);
  feed(h, copy, n);
  free(copy);
}

static void flush(harness *h) {
  for (int round = 0; round < 64 && h->wire.len; round++)
    deliver(h, 0);
}

static void setup(harness *h, const uint8_t *head, int run_mode) {
  uint8_t flags = head[0];
  h->run_mode = run_mode;
  h->scripted = (flags & FLAG_PEER) != 0;
  h->mismatch = h->scripted ? head[4] & 3 : MISMATCH_NONE;
  h->chunking = head[1];
  h->chunk_rng = UINT64_C(0x9e3779b97f4a7c15) * ((uint64_t)h->chunking + 1);
  h->max_chunk = (h->chunking & 0x40) ? 1 : ((h->chunking & 0x3fu) + 1) * 8;
  alloc_init(&h->io, (flags & FLAG_ALLOC_FAIL) ? head[2] : 0);
  pm_buf_init(&h->wire, NULL);
  int initiator = (flags & FLAG_INITIATOR) != 0;
  int password = (flags & FLAG_PASSWORD) != 0;
  chan_init(&h->t, "channel", 0, initiator, password, MISMATCH_NONE, &h->io);
  if (h->scripted) {
    chan_init(&h->p, "peer", 1, !initiator, password, h->mismatch, NULL);
    (void)c_start(&h->p);
    route_peer(h);
  }
  if (flags & FLAG_ALLOC_FAIL)
    h->io.armed = h->t.mem.armed = 1;
}

static unsigned take_u8(const uint8_t *p, size_t len, size_t *off) {
  return *off < len ? p[(*off)++] : 0;
}

static unsigned take_u16(const uint8_t *p, size_t len, size_t *off) {
  unsigned hi = take_u8(p, len, off);
  return hi << 8 | take_u8(p, len, off);
}

static void run_op(harness *h, const uint8_t *s, size_t len, size_t *off) {
  unsigned op = take_u8(s, len, off);
  switch (op & 7) {
  case OP_DELIVER:
    deliver(h, take_u16(s, len, off));
    break;
  case OP_XOR: {
    unsigned at = take_u16(s, len, off), v = take_u8(s, len, off);
    if (h->wire.len && v) {
      h->wire.data[at % h->wire.len] ^= (uint8_t)v;
      h->tampered = 1;
    }
    break;
  }
  case OP_INJECT: {
    size_t n = take_u8(s, len, off);
    if (n > len - *off)
      n = len - *off;
    if (n == 0)
      break;
    h->tampered = 1;
    if (op & 0x08) {
      pm_buf w;
      pm_buf_init(&w, NULL);
      pm_buf_put(&w, s + *off, n);
      pm_buf_put(&w, h->wire.data, h->wire.len);
      if (w.err)
        abort();
      pm_buf_free(&h->wire);
      h->wire = w;
    } else {
      pm_buf_put(&h->wire, s + *off, n);
    }
    *off += n;
    break;
  }
  case OP_DROP: {
    size_t n = take_u16(s, len, off);
    if (n > h->wire.len)
      n = h->wire.len;
    if (n) {
      pm_buf_consume(&h->wire, n);
      h->tampered = 1;
    }
    break;
  }
  case OP_DUP: {
    size_t n = take_u16(s, len, off);
    if (n > h->wire.len)
      n = h->wire.len;
    if (n == 0)
      break;
    if (pm_buf_reserve(&h->wire, n) != 0)
      abort();
    memcpy(h->wire.data + h->wire.len, h->wire.data, n);
    h->wire.len += n;
    h->tampered = 1;
    break;
  }
  case OP_PEER_SEND: {
    size_t n = take_u16(s, len, off);
    if (n <= SEND_BUDGET - h->peer_budget) {
      h->peer_budget += n;
      (void)c_send(&h->p, n);
      route_peer(h);
    }
    break;
  }
  case OP_TARGET_SEND: {
    size_t n = take_u16(s, len, off);
    if (n <= SEND_BUDGET - h->target_budget) {
      h->target_budget += n;
      t_send(h, n);
    }
    break;
  }
  default: /* OP_FLUSH */
    flush(h);
    break;
  }
  if (h->wire.len > 4 * SEND_BUDGET) /* DUP doubles it: keep it bounded */
    pm_buf_consume(&h->wire, h->wire.len - 4 * SEND_BUDGET);
  if (h->wire.err)
    abort();
}

/* Untampered and with enough memory, a run ends as the configurations
 * say. */
static void check_outcome(harness *h) {
  chan *t = &h->t, *p = &h->p;
  if (h->tampered || oom(t) || t->err == PM_ERR_FULL || p->err == PM_ERR_FULL)
    return;
  if (h->mismatch == MISMATCH_NONE) {
    FUZZ_CHECK(t->err == 0 && p->err == 0);
    FUZZ_CHECK(pm_secure_established(&t->s) && pm_secure_established(&p->s));
    FUZZ_CHECK(t->got == p->sent && p->got == t->sent);
  } else {
    int want = h->mismatch == MISMATCH_MESH ? PM_ERR_WRONG_MESH
                                            : PM_ERR_WRONG_PASSWORD;
    FUZZ_CHECK(t->err == want && p->err == want);
  }
}

/* One whole run over the input; returns with everything freed. */
static void run(harness *h, const uint8_t *head, const uint8_t *body,
                size_t len, int run_mode) {
  uint8_t flags = head[0];
  size_t late = (flags & FLAG_LATE_START) ? (size_t)(head[4] >> 2) : 0;
  setup(h, head, run_mode);
  if (flags & FLAG_EARLY_SEND)
    t_send(h, send_sizes[head[3] & 15]);
  if (!h->scripted) {
    size_t k = late * 4 < len ? late * 4 : len;
    feed(h, body, k);
    t_start(h);
    if (len > k)
      feed(h, body + k, len - k);
  } else {
    size_t off = 0;
    for (unsigned i = 0; i < MAX_OPS && off < len; i++) {
      if (i == late)
        t_start(h);
      run_op(h, body, len, &off);
    }
    if (!h->t.started)
      t_start(h);
    flush(h);
  }
  if (flags & FLAG_LATE_SEND) {
    t_send(h, send_sizes[head[3] >> 4]);
    flush(h);
  }
  if (flags & FLAG_RESTART)
    t_start(h);
  (void)c_recv(&h->t, NULL, 0); /* nothing: 0, or the error again */
  route_target(h);
  if (h->scripted) {
    const uint8_t *ht = pm_secure_handshake_hash(&h->t.s);
    const uint8_t *hp = pm_secure_handshake_hash(&h->p.s);
    if (ht && hp)
      FUZZ_CHECK(memcmp(ht, hp, PM_NOISE_HASH_LEN) == 0);
    check_outcome(h);
  }
  fuzz_last.err = h->t.err;
  fuzz_last.est = pm_secure_established(&h->t.s);
  fuzz_last.peer_err = h->scripted ? h->p.err : 0;
  fuzz_last.got = h->t.got;
  fuzz_last.sent = h->t.sent;
  chan_free(&h->t);
  if (h->scripted)
    chan_free(&h->p);
  FUZZ_CHECK(h->io.live == 0);
  pm_buf_free(&h->wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t head[HEADER] = {0};
  if (size)
    memcpy(head, data, size < HEADER ? size : HEADER);
  const uint8_t *body = size > HEADER ? data + HEADER : NULL;
  size_t len = size > HEADER ? size - HEADER : 0;

  harness *h = calloc(1, sizeof *h);
  if (!h)
    abort();
  run(h, head, body, len, RUN_SPLIT);
  if (!(head[0] & (FLAG_PEER | FLAG_ALLOC_FAIL))) {
    /* The same bytes in other chunks must give the same result. */
    harness *g = calloc(1, sizeof *g);
    if (!g)
      abort();
    pm_buf *capture = fuzz_capture;
    fuzz_capture = NULL;
    struct fuzz_result first = fuzz_last;
    run(g, head, body, len, head[1] ? RUN_WHOLE : RUN_BYTES);
    fuzz_capture = capture;
    if (g->t.err != h->t.err || g->t.out_total != h->t.out_total ||
        g->t.out_hash != h->t.out_hash || g->t.got != h->t.got ||
        fuzz_last.est != first.est) {
      fprintf(stderr,
              "split: error %d, %llu bytes out, %llu plain; other chunks: "
              "error %d, %llu bytes out, %llu plain\n",
              h->t.err, (unsigned long long)h->t.out_total,
              (unsigned long long)h->t.got, g->t.err,
              (unsigned long long)g->t.out_total, (unsigned long long)g->t.got);
      FUZZ_FAIL("the result depends on how the input was split");
    }
    fuzz_last = first;
    free(g);
  }
  free(h);
  return 0;
}
