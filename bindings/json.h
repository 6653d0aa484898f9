/* JSON codec for message bodies (RFC 8259).
 *
 * A body is a Lua value; it travels and is stored as JSON text. The mapping:
 *
 *   Lua                                  JSON
 *   table with keys exactly 1..n, n >= 1 array
 *   any other table (keys all strings)   object; keys emitted in byte order
 *   empty table                          {}   (so a decoded [] comes back {})
 *   integer                              integer
 *   float                                "%.17g", plus ".0" when that looks
 *                                        like an integer (1.0 -> 1.0)
 *   string (valid UTF-8)                 string
 *   boolean                              true / false
 *   the null sentinel                    null
 *
 * decode(encode(v)) gives back v exactly, math.type of numbers included, for
 * every v that encodes (except that [] and {} both decode to an empty table).
 * The same table always encodes to the same text.
 *
 * Both functions read tables with raw access: metatables are ignored and no
 * Lua code runs. Neither keeps any pointer after it returns. Neither raises
 * except for memory errors (out of memory, or a Lua stack that cannot grow);
 * call them under lua_pcall when those must be caught. */
#ifndef PM_BINDINGS_JSON_H
#define PM_BINDINGS_JSON_H

#include <stddef.h>

#include <lua.h>

/* Nesting limits: tables in a value to encode (a cycle hits it too), and
 * arrays and objects in text to decode. Text nested 33..64 deep decodes but
 * cannot be encoded again. */
#define PM_JSON_ENCODE_MAX_DEPTH 32
#define PM_JSON_DECODE_MAX_DEPTH 64

#if defined(__GNUC__)
#define PM_JSON_MUST_CHECK __attribute__((warn_unused_result))
#else
#define PM_JSON_MUST_CHECK
#endif

/* Encodes the Lua value at `idx` (any valid index, negative ones too).
 * On success pushes the JSON text (a Lua string) and returns 1.
 * On failure pushes an error message and returns 0. The message names where
 * the problem is, counting from the root "body" with Lua indices, then the
 * problem, e.g. "body.items[3]: functions cannot be encoded" or
 * "body[\"a b\"]: string is not valid UTF-8 (at byte 2)". It fails on:
 * nil, functions, userdata other than the null sentinel, threads, NaN and
 * +-infinity, strings or keys that are not valid UTF-8, tables that are
 * neither a 1..n sequence nor all-string-keyed ("mixed or non-string keys"),
 * and nesting deeper than PM_JSON_ENCODE_MAX_DEPTH (or a cycle).
 * Either way exactly one value is pushed. */
int pm_json_encode(lua_State *L, int idx) PM_JSON_MUST_CHECK;

/* Decodes `len` bytes of JSON text at `s` (NUL bytes are data, not an end).
 * Accepts exactly one RFC 8259 value with optional surrounding whitespace:
 * no comments, no trailing commas, no leading zeros, no byte-order mark.
 * Numbers without fraction or exponent that fit in int64 become integers,
 * other numbers floats (out of double range is an error); null becomes the
 * sentinel; duplicate object keys: the last wins; strings must be valid UTF-8
 * and \u escapes must pair surrogates.
 * On success pushes the value and returns 1. On failure pushes a message
 * "invalid JSON at byte N: <problem>", N counting from 0, and returns 0.
 * Either way exactly one value is pushed. */
int pm_json_decode(lua_State *L, const char *s, size_t len) PM_JSON_MUST_CHECK;

/* Pushes the sentinel that stands for JSON null: a light userdata, equal
 * (lua_rawequal, ==) to every other push of it. Encode accepts it. */
void pm_json_push_null(lua_State *L);

#endif
