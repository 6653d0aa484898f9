/* Tests for the JSON codec of message bodies (bindings/json.h). */
#include "json.h"

#include <lauxlib.h>
#include <locale.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* ---- helpers ------------------------------------------------------------- */

/* Deep equality that also tells integers from floats and 0.0 from -0.0. */
static const char deq_src[] =
    "function deq(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    if a == 0 and math.type(a) == 'float' then return 1/a == 1/b end\n"
    "    return a == b\n"
    "  end\n"
    "  if type(a) ~= 'table' then return rawequal(a, b) end\n"
    "  for k, v in next, a do\n"
    "    if not deq(v, rawget(b, k)) then return false end\n"
    "  end\n"
    "  for k in next, b do\n"
    "    if rawget(a, k) == nil then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "function nest(n, leaf)\n"
    "  local t = leaf\n"
    "  for _ = 1, n do t = {t} end\n"
    "  return t\n"
    "end\n";

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  if (!L) {
    abort();
  }
  luaL_openlibs(L);
  pm_json_push_null(L);
  lua_setglobal(L, "null");
  if (luaL_dostring(L, deq_src) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    abort();
  }
  return L;
}

/* Pushes the value of the Lua expression `expr`. */
static void push_expr(lua_State *L, const char *expr) {
  lua_pushfstring(L, "return %s", expr);
  if (luaL_loadstring(L, lua_tostring(L, -1)) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "bad test expression %s: %s\n", expr, lua_tostring(L, -1));
    abort();
  }
  lua_remove(L, -2);
}

/* Encodes the value of `expr`; leaves only the result (text or message) on
 * the stack above where it was. Returns what pm_json_encode returned. */
static int enc(lua_State *L, const char *expr) {
  push_expr(L, expr);
  int top = lua_gettop(L);
  int ok = pm_json_encode(L, -1);
  CHECK_INT(lua_gettop(L), top + 1);
  CHECK_INT(lua_type(L, -1), LUA_TSTRING);
  lua_remove(L, -2);
  return ok;
}

static int dec_len(lua_State *L, const char *s, size_t len) {
  /* An exact-size copy, so ASan catches any read past `len`. */
  char *copy = malloc(len ? len : 1);
  int top = lua_gettop(L);
  if (!copy) {
    abort();
  }
  if (len) {
    memcpy(copy, s, len);
  }
  int ok = pm_json_decode(L, copy, len);
  free(copy);
  CHECK_INT(lua_gettop(L), top + 1);
  if (!ok) {
    CHECK_INT(lua_type(L, -1), LUA_TSTRING);
  }
  return ok;
}

static int dec(lua_State *L, const char *s) {
  return dec_len(L, s, strlen(s));
}

/* deq(value at a, value at b) */
static int deq(lua_State *L, int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  lua_getglobal(L, "deq");
  lua_pushvalue(L, a);
  lua_pushvalue(L, b);
  lua_call(L, 2, 1);
  int r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* Decodes `json` and compares it with the value of `expr`. */
static int dec_equals(lua_State *L, const char *json, const char *expr) {
  if (!dec(L, json)) {
    fprintf(stderr, "decode of %s failed: %s\n", json, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  push_expr(L, expr);
  int r = deq(L, -2, -1);
  lua_pop(L, 2);
  return r;
}

/* encode, decode, compare with the original, and encode again to the same
 * text. Returns 1 when all of that holds. */
static int roundtrip(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int top = lua_gettop(L), r = 0;
  if (pm_json_encode(L, idx)) {
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    if (pm_json_decode(L, text, len) && deq(L, idx, -1) &&
        pm_json_encode(L, -1)) {
      size_t len2;
      const char *text2 = lua_tolstring(L, -1, &len2);
      r = len == len2 && memcmp(text, text2, len) == 0;
    }
  }
  lua_settop(L, top);
  return r;
}

static int roundtrip_expr(lua_State *L, const char *expr) {
  push_expr(L, expr);
  int r = roundtrip(L, -1);
  lua_pop(L, 1);
  return r;
}

static const char *top_str(lua_State *L) {
  return lua_tostring(L, -1);
}

static int starts_with(const char *s, const char *prefix) {
  return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = s ? strlen(s) : 0, m = strlen(suffix);
  return s && n >= m && strcmp(s + n - m, suffix) == 0;
}

/* xorshift64*: fixed seed, so every run sees the same inputs. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Du;
}

static size_t rng_below(size_t n) {
  return n ? (size_t)(rng() % n) : 0;
}

/* ---- encoding ------------------------------------------------------------ */

static void test_encode_exact_texts(void) {
  lua_State *L = new_state();
  static const char *const cases[][2] = {
      {"{member='alice', text='hi'}", "{\"member\":\"alice\",\"text\":\"hi\"}"},
      {"'hi'", "\"hi\""},
      {"''", "\"\""},
      {"42", "42"},
      {"-7", "-7"},
      {"0", "0"},
      {"math.maxinteger", "9223372036854775807"},
      {"math.mininteger", "-9223372036854775808"},
      {"true", "true"},
      {"false", "false"},
      {"null", "null"},
      {"{}", "{}"},
      {"{1, 2, 3}", "[1,2,3]"},
      {"{'a', {b=true}, {}}", "[\"a\",{\"b\":true},{}]"},
      {"{null, 1, null}", "[null,1,null]"},
      {"{items={1, 2, {x=1}}}", "{\"items\":[1,2,{\"x\":1}]}"},
      {"{[1]='a', [2]='b'}", "[\"a\",\"b\"]"},
      {"{[1.0]='a', [2.0]='b'}", "[\"a\",\"b\"]"}, /* Lua normalises 1.0 */
      {"{['1']='a'}", "{\"1\":\"a\"}"},
      {"{a={b={c={}}}}", "{\"a\":{\"b\":{\"c\":{}}}}"},
      {"(function() local s = {1} return {s, s} end)()", "[[1],[1]]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CHECK_INT(enc(L, cases[i][0]), 1);
    CHECK_STR(top_str(L), cases[i][1]);
    lua_pop(L, 1);
  }
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_encode_key_order(void) {
  lua_State *L = new_state();
  CHECK_INT(enc(L, "{b=1, a=2, B=3, aa=4, ['\\0']=5, ['\\u{e9}']=6, ['']=7,"
                   " ['a\\0']=8}"),
            1);
  CHECK_STR(top_str(L), "{\"\":7,\"\\u0000\":5,\"B\":3,\"a\":2,"
                        "\"a\\u0000\":8,\"aa\":4,\"b\":1,\"\xC3\xA9\":6}");
  lua_pop(L, 1);

  /* Same contents, different insertion and deletion history: same text. */
  CHECK_INT(enc(L, "(function() local t = {}\n"
                   "  for i = 1, 200 do t['k' .. i] = i end\n"
                   "  return t end)()"),
            1);
  CHECK_INT(enc(L, "(function() local t = {}\n"
                   "  for i = 1, 500 do t['x' .. i] = true end\n"
                   "  for i = 200, 1, -1 do t['k' .. i] = i end\n"
                   "  for i = 1, 500 do t['x' .. i] = nil end\n"
                   "  return t end)()"),
            1);
  CHECK_INT(lua_rawequal(L, -1, -2), 1);
  lua_pop(L, 2);
  lua_close(L);
}

static void test_encode_numbers(void) {
  lua_State *L = new_state();
  static const char *const cases[][2] = {
      {"0.5", "0.5"},
      {"-1.5", "-1.5"},
      {"1.0", "1.0"},
      {"-0.0", "-0.0"},
      {"0.1", "0.10000000000000001"},
      {"1e300", "1.0000000000000001e+300"},
      {"2.0^53", "9007199254740992.0"},
      {"1e-7", "9.9999999999999995e-08"},
      {"4.9406564584124654e-324", "4.9406564584124654e-324"},
      {"1.7976931348623157e308", "1.7976931348623157e+308"},
      {"{1.0, 2}", "[1.0,2]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CHECK_INT(enc(L, cases[i][0]), 1);
    CHECK_STR(top_str(L), cases[i][1]);
    lua_pop(L, 1);
  }

  /* Every finite double survives bit for bit, and stays a float. */
  int bad = 0;
  for (int i = 0; i < 20000; i++) {
    uint64_t bits = rng();
    double x;
    memcpy(&x, &bits, sizeof x);
    if (!isfinite(x)) {
      continue;
    }
    lua_pushnumber(L, x);
    if (!pm_json_encode(L, -1)) {
      bad++;
      lua_pop(L, 2);
      continue;
    }
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    if (!pm_json_decode(L, text, len) || lua_isinteger(L, -1)) {
      bad++;
    } else {
      double y = (double)lua_tonumber(L, -1);
      bad += memcmp(&x, &y, sizeof x) != 0;
    }
    lua_pop(L, 3);
  }
  CHECK_INT(bad, 0);
  CHECK(roundtrip_expr(L, "{0.1, -0.0, 1.0, 2^63, -2^63, 1e-320, 3, -3}"));
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_encode_strings(void) {
  lua_State *L = new_state();
  static const char *const cases[][2] = {
      {"'\"\\\\/\\b\\f\\n\\r\\t'", "\"\\\"\\\\/\\b\\f\\n\\r\\t\""},
      {"'\\1\\31\\127 '", "\"\\u0001\\u001f\x7f \""},
      {"'a\\0b'", "\"a\\u0000b\""},
      {"'\\u{e9}\\u{20ac}\\u{1f600}'",
       "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\""},
      /* The edges of each UTF-8 length, and around the surrogates. */
      {"'\\u{80}\\u{7ff}\\u{800}\\u{d7ff}\\u{e000}\\u{ffff}'",
       "\"\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF\""},
      {"'\\u{10000}\\u{10ffff}'", "\"\xF0\x90\x80\x80\xF4\x8F\xBF\xBF\""},
      {"'\\u{2028}'", "\"\xE2\x80\xA8\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CHECK_INT(enc(L, cases[i][0]), 1);
    CHECK_STR(top_str(L), cases[i][1]);
    lua_pop(L, 1);
  }
  /* A long string forces the output buffer to grow several times. */
  CHECK_INT(enc(L, "string.rep('ab\\n\\u{e9}', 10000)"), 1);
  CHECK_INT(lua_rawlen(L, -1), 2 + 10000 * 6);
  lua_pop(L, 1);
  CHECK(roundtrip_expr(L, "{s = string.rep('\\0\\1\"\\\\x\\u{10ffff}', 999)}"));
  lua_close(L);
}

static void test_encode_type_errors(void) {
  lua_State *L = new_state();
  static const char *const cases[][2] = {
      {"{items={1, 2, function() end}}",
       "body.items[3]: functions cannot be encoded"},
      {"print", "body: functions cannot be encoded"},
      {"coroutine.create(print)", "body: threads cannot be encoded"},
      {"{f=io.stdout}", "body.f: userdata cannot be encoded"},
      {"nil", "body: nil cannot be encoded (use the null sentinel)"},
      {"{x=0/0}", "body.x: NaN cannot be encoded"},
      {"{1/0}", "body[1]: infinity cannot be encoded"},
      {"{a={b={-1/0}}}", "body.a.b[1]: infinity cannot be encoded"},
      {"{['a b']={print}}", "body[\"a b\"][1]: functions cannot be encoded"},
      {"{['q\"\\\\\\n']=print}",
       "body[\"q\\\"\\\\\\n\"]: functions cannot be encoded"},
      {"{['1x']=print}", "body[\"1x\"]: functions cannot be encoded"},
      {"{[string.rep('k', 41)]=print}",
       "body[\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...\"]: "
       "functions cannot be encoded"},
      {"{[string.rep('k', 39) .. '\\u{e9}']=print}",
       "body[\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...\"]: "
       "functions cannot be encoded"},
      {"{[string.rep('k', 40)]={1, print}}",
       "body.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk[2]: "
       "functions cannot be encoded"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CHECK_INT(enc(L, cases[i][0]), 0);
    CHECK_STR(top_str(L), cases[i][1]);
    lua_pop(L, 1);
  }

  /* A light userdata that is not the sentinel. */
  static int other;
  lua_pushlightuserdata(L, &other);
  CHECK_INT(pm_json_encode(L, -1), 0);
  CHECK_STR(top_str(L), "body: userdata cannot be encoded");
  lua_pop(L, 2);

  /* Nothing at the index at all. */
  CHECK_INT(pm_json_encode(L, 5), 0);
  CHECK(starts_with(top_str(L), "body: nil cannot be encoded"));
  lua_pop(L, 1);
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_encode_key_errors(void) {
  lua_State *L = new_state();
  static const char *const mixed[] = {
      "{1, 2, nil, 4}", "{1, 2, x=3}",
      "{[0]=1}",        "{[-1]=1}",
      "{[2]=1}",        "{[true]=1}",
      "{[1.5]=1}",      "{[print]=1}",
      "{[{}]=1}",       "{1, [math.maxinteger]=2}",
  };
  for (size_t i = 0; i < sizeof mixed / sizeof mixed[0]; i++) {
    CHECK_INT(enc(L, mixed[i]), 0);
    CHECK_STR(top_str(L), "body: mixed or non-string keys");
    lua_pop(L, 1);
  }
  CHECK_INT(enc(L, "{a={b={[{}]=1}}}"), 0);
  CHECK_STR(top_str(L), "body.a.b: mixed or non-string keys");
  lua_pop(L, 1);
  CHECK_INT(enc(L, "{list={'x', [3]='z'}}"), 0);
  CHECK_STR(top_str(L), "body.list: mixed or non-string keys");
  lua_pop(L, 1);
  lua_close(L);
}

static void test_encode_utf8_errors(void) {
  lua_State *L = new_state();
  static const struct {
    const char *bytes;
    const char *msg;
  } cases[] = {
      {"\xC0\xAF", "(at byte 0)"},         /* overlong '/' */
      {"\xC1\xBF", "(at byte 0)"},         /* overlong */
      {"\xE0\x80\xAF", "(at byte 0)"},     /* overlong, 3 bytes */
      {"\xE0\x9F\xBF", "(at byte 0)"},     /* overlong, 3 bytes */
      {"\xF0\x80\x80\xAF", "(at byte 0)"}, /* overlong, 4 bytes */
      {"\xF0\x8F\xBF\xBF", "(at byte 0)"}, /* overlong, 4 bytes */
      {"ok\xED\xA0\x80", "(at byte 2)"},   /* U+D800 */
      {"\xED\xBF\xBF", "(at byte 0)"},     /* U+DFFF */
      {"\xF4\x90\x80\x80", "(at byte 0)"}, /* U+110000 */
      {"\xF5\x80\x80\x80", "(at byte 0)"}, /* beyond any plane */
      {"\xFF", "(at byte 0)"},
      {"\xFE", "(at byte 0)"},
      {"\x80", "(at byte 0)"},       /* stray continuation */
      {"ab\xE2\x82", "(at byte 2)"}, /* cut short at the end */
      {"\342\202a", "(at byte 0)"},  /* cut short in the middle */
      {"\xC3", "(at byte 0)"},
      {"\xF0\x9F\x98", "(at byte 0)"},
      {"\xC3\xA9\xC3", "(at byte 2)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char want[80];
    lua_pushstring(L, cases[i].bytes);
    CHECK_INT(pm_json_encode(L, -1), 0);
    snprintf(want, sizeof want, "body: string is not valid UTF-8 %s",
             cases[i].msg);
    CHECK_STR(top_str(L), want);
    lua_pop(L, 2);

    /* The same bytes as a key, and as a value under a key. */
    lua_newtable(L);
    lua_pushstring(L, cases[i].bytes);
    lua_pushinteger(L, 1);
    lua_rawset(L, -3);
    CHECK_INT(pm_json_encode(L, -1), 0);
    snprintf(want, sizeof want, "body: object key is not valid UTF-8 %s",
             cases[i].msg);
    CHECK_STR(top_str(L), want);
    lua_pop(L, 2);

    lua_newtable(L);
    lua_pushstring(L, cases[i].bytes);
    lua_setfield(L, -2, "text");
    CHECK_INT(pm_json_encode(L, -1), 0);
    snprintf(want, sizeof want, "body.text: string is not valid UTF-8 %s",
             cases[i].msg);
    CHECK_STR(top_str(L), want);
    lua_pop(L, 2);
  }
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_encode_depth(void) {
  lua_State *L = new_state();
  char want[200];
  CHECK_INT(enc(L, "nest(32, 1)"), 1);
  memset(want, 0, sizeof want);
  memset(want, '[', 32);
  want[32] = '1';
  memset(want + 33, ']', 32);
  CHECK_STR(top_str(L), want);
  lua_pop(L, 1);

  CHECK_INT(enc(L, "nest(33, 1)"), 0);
  CHECK(starts_with(top_str(L), "body[1][1][1]"));
  CHECK(ends_with(top_str(L), "[1]: nesting deeper than 32 (or a cycle)"));
  lua_pop(L, 1);

  /* 32 levels of tables are fine, a 33rd is not, whatever holds it. */
  CHECK_INT(enc(L, "nest(31, {a=1})"), 1);
  lua_pop(L, 1);
  CHECK_INT(enc(L, "nest(32, {a=1})"), 0);
  lua_pop(L, 1);
  CHECK_INT(enc(L, "nest(32, {})"), 0);
  lua_pop(L, 1);

  CHECK_INT(enc(L, "(function() local t = {} t.self = t return t end)()"), 0);
  CHECK(starts_with(top_str(L), "body.self.self.self"));
  CHECK(ends_with(top_str(L), ": nesting deeper than 32 (or a cycle)"));
  lua_pop(L, 1);
  CHECK_INT(enc(L, "(function() local t = {} t[1] = {t} return t end)()"), 0);
  CHECK(ends_with(top_str(L), ": nesting deeper than 32 (or a cycle)"));
  lua_pop(L, 1);
  lua_close(L);
}

static void test_encode_ignores_metatables(void) {
  lua_State *L = new_state();
  CHECK_INT(enc(L, "setmetatable({}, {__index=error, __pairs=error,"
                   " __len=function() return 5 end})"),
            1);
  CHECK_STR(top_str(L), "{}");
  lua_pop(L, 1);
  CHECK_INT(enc(L, "setmetatable({1, 2}, {__index={3, 4, 5}})"), 1);
  CHECK_STR(top_str(L), "[1,2]");
  lua_pop(L, 1);
  CHECK_INT(enc(L, "setmetatable({}, {__name='x', __tostring=error})"), 1);
  CHECK_STR(top_str(L), "{}");
  lua_pop(L, 1);
  lua_close(L);
}

static void test_encode_leaves_stack_alone(void) {
  lua_State *L = new_state();
  lua_pushinteger(L, 1);
  push_expr(L, "{z=1, a={1, 2}}");
  lua_pushstring(L, "above");
  CHECK_INT(pm_json_encode(L, -2), 1);
  CHECK_INT(lua_gettop(L), 4);
  CHECK_STR(top_str(L), "{\"a\":[1,2],\"z\":1}");
  CHECK_STR(lua_tostring(L, 3), "above");
  CHECK_INT(lua_tointeger(L, 1), 1);
  CHECK_INT(pm_json_encode(L, 2), 1); /* positive index, same text */
  CHECK_INT(lua_rawequal(L, -1, -2), 1);
  CHECK_INT(lua_gettop(L), 5);
  lua_close(L);
}

/* ---- decoding ------------------------------------------------------------ */

static void test_decode_values(void) {
  lua_State *L = new_state();
  static const char *const cases[][2] = {
      {"  {\"b\":[1,2.5,\"x\",true,false,null],\"a\":{}}  ",
       "{b={1, 2.5, 'x', true, false, null}, a={}}"},
      {"[]", "{}"},
      {"{}", "{}"},
      {" \t\r\n[ 1 , [ ] , { } ]\n", "{1, {}, {}}"},
      {"0", "0"},
      {"-0", "0"},
      {"-0.0", "-0.0"},
      {"1.0", "1.0"},
      {"1e2", "100.0"},
      {"1E+2", "100.0"},
      {"1e-2", "0.01"},
      {"-12.5e-1", "-1.25"},
      {"9223372036854775807", "math.maxinteger"},
      {"-9223372036854775808", "math.mininteger"},
      {"9223372036854775808", "2.0^63"},
      {"-9223372036854775809", "-2.0^63"},
      {"123456789012345678901234567890", "1.2345678901234568e29"},
      {"1e-400", "0.0"},
      {"0.1", "0.1"},
      {"true", "true"},
      {"false", "false"},
      {"null", "null"},
      {"\"\"", "''"},
      {"{\"1\":\"a\",\"2\":\"b\"}", "{['1']='a', ['2']='b'}"},
      {"{\"a\":1,\"a\":2}", "{a=2}"},
      {"{\"a\":1,\"b\":2,\"a\":null}", "{a=null, b=2}"},
      {"[null,null]", "{null, null}"},
      {"{\"\":{\"\":[]}}", "{['']={['']={}}}"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (!dec_equals(L, cases[i][0], cases[i][1])) {
      fprintf(stderr, "decode %s != %s\n", cases[i][0], cases[i][1]);
      CHECK(0);
    }
  }

  /* Only `len` bytes are read. */
  CHECK_INT(dec_len(L, "[1,2]xyz", 5), 1);
  CHECK_INT(lua_rawlen(L, -1), 2);
  lua_pop(L, 1);

  /* Stack: exactly one value pushed, nothing below touched. */
  lua_pushstring(L, "below");
  CHECK_INT(dec(L, "[1]"), 1);
  CHECK_INT(lua_gettop(L), 2);
  CHECK_STR(lua_tostring(L, 1), "below");
  lua_pop(L, 2);
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_decode_strings(void) {
  lua_State *L = new_state();
  static const char *const cases[][2] = {
      {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t"},
      {"\"\\u0041\\u00e9\\u00E9\\u20AC\"", "A\xC3\xA9\xC3\xA9\xE2\x82\xAC"},
      {"\"\\uD83D\\uDE00\"", "\xF0\x9F\x98\x80"},
      {"\"\\ud83d\\ude00x\"", "\xF0\x9F\x98\x80x"},
      {"\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF"},
      {"\"\\u07FF\\u0800\\uFFFF\"", "\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF"},
      {"\"raw \xC3\xA9\xF0\x9F\x98\x80 \x7f\"",
       "raw \xC3\xA9\xF0\x9F\x98\x80 \x7f"},
      {"\"a\\nb\"", "a\nb"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CHECK_INT(dec(L, cases[i][0]), 1);
    CHECK_STR(top_str(L), cases[i][1]);
    lua_pop(L, 1);
  }
  /* \u0000 inside a string is a NUL byte in the Lua string. */
  size_t len;
  CHECK_INT(dec(L, "\"a\\u0000b\\u0000\""), 1);
  const char *s = lua_tolstring(L, -1, &len);
  CHECK_INT(len, 4);
  CHECK_MEM(s, "a\0b\0", 4);
  lua_pop(L, 1);
  /* Keys go through the same path. */
  CHECK(dec_equals(L, "{\"\\u00e9\\n\":1}", "{['\\u{e9}\\n']=1}"));
  /* A long escaped string makes the scratch buffer grow. */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  for (int i = 0; i < 5000; i++) {
    luaL_addstring(&b, "\\u00e9x\\n");
  }
  luaL_addchar(&b, '"');
  luaL_pushresult(&b);
  s = lua_tolstring(L, -1, &len);
  CHECK_INT(pm_json_decode(L, s, len), 1);
  CHECK_INT(lua_rawlen(L, -1), 5000 * 4);
  lua_pop(L, 2);
  lua_close(L);
}

static void test_decode_errors(void) {
  lua_State *L = new_state();
  static const struct {
    const char *in;
    size_t len; /* 0: strlen(in) */
    const char *msg;
  } cases[] = {
      {"", 0, "invalid JSON at byte 0: unexpected end of input"},
      {"   ", 0, "invalid JSON at byte 3: unexpected end of input"},
      {"[", 0, "invalid JSON at byte 1: unexpected end of input"},
      {"{", 0, "invalid JSON at byte 1: unexpected end of input"},
      {"[1,", 0, "invalid JSON at byte 3: unexpected end of input"},
      {"{\"a\"", 0, "invalid JSON at byte 4: unexpected end of input"},
      {"{\"a\":", 0, "invalid JSON at byte 5: unexpected end of input"},
      {"tru", 0, "invalid JSON at byte 3: unexpected end of input"},
      {"nul", 0, "invalid JSON at byte 3: unexpected end of input"},
      /* trailing commas and missing punctuation */
      {"[1,]", 0, "invalid JSON at byte 3: expected a value"},
      {"[,1]", 0, "invalid JSON at byte 1: expected a value"},
      {"[1,,2]", 0, "invalid JSON at byte 3: expected a value"},
      {"{\"a\":1,}", 0, "invalid JSON at byte 7: expected a string key"},
      {"{,}", 0, "invalid JSON at byte 1: expected a string key"},
      {"{1:2}", 0, "invalid JSON at byte 1: expected a string key"},
      {"{'a':2}", 0, "invalid JSON at byte 1: expected a string key"},
      {"{\"a\" 1}", 0, "invalid JSON at byte 5: expected ':'"},
      {"{\"a\":1,\"b\"}", 0, "invalid JSON at byte 10: expected ':'"},
      {"[1 2]", 0, "invalid JSON at byte 3: expected ',' or ']'"},
      {"{\"a\":1 \"b\":2}", 0, "invalid JSON at byte 7: expected ',' or '}'"},
      {"{\"a\":1]", 0, "invalid JSON at byte 6: expected ',' or '}'"},
      {"[1}", 0, "invalid JSON at byte 2: expected ',' or ']'"},
      /* trailing garbage and comments */
      {"1 2", 0, "invalid JSON at byte 2: unexpected data after the value"},
      {"[1,2]]", 0, "invalid JSON at byte 5: unexpected data after the value"},
      {"{\"a\":1}}", 0,
       "invalid JSON at byte 7: unexpected data after the value"},
      {"truex", 0, "invalid JSON at byte 4: unexpected data after the value"},
      {"0x10", 0, "invalid JSON at byte 1: unexpected data after the value"},
      {"1.5e3.2", 0, "invalid JSON at byte 5: unexpected data after the value"},
      {"/*c*/1", 0, "invalid JSON at byte 0: expected a value"},
      {"1 // c", 0, "invalid JSON at byte 2: unexpected data after the value"},
      {"[1,/*c*/2]", 0, "invalid JSON at byte 3: expected a value"},
      {"# c\n1", 0, "invalid JSON at byte 0: expected a value"},
      /* numbers */
      {"01", 0, "invalid JSON at byte 0: leading zeros are not allowed"},
      {"-01", 0, "invalid JSON at byte 1: leading zeros are not allowed"},
      {"[00]", 0, "invalid JSON at byte 1: leading zeros are not allowed"},
      {"-", 0, "invalid JSON at byte 1: unexpected end of input"},
      {"-a", 0, "invalid JSON at byte 1: expected a digit"},
      {"- 1", 0, "invalid JSON at byte 1: expected a digit"},
      {"1.", 0, "invalid JSON at byte 2: unexpected end of input"},
      {"1.x", 0, "invalid JSON at byte 2: expected a digit after '.'"},
      {"1.e5", 0, "invalid JSON at byte 2: expected a digit after '.'"},
      {"1e", 0, "invalid JSON at byte 2: unexpected end of input"},
      {"1e+", 0, "invalid JSON at byte 3: unexpected end of input"},
      {"1ex", 0, "invalid JSON at byte 2: expected a digit in the exponent"},
      {"[1e+]", 0, "invalid JSON at byte 4: expected a digit in the exponent"},
      {".5", 0, "invalid JSON at byte 0: expected a value"},
      {"+1", 0, "invalid JSON at byte 0: expected a value"},
      {"NaN", 0, "invalid JSON at byte 0: expected a value"},
      {"Infinity", 0, "invalid JSON at byte 0: expected a value"},
      {"-Infinity", 0, "invalid JSON at byte 1: expected a digit"},
      {"1e400", 0, "invalid JSON at byte 0: number out of range"},
      {"[-1e400]", 0, "invalid JSON at byte 1: number out of range"},
      /* literals */
      {"True", 0, "invalid JSON at byte 0: expected a value"},
      {"nulx", 0, "invalid JSON at byte 0: expected a value"},
      {"[nul]", 0, "invalid JSON at byte 1: expected a value"},
      {"undefined", 0, "invalid JSON at byte 0: expected a value"},
      {"'a'", 0, "invalid JSON at byte 0: expected a value"},
      /* strings */
      {"\"abc", 0, "invalid JSON at byte 0: unterminated string"},
      {"[\"abc\\", 0, "invalid JSON at byte 1: unterminated string"},
      {"\"\\u00e9", 0, "invalid JSON at byte 0: unterminated string"},
      {"\"a\001b\"", 0,
       "invalid JSON at byte 2: unescaped control character in string"},
      {"\"a\tb\"", 0,
       "invalid JSON at byte 2: unescaped control character in string"},
      {"\"a\nb\"", 0,
       "invalid JSON at byte 2: unescaped control character in string"},
      {"\"\\x\"", 0, "invalid JSON at byte 1: invalid escape in string"},
      {"\"\\'\"", 0, "invalid JSON at byte 1: invalid escape in string"},
      {"\"\\U0041\"", 0, "invalid JSON at byte 1: invalid escape in string"},
      {"\"\\u12G4\"", 0, "invalid JSON at byte 1: invalid \\u escape"},
      {"\"\\u12\"", 0, "invalid JSON at byte 1: invalid \\u escape"},
      {"\"\\u\"", 0, "invalid JSON at byte 1: invalid \\u escape"},
      {"\"\\uD800\"", 0,
       "invalid JSON at byte 1: unpaired surrogate in \\u escape"},
      {"\"\\uDC00\"", 0,
       "invalid JSON at byte 1: unpaired surrogate in \\u escape"},
      {"\"x\\uDBFF\"", 0,
       "invalid JSON at byte 2: unpaired surrogate in \\u escape"},
      {"\"\\uD800\\u0041\"", 0,
       "invalid JSON at byte 1: unpaired surrogate in \\u escape"},
      {"\"\\uD800\\uD800\"", 0,
       "invalid JSON at byte 1: unpaired surrogate in \\u escape"},
      {"\"\\uD800\\uE000\"", 0,
       "invalid JSON at byte 1: unpaired surrogate in \\u escape"},
      {"\"\\uDBFF\\uDBFF\\uDC00\"", 0,
       "invalid JSON at byte 1: unpaired surrogate in \\u escape"},
      {"\"\\uDE00\\uD83D\"", 0,
       "invalid JSON at byte 1: unpaired surrogate in \\u escape"},
      {"\"\\uD83D\\n\"", 0,
       "invalid JSON at byte 1: unpaired surrogate in \\u escape"},
      /* raw bytes that are not UTF-8 */
      {"\"\xC0\xAF\"", 0, "invalid JSON at byte 1: invalid UTF-8 in string"},
      {"\"\xE0\x80\xAF\"", 0,
       "invalid JSON at byte 1: invalid UTF-8 in string"},
      {"\"\xF0\x80\x80\xAF\"", 0,
       "invalid JSON at byte 1: invalid UTF-8 in string"},
      {"\"\xED\xA0\x80\"", 0,
       "invalid JSON at byte 1: invalid UTF-8 in string"},
      {"\"\xF4\x90\x80\x80\"", 0,
       "invalid JSON at byte 1: invalid UTF-8 in string"},
      {"\"\xFF\"", 0, "invalid JSON at byte 1: invalid UTF-8 in string"},
      {"\"\x80\"", 0, "invalid JSON at byte 1: invalid UTF-8 in string"},
      {"\"ab\xE2\x82\"", 0, "invalid JSON at byte 3: invalid UTF-8 in string"},
      {"\"ab\xE2\x82", 0, "invalid JSON at byte 3: invalid UTF-8 in string"},
      {"{\"\xFF\":1}", 0, "invalid JSON at byte 2: invalid UTF-8 in string"},
      /* bytes that are not JSON whitespace, and embedded NULs */
      {"\357\273\2771", 0, "invalid JSON at byte 0: expected a value"},
      {"\f1", 0, "invalid JSON at byte 0: expected a value"},
      {"\302\2401", 0, "invalid JSON at byte 0: expected a value"},
      {"\0", 1, "invalid JSON at byte 0: expected a value"},
      {"1\0", 2, "invalid JSON at byte 1: unexpected data after the value"},
      {"[1\0]", 4, "invalid JSON at byte 2: expected ',' or ']'"},
      {"\"a\0b\"", 5,
       "invalid JSON at byte 2: unescaped control character in string"},
      {"{\"a\"\0:1}", 8, "invalid JSON at byte 4: expected ':'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
    CHECK_INT(dec_len(L, cases[i].in, len), 0);
    if (!top_str(L) || strcmp(top_str(L), cases[i].msg) != 0) {
      fprintf(stderr, "input #%zu\n", i);
    }
    CHECK_STR(top_str(L), cases[i].msg);
    lua_pop(L, 1);
  }

  /* A number too long for any stack buffer, and out of range. */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '1');
  for (int i = 0; i < 400; i++) {
    luaL_addchar(&b, '0');
  }
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  CHECK_INT(dec_len(L, s, len), 0);
  CHECK_STR(top_str(L), "invalid JSON at byte 0: number out of range");
  lua_pop(L, 1);
  /* ... and one that is long but in range. */
  lua_pushfstring(L, "0.%s1", lua_tostring(L, -1));
  s = lua_tolstring(L, -1, &len);
  CHECK_INT(dec_len(L, s, len), 1);
  CHECK(!lua_isinteger(L, -1) && lua_tonumber(L, -1) > 0.0999 &&
        lua_tonumber(L, -1) < 0.1001);
  lua_pop(L, 3);

  CHECK_INT(pm_json_decode(L, NULL, 0), 0);
  CHECK_STR(top_str(L), "invalid JSON at byte 0: unexpected end of input");
  lua_pop(L, 1);
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_decode_depth(void) {
  lua_State *L = new_state();
  char buf[200];
  memset(buf, '[', 64);
  memset(buf + 64, ']', 64);
  CHECK_INT(dec_len(L, buf, 128), 1);
  lua_pop(L, 1);
  memset(buf, '[', 65);
  memset(buf + 65, ']', 65);
  CHECK_INT(dec_len(L, buf, 130), 0);
  CHECK_STR(top_str(L), "invalid JSON at byte 64: nesting deeper than 64");
  lua_pop(L, 1);

  /* Decodable but too deep to encode again. */
  CHECK_INT(dec_len(L, buf + 1, 128), 1);
  CHECK_INT(pm_json_encode(L, -1), 0);
  CHECK(ends_with(top_str(L), ": nesting deeper than 32 (or a cycle)"));
  lua_pop(L, 2);

  size_t n = 10000;
  char *deep = malloc(4 * n);
  if (!deep) {
    abort();
  }
  memset(deep, '[', n);
  CHECK_INT(dec_len(L, deep, n), 0);
  CHECK_STR(top_str(L), "invalid JSON at byte 64: nesting deeper than 64");
  lua_pop(L, 1);
  memset(deep + n, ']', n);
  CHECK_INT(dec_len(L, deep, 2 * n), 0);
  CHECK_STR(top_str(L), "invalid JSON at byte 64: nesting deeper than 64");
  lua_pop(L, 1);
  for (size_t i = 0; i < n; i++) {
    memcpy(deep + 4 * i, i % 2 ? "[ \t\n" : "{\"\":", 4);
  }
  CHECK_INT(dec_len(L, deep, 4 * n), 0);
  CHECK(ends_with(top_str(L), ": nesting deeper than 64"));
  lua_pop(L, 1);
  free(deep);
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_null_sentinel(void) {
  lua_State *L = new_state();
  pm_json_push_null(L);
  pm_json_push_null(L);
  CHECK_INT(lua_type(L, -1), LUA_TLIGHTUSERDATA);
  CHECK_INT(lua_rawequal(L, -1, -2), 1);
  CHECK_INT(dec(L, "null"), 1);
  CHECK_INT(lua_rawequal(L, -1, -2), 1);
  lua_pop(L, 1);
  CHECK_INT(pm_json_encode(L, -1), 1);
  CHECK_STR(top_str(L), "null");
  lua_pop(L, 3);
  CHECK_INT(dec(L, "{\"a\":null}"), 1);
  lua_getfield(L, -1, "a");
  pm_json_push_null(L);
  CHECK_INT(lua_rawequal(L, -1, -2), 1);
  lua_pop(L, 3);
  lua_close(L);
}

static void test_roundtrips(void) {
  lua_State *L = new_state();
  static const char *const cases[] = {
      "{member='alice', text='hi', at=1700000000123}",
      "{a={b={c={d={e={1, 2, {f='g'}}}}}}}",
      "{list={1, 'two', 3.5, true, false, null, {}, {x={}}}}",
      "{['']='', [' ']={' '}, ['\\0']='\\0'}",
      "{n={math.maxinteger, math.mininteger, -0.0, 0, 1e308, 5e-324}}",
      "{s='\\u{0}\\u{1f}\"\\\\/\\u{7f}\\u{80}\\u{ffff}\\u{10ffff}'}",
      "nest(32, 'deep')",
      "'just a string'",
      "{{{{}}}}",
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (!roundtrip_expr(L, cases[i])) {
      fprintf(stderr, "round trip of %s failed\n", cases[i]);
      CHECK(0);
    }
  }
  /* A big one: 1000 members with nested arrays. */
  CHECK(roundtrip_expr(
      L, "(function() local t = {}\n"
         "  for i = 1, 1000 do\n"
         "    t['m' .. i] = {i, i / 7, tostring(i), {i % 2 == 0}}\n"
         "  end return t end)()"));
  /* [] comes back as {}: an empty table has no way to say which it was. */
  CHECK_INT(dec(L, "[]"), 1);
  CHECK_INT(pm_json_encode(L, -1), 1);
  CHECK_STR(top_str(L), "{}");
  lua_pop(L, 2);
  lua_close(L);
}

/* A host (or a script through os.setlocale) may switch LC_NUMERIC to a
 * locale whose decimal point is a comma; JSON must not change. Runs only
 * where such a locale is installed. */
static void test_numeric_locale(void) {
  static const char *const locales[] = {"de_DE.UTF-8", "de_DE.utf8",
                                        "fr_FR.UTF-8", "fr_FR.utf8", "de_DE"};
  const char *found = NULL;
  for (size_t i = 0; i < sizeof locales / sizeof locales[0] && !found; i++) {
    found = setlocale(LC_NUMERIC, locales[i]);
  }
  if (!found) {
    fprintf(stderr, "test_numeric_locale: no comma locale, skipped\n");
    return;
  }
  lua_State *L = new_state();
  CHECK_INT(enc(L, "{1.5, 0.1, 1.0, 1e-7}"), 1);
  CHECK_STR(top_str(L), "[1.5,0.10000000000000001,1.0,9.9999999999999995e-08]");
  lua_pop(L, 1);
  CHECK(dec_equals(L, "[1.5,0.1,1.0,1e-7,12345678901234567890]",
                   "{1.5, 0.1, 1.0, 1e-7, 12345678901234567890.0}"));
  lua_close(L);
  setlocale(LC_NUMERIC, "C");
}

/* ---- fuzzing ------------------------------------------------------------- */

static const char *const seeds[] = {
    ("{\"member\":\"alice\",\"text\":\"hi\",\"n\":[1,2.5,-3e-7,true,false,null]"
     ","
     "\"o\":{\"k\":\"\\u00e9\\ud83d\\ude00\\n\",\"\":{}}}"),
    "[[[[]]],[{}],\"\xC3\xA9\xF0\x9F\x98\x80\"]",
    "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u0000\"",
    "-0.0e+10",
    "{\"a\":{\"b\":{\"c\":[1,{\"d\":null}]}}}",
    "[9223372036854775807,-9223372036854775808,1e308,123.456e-7]",
    "{\"a\":1,\"a\":2}",
};

static const char alphabet[] = "{}[]\",:0123456789-+.eE tfnrulas\\u\t\n";

static size_t make_input(char *buf, size_t cap) {
  size_t len;
  if (rng() % 2 == 0) {
    /* Random bytes, mostly from JSON's alphabet. */
    len = rng_below(48);
    for (size_t i = 0; i < len; i++) {
      buf[i] = rng() % 8 ? alphabet[rng_below(sizeof alphabet - 1)]
                         : (char)(rng() & 0xFF);
    }
    return len;
  }
  /* A mutated seed. */
  const char *seed = seeds[rng_below(sizeof seeds / sizeof seeds[0])];
  len = strlen(seed);
  memcpy(buf, seed, len);
  int ops = 1 + (int)rng_below(4);
  for (int k = 0; k < ops; k++) {
    size_t at = rng_below(len + 1);
    switch (rng() % 6) {
    case 0: /* overwrite a byte */
      if (at < len) {
        buf[at] = (char)(rng() & 0xFF);
      }
      break;
    case 1: /* overwrite with a JSON character */
      if (at < len) {
        buf[at] = alphabet[rng_below(sizeof alphabet - 1)];
      }
      break;
    case 2: /* insert */
      if (len < cap) {
        memmove(buf + at + 1, buf + at, len - at);
        buf[at] = rng() % 2 ? alphabet[rng_below(sizeof alphabet - 1)]
                            : (char)(rng() & 0xFF);
        len++;
      }
      break;
    case 3: /* delete */
      if (at < len) {
        memmove(buf + at, buf + at + 1, len - at - 1);
        len--;
      }
      break;
    case 4: /* duplicate a slice */
      if (at < len) {
        size_t n = 1 + rng_below(len - at);
        if (len + n <= cap) {
          memmove(buf + at + n, buf + at, len - at);
          len += n;
        }
      }
      break;
    default: /* truncate */
      len = at;
      break;
    }
  }
  return len;
}

static void test_fuzz_decode(void) {
  lua_State *L = new_state();
  char buf[1024];
  int decoded = 0, bad = 0;
  for (int i = 0; i < 20000; i++) {
    size_t len = make_input(buf, sizeof buf);
    if (!dec_len(L, buf, len)) {
      bad += !starts_with(top_str(L), "invalid JSON at byte ");
      lua_pop(L, 1);
      continue;
    }
    decoded++;
    /* Whatever decodes encodes (unless too deep), and re-decodes to a value
     * that encodes to the very same text. */
    if (!pm_json_encode(L, -1)) {
      bad += !ends_with(top_str(L), "nesting deeper than 32 (or a cycle)");
      lua_pop(L, 2);
      continue;
    }
    size_t tlen;
    const char *text = lua_tolstring(L, -1, &tlen);
    if (!pm_json_decode(L, text, tlen) || !deq(L, -1, -3) ||
        !pm_json_encode(L, -1) || !lua_rawequal(L, -1, -3)) {
      fprintf(stderr, "fuzz: unstable on input %d: %.*s\n", i, (int)len, buf);
      bad++;
    }
    lua_settop(L, 0);
  }
  CHECK_INT(bad, 0);
  CHECK(decoded > 500); /* the mutations reach past the first byte */
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

/* Pushes a random Lua value, mostly encodable. */
static void push_random_value(lua_State *L, int depth) {
  static const char *const strs[] = {"",     "a",    "key",  "\xC3\xA9",
                                     "\xFF", "a\0b", "\"\\", "\xED\xA0\x80",
                                     "\n\t"};
  switch (rng() % (depth < 4 ? 10 : 7)) {
  case 0:
    lua_pushinteger(L, (lua_Integer)rng());
    break;
  case 1: {
    uint64_t bits = rng();
    double x;
    memcpy(&x, &bits, sizeof x);
    lua_pushnumber(L, rng() % 4 ? (double)(int32_t)bits / 8.0 : x);
    break;
  }
  case 2: {
    size_t k = rng_below(sizeof strs / sizeof strs[0]);
    lua_pushlstring(L, strs[k], k == 5 ? 3 : strlen(strs[k]));
    break;
  }
  case 3:
    lua_pushboolean(L, (int)(rng() & 1));
    break;
  case 4:
    pm_json_push_null(L);
    break;
  case 5:
    if (rng() % 50 == 0) {
      lua_pushcfunction(L, luaopen_base);
    } else {
      lua_pushinteger(L, (lua_Integer)rng_below(100));
    }
    break;
  case 6:
    lua_pushstring(L, "plain");
    break;
  default: {
    size_t n = rng_below(6);
    int array = rng() % 2 == 0;
    lua_createtable(L, 0, 0);
    for (size_t i = 0; i < n; i++) {
      if (array) {
        lua_pushinteger(L, (lua_Integer)i + 1 + (rng() % 40 == 0));
      } else if (rng() % 40 == 0) {
        lua_pushboolean(L, 1);
      } else {
        size_t k = rng_below(sizeof strs / sizeof strs[0]);
        lua_pushfstring(L, "%s%d", strs[k], (int)rng_below(4));
      }
      push_random_value(L, depth + 1);
      lua_rawset(L, -3);
    }
    break;
  }
  }
}

static void test_fuzz_encode(void) {
  lua_State *L = new_state();
  int ok = 0, bad = 0;
  for (int i = 0; i < 5000; i++) {
    push_random_value(L, 0);
    if (pm_json_encode(L, -1)) {
      ok++;
      bad += !roundtrip(L, -2);
    } else {
      bad += !starts_with(top_str(L), "body");
    }
    lua_settop(L, 0);
  }
  CHECK_INT(bad, 0);
  CHECK(ok > 1000);
  lua_close(L);
}

/* ---- allocation failures ------------------------------------------------- */

static long alloc_budget = -1; /* allocations left; -1: no limit */

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (ptr == NULL || nsize > osize) {
    if (alloc_budget == 0) {
      return NULL;
    }
    if (alloc_budget > 0) {
      alloc_budget--;
    }
  }
  return realloc(ptr, nsize);
}

static int codec_under_pressure(lua_State *L) {
  size_t len;
  const char *text;
  int ok = pm_json_encode(L, 1);
  text = lua_tolstring(L, -1, &len);
  if (ok) {
    ok = pm_json_decode(L, text, len);
  }
  lua_pushboolean(L, ok);
  return 1;
}

static void test_allocation_failures(void) {
  int completed = 0;
  for (long budget = 0; budget < 400 && !completed; budget++) {
    lua_State *L = lua_newstate(limited_alloc, NULL);
    if (!L) {
      abort();
    }
    luaL_openlibs(L);
    lua_pushcfunction(L, codec_under_pressure);
    push_expr(L, "{member='alice', text=string.rep('\\u{e9}\\n', 300),"
                 " list={1, 2.5, {a={b={c='d'}}}, 'x', true},"
                 " more={k1=1, k2=2, k3=3, k4=4, k5=5, k6=6, k7=7, k8=8}}");
    alloc_budget = budget;
    int rc = lua_pcall(L, 1, 1, 0);
    alloc_budget = -1;
    CHECK(rc == LUA_OK || rc == LUA_ERRMEM);
    if (rc == LUA_OK && lua_toboolean(L, -1)) {
      completed = 1;
    }
    lua_close(L);
  }
  CHECK(completed);
}

TEST_MAIN(TEST_CASE(test_encode_exact_texts), TEST_CASE(test_encode_key_order),
          TEST_CASE(test_encode_numbers), TEST_CASE(test_encode_strings),
          TEST_CASE(test_encode_type_errors), TEST_CASE(test_encode_key_errors),
          TEST_CASE(test_encode_utf8_errors), TEST_CASE(test_encode_depth),
          TEST_CASE(test_encode_ignores_metatables),
          TEST_CASE(test_encode_leaves_stack_alone),
          TEST_CASE(test_decode_values), TEST_CASE(test_decode_strings),
          TEST_CASE(test_decode_errors), TEST_CASE(test_decode_depth),
          TEST_CASE(test_null_sentinel), TEST_CASE(test_roundtrips),
          TEST_CASE(test_numeric_locale), TEST_CASE(test_fuzz_decode),
          TEST_CASE(test_fuzz_encode), TEST_CASE(test_allocation_failures))
