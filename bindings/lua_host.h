/* Running a Lua script on the runtime's loop. */
#ifndef PM_BINDINGS_LUA_HOST_H
#define PM_BINDINGS_LUA_HOST_H

#include "host.h"
#include "lua_peermesh.h"

/* Runs `script` with `args` as its `arg` table (arg[0] = script) and the
 * modules `peermesh` and `luv` available, then runs the loop until nothing
 * is left to do. `lib_dir`, when not NULL, is searched by require for
 * NAME.lua. Returns the process exit code: 0, or 1 when the script failed to
 * load or raised at top level. Errors in callbacks are printed with their
 * traceback and do not stop the runtime. */
int pm_lua_run(pm_host *host, const char *script, int argc, char **args,
               const char *lib_dir, const pm_lua_options *opts);

#endif
