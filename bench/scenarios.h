/* The registry of connrep-bench scenarios: one extern per scenario file.
 * Planned next: mixed, flood, plan. */
#ifndef BENCH_SCENARIOS_H
#define BENCH_SCENARIOS_H

#include "bench.h"

/* scenario_table.c: the connector table against DRAM and a rwlock baseline. */
extern const bench_scenario bench_scenario_table;

/* scenario_ingest.c: feed frames through a real connrepd vs raw PUSH/PULL. */
extern const bench_scenario bench_scenario_ingest;

/* scenario_lookup.c: lookups over ipc, tcp and shm vs a raw DEALER/ROUTER
 * echo and a DRAM miss. */
extern const bench_scenario bench_scenario_lookup;

/* scenario_feed.c: a verdict generator to point at any engine. */
extern const bench_scenario bench_scenario_feed;

#endif
