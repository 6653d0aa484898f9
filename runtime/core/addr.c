#include "addr.h"

#include <stdio.h>
#include <string.h>

static int host_char_ok(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' ||
         c == '_' || c == '%';
}

int pm_addr_parse(const char *text, char *host, uint16_t *port,
                  int allow_zero_port) {
  if (!text)
    return PM_ERR_INVAL;
  size_t n = strlen(text);
  if (n == 0 || n > PM_ADDR_MAX)
    return PM_ERR_INVAL;
  const char *colon;
  const char *hstart = text;
  size_t hlen;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (!close || close[1] != ':')
      return PM_ERR_INVAL;
    hstart = text + 1;
    hlen = (size_t)(close - hstart);
    colon = close + 1;
  } else {
    colon = strrchr(text, ':');
    if (!colon)
      return PM_ERR_INVAL;
    hlen = (size_t)(colon - text);
    if (memchr(text, ':', hlen)) /* bare IPv6 needs brackets */
      return PM_ERR_INVAL;
  }
  if (hlen == 0)
    return PM_ERR_INVAL;
  for (size_t i = 0; i < hlen; i++)
    if (!host_char_ok(hstart[i]))
      return PM_ERR_INVAL;
  const char *p = colon + 1;
  if (*p == '\0')
    return PM_ERR_INVAL;
  unsigned long v = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9')
      return PM_ERR_INVAL;
    v = v * 10 + (unsigned long)(*p - '0');
    if (v > 65535)
      return PM_ERR_INVAL;
  }
  if (v == 0 && !allow_zero_port)
    return PM_ERR_INVAL;
  memcpy(host, hstart, hlen);
  host[hlen] = '\0';
  *port = (uint16_t)v;
  return 0;
}

int pm_addr_format(char *out, const char *host, uint16_t port) {
  int v6 = strchr(host, ':') != NULL;
  int n = snprintf(out, PM_ADDR_MAX + 1, v6 ? "[%s]:%u" : "%s:%u", host,
                   (unsigned)port);
  return (n > 0 && n <= PM_ADDR_MAX) ? 0 : PM_ERR_INVAL;
}
