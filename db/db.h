/* The peermesh database: every SQL statement of the project lives in db.c.
 *
 * One SQLite file (normally DATA_DIR/history.db) holds the message history and
 * the known peers. Several processes may open the same file at once (three
 * chat processes on one data directory): the file is in WAL mode, each
 * connection waits up to PM_DB_BUSY_TIMEOUT_MS for another's lock, and every
 * write is one IMMEDIATE transaction, so concurrent writers queue instead of
 * failing, and a message that several of them store ends up stored once.
 *
 * The schema is built by numbered migrations keyed on `PRAGMA user_version`.
 * A file is never overwritten or truncated because it looked wrong: a file
 * that is not SQLite, a damaged one, another application's database, or one
 * whose schema is newer than this binary knows is refused with a sentence
 * naming the file, and left exactly as it was.
 *
 * A pm_db is one connection; use it from one thread. Callbacks must not call
 * back into the same pm_db (the walk holds its cached statement); such a call
 * fails with PM_ERR_INVAL. */
#ifndef PM_DB_H
#define PM_DB_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/error.h"
#include "peermesh/node.h"

/* The newest schema version this binary knows. */
#define PM_DB_SCHEMA_VERSION 1
/* How long a connection waits for another process's lock. */
#define PM_DB_BUSY_TIMEOUT_MS 5000
/* Known peers kept per mesh; older ones are forgotten. */
#define PM_DB_PEERS_MAX 256
/* Longest peer address stored, in bytes. */
#define PM_DB_ADDR_MAX 255

typedef struct pm_db pm_db;

enum {
  /* Open for reading only. A missing file is PM_ERR_NOT_FOUND and nothing is
   * created; the schema is not migrated (an older schema is refused). */
  PM_DB_READONLY = 1
};

/* Opens `path`, creating it and running the migrations unless READONLY.
 * Returns 0 and sets *out, or:
 *   PM_ERR_NOT_FOUND  READONLY and the file does not exist;
 *   PM_ERR_NOMEM      out of memory;
 *   PM_ERR_DB         anything else: not a database, damaged, foreign, newer
 *                     schema, locked for longer than the busy timeout, I/O.
 * On failure *out is NULL and `err` (when errlen > 0) holds a sentence that
 * names the file, e.g. "/x/history.db: file is not a database". The file is
 * then exactly as it was. */
int pm_db_open(const char *path, int flags, pm_db **out, char *err,
               size_t errlen) PM_MUST_CHECK;
/* Finalizes the statements and closes the connection. NULL is allowed. */
void pm_db_close(pm_db *db);
/* The message of the last failed call on `db` as "PATH: sentence" (e.g.
 * "PATH: entry 1: body is not valid JSON"), or "" when none has failed; a
 * successful call leaves it as it was. Valid until the next call on `db`.
 * NULL gives "no database". */
const char *pm_db_errmsg(const pm_db *db);

/* ---- history ------------------------------------------------------------ */

typedef struct pm_history_entry {
  uint8_t msg_id[PM_MSG_ID_LEN];
  const char *mesh; /* NUL-terminated */
  uint8_t author[PM_NODE_ID_LEN];
  uint64_t seq;
  int64_t time_ms;     /* author's wall clock, ms since epoch */
  int64_t received_ms; /* local wall clock */
  uint32_t hops;
  int own;            /* 1 if this node sent it */
  const char *action; /* NUL-terminated */
  const char *body;   /* JSON text, body_len bytes (NUL-terminated on read) */
  size_t body_len;
  /* Filled by pm_db_history_each, ignored by pm_db_history_add: the body's
   * "member" and "text" members when the body is an object and they are
   * strings, else NULL. Raw text from the network: sanitize before printing. */
  const char *member;
  const char *text;
} pm_history_entry;

/* Stores n entries in ONE transaction. An entry whose msg_id is already
 * stored (by this or any other process) is skipped: the first store wins,
 * including its `own` flag. Every entry is checked before anything is
 * written; returns 0, or:
 *   PM_ERR_INVAL  an entry is malformed: NULL or empty mesh/action, mesh
 *                 longer than PM_MESH_NAME_MAX, action longer than
 *                 PM_ACTION_MAX, body longer than PM_BODY_MAX or containing
 *                 a NUL byte, or a body that is not valid JSON (json_valid).
 *                 Nothing is stored; pm_db_errmsg names the entry.
 *   PM_ERR_DB     SQLite failed (e.g. read-only handle, locked too long);
 *                 nothing is stored.
 * Callers that batch messages from the network should check each body with
 * pm_db_body_valid first, so one bad message cannot cost a whole batch. */
int pm_db_history_add(pm_db *db, const pm_history_entry *e,
                      size_t n) PM_MUST_CHECK;

/* 1 if body[0..len) is a JSON text this database accepts as a message body,
 * else 0. */
int pm_db_body_valid(pm_db *db, const char *body, size_t len);

typedef struct pm_history_filter {
  const char *mesh; /* NULL = all meshes */
  int64_t limit;    /* 0 = all; otherwise the LAST `limit` messages, still
                       given oldest first. Negative is PM_ERR_INVAL. */
} pm_history_filter;

/* Calls cb for each stored entry, oldest first, ordered by
 * (time_ms, author, seq). The entry and its strings are valid only during the
 * call. cb returns non-zero to stop the walk. `f` may be NULL (everything).
 * Returns 0 (also when cb stopped the walk), PM_ERR_INVAL, or PM_ERR_DB. */
int pm_db_history_each(pm_db *db, const pm_history_filter *f,
                       int (*cb)(void *ud, const pm_history_entry *e),
                       void *ud) PM_MUST_CHECK;

/* ---- known peers -------------------------------------------------------- */

/* Remembers that this node reached `node_id` of `mesh` at `addr` at `now_ms`
 * (wall clock). Upsert: first_seen_ms is kept, last_seen_ms and addr follow
 * the newest sighting. At most PM_DB_PEERS_MAX peers are kept per mesh; the
 * least recently seen are forgotten. Returns 0, PM_ERR_INVAL (NULL or empty
 * mesh or addr, addr longer than PM_DB_ADDR_MAX) or PM_ERR_DB. */
int pm_db_peer_seen(pm_db *db, const char *mesh,
                    const uint8_t node_id[PM_NODE_ID_LEN], const char *addr,
                    int64_t now_ms) PM_MUST_CHECK;

/* Calls cb for the most recently seen peers of `mesh`, newest first, at most
 * `max` of them; the addr is valid only during the call. cb returns non-zero
 * to stop. Returns 0, PM_ERR_INVAL or PM_ERR_DB. */
int pm_db_peers_recent(pm_db *db, const char *mesh, size_t max,
                       int (*cb)(void *ud,
                                 const uint8_t node_id[PM_NODE_ID_LEN],
                                 const char *addr),
                       void *ud) PM_MUST_CHECK;

#endif
