/* Socket addresses for libuv users (links, the resolver server and client). */
#ifndef PM_IO_NET_H
#define PM_IO_NET_H

#include <uv.h>

#include "addr.h"
#include "peermesh/error.h"

/* Parses "IP:PORT" or "[IPV6]:PORT" (numeric hosts only) into `out`.
 * Port 0 is accepted only with `allow_zero_port`. Returns 0 or
 * PM_ERR_INVAL. */
int pm_net_sockaddr(const char *addr, int allow_zero_port,
                    struct sockaddr_storage *out) PM_MUST_CHECK;

/* The IP address of a connected socket's peer as text, with IPv4-mapped IPv6
 * addresses shown as IPv4; "" when unknown. */
void pm_net_peer_ip(const uv_tcp_t *tcp, char out[PM_ADDR_MAX + 1]);

/* The local port a bound socket got, or 0. */
uint16_t pm_net_local_port(const uv_tcp_t *tcp);

#endif
