/* The DRAM probe: a pointer chase through one random cyclic permutation of
 * the cache lines of a buffer much larger than the last-level cache, so
 * nearly every step is a cache miss that cannot overlap with the next (the
 * next address is the loaded value). Its per-step latency is what "one
 * DRAM miss" means in the performance budget, measured in the same run as
 * the lookups it is compared with.
 */
#ifndef BENCH_PROBE_H
#define BENCH_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

typedef struct bench_probe {
    uint64_t *buf; /* one 64-byte line per step; word 0 holds the next line */
    size_t bytes;  /* a power of two */
    uint64_t lines;
    bool hugepages; /* whether THP was requested for the buffer */
} bench_probe;

/* Maps a buffer of the smallest power of two >= min_bytes and links its
 * lines into one cycle in a seeded pseudo-random order. Returns false (errno
 * set) if the memory cannot be mapped. */
bool bench_probe_build(bench_probe *p, size_t min_bytes, bool hugepages, uint64_t seed);

void bench_probe_free(bench_probe *p);

/* Chases for about `seconds`. Alternates two ways of timing the same chain:
 * blocks where each step is timed on its own (the clock overhead, in ns,
 * subtracted; into *single, in picoseconds), and blocks timed as a whole
 * whose per-step mean goes into *batched (picoseconds, one value per block).
 * Returns the number of steps taken. */
uint64_t bench_probe_run(const bench_probe *p, double seconds, double overhead_ns,
                         bench_hist *single, bench_hist *batched);

#endif
