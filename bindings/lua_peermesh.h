/* The `peermesh` Lua module (docs/LUA_API.md). */
#ifndef PM_BINDINGS_PEERMESH_H
#define PM_BINDINGS_PEERMESH_H

#include <lua.h>

#include "host.h"

/* Options the command line hands to scripts as `peermesh.options`. */
typedef struct pm_lua_options {
  const char *nick; /* NULL when not given */
} pm_lua_options;

/* Makes `require "peermesh"` work in L, bound to `host`. Both must outlive
 * the Lua state's use of the module. */
void pm_lua_peermesh_install(lua_State *L, pm_host *host,
                             const pm_lua_options *opts);

/* Calls the function below `nargs` arguments on the stack in protected mode,
 * printing the error and its traceback to stderr on failure, labelled with
 * `what`. Returns 0 on success (results popped), or the lua_pcall code. */
int pm_lua_call(lua_State *L, int nargs, const char *what);

#endif
