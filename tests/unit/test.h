/* A minimal unit-test harness: one executable per module, each test a
 * function. A failed check reports file:line and the test continues with the
 * next function; the process exits non-zero if any check failed. */
#ifndef PM_TEST_H
#define PM_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pm_test_failures;
static int pm_test_current_failed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      pm_test_current_failed = 1;                                              \
    }                                                                          \
  } while (0)

#define CHECK_INT(a, b)                                                        \
  do {                                                                         \
    long long pm_a_ = (long long)(a), pm_b_ = (long long)(b);                  \
    if (pm_a_ != pm_b_) {                                                      \
      fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,    \
              __LINE__, #a, pm_a_, #b, pm_b_);                                 \
      pm_test_current_failed = 1;                                              \
    }                                                                          \
  } while (0)

#define CHECK_STR(a, b)                                                        \
  do {                                                                         \
    const char *pm_a_ = (a), *pm_b_ = (b);                                     \
    if (!pm_a_ || !pm_b_ || strcmp(pm_a_, pm_b_) != 0) {                       \
      fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__,      \
              __LINE__, #a, pm_a_ ? pm_a_ : "(null)",                          \
              pm_b_ ? pm_b_ : "(null)");                                       \
      pm_test_current_failed = 1;                                              \
    }                                                                          \
  } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

/* An allocator (a pm_allocator's function, with a `pm_test_budget` as its
 * ud) that fails once a budget of successful allocations is spent: tests
 * run an operation with budgets 0, 1, 2, ... to fail each allocation. */
typedef struct pm_test_budget {
  long left;
} pm_test_budget;

static inline void *pm_test_budget_realloc(void *ud, void *ptr, size_t size) {
  pm_test_budget *b = ud;
  if (size == 0) {
    free(ptr);
    return NULL;
  }
  if (b->left <= 0)
    return NULL;
  b->left--;
  return realloc(ptr, size);
}

typedef void (*pm_test_fn)(void);
struct pm_test_case {
  const char *name;
  pm_test_fn fn;
};

#define TEST_CASE(fn)                                                          \
  { #fn, fn }

static inline int pm_test_run(const struct pm_test_case *cases, size_t n) {
  int passed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    pm_test_current_failed = 0;
    cases[i].fn();
    if (pm_test_current_failed) {
      failed++;
      fprintf(stderr, "FAIL %s\n", cases[i].name);
    } else {
      passed++;
    }
  }
  pm_test_failures = failed;
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                         \
  int main(void) {                                                             \
    static const struct pm_test_case cases[] = {__VA_ARGS__};                  \
    return pm_test_run(cases, sizeof cases / sizeof cases[0]);                 \
  }

#endif
