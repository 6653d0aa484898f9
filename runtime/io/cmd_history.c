#include "cmd_history.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "paths.h"

#define PROG "peermesh history"

static const char usage_line[] =
    "usage: peermesh history [--data-dir DIR] [--mesh NAME] [--limit N] "
    "[--json]\n";

static void print_help(FILE *out) {
  fputs(usage_line, out);
  fputs("\n"
        "Prints the saved message history, oldest first.\n"
        "\n"
        "  --data-dir DIR  read DIR/history.db (default: "
        "$XDG_DATA_HOME/peermesh)\n"
        "  --mesh NAME     only messages of mesh NAME\n"
        "  --limit N       only the last N messages\n"
        "  --json          one JSON object per line\n"
        "  -h, --help      show this help\n",
        out);
}

static int usage_error(FILE *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Says what was wrong and how to call the command; returns exit code 2. */
static int usage_error(FILE *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs(PROG ": ", err);
  vfprintf(err, fmt, ap);
  va_end(ap);
  fputc('\n', err);
  fputs(usage_line, err);
  return 2;
}

/* ---- safe output -------------------------------------------------------- */

/* Decodes one well-formed UTF-8 sequence from s[0..n): returns its length and
 * sets *cp, or 0 when s[0] does not start one (stray continuation byte,
 * overlong form, surrogate, beyond U+10FFFF, cut short). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  size_t len;
  uint32_t v, min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if (c >= 0xc2 && c <= 0xdf) {
    len = 2, v = c & 0x1fu, min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3, v = c & 0x0fu, min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, v = c & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    v = (v << 6) | (s[i] & 0x3fu);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  *cp = v;
  return len;
}

/* Code points a terminal may act on instead of showing: C0 and C1 controls,
 * DEL, and the bidirectional embeddings, overrides and isolates that can make
 * text display in a different order than it reads. */
static int unsafe_cp(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* Prints text for a human, each unsafe character or invalid byte as '?'. */
static void put_text(FILE *out, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  size_t n = strlen(str);
  while (n > 0) {
    uint32_t cp;
    size_t len = utf8_decode(s, n, &cp);
    if (len == 0 || unsafe_cp(cp)) {
      fputc('?', out);
      len = len ? len : 1;
    } else {
      fwrite(s, 1, len, out);
    }
    s += len;
    n -= len;
  }
}

/* Prints a JSON string literal; the output is printable ASCII plus valid
 * UTF-8 without unsafe characters. Invalid bytes become U+FFFD. */
static void put_json_str(FILE *out, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  size_t n = strlen(str);
  fputc('"', out);
  while (n > 0) {
    uint32_t cp;
    size_t len = utf8_decode(s, n, &cp);
    if (len == 0) {
      fputs("\\ufffd", out);
      len = 1;
    } else if (cp == '"' || cp == '\\') {
      fputc('\\', out);
      fputc((int)cp, out);
    } else if (cp == '\n') {
      fputs("\\n", out);
    } else if (cp == '\t') {
      fputs("\\t", out);
    } else if (cp == '\r') {
      fputs("\\r", out);
    } else if (unsafe_cp(cp)) {
      fprintf(out, "\\u%04" PRIx32, cp);
    } else {
      fwrite(s, 1, len, out);
    }
    s += len;
    n -= len;
  }
  fputc('"', out);
}

/* Prints a stored JSON body so that it stays the same JSON value and is safe
 * for a terminal. The database only holds bodies that pass json_valid, which
 * refuses raw C0 characters inside strings: raw tab, LF and CR can only be
 * whitespace between tokens (written as spaces, so one object stays on one
 * line), and DEL, C1, bidi controls or invalid bytes can only sit inside
 * strings, where a \u escape means the same character. */
static void put_json_body(FILE *out, const char *body, size_t n) {
  const unsigned char *s = (const unsigned char *)body;
  while (n > 0) {
    uint32_t cp;
    size_t len = utf8_decode(s, n, &cp);
    if (len == 0) {
      fputs("\\ufffd", out);
      len = 1;
    } else if (cp < 0x20) {
      fputc(' ', out);
    } else if (unsafe_cp(cp)) {
      fprintf(out, "\\u%04" PRIx32, cp);
    } else {
      fwrite(s, 1, len, out);
    }
    s += len;
    n -= len;
  }
}

static void put_hex(FILE *out, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    fputc(digits[p[i] >> 4], out);
    fputc(digits[p[i] & 15], out);
  }
}

/* "YYYY-MM-DD HH:MM:SS" in local time; the raw milliseconds when the time
 * cannot be shown as a date (a hostile clock far outside any calendar). */
static void format_time(int64_t ms, char *buf, size_t n) {
  int64_t secs = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
  time_t t = (time_t)secs;
  struct tm tm;
  if ((int64_t)t == secs && localtime_r(&t, &tm) &&
      strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm) > 0)
    return;
  snprintf(buf, n, "@%" PRId64, ms);
}

/* ---- printing ----------------------------------------------------------- */

typedef struct printer {
  FILE *out;
  int json;
} printer;

static void print_json(FILE *out, const pm_history_entry *e) {
  fputs("{\"id\":\"", out);
  put_hex(out, e->msg_id, sizeof e->msg_id);
  fputs("\",\"mesh\":", out);
  put_json_str(out, e->mesh);
  fputs(",\"author\":\"", out);
  put_hex(out, e->author, sizeof e->author);
  fprintf(out,
          "\",\"seq\":%" PRIu64 ",\"time\":%" PRId64 ",\"received\":%" PRId64
          ",\"hops\":%" PRIu32 ",\"own\":%s,\"action\":",
          e->seq, e->time_ms, e->received_ms, e->hops,
          e->own ? "true" : "false");
  put_json_str(out, e->action);
  fputs(",\"body\":", out);
  put_json_body(out, e->body, e->body_len);
  fputs("}\n", out);
}

static void print_text(FILE *out, const pm_history_entry *e) {
  char when[64];
  format_time(e->time_ms, when, sizeof when);
  fputs(when, out);
  fputs(" [", out);
  put_text(out, e->mesh);
  fputs("] ", out);
  if (strcmp(e->action, "Chat") == 0 && e->member && e->text) {
    fputc('<', out);
    put_text(out, e->member);
    fputs("> ", out);
    put_text(out, e->text);
  } else if (strcmp(e->action, "Join") == 0 && e->member) {
    fputs("* ", out);
    put_text(out, e->member);
    fputs(" joined", out);
  } else if (strcmp(e->action, "Leave") == 0 && e->member) {
    fputs("* ", out);
    put_text(out, e->member);
    fputs(" left", out);
  } else {
    put_text(out, e->action);
    fputc(' ', out);
    put_json_body(out, e->body, e->body_len);
  }
  fputc('\n', out);
}

static int print_entry(void *ud, const pm_history_entry *e) {
  printer *p = ud;
  if (p->json)
    print_json(p->out, e);
  else
    print_text(p->out, e);
  return ferror(p->out) ? 1 : 0; /* stop at the first write error */
}

/* ---- options ------------------------------------------------------------ */

/* Mesh names are 1..PM_MESH_NAME_MAX bytes of [A-Za-z0-9._-] (node.h). */
static int valid_mesh(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > PM_MESH_NAME_MAX)
    return 0;
  return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789._-") == n;
}

/* A positive decimal integer with nothing around it. */
static int parse_limit(const char *s, int64_t *out) {
  if (*s < '0' || *s > '9')
    return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v <= 0)
    return -1;
  *out = (int64_t)v;
  return 0;
}

int pm_cmd_history(int argc, char **argv, FILE *out, FILE *err) {
  static const struct option longopts[] = {
      {"data-dir", required_argument, NULL, 'd'},
      {"mesh", required_argument, NULL, 'm'},
      {"limit", required_argument, NULL, 'n'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *data_dir = NULL;
  pm_history_filter filter = {NULL, 0};
  printer pr = {out, 0};

  /* "+": stop at the first non-option (no permuting); ":": report a missing
   * value as ':' so the message can say so. optind = 0 makes glibc start
   * over even after an earlier parse. */
  optind = 0;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
    const char *opt = argv[optind - 1];
    switch (c) {
    case 'd':
      if (!*optarg)
        return usage_error(err, "%s needs a directory", "--data-dir");
      data_dir = optarg;
      break;
    case 'm':
      if (!valid_mesh(optarg))
        return usage_error(err,
                           "invalid mesh name '%s' (1..63 of A-Z a-z 0-9 . _ "
                           "-)",
                           optarg);
      filter.mesh = optarg;
      break;
    case 'n':
      if (parse_limit(optarg, &filter.limit) != 0)
        return usage_error(err,
                           "--limit needs a positive whole number, not "
                           "'%s'",
                           optarg);
      break;
    case 'j':
      pr.json = 1;
      break;
    case 'h':
      print_help(out);
      return 0;
    case ':':
      return usage_error(err, "option '%s' needs a value", opt);
    default:
      if (optopt && strncmp(opt, "--", 2) != 0) {
        char shortopt[3] = {'-', (char)optopt, '\0'};
        return usage_error(err, "unknown option '%s'", shortopt);
      }
      return usage_error(err, "unknown or malformed option '%s'", opt);
    }
  }
  if (optind < argc)
    return usage_error(err, "unexpected argument '%s'", argv[optind]);

  char dir[4096], path[4096];
  if (pm_paths_data_dir(data_dir, dir, sizeof dir) != 0) {
    fputs(PROG ": cannot name the data directory (set HOME or use "
               "--data-dir)\n",
          err);
    return 1;
  }
  if (pm_paths_join(path, sizeof path, dir, "history.db") != 0) {
    fprintf(err, PROG ": data directory path is too long: %s\n", dir);
    return 1;
  }

  char msg[512];
  pm_db *db = NULL;
  int rc = pm_db_open(path, PM_DB_READONLY, &db, msg, sizeof msg);
  if (rc == PM_ERR_NOT_FOUND) {
    fprintf(err, "no history yet (%s does not exist)\n", path);
    return 0;
  }
  if (rc != 0) {
    fprintf(err, PROG ": %s\n", msg);
    return 1;
  }

  tzset();
  int status = 0;
  rc = pm_db_history_each(db, &filter, print_entry, &pr);
  if (rc != 0) {
    fprintf(err, PROG ": %s\n", pm_db_errmsg(db));
    status = 1;
  }
  pm_db_close(db);
  if (fflush(out) != 0 || ferror(out)) {
    fprintf(err, PROG ": cannot write the output: %s\n", strerror(errno));
    status = 1;
  }
  return status;
}
