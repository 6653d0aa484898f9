/* Byte-level codec primitives shared by every frame body.
 *
 * Integers are big-endian. Strings carry a length prefix (u8 or u16) and are
 * not NUL-terminated on the wire. A pm_reader never reads past its end: once a
 * read fails the reader is poisoned (`err` set) and all further reads fail too,
 * so decoders check `err` once at the end. */
#ifndef PM_CORE_WIRE_H
#define PM_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "peermesh/alloc.h"
#include "peermesh/error.h"

/* Growable output buffer. */
typedef struct pm_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  int err; /* first error met while appending; appends become no-ops */
  const pm_allocator *alloc;
} pm_buf;

void pm_buf_init(pm_buf *b, const pm_allocator *alloc);
/* Releases the memory; the buffer may be initialised again. */
void pm_buf_free(pm_buf *b);
void pm_buf_reset(pm_buf *b);
/* Frees an empty buffer's memory when it holds more than `keep` bytes: a
 * burst does not pin its peak for the buffer's life. */
void pm_buf_trim(pm_buf *b, size_t keep);
/* Makes room for `n` more bytes; returns 0 or PM_ERR_NOMEM. */
int pm_buf_reserve(pm_buf *b, size_t n) PM_MUST_CHECK;
/* Appends `n` bytes. The common case (room already there) is inline, so
 * that fixed-size appends compile to a few moves; growing, and a buffer
 * that has failed, take pm_buf_put_slow. */
void pm_buf_put_slow(pm_buf *b, const void *p, size_t n);
static inline void pm_buf_put(pm_buf *b, const void *p, size_t n) {
  if (n - 1 < b->cap - b->len && !b->err) {
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return;
  }
  pm_buf_put_slow(b, p, n);
}
static inline void pm_buf_u8(pm_buf *b, uint8_t v) {
  pm_buf_put(b, &v, 1);
}
static inline void pm_buf_u16(pm_buf *b, uint16_t v) {
  uint8_t t[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  pm_buf_put(b, t, 2);
}
static inline void pm_store_u32(uint8_t *p, uint32_t v);
static inline void pm_buf_u32(pm_buf *b, uint32_t v) {
  uint8_t t[4];
  pm_store_u32(t, v);
  pm_buf_put(b, t, 4);
}
static inline void pm_buf_u64(pm_buf *b, uint64_t v) {
  uint8_t t[8];
  pm_store_u32(t, (uint32_t)(v >> 32));
  pm_store_u32(t + 4, (uint32_t)v);
  pm_buf_put(b, t, 8);
}
/* u8 length + bytes; fails with PM_ERR_INVAL when n > 255. */
void pm_buf_str8(pm_buf *b, const char *s, size_t n);
/* u16 length + bytes; fails with PM_ERR_INVAL when n > 65535. */
void pm_buf_str16(pm_buf *b, const char *s, size_t n);
/* Overwrites 4 bytes at `off` (used to patch a length written earlier). */
void pm_buf_patch_u32(pm_buf *b, size_t off, uint32_t v);
/* Drops the first `n` bytes. */
void pm_buf_consume(pm_buf *b, size_t n);

typedef struct pm_reader {
  const uint8_t *p;
  size_t left;
  int err;
} pm_reader;

void pm_reader_init(pm_reader *r, const void *data, size_t len);
uint8_t pm_read_u8(pm_reader *r);
uint16_t pm_read_u16(pm_reader *r);
uint32_t pm_read_u32(pm_reader *r);
uint64_t pm_read_u64(pm_reader *r);
/* Copies exactly `n` bytes into `out`. */
void pm_read_bytes(pm_reader *r, void *out, size_t n);
/* Returns a pointer into the input for `n` bytes (NULL on failure). */
const uint8_t *pm_read_view(pm_reader *r, size_t n);
/* u8-prefixed string; returns a view and stores its length. */
const char *pm_read_str8(pm_reader *r, size_t *len);
const char *pm_read_str16(pm_reader *r, size_t *len);
/* PM_ERR_MALFORMED if bytes remain (trailing garbage), else the reader's err.
 */
int pm_reader_finish(const pm_reader *r) PM_MUST_CHECK;

/* Big-endian helpers for fixed positions. */
static inline uint32_t pm_load_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline uint64_t pm_load_u64(const uint8_t *p) {
  return (uint64_t)pm_load_u32(p) << 32 | pm_load_u32(p + 4);
}
static inline void pm_store_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

#endif
