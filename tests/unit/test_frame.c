/* Frame codec (runtime/core/frame.h): header layout, partial input, limits
 * judged from the header alone, and the writer's removal of oversize frames. */
#include <stdlib.h>

#include "frame.h"
#include "test.h"

static void test_round_trip(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  static const uint8_t payload[] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01};
  CHECK_INT(pm_frame_write(&b, PM_FRAME_FLOOD, payload, sizeof payload), 0);
  CHECK_INT(b.len, PM_FRAME_HEADER + sizeof payload);

  pm_frame f;
  size_t used = 99;
  CHECK_INT(pm_frame_parse(b.data, b.len, &f, &used), 1);
  CHECK_INT(used, b.len);
  CHECK_INT(f.type, PM_FRAME_FLOOD);
  CHECK_INT(f.len, sizeof payload);
  CHECK(f.payload == b.data + PM_FRAME_HEADER); /* a view, not a copy */
  CHECK_MEM(f.payload, payload, sizeof payload);
  pm_buf_free(&b);
}

static void test_empty_payload(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_frame_write(&b, PM_FRAME_PING, NULL, 0), 0);
  static const uint8_t want[] = {0x01, 0x14, 0x00, 0x00, 0x00, 0x00};
  CHECK_INT(b.len, sizeof want);
  CHECK_MEM(b.data, want, sizeof want);
  pm_frame f;
  size_t used;
  CHECK_INT(pm_frame_parse(b.data, b.len, &f, &used), 1);
  CHECK_INT(used, PM_FRAME_HEADER);
  CHECK_INT(f.type, PM_FRAME_PING);
  CHECK_INT(f.len, 0);
  pm_buf_free(&b);
}

static void test_every_prefix_needs_more(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  static const uint8_t payload[] = "seventeen bytes!";
  CHECK_INT(pm_frame_write(&b, PM_FRAME_HELLO, payload, sizeof payload), 0);
  for (size_t n = 0; n < b.len; n++) {
    pm_frame f;
    size_t used = 12345;
    int rc = pm_frame_parse(b.data, n, &f, &used);
    if (rc != 0 || used != 0) {
      fprintf(stderr, "prefix %zu: rc %d used %zu\n", n, rc, used);
      CHECK(0);
    }
  }
  /* Also from a NULL pointer with no bytes at all. */
  pm_frame f;
  size_t used = 7;
  CHECK_INT(pm_frame_parse(NULL, 0, &f, &used), 0);
  CHECK_INT(used, 0);
  pm_buf_free(&b);
}

static void test_back_to_back(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_frame_write(&b, PM_FRAME_CONNECT, NULL, 0), 0);
  CHECK_INT(pm_frame_write(&b, PM_FRAME_FLOOD, "abc", 3), 0);
  CHECK_INT(pm_frame_write(&b, PM_FRAME_PING, "z", 1), 0);
  CHECK_INT(b.len, 3 * PM_FRAME_HEADER + 4);

  pm_frame f;
  size_t used, off = 0;
  CHECK_INT(pm_frame_parse(b.data, b.len, &f, &used), 1);
  CHECK_INT(f.type, PM_FRAME_CONNECT);
  CHECK_INT(f.len, 0);
  CHECK_INT(used, PM_FRAME_HEADER);
  off += used;
  CHECK_INT(pm_frame_parse(b.data + off, b.len - off, &f, &used), 1);
  CHECK_INT(f.type, PM_FRAME_FLOOD);
  CHECK_INT(f.len, 3);
  CHECK_MEM(f.payload, "abc", 3);
  off += used;
  /* The third frame minus its last byte is not yet a frame. */
  CHECK_INT(pm_frame_parse(b.data + off, b.len - off - 1, &f, &used), 0);
  CHECK_INT(used, 0);
  CHECK_INT(pm_frame_parse(b.data + off, b.len - off, &f, &used), 1);
  CHECK_INT(f.type, PM_FRAME_PING);
  CHECK_INT(f.len, 1);
  CHECK_INT(f.payload[0], 'z');
  off += used;
  CHECK_INT(off, b.len);
  pm_buf_free(&b);
}

static void test_huge_header_rejected_from_header_alone(void) {
  static const uint8_t hdr[] = {0x01, 0x20, 0xff, 0xff, 0xff, 0xff};
  pm_frame f;
  size_t used = 3;
  CHECK_INT(pm_frame_parse(hdr, sizeof hdr, &f, &used), PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(used, 0);
  /* Five header bytes are not enough to judge. */
  CHECK_INT(pm_frame_parse(hdr, 5, &f, &used), 0);
  /* 64 KiB exactly, counted as payload, is already too much. */
  static const uint8_t hdr64k[] = {0x01, 0x20, 0x00, 0x01, 0x00, 0x00};
  CHECK_INT(pm_frame_parse(hdr64k, sizeof hdr64k, &f, &used),
            PM_ERR_FRAME_TOO_LARGE);
}

static void test_max_payload_boundary_parse(void) {
  CHECK_INT(PM_FRAME_MAX_PAYLOAD, 65530);
  size_t total = PM_FRAME_HEADER + PM_FRAME_MAX_PAYLOAD + 1;
  uint8_t *data = calloc(1, total);
  CHECK(data != NULL);
  if (!data)
    return;
  data[0] = PM_PROTOCOL_VERSION;
  data[1] = PM_FRAME_FLOOD;
  pm_frame f;
  size_t used;

  pm_store_u32(data + 2, PM_FRAME_MAX_PAYLOAD);
  /* From the header alone: acceptable, needs the payload. */
  CHECK_INT(pm_frame_parse(data, PM_FRAME_HEADER, &f, &used), 0);
  CHECK_INT(pm_frame_parse(data, total - 2, &f, &used), 0);
  CHECK_INT(pm_frame_parse(data, total - 1, &f, &used), 1);
  CHECK_INT(f.len, PM_FRAME_MAX_PAYLOAD);
  CHECK_INT(used, PM_FRAME_MAX);

  pm_store_u32(data + 2, PM_FRAME_MAX_PAYLOAD + 1);
  CHECK_INT(pm_frame_parse(data, PM_FRAME_HEADER, &f, &used),
            PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(pm_frame_parse(data, total, &f, &used), PM_ERR_FRAME_TOO_LARGE);
  free(data);
}

static void test_max_payload_boundary_write(void) {
  uint8_t *payload = calloc(1, PM_FRAME_MAX_PAYLOAD + 1);
  CHECK(payload != NULL);
  if (!payload)
    return;
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_frame_write(&b, PM_FRAME_PING, "x", 1), 0);
  size_t before = b.len;

  /* One byte too many: refused, and the partial frame is gone. */
  CHECK_INT(
      pm_frame_write(&b, PM_FRAME_FLOOD, payload, PM_FRAME_MAX_PAYLOAD + 1),
      PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(b.len, before);
  CHECK_INT(b.err, 0);

  /* Same through begin/end. */
  size_t start = pm_frame_begin(&b, PM_FRAME_FLOOD);
  CHECK_INT(start, before);
  pm_buf_put(&b, payload, PM_FRAME_MAX_PAYLOAD + 1);
  CHECK_INT(pm_frame_end(&b, start), PM_ERR_FRAME_TOO_LARGE);
  CHECK_INT(b.len, before);

  /* Exactly the maximum fits. */
  start = pm_frame_begin(&b, PM_FRAME_FLOOD);
  pm_buf_put(&b, payload, PM_FRAME_MAX_PAYLOAD);
  CHECK_INT(pm_frame_end(&b, start), 0);
  CHECK_INT(b.len, before + PM_FRAME_MAX);

  /* The buffer still holds the two good frames, in order. */
  pm_frame f;
  size_t used;
  CHECK_INT(pm_frame_parse(b.data, b.len, &f, &used), 1);
  CHECK_INT(f.type, PM_FRAME_PING);
  CHECK_INT(f.len, 1);
  CHECK_INT(used, before);
  CHECK_INT(pm_frame_parse(b.data + used, b.len - used, &f, &used), 1);
  CHECK_INT(f.type, PM_FRAME_FLOOD);
  CHECK_INT(f.len, PM_FRAME_MAX_PAYLOAD);
  CHECK_INT(used, PM_FRAME_MAX);
  pm_buf_free(&b);
  free(payload);
}

static void test_wrong_version(void) {
  pm_frame f;
  size_t used = 5;
  static const uint8_t v0[] = {0x00};
  static const uint8_t v2[] = {0x02};
  static const uint8_t vff[] = {0xff};
  CHECK_INT(pm_frame_parse(v0, 1, &f, &used), PM_ERR_VERSION);
  CHECK_INT(used, 0);
  CHECK_INT(pm_frame_parse(v2, 1, &f, &used), PM_ERR_VERSION);
  CHECK_INT(pm_frame_parse(vff, 1, &f, &used), PM_ERR_VERSION);
  /* A whole, otherwise valid frame of version 2. */
  static const uint8_t full[] = {0x02, 0x14, 0x00, 0x00, 0x00, 0x00};
  CHECK_INT(pm_frame_parse(full, sizeof full, &f, &used), PM_ERR_VERSION);
  /* Version wins over size: a foreign header announcing 4 GiB. */
  static const uint8_t big[] = {0x47, 0x45, 0xff, 0xff, 0xff, 0xff};
  CHECK_INT(pm_frame_parse(big, sizeof big, &f, &used), PM_ERR_VERSION);
  /* The right version with one byte is merely incomplete. */
  static const uint8_t v1[] = {0x01};
  CHECK_INT(pm_frame_parse(v1, 1, &f, &used), 0);
}

static void test_golden_bytes(void) {
  pm_buf b;
  pm_buf_init(&b, NULL);
  CHECK_INT(pm_frame_write(&b, PM_FRAME_FLOOD, "hi!", 3), 0);
  /* clang-format off */
  static const uint8_t want[] = {
      0x01,                   /* version */
      0x20,                   /* type: flood */
      0x00, 0x00, 0x00, 0x03, /* length, big-endian */
      'h',  'i',  '!',
  };
  /* clang-format on */
  CHECK_INT(b.len, sizeof want);
  CHECK_MEM(b.data, want, sizeof want);

  /* A length that needs every header byte, to pin the byte order. */
  pm_buf_reset(&b);
  uint8_t payload[0x0102];
  memset(payload, 0xab, sizeof payload);
  CHECK_INT(pm_frame_write(&b, 0x7e, payload, sizeof payload), 0);
  static const uint8_t hdr[] = {0x01, 0x7e, 0x00, 0x00, 0x01, 0x02};
  CHECK_MEM(b.data, hdr, sizeof hdr);
  pm_buf_free(&b);
}

TEST_MAIN(TEST_CASE(test_round_trip), TEST_CASE(test_empty_payload),
          TEST_CASE(test_every_prefix_needs_more), TEST_CASE(test_back_to_back),
          TEST_CASE(test_huge_header_rejected_from_header_alone),
          TEST_CASE(test_max_payload_boundary_parse),
          TEST_CASE(test_max_payload_boundary_write),
          TEST_CASE(test_wrong_version), TEST_CASE(test_golden_bytes))
