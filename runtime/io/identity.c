#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"

/* Writes "PATH: WHY" into err and returns code. */
static int fail(char *err, size_t errlen, int code, const char *path,
                const char *why) {
  if (path && *path)
    snprintf(err, errlen, "%s: %s", path, why);
  else
    snprintf(err, errlen, "%s", why);
  return code;
}

static int read_full(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  /* A longer file is damaged too. */
  uint8_t extra;
  return read(fd, &extra, 1) == 0 ? 0 : -1;
}

static int write_full(int fd, const uint8_t *buf, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t w = write(fd, buf + put, n - put);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    put += (size_t)w;
  }
  return 0;
}

/* Loads the key held by `fd` (already locked). */
static int load_key(int fd, pm_identity *out, char *err, size_t errlen) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return fail(err, errlen, PM_ERR_IO, out->path, strerror(errno));
  if (st.st_mode & 077)
    return fail(err, errlen, PM_ERR_PERM, out->path,
                "key file is readable by other users; refusing to use it "
                "(fix with: chmod 600 on that file)");
  if (st.st_size == 0)
    return 1; /* created but never written: the creator died; fill it now */
  uint8_t sk[crypto_sign_SECRETKEYBYTES];
  if (read_full(fd, sk, sizeof sk) != 0)
    return fail(err, errlen, PM_ERR_MALFORMED, out->path,
                "damaged key file (expected 64 bytes); move it away to get "
                "a new identity");
  uint8_t pk[crypto_sign_PUBLICKEYBYTES];
  crypto_sign_ed25519_sk_to_pk(pk, sk);
  /* The secret key embeds its public half: they must agree. */
  if (memcmp(pk, sk + 32, 32) != 0) {
    sodium_memzero(sk, sizeof sk);
    return fail(err, errlen, PM_ERR_MALFORMED, out->path,
                "damaged key file (public and secret halves disagree)");
  }
  memcpy(out->secret_key, sk, sizeof sk);
  memcpy(out->public_key, pk, sizeof pk);
  sodium_memzero(sk, sizeof sk);
  return 0;
}

static int create_key(int fd, pm_identity *out, char *err, size_t errlen) {
  crypto_sign_keypair(out->public_key, out->secret_key);
  if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0 ||
      write_full(fd, out->secret_key, sizeof out->secret_key) != 0 ||
      fsync(fd) != 0)
    return fail(err, errlen, PM_ERR_IO, out->path, strerror(errno));
  return 0;
}

int pm_identity_acquire(const char *data_dir, pm_identity *out, char *err,
                        size_t errlen) {
  memset(out, 0, sizeof *out);
  out->fd = -1;
  if (sodium_init() < 0)
    return fail(err, errlen, PM_ERR_IO, "", "libsodium failed to start");
  char dir[4096];
  if (pm_paths_join(dir, sizeof dir, data_dir, "identity") != 0)
    return fail(err, errlen, PM_ERR_INVAL, data_dir, "path too long");
  if (pm_paths_mkdir_p(dir) != 0)
    return fail(err, errlen, PM_ERR_IO, dir, strerror(errno));
  for (int slot = 0; slot < PM_IDENTITY_MAX_SLOTS; slot++) {
    char name[32];
    snprintf(name, sizeof name, "%d.key", slot);
    if (pm_paths_join(out->path, sizeof out->path, dir, name) != 0)
      return fail(err, errlen, PM_ERR_INVAL, dir, "path too long");
    int fd = open(out->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      return fail(err, errlen, PM_ERR_IO, out->path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      if (errno == EWOULDBLOCK)
        continue; /* another running instance holds this one */
      return fail(err, errlen, PM_ERR_IO, out->path, strerror(errno));
    }
    int rc = load_key(fd, out, err, errlen);
    if (rc == 1)
      rc = create_key(fd, out, err, errlen);
    if (rc != 0) {
      close(fd);
      sodium_memzero(out->secret_key, sizeof out->secret_key);
      return rc;
    }
    out->fd = fd;
    out->slot = slot;
    return 0;
  }
  return fail(err, errlen, PM_ERR_FULL, dir,
              "every identity slot is in use by a running instance");
}

void pm_identity_release(pm_identity *id) {
  sodium_memzero(id->secret_key, sizeof id->secret_key);
  if (id->fd >= 0)
    close(id->fd); /* closing drops the flock */
  id->fd = -1;
}

void pm_identity_hex(const uint8_t id[PM_NODE_ID_LEN], char *out) {
  sodium_bin2hex(out, 2 * PM_NODE_ID_LEN + 1, id, PM_NODE_ID_LEN);
}

void pm_identity_fingerprint(const uint8_t id[PM_NODE_ID_LEN],
                             char out[PM_FINGERPRINT_LEN]) {
  /* 100 bits of BLAKE2b in base32 (no 0/1/l/o to avoid misreading),
   * grouped by four. */
  static const char alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
  uint8_t h[16];
  crypto_generichash(h, sizeof h, id, PM_NODE_ID_LEN, NULL, 0);
  size_t o = 0;
  unsigned bits = 0, acc = 0, i = 0, chars = 0;
  while (chars < 20) {
    if (bits < 5) {
      acc = (acc << 8) | h[i++];
      bits += 8;
    }
    bits -= 5;
    if (chars && chars % 4 == 0)
      out[o++] = '-';
    out[o++] = alphabet[(acc >> bits) & 31];
    chars++;
  }
  out[o] = '\0';
}
