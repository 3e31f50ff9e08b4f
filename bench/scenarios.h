/* The registry of connrep-bench scenarios: one extern per scenario file. */
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

/* scenario_mixed.c: a relay fleet at a target lookup rate while the feed
 * runs, open loop, Zipf popularity. */
extern const bench_scenario bench_scenario_mixed;

/* scenario_flood.c: a unique-id flood at 10x max_connectors. */
extern const bench_scenario bench_scenario_flood;

/* scenario_all.c: every scenario briefly or fully; report.md and plots. */
extern const bench_scenario bench_scenario_all;

/* scenario_plan.c: engines, cores and memory from measured figures. */
extern const bench_scenario bench_scenario_plan;

#endif
