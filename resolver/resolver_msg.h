/* The resolver protocol: message bodies carried in frames of
 * runtime/core/frame.h, types 0x40..0x4f. Sans-I/O: this module only turns
 * structs into bytes and back.
 *
 *   0x40 REGISTER      u32 req_id, str8 mesh, node_id[32], str8 addr
 *   0x41 REGISTERED    u32 req_id, u32 lifetime_s
 *   0x42 RESOLVE       u32 req_id, str8 mesh, u8 max (1..32), exclude[32]
 *   0x43 RESOLVED      u32 req_id, u8 count (<= 32),
 *                      count x (node_id[32], str8 addr)
 *   0x44 UNREGISTER    u32 req_id, str8 mesh, node_id[32]
 *   0x45 UNREGISTERED  u32 req_id
 *   0x4f ERROR         u32 req_id, u16 code, str8 message
 *
 * Integers are big-endian; str8 is a u8 length and that many bytes, no NUL.
 * Mesh names are 1..PM_MESH_NAME_MAX bytes of [A-Za-z0-9._-]. Addresses are
 * "HOST:PORT" or "[V6]:PORT" as pm_addr_parse accepts them, port 1..65535; in
 * REGISTER the host "0.0.0.0" or "::" asks the server to substitute the
 * address it sees the request come from. An all-zero exclude ID in RESOLVE
 * excludes nobody.
 *
 * Decoding copies everything into fixed arrays of the output struct, so a
 * decoded message does not depend on the frame's bytes and nothing is
 * allocated. Strings in the structs are NUL-terminated. */
#ifndef PM_RESOLVER_MSG_H
#define PM_RESOLVER_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "frame.h"
#include "peermesh/error.h"
#include "peermesh/node.h"

/* Most entries one RESOLVE may ask for and one RESOLVED may carry. */
#define PM_RESOLVER_MAX_ENTRIES 32
/* Longest ERROR message text, without the terminating NUL. */
#define PM_RESOLVER_MESSAGE_MAX 255

enum pm_resolver_msg_type {
  PM_RESOLVER_MSG_REGISTER = 0x40,
  PM_RESOLVER_MSG_REGISTERED = 0x41,
  PM_RESOLVER_MSG_RESOLVE = 0x42,
  PM_RESOLVER_MSG_RESOLVED = 0x43,
  PM_RESOLVER_MSG_UNREGISTER = 0x44,
  PM_RESOLVER_MSG_UNREGISTERED = 0x45,
  PM_RESOLVER_MSG_ERROR = 0x4f,
};

/* Codes carried in ERROR. Stable: numbers never change once released. */
enum pm_resolver_code {
  PM_RESOLVER_CODE_BAD_REQUEST = 1, /* malformed or unexpected request */
  PM_RESOLVER_CODE_QUOTA = 2,       /* a registration quota is exhausted */
  PM_RESOLVER_CODE_NOT_FOUND = 3,   /* no such registration */
  PM_RESOLVER_CODE_INTERNAL = 4,    /* the server failed (out of memory...) */
};

/* The stable lower-case name of an ERROR code ("bad_request", "quota",
 * "not_found", "internal"), or "unknown" for any other value. */
const char *pm_resolver_code_name(int code);

/* The PM_ERR_* a client reports for an ERROR code: bad_request ->
 * PM_ERR_REFUSED, quota -> PM_ERR_FULL, not_found -> PM_ERR_NOT_FOUND,
 * internal -> PM_ERR_IO, unknown codes -> PM_ERR_REFUSED. */
int pm_resolver_code_to_err(int code);

/* 1 when `name[0..len)` is a valid mesh name, else 0. */
int pm_resolver_mesh_valid(const char *name, size_t len);

/* One registered node, as RESOLVED carries it. */
typedef struct pm_resolver_entry {
  uint8_t node_id[PM_NODE_ID_LEN];
  char addr[PM_ADDR_MAX + 1]; /* NUL-terminated, valid address */
} pm_resolver_entry;

typedef struct pm_resolver_msg_register {
  uint32_t req_id;
  char mesh[PM_MESH_NAME_MAX + 1];
  uint8_t node_id[PM_NODE_ID_LEN];
  char addr[PM_ADDR_MAX + 1];
} pm_resolver_msg_register;

typedef struct pm_resolver_msg_registered {
  uint32_t req_id;
  uint32_t lifetime_s;
} pm_resolver_msg_registered;

typedef struct pm_resolver_msg_resolve {
  uint32_t req_id;
  char mesh[PM_MESH_NAME_MAX + 1];
  uint8_t max;                     /* 1..PM_RESOLVER_MAX_ENTRIES */
  uint8_t exclude[PM_NODE_ID_LEN]; /* all zero: exclude nobody */
} pm_resolver_msg_resolve;

typedef struct pm_resolver_msg_resolved {
  uint32_t req_id;
  uint8_t count; /* <= PM_RESOLVER_MAX_ENTRIES */
  pm_resolver_entry entries[PM_RESOLVER_MAX_ENTRIES];
} pm_resolver_msg_resolved;

typedef struct pm_resolver_msg_unregister {
  uint32_t req_id;
  char mesh[PM_MESH_NAME_MAX + 1];
  uint8_t node_id[PM_NODE_ID_LEN];
} pm_resolver_msg_unregister;

typedef struct pm_resolver_msg_unregistered {
  uint32_t req_id;
} pm_resolver_msg_unregistered;

typedef struct pm_resolver_msg_error {
  uint32_t req_id;
  uint16_t code; /* enum pm_resolver_code, or a code this side does not know */
  char message[PM_RESOLVER_MESSAGE_MAX + 1]; /* may be empty */
} pm_resolver_msg_error;

/* Any decoded resolver message: `type` says which member is filled. */
typedef struct pm_resolver_msg {
  uint8_t type; /* enum pm_resolver_msg_type */
  union {
    pm_resolver_msg_register reg;
    pm_resolver_msg_registered registered;
    pm_resolver_msg_resolve resolve;
    pm_resolver_msg_resolved resolved;
    pm_resolver_msg_unregister unreg;
    pm_resolver_msg_unregistered unregistered;
    pm_resolver_msg_error error;
  } u;
} pm_resolver_msg;

/* ---- encoders ------------------------------------------------------------
 * Each appends one whole frame to `b`. They return 0; PM_ERR_INVAL when a
 * field is out of range (bad mesh name, unparsable address, max outside
 * 1..32, count above 32, message longer than 255 bytes), and then nothing is
 * appended; or the buffer's error (PM_ERR_NOMEM), and then `b` is poisoned as
 * pm_buf describes. */
int pm_resolver_msg_write_register(pm_buf *b, const pm_resolver_msg_register *m)
    PM_MUST_CHECK;
int pm_resolver_msg_write_registered(
    pm_buf *b, const pm_resolver_msg_registered *m) PM_MUST_CHECK;
int pm_resolver_msg_write_resolve(pm_buf *b, const pm_resolver_msg_resolve *m)
    PM_MUST_CHECK;
int pm_resolver_msg_write_resolved(pm_buf *b, const pm_resolver_msg_resolved *m)
    PM_MUST_CHECK;
int pm_resolver_msg_write_unregister(
    pm_buf *b, const pm_resolver_msg_unregister *m) PM_MUST_CHECK;
int pm_resolver_msg_write_unregistered(
    pm_buf *b, const pm_resolver_msg_unregistered *m) PM_MUST_CHECK;
/* `message` may be NULL (empty); longer messages are cut at 255 bytes. */
int pm_resolver_msg_write_error(pm_buf *b, uint32_t req_id, uint16_t code,
                                const char *message) PM_MUST_CHECK;

/* ---- decoder -------------------------------------------------------------
 * Decodes the payload of a frame already cut by pm_frame_parse. Returns 0 and
 * fills `out`; PM_ERR_TRUNCATED when the payload ends early; PM_ERR_MALFORMED
 * for trailing bytes, a bad mesh name, an unparsable address, an embedded
 * NUL, max or count out of range; PM_ERR_UNEXPECTED when the frame type is
 * not one of the types above. On error `out` holds garbage. */
int pm_resolver_msg_read(const pm_frame *f, pm_resolver_msg *out) PM_MUST_CHECK;

/* The request ID at the start of any resolver payload, so that an ERROR
 * answer to an undecodable request can still name it. Returns 0 and sets
 * *req_id, or PM_ERR_TRUNCATED when the payload is shorter than 4 bytes. */
int pm_resolver_msg_peek_req_id(const pm_frame *f,
                                uint32_t *req_id) PM_MUST_CHECK;

#endif
