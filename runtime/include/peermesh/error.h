/* peermesh error codes.
 *
 * Every fallible function returns 0 on success or one of these negative codes.
 * Codes are stable: their numbers and names never change once released. */
#ifndef PEERMESH_ERROR_H
#define PEERMESH_ERROR_H

#define PM_ERRNO_MAP(X)                                                        \
  X(NOMEM, -1, "out of memory")                                                \
  X(INVAL, -2, "invalid argument")                                             \
  X(TRUNCATED, -3, "frame or field is truncated")                              \
  X(MALFORMED, -4, "malformed frame or field")                                 \
  X(FRAME_TOO_LARGE, -5, "frame length exceeds the maximum")                   \
  X(VERSION, -6, "peer speaks an unsupported protocol version")                \
  X(UNEXPECTED, -7, "frame not allowed in the link's current state")           \
  X(WRONG_MESH, -8, "peer belongs to a different mesh")                        \
  X(SELF, -9, "connected to itself")                                           \
  X(NOT_FOUND, -10, "not found")                                               \
  X(EXISTS, -11, "already exists")                                             \
  X(FULL, -12, "capacity reached")                                             \
  X(CLOSED, -13, "closed")                                                     \
  X(BAD_ID, -14, "message ID does not match its content")                      \
  X(TIMEOUT, -15, "timed out")                                                 \
  X(IO, -16, "input/output error")                                             \
  X(DB, -17, "database error")                                                 \
  X(REFUSED, -18, "refused by peer")                                           \
  X(PERM, -19, "permission denied")                                            \
  X(AUTH, -20, "authentication failed")                                        \
  X(WRONG_PASSWORD, -21, "handshake failed: the peer's mesh password differs") \
  X(NONCE, -22, "message counter exhausted; the link must be reopened")

enum pm_errno {
#define PM_ERRNO_ENUM(name, code, msg) PM_ERR_##name = (code),
  PM_ERRNO_MAP(PM_ERRNO_ENUM)
#undef PM_ERRNO_ENUM
};

/* A sentence describing `err`, or "unknown error" for codes not listed above.
 */
const char *pm_strerror(int err);
/* The stable name of `err` without prefix, e.g. "FRAME_TOO_LARGE". */
const char *pm_errname(int err);

#if defined(__GNUC__)
#define PM_MUST_CHECK __attribute__((warn_unused_result))
#else
#define PM_MUST_CHECK
#endif

#endif
