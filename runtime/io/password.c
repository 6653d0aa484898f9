#include "password.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

__attribute__((format(printf, 4, 5))) static int
fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* The rules every source shares: one line of 1..PM_PASSWORD_MAX bytes
 * without NUL, CR or LF. `what` names the source ("password file F",
 * "PEERMESH_PASSWORD", ...); `if_empty` ends the sentence for an empty one.
 * The sentences never quote the password. */
static int check_line(const char *p, size_t n, const char *what,
                      const char *if_empty, char *err, size_t errlen) {
  if (n == 0)
    return fail(err, errlen, PM_ERR_INVAL, "%s is empty; %s", what, if_empty);
  if (n > PM_PASSWORD_MAX)
    return fail(err, errlen, PM_ERR_INVAL,
                "%s is too long: a password is at most %d bytes", what,
                PM_PASSWORD_MAX);
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\0')
      return fail(err, errlen, PM_ERR_INVAL,
                  "%s contains a NUL byte: a password is one line of text",
                  what);
    if (p[i] == '\n' || p[i] == '\r')
      return fail(err, errlen, PM_ERR_INVAL,
                  "%s has more than one line: a password is one line of "
                  "text",
                  what);
  }
  return 0;
}

static int accept_line(const char *p, size_t n, char *out, size_t cap,
                       size_t *len) {
  if (cap <= n)
    return PM_ERR_INVAL;
  memcpy(out, p, n);
  out[n] = '\0';
  *len = n;
  return 0;
}

/* ---- --password-file ----------------------------------------------------- */

static int load_file(const char *path, char *out, size_t cap, size_t *len,
                     char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    int code = e == ENOENT || e == ENOTDIR ? PM_ERR_NOT_FOUND
               : e == EACCES               ? PM_ERR_PERM
                                           : PM_ERR_IO;
    return fail(err, errlen, code, "cannot open password file %s: %s", path,
                strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fail(err, errlen, PM_ERR_IO, "cannot read password file %s: %s",
                path, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return fail(err, errlen, PM_ERR_INVAL,
                "password file %s is a directory, not a file", path);
  }
  /* Like the identity key file: a secret others can read (or replace) is
   * refused, not used with a warning nobody reads. A pipe, as from
   * `--password-file <(pass show mesh)`, is mode 0600 and passes. */
  if (st.st_mode & 077) {
    close(fd);
    return fail(err, errlen, PM_ERR_PERM,
                "password file %s is %s by other users (mode %04o); refusing "
                "to use it (fix with: chmod 600 %s)",
                path,
                st.st_mode & 044   ? "readable"
                : st.st_mode & 022 ? "writable"
                                   : "usable",
                (unsigned)(st.st_mode & 07777), path);
  }

  /* Room for the longest password, CR LF, and one byte more to tell a
   * longer file. Locked so it is never swapped out; sodium_munlock wipes. */
  char buf[PM_PASSWORD_MAX + 3];
  (void)sodium_mlock(buf, sizeof buf);
  size_t n = 0;
  int rd_errno = 0;
  while (n < sizeof buf) {
    ssize_t r = read(fd, buf + n, sizeof buf - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      rd_errno = errno;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  char what[600];
  snprintf(what, sizeof what, "password file %s", path);
  int rc;
  if (rd_errno)
    rc = fail(err, errlen, PM_ERR_IO, "cannot read password file %s: %s", path,
              strerror(rd_errno));
  else if (n == sizeof buf)
    rc = fail(err, errlen, PM_ERR_INVAL,
              "%s is too long: a password is at most %d bytes", what,
              PM_PASSWORD_MAX);
  else {
    /* One line end goes: editors add it, and `echo pw > F` writes it. */
    if (n > 0 && buf[n - 1] == '\n') {
      n--;
      if (n > 0 && buf[n - 1] == '\r')
        n--;
    }
    rc = check_line(buf, n, what, "write the mesh password in it", err, errlen);
    if (rc == 0 && accept_line(buf, n, out, cap, len) != 0)
      rc = fail(err, errlen, PM_ERR_INVAL, "password buffer too small");
  }
  sodium_munlock(buf, sizeof buf);
  return rc;
}

/* ---- PEERMESH_PASSWORD -----------------------------------------------------
 */

static int load_env(char *out, size_t cap, size_t *len, char *err,
                    size_t errlen) {
  const char *v = getenv(PM_PASSWORD_ENV);
  if (!v)
    return PM_PASSWORD_NONE;
  int rc = check_line(v, strnlen(v, PM_PASSWORD_MAX + 1), PM_PASSWORD_ENV,
                      "unset it to join an open mesh, or set the password", err,
                      errlen);
  if (rc == 0 && accept_line(v, strlen(v), out, cap, len) != 0)
    rc = fail(err, errlen, PM_ERR_INVAL, "password buffer too small");
  return rc;
}

/* ---- --ask-password ------------------------------------------------------ */

/* While echo is off, a signal that would end the process first restores the
 * terminal, then runs its old action (usually: die). Ctrl-Z (SIGTSTP)
 * is left alone: it does not end the process, and interactive shells set
 * their own terminal mode when they take the terminal back. */
static const int prompt_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define NSIGNALS (sizeof prompt_signals / sizeof prompt_signals[0])
static struct sigaction prompt_old[NSIGNALS];
static struct termios prompt_saved;
static volatile sig_atomic_t prompt_fd = -1;
static volatile sig_atomic_t prompt_signal;

static void prompt_on_signal(int sig) {
  int saved_errno = errno;
  if (prompt_fd >= 0)
    tcsetattr(prompt_fd, TCSANOW, &prompt_saved);
  prompt_signal = sig;
  for (size_t i = 0; i < NSIGNALS; i++)
    if (prompt_signals[i] == sig)
      sigaction(sig, &prompt_old[i], NULL);
  /* Blocked until this handler returns, then delivered to the old action. */
  raise(sig);
  errno = saved_errno;
}

static void tty_write(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    s += w;
    n -= (size_t)w;
  }
}

static int prompt(const char *mesh, char *out, size_t cap, size_t *len,
                  char *err, size_t errlen) {
  static const char no_tty[] =
      "--ask-password needs a terminal, and %s; give the password with "
      "--password-file FILE or the " PM_PASSWORD_ENV " environment variable";
  if (!isatty(STDIN_FILENO))
    return fail(err, errlen, PM_ERR_INVAL, no_tty, "stdin is not one");
  int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return fail(err, errlen, PM_ERR_INVAL, no_tty, "/dev/tty cannot be opened");
  if (tcgetattr(fd, &prompt_saved) != 0) {
    int e = errno;
    close(fd);
    return fail(err, errlen, PM_ERR_IO, "cannot read the terminal's mode: %s",
                strerror(e));
  }
  struct termios quiet = prompt_saved;
  quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);

  /* No SA_RESTART: a signal whose old action returns must end the read. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = prompt_on_signal;
  sigemptyset(&sa.sa_mask);
  prompt_signal = 0;
  for (size_t i = 0; i < NSIGNALS; i++) {
    sigaction(prompt_signals[i], NULL, &prompt_old[i]);
    if (prompt_old[i].sa_handler != SIG_IGN) /* e.g. SIGHUP under nohup */
      sigaction(prompt_signals[i], &sa, NULL);
  }
  prompt_fd = fd;
  /* TCSAFLUSH drops what was typed before the prompt, which was echoed. */
  int rc = 0;
  if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
    rc = fail(err, errlen, PM_ERR_IO, "cannot turn off the terminal's echo: %s",
              strerror(errno));

  char buf[PM_PASSWORD_MAX + 1];
  (void)sodium_mlock(buf, sizeof buf);
  size_t n = 0;
  int too_long = 0, eof = 0;
  if (rc == 0) {
    char line[128];
    if (mesh && *mesh)
      snprintf(line, sizeof line, "Password for mesh %s: ", mesh);
    else
      snprintf(line, sizeof line, "Password: ");
    tty_write(fd, line);
    for (;;) {
      char c;
      ssize_t r = read(fd, &c, 1);
      if (r < 0 && errno == EINTR && !prompt_signal)
        continue;
      if (r < 0) {
        rc = prompt_signal
                 ? fail(err, errlen, PM_ERR_IO, "password prompt interrupted")
                 : fail(err, errlen, PM_ERR_IO,
                        "cannot read the password from the terminal: %s",
                        strerror(errno));
        break;
      }
      if (r == 0) {
        eof = 1;
        break;
      }
      if (c == '\n')
        break;
      if (n < sizeof buf)
        buf[n++] = c;
      else
        too_long = 1; /* read on to the end of the line, then refuse */
      c = 0;
    }
  }

  tcsetattr(fd, TCSANOW, &prompt_saved);
  prompt_fd = -1;
  for (size_t i = 0; i < NSIGNALS; i++)
    sigaction(prompt_signals[i], &prompt_old[i], NULL);
  tty_write(fd, "\n"); /* the Enter that was not echoed */
  close(fd);

  if (rc == 0) {
    if (n > 0 && buf[n - 1] == '\r')
      n--;
    if (eof && n == 0)
      rc = fail(err, errlen, PM_ERR_INVAL,
                "no password was typed (end of input)");
    else if (too_long || n > PM_PASSWORD_MAX)
      rc = fail(err, errlen, PM_ERR_INVAL,
                "the password typed is too long: a password is at most %d "
                "bytes",
                PM_PASSWORD_MAX);
    else
      rc = check_line(buf, n, "the password typed",
                      "type it, or leave out --ask-password to join an open "
                      "mesh",
                      err, errlen);
    if (rc == 0 && accept_line(buf, n, out, cap, len) != 0)
      rc = fail(err, errlen, PM_ERR_INVAL, "password buffer too small");
  }
  sodium_munlock(buf, sizeof buf);
  return rc;
}

int pm_password_load(const pm_password_source *src, char *out, size_t cap,
                     size_t *len, char *err, size_t errlen) {
  *len = 0;
  if (cap > 0)
    out[0] = '\0';
  if (cap <= PM_PASSWORD_MAX)
    return fail(err, errlen, PM_ERR_INVAL,
                "password buffer too small (need %d bytes)",
                PM_PASSWORD_MAX + 1);
  if (sodium_init() < 0)
    return fail(err, errlen, PM_ERR_IO, "libsodium failed to start");
  if (src && src->file && src->ask)
    return fail(err, errlen, PM_ERR_INVAL,
                "give either --password-file or --ask-password, not both");
  if (src && src->file)
    return load_file(src->file, out, cap, len, err, errlen);
  /* An explicit --ask-password beats an exported PEERMESH_PASSWORD, which
   * may well be meant for another mesh. */
  if (src && src->ask)
    return prompt(src->mesh, out, cap, len, err, errlen);
  return load_env(out, cap, len, err, errlen);
}

void pm_password_forget_env(void) {
  unsetenv(PM_PASSWORD_ENV);
}

/* ---- keys -------------------------------------------------------------------
 */

/* BLAKE2b-`outlen`(label || mesh), unkeyed, the mesh without its NUL. */
static void label_hash(const char *label, const char *mesh, uint8_t *out,
                       size_t outlen) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, outlen);
  crypto_generichash_update(&st, (const unsigned char *)label, strlen(label));
  if (mesh)
    crypto_generichash_update(&st, (const unsigned char *)mesh, strlen(mesh));
  crypto_generichash_final(&st, out, outlen);
}

void pm_psk_salt(const char *mesh, uint8_t salt[PM_PSK_SALT_LEN]) {
  label_hash("peermesh psk salt v1", mesh, salt, PM_PSK_SALT_LEN);
}

void pm_mesh_tag(const char *mesh, uint8_t tag[PM_MESH_TAG_LEN]) {
  label_hash("peermesh mesh tag v1", mesh, tag, PM_MESH_TAG_LEN);
}

/* Argon2id results of this process, so that a script joining a mesh twice,
 * or a bot in two meshes, pays for each (mesh, password) once. Entries are
 * found by a BLAKE2b of (mesh, NUL, password) keyed with a random key of this
 * process, so the cache holds no plain password. The whole table lives in
 * sodium_malloc memory: locked (never swapped), guarded, wiped when freed.
 * Someone able to read this process's memory could test guesses against an
 * entry quickly, but could as well read the PSK itself: the threat model
 * leaves a compromised machine out. */
#define PSK_CACHE_SLOTS 8

typedef struct psk_cache {
  uint8_t key[crypto_generichash_KEYBYTES];
  struct {
    uint8_t id[32];
    uint8_t psk[PM_PSK_LEN];
    int used;
  } slot[PSK_CACHE_SLOTS];
  size_t next; /* the slot to replace when all are used */
} psk_cache;

static psk_cache *cache;
static unsigned long argon2_runs;

static psk_cache *cache_get(void) {
  if (!cache) {
    cache = sodium_malloc(sizeof *cache);
    if (!cache)
      return NULL; /* compute without caching */
    memset(cache, 0, sizeof *cache);
    randombytes_buf(cache->key, sizeof cache->key);
  }
  return cache;
}

static void cache_id(const psk_cache *c, const char *mesh, const char *password,
                     size_t len, uint8_t id[32]) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, c->key, sizeof c->key, 32);
  crypto_generichash_update(&st, (const unsigned char *)mesh, strlen(mesh) + 1);
  crypto_generichash_update(&st, (const unsigned char *)password, len);
  crypto_generichash_final(&st, id, 32);
  sodium_memzero(&st, sizeof st);
}

int pm_psk_derive(const char *mesh, const char *password, size_t len,
                  uint8_t psk[PM_PSK_LEN]) {
  if (!mesh || !*mesh)
    return PM_ERR_INVAL;
  if (sodium_init() < 0)
    return PM_ERR_IO;
  if (!password) {
    label_hash("peermesh open mesh v1", mesh, psk, PM_PSK_LEN);
    return 0;
  }
  if (len == 0 || len > PM_PASSWORD_MAX)
    return PM_ERR_INVAL;

  psk_cache *c = cache_get();
  uint8_t id[32];
  if (c) {
    cache_id(c, mesh, password, len, id);
    for (size_t i = 0; i < PSK_CACHE_SLOTS; i++) {
      if (c->slot[i].used && sodium_memcmp(c->slot[i].id, id, sizeof id) == 0) {
        memcpy(psk, c->slot[i].psk, PM_PSK_LEN);
        sodium_memzero(id, sizeof id);
        return 0;
      }
    }
  }
  uint8_t salt[PM_PSK_SALT_LEN];
  pm_psk_salt(mesh, salt);
  /* crypto_pwhash fails only when it cannot get its memory (the arguments
   * are within libsodium's limits by construction). */
  if (crypto_pwhash(psk, PM_PSK_LEN, password, len, salt, PM_PSK_OPSLIMIT,
                    PM_PSK_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    sodium_memzero(psk, PM_PSK_LEN);
    sodium_memzero(id, sizeof id);
    return PM_ERR_NOMEM;
  }
  argon2_runs++;
  if (c) {
    size_t i = c->next;
    memcpy(c->slot[i].id, id, sizeof id);
    memcpy(c->slot[i].psk, psk, PM_PSK_LEN);
    c->slot[i].used = 1;
    c->next = (i + 1) % PSK_CACHE_SLOTS;
  }
  sodium_memzero(id, sizeof id);
  return 0;
}

void pm_psk_cache_clear(void) {
  if (cache)
    sodium_free(cache); /* wipes */
  cache = NULL;
}

unsigned long pm_psk_argon2_runs(void) {
  return argon2_runs;
}
