#include "resolver_msg.h"

#include <string.h>

const char *pm_resolver_code_name(int code) {
  switch (code) {
  case PM_RESOLVER_CODE_BAD_REQUEST:
    return "bad_request";
  case PM_RESOLVER_CODE_QUOTA:
    return "quota";
  case PM_RESOLVER_CODE_NOT_FOUND:
    return "not_found";
  case PM_RESOLVER_CODE_INTERNAL:
    return "internal";
  default:
    return "unknown";
  }
}

int pm_resolver_code_to_err(int code) {
  switch (code) {
  case PM_RESOLVER_CODE_QUOTA:
    return PM_ERR_FULL;
  case PM_RESOLVER_CODE_NOT_FOUND:
    return PM_ERR_NOT_FOUND;
  case PM_RESOLVER_CODE_INTERNAL:
    return PM_ERR_IO;
  default:
    return PM_ERR_REFUSED;
  }
}

int pm_resolver_mesh_valid(const char *name, size_t len) {
  if (!name || len == 0 || len > PM_MESH_NAME_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok)
      return 0;
  }
  return 1;
}

/* A NUL-terminated mesh name from a struct: valid and terminated within its
 * array (the array may hold garbage after the NUL). */
static int mesh_field_ok(const char mesh[PM_MESH_NAME_MAX + 1]) {
  size_t n = strnlen(mesh, PM_MESH_NAME_MAX + 1);
  return n <= PM_MESH_NAME_MAX && pm_resolver_mesh_valid(mesh, n);
}

static int addr_field_ok(const char addr[PM_ADDR_MAX + 1]) {
  if (strnlen(addr, PM_ADDR_MAX + 1) > PM_ADDR_MAX)
    return 0;
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  return pm_addr_parse(addr, host, &port, 0) == 0;
}

/* ---- encoders ------------------------------------------------------------ */

int pm_resolver_msg_write_register(pm_buf *b,
                                   const pm_resolver_msg_register *m) {
  if (!mesh_field_ok(m->mesh) || !addr_field_ok(m->addr))
    return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, PM_RESOLVER_MSG_REGISTER);
  pm_buf_u32(b, m->req_id);
  pm_buf_str8(b, m->mesh, strlen(m->mesh));
  pm_buf_put(b, m->node_id, PM_NODE_ID_LEN);
  pm_buf_str8(b, m->addr, strlen(m->addr));
  return pm_frame_end(b, start);
}

int pm_resolver_msg_write_registered(pm_buf *b,
                                     const pm_resolver_msg_registered *m) {
  size_t start = pm_frame_begin(b, PM_RESOLVER_MSG_REGISTERED);
  pm_buf_u32(b, m->req_id);
  pm_buf_u32(b, m->lifetime_s);
  return pm_frame_end(b, start);
}

int pm_resolver_msg_write_resolve(pm_buf *b, const pm_resolver_msg_resolve *m) {
  if (!mesh_field_ok(m->mesh) || m->max == 0 ||
      m->max > PM_RESOLVER_MAX_ENTRIES)
    return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, PM_RESOLVER_MSG_RESOLVE);
  pm_buf_u32(b, m->req_id);
  pm_buf_str8(b, m->mesh, strlen(m->mesh));
  pm_buf_u8(b, m->max);
  pm_buf_put(b, m->exclude, PM_NODE_ID_LEN);
  return pm_frame_end(b, start);
}

int pm_resolver_msg_write_resolved(pm_buf *b,
                                   const pm_resolver_msg_resolved *m) {
  if (m->count > PM_RESOLVER_MAX_ENTRIES)
    return PM_ERR_INVAL;
  for (unsigned i = 0; i < m->count; i++)
    if (!addr_field_ok(m->entries[i].addr))
      return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, PM_RESOLVER_MSG_RESOLVED);
  pm_buf_u32(b, m->req_id);
  pm_buf_u8(b, m->count);
  for (unsigned i = 0; i < m->count; i++) {
    pm_buf_put(b, m->entries[i].node_id, PM_NODE_ID_LEN);
    pm_buf_str8(b, m->entries[i].addr, strlen(m->entries[i].addr));
  }
  return pm_frame_end(b, start);
}

int pm_resolver_msg_write_unregister(pm_buf *b,
                                     const pm_resolver_msg_unregister *m) {
  if (!mesh_field_ok(m->mesh))
    return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, PM_RESOLVER_MSG_UNREGISTER);
  pm_buf_u32(b, m->req_id);
  pm_buf_str8(b, m->mesh, strlen(m->mesh));
  pm_buf_put(b, m->node_id, PM_NODE_ID_LEN);
  return pm_frame_end(b, start);
}

int pm_resolver_msg_write_unregistered(pm_buf *b,
                                       const pm_resolver_msg_unregistered *m) {
  size_t start = pm_frame_begin(b, PM_RESOLVER_MSG_UNREGISTERED);
  pm_buf_u32(b, m->req_id);
  return pm_frame_end(b, start);
}

int pm_resolver_msg_write_error(pm_buf *b, uint32_t req_id, uint16_t code,
                                const char *message) {
  size_t n = message ? strnlen(message, PM_RESOLVER_MESSAGE_MAX) : 0;
  size_t start = pm_frame_begin(b, PM_RESOLVER_MSG_ERROR);
  pm_buf_u32(b, req_id);
  pm_buf_u16(b, code);
  pm_buf_str8(b, message ? message : "", n);
  return pm_frame_end(b, start);
}

/* ---- decoder ------------------------------------------------------------- */

/* Reads a str8 into `out` (cap bytes including the NUL). Returns 0, or
 * PM_ERR_MALFORMED when it is too long or holds a NUL; truncation is left in
 * the reader's err. */
static int read_text(pm_reader *r, char *out, size_t cap) {
  size_t n;
  const char *s = pm_read_str8(r, &n);
  out[0] = '\0';
  if (r->err)
    return 0;
  if (n >= cap || memchr(s, '\0', n))
    return PM_ERR_MALFORMED;
  memcpy(out, s, n);
  out[n] = '\0';
  return 0;
}

static int read_mesh(pm_reader *r, char out[PM_MESH_NAME_MAX + 1]) {
  int rc = read_text(r, out, PM_MESH_NAME_MAX + 1);
  if (rc || r->err)
    return rc;
  return pm_resolver_mesh_valid(out, strlen(out)) ? 0 : PM_ERR_MALFORMED;
}

static int read_addr(pm_reader *r, char out[PM_ADDR_MAX + 1]) {
  int rc = read_text(r, out, PM_ADDR_MAX + 1);
  if (rc || r->err)
    return rc;
  return addr_field_ok(out) ? 0 : PM_ERR_MALFORMED;
}

static int read_register(pm_reader *r, pm_resolver_msg_register *m) {
  m->req_id = pm_read_u32(r);
  int rc = read_mesh(r, m->mesh);
  if (rc)
    return rc;
  pm_read_bytes(r, m->node_id, PM_NODE_ID_LEN);
  return read_addr(r, m->addr);
}

static int read_resolve(pm_reader *r, pm_resolver_msg_resolve *m) {
  m->req_id = pm_read_u32(r);
  int rc = read_mesh(r, m->mesh);
  if (rc)
    return rc;
  m->max = pm_read_u8(r);
  if (!r->err && (m->max == 0 || m->max > PM_RESOLVER_MAX_ENTRIES))
    return PM_ERR_MALFORMED;
  pm_read_bytes(r, m->exclude, PM_NODE_ID_LEN);
  return 0;
}

static int read_resolved(pm_reader *r, pm_resolver_msg_resolved *m) {
  m->req_id = pm_read_u32(r);
  m->count = pm_read_u8(r);
  if (!r->err && m->count > PM_RESOLVER_MAX_ENTRIES)
    return PM_ERR_MALFORMED;
  for (unsigned i = 0; i < m->count && !r->err; i++) {
    pm_read_bytes(r, m->entries[i].node_id, PM_NODE_ID_LEN);
    int rc = read_addr(r, m->entries[i].addr);
    if (rc)
      return rc;
  }
  return 0;
}

static int read_unregister(pm_reader *r, pm_resolver_msg_unregister *m) {
  m->req_id = pm_read_u32(r);
  int rc = read_mesh(r, m->mesh);
  if (rc)
    return rc;
  pm_read_bytes(r, m->node_id, PM_NODE_ID_LEN);
  return 0;
}

static int read_error(pm_reader *r, pm_resolver_msg_error *m) {
  m->req_id = pm_read_u32(r);
  m->code = pm_read_u16(r);
  return read_text(r, m->message, sizeof m->message);
}

int pm_resolver_msg_read(const pm_frame *f, pm_resolver_msg *out) {
  pm_reader r;
  pm_reader_init(&r, f->payload, f->len);
  int rc;
  out->type = f->type;
  switch (f->type) {
  case PM_RESOLVER_MSG_REGISTER:
    rc = read_register(&r, &out->u.reg);
    break;
  case PM_RESOLVER_MSG_REGISTERED:
    out->u.registered.req_id = pm_read_u32(&r);
    out->u.registered.lifetime_s = pm_read_u32(&r);
    rc = 0;
    break;
  case PM_RESOLVER_MSG_RESOLVE:
    rc = read_resolve(&r, &out->u.resolve);
    break;
  case PM_RESOLVER_MSG_RESOLVED:
    rc = read_resolved(&r, &out->u.resolved);
    break;
  case PM_RESOLVER_MSG_UNREGISTER:
    rc = read_unregister(&r, &out->u.unreg);
    break;
  case PM_RESOLVER_MSG_UNREGISTERED:
    out->u.unregistered.req_id = pm_read_u32(&r);
    rc = 0;
    break;
  case PM_RESOLVER_MSG_ERROR:
    rc = read_error(&r, &out->u.error);
    break;
  default:
    return PM_ERR_UNEXPECTED;
  }
  if (rc)
    return rc;
  return pm_reader_finish(&r);
}

int pm_resolver_msg_peek_req_id(const pm_frame *f, uint32_t *req_id) {
  if (f->len < 4)
    return PM_ERR_TRUNCATED;
  *req_id = pm_load_u32(f->payload);
  return 0;
}
