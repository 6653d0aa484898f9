/* A background thread, at the lowest priority (SCHED_IDLE), that faults in
 * the pages of malloc's heaps before the simulation writes them.
 *
 * In a virtual machine a fresh page is dear: the guest zeroes it and the
 * host backs it (about 3 s per GB here, a third of a 10,000-node run's CPU
 * time), and the thread that touches it first waits, often holding a
 * malloc arena's lock or keeping the others at the window's barrier.
 * MADV_POPULATE_WRITE does the same work without writing anything, so it
 * may run over memory malloc is using; at SCHED_IDLE it runs only when a
 * core would otherwise idle. It changes no result of the run. */
#ifndef PM_SIM_PREFAULT_H
#define PM_SIM_PREFAULT_H

#include <stdint.h>

void sim_prefault_start(void);
/* Stops it; tells how much it populated and its CPU time. */
void sim_prefault_stop(uint64_t *bytes, double *cpu_s);

#endif
