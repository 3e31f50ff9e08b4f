/* connrep-bench: capacity planning for connrep.
 *
 *   connrep-bench SCENARIO [options]     run one scenario
 *   connrep-bench SCENARIO --help        that scenario's options
 *   connrep-bench --help                 the list of scenarios
 *
 * A new scenario is one file defining a `bench_scenario` (see bench.h) and
 * one line in the registry below; parsing, output and the watchdog are
 * shared so every scenario behaves the same from the command line.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "scenarios.h"

static const bench_scenario *const bench_scenarios[] = {
    &bench_scenario_table, &bench_scenario_ingest, &bench_scenario_lookup, &bench_scenario_feed,
    &bench_scenario_mixed, &bench_scenario_flood,  &bench_scenario_all,    &bench_scenario_plan,
};

#define BENCH_NSCENARIOS (sizeof(bench_scenarios) / sizeof(bench_scenarios[0]))

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: connrep-bench SCENARIO [options]\n"
               "       connrep-bench SCENARIO --help\n\n"
               "Capacity-planning benchmarks for connrep. Every scenario measures its\n"
               "baseline in the same run and reports medians and percentiles; --json\n"
               "prints one JSON object on stdout, progress goes to stderr.\n\n"
               "scenarios:\n");
    for (size_t i = 0; i < BENCH_NSCENARIOS; i++)
        fprintf(f, "  %-10s %s\n", bench_scenarios[i]->name, bench_scenarios[i]->summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        bench_usage(stderr);
        return BENCH_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        /* `connrep-bench help table` reads as naturally as `table --help`. */
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            for (size_t i = 0; i < BENCH_NSCENARIOS; i++) {
                if (strcmp(argv[2], bench_scenarios[i]->name) == 0) {
                    char *args[] = {argv[2], "--help", NULL};
                    return bench_scenarios[i]->run(2, args);
                }
            }
        }
        bench_usage(stdout);
        return BENCH_EXIT_OK;
    }
    for (size_t i = 0; i < BENCH_NSCENARIOS; i++) {
        if (strcmp(argv[1], bench_scenarios[i]->name) == 0)
            return bench_scenarios[i]->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "connrep-bench: unknown scenario '%s'\n\n", argv[1]);
    bench_usage(stderr);
    return BENCH_EXIT_USAGE;
}
