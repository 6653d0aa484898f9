/* Tests for runtime/io/password.c: the PSK and mesh tag recipes against
 * independently computed values, the password file, PEERMESH_PASSWORD, and
 * the terminal prompt (on a pseudo-terminal in a child process).
 *
 * Where the expected bytes come from (computed once, pasted here):
 *   salt, tag and open-mesh PSK: Python's hashlib (its own BLAKE2b, not
 *     libsodium's), e.g.
 *       hashlib.blake2b(b"peermesh mesh tag v1" + b"lobby",
 *                       digest_size=16).digest()
 *   password PSK: argon2-cffi 21.1 (Debian python3-argon2, which calls the
 *     Argon2 reference implementation libargon2, not libsodium):
 *       argon2.low_level.hash_secret_raw(b"correct horse battery staple",
 *           salt, time_cost=3, memory_cost=65536, parallelism=1,
 *           hash_len=32, type=argon2.low_level.Type.ID, version=19) */
#define _XOPEN_SOURCE 700 /* posix_openpt, grantpt, unlockpt, ptsname */

#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "password.h"

#define PW "correct horse battery staple"

static const uint8_t lobby_salt[16] = {0x12, 0x3e, 0xd5, 0xf4, 0xb4, 0x60,
                                       0xd8, 0x4f, 0xa6, 0xeb, 0x6d, 0x8d,
                                       0x0e, 0xe7, 0xc4, 0x76};
static const uint8_t lobby_tag[16] = {0x1a, 0xdd, 0xa5, 0x63, 0x10, 0x88,
                                      0x7b, 0x15, 0xee, 0xff, 0xe1, 0x43,
                                      0x7d, 0xfe, 0xc3, 0x54};
static const uint8_t lobby_open[32] = {
    0x63, 0xf1, 0x4d, 0x68, 0x75, 0x8e, 0xab, 0xf6, 0xd8, 0x0d, 0xd9,
    0xc8, 0x2d, 0x08, 0x24, 0x3f, 0x7f, 0x97, 0x08, 0xe8, 0x66, 0xb2,
    0x07, 0x64, 0xe7, 0x8d, 0xe5, 0x43, 0x04, 0x41, 0xfd, 0xe0};
static const uint8_t lobby_psk[32] = {
    0x77, 0x15, 0x0c, 0x07, 0x9c, 0x4d, 0x62, 0x67, 0xf6, 0xa3, 0x41,
    0x24, 0x62, 0xb9, 0xd3, 0xcf, 0xcb, 0x94, 0xfb, 0x85, 0x80, 0x6f,
    0x09, 0x77, 0x9f, 0x0c, 0xe5, 0x8e, 0x21, 0x01, 0x35, 0xd9};
static const uint8_t team7_salt[16] = {0x64, 0x43, 0x1a, 0xc2, 0x3e, 0x10,
                                       0xc8, 0x04, 0x7c, 0x90, 0x3a, 0x88,
                                       0xd0, 0x2a, 0xd0, 0xad};
static const uint8_t team7_tag[16] = {0x07, 0x74, 0xf2, 0x66, 0x5b, 0x7d,
                                      0x9b, 0x7f, 0x34, 0xcf, 0xf1, 0x5f,
                                      0x01, 0x0e, 0x84, 0xe7};
static const uint8_t team7_open[32] = {
    0xa2, 0x03, 0xba, 0x10, 0x13, 0x6b, 0x9e, 0x97, 0x82, 0x2e, 0x97,
    0xdb, 0xb0, 0x33, 0x90, 0x6d, 0x55, 0x15, 0xe3, 0x06, 0x83, 0x8a,
    0xd1, 0x87, 0x50, 0x89, 0x99, 0xb8, 0x6f, 0x47, 0x26, 0x81};
static const uint8_t team7_psk[32] = {
    0xeb, 0xa6, 0x52, 0xb3, 0x59, 0xf8, 0xd5, 0xab, 0x25, 0x51, 0x3c,
    0xb6, 0x53, 0x75, 0x3b, 0x10, 0x6b, 0x2b, 0xdc, 0xf9, 0xaa, 0xf1,
    0x6a, 0x1f, 0xaf, 0x0e, 0xc9, 0x60, 0xbb, 0x80, 0x36, 0xf3};

/* ---- fixtures ----------------------------------------------------------- */

typedef struct tmpdir {
  char path[64];
  char files[16][128];
  int nfiles;
} tmpdir;

static int tmpdir_make(tmpdir *t) {
  memset(t, 0, sizeof *t);
  snprintf(t->path, sizeof t->path, "/tmp/pm_test_password.XXXXXX");
  return mkdtemp(t->path) ? 0 : -1;
}

/* Writes `n` bytes to t/name with `mode`; returns the path (in `t`). */
static const char *tmpdir_write(tmpdir *t, const char *name, const void *data,
                                size_t n, mode_t mode) {
  char *path = t->files[t->nfiles++];
  char dir[sizeof t->path];
  memcpy(dir, t->path, sizeof dir);
  snprintf(path, sizeof t->files[0], "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    return NULL;
  if (n && write(fd, data, n) != (ssize_t)n) {
    close(fd);
    return NULL;
  }
  close(fd);
  return chmod(path, mode) == 0 ? path : NULL;
}

static void tmpdir_remove(tmpdir *t) {
  for (int i = 0; i < t->nfiles; i++)
    unlink(t->files[i]);
  rmdir(t->path);
}

typedef struct loaded {
  int rc;
  size_t len;
  char pw[PM_PASSWORD_MAX + 1];
  char err[512];
} loaded;

static void load(loaded *l, const char *file, int ask) {
  pm_password_source src = {file, ask, "lobby"};
  memset(l, 0, sizeof *l);
  l->rc = pm_password_load(&src, l->pw, sizeof l->pw, &l->len, l->err,
                           sizeof l->err);
}

static void load_file(loaded *l, const char *file) {
  load(l, file, 0);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- keys --------------------------------------------------------------- */

static void test_salt_and_tag_match_hashlib(void) {
  uint8_t salt[16], tag[16];
  pm_psk_salt("lobby", salt);
  CHECK_MEM(salt, lobby_salt, 16);
  pm_psk_salt("team-7", salt);
  CHECK_MEM(salt, team7_salt, 16);
  pm_mesh_tag("lobby", tag);
  CHECK_MEM(tag, lobby_tag, 16);
  pm_mesh_tag("team-7", tag);
  CHECK_MEM(tag, team7_tag, 16);
}

static void test_open_psk_matches_hashlib(void) {
  uint8_t psk[PM_PSK_LEN];
  CHECK_INT(pm_psk_derive("lobby", NULL, 0, psk), 0);
  CHECK_MEM(psk, lobby_open, 32);
  CHECK_INT(pm_psk_derive("team-7", NULL, 0, psk), 0);
  CHECK_MEM(psk, team7_open, 32);
}

static void test_password_psk_matches_reference_argon2(void) {
  pm_psk_cache_clear();
  uint8_t psk[PM_PSK_LEN];
  double t0 = now_s();
  CHECK_INT(pm_psk_derive("lobby", PW, strlen(PW), psk), 0);
  double t1 = now_s();
  CHECK_MEM(psk, lobby_psk, 32);
  CHECK_INT(pm_psk_derive("team-7", PW, strlen(PW), psk), 0);
  CHECK_MEM(psk, team7_psk, 32);
  printf("note: one Argon2id (t=%llu, %zu MiB) took %.3f s\n",
         (unsigned long long)PM_PSK_OPSLIMIT, PM_PSK_MEMLIMIT >> 20, t1 - t0);
}

static void test_psk_cached_per_mesh_and_password(void) {
  pm_psk_cache_clear();
  unsigned long runs = pm_psk_argon2_runs();
  uint8_t a[PM_PSK_LEN], b[PM_PSK_LEN], c[PM_PSK_LEN], d[PM_PSK_LEN];
  CHECK_INT(pm_psk_derive("lobby", PW, strlen(PW), a), 0);
  CHECK_INT(pm_psk_argon2_runs(), runs + 1);
  /* Same mesh and password: from the cache, same bytes. */
  CHECK_INT(pm_psk_derive("lobby", PW, strlen(PW), b), 0);
  CHECK_INT(pm_psk_argon2_runs(), runs + 1);
  CHECK_MEM(a, b, 32);
  /* Another password for the same mesh is not served the cached PSK. */
  CHECK_INT(pm_psk_derive("lobby", "other", 5, c), 0);
  CHECK_INT(pm_psk_argon2_runs(), runs + 2);
  CHECK(memcmp(a, c, 32) != 0);
  /* The cache tells ("lobb", "yother") from ("lobby", "other"). */
  CHECK_INT(pm_psk_derive("lobb", "yother", 6, d), 0);
  CHECK_INT(pm_psk_argon2_runs(), runs + 3);
  CHECK(memcmp(c, d, 32) != 0);
  /* Open meshes never run Argon2id. */
  CHECK_INT(pm_psk_derive("lobby", NULL, 0, d), 0);
  CHECK_INT(pm_psk_argon2_runs(), runs + 3);
  /* A cleared cache recomputes the same value. */
  pm_psk_cache_clear();
  CHECK_INT(pm_psk_derive("lobby", PW, strlen(PW), b), 0);
  CHECK_INT(pm_psk_argon2_runs(), runs + 4);
  CHECK_MEM(a, b, 32);
}

static void test_keys_separate_meshes_and_kinds(void) {
  uint8_t open_l[32], open_t[32], pw_l[32], tag_l[16], tag_t[16], salt[16];
  CHECK_INT(pm_psk_derive("lobby", NULL, 0, open_l), 0);
  CHECK_INT(pm_psk_derive("team-7", NULL, 0, open_t), 0);
  CHECK_INT(pm_psk_derive("lobby", PW, strlen(PW), pw_l), 0);
  pm_mesh_tag("lobby", tag_l);
  pm_mesh_tag("team-7", tag_t);
  pm_psk_salt("lobby", salt);
  CHECK(memcmp(open_l, open_t, 32) != 0);
  CHECK(memcmp(open_l, pw_l, 32) != 0);
  CHECK(memcmp(tag_l, tag_t, 16) != 0);
  /* Distinct labels: the tag sent in the clear is neither the salt nor a
   * prefix of the open PSK. */
  CHECK(memcmp(tag_l, salt, 16) != 0);
  CHECK(memcmp(tag_l, open_l, 16) != 0);
  /* Case matters: mesh names are compared as bytes everywhere. */
  pm_mesh_tag("Lobby", tag_t);
  CHECK(memcmp(tag_l, tag_t, 16) != 0);
}

static void test_derive_rejects_bad_input(void) {
  uint8_t psk[PM_PSK_LEN];
  static char longpw[PM_PASSWORD_MAX + 1];
  memset(longpw, 'a', sizeof longpw);
  CHECK_INT(pm_psk_derive(NULL, NULL, 0, psk), PM_ERR_INVAL);
  CHECK_INT(pm_psk_derive("", NULL, 0, psk), PM_ERR_INVAL);
  CHECK_INT(pm_psk_derive("", PW, strlen(PW), psk), PM_ERR_INVAL);
  CHECK_INT(pm_psk_derive("lobby", "", 0, psk), PM_ERR_INVAL);
  CHECK_INT(pm_psk_derive("lobby", longpw, sizeof longpw, psk), PM_ERR_INVAL);
}

/* ---- --password-file -------------------------------------------------------
 */

static void test_file_line_ends(void) {
  tmpdir t;
  if (tmpdir_make(&t) != 0) {
    CHECK(0);
    return;
  }
  loaded l;
  load_file(&l, tmpdir_write(&t, "lf", "s3cret pw\n", 10, 0600));
  CHECK_INT(l.rc, 0);
  CHECK_INT(l.len, 9);
  CHECK_STR(l.pw, "s3cret pw");
  load_file(&l, tmpdir_write(&t, "crlf", "s3cret pw\r\n", 11, 0600));
  CHECK_INT(l.rc, 0);
  CHECK_STR(l.pw, "s3cret pw");
  load_file(&l, tmpdir_write(&t, "bare", "s3cret pw", 9, 0400));
  CHECK_INT(l.rc, 0);
  CHECK_STR(l.pw, "s3cret pw");
  /* Spaces are part of a password. */
  load_file(&l, tmpdir_write(&t, "spaces", " pw \n", 5, 0600));
  CHECK_INT(l.rc, 0);
  CHECK_STR(l.pw, " pw ");
  /* Only one line end goes; what is left is two lines. */
  load_file(&l, tmpdir_write(&t, "twolf", "s3cret\n\n", 8, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "one line") != NULL);
  load_file(&l, tmpdir_write(&t, "twolines", "s3cret\nmore\n", 12, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "s3cret") == NULL);
  load_file(&l, tmpdir_write(&t, "cr", "s3cret\r", 7, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  load_file(&l, tmpdir_write(&t, "nul", "s3c\0ret\n", 8, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "NUL") != NULL);
  CHECK_INT(l.len, 0);
  tmpdir_remove(&t);
}

static void test_file_empty_refused(void) {
  tmpdir t;
  if (tmpdir_make(&t) != 0) {
    CHECK(0);
    return;
  }
  loaded l;
  const char *p = tmpdir_write(&t, "empty", "", 0, 0600);
  load_file(&l, p);
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "empty") != NULL);
  CHECK(strstr(l.err, p) != NULL);
  load_file(&l, tmpdir_write(&t, "newline", "\n", 1, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "empty") != NULL);
  load_file(&l, tmpdir_write(&t, "crlf", "\r\n", 2, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  tmpdir_remove(&t);
}

static void test_file_mode_refused(void) {
  tmpdir t;
  if (tmpdir_make(&t) != 0) {
    CHECK(0);
    return;
  }
  loaded l;
  const char *p = tmpdir_write(&t, "pw644", "s3cret\n", 7, 0644);
  load_file(&l, p);
  CHECK_INT(l.rc, PM_ERR_PERM);
  CHECK(strstr(l.err, p) != NULL);
  CHECK(strstr(l.err, "readable by other users") != NULL);
  CHECK(strstr(l.err, "0644") != NULL);
  CHECK(strstr(l.err, "chmod 600") != NULL);
  CHECK(strstr(l.err, "s3cret") == NULL);
  CHECK_INT(l.len, 0);
  CHECK_STR(l.pw, "");
  load_file(&l, tmpdir_write(&t, "pw640", "s3cret\n", 7, 0640));
  CHECK_INT(l.rc, PM_ERR_PERM);
  load_file(&l, tmpdir_write(&t, "pw620", "s3cret\n", 7, 0620));
  CHECK_INT(l.rc, PM_ERR_PERM);
  CHECK(strstr(l.err, "writable by other users") != NULL);
  load_file(&l, tmpdir_write(&t, "pw604", "s3cret\n", 7, 0604));
  CHECK_INT(l.rc, PM_ERR_PERM);
  tmpdir_remove(&t);
}

static void test_file_missing_or_not_a_file(void) {
  tmpdir t;
  if (tmpdir_make(&t) != 0) {
    CHECK(0);
    return;
  }
  char missing[128];
  snprintf(missing, sizeof missing, "%s/no-such-file", t.path);
  loaded l;
  load_file(&l, missing);
  CHECK_INT(l.rc, PM_ERR_NOT_FOUND);
  CHECK(strstr(l.err, missing) != NULL);
  CHECK(strstr(l.err, "No such file") != NULL);
  /* A directory is refused whatever its mode. */
  chmod(t.path, 0700);
  load_file(&l, t.path);
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "directory") != NULL);
  if (geteuid() != 0) { /* root reads anything */
    load_file(&l, tmpdir_write(&t, "unreadable", "s3cret\n", 7, 0200));
    CHECK_INT(l.rc, PM_ERR_PERM);
  }
  tmpdir_remove(&t);
}

static void test_file_length_limit(void) {
  tmpdir t;
  if (tmpdir_make(&t) != 0) {
    CHECK(0);
    return;
  }
  static char big[PM_PASSWORD_MAX + 4096];
  memset(big, 'x', sizeof big);
  loaded l;
  /* Exactly the most, with CR LF: accepted. */
  big[PM_PASSWORD_MAX] = '\r';
  big[PM_PASSWORD_MAX + 1] = '\n';
  load_file(&l, tmpdir_write(&t, "max", big, PM_PASSWORD_MAX + 2, 0600));
  CHECK_INT(l.rc, 0);
  CHECK_INT(l.len, PM_PASSWORD_MAX);
  /* One byte more: refused, with or without a line end. */
  big[PM_PASSWORD_MAX] = 'x';
  big[PM_PASSWORD_MAX + 1] = '\n';
  load_file(&l, tmpdir_write(&t, "over-lf", big, PM_PASSWORD_MAX + 2, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "too long") != NULL);
  load_file(&l, tmpdir_write(&t, "over", big, PM_PASSWORD_MAX + 1, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  /* A large file (the wrong file given, say) is refused, not read whole. */
  memset(big, 'x', sizeof big);
  load_file(&l, tmpdir_write(&t, "huge", big, sizeof big, 0600));
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "too long") != NULL);
  CHECK(strstr(l.err, "xxxx") == NULL);
  tmpdir_remove(&t);
}

static void test_small_buffer_refused(void) {
  pm_password_source src = {NULL, 0, "lobby"};
  char out[16], err[256];
  size_t len = 99;
  CHECK_INT(pm_password_load(&src, out, sizeof out, &len, err, sizeof err),
            PM_ERR_INVAL);
  CHECK_INT(len, 0);
}

/* ---- PEERMESH_PASSWORD and precedence ----------------------------------- */

static void test_env(void) {
  loaded l;
  unsetenv(PM_PASSWORD_ENV);
  load(&l, NULL, 0);
  CHECK_INT(l.rc, PM_PASSWORD_NONE);
  CHECK_INT(l.len, 0);
  setenv(PM_PASSWORD_ENV, "from env", 1);
  load(&l, NULL, 0);
  CHECK_INT(l.rc, 0);
  CHECK_STR(l.pw, "from env");
  CHECK_INT(l.len, 8);
  /* Set but empty is a mistake, not an open mesh. */
  setenv(PM_PASSWORD_ENV, "", 1);
  load(&l, NULL, 0);
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, PM_PASSWORD_ENV) != NULL);
  CHECK(strstr(l.err, "empty") != NULL);
  setenv(PM_PASSWORD_ENV, "two\nlines", 1);
  load(&l, NULL, 0);
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "two") == NULL);
  static char longpw[PM_PASSWORD_MAX + 2];
  memset(longpw, 'y', PM_PASSWORD_MAX + 1);
  setenv(PM_PASSWORD_ENV, longpw, 1);
  load(&l, NULL, 0);
  CHECK_INT(l.rc, PM_ERR_INVAL);
  longpw[PM_PASSWORD_MAX] = '\0';
  setenv(PM_PASSWORD_ENV, longpw, 1);
  load(&l, NULL, 0);
  CHECK_INT(l.rc, 0);
  CHECK_INT(l.len, PM_PASSWORD_MAX);
  /* pm_password_forget_env: children started later do not inherit it. */
  pm_password_forget_env();
  CHECK(getenv(PM_PASSWORD_ENV) == NULL);
  load(&l, NULL, 0);
  CHECK_INT(l.rc, PM_PASSWORD_NONE);
  /* No source at all: NULL src is an open mesh too. */
  char out[PM_PASSWORD_MAX + 1], err[64];
  size_t len;
  CHECK_INT(pm_password_load(NULL, out, sizeof out, &len, err, sizeof err),
            PM_PASSWORD_NONE);
}

static void test_precedence(void) {
  tmpdir t;
  if (tmpdir_make(&t) != 0) {
    CHECK(0);
    return;
  }
  loaded l;
  const char *p = tmpdir_write(&t, "pw", "from file\n", 10, 0600);
  setenv(PM_PASSWORD_ENV, "from env", 1);
  /* The file beats the environment... */
  load_file(&l, p);
  CHECK_INT(l.rc, 0);
  CHECK_STR(l.pw, "from file");
  /* ...even a broken environment value, which is not looked at. */
  setenv(PM_PASSWORD_ENV, "", 1);
  load_file(&l, p);
  CHECK_INT(l.rc, 0);
  /* A bad file is an error, not a fall back to the environment. */
  setenv(PM_PASSWORD_ENV, "from env", 1);
  load_file(&l, tmpdir_write(&t, "open", "from file\n", 10, 0644));
  CHECK_INT(l.rc, PM_ERR_PERM);
  CHECK_INT(l.len, 0);
  /* Both command-line sources: refused. */
  load(&l, p, 1);
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "not both") != NULL);
  /* --ask-password beats the environment: without a terminal it fails
   * rather than quietly use PEERMESH_PASSWORD. */
  int saved = dup(STDIN_FILENO);
  int devnull = open("/dev/null", O_RDONLY);
  dup2(devnull, STDIN_FILENO);
  load(&l, NULL, 1);
  dup2(saved, STDIN_FILENO);
  close(saved);
  close(devnull);
  CHECK_INT(l.rc, PM_ERR_INVAL);
  CHECK(strstr(l.err, "terminal") != NULL);
  CHECK(strstr(l.err, "--password-file") != NULL);
  unsetenv(PM_PASSWORD_ENV);
  tmpdir_remove(&t);
}

/* ---- --ask-password on a pseudo-terminal --------------------------------- */

typedef struct pty {
  int master, slave; /* the parent's own slave fd, to read the mode */
  pid_t child;
  int result; /* read end: the child's rc, len, password */
  char seen[8192];
  size_t nseen;
} pty;

typedef struct child_result {
  int rc;
  int echo_after;
  size_t len;
  char pw[PM_PASSWORD_MAX + 1];
  char err[256];
} child_result;

/* Starts a child whose controlling terminal and stdin are a new pty, and
 * which runs pm_password_load with --ask-password for mesh "lobby". */
static int pty_start(pty *p) {
  memset(p, 0, sizeof *p);
  p->master = posix_openpt(O_RDWR | O_NOCTTY);
  if (p->master < 0 || grantpt(p->master) != 0 || unlockpt(p->master) != 0)
    return -1;
  const char *name = ptsname(p->master);
  if (!name)
    return -1;
  char slave_name[128];
  snprintf(slave_name, sizeof slave_name, "%s", name);
  p->slave = open(slave_name, O_RDWR | O_NOCTTY);
  int fds[2];
  if (p->slave < 0 || pipe(fds) != 0)
    return -1;
  fflush(stdout);
  fflush(stderr);
  p->child = fork();
  if (p->child < 0)
    return -1;
  if (p->child == 0) {
    close(fds[0]);
    close(p->master);
    setsid();
    int fd = open(slave_name, O_RDWR); /* becomes the controlling tty */
    if (fd < 0)
      _exit(3);
    dup2(fd, STDIN_FILENO);
    child_result r;
    memset(&r, 0, sizeof r);
    pm_password_source src = {NULL, 1, "lobby"};
    r.rc =
        pm_password_load(&src, r.pw, sizeof r.pw, &r.len, r.err, sizeof r.err);
    struct termios tio;
    r.echo_after = tcgetattr(fd, &tio) == 0 && (tio.c_lflag & ECHO);
    ssize_t w = write(fds[1], &r, sizeof r);
    _exit(w == (ssize_t)sizeof r ? 0 : 4);
  }
  close(fds[1]);
  p->result = fds[0];
  return 0;
}

/* Reads the master until `needle` appears or 10 s pass. */
static int pty_wait(pty *p, const char *needle) {
  double end = now_s() + 10;
  for (;;) {
    p->seen[p->nseen] = '\0';
    if (strstr(p->seen, needle))
      return 0;
    double left = end - now_s();
    if (left <= 0 || p->nseen + 1 >= sizeof p->seen)
      return -1;
    struct pollfd pfd = {p->master, POLLIN, 0};
    if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
      return -1;
    ssize_t r =
        read(p->master, p->seen + p->nseen, sizeof p->seen - 1 - p->nseen);
    if (r <= 0)
      return -1;
    p->nseen += (size_t)r;
  }
}

static int pty_type(pty *p, const char *s) {
  size_t n = strlen(s);
  return write(p->master, s, n) == (ssize_t)n ? 0 : -1;
}

static int slave_echo(pty *p) {
  struct termios tio;
  return tcgetattr(p->slave, &tio) == 0 && (tio.c_lflag & ECHO);
}

/* Waits for the child; returns its wait status, fills *r when it wrote. */
static int pty_finish(pty *p, child_result *r) {
  int status = -1;
  memset(r, 0, sizeof *r);
  r->rc = 12345;
  double end = now_s() + 10;
  while (waitpid(p->child, &status, WNOHANG) == 0) {
    if (now_s() > end) {
      kill(p->child, SIGKILL);
      waitpid(p->child, &status, 0);
      break;
    }
    /* Keep the master drained so the child never blocks writing. */
    struct pollfd pfd = {p->master, POLLIN, 0};
    if (poll(&pfd, 1, 20) > 0 && p->nseen + 1 < sizeof p->seen) {
      ssize_t n =
          read(p->master, p->seen + p->nseen, sizeof p->seen - 1 - p->nseen);
      if (n > 0)
        p->nseen += (size_t)n;
    }
  }
  /* What the child wrote just before it exited may not have been read:
   * it is in the pty already, so a poll that does not wait finds it. */
  for (;;) {
    struct pollfd pfd = {p->master, POLLIN, 0};
    if (p->nseen + 1 >= sizeof p->seen || poll(&pfd, 1, 0) <= 0)
      break;
    ssize_t n =
        read(p->master, p->seen + p->nseen, sizeof p->seen - 1 - p->nseen);
    if (n <= 0)
      break;
    p->nseen += (size_t)n;
  }
  p->seen[p->nseen] = '\0';
  if (read(p->result, r, sizeof *r) != (ssize_t)sizeof *r)
    r->rc = 12345;
  close(p->result);
  close(p->master);
  close(p->slave);
  return status;
}

static void test_prompt_reads_without_echo(void) {
  pty p;
  if (pty_start(&p) != 0) {
    CHECK(0);
    return;
  }
  CHECK_INT(slave_echo(&p), 1);
  CHECK_INT(pty_wait(&p, "Password for mesh lobby: "), 0);
  CHECK_INT(slave_echo(&p), 0); /* echo is off while it waits */
  size_t before = p.nseen;
  CHECK_INT(pty_type(&p, "hunter2 x\n"), 0);
  child_result r;
  int status = pty_finish(&p, &r);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK_INT(r.rc, 0);
  CHECK_STR(r.pw, "hunter2 x");
  CHECK_INT(r.len, 9);
  CHECK_INT(r.echo_after, 1);
  /* Nothing of the password came back to the screen, only the line end. */
  CHECK(strstr(p.seen + before, "hunter2") == NULL);
  CHECK(strstr(p.seen + before, "\n") != NULL);
}

static void test_prompt_end_of_input_and_empty(void) {
  pty p;
  child_result r;
  if (pty_start(&p) != 0) {
    CHECK(0);
    return;
  }
  CHECK_INT(pty_wait(&p, "Password for mesh lobby: "), 0);
  CHECK_INT(pty_type(&p, "\x04"), 0); /* Ctrl-D at the start of a line */
  pty_finish(&p, &r);
  CHECK_INT(r.rc, PM_ERR_INVAL);
  CHECK(strstr(r.err, "end of input") != NULL);
  CHECK_INT(r.echo_after, 1);

  if (pty_start(&p) != 0) {
    CHECK(0);
    return;
  }
  CHECK_INT(pty_wait(&p, "Password for mesh lobby: "), 0);
  CHECK_INT(pty_type(&p, "\n"), 0);
  pty_finish(&p, &r);
  CHECK_INT(r.rc, PM_ERR_INVAL);
  CHECK(strstr(r.err, "empty") != NULL);
  CHECK_INT(r.echo_after, 1);
}

static void test_prompt_too_long(void) {
  pty p;
  child_result r;
  if (pty_start(&p) != 0) {
    CHECK(0);
    return;
  }
  CHECK_INT(pty_wait(&p, "Password for mesh lobby: "), 0);
  static char line[PM_PASSWORD_MAX + 100];
  memset(line, 'z', sizeof line - 2);
  line[sizeof line - 2] = '\n';
  line[sizeof line - 1] = '\0';
  CHECK_INT(pty_type(&p, line), 0);
  pty_finish(&p, &r);
  CHECK_INT(r.rc, PM_ERR_INVAL);
  CHECK(strstr(r.err, "too long") != NULL);
  CHECK_INT(r.len, 0);
  CHECK_INT(r.echo_after, 1);
}

static void test_prompt_restores_terminal_on_sigint(void) {
  pty p;
  child_result r;
  if (pty_start(&p) != 0) {
    CHECK(0);
    return;
  }
  CHECK_INT(pty_wait(&p, "Password for mesh lobby: "), 0);
  CHECK_INT(slave_echo(&p), 0);
  CHECK_INT(pty_type(&p, "half"), 0);
  kill(p.child, SIGINT);
  /* The child dies of SIGINT, as it would have without the prompt... */
  int echo = -1;
  int status = -1;
  double end = now_s() + 10;
  while (waitpid(p.child, &status, WNOHANG) == 0 && now_s() < end)
    usleep(10000);
  echo = slave_echo(&p);
  /* ...and the terminal has its echo back. */
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
  CHECK_INT(echo, 1);
  if (!WIFSIGNALED(status) && !WIFEXITED(status))
    kill(p.child, SIGKILL);
  p.child = -1;
  close(p.result);
  close(p.master);
  close(p.slave);
  (void)r;
}

TEST_MAIN(TEST_CASE(test_salt_and_tag_match_hashlib),
          TEST_CASE(test_open_psk_matches_hashlib),
          TEST_CASE(test_password_psk_matches_reference_argon2),
          TEST_CASE(test_psk_cached_per_mesh_and_password),
          TEST_CASE(test_keys_separate_meshes_and_kinds),
          TEST_CASE(test_derive_rejects_bad_input),
          TEST_CASE(test_file_line_ends), TEST_CASE(test_file_empty_refused),
          TEST_CASE(test_file_mode_refused),
          TEST_CASE(test_file_missing_or_not_a_file),
          TEST_CASE(test_file_length_limit),
          TEST_CASE(test_small_buffer_refused), TEST_CASE(test_env),
          TEST_CASE(test_precedence), TEST_CASE(test_prompt_reads_without_echo),
          TEST_CASE(test_prompt_end_of_input_and_empty),
          TEST_CASE(test_prompt_too_long),
          TEST_CASE(test_prompt_restores_terminal_on_sigint))
