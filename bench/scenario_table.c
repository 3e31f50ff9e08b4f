/* Scenario "table": the connector table on its own, in process.
 *
 * Fills a table of capacity N with N connectors, then builds, beside it,
 * the baseline (a chained hash table behind a pthread_rwlock, same keys,
 * same state) and the DRAM probe (a pointer chase over a buffer of at least
 * 4x L3 and at least the table's size, with the table's page size). Then,
 * on one thread, in --rounds interleaved rounds:
 *   - lookup latency of present keys, as a dependent chain (the key of
 *     lookup i+1 depends on the verdict of lookup i): table, baseline, probe;
 *   - lookup throughput with independent random present keys: table,
 *     baseline;
 *   - lookup latency of absent keys: table, baseline.
 * Afterwards, once each: the probe with the other page size (how much of a
 * miss is the page walk), the cost of hashing an id, and scoring updates
 * over existing and new ids, one per call (crp_score_apply_sw: latency and
 * rate) and in batches (crp_score_apply_batch_sw: rate), which change the
 * table and so come last. Reports medians, percentiles, rates and the ratios the
 * budget in DESIGN.md section 7 is written in.
 *
 * Timing method. Latencies come from a dependent chain, for the table, the
 * baseline and the DRAM probe alike, because a chain is the only way a
 * lookup and a DRAM miss are compared fairly: independent operations
 * overlap in the out-of-order core and would look faster than any miss.
 * The chain alternates blocks of 1024 individually timed operations (the
 * median clock-pair overhead subtracted from each; these give p50, p99,
 * p99.9 and max) with blocks of 1024 timed as a whole (their per-operation
 * mean gives the *_batched_* figures, which carry no clock overhead at all
 * and so cross-check the subtraction). Percentiles come from a log-linear
 * histogram (hist.c), never from sorting samples.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baseline_rwlock.h"
#include "bench.h"
#include "crp/scoring.h"
#include "crp/table.h"
#include "hist.h"
#include "probe.h"
#include "redis.h"
#include "scenarios.h"

/* ---- Options -------------------------------------------------------------- */

typedef struct table_cfg {
    bench_common c;
    uint64_t connectors;
    uint64_t shards;
    uint64_t tenants;
    double new_ratio;
    uint64_t events;
    uint64_t rounds;
    uint64_t batch;
} table_cfg;

static const char table_description[] =
    "Fills a connector table of capacity N with N connectors (GUID ids from\n"
    "the seed, tenants from a small set) and measures on one thread: lookup\n"
    "latency (dependent chain; p50/p99/p99.9) and throughput (independent\n"
    "keys), the same for a pthread_rwlock chained hash table holding the same\n"
    "state, a DRAM pointer-chasing probe measured the same way, and scoring\n"
    "updates over existing and new ids, one per call (crp_score_apply_sw) and\n"
    "batched (crp_score_apply_batch_sw). Table, baseline and probe take turns\n"
    "in --rounds rounds so drift on a shared machine hits all three alike.\n"
    "Reports the ratios of DESIGN.md section 7. Takes about 10 x --seconds\n"
    "plus setup (a few seconds per million connectors).";

/* ---- Small helpers ---------------------------------------------------------- */

/* A lookup behind a function pointer, so the table and the baseline run
 * through the very same timing loops (the indirect call costs both the
 * same, about a nanosecond, and is predicted perfectly). */
typedef bool (*bench_lookup_fn)(void *ctx, const crp_key *k, crp_verdict *out);

static bool bench_table_lookup(void *ctx, const crp_key *k, crp_verdict *out)
{
    return crp_table_lookup(ctx, k, out);
}

static bool bench_baseline_lookup(void *ctx, const crp_key *k, crp_verdict *out)
{
    return bench_rwmap_lookup(ctx, k, out);
}

/* What a latency measurement found, in nanoseconds. */
typedef struct bench_lat {
    bench_hist_summary single;  /* individually timed, overhead subtracted */
    bench_hist_summary batched; /* per-operation means of whole blocks */
    uint64_t ops;
    uint64_t found;
} bench_lat;

/* A latency measurement being accumulated over several rounds: both
 * histograms (60 KiB, so on the heap) and the counts. */
typedef struct bench_acc {
    bench_hist single;
    bench_hist batched;
    uint64_t ops;
    uint64_t found;
} bench_acc;

static bench_acc *bench_acc_new(void)
{
    bench_acc *a = calloc(1, sizeof(*a));
    if (a != NULL) {
        bench_hist_init(&a->single);
        bench_hist_init(&a->batched);
    }
    return a;
}

static void bench_summary_ps_to_ns(bench_hist_summary *s)
{
    s->p50 /= 1000.0;
    s->p90 /= 1000.0;
    s->p99 /= 1000.0;
    s->p999 /= 1000.0;
    s->max /= 1000.0;
    s->mean /= 1000.0;
}

/* Summarises into *out (nanoseconds) and frees the accumulator. */
static void bench_acc_finish(bench_acc **ap, bench_lat *out)
{
    bench_acc *a = *ap;
    if (a == NULL)
        return;
    bench_hist_summarize(&a->single, &out->single);
    bench_hist_summarize(&a->batched, &out->batched);
    bench_summary_ps_to_ns(&out->single);
    bench_summary_ps_to_ns(&out->batched);
    out->ops = a->ops;
    out->found = a->found;
    free(a);
    *ap = NULL;
}

/* A throughput measurement: picoseconds per operation of each block of
 * BENCH_RATE_BLOCK operations, so the reported rate is the median block's
 * (robust to a neighbour stealing the core for a moment) and the mean is
 * kept beside it. */
typedef struct bench_rate {
    bench_hist per_op;
    uint64_t ops;
    uint64_t ns;
} bench_rate;

static bench_rate *bench_rate_new(void)
{
    bench_rate *r = calloc(1, sizeof(*r));
    if (r != NULL)
        bench_hist_init(&r->per_op);
    return r;
}

/* Operations per second of the median block, and of the whole time. */
typedef struct bench_rate_result {
    double per_s;
    double per_s_mean;
} bench_rate_result;

static void bench_rate_finish(bench_rate **rp, bench_rate_result *out)
{
    bench_rate *r = *rp;
    if (r == NULL)
        return;
    double ps = bench_hist_quantile(&r->per_op, 0.5);
    out->per_s = ps > 0 ? 1e12 / ps : NAN;
    out->per_s_mean = r->ns > 0 ? (double)r->ops / ((double)r->ns / 1e9) : NAN;
    free(r);
    *rp = NULL;
}

#define BENCH_BLOCK      1024u
#define BENCH_RATE_BLOCK 4096u

/* The dependent lookup chain. Lookup i+1 uses keys[i+1] with its low word
 * xor-ed by (verdict.state >> 7) of lookup i: always 0, since states are
 * 0..3, but the compiler cannot know that, so the next lookup's address
 * computation waits for the previous verdict, as a DRAM probe step waits
 * for the previous load. The key array is read sequentially, which the
 * prefetcher streams, so it adds no miss of its own. *cursor carries the
 * position in keys[] from one round to the next. */
static void bench_lookup_chain(bench_lookup_fn fn, void *ctx, const crp_key *keys, uint64_t nkeys,
                               uint64_t *cursor, double seconds, double overhead_ns, bench_acc *a)
{
    uint64_t overhead_ps = (uint64_t)(overhead_ns * 1000.0);
    uint64_t i = *cursor, ops = 0, found = 0, dep = 0;
    uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9);
    crp_verdict v;
    for (;;) {
        for (unsigned b = 0; b < BENCH_BLOCK; b++) {
            crp_key k = keys[i];
            k.lo ^= dep;
            uint64_t t0 = bench_now_ns();
            found += fn(ctx, &k, &v);
            uint64_t t1 = bench_now_ns();
            dep = (uint64_t)(v.state >> 7);
            uint64_t ps = (t1 - t0) * 1000u;
            bench_hist_record(&a->single, ps > overhead_ps ? ps - overhead_ps : 0);
            if (++i == nkeys)
                i = 0;
        }
        uint64_t t0 = bench_now_ns();
        for (unsigned b = 0; b < BENCH_BLOCK; b++) {
            crp_key k = keys[i];
            k.lo ^= dep;
            found += fn(ctx, &k, &v);
            dep = (uint64_t)(v.state >> 7);
            if (++i == nkeys)
                i = 0;
        }
        uint64_t t1 = bench_now_ns();
        bench_hist_record(&a->batched, (t1 - t0) * 1000u / BENCH_BLOCK);
        ops += 2 * BENCH_BLOCK;
        if (t1 >= end)
            break;
    }
    *cursor = i;
    a->ops += ops;
    a->found += found;
}

/* Independent lookups, one thread, for a fixed time: nothing links one
 * lookup to the next, so the core overlaps as many as it can — the rate a
 * relay worker doing nothing else would see. */
static void bench_lookup_rate(bench_lookup_fn fn, void *ctx, const crp_key *keys, uint64_t nkeys,
                              uint64_t *cursor, double seconds, bench_rate *r)
{
    uint64_t i = *cursor, found = 0;
    crp_verdict v;
    uint64_t start = bench_now_ns();
    uint64_t end = start + (uint64_t)(seconds * 1e9);
    uint64_t t0 = start, t1;
    do {
        for (unsigned b = 0; b < BENCH_RATE_BLOCK; b++) {
            found += fn(ctx, &keys[i], &v);
            if (++i == nkeys)
                i = 0;
        }
        t1 = bench_now_ns();
        bench_hist_record(&r->per_op, (t1 - t0) * 1000u / BENCH_RATE_BLOCK);
        r->ops += BENCH_RATE_BLOCK;
        t0 = t1;
    } while (t1 < end);
    r->ns += t1 - start;
    *cursor = i;
    /* Keep the results alive so the lookups cannot be dropped. */
    if (found == UINT64_MAX)
        bench_progress("rate: impossible count");
}

static void bench_shuffle_keys(crp_key *keys, uint64_t n, uint64_t seed)
{
    uint64_t rng = seed ^ 0x73687566666c65ull; /* "shuffle": its own stream */
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = bench_below(bench_rand(&rng), i + 1);
        crp_key tmp = keys[i];
        keys[i] = keys[j];
        keys[j] = tmp;
    }
}

/* ---- Results ---------------------------------------------------------------- */

typedef struct table_results {
    double overhead_ns;
    /* fill */
    double fill_s;
    uint64_t fill_created;
    uint64_t fill_failed;
    crp_err fill_first_err;
    crp_table_stats after_fill;
    double table_huge_fraction;
    double table_huge_fraction_end; /* after the updates: did anything split it? */
    bool table_on_hugepages;
    /* lookups */
    bench_lat hit, miss;
    bench_rate_result rate;
    /* probe: "same" has the table's page size, "other" the other one */
    uint64_t probe_bytes;
    bench_lat dram_same, dram_other;
    double probe_same_huge_fraction;
    /* baseline */
    double baseline_fill_s;
    uint64_t baseline_bytes;
    bench_lat base_hit, base_miss;
    bench_rate_result base_rate;
    /* hashing */
    double key_hash_ns;
    /* updates */
    bench_lat update;
    bench_rate_result update_rate;
    bench_rate_result update_batch_rate;
    uint64_t update_events;
    uint64_t update_new_events;
    uint64_t update_refills;
    uint64_t update_errors;
    crp_err update_first_err;
    uint64_t update_transitions;
    crp_table_stats after_update;
    /* Redis: GET, GET x64, INCR, INCR x64 (table_redis) */
    bool redis_on;
    char redis_skip[192];
    char redis_version[32];
    uint64_t redis_keys;
    double redis_per_s[4];     /* the best round's */
    double redis_all_per_s[4]; /* over every round trip */
    double redis_p50_us[4];
} table_results;

/* ---- Setup ------------------------------------------------------------------- */

static void table_fill(const table_cfg *cfg, crp_table *t, crp_key *keys, table_results *r)
{
    char tenant[CRP_TENANT_MAX + 1];
    char id[BENCH_GUID_LEN];
    uint64_t start = bench_now_ns();
    uint64_t report = start;
    r->fill_first_err = CRP_OK;
    for (uint64_t i = 0; i < cfg->connectors; i++) {
        bench_guid(cfg->c.seed, i, id);
        keys[i] = crp_table_key(t, id, sizeof(id));
        size_t tl = bench_tenant_name(bench_tenant_of(cfg->c.seed, i, cfg->tenants), tenant,
                                      sizeof(tenant));
        crp_slot slot;
        bool created = false;
        /* Connectors arrive one per microsecond of synthetic time, so
         * last_ms (eviction's age) follows the fill order. */
        crp_err err = crp_table_upsert_sw(t, &keys[i], id, sizeof(id), tenant, tl,
                                          1700000000000u + i / 1000u, &slot, &created);
        if (err != CRP_OK) {
            if (r->fill_failed++ == 0)
                r->fill_first_err = err;
        } else if (created) {
            r->fill_created++;
        }
        if ((i & 0xffffu) == 0 && bench_now_ns() - report > 2000000000u) {
            report = bench_now_ns();
            bench_progress("table: filled %" PRIu64 " of %" PRIu64, i, cfg->connectors);
        }
    }
    r->fill_s = (double)(bench_now_ns() - start) / 1e9;
    crp_table_stats_get(t, &r->after_fill);
    size_t len;
    const void *base = crp_table_bytes(t, &len);
    uint64_t rss, huge;
    r->table_huge_fraction =
        bench_smaps(base, &rss, &huge) && rss > 0 ? (double)huge / (double)rss : NAN;
    r->table_on_hugepages = r->table_huge_fraction > 0.5;
}

static bench_rwmap *table_baseline_build(const table_cfg *cfg, const crp_table *t, table_results *r)
{
    bench_rwmap *m;
    if (bench_rwmap_create(&m, cfg->connectors) != CRP_OK) {
        fprintf(stderr, "connrep-bench table: baseline: out of memory\n");
        return NULL;
    }
    char tenant[CRP_TENANT_MAX + 1];
    char id[BENCH_GUID_LEN];
    uint64_t start = bench_now_ns();
    for (uint64_t i = 0; i < cfg->connectors; i++) {
        bench_guid(cfg->c.seed, i, id);
        /* The very key the table stored: XXH3-128 with the table's seed. */
        crp_key k = crp_table_key(t, id, sizeof(id));
        size_t tl = bench_tenant_name(bench_tenant_of(cfg->c.seed, i, cfg->tenants), tenant,
                                      sizeof(tenant));
        crp_err err = bench_rwmap_insert(m, &k, id, sizeof(id), tenant, tl, 1700000000000u);
        if (err != CRP_OK) {
            fprintf(stderr, "connrep-bench table: baseline insert: %s\n", crp_strerror(err));
            bench_rwmap_destroy(&m);
            return NULL;
        }
    }
    r->baseline_fill_s = (double)(bench_now_ns() - start) / 1e9;
    r->baseline_bytes = bench_rwmap_bytes(m);
    return m;
}

/* The probe buffer: at least 4x L3 (so nearly every step misses every
 * cache) and at least the table (so it is no kinder to the TLB than the
 * table is). */
static size_t table_probe_size(const bench_machine *m, size_t table_bytes)
{
    uint64_t l3 = m->l3_bytes ? m->l3_bytes : (64u << 20);
    size_t want = (size_t)(4 * l3);
    return want < table_bytes ? table_bytes : want;
}

static bool table_probe_build(const table_cfg *cfg, size_t bytes, bool huge, bench_probe *p)
{
    bench_progress("probe: linking %zu MiB with %s pages", bytes >> 20, huge ? "2M" : "4K");
    if (!bench_probe_build(p, bytes, huge, cfg->c.seed)) {
        perror("connrep-bench table: probe buffer");
        return false;
    }
    return true;
}

/* ---- Lookups, interleaved ---------------------------------------------------- */

/* Everything the interleaved rounds accumulate into. */
typedef struct table_accs {
    bench_acc *hit, *miss, *base_hit, *base_miss, *dram;
    bench_rate *rate, *base_rate;
} table_accs;

static bool table_accs_new(table_accs *a)
{
    a->hit = bench_acc_new();
    a->miss = bench_acc_new();
    a->base_hit = bench_acc_new();
    a->base_miss = bench_acc_new();
    a->dram = bench_acc_new();
    a->rate = bench_rate_new();
    a->base_rate = bench_rate_new();
    return a->hit && a->miss && a->base_hit && a->base_miss && a->dram && a->rate && a->base_rate;
}

static void table_accs_finish(table_accs *a, table_results *r)
{
    bench_acc_finish(&a->hit, &r->hit);
    bench_acc_finish(&a->miss, &r->miss);
    bench_acc_finish(&a->base_hit, &r->base_hit);
    bench_acc_finish(&a->base_miss, &r->base_miss);
    bench_acc_finish(&a->dram, &r->dram_same);
    bench_rate_finish(&a->rate, &r->rate);
    bench_rate_finish(&a->base_rate, &r->base_rate);
}

/* The table, the baseline and the DRAM probe take turns, round after
 * round, with the same share of time each: on a shared machine the
 * neighbours' load drifts over seconds, and interleaving spreads that drift
 * over all three instead of charging it to whichever ran last. */
static void table_rounds(const table_cfg *cfg, crp_table *t, bench_rwmap *m, const bench_probe *p,
                         const crp_key *keys, const crp_key *absent, uint64_t nabsent,
                         double overhead_ns, table_accs *a)
{
    double slice = cfg->c.seconds / (double)cfg->rounds;
    uint64_t n = cfg->connectors;
    /* Each subject walks the key stream from its own cursor so no subject
     * finds lines another just brought into the cache. */
    uint64_t c_hit = 0, c_base = n / 2, c_miss = 0, c_bmiss = nabsent / 2;
    uint64_t c_rate = n / 4, c_brate = 3 * (n / 4);
    for (uint64_t round = 0; round < cfg->rounds; round++) {
        bench_progress("round %" PRIu64 " of %" PRIu64
                       ": latency (dependent chains), throughput (independent keys), %.2f s each",
                       round + 1, cfg->rounds, slice);
        bench_lookup_chain(bench_table_lookup, t, keys, n, &c_hit, slice, overhead_ns, a->hit);
        bench_lookup_chain(bench_baseline_lookup, m, keys, n, &c_base, slice, overhead_ns,
                           a->base_hit);
        a->dram->ops += bench_probe_run(p, slice, overhead_ns, &a->dram->single, &a->dram->batched);
        bench_lookup_rate(bench_table_lookup, t, keys, n, &c_rate, slice, a->rate);
        bench_lookup_rate(bench_baseline_lookup, m, keys, n, &c_brate, slice, a->base_rate);
        bench_lookup_chain(bench_table_lookup, t, absent, nabsent, &c_miss, slice / 2, overhead_ns,
                           a->miss);
        bench_lookup_chain(bench_baseline_lookup, m, absent, nabsent, &c_bmiss, slice / 2,
                           overhead_ns, a->base_miss);
    }
    a->dram->found = a->dram->ops;
}

/* ---- Redis ------------------------------------------------------------------- */

#define TABLE_REDIS_KEYS_MAX 1000000u
#define TABLE_REDIS_PIPELINE 64u

/* What an operator would use instead of the table: Redis GET of the same
 * connector ids (a lookup) and INCR (a counter update), one hiredis client,
 * unpipelined and 64 deep, taking turns in --rounds rounds. At most
 * TABLE_REDIS_KEYS_MAX keys, so a 1e7 run does not spend a minute and a
 * gigabyte filling Redis. Skipped, saying why, without redis-server. */
static bool table_redis(const table_cfg *cfg, table_results *r)
{
    static const char *const cmd[4] = {"GET", "GET", "INCR", "INCR"};
    static const unsigned depth[4] = {1, TABLE_REDIS_PIPELINE, 1, TABLE_REDIS_PIPELINE};
    if (!bench_redis_available(r->redis_skip, sizeof(r->redis_skip))) {
        fprintf(stderr, "connrep-bench table: skipping the Redis baseline: %s\n", r->redis_skip);
        return true;
    }
    uint64_t n = cfg->connectors < TABLE_REDIS_KEYS_MAX ? cfg->connectors : TABLE_REDIS_KEYS_MAX;
    char *ids = malloc(n * BENCH_GUID_LEN);
    uint32_t *order = malloc(n * sizeof(*order));
    uint8_t *states = calloc(n, 1);
    bench_redis_acc *acc = malloc(4 * sizeof(*acc));
    bench_redis rd = {0};
    bool ok = false;
    if (ids == NULL || order == NULL || states == NULL || acc == NULL) {
        fprintf(stderr, "connrep-bench table: out of memory for the Redis baseline\n");
        goto out;
    }
    uint64_t rng = cfg->c.seed ^ 0x7265646973ull; /* "redis": its own stream */
    for (uint64_t i = 0; i < n; i++) {
        bench_guid(cfg->c.seed, i, ids + i * BENCH_GUID_LEN);
        order[i] = (uint32_t)i;
        states[i] = 1;
    }
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = bench_below(bench_rand(&rng), i + 1);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    bench_progress("redis: starting %s on a unix socket, persistence off", bench_redis_binary());
    if (!bench_redis_start(&rd))
        goto out;
    bench_progress("redis %s: SET %" PRIu64 " connectors", rd.version, n);
    if (!bench_redis_fill(&rd, ids, n, states))
        goto out;
    uint64_t cursor = 0;
    for (int k = 0; k < 4; k++)
        bench_redis_acc_init(&acc[k], cmd[k], depth[k]);
    double slice = cfg->c.seconds / (double)cfg->rounds;
    for (uint64_t round = 0; round < cfg->rounds; round++) {
        bench_progress("redis round %" PRIu64 " of %" PRIu64 ": GET, GET x%u, INCR, INCR x%u",
                       round + 1, cfg->rounds, TABLE_REDIS_PIPELINE, TABLE_REDIS_PIPELINE);
        for (int q = 0; q < 4; q++) {
            int k = round % 2 ? 3 - q : q;
            if (!bench_redis_round(&rd, &acc[k], ids, order, n, &cursor, slice))
                goto out;
        }
    }
    for (int k = 0; k < 4; k++) {
        r->redis_p50_us[k] = bench_hist_quantile(&acc[k].calls, 0.5) / 1e6;
        r->redis_per_s[k] = acc[k].best_per_s;
        r->redis_all_per_s[k] = acc[k].median_per_s;
    }
    snprintf(r->redis_version, sizeof(r->redis_version), "%s", rd.version);
    r->redis_keys = n;
    r->redis_on = true;
    ok = true;
out:
    bench_redis_stop(&rd);
    free(acc);
    free(states);
    free(order);
    free(ids);
    return ok;
}

/* ---- Hashing ------------------------------------------------------------------ */

/* Hashing a 36-byte id: part of every update (the feed carries ids) and of
 * every lookup a relay worker makes from an id. Independent hashes over a
 * small, cache-resident set of ids, so this is the pure compute cost;
 * reported as the median block's ns per hash. */
static double table_hash_cost(const crp_table *t, uint64_t seed, double seconds)
{
    enum { NIDS = 4096 };
    static char ids[NIDS][BENCH_GUID_LEN];
    for (uint64_t i = 0; i < NIDS; i++)
        bench_guid(seed, i, ids[i]);
    bench_rate *r = bench_rate_new();
    if (r == NULL)
        return NAN;
    uint64_t sink = 0;
    uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9);
    uint64_t t0 = bench_now_ns(), t1;
    do {
        for (unsigned i = 0; i < NIDS; i++)
            sink += crp_table_key(t, ids[i], BENCH_GUID_LEN).lo;
        t1 = bench_now_ns();
        bench_hist_record(&r->per_op, (t1 - t0) * 1000u / NIDS);
        t0 = t1;
    } while (t1 < end);
    if (sink == 42)
        bench_progress("hash: improbable sum");
    double ns = bench_hist_quantile(&r->per_op, 0.5) / 1000.0;
    free(r);
    return ns;
}

/* ---- Updates ------------------------------------------------------------------ */

/* The update stream: a buffer of events, regenerated from the running
 * PRNG every time it has been used up, so no connector sees the same
 * verdicts twice and the order of connectors never repeats (a replayed
 * order would find the last pass's lines still in L3 and flatter the
 * figures). A fraction `new_ratio` name connectors never seen before
 * (numbers N, N+1, ...), the rest a uniformly random one of the N filled —
 * uniform is the cache's worst case; real traffic is skewed toward busy
 * connectors. Verdicts are mostly clean (2 % spam, 0.1 % phish, 0.01 %
 * malware), so some connectors turn dirty (unevictable) as they would in
 * production. */
typedef struct table_events {
    crp_event *ev;
    char *ids;
    uint64_t n;
    uint64_t fresh;    /* new ids handed out so far */
    uint64_t next_new; /* the next never-seen connector number */
    uint64_t rng;
    uint64_t refills;
    char tenant_names[256][CRP_TENANT_MAX + 1];
    uint8_t tenant_lens[256];
} table_events;

static void table_events_fill(const table_cfg *cfg, table_events *te)
{
    uint64_t ntenants = cfg->tenants < 256 ? cfg->tenants : 256;
    uint64_t new_cut = (uint64_t)(cfg->new_ratio * 4294967296.0);
    for (uint64_t i = 0; i < te->n; i++) {
        uint64_t r = bench_rand(&te->rng);
        uint64_t who;
        if ((r & 0xffffffffu) < new_cut) {
            who = te->next_new++;
            te->fresh++;
        } else {
            who = bench_below(bench_rand(&te->rng), cfg->connectors);
        }
        char *id = te->ids + i * BENCH_GUID_LEN;
        bench_guid(cfg->c.seed, who, id);
        uint64_t t = bench_tenant_of(cfg->c.seed, who, cfg->tenants) % ntenants;
        uint64_t v = bench_below(bench_rand(&te->rng), 10000);
        uint16_t verdict = 0;
        if (v < 200)
            verdict = CRP_VERDICT_SPAM;
        else if (v < 210)
            verdict = CRP_VERDICT_PHISH;
        else if (v < 211)
            verdict = CRP_VERDICT_MALWARE;
        te->ev[i] = (crp_event){
            .id = id,
            .id_len = BENCH_GUID_LEN,
            .tenant = te->tenant_names[t],
            .tenant_len = te->tenant_lens[t],
            .ts_ms = 0,
            .verdict = verdict,
            .recipients = (uint16_t)(1 + bench_below(bench_rand(&te->rng), 4)),
        };
    }
}

static bool table_events_build(const table_cfg *cfg, table_events *te)
{
    uint64_t ntenants = cfg->tenants < 256 ? cfg->tenants : 256;
    for (uint64_t t = 0; t < ntenants; t++)
        te->tenant_lens[t] =
            (uint8_t)bench_tenant_name(t, te->tenant_names[t], sizeof(te->tenant_names[t]));
    te->n = cfg->events;
    te->fresh = 0;
    te->next_new = cfg->connectors;
    te->rng = cfg->c.seed ^ 0x6576656e7473ull; /* "events": its own stream */
    te->ev = calloc(te->n, sizeof(*te->ev));
    te->ids = malloc(te->n * BENCH_GUID_LEN);
    if (te->ev == NULL || te->ids == NULL)
        return false;
    table_events_fill(cfg, te);
    return true;
}

/* Called when position *i reached the end of the buffer: regenerates it
 * and rewinds. Returns the nanoseconds it took, which the caller leaves out
 * of whatever it is timing. */
static uint64_t table_events_wrap(const table_cfg *cfg, table_events *te, uint64_t *i)
{
    uint64_t t0 = bench_now_ns();
    table_events_fill(cfg, te);
    te->refills++;
    *i = 0;
    return bench_now_ns() - t0;
}

static void table_events_free(table_events *te)
{
    free(te->ev);
    free(te->ids);
}

/* Counts the batch path's transitions (crp_transition_fn). */
static void table_count_transitions(void *ctx, const crp_event *ev, const crp_transition *tr,
                                    size_t ntr)
{
    (void)ev;
    (void)tr;
    *(uint64_t *)ctx += ntr;
}

/* Scoring updates on one thread (the writer of every shard). The clock is
 * synthetic: event number n happens at base + n/1024 ms, about a million
 * events per second of engine time, so counters decay a little between a
 * connector's events, as they would. Three phases: each event timed alone
 * through crp_score_apply_sw (overhead subtracted), the rate of that same
 * call, and the rate of crp_score_apply_batch_sw. Regenerating the event
 * buffer is left out of every timed interval. */
static bool table_updates(const table_cfg *cfg, crp_table *t, table_events *te, double overhead_ns,
                          table_results *r)
{
    crp_policy pol;
    crp_policy_defaults(&pol);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    size_t ntr;
    const uint64_t base_ms = 1700000000000u + cfg->connectors / 1000u + 1000u;
    uint64_t i = 0, n = 0, errors = 0, transitions = 0;
    r->update_first_err = CRP_OK;

    bench_acc *a = bench_acc_new();
    bench_rate *rate = bench_rate_new();
    if (a == NULL || rate == NULL) {
        free(a);
        free(rate);
        return false;
    }
    bench_progress("update: latency (crp_score_apply_sw), %.1f s", cfg->c.seconds);
    uint64_t overhead_ps = (uint64_t)(overhead_ns * 1000.0);
    uint64_t end = bench_now_ns() + (uint64_t)(cfg->c.seconds * 1e9);
    uint64_t t1 = 0;
    do {
        for (unsigned b = 0; b < BENCH_BLOCK; b++, n++) {
            uint64_t now_ms = base_ms + (n >> 10);
            uint64_t t0 = bench_now_ns();
            crp_err err = crp_score_apply_sw(t, &pol, &te->ev[i], now_ms, tr, &ntr);
            t1 = bench_now_ns();
            uint64_t ps = (t1 - t0) * 1000u;
            bench_hist_record(&a->single, ps > overhead_ps ? ps - overhead_ps : 0);
            if (err != CRP_OK && errors++ == 0)
                r->update_first_err = err;
            transitions += ntr;
            if (++i == te->n)
                table_events_wrap(cfg, te, &i);
        }
    } while (t1 < end);
    a->ops = a->found = n;

    bench_progress("update: throughput (crp_score_apply_sw), %.1f s", cfg->c.seconds);
    end = bench_now_ns() + (uint64_t)(cfg->c.seconds * 1e9);
    do {
        uint64_t paused = 0;
        uint64_t t0 = bench_now_ns();
        for (unsigned b = 0; b < BENCH_RATE_BLOCK; b++, n++) {
            crp_err err = crp_score_apply_sw(t, &pol, &te->ev[i], base_ms + (n >> 10), tr, &ntr);
            if (err != CRP_OK && errors++ == 0)
                r->update_first_err = err;
            transitions += ntr;
            if (++i == te->n)
                paused += table_events_wrap(cfg, te, &i);
        }
        t1 = bench_now_ns();
        uint64_t ns = t1 - t0 - paused;
        bench_hist_record(&rate->per_op, ns * 1000u / BENCH_RATE_BLOCK);
        rate->ops += BENCH_RATE_BLOCK;
        rate->ns += ns;
    } while (t1 < end);
    bench_acc_finish(&a, &r->update);
    bench_rate_finish(&rate, &r->update_rate);

    /* The batched path a feed worker uses: crp_score_apply_batch_sw hashes
     * and prefetches a few events ahead so neighbouring events' misses
     * overlap. A batch never runs past the end of the buffer. */
    rate = bench_rate_new();
    if (rate == NULL)
        return false;
    bench_progress("update: throughput (crp_score_apply_batch_sw, %" PRIu64 " per call), %.1f s",
                   cfg->batch, cfg->c.seconds);
    end = bench_now_ns() + (uint64_t)(cfg->c.seconds * 1e9);
    do {
        uint64_t done = 0, paused = 0;
        uint64_t t0 = bench_now_ns();
        while (done < BENCH_RATE_BLOCK) {
            uint64_t len = cfg->batch;
            if (len > te->n - i)
                len = te->n - i;
            size_t refused = 0;
            crp_score_apply_batch_sw(t, &pol, &te->ev[i], len, base_ms + (n >> 10),
                                     table_count_transitions, &transitions, &refused);
            /* The batch API counts refusals without saying which error. */
            if (refused > 0 && errors == 0)
                r->update_first_err = CRP_FULL;
            errors += refused;
            done += len;
            n += len;
            i += len;
            if (i == te->n)
                paused += table_events_wrap(cfg, te, &i);
        }
        t1 = bench_now_ns();
        uint64_t ns = t1 - t0 - paused;
        bench_hist_record(&rate->per_op, ns * 1000u / done);
        rate->ops += done;
        rate->ns += ns;
    } while (t1 < end);
    bench_rate_finish(&rate, &r->update_batch_rate);
    r->update_events = n;
    r->update_errors = errors;
    r->update_transitions = transitions;
    r->update_new_events = te->fresh;
    r->update_refills = te->refills;
    crp_table_stats_get(t, &r->after_update);
    size_t len;
    const void *base = crp_table_bytes(t, &len);
    uint64_t rss, huge;
    r->table_huge_fraction_end =
        bench_smaps(base, &rss, &huge) && rss > 0 ? (double)huge / (double)rss : NAN;
    return true;
}

/* ---- Output ------------------------------------------------------------------- */

static void table_json_lat(bench_json *j, const char *prefix, const bench_lat *l)
{
    char key[96];
    snprintf(key, sizeof(key), "%s_ns_p50", prefix);
    bench_json_num(j, key, l->single.p50, 1);
    snprintf(key, sizeof(key), "%s_ns_p90", prefix);
    bench_json_num(j, key, l->single.p90, 1);
    snprintf(key, sizeof(key), "%s_ns_p99", prefix);
    bench_json_num(j, key, l->single.p99, 1);
    snprintf(key, sizeof(key), "%s_ns_p999", prefix);
    bench_json_num(j, key, l->single.p999, 1);
    snprintf(key, sizeof(key), "%s_ns_max", prefix);
    bench_json_num(j, key, l->single.max, 1);
    /* Updates are timed one by one only: they have no batched view. */
    if (l->batched.count > 0) {
        snprintf(key, sizeof(key), "%s_ns_batched_p50", prefix);
        bench_json_num(j, key, l->batched.p50, 1);
    }
}

static void table_json(const table_cfg *cfg, const bench_machine *m, const table_results *r,
                       double run_s)
{
    const double n = (double)cfg->connectors;
    const char *same = r->table_on_hugepages ? "2M" : "4K";
    const bench_lat *dram = &r->dram_same;
    bench_json j;
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "scenario", "table");
    bench_json_u64(&j, "connectors", cfg->connectors);
    bench_json_u64(&j, "shards", cfg->shards);
    bench_json_u64(&j, "tenants", cfg->tenants);
    bench_json_u64(&j, "seed", cfg->c.seed);
    bench_json_num(&j, "seconds_per_phase", cfg->c.seconds, 2);
    bench_json_u64(&j, "rounds", cfg->rounds);
    bench_json_str(&j, "latency_method",
                   "dependent chain; each op timed by a clock_gettime pair minus the median "
                   "pair overhead; table, baseline and probe interleaved in rounds");
    bench_json_str(&j, "rate_method", "one thread, independent keys; median of 4096-op blocks");
    bench_json_num(&j, "clock_overhead_ns", r->overhead_ns, 1);

    /* The table. */
    table_json_lat(&j, "lookup", &r->hit);
    bench_json_num(&j, "lookups_per_s", r->rate.per_s, 0);
    bench_json_num(&j, "lookups_per_s_mean", r->rate.per_s_mean, 0);
    table_json_lat(&j, "lookup_absent", &r->miss);
    bench_json_u64(&j, "lookup_samples", r->hit.ops);
    bench_json_u64(&j, "lookup_not_found", r->hit.ops - r->hit.found);
    bench_json_num(&j, "bytes_per_connector", (double)r->after_fill.bytes / n, 1);
    bench_json_u64(&j, "table_bytes", r->after_fill.bytes);
    bench_json_u64(&j, "table_slots", r->after_fill.slots);
    bench_json_u64(&j, "table_live", r->after_fill.live);
    bench_json_num(&j, "table_hugepage_fraction", r->table_huge_fraction, 3);
    bench_json_num(&j, "table_hugepage_fraction_end", r->table_huge_fraction_end, 3);
    bench_json_num(&j, "fill_s", r->fill_s, 3);
    bench_json_num(&j, "fill_per_s", n / r->fill_s, 0);
    bench_json_u64(&j, "fill_created", r->fill_created);
    bench_json_u64(&j, "fill_failed", r->fill_failed);
    bench_json_str(&j, "fill_first_error",
                   r->fill_failed ? crp_err_name(r->fill_first_err) : "none");
    bench_json_u64(&j, "fill_evictions", r->after_fill.evictions);

    /* DRAM, with the table's page size; the other size for reference. */
    bench_json_num(&j, "dram_ns", dram->single.p50, 1);
    bench_json_str(&j, "dram_pages", same);
    bench_json_num(&j, "dram_ns_p99", dram->single.p99, 1);
    bench_json_num(&j, "dram_ns_batched_p50", dram->batched.p50, 1);
    bench_json_num(&j, r->table_on_hugepages ? "dram_ns_4k" : "dram_ns_2m",
                   r->dram_other.single.p50, 1);
    bench_json_num(&j, "probe_hugepage_fraction", r->probe_same_huge_fraction, 3);
    bench_json_u64(&j, "probe_bytes", r->probe_bytes);

    /* Baseline. */
    table_json_lat(&j, "baseline_lookup", &r->base_hit);
    bench_json_num(&j, "baseline_lookups_per_s", r->base_rate.per_s, 0);
    bench_json_num(&j, "baseline_lookups_per_s_mean", r->base_rate.per_s_mean, 0);
    table_json_lat(&j, "baseline_lookup_absent", &r->base_miss);
    bench_json_num(&j, "baseline_bytes_per_connector", (double)r->baseline_bytes / n, 1);
    bench_json_num(&j, "baseline_fill_s", r->baseline_fill_s, 3);

    /* Ratios: below 1 means the table is faster or smaller. */
    bench_json_num(&j, "lookup_p50_vs_dram", bench_ratio(r->hit.single.p50, dram->single.p50), 3);
    bench_json_num(&j, "lookup_batched_p50_vs_dram",
                   bench_ratio(r->hit.batched.p50, dram->batched.p50), 3);
    bench_json_num(&j, "lookup_p50_vs_baseline",
                   bench_ratio(r->hit.single.p50, r->base_hit.single.p50), 3);
    bench_json_num(&j, "lookup_p999_vs_baseline",
                   bench_ratio(r->hit.single.p999, r->base_hit.single.p999), 3);
    bench_json_num(&j, "lookups_per_s_vs_baseline", bench_ratio(r->rate.per_s, r->base_rate.per_s),
                   3);
    bench_json_num(&j, "bytes_per_connector_vs_baseline",
                   bench_ratio((double)r->after_fill.bytes, (double)r->baseline_bytes), 3);

    /* Updates. */
    bench_json_str(&j, "update_path",
                   "crp_score_apply_sw (hash + upsert + score + store), one event per call");
    table_json_lat(&j, "update", &r->update);
    bench_json_num(&j, "updates_per_s", r->update_rate.per_s, 0);
    bench_json_num(&j, "updates_per_s_mean", r->update_rate.per_s_mean, 0);
    bench_json_num(&j, "updates_batch_per_s", r->update_batch_rate.per_s, 0);
    bench_json_num(&j, "updates_batch_per_s_mean", r->update_batch_rate.per_s_mean, 0);
    bench_json_u64(&j, "update_batch", cfg->batch);
    bench_json_num(&j, "update_new_ratio", cfg->new_ratio, 3);
    bench_json_u64(&j, "update_events", r->update_events);
    bench_json_u64(&j, "update_new_ids", r->update_new_events);
    bench_json_u64(&j, "update_buffer_refills", r->update_refills);
    bench_json_u64(&j, "update_errors", r->update_errors);
    bench_json_str(&j, "update_first_error",
                   r->update_errors ? crp_err_name(r->update_first_err) : "none");
    bench_json_u64(&j, "update_transitions", r->update_transitions);
    bench_json_u64(&j, "update_evictions", r->after_update.evictions - r->after_fill.evictions);
    bench_json_u64(&j, "update_insert_full",
                   r->after_update.insert_full - r->after_fill.insert_full);
    bench_json_u64(&j, "restricted_after", r->after_update.restricted);
    bench_json_num(&j, "key_hash_ns", r->key_hash_ns, 1);

    /* Redis, with ratios above 1 meaning the table is faster. */
    bench_json_object_begin(&j, "redis");
    bench_json_bool(&j, "skipped", !r->redis_on);
    if (r->redis_on) {
        static const char *const names[4] = {"get", "get_pipe64", "incr", "incr_pipe64"};
        char key[64];
        bench_json_str(&j, "version", r->redis_version);
        bench_json_str(&j, "hiredis_version", bench_hiredis_version());
        bench_json_u64(&j, "keys", r->redis_keys);
        bench_json_str(&j, "method",
                       "one hiredis client on a unix socket; X_per_s = depth / median round trip "
                       "of Redis's best round (ratios use it: favours Redis)");
        for (int k = 0; k < 4; k++) {
            snprintf(key, sizeof(key), "%s_per_s", names[k]);
            bench_json_num(&j, key, r->redis_per_s[k], 0);
            snprintf(key, sizeof(key), "%s_per_s_all_rounds", names[k]);
            bench_json_num(&j, key, r->redis_all_per_s[k], 0);
            snprintf(key, sizeof(key), "%s_call_p50_us", names[k]);
            bench_json_num(&j, key, r->redis_p50_us[k], 2);
        }
        bench_json_num(&j, "lookups_vs_get", bench_ratio(r->rate.per_s, r->redis_per_s[0]), 1);
        bench_json_num(&j, "lookup_latency_vs_get",
                       bench_ratio(r->redis_p50_us[0] * 1e3, r->hit.single.p50), 1);
        bench_json_num(&j, "lookups_vs_get_pipe64", bench_ratio(r->rate.per_s, r->redis_per_s[1]),
                       1);
        bench_json_num(&j, "updates_vs_incr", bench_ratio(r->update_rate.per_s, r->redis_per_s[2]),
                       1);
        bench_json_num(&j, "updates_vs_incr_pipe64",
                       bench_ratio(r->update_rate.per_s, r->redis_per_s[3]), 1);
    } else {
        bench_json_str(&j, "reason", r->redis_skip);
    }
    bench_json_object_end(&j);

    /* Machine. */
    bench_json_machine(&j, m);
    bench_json_num(&j, "run_s", run_s, 1);
    bench_json_end(&j);
}

static void table_human_row(const char *name, const bench_lat *l, double per_s, double bytes)
{
    printf("%-26s %8.1f %8.1f %8.1f", name, l->single.p50, l->single.p99, l->single.p999);
    if (l->batched.count > 0)
        printf(" %8.1f", l->batched.p50);
    else
        printf(" %8s", "-");
    if (per_s > 0)
        printf(" %10.2fM", per_s / 1e6);
    else
        printf(" %11s", "");
    if (bytes > 0)
        printf(" %9.1f", bytes);
    putchar('\n');
}

static void table_human(const table_cfg *cfg, const bench_machine *m, const table_results *r)
{
    const double n = (double)cfg->connectors;
    const char *same = r->table_on_hugepages ? "2M" : "4K";
    const char *other = r->table_on_hugepages ? "4K" : "2M";
    char label[64];
    printf("connrep-bench table: %" PRIu64 " connectors, %" PRIu64
           " shard(s), %.1f s per phase in %" PRIu64 " rounds, seed %" PRIu64 "\n",
           cfg->connectors, cfg->shards, cfg->c.seconds, cfg->rounds, cfg->c.seed);
    printf("%-26s %8s %8s %8s %8s %11s %9s\n", "ns (dependent chain)", "p50", "p99", "p99.9",
           "batched", "ops/s", "B/conn");
    table_human_row("table lookup", &r->hit, r->rate.per_s, (double)r->after_fill.bytes / n);
    table_human_row("table lookup, absent", &r->miss, 0, 0);
    table_human_row("rwlock baseline lookup", &r->base_hit, r->base_rate.per_s,
                    (double)r->baseline_bytes / n);
    table_human_row("rwlock baseline, absent", &r->base_miss, 0, 0);
    snprintf(label, sizeof(label), "dram probe, %s pages", same);
    table_human_row(label, &r->dram_same, 0, 0);
    snprintf(label, sizeof(label), "dram probe, %s pages", other);
    table_human_row(label, &r->dram_other, 0, 0);
    table_human_row("update (scoring)", &r->update, r->update_rate.per_s, 0);
    printf("%-26s %8s %8s %8s %8s %10.2fM\n", "update, batched", "", "", "", "",
           r->update_batch_rate.per_s / 1e6);
    printf("lookup p50 / dram (%s pages) %.2f, / baseline %.2f; lookups/s vs baseline %.2f; "
           "hash %.1f ns\n",
           same, bench_ratio(r->hit.single.p50, r->dram_same.single.p50),
           bench_ratio(r->hit.single.p50, r->base_hit.single.p50),
           bench_ratio(r->rate.per_s, r->base_rate.per_s), r->key_hash_ns);
    printf("fill: %" PRIu64 " failed, %" PRIu64 " evicted; updates: %" PRIu64 " errors, %" PRIu64
           " evictions\n",
           r->fill_failed, r->after_fill.evictions, r->update_errors,
           r->after_update.evictions - r->after_fill.evictions);
    if (r->redis_on)
        printf("redis %s (%" PRIu64 " keys, unix socket, one client): GET %.0f/s, GET x64 %.0f/s, "
               "INCR %.0f/s, INCR x64 %.0f/s;\n  table lookups/s / GET %.0fx, / GET x64 %.1fx; "
               "updates/s / INCR %.0fx, / INCR x64 %.1fx\n",
               r->redis_version, r->redis_keys, r->redis_per_s[0], r->redis_per_s[1],
               r->redis_per_s[2], r->redis_per_s[3], bench_ratio(r->rate.per_s, r->redis_per_s[0]),
               bench_ratio(r->rate.per_s, r->redis_per_s[1]),
               bench_ratio(r->update_rate.per_s, r->redis_per_s[2]),
               bench_ratio(r->update_rate.per_s, r->redis_per_s[3]));
    else
        printf("redis: skipped: %s\n", r->redis_skip);
    printf("machine: %s, %u cores, kernel %s, L3 %" PRIu64 " MiB, clock %s, THP %s, DAMON %s\n",
           m->cpu_model, m->cores, m->kernel, m->l3_bytes >> 20, m->clocksource, m->thp, m->damon);
}

/* ---- The scenario --------------------------------------------------------------- */

static int table_run(int argc, char **argv)
{
    table_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    bench_common_init(&cfg.c, 2.0);
    cfg.connectors = 1000000;
    cfg.shards = 1;
    cfg.tenants = 16;
    cfg.new_ratio = 0.01;
    cfg.events = 1u << 21;
    cfg.rounds = 4;
    cfg.batch = 256;
    const bench_opt opts[] = {
        {"connectors", BENCH_OPT_U64, &cfg.connectors, "N",
         "connectors to insert; the table's capacity is N", 64, 2147483648.0},
        {"shards", BENCH_OPT_U64, &cfg.shards, "K", "table shards (power of two)", 1, 256},
        {"tenants", BENCH_OPT_U64, &cfg.tenants, "T", "distinct tenants", 1, 256},
        {"rounds", BENCH_OPT_U64, &cfg.rounds, "R", "rounds the lookup phases are interleaved in",
         1, 1000},
        {"new-ratio", BENCH_OPT_DOUBLE, &cfg.new_ratio, "F",
         "fraction of update events naming a new connector", 0, 1},
        {"events", BENCH_OPT_U64, &cfg.events, "E", "update events pre-built (replayed)", 1024,
         1e9},
        {"batch", BENCH_OPT_U64, &cfg.batch, "B", "events per crp_score_apply_batch_sw call", 1,
         65536},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    if (!bench_opts_parse(&cfg.c, opts, nopts, argc, argv))
        return BENCH_EXIT_USAGE;
    if (cfg.c.help) {
        bench_opts_usage(stdout, "table", table_description, &cfg.c, opts, nopts);
        return BENCH_EXIT_OK;
    }
    if ((cfg.shards & (cfg.shards - 1)) != 0) {
        fprintf(stderr, "connrep-bench table: --shards must be a power of two\n");
        return BENCH_EXIT_USAGE;
    }
    bench_progress_quiet(cfg.c.quiet);
    bench_watchdog_arm(cfg.c.max_seconds);
    uint64_t run_start = bench_now_ns();
    bench_progress("table: %" PRIu64 " connectors, %" PRIu64 " shard(s), %.1f s per phase",
                   cfg.connectors, cfg.shards, cfg.c.seconds);

    int rc = BENCH_EXIT_FAIL;
    bench_machine m;
    bench_machine_get(&m);
    table_results *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return BENCH_EXIT_FAIL;
    r->overhead_ns = bench_clock_overhead_ns();

    crp_table *t = NULL;
    bench_rwmap *base = NULL;
    bench_probe probe = {0};
    table_accs accs = {0};
    crp_key *keys = NULL, *absent = NULL;
    table_events te = {0};
    /* Absent keys: ids numbered far beyond anything inserted. */
    uint64_t nabsent = cfg.connectors < (1u << 20) ? cfg.connectors : (1u << 20);
    crp_table_opts topts = {
        .capacity = cfg.connectors,
        .shards = (unsigned)cfg.shards,
        /* Fixed and never 0 (0 would ask the table for a random seed). */
        .seed = bench_mix64(cfg.c.seed) | 1u,
    };
    crp_err err = crp_table_create(&t, &topts);
    if (err != CRP_OK) {
        fprintf(stderr, "connrep-bench table: crp_table_create: %s\n", crp_strerror(err));
        goto out_free;
    }
    keys = malloc(cfg.connectors * sizeof(*keys));
    absent = malloc(nabsent * sizeof(*absent));
    if (keys == NULL || absent == NULL || !table_accs_new(&accs)) {
        fprintf(stderr, "connrep-bench table: out of memory\n");
        goto out_free;
    }

    bench_progress("table: inserting %" PRIu64 " connectors", cfg.connectors);
    table_fill(&cfg, t, keys, r);
    bench_progress("table: %" PRIu64 " live, %" PRIu64 " failed, %" PRIu64
                   " evicted, %.1f B/connector, %.2f s",
                   r->after_fill.live, r->fill_failed, r->after_fill.evictions,
                   (double)r->after_fill.bytes / (double)cfg.connectors, r->fill_s);
    for (uint64_t i = 0; i < nabsent; i++) {
        char id[BENCH_GUID_LEN];
        bench_guid(cfg.c.seed, (1ull << 62) + i, id);
        absent[i] = crp_table_key(t, id, sizeof(id));
    }
    /* A random order of all present keys, streamed sequentially: every
     * lookup goes to a random slot and every key is looked up once per pass. */
    bench_shuffle_keys(keys, cfg.connectors, cfg.c.seed);

    bench_progress("baseline: inserting %" PRIu64 " connectors", cfg.connectors);
    base = table_baseline_build(&cfg, t, r);
    if (base == NULL)
        goto out_free;
    size_t probe_bytes = table_probe_size(&m, r->after_fill.bytes);
    if (!table_probe_build(&cfg, probe_bytes, r->table_on_hugepages, &probe))
        goto out_free;
    r->probe_bytes = probe.bytes;
    uint64_t rss, huge;
    r->probe_same_huge_fraction =
        bench_smaps(probe.buf, &rss, &huge) && rss > 0 ? (double)huge / (double)rss : NAN;

    table_rounds(&cfg, t, base, &probe, keys, absent, nabsent, r->overhead_ns, &accs);
    table_accs_finish(&accs, r);
    bench_probe_free(&probe);
    bench_rwmap_destroy(&base);
    free(absent);
    absent = NULL;
    free(keys);
    keys = NULL;

    /* The other page size, once, for reference: how much of a miss is the
     * page walk. */
    if (!table_probe_build(&cfg, probe_bytes, !r->table_on_hugepages, &probe))
        goto out_free;
    bench_progress("probe: chasing for %.1f s", cfg.c.seconds / 2);
    bench_acc *other = bench_acc_new();
    if (other == NULL)
        goto out_free;
    other->ops =
        bench_probe_run(&probe, cfg.c.seconds / 2, r->overhead_ns, &other->single, &other->batched);
    bench_acc_finish(&other, &r->dram_other);
    bench_probe_free(&probe);

    bench_progress("hash: crp_table_key on %u-byte ids, %.1f s", BENCH_GUID_LEN, cfg.c.seconds / 4);
    r->key_hash_ns = table_hash_cost(t, cfg.c.seed, cfg.c.seconds / 4);

    bench_progress("update: building %" PRIu64 " events", cfg.events);
    if (!table_events_build(&cfg, &te)) {
        fprintf(stderr, "connrep-bench table: out of memory for events\n");
        goto out_free;
    }
    if (!table_updates(&cfg, t, &te, r->overhead_ns, r))
        goto out_free;
    if (!table_redis(&cfg, r))
        goto out_free;

    double run_s = (double)(bench_now_ns() - run_start) / 1e9;
    bench_progress("done in %.1f s", run_s);
    if (cfg.c.json)
        table_json(&cfg, &m, r, run_s);
    else
        table_human(&cfg, &m, r);
    rc = BENCH_EXIT_OK;

out_free:
    table_events_free(&te);
    bench_probe_free(&probe);
    table_accs_finish(&accs, r);
    bench_rwmap_destroy(&base);
    free(absent);
    free(keys);
    crp_table_destroy(&t);
    free(r);
    return rc;
}

const bench_scenario bench_scenario_table = {
    .name = "table",
    .summary = "connector table lookups and updates vs DRAM and a rwlock hash table",
    .run = table_run,
};
