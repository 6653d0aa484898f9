#include "wire.h"

#include <stdlib.h>
#include <string.h>

static void *default_realloc(void *ud, void *ptr, size_t size) {
  (void)ud;
  if (size == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, size);
}

static const pm_allocator default_allocator = {default_realloc, NULL};

const pm_allocator *pm_allocator_default(void) {
  return &default_allocator;
}

void pm_buf_init(pm_buf *b, const pm_allocator *alloc) {
  memset(b, 0, sizeof *b);
  b->alloc = alloc ? alloc : &default_allocator;
}

void pm_buf_free(pm_buf *b) {
  if (b->data)
    b->alloc->realloc(b->alloc->ud, b->data, 0);
  b->data = NULL;
  b->len = b->cap = 0;
  b->err = 0;
}

void pm_buf_reset(pm_buf *b) {
  b->len = 0;
  b->err = 0;
}

void pm_buf_trim(pm_buf *b, size_t keep) {
  if (b->len == 0 && b->cap > keep) {
    b->alloc->realloc(b->alloc->ud, b->data, 0);
    b->data = NULL;
    b->cap = 0;
  }
}

int pm_buf_reserve(pm_buf *b, size_t n) {
  if (b->err)
    return b->err;
  if (n <= b->cap - b->len)
    return 0;
  if (n > SIZE_MAX / 2 - b->len)
    return b->err = PM_ERR_NOMEM;
  size_t cap = b->cap ? b->cap : 64;
  while (cap - b->len < n)
    cap *= 2;
  uint8_t *p = b->alloc->realloc(b->alloc->ud, b->data, cap);
  if (!p)
    return b->err = PM_ERR_NOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

void pm_buf_put_slow(pm_buf *b, const void *p, size_t n) {
  if (n == 0 || pm_buf_reserve(b, n) != 0)
    return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void pm_buf_str8(pm_buf *b, const char *s, size_t n) {
  if (n > UINT8_MAX) {
    if (!b->err)
      b->err = PM_ERR_INVAL;
    return;
  }
  pm_buf_u8(b, (uint8_t)n);
  pm_buf_put(b, s, n);
}

void pm_buf_str16(pm_buf *b, const char *s, size_t n) {
  if (n > UINT16_MAX) {
    if (!b->err)
      b->err = PM_ERR_INVAL;
    return;
  }
  pm_buf_u16(b, (uint16_t)n);
  pm_buf_put(b, s, n);
}

void pm_buf_patch_u32(pm_buf *b, size_t off, uint32_t v) {
  if (!b->err && off + 4 <= b->len)
    pm_store_u32(b->data + off, v);
}

void pm_buf_consume(pm_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void pm_reader_init(pm_reader *r, const void *data, size_t len) {
  r->p = data;
  r->left = len;
  r->err = 0;
}

const uint8_t *pm_read_view(pm_reader *r, size_t n) {
  if (r->err)
    return NULL;
  if (n > r->left) {
    r->err = PM_ERR_TRUNCATED;
    r->left = 0;
    return NULL;
  }
  const uint8_t *v = r->p;
  r->p += n;
  r->left -= n;
  return v;
}

void pm_read_bytes(pm_reader *r, void *out, size_t n) {
  const uint8_t *v = pm_read_view(r, n);
  if (v)
    memcpy(out, v, n);
  else
    memset(out, 0, n);
}

uint8_t pm_read_u8(pm_reader *r) {
  const uint8_t *v = pm_read_view(r, 1);
  return v ? v[0] : 0;
}

uint16_t pm_read_u16(pm_reader *r) {
  const uint8_t *v = pm_read_view(r, 2);
  return v ? (uint16_t)(((unsigned)v[0] << 8) | v[1]) : 0;
}

uint32_t pm_read_u32(pm_reader *r) {
  const uint8_t *v = pm_read_view(r, 4);
  return v ? pm_load_u32(v) : 0;
}

uint64_t pm_read_u64(pm_reader *r) {
  uint64_t hi = pm_read_u32(r);
  uint64_t lo = pm_read_u32(r);
  return (hi << 32) | lo;
}

const char *pm_read_str8(pm_reader *r, size_t *len) {
  size_t n = pm_read_u8(r);
  const uint8_t *v = pm_read_view(r, n);
  *len = v ? n : 0;
  return (const char *)v;
}

const char *pm_read_str16(pm_reader *r, size_t *len) {
  size_t n = pm_read_u16(r);
  const uint8_t *v = pm_read_view(r, n);
  *len = v ? n : 0;
  return (const char *)v;
}

int pm_reader_finish(const pm_reader *r) {
  if (r->err)
    return r->err;
  return r->left ? PM_ERR_MALFORMED : 0;
}
