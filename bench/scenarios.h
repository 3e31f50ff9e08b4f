/* The registry of connrep-bench scenarios: one extern per scenario file.
 * Planned next: ingest, lookup, mixed, flood, feed, plan. */
#ifndef BENCH_SCENARIOS_H
#define BENCH_SCENARIOS_H

#include "bench.h"

/* scenario_table.c: the connector table against DRAM and a rwlock baseline. */
extern const bench_scenario bench_scenario_table;

#endif
