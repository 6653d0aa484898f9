#include "frame.h"

int pm_frame_parse(const uint8_t *data, size_t len, pm_frame *out,
                   size_t *consumed) {
  *consumed = 0;
  if (len < 1)
    return 0;
  /* Judge the version as soon as its byte is here, so a peer speaking
   * something else gets a specific error rather than a confusing one. */
  if (data[0] != PM_PROTOCOL_VERSION)
    return PM_ERR_VERSION;
  if (len < PM_FRAME_HEADER)
    return 0;
  uint32_t plen = pm_load_u32(data + 2);
  if (plen > PM_FRAME_MAX_PAYLOAD)
    return PM_ERR_FRAME_TOO_LARGE;
  if (len - PM_FRAME_HEADER < plen)
    return 0;
  out->type = data[1];
  out->payload = data + PM_FRAME_HEADER;
  out->len = plen;
  *consumed = PM_FRAME_HEADER + (size_t)plen;
  return 1;
}

size_t pm_frame_begin(pm_buf *b, uint8_t type) {
  size_t start = b->len;
  pm_buf_u8(b, PM_PROTOCOL_VERSION);
  pm_buf_u8(b, type);
  pm_buf_u32(b, 0);
  return start;
}

int pm_frame_end(pm_buf *b, size_t start) {
  if (b->err)
    return b->err;
  size_t plen = b->len - start - PM_FRAME_HEADER;
  if (plen > PM_FRAME_MAX_PAYLOAD) {
    b->len = start;
    return PM_ERR_FRAME_TOO_LARGE;
  }
  pm_buf_patch_u32(b, start + 2, (uint32_t)plen);
  return 0;
}

int pm_frame_write(pm_buf *b, uint8_t type, const void *payload, size_t len) {
  size_t start = pm_frame_begin(b, type);
  pm_buf_put(b, payload, len);
  return pm_frame_end(b, start);
}
