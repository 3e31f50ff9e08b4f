/* Running every scenario and reading the results back: shared by `all`
 * (scenario_all.c) and `plan` (scenario_plan.c).
 *
 * Each scenario runs as a child process of this executable with --json
 * --quiet, so it keeps its own watchdog and cleanup (a daemon it started,
 * Redis) and a failure in one does not take the others down. The results
 * are one JSON object with a member per run ("table_1e4", "lookup", ...);
 * a run that failed has {"error": "..."} instead.
 */
#ifndef BENCH_ALL_H
#define BENCH_ALL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Runs every scenario (briefly when quick) and returns the object of their
 * results (the caller owns it), with *failed the number of runs that
 * failed; NULL when out of memory. Progress on stderr. */
json_t *bench_all_run(bool quick, uint64_t seed, unsigned *failed);

/* The number at a dotted path ("lookup.ipc.p50_us"); NaN when absent or
 * not a number. */
double bench_jnum(const json_t *root, const char *path);

#endif
