/* Tests for db/db.c and the `peermesh history` command, each on a fresh
 * directory under /tmp that is removed afterwards. */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"

#include "cmd_history.h"

/* ---- fixtures ----------------------------------------------------------- */

typedef struct tmpdir {
  char path[64];
} tmpdir;

static int tmpdir_make(tmpdir *t) {
  snprintf(t->path, sizeof t->path, "/tmp/pm_test_db.XXXXXX");
  return mkdtemp(t->path) ? 0 : -1;
}

static void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *de;
      while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
          continue;
        char child[512];
        snprintf(child, sizeof child, "%s/%s", path, de->d_name);
        remove_tree(child);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

static void tmpdir_file(const tmpdir *t, const char *name, char *out,
                        size_t n) {
  snprintf(out, n, "%s/%s", t->path, name);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static int write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t w = fwrite(p, 1, n, f);
  return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* Reads a whole (small) file; returns its length or -1. */
static long read_bytes(const char *path, uint8_t *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, cap, f);
  int more = fgetc(f) != EOF;
  fclose(f);
  return more ? -1 : (long)n;
}

/* Overwrites 4 big-endian bytes of the database header (user_version at 60,
 * application_id at 68), as a newer or foreign program would have left them. */
static int patch_header_u32(const char *path, long offset, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                  (uint8_t)v};
  FILE *f = fopen(path, "r+b");
  if (!f)
    return -1;
  int ok = fseek(f, offset, SEEK_SET) == 0 && fwrite(b, 1, 4, f) == 4;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

static uint32_t header_u32(const uint8_t *p, size_t off) {
  return (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 |
         (uint32_t)p[off + 2] << 8 | p[off + 3];
}

static pm_history_entry entry(uint8_t id, const char *mesh, uint8_t author,
                              uint64_t seq, int64_t time_ms, const char *action,
                              const char *body) {
  pm_history_entry e;
  memset(&e, 0, sizeof e);
  memset(e.msg_id, id, sizeof e.msg_id);
  e.mesh = mesh;
  memset(e.author, author, sizeof e.author);
  e.seq = seq;
  e.time_ms = time_ms;
  e.received_ms = time_ms + 5;
  e.hops = 2;
  e.action = action;
  e.body = body;
  e.body_len = strlen(body);
  return e;
}

/* Collects what pm_db_history_each gives. */
typedef struct seen {
  int n;
  uint8_t ids[512];
  uint64_t seqs[512];
  int own[512];
  char text[512][32];
  int stop_after;
} seen;

static int collect(void *ud, const pm_history_entry *e) {
  seen *s = ud;
  if (s->n < 512) {
    s->ids[s->n] = e->msg_id[0];
    s->seqs[s->n] = e->seq;
    s->own[s->n] = e->own;
    snprintf(s->text[s->n], sizeof s->text[s->n], "%s",
             e->text ? e->text : "(null)");
  }
  s->n++;
  return s->stop_after && s->n >= s->stop_after;
}

static int count_all(pm_db *db) {
  seen s;
  memset(&s, 0, sizeof s);
  if (pm_db_history_each(db, NULL, collect, &s) != 0)
    return -1;
  return s.n;
}

static pm_db *open_rw(const char *path) {
  char err[256];
  pm_db *db = NULL;
  int rc = pm_db_open(path, 0, &db, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "pm_db_open(%s): %d %s\n", path, rc, err);
  return db;
}

/* ---- schema ------------------------------------------------------------- */

static void test_migrations(void) {
  tmpdir t;
  char path[128];
  static uint8_t a[65536], b[65536];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);

  pm_db *db = open_rw(path);
  CHECK(db != NULL);
  CHECK_STR(pm_db_errmsg(db), "");
  pm_db_close(db);
  long na = read_bytes(path, a, sizeof a);
  CHECK(na >= 100);
  CHECK_INT(header_u32(a, 60), PM_DB_SCHEMA_VERSION); /* user_version */
  CHECK_INT(header_u32(a, 68), 0x504d4442);           /* application_id */
  CHECK_INT(a[18], 2); /* WAL: file format write version 2 */

  /* A second open finds the schema current and writes nothing. */
  db = open_rw(path);
  CHECK(db != NULL);
  CHECK_INT(count_all(db), 0);
  pm_db_close(db);
  long nb = read_bytes(path, b, sizeof b);
  CHECK_INT(nb, na);
  CHECK(na > 0 && nb == na && memcmp(a, b, (size_t)na) == 0);

  /* Read-only opens work on it too. */
  char err[256];
  CHECK_INT(pm_db_open(path, PM_DB_READONLY, &db, err, sizeof err), 0);
  CHECK_INT(count_all(db), 0);
  pm_history_entry e = entry(1, "lobby", 1, 1, 1000, "Chat", "{}");
  CHECK_INT(pm_db_history_add(db, &e, 1), PM_ERR_DB); /* read-only */
  CHECK(strstr(pm_db_errmsg(db), path) != NULL);
  pm_db_close(db);
  remove_tree(t.path);
}

static void test_open_bad_args(void) {
  char err[64] = "x";
  pm_db *db = (pm_db *)&err; /* must be reset to NULL */
  CHECK_INT(pm_db_open("", 0, &db, err, sizeof err), PM_ERR_INVAL);
  CHECK(db == NULL);
  CHECK(err[0] != '\0');
  CHECK_INT(pm_db_open("/nonexistent/x.db", 8, &db, err, sizeof err),
            PM_ERR_INVAL);
  pm_db_close(NULL);
  CHECK_STR(pm_db_errmsg(NULL), "no database");
}

/* ---- history ------------------------------------------------------------ */

static void test_add_each_order(void) {
  tmpdir t;
  char path[128];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  pm_db *db = open_rw(path);
  CHECK(db != NULL);

  /* Out of order on purpose; ties on time broken by author, then seq. */
  pm_history_entry es[4] = {
      entry(4, "lobby", 9, 1, 3000, "Chat",
            "{\"member\":\"bob\",\"text\":\"last\"}"),
      entry(2, "lobby", 1, 7, 2000, "Chat",
            "{\"member\":\"alice\",\"text\":\"hi\"}"),
      entry(3, "lobby", 2, 1, 2000, "Join", "{\"member\":\"carol\"}"),
      entry(1, "lobby", 1, 6, 2000, "Poke", "[1, 2]"),
  };
  es[1].own = 1;
  es[1].hops = 0;
  CHECK_INT(pm_db_history_add(db, es, 4), 0);
  CHECK_INT(pm_db_history_add(db, es, 0), 0);

  seen s;
  memset(&s, 0, sizeof s);
  CHECK_INT(pm_db_history_each(db, NULL, collect, &s), 0);
  CHECK_INT(s.n, 4);
  CHECK_INT(s.ids[0], 1);         /* t=2000 author 1 seq 6 */
  CHECK_INT(s.ids[1], 2);         /* t=2000 author 1 seq 7 */
  CHECK_INT(s.ids[2], 3);         /* t=2000 author 2 */
  CHECK_INT(s.ids[3], 4);         /* t=3000 */
  CHECK_STR(s.text[0], "(null)"); /* array body: no member/text */
  CHECK_STR(s.text[1], "hi");
  CHECK_STR(s.text[2], "(null)");
  CHECK_INT(s.own[1], 1);
  CHECK_INT(s.own[0], 0);

  /* cb stops the walk. */
  memset(&s, 0, sizeof s);
  s.stop_after = 2;
  CHECK_INT(pm_db_history_each(db, NULL, collect, &s), 0);
  CHECK_INT(s.n, 2);
  pm_db_close(db);
  remove_tree(t.path);
}

/* Checks every field of one stored entry. */
static int check_fields(void *ud, const pm_history_entry *e) {
  int *ok = ud;
  uint8_t id[32], au[32];
  memset(id, 0xab, sizeof id);
  memset(au, 0xcd, sizeof au);
  *ok =
      memcmp(e->msg_id, id, 32) == 0 && memcmp(e->author, au, 32) == 0 &&
      strcmp(e->mesh, "lobby") == 0 && e->seq == UINT64_MAX - 1 &&
      e->time_ms == -5 && e->received_ms == 1234567890123 &&
      e->hops == 4000000000u && e->own == 1 && strcmp(e->action, "Chat") == 0 &&
      e->body_len == 31 &&
      strcmp(e->body, "{\"member\":\"\xc3\xa9ve\",\"text\":\"a\\\"b\"}") == 0 &&
      e->member && strcmp(e->member, "\xc3\xa9ve") == 0 && e->text &&
      strcmp(e->text, "a\"b") == 0;
  return 0;
}

static void test_fields_round_trip(void) {
  tmpdir t;
  char path[128];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  pm_db *db = open_rw(path);
  CHECK(db != NULL);
  pm_history_entry e = entry(0xab, "lobby", 0xcd, UINT64_MAX - 1, -5, "Chat",
                             "{\"member\":\"\xc3\xa9ve\",\"text\":\"a\\\"b\"}");
  e.received_ms = 1234567890123;
  e.hops = 4000000000u;
  e.own = 1;
  CHECK_INT(e.body_len, 31);
  CHECK_INT(pm_db_history_add(db, &e, 1), 0);
  int ok = 0;
  CHECK_INT(pm_db_history_each(db, NULL, check_fields, &ok), 0);
  CHECK(ok);
  pm_db_close(db);
  remove_tree(t.path);
}

static void test_duplicates_two_handles(void) {
  tmpdir t;
  char path[128];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  pm_db *a = open_rw(path);
  pm_db *b = open_rw(path);
  CHECK(a != NULL && b != NULL);

  pm_history_entry e = entry(7, "lobby", 1, 1, 1000, "Chat",
                             "{\"member\":\"alice\",\"text\":\"once\"}");
  e.own = 1; /* stored first by the sender's process */
  CHECK_INT(pm_db_history_add(a, &e, 1), 0);
  e.own = 0; /* then received by another process on the same data dir */
  CHECK_INT(pm_db_history_add(b, &e, 1), 0);
  CHECK_INT(pm_db_history_add(a, &e, 1), 0);
  /* A duplicate inside one batch is stored once as well. */
  pm_history_entry pair[2] = {
      entry(8, "lobby", 1, 2, 2000, "Chat", "{}"),
      entry(8, "lobby", 1, 2, 2000, "Chat", "{}"),
  };
  CHECK_INT(pm_db_history_add(b, pair, 2), 0);

  seen s;
  memset(&s, 0, sizeof s);
  CHECK_INT(pm_db_history_each(b, NULL, collect, &s), 0);
  CHECK_INT(s.n, 2);
  CHECK_INT(s.ids[0], 7);
  CHECK_INT(s.own[0], 1); /* the first store won */
  CHECK_INT(count_all(a), 2);
  pm_db_close(a);
  pm_db_close(b);
  remove_tree(t.path);
}

/* Three real processes store the same 120 messages at once, in batches, as
 * three chat processes on one data directory do; each is stored once. */
static void test_duplicates_three_processes(void) {
  tmpdir t;
  char path[128];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  enum { PROCS = 3, MSGS = 120, BATCH = 8 };
  pid_t pids[PROCS];
  fflush(NULL);
  for (int p = 0; p < PROCS; p++) {
    pids[p] = fork();
    if (pids[p] == 0) {
      int fail = 0;
      pm_db *db = open_rw(path);
      if (!db)
        _exit(3);
      for (int i = 0; i < MSGS && !fail; i += BATCH) {
        pm_history_entry es[BATCH];
        size_t n = 0;
        for (int j = i; j < i + BATCH && j < MSGS; j++) {
          es[n] = entry((uint8_t)j, "lobby", (uint8_t)p, (uint64_t)j, 1000 + j,
                        "Chat", "{\"text\":\"x\"}");
          es[n].own = p == j % PROCS;
          n++;
        }
        int rc = pm_db_history_add(db, es, n);
        if (rc != 0) {
          fprintf(stderr, "child %d: %s\n", p, pm_db_errmsg(db));
          fail = 1;
        }
      }
      pm_db_close(db);
      _exit(fail);
    }
    CHECK(pids[p] > 0);
  }
  for (int p = 0; p < PROCS; p++) {
    int status = -1;
    CHECK(waitpid(pids[p], &status, 0) == pids[p]);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  pm_db *db = open_rw(path);
  CHECK(db != NULL);
  seen s;
  memset(&s, 0, sizeof s);
  CHECK_INT(pm_db_history_each(db, NULL, collect, &s), 0);
  CHECK_INT(s.n, MSGS);
  for (int i = 0; i < MSGS && i < s.n; i++)
    CHECK_INT(s.ids[i], i);
  pm_db_close(db);
  remove_tree(t.path);
}

static void test_invalid_json_rejected(void) {
  tmpdir t;
  char path[128];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  pm_db *db = open_rw(path);
  CHECK(db != NULL);

  pm_history_entry es[2] = {
      entry(1, "lobby", 1, 1, 1000, "Chat", "{\"text\":\"fine\"}"),
      entry(2, "lobby", 1, 2, 1001, "Chat", "{\"text\": oops}"),
  };
  CHECK_INT(pm_db_history_add(db, es, 2), PM_ERR_INVAL);
  CHECK(strstr(pm_db_errmsg(db), "entry 1") != NULL);
  CHECK(strstr(pm_db_errmsg(db), "not valid JSON") != NULL);
  CHECK_INT(count_all(db), 0);

  /* A raw control character inside a string is not JSON either. */
  es[1] = entry(2, "lobby", 1, 2, 1001, "Chat", "{\"text\":\"\x1b[2J\"}");
  CHECK_INT(pm_db_history_add(db, es, 2), PM_ERR_INVAL);
  /* A NUL byte must not hide trailing garbage from the JSON check. */
  es[1] = entry(2, "lobby", 1, 2, 1001, "Chat", "{}");
  es[1].body = "{}\0garbage";
  es[1].body_len = 10;
  CHECK_INT(pm_db_history_add(db, es, 2), PM_ERR_INVAL);
  es[1] = entry(2, "", 1, 2, 1001, "Chat", "{}");
  CHECK_INT(pm_db_history_add(db, es, 2), PM_ERR_INVAL);
  es[1] = entry(2, "lobby", 1, 2, 1001, "", "{}");
  CHECK_INT(pm_db_history_add(db, es, 2), PM_ERR_INVAL);
  es[1].action = NULL;
  CHECK_INT(pm_db_history_add(db, es, 2), PM_ERR_INVAL);
  CHECK_INT(count_all(db), 0);

  CHECK_INT(pm_db_body_valid(db, "{\"a\":[1,2]}", 11), 1);
  CHECK_INT(pm_db_body_valid(db, "{\"a\":", 5), 0);
  CHECK_INT(pm_db_body_valid(db, "", 0), 0);
  CHECK_INT(pm_db_body_valid(db, "{}\0x", 4), 0);
  pm_db_close(db);
  remove_tree(t.path);
}

static void test_limit_and_mesh(void) {
  tmpdir t;
  char path[128];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  pm_db *db = open_rw(path);
  CHECK(db != NULL);
  pm_history_entry es[6];
  for (int i = 0; i < 6; i++)
    es[i] = entry((uint8_t)(i + 1), i % 2 ? "other" : "lobby", 1, (uint64_t)i,
                  1000 * (6 - i), "Chat", "{}");
  /* ids 1..6 at times 6000..1000: the oldest is id 6. */
  CHECK_INT(pm_db_history_add(db, es, 6), 0);

  seen s;
  memset(&s, 0, sizeof s);
  pm_history_filter f = {NULL, 2};
  CHECK_INT(pm_db_history_each(db, &f, collect, &s), 0);
  CHECK_INT(s.n, 2);
  CHECK_INT(s.ids[0], 2); /* t=5000 */
  CHECK_INT(s.ids[1], 1); /* t=6000, the newest, last */

  memset(&s, 0, sizeof s);
  f.limit = 100;
  CHECK_INT(pm_db_history_each(db, &f, collect, &s), 0);
  CHECK_INT(s.n, 6);
  CHECK_INT(s.ids[0], 6);

  memset(&s, 0, sizeof s);
  f.mesh = "lobby"; /* ids 1, 3, 5 */
  f.limit = 0;
  CHECK_INT(pm_db_history_each(db, &f, collect, &s), 0);
  CHECK_INT(s.n, 3);
  CHECK_INT(s.ids[0], 5);
  CHECK_INT(s.ids[1], 3);
  CHECK_INT(s.ids[2], 1);

  memset(&s, 0, sizeof s);
  f.limit = 2;
  CHECK_INT(pm_db_history_each(db, &f, collect, &s), 0);
  CHECK_INT(s.n, 2);
  CHECK_INT(s.ids[0], 3);
  CHECK_INT(s.ids[1], 1);

  memset(&s, 0, sizeof s);
  f.mesh = "nobody";
  CHECK_INT(pm_db_history_each(db, &f, collect, &s), 0);
  CHECK_INT(s.n, 0);

  f.limit = -1;
  CHECK_INT(pm_db_history_each(db, &f, collect, &s), PM_ERR_INVAL);
  pm_db_close(db);
  remove_tree(t.path);
}

/* A callback may not re-enter the db: the walk holds a cached statement. */
static int reenter(void *ud, const pm_history_entry *e) {
  pm_db *db = ud;
  (void)e;
  pm_history_entry x = entry(9, "lobby", 1, 1, 1, "Chat", "{}");
  CHECK_INT(pm_db_history_add(db, &x, 1), PM_ERR_INVAL);
  CHECK_INT(pm_db_history_each(db, NULL, reenter, db), PM_ERR_INVAL);
  return 0;
}

static void test_reentry_refused(void) {
  tmpdir t;
  char path[128];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  pm_db *db = open_rw(path);
  CHECK(db != NULL);
  pm_history_entry e = entry(1, "lobby", 1, 1, 1, "Chat", "{}");
  CHECK_INT(pm_db_history_add(db, &e, 1), 0);
  CHECK_INT(pm_db_history_each(db, NULL, reenter, db), 0);
  CHECK_INT(count_all(db), 1);
  pm_db_close(db);
  remove_tree(t.path);
}

/* ---- peers -------------------------------------------------------------- */

typedef struct peers_seen {
  int n;
  uint8_t ids[300];
  char addrs[4][64];
} peers_seen;

static int collect_peer(void *ud, const uint8_t node_id[32], const char *addr) {
  peers_seen *p = ud;
  if (p->n < 300)
    p->ids[p->n] = node_id[0];
  if (p->n < 4)
    snprintf(p->addrs[p->n], sizeof p->addrs[p->n], "%s", addr);
  p->n++;
  return 0;
}

static void test_peers(void) {
  tmpdir t;
  char path[128];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  pm_db *db = open_rw(path);
  CHECK(db != NULL);
  uint8_t a[32], b[32], c[32];
  memset(a, 0xa, 32);
  memset(b, 0xb, 32);
  memset(c, 0xc, 32);
  CHECK_INT(pm_db_peer_seen(db, "lobby", a, "10.0.0.1:7000", 100), 0);
  CHECK_INT(pm_db_peer_seen(db, "lobby", b, "10.0.0.2:7000", 200), 0);
  CHECK_INT(pm_db_peer_seen(db, "other", c, "10.0.0.3:7000", 900), 0);
  CHECK_INT(pm_db_peer_seen(db, "lobby", a, "10.0.0.9:7001", 300), 0);
  /* A late report of an older sighting changes nothing. */
  CHECK_INT(pm_db_peer_seen(db, "lobby", b, "10.9.9.9:1", 50), 0);

  peers_seen p;
  memset(&p, 0, sizeof p);
  CHECK_INT(pm_db_peers_recent(db, "lobby", 10, collect_peer, &p), 0);
  CHECK_INT(p.n, 2);
  CHECK_INT(p.ids[0], 0xa);
  CHECK_STR(p.addrs[0], "10.0.0.9:7001");
  CHECK_INT(p.ids[1], 0xb);
  CHECK_STR(p.addrs[1], "10.0.0.2:7000");

  memset(&p, 0, sizeof p);
  CHECK_INT(pm_db_peers_recent(db, "lobby", 1, collect_peer, &p), 0);
  CHECK_INT(p.n, 1);
  CHECK_INT(p.ids[0], 0xa);
  memset(&p, 0, sizeof p);
  CHECK_INT(pm_db_peers_recent(db, "lobby", 0, collect_peer, &p), 0);
  CHECK_INT(p.n, 0);
  memset(&p, 0, sizeof p);
  CHECK_INT(pm_db_peers_recent(db, "none", 10, collect_peer, &p), 0);
  CHECK_INT(p.n, 0);

  CHECK_INT(pm_db_peer_seen(db, "lobby", a, "", 1), PM_ERR_INVAL);
  CHECK_INT(pm_db_peer_seen(db, NULL, a, "x:1", 1), PM_ERR_INVAL);
  CHECK_INT(pm_db_peer_seen(db, "lobby", NULL, "x:1", 1), PM_ERR_INVAL);

  /* A mesh keeps at most PM_DB_PEERS_MAX peers, the most recent ones. */
  int failed = 0;
  for (int i = 0; i < PM_DB_PEERS_MAX + 10; i++) {
    uint8_t id[32];
    memset(id, 0, sizeof id);
    id[0] = (uint8_t)i;
    id[1] = (uint8_t)(i >> 8);
    failed += pm_db_peer_seen(db, "big", id, "10.1.1.1:1", 1000 + i) != 0;
  }
  CHECK_INT(failed, 0);
  memset(&p, 0, sizeof p);
  CHECK_INT(pm_db_peers_recent(db, "big", 1000, collect_peer, &p), 0);
  CHECK_INT(p.n, PM_DB_PEERS_MAX);
  CHECK_INT(p.ids[0], (PM_DB_PEERS_MAX + 9) & 0xff);
  memset(&p, 0, sizeof p);
  CHECK_INT(pm_db_peers_recent(db, "lobby", 10, collect_peer, &p), 0);
  CHECK_INT(p.n, 2);
  pm_db_close(db);
  remove_tree(t.path);
}

/* ---- bad files ---------------------------------------------------------- */

static void test_garbage_file(void) {
  tmpdir t;
  char path[128], err[256];
  uint8_t after[4096];
  static const char junk[] =
      "this is not a database, just some bytes a user put here by mistake, "
      "long enough to cover a whole SQLite header and then some more.\n";
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  CHECK(write_bytes(path, junk, sizeof junk - 1) == 0);

  for (int flags = 0; flags <= PM_DB_READONLY; flags++) {
    pm_db *db = NULL;
    CHECK_INT(pm_db_open(path, flags, &db, err, sizeof err), PM_ERR_DB);
    CHECK(db == NULL);
    CHECK(strncmp(err, path, strlen(path)) == 0);
    CHECK(strstr(err, "not a database") != NULL);
    long n = read_bytes(path, after, sizeof after);
    CHECK_INT(n, (long)sizeof junk - 1);
    CHECK(n > 0 && memcmp(after, junk, (size_t)n) == 0);
  }

  /* A directory where the file should be. */
  char dirpath[160];
  tmpdir_file(&t, "adir", dirpath, sizeof dirpath);
  CHECK(mkdir(dirpath, 0700) == 0);
  pm_db *db = NULL;
  CHECK_INT(pm_db_open(dirpath, 0, &db, err, sizeof err), PM_ERR_DB);
  CHECK(strncmp(err, dirpath, strlen(dirpath)) == 0);
  remove_tree(t.path);
}

/* Makes a valid, current database at `path` and reads its bytes. */
static long make_db(const char *path, uint8_t *buf, size_t cap) {
  pm_db *db = open_rw(path);
  if (!db)
    return -1;
  pm_history_entry e = entry(1, "lobby", 1, 1, 1000, "Chat", "{}");
  int rc = pm_db_history_add(db, &e, 1);
  pm_db_close(db); /* the last close checkpoints the WAL into the file */
  if (rc != 0)
    return -1;
  return read_bytes(path, buf, cap);
}

static void refused_unchanged(const char *path, const char *why) {
  static uint8_t before[65536], after[65536];
  char err[256];
  long n = read_bytes(path, before, sizeof before);
  CHECK(n > 0);
  for (int flags = 0; flags <= PM_DB_READONLY; flags++) {
    pm_db *db = NULL;
    CHECK_INT(pm_db_open(path, flags, &db, err, sizeof err), PM_ERR_DB);
    CHECK(db == NULL);
    CHECK(strncmp(err, path, strlen(path)) == 0);
    if (!strstr(err, why))
      fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err, why);
    CHECK(strstr(err, why) != NULL);
    long m = read_bytes(path, after, sizeof after);
    CHECK_INT(m, n);
    CHECK(n > 0 && m == n && memcmp(before, after, (size_t)n) == 0);
  }
}

static void test_newer_schema_refused(void) {
  tmpdir t;
  char path[128];
  static uint8_t buf[65536];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  CHECK(make_db(path, buf, sizeof buf) > 0);
  CHECK(patch_header_u32(path, 60, 999) == 0);
  refused_unchanged(path, "schema version 999 is newer");
  remove_tree(t.path);
}

static void test_foreign_db_refused(void) {
  tmpdir t;
  char path[128];
  static uint8_t buf[65536];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  CHECK(make_db(path, buf, sizeof buf) > 0);
  CHECK(patch_header_u32(path, 68, 0x12345678) == 0);
  refused_unchanged(path, "not a peermesh database");
  /* Tables but no schema version: also someone else's. */
  CHECK(patch_header_u32(path, 68, 0) == 0);
  CHECK(patch_header_u32(path, 60, 0) == 0);
  refused_unchanged(path, "not a peermesh database");
  remove_tree(t.path);
}

static void test_readonly_missing(void) {
  tmpdir t;
  char path[128], err[256];
  CHECK(tmpdir_make(&t) == 0);
  tmpdir_file(&t, "history.db", path, sizeof path);
  pm_db *db = NULL;
  CHECK_INT(pm_db_open(path, PM_DB_READONLY, &db, err, sizeof err),
            PM_ERR_NOT_FOUND);
  CHECK(db == NULL);
  CHECK(strstr(err, path) != NULL);
  CHECK(!exists(path));
  char other[160];
  tmpdir_file(&t, "history.db-wal", other, sizeof other);
  CHECK(!exists(other));
  remove_tree(t.path);
}

/* ---- peermesh history --------------------------------------------------- */

typedef struct run_out {
  int code;
  char *out;
  char *err;
} run_out;

static run_out run_cmd(int argc, const char *const *args) {
  run_out r = {0, NULL, NULL};
  size_t on = 0, en = 0;
  char *argv[16];
  for (int i = 0; i < argc && i < 15; i++)
    argv[i] = (char *)args[i];
  argv[argc] = NULL;
  FILE *out = open_memstream(&r.out, &on);
  FILE *err = open_memstream(&r.err, &en);
  r.code = pm_cmd_history(argc, argv, out, err);
  fclose(out);
  fclose(err);
  return r;
}

static void run_free(run_out *r) {
  free(r->out);
  free(r->err);
}

#define T0 INT64_C(1795642803000) /* 2026-11-25 21:40:03 UTC */

static void fill_history(const char *dir) {
  char path[160];
  snprintf(path, sizeof path, "%s/history.db", dir);
  pm_db *db = open_rw(path);
  CHECK(db != NULL);
  pm_history_entry es[] = {
      entry(1, "lobby", 1, 1, T0 - 2000, "Join", "{\"member\":\"alice\"}"),
      entry(2, "lobby", 1, 2, T0, "Chat",
            "{\"member\":\"alice\",\"text\":\"hello there\"}"),
      entry(3, "games", 2, 1, T0 + 1000, "Poke", "{\"n\": 1,\n\"s\":\"x\"}"),
      entry(4, "lobby", 2, 1, T0 + 2000, "Chat",
            "{\"member\":\"m\\u001b]0;pwn\\u0007\",\"text\":"
            "\"\\u001b[31mred\\r\\u009b2J \xe2\x80\xae!\"}"),
      entry(5, "lobby", 1, 3, T0 + 3000, "Leave", "{\"member\":\"alice\"}"),
      entry(6, "lobby", 1, 4, T0 + 4000, "Chat", "{\"member\":\"alice\"}"),
  };
  es[1].own = 1;
  CHECK_INT(pm_db_history_add(db, es, sizeof es / sizeof es[0]), 0);
  pm_db_close(db);
}

static void test_cmd_text(void) {
  tmpdir t;
  CHECK(tmpdir_make(&t) == 0);
  fill_history(t.path);
  setenv("TZ", "UTC", 1);
  tzset();

  const char *args[] = {"history", "--data-dir", t.path};
  run_out r = run_cmd(3, args);
  CHECK_INT(r.code, 0);
  CHECK_STR(r.err, "");
  CHECK_STR(r.out, "2026-11-25 21:40:01 [lobby] * alice joined\n"
                   "2026-11-25 21:40:03 [lobby] <alice> hello there\n"
                   "2026-11-25 21:40:04 [games] Poke {\"n\": 1, \"s\":\"x\"}\n"
                   "2026-11-25 21:40:05 [lobby] <m?]0;pwn?> ?[31mred??2J ?!\n"
                   "2026-11-25 21:40:06 [lobby] * alice left\n"
                   "2026-11-25 21:40:07 [lobby] Chat {\"member\":\"alice\"}\n");
  CHECK(r.out && !strchr(r.out, 0x1b) && !strchr(r.out, 0x07) &&
        !strchr(r.out, '\r') && !strstr(r.out, "\xc2\x9b") &&
        !strstr(r.out, "\xe2\x80\xae"));
  run_free(&r);

  const char *args2[] = {"history", "--mesh",     "lobby", "--limit",
                         "2",       "--data-dir", t.path};
  r = run_cmd(7, args2);
  CHECK_INT(r.code, 0);
  CHECK_STR(r.out, "2026-11-25 21:40:06 [lobby] * alice left\n"
                   "2026-11-25 21:40:07 [lobby] Chat {\"member\":\"alice\"}\n");
  run_free(&r);

  const char *args3[] = {"history", "--data-dir=", "x"};
  r = run_cmd(2, args3);
  CHECK_INT(r.code, 2);
  run_free(&r);
  remove_tree(t.path);
}

static void test_cmd_json(void) {
  tmpdir t;
  CHECK(tmpdir_make(&t) == 0);
  fill_history(t.path);
  const char *args[] = {"history", "--json",     "--limit",
                        "5",       "--data-dir", t.path};
  run_out r = run_cmd(6, args);
  CHECK_INT(r.code, 0);
  CHECK_STR(r.err, "");
  const char *want =
      "{\"id\":\"0202020202020202020202020202020202020202020202020202020202020"
      "202\",\"mesh\":\"lobby\",\"author\":\"01010101010101010101010101010101"
      "01010101010101010101010101010101\",\"seq\":2,\"time\":1795642803000,"
      "\"received\":1795642803005,\"hops\":2,\"own\":true,\"action\":\"Chat\","
      "\"body\":{\"member\":\"alice\",\"text\":\"hello there\"}}\n"
      "{\"id\":\"0303030303030303030303030303030303030303030303030303030303030"
      "303\",\"mesh\":\"games\",\"author\":\"02020202020202020202020202020202"
      "02020202020202020202020202020202\",\"seq\":1,\"time\":1795642804000,"
      "\"received\":1795642804005,\"hops\":2,\"own\":false,\"action\":"
      "\"Poke\",\"body\":{\"n\": 1, \"s\":\"x\"}}\n";
  CHECK(r.out && strncmp(r.out, want, strlen(want)) == 0);
  if (r.out && strncmp(r.out, want, strlen(want)) != 0)
    fprintf(stderr, "got:\n%s\n", r.out);
  /* The hostile message: its stored escapes stay escapes, nothing raw. */
  CHECK(r.out && strstr(r.out, "\"text\":\"\\u001b[31mred\\r\\u009b2J "
                               "\xe2\x80\xae!\"") == NULL);
  CHECK(r.out && strstr(r.out, "\\u001b[31mred") != NULL);
  CHECK(r.out && !strchr(r.out, 0x1b) && !strstr(r.out, "\xe2\x80\xae"));
  int lines = 0;
  for (const char *p = r.out; p && *p; p++)
    lines += *p == '\n';
  CHECK_INT(lines, 5);
  run_free(&r);
  remove_tree(t.path);
}

/* A raw C1 control or bidi override stored inside a JSON string (json_valid
 * lets them through) is written as a \u escape in --json output. */
static void test_cmd_json_escapes_raw(void) {
  tmpdir t;
  char path[160];
  CHECK(tmpdir_make(&t) == 0);
  snprintf(path, sizeof path, "%s/history.db", t.path);
  pm_db *db = open_rw(path);
  CHECK(db != NULL);
  pm_history_entry e = entry(1, "lobby", 1, 1, T0, "Chat",
                             "{\"member\":\"a\",\"text\":\"x\xc2\x9by\x7f"
                             "\xe2\x80\xae\xff\"}");
  CHECK_INT(pm_db_history_add(db, &e, 1), 0);
  pm_db_close(db);
  const char *args[] = {"history", "--json", "--data-dir", t.path};
  run_out r = run_cmd(4, args);
  CHECK_INT(r.code, 0);
  CHECK(r.out &&
        strstr(r.out, "\"text\":\"x\\u009by\\u007f\\u202e\\ufffd\"") != NULL);
  run_free(&r);
  const char *args2[] = {"history", "--data-dir", t.path};
  r = run_cmd(3, args2);
  CHECK_INT(r.code, 0);
  CHECK(r.out && strstr(r.out, "<a> x?y???\n") != NULL);
  run_free(&r);
  remove_tree(t.path);
}

static void test_cmd_missing_db(void) {
  tmpdir t;
  char path[160], want[256];
  CHECK(tmpdir_make(&t) == 0);
  snprintf(path, sizeof path, "%s/history.db", t.path);
  snprintf(want, sizeof want, "no history yet (%s does not exist)\n", path);
  const char *args[] = {"history", "--data-dir", t.path};
  run_out r = run_cmd(3, args);
  CHECK_INT(r.code, 0);
  CHECK_STR(r.out, "");
  CHECK_STR(r.err, want);
  CHECK(!exists(path));
  run_free(&r);
  remove_tree(t.path);
}

static void test_cmd_bad_db(void) {
  tmpdir t;
  char path[160];
  CHECK(tmpdir_make(&t) == 0);
  snprintf(path, sizeof path, "%s/history.db", t.path);
  CHECK(write_bytes(path,
                    "garbage garbage garbage garbage garbage garbage "
                    "garbage garbage garbage garbage garbage garbage!",
                    96) == 0);
  const char *args[] = {"history", "--data-dir", t.path};
  run_out r = run_cmd(3, args);
  CHECK_INT(r.code, 1);
  CHECK(r.err && strstr(r.err, path) && strstr(r.err, "not a database"));
  run_free(&r);
  remove_tree(t.path);
}

static void expect_usage_error(int argc, const char *const *args,
                               const char *what) {
  run_out r = run_cmd(argc, args);
  CHECK_INT(r.code, 2);
  CHECK_STR(r.out, "");
  CHECK(r.err && strstr(r.err, "usage: peermesh history") != NULL);
  if (!r.err || !strstr(r.err, what))
    fprintf(stderr, "error \"%s\" lacks \"%s\"\n", r.err ? r.err : "", what);
  CHECK(r.err && strstr(r.err, what) != NULL);
  run_free(&r);
}

static void test_cmd_bad_options(void) {
  const char *a1[] = {"history", "--limit", "0"};
  expect_usage_error(3, a1, "'0'");
  const char *a2[] = {"history", "--limit", "abc"};
  expect_usage_error(3, a2, "--limit needs a positive whole number");
  const char *a3[] = {"history", "--limit", "-3"};
  expect_usage_error(3, a3, "'-3'");
  const char *a4[] = {"history", "--limit", "5x"};
  expect_usage_error(3, a4, "'5x'");
  const char *a5[] = {"history", "--limit", "99999999999999999999999"};
  expect_usage_error(3, a5, "--limit");
  const char *a6[] = {"history", "--limit"};
  expect_usage_error(2, a6, "'--limit' needs a value");
  const char *a7[] = {"history", "--frobnicate"};
  expect_usage_error(2, a7, "'--frobnicate'");
  const char *a8[] = {"history", "-x"};
  expect_usage_error(2, a8, "'-x'");
  const char *a9[] = {"history", "--mesh", "bad name!"};
  expect_usage_error(3, a9, "invalid mesh name");
  const char *a10[] = {"history", "stray"};
  expect_usage_error(2, a10, "unexpected argument 'stray'");
  const char *a11[] = {"history", "--json=yes"};
  expect_usage_error(2, a11, "'--json=yes'");
  const char *a12[] = {"history", "--data-dir", ""};
  expect_usage_error(3, a12, "--data-dir");

  const char *h[] = {"history", "--help"};
  run_out r = run_cmd(2, h);
  CHECK_INT(r.code, 0);
  CHECK(r.out && strncmp(r.out, "usage: peermesh history", 23) == 0);
  CHECK_STR(r.err, "");
  run_free(&r);
  const char *h2[] = {"history", "-h"};
  r = run_cmd(2, h2);
  CHECK_INT(r.code, 0);
  run_free(&r);
}

TEST_MAIN(TEST_CASE(test_migrations), TEST_CASE(test_open_bad_args),
          TEST_CASE(test_add_each_order), TEST_CASE(test_fields_round_trip),
          TEST_CASE(test_duplicates_two_handles),
          TEST_CASE(test_duplicates_three_processes),
          TEST_CASE(test_invalid_json_rejected), TEST_CASE(test_limit_and_mesh),
          TEST_CASE(test_reentry_refused), TEST_CASE(test_peers),
          TEST_CASE(test_garbage_file), TEST_CASE(test_newer_schema_refused),
          TEST_CASE(test_foreign_db_refused), TEST_CASE(test_readonly_missing),
          TEST_CASE(test_cmd_text), TEST_CASE(test_cmd_json),
          TEST_CASE(test_cmd_json_escapes_raw), TEST_CASE(test_cmd_missing_db),
          TEST_CASE(test_cmd_bad_db), TEST_CASE(test_cmd_bad_options))
