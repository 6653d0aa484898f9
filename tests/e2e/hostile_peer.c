/* A hostile mesh member for the end-to-end security test.
 *
 *   hostile_peer MESH VICTIM_ADDR AUTHOR_ADDR
 *
 * It joins an open mesh properly (secure channel, Hello, Connect) at two
 * nodes. From AUTHOR it waits for a Chat message containing "bob-says"
 * (an author pushes its own messages on every link), then sends VICTIM:
 *   1. that message again, unchanged (a replay);
 *   2. the same with another hop count (a replay the relay "refreshed");
 *   3. the same with its text altered and its ID recomputed, the author's
 *      signature kept (an altered message);
 *   4. a new message under the author's node ID, signed with this peer's
 *      own key (a forgery);
 *   5. a message of its own, properly signed ("legit-from-mallory"), which
 *      the victim must show: it proves the link carried the others.
 * It prints "ready" once linked to both, "sent" after the five, then keeps
 * the links open until its stdin closes. Any failure exits 1 with a line
 * on stderr. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "msg.h"
#include "password.h"
#include "secure.h"

#define TIMEOUT_MS 20000

typedef struct conn {
  int fd;
  pm_secure sec;
  pm_buf net, plain;
} conn;

static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
static uint8_t psk[PM_PSK_LEN], tag[PM_MESH_TAG_LEN];
static const char *mesh;

static void die(const char *what) {
  fprintf(stderr, "hostile_peer: %s\n", what);
  exit(1);
}

static uint64_t random64(void *ud) {
  (void)ud;
  uint64_t v;
  randombytes_buf(&v, sizeof v);
  return v;
}

static void flush(conn *c) {
  size_t off = 0;
  while (off < c->net.len) {
    ssize_t n = write(c->fd, c->net.data + off, c->net.len - off);
    if (n <= 0)
      die("write failed");
    off += (size_t)n;
  }
  pm_buf_reset(&c->net);
}

/* Reads once (waiting up to TIMEOUT_MS) and decrypts into c->plain. */
static void pump(conn *c) {
  struct pollfd p = {c->fd, POLLIN, 0};
  if (poll(&p, 1, TIMEOUT_MS) != 1)
    die("timed out waiting for the node");
  uint8_t buf[65536];
  ssize_t n = read(c->fd, buf, sizeof buf);
  if (n <= 0)
    die("the node closed the link");
  int rc = pm_secure_recv(&c->sec, buf, (size_t)n, &c->plain, &c->net);
  flush(c);
  if (rc)
    die(pm_strerror(rc));
}

static void send_plain(conn *c, const pm_buf *b) {
  if (pm_secure_send(&c->sec, b->data, b->len, &c->net))
    die("secure send failed");
  flush(c);
}

/* The next whole frame of c->plain, copied to `out` (type in out[1]). */
static void next_frame(conn *c, pm_buf *out) {
  for (;;) {
    pm_frame f;
    size_t used;
    int got = pm_frame_parse(c->plain.data, c->plain.len, &f, &used);
    if (got < 0)
      die("bad frame from the node");
    if (got == 1) {
      pm_buf_reset(out);
      pm_buf_put(out, c->plain.data, used);
      pm_buf_consume(&c->plain, used);
      return;
    }
    pump(c);
  }
}

static void link_to(conn *c, const char *addr) {
  char host[64];
  int port;
  if (sscanf(addr, "%63[^:]:%d", host, &port) != 2)
    die("bad address");
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &sa.sin_addr);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    die("cannot connect");
  pm_buf_init(&c->net, NULL);
  pm_buf_init(&c->plain, NULL);
  pm_secure_config cfg = {1, psk, sk, pk, tag, 0, random64, NULL, NULL};
  if (pm_secure_init(&c->sec, &cfg) || pm_secure_start(&c->sec, &c->net))
    die("cannot start the handshake");
  flush(c);
  pm_buf b;
  pm_buf_init(&b, NULL);
  pm_msg_hello h = {mesh, strlen(mesh), {0}, 0, 0};
  memcpy(h.node_id, pk, PM_NODE_ID_LEN);
  if (pm_msg_write_hello(&b, &h) || pm_msg_write_empty(&b, PM_FRAME_CONNECT))
    die("cannot encode");
  send_plain(c, &b); /* queued until the handshake completes */
  for (;;) {
    next_frame(c, &b);
    if (b.data[1] == PM_FRAME_WELCOME)
      break;
    if (b.data[1] == PM_FRAME_REFUSE || b.data[1] == PM_FRAME_DISCONNECT)
      die("refused");
  }
  pm_buf_free(&b);
}

static void sign_and_send(conn *c, pm_msg_flood *m, int resign) {
  pm_msg_flood_id(m, m->id);
  if (resign)
    pm_msg_sign_id(m->id, sk, m->sig);
  pm_buf b;
  pm_buf_init(&b, NULL);
  if (pm_msg_write_flood(&b, m))
    die("cannot encode a flood");
  send_plain(c, &b);
  pm_buf_free(&b);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: hostile_peer MESH VICTIM_ADDR AUTHOR_ADDR\n");
    return 2;
  }
  if (sodium_init() < 0)
    die("libsodium");
  mesh = argv[1];
  crypto_sign_keypair(pk, sk);
  if (pm_psk_derive(mesh, NULL, 0, psk))
    die("cannot derive the mesh key");
  pm_mesh_tag(mesh, tag);

  conn victim, author;
  link_to(&victim, argv[2]);
  link_to(&author, argv[3]);
  printf("ready\n");
  fflush(stdout);

  /* The author's message, as it arrived. */
  pm_buf frame;
  pm_buf_init(&frame, NULL);
  pm_msg_flood m;
  for (;;) {
    next_frame(&author, &frame);
    pm_frame f;
    size_t used;
    if (pm_frame_parse(frame.data, frame.len, &f, &used) != 1 ||
        f.type != PM_FRAME_FLOOD || pm_msg_read_flood(&f, &m) ||
        !memmem(m.body, m.body_len, "bob-says", 8))
      continue;
    break;
  }

  send_plain(&victim, &frame); /* 1: replay */
  pm_msg_flood r = m;
  r.hops = (uint16_t)(m.hops + 5); /* 2: replay, other hop count */
  sign_and_send(&victim, &r, 0);
  pm_msg_flood a = m; /* 3: altered, signature kept */
  static const char altered[] = "{\"member\":\"bob\",\"text\":\"altered\"}";
  a.body = (const uint8_t *)altered;
  a.body_len = sizeof altered - 1;
  sign_and_send(&victim, &a, 0);
  pm_msg_flood g = m; /* 4: forged under the author's ID */
  static const char forged[] =
      "{\"member\":\"bob\",\"text\":\"forged-by-mallory\"}";
  g.seq = m.seq + 1;
  g.body = (const uint8_t *)forged;
  g.body_len = sizeof forged - 1;
  sign_and_send(&victim, &g, 1);
  pm_msg_flood l = m; /* 5: its own, honest */
  static const char legit[] =
      "{\"member\":\"mallory\",\"text\":\"legit-from-mallory\"}";
  memcpy(l.origin, pk, PM_NODE_ID_LEN);
  l.seq = 1;
  l.hops = 0;
  l.body = (const uint8_t *)legit;
  l.body_len = sizeof legit - 1;
  sign_and_send(&victim, &l, 1);
  printf("sent\n");
  fflush(stdout);

  /* Stay linked (answering nothing) until told to stop. */
  char line[64];
  while (fgets(line, sizeof line, stdin))
    ;
  pm_buf_free(&frame);
  conn *both[] = {&victim, &author};
  for (int i = 0; i < 2; i++) {
    pm_secure_clear(&both[i]->sec);
    pm_buf_free(&both[i]->net);
    pm_buf_free(&both[i]->plain);
    close(both[i]->fd);
  }
  return 0;
}
