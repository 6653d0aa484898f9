#include "msg.h"

#include <sodium.h>
#include <string.h>

int pm_msg_write_hello(pm_buf *b, const pm_msg_hello *m) {
  if (m->mesh_len == 0 || m->mesh_len > PM_MESH_NAME_MAX)
    return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, PM_FRAME_HELLO);
  pm_buf_str8(b, m->mesh, m->mesh_len);
  pm_buf_put(b, m->node_id, PM_NODE_ID_LEN);
  pm_buf_u16(b, m->listen_port);
  pm_buf_u32(b, m->features);
  return pm_frame_end(b, start);
}

int pm_msg_read_hello(const pm_frame *f, pm_msg_hello *m) {
  pm_reader r;
  pm_reader_init(&r, f->payload, f->len);
  m->mesh = pm_read_str8(&r, &m->mesh_len);
  pm_read_bytes(&r, m->node_id, PM_NODE_ID_LEN);
  m->listen_port = pm_read_u16(&r);
  m->features = pm_read_u32(&r);
  int rc = pm_reader_finish(&r);
  if (rc)
    return rc;
  if (m->mesh_len == 0)
    return PM_ERR_MALFORMED;
  return 0;
}

int pm_msg_write_referrals(pm_buf *b, uint8_t type, const pm_msg_referrals *m) {
  if (m->count > PM_MAX_REFERRALS)
    return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, type);
  pm_buf_u8(b, m->reason);
  pm_buf_u8(b, m->count);
  for (unsigned i = 0; i < m->count; i++) {
    pm_buf_put(b, m->items[i].node_id, PM_NODE_ID_LEN);
    pm_buf_str8(b, m->items[i].addr, strlen(m->items[i].addr));
  }
  return pm_frame_end(b, start);
}

int pm_msg_read_referrals(const pm_frame *f, pm_msg_referrals *m) {
  pm_reader r;
  pm_reader_init(&r, f->payload, f->len);
  m->reason = pm_read_u8(&r);
  m->count = pm_read_u8(&r);
  if (!r.err && m->count > PM_MAX_REFERRALS)
    return PM_ERR_MALFORMED;
  for (unsigned i = 0; i < m->count && !r.err; i++) {
    pm_read_bytes(&r, m->items[i].node_id, PM_NODE_ID_LEN);
    size_t n;
    const char *a = pm_read_str8(&r, &n);
    if (r.err)
      break;
    if (n > PM_ADDR_MAX)
      return PM_ERR_MALFORMED;
    memcpy(m->items[i].addr, a, n);
    m->items[i].addr[n] = '\0';
    char host[PM_ADDR_MAX + 1];
    uint16_t port;
    if (strlen(m->items[i].addr) != n ||
        pm_addr_parse(m->items[i].addr, host, &port, 0) != 0)
      return PM_ERR_MALFORMED;
  }
  return pm_reader_finish(&r);
}

int pm_msg_write_empty(pm_buf *b, uint8_t type) {
  return pm_frame_write(b, type, NULL, 0);
}

int pm_msg_write_flood(pm_buf *b, const pm_msg_flood *m) {
  if (m->action_len == 0 || m->action_len > PM_ACTION_MAX)
    return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, PM_FRAME_FLOOD);
  pm_buf_put(b, m->id, PM_MSG_ID_LEN);
  pm_buf_put(b, m->origin, PM_NODE_ID_LEN);
  pm_buf_u64(b, m->seq);
  pm_buf_u64(b, m->time_ms);
  pm_buf_u8(b, m->has_hop_limit ? 1 : 0);
  pm_buf_u32(b, m->has_hop_limit ? m->hop_limit : 0);
  pm_buf_u16(b, m->hops);
  pm_buf_str8(b, m->action, m->action_len);
  pm_buf_u32(b, (uint32_t)m->body_len);
  pm_buf_put(b, m->body, m->body_len);
  pm_buf_put(b, m->sig, PM_SIG_BYTES);
  return pm_frame_end(b, start);
}

int pm_msg_relay_flood(pm_buf *b, const pm_frame *f, uint16_t hops) {
  if (f->type != PM_FRAME_FLOOD || f->len < PM_FLOOD_HOPS_OFFSET + 2)
    return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, PM_FRAME_FLOOD);
  pm_buf_put(b, f->payload, PM_FLOOD_HOPS_OFFSET);
  pm_buf_u16(b, hops);
  pm_buf_put(b, f->payload + PM_FLOOD_HOPS_OFFSET + 2,
             f->len - PM_FLOOD_HOPS_OFFSET - 2);
  return pm_frame_end(b, start);
}

int pm_msg_read_flood(const pm_frame *f, pm_msg_flood *m) {
  pm_reader r;
  pm_reader_init(&r, f->payload, f->len);
  pm_read_bytes(&r, m->id, PM_MSG_ID_LEN);
  pm_read_bytes(&r, m->origin, PM_NODE_ID_LEN);
  m->seq = pm_read_u64(&r);
  m->time_ms = pm_read_u64(&r);
  uint8_t flags = pm_read_u8(&r);
  m->hop_limit = pm_read_u32(&r);
  m->hops = pm_read_u16(&r);
  m->action = pm_read_str8(&r, &m->action_len);
  uint32_t blen = pm_read_u32(&r);
  m->body = pm_read_view(&r, blen);
  m->body_len = m->body ? blen : 0;
  pm_read_bytes(&r, m->sig, PM_SIG_BYTES);
  int rc = pm_reader_finish(&r);
  if (rc)
    return rc;
  if (flags & ~1u)
    return PM_ERR_MALFORMED;
  m->has_hop_limit = flags & 1u;
  if (!m->has_hop_limit && m->hop_limit != 0)
    return PM_ERR_MALFORMED;
  if (m->action_len == 0)
    return PM_ERR_MALFORMED;
  return 0;
}

int pm_msg_write_sync(pm_buf *b, uint32_t window_ms) {
  size_t start = pm_frame_begin(b, PM_FRAME_SYNC);
  pm_buf_u32(b, window_ms);
  return pm_frame_end(b, start);
}

int pm_msg_read_sync(const pm_frame *f, uint32_t *window_ms) {
  pm_reader r;
  pm_reader_init(&r, f->payload, f->len);
  *window_ms = pm_read_u32(&r);
  return pm_reader_finish(&r);
}

int pm_msg_write_tree(pm_buf *b, const pm_tree_adv *a) {
  size_t start = pm_frame_begin(b, PM_FRAME_TREE);
  pm_buf_put(b, a->root, PM_NODE_ID_LEN);
  pm_buf_u32(b, a->epoch);
  pm_buf_u16(b, a->dist);
  pm_buf_u8(b, a->flags);
  return pm_frame_end(b, start);
}

int pm_msg_read_tree(const pm_frame *f, pm_tree_adv *a) {
  pm_reader r;
  pm_reader_init(&r, f->payload, f->len);
  pm_read_bytes(&r, a->root, PM_NODE_ID_LEN);
  a->epoch = pm_read_u32(&r);
  a->dist = pm_read_u16(&r);
  a->flags = pm_read_u8(&r);
  int rc = pm_reader_finish(&r);
  if (rc)
    return rc;
  return (a->flags & ~PM_TREE_FLAG_PARENT) ? PM_ERR_MALFORMED : 0;
}

static void hash_u64(crypto_generichash_state *st, uint64_t v) {
  uint8_t t[8];
  for (int i = 0; i < 8; i++)
    t[i] = (uint8_t)(v >> (56 - 8 * i));
  crypto_generichash_update(st, t, 8);
}

void pm_msg_flood_id(const pm_msg_flood *m, uint8_t out[PM_MSG_ID_LEN]) {
  crypto_generichash_state st;
  static const char domain[] = "peermesh flood v2";
  crypto_generichash_init(&st, NULL, 0, PM_MSG_ID_LEN);
  crypto_generichash_update(&st, (const uint8_t *)domain, sizeof domain - 1);
  crypto_generichash_update(&st, m->origin, PM_NODE_ID_LEN);
  hash_u64(&st, m->seq);
  hash_u64(&st, m->time_ms);
  uint8_t flag = m->has_hop_limit ? 1 : 0;
  crypto_generichash_update(&st, &flag, 1);
  hash_u64(&st, m->has_hop_limit ? m->hop_limit : 0);
  hash_u64(&st, m->action_len);
  crypto_generichash_update(&st, (const uint8_t *)m->action, m->action_len);
  hash_u64(&st, m->body_len);
  crypto_generichash_update(&st, m->body, m->body_len);
  crypto_generichash_final(&st, out, PM_MSG_ID_LEN);
}

int pm_msg_write_ids(pm_buf *b, uint8_t type, const uint8_t *ids,
                     size_t count) {
  if (count == 0 || count > PM_MAX_IDS)
    return PM_ERR_INVAL;
  size_t start = pm_frame_begin(b, type);
  pm_buf_u8(b, (uint8_t)count);
  pm_buf_put(b, ids, count * PM_MSG_ID_LEN);
  return pm_frame_end(b, start);
}

int pm_msg_read_ids(const pm_frame *f, const uint8_t **ids, size_t *count) {
  pm_reader r;
  pm_reader_init(&r, f->payload, f->len);
  size_t n = pm_read_u8(&r);
  *ids = pm_read_view(&r, n * PM_MSG_ID_LEN);
  *count = n;
  int rc = pm_reader_finish(&r);
  if (rc)
    return rc;
  return (n == 0 || n > PM_MAX_IDS) ? PM_ERR_MALFORMED : 0;
}

static const char sign_domain[] = "peermesh message v1";

void pm_msg_sign_id(const uint8_t id[PM_MSG_ID_LEN], const uint8_t *secret_key,
                    uint8_t sig[PM_SIG_BYTES]) {
  uint8_t buf[sizeof sign_domain - 1 + PM_MSG_ID_LEN];
  memcpy(buf, sign_domain, sizeof sign_domain - 1);
  memcpy(buf + sizeof sign_domain - 1, id, PM_MSG_ID_LEN);
  crypto_sign_detached(sig, NULL, buf, sizeof buf, secret_key);
}

int pm_msg_verify_id(const uint8_t id[PM_MSG_ID_LEN],
                     const uint8_t author[PM_NODE_ID_LEN],
                     const uint8_t sig[PM_SIG_BYTES]) {
  uint8_t buf[sizeof sign_domain - 1 + PM_MSG_ID_LEN];
  memcpy(buf, sign_domain, sizeof sign_domain - 1);
  memcpy(buf + sizeof sign_domain - 1, id, PM_MSG_ID_LEN);
  return crypto_sign_verify_detached(sig, buf, sizeof buf, author) == 0;
}
