/* Textual node addresses, "HOST:PORT" or "[IPV6]:PORT".
 *
 * The core never resolves names; it only checks that an address is well
 * formed before passing it on in a dial request or a referral. */
#ifndef PM_CORE_ADDR_H
#define PM_CORE_ADDR_H

#include <stddef.h>
#include <stdint.h>

#include "peermesh/error.h"

/* Longest address text accepted anywhere, without the terminating NUL. */
#define PM_ADDR_MAX 127

/* Splits `text` into a host (brackets removed, NUL-terminated, at most
 * PM_ADDR_MAX bytes) and a port. Accepts port 0 only when `allow_zero_port`.
 * Returns 0 or PM_ERR_INVAL. `host` must hold PM_ADDR_MAX + 1 bytes. */
int pm_addr_parse(const char *text, char *host, uint16_t *port,
                  int allow_zero_port) PM_MUST_CHECK;

/* Formats host and port back into `out` (PM_ADDR_MAX + 1 bytes), adding
 * brackets around IPv6 literals. Returns 0 or PM_ERR_INVAL. */
int pm_addr_format(char *out, const char *host, uint16_t port) PM_MUST_CHECK;

#endif
