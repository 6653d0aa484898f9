/* Mesh passwords: where one comes from, and the keys a mesh name and a
 * password become.
 *
 * Every link runs Noise_XXpsk3 with a 32-byte PSK that binds the mesh:
 *   - password mesh: Argon2id(password, salt), where
 *       salt = BLAKE2b-128("peermesh psk salt v1" || mesh name);
 *   - open mesh: BLAKE2b-256("peermesh open mesh v1" || mesh name), so nodes
 *     of different meshes never link by mistake.
 * The handshake's first message carries the mesh tag in the clear,
 *   BLAKE2b-128("peermesh mesh tag v1" || mesh name),
 * so a node can tell "another mesh" from "wrong password" (the tag is the
 * same for an open and a password mesh of one name). BLAKE2b here is
 * unkeyed, with the output length as its digest length (not a truncated
 * 64-byte digest), and the mesh name is its bytes without the NUL. These
 * recipes and the Argon2id parameters below are part of the protocol: every
 * node of a mesh must use the same, and changing any of them needs new "v2"
 * labels.
 *
 * A password comes from, in this order: --password-file FILE; else
 * --ask-password (a prompt on the terminal); else the environment variable
 * PEERMESH_PASSWORD. The command line beats the environment. It is never
 * taken from a command-line value, and nothing here writes it anywhere. From
 * every source a password is one line of 1..PM_PASSWORD_MAX bytes with no
 * NUL, CR or LF in it, so that the same password typed, stored in a file or
 * exported gives the same PSK. */
#ifndef PM_IO_PASSWORD_H
#define PM_IO_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/error.h"

#define PM_PSK_LEN 32
#define PM_MESH_TAG_LEN 16
#define PM_PSK_SALT_LEN 16
#define PM_PASSWORD_MAX 1024 /* bytes, without the line end */
#define PM_PASSWORD_ENV "PEERMESH_PASSWORD"

/* Argon2id cost. An attacker who gets a member to dial it (a fake address
 * in the resolver, or on the LAN) receives the initiator's third handshake
 * message, whose tag depends on the PSK and on nothing the attacker does not
 * know, and can guess passwords offline against it: Argon2id is what makes
 * each guess expensive. 3 passes over 64 MiB is RFC 9106's second
 * recommended setting (with one lane, the only kind libsodium computes).
 * Measured on the project's 2-core x86-64 machine: 0.10-0.16 s with
 * libsodium, 0.25 s with the reference libargon2; paid once per process and
 * mesh, and 64 MiB fits a Raspberry Pi or a bot sitting in several meshes.
 * libsodium's "moderate" (256 MiB) would cost an attacker 4x more per guess
 * but every small node 4x more memory; "interactive" (2 passes) would save a
 * user only some 40 ms. */
#define PM_PSK_OPSLIMIT 3ULL
#define PM_PSK_MEMLIMIT ((size_t)64 << 20)

/* Returned by pm_password_load when no password was asked for: the caller
 * joins an open mesh. */
#define PM_PASSWORD_NONE 1

typedef struct pm_password_source {
  const char *file; /* --password-file, or NULL */
  int ask;          /* --ask-password: prompt on the terminal */
  const char *mesh; /* named in the prompt; NULL: "Password: " */
} pm_password_source;

/* Finds the mesh password: from `src->file` when given; else, when
 * `src->ask`, from a prompt without echo on /dev/tty (stdin must be a
 * terminal); else from $PEERMESH_PASSWORD when it is set. Writes the bytes
 * and a NUL into `out` (`cap` > PM_PASSWORD_MAX) and their number into *len.
 * The caller wipes `out` with sodium_memzero once it has derived the PSK, and
 * should sodium_mlock it beforehand.
 *
 * Returns 0 with a password, PM_PASSWORD_NONE when no source is configured
 * (an open mesh: *len is 0), or a negative code with a sentence in `err` that
 * never contains the password:
 *   PM_ERR_NOT_FOUND  the file does not exist;
 *   PM_ERR_PERM       the file can be read or written by other users (mode
 *                     & 077), like the identity key file, or cannot be read;
 *   PM_ERR_INVAL      empty, too long, more than one line or a NUL byte
 *                     (file, environment or prompt); `file` and `ask` both
 *                     given; PEERMESH_PASSWORD set but empty (an empty
 *                     value is a mistake to report, not an open mesh: a
 *                     user who meant a password must not silently join
 *                     the open mesh); `ask` without a terminal; nothing
 *                     typed before end of input;
 *   PM_ERR_IO         another error reading the file or the terminal, or
 *                     a signal during the prompt (the terminal is restored
 *                     first, then the signal's old action runs).
 * Not thread-safe while prompting (it swaps signal handlers); call it before
 * starting libuv signal watchers or the Lua script. */
int pm_password_load(const pm_password_source *src, char *out, size_t cap,
                     size_t *len, char *err, size_t errlen) PM_MUST_CHECK;

/* Removes PEERMESH_PASSWORD from this process's environment, so that the
 * processes a script starts do not inherit it. Call it once every mesh of
 * the process has loaded its password. */
void pm_password_forget_env(void);

/* The link PSK of mesh `mesh` (a NUL-terminated name, not empty): with
 * `password` NULL, the open-mesh PSK; else Argon2id of the `len` bytes at
 * `password` (1..PM_PASSWORD_MAX; not kept). Argon2id results are cached per
 * (mesh, password) for the life of the process, in locked memory, so a second
 * join of the same mesh costs nothing. Returns 0, PM_ERR_INVAL (empty mesh,
 * empty or too long password) or PM_ERR_NOMEM (Argon2id could not get its
 * memory). Not thread-safe. */
int pm_psk_derive(const char *mesh, const char *password, size_t len,
                  uint8_t psk[PM_PSK_LEN]) PM_MUST_CHECK;

/* The Argon2id salt of mesh `mesh`. */
void pm_psk_salt(const char *mesh, uint8_t salt[PM_PSK_SALT_LEN]);

/* The mesh tag the handshake sends in the clear. */
void pm_mesh_tag(const char *mesh, uint8_t tag[PM_MESH_TAG_LEN]);

/* Wipes and frees the PSK cache (tests; optional at exit). */
void pm_psk_cache_clear(void);
/* How many Argon2id computations this process has run (tests). */
unsigned long pm_psk_argon2_runs(void);

#endif
