# Fails when the core archive refers to I/O, clock, Lua, SQLite or system
# randomness symbols (DESIGN.md, "Layers"). Run with -DARCHIVE=path.
execute_process(COMMAND nm -u ${ARCHIVE} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${ARCHIVE}")
endif()
string(REGEX MATCHALL
  "[ \t]U (uv_[A-Za-z0-9_]*|sqlite3_[A-Za-z0-9_]*|lua_[A-Za-z0-9_]*|luaL_[A-Za-z0-9_]*|clock_gettime|gettimeofday|time|clock|rand|random|srand|srandom|getrandom|getentropy|randombytes[A-Za-z0-9_]*|socket|connect|read|write|open|fopen)\n"
  bad "${syms}")
if(bad)
  message(FATAL_ERROR "runtime/core must stay sans-I/O, but it uses:\n${bad}")
endif()
