#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int pm_paths_data_dir(const char *override, char *out, size_t n) {
  int w;
  const char *xdg = getenv("XDG_DATA_HOME");
  const char *home = getenv("HOME");
  if (override && *override)
    w = snprintf(out, n, "%s", override);
  else if (xdg && xdg[0] == '/') /* the spec ignores relative values */
    w = snprintf(out, n, "%s/peermesh", xdg);
  else if (home && *home)
    w = snprintf(out, n, "%s/.local/share/peermesh", home);
  else
    return PM_ERR_INVAL;
  return (w > 0 && (size_t)w < n) ? 0 : PM_ERR_INVAL;
}

int pm_paths_mkdir_p(const char *dir) {
  char tmp[4096];
  size_t len = strlen(dir);
  if (len == 0 || len >= sizeof tmp) {
    errno = ENAMETOOLONG;
    return PM_ERR_IO;
  }
  memcpy(tmp, dir, len + 1);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
      return PM_ERR_IO;
    *p = '/';
  }
  if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
    return PM_ERR_IO;
  struct stat st;
  if (stat(tmp, &st) != 0)
    return PM_ERR_IO;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return PM_ERR_IO;
  }
  return 0;
}

int pm_paths_join(char *out, size_t n, const char *dir, const char *name) {
  int w = snprintf(out, n, "%s/%s", dir, name);
  return (w > 0 && (size_t)w < n) ? 0 : PM_ERR_INVAL;
}
