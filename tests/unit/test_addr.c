/* Address parsing and formatting (runtime/core/addr.h). */
#include "addr.h"
#include "test.h"

/* Parses `text` expecting success with `want_host` and `want_port`. */
static void expect_ok(const char *text, int allow_zero, const char *want_host,
                      uint16_t want_port) {
  char host[PM_ADDR_MAX + 1];
  uint16_t port = 1;
  memset(host, 'X', sizeof host);
  int rc = pm_addr_parse(text, host, &port, allow_zero);
  if (rc != 0) {
    fprintf(stderr, "parse(\"%s\") failed with %d\n", text, rc);
    CHECK(0);
    return;
  }
  CHECK_STR(host, want_host);
  CHECK_INT(port, want_port);
}

static void expect_bad(const char *text, int allow_zero) {
  char host[PM_ADDR_MAX + 1] = "untouched";
  uint16_t port = 4242;
  int rc = pm_addr_parse(text, host, &port, allow_zero);
  if (rc != PM_ERR_INVAL) {
    fprintf(stderr, "parse(\"%s\") gave %d, expected PM_ERR_INVAL\n",
            text ? text : "(null)", rc);
    CHECK(0);
  }
  /* A failed parse leaves the outputs alone. */
  CHECK_STR(host, "untouched");
  CHECK_INT(port, 4242);
}

static void test_ipv4(void) {
  expect_ok("127.0.0.1:4000", 0, "127.0.0.1", 4000);
  expect_ok("10.1.2.3:1", 0, "10.1.2.3", 1);
  expect_ok("0.0.0.0:65535", 0, "0.0.0.0", 65535);
}

static void test_hostnames(void) {
  expect_ok("localhost:80", 0, "localhost", 80);
  expect_ok("node-1.example.org:7777", 0, "node-1.example.org", 7777);
  expect_ok("a_b:9", 0, "a_b", 9);
  expect_ok("x:123", 0, "x", 123);
  /* Leading zeros are digits too. */
  expect_ok("h:00080", 0, "h", 80);
  expect_bad("bad host:80", 0);
  expect_bad("host/x:80", 0);
  expect_bad("h\xc3\xa9:80", 0);
  expect_bad("a]:80", 0);
}

static void test_ipv6_brackets(void) {
  expect_ok("[::1]:4000", 0, "::1", 4000);
  expect_ok("[2001:db8::42]:443", 0, "2001:db8::42", 443);
  expect_ok("[fe80::1%eth0]:5", 0, "fe80::1%eth0", 5);
  expect_bad("[::1]", 0);       /* no port */
  expect_bad("[::1]:", 0);      /* empty port */
  expect_bad("[::1]4000", 0);   /* no colon after the bracket */
  expect_bad("[::1:4000", 0);   /* unclosed */
  expect_bad("[]:4000", 0);     /* empty host */
  expect_bad("[::1]x:4000", 0); /* junk after the bracket */
  expect_bad("[::1]:40:00", 0); /* junk in the port */
  expect_bad("[a b]:4000", 0);  /* bad host characters inside */
}

static void test_bare_ipv6_rejected(void) {
  expect_bad("::1:4000", 0);
  expect_bad("2001:db8::1:80", 0);
  expect_bad("fe80::1", 0);
}

static void test_port_zero(void) {
  expect_bad("127.0.0.1:0", 0);
  expect_bad("[::1]:0", 0);
  expect_bad("h:000", 0);
  expect_ok("127.0.0.1:0", 1, "127.0.0.1", 0);
  expect_ok("[::1]:0", 1, "::1", 0);
}

static void test_port_range(void) {
  expect_ok("h:65535", 0, "h", 65535);
  expect_bad("h:65536", 0);
  expect_bad("h:65536", 1);
  expect_bad("h:99999", 0);
  expect_bad("h:4294967296", 0);           /* wraps a u32 to 0 */
  expect_bad("h:4294967377", 1);           /* wraps a u32 to 81 */
  expect_bad("h:18446744073709551696", 0); /* wraps a u64 to 80 */
}

static void test_empty_and_missing(void) {
  expect_bad("", 0);
  expect_bad(NULL, 0);
  expect_bad(":80", 0);
  expect_bad(":80", 1);
  expect_bad("host", 0);
  expect_bad("host:", 0);
  expect_bad("host:", 1);
  expect_bad(":", 1);
}

static void test_non_digits(void) {
  expect_bad("h:8o", 0);
  expect_bad("h:+80", 0);
  expect_bad("h:-1", 0);
  expect_bad("h: 80", 0);
  expect_bad("h:80 ", 0);
  expect_bad("h:0x50", 0);
  expect_bad("h:80\n", 0);
}

static void test_length_limit(void) {
  char text[PM_ADDR_MAX + 8];
  /* Exactly PM_ADDR_MAX characters: accepted. */
  size_t hlen = PM_ADDR_MAX - 3; /* ":80" */
  memset(text, 'a', hlen);
  memcpy(text + hlen, ":80", 4);
  CHECK_INT(strlen(text), PM_ADDR_MAX);
  char want[PM_ADDR_MAX + 1];
  memset(want, 'a', hlen);
  want[hlen] = '\0';
  expect_ok(text, 0, want, 80);
  /* One more: rejected. */
  memset(text, 'a', hlen + 1);
  memcpy(text + hlen + 1, ":80", 4);
  CHECK_INT(strlen(text), PM_ADDR_MAX + 1);
  expect_bad(text, 0);
}

static void test_format(void) {
  char out[PM_ADDR_MAX + 1];
  CHECK_INT(pm_addr_format(out, "127.0.0.1", 4000), 0);
  CHECK_STR(out, "127.0.0.1:4000");
  CHECK_INT(pm_addr_format(out, "::1", 65535), 0);
  CHECK_STR(out, "[::1]:65535");
  CHECK_INT(pm_addr_format(out, "example.org", 0), 0);
  CHECK_STR(out, "example.org:0");

  /* Round trips, brackets included. */
  static const char *const texts[] = {
      "127.0.0.1:1",     "[::1]:4000",       "[2001:db8::42]:443",
      "host-name:65535", "[fe80::1%eth0]:5",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    char host[PM_ADDR_MAX + 1];
    uint16_t port = 0;
    CHECK_INT(pm_addr_parse(texts[i], host, &port, 0), 0);
    CHECK_INT(pm_addr_format(out, host, port), 0);
    CHECK_STR(out, texts[i]);
  }

  /* Too long to format within PM_ADDR_MAX. */
  char host[PM_ADDR_MAX + 1];
  memset(host, 'h', PM_ADDR_MAX - 2);
  host[PM_ADDR_MAX - 2] = '\0';
  CHECK_INT(pm_addr_format(out, host, 1), 0); /* 125 + ":1" = 127 */
  CHECK_INT(strlen(out), PM_ADDR_MAX);
  CHECK_INT(pm_addr_format(out, host, 10), PM_ERR_INVAL);
}

TEST_MAIN(TEST_CASE(test_ipv4), TEST_CASE(test_hostnames),
          TEST_CASE(test_ipv6_brackets), TEST_CASE(test_bare_ipv6_rejected),
          TEST_CASE(test_port_zero), TEST_CASE(test_port_range),
          TEST_CASE(test_empty_and_missing), TEST_CASE(test_non_digits),
          TEST_CASE(test_length_limit), TEST_CASE(test_format))
