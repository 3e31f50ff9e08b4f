/* connrep-replay: the in-process engine on a generated verdict stream.
 *
 * Loads the config (built-in defaults without --config), builds the
 * connector table, generates a deterministic stream of verdicts for a
 * population of connectors of which a few are compromised (spammers,
 * phishers, malware senders, floods), replays it through the scoring
 * writers — one thread per table shard, as the daemon does — and prints
 * which connectors got restricted and why.
 *
 * It uses anonymous memory for the table even when the config names a
 * shared-memory object, so it never disturbs a running connrepd.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crp/clock.h"
#include "crp/config.h"
#include "crp/scoring.h"
#include "crp/table.h"

enum profile { CLEAN, SPAMMER, PHISHER, HC_PHISHER, MALWARE, FLOODER, PROFILES };
static const char *const profile_names[PROFILES] = {"clean",        "spammer", "phisher",
                                                    "hc-phisher",   "malware", "flooder"};

struct conn {
    char id[40];
    const char *tenant;
    enum profile profile;
};

struct shard_work {
    crp_table *table;
    const crp_policy *policy;
    crp_event *events;
    size_t n_events, cap_events;
    uint64_t applied, failed;
    crp_transition *restrictions;
    size_t n_restrictions, cap_restrictions;
};

static const char *const tenants[] = {"contoso.com", "fabrikam.com", "tailspin.com",
                                      "woodgrove.com"};

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: deterministic for a given --seed. */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: connrep-replay [--config FILE] [--connectors N] [--events N] [--seed N]\n"
            "\n"
            "Replays a generated verdict stream through the in-process engine and prints\n"
            "the connectors that got restricted, with the rules that tripped.\n"
            "\n"
            "  --config FILE     connrep config (default: built-in defaults)\n"
            "  --connectors N    connector population (default 20000)\n"
            "  --events N        verdict events to replay (default 2000000)\n"
            "  --seed N          generator seed (default 1)\n"
            "  --help            this text\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

static void *writer_main(void *arg)
{
    struct shard_work *w = arg;
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    for (size_t i = 0; i < w->n_events; i++) {
        size_t ntr = 0;
        /* The stream carries its own timestamps; "now" is the event time
         * so the replay behaves as if it ran live. */
        crp_err err =
            crp_score_apply_sw(w->table, w->policy, &w->events[i], w->events[i].ts_ms, tr, &ntr);
        if (err != CRP_OK) {
            w->failed++;
            continue;
        }
        w->applied++;
        for (size_t j = 0; j < ntr; j++) {
            if (tr[j].kind != CRP_TR_RESTRICTED && tr[j].kind != CRP_TR_WOULD_RESTRICT)
                continue;
            if (w->n_restrictions == w->cap_restrictions)
                continue; /* the report is bounded; counts stay right */
            w->restrictions[w->n_restrictions++] = tr[j];
        }
    }
    return NULL;
}

static void format_reasons(unsigned bits, char *buf, size_t cap)
{
    const char *names[8];
    size_t n = crp_reason_names(bits, names, 8), off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? "," : "", names[i]);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    uint64_t n_conns = 20000, n_events = 2000000, seed = 1;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"connectors", required_argument, NULL, 'n'},
        {"events", required_argument, NULL, 'e'}, {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:n:e:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'n':
            if (!parse_u64(optarg, &n_conns) || n_conns == 0 || n_conns > 10000000) {
                fprintf(stderr, "connrep-replay: --connectors: expected 1..10000000, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'e':
            if (!parse_u64(optarg, &n_events) || n_events == 0 || n_events > 100000000) {
                fprintf(stderr, "connrep-replay: --events: expected 1..100000000, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 's':
            if (!parse_u64(optarg, &seed)) {
                fprintf(stderr, "connrep-replay: --seed: expected a number, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    crp_config cfg;
    char err[1024];
    if (crp_config_load(&cfg, config_path, err, sizeof err) != CRP_OK) {
        fprintf(stderr, "connrep-replay: %s\n", err);
        return 2;
    }
    crp_policy policy;
    crp_policy_from_config(&policy, &cfg);

    uint64_t capacity = cfg.engine.max_connectors;
    if (capacity < n_conns) {
        fprintf(stderr,
                "connrep-replay: note: %llu connectors exceed max_connectors = %llu; the "
                "table will evict idle clean ones\n",
                (unsigned long long)n_conns, (unsigned long long)capacity);
    }
    crp_table *table = NULL;
    crp_table_opts topts = {.capacity = capacity, .shards = cfg.engine.shards};
    crp_err e = crp_table_create(&table, &topts);
    if (e != CRP_OK) {
        fprintf(stderr, "connrep-replay: cannot create the table: %s\n", crp_strerror(e));
        crp_config_fini(&cfg);
        return 1;
    }
    unsigned shards = crp_table_shards(table);

    /* The population: one compromised connector in 200, spread over the
     * profiles; the rest clean with a little background spam. */
    uint64_t s = seed;
    struct conn *conns = calloc(n_conns, sizeof *conns);
    struct shard_work *work = calloc(shards, sizeof *work);
    if (conns == NULL || work == NULL) {
        fprintf(stderr, "connrep-replay: out of memory\n");
        return 1;
    }
    size_t compromised[PROFILES] = {0};
    for (uint64_t i = 0; i < n_conns; i++) {
        uint64_t r = rng_next(&s);
        snprintf(conns[i].id, sizeof conns[i].id, "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)r,
                 (unsigned)(r >> 32) & 0xffff, (unsigned)(r >> 48) & 0xfff,
                 (unsigned)(r >> 20) & 0xfff, (unsigned long long)(rng_next(&s) & 0xffffffffffffull));
        conns[i].tenant = tenants[r % 4];
        conns[i].profile = i % 200 == 7 ? (enum profile)(1 + (i / 200) % (PROFILES - 1)) : CLEAN;
        compromised[conns[i].profile]++;
    }
    for (unsigned k = 0; k < shards; k++) {
        work[k].table = table;
        work[k].policy = &policy;
        work[k].cap_events = n_events / shards + n_events / 8 + 16;
        work[k].events = malloc(work[k].cap_events * sizeof(crp_event));
        work[k].cap_restrictions = 4096;
        work[k].restrictions = malloc(work[k].cap_restrictions * sizeof(crp_transition));
        if (work[k].events == NULL || work[k].restrictions == NULL) {
            fprintf(stderr, "connrep-replay: out of memory\n");
            return 1;
        }
    }

    /* Two hours of traffic ending now, in time order. */
    uint64_t end_ms = crp_clock_ms(), span_ms = 2 * 3600 * 1000ull;
    fprintf(stderr, "connrep-replay: generating %llu events for %llu connectors (%u shards)\n",
            (unsigned long long)n_events, (unsigned long long)n_conns, shards);
    for (uint64_t i = 0; i < n_events; i++) {
        uint64_t r = rng_next(&s);
        struct conn *cn = &conns[r % n_conns];
        uint64_t r2 = rng_next(&s);
        uint16_t verdict = 0, recipients = (uint16_t)(1 + r2 % 5);
        unsigned pct = (unsigned)(r2 >> 32) % 1000;
        switch (cn->profile) {
        case CLEAN:
            verdict = pct < 20 ? CRP_VERDICT_SPAM : pct < 60 ? CRP_VERDICT_BULK : 0;
            break;
        case SPAMMER:
            verdict = pct < 700 ? CRP_VERDICT_SPAM | (pct < 200 ? CRP_VERDICT_HC_SPAM : 0) : 0;
            break;
        case PHISHER:
            verdict = pct < 150 ? CRP_VERDICT_PHISH : 0;
            break;
        case HC_PHISHER:
            verdict = pct < 40 ? CRP_VERDICT_PHISH | CRP_VERDICT_HC_PHISH : 0;
            break;
        case MALWARE:
            verdict = pct < 40 ? CRP_VERDICT_MALWARE : 0;
            break;
        case FLOODER:
            recipients = (uint16_t)(500 + r2 % 1000);
            break;
        default:
            break;
        }
        crp_key k = crp_table_key(table, cn->id, strlen(cn->id));
        struct shard_work *w = &work[crp_table_shard_of(table, &k)];
        if (w->n_events == w->cap_events)
            continue;
        w->events[w->n_events++] = (crp_event){
            .id = cn->id,
            .id_len = (uint8_t)strlen(cn->id),
            .tenant = cn->tenant,
            .tenant_len = (uint8_t)strlen(cn->tenant),
            .ts_ms = end_ms - span_ms + span_ms * i / n_events,
            .verdict = verdict,
            .recipients = recipients,
        };
    }

    uint64_t t0 = crp_clock_mono_ns();
    pthread_t *threads = calloc(shards, sizeof *threads);
    for (unsigned k = 0; k < shards; k++)
        pthread_create(&threads[k], NULL, writer_main, &work[k]);
    for (unsigned k = 0; k < shards; k++)
        pthread_join(threads[k], NULL);
    double secs = (double)(crp_clock_mono_ns() - t0) / 1e9;

    uint64_t applied = 0, failed = 0;
    size_t restricted = 0;
    for (unsigned k = 0; k < shards; k++) {
        applied += work[k].applied;
        failed += work[k].failed;
        restricted += work[k].n_restrictions;
    }
    crp_table_stats st;
    crp_table_stats_get(table, &st);
    printf("replayed %llu events in %.2f s (%.2f M events/s on %u writer threads); %llu "
           "refused\n",
           (unsigned long long)applied, secs, (double)applied / secs / 1e6, shards,
           (unsigned long long)failed);
    printf("population: %llu connectors, compromised:", (unsigned long long)n_conns);
    for (int p = 1; p < PROFILES; p++)
        printf(" %zu %s%s", compromised[p], profile_names[p], p + 1 < PROFILES ? "," : "\n");
    printf("table: %llu live of %llu, %llu restricted, %llu evictions\n\n",
           (unsigned long long)st.live, (unsigned long long)st.capacity,
           (unsigned long long)st.restricted, (unsigned long long)st.evictions);

    printf("%s connectors (action = %s):\n",
           policy.action == CRP_ACTION_ALERT_ONLY ? "Would-restrict" : "Restricted",
           crp_action_name(policy.action));
    printf("%-36s  %-14s  %-10s  %-24s  %s\n", "ConnectorId", "Tenant", "Profile", "Reasons",
           "Rules over threshold at the end (value/threshold)");
    size_t shown = 0, true_pos = 0;
    uint64_t cursor = 0;
    crp_record rec;
    while (crp_table_next(table, &cursor, &rec)) {
        if (rec.entry.state != CRP_STATE_RESTRICTED)
            continue;
        enum profile prof = CLEAN;
        for (uint64_t i = 0; i < n_conns; i++) {
            if (strcmp(conns[i].id, rec.id) == 0) {
                prof = conns[i].profile;
                break;
            }
        }
        true_pos += prof != CLEAN;
        if (shown++ >= 40)
            continue;
        printf("%-36s  %-14s  %-10s  ", rec.id, rec.tenant, profile_names[prof]);
        char reasons[128];
        format_reasons(rec.entry.reasons, reasons, sizeof reasons);
        printf("%-24s ", reasons);
        crp_rule_eval ev[CRP_RULE_COUNT];
        size_t n = crp_score_explain(&policy, &rec.entry, end_ms, ev, CRP_RULE_COUNT);
        for (size_t i = 0; i < n; i++)
            if (ev[i].tripped)
                printf(" %s=%.3g/%.3g", ev[i].name, ev[i].value, ev[i].threshold);
        printf("\n");
    }
    if (shown > 40)
        printf("... and %zu more\n", shown - 40);
    size_t n_bad = n_conns - compromised[CLEAN];
    printf("\n%zu restricted: %zu of %zu compromised connectors caught, %zu clean ones "
           "restricted; %zu restriction events recorded\n",
           shown, true_pos, n_bad, shown - true_pos, restricted);

    for (unsigned k = 0; k < shards; k++) {
        free(work[k].events);
        free(work[k].restrictions);
    }
    free(threads);
    free(work);
    free(conns);
    crp_table_destroy(&table);
    crp_config_fini(&cfg);
    return 0;
}
