/* The Noise Protocol Framework (revision 34), sans-I/O, on libsodium.
 *
 * Only the suite peermesh links use is built in: DH 25519 (X25519), cipher
 * ChaChaPoly (ChaCha20-Poly1305 IETF) and hash BLAKE2b (HMAC and HKDF as the
 * Noise spec defines them). Handshake patterns are interpreted from their
 * tokens: every fundamental pattern (N, K, X, NN, NK, NX, KN, KK, KX, XN, XK,
 * XX, IN, IK, IX), every deferred pattern of the spec's section 7.6 (NK1,
 * X1X1, ...), each with any psk modifiers (psk0..psk3, joined with '+').
 * Peermesh links run Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b.
 *
 * Like the rest of runtime/core this draws no randomness: the caller hands in
 * the ephemeral private key (32 random bytes) with
 * pm_noise_handshake_set_ephemeral before the first message that sends it.
 * No memory is allocated; the state structs are plain values the caller owns
 * (their fields are private). Every secret is wiped by the _clear functions,
 * which the caller must call when done with a state.
 *
 * Messages, handshake or transport, are at most PM_NOISE_MAX_MSG_LEN bytes.
 * Output goes to caller buffers of a given capacity; input and output buffers
 * must not overlap. A failed call leaves its state as it was. */
#ifndef PM_CORE_NOISE_H
#define PM_CORE_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/error.h"

#define PM_NOISE_KEY_LEN 32  /* X25519 keys, cipher keys and PSKs */
#define PM_NOISE_HASH_LEN 64 /* BLAKE2b: the handshake hash */
#define PM_NOISE_TAG_LEN 16  /* Poly1305 tag added by each encryption */
#define PM_NOISE_MAX_MSG_LEN 65535
#define PM_NOISE_MAX_PAYLOAD (PM_NOISE_MAX_MSG_LEN - PM_NOISE_TAG_LEN)
#define PM_NOISE_MAX_NAME_LEN 255 /* longest protocol name accepted */
#define PM_NOISE_MAX_PSKS 4
#define PM_NOISE_MAX_MESSAGES 4 /* handshake messages in a pattern */
#define PM_NOISE_MAX_TOKENS 8   /* tokens in one handshake message */

/* What the errors below mean here. error.h has no code for a failed
 * authentication or an exhausted nonce yet; these name the stand-ins. */
#define PM_NOISE_ERR_DECRYPT PM_ERR_MALFORMED /* bad tag, or a DH gave zero */
#define PM_NOISE_ERR_NONCE PM_ERR_CLOSED      /* 2^64-1 nonces used */

typedef enum pm_noise_role {
  PM_NOISE_INITIATOR = 0,
  PM_NOISE_RESPONDER = 1
} pm_noise_role;

/* A CipherState: a key and the nonce its next use takes. */
typedef struct pm_noise_cipher {
  uint8_t k[PM_NOISE_KEY_LEN];
  uint64_t n;
  int has_key;
} pm_noise_cipher;

typedef struct pm_noise_symmetric {
  pm_noise_cipher cs;
  uint8_t ck[PM_NOISE_HASH_LEN];
  uint8_t h[PM_NOISE_HASH_LEN];
} pm_noise_symmetric;

typedef struct pm_noise_handshake {
  pm_noise_symmetric ss;
  uint8_t tokens[PM_NOISE_MAX_MESSAGES][PM_NOISE_MAX_TOKENS];
  uint8_t token_count[PM_NOISE_MAX_MESSAGES];
  uint8_t msg_count, msg_index, psk_count, psk_index;
  uint8_t role, one_way, psk_mode, split_done;
  uint8_t has_s, has_e, has_rs, has_re;
  uint8_t s_priv[PM_NOISE_KEY_LEN], s_pub[PM_NOISE_KEY_LEN];
  uint8_t e_priv[PM_NOISE_KEY_LEN], e_pub[PM_NOISE_KEY_LEN];
  uint8_t rs[PM_NOISE_KEY_LEN], re[PM_NOISE_KEY_LEN];
  uint8_t psks[PM_NOISE_MAX_PSKS][PM_NOISE_KEY_LEN];
} pm_noise_handshake;

typedef struct pm_noise_config {
  pm_noise_role role;
  /* e.g. "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"; hashed as given. */
  const char *protocol;
  const uint8_t *prologue; /* may be NULL when prologue_len is 0 */
  size_t prologue_len;
  /* Our static private key; needed when the pattern sends our static key or
   * has it as a pre-message, ignored otherwise. May be NULL. */
  const uint8_t *local_static;
  /* The peer's static public key: required exactly when the pattern has it
   * as a pre-message (the K and I sides of K*, *K, N, K, X). May be NULL. */
  const uint8_t *remote_static;
  /* One 32-byte key per psk token, in the order the tokens occur. */
  const uint8_t (*psks)[PM_NOISE_KEY_LEN];
  size_t psk_count;
} pm_noise_config;

/* Starts a handshake: parses the protocol name, hashes it, the prologue and
 * the pre-message keys. The config's buffers are copied, not kept.
 * Returns 0, or PM_ERR_INVAL for an unknown or malformed protocol name, a
 * missing key, a remote static key the pattern does not expect, or a number
 * of PSKs that is not the number of psk tokens. Call
 * pm_noise_handshake_clear afterwards whatever the result. */
int pm_noise_handshake_init(pm_noise_handshake *hs,
                            const pm_noise_config *cfg) PM_MUST_CHECK;

/* Sets our ephemeral private key: 32 bytes from a cryptographic random
 * source (the test vectors supply fixed ones). Must come before the message
 * carrying the "e" token; may be called at most once. Returns 0,
 * PM_ERR_INVAL, or PM_ERR_UNEXPECTED when our "e" was already sent. */
int pm_noise_handshake_set_ephemeral(
    pm_noise_handshake *hs, const uint8_t priv[PM_NOISE_KEY_LEN]) PM_MUST_CHECK;

/* 1 when it is our turn to write the next handshake message, 0 when we are
 * to read it or the handshake is complete. */
int pm_noise_handshake_writing(const pm_noise_handshake *hs);
/* 1 once every handshake message has been written or read. */
int pm_noise_handshake_is_complete(const pm_noise_handshake *hs);
/* The bytes the next handshake message adds to its payload (keys, tags). */
size_t pm_noise_handshake_overhead(const pm_noise_handshake *hs);

/* Writes the next handshake message carrying `payload` into `out`.
 * Returns 0 and sets *out_len, or: PM_ERR_UNEXPECTED when it is not our turn
 * or the handshake is complete; PM_ERR_INVAL when the ephemeral key was not
 * set; PM_ERR_FRAME_TOO_LARGE when the message would exceed
 * PM_NOISE_MAX_MSG_LEN; PM_ERR_FULL when `out_cap` is too small (the message
 * needs payload_len + pm_noise_handshake_overhead bytes);
 * PM_NOISE_ERR_DECRYPT when a DH result is zero; PM_NOISE_ERR_NONCE. */
int pm_noise_handshake_write(pm_noise_handshake *hs, const uint8_t *payload,
                             size_t payload_len, uint8_t *out, size_t out_cap,
                             size_t *out_len) PM_MUST_CHECK;

/* Reads the next handshake message from the peer, writing its payload to
 * `out`. Returns 0 and sets *out_len, or: PM_ERR_UNEXPECTED when it is our
 * turn to write or the handshake is complete; PM_ERR_FRAME_TOO_LARGE;
 * PM_ERR_TRUNCATED when `msg` is too short for the pattern; PM_ERR_FULL when
 * `out_cap` is too small; PM_NOISE_ERR_DECRYPT when the message fails
 * authentication (tampering, or a different PSK or key on the other side)
 * or a DH gives zero. On error nothing changed; the caller should abandon
 * the handshake (and the link). */
int pm_noise_handshake_read(pm_noise_handshake *hs, const uint8_t *msg,
                            size_t len, uint8_t *out, size_t out_cap,
                            size_t *out_len) PM_MUST_CHECK;

/* The handshake hash h (PM_NOISE_HASH_LEN bytes), which both sides share
 * once the handshake is complete: a channel binding. Valid until clear. */
const uint8_t *pm_noise_handshake_hash(const pm_noise_handshake *hs);

/* The peer's static public key once known (received or pre-shared), else
 * NULL. Valid until clear. */
const uint8_t *pm_noise_handshake_remote_static(const pm_noise_handshake *hs);

/* Derives the transport ciphers after the handshake: `send` encrypts what we
 * send, `recv` decrypts what we receive. In a one-way pattern the responder
 * never sends, so the responder's `send` and the initiator's `recv` get no
 * key and refuse to work. Wipes the handshake's keys (the hash and the remote
 * static key stay readable). Returns 0, or PM_ERR_UNEXPECTED before the
 * handshake is complete or when already split. */
int pm_noise_handshake_split(pm_noise_handshake *hs, pm_noise_cipher *send,
                             pm_noise_cipher *recv) PM_MUST_CHECK;

/* Wipes every secret in `hs`. */
void pm_noise_handshake_clear(pm_noise_handshake *hs);

/* Transport encryption: `out` receives len + PM_NOISE_TAG_LEN bytes.
 * Returns 0 and sets *out_len, or: PM_ERR_UNEXPECTED for a cipher without a
 * key; PM_ERR_FRAME_TOO_LARGE when the result would exceed
 * PM_NOISE_MAX_MSG_LEN; PM_ERR_FULL when `out_cap` is too small;
 * PM_NOISE_ERR_NONCE once the nonce reaches 2^64-1 (the link must end). */
int pm_noise_cipher_encrypt(pm_noise_cipher *c, const uint8_t *ad,
                            size_t ad_len, const uint8_t *plain, size_t len,
                            uint8_t *out, size_t out_cap,
                            size_t *out_len) PM_MUST_CHECK;

/* Transport decryption of a message from pm_noise_cipher_encrypt with the
 * same associated data. Returns 0 and sets *out_len, or the errors of
 * encrypt, PM_ERR_TRUNCATED when shorter than a tag, and
 * PM_NOISE_ERR_DECRYPT when authentication fails; a failure neither uses up
 * the nonce nor changes the key. */
int pm_noise_cipher_decrypt(pm_noise_cipher *c, const uint8_t *ad,
                            size_t ad_len, const uint8_t *msg, size_t len,
                            uint8_t *out, size_t out_cap,
                            size_t *out_len) PM_MUST_CHECK;

/* The nonce the next encryption or decryption uses. */
uint64_t pm_noise_cipher_nonce(const pm_noise_cipher *c);
/* The spec's SetNonce, for transports that carry nonces explicitly (and for
 * tests). Reusing a nonce with the same key breaks confidentiality: only set
 * nonces never used before. */
void pm_noise_cipher_set_nonce(pm_noise_cipher *c, uint64_t n);
/* The spec's Rekey: replaces the key with one derived from it; both sides
 * must rekey at the same point. Returns 0 or PM_ERR_UNEXPECTED without a
 * key. */
int pm_noise_cipher_rekey(pm_noise_cipher *c) PM_MUST_CHECK;
/* Wipes the key. */
void pm_noise_cipher_clear(pm_noise_cipher *c);

#endif
