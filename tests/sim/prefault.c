/* Faults in the process's heap memory ahead of use, on CPU time nobody
 * else wants. See prefault.h. */
#define _GNU_SOURCE
#include "prefault.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* Sanitizers reserve terabytes of anonymous memory for themselves, and
 * allocate from their own: nothing here for them. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PM_SIM_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PM_SIM_SANITIZED 1
#endif

#if defined(MADV_POPULATE_WRITE) && !defined(PM_SIM_SANITIZED)

/* The anonymous writable mappings seen, and how far each is populated. A
 * mapping that moved or grew counts as new from where it was done. */
#define MAX_REGIONS 4096
#define STEP (2u << 20) /* populate this much, then look at the stop flag */
#define IDLE_NS 20000000L
/* An unnamed mapping this large is no malloc heap (those span 64 MiB; a
 * big block of its own is used whole by its owner anyway). */
#define MAX_MAPPING (1ull << 30)

typedef struct region {
  uintptr_t start, done;
} region;

static pthread_t thread;
static atomic_int stop;
static int running;
static region regions[MAX_REGIONS];
static size_t nregions;
static uint64_t populated; /* bytes */
static double cpu_s;       /* the thread's CPU time */

static region *find_region(uintptr_t start) {
  for (size_t i = 0; i < nregions; i++)
    if (regions[i].start == start)
      return &regions[i];
  if (nregions == MAX_REGIONS)
    return NULL;
  regions[nregions].start = start;
  regions[nregions].done = start;
  return &regions[nregions++];
}

/* One pass over /proc/self/maps; returns the bytes populated. */
static size_t pass(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return 0;
  size_t total = 0;
  char line[512];
  while (!atomic_load_explicit(&stop, memory_order_relaxed) &&
         fgets(line, sizeof line, f)) {
    unsigned long lo, hi, off;
    char perms[8], path[256] = "";
    if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %255s", &lo, &hi, perms, &off,
               path) < 4)
      continue;
    /* Anonymous memory malloc hands out: its heaps and [heap]; not stacks,
     * files, or the kernel's. */
    if (strcmp(perms, "rw-p") != 0 || (path[0] && strcmp(path, "[heap]")) ||
        (!path[0] && hi - lo > MAX_MAPPING))
      continue;
    region *r = find_region(lo);
    if (!r)
      continue;
    if (r->done < lo || r->done > hi)
      r->done = lo;
    while (r->done < hi && !atomic_load_explicit(&stop, memory_order_relaxed)) {
      uintptr_t n = hi - r->done < STEP ? hi - r->done : STEP;
      if (madvise((void *)r->done, n, MADV_POPULATE_WRITE) != 0) {
        r->done = hi; /* gone or not populatable: leave it */
        break;
      }
      r->done += n;
      total += n;
      populated += n;
    }
  }
  fclose(f);
  return total;
}

static void *run(void *arg) {
  (void)arg;
  struct sched_param sp = {0};
  pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    if (pass() == 0) {
      struct timespec ts = {0, IDLE_NS};
      nanosleep(&ts, NULL);
    }
  }
  struct timespec t;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0)
    cpu_s = (double)t.tv_sec + (double)t.tv_nsec / 1e9;
  return NULL;
}

void sim_prefault_start(void) {
  if (running)
    return;
  atomic_store(&stop, 0);
  populated = 0;
  cpu_s = 0;
  running = pthread_create(&thread, NULL, run, NULL) == 0;
}

void sim_prefault_stop(uint64_t *bytes, double *cpu) {
  if (running) {
    atomic_store(&stop, 1);
    pthread_join(thread, NULL);
    running = 0;
  }
  *bytes = populated;
  *cpu = cpu_s;
}

#else

void sim_prefault_start(void) {}
void sim_prefault_stop(uint64_t *bytes, double *cpu) {
  *bytes = 0;
  *cpu = 0;
}

#endif
