/* Link frames: the unit every peermesh connection carries.
 *
 *   offset 0  u8   version   (PM_PROTOCOL_VERSION)
 *   offset 1  u8   type      (enum pm_frame_type)
 *   offset 2  u32  length    payload length in bytes, big-endian
 *   offset 6  ...  payload
 *
 * A frame is at most PM_FRAME_MAX bytes including its header. The decoder
 * judges a frame from its 6-byte header alone, so a header announcing 4 GiB is
 * rejected before a single payload byte is buffered. docs/PROTOCOL.md is the
 * normative description. */
#ifndef PM_CORE_FRAME_H
#define PM_CORE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define PM_PROTOCOL_VERSION 1
#define PM_FRAME_HEADER 6
#define PM_FRAME_MAX 65536
#define PM_FRAME_MAX_PAYLOAD (PM_FRAME_MAX - PM_FRAME_HEADER)

enum pm_frame_type {
  /* link */
  PM_FRAME_HELLO = 0x01,
  /* neighbour protocol */
  PM_FRAME_CONNECT = 0x10,
  PM_FRAME_WELCOME = 0x11,
  PM_FRAME_REFUSE = 0x12,
  PM_FRAME_DISCONNECT = 0x13,
  PM_FRAME_PING = 0x14,
  /* flooding: eager push plus lazy repair */
  PM_FRAME_FLOOD = 0x20,
  PM_FRAME_IHAVE = 0x21, /* "I have these messages" (to lazy neighbours) */
  PM_FRAME_GRAFT = 0x22, /* "send me these" */
  PM_FRAME_TREE = 0x24,  /* root, epoch, distance: the payload tree */
  PM_FRAME_SYNC = 0x25,  /* "announce what you have of the last N ms" */
  /* resolver protocol (resolver/resolver_msg.h) */
  PM_FRAME_RESOLVER_FIRST = 0x40,
  PM_FRAME_RESOLVER_LAST = 0x4f,
};

typedef struct pm_frame {
  uint8_t type;
  const uint8_t *payload; /* points into the caller's input */
  size_t len;
} pm_frame;

/* Looks for one complete frame at the start of `data`.
 * Returns 1 and fills `out` and `*consumed` when a frame is complete; 0 when
 * more bytes are needed (nothing consumed); PM_ERR_VERSION for another
 * protocol version; PM_ERR_FRAME_TOO_LARGE when the header announces more than
 * PM_FRAME_MAX_PAYLOAD. On error the link must be closed: the stream cannot be
 * resynchronised. */
int pm_frame_parse(const uint8_t *data, size_t len, pm_frame *out,
                   size_t *consumed) PM_MUST_CHECK;

/* Starts a frame of `type` in `b`, returning the offset to hand to
 * pm_frame_end once the payload has been appended. */
size_t pm_frame_begin(pm_buf *b, uint8_t type);
/* Writes the payload length into the header started at `start`. Returns 0,
 * the buffer's error, or PM_ERR_FRAME_TOO_LARGE (the frame is then removed). */
int pm_frame_end(pm_buf *b, size_t start) PM_MUST_CHECK;
/* Appends one whole frame. */
int pm_frame_write(pm_buf *b, uint8_t type, const void *payload,
                   size_t len) PM_MUST_CHECK;

#endif
