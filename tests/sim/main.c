/* peermesh-sim: command line.
 *
 * Prints one JSON object on stdout; progress (with -v) and failed
 * expectations on stderr. Exit status: 0 ok, 1 an expectation or the
 * repeat check failed, 2 bad arguments. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

#define MAX_EXPECT 32

typedef struct expect {
  char name[64];
  char op[3];
  double value;
  const char *text;
} expect;

static void usage(FILE *f) {
  fputs(
      "usage: peermesh-sim [options]\n"
      "Drives many peermesh node cores in one process on a virtual clock and\n"
      "prints one JSON object of metrics. The same seed gives the same run.\n"
      "\n"
      "  --scenario NAME        steady | kill30 | partition | churn | lossy |\n"
      "                         restart (default steady)\n"
      "  --nodes N              nodes at the start (default 1000)\n"
      "  --messages M           messages sent in the message phase (1000)\n"
      "  --seed S               64-bit seed (1)\n"
      "  --warmup-ms T          virtual ms before the first message (30000)\n"
      "  --interval-ms T        between two messages (20)\n"
      "  --window-ms T          a message must reach every node alive this\n"
      "                         long after it was sent (30000)\n"
      "  --drain-ms T           run on after the last window and fault "
      "(30000)\n"
      "  --startup-ms T         initial nodes start spread over this (1000)\n"
      "  --loss P               each transmission lost with probability P;\n"
      "                         lost ones are retransmitted after an RTO\n"
      "                         (0; lossy: 0.05)\n"
      "  --min N --ideal N --max N   neighbour counts (core defaults)\n"
      "  --lat-min-ms T --lat-max-ms T   one-way latency per link (20, 80)\n"
      "  --jitter-ms T          per-segment jitter (10)\n"
      "  --connect-timeout-ms T a dial nobody answers fails after this (3000)\n"
      "  --partition-ms T       how long the halves are cut (60000)\n"
      "  --churn-interval-ms T  one leave and one join every T (200)\n"
      "  --kill-fraction F      share of nodes kill30/restart crash (0.3)\n"
      "  --restart-after-ms T   restart: crashed nodes return T after the\n"
      "                         kill (half the message phase)\n"
      "  --cache-bytes B        core payload cache (core default)\n"
      "  --send-queue-limit B   core send queue limit; the simulator then\n"
      "                         reports drained bytes (0: unlimited)\n"
      "  --min-timer-ms T       when a node's deadline is still past after\n"
      "                         pm_node_handle_timeout, wake it again T ms\n"
      "                         later (1, as runtime/io does)\n"
      "  --partitions P         split the nodes into P partitions that run\n"
      "                         in parallel, window by window (1 below 2000\n"
      "                         nodes, else 16; at most 64). The run, and\n"
      "                         its trace hash, depend on P\n"
      "  --threads T            threads running the partitions (at most 16;\n"
      "                         default: the online CPUs, at most P). The\n"
      "                         run does not depend on T\n"
      "  --prefault on|off      fault memory in ahead of use, on idle CPU\n"
      "                         time (on from 2000 nodes); changes nothing\n"
      "                         but the wall time\n"
      "  --expect 'METRIC>=V'   also <= and ==; repeatable. Exit 1 when not "
      "met\n"
      "  --repeat-check         run twice (with partitions, the second time\n"
      "                         with another number of threads); exit 1 if\n"
      "                         the trace hashes differ\n"
      "  --trace-node N         print node N's traffic and events on stderr\n"
      "  -v, -vv                progress on stderr; -vv: every segment\n"
      "  --help                 this text\n",
      f);
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bad arguments: says why, shows the usage, and gives exit status 2. */
static int bad(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "peermesh-sim: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n\n");
  va_end(ap);
  usage(stderr);
  return 2;
}

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) &&                    \
    !defined(__SANITIZE_THREAD__)
/* A big run is bound by memory latency, TLB misses included, and glibc backs
 * malloc with transparent huge pages only when told so at start-up: about a
 * sixth less CPU time for 10,000 nodes, for a few per cent more memory. It
 * then advises huge pages for a thread's heap only as first mapped, and a
 * heap grew 128 KiB at a time: half the memory of a 10,000-node run came
 * in 4 KiB faults (1.2 M of them). With top_pad at 64 MiB, the most a
 * thread's heap spans, each heap is mapped whole at once: 13 k small
 * faults, 10.4 GB in huge pages, and 5-10 % less CPU time. So a run of
 * 2,000 nodes or more executes itself again, once, with both tunables
 * set. PEERMESH_SIM_HUGEPAGES=0 in the environment prevents it. */
static void reexec_with_huge_pages(char **argv, const sim_opts *o) {
  if (o->nodes < 2000 || getenv("PEERMESH_SIM_HUGEPAGES"))
    return;
  const char *old = getenv("GLIBC_TUNABLES");
  if (old && strstr(old, "glibc.malloc.hugetlb"))
    return;
  char tun[1024];
  int n = snprintf(tun, sizeof tun,
                   "%s%sglibc.malloc.hugetlb=1:glibc.malloc.top_pad=%u",
                   old ? old : "", old && *old ? ":" : "", 64u << 20);
  if (n < 0 || (size_t)n >= sizeof tun)
    return;
  if (setenv("GLIBC_TUNABLES", tun, 1) ||
      setenv("PEERMESH_SIM_HUGEPAGES", "1", 1))
    return;
  execv("/proc/self/exe", argv);
  /* Still here: run without them. */
}
#else
static void reexec_with_huge_pages(char **argv, const sim_opts *o) {
  (void)argv;
  (void)o;
}
#endif

static int parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s || *s == '-')
    return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end)
    return -1;
  *out = v;
  return 0;
}

static int parse_double(const char *s, double *out) {
  if (!s || !*s)
    return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v))
    return -1;
  *out = v;
  return 0;
}

static int parse_expect(const char *text, expect *e) {
  static const char *const ops[] = {">=", "<=", "=="};
  for (int i = 0; i < 3; i++) {
    const char *p = strstr(text, ops[i]);
    if (!p)
      continue;
    size_t n = (size_t)(p - text);
    if (n == 0 || n >= sizeof e->name)
      return -1;
    memcpy(e->name, text, n);
    e->name[n] = '\0';
    memcpy(e->op, ops[i], 3);
    e->text = text;
    if (!sim_metric_known(e->name))
      return -1;
    return parse_double(p + 2, &e->value);
  }
  return -1;
}

static int check(const expect *e, const sim_result *r) {
  double v;
  if (!sim_result_get(r, e->name, &v)) {
    fprintf(stderr,
            "peermesh-sim: expectation %s not met: scenario %s "
            "reports no %s\n",
            e->text, r->scenario, e->name);
    return 0;
  }
  int ok;
  if (strcmp(e->op, ">=") == 0)
    ok = v >= e->value - 1e-9;
  else if (strcmp(e->op, "<=") == 0)
    ok = v <= e->value + 1e-9;
  else
    ok = fabs(v - e->value) <= 1e-9;
  if (!ok)
    fprintf(stderr, "peermesh-sim: expectation %s not met: %s = %.6g\n",
            e->text, e->name, v);
  return ok;
}

int main(int argc, char **argv) {
  sim_opts o;
  memset(&o, 0, sizeof o);
  o.scenario_name = "steady";
  o.nodes = 1000;
  o.messages = 1000;
  o.seed = 1;
  o.warmup_ms = 30000;
  o.interval_ms = 20;
  o.window_ms = 30000;
  o.drain_ms = 30000;
  o.startup_ms = 1000;
  o.loss = -1;
  o.lat_min_ms = 20;
  o.lat_max_ms = 80;
  o.jitter_ms = 10;
  o.connect_timeout_ms = 3000;
  o.partition_ms = 60000;
  o.churn_interval_ms = 200;
  o.kill_fraction = 0.3;
  o.restart_after_ms = SIM_NEVER;
  o.min_timer_ms = 1;
  o.trace_node = SIM_NONE;
  o.prefault = -1;
  expect ex[MAX_EXPECT];
  int nex = 0, repeat = 0;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "-v") == 0 || strcmp(a, "-vv") == 0) {
      o.verbose = a[2] ? 2 : 1;
      continue;
    }
    if (strcmp(a, "--repeat-check") == 0) {
      repeat = 1;
      continue;
    }
    if (strncmp(a, "--", 2) != 0)
      return bad("unexpected argument '%s'", a);
    if (i + 1 >= argc)
      return bad("option %s needs a value", a);
    const char *v = argv[++i];
    uint64_t u = 0;
    double d = 0;
    int rc = 0;
    if (strcmp(a, "--scenario") == 0) {
      o.scenario_name = v;
    } else if (strcmp(a, "--prefault") == 0) {
      if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
        return bad("bad value for --prefault (want on or off)");
      o.prefault = v[1] == 'n';
    } else if (strcmp(a, "--expect") == 0) {
      if (nex == MAX_EXPECT)
        return bad("too many --expect (at most 32), at '%s'", v);
      if (parse_expect(v, &ex[nex]))
        return bad("bad --expect '%s' (want METRIC>=V, <= or ==, with a "
                   "metric of the report)",
                   v);
      nex++;
    } else if (strcmp(a, "--loss") == 0 || strcmp(a, "--kill-fraction") == 0) {
      rc = parse_double(v, &d);
      if (rc || d < 0 || d >= 1)
        return bad("bad value for %s (want 0 <= P < 1)", a);
      if (a[2] == 'l')
        o.loss = d;
      else
        o.kill_fraction = d;
    } else {
      struct {
        const char *name;
        uint64_t *u64;
        uint32_t *u32;
        unsigned *uns;
        size_t *sz;
        uint64_t min, max;
      } opts[] = {
          {"--nodes", NULL, &o.nodes, NULL, NULL, 1, 1u << 22},
          {"--messages", NULL, &o.messages, NULL, NULL, 0, 1u << 24},
          {"--seed", &o.seed, NULL, NULL, NULL, 0, UINT64_MAX},
          {"--warmup-ms", &o.warmup_ms, NULL, NULL, NULL, 0, 1ull << 40},
          {"--interval-ms", &o.interval_ms, NULL, NULL, NULL, 1, 1ull << 32},
          {"--window-ms", &o.window_ms, NULL, NULL, NULL, 0, 1ull << 40},
          {"--drain-ms", &o.drain_ms, NULL, NULL, NULL, 0, 1ull << 40},
          {"--startup-ms", &o.startup_ms, NULL, NULL, NULL, 0, 1ull << 40},
          {"--min", NULL, NULL, &o.min_n, NULL, 1, 64},
          {"--ideal", NULL, NULL, &o.ideal_n, NULL, 1, 64},
          {"--max", NULL, NULL, &o.max_n, NULL, 1, 64},
          {"--lat-min-ms", NULL, &o.lat_min_ms, NULL, NULL, 0, 600000},
          {"--lat-max-ms", NULL, &o.lat_max_ms, NULL, NULL, 0, 600000},
          {"--jitter-ms", NULL, &o.jitter_ms, NULL, NULL, 0, 600000},
          {"--connect-timeout-ms", &o.connect_timeout_ms, NULL, NULL, NULL, 1,
           1ull << 32},
          {"--partition-ms", &o.partition_ms, NULL, NULL, NULL, 0, 1ull << 40},
          {"--churn-interval-ms", &o.churn_interval_ms, NULL, NULL, NULL, 1,
           1ull << 40},
          {"--restart-after-ms", &o.restart_after_ms, NULL, NULL, NULL, 0,
           1ull << 40},
          {"--cache-bytes", NULL, NULL, NULL, &o.cache_bytes, 0, 1ull << 40},
          {"--min-timer-ms", &o.min_timer_ms, NULL, NULL, NULL, 1, 1ull << 32},
          {"--trace-node", NULL, &o.trace_node, NULL, NULL, 0, 1u << 30},
          {"--send-queue-limit", NULL, NULL, NULL, &o.send_queue_limit, 0,
           1ull << 40},
          {"--partitions", NULL, &o.partitions, NULL, NULL, 1, SIM_MAX_PARTS},
          {"--threads", NULL, &o.threads, NULL, NULL, 1, SIM_MAX_THREADS},
      };
      size_t k = 0, nopts = sizeof opts / sizeof opts[0];
      while (k < nopts && strcmp(a, opts[k].name) != 0)
        k++;
      if (k == nopts)
        return bad("unknown option '%s'", a);
      if (parse_u64(v, &u) || u < opts[k].min || u > opts[k].max)
        return bad("bad value for %s", a);
      if (opts[k].u64)
        *opts[k].u64 = u;
      else if (opts[k].u32)
        *opts[k].u32 = (uint32_t)u;
      else if (opts[k].uns)
        *opts[k].uns = (unsigned)u;
      else
        *opts[k].sz = (size_t)u;
    }
  }
  o.scenario = sim_scenario_parse(o.scenario_name);
  if (o.scenario < 0)
    return bad("unknown scenario '%s'", o.scenario_name);
  if (o.lat_min_ms > o.lat_max_ms)
    return bad("--lat-min-ms is above --lat-max-ms");
  /* Partitions look ahead by the smallest latency: it must be positive. */
  if (o.partitions > 1 && o.lat_min_ms == 0)
    return bad("--partitions above 1 needs --lat-min-ms of at least 1");
  if (o.partitions == 0)
    o.partitions = o.nodes >= 2000 && o.lat_min_ms > 0 ? 16 : 1;
  if (o.prefault < 0)
    o.prefault = o.nodes >= 2000;
  if (o.threads == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = cpus < 1                 ? 1
                : cpus > SIM_MAX_THREADS ? SIM_MAX_THREADS
                                         : (uint32_t)cpus;
  }
  if (o.threads > o.partitions)
    o.threads = o.partitions;
  unsigned mn = o.min_n ? o.min_n : 2, id = o.ideal_n ? o.ideal_n : 3,
           mx = o.max_n ? o.max_n : 7;
  if (mn > id || id > mx)
    return bad("neighbour counts must satisfy min <= ideal <= max");

  reexec_with_huge_pages(argv, &o);

  sim_result r1, r2;
  if (sim_run(&o, &r1, repeat))
    return 2;
  int fail = 0;
  if (repeat) {
    /* With partitions, the second run uses another number of threads: the
     * run must not depend on it. */
    sim_opts o2 = o;
    if (o.partitions > 1)
      o2.threads = o.threads > 1 ? 1 : 2;
    if (sim_run(&o2, &r2, 0))
      return 2;
    sim_result_print(&r1, &r2.trace_hash);
    if (r1.trace_hash != r2.trace_hash) {
      fprintf(stderr,
              "peermesh-sim: repeat check failed: trace_hash %016llx then "
              "%016llx\n",
              (unsigned long long)r1.trace_hash,
              (unsigned long long)r2.trace_hash);
      fail = 1;
    } else if (o.partitions > 1) {
      fprintf(stderr,
              "peermesh-sim: repeat check passed: %016llx twice (%u, then "
              "%u threads)\n",
              (unsigned long long)r1.trace_hash, o.threads,
              o.threads > 1 ? 1u : 2u);
    } else {
      fprintf(stderr, "peermesh-sim: repeat check passed: %016llx twice\n",
              (unsigned long long)r1.trace_hash);
    }
  } else {
    sim_result_print(&r1, NULL);
  }
  fflush(stdout);
  for (int i = 0; i < nex; i++)
    if (!check(&ex[i], &r1))
      fail = 1;
  return fail;
}
