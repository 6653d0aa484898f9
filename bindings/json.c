/* JSON codec for message bodies; see json.h for the mapping.
 *
 * Memory: output and scratch text live in Lua userdata kept in a stack slot
 * (grown by allocating a bigger one and replacing the slot), never in malloc'd
 * memory, so a memory error raised anywhere in here leaks nothing. The
 * luaL_Buffer is avoided because its box is a to-be-closed slot and because
 * it forbids touching the stack between buffer operations.
 *
 * Depth: both directions recurse once per nesting level and stop at the
 * limits in json.h, so C recursion is bounded; each level checks for a few
 * Lua stack slots before using them. */
#include "json.h"

#include <lauxlib.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stack slots a nesting level may use: table, key, value, a key list, a
 * value list, plus one for a buffer being grown and one spare. */
#define LEVEL_SLOTS 8

/* Its address is the null sentinel. */
static char null_tag;

void pm_json_push_null(lua_State *L) {
  lua_pushlightuserdata(L, &null_tag);
}

/* ---- growable byte buffer held in a Lua stack slot ---------------------- */

typedef struct sbuf {
  lua_State *L;
  int slot;
  char *p;
  size_t len;
  size_t cap;
} sbuf;

/* Pushes the backing userdata; the slot must stay where it is until the
 * buffer is no longer used. */
static void sbuf_init(sbuf *b, lua_State *L, size_t cap) {
  b->L = L;
  b->p = lua_newuserdatauv(L, cap, 0);
  b->slot = lua_gettop(L);
  b->len = 0;
  b->cap = cap;
}

/* Needs one free stack slot. */
static void sbuf_grow(sbuf *b, size_t n) {
  size_t cap = b->cap;
  if (n > SIZE_MAX / 2 - b->len) {
    luaL_error(b->L, "JSON text too large");
  }
  while (cap - b->len < n) {
    cap *= 2;
  }
  char *p = lua_newuserdatauv(b->L, cap, 0);
  memcpy(p, b->p, b->len);
  lua_replace(b->L, b->slot);
  b->p = p;
  b->cap = cap;
}

static void sbuf_put(sbuf *b, const void *s, size_t n) {
  if (b->cap - b->len < n) {
    sbuf_grow(b, n);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void sbuf_putc(sbuf *b, char c) {
  if (b->cap == b->len) {
    sbuf_grow(b, 1);
  }
  b->p[b->len++] = c;
}

static void sbuf_puts(sbuf *b, const char *s) {
  sbuf_put(b, s, strlen(s));
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (p < end), or 0 when the
 * bytes there are not one: stray continuation bytes, overlong forms,
 * surrogates (U+D800..DFFF), code points above U+10FFFF, truncation. The
 * byte ranges are those of Unicode table 3-7. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  size_t avail = (size_t)(end - p);
  unsigned c = p[0];
  unsigned lo = 0x80, hi = 0xBF;
  size_t n;
  if (c < 0x80) {
    return 1;
  }
  if (c < 0xC2) {
    return 0;
  }
  if (c < 0xE0) {
    n = 2;
  } else if (c < 0xF0) {
    n = 3;
    if (c == 0xE0) {
      lo = 0xA0;
    } else if (c == 0xED) {
      hi = 0x9F;
    }
  } else if (c < 0xF5) {
    n = 4;
    if (c == 0xF0) {
      lo = 0x90;
    } else if (c == 0xF4) {
      hi = 0x8F;
    }
  } else {
    return 0;
  }
  if (avail < n || p[1] < lo || p[1] > hi) {
    return 0;
  }
  for (size_t i = 2; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) {
      return 0;
    }
  }
  return n;
}

/* Appends `s` as a quoted JSON string. Returns 1, or 0 with *bad set to the
 * offset of the first byte that is not valid UTF-8. */
static int put_json_string(sbuf *b, const char *s, size_t len, size_t *bad) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *start = (const unsigned char *)s;
  const unsigned char *p = start, *end = start + len;
  sbuf_putc(b, '"');
  while (p < end) {
    const unsigned char *run = p;
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
      p++;
    }
    sbuf_put(b, run, (size_t)(p - run));
    if (p == end) {
      break;
    }
    unsigned c = *p;
    if (c >= 0x80) {
      size_t n = utf8_len(p, end);
      if (n == 0) {
        *bad = (size_t)(p - start);
        return 0;
      }
      sbuf_put(b, p, n);
      p += n;
      continue;
    }
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    size_t esc_len = 2;
    switch (c) {
    case '"':
      esc[1] = '"';
      break;
    case '\\':
      esc[1] = '\\';
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      esc_len = 6;
      break;
    }
    sbuf_put(b, esc, esc_len);
    p++;
  }
  sbuf_putc(b, '"');
  return 1;
}

/* ---- encoding ------------------------------------------------------------ */

/* One step of the path from the root to the value being encoded. */
typedef struct enc_step {
  const char *key; /* NULL for an array element */
  size_t key_len;
  lua_Integer index;
} enc_step;

typedef struct enc {
  lua_State *L;
  sbuf out;
  int depth;
  const char *err; /* static text; set on failure */
  int err_has_byte;
  size_t err_byte;
  int nsteps;
  enc_step steps[PM_JSON_ENCODE_MAX_DEPTH + 1];
} enc;

/* An object key, remembered so keys can be sorted; `slot` is where its value
 * was stored in the side list of values. The key string stays alive because
 * it is a key of the table being encoded, which is on the stack. */
typedef struct enc_key {
  const char *s;
  size_t len;
  lua_Integer slot;
} enc_key;

static int enc_fail(enc *e, const char *msg) {
  e->err = msg;
  return 0;
}

static int enc_key_cmp(const void *pa, const void *pb) {
  const enc_key *a = pa, *b = pb;
  int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
  if (c != 0) {
    return c;
  }
  return (a->len > b->len) - (a->len < b->len);
}

/* "%.17g" is exact for every double; appending ".0" when the result has
 * neither a point nor an exponent keeps floats floats across a round trip
 * (1.0 stays a float, -0.0 keeps its sign). The decimal point of a non-C
 * LC_NUMERIC locale is replaced with '.'. */
static void put_double(sbuf *b, double x) {
  char s[64];
  int n = snprintf(s, sizeof s, "%.17g", x);
  size_t len = n > 0 ? (size_t)n : 0;
  if (len >= sizeof s) {
    len = sizeof s - 1; /* cannot happen: 17 digits, sign, exponent */
  }
  const char *dp = localeconv()->decimal_point;
  size_t dp_len = dp ? strlen(dp) : 0;
  if (dp_len > 0 && strcmp(dp, ".") != 0) {
    char *at = strstr(s, dp);
    if (at) {
      *at = '.';
      memmove(at + 1, at + dp_len, len - (size_t)(at - s) - dp_len + 1);
      len -= dp_len - 1;
    }
  }
  sbuf_put(b, s, len);
  if (!strpbrk(s, ".e")) {
    sbuf_put(b, ".0", 2);
  }
}

static int enc_value(enc *e, int idx);

static int enc_child(enc *e, int idx) {
  if (!enc_value(e, idx)) {
    return 0;
  }
  lua_pop(e->L, 1);
  e->nsteps--;
  return 1;
}

static int enc_table(enc *e, int idx) {
  lua_State *L = e->L;
  lua_Integer n = 0, n_pos = 0, max_pos = 0, n_str = 0;

  if (++e->depth > PM_JSON_ENCODE_MAX_DEPTH) {
    return enc_fail(e, "nesting deeper than 32 (or a cycle)");
  }
  if (!lua_checkstack(L, LEVEL_SLOTS)) {
    return enc_fail(e, "Lua stack exhausted");
  }

  /* Classify by keys. n distinct integer keys all in 1..n are exactly 1..n. */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    n++;
    if (lua_type(L, -2) == LUA_TSTRING) {
      n_str++;
    } else if (lua_isinteger(L, -2)) {
      lua_Integer k = lua_tointeger(L, -2);
      if (k >= 1) {
        n_pos++;
        if (k > max_pos) {
          max_pos = k;
        }
      }
    }
    lua_pop(L, 1);
  }

  if (n == 0) {
    sbuf_put(&e->out, "{}", 2);
  } else if (n_pos == n && max_pos == n) {
    sbuf_putc(&e->out, '[');
    for (lua_Integer i = 1; i <= n; i++) {
      if (i > 1) {
        sbuf_putc(&e->out, ',');
      }
      e->steps[e->nsteps++] = (enc_step){NULL, 0, i};
      lua_rawgeti(L, idx, i);
      if (!enc_child(e, lua_gettop(L))) {
        return 0;
      }
    }
    sbuf_putc(&e->out, ']');
  } else if (n_str == n) {
    size_t count = (size_t)n, i = 0;
    if (count > SIZE_MAX / sizeof(enc_key)) {
      return luaL_error(L, "table too large");
    }
    enc_key *keys = lua_newuserdatauv(L, count * sizeof *keys, 0);
    lua_createtable(L, (int)(n > INT_MAX ? INT_MAX : n), 0);
    int values = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (i < count) {
        keys[i].s = lua_tolstring(L, -2, &keys[i].len);
        keys[i].slot = (lua_Integer)i + 1;
        lua_rawseti(L, values, keys[i].slot);
        i++;
      } else {
        lua_pop(L, 1);
      }
    }
    qsort(keys, i, sizeof *keys, enc_key_cmp);
    sbuf_putc(&e->out, '{');
    for (size_t j = 0; j < i; j++) {
      size_t bad;
      if (j > 0) {
        sbuf_putc(&e->out, ',');
      }
      if (!put_json_string(&e->out, keys[j].s, keys[j].len, &bad)) {
        e->err_has_byte = 1;
        e->err_byte = bad;
        return enc_fail(e, "object key is not valid UTF-8");
      }
      sbuf_putc(&e->out, ':');
      e->steps[e->nsteps++] = (enc_step){keys[j].s, keys[j].len, 0};
      lua_rawgeti(L, values, keys[j].slot);
      if (!enc_child(e, lua_gettop(L))) {
        return 0;
      }
    }
    sbuf_putc(&e->out, '}');
    lua_pop(L, 2);
  } else {
    return enc_fail(e, "mixed or non-string keys");
  }
  e->depth--;
  return 1;
}

static int enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) {
      sbuf_put(&e->out, "true", 4);
    } else {
      sbuf_put(&e->out, "false", 5);
    }
    return 1;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      char s[32];
      int n = snprintf(s, sizeof s, LUA_INTEGER_FMT,
                       (LUAI_UACINT)lua_tointeger(L, idx));
      sbuf_put(&e->out, s, n > 0 ? (size_t)n : 0);
    } else {
      double x = (double)lua_tonumber(L, idx);
      if (isnan(x)) {
        return enc_fail(e, "NaN cannot be encoded");
      }
      if (isinf(x)) {
        return enc_fail(e, "infinity cannot be encoded");
      }
      put_double(&e->out, x);
    }
    return 1;
  case LUA_TSTRING: {
    size_t len, bad;
    const char *s = lua_tolstring(L, idx, &len);
    if (!put_json_string(&e->out, s, len, &bad)) {
      e->err_has_byte = 1;
      e->err_byte = bad;
      return enc_fail(e, "string is not valid UTF-8");
    }
    return 1;
  }
  case LUA_TTABLE:
    return enc_table(e, idx);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == &null_tag) {
      sbuf_put(&e->out, "null", 4);
      return 1;
    }
    return enc_fail(e, "userdata cannot be encoded");
  case LUA_TUSERDATA:
    return enc_fail(e, "userdata cannot be encoded");
  case LUA_TFUNCTION:
    return enc_fail(e, "functions cannot be encoded");
  case LUA_TTHREAD:
    return enc_fail(e, "threads cannot be encoded");
  default: /* nil, or no value at idx */
    return enc_fail(e, "nil cannot be encoded (use the null sentinel)");
  }
}

static int is_identifier(const char *s, size_t len) {
  if (len == 0 || (s[0] >= '0' && s[0] <= '9')) {
    return 0;
  }
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_')) {
      return 0;
    }
  }
  return 1;
}

/* Keys shown in a path are cut to this many bytes. */
#define PATH_KEY_MAX 40

/* Pushes "body<path>: <problem>". Keys on the path are valid UTF-8 (each is
 * checked before its value is encoded); long ones are cut at a character
 * boundary. */
static void enc_push_error(enc *e) {
  lua_State *L = e->L;
  sbuf m;
  char num[48];
  sbuf_init(&m, L, 128);
  sbuf_puts(&m, "body");
  for (int i = 0; i < e->nsteps; i++) {
    const enc_step *st = &e->steps[i];
    if (!st->key) {
      snprintf(num, sizeof num, "[" LUA_INTEGER_FMT "]",
               (LUAI_UACINT)st->index);
      sbuf_puts(&m, num);
    } else if (st->key_len <= PATH_KEY_MAX &&
               is_identifier(st->key, st->key_len)) {
      sbuf_putc(&m, '.');
      sbuf_put(&m, st->key, st->key_len);
    } else {
      size_t len = st->key_len, bad;
      int cut = len > PATH_KEY_MAX;
      if (cut) {
        len = PATH_KEY_MAX;
        while (len > 0 && ((unsigned char)st->key[len] & 0xC0) == 0x80) {
          len--;
        }
      }
      sbuf_putc(&m, '[');
      (void)put_json_string(&m, st->key, len, &bad);
      if (cut) {
        m.len--; /* the closing quote goes after the ellipsis */
        sbuf_puts(&m, "...\"");
      }
      sbuf_putc(&m, ']');
    }
  }
  sbuf_puts(&m, ": ");
  sbuf_puts(&m, e->err);
  if (e->err_has_byte) {
    snprintf(num, sizeof num, " (at byte %zu)", e->err_byte);
    sbuf_puts(&m, num);
  }
  lua_pushlstring(L, m.p, m.len);
}

int pm_json_encode(lua_State *L, int idx) {
  enc e;
  int ok, base;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, LEVEL_SLOTS, "JSON encoder");
  base = lua_gettop(L);
  e.L = L;
  e.depth = 0;
  e.err = NULL;
  e.err_has_byte = 0;
  e.err_byte = 0;
  e.nsteps = 0;
  sbuf_init(&e.out, L, 256);
  ok = enc_value(&e, idx);
  if (ok) {
    lua_pushlstring(L, e.out.p, e.out.len);
  } else {
    enc_push_error(&e);
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return ok;
}

/* ---- decoding ------------------------------------------------------------ */

typedef struct dec {
  lua_State *L;
  const unsigned char *start, *p, *end;
  sbuf scratch; /* string and number text */
  int depth;
  const char *err; /* static text; set on failure */
  const unsigned char *err_at;
} dec;

/* Records the first failure; at the end of the input every problem is
 * reported as the end of the input. */
static int dec_fail(dec *d, const unsigned char *at, const char *msg) {
  d->err = at >= d->end ? "unexpected end of input" : msg;
  d->err_at = at;
  return 0;
}

static void skip_ws(dec *d) {
  while (d->p < d->end &&
         (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r')) {
    d->p++;
  }
}

static int is_digit(const dec *d, const unsigned char *p) {
  return p < d->end && *p >= '0' && *p <= '9';
}

static int dec_value(dec *d);

/* Converts the validated number text [s, s+len) that is not an int64. strtod
 * follows LC_NUMERIC, so the '.' is swapped for the locale's point first. */
static int dec_float(dec *d, const unsigned char *s, size_t len) {
  const char *dp = localeconv()->decimal_point;
  size_t dp_len = dp ? strlen(dp) : 0;
  sbuf *b = &d->scratch;
  char *endp;
  if (dp_len == 0) {
    dp = ".";
    dp_len = 1;
  }
  b->len = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '.') {
      sbuf_put(b, dp, dp_len);
    } else {
      sbuf_putc(b, (char)s[i]);
    }
  }
  sbuf_putc(b, '\0');
  double x = strtod(b->p, &endp);
  if (endp != b->p + b->len - 1) {
    return dec_fail(d, s, "number cannot be converted");
  }
  if (isinf(x)) {
    return dec_fail(d, s, "number out of range");
  }
  lua_pushnumber(d->L, (lua_Number)x);
  return 1;
}

static int dec_number(dec *d) {
  const unsigned char *s = d->p, *p = d->p;
  int neg = 0, is_int = 1;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  if (!is_digit(d, p)) {
    return dec_fail(d, p, "expected a digit");
  }
  if (*p == '0') {
    p++;
    if (is_digit(d, p)) {
      return dec_fail(d, p - 1, "leading zeros are not allowed");
    }
  } else {
    while (is_digit(d, p)) {
      p++;
    }
  }
  if (p < d->end && *p == '.') {
    is_int = 0;
    p++;
    if (!is_digit(d, p)) {
      return dec_fail(d, p, "expected a digit after '.'");
    }
    while (is_digit(d, p)) {
      p++;
    }
  }
  if (p < d->end && (*p == 'e' || *p == 'E')) {
    is_int = 0;
    p++;
    if (p < d->end && (*p == '+' || *p == '-')) {
      p++;
    }
    if (!is_digit(d, p)) {
      return dec_fail(d, p, "expected a digit in the exponent");
    }
    while (is_digit(d, p)) {
      p++;
    }
  }
  d->p = p;
  if (is_int) {
    uint64_t limit = (uint64_t)LUA_MAXINTEGER + (uint64_t)neg;
    uint64_t mag = 0;
    const unsigned char *q = s + neg;
    for (; q < p; q++) {
      uint64_t digit = (uint64_t)(*q - '0');
      if (mag > (limit - digit) / 10) {
        break;
      }
      mag = mag * 10 + digit;
    }
    if (q == p) {
      lua_Integer v;
      if (!neg) {
        v = (lua_Integer)mag;
      } else if (mag == limit) {
        v = LUA_MININTEGER;
      } else {
        v = -(lua_Integer)mag;
      }
      lua_pushinteger(d->L, v);
      return 1;
    }
  }
  return dec_float(d, s, (size_t)(p - s));
}

static int hex4(const dec *d, const unsigned char *p, unsigned *out) {
  unsigned v = 0;
  if (d->end - p < 4) {
    return 0;
  }
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v |= c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v |= c - 'A' + 10;
    } else {
      return 0;
    }
  }
  *out = v;
  return 1;
}

static void put_utf8(sbuf *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  sbuf_put(b, u, n);
}

/* At '"'. Pushes the string. */
static int dec_string(dec *d) {
  const unsigned char *open = d->p, *p = d->p + 1, *end = d->end;
  sbuf *b = &d->scratch;

  /* Most strings are plain ASCII without escapes: no copy needed. */
  const unsigned char *q = p;
  while (q < end && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') {
    q++;
  }
  if (q < end && *q == '"') {
    lua_pushlstring(d->L, (const char *)p, (size_t)(q - p));
    d->p = q + 1;
    return 1;
  }

  b->len = 0;
  for (;;) {
    const unsigned char *run = p;
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
      p++;
    }
    sbuf_put(b, run, (size_t)(p - run));
    if (p == end) {
      d->err = "unterminated string";
      d->err_at = open;
      return 0;
    }
    unsigned c = *p;
    if (c == '"') {
      lua_pushlstring(d->L, b->p, b->len);
      d->p = p + 1;
      return 1;
    }
    if (c < 0x20) {
      return dec_fail(d, p, "unescaped control character in string");
    }
    if (c >= 0x80) {
      size_t n = utf8_len(p, end);
      if (n == 0) {
        return dec_fail(d, p, "invalid UTF-8 in string");
      }
      sbuf_put(b, p, n);
      p += n;
      continue;
    }
    /* A backslash. */
    const unsigned char *esc = p++;
    if (p == end) {
      d->err = "unterminated string";
      d->err_at = open;
      return 0;
    }
    switch (*p) {
    case '"':
    case '\\':
    case '/':
      sbuf_putc(b, (char)*p);
      break;
    case 'b':
      sbuf_putc(b, '\b');
      break;
    case 'f':
      sbuf_putc(b, '\f');
      break;
    case 'n':
      sbuf_putc(b, '\n');
      break;
    case 'r':
      sbuf_putc(b, '\r');
      break;
    case 't':
      sbuf_putc(b, '\t');
      break;
    case 'u': {
      unsigned cp, lo;
      if (!hex4(d, p + 1, &cp)) {
        return dec_fail(d, esc, "invalid \\u escape");
      }
      p += 4;
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return dec_fail(d, esc, "unpaired surrogate in \\u escape");
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 7 || p[1] != '\\' || p[2] != 'u' ||
            !hex4(d, p + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
          return dec_fail(d, esc, "unpaired surrogate in \\u escape");
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
      }
      put_utf8(b, cp);
      break;
    }
    default:
      return dec_fail(d, esc, "invalid escape in string");
    }
    p++;
  }
}

static int dec_literal(dec *d, const char *word, size_t len) {
  if ((size_t)(d->end - d->p) < len || memcmp(d->p, word, len) != 0) {
    /* A cut-off literal ("tru") is reported as the end of the input. */
    size_t avail = (size_t)(d->end - d->p);
    if (avail < len && memcmp(d->p, word, avail) == 0) {
      return dec_fail(d, d->end, "");
    }
    return dec_fail(d, d->p, "expected a value");
  }
  d->p += len;
  return 1;
}

static int dec_enter(dec *d) {
  if (++d->depth > PM_JSON_DECODE_MAX_DEPTH) {
    return dec_fail(d, d->p, "nesting deeper than 64");
  }
  if (!lua_checkstack(d->L, LEVEL_SLOTS)) {
    return dec_fail(d, d->p, "Lua stack exhausted");
  }
  return 1;
}

/* At '['. Pushes the table. */
static int dec_array(dec *d) {
  lua_Integer n = 0;
  if (!dec_enter(d)) {
    return 0;
  }
  d->p++;
  lua_newtable(d->L);
  skip_ws(d);
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    d->depth--;
    return 1;
  }
  for (;;) {
    skip_ws(d);
    if (!dec_value(d)) {
      return 0;
    }
    lua_rawseti(d->L, -2, ++n);
    skip_ws(d);
    if (d->p < d->end && *d->p == ',') {
      d->p++;
    } else if (d->p < d->end && *d->p == ']') {
      d->p++;
      break;
    } else {
      return dec_fail(d, d->p, "expected ',' or ']'");
    }
  }
  d->depth--;
  return 1;
}

/* At '{'. Pushes the table. */
static int dec_object(dec *d) {
  if (!dec_enter(d)) {
    return 0;
  }
  d->p++;
  lua_newtable(d->L);
  skip_ws(d);
  if (d->p < d->end && *d->p == '}') {
    d->p++;
    d->depth--;
    return 1;
  }
  for (;;) {
    skip_ws(d);
    if (d->p >= d->end || *d->p != '"') {
      return dec_fail(d, d->p, "expected a string key");
    }
    if (!dec_string(d)) {
      return 0;
    }
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':') {
      return dec_fail(d, d->p, "expected ':'");
    }
    d->p++;
    skip_ws(d);
    if (!dec_value(d)) {
      return 0;
    }
    lua_rawset(d->L, -3); /* a later duplicate key overwrites */
    skip_ws(d);
    if (d->p < d->end && *d->p == ',') {
      d->p++;
    } else if (d->p < d->end && *d->p == '}') {
      d->p++;
      break;
    } else {
      return dec_fail(d, d->p, "expected ',' or '}'");
    }
  }
  d->depth--;
  return 1;
}

/* At the first byte of a value (whitespace skipped). Pushes the value. */
static int dec_value(dec *d) {
  if (d->p >= d->end) {
    return dec_fail(d, d->p, "");
  }
  switch (*d->p) {
  case '{':
    return dec_object(d);
  case '[':
    return dec_array(d);
  case '"':
    return dec_string(d);
  case 't':
    if (!dec_literal(d, "true", 4)) {
      return 0;
    }
    lua_pushboolean(d->L, 1);
    return 1;
  case 'f':
    if (!dec_literal(d, "false", 5)) {
      return 0;
    }
    lua_pushboolean(d->L, 0);
    return 1;
  case 'n':
    if (!dec_literal(d, "null", 4)) {
      return 0;
    }
    pm_json_push_null(d->L);
    return 1;
  default:
    if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) {
      return dec_number(d);
    }
    return dec_fail(d, d->p, "expected a value");
  }
}

int pm_json_decode(lua_State *L, const char *s, size_t len) {
  dec d;
  int ok, base;
  static const unsigned char empty[1] = {0};
  luaL_checkstack(L, LEVEL_SLOTS, "JSON decoder");
  base = lua_gettop(L);
  d.L = L;
  d.start = s ? (const unsigned char *)s : empty;
  d.p = d.start;
  d.end = d.start + (s ? len : 0);
  d.depth = 0;
  d.err = NULL;
  d.err_at = NULL;
  sbuf_init(&d.scratch, L, 64);
  skip_ws(&d);
  ok = dec_value(&d);
  if (ok) {
    skip_ws(&d);
    if (d.p < d.end) {
      ok = dec_fail(&d, d.p, "unexpected data after the value");
    }
  }
  if (ok) {
    lua_replace(L, base + 1); /* over the scratch buffer */
  } else {
    lua_settop(L, base);
    lua_pushfstring(L, "invalid JSON at byte %I: %s",
                    (lua_Integer)(d.err_at - d.start), d.err);
  }
  lua_settop(L, base + 1);
  return ok;
}
