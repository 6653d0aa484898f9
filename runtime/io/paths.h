/* Where peermesh keeps its files (XDG base directories). */
#ifndef PM_IO_PATHS_H
#define PM_IO_PATHS_H

#include <stddef.h>

#include "peermesh/error.h"

/* The data directory: `override` when given, else $XDG_DATA_HOME/peermesh,
 * else $HOME/.local/share/peermesh. Writes a NUL-terminated path into `out`.
 * Returns 0, or PM_ERR_INVAL when no directory can be named (no HOME) or the
 * path does not fit. Creates nothing. */
int pm_paths_data_dir(const char *override, char *out, size_t n) PM_MUST_CHECK;

/* Creates `dir` and its missing parents with mode 0700. Returns 0 or
 * PM_ERR_IO (errno says why). */
int pm_paths_mkdir_p(const char *dir) PM_MUST_CHECK;

/* Joins `dir` and `name` with a slash into `out`. Returns 0 or PM_ERR_INVAL
 * when it does not fit. */
int pm_paths_join(char *out, size_t n, const char *dir,
                  const char *name) PM_MUST_CHECK;

#endif
