/* The verdict generator: see feedgen.h. */
#define _DEFAULT_SOURCE

#include "feedgen.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Ids kept in memory up to this many connectors (576 MiB of text). */
#define KEEP_IDS_MAX (16u << 20)

/* Salts that give each derived quantity its own hash stream. */
#define SALT_BAD 0x6261642d636f6e6eull /* "bad-conn" */
#define SALT_RNG 0x666565642d726e67ull /* "feed-rng" */

bool bench_feedgen_init(bench_feedgen *g, const bench_feedgen_opts *o, uint64_t stream)
{
    memset(g, 0, sizeof(*g));
    if (o->connectors == 0 || o->connectors >= (1ull << 32) || o->tenants == 0 ||
        o->tenants > BENCH_FEEDGEN_TENANTS_MAX || o->batch == 0 || o->batch > CRP_FEED_COUNT_MAX ||
        !(o->bad_ratio >= 0.0 && o->bad_ratio <= 1.0))
        return false;
    g->o = *o;
    g->bad_below =
        o->bad_ratio >= 1.0 ? UINT64_MAX : (uint64_t)(o->bad_ratio * 18446744073709551616.0);
    g->rng = bench_mix64(o->seed ^ SALT_RNG ^ bench_mix64(stream));
    for (uint64_t t = 0; t < o->tenants; t++)
        g->tenant_len[t] = (uint8_t)bench_tenant_name(t, g->tenant[t], sizeof(g->tenant[t]));
    if (o->connectors <= KEEP_IDS_MAX) {
        g->ids = malloc(o->connectors * BENCH_GUID_LEN);
        if (g->ids != NULL) {
            for (uint64_t i = 0; i < o->connectors; i++)
                bench_guid(o->seed, i, g->ids + i * BENCH_GUID_LEN);
        }
    }
    return true;
}

void bench_feedgen_fini(bench_feedgen *g)
{
    free(g->ids);
    g->ids = NULL;
}

size_t bench_feedgen_frame_cap(const bench_feedgen *g)
{
    return CRP_FEED_HEADER_SIZE +
           (size_t)g->o.batch * (CRP_FEED_EVENT_MIN_SIZE + BENCH_GUID_LEN + CRP_WIRE_TENANT_MAX);
}

const char *bench_feedgen_id(bench_feedgen *g, uint64_t i)
{
    if (g->ids != NULL)
        return g->ids + i * BENCH_GUID_LEN;
    bench_guid(g->o.seed, i, g->scratch);
    return g->scratch;
}

bool bench_feedgen_is_bad(const bench_feedgen *g, uint64_t i)
{
    if (g->bad_below == 0)
        return false;
    return bench_mix64(g->o.seed ^ SALT_BAD ^ (i * 0x9e3779b97f4a7c15u)) < g->bad_below;
}

uint64_t bench_feedgen_bad_count(const bench_feedgen *g)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < g->o.connectors; i++)
        n += bench_feedgen_is_bad(g, i);
    return n;
}

uint64_t bench_feedgen_fill_events(const bench_feedgen *g)
{
    return g->o.connectors + 3 * bench_feedgen_bad_count(g);
}

/* A message's verdict bits for a clean or a compromised connector, from
 * one random number (per mille buckets; see feedgen.h). */
static uint16_t verdict_of(bool bad, uint64_t r)
{
    uint64_t pm = bench_below(r, 1000);
    if (!bad) {
        if (pm < 20)
            return CRP_FEED_VERDICT_SPAM;
        if (pm < 25)
            return CRP_FEED_VERDICT_BULK;
        return 0;
    }
    if (pm < 350)
        return CRP_FEED_VERDICT_SPAM;
    if (pm < 500)
        return CRP_FEED_VERDICT_SPAM | CRP_FEED_VERDICT_HC_SPAM;
    if (pm < 650)
        return CRP_FEED_VERDICT_PHISH;
    if (pm < 750)
        return CRP_FEED_VERDICT_PHISH | CRP_FEED_VERDICT_HC_PHISH;
    if (pm < 800)
        return CRP_FEED_VERDICT_MALWARE;
    return 0;
}

static crp_feed_event event_of(bench_feedgen *g, uint64_t i, uint16_t verdict, uint16_t recipients,
                               uint64_t ts_ms)
{
    uint64_t t = bench_tenant_of(g->o.seed, i, g->o.tenants);
    return (crp_feed_event){
        .ts_ms = ts_ms,
        .verdict = verdict,
        .recipients = recipients,
        .id = bench_feedgen_id(g, i),
        .id_len = BENCH_GUID_LEN,
        .tenant = g->tenant[t],
        .tenant_len = g->tenant_len[t],
    };
}

size_t bench_feedgen_traffic(bench_feedgen *g, void *buf, size_t cap, uint64_t producer,
                             uint64_t seq, uint64_t ts_ms, uint32_t count)
{
    crp_feed_builder b;
    if (count == 0 || count > g->o.batch || !crp_feed_builder_init(&b, buf, cap, producer, seq))
        return 0;
    for (uint32_t k = 0; k < count; k++) {
        /* One draw picks the connector (high bits), another the verdict
         * and the recipients. Uniform popularity; a skewed one (Zipf) would
         * replace this pick. */
        uint64_t i = bench_below(bench_rand(&g->rng), g->o.connectors);
        uint64_t r = bench_rand(&g->rng);
        uint16_t rcpt = (uint16_t)(1u + (r & 3u));
        bool bad = bench_feedgen_is_bad(g, i);
        uint16_t verdict = bad || !g->o.replayed ? verdict_of(bad, r) : 0;
        crp_feed_event ev = event_of(g, i, verdict, rcpt, ts_ms);
        if (!crp_feed_builder_add(&b, &ev))
            return 0;
    }
    return crp_feed_builder_finish(&b);
}

size_t bench_feedgen_fill(bench_feedgen *g, uint64_t *cursor, void *buf, size_t cap,
                          uint64_t producer, uint64_t seq, uint32_t *events)
{
    uint32_t batch = g->o.batch < 4 ? 4 : g->o.batch;
    crp_feed_builder b;
    *events = 0;
    if (*cursor >= g->o.connectors || !crp_feed_builder_init(&b, buf, cap, producer, seq))
        return 0;
    uint32_t n = 0;
    while (*cursor < g->o.connectors) {
        uint64_t i = *cursor;
        bool bad = bench_feedgen_is_bad(g, i);
        uint32_t need = bad ? 4 : 1;
        if (n + need > batch)
            break;
        crp_feed_event ev = event_of(g, i, 0, 1, 0);
        bool ok = crp_feed_builder_add(&b, &ev);
        ev.verdict = CRP_FEED_VERDICT_MALWARE;
        for (uint32_t k = 1; ok && k < need; k++)
            ok = crp_feed_builder_add(&b, &ev);
        if (!ok)
            return 0; /* cap too small for a frame of `batch` events */
        n += need;
        (*cursor)++;
    }
    *events = n;
    return crp_feed_builder_finish(&b);
}

uint64_t bench_feedgen_producer_id(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t id = bench_mix64(((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                              ((uint64_t)getpid() << 32));
    return id != 0 ? id : 1;
}
