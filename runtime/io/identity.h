/* Node identities: Ed25519 key pairs kept under DATA_DIR/identity/.
 *
 * Each process takes the first key file no other process holds (an exclusive
 * flock on the open file), creating a new one when all are taken, so several
 * instances started from one data directory get distinct node IDs while a
 * restarted instance gets its old one back. Key files are mode 0600; one that
 * others can read is refused rather than used. */
#ifndef PM_IO_IDENTITY_H
#define PM_IO_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/error.h"
#include "peermesh/node.h"

#define PM_IDENTITY_MAX_SLOTS 64
#define PM_FINGERPRINT_LEN 25 /* "xxxx-xxxx-xxxx-xxxx-xxxx" + NUL */

typedef struct pm_identity {
  uint8_t public_key[PM_NODE_ID_LEN]; /* the node ID */
  uint8_t secret_key[64];
  int fd;   /* holds the lock; -1 when released */
  int slot; /* N of identity/N.key */
  char path[4096];
} pm_identity;

/* Takes an identity from `data_dir` (which must exist). Returns 0, or a
 * negative code with a sentence in `err`: PM_ERR_PERM for a key file others
 * can read, PM_ERR_MALFORMED for a damaged one, PM_ERR_FULL when every slot is
 * in use, PM_ERR_IO otherwise. */
int pm_identity_acquire(const char *data_dir, pm_identity *out, char *err,
                        size_t errlen) PM_MUST_CHECK;
/* Wipes the secret key and drops the lock. */
void pm_identity_release(pm_identity *id);

/* Lower-case hex of a node ID into `out` (2 * PM_NODE_ID_LEN + 1 bytes). */
void pm_identity_hex(const uint8_t id[PM_NODE_ID_LEN], char *out);
/* A short fingerprint for people to compare, e.g. "k3xq-8m2c-...". */
void pm_identity_fingerprint(const uint8_t id[PM_NODE_ID_LEN],
                             char out[PM_FINGERPRINT_LEN]);

#endif
