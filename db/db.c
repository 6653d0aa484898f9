#include "db.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Stored in the header's application_id so that another program's SQLite
 * file is recognised as foreign instead of being given our tables. */
#define PM_DB_APP_ID 1347241026 /* 0x504d4442, "PMDB" */
#define PM_STR_(x) #x
#define PM_STR(x) PM_STR_(x)

/* ---- schema --------------------------------------------------------------
 * migrations[i] takes the schema from version i to i + 1. Each runs in its
 * own IMMEDIATE transaction together with the user_version bump, so a crash
 * or a concurrent opener never sees half a migration. Never edit a released
 * migration: append a new one and raise PM_DB_SCHEMA_VERSION. */
static const char *const migrations[] = {
    /* 1: history and known peers */
    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY,"
    "  msg_id BLOB NOT NULL UNIQUE CHECK (length(msg_id) = 32),"
    "  mesh TEXT NOT NULL,"
    "  author BLOB NOT NULL CHECK (length(author) = 32),"
    "  seq INTEGER NOT NULL,"
    "  time_ms INTEGER NOT NULL,"
    "  received_ms INTEGER NOT NULL,"
    "  hops INTEGER NOT NULL,"
    "  own INTEGER NOT NULL,"
    "  action TEXT NOT NULL,"
    "  body TEXT NOT NULL CHECK (json_valid(body)));"
    "CREATE INDEX messages_mesh_time ON messages (mesh, time_ms);"
    "CREATE TABLE peers ("
    "  mesh TEXT NOT NULL,"
    "  node_id BLOB NOT NULL CHECK (length(node_id) = 32),"
    "  addr TEXT NOT NULL,"
    "  first_seen_ms INTEGER NOT NULL,"
    "  last_seen_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (mesh, node_id));"
    "CREATE INDEX peers_mesh_seen ON peers (mesh, last_seen_ms);"
    "PRAGMA application_id = " PM_STR(PM_DB_APP_ID) ";",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == PM_DB_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- cached statements -------------------------------------------------- */

enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_JSON_VALID,
  ST_MSG_INSERT,
  ST_MSG_EACH_ALL,
  ST_MSG_EACH_MESH,
  ST_PEER_UPSERT,
  ST_PEER_PRUNE,
  ST_PEER_RECENT,
  ST_COUNT
};

/* The walk keeps the newest `limit` rows (LIMIT -1 = all) and gives them
 * oldest first; `id` breaks the last ties so the order is total. member and
 * text are pulled here so callers never parse JSON; json_valid guards rows a
 * damaged or hand-edited file might hold, so one bad row cannot end a walk. */
#define MSG_COLUMNS                                                            \
  "msg_id, mesh, author, seq, time_ms, received_ms, hops, own, action, body, " \
  "CASE WHEN json_valid(body) AND json_type(body, '$.member') = 'text' "       \
  "THEN json_extract(body, '$.member') END, "                                  \
  "CASE WHEN json_valid(body) AND json_type(body, '$.text') = 'text' "         \
  "THEN json_extract(body, '$.text') END"
#define MSG_NEWEST "ORDER BY time_ms DESC, author DESC, seq DESC, id DESC"
#define MSG_OLDEST "ORDER BY time_ms, author, seq, id"

static const char *const statement_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_JSON_VALID] = "SELECT json_valid(?1)",
    /* Only a msg_id conflict is ignored (the first store wins); unlike
     * INSERT OR IGNORE this still fails on a CHECK or NOT NULL violation. */
    [ST_MSG_INSERT] = "INSERT INTO messages (msg_id, mesh, author, seq, "
                      "time_ms, received_ms, hops, own, action, body) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
                      "ON CONFLICT (msg_id) DO NOTHING",
    [ST_MSG_EACH_ALL] =
        "SELECT " MSG_COLUMNS " FROM (SELECT * FROM messages " MSG_NEWEST
        " LIMIT ?1) " MSG_OLDEST,
    [ST_MSG_EACH_MESH] = "SELECT " MSG_COLUMNS " FROM (SELECT * FROM messages "
                         "WHERE mesh = ?2 " MSG_NEWEST " LIMIT ?1) " MSG_OLDEST,
    /* SET expressions see the row as it was, so a late report of an older
     * sighting neither moves last_seen_ms back nor replaces the address. */
    [ST_PEER_UPSERT] =
        "INSERT INTO peers (mesh, node_id, addr, first_seen_ms, last_seen_ms) "
        "VALUES (?1, ?2, ?3, ?4, ?4) "
        "ON CONFLICT (mesh, node_id) DO UPDATE SET "
        "addr = CASE WHEN excluded.last_seen_ms >= last_seen_ms "
        "THEN excluded.addr ELSE addr END, "
        "first_seen_ms = min(first_seen_ms, excluded.first_seen_ms), "
        "last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
    [ST_PEER_PRUNE] = "DELETE FROM peers WHERE mesh = ?1 AND node_id NOT IN "
                      "(SELECT node_id FROM peers WHERE mesh = ?1 "
                      "ORDER BY last_seen_ms DESC, node_id LIMIT ?2)",
    [ST_PEER_RECENT] = ("SELECT node_id, addr FROM peers WHERE mesh = ?1 "
                        "ORDER BY last_seen_ms DESC, node_id LIMIT ?2"),
};

struct pm_db {
  sqlite3 *sql;
  char *path;
  int readonly;
  int walking; /* a callback walk holds a statement */
  sqlite3_stmt *st[ST_COUNT];
  int busy; /* the last error was SQLITE_BUSY */
  char errmsg[512];
};

/* ---- errors ------------------------------------------------------------- */

static void set_err(pm_db *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_err(pm_db *db, const char *fmt, ...) {
  int w = snprintf(db->errmsg, sizeof db->errmsg, "%s: ", db->path);
  size_t off = (w > 0 && (size_t)w < sizeof db->errmsg) ? (size_t)w : 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(db->errmsg + off, sizeof db->errmsg - off, fmt, ap);
  va_end(ap);
}

/* Records SQLite's message for `rc` and maps it to a PM_ERR_* code. An
 * open failure also carries the operating system's reason, which is what a
 * user needs for "unable to open database file". */
static int sql_err(pm_db *db, int rc) {
  int primary = rc & 0xff;
  db->busy = primary == SQLITE_BUSY;
  const char *msg = db->sql ? sqlite3_errmsg(db->sql) : sqlite3_errstr(rc);
  int sys = db->sql ? sqlite3_system_errno(db->sql) : 0;
  if (primary == SQLITE_CANTOPEN && sys != 0)
    set_err(db, "%s (%s)", msg, strerror(sys));
  else if (primary == SQLITE_BUSY)
    set_err(db, "%s (another process held it for more than %d ms)", msg,
            PM_DB_BUSY_TIMEOUT_MS);
  else
    set_err(db, "%s", msg);
  return primary == SQLITE_NOMEM ? PM_ERR_NOMEM : PM_ERR_DB;
}

static int inval(pm_db *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int inval(pm_db *db, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  set_err(db, "%s", buf);
  return PM_ERR_INVAL;
}

/* ---- small helpers ------------------------------------------------------ */

static void stmt_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Runs a cached statement that returns no rows. */
static int run(pm_db *db, int which) {
  sqlite3_stmt *st = db->st[which];
  int rc = sqlite3_step(st);
  int out = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : sql_err(db, rc);
  stmt_done(st);
  return out;
}

/* Reads a one-row integer query (a PRAGMA) that is not cached. */
static int query_int(pm_db *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return sql_err(db, rc);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    *out = 0;
    rc = SQLITE_OK;
  }
  int ret = rc == SQLITE_OK ? 0 : sql_err(db, rc);
  sqlite3_finalize(st);
  return ret;
}

static int exec(pm_db *db, const char *sql) {
  int rc = sqlite3_exec(db->sql, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : sql_err(db, rc);
}

/* Ends a failed write transaction, keeping the first error's message. SQLite
 * rolls back by itself after some errors (I/O, full disk), hence the check. */
static void rollback(pm_db *db) {
  if (sqlite3_get_autocommit(db->sql))
    return;
  char keep[sizeof db->errmsg];
  memcpy(keep, db->errmsg, sizeof keep);
  sqlite3_stmt *st = db->st[ST_ROLLBACK];
  if (st) {
    sqlite3_step(st);
    stmt_done(st);
  } else {
    sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
  }
  memcpy(db->errmsg, keep, sizeof keep);
}

static int bind_text(sqlite3_stmt *st, int i, const char *s, size_t len) {
  return sqlite3_bind_text64(st, i, s, (sqlite3_uint64)len, SQLITE_STATIC,
                             SQLITE_UTF8);
}

static int64_t clamp_count(size_t n) {
  return n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n;
}

/* Copies a BLOB column into a fixed-size ID, zero-filling a short one. */
static void column_id(sqlite3_stmt *st, int col, uint8_t *out, size_t len) {
  const void *p = sqlite3_column_blob(st, col);
  size_t n = (size_t)sqlite3_column_bytes(st, col);
  memset(out, 0, len);
  if (p)
    memcpy(out, p, n < len ? n : len);
}

static const char *column_str(sqlite3_stmt *st, int col) {
  const unsigned char *s = sqlite3_column_text(st, col);
  return s ? (const char *)s : "";
}

/* ---- open and migrate --------------------------------------------------- */

/* Checks, by reading only, that the file is SQLite and either empty or ours
 * at a version this binary understands. Reading the header is also what makes
 * SQLite report "file is not a database". */
static int inspect(pm_db *db, int64_t *version) {
  int64_t app_id = 0, tables = 0;
  int rc = query_int(db, "PRAGMA application_id", &app_id);
  if (rc == 0)
    rc = query_int(db, "PRAGMA user_version", version);
  if (rc == 0)
    rc = query_int(db, "SELECT count(*) FROM sqlite_schema", &tables);
  if (rc)
    return rc;
  if (app_id != 0 && app_id != PM_DB_APP_ID) {
    set_err(db,
            "not a peermesh database (application_id 0x%08" PRIx64
            " belongs to another program)",
            (uint64_t)app_id & 0xffffffffu);
    return PM_ERR_DB;
  }
  if (*version > PM_DB_SCHEMA_VERSION) {
    set_err(db,
            "schema version %" PRId64 " is newer than this peermesh knows "
            "(%d); use a newer peermesh",
            *version, PM_DB_SCHEMA_VERSION);
    return PM_ERR_DB;
  }
  if (*version == 0 && tables != 0) {
    set_err(db, "not a peermesh database (it has tables but no peermesh "
                "schema version)");
    return PM_ERR_DB;
  }
  return 0;
}

/* Applies the missing migrations, one transaction each. The version is read
 * again inside each transaction: another process may be migrating the same
 * file at the same moment, and whoever takes the write lock first does it. */
static int migrate(pm_db *db) {
  for (;;) {
    int rc = exec(db, "BEGIN IMMEDIATE");
    if (rc)
      return rc;
    int64_t version = 0;
    rc = inspect(db, &version);
    if (rc == 0 && version >= PM_DB_SCHEMA_VERSION) {
      rc = exec(db, "COMMIT");
      if (rc)
        rollback(db);
      return rc;
    }
    if (rc == 0)
      rc = exec(db, migrations[(size_t)version]);
    if (rc == 0) {
      char bump[64];
      snprintf(bump, sizeof bump, "PRAGMA user_version = %" PRId64,
               version + 1);
      rc = exec(db, bump);
    }
    if (rc == 0)
      rc = exec(db, "COMMIT");
    if (rc) {
      rollback(db);
      return rc;
    }
  }
}

static int configure(pm_db *db) {
  int rc = sqlite3_extended_result_codes(db->sql, 1);
  if (rc == SQLITE_OK)
    rc = sqlite3_busy_timeout(db->sql, PM_DB_BUSY_TIMEOUT_MS);
  /* Refuse the writes (writable_schema and the like) that could corrupt
   * the file. trusted_schema stays on: SQLite 3.40 does not mark the JSON
   * functions innocuous, so the CHECK (json_valid(body)) would fail. */
  if (rc == SQLITE_OK)
    rc = sqlite3_db_config(db->sql, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
  if (rc != SQLITE_OK)
    return sql_err(db, rc);
  return exec(db, "PRAGMA foreign_keys = ON");
}

static int prepare_all(pm_db *db) {
  for (int i = 0; i < ST_COUNT; i++) {
    int rc = sqlite3_prepare_v3(db->sql, statement_sql[i], -1,
                                SQLITE_PREPARE_PERSISTENT, &db->st[i], NULL);
    if (rc != SQLITE_OK)
      return sql_err(db, rc);
  }
  return 0;
}

static int schema_steps(pm_db *db);

static int open_steps(pm_db *db) {
  if (db->readonly) {
    struct stat sb;
    if (stat(db->path, &sb) != 0 && errno == ENOENT) {
      set_err(db, "does not exist");
      return PM_ERR_NOT_FOUND;
    }
  }
  int oflags = db->readonly ? SQLITE_OPEN_READONLY
                            : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(db->path, &db->sql, oflags, NULL);
  if (rc != SQLITE_OK) {
    if (!db->sql)
      return sql_err(db, SQLITE_NOMEM);
    return sql_err(db, rc);
  }
  if ((rc = configure(db)) != 0)
    return rc;
  /* While another process switches a new file to WAL or recovers it, SQLite
   * answers BUSY at once rather than calling the busy handler (which could
   * deadlock there), so the schema steps are retried for as long as the
   * busy timeout would have waited. */
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    rc = schema_steps(db);
    if (rc == 0)
      return prepare_all(db);
    clock_gettime(CLOCK_MONOTONIC, &t);
    int64_t waited = (int64_t)(t.tv_sec - t0.tv_sec) * 1000 +
                     (t.tv_nsec - t0.tv_nsec) / 1000000;
    if (!db->busy || waited >= PM_DB_BUSY_TIMEOUT_MS)
      return rc;
    sqlite3_sleep(10);
  }
}

/* Reads the schema version and, for a writable database, switches it to WAL
 * and migrates it. */
static int schema_steps(pm_db *db) {
  int64_t version = 0;
  int rc;
  /* One read transaction, so that the three reads see one snapshot even
   * while another process is migrating the file. */
  if ((rc = exec(db, "BEGIN")) != 0)
    return rc;
  rc = inspect(db, &version);
  if (rc == 0)
    rc = exec(db, "COMMIT");
  if (rc) {
    rollback(db);
    return rc;
  }
  if (db->readonly) {
    if (version < PM_DB_SCHEMA_VERSION) {
      set_err(db,
              "schema version %" PRId64 " is older than this peermesh needs "
              "(%d); run peermesh once to upgrade it",
              version, PM_DB_SCHEMA_VERSION);
      return PM_ERR_DB;
    }
  } else {
    /* Only after inspect(): switching to WAL writes the header, and a file
     * we refuse must stay byte for byte as it was. */
    if ((rc = exec(db, "PRAGMA journal_mode = WAL")) != 0 ||
        (rc = migrate(db)) != 0)
      return rc;
  }
  return 0;
}

int pm_db_open(const char *path, int flags, pm_db **out, char *err,
               size_t errlen) {
  *out = NULL;
  if (errlen > 0)
    err[0] = '\0';
  if (!path || !*path || (flags & ~PM_DB_READONLY)) {
    if (errlen > 0)
      snprintf(err, errlen, "%s: invalid database path or flags",
               path ? path : "(null)");
    return PM_ERR_INVAL;
  }
  pm_db *db = calloc(1, sizeof *db);
  char *copy = strdup(path);
  if (!db || !copy) {
    free(db);
    free(copy);
    if (errlen > 0)
      snprintf(err, errlen, "%s: out of memory", path);
    return PM_ERR_NOMEM;
  }
  db->path = copy;
  db->readonly = (flags & PM_DB_READONLY) != 0;
  int rc = open_steps(db);
  if (rc) {
    if (errlen > 0)
      snprintf(err, errlen, "%s", db->errmsg);
    pm_db_close(db);
    return rc;
  }
  *out = db;
  return 0;
}

void pm_db_close(pm_db *db) {
  if (!db)
    return;
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(db->st[i]);
  /* v2: a statement we failed to finalize cannot keep the file open. */
  sqlite3_close_v2(db->sql);
  free(db->path);
  free(db);
}

const char *pm_db_errmsg(const pm_db *db) {
  return db ? db->errmsg : "no database";
}

/* ---- history ------------------------------------------------------------ */

static int json_valid(pm_db *db, const char *body, size_t len, int *valid) {
  sqlite3_stmt *st = db->st[ST_JSON_VALID];
  int rc = bind_text(st, 1, body, len);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW)
    *valid = sqlite3_column_int(st, 0) == 1;
  else
    ret = sql_err(db, rc);
  stmt_done(st);
  return ret;
}

int pm_db_body_valid(pm_db *db, const char *body, size_t len) {
  int valid = 0;
  if (!db || !body || len > PM_BODY_MAX || memchr(body, '\0', len))
    return 0;
  return json_valid(db, body, len, &valid) == 0 && valid;
}

/* Judges one entry without touching the file. */
static int check_entry(pm_db *db, const pm_history_entry *e, size_t i) {
  size_t mesh_len = e->mesh ? strlen(e->mesh) : 0;
  size_t action_len = e->action ? strlen(e->action) : 0;
  if (mesh_len == 0 || mesh_len > PM_MESH_NAME_MAX)
    return inval(db, "entry %zu: mesh name must be 1..%d bytes", i,
                 PM_MESH_NAME_MAX);
  if (action_len == 0 || action_len > PM_ACTION_MAX)
    return inval(db, "entry %zu: action must be 1..%d bytes", i, PM_ACTION_MAX);
  if (!e->body || e->body_len > PM_BODY_MAX ||
      memchr(e->body, '\0', e->body_len))
    return inval(db,
                 "entry %zu: body is missing, too long or holds a NUL "
                 "byte",
                 i);
  int valid = 0;
  int rc = json_valid(db, e->body, e->body_len, &valid);
  if (rc)
    return rc;
  if (!valid)
    return inval(db, "entry %zu: body is not valid JSON", i);
  return 0;
}

static int insert_entry(pm_db *db, const pm_history_entry *e) {
  sqlite3_stmt *st = db->st[ST_MSG_INSERT];
  int rc = sqlite3_bind_blob(st, 1, e->msg_id, PM_MSG_ID_LEN, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = bind_text(st, 2, e->mesh, strlen(e->mesh));
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_blob(st, 3, e->author, PM_NODE_ID_LEN, SQLITE_STATIC);
  /* seq is stored as its two's complement bit pattern: lossless. */
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)e->seq);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 5, e->time_ms);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 6, e->received_ms);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 7, e->hops);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int(st, 8, e->own ? 1 : 0);
  if (rc == SQLITE_OK)
    rc = bind_text(st, 9, e->action, strlen(e->action));
  if (rc == SQLITE_OK)
    rc = bind_text(st, 10, e->body, e->body_len);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  int ret = rc == SQLITE_DONE ? 0 : sql_err(db, rc);
  stmt_done(st);
  return ret;
}

int pm_db_history_add(pm_db *db, const pm_history_entry *e, size_t n) {
  if (!db)
    return PM_ERR_INVAL;
  if (db->walking)
    return inval(db, "called from inside a walk callback");
  if (n == 0)
    return 0;
  if (!e)
    return inval(db, "no entries");
  /* All checks first, so a bad entry stores nothing and takes no lock. */
  for (size_t i = 0; i < n; i++) {
    int rc = check_entry(db, &e[i], i);
    if (rc)
      return rc;
  }
  int rc = run(db, ST_BEGIN);
  if (rc)
    return rc;
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = insert_entry(db, &e[i]);
  if (rc == 0)
    rc = run(db, ST_COMMIT);
  if (rc)
    rollback(db);
  return rc;
}

int pm_db_history_each(pm_db *db, const pm_history_filter *f,
                       int (*cb)(void *ud, const pm_history_entry *e),
                       void *ud) {
  if (!db || !cb)
    return PM_ERR_INVAL;
  if (db->walking)
    return inval(db, "called from inside a walk callback");
  const char *mesh = f ? f->mesh : NULL;
  int64_t limit = f ? f->limit : 0;
  if (limit < 0)
    return inval(db, "history limit must not be negative");
  sqlite3_stmt *st = db->st[mesh ? ST_MSG_EACH_MESH : ST_MSG_EACH_ALL];
  int rc = sqlite3_bind_int64(st, 1, limit == 0 ? -1 : limit);
  if (rc == SQLITE_OK && mesh)
    rc = bind_text(st, 2, mesh, strlen(mesh));
  db->walking = 1;
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    pm_history_entry e;
    memset(&e, 0, sizeof e);
    column_id(st, 0, e.msg_id, sizeof e.msg_id);
    e.mesh = column_str(st, 1);
    column_id(st, 2, e.author, sizeof e.author);
    e.seq = (uint64_t)sqlite3_column_int64(st, 3);
    e.time_ms = sqlite3_column_int64(st, 4);
    e.received_ms = sqlite3_column_int64(st, 5);
    int64_t hops = sqlite3_column_int64(st, 6);
    e.hops = hops < 0 ? 0 : hops > UINT32_MAX ? UINT32_MAX : (uint32_t)hops;
    e.own = sqlite3_column_int(st, 7) != 0;
    e.action = column_str(st, 8);
    e.body = column_str(st, 9);
    e.body_len = (size_t)sqlite3_column_bytes(st, 9);
    e.member = (const char *)sqlite3_column_text(st, 10);
    e.text = (const char *)sqlite3_column_text(st, 11);
    if (cb(ud, &e)) {
      rc = SQLITE_DONE;
      break;
    }
    rc = SQLITE_OK;
  }
  db->walking = 0;
  int ret = rc == SQLITE_DONE ? 0 : sql_err(db, rc);
  stmt_done(st);
  return ret;
}

/* ---- known peers -------------------------------------------------------- */

int pm_db_peer_seen(pm_db *db, const char *mesh,
                    const uint8_t node_id[PM_NODE_ID_LEN], const char *addr,
                    int64_t now_ms) {
  if (!db)
    return PM_ERR_INVAL;
  if (db->walking)
    return inval(db, "called from inside a walk callback");
  size_t mesh_len = mesh ? strlen(mesh) : 0;
  size_t addr_len = addr ? strlen(addr) : 0;
  if (mesh_len == 0 || mesh_len > PM_MESH_NAME_MAX)
    return inval(db, "mesh name must be 1..%d bytes", PM_MESH_NAME_MAX);
  if (addr_len == 0 || addr_len > PM_DB_ADDR_MAX)
    return inval(db, "peer address must be 1..%d bytes", PM_DB_ADDR_MAX);
  if (!node_id)
    return inval(db, "no node ID");

  int rc = run(db, ST_BEGIN);
  if (rc)
    return rc;
  sqlite3_stmt *st = db->st[ST_PEER_UPSERT];
  int src = bind_text(st, 1, mesh, mesh_len);
  if (src == SQLITE_OK)
    src = sqlite3_bind_blob(st, 2, node_id, PM_NODE_ID_LEN, SQLITE_STATIC);
  if (src == SQLITE_OK)
    src = bind_text(st, 3, addr, addr_len);
  if (src == SQLITE_OK)
    src = sqlite3_bind_int64(st, 4, now_ms);
  if (src == SQLITE_OK)
    src = sqlite3_step(st);
  rc = src == SQLITE_DONE ? 0 : sql_err(db, src);
  stmt_done(st);
  if (rc == 0) {
    st = db->st[ST_PEER_PRUNE];
    src = bind_text(st, 1, mesh, mesh_len);
    if (src == SQLITE_OK)
      src = sqlite3_bind_int64(st, 2, PM_DB_PEERS_MAX);
    if (src == SQLITE_OK)
      src = sqlite3_step(st);
    rc = src == SQLITE_DONE ? 0 : sql_err(db, src);
    stmt_done(st);
  }
  if (rc == 0)
    rc = run(db, ST_COMMIT);
  if (rc)
    rollback(db);
  return rc;
}

int pm_db_peers_recent(pm_db *db, const char *mesh, size_t max,
                       int (*cb)(void *ud,
                                 const uint8_t node_id[PM_NODE_ID_LEN],
                                 const char *addr),
                       void *ud) {
  if (!db || !cb)
    return PM_ERR_INVAL;
  if (db->walking)
    return inval(db, "called from inside a walk callback");
  if (!mesh)
    return inval(db, "no mesh name");
  if (max == 0)
    return 0;
  sqlite3_stmt *st = db->st[ST_PEER_RECENT];
  int rc = bind_text(st, 1, mesh, strlen(mesh));
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 2, clamp_count(max));
  db->walking = 1;
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    uint8_t id[PM_NODE_ID_LEN];
    column_id(st, 0, id, sizeof id);
    if (cb(ud, id, column_str(st, 1))) {
      rc = SQLITE_DONE;
      break;
    }
    rc = SQLITE_OK;
  }
  db->walking = 0;
  int ret = rc == SQLITE_DONE ? 0 : sql_err(db, rc);
  stmt_done(st);
  return ret;
}
