/* Runs a test case again with a pool (peermesh/idpool.h): the module
 * under test reads the `pool` variable this defines (NULL: no pool), and
 * the pool must hold nothing once the case has freed what it made. */
#ifndef PM_TEST_POOLED_H
#define PM_TEST_POOLED_H

#include "peermesh/idpool.h"
#include "test.h"

static pm_idpool *pool;

static inline void pooled(void (*fn)(void)) {
  pool = pm_idpool_new(NULL);
  CHECK(pool != NULL);
  if (!pool)
    return;
  fn();
  CHECK_INT(pm_idpool_count(pool), 0);
  pm_idpool_free(pool);
  pool = NULL;
}

#endif
