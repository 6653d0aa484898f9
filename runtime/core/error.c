#include "peermesh/error.h"

const char *pm_strerror(int err) {
  switch (err) {
#define PM_ERRNO_MSG(name, code, msg)                                          \
  case code:                                                                   \
    return msg;
    PM_ERRNO_MAP(PM_ERRNO_MSG)
#undef PM_ERRNO_MSG
  default:
    return "unknown error";
  }
}

const char *pm_errname(int err) {
  switch (err) {
#define PM_ERRNO_NAME(name, code, msg)                                         \
  case code:                                                                   \
    return #name;
    PM_ERRNO_MAP(PM_ERRNO_NAME)
#undef PM_ERRNO_NAME
  default:
    return "UNKNOWN";
  }
}
