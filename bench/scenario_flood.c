/* Scenario "flood": a flood of unique connector ids, --factor times the
 * daemon's max_connectors, through its feed.
 *
 * Set-up. Starts connrepd with max_connectors = the next power of two at or
 * above --connectors and fills it to --fill-ratio of that with a population
 * (feedgen.c) of which --bad-ratio is compromised and restricted.
 *
 * Measured. A lookup thread (one libconnrep client on ipc, closed loop,
 * random connectors of the population) runs for --seconds with the feed
 * quiet, then again during the flood: one clean message each for
 * factor x capacity new ids, sent as fast as the engine takes them. The
 * daemon's stats before and after give what the table did with the flood:
 * active connectors evicted to make room, events refused (no entry it could
 * take), insert_full and ids_full. Afterwards every restricted connector of
 * the population is looked up: a flood must not wash restrictions out of
 * the table, so they should all still be restricted.
 */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "connrep.h"
#include "daemon.h"
#include "feedgen.h"
#include "hist.h"
#include "scenarios.h"
#include "zbase.h"

#define FLOOD_TIMEOUT_MS 2000
#define FLOOD_CHECK      1000u

typedef struct flood_cfg {
    bench_common c;
    uint64_t connectors;
    uint64_t factor;
    uint64_t shards;
    double fill_ratio;
    double bad_ratio;
} flood_cfg;

static const char flood_description[] =
    "Starts connrepd (max_connectors = the next power of two >= --connectors),\n"
    "fills it to --fill-ratio with a population of which --bad-ratio is\n"
    "restricted, then floods its feed with --factor x max_connectors unique new\n"
    "ids (one clean message each). Reports what the daemon shed (evictions,\n"
    "refused events, from its stats), whether every restricted connector is\n"
    "still restricted afterwards (looked up), and the lookup latency of a\n"
    "client thread before (quiet) and during the flood. The daemon is always\n"
    "stopped.";

typedef struct flood_lookups {
    pthread_t thread;
    connrep_client *client;
    const bench_feedgen *pop;
    uint64_t rng;
    _Atomic bool stop; /* set by the main thread; relaxed: a flag polled in a loop */
    uint64_t end_ns;   /* 0: until stop */
    bench_hist lat;    /* ps per round trip */
    uint64_t errors;
} flood_lookups;

static void *lookups_main(void *arg)
{
    flood_lookups *l = arg;
    const uint64_t n = l->pop->o.connectors;
    while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
        uint64_t i = bench_below(bench_rand(&l->rng), n);
        connrep_result res;
        uint64_t t0 = bench_now_ns();
        int rc = connrep_lookup(l->client, l->pop->ids + i * BENCH_GUID_LEN, BENCH_GUID_LEN, &res);
        uint64_t t1 = bench_now_ns();
        if (rc != 0)
            l->errors++;
        else
            bench_hist_record(&l->lat, (t1 - t0) * 1000u);
        if (l->end_ns != 0 && t1 >= l->end_ns)
            break;
    }
    return NULL;
}

typedef struct flood_stats {
    uint64_t connectors, restricted, evictions, refused, insert_full, ids_full, applied;
} flood_stats;

static bool flood_stats_get(bench_daemon *d, flood_stats *s)
{
    char *j = bench_daemon_stats(d, 5000);
    if (j == NULL)
        return false;
    memset(s, 0, sizeof(*s));
    bench_stats_get(j, "connectors", &s->connectors);
    bench_stats_get(j, "restricted", &s->restricted);
    bench_stats_get(j, "evictions", &s->evictions);
    bench_stats_get(j, "events_refused", &s->refused);
    bench_stats_get(j, "insert_full", &s->insert_full);
    bench_stats_get(j, "ids_full", &s->ids_full);
    bench_stats_get(j, "events_applied", &s->applied);
    free(j);
    return true;
}

typedef struct flood_result {
    flood_stats before, after;
    bench_hist_summary quiet, flood;
    uint64_t quiet_errors, flood_errors;
    uint64_t flood_events;
    double flood_s;
    uint64_t bad, bad_restricted, bad_unknown, good_known, good;
} flood_result;

/* Looks up the whole population in batches: how many restricted ones are
 * still restricted, how many clean ones are still known. */
static bool flood_check(connrep_client *c, const bench_feedgen *pop, flood_result *r)
{
    connrep_id ids[FLOOD_CHECK];
    connrep_result out[FLOOD_CHECK];
    uint64_t n = pop->o.connectors;
    for (uint64_t i = 0; i < n; i += FLOOD_CHECK) {
        size_t k = n - i < FLOOD_CHECK ? (size_t)(n - i) : FLOOD_CHECK;
        for (size_t q = 0; q < k; q++)
            ids[q] = (connrep_id){.id = pop->ids + (i + q) * BENCH_GUID_LEN, .len = BENCH_GUID_LEN};
        int rc = connrep_lookup_batch(c, ids, k, out);
        if (rc != 0) {
            fprintf(stderr, "connrep-bench flood: check: %s\n", connrep_strerror(rc));
            return false;
        }
        for (size_t q = 0; q < k; q++) {
            if (bench_feedgen_is_bad(pop, i + q)) {
                r->bad++;
                r->bad_restricted += out[q].state == CONNREP_STATE_RESTRICTED;
                r->bad_unknown += out[q].state == CONNREP_STATE_UNKNOWN;
            } else {
                r->good++;
                r->good_known += out[q].state != CONNREP_STATE_UNKNOWN;
            }
        }
    }
    return true;
}

static bool lookups_run(flood_lookups *l, double seconds)
{
    bench_hist_init(&l->lat);
    l->errors = 0;
    atomic_store_explicit(&l->stop, false, memory_order_relaxed);
    l->end_ns = seconds > 0 ? bench_now_ns() + (uint64_t)(seconds * 1e9) : 0;
    return pthread_create(&l->thread, NULL, lookups_main, l) == 0;
}

static void flood_output(const flood_cfg *cfg, const bench_daemon *d, const flood_result *r,
                         const bench_machine *m, double run_s)
{
    uint64_t evicted = r->after.evictions - r->before.evictions;
    uint64_t refused = r->after.refused - r->before.refused;
    bool preserved = r->bad_restricted == r->bad;
    if (cfg->c.json) {
        bench_json j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "scenario", "flood");
        bench_json_u64(&j, "capacity", d->capacity);
        bench_json_u64(&j, "population", r->bad + r->good);
        bench_json_u64(&j, "flood_ids", r->flood_events);
        bench_json_num(&j, "flood_s", r->flood_s, 3);
        bench_json_num(&j, "flood_events_per_s", (double)r->flood_events / r->flood_s, 0);
        bench_json_u64(&j, "evicted", evicted);
        bench_json_u64(&j, "refused", refused);
        bench_json_u64(&j, "shed", evicted + refused);
        bench_json_u64(&j, "insert_full", r->after.insert_full - r->before.insert_full);
        bench_json_u64(&j, "ids_full", r->after.ids_full - r->before.ids_full);
        bench_json_u64(&j, "connectors_after", r->after.connectors);
        bench_json_u64(&j, "restricted_before", r->before.restricted);
        bench_json_u64(&j, "restricted_after", r->after.restricted);
        bench_json_u64(&j, "restricted_checked", r->bad);
        bench_json_u64(&j, "restricted_preserved", r->bad_restricted);
        bench_json_u64(&j, "restricted_lost", r->bad_unknown);
        bench_json_bool(&j, "restrictions_preserved", preserved);
        bench_json_u64(&j, "clean_still_known", r->good_known);
        bench_json_u64(&j, "clean_checked", r->good);
        const struct {
            const char *name;
            const bench_hist_summary *s;
            uint64_t errors;
        } l[2] = {{"quiet", &r->quiet, r->quiet_errors}, {"flood", &r->flood, r->flood_errors}};
        for (int k = 0; k < 2; k++) {
            bench_json_object_begin(&j, l[k].name);
            bench_json_num(&j, "p50_us", l[k].s->p50 / 1e6, 2);
            bench_json_num(&j, "p90_us", l[k].s->p90 / 1e6, 2);
            bench_json_num(&j, "p99_us", l[k].s->p99 / 1e6, 2);
            bench_json_num(&j, "p999_us", l[k].s->p999 / 1e6, 2);
            bench_json_num(&j, "max_us", l[k].s->max / 1e6, 2);
            bench_json_u64(&j, "samples", l[k].s->count);
            bench_json_u64(&j, "errors", l[k].errors);
            bench_json_object_end(&j);
        }
        bench_json_num(&j, "flood_p99_vs_quiet", bench_ratio(r->flood.p99, r->quiet.p99), 2);
        bench_json_u64(&j, "seed", cfg->c.seed);
        bench_json_str(&j, "zmq_version", bench_zmq_version());
        bench_json_machine(&j, m);
        bench_json_num(&j, "run_s", run_s, 1);
        bench_json_end(&j);
        return;
    }
    printf("connrep-bench flood: capacity %" PRIu64 ", population %" PRIu64 " (%" PRIu64
           " restricted), %" PRIu64 " unique new ids in %.2f s (%.0f/s)\n",
           d->capacity, r->bad + r->good, r->bad, r->flood_events, r->flood_s,
           (double)r->flood_events / r->flood_s);
    printf("shed: %" PRIu64 " evicted, %" PRIu64 " refused; connectors after %" PRIu64 "\n",
           evicted, refused, r->after.connectors);
    printf("restricted: %" PRIu64 " of %" PRIu64 " still restricted (%" PRIu64
           " lost) -> %s; clean still known %" PRIu64 " of %" PRIu64 "\n",
           r->bad_restricted, r->bad, r->bad_unknown, preserved ? "preserved" : "NOT preserved",
           r->good_known, r->good);
    printf("%-6s %9s %9s %9s %9s %10s\n", "us", "p50", "p90", "p99", "p99.9", "max");
    printf("%-6s %9.1f %9.1f %9.1f %9.1f %10.1f\n", "quiet", r->quiet.p50 / 1e6, r->quiet.p90 / 1e6,
           r->quiet.p99 / 1e6, r->quiet.p999 / 1e6, r->quiet.max / 1e6);
    printf("%-6s %9.1f %9.1f %9.1f %9.1f %10.1f\n", "flood", r->flood.p50 / 1e6, r->flood.p90 / 1e6,
           r->flood.p99 / 1e6, r->flood.p999 / 1e6, r->flood.max / 1e6);
    printf("machine: %s, %u cores, kernel %s, ZeroMQ %s\n", m->cpu_model, m->cores, m->kernel,
           bench_zmq_version());
}

static bool flood_body(const flood_cfg *cfg, bench_daemon *d, bench_feedgen *pop, bench_feedgen *fl,
                       flood_lookups *l, flood_result *r)
{
    bench_daemon_opts dopts = {.connectors = cfg->connectors, .shards = (unsigned)cfg->shards};
    bench_progress("flood: starting %s", bench_daemon_binary());
    if (!bench_daemon_init(d) || !bench_daemon_start(d, &dopts))
        return false;
    uint64_t pop_n = (uint64_t)((double)d->capacity * cfg->fill_ratio);
    bench_feedgen_opts po = {.connectors = pop_n ? pop_n : 1,
                             .seed = cfg->c.seed,
                             .tenants = 16,
                             .bad_ratio = cfg->bad_ratio,
                             .batch = 1000};
    bench_feedgen_opts fo = po;
    fo.connectors = cfg->factor * d->capacity;
    fo.seed = bench_mix64(cfg->c.seed ^ 0x666c6f6f64ull); /* "flood": other ids */
    fo.bad_ratio = 0;
    if (!bench_feedgen_init(pop, &po, 0) || pop->ids == NULL || !bench_feedgen_init(fl, &fo, 1)) {
        fprintf(stderr, "connrep-bench flood: cannot set the generators up\n");
        return false;
    }
    uint64_t producer = bench_feedgen_producer_id(), seq = 1, events;
    double secs, waited;
    bench_progress("fill: %" PRIu64 " connectors of capacity %" PRIu64, pop_n, d->capacity);
    if (!bench_daemon_fill(d, pop, producer, &seq, &events, &secs))
        return false;
    (void)bench_daemon_settle(d, 1.0, 60.0, &events, &waited);
    if (!flood_stats_get(d, &r->before))
        return false;
    l->client = connrep_open(d->lookup_ep, FLOOD_TIMEOUT_MS);
    if (l->client == NULL) {
        fprintf(stderr, "connrep-bench flood: connrep_open: %s\n", strerror(errno));
        return false;
    }
    l->pop = pop;
    l->rng = bench_mix64(cfg->c.seed ^ 0x6c6f6f6bull);
    bench_progress("lookups, quiet: %.1f s", cfg->c.seconds);
    if (!lookups_run(l, cfg->c.seconds))
        return false;
    pthread_join(l->thread, NULL);
    bench_hist_summarize(&l->lat, &r->quiet);
    r->quiet_errors = l->errors;
    bench_progress("flood: %" PRIu64 " unique new ids, lookups running", fo.connectors);
    if (!lookups_run(l, 0))
        return false;
    bool ok = bench_daemon_fill(d, fl, producer, &seq, &r->flood_events, &r->flood_s);
    atomic_store_explicit(&l->stop, true, memory_order_relaxed);
    pthread_join(l->thread, NULL);
    bench_hist_summarize(&l->lat, &r->flood);
    r->flood_errors = l->errors;
    if (!ok)
        return false;
    (void)bench_daemon_settle(d, 1.0, 60.0, &events, &waited);
    if (!flood_stats_get(d, &r->after))
        return false;
    bench_progress("flood: applied in %.2f s; checking the population", r->flood_s);
    return flood_check(l->client, pop, r);
}

static int flood_main(int argc, char **argv)
{
    flood_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    bench_common_init(&cfg.c, 2.0);
    cfg.c.seconds_help = "length of the quiet lookup phase";
    cfg.connectors = 65536;
    cfg.factor = 10;
    cfg.shards = 2;
    cfg.fill_ratio = 0.5;
    cfg.bad_ratio = 0.01;
    const bench_opt opts[] = {
        {"connectors", BENCH_OPT_U64, &cfg.connectors, "N",
         "max_connectors asked for (rounded up to a power of two)", 1000, 16777216.0},
        {"factor", BENCH_OPT_U64, &cfg.factor, "F", "flood ids as a multiple of max_connectors", 1,
         100},
        {"fill-ratio", BENCH_OPT_DOUBLE, &cfg.fill_ratio, "R",
         "population before the flood, as a fraction of max_connectors", 0.001, 1},
        {"bad-ratio", BENCH_OPT_DOUBLE, &cfg.bad_ratio, "B",
         "fraction of the population restricted", 0, 0.5},
        {"shards", BENCH_OPT_U64, &cfg.shards, "K", "the daemon's [engine] shards (power of two)",
         1, 64},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    if (!bench_opts_parse(&cfg.c, opts, nopts, argc, argv))
        return BENCH_EXIT_USAGE;
    if (cfg.c.help) {
        bench_opts_usage(stdout, "flood", flood_description, &cfg.c, opts, nopts);
        return BENCH_EXIT_OK;
    }
    if ((cfg.shards & (cfg.shards - 1)) != 0) {
        fprintf(stderr, "connrep-bench flood: --shards must be a power of two\n");
        return BENCH_EXIT_USAGE;
    }
    bench_progress_quiet(cfg.c.quiet);
    bench_watchdog_arm(cfg.c.max_seconds);
    uint64_t run_start = bench_now_ns();
    bench_machine m;
    bench_machine_get(&m);
    int rc = BENCH_EXIT_FAIL;
    bench_daemon *d = calloc(1, sizeof(*d));
    bench_feedgen *pop = calloc(1, sizeof(*pop));
    bench_feedgen *fl = calloc(1, sizeof(*fl));
    flood_lookups *l = calloc(1, sizeof(*l));
    flood_result *r = calloc(1, sizeof(*r));
    if (d != NULL && pop != NULL && fl != NULL && l != NULL && r != NULL &&
        flood_body(&cfg, d, pop, fl, l, r))
        rc = BENCH_EXIT_OK;
    if (l != NULL)
        connrep_close(&l->client);
    if (d != NULL) {
        if (d->pid > 0)
            bench_progress("flood: stopping connrepd");
        int st = bench_daemon_stop(d);
        if (rc == BENCH_EXIT_OK && st != 0) {
            fprintf(stderr, "connrep-bench flood: connrepd exited with status %d\n", st);
            rc = BENCH_EXIT_FAIL;
        }
    }
    if (rc == BENCH_EXIT_OK) {
        double run_s = (double)(bench_now_ns() - run_start) / 1e9;
        bench_progress("done in %.1f s", run_s);
        flood_output(&cfg, d, r, &m, run_s);
    }
    if (pop != NULL)
        bench_feedgen_fini(pop);
    if (fl != NULL)
        bench_feedgen_fini(fl);
    free(r);
    free(l);
    free(fl);
    free(pop);
    free(d);
    return rc;
}

const bench_scenario bench_scenario_flood = {
    .name = "flood",
    .summary = "a unique-id flood at 10x max_connectors: shedding, restrictions kept, latency",
    .run = flood_main,
};
