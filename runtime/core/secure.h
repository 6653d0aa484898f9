/* pm_secure: the per-link secure channel, sans-I/O.
 *
 * One instance per link sits between the TCP bytes and the node's frame
 * parser. It runs Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b (prologue
 * "peermesh link v1") with the node's Ed25519 identity bound to the Noise
 * static key, then carries the link's plaintext bytes (the frames of
 * frame.h) in encrypted, authenticated records. It performs no I/O, reads no
 * clock and draws no randomness of its own: the ephemeral key comes from the
 * caller's random callback.
 *
 * Records on the wire share the frame header's shape, so a version other
 * than 1 or a length above PM_SECURE_MAX_PAYLOAD is refused from the header
 * alone, before anything is buffered:
 *
 *   offset 0  u8   version   1
 *   offset 1  u8   type      enum pm_secure_record
 *   offset 2  u32  length    payload length, big-endian, <= 65535
 *   offset 6  ...  payload
 *
 * Handshake (payloads of the Noise messages):
 *   msg1  -> e                u8 version (1), mesh_tag[16], u8 flags
 *   msg2  <- e, ee, s, es     ed25519_pub[32], signature[64]
 *   msg3  -> s, se, psk       ed25519_pub[32], signature[64]
 * The signature is Ed25519 over "peermesh noise static v1" (24 bytes) || the
 * sender's X25519 static public key; the receiver also requires that key to
 * be the X25519 conversion of the claimed Ed25519 key.
 *
 * Usage: pm_secure_init, then pm_secure_start (it writes msg1 for the
 * initiator, nothing for the responder); feed every received byte to
 * pm_secure_recv and write out whatever it appends to `net_out`; hand the
 * link's plaintext to pm_secure_send. Any error is final: the channel keeps
 * returning it, and the link must be closed once `net_out` (which may hold a
 * Reject for the peer) is flushed. pm_secure_clear wipes every secret.
 *
 * docs/PROTOCOL.md is the normative description of the records. */
#ifndef PM_CORE_SECURE_H
#define PM_CORE_SECURE_H

#include <stddef.h>
#include <stdint.h>

#include "noise.h"
#include "peermesh/alloc.h"
#include "peermesh/error.h"
#include "wire.h"

#define PM_SECURE_PROTOCOL "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
#define PM_SECURE_PROLOGUE "peermesh link v1"
#define PM_SECURE_PROOF_DOMAIN "peermesh noise static v1"
#define PM_SECURE_VERSION 1
#define PM_SECURE_HEADER 6
/* The largest record payload: a Noise message. */
#define PM_SECURE_MAX_PAYLOAD PM_NOISE_MAX_MSG_LEN
/* The most plaintext one transport record carries (65519 bytes). */
#define PM_SECURE_MAX_PLAIN (PM_SECURE_MAX_PAYLOAD - PM_NOISE_TAG_LEN)
/* Plaintext pm_secure_send may queue before the handshake completes. */
#define PM_SECURE_MAX_PENDING 65536
#define PM_SECURE_MESH_TAG_LEN 16
#define PM_SECURE_KEY_LEN 32         /* Ed25519 public key, PSK */
#define PM_SECURE_SECRET_KEY_LEN 64  /* Ed25519 secret key, libsodium format */
#define PM_SECURE_FLAG_PASSWORD 0x01 /* msg1 flags bit 0: a password mesh */

/* Record types. They do not collide with frame types (frame.h). */
enum pm_secure_record {
  PM_SECURE_REC_HANDSHAKE = 0x02, /* a Noise handshake message */
  PM_SECURE_REC_TRANSPORT = 0x03, /* ciphertext of link bytes */
  PM_SECURE_REC_REJECT = 0x04     /* plaintext u8 reason, responder only */
};

/* Reject reasons. */
enum pm_secure_reject {
  PM_SECURE_REJECT_WRONG_MESH = 1, /* PM_ERR_WRONG_MESH */
  PM_SECURE_REJECT_AUTH = 2,       /* PM_ERR_WRONG_PASSWORD */
  PM_SECURE_REJECT_VERSION = 3     /* PM_ERR_VERSION */
};

typedef struct pm_secure_config {
  int initiator; /* 1 for the side that dialled */
  /* The mesh's pre-shared key: Argon2id of the password for a password
   * mesh, a hash of the mesh name otherwise (computed by the caller). */
  const uint8_t *psk;           /* PM_SECURE_KEY_LEN bytes */
  const uint8_t *ed25519_sk;    /* PM_SECURE_SECRET_KEY_LEN bytes */
  const uint8_t *ed25519_pk;    /* PM_SECURE_KEY_LEN bytes, the node ID */
  const uint8_t *mesh_tag;      /* PM_SECURE_MESH_TAG_LEN bytes */
  int password;                 /* 1 for a password mesh */
  uint64_t (*random)(void *ud); /* draws the ephemeral key */
  void *random_ud;
  const pm_allocator *alloc; /* NULL: the C library's */
} pm_secure_config;

/* The state. Its fields are private; it holds no pointer into the config. */
typedef struct pm_secure {
  int state;
  int err; /* the first error: every later call returns it */
  uint8_t initiator, password;
  uint8_t peer_confirmed; /* a transport record from the peer authenticated */
  uint8_t mesh_tag[PM_SECURE_MESH_TAG_LEN];
  uint8_t proof[PM_SECURE_KEY_LEN + 64]; /* our Ed25519 key and signature */
  uint8_t peer_key[PM_SECURE_KEY_LEN];
  uint8_t hash[PM_NOISE_HASH_LEN];
  pm_noise_handshake hs;
  pm_noise_cipher send, recv;
  pm_buf in;      /* one partial record, at most 6 + 65535 bytes */
  pm_buf pending; /* plaintext sent before the handshake completed */
} pm_secure;

/* Prepares a channel: converts the Ed25519 key to the Noise static key,
 * signs the identity proof and draws the ephemeral key (32 bytes from four
 * calls to cfg->random, each giving 8 bytes little-endian). Returns 0 or
 * PM_ERR_INVAL (a missing field, or a public key that is not the secret
 * key's). On failure `s` is left cleared. */
int pm_secure_init(pm_secure *s, const pm_secure_config *cfg) PM_MUST_CHECK;

/* Opens the handshake: the initiator appends msg1 to `net_out`; the
 * responder appends nothing. Returns 0, PM_ERR_UNEXPECTED when called twice,
 * or the channel's error. */
int pm_secure_start(pm_secure *s, pm_buf *net_out) PM_MUST_CHECK;

/* Feeds bytes received from the peer, split anywhere. Appends decrypted
 * link bytes to `plain_in` and any handshake message or Reject to `net_out`.
 * Returns 0 or an error; then the channel is dead and the link must be
 * closed after `net_out` is flushed. Errors:
 *   PM_ERR_VERSION          a record version other than 1, or msg1 with
 *                           another protocol version (responder: Reject(3))
 *   PM_ERR_FRAME_TOO_LARGE  a header announcing more than 65535 bytes
 *   PM_ERR_UNEXPECTED       a record type not allowed in this state
 *   PM_ERR_MALFORMED        a handshake payload or Reject of the wrong size
 *   PM_ERR_WRONG_MESH       another mesh tag (responder: Reject(1)), or
 *                           Reject(1) received
 *   PM_ERR_WRONG_PASSWORD   msg3 fails to decrypt (a different PSK) or the
 *                           password flags differ (responder: Reject(2)),
 *                           or Reject(2) received
 *   PM_ERR_AUTH             a record or handshake message fails
 *                           authentication, or an identity proof is wrong
 *   PM_ERR_NONCE            the receive nonce is exhausted
 *   PM_ERR_REFUSED          Reject with an unknown reason
 *   PM_ERR_NOMEM            an allocation failed
 * Input and output buffers must not overlap. */
int pm_secure_recv(pm_secure *s, const uint8_t *data, size_t len,
                   pm_buf *plain_in, pm_buf *net_out) PM_MUST_CHECK;

/* Sends link bytes: once established, appends them to `net_out` as
 * transport records of at most PM_SECURE_MAX_PLAIN plaintext bytes each;
 * before, queues them (at most PM_SECURE_MAX_PENDING bytes) and sends them
 * as soon as the handshake completes. Returns 0 or an error, after which the
 * channel is dead: PM_ERR_FULL (queue limit), PM_ERR_NONCE (2^64-1 records
 * sent), PM_ERR_NOMEM, or the channel's earlier error. */
int pm_secure_send(pm_secure *s, const uint8_t *plain, size_t len,
                   pm_buf *net_out) PM_MUST_CHECK;

/* 1 once this side has completed the handshake and holds transport keys.
 * For the initiator that is as soon as it has written msg3: only the
 * responder checks the PSK, so until the first transport record from the
 * responder authenticates, a Reject(2) may still arrive. A node waits for
 * the peer's Hello anyway, which proves the PSK. */
int pm_secure_established(const pm_secure *s);

/* The peer's Ed25519 public key (its node ID), verified by the handshake,
 * once established; NULL before. */
const uint8_t *pm_secure_peer_key(const pm_secure *s);

/* The Noise handshake hash (PM_NOISE_HASH_LEN bytes), identical on both
 * sides, once established; NULL before. A channel binding. */
const uint8_t *pm_secure_handshake_hash(const pm_secure *s);

/* The channel's error, or 0 while it is alive. */
int pm_secure_error(const pm_secure *s);

/* Wipes every secret and releases the buffers. `s` may be zeroed memory. */
void pm_secure_clear(pm_secure *s);

#endif
