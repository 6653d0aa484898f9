/* Seeded pseudo-random numbers for the simulator.
 *
 * Every random choice of a run comes from generators seeded from the run's
 * seed, never from the system, so a seed replays a run bit for bit.
 * splitmix64 seeds and serves the per-node `random` callback (8 bytes of state
 * per node); xoshiro256** serves the simulator's own streams. */
#ifndef SIM_RNG_H
#define SIM_RNG_H

#include <stdint.h>

static inline uint64_t sim_splitmix(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct sim_rng {
  uint64_t s[4];
} sim_rng;

static inline void sim_rng_seed(sim_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = sim_splitmix(&seed);
}

static inline uint64_t sim_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static inline uint64_t sim_rng_next(sim_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = sim_rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = sim_rotl(s[3], 45);
  return result;
}

/* Uniform in [0, bound), 0 when bound is 0 (Lemire's multiply-shift; the
 * bias is below 2^-32 for the bounds used here). */
static inline uint64_t sim_rng_below(sim_rng *r, uint64_t bound) {
  if (bound == 0)
    return 0;
  return (uint64_t)(((unsigned __int128)sim_rng_next(r) * bound) >> 64);
}

/* Uniform in [0, 1). */
static inline double sim_rng_unit(sim_rng *r) {
  return (double)(sim_rng_next(r) >> 11) * 0x1.0p-53;
}

#endif
