#include "lua_host.h"

#include <lauxlib.h>
#include <lualib.h>
#include <luv/luv.h>
#include <stdio.h>

/* luv calls this for every callback (timers, stdin, ...). Unlike luv's
 * default it never exits the process: errors are reported and the loop goes
 * on, so one bad handler cannot kill the runtime. */
static int luv_callback(lua_State *L, int nargs, int nresults, int flags) {
  (void)flags;
  (void)nresults;
  int rc = pm_lua_call(L, nargs, "callback");
  return rc == LUA_OK ? 0 : -rc;
}

static void set_package_path(lua_State *L, const char *lib_dir) {
  if (!lib_dir)
    return;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s", lib_dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

int pm_lua_run(pm_host *host, const char *script, int argc, char **args,
               const char *lib_dir, const pm_lua_options *opts) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "peermesh: cannot create a Lua state\n");
    return 1;
  }
  luaL_openlibs(L);
  luv_set_loop(L, pm_host_loop(host));
  luv_set_callback(L, luv_callback);
  luaL_requiref(L, "luv", luaopen_luv, 0);
  lua_pop(L, 1);
  pm_lua_peermesh_install(L, host, opts);
  set_package_path(L, lib_dir);

  lua_createtable(L, argc, 1);
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, args[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");

  int code = 0;
  if (luaL_loadfile(L, script) != LUA_OK) {
    fprintf(stderr, "peermesh: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    code = 1;
  } else {
    for (int i = 0; i < argc; i++)
      lua_pushstring(L, args[i]);
    if (pm_lua_call(L, argc, "script") != LUA_OK)
      code = 1;
  }
  if (code == 0)
    uv_run(pm_host_loop(host), UV_RUN_DEFAULT);
  /* Closing the state collects every node (leaving its mesh) and luv handle;
   * one more turn of the loop lets libuv finish closing them. */
  lua_close(L);
  uv_run(pm_host_loop(host), UV_RUN_DEFAULT);
  return code;
}
