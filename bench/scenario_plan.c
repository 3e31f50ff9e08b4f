/* Scenario "plan": turns measured figures into a fleet recommendation for
 * N connectors, E verdict events/s and L lookups/s at a lookup p99 of X us.
 *
 * The figures come from a saved `connrep-bench all --json` output (--from)
 * or, without it, from a quick run of every scenario on this machine now.
 * The model, every assumption of which is printed with the answer:
 *
 *   - An engine holds its connectors in one table and applies its whole
 *     feed; one engine applies at most `headroom` x the measured ingest
 *     rate (`ingest.events_per_s`). When E is more than that, the
 *     connectors are split by tenant into independent groups, each with its
 *     own feed: groups = ceil(E / (headroom x ingest)).
 *   - Lookups over ZeroMQ: one engine serves at most `headroom` x the
 *     highest achieved rate of the `mixed` run whose p99 met X (open loop,
 *     with the feed running). Each group gets replicas (engines fed the same
 *     feed) until its share of L fits: replicas = ceil(L / groups / that).
 *     When no measured rate met X but the shared-memory path's p99 does,
 *     relays on the engine's host look up in shared memory, which scales
 *     with the relays' own cores, and one engine per group suffices.
 *   - Memory per engine: the table's bytes per slot (largest `table` run)
 *     x slots for its connectors (max_connectors is the next power of two),
 *     plus a fixed 64 MiB for the daemon (queues, journal buffers, stack).
 *   - Cores per engine: the measured machine's cores, which is what the
 *     measured rates used.
 */
#define _DEFAULT_SOURCE

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "bench.h"
#include "scenarios.h"

#define PLAN_DAEMON_BASE_BYTES (64.0 * 1024 * 1024)

typedef struct plan_cfg {
    bench_common c;
    uint64_t connectors;
    double events_per_s;
    double lookups_per_s;
    double p99_us;
    double headroom;
    const char *from;
} plan_cfg;

static const char plan_description[] =
    "Turns measured figures into a recommendation (engines, cores, memory) for\n"
    "N connectors, E events/s and L lookups/s at a lookup p99 of X us, and states\n"
    "its assumptions. The figures come from a saved `connrep-bench all --json`\n"
    "output (--from FILE.json) or, without it, from `all --quick` run on this\n"
    "machine now (about a minute).";

static uint64_t plan_pow2(uint64_t n)
{
    uint64_t p = 64;
    while (p < n)
        p <<= 1;
    return p;
}

/* The largest table run: bytes per slot and slots per connector. */
static bool plan_table(const json_t *all, double *bytes_per_slot, double *slots_per_capacity)
{
    double best = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)all, key, v)
    {
        if (strncmp(key, "table_", 6) != 0)
            continue;
        double n = bench_jnum(v, "connectors");
        double bytes = bench_jnum(v, "table_bytes"), slots = bench_jnum(v, "table_slots");
        if (isnan(n) || isnan(bytes) || isnan(slots) || slots <= 0 || n <= best)
            continue;
        best = n;
        *bytes_per_slot = bytes / slots;
        *slots_per_capacity = slots / n;
    }
    return best > 0;
}

/* The highest achieved lookup rate of the mixed steps whose p99 met X and
 * which kept up with what was offered (achieved >= 95 %); 0 if none. */
static double plan_lookup_cap(const json_t *all, double p99_us, double *floor_p99, bool *at_top)
{
    const json_t *steps = json_object_get(json_object_get(all, "mixed"), "steps");
    const json_t *off = json_object_get(steps, "offered_lookups_per_s");
    const json_t *ach = json_object_get(steps, "achieved_lookups_per_s");
    const json_t *p99 = json_object_get(steps, "p99_us");
    double cap = 0;
    *floor_p99 = INFINITY;
    *at_top = false;
    for (size_t i = 0; i < json_array_size(off); i++) {
        double o = json_number_value(json_array_get(off, i));
        double a = json_number_value(json_array_get(ach, i));
        double p = json_number_value(json_array_get(p99, i));
        if (p < *floor_p99)
            *floor_p99 = p;
        if (p <= p99_us && a >= 0.95 * o && a > cap) {
            cap = a;
            *at_top = i + 1 == json_array_size(off);
        }
    }
    return cap;
}

static int plan_main(int argc, char **argv)
{
    plan_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    bench_common_init(&cfg.c, 0);
    cfg.c.seconds_help = "unused (default -)";
    cfg.connectors = 1000000;
    cfg.events_per_s = 100000;
    cfg.lookups_per_s = 50000;
    cfg.p99_us = 1000;
    cfg.headroom = 0.6;
    const bench_opt opts[] = {
        {"connectors", BENCH_OPT_U64, &cfg.connectors, "N", "connectors to hold", 1, 1e10},
        {"events-per-s", BENCH_OPT_DOUBLE, &cfg.events_per_s, "E", "verdict events per second", 0,
         1e10},
        {"lookups-per-s", BENCH_OPT_DOUBLE, &cfg.lookups_per_s, "L", "lookups per second, fleet", 0,
         1e10},
        {"p99-us", BENCH_OPT_DOUBLE, &cfg.p99_us, "X", "lookup latency p99 to meet, us", 0.01, 1e7},
        {"headroom", BENCH_OPT_DOUBLE, &cfg.headroom, "H",
         "fraction of a measured maximum to plan for", 0.05, 1},
        {"from", BENCH_OPT_STR, &cfg.from, "FILE.json",
         "a saved `connrep-bench all --json` (default: run all --quick now)", 0, 0},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    if (!bench_opts_parse(&cfg.c, opts, nopts, argc, argv))
        return BENCH_EXIT_USAGE;
    if (cfg.c.help) {
        bench_opts_usage(stdout, "plan", plan_description, &cfg.c, opts, nopts);
        return BENCH_EXIT_OK;
    }
    bench_progress_quiet(cfg.c.quiet);
    bench_watchdog_arm(cfg.c.max_seconds);
    json_t *all = NULL;
    if (cfg.from != NULL) {
        json_error_t err;
        all = json_load_file(cfg.from, 0, &err);
        if (all == NULL) {
            fprintf(stderr, "connrep-bench plan: %s: %s (line %d)\n", cfg.from, err.text, err.line);
            return BENCH_EXIT_FAIL;
        }
    } else {
        unsigned failed = 0;
        bench_progress("plan: no --from: measuring this machine (all --quick)");
        all = bench_all_run(true, cfg.c.seed, &failed);
        if (all == NULL)
            return BENCH_EXIT_FAIL;
    }
    int rc = BENCH_EXIT_FAIL;
    double ingest = bench_jnum(all, "ingest.events_per_s");
    double shm_p99 = bench_jnum(all, "lookup.shm.p99_us");
    double cores = bench_jnum(all, "machine.cores");
    double bps = NAN, spc = NAN, floor_p99;
    if (isnan(ingest) || !plan_table(all, &bps, &spc) || isnan(cores)) {
        fprintf(stderr, "connrep-bench plan: the figures lack ingest, table or machine results\n");
        goto out;
    }
    bool at_top;
    double cap = plan_lookup_cap(all, cfg.p99_us, &floor_p99, &at_top);
    double groups = fmax(1, ceil(cfg.events_per_s / (cfg.headroom * ingest)));
    bool via_shm = false, feasible = true;
    double replicas = 1;
    if (cap > 0) {
        replicas = fmax(1, ceil(cfg.lookups_per_s / groups / (cfg.headroom * cap)));
    } else if (!isnan(shm_p99) && shm_p99 <= cfg.p99_us) {
        via_shm = true;
    } else {
        feasible = false;
    }
    double engines = groups * replicas;
    uint64_t per_group = (uint64_t)ceil((double)cfg.connectors / groups);
    double mem = bps * spc * (double)plan_pow2(per_group) + PLAN_DAEMON_BASE_BYTES;
    char lookup_path[256];
    if (via_shm)
        snprintf(lookup_path, sizeof(lookup_path),
                 "shared memory on the engine's host (measured p99 %.3f us; ZeroMQ p99 floor "
                 "%.0f us)",
                 shm_p99, floor_p99);
    else if (feasible)
        snprintf(lookup_path, sizeof(lookup_path),
                 "ZeroMQ ipc, %s%.0f lookups/s per engine at p99 <= %g us (measured, feed "
                 "running)%s",
                 at_top ? "at least " : "up to ", cap, cfg.p99_us,
                 at_top ? "; the run offered no more, so this is a lower bound: run mixed with a "
                          "higher --lookups-per-s"
                        : "");
    else
        snprintf(lookup_path, sizeof(lookup_path),
                 "none measured meets p99 %g us (ZeroMQ floor %.0f us, shm %.3f us)", cfg.p99_us,
                 floor_p99, shm_p99);
    static const char *const assumptions[] = {
        "an engine applies its whole feed; above headroom x the measured ingest rate the "
        "connectors are split by tenant into groups with separate feeds",
        "lookups: an engine serves headroom x the highest rate the mixed run achieved (open "
        "loop, feed running) with p99 within the target; replicas share a group's lookups",
        "if no ZeroMQ rate met the target but shared memory does, relays on the engine's host "
        "look up in shared memory (scales with relay cores)",
        "memory: table bytes per slot x slots for max_connectors (next power of two) + 64 MiB "
        "for the daemon; journal and snapshots on disk are not counted",
        "cores per engine: those of the measured machine; add one engine per group for "
        "failover (not included)",
    };
    const size_t nassume = sizeof(assumptions) / sizeof(assumptions[0]);
    if (cfg.c.json) {
        bench_json j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "scenario", "plan");
        bench_json_bool(&j, "feasible", feasible);
        bench_json_num(&j, "engines", feasible ? engines : NAN, 0);
        bench_json_num(&j, "groups", groups, 0);
        bench_json_num(&j, "replicas_per_group", feasible ? replicas : NAN, 0);
        bench_json_num(&j, "cores_per_engine", cores, 0);
        bench_json_num(&j, "cores_total", feasible ? cores * engines : NAN, 0);
        bench_json_num(&j, "memory_per_engine_bytes", mem, 0);
        bench_json_str(&j, "lookup_path", lookup_path);
        bench_json_object_begin(&j, "inputs");
        bench_json_u64(&j, "connectors", cfg.connectors);
        bench_json_num(&j, "events_per_s", cfg.events_per_s, 0);
        bench_json_num(&j, "lookups_per_s", cfg.lookups_per_s, 0);
        bench_json_num(&j, "p99_us", cfg.p99_us, 2);
        bench_json_num(&j, "headroom", cfg.headroom, 2);
        bench_json_str(&j, "figures", cfg.from != NULL ? cfg.from : "all --quick, this machine");
        bench_json_object_end(&j);
        bench_json_object_begin(&j, "measured");
        bench_json_num(&j, "ingest_events_per_s", ingest, 0);
        bench_json_num(&j, "lookup_cap_per_engine", cap, 0);
        bench_json_num(&j, "zmq_p99_floor_us", floor_p99, 1);
        bench_json_num(&j, "shm_p99_us", shm_p99, 3);
        bench_json_num(&j, "table_bytes_per_slot", bps, 1);
        bench_json_num(&j, "table_slots_per_capacity", spc, 3);
        bench_json_object_end(&j);
        bench_json_object_begin(&j, "assumptions");
        for (size_t i = 0; i < nassume; i++) {
            char k[8];
            snprintf(k, sizeof(k), "a%zu", i + 1);
            bench_json_str(&j, k, assumptions[i]);
        }
        bench_json_object_end(&j);
        bench_json_end(&j);
    } else {
        printf("connrep-bench plan: %" PRIu64 " connectors, %.0f events/s, %.0f lookups/s, p99 "
               "<= %g us (headroom %.0f%%; figures: %s)\n",
               cfg.connectors, cfg.events_per_s, cfg.lookups_per_s, cfg.p99_us, cfg.headroom * 100,
               cfg.from != NULL ? cfg.from : "all --quick on this machine");
        if (feasible)
            printf("recommendation: %.0f engine(s) = %.0f group(s) x %.0f replica(s); %.0f "
                   "cores each (%.0f in all); %.0f MiB per engine\n",
                   engines, groups, replicas, cores, cores * engines, mem / 1048576.0);
        else
            printf("recommendation: NOT FEASIBLE as measured; %.0f group(s), %.0f MiB per "
                   "engine\n",
                   groups, mem / 1048576.0);
        printf("lookup path: %s\n", lookup_path);
        printf("measured: ingest %.0f events/s per engine; table %.1f B per slot, %.2f slots per "
               "connector of capacity\n",
               ingest, bps, spc);
        printf("assumptions:\n");
        for (size_t i = 0; i < nassume; i++)
            printf("  - %s\n", assumptions[i]);
    }
    rc = feasible ? BENCH_EXIT_OK : BENCH_EXIT_FAIL;
out:
    json_decref(all);
    return rc;
}

const bench_scenario bench_scenario_plan = {
    .name = "plan",
    .summary = "a fleet recommendation (engines, cores, memory) from measured figures",
    .run = plan_main,
};
