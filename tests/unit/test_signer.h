/* A stand-in message signer for unit tests, the simulator and the fuzzers,
 * whose node IDs are made-up bytes rather than Ed25519 keys. A "signature"
 * is BLAKE2b-512 of the author's ID and the message ID under a fixed key:
 * anyone can forge one, but a message altered or attributed to another
 * author still fails, which is what the core's checks are tested for.
 * Real nodes never use it (runtime/io gives the core its Ed25519 key). */
#ifndef PM_TEST_SIGNER_H
#define PM_TEST_SIGNER_H

#include <sodium.h>
#include <string.h>

#include "peermesh/node.h"

static inline void pm_test_signature(const uint8_t author[PM_NODE_ID_LEN],
                                     const uint8_t id[PM_MSG_ID_LEN],
                                     uint8_t sig[PM_SIG_BYTES]) {
  static const uint8_t key[16] = "pm test signer";
  crypto_generichash_state st;
  crypto_generichash_init(&st, key, sizeof key, PM_SIG_BYTES);
  crypto_generichash_update(&st, author, PM_NODE_ID_LEN);
  crypto_generichash_update(&st, id, PM_MSG_ID_LEN);
  crypto_generichash_final(&st, sig, PM_SIG_BYTES);
}

static inline void pm_test_sign(void *ud, const uint8_t author[PM_NODE_ID_LEN],
                                const uint8_t id[PM_MSG_ID_LEN],
                                uint8_t sig[PM_SIG_BYTES]) {
  (void)ud;
  pm_test_signature(author, id, sig);
}

static inline int pm_test_verify(void *ud, const uint8_t author[PM_NODE_ID_LEN],
                                 const uint8_t id[PM_MSG_ID_LEN],
                                 const uint8_t sig[PM_SIG_BYTES]) {
  (void)ud;
  uint8_t want[PM_SIG_BYTES];
  pm_test_signature(author, id, want);
  return sodium_memcmp(want, sig, PM_SIG_BYTES) == 0;
}

#endif
