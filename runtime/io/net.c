#include "net.h"

#include <string.h>

int pm_net_sockaddr(const char *addr, int allow_zero_port,
                    struct sockaddr_storage *out) {
  char host[PM_ADDR_MAX + 1];
  uint16_t port;
  memset(out, 0, sizeof *out);
  if (pm_addr_parse(addr, host, &port, allow_zero_port) != 0)
    return PM_ERR_INVAL;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0 ||
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0)
    return 0;
  return PM_ERR_INVAL;
}

void pm_net_peer_ip(const uv_tcp_t *tcp, char out[PM_ADDR_MAX + 1]) {
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  out[0] = '\0';
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET) {
    if (uv_ip4_name((struct sockaddr_in *)&ss, out, PM_ADDR_MAX + 1) != 0)
      out[0] = '\0';
    return;
  }
  if (ss.ss_family != AF_INET6)
    return;
  const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
  const uint8_t *a = s6->sin6_addr.s6_addr;
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(a, mapped, sizeof mapped) == 0) {
    struct sockaddr_in s4;
    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    memcpy(&s4.sin_addr, a + 12, 4);
    if (uv_ip4_name(&s4, out, PM_ADDR_MAX + 1) != 0)
      out[0] = '\0';
    return;
  }
  if (uv_ip6_name(s6, out, PM_ADDR_MAX + 1) != 0)
    out[0] = '\0';
}

uint16_t pm_net_local_port(const uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0)
    return 0;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}
