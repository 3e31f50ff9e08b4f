/* Scenario "ingest": verdict frames through a real connrepd, against raw
 * ZeroMQ PUSH/PULL of the same frames over the same transport.
 *
 * Set-up. Starts connrepd (daemon.c: generated config in a temp dir, ipc://
 * endpoints, max_connectors the next power of two >= N, --shards writer
 * threads) and pre-populates it through its feed with the N connectors
 * (feedgen.c's fill: one clean message each, three malware messages more
 * for the compromised --bad-ratio, which the default rules restrict), then
 * builds a pool of traffic frames of --batch events naming random
 * connectors among the N (at most --pool-mib MiB, replayed in a loop, so
 * clean connectors send only clean messages there: see feedgen.h; each
 * send re-encodes the header with this run's producer id and the next
 * sequence number, so the engine tracks them like a real producer's).
 *
 * Measurement, in --rounds rounds, subject and baseline taking turns (the
 * order alternates between rounds):
 *   - engine: for --seconds / --rounds, PUSH the frames to the daemon's feed
 *     as fast as it takes them (a full queue blocks the sender: the
 *     engine's push-back), then poll the daemon's CRS1 stats on its lookup
 *     socket every millisecond until events_applied has grown by every
 *     event sent (deadline 60 s). The rate is events sent / (first send ->
 *     the poll that saw the last one applied): end to end, queues drained;
 *   - baseline: the same frames, the same way, to a PULL socket on a
 *     thread of the bench (own context, one I/O thread, ipc:// in the same
 *     temp dir) that receives and discards them; the rate is events sent /
 *     (first send -> last frame received).
 * Reported: the medians over the rounds, their ratio, the per-round values,
 * the daemon's CPU time per thread during the engine phases (where the
 * cores go), and the daemon's counters (rejections, sequence gaps,
 * push-back waits, refused events) which should all be 0 but push-back.
 *
 * The daemon runs the built-in defaults except for the endpoints, the
 * table size, the shards and the sending limits ([scoring]
 * recipients_per_hour/day raised to 10^12): replaying frames at millions of
 * events per second over a small population would otherwise restrict
 * every connector for its volume within seconds, and the run would measure
 * a mass restriction instead of the feed.
 */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <zmq.h>

#include "bench.h"
#include "daemon.h"
#include "feedgen.h"
#include "scenarios.h"
#include "zbase.h"

#define INGEST_ROUNDS_MAX 64

/* Targets of DESIGN.md section 7 and issue 3, reported next to the
 * figures, never asserted. */
#define TARGET_EVENTS_PER_S 2000000.0
#define TARGET_RATIO        0.8

typedef struct ingest_cfg {
    bench_common c;
    uint64_t connectors;
    uint64_t batch;
    uint64_t shards;
    uint64_t rounds;
    uint64_t tenants;
    uint64_t pool_mib;
    double bad_ratio;
} ingest_cfg;

static const char ingest_description[] =
    "Starts connrepd (generated config, ipc:// endpoints in a temp dir,\n"
    "max_connectors the next power of two >= N), fills it with N connectors\n"
    "through its feed, then PUSHes frames of --batch events (random connectors\n"
    "among the N, a --bad-ratio of them compromised) for --seconds and reports\n"
    "the events per second the engine APPLIED (its events_applied counter,\n"
    "polled until every event sent is applied), against raw ZeroMQ PUSH/PULL of\n"
    "the same frames to a PULL thread in the bench over the same transport.\n"
    "Engine and baseline take turns in --rounds rounds; medians and their ratio\n"
    "are reported, with the daemon's CPU per thread. The daemon is always\n"
    "stopped (SIGTERM, then SIGKILL), also on error, Ctrl-C or the watchdog.";

/* ---- The frame pool ------------------------------------------------------------ */

typedef struct ingest_pool {
    unsigned char *mem;
    size_t stride;
    size_t n;
    size_t *len;
    uint32_t *count;
    size_t next;
    double mean_bytes;
} ingest_pool;

static bool pool_build(const ingest_cfg *cfg, bench_feedgen *g, ingest_pool *p)
{
    p->stride = (bench_feedgen_frame_cap(g) + 63u) & ~(size_t)63u;
    uint64_t want = (cfg->connectors + cfg->batch - 1) / cfg->batch;
    uint64_t limit = (cfg->pool_mib << 20) / p->stride;
    if (want > limit)
        want = limit;
    if (want < 16)
        want = 16;
    p->n = (size_t)want;
    p->mem = malloc(p->n * p->stride);
    p->len = calloc(p->n, sizeof(*p->len));
    p->count = calloc(p->n, sizeof(*p->count));
    if (p->mem == NULL || p->len == NULL || p->count == NULL)
        return false;
    double total = 0;
    for (size_t i = 0; i < p->n; i++) {
        p->len[i] = bench_feedgen_traffic(g, p->mem + i * p->stride, p->stride, 0, 0, 0,
                                          (uint32_t)cfg->batch);
        p->count[i] = (uint32_t)cfg->batch;
        if (p->len[i] == 0)
            return false;
        total += (double)p->len[i];
    }
    p->mean_bytes = total / (double)p->n;
    return true;
}

static void pool_free(ingest_pool *p)
{
    free(p->mem);
    free(p->len);
    free(p->count);
    memset(p, 0, sizeof(*p));
}

/* ---- Sending ------------------------------------------------------------------- */

typedef struct ingest_sent {
    uint64_t frames;
    uint64_t events;
    uint64_t bytes;
    uint64_t t0, t_end;
} ingest_sent;

/* Sends pool frames for `seconds`, each with the next sequence number. */
static bool send_for(void *sock, ingest_pool *p, uint64_t producer, uint64_t *seq, double seconds,
                     bench_daemon *d, ingest_sent *s)
{
    memset(s, 0, sizeof(*s));
    s->t0 = bench_now_ns();
    uint64_t end = s->t0 + (uint64_t)(seconds * 1e9);
    uint64_t now;
    do {
        size_t i = p->next++;
        if (p->next == p->n)
            p->next = 0;
        unsigned char *f = p->mem + i * p->stride;
        crp_feed_encode_header(f, CRP_FEED_HEADER_SIZE, producer, (*seq)++, p->count[i]);
        if (!bench_push_send(sock, f, p->len[i], d))
            return false;
        s->frames++;
        s->events += p->count[i];
        s->bytes += p->len[i];
        now = bench_now_ns();
    } while (now < end);
    s->t_end = now;
    return true;
}

/* ---- Results ------------------------------------------------------------------- */

typedef struct ingest_results {
    uint64_t rounds;
    double rate[INGEST_ROUNDS_MAX];        /* engine, end to end */
    double rate_send[INGEST_ROUNDS_MAX];   /* engine, applied while sending */
    double drain_s[INGEST_ROUNDS_MAX];     /* engine: last send -> all applied */
    double base_rate[INGEST_ROUNDS_MAX];   /* raw ZeroMQ */
    double ratio_round[INGEST_ROUNDS_MAX]; /* per round */
    uint64_t frames, events, base_frames, base_events;
    uint64_t subject_ns, base_ns; /* wall time of the timed phases */
    bench_cpu daemon_cpu;         /* during the engine phases */
    uint64_t self_cpu_ns, base_self_cpu_ns;
    /* fill */
    uint64_t fill_events;
    double fill_s;
    uint64_t bad_connectors;
    uint64_t fill_restrictions, fill_published;
    double fill_publish_wait_s;
    /* the daemon's counters at the end */
    uint64_t rejected, seq_gap, seq_repeat, backpressure, refused, restrictions, restricted,
        in_table, evictions, insert_full, applied;
    int exit_status;
} ingest_results;

static uint64_t self_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

/* ---- Phases -------------------------------------------------------------------- */

typedef struct ingest_run {
    const ingest_cfg *cfg;
    bench_daemon *d;
    ingest_pool *pool;
    void *to_engine;
    void *to_sink;
    bench_sink *sink;
    uint64_t producer;
    uint64_t seq;      /* the engine producer's next sequence */
    uint64_t base_seq; /* the baseline's (same work, no one checks it) */
    uint64_t applied;  /* events the engine has applied so far */
    ingest_results *r;
} ingest_run;

static bool fill(ingest_run *x, bench_feedgen *g)
{
    ingest_results *r = x->r;
    if (!bench_daemon_fill(x->d, g, x->producer, &x->seq, &r->fill_events, &r->fill_s))
        return false;
    /* The fill restricted the compromised connectors at once; the events
     * thread publishes (and audits) them at its own pace, and the rounds
     * measure the feed, not that backlog. */
    if (!bench_daemon_settle(x->d, 1.0, 120.0, &r->fill_published, &r->fill_publish_wait_s))
        fprintf(stderr,
                "connrep-bench ingest: the events thread is still publishing after %.0f s; "
                "measuring anyway\n",
                r->fill_publish_wait_s);
    (void)bench_daemon_stat(x->d, "restrictions", &r->fill_restrictions);
    return bench_daemon_stat(x->d, "events_applied", &x->applied);
}

static bool round_engine(ingest_run *x, double slice, uint64_t round)
{
    ingest_results *r = x->r;
    bench_cpu before, after;
    bool have_cpu = bench_cpu_read(x->d->pid, &before);
    uint64_t self0 = self_cpu_ns();
    ingest_sent s;
    if (!send_for(x->to_engine, x->pool, x->producer, &x->seq, slice, x->d, &s))
        return false;
    uint64_t at_send = 0;
    (void)bench_daemon_stat(x->d, "events_applied", &at_send);
    uint64_t t_send = bench_now_ns();
    uint64_t target = x->applied + s.events, last, at;
    if (!bench_daemon_wait(x->d, "events_applied", target, 1, 10.0, 60.0, &last, &at)) {
        fprintf(stderr,
                "connrep-bench ingest: round %" PRIu64 ": the engine applied %" PRIu64
                " of %" PRIu64 " events sent (see frames_rejected in its stats)\n",
                round + 1, last - x->applied, s.events);
        return false;
    }
    if (have_cpu && bench_cpu_read(x->d->pid, &after))
        bench_cpu_add_delta(&r->daemon_cpu, &before, &after);
    r->self_cpu_ns += self_cpu_ns() - self0;
    r->rate[round] = (double)s.events / ((double)(at - s.t0) / 1e9);
    r->rate_send[round] = (double)(at_send - x->applied) / ((double)(t_send - s.t0) / 1e9);
    r->drain_s[round] = (double)(at - s.t_end) / 1e9;
    r->subject_ns += at - s.t0;
    r->frames += s.frames;
    r->events += s.events;
    x->applied = last;
    return true;
}

static bool round_baseline(ingest_run *x, double slice, uint64_t round)
{
    ingest_results *r = x->r;
    uint64_t f0 = bench_sink_frames(x->sink);
    uint64_t self0 = self_cpu_ns();
    ingest_sent s;
    if (!send_for(x->to_sink, x->pool, x->producer ^ 1u, &x->base_seq, slice, NULL, &s))
        return false;
    uint64_t last_ns;
    if (!bench_sink_wait(x->sink, f0 + s.frames, 60.0, &last_ns)) {
        fprintf(stderr, "connrep-bench ingest: the baseline sink lost frames\n");
        return false;
    }
    r->base_self_cpu_ns += self_cpu_ns() - self0;
    r->base_rate[round] = (double)s.events / ((double)(last_ns - s.t0) / 1e9);
    r->base_ns += last_ns - s.t0;
    r->base_frames += s.frames;
    r->base_events += s.events;
    return true;
}

static void final_stats(ingest_run *x)
{
    ingest_results *r = x->r;
    char *s = bench_daemon_stats(x->d, 2000);
    if (s == NULL)
        return;
    r->rejected = bench_stats_sum(s, "frames_rejected");
    bench_stats_get(s, "seq_gap", &r->seq_gap);
    bench_stats_get(s, "seq_repeat", &r->seq_repeat);
    bench_stats_get(s, "feed_backpressure", &r->backpressure);
    bench_stats_get(s, "events_refused", &r->refused);
    bench_stats_get(s, "restrictions", &r->restrictions);
    bench_stats_get(s, "restricted", &r->restricted);
    bench_stats_get(s, "connectors", &r->in_table);
    bench_stats_get(s, "evictions", &r->evictions);
    bench_stats_get(s, "insert_full", &r->insert_full);
    bench_stats_get(s, "events_applied", &r->applied);
    free(s);
}

/* ---- Output -------------------------------------------------------------------- */

/* A thread name as a JSON key: lowercase letters, digits and '_'. */
static void key_of(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = name; *p != '\0' && o + 1 < cap; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        out[o++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '_';
    }
    out[o] = '\0';
}

typedef struct ingest_summary {
    double rate, rate_send, drain_s, base_rate, ratio, ratio_rounds;
} ingest_summary;

static void summarize(const ingest_results *r, ingest_summary *m)
{
    double tmp[INGEST_ROUNDS_MAX];
    size_t n = r->rounds;
    memcpy(tmp, r->rate, n * sizeof(double));
    m->rate = bench_median(tmp, n);
    memcpy(tmp, r->rate_send, n * sizeof(double));
    m->rate_send = bench_median(tmp, n);
    memcpy(tmp, r->drain_s, n * sizeof(double));
    m->drain_s = bench_median(tmp, n);
    memcpy(tmp, r->base_rate, n * sizeof(double));
    m->base_rate = bench_median(tmp, n);
    memcpy(tmp, r->ratio_round, n * sizeof(double));
    m->ratio_rounds = bench_median(tmp, n);
    m->ratio = bench_ratio(m->rate, m->base_rate);
}

static void ingest_json(const ingest_cfg *cfg, const bench_daemon *d, const ingest_pool *p,
                        const bench_machine *mach, const ingest_results *r, double run_s)
{
    ingest_summary m;
    summarize(r, &m);
    double subject_s = (double)r->subject_ns / 1e9;
    bench_json j;
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "scenario", "ingest");
    bench_json_num(&j, "events_per_s", m.rate, 0);
    bench_json_num(&j, "baseline_events_per_s", m.base_rate, 0);
    bench_json_num(&j, "ratio", m.ratio, 3);
    bench_json_num(&j, "ratio_median_of_rounds", m.ratio_rounds, 3);
    bench_json_num(&j, "target_events_per_s", TARGET_EVENTS_PER_S, 0);
    bench_json_num(&j, "target_ratio", TARGET_RATIO, 2);
    bench_json_str(&j, "method",
                   "engine: events sent / (first send -> the CRS1 poll, every 1 ms, that saw "
                   "events_applied include every event sent); baseline: events sent / (first "
                   "send -> last frame received by a PULL thread); medians of interleaved rounds");
    bench_json_str(&j, "transport", "ipc");
    bench_json_u64(&j, "connectors", cfg->connectors);
    bench_json_u64(&j, "capacity", d->capacity);
    bench_json_u64(&j, "shards", d->shards);
    bench_json_u64(&j, "batch", cfg->batch);
    bench_json_num(&j, "frame_bytes", p->mean_bytes, 0);
    bench_json_num(&j, "event_bytes", (p->mean_bytes - CRP_FEED_HEADER_SIZE) / (double)cfg->batch,
                   1);
    bench_json_u64(&j, "pool_frames", p->n);
    bench_json_u64(&j, "frames", r->frames);
    bench_json_u64(&j, "events", r->events);
    bench_json_u64(&j, "baseline_frames", r->base_frames);
    bench_json_u64(&j, "baseline_events", r->base_events);
    bench_json_num(&j, "seconds", cfg->c.seconds, 2);
    bench_json_u64(&j, "rounds", r->rounds);
    bench_json_nums(&j, "events_per_s_rounds", r->rate, r->rounds, 0);
    bench_json_nums(&j, "baseline_events_per_s_rounds", r->base_rate, r->rounds, 0);
    bench_json_num(&j, "events_per_s_while_sending", m.rate_send, 0);
    bench_json_num(&j, "drain_s", m.drain_s, 3);
    bench_json_num(&j, "mb_per_s", m.rate / (double)cfg->batch * p->mean_bytes / 1e6, 1);
    bench_json_num(&j, "baseline_mb_per_s", m.base_rate / (double)cfg->batch * p->mean_bytes / 1e6,
                   1);
    bench_json_u64(&j, "seed", cfg->c.seed);
    bench_json_num(&j, "bad_ratio", cfg->bad_ratio, 4);
    bench_json_u64(&j, "tenants", cfg->tenants);
    /* Fill. */
    bench_json_u64(&j, "fill_events", r->fill_events);
    bench_json_num(&j, "fill_s", r->fill_s, 3);
    bench_json_num(&j, "fill_events_per_s", (double)r->fill_events / r->fill_s, 0);
    bench_json_u64(&j, "bad_connectors", r->bad_connectors);
    bench_json_u64(&j, "fill_restrictions", r->fill_restrictions);
    bench_json_u64(&j, "fill_events_published", r->fill_published);
    bench_json_num(&j, "fill_publish_wait_s", r->fill_publish_wait_s, 2);
    /* Where the cores went. */
    bench_json_num(&j, "daemon_cpu_cores",
                   (double)bench_cpu_total(&r->daemon_cpu) / 1e9 / subject_s, 2);
    bench_json_object_begin(&j, "daemon_cpu_cores_by_thread");
    for (size_t i = 0; i < r->daemon_cpu.n; i++) {
        char key[32];
        key_of(r->daemon_cpu.name[i], key, sizeof(key));
        bench_json_num(&j, key, (double)r->daemon_cpu.ns[i] / 1e9 / subject_s, 3);
    }
    bench_json_object_end(&j);
    bench_json_num(&j, "daemon_runqueue_wait_cores",
                   (double)bench_cpu_total_wait(&r->daemon_cpu) / 1e9 / subject_s, 2);
    bench_json_object_begin(&j, "daemon_runqueue_wait_by_thread");
    for (size_t i = 0; i < r->daemon_cpu.n; i++) {
        char key[32];
        key_of(r->daemon_cpu.name[i], key, sizeof(key));
        bench_json_num(&j, key, (double)r->daemon_cpu.wait_ns[i] / 1e9 / subject_s, 3);
    }
    bench_json_object_end(&j);
    bench_json_num(&j, "bench_cpu_cores", (double)r->self_cpu_ns / 1e9 / subject_s, 2);
    bench_json_num(&j, "baseline_bench_cpu_cores",
                   (double)r->base_self_cpu_ns / ((double)r->base_ns > 0 ? (double)r->base_ns : 1),
                   2);
    /* The daemon's counters. */
    bench_json_object_begin(&j, "daemon");
    bench_json_u64(&j, "events_applied", r->applied);
    bench_json_u64(&j, "frames_rejected", r->rejected);
    bench_json_u64(&j, "seq_gap", r->seq_gap);
    bench_json_u64(&j, "seq_repeat", r->seq_repeat);
    bench_json_u64(&j, "feed_backpressure", r->backpressure);
    bench_json_u64(&j, "events_refused", r->refused);
    bench_json_u64(&j, "restrictions", r->restrictions);
    bench_json_u64(&j, "restricted", r->restricted);
    bench_json_u64(&j, "connectors", r->in_table);
    bench_json_u64(&j, "evictions", r->evictions);
    bench_json_u64(&j, "insert_full", r->insert_full);
    bench_json_u64(&j, "exit_status", (uint64_t)(r->exit_status < 0 ? 255 : r->exit_status));
    bench_json_object_end(&j);
    bench_json_str(&j, "zmq_version", bench_zmq_version());
    bench_json_machine(&j, mach);
    bench_json_num(&j, "run_s", run_s, 1);
    bench_json_end(&j);
}

static void ingest_human(const ingest_cfg *cfg, const bench_daemon *d, const ingest_pool *p,
                         const bench_machine *mach, const ingest_results *r)
{
    ingest_summary m;
    summarize(r, &m);
    double subject_s = (double)r->subject_ns / 1e9;
    printf("connrep-bench ingest: %" PRIu64 " connectors (capacity %" PRIu64 "), %u shards, "
           "frames of %" PRIu64 " events (%.0f B), ipc, %" PRIu64 " rounds of %.2f s\n",
           cfg->connectors, d->capacity, d->shards, cfg->batch, p->mean_bytes, r->rounds,
           cfg->c.seconds / (double)r->rounds);
    printf("%-30s %12s   %s\n", "", "events/s", "per round");
    printf("%-30s %11.2fM  ", "engine, applied (end to end)", m.rate / 1e6);
    for (uint64_t i = 0; i < r->rounds; i++)
        printf(" %.2fM", r->rate[i] / 1e6);
    printf("\n%-30s %11.2fM  ", "raw ZeroMQ PUSH/PULL", m.base_rate / 1e6);
    for (uint64_t i = 0; i < r->rounds; i++)
        printf(" %.2fM", r->base_rate[i] / 1e6);
    printf("\nratio %.3f (target >= %.2f); engine target %.1fM events/s; applied while sending "
           "%.2fM/s, drain %.3f s\n",
           m.ratio, TARGET_RATIO, TARGET_EVENTS_PER_S / 1e6, m.rate_send / 1e6, m.drain_s);
    printf("daemon CPU %.2f cores:", (double)bench_cpu_total(&r->daemon_cpu) / 1e9 / subject_s);
    for (size_t i = 0; i < r->daemon_cpu.n; i++) {
        double c = (double)r->daemon_cpu.ns[i] / 1e9 / subject_s;
        if (c >= 0.005)
            printf(" %s %.2f", r->daemon_cpu.name[i], c);
    }
    printf("; waiting for a CPU %.2f; bench %.2f cores\n",
           (double)bench_cpu_total_wait(&r->daemon_cpu) / 1e9 / subject_s,
           (double)r->self_cpu_ns / 1e9 / subject_s);
    printf("fill: %" PRIu64 " events in %.2f s (%.2fM/s), %" PRIu64
           " restrictions published %.2f s later; daemon: %" PRIu64 " rejected, %" PRIu64
           " seq gaps, %" PRIu64 " repeats, %" PRIu64 " push-back waits, %" PRIu64
           " refused, %" PRIu64 " restricted, %" PRIu64 " evictions, exit %d\n",
           r->fill_events, r->fill_s, (double)r->fill_events / r->fill_s / 1e6,
           r->fill_restrictions, r->fill_publish_wait_s, r->rejected, r->seq_gap, r->seq_repeat,
           r->backpressure, r->refused, r->restricted, r->evictions, r->exit_status);
    printf("machine: %s, %u cores, kernel %s, ZeroMQ %s\n", mach->cpu_model, mach->cores,
           mach->kernel, bench_zmq_version());
}

/* ---- The scenario --------------------------------------------------------------- */

static void set_int(void *sock, int opt, int v)
{
    (void)zmq_setsockopt(sock, opt, &v, sizeof(v));
}

static void *push_socket(void *zctx, const char *endpoint)
{
    void *s = zmq_socket(zctx, ZMQ_PUSH);
    if (s == NULL)
        return NULL;
    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_SNDTIMEO, 1000);
    if (zmq_connect(s, endpoint) != 0) {
        fprintf(stderr, "connrep-bench ingest: connect %s: %s\n", endpoint, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

static int ingest_run_all(ingest_cfg *cfg, const bench_machine *mach, uint64_t run_start)
{
    int rc = BENCH_EXIT_FAIL;
    ingest_results *r = calloc(1, sizeof(*r));
    bench_daemon *d = calloc(1, sizeof(*d));
    bench_sink sink;
    ingest_pool pool;
    bench_feedgen g;
    void *zctx = NULL, *to_engine = NULL, *to_sink = NULL;
    memset(&sink, 0, sizeof(sink));
    memset(&pool, 0, sizeof(pool));
    memset(&g, 0, sizeof(g));
    if (r == NULL || d == NULL)
        goto out;
    r->rounds = cfg->rounds;
    r->exit_status = -1;

    bench_feedgen_opts go = {
        .connectors = cfg->connectors,
        .seed = cfg->c.seed,
        .tenants = cfg->tenants,
        .bad_ratio = cfg->bad_ratio,
        .batch = (uint32_t)cfg->batch,
        .replayed = true,
    };
    if (!bench_feedgen_init(&g, &go, 0)) {
        fprintf(stderr, "connrep-bench ingest: bad generator options\n");
        goto out;
    }
    r->bad_connectors = bench_feedgen_bad_count(&g);
    bench_progress("ingest: building the frame pool");
    if (!pool_build(cfg, &g, &pool)) {
        fprintf(stderr, "connrep-bench ingest: out of memory for the frame pool\n");
        goto out;
    }
    bench_progress("ingest: %zu frames of %" PRIu64 " events, %.0f bytes each", pool.n, cfg->batch,
                   pool.mean_bytes);

    if (!bench_daemon_init(d))
        goto out;
    /* See the top of this file: volume limits out of the way. */
    bench_daemon_set(d, "scoring", "recipients_per_hour", "1000000000000");
    bench_daemon_set(d, "scoring", "recipients_per_day", "1000000000000");
    bench_daemon_opts dopts = {
        .connectors = cfg->connectors,
        .shards = (unsigned)cfg->shards,
        .max_frame_bytes = pool.stride > (4u << 20) ? pool.stride : 0,
    };
    bench_progress("ingest: starting %s", bench_daemon_binary());
    if (!bench_daemon_start(d, &dopts))
        goto out;
    bench_progress("ingest: connrepd pid %ld, capacity %" PRIu64 ", %u shards, in %s", (long)d->pid,
                   d->capacity, d->shards, d->dir);

    char sink_ep[BENCH_DAEMON_PATH_MAX + 32];
    snprintf(sink_ep, sizeof(sink_ep), "ipc://%s/baseline-feed", d->dir);
    zctx = zmq_ctx_new();
    if (zctx == NULL || !bench_sink_start(&sink, sink_ep))
        goto out;
    to_engine = push_socket(zctx, d->feed_ep);
    to_sink = push_socket(zctx, sink_ep);
    if (to_engine == NULL || to_sink == NULL)
        goto out;

    ingest_run x = {
        .cfg = cfg,
        .d = d,
        .pool = &pool,
        .to_engine = to_engine,
        .to_sink = to_sink,
        .sink = &sink,
        .producer = bench_feedgen_producer_id(),
        .seq = 1,
        .base_seq = 1,
        .r = r,
    };
    bench_progress("fill: %" PRIu64 " connectors (%" PRIu64 " compromised)", cfg->connectors,
                   r->bad_connectors);
    if (!fill(&x, &g))
        goto out;
    bench_progress("fill: %" PRIu64 " events applied in %.2f s (%.2fM/s)", r->fill_events,
                   r->fill_s, (double)r->fill_events / r->fill_s / 1e6);
    bench_feedgen_fini(&g);

    double slice = cfg->c.seconds / (double)cfg->rounds;
    for (uint64_t i = 0; i < cfg->rounds; i++) {
        /* Alternate who goes first, so drift within a round evens out. */
        bool ok = i % 2 == 0 ? round_engine(&x, slice, i) && round_baseline(&x, slice, i)
                             : round_baseline(&x, slice, i) && round_engine(&x, slice, i);
        if (!ok)
            goto out;
        r->ratio_round[i] = bench_ratio(r->rate[i], r->base_rate[i]);
        bench_progress("round %" PRIu64 " of %" PRIu64 ": engine %.2fM events/s (drain %.3f s), "
                       "raw ZeroMQ %.2fM events/s, ratio %.3f",
                       i + 1, cfg->rounds, r->rate[i] / 1e6, r->drain_s[i], r->base_rate[i] / 1e6,
                       r->ratio_round[i]);
    }
    final_stats(&x);
    rc = BENCH_EXIT_OK;

out:
    if (to_engine != NULL)
        zmq_close(to_engine);
    if (to_sink != NULL)
        zmq_close(to_sink);
    if (zctx != NULL)
        zmq_ctx_term(zctx);
    bench_sink_stop(&sink);
    if (d != NULL) {
        if (d->pid > 0)
            bench_progress("ingest: stopping connrepd");
        int st = bench_daemon_stop(d);
        if (r != NULL)
            r->exit_status = st;
        if (rc == BENCH_EXIT_OK && st != 0) {
            fprintf(stderr, "connrep-bench ingest: connrepd exited with status %d\n", st);
            rc = BENCH_EXIT_FAIL;
        }
    }
    if (rc == BENCH_EXIT_OK) {
        double run_s = (double)(bench_now_ns() - run_start) / 1e9;
        bench_progress("done in %.1f s", run_s);
        if (cfg->c.json)
            ingest_json(cfg, d, &pool, mach, r, run_s);
        else
            ingest_human(cfg, d, &pool, mach, r);
    }
    bench_feedgen_fini(&g);
    pool_free(&pool);
    free(d);
    free(r);
    return rc;
}

static int ingest_main(int argc, char **argv)
{
    ingest_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    bench_common_init(&cfg.c, 3.0);
    cfg.connectors = 1000000;
    cfg.batch = 1000;
    cfg.shards = 2;
    cfg.rounds = 3;
    cfg.tenants = 16;
    cfg.pool_mib = 128;
    /* 0.1 %: at 1M connectors the fill restricts 1000, which the events
     * thread publishes in about a second before the rounds start. */
    cfg.bad_ratio = 0.001;
    const bench_opt opts[] = {
        {"connectors", BENCH_OPT_U64, &cfg.connectors, "N",
         "connectors pre-populated and named by the frames", 1, 1073741824.0},
        {"batch", BENCH_OPT_U64, &cfg.batch, "B", "events per feed frame", 1, 65535},
        {"shards", BENCH_OPT_U64, &cfg.shards, "K", "the daemon's [engine] shards (power of two)",
         1, 64},
        {"rounds", BENCH_OPT_U64, &cfg.rounds, "R",
         "rounds engine and baseline take turns in (--seconds is split over them)", 1,
         INGEST_ROUNDS_MAX},
        {"bad-ratio", BENCH_OPT_DOUBLE, &cfg.bad_ratio, "F", "fraction of compromised connectors",
         0, 1},
        {"tenants", BENCH_OPT_U64, &cfg.tenants, "T", "distinct tenants", 1,
         BENCH_FEEDGEN_TENANTS_MAX},
        {"pool-mib", BENCH_OPT_U64, &cfg.pool_mib, "M", "memory for pre-built frames, MiB", 1,
         16384},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    if (!bench_opts_parse(&cfg.c, opts, nopts, argc, argv))
        return BENCH_EXIT_USAGE;
    if (cfg.c.help) {
        bench_opts_usage(stdout, "ingest", ingest_description, &cfg.c, opts, nopts);
        return BENCH_EXIT_OK;
    }
    if ((cfg.shards & (cfg.shards - 1)) != 0) {
        fprintf(stderr, "connrep-bench ingest: --shards must be a power of two\n");
        return BENCH_EXIT_USAGE;
    }
    bench_progress_quiet(cfg.c.quiet);
    bench_watchdog_arm(cfg.c.max_seconds);
    uint64_t run_start = bench_now_ns();
    bench_progress("ingest: %" PRIu64 " connectors, frames of %" PRIu64 " events, %.1f s per side "
                   "in %" PRIu64 " rounds",
                   cfg.connectors, cfg.batch, cfg.c.seconds, cfg.rounds);
    bench_machine m;
    bench_machine_get(&m);
    return ingest_run_all(&cfg, &m, run_start);
}

const bench_scenario bench_scenario_ingest = {
    .name = "ingest",
    .summary = "verdict frames through a real connrepd vs raw ZeroMQ PUSH/PULL",
    .run = ingest_main,
};
